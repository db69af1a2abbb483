/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz targets: each file defines LLVMFuzzerTestOneInput(). Built with libFuzzer
 * (-Dfuzz=libfuzzer, clang: scripts/fuzz) or, everywhere else, with standalone.c, a
 * main() that feeds it files and directories (the committed corpora under corpus/).
 * A target must not leak, must not keep state between inputs it cannot reset, and
 * must bound whatever the input asks for.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
