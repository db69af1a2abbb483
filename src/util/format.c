/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/format.h"

int aj_vasprintf(char **ret, const char *fmt, va_list ap)
{
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int aj_asprintf(char **ret, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(ret, fmt, ap);
        va_end(ap);
        return r;
}

char *aj_append_printable(char *buf, size_t size, const char *s, size_t max)
{
        size_t len = strlen(buf);
        for (size_t i = 0; s[i] && len + 4 < size; i++) {
                if (i == max) {
                        memcpy(buf + len, "...", 3);
                        len += 3;
                        break;
                }
                unsigned char ch = (unsigned char)s[i];
                buf[len++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        buf[len] = 0;
        return buf;
}

const char *aj_format_duration(uint64_t ns, char *buf, size_t size)
{
        uint64_t s = ns / 1000000000ull;
        if (s >= 60 && s % 60 == 0)
                snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
        else
                snprintf(buf, size, "%llus", (unsigned long long)s);
        return buf;
}
