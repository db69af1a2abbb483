/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "util/json-scan.h"

/* Bytes that end a number or a literal ("true", "null", or garbage the parser refuses). */
static bool ends_bare(unsigned char ch)
{
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ',' || ch == ':' || ch == '{' ||
               ch == '}' || ch == '[' || ch == ']' || ch == '"';
}

/* The offset past the string whose contents start at i: past its closing quote, or len
 * when the text ends first. memchr finds each quote; the backslashes just before it say
 * whether it is escaped. The runs counted back never overlap (the quote before is not a
 * backslash), so the scan stays linear. */
static size_t string_end(const char *s, size_t len, size_t i)
{
        while (i < len) {
                const char *q = memchr(s + i, '"', len - i);
                if (!q)
                        return len;
                size_t at = (size_t)(q - s), back = 0;
                while (at - back > i && s[at - back - 1] == '\\')
                        back++;
                if (back % 2 == 0)
                        return at + 1;
                i = at + 1;
        }
        return len;
}

int aj_json_scan(const void *text, size_t len, uint64_t max_values, unsigned max_depth, AjJsonShape *ret_shape)
{
        const char *s = text;
        uint64_t values = 0;
        unsigned depth = 0, deepest = 0;
        size_t i = 0;
        while (i < len) {
                unsigned char ch = (unsigned char)s[i];
                switch (ch) {
                case ' ':
                case '\t':
                case '\n':
                case '\r':
                case ',':
                case ':':
                        i++;
                        continue;
                case '{':
                case '[':
                        if (++depth > max_depth)
                                return -ELOOP;
                        if (depth > deepest)
                                deepest = depth;
                        i++;
                        break;
                case '}':
                case ']':
                        if (depth > 0)
                                depth--;
                        i++;
                        continue;
                case '"':
                        i = string_end(s, len, i + 1);
                        break;
                default:
                        while (i < len && !ends_bare((unsigned char)s[i]))
                                i++;
                }
                if (++values > max_values)
                        return -E2BIG;
        }
        if (ret_shape)
                *ret_shape = (AjJsonShape){ .values = values, .depth = deepest };
        return 0;
}
