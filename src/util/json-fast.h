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
