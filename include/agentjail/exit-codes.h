/* SPDX-License-Identifier: Apache-2.0 */
/* Exit statuses of `agentjail run`: part of the command-line contract. */
#pragma once

enum {
        AJ_EXIT_KILLED = 123,         /* agentjail killed the run: a cap breach with on_breach "kill",
                                     * or an operator's `agentjail kill` */
        AJ_EXIT_LAUNCHER = 125,       /* agentjail itself failed (bad profile, setup error) */
        AJ_EXIT_NOT_EXECUTABLE = 126, /* the command exists but could not be executed */
        AJ_EXIT_NOT_FOUND = 127,      /* the command was not found */
        AJ_EXIT_SIGNAL_BASE = 128,    /* 128+N: the command was killed by signal N */
};

/* A wall-clock limit ended the run: the status is 128+SIGTERM or 128+SIGKILL as delivered. */
