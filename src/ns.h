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
 * from_uid on disk appear owned by to_uid through the idmapped mount. The namespace's
 * process is told to exit before this returns; with ret_holder NULL it is waited for here,
 * else its pid is the caller's to reap (aj_userns_idmap_reap) before the next call, which
 * until then fails with -EBUSY (the holder runs on one static stack): at a start, waiting
 * for it put its exit, queued behind the jail's init, on the supervisor's path
 * (docs/performance.md, session 24). */
int aj_userns_idmap_fd(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid, int *ret_fd, pid_t *ret_holder);
/* Reaps what aj_userns_idmap_fd() left in *ret_holder (it exits on its own); 0: nothing. */
void aj_userns_idmap_reap(pid_t holder);

/* Child side, in the new network namespace: bring `lo` up. */
int aj_net_loopback_up(void);
