/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp`'s line streams: the writers queue lines for the client's stdout and the
 * server's stdin, the readers cut the client's stdin and the server's stdout into lines
 * and pause while the outputs they feed are full (cli/mcp-relay.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cli/mcp-relay.h"

/* ---- writers ---- */

static void writer_flush(Relay *r, Writer *w)
{
        while (!w->dead && aj_outbuf_pending(&w->out) > 0) {
                ssize_t n = write(w->fd, w->out.data + w->out.off, aj_outbuf_pending(&w->out));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        w->dead = true; /* EPIPE: the reader is gone */
                        aj_outbuf_clear(&w->out);
                        break;
                }
                w->out.off += (size_t)n;
                if (w->out.off == w->out.len)
                        w->out.off = w->out.len = 0;
        }
        if (w->fd >= 0 && (w->dead || (w->close_on_drain && aj_outbuf_pending(&w->out) == 0))) {
                aj_loop_io_remove(w->io);
                w->io = NULL;
                close(w->fd);
                w->fd = -1;
                w->dead = true;
        }
        mcp_update_interest(r);
}

void mcp_writer_add(Relay *r, Writer *w, const char *line)
{
        if (w->dead || w->fd < 0)
                return;
        if (aj_outbuf_add(&w->out, line, strlen(line), true, QUEUE_HARD_MAX) < 0) {
                mcp_note("out of memory for a queued message; dropped");
                return;
        }
        writer_flush(r, w);
}

/* ---- readers ---- */

bool mcp_reader_blocked(Relay *r, Reader *rd)
{
        if (rd == &r->client_in)
                return aj_outbuf_pending(&r->server_in.out) >= AJ_MCP_MAX_LINE ||
                       aj_outbuf_pending(&r->client_out.out) >= AJ_MCP_MAX_LINE ||
                       aj_outbuf_pending(&r->broker.out) >= AJ_BROKER_MAX_OUTPUT / 2;
        return aj_outbuf_pending(&r->client_out.out) >= AJ_MCP_MAX_LINE ||
               aj_outbuf_pending(&r->broker.out) >= AJ_BROKER_MAX_OUTPUT / 2;
}

static void reader_line(Relay *r, Reader *rd, const char *line, size_t len)
{
        if (len == 0 || (len == 1 && line[0] == '\r'))
                return;
        if (rd == &r->client_in)
                mcp_on_client_line(r, line, len);
        else
                mcp_on_server_line(r, line, len);
}

static void reader_too_long(Relay *r, Reader *rd)
{
        if (rd == &r->client_in)
                mcp_reply_to_client(r, NULL, AJ_MCP_E_INVALID_REQUEST,
                                    "agentjail mcp: a message longer than 8 MiB; discarded, nothing was forwarded");
        else
                mcp_note("dropped from the server: a message longer than 8 MiB");
}

/* The complete lines in the buffer, while the outputs take them. */
void mcp_reader_process(Relay *r, Reader *rd)
{
        size_t start = 0;
        while (start < rd->len) {
                char *nl = memchr(rd->buf + start, '\n', rd->len - start);
                if (!nl)
                        break;
                size_t end = (size_t)(nl - rd->buf);
                if (rd->discarding) {
                        rd->discarding = false; /* the end of a line that was too long */
                } else if (end - start > AJ_MCP_MAX_LINE) {
                        reader_too_long(r, rd);
                } else {
                        if (mcp_reader_blocked(r, rd))
                                break;
                        reader_line(r, rd, rd->buf + start, end - start);
                }
                start = end + 1;
        }
        rd->len -= start;
        memmove(rd->buf, rd->buf + start, rd->len);
        bool whole_line = rd->len > 0 && memchr(rd->buf, '\n', rd->len);
        if (!whole_line && rd->discarding) {
                rd->len = 0;
        } else if (!whole_line && rd->len > AJ_MCP_MAX_LINE) {
                reader_too_long(r, rd);
                rd->discarding = true;
                rd->len = 0;
        }
        if (rd->eof && !whole_line && rd->len > 0 && !mcp_reader_blocked(r, rd)) {
                /* A last line without its newline. */
                if (!rd->discarding)
                        reader_line(r, rd, rd->buf, rd->len);
                rd->len = 0;
        }
        if (rd->eof && rd->len == 0 && !rd->done) {
                rd->done = true;
                if (rd == &r->client_in)
                        mcp_client_closed(r);
        }
}

void mcp_reader_read(Relay *r, Reader *rd)
{
        if (rd->eof || mcp_reader_blocked(r, rd))
                return;
        if (!rd->buf && !(rd->buf = malloc(READER_SIZE))) {
                mcp_note("out of memory");
                r->failed = true;
                return;
        }
        if (rd->len == READER_SIZE)
                return mcp_reader_process(r, rd);
        ssize_t n = read(rd->fd, rd->buf + rd->len, READER_SIZE - rd->len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                rd->eof = true;
                aj_loop_io_remove(rd->io);
                rd->io = NULL;
        } else {
                rd->len += (size_t)n;
        }
        mcp_reader_process(r, rd);
}

void mcp_on_reader(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        mcp_reader_read(r, fd == r->client_in.fd ? &r->client_in : &r->server_out);
}

void mcp_on_writer(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        Writer *w = fd == r->client_out.fd ? &r->client_out : &r->server_in;
        if (revents & (EPOLLERR | EPOLLHUP)) {
                w->dead = true;
                aj_outbuf_clear(&w->out);
        }
        writer_flush(r, w);
}

/* The client sent its last message (it may still read): the server's stdin is closed
 * once no call waits for the broker's verdict (held ones too: a client that gives up
 * kills us, and the server's end follows) and what is queued for it is written. */
void mcp_client_closed(Relay *r)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                if (r->pending[i].state == P_VERDICT)
                        return;
        if (!r->server_in.close_on_drain) {
                r->server_in.close_on_drain = true;
                writer_flush(r, &r->server_in);
        }
}

/* Which fds are watched for what: readers pause while their outputs are full. */
void mcp_update_interest(Relay *r)
{
        Reader *readers[] = { &r->client_in, &r->server_out };
        for (size_t i = 0; i < ARRAY_SIZE(readers); i++) {
                Reader *rd = readers[i];
                if (rd->eof || rd->fd < 0 || rd->unpolled)
                        continue;
                /* Paused by leaving the loop: epoll reports a hang-up even with no events asked. */
                bool blocked = mcp_reader_blocked(r, rd) || rd->len == READER_SIZE;
                if (blocked && rd->io) {
                        aj_loop_io_remove(rd->io);
                        rd->io = NULL;
                } else if (!blocked && !rd->io &&
                           aj_loop_add_io(r->loop, rd->fd, EPOLLIN, mcp_on_reader, r, &rd->io) < 0) {
                        mcp_note("cannot watch an input");
                        r->failed = true;
                }
        }
        Writer *writers[] = { &r->client_out, &r->server_in };
        for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
                if (writers[i]->io)
                        (void)aj_loop_io_set_events(writers[i]->io, aj_outbuf_pending(&writers[i]->out) ? EPOLLOUT : 0);
        if (r->broker.io)
                (void)aj_loop_io_set_events(r->broker.io,
                                            EPOLLIN | (aj_outbuf_pending(&r->broker.out) ? EPOLLOUT : 0u));
}
