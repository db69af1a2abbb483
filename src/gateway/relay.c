/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's agent side: the gateway object, its providers, accepting connections and
 * reading each request whole (strictly, within limits) before it is routed, shown to the
 * observer and handed to the upstream side (relay-upstream.c). Responses: relay-response.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/relay-internal.h"
#include "util/clock.h"

#define DEFAULT_MAX_HEAD (64 * 1024)
#define DEFAULT_MAX_BODY (16 * 1024 * 1024)
#define DEFAULT_MAX_BUFFERED (64 * 1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_IDLE_MS 60000
#define DEFAULT_CONNECT_MS 20000
#define DEFAULT_RESPONSE_MS 600000
#define RESOLVE_TIMEOUT_MS 10000

/* ------------------------------------------------------------------ the gateway */

static void conn_free(GwConn *c);
static void on_listen(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

static void set_defaults(AjGatewayOptions *o)
{
        if (!o->max_head)
                o->max_head = DEFAULT_MAX_HEAD;
        if (!o->max_body)
                o->max_body = DEFAULT_MAX_BODY;
        if (!o->max_buffered)
                o->max_buffered = DEFAULT_MAX_BUFFERED;
        if (!o->max_connections)
                o->max_connections = DEFAULT_MAX_CONNECTIONS;
        if (!o->idle_timeout_ms)
                o->idle_timeout_ms = DEFAULT_IDLE_MS;
        if (!o->connect_timeout_ms)
                o->connect_timeout_ms = DEFAULT_CONNECT_MS;
        if (!o->response_timeout_ms)
                o->response_timeout_ms = DEFAULT_RESPONSE_MS;
}

static int gateway_setup(AjGateway *gw, const AjGatewayProvider *providers, size_t n, AjError *ret_error)
{
        gw->providers = calloc(n, sizeof(*gw->providers));
        if (!gw->providers)
                return -ENOMEM;
        bool need_resolver = false;
        for (size_t i = 0; i < n; i++) {
                gw->n_providers++;
                int r = gw_provider_init(&gw->providers[i], &providers[i], ret_error);
                if (r < 0)
                        return r;
                need_resolver |= !gw->providers[i].have_addr;
        }
        int r = aj_loop_new(&gw->loop);
        if (r < 0)
                return r;
        r = aj_loop_add_io(gw->loop, gw->listen_fd, EPOLLIN, on_listen, gw, &gw->listen_io);
        if (r < 0 || !need_resolver)
                return r;
        /* The resolver runs on the gateway's own loop (its sockets and retry timers). */
        return aj_resolver_new(gw->loop, RESOLVE_TIMEOUT_MS, AJ_RESOLVE_SEARCH, &gw->resolver);
}

int aj_gateway_new(int listen_fd, const AjGatewayProvider *providers, size_t n_providers,
                   const AjGatewayObserver *observer, const AjGatewayOptions *opts, AjGateway **ret, AjError *ret_error)
{
        AjGateway *gw = calloc(1, sizeof(*gw));
        if (!gw) {
                close(listen_fd);
                return -ENOMEM;
        }
        gw->listen_fd = listen_fd;
        if (observer)
                gw->obs = *observer;
        if (opts)
                gw->opts = *opts;
        set_defaults(&gw->opts);
        int r = n_providers ? gateway_setup(gw, providers, n_providers, ret_error) : -EINVAL;
        if (r < 0) {
                aj_gateway_free(gw);
                return r;
        }
        *ret = gw;
        return 0;
}

int aj_gateway_fd(AjGateway *gw) { return aj_loop_fd(gw->loop); }

int aj_gateway_dispatch(AjGateway *gw) { return aj_loop_dispatch(gw->loop, 0); }

unsigned aj_gateway_connections(const AjGateway *gw) { return gw->n_conns; }

void aj_gateway_free(AjGateway *gw)
{
        if (!gw)
                return;
        while (gw->conns)
                conn_free(gw->conns);
        aj_loop_io_remove(gw->listen_io);
        aj_resolver_free(gw->resolver);
        if (gw->listen_fd >= 0)
                close(gw->listen_fd);
        for (size_t i = 0; i < gw->n_providers; i++)
                gw_provider_done(&gw->providers[i]);
        free(gw->providers);
        aj_loop_free(gw->loop);
        free(gw);
}

/* ------------------------------------------------------------------ agent connections */

static void on_conn_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
static void on_conn_timer(AjLoopTimer *t, uint64_t now_ns, void *userdata);

static void refuse_busy(int fd)
{
        static const char body[] = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                                   "\"message\":\"agentjail gateway: too many connections\"}}";
        char msg[512];
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);
        (void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void on_listen(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        AjGateway *gw = userdata;
        for (int i = 0; i < 64; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0)
                        return;
                if (gw->n_conns >= gw->opts.max_connections) {
                        refuse_busy(cfd);
                        close(cfd);
                        continue;
                }
                GwConn *c = calloc(1, sizeof(*c));
                if (!c || aj_loop_add_io(gw->loop, cfd, EPOLLIN, on_conn_io, c, &c->io) < 0) {
                        free(c);
                        close(cfd);
                        continue;
                }
                /* Heads and SSE events are small writes that must leave at once. */
                int one = 1;
                (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c->gw = gw;
                c->fd = cfd;
                c->up.fd = -1;
                c->state = C_HEAD;
                aj_loop_timer_init(gw->loop, &c->timer, on_conn_timer, c);
                c->next = gw->conns;
                if (gw->conns)
                        gw->conns->prev = c;
                gw->conns = c;
                gw->n_conns++;
                gw_conn_arm_timer(c, gw->opts.idle_timeout_ms);
        }
}

void gw_conn_arm_timer(GwConn *c, uint64_t ms) { (void)aj_loop_timer_set_in(&c->timer, ms * 1000000ull); }

void gw_conn_request_reset(GwConn *c)
{
        AjGateway *gw = c->gw;
        gw->buffered -= c->body.len + c->upreq.len;
        gw_buf_free(&c->body, false);
        gw_buf_free(&c->upreq, true);
        free(c->head);
        free(c->method);
        free(c->path);
        c->head = c->method = c->path = NULL;
        c->rq = (AjGwRequestHead){ 0 };
        c->chunked = (AjGwChunked){ 0 };
        c->routed = c->head_sent = c->client_chunked = false;
        c->sink_error = 0;
        c->body_left = 0;
        free(c->scrub_held);
        c->scrub_held = NULL;
        c->scrub_len = 0;
}

static void conn_free(GwConn *c)
{
        AjGateway *gw = c->gw;
        gw_call_end(c, AJ_GATEWAY_FAILED);
        gw_upstream_close(c);
        gw_conn_request_reset(c);
        aj_loop_timer_stop(&c->timer);
        aj_loop_io_remove(c->io);
        close(c->fd);
        gw_buf_free(&c->in, false);
        gw_buf_free(&c->out, false);
        if (c->prev)
                c->prev->next = c->next;
        else
                gw->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        gw->n_conns--;
        free(c);
}

int gw_conn_update_events(GwConn *c)
{
        size_t pending = gw_buf_pending(&c->out);
        uint32_t ev = pending ? EPOLLOUT : 0;
        if (((c->state == C_HEAD || c->state == C_BODY) && pending < GW_OUT_HIGH) || c->lingering)
                ev |= EPOLLIN;
        else if (c->state == C_UPSTREAM)
                ev |= EPOLLRDHUP; /* the agent gave up: stop paying for the response */
        return aj_loop_io_set_events(c->io, ev);
}

/* The agent left during a call: from now on its output is dropped, and the relay reads on
 * what the provider already sent (gw_conn_settle() ends it). */
static void agent_left(GwConn *c)
{
        c->agent_gone = true;
        c->gone_read = 0;
        c->call.agent_left = true;
        gw_buf_consume(&c->out, gw_buf_pending(&c->out));
}

int gw_conn_flush(GwConn *c)
{
        if (c->agent_gone)
                gw_buf_consume(&c->out, gw_buf_pending(&c->out));
        while (gw_buf_pending(&c->out)) {
                ssize_t n = send(c->fd, c->out.data + c->out.off, gw_buf_pending(&c->out), MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        if (!c->in_call)
                                return -errno;
                        agent_left(c);
                        break;
                }
                gw_buf_consume(&c->out, (size_t)n);
        }
        return 0;
}

/* The call of an agent that left ends with what the provider had already sent, read
 * (bounded) and shown to the observer as if relayed, so that it is metered whole:
 * completed if that was the whole response, else cut short here. The connection closes. */
static int agent_gone_end(GwConn *c)
{
        if (c->in_call && c->state == C_UPSTREAM)
                (void)gw_upstream_resume(c);
        if (c->in_call) {
                gw_upstream_close(c);
                gw_call_end(c, AJ_GATEWAY_CUT_SHORT);
        }
        return -ECONNRESET;
}

/* What is left to do after an event (only from the loop's callbacks, never from inside
 * the relay's own calls): read requests the agent pipelined, close a connection that
 * said all it had to say, or close it on an error r. */
void gw_conn_settle(GwConn *c, int r)
{
        if (r >= 0 && c->agent_gone)
                r = agent_gone_end(c);
        if (r >= 0 && c->state == C_HEAD && gw_buf_pending(&c->in) && gw_buf_pending(&c->out) < GW_OUT_HIGH)
                r = gw_conn_process(c);
        if (r >= 0 && c->state == C_CLOSING && gw_buf_pending(&c->out) == 0 && !c->lingering) {
                c->lingering = true;
                if (shutdown(c->fd, SHUT_WR) < 0)
                        r = -errno;
                gw_conn_arm_timer(c, GW_LINGER_MS);
        }
        if (r >= 0)
                r = gw_conn_update_events(c);
        if (r < 0)
                conn_free(c);
}

static void on_conn_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        GwConn *c = userdata;
        /* The agent gave up: stop paying for the response (gw_conn_settle()). */
        if ((revents & (EPOLLERR | EPOLLRDHUP | EPOLLHUP)) && c->state == C_UPSTREAM && c->in_call)
                agent_left(c);
        int r = (revents & EPOLLERR) && !c->agent_gone ? -EIO : 0;
        if (r >= 0 && (revents & EPOLLOUT))
                r = gw_conn_flush(c);
        if (r >= 0 && c->state == C_UPSTREAM && c->up.paused && gw_buf_pending(&c->out) < GW_OUT_HIGH)
                r = gw_upstream_resume(c);
        if (r >= 0 && (revents & EPOLLIN) && (c->state == C_HEAD || c->state == C_BODY)) {
                char tmp[GW_READ_CHUNK];
                ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        r = -ECONNRESET;
                else if (n > 0 && (r = gw_buf_append(&c->in, tmp, (size_t)n, c->gw->opts.max_head + sizeof(tmp))) >= 0)
                        r = gw_conn_process(c);
        }
        if (r >= 0 && (revents & EPOLLIN) && c->lingering) {
                char tmp[GW_READ_CHUNK];
                ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
                    (c->drained += n > 0 ? (size_t)n : 0) > GW_LINGER_MAX)
                        r = -ECONNRESET;
        }
        if (r >= 0 && (revents & (EPOLLRDHUP | EPOLLHUP)) && c->state == C_UPSTREAM && !c->agent_gone)
                r = -ECONNRESET;
        gw_conn_settle(c, r);
}

static void on_conn_timer(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        GwConn *c = userdata;
        int r = 0;
        if (c->state == C_UPSTREAM)
                r = gw_conn_upstream_failed(c, 504, "agentjail gateway: the provider did not answer in time");
        else if (c->state == C_BODY || (c->state == C_HEAD && gw_buf_pending(&c->in)))
                r = gw_conn_refuse(c, -1, 408, "timeout_error", NULL, "agentjail gateway: request incomplete");
        else
                r = -ETIMEDOUT;
        gw_conn_settle(c, r);
}

/* ------------------------------------------------------------------ requests */

/* The provider whose prefix is the longest one matching the target at a segment boundary. */
static int route(const AjGateway *gw, const char *target, size_t len, size_t *ret_rest)
{
        int best = -1;
        size_t best_len = 0;
        for (size_t i = 0; i < gw->n_providers; i++) {
                const char *pre = gw->providers[i].pub.prefix;
                size_t pl = streq(pre, "/") ? 0 : strlen(pre);
                if (pl > len || memcmp(target, pre, pl) != 0)
                        continue;
                if (pl < len && target[pl] != '/' && target[pl] != '?')
                        continue;
                if (best < 0 || pl > best_len) {
                        best = (int)i;
                        best_len = pl;
                }
        }
        *ret_rest = best_len;
        return best;
}

static bool forwarded_header(const AjGwRequestHead *rq, const AjGwHeader *h)
{
        static const char *const dropped[] = {
                "host",
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "upgrade",
                "expect",
                "x-api-key",
                "authorization",
                "proxy-authorization",
                "api-key",
                "accept-encoding",
        };
        for (size_t i = 0; i < ARRAY_SIZE(dropped); i++)
                if (aj_gw_header_is(h, dropped[i]))
                        return false;
        for (size_t i = 0; i < rq->n_headers; i++) {
                const AjGwHeader *conn = &rq->headers[i];
                if (aj_gw_header_is(conn, "connection") && h->name_len < 64) {
                        char name[64];
                        memcpy(name, h->name, h->name_len);
                        name[h->name_len] = 0;
                        if (aj_gw_value_has_token(conn->value, conn->value_len, name))
                                return false;
                }
        }
        return true;
}

/* The request as the provider gets it: our Host, the real credential, the agent's other
 * end-to-end headers, identity encoding (the meter reads the body), a Content-Length. */
static int build_upstream_request(GwConn *c, const GwProvider *p, const char *body, size_t body_len)
{
        GwBuf *b = &c->upreq;
        const size_t max = SIZE_MAX;
        int r = gw_buf_printf(b, max, "%s %s HTTP/1.1\r\nHost: %s\r\n", c->method, c->path, p->host_header);
        for (size_t i = 0; r >= 0 && i < c->rq.n_headers; i++) {
                const AjGwHeader *h = &c->rq.headers[i];
                if (forwarded_header(&c->rq, h))
                        r = gw_buf_printf(b, max, "%.*s: %.*s\r\n", (int)h->name_len, h->name, (int)h->value_len,
                                          h->value);
        }
        if (r >= 0)
                r = p->pub.api == AJ_GATEWAY_API_ANTHROPIC
                            ? gw_buf_printf(b, max, "x-api-key: %s\r\n", p->pub.credential)
                            : gw_buf_printf(b, max, "Authorization: Bearer %s\r\n", p->pub.credential);
        if (r >= 0)
                r = gw_buf_printf(b, max, "Accept-Encoding: identity\r\n");
        if (r >= 0 && (body_len || c->rq.body != AJ_GW_BODY_NONE || !streq(c->method, "GET")))
                r = gw_buf_printf(b, max, "Content-Length: %zu\r\n", body_len);
        if (r >= 0)
                r = gw_buf_append(b, "\r\n", 2, max);
        if (r >= 0)
                r = gw_buf_append(b, body, body_len, max);
        return r;
}

static int request_ready(GwConn *c)
{
        AjGateway *gw = c->gw;
        GwProvider *p = &gw->providers[c->provider];
        c->state = C_UPSTREAM;
        c->call = (AjGatewayCall){ .id = ++gw->next_call_id,
                                   .provider = &p->pub,
                                   .method = c->method,
                                   .path = c->path,
                                   .started_ns = aj_now_monotonic_ns() };
        c->in_call = true;
        AjGatewayVerdict v = { 0 };
        if (gw->obs.on_request) {
                AjGatewayRequest req = { c->rq.headers, c->rq.n_headers, c->body.data ? c->body.data : "",
                                         c->body.len };
                gw->obs.on_request(gw->obs.userdata, &c->call, &req, &v);
        }
        if (v.status) {
                free(v.body);
                free(v.response);
                v.message[sizeof(v.message) - 1] = 0;
                gw_call_end(c, AJ_GATEWAY_REFUSED);
                return gw_conn_error(c, (int)p->pub.api, v.status, v.error_type ? v.error_type : "rate_limit_error",
                                     v.error_code, v.message[0] ? v.message : "refused by agentjail", c->rq.keep_alive);
        }
        if (v.response) {
                free(v.body);
                gw->buffered -= c->body.len;
                gw_buf_free(&c->body, false);
                return gw_upstream_serve(c, v.response, v.response_len);
        }
        int r = v.body ? build_upstream_request(c, p, v.body, v.body_len)
                       : build_upstream_request(c, p, c->body.data ? c->body.data : "", c->body.len);
        free(v.body);
        gw->buffered -= c->body.len;
        gw_buf_free(&c->body, false);
        gw->buffered += c->upreq.len;
        if (r < 0)
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: out of memory");
        gw_conn_arm_timer(c, gw->opts.connect_timeout_ms);
        return gw_upstream_start(c);
}

static int request_begin(GwConn *c)
{
        AjGateway *gw = c->gw;
        int status;
        const char *why;
        c->head = malloc(c->rq.head_len);
        if (!c->head)
                return -ENOMEM;
        memcpy(c->head, c->in.data + c->in.off, c->rq.head_len);
        gw_buf_consume(&c->in, c->rq.head_len);
        /* Parsed again in the copy, so that its pointers outlive the input buffer. */
        if (aj_gw_parse_request_head(c->head, c->rq.head_len, c->rq.head_len, &c->rq, &status, &why) < 0)
                return -EBADMSG;
        c->method = strndup(c->rq.method, c->rq.method_len);
        if (!c->method)
                return -ENOMEM;
        size_t rest;
        int i = route(gw, c->rq.target, c->rq.target_len, &rest);
        if (i < 0) {
                _cleanup_free_ char *target = strndup(c->rq.target, c->rq.target_len);
                if (!target)
                        return -ENOMEM;
                return gw_conn_refuse(c, -1, 404, "not_found_error", target,
                                      "agentjail gateway: no provider is served under this path");
        }
        GwProvider *p = &gw->providers[i];
        c->provider = (size_t)i;
        c->routed = true;
        const char *tail = c->rq.target + rest;
        size_t tail_len = c->rq.target_len - rest;
        if (asprintf(&c->path, "%s%s%.*s", p->base_path, tail_len && tail[0] == '/' ? "" : "/", (int)tail_len, tail) <
            0)
                c->path = NULL;
        if (!c->path)
                return -ENOMEM;
        if (gw->obs.admit) {
                AjGatewayVerdict v = { 0 };
                gw->obs.admit(gw->obs.userdata, &p->pub, c->method, c->path + strlen(p->base_path), &v);
                v.message[sizeof(v.message) - 1] = 0;
                if (v.status)
                        return gw_conn_refuse(c, (int)p->pub.api, v.status,
                                              v.error_type ? v.error_type : "permission_error", NULL,
                                              v.message[0] ? v.message : "refused by agentjail");
        }
        if (c->rq.body == AJ_GW_BODY_LENGTH && c->rq.content_length > gw->opts.max_body)
                return gw_conn_refuse(c, (int)p->pub.api, 413, "request_too_large", NULL,
                                      "agentjail gateway: request body too large");
        if (c->rq.body == AJ_GW_BODY_LENGTH && gw->buffered + c->rq.content_length > gw->opts.max_buffered)
                return gw_conn_refuse(c, (int)p->pub.api, 503, "overloaded_error", NULL,
                                      "agentjail gateway: too many request bodies at once");
        c->body_left = c->rq.content_length;
        c->state = C_BODY;
        if (c->rq.expect_continue && c->rq.body != AJ_GW_BODY_NONE && gw_buf_pending(&c->in) == 0)
                return gw_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25, GW_OUT_MAX);
        return 0;
}

static int body_add(GwConn *c, const char *p, size_t n)
{
        AjGateway *gw = c->gw;
        if (c->body.len + n > gw->opts.max_body)
                return -EFBIG;
        if (gw->buffered + n > gw->opts.max_buffered)
                return -ENOBUFS;
        int r = gw_buf_append(&c->body, p, n, gw->opts.max_body);
        if (r >= 0)
                gw->buffered += n;
        return r;
}

/* 1: the body is complete; 0: more to read; < 0: refused (see body_refused()). */
static int body_take(GwConn *c)
{
        if (c->rq.body == AJ_GW_BODY_LENGTH) {
                size_t n = gw_buf_pending(&c->in);
                if (n > c->body_left)
                        n = (size_t)c->body_left;
                int r = body_add(c, c->in.data + c->in.off, n);
                if (r < 0)
                        return r;
                gw_buf_consume(&c->in, n);
                c->body_left -= n;
                return c->body_left == 0;
        }
        if (c->rq.body != AJ_GW_BODY_CHUNKED)
                return 1;
        while (gw_buf_pending(&c->in)) {
                const char *data;
                size_t dlen;
                bool done;
                ssize_t k = aj_gw_chunked_next(&c->chunked, c->in.data + c->in.off, gw_buf_pending(&c->in), &data,
                                               &dlen, &done);
                if (k < 0)
                        return (int)k;
                int r = body_add(c, data, dlen);
                if (r < 0)
                        return r;
                gw_buf_consume(&c->in, (size_t)k);
                if (done)
                        return 1;
        }
        return 0;
}

static int body_refused(GwConn *c, int r)
{
        int api = (int)c->gw->providers[c->provider].pub.api;
        if (r == -EBADMSG)
                return gw_conn_refuse(c, api, 400, "invalid_request_error", NULL,
                                      "agentjail gateway: malformed chunked body");
        if (r == -EFBIG)
                return gw_conn_refuse(c, api, 413, "request_too_large", NULL,
                                      "agentjail gateway: request body too large");
        if (r == -ENOBUFS)
                return gw_conn_refuse(c, api, 503, "overloaded_error", NULL,
                                      "agentjail gateway: too many request bodies at once");
        return r;
}

int gw_conn_process(GwConn *c)
{
        for (;;) {
                if (c->state == C_HEAD) {
                        if (gw_buf_pending(&c->in) == 0 || gw_buf_pending(&c->out) >= GW_OUT_HIGH)
                                return 0;
                        int status;
                        const char *why;
                        int r = aj_gw_parse_request_head(c->in.data + c->in.off, gw_buf_pending(&c->in),
                                                         c->gw->opts.max_head, &c->rq, &status, &why);
                        if (r == -EAGAIN)
                                return 0;
                        if (r < 0) {
                                char msg[160];
                                snprintf(msg, sizeof(msg), "agentjail gateway: %s", why);
                                return gw_conn_refuse(c, -1, (unsigned)status,
                                                      status == 431 || status == 414 ? "request_too_large"
                                                                                     : "invalid_request_error",
                                                      NULL, msg);
                        }
                        r = request_begin(c);
                        if (r < 0 || c->state != C_BODY)
                                return r;
                } else if (c->state == C_BODY) {
                        int r = body_take(c);
                        if (r <= 0)
                                return r < 0 ? body_refused(c, r) : 0;
                        r = request_ready(c);
                        if (r < 0 || c->state != C_HEAD)
                                return r;
                } else
                        return 0;
        }
}
