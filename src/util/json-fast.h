/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json_dumpb()'s output for JSON_COMPACT (with or without JSON_ENSURE_ASCII, any
 * JSON_REAL_PRECISION), byte for byte, without its per-character UTF-8 walk and
 * recursion through generic buffers: for the event chain and the broker's replies, one or
 * more per message. A string with a byte past ASCII (which ENSURE_ASCII would escape) is
 * not its business: it says so and the caller uses jansson.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* As json_dumpb(): the length of the text (written if it fits in size; nothing else is
 * reliable then); -1 when the value is not for this writer (use json_dumpb()). `precision`:
 * JSON_REAL_PRECISION's digits, 0 for jansson's default (17). */
ssize_t aj_json_dump_fast(const json_t *v, char *buf, size_t size, bool ensure_ascii, int precision);
/* The same with JSON_SORT_KEYS (the canonical form of a tool call's arguments); -1 also for
 * an object of more than AJ_JSON_SORT_MAX_KEYS members (jansson's then). */
#define AJ_JSON_SORT_MAX_KEYS 64
ssize_t aj_json_dump_fast_sorted(const json_t *v, char *buf, size_t size, bool ensure_ascii, int precision);

/* The same text, piece by piece, for a caller that prints a known shape without building
 * it as jansson values first. Like json_dumpb(), `len` counts what the text needs even past
 * `size` (then only the first `size` bytes are written). The functions returning int say
 * -1 where the whole must be left to jansson (a non-ASCII string under ENSURE_ASCII). */
typedef struct {
        char *buf;
        size_t size, len;
        bool ascii;
        bool sort_keys; /* objects' members in their keys' order (JSON_SORT_KEYS) */
        int precision;
} AjJsonOut;

static inline AjJsonOut aj_json_out(char *buf, size_t size, bool ensure_ascii, int precision)
{
        return (AjJsonOut){ .buf = buf, .size = size, .ascii = ensure_ascii, .precision = precision ? precision : 17 };
}
void aj_json_out_raw(AjJsonOut *o, const char *s, size_t n);
/* A string literal's bytes, as they are. */
#define AJ_JSON_OUT_LITERAL(o, lit) aj_json_out_raw((o), (lit), sizeof(lit) - 1)
int aj_json_out_string(AjJsonOut *o, const char *s, size_t n);
void aj_json_out_integer(AjJsonOut *o, json_int_t v);
int aj_json_out_real(AjJsonOut *o, double v);
/* snprintf(out, size, "%.*g", precision, v), for 1 <= precision <= 17, size >= 32, without
 * glibc's multi-precision arithmetic: the length, or -1 for a value it leaves to snprintf()
 * (inf, nan, subnormals, |v| below ~1e-23 or above ~1e35). */
int aj_json_format_g(char *out, size_t size, double v, int precision);
int aj_json_out_value(AjJsonOut *o, const json_t *v);
