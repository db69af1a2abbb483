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
 * changed since, and so is a file whose ctime moved while it was read or a directory
 * whose ctime moved while it was listed. ctime is the one time no unprivileged process
 * can set (a write, chmod, rename or utimensat sets it to now), so a digest that found no
 * such entry is the tree as it was at the start; one that found one stops, incomplete
 * ("changed"), never a digest of a tree that was never there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/sha256.h"
#include "workspace.h"

#define MAX_DEPTH 128

typedef struct {
        AjWorkspaceDigestLimits lim;
        AjSha256 sha;
        uint64_t entries, bytes, deadline_ns;
        const char *cut;    /* why it stopped, NULL while complete */
        char changed[4096]; /* cut "changed": the entry ("" for the root) */
} Walk;

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
        /* Written while it was read: its ctime moved (the first stat's was before the start). */
        if (w->lim.since_ns && (fstat(fd, &now) < 0 || ctime_moved(w, &now)))
                return -ESTALE;
        return 0;
}

static int walk_dir(Walk *w, int fd, const char *rel, unsigned depth);

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
        return walk_dir(w, TAKE_FD(fd), path, depth + 1);
}

/* Takes dirfd. */
static int walk_dir(Walk *w, int fd, const char *rel, unsigned depth)
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
                if (n + w->entries > w->lim.max_entries) {
                        w->cut = "entries";
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
        if (r >= 0)
                qsort(names, n, sizeof(*names), cmp_names);
        for (size_t i = 0; r >= 0 && i < n && !over(w); i++)
                r = walk_entry(w, dirfd(d), rel, names[i], depth);
        /* Listed and walked while an entry was added, removed or renamed: its ctime moved. */
        struct stat st;
        if (r >= 0 && !w->cut && w->lim.since_ns) {
                if (fstat(dirfd(d), &st) < 0)
                        r = -errno;
                else if (ctime_moved(w, &st))
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

int aj_workspace_digest(const char *path, const AjWorkspaceDigestLimits *lim, json_t **ret)
{
        AjWorkspaceDigestLimits def;
        if (!lim) {
                aj_workspace_digest_limits_default(&def);
                lim = &def;
        }
        Walk w = { .lim = *lim, .deadline_ns = aj_now_monotonic_ns() + lim->max_ms * 1000000ULL };
        aj_sha256_init(&w.sha);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : 0;
        if (r < 0) {
                close(fd);
                return r;
        }
        if (ctime_moved(&w, &st)) {
                close(fd);
                (void)saw_change(&w, "");
        } else if ((r = walk_dir(&w, fd, "", 0)) < 0)
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
        *ret = o;
        return 0;
}
