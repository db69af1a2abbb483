/* SPDX-License-Identifier: Apache-2.0 */
/* After a run that wrote the workspace in place (mode "rw"): which of git's own files in the
 * workspace's repository changed during it (workspace.h, aj_ws_git_changed). */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/format.h"
#include "util/open-under.h"
#include "workspace-internal.h"

typedef struct {
        uint64_t since_ns;
        size_t seen, count;
        bool cut;
        bool all; /* every entry counts (a directory the config names), not only git's own files */
        json_t *paths;
        char path[PATH_MAX];
} GitScan;

static int note(GitScan *s, const char *path)
{
        s->count++;
        if (json_array_size(s->paths) >= AJ_WS_GIT_SHOWN)
                return 0;
        /* The agent's names: kept as bytes where UTF-8, escaped where not (JSON needs it). */
        json_t *p = aj_json_string_shown(path);
        return p && json_array_append_new(s->paths, p) == 0 ? 0 : -ENOMEM;
}

/* The entries of the directory open at fd (its path in s->path, len bytes of it). */
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
                        s->cut = true;
                        break;
                }
                size_t n = strlen(e->d_name);
                if (len + 1 + n >= sizeof(s->path)) {
                        s->cut = true;
                        continue;
                }
                s->path[len] = '/';
                memcpy(s->path + len + 1, e->d_name, n + 1);
                struct stat st;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone since the listing */
                bool mine = s->all || aj_ws_path_git_code(s->path, st.st_mode & S_IFMT) != NULL;
                if (mine && aj_workspace_changed_since(&st.st_ctim, s->since_ns))
                        r = note(s, s->path);
                /* Down where git keeps what it may run; not into an object store, refs or
                 * logs, also a submodule's (modules/NAME/objects: large, and data). */
                bool data = streq(e->d_name, "objects") || streq(e->d_name, "refs") || streq(e->d_name, "logs");
                if (r >= 0 && mine && S_ISDIR(st.st_mode) && !data) {
                        if (depth + 1 >= AJ_WS_GIT_MAX_DEPTH) {
                                s->cut = true;
                                continue;
                        }
                        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                r = scan_dir(s, sub, len + 1 + n, depth + 1);
                }
        }
        if (r >= 0 && !e && errno)
                r = -errno;
        s->path[len] = 0;
        closedir(d);
        return r;
}

/* The paths the repository's config, as it is now, sends git to (core.hooksPath, an
 * include, a command's script, a hook's symlink target: workspace-gitconfig.c), outside
 * .git (looked at already): each that changed, and in a directory every entry that did.
 * A config that cannot be read leaves the look cut. */
static int scan_config_targets(GitScan *s, int ws_fd)
{
        const char *top = "";
        char **t = NULL;
        size_t n = 0;
        if (ws_git_config_targets(ws_fd, &top, 1, &t, &n, NULL) < 0) {
                s->cut = true;
                return 0;
        }
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                bool in_git = strncmp(t[i], ".git", 4) == 0 && (t[i][4] == '/' || !t[i][4]);
                int fd = r < 0 || !*t[i] || in_git
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
                free(t[i]);
        }
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

int aj_ws_git_changed(int ws_fd, uint64_t since_ns, json_t **ret)
{
        *ret = NULL;
        GitScan *s = calloc(1, sizeof(*s)); /* PATH_MAX of path: not on the stack */
        if (!s)
                return -ENOMEM;
        s->since_ns = since_ns;
        s->paths = json_array();
        int r = s->paths ? 0 : -ENOMEM;
        struct stat st;
        if (r >= 0 && fstatat(ws_fd, ".git", &st, AT_SYMLINK_NOFOLLOW) < 0)
                r = errno == ENOENT ? 1 : -errno;
        if (r == 0 && !S_ISDIR(st.st_mode)) {
                /* A gitdir pointer or a symlink: it sends git elsewhere. */
                if (aj_workspace_changed_since(&st.st_ctim, since_ns))
                        r = note(s, ".git");
        } else if (r == 0) {
                int fd = openat(ws_fd, ".git", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                strcpy(s->path, ".git");
                r = fd < 0 ? (errno == ENOENT ? 1 : -errno) : scan_dir(s, fd, 4, 0);
                if (r == 0)
                        r = scan_config_targets(s, ws_fd);
        }
        if (r >= 0 && json_array_size(s->paths) > 1)
                sort_paths(s->paths);
        if (r >= 0 && (s->count || s->cut)) {
                *ret = json_pack("{s:O, s:I, s:b}", "paths", s->paths, "count", (json_int_t)s->count, "cut", s->cut);
                if (!*ret)
                        r = -ENOMEM;
        }
        json_decref(s->paths);
        free(s);
        return r < 0 ? r : 0;
}
