/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Agents' hook events <-> broker messages (pure). See agent-hooks.h.
 *
 * Claude Code (docs: code.claude.com/docs/en/hooks): a command hook gets the event as JSON
 * on stdin ("hook_event_name", "tool_name", "tool_input", "tool_use_id", "tool_response",
 * ...). Exit 0 with `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
 * "permissionDecision": "allow"|"deny"|"ask", "permissionDecisionReason": "..."}}` decides
 * a call; exit 2 is a blocking error (the call is not made, stderr goes to the model); any
 * other status is a non-blocking error (the call goes ahead). So every failure before a
 * tool call exits 2 here: a broken hook must never let a call through. After a call there
 * is nothing left to block: a failure there exits 1 (a notice for the user).
 *
 * Codex uses the same event names, fields and deny (it allows with an empty answer and
 * has no "ask" a hook may give). Gemini CLI names its
 * events BeforeTool/AfterTool, gives no call id, and reads `{"decision": "allow"|"deny",
 * "reason": "..."}`; its exit 2 blocks too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-hooks.h"
#include "agentjail/broker.h"
#include "util/macros.h"
#include "util/parse.h"
#include "util/sha256.h"

/* clang-format off */
static const struct {
        const char *name, *prefix;
        const char *pre, *post, *post_failure; /* the agent's event names */
} agents[AJ_AGENT_COUNT] = {
        [AJ_AGENT_CLAUDE_CODE] = { "claude-code", "claude", "PreToolUse", "PostToolUse", "PostToolUseFailure" },
        [AJ_AGENT_GEMINI]      = { "gemini",      "gemini", "BeforeTool", "AfterTool",   NULL },
        [AJ_AGENT_CODEX]       = { "codex",       "codex",  "PreToolUse", "PostToolUse", NULL },
};
/* clang-format on */

/* Exit statuses the agents act on (the same for the three). */
enum {
        EXIT_DECIDED = 0,  /* stdout holds the decision */
        EXIT_NOTICE = 1,   /* non-blocking error: the call (already made) stands */
        EXIT_BLOCKING = 2, /* blocking error: the call is not made */
};

int aj_agent_from_name(const char *name, AjAgentKind *ret)
{
        for (int i = 0; name && i < AJ_AGENT_COUNT; i++)
                if (streq(agents[i].name, name)) {
                        *ret = (AjAgentKind)i;
                        return 0;
                }
        return -EINVAL;
}

const char *aj_agent_name(AjAgentKind agent) { return agent < AJ_AGENT_COUNT ? agents[agent].name : "?"; }
const char *aj_agent_names(void) { return "claude-code, codex, gemini"; }
const char *aj_agent_tool_prefix(AjAgentKind agent) { return agent < AJ_AGENT_COUNT ? agents[agent].prefix : "?"; }

void aj_hook_event_done(AjHookEvent *ev)
{
        if (!ev)
                return;
        free(ev->event_name);
        free(ev->tool_name);
        free(ev->call_id);
        json_decref(ev->arguments);
        *ev = (AjHookEvent){};
}

void aj_hook_answer_done(AjHookAnswer *a)
{
        if (!a)
                return;
        free(a->out);
        free(a->err);
        *a = (AjHookAnswer){};
}

/* The longest prefix of s (at most max bytes) that does not end inside a UTF-8 sequence. */
static size_t utf8_prefix(const char *s, size_t max)
{
        size_t n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        return n;
}

/* Strings longer than AJ_HOOK_LONG_STRING -> their first bytes, their length and the
 * sha256 of the whole: the call stays recognisable to an operator, its digest stable. */
static int shorten_strings(json_t *v, json_t **ret)
{
        if (json_is_string(v) && json_string_length(v) > AJ_HOOK_LONG_STRING) {
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                uint8_t d[AJ_SHA256_SIZE];
                char hex[AJ_SHA256_HEX_SIZE];
                aj_sha256(s, len, d);
                _cleanup_free_ char *text = NULL;
                if (asprintf(&text, "%.*s... [agentjail: %zu bytes, sha256 %s]",
                             (int)utf8_prefix(s, AJ_HOOK_SHORT_STRING), s, len, aj_sha256_hex(d, hex)) < 0)
                        return -ENOMEM;
                *ret = json_string(text);
                return *ret ? 1 : -ENOMEM;
        }
        if (json_is_object(v)) {
                const char *k;
                json_t *m, *n;
                json_object_foreach (v, k, m) {
                        int r = shorten_strings(m, &n);
                        if (r < 0)
                                return r;
                        if (r > 0 && json_object_set_new(v, k, n) < 0)
                                return -ENOMEM;
                }
        } else if (json_is_array(v)) {
                size_t i;
                json_t *m, *n;
                json_array_foreach (v, i, m) {
                        int r = shorten_strings(m, &n);
                        if (r < 0)
                                return r;
                        if (r > 0 && json_array_set_new(v, i, n) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

static size_t canonical_size(json_t *v)
{
        return json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* tool_input (any JSON value; an object for the agents here) within AJ_HOOK_MAX_ARGS. */
static int take_arguments(AjHookEvent *ev, json_t *input, AjError *ret_error)
{
        if (!input) {
                ev->arguments = json_null();
                return 0;
        }
        if (canonical_size(input) <= AJ_HOOK_MAX_ARGS) {
                ev->arguments = json_incref(input);
                return 0;
        }
        json_t *copy = json_deep_copy(input);
        if (!copy)
                return -ENOMEM;
        json_t *n = NULL;
        int r = shorten_strings(copy, &n);
        if (r > 0) {
                json_decref(copy);
                copy = n;
        }
        if (r < 0 || canonical_size(copy) > AJ_HOOK_MAX_ARGS) {
                json_decref(copy);
                return r < 0 ? r
                             : aj_error_set(ret_error, -EMSGSIZE,
                                            "field \"tool_input\": more than %d bytes even with its long strings "
                                            "shortened",
                                            AJ_HOOK_MAX_ARGS);
        }
        ev->arguments = copy;
        ev->shortened = true;
        return 0;
}

/* Did the tool say it failed? Claude Code's tools answer objects of their own shapes;
 * these are the members that mean an error in them. */
static bool response_failed(json_t *resp)
{
        if (!json_is_object(resp))
                return false;
        json_t *v;
        if (json_is_true(json_object_get(resp, "is_error")) || json_is_true(json_object_get(resp, "isError")) ||
            json_is_true(json_object_get(resp, "interrupted")))
                return true;
        if (json_is_false(json_object_get(resp, "success")))
                return true;
        v = json_object_get(resp, "error");
        if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_string(v) && json_string_length(v) == 0))
                return true;
        return false;
}

/* Gemini CLI gives no call id: one derived from the session and the call, the same before
 * and after it (identical calls in one session share it). */
static int derived_call_id(json_t *doc, const char *tool_name, json_t *args, char **ret)
{
        const char *session = json_string_value(json_object_get(doc, "session_id"));
        _cleanup_free_ char *canon = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!canon)
                return -ENOMEM;
        AjSha256 c;
        uint8_t d[AJ_SHA256_SIZE];
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256_init(&c);
        aj_sha256_update(&c, session ? session : "", session ? strlen(session) + 1 : 1);
        aj_sha256_update(&c, tool_name, strlen(tool_name) + 1);
        aj_sha256_update(&c, canon, strlen(canon));
        aj_sha256_final(&c, d);
        aj_sha256_hex(d, hex);
        return asprintf(ret, "%s-%.24s", aj_agent_tool_prefix(AJ_AGENT_GEMINI), hex) < 0 ? -ENOMEM : 0;
}

/* hook_event_name: which of the agent's events this is (a failure event is a post event
 * that failed). */
static int event_kind(AjAgentKind agent, json_t *doc, const char **ret_name, AjHookEventKind *ret_kind,
                      bool *ret_failed, AjError *ret_error)
{
        json_t *v = json_object_get(doc, "hook_event_name");
        if (!json_is_string(v))
                return aj_error_set(ret_error, -EINVAL, "field \"hook_event_name\": missing or not a string");
        const char *event = json_string_value(v);
        AjHookEventKind kind;
        bool failed = false;
        if (streq(event, agents[agent].pre))
                kind = AJ_HOOK_EVENT_PRE;
        else if (streq(event, agents[agent].post))
                kind = AJ_HOOK_EVENT_POST;
        else if (agents[agent].post_failure && streq(event, agents[agent].post_failure)) {
                kind = AJ_HOOK_EVENT_POST;
                failed = true;
        } else {
                /* Another agent's pre-tool event (the hook installed for the wrong agent) is
                 * refused as an error: a call must not go ahead on a misconfiguration. */
                bool pre = false;
                for (int i = 0; i < AJ_AGENT_COUNT; i++)
                        pre = pre || streq(event, agents[i].pre);
                return aj_error_set(ret_error, pre ? -EINVAL : -EOPNOTSUPP,
                                    "field \"hook_event_name\": \"%.64s\" is not an event the %s hook handles (%s, %s)",
                                    event, agents[agent].name, agents[agent].pre, agents[agent].post);
        }
        *ret_name = event;
        *ret_kind = kind;
        *ret_failed = failed;
        return 0;
}

/* The call's fields, borrowed from doc: tool_name (a plain name that fits the broker's
 * names once prefixed), tool_input (an object; required before a call), tool_use_id
 * (optional, NULL when absent). */
static int call_fields(AjAgentKind agent, json_t *doc, AjHookEventKind kind, const char **ret_tool, json_t **ret_input,
                       const char **ret_call_id, AjError *ret_error)
{
        size_t max_name = AJ_BROKER_MAX_NAME - strlen(agents[agent].prefix) - 1;
        json_t *v = json_object_get(doc, "tool_name");
        if (!json_is_string(v) || !aj_plain_name(json_string_value(v), json_string_length(v), max_name))
                return aj_error_set(ret_error, -EINVAL,
                                    "field \"tool_name\": expected a string of 1 to %zu characters without spaces or "
                                    "control characters",
                                    max_name);
        const char *tool = json_string_value(v);

        json_t *input = json_object_get(doc, "tool_input");
        if (input && !json_is_object(input))
                return aj_error_set(ret_error, -EINVAL, "field \"tool_input\": expected an object");
        if (!input && kind == AJ_HOOK_EVENT_PRE)
                return aj_error_set(ret_error, -EINVAL, "field \"tool_input\": missing");

        v = json_object_get(doc, "tool_use_id");
        if (v && !json_is_null(v) &&
            (!json_is_string(v) || !aj_plain_name(json_string_value(v), json_string_length(v), AJ_BROKER_MAX_ID)))
                return aj_error_set(ret_error, -EINVAL,
                                    "field \"tool_use_id\": expected a string of 1 to %d characters without spaces or "
                                    "control characters",
                                    AJ_BROKER_MAX_ID);
        *ret_tool = tool;
        *ret_input = input;
        *ret_call_id = json_string_value(v);
        return 0;
}

int aj_hook_event_parse(AjAgentKind agent, const char *text, size_t len, AjHookEvent *ret, AjError *ret_error)
{
        if (agent >= AJ_AGENT_COUNT)
                return -EINVAL;
        if (len > AJ_HOOK_MAX_INPUT)
                return aj_error_set(ret_error, -EMSGSIZE, "the hook event is larger than %d bytes", AJ_HOOK_MAX_INPUT);
        json_error_t je;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!doc)
                return aj_error_set(ret_error, -EINVAL, "the hook event is not JSON: %s (line %d)", je.text, je.line);
        if (!json_is_object(doc))
                return aj_error_set(ret_error, -EINVAL, "the hook event is not a JSON object");

        AjHookEvent ev = { .agent = agent };
        const char *event = NULL, *tool = NULL, *call_id = NULL;
        json_t *input = NULL;
        int r = event_kind(agent, doc, &event, &ev.kind, &ev.failed, ret_error);
        if (r < 0)
                return r;
        r = call_fields(agent, doc, ev.kind, &tool, &input, &call_id, ret_error);
        if (r < 0)
                return r;

        r = -ENOMEM;
        ev.event_name = strdup(event);
        if (!ev.event_name || asprintf(&ev.tool_name, "%s.%s", agents[agent].prefix, tool) < 0) {
                ev.tool_name = NULL;
                goto fail;
        }
        if (call_id && !(ev.call_id = strdup(call_id)))
                goto fail;
        if (ev.kind == AJ_HOOK_EVENT_PRE) {
                r = take_arguments(&ev, input, ret_error);
                if (r < 0)
                        goto fail;
        } else {
                json_t *resp = json_object_get(doc, "tool_response");
                ev.failed = ev.failed || response_failed(resp);
        }
        if (!ev.call_id && agent == AJ_AGENT_GEMINI) {
                json_t *args = ev.arguments;
                if (!args && input && take_arguments(&ev, input, NULL) == 0)
                        args = ev.arguments;
                r = derived_call_id(doc, ev.tool_name, args ? args : json_null(), &ev.call_id);
                if (r < 0)
                        goto fail;
        }
        if (ev.kind == AJ_HOOK_EVENT_POST && !ev.call_id) {
                r = aj_error_set(ret_error, -EINVAL,
                                 "field \"tool_use_id\": missing (the result cannot be matched "
                                 "to its call)");
                goto fail;
        }
        *ret = ev;
        return 0;
fail:
        aj_hook_event_done(&ev);
        return r;
}

int aj_hook_event_request(const AjHookEvent *ev, json_int_t id, char **ret)
{
        _cleanup_(json_decrefp)
                json_t *req = json_pack("{s:I, s:i}", AJ_BROKER_F_ID, id, AJ_BROKER_F_V, AJ_BROKER_VERSION);
        if (!req)
                return -ENOMEM;
        int r = 0;
        if (ev->kind == AJ_HOOK_EVENT_PRE) {
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_TOOL));
                r |= json_object_set_new(req, AJ_BROKER_F_TOOL_NAME, json_string(ev->tool_name));
                if (ev->call_id)
                        r |= json_object_set_new(req, AJ_BROKER_F_TOOL_CALL_ID, json_string(ev->call_id));
                r |= json_object_set(req, AJ_BROKER_F_TOOL_ARGS, ev->arguments ? ev->arguments : json_null());
        } else {
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_TOOL_RESULT));
                r |= json_object_set_new(req, AJ_BROKER_F_TOOL_CALL_ID, json_string(ev->call_id));
                r |= json_object_set_new(req, AJ_BROKER_F_STATUS, json_string(ev->failed ? "error" : "ok"));
        }
        if (r)
                return -ENOMEM;
        char *s = json_dumps(req, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        if (strlen(s) > AJ_BROKER_MAX_LINE) {
                free(s);
                return -EMSGSIZE;
        }
        *ret = s;
        return 0;
}

/* A decision before a tool call, in the agent's words. */
static int answer_decision(const AjHookEvent *ev, const char *decision, const char *reason, AjHookAnswer *ret)
{
        _cleanup_(json_decrefp) json_t *out = NULL;
        /* Codex takes a hook's unknown answers as a failed hook and runs the tool: an
         * allowance is its empty answer (its own approval settings then apply). */
        if (ev->agent == AJ_AGENT_CODEX && streq(decision, "allow"))
                out = json_object();
        else if (ev->agent == AJ_AGENT_GEMINI)
                out = json_pack("{s:s, s:s}", "decision", streq(decision, "ask") ? "deny" : decision, "reason", reason);
        else
                out = json_pack("{s:{s:s, s:s, s:s}}", "hookSpecificOutput", "hookEventName", ev->event_name,
                                "permissionDecision", decision, "permissionDecisionReason", reason);
        if (!out)
                return -ENOMEM;
        char *s = json_dumps(out, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        *ret = (AjHookAnswer){ .status = EXIT_DECIDED, .out = s };
        return 0;
}

int aj_hook_answer_failure(AjAgentKind agent, const AjHookEvent *ev, const char *message, AjHookAnswer *ret)
{
        (void)agent;
        char *s = NULL;
        /* After the call nothing is left to block: a notice. Before it, or when it is not
         * even known which event this is: a blocking error, so the call is not made. */
        bool after = ev && ev->kind == AJ_HOOK_EVENT_POST;
        if (asprintf(&s, "agentjail: %s%s\n", message,
                     after ? " (the result was not recorded)" : " (the tool call is refused)") < 0)
                return -ENOMEM;
        *ret = (AjHookAnswer){ .status = after ? EXIT_NOTICE : EXIT_BLOCKING, .err = s };
        return 0;
}

static int failuref(const AjHookEvent *ev, AjHookAnswer *ret, const char *fmt, ...) _printf_(3, 4);
static int failuref(const AjHookEvent *ev, AjHookAnswer *ret, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *m = NULL;
        int r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return aj_hook_answer_failure(ev->agent, ev, m, ret);
}

int aj_hook_answer_reply(const AjHookEvent *ev, const char *reply, json_int_t id, AjHookAnswer *ret)
{
        _cleanup_(json_decrefp) json_t *doc = json_loads(reply ? reply : "", 0, NULL);
        if (!json_is_object(doc))
                return failuref(ev, ret, "the broker's reply is not a JSON object");
        json_t *rid = json_object_get(doc, AJ_BROKER_F_ID);
        bool ok = json_is_true(json_object_get(doc, AJ_BROKER_F_OK));
        if (!ok) {
                json_t *e = json_object_get(doc, AJ_BROKER_F_ERROR);
                return failuref(ev, ret, "the broker refused the request: %s: %s",
                                json_string_value(json_object_get(e, "code")) ?: "error",
                                json_string_value(json_object_get(e, "message")) ?: "no message");
        }
        if (!json_is_integer(rid) || json_integer_value(rid) != id)
                return failuref(ev, ret, "the broker answered another request");
        if (ev->kind == AJ_HOOK_EVENT_POST) {
                *ret = (AjHookAnswer){ .status = EXIT_DECIDED };
                return 0;
        }

        const char *verdict = json_string_value(json_object_get(doc, AJ_BROKER_F_VERDICT));
        const char *reason = json_string_value(json_object_get(doc, AJ_BROKER_F_REASON));
        const char *by = json_string_value(json_object_get(json_object_get(doc, "approval"), "by"));
        _cleanup_free_ char *text = NULL;
        int r;
        if (verdict && streq(verdict, AJ_BROKER_ALLOW)) {
                if (by)
                        r = asprintf(&text, "agentjail: %s approved by %s", ev->tool_name, by);
                else
                        r = asprintf(&text, "agentjail: %s allowed by the run's policy", ev->tool_name);
                return r < 0 ? -ENOMEM : answer_decision(ev, "allow", text, ret);
        }
        if (verdict && streq(verdict, AJ_BROKER_DENY)) {
                r = asprintf(&text, "agentjail: %s denied: %s", ev->tool_name, reason ?: "no reason given");
                return r < 0 ? -ENOMEM : answer_decision(ev, "deny", text, ret);
        }
        if (verdict && streq(verdict, AJ_BROKER_BREACH)) {
                r = asprintf(&text, "agentjail: %s would cross a cap: %s (the run is being stopped)", ev->tool_name,
                             reason ?: "no reason given");
                return r < 0 ? -ENOMEM : answer_decision(ev, "deny", text, ret);
        }
        return failuref(ev, ret, "the broker's reply has no verdict");
}

int aj_hook_answer_timeout(const AjHookEvent *ev, AjHookOnTimeout on_timeout, unsigned wait_s, AjHookAnswer *ret)
{
        if (ev->kind == AJ_HOOK_EVENT_POST)
                return failuref(ev, ret, "no answer from the broker within %us", wait_s);
        bool ask = on_timeout == AJ_HOOK_ON_TIMEOUT_ASK && ev->agent == AJ_AGENT_CLAUDE_CODE;
        _cleanup_free_ char *text = NULL;
        if (asprintf(&text, "agentjail: %s is waiting for an operator's approval; no decision within %us%s",
                     ev->tool_name, wait_s, ask ? ": asking here instead" : "") < 0)
                return -ENOMEM;
        return answer_decision(ev, ask ? "ask" : "deny", text, ret);
}

int aj_hook_settings(AjAgentKind agent, const char *command, unsigned timeout_s, char **ret)
{
        _cleanup_(json_decrefp) json_t *doc = NULL;
        switch (agent) {
        case AJ_AGENT_CLAUDE_CODE: {
                /* "*" matches every tool (MCP tools included); the timeout is in seconds. */
                doc = json_pack("{s:{s:[{s:s, s:[{s:s, s:s, s:i}]}], s:[{s:s, s:[{s:s, s:s, s:i}]}]}}", "hooks",
                                agents[agent].pre, "matcher", "*", "hooks", "type", "command", "command", command,
                                "timeout", (int)timeout_s, agents[agent].post, "matcher", "*", "hooks", "type",
                                "command", "command", command, "timeout", (int)timeout_s);
                /* The workspace's .claude/settings.json is the agent's to write, and Claude
                 * Code gives hook processes the settings' "env": no hook but these (another
                 * could rewrite a call's input after the operator approved it), and pinned
                 * values for what would run something else in the hook's place (a shell
                 * prefix, the shell, its startup file) or make it fail open (the dynamic
                 * loader's variables: a broken library path exits 127, which Claude Code
                 * takes for a non-blocking error). Managed "env" wins over the project's. */
                static const char *const pinned[][2] = {
                        { "CLAUDE_CODE_SHELL_PREFIX", "" },
                        { "SHELL", "/bin/sh" },
                        { "BASH_ENV", "" },
                        { "ENV", "" },
                        { "LD_PRELOAD", "" },
                        { "LD_LIBRARY_PATH", "" },
                        { "LD_AUDIT", "" },
                        { "LD_DEBUG", "" },
                        { "LD_DEBUG_OUTPUT", "" },
                        { "LD_PROFILE", "" },
                        { "LD_ORIGIN_PATH", "" },
                        { "LD_DYNAMIC_WEAK", "" },
                        { "LD_HWCAP_MASK", "" },
                        { "GLIBC_TUNABLES", "" },
                        { "GCONV_PATH", "" },
                        { "LOCPATH", "" },
                        { "MALLOC_TRACE", "" },
                };
                json_t *env = json_object();
                for (size_t i = 0; env && i < ARRAY_SIZE(pinned); i++)
                        if (json_object_set_new(env, pinned[i][0], json_string(pinned[i][1])) < 0) {
                                json_decref(env);
                                env = NULL;
                        }
                if (doc && (!env || json_object_set_new(doc, "env", env) < 0 ||
                            json_object_set_new(doc, "allowManagedHooksOnly", json_true()) < 0)) {
                        json_decref(doc);
                        doc = NULL;
                }
                break;
        }
        default:
                return -EOPNOTSUPP;
        }
        if (!doc)
                return -ENOMEM;
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int aj_hook_command(AjAgentKind agent, const char *bin_dir, const char *broker, char **ret)
{
        if (agent >= AJ_AGENT_COUNT)
                return -EINVAL;
        return asprintf(ret, "%s/agentjail meter hook %s --wait %u --broker %s", bin_dir, agents[agent].name,
                        AJ_HOOK_WAIT_S, broker) < 0
                       ? -ENOMEM
                       : 0;
}

const char *aj_hook_settings_path(AjAgentKind agent)
{
        /* Managed settings: read-only in the jail (its root is), and above the agent's own
         * ~/.claude, which it may write. */
        return agent == AJ_AGENT_CLAUDE_CODE ? "/etc/claude-code/managed-settings.json" : NULL;
}
