/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A budget on what jansson holds at once, for tests that bound what the agent's JSON costs
 * (its DOM is the cost: 20 to 60 times the text). Past the budget jansson's allocations
 * fail with ENOMEM as a real malloc would. Unlike RLIMIT_AS it works under AddressSanitizer,
 * which reserves terabytes of address space for itself.
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>

static size_t jansson_budget_live, jansson_budget_limit;

static void *jansson_budget_malloc(size_t n)
{
        if (n > jansson_budget_limit || jansson_budget_live > jansson_budget_limit - n) {
                errno = ENOMEM;
                return NULL;
        }
        void *p = malloc(n);
        if (p)
                jansson_budget_live += malloc_usable_size(p);
        return p;
}

static void jansson_budget_free(void *p)
{
        size_t n = p ? malloc_usable_size(p) : 0;
        jansson_budget_live = n < jansson_budget_live ? jansson_budget_live - n : 0;
        free(p);
}

/* From here on jansson may hold `limit` bytes at once (what it held before counts as none). */
static inline void jansson_budget_set(size_t limit)
{
        jansson_budget_live = 0;
        jansson_budget_limit = limit;
        json_set_alloc_funcs(jansson_budget_malloc, jansson_budget_free);
}

static inline void jansson_budget_clear(void) { json_set_alloc_funcs(malloc, free); }
