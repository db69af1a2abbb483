/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail run`: the orchestrator — the one place that knows the order of steps. */
#pragma once

#include <stdbool.h>

#include "profile.h"

/* -t/--tty, --no-tty */
typedef enum {
        AJ_TTY_AUTO = 0, /* a pty when stdin is a terminal */
        AJ_TTY_ALWAYS,
        AJ_TTY_NEVER, /* no pty; a terminal stdin becomes /dev/null */
} AjTtyMode;

typedef struct {
        const char *profile; /* name or path; "default" when NULL */
        /* The profile's text, parsed as the file `profile` names (its name in messages),
         * which is not read: replay's, written in its scratch root. NULL: read `profile`. */
        const char *profile_text;
        const char *name;    /* run name; the command's basename when NULL */
        AjBindList extra_ro; /* --ro */
        AjBindList extra_rw; /* --rw */
        bool json;           /* print the final run document on stderr */
        int verbose;
        AjTtyMode tty;
        char **caps;       /* --cap KEY=VALUE (NULL-terminated, owned) */
        char **allow_net;  /* --allow-net HOST[:PORT] (NULL-terminated, owned) */
        char **ask_net;    /* --ask-net PATTERN: added to network.ask (NULL-terminated, owned) */
        char **llm;        /* --llm NAME: providers the gateway serves (NULL-terminated, owned) */
        const char *hooks; /* --hooks AGENT: install the agent's hook settings (src/agent-hooks.h) */
        char **argv;       /* the command */
        /* `agentjail replay` (src/replay-run.c): the gateway answers from this run's
         * recording; run.json says replay_of. */
        const char *replay_dir; /* the recorded run's directory */
        const char *replay_of;  /* its id */
        bool replay_live;       /* a request the recording lacks goes to the provider */
        /* A scratch root of agentjail's own the run's cwd is in (replay's): like an eval's
         * (AJ_EVAL_SCRATCH_ENV), no mount hands the agent any of it but the cwd. */
        const char *scratch_root;
        /* The files the profile must be loaded from, in order, after the one profile_text was
         * (replay's: the given profile's extends chain, as found where the replay was asked
         * for; the run resolves it again in its workspace, whose ./profiles is the recorded
         * one's). NULL: any. src/jail-plan.c refuses another. */
        char *const *profile_chain;
        char *ret_run_id; /* if set: the run's id is copied here (AJ_RUN_ID_LEN + 1 bytes) */
} AjRunOptions;

/* Runs the command in a jail and returns agentjail's exit status (see exit-codes.h). */
int aj_jail_run(const AjRunOptions *opts);
