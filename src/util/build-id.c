/* SPDX-License-Identifier: Apache-2.0 */
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>

#include "util/build-id.h"

typedef struct {
        uint8_t *id;
        int len; /* -ENOENT until found */
} Found;

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

static int scan_main_program(struct dl_phdr_info *info, size_t size, void *data)
{
        Found *f = data;

        /* The first object reported is the main program. */
        for (size_t i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
                size_t left = ph->p_memsz, a = ph->p_align == 8 ? 8 : 4;

                if (ph->p_type != PT_NOTE)
                        continue;
                while (left >= sizeof(ElfW(Nhdr))) {
                        const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
                        size_t name_off = sizeof(*n), desc_off = align_up(name_off + n->n_namesz, a);
                        size_t total = align_up(desc_off + n->n_descsz, a);

                        if (n->n_namesz > left || n->n_descsz > left || total > left)
                                break;
                        if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(p + name_off, "GNU", 4) == 0 &&
                            n->n_descsz > 0 && n->n_descsz <= AJ_BUILD_ID_MAX) {
                                memcpy(f->id, p + desc_off, n->n_descsz);
                                f->len = (int)n->n_descsz;
                                return 1;
                        }
                        p += total;
                        left -= total;
                }
        }
        return 1; /* only the main program */
}

int aj_build_id(uint8_t ret_id[AJ_BUILD_ID_MAX])
{
        Found f = { .id = ret_id, .len = -ENOENT };

        dl_iterate_phdr(scan_main_program, &f);
        return f.len;
}
