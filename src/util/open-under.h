/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* The one way agentjail opens a path that an agent can influence (a mount target in the jail's
 * root, a file in the workspace) below a directory it trusts:
 *
 *   - the path is resolved with openat2(RESOLVE_IN_ROOT): root_fd is "/" for it, so an absolute
 *     symlink, a symlink to "/" or a chain of ".." can never name anything outside root_fd;
 *   - magic links (/proc/PID/root, /proc/PID/fd/N) are never followed (RESOLVE_NO_MAGICLINKS):
 *     they jump to another mount namespace's tree without any path;
 *   - a ".." component is refused (-EINVAL) before any lookup: no caller needs one, and without
 *     it the file opened is the one the path names;
 *   - AJ_UNDER_NO_SYMLINKS refuses every symlink on the way and as the last component (-ELOOP),
 *     for callers that write into a tree the agent had write access to;
 *   - AJ_UNDER_NO_XDEV refuses to cross a mount point on the way or to open one (-EXDEV), for
 *     callers that write what the agent made in a view of the tree without the host's mounts
 *     below it (an overlay workspace's lower layer shows the directory under a mount);
 *   - no fallback: on a kernel without openat2 (before 5.6), or where a seccomp policy filters
 *     it, the call fails (-ENOSYS / -EPERM) rather than resolving component by component.
 *
 * A leading "/" is dropped and "" names root_fd itself. O_CLOEXEC is always added. Returns the
 * fd or -errno. */
typedef enum {
        AJ_UNDER_FOLLOW = 0,
        AJ_UNDER_NO_SYMLINKS = 1 << 0,
        AJ_UNDER_NO_XDEV = 1 << 1,
} AjUnderFlags;

int aj_open_under(int root_fd, const char *path, int flags, mode_t mode, AjUnderFlags how);

/* One name below a directory the caller already holds (a component of a path it is walking,
 * or a file it creates there): `name` has no '/' and is not "." or ".." (-EINVAL), and no
 * symlink is ever followed, not even as the name itself (-ELOOP; with O_CREAT|O_EXCL an
 * existing symlink is -EEXIST), so what is opened is that directory's entry and nothing else.
 * For a caller that wants a symlink there resolved, -ELOOP says to resolve the whole path with
 * aj_open_under(). O_CLOEXEC is always added. Returns the fd or -errno. */
int aj_open_child(int dir_fd, const char *name, int flags, mode_t mode);
