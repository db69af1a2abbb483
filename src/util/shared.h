/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory shared with a child forked after it was mapped: a bump allocator over one
 * MAP_SHARED region. What the parent copies in after the fork, the child sees at the same
 * addresses (pointers stay valid on both sides); the parent must be done writing before it
 * tells the child to read (a message over a socket orders the two). Nothing is freed but
 * the whole region. The region is reserved, not committed: pages exist once written.
 */
#pragma once

#include <stddef.h>

typedef struct AjShared {
        char *base;
        size_t size, used;
} AjShared;

#define AJ_SHARED_INIT \
        {              \
                NULL   \
        }

int aj_shared_map(AjShared *s, size_t size);
void aj_shared_unmap(AjShared *s);
/* Once the child that shares it exists: processes forked from here on get no copy of it (a
 * helper that reads hostile input, a corrupted one writing what the child reads). The child
 * keeps its own; so does a child forked before. 0 or -errno. */
int aj_shared_keep_from_forks(AjShared *s);
/* n bytes, zeroed, 16-aligned; NULL when the region is full. */
void *aj_shared_alloc(AjShared *s, size_t n);
/* NULL in, NULL out; NULL also when full (check with the input). */
char *aj_shared_strdup(AjShared *s, const char *str);
/* A copy of a NULL-terminated string vector (NULL: NULL). */
char **aj_shared_strv(AjShared *s, char *const *v);
