/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Finds where a value sits in a JSON text, for error messages that point at
 * the line and column the user wrote. jansson keeps no positions for values
 * that parsed fine, so this rescans the raw text. Pure, never allocates.
 */
#pragma once

#include <stdbool.h>

typedef enum {
        AJ_JSON_AT_VALUE, /* the first character of the value */
        AJ_JSON_AT_KEY,   /* the opening quote of the member's key (the value for array elements) */
} AjJsonLocateWhat;

/*
 * `path` is NULL-terminated: object member names as written after decoding
 * escapes, or "[N]" for element N of an array. Which one an element means
 * follows from the container met in the text, so a member literally named
 * "[0]" still works. Lines and columns are 1-based; columns count UTF-8
 * characters, like jansson's error positions.
 * Returns 0, -ENOENT when the path is not in the text, -EINVAL on text that
 * is not JSON (the scanner never reads past the terminating NUL).
 */
int aj_json_locate(const char *text, const char *const *path, AjJsonLocateWhat what, unsigned *ret_line,
                   unsigned *ret_col);
