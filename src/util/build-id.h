/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AJ_BUILD_ID_MAX 64

/* The running program's GNU build-id (NT_GNU_BUILD_ID in its PT_NOTE segments, found in
 * memory with dl_iterate_phdr: no file is read). Returns its length (> 0), or -ENOENT when
 * the program has none. */
int aj_build_id(uint8_t ret_id[AJ_BUILD_ID_MAX]);
