/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bytes waiting to be written to a non-blocking socket: the services' output queues (the
 * broker's and control's replies, the proxy's refusals and relay prefixes). The owner
 * watches EPOLLOUT while aj_outbuf_pending() and calls aj_outbuf_send() when it fires.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
        char *data;
        size_t off, len, size; /* data[off..len) is unsent */
} AjOutBuf;

static inline size_t aj_outbuf_pending(const AjOutBuf *b) { return b->len - b->off; }

/* Keeps only the first `pending` unsent bytes (at most aj_outbuf_pending()). */
static inline void aj_outbuf_truncate(AjOutBuf *b, size_t pending)
{
        if (pending < b->len - b->off)
                b->len = b->off + pending;
}

/* Appends len bytes (and a '\n' when `newline`). -ENOBUFS when the unsent bytes would pass
 * `max` (a peer that does not read), -ENOMEM; the buffer is unchanged then. */
int aj_outbuf_add(AjOutBuf *b, const void *data, size_t len, bool newline, size_t max);
/* Takes a malloc'd buffer of len bytes as the whole content, replacing what was there. */
void aj_outbuf_take(AjOutBuf *b, char *data, size_t len);
/* Sends what the socket takes now (MSG_NOSIGNAL | MSG_DONTWAIT): 1 when nothing is left,
 * 0 when the socket is full, -errno on failure (EPIPE, ECONNRESET: the peer is gone).
 * *ret_sent (optional) counts the bytes sent, also on failure. */
int aj_outbuf_send(AjOutBuf *b, int fd, size_t *ret_sent);
/* One send(2) (retried on EINTR): the bytes sent (> 0), 0 when nothing is pending, -EAGAIN
 * when the socket is full, -errno on failure. For a caller that counts each write. */
ssize_t aj_outbuf_send_once(AjOutBuf *b, int fd);
void aj_outbuf_clear(AjOutBuf *b);
