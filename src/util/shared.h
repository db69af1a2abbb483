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
/* n bytes, zeroed, 16-aligned; NULL when the region is full. */
void *aj_shared_alloc(AjShared *s, size_t n);
/* NULL in, NULL out; NULL also when full (check with the input). */
char *aj_shared_strdup(AjShared *s, const char *str);
/* A copy of a NULL-terminated string vector (NULL: NULL). */
char **aj_shared_strv(AjShared *s, char *const *v);
