/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail meter ...`: the broker client for scripts inside a jail. One
 * connection, one request line, one reply line. Argument parsing is pure
 * (aj_meter_cmd_parse) so it is unit tested without a broker.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "broker.h"
#include "cli/meter-hook.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/parse.h"
#include "util/error.h"

#define MAX_REPLY (1024 * 1024)

static const char help[] = "Usage: agentjail meter COMMAND ...   (inside a jail: talks to $" AJ_BROKER_ENV ")\n"
                           "\n"
                           "  tool NAME [--args JSON] [--id ID] [--json]\n"
                           "      Ask before a tool call (waits while the profile's approvals hold it for an\n"
                           "      operator). Exit 0 allowed, 1 denied (reason on stderr),\n"
                           "      3 a cap was crossed (the run is being frozen), 2 usage or protocol error.\n"
                           "  result ID --status ok|error [--undo JSON-OBJECT] [--json]\n"
                           "      Report how a tool call ended; --undo says how to reverse it.\n"
                           "  tokens --model M --input N --output N [--cached-input N] [--json]\n"
                           "      Report model usage (input includes cached input). Exit 0 ok, 3 breach.\n"
                           "  usage [--json]\n"
                           "      Usage against every cap.\n"
                           "  hook AGENT [--wait SECONDS] [--on-timeout deny|ask] [--broker PATH]\n"
                           "      An agent's hook command (claude-code, codex, gemini): one hook event on\n"
                           "      stdin, the answer in the agent's format (see 'agentjail meter hook --help').\n"
                           "\n"
                           "--json prints the broker's reply line as is.\n";

/* "--name VALUE" or "--name=VALUE"; 1 when argv[*i] is that option. */
static int take_option(int argc, char **argv, int *i, const char *name, const char **ret, AjError *ret_error)
{
        size_t n = strlen(name);
        const char *a = argv[*i];
        if (strncmp(a, name, n) != 0)
                return 0;
        if (a[n] == '=') {
                *ret = a + n + 1;
                return 1;
        }
        if (a[n] != 0)
                return 0;
        if (*i + 1 >= argc)
                return aj_error_set(ret_error, -EINVAL, "%s needs a value", name);
        *ret = argv[++*i];
        return 1;
}

static int parse_json_arg(const char *option, const char *text, bool object, AjError *ret_error)
{
        json_error_t je;
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!v)
                return aj_error_set(ret_error, -EINVAL, "%s: invalid JSON: %s", option, je.text);
        bool ok = !object || json_is_object(v);
        json_decref(v);
        if (!ok)
                return aj_error_set(ret_error, -EINVAL, "%s: expected a JSON object", option);
        if (strlen(text) > AJ_BROKER_MAX_LINE / 2)
                return aj_error_set(ret_error, -EINVAL, "%s: too large (at most %d bytes)", option,
                                    AJ_BROKER_MAX_LINE / 2);
        return 0;
}

static int parse_tokens(const char *option, const char *s, uint64_t *ret, AjError *ret_error)
{
        uint64_t v;
        if (aj_parse_u64(s, &v) < 0 || v > AJ_BROKER_MAX_TOKENS)
                return aj_error_set(ret_error, -EINVAL, "%s: expected a number of tokens, got \"%s\"", option, s);
        *ret = v;
        return 0;
}

/* The values given to a meter command, checked; the positional and token counts stored. */
static int check_values(AjMeterCmd *c, const char *positional, const char *input, const char *output,
                        const char *cached, AjError *ret_error)
{
        int r;
        switch (c->kind) {
        case AJ_METER_CMD_TOOL:
                if (!positional)
                        return aj_error_set(ret_error, -EINVAL, "tool: missing the tool NAME");
                if (!aj_plain_name(positional, strlen(positional), AJ_BROKER_MAX_NAME))
                        return aj_error_set(ret_error, -EINVAL, "tool: NAME must be 1 to %d characters without spaces",
                                            AJ_BROKER_MAX_NAME);
                c->name = positional;
                if (c->args && (r = parse_json_arg("--args", c->args, false, ret_error)) < 0)
                        return r;
                if (c->id && !aj_plain_name(c->id, strlen(c->id), AJ_BROKER_MAX_ID))
                        return aj_error_set(ret_error, -EINVAL, "--id: must be 1 to %d characters without spaces",
                                            AJ_BROKER_MAX_ID);
                break;
        case AJ_METER_CMD_RESULT:
                if (!positional)
                        return aj_error_set(ret_error, -EINVAL, "result: missing the call ID");
                if (!aj_plain_name(positional, strlen(positional), AJ_BROKER_MAX_ID))
                        return aj_error_set(ret_error, -EINVAL, "result: ID must be 1 to %d characters without spaces",
                                            AJ_BROKER_MAX_ID);
                c->id = positional;
                if (!c->status)
                        return aj_error_set(ret_error, -EINVAL, "result: --status ok|error is required");
                if (!streq(c->status, "ok") && !streq(c->status, "error"))
                        return aj_error_set(ret_error, -EINVAL, "--status: expected \"ok\" or \"error\", got \"%s\"",
                                            c->status);
                if (c->undo && (r = parse_json_arg("--undo", c->undo, true, ret_error)) < 0)
                        return r;
                break;
        case AJ_METER_CMD_TOKENS:
                if (!c->model || !input || !output)
                        return aj_error_set(ret_error, -EINVAL, "tokens: --model, --input and --output are required");
                if (!aj_plain_name(c->model, strlen(c->model), AJ_BROKER_MAX_NAME))
                        return aj_error_set(ret_error, -EINVAL, "--model: must be 1 to %d characters without spaces",
                                            AJ_BROKER_MAX_NAME);
                if ((r = parse_tokens("--input", input, &c->input, ret_error)) < 0 ||
                    (r = parse_tokens("--output", output, &c->output, ret_error)) < 0 ||
                    (cached && (r = parse_tokens("--cached-input", cached, &c->cached, ret_error)) < 0))
                        return r;
                if (c->cached > c->input)
                        return aj_error_set(ret_error, -EINVAL,
                                            "--cached-input: must not exceed --input (cached tokens are part of "
                                            "the input)");
                break;
        default:
                break;
        }
        return 0;
}

int aj_meter_cmd_parse(int argc, char **argv, AjMeterCmd *ret, AjError *ret_error)
{
        AjMeterCmd c = {};
        const char *positional = NULL, *input = NULL, *output = NULL, *cached = NULL;
        int r;

        if (argc < 2)
                return aj_error_set(ret_error, -EINVAL,
                                    "missing command (tool, result, tokens, usage, hook; see 'agentjail meter --help')");
        const char *cmd = argv[1];
        if (streq(cmd, "--help") || streq(cmd, "-h") || streq(cmd, "help")) {
                *ret = (AjMeterCmd){ .kind = AJ_METER_CMD_HELP };
                return 0;
        }
        if (streq(cmd, "tool"))
                c.kind = AJ_METER_CMD_TOOL;
        else if (streq(cmd, "result"))
                c.kind = AJ_METER_CMD_RESULT;
        else if (streq(cmd, "tokens"))
                c.kind = AJ_METER_CMD_TOKENS;
        else if (streq(cmd, "usage"))
                c.kind = AJ_METER_CMD_USAGE;
        else
                return aj_error_set(ret_error, -EINVAL,
                                    "unknown command \"%s\" (expected tool, result, tokens, usage or hook)", cmd);

        for (int i = 2; i < argc; i++) {
                const char *a = argv[i];
                bool tool = c.kind == AJ_METER_CMD_TOOL, result = c.kind == AJ_METER_CMD_RESULT,
                     tokens = c.kind == AJ_METER_CMD_TOKENS;
                if (streq(a, "--help") || streq(a, "-h")) {
                        *ret = (AjMeterCmd){ .kind = AJ_METER_CMD_HELP };
                        return 0;
                }
                if (streq(a, "--json")) {
                        c.json = true;
                        continue;
                }
#define OPT(cond, name, dst)                                                             \
        if ((cond) && (r = take_option(argc, argv, &i, name, &(dst), ret_error)) != 0) { \
                if (r < 0)                                                               \
                        return r;                                                        \
                continue;                                                                \
        }
                OPT(tool, "--args", c.args)
                OPT(tool, "--id", c.id)
                OPT(result, "--status", c.status)
                OPT(result, "--undo", c.undo)
                OPT(tokens, "--model", c.model)
                OPT(tokens, "--input", input)
                OPT(tokens, "--output", output)
                OPT(tokens, "--cached-input", cached)
#undef OPT
                if (a[0] == '-' && a[1] != 0)
                        return aj_error_set(ret_error, -EINVAL, "%s: unknown option \"%s\"", cmd, a);
                if (positional || !(tool || result))
                        return aj_error_set(ret_error, -EINVAL, "%s: unexpected argument \"%s\"", cmd, a);
                positional = a;
        }

        r = check_values(&c, positional, input, output, cached, ret_error);
        if (r < 0)
                return r;
        *ret = c;
        return 0;
}

int aj_meter_cmd_request(const AjMeterCmd *cmd, json_int_t id, char **ret)
{
        _cleanup_(json_decrefp)
                json_t *req = json_pack("{s:I, s:i}", AJ_BROKER_F_ID, id, AJ_BROKER_F_V, AJ_BROKER_VERSION);
        json_t *v;
        int r = 0;
        if (!req)
                return -ENOMEM;
        switch (cmd->kind) {
        case AJ_METER_CMD_TOOL:
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_TOOL));
                r |= json_object_set_new(req, AJ_BROKER_F_TOOL_NAME, json_string(cmd->name));
                if (cmd->id)
                        r |= json_object_set_new(req, AJ_BROKER_F_TOOL_CALL_ID, json_string(cmd->id));
                if (cmd->args) {
                        v = json_loads(cmd->args, JSON_DECODE_ANY, NULL);
                        if (!v)
                                return -EINVAL;
                        r |= json_object_set_new(req, AJ_BROKER_F_TOOL_ARGS, v);
                }
                break;
        case AJ_METER_CMD_RESULT:
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_TOOL_RESULT));
                r |= json_object_set_new(req, AJ_BROKER_F_TOOL_CALL_ID, json_string(cmd->id));
                r |= json_object_set_new(req, AJ_BROKER_F_STATUS, json_string(cmd->status));
                if (cmd->undo) {
                        v = json_loads(cmd->undo, 0, NULL);
                        if (!v)
                                return -EINVAL;
                        r |= json_object_set_new(req, AJ_BROKER_F_UNDO, v);
                }
                break;
        case AJ_METER_CMD_TOKENS:
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_TOKENS));
                r |= json_object_set_new(req, AJ_BROKER_F_MODEL, json_string(cmd->model));
                r |= json_object_set_new(req, AJ_BROKER_F_INPUT_TOKENS, json_integer((json_int_t)cmd->input));
                r |= json_object_set_new(req, AJ_BROKER_F_OUTPUT_TOKENS, json_integer((json_int_t)cmd->output));
                if (cmd->cached)
                        r |= json_object_set_new(req, AJ_BROKER_F_CACHED_TOKENS, json_integer((json_int_t)cmd->cached));
                break;
        case AJ_METER_CMD_USAGE:
                r |= json_object_set_new(req, AJ_BROKER_F_OP, json_string(AJ_BROKER_OP_USAGE));
                break;
        default:
                return -EINVAL;
        }
        if (r)
                return -ENOMEM;
        char *s = json_dumps(req, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* One request, one reply line (without the newline); -ETIMEDOUT when no reply came within
 * timeout_ms (negative: no limit). */
int aj_meter_round_trip(const char *path, const char *request, int timeout_ms, char **ret_line)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        _cleanup_free_ char *line = NULL;
        if (asprintf(&line, "%s\n", request) < 0)
                return -ENOMEM;
        /* send(MSG_NOSIGNAL): a broker that went away is an error message, not SIGPIPE. */
        for (size_t done = 0, len = strlen(line); done < len;) {
                ssize_t n = send(fd, line + done, len - done, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        size_t size = 4096, have = 0;
        _cleanup_free_ char *buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        int64_t deadline = timeout_ms >= 0 ? aj_now_monotonic_ms() + timeout_ms : 0;
        for (;;) {
                if (timeout_ms >= 0) {
                        int64_t now = aj_now_monotonic_ms();
                        struct pollfd p = { .fd = fd, .events = POLLIN };
                        int n = now >= deadline ? 0 : poll(&p, 1, (int)(deadline - now));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return -errno;
                        if (n == 0)
                                return -ETIMEDOUT;
                }
                if (have + 1 >= size) {
                        if (size >= MAX_REPLY)
                                return -EMSGSIZE;
                        char *nb = realloc(buf, size * 2);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        size *= 2;
                }
                ssize_t n = read(fd, buf + have, size - 1 - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                char *nl = memchr(buf + have, '\n', (size_t)n);
                have += (size_t)n;
                if (nl) {
                        *nl = 0;
                        *ret_line = TAKE_PTR(buf);
                        return 0;
                }
        }
}

static const char *cap_label(const char *cap)
{
        static const struct {
                const char *cap, *label;
        } labels[] = {
                { "tokens", "tokens" },
                { "input_tokens", "input tokens" },
                { "output_tokens", "output tokens" },
                { "cost_usd", "cost" },
                { "tool_calls", "tool calls" },
                { "tool_calls_per_min", "tool calls/min" },
                { "repeat_limit", "repeats" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(labels); i++)
                if (streq(labels[i].cap, cap))
                        return labels[i].label;
        return cap;
}

static void format_amount(const char *cap, json_t *v, char *buf, size_t size)
{
        if (json_is_null(v) || !v)
                snprintf(buf, size, "unlimited");
        else if (streq(cap, "cost_usd"))
                snprintf(buf, size, "$%.4f", json_number_value(v));
        else
                snprintf(buf, size, "%lld", (long long)json_integer_value(v));
}

/* "tool calls 3/500, tokens 1500/200000" from a reply's usage (set caps only). */
static void format_budget(json_t *usage, char *buf, size_t size)
{
        const char *cap;
        json_t *e;
        size_t len = 0;
        buf[0] = 0;
        json_object_foreach (usage, cap, e) {
                char used[48], limit[48];
                format_amount(cap, json_object_get(e, "used"), used, sizeof(used));
                format_amount(cap, json_object_get(e, "limit"), limit, sizeof(limit));
                int n = snprintf(buf + len, size - len, "%s%s %s/%s", len ? ", " : "", cap_label(cap), used, limit);
                if (n < 0 || (size_t)n >= size - len)
                        break;
                len += (size_t)n;
        }
}

static int print_reply(const AjMeterCmd *cmd, json_t *reply)
{
        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
        const char *reason = json_string_value(json_object_get(reply, AJ_BROKER_F_REASON));
        json_t *usage = json_object_get(reply, AJ_BROKER_F_USAGE);
        char budget[1024];
        format_budget(usage, budget, sizeof(budget));

        switch (cmd->kind) {
        case AJ_METER_CMD_TOOL:
                if (verdict && streq(verdict, AJ_BROKER_ALLOW)) {
                        const char *by = json_string_value(json_object_get(json_object_get(reply, "approval"), "by"));
                        if (by)
                                printf("allowed: %s, approved by %s (%s)\n", cmd->name, by,
                                       budget[0] ? budget : "no caps");
                        else
                                printf("allowed: %s (%s)\n", cmd->name, budget[0] ? budget : "no caps");
                        return AJ_METER_EXIT_OK;
                }
                if (verdict && streq(verdict, AJ_BROKER_DENY)) {
                        fprintf(stderr, "denied: %s: %s\n", cmd->name, reason ?: "no reason given");
                        return AJ_METER_EXIT_DENIED;
                }
                if (verdict && streq(verdict, AJ_BROKER_BREACH)) {
                        fprintf(stderr, "breach: %s: %s (the run is being frozen)\n", cmd->name, reason ?: "");
                        return AJ_METER_EXIT_BREACH;
                }
                break;
        case AJ_METER_CMD_TOKENS: {
                double cost = json_number_value(json_object_get(reply, AJ_BROKER_F_COST));
                const char *price = json_string_value(json_object_get(reply, AJ_BROKER_F_PRICE));
                if (verdict && streq(verdict, AJ_BROKER_OK)) {
                        printf("recorded: %llu tokens on %s, $%.6f%s (%s)\n",
                               (unsigned long long)(cmd->input + cmd->output), cmd->model, cost,
                               price && streq(price, "unknown") ? " (no price for this model)" : "",
                               budget[0] ? budget : "no caps");
                        return AJ_METER_EXIT_OK;
                }
                if (verdict && streq(verdict, AJ_BROKER_BREACH)) {
                        fprintf(stderr, "breach: %s (the run is being frozen)\n", reason ?: "");
                        return AJ_METER_EXIT_BREACH;
                }
                break;
        }
        case AJ_METER_CMD_RESULT:
                printf("recorded: result of %s (%s)\n", cmd->id, cmd->status);
                return AJ_METER_EXIT_OK;
        case AJ_METER_CMD_USAGE: {
                const char *cap;
                json_t *e;
                json_object_foreach (usage, cap, e) {
                        char used[48], limit[48], left[48];
                        format_amount(cap, json_object_get(e, "used"), used, sizeof(used));
                        format_amount(cap, json_object_get(e, "limit"), limit, sizeof(limit));
                        format_amount(cap, json_object_get(e, "remaining"), left, sizeof(left));
                        printf("%-20s %14s / %-14s %s%s\n", cap, used, limit,
                               json_is_null(json_object_get(e, "limit")) ? "" : left,
                               json_is_null(json_object_get(e, "limit")) ? "" : " left");
                }
                return AJ_METER_EXIT_OK;
        }
        default:
                break;
        }
        fprintf(stderr, "agentjail meter: unexpected reply from the broker\n");
        return AJ_METER_EXIT_USAGE;
}

static int exit_for_verdict(json_t *reply)
{
        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
        if (verdict && streq(verdict, AJ_BROKER_DENY))
                return AJ_METER_EXIT_DENIED;
        if (verdict && streq(verdict, AJ_BROKER_BREACH))
                return AJ_METER_EXIT_BREACH;
        return AJ_METER_EXIT_OK;
}

int aj_cmd_meter(int argc, char **argv)
{
        AjMeterCmd cmd;
        _cleanup_free_ char *request = NULL, *line = NULL;
        _cleanup_(aj_error_clear) AjError err = {};

        if (argc >= 2 && streq(argv[1], "hook"))
                return aj_cmd_meter_hook(argc, argv);
        int r = aj_meter_cmd_parse(argc, argv, &cmd, &err);
        if (r < 0) {
                fprintf(stderr, "agentjail meter: %s\n", aj_error_text(&err, r));
                return AJ_METER_EXIT_USAGE;
        }
        if (cmd.kind == AJ_METER_CMD_HELP) {
                fputs(help, stdout);
                return AJ_METER_EXIT_OK;
        }
        const char *path = getenv(AJ_BROKER_ENV);
        if (!path || !*path) {
                fprintf(stderr, "agentjail meter: $%s is not set (not inside an agentjail run?)\n", AJ_BROKER_ENV);
                return AJ_METER_EXIT_USAGE;
        }
        json_int_t id = (json_int_t)getpid();
        r = aj_meter_cmd_request(&cmd, id, &request);
        if (r < 0) {
                fprintf(stderr, "agentjail meter: cannot build the request: %s\n", strerror(-r));
                return AJ_METER_EXIT_USAGE;
        }
        r = aj_meter_round_trip(path, request, -1, &line);
        if (r < 0) {
                fprintf(stderr, "agentjail meter: broker '%s': %s\n", path, strerror(-r));
                return AJ_METER_EXIT_USAGE;
        }
        _cleanup_(json_decrefp) json_t *reply = json_loads(line, 0, NULL);
        if (!json_is_object(reply)) {
                fprintf(stderr, "agentjail meter: the broker's reply is not a JSON object\n");
                return AJ_METER_EXIT_USAGE;
        }
        json_t *rid = json_object_get(reply, AJ_BROKER_F_ID);
        if (json_is_true(json_object_get(reply, AJ_BROKER_F_OK)) &&
            (!json_is_integer(rid) || json_integer_value(rid) != id)) {
                fprintf(stderr, "agentjail meter: the broker answered another request\n");
                return AJ_METER_EXIT_USAGE;
        }
        if (!json_is_true(json_object_get(reply, AJ_BROKER_F_OK))) {
                json_t *e = json_object_get(reply, AJ_BROKER_F_ERROR);
                if (cmd.json)
                        puts(line);
                fprintf(stderr, "agentjail meter: %s: %s\n", json_string_value(json_object_get(e, "code")) ?: "error",
                        json_string_value(json_object_get(e, "message")) ?: "the broker refused the request");
                return AJ_METER_EXIT_USAGE;
        }
        if (cmd.json) {
                puts(line);
                return exit_for_verdict(reply);
        }
        return print_reply(&cmd, reply);
}
