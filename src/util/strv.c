/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "util/strv.h"

size_t aj_strv_length(char *const *v)
{
        size_t n = 0;
        if (v)
                while (v[n])
                        n++;
        return n;
}

void aj_strv_free(char **v)
{
        if (!v)
                return;
        for (char **i = v; *i; i++)
                free(*i);
        free(v);
}

int aj_strv_append(char ***v, size_t *n, size_t *cap, char *s)
{
        if (!s)
                return -ENOMEM;
        if (*n + 2 > *cap) {
                size_t want = *cap ? *cap * 2 : 8;
                char **nv = reallocarray(*v, want, sizeof(char *));
                if (!nv) {
                        free(s);
                        return -ENOMEM;
                }
                *v = nv;
                *cap = want;
        }
        (*v)[*n] = s;
        (*v)[++*n] = NULL;
        return 0;
}

int aj_strv_consume(char ***v, char *s)
{
        /* A strv made anywhere: its slots are what its allocation holds (glibc's usable size,
         * room the program may use; under ASan exactly what was asked for), so the slots
         * aj_strv_append doubled into last time are found again, not reallocated once more
         * at every call (each one was, to twice the length). */
        size_t n = aj_strv_length(*v), cap = *v ? malloc_usable_size(*v) / sizeof(char *) : 0;
        return aj_strv_append(v, &n, &cap, s);
}

int aj_strv_push(char ***v, const char *s) { return aj_strv_consume(v, strdup(s)); }

bool aj_strv_contains(char *const *v, const char *s)
{
        if (v)
                for (; *v; v++)
                        if (strcmp(*v, s) == 0)
                                return true;
        return false;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

size_t aj_strv_sort_unique(char **v)
{
        size_t n = aj_strv_length(v), kept = 0;
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(char *), compare_strings);
        for (size_t i = 0; i < n; i++) {
                if (kept > 0 && strcmp(v[kept - 1], v[i]) == 0)
                        free(v[i]);
                else
                        v[kept++] = v[i];
        }
        v[kept] = NULL;
        return kept;
}

bool aj_strv_sorted_contains(char *const *v, size_t n, const char *s)
{
        return v && bsearch(&s, v, n, sizeof(char *), compare_strings);
}

char **aj_strv_copy(char *const *v)
{
        char **r = calloc(aj_strv_length(v) + 1, sizeof(char *));
        if (!r)
                return NULL;
        for (size_t i = 0; v && v[i]; i++) {
                r[i] = strdup(v[i]);
                if (!r[i]) {
                        aj_strv_free(r);
                        return NULL;
                }
        }
        return r;
}

int aj_strv_split_lines(const char *text, char ***ret)
{
        _cleanup_strv_free_ char **v = NULL;
        size_t n = 0, cap = 0;
        for (const char *line = text; line && *line;) {
                const char *end = strchrnul(line, '\n');
                if (aj_strv_append(&v, &n, &cap, strndup(line, (size_t)(end - line))) < 0)
                        return -ENOMEM;
                line = *end ? end + 1 : end;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

int aj_strv_join_lines(char *const *v, char **ret)
{
        size_t len = 1;
        for (char *const *s = v; s && *s; s++) {
                if (strchr(*s, '\n'))
                        return -EINVAL;
                len += strlen(*s) + 1;
        }
        char *out = malloc(len), *end = out;
        if (!out)
                return -ENOMEM;
        for (char *const *s = v; s && *s; s++) {
                end = stpcpy(end, *s);
                *end++ = '\n';
        }
        *end = 0;
        *ret = out;
        return 0;
}
