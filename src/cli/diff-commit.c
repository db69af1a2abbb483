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

#include "cli/diff-patch.h"
#include "cli/verb.h"
#include "util/format.h"
#include "cli/verbs.h"
#include "events.h"
#include "mount.h"
#include "util/fd.h"
#include "util/open-under.h"
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
        const char *path;   /* the workspace on the host (run.json): path_copy once opened */
        char *path_copy;    /* owned: recording the decision reads run.json again */
        char dir[PATH_MAX]; /* <run dir>/workspace: upper/ and work/ */
        int upper_fd, lower_fd;
        int lock_fd; /* dir, flock()ed by commit and discard until they are done */
} Overlay;

static void overlay_close(Overlay *o)
{
        if (o->upper_fd >= 0)
                close(o->upper_fd);
        if (o->lower_fd >= 0)
                close(o->lower_fd);
        o->upper_fd = o->lower_fd = -1;
}

/* A commit and a discard of the same run, or two commits, one at a time: the other one's
 * upper dir vanishes under a commit that has applied part of it, and the run is recorded
 * "discarded" with the agent's files in the workspace. The lock is on the kept changes'
 * directory, held until the decision is recorded and the directory removed; run.json is
 * read again once it is held, since the one read before may predate the other's decision. */
static int lock_overlay(const char *cmd, AjRun *run, Overlay *o)
{
        int r = aj_run_lock_workspace(run, &o->lock_fd);
        if (r == -EWOULDBLOCK) {
                cli_fail(cmd, "run %s: another 'agentjail commit' or 'discard' of it is running", run->id);
                return r;
        }
        if (r < 0) {
                cli_fail(cmd, "run %s: cannot lock '%s': %s", run->id, o->dir, strerror(-r));
                return r;
        }
        /* Missing: the changes are gone, the record below says why (or open fails later). */
        AjRunRecord *rec = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_run_record_read(run->dir, &rec, &err);
        if (r < 0) {
                cli_fail(cmd, "run %s: %s", run->id, aj_error_text(&err, r));
                return r;
        }
        aj_run_record_free(run->rec);
        run->rec = rec;
        return 0;
}

/* The workspace the run's overlay covered, at its recorded path: the very directory (the
 * dev/ino run.json has), or, in a record without them, one reached without a symlink. An
 * agent with an rw bind above its workspace (or the owner of a directory above it) put a
 * symlink there during the run, and the commit wrote the agent's files, as root and owned
 * by the directory's owner, wherever it pointed: /etc/cron.d as well. */
static int open_lower(const char *cmd, const AjRun *run, const AjRunWorkspace *ws, Overlay *o)
{
        int r;
        if (ws->has_id) {
                o->lower_fd = open(o->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = o->lower_fd < 0 ? -errno : aj_run_workspace_check(ws, o->lower_fd);
        } else {
                _cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                o->lower_fd = root < 0 ? -errno
                                       : aj_open_under(root, o->path, O_RDONLY | O_DIRECTORY, 0, AJ_UNDER_NO_SYMLINKS);
                r = o->lower_fd < 0 ? o->lower_fd : 0;
        }
        if (r == 0)
                return 0;
        _cleanup_free_ char *where = aj_printable_dup(o->path, strlen(o->path), AJ_ESCAPE_QUOTE);
        if (r == -ESTALE)
                cli_fail(cmd,
                         "run %s: the workspace %s is not the directory the run had (moved, or replaced by a "
                         "symlink or another directory since): nothing was changed",
                         run->id, where ?: "?");
        else if (r == -ELOOP && !ws->has_id)
                cli_fail(cmd,
                         "run %s: the workspace %s has a symlink on its path, and the run recorded no identity to "
                         "tell it is the directory the run had (an older agentjail): nothing was changed",
                         run->id, where ?: "?");
        else
                cli_fail(cmd, "run %s: cannot open the workspace %s: %s", run->id, where ?: "?", strerror(-r));
        overlay_close(o);
        return r;
}

/* The run's overlay workspace with its changes still pending, the run not live; `decide`
 * (commit, discard): locked against another decision. */
static int open_overlay(const char *cmd, AjRun *run, bool decide, Overlay *o)
{
        *o = (Overlay){ .upper_fd = -1, .lower_fd = -1, .lock_fd = -1 };
        const AjRunWorkspace *ws = run->rec ? &run->rec->workspace : &(AjRunWorkspace){ 0 };
        o->path = ws->path;
        if (!ws->mode || !streq(ws->mode, "overlay") || !o->path) {
                cli_fail(cmd,
                         "run %s has no overlay workspace (its profile's filesystem.workspace.mode is not "
                         "\"overlay\")",
                         run->id);
                return -ENOENT;
        }
        /* Whiteouts and opaque directories are recorded in trusted.* xattrs, which only
         * root can read: anyone else would see a wrong diff. (Overlay runs are root's.) */
        if (geteuid() != 0) {
                cli_fail(cmd, "run %s: reviewing an overlay workspace needs root", run->id);
                return -EPERM;
        }
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live || run->alive) {
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
        if (decide) {
                int r = lock_overlay(cmd, run, o);
                if (r < 0)
                        return r;
                ws = run->rec ? &run->rec->workspace : &(AjRunWorkspace){ 0 };
                o->path = ws->path;
                if (!o->path) {
                        cli_fail(cmd, "run %s: %s no longer names its workspace", run->id, AJ_RUN_FILE_RUN);
                        return -ENOENT;
                }
        }
        if (ws->changes && !streq(ws->changes, "pending")) {
                cli_fail(cmd, "run %s: its workspace changes were %s already", run->id, ws->changes);
                return -EALREADY;
        }
        /* Recording the decision reads run.json again (runs.h), and frees this record. */
        if (!(o->path_copy = strdup(o->path)))
                return -ENOMEM;
        o->path = o->path_copy;
        char upper[PATH_MAX + 8];
        snprintf(upper, sizeof(upper), "%s/%s", o->dir, AJ_OVERLAY_UPPER);
        o->upper_fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (o->upper_fd < 0) {
                cli_fail(cmd, "run %s: cannot open its workspace changes '%s': %m", run->id, upper);
                return -errno;
        }
        return open_lower(cmd, run, ws, o);
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
        bool decides;     /* commit, discard: one at a time (lock_overlay) */
        bool acting;      /* writes what the records name with our rights: cli_check_acting() */
        bool settled;     /* diff, commit: not while a process of the run is left (check_settled) */
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
        if (c->ov.lock_fd >= 0)
                close(c->ov.lock_fd);
        free(c->ov.path_copy);
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

/* A run whose supervisor and watchdog are gone can still have processes in its cgroup (both
 * killed; a watchdog that gave up on one that does not die, cgroup.left): one still in the
 * overlay writes into the upper dir while commit applies it, and what the operator reviewed
 * (diff) is not what is applied. Refused then, and when that cannot be told; diff too, which
 * showed the changes as they were then, and the commit, once that process was gone, applied
 * what it wrote since, which no diff had shown. Discard is not: the workspace stays as it
 * was whatever such a process still writes, into a directory gone. */
static int check_settled(const char *cmd, bool shows, const AjRun *run)
{
        _cleanup_free_ char *why = NULL;
        int r = aj_run_check_settled(run, &why);
        if (r < 0)
                cli_fail(cmd, "run %s: nothing %s: %s%s%s%s", run->id, shows ? "is shown" : "was changed",
                         why ?: strerror(-r), r == -EBUSY ? "; then " : "", r == -EBUSY ? cmd : "",
                         r == -EBUSY ? " again" : "");
        return r;
}

/* The start of diff, commit and discard: options, the run, its overlay. 0 when the verb
 * goes on with c->ov open, else it is done: *ret_status is its exit status (help, or an
 * error reported). */
static int overlay_cmd_begin(const OverlayVerb *v, int argc, char **argv, OverlayCmd *c, int *ret_status)
{
        *c = (OverlayCmd){ .ov = { .upper_fd = -1, .lower_fd = -1, .lock_fd = -1 } };
        const char *query = NULL;
        int r = parse_overlay_verb(v, argc, argv, c, &query);
        if (r) {
                *ret_status = r == 1 ? CLI_EXIT_OK : r;
                return -ECANCELED;
        }
        *ret_status = CLI_EXIT_FAIL;
        r = v->acting ? cli_open_run_to_act(v->cmd, query, &c->paths, &c->run)
                      : cli_open_run(v->cmd, query, &c->paths, &c->run);
        if (r < 0 || (v->acting && (r = cli_check_acting(v->cmd, &c->paths)) < 0))
                return r;
        r = open_overlay(v->cmd, c->run, v->decides, &c->ov);
        return r < 0 || !v->settled ? r : check_settled(v->cmd, !v->decides, c->run);
}

static const OverlayVerb diff_verb = { "diff", DIFF_USAGE, DIFF_HELP, "patch", CLI_OPT_PATCH, .settled = true };
static const OverlayVerb commit_verb = { "commit", COMMIT_USAGE, COMMIT_HELP, "force", CLI_OPT_FORCE,
                                         true,     true,         true,        true };
static const OverlayVerb discard_verb = { "discard", DISCARD_USAGE, DISCARD_HELP, NULL, 0, false, true, true };

static void print_changes(const Overlay *ov, const AjRun *run, const AjWsChange *c, size_t n, size_t conflicts,
                          bool patch)
{
        _cleanup_free_ char *where = aj_printable_dup(ov->path, strlen(ov->path), AJ_ESCAPE_QUOTE);
        printf("run %s: workspace %s, %zu change%s", run->id, where ?: "?", n, n == 1 ? "" : "s");
        if (conflicts)
                printf(", %zu also changed in the workspace during the run (!)", conflicts);
        putchar('\n');
        size_t odd = 0, git = 0, outside = 0, mounted = 0, writable = 0;
        for (size_t i = 0; i < n; i++) {
                /* The agent's names, quoted and escaped as git's core.quotePath shows them: an
                 * escape sequence in a name would move the cursor or erase the line above. */
                bool dir = S_ISDIR(c[i].type), plain = aj_printable_as_is(c[i].path, strlen(c[i].path));
                bool plain_target = true;
                _cleanup_free_ char *name = aj_printable_dup(c[i].path, strlen(c[i].path), AJ_ESCAPE_QUOTE);
                printf("  %c%c %s%s", change_letter[c[i].kind], c[i].conflict ? '!' : ' ', name ?: "?",
                       dir                  ? "/"
                       : S_ISLNK(c[i].type) ? " (symlink)"
                                            : "");
                if (c[i].target) {
                        _cleanup_free_ char *target = aj_printable_dup(c[i].target, strlen(c[i].target),
                                                                       AJ_ESCAPE_QUOTE);
                        printf(" -> %s", target ?: "?");
                        plain_target = aj_printable_as_is(c[i].target, strlen(c[i].target));
                }
                if (S_ISREG(c[i].type) && c[i].kind != AJ_WS_DELETED)
                        printf("  %llu bytes", (unsigned long long)c[i].size);
                if (c[i].mode_changed)
                        printf("  (mode %04o -> %04o)", (unsigned)c[i].mode_was, (unsigned)c[i].mode);
                if (c[i].has_mode && (c[i].mode & S_IWOTH))
                        fputs("  (writable by everyone)", stdout);
                if (c[i].skipped)
                        printf("  (%s)", c[i].note ? c[i].note : "not applied: unsupported file type");
                else if (c[i].note)
                        printf("  (%s%s)", c[i].note,
                               c[i].kind == AJ_WS_MODIFIED && strstr(c[i].note, "replaces a directory")
                                       ? ": commit removes it with all it holds"
                                       : "");
                if (c[i].outside)
                        fputs("  (points outside the workspace)", stdout);
                if (c[i].mount_at == strlen(c[i].path))
                        fputs("  (a mount point in the workspace: commit refuses it)", stdout);
                else if (c[i].mount_at) {
                        _cleanup_free_ char *at = aj_printable_dup(c[i].path, c[i].mount_at, AJ_ESCAPE_QUOTE);
                        printf("  (below the mount point %s in the workspace: commit refuses it)", at ?: "?");
                }
                if (!plain)
                        fputs("  (control characters in the name)", stdout);
                if (!plain_target)
                        fputs("  (control characters in the target)", stdout);
                if (c[i].git_code)
                        fputs("  (git's own file: git on this host may run code from it)", stdout);
                odd += !plain || !plain_target;
                git += c[i].git_code != NULL;
                outside += c[i].outside;
                mounted += c[i].mount_at != 0;
                writable += c[i].has_mode && (c[i].mode & S_IWOTH);
                putchar('\n');
        }
        if (odd)
                printf("%zu name%s with control characters or invalid UTF-8, shown escaped: look at %s before a commit\n",
                       odd, odd == 1 ? "" : "s", odd == 1 ? "it" : "them");
        if (outside)
                printf("%zu symlink%s pointing outside the workspace (an absolute target, or '..' above its top): "
                       "what follows %s once committed reads or writes there\n",
                       outside, outside == 1 ? "" : "s", outside == 1 ? "it" : "them");
        if (writable)
                printf("%zu file%s or director%s writable by everyone once committed: any user of this host "
                       "could change %s\n",
                       writable, writable == 1 ? "" : "s", writable == 1 ? "y" : "ies", writable == 1 ? "it" : "them");
        if (mounted)
                printf("%zu change%s at or below a mount point in the workspace: the run saw the directory under the "
                       "mount, not what is mounted there, and commit refuses to write across it (unmount it first)\n",
                       mounted, mounted == 1 ? "" : "s");
        if (git)
                printf("%zu change%s to git's own files (hooks, config...): git on this host may run code from %s "
                       "when you run it here; commit needs --include-git to apply %s or --exclude-git to leave %s out\n",
                       git, git == 1 ? "" : "s", git == 1 ? "it" : "them", git == 1 ? "it" : "them",
                       git == 1 ? "it" : "them");
        if (patch)
                cli_print_patches(ov->lower_fd, ov->upper_fd, c, n);
}

/* `diff --json`: the document cli_print_json prints, {run, workspace, changes, conflicts}
 * laid out CLI_JSON_LEVELS deep, made one change at a time: the DOM of every change at once
 * took 1.2 GB for the agent's million empty files. The head and tail come from the
 * document with "changes" empty, each change is laid out two levels in. */
static int print_changes_json(const AjRun *run, const Overlay *ov, const AjWsChange *c, size_t n, size_t conflicts)
{
        static const char empty[] = "\n  \"changes\": []";
        json_auto_t *doc = json_pack("{s:s, s:s, s:[], s:I}", "run", run->id, "workspace", ov->path, "changes",
                                     "conflicts", (json_int_t)conflicts);
        _cleanup_free_ char *text = doc ? aj_json_dumps_indented(doc, CLI_JSON_LEVELS) : NULL;
        char *at = text ? strstr(text, empty) : NULL; /* a string has no raw newline */
        if (!at)
                return -ENOMEM;
        if (n == 0)
                return cli_print_json_text(text);
        *at = 0;
        _cleanup_free_ char *head = aj_json_text_hidden_escaped(text);
        _cleanup_free_ char *tail = aj_json_text_hidden_escaped(at + strlen(empty));
        if (!head || !tail)
                return -ENOMEM;
        printf("%s\n  \"changes\": [", head);
        for (size_t i = 0; i < n; i++) {
                json_auto_t *o = aj_ws_change_json(&c[i]);
                _cleanup_free_ char *one = o ? aj_json_dumps_indented(o, CLI_JSON_LEVELS - 2) : NULL;
                _cleanup_free_ char *shown = one ? aj_json_text_hidden_escaped(one) : NULL;
                if (!shown)
                        return -ENOMEM;
                fputs(i ? ",\n    " : "\n    ", stdout);
                for (const char *p = shown, *nl; *p; p = nl + 1) {
                        nl = strchrnul(p, '\n');
                        fwrite(p, 1, (size_t)(nl - p), stdout);
                        if (!*nl)
                                break;
                        fputs("\n    ", stdout);
                }
        }
        printf("\n  ]%s\n", tail);
        return 0;
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
                r = print_changes_json(cmd.run, &cmd.ov, c, n, conflicts);
                if (r < 0) {
                        aj_ws_changes_free(c, n);
                        cli_fail("diff", "run %s: %s", cmd.run->id, strerror(-r));
                        return CLI_EXIT_FAIL;
                }
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

/* A commit that failed half way changed the workspace, as root: the chain says what it
 * applied ("workspace.commit_failed"), though the changes stay pending. */
static void record_partial_commit(AjRun *run, const char *workspace, const AjWsStats *st, const char *error)
{
        size_t applied = st->added + st->modified + st->deleted + st->replaced;
        if (applied == 0)
                return;
        json_t *fields = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:I}", "workspace", workspace, "added",
                                   (json_int_t)st->added, "modified", (json_int_t)st->modified, "deleted",
                                   (json_int_t)st->deleted, "replaced", (json_int_t)st->replaced, "error", error, "uid",
                                   (json_int_t)getuid());
        int r = fields ? aj_run_append_event(run, "workspace.commit_failed", fields) : -ENOMEM;
        if (r < 0)
                cli_fail("commit", "run %s: cannot record the %zu changes applied in the event chain: %s", run->id,
                         applied, strerror(-r));
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
        if (r < 0 && st.apply_failed) {
                cli_fail("commit", "run %s: %s", run->id, aj_error_text(&err, r));
                record_partial_commit(run, cmd.ov.path, &st, aj_error_text(&err, r));
                return CLI_EXIT_FAIL;
        }
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
        if (doc && st.outside)
                json_object_set_new(doc, "outside", json_integer((json_int_t)st.outside));
        if (doc && st.writable_by_all)
                json_object_set_new(doc, "writable_by_all", json_integer((json_int_t)st.writable_by_all));
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
                if (st.outside)
                        printf("; %zu symlink%s pointing outside the workspace", st.outside,
                               st.outside == 1 ? "" : "s");
                if (st.writable_by_all)
                        printf("; %zu writable by everyone", st.writable_by_all);
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
