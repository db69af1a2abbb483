/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Agents' own hook systems, translated to the broker (pure; src/agent-hooks.c). An agent
 * such as Claude Code runs a command before and after each tool call with the event as
 * JSON on stdin and reads its answer from the exit status and stdout;
 * `agentjail meter hook AGENT` (src/cli/meter-hook.c) is that command inside a jail. This
 * module turns the event into a broker request, the broker's reply (or a failure, or the
 * wait for an approval running out) into the agent's answer, and writes the settings that
 * install the hook (`agentjail run --hooks AGENT`). Everything in an event is the agent's:
 * sizes are bounded and every failure answers so that the agent does not run the tool.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef enum {
        AJ_AGENT_CLAUDE_CODE,
        AJ_AGENT_GEMINI,
        AJ_AGENT_CODEX,
        AJ_AGENT_COUNT,
} AjAgentKind;

/* What the adapter answers when an approval is still held as its wait ends. */
typedef enum {
        AJ_HOOK_ON_TIMEOUT_DENY, /* the default: fail closed */
        AJ_HOOK_ON_TIMEOUT_ASK,  /* Claude Code's own permission prompt decides (others: deny) */
} AjHookOnTimeout;

typedef enum {
        AJ_HOOK_EVENT_PRE,  /* before a tool call: a broker "tool" request */
        AJ_HOOK_EVENT_POST, /* after it: a broker "tool_result" */
} AjHookEventKind;

/* Bytes of one hook event read from stdin (Claude Code's PostToolUse carries the tool's
 * whole output); a larger event is refused whole. */
#define AJ_HOOK_MAX_INPUT (8 * 1024 * 1024)
/* Canonical bytes of a tool's arguments sent to the broker as they are; larger arguments
 * have their long strings shortened (AJ_HOOK_SHORT_STRING bytes kept, with the length and
 * the sha256 of the whole), and are refused if still larger. */
#define AJ_HOOK_MAX_ARGS (48 * 1024)
#define AJ_HOOK_LONG_STRING 1024
#define AJ_HOOK_SHORT_STRING 256
/* The hook timeout `agentjail run --hooks` writes into the settings, and how long the
 * adapter it installs waits for a held approval: the agent kills a hook at its timeout,
 * so the adapter answers first. */
#define AJ_HOOK_TIMEOUT_S 600
#define AJ_HOOK_WAIT_S (AJ_HOOK_TIMEOUT_S - 10)
#define AJ_HOOK_MAX_WAIT_S (24 * 3600)

typedef struct {
        AjAgentKind agent;
        AjHookEventKind kind;
        char *event_name;  /* as the agent named it: "PreToolUse", "BeforeTool"... */
        char *tool_name;   /* the broker's name: "claude.Bash" */
        char *call_id;     /* NULL: none given (pre: the broker assigns one) */
        json_t *arguments; /* pre: the tool's input (shortened when too large) */
        bool shortened;    /* arguments had long strings cut */
        bool failed;       /* post: the tool reported an error */
} AjHookEvent;

/* The agent's answer: exit status, what to print on stdout (NULL: nothing) and on
 * stderr (NULL: nothing). */
typedef struct {
        int status;
        char *out;
        char *err;
} AjHookAnswer;

/* "claude-code" ... -> kind; -EINVAL for an unknown name. */
int aj_agent_from_name(const char *name, AjAgentKind *ret);
const char *aj_agent_name(AjAgentKind agent);
/* "claude-code, gemini, codex": the accepted names, for messages. */
const char *aj_agent_names(void);
/* The prefix of the tool names the broker sees: "claude", "gemini", "codex". */
const char *aj_agent_tool_prefix(AjAgentKind agent);

/* One event (text of len bytes, not NUL-terminated necessarily) -> ev. -EINVAL with a
 * message naming the field; -EMSGSIZE for input over AJ_HOOK_MAX_INPUT or arguments that
 * stay too large; -EOPNOTSUPP for an event the adapter does not handle. */
int aj_hook_event_parse(AjAgentKind agent, const char *text, size_t len, AjHookEvent *ret, AjError *ret_error);
void aj_hook_event_done(AjHookEvent *ev);

/* The broker request line (no '\n') for ev, with envelope id `id`. */
int aj_hook_event_request(const AjHookEvent *ev, json_int_t id, char **ret);

/* The broker's reply line to the request with envelope id `id` -> the agent's answer.
 * Anything but a verdict (an error reply, another id, garbage) answers as a failure. */
int aj_hook_answer_reply(const AjHookEvent *ev, const char *reply, json_int_t id, AjHookAnswer *ret);
/* The adapter stopped waiting for a held approval after wait_s seconds. */
int aj_hook_answer_timeout(const AjHookEvent *ev, AjHookOnTimeout on_timeout, unsigned wait_s, AjHookAnswer *ret);
/* A failure (bad input, no broker, ...): the message on stderr and the status that makes
 * the agent refuse the tool call; ev NULL when the event itself could not be read. */
int aj_hook_answer_failure(AjAgentKind agent, const AjHookEvent *ev, const char *message, AjHookAnswer *ret);
void aj_hook_answer_done(AjHookAnswer *a);

/* The agent's settings document (JSON text) installing `command` as its hook before and
 * after every tool call, with timeout_s as the hook's timeout. */
int aj_hook_settings(AjAgentKind agent, const char *command, unsigned timeout_s, char **ret);
/* Where that document goes inside the jail; NULL for an agent `--hooks` cannot install. */
const char *aj_hook_settings_path(AjAgentKind agent);
/* The agents `agentjail run --hooks` installs, for messages. */
#define AJ_HOOK_SETTINGS_AGENTS "claude-code"
/* The command the settings run, with the directory of the agentjail binary and the
 * broker's socket as the jail sees them: "BIN_DIR/agentjail meter hook AGENT --wait
 * AJ_HOOK_WAIT_S --broker SOCKET" (the socket pinned: settings the agent can write may
 * set the environment its hooks get). */
int aj_hook_command(AjAgentKind agent, const char *bin_dir, const char *broker, char **ret);
