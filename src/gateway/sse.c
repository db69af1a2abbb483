/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server-Sent Events (see sse.h). The stream is cut into lines as it arrives; a
 * line is kept until its end is seen, so an event split across any number of
 * chunks parses the same as one arriving whole. A "\r" ending one chunk and a
 * "\n" starting the next are one line end, not two.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sse.h"

typedef struct {
        char *p;
        size_t len, cap;
} Buf;

struct AjSse {
        size_t max;     /* bytes of line + data + event name */
        Buf line;       /* the line being read */
        Buf data;       /* data lines so far, each followed by '\n' */
        Buf event;      /* the "event" field */
        bool have_data; /* a data field was seen (it may be empty) */
        bool in_event;  /* a field was seen since the last dispatch */
        bool skip_lf;   /* the last line ended with '\r': a '\n' next is part of it */
        bool started;   /* past the first line (a byte order mark is dropped there) */
        int error;
};

int aj_sse_new(size_t max_event, AjSse **ret)
{
        AjSse *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->max = max_event ? max_event : AJ_SSE_MAX_EVENT_DEFAULT;
        *ret = s;
        return 0;
}

void aj_sse_free(AjSse *s)
{
        if (!s)
                return;
        free(s->line.p);
        free(s->data.p);
        free(s->event.p);
        free(s);
}

static size_t held(const AjSse *s) { return s->line.len + s->data.len + s->event.len; }

/* Appends within the event bound, keeping room for a NUL. */
static int buf_append(AjSse *s, Buf *b, const char *p, size_t n)
{
        if (n > s->max || held(s) > s->max - n)
                return -E2BIG;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n + 1)
                        cap *= 2;
                if (cap > s->max + 1)
                        cap = s->max + 1;
                char *q = realloc(b->p, cap);
                if (!q)
                        return -ENOMEM;
                b->p = q;
                b->cap = cap;
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
}

static int dispatch(AjSse *s, AjSseCallback cb, void *userdata)
{
        bool have = s->have_data;
        int r = 0;
        if (have) {
                s->data.len--; /* the '\n' after the last data line */
                s->data.p[s->data.len] = '\0';
                AjSseEvent ev = {
                        /* An empty name (or one starting with a NUL) is the default. */
                        .event = s->event.len && s->event.p[0] ? s->event.p : "message",
                        .data = s->data.p,
                        .data_len = s->data.len,
                };
                r = cb ? cb(userdata, &ev) : 0;
        }
        s->data.len = 0;
        s->event.len = 0;
        s->have_data = false;
        s->in_event = false;
        return r;
}

static int process_line(AjSse *s, AjSseCallback cb, void *userdata)
{
        const char *line = s->line.p ? s->line.p : "";
        size_t len = s->line.len;
        int r = 0;

        if (!s->started) {
                s->started = true;
                if (len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
                        line += 3;
                        len -= 3;
                }
        }
        if (len == 0) {
                s->line.len = 0;
                return dispatch(s, cb, userdata);
        }
        if (line[0] != ':') {
                const char *colon = memchr(line, ':', len);
                size_t flen = colon ? (size_t)(colon - line) : len;
                const char *value = colon ? colon + 1 : line + len;
                size_t vlen = len - (size_t)(value - line);
                if (vlen > 0 && value[0] == ' ') {
                        value++;
                        vlen--;
                }
                bool is_event = flen == 5 && memcmp(line, "event", 5) == 0;
                bool is_data = flen == 4 && memcmp(line, "data", 4) == 0;
                /* The value stays in the line's memory (appending to data or event
                 * does not touch it); the line no longer counts against the bound. */
                s->line.len = 0;
                if (is_event) {
                        s->event.len = 0;
                        r = buf_append(s, &s->event, value, vlen);
                        s->in_event = true;
                } else if (is_data) {
                        r = buf_append(s, &s->data, value, vlen);
                        if (r >= 0)
                                r = buf_append(s, &s->data, "\n", 1);
                        s->have_data = true;
                        s->in_event = true;
                }
                /* "id", "retry" and unknown fields: ignored. */
        }
        s->line.len = 0;
        return r;
}

int aj_sse_feed(AjSse *s, const void *buf, size_t len, AjSseCallback cb, void *userdata)
{
        const char *p = buf, *end = p + len;
        int r;

        if (s->error)
                return s->error;
        while (p < end) {
                if (s->skip_lf) {
                        s->skip_lf = false;
                        if (*p == '\n') {
                                p++;
                                continue;
                        }
                }
                const char *q = p;
                while (q < end && *q != '\n' && *q != '\r')
                        q++;
                r = buf_append(s, &s->line, p, (size_t)(q - p));
                if (r < 0)
                        return s->error = r;
                if (q == end)
                        break;
                s->skip_lf = *q == '\r';
                p = q + 1;
                r = process_line(s, cb, userdata);
                if (r < 0)
                        return s->error = r;
        }
        return 0;
}

int aj_sse_finish(AjSse *s)
{
        if (s->error)
                return s->error;
        /* A last line without its end still belongs to the cut event. */
        return s->in_event || s->line.len > 0 ? 1 : 0;
}

int aj_sse_format(const AjSseEvent *ev, char **ret, size_t *ret_len)
{
        size_t lines = 1;
        for (size_t i = 0; i < ev->data_len; i++)
                lines += ev->data[i] == '\n';
        bool named = ev->event && ev->event[0] && strcmp(ev->event, "message") != 0;
        size_t elen = named ? strlen(ev->event) : 0;
        if (ev->data_len > SIZE_MAX / 2 - elen - 16 || lines > (SIZE_MAX / 2 - elen - ev->data_len) / 8)
                return -E2BIG;
        size_t size = (named ? elen + 8 : 0) + ev->data_len + lines * 7 + 2;
        char *out = malloc(size), *w = out;
        if (!out)
                return -ENOMEM;
        if (named)
                w += sprintf(w, "event: %s\n", ev->event);
        const char *d = ev->data, *dend = ev->data + ev->data_len;
        for (;;) {
                const char *nl = memchr(d, '\n', (size_t)(dend - d));
                size_t n = nl ? (size_t)(nl - d) : (size_t)(dend - d);
                memcpy(w, "data: ", 6);
                memcpy(w + 6, d, n);
                w += 6 + n;
                *w++ = '\n';
                if (!nl)
                        break;
                d = nl + 1;
        }
        *w++ = '\n';
        *w = '\0';
        *ret_len = (size_t)(w - out);
        *ret = out;
        return 0;
}
