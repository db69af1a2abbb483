/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/json-locate.h"
#include "util/parse.h"

static void expect_size(const char *s, uint64_t want)
{
        uint64_t v = 12345;
        int r = aj_parse_size(s, &v);
        cr_expect_eq(r, 0, "aj_parse_size(\"%s\") = %d", s, r);
        cr_expect_eq(v, want, "aj_parse_size(\"%s\") -> %llu, want %llu", s, (unsigned long long)v,
                     (unsigned long long)want);
}

static void expect_size_fails(const char *s, int want)
{
        uint64_t v = 12345;
        int r = aj_parse_size(s, &v);
        cr_expect_eq(r, want, "aj_parse_size(\"%s\") = %d, want %d", s ?: "(null)", r, want);
        cr_expect_eq(v, 12345, "aj_parse_size(\"%s\") wrote its result on failure", s ?: "(null)");
}

Test(parse, size_valid)
{
        expect_size("0", 0);
        expect_size("512", 512);
        expect_size("512B", 512);
        expect_size("1K", 1024);
        expect_size("1k", 1024);
        expect_size("2M", 2ULL << 20);
        expect_size("2MiB", 2ULL << 20);
        expect_size("2MB", 2ULL << 20);
        expect_size("1.5G", 3ULL << 29);
        expect_size("0.5K", 512);
        expect_size("1T", 1ULL << 40);
        expect_size("16777215T", 16777215ULL << 40);
        /* whole numbers are exact beyond a double's 53 bits */
        expect_size("9007199254740993", 9007199254740993ULL);
        expect_size("18446744073709551615", UINT64_MAX);
        /* above 2^63: must not wrap through a signed conversion */
        expect_size("10000000T", 10000000ULL << 40);
}

Test(parse, size_invalid)
{
        expect_size_fails(NULL, -EINVAL);
        expect_size_fails("", -EINVAL);
        expect_size_fails("lots", -EINVAL);
        expect_size_fails("-1", -EINVAL);
        expect_size_fails("+1", -EINVAL);
        expect_size_fails(" 1", -EINVAL);
        expect_size_fails("1 G", -EINVAL);
        expect_size_fails("1X", -EINVAL);
        expect_size_fails("1Gx", -EINVAL);
        expect_size_fails("1BB", -EINVAL);
        expect_size_fails("1.", -EINVAL);
        expect_size_fails(".5G", -EINVAL);
        expect_size_fails("1.5", -EINVAL); /* a fraction of a byte */
        expect_size_fails("1e3", -EINVAL);
        expect_size_fails("18446744073709551616", -ERANGE);
        expect_size_fails("16777216T", -ERANGE);
        expect_size_fails("16777216.5T", -ERANGE);
}

static void expect_duration(const char *s, uint64_t want)
{
        uint64_t v = 12345;
        int r = aj_parse_duration(s, &v);
        cr_expect_eq(r, 0, "aj_parse_duration(\"%s\") = %d", s, r);
        cr_expect_eq(v, want, "aj_parse_duration(\"%s\") -> %llu, want %llu", s, (unsigned long long)v,
                     (unsigned long long)want);
}

static void expect_duration_fails(const char *s)
{
        uint64_t v = 12345;
        int r = aj_parse_duration(s, &v);
        cr_expect_lt(r, 0, "aj_parse_duration(\"%s\") accepted", s ?: "(null)");
        cr_expect_eq(v, 12345);
}

#define SEC 1000000000ULL

Test(parse, duration)
{
        expect_duration("0", 0);
        expect_duration("30", 30 * SEC);
        expect_duration("30s", 30 * SEC);
        expect_duration("250ms", 250000000ULL);
        expect_duration("15us", 15000ULL);
        expect_duration("15m", 900 * SEC);
        expect_duration("2h", 7200 * SEC);
        expect_duration("1d", 86400 * SEC);
        expect_duration("1h30m", 5400 * SEC);
        expect_duration("1m30s", 90 * SEC);
        expect_duration("1s500ms", 1500000000ULL);
        expect_duration("1.5s", 1500000000ULL);
        expect_duration("0.001us", 1);

        expect_duration_fails(NULL);
        expect_duration_fails("");
        expect_duration_fails("soon");
        expect_duration_fails("-1s");
        expect_duration_fails("1x");
        expect_duration_fails("1h30"); /* a bare number only alone */
        expect_duration_fails("1 h");
        expect_duration_fails("1min");
        expect_duration_fails("999999999999h");
}

Test(parse, u64)
{
        uint64_t v = 7;
        cr_expect_eq(aj_parse_u64("0", &v), 0);
        cr_expect_eq(v, 0);
        cr_expect_eq(aj_parse_u64("18446744073709551615", &v), 0);
        cr_expect_eq(v, UINT64_MAX);
        v = 7;
        cr_expect_eq(aj_parse_u64("18446744073709551616", &v), -ERANGE);
        cr_expect_eq(aj_parse_u64("-1", &v), -EINVAL);
        cr_expect_eq(aj_parse_u64("12a", &v), -EINVAL);
        cr_expect_eq(aj_parse_u64("0x10", &v), -EINVAL);
        cr_expect_eq(aj_parse_u64("", &v), -EINVAL);
        cr_expect_eq(aj_parse_u64(NULL, &v), -EINVAL);
        cr_expect_eq(v, 7);
}

Test(parse, format_size)
{
        char buf[32];
        cr_expect_str_eq(aj_format_size(0, buf, sizeof(buf)), "0");
        cr_expect_str_eq(aj_format_size(1023, buf, sizeof(buf)), "1023");
        cr_expect_str_eq(aj_format_size(1024, buf, sizeof(buf)), "1K");
        cr_expect_str_eq(aj_format_size(3ULL << 29, buf, sizeof(buf)), "1.5G");
        cr_expect_str_eq(aj_format_size(2ULL << 40, buf, sizeof(buf)), "2T");
        cr_expect_str_eq(aj_format_size(2048ULL << 40, buf, sizeof(buf)), "2048T");
}

/* ---- json-locate ---- */

static const char doc[] = "{\n"
                          "  \"a\": 1,\n"
                          "  \"obj\": { \"x\": [10, {\"y\": \"}]\\\"\"}, [1, 2]], \"z\": null },\n"
                          "\t\"esc\\u00e9\\\"k\": true,\n"
                          "  \"ü\": \"ä\", \"after\": -2.5e3,\n"
                          "  \"[0]\": [],\n"
                          "  \"a.b\": {\"\": 0}\n"
                          "}\n";

static void expect_at(const char *const *path, AjJsonLocateWhat what, unsigned line, unsigned col)
{
        unsigned l = 0, c = 0;
        int r = aj_json_locate(doc, path, what, &l, &c);
        cr_expect_eq(r, 0, "locate %s...: %d", path[0] ?: "(root)", r);
        cr_expect(l == line && c == col, "locate %s... -> %u:%u, want %u:%u", path[0] ?: "(root)", l, c, line, col);
}

#define P(...) ((const char *const[]){ __VA_ARGS__, NULL })

Test(json_locate, values_and_keys)
{
        expect_at((const char *const[]){ NULL }, AJ_JSON_AT_VALUE, 1, 1);
        expect_at(P("a"), AJ_JSON_AT_VALUE, 2, 8);
        expect_at(P("a"), AJ_JSON_AT_KEY, 2, 3);
        expect_at(P("obj"), AJ_JSON_AT_VALUE, 3, 10);
        expect_at(P("obj", "x"), AJ_JSON_AT_VALUE, 3, 17);
        expect_at(P("obj", "x"), AJ_JSON_AT_KEY, 3, 12);
        expect_at(P("obj", "x", "[0]"), AJ_JSON_AT_VALUE, 3, 18);
        /* array elements have no key: AT_KEY gives the element */
        expect_at(P("obj", "x", "[1]"), AJ_JSON_AT_KEY, 3, 22);
        /* brackets and an escaped quote inside a string do not nest */
        expect_at(P("obj", "x", "[1]", "y"), AJ_JSON_AT_VALUE, 3, 28);
        expect_at(P("obj", "x", "[2]", "[1]"), AJ_JSON_AT_VALUE, 3, 41);
        expect_at(P("obj", "z"), AJ_JSON_AT_VALUE, 3, 51);
        /* keys are compared decoded; a tab counts as one column */
        expect_at(P("esc\xc3\xa9\"k"), AJ_JSON_AT_KEY, 4, 2);
        expect_at(P("esc\xc3\xa9\"k"), AJ_JSON_AT_VALUE, 4, 18);
        /* columns count characters, not bytes */
        expect_at(P("\xc3\xbc"), AJ_JSON_AT_VALUE, 5, 8);
        expect_at(P("after"), AJ_JSON_AT_KEY, 5, 13);
        expect_at(P("after"), AJ_JSON_AT_VALUE, 5, 22);
        /* a member named like an index is still a member */
        expect_at(P("[0]"), AJ_JSON_AT_VALUE, 6, 10);
        expect_at(P("a.b", ""), AJ_JSON_AT_VALUE, 7, 15);
}

Test(json_locate, missing_and_malformed)
{
        unsigned l = 99, c = 99;
        cr_expect_eq(aj_json_locate(doc, P("nope"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(aj_json_locate(doc, P("obj", "x", "[3]"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(aj_json_locate(doc, P("[0]", "[0]"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(aj_json_locate(doc, P("a", "b"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(aj_json_locate(doc, P("obj", "x", "zero"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(aj_json_locate(doc, P("obj", "x", "[-1]"), AJ_JSON_AT_VALUE, &l, &c), -ENOENT);
        cr_expect_eq(l, 99);
        cr_expect_eq(c, 99);

        /* truncated or broken texts end in -EINVAL or -ENOENT, never a read past the end */
        const char *bad[] = { "",
                              "{",
                              "{\"a",
                              "{\"a\":",
                              "{\"a\": [1, 2",
                              "{\"a\": \"\\",
                              "{\"a\" 1}",
                              "{\"b\": {\"c\": [",
                              "{\"b\": \"\\u12",
                              "[" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = aj_json_locate(bad[i], P("a", "x"), AJ_JSON_AT_VALUE, &l, &c);
                cr_expect(r == -EINVAL || r == -ENOENT, "\"%s\": %d", bad[i], r);
        }
        cr_expect_eq(aj_json_locate("{\"a\": 1}", P("a"), AJ_JSON_AT_VALUE, &l, &c), 0);
        cr_expect_eq(aj_json_locate(NULL, P("a"), AJ_JSON_AT_VALUE, &l, &c), -EINVAL);
}

Test(json_locate, surrogate_pairs_and_deep_nesting)
{
        /* U+1F600 written as a surrogate pair matches its UTF-8 form */
        unsigned l, c;
        cr_expect_eq(aj_json_locate("{\"\\ud83d\\ude00\": 5}", P("\xf0\x9f\x98\x80"), AJ_JSON_AT_VALUE, &l, &c), 0);
        cr_expect_eq(c, 18);

        /* skipping a deeply nested value does not recurse */
        size_t depth = 100000;
        char *s = malloc(2 * depth + 32);
        cr_assert_not_null(s);
        char *p = s;
        p += sprintf(p, "{\"deep\": ");
        memset(p, '[', depth);
        p += depth;
        memset(p, ']', depth);
        p += depth;
        strcpy(p, ", \"k\": 1}");
        cr_expect_eq(aj_json_locate(s, P("k"), AJ_JSON_AT_VALUE, &l, &c), 0);
        cr_expect_eq(c, 2 * depth + 17);
        free(s);
}

Test(json_locate, every_prefix_is_safe)
{
        /* Each truncation of a document is scanned in a heap copy of exactly its size, so
         * a read past the end would be caught by ASan builds and often crash plain ones. */
        size_t n = strlen(doc);
        /* the value of obj.x[1].y starts at its opening quote */
        size_t value_at = (size_t)(strstr(doc, "\"}]") - doc);
        for (size_t len = 0; len <= n; len++) {
                char *s = malloc(len + 1);
                cr_assert_not_null(s);
                memcpy(s, doc, len);
                s[len] = 0;
                unsigned l, c;
                int r = aj_json_locate(s, P("obj", "x", "[1]", "y"), AJ_JSON_AT_VALUE, &l, &c);
                cr_expect(r == 0 || r == -EINVAL || r == -ENOENT, "prefix %zu: %d", len, r);
                if (len <= value_at)
                        cr_expect_neq(r, 0, "prefix %zu found a value that is not there yet", len);
                free(s);
        }
}

/* aj_round_u64() rounds as llround() does where llround()'s result is unsigned: halves away
 * from zero, the largest double below 0.5 down, whole numbers past 2^53 as they are. */
Test(parse, round_u64_as_llround)
{
        static const double cases[] = { 0.0,
                                        0.49999999999999994,
                                        0.5,
                                        1.5,
                                        2.5,
                                        2.4999999999999996,
                                        1e6 * 3.15,
                                        4503599627370495.5,
                                        4503599627370497.0,
                                        9007199254740993.0,
                                        123456789.5,
                                        1e18 + 0.5 };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                cr_expect_eq(aj_round_u64(cases[i]), (uint64_t)llround(cases[i]), "%a", cases[i]);
        uint64_t x = 0x2545f4914f6cdd1dULL;
        for (int i = 0; i < 1000000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                double v = (double)(x >> (x % 62 + 2)) / (double)(1ULL << (x >> 58));
                cr_assert_eq(aj_round_u64(v), (uint64_t)llround(v), "%a", v);
        }
        cr_expect_eq(aj_round_u64(9223372036854775808.0), 9223372036854775808ULL);
        cr_expect_eq(aj_round_u64(18446744073709549568.0), 18446744073709549568ULL);
        cr_expect_eq(aj_round_u64(18446744073709551616.0), UINT64_MAX);
        cr_expect_eq(aj_round_u64(1e300), UINT64_MAX);
        cr_expect_eq(aj_round_u64(-0.5), 0);
        cr_expect_eq(aj_round_u64(-1e9), 0);
        cr_expect_eq(aj_round_u64(__builtin_nan("")), 0);
        cr_expect_eq(aj_round_u64(__builtin_inf()), UINT64_MAX);
}
