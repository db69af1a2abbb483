/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's relay: client <-> upstream through a buffer per direction (see proxy-internal.h),
 * grown for a bulk transfer within the run's bound. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy-internal.h"

static int send_prefix(Conn *c, Dir *d, int dst);

void proxy_flush_out(Conn *c)
{
        int r = aj_outbuf_send(&c->out, c->cfd, NULL);
        if (r == 0 && proxy_watch_client_room(c) == 0)
                return; /* the socket is full: its next edge sends the rest */
        if (r <= 0) {
                proxy_conn_close(c);
                return;
        }
        shutdown(c->cfd, SHUT_WR);
        c->state = ST_LINGER;
        proxy_conn_kick(c);
}

void proxy_linger(Conn *c)
{
        char buf[16384];
        /* Found empty with no edge since (its end included): the next edge comes here. */
        if (c->up.quiet)
                return;
        for (;;) {
                ssize_t n = recv(c->cfd, buf, sizeof(buf), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        proxy_conn_close(c);
                        return;
                }
                if (n < 0) {
                        c->up.quiet = errno == EAGAIN;
                        return;
                }
                if (!c->socks && !c->is_connect && c->req_done)
                        proxy_note_pipelined(c, buf, (size_t)n);
                c->lingered += (size_t)n;
                if (c->lingered > LINGER_MAX_BYTES) {
                        proxy_conn_close(c);
                        return;
                }
        }
}

/* The connection, for the record of a breach of the egress cap. */
static json_t *describe(const void *c) { return proxy_conn_json(c); }

static int account(Conn *c, Dir *d, size_t n)
{
        AjProxy *p = c->p;
        d->bytes += n;
        if (d == &c->up)
                p->bytes_up += n;
        else
                p->bytes_down += n;
        if (p->hooks && p->hooks->charge_egress) {
                int r = p->hooks->charge_egress(p->hooks->userdata, n, describe, c);
                if (r == 1) {
                        c->error = "egress cap reached";
                        return -EDQUOT;
                }
        }
        return 0;
}

static void mark_pending(Conn *c)
{
        AjProxy *p = c->p;
        if (c->pending)
                return;
        c->pending = true;
        p->pending[p->n_pending++] = c->slot;
        uint64_t one = 1;
        (void)!write(p->wakefd, &one, sizeof(one));
}

bool aj_proxy_buffer_may_grow(size_t excess, size_t cap, size_t want, unsigned max_connections)
{
        size_t room = (size_t)max_connections * 2 * (AJ_PROXY_BUFFER_SIZE - AJ_PROXY_BUFFER_MIN);
        return want > cap && cap >= AJ_PROXY_BUFFER_MIN && excess <= room && want - cap <= room - excess;
}

/* Heads start small: a connection's 16 KiB request and 64 KiB response buffers, with a few
 * connections at once, kept the heap's top growing and shrinking (brk and page faults, about
 * 5 % of the supervisor's CPU at 16 clients). */
ssize_t proxy_head_room(char **buf, size_t *cap, size_t len, size_t max)
{
        if (!*buf || (len == *cap && *cap < max)) {
                size_t want = !*buf ? AJ_PROXY_HEAD_BUFFER_MIN : *cap * 2;
                if (want > max)
                        want = max;
                char *nb = realloc(*buf, want);
                if (!nb)
                        return -ENOMEM;
                *buf = nb;
                *cap = want;
        }
        return (ssize_t)(*cap - len);
}

/* A direction's buffer, at its first read: small (most connections move little). The run
 * relays for at most max_connections connections, so these stay within their share of
 * the bound. */
static int alloc_buffer(Dir *d)
{
        if (!(d->buf = malloc(AJ_PROXY_BUFFER_MIN)))
                return -ENOMEM;
        d->cap = AJ_PROXY_BUFFER_MIN;
        d->off = d->len = 0;
        return 0;
}

void proxy_free_buffer(Conn *c, Dir *d)
{
        if (d->cap)
                c->p->buffer_excess -= d->cap - AJ_PROXY_BUFFER_MIN;
        free(d->buf);
        d->buf = NULL;
        d->cap = d->off = d->len = 0;
}

/* A read filled the buffer: a bulk transfer. It grows a step (64 KiB -> 256 KiB -> 1 MiB)
 * if the run's buffers stay within their bound; if not, or without memory, it stays as it
 * is. 256 KiB is a direction's share of the bound, so that step fits whenever no other
 * connection borrowed the room; the step to 1 MiB borrows, and only where it still leaves
 * every open connection's directions room for their own 256 KiB (counted generously: its
 * own too). */
static void grow_buffer(Conn *c, Dir *d)
{
        AjProxy *p = c->p;
        if (d->cap >= AJ_PROXY_BUFFER_MAX)
                return;
        size_t want = d->cap < AJ_PROXY_BUFFER_SIZE ? AJ_PROXY_BUFFER_SIZE : AJ_PROXY_BUFFER_MAX;
        size_t reserve = want > AJ_PROXY_BUFFER_SIZE
                                 ? (size_t)p->active * 2 * (AJ_PROXY_BUFFER_SIZE - AJ_PROXY_BUFFER_MIN)
                                 : 0;
        if (!aj_proxy_buffer_may_grow(p->buffer_excess + reserve, d->cap, want, p->opts.max_connections))
                return;
        char *nb = realloc(d->buf, want);
        if (!nb)
                return;
        d->buf = nb;
        p->buffer_excess += want - d->cap;
        d->cap = want;
}

/* How many of `want` bytes may be sent now: all of them unless the egress cap is nearer
 * (hooks->egress_left), so a connection's bytes stop at the cap instead of a buffer past
 * it. With nothing left, the bytes are charged unsent: the meter reports the breach and
 * the connection closes (-EDQUOT). */
static ssize_t egress_allow(Conn *c, size_t want)
{
        const AjHooks *h = c->p->hooks;
        if (!h || !h->egress_left || !h->charge_egress || want == 0)
                return (ssize_t)want;
        uint64_t left = h->egress_left(h->userdata);
        if (left > 0)
                return (ssize_t)(left < want ? left : want);
        (void)h->charge_egress(h->userdata, want, describe, c);
        c->error = "egress cap reached";
        return -EDQUOT; /* fails closed even if the meter disagrees */
}

/* Whether d's source was found empty with no edge since (Dir.quiet): a read would find
 * nothing, and its buffer is freed as when a read says so (drained and idle). */
static bool source_quiet(Conn *c, Dir *d)
{
        if (!d->quiet)
                return false;
        proxy_free_buffer(c, d);
        return true;
}

/* Sends data[*off .. *off + *left) to dst; `counts`: within the egress cap and accounted
 * to d as it goes. 1 when it is all sent, 0 when dst would block, < 0 when the connection
 * must close. */
static int send_span(Conn *c, Dir *d, int dst, const char *data, size_t *off, size_t *left, bool counts, size_t *moved)
{
        while (*left > 0) {
                ssize_t allow = (ssize_t)*left;
                if (counts && (allow = egress_allow(c, *left)) < 0)
                        return (int)allow;
                ssize_t n = send(dst, data + *off, (size_t)allow, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return negative_errno();
                        d->blocked = true;
                        return dst == c->cfd ? proxy_watch_client_room(c) : 0;
                }
                *off += (size_t)n;
                *left -= (size_t)n;
                *moved += (size_t)n;
                int r;
                if (counts && (r = account(c, d, (size_t)n)) < 0)
                        return r;
        }
        d->blocked = false;
        return 1;
}

/* Sends what d's buffer holds (within the egress cap): as send_span(). */
static int send_buffer(Conn *c, Dir *d, int dst, size_t *moved)
{
        int r = send_span(c, d, dst, d->buf, &d->off, &d->len, true, moved);
        if (r == 1)
                d->off = 0;
        return r;
}

/* Moves data src -> buffer -> dst until one side would block or the budget is used: a
 * read only into an empty buffer, so what one direction holds is at most its buffer, and
 * at most PUMP_BUDGET per wake-up (a read asks for no more than what is left of it).
 * When the buffer is empty and the source has nothing, the buffer is freed (an idle
 * connection holds none; its growth goes back to the run). (A blocking read/write relay
 * measured faster than splice(2) through a pipe here, and this one costs no more CPU per
 * byte: docs/performance.md.) Returns < 0 when the connection must close. */
static int pump(Conn *c, Dir *d, int src, int dst)
{
        size_t moved = 0;
        int r;

        if ((r = send_prefix(c, d, dst)) <= 0)
                return r;
        if (d->done)
                return 0;
        for (;;) {
                if ((r = send_buffer(c, d, dst, &moved)) <= 0)
                        return r;
                if (d->src_eof) {
                        /* Half-close: pass the EOF on, keep the other direction going. */
                        shutdown(dst, SHUT_WR);
                        d->done = true;
                        proxy_free_buffer(c, d);
                        return 0;
                }
                if (moved >= PUMP_BUDGET) {
                        mark_pending(c);
                        return 0;
                }
                if (source_quiet(c, d))
                        return 0;
                if (!d->buf && (r = alloc_buffer(d)) < 0)
                        return r;
                size_t want = d->cap < PUMP_BUDGET - moved ? d->cap : PUMP_BUDGET - moved;
                if (d->limited && d->limit < want)
                        want = (size_t)d->limit;
                ssize_t n = recv(src, d->buf, want, MSG_DONTWAIT);
                if (n == 0) {
                        d->src_eof = true;
                        continue;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return negative_errno();
                        d->quiet = true;
                        proxy_free_buffer(c, d); /* drained and idle */
                        return 0;
                }
                d->len = (size_t)n;
                if ((size_t)n == d->cap)
                        grow_buffer(c, d);
                if (d->limited && (d->limit -= (size_t)n) == 0)
                        d->src_eof = true; /* all that was framed: the rest is not relayed */
        }
}

/* Sends what is queued in d->prefix (client bytes within the egress cap): 1 when it is all
 * sent, 0 when dst would block. */
static int send_prefix(Conn *c, Dir *d, int dst)
{
        AjOutBuf *b = &d->prefix;
        size_t left = b->len - b->off, moved = 0;
        int r = send_span(c, d, dst, b->data, &b->off, &left, d->prefix_counts, &moved);
        if (b->off == b->len)
                b->off = b->len = 0;
        return r;
}

/* Plain HTTP, client -> upstream: the one request's body, exactly as far as its framing
 * says, through the direction's buffer like pump() (PUMP_BUDGET per wake-up, freed when
 * idle); then what the client still sends is read and dropped (bounded), so its EOF is
 * seen and passed on. */
static int pump_request(Conn *c)
{
        Dir *d = &c->up;
        size_t moved = 0, sent = 0; /* moved: read, whether relayed or dropped */
        int r;
        if ((r = send_prefix(c, d, c->ufd)) <= 0)
                return r;
        for (;;) {
                if ((r = send_buffer(c, d, c->ufd, &sent)) <= 0)
                        return r;
                if (d->done || c->up_stopped) {
                        proxy_free_buffer(c, d);
                        return 0;
                }
                if (moved >= PUMP_BUDGET) {
                        mark_pending(c);
                        return 0;
                }
                if (source_quiet(c, d))
                        return 0;
                if (!d->buf && (r = alloc_buffer(d)) < 0)
                        return r;
                size_t want = d->cap < PUMP_BUDGET - moved ? d->cap : PUMP_BUDGET - moved;
                if (!c->req_done && c->body == AJ_HTTP_BODY_LENGTH && c->body_left < want)
                        want = (size_t)c->body_left;
                ssize_t n = recv(c->cfd, d->buf, want, 0);
                if (n == 0) {
                        shutdown(c->ufd, SHUT_WR);
                        d->done = true;
                        proxy_free_buffer(c, d);
                        return 0;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return negative_errno();
                        d->quiet = true;
                        proxy_free_buffer(c, d); /* drained and idle */
                        return 0;
                }
                moved += (size_t)n;
                if (c->req_done) {
                        proxy_note_pipelined(c, d->buf, (size_t)n);
                        c->lingered += (size_t)n;
                        /* Past the bound, stop reading: the answer still gets through. */
                        if (c->lingered > LINGER_MAX_BYTES)
                                c->up_stopped = true;
                        continue;
                }
                size_t take = (size_t)n;
                if (c->body == AJ_HTTP_BODY_CHUNKED) {
                        ssize_t t = aj_http_chunked_scan(&c->chunk, d->buf, (size_t)n, &c->req_done);
                        if (t < 0) {
                                c->error = "malformed chunked body";
                                return -EBADMSG;
                        }
                        take = (size_t)t;
                } else {
                        c->body_left -= (size_t)n;
                        c->req_done = c->body_left == 0;
                }
                if (c->req_done && (size_t)n > take)
                        proxy_note_pipelined(c, d->buf + take, (size_t)n - take);
                d->off = 0;
                d->len = take;
                if ((size_t)n == d->cap)
                        grow_buffer(c, d);
        }
}

#define RESPONSE_HEAD_MAX (64 * 1024)

/* Plain HTTP, a chunked response body: scanned in user space to find its end, through the
 * direction's buffer like pump(). */
static int pump_response_chunked(Conn *c)
{
        Dir *d = &c->down;
        size_t moved = 0, sent = 0; /* moved: read from the upstream */
        int r;
        for (;;) {
                if ((r = send_prefix(c, d, c->cfd)) <= 0)
                        return r;
                if ((r = send_buffer(c, d, c->cfd, &sent)) <= 0)
                        return r;
                if (d->done)
                        return 0;
                if (d->src_eof) {
                        shutdown(c->cfd, SHUT_WR);
                        d->done = true;
                        proxy_free_buffer(c, d);
                        return 0;
                }
                if (moved >= PUMP_BUDGET) {
                        mark_pending(c);
                        return 0;
                }
                if (source_quiet(c, d))
                        return 0;
                if (!d->buf && (r = alloc_buffer(d)) < 0)
                        return r;
                size_t want = d->cap < PUMP_BUDGET - moved ? d->cap : PUMP_BUDGET - moved;
                ssize_t n = recv(c->ufd, d->buf, want, 0);
                if (n == 0) {
                        d->src_eof = true;
                        continue;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return negative_errno();
                        d->quiet = true;
                        proxy_free_buffer(c, d); /* drained and idle */
                        return 0;
                }
                moved += (size_t)n;
                bool done = false;
                ssize_t t = aj_http_chunked_scan(&c->resp_chunk, d->buf, (size_t)n, &done);
                if (t < 0) {
                        c->error = "bad response from upstream";
                        return -EBADMSG;
                }
                d->off = 0;
                d->len = (size_t)t;
                if ((size_t)n == d->cap)
                        grow_buffer(c, d);
                if (done)
                        d->src_eof = true; /* the answer is complete: nothing more is read */
        }
}

/* Interim (1xx) heads one request may get: a real server sends one or two (100 Continue,
 * 103 Early Hints); an endless stream of them kept the supervisor parsing heads. */
#define INTERIM_MAX 16

/* A response head has arrived: queue it rewritten, with what came of the body, and note how
 * the body ends (a final head) or that another head follows (interim 1xx). */
static int take_response_head(Conn *c, AjHttpResponse *resp)
{
        Dir *d = &c->down;
        size_t rest = c->resp_len - resp->consumed;
        const char *more = c->resp + resp->consumed;
        size_t take = 0;
        if (resp->final) {
                c->resp_done = true;
                c->resp_body = resp->body;
                switch (resp->body) {
                case AJ_HTTP_BODY_NONE:
                        d->src_eof = true;
                        break;
                case AJ_HTTP_BODY_LENGTH:
                        take = rest < resp->content_length ? rest : (size_t)resp->content_length;
                        d->limited = true;
                        d->limit = resp->content_length - take;
                        d->src_eof = d->limit == 0;
                        break;
                case AJ_HTTP_BODY_CHUNKED: {
                        bool done = false;
                        ssize_t t = aj_http_chunked_scan(&c->resp_chunk, more, rest, &done);
                        if (t < 0) {
                                free(resp->head);
                                c->error = "bad response from upstream";
                                return -EBADMSG;
                        }
                        take = (size_t)t;
                        d->src_eof = done;
                        break;
                }
                default:
                        take = rest;
                }
        }
        /* Before the head is queued: once it is, the queue owns it (freeing it here too was a
         * double free). */
        if (!resp->final && ++c->interim > INTERIM_MAX) {
                free(resp->head);
                c->error = "bad response from upstream: too many interim (1xx) responses";
                return -EBADMSG;
        }
        char *nh = realloc(resp->head, resp->head_len + take);
        if (!nh) {
                free(resp->head);
                return -ENOMEM;
        }
        memcpy(nh + resp->head_len, more, take);
        aj_outbuf_take(&d->prefix, nh, resp->head_len + take);
        d->prefix_counts = true;
        if (resp->final) {
                free(c->resp);
                c->resp = NULL;
                c->resp_len = c->resp_cap = 0;
        } else {
                memmove(c->resp, more, rest);
                c->resp_len = rest;
        }
        return 0;
}

/* Plain HTTP, upstream -> client: the response head is rewritten (Connection: close) and
 * the body relayed as far as its framing says (spliced, or scanned when chunked); then
 * the client sees EOF, whether or not the upstream closes. */
static int pump_response(Conn *c)
{
        Dir *d = &c->down;
        for (;;) {
                int r = send_prefix(c, d, c->cfd);
                if (r <= 0)
                        return r;
                if (c->resp_done)
                        return c->resp_body == AJ_HTTP_BODY_CHUNKED ? pump_response_chunked(c)
                                                                    : pump(c, d, c->ufd, c->cfd);
                AjHttpResponse resp;
                r = c->resp ? aj_http_rewrite_response(c->resp, c->resp_len, c->head_request, &resp) : -EAGAIN;
                if (r == 0) {
                        r = take_response_head(c, &resp);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (r != -EAGAIN || c->resp_len >= RESPONSE_HEAD_MAX) {
                        c->error = "bad response from upstream";
                        return r == -ENOMEM ? r : -EBADMSG;
                }
                ssize_t room = proxy_head_room(&c->resp, &c->resp_cap, c->resp_len, RESPONSE_HEAD_MAX);
                if (room < 0)
                        return (int)room;
                ssize_t n = recv(c->ufd, c->resp + c->resp_len, (size_t)room, 0);
                if (n == 0) {
                        c->error = "upstream closed without a complete answer";
                        return -EBADMSG;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : negative_errno();
                }
                c->resp_len += (size_t)n;
        }
}

/* Runs the directions asked for (both: a first round, a round after the budget). */
static void relay(Conn *c, bool up, bool down)
{
        bool plain = !c->socks && !c->is_connect;
        int r = 0;
        if (up)
                r = plain ? pump_request(c) : pump(c, &c->up, c->cfd, c->ufd);
        if (r >= 0 && down)
                r = plain ? pump_response(c) : pump(c, &c->down, c->ufd, c->cfd);
        if (r >= 0 && plain && c->down.done) {
                /* The answer is complete and the client was told "Connection: close": nothing
                 * more is relayed. Drain what the client still sends until it closes, so the
                 * answer is not cut by a reset. */
                if (c->resp_done && c->down.len == 0) {
                        proxy_close_upstream(c);
                        c->state = ST_LINGER;
                        c->up.unwatched = c->down.unwatched = false;
                        if (proxy_watch(c) < 0) {
                                proxy_conn_close(c);
                                return;
                        }
                        proxy_set_deadline_ms(c, LINGER_MS);
                        proxy_linger(c);
                        return;
                }
        }
        if (r >= 0) {
                /* A direction left waiting for room stops watching its source until then; one
                 * that used its budget runs again next dispatch either way (pending), so its
                 * watch stays as it is until a round ends otherwise. Not one whose source was
                 * found empty (quiet): only its next edge runs it, and unwatched none comes
                 * (the connection pending for the other direction's budget, streak after
                 * streak, held what it sent meanwhile for as long). */
                Dir *dirs[] = { &c->up, &c->down };
                for (size_t i = 0; i < 2; i++)
                        if (!c->pending || dirs[i]->blocked || dirs[i]->quiet)
                                dirs[i]->unwatched = dirs[i]->blocked && !dirs[i]->done;
                r = proxy_watch(c);
        }
        if (r < 0) {
                if (!c->error)
                        c->error = r == -ECONNRESET ? "connection reset" : r == -EPIPE ? "broken pipe" : "relay error";
                proxy_conn_close(c);
                return;
        }
        if (c->up.done && c->down.done)
                proxy_conn_close(c);
}

void proxy_relay(Conn *c) { relay(c, true, true); }

/* A direction runs when its source has something (data, its end, an error) or its
 * destination, which it found full, has room again; an error or hang-up on either socket
 * runs both. Every direction reads until its source is empty and sends until its
 * destination is full (or the budget is used: another round follows, both directions), so
 * with edge-triggered sockets a direction not concerned by this edge has nothing to do:
 * running it anyway cost a recv() that found nothing, each wake-up. */
void proxy_relay_events(Conn *c, bool client, uint32_t events)
{
        const Dir *into = client ? &c->down : &c->up; /* the direction this socket receives */
        bool from = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        bool room = (events & (EPOLLHUP | EPOLLERR)) || ((events & EPOLLOUT) && into->blocked);
        relay(c, client ? from : room, client ? room : from);
}

void proxy_start_relay(Conn *c)
{
        int one = 1;
        setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c->socks) {
                struct sockaddr_storage local = {};
                socklen_t sl = sizeof(local);
                uint8_t *rep = malloc(22);
                if (!rep) {
                        proxy_conn_close(c);
                        return;
                }
                getsockname(c->ufd, (struct sockaddr *)&local, &sl);
                rep[0] = 5;
                rep[1] = 0;
                rep[2] = 0;
                if (local.ss_family == AF_INET6) {
                        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&local;
                        rep[3] = 4;
                        memcpy(rep + 4, &a->sin6_addr, 16);
                        memcpy(rep + 20, &a->sin6_port, 2);
                        aj_outbuf_take(&c->down.prefix, (char *)rep, 22);
                } else {
                        struct sockaddr_in *a = (struct sockaddr_in *)&local;
                        rep[3] = 1;
                        memcpy(rep + 4, &a->sin_addr, 4);
                        memcpy(rep + 8, &a->sin_port, 2);
                        aj_outbuf_take(&c->down.prefix, (char *)rep, 10);
                }
        } else if (c->is_connect) {
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                char *copy = strdup(ok);
                if (!copy) {
                        proxy_conn_close(c);
                        return;
                }
                aj_outbuf_take(&c->down.prefix, copy, sizeof(ok) - 1);
        }
        /* What the client sent after its request (pipelined body, TLS hello) goes first. */
        aj_outbuf_take(&c->up.prefix, c->fwd, c->fwd_len);
        c->up.prefix_counts = true;
        c->fwd = NULL;
        c->fwd_len = 0;
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
        c->state = ST_RELAY;
        aj_loop_timer_stop(&c->deadline);
        proxy_relay(c);
}
