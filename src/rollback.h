/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rollback that acts (`agentjail rollback RUN --apply`): the undo records a run's agent
 * reported with its tool results (runs.h's journal), handed newest first to the profile's
 * `rollback.exec`, a command of the operator's run on the host, outside any jail.
 *
 * rollback.c is pure: the plan (which steps, in which order, which are done already, which
 * an approval holds back), the handler's input document and the `rollback.step` event's
 * fields. rollback-exec.c runs one step's handler: a clean environment, the input on its
 * stdin, its output kept up to a bound, its time bounded.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

/* Each step's time ("rollback.timeout", `--timeout`). */
#define AJ_ROLLBACK_TIMEOUT_DEFAULT_NS (60ULL * 1000000000ULL)
#define AJ_ROLLBACK_TIMEOUT_MIN_NS (1ULL * 1000000000ULL)
#define AJ_ROLLBACK_TIMEOUT_MAX_NS (3600ULL * 1000000000ULL)
/* A run's undo records planned at once: the broker records no more in a run; an older
 * chain with more has the oldest left out of the plan (and listed). */
#define AJ_ROLLBACK_MAX_STEPS 4096
/* The handler's output (stdout and stderr together) kept per step: the event's excerpt.
 * What comes after is read and counted, not kept. */
#define AJ_ROLLBACK_OUTPUT_MAX 2048
/* The event each step (run, failed or held) leaves in the run's chain. */
#define AJ_ROLLBACK_EVENT "rollback.step"
/* The handler's PATH (its environment is otherwise only the variables rollback-exec.c sets). */
#define AJ_ROLLBACK_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* What the plan does with a step. */
typedef enum {
        AJ_ROLLBACK_TO_RUN = 0, /* give it to the handler */
        AJ_ROLLBACK_APPLIED,    /* the chain has its "ok": not again */
        AJ_ROLLBACK_HELD,       /* approval-gated and not approved on the command line */
} AjRollbackAction;

/* A step's outcome, as the event and run.json spell it (aj_rollback_result_name). */
typedef enum {
        AJ_ROLLBACK_OK = 0,  /* the handler exited 0 */
        AJ_ROLLBACK_FAILED,  /* it exited non-zero, or was killed by a signal */
        AJ_ROLLBACK_TIMEOUT, /* it ran past the step's time: killed */
        AJ_ROLLBACK_ERROR,   /* it could not be started */
        AJ_ROLLBACK_HELD_BACK,
} AjRollbackResult;

const char *aj_rollback_result_name(AjRollbackResult r);
/* "ok" -> AJ_ROLLBACK_OK...; -EINVAL for a name that is none. */
int aj_rollback_result_from_name(const char *name, AjRollbackResult *ret);

typedef struct {
        unsigned step, of;   /* 1-based, newest first; "of" is every undo record */
        uint64_t result_seq; /* the tool.result event's seq: the step's identity in the run */
        const char *call_id; /* borrowed from the journal, like the rest */
        const char *tool;    /* the call's tool (its tool.request); NULL: not known */
        char *undo_tool;     /* the undo record's own "tool", when it is a string (the plan's) */
        /* The undo record names its tool in a way a handler may read otherwise: a member "Tool"
         * (any other letter case), or a "tool" that is not a string. Gated like a call whose
         * tool is not known. */
        bool undo_tool_unclear;
        const char *status; /* the call's result: "ok" or "error" */
        /* The call's arguments (NULL: not known) and the undo record, as the journal holds
         * them: compact JSON text (a run's DOMs of them would be 20 to 60 times the text). */
        const char *args, *undo;
        const char *last_result; /* the last rollback.step result the chain has for it, or NULL */
        bool gated;              /* approvals.tools matches tool or undo_tool (or either is not known) */
        const char *gate;        /* the pattern that matched (NULL: aj_rollback_step_gate_text) */
        bool approved;           /* gated, and --approve named it (or --approve-all-gated) */
        AjRollbackAction action;
} AjRollbackStep;

/* Why a gated step is held, for the operator: its gate's pattern, else which tool is not known. */
const char *aj_rollback_step_gate_text(const AjRollbackStep *s);

typedef struct {
        AjRollbackStep *steps; /* newest first */
        size_t n;
        size_t to_run, applied, held;
        size_t without_undo; /* calls that succeeded with no undo record: to reverse by hand */
        /* Undo records not planned, oldest last, each {call_id, result_seq, status, why}:
         * "orphan: ..." (a result that is not an allowed call's first), "failed-call" (the
         * call's status is "error", without include_failed), "past-limit" (past
         * AJ_ROLLBACK_MAX_STEPS). */
        json_t *left_out;
        size_t orphans, failed_calls, past_limit;
        json_t *journal; /* a reference: the steps point into it */
} AjRollbackPlan;

/* What gates a step: the profile's approvals.tools, and the operator's approvals. */
typedef struct {
        char *const *patterns; /* globs with '*', as the broker matches them */
        size_t n_patterns;
        char *const *approve; /* --approve CALL_ID, or CALL_ID@RESULT_SEQ for one step */
        size_t n_approve;
        bool approve_all_gated;
        bool include_failed; /* plan the undo records of calls whose status is "error" too */
} AjRollbackGate;

/*
 * The plan from a run's tool journal (aj_run_tool_journal: newest first, each call with
 * "seq", "undo" and "rollback", the chain's last rollback.step for it): one step per undo
 * record of an allowed call (not an "orphan"), newest first, at most
 * AJ_ROLLBACK_MAX_STEPS; those of failed calls only with include_failed; the rest in
 * left_out. A step whose last result is "ok" is applied already; a gated one not approved
 * is held. -EINVAL (err names it) for an --approve that names no step or, bare, names a
 * reused call id's several steps, or a journal entry that is not what aj_run_tool_journal
 * makes (an undo record or arguments that are not JSON text, with err naming the entry).
 * Each undo record is parsed on its own, for its "tool", and let go. Pure.
 */
int aj_rollback_plan(json_t *journal, const AjRollbackGate *gate, AjRollbackPlan *ret, AjError *err);
void aj_rollback_plan_done(AjRollbackPlan *p);

/* The document the handler reads on its stdin, one line of JSON with a newline:
 * {"run", "step", "of", "call_id", "tool", "args", "status", "undo", "result_seq"}. New
 * string. */
int aj_rollback_step_input(const AjRollbackStep *s, const char *run_id, char **ret_text);

/* One step's outcome (rollback-exec.c fills it; a held step is only `result`). */
typedef struct {
        AjRollbackResult result;
        int exit_code;        /* -1: none (killed, not started, held) */
        int signal;           /* 0: none */
        int error;            /* AJ_ROLLBACK_ERROR: -errno */
        uint64_t duration_ns; /* from start to exit */
        char output[AJ_ROLLBACK_OUTPUT_MAX + 1];
        size_t output_len;     /* kept: at most AJ_ROLLBACK_OUTPUT_MAX */
        uint64_t output_bytes; /* all it wrote */
} AjRollbackOutcome;

/* The `rollback.step` event's fields (a new object): the call, the step, the result, the
 * handler's exit code or signal, its time and the excerpt of its output (printable ASCII,
 * newlines and tabs kept, other bytes '?'), and `uid`, the operator's. */
json_t *aj_rollback_step_event(const AjRollbackStep *s, const AjRollbackOutcome *o, uid_t uid);

/* ---- rollback-exec.c ------------------------------------------------------------------- */

/*
 * Runs argv (argv[0] an absolute path) on the host as the caller, in a session of its own
 * with cwd "/", stdin the `input` bytes then EOF, stdout and stderr one pipe of which
 * AJ_ROLLBACK_OUTPUT_MAX bytes are kept, and the environment: PATH (AJ_ROLLBACK_PATH),
 * HOME, USER and LOGNAME (the caller's), LANG=C.UTF-8, AGENTJAIL_RUN_ID,
 * AGENTJAIL_ROLLBACK_STEP, AGENTJAIL_ROLLBACK_OF, AGENTJAIL_TOOL_CALL_ID. Past
 * `timeout_ns` its process group is killed (AJ_ROLLBACK_TIMEOUT); when it exits, whatever
 * it left in its process group is killed too. *ret is always filled; < 0 only for errors
 * of this process (memory, pipes), else the outcome says (AJ_ROLLBACK_ERROR when the
 * program could not be executed).
 */
int aj_rollback_exec(char *const *argv, const char *input, size_t input_len, const char *run_id,
                     const AjRollbackStep *s, uint64_t timeout_ns, AjRollbackOutcome *ret);
