/* SPDX-License-Identifier: Apache-2.0 */
#include "util/json-fast.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Depth past which jansson's own dumper is used (it knows its limits). */
#define FAST_MAX_DEPTH 16

void aj_json_out_raw(AjJsonOut *o, const char *s, size_t n)
{
        if (o->len < o->size)
                memcpy(o->buf + o->len, s, o->len + n <= o->size ? n : o->size - o->len);
        o->len += n;
}

static void put_c(AjJsonOut *o, char c)
{
        if (o->len < o->size)
                o->buf[o->len] = c;
        o->len++;
}

/* jansson's escapes: the two that must be, the short forms, \u00XX for the other controls. */
int aj_json_out_string(AjJsonOut *o, const char *s, size_t n)
{
        static const char hex[] = "0123456789ABCDEF";
        put_c(o, '"');
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x80) {
                        if (o->ascii)
                                return -1; /* \uXXXX of the code point: jansson's */
                        continue;
                }
                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                aj_json_out_raw(o, s + run, i - run);
                run = i + 1;
                char e[6] = { '\\', 0 };
                size_t len = 2;
                switch (c) {
                case '"':
                case '\\':
                        e[1] = (char)c;
                        break;
                case '\b':
                        e[1] = 'b';
                        break;
                case '\f':
                        e[1] = 'f';
                        break;
                case '\n':
                        e[1] = 'n';
                        break;
                case '\r':
                        e[1] = 'r';
                        break;
                case '\t':
                        e[1] = 't';
                        break;
                default:
                        memcpy(e + 1, "u00", 3);
                        e[4] = hex[c >> 4];
                        e[5] = hex[c & 15];
                        len = 6;
                }
                aj_json_out_raw(o, e, len);
        }
        aj_json_out_raw(o, s + run, n - run);
        put_c(o, '"');
        return 0;
}

void aj_json_out_integer(AjJsonOut *o, json_int_t v)
{
        char b[24];
        size_t i = sizeof(b);
        unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
        do
                b[--i] = (char)('0' + u % 10);
        while ((u /= 10) > 0);
        if (v < 0)
                b[--i] = '-';
        aj_json_out_raw(o, b + i, sizeof(b) - i);
}

/* ---- "%.*g", exactly, without glibc's multi-precision path ----
 *
 * A double is m * 2^e (m < 2^53). Its digits are rounded to P significant ones as glibc does
 * (to nearest, an exact tie to even) and laid out as %g does. The rounding needs the first P + 1
 * digits and whether any digit after them is not 0: for 10^(P-27) <= |v| < 10^(P+1) (every cost
 * and total the broker prints) floor(|v| * 10^j) and its remainder come from one 128-bit product
 * and shift (short_digits()). Elsewhere in -128 <= e <= 64 the whole exact expansion is made:
 * the integer m * 5^-e (or m * 2^e) with the point -e places from its right (or none), at most
 * 351 bits, 12 limbs of 32 (big_digits()). Anything else (subnormals, |v| below ~1e-23 or above
 * ~1e35, inf, nan) goes to snprintf(). tests/unit/test-util.c compares the two on millions of
 * values. */
#define G_LIMBS 12

typedef struct {
        uint32_t l[G_LIMBS]; /* little-endian */
        int n;               /* limbs in use */
} Big;

static void big_mul_small(Big *b, uint32_t k)
{
        uint64_t carry = 0;
        for (int i = 0; i < b->n; i++) {
                uint64_t t = (uint64_t)b->l[i] * k + carry;
                b->l[i] = (uint32_t)t;
                carry = t >> 32;
        }
        if (carry)
                b->l[b->n++] = (uint32_t)carry;
}

static void big_shl(Big *b, int bits)
{
        int words = bits / 32, rest = bits % 32;
        if (words) {
                for (int i = b->n - 1; i >= 0; i--)
                        b->l[i + words] = b->l[i];
                for (int i = 0; i < words; i++)
                        b->l[i] = 0;
                b->n += words;
        }
        if (rest) {
                uint32_t carry = 0;
                for (int i = words; i < b->n; i++) {
                        uint32_t next = b->l[i] >> (32 - rest);
                        b->l[i] = b->l[i] << rest | carry;
                        carry = next;
                }
                if (carry)
                        b->l[b->n++] = carry;
        }
}

/* b /= 10^9, the remainder back. */
static uint32_t big_div_1e9(Big *b)
{
        uint64_t rem = 0;
        for (int i = b->n - 1; i >= 0; i--) {
                uint64_t cur = rem << 32 | b->l[i];
                b->l[i] = (uint32_t)(cur / 1000000000u);
                rem = cur % 1000000000u;
        }
        while (b->n > 0 && b->l[b->n - 1] == 0)
                b->n--;
        return (uint32_t)rem;
}

/* All the digits of m * 2^e (-128 <= e <= 64), most significant first (at most 106): their
 * count, *ret_x the first one's power of ten. */
static int big_digits(uint64_t m, int e, char *d, int *ret_x)
{
        /* The exact value: the integer M, the point `scale` digits from its right. */
        Big b = { .l = { (uint32_t)m, (uint32_t)(m >> 32) }, .n = 2 };
        int scale = 0;
        if (e >= 0)
                big_shl(&b, e);
        else {
                scale = -e;
                int k = scale;
                for (; k >= 13; k -= 13)
                        big_mul_small(&b, 1220703125u); /* 5^13 */
                uint32_t p5 = 1;
                while (k-- > 0)
                        p5 *= 5;
                big_mul_small(&b, p5);
        }
        /* Its digits, most significant first (at most 106). */
        int nd = 0;
        uint32_t chunks[16];
        int nc = 0;
        while (b.n > 0)
                chunks[nc++] = big_div_1e9(&b);
        for (int i = nc - 1; i >= 0; i--) {
                char c9[10];
                for (int j = 8; j >= 0; j--) {
                        c9[j] = (char)('0' + chunks[i] % 10);
                        chunks[i] /= 10;
                }
                int j = 0;
                if (nd == 0)
                        while (j < 8 && c9[j] == '0')
                                j++;
                for (; j < 9; j++)
                        d[nd++] = c9[j];
        }
        *ret_x = nd - 1 - scale;
        return nd;
}

/* The first precision + 1 digits of m * 2^e, and a '1' after them when a digit after those is
 * not 0; *ret_x the first one's power of ten. 0 when v is outside what 128 bits hold. */
static int short_digits(uint64_t m, int e, int precision, char *d, int *ret_x)
{
        static const uint64_t pow10[19] = { 1ULL,
                                            10ULL,
                                            100ULL,
                                            1000ULL,
                                            10000ULL,
                                            100000ULL,
                                            1000000ULL,
                                            10000000ULL,
                                            100000000ULL,
                                            1000000000ULL,
                                            10000000000ULL,
                                            100000000000ULL,
                                            1000000000000ULL,
                                            10000000000000ULL,
                                            100000000000000ULL,
                                            1000000000000000ULL,
                                            10000000000000000ULL,
                                            100000000000000000ULL,
                                            1000000000000000000ULL };
        /* |v| * 10^j is m * 5^j * 2^(j + e); j <= 27 below, and 5^27 < 2^63. */
        static const uint64_t pow5[28] = { 1ULL,
                                           5ULL,
                                           25ULL,
                                           125ULL,
                                           625ULL,
                                           3125ULL,
                                           15625ULL,
                                           78125ULL,
                                           390625ULL,
                                           1953125ULL,
                                           9765625ULL,
                                           48828125ULL,
                                           244140625ULL,
                                           1220703125ULL,
                                           6103515625ULL,
                                           30517578125ULL,
                                           152587890625ULL,
                                           762939453125ULL,
                                           3814697265625ULL,
                                           19073486328125ULL,
                                           95367431640625ULL,
                                           476837158203125ULL,
                                           2384185791015625ULL,
                                           11920928955078125ULL,
                                           59604644775390625ULL,
                                           298023223876953125ULL,
                                           1490116119384765625ULL,
                                           7450580596923828125ULL };
        /* The decimal exponent from the binary one: |v| is in [2^b, 2^(b+1)), so k is
         * floor(b * log10(2)) or one more; 78913 / 2^18 (just below log10(2), by 8e-7: at
         * most 0.001 over b's range) may take one more off, and the loop below corrects it. */
        int b = 63 - __builtin_clzll(m) + e;
        int k = (b * 78913) >> 18;
        for (int tries = 0; tries < 4; tries++) {
                int j = precision - k; /* |v| * 10^j has precision + 1 digits before its point */
                if (j < 0 || j > 27)
                        return 0;
                unsigned __int128 x = (unsigned __int128)m * pow5[j], n; /* below 2^116 */
                bool sticky = false;
                int shift = j + e;
                if (shift >= 0) {
                        if (shift > 11)
                                return 0;
                        n = x << shift;
                } else if (-shift >= 128)
                        return 0;
                else {
                        n = x >> -shift;
                        sticky = (x & (((unsigned __int128)1 << -shift) - 1)) != 0;
                }
                if (n >= pow10[precision + 1]) {
                        k++;
                        continue;
                }
                if (n < pow10[precision]) {
                        k--;
                        continue;
                }
                uint64_t u = (uint64_t)n;
                int nd = precision + 1;
                for (int i = nd - 1; i >= 0; i--, u /= 10)
                        d[i] = (char)('0' + u % 10);
                if (sticky)
                        d[nd++] = '1';
                *ret_x = k;
                return nd;
        }
        return 0;
}

int aj_json_format_g(char *out, size_t size, double v, int precision)
{
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        bool neg = bits >> 63;
        int biased = (int)(bits >> 52 & 0x7ff);
        uint64_t frac = bits & ((1ULL << 52) - 1);
        if (precision < 1 || precision > 17 || size < 32)
                return -1;
        if (biased == 0 && frac == 0) { /* "%g" of a zero */
                size_t n = neg ? 2 : 1;
                memcpy(out, neg ? "-0" : "0", n + 1);
                return (int)n;
        }
        int e = biased - 1075;
        if (biased == 0 || biased == 0x7ff || e < -128 || e > 64)
                return -1;
        uint64_t m = frac | 1ULL << 52;
        char d[128];
        int x, nd = short_digits(m, e, precision, d, &x);
        if (nd == 0)
                nd = big_digits(m, e, d, &x);

        /* Rounded to `precision` digits: to nearest, an exact tie to an even last digit. */
        if (nd > precision) {
                bool up = d[precision] > '5';
                if (d[precision] == '5') {
                        bool rest = false;
                        for (int i = precision + 1; i < nd && !rest; i++)
                                rest = d[i] != '0';
                        up = rest || (d[precision - 1] - '0') % 2 == 1;
                }
                nd = precision;
                if (up) {
                        int i = nd - 1;
                        while (i >= 0 && d[i] == '9')
                                d[i--] = '0';
                        if (i >= 0)
                                d[i]++;
                        else { /* 99..9 became 100..0 */
                                d[0] = '1';
                                x++;
                        }
                }
        }
        while (nd > 1 && d[nd - 1] == '0') /* %g drops the trailing zeros */
                nd--;

        char *p = out;
        if (neg)
                *p++ = '-';
        if (x < -4 || x >= precision) {
                *p++ = d[0];
                if (nd > 1) {
                        *p++ = '.';
                        memcpy(p, d + 1, (size_t)nd - 1);
                        p += nd - 1;
                }
                *p++ = 'e';
                *p++ = x < 0 ? '-' : '+';
                int ax = x < 0 ? -x : x;
                if (ax >= 100)
                        *p++ = (char)('0' + ax / 100);
                *p++ = (char)('0' + ax / 10 % 10);
                *p++ = (char)('0' + ax % 10);
        } else if (x < 0) {
                *p++ = '0';
                *p++ = '.';
                for (int i = -1; i > x; i--)
                        *p++ = '0';
                memcpy(p, d, (size_t)nd);
                p += nd;
        } else {
                for (int i = 0; i <= x; i++)
                        *p++ = i < nd ? d[i] : '0';
                if (nd > x + 1) {
                        *p++ = '.';
                        memcpy(p, d + x + 1, (size_t)(nd - x - 1));
                        p += nd - x - 1;
                }
        }
        *p = '\0';
        return (int)(p - out);
}

/* jansson's jsonp_dtostr(): "%.*g", a ".0" when neither '.' nor 'e' shows it is a real,
 * the exponent without '+' and without leading zeros. (A locale's decimal comma: never
 * in the supervisor, which keeps the C locale.) */
int aj_json_out_real(AjJsonOut *o, double v)
{
        char b[64];
        int n = aj_json_format_g(b, sizeof(b) - 3, v, o->precision);
        if (n < 0)
                n = snprintf(b, sizeof(b) - 3, "%.*g", o->precision, v);
        if (n < 0 || (size_t)n >= sizeof(b) - 3)
                return -1;
        size_t len = (size_t)n;
        char *e = memchr(b, 'e', len);
        if (!e && !memchr(b, '.', len)) {
                if (memchr(b, 'n', len) || memchr(b, 'i', len))
                        return -1; /* nan, inf: jansson refuses them */
                memcpy(b + len, ".0", 2);
                len += 2;
        }
        if (e) {
                char *start = e + 1, *end = start + 1;
                if (*start == '-')
                        start++;
                while (end < b + len && *end == '0')
                        end++;
                if (end != start) {
                        memmove(start, end, (size_t)(b + len - end));
                        len -= (size_t)(end - start);
                }
        }
        aj_json_out_raw(o, b, len);
        return 0;
}

static int put_value(AjJsonOut *o, const json_t *v, int depth);

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* JSON_SORT_KEYS: jansson orders the keys by their bytes (memcmp, then the shorter first),
 * which for keys without a NUL (jansson refuses one in a key) is strcmp's order. */
static int put_sorted_object(AjJsonOut *o, const json_t *v, int depth)
{
        const char *keys[AJ_JSON_SORT_MAX_KEYS];
        size_t n = 0;
        const char *key;
        json_t *m;
        if (json_object_size(v) > AJ_JSON_SORT_MAX_KEYS)
                return -1;
        json_object_foreach ((json_t *)v, key, m)
                keys[n++] = key;
        qsort(keys, n, sizeof(keys[0]), cmp_keys);
        put_c(o, '{');
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        put_c(o, ',');
                if (aj_json_out_string(o, keys[i], strlen(keys[i])) < 0)
                        return -1;
                put_c(o, ':');
                if (put_value(o, json_object_get(v, keys[i]), depth + 1) < 0)
                        return -1;
        }
        put_c(o, '}');
        return 0;
}

static int put_value(AjJsonOut *o, const json_t *v, int depth)
{
        if (depth > FAST_MAX_DEPTH)
                return -1;
        switch (json_typeof(v)) {
        case JSON_OBJECT: {
                if (o->sort_keys)
                        return put_sorted_object(o, v, depth);
                const char *key;
                json_t *m;
                bool first = true;
                put_c(o, '{');
                json_object_foreach ((json_t *)v, key, m) {
                        if (!first)
                                put_c(o, ',');
                        first = false;
                        if (aj_json_out_string(o, key, strlen(key)) < 0)
                                return -1;
                        put_c(o, ':');
                        if (put_value(o, m, depth + 1) < 0)
                                return -1;
                }
                put_c(o, '}');
                return 0;
        }
        case JSON_ARRAY:
                put_c(o, '[');
                for (size_t i = 0; i < json_array_size(v); i++) {
                        if (i > 0)
                                put_c(o, ',');
                        if (put_value(o, json_array_get(v, i), depth + 1) < 0)
                                return -1;
                }
                put_c(o, ']');
                return 0;
        case JSON_STRING:
                return aj_json_out_string(o, json_string_value(v), json_string_length(v));
        case JSON_INTEGER:
                aj_json_out_integer(o, json_integer_value(v));
                return 0;
        case JSON_REAL:
                return aj_json_out_real(o, json_real_value(v));
        case JSON_TRUE:
                aj_json_out_raw(o, "true", 4);
                return 0;
        case JSON_FALSE:
                aj_json_out_raw(o, "false", 5);
                return 0;
        case JSON_NULL:
                aj_json_out_raw(o, "null", 4);
                return 0;
        }
        return -1;
}

int aj_json_out_value(AjJsonOut *o, const json_t *v) { return v ? put_value(o, v, 0) : -1; }

ssize_t aj_json_dump_fast(const json_t *v, char *buf, size_t size, bool ensure_ascii, int precision)
{
        AjJsonOut o = aj_json_out(buf, size, ensure_ascii, precision);
        if (aj_json_out_value(&o, v) < 0)
                return -1;
        return (ssize_t)o.len;
}

ssize_t aj_json_dump_fast_sorted(const json_t *v, char *buf, size_t size, bool ensure_ascii, int precision)
{
        AjJsonOut o = aj_json_out(buf, size, ensure_ascii, precision);
        o.sort_keys = true;
        if (aj_json_out_value(&o, v) < 0)
                return -1;
        return (ssize_t)o.len;
}
