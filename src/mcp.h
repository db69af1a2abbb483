/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp`'s message rewriting (pure: no I/O, no logging). The relay
 * (src/cli/mcp*.c) sits between an MCP client and an MCP server on stdio, one JSON-RPC
 * message per line each way, and asks the broker before every tools/call. These
 * functions judge one line from either side and build the lines the relay writes:
 * forwarded messages (re-serialized from what was judged), JSON-RPC errors, tools/list
 * results without the tools the profile denies. docs/agents.md, "MCP servers".
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One message (line) either way, without its newline: a longer one is refused. */
#define AJ_MCP_MAX_LINE (8 * 1024 * 1024)
/* The server's name in tool names (mcp.SERVER.TOOL): [A-Za-z0-9_-], at most this long. */
#define AJ_MCP_MAX_SERVER 64
/* A JSON-RPC id the relay keeps track of (tools/call, tools/list), in its compact JSON. */
#define AJ_MCP_MAX_ID 256
/* Tools in one tools/list result the relay checks; a longer list is refused. */
#define AJ_MCP_MAX_TOOLS 1024

/* JSON-RPC 2.0 error codes; the -3200x are agentjail's own (server errors). */
#define AJ_MCP_E_PARSE (-32700)
#define AJ_MCP_E_INVALID_REQUEST (-32600)
#define AJ_MCP_E_INVALID_PARAMS (-32602)
#define AJ_MCP_E_INTERNAL (-32603)
#define AJ_MCP_E_DENIED (-32001)      /* the broker denied the call (tools rules, approval) */
#define AJ_MCP_E_BREACH (-32002)      /* the call would cross a cap: the run is being frozen */
#define AJ_MCP_E_UNAVAILABLE (-32003) /* the broker could not be asked: nothing forwarded */

typedef enum {
        AJ_MCP_FORWARD,    /* write `line` to the other side */
        AJ_MCP_REPLY,      /* client side only: answer the client with `line`; nothing forwarded */
        AJ_MCP_TOOL_CALL,  /* client: a tools/call request; ask the broker, then forward `line` */
        AJ_MCP_TOOLS_LIST, /* client: a tools/list request; forward `line`, filter its response */
        AJ_MCP_REQUEST,    /* client: another request; forward `line`, pass on its response alone */
        AJ_MCP_RESPONSE,   /* server: a response (result or error) to request `id`; `line` as is */
        AJ_MCP_DROP,       /* nothing is written; `why` says why (for stderr) */
} AjMcpAction;

typedef struct {
        AjMcpAction action;
        json_t *msg;                    /* the parsed message (NULL when it did not parse) */
        json_t *id;                     /* borrowed from msg: its "id", NULL when it has none */
        char id_key[AJ_MCP_MAX_ID + 1]; /* the id's compact JSON ("" when none or too long) */
        const char *tool;               /* TOOL_CALL: params.name (borrowed from msg) */
        json_t *arguments;              /* TOOL_CALL: params.arguments, NULL when absent (borrowed) */
        char *line;                     /* FORWARD, REPLY, TOOL_CALL, TOOLS_LIST, RESPONSE: what to write */
        const char *why;                /* DROP: a static reason */
        /* client, notifications/cancelled: the key of params.requestId ("" otherwise) */
        char cancel_key[AJ_MCP_MAX_ID + 1];
} AjMcpMsg;

void aj_mcp_msg_done(AjMcpMsg *m);

/* The server's name from the command (its basename): characters outside [A-Za-z0-9_-]
 * become '_', cut to AJ_MCP_MAX_SERVER; "server" when nothing is left. */
void aj_mcp_server_from_command(const char *cmd, char ret[AJ_MCP_MAX_SERVER + 1]);
bool aj_mcp_server_name_valid(const char *name);

/* A line from the client. Everything the relay forwards is the message as parsed and
 * serialized again (compact), so the server reads exactly what was judged (duplicate keys
 * are refused). Fails closed: what does not parse, a batch, a malformed tools/call or a
 * request whose id is not an integer or a string (of at most AJ_MCP_MAX_ID - 2 bytes) is
 * answered with a JSON-RPC error and never forwarded; a tools/call notification (no id:
 * nothing to answer) is dropped. Every request is tracked by the relay, so that only the
 * response to a request in flight reaches the client, by its id exactly (a client may
 * read "7" as 7: the server's answer to a call it was never sent). `is_pending` says
 * whether an id (its key) is in use by a request still in flight: a new request may not
 * reuse it. 0 or -ENOMEM. */
int aj_mcp_from_client(const char *line, size_t len, const char *server,
                       bool (*is_pending)(void *userdata, const char *id_key), void *userdata, AjMcpMsg *ret);

/* A line from the server: a response is RESPONSE (the caller matches its id, `id_key` ""
 * when it has none: a response to nothing the client waits for), requests
 * and notifications FORWARD (the line as is), and so is an error with id null (JSON-RPC
 * 2.0 section 5: the server could not read a request's id; it matches no request in
 * flight, so it answers none; a null-id result is a RESPONSE); what does not parse and batches are
 * DROPPED (a server must write nothing else on stdout, and a batch could carry a
 * tools/list result past the filter). 0 or -ENOMEM. */
int aj_mcp_from_server(const char *line, size_t len, AjMcpMsg *ret);

/* "mcp.SERVER.TOOL", or -ENAMETOOLONG past the broker's name limit. */
int aj_mcp_tool_name(const char *server, const char *tool, char *buf, size_t size);

/* The broker call id of a tools/call: "mcp-PID-ID" from a JSON-RPC id that is an integer
 * or a string of [A-Za-z0-9._:-] (at most 64), else "mcp-PID-gN" with N = `generated`. */
void aj_mcp_call_id(long pid, const json_t *id, unsigned long long generated, char *buf, size_t size);

/* A JSON-RPC error response line (malloc'd) to `id` (NULL: null); `data` is stolen. */
char *aj_mcp_error_line(const json_t *id, int code, const char *message, json_t *data);

/* The error the client gets for a tools/call the broker did not allow: `reply` is the
 * broker's reply (verdict deny or breach, or ok:false); `call_id` the call's broker id. */
char *aj_mcp_refusal_line(const json_t *id, const char *tool_name, const char *call_id, const json_t *reply);

/* "ok" or "error" (a JSON-RPC error, or result.isError true) for a tools/call response. */
const char *aj_mcp_result_status(const json_t *response);

/* What a response to tools/list is to the filter. Only two shapes are passed on: an error
 * (nothing listed), and a result object whose tools are an array (filtered). Anything else
 * (a result that is not an object, tools elsewhere or not an array, a result beside an
 * error) lists no tool the filter could judge, and a client reading it loosely would take
 * what it holds unfiltered: the relay answers the client with an error instead. */
typedef enum {
        AJ_MCP_LIST_TOOLS,    /* result.tools is an array: filter it */
        AJ_MCP_LIST_ERROR,    /* an error and no result: pass it on */
        AJ_MCP_LIST_UNJUDGED, /* neither: not passed on */
} AjMcpListKind;

AjMcpListKind aj_mcp_list_kind(const json_t *response);

/* The tool names of a tools/list response's result.tools (borrowed; entries without a
 * string name are left out: the filter drops them). -E2BIG past AJ_MCP_MAX_TOOLS; -EPROTO
 * when the response is not AJ_MCP_LIST_TOOLS. */
int aj_mcp_list_names(const json_t *response, const char **names, size_t max, size_t *ret_n);

/* The response with the tools `keep` says no to (and the entries without a name)
 * removed from result.tools, as a line (malloc'd). *ret_removed counts them. NULL when
 * out of memory or the response is not AJ_MCP_LIST_TOOLS (nothing judged is written). */
char *aj_mcp_list_filter(json_t *response, bool (*keep)(void *userdata, const char *name), void *userdata,
                         size_t *ret_removed);
