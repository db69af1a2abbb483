/* SPDX-License-Identifier: Apache-2.0 */
/* agentjail mcp's message rewriting: see mcp.h. */
#include "mcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentjail/broker.h"
#include "util/macros.h"

void aj_mcp_msg_done(AjMcpMsg *m)
{
        json_decref(m->msg);
        free(m->line);
        *m = (AjMcpMsg){};
}

static bool server_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

void aj_mcp_server_from_command(const char *cmd, char ret[AJ_MCP_MAX_SERVER + 1])
{
        const char *base = strrchr(cmd, '/');
        base = base ? base + 1 : cmd;
        size_t n = 0;
        for (; base[n] && n < AJ_MCP_MAX_SERVER; n++)
                ret[n] = server_char(base[n]) ? base[n] : '_';
        ret[n] = 0;
        if (n == 0)
                snprintf(ret, AJ_MCP_MAX_SERVER + 1, "server");
}

bool aj_mcp_server_name_valid(const char *name)
{
        size_t n = strlen(name);
        if (n == 0 || n > AJ_MCP_MAX_SERVER)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!server_char(name[i]))
                        return false;
        return true;
}

int aj_mcp_tool_name(const char *server, const char *tool, char *buf, size_t size)
{
        int n = snprintf(buf, size, "mcp.%s.%s", server, tool);
        if (n < 0 || (size_t)n >= size || n > AJ_BROKER_MAX_NAME)
                return -ENAMETOOLONG;
        return 0;
}

static bool id_char(char c) { return server_char(c) || c == '.' || c == ':'; }

void aj_mcp_call_id(long pid, const json_t *id, unsigned long long generated, char *buf, size_t size)
{
        if (json_is_integer(id)) {
                snprintf(buf, size, "mcp-%ld-%lld", pid, (long long)json_integer_value(id));
                return;
        }
        if (json_is_string(id)) {
                const char *s = json_string_value(id);
                size_t n = json_string_length(id);
                bool plain = n > 0 && n <= 64 && strlen(s) == n;
                for (size_t i = 0; plain && i < n; i++)
                        plain = id_char(s[i]);
                if (plain) {
                        snprintf(buf, size, "mcp-%ld-%s", pid, s);
                        return;
                }
        }
        snprintf(buf, size, "mcp-%ld-g%llu", pid, generated);
}

/* The id's compact JSON; "" when it is longer than AJ_MCP_MAX_ID. */
static void id_key(const json_t *id, char ret[AJ_MCP_MAX_ID + 1])
{
        ret[0] = 0;
        if (!id)
                return;
        char *s = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        if (s && strlen(s) <= AJ_MCP_MAX_ID)
                snprintf(ret, AJ_MCP_MAX_ID + 1, "%s", s);
        free(s);
}

char *aj_mcp_error_line(const json_t *id, int code, const char *message, json_t *data)
{
        json_t *err = json_pack("{s:i, s:s}", "code", code, "message", message);
        if (err && data && json_object_set_new(err, "data", data) < 0) {
                json_decref(err);
                return NULL;
        }
        if (!err) {
                json_decref(data);
                return NULL;
        }
        json_t *o = json_pack("{s:s, s:O?, s:o}", "jsonrpc", "2.0", "id", (json_t *)id, "error", err);
        if (!o)
                return NULL;
        if (!id && json_object_set_new(o, "id", json_null()) < 0) {
                json_decref(o);
                return NULL;
        }
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

char *aj_mcp_refusal_line(const json_t *id, const char *tool_name, const char *call_id, const json_t *reply)
{
        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
        const char *reason = json_string_value(json_object_get(reply, AJ_BROKER_F_REASON));
        char message[1024];
        int code;

        if (!json_is_true(json_object_get(reply, AJ_BROKER_F_OK))) {
                json_t *e = json_object_get(reply, AJ_BROKER_F_ERROR);
                code = AJ_MCP_E_UNAVAILABLE;
                verdict = "error";
                reason = json_string_value(json_object_get(e, "message"));
                snprintf(message, sizeof(message), "agentjail could not check the tool call %s with the broker: %s",
                         tool_name, reason ?: "no reply");
        } else if (verdict && streq(verdict, AJ_BROKER_BREACH)) {
                code = AJ_MCP_E_BREACH;
                snprintf(message, sizeof(message),
                         "agentjail stopped the tool call %s: %s (a cap was crossed; the run is being frozen)",
                         tool_name, reason ?: "breach");
        } else {
                code = AJ_MCP_E_DENIED;
                verdict = AJ_BROKER_DENY;
                snprintf(message, sizeof(message), "agentjail denied the tool call %s: %s", tool_name,
                         reason ?: "no reason given");
        }
        json_t *data = json_pack("{s:s, s:s, s:s?, s:s?}", "verdict", verdict, AJ_BROKER_F_TOOL_NAME, tool_name,
                                 AJ_BROKER_F_REASON, reason, AJ_BROKER_F_TOOL_CALL_ID, call_id);
        return aj_mcp_error_line(id, code, message, data);
}

static int reply_error(AjMcpMsg *m, const json_t *id, int code, const char *message)
{
        m->action = AJ_MCP_REPLY;
        m->line = aj_mcp_error_line(id, code, message, NULL);
        return m->line ? 0 : -ENOMEM;
}

static bool plain_name(const json_t *v)
{
        if (!json_is_string(v))
                return false;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

/* JSON-RPC 2.0: a request or a notification has a string "method" and neither "result" nor
 * "error"; a response has no "method". A message with a method that is not a string, or
 * with a method and a result or an error, is neither, and clients read it differently: the
 * Python SDK takes {"id":7,"method":null,"result":...} for the response to request 7 (its
 * request model wants a string method, its response model allows other members). The
 * relay passes on what is not a response: such a message from the server answered a call
 * awaiting the broker's verdict, or a listing before its filter, past the relay. */
static bool neither_request_nor_response(const json_t *msg)
{
        json_t *method = json_object_get(msg, "method");
        return method && (!json_is_string(method) || json_object_get(msg, "result") || json_object_get(msg, "error"));
}

static int judge_tool_call(AjMcpMsg *m, const char *server)
{
        char name[AJ_BROKER_MAX_NAME + 64];
        json_t *params = json_object_get(m->msg, "params");
        if (!json_is_object(params))
                return reply_error(m, m->id, AJ_MCP_E_INVALID_PARAMS, "tools/call: \"params\" must be an object");
        json_t *tool = json_object_get(params, "name");
        if (!plain_name(tool))
                return reply_error(m, m->id, AJ_MCP_E_INVALID_PARAMS,
                                   "tools/call: \"params.name\" must be a non-empty string without spaces or "
                                   "control characters");
        if (aj_mcp_tool_name(server, json_string_value(tool), name, sizeof(name)) < 0)
                return reply_error(m, m->id, AJ_MCP_E_INVALID_PARAMS, "tools/call: \"params.name\" is too long");
        json_t *args = json_object_get(params, "arguments");
        if (args && !json_is_object(args))
                return reply_error(m, m->id, AJ_MCP_E_INVALID_PARAMS,
                                   "tools/call: \"params.arguments\" must be an object");
        m->action = AJ_MCP_TOOL_CALL;
        m->tool = json_string_value(tool);
        m->arguments = args;
        return 0;
}

int aj_mcp_from_client(const char *line, size_t len, const char *server,
                       bool (*is_pending)(void *userdata, const char *id_key), void *userdata, AjMcpMsg *ret)
{
        AjMcpMsg m = {};
        json_error_t je;
        int r;

        if (len > 0 && line[len - 1] == '\r')
                len--;
        m.msg = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!m.msg) {
                char message[256];
                snprintf(message, sizeof(message), "agentjail mcp: not JSON (column %d: %s); nothing was forwarded",
                         je.column, je.text);
                r = reply_error(&m, NULL, AJ_MCP_E_PARSE, message);
                goto out;
        }
        if (json_is_array(m.msg)) {
                r = reply_error(&m, NULL, AJ_MCP_E_INVALID_REQUEST,
                                "agentjail mcp: JSON-RPC batches are not supported (MCP 2025-06-18 has none); send "
                                "each message on its own line");
                goto out;
        }
        if (!json_is_object(m.msg)) {
                r = reply_error(&m, NULL, AJ_MCP_E_INVALID_REQUEST, "agentjail mcp: a message must be a JSON object");
                goto out;
        }
        if (neither_request_nor_response(m.msg)) {
                r = reply_error(&m, NULL, AJ_MCP_E_INVALID_REQUEST,
                                "agentjail mcp: a message with a \"method\" that is not a string, or with a method "
                                "and a \"result\" or an \"error\", is neither a request nor a response; nothing was "
                                "forwarded");
                goto out;
        }
        m.id = json_object_get(m.msg, "id");
        id_key(m.id, m.id_key);
        json_t *method = json_object_get(m.msg, "method");
        const char *meth = json_string_value(method);
        bool request = method && m.id;
        if (request) {
                /* The relay matches each response to its request by id, so a request needs an id
                 * it can keep (MCP: an integer or a string), and none may reuse the id of one
                 * still in flight. */
                if (!(json_is_string(m.id) || json_is_integer(m.id)) || !m.id_key[0]) {
                        r = reply_error(&m, NULL, AJ_MCP_E_INVALID_REQUEST,
                                        "agentjail mcp: the id of a request must be an integer or a string of at "
                                        "most 254 bytes");
                        goto out;
                }
                if (is_pending && is_pending(userdata, m.id_key)) {
                        r = reply_error(&m, m.id, AJ_MCP_E_INVALID_REQUEST,
                                        "agentjail mcp: this id is already used by a request in flight");
                        goto out;
                }
        }
        if (meth && streq(meth, "tools/call")) {
                if (!m.id) {
                        m.action = AJ_MCP_DROP;
                        m.why = "a tools/call without an id (a notification) is not forwarded";
                        r = 0;
                        goto out;
                }
                r = judge_tool_call(&m, server);
                if (r < 0 || m.action == AJ_MCP_REPLY)
                        goto out;
        } else if (meth && streq(meth, "tools/list") && m.id) {
                m.action = AJ_MCP_TOOLS_LIST;
        } else if (request) {
                m.action = AJ_MCP_REQUEST;
        } else if (meth && streq(meth, "notifications/cancelled")) {
                m.action = AJ_MCP_FORWARD;
                id_key(json_object_get(json_object_get(m.msg, "params"), "requestId"), m.cancel_key);
        } else {
                m.action = AJ_MCP_FORWARD;
        }
        m.line = json_dumps(m.msg, JSON_COMPACT);
        r = m.line ? 0 : -ENOMEM;
out:
        if (r < 0) {
                aj_mcp_msg_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int aj_mcp_from_server(const char *line, size_t len, AjMcpMsg *ret)
{
        AjMcpMsg m = {};
        json_error_t je;

        if (len > 0 && line[len - 1] == '\r')
                len--;
        m.msg = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!m.msg) {
                m.action = AJ_MCP_DROP;
                m.why = "a line that is not JSON";
        } else if (json_is_array(m.msg)) {
                m.action = AJ_MCP_DROP;
                m.why = "a JSON-RPC batch (not supported)";
        } else if (!json_is_object(m.msg)) {
                m.action = AJ_MCP_DROP;
                m.why = "a JSON value that is not an object";
        } else if (neither_request_nor_response(m.msg)) {
                m.action = AJ_MCP_DROP;
                m.why = "neither a request nor a response (a \"method\" that is not a string, or a method with a "
                        "result or an error), which a client could take for the answer to a request in flight";
        } else {
                m.id = json_object_get(m.msg, "id");
                id_key(m.id, m.id_key);
                bool has_result = json_object_get(m.msg, "result"), has_error = json_object_get(m.msg, "error");
                bool response = !json_object_get(m.msg, "method") && (has_result || has_error);
                /* JSON-RPC 2.0 section 5: a server that could not read a request's id answers
                 * with an error whose id is null. No request the relay tracks has that id (an
                 * integer or a string), so it can pass for no answer: the client gets it. A
                 * null-id result answers nothing and stays a response to no request. */
                bool unreadable_id = response && json_is_null(m.id) && has_error && !has_result;
                m.action = response && !unreadable_id ? AJ_MCP_RESPONSE : AJ_MCP_FORWARD;
                m.line = strndup(line, len);
                if (!m.line) {
                        aj_mcp_msg_done(&m);
                        return -ENOMEM;
                }
        }
        *ret = m;
        return 0;
}

const char *aj_mcp_result_status(const json_t *response)
{
        if (json_object_get(response, "error"))
                return "error";
        json_t *result = json_object_get(response, "result");
        if (!json_is_object(result) || json_is_true(json_object_get(result, "isError")))
                return "error";
        return "ok";
}

AjMcpListKind aj_mcp_list_kind(const json_t *response)
{
        json_t *result = json_object_get(response, "result"), *error = json_object_get(response, "error");
        if (error && !result)
                return AJ_MCP_LIST_ERROR;
        if (!error && json_is_object(result) && json_is_array(json_object_get(result, "tools")))
                return AJ_MCP_LIST_TOOLS;
        return AJ_MCP_LIST_UNJUDGED;
}

/* The tools array of a response that is AJ_MCP_LIST_TOOLS, else NULL. */
static json_t *list_tools(const json_t *response)
{
        if (aj_mcp_list_kind(response) != AJ_MCP_LIST_TOOLS)
                return NULL;
        return json_object_get(json_object_get(response, "result"), "tools");
}

int aj_mcp_list_names(const json_t *response, const char **names, size_t max, size_t *ret_n)
{
        json_t *tools = list_tools(response), *t;
        size_t i, n = 0;
        if (!tools)
                return -EPROTO;
        if (json_array_size(tools) > AJ_MCP_MAX_TOOLS)
                return -E2BIG;
        json_array_foreach (tools, i, t) {
                json_t *name = json_object_get(t, "name");
                if (!plain_name(name))
                        continue;
                if (n >= max)
                        return -E2BIG;
                names[n++] = json_string_value(name);
        }
        *ret_n = n;
        return 0;
}

char *aj_mcp_list_filter(json_t *response, bool (*keep)(void *userdata, const char *name), void *userdata,
                         size_t *ret_removed)
{
        json_t *tools = list_tools(response);
        if (!tools)
                return NULL;
        size_t n = json_array_size(tools), removed = 0;
        /* Every entry is judged before any is removed: `keep` may compare with names borrowed
         * from the entries (aj_mcp_list_names()'s, as the relay's does), which a removal frees. */
        _cleanup_free_ bool *drop = calloc(n ? n : 1, sizeof(*drop));
        if (!drop)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                json_t *name = json_object_get(json_array_get(tools, i), "name");
                drop[i] = !(plain_name(name) && keep(userdata, json_string_value(name)));
        }
        for (size_t i = n; i-- > 0;) {
                if (!drop[i])
                        continue;
                if (json_array_remove(tools, i) < 0)
                        return NULL;
                removed++;
        }
        if (ret_removed)
                *ret_removed = removed;
        return json_dumps(response, JSON_COMPACT);
}
