/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentjail/exit-codes.h"
#include "broker.h"
#include "cli/mcp-cmd.h"
#include "cli/run.h"
#include "cli/verbs.h"
#include "commands.h"
#include "config.h"
#include "jail.h"
#include "log.h"
#include "profile.h"
#include "util/macros.h"

static int cmd_run(int argc, char **argv)
{
        AjRunOptions o;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_cli_parse_run(argc, argv, &o, &err);
        if (r == 1) {
                fputs(aj_cli_run_help(), stdout);
                return 0;
        }
        if (r < 0) {
                aj_error("%s", aj_error_text(&err, r));
                return AJ_EXIT_LAUNCHER;
        }
        if (o.verbose)
                aj_log_set_level(o.verbose > 1 ? AJ_LOG_DEBUG : AJ_LOG_INFO);
        int status = aj_jail_run(&o);
        aj_cli_run_options_done(&o);
        return status;
}

int aj_commands_main(int argc, char **argv)
{
        if (argc < 1) {
                fputs(aj_cli_main_help(), stderr);
                return 2;
        }
        const char *cmd = argv[0];
        if (streq(cmd, "run"))
                return cmd_run(argc, argv);
        if (streq(cmd, "profile"))
                return aj_cmd_profile(argc, argv);
        if (streq(cmd, "meter"))
                return aj_cmd_meter(argc, argv);
        if (streq(cmd, "mcp"))
                return aj_cmd_mcp(argc, argv);
        static const struct {
                const char *name;
                int (*fn)(int, char **);
        } ops[] = {
                { "ps", aj_cmd_ps },
                { "inspect", aj_cmd_inspect },
                { "logs", aj_cmd_logs },
                { "freeze", aj_cmd_freeze },
                { "thaw", aj_cmd_thaw },
                { "kill", aj_cmd_kill },
                { "quarantine", aj_cmd_quarantine },
                { "approve", aj_cmd_approve },
                { "deny", aj_cmd_deny },
                { "diff", aj_cmd_diff },
                { "commit", aj_cmd_commit },
                { "discard", aj_cmd_discard },
                { "rollback", aj_cmd_rollback },
                { "replay", aj_cmd_replay },
                { "eval", aj_cmd_eval },
                { "doctor", aj_cmd_doctor },
                { "prune", aj_cmd_prune },
        };
        for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
                if (streq(cmd, ops[i].name))
                        return ops[i].fn(argc, argv);
        if (streq(cmd, "help") || streq(cmd, "--help") || streq(cmd, "-h")) {
                fputs(aj_cli_main_help(), stdout);
                return 0;
        }
        if (streq(cmd, "version") || streq(cmd, "--version")) {
                printf("agentjail %s\n", AJ_VERSION);
                return 0;
        }
        aj_error("unknown command '%s' (see 'agentjail help')", cmd);
        /* `run`'s contract reserves 125 for launcher errors; other commands use 2 for usage. */
        return 2;
}
