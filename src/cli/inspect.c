/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail inspect`: one run's caps and usage, processes, pending calls, last events. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/verb.h"
#include "util/format.h"
#include "cli/verbs.h"
#include "llm-summary.h"
#include "util/parse.h"

#define INSPECT_USAGE "agentjail inspect RUN [--json]"
#define INSPECT_HELP                                                                          \
        "A run's caps and usage, model calls (measured by the LLM gateway, beside the\n"      \
        "agent's self-reported tokens), processes (live runs), pending calls, last events,\n" \
        "exit, and quarantine/incident summary."
#define INSPECT_EVENTS 10

static json_t *incident_summary(const AjRun *run)
{
        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        if (aj_incident_read(run->dir, &inc, NULL) < 0)
                return json_null();
        return json_pack("{s:s*, s:O*, s:O*, s:s*, s:s*}", "cap", inc->cap, "limit", inc->shown.limit, "value",
                         inc->shown.value, "ts", inc->ts, "action", inc->action);
}

/* What `agentjail rollback --apply` did: each step's last outcome, from run.json. */
static json_t *rollback_summary(const AjRunRecord *rec)
{
        const AjRunRollback *rb = &rec->rollback;
        if (!rb->present)
                return json_null();
        return json_pack("{s:I, s:I, s:I, s:s?, s:O?}", "ok", (json_int_t)rb->n_ok, "failed", (json_int_t)rb->n_failed,
                         "held", (json_int_t)rb->n_held, "updated_at", rb->updated_at, "steps", rb->steps);
}

/* Model calls from the chain (live or ended alike): measured beside self-reported. */
static json_t *model_calls(const AjRun *run)
{
        char path[PATH_MAX];
        AjLlmSummary *s = NULL;
        if (aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0 || aj_llm_summary_read(path, &s) < 0)
                return json_null();
        json_t *o = aj_llm_summary_json(s);
        free(s);
        return o ?: json_null();
}

static json_t *inspect_doc(AjRun *run, const char *state)
{
        json_t *doc = cli_run_summary_json(run, state);
        if (!doc)
                return NULL;
        const AjRunRecord *rec = run->rec;
        json_t *live = run->live_state;
        const AjRunRecord none = { 0 };
        const AjRunRecord *r = rec ? rec : &none;
        json_object_set_new(doc, "profile",
                            json_pack("{s:s?, s:s?, s:s?}", "name", r->profile_name, "path", r->profile_path, "digest",
                                      r->profile_digest));
        json_object_set(doc, "command", r->shown.command ?: json_null());
        json_object_set_new(doc, "cwd", r->cwd ? json_string(r->cwd) : json_null());
        json_object_set(doc, "workspace", r->shown.workspace ?: json_null());
        json_object_set_new(doc, "supervisor_pid", r->supervisor_pid ? json_integer(r->supervisor_pid) : json_null());
        json_object_set(doc, "exit", r->shown.exit ?: json_null());
        json_object_set(doc, "degraded", r->shown.degraded ?: json_null());
        json_object_set(doc, "resources", r->shown.usage ?: json_null());
        json_object_set(doc, "processes", json_object_get(live, "processes") ?: json_null());
        if (json_integer_value(json_object_get(live, "processes_more")) > 0)
                json_object_set(doc, "processes_more", json_object_get(live, "processes_more"));
        json_object_set(doc, "pending", json_object_get(live, "pending") ?: json_null());
        if (json_object_get(live, "pending_dropped"))
                json_object_set(doc, "pending_dropped", json_object_get(live, "pending_dropped"));
        json_t *events = json_object_get(live, "last_events");
        if (json_is_array(events)) {
                json_object_set(doc, "last_events", events);
        } else {
                char path[PATH_MAX];
                json_t *tail = NULL;
                if (aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0 ||
                    aj_events_read_tail(path, INSPECT_EVENTS, &tail) < 0)
                        tail = json_array();
                json_object_set_new(doc, "last_events", tail);
        }
        json_t *q = json_object_get(live, "quarantine") ?: r->shown.quarantine;
        json_object_set(doc, "quarantine", q ?: json_null());
        json_object_set_new(doc, "incident", incident_summary(run));
        json_object_set_new(doc, "rollback", rollback_summary(r));
        json_object_set_new(doc, "model_calls", model_calls(run));
        if (run->live && !live)
                json_object_set_new(doc, "live_error", json_string(strerror(-run->probe_error)));
        return doc;
}

static void print_command(json_t *argv)
{
        size_t i;
        json_t *a;
        json_array_foreach (argv, i, a) {
                const char *s = json_string_value(a) ?: "?";
                if (i)
                        putchar(' ');
                if (*s && strcspn(s, " \t\n'\"\\$`*?;&|<>()") == strlen(s))
                        fputs(s, stdout);
                else
                        cli_print_value(a);
        }
}

static void print_summary(json_t *doc, AjRun *run)
{
        json_t *prof = json_object_get(doc, "profile");
        printf("run         %s (%s)\n", run->id, cli_run_name(run));
        printf("profile     %s", cli_jstr(prof, "name") ?: "?");
        if (cli_jstr(prof, "digest"))
                printf(" (sha256 %.16s...)", cli_jstr(prof, "digest"));
        putchar('\n');
        char age[32];
        printf("state       %s%s, started %s (%s ago)", cli_jstr(doc, "state"),
               json_is_true(json_object_get(doc, "live")) ? " (live)" : "", cli_jstr(doc, "started") ?: "?",
               aj_format_age(cli_age_seconds(run), age, sizeof(age)));
        if (cli_jstr(doc, "ended"))
                printf(", ended %s", cli_jstr(doc, "ended"));
        putchar('\n');
        if (json_is_integer(json_object_get(doc, "stop")))
                printf("stop        %lld (%s): thaw with 'agentjail thaw %s --stop %lld'\n",
                       (long long)json_integer_value(json_object_get(doc, "stop")), cli_jstr(doc, "stop_cause") ?: "?",
                       run->id, (long long)json_integer_value(json_object_get(doc, "stop")));
        if (cli_jstr(doc, "live_error"))
                printf("            (the control socket did not answer inspect: %s)\n", cli_jstr(doc, "live_error"));
        printf("command     ");
        print_command(json_object_get(doc, "command"));
        printf("\ncwd         %s\n", cli_jstr(doc, "cwd") ?: "?");
        json_t *ws = json_object_get(doc, "workspace");
        if (json_is_object(ws)) {
                const char *changes = cli_jstr(ws, "changes") ?: "?";
                printf("workspace   overlay over %s, changes %s", cli_jstr(ws, "path") ?: "?", changes);
                if (streq(changes, "pending"))
                        printf(" ('agentjail diff %s', then commit or discard)", run->id);
                putchar('\n');
        }
        printf("meters      %s\n", cli_jstr(doc, "summary") ?: "-");
}

/* resources, exit, quarantine, incident: what run.json and incident.json recorded. */
static void print_records(json_t *doc, AjRun *run)
{
        json_t *res = json_object_get(doc, "resources");
        if (json_is_object(res)) {
                char mem[32];
                printf("resources   memory peak %s, cpu %.3fs, oom kills %lld, pids.max hits %lld, seccomp denials %lld\n",
                       aj_format_size((uint64_t)json_integer_value(json_object_get(res, "memory_peak")), mem,
                                      sizeof(mem)),
                       (double)json_integer_value(json_object_get(res, "cpu_usec")) / 1e6,
                       (long long)json_integer_value(json_object_get(res, "oom_kills")),
                       (long long)json_integer_value(json_object_get(res, "pids_max_events")),
                       (long long)json_integer_value(json_object_get(res, "seccomp_denied")));
        }
        json_t *ex = json_object_get(doc, "exit");
        if (json_is_object(ex)) {
                printf("exit        status %lld (%s)", (long long)json_integer_value(json_object_get(ex, "status")),
                       cli_jstr(ex, "reason") ?: "?");
                if (json_is_integer(json_object_get(ex, "signal")))
                        printf(", signal %lld", (long long)json_integer_value(json_object_get(ex, "signal")));
                putchar('\n');
        }
        json_t *q = json_object_get(doc, "quarantine");
        if (json_is_object(q)) {
                printf("quarantine  since %s, cap %s, %s", cli_jstr(q, "since") ?: "?", cli_jstr(q, "cap") ?: "?",
                       json_is_true(json_object_get(q, "released")) ? "released" : "not released");
                if (cli_jstr(q, "released_at"))
                        printf(" at %s", cli_jstr(q, "released_at"));
                putchar('\n');
        }
        json_t *inc = json_object_get(doc, "incident");
        if (json_is_object(inc)) {
                printf("incident    cap %s, value ", cli_jstr(inc, "cap") ?: "?");
                cli_print_value(json_object_get(inc, "value") ?: json_null());
                printf(", limit ");
                cli_print_value(json_object_get(inc, "limit") ?: json_null());
                printf(" (agentjail quarantine show %s)\n", run->id);
        }
}

/* The rollback's steps, each with its last outcome (newest-first order of the plan). */
static void print_rollback(const AjRun *run)
{
        const AjRunRollback *rb = run->rec ? &run->rec->rollback : NULL;
        if (!rb || !rb->present)
                return;
        printf("rollback    %zu ok, %zu failed, %zu held (last %s; agentjail rollback %s)\n", rb->n_ok, rb->n_failed,
               rb->n_held, rb->updated_at ?: "?", run->id);
        for (size_t i = 0; i < rb->n_steps; i++) {
                AjRunRollbackStep s;
                aj_run_rollback_step_at(run->rec, i, &s);
                char call[160] = "", tool[160] = "";
                aj_append_printable(call, sizeof(call), s.call_id ?: "?", 128);
                aj_append_printable(tool, sizeof(tool), s.tool ?: "?", 128);
                printf("  %-20s %-24s %-8s", call, tool, s.result ?: "?");
                if (s.exit_code >= 0)
                        printf(" exit %d", s.exit_code);
                printf(" %s\n", s.at ?: "");
        }
}

static void print_processes(json_t *doc)
{
        json_t *procs = json_object_get(doc, "processes");
        puts("processes:");
        if (!json_is_array(procs)) {
                puts(json_is_true(json_object_get(doc, "live")) ? "  (not reported by the supervisor)"
                                                                : "  (the run is not live: no processes)");
        } else {
                printf("  %7s  %-5s  %9s  %9s  %s\n", "PID", "STATE", "CPU", "RSS", "CMD");
                size_t i;
                json_t *p;
                json_array_foreach (procs, i, p) {
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
                               cli_jstr(p, "state") ?: "?", cpu, rss);
                        json_t *cmd = json_object_get(p, "cmd");
                        if (json_is_array(cmd))
                                print_command(cmd);
                        else
                                cli_print_value(cmd ?: json_null());
                        putchar('\n');
                }
                json_int_t more = json_integer_value(json_object_get(doc, "processes_more"));
                if (more > 0)
                        printf("  (and %lld more processes, not listed)\n", (long long)more);
        }
}

static void print_pending(json_t *doc)
{
        json_t *pending = json_object_get(doc, "pending");
        if (json_is_array(pending)) {
                puts("pending calls (awaiting approval, or allowed and without a tool_result yet) and hosts "
                     "(net-N):");
                if (json_array_size(pending) == 0)
                        puts("  (none)");
                else
                        printf("  %-24s %-32s %-17s %8s  %s\n", "CALL ID", "TOOL", "STATE", "AGE", "SINCE");
                size_t i;
                json_t *p;
                json_array_foreach (pending, i, p) {
                        const char *kind = cli_jstr(p, "kind");
                        if (kind && streq(kind, "net")) {
                                /* A host a proxy connection waits for: "host:port" in the TOOL column. */
                                char what[300];
                                const char *host = cli_jstr(p, "host") ?: "?";
                                snprintf(what, sizeof(what), strchr(host, ':') ? "[%s]:%lld" : "%s:%lld", host,
                                         (long long)json_integer_value(json_object_get(p, "port")));
                                printf("  %-24s %-32s %-17s %7.1fs  %s", cli_jstr(p, "id") ?: "?", what,
                                       cli_jstr(p, "state") ?: "?", json_number_value(json_object_get(p, "age_s")),
                                       cli_jstr(p, "since") ?: "?");
                                json_t *proc = json_object_get(p, "process");
                                if (json_is_integer(json_object_get(proc, "pid")))
                                        printf("  pid %lld %s",
                                               (long long)json_integer_value(json_object_get(proc, "pid")),
                                               cli_jstr(proc, "cmd") ?: "");
                                json_int_t conns = json_integer_value(json_object_get(p, "connections"));
                                if (conns > 1)
                                        printf("  (%lld connections)", (long long)conns);
                        } else {
                                printf("  %-24s %-32s %-17s %7.1fs  %s", cli_jstr(p, "gen_ai.tool.call.id") ?: "?",
                                       cli_jstr(p, "gen_ai.tool.name") ?: "?", cli_jstr(p, "state") ?: "?",
                                       json_number_value(json_object_get(p, "age_s")), cli_jstr(p, "since") ?: "?");
                        }
                        if (json_is_number(json_object_get(p, "timeout_in_s")))
                                printf("  (denied in %.0fs)", json_number_value(json_object_get(p, "timeout_in_s")));
                        putchar('\n');
                        /* What `approve --digest` binds to: the arguments reviewed. */
                        const char *digest = cli_jstr(p, "arguments_sha256");
                        if (digest && !(kind && streq(kind, "net")))
                                printf("  %-24s arguments sha256 %s\n", "", digest);
                }
                json_int_t dropped = json_integer_value(json_object_get(doc, "pending_dropped"));
                if (dropped > 0)
                        printf("  (and %lld older calls no longer tracked)\n", (long long)dropped);
        }
}

static unsigned long long jcount(json_t *o, const char *key)
{
        return (unsigned long long)json_integer_value(json_object_get(o, key));
}

/* "$0.012345" right-aligned in 11 columns. */
static const char *cost_text(json_t *o, char *buf, size_t len)
{
        char c[32];
        snprintf(c, sizeof(c), "$%.6f", json_number_value(json_object_get(o, "cost_usd")));
        snprintf(buf, len, "%11s", c);
        return buf;
}

/* One row of the measured table: provider and model, or "total" across both. */
static void print_measured_row(json_t *row, const char *total)
{
        char cost[32];
        if (total)
                printf("  %-45s", total);
        else
                printf("  %-12.64s %-32.128s", cli_jstr(row, "provider") ?: "?", cli_jstr(row, "model") ?: "?");
        printf(" %6llu %10llu %9llu %9llu %9llu %9llu %s\n", jcount(row, "requests"), jcount(row, "input_tokens"),
               jcount(row, "output_tokens"), jcount(row, "cache_read_tokens"), jcount(row, "cache_write_tokens"),
               jcount(row, "reasoning_tokens"), cost_text(row, cost, sizeof(cost)));
}

static void print_measured(json_t *m)
{
        json_t *models = json_object_get(m, "models");
        puts("model calls measured by the LLM gateway:");
        printf("  %-12s %-32s %6s %10s %9s %9s %9s %9s %11s\n", "PROVIDER", "MODEL", "REQS", "INPUT", "OUTPUT",
               "CACHE-RD", "CACHE-WR", "REASONING", "COST");
        size_t i;
        json_t *row;
        json_array_foreach (models, i, row)
                print_measured_row(row, NULL);
        if (json_array_size(models) > 1)
                print_measured_row(m, "total");
        if (jcount(m, "failed") || jcount(m, "estimated") || jcount(m, "unpriced"))
                printf("  (%llu did not complete, %llu charged on an estimate, %llu without a price)\n",
                       jcount(m, "failed"), jcount(m, "estimated"), jcount(m, "unpriced"));
        if (jcount(m, "other_requests"))
                printf("  (and %llu other requests relayed, not model calls)\n", jcount(m, "other_requests"));
}

static void print_reported_row(json_t *row, const char *total)
{
        char cost[32];
        printf("  %-45.128s %6llu %10llu %9llu %9llu %s\n", total ?: cli_jstr(row, "model") ?: "?",
               jcount(row, "reports"), jcount(row, "input_tokens"), jcount(row, "output_tokens"),
               jcount(row, "cache_read_tokens"), cost_text(row, cost, sizeof(cost)));
}

static void print_reported(json_t *r)
{
        json_t *models = json_object_get(r, "models");
        puts("self-reported by the agent (agentjail meter tokens):");
        printf("  %-45s %6s %10s %9s %9s %11s\n", "MODEL", "REPORTS", "INPUT", "OUTPUT", "CACHE-RD", "COST");
        size_t i;
        json_t *row;
        json_array_foreach (models, i, row)
                print_reported_row(row, NULL);
        if (json_array_size(models) > 1)
                print_reported_row(r, "total");
}

static void print_model_calls(json_t *doc)
{
        json_t *mc = json_object_get(doc, "model_calls");
        if (!json_is_object(mc))
                return;
        const char *check = cli_jstr(mc, "check") ?: "?";
        if (streq(check, "none")) {
                puts("model calls none (no calls through the LLM gateway, no self-reported tokens)");
                return;
        }
        json_t *m = json_object_get(mc, "measured"), *r = json_object_get(mc, "self_reported");
        if (jcount(m, "requests"))
                print_measured(m);
        if (jcount(r, "reports"))
                print_reported(r);
        printf("  %s%s\n", streq(check, "under-reported") ? "WARNING: " : "", cli_jstr(mc, "verdict") ?: "?");
}

static void print_inspect(json_t *doc, AjRun *run)
{
        print_summary(doc, run);
        print_records(doc, run);
        print_rollback(run);
        print_model_calls(doc);
        print_processes(doc);
        print_pending(doc);
        puts("last events:");
        cli_print_events(json_object_get(doc, "last_events"));
}

int aj_cmd_inspect(int argc, char **argv)
{
        bool json = false, help = false;
        const char *query = NULL;
        int r = cli_parse_json_run("inspect", INSPECT_USAGE, argc, argv, &json, &help, &query);
        if (r)
                return r;
        if (help)
                return cli_help(INSPECT_USAGE, INSPECT_HELP);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (cli_open_run("inspect", query, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        json_auto_t *doc = inspect_doc(run, aj_run_display_state(run));
        if (!doc)
                return CLI_EXIT_FAIL;
        if (json)
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        /* The agent's text (argv, names, cwd, incident values) is shown escaped; the events
         * are formatted from their JSON, escaped by aj_event_format(). */
        json_auto_t *events = json_incref(json_object_get(doc, "last_events"));
        json_object_del(doc, "last_events");
        if (cli_json_escape_strings(doc, 0) < 0) {
                cli_fail("inspect", "out of memory");
                return CLI_EXIT_FAIL;
        }
        json_object_set(doc, "last_events", events ?: json_null());
        print_inspect(doc, run);
        return CLI_EXIT_OK;
}
