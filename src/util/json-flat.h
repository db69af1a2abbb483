/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fast path for the broker's request lines: a JSON object whose values are plain strings
 * (printable ASCII, no escapes), small non-negative integers, true, false, null, and arrays
 * and objects of those (a tool call's arguments), nested at most AJ_JSON_FLAT_MAX_DEPTH
 * levels (the line's own object included), parsed straight into jansson values, without
 * jansson's general lexer. Anything else (escapes, non-ASCII, reals, negative or long
 * numbers, duplicate keys, deeper nesting, any syntax error) is not its business: it says
 * so, and the caller parses the line with json_loadb(), which then decides, with its own
 * error messages. So for every line it accepts, the result equals
 * json_loadb(JSON_REJECT_DUPLICATES)'s, members in the same order.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* Far below the broker's own bound (AJ_BROKER_MAX_DEPTH, 64), which the caller checks on
 * the lines this leaves to jansson; and a bound on this parser's recursion. */
#define AJ_JSON_FLAT_MAX_DEPTH 8

/* 1: *ret is the object; 0: not a flat line (use json_loadb); -ENOMEM. */
int aj_json_load_flat(const char *text, size_t len, json_t **ret);
