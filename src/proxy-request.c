/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy, from a connection's first byte to a connected upstream (see proxy-internal.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy-internal.h"

static void deny_with(Conn *c, const AjNetVerdict *v, const struct sockaddr *addr, int http_status)
{
        c->denied = true;
        c->p->denied++;
        json_t *f = proxy_conn_json(c);
        if (f) {
                json_object_set_new(f, "reason", json_string(v->reason));
                if (v->rule >= 0)
                        json_object_set_new(f, "rule", json_string(c->p->policy->rules[v->rule].text));
                if (addr) {
                        char a[INET6_ADDRSTRLEN];
                        json_object_set_new(f, "address", json_string(aj_net_format_address(addr, a, sizeof(a))));
                }
        }
        proxy_emit(c->p, "net.denied", f);
        char reason[400];
        snprintf(reason, sizeof(reason), "denied: %s", v->reason);
        proxy_refuse(c, http_status, 0x02, reason);
}

void proxy_deny(Conn *c, const AjNetVerdict *v, const struct sockaddr *addr) { deny_with(c, v, addr, 403); }

/* Bytes after the one request a plain HTTP connection carries: never relayed. The first
 * time, say so (naming the next request's host when its head is there). */
void proxy_note_pipelined(Conn *c, const char *data, size_t len)
{
        if (c->pipelined_seen || len == 0)
                return;
        c->pipelined_seen = true;
        c->p->denied++;
        AjHttpRequest next;
        int status;
        const char *why;
        bool parsed = aj_http_parse_request(data, len, &next, &status, &why) == 0;
        json_t *f = json_pack("{s:I, s:s, s:s, s:i, s:s}", "id", (json_int_t)c->id, "proto", "http", "host",
                              parsed ? next.host : "", "port", parsed ? (int)next.port : 0, "reason",
                              "a second request on a plain HTTP connection is not relayed (one request per "
                              "connection)");
        if (parsed)
                aj_http_request_done(&next);
        proxy_emit(c->p, "net.denied", f);
}

/* A request refused before any rule could be applied to it (no valid destination). */
static void deny_unjudged(Conn *c, const char *why)
{
        AjNetVerdict v = { .rule = -1 };
        snprintf(v.reason, sizeof(v.reason), "invalid destination: %s", why);
        proxy_deny(c, &v, NULL);
}

static void connect_next(Conn *c);

static void on_upstream(Conn *c, uint32_t events)
{
        if (events & EDGE_FROM)
                c->down.quiet = false;
        if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof(err);
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                /* Writable without an error or hang-up: the connection is established (a
                 * failed one reports EPOLLERR and EPOLLHUP), so only then is its error read. */
                if ((events & (EPOLLERR | EPOLLHUP)) && getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        proxy_connect_failed(c, -err);
                        return;
                }
                proxy_start_relay(c);
                return;
        }
        if (c->state == ST_RELAY)
                proxy_relay_events(c, false, events);
}

static void on_upstream_io(AjLoopIo *io, int fd, uint32_t events, void *userdata)
{
        (void)io;
        (void)fd;
        on_upstream(userdata, events);
}

void proxy_connect_failed(Conn *c, int err)
{
        if (c->ufd >= 0)
                proxy_close_upstream(c);
        if (c->next_cand < c->n_cand) {
                connect_next(c);
                return;
        }
        char reason[400];
        char a[INET6_ADDRSTRLEN];
        aj_net_format_address((struct sockaddr *)&c->addr, a, sizeof(a));
        snprintf(reason, sizeof(reason), "cannot connect to %s port %u (%s): %s", c->host, c->port, a, strerror(-err));
        c->error = err == -ECONNREFUSED ? "connection refused"
                   : err == -ETIMEDOUT  ? "connect timeout"
                                        : "connect failed";
        c->connected = false;
        uint8_t rep = err == -ECONNREFUSED ? 0x05 : err == -ENETUNREACH ? 0x03 : err == -ETIMEDOUT ? 0x04 : 0x04;
        proxy_refuse(c, err == -ETIMEDOUT ? 504 : 502, rep, reason);
}

static void connect_next(Conn *c)
{
        AjProxy *p = c->p;
        while (c->next_cand < c->n_cand) {
                struct sockaddr_storage *ss = &c->cand[c->next_cand++];
                socklen_t sl = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
                if (ss->ss_family == AF_INET6)
                        ((struct sockaddr_in6 *)ss)->sin6_port = htons(c->port);
                else
                        ((struct sockaddr_in *)ss)->sin_port = htons(c->port);
                c->addr = *ss;
                c->connected = true; /* address known (reported even if the connect fails) */
                int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        proxy_connect_failed(c, negative_errno());
                        return;
                }
                /* Before connect(): the window scale is chosen from the buffer at SYN time. */
                int r = proxy_socket_options(fd);
                if (r < 0) {
                        close(fd);
                        proxy_connect_failed(c, r);
                        return;
                }
                if (connect(fd, (struct sockaddr *)ss, sl) < 0 && errno != EINPROGRESS) {
                        int err = negative_errno();
                        close(fd);
                        if (c->next_cand < c->n_cand)
                                continue;
                        proxy_connect_failed(c, err);
                        return;
                }
                c->ufd = fd;
                r = aj_loop_add_io(p->loop, fd, UPSTREAM_EVENTS, on_upstream_io, c, &c->uio);
                if (r < 0) {
                        proxy_connect_failed(c, r);
                        return;
                }
                c->state = ST_CONNECTING;
                return;
        }
        proxy_connect_failed(c, -EHOSTUNREACH);
}

static void on_resolved(void *userdata, int error, const struct sockaddr_storage *addrs, size_t n)
{
        Conn *c = userdata;
        AjNetVerdict first_denial = { .rule = -1 };
        struct sockaddr_storage denied_addr = {};
        bool have_denial = false;

        c->resolving = false;
        c->n_cand = c->next_cand = 0;
        for (size_t i = 0; i < n; i++) {
                const struct sockaddr *sa = (const struct sockaddr *)&addrs[i];
                /* Internal addresses are refused whoever owns them; the others are asked of
                 * the host: its interfaces, and where its routes deliver locally. */
                int own = aj_net_address_is_internal(sa) ? 0 : aj_host_addrs_is_local(c->p->host_addrs, sa);
                AjNetVerdict v = { .rule = -1 };
                if (own < 0) {
                        /* Fail closed: an address not known to be elsewhere may be this host's.
                         * Not a candidate; the name's other addresses still may be. */
                        char a[INET6_ADDRSTRLEN];
                        snprintf(v.reason, sizeof(v.reason),
                                 "cannot tell whether %s (%s) is an address of this host: %s",
                                 aj_net_format_address(sa, a, sizeof(a)), c->host, strerror(-own));
                } else
                        aj_net_check_resolved(c->p->policy, own > 0, c->host, sa, c->port, &v);
                if (v.allowed)
                        c->cand[c->n_cand++] = addrs[i];
                else if (!have_denial) {
                        first_denial = v;
                        denied_addr = addrs[i];
                        have_denial = true;
                }
        }
        if (c->n_cand > 0) {
                connect_next(c);
                return;
        }
        if (have_denial) {
                proxy_deny(c, &first_denial, (struct sockaddr *)&denied_addr);
                return;
        }
        char reason[400];
        snprintf(reason, sizeof(reason), "cannot resolve %s: %s", c->host,
                 error == -ETIMEDOUT ? "timed out"
                 : error == -ENOENT  ? "no such host"
                                     : "resolver failure");
        c->error = "resolve failed";
        proxy_refuse(c, error == -ETIMEDOUT ? 504 : 502, 0x04, reason);
}

/* The request is complete: check it, then resolve or connect. */
/* A connection refused before it starts, for the run's sake (503, SOCKS "general failure"),
 * recorded as net.denied with why. */
static void refuse_unavailable(Conn *c, const char *error, const char *reason)
{
        c->error = error;
        json_t *f = proxy_conn_json(c);
        if (f)
                json_object_set_new(f, "reason", json_string(reason));
        proxy_emit(c->p, "net.denied", f);
        proxy_refuse(c, 503, 0x01, reason);
}

static void evaluate(Conn *c)
{
        AjProxy *p = c->p;
        AjNetVerdict v;

        if (c->overflow) {
                char reason[128];
                snprintf(reason, sizeof(reason), "too many connections (at most %u per run)", p->opts.max_connections);
                refuse_unavailable(c, "connection limit", reason);
                return;
        }
        c->evaluated = true;
        p->total++;
        aj_net_check_host(p->policy, c->host, c->port, &v);
        if (v.rule >= 0)
                snprintf(c->rule, sizeof(c->rule), "%s", p->policy->rules[v.rule].text);
        if (!v.allowed && !v.reserved && proxy_granted(p, c->host, c->port, &v)) {
                /* Approved with --always: as if approved again (addresses judged likewise). */
                c->approved = true;
                snprintf(c->rule, sizeof(c->rule), "%s", p->granted->rules[v.rule].text);
        }
        if (!v.allowed) {
                if (!proxy_ask(c, &v))
                        proxy_deny(c, &v, NULL);
                return;
        }
        proxy_proceed(c);
}

void proxy_proceed(Conn *c)
{
        AjProxy *p = c->p;
        /* Its record at the end (net.connect, its bytes) would find no room in the agent's
         * share: it does not start, and its refusal, the agent's event, is the breach. */
        if (p->hooks && p->hooks->log_full && p->hooks->log_full(p->hooks->userdata)) {
                c->denied = true;
                p->denied++;
                refuse_unavailable(c, "event log full", "the run's event log is full (logs.events_bytes)");
                return;
        }
        c->admitted = true;
        struct sockaddr_storage ss;
        bool literal = aj_net_literal_address(c->host, 0, &ss);
        proxy_set_deadline_ms(c, p->opts.connect_timeout_ms);
        if (literal && c->approved) {
                /* An operator let this address through, not an address rule: judged as a
                 * name's resolved address (internal ones and this host's own refused). */
                on_resolved(c, 0, &ss, 1);
                return;
        }
        if (literal) {
                /* The address rule already decided. */
                c->cand[0] = ss;
                c->n_cand = 1;
                c->next_cand = 0;
                connect_next(c);
                return;
        }
        /* Resolve (and report) the canonical name the allowlist matched, not the client's spelling. */
        char norm[AJ_NET_HOST_MAX + 1];
        const char *why;
        if (aj_net_host_normalize(c->host, strlen(c->host), norm, &why) >= 0)
                memcpy(c->host, norm, strlen(norm) + 1);
        int r = aj_resolver_resolve(p->resolver, c->host, on_resolved, c, &c->resolve_id);
        if (r < 0) {
                c->error = "resolver busy";
                proxy_refuse(c, 503, 0x01, "too many name lookups in progress");
                return;
        }
        c->resolving = true;
        c->state = ST_RESOLVING;
}

/* A plain HTTP or CONNECT request head in c->in: judged once it is complete. */
static void read_http_request(Conn *c, bool eof)
{
        AjHttpRequest req;
        int status;
        const char *why;
        int r = aj_http_parse_request(c->in, c->in_len, &req, &status, &why);
        if (r == -EAGAIN) {
                if (eof)
                        proxy_conn_close(c);
                return;
        }
        if (r == -EPERM) {
                snprintf(c->host, sizeof(c->host), "%s", req.host);
                c->port = req.port;
                AjNetVerdict v = { .rule = -1 };
                snprintf(v.reason, sizeof(v.reason), "%s", why);
                deny_with(c, &v, NULL, status);
                return;
        }
        if (r < 0) {
                proxy_refuse(c, status, 0, why);
                return;
        }
        snprintf(c->host, sizeof(c->host), "%s", req.host);
        c->port = req.port;
        c->is_connect = req.is_connect;
        size_t extra = c->in_len - req.head_len;
        size_t base = req.is_connect ? 0 : req.forward_len;
        if (!req.is_connect) {
                /* What arrived with the head: its body (up to where it ends), then maybe
                 * another request, which is not relayed. */
                const char *more = c->in + req.head_len;
                size_t take = 0;
                c->body = req.body;
                c->head_request = streq(req.method, "HEAD");
                c->body_left = req.content_length;
                if (req.body == AJ_HTTP_BODY_LENGTH) {
                        take = extra < c->body_left ? extra : (size_t)c->body_left;
                        c->body_left -= take;
                        c->req_done = c->body_left == 0;
                } else if (req.body == AJ_HTTP_BODY_CHUNKED) {
                        ssize_t t = aj_http_chunked_scan(&c->chunk, more, extra, &c->req_done);
                        if (t < 0) {
                                aj_http_request_done(&req);
                                proxy_refuse(c, 400, 0, "malformed chunked body");
                                return;
                        }
                        take = (size_t)t;
                } else
                        c->req_done = true;
                if (c->req_done && extra > take)
                        proxy_note_pipelined(c, more + take, extra - take);
                extra = take;
        }
        if (base + extra > 0) {
                c->fwd = malloc(base + extra);
                if (!c->fwd) {
                        aj_http_request_done(&req);
                        proxy_conn_close(c);
                        return;
                }
                if (base)
                        memcpy(c->fwd, req.forward_head, base);
                memcpy(c->fwd + base, c->in + req.head_len, extra);
                c->fwd_len = base + extra;
        }
        aj_http_request_done(&req);
        evaluate(c);
}

/* The SOCKS5 greeting, then the request, in c->in. */
static void read_socks_request(Conn *c, bool eof)
{
        if (c->state == ST_SOCKS_GREETING) {
                int r = aj_socks_parse_greeting((uint8_t *)c->in, c->in_len);
                if (r == -EAGAIN) {
                        if (eof)
                                proxy_conn_close(c);
                        return;
                }
                if (r < 0) {
                        /* Bad version: just close; no acceptable method: say so (0xFF). */
                        if (r == -EPERM)
                                (void)!send(c->cfd, "\x05\xff", 2, MSG_NOSIGNAL);
                        proxy_conn_close(c);
                        return;
                }
                /* The method reply is two bytes into an empty socket buffer: it cannot block. */
                if (send(c->cfd, "\x05\x00", 2, MSG_NOSIGNAL) != 2) {
                        proxy_conn_close(c);
                        return;
                }
                memmove(c->in, c->in + r, c->in_len - (size_t)r);
                c->in_len -= (size_t)r;
                c->state = ST_SOCKS_REQUEST;
        }
        AjSocksRequest req;
        uint8_t rep;
        const char *why;
        int r = aj_socks_parse_request((uint8_t *)c->in, c->in_len, &req, &rep, &why);
        if (r == -EAGAIN) {
                if (eof)
                        proxy_conn_close(c);
                return;
        }
        if (r == -EPERM) {
                /* Not a name any rule could allow: a denial like the others, not a parse error. */
                deny_unjudged(c, why);
                return;
        }
        if (r < 0) {
                proxy_refuse(c, 400, rep, why);
                return;
        }
        snprintf(c->host, sizeof(c->host), "%s", req.host);
        c->port = req.port;
        if (c->in_len > req.consumed) {
                c->fwd_len = c->in_len - req.consumed;
                c->fwd = malloc(c->fwd_len);
                if (!c->fwd) {
                        proxy_conn_close(c);
                        return;
                }
                memcpy(c->fwd, c->in + req.consumed, c->fwd_len);
        }
        evaluate(c);
}

void proxy_read_request(Conn *c, uint32_t events)
{
        size_t cap = c->socks ? SOCKS_MAX : AJ_PROXY_MAX_HEADER;
        bool eof = false, drained = false;

        while (c->in_len < cap) {
                ssize_t room = proxy_head_room(&c->in, &c->in_cap, c->in_len, cap);
                if (room < 0) {
                        proxy_conn_close(c);
                        return;
                }
                size_t want = (size_t)room;
                ssize_t n = recv(c->cfd, c->in + c->in_len, want, 0);
                if (n == 0) {
                        eof = true;
                        break;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                drained = true;
                                break;
                        }
                        proxy_conn_close(c);
                        return;
                }
                /* A complete head: what follows it stays queued for the relay (a read here
                 * would find nothing, the usual case). A read shorter than asked emptied the
                 * queue: what comes later is an edge. But the end of the stream may wait
                 * behind the data it came with, told by no later edge; this edge said so. */
                size_t from = c->in_len > 3 ? c->in_len - 3 : 0;
                c->in_len += (size_t)n;
                if (!c->socks && memmem(c->in + from, c->in_len - from, "\r\n\r\n", 4)) {
                        drained = (size_t)n < want && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
                        break;
                }
        }
        /* So the relay's first round does not read the client again for nothing. */
        c->up.quiet = drained;

        if (c->socks)
                read_socks_request(c, eof);
        else
                read_http_request(c, eof);
}
