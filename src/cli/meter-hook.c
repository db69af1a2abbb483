/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail meter hook AGENT`: an agent's hook command inside a jail. Reads one hook event
 * on stdin (at most AJ_HOOK_MAX_INPUT bytes), asks the run's broker, answers in the
 * agent's hook format (src/agent-hooks.c translates; this file reads, connects, waits and
 * prints). Fails closed: whatever goes wrong before a tool call answers so that the agent
 * does not make it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-hooks.h"
#include "agentjail/broker.h"
#include "broker.h"
#include "cli/meter-hook.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/parse.h"

/* How long a tool_result report may take (the broker answers those at once). */
#define RESULT_WAIT_S 30

static const char help[] = "Usage: agentjail meter hook AGENT [--wait SECONDS] [--on-timeout deny|ask] [--broker PATH]\n"
                           "   (inside a jail: AGENT's hook command; `agentjail run --hooks claude-code` installs it)\n"
                           "\n"
                           "Reads one hook event of AGENT (claude-code, codex, gemini) as JSON on stdin and answers\n"
                           "in AGENT's hook format: before a tool call the run's broker decides (name\n"
                           "AGENT.TOOL, e.g. claude.Bash; arguments the tool's input) and the answer allows or\n"
                           "denies it with the reason; after the call its result is reported (tool_result).\n"
                           "\n"
                           "Options:\n"
                           "  --wait SECONDS         how long to wait for an operator's decision on a call the\n"
                           "                         profile's approvals hold (default 590: under the 600s hook\n"
                           "                         timeout `--hooks` sets)\n"
                           "  --on-timeout deny|ask  the answer when that wait runs out: deny (the default), or\n"
                           "                         ask (Claude Code's own permission prompt decides; the\n"
                           "                         other agents deny)\n"
                           "  --broker PATH          the broker's socket, whatever $" AJ_BROKER_ENV " says (`--hooks`\n"
                           "                         pins the jail's: the agent's own settings may set the\n"
                           "                         environment its hooks run with)\n"
                           "\n"
                           "Fails closed: a malformed or oversized event, no $" AJ_BROKER_ENV " (not in a jail), a\n"
                           "broker error or any other failure before a tool call exits 2, which makes the agent\n"
                           "refuse the call (the reason on stderr); after a call it exits 1 (a notice).\n";

int aj_meter_hook_parse(int argc, char **argv, AjMeterHookCmd *ret, AjError *ret_error)
{
        AjMeterHookCmd c = { .wait_s = AJ_HOOK_WAIT_S, .on_timeout = AJ_HOOK_ON_TIMEOUT_DENY };
        const char *agent = NULL;

        for (int i = 2; i < argc; i++) {
                const char *a = argv[i];
                if (streq(a, "--help") || streq(a, "-h")) {
                        *ret = (AjMeterHookCmd){ .help = true };
                        return 0;
                }
                const char *value = NULL;
                bool wait = strncmp(a, "--wait", 6) == 0 && (a[6] == 0 || a[6] == '=');
                bool on_timeout = strncmp(a, "--on-timeout", 12) == 0 && (a[12] == 0 || a[12] == '=');
                bool broker = strncmp(a, "--broker", 8) == 0 && (a[8] == 0 || a[8] == '=');
                if (wait || on_timeout || broker) {
                        const char *eq = strchr(a, '=');
                        if (eq)
                                value = eq + 1;
                        else if (i + 1 < argc)
                                value = argv[++i];
                        else
                                return aj_error_set(ret_error, -EINVAL, "%s needs a value", a);
                }
                if (wait) {
                        uint64_t s;
                        if (aj_parse_u64(value, &s) < 0 || s < 1 || s > AJ_HOOK_MAX_WAIT_S)
                                return aj_error_set(ret_error, -EINVAL,
                                                    "--wait: expected seconds from 1 to %d, got \"%s\"",
                                                    AJ_HOOK_MAX_WAIT_S, value);
                        c.wait_s = (unsigned)s;
                } else if (on_timeout) {
                        if (streq(value, "deny"))
                                c.on_timeout = AJ_HOOK_ON_TIMEOUT_DENY;
                        else if (streq(value, "ask"))
                                c.on_timeout = AJ_HOOK_ON_TIMEOUT_ASK;
                        else
                                return aj_error_set(ret_error, -EINVAL,
                                                    "--on-timeout: expected \"deny\" or \"ask\", got \"%s\"", value);
                } else if (broker) {
                        if (value[0] != '/' || strlen(value) >= 108)
                                return aj_error_set(ret_error, -EINVAL,
                                                    "--broker: expected an absolute socket path under 108 bytes");
                        c.broker = value;
                } else if (a[0] == '-' && a[1]) {
                        return aj_error_set(ret_error, -EINVAL, "hook: unknown option \"%s\"", a);
                } else if (agent) {
                        return aj_error_set(ret_error, -EINVAL, "hook: unexpected argument \"%s\"", a);
                } else {
                        agent = a;
                }
        }
        if (!agent)
                return aj_error_set(ret_error, -EINVAL, "hook: missing the AGENT (%s)", aj_agent_names());
        if (aj_agent_from_name(agent, &c.agent) < 0)
                return aj_error_set(ret_error, -EINVAL, "hook: unknown agent \"%s\" (expected %s)", agent,
                                    aj_agent_names());
        *ret = c;
        return 0;
}

static int emit(AjHookAnswer *a)
{
        if (a->out) {
                fputs(a->out, stdout);
                fputc('\n', stdout);
        }
        if (a->err)
                fputs(a->err, stderr);
        if (fflush(stdout) != 0)
                return 2; /* the answer was lost: a blocking error, never an allowance */
        return a->status;
}

/* The last resort when even an answer cannot be built (no memory). */
static int emit_failure(AjAgentKind agent, const AjHookEvent *ev, const char *message)
{
        _cleanup_(aj_hook_answer_done) AjHookAnswer a = {};
        if (aj_hook_answer_failure(agent, ev, message, &a) < 0) {
                fprintf(stderr, "agentjail: %s\n", message);
                return 2;
        }
        return emit(&a);
}

int aj_cmd_meter_hook(int argc, char **argv)
{
        AjMeterHookCmd cmd;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_meter_hook_parse(argc, argv, &cmd, &err);
        if (r < 0) {
                fprintf(stderr, "agentjail meter: %s (the tool call is refused)\n", aj_error_text(&err, r));
                return 2;
        }
        if (cmd.help) {
                fputs(help, stdout);
                return 0;
        }
        /* An agent that stopped reading gets a failed write (exit 2), not a death by SIGPIPE,
         * which it would take for a non-blocking error. */
        signal(SIGPIPE, SIG_IGN);

        _cleanup_free_ char *input = NULL;
        size_t len = 0;
        r = aj_read_fd(STDIN_FILENO, AJ_HOOK_MAX_INPUT, &input, &len);
        if (r == -EFBIG)
                return emit_failure(cmd.agent, NULL, "the hook event on stdin is larger than 8 MiB");
        if (r < 0) {
                _cleanup_free_ char *m = NULL;
                if (asprintf(&m, "cannot read the hook event on stdin: %s", strerror(-r)) < 0)
                        m = NULL;
                return emit_failure(cmd.agent, NULL, m ?: "cannot read the hook event on stdin");
        }

        _cleanup_(aj_hook_event_done) AjHookEvent ev = {};
        r = aj_hook_event_parse(cmd.agent, input, len, &ev, &err);
        if (r == -EOPNOTSUPP) {
                /* An event it was not installed for: say so, block nothing (a Stop hook
                 * that exited 2 would keep the agent from ever stopping). */
                fprintf(stderr, "agentjail: %s\n", aj_error_text(&err, r));
                return 1;
        }
        if (r < 0)
                return emit_failure(cmd.agent, NULL, aj_error_text(&err, r));

        const char *path = cmd.broker ?: getenv(AJ_BROKER_ENV);
        if (!path || !*path)
                return emit_failure(cmd.agent, &ev, "$" AJ_BROKER_ENV " is not set (not inside an agentjail run?)");

        json_int_t id = (json_int_t)getpid();
        _cleanup_free_ char *request = NULL, *line = NULL;
        r = aj_hook_event_request(&ev, id, &request);
        if (r < 0)
                return emit_failure(cmd.agent, &ev,
                                    r == -EMSGSIZE ? "the request is larger than the broker accepts"
                                                   : "cannot build the broker request");
        unsigned wait_s = ev.kind == AJ_HOOK_EVENT_PRE ? cmd.wait_s : RESULT_WAIT_S;
        r = aj_meter_round_trip(path, request, (int)wait_s * 1000, &line);
        _cleanup_(aj_hook_answer_done) AjHookAnswer ans = {};
        if (r == -ETIMEDOUT)
                r = aj_hook_answer_timeout(&ev, cmd.on_timeout, wait_s, &ans);
        else if (r < 0) {
                _cleanup_free_ char *m = NULL;
                if (asprintf(&m, "broker '%s': %s", path, strerror(-r)) < 0)
                        m = NULL;
                return emit_failure(cmd.agent, &ev, m ?: "the broker cannot be reached");
        } else
                r = aj_hook_answer_reply(&ev, line, id, &ans);
        if (r < 0)
                return emit_failure(cmd.agent, &ev, "cannot build the answer");
        return emit(&ans);
}
