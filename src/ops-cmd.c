/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail ps | inspect | logs | freeze | thaw | kill | quarantine`: the operator's side. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "events.h"
#include "ops-cmd.h"
#include "otlp.h"
#include "runs.h"
#include "util/fd.h"
#include "util/parse.h"
#include "workspace.h"
#include "util/syscalls.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* How long freeze/thaw/kill/release wait for the supervisor's answer. */
#define CONTROL_TIMEOUT_MS 10000
/* How long purge waits for a killed run's supervisor to finish. */
#define PURGE_WAIT_MS 20000
#define LOGS_LINE_MAX (1024 * 1024)
#define INSPECT_EVENTS 10

_printf_(2, 3) static void fail_msg(const char *cmd, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "agentjail %s: ", cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

_printf_(3, 4) static int usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "agentjail %s: ", cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nusage: %s\n", usage);
        return EXIT_USAGE;
}

static int print_json(json_t *doc)
{
        _cleanup_free_ char *s = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

static const char *jstr(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static const char *run_name(const AjRun *run) { return jstr(run->doc, "name") ?: "?"; }

/* For a table: a profile given as a path shows as its file name without ".json". */
static const char *run_profile(const AjRun *run, char *buf, size_t len)
{
        const char *name = jstr(json_object_get(run->doc, "profile"), "name") ?: "?";
        const char *slash = strrchr(name, '/');
        if (!slash)
                return name;
        snprintf(buf, len, "%s", slash + 1);
        size_t n = strlen(buf);
        if (n > 5 && streq(buf + n - 5, ".json"))
                buf[n - 5] = 0;
        return buf;
}

/* Parsed common options: --json, --help, and the positional arguments. */
typedef struct {
        bool json;
        bool all;
        bool follow;
        const char *type;
        char **raise; /* KEY=VALUE, not owned */
        size_t n_raise;
        const char *digest, *reason;
        bool force;
        bool verify;
        bool otlp;
        bool patch;
        int n_pos;
        char **pos;
} Opts;

enum { OPT_JSON = 0x100, OPT_TYPE, OPT_RAISE, OPT_DIGEST, OPT_REASON, OPT_FORCE, OPT_VERIFY, OPT_OTLP, OPT_PATCH };

/* Returns 0, 1 for --help, or EXIT_USAGE (already reported). `allowed` lists the long
 * options this command accepts besides --json and --help. */
static int parse_opts(int argc, char **argv, const char *usage, const char *allowed, Opts *o, int max_pos,
                      int min_pos)
{
        static const struct option longopts[] = {
                { "json", no_argument, NULL, OPT_JSON },    { "help", no_argument, NULL, 'h' },
                { "all", no_argument, NULL, 'a' },          { "follow", no_argument, NULL, 'f' },
                { "type", required_argument, NULL, OPT_TYPE }, { "raise", required_argument, NULL, OPT_RAISE },
                { "digest", required_argument, NULL, OPT_DIGEST }, { "reason", required_argument, NULL, OPT_REASON },
                { "force", no_argument, NULL, OPT_FORCE }, { "verify", no_argument, NULL, OPT_VERIFY },
                { "otlp", no_argument, NULL, OPT_OTLP },   { "patch", no_argument, NULL, OPT_PATCH },
                {},
        };
        const char *cmd = argv[0];
        *o = (Opts){ 0 };
        optind = 0;
        opterr = 0;
        int c;
        while ((c = getopt_long(argc, argv, ":haft:", longopts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return 1;
                case OPT_JSON:
                        o->json = true;
                        continue;
                case ':':
                        return usage_error(cmd, usage, "option '%s' needs a value", argv[optind - 1]);
                case '?':
                        return usage_error(cmd, usage, "unknown option '%s'", argv[optind - 1]);
                default:
                        break;
                }
                const char *name = c == 'a'                        ? "all"
                                    : c == 'f'                     ? "follow"
                                    : (c == OPT_TYPE || c == 't') ? "type"
                                    : c == OPT_DIGEST              ? "digest"
                                    : c == OPT_REASON              ? "reason"
                                    : c == OPT_FORCE               ? "force"
                                    : c == OPT_VERIFY              ? "verify"
                                    : c == OPT_OTLP                ? "otlp"
                                    : c == OPT_PATCH               ? "patch"
                                                                   : "raise";
                if (!strstr(allowed, name))
                        return usage_error(cmd, usage, "unknown option '%s'", argv[optind - 1]);
                if (c == OPT_FORCE)
                        o->force = true;
                else if (c == OPT_VERIFY)
                        o->verify = true;
                else if (c == OPT_OTLP)
                        o->otlp = true;
                else if (c == OPT_PATCH)
                        o->patch = true;
                else if (c == OPT_DIGEST)
                        o->digest = optarg;
                else if (c == OPT_REASON)
                        o->reason = optarg;
                else if (c == 'a')
                        o->all = true;
                else if (c == 'f')
                        o->follow = true;
                else if (c == OPT_TYPE || c == 't')
                        o->type = optarg;
                else {
                        if (o->n_raise >= AJ_CONTROL_MAX_RAISE_KEYS)
                                return usage_error(cmd, usage, "at most %d --raise options", AJ_CONTROL_MAX_RAISE_KEYS);
                        char **nr = realloc(o->raise, (o->n_raise + 1) * sizeof(char *));
                        if (!nr)
                                return EXIT_FAIL;
                        o->raise = nr;
                        o->raise[o->n_raise++] = optarg;
                }
        }
        o->pos = argv + optind;
        o->n_pos = argc - optind;
        if (o->n_pos < min_pos)
                return usage_error(cmd, usage, "missing RUN argument");
        if (o->n_pos > max_pos)
                return usage_error(cmd, usage, "unexpected argument '%s'", o->pos[max_pos]);
        return 0;
}

static int open_paths(const char *cmd, AjPaths *paths)
{
        int r = aj_paths_resolve(paths);
        if (r < 0)
                fail_msg(cmd, "cannot find the state directory (set AGENTJAIL_STATE_DIR)");
        return r;
}

/* Resolve RUN, telling the operator which run was chosen when that was not obvious. */
static int find_run(const char *cmd, const AjPaths *paths, const char *query, AjRun **ret)
{
        _cleanup_free_ char *note = NULL;
        int r = aj_runs_find(paths, query, ret, &note);
        if (r == -ENOENT)
                fail_msg(cmd, "no run matches '%s' (an id, an id prefix of %d+ characters, or a name)", query,
                         AJ_RUN_PREFIX_MIN);
        else if (r == -ENOTUNIQ)
                fail_msg(cmd, "ambiguous run prefix: %s", note ? note : query);
        else if (r == -EINVAL)
                fail_msg(cmd, "'%s' is not a valid RUN (an id, an id prefix, or a name)", query);
        else if (r < 0)
                fail_msg(cmd, "cannot look up run '%s': %s", query, strerror(-r));
        else if (note)
                fprintf(stderr, "agentjail %s: %s\n", cmd, note);
        return r;
}

static uint64_t age_seconds(const AjRun *run)
{
        uint64_t now = aj_now_realtime_ns();
        return run->started_ns && now > run->started_ns ? (now - run->started_ns) / 1000000000ull : 0;
}

/* ---- ps ------------------------------------------------------------------------------- */

#define PS_USAGE "agentjail ps [--all] [--json]"

/* Tool calls a live run's broker holds for an operator's decision. */
static size_t awaiting_approval(const AjRun *run)
{
        size_t n = 0, i;
        json_t *p;
        json_array_foreach(json_object_get(run->live_state, "pending"), i, p) {
                const char *st = jstr(p, "state");
                n += st && streq(st, "awaiting_approval");
        }
        return n;
}

static json_t *run_summary_json(AjRun *run, const char *state)
{
        json_t *m = aj_run_meters(run);
        _cleanup_free_ char *meters = aj_meters_summary(m);
        return json_pack("{s:s, s:s?, s:s?, s:s, s:b, s:b, s:o, s:o, s:I, s:o?, s:s?, s:s, s:I}", "id", run->id, "name",
                         jstr(run->doc, "name"), "profile", jstr(json_object_get(run->doc, "profile"), "name"),
                         "state", state, "live", run->live, "quarantined",
                         aj_run_doc_quarantined(run->doc) || streq(state, "quarantined"), "started",
                         json_copy(json_object_get(run->doc, "started") ?: json_null()), "ended",
                         json_copy(json_object_get(run->doc, "ended") ?: json_null()), "age_seconds",
                         (json_int_t)age_seconds(run), "meters", m, "summary", meters, "dir",
                         run->dir, "awaiting_approval", (json_int_t)awaiting_approval(run));
}

int aj_cmd_ps(int argc, char **argv)
{
        Opts o;
        int r = parse_opts(argc, argv, PS_USAGE, "all", &o, 0, 0);
        if (r == 1) {
                puts("usage: " PS_USAGE "\n\n"
                     "Runs in the state directory, oldest first: id, name, profile, state\n"
                     "(running, frozen, quarantined, exited, lost), age, and meter usage against\n"
                     "the caps. Without --all only live and quarantined runs are shown.");
                return EXIT_OK;
        }
        if (r)
                return r;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        if (open_paths("ps", &paths) < 0)
                return EXIT_FAIL;
        AjRun **runs = NULL;
        size_t n = 0;
        r = aj_runs_list(&paths, &runs, &n);
        if (r < 0) {
                fail_msg("ps", "cannot list '%s/runs': %s", paths.state_root, strerror(-r));
                return EXIT_FAIL;
        }
        json_auto_t *arr = json_array();
        if (!o.json)
                printf("%-12s  %-16s  %-10s  %-11s  %7s  %s\n", "ID", "NAME", "PROFILE", "STATE", "AGE", "METERS");
        for (size_t i = 0; i < n; i++) {
                AjRun *run = runs[i];
                aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
                const char *state = aj_run_display_state(run);
                bool active = streq(state, "running") || streq(state, "frozen") || streq(state, "quarantined");
                if (!o.all && !run->live && !active)
                        continue;
                if (o.json) {
                        json_array_append_new(arr, run_summary_json(run, state));
                        continue;
                }
                json_auto_t *m = aj_run_meters(run);
                _cleanup_free_ char *meters = aj_meters_summary(m);
                char age[32], prof[256], waiting[64] = "";
                size_t held = awaiting_approval(run);
                if (held)
                        snprintf(waiting, sizeof(waiting), "  [%zu call%s awaiting approval]", held, held == 1 ? "" : "s");
                printf("%-12s  %-16.16s  %-10.10s  %-11s  %7s  %s%s\n", run->id, run_name(run),
                       run_profile(run, prof, sizeof(prof)), state,
                       run->started_ns ? aj_format_age(age_seconds(run), age, sizeof(age)) : "?",
                       meters ? meters : "-", waiting);
        }
        aj_runs_free(runs, n);
        if (o.json) {
                json_auto_t *doc = json_pack("{s:O}", "runs", arr);
                if (print_json(doc) < 0)
                        return EXIT_FAIL;
        }
        return EXIT_OK;
}

/* ---- inspect ------------------------------------------------------------------------- */

#define INSPECT_USAGE "agentjail inspect RUN [--json]"

static json_t *incident_summary(const AjRun *run)
{
        json_auto_t *inc = NULL;
        if (aj_run_read_json(run, "incident.json", &inc) < 0 || !json_is_object(inc))
                return json_null();
        json_t *s = json_object();
        static const char *const keys[] = { "cap", "limit", "value", "ts", "time", "action", NULL };
        for (size_t i = 0; keys[i]; i++) {
                json_t *v = json_object_get(inc, keys[i]);
                if (v)
                        json_object_set(s, keys[i], v);
        }
        return s;
}

static json_t *inspect_doc(AjRun *run, const char *state)
{
        json_t *doc = run_summary_json(run, state);
        if (!doc)
                return NULL;
        json_t *d = run->doc, *live = run->live_state;
        json_t *prof = json_object_get(d, "profile");
        json_object_set_new(doc, "profile", json_pack("{s:O?, s:O?, s:O?}", "name", json_object_get(prof, "name"), "path",
                                                      json_object_get(prof, "path"), "digest",
                                                      json_object_get(prof, "digest")));
        static const char *const copy[] = { "command", "cwd", "workspace", "supervisor_pid", "exit", "degraded", NULL };
        for (size_t i = 0; copy[i]; i++)
                json_object_set(doc, copy[i], json_object_get(d, copy[i]) ?: json_null());
        json_object_set(doc, "resources", json_object_get(d, "usage") ?: json_null());
        json_object_set(doc, "processes", json_object_get(live, "processes") ?: json_null());
        json_object_set(doc, "pending", json_object_get(live, "pending") ?: json_null());
        if (json_object_get(live, "pending_dropped"))
                json_object_set(doc, "pending_dropped", json_object_get(live, "pending_dropped"));
        json_t *events = json_object_get(live, "last_events");
        if (json_is_array(events)) {
                json_object_set(doc, "last_events", events);
        } else {
                char path[PATH_MAX];
                json_t *tail = NULL;
                snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
                if (aj_events_read_tail(path, INSPECT_EVENTS, &tail) < 0)
                        tail = json_array();
                json_object_set_new(doc, "last_events", tail);
        }
        json_t *q = json_object_get(live, "quarantine") ?: json_object_get(d, "quarantine");
        json_object_set(doc, "quarantine", q ?: json_null());
        json_object_set_new(doc, "incident", incident_summary(run));
        if (run->live && !live)
                json_object_set_new(doc, "live_error", json_string(strerror(-run->probe_error)));
        return doc;
}

static void print_value(json_t *v)
{
        if (json_is_string(v)) {
                fputs(json_string_value(v), stdout);
                return;
        }
        _cleanup_free_ char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        fputs(s ? s : "?", stdout);
}

static void print_command(json_t *argv)
{
        size_t i;
        json_t *a;
        json_array_foreach(argv, i, a) {
                const char *s = json_string_value(a) ?: "?";
                if (i)
                        putchar(' ');
                if (*s && strcspn(s, " \t\n'\"\\$`*?;&|<>()") == strlen(s))
                        fputs(s, stdout);
                else
                        print_value(a);
        }
}

static void print_events(json_t *events)
{
        size_t i;
        json_t *ev;
        if (json_array_size(events) == 0)
                puts("  (none)");
        json_array_foreach(events, i, ev) {
                _cleanup_free_ char *line = NULL;
                if (aj_event_format(ev, &line) >= 0)
                        printf("  %s\n", line);
        }
}

static void print_inspect(json_t *doc, AjRun *run)
{
        json_t *prof = json_object_get(doc, "profile");
        printf("run         %s (%s)\n", run->id, run_name(run));
        printf("profile     %s", jstr(prof, "name") ?: "?");
        if (jstr(prof, "digest"))
                printf(" (sha256 %.16s...)", jstr(prof, "digest"));
        putchar('\n');
        char age[32];
        printf("state       %s%s, started %s (%s ago)", jstr(doc, "state"), json_is_true(json_object_get(doc, "live")) ? " (live)" : "",
               jstr(doc, "started") ?: "?", aj_format_age(age_seconds(run), age, sizeof(age)));
        if (jstr(doc, "ended"))
                printf(", ended %s", jstr(doc, "ended"));
        putchar('\n');
        if (jstr(doc, "live_error"))
                printf("            (the control socket did not answer inspect: %s)\n", jstr(doc, "live_error"));
        printf("command     ");
        print_command(json_object_get(doc, "command"));
        printf("\ncwd         %s\n", jstr(doc, "cwd") ?: "?");
        json_t *ws = json_object_get(doc, "workspace");
        if (json_is_object(ws)) {
                const char *changes = jstr(ws, "changes") ?: "?";
                printf("workspace   overlay over %s, changes %s", jstr(ws, "path") ?: "?", changes);
                if (streq(changes, "pending"))
                        printf(" ('agentjail diff %s', then commit or discard)", run->id);
                putchar('\n');
        }
        printf("meters      %s\n", jstr(doc, "summary") ?: "-");

        json_t *res = json_object_get(doc, "resources");
        if (json_is_object(res)) {
                char mem[32];
                printf("resources   memory peak %s, cpu %.3fs, oom kills %lld, pids.max hits %lld, seccomp denials %lld\n",
                       aj_format_size((uint64_t)json_integer_value(json_object_get(res, "memory_peak")), mem, sizeof(mem)),
                       (double)json_integer_value(json_object_get(res, "cpu_usec")) / 1e6,
                       (long long)json_integer_value(json_object_get(res, "oom_kills")),
                       (long long)json_integer_value(json_object_get(res, "pids_max_events")),
                       (long long)json_integer_value(json_object_get(res, "seccomp_denied")));
        }
        json_t *ex = json_object_get(doc, "exit");
        if (json_is_object(ex)) {
                printf("exit        status %lld (%s)", (long long)json_integer_value(json_object_get(ex, "status")),
                       jstr(ex, "reason") ?: "?");
                if (json_is_integer(json_object_get(ex, "signal")))
                        printf(", signal %lld", (long long)json_integer_value(json_object_get(ex, "signal")));
                putchar('\n');
        }
        json_t *q = json_object_get(doc, "quarantine");
        if (json_is_object(q)) {
                printf("quarantine  since %s, cap %s, %s", jstr(q, "since") ?: "?", jstr(q, "cap") ?: "?",
                       json_is_true(json_object_get(q, "released")) ? "released" : "not released");
                if (jstr(q, "released_at"))
                        printf(" at %s", jstr(q, "released_at"));
                putchar('\n');
        }
        json_t *inc = json_object_get(doc, "incident");
        if (json_is_object(inc)) {
                printf("incident    cap %s, value ", jstr(inc, "cap") ?: "?");
                print_value(json_object_get(inc, "value") ?: json_null());
                printf(", limit ");
                print_value(json_object_get(inc, "limit") ?: json_null());
                printf(" (agentjail quarantine show %s)\n", run->id);
        }

        json_t *procs = json_object_get(doc, "processes");
        puts("processes:");
        if (!json_is_array(procs)) {
                puts(json_is_true(json_object_get(doc, "live")) ? "  (not reported by the supervisor)"
                                                                : "  (the run is not live: no processes)");
        } else {
                printf("  %7s  %-5s  %9s  %9s  %s\n", "PID", "STATE", "CPU", "RSS", "CMD");
                size_t i;
                json_t *p;
                json_array_foreach(procs, i, p) {
                        char rss[32] = "-", cpu[32] = "-";
                        json_t *rv = json_object_get(p, "rss_kb");
                        if (json_is_integer(rv) && json_integer_value(rv) >= 0)
                                aj_format_size((uint64_t)json_integer_value(rv) * 1024, rss, sizeof(rss));
                        json_t *cv = json_object_get(p, "cpu_s");
                        if (json_is_number(cv))
                                snprintf(cpu, sizeof(cpu), "%.2fs", json_number_value(cv));
                        else if (json_is_string(cv))
                                snprintf(cpu, sizeof(cpu), "%.16s", json_string_value(cv));
                        printf("  %7lld  %-5.5s  %9s  %9s  ", (long long)json_integer_value(json_object_get(p, "pid")),
                               jstr(p, "state") ?: "?", cpu, rss);
                        json_t *cmd = json_object_get(p, "cmd");
                        if (json_is_array(cmd))
                                print_command(cmd);
                        else
                                print_value(cmd ?: json_null());
                        putchar('\n');
                }
        }
        json_t *pending = json_object_get(doc, "pending");
        if (json_is_array(pending)) {
                puts("pending calls (awaiting approval, or allowed and without a tool_result yet):");
                if (json_array_size(pending) == 0)
                        puts("  (none)");
                else
                        printf("  %-24s %-32s %-17s %8s  %s\n", "CALL ID", "TOOL", "STATE", "AGE", "SINCE");
                size_t i;
                json_t *p;
                json_array_foreach(pending, i, p) {
                        printf("  %-24s %-32s %-17s %7.1fs  %s", jstr(p, "gen_ai.tool.call.id") ?: "?",
                               jstr(p, "gen_ai.tool.name") ?: "?", jstr(p, "state") ?: "?",
                               json_number_value(json_object_get(p, "age_s")), jstr(p, "since") ?: "?");
                        if (json_is_number(json_object_get(p, "timeout_in_s")))
                                printf("  (denied in %.0fs)", json_number_value(json_object_get(p, "timeout_in_s")));
                        putchar('\n');
                }
                json_int_t dropped = json_integer_value(json_object_get(doc, "pending_dropped"));
                if (dropped > 0)
                        printf("  (and %lld older calls no longer tracked)\n", (long long)dropped);
        }
        puts("last events:");
        print_events(json_object_get(doc, "last_events"));
}

/* The start of a command on one RUN: options (`allowed` besides --json and --help), the
 * help text, the run. Returns -1 when the command goes on, else its exit status (help
 * printed, or an error reported). */
static int run_cmd_begin(const char *cmd, const char *usage, const char *help, const char *allowed, int argc,
                         char **argv, Opts *o, AjPaths *paths, AjRun **run)
{
        int r = parse_opts(argc, argv, usage, allowed, o, 1, 1);
        free(o->raise);
        o->raise = NULL;
        if (r == 1) {
                printf("usage: %s\n\n%s\n", usage, help);
                return EXIT_OK;
        }
        if (r)
                return r;
        if (open_paths(cmd, paths) < 0 || find_run(cmd, paths, o->pos[0], run) < 0)
                return EXIT_FAIL;
        return -1;
}

int aj_cmd_inspect(int argc, char **argv)
{
        Opts o;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int r = run_cmd_begin("inspect", INSPECT_USAGE,
                              "A run's caps and usage, processes (live runs), pending calls, last events,\n"
                              "exit, and quarantine/incident summary.",
                              "", argc, argv, &o, &paths, &run);
        if (r >= 0)
                return r;
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        json_auto_t *doc = inspect_doc(run, aj_run_display_state(run));
        if (!doc)
                return EXIT_FAIL;
        if (o.json)
                return print_json(doc) < 0 ? EXIT_FAIL : EXIT_OK;
        print_inspect(doc, run);
        return EXIT_OK;
}

/* ---- logs -------------------------------------------------------------------------- */

#define LOGS_USAGE "agentjail logs RUN [-f] [--json | --otlp] [--type PREFIX] | logs RUN --verify [--json]"

typedef struct {
        bool json;
        const char *type;
        size_t bad_lines;
} LogPrinter;

static void log_line(LogPrinter *lp, const char *line, size_t len)
{
        if (len == 0)
                return;
        json_auto_t *ev = json_loadb(line, len, 0, NULL);
        if (!json_is_object(ev)) {
                lp->bad_lines++;
                return;
        }
        if (!aj_event_type_matches(ev, lp->type))
                return;
        if (lp->json) {
                fwrite(line, 1, len, stdout);
                putchar('\n');
                return;
        }
        _cleanup_free_ char *text = NULL;
        if (aj_event_format(ev, &text) >= 0)
                puts(text);
}

/* Print every complete line readable from fd; keeps a partial last line in buf. */
static int log_drain(LogPrinter *lp, int fd, char *buf, size_t *have)
{
        for (;;) {
                ssize_t n = read(fd, buf + *have, LOGS_LINE_MAX - *have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                *have += (size_t)n;
                char *start = buf, *nl;
                while ((nl = memchr(start, '\n', *have - (size_t)(start - buf)))) {
                        log_line(lp, start, (size_t)(nl - start));
                        start = nl + 1;
                }
                *have -= (size_t)(start - buf);
                memmove(buf, start, *have);
                if (*have == LOGS_LINE_MAX) {
                        /* A line this long is no event the supervisor wrote. */
                        lp->bad_lines++;
                        *have = 0;
                }
        }
        fflush(stdout);
        return 0;
}

/* Has the run stopped writing to its chain (exited, or its supervisor is gone)? */
static bool run_finished(AjRun *run)
{
        json_decref(run->doc);
        run->doc = NULL;
        if (aj_run_read_json(run, "run.json", &run->doc) < 0)
                return !aj_run_supervisor_alive(run);
        const char *status = jstr(run->doc, "status");
        if (status && streq(status, "exited"))
                return true;
        return !aj_run_supervisor_alive(run);
}

static int follow_logs(LogPrinter *lp, AjRun *run, int fd, char *buf, size_t *have)
{
        char path[PATH_MAX];
        _cleanup_close_ int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0)
                return -errno;
        snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
        if (inotify_add_watch(ino, path, IN_MODIFY) < 0)
                return -errno;
        /* run.json is replaced by rename(): watch the directory for it. */
        if (inotify_add_watch(ino, run->dir, IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF) < 0)
                return -errno;

        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, &old);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        int r = sfd < 0 ? -errno : 0;

        /* The supervisor's exit wakes us too, in case nobody is left to write run.json. */
        _cleanup_close_ int pidfd = -1;
        json_t *spid = json_object_get(run->doc, "supervisor_pid");
        if (json_is_integer(spid) && aj_run_supervisor_alive(run))
                pidfd = sys_pidfd_open((pid_t)json_integer_value(spid), 0);

        while (r == 0) {
                r = log_drain(lp, fd, buf, have);
                if (r < 0 || run_finished(run)) {
                        if (r == 0)
                                r = log_drain(lp, fd, buf, have);
                        break;
                }
                struct pollfd p[3] = { { .fd = ino, .events = POLLIN },
                                       { .fd = sfd, .events = POLLIN },
                                       { .fd = pidfd, .events = POLLIN } };
                if (poll(p, pidfd >= 0 ? 3 : 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (p[1].revents)
                        break; /* the operator stopped following */
                if (p[2].revents) {
                        close(pidfd);
                        pidfd = -1;
                }
                char evbuf[4096];
                while (read(ino, evbuf, sizeof(evbuf)) > 0)
                        ;
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

/* Calls fn(event, userdata) for every line of an events.jsonl that is a JSON object, in
 * order, until fn returns < 0; *ret_bad counts the other lines. -errno if unreadable. */
static int each_event(const char *path, int (*fn)(json_t *ev, void *userdata), void *userdata, size_t *ret_bad)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        char *line = NULL;
        size_t size = 0, bad = 0;
        ssize_t n;
        int r = 0;
        while (r >= 0 && (n = getline(&line, &size, f)) > 0) {
                json_auto_t *ev = json_loadb(line, (size_t)n, 0, NULL);
                if (json_is_object(ev))
                        r = fn(ev, userdata);
                else
                        bad++;
        }
        free(line);
        fclose(f);
        if (ret_bad)
                *ret_bad = bad;
        return r;
}

typedef struct {
        const char *type;
        json_t *records;
} OtlpScan;

static int otlp_add(json_t *ev, void *userdata)
{
        OtlpScan *o = userdata;
        if (o->type && !aj_event_type_matches(ev, o->type))
                return 0;
        json_t *rec = aj_otlp_log_record(ev);
        return rec ? json_array_append_new(o->records, rec) : 0;
}

static int otlp_logs(AjRun *run, const char *path, const char *type)
{
        json_t *records = json_array();
        OtlpScan scan = { .type = type, .records = records };
        size_t bad = 0;
        int r = records ? each_event(path, otlp_add, &scan, &bad) : -ENOMEM;
        if (r < 0) {
                json_decref(records);
                fail_msg("logs", "cannot read '%s': %s", path, strerror(-r));
                return EXIT_FAIL;
        }
        char pbuf[256];
        json_auto_t *doc = aj_otlp_logs_request(run->id, jstr(run->doc, "name"), run_profile(run, pbuf, sizeof(pbuf)),
                                                AJ_VERSION, records);
        _cleanup_free_ char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!text) {
                fail_msg("logs", "out of memory");
                return EXIT_FAIL;
        }
        puts(text);
        if (bad)
                fail_msg("logs", "warning: %zu line(s) of '%s' are not JSON events", bad, path);
        return EXIT_OK;
}

/* `logs --verify` exit statuses (docs/operating.md): a script must not take a chain whose
 * end nothing pins down for an intact one. */
enum { EXIT_VERIFY_NO_ANCHOR = 3 };

static int verify_chain(AjRun *run, const char *path, bool json)
{
        AjChainCheck c;
        AjChainVerdict v;
        int r = aj_run_verify_chain(run->doc, path, &c, &v);
        if (r < 0) {
                fail_msg("logs", "cannot read '%s': %s", path, strerror(-r));
                return EXIT_FAIL;
        }
        static const char *const verdicts[] = {
                [AJ_CHAIN_INTACT] = "intact", [AJ_CHAIN_BROKEN] = "broken", [AJ_CHAIN_NO_ANCHOR] = "no-anchor"
        };
        char why[300] = "";
        /* Its supervisor still writing the last events (between the final run.json and the
         * anchor's refresh): not a verdict either way yet. */
        bool closing = v == AJ_CHAIN_BROKEN && c.after_anchor && aj_run_supervisor_alive(run);
        if (closing) {
                v = AJ_CHAIN_NO_ANCHOR;
                snprintf(why, sizeof(why), "events follow run.json's anchor while the supervisor is still closing "
                                           "the run: check again when it is done");
        } else if (v == AJ_CHAIN_NO_ANCHOR) {
                const char *status = jstr(run->doc, "status");
                bool running = status && (streq(status, "running") || streq(status, "starting"));
                snprintf(why, sizeof(why), "run.json records no anchor%s: a cut-off tail cannot be detected",
                         !run->doc                                  ? " (run.json is missing or unreadable)"
                         : running && aj_run_supervisor_alive(run) ? " (the run is still running)"
                                                                    : "");
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:b, s:s, s:b, s:I}", "run", run->id, "ok", v == AJ_CHAIN_INTACT,
                                             "verdict", verdicts[v], "anchored", c.anchored, "events",
                                             (json_int_t)c.count);
                if (doc && c.ok)
                        json_object_set_new(doc, "last_sha256", json_string(c.last_hash));
                if (doc && v == AJ_CHAIN_BROKEN)
                        json_object_set_new(doc, "bad_seq", json_integer((json_int_t)c.bad_seq));
                if (doc && v != AJ_CHAIN_INTACT)
                        json_object_set_new(doc, "problem", json_string(v == AJ_CHAIN_BROKEN ? c.problem : why));
                print_json(doc);
        } else if (v == AJ_CHAIN_INTACT) {
                printf("run %s: the event chain is intact: %llu events, the last sha256 %s\n", run->id,
                       (unsigned long long)c.count, c.last_hash);
        }
        if (v == AJ_CHAIN_BROKEN)
                fail_msg("logs", "run %s: the event chain is broken: %s", run->id, c.problem);
        else if (v == AJ_CHAIN_NO_ANCHOR)
                fail_msg("logs", "run %s: the event chain is consistent for %llu events, but %s", run->id,
                         (unsigned long long)c.count, why);
        return v == AJ_CHAIN_INTACT ? EXIT_OK : v == AJ_CHAIN_BROKEN ? EXIT_FAIL : EXIT_VERIFY_NO_ANCHOR;
}

int aj_cmd_logs(int argc, char **argv)
{
        Opts o;
        int r = parse_opts(argc, argv, LOGS_USAGE, "follow type verify otlp", &o, 1, 1);
        if (r == 1) {
                puts("usage: " LOGS_USAGE "\n\n"
                     "The run's event chain, one line per event: time (UTC), seq, type, fields.\n"
                     "  -f, --follow       keep printing new events until the run exits (or Ctrl-C)\n"
                     "  --json             the raw JSON lines of events.jsonl\n"
                     "  -t, --type PREFIX  only events whose type is PREFIX or starts with PREFIX.\n"
                     "                     (\"net\" matches net.connect; \"tool.re\" matches tool.request)\n"
                     "  --verify           check the chain instead of printing it: every event's \"prev\" is\n"
                     "                     the sha256 of the line before, and the run's end matches run.json's\n"
                     "                     anchor; exit 0 intact, 1 changed, removed or added events\n"
                     "                     (which, on stderr), 3 consistent but run.json has no anchor (a cut-off end\n"
                     "                     could not be seen: a live run, or one whose supervisor was lost)\n"
                     "  --otlp             the events (with --type, the matching ones) as one OpenTelemetry\n"
                     "                     OTLP/JSON logs request, for a collector's /v1/logs");
                return EXIT_OK;
        }
        if (r)
                return r;
        if (o.type && (!*o.type || strlen(o.type) > 64))
                return usage_error("logs", LOGS_USAGE, "--type: expected 1 to 64 characters");
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (open_paths("logs", &paths) < 0 || find_run("logs", &paths, o.pos[0], &run) < 0)
                return EXIT_FAIL;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
        if (o.verify)
                return verify_chain(run, path, o.json);
        if (o.otlp)
                return otlp_logs(run, path, o.type);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                fail_msg("logs", "cannot open '%s': %s", path, strerror(errno));
                return EXIT_FAIL;
        }
        _cleanup_free_ char *buf = malloc(LOGS_LINE_MAX);
        if (!buf)
                return EXIT_FAIL;
        size_t have = 0;
        LogPrinter lp = { .json = o.json, .type = o.type };
        r = o.follow ? follow_logs(&lp, run, fd, buf, &have) : log_drain(&lp, fd, buf, &have);
        if (r == 0 && have)
                log_line(&lp, buf, have); /* a last line without '\n' */
        fflush(stdout);
        if (r < 0) {
                fail_msg("logs", "reading '%s': %s", path, strerror(-r));
                return EXIT_FAIL;
        }
        if (lp.bad_lines)
                fail_msg("logs", "warning: %zu line(s) of '%s' are not JSON events", lp.bad_lines, path);
        return EXIT_OK;
}

/* ---- freeze / thaw / kill / release over the control socket -------------------------- */

/* Send one op; prints the outcome (text or one JSON document). Returns the exit status. */
static int control_op(const char *cmd, AjRun *run, json_t *req, bool json, const char *done)
{
        const char *op = jstr(req, "op");
        json_auto_t *reply = NULL;
        int r = aj_control_call(run->control_path, req, CONTROL_TIMEOUT_MS, &reply);
        if (r < 0) {
                char msg[512];
                if (r == -ENOENT || r == -ECONNREFUSED)
                        snprintf(msg, sizeof(msg), "run %s is not live (state: %s)", run->id, aj_run_display_state(run));
                else if (r == -ETIMEDOUT)
                        snprintf(msg, sizeof(msg), "run %s: the supervisor did not answer within %ds", run->id,
                                 CONTROL_TIMEOUT_MS / 1000);
                else if (r == -EACCES)
                        snprintf(msg, sizeof(msg), "run %s: permission denied on its control socket (not your run?)",
                                 run->id);
                else
                        snprintf(msg, sizeof(msg), "run %s: control socket: %s", run->id, strerror(-r));
                if (json) {
                        json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "run", run->id, "op", op, "ok", 0,
                                                     "error", "code", strerrorname_np(-r) ?: "EIO", "message", msg);
                        print_json(doc);
                }
                fail_msg(cmd, "%s", msg);
                return EXIT_FAIL;
        }
        bool ok = json_is_true(json_object_get(reply, "ok"));
        if (json) {
                json_object_set_new(reply, "run", json_string(run->id));
                json_object_set_new(reply, "op", json_string(op));
                print_json(reply);
        }
        if (!ok) {
                _cleanup_free_ char *err = aj_control_reply_error(reply);
                fail_msg(cmd, "run %s: refused: %s", run->id, err ? err : "request failed");
                return EXIT_FAIL;
        }
        if (!json)
                printf("run %s %s\n", run->id, done);
        return EXIT_OK;
}

static int simple_control_cmd(int argc, char **argv, const char *op, const char *usage, const char *help,
                              const char *done)
{
        const char *cmd = argv[0];
        Opts o;
        int r = parse_opts(argc, argv, usage, streq(op, "thaw") ? "raise" : "", &o, 1, 1);
        if (r == 1) {
                printf("usage: %s\n\n%s\n", usage, help);
                free(o.raise);
                return EXIT_OK;
        }
        if (r) {
                free(o.raise);
                return r;
        }
        json_auto_t *req = json_pack("{s:s}", "op", op);
        json_t *raise = NULL;
        for (size_t i = 0; i < o.n_raise; i++) {
                char *eq = strchr(o.raise[i], '=');
                size_t klen = eq ? (size_t)(eq - o.raise[i]) : 0;
                if (!eq || klen == 0 || klen > 32 || strspn(o.raise[i], "abcdefghijklmnopqrstuvwxyz_") != klen ||
                    !eq[1] || strlen(eq + 1) > 32) {
                        r = usage_error(cmd, usage, "--raise '%s': expected KEY=VALUE, e.g. tokens=+20000", o.raise[i]);
                        free(o.raise);
                        return r;
                }
                if (!raise) {
                        raise = json_object();
                        json_object_set_new(req, "raise", raise);
                }
                *eq = 0;
                bool dup = json_object_get(raise, o.raise[i]) != NULL;
                json_object_set_new(raise, o.raise[i], json_string(eq + 1));
                if (dup) {
                        r = usage_error(cmd, usage, "--raise %s given twice", o.raise[i]);
                        *eq = '=';
                        free(o.raise);
                        return r;
                }
                *eq = '=';
        }
        free(o.raise);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (open_paths(cmd, &paths) < 0 || find_run(cmd, &paths, o.pos[0], &run) < 0)
                return EXIT_FAIL;
        return control_op(cmd, run, req, o.json, done);
}

int aj_cmd_freeze(int argc, char **argv)
{
        return simple_control_cmd(argc, argv, "freeze", "agentjail freeze RUN [--json]",
                                  "Freeze every process of a live run (cgroup freezer). It stays frozen until\n"
                                  "'agentjail thaw' or 'agentjail kill'.",
                                  "frozen");
}

int aj_cmd_thaw(int argc, char **argv)
{
        return simple_control_cmd(argc, argv, "thaw", "agentjail thaw RUN [--raise KEY=VALUE]... [--json]",
                                  "Thaw a frozen run. --raise changes a meter's cap first: \"+N\" adds to it,\n"
                                  "\"N\" sets it, e.g. --raise tokens=+20000 --raise cost_usd=5.",
                                  "thawed");
}

int aj_cmd_kill(int argc, char **argv)
{
        return simple_control_cmd(argc, argv, "kill", "agentjail kill RUN [--json]",
                                  "Kill every process of a live run (also a frozen one). The run's records stay.",
                                  "killed");
}

/* ---- approve / deny ------------------------------------------------------------------ */

static int decide_cmd(int argc, char **argv, bool approve)
{
        const char *cmd = argv[0];
        const char *usage = approve ? "agentjail approve RUN CALL [--digest SHA256] [--json]"
                                    : "agentjail deny RUN CALL [--reason TEXT] [--json]";
        Opts o;
        int r = parse_opts(argc, argv, usage, approve ? "digest" : "reason", &o, 2, 0);
        free(o.raise);
        if (r == 1) {
                printf("usage: %s\n\n%s\n", usage,
                       approve ? "Approve a tool call the run's broker is holding for approval (see 'agentjail\n"
                                 "inspect RUN': pending calls awaiting_approval). The agent's call goes on.\n"
                                 "--digest: the call's arguments_sha256 as reviewed; refused if it differs."
                               : "Deny a tool call the run's broker is holding for approval. The agent gets\n"
                                 "\"deny\" and the reason.");
                return EXIT_OK;
        }
        if (r)
                return r;
        if (o.n_pos < 2)
                return usage_error(cmd, usage, o.n_pos == 0 ? "missing RUN and CALL arguments" : "missing CALL argument");
        const char *call = o.pos[1];
        if (!*call || strlen(call) > 128)
                return usage_error(cmd, usage, "CALL: expected a tool call id of 1 to 128 bytes");
        if (o.digest && (strlen(o.digest) != 64 || strspn(o.digest, "0123456789abcdef") != 64))
                return usage_error(cmd, usage, "--digest: expected 64 lower-case hex digits (arguments_sha256)");
        if (o.reason && (!*o.reason || strlen(o.reason) > AJ_CONTROL_MAX_REASON))
                return usage_error(cmd, usage, "--reason: expected 1 to %d bytes", AJ_CONTROL_MAX_REASON);
        json_auto_t *req = json_pack("{s:s, s:s, s:s*, s:s*}", "op", approve ? "approve" : "deny", "call", call,
                                     "digest", o.digest, "reason", o.reason);
        if (!req)
                return EXIT_FAIL;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (open_paths(cmd, &paths) < 0 || find_run(cmd, &paths, o.pos[0], &run) < 0)
                return EXIT_FAIL;
        char done[200];
        snprintf(done, sizeof(done), "%s call %s", approve ? "approved" : "denied", call);
        return control_op(cmd, run, req, o.json, done);
}

int aj_cmd_approve(int argc, char **argv)
{
        return decide_cmd(argc, argv, true);
}

int aj_cmd_deny(int argc, char **argv)
{
        return decide_cmd(argc, argv, false);
}

/* ---- diff / commit / discard: the overlay workspace ------------------------------------ */

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
}

/* The run's overlay workspace with its changes still pending, the run not live. */
static int open_overlay(const char *cmd, AjRun *run, Overlay *o)
{
        *o = (Overlay){ .upper_fd = -1, .lower_fd = -1 };
        json_t *ws = json_object_get(run->doc, "workspace");
        const char *mode = jstr(ws, "mode"), *changes = jstr(ws, "changes");
        o->path = jstr(ws, "path");
        if (!mode || !streq(mode, "overlay") || !o->path) {
                fail_msg(cmd, "run %s has no overlay workspace (its profile's filesystem.workspace.mode is not "
                              "\"overlay\")", run->id);
                return -ENOENT;
        }
        if (changes && !streq(changes, "pending")) {
                fail_msg(cmd, "run %s: its workspace changes were %s already", run->id, changes);
                return -EALREADY;
        }
        /* Whiteouts and opaque directories are recorded in trusted.* xattrs, which only
         * root can read: anyone else would see a wrong diff. (Overlay runs are root's.) */
        if (geteuid() != 0) {
                fail_msg(cmd, "run %s: reviewing an overlay workspace needs root", run->id);
                return -EPERM;
        }
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live || aj_run_supervisor_alive(run)) {
                fail_msg(cmd, "run %s is still running and may change its workspace: wait for it to exit, or "
                              "'agentjail kill %s'", run->id, run->id);
                return -EBUSY;
        }
        /* The upper dir is the one in the run's own directory, whatever run.json says. */
        snprintf(o->dir, sizeof(o->dir), "%s/workspace", run->dir);
        char upper[PATH_MAX + 8];
        snprintf(upper, sizeof(upper), "%s/upper", o->dir);
        o->upper_fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (o->upper_fd < 0) {
                fail_msg(cmd, "run %s: cannot open its workspace changes '%s': %m", run->id, upper);
                return -errno;
        }
        o->lower_fd = open(o->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->lower_fd < 0) {
                int r = -errno;
                fail_msg(cmd, "run %s: cannot open the workspace '%s': %s", run->id, o->path, strerror(-r));
                overlay_close(o);
                return r;
        }
        return 0;
}

static const char change_letter[] = { [AJ_WS_ADDED] = 'A', [AJ_WS_MODIFIED] = 'M', [AJ_WS_DELETED] = 'D',
                                      [AJ_WS_REPLACED] = 'R' };

/* The start of diff, commit and discard: options, the run, its overlay. Returns -1 when
 * the command goes on (with *ov open), else its exit status (help, or an error reported). */
static int overlay_cmd_begin(const char *cmd, const char *usage, const char *help, const char *allowed, int argc,
                             char **argv, Opts *o, AjPaths *paths, AjRun **run, Overlay *ov)
{
        int r = run_cmd_begin(cmd, usage, help, allowed, argc, argv, o, paths, run);
        if (r >= 0)
                return r;
        return open_overlay(cmd, *run, ov) < 0 ? EXIT_FAIL : -1;
}

/* `diff -u` of one file change, both sides opened here without following symlinks and
 * handed to diff(1) as /proc/self/fd/N (so diff cannot be sent elsewhere). 0, or -errno
 * when a side could not be opened (the caller says so). */
static int show_patch(const Overlay *ov, const AjWsChange *c)
{
        int old_fd = -1, new_fd = -1, r = 0;
        if (c->kind != AJ_WS_ADDED && (old_fd = aj_ws_open_file(ov->lower_fd, c->path)) < 0)
                return old_fd;
        if (c->kind != AJ_WS_DELETED && (new_fd = aj_ws_open_file(ov->upper_fd, c->path)) < 0) {
                r = new_fd;
                goto out;
        }
        char a[PATH_MAX + 8], b[PATH_MAX + 8], fa[32], fb[32];
        snprintf(a, sizeof(a), "a/%s", c->path);
        snprintf(b, sizeof(b), "b/%s", c->path);
        snprintf(fa, sizeof(fa), old_fd >= 0 ? "/proc/self/fd/%d" : "/dev/null", old_fd);
        snprintf(fb, sizeof(fb), new_fd >= 0 ? "/proc/self/fd/%d" : "/dev/null", new_fd);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0) {
                if ((old_fd >= 0 && fcntl(old_fd, F_SETFD, 0) < 0) || (new_fd >= 0 && fcntl(new_fd, F_SETFD, 0) < 0))
                        _exit(2);
                execlp("diff", "diff", "-u", "--label", a, "--label", b, fa, fb, (char *)NULL);
                _exit(127);
        }
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

int aj_cmd_diff(int argc, char **argv)
{
        Opts o;
        Overlay ov;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int r = overlay_cmd_begin("diff", "agentjail diff RUN [--patch | --json]",
                                  "What a run with an overlay workspace changed (A added, M modified, D deleted,\n"
                                  "R directory replaced). '!' marks a path that also changed in the workspace during\n"
                                  "the run. --patch adds the changed files' contents (diff -u). Review, then\n"
                                  "'agentjail commit RUN' or 'agentjail discard RUN'.",
                                  "patch", argc, argv, &o, &paths, &run, &ov);
        if (r >= 0)
                return r;
        if (o.patch && o.json) {
                overlay_close(&ov);
                return usage_error("diff", "agentjail diff RUN [--patch | --json]", "--patch and --json do not mix");
        }
        AjWsChange *c = NULL;
        size_t n = 0;
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_ws_diff(ov.upper_fd, ov.lower_fd, run->started_ns, &c, &n, &err);
        if (r < 0) {
                overlay_close(&ov);
                fail_msg("diff", "run %s: %s", run->id, aj_error_text(&err, r));
                return EXIT_FAIL;
        }
        size_t conflicts = 0;
        for (size_t i = 0; i < n; i++)
                conflicts += c[i].conflict;
        if (o.json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:o, s:I}", "run", run->id, "workspace", ov.path, "changes",
                                             aj_ws_changes_json(c, n), "conflicts", (json_int_t)conflicts);
                print_json(doc);
        } else {
                printf("run %s: workspace %s, %zu change%s", run->id, ov.path, n, n == 1 ? "" : "s");
                if (conflicts)
                        printf(", %zu also changed in the workspace during the run (!)", conflicts);
                putchar('\n');
                for (size_t i = 0; i < n; i++) {
                        bool dir = S_ISDIR(c[i].type);
                        printf("  %c%c %s%s", change_letter[c[i].kind], c[i].conflict ? '!' : ' ', c[i].path,
                               dir ? "/" : S_ISLNK(c[i].type) ? " (symlink)" : "");
                        if (S_ISREG(c[i].type) && c[i].kind != AJ_WS_DELETED)
                                printf("  %llu bytes", (unsigned long long)c[i].size);
                        if (c[i].skipped)
                                printf("  (not applied: %s)", c[i].note ? c[i].note : "unsupported file type");
                        putchar('\n');
                }
                for (size_t i = 0; o.patch && i < n; i++) {
                        if (!S_ISREG(c[i].type) || c[i].skipped || c[i].kind == AJ_WS_REPLACED)
                                continue;
                        int q = show_patch(&ov, &c[i]);
                        if (q < 0)
                                printf("(%s: contents not shown: %s)\n", c[i].path,
                                       q == -ENOENT ? "diff(1) is missing" : strerror(-q));
                }
        }
        overlay_close(&ov);
        aj_ws_changes_free(c, n);
        return EXIT_OK;
}

/* Records the outcome in the chain and run.json, and removes the upper dir. */
static int overlay_finish(const char *cmd, AjRun *run, Overlay *ov, const char *done, json_t *fields)
{
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
        json_object_set_new(fields, "uid", json_integer((json_int_t)getuid()));
        const char *type = streq(done, "committed") ? "workspace.commit" : "workspace.discard";
        AjChainEnd end;
        int r = aj_events_append(path, run->id, type, fields, &end);
        if (r < 0) {
                fail_msg(cmd, "run %s: cannot record it in the event chain: %s", run->id, strerror(-r));
                return r;
        }
        aj_run_doc_move_anchor(run->doc, &end, type);
        char ts[40];
        json_t *ws = json_object_get(run->doc, "workspace");
        json_object_set_new(ws, "changes", json_string(done));
        json_object_set_new(ws, "decided_at", json_string(aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts))));
        json_object_set_new(ws, "decided_by", json_integer((json_int_t)getuid()));
        r = aj_run_json_write(run->dir, run->doc);
        if (r < 0) {
                fail_msg(cmd, "run %s: cannot update run.json: %s", run->id, strerror(-r));
                return r;
        }
        r = aj_rm_rf(ov->dir);
        if (r < 0)
                fail_msg(cmd, "run %s: cannot remove '%s': %s", run->id, ov->dir, strerror(-r));
        return 0;
}

int aj_cmd_commit(int argc, char **argv)
{
        Opts o;
        Overlay ov;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int r = overlay_cmd_begin("commit", "agentjail commit RUN [--force] [--json]",
                                  "Apply what a run with an overlay workspace changed to the workspace itself\n"
                                  "(see 'agentjail diff RUN'). New files get the workspace owner; setuid/setgid bits\n"
                                  "are dropped; devices, fifos and sockets are not applied. Refused when a path also\n"
                                  "changed in the workspace during the run, unless --force.",
                                  "force", argc, argv, &o, &paths, &run, &ov);
        if (r >= 0)
                return r;
        AjWsStats st = { 0 };
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_ws_commit(ov.upper_fd, ov.lower_fd, run->started_ns, o.force, &st, &err);
        overlay_close(&ov);
        if (r == -EBUSY) {
                fail_msg("commit", "run %s: %s; nothing was changed (see 'agentjail diff %s', or --force)", run->id,
                         err.message ?: "paths changed in the workspace during the run", run->id);
                return EXIT_FAIL;
        }
        if (r < 0) {
                fail_msg("commit", "run %s: %s", run->id, aj_error_text(&err, r));
                return EXIT_FAIL;
        }
        json_t *fields = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b}", "workspace", ov.path, "added",
                                   (json_int_t)st.added, "modified", (json_int_t)st.modified, "deleted",
                                   (json_int_t)st.deleted, "replaced", (json_int_t)st.replaced, "skipped",
                                   (json_int_t)st.skipped, "force", o.force);
        json_auto_t *doc = json_deep_copy(fields);
        if (overlay_finish("commit", run, &ov, "committed", fields) < 0)
                return EXIT_FAIL;
        if (o.json) {
                json_object_set_new(doc, "run", json_string(run->id));
                json_object_set_new(doc, "op", json_string("commit"));
                json_object_set_new(doc, "ok", json_true());
                print_json(doc);
        } else {
                printf("run %s: committed to %s: %zu added, %zu modified, %zu deleted, %zu replaced", run->id, ov.path,
                       st.added, st.modified, st.deleted, st.replaced);
                if (st.skipped)
                        printf(", %zu not applied", st.skipped);
                putchar('\n');
        }
        return EXIT_OK;
}

int aj_cmd_discard(int argc, char **argv)
{
        Opts o;
        Overlay ov;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int r = overlay_cmd_begin("discard", "agentjail discard RUN [--json]",
                                  "Drop what a run with an overlay workspace changed: the workspace stays as it\n"
                                  "was before the run.",
                                  "", argc, argv, &o, &paths, &run, &ov);
        if (r >= 0)
                return r;
        overlay_close(&ov);
        if (overlay_finish("discard", run, &ov, "discarded", json_pack("{s:s}", "workspace", ov.path)) < 0)
                return EXIT_FAIL;
        if (o.json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:s}", "run", run->id, "op", "discard", "ok", 1,
                                             "workspace", ov.path);
                print_json(doc);
        } else {
                printf("run %s: workspace changes discarded (%s is as it was before the run)\n", run->id, ov.path);
        }
        return EXIT_OK;
}

/* ---- rollback: what would undo the run ------------------------------------------------ */

typedef struct {
        json_t *requests; /* call id -> its tool.request */
        json_t *calls;    /* oldest first */
} Journal;

static int journal_add(json_t *ev, void *userdata)
{
        Journal *j = userdata;
        const char *type = jstr(ev, "type"), *id = jstr(ev, "gen_ai.tool.call.id");
        if (!type || !id)
                return 0;
        if (streq(type, "tool.request"))
                return json_object_set(j->requests, id, ev);
        if (!streq(type, "tool.result"))
                return 0;
        json_t *req = json_object_get(j->requests, id);
        json_t *undo = json_object_get(ev, "undo");
        json_t *c = json_pack("{s:s, s:s?, s:O?, s:s?, s:s?, s:O}", "gen_ai.tool.call.id", id, "gen_ai.tool.name",
                              jstr(req, "gen_ai.tool.name"), "gen_ai.tool.call.arguments",
                              json_object_get(req, "gen_ai.tool.call.arguments"), "status", jstr(ev, "status"), "ts",
                              jstr(ev, "ts"), "undo", undo ? undo : json_null());
        return c ? json_array_append_new(j->calls, c) : -ENOMEM;
}

/* The journal from the chain: every allowed tool call that reported a result, newest
 * first, with its undo record (null when the agent gave none). */
static int rollback_journal(const char *path, json_t **ret_calls)
{
        json_auto_t *requests = json_object(), *calls = json_array();
        Journal j = { .requests = requests, .calls = calls };
        int r = requests && calls ? each_event(path, journal_add, &j, NULL) : -ENOMEM;
        if (r < 0)
                return r;
        json_t *newest_first = json_array();
        for (size_t i = json_array_size(calls); newest_first && i > 0; i--)
                if (json_array_append(newest_first, json_array_get(calls, i - 1)) < 0) {
                        json_decref(newest_first);
                        newest_first = NULL;
                }
        if (!newest_first)
                return -ENOMEM;
        *ret_calls = newest_first;
        return 0;
}

int aj_cmd_rollback(int argc, char **argv)
{
        Opts o;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int r = run_cmd_begin("rollback", "agentjail rollback RUN [--json]",
                              "What it takes to undo a run: its workspace changes (an overlay workspace can\n"
                              "still be discarded) and, newest first, the tool calls that reported a result with\n"
                              "the undo record the agent gave (the compensating action), and those it gave none\n"
                              "for. agentjail does not run the compensating actions: they are the operator's.",
                              "", argc, argv, &o, &paths, &run);
        if (r >= 0)
                return r;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
        json_t *calls = NULL;
        r = rollback_journal(path, &calls);
        if (r < 0) {
                fail_msg("rollback", "cannot read '%s': %s", path, strerror(-r));
                return EXIT_FAIL;
        }
        json_auto_t *owned = calls;
        size_t with_undo = 0, unreversible = 0, i;
        json_t *c;
        json_array_foreach(calls, i, c) {
                bool undo = !json_is_null(json_object_get(c, "undo"));
                const char *st = jstr(c, "status");
                with_undo += undo;
                unreversible += !undo && st && streq(st, "ok");
        }
        json_t *ws = json_object_get(run->doc, "workspace");
        if (o.json) {
                json_auto_t *doc = json_pack("{s:s, s:O?, s:O, s:I, s:I}", "run", run->id, "workspace", ws, "calls",
                                             calls, "with_undo", (json_int_t)with_undo, "ok_without_undo",
                                             (json_int_t)unreversible);
                print_json(doc);
                return EXIT_OK;
        }
        printf("run %s (%s)\n", run->id, run_name(run));
        const char *changes = jstr(ws, "changes");
        const char *mode = jstr(json_object_get(json_object_get(json_object_get(json_object_get(run->doc, "profile"),
                                                                                 "resolved"),
                                                                 "filesystem"),
                                                 "workspace"),
                                "mode");
        if (!json_is_object(ws) && mode && streq(mode, "ro"))
                printf("workspace: read-only, the agent could not change it\n");
        else if (!json_is_object(ws) && mode && streq(mode, "none"))
                printf("workspace: none was mounted\n");
        else if (!json_is_object(ws))
                printf("workspace: written in place (mode %s): agentjail kept no copy to go back to\n",
                       mode ? mode : "rw");
        else if (changes && streq(changes, "pending"))
                printf("workspace: %s untouched; the agent's changes are kept: 'agentjail discard %s' drops them\n",
                       jstr(ws, "path") ?: "?", run->id);
        else
                printf("workspace: the agent's changes were %s (%s)\n", changes ? changes : "?",
                       jstr(ws, "decided_at") ?: "?");
        printf("tool calls with a result, newest first: %zu; %zu with an undo record, %zu succeeded without one\n",
               json_array_size(calls), with_undo, unreversible);
        json_array_foreach(calls, i, c) {
                json_t *undo = json_object_get(c, "undo");
                _cleanup_free_ char *u = json_is_null(undo) ? NULL : json_dumps(undo, JSON_COMPACT | JSON_PRESERVE_ORDER);
                const char *st = jstr(c, "status") ?: "?";
                printf("  %-20s %-24s %-6s %s\n", jstr(c, "gen_ai.tool.call.id"), jstr(c, "gen_ai.tool.name") ?: "?", st,
                       u                 ? u
                       : streq(st, "ok") ? "(no undo record: reverse it by hand)"
                                         : "(failed, no undo record)");
        }
        return EXIT_OK;
}

/* ---- quarantine ---------------------------------------------------------------------- */

#define QUARANTINE_USAGE "agentjail quarantine [list | show RUN | release RUN | purge RUN] [--json]"

static json_t *quarantine_entry(AjRun *run)
{
        json_t *q = json_object_get(run->doc, "quarantine");
        json_auto_t *inc = NULL;
        (void)aj_run_read_json(run, "incident.json", &inc);
        const char *cap = jstr(q, "cap") ?: jstr(inc, "cap");
        return json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:b}", "id", run->id, "name", jstr(run->doc, "name"), "state",
                         aj_run_display_state(run), "since", jstr(q, "since"), "cap", cap, "incident", inc != NULL);
}

static int quarantine_list(bool json)
{
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        if (open_paths("quarantine", &paths) < 0)
                return EXIT_FAIL;
        AjRun **runs = NULL;
        size_t n = 0;
        int r = aj_runs_list(&paths, &runs, &n);
        if (r < 0) {
                fail_msg("quarantine", "cannot list '%s/runs': %s", paths.state_root, strerror(-r));
                return EXIT_FAIL;
        }
        json_auto_t *arr = json_array();
        if (!json)
                printf("%-12s  %-16s  %-11s  %-14s  %s\n", "ID", "NAME", "STATE", "CAP", "SINCE");
        for (size_t i = 0; i < n; i++) {
                if (!aj_run_doc_quarantined(runs[i]->doc))
                        continue;
                json_t *e = quarantine_entry(runs[i]);
                if (!json)
                        printf("%-12s  %-16.16s  %-11s  %-14.14s  %s\n", runs[i]->id, run_name(runs[i]), jstr(e, "state"),
                               jstr(e, "cap") ?: "?", jstr(e, "since") ?: "?");
                json_array_append_new(arr, e);
        }
        aj_runs_free(runs, n);
        if (json) {
                json_auto_t *doc = json_pack("{s:O}", "runs", arr);
                return print_json(doc) < 0 ? EXIT_FAIL : EXIT_OK;
        }
        return EXIT_OK;
}

static int quarantine_show(AjRun *run, bool json)
{
        json_auto_t *inc = NULL;
        int r = aj_run_read_json(run, "incident.json", &inc);
        if (r < 0) {
                if (r == -ENOENT)
                        fail_msg("quarantine", "run %s has no incident record (it never breached a cap)", run->id);
                else
                        fail_msg("quarantine", "cannot read '%s/incident.json': %s", run->dir, strerror(-r));
                return EXIT_FAIL;
        }
        if (json)
                return print_json(inc) < 0 ? EXIT_FAIL : EXIT_OK;
        printf("run         %s (%s), state %s\n", run->id, run_name(run), aj_run_display_state(run));
        printf("cap         %s: value ", jstr(inc, "cap") ?: "?");
        print_value(json_object_get(inc, "value") ?: json_null());
        printf(", limit ");
        print_value(json_object_get(inc, "limit") ?: json_null());
        putchar('\n');
        const char *key;
        json_t *v;
        json_object_foreach(inc, key, v) {
                if (streq(key, "cap") || streq(key, "value") || streq(key, "limit") || streq(key, "last_events") ||
                    streq(key, "run"))
                        continue;
                printf("%-11s ", key);
                print_value(v);
                putchar('\n');
        }
        json_t *q = json_object_get(run->doc, "quarantine");
        if (json_is_object(q))
                printf("quarantine  %s%s%s\n", json_is_true(json_object_get(q, "released")) ? "released" : "not released",
                       jstr(q, "released_at") ? " at " : "", jstr(q, "released_at") ?: "");
        puts("last events:");
        print_events(json_object_get(inc, "last_events"));
        return EXIT_OK;
}

static int quarantine_release(AjRun *run, bool json)
{
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live) {
                json_auto_t *req = json_pack("{s:s}", "op", "release");
                return control_op("quarantine", run, req, json, "released from quarantine");
        }
        if (aj_run_supervisor_alive(run)) {
                fail_msg("quarantine", "run %s is running but its control socket does not answer; not releasing it",
                         run->id);
                return EXIT_FAIL;
        }
        int r = aj_run_release_offline(run, getuid());
        if (r == -EALREADY || r == -ENOENT) {
                fail_msg("quarantine", "run %s is not quarantined", run->id);
                return EXIT_FAIL;
        }
        if (r < 0) {
                fail_msg("quarantine", "cannot release run %s: %s", run->id, strerror(-r));
                return EXIT_FAIL;
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:b}", "run", run->id, "op", "release", "ok", 1, "live", 0);
                print_json(doc);
        } else {
                printf("run %s released from quarantine (it is not live: records updated)\n", run->id);
        }
        return EXIT_OK;
}

static int wait_pidfd(int pidfd, int timeout_ms)
{
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        for (;;) {
                int n = poll(&p, 1, timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
        }
}

static int quarantine_purge(const AjPaths *paths, AjRun *run, bool json)
{
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        json_t *spid = json_object_get(run->doc, "supervisor_pid");
        bool supervisor = aj_run_supervisor_alive(run);
        if (run->live || supervisor) {
                if (!run->live) {
                        fail_msg("quarantine", "run %s is live but its control socket does not answer: cannot kill it, "
                                 "not purging", run->id);
                        return EXIT_FAIL;
                }
                /* Opened before the kill so its exit cannot be missed. */
                _cleanup_close_ int pidfd = supervisor ? sys_pidfd_open((pid_t)json_integer_value(spid), 0)
                                                       : -1;
                json_auto_t *req = json_pack("{s:s}", "op", "kill");
                json_auto_t *reply = NULL;
                int r = aj_control_call(run->control_path, req, CONTROL_TIMEOUT_MS, &reply);
                if (r < 0 || !json_is_true(json_object_get(reply, "ok"))) {
                        _cleanup_free_ char *err = r < 0 ? NULL : aj_control_reply_error(reply);
                        fail_msg("quarantine", "run %s is live and could not be killed (%s): not purging", run->id,
                                 err ? err : strerror(-r));
                        return EXIT_FAIL;
                }
                if (pidfd >= 0 && wait_pidfd(pidfd, PURGE_WAIT_MS) < 0) {
                        fail_msg("quarantine", "run %s was killed but its supervisor is still running after %ds: "
                                 "not purging", run->id, PURGE_WAIT_MS / 1000);
                        return EXIT_FAIL;
                }
        }
        int r = aj_run_remove_dir(paths, run);
        if (r < 0) {
                fail_msg("quarantine", "cannot remove '%s': %s", run->dir, r == -EPERM ? "not a run directory of the state dir" : strerror(-r));
                return EXIT_FAIL;
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:s}", "run", run->id, "op", "purge", "ok", 1, "dir", run->dir);
                print_json(doc);
        } else {
                printf("run %s purged (%s removed)\n", run->id, run->dir);
        }
        return EXIT_OK;
}

int aj_cmd_quarantine(int argc, char **argv)
{
        Opts o;
        int r = parse_opts(argc, argv, QUARANTINE_USAGE, "", &o, 2, 0);
        if (r == 1) {
                puts("usage: " QUARANTINE_USAGE "\n\n"
                     "  list           runs quarantined after a cap breach and not released (default)\n"
                     "  show RUN       the incident record: cap, value, limit, trigger, last events\n"
                     "  release RUN    release it: a live run is thawed; a dead run's records are marked\n"
                     "  purge RUN      kill the run if it is live, then delete its run directory");
                return EXIT_OK;
        }
        if (r)
                return r;
        const char *sub = o.n_pos > 0 ? o.pos[0] : "list";
        if (streq(sub, "list")) {
                if (o.n_pos > 1)
                        return usage_error("quarantine", QUARANTINE_USAGE, "unexpected argument '%s'", o.pos[1]);
                return quarantine_list(o.json);
        }
        if (!streq(sub, "show") && !streq(sub, "release") && !streq(sub, "purge"))
                return usage_error("quarantine", QUARANTINE_USAGE, "unknown subcommand '%s'", sub);
        if (o.n_pos < 2)
                return usage_error("quarantine", QUARANTINE_USAGE, "%s: missing RUN argument", sub);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (open_paths("quarantine", &paths) < 0 || find_run("quarantine", &paths, o.pos[1], &run) < 0)
                return EXIT_FAIL;
        if (streq(sub, "show"))
                return quarantine_show(run, o.json);
        if (streq(sub, "release"))
                return quarantine_release(run, o.json);
        return quarantine_purge(&paths, run, o.json);
}
