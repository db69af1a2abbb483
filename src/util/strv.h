/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/macros.h"

/* NULL-terminated vectors of owned strings. */
size_t aj_strv_length(char *const *v);
void aj_strv_free(char **v);
/* Append a copy of s; returns 0 or -ENOMEM. *v may be NULL. */
int aj_strv_push(char ***v, const char *s);
/* Append s, taking ownership (freed on failure too). The slots grow as aj_strv_append's do
 * (doubled when full: n appends reallocate O(log n) times), found from the allocation; the
 * length is counted at each call (a scan, no allocation): for thousands of strings keep
 * n and cap yourself (aj_strv_append). */
int aj_strv_consume(char ***v, char *s);
/* Append s (taken, freed on failure too; NULL is -ENOMEM, as from a failed strdup) to *v,
 * its *n strings in *cap slots (the NULL's included; 0 and 0 for a NULL *v), kept by the
 * caller: the slots double as they fill, so n appends cost O(n) where aj_strv_push, which
 * walks to the end each time, costs O(n^2). *v stays a strv (aj_strv_free). */
int aj_strv_append(char ***v, size_t *n, size_t *cap, char *s);
bool aj_strv_contains(char *const *v, const char *s);
/* Sorts v (strcmp order) and frees each string's repeats: O(n log n). Returns its new length. */
size_t aj_strv_sort_unique(char **v);
/* Whether v, its n strings sorted by aj_strv_sort_unique, has s: O(log n). */
bool aj_strv_sorted_contains(char *const *v, size_t n, const char *s);
char **aj_strv_copy(char *const *v);
/* text's lines, each without its '\n' (a last one without a '\n' too; none after a final
 * '\n'), as a new strv in *ret (NULL for an empty text): 0 or -ENOMEM. */
int aj_strv_split_lines(const char *text, char ***ret);
/* v's strings, each followed by a '\n', as one new string in *ret ("" for none): 0, -EINVAL
 * when one of them holds a '\n' (it would read back as two), or -ENOMEM. */
int aj_strv_join_lines(char *const *v, char **ret);

static inline void aj_strv_freep(char ***v) { aj_strv_free(*v); }
#define _cleanup_strv_free_ _cleanup_(aj_strv_freep)
