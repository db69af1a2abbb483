/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the operator's verbs share (the files of src/cli/): exit statuses, messages, option errors,
 * finding the RUN argument, and the few printers more than one verb uses. A verb parses
 * its own options (getopt_long with its own table), calls the library (runs.h,
 * run-record.h, control.h, workspace.h) and prints; it returns its exit status.
 *
 * Convention: functions returning int are either a verb's exit status (named *_cmd or
 * aj_cmd_*) or 0 / -errno with the error already reported to the operator.
 */
#pragma once

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runs.h"
#include "util/format.h"
#include "util/macros.h"

/* Exit statuses of the operator's verbs (`logs --verify` adds 3, see logs.c). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* How long freeze/thaw/kill/release/approve/deny wait for the supervisor's answer. */
#define CLI_CONTROL_TIMEOUT_MS 10000

/* Option codes for long options without a short form (each verb's table uses these). */
enum {
        CLI_OPT_JSON = 0x100,
        CLI_OPT_TYPE,
        CLI_OPT_RAISE,
        CLI_OPT_STOP,
        CLI_OPT_DIGEST,
        CLI_OPT_REASON,
        CLI_OPT_FORCE,
        CLI_OPT_VERIFY,
        CLI_OPT_OTLP,
        CLI_OPT_PATCH,
        CLI_OPT_ALWAYS,
        CLI_OPT_INCLUDE_GIT,
        CLI_OPT_EXCLUDE_GIT,
};
/* The two options every verb has. */
#define CLI_OPTIONS_COMMON \
        { "json", no_argument, NULL, CLI_OPT_JSON }, { "help", no_argument, NULL, 'h' }

/* "agentjail CMD: message" on stderr (a failure, or a warning or note on the way), the message
 * escaped as aj_vfprintf_printable does: its arguments may be a workspace's file names, a run's
 * name, a tool's, or the supervisor's reply, all of which the agent may have chosen. */
_printf_(2, 3) void cli_fail(const char *cmd, const char *fmt, ...);
/* The same, then "usage: USAGE"; returns CLI_EXIT_USAGE. */
_printf_(3, 4) int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...);
/* getopt_long's ':' (a value missing) and '?' (an unknown option) as a usage error;
 * call with the `c` it returned. Returns CLI_EXIT_USAGE. */
int cli_option_error(const char *cmd, const char *usage, int c, char **argv);
/* Resets getopt for a verb's argv (argv[0] is the verb); messages are ours. */
void cli_getopt_reset(void);
/* The positional arguments after the options: between min and max of them, else a usage
 * error (CLI_EXIT_USAGE, reported); 0 when they fit. */
int cli_check_positionals(const char *cmd, const char *usage, int n, char **pos, int min, int max);
/* The options of a verb that has only --json and --help, and one RUN argument: 0 with
 * *ret_json, *ret_help and *ret_run set (with --help, print the help and stop), or
 * CLI_EXIT_USAGE (reported). */
int cli_parse_json_run(const char *cmd, const char *usage, int argc, char **argv, bool *ret_json, bool *ret_help,
                       const char **ret_run);
/* Prints "usage: USAGE\n\nHELP\n" and returns CLI_EXIT_OK. */
int cli_help(const char *usage, const char *help);

/* Levels of a --json document laid out one member a line; deeper values are on one line. */
#define CLI_JSON_LEVELS 3
/* One JSON document on stdout, indented CLI_JSON_LEVELS deep; its raw C1 controls and DEL as
 * \u escapes (every --json output goes through one of these two). */
int cli_print_json(json_t *doc);
int cli_print_json_text(const char *text);
/* cli_print_json with aj_json_dumps_indented_expand's `expand` (util/format.h). */
int cli_print_json_expand(json_t *doc, AjJsonExpand expand, void *userdata);
/* Every string in v replaced by its escaped form (util/format.h), in place: a document a verb
 * prints as text, from the run's record or the supervisor's reply. 0 or -ENOMEM. */
int cli_json_escape_strings(json_t *v, unsigned depth);
/* A JSON value as text, escaped (util/format.h): a string as it is, anything else compact JSON. */
void cli_print_value(json_t *v);
/* Event lines, indented, "  (none)" for none. */
void cli_print_events(json_t *events);

/* The state and runtime dirs; -errno, reported. */
int cli_open_paths(const char *cmd, AjPaths *paths);
/* Before a verb acts on what a run's records say with the invoker's rights (runs a recorded
 * handler, writes to a recorded path): the records must be the invoker's or root's (root:
 * root's), not only readable (aj_state_root_check(), AJ_STATE_ACT). Reported; < 0 refused. */
int cli_check_acting(const char *cmd, const AjPaths *paths);
/* Resolve RUN, telling the operator which run was chosen when that was not obvious;
 * 0 or -errno, reported. */
int cli_find_run(const char *cmd, const AjPaths *paths, const char *query, AjRun **ret);
/* Both of the above. */
int cli_open_run(const char *cmd, const char *query, AjPaths *paths, AjRun **ret);
/* For a verb that changes the run: an id prefix must have AJ_RUN_PREFIX_MIN_ACT characters. */
int cli_open_run_to_act(const char *cmd, const char *query, AjPaths *paths, AjRun **ret);

const char *cli_jstr(json_t *o, const char *key);
/* The run's name, or "?". */
const char *cli_run_name(const AjRun *run);
/* For a table: a profile given as a path shows as its file name without ".json". */
const char *cli_run_profile(const AjRun *run, char *buf, size_t len);
uint64_t cli_age_seconds(const AjRun *run);
/* Tool calls a live run's broker holds for an operator's decision. */
size_t cli_awaiting_approval(const AjRun *run);
/* ps's entry for a run (inspect starts from it). New reference. */
json_t *cli_run_summary_json(AjRun *run, const char *state);

/* Send one op over the run's control socket; prints the outcome (text: "run ID DONE", or
 * one JSON document). Returns the exit status. */
int cli_control_op(const char *cmd, AjRun *run, json_t *req, bool json, const char *done);
/* The same; when the supervisor does not answer in time, `fallback` (if not NULL) may do the
 * op without it: 0 when it did (said as `fallback_done`), else -errno. */
int cli_control_op_or(const char *cmd, AjRun *run, json_t *req, bool json, const char *done,
                      int (*fallback)(AjRun *run), const char *fallback_done);
