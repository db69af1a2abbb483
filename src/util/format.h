/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/macros.h"

/* printf into a new string: *ret is set (and owned by the caller) only on success; 0, or -ENOMEM
 * with *ret untouched. The one place that calls vasprintf(3) and maps its -1. */
_printf_(2, 0) int aj_vasprintf(char **ret, const char *fmt, va_list ap);
_printf_(2, 3) int aj_asprintf(char **ret, const char *fmt, ...);

/* ---- Text an agent or a provider wrote, shown to the operator ----
 * One rule for every such string an operator's verb prints (a terminal acts on control
 * sequences: a window title, cursor moves, line erasure, an OSC 52 clipboard write):
 * printable ASCII and printable UTF-8 (é, CJK) stay as they are; tab, newline and carriage
 * return show as \t \n \r, the other C0 controls and DEL as \xNN; C1 controls (U+0080..U+009F)
 * and the code points that move or reorder the text around them (U+2028/9, bidirectional
 * embeddings, overrides, isolates, marks) and those that show as nothing (Unicode's
 * default-ignorable code points: soft hyphen, zero-width space and joiners, word joiner, BOM,
 * the Hangul fillers, variation selectors, tag characters) as \uNNNN or, past U+FFFF,
 * \UNNNNNNNN; a byte that is not part of valid UTF-8 as \xNN.
 * With AJ_ESCAPE_QUOTE (a file name, as git's core.quotePath shows one) '\\' and '"' are
 * escaped too, and a name that needed any escape is shown between double quotes. */
enum {
        AJ_ESCAPE_QUOTE = 1 << 0,
        AJ_ESCAPE_KEEP_TAB = 1 << 1, /* a tab stays a tab (a patch's lines: harmless, and exact) */
};
#define AJ_ESCAPE_MAX 11 /* one character's shown form ("\\U000e0041"), with its NUL */

/* The length (1..4) of the valid UTF-8 sequence at s (avail bytes), or 0. */
size_t aj_utf8_len(const char *s, size_t avail);
/* The code point of the valid sequence of n (1..4, aj_utf8_len()) bytes at p. */
uint32_t aj_utf8_code_point(const unsigned char *p, size_t n);
/* Writes the shown form of the character at s (avail > 0 bytes) to out (*ret_len bytes, not
 * NUL-terminated); returns how many bytes of s it took (1..4). */
size_t aj_escape_char(const char *s, size_t avail, unsigned flags, char out[AJ_ESCAPE_MAX], size_t *ret_len);
/* Does s (len bytes) show as itself (valid UTF-8, nothing escaped)? */
bool aj_printable_as_is(const char *s, size_t len);
/* Appends s to the string in buf (size bytes), escaped, and short: after max bytes of s, or
 * when buf is full, "..." ends it. Returns buf. */
char *aj_append_printable(char *buf, size_t size, const char *s, size_t max);
/* s (len bytes, NULs included) escaped, whole, in a new string; NULL: out of memory. */
char *aj_printable_dup(const char *s, size_t len, unsigned flags);
/* fputs(3) of s escaped: 0, -EIO, or -ENOMEM (then "?" is written). */
int aj_fputs_printable(const char *s, FILE *f);
/* fprintf(3) of a message whose arguments may carry such text (a file name from a workspace, a
 * run's name, a tool's name, a reply from the supervisor): the whole formatted message escaped,
 * so its newlines show as \n too and no argument can end the line or start another; the
 * caller writes the line's end. 0, -EIO, or -ENOMEM (then "?" is written). */
_printf_(2, 0) int aj_vfprintf_printable(FILE *f, const char *fmt, va_list ap);
_printf_(2, 3) int aj_fprintf_printable(FILE *f, const char *fmt, ...);
/* A JSON text (from json_dumps) with what aj_escape_char hides written as \u escapes (DEL, the
 * C1 controls, U+2028/2029, the bidi controls, the invisible ones): the same JSON for a parser, and
 * nothing a terminal acts on or that reorders a line. json_dumps escapes C0 only. NULL: out of
 * memory. */
char *aj_json_text_hidden_escaped(const char *text);
/* A JSON string of s as it is, or, when s is not UTF-8 (bytes from the agent, a message cut
 * mid-character), of s escaped by the rule above: kept rather than dropped. NULL: out of
 * memory. */
struct json_t *aj_json_string_shown(const char *s);

/* JSON text for an operator to read: objects and arrays down to `levels` deep laid out one
 * member a line as JSON_INDENT(2) lays them out, anything deeper on one line with ", " and
 * ": " between members (as JSON_INDENT(0)). Indenting every level costs a member 2 bytes a
 * level of its depth: the agent's values nest 64 deep, 66 times their size pretty-printed;
 * this is at most `levels` + 1.5 times the compact text. Key order kept. NULL: out of memory
 * (or a value jansson cannot dump). */
char *aj_json_dumps_indented(const struct json_t *v, unsigned levels);
/* The same, with each object member's value (from the document down to `levels` deep) first
 * offered to `expand`: a new reference it returns is written in the value's place (and let
 * go at once), NULL writes the value. For documents that hold values as their JSON text (a
 * DOM of them all would be many times the text): each is parsed only while it is written. */
typedef struct json_t *(*AjJsonExpand)(const char *key, const struct json_t *value, void *userdata);
char *aj_json_dumps_indented_expand(const struct json_t *v, unsigned levels, AjJsonExpand expand, void *userdata);

/* "15m", "90s": a duration for messages (whole minutes as minutes, else seconds). Returns buf. */
const char *aj_format_duration(uint64_t ns, char *buf, size_t size);
/* "512 bytes", "1.5 MiB", "20.0 GiB": for messages. */
const char *aj_format_bytes(uint64_t n, char *buf, size_t size);
