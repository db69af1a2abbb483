/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker protocol: what crosses the jail boundary on $AGENTJAIL_BROKER.
 * A Unix stream socket; one JSON object per line each way; every request is
 * answered by exactly one line carrying the request's "id" (null when the
 * request had no usable id). docs/broker-protocol.md has the full description
 * and examples. Field names follow the OpenTelemetry GenAI conventions.
 */
#pragma once

#define AJ_BROKER_VERSION 1
#define AJ_BROKER_ENV "AGENTJAIL_BROKER" /* socket path inside the jail */

/* Limits (the broker enforces them; a client should stay below them). */
#define AJ_BROKER_MAX_LINE (64 * 1024)    /* bytes of one request line, without the '\n' */
#define AJ_BROKER_MAX_CONNECTIONS 64      /* concurrent; more get one error line and are closed */
#define AJ_BROKER_MAX_OUTPUT (256 * 1024) /* unread reply bytes per connection before it is closed */
#define AJ_BROKER_MAX_ID 128              /* bytes of a string "id" or call id */
#define AJ_BROKER_MAX_NAME 256            /* bytes of a tool or model name */
#define AJ_BROKER_MAX_TOKENS (1ULL << 40) /* per field of one "tokens" request */
#define AJ_BROKER_MAX_LOGGED_ARGS 1024    /* arguments larger than this are logged truncated */
#define AJ_BROKER_MAX_UNDO 4096           /* tool_result "undo" records accepted per run (rollback plans this many) */
#define AJ_BROKER_MAX_DEPTH 64            /* arrays and objects nested in one request line, the line's own included */
#define AJ_BROKER_MAX_APPROVALS 4096      /* calls held for approval per run (each id held names one call) */

/* Envelope */
#define AJ_BROKER_F_ID "id" /* string (1..MAX_ID bytes) or integer, echoed in the reply */
#define AJ_BROKER_F_V "v"   /* protocol version, required, must be AJ_BROKER_VERSION */
#define AJ_BROKER_F_OP "op"
#define AJ_BROKER_F_OK "ok"       /* reply: true, or false with "error" */
#define AJ_BROKER_F_ERROR "error" /* reply: {"code": AJ_BROKER_E_*, "message": "..."} */

/* Operations */
#define AJ_BROKER_OP_TOOL "tool"               /* before a tool call */
#define AJ_BROKER_OP_TOOL_RESULT "tool_result" /* after a tool call */
#define AJ_BROKER_OP_TOKENS "tokens"           /* model usage */
#define AJ_BROKER_OP_USAGE "usage"             /* read-only: usage against every cap */
#define AJ_BROKER_OP_CHECK "check"             /* read-only: the verdict the tools rules give a name */

/* Request fields */
#define AJ_BROKER_F_TOOL_NAME "gen_ai.tool.name"
#define AJ_BROKER_F_TOOL_CALL_ID "gen_ai.tool.call.id"     /* optional in "tool": assigned when absent */
#define AJ_BROKER_F_TOOL_ARGS "gen_ai.tool.call.arguments" /* any JSON value, optional */
#define AJ_BROKER_F_STATUS "status"                        /* tool_result: "ok" | "error" */
#define AJ_BROKER_F_UNDO "undo"                            /* tool_result: object, optional */
#define AJ_BROKER_F_MODEL "gen_ai.request.model"
#define AJ_BROKER_F_INPUT_TOKENS "gen_ai.usage.input_tokens" /* includes the cached ones */
#define AJ_BROKER_F_OUTPUT_TOKENS "gen_ai.usage.output_tokens"
#define AJ_BROKER_F_CACHED_TOKENS "gen_ai.usage.cache_read.input_tokens" /* <= input_tokens */

/* Reply fields */
#define AJ_BROKER_F_VERDICT "verdict"                     /* tool: allow|deny|breach; tokens: ok|breach */
#define AJ_BROKER_F_REASON "reason"                       /* deny, breach */
#define AJ_BROKER_F_CAP "cap"                             /* breach: which cap */
#define AJ_BROKER_F_LIMIT "limit"                         /* breach: the cap's value */
#define AJ_BROKER_F_VALUE "value"                         /* breach: what usage would have become */
#define AJ_BROKER_F_USAGE "usage"                         /* {cap: {"limit", "used", "remaining"}} */
#define AJ_BROKER_F_COST "cost_usd"                       /* tokens: cost of this request */
#define AJ_BROKER_F_PRICE "price"                         /* tokens: "known" | "unknown" (unknown model: cost 0) */
#define AJ_BROKER_F_APPROVAL_REQUIRED "approval_required" /* check: a call would be held for approval */

/* Verdicts */
#define AJ_BROKER_ALLOW "allow"
#define AJ_BROKER_DENY "deny"
#define AJ_BROKER_BREACH "breach"
#define AJ_BROKER_OK "ok"

/* Error codes ("error"."code") */
#define AJ_BROKER_E_BAD_JSON "bad_json"           /* the line is not JSON */
#define AJ_BROKER_E_LINE_TOO_LONG "line_too_long" /* discarded up to the next newline */
#define AJ_BROKER_E_BAD_REQUEST "bad_request"     /* missing field, wrong type or value; message names it */
#define AJ_BROKER_E_BAD_VERSION "unsupported_version"
#define AJ_BROKER_E_UNKNOWN_OP "unknown_op"
#define AJ_BROKER_E_BUSY "too_many_connections" /* sent once, then the connection is closed */
#define AJ_BROKER_E_RATE_LIMITED "rate_limited" /* tool_result/tokens over logs.reports_per_sec: not recorded */
#define AJ_BROKER_E_INTERNAL "internal"         /* e.g. the event could not be recorded: nothing counted */
