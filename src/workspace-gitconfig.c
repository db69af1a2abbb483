/* SPDX-License-Identifier: Apache-2.0 */
/* The paths in the workspace that its repository's config, as it is in the workspace
 * (lower: the operator's, not the agent's), and the operator's own system and global
 * config have git run code from or read more config from: core.hooksPath, include.path
 * and includeIf.*.path, and the paths a command names (core.fsmonitor =
 * tools/fsmonitor.sh), and the files the hooks that are symlinks point to. A change there
 * is git's own file too, however plain its name: with core.hooksPath = .husky,
 * .husky/pre-commit is a hook; with a global core.hooksPath = .githooks, every
 * repository's .githooks/ is. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fd.h"
#include "workspace-internal.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_INCLUDE_DEPTH 10 /* git's own bound */
#define MAX_TARGETS 512
#define MAX_FILES 64                /* config files read for one repository, however they include each other */
#define MAX_TOTAL_BYTES (16u << 20) /* config read for all the repositories of one call */
#define MAX_HOMES 2                 /* $HOME, and SUDO_USER's (see host_configs) */

typedef struct {
        char ws[PATH_MAX]; /* the workspace's absolute path */
        size_t ws_len;
        const char *top; /* the work tree's top (absolute) of the repository being read */
        char **v;
        size_t n;
        unsigned files;
        uint64_t bytes;
        char *hooks[MAX_HOMES]; /* the last core.hooksPath (absolute; "~/x": in each home), as git takes the last */
        size_t n_hooks;
        char *homes[MAX_HOMES]; /* where "~" may lead: the homes git run by the operator may have */
        size_t n_homes;
        char **host; /* the operator's system and global config files, in the order git reads them */
        size_t n_host;
        AjError *ret_error;
} Targets;

/* `value` taken relative to the absolute directory `base`, "." and ".." resolved by name
 * (git does not resolve symlinks in them either): malloc'd, or NULL for "~..." (see
 * expand()) and on allocation failure (*oom). */
static char *resolve(const char *base, const char *value, bool *oom)
{
        if (value[0] == '~' || value[0] == 0)
                return NULL;
        char *joined = NULL;
        if (asprintf(&joined, "%s/%s", value[0] == '/' ? "" : base, value) < 0) {
                *oom = true;
                return NULL;
        }
        /* In place: components appended after the last kept one. */
        char *out = joined;
        size_t len = 0;
        for (char *c = joined; *c;) {
                char *end = strchrnul(c, '/');
                size_t n = (size_t)(end - c);
                if (n == 2 && c[0] == '.' && c[1] == '.') {
                        while (len > 0 && out[len - 1] != '/')
                                len--;
                        if (len > 0)
                                len--;
                } else if (n > 0 && !(n == 1 && c[0] == '.')) {
                        out[len++] = '/';
                        memmove(out + len, c, n);
                        len += n;
                }
                c = *end ? end + 1 : end;
        }
        out[len] = 0;
        if (len == 0)
                strcpy(out, "/");
        return out;
}

static void free_hooks(Targets *t)
{
        for (size_t i = 0; i < t->n_hooks; i++)
                free(t->hooks[i]);
        t->n_hooks = 0;
}

/* `value` as git takes a path: "~" and "~/..." in the home of whoever runs git, which may
 * be any of t->homes (the workspace may be in one: ~/src/app/hooks), else resolve()d
 * against `base`. Up to MAX_HOMES malloc'd paths in `out`: their number, or -ENOMEM.
 * "~user/...": none (git would look the user up; not done here). */
static int expand(const Targets *t, const char *base, const char *value, char *out[MAX_HOMES])
{
        bool oom = false;
        if (value[0] != '~') {
                out[0] = resolve(base, value, &oom);
                return oom ? -ENOMEM : out[0] ? 1 : 0;
        }
        if (value[1] != 0 && value[1] != '/')
                return 0;
        int n = 0;
        for (size_t i = 0; i < t->n_homes; i++) {
                out[n] = resolve(t->homes[i], value[1] ? value + 2 : ".", &oom);
                if (oom) {
                        while (n > 0)
                                free(out[--n]);
                        return -ENOMEM;
                }
                n += out[n] != NULL;
        }
        return n;
}

/* An absolute path: kept, relative to the workspace, when it is in it (the workspace
 * itself only with `root_too`: a hooksPath of "."). */
static int add_one(Targets *t, const char *abs, bool root_too)
{
        if (strncmp(abs, t->ws, t->ws_len) != 0 || (abs[t->ws_len] != '/' && abs[t->ws_len] != 0))
                return 0;
        const char *rel = abs[t->ws_len] ? abs + t->ws_len + 1 : "";
        if (!*rel && !root_too)
                return 0;
        for (size_t i = 0; i < t->n; i++)
                if (streq(t->v[i], rel))
                        return 0;
        if (t->n >= MAX_TARGETS)
                return aj_error_set(t->ret_error, -E2BIG,
                                    "The workspace repository's git config names more than %d paths in the "
                                    "workspace: its changes cannot be checked for git's own files",
                                    MAX_TARGETS);
        char **v = reallocarray(t->v, t->n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        t->v = v;
        if (!(t->v[t->n] = strdup(rel)))
                return -ENOMEM;
        t->n++;
        return 0;
}

/* `abs` with the symlinks of its longest existing part resolved, as git opens it (the
 * workspace's own: the agent changes none before the commit): a hooksPath through a
 * symlinked directory, a path spelled through a symlink above the workspace. NULL when
 * nothing resolves. */
static char *through_symlinks(const char *abs)
{
        _cleanup_free_ char *head = strdup(abs);
        if (!head)
                return NULL;
        for (;;) {
                char *real = realpath(head, NULL);
                if (real) {
                        const char *rest = abs + strlen(head);
                        char *out = NULL;
                        int r = asprintf(&out, "%s%s", streq(real, "/") && *rest ? "" : real, rest);
                        free(real);
                        return r < 0 ? NULL : out;
                }
                char *slash = strrchr(head, '/');
                if ((errno != ENOENT && errno != ENOTDIR) || !slash || slash == head)
                        return NULL;
                *slash = 0;
        }
}

/* add_one() for `abs` (consumed, NULL: nothing) as written and as it resolves. */
static int add_target(Targets *t, char *abs, bool root_too)
{
        _cleanup_free_ char *owned = abs;
        if (!abs)
                return 0;
        int r = add_one(t, abs, root_too);
        _cleanup_free_ char *real = r >= 0 ? through_symlinks(abs) : NULL;
        if (r >= 0 && real && !streq(real, abs))
                r = add_one(t, real, root_too);
        return r;
}

/* The words of a command that name a path ("tools/fsmonitor.sh", "./x"): relative to the
 * top of the work tree, where git runs hooks and core.fsmonitor. */
static int add_command_paths(Targets *t, const char *value)
{
        static const char seps[] = " \t\n\"'`;|&()<>=!$";
        char word[PATH_MAX];
        for (const char *p = value; *p;) {
                size_t n = strcspn(p, seps);
                if (n > 0 && n < sizeof(word)) {
                        memcpy(word, p, n);
                        word[n] = 0;
                        if (strchr(word, '/') && !strstr(word, "://")) {
                                char *abs[MAX_HOMES];
                                int k = expand(t, t->top, word, abs), r = k < 0 ? k : 0;
                                for (int i = 0; i < k; i++)
                                        r = r < 0 ? (free(abs[i]), r) : add_target(t, abs[i], false);
                                if (r < 0)
                                        return r;
                        }
                }
                p += n;
                if (*p)
                        p++;
        }
        return 0;
}

static int read_config(Targets *t, const char *path, unsigned depth);

static int on_value(Targets *t, const char *file, const char *section, const char *key, const char *value,
                    unsigned depth)
{
        char *abs[MAX_HOMES];
        int r = 0, k;
        if (streq(section, "core") && streq(key, "hookspath")) {
                /* Relative: to the top of the work tree, where git runs hooks (also for a
                 * global one: each repository's own). */
                if ((k = expand(t, t->top, value, abs)) < 0)
                        return k;
                free_hooks(t);
                for (int i = 0; i < k; i++) {
                        if (r >= 0 && (t->hooks[t->n_hooks] = strdup(abs[i])))
                                t->n_hooks++;
                        else if (r >= 0)
                                r = -ENOMEM;
                        r = r < 0 ? (free(abs[i]), r) : add_target(t, abs[i], true);
                }
        } else if ((streq(section, "include") || streq(section, "includeif")) && streq(key, "path")) {
                /* Relative to the file that includes it; the included file's own settings count too. */
                _cleanup_free_ char *dir = strdup(file);
                if (!dir)
                        return -ENOMEM;
                *strrchr(dir, '/') = 0;
                if ((k = expand(t, *dir ? dir : "/", value, abs)) < 0)
                        return k;
                for (int i = 0; i < k; i++) {
                        _cleanup_free_ char *again = r >= 0 ? strdup(abs[i]) : NULL;
                        if (r >= 0 && !again)
                                r = -ENOMEM;
                        r = r < 0 ? (free(abs[i]), r) : add_target(t, abs[i], false);
                        if (r >= 0 && depth + 1 < MAX_INCLUDE_DEPTH)
                                r = read_config(t, again, depth + 1);
                }
        } else if (!streq(section, "branch") && !streq(key, "url") && !streq(key, "pushurl") && !streq(key, "fetch") &&
                   !streq(key, "push"))
                r = add_command_paths(t, value);
        return r;
}

/* git's config syntax, as far as it takes to find every (section, key, value); a line it
 * would reject ends the file (git then refuses to run at all). */
static int parse_config(Targets *t, const char *file, const char *s, size_t len, unsigned depth)
{
        char section[64] = "", key[64];
        _cleanup_free_ char *value = malloc(len + 1);
        if (!value)
                return -ENOMEM;
        size_t i = 0;
        while (i < len) {
                char c = s[i];
                if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                        i++;
                        continue;
                }
                if (c == '#' || c == ';') {
                        while (i < len && s[i] != '\n')
                                i++;
                        continue;
                }
                if (c == '[') {
                        size_t n = 0;
                        for (i++; i < len && s[i] != ']' && s[i] != ' ' && s[i] != '.' && s[i] != '"'; i++)
                                if (n + 1 < sizeof(section))
                                        section[n++] = (char)(s[i] | 0x20);
                        section[n] = 0;
                        bool quoted = false;
                        for (; i < len && (quoted || s[i] != ']') && s[i] != '\n'; i++) {
                                if (s[i] == '\\' && i + 1 < len)
                                        i++;
                                else if (s[i] == '"')
                                        quoted = !quoted;
                        }
                        if (i >= len || s[i] != ']')
                                return 0;
                        i++;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                        return 0;
                size_t n = 0;
                for (; i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                                   (s[i] >= '0' && s[i] <= '9') || s[i] == '-');
                     i++)
                        if (n + 1 < sizeof(key))
                                key[n++] = (char)(s[i] | 0x20);
                key[n] = 0;
                while (i < len && (s[i] == ' ' || s[i] == '\t'))
                        i++;
                if (i >= len || s[i] != '=')
                        continue; /* a boolean, no value; or junk git rejects at the next key */
                i++;
                /* The value: quotes, escapes, a backslash-newline continuing it, a comment
                 * outside quotes ending it, blanks around it trimmed. */
                size_t v = 0, kept = 0;
                bool quoted = false, started = false;
                for (; i < len; i++) {
                        char x = s[i];
                        if (x == '\n' && !quoted)
                                break;
                        if (!quoted && (x == '#' || x == ';'))
                                break;
                        if (!quoted && (x == ' ' || x == '\t' || x == '\r')) {
                                if (started)
                                        value[v++] = ' ';
                                continue;
                        }
                        if (x == '"') {
                                quoted = !quoted;
                                started = true;
                                kept = v;
                                continue;
                        }
                        if (x == '\\' && i + 1 < len) {
                                char e = s[++i];
                                if (e == '\n')
                                        continue;
                                x = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'b' ? '\b' : e;
                        }
                        value[v++] = x;
                        started = true;
                        kept = v;
                }
                while (i < len && s[i] != '\n')
                        i++;
                value[kept] = 0;
                int r = on_value(t, file, section, key, value, depth);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A regular file by path (a device or fifo is not opened: opening some does something,
 * /dev/watchdog arms a reboot), or -errno. The path is resolved once, to an O_PATH fd
 * whose type is checked, then that inode is opened through /proc/self/fd: a symlink the
 * agent turns to a device between the check and the open is not followed again. */
static int open_regular(const char *path)
{
        _cleanup_close_ int pfd = open(path, O_PATH | O_CLOEXEC);
        struct stat st;
        if (pfd < 0 || fstat(pfd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        int fd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        return fd < 0 ? -errno : fd;
}

/* A config file (absolute path) as it is now: a missing one is none. */
static int read_config(Targets *t, const char *path, unsigned depth)
{
        if (++t->files > MAX_FILES)
                return aj_error_set(t->ret_error, -E2BIG,
                                    "The workspace repository's git config includes more than %d files: its changes "
                                    "cannot be checked for git's own files",
                                    MAX_FILES);
        _cleanup_close_ int fd = open_regular(path);
        if (fd == -ENOENT || fd == -ENOTDIR || fd == -EINVAL)
                return 0; /* none, or none to read */
        if (fd < 0)
                return aj_error_set(t->ret_error, fd, "Failed to open the git config '%s': %s", path, strerror(-fd));
        /* The file itself, where a symlink puts it (.git/config -> ../gitconfig, in the work
         * tree): config. */
        _cleanup_free_ char *real = through_symlinks(path);
        int r = real ? add_one(t, real, false) : 0;
        if (r < 0)
                return r;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size > MAX_CONFIG_BYTES)
                return aj_error_set(t->ret_error, -EFBIG, "The git config '%s' is larger than %u bytes", path,
                                    MAX_CONFIG_BYTES);
        t->bytes += (uint64_t)st.st_size;
        if (t->bytes > MAX_TOTAL_BYTES)
                return aj_error_set(t->ret_error, -E2BIG,
                                    "The git config of the workspace's repositories passes %u bytes in all (at '%s'): "
                                    "its changes cannot be checked for git's own files",
                                    MAX_TOTAL_BYTES, path);
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = aj_read_full(fd, buf, (size_t)st.st_size);
        if (n < 0)
                return (int)n;
        return parse_config(t, path, buf, (size_t)n, depth);
}

/* The hooks that are symlinks (`ln -s ../../scripts/pre-commit.sh .git/hooks/pre-commit`,
 * a common way to share hooks): git runs the file they point to. */
static int add_linked_hooks(Targets *t, const char *dir)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        struct dirent *e;
        int r = 0;
        while (r >= 0 && (errno = 0, e = readdir(d))) {
                struct stat st;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(st.st_mode))
                        continue;
                _cleanup_free_ char *abs = NULL, *real = NULL;
                if (asprintf(&abs, "%s/%s", dir, e->d_name) < 0)
                        return -ENOMEM;
                real = through_symlinks(abs);
                if (real)
                        r = add_one(t, real, false);
        }
        return r < 0 ? r : errno > 0 ? -errno : 0;
}

/* The first line of a small file, trimmed: "gitdir: X" in a .git file, a commondir. */
static int read_line(const char *path, char *buf, size_t size)
{
        _cleanup_close_ int fd = open_regular(path);
        if (fd < 0)
                return fd;
        ssize_t n = aj_read_full(fd, buf, size - 1);
        if (n < 0)
                return (int)n;
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        return 0;
}

/* The repository whose work tree's top is t->top: .git, a directory or a file naming one
 * (anywhere: a linked worktree's, a submodule's), and its commondir. */
static int repo_targets(Targets *t)
{
        bool oom = false;
        _cleanup_free_ char *dotgit = resolve(t->top, ".git", &oom), *gitdir = NULL, *common = NULL;
        char line[PATH_MAX];
        struct stat st;
        int r = 0;
        if (!dotgit || stat(dotgit, &st) < 0)
                goto done;
        if (S_ISDIR(st.st_mode))
                gitdir = strdup(dotgit);
        else if (read_line(dotgit, line, sizeof(line)) >= 0 && strncmp(line, "gitdir: ", 8) == 0)
                gitdir = resolve(t->top, line + 8, &oom);
        if (!gitdir)
                goto done;
        char *cd = NULL;
        if (asprintf(&cd, "%s/commondir", gitdir) < 0) {
                r = -ENOMEM;
                goto done;
        }
        r = read_line(cd, line, sizeof(line));
        free(cd);
        common = r == 0 && line[0] ? resolve(gitdir, line, &oom) : strdup(gitdir);
        r = 0; /* no commondir: the gitdir is its own */
        if (!common)
                goto done;
        static const char *const files[] = { "config", "config.worktree" };
        for (size_t i = 0; i < ARRAY_SIZE(files) && r >= 0; i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", i == 0 ? common : gitdir, files[i]) < 0)
                        r = -ENOMEM;
                else
                        r = read_config(t, p, 0);
        }
        if (r >= 0 && t->n_hooks == 0) {
                _cleanup_free_ char *hooks = NULL;
                r = asprintf(&hooks, "%s/hooks", common) < 0 ? -ENOMEM : add_linked_hooks(t, hooks);
        }
        for (size_t i = 0; i < t->n_hooks && r >= 0; i++)
                r = add_linked_hooks(t, t->hooks[i]);
done:
        free_hooks(t);
        return r < 0 ? r : oom ? -ENOMEM : 0;
}

/* Adds `path` (taken) to t->host unless it is there: 0, or -ENOMEM. */
static int add_host(Targets *t, char *path)
{
        if (!path)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_host; i++)
                if (streq(t->host[i], path)) {
                        free(path);
                        return 0;
                }
        char **v = reallocarray(t->host, t->n_host + 1, sizeof(*v));
        if (!v) {
                free(path);
                return -ENOMEM;
        }
        t->host = v;
        t->host[t->n_host++] = path;
        return 0;
}

static char *joined(const char *a, const char *b)
{
        char *p = NULL;
        return asprintf(&p, "%s%s", a, b) < 0 ? NULL : p;
}

/* The operator's own config, which git reads before the repository's: the system's
 * (/etc/gitconfig, and $GIT_CONFIG_SYSTEM) and the global ones ($XDG_CONFIG_HOME/git/config
 * or ~/.config/git/config, ~/.gitconfig, and $GIT_CONFIG_GLOBAL), all of them whatever
 * GIT_CONFIG_NOSYSTEM or the overrides say (they may not be set where the operator runs
 * git next). "~" is each home git run by the operator may have: $HOME, and under sudo
 * (real uid 0, SUDO_USER set) the invoking user's from the passwd database, where git run
 * as that user, without sudo, looks. Reading more than git will only marks more. */
static int host_configs(Targets *t)
{
        const char *home = getenv("HOME");
        if (home && home[0] == '/' && !(t->homes[t->n_homes] = strdup(home)))
                return -ENOMEM;
        t->n_homes += home && home[0] == '/';
        const char *sudo_user = getenv("SUDO_USER");
        if (getuid() == 0 && sudo_user && *sudo_user) {
                struct passwd pw, *found = NULL;
                char buf[4096];
                if (getpwnam_r(sudo_user, &pw, buf, sizeof(buf), &found) == 0 && found && pw.pw_dir[0] == '/' &&
                    !(t->n_homes > 0 && streq(t->homes[0], pw.pw_dir))) {
                        if (!(t->homes[t->n_homes] = strdup(pw.pw_dir)))
                                return -ENOMEM;
                        t->n_homes++;
                }
        }
        int r = add_host(t, strdup("/etc/gitconfig"));
        const char *system = getenv("GIT_CONFIG_SYSTEM"), *xdg = getenv("XDG_CONFIG_HOME"),
                   *global = getenv("GIT_CONFIG_GLOBAL");
        if (r >= 0 && system && system[0] == '/')
                r = add_host(t, strdup(system));
        if (r >= 0 && xdg && xdg[0] == '/')
                r = add_host(t, joined(xdg, "/git/config"));
        for (size_t i = 0; i < t->n_homes && r >= 0; i++) {
                r = add_host(t, joined(t->homes[i], "/.config/git/config"));
                if (r >= 0)
                        r = add_host(t, joined(t->homes[i], "/.gitconfig"));
        }
        char *abs[MAX_HOMES];
        int k = r >= 0 && global && (global[0] == '/' || global[0] == '~') ? expand(t, "/", global, abs) : 0;
        for (int i = 0; i < k; i++)
                r = r < 0 ? (free(abs[i]), r) : add_host(t, abs[i]);
        return r < 0 ? r : k < 0 ? k : 0;
}

/* The top of the work tree git run in `dir` (absolute) would find: `dir` itself when it
 * holds a .git, else the nearest directory above it that does (the workspace may be a
 * subdirectory of the operator's repository, whose config then names paths in it: a
 * hooksPath of packages/app/.husky), else `dir`. Git's discovery stops at a file system
 * boundary and GIT_CEILING_DIRECTORIES; this does not: it can only mark more. */
static char *enclosing_top(const char *dir)
{
        char *top = strdup(dir);
        if (!top)
                return NULL;
        size_t len = strlen(top);
        char probe[PATH_MAX + 8];
        for (;;) {
                struct stat st;
                snprintf(probe, sizeof(probe), "%.*s/.git", (int)len, top);
                if (lstat(probe, &st) == 0) {
                        top[len ? len : 1] = 0;
                        return top;
                }
                if (len == 0)
                        break;
                while (len > 0 && top[len - 1] != '/')
                        len--;
                if (len > 0)
                        len--; /* the '/' before the last component; 0: the root */
        }
        strcpy(top, dir);
        return top;
}

int ws_git_config_targets(int lower_fd, const char *const *tops, size_t n_tops, char ***ret, size_t *ret_n,
                          AjError *ret_error)
{
        Targets t = { .ret_error = ret_error };
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", lower_fd);
        ssize_t n = readlink(proc, t.ws, sizeof(t.ws) - 1);
        if (n <= 0 || t.ws[0] != '/')
                return aj_error_set(ret_error, n < 0 ? -errno : -EINVAL, "Failed to find the workspace's path: %m");
        t.ws[n] = 0;
        t.ws_len = streq(t.ws, "/") ? 0 : (size_t)n;
        /* The config is found by path (a gitdir, an include may be anywhere): the name must
         * still be the workspace's, or nothing would be found and nothing marked. */
        struct stat by_fd, by_name;
        if (fstat(lower_fd, &by_fd) < 0 || stat(t.ws, &by_name) < 0 || by_fd.st_dev != by_name.st_dev ||
            by_fd.st_ino != by_name.st_ino)
                return aj_error_set(ret_error, -ESTALE,
                                    "The workspace is no longer at '%s': its repository's git config cannot be read",
                                    t.ws);

        int r = host_configs(&t);
        for (size_t i = 0; i < n_tops && r >= 0; i++) {
                bool oom = false;
                _cleanup_free_ char *top = *tops[i] ? resolve(t.ws, tops[i], &oom) : enclosing_top(t.ws);
                if (!top) {
                        r = -ENOMEM;
                        break;
                }
                t.top = top;
                t.files = 0;
                /* The operator's config first, for each repository: its relative paths
                 * (a hooksPath, a command's script) are the repository's. */
                for (size_t k = 0; k < t.n_host && r >= 0; k++)
                        r = read_config(&t, t.host[k], 0);
                if (r >= 0)
                        r = repo_targets(&t);
        }
        for (size_t i = 0; i < t.n_homes; i++)
                free(t.homes[i]);
        for (size_t i = 0; i < t.n_host; i++)
                free(t.host[i]);
        free(t.host);
        free_hooks(&t);
        if (r < 0) {
                for (size_t i = 0; i < t.n; i++)
                        free(t.v[i]);
                free(t.v);
                if (!ret_error || !ret_error->message)
                        return aj_error_set(ret_error, r, "Failed to read the workspace repository's git config: %s",
                                            strerror(-r));
                return r;
        }
        *ret = t.v;
        *ret_n = t.n;
        return 0;
}
