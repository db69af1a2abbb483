/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util/format.h"

static AjLogLevel max_level = AJ_LOG_WARNING;
static const char *line_end = "\n";
static const char *lead = "";

void aj_log_set_level(AjLogLevel max) { max_level = max; }

bool aj_log_enabled(AjLogLevel level) { return level <= max_level; }
void aj_log_set_crlf(bool crlf) { line_end = crlf ? "\r\n" : "\n"; }
void aj_log_set_lead(const char *text) { lead = text ? text : ""; }

static void vlog(AjLogLevel level, const char *fmt, va_list ap, int err)
{
        if (level > max_level)
                return;
        char buf[2048];
        int n = vsnprintf(buf, sizeof(buf), fmt, ap);
        if (n < 0)
                return;
        /* The escaping rule (util/format.h) on the whole message: its arguments (a path in the
         * workspace, a process's name, a provider's error) may come from the agent. Each byte
         * shows as at most 4, so the escaped message is never cut; no allocation here, as a
         * message may say that memory ran out. */
        char shown[4 * sizeof(buf)];
        shown[0] = 0;
        aj_append_printable(shown, sizeof(shown), buf, SIZE_MAX);
        const char *prefix = level == AJ_LOG_WARNING ? "warning: " : "";
        if (err)
                fprintf(stderr, "%sagentjail: %s%s: %s%s", lead, prefix, shown, strerror(-err), line_end);
        else
                fprintf(stderr, "%sagentjail: %s%s%s", lead, prefix, shown, line_end);
}

void aj_log(AjLogLevel level, const char *fmt, ...)
{
        int saved = errno;
        va_list ap;
        va_start(ap, fmt);
        vlog(level, fmt, ap, 0);
        va_end(ap);
        errno = saved;
}

int aj_log_errno(int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog(AJ_LOG_ERROR, fmt, ap, err);
        va_end(ap);
        return err;
}
