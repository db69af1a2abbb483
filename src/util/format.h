/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "util/macros.h"

/* printf into a new string: *ret is set (and owned by the caller) only on success; 0, or -ENOMEM
 * with *ret untouched. The one place that calls vasprintf(3) and maps its -1. */
_printf_(2, 0) int aj_vasprintf(char **ret, const char *fmt, va_list ap);
_printf_(2, 3) int aj_asprintf(char **ret, const char *fmt, ...);

/* Appends s to the string in buf (size bytes), printable and short, for untrusted text in
 * messages: control characters become '?', and after max characters "..." ends it. Returns buf. */
char *aj_append_printable(char *buf, size_t size, const char *s, size_t max);

/* "15m", "90s": a duration for messages (whole minutes as minutes, else seconds). Returns buf. */
const char *aj_format_duration(uint64_t ns, char *buf, size_t size);
