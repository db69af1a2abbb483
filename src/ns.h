/* SPDX-License-Identifier: Apache-2.0 */
/* User-namespace id maps, the idmap namespace for idmapped mounts, and the jail's loopback. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* Host side: map exactly one uid and gid of the child's user namespace:
 * inside_uid -> host_uid, inside_gid -> host_gid. With deny_setgroups
 * (rootless), "deny" is written to setgroups first, as the kernel requires. */
int aj_userns_write_maps(pid_t pid, uid_t inside_uid, uid_t host_uid, gid_t inside_gid, gid_t host_gid,
                         bool deny_setgroups);

/* Host side (root): a user namespace fd whose maps are "from_uid to_uid 1" and
 * "from_gid to_gid 1", for mount_setattr(MOUNT_ATTR_IDMAP): files owned by
 * from_uid on disk appear owned by to_uid through the idmapped mount. */
int aj_userns_idmap_fd(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid, int *ret_fd);

/* Child side, in the new network namespace: bring `lo` up. */
int aj_net_loopback_up(void);
