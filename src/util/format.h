/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdarg.h>

#include "util/macros.h"

/* printf into a new string: *ret is set (and owned by the caller) only on success; 0, or -ENOMEM
 * with *ret untouched. The one place that calls vasprintf(3) and maps its -1. */
_printf_(2, 0) int aj_vasprintf(char **ret, const char *fmt, va_list ap);
_printf_(2, 3) int aj_asprintf(char **ret, const char *fmt, ...);

/* The message half of a `char **ret_error` out-parameter: when ret_error is not NULL, sets
 * *ret_error to the formatted message (it must not hold one: set once, on the failure path).
 * Returns r, so a failure path reads `return aj_error_message(ret_error, -EINVAL, "...", ...)`;
 * -ENOMEM (and *ret_error = NULL) when the message cannot be allocated. */
_printf_(3, 4) int aj_error_message(char **ret_error, int r, const char *fmt, ...);
