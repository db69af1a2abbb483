/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail meter hook AGENT`: an agent's hook command inside a jail (src/cli/meter-hook.c). */
#pragma once

#include <stdbool.h>

#include "agent-hooks.h"
#include "util/error.h"

typedef struct {
        bool help;
        AjAgentKind agent;
        unsigned wait_s; /* for a held approval */
        AjHookOnTimeout on_timeout;
        const char *broker; /* --broker: the socket, over $AGENTJAIL_BROKER; NULL: the variable */
} AjMeterHookCmd;

/* Pure: argv (argv[0] "meter", argv[1] "hook") -> cmd; -EINVAL with the message. */
int aj_meter_hook_parse(int argc, char **argv, AjMeterHookCmd *ret, AjError *ret_error);
/* Returns the exit status the agent acts on (0 decided, 1 notice, 2 blocking). */
int aj_cmd_meter_hook(int argc, char **argv);
