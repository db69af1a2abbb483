/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/macros.h"
#include "util/syscalls.h"

int aj_write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int aj_write_file_at(int dirfd, const char *path, const char *text)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        /* Kernel interface files want one write() per value. */
        size_t len = strlen(text);
        ssize_t n = write(fd, text, len);
        if (n < 0)
                return -errno;
        if ((size_t)n != len)
                return -EIO;
        return 0;
}

int aj_write_file(const char *path, const char *text) { return aj_write_file_at(AT_FDCWD, path, text); }

int aj_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
        size_t plen = strlen(path);
        _cleanup_free_ char *tmp = malloc(plen + 16);
        if (!tmp)
                return -ENOMEM;
        snprintf(tmp, plen + 16, "%s.tmp.%d", path, (int)getpid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        /* No fsync: rename() keeps readers from ever seeing a partial file, which is what
         * the operator's tools need; durability across power loss is not worth milliseconds
         * on every run start. */
        int r = aj_write_all(fd, data, len);
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

int aj_read_file_at(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return aj_read_fd(fd, max_size, ret, ret_len);
}

int aj_read_fd(int fd, size_t max_size, char **ret, size_t *ret_len)
{
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= max_size)
                                return -EFBIG;
                        cap = cap * 2 > max_size ? max_size : cap * 2;
                        char *nb = realloc(buf, cap + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int aj_read_file(const char *path, size_t max_size, char **ret, size_t *ret_len)
{
        return aj_read_file_at(AT_FDCWD, path, max_size, ret, ret_len);
}

int aj_mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        size_t len = strlen(path);
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, path, len + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int rm_rf_at(int parent_fd, const char *name, dev_t dev)
{
        struct stat st;
        if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        if (st.st_dev != dev)
                return -EXDEV; /* never descend into another mount */
        int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -ENOMEM;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int q = rm_rf_at(dirfd(d), de->d_name, dev);
                if (q < 0 && r == 0)
                        r = q;
        }
        closedir(d);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int aj_rm_rf(const char *path)
{
        if (!path || !*path || streq(path, "/"))
                return -EINVAL;
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        return rm_rf_at(AT_FDCWD, path, st.st_dev);
}

int aj_fd_set_nonblock(int fd, bool nonblock)
{
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        int nf = nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (nf != flags && fcntl(fd, F_SETFL, nf) < 0)
                return -errno;
        return 0;
}

int aj_close_all_except(int from, const int *keep, size_t n_keep)
{
        /* close_range() over the gaps between kept fds; keep[] need not be sorted. */
        int lo = from;
        for (;;) {
                int next = INT_MAX;
                for (size_t i = 0; i < n_keep; i++)
                        if (keep[i] >= lo && keep[i] < next)
                                next = keep[i];
                if (next > lo) {
                        unsigned hi = next == INT_MAX ? ~0U : (unsigned)next - 1;
                        if (sys_close_range((unsigned)lo, hi, 0) < 0)
                                return -errno;
                }
                if (next == INT_MAX)
                        return 0;
                lo = next + 1;
        }
}

ssize_t aj_read_full(int fd, void *buf, size_t len)
{
        size_t have = 0;
        while (have < len) {
                ssize_t k = read(fd, (char *)buf + have, len - have);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                have += (size_t)k;
        }
        return (ssize_t)have;
}
