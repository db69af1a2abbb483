/* SPDX-License-Identifier: Apache-2.0 */
/* agentjail mcp's message rewriting (src/mcp.c) and its command line (src/cli/mcp.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mcp-cmd.h"
#include "mcp.h"
#include "util/macros.h"

static json_t *parse(const char *line)
{
        json_error_t e;
        json_t *v = json_loads(line, JSON_DECODE_ANY, &e);
        cr_assert_not_null(v, "not JSON: %s: %s", e.text, line);
        return v;
}

/* A JSON-RPC error line: its code, its id (compact JSON) and a part of its message. */
static void expect_error_line(const char *line, int code, const char *id, const char *message_part)
{
        cr_assert_not_null(line);
        cr_expect_null(strchr(line, '\n'), "one line");
        json_t *o = parse(line);
        cr_expect_str_eq(json_string_value(json_object_get(o, "jsonrpc")), "2.0");
        char *got_id = json_dumps(json_object_get(o, "id"), JSON_ENCODE_ANY | JSON_COMPACT);
        cr_expect_str_eq(got_id, id);
        free(got_id);
        json_t *e = json_object_get(o, "error");
        cr_expect_eq(json_integer_value(json_object_get(e, "code")), code, "code %lld, expected %d in %s",
                     (long long)json_integer_value(json_object_get(e, "code")), code, line);
        const char *m = json_string_value(json_object_get(e, "message"));
        cr_expect(m && strstr(m, message_part), "message \"%s\" lacks \"%s\"", m ?: "(none)", message_part);
        json_decref(o);
}

static const char *in_use;
static bool fake_pending(void *userdata, const char *id_key) { return in_use && streq(id_key, in_use); }

static AjMcpMsg client(const char *line)
{
        AjMcpMsg m;
        cr_assert_eq(aj_mcp_from_client(line, strlen(line), "fs", fake_pending, NULL, &m), 0);
        return m;
}

Test(mcp, server_name_from_the_command)
{
        char s[AJ_MCP_MAX_SERVER + 1];
        aj_mcp_server_from_command("/usr/bin/mcp-server-filesystem", s);
        cr_expect_str_eq(s, "mcp-server-filesystem");
        aj_mcp_server_from_command("npx", s);
        cr_expect_str_eq(s, "npx");
        aj_mcp_server_from_command("./my server.py", s);
        cr_expect_str_eq(s, "my_server_py");
        aj_mcp_server_from_command("/opt/", s);
        cr_expect_str_eq(s, "server");
        aj_mcp_server_from_command("", s);
        cr_expect_str_eq(s, "server");
        char long_name[200];
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = 0;
        aj_mcp_server_from_command(long_name, s);
        cr_expect_eq(strlen(s), AJ_MCP_MAX_SERVER);
        cr_expect(aj_mcp_server_name_valid(s));

        cr_expect(aj_mcp_server_name_valid("fs"));
        cr_expect(aj_mcp_server_name_valid("my-server_2"));
        cr_expect_not(aj_mcp_server_name_valid(""));
        cr_expect_not(aj_mcp_server_name_valid("a.b"), "a dot would make mcp.a.b.tool ambiguous");
        cr_expect_not(aj_mcp_server_name_valid("a b"));
        cr_expect_not(aj_mcp_server_name_valid("a*"));
}

Test(mcp, command_line)
{
        AjMcpCmd c;
        AjError e = {};
        char *a1[] = { "mcp", "--", "node", "server.js", "/work", NULL };
        cr_assert_eq(aj_mcp_cmd_parse(5, a1, &c, &e), 0);
        cr_expect_str_eq(c.server, "node");
        cr_expect_str_eq(c.argv[0], "node");
        cr_expect_str_eq(c.argv[2], "/work");
        char *a2[] = { "mcp", "--name", "fs", "--", "npx", "-y", NULL };
        cr_assert_eq(aj_mcp_cmd_parse(6, a2, &c, &e), 0);
        cr_expect_str_eq(c.server, "fs");
        cr_expect_str_eq(c.argv[1], "-y", "the server's options are its own");
        char *a3[] = { "mcp", "--name=git", "/usr/bin/mcp-git", NULL };
        cr_assert_eq(aj_mcp_cmd_parse(3, a3, &c, &e), 0);
        cr_expect_str_eq(c.server, "git");
        cr_expect_str_eq(c.argv[0], "/usr/bin/mcp-git");
        char *a4[] = { "mcp", "--help", NULL };
        cr_assert_eq(aj_mcp_cmd_parse(2, a4, &c, &e), 0);
        cr_expect(c.help);

        static const struct {
                int argc;
                char *argv[5];
                const char *error;
        } bad[] = {
                { 1, { "mcp" }, "missing the server command" },
                { 2, { "mcp", "--" }, "missing the server command" },
                { 4, { "mcp", "--name", "a.b", "cmd" }, "--name: \"a.b\" must be 1 to 64 characters" },
                { 2, { "mcp", "--name" }, "--name needs a value" },
                { 3, { "mcp", "--verbose", "cmd" }, "unknown option \"--verbose\"" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                cr_expect_eq(aj_mcp_cmd_parse(bad[i].argc, (char **)bad[i].argv, &c, &e), -EINVAL, "case %zu", i);
                cr_expect(e.message && strstr(e.message, bad[i].error), "case %zu: \"%s\" lacks \"%s\"", i,
                          e.message ?: "(none)", bad[i].error);
                aj_error_clear(&e);
        }
}

Test(mcp, tools_call_is_judged_and_forwarded_as_parsed)
{
        AjMcpMsg m = client("{\"jsonrpc\": \"2.0\", \"id\": 7, \"method\": \"tools/call\", "
                            "\"params\": {\"name\": \"read_file\", \"arguments\": {\"path\": \"/w/a\\nb\"}}}");
        cr_expect_eq(m.action, AJ_MCP_TOOL_CALL);
        cr_expect_str_eq(m.tool, "read_file");
        cr_expect_str_eq(json_string_value(json_object_get(m.arguments, "path")), "/w/a\nb");
        cr_expect_str_eq(m.id_key, "7");
        /* What the server gets is what was judged, compact, on one line. */
        cr_expect_str_eq(m.line, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
                                 "\"read_file\",\"arguments\":{\"path\":\"/w/a\\nb\"}}}");
        aj_mcp_msg_done(&m);

        /* An escaped method is the method it decodes to. */
        m = client("{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"tools\\/call\",\"params\":{\"name\":\"w\"}}");
        cr_expect_eq(m.action, AJ_MCP_TOOL_CALL);
        cr_expect_null(m.arguments);
        cr_expect_str_eq(m.id_key, "\"x\"");
        aj_mcp_msg_done(&m);

        char name[300];
        cr_expect_eq(aj_mcp_tool_name("fs", "read_file", name, sizeof(name)), 0);
        cr_expect_str_eq(name, "mcp.fs.read_file");
        char tool[260];
        memset(tool, 'a', sizeof(tool) - 1);
        tool[sizeof(tool) - 1] = 0;
        cr_expect_eq(aj_mcp_tool_name("fs", tool, name, sizeof(name)), -ENAMETOOLONG, "past the broker's 256");
}

/* A malformed tools/call never reaches the server: it is answered (fail closed). */
Test(mcp, malformed_tools_calls_are_answered_not_forwarded)
{
        static const struct {
                const char *line;
                int code;
                const char *id, *message;
        } cases[] = {
                { "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", AJ_MCP_E_INVALID_PARAMS, "1",
                  "\"params\" must be an object" },
                { "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":5}}",
                  AJ_MCP_E_INVALID_PARAMS, "2", "\"params.name\" must be a non-empty string" },
                { "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"a b\"}}",
                  AJ_MCP_E_INVALID_PARAMS, "3", "without spaces" },
                { "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"\"}}",
                  AJ_MCP_E_INVALID_PARAMS, "4", "non-empty" },
                /* A NUL inside a string: refused by the parser (no name could be cut at it). */
                { "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"a\\u0000b\"}}",
                  AJ_MCP_E_PARSE, "null", "not JSON" },
                { "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"w\",\"arguments\":[1]}}",
                  AJ_MCP_E_INVALID_PARAMS, "6", "\"params.arguments\" must be an object" },
                { "{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"tools/call\",\"params\":{\"name\":\"w\"}}",
                  AJ_MCP_E_INVALID_REQUEST, "null", "must be an integer or a string" },
                { "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"tools/call\",\"params\":{\"name\":\"w\"}}",
                  AJ_MCP_E_INVALID_REQUEST, "null", "must be an integer or a string" },
                { "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"tools/list\"}", AJ_MCP_E_INVALID_REQUEST, "null",
                  "must be an integer or a string" },
                /* Two names: which one would the server read? Neither. */
                { "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"read\",\"name\":"
                  "\"delete\"}}",
                  AJ_MCP_E_PARSE, "null", "not JSON" },
                { "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"method\":\"ping\"}", AJ_MCP_E_PARSE,
                  "null", "duplicate" },
                { "not json", AJ_MCP_E_PARSE, "null", "nothing was forwarded" },
                { "{\"jsonrpc\":\"2.0\",\"id\":1,", AJ_MCP_E_PARSE, "null", "not JSON" },
                { "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"w\"}}]",
                  AJ_MCP_E_INVALID_REQUEST, "null", "batches are not supported" },
                { "[]", AJ_MCP_E_INVALID_REQUEST, "null", "batches" },
                { "42", AJ_MCP_E_INVALID_REQUEST, "null", "must be a JSON object" },
                { "\"tools/call\"", AJ_MCP_E_INVALID_REQUEST, "null", "must be a JSON object" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjMcpMsg m = client(cases[i].line);
                cr_expect_eq(m.action, AJ_MCP_REPLY, "case %zu: action %d", i, m.action);
                expect_error_line(m.line, cases[i].code, cases[i].id, cases[i].message);
                aj_mcp_msg_done(&m);
        }

        /* A tools/call notification has nobody to answer: dropped. */
        AjMcpMsg m = client("{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"w\"}}");
        cr_expect_eq(m.action, AJ_MCP_DROP);
        cr_expect_null(m.line);
        cr_expect(m.why && strstr(m.why, "notification"));
        aj_mcp_msg_done(&m);

        /* A request may not reuse the id of one in flight (its response would be taken for it). */
        in_use = "\"c1\"";
        m = client("{\"jsonrpc\":\"2.0\",\"id\":\"c1\",\"method\":\"ping\"}");
        cr_expect_eq(m.action, AJ_MCP_REPLY);
        expect_error_line(m.line, AJ_MCP_E_INVALID_REQUEST, "\"c1\"", "already used by a request in flight");
        aj_mcp_msg_done(&m);
        m = client("{\"jsonrpc\":\"2.0\",\"id\":\"c2\",\"method\":\"ping\"}");
        cr_expect_eq(m.action, AJ_MCP_REQUEST, "any request is tracked: only its response is passed on");
        cr_expect_str_eq(m.id_key, "\"c2\"");
        aj_mcp_msg_done(&m);
        /* Every request's id is kept, so it must be one MCP allows (not null, not fractional). */
        static const char *const odd_ids[] = { "null", "1.5", "[1]", "true" };
        for (size_t i = 0; i < ARRAY_SIZE(odd_ids); i++) {
                char line[128];
                snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", odd_ids[i]);
                m = client(line);
                cr_expect_eq(m.action, AJ_MCP_REPLY, "a ping with id %s", odd_ids[i]);
                expect_error_line(m.line, AJ_MCP_E_INVALID_REQUEST, "null", "the id of a request must be");
                aj_mcp_msg_done(&m);
        }
        /* A response of the client (to the server's own request) may carry any id. */
        m = client("{\"jsonrpc\":\"2.0\",\"id\":\"c1\",\"result\":{}}");
        cr_expect_eq(m.action, AJ_MCP_FORWARD);
        aj_mcp_msg_done(&m);
        in_use = NULL;
}

Test(mcp, other_client_messages_pass)
{
        AjMcpMsg m = client("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
                            "\"2025-06-18\"}}\r");
        cr_expect_eq(m.action, AJ_MCP_REQUEST);
        cr_expect_str_eq(m.line, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
                                 "\"protocolVersion\":\"2025-06-18\"}}");
        aj_mcp_msg_done(&m);
        m = client("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
        cr_expect_eq(m.action, AJ_MCP_FORWARD);
        cr_expect_null(m.id);
        aj_mcp_msg_done(&m);
        m = client("{\"jsonrpc\":\"2.0\",\"id\":\"l-1\",\"method\":\"tools/list\",\"params\":{}}");
        cr_expect_eq(m.action, AJ_MCP_TOOLS_LIST);
        cr_expect_str_eq(m.id_key, "\"l-1\"");
        aj_mcp_msg_done(&m);
        /* A cancellation names the request it cancels (the relay frees that slot). */
        m = client("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"c-9\","
                   "\"reason\":\"timeout\"}}");
        cr_expect_eq(m.action, AJ_MCP_FORWARD);
        cr_expect_str_eq(m.cancel_key, "\"c-9\"");
        aj_mcp_msg_done(&m);
        m = client("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"requestId\":1}}");
        cr_expect_str_eq(m.cancel_key, "");
        aj_mcp_msg_done(&m);
        /* A tools/list notification is nothing to filter. */
        m = client("{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}");
        cr_expect_eq(m.action, AJ_MCP_FORWARD);
        aj_mcp_msg_done(&m);
}

Test(mcp, server_messages)
{
        AjMcpMsg m;
        const char *resp = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}";
        cr_assert_eq(aj_mcp_from_server(resp, strlen(resp), &m), 0);
        cr_expect_eq(m.action, AJ_MCP_RESPONSE);
        cr_expect_str_eq(m.id_key, "7");
        cr_expect_str_eq(m.line, resp, "a response goes on as it came");
        aj_mcp_msg_done(&m);

        /* A response without an id, or a result with id null, answers nothing the relay
         * tracks: a response the relay drops (no request in flight has that key). */
        const char *no_id[] = {
                "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"x\"}}",
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"tools\":[]}}",
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{},\"error\":{\"code\":1,\"message\":\"x\"}}"
        };
        for (size_t i = 0; i < ARRAY_SIZE(no_id); i++) {
                cr_assert_eq(aj_mcp_from_server(no_id[i], strlen(no_id[i]), &m), 0);
                cr_expect_eq(m.action, AJ_MCP_RESPONSE, "case %zu", i);
                cr_expect_str_eq(m.id_key, i == 0 ? "" : "null");
                aj_mcp_msg_done(&m);
        }
        /* An error with id null (JSON-RPC 2.0 section 5: the server could not read a
         * request's id) is the client's: it can answer none of its requests. */
        const char *unread = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}";
        cr_assert_eq(aj_mcp_from_server(unread, strlen(unread), &m), 0);
        cr_expect_eq(m.action, AJ_MCP_FORWARD);
        cr_expect_str_eq(m.line, unread);
        aj_mcp_msg_done(&m);

        const char *req = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"roots/list\"}";
        cr_assert_eq(aj_mcp_from_server(req, strlen(req), &m), 0);
        cr_expect_eq(m.action, AJ_MCP_FORWARD, "the server's own requests pass");
        aj_mcp_msg_done(&m);

        static const char *dropped[] = {
                "Server running on stdio",
                "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"write_file\"}]}}]",
                "17",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"result\":{\"tools\":[]}}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(dropped); i++) {
                cr_assert_eq(aj_mcp_from_server(dropped[i], strlen(dropped[i]), &m), 0);
                cr_expect_eq(m.action, AJ_MCP_DROP, "case %zu", i);
                cr_expect_null(m.line);
                cr_expect_not_null(m.why);
                aj_mcp_msg_done(&m);
        }
}

/* JSON-RPC 2.0: a request or a notification has a string method and neither a result nor
 * an error; a response has no method. What is neither is read differently by clients: the
 * Python SDK takes {"id":7,"method":null,"result":...} for the response to request 7 (its
 * request model wants a string method; its response model allows other members). Passed on
 * as "not a response", it answered a call awaiting the broker's verdict, or a listing
 * before its filter, past the relay. Dropped from the server, refused from the client. */
Test(mcp, neither_request_nor_response)
{
        static const char *neither[] = {
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":null,\"result\":{\"content\":[]}}",
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":5,\"result\":{\"tools\":[{\"name\":\"write_file\"}]}}",
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":{},\"error\":{\"code\":1,\"message\":\"x\"}}",
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\",\"result\":{\"content\":[]}}",
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\",\"error\":{\"code\":1,\"message\":\"x\"}}",
                "{\"jsonrpc\":\"2.0\",\"method\":false}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(neither); i++) {
                AjMcpMsg m;
                cr_assert_eq(aj_mcp_from_server(neither[i], strlen(neither[i]), &m), 0);
                cr_expect_eq(m.action, AJ_MCP_DROP, "from the server, case %zu", i);
                cr_expect_null(m.line);
                cr_expect_not_null(m.why);
                aj_mcp_msg_done(&m);

                m = client(neither[i]);
                cr_expect_eq(m.action, AJ_MCP_REPLY, "from the client, case %zu", i);
                json_auto_t *reply = json_loads(m.line, 0, NULL);
                cr_expect_eq(json_integer_value(json_object_get(json_object_get(reply, "error"), "code")),
                             AJ_MCP_E_INVALID_REQUEST, "case %zu", i);
                aj_mcp_msg_done(&m);
        }
}

Test(mcp, call_ids)
{
        char b[AJ_MCP_MAX_ID + 64];
        json_t *id = json_integer(12);
        aj_mcp_call_id(42, id, 1, b, sizeof(b));
        cr_expect_str_eq(b, "mcp-42-12");
        json_decref(id);
        id = json_string("req:3.a-b_c");
        aj_mcp_call_id(42, id, 1, b, sizeof(b));
        cr_expect_str_eq(b, "mcp-42-req:3.a-b_c");
        json_decref(id);
        id = json_string("has space");
        aj_mcp_call_id(42, id, 5, b, sizeof(b));
        cr_expect_str_eq(b, "mcp-42-g5", "an id the broker would refuse: generated");
        json_decref(id);
        char longer[80];
        memset(longer, 'a', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        id = json_string(longer);
        aj_mcp_call_id(42, id, 6, b, sizeof(b));
        cr_expect_str_eq(b, "mcp-42-g6");
        json_decref(id);
}

Test(mcp, error_shapes)
{
        json_t *id = json_integer(3);
        _cleanup_free_ char *plain = aj_mcp_error_line(id, AJ_MCP_E_INTERNAL, "x", NULL);
        cr_expect_str_eq(plain, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32603,\"message\":\"x\"}}");
        _cleanup_free_ char *null_id = aj_mcp_error_line(NULL, AJ_MCP_E_PARSE, "y", NULL);
        cr_expect_str_eq(null_id, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"y\"}}");

        json_t *deny = parse("{\"id\":\"t:0:0\",\"v\":1,\"ok\":true,\"verdict\":\"deny\",\"gen_ai.tool.call.id\":"
                             "\"mcp-1-3\",\"reason\":\"tool \\\"mcp.fs.write_file\\\" is denied by tools.deny "
                             "\\\"mcp.fs.write_*\\\"\"}");
        _cleanup_free_ char *d = aj_mcp_refusal_line(id, "mcp.fs.write_file", "mcp-1-3", deny);
        expect_error_line(d, AJ_MCP_E_DENIED, "3",
                          "agentjail denied the tool call mcp.fs.write_file: tool \"mcp.fs.write_file\" is denied "
                          "by tools.deny");
        json_t *o = parse(d);
        json_t *data = json_object_get(json_object_get(o, "error"), "data");
        cr_expect_str_eq(json_string_value(json_object_get(data, "verdict")), "deny");
        cr_expect_str_eq(json_string_value(json_object_get(data, "gen_ai.tool.call.id")), "mcp-1-3");
        cr_expect_str_eq(json_string_value(json_object_get(data, "gen_ai.tool.name")), "mcp.fs.write_file");
        json_decref(o);
        json_decref(deny);

        json_t *breach = parse("{\"ok\":true,\"verdict\":\"breach\",\"reason\":\"tool_calls: 6 > 5\"}");
        _cleanup_free_ char *b = aj_mcp_refusal_line(id, "mcp.fs.read_file", "c", breach);
        expect_error_line(b, AJ_MCP_E_BREACH, "3", "tool_calls: 6 > 5 (a cap was crossed; the run is being frozen)");
        json_decref(breach);

        json_t *err = parse("{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"event log full\"}}");
        _cleanup_free_ char *e = aj_mcp_refusal_line(id, "mcp.fs.read_file", "c", err);
        expect_error_line(e, AJ_MCP_E_UNAVAILABLE, "3",
                          "could not check the tool call mcp.fs.read_file with the "
                          "broker: event log full");
        json_decref(err);

        /* An allow that is not ok:true is no allow. */
        json_t *odd = parse("{\"ok\":false,\"verdict\":\"allow\"}");
        _cleanup_free_ char *x = aj_mcp_refusal_line(id, "mcp.fs.read_file", "c", odd);
        expect_error_line(x, AJ_MCP_E_UNAVAILABLE, "3", "could not check");
        json_decref(odd);
        json_decref(id);
}

Test(mcp, result_status)
{
        static const struct {
                const char *response, *status;
        } cases[] = {
                { "{\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}", "ok" },
                { "{\"id\":1,\"result\":{\"content\":[],\"isError\":false}}", "ok" },
                { "{\"id\":1,\"result\":{\"content\":[],\"isError\":true}}", "error" },
                { "{\"id\":1,\"error\":{\"code\":-32602,\"message\":\"unknown tool\"}}", "error" },
                { "{\"id\":1,\"result\":7}", "error" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                json_t *r = parse(cases[i].response);
                cr_expect_str_eq(aj_mcp_result_status(r), cases[i].status, "case %zu", i);
                json_decref(r);
        }
}

static bool keep_not_write(void *userdata, const char *name)
{
        (*(int *)userdata)++;
        return strncmp(name, "write", 5) != 0;
}

/* The relay's keep: the name looked up among the names borrowed from the response's entries
 * (aj_mcp_list_names()), which removing an entry frees. */
typedef struct {
        const char **names;
        size_t n;
        const json_t *tools;
        size_t size;
} Borrowed;

static bool keep_borrowed(void *userdata, const char *name)
{
        Borrowed *b = userdata;
        cr_expect_eq(json_array_size(b->tools), b->size, "every entry is judged before any is removed");
        for (size_t i = 0; i < b->n; i++)
                if (streq(b->names[i], name))
                        return strncmp(name, "write", 5) != 0;
        return false;
}

Test(mcp, tools_list_filter_judges_with_borrowed_names)
{
        json_t *r = parse("{\"result\":{\"tools\":[{\"name\":\"write_a\"},{\"name\":\"read\"},{\"name\":\"write_b\"},"
                          "{\"name\":\"list\"}]}}");
        const char *names[4];
        Borrowed b = { .names = names, .tools = json_object_get(json_object_get(r, "result"), "tools"), .size = 4 };
        cr_assert_eq(aj_mcp_list_names(r, names, 4, &b.n), 0);
        size_t removed = 0;
        _cleanup_free_ char *line = aj_mcp_list_filter(r, keep_borrowed, &b, &removed);
        cr_expect_eq(removed, 2);
        cr_expect_str_eq(line, "{\"result\":{\"tools\":[{\"name\":\"read\"},{\"name\":\"list\"}]}}");
        json_decref(r);
}

Test(mcp, tools_list_filtering)
{
        json_t *r = parse(
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":["
                "{\"name\":\"read_file\",\"inputSchema\":{}},{\"name\":\"write_file\"},{\"title\":\"nameless\"},"
                "{\"name\":\"a b\"},{\"name\":\"list_directory\"},{\"name\":\"write_other\"}],"
                "\"nextCursor\":\"c\"}}");
        const char *names[8];
        size_t n = 0;
        cr_assert_eq(aj_mcp_list_names(r, names, 8, &n), 0);
        cr_assert_eq(n, 4, "entries without a usable name are not checked");
        cr_expect_str_eq(names[0], "read_file");
        cr_expect_str_eq(names[3], "write_other");
        cr_expect_eq(aj_mcp_list_names(r, names, 2, &n), -E2BIG);

        int asked = 0;
        size_t removed = 0;
        _cleanup_free_ char *line = aj_mcp_list_filter(r, keep_not_write, &asked, &removed);
        cr_expect_eq(removed, 4);
        cr_expect_str_eq(line, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"read_file\","
                               "\"inputSchema\":{}},{\"name\":\"list_directory\"}],\"nextCursor\":\"c\"}}");
        json_decref(r);

        /* An error: nothing listed, passed on as it is. */
        r = parse("{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-1,\"message\":\"no\"}}");
        cr_expect_eq(aj_mcp_list_kind(r), AJ_MCP_LIST_ERROR);
        cr_expect_eq(aj_mcp_list_names(r, names, 8, &n), -EPROTO);
        json_decref(r);

        /* A list longer than the relay checks is refused, not passed unfiltered. */
        json_t *big = json_pack("{s:{s:[]}}", "result", "tools");
        json_t *tools = json_object_get(json_object_get(big, "result"), "tools");
        for (int i = 0; i <= AJ_MCP_MAX_TOOLS; i++)
                json_array_append_new(tools, json_pack("{s:s}", "name", "t"));
        const char **many = calloc(AJ_MCP_MAX_TOOLS + 1, sizeof(*many));
        cr_expect_eq(aj_mcp_list_names(big, many, AJ_MCP_MAX_TOOLS + 1, &n), -E2BIG);
        free(many);
        json_decref(big);
}

/* A tools/list response whose tools the filter cannot judge is never passed on: not by
 * the relay (AJ_MCP_LIST_UNJUDGED), and aj_mcp_list_filter() writes nothing for it. */
Test(mcp, tools_list_unjudged_shapes)
{
        static const char *const unjudged[] = {
                "{\"id\":1,\"result\":{\"items\":[{\"name\":\"write_file\"}]}}",       /* tools elsewhere */
                "{\"id\":1,\"result\":{\"tools\":{\"0\":{\"name\":\"write_file\"}}}}", /* not an array */
                "{\"id\":1,\"result\":[{\"name\":\"write_file\"}]}",                   /* not an object */
                "{\"id\":1,\"result\":\"write_file\"}",
                "{\"id\":1,\"result\":null}",
                "{\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"},\"result\":{\"items\":[]}}",
                "{\"id\":1,\"error\":null,\"result\":{\"tools\":[{\"name\":\"write_file\"}]}}",
                "{\"id\":1}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(unjudged); i++) {
                json_t *r = parse(unjudged[i]);
                const char *names[4];
                size_t n = 0, removed = 0;
                cr_expect_eq(aj_mcp_list_kind(r), AJ_MCP_LIST_UNJUDGED, "%s", unjudged[i]);
                cr_expect_eq(aj_mcp_list_names(r, names, 4, &n), -EPROTO, "%s", unjudged[i]);
                cr_expect_null(aj_mcp_list_filter(r, keep_not_write, &(int){ 0 }, &removed), "%s", unjudged[i]);
                json_decref(r);
        }
        json_t *r = parse("{\"id\":1,\"result\":{\"tools\":[],\"nextCursor\":\"c\"}}");
        cr_expect_eq(aj_mcp_list_kind(r), AJ_MCP_LIST_TOOLS, "an empty page of a paginated list is a list");
        json_decref(r);
}
