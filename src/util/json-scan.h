/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shape of JSON text, before jansson builds it: how many values it holds and how
 * deep it nests, in one pass over the bytes, with no allocation. jansson's DOM costs
 * about 40 to 230 bytes a value (an empty object is the dearest: measured with jansson
 * 2.14, docs/gateway.md), and its decoding flags bound neither the count nor the memory
 * (JSON_DECODE_ANY only admits a scalar at the top; its own depth limit is 2048), so text
 * an agent or a provider controls is scanned first and refused past fixed bounds: then
 * the DOM of what is parsed is at most max_values times that cost, plus the strings' bytes.
 *
 * Not a validator: malformed or truncated text is counted as far as it goes and left to
 * the parser, which refuses it with its own message.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
        /* Objects, arrays, strings, numbers, literals, and object keys (each of those is an
         * allocation of jansson's too). */
        uint64_t values;
        unsigned depth; /* of the deepest object or array: 0 for a scalar, 1 for {} */
} AjJsonShape;

/* 0 and *ret_shape (may be NULL) when the text has at most max_values values and nests at
 * most max_depth deep; -E2BIG past max_values, -ELOOP past max_depth (the scan stops at
 * the first value past a bound, so refusing costs no more than the bound). */
int aj_json_scan(const void *text, size_t len, uint64_t max_values, unsigned max_depth, AjJsonShape *ret_shape);
