/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdarg.h>

#include "util/macros.h"

/* printf into a new string: *ret is set (and owned by the caller) only on success; 0, or -ENOMEM
 * with *ret untouched. The one place that calls vasprintf(3) and maps its -1. */
_printf_(2, 0) int aj_vasprintf(char **ret, const char *fmt, va_list ap);
_printf_(2, 3) int aj_asprintf(char **ret, const char *fmt, ...);
