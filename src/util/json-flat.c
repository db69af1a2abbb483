/* SPDX-License-Identifier: Apache-2.0 */
#include "util/json-flat.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/macros.h"

/* Integers past this many digits go to jansson (which knows the int64 range). */
#define FLAT_MAX_DIGITS 18

static const char *skip_ws(const char *p, const char *end)
{
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* A string without escapes, of printable ASCII: its body [*ret_start, *ret_end); the
 * position after its closing quote, or NULL if it is anything else. */
static const char *plain_string(const char *p, const char *end, const char **ret_start, const char **ret_end)
{
        if (p >= end || *p != '"')
                return NULL;
        const char *s = ++p;
        for (; p < end && *p != '"'; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '\\')
                        return NULL;
        if (p >= end)
                return NULL;
        *ret_start = s;
        *ret_end = p;
        return p + 1;
}

static const char *small_integer(const char *p, const char *end, json_int_t *ret)
{
        const char *s = p;
        uint64_t v = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
                v = v * 10 + (uint64_t)(*p - '0');
        size_t n = (size_t)(p - s);
        /* No digits, a leading zero, too long, or a real ("1.5", "1e3"): not ours. */
        if (n == 0 || n > FLAT_MAX_DIGITS || (n > 1 && *s == '0') || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
                return NULL;
        *ret = (json_int_t)v;
        return p;
}

/* A literal (true, false, null) spelt out in full; NULL if not. */
static const char *literal(const char *p, const char *end, const char *word, size_t n)
{
        return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

typedef struct {
        const char *end;
        bool oom;
} Flat;

static const char *value(Flat *f, const char *p, int depth, json_t **ret);

/* The members of an object or the items of an array, p after its opening bracket; the
 * position after its closing one, NULL when not ours (or f->oom). */
static const char *members(Flat *f, const char *p, int depth, bool object, json_t *into)
{
        const char *end = f->end;
        char close = object ? '}' : ']';
        p = skip_ws(p, end);
        if (p < end && *p == close)
                return p + 1;
        for (;;) {
                const char *ks = NULL, *ke = NULL;
                if (object) {
                        if (!(p = plain_string(p, end, &ks, &ke)))
                                return NULL;
                        p = skip_ws(p, end);
                        if (p >= end || *p != ':')
                                return NULL;
                        p = skip_ws(p + 1, end);
                }
                json_t *v = NULL;
                if (!(p = value(f, p, depth, &v)))
                        return NULL;
                int r;
                if (!object)
                        r = json_array_append_new(into, v);
                else if (json_object_getn(into, ks, (size_t)(ke - ks))) {
                        /* A duplicate key is jansson's to refuse, with its message. */
                        json_decref(v);
                        return NULL;
                } else
                        r = json_object_setn_new_nocheck(into, ks, (size_t)(ke - ks), v);
                if (r < 0) {
                        f->oom = true;
                        return NULL;
                }
                p = skip_ws(p, end);
                if (p < end && *p == ',') {
                        p = skip_ws(p + 1, end);
                        continue;
                }
                return p < end && *p == close ? p + 1 : NULL;
        }
}

static const char *value(Flat *f, const char *p, int depth, json_t **ret)
{
        const char *end = f->end, *q;
        json_t *v;
        if (p >= end)
                return NULL;
        if (*p == '{' || *p == '[') {
                /* Deeper is jansson's (and the caller's bound on nesting). */
                if (depth >= AJ_JSON_FLAT_MAX_DEPTH)
                        return NULL;
                bool object = *p == '{';
                v = object ? json_object() : json_array();
                if (v && (q = members(f, p + 1, depth + 1, object, v))) {
                        *ret = v;
                        return q;
                }
                f->oom = f->oom || !v;
                json_decref(v);
                return NULL;
        }
        const char *vs, *ve;
        json_int_t i;
        if (*p == '"') {
                if (!(q = plain_string(p, end, &vs, &ve)))
                        return NULL;
                v = json_stringn_nocheck(vs, (size_t)(ve - vs));
        } else if ((q = literal(p, end, "null", 4)))
                v = json_null();
        else if ((q = literal(p, end, "true", 4)))
                v = json_true();
        else if ((q = literal(p, end, "false", 5)))
                v = json_false();
        else if ((q = small_integer(p, end, &i)))
                v = json_integer(i);
        else
                return NULL;
        if (!v) {
                f->oom = true;
                return NULL;
        }
        *ret = v;
        return q;
}

int aj_json_load_flat(const char *text, size_t len, json_t **ret)
{
        Flat f = { .end = text + len };
        const char *p = skip_ws(text, f.end);
        if (p >= f.end || *p != '{')
                return 0;
        json_t *o = NULL;
        p = value(&f, p, 0, &o);
        if (!p)
                return f.oom ? -ENOMEM : 0;
        if (skip_ws(p, f.end) != f.end) {
                json_decref(o);
                return 0;
        }
        *ret = o;
        return 1;
}
