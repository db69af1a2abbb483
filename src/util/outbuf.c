/* SPDX-License-Identifier: Apache-2.0 */
#include "util/outbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int aj_outbuf_add(AjOutBuf *b, const void *data, size_t len, bool newline, size_t max)
{
        size_t need = aj_outbuf_pending(b) + len + (newline ? 1 : 0);
        if (need > max)
                return -ENOBUFS;
        if (b->off > 0) {
                memmove(b->data, b->data + b->off, b->len - b->off);
                b->len -= b->off;
                b->off = 0;
        }
        if (need > b->size) {
                size_t size = b->size ? b->size : 4096;
                while (size < need)
                        size *= 2;
                if (size > max)
                        size = max;
                char *d = realloc(b->data, size);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->size = size;
        }
        memcpy(b->data + b->len, data, len);
        b->len += len;
        if (newline)
                b->data[b->len++] = '\n';
        return 0;
}

void aj_outbuf_take(AjOutBuf *b, char *data, size_t len)
{
        free(b->data);
        *b = (AjOutBuf){ .data = data, .len = len, .size = len };
}

ssize_t aj_outbuf_send_once(AjOutBuf *b, int fd)
{
        if (b->off == b->len)
                return 0;
        ssize_t n;
        do
                n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        b->off += (size_t)n;
        if (b->off == b->len)
                b->off = b->len = 0;
        return n;
}

int aj_outbuf_send(AjOutBuf *b, int fd, size_t *ret_sent)
{
        size_t sent = 0;
        int r = 1;
        for (;;) {
                ssize_t n = aj_outbuf_send_once(b, fd);
                if (n == 0)
                        break;
                if (n < 0) {
                        r = n == -EAGAIN ? 0 : (int)n;
                        break;
                }
                sent += (size_t)n;
        }
        if (ret_sent)
                *ret_sent = sent;
        return r;
}

void aj_outbuf_clear(AjOutBuf *b)
{
        free(b->data);
        *b = (AjOutBuf){ 0 };
}
