/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line parsing into structs; no globals, no side effects beyond the result. */
#pragma once

#include "jail.h"
#include "util/error.h"

/* Parse `run` arguments (argv[0] == "run"). On error returns -EINVAL and a message in
 * ret_error (may be NULL); for --help returns 1 (caller prints aj_cli_run_help()). Strings in *ret
 * point into argv, except bind lists (free with aj_cli_run_options_done). */
int aj_cli_parse_run(int argc, char **argv, AjRunOptions *ret, AjError *ret_error);
void aj_cli_run_options_done(AjRunOptions *o);

/* Parse "PATH" or "SRC:DST" as given to --ro/--rw. */
int aj_cli_parse_bind(const char *arg, AjBind *ret, AjError *ret_error);

const char *aj_cli_main_help(void);
const char *aj_cli_run_help(void);
