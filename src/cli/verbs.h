/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's verbs, one file per verb or family in src/cli/: ps, inspect, logs,
 * freeze/thaw/kill, approve/deny, diff/commit/discard, rollback, quarantine, prune. Each takes
 * argv with the command name in argv[0] and returns the exit status: 0 success, 1
 * failure (no such run, run not live, refused), 2 usage error. With --json each prints
 * exactly one JSON document on stdout (`logs --json`: the raw event lines).
 */
#pragma once

int aj_cmd_ps(int argc, char **argv);
int aj_cmd_inspect(int argc, char **argv);
int aj_cmd_logs(int argc, char **argv);
int aj_cmd_freeze(int argc, char **argv);
int aj_cmd_thaw(int argc, char **argv);
int aj_cmd_kill(int argc, char **argv);
int aj_cmd_quarantine(int argc, char **argv);
int aj_cmd_approve(int argc, char **argv);
int aj_cmd_deny(int argc, char **argv);
int aj_cmd_diff(int argc, char **argv);
int aj_cmd_commit(int argc, char **argv);
int aj_cmd_discard(int argc, char **argv);
int aj_cmd_rollback(int argc, char **argv);
int aj_cmd_replay(int argc, char **argv); /* 0 same, 1 changed, 125 error */
int aj_cmd_eval(int argc, char **argv);   /* src/cli/eval.c: 0 pass, 1 fail, 2 usage, 125 bad suite */
int aj_cmd_doctor(int argc, char **argv);
int aj_cmd_prune(int argc, char **argv); /* src/cli/prune.c: 0, 1 a removal failed, 2 usage, 125 error */
