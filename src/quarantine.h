/* SPDX-License-Identifier: Apache-2.0 */
/*
 * After a breach or a held call: the owner's alert (the incident record itself is
 * src/run-record.h's). The supervisor freezes the run first; an alert never fails the run.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define AJ_INCIDENT_LAST_EVENTS 50


typedef struct {
        pid_t pid;
        int pidfd;
        uint64_t deadline_ns; /* monotonic */
} AjAlert;

/* <run_dir>/alert.log, opened to append as the run's other records are (a regular file
 * only, never a symlink or a FIFO): the fd, or -errno. */
int aj_alert_log_open(const char *run_dir);
/* Start the profile's alert command with <run_dir>/<input> on stdin (the file itself, so
 * its size never blocks the supervisor) and `out` as its stdout and stderr (the supervisor's
 * pipe, whose reader keeps alert.log within its bound: src/supervisor/alert.c).
 * `kind`: "breach" (input incident.json) or "approval" (approval.json: a call waits for
 * an operator). Environment: AGENTJAIL_RUN_ID, AGENTJAIL_ALERT (the kind),
 * AGENTJAIL_ALERT_FILE (the input's path), and for a breach AGENTJAIL_INCIDENT (the
 * same path). Never waits. */
int aj_alert_start(char *const *argv, const char *run_dir, const char *run_id, const char *kind, const char *input,
                   int out, uint64_t timeout_ns, AjAlert *ret);

/* The command lines approval.json suggests for a held call: `agentjail approve RUN CALL
 * --digest SHA256` and `agentjail deny RUN CALL --reason TEXT` (RUN and SHA256 are hex).
 * The call id is the agent's (any printable bytes but spaces, quotes and `;` included): it
 * is single-quoted for sh with its own quotes escaped, so a shell (or an alert script)
 * running the line passes it as one argument and nothing of it runs. A NULL digest (a
 * host approval, "net-N") leaves --digest out. Returns 0 or
 * -ENOMEM; on success the caller frees both. */
int aj_approval_commands(const char *run_id, const char *call_id, const char *digest, char **ret_approve,
                         char **ret_deny);
