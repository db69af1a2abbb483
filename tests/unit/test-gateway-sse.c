/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sse.h"

/* Events as "name|data" lines joined by '\n'-separated records ("\x1e" between events). */
typedef struct {
        char out[65536];
        size_t len;
        int stop_after; /* return -EPIPE from the callback after this many events (0: never) */
        int n;
} Collect;

static int collect(void *userdata, const AjSseEvent *ev)
{
        Collect *c = userdata;
        int w = snprintf(c->out + c->len, sizeof(c->out) - c->len, "%s|", ev->event);
        cr_assert(w > 0 && (size_t)w < sizeof(c->out) - c->len);
        c->len += (size_t)w;
        cr_assert(c->len + ev->data_len + 2 < sizeof(c->out));
        memcpy(c->out + c->len, ev->data, ev->data_len);
        cr_assert_eq(ev->data[ev->data_len], '\0', "data is NUL-terminated");
        c->len += ev->data_len;
        c->out[c->len++] = '\x1e';
        c->out[c->len] = '\0';
        c->n++;
        return c->stop_after && c->n >= c->stop_after ? -EPIPE : 0;
}

/* Parses `in` fed as the chunks cut at `cuts` (sorted offsets, -1 ended). */
static int parse_cut(const char *in, size_t len, const size_t *cuts, size_t n_cuts, Collect *c, int *ret_finish)
{
        AjSse *s = NULL;
        cr_assert_eq(aj_sse_new(0, &s), 0);
        size_t at = 0;
        int r = 0;
        for (size_t i = 0; i <= n_cuts && r >= 0; i++) {
                size_t to = i < n_cuts ? cuts[i] : len;
                r = aj_sse_feed(s, in + at, to - at, collect, c);
                at = to;
        }
        *ret_finish = aj_sse_finish(s);
        aj_sse_free(s);
        return r;
}

static void expect_events(const char *in, const char *expected, int expected_finish)
{
        size_t len = strlen(in);
        Collect whole = {};
        int fin;
        cr_assert_eq(parse_cut(in, len, NULL, 0, &whole, &fin), 0);
        cr_expect_str_eq(whole.out, expected, "whole: %s", in);
        cr_expect_eq(fin, expected_finish, "finish of %s", in);
        for (size_t cut = 0; cut <= len; cut++) {
                Collect c = {};
                cr_assert_eq(parse_cut(in, len, &cut, 1, &c, &fin), 0);
                cr_assert_str_eq(c.out, expected, "split at %zu: %s", cut, in);
                cr_assert_eq(fin, expected_finish);
        }
        size_t *cuts = calloc(len + 1, sizeof(size_t));
        for (size_t i = 0; i < len; i++)
                cuts[i] = i + 1;
        Collect c = {};
        cr_assert_eq(parse_cut(in, len, cuts, len, &c, &fin), 0);
        cr_expect_str_eq(c.out, expected, "byte by byte: %s", in);
        free(cuts);
}

Test(sse, line_ends_lf_crlf_cr)
{
        expect_events("event: a\ndata: 1\n\n", "a|1\x1e", 0);
        expect_events("event: a\r\ndata: 1\r\n\r\n", "a|1\x1e", 0);
        expect_events("event: a\rdata: 1\r\r", "a|1\x1e", 0);
        expect_events("data: x\r\n\r\ndata: y\n\rdata: z\r\n\n", "message|x\x1emessage|y\x1emessage|z\x1e", 0);
}

Test(sse, data_lines_join_with_newline_and_default_name)
{
        expect_events("data: one\ndata: two\ndata:\ndata:three\n\n", "message|one\ntwo\n\nthree\x1e", 0);
        expect_events("data\n\n", "message|\x1e", 0); /* a field without a colon: empty value */
        expect_events("data:  two spaces\n\n", "message| two spaces\x1e", 0);
}

Test(sse, comments_ids_retry_and_unknown_fields_are_skipped)
{
        expect_events(": ping\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n:only a comment\n\n", "message|x\x1e", 0);
        /* An event with no data field is not dispatched, and its name does not leak. */
        expect_events("event: lonely\n\ndata: y\n\n", "message|y\x1e", 0);
        /* The last event field wins. */
        expect_events("event: a\nevent: b\ndata: z\n\n", "b|z\x1e", 0);
}

Test(sse, byte_order_mark_is_dropped_once)
{
        expect_events("\xef\xbb\xbf"
                      "data: a\n\n",
                      "message|a\x1e", 0);
}

Test(sse, cut_stream_reports_the_pending_event)
{
        expect_events("data: a\n\ndata: b\n", "message|a\x1e", 1);
        expect_events("data: a\n\ndata: partial", "message|a\x1e", 1);
        expect_events("data: a\n\n: comment", "message|a\x1e", 1);
}

Test(sse, oversized_event_is_refused_and_stays_refused)
{
        AjSse *s = NULL;
        cr_assert_eq(aj_sse_new(64, &s), 0);
        Collect c = {};
        cr_assert_eq(aj_sse_feed(s, "data: small\n\n", 13, collect, &c), 0);
        char big[100];
        memset(big, 'x', sizeof(big));
        /* 40 + 40 bytes of data lines: each line fits, the event does not. */
        cr_assert_eq(aj_sse_feed(s, "data: ", 6, collect, &c), 0);
        cr_assert_eq(aj_sse_feed(s, big, 40, collect, &c), 0);
        cr_assert_eq(aj_sse_feed(s, "\ndata: ", 7, collect, &c), 0);
        cr_assert_eq(aj_sse_feed(s, big, 40, collect, &c), -E2BIG);
        cr_assert_eq(aj_sse_feed(s, "\n\n", 2, collect, &c), -E2BIG);
        cr_assert_eq(aj_sse_finish(s), -E2BIG);
        cr_expect_eq(c.n, 1);
        aj_sse_free(s);

        /* A single line without an end is bounded too. */
        cr_assert_eq(aj_sse_new(64, &s), 0);
        int r = 0;
        for (int i = 0; i < 10 && r == 0; i++)
                r = aj_sse_feed(s, big, sizeof(big) / 10, collect, &c);
        cr_expect_eq(r, -E2BIG);
        aj_sse_free(s);
}

Test(sse, callback_error_stops_the_feed)
{
        AjSse *s = NULL;
        cr_assert_eq(aj_sse_new(0, &s), 0);
        Collect c = { .stop_after = 1 };
        const char *in = "data: 1\n\ndata: 2\n\n";
        cr_expect_eq(aj_sse_feed(s, in, strlen(in), collect, &c), -EPIPE);
        cr_expect_eq(c.n, 1);
        aj_sse_free(s);
}

Test(sse, data_may_hold_nul_bytes)
{
        AjSse *s = NULL;
        cr_assert_eq(aj_sse_new(0, &s), 0);
        Collect c = {};
        static const char in[] = "data: a\0b\n\n";
        cr_assert_eq(aj_sse_feed(s, in, sizeof(in) - 1, collect, &c), 0);
        cr_expect_eq(c.len, strlen("message|") + 3 + 1);
        aj_sse_free(s);
}

/* Found by fuzzing: a name starting with a NUL is the default name, so that its
 * written-back form ("data:" only) reads the same. */
Test(sse, empty_or_nul_event_name_is_message)
{
        AjSse *s = NULL;
        cr_assert_eq(aj_sse_new(0, &s), 0);
        Collect c = {};
        static const char in[] = "event:\ndata: a\n\nevent: \0x\ndata: b\n\n";
        cr_assert_eq(aj_sse_feed(s, in, sizeof(in) - 1, collect, &c), 0);
        cr_expect_str_eq(c.out, "message|a\x1emessage|b\x1e");
        aj_sse_free(s);
        AjSseEvent ev = { .event = "", .data = "x", .data_len = 1 };
        char *out;
        size_t len;
        cr_assert_eq(aj_sse_format(&ev, &out, &len), 0);
        cr_expect_str_eq(out, "data: x\n\n");
        free(out);
}

Test(sse, format_round_trips)
{
        AjSseEvent ev = { .event = "message_delta", .data = "{\"a\":1}\nline two", .data_len = 16 };
        char *out;
        size_t len;
        cr_assert_eq(aj_sse_format(&ev, &out, &len), 0);
        cr_expect_str_eq(out, "event: message_delta\ndata: {\"a\":1}\ndata: line two\n\n");
        cr_expect_eq(len, strlen(out));
        Collect c = {};
        int fin;
        cr_assert_eq(parse_cut(out, len, NULL, 0, &c, &fin), 0);
        cr_expect_str_eq(c.out, "message_delta|{\"a\":1}\nline two\x1e");
        free(out);
        AjSseEvent plain = { .event = "message", .data = "", .data_len = 0 };
        cr_assert_eq(aj_sse_format(&plain, &out, &len), 0);
        cr_expect_str_eq(out, "data: \n\n");
        free(out);
}
