/* SPDX-License-Identifier: Apache-2.0 */
/* After a run that wrote the workspace in place (mode "rw"): which of git's own files in the
 * workspace's repositories changed during it (workspace.h, aj_ws_git_changed). */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/open-under.h"
#include "workspace-internal.h"

typedef struct {
        char *path; /* relative: a ".git" or ".hg" entry, or a directory holding a HEAD ("" the root) */
        bool bare;  /* the latter: its entries are judged as a gitdir's (ws_gitdir_git_code) */
} Gitdir;

typedef struct {
        uint64_t since_ns;
        size_t walk_entries;
        unsigned walk_depth;
        uint64_t walk_deadline_ns; /* CLOCK_MONOTONIC */
        size_t walked, seen, count;
        const char *cut_at; /* the first bound that stopped a look, NULL: none did */
        bool all;           /* every entry counts (a directory the config names), not only git's own files */
        bool bare;          /* scanning a directory holding a HEAD, the first bare_len bytes of path */
        size_t bare_len;
        Gitdir *found;
        size_t n_found;
        char *config_error; /* why the config could not be read (cut_at "config") */
        json_t *paths;
        char path[PATH_MAX];
} GitScan;

static void cut(GitScan *s, const char *bound)
{
        if (!s->cut_at)
                s->cut_at = bound;
}

static int note(GitScan *s, const char *path)
{
        s->count++;
        if (json_array_size(s->paths) >= AJ_WS_GIT_SHOWN)
                return 0;
        /* The agent's names: kept as bytes where UTF-8, escaped where not (JSON needs it). */
        json_t *p = aj_json_string_shown(path);
        return p && json_array_append_new(s->paths, p) == 0 ? 0 : -ENOMEM;
}

/* s->path (its first len bytes kept) with "/name" ("name" at the root) appended: false
 * when too long. */
static bool path_push(GitScan *s, size_t len, const char *name, size_t *ret_len)
{
        size_t n = strlen(name), at = len ? len + 1 : 0;
        if (at + n >= sizeof(s->path))
                return false;
        if (len)
                s->path[len] = '/';
        memcpy(s->path + at, name, n + 1);
        *ret_len = at + n;
        return true;
}

/* The rule of git's own files, the overlay's (workspace.c): by the path, or below a
 * directory holding a HEAD as if it were a .git. */
static bool is_git_code(const GitScan *s, mode_t type)
{
        if (s->all)
                return true;
        if (s->bare)
                return ws_gitdir_git_code(s->path + s->bare_len + (s->bare_len > 0), type) != NULL;
        return aj_ws_path_git_code(s->path, type) != NULL;
}

/* The entries of the directory open at fd (taken; its path in s->path, len bytes of it). */
static int scan_dir(GitScan *s, int fd, size_t len, unsigned depth)
{
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *e;
        while (r >= 0 && (errno = 0, e = readdir(d))) {
                if (streq(e->d_name, ".") || streq(e->d_name, ".."))
                        continue;
                if (++s->seen > AJ_WS_GIT_MAX_ENTRIES) {
                        cut(s, "entries");
                        break;
                }
                size_t clen;
                if (!path_push(s, len, e->d_name, &clen)) {
                        cut(s, "path");
                        continue;
                }
                struct stat st;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone since the listing */
                bool mine = is_git_code(s, st.st_mode & S_IFMT);
                if (mine && aj_workspace_changed_since(&st.st_ctim, s->since_ns))
                        r = note(s, s->path);
                /* Down where git keeps what it may run; not into an object store, refs or
                 * logs, also a submodule's (modules/NAME/objects: large, and data). */
                bool data = streq(e->d_name, "objects") || streq(e->d_name, "refs") || streq(e->d_name, "logs");
                bool holds = !mine && !s->bare && S_ISDIR(st.st_mode) && ws_dir_holds_git_code(s->path);
                if (r >= 0 && (mine || holds) && S_ISDIR(st.st_mode) && !data) {
                        if (depth + 1 >= AJ_WS_GIT_MAX_DEPTH) {
                                cut(s, "depth");
                                continue;
                        }
                        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                r = scan_dir(s, sub, clen, depth + 1);
                }
        }
        if (r >= 0 && !e && errno)
                r = -errno;
        s->path[len] = 0;
        closedir(d);
        return r;
}

static int add_gitdir(GitScan *s, const char *path, bool bare)
{
        if (s->n_found >= AJ_WS_GIT_MAX_REPOS) {
                cut(s, "repositories");
                return 1;
        }
        if (!(s->found[s->n_found].path = strdup(path)))
                return -ENOMEM;
        s->found[s->n_found++].bare = bare;
        return 0;
}

static bool is_dot_git(const char *name)
{
        return strcasecmp(name, ".git") == 0 || strcasecmp(name, ".hg") == 0 || strcasecmp(name, ".jj") == 0;
}

/* A directory the walk is to list: its name (an offset in Walk.names) in the directory
 * `parent` (an index in Walk.dirs; SIZE_MAX: the workspace's root). */
typedef struct {
        size_t parent, name;
        unsigned depth;
} WalkDir;

typedef struct {
        WalkDir *dirs;
        size_t n, cap;
        char *names;
        size_t names_len, names_cap;
} Walk;

#define WALK_MAX_NAME_BYTES (4u << 20)

static int walk_push(GitScan *s, Walk *w, size_t parent, const char *name, unsigned depth)
{
        size_t len = strlen(name) + 1;
        if (w->names_len + len > WALK_MAX_NAME_BYTES) {
                cut(s, "workspace_entries");
                return 1;
        }
        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 256;
                WalkDir *v = reallocarray(w->dirs, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                w->dirs = v;
                w->cap = cap;
        }
        if (w->names_len + len > w->names_cap) {
                size_t cap = w->names_cap * 2 > w->names_len + len ? w->names_cap * 2 : w->names_len + len + 4096;
                char *v = realloc(w->names, cap);
                if (!v)
                        return -ENOMEM;
                w->names = v;
                w->names_cap = cap;
        }
        memcpy(w->names + w->names_len, name, len);
        w->dirs[w->n++] = (WalkDir){ .parent = parent, .name = w->names_len, .depth = depth };
        w->names_len += len;
        return 0;
}

/* s->path = the path of w->dirs[i], from its name and its parents'; its length, or
 * -ENAMETOOLONG. */
static ssize_t walk_path(GitScan *s, const Walk *w, size_t i)
{
        size_t len = 0;
        for (size_t k = i; k != SIZE_MAX; k = w->dirs[k].parent) {
                size_t n = strlen(w->names + w->dirs[k].name);
                len += n ? n + (len > 0) : 0;
        }
        if (len >= sizeof(s->path))
                return -ENAMETOOLONG;
        s->path[len] = 0;
        size_t end = len;
        for (size_t k = i; k != SIZE_MAX; k = w->dirs[k].parent) {
                const char *name = w->names + w->dirs[k].name;
                size_t n = strlen(name);
                if (!n)
                        break; /* the root */
                if (end < len)
                        s->path[--end] = '/';
                end -= n;
                memcpy(s->path + end, name, n);
        }
        return (ssize_t)len;
}

/* Lists the directory w->dirs[i] (s->path, len bytes): its .git and .hg, its
 * subdirectories queued, a HEAD. 1: a bound stopped the walk. */
static int walk_dir(GitScan *s, Walk *w, int ws_fd, size_t i, size_t len)
{
        unsigned depth = w->dirs[i].depth;
        int fd = aj_open_under(ws_fd, s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, AJ_UNDER_NO_SYMLINKS);
        if (fd < 0)
                return 0; /* gone, or a symlink now */
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        bool head = false;
        struct dirent *e;
        while (r == 0 && (errno = 0, e = readdir(d))) {
                if (streq(e->d_name, ".") || streq(e->d_name, ".."))
                        continue;
                if (++s->walked > s->walk_entries) {
                        cut(s, "workspace_entries");
                        r = 1;
                        break;
                }
                bool dot_git = is_dot_git(e->d_name);
                head = head || (streq(e->d_name, "HEAD") && e->d_type != DT_DIR); /* as the overlay's diff */
                unsigned char type = e->d_type;
                if (!dot_git && type != DT_DIR && type != DT_UNKNOWN)
                        continue;
                size_t clen;
                if (!path_push(s, len, e->d_name, &clen)) {
                        cut(s, "path");
                        continue;
                }
                if (dot_git) {
                        r = add_gitdir(s, s->path, false);
                        s->path[len] = 0;
                        continue;
                }
                s->path[len] = 0;
                struct stat st;
                if (type == DT_UNKNOWN &&
                    (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)))
                        continue;
                if (depth + 1 >= s->walk_depth)
                        cut(s, "workspace_depth");
                else
                        r = walk_push(s, w, i, e->d_name, depth + 1);
        }
        if (r == 0 && !e && errno)
                r = -errno;
        s->path[len] = 0;
        closedir(d);
        if (r == 0 && head)
                r = add_gitdir(s, s->path, true);
        return r;
}

/* Finds the repositories in the workspace: each ".git" or ".hg" entry (any case: a
 * case-folding directory), not walked into, and each directory holding a HEAD (git may
 * take it for a gitdir when run there; the overlay's diff judges such a directory the
 * same way). Breadth first, so that when a bound stops it in a large tree (a deep
 * node_modules) the shallow levels were all seen. A directory is listed only while the
 * time allowed lasts (a cold cache, a network file system). Lists names only: a
 * directory's type comes with its name (d_type), stat() only where the file system
 * leaves it out. */
static int walk(GitScan *s, int ws_fd)
{
        Walk w = {};
        int r = walk_push(s, &w, SIZE_MAX, "", 0);
        for (size_t i = 0; r == 0 && i < w.n; i++) {
                if (aj_now_monotonic_ns() > s->walk_deadline_ns) {
                        cut(s, "workspace_time");
                        break;
                }
                ssize_t len = walk_path(s, &w, i);
                if (len < 0)
                        cut(s, "path");
                else
                        r = walk_dir(s, &w, ws_fd, i, (size_t)len);
        }
        free(w.dirs);
        free(w.names);
        return r;
}

/* A gitdir the walk found: a .git (or .hg) that is not a directory, when it changed (a
 * gitdir pointer, a symlink: it sends git elsewhere); else its files. */
static int scan_gitdir(GitScan *s, int ws_fd, const Gitdir *g)
{
        struct stat st;
        if (fstatat(ws_fd, *g->path ? g->path : ".", &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* gone */
        if (!S_ISDIR(st.st_mode))
                return aj_workspace_changed_since(&st.st_ctim, s->since_ns) ? note(s, g->path) : 0;
        int fd = aj_open_under(ws_fd, g->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, AJ_UNDER_NO_SYMLINKS);
        if (fd < 0)
                return 0; /* gone, or a symlink now */
        strcpy(s->path, g->path);
        s->bare = g->bare;
        s->bare_len = strlen(g->path);
        int r = scan_dir(s, fd, strlen(g->path), 0);
        s->bare = false;
        return r;
}

/* Is `path` at or below a gitdir scanned already (a component ".git", a bare one)? */
static bool in_scanned_gitdir(const GitScan *s, const char *path)
{
        for (const char *c = path; *c;) {
                const char *end = strchrnul(c, '/');
                if ((size_t)(end - c) == 4 && strncasecmp(c, ".git", 4) == 0)
                        return true;
                c = *end ? end + 1 : end;
        }
        for (size_t i = 0; i < s->n_found; i++) {
                size_t n = strlen(s->found[i].path);
                if (s->found[i].bare && n > 0 && strncmp(path, s->found[i].path, n) == 0 &&
                    (path[n] == '/' || !path[n]))
                        return true;
        }
        return false;
}

/* Is t[i] below another of the n paths (a directory looked through whole)? */
static bool below_another(char *const *t, size_t n, size_t i)
{
        for (size_t k = 0; k < n; k++) {
                size_t len = strlen(t[k]);
                if (k != i && len > 0 && strncmp(t[i], t[k], len) == 0 && t[i][len] == '/')
                        return true;
        }
        return false;
}

/* The paths the repositories' config and the operator's, as they are now, send git to
 * (core.hooksPath, an include, a command's script, a hook's symlink target:
 * workspace-gitconfig.c), outside the gitdirs (looked at already): each that changed, and
 * in a directory every entry that did. A config that cannot be read leaves the look cut. */
static int scan_config_targets(GitScan *s, int ws_fd)
{
        /* The work trees' tops: the workspace's (its own .git, or the repository it is in
         * on the host), and each where a .git is (an .hg has no git config). */
        char **tops = calloc(s->n_found + 1, sizeof(*tops));
        size_t n_tops = 0;
        bool oom = !tops || !(tops[n_tops++] = strdup(""));
        for (size_t i = 0; !oom && i < s->n_found; i++) {
                const char *p = s->found[i].path, *last = strrchr(p, '/');
                last = last ? last + 1 : p;
                if (s->found[i].bare || strcasecmp(last, ".git") != 0 || last == p)
                        continue;
                if (!(tops[n_tops] = strndup(p, (size_t)(last - p - 1))))
                        oom = true;
                else
                        n_tops++;
        }
        char **t = NULL;
        size_t n = 0;
        int r = oom ? -ENOMEM : 0;
        AjError err = {};
        if (r == 0)
                r = ws_git_config_targets(ws_fd, (const char *const *)tops, n_tops, &t, &n, &err);
        if (r < 0 && r != -ENOMEM)
                s->config_error = strdup(aj_error_text(&err, r));
        aj_error_clear(&err);
        for (size_t i = 0; i < n_tops; i++)
                free(tops[i]);
        free(tops);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                cut(s, "config");
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                int fd = r < 0 || !*t[i] || in_scanned_gitdir(s, t[i]) || below_another(t, n, i)
                                 ? -1
                                 : aj_open_under(ws_fd, t[i], O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, AJ_UNDER_NO_SYMLINKS);
                struct stat st;
                if (fd >= 0 && fstat(fd, &st) == 0) {
                        if (aj_workspace_changed_since(&st.st_ctim, s->since_ns))
                                r = note(s, t[i]);
                        int dir = r >= 0 && S_ISDIR(st.st_mode) && strlen(t[i]) < sizeof(s->path)
                                          ? openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                          : -1;
                        if (dir >= 0) {
                                strcpy(s->path, t[i]);
                                s->all = true;
                                r = scan_dir(s, dir, strlen(t[i]), 0);
                                s->all = false;
                        }
                }
                if (fd >= 0)
                        close(fd);
        }
        for (size_t i = 0; i < n; i++)
                free(t[i]);
        free(t);
        return r;
}

static int compare_json_strings(const void *a, const void *b)
{
        return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* In name order, whatever order the directories listed them in. */
static void sort_paths(json_t *paths)
{
        size_t n = json_array_size(paths);
        json_t *v[AJ_WS_GIT_SHOWN];
        for (size_t i = 0; i < n && i < AJ_WS_GIT_SHOWN; i++)
                v[i] = json_incref(json_array_get(paths, i));
        qsort(v, n, sizeof(*v), compare_json_strings);
        json_array_clear(paths);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(paths, v[i]);
}

int aj_ws_git_changed(int ws_fd, uint64_t since_ns, const AjWsGitLimits *lim, json_t **ret)
{
        *ret = NULL;
        GitScan *s = calloc(1, sizeof(*s)); /* PATH_MAX of path: not on the stack */
        if (!s)
                return -ENOMEM;
        s->since_ns = since_ns;
        s->walk_entries = lim && lim->walk_entries ? lim->walk_entries : AJ_WS_GIT_WALK_ENTRIES;
        s->walk_depth = lim && lim->walk_depth ? lim->walk_depth : AJ_WS_GIT_WALK_DEPTH;
        s->walk_deadline_ns = aj_now_monotonic_ns() +
                              (lim && lim->walk_ms ? lim->walk_ms : AJ_WS_GIT_WALK_MS) * 1000000ull;
        s->paths = json_array();
        s->found = calloc(AJ_WS_GIT_MAX_REPOS, sizeof(*s->found));
        int r = !s->paths || !s->found ? -ENOMEM : walk(s, ws_fd);
        for (size_t i = 0; i < s->n_found && r >= 0; i++)
                r = scan_gitdir(s, ws_fd, &s->found[i]);
        if (r >= 0)
                r = scan_config_targets(s, ws_fd);
        if (r >= 0 && json_array_size(s->paths) > 1)
                sort_paths(s->paths);
        if (r >= 0 && (s->count || s->cut_at)) {
                *ret = json_pack("{s:O, s:I, s:b}", "paths", s->paths, "count", (json_int_t)s->count, "cut",
                                 s->cut_at != NULL);
                if (*ret && ((s->cut_at && json_object_set_new(*ret, "cut_at", json_string(s->cut_at)) < 0) ||
                             (s->config_error &&
                              json_object_set_new(*ret, "config_error", aj_json_string_shown(s->config_error)) < 0))) {
                        json_decref(*ret);
                        *ret = NULL;
                }
                if (!*ret)
                        r = -ENOMEM;
        }
        for (size_t i = 0; i < s->n_found; i++)
                free(s->found[i].path);
        free(s->found);
        free(s->config_error);
        json_decref(s->paths);
        free(s);
        return r < 0 ? r : 0;
}
