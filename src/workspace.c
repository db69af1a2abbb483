/* SPDX-License-Identifier: Apache-2.0 */
/* The overlay workspace (workspace.h): change kinds and names, directory walking shared by
 * diff and commit, and changes as JSON. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/format.h"
#include "workspace-internal.h"

/* ---- git's own files: what git on the host may run code from ---- */

/* Below a gitdir: what git reads only as data. Directories with all below them, then files. */
static const char *const git_data_dirs[] = { "objects", "refs", "logs", "rr-cache", NULL };
static const char *const git_data_files[] = { "index",
                                              "HEAD",
                                              "ORIG_HEAD",
                                              "FETCH_HEAD",
                                              "MERGE_HEAD",
                                              "MERGE_MSG",
                                              "MERGE_MODE",
                                              "MERGE_RR",
                                              "AUTO_MERGE",
                                              "CHERRY_PICK_HEAD",
                                              "REVERT_HEAD",
                                              "REBASE_HEAD",
                                              "BISECT_LOG",
                                              "BISECT_START",
                                              "BISECT_TERMS",
                                              "BISECT_NAMES",
                                              "BISECT_EXPECTED_REV",
                                              "BISECT_ANCESTORS_OK",
                                              "COMMIT_EDITMSG",
                                              "TAG_EDITMSG",
                                              "SQUASH_MSG",
                                              "packed-refs",
                                              "description",
                                              "shallow",
                                              "gc.pid",
                                              "gc.log",
                                              "index.lock",
                                              "HEAD.lock",
                                              "packed-refs.lock",
                                              "info/exclude",
                                              "info/refs",
                                              NULL };

/* Below an .hg: what Mercurial reads only as data. Not hgrc, nor requires and sharedpath
 * (a share: hg 6.3 ran the hooks of the hgrc in the directory sharedpath names). */
static const char *const hg_data_dirs[] = { "store", "cache", "wcache", "strip-backup", NULL };
static const char *const hg_data_files[] = { "dirstate",      "branch",           "bookmarks", "bookmarks.current",
                                             "00changelog.i", "last-message.txt", NULL };

/* Below a .jj (Jujutsu): its stores, which jj reads only as data. Not repo/config.toml, which
 * jj before its secure config read as the repository's config (`fix.tools`, aliases, a pager:
 * commands jj runs), nor repo/config-id (which config of the operator's jj takes for this
 * repository's), nor a repo that is a file (a workspace's pointer to another repository). */
static const char *const jj_data_dirs[] = { "repo/store", "repo/op_store", "repo/op_heads",
                                            "repo/index", "working_copy",  NULL };
/* ... but what in them says where jj's git backend works: repo/store/git_target (the git
 * repository's path, absolute or from the store: "git", the colocated "../../../.git"), and
 * any symlink (a store's "git" pointed elsewhere). `jj git fetch` runs git in that repository,
 * which reads its config (core.sshCommand): another one, made by the agent outside the
 * workspace (in another rw bind), would be another repository's config, none of it seen here. */
static const char *const jj_pointer_files[] = { "repo/store/git_target", NULL };

static bool in_list(const char *const *list, const char *s, size_t len)
{
        for (size_t i = 0; list[i]; i++)
                if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0)
                        return true;
        return false;
}

static bool component_is(const char *c, size_t len, const char *name)
{
        return len == strlen(name) && strncasecmp(c, name, len) == 0;
}

/* Whether `path` is a .jj's directory that is data itself but holds one of jj's pointers
 * (repo/store: git_target). */
bool ws_dir_holds_git_code(const char *path)
{
        for (const char *c = path; *c;) {
                const char *end = strchrnul(c, '/');
                size_t len = (size_t)(end - c);
                if (component_is(c, len, ".git") || component_is(c, len, ".hg"))
                        return false; /* their rules, as aj_ws_path_git_code() */
                if (component_is(c, len, ".jj")) {
                        const char *rest = *end ? end + 1 : end;
                        size_t n = strlen(rest);
                        for (size_t i = 0; n && jj_pointer_files[i]; i++)
                                if (strncmp(jj_pointer_files[i], rest, n) == 0 && jj_pointer_files[i][n] == '/')
                                        return true;
                        return false;
                }
                c = *end ? end + 1 : end;
        }
        return false;
}

const char *aj_ws_path_git_code(const char *path, mode_t type)
{
        const char *c = path;
        while (*c) {
                const char *end = strchrnul(c, '/');
                size_t len = (size_t)(end - c);
                if (component_is(c, len, ".git")) {
                        if (!*end)
                                return S_ISDIR(type) ? NULL : "a .git that is not a directory: it points git elsewhere";
                        const char *rest = end + 1, *first_end = strchrnul(rest, '/');
                        if (in_list(git_data_dirs, rest, (size_t)(first_end - rest)) && (*first_end || S_ISDIR(type)))
                                return NULL;
                        if (in_list(git_data_files, rest, strlen(rest)))
                                return NULL;
                        /* hooks/NAME.sample: git runs a hook by its exact name only. */
                        if (strncmp(rest, "hooks/", 6) == 0 && !strchr(rest + 6, '/') && strlen(rest) > 13 &&
                            streq(rest + strlen(rest) - 7, ".sample"))
                                return NULL;
                        return "git's config, hooks or another file of its own: git on this host may run code from it";
                }
                if (component_is(c, len, ".jj")) {
                        if (!*end)
                                return S_ISDIR(type) ? NULL : "a .jj that is not a directory";
                        const char *rest = end + 1;
                        if (S_ISLNK(type) || in_list(jj_pointer_files, rest, strlen(rest)))
                                return "where Jujutsu's git repository is (store/git_target, a symlink below .jj): jj "
                                       "on this host runs git there, which may run code from that repository's config";
                        for (size_t i = 0; jj_data_dirs[i]; i++) {
                                size_t n = strlen(jj_data_dirs[i]);
                                if (strncmp(rest, jj_data_dirs[i], n) == 0 &&
                                    (rest[n] == '/' || (!rest[n] && S_ISDIR(type))))
                                        return NULL;
                        }
                        return "Jujutsu's repository config or another file of its own: jj on this host may run "
                               "code from it";
                }
                if (component_is(c, len, ".hg")) {
                        if (!*end)
                                return S_ISDIR(type) ? NULL : "an .hg that is not a directory";
                        const char *rest = end + 1, *first_end = strchrnul(rest, '/');
                        if (in_list(hg_data_dirs, rest, (size_t)(first_end - rest)) && (*first_end || S_ISDIR(type)))
                                return NULL;
                        if (in_list(hg_data_files, rest, strlen(rest)) || strncmp(rest, "undo.", 5) == 0 ||
                            strncmp(rest, "journal.", 8) == 0)
                                return NULL;
                        return "Mercurial's config, requires, sharedpath or another file of its own: hg on this host "
                               "may run code from it";
                }
                c = *end ? end + 1 : end;
        }
        return NULL;
}

const char *ws_gitdir_git_code(const char *rest, mode_t type)
{
        /* The names git opens in a gitdir to find commands or other config; any case: a
         * case-folding directory. */
        static const char *const starts[] = { "config",       "config.worktree", "commondir", "hooks",
                                              "modules",      "worktrees",       "info",      "rebase-merge",
                                              "rebase-apply", "sequencer",       NULL };
        const char *end = strchrnul(rest, '/');
        bool start = false;
        for (size_t k = 0; starts[k] && !start; k++)
                start = component_is(rest, (size_t)(end - rest), starts[k]);
        char as_git[PATH_MAX + 8];
        if (!start || (size_t)snprintf(as_git, sizeof(as_git), ".git/%s", rest) >= sizeof(as_git) ||
            !aj_ws_path_git_code(as_git, type))
                return NULL;
        return "in a directory git takes for a repository (it holds a HEAD): git run there may run code from it";
}

const char *aj_ws_change_git_code(const char *path, AjWsChangeKind kind, mode_t type)
{
        const char *why = aj_ws_path_git_code(path, type);
        if (why || !S_ISDIR(type) || (kind != AJ_WS_DELETED && kind != AJ_WS_REPLACED))
                return why;
        /* The .git directory itself is judged by its files, but removing it (or replacing it
         * by an opaque one) takes the workspace's config and hooks with it, files that no
         * other change names. */
        const char *last = strrchr(path, '/');
        last = last ? last + 1 : path;
        if (component_is(last, strlen(last), ".git") || component_is(last, strlen(last), ".hg") ||
            component_is(last, strlen(last), ".jj"))
                return "removes or replaces a repository's .git, .hg or .jj (its config and hooks with it)";
        return NULL;
}

bool ws_symlink_outside(const char *path, const char *target)
{
        if (target[0] == '/')
                return true;
        long depth = 0;
        for (const char *c = path; (c = strchr(c, '/')); c++)
                depth++;
        for (const char *c = target; *c;) {
                const char *end = strchrnul(c, '/');
                size_t len = (size_t)(end - c);
                if (len == 2 && c[0] == '.' && c[1] == '.') {
                        if (--depth < 0)
                                return true;
                } else if (len > 0 && !(len == 1 && c[0] == '.'))
                        depth++;
                c = *end ? end + 1 : end;
        }
        return false;
}

const char *aj_ws_kind_name(AjWsChangeKind kind)
{
        switch (kind) {
        case AJ_WS_ADDED:
                return "added";
        case AJ_WS_MODIFIED:
                return "modified";
        case AJ_WS_DELETED:
                return "deleted";
        case AJ_WS_REPLACED:
                return "replaced";
        }
        return "unknown";
}

const char *aj_ws_type_name(mode_t type)
{
        switch (type & S_IFMT) {
        case S_IFREG:
                return "file";
        case S_IFDIR:
                return "dir";
        case S_IFLNK:
                return "symlink";
        case S_IFIFO:
                return "fifo";
        case S_IFSOCK:
                return "socket";
        case S_IFCHR:
                return "char-device";
        case S_IFBLK:
                return "block-device";
        }
        return "other";
}

const char *ws_type_article(mode_t type)
{
        switch (type & S_IFMT) {
        case S_IFREG:
                return "a file";
        case S_IFDIR:
                return "a directory";
        case S_IFLNK:
                return "a symlink";
        case S_IFIFO:
                return "a fifo";
        case S_IFSOCK:
                return "a socket";
        }
        return "a device";
}

void aj_ws_changes_free(AjWsChange *c, size_t n)
{
        if (!c)
                return;
        for (size_t i = 0; i < n; i++) {
                free(c[i].path);
                free(c[i].note);
                free(c[i].target);
        }
        free(c);
}

/* A directory stream of its own (own offset) on dir_fd's directory. */
int ws_open_dir_stream(int dir_fd, const char *name, DIR **ret)
{
        int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = negative_errno();
                close(fd);
                return r;
        }
        *ret = d;
        return 0;
}

/* Walks dirent names other than "." and "..": 1 with *ret_name set, 0 at the end. */
int ws_next_name(DIR *d, const char **ret_name)
{
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de)
                        return errno ? -errno : 0;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                *ret_name = de->d_name;
                return 1;
        }
}

/* ---- JSON ----------------------------------------------------------------- */

/* File names are bytes: what is not UTF-8 is shown as "\xNN" (the JSON must stay valid),
 * and then *ret_exact is false. */
static json_t *path_string(const char *path, bool *ret_exact)
{
        size_t len = strlen(path), i = 0, n;
        while (i < len && (n = aj_utf8_len(path + i, len - i)))
                i += n;
        *ret_exact = i == len;
        if (*ret_exact)
                return json_string(path);
        _cleanup_free_ char *buf = malloc(len * 4 + 1);
        if (!buf)
                return NULL;
        char *o = buf;
        for (i = 0; i < len; i += n) {
                n = aj_utf8_len(path + i, len - i);
                if (n == 0) {
                        o += sprintf(o, "\\x%02x", (unsigned char)path[i]);
                        n = 1;
                        continue;
                }
                memcpy(o, path + i, n);
                o += n;
        }
        *o = 0;
        return json_string(buf);
}

/* Sets key_exact: false and key_hex (the bytes, exactly) when name is not UTF-8: then "key"
 * holds it escaped ("\xff"), which another name can spell the same way. */
static int set_exact(json_t *o, const char *key, const char *name, bool utf8)
{
        if (utf8)
                return 0;
        size_t len = strlen(name);
        _cleanup_free_ char *hex = malloc(len * 2 + 1);
        if (!hex)
                return -ENOMEM;
        for (size_t k = 0; k < len; k++)
                snprintf(hex + 2 * k, 3, "%02x", (unsigned char)name[k]);
        hex[2 * len] = 0;
        char exact[32], hex_key[32];
        snprintf(exact, sizeof(exact), "%s_exact", key);
        snprintf(hex_key, sizeof(hex_key), "%s_hex", key);
        if (json_object_set_new(o, exact, json_false()) < 0 || json_object_set_new(o, hex_key, json_string(hex)) < 0)
                return -ENOMEM;
        return 0;
}

json_t *aj_ws_change_json(const AjWsChange *c)
{
        bool utf8;
        json_t *path = path_string(c->path, &utf8);
        if (!path)
                return NULL;
        /* "o" takes path, also on failure. */
        json_auto_t *o = json_pack("{s:o, s:s, s:s, s:I, s:b}", "path", path, "change", aj_ws_kind_name(c->kind),
                                   "type", aj_ws_type_name(c->type), "size", (json_int_t)c->size, "conflict",
                                   c->conflict);
        const char *git = c->git_code;
        if (!o || set_exact(o, "path", c->path, utf8) < 0 ||
            (c->skipped && json_object_set_new(o, "skipped", json_true()) < 0) ||
            (c->note && json_object_set_new(o, "note", json_string(c->note)) < 0) ||
            (git && json_object_set_new(o, "git_code", json_string(git)) < 0))
                return NULL;
        if (c->target) {
                json_t *target = path_string(c->target, &utf8);
                if (!target || json_object_set_new(o, "target", target) < 0 ||
                    set_exact(o, "target", c->target, utf8) < 0 ||
                    (c->outside && json_object_set_new(o, "outside", json_true()) < 0))
                        return NULL;
        }
        if (c->has_mode) {
                char mode[8], was[8];
                snprintf(mode, sizeof(mode), "%04o", (unsigned)c->mode);
                snprintf(was, sizeof(was), "%04o", (unsigned)c->mode_was);
                if (json_object_set_new(o, "mode", json_string(mode)) < 0 ||
                    (c->mode_changed && json_object_set_new(o, "mode_was", json_string(was)) < 0) ||
                    ((c->mode & S_IWOTH) && json_object_set_new(o, "writable_by_all", json_true()) < 0))
                        return NULL;
        }
        if (c->mount_at) {
                _cleanup_free_ char *at = strndup(c->path, c->mount_at);
                json_t *mount = at ? path_string(at, &utf8) : NULL;
                if (!mount || json_object_set_new(o, "mount_point", mount) < 0 ||
                    set_exact(o, "mount_point", at, utf8) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

json_t *aj_ws_changes_json(const AjWsChange *c, size_t n)
{
        json_t *a = json_array();
        if (!a)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                json_t *o = aj_ws_change_json(&c[i]);
                if (!o || json_array_append_new(a, o) < 0) { /* takes o, also on failure */
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}
