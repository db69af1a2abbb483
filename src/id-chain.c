/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Identities: a file's dev/ino chain up to our root and its path inside its filesystem (from
 * /proc/self/mountinfo), gathered from an fd or a path; the places' resolution, by one lstat
 * walk shared between the places of a list (Gather, Looked) or the slow way it must agree with.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/sysmacros.h>

#include "mount-internal.h"
#include "util/fd.h"

void aj_id_chain_done(AjIdChain *c)
{
        if (!c)
                return;
        free(c->ids);
        free(c->fs_path);
        *c = (AjIdChain){ 0 };
}

#define MOUNTINFO_MAX (16u << 20)

/* /proc/self/mountinfo, whole (NULL-terminated). */
int mnt_mountinfo_load(char **ret)
{
        _cleanup_close_ int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        if (fd < 0)
                return negative_errno();
        for (;;) {
                ssize_t n;

                if (cap - len < 4096) {
                        char *b;

                        if (cap >= MOUNTINFO_MAX)
                                return -E2BIG;
                        cap = cap ? cap * 2 : 16384;
                        b = realloc(buf, cap + 1);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* One mountinfo path field (octal escapes: \040 is a space) into a new string. */
char *mnt_mountinfo_field(const char *f, size_t len)
{
        char *out = malloc(len + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (f[i] == '\\' && i + 3 < len && f[i + 1] >= '0' && f[i + 1] <= '3' && f[i + 2] >= '0' &&
                    f[i + 2] <= '7' && f[i + 3] >= '0' && f[i + 3] <= '7') {
                        *o++ = (char)((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
                        i += 3;
                } else {
                        *o++ = f[i];
                }
        }
        *o = '\0';
        return out;
}

/* Splits the line at *cursor into its first five fields (id, parent, maj:min, root, mount
 * point; each runs to the next space) and moves *cursor to the next line. false: fewer. */
bool mnt_mountinfo_next(const char **cursor, const char *f[5], const char **ret_end)
{
        const char *line = *cursor, *end = strchrnul(line, '\n');
        size_t k = 1;

        f[0] = line;
        for (const char *p = line; p < end && k < 5; p++)
                if (*p == ' ')
                        f[k++] = p + 1;
        *cursor = *end ? end + 1 : end;
        *ret_end = end;
        return k == 5;
}

int mnt_each_mount_below(const char *table, const char *dir, int (*fn)(const char *point, void *userdata),
                         void *userdata)
{
        for (const char *line = table; *line;) {
                const char *f[5], *end;
                if (!mnt_mountinfo_next(&line, f, &end))
                        continue;
                const char *point_end = strchrnul(f[4], ' ');
                if (point_end > end)
                        continue;
                _cleanup_free_ char *point = mnt_mountinfo_field(f[4], (size_t)(point_end - f[4]));
                if (!point)
                        return -ENOMEM;
                const char *rel = path_under(point, dir);
                if (!rel || !*rel || streq(point, dir)) /* "/" is under "/" as "/" */
                        continue;
                int r = fn(point, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The root (inside its filesystem) and mount point of mount `id`. */
static int mountinfo_find(const char *table, uint64_t id, char **ret_root, char **ret_point)
{
        for (const char *line = table; line && *line;) {
                const char *f[5], *end;

                if (mnt_mountinfo_next(&line, f, &end) && strtoull(f[0], NULL, 10) == id) {
                        const char *root_end = strchr(f[3], ' '), *point_end = strchrnul(f[4], ' ');

                        if (!root_end || point_end > end)
                                return -EINVAL;
                        _cleanup_free_ char *root = mnt_mountinfo_field(f[3], (size_t)(root_end - f[3]));
                        _cleanup_free_ char *point = mnt_mountinfo_field(f[4], (size_t)(point_end - f[4]));
                        if (!root || !point)
                                return -ENOMEM;
                        *ret_root = TAKE_PTR(root);
                        *ret_point = TAKE_PTR(point);
                        return 0;
                }
        }
        return -ENOENT;
}

/* The path of the file open at `fd` (named `kpath` by the kernel) inside its filesystem.
 * NULL when it cannot be told (no mount id, an odd mountinfo): the other views still hold. */
static char *fs_path_of(uint64_t mnt_id, const char *kpath, const char *mountinfo)
{
        _cleanup_free_ char *own = NULL, *root = NULL, *point = NULL;
        const char *rel;
        char *out = NULL;

        if (!mountinfo) {
                if (mnt_mountinfo_load(&own) < 0)
                        return NULL;
                mountinfo = own;
        }
        if (mountinfo_find(mountinfo, mnt_id, &root, &point) < 0 || root[0] != '/')
                return NULL;
        rel = path_under(kpath, point);
        if (!rel)
                return NULL;
        if (streq(root, "/"))
                out = strdup(*rel ? rel : "/");
        else if (asprintf(&out, "%s%s", root, streq(rel, "/") ? "" : rel) < 0)
                out = NULL;
        return out;
}

/* The path the kernel names the file open at `fd` by (d_path, through /proc/self/fd):
 * its length, or -errno. */
ssize_t mnt_fd_kernel_path(int fd, char buf[static PATH_MAX])
{
        char link[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, PATH_MAX - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        return n;
}

/* The parents of `path` (absolute, as the kernel names the file), by name: the same
 * directories ".." leads to, also for a file (whose ".." means nothing) and where a
 * directory on the way up cannot be searched (naming its parent needs no search on it). */
static const Looked *look(Gather *g, const char *path);

static int chain_by_names(const char *path, Gather *g, AjFileId *ids, size_t *n)
{
        _cleanup_free_ char *p = strdup(path);
        const AjFileId *root = g && g->has_root ? &g->root : NULL;

        if (!p)
                return -ENOMEM;
        if (p[0] != '/')
                return -ENOENT;
        while (!streq(p, "/")) {
                char *slash = strrchr(p, '/');
                AjFileId id;
                mode_t mode;

                slash[slash == p ? 1 : 0] = '\0';
                if (root && streq(p, "/")) { /* known: every chain ends there */
                        if (*n >= AJ_ID_CHAIN_MAX)
                                return -ELOOP;
                        ids[(*n)++] = *root;
                        break;
                }
                /* Parents shared between the files of one plan are looked at once (a
                 * kernel-named path has no symlinks: lstat is stat here). */
                const Looked *l = g ? look(g, p) : NULL;
                if (l) {
                        if (l->err < 0)
                                return l->err;
                        id = l->id;
                        mode = l->mode;
                } else {
                        struct stat st;
                        if (fstatat(AT_FDCWD, p, &st, AT_NO_AUTOMOUNT) < 0)
                                return negative_errno();
                        id = (AjFileId){ st.st_dev, st.st_ino };
                        mode = st.st_mode;
                }
                if (!S_ISDIR(mode))
                        return -ENOTDIR;
                if (*n >= AJ_ID_CHAIN_MAX)
                        return -ELOOP;
                ids[(*n)++] = id;
        }
        return 0;
}

void mnt_gather_init(Gather *g)
{
        struct stat st;

        *g = (Gather){ 0 };
        (void)mnt_mountinfo_load(&g->mountinfo); /* unreadable: read per file, or unknown */
        if (stat("/", &st) == 0) {
                g->root = (AjFileId){ st.st_dev, st.st_ino };
                g->has_root = true;
        }
}

void mnt_gather_done(Gather *g)
{
        free(g->mountinfo);
        g->mountinfo = NULL;
        for (size_t i = 0; i < g->n_looked; i++)
                free(g->looked[i].path);
        free(g->looked);
        g->looked = NULL;
        g->n_looked = 0;
}

/* `known_path`: the file's path as the kernel names it, when the caller resolved it (NULL:
 * read from /proc/self/fd). */
int mnt_id_chain_from_fd(int fd, Gather *g, const char *known_path, AjIdChain *ret)
{
        AjFileId ids[AJ_ID_CHAIN_MAX];
        _cleanup_free_ AjFileId *kept = NULL;
        char buf[PATH_MAX];
        size_t n = 0;
        struct statx stx;
        int r;

        if (fd < 0 || !ret)
                return -EINVAL;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0)
                return negative_errno();
        if (known_path && strlen(known_path) < sizeof(buf)) {
                strcpy(buf, known_path);
        } else {
                ssize_t l = mnt_fd_kernel_path(fd, buf);
                if (l < 0)
                        return (int)l;
        }
        ids[n++] = (AjFileId){ makedev(stx.stx_dev_major, stx.stx_dev_minor), stx.stx_ino };
        /* Up through the mount tree as the kernel resolves "..": `buf` is the path the kernel
         * names the file by (d_path: its dentries and the mounts above them), so each prefix
         * is the parent ".." would give; one stat a level, where walking ".." from the fd
         * took an open, a stat and a close. Stops at our root. */
        if (buf[0] == '/' && !streq(buf, "/") && !(g && g->has_root && id_eq(ids[0], g->root))) {
                r = chain_by_names(buf, g, ids, &n);
                if (r < 0)
                        return r;
        }
        kept = malloc(n * sizeof(*kept));
        if (!kept)
                return -ENOMEM;
        memcpy(kept, ids, n * sizeof(*kept));
        *ret = (AjIdChain){ .ids = TAKE_PTR(kept),
                            .n = n,
                            .fs_path = (stx.stx_mask & STATX_MNT_ID)
                                               ? fs_path_of(stx.stx_mnt_id, buf, g ? g->mountinfo : NULL)
                                               : NULL };
        return 0;
}

int aj_id_chain_from_fd(int fd, AjIdChain *ret) { return mnt_id_chain_from_fd(fd, NULL, NULL, ret); }

/* `resolved`: `path` has no symlinks (realpath()'s), so it names the file as the kernel does. */
int mnt_id_chain_from_path(const char *path, Gather *g, bool resolved, AjIdChain *ret)
{
        _cleanup_free_ char *p = NULL;
        bool missing = false;
        int r;

        if (!path || path[0] != '/' || !ret)
                return -EINVAL;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (;;) {
                _cleanup_close_ int fd = open(p, O_PATH | O_CLOEXEC);
                char *slash;

                if (fd >= 0) {
                        r = mnt_id_chain_from_fd(fd, g, resolved ? p : NULL, ret);
                        if (r >= 0)
                                ret->missing = missing;
                        return r;
                }
                if ((errno != ENOENT && errno != ENOTDIR && errno != EACCES) || streq(p, "/"))
                        return negative_errno();
                slash = strrchr(p, '/');
                slash[slash == p ? 1 : 0] = '\0';
                missing = true;
        }
}

/* realpath(), resolved by the kernel: one open and one readlink, where glibc's realpath()
 * reads every component as a link (the sensitive places and the binds made that the
 * largest cost of planning). Without /proc, realpath() itself. */
char *mnt_kernel_realpath(const char *path)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        char buf[PATH_MAX];

        if (fd < 0)
                return NULL;
        if (mnt_fd_kernel_path(fd, buf) <= 0 || buf[0] != '/')
                return realpath(path, NULL);
        return strdup(buf);
}

/* realpath() of the longest existing prefix of `path` (absolute), plus the rest as written:
 * a place that does not exist yet (the config dir) is still compared where it would be. */
int mnt_resolve_prefix(const char *path, char **ret)
{
        _cleanup_free_ char *norm = NULL;
        int r;

        if (!path || path[0] != '/' || path_has_dotdot(path))
                return -EINVAL;
        r = path_normalize(path, &norm);
        if (r < 0)
                return r;
        for (size_t cut = strlen(norm);;) {
                char saved = norm[cut];
                _cleanup_free_ char *real = NULL;

                norm[cut] = '\0';
                real = mnt_kernel_realpath(cut ? norm : "/");
                norm[cut] = saved;
                if (real) {
                        char *out = NULL;

                        if (asprintf(&out, "%s%s", streq(real, "/") && norm[cut] ? "" : real, norm + cut) < 0)
                                return -ENOMEM;
                        if (!*out) {
                                free(out);
                                out = strdup("/");
                                if (!out)
                                        return -ENOMEM;
                        }
                        *ret = out;
                        return 0;
                }
                if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
                        return negative_errno();
                while (cut > 0 && norm[--cut] != '/')
                        ;
        }
}

/* Bounds on the walk below: more looked-at prefixes or symlinks than this and the place
 * is resolved the slow way (which has its own bounds). */
#define LOOKED_MAX 512
#define WALK_LINKS_MAX 16

static const Looked *look(Gather *g, const char *path)
{
        for (size_t i = 0; i < g->n_looked; i++)
                if (streq(g->looked[i].path, path))
                        return &g->looked[i];
        /* Allocated whole: entries are pointed to while more are added. */
        if (!g->looked && !(g->looked = calloc(LOOKED_MAX, sizeof(*g->looked))))
                return NULL;
        if (g->n_looked >= LOOKED_MAX)
                return NULL;
        Looked *l = &g->looked[g->n_looked];
        *l = (Looked){ .path = strdup(path) };
        if (!l->path)
                return NULL;
        struct statx stx;
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                  STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MNT_ID, &stx) < 0) {
                l->err = negative_errno();
        } else {
                l->id = (AjFileId){ makedev(stx.stx_dev_major, stx.stx_dev_minor), stx.stx_ino };
                l->mode = stx.stx_mode;
                l->size = stx.stx_size;
                l->mnt_id = stx.stx_mnt_id;
                l->has_mnt_id = (stx.stx_mask & STATX_MNT_ID) != 0;
        }
        g->n_looked++;
        return l;
}

/* What the symlink `link` (its parent directory `dir`, resolved) points to, followed by
 * `rest`, as a new normalized path; false where this walk does not follow: a target with
 * "..", a link whose size is not its target's length (a /proc magic link), too long. */
static bool follow_link(const Looked *link, const char *dir, const char *rest, char *out)
{
        char target[PATH_MAX], joined[2 * PATH_MAX + 2];
        ssize_t n;

        if (link->size == 0 || link->size >= sizeof(target))
                return false;
        n = readlink(link->path, target, sizeof(target) - 1);
        if (n < 0 || (uint64_t)n != link->size)
                return false;
        target[n] = '\0';
        if (path_has_dotdot(target))
                return false;
        snprintf(joined, sizeof(joined), "%s/%s%s", target[0] == '/' ? "" : dir, target, rest);
        _cleanup_free_ char *norm = NULL;
        if (path_normalize(joined, &norm) < 0 || strlen(norm) >= PATH_MAX)
                return false;
        strcpy(out, norm);
        return true;
}

/* mnt_resolve_prefix() and mnt_id_chain_from_path() in one walk for `path` (absolute, normalized,
 * no ".."): one lstat a component, shared between the places of a list, where those two
 * open, read back and stat every place and each of its parents. The same answers (a unit
 * test compares them); 1: not answered here (the caller takes the slow way). */
static int walk_place(Gather *g, const char *path, char **ret_real, AjIdChain *ret_chain)
{
        AjFileId ids[AJ_ID_CHAIN_MAX];
        char cur[PATH_MAX];
        const Looked *leaf = NULL;
        size_t n = 0, links = 0;
        bool missing = false;

        if (!g->has_root || strlen(path) >= sizeof(cur))
                return 1;
        strcpy(cur, path);
restart:
        n = 0;
        ids[n++] = g->root;
        leaf = NULL;
        for (size_t e = 1; cur[e - 1] && !streq(cur, "/");) {
                while (cur[e] && cur[e] != '/')
                        e++;
                char saved = cur[e];
                cur[e] = '\0';
                const Looked *l = look(g, cur);
                cur[e] = saved;
                if (!l)
                        return 1;
                if (l->err == -ENOENT || l->err == -ENOTDIR || l->err == -EACCES) {
                        missing = true;
                        break;
                }
                if (l->err < 0)
                        return l->err;
                if (S_ISLNK(l->mode)) {
                        char dir[PATH_MAX];
                        size_t slash = strrchr(l->path, '/') - l->path;
                        memcpy(dir, l->path, slash);
                        dir[slash] = '\0';
                        if (++links > WALK_LINKS_MAX || !follow_link(l, dir, cur + e, cur))
                                return 1;
                        goto restart;
                }
                if (n >= AJ_ID_CHAIN_MAX)
                        return 1;
                ids[n++] = l->id;
                leaf = l;
                if (!cur[e])
                        break;
                if (!S_ISDIR(l->mode)) { /* a file with a path below it */
                        missing = true;
                        break;
                }
                e++;
        }
        /* The chain runs from the leaf up; a leaf that is our root (also through a bind
         * mount of it) has no parents, as mnt_id_chain_from_fd() has it. */
        size_t kept_n = id_eq(ids[n - 1], g->root) ? 1 : n;
        AjFileId *kept = malloc(kept_n * sizeof(*kept));
        char *real = strdup(cur);
        if (!leaf && !(leaf = look(g, "/")))
                return 1;
        char *fs_path = leaf->err == 0 && leaf->has_mnt_id ? fs_path_of(leaf->mnt_id, leaf->path, g->mountinfo) : NULL;
        if (!kept || !real) {
                free(kept), free(real), free(fs_path);
                return -ENOMEM;
        }
        for (size_t i = 0; i < kept_n; i++)
                kept[i] = ids[n - 1 - i];
        *ret_real = real;
        *ret_chain = (AjIdChain){ .ids = kept, .n = kept_n, .fs_path = fs_path, .missing = missing };
        return 0;
}

int aj_id_chain_from_path(const char *path, AjIdChain *ret) { return mnt_id_chain_from_path(path, NULL, false, ret); }

/* The slow way: realpath of the longest existing prefix, then its chain through an fd. */
static int resolve_slow(const char *path, Gather *g, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_free_ char *real = NULL;
        int r = mnt_resolve_prefix(path, &real);
        if (r < 0)
                return r;
        r = mnt_id_chain_from_path(real, g, true, ret_chain);
        if (r < 0)
                return r;
        *ret_real = TAKE_PTR(real);
        return 0;
}

int mnt_resolve_place(const char *path, Gather *g, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_free_ char *norm = NULL;
        if (g && path[0] == '/' && !path_has_dotdot(path) && path_normalize(path, &norm) == 0) {
                int r = walk_place(g, norm, ret_real, ret_chain);
                if (r <= 0)
                        return r;
        }
        return resolve_slow(path, g, ret_real, ret_chain);
}

int aj_sensitive_resolve(const char *path, bool walk, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_(mnt_gather_done) Gather g;
        mnt_gather_init(&g);
        if (!path || path[0] != '/' || !ret_real || !ret_chain)
                return -EINVAL;
        if (!walk)
                return resolve_slow(path, &g, ret_real, ret_chain);
        _cleanup_free_ char *norm = NULL;
        if (path_has_dotdot(path) || path_normalize(path, &norm) < 0)
                return -EINVAL;
        return walk_place(&g, norm, ret_real, ret_chain);
}
