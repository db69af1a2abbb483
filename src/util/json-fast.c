/* SPDX-License-Identifier: Apache-2.0 */
#include "util/json-fast.h"

#include <stdio.h>
#include <string.h>

/* Depth past which jansson's own dumper is used (it knows its limits). */
#define FAST_MAX_DEPTH 16

void aj_json_out_raw(AjJsonOut *o, const char *s, size_t n)
{
        if (o->len < o->size)
                memcpy(o->buf + o->len, s, o->len + n <= o->size ? n : o->size - o->len);
        o->len += n;
}

static void put_c(AjJsonOut *o, char c)
{
        if (o->len < o->size)
                o->buf[o->len] = c;
        o->len++;
}

/* jansson's escapes: the two that must be, the short forms, \u00XX for the other controls. */
int aj_json_out_string(AjJsonOut *o, const char *s, size_t n)
{
        static const char hex[] = "0123456789ABCDEF";
        put_c(o, '"');
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x80) {
                        if (o->ascii)
                                return -1; /* \uXXXX of the code point: jansson's */
                        continue;
                }
                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                aj_json_out_raw(o, s + run, i - run);
                run = i + 1;
                char e[6] = { '\\', 0 };
                size_t len = 2;
                switch (c) {
                case '"':
                case '\\':
                        e[1] = (char)c;
                        break;
                case '\b':
                        e[1] = 'b';
                        break;
                case '\f':
                        e[1] = 'f';
                        break;
                case '\n':
                        e[1] = 'n';
                        break;
                case '\r':
                        e[1] = 'r';
                        break;
                case '\t':
                        e[1] = 't';
                        break;
                default:
                        memcpy(e + 1, "u00", 3);
                        e[4] = hex[c >> 4];
                        e[5] = hex[c & 15];
                        len = 6;
                }
                aj_json_out_raw(o, e, len);
        }
        aj_json_out_raw(o, s + run, n - run);
        put_c(o, '"');
        return 0;
}

void aj_json_out_integer(AjJsonOut *o, json_int_t v)
{
        char b[24];
        size_t i = sizeof(b);
        unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
        do
                b[--i] = (char)('0' + u % 10);
        while ((u /= 10) > 0);
        if (v < 0)
                b[--i] = '-';
        aj_json_out_raw(o, b + i, sizeof(b) - i);
}

/* jansson's jsonp_dtostr(): "%.*g", a ".0" when neither '.' nor 'e' shows it is a real,
 * the exponent without '+' and without leading zeros. (A locale's decimal comma: never
 * in the supervisor, which keeps the C locale.) */
int aj_json_out_real(AjJsonOut *o, double v)
{
        char b[64];
        int n = snprintf(b, sizeof(b) - 3, "%.*g", o->precision, v);
        if (n < 0 || (size_t)n >= sizeof(b) - 3)
                return -1;
        size_t len = (size_t)n;
        char *e = memchr(b, 'e', len);
        if (!e && !memchr(b, '.', len)) {
                if (memchr(b, 'n', len) || memchr(b, 'i', len))
                        return -1; /* nan, inf: jansson refuses them */
                memcpy(b + len, ".0", 2);
                len += 2;
        }
        if (e) {
                char *start = e + 1, *end = start + 1;
                if (*start == '-')
                        start++;
                while (end < b + len && *end == '0')
                        end++;
                if (end != start) {
                        memmove(start, end, (size_t)(b + len - end));
                        len -= (size_t)(end - start);
                }
        }
        aj_json_out_raw(o, b, len);
        return 0;
}

static int put_value(AjJsonOut *o, const json_t *v, int depth)
{
        if (depth > FAST_MAX_DEPTH)
                return -1;
        switch (json_typeof(v)) {
        case JSON_OBJECT: {
                const char *key;
                json_t *m;
                bool first = true;
                put_c(o, '{');
                json_object_foreach ((json_t *)v, key, m) {
                        if (!first)
                                put_c(o, ',');
                        first = false;
                        if (aj_json_out_string(o, key, strlen(key)) < 0)
                                return -1;
                        put_c(o, ':');
                        if (put_value(o, m, depth + 1) < 0)
                                return -1;
                }
                put_c(o, '}');
                return 0;
        }
        case JSON_ARRAY:
                put_c(o, '[');
                for (size_t i = 0; i < json_array_size(v); i++) {
                        if (i > 0)
                                put_c(o, ',');
                        if (put_value(o, json_array_get(v, i), depth + 1) < 0)
                                return -1;
                }
                put_c(o, ']');
                return 0;
        case JSON_STRING:
                return aj_json_out_string(o, json_string_value(v), json_string_length(v));
        case JSON_INTEGER:
                aj_json_out_integer(o, json_integer_value(v));
                return 0;
        case JSON_REAL:
                return aj_json_out_real(o, json_real_value(v));
        case JSON_TRUE:
                aj_json_out_raw(o, "true", 4);
                return 0;
        case JSON_FALSE:
                aj_json_out_raw(o, "false", 5);
                return 0;
        case JSON_NULL:
                aj_json_out_raw(o, "null", 4);
                return 0;
        }
        return -1;
}

int aj_json_out_value(AjJsonOut *o, const json_t *v) { return v ? put_value(o, v, 0) : -1; }

ssize_t aj_json_dump_fast(const json_t *v, char *buf, size_t size, bool ensure_ascii, int precision)
{
        AjJsonOut o = aj_json_out(buf, size, ensure_ascii, precision);
        if (aj_json_out_value(&o, v) < 0)
                return -1;
        return (ssize_t)o.len;
}
