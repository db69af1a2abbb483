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

static inline void aj_strv_freep(char ***v) { aj_strv_free(*v); }
#define _cleanup_strv_free_ _cleanup_(aj_strv_freep)
