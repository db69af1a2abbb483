/* SPDX-License-Identifier: Apache-2.0 */
/* A scratch directory of agentjail's own, held by fds (util/scratch.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/macros.h"
#include "util/scratch.h"

int aj_scratch_mkdir(int at_fd, const char *name, mode_t mode, int *ret_fd)
{
        if (mkdirat(at_fd, name, mode) < 0)
                return -errno;
        int fd = openat(at_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

/* PREFIX.XXXXXX made in parent_fd under a fresh random name (as mkdtemp() names it). */
static int make_named(int parent_fd, const char *prefix, char name[64], int *ret_fd)
{
        static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for (int tries = 0; tries < 100; tries++) {
                unsigned char rnd[6];
                if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                        return -EIO;
                int n = snprintf(name, 64, "%s.", prefix);
                for (size_t i = 0; i < sizeof(rnd); i++)
                        name[n + i] = chars[rnd[i] % (sizeof(chars) - 1)];
                name[n + sizeof(rnd)] = 0;
                int r = aj_scratch_mkdir(parent_fd, name, 0700, ret_fd);
                if (r != -EEXIST)
                        return r;
        }
        return -EEXIST;
}

int aj_scratch_make(const char *parent, const char *prefix, AjScratch *ret)
{
        *ret = (AjScratch)AJ_SCRATCH_INIT;
        if (!parent || !prefix || !*prefix || strchr(prefix, '/') || strlen(prefix) + 8 > sizeof(ret->name))
                return -EINVAL;
        _cleanup_close_ int parent_fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (parent_fd < 0)
                return -errno;
        _cleanup_close_ int fd = -1;
        int r = make_named(parent_fd, prefix, ret->name, &fd);
        if (r < 0)
                return r;
        /* Its path as the kernel names it (the held directory's). */
        char proc[40], buf[PATH_MAX];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, buf, sizeof(buf) - 1);
        if (n <= 0 || (size_t)n >= sizeof(buf) - 1 || buf[0] != '/' || !(ret->path = strndup(buf, (size_t)n))) {
                r = n < 0 ? -errno : -ENAMETOOLONG;
                (void)unlinkat(parent_fd, ret->name, AT_REMOVEDIR);
                ret->name[0] = 0;
                return r;
        }
        ret->fd = TAKE_FD(fd);
        ret->parent_fd = TAKE_FD(parent_fd);
        return 0;
}

int aj_scratch_remove(AjScratch *s)
{
        if (s->fd < 0 || s->parent_fd < 0)
                return 0;
        return aj_rm_rf_pinned(s->parent_fd, s->name, s->fd);
}

void aj_scratch_done(AjScratch *s)
{
        if (s->fd >= 0)
                close(s->fd);
        if (s->parent_fd >= 0)
                close(s->parent_fd);
        free(s->path);
        *s = (AjScratch)AJ_SCRATCH_INIT;
}
