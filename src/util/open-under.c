/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>

#include "util/macros.h"
#include "util/open-under.h"
#include "util/syscalls.h"

static bool has_dotdot(const char *path)
{
        for (const char *p = path; (p = strstr(p, "..")); p += 2)
                if ((p == path || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
                        return true;
        return false;
}

int aj_open_under(int root_fd, const char *path, int flags, mode_t mode, AjUnderFlags how)
{
        while (*path == '/')
                path++;
        if (has_dotdot(path))
                return -EINVAL;
        uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        if (how & AJ_UNDER_NO_SYMLINKS)
                resolve |= RESOLVE_NO_SYMLINKS;
        if (how & AJ_UNDER_NO_XDEV)
                resolve |= RESOLVE_NO_XDEV;
        int fd = sys_openat2(root_fd, *path ? path : ".", flags | O_CLOEXEC, mode, resolve);
        return fd < 0 ? -errno : fd;
}

int aj_open_child(int dir_fd, const char *name, int flags, mode_t mode)
{
        if (!*name || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        int fd = sys_openat2(dir_fd, name, flags | O_CLOEXEC, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        return fd < 0 ? -errno : fd;
}
