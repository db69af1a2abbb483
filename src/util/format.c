/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

size_t aj_utf8_len(const char *s, size_t avail)
{
        const unsigned char *p = (const unsigned char *)s;
        if (avail == 0)
                return 0;
        if (p[0] < 0x80)
                return 1;
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range (overlongs, surrogates, > U+10FFFF) */
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2;
        else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                n = 3;
                lo = p[0] == 0xe0 ? 0xa0 : 0x80;
                hi = p[0] == 0xed ? 0x9f : 0xbf;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                n = 4;
                lo = p[0] == 0xf0 ? 0x90 : 0x80;
                hi = p[0] == 0xf4 ? 0x8f : 0xbf;
        } else
                return 0;
        if (avail < n || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

uint32_t aj_utf8_code_point(const unsigned char *p, size_t n)
{
        static const unsigned char lead_mask[] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
        uint32_t cp = p[0] & lead_mask[n];
        for (size_t i = 1; i < n; i++)
                cp = cp << 6 | (p[i] & 0x3f);
        return cp;
}

/* Code points a terminal acts on rather than shows: C1 controls (U+009B is CSI, U+009D OSC in
 * terminals that take them), those that move or reorder text around them (line and
 * paragraph separators, bidirectional embeddings, overrides, isolates and marks: U+200E/F,
 * U+061C), and those that show as nothing, so that two names that look the same are not:
 * Unicode's Default_Ignorable_Code_Point, all of it (soft hyphen, zero-width space and
 * joiners, word joiner and the invisible operators, the byte order mark; and the Hangul
 * fillers, drawn as a blank as wide as a letter, a gap in an operator's table; variation
 * selectors; the tag characters U+E0000..U+E007F, which spell ASCII text no terminal shows). */
static bool hidden_code_point(uint32_t cp)
{
        static const struct {
                uint32_t first, last;
        } hidden[] = {
                { 0x80, 0x9f },       { 0xad, 0xad },       { 0x34f, 0x34f },   { 0x61c, 0x61c },
                { 0x115f, 0x1160 },   { 0x17b4, 0x17b5 },   { 0x180b, 0x180f }, { 0x200b, 0x200f },
                { 0x2028, 0x202e },   { 0x2060, 0x206f },   { 0x3164, 0x3164 }, { 0xfe00, 0xfe0f },
                { 0xfeff, 0xfeff },   { 0xffa0, 0xffa0 },   { 0xfff0, 0xfff8 }, { 0x1bca0, 0x1bca3 },
                { 0x1d173, 0x1d17a }, { 0xe0000, 0xe0fff },
        };
        for (size_t i = 0; i < ARRAY_SIZE(hidden); i++)
                if (cp >= hidden[i].first && cp <= hidden[i].last)
                        return true;
        return false;
}

size_t aj_escape_char(const char *s, size_t avail, unsigned flags, char out[AJ_ESCAPE_MAX], size_t *ret_len)
{
        unsigned char c = (unsigned char)s[0];
        size_t n = aj_utf8_len(s, avail);
        if (n == 0) {
                *ret_len = (size_t)snprintf(out, AJ_ESCAPE_MAX, "\\x%02x", c);
                return 1;
        }
        if (n > 1) {
                uint32_t cp = aj_utf8_code_point((const unsigned char *)s, n);
                if (hidden_code_point(cp)) {
                        *ret_len = (size_t)snprintf(out, AJ_ESCAPE_MAX, cp > 0xffff ? "\\U%08x" : "\\u%04x",
                                                    (unsigned)cp);
                        return n;
                }
                memcpy(out, s, n);
                *ret_len = n;
                return n;
        }
        if (c == '\t' && flags & AJ_ESCAPE_KEEP_TAB) {
                out[0] = '\t';
                *ret_len = 1;
                return 1;
        }
        const char *named = c == '\t' ? "\\t" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : NULL;
        if (flags & AJ_ESCAPE_QUOTE && (c == '\\' || c == '"'))
                named = c == '"' ? "\\\"" : "\\\\";
        if (named) {
                *ret_len = strlen(named);
                memcpy(out, named, *ret_len);
        } else if (c < 0x20 || c == 0x7f)
                *ret_len = (size_t)snprintf(out, AJ_ESCAPE_MAX, "\\x%02x", c);
        else {
                out[0] = (char)c;
                *ret_len = 1;
        }
        return 1;
}

bool aj_printable_as_is(const char *s, size_t len)
{
        char shown[AJ_ESCAPE_MAX];
        for (size_t i = 0, n, k; i < len; i += n) {
                n = aj_escape_char(s + i, len - i, 0, shown, &k);
                if (k != n || memcmp(shown, s + i, n) != 0)
                        return false;
        }
        return true;
}

char *aj_append_printable(char *buf, size_t size, const char *s, size_t max)
{
        size_t len = strlen(buf), avail = strlen(s);
        char shown[AJ_ESCAPE_MAX];
        for (size_t i = 0, n, k; i < avail; i += n) {
                n = aj_escape_char(s + i, avail - i, 0, shown, &k);
                if (i >= max || len + k + 3 >= size) {
                        if (len + 3 < size) {
                                memcpy(buf + len, "...", 3);
                                len += 3;
                        }
                        break;
                }
                memcpy(buf + len, shown, k);
                len += k;
        }
        buf[len] = 0;
        return buf;
}

char *aj_printable_dup(const char *s, size_t len, unsigned flags)
{
        /* Each byte shows as at most 4 ("\xNN"); a 2-byte C1 as 6; 2 for the quotes, 1 for NUL. */
        if (len > (SIZE_MAX - 3) / 4)
                return NULL;
        char *buf = malloc(len * 4 + 3);
        if (!buf)
                return NULL;
        size_t o = flags & AJ_ESCAPE_QUOTE ? 1 : 0;
        bool changed = false;
        char shown[AJ_ESCAPE_MAX];
        for (size_t i = 0, n, k; i < len; i += n) {
                n = aj_escape_char(s + i, len - i, flags, shown, &k);
                changed |= k != n || memcmp(shown, s + i, n) != 0;
                memcpy(buf + o, shown, k);
                o += k;
        }
        if (flags & AJ_ESCAPE_QUOTE && changed) {
                buf[0] = '"';
                buf[o++] = '"';
        } else if (flags & AJ_ESCAPE_QUOTE)
                memmove(buf, buf + 1, --o);
        buf[o] = 0;
        return buf;
}

int aj_fputs_printable(const char *s, FILE *f)
{
        _cleanup_free_ char *shown = aj_printable_dup(s, strlen(s), 0);
        if (!shown)
                return fputs("?", f) < 0 ? -EIO : -ENOMEM;
        return fputs(shown, f) < 0 ? -EIO : 0;
}

int aj_vfprintf_printable(FILE *f, const char *fmt, va_list ap)
{
        _cleanup_free_ char *msg = NULL;
        if (aj_vasprintf(&msg, fmt, ap) < 0)
                return fputs("?", f) < 0 ? -EIO : -ENOMEM;
        return aj_fputs_printable(msg, f);
}

int aj_fprintf_printable(FILE *f, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vfprintf_printable(f, fmt, ap);
        va_end(ap);
        return r;
}

/* The length of a hidden character (aj_escape_char's \u set, or DEL) at text[i], its code
 * point in *cp; 0 when the character there is shown as it is. */
static size_t hidden_at(const char *text, size_t len, size_t i, uint32_t *cp)
{
        unsigned char c = (unsigned char)text[i];
        if (c == 0x7f) {
                *cp = 0x7f;
                return 1;
        }
        if (c < 0x80)
                return 0;
        size_t n = aj_utf8_len(text + i, len - i);
        if (n < 2)
                return 0;
        uint32_t v = aj_utf8_code_point((const unsigned char *)text + i, n);
        if (!hidden_code_point(v))
                return 0;
        *cp = v;
        return n;
}

char *aj_json_text_hidden_escaped(const char *text)
{
        size_t len = strlen(text), size = len + 1;
        uint32_t cp;
        for (size_t i = 0, n; i < len; i += n ? n : 1)
                if ((n = hidden_at(text, len, i, &cp)))
                        size += (cp > 0xffff ? 12 : 6) - n;
        char *out = malloc(size);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0, n; i < len; i += n ? n : 1) {
                if ((n = hidden_at(text, len, i, &cp)) && cp > 0xffff) /* JSON: a surrogate pair */
                        o += (size_t)snprintf(out + o, size - o, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                                              0xdc00 + ((cp - 0x10000) & 0x3ff));
                else if (n)
                        o += (size_t)snprintf(out + o, size - o, "\\u%04x", (unsigned)cp);
                else
                        out[o++] = text[i];
        }
        out[o] = 0;
        return out;
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

const char *aj_format_bytes(uint64_t n, char *buf, size_t size)
{
        static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        if (n < 1024) {
                snprintf(buf, size, "%llu bytes", (unsigned long long)n);
                return buf;
        }
        double v = (double)n;
        size_t u = 0;
        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(*units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

json_t *aj_json_string_shown(const char *s)
{
        json_t *j = json_string(s);
        if (j)
                return j;
        _cleanup_free_ char *shown = aj_printable_dup(s, strlen(s), 0);
        return shown ? json_string(shown) : NULL;
}

/* ---- JSON for an operator's eyes ---- */

typedef struct {
        char *buf;
        size_t len, size;
} Text;

static int text_add(const char *s, size_t n, void *userdata)
{
        Text *t = userdata;
        if (n >= t->size - t->len) {
                size_t size = t->size ? t->size : 256;
                while (n >= size - t->len) {
                        if (size > SIZE_MAX / 2)
                                return -1;
                        size *= 2;
                }
                char *b = realloc(t->buf, size);
                if (!b)
                        return -1;
                t->buf = b;
                t->size = size;
        }
        memcpy(t->buf + t->len, s, n);
        t->len += n;
        t->buf[t->len] = 0;
        return 0;
}

/* A newline and the indentation of a member `level` deep, after a ',' unless it is the first. */
static int text_member(Text *t, unsigned level, bool first)
{
        static const char spaces[] = "                                ";
        if ((!first && text_add(",", 1, t) < 0) || text_add("\n", 1, t) < 0)
                return -1;
        for (size_t left = (size_t)level * 2; left > 0;) {
                size_t n = left < sizeof(spaces) - 1 ? left : sizeof(spaces) - 1;
                if (text_add(spaces, n, t) < 0)
                        return -1;
                left -= n;
        }
        return 0;
}

typedef struct {
        Text t;
        AjJsonExpand expand; /* NULL: none */
        void *userdata;
} Layout;

/* v, `level` containers deep (0: the document), laid out while level < levels; jansson's
 * own one-line text from there on, and for scalars and empty containers. */
static int dump_laid_out(const json_t *v, unsigned level, unsigned levels, Layout *l)
{
        Text *t = &l->t;
        bool object = json_is_object(v);
        size_t n = object ? json_object_size(v) : json_is_array(v) ? json_array_size(v) : 0;
        if (level >= levels || n == 0)
                return json_dump_callback(v, text_add, t, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        if (text_add(object ? "{" : "[", 1, t) < 0)
                return -1;
        if (object) {
                size_t i = 0;
                for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
                        json_auto_t *key = json_stringn_nocheck(json_object_iter_key(it), json_object_iter_key_len(it));
                        json_t *value = json_object_iter_value(it);
                        json_auto_t *expanded = l->expand ? l->expand(json_object_iter_key(it), value, l->userdata)
                                                          : NULL;
                        if (!key || text_member(t, level + 1, i++ == 0) < 0 ||
                            json_dump_callback(key, text_add, t, JSON_ENCODE_ANY) < 0 || text_add(": ", 2, t) < 0 ||
                            dump_laid_out(expanded ?: value, level + 1, levels, l) < 0)
                                return -1;
                }
        } else {
                for (size_t i = 0; i < n; i++)
                        if (text_member(t, level + 1, i == 0) < 0 ||
                            dump_laid_out(json_array_get(v, i), level + 1, levels, l) < 0)
                                return -1;
        }
        if (text_member(t, level, true) < 0)
                return -1;
        return text_add(object ? "}" : "]", 1, t);
}

char *aj_json_dumps_indented_expand(const json_t *v, unsigned levels, AjJsonExpand expand, void *userdata)
{
        Layout l = { .expand = expand, .userdata = userdata };
        if (dump_laid_out(v, 0, levels, &l) < 0 || !l.t.buf) {
                free(l.t.buf);
                return NULL;
        }
        return l.t.buf;
}

char *aj_json_dumps_indented(const json_t *v, unsigned levels)
{
        return aj_json_dumps_indented_expand(v, levels, NULL, NULL);
}
