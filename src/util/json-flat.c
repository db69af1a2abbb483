/* SPDX-License-Identifier: Apache-2.0 */
#include "util/json-flat.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

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

int aj_json_load_flat(const char *text, size_t len, json_t **ret)
{
        const char *p = text, *end = text + len;
        p = skip_ws(p, end);
        if (p >= end || *p != '{')
                return 0;
        _cleanup_(json_decrefp) json_t *o = json_object();
        if (!o)
                return -ENOMEM;
        p = skip_ws(p + 1, end);
        bool first = true;
        for (;;) {
                if (p < end && *p == '}' && first)
                        break;
                const char *ks, *ke, *vs, *ve;
                if (!(p = plain_string(p, end, &ks, &ke)))
                        return 0;
                p = skip_ws(p, end);
                if (p >= end || *p != ':')
                        return 0;
                p = skip_ws(p + 1, end);
                json_t *v;
                if (p < end && *p == '"') {
                        if (!(p = plain_string(p, end, &vs, &ve)))
                                return 0;
                        v = json_stringn_nocheck(vs, (size_t)(ve - vs));
                } else {
                        json_int_t i;
                        if (!(p = small_integer(p, end, &i)))
                                return 0;
                        v = json_integer(i);
                }
                if (!v)
                        return -ENOMEM;
                /* A duplicate key is jansson's to refuse, with its message. */
                if (json_object_getn(o, ks, (size_t)(ke - ks))) {
                        json_decref(v);
                        return 0;
                }
                if (json_object_setn_new_nocheck(o, ks, (size_t)(ke - ks), v) < 0)
                        return -ENOMEM;
                first = false;
                p = skip_ws(p, end);
                if (p < end && *p == ',') {
                        p = skip_ws(p + 1, end);
                        continue;
                }
                if (p < end && *p == '}')
                        break;
                return 0;
        }
        if (skip_ws(p + 1, end) != end)
                return 0;
        *ret = TAKE_PTR(o);
        return 1;
}
