/* SPDX-License-Identifier: Apache-2.0 */
/* SHA-256 (FIPS 180-4), for profile digests, argument digests and the event chain, and
 * HMAC-SHA256 for the seccomp cache. SHA-256 has no secret-dependent branches or table
 * lookups; MACs are compared with aj_digest_eq(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AJ_SHA256_SIZE 32
#define AJ_SHA256_HEX_SIZE (2 * AJ_SHA256_SIZE + 1)

typedef struct {
        uint32_t h[8];
        uint64_t total; /* bytes fed so far */
        uint8_t block[64];
        size_t fill;
} AjSha256;

void aj_sha256_init(AjSha256 *c);
void aj_sha256_update(AjSha256 *c, const void *data, size_t len);
void aj_sha256_final(AjSha256 *c, uint8_t out[AJ_SHA256_SIZE]);

void aj_sha256(const void *data, size_t len, uint8_t out[AJ_SHA256_SIZE]);
/* The CPU's SHA instructions are used when it has them, unless this is set (tests
 * compare the two). */
extern bool aj_sha256_portable_only;
/* HMAC-SHA256 (RFC 2104) of `data` under `key` (any length; longer than a block is hashed). */
void aj_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[AJ_SHA256_SIZE]);
/* The same in steps, for a message in several pieces. */
typedef struct {
        AjSha256 inner;
        uint8_t opad_key[64];
} AjHmacSha256;
void aj_hmac_sha256_init(AjHmacSha256 *h, const void *key, size_t key_len);
void aj_hmac_sha256_update(AjHmacSha256 *h, const void *data, size_t len);
void aj_hmac_sha256_final(AjHmacSha256 *h, uint8_t out[AJ_SHA256_SIZE]);
/* Equality of two MACs in time independent of where they differ. */
bool aj_digest_eq(const uint8_t a[AJ_SHA256_SIZE], const uint8_t b[AJ_SHA256_SIZE]);

/* Lowercase hex of a digest into `out` (NUL-terminated); returns out. */
char *aj_sha256_hex(const uint8_t digest[AJ_SHA256_SIZE], char out[AJ_SHA256_HEX_SIZE]);
