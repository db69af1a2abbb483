/* SPDX-License-Identifier: Apache-2.0 */
/* Agents' hook events <-> broker messages (src/agent-hooks.c), and `meter hook`'s arguments. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-hooks.h"
#include "cli/meter-hook.h"

#define PRE_BASH                                                                                              \
        "{\"session_id\": \"s1\", \"transcript_path\": \"/home/agent/.claude/t.jsonl\", \"cwd\": \"/work\", " \
        "\"permission_mode\": \"default\", \"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\", "    \
        "\"tool_input\": {\"command\": \"rm -rf build\", \"description\": \"clean\"}, \"tool_use_id\": "      \
        "\"toolu_01ABC\"}"

static AjHookEvent parse_ok(AjAgentKind agent, const char *text)
{
        AjHookEvent ev;
        AjError e = {};
        int r = aj_hook_event_parse(agent, text, strlen(text), &ev, &e);
        cr_assert_eq(r, 0, "parse: %s", aj_error_text(&e, r));
        aj_error_clear(&e);
        return ev;
}

static void parse_fails(AjAgentKind agent, const char *text, int err, const char *msg)
{
        AjHookEvent ev;
        AjError e = {};
        int r = aj_hook_event_parse(agent, text, strlen(text), &ev, &e);
        cr_expect_eq(r, err, "%s: got %d (%s)", text, r, aj_error_text(&e, r));
        cr_expect(e.message && strstr(e.message, msg), "%s: got \"%s\", want \"%s\"", text, e.message ?: "", msg);
        aj_error_clear(&e);
}

static json_t *loads(const char *s)
{
        json_t *v = json_loads(s, 0, NULL);
        cr_assert(v, "not JSON: %s", s ?: "(null)");
        return v;
}

/* The answer's stdout as hookSpecificOutput's decision and reason (Claude Code, Codex). */
static void expect_decision(const AjHookAnswer *a, const char *decision, const char *reason_part)
{
        cr_assert_eq(a->status, 0);
        cr_assert_null(a->err);
        json_t *doc = loads(a->out);
        json_t *h = json_object_get(doc, "hookSpecificOutput");
        cr_expect_str_eq(json_string_value(json_object_get(h, "hookEventName")), "PreToolUse");
        cr_expect_str_eq(json_string_value(json_object_get(h, "permissionDecision")), decision);
        const char *reason = json_string_value(json_object_get(h, "permissionDecisionReason"));
        cr_expect(reason && strstr(reason, reason_part), "reason \"%s\" lacks \"%s\"", reason ?: "", reason_part);
        json_decref(doc);
}

Test(agent_hooks, names)
{
        AjAgentKind a;
        cr_expect_eq(aj_agent_from_name("claude-code", &a), 0);
        cr_expect_eq(a, AJ_AGENT_CLAUDE_CODE);
        cr_expect_eq(aj_agent_from_name("gemini", &a), 0);
        cr_expect_eq(a, AJ_AGENT_GEMINI);
        cr_expect_eq(aj_agent_from_name("codex", &a), 0);
        cr_expect_eq(aj_agent_from_name("claude", &a), -EINVAL);
        cr_expect_eq(aj_agent_from_name(NULL, &a), -EINVAL);
        cr_expect_str_eq(aj_hook_settings_path(AJ_AGENT_CLAUDE_CODE), "/etc/claude-code/managed-settings.json");
        cr_expect_null(aj_hook_settings_path(AJ_AGENT_GEMINI));
}

Test(agent_hooks, pre_tool_use_request)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        cr_expect_eq(ev.kind, AJ_HOOK_EVENT_PRE);
        cr_expect_str_eq(ev.tool_name, "claude.Bash");
        cr_expect_str_eq(ev.call_id, "toolu_01ABC");
        cr_expect_not(ev.shortened);
        char *line = NULL;
        cr_assert_eq(aj_hook_event_request(&ev, 42, &line), 0);
        json_t *req = loads(line);
        json_t *want = loads("{\"id\": 42, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"claude.Bash\", "
                             "\"gen_ai.tool.call.id\": \"toolu_01ABC\", \"gen_ai.tool.call.arguments\": "
                             "{\"command\": \"rm -rf build\", \"description\": \"clean\"}}");
        cr_expect(json_equal(req, want), "request: %s", line);
        cr_expect_null(strchr(line, '\n'));
        json_decref(req);
        json_decref(want);
        free(line);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, pre_without_call_id_lets_the_broker_assign_one)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": "
                                                        "\"mcp__fs__read\", \"tool_input\": {}}");
        cr_expect_null(ev.call_id);
        cr_expect_str_eq(ev.tool_name, "claude.mcp__fs__read");
        char *line = NULL;
        cr_assert_eq(aj_hook_event_request(&ev, 1, &line), 0);
        cr_expect_null(strstr(line, "gen_ai.tool.call.id"));
        free(line);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, verdict_allowed)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"allow\", "
                                          "\"gen_ai.tool.call.id\": \"toolu_01ABC\", \"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "allow", "claude.Bash allowed");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, verdict_denied)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": "
                                          "\"tool \\\"claude.Bash\\\" is denied by tools.deny \\\"claude.Bash\\\"\", "
                                          "\"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "deny", "is denied by tools.deny \"claude.Bash\"");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, held_then_approved)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"allow\", "
                                          "\"approval\": {\"decision\": \"approved\", \"by\": \"root\"}, \"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "allow", "approved by root");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, held_then_denied_by_an_operator_or_the_brokers_timeout)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": "
                                          "\"no approval within 15m\", \"approval\": {\"decision\": \"timeout\", "
                                          "\"by\": \"timeout\"}, \"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "deny", "no approval within 15m");
        aj_hook_answer_done(&a);
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": "
                                          "\"denied by root: not today\", \"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "deny", "denied by root: not today");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

/* The adapter's own wait ran out first: deny by default, ask when configured. */
Test(agent_hooks, held_past_the_hooks_wait)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_timeout(&ev, AJ_HOOK_ON_TIMEOUT_DENY, 590, &a), 0);
        expect_decision(&a, "deny", "no decision within 590s");
        aj_hook_answer_done(&a);
        cr_assert_eq(aj_hook_answer_timeout(&ev, AJ_HOOK_ON_TIMEOUT_ASK, 590, &a), 0);
        expect_decision(&a, "ask", "asking here instead");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, breach_denies_with_the_reason)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"breach\", \"reason\": "
                                          "\"tool_calls: 4 calls (limit 3)\", \"cap\": \"tool_calls\", \"limit\": 3, "
                                          "\"value\": 4, \"usage\": {}}",
                                          7, &a),
                     0);
        expect_decision(&a, "deny", "would cross a cap: tool_calls: 4 calls (limit 3)");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

/* Whatever is not a verdict for this request refuses the call: exit 2, reason on stderr. */
Test(agent_hooks, bad_replies_fail_closed)
{
        static const char *const replies[] = {
                "",
                "not json",
                "[1]",
                "{\"id\": null, \"v\": 1, \"ok\": false, \"error\": {\"code\": \"internal\", \"message\": \"log full\"}}",
                "{\"id\": 8, \"v\": 1, \"ok\": true, \"verdict\": \"allow\"}",
                "{\"id\": \"7\", \"v\": 1, \"ok\": true, \"verdict\": \"allow\"}",
                "{\"id\": 7, \"v\": 1, \"ok\": true}",
                "{\"id\": 7, \"v\": 1, \"ok\": true, \"verdict\": \"maybe\"}",
                "{\"id\": 7, \"v\": 1, \"verdict\": \"allow\"}",
        };
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
                AjHookAnswer a = {};
                cr_assert_eq(aj_hook_answer_reply(&ev, replies[i], 7, &a), 0);
                cr_expect_eq(a.status, 2, "reply %zu", i);
                cr_expect_null(a.out, "reply %zu", i);
                cr_expect(a.err && strstr(a.err, "the tool call is refused"), "reply %zu: %s", i, a.err ?: "");
                aj_hook_answer_done(&a);
        }
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev, replies[3], 7, &a), 0);
        cr_expect(strstr(a.err, "internal: log full"), "%s", a.err);
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, post_tool_use_reports_the_result)
{
        static const struct {
                const char *event, *status;
        } cases[] = {
                { "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"Write\", \"tool_input\": {}, "
                  "\"tool_use_id\": \"t1\", \"tool_response\": {\"filePath\": \"/w/a\", \"success\": true}}",
                  "ok" },
                { "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"Write\", \"tool_input\": {}, "
                  "\"tool_use_id\": \"t1\", \"tool_response\": {\"success\": false}}",
                  "error" },
                { "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"Bash\", \"tool_use_id\": \"t1\", "
                  "\"tool_response\": {\"stdout\": \"\", \"stderr\": \"\", \"interrupted\": true}}",
                  "error" },
                { "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"mcp__x__y\", \"tool_use_id\": \"t1\", "
                  "\"tool_response\": {\"is_error\": true}}",
                  "error" },
                { "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"Read\", \"tool_use_id\": \"t1\", "
                  "\"tool_response\": \"file text\"}",
                  "ok" },
                { "{\"hook_event_name\": \"PostToolUseFailure\", \"tool_name\": \"Bash\", \"tool_use_id\": \"t1\", "
                  "\"error\": \"exit 1\"}",
                  "error" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, cases[i].event);
                cr_expect_eq(ev.kind, AJ_HOOK_EVENT_POST);
                char *line = NULL, want[256];
                cr_assert_eq(aj_hook_event_request(&ev, 3, &line), 0);
                snprintf(want, sizeof(want),
                         "{\"id\": 3, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"t1\", "
                         "\"status\": \"%s\"}",
                         cases[i].status);
                json_t *got = loads(line), *w = loads(want);
                cr_expect(json_equal(got, w), "case %zu: %s", i, line);
                json_decref(got);
                json_decref(w);
                free(line);

                AjHookAnswer a = {};
                cr_assert_eq(aj_hook_answer_reply(&ev, "{\"id\": 3, \"v\": 1, \"ok\": true}", 3, &a), 0);
                cr_expect_eq(a.status, 0);
                cr_expect_null(a.out);
                aj_hook_answer_done(&a);
                /* A result the broker refused: a notice, nothing left to block. */
                cr_assert_eq(aj_hook_answer_reply(&ev,
                                                  "{\"id\": 3, \"v\": 1, \"ok\": false, \"error\": {\"code\": "
                                                  "\"rate_limited\", \"message\": \"too many\"}}",
                                                  3, &a),
                             0);
                cr_expect_eq(a.status, 1);
                cr_expect(a.err && strstr(a.err, "rate_limited: too many"));
                aj_hook_answer_done(&a);
                aj_hook_event_done(&ev);
        }
}

Test(agent_hooks, malformed_and_missing_fields)
{
        parse_fails(AJ_AGENT_CLAUDE_CODE, "", -EINVAL, "not JSON");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": ", -EINVAL, "not JSON");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "[]", -EINVAL, "not a JSON object");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"tool_name\": \"Bash\"}", -EINVAL, "\"hook_event_name\": missing");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": 3}", -EINVAL, "\"hook_event_name\"");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": \"Stop\"}", -EOPNOTSUPP, "\"Stop\" is not an event");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": \"PreToolUse\", \"tool_input\": {}}", -EINVAL,
                    "field \"tool_name\"");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"\", \"tool_input\": {}}", -EINVAL,
                    "field \"tool_name\"");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"a b\", \"tool_input\": {}}", -EINVAL,
                    "field \"tool_name\"");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"a\\u0000b\", \"tool_input\": {}}", -EINVAL,
                    "not JSON");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\"}", -EINVAL,
                    "field \"tool_input\": missing");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\", \"tool_input\": \"ls\"}", -EINVAL,
                    "field \"tool_input\": expected an object");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\", \"tool_input\": {}, "
                    "\"tool_use_id\": 5}",
                    -EINVAL, "field \"tool_use_id\"");
        parse_fails(AJ_AGENT_CLAUDE_CODE,
                    "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\", \"tool_input\": {}, "
                    "\"tool_name\": \"Read\"}",
                    -EINVAL, "not JSON");
        parse_fails(AJ_AGENT_CLAUDE_CODE, "{\"hook_event_name\": \"PostToolUse\", \"tool_name\": \"Bash\"}", -EINVAL,
                    "\"tool_use_id\": missing");
        /* Names the broker could not take. */
        char name[400];
        memset(name, 'x', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        char *doc = NULL;
        cr_assert(asprintf(&doc, "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"%.250s\", \"tool_input\": {}}",
                           name) > 0);
        parse_fails(AJ_AGENT_CLAUDE_CODE, doc, -EINVAL, "1 to 249 characters");
        free(doc);
        cr_assert(asprintf(&doc, "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"%.249s\", \"tool_input\": {}}",
                           name) > 0);
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, doc);
        cr_expect_eq(strlen(ev.tool_name), 256);
        aj_hook_event_done(&ev);
        free(doc);
        cr_assert(asprintf(&doc,
                           "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"B\", \"tool_input\": {}, "
                           "\"tool_use_id\": \"%.129s\"}",
                           name) > 0);
        parse_fails(AJ_AGENT_CLAUDE_CODE, doc, -EINVAL, "field \"tool_use_id\"");
        free(doc);
}

Test(agent_hooks, oversized_input_is_refused_whole)
{
        size_t n = AJ_HOOK_MAX_INPUT + 1;
        char *big = malloc(n + 1);
        cr_assert(big);
        memset(big, ' ', n);
        big[n] = 0;
        AjHookEvent ev;
        AjError e = {};
        cr_expect_eq(aj_hook_event_parse(AJ_AGENT_CLAUDE_CODE, big, n, &ev, &e), -EMSGSIZE);
        cr_expect(e.message && strstr(e.message, "larger than"));
        aj_error_clear(&e);
        free(big);
}

/* Large arguments (a Write of a big file): long strings shortened with their size and
 * digest, the rest kept; arguments that stay too large are refused. */
Test(agent_hooks, large_arguments_are_shortened)
{
        size_t n = 200 * 1024;
        char *content = malloc(n + 1);
        cr_assert(content);
        memset(content, 'a', n);
        content[n] = 0;
        json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "hook_event_name", "PreToolUse", "tool_name", "Write",
                                "tool_input", "file_path", "/work/big.txt", "content", content, "tool_use_id", "t9");
        char *text = json_dumps(doc, JSON_COMPACT);
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, text);
        cr_expect(ev.shortened);
        cr_expect_str_eq(json_string_value(json_object_get(ev.arguments, "file_path")), "/work/big.txt");
        const char *c = json_string_value(json_object_get(ev.arguments, "content"));
        cr_assert(c);
        cr_expect(strstr(c, "[agentjail: 204800 bytes, sha256 "), "%.300s", c);
        cr_expect_lt(strlen(c), 400);
        char *line = NULL;
        cr_assert_eq(aj_hook_event_request(&ev, 1, &line), 0);
        cr_expect_lt(strlen(line), 64 * 1024);
        free(line);
        aj_hook_event_done(&ev);
        free(text);
        json_decref(doc);

        /* Many short strings: nothing to shorten, too large: refused. */
        json_t *arr = json_array();
        for (int i = 0; i < 8000; i++)
                json_array_append_new(arr, json_string("0123456789"));
        doc = json_pack("{s:s, s:s, s:{s:o}}", "hook_event_name", "PreToolUse", "tool_name", "T", "tool_input", "a",
                        arr);
        text = json_dumps(doc, JSON_COMPACT);
        parse_fails(AJ_AGENT_CLAUDE_CODE, text, -EMSGSIZE, "even with its long strings shortened");
        free(text);
        json_decref(doc);
        free(content);
}

/* A cut never splits a UTF-8 sequence (the broker rejects invalid UTF-8). */
Test(agent_hooks, shortening_keeps_utf8_whole)
{
        size_t n = 60 * 1024;
        char *content = malloc(n * 2 + 1);
        cr_assert(content);
        for (size_t i = 0; i < n; i++)
                memcpy(content + 2 * i, "\xc3\xa9", 2); /* é */
        content[2 * n] = 0;
        json_t *doc = json_pack("{s:s, s:s, s:{s:s}}", "hook_event_name", "PreToolUse", "tool_name", "Write",
                                "tool_input", "content", content);
        cr_assert(doc);
        char *text = json_dumps(doc, JSON_COMPACT);
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, text);
        cr_expect(ev.shortened);
        char *line = NULL;
        cr_assert_eq(aj_hook_event_request(&ev, 1, &line), 0);
        json_t *back = json_loads(line, 0, NULL);
        cr_expect(back, "request is not valid JSON/UTF-8");
        json_decref(back);
        free(line);
        aj_hook_event_done(&ev);
        free(text);
        json_decref(doc);
        free(content);
}

/* A failure before the event is known: blocking (2), the message on stderr. */
Test(agent_hooks, failures)
{
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_failure(AJ_AGENT_CLAUDE_CODE, NULL, "the hook event is not JSON", &a), 0);
        cr_expect_eq(a.status, 2);
        cr_expect_null(a.out);
        cr_expect_str_eq(a.err, "agentjail: the hook event is not JSON (the tool call is refused)\n");
        aj_hook_answer_done(&a);
        AjHookEvent ev = parse_ok(AJ_AGENT_CLAUDE_CODE, PRE_BASH);
        cr_assert_eq(aj_hook_answer_failure(AJ_AGENT_CLAUDE_CODE, &ev, "no broker", &a), 0);
        cr_expect_eq(a.status, 2);
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

Test(agent_hooks, settings_for_claude_code)
{
        char *s = NULL;
        cr_assert_eq(aj_hook_settings(AJ_AGENT_CLAUDE_CODE, "/opt/agentjail/bin/agentjail meter hook claude-code", 600,
                                      &s),
                     0);
        json_t *doc = loads(s);
        for (int i = 0; i < 2; i++) {
                json_t *groups = json_object_get(json_object_get(doc, "hooks"), i ? "PostToolUse" : "PreToolUse");
                cr_assert_eq(json_array_size(groups), 1);
                json_t *g = json_array_get(groups, 0);
                cr_expect_str_eq(json_string_value(json_object_get(g, "matcher")), "*");
                json_t *h = json_array_get(json_object_get(g, "hooks"), 0);
                cr_expect_str_eq(json_string_value(json_object_get(h, "type")), "command");
                cr_expect_str_eq(json_string_value(json_object_get(h, "command")),
                                 "/opt/agentjail/bin/agentjail meter hook claude-code");
                cr_expect_eq(json_integer_value(json_object_get(h, "timeout")), 600);
        }
        /* No other hook, and the environment the workspace's settings could give the hook
         * (a shell prefix, the loader's variables) pinned. */
        cr_expect(json_is_true(json_object_get(doc, "allowManagedHooksOnly")));
        json_t *env = json_object_get(doc, "env");
        cr_expect_str_eq(json_string_value(json_object_get(env, "CLAUDE_CODE_SHELL_PREFIX")), "");
        cr_expect_str_eq(json_string_value(json_object_get(env, "LD_LIBRARY_PATH")), "");
        cr_expect_str_eq(json_string_value(json_object_get(env, "LD_PRELOAD")), "");
        cr_expect_str_eq(json_string_value(json_object_get(env, "SHELL")), "/bin/sh");
        json_decref(doc);
        free(s);
        cr_expect_eq(aj_hook_settings(AJ_AGENT_GEMINI, "x", 1, &s), -EOPNOTSUPP);
        cr_assert_eq(aj_hook_command(AJ_AGENT_CLAUDE_CODE, "/opt/agentjail/bin", "/run/agentjail/broker.sock", &s), 0);
        cr_expect_str_eq(s, "/opt/agentjail/bin/agentjail meter hook claude-code --wait 590 --broker "
                            "/run/agentjail/broker.sock");
        free(s);
}

/* Codex: Claude Code's events and deny. */
Test(agent_hooks, codex)
{
        AjHookEvent ev = parse_ok(AJ_AGENT_CODEX, "{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\", "
                                                  "\"tool_input\": {\"command\": \"ls\"}, \"tool_use_id\": \"c1\"}");
        cr_expect_str_eq(ev.tool_name, "codex.Bash");
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&ev,
                                          "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": \"no\"}",
                                          1, &a),
                     0);
        expect_decision(&a, "deny", "codex.Bash denied: no");
        aj_hook_answer_done(&a);
        /* An allowance is Codex's empty answer; it has no "ask" for hooks: a timeout denies. */
        cr_assert_eq(aj_hook_answer_reply(&ev, "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"allow\"}", 1, &a),
                     0);
        cr_expect_eq(a.status, 0);
        cr_expect_str_eq(a.out, "{}");
        aj_hook_answer_done(&a);
        cr_assert_eq(aj_hook_answer_timeout(&ev, AJ_HOOK_ON_TIMEOUT_ASK, 5, &a), 0);
        expect_decision(&a, "deny", "no decision within 5s");
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
}

/* Gemini CLI: BeforeTool/AfterTool, {"decision", "reason"}, no call id (one derived from
 * the session and the call, the same before and after it). */
Test(agent_hooks, gemini)
{
        const char *before = "{\"session_id\": \"g\", \"hook_event_name\": \"BeforeTool\", \"tool_name\": "
                             "\"run_shell_command\", \"tool_input\": {\"command\": \"ls\"}}";
        const char *after = "{\"session_id\": \"g\", \"hook_event_name\": \"AfterTool\", \"tool_name\": "
                            "\"run_shell_command\", \"tool_input\": {\"command\": \"ls\"}, \"tool_response\": "
                            "{\"error\": \"exit 2\"}}";
        AjHookEvent pre = parse_ok(AJ_AGENT_GEMINI, before), post = parse_ok(AJ_AGENT_GEMINI, after);
        cr_expect_str_eq(pre.tool_name, "gemini.run_shell_command");
        cr_assert(pre.call_id && post.call_id);
        cr_expect_str_eq(pre.call_id, post.call_id);
        cr_expect(strncmp(pre.call_id, "gemini-", 7) == 0);
        cr_expect(post.failed);
        AjHookAnswer a = {};
        cr_assert_eq(aj_hook_answer_reply(&pre,
                                          "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": \"no\"}",
                                          1, &a),
                     0);
        cr_expect_eq(a.status, 0);
        json_t *doc = loads(a.out);
        cr_expect_str_eq(json_string_value(json_object_get(doc, "decision")), "deny");
        cr_expect(strstr(json_string_value(json_object_get(doc, "reason")), "denied: no"));
        json_decref(doc);
        aj_hook_answer_done(&a);
        /* Gemini CLI has no "ask": a timed-out wait denies. */
        cr_assert_eq(aj_hook_answer_timeout(&pre, AJ_HOOK_ON_TIMEOUT_ASK, 50, &a), 0);
        doc = loads(a.out);
        cr_expect_str_eq(json_string_value(json_object_get(doc, "decision")), "deny");
        json_decref(doc);
        aj_hook_answer_done(&a);
        aj_hook_event_done(&pre);
        aj_hook_event_done(&post);
        /* Claude Code's pre-tool event given to the gemini hook: an error (exit 2), not an
         * event to ignore (exit 1, which would let the call through). */
        parse_fails(AJ_AGENT_GEMINI, PRE_BASH, -EINVAL,
                    "is not an event the gemini hook handles (BeforeTool, AfterTool)");
        parse_fails(AJ_AGENT_GEMINI, "{\"hook_event_name\": \"SessionStart\"}", -EOPNOTSUPP, "SessionStart");
}

static int hook_parse(AjMeterHookCmd *c, AjError *e, const char *const *args)
{
        int argc = 0;
        while (args[argc])
                argc++;
        return aj_meter_hook_parse(argc, (char **)args, c, e);
}

Test(agent_hooks, meter_hook_arguments)
{
        AjMeterHookCmd c;
        AjError e = {};
        cr_assert_eq(hook_parse(&c, &e, (const char *const[]){ "meter", "hook", "claude-code", NULL }), 0);
        cr_expect_eq(c.agent, AJ_AGENT_CLAUDE_CODE);
        cr_expect_eq(c.wait_s, AJ_HOOK_WAIT_S);
        cr_expect_eq(c.on_timeout, AJ_HOOK_ON_TIMEOUT_DENY);
        cr_assert_eq(hook_parse(&c, &e,
                                (const char *const[]){ "meter", "hook", "--wait", "5", "codex", "--on-timeout=ask",
                                                       NULL }),
                     0);
        cr_expect_eq(c.agent, AJ_AGENT_CODEX);
        cr_expect_eq(c.wait_s, 5);
        cr_expect_eq(c.on_timeout, AJ_HOOK_ON_TIMEOUT_ASK);
        cr_expect_null(c.broker);
        cr_assert_eq(hook_parse(&c, &e,
                                (const char *const[]){ "meter", "hook", "gemini", "--broker", "/run/b.sock", NULL }),
                     0);
        cr_expect_str_eq(c.broker, "/run/b.sock");
        static const struct {
                const char *args[6];
                const char *msg;
        } bad[] = {
                { { "meter", "hook", NULL }, "missing the AGENT" },
                { { "meter", "hook", "claude", NULL },
                  "unknown agent \"claude\" (expected claude-code, codex, gemini)" },
                { { "meter", "hook", "gemini", "codex", NULL }, "unexpected argument \"codex\"" },
                { { "meter", "hook", "gemini", "--wait", NULL }, "--wait needs a value" },
                { { "meter", "hook", "gemini", "--wait", "0", NULL }, "--wait: expected seconds" },
                { { "meter", "hook", "gemini", "--wait=x", NULL }, "--wait: expected seconds" },
                { { "meter", "hook", "gemini", "--on-timeout", "allow", NULL }, "--on-timeout: expected" },
                { { "meter", "hook", "gemini", "--force", NULL }, "unknown option \"--force\"" },
                { { "meter", "hook", "gemini", "--broker", "b.sock", NULL }, "--broker: expected an absolute" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_expect_eq(hook_parse(&c, &e, bad[i].args), -EINVAL, "case %zu", i);
                cr_expect(e.message && strstr(e.message, bad[i].msg), "case %zu: got \"%s\"", i, e.message ?: "");
                aj_error_clear(&e);
        }
}
