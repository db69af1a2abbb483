/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail diff | commit | discard`: review and decide an overlay workspace's changes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/verb.h"
#include "util/format.h"
#include "cli/verbs.h"
#include "events.h"
#include "mount.h"
#include "util/fd.h"
#include "util/error.h"
#include "workspace.h"

#define DIFF_USAGE "agentjail diff RUN [--patch | --json]"
#define DIFF_HELP                                                                             \
        "What a run with an overlay workspace changed (A added, M modified, D deleted,\n"     \
        "R directory replaced). '!' marks a path that also changed in the workspace during\n" \
        "the run. --patch adds the changed files' contents (diff -u). Changes to git's own\n" \
        "files (config, hooks...), which git on this host may run code from, are marked.\n"   \
        "Review, then 'agentjail commit RUN' or 'agentjail discard RUN'."
#define COMMIT_USAGE "agentjail commit RUN [--force] [--include-git | --exclude-git] [--json]"
#define COMMIT_HELP                                                                           \
        "Apply what a run with an overlay workspace changed to the workspace itself\n"        \
        "(see 'agentjail diff RUN'). New files get the workspace owner; setuid/setgid bits\n" \
        "are dropped; devices, fifos and sockets are not applied. Refused when a path also\n" \
        "changed in the workspace during the run, unless --force, and when the run changed\n" \
        "git's own files (a hook, .git/config: git on this host would run code from them),\n" \
        "unless --include-git (apply them too) or --exclude-git (leave them out)."
#define DISCARD_USAGE "agentjail discard RUN [--json]"
#define DISCARD_HELP                                                                     \
        "Drop what a run with an overlay workspace changed: the workspace stays as it\n" \
        "was before the run."

typedef struct {
        const char *path;   /* the workspace on the host (run.json) */
        char dir[PATH_MAX]; /* <run dir>/workspace: upper/ and work/ */
        int upper_fd, lower_fd;
} Overlay;

static void overlay_close(Overlay *o)
{
        if (o->upper_fd >= 0)
                close(o->upper_fd);
        if (o->lower_fd >= 0)
                close(o->lower_fd);
        o->upper_fd = o->lower_fd = -1;
}

/* The run's overlay workspace with its changes still pending, the run not live. */
static int open_overlay(const char *cmd, AjRun *run, Overlay *o)
{
        *o = (Overlay){ .upper_fd = -1, .lower_fd = -1 };
        const AjRunWorkspace *ws = run->rec ? &run->rec->workspace : &(AjRunWorkspace){ 0 };
        const char *mode = ws->mode, *changes = ws->changes;
        o->path = ws->path;
        if (!mode || !streq(mode, "overlay") || !o->path) {
                cli_fail(cmd,
                         "run %s has no overlay workspace (its profile's filesystem.workspace.mode is not "
                         "\"overlay\")",
                         run->id);
                return -ENOENT;
        }
        if (changes && !streq(changes, "pending")) {
                cli_fail(cmd, "run %s: its workspace changes were %s already", run->id, changes);
                return -EALREADY;
        }
        /* Whiteouts and opaque directories are recorded in trusted.* xattrs, which only
         * root can read: anyone else would see a wrong diff. (Overlay runs are root's.) */
        if (geteuid() != 0) {
                cli_fail(cmd, "run %s: reviewing an overlay workspace needs root", run->id);
                return -EPERM;
        }
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live || aj_run_supervisor_alive(run)) {
                cli_fail(cmd,
                         "run %s is still running and may change its workspace: wait for it to exit, or "
                         "'agentjail kill %s'",
                         run->id, run->id);
                return -EBUSY;
        }
        /* The upper dir is the one in the run's own directory, whatever run.json says. */
        if (aj_run_file_path(run->dir, AJ_RUN_DIR_WORKSPACE, o->dir, sizeof(o->dir)) < 0) {
                cli_fail(cmd, "run %s: %s", run->id, strerror(ENAMETOOLONG));
                return -ENAMETOOLONG;
        }
        char upper[PATH_MAX + 8];
        snprintf(upper, sizeof(upper), "%s/%s", o->dir, AJ_OVERLAY_UPPER);
        o->upper_fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (o->upper_fd < 0) {
                cli_fail(cmd, "run %s: cannot open its workspace changes '%s': %m", run->id, upper);
                return -errno;
        }
        o->lower_fd = open(o->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->lower_fd < 0) {
                int r = -errno;
                cli_fail(cmd, "run %s: cannot open the workspace '%s': %s", run->id, o->path, strerror(-r));
                overlay_close(o);
                return r;
        }
        return 0;
}

static const char change_letter[] = {
        [AJ_WS_ADDED] = 'A', [AJ_WS_MODIFIED] = 'M', [AJ_WS_DELETED] = 'D', [AJ_WS_REPLACED] = 'R'
};

/* A verb's options: --json, --help and its own flag (--patch, --force or none). */
typedef struct {
        const char *cmd, *usage, *help;
        const char *flag_name; /* NULL: none */
        int flag_code;
        bool git_options; /* --include-git, --exclude-git */
        bool acting;      /* writes what the records name with our rights: cli_check_acting() */
} OverlayVerb;

typedef struct {
        bool json, flag, include_git, exclude_git;
        AjPaths paths;
        AjRun *run;
        Overlay ov;
} OverlayCmd;

static void overlay_cmd_done(OverlayCmd *c)
{
        overlay_close(&c->ov);
        aj_run_free(c->run);
        aj_paths_done(&c->paths);
}

/* 0 with *ret_run, 1 for --help (printed), or CLI_EXIT_USAGE (reported). */
static int parse_overlay_verb(const OverlayVerb *v, int argc, char **argv, OverlayCmd *c, const char **ret_run)
{
        const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { v->flag_name ?: "json", no_argument, NULL, v->flag_name ? v->flag_code : CLI_OPT_JSON },
                { v->git_options ? "include-git" : "json", no_argument, NULL,
                  v->git_options ? CLI_OPT_INCLUDE_GIT : CLI_OPT_JSON },
                { v->git_options ? "exclude-git" : "json", no_argument, NULL,
                  v->git_options ? CLI_OPT_EXCLUDE_GIT : CLI_OPT_JSON },
                {},
        };
        int o;
        cli_getopt_reset();
        while ((o = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (o == 'h') {
                        cli_help(v->usage, v->help);
                        return 1;
                } else if (o == CLI_OPT_JSON)
                        c->json = true;
                else if (v->flag_name && o == v->flag_code)
                        c->flag = true;
                else if (o == CLI_OPT_INCLUDE_GIT)
                        c->include_git = true;
                else if (o == CLI_OPT_EXCLUDE_GIT)
                        c->exclude_git = true;
                else
                        return cli_option_error(v->cmd, v->usage, o, argv);
        }
        if (c->include_git && c->exclude_git)
                return cli_usage_error(v->cmd, v->usage, "--include-git and --exclude-git exclude each other");
        int r = cli_check_positionals(v->cmd, v->usage, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        *ret_run = argv[optind];
        return 0;
}

/* The start of diff, commit and discard: options, the run, its overlay. 0 when the verb
 * goes on with c->ov open, else it is done: *ret_status is its exit status (help, or an
 * error reported). */
static int overlay_cmd_begin(const OverlayVerb *v, int argc, char **argv, OverlayCmd *c, int *ret_status)
{
        *c = (OverlayCmd){ .ov = { .upper_fd = -1, .lower_fd = -1 } };
        const char *query = NULL;
        int r = parse_overlay_verb(v, argc, argv, c, &query);
        if (r) {
                *ret_status = r == 1 ? CLI_EXIT_OK : r;
                return -ECANCELED;
        }
        *ret_status = CLI_EXIT_FAIL;
        r = cli_open_run(v->cmd, query, &c->paths, &c->run);
        if (r < 0 || (v->acting && (r = cli_check_acting(v->cmd, &c->paths)) < 0))
                return r;
        return open_overlay(v->cmd, c->run, &c->ov);
}

/* diff(1)'s output holds the agent's file contents: shown by the one rule (util/format.h),
 * newlines and tabs kept, so a text file's patch is exact and a file with escape sequences
 * cannot reach the operator's terminal. A character cut by a read waits for the next. */
static void copy_escaped(int fd)
{
        char buf[65536], shown[AJ_ESCAPE_MAX];
        size_t have = 0;
        bool eof = false;
        while (!eof) {
                ssize_t n = read(fd, buf + have, sizeof(buf) - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        eof = true;
                else
                        have += (size_t)n;
                size_t i = 0, k;
                while (i < have && (eof || have - i >= 4)) {
                        if (buf[i] == '\n') {
                                putchar('\n');
                                i++;
                                continue;
                        }
                        i += aj_escape_char(buf + i, have - i, AJ_ESCAPE_KEEP_TAB, shown, &k);
                        fwrite(shown, 1, k, stdout);
                }
                memmove(buf, buf + i, have - i);
                have -= i;
        }
        fflush(stdout);
}

/* `diff -u` of one file change, both sides opened here without following symlinks and
 * handed to diff(1) as /proc/self/fd/N (so diff cannot be sent elsewhere). 0, or -errno
 * when a side could not be opened (the caller says so). */
static int show_patch(const Overlay *ov, const AjWsChange *c)
{
        /* The labels are the agent's names: quoted and escaped as in the listing. */
        char a[PATH_MAX + 8], b[PATH_MAX + 8], fa[32], fb[32];
        snprintf(a, sizeof(a), "a/%s", c->path);
        snprintf(b, sizeof(b), "b/%s", c->path);
        _cleanup_free_ char *label_a = aj_printable_dup(a, strlen(a), AJ_ESCAPE_QUOTE);
        _cleanup_free_ char *label_b = aj_printable_dup(b, strlen(b), AJ_ESCAPE_QUOTE);
        if (!label_a || !label_b)
                return -ENOMEM;
        int old_fd = -1, new_fd = -1, r = 0;
        if (c->kind != AJ_WS_ADDED && (old_fd = aj_ws_open_file(ov->lower_fd, c->path)) < 0)
                return old_fd;
        if (c->kind != AJ_WS_DELETED && (new_fd = aj_ws_open_file(ov->upper_fd, c->path)) < 0) {
                r = new_fd;
                goto out;
        }
        snprintf(fa, sizeof(fa), old_fd >= 0 ? "/proc/self/fd/%d" : "/dev/null", old_fd);
        snprintf(fb, sizeof(fb), new_fd >= 0 ? "/proc/self/fd/%d" : "/dev/null", new_fd);
        int out_pipe[2];
        if (pipe2(out_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                close(out_pipe[0]);
                close(out_pipe[1]);
                goto out;
        }
        if (pid == 0) {
                if ((old_fd >= 0 && fcntl(old_fd, F_SETFD, 0) < 0) || (new_fd >= 0 && fcntl(new_fd, F_SETFD, 0) < 0) ||
                    dup2(out_pipe[1], STDOUT_FILENO) < 0)
                        _exit(2);
                execlp("diff", "diff", "-u", "--label", label_a, "--label", label_b, fa, fb, (char *)NULL);
                _exit(127);
        }
        close(out_pipe[1]);
        copy_escaped(out_pipe[0]);
        close(out_pipe[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        /* diff: 0 same, 1 different, 2 trouble (its message is on stderr). */
        if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
                r = WIFEXITED(status) && WEXITSTATUS(status) == 127 ? -ENOENT : -EIO;
out:
        if (old_fd >= 0)
                close(old_fd);
        if (new_fd >= 0)
                close(new_fd);
        return r;
}


static const OverlayVerb diff_verb = { "diff", DIFF_USAGE, DIFF_HELP, "patch", CLI_OPT_PATCH };
static const OverlayVerb commit_verb = { "commit", COMMIT_USAGE, COMMIT_HELP, "force", CLI_OPT_FORCE, true, true };
static const OverlayVerb discard_verb = { "discard", DISCARD_USAGE, DISCARD_HELP, NULL, 0, false, true };

static void print_changes(const Overlay *ov, const AjRun *run, const AjWsChange *c, size_t n, size_t conflicts,
                          bool patch)
{
        _cleanup_free_ char *where = aj_printable_dup(ov->path, strlen(ov->path), AJ_ESCAPE_QUOTE);
        printf("run %s: workspace %s, %zu change%s", run->id, where ?: "?", n, n == 1 ? "" : "s");
        if (conflicts)
                printf(", %zu also changed in the workspace during the run (!)", conflicts);
        putchar('\n');
        size_t odd = 0, git = 0;
        for (size_t i = 0; i < n; i++) {
                /* The agent's names, quoted and escaped as git's core.quotePath shows them: an
                 * escape sequence in a name would move the cursor or erase the line above. */
                bool dir = S_ISDIR(c[i].type), plain = aj_printable_as_is(c[i].path, strlen(c[i].path));
                _cleanup_free_ char *name = aj_printable_dup(c[i].path, strlen(c[i].path), AJ_ESCAPE_QUOTE);
                printf("  %c%c %s%s", change_letter[c[i].kind], c[i].conflict ? '!' : ' ', name ?: "?",
                       dir                  ? "/"
                       : S_ISLNK(c[i].type) ? " (symlink)"
                                            : "");
                if (S_ISREG(c[i].type) && c[i].kind != AJ_WS_DELETED)
                        printf("  %llu bytes", (unsigned long long)c[i].size);
                if (c[i].skipped)
                        printf("  (not applied: %s)", c[i].note ? c[i].note : "unsupported file type");
                if (!plain)
                        fputs("  (control characters in the name)", stdout);
                if (c[i].git_code)
                        fputs("  (git's own file: git on this host may run code from it)", stdout);
                odd += !plain;
                git += c[i].git_code != NULL;
                putchar('\n');
        }
        if (odd)
                printf("%zu name%s with control characters or invalid UTF-8, shown escaped: look at %s before a commit\n",
                       odd, odd == 1 ? "" : "s", odd == 1 ? "it" : "them");
        if (git)
                printf("%zu change%s to git's own files (hooks, config...): git on this host may run code from %s "
                       "when you run it here; commit needs --include-git to apply %s or --exclude-git to leave %s out\n",
                       git, git == 1 ? "" : "s", git == 1 ? "it" : "them", git == 1 ? "it" : "them",
                       git == 1 ? "it" : "them");
        for (size_t i = 0; patch && i < n; i++) {
                if (!S_ISREG(c[i].type) || c[i].skipped || c[i].kind == AJ_WS_REPLACED)
                        continue;
                int q = show_patch(ov, &c[i]);
                _cleanup_free_ char *name = q < 0 ? aj_printable_dup(c[i].path, strlen(c[i].path), AJ_ESCAPE_QUOTE)
                                                  : NULL;
                if (q < 0)
                        printf("(%s: contents not shown: %s)\n", name ?: "?",
                               q == -ENOENT ? "diff(1) is missing" : strerror(-q));
        }
}

int aj_cmd_diff(int argc, char **argv)
{
        _cleanup_(overlay_cmd_done) OverlayCmd cmd;
        int status;
        if (overlay_cmd_begin(&diff_verb, argc, argv, &cmd, &status) < 0)
                return status;
        if (cmd.flag && cmd.json)
                return cli_usage_error("diff", DIFF_USAGE, "--patch and --json do not mix");
        AjWsChange *c = NULL;
        size_t n = 0;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_ws_diff(cmd.ov.upper_fd, cmd.ov.lower_fd, cmd.run->started_ns, &c, &n, &err);
        if (r < 0) {
                cli_fail("diff", "run %s: %s", cmd.run->id, aj_error_text(&err, r));
                return CLI_EXIT_FAIL;
        }
        size_t conflicts = 0;
        for (size_t i = 0; i < n; i++)
                conflicts += c[i].conflict;
        if (cmd.json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:o, s:I}", "run", cmd.run->id, "workspace", cmd.ov.path,
                                             "changes", aj_ws_changes_json(c, n), "conflicts", (json_int_t)conflicts);
                cli_print_json(doc);
        } else {
                print_changes(&cmd.ov, cmd.run, c, n, conflicts, cmd.flag);
        }
        aj_ws_changes_free(c, n);
        return CLI_EXIT_OK;
}

/* Records the outcome in the chain and run.json, and removes the upper dir. */
static int overlay_finish(const char *verb, AjRun *run, const Overlay *ov, const char *done, json_t *fields)
{
        bool recorded;
        int r = aj_run_decide_workspace(run, done, fields, &recorded);
        if (r < 0 && !recorded) {
                cli_fail(verb, "run %s: cannot record it in the event chain: %s", run->id, strerror(-r));
                return r;
        }
        if (r < 0) {
                cli_fail(verb, "run %s: cannot update %s: %s", run->id, AJ_RUN_FILE_RUN, strerror(-r));
                return r;
        }
        r = aj_rm_rf(ov->dir);
        if (r < 0)
                cli_fail(verb, "run %s: cannot remove '%s': %s", run->id, ov->dir, strerror(-r));
        return 0;
}

int aj_cmd_commit(int argc, char **argv)
{
        _cleanup_(overlay_cmd_done) OverlayCmd cmd;
        int status;
        if (overlay_cmd_begin(&commit_verb, argc, argv, &cmd, &status) < 0)
                return status;
        AjRun *run = cmd.run;
        bool force = cmd.flag;
        unsigned flags = (force ? AJ_WS_COMMIT_FORCE : 0) | (cmd.include_git ? AJ_WS_COMMIT_INCLUDE_GIT : 0) |
                         (cmd.exclude_git ? AJ_WS_COMMIT_EXCLUDE_GIT : 0);
        AjWsStats st = { 0 };
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_ws_commit(cmd.ov.upper_fd, cmd.ov.lower_fd, run->started_ns, flags, &st, &err);
        overlay_close(&cmd.ov);
        if (r == -EBUSY) {
                cli_fail("commit", "run %s: %s; nothing was changed (see 'agentjail diff %s', or --force)", run->id,
                         err.message ?: "paths changed in the workspace during the run", run->id);
                return CLI_EXIT_FAIL;
        }
        if (r == -EPERM && err.message) {
                /* The message quotes the agent's path escaped (workspace-commit.c). */
                cli_fail("commit",
                         "run %s: %s. Look at them ('agentjail diff %s --patch'), then commit with --include-git to "
                         "apply them or --exclude-git to leave them out",
                         run->id, err.message, run->id);
                return CLI_EXIT_FAIL;
        }
        if (r < 0) {
                cli_fail("commit", "run %s: %s", run->id, aj_error_text(&err, r));
                return CLI_EXIT_FAIL;
        }
        json_t *fields = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I}", "workspace", cmd.ov.path, "added",
                                   (json_int_t)st.added, "modified", (json_int_t)st.modified, "deleted",
                                   (json_int_t)st.deleted, "replaced", (json_int_t)st.replaced, "skipped",
                                   (json_int_t)st.skipped, "force", force, "git_applied", (json_int_t)st.git_code,
                                   "git_excluded", (json_int_t)st.git_excluded);
        json_auto_t *doc = json_deep_copy(fields);
        if (doc && st.odd_names)
                json_object_set_new(doc, "odd_names", json_integer((json_int_t)st.odd_names));
        if (overlay_finish("commit", run, &cmd.ov, "committed", fields) < 0)
                return CLI_EXIT_FAIL;
        if (cmd.json) {
                json_object_set_new(doc, "run", json_string(run->id));
                json_object_set_new(doc, "op", json_string("commit"));
                json_object_set_new(doc, "ok", json_true());
                cli_print_json(doc);
        } else {
                _cleanup_free_ char *where = aj_printable_dup(cmd.ov.path, strlen(cmd.ov.path), AJ_ESCAPE_QUOTE);
                printf("run %s: committed to %s: %zu added, %zu modified, %zu deleted, %zu replaced", run->id,
                       where ?: "?", st.added, st.modified, st.deleted, st.replaced);
                if (st.skipped)
                        printf(", %zu not applied", st.skipped);
                if (st.git_code)
                        printf("; %zu of them to git's own files (--include-git)", st.git_code);
                if (st.git_excluded)
                        printf("; %zu change%s to git's own files left out (--exclude-git)", st.git_excluded,
                               st.git_excluded == 1 ? "" : "s");
                if (st.odd_names)
                        printf("; %zu of them with control characters or invalid UTF-8 in the name", st.odd_names);
                putchar('\n');
        }
        return CLI_EXIT_OK;
}

int aj_cmd_discard(int argc, char **argv)
{
        _cleanup_(overlay_cmd_done) OverlayCmd cmd;
        int status;
        if (overlay_cmd_begin(&discard_verb, argc, argv, &cmd, &status) < 0)
                return status;
        AjRun *run = cmd.run;
        overlay_close(&cmd.ov);
        if (overlay_finish("discard", run, &cmd.ov, "discarded", json_pack("{s:s}", "workspace", cmd.ov.path)) < 0)
                return CLI_EXIT_FAIL;
        if (cmd.json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:s}", "run", run->id, "op", "discard", "ok", 1,
                                             "workspace", cmd.ov.path);
                cli_print_json(doc);
        } else {
                _cleanup_free_ char *where = aj_printable_dup(cmd.ov.path, strlen(cmd.ov.path), AJ_ESCAPE_QUOTE);
                printf("run %s: workspace changes discarded (%s is as it was before the run)\n", run->id, where ?: "?");
        }
        return CLI_EXIT_OK;
}
