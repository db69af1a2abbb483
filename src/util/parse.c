/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/format.h"
#include "util/parse.h"

int aj_parse_u64(const char *s, uint64_t *ret)
{
        if (!s || !isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The leading run of digits of s, exactly; -ERANGE when it does not fit. */
static int parse_digits_exact(const char *s, uint64_t *ret)
{
        uint64_t v = 0;
        for (; isdigit((unsigned char)*s); s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

/* Parses "<decimal>[.<decimal>]" and returns the rest. */
static int parse_decimal(const char *s, double *ret, const char **ret_rest)
{
        if (!isdigit((unsigned char)s[0]))
                return -EINVAL;
        const char *p = s;
        while (isdigit((unsigned char)*p))
                p++;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                while (isdigit((unsigned char)*p))
                        p++;
        }
        char buf[64];
        if ((size_t)(p - s) >= sizeof(buf))
                return -ERANGE;
        memcpy(buf, s, p - s);
        buf[p - s] = 0;
        *ret = strtod(buf, NULL);
        *ret_rest = p;
        return 0;
}

int aj_parse_size(const char *s, uint64_t *ret)
{
        if (!s)
                return -EINVAL;
        double v;
        const char *rest;
        int r = parse_decimal(s, &v, &rest);
        if (r < 0)
                return r;
        double mult = 1;
        switch (toupper((unsigned char)*rest)) {
        case 0:
                break;
        case 'B':
                if (rest[1])
                        return -EINVAL;
                break;
        case 'K':
                mult = 1024.0;
                rest++;
                break;
        case 'M':
                mult = 1024.0 * 1024;
                rest++;
                break;
        case 'G':
                mult = 1024.0 * 1024 * 1024;
                rest++;
                break;
        case 'T':
                mult = 1024.0 * 1024 * 1024 * 1024;
                rest++;
                break;
        default:
                return -EINVAL;
        }
        if (mult > 1 && *rest) {
                if (strcasecmp(rest, "iB") != 0 && strcasecmp(rest, "B") != 0)
                        return -EINVAL;
        }
        bool integral = !memchr(s, '.', (size_t)(rest - s));
        if (integral) {
                /* Whole numbers stay exact: a double would round values above 2^53. */
                uint64_t n, m = (uint64_t)mult;
                if (parse_digits_exact(s, &n) < 0)
                        return -ERANGE;
                if (m > 1 && n > UINT64_MAX / m)
                        return -ERANGE;
                *ret = n * m;
                return 0;
        }
        if (mult == 1)
                return -EINVAL; /* a fraction of a byte */
        double bytes = v * mult;
        if (bytes >= 18446744073709551615.0)
                return -ERANGE;
        /* Not llround(): its long long result overflows above 2^63. */
        *ret = (uint64_t)(bytes + 0.5);
        return 0;
}

int aj_parse_duration(const char *s, uint64_t *ret_ns)
{
        if (!s || !*s)
                return -EINVAL;
        double total = 0;
        const char *p = s;
        while (*p) {
                double v;
                const char *rest;
                int r = parse_decimal(p, &v, &rest);
                if (r < 0)
                        return r;
                double unit;
                if (strncmp(rest, "ms", 2) == 0) {
                        unit = 1e6;
                        rest += 2;
                } else if (strncmp(rest, "us", 2) == 0) {
                        unit = 1e3;
                        rest += 2;
                } else if (*rest == 's') {
                        unit = 1e9;
                        rest++;
                } else if (*rest == 'm') {
                        unit = 60e9;
                        rest++;
                } else if (*rest == 'h') {
                        unit = 3600e9;
                        rest++;
                } else if (*rest == 'd') {
                        unit = 86400e9;
                        rest++;
                } else if (*rest == 0 && p == s) {
                        unit = 1e9; /* a bare number is seconds */
                } else
                        return -EINVAL;
                total += v * unit;
                p = rest;
        }
        if (total >= 9.2e18)
                return -ERANGE;
        *ret_ns = aj_round_u64(total);
        return 0;
}

uint64_t aj_round_u64(double x)
{
        if (!(x >= 0.5))
                return 0;
        if (x >= 18446744073709551616.0)
                return UINT64_MAX;
        uint64_t t = (uint64_t)x; /* truncates; exact from 2^52 up, where x is whole */
        return t + (x - (double)t >= 0.5);
}

char *aj_format_size(uint64_t bytes, char *buf, size_t len)
{
        static const char units[] = "BKMGT";
        double v = (double)bytes;
        int u = 0;
        while (v >= 1024 && u < 4) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, len, "%llu", (unsigned long long)bytes);
        else if (v == floor(v))
                snprintf(buf, len, "%.0f%c", v, units[u]);
        else
                snprintf(buf, len, "%.1f%c", v, units[u]);
        return buf;
}

/* What shows as a gap, as a space does: Unicode's space separators (Zs) past ASCII's, and
 * the letters drawn as a blank (the Hangul fillers, as wide as a letter: U+115F, U+1160,
 * U+3164, U+FFA0; the blank Braille pattern, U+2800). */
static bool unicode_space(const unsigned char *p, size_t n)
{
        uint32_t cp = aj_utf8_code_point(p, n);
        return cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x202f || cp == 0x205f ||
               cp == 0x3000 || cp == 0x115f || cp == 0x1160 || cp == 0x3164 || cp == 0xffa0 || cp == 0x2800;
}

bool aj_plain_name(const char *s, size_t len, size_t max)
{
        if (!s || len == 0 || len > max || strnlen(s, len + 1) != len)
                return false;
        /* Valid UTF-8 without C0 or C1 controls, DEL or spaces, Unicode's included: a name
         * with a gap in it lays out as two words, and in an operator's table (inspect's
         * pending calls) as another column (an id "r-1<no-break spaces>lookup" read as a
         * call of the tool "lookup"). (The operator's verbs show names by util/format.h's
         * rule anyway, which also escapes bidirectional controls and invisible characters.) */
        for (size_t i = 0, n; i < len; i += n) {
                const unsigned char *p = (const unsigned char *)s + i;
                n = aj_utf8_len(s + i, len - i);
                if (n == 0 || p[0] <= 0x20 || p[0] == 0x7f || (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f) ||
                    unicode_space(p, n))
                        return false;
        }
        return true;
}
