/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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

int aj_send_with_fd(int sock, const void *buf, size_t len, int fd)
{
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (fd >= 0) {
                mh.msg_control = u.buf;
                mh.msg_controllen = sizeof(u.buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        for (;;) {
                if (sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0)
                        return 0;
                if (errno != EINTR)
                        return -errno;
        }
}

ssize_t aj_recv_with_fd(int sock, void *buf, size_t len, int *ret_fd)
{
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        ssize_t n;
        do
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        *ret_fd = -1;
        if (n < 0)
                return -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                if (*ret_fd >= 0)
                        close(*ret_fd);
                *ret_fd = -1;
                return -EBADMSG;
        }
        return n;
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
        /* Made here, so made new: whatever has the name (a writer of this pid that died
         * before its rename, or a FIFO or a symlink someone put there, which an open would
         * wait on or write through) goes first. */
        if (unlink(tmp) < 0 && errno != ENOENT)
                return -errno;
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
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

int aj_open_regular_at(int dirfd, const char *path, int flags, mode_t mode)
{
        _cleanup_close_ int fd = openat(dirfd, path, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
        /* ENXIO: a FIFO opened to write with no reader (O_NONBLOCK), a Unix socket, a device
         * without its driver; never a regular file. */
        if (fd < 0)
                return errno == ENXIO ? -EBADFD : -errno;
        struct stat st;
        int r = aj_fd_regular(fd, &st);
        return r < 0 ? r : TAKE_FD(fd);
}

int aj_fd_regular(int fd, struct stat *ret_st)
{
        if (fstat(fd, ret_st) < 0)
                return -errno;
        if (S_ISDIR(ret_st->st_mode))
                return -EISDIR;
        return S_ISREG(ret_st->st_mode) ? 0 : -EBADFD;
}

int aj_read_regular_file(const char *path, size_t max_size, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0)
                return fd;
        return aj_read_fd(fd, max_size, ret, ret_len);
}

const char *aj_file_error_text(int r) { return r == -EBADFD ? "not a regular file" : strerror(-r); }

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
        /* The path itself first: its parents are there on every run but the first, and each
         * mkdir of one that exists is a walk from the root and a lookup under its parent's
         * lock (a run's state, runtime and cache dirs: two dozen of them a start). */
        if (mkdir(path, mode) == 0 || errno == EEXIST)
                return 0;
        if (errno != ENOENT)
                return -errno;
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

#define COPY_CHUNK (128 * 1024)

static bool all_zero(const char *p, size_t n) { return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0); }

/* [off, end) of in into out at the same offsets: copy_file_range where the kernel can, else
 * pread/pwrite; with skip_zeros (no SEEK_DATA) a chunk of zeros is not written (a hole).
 * Stops early at the source's end (it shrank). */
static int copy_range(int in_fd, int out_fd, off_t off, off_t end, bool skip_zeros, bool *cfr, char **buf,
                      uint64_t *written)
{
        while (off < end) {
                size_t want = (uint64_t)(end - off) > (1u << 30) ? (1u << 30) : (size_t)(end - off);
                if (*cfr && !skip_zeros) {
                        loff_t i = off, o = off;
                        ssize_t n = copy_file_range(in_fd, &i, out_fd, &o, want, 0);
                        if (n > 0) {
                                off += n;
                                *written += (uint64_t)n;
                                continue;
                        }
                        if (n == 0)
                                return 0;
                        if (errno == EINTR)
                                continue;
                        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
                            errno != EPERM && errno != EBADF)
                                return -errno;
                        *cfr = false;
                }
                if (!*buf && !(*buf = malloc(COPY_CHUNK)))
                        return -ENOMEM;
                ssize_t n = pread(in_fd, *buf, want < COPY_CHUNK ? want : COPY_CHUNK, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return 0;
                if (!skip_zeros || !all_zero(*buf, (size_t)n)) {
                        for (ssize_t done = 0; done < n;) {
                                ssize_t w = pwrite(out_fd, *buf + done, (size_t)(n - done), off + done);
                                if (w < 0) {
                                        if (errno == EINTR)
                                                continue;
                                        return -errno;
                                }
                                done += w;
                        }
                        *written += (uint64_t)n;
                }
                off += n;
        }
        return 0;
}

int aj_copy_data(int in_fd, int out_fd, uint64_t *ret_written)
{
        struct stat st;
        if (fstat(in_fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        off_t size = st.st_size, off = 0;
        bool cfr = true;
        _cleanup_free_ char *buf = NULL;
        uint64_t written = 0;
        int r = 0;
        while (off < size) {
                off_t data = lseek(in_fd, off, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole from here */
                        if (errno != EINVAL && errno != EOPNOTSUPP)
                                return -errno;
                        /* No SEEK_DATA here: read it all, write only the chunks that are not zeros. */
                        r = copy_range(in_fd, out_fd, off, size, true, &cfr, &buf, &written);
                        break;
                }
                if (data >= size)
                        break;
                off_t hole = lseek(in_fd, data, SEEK_HOLE);
                if (hole < 0) {
                        if (errno == ENXIO)
                                break; /* shrank */
                        return -errno;
                }
                if (hole > size || hole <= data)
                        hole = size;
                r = copy_range(in_fd, out_fd, data, hole, false, &cfr, &buf, &written);
                if (r < 0)
                        return r;
                off = hole;
        }
        if (r < 0)
                return r;
        if (ftruncate(out_fd, size) < 0)
                return -errno;
        if (ret_written)
                *ret_written = written;
        return 0;
}

/* Where a directory lives: its device and, where the kernel tells (5.8+), its mount, so that
 * a bind mount of the same file system counts as another place too. */
typedef struct {
        dev_t dev;
        uint64_t mnt_id;
        bool has_mnt_id;
} RmPlace;

static int rm_place_at(int dir_fd, const char *name, RmPlace *ret)
{
        struct statx stx;
        int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH);
        if (statx(dir_fd, name, flags, STATX_TYPE | STATX_MNT_ID, &stx) < 0)
                return -errno;
        *ret = (RmPlace){
                .dev = makedev(stx.stx_dev_major, stx.stx_dev_minor),
                .mnt_id = stx.stx_mnt_id,
                .has_mnt_id = stx.stx_mask & STATX_MNT_ID,
        };
        return 0;
}

static bool rm_same_place(const RmPlace *a, const RmPlace *b)
{
        return a->dev == b->dev && (!a->has_mnt_id || !b->has_mnt_id || a->mnt_id == b->mnt_id);
}

typedef struct {
        RmPlace place;  /* the top directory's: nothing elsewhere is entered or changed */
        bool placed;    /* place is known (the top is pinned) */
        int top_fd;     /* where too deep directories are moved */
        uint64_t moved; /* how many were */
} RmRf;

static void rm_note(int *r, int q)
{
        if (q < 0 && *r == 0)
                *r = q;
}

/* A directory AJ_RM_RF_OPEN_LEVELS down is not entered: it is renamed into the top directory
 * (same file system, checked) under a fresh name, whose walk takes it up later. That bounds
 * the fds and DIR buffers held whatever the depth of the tree, and each directory is walked
 * once (a moved one sits one level below the top and is not moved again). */
static int rm_move_up(RmRf *rm, int dir_fd, const char *name)
{
        char tmp[40];
        for (int tries = 0;; tries++) {
                snprintf(tmp, sizeof(tmp), ".aj-rm-%llu-%d", (unsigned long long)rm->moved, tries);
                if (renameat2(dir_fd, name, rm->top_fd, tmp, RENAME_NOREPLACE) >= 0)
                        break;
                if (errno != EEXIST || tries >= 16)
                        return errno == ENOENT ? 0 : -errno;
        }
        rm->moved++;
        return 0;
}

/* The pinned directory (st) with its owner's rights on it given back, when they were taken
 * away, so that it can be emptied (and moved: a directory moved to another parent must be
 * writable): a rootless run's agent, whose files are the invoker's, left `chmod 000 d` (not
 * entered) or `chmod 555 d` (nothing in it removed) in its workspace, and every eval case or
 * replay of it left its scratch copy behind. Only for its owner (root needs no rights), and
 * only the owner's bits; through /proc (an O_PATH fd takes no fchmod). */
static void rm_grant_owner(int pinned, const struct stat *st)
{
        if ((st->st_mode & S_IRWXU) == S_IRWXU || st->st_uid != geteuid() || geteuid() == 0)
                return;
        char proc[40];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pinned);
        (void)chmod(proc, (st->st_mode & 07777) | S_IRWXU);
}

/* A directory the walk enters or moves, pinned: opened O_PATH (which needs no rights on it)
 * and checked on that fd to be `st` (its lstat: else -ESTALE) in the walk's place (else
 * -EXDEV: a mount point, neither changed nor entered; the top's pin sets the place), then
 * its owner's rights given back through it. What follows goes through the fd too, so a mount
 * put over the name after the checks is never what is changed or entered. */
static int rm_pin_dir(RmRf *rm, int parent, const char *name, const struct stat *st)
{
        _cleanup_close_ int fd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat pst;
        RmPlace pl;
        int r = fstat(fd, &pst) < 0 ? -errno : rm_place_at(fd, "", &pl);
        if (r < 0)
                return r;
        if (pst.st_dev != st->st_dev || pst.st_ino != st->st_ino)
                return -ESTALE; /* replaced since its lstat */
        if (rm->placed && !rm_same_place(&pl, &rm->place))
                return -EXDEV;
        if (!rm->placed) {
                rm->place = pl;
                rm->placed = true;
        }
        rm_grant_owner(fd, st);
        return TAKE_FD(fd);
}

/* A directory to be entered, opened for reading through its pin ("." from it crosses no
 * mount). */
static int rm_open_dir(RmRf *rm, int parent, const char *name, const struct stat *st)
{
        _cleanup_close_ int pinned = rm_pin_dir(rm, parent, name, st);
        if (pinned < 0)
                return pinned;
        int fd = openat(pinned, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Removes what dir_fd (taken over) holds, `depth` levels below the top: symlinks are removed,
 * never followed; a directory in another place is -EXDEV, never entered. Carries on past an
 * entry it cannot remove and returns the first error. */
static int rm_contents(RmRf *rm, int dir_fd, unsigned depth)
{
        DIR *d = fdopendir(dir_fd);
        if (!d) {
                int r = -errno;
                close(dir_fd);
                return r;
        }
        if (depth == 0)
                rm->top_fd = dirfd(d);
        int r = 0;
        for (;;) {
                uint64_t moved_before = rm->moved;
                struct dirent *de;
                for (errno = 0; (de = readdir(d)); errno = 0) {
                        const char *name = de->d_name;
                        if (streq(name, ".") || streq(name, ".."))
                                continue;
                        struct stat st;
                        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                rm_note(&r, errno == ENOENT ? 0 : -errno);
                                continue;
                        }
                        if (!S_ISDIR(st.st_mode)) {
                                if (unlinkat(dirfd(d), name, 0) < 0 && errno != ENOENT)
                                        rm_note(&r, -errno);
                                continue;
                        }
                        RmPlace pl;
                        int q = rm_place_at(dirfd(d), name, &pl);
                        if (q < 0) {
                                rm_note(&r, q == -ENOENT ? 0 : q);
                                continue;
                        }
                        if (!rm_same_place(&pl, &rm->place)) {
                                rm_note(&r, -EXDEV); /* never descend into another mount */
                                continue;
                        }
                        if (unlinkat(dirfd(d), name, AT_REMOVEDIR) >= 0 || errno == ENOENT)
                                continue; /* was empty */
                        if (errno != ENOTEMPTY && errno != EEXIST) {
                                rm_note(&r, -errno);
                                continue;
                        }
                        if (depth + 1 >= AJ_RM_RF_OPEN_LEVELS) {
                                q = rm_pin_dir(rm, dirfd(d), name, &st);
                                if (q >= 0) {
                                        close(q);
                                        q = rm_move_up(rm, dirfd(d), name);
                                }
                                rm_note(&r, q == -ENOENT ? 0 : q);
                                continue;
                        }
                        int fd = rm_open_dir(rm, dirfd(d), name, &st);
                        if (fd < 0) {
                                rm_note(&r, fd == -ENOENT ? 0 : fd);
                                continue;
                        }
                        rm_note(&r, rm_contents(rm, fd, depth + 1));
                        if (unlinkat(dirfd(d), name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                                rm_note(&r, -errno);
                }
                if (errno != 0)
                        rm_note(&r, -errno);
                /* The top directory again while the walk moved directories into it (readdir
                 * may or may not have listed them). */
                if (depth > 0 || rm->moved == moved_before)
                        break;
                rewinddir(d);
        }
        closedir(d);
        return r;
}

/* The top directory, pinned at `pinned` (st: its identity) and known as `name` in parent_fd:
 * emptied through the pin, then its name removed only while it is still this directory:
 * whatever was put in its place is left as it is (unlinkat() follows no symlink; a
 * directory swapped in between the check and the rmdir is removed only if empty). */
static int rm_top(RmRf *rm, int parent_fd, const char *name, int pinned, const struct stat *st)
{
        struct stat now;
        /* "." from the pin crosses no mount and looks up no path. */
        int fd = openat(pinned, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = fd < 0 ? -errno : rm_contents(rm, fd, 0);
        if (fstatat(parent_fd, name, &now, AT_SYMLINK_NOFOLLOW) < 0)
                rm_note(&r, errno == ENOENT ? 0 : -errno);
        else if (now.st_dev != st->st_dev || now.st_ino != st->st_ino)
                rm_note(&r, -ESTALE);
        else if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                rm_note(&r, -errno);
        return r;
}

int aj_rm_rf_pinned(int parent_fd, const char *name, int dir_fd)
{
        struct stat st;
        RmRf rm = { .top_fd = -1, .placed = true };
        if (!name || !*name || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        if (fstat(dir_fd, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        int r = rm_place_at(dir_fd, "", &rm.place);
        if (r < 0)
                return r;
        rm_grant_owner(dir_fd, &st);
        return rm_top(&rm, parent_fd, name, dir_fd, &st);
}

int aj_rm_rf_at(int dir_fd, const char *path)
{
        if (!path || !*path || streq(path, "/"))
                return -EINVAL;
        struct stat st;
        if (fstatat(dir_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dir_fd, path, 0) < 0 && errno != ENOENT ? -errno : 0;
        /* The directory its lstat saw, pinned: emptied through the pin, its name removed only
         * while it is still that directory. */
        RmRf rm = { .top_fd = -1 };
        _cleanup_close_ int pinned = rm_pin_dir(&rm, dir_fd, path, &st);
        if (pinned < 0)
                return pinned == -ENOENT ? 0 : pinned;
        return rm_top(&rm, dir_fd, path, pinned, &st);
}

int aj_rm_rf(const char *path) { return aj_rm_rf_at(AT_FDCWD, path); }

/* One walk's count. Files with more than one link are counted once, by inode: the agent can
 * make 300 links to one file (in its overlay's upper dir, say). The set is bounded; past it a
 * linked file counts its share (blocks / links) and the figure is marked not exact. */
#define USAGE_LINKED_MAX 4096
typedef struct {
        dev_t dev;
        uint64_t bytes;
        size_t n_linked;
        struct {
                ino_t ino;
                bool used;
        } linked[USAGE_LINKED_MAX * 2];
} Usage;

/* true when this linked inode was counted already; else remembers it (false). *full: no room. */
static bool linked_seen(Usage *u, ino_t ino, bool *full)
{
        size_t cap = ARRAY_SIZE(u->linked), i = (size_t)(ino * 0x9e3779b97f4a7c15ULL >> 32) % cap;
        for (; u->linked[i].used; i = (i + 1) % cap)
                if (u->linked[i].ino == ino)
                        return true;
        if (u->n_linked >= USAGE_LINKED_MAX) {
                *full = true;
                return false;
        }
        u->linked[i].used = true;
        u->linked[i].ino = ino;
        u->n_linked++;
        return false;
}

/* What dir_fd (taken over) holds on disk, `depth` levels below the top, into u->bytes: each
 * entry's allocated blocks, symlinks as themselves, nothing in another file system. Returns
 * 1 when something was not counted exactly (too deep, unreadable, another mount, links past
 * the set), else 0. */
static int usage_contents(int dir_fd, Usage *u, unsigned depth)
{
        DIR *d = fdopendir(dir_fd);
        if (!d) {
                close(dir_fd);
                return 1;
        }
        int partial = 0;
        struct dirent *de;
        for (errno = 0; (de = readdir(d)); errno = 0) {
                const char *name = de->d_name;
                if (streq(name, ".") || streq(name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        partial |= errno != ENOENT;
                        continue;
                }
                if (st.st_dev != u->dev) {
                        partial = 1; /* a mount: not ours to count */
                        continue;
                }
                uint64_t blocks = (uint64_t)st.st_blocks * 512;
                if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
                        bool full = false;
                        if (linked_seen(u, st.st_ino, &full))
                                continue;
                        if (full) {
                                blocks /= st.st_nlink;
                                partial = 1;
                        }
                }
                u->bytes += blocks;
                if (!S_ISDIR(st.st_mode))
                        continue;
                if (depth + 1 >= AJ_TREE_USAGE_LEVELS) {
                        partial = 1;
                        continue;
                }
                int fd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        partial |= errno != ENOENT;
                        continue;
                }
                partial |= usage_contents(fd, u, depth + 1);
        }
        partial |= errno != 0;
        closedir(d);
        return partial;
}

int aj_tree_usage(const char *path, uint64_t *ret_bytes)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return -errno;
        uint64_t bytes = (uint64_t)st.st_blocks * 512;
        int partial = 0;
        if (S_ISDIR(st.st_mode)) {
                int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                struct stat fst;
                if (fstat(fd, &fst) < 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
                        close(fd);
                        return -ESTALE;
                }
                _cleanup_free_ Usage *u = calloc(1, sizeof(*u));
                if (!u) {
                        close(fd);
                        return -ENOMEM;
                }
                u->dev = st.st_dev;
                u->bytes = bytes;
                partial = usage_contents(fd, u, 0);
                bytes = u->bytes;
        }
        *ret_bytes = bytes;
        return partial;
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

void aj_lock_release(int fd, bool sharer_keeps)
{
        if (fd < 0)
                return;
        if (!sharer_keeps)
                (void)flock(fd, LOCK_UN);
        close(fd);
}
