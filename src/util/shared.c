/* SPDX-License-Identifier: Apache-2.0 */
#include "util/shared.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

int aj_shared_map(AjShared *s, size_t size)
{
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                return -errno;
        *s = (AjShared){ .base = p, .size = size };
        return 0;
}

void aj_shared_unmap(AjShared *s)
{
        if (s->base)
                (void)munmap(s->base, s->size);
        *s = (AjShared)AJ_SHARED_INIT;
}

int aj_shared_keep_from_forks(AjShared *s)
{
        if (!s->base)
                return -EBADF;
        return madvise(s->base, s->size, MADV_DONTFORK) < 0 ? -errno : 0;
}

void *aj_shared_alloc(AjShared *s, size_t n)
{
        size_t at = (s->used + 15) & ~(size_t)15;
        if (!s->base || at > s->size || n > s->size - at)
                return NULL;
        s->used = at + n;
        /* Fresh pages are zero; a region is never reused, so no memset is needed. */
        return s->base + at;
}

char *aj_shared_strdup(AjShared *s, const char *str)
{
        if (!str)
                return NULL;
        size_t n = strlen(str) + 1;
        char *p = aj_shared_alloc(s, n);
        if (p)
                memcpy(p, str, n);
        return p;
}

char **aj_shared_strv(AjShared *s, char *const *v)
{
        if (!v)
                return NULL;
        size_t n = 0;
        while (v[n])
                n++;
        char **out = aj_shared_alloc(s, (n + 1) * sizeof(char *));
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!(out[i] = aj_shared_strdup(s, v[i])))
                        return NULL;
        return out;
}
