/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Two guards on what an agent or a provider writes: the operator-output escaping rule and
 * the gateway's JSON pre-scan. Input: byte 0 picks the escaping flags (bits 0-1); the rest
 * is the text. Checked:
 *   - aj_printable_dup() writes no C0 byte (a tab only with AJ_ESCAPE_KEEP_TAB), no DEL, no
 *     invalid UTF-8 and none of the code points a terminal acts on or that reorder a line
 *     (C1, U+2028/2029, the bidi overrides and isolates), and aj_json_text_hidden_escaped()
 *     of any JSON text jansson accepts is the same JSON with none of those either;
 *   - aj_json_scan() never counts fewer values or levels than jansson builds (the bound on
 *     the DOM's memory rests on it), and refuses past its bounds whatever jansson would do.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util/format.h"
#include "../helpers/json-dom-shape.h"
#include "util/json-scan.h"

#define FUZZ_MAX_INPUT (256u << 10)

/* The rule written out again on purpose, apart from util/format.c: an oracle, not a caller. */
static uint32_t code_point(const unsigned char *s, size_t n)
{
        if (n == 2)
                return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
        if (n == 3)
                return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
               (s[3] & 0x3f);
}

/* C1 controls, the line and paragraph separators and bidirectional controls, and Unicode's
 * Default_Ignorable_Code_Point (DerivedCoreProperties.txt), with the Hangul fillers. */
static bool hidden(uint32_t cp)
{
        return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x34f || cp == 0x61c || cp == 0x115f || cp == 0x1160 ||
               cp == 0x17b4 || cp == 0x17b5 || (cp >= 0x180b && cp <= 0x180f) || (cp >= 0x200b && cp <= 0x200f) ||
               (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) || cp == 0x3164 ||
               (cp >= 0xfe00 && cp <= 0xfe0f) || cp == 0xfeff || cp == 0xffa0 || (cp >= 0xfff0 && cp <= 0xfff8) ||
               (cp >= 0x1bca0 && cp <= 0x1bca3) || (cp >= 0x1d173 && cp <= 0x1d17a) || (cp >= 0xe0000 && cp <= 0xe0fff);
}

/* Nothing in s a terminal would act on: traps otherwise. */
static void check_shown(const char *s, size_t len, bool tab_ok)
{
        for (size_t i = 0; i < len;) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x80) {
                        if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
                                __builtin_trap();
                        i++;
                        continue;
                }
                size_t n = aj_utf8_len(s + i, len - i);
                if (n < 2 || hidden(code_point((const unsigned char *)s + i, n)))
                        __builtin_trap();
                i += n;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > FUZZ_MAX_INPUT)
                return 0;
        unsigned flags = data[0] & (AJ_ESCAPE_QUOTE | AJ_ESCAPE_KEEP_TAB);
        const char *text = (const char *)data + 1;
        size_t len = size - 1;

        char *shown = aj_printable_dup(text, len, flags);
        if (shown) {
                check_shown(shown, strlen(shown), flags & AJ_ESCAPE_KEEP_TAB);
                free(shown);
        }

        AjJsonShape scan = { 0 };
        int r = aj_json_scan(text, len, UINT64_MAX, ~0u, &scan);
        if (r < 0)
                __builtin_trap(); /* no bound given: no refusal */
        AjJsonShape small;
        if (scan.values > 1 && aj_json_scan(text, len, scan.values - 1, ~0u, &small) != -E2BIG)
                __builtin_trap();
        if (scan.depth > 0 && aj_json_scan(text, len, UINT64_MAX, scan.depth - 1, &small) != -ELOOP)
                __builtin_trap();

        json_error_t err;
        json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!root)
                return 0;
        AjJsonShape dom = { 0 };
        json_dom_shape(root, 0, &dom);
        /* Duplicate keys make jansson keep fewer than the text holds: never more. */
        if (dom.values > scan.values || dom.depth > scan.depth)
                __builtin_trap();
        char *dumped = json_dumps(root, JSON_ENCODE_ANY | JSON_COMPACT);
        if (dumped) {
                char *esc = aj_json_text_hidden_escaped(dumped);
                if (esc) {
                        check_shown(esc, strlen(esc), false);
                        json_t *again = json_loads(esc, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                        if (!again || !json_equal(root, again))
                                __builtin_trap();
                        json_decref(again);
                        free(esc);
                }
                free(dumped);
        }
        json_decref(root);
        return 0;
}
