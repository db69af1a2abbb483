/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fast path for the broker's request lines: a flat JSON object whose values are plain
 * strings (printable ASCII, no escapes) and small non-negative integers, parsed straight
 * into jansson values, without jansson's general lexer. Anything else (nested values,
 * escapes, non-ASCII, reals, negative or long numbers, duplicate keys, any syntax error) is
 * not its business: it says so, and the caller parses the line with json_loadb(), which
 * then decides, with its own error messages. So for every line it accepts, the result
 * equals json_loadb(JSON_REJECT_DUPLICATES)'s.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* 1: *ret is the object; 0: not a flat line (use json_loadb); -ENOMEM. */
int aj_json_load_flat(const char *text, size_t len, json_t **ret);
