/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail approve | deny`: decide a tool call a live run's broker holds, or a host
 * ("net-N") its proxy holds a connection for. */
#include <stdio.h>
#include <string.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "control.h"

#define APPROVE_USAGE "agentjail approve RUN CALL [--digest SHA256] [--always] [--json]"
#define APPROVE_HELP                                                                          \
        "Approve a tool call the run's broker is holding for approval (see 'agentjail\n"      \
        "inspect RUN': pending calls awaiting_approval). The agent's call goes on.\n"         \
        "A CALL net-N is a host the egress proxy holds connections for (network.ask): they\n" \
        "go on, still refused if the host resolves to an internal address.\n"                 \
        "--digest: the call's arguments_sha256 as reviewed; refused if it differs.\n"         \
        "--always: (net-N) allow the host and port for the rest of the run."
#define DENY_USAGE "agentjail deny RUN CALL [--reason TEXT] [--json]"
#define DENY_HELP                                                                     \
        "Deny a tool call the run's broker is holding for approval. The agent gets\n" \
        "\"deny\" and the reason. A CALL net-N refuses the connections waiting for\n" \
        "that host (HTTP 403, SOCKS \"not allowed\")."

typedef struct {
        bool approve, json, always;
        const char *run, *call;
        const char *digest, *reason;
} Decision;

/* 0 with *d filled, 1 for --help (printed), or CLI_EXIT_USAGE (reported). */
static int parse_decision(int argc, char **argv, Decision *d)
{
        static const struct option approve_options[] = {
                CLI_OPTIONS_COMMON,
                { "digest", required_argument, NULL, CLI_OPT_DIGEST },
                { "always", no_argument, NULL, CLI_OPT_ALWAYS },
                {},
        };
        static const struct option deny_options[] = {
                CLI_OPTIONS_COMMON,
                { "reason", required_argument, NULL, CLI_OPT_REASON },
                {},
        };
        const char *cmd = argv[0], *usage = d->approve ? APPROVE_USAGE : DENY_USAGE;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", d->approve ? approve_options : deny_options, NULL)) != -1) {
                if (c == 'h') {
                        cli_help(usage, d->approve ? APPROVE_HELP : DENY_HELP);
                        return 1;
                } else if (c == CLI_OPT_JSON)
                        d->json = true;
                else if (c == CLI_OPT_DIGEST)
                        d->digest = optarg;
                else if (c == CLI_OPT_ALWAYS)
                        d->always = true;
                else if (c == CLI_OPT_REASON)
                        d->reason = optarg;
                else
                        return cli_option_error(cmd, usage, c, argv);
        }
        int n = argc - optind, r = cli_check_positionals(cmd, usage, n, argv + optind, 0, 2);
        if (r)
                return r;
        if (n < 2)
                return cli_usage_error(cmd, usage, n == 0 ? "missing RUN and CALL arguments" : "missing CALL argument");
        d->run = argv[optind];
        d->call = argv[optind + 1];
        if (!*d->call || strlen(d->call) > 128)
                return cli_usage_error(cmd, usage, "CALL: expected a tool call id of 1 to 128 bytes");
        if (d->digest && (strlen(d->digest) != 64 || strspn(d->digest, "0123456789abcdef") != 64))
                return cli_usage_error(cmd, usage, "--digest: expected 64 lower-case hex digits (arguments_sha256)");
        if (d->reason && (!*d->reason || strlen(d->reason) > AJ_CONTROL_MAX_REASON))
                return cli_usage_error(cmd, usage, "--reason: expected 1 to %d bytes", AJ_CONTROL_MAX_REASON);
        return 0;
}

static int decide_cmd(int argc, char **argv, bool approve)
{
        Decision d = { .approve = approve };
        int r = parse_decision(argc, argv, &d);
        if (r)
                return r == 1 ? CLI_EXIT_OK : r;
        const char *cmd = argv[0];
        json_auto_t *req = json_pack("{s:s, s:s, s:s*, s:s*}", "op", approve ? "approve" : "deny", "call", d.call,
                                     "digest", d.digest, "reason", d.reason);
        if (req && d.always)
                json_object_set_new(req, "always", json_true());
        if (!req)
                return CLI_EXIT_FAIL;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (cli_open_run_to_act(cmd, d.run, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        char done[200];
        snprintf(done, sizeof(done), "%s %s %s%s", approve ? "approved" : "denied",
                 strncmp(d.call, AJ_NET_APPROVAL_PREFIX, strlen(AJ_NET_APPROVAL_PREFIX)) == 0 ? "host" : "call", d.call,
                 d.always ? " (and for the rest of the run)" : "");
        return cli_control_op(cmd, run, req, d.json, done);
}

int aj_cmd_approve(int argc, char **argv) { return decide_cmd(argc, argv, true); }

int aj_cmd_deny(int argc, char **argv) { return decide_cmd(argc, argv, false); }
