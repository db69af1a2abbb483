/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp`'s messages: each line from the client or the server, judged by src/mcp.c
 * and acted on (forwarded, answered, asked of the broker, filtered), and the pending table
 * of the requests the relay tracks (cli/mcp-relay.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/mcp-relay.h"

/* ---- the pending table ---- */

void mcp_pending_free(Pending *p)
{
        json_decref(p->id);
        free(p->line);
        json_decref(p->response);
        free(p->names);
        free(p->keep);
        unsigned gen = p->gen + 1;
        *p = (Pending){ .gen = gen };
}

static Pending *pending_find(Relay *r, const char *id_key)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                if (r->pending[i].state != P_FREE && streq(r->pending[i].id_key, id_key))
                        return &r->pending[i];
        return NULL;
}

static bool is_pending(void *userdata, const char *id_key) { return pending_find(userdata, id_key) != NULL; }

static Pending *pending_new(Relay *r, const AjMcpMsg *m)
{
        for (size_t i = 0; i < MAX_PENDING; i++) {
                Pending *p = &r->pending[i];
                if (p->state != P_FREE)
                        continue;
                p->id = json_deep_copy(m->id);
                if (!p->id)
                        return NULL;
                snprintf(p->id_key, sizeof(p->id_key), "%s", m->id_key);
                return p;
        }
        return NULL;
}

void mcp_reply_to_client(Relay *r, const json_t *id, int code, const char *message)
{
        _cleanup_free_ char *line = aj_mcp_error_line(id, code, message, NULL);
        if (line)
                mcp_writer_add(r, &r->client_out, line);
}

/* Whether another tracked call (awaiting its verdict, or made and awaiting its result) has
 * this broker call id. */
static bool call_id_in_use(const Relay *r, const Pending *self, const char *call_id)
{
        for (size_t i = 0; i < MAX_PENDING; i++) {
                const Pending *p = &r->pending[i];
                if (p != self && (p->state == P_VERDICT || p->state == P_CALL) && streq(p->call_id, call_id))
                        return true;
        }
        return false;
}

/* The call's broker id, never one a call still tracked has: the JSON-RPC ids 7 and "7" (two
 * requests, both in flight) made the same mcp-PID-7, and so did a plain id "g4" and a
 * generated one, and the broker took the second for the first (its result reported for the
 * other call, the other's lost). A generated id instead, the next one free. */
static void tool_call_id(Relay *r, Pending *p, const json_t *id)
{
        aj_mcp_call_id(getpid(), id, ++r->next_generated, p->call_id, sizeof(p->call_id));
        while (call_id_in_use(r, p, p->call_id))
                aj_mcp_call_id(getpid(), NULL, ++r->next_generated, p->call_id, sizeof(p->call_id));
}

/* ---- lines ---- */

static void client_tool_call(Relay *r, AjMcpMsg *m)
{
        char tool[AJ_BROKER_MAX_NAME + 1], id[64];
        if (strlen(m->line) > MAX_CALL_LINE)
                return mcp_reply_to_client(r, m->id, AJ_MCP_E_INVALID_PARAMS,
                                           "agentjail mcp: a tools/call is limited to 128 KiB (its arguments go to the "
                                           "broker, whose requests are at most 64 KiB)");
        if (aj_mcp_tool_name(r->server, m->tool, tool, sizeof(tool)) < 0)
                return mcp_reply_to_client(r, m->id, AJ_MCP_E_INVALID_PARAMS,
                                           "tools/call: \"params.name\" is too long");
        Pending *p = pending_new(r, m);
        if (!p)
                return mcp_reply_to_client(r, m->id, AJ_MCP_E_INTERNAL,
                                           "agentjail mcp: too many requests in flight; try again when some are answered");
        p->state = P_VERDICT;
        snprintf(p->tool, sizeof(p->tool), "%s", tool);
        tool_call_id(r, p, m->id);
        p->line = TAKE_PTR(m->line);
        snprintf(id, sizeof(id), "t:%zu:%u", (size_t)(p - r->pending), p->gen);
        json_t *req = json_pack("{s:s, s:s, s:s, s:O?}", AJ_BROKER_F_OP, AJ_BROKER_OP_TOOL, AJ_BROKER_F_TOOL_NAME, tool,
                                AJ_BROKER_F_TOOL_CALL_ID, p->call_id, AJ_BROKER_F_TOOL_ARGS, m->arguments);
        int s = req ? mcp_broker_send(r, req, id) : -ENOMEM;
        json_decref(req);
        if (s < 0 && p->state == P_VERDICT) {
                char why[128];
                snprintf(why, sizeof(why), "%s",
                         s == -EMSGSIZE ? "the arguments are too large for the broker (its requests are at most 64 KiB)"
                         : s == -ELOOP  ? "the arguments nest deeper than the broker takes (its requests at most 64 "
                                          "levels)"
                                        : strerror(-s));
                mcp_refuse_unavailable(r, p, why);
                mcp_pending_free(p);
        }
}

/* notifications/cancelled for a tracked request: its slot is freed, so a client that gives
 * up on calls (an SDK's request timeout) does not fill the table. A call awaiting its
 * verdict is kept until the verdict, then not made; one the server runs is reported as
 * ended in error (its outcome will not be seen). */
static void client_cancelled(Relay *r, const char *key)
{
        Pending *p = pending_find(r, key);
        if (!p)
                return;
        switch (p->state) {
        case P_VERDICT:
                p->cancelled = true;
                p->id_key[0] = 0; /* the id may be used again */
                break;
        case P_CALL:
                mcp_send_tool_result(r, p->call_id, "error");
                mcp_pending_free(p);
                break;
        default:
                mcp_pending_free(p);
                break;
        }
}

void mcp_on_client_line(Relay *r, const char *line, size_t len)
{
        AjMcpMsg m = {};
        if (aj_mcp_from_client(line, len, r->server, is_pending, r, &m) < 0) {
                mcp_reply_to_client(r, NULL, AJ_MCP_E_INTERNAL, "agentjail mcp: out of memory; nothing was forwarded");
                return;
        }
        switch (m.action) {
        case AJ_MCP_REPLY:
                mcp_writer_add(r, &r->client_out, m.line);
                break;
        case AJ_MCP_DROP:
                mcp_note("dropped from the client: %s", m.why);
                break;
        case AJ_MCP_TOOL_CALL:
                client_tool_call(r, &m);
                break;
        case AJ_MCP_TOOLS_LIST:
        case AJ_MCP_REQUEST: {
                Pending *p = pending_new(r, &m);
                if (!p) {
                        mcp_reply_to_client(r, m.id, AJ_MCP_E_INTERNAL,
                                            "agentjail mcp: too many requests in flight; try again when some are answered");
                        break;
                }
                p->state = m.action == AJ_MCP_TOOLS_LIST ? P_LIST : P_REQUEST;
                mcp_writer_add(r, &r->server_in, m.line);
                break;
        }
        default:
                if (m.cancel_key[0])
                        client_cancelled(r, m.cancel_key);
                mcp_writer_add(r, &r->server_in, m.line);
                break;
        }
        aj_mcp_msg_done(&m);
}

static void server_list_response(Relay *r, Pending *p, AjMcpMsg *m)
{
        switch (aj_mcp_list_kind(m->msg)) {
        case AJ_MCP_LIST_ERROR: /* nothing listed, nothing to filter */
                mcp_writer_add(r, &r->client_out, m->line);
                return mcp_pending_free(p);
        case AJ_MCP_LIST_UNJUDGED:
                mcp_note("dropped from the server: a tools/list response with no tools array to filter");
                mcp_reply_to_client(r, p->id, AJ_MCP_E_INTERNAL,
                                    "agentjail mcp: the server's tools/list response has no tools array to filter "
                                    "(a result that is not an object, its tools elsewhere or not an array, or a "
                                    "result beside an error); it was not passed on");
                return mcp_pending_free(p);
        case AJ_MCP_LIST_TOOLS:
                break;
        }
        const char **names = calloc(AJ_MCP_MAX_TOOLS, sizeof(*names));
        size_t n = 0;
        int s = names ? aj_mcp_list_names(m->msg, names, AJ_MCP_MAX_TOOLS, &n) : -ENOMEM;
        if (s < 0) {
                free(names);
                mcp_reply_to_client(r, p->id, AJ_MCP_E_INTERNAL,
                                    s == -E2BIG
                                            ? "agentjail mcp: the server listed more tools than agentjail checks (1024)"
                                            : "agentjail mcp: out of memory");
                return mcp_pending_free(p);
        }
        p->state = P_CHECKING;
        p->response = json_incref(m->msg);
        p->names = names;
        p->n_names = n;
        p->keep = malloc(n ? n : 1);
        if (!p->keep) {
                mcp_list_unavailable(r, p, "out of memory");
                return mcp_pending_free(p);
        }
        memset(p->keep, -1, n);
        mcp_checks_send(r); /* and the list is done when every name is answered */
}

void mcp_on_server_line(Relay *r, const char *line, size_t len)
{
        AjMcpMsg m = {};
        if (aj_mcp_from_server(line, len, &m) < 0) {
                mcp_note("out of memory; a message from the server was dropped");
                return;
        }
        Pending *p = m.action == AJ_MCP_RESPONSE && m.id_key[0] ? pending_find(r, m.id_key) : NULL;
        if (m.action == AJ_MCP_DROP) {
                mcp_note("dropped from the server: %s", m.why);
        } else if (p && p->state == P_CALL) {
                mcp_send_tool_result(r, p->call_id, aj_mcp_result_status(m.msg));
                mcp_writer_add(r, &r->client_out, m.line);
                mcp_pending_free(p);
        } else if (p && p->state == P_LIST) {
                server_list_response(r, p, &m);
        } else if (p && p->state == P_REQUEST) {
                mcp_writer_add(r, &r->client_out, m.line);
                mcp_pending_free(p);
        } else if (p) {
                /* A response to a call not yet allowed (the server answered what it was never
                 * sent), or a list's second (the first is being checked). Not passed on. */
                mcp_note("dropped from the server: a response to a call it was not sent, or a second one");
        } else if (m.action == AJ_MCP_RESPONSE) {
                /* To no request in flight, by its id exactly: one answered or cancelled already,
                 * or one never sent under another spelling of a pending id ("7" for 7, which a
                 * client may take for the answer to a call awaiting its verdict). */
                mcp_note("dropped from the server: a response to no request in flight");
        } else {
                mcp_writer_add(r, &r->client_out, m.line);
        }
        aj_mcp_msg_done(&m);
}
