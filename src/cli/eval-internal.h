/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail eval`, shared between its parts: cli/eval.c (the command, starting the cases'
 * runs, the loop, the output) and cli/eval-case.c (a finished case: the facts its run left
 * and its verdict).
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "eval.h"
#include "runs.h"
#include "state.h"
#include "util/scratch.h"

typedef struct {
        bool used;
        size_t index;
        pid_t pid;
        int pidfd;
        uint64_t start_ns, start_realtime_ns, deadline_ns;
        int stage; /* 0 running, 1 SIGTERM sent, 2 kill op sent, 3 SIGKILL sent */
        bool timed_out;
        char *dir, *ws, *log;
        /* The case's dir and its workspace, held from their mkdirat() in the scratch root's
         * held fd: the fixture is copied, the run started, the workspace read and an overlay's
         * changes applied through these, never by a path again. */
        int dir_fd, ws_fd;
        /* agentjail's output (the command's passes through it): a pipe read in the loop, so
         * that a flood costs no disk: up to EVAL_LOG_MAX bytes go to the log, the last
         * bytes are kept for the reason. */
        int out_fd, log_fd;
        uint64_t logged;
        char tail[1024];
        size_t tail_len;
} Slot;

typedef struct {
        const AjEvalSuite *suite;
        char **profile_errors; /* per case: why its profile was not found or did not load when the
                                * suite started (it never runs), or NULL */
        char **profile_chains; /* per case: the files its profile was loaded from when the suite
                                * started, one a line (AJ_EVAL_PROFILE_ENV), or NULL */
        AjEvalResult *results;
        AjPaths paths;
        char self[PATH_MAX];
        /* The scratch root, made, used and removed through its fds, never by its path. */
        AjScratch scratch;
        bool keep, progress;
        size_t jobs, next, done;
        Slot slots[AJ_EVAL_MAX_JOBS];
        /* Ids that cannot be a case's: there before (sorted, n_before of them: a history of
         * thousands of runs is looked up for each directory each case reads), or claimed. */
        char **runs_before;
        size_t n_before;
        char **claimed_runs;
} Eval;

/* cli/eval.c */
/* The last non-empty line agentjail (or the command) wrote, printable; NULL when none. */
char *eval_last_output_line(const Slot *s);

/* cli/eval-case.c */
/* The run whose supervisor was `pid`, started since the case did; NULL when none (agentjail
 * failed before it made one). `claim`: it is the case's, never another's (its run has ended). */
AjRun *eval_find_run(Eval *e, pid_t pid, uint64_t since_ns, bool claim);
/* The case is an error: `error` (taken; NULL: out of memory). */
void eval_finish_error(Eval *e, Slot *s, char *error);
/* The case's process ended with `exit_status`: its facts gathered, its result set. */
void eval_judge_case(Eval *e, Slot *s, int exit_status);
