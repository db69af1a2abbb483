/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's upstream side: resolve (c-ares, unless the address is known), connect
 * without blocking, TLS, send the rewritten request, read the response head and relay
 * the body to the agent as it arrives, reading no more than the agent can take. A
 * connection whose response was framed and not closed is kept for the agent
 * connection's next request to the same provider; a kept one that fails before any
 * byte of the response is retried once on a new connection.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/relay-internal.h"

/* A kept connection became readable: the provider closed it, or (TLS 1.3) sent a record
 * such as a session ticket, which leaves it usable. */
static int up_idle_readable(GwConn *c)
{
        GwUpstream *u = &c->up;
        char b[1];
        uint32_t ev = 0;
        if (u->ssl && aj_gw_tls_read(u->ssl, b, sizeof(b), &ev) == -EAGAIN)
                return 0;
        gw_upstream_close(c);
        return 0;
}

static void on_up_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
static int up_open(GwConn *c);
static int up_send(GwConn *c);
static int up_pump(GwConn *c);

static const GwProvider *provider_of(const GwConn *c) { return &c->gw->providers[c->up.provider]; }

void gw_upstream_close(GwConn *c)
{
        GwUpstream *u = &c->up;
        if (u->state == U_RESOLVING)
                aj_resolver_cancel(c->gw->resolver, u->resolve_id);
        aj_loop_io_remove(u->io);
        u->io = NULL;
        aj_gw_tls_free(u->ssl);
        u->ssl = NULL;
        if (u->fd >= 0)
                close(u->fd);
        u->fd = -1;
        gw_buf_free(&u->in, false);
        gw_buf_free(&u->served, false);
        u->state = U_NONE;
        u->paused = u->reused = u->local = false;
}

void gw_upstream_finish(GwConn *c, bool reusable)
{
        GwUpstream *u = &c->up;
        if (!reusable || u->fd < 0) {
                gw_upstream_close(c);
                return;
        }
        gw_buf_free(&u->in, false);
        u->state = U_IDLE;
        u->paused = false;
        /* Idle: readable means the provider closed it (or misbehaves): drop it then. */
        if (aj_loop_io_set_events(u->io, EPOLLIN) < 0)
                gw_upstream_close(c);
}

int gw_upstream_start(GwConn *c)
{
        GwUpstream *u = &c->up;
        u->sent = 0;
        u->got_bytes = u->retried = false;
        u->head_request = streq(c->method, "HEAD");
        if (u->state == U_IDLE && u->provider == c->provider) {
                u->reused = true;
                u->state = U_SENDING;
                return up_send(c);
        }
        gw_upstream_close(c);
        u->provider = c->provider;
        return up_open(c);
}

int gw_upstream_serve(GwConn *c, char *response, size_t len)
{
        GwUpstream *u = &c->up;
        gw_upstream_close(c);
        u->provider = c->provider;
        u->sent = 0;
        u->got_bytes = false;
        u->retried = true; /* nothing to retry */
        u->head_request = streq(c->method, "HEAD");
        u->local = true;
        u->served = (GwBuf){ .data = response, .len = len, .cap = len };
        u->state = U_HEAD;
        u->chunked = (AjGwChunked){ 0 };
        gw_conn_arm_timer(c, c->gw->opts.response_timeout_ms);
        return up_pump(c);
}

int gw_upstream_resume(GwConn *c) { return up_pump(c); }

/* A failure of a connection that may be a stale kept one: retried once, fresh. */
static int up_failed(GwConn *c, const char *what, int err)
{
        GwUpstream *u = &c->up;
        const GwProvider *p = provider_of(c);
        if (u->reused && !u->got_bytes && !u->retried) {
                gw_upstream_close(c);
                u->retried = true;
                u->sent = 0;
                return up_open(c);
        }
        return gw_conn_upstream_failed(c, 502, "agentjail gateway: %s '%s' (port %u)%s%s", what, p->host,
                                       (unsigned)p->port, err ? ": " : "", err ? strerror(-err) : "");
}

static int up_connect(GwConn *c)
{
        GwUpstream *u = &c->up;
        int last = -ECONNREFUSED;
        for (; u->next_addr < u->n_addrs; u->next_addr++) {
                const struct sockaddr_storage *sa = &u->addrs[u->next_addr];
                int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return gw_conn_upstream_failed(c, 502, "agentjail gateway: socket: %s", strerror(errno));
                int one = 1, size = GW_SOCKET_BUFFER;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
                socklen_t len = sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
                if (connect(fd, (const struct sockaddr *)sa, len) < 0 && errno != EINPROGRESS) {
                        last = -errno;
                        close(fd);
                        continue;
                }
                int r = aj_loop_add_io(c->gw->loop, fd, EPOLLOUT, on_up_io, c, &u->io);
                if (r < 0) {
                        close(fd);
                        return r;
                }
                u->fd = fd;
                u->state = U_CONNECTING;
                return 0;
        }
        return gw_conn_upstream_failed(c, 502, "agentjail gateway: cannot connect to '%s' (port %u): %s",
                                       provider_of(c)->host, (unsigned)provider_of(c)->port, strerror(-last));
}

static void on_resolved(void *userdata, int error, const struct sockaddr_storage *addrs, size_t n)
{
        GwConn *c = userdata;
        GwUpstream *u = &c->up;
        const GwProvider *p = provider_of(c);
        u->state = U_NONE;
        int r;
        if (error < 0 || n == 0)
                r = gw_conn_upstream_failed(c, 502, "agentjail gateway: cannot resolve '%s': %s", p->host,
                                            strerror(error < 0 ? -error : ENOENT));
        else {
                u->n_addrs = n < GW_MAX_ADDRS ? n : GW_MAX_ADDRS;
                u->next_addr = 0;
                for (size_t i = 0; i < u->n_addrs; i++) {
                        u->addrs[i] = addrs[i];
                        if (addrs[i].ss_family == AF_INET)
                                ((struct sockaddr_in *)&u->addrs[i])->sin_port = htons(p->port);
                        else
                                ((struct sockaddr_in6 *)&u->addrs[i])->sin6_port = htons(p->port);
                }
                r = up_connect(c);
        }
        gw_conn_settle(c, r);
}

static int up_open(GwConn *c)
{
        GwUpstream *u = &c->up;
        const GwProvider *p = provider_of(c);
        u->reused = false;
        if (p->have_addr) {
                u->addrs[0] = p->addr;
                u->n_addrs = 1;
                u->next_addr = 0;
                return up_connect(c);
        }
        u->state = U_RESOLVING;
        int r = aj_resolver_resolve(c->gw->resolver, p->host, on_resolved, c, &u->resolve_id);
        if (r < 0) {
                u->state = U_NONE;
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: cannot resolve '%s': %s", p->host,
                                               strerror(-r));
        }
        return 0;
}

static int up_handshake(GwConn *c)
{
        GwUpstream *u = &c->up;
        uint32_t ev = 0;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_gw_tls_handshake(u->ssl, &ev, &err);
        if (r == -EAGAIN)
                return aj_loop_io_set_events(u->io, ev);
        if (r < 0) {
                const GwProvider *p = provider_of(c);
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: TLS with '%s' (port %u) failed: %s", p->host,
                                               (unsigned)p->port, err.message ? err.message : "unknown error");
        }
        u->state = U_SENDING;
        return up_send(c);
}

static int up_connected(GwConn *c)
{
        GwUpstream *u = &c->up;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err) {
                aj_loop_io_remove(u->io);
                u->io = NULL;
                close(u->fd);
                u->fd = -1;
                u->next_addr++;
                return up_connect(c);
        }
        const GwProvider *p = provider_of(c);
        if (!p->tls) {
                u->state = U_SENDING;
                return up_send(c);
        }
        int r = aj_gw_tls_new(p->tls_ctx, u->fd, p->host, &u->ssl);
        if (r < 0)
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: TLS setup failed: %s", strerror(-r));
        u->state = U_HANDSHAKE;
        return up_handshake(c);
}

static ssize_t up_io(GwConn *c, bool write, void *buf, size_t n, uint32_t *ev)
{
        GwUpstream *u = &c->up;
        if (u->local) {
                if (write)
                        return -EPIPE;
                size_t k = gw_buf_pending(&u->served) < n ? gw_buf_pending(&u->served) : n;
                memcpy(buf, u->served.data + u->served.off, k);
                gw_buf_consume(&u->served, k);
                return (ssize_t)k;
        }
        if (u->ssl)
                return write ? aj_gw_tls_write(u->ssl, buf, n, ev) : aj_gw_tls_read(u->ssl, buf, n, ev);
        ssize_t k = write ? send(u->fd, buf, n, MSG_NOSIGNAL) : recv(u->fd, buf, n, 0);
        if (k >= 0)
                return k;
        *ev = write ? EPOLLOUT : EPOLLIN;
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
}

static int up_send(GwConn *c)
{
        GwUpstream *u = &c->up;
        while (u->sent < c->upreq.len) {
                uint32_t ev = 0;
                ssize_t n = up_io(c, true, c->upreq.data + u->sent, c->upreq.len - u->sent, &ev);
                if (n == -EAGAIN)
                        return aj_loop_io_set_events(u->io, ev);
                if (n <= 0)
                        return up_failed(c, "sending the request to", (int)(n < 0 ? n : -EPIPE));
                u->sent += (size_t)n;
        }
        c->call.forwarded = true;
        u->state = U_HEAD;
        u->chunked = (AjGwChunked){ 0 };
        gw_conn_arm_timer(c, c->gw->opts.response_timeout_ms);
        return up_pump(c);
}

static int up_complete(GwConn *c, bool reusable)
{
        gw_upstream_finish(c, reusable && c->up.keep_alive);
        return gw_conn_response_end(c);
}

/* Body bytes as read from the provider. */
static int up_body(GwConn *c, const char *data, size_t n)
{
        GwUpstream *u = &c->up;
        if (u->body == AJ_GW_BODY_UNTIL_CLOSE)
                return gw_conn_response_data(c, data, n);
        if (u->body == AJ_GW_BODY_LENGTH) {
                size_t take = n < u->left ? n : (size_t)u->left;
                int r = gw_conn_response_data(c, data, take);
                if (r < 0 || c->state != C_UPSTREAM)
                        return r;
                u->left -= take;
                return u->left == 0 ? up_complete(c, take == n) : 0;
        }
        while (n > 0) {
                const char *span;
                size_t span_len;
                bool done;
                ssize_t k = aj_gw_chunked_next(&u->chunked, data, n, &span, &span_len, &done);
                if (k < 0)
                        return gw_conn_upstream_failed(c, 502, "agentjail gateway: malformed chunked response");
                if (span_len) {
                        int r = gw_conn_response_data(c, span, span_len);
                        if (r < 0 || c->state != C_UPSTREAM)
                                return r;
                }
                data += k;
                n -= (size_t)k;
                if (done)
                        return up_complete(c, n == 0);
        }
        return 0;
}

/* Response head bytes: interim 1xx heads are skipped; the final one goes to the agent
 * and what follows it in the buffer is body. */
static int up_head(GwConn *c, const char *data, size_t n)
{
        GwUpstream *u = &c->up;
        int r = gw_buf_append(&u->in, data, n, GW_UPSTREAM_MAX_HEAD + GW_READ_CHUNK);
        if (r < 0)
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: response head too large");
        for (;;) {
                AjGwResponseHead h;
                r = aj_gw_parse_response_head(u->in.data + u->in.off, gw_buf_pending(&u->in), GW_UPSTREAM_MAX_HEAD,
                                              u->head_request, &h);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0 || h.status == 101)
                        return gw_conn_upstream_failed(c, 502,
                                                       "agentjail gateway: malformed response from the provider");
                if (h.status < 200) {
                        gw_buf_consume(&u->in, h.head_len);
                        continue;
                }
                u->body = h.body;
                u->left = h.content_length;
                u->keep_alive = h.keep_alive;
                r = gw_conn_response_head(c, &h);
                if (r < 0 || c->state != C_UPSTREAM)
                        return r;
                gw_buf_consume(&u->in, h.head_len);
                u->state = U_BODY;
                if (u->body == AJ_GW_BODY_NONE)
                        return up_complete(c, gw_buf_pending(&u->in) == 0);
                /* Detached: a cut or a failure in up_body() closes the upstream. */
                GwBuf rest = u->in;
                u->in = (GwBuf){ 0 };
                r = gw_buf_pending(&rest) ? up_body(c, rest.data + rest.off, gw_buf_pending(&rest)) : 0;
                gw_buf_free(&rest, false);
                return r;
        }
}

static int up_eof(GwConn *c)
{
        GwUpstream *u = &c->up;
        if (u->state == U_BODY && u->body == AJ_GW_BODY_UNTIL_CLOSE)
                return up_complete(c, false);
        if (u->state == U_HEAD && !u->got_bytes)
                return up_failed(c, "the connection was closed before a response by", 0);
        return gw_conn_upstream_failed(c, 502, "agentjail gateway: the provider's response ended early");
}

/* Reads while the agent keeps up: at GW_OUT_HIGH queued for it, the upstream waits. */
static int up_pump(GwConn *c)
{
        GwUpstream *u = &c->up;
        for (;;) {
                if (c->state != C_UPSTREAM || (u->state != U_HEAD && u->state != U_BODY))
                        return 0;
                /* The agent left: only what the provider already sent is read, bounded over
                 * every pump of the call from then on (the read below never passes it). */
                if (c->agent_gone && c->gone_read >= GW_LINGER_MAX)
                        return 0;
                if (gw_buf_pending(&c->out) >= GW_OUT_HIGH) {
                        u->paused = true;
                        return u->local ? 0 : aj_loop_io_set_events(u->io, 0);
                }
                u->paused = false;
                char tmp[GW_READ_CHUNK];
                uint32_t ev = 0;
                size_t want = sizeof(tmp);
                if (c->agent_gone && GW_LINGER_MAX - c->gone_read < want)
                        want = GW_LINGER_MAX - c->gone_read;
                ssize_t n = up_io(c, false, tmp, want, &ev);
                if (n == -EAGAIN)
                        return aj_loop_io_set_events(u->io, ev);
                if (n < 0)
                        return up_failed(c, "reading the response from", (int)n);
                if (n == 0)
                        return up_eof(c);
                if (c->agent_gone)
                        c->gone_read += (size_t)n;
                if (!u->got_bytes) {
                        /* Not needed for a retry any more: the credential goes. */
                        c->gw->buffered -= c->upreq.len;
                        gw_buf_free(&c->upreq, true);
                        u->got_bytes = true;
                }
                gw_conn_arm_timer(c, c->gw->opts.response_timeout_ms);
                int r = u->state == U_HEAD ? up_head(c, tmp, (size_t)n) : up_body(c, tmp, (size_t)n);
                /* What this read brought (a head and its first bytes, SSE events) leaves
                 * in one send, at once. */
                if (r >= 0)
                        r = gw_conn_flush(c);
                if (r < 0)
                        return r;
        }
}

static void on_up_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        GwConn *c = userdata;
        int r = 0;
        switch (c->up.state) {
        case U_CONNECTING:
                r = up_connected(c);
                break;
        case U_HANDSHAKE:
                r = up_handshake(c);
                break;
        case U_SENDING:
                r = up_send(c);
                break;
        case U_HEAD:
        case U_BODY:
                r = up_pump(c);
                break;
        case U_IDLE:
                r = up_idle_readable(c);
                break;
        default:
                gw_upstream_close(c);
                break;
        }
        gw_conn_settle(c, r);
}
