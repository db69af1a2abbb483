/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A workspace tree's digest (workspace.h): what a replay compares to know it starts
 * where the recorded run started. Hashed, in name order, for every entry: its path
 * relative to the root, its type, its permission bits, its size, and a regular file's
 * contents or a symlink's target; not owners or times (a copy changes them). Never
 * follows a symlink, opens only regular files (O_NOFOLLOW, O_NONBLOCK), and stops at
 * its limits: the digest of what was hashed is then marked incomplete.
 *
 * Taken while a run goes on (src/supervisor/workspace-start.c), by the ctime rule: an
 * entry whose ctime is not before the run's start (less the filesystem's granularity) was
 * changed since, and so is a file whose ctime or size moved while it was read or a
 * directory whose ctime moved while it was listed. ctime is the one time no unprivileged
 * process can set (a write, chmod, rename or utimensat sets it to now), so a digest that
 * found no such entry is the tree as it was at the start; one that found one stops,
 * incomplete ("changed"), never a digest of a tree that was never there.
 *
 * The rule holds only where the local kernel stamps ctime on every change, a write
 * through a shared mapping included (page_mkwrite): ext4 (and ext2/3, the same driver),
 * xfs, btrfs, f2fs. tmpfs does not (a page read-faulted first is mapped writable, its
 * writes never stamp ctime), and on NFS, SMB, FUSE (virtiofs), 9p the stamp comes from
 * another machine's clock or not at all. The root's filesystem is judged by its statfs
 * type, and again wherever the walk crosses into another device: elsewhere the digest
 * stops, incomplete ("unsupported_fs", "fs" naming it).
 *
 * Memory: the names listed but not walked yet, across every directory open at once, are
 * counted against max_entries (each will be an entry): at most max_entries names held.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/sha256.h"
#include "workspace.h"

#define MAX_DEPTH 128
/* Devices judged fit for the ctime rule, remembered: more (a tree of many mounts) are
 * judged again as they come. */
#define MAX_DEVS 16
/* Names listed between two looks at the clock. */
#define CLOCK_EVERY 256

typedef struct {
        AjWorkspaceDigestLimits lim;
        AjSha256 sha;
        uint64_t entries, bytes, deadline_ns;
        uint64_t pending;   /* names listed, not yet walked, in every directory open */
        const char *cut;    /* why it stopped, NULL while complete */
        char changed[4096]; /* cut "changed": the entry ("" for the root) */
        char fs[32];        /* cut "unsupported_fs": its type */
        dev_t devs[MAX_DEVS];
        size_t n_devs;
} Walk;

/* clang-format off */
static const struct { unsigned long magic; const char *name; bool ctime_rule; } FS_TYPES[] = {
        { 0xEF53,     "ext4",     true  }, /* ext2 and ext3 too: the ext4 driver */
        { 0x58465342, "xfs",      true  },
        { 0x9123683E, "btrfs",    true  },
        { 0xF2F52010, "f2fs",     true  },
        { 0x01021994, "tmpfs",    false },
        { 0x858458f6, "ramfs",    false },
        { 0x794c7630, "overlay",  false },
        { 0x6969,     "nfs",      false },
        { 0x517B,     "smb",      false },
        { 0xFF534D42, "cifs",     false },
        { 0xFE534D42, "smb2",     false },
        { 0x65735546, "fuse",     false }, /* virtiofs is FUSE */
        { 0x01021997, "9p",       false },
        { 0x2fc12fc1, "zfs",      false },
        { 0x73717368, "squashfs", false },
        { 0x4d44,     "vfat",     false },
};
/* clang-format on */

bool aj_workspace_fs_ctime_rule(unsigned long f_type, char *name, size_t size)
{
        for (size_t i = 0; i < ARRAY_SIZE(FS_TYPES); i++)
                if (FS_TYPES[i].magic == (f_type & 0xffffffffUL)) {
                        if (name && size)
                                snprintf(name, size, "%s", FS_TYPES[i].name);
                        return FS_TYPES[i].ctime_rule;
                }
        if (name && size)
                snprintf(name, size, "0x%lx", f_type);
        return false;
}

/* A filesystem stamps times truncated to its granularity: sub-millisecond on ext4, xfs,
 * btrfs, tmpfs (a ctime that is not a whole millisecond comes from one of those), from a
 * millisecond up to FAT's 2 s elsewhere. A change after `since` is stamped at most that
 * much before it. */
#define MARGIN_FINE_NS 1000000ULL
#define MARGIN_COARSE_NS 2000000000ULL

bool aj_workspace_changed_since(const struct timespec *ctime, uint64_t since_ns)
{
        if (!since_ns)
                return false;
        if (ctime->tv_sec < 0)
                return false; /* before 1970: long before any run */
        uint64_t margin = ctime->tv_nsec % 1000000 ? MARGIN_FINE_NS : MARGIN_COARSE_NS;
        return aj_timespec_ns(ctime) + margin >= since_ns;
}

/* Stops the walk: `path` changed since the run started. */
static int saw_change(Walk *w, const char *path)
{
        w->cut = "changed";
        snprintf(w->changed, sizeof(w->changed), "%s", path);
        return 0;
}

static bool ctime_moved(const Walk *w, const struct stat *st)
{
        return aj_workspace_changed_since(&st->st_ctim, w->lim.since_ns);
}

/* An entry that vanished or was replaced between its listing, its stat and its open
 * (ENOENT, a symlink where a file was, a file where a directory was, a socket where a
 * file was): with the ctime rule on, the tree changed under the walk. */
static bool vanished(const Walk *w, int r)
{
        return w->lim.since_ns && (r == -ENOENT || r == -ESTALE || r == -ELOOP || r == -ENOTDIR || r == -ENXIO);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool over(Walk *w)
{
        if (w->cut)
                return true;
        if (w->entries > w->lim.max_entries)
                w->cut = "entries";
        else if (aj_now_monotonic_ns() > w->deadline_ns)
                w->cut = "time";
        return w->cut != NULL;
}

/* With the ctime rule on, the filesystem `fd` (on device `dev`) is on must be one whose
 * ctime the rule can trust; else the walk stops ("unsupported_fs"). */
static int check_fs(Walk *w, int fd, dev_t dev)
{
        if (!w->lim.since_ns || w->cut)
                return 0;
        for (size_t i = 0; i < w->n_devs; i++)
                if (w->devs[i] == dev)
                        return 0;
        struct statfs sfs;
        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        if (!aj_workspace_fs_ctime_rule((unsigned long)sfs.f_type, w->fs, sizeof(w->fs))) {
                w->cut = "unsupported_fs";
                return 0;
        }
        if (w->n_devs < MAX_DEVS)
                w->devs[w->n_devs++] = dev;
        return 0;
}

static bool same_ctime(const struct stat *a, const struct stat *b)
{
        return a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int hash_file(Walk *w, int dirfd, const char *name, const struct stat *st, uint8_t out[AJ_SHA256_SIZE])
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat now;
        if (fd < 0)
                return -errno;
        if (fstat(fd, &now) < 0)
                return -errno;
        if (!S_ISREG(now.st_mode) || now.st_ino != st->st_ino || now.st_dev != st->st_dev)
                return -ESTALE;
        int r = check_fs(w, fd, now.st_dev);
        if (r < 0 || w->cut)
                return r;
        AjSha256 c;
        aj_sha256_init(&c);
        char buf[64 * 1024];
        for (;;) {
                if (w->bytes >= w->lim.max_bytes) {
                        w->cut = "bytes";
                        break;
                }
                size_t want = sizeof(buf);
                if (w->lim.max_bytes - w->bytes < want)
                        want = (size_t)(w->lim.max_bytes - w->bytes);
                ssize_t n = read(fd, buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                aj_sha256_update(&c, buf, (size_t)n);
                w->bytes += (uint64_t)n;
                if (aj_now_monotonic_ns() > w->deadline_ns) {
                        w->cut = "time";
                        break;
                }
        }
        aj_sha256_final(&c, out);
        /* Written while it was read: its ctime moved, from the stamp before the read and so
         * past the start (or its size did, whatever the clock). */
        if (w->lim.since_ns &&
            (fstat(fd, &now) < 0 || ctime_moved(w, &now) || !same_ctime(&now, st) || now.st_size != st->st_size))
                return -ESTALE;
        return 0;
}

static int walk_dir(Walk *w, int fd, const char *rel, const struct stat *before, unsigned depth);

static int walk_entry(Walk *w, int dirfd, const char *rel, const char *name, unsigned depth)
{
        struct stat st;
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", name);
        if (n < 0 || (size_t)n >= sizeof(path))
                return -ENAMETOOLONG;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return vanished(w, -errno) ? saw_change(w, path) : -errno;
        w->entries++;
        if (over(w))
                return 0;
        if (ctime_moved(w, &st))
                return saw_change(w, path);
        char type = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'o';
        if (type == 'o' && w->lim.since_ns) {
                /* A fifo, socket or device node mounted over an entry: not opened, so its
                 * filesystem cannot be judged. */
                bool known = false;
                for (size_t i = 0; i < w->n_devs; i++)
                        known = known || w->devs[i] == st.st_dev;
                if (!known) {
                        w->cut = "unsupported_fs";
                        snprintf(w->fs, sizeof(w->fs), "unknown");
                        return 0;
                }
        }
        char head[128];
        int hn = snprintf(head, sizeof(head), "%c %04o %lld ", type, (unsigned)(st.st_mode & 07777),
                          type == 'f' || type == 'l' ? (long long)st.st_size : 0LL);
        aj_sha256_update(&w->sha, head, (size_t)hn);
        aj_sha256_update(&w->sha, path, (size_t)n + 1); /* with its NUL: names may hold anything else */
        if (type == 'f') {
                uint8_t d[AJ_SHA256_SIZE];
                int r = hash_file(w, dirfd, name, &st, d);
                if (r < 0)
                        return vanished(w, r) ? saw_change(w, path) : r;
                aj_sha256_update(&w->sha, d, sizeof(d));
        } else if (type == 'l') {
                char target[4096];
                ssize_t k = readlinkat(dirfd, name, target, sizeof(target));
                if (k < 0)
                        return vanished(w, -errno) || (errno == EINVAL && w->lim.since_ns) ? saw_change(w, path)
                                                                                           : -errno;
                aj_sha256_update(&w->sha, target, (size_t)k);
        }
        aj_sha256_update(&w->sha, "\n", 1);
        if (type != 'd')
                return 0;
        if (depth >= MAX_DEPTH) {
                w->cut = "depth";
                return 0;
        }
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return vanished(w, -errno) ? saw_change(w, path) : -errno;
        struct stat now;
        if (fstat(fd, &now) < 0)
                return -errno;
        if (now.st_ino != st.st_ino || now.st_dev != st.st_dev)
                return vanished(w, -ESTALE) ? saw_change(w, path) : -ESTALE;
        int r = check_fs(w, fd, now.st_dev);
        if (r < 0 || w->cut)
                return r;
        return walk_dir(w, TAKE_FD(fd), path, &st, depth + 1);
}

/* Takes dirfd; `before`: its stat before it was listed. */
static int walk_dir(Walk *w, int fd, const char *rel, const struct stat *before, unsigned depth)
{
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        struct dirent *de;
        while (r >= 0 && (errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                /* Each name held here and above will be an entry: past the limit, the tree
                 * has more entries than the digest takes. */
                if (w->entries + w->pending + n >= w->lim.max_entries) {
                        w->cut = "entries";
                        break;
                }
                if (n % CLOCK_EVERY == CLOCK_EVERY - 1 && aj_now_monotonic_ns() > w->deadline_ns) {
                        w->cut = "time";
                        break;
                }
                if (n == cap) {
                        char **g = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*g));
                        if (!g) {
                                r = -ENOMEM;
                                break;
                        }
                        names = g;
                }
                if (!(names[n] = strdup(de->d_name)))
                        r = -ENOMEM;
                else
                        n++;
        }
        if (r >= 0 && !de && errno)
                r = -errno;
        if (r >= 0 && n > 1)
                qsort(names, n, sizeof(*names), cmp_names);
        w->pending += n;
        size_t walked = 0;
        for (; r >= 0 && walked < n && !over(w); walked++) {
                w->pending--;
                r = walk_entry(w, dirfd(d), rel, names[walked], depth);
        }
        w->pending -= n - walked;
        /* Listed and walked while an entry was added, removed or renamed: its ctime moved,
         * past the start and from the stamp before the listing. */
        struct stat st;
        if (r >= 0 && !w->cut && w->lim.since_ns) {
                if (fstat(dirfd(d), &st) < 0)
                        r = -errno;
                else if (ctime_moved(w, &st) || !same_ctime(&st, before))
                        r = saw_change(w, rel);
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return r;
}

void aj_workspace_digest_limits_default(AjWorkspaceDigestLimits *ret)
{
        *ret = (AjWorkspaceDigestLimits){ .max_entries = 200000, .max_bytes = 1ULL << 30, .max_ms = 10000 };
}

int aj_workspace_digest_fd(int fd, const char *path, const AjWorkspaceDigestLimits *lim, json_t **ret)
{
        AjWorkspaceDigestLimits def;
        if (!lim) {
                aj_workspace_digest_limits_default(&def);
                lim = &def;
        }
        Walk w = { .lim = *lim, .deadline_ns = aj_now_monotonic_ns() + lim->max_ms * 1000000ULL };
        aj_sha256_init(&w.sha);
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : !S_ISDIR(st.st_mode) ? -ENOTDIR : 0;
        if (r >= 0)
                r = check_fs(&w, fd, st.st_dev);
        if (r < 0 || w.cut) {
                close(fd);
                if (r < 0)
                        return r;
        } else if (ctime_moved(&w, &st)) {
                close(fd);
                (void)saw_change(&w, "");
        } else if ((r = walk_dir(&w, fd, "", &st, 0)) < 0)
                return r;
        uint8_t d[AJ_SHA256_SIZE];
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256_final(&w.sha, d);
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:b}", "path", path, "sha256", aj_sha256_hex(d, hex), "entries",
                              (json_int_t)w.entries, "bytes", (json_int_t)w.bytes, "complete", w.cut == NULL);
        if (!o)
                return -ENOMEM;
        if (w.cut)
                json_object_set_new(o, "cut_at", json_string(w.cut));
        if (w.cut && streq(w.cut, "changed")) {
                /* A name is the agent's: kept only as printable text, and bounded. */
                char shown[300] = "";
                aj_append_printable(shown, sizeof(shown), *w.changed ? w.changed : ".", 256);
                json_object_set_new(o, "changed", json_string(shown)); /* not UTF-8: left out */
        }
        if (w.cut && streq(w.cut, "unsupported_fs"))
                json_object_set_new(o, "fs", json_string(w.fs));
        *ret = o;
        return 0;
}

int aj_workspace_digest(const char *path, const AjWorkspaceDigestLimits *lim, json_t **ret)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return aj_workspace_digest_fd(fd, path, lim, ret);
}
