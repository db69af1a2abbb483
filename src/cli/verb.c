/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/verb.h"
#include "control.h"
#include "events.h"
#include "util/clock.h"
#include "util/format.h"

/* "agentjail CMD: " and the message through the escaping rule (util/format.h): a file name,
 * a run's name or a supervisor's reply in it is shown, never acted on by the terminal. */
static void vmessage(const char *cmd, const char *fmt, va_list ap)
{
        fprintf(stderr, "agentjail %s: ", cmd);
        (void)aj_vfprintf_printable(stderr, fmt, ap);
}

void cli_fail(const char *cmd, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vmessage(cmd, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vmessage(cmd, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nusage: %s\n", usage);
        return CLI_EXIT_USAGE;
}

int cli_option_error(const char *cmd, const char *usage, int c, char **argv)
{
        if (c == ':')
                return cli_usage_error(cmd, usage, "option '%s' needs a value", argv[optind - 1]);
        return cli_usage_error(cmd, usage, "unknown option '%s'", argv[optind - 1]);
}

void cli_getopt_reset(void)
{
        optind = 0;
        opterr = 0;
}

int cli_check_positionals(const char *cmd, const char *usage, int n, char **pos, int min, int max)
{
        if (n < min)
                return cli_usage_error(cmd, usage, "missing RUN argument");
        if (n > max)
                return cli_usage_error(cmd, usage, "unexpected argument '%s'", pos[max]);
        return 0;
}

int cli_parse_json_run(const char *cmd, const char *usage, int argc, char **argv, bool *ret_json, bool *ret_help,
                       const char **ret_run)
{
        static const struct option options[] = { CLI_OPTIONS_COMMON, {} };
        int c;
        *ret_json = *ret_help = false;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (c == 'h') {
                        *ret_help = true;
                        return 0;
                }
                if (c != CLI_OPT_JSON)
                        return cli_option_error(cmd, usage, c, argv);
                *ret_json = true;
        }
        int r = cli_check_positionals(cmd, usage, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        *ret_run = argv[optind];
        return 0;
}

int cli_help(const char *usage, const char *help)
{
        printf("usage: %s\n\n%s\n", usage, help);
        return CLI_EXIT_OK;
}

int cli_print_json_text(const char *text)
{
        /* json_dumps escapes C0 controls; C1 and DEL it writes raw, which a terminal may act on. */
        _cleanup_free_ char *s = aj_json_text_hidden_escaped(text);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

int cli_print_json_expand(json_t *doc, AjJsonExpand expand, void *userdata)
{
        _cleanup_free_ char *s = doc ? aj_json_dumps_indented_expand(doc, CLI_JSON_LEVELS, expand, userdata) : NULL;
        if (!s)
                return -ENOMEM;
        return cli_print_json_text(s);
}

int cli_print_json(json_t *doc)
{
        /* The documents' own members laid out (a run, an event of last_events, a step); what
         * nests deeper, often the agent's (a call's arguments, an undo record), each on one
         * line: indented at every level, 64 levels of it were 66 times their size. */
        _cleanup_free_ char *s = doc ? aj_json_dumps_indented(doc, CLI_JSON_LEVELS) : NULL;
        if (!s)
                return -ENOMEM;
        return cli_print_json_text(s);
}

int cli_json_escape_strings(json_t *v, unsigned depth)
{
        if (depth > 64)
                return -ELOOP; /* the documents are agentjail's own: never this deep */
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                if (aj_printable_as_is(s, len))
                        return 0;
                _cleanup_free_ char *shown = aj_printable_dup(s, len, 0);
                return !shown ? -ENOMEM : json_string_set(v, shown) < 0 ? -ENOMEM : 0;
        }
        size_t i;
        const char *key;
        json_t *e;
        int r = 0;
        if (json_is_array(v))
                json_array_foreach (v, i, e)
                        if ((r = cli_json_escape_strings(e, depth + 1)) < 0)
                                return r;
        if (json_is_object(v))
                json_object_foreach (v, key, e)
                        if ((r = cli_json_escape_strings(e, depth + 1)) < 0)
                                return r;
        return 0;
}

void cli_print_value(json_t *v)
{
        if (json_is_string(v)) {
                aj_fputs_printable(json_string_value(v), stdout);
                return;
        }
        _cleanup_free_ char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        aj_fputs_printable(s ? s : "?", stdout);
}

void cli_print_events(json_t *events)
{
        size_t i;
        json_t *ev;
        if (json_array_size(events) == 0)
                puts("  (none)");
        json_array_foreach (events, i, ev) {
                _cleanup_free_ char *line = NULL;
                if (aj_event_format(ev, &line) >= 0)
                        printf("  %s\n", line);
        }
}

int cli_open_paths(const char *cmd, AjPaths *paths)
{
        int r = aj_paths_resolve(paths);
        if (r < 0) {
                cli_fail(cmd, "cannot find the state directory (set AGENTJAIL_STATE_DIR)");
                return r;
        }
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_state_root_check(paths, AJ_STATE_READ, &err);
        if (r < 0) {
                cli_fail(cmd, "%s", aj_error_text(&err, r));
                aj_paths_done(paths);
        }
        return r;
}

/* Resolve RUN, telling the operator which run was chosen when that was not obvious. */
static int find_run(const char *cmd, const AjPaths *paths, const char *query, size_t min_prefix, AjRun **ret)
{
        _cleanup_free_ char *note = NULL;
        int r = aj_runs_find_min(paths, query, min_prefix, ret, &note);
        if (r == -ERANGE)
                cli_fail(cmd,
                         "'%s' is too short an id prefix to act on (%zu+ characters, or the whole id: a short one "
                         "typed for a run since removed may name a newer one); %s",
                         query, min_prefix, note ? note : "");
        else if (r == -ENOENT)
                cli_fail(cmd, "no run matches '%s' (an id, an id prefix of %zu+ characters, or a name)", query,
                         min_prefix);
        else if (r == -ENOTUNIQ)
                cli_fail(cmd, "ambiguous RUN: %s", note ? note : query);
        else if (r == -EINVAL)
                cli_fail(cmd, "'%s' is not a valid RUN (an id, an id prefix, or a name)", query);
        else if (r < 0)
                cli_fail(cmd, "cannot look up run '%s': %s", query, strerror(-r));
        else if (note)
                cli_fail(cmd, "%s", note);
        if (r >= 0 && (*ret)->rec_error.err < 0)
                cli_fail(cmd, "warning: the run's record is unreadable: %s", aj_error_text(&(*ret)->rec_error, 0));
        return r;
}

int cli_find_run(const char *cmd, const AjPaths *paths, const char *query, AjRun **ret)
{
        return find_run(cmd, paths, query, AJ_RUN_PREFIX_MIN, ret);
}

int cli_check_acting(const char *cmd, const AjPaths *paths)
{
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_state_root_check(paths, AJ_STATE_ACT, &err);
        if (r < 0)
                cli_fail(cmd, "%s", aj_error_text(&err, r));
        return r;
}

int cli_open_run(const char *cmd, const char *query, AjPaths *paths, AjRun **ret)
{
        int r = cli_open_paths(cmd, paths);
        return r < 0 ? r : cli_find_run(cmd, paths, query, ret);
}

int cli_open_run_to_act(const char *cmd, const char *query, AjPaths *paths, AjRun **ret)
{
        int r = cli_open_paths(cmd, paths);
        return r < 0 ? r : find_run(cmd, paths, query, AJ_RUN_PREFIX_MIN_ACT, ret);
}

const char *cli_jstr(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

const char *cli_run_name(const AjRun *run)
{
        /* The operator's --name or the command's basename: printable since `run` checks it, but
         * older records were not. A few buffers in turn: a printf may show two runs' names. */
        static char shown[4][AJ_RUN_NAME_MAX * 4 + 8];
        static unsigned next;
        const char *name = (run->rec ? run->rec->name : NULL) ?: "?";
        if (aj_printable_as_is(name, strlen(name)))
                return name;
        char *buf = shown[next++ % ARRAY_SIZE(shown)];
        buf[0] = 0;
        return aj_append_printable(buf, sizeof(shown[0]), name, AJ_RUN_NAME_MAX);
}

const char *cli_run_profile(const AjRun *run, char *buf, size_t len)
{
        const char *name = (run->rec ? run->rec->profile_name : NULL) ?: "?";
        const char *slash = strrchr(name, '/');
        if (!slash)
                return name;
        snprintf(buf, len, "%s", slash + 1);
        size_t n = strlen(buf);
        if (n > 5 && streq(buf + n - 5, ".json"))
                buf[n - 5] = 0;
        return buf;
}

uint64_t cli_age_seconds(const AjRun *run)
{
        uint64_t now = aj_now_realtime_ns();
        return run->started_ns && now > run->started_ns ? (now - run->started_ns) / 1000000000ull : 0;
}

size_t cli_awaiting_approval(const AjRun *run)
{
        size_t n = 0, i;
        json_t *p;
        json_array_foreach (json_object_get(run->live_state, "pending"), i, p) {
                const char *st = cli_jstr(p, "state");
                n += st && streq(st, "awaiting_approval");
        }
        return n;
}

json_t *cli_run_summary_json(AjRun *run, const char *state)
{
        const AjRunRecord *rec = run->rec;
        json_t *m = aj_run_meters(run);
        _cleanup_free_ char *meters = aj_meters_summary(m);
        json_t *doc = json_pack("{s:s, s:s?, s:s?, s:s, s:b, s:b, s:s?, s:s?, s:I, s:o?, s:s?, s:s, s:I}", "id",
                                run->id, "name", rec ? rec->name : NULL, "profile", rec ? rec->profile_name : NULL,
                                "state", state, "live", run->live, "quarantined",
                                aj_run_record_quarantined(rec) || streq(state, "quarantined"), "started",
                                rec ? rec->started : NULL, "ended", rec ? rec->ended : NULL, "age_seconds",
                                (json_int_t)cli_age_seconds(run), "meters", m, "summary", meters, "dir", run->dir,
                                "awaiting_approval", (json_int_t)cli_awaiting_approval(run));
        /* A frozen run's stop: what `thaw --stop N` names. */
        json_t *stop = json_object_get(run->live_state, "stop");
        if (doc && json_is_integer(stop)) {
                json_object_set(doc, "stop", stop);
                json_object_set(doc, "stop_cause", json_object_get(run->live_state, "stop_cause") ?: json_null());
        }
        return doc;
}

/* Alive (its live.lock held) and not over by its record: a run starting, which serves no
 * control socket yet (or one ending, until its record says so). run.json read afresh. */
static bool run_starting(AjRun *run)
{
        if (!aj_run_supervisor_alive(run))
                return false;
        AjRunRecord *rec = NULL;
        if (aj_run_record_read(run->dir, &rec, NULL) >= 0) {
                aj_run_record_free(run->rec);
                run->rec = rec;
        }
        return !run->rec || !run->rec->ended;
}

int cli_control_op(const char *cmd, AjRun *run, json_t *req, bool json, const char *done)
{
        return cli_control_op_or(cmd, run, req, json, done, NULL, NULL);
}

int cli_control_op_or(const char *cmd, AjRun *run, json_t *req, bool json, const char *done,
                      int (*fallback)(AjRun *run), const char *fallback_done)
{
        const char *op = cli_jstr(req, "op");
        json_auto_t *reply = NULL;
        int64_t deadline = aj_now_monotonic_ms() + CLI_CONTROL_TIMEOUT_MS;
        int r = aj_control_call(run->control_path, req, CLI_CONTROL_TIMEOUT_MS, &reply);
        /* A starting run (its directory's live.lock held, no control socket served yet: its
         * first ~16 ms) is the run the operator named: waited for until it serves one, ends
         * or the deadline passes, so a kill then is not lost as "not live". */
        bool starting = false;
        while ((r == -ENOENT || r == -ECONNREFUSED) && aj_now_monotonic_ms() < deadline && run_starting(run)) {
                starting = true;
                (void)nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
                int64_t now = aj_now_monotonic_ms();
                r = aj_control_call(run->control_path, req, now < deadline ? (int)(deadline - now) : 1, &reply);
        }
        if (starting && (r == -ENOENT || r == -ECONNREFUSED) && run_starting(run))
                r = -ETIMEDOUT; /* still starting at the deadline: the fallback, or "did not answer" */
        /* A supervisor that stopped accepting leaves its backlog full: connects fail at once
         * (EAGAIN) rather than time out. With a fallback that is "no answer" too, once the
         * deadline has passed without a connection getting through. */
        while (r == -EAGAIN && fallback && aj_now_monotonic_ms() < deadline) {
                (void)nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
                int64_t now = aj_now_monotonic_ms();
                r = aj_control_call(run->control_path, req, now < deadline ? (int)(deadline - now) : 1, &reply);
        }
        if (fallback && r < 0 && r != -ENOENT && r != -ECONNREFUSED && r != -EACCES && r != -EPERM)
                r = -ETIMEDOUT;
        /* A socket refused as not the run's (EPERM: say, in a /tmp/agentjail-UID another user
         * made first) is no answer either: the kill switch must not be one another user can
         * turn off by squatting a directory. The fallback goes by the run's id, not by
         * anything in that directory. */
        if ((r == -ETIMEDOUT || r == -EPERM) && fallback) {
                int q = fallback(run);
                if (q >= 0) {
                        char msg[640];
                        if (r == -EPERM)
                                snprintf(msg, sizeof(msg),
                                         "its control socket '%s' is not the run's (another user's, or in a directory "
                                         "others can write) and was not used; %s",
                                         run->control_path, fallback_done);
                        else
                                snprintf(msg, sizeof(msg), "the supervisor did not answer within %ds; %s",
                                         CLI_CONTROL_TIMEOUT_MS / 1000, fallback_done);
                        if (json) {
                                json_auto_t *doc = json_pack("{s:s, s:s?, s:b, s:s}", "run", run->id, "op", op, "ok", 1,
                                                             "without_supervisor", msg);
                                cli_print_json(doc);
                        } else
                                printf("run %s %s (%s)\n", run->id, done, msg);
                        return CLI_EXIT_OK;
                }
                cli_fail(cmd, "run %s: without the supervisor: %s", run->id, strerror(-q));
        }
        if (r < 0) {
                char msg[512];
                if (r == -ENOENT || r == -ECONNREFUSED)
                        snprintf(msg, sizeof(msg), "run %s is not live (state: %s)", run->id,
                                 aj_run_display_state(run));
                else if (r == -ETIMEDOUT && starting)
                        snprintf(msg, sizeof(msg),
                                 "run %s is starting and served no control socket within %ds: nothing done; try again",
                                 run->id, CLI_CONTROL_TIMEOUT_MS / 1000);
                else if (r == -ETIMEDOUT)
                        snprintf(msg, sizeof(msg), "run %s: the supervisor did not answer within %ds", run->id,
                                 CLI_CONTROL_TIMEOUT_MS / 1000);
                else if (r == -EACCES)
                        snprintf(msg, sizeof(msg), "run %s: permission denied on its control socket (not your run?)",
                                 run->id);
                else if (r == -EPERM)
                        snprintf(msg, sizeof(msg),
                                 "run %s: refusing the control socket '%s': it is not the run's (it, its directory or "
                                 "the process serving it is another user's, or others can write to its directory); "
                                 "check the runtime dir (`agentjail doctor`), or set AGENTJAIL_RUNTIME_DIR to the runs'",
                                 run->id, run->control_path);
                else
                        snprintf(msg, sizeof(msg), "run %s: control socket: %s", run->id, strerror(-r));
                if (json) {
                        json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "run", run->id, "op", op, "ok", 0,
                                                     "error", "code", strerrorname_np(-r) ?: "EIO", "message", msg);
                        cli_print_json(doc);
                }
                cli_fail(cmd, "%s", msg);
                return CLI_EXIT_FAIL;
        }
        bool ok = json_is_true(json_object_get(reply, "ok"));
        if (json) {
                json_object_set_new(reply, "run", json_string(run->id));
                json_object_set_new(reply, "op", json_string(op));
                cli_print_json(reply);
        }
        if (!ok) {
                /* The supervisor's words may quote the agent's (a call id, a tool name): cli_fail
                 * escapes them. */
                _cleanup_free_ char *err = aj_control_reply_error(reply);
                cli_fail(cmd, "run %s: refused: %s", run->id, err ? err : "request failed");
                return CLI_EXIT_FAIL;
        }
        if (!json) {
                _cleanup_free_ char *shown = aj_printable_dup(done, strlen(done), 0);
                printf("run %s %s\n", run->id, shown ?: "?");
        }
        return CLI_EXIT_OK;
}
