/* SPDX-License-Identifier: Apache-2.0 */
/* incident.json and approval.json typed: written as the alert command and the operator's
 * verbs read them, read back, a wrong member named with the file, members of other
 * versions kept in the document as read. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run-record-internal.h"
#include "quarantine.h"
#include "run-record.h"
#include "util/fd.h"

static char root[64];

static void setup(void)
{
        snprintf(root, sizeof(root), "/tmp/aj-alerts-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) { aj_rm_rf(root); }

TestSuite(record_alerts, .init = setup, .fini = teardown);

static void write_text(const char *name, const char *text)
{
        char path[300];
        cr_assert_eq(aj_run_file_path(root, name, path, sizeof(path)), 0);
        cr_assert_eq(aj_write_file_atomic(path, text, strlen(text), 0640), 0);
}

/* The file as written, compact, members in order. */
static char *file_compact(const char *name)
{
        json_t *doc = NULL;
        cr_assert_eq(aj_run_file_read_json(root, name, &doc), 0);
        char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        cr_assert_not_null(s);
        return s;
}

Test(record_alerts, incident_round_trip)
{
        json_auto_t *request = json_pack("{s:s}", "op", "tokens");
        json_auto_t *usage = json_pack("{s:i}", "tokens", 6000);
        json_auto_t *last = json_pack("[{s:i, s:s}]", "seq", 1, "type", "cap.breach");
        AjIncident in = { .run = "abcd00000001",
                          .name = "triage",
                          .ts = "2026-01-01T00:00:02Z",
                          .cap = "tokens",
                          .limit = 5000,
                          .value = 6000,
                          .request = request,
                          .action = "freeze",
                          .usage = usage,
                          .last_events = last };
        cr_assert_eq(aj_incident_write(root, &in), 0);
        _cleanup_free_ char *text = file_compact(AJ_RUN_FILE_INCIDENT);
        cr_assert_str_eq(text,
                         "{\"run\":\"abcd00000001\",\"name\":\"triage\",\"ts\":\"2026-01-01T00:00:02Z\",\"cap\":"
                         "\"tokens\",\"limit\":5000.0,\"value\":6000.0,\"request\":{\"op\":\"tokens\"},\"action\":"
                         "\"freeze\",\"usage\":{\"tokens\":6000},\"last_events\":[{\"seq\":1,\"type\":\"cap.breach\"}]}");

        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_incident_read(root, &inc, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(inc->run, "abcd00000001");
        cr_assert_str_eq(inc->name, "triage");
        cr_assert_str_eq(inc->ts, "2026-01-01T00:00:02Z");
        cr_assert_str_eq(inc->cap, "tokens");
        cr_assert_eq(inc->limit, 5000);
        cr_assert_eq(inc->value, 6000);
        cr_assert_str_eq(inc->action, "freeze");
        cr_assert(json_equal(inc->request, request));
        cr_assert(json_equal(inc->usage, usage));
        cr_assert(json_equal(inc->last_events, last));

        /* Without a request or usage (a wall or log cap): null, read as absent. */
        AjIncident bare = { .run = "r",
                            .name = "n",
                            .ts = "t",
                            .cap = "wall",
                            .limit = 1,
                            .value = 2,
                            .action = "kill",
                            .last_events = last };
        cr_assert_eq(aj_incident_write(root, &bare), 0);
        _cleanup_free_ char *bare_text = file_compact(AJ_RUN_FILE_INCIDENT);
        cr_assert_not_null(strstr(bare_text, "\"request\":null"), "%s", bare_text);
        cr_assert_not_null(strstr(bare_text, "\"usage\":null"), "%s", bare_text);
        _cleanup_(aj_incident_freep) AjIncident *b = NULL;
        cr_assert_eq(aj_incident_read(root, &b, NULL), 0);
        cr_assert_null(b->request);
        cr_assert_null(b->usage);
}

/* `depth` arrays in arrays, `chains` times in one array. */
static json_t *nested_chains(int depth, int chains)
{
        json_t *all = json_array();
        for (int c = 0; c < chains; c++) {
                json_t *v = json_array();
                for (int i = 1; i < depth; i++) {
                        json_t *outer = json_array();
                        json_array_append_new(outer, v);
                        v = outer;
                }
                json_array_append_new(all, v);
        }
        return all;
}

static off_t file_size(const char *name)
{
        char path[300];
        struct stat st;
        cr_assert_eq(aj_run_file_path(root, name, path, sizeof(path)), 0);
        cr_assert_eq(stat(path, &st), 0);
        return st.st_size;
}

/* incident.json and approval.json carry the agent's JSON (the breaching request, the last
 * events with their arguments and undo records, the held call's arguments): as large as
 * that JSON, whatever its depth. Indented, a record grew with the square of the depth: a
 * 4 KB request nested 2040 deep made an 8.4 MB incident, 1 MB of events a 2 GB one. */
Test(record_alerts, records_of_agent_json_grow_with_it_not_with_its_depth)
{
        json_auto_t *request = json_pack("{s:s, s:o}", "op", "tool", "gen_ai.tool.call.arguments",
                                         nested_chains(60, 100));
        json_auto_t *last = json_pack("[{s:s, s:O}]", "type", "tool.result", "undo", request);
        _cleanup_free_ char *compact = json_dumps(request, JSON_COMPACT);
        size_t agent_bytes = strlen(compact); /* 14 KB, 6000 arrays, 60 deep */
        AjIncident in = { .run = "r",
                          .name = "n",
                          .ts = "t",
                          .cap = "tool_calls",
                          .limit = 1,
                          .value = 2,
                          .request = request,
                          .action = "kill",
                          .last_events = last };
        cr_assert_eq(aj_incident_write(root, &in), 0);
        off_t size = file_size(AJ_RUN_FILE_INCIDENT);
        /* The request twice (itself, and in the last event), with a space after each comma. */
        cr_expect_lt(size, (off_t)(4 * agent_bytes + 4096), "incident.json is %lld bytes for twice %zu of the agent's",
                     (long long)size, agent_bytes);
        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        cr_expect_eq(aj_incident_read(root, &inc, NULL), 0);

        json_auto_t *call = json_pack("{s:s, s:s, s:O}", "gen_ai.tool.call.id", "a-1", "gen_ai.tool.name", "x",
                                      "gen_ai.tool.call.arguments", request);
        AjApproval ap = { .subject = AJ_APPROVAL_TOOL,
                          .run = "r",
                          .name = "n",
                          .ts = "t",
                          .call = call,
                          .approve = "a",
                          .deny = "d" };
        cr_assert_eq(aj_approval_write(root, &ap), 0);
        size = file_size(AJ_RUN_FILE_APPROVAL);
        cr_expect_lt(size, (off_t)(2 * agent_bytes + 4096), "approval.json is %lld bytes for %zu of the agent's",
                     (long long)size, agent_bytes);
}

/* An incident of another version (or written by hand): absent members are fine, numbers
 * are shown as written, unknown members stay in the document. */
Test(record_alerts, incident_forward_compatible)
{
        write_text(AJ_RUN_FILE_INCIDENT, "{\"cap\":\"tokens\",\"limit\":5000,\"value\":5100,\"trigger\":\"x\"}");
        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        cr_assert_eq(aj_incident_read(root, &inc, NULL), 0);
        cr_assert_null(inc->run);
        cr_assert_null(inc->last_events);
        cr_assert_eq(inc->value, 5100);
        cr_assert(json_is_integer(inc->shown.value), "an integer stays one when shown");
        cr_assert_str_eq(json_string_value(json_object_get(inc->doc, "trigger")), "x");
        AjIncident *none = NULL;
        aj_rm_rf(root);
        cr_assert_eq(mkdir(root, 0700), 0);
        cr_assert_eq(aj_incident_read(root, &none, NULL), -ENOENT, "a run that never breached");
}

static void expect_malformed(const char *name, const char *text, const char *want,
                             int (*read)(const char *, void **, AjError *))
{
        char path[300];
        cr_assert_eq(aj_run_file_path(root, name, path, sizeof(path)), 0);
        write_text(name, text);
        void *rec = NULL;
        _cleanup_(aj_error_clear) AjError e = {};
        cr_assert_eq(read(root, &rec, &e), -EBADMSG, "%s", text);
        cr_assert_null(rec);
        cr_assert_not_null(e.message, "%s", text);
        cr_assert_not_null(strstr(e.message, path), "names the file: %s", e.message);
        cr_assert_not_null(strstr(e.message, want), "%s: %s", text, e.message);
}

static int read_incident(const char *dir, void **ret, AjError *e)
{
        return aj_incident_read(dir, (AjIncident **)ret, e);
}
static int read_approval(const char *dir, void **ret, AjError *e)
{
        return aj_approval_read(dir, (AjApproval **)ret, e);
}

Test(record_alerts, incident_malformed_names_the_file_and_member)
{
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"cap\":5}", "\"cap\" is not a string", read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"limit\":\"5000\"}", "\"limit\" is not a number", read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"value\":[]}", "\"value\" is not a number", read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"last_events\":{}}", "\"last_events\" is not an array",
                         read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"request\":\"op\"}", "\"request\" is not an object or null",
                         read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "[]", "not a JSON object", read_incident);
        expect_malformed(AJ_RUN_FILE_INCIDENT, "{\"cap\":", "not valid JSON", read_incident);
}

Test(record_alerts, approval_of_a_tool_call)
{
        json_auto_t *call = json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "a-1", "gen_ai.tool.name", "refund.issue");
        AjApproval in = { .subject = AJ_APPROVAL_TOOL,
                          .run = "abcd00000001",
                          .name = "n",
                          .ts = "2026-01-01T00:00:03Z",
                          .call = call,
                          .approve = "agentjail approve abcd00000001 'a-1' --digest d",
                          .deny = "agentjail deny abcd00000001 'a-1' --reason TEXT" };
        cr_assert_eq(aj_approval_write(root, &in), 0);
        _cleanup_free_ char *text = file_compact(AJ_RUN_FILE_APPROVAL);
        cr_assert_str_eq(text,
                         "{\"kind\":\"approval\",\"run\":\"abcd00000001\",\"name\":\"n\",\"ts\":"
                         "\"2026-01-01T00:00:03Z\",\"call\":{\"gen_ai.tool.call.id\":\"a-1\",\"gen_ai.tool.name\":"
                         "\"refund.issue\"},\"approve\":\"agentjail approve abcd00000001 'a-1' --digest d\","
                         "\"deny\":\"agentjail deny abcd00000001 'a-1' --reason TEXT\"}");
        _cleanup_(aj_approval_freep) AjApproval *a = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_approval_read(root, &a, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_eq(a->subject, AJ_APPROVAL_TOOL);
        cr_assert(json_equal(a->call, call));
        cr_assert_str_eq(a->run, "abcd00000001");
        cr_assert_str_eq(a->approve, in.approve);
        cr_assert_str_eq(a->deny, in.deny);
        cr_assert_null(a->host);
        cr_assert_null(a->approve_always);

        AjApproval no_call = {
                .subject = AJ_APPROVAL_TOOL, .run = "r", .name = "n", .ts = "t", .approve = "a", .deny = "d"
        };
        cr_assert_eq(aj_approval_write(root, &no_call), -EINVAL, "a tool approval without its call");
}

/* The records the alert command reads on stdin, and an operator with cat or jq: the agent's
 * text in them carries nothing a terminal acts on or that reorders a line (a tool name with
 * U+202E, arguments with C1's CSI, DEL, a zero-width space), as events.jsonl does not: the
 * same JSON for a parser, those characters as \u escapes. */
Test(record_alerts, records_hold_no_terminal_controls)
{
        const char *name = "refund.\u202eissue", *arg = "\xc2\x9b"
                                                        "2J\x7f\u200bok \u00e9";
        json_auto_t *call = json_pack("{s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", "a-1", "gen_ai.tool.name", name,
                                      "gen_ai.tool.call.arguments", "cmd", arg);
        cr_assert_not_null(call);
        AjApproval in = { .subject = AJ_APPROVAL_TOOL,
                          .run = "abcd00000001",
                          .name = "n",
                          .ts = "2026-01-01T00:00:03Z",
                          .call = call,
                          .approve = "a",
                          .deny = "d" };
        json_auto_t *request = json_pack("{s:s}", "tool", name);
        json_auto_t *last = json_array();
        AjIncident inc = { .run = "abcd00000001",
                           .name = "n",
                           .ts = "t",
                           .cap = "tokens",
                           .request = request,
                           .action = "freeze",
                           .last_events = last };
        json_auto_t *run = json_pack("{s:s}", "name", name);
        cr_assert_eq(aj_approval_write(root, &in), 0);
        cr_assert_eq(aj_incident_write(root, &inc), 0);
        cr_assert_eq(aj_run_file_write_json(root, AJ_RUN_FILE_RUN, run), 0);
        const char *files[] = { AJ_RUN_FILE_APPROVAL, AJ_RUN_FILE_INCIDENT, AJ_RUN_FILE_RUN };
        for (size_t f = 0; f < 3; f++) {
                char path[300];
                _cleanup_free_ char *text = NULL;
                size_t len;
                cr_assert_eq(aj_run_file_path(root, files[f], path, sizeof(path)), 0);
                cr_assert_eq(aj_read_regular_file(path, 1 << 20, &text, &len), 0);
                cr_assert_null(strstr(text, "\xe2\x80\xae"), "%s: U+202E as it is: %s", files[f], text);
                cr_assert_null(strstr(text, "\xc2\x9b"), "%s: U+009B (CSI) as it is", files[f]);
                cr_assert_null(strchr(text, 0x7f), "%s: DEL as it is", files[f]);
                cr_assert_null(strstr(text, "\xe2\x80\x8b"), "%s: U+200B as it is", files[f]);
                cr_assert_not_null(strstr(text, "\\u202e"), "%s: U+202E escaped: %s", files[f], text);
                cr_assert_not_null(strstr(text, f == 0 ? "ok \xc3\xa9" : "issue"), "%s: the rest as it is", files[f]);
        }
        _cleanup_(aj_approval_freep) AjApproval *a = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_approval_read(root, &a, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert(json_equal(a->call, call), "the same JSON for a parser");
}

Test(record_alerts, approval_of_a_host)
{
        json_auto_t *host = json_pack("{s:s, s:s, s:s, s:i, s:s}", "kind", "net", "id", "net-3", "host",
                                      "registry.npmjs.org", "port", 443, "proto", "connect");
        AjApproval in = { .subject = AJ_APPROVAL_NET,
                          .run = "abcd00000001",
                          .name = "n",
                          .ts = "t",
                          .host = host,
                          .approve = "agentjail approve abcd00000001 net-3",
                          .deny = "agentjail deny abcd00000001 net-3",
                          .approve_always = "agentjail approve abcd00000001 net-3 --always" };
        cr_assert_eq(aj_approval_write(root, &in), 0);
        _cleanup_free_ char *text = file_compact(AJ_RUN_FILE_APPROVAL);
        cr_assert_not_null(strstr(text, "\"host\":{\"kind\":\"net\",\"id\":\"net-3\",\"host\":"
                                        "\"registry.npmjs.org\",\"port\":443,\"proto\":\"connect\"}"),
                           "%s", text);
        cr_assert_not_null(strstr(text, "\"approve_always\":\"agentjail approve abcd00000001 net-3 --always\""), "%s",
                           text);
        cr_assert_null(strstr(text, "\"call\""), "%s", text);
        _cleanup_(aj_approval_freep) AjApproval *a = NULL;
        cr_assert_eq(aj_approval_read(root, &a, NULL), 0);
        cr_assert_eq(a->subject, AJ_APPROVAL_NET);
        cr_assert(json_equal(a->host, host));
        cr_assert_str_eq(a->approve_always, in.approve_always);
        cr_assert_null(a->call);
}

Test(record_alerts, approval_malformed_names_the_file_and_member)
{
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"call\":[]}", "\"call\" is not an object", read_approval);
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"approve\":1,\"call\":{}}", "\"approve\" is not a string",
                         read_approval);
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"host\":{\"host\":\"h\",\"port\":70000}}",
                         "\"host.port\" is not an integer in [1, 65535]", read_approval);
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"host\":{\"port\":443}}", "\"host\" needs \"host\" and \"port\"",
                         read_approval);
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"run\":\"r\"}", "needs one of \"call\"", read_approval);
        expect_malformed(AJ_RUN_FILE_APPROVAL, "{\"call\":{},\"host\":{\"host\":\"h\",\"port\":1}}",
                         "needs one of \"call\"", read_approval);
        AjApproval *none = NULL;
        char path[300];
        cr_assert_eq(aj_run_file_path(root, AJ_RUN_FILE_APPROVAL, path, sizeof(path)), 0);
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(aj_approval_read(root, &none, NULL), -ENOENT);
}

/* The alert's output goes to alert.log, opened as the run's other records are: a FIFO in its
 * place (whoever can write the run directory) is refused at once, not waited on for a reader
 * with the supervisor held in open(2); a regular file gets the command's output. */
Test(record_alerts, alert_log_must_be_a_regular_file)
{
        write_text("incident.json", "{}\n");
        char log[300];
        cr_assert_eq(aj_run_file_path(root, "alert.log", log, sizeof(log)), 0);
        cr_assert_eq(mkfifo(log, 0600), 0);
        alarm(10); /* without the check, the open below never returns */
        int out = aj_alert_log_open(root);
        alarm(0);
        cr_assert_lt(out, 0, "a FIFO alert.log was opened");
        cr_assert_eq(unlink(log), 0);
        out = aj_alert_log_open(root);
        cr_assert_geq(out, 0, "%s", strerror(-out));
        AjAlert a = {};
        int r = aj_alert_start((char *[]){ "cat", NULL }, root, "0123456789ab", "breach", "incident.json", out,
                               5000000000ULL, &a);
        close(out);
        cr_assert_eq(r, 0, "%s", strerror(-r));
        siginfo_t si = {};
        cr_assert_eq(waitid(P_PIDFD, (id_t)a.pidfd, &si, WEXITED), 0);
        close(a.pidfd);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(log, 4096, &text, &len), 0);
        cr_assert_str_eq(text, "{}\n");
        free(text);
}

/* The alert runs on the host as the operator, started by the supervisor, whose directory is
 * where `agentjail run` was started: the workspace, as a rule, which the agent writes. There
 * a `git status` in an alert script read the agent's .git/config (core.fsmonitor: a command
 * git runs). It starts in "/", as the rollback handler does. */
Test(record_alerts, alert_starts_outside_the_workspace)
{
        write_text("approval.json", "{}\n");
        char here[300], log[300];
        snprintf(here, sizeof(here), "%s/ws", root);
        cr_assert_eq(mkdir(here, 0700), 0);
        int saved = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(saved, 0);
        cr_assert_eq(chdir(here), 0);
        AjAlert a = {};
        int out = aj_alert_log_open(root);
        cr_assert_geq(out, 0, "%s", strerror(-out));
        int r = aj_alert_start((char *[]){ "/bin/sh", "-c", "pwd", NULL }, root, "0123456789ab", "approval",
                               "approval.json", out, 5000000000ULL, &a);
        close(out);
        cr_assert_eq(fchdir(saved), 0);
        close(saved);
        cr_assert_eq(r, 0, "%s", strerror(-r));
        siginfo_t si = {};
        cr_assert_eq(waitid(P_PIDFD, (id_t)a.pidfd, &si, WEXITED), 0);
        close(a.pidfd);
        cr_assert_eq(aj_run_file_path(root, "alert.log", log, sizeof(log)), 0);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(log, 4096, &text, &len), 0);
        cr_expect_str_eq(text, "/\n", "the alert's directory");
}
