/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

#include "workspace.h"

/* `diff --patch`'s contents part: for each changed regular file of c (n changes), its
 * `diff -u` between the lower dir (lower_fd) and the upper (upper_fd), labelled a/NAME and
 * b/NAME, on stdout, escaped; a file not shown gets a note in its place. */
void cli_print_patches(int lower_fd, int upper_fd, const AjWsChange *c, size_t n);
