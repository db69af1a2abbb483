/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "util/sha256.h"

static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

bool aj_sha256_portable_only;

static inline uint32_t ror(uint32_t x, unsigned n) { return x >> n | x << (32 - n); }

static void compress_portable(uint32_t *hs, const uint8_t *b)
{
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
                w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 |
                       (uint32_t)b[4 * i + 3];
        for (int i = 16; i < 64; i++) {
                uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
                uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }

        uint32_t a = hs[0], bb = hs[1], cc = hs[2], d = hs[3];
        uint32_t e = hs[4], f = hs[5], g = hs[6], h = hs[7];
        for (int i = 0; i < 64; i++) {
                uint32_t S1 = ror(e, 6) ^ ror(e, 11) ^ ror(e, 25);
                uint32_t ch = (e & f) ^ (~e & g);
                uint32_t t1 = h + S1 + ch + K[i] + w[i];
                uint32_t S0 = ror(a, 2) ^ ror(a, 13) ^ ror(a, 22);
                uint32_t maj = (a & bb) ^ (a & cc) ^ (bb & cc);
                uint32_t t2 = S0 + maj;
                h = g;
                g = f;
                f = e;
                e = d + t1;
                d = cc;
                cc = bb;
                bb = a;
                a = t1 + t2;
        }
        hs[0] += a;
        hs[1] += bb;
        hs[2] += cc;
        hs[3] += d;
        hs[4] += e;
        hs[5] += f;
        hs[6] += g;
        hs[7] += h;
}

#if defined(__x86_64__)
/* The SHA extensions (Intel SHA-NI, AMD since Zen): four rounds per two sha256rnds2.
 * The state is kept as two vectors of lanes (A,B,E,F) and (C,D,G,H), lane 3 first, as
 * the instructions want; each group of four message words W[4i..4i+3] is one vector. */
__attribute__((target("sha,ssse3,sse4.1"))) static void compress_ni(uint32_t *h, const uint8_t *p)
{
        const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
        __m128i abef = _mm_set_epi32((int)h[0], (int)h[1], (int)h[4], (int)h[5]);
        __m128i cdgh = _mm_set_epi32((int)h[2], (int)h[3], (int)h[6], (int)h[7]);
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i m[4];
        for (int i = 0; i < 4; i++)
                m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int i = 0; i < 16; i++) {
                if (i >= 4) {
                        /* W[4i..] from W[4i-16..] (m[i&3]), W[4i-12..], W[4i-7..4i-4] and W[4i-4..]. */
                        __m128i t = _mm_sha256msg1_epu32(m[i & 3], m[(i + 1) & 3]);
                        t = _mm_add_epi32(t, _mm_alignr_epi8(m[(i + 3) & 3], m[(i + 2) & 3], 4));
                        m[i & 3] = _mm_sha256msg2_epu32(t, m[(i + 3) & 3]);
                }
                __m128i wk = _mm_add_epi32(m[i & 3], _mm_loadu_si128((const __m128i *)&K[4 * i]));
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
        uint32_t t[4];
        _mm_storeu_si128((__m128i *)t, abef);
        h[0] = t[3], h[1] = t[2], h[4] = t[1], h[5] = t[0];
        _mm_storeu_si128((__m128i *)t, cdgh);
        h[2] = t[3], h[3] = t[2], h[6] = t[1], h[7] = t[0];
}

static bool have_sha_ni(void)
{
        static int known = -1; /* a benign race: every thread computes the same answer */
        if (known < 0) {
                unsigned a, b, c, d;
                bool ssse3_sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 9)) && (c & (1u << 19));
                bool sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
                known = ssse3_sse41 && sha;
        }
        return known;
}
#endif


static void compress(AjSha256 *c, const uint8_t *b)
{
#if defined(__x86_64__)
        if (!aj_sha256_portable_only && have_sha_ni()) {
                compress_ni(c->h, b);
                return;
        }
#endif
        compress_portable(c->h, b);
}

void aj_sha256_init(AjSha256 *c)
{
        static const uint32_t iv[8] = {
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        };
        memcpy(c->h, iv, sizeof(iv));
        c->total = 0;
        c->fill = 0;
}

void aj_sha256_update(AjSha256 *c, const void *data, size_t len)
{
        const uint8_t *p = data;
        c->total += len;
        while (len > 0) {
                if (c->fill == 0 && len >= 64) {
                        compress(c, p);
                        p += 64;
                        len -= 64;
                        continue;
                }
                size_t n = 64 - c->fill < len ? 64 - c->fill : len;
                memcpy(c->block + c->fill, p, n);
                c->fill += n;
                p += n;
                len -= n;
                if (c->fill == 64) {
                        compress(c, c->block);
                        c->fill = 0;
                }
        }
}

void aj_sha256_final(AjSha256 *c, uint8_t out[AJ_SHA256_SIZE])
{
        uint64_t bits = c->total * 8;
        c->block[c->fill++] = 0x80;
        if (c->fill > 56) {
                memset(c->block + c->fill, 0, 64 - c->fill);
                compress(c, c->block);
                c->fill = 0;
        }
        memset(c->block + c->fill, 0, 56 - c->fill);
        for (int i = 0; i < 8; i++)
                c->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
        compress(c, c->block);
        for (int i = 0; i < 8; i++) {
                out[4 * i] = (uint8_t)(c->h[i] >> 24);
                out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
                out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
                out[4 * i + 3] = (uint8_t)c->h[i];
        }
}

void aj_sha256(const void *data, size_t len, uint8_t out[AJ_SHA256_SIZE])
{
        AjSha256 c;
        aj_sha256_init(&c);
        aj_sha256_update(&c, data, len);
        aj_sha256_final(&c, out);
}

char *aj_sha256_hex(const uint8_t digest[AJ_SHA256_SIZE], char out[AJ_SHA256_HEX_SIZE])
{
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < AJ_SHA256_SIZE; i++) {
                out[2 * i] = hex[digest[i] >> 4];
                out[2 * i + 1] = hex[digest[i] & 0xF];
        }
        out[2 * AJ_SHA256_SIZE] = 0;
        return out;
}

void aj_hmac_sha256_init(AjHmacSha256 *h, const void *key, size_t key_len)
{
        uint8_t k[64] = { 0 };
        if (key_len > sizeof(k))
                aj_sha256(key, key_len, k);
        else if (key_len > 0)
                memcpy(k, key, key_len);
        uint8_t ipad[64];
        for (size_t i = 0; i < sizeof(k); i++) {
                ipad[i] = k[i] ^ 0x36;
                h->opad_key[i] = k[i] ^ 0x5c;
        }
        aj_sha256_init(&h->inner);
        aj_sha256_update(&h->inner, ipad, sizeof(ipad));
        explicit_bzero(k, sizeof(k));
        explicit_bzero(ipad, sizeof(ipad));
}

void aj_hmac_sha256_update(AjHmacSha256 *h, const void *data, size_t len) { aj_sha256_update(&h->inner, data, len); }

void aj_hmac_sha256_final(AjHmacSha256 *h, uint8_t out[AJ_SHA256_SIZE])
{
        uint8_t inner[AJ_SHA256_SIZE];
        aj_sha256_final(&h->inner, inner);
        AjSha256 outer;
        aj_sha256_init(&outer);
        aj_sha256_update(&outer, h->opad_key, sizeof(h->opad_key));
        aj_sha256_update(&outer, inner, sizeof(inner));
        aj_sha256_final(&outer, out);
        explicit_bzero(h, sizeof(*h));
}

void aj_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[AJ_SHA256_SIZE])
{
        AjHmacSha256 h;
        aj_hmac_sha256_init(&h, key, key_len);
        aj_hmac_sha256_update(&h, data, len);
        aj_hmac_sha256_final(&h, out);
}

bool aj_digest_eq(const uint8_t a[AJ_SHA256_SIZE], const uint8_t b[AJ_SHA256_SIZE])
{
        uint8_t diff = 0;
        for (size_t i = 0; i < AJ_SHA256_SIZE; i++)
                diff |= a[i] ^ b[i];
        return diff == 0;
}
