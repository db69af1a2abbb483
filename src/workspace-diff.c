/* SPDX-License-Identifier: Apache-2.0 */
/* What a run changed: the upper dir of its overlay walked against the workspace (lower). */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "util/open-under.h"
#include "workspace-internal.h"

/* ---- diff ----------------------------------------------------------------- */

typedef struct {
        AjWsChange *v;
        size_t n, cap;
        size_t path_bytes; /* of the changes' paths, with their NULs */
        uint64_t since_ns;
        size_t mount_at;     /* 0, or the length of the prefix of path that is a mount point */
        char path[PATH_MAX]; /* of the entry being looked at */
        AjError *ret_error;
} Diff;

/* A path or symlink target of `len` bytes more held: the agent's names, each up to PATH_MAX,
 * in the operator's process. */
static int hold_path_bytes(Diff *d, size_t len)
{
        if (len > AJ_WS_MAX_PATH_BYTES - d->path_bytes)
                return aj_error_set(d->ret_error, -E2BIG,
                                    "The workspace's changes have more than %u MiB of paths (at '%s'): too many to "
                                    "review",
                                    AJ_WS_MAX_PATH_BYTES >> 20, d->path);
        d->path_bytes += len;
        return 0;
}

/* A change at d->path: `type` is the upper entry's st_mode (the lower one's for DELETED),
 * `lst` the lower entry's stat (NULL: none, or not to compare modes with). */
static int diff_add(Diff *d, AjWsChangeKind kind, mode_t type, uint64_t size, bool conflict, bool skipped,
                    const char *note, const struct stat *lst)
{
        if (d->n >= AJ_WS_MAX_CHANGES)
                return aj_error_set(d->ret_error, -E2BIG, "The workspace has more than %u changes (at '%s')",
                                    AJ_WS_MAX_CHANGES, d->path);
        int r = hold_path_bytes(d, strlen(d->path) + 1);
        if (r < 0)
                return r;
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 64;
                AjWsChange *v = reallocarray(d->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->cap = cap;
        }
        AjWsChange c = {
                .kind = kind,
                .type = type & S_IFMT,
                .size = size,
                .conflict = conflict,
                .skipped = skipped,
                .path = strdup(d->path),
                .mount_at = d->mount_at,
                .note = note ? strdup(note) : NULL,
                .git_code = aj_ws_change_git_code(d->path, kind, type & S_IFMT),
        };
        /* The mode commit gives a file or directory, and what it was in the workspace. */
        if (kind != AJ_WS_DELETED && !skipped && (S_ISREG(type) || S_ISDIR(type))) {
                c.has_mode = true;
                c.mode = sanitized_mode(type) & 07777;
                if (lst && (lst->st_mode & S_IFMT) == (type & S_IFMT) && (lst->st_mode & 07777) != c.mode) {
                        c.mode_changed = true;
                        c.mode_was = lst->st_mode & 07777;
                }
        }
        if (!c.path || (note && !c.note)) {
                free(c.path);
                free(c.note);
                return -ENOMEM;
        }
        d->v[d->n++] = c;
        return 0;
}

/* Whether the lower entry `name` (stat in *st), or for a directory anything below it,
 * changed after since_ns: 1 yes, 0 no. Does not descend into other mounts: the commit
 * would not remove anything there. */
static int lower_changed(Diff *d, int dir_fd, const char *name, const struct stat *st, unsigned depth)
{
        if (d->since_ns == 0)
                return 0;
        if (changed_since(st, d->since_ns))
                return 1;
        if (!S_ISDIR(st->st_mode))
                return 0;
        if (depth >= AJ_WS_MAX_DEPTH)
                return aj_error_set(d->ret_error, -ELOOP, "'%s' in the workspace is more than %d directories deep",
                                    d->path, AJ_WS_MAX_DEPTH);

        _cleanup_closedir_ DIR *dir = NULL;
        int r = ws_open_dir_stream(dir_fd, name, &dir);
        if (r < 0)
                goto error;
        const char *child;
        while ((r = ws_next_name(dir, &child)) > 0) {
                struct stat cst;
                if (fstatat(dirfd(dir), child, &cst, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        r = -errno;
                        goto error;
                }
                if (S_ISDIR(cst.st_mode) && cst.st_dev != st->st_dev)
                        continue;
                r = lower_changed(d, dirfd(dir), child, &cst, depth + 1);
                if (r != 0)
                        return r;
        }
        if (r == 0)
                return 0;
error:
        return aj_error_set(d->ret_error, r, "Failed to check '%s' in the workspace for changes during the run: %s",
                            d->path, strerror(-r));
}

/* Whether the lower entry `name` in ldir_fd (d->path) is a mount point on the host: the
 * root of a mount (a bind mount of a directory of the same filesystem too), or, where the
 * kernel does not say (before 5.8), on another device than its directory. Overlayfs does
 * not cross mounts in a layer: the agent saw the directory under it. 1 yes, 0 no. */
static int lower_mount_point(Diff *d, int ldir_fd, const char *name)
{
        struct statx stx, dir;
        if (statx(ldir_fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) < 0)
                return aj_error_set(d->ret_error, -errno, "Failed to stat '%s' in the workspace: %m", d->path);
        if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
                return !!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        if (statx(ldir_fd, "", AT_EMPTY_PATH, STATX_TYPE, &dir) < 0)
                return aj_error_set(d->ret_error, -errno, "Failed to stat the directory of '%s' in the workspace: %m",
                                    d->path);
        return stx.stx_dev_major != dir.stx_dev_major || stx.stx_dev_minor != dir.stx_dev_minor;
}

static int is_opaque(Diff *d, int fd)
{
        char v[2];
        ssize_t n = fgetxattr(fd, OPAQUE_XATTR, v, sizeof(v));
        if (n < 0) {
                if (errno == ENODATA || errno == ENOTSUP || errno == ERANGE)
                        return 0;
                return aj_error_set(d->ret_error, -errno,
                                    "Failed to read " OPAQUE_XATTR " of '%s' in the upper dir: %m", d->path);
        }
        return n == 1 && v[0] == 'y';
}

static int diff_dir(Diff *d, DIR *dir_in, int ldir_fd, size_t plen, unsigned depth);

/* An upper directory `name` in `dir` (d->path, length clen): what it is against the lower
 * entry `lst` (NULL: none), then its contents. */
static int diff_subdir(Diff *d, DIR *dir, int ldir_fd, const char *name, const struct stat *ust, const struct stat *lst,
                       size_t clen, unsigned depth)
{
        bool in_lower = lst;
        int r;
        _cleanup_closedir_ DIR *child = NULL;
        _cleanup_close_ int lchild_fd = -1;
        r = ws_open_dir_stream(dirfd(dir), name, &child);
        if (r < 0)
                return aj_error_set(d->ret_error, r, "Failed to open '%s' in the upper dir: %s", d->path, strerror(-r));
        int opaque = is_opaque(d, dirfd(child));
        if (opaque < 0)
                return opaque;

        if (!in_lower)
                r = diff_add(d, AJ_WS_ADDED, ust->st_mode, 0, false, false, NULL, NULL);
        else if (opaque) {
                r = lower_changed(d, ldir_fd, name, lst, depth);
                if (r >= 0) {
                        char note[64];
                        snprintf(note, sizeof(note), "replaces %s", ws_type_article(lst->st_mode));
                        r = diff_add(d, AJ_WS_REPLACED, ust->st_mode, 0, r > 0, false,
                                     S_ISDIR(lst->st_mode) ? NULL : note, lst);
                }
        } else if (!S_ISDIR(lst->st_mode)) {
                char note[128];
                snprintf(note, sizeof(note),
                         "in the workspace this is now %s, not a directory: it changed during the run",
                         ws_type_article(lst->st_mode));
                r = diff_add(d, AJ_WS_MODIFIED, ust->st_mode, 0, changed_since(lst, d->since_ns), false, note, lst);
        } else {
                /* Merged: a copied-up parent, a change only if its mode is. */
                r = 0;
                if ((ust->st_mode & 07777) != (lst->st_mode & 07777))
                        r = diff_add(d, AJ_WS_MODIFIED, ust->st_mode, 0, changed_since(lst, d->since_ns), false, NULL,
                                     lst);
                if (r >= 0) {
                        lchild_fd = openat(ldir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (lchild_fd < 0)
                                return aj_error_set(d->ret_error, -errno, "Failed to open '%s' in the workspace: %m",
                                                    d->path);
                }
        }
        if (r < 0)
                return r;
        r = diff_dir(d, TAKE_PTR(child), lchild_fd, clen, depth + 1);
        if (r < 0)
                return r;
        return 0;
}

/* A symlink's target, on the change just added: held like a path (AJ_WS_MAX_PATH_BYTES). */
static int diff_target(Diff *d, int udir_fd, const char *name)
{
        AjWsChange *c = &d->v[d->n - 1];
        _cleanup_free_ char *target = malloc(PATH_MAX);
        if (!target)
                return -ENOMEM;
        ssize_t n = readlinkat(udir_fd, name, target, PATH_MAX);
        if (n < 0)
                return aj_error_set(d->ret_error, -errno, "Failed to read the symlink '%s' in the upper dir: %m",
                                    d->path);
        if (n >= PATH_MAX)
                return aj_error_set(d->ret_error, -ENAMETOOLONG, "The symlink '%s' in the upper dir is too long",
                                    d->path);
        target[n] = 0;
        int r = hold_path_bytes(d, (size_t)n + 1);
        if (r < 0)
                return r;
        c->outside = ws_symlink_outside(c->path, target);
        c->target = strdup(target);
        return c->target ? 0 : -ENOMEM;
}

/* An upper non-directory `name` in udir_fd (d->path) against the lower entry `lst` (NULL:
 * none). */
static int diff_file(Diff *d, int udir_fd, int ldir_fd, const char *name, const struct stat *ust,
                     const struct stat *lst, unsigned depth)
{
        bool in_lower = lst;
        int r;
        bool skipped = !S_ISREG(ust->st_mode) && !S_ISLNK(ust->st_mode);
        bool conflict = false;
        char note[96] = "";
        if (in_lower) {
                r = lower_changed(d, ldir_fd, name, lst, depth);
                if (r < 0)
                        return r;
                conflict = r > 0;
                if ((lst->st_mode & S_IFMT) != (ust->st_mode & S_IFMT))
                        snprintf(note, sizeof(note), "replaces %s", ws_type_article(lst->st_mode));
        }
        if (skipped)
                snprintf(note, sizeof(note), "%s: not applied", ws_type_article(ust->st_mode));
        r = diff_add(d, in_lower ? AJ_WS_MODIFIED : AJ_WS_ADDED, ust->st_mode,
                     S_ISREG(ust->st_mode) ? (uint64_t)ust->st_size : 0, conflict, skipped, note[0] ? note : NULL, lst);
        if (r < 0)
                return r;
        if (S_ISREG(ust->st_mode))
                d->v[d->n - 1].allocated = (uint64_t)ust->st_blocks * 512;
        if (S_ISLNK(ust->st_mode))
                return diff_target(d, udir_fd, name);
        return 0;
}

/* One upper directory, `dir` (consumed), at d->path (length plen); ldir_fd is the lower
 * directory at the same path, or -1 when everything below is new (an added or opaque
 * directory, or one replacing a non-directory). */
static int diff_dir(Diff *d, DIR *dir_in, int ldir_fd, size_t plen, unsigned depth)
{
        _cleanup_closedir_ DIR *dir = dir_in;
        const char *name;
        int r;

        if (depth >= AJ_WS_MAX_DEPTH)
                return aj_error_set(d->ret_error, -ELOOP, "'%s' in the upper dir is more than %d directories deep",
                                    shown(d->path), AJ_WS_MAX_DEPTH);

        while ((r = ws_next_name(dir, &name)) > 0) {
                size_t nlen = strlen(name), clen = plen + (plen > 0) + nlen;
                if (clen >= sizeof(d->path))
                        return aj_error_set(d->ret_error, -ENAMETOOLONG, "A path in '%s' in the upper dir is too long",
                                            shown(d->path));
                if (plen > 0)
                        d->path[plen] = '/';
                memcpy(d->path + plen + (plen > 0), name, nlen + 1);

                struct stat ust, lst;
                if (fstatat(dirfd(dir), name, &ust, AT_SYMLINK_NOFOLLOW) < 0)
                        return aj_error_set(d->ret_error, -errno, "Failed to stat '%s' in the upper dir: %m", d->path);
                bool in_lower = false;
                if (ldir_fd >= 0) {
                        if (fstatat(ldir_fd, name, &lst, AT_SYMLINK_NOFOLLOW) >= 0)
                                in_lower = true;
                        else if (errno != ENOENT)
                                return aj_error_set(d->ret_error, -errno, "Failed to stat '%s' in the workspace: %m",
                                                    d->path);
                }

                size_t outer_mount_at = d->mount_at;
                if (in_lower && !d->mount_at) {
                        r = lower_mount_point(d, ldir_fd, name);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                d->mount_at = clen;
                }

                if (is_whiteout(&ust)) {
                        /* In an added or opaque directory, or for something already gone from
                         * lower: nothing to delete. */
                        if (in_lower) {
                                r = lower_changed(d, ldir_fd, name, &lst, depth);
                                if (r < 0)
                                        return r;
                                r = diff_add(d, AJ_WS_DELETED, lst.st_mode, 0, r > 0, false, NULL, NULL);
                                if (r < 0)
                                        return r;
                        }
                } else if (S_ISDIR(ust.st_mode)) {
                        r = diff_subdir(d, dir, ldir_fd, name, &ust, in_lower ? &lst : NULL, clen, depth);
                        if (r < 0)
                                return r;
                } else {
                        r = diff_file(d, dirfd(dir), ldir_fd, name, &ust, in_lower ? &lst : NULL, depth);
                        if (r < 0)
                                return r;
                }
                d->path[plen] = 0;
                d->mount_at = outer_mount_at;
        }
        if (r < 0)
                return aj_error_set(d->ret_error, r, "Failed to read '%s' in the upper dir: %s", shown(d->path),
                                    strerror(-r));
        return 0;
}

/* Path order, component by component: '/' sorts before any other byte, so "a/b" comes
 * before "a-b" and a directory's contents follow it directly. */
static int path_compare(const char *a, const char *b)
{
        for (;; a++, b++) {
                unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
                if (x == y) {
                        if (x == 0)
                                return 0;
                        continue;
                }
                if (x == 0 || y == 0)
                        return x == 0 ? -1 : 1;
                if (x == '/' || y == '/')
                        return x == '/' ? -1 : 1;
                return x < y ? -1 : 1;
        }
}

int ws_change_compare(const void *a, const void *b)
{
        return path_compare(((const AjWsChange *)a)->path, ((const AjWsChange *)b)->path);
}

/* Could git take `dir` (relative, "" the root) for a repository when it is run there (a
 * bare one needs no ".git")? git wants a HEAD there, and objects and refs either there or
 * in the directory its commondir file names (anywhere: an agent's one without a HEAD of
 * its own), so a HEAD, in the upper tree (not a whiteout) or the lower one, is enough.
 * Resolved without symlinks. Over-approximates the merged view (a whiteout in an opaque
 * parent is not looked for): a change is marked falsely, never missed. */
static bool looks_like_gitdir(int upper_fd, int lower_fd, const char *dir)
{
        _cleanup_close_ int ud = aj_open_under(upper_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0,
                                               AJ_UNDER_NO_SYMLINKS);
        _cleanup_close_ int ld = aj_open_under(lower_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0,
                                               AJ_UNDER_NO_SYMLINKS);
        struct stat st;
        return (ud >= 0 && fstatat(ud, "HEAD", &st, AT_SYMLINK_NOFOLLOW) == 0 && !is_whiteout(&st)) ||
               (ld >= 0 && fstatat(ld, "HEAD", &st, AT_SYMLINK_NOFOLLOW) == 0);
}

/* A change below a directory git takes for a repository without naming it ".git" (a bare
 * repository, a --separate-git-dir): judged as if that directory were one
 * (ws_gitdir_git_code). */
/* How many leading directories two paths share: "a/b/c" and "a/b/d" two. */
static size_t shared_dirs(const char *a, const char *b)
{
        size_t k = 0;
        for (size_t j = 0; a[j] && a[j] == b[j]; j++)
                k += a[j] == '/';
        return k;
}

static void mark_bare_gitdirs(AjWsChange *v, size_t n, int upper_fd, int lower_fd)
{
        char dir[PATH_MAX];
        /* looks_like_gitdir() of the directories above the change before, by their depth (0:
         * the top), -1 not known: the changes are sorted, so the next one shares most of
         * them. Asked afresh for each change, an agent's 200 levels of "hooks/hooks/..." over
         * 10,000 files took 4 million opens and 29 s of diff, and commit diffs again. */
        signed char known[AJ_WS_MAX_DEPTH + 2];
        memset(known, -1, sizeof(known));
        const char *prev = "";
        for (size_t i = 0; i < n; i++) {
                AjWsChange *c = &v[i];
                for (size_t k = shared_dirs(prev, c->path) + 1; k < ARRAY_SIZE(known); k++)
                        known[k] = -1;
                prev = c->path;
                size_t depth = 0;
                for (const char *rest = c->path; rest && *rest && !c->git_code; depth++) {
                        const char *end = strchrnul(rest, '/');
                        const char *why = ws_gitdir_git_code(rest, c->type);
                        if (why) {
                                int is = depth < ARRAY_SIZE(known) ? known[depth] : -1;
                                if (is < 0) {
                                        size_t dlen = rest == c->path ? 0 : (size_t)(rest - c->path - 1);
                                        memcpy(dir, c->path, dlen);
                                        dir[dlen] = 0;
                                        if (dlen == 0)
                                                strcpy(dir, ".");
                                        is = looks_like_gitdir(upper_fd, lower_fd, dir);
                                        if (depth < ARRAY_SIZE(known))
                                                known[depth] = (signed char)is;
                                }
                                if (is)
                                        c->git_code = why;
                        }
                        rest = *end ? end + 1 : NULL;
                }
        }
}

/* Is `path` at or below `dir` ("" the root)? */
static bool at_or_below(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        return n == 0 || (strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0));
}

#define MAX_NESTED_REPOS 256

/* The work trees' tops whose repositories' config may name a change: the workspace's, and
 * each directory above a change that holds a .git in lower (a submodule, a nested
 * repository: git run in there reads its config). */
static int repo_tops(const AjWsChange *v, size_t n, int lower_fd, char ***ret, size_t *ret_n, AjError *ret_error)
{
        size_t cap = 8, k = 0;
        char **tops = malloc(cap * sizeof(*tops));
        char probe[PATH_MAX + 8];
        int r = -ENOMEM;
        if (!tops || !(tops[k++] = strdup("")))
                goto fail;
        for (size_t i = 0; i < n; i++) {
                const char *p = v[i].path, *prev = i ? v[i - 1].path : "";
                for (const char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
                        size_t dlen = (size_t)(slash - p);
                        /* Above the change before too: looked at then. */
                        if (strncmp(prev, p, dlen) == 0 && prev[dlen] == '/')
                                continue;
                        snprintf(probe, sizeof(probe), "%.*s/.git", (int)dlen, p);
                        struct stat st;
                        if (fstatat(lower_fd, probe, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        if (k >= MAX_NESTED_REPOS) {
                                r = aj_error_set(ret_error, -E2BIG,
                                                 "Changes below more than %d repositories in the workspace: they "
                                                 "cannot be checked for git's own files",
                                                 MAX_NESTED_REPOS);
                                goto fail;
                        }
                        if (k == cap) {
                                char **more = reallocarray(tops, cap * 2, sizeof(*tops));
                                if (!more)
                                        goto fail;
                                tops = more;
                                cap *= 2;
                        }
                        if (!(tops[k] = strndup(p, dlen)))
                                goto fail;
                        k++;
                }
        }
        *ret = tops;
        *ret_n = k;
        return 0;
fail:
        for (size_t j = 0; j < k; j++)
                free(tops[j]);
        free(tops);
        return r;
}

/* The changes at or below a path the config of the workspace's repositories names (a
 * hooksPath, an included file, a command's script), and those in place of a directory
 * above one (a symlink there, a removal; not a mode change). v is sorted: a path's
 * changes follow it directly. */
static int mark_config_targets(AjWsChange *v, size_t n, int lower_fd, AjError *ret_error)
{
        char **tops = NULL, **targets = NULL;
        size_t n_tops = 0, n_targets = 0;
        int r = repo_tops(v, n, lower_fd, &tops, &n_tops, ret_error);
        if (r < 0)
                return r;
        r = ws_git_config_targets(lower_fd, (const char *const *)tops, n_tops, &targets, &n_targets, ret_error);
        for (size_t i = 0; i < n_tops; i++)
                free(tops[i]);
        free(tops);
        if (r < 0)
                return r;
        static const char why[] = "named by the workspace repository's git config (core.hooksPath, an include, a "
                                  "command): git on this host may run code from it";
        for (size_t k = 0; k < n_targets; k++) {
                const char *t = targets[k];
                /* The first change at or after t, then those below it. */
                size_t lo = 0, hi = n;
                AjWsChange key = { .path = (char *)t };
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (ws_change_compare(&v[mid], &key) < 0)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (size_t i = lo; i < n && at_or_below(v[i].path, t); i++)
                        v[i].git_code = v[i].git_code ?: why;
                /* Its parents, each looked up. */
                for (char *slash = strchr(targets[k], '/'); slash; slash = strchr(slash + 1, '/')) {
                        *slash = 0;
                        AjWsChange *c = bsearch(&key, v, n, sizeof(*v), ws_change_compare);
                        *slash = '/';
                        if (c && !(c->kind == AJ_WS_MODIFIED && S_ISDIR(c->type)))
                                c->git_code = c->git_code ?: why;
                }
                free(targets[k]);
        }
        free(targets);
        return 0;
}

int aj_ws_diff(int upper_fd, int lower_fd, uint64_t since_ns, AjWsChange **ret, size_t *ret_n, AjError *ret_error)
{
        Diff *d = calloc(1, sizeof(*d)); /* PATH_MAX of path: not on the stack */
        if (!d)
                return -ENOMEM;
        d->since_ns = since_ns;
        d->ret_error = ret_error;

        DIR *root = NULL;
        int r = ws_open_dir_stream(upper_fd, ".", &root);
        if (r < 0)
                r = aj_error_set(ret_error, r, "Failed to open the upper dir: %s", strerror(-r));
        else
                r = diff_dir(d, root, lower_fd, 0, 0);
        if (r < 0) {
                aj_ws_changes_free(d->v, d->n);
                free(d);
                return r;
        }
        if (d->n > 1)
                qsort(d->v, d->n, sizeof(*d->v), ws_change_compare);
        mark_bare_gitdirs(d->v, d->n, upper_fd, lower_fd);
        r = mark_config_targets(d->v, d->n, lower_fd, ret_error);
        if (r < 0) {
                aj_ws_changes_free(d->v, d->n);
                free(d);
                return r;
        }
        *ret = d->v;
        *ret_n = d->n;
        free(d);
        return 0;
}
