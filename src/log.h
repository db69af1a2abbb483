/* SPDX-License-Identifier: Apache-2.0 */
/* Messages to the operator on stderr: "agentjail: ...". Log once, where context is richest. The
 * message is written escaped (util/format.h), newlines too: its arguments may be the agent's. */
#pragma once

#include "util/macros.h"

typedef enum { AJ_LOG_ERROR, AJ_LOG_WARNING, AJ_LOG_INFO, AJ_LOG_DEBUG } AjLogLevel;

#include <stdbool.h>

void aj_log_set_level(AjLogLevel max);
bool aj_log_enabled(AjLogLevel level);
/* While the operator's terminal is in raw mode (no output processing), lines end "\r\n". */
void aj_log_set_crlf(bool crlf);
/* Text written before each message (NULL: none): while the jail's output reaches the terminal
 * stderr is, the reset of what it may have left set (tty.h aj_tty_reset_text: a control
 * string left open swallowed a warning, a concealed rendition hid it). */
void aj_log_set_lead(const char *lead);
void aj_log(AjLogLevel level, const char *fmt, ...) _printf_(2, 3);
/* Logs and returns `err` (a negative errno) so callers can `return aj_log_errno(r, ...)`. */
int aj_log_errno(int err, const char *fmt, ...) _printf_(2, 3);

#define aj_error(...) aj_log(AJ_LOG_ERROR, __VA_ARGS__)
#define aj_warning(...) aj_log(AJ_LOG_WARNING, __VA_ARGS__)
#define aj_info(...) aj_log(AJ_LOG_INFO, __VA_ARGS__)
#define aj_debug(...) aj_log(AJ_LOG_DEBUG, __VA_ARGS__)
