/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run.h"
#include "cli/verb.h"
#include "cli/verbs.h"
#include "events.h"
#include "jansson-budget.h"
#include "util/fd.h"
#include "util/macros.h"

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })

Test(cli, run_minimal)
{
        char **argv = ARGV("run", "--", "python3", "agent.py");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(4, argv, &o, &err), 0);
        cr_assert_null(o.profile);
        cr_assert_str_eq(o.argv[0], "python3");
        cr_assert_str_eq(o.argv[1], "agent.py");
        cr_assert_null(o.argv[2]);
        aj_cli_run_options_done(&o);
}

Test(cli, run_all_options)
{
        char **argv = ARGV("run", "-p", "strict", "--name", "triage-42", "--ro", "/data", "--rw", "out:/out", "--json",
                           "-v", "--", "sh", "-c", "echo hi");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(15, argv, &o, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(o.profile, "strict");
        cr_assert_str_eq(o.name, "triage-42");
        cr_assert_eq(o.extra_ro.n, 1);
        cr_assert_str_eq(o.extra_ro.items[0].source, "/data");
        cr_assert_str_eq(o.extra_ro.items[0].target, "/data");
        cr_assert_eq(o.extra_rw.n, 1);
        cr_assert_str_eq(o.extra_rw.items[0].source, "out");
        cr_assert_str_eq(o.extra_rw.items[0].target, "/out");
        cr_assert(o.json);
        cr_assert_eq(o.verbose, 1);
        cr_assert_str_eq(o.argv[0], "sh");
        cr_assert_str_eq(o.argv[2], "echo hi");
        aj_cli_run_options_done(&o);
}

Test(cli, command_options_are_not_ours)
{
        /* Without "--", parsing stops at the command; its -p belongs to it. */
        char **argv = ARGV("run", "ls", "-p", "x");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(4, argv, &o, &err), 0);
        cr_assert_null(o.profile);
        cr_assert_str_eq(o.argv[0], "ls");
        cr_assert_str_eq(o.argv[1], "-p");
        aj_cli_run_options_done(&o);
}

static void expect_error(char **argv, int argc, const char *msg)
{
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(argc, argv, &o, &err), -EINVAL);
        cr_assert_not_null(err.message);
        cr_assert_str_eq(err.message, msg);
}

Test(cli, errors)
{
        expect_error(ARGV("run"), 1, "no command given (usage: agentjail run [OPTIONS] -- CMD [ARG...])");
        expect_error(ARGV("run", "--"), 2, "no command given (usage: agentjail run [OPTIONS] -- CMD [ARG...])");
        expect_error(ARGV("run", "--bogus", "--", "true"), 4, "unknown option '--bogus' (see 'agentjail run --help')");
        expect_error(ARGV("run", "-p"), 2, "option '-p' needs a value");
        expect_error(ARGV("run", "--ro", "a:relative", "--", "true"), 5,
                     "--ro: 'a:relative': the destination inside the jail must be absolute");
        expect_error(ARGV("run", "--rw", "a:/b:/c", "--", "true"), 5, "--rw: 'a:/b:/c': expected PATH or SRC:DEST");
        expect_error(ARGV("run", "--name", "a/b", "--", "true"), 5,
                     "--name: 'a/b': use 1 to 64 printable characters (UTF-8) and no '/'");
        /* A name every listing shows: no escape sequence, no C1 control, no invalid UTF-8. */
        expect_error(ARGV("run", "--name", "a\x1b]0;T\x07", "--", "true"), 5,
                     "--name: 'a\\x1b]0;T\\x07': use 1 to 64 printable characters (UTF-8) and no '/'");
        expect_error(ARGV("run", "--name",
                          "a\xc2\x9b"
                          "2J",
                          "--", "true"),
                     5, "--name: 'a\\u009b2J': use 1 to 64 printable characters (UTF-8) and no '/'");
        expect_error(ARGV("run", "--name", "a\xff", "--", "true"), 5,
                     "--name: 'a\\xff': use 1 to 64 printable characters (UTF-8) and no '/'");
}

Test(cli, help)
{
        char **argv = ARGV("run", "--help");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(2, argv, &o, &err), 1);
        cr_assert(strstr(aj_cli_run_help(), "127"));
        cr_assert(strstr(aj_cli_run_help(), "126"));
        cr_assert(strstr(aj_cli_run_help(), "125"));
        cr_assert(strstr(aj_cli_run_help(), "128+N"));
}

Test(cli, caps_and_allow_net)
{
        char **argv = ARGV("run", "--cap", "tokens=50000", "--cap", "cost_usd=2", "--allow-net", "github.com:443", "--",
                           "true");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(9, argv, &o, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(o.caps[0], "tokens=50000");
        cr_assert_str_eq(o.caps[1], "cost_usd=2");
        cr_assert_null(o.caps[2]);
        cr_assert_str_eq(o.allow_net[0], "github.com:443");
        cr_assert_null(o.allow_net[1]);
        aj_cli_run_options_done(&o);

        expect_error(ARGV("run", "--cap", "tokens", "--", "true"), 5,
                     "--cap: 'tokens': expected KEY=VALUE, e.g. tokens=50000");
        expect_error(ARGV("run", "--allow-net", "", "--", "true"), 5, "--allow-net: empty entry");

        char **argv2 = ARGV("run", "--ask-net", "*", "--ask-net", "*.npmjs.org", "--", "npm");
        cr_assert_eq(aj_cli_parse_run(7, argv2, &o, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(o.ask_net[0], "*");
        cr_assert_str_eq(o.ask_net[1], "*.npmjs.org");
        cr_assert_null(o.ask_net[2]);
        aj_cli_run_options_done(&o);
        expect_error(ARGV("run", "--ask-net", "", "--", "true"), 5, "--ask-net: empty pattern");
}

Test(cli, llm_providers)
{
        char **argv = ARGV("run", "--llm", "anthropic", "--llm", "openai", "--", "true");
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(7, argv, &o, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(o.llm[0], "anthropic");
        cr_assert_str_eq(o.llm[1], "openai");
        cr_assert_null(o.llm[2]);
        aj_cli_run_options_done(&o);
        cr_assert(strstr(aj_cli_run_help(), "--llm NAME"));

        expect_error(ARGV("run", "--llm", "", "--", "true"), 5,
                     "--llm: expected a provider name, e.g. --llm anthropic");
}

Test(cli, tty_options)
{
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_cli_parse_run(3, ARGV("run", "--", "sh"), &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_AUTO, "a pty when stdin is a terminal, by default");
        aj_cli_run_options_done(&o);
        cr_assert_eq(aj_cli_parse_run(4, ARGV("run", "-t", "--", "sh"), &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_ALWAYS);
        aj_cli_run_options_done(&o);
        cr_assert_eq(aj_cli_parse_run(4, ARGV("run", "--tty", "--", "sh"), &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_ALWAYS);
        aj_cli_run_options_done(&o);
        cr_assert_eq(aj_cli_parse_run(4, ARGV("run", "--no-tty", "--", "sh"), &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_NEVER);
        aj_cli_run_options_done(&o);
        /* The last one given wins, as with other flags. */
        cr_assert_eq(aj_cli_parse_run(5, ARGV("run", "--no-tty", "-t", "--", "sh"), &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_ALWAYS);
        aj_cli_run_options_done(&o);
        /* The command's own -t is not ours. (o.argv points into argv: it must outlive the assertion.) */
        char **ssh = ARGV("run", "ssh", "-t", "host");
        cr_assert_eq(aj_cli_parse_run(4, ssh, &o, &err), 0);
        cr_assert_eq(o.tty, AJ_TTY_AUTO);
        cr_assert_str_eq(o.argv[1], "-t");
        aj_cli_run_options_done(&o);
}

/* The operator's verbs parse their own options: usage errors are exit 2 before any run is
 * looked up, --help is 0; an option of another verb is unknown here. */
#define VERB(fn, ...) fn((int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)), ARGV(__VA_ARGS__))

Test(cli, verbs_parse_their_own_options)
{
        cr_assert_eq(VERB(aj_cmd_ps, "ps", "--help"), 0);
        cr_assert_eq(VERB(aj_cmd_ps, "ps", "--type", "net"), 2, "--type is logs'");
        cr_assert_eq(VERB(aj_cmd_ps, "ps", "extra"), 2);
        cr_assert_eq(VERB(aj_cmd_inspect, "inspect"), 2, "RUN is required");
        cr_assert_eq(VERB(aj_cmd_inspect, "inspect", "-a", "x"), 2);
        cr_assert_eq(VERB(aj_cmd_logs, "logs", "x", "--type", ""), 2);
        cr_assert_eq(VERB(aj_cmd_logs, "logs", "x", "--type"), 2, "a value is missing");
        cr_assert_eq(VERB(aj_cmd_logs, "logs", "-h"), 0);
        cr_assert_eq(VERB(aj_cmd_freeze, "freeze", "x", "--raise", "tokens=1"), 2, "only thaw raises");
        cr_assert_eq(VERB(aj_cmd_thaw, "thaw", "x", "--raise", "bad"), 2);
        cr_assert_eq(VERB(aj_cmd_thaw, "thaw", "x", "--raise", "a=1", "--raise", "a=2"), 2, "a key twice");
        cr_assert_eq(VERB(aj_cmd_thaw, "thaw", "x", "--stop", "0"), 2, "stops are numbered from 1");
        cr_assert_eq(VERB(aj_cmd_thaw, "thaw", "x", "--stop", "two"), 2);
        cr_assert_eq(VERB(aj_cmd_thaw, "thaw", "--help"), 0);
        cr_assert_eq(VERB(aj_cmd_approve, "approve", "x"), 2, "CALL is required");
        cr_assert_eq(VERB(aj_cmd_approve, "approve", "x", "c", "--digest", "12"), 2);
        cr_assert_eq(VERB(aj_cmd_approve, "approve", "x", "c", "--reason", "r"), 2, "--reason is deny's");
        cr_assert_eq(VERB(aj_cmd_deny, "deny", "x", "c", "--reason", ""), 2);
        cr_assert_eq(VERB(aj_cmd_diff, "diff", "x", "--force"), 2, "--force is commit's");
        cr_assert_eq(VERB(aj_cmd_commit, "commit", "x", "--patch"), 2, "--patch is diff's");
        cr_assert_eq(VERB(aj_cmd_discard, "discard", "--help"), 0);
        cr_assert_eq(VERB(aj_cmd_rollback, "rollback", "x", "y"), 2);
        cr_assert_eq(VERB(aj_cmd_quarantine, "quarantine", "frobnicate", "x"), 2);
        cr_assert_eq(VERB(aj_cmd_quarantine, "quarantine", "show"), 2, "show needs RUN");
        cr_assert_eq(VERB(aj_cmd_quarantine, "quarantine", "list", "x"), 2);
}

/* `ps` shows a dead run's leftovers held by a live run of its id as "in use" (runs.h
 * AJ_RUN_REMAINS_IN_USE_TEXT, --json "in_use"): its help says what that means. */
Test(cli, ps_help_names_in_use, .init = cr_redirect_stdout)
{
        cr_assert_eq(VERB(aj_cmd_ps, "ps", "--help"), 0);
        fflush(stdout);
        static char text[1 << 14];
        size_t len = fread(text, 1, sizeof(text) - 1, cr_get_redirected_stdout());
        text[len] = 0;
        cr_expect_not_null(strstr(text, "in use: held by a live run of the same id"), "%s", text);
        cr_expect_not_null(strstr(text, "\"in_use\""), "%s", text);
}

/* An error message names what the agent chose (a file in its workspace, a tool, the
 * supervisor's reply quoting either): shown escaped (util/format.h), so it cannot move the
 * cursor, set a window title, write the clipboard (OSC 52), forge a line or flip the text's
 * direction. Printable UTF-8 stays as it is. */
#define HOSTILE                                             \
        "a\x1b]0;OWNED\x07 \x1b]52;c;ZWNobw==\x07 \xc2\x9b" \
        "2J \xe2\x80\xae"                                   \
        "txt \xe2\x80\xa8 \xff\xfe caf\xc3\xa9\nagentjail diff: forged"
#define HOSTILE_SHOWN                                                                                                   \
        "a\\x1b]0;OWNED\\x07 \\x1b]52;c;ZWNobw==\\x07 \\u009b2J \\u202etxt \\u2028 \\xff\\xfe caf\xc3\xa9\\nagentjail " \
        "diff: forged"

Test(cli, fail_escapes_the_message, .init = cr_redirect_stderr)
{
        cli_fail("diff", "run %s: cannot open '%s'", "r1", HOSTILE);
        fflush(stderr);
        cr_assert_stderr_eq_str("agentjail diff: run r1: cannot open '" HOSTILE_SHOWN "'\n");
}

Test(cli, usage_error_escapes_the_message_not_the_usage, .init = cr_redirect_stderr)
{
        cr_assert_eq(cli_usage_error("approve", "agentjail approve RUN CALL", "unknown call '%s'", HOSTILE),
                     CLI_EXIT_USAGE);
        fflush(stderr);
        cr_assert_stderr_eq_str("agentjail approve: unknown call '" HOSTILE_SHOWN "'\n"
                                "usage: agentjail approve RUN CALL\n");
}

/* `levels` arrays around v, as JSON text. */
static char *nested_arrays(unsigned levels, const char *v)
{
        char *s = malloc(2 * levels + strlen(v) + 1);
        cr_assert_not_null(s);
        memset(s, '[', levels);
        strcpy(s + levels, v);
        memset(s + levels + strlen(v), ']', levels);
        s[2 * levels + strlen(v)] = 0;
        return s;
}

/* --json prints the agent's values (quarantine show's request and last events, inspect's
 * last events, a rollback's undo records): nested 62 deep in a tool call's arguments and
 * indented at every level, they were 57 times the compact text. The document's own members
 * stay laid out; the text is the same JSON. */
Test(cli, json_output_grows_with_the_value_not_its_depth, .init = cr_redirect_stdout)
{
        _cleanup_free_ char *deep = nested_arrays(62, "0");
        json_auto_t *args = json_loads(deep, 0, NULL);
        cr_assert_not_null(args);
        json_auto_t *doc = json_pack("{s:s, s:s, s:{s:s, s:O}, s:[{s:i, s:s, s:O}]}", "run", "r1", "cap", "tool_calls",
                                     "request", "op", "tool", "args", args, "last_events", "seq", 7, "type",
                                     "tool.request", "gen_ai.tool.call.arguments", args);
        cr_assert_not_null(doc);
        cr_assert_eq(cli_print_json(doc), 0);
        fflush(stdout);
        FILE *out = cr_get_redirected_stdout();
        static char text[1 << 16];
        size_t len = fread(text, 1, sizeof(text) - 1, out);
        text[len] = 0;
        _cleanup_free_ char *compact = json_dumps(doc, JSON_COMPACT);
        cr_expect_leq(len, strlen(compact) * 3 / 2 + 256, "%zu bytes printed for %zu compact", len, strlen(compact));
        json_auto_t *back = json_loads(text, 0, NULL);
        cr_expect(json_equal(back, doc), "the same JSON: %s", text);
        cr_expect_not_null(strstr(text, "\n  \"request\": {\n    \"op\": \"tool\",\n"), "laid out: %s", text);
}

/* The agent fills its tool results' undo records with many tiny values: the rollback
 * listing (text and --json) holds each record as its text, parsed one at a time, not the
 * DOM of them all (20 to 60 times the text: 1.2 GB for a 64 MiB chain). */
Test(cli, rollback_lists_a_chain_of_many_undo_values)
{
        char root[] = "/tmp/aj-cli-rb-XXXXXX", dir[128], path[160];
        cr_assert_not_null(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000001", root);
        cr_assert_eq(aj_mkdir_p(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/run.json", dir);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("{\"id\":\"aaaa00000001\",\"name\":\"flood\",\"started\":\"2026-01-01T00:00:00Z\",\"status\":\"exited\","
              "\"supervisor_pid\":1,\"profile\":{\"name\":\"default\"}}\n",
              f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        cr_assert_not_null(f = fopen(path, "w"));
        enum { CALLS = 400, VALUES = 20000 };
        for (int i = 1; i <= CALLS; i++) {
                fprintf(f,
                        "{\"seq\":%d,\"type\":\"tool.request\",\"gen_ai.tool.call.id\":\"c-%d\","
                        "\"gen_ai.tool.name\":\"t\",\"gen_ai.tool.call.arguments\":{\"id\":%d}}\n"
                        "{\"seq\":%d,\"type\":\"tool.verdict\",\"gen_ai.tool.call.id\":\"c-%d\",\"verdict\":\"allow\"}\n"
                        "{\"seq\":%d,\"type\":\"tool.result\",\"gen_ai.tool.call.id\":\"c-%d\",\"status\":\"ok\","
                        "\"undo\":{\"tool\":\"t.undo\",\"a\":[0",
                        3 * i - 2, i, i, 3 * i - 1, i, 3 * i, i);
                for (int k = 1; k < VALUES; k++)
                        fputs(",0", f);
                fputs("]}}\n", f);
        }
        fclose(f);
        cr_assert_eq(setenv("AGENTJAIL_STATE_DIR", root, 1), 0);
        char out[160], out_json[160];
        snprintf(out, sizeof(out), "%s/list.txt", root);
        snprintf(out_json, sizeof(out_json), "%s/list.json", root);

        cr_assert_not_null(freopen(out, "w", stdout));
        jansson_budget_set(128 << 20);
        int status = VERB(aj_cmd_rollback, "rollback", "aaaa00000001");
        fflush(stdout);
        cr_assert_not_null(freopen(out_json, "w", stdout));
        int status_json = VERB(aj_cmd_rollback, "rollback", "aaaa00000001", "--json");
        fflush(stdout);
        jansson_budget_clear();
        cr_expect_eq(status, 0, "rollback with jansson holding at most 128 MiB");
        cr_expect_eq(status_json, 0, "rollback --json with jansson holding at most 128 MiB");

        _cleanup_free_ char *text = NULL, *doc_text = NULL;
        size_t len = 0, doc_len = 0;
        int r = aj_read_file(out, 1 << 20, &text, &len), r_json = aj_read_file(out_json, 64 << 20, &doc_text, &doc_len);
        aj_rm_rf(root);
        cr_assert_eq(r, 0);
        cr_expect_not_null(strstr(text, "400 with an undo record"), "%.300s", text);
        cr_expect_not_null(strstr(text, "  c-400 "), "the newest first");
        cr_expect_not_null(strstr(text, "{\"tool\":\"t.undo\",\"a\":[0,0,0"), "each record shown, cut");
        cr_assert_eq(r_json, 0, "--json wrote a document");
        cr_expect_gt(doc_len, (size_t)CALLS * VALUES * 3, "every value is written");
        cr_expect_not_null(strstr(doc_text, "\"undo\": {\"tool\": \"t.undo\", \"a\": [0, 0"),
                           "the records as values, not strings");
        cr_expect_not_null(strstr(doc_text, "\"gen_ai.tool.call.arguments\": {\"id\": 400}"));
}

/* An agent can fill its run's chain with tiny JSON values (undo records of 20,000 zeros a
 * line, 64 MiB of them by default): `logs --otlp` wraps each value in an object of its own,
 * some 175 times the chain's bytes when the records are held together (over 6 GB for a
 * full chain). They are printed one at a time: this chain of 8 MiB (4 million values, held
 * whole over 1.3 GB) is exported with jansson holding at most 128 MiB at once. */
Test(cli, logs_otlp_streams_a_chain_of_many_values)
{
        char root[] = "/tmp/aj-cli-otlp-XXXXXX", dir[128], path[160];
        cr_assert_not_null(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000001", root);
        cr_assert_eq(aj_mkdir_p(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/run.json", dir);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("{\"id\":\"aaaa00000001\",\"name\":\"flood\",\"started\":\"2026-01-01T00:00:00Z\",\"status\":\"exited\","
              "\"supervisor_pid\":1,\"profile\":{\"name\":\"default\"}}\n",
              f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        cr_assert_not_null(f = fopen(path, "w"));
        enum { LINES = 200, VALUES = 20000 };
        for (int i = 1; i <= LINES; i++) {
                fprintf(f,
                        "{\"seq\":%d,\"ts\":\"2026-01-01T00:00:00.000000000Z\",\"type\":\"tool.result\",\"undo\":{\"a\":[0",
                        i);
                for (int k = 1; k < VALUES; k++)
                        fputs(",0", f);
                fputs("]}}\n", f);
        }
        fclose(f);
        cr_assert_eq(setenv("AGENTJAIL_STATE_DIR", root, 1), 0);
        snprintf(path, sizeof(path), "%s/otlp.json", root);
        cr_assert_not_null(freopen(path, "w", stdout));

        jansson_budget_set(128 << 20);
        int status = VERB(aj_cmd_logs, "logs", "aaaa00000001", "--otlp");
        fflush(stdout);
        jansson_budget_clear();
        cr_expect_eq(status, 0, "logs --otlp with jansson holding at most 128 MiB");

        /* The request is whole: its head, LINES records, its end (not parsed whole here: its
         * DOM is what does not fit). */
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_expect_gt(st.st_size, (off_t)LINES * VALUES * 17, "every value is exported");
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, (size_t)st.st_size + 1, &text, &len), 0);
        cr_expect(strncmp(text, "{\"resourceLogs\":[{\"resource\":", 29) == 0, "%.60s", text);
        cr_expect(len > 7 && streq(text + len - 7, "]}]}]}\n"), "%s", text + len - 7);
        size_t records = 0;
        for (const char *p = text; (p = strstr(p, "\"eventName\":\"tool.result\"")); p++)
                records++;
        cr_expect_eq(records, LINES);
        aj_rm_rf(root);
}

/* An approval-gated undo is approved on the command line (`rollback --apply --approve
 * CALL`) from the plan: what the operator approves must be there whole. The agent orders its
 * undo record's members, so a padded first one ("note": 400 spaces) pushed what the handler
 * would do past the plan's cut (300 characters), and the held step showed no undo at all. */
Test(cli, rollback_plan_shows_a_gated_undo_whole)
{
        char root[] = "/tmp/aj-cli-rbg-XXXXXX", dir[128], path[160];
        cr_assert_not_null(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000002", root);
        cr_assert_eq(aj_mkdir_p(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/run.json", dir);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("{\"id\":\"aaaa00000002\",\"name\":\"gated\",\"started\":\"2026-01-01T00:00:00Z\",\"status\":\"exited\","
              "\"supervisor_pid\":1,\"profile\":{\"name\":\"default\",\"resolved\":{\"approvals\":{\"tools\":"
              "[\"crm.*\"]},\"rollback\":{\"exec\":[\"/bin/true\"]}}}}\n",
              f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        AjEventLog *log = NULL;
        cr_assert_eq(aj_events_open(path, "aaaa00000002", &log), 0);
        char pad[401];
        memset(pad, ' ', 400);
        pad[400] = 0;
        cr_assert_eq(aj_events_emit(log, "tool.request",
                                    json_pack("{s:s, s:s, s:{s:i}}", "gen_ai.tool.call.id", "c-1", "gen_ai.tool.name",
                                              "crm.create", "gen_ai.tool.call.arguments", "id", 1)),
                     0);
        cr_assert_eq(aj_events_emit(log, "tool.verdict",
                                    json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "c-1", "verdict", "allow")),
                     0);
        cr_assert_eq(aj_events_emit(log, "tool.result",
                                    json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:b}}}", "gen_ai.tool.call.id", "c-1",
                                              "status", "ok", "undo", "note", pad, "tool", "crm.drop_all_tables",
                                              "arguments", "confirm", 1)),
                     0);
        aj_events_close(log);
        cr_assert_eq(setenv("AGENTJAIL_STATE_DIR", root, 1), 0);
        snprintf(path, sizeof(path), "%s/plan.txt", root);
        cr_assert_not_null(freopen(path, "w", stdout));
        int status = VERB(aj_cmd_rollback, "rollback", "aaaa00000002", "--apply", "--dry-run");
        fflush(stdout);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = aj_read_file(path, 1 << 20, &text, &len);
        aj_rm_rf(root);
        cr_assert_eq(r, 0);
        cr_expect_eq(status, 0, "a dry run (%s)", text);
        cr_expect_not_null(strstr(text, "held"), "the step is held: %s", text);
        cr_expect_not_null(strstr(text, "crm.drop_all_tables"), "the gated undo, whole: %s", text);
}
