/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An incremental Server-Sent Events parser (the WHATWG "event stream" format as
 * LLM providers stream it). Fed arbitrary chunks of bytes, it calls back once per
 * complete event with the event name and its data lines joined by '\n'. Lines end
 * with "\r\n", "\n" or "\r"; comment lines (":...") are skipped; "id" and "retry"
 * are ignored. Memory is bounded: an event (its data, its name and the line being
 * read) larger than max_event is an error and the parser stops there.
 * Pure: no syscalls, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/macros.h"

#define AJ_SSE_MAX_EVENT_DEFAULT (4u * 1024 * 1024)

typedef struct {
        const char *event; /* "message" when the stream named none */
        const char *data;  /* the data lines joined by '\n', NUL-terminated (it may hold NULs) */
        size_t data_len;
} AjSseEvent;

/* A negative return stops the feed, which returns it. */
typedef int (*AjSseCallback)(void *userdata, const AjSseEvent *ev);

typedef struct AjSse AjSse;

/* max_event 0: AJ_SSE_MAX_EVENT_DEFAULT. */
int aj_sse_new(size_t max_event, AjSse **ret);
void aj_sse_free(AjSse *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjSse *, aj_sse_free);

/* Parses `len` bytes, calling `cb` for each event completed by them. -E2BIG: an
 * event exceeds max_event; after an error every later call returns it again. */
int aj_sse_feed(AjSse *s, const void *buf, size_t len, AjSseCallback cb, void *userdata);

/* The end of the stream. An event without its terminating blank line is not
 * dispatched (as the specification says); returns 1 when one was pending (the
 * stream was cut inside an event), 0 when the stream ended cleanly, or the error. */
int aj_sse_finish(AjSse *s);

/* The wire form of `ev` ("event: NAME\n" unless "message", "data: LINE\n" per
 * line, a blank line): for a relay that forwards some events and drops others.
 * free() *ret. */
int aj_sse_format(const AjSseEvent *ev, char **ret, size_t *ret_len);
