/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail rollback`: what it takes to undo a run, and (--apply) the undo records run
 * through the profile's rollback handler. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "profile.h"
#include "rollback.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/parse.h"

#define ROLLBACK_USAGE                                                                     \
        "agentjail rollback RUN [--apply] [--dry-run] [--keep-going] [--approve CALL]... " \
        "[--approve-all-gated] [--include-failed] [--timeout DURATION] [--json]"
#define ROLLBACK_HELP                                                                            \
        "What it takes to undo a run: its workspace changes (an overlay workspace can\n"         \
        "still be discarded) and, newest first, the tool calls that reported a result with\n"    \
        "the undo record the agent gave (the compensating action), and those it gave none\n"     \
        "for.\n"                                                                                 \
        "--apply: run each undo record, newest first, through the handler the run's profile\n"   \
        "names in rollback.exec (on this host, as you, not in a jail: the record as JSON on\n"   \
        "its stdin); each step is recorded in the run's chain (rollback.step) and run.json.\n"   \
        "Steps the chain says succeeded are not run again: after a stop, --apply again goes\n"   \
        "on with what is left. A failing step (non-zero exit, killed, past its time) stops\n"    \
        "the steps after it.\n"                                                                  \
        "--dry-run: print the plan (steps in order, which are applied already or held), run\n"   \
        "nothing.\n"                                                                             \
        "--keep-going: go on after a failed or held step.\n"                                     \
        "--approve CALL: run the undo of CALL although its tool (or the undo record's tool)\n"   \
        "matches the profile's approvals.tools; without it such a step is held, not run.\n"      \
        "CALL@RESULT_SEQ names one step when the agent reused the call id.\n"                    \
        "--approve-all-gated: approve every such step.\n"                                        \
        "--include-failed: also run the undo records of calls that reported status \"error\"\n"  \
        "(left out by default: the call failed, there may be nothing to undo).\n"                \
        "Only the first result of a call the broker allowed is planned: results for call ids\n"  \
        "never allowed, or reported again, are listed as orphans and never run.\n"               \
        "--timeout DURATION: each step's time (default: the profile's rollback.timeout, 60s);\n" \
        "past it the handler and its process group are killed.\n"                                \
        "Exit status with --apply: 0 every step is applied, 1 one failed or was held."

#define MAX_APPROVALS 256
#define PLAN_UNDO_MAX 300 /* characters of an undo record shown in the plan */

/* The agent's strings (call ids, tool names) as the plan shows them: as they are when
 * plain (letters, digits, "_./:@+-,"), else between double quotes, escaped (util/format.h:
 * quotes, backslashes, controls, C1 and bidi characters, invalid UTF-8). */
#define SHOWN_MAX 300
static const char *shown(const char *s, char buf[static SHOWN_MAX])
{
        if (!s)
                return "?";
        bool plain = *s != 0;
        for (const char *p = s; plain && *p; p++)
                plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                        strchr("_./:@+-,", *p);
        if (plain && strlen(s) < SHOWN_MAX) {
                strcpy(buf, s);
                return buf;
        }
        /* Quoted, escaped by the one rule (util/format.h): a name needing an escape comes back
         * quoted already, any other is quoted here. */
        _cleanup_free_ char *text = aj_printable_dup(s, strlen(s), AJ_ESCAPE_QUOTE);
        if (!text)
                return "?";
        snprintf(buf, SHOWN_MAX, text[0] == '"' ? "%s" : "\"%s\"", text);
        if (strlen(text) >= SHOWN_MAX)
                strcpy(buf + SHOWN_MAX - 4, "...");
        return buf;
}
#define SHOWN(s) shown((s), (char[SHOWN_MAX]){ 0 })

/* A call id as the operator types it after --approve: as it is when plain, else one shell
 * word between single quotes, escaped inside by the one rule. SHOWN's double quotes left
 * "$(...)", backquotes and backslashes to the shell: the agent's id '$(id>/tmp/x)' was
 * suggested as --approve "$(id>/tmp/x)", which, pasted, ran its command as the operator. An
 * id the rule escapes cannot be pasted back: it names no step, and is refused. */
static const char *shown_arg(const char *s, char buf[static SHOWN_MAX])
{
        const char *plain = shown(s, buf);
        if (plain[0] != '"')
                return plain;
        _cleanup_free_ char *text = aj_printable_dup(s, strlen(s), 0);
        if (!text)
                return "?";
        size_t n = 0;
        buf[n++] = '\'';
        for (const char *p = text; *p && n + 6 < SHOWN_MAX; p++) {
                if (*p == '\'') {
                        memcpy(buf + n, "'\\''", 4); /* close, an escaped quote, reopen */
                        n += 4;
                } else {
                        buf[n++] = *p;
                }
        }
        buf[n++] = '\'';
        buf[n] = 0;
        return buf;
}
#define SHOWN_ARG(s) shown_arg((s), (char[SHOWN_MAX]){ 0 })

/* An undo record (compact JSON text, as the journal holds it) as the plan shows it: ASCII,
 * on a line, cut at `max` characters (SIZE_MAX: whole). Parsed here, one at a time: the
 * journal holds the agent's values as text. NULL: not JSON, or out of memory. */
static char *shown_undo(const char *text, size_t max)
{
        if (!text || (text[0] != '{' && text[0] != '['))
                return NULL; /* a scalar is shown as none, as it always was (jansson dumps containers) */
        const char *p = text;
        while (*p && (unsigned char)*p < 0x80 && (size_t)(p - text) <= max)
                p++;
        if (!*p || (size_t)(p - text) > max) { /* ASCII as far as it is shown: the text is its ASCII form */
                char *u = max == SIZE_MAX ? strdup(text) : strndup(text, max + 1);
                if (u && strlen(u) > max)
                        strcpy(u + max - 3, "...");
                return u;
        }
        json_auto_t *undo = json_loads(text, JSON_DECODE_ANY, NULL);
        char *u = undo ? json_dumps(undo, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_ENCODE_ANY)
                       : NULL;
        if (u && strlen(u) > max) /* the agent's: a line, not a page */
                strcpy(u + max - 3, "...");
        return u;
}

/* --json: the journal's and the steps' undo records and arguments (their JSON text) written
 * as the values they are, each parsed only while it is written. */
typedef struct {
        bool failed;
} Expand;

static json_t *expand_agent_value(const char *key, const json_t *value, void *userdata)
{
        Expand *e = userdata;
        const char *text = json_string_value(value);
        if (!text || !(streq(key, "undo") || streq(key, "gen_ai.tool.call.arguments")))
                return NULL;
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        e->failed |= !v;
        return v;
}

static int print_json_expanded(json_t *doc)
{
        Expand e = { 0 };
        int r = cli_print_json_expand(doc, expand_agent_value, &e);
        if (r < 0 || e.failed) {
                cli_fail("rollback", "cannot write the document: %s", strerror(r < 0 ? -r : ENOMEM));
                return -1;
        }
        return 0;
}

/* SIGINT or SIGTERM during --apply: the step in progress finishes and is recorded, then
 * the rollback stops (a step cut off midway would be neither applied nor recorded). */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) { interrupted = sig; }

typedef struct {
        bool json, help, apply, dry_run, keep_going, approve_all, include_failed;
        const char *run;
        const char *approve[MAX_APPROVALS];
        size_t n_approve;
        uint64_t timeout_ns; /* 0: the profile's */
} Options;

enum {
        OPT_APPLY = 0x200,
        OPT_DRY_RUN,
        OPT_KEEP_GOING,
        OPT_APPROVE,
        OPT_APPROVE_ALL,
        OPT_TIMEOUT,
        OPT_INCLUDE_FAILED,
};

static int parse_options(int argc, char **argv, Options *o)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "apply", no_argument, NULL, OPT_APPLY },
                { "dry-run", no_argument, NULL, OPT_DRY_RUN },
                { "keep-going", no_argument, NULL, OPT_KEEP_GOING },
                { "approve", required_argument, NULL, OPT_APPROVE },
                { "approve-all-gated", no_argument, NULL, OPT_APPROVE_ALL },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "include-failed", no_argument, NULL, OPT_INCLUDE_FAILED },
                {},
        };
        const char *cmd = "rollback";
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        o->help = true;
                        return 0;
                case CLI_OPT_JSON:
                        o->json = true;
                        break;
                case OPT_APPLY:
                        o->apply = true;
                        break;
                case OPT_DRY_RUN:
                        o->dry_run = true;
                        break;
                case OPT_KEEP_GOING:
                        o->keep_going = true;
                        break;
                case OPT_APPROVE_ALL:
                        o->approve_all = true;
                        break;
                case OPT_INCLUDE_FAILED:
                        o->include_failed = true;
                        break;
                case OPT_APPROVE:
                        if (!aj_plain_name(optarg, strlen(optarg), 128 + 21)) /* CALL@RESULT_SEQ */
                                return cli_usage_error(cmd, ROLLBACK_USAGE,
                                                       "--approve: expected a tool call id of 1 to 128 bytes, or "
                                                       "CALL@RESULT_SEQ");
                        if (o->n_approve == MAX_APPROVALS)
                                return cli_usage_error(cmd, ROLLBACK_USAGE, "--approve: at most %d of them",
                                                       MAX_APPROVALS);
                        o->approve[o->n_approve++] = optarg;
                        break;
                case OPT_TIMEOUT:
                        if (aj_parse_duration(optarg, &o->timeout_ns) < 0 ||
                            o->timeout_ns < AJ_ROLLBACK_TIMEOUT_MIN_NS || o->timeout_ns > AJ_ROLLBACK_TIMEOUT_MAX_NS)
                                return cli_usage_error(cmd, ROLLBACK_USAGE,
                                                       "--timeout: expected a duration from 1s to 1h such as 60s");
                        break;
                default:
                        return cli_option_error(cmd, ROLLBACK_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals(cmd, ROLLBACK_USAGE, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        o->run = argv[optind];
        bool acting = o->apply || o->dry_run;
        if (!acting && (o->keep_going || o->approve_all || o->n_approve || o->timeout_ns || o->include_failed))
                return cli_usage_error(cmd, ROLLBACK_USAGE,
                                       "--keep-going, --approve, --approve-all-gated, --include-failed and --timeout go "
                                       "with --apply");
        return 0;
}

/* ---- the listing (no --apply) ------------------------------------------------------------ */

static void print_workspace(const AjRun *run, json_t *ws)
{
        const AjRunRecord *rec = run->rec;
        printf("run %s (%s)\n", run->id, cli_run_name(run));
        const char *changes = ws ? rec->workspace.changes : NULL;
        const char *mode = rec ? rec->profile_workspace_mode : NULL;
        if (!json_is_object(ws) && mode && streq(mode, "ro"))
                printf("workspace: read-only, the agent could not change it\n");
        else if (!json_is_object(ws) && mode && streq(mode, "none"))
                printf("workspace: none was mounted\n");
        else if (!json_is_object(ws))
                printf("workspace: written in place (mode %s): agentjail kept no copy to go back to\n",
                       mode ? mode : "rw");
        else if (changes && streq(changes, "pending"))
                printf("workspace: %s untouched; the agent's changes are kept: 'agentjail discard %s' drops them\n",
                       rec->workspace.path ?: "?", run->id);
        else
                printf("workspace: the agent's changes were %s (%s)\n", changes ? changes : "?",
                       rec->workspace.decided_at ?: "?");
}

static void print_calls(json_t *calls, size_t with_undo, size_t unreversible, size_t orphans)
{
        size_t i;
        json_t *c;
        printf("tool calls with a result, newest first: %zu; %zu with an undo record, %zu succeeded without one",
               json_array_size(calls) - orphans, with_undo, unreversible);
        if (orphans)
                printf("; %zu orphan result%s (no allowed call, or reported again: never undone)", orphans,
                       orphans == 1 ? "" : "s");
        printf("\n");
        json_array_foreach (calls, i, c) {
                _cleanup_free_ char *u = shown_undo(cli_jstr(c, "undo"), PLAN_UNDO_MAX);
                const char *st = cli_jstr(c, "status") ?: "?";
                const char *rolled = cli_jstr(json_object_get(c, "rollback"), "result");
                const char *orphan = cli_jstr(c, "orphan");
                printf("  %-20s %-24s %-6s %s%s%s%s%s\n", SHOWN(cli_jstr(c, "gen_ai.tool.call.id")),
                       orphan ? "(orphan)" : SHOWN(cli_jstr(c, "gen_ai.tool.name")), SHOWN(st),
                       u                 ? u
                       : streq(st, "ok") ? "(no undo record: reverse it by hand)"
                                         : "(failed, no undo record)",
                       rolled ? "  rollback: " : "", rolled ?: "", orphan ? "  orphan, never undone: " : "",
                       orphan ?: "");
        }
}

static int list_cmd(AjRun *run, bool json)
{
        json_t *calls = NULL;
        int r = aj_run_tool_journal(run, &calls);
        if (r < 0) {
                cli_fail("rollback", "cannot read '%s/%s': %s", run->dir, AJ_RUN_FILE_EVENTS, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        json_auto_t *owned = calls;
        size_t with_undo = 0, unreversible = 0, orphans = 0, i;
        json_t *c;
        json_array_foreach (calls, i, c) {
                bool undo = !json_is_null(json_object_get(c, "undo"));
                const char *st = cli_jstr(c, "status");
                if (json_object_get(c, "orphan")) { /* not a call's result: never undone */
                        orphans++;
                        continue;
                }
                with_undo += undo;
                unreversible += !undo && st && streq(st, "ok");
        }
        const AjRunRecord *rec = run->rec;
        json_t *ws = rec && rec->workspace.present ? rec->shown.workspace : NULL;
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:O?, s:O, s:I, s:I, s:I}", "run", run->id, "workspace", ws,
                                             "calls", calls, "with_undo", (json_int_t)with_undo, "ok_without_undo",
                                             (json_int_t)unreversible, "orphans", (json_int_t)orphans);
                return print_json_expanded(doc) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        }
        print_workspace(run, ws);
        print_calls(calls, with_undo, unreversible, orphans);
        return CLI_EXIT_OK;
}

/* ---- the plan and --apply ---------------------------------------------------------------- */

static const char *action_name(AjRollbackAction a)
{
        return a == AJ_ROLLBACK_APPLIED ? "applied" : a == AJ_ROLLBACK_HELD ? "held" : "run";
}

/* The profile the run ran with, from run.json (its handler and its approvals). */
static int run_profile(AjRun *run, AjProfile **ret)
{
        if (!run->rec || !json_is_object(run->rec->shown.resolved)) {
                cli_fail("rollback", "run %s: %s has no resolved profile (%s)", run->id, AJ_RUN_FILE_RUN,
                         run->rec_error.message ?: "missing");
                return -ENOENT;
        }
        _cleanup_free_ char *text = json_dumps(run->rec->shown.resolved, JSON_COMPACT);
        char where[PATH_MAX];
        if (!text || aj_run_file_path(run->dir, AJ_RUN_FILE_RUN, where, sizeof(where)) < 0)
                return -ENOMEM;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_profile_parse(text, where, ret, &err);
        if (r < 0)
                cli_fail("rollback", "run %s: its recorded profile: %s", run->id, aj_error_text(&err, r));
        return r;
}

/* Another `rollback --apply` of the same run would run the same steps: one at a time. */
static int lock_run(const AjRun *run, int *ret_fd)
{
        int fd = open(run->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = -errno;
                if (fd >= 0)
                        close(fd);
                if (r == -EWOULDBLOCK)
                        cli_fail("rollback",
                                 "run %s: another 'agentjail rollback --apply' of it is running, or its supervisor "
                                 "or watchdog is still there, or it is being removed",
                                 run->id);
                else
                        cli_fail("rollback", "run %s: cannot lock '%s': %s", run->id, run->dir, strerror(-r));
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static json_t *step_json(const AjRollbackStep *s)
{
        return json_pack("{s:I, s:I, s:s, s:s?, s:s?, s:s?, s:s, s:I, s:s, s:b, s:s?, s:s?}", "step",
                         (json_int_t)s->step, "of", (json_int_t)s->of, "call_id", s->call_id, "tool", s->tool,
                         "undo_tool", s->undo_tool, "status", s->status, "undo", s->undo, "result_seq",
                         (json_int_t)s->result_seq, "action", action_name(s->action), "gated", s->gated, "gate",
                         s->gate, "last_result", s->last_result);
}

static void print_step(const AjRollbackStep *s, const char *what)
{
        printf("  %u/%u  %-20s %-24s %-8s %s\n", s->step, s->of, SHOWN(s->call_id), SHOWN(s->tool),
               action_name(s->action), what);
}

static void print_header(const AjRun *run, const AjRollbackPlan *p, const AjProfile *prof, uint64_t timeout_ns)
{
        char t[32];
        printf("run %s (%s): %zu undo record%s, newest first", run->id, cli_run_name(run), p->n, p->n == 1 ? "" : "s");
        if (!prof->rollback_exec.n) {
                printf("; the run's profile has no rollback.exec: nothing can be run\n");
                return;
        }
        printf(", each through");
        for (size_t i = 0; i < prof->rollback_exec.n; i++)
                printf(" %s", prof->rollback_exec.items[i]);
        printf(" (up to %s)\n", aj_format_duration(timeout_ns, t, sizeof(t)));
}

static void print_plan(const AjRun *run, const AjRollbackPlan *p, const AjProfile *prof, uint64_t timeout_ns)
{
        print_header(run, p, prof, timeout_ns);
        for (size_t i = 0; i < p->n; i++) {
                const AjRollbackStep *s = &p->steps[i];
                /* A held step is what `--approve CALL` lets run: its undo record is shown
                 * whole, on the line below (the agent orders its members: a padded first
                 * one pushed the rest past a cut); the others' are cut. */
                bool held = s->action == AJ_ROLLBACK_HELD;
                _cleanup_free_ char *undo = shown_undo(s->undo, held ? SIZE_MAX : PLAN_UNDO_MAX);
                char gate[300];
                snprintf(gate, sizeof(gate), "approval-gated (%s%s%s): --approve %s",
                         s->gate ? "approvals.tools '" : "", aj_rollback_step_gate_text(s), s->gate ? "'" : "",
                         SHOWN_ARG(s->call_id));
                print_step(s, held                               ? gate
                              : s->action == AJ_ROLLBACK_APPLIED ? "(the chain has it applied)"
                              : undo                             ? undo
                                                                 : "?");
                if (held)
                        printf("        undo %s\n", undo ?: "?");
        }
        printf("%zu to run, %zu applied already, %zu held for approval", p->to_run, p->applied, p->held);
        if (p->without_undo)
                printf("; %zu call%s succeeded without an undo record (reverse by hand)", p->without_undo,
                       p->without_undo == 1 ? "" : "s");
        printf("\n");
}

/* The undo records the plan leaves out, and why: never run by this rollback. */
static void print_left_out(const AjRollbackPlan *p)
{
        if (!json_array_size(p->left_out))
                return;
        printf("left out, not run: %zu orphan%s (a result that is not an allowed call's first), %zu of failed "
               "calls (--include-failed runs them), %zu past the %d steps one rollback plans\n",
               p->orphans, p->orphans == 1 ? "" : "s", p->failed_calls, p->past_limit, AJ_ROLLBACK_MAX_STEPS);
        size_t i, shown_n = 0;
        json_t *l;
        json_array_foreach (p->left_out, i, l) {
                if (++shown_n > 50) {
                        printf("  ... and %zu more (--json lists them all)\n", json_array_size(p->left_out) - 50);
                        break;
                }
                printf("  %-20s seq %-8lld %-6s %s\n", SHOWN(cli_jstr(l, "call_id")),
                       (long long)json_integer_value(json_object_get(l, "result_seq")), SHOWN(cli_jstr(l, "status")),
                       cli_jstr(l, "why") ?: "?");
        }
}

static void print_outcome(const AjRollbackStep *s, const AjRollbackOutcome *o, json_t *ev)
{
        char what[200], t[32];
        snprintf(t, sizeof(t), "%.1fs", (double)o->duration_ns / 1e9);
        if (o->result == AJ_ROLLBACK_HELD_BACK)
                snprintf(what, sizeof(what), "held: approval-gated (%s), not run: --approve %s",
                         aj_rollback_step_gate_text(s), SHOWN_ARG(s->call_id));
        else if (o->result == AJ_ROLLBACK_ERROR)
                snprintf(what, sizeof(what), "error: cannot run the handler: %s", strerror(-o->error));
        else if (o->result == AJ_ROLLBACK_TIMEOUT)
                snprintf(what, sizeof(what), "timeout: killed after %s", t);
        else if (o->signal)
                snprintf(what, sizeof(what), "failed: killed by signal %d (%s)", o->signal, t);
        else
                snprintf(what, sizeof(what), "%s: exit %d (%s)", aj_rollback_result_name(o->result), o->exit_code, t);
        printf("  %u/%u  %-20s %-24s %s\n", s->step, s->of, SHOWN(s->call_id), SHOWN(s->tool), what);
        const char *out = json_string_value(json_object_get(ev, "output"));
        if (!out || !*out)
                return;
        const char *line = out;
        while (*line) {
                /* The handler's output, which may echo the agent's undo record: escaped. */
                size_t n = strcspn(line, "\n");
                _cleanup_free_ char *shown_line = aj_printable_dup(line, n, 0);
                printf("        | %s\n", shown_line ?: "?");
                line += n + (line[n] == '\n');
        }
        if (o->output_bytes > o->output_len)
                printf("        | ... (%llu bytes in all)\n", (unsigned long long)o->output_bytes);
}

typedef struct {
        AjRun *run;
        const AjProfile *prof;
        uint64_t timeout_ns;
        bool json;
        json_t *steps; /* --json: each step as planned, with its outcome */
        size_t ran_ok, failed, held;
} Apply;

/* Runs (or holds) one step and records it; false when the steps after it must not run
 * (it failed or was held) or when the chain could not record it (*fatal). */
static bool apply_step(Apply *a, const AjRollbackStep *s, bool *fatal)
{
        AjRun *run = a->run;
        AjRollbackOutcome o = { .result = AJ_ROLLBACK_HELD_BACK, .exit_code = -1 };
        if (s->action == AJ_ROLLBACK_TO_RUN) {
                _cleanup_free_ char *input = NULL;
                int r = aj_rollback_step_input(s, run->id, &input);
                if (r >= 0)
                        r = aj_rollback_exec(a->prof->rollback_exec.items, input, strlen(input), run->id, s,
                                             a->timeout_ns, &o);
                if (r < 0) {
                        cli_fail("rollback", "run %s: step %u (%s): cannot start the handler: %s; stopping", run->id,
                                 s->step, SHOWN(s->call_id), strerror(-r));
                        *fatal = true;
                        return false;
                }
        }
        json_auto_t *ev = aj_rollback_step_event(s, &o, getuid());
        bool recorded = false;
        int r = ev ? aj_run_rollback_record(run, s, &o, &recorded) : -ENOMEM;
        if (r < 0) {
                /* Fail closed: a step that ran but is not in the chain would be run again. */
                cli_fail("rollback", "run %s: step %u (%s) ended '%s' but %s: %s; stopping", run->id, s->step,
                         SHOWN(s->call_id), aj_rollback_result_name(o.result),
                         recorded ? "run.json could not be updated" : "it could not be recorded in the chain",
                         strerror(-r));
                *fatal = true;
                return false;
        }
        if (a->json) {
                json_t *js = step_json(s);
                if (js && json_object_update(js, ev) == 0)
                        json_array_append(a->steps, js);
                json_decref(js);
        } else {
                print_outcome(s, &o, ev);
        }
        if (o.result == AJ_ROLLBACK_OK) {
                a->ran_ok++;
                return true;
        }
        if (o.result == AJ_ROLLBACK_HELD_BACK)
                a->held++;
        else
                a->failed++;
        return false;
}

/* The plan's steps in order, until one fails or is held (unless keep_going) or a signal
 * asks to stop; *ret_not_run counts those left. True when a step could not be recorded. */
static bool run_steps(Apply *a, const AjRollbackPlan *plan, bool keep_going, size_t *ret_not_run)
{
        bool fatal = false, go = true;
        struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        for (size_t i = 0; i < plan->n && !fatal; i++) {
                const AjRollbackStep *s = &plan->steps[i];
                if (s->action == AJ_ROLLBACK_APPLIED) {
                        if (!a->json)
                                print_step(s, "(the chain has it applied: not again)");
                        else
                                json_array_append_new(a->steps, step_json(s));
                        continue;
                }
                if (go && interrupted) {
                        cli_fail("rollback", "interrupted (%s): stopping before step %u", strsignal(interrupted),
                                 s->step);
                        go = false;
                }
                if (!go) {
                        (*ret_not_run)++;
                        continue;
                }
                go = apply_step(a, s, &fatal) || keep_going;
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return fatal;
}

/* The run's tool journal, gated by its profile and the options, as a plan; -1 (said) when it
 * cannot be read or planned. */
static int load_plan(AjRun *run, const AjProfile *prof, const Options *opt, AjRollbackPlan *ret)
{
        /* The plan trusts the chain's verdicts (only an allowed call's undo record runs): a
         * chain changed since the run is trusted for nothing. */
        char path[PATH_MAX];
        AjChainCheck check;
        AjChainVerdict verdict;
        /* run.json and the chain as one: read before, run.json's anchor may predate another
         * operator's append (a release, a decision), and the chain would look extended. */
        _cleanup_close_ int records = -1;
        int r = aj_run_lock_records(run, false, &records);
        if (r >= 0 && !run->rec)
                r = -ENOENT;
        if (r >= 0)
                r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r >= 0)
                r = aj_run_verify_chain(run->rec, path, &check, &verdict);
        if (r < 0) {
                cli_fail("rollback", "cannot read '%s/%s': %s", run->dir, AJ_RUN_FILE_EVENTS, strerror(-r));
                return -1;
        }
        if (verdict == AJ_CHAIN_BROKEN) {
                cli_fail("rollback",
                         "run %s: the event chain is broken (%s): its undo records and verdicts cannot be trusted, "
                         "nothing is planned ('agentjail logs %s --verify')",
                         run->id, check.problem, run->id);
                return -1;
        }
        json_t *journal = NULL;
        r = aj_run_tool_journal(run, &journal);
        close(TAKE_FD(records)); /* each step's record takes it again */
        if (r < 0) {
                cli_fail("rollback", "cannot read '%s/%s': %s", run->dir, AJ_RUN_FILE_EVENTS, strerror(-r));
                return -1;
        }
        json_auto_t *owned = journal;
        AjRollbackGate gate = {
                .patterns = prof->approval_tools.items,
                .n_patterns = prof->approval_tools.n,
                .approve = (char *const *)opt->approve,
                .n_approve = opt->n_approve,
                .approve_all_gated = opt->approve_all,
                .include_failed = opt->include_failed,
        };
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_rollback_plan(journal, &gate, ret, &err);
        if (r < 0) {
                cli_fail("rollback", "run %s: %s", run->id, aj_error_text(&err, r));
                return -1;
        }
        return 0;
}

/* --apply: the steps, then (without --json) the summary; -1 when a step could not be
 * recorded (said). *ret_not_run: the steps left. */
static int apply_plan(Apply *a, const AjRollbackPlan *plan, bool keep_going, size_t *ret_not_run)
{
        if (!a->json)
                print_header(a->run, plan, a->prof, a->timeout_ns);
        size_t not_run = 0;
        if (run_steps(a, plan, keep_going, &not_run))
                return -1;
        if (!a->json) {
                printf("%zu applied now, %zu before; %zu failed, %zu held", a->ran_ok, plan->applied, a->failed,
                       a->held);
                if (not_run)
                        printf("; stopped: %zu not run ('agentjail rollback %s --apply' goes on with them)", not_run,
                               a->run->id);
                printf("\n");
                print_left_out(plan);
        }
        *ret_not_run = not_run;
        return 0;
}

/* --json: the plan, or what applying it did; -1 (said) when it could not be written. */
static int print_json_result(const Apply *a, const AjRollbackPlan *plan, bool dry_run, size_t left)
{
        const AjProfile *prof = a->prof;
        json_auto_t *doc = json_pack("{s:s, s:o, s:b, s:I, s:O, s:I, s:I, s:I, s:I, s:I, s:O}", "run", a->run->id,
                                     "handler",
                                     prof->rollback_exec.n ? json_string(prof->rollback_exec.items[0]) : json_null(),
                                     "dry_run", dry_run, "timeout_ms", (json_int_t)(a->timeout_ns / 1000000), "steps",
                                     a->steps, "applied_before", (json_int_t)plan->applied, "applied",
                                     (json_int_t)a->ran_ok, "failed", (json_int_t)a->failed, "held",
                                     (json_int_t)(dry_run ? plan->held : a->held), "not_run", (json_int_t)left,
                                     "left_out", plan->left_out);
        return print_json_expanded(doc);
}

static int apply_cmd(AjRun *run, const Options *opt)
{
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live || run->alive) {
                cli_fail("rollback", "run %s is still running: wait for it to exit, or 'agentjail kill %s'", run->id,
                         run->id);
                return CLI_EXIT_FAIL;
        }
        _cleanup_(aj_profile_freep) AjProfile *prof = NULL;
        if (run_profile(run, &prof) < 0)
                return CLI_EXIT_FAIL;
        uint64_t timeout_ns = opt->timeout_ns ?: prof->rollback_timeout_ns;
        if (!opt->dry_run && !prof->rollback_exec.n) {
                cli_fail("rollback",
                         "run %s: its profile (%s) has no rollback.exec: nothing to run the undo records with "
                         "(see docs/profiles.md)",
                         run->id, run->rec->profile_name ?: "?");
                return CLI_EXIT_FAIL;
        }
        _cleanup_close_ int lock = -1;
        if (!opt->dry_run && lock_run(run, &lock) < 0)
                return CLI_EXIT_FAIL;
        AjRollbackPlan plan = { 0 };
        if (load_plan(run, prof, opt, &plan) < 0)
                return CLI_EXIT_FAIL;
        json_auto_t *steps = json_array();
        Apply a = { .run = run, .prof = prof, .timeout_ns = timeout_ns, .json = opt->json, .steps = steps };
        size_t left = plan.to_run + plan.held; /* not run: all of them on a dry run */
        if (opt->dry_run && !opt->json) {
                print_plan(run, &plan, prof, timeout_ns);
                print_left_out(&plan);
        }
        for (size_t i = 0; opt->dry_run && opt->json && i < plan.n; i++)
                json_array_append_new(steps, step_json(&plan.steps[i]));
        if (!opt->dry_run && apply_plan(&a, &plan, opt->keep_going, &left) < 0) {
                aj_rollback_plan_done(&plan);
                return CLI_EXIT_FAIL;
        }
        int status = opt->dry_run || (a.failed == 0 && a.held == 0 && left == 0) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        if (opt->json && print_json_result(&a, &plan, opt->dry_run, left) < 0)
                status = CLI_EXIT_FAIL;
        aj_rollback_plan_done(&plan);
        return status;
}

int aj_cmd_rollback(int argc, char **argv)
{
        Options opt = { 0 };
        int r = parse_options(argc, argv, &opt);
        if (r)
                return r;
        if (opt.help)
                return cli_help(ROLLBACK_USAGE, ROLLBACK_HELP);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        /* --apply runs the undo handlers: it acts on the run. */
        if ((opt.apply && !opt.dry_run ? cli_open_run_to_act : cli_open_run)("rollback", opt.run, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        /* --apply runs the handler the record names, with our rights. */
        if (opt.apply && !opt.dry_run && cli_check_acting("rollback", &paths) < 0)
                return CLI_EXIT_FAIL;
        if (opt.apply || opt.dry_run)
                return apply_cmd(run, &opt);
        return list_cmd(run, opt.json);
}
