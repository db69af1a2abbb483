/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/json-locate.h"
#include "util/parse.h"

typedef struct {
        const char *p;
        unsigned line, col;
} Scanner;

static bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

static void advance(Scanner *s)
{
        if (!*s->p)
                return;
        unsigned char c = (unsigned char)*s->p++;
        if (c == '\n') {
                s->line++;
                s->col = 1;
        } else if (!is_continuation((unsigned char)*s->p))
                /* Only a byte that starts a character moves the column, so a
                 * multi-byte UTF-8 sequence counts once, as jansson counts it. */
                s->col++;
}

static void skip_ws(Scanner *s)
{
        while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
                advance(s);
}

static int read_hex4(Scanner *s, uint32_t *ret)
{
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
                int h = aj_hex_digit(*s->p);
                if (h < 0)
                        return -EINVAL;
                v = v << 4 | (uint32_t)h;
                advance(s);
        }
        *ret = v;
        return 0;
}

static size_t encode_utf8(uint32_t cp, char out[4])
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xC0 | cp >> 6);
                out[1] = (char)(0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xE0 | cp >> 12);
                out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
                out[2] = (char)(0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (char)(0xF0 | cp >> 18);
        out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
}

/* Decodes one escape sequence (after the backslash) into UTF-8 bytes. */
static int read_escape(Scanner *s, char out[4], size_t *ret_n)
{
        char c = *s->p;
        advance(s);
        switch (c) {
        case '"':
        case '\\':
        case '/':
                out[0] = c;
                break;
        case 'b':
                out[0] = '\b';
                break;
        case 'f':
                out[0] = '\f';
                break;
        case 'n':
                out[0] = '\n';
                break;
        case 'r':
                out[0] = '\r';
                break;
        case 't':
                out[0] = '\t';
                break;
        case 'u': {
                uint32_t cp;
                if (read_hex4(s, &cp) < 0)
                        return -EINVAL;
                if (cp >= 0xD800 && cp <= 0xDBFF && s->p[0] == '\\' && s->p[1] == 'u') {
                        Scanner save = *s;
                        uint32_t lo;
                        advance(s);
                        advance(s);
                        if (read_hex4(s, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF)
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        else
                                *s = save;
                }
                *ret_n = encode_utf8(cp, out);
                return 0;
        }
        default:
                return -EINVAL;
        }
        *ret_n = 1;
        return 0;
}

/* At an opening quote: consumes the string; *ret_equal tells whether it decodes to `want` (may be NULL). */
static int scan_string(Scanner *s, const char *want, bool *ret_equal)
{
        if (*s->p != '"')
                return -EINVAL;
        advance(s);
        size_t k = 0;
        bool equal = want != NULL;
        for (;;) {
                char c = *s->p;
                char buf[4];
                size_t n = 1;
                if (c == 0)
                        return -EINVAL;
                if (c == '"') {
                        advance(s);
                        break;
                }
                if (c == '\\') {
                        advance(s);
                        if (read_escape(s, buf, &n) < 0)
                                return -EINVAL;
                } else {
                        buf[0] = c;
                        advance(s);
                }
                for (size_t i = 0; equal && i < n; i++, k++)
                        if (want[k] == 0 || want[k] != buf[i])
                                equal = false;
        }
        if (equal && want[k] != 0)
                equal = false;
        if (ret_equal)
                *ret_equal = equal;
        return 0;
}

static int skip_value(Scanner *s)
{
        char c = *s->p;
        if (c == '"')
                return scan_string(s, NULL, NULL);
        if (c == '{' || c == '[') {
                /* Nesting depth is only counted, never recursed on, so no input can exhaust the stack. */
                size_t depth = 0;
                do {
                        c = *s->p;
                        if (c == 0)
                                return -EINVAL;
                        if (c == '"') {
                                if (scan_string(s, NULL, NULL) < 0)
                                        return -EINVAL;
                                continue;
                        }
                        if (c == '{' || c == '[')
                                depth++;
                        else if (c == '}' || c == ']')
                                depth--;
                        advance(s);
                } while (depth > 0);
                return 0;
        }
        if (c == 0 || c == ',' || c == '}' || c == ']' || c == ':')
                return -EINVAL;
        while (*s->p && !strchr(",]} \t\r\n", *s->p))
                advance(s);
        return 0;
}

static int parse_index(const char *e, size_t *ret)
{
        if (e[0] != '[' || e[1] < '0' || e[1] > '9')
                return -EINVAL;
        size_t v = 0;
        const char *p = e + 1;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (SIZE_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (size_t)(*p - '0');
        }
        if (p[0] != ']' || p[1] != 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Moves past the separator after a member or element; -ENOENT at the container's end. */
static int next_item(Scanner *s, char close)
{
        skip_ws(s);
        if (*s->p == ',') {
                advance(s);
                skip_ws(s);
                return 0;
        }
        return *s->p == close ? -ENOENT : -EINVAL;
}

int aj_json_locate(const char *text, const char *const *path, AjJsonLocateWhat what, unsigned *ret_line,
                   unsigned *ret_col)
{
        if (!text)
                return -EINVAL;
        Scanner s = { .p = text, .line = 1, .col = 1 };
        Scanner key = s;
        int r;

        skip_ws(&s);
        key = s;
        for (size_t i = 0; path && path[i]; i++) {
                if (*s.p == '{') {
                        advance(&s);
                        skip_ws(&s);
                        if (*s.p == '}')
                                return -ENOENT;
                        for (;;) {
                                bool equal;
                                key = s;
                                r = scan_string(&s, path[i], &equal);
                                if (r < 0)
                                        return r;
                                skip_ws(&s);
                                if (*s.p != ':')
                                        return -EINVAL;
                                advance(&s);
                                skip_ws(&s);
                                if (equal)
                                        break;
                                r = skip_value(&s);
                                if (r < 0)
                                        return r;
                                r = next_item(&s, '}');
                                if (r < 0)
                                        return r;
                        }
                } else if (*s.p == '[') {
                        size_t n;
                        r = parse_index(path[i], &n);
                        if (r < 0)
                                return -ENOENT;
                        advance(&s);
                        skip_ws(&s);
                        if (*s.p == ']')
                                return -ENOENT;
                        for (size_t j = 0; j < n; j++) {
                                r = skip_value(&s);
                                if (r < 0)
                                        return r;
                                r = next_item(&s, ']');
                                if (r < 0)
                                        return r;
                        }
                        key = s;
                } else if (*s.p == 0)
                        return -EINVAL;
                else
                        return -ENOENT; /* the path goes on below a scalar */
        }
        if (*s.p == 0)
                return -EINVAL;
        const Scanner *at = what == AJ_JSON_AT_KEY ? &key : &s;
        *ret_line = at->line;
        *ret_col = at->col;
        return 0;
}
