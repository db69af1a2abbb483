/* SPDX-License-Identifier: Apache-2.0 */
/* Pure parsers for values users write in profiles and on the command line. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "512", "512K", "2M", "1.5G", "1T" (binary multiples, optional "iB"/"B") -> bytes. -EINVAL / -ERANGE. */
int aj_parse_size(const char *s, uint64_t *ret);
/* "250ms", "30s", "15m", "2h", "1h30m", plain number = seconds -> nanoseconds. */
int aj_parse_duration(const char *s, uint64_t *ret_ns);
/* Decimal unsigned integer, whole string, no sign. */
int aj_parse_u64(const char *s, uint64_t *ret);
/* 1..max bytes (len of them, no NUL among them) of valid UTF-8, none a space (ASCII's or
 * Unicode's: no-break, em, ideographic, and the letters drawn as a blank: Hangul fillers,
 * the blank Braille pattern) or a control character (C0, DEL, C1): the
 * broker's names and ids, the gateway's model names, wherever they are checked. */
bool aj_plain_name(const char *s, size_t len, size_t max);
/* x rounded to the nearest integer, halves away from zero, as llround() but unsigned and
 * without libm (the supervisor maps no libm: its pages were a tenth of its RSS): 0 for
 * anything below 0.5, NaN included; UINT64_MAX from 2^64 up. */
uint64_t aj_round_u64(double x);
/* Format bytes as "1.5G" style into buf; returns buf. */
char *aj_format_size(uint64_t bytes, char *buf, size_t len);

/* The value of one hex digit, or -1. */
static inline int aj_hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}
