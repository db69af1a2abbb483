/* SPDX-License-Identifier: Apache-2.0 */
/* The egress proxy as a service (see proxy.h; its files in proxy-internal.h): listeners,
 * accept, a connection's deadlines, events, refusal and close, the loop and its dispatch. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy-internal.h"
#include "util/clock.h"
#include "util/strv.h"

/* Fails only without memory for the loop's heap (as a timerfd could fail to arm). */
void proxy_set_deadline_ms(Conn *c, uint64_t ms) { (void)aj_loop_timer_set_in(&c->deadline, ms * 1000000ULL); }

/* The upstream socket is done with (failed, refused, or the answer is complete). */
void proxy_close_upstream(Conn *c)
{
        aj_loop_io_remove(c->uio);
        c->uio = NULL;
        close(c->ufd);
        c->ufd = -1;
}

/* ------------------------------------------------------------------ listeners */

/* What every socket the proxy relays gets, on both sides: fixed buffers (no autotuning past
 * them: see AJ_PROXY_SOCKET_BUFFER), and TCP urgent data read inline, as the byte of the
 * stream it is: out of line, the kernel holds the urgent byte apart, reads skip it, and the
 * relay dropped it from the stream it passed on. A relay passes bytes, not TCP's urgent
 * pointer (the byte arrives as ordinary data on the other side). */
int proxy_socket_options(int fd)
{
        int size = AJ_PROXY_SOCKET_BUFFER, one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0)
                return negative_errno();
        return 0;
}

int aj_proxy_listen_at(const char *address, uint16_t port, int *ret_fd)
{
        struct sockaddr_storage ss;
        if (!aj_net_literal_address(address, port, &ss))
                return -EINVAL;
        socklen_t sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        /* Accepted sockets inherit these, from their first segment on. */
        int r = proxy_socket_options(fd);
        if (r < 0)
                return r;
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
                return negative_errno();
        if (listen(fd, 1024) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_proxy_listen_in_current_netns(int *ret_http_fd, int *ret_socks_fd)
{
        _cleanup_close_ int http = -1, socks = -1;
        int r = aj_proxy_listen_at("127.0.0.1", AJ_PROXY_HTTP_PORT, &http);
        if (r < 0)
                return r;
        r = aj_proxy_listen_at("127.0.0.1", AJ_PROXY_SOCKS_PORT, &socks);
        if (r < 0)
                return r;
        *ret_http_fd = TAKE_FD(http);
        *ret_socks_fd = TAKE_FD(socks);
        return 0;
}

int aj_proxy_env_append(char ***env)
{
        static const char *const vars[] = {
                "HTTP_PROXY=http://127.0.0.1:3128",   "http_proxy=http://127.0.0.1:3128",
                "HTTPS_PROXY=http://127.0.0.1:3128",  "https_proxy=http://127.0.0.1:3128",
                "ALL_PROXY=socks5h://127.0.0.1:1080", "all_proxy=socks5h://127.0.0.1:1080",
                "NO_PROXY=localhost,127.0.0.1",       "no_proxy=localhost,127.0.0.1",
        };
        for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
                int r = aj_strv_push(env, vars[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ------------------------------------------------------------------ connections */

static const char *proto_name(const Conn *c) { return c->socks ? "socks5" : c->is_connect ? "http-connect" : "http"; }

json_t *proxy_conn_json(const Conn *c)
{
        json_t *o = json_pack("{s:I, s:s, s:s, s:i}", "id", (json_int_t)c->id, "proto", proto_name(c), "host", c->host,
                              "port", (int)c->port);
        if (o && c->connected) {
                char a[INET6_ADDRSTRLEN];
                json_object_set_new(o, "address",
                                    json_string(aj_net_format_address((struct sockaddr *)&c->addr, a, sizeof(a))));
        }
        return o;
}

void proxy_emit(AjProxy *p, const char *type, json_t *fields)
{
        if (p->hooks && p->hooks->emit && fields)
                p->hooks->emit(p->hooks->userdata, type, fields);
        else
                json_decref(fields);
}

static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        *s = '?';
}

/* Answer with an error and close: an HTTP status or a SOCKS reply code. */
void proxy_refuse(Conn *c, int http_status, uint8_t socks_rep, const char *reason_in)
{
        char reason[400];
        snprintf(reason, sizeof(reason), "%s", reason_in);
        sanitize(reason);
        if (!c->error)
                c->error = http_status == 403 ? NULL : "refused";
        aj_outbuf_clear(&c->out);
        if (c->socks) {
                if (c->state == ST_SOCKS_GREETING)
                        goto close_now;
                char *rep = malloc(10);
                if (!rep)
                        goto close_now;
                memcpy(rep, (uint8_t[]){ 5, socks_rep, 0, 1, 0, 0, 0, 0, 0, 0 }, 10);
                aj_outbuf_take(&c->out, rep, 10);
        } else {
                char *text;
                int k = asprintf(&text,
                                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                                 "X-Agentjail-Reason: %s\r\nContent-Length: %zu\r\n\r\nagentjail proxy: %s\n",
                                 http_status, aj_http_reason_phrase((unsigned)http_status), reason, strlen(reason) + 18,
                                 reason);
                if (k < 0)
                        goto close_now;
                aj_outbuf_take(&c->out, text, (size_t)k);
        }
        if (c->ufd >= 0)
                proxy_close_upstream(c);
        if (c->resolving) {
                aj_resolver_cancel(c->p->resolver, c->resolve_id);
                c->resolving = false;
        }
        c->state = ST_REFUSE;
        proxy_set_deadline_ms(c, LINGER_MS);
        proxy_flush_out(c);
        return;
close_now:
        proxy_conn_close(c);
}

static void on_client(Conn *c, uint32_t events)
{
        if (events & EDGE_FROM)
                c->up.quiet = false;
        switch (c->state) {
        case ST_ASKING:
                /* Nothing is read while it waits; a client that hangs up (or half-closes:
                 * taken as gone) cancels its wait. */
                if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                        c->error = "client left while awaiting approval";
                        proxy_conn_close(c);
                }
                break;
        case ST_HTTP_HEAD:
        case ST_SOCKS_GREETING:
        case ST_SOCKS_REQUEST:
                proxy_read_request(c, events);
                break;
        case ST_RELAY:
                proxy_relay_events(c, true, events);
                break;
        case ST_REFUSE:
                proxy_flush_out(c);
                break;
        case ST_LINGER:
                proxy_linger(c);
                break;
        default:
                /* Resolving or connecting: the client waits; what it sends stays queued. */
                break;
        }
}

static void on_client_io(AjLoopIo *io, int fd, uint32_t events, void *userdata)
{
        (void)io;
        (void)fd;
        on_client(userdata, events);
}

int proxy_watch(Conn *c)
{
        uint32_t ce = (CLIENT_EVENTS | (c->room_watched ? EPOLLOUT : 0)) & ~(c->up.unwatched ? EPOLLIN : 0);
        int r = aj_loop_io_set_events(c->cio, ce);
        if (r == 0 && c->uio)
                r = aj_loop_io_set_events(c->uio, UPSTREAM_EVENTS & ~(c->down.unwatched ? EPOLLIN : 0));
        return r;
}

/* Edge-triggered: if room came back before this, the change reports it at once. */
int proxy_watch_client_room(Conn *c)
{
        c->room_watched = true;
        return proxy_watch(c);
}

/* Re-run a connection whose state changed without a new edge on its fds. */
void proxy_conn_kick(Conn *c)
{
        if (c->state == ST_LINGER)
                proxy_linger(c);
}

void proxy_conn_close(Conn *c)
{
        AjProxy *p = c->p;

        if (c->resolving)
                aj_resolver_cancel(p->resolver, c->resolve_id);
        if (c->evaluated) {
                json_t *f = proxy_conn_json(c);
                if (f) {
                        json_object_set_new(f, "verdict",
                                            json_string(c->denied               ? "denied"
                                                        : c->state == ST_ASKING ? "cancelled"
                                                                                : "allowed"));
                        if (c->rule[0])
                                json_object_set_new(f, "rule", json_string(c->rule));
                        json_object_set_new(f, "bytes_up", json_integer((json_int_t)c->up.bytes));
                        json_object_set_new(f, "bytes_down", json_integer((json_int_t)c->down.bytes));
                        json_object_set_new(f, "duration_ms",
                                            json_integer(
                                                    (json_int_t)((aj_now_monotonic_ns() - c->start_ns) / 1000000ULL)));
                        if (c->error)
                                json_object_set_new(f, "error", json_string(c->error));
                }
                if (c->admitted && f && p->hooks && p->hooks->record)
                        (void)p->hooks->record(p->hooks->userdata, "net.connect", f);
                else
                        proxy_emit(p, "net.connect", f);
        }
        proxy_ask_detach(c);
        aj_loop_timer_stop(&c->deadline);
        /* Before closing: a later event for them in this turn is then not delivered. */
        aj_loop_io_remove(c->cio);
        aj_loop_io_remove(c->uio);
        if (c->cfd >= 0)
                close(c->cfd);
        if (c->ufd >= 0)
                close(c->ufd);
        Dir *dirs[] = { &c->up, &c->down };
        for (size_t i = 0; i < 2; i++) {
                proxy_free_buffer(c, dirs[i]);
                aj_outbuf_clear(&dirs[i]->prefix);
        }
        free(c->in);
        aj_outbuf_clear(&c->out);
        free(c->fwd);
        free(c->resp);
        if (c->pending)
                for (unsigned i = 0; i < p->n_pending; i++)
                        if (p->pending[i] == c->slot) {
                                p->pending[i] = p->pending[--p->n_pending];
                                break;
                        }
        p->slots[c->slot] = NULL;
        p->active--;
        if (!c->overflow)
                p->regular--;
        free(c);

        if (p->paused) {
                (void)aj_loop_io_set_events(p->http_io, EPOLLIN);
                (void)aj_loop_io_set_events(p->socks_io, EPOLLIN);
                p->paused = false;
        }
}

static void pause_listeners(AjProxy *p)
{
        (void)aj_loop_io_set_events(p->http_io, 0);
        (void)aj_loop_io_set_events(p->socks_io, 0);
        p->paused = true;
}

static void on_deadline(AjLoopTimer *t, uint64_t now_ns, void *userdata);

/* Accepts up to the listener's limit. Accepting until accept4() finds the queue empty costs
 * a call for nothing each wake-up: from one client, one per connection. A listener is
 * level-triggered, so what is left is reported at the next dispatch: the limit is how many
 * the queue held when it was last found empty (at least one), and doubles, up to
 * ACCEPT_BATCH, when a listener that stopped at it is ready again at the very next
 * dispatch (a queue: many clients at once). */
static void accept_some(AjProxy *p, int lfd, bool socks)
{
        AcceptPace *a = &p->accept_pace[socks];
        if (a->full_at != 0 && a->full_at + 1 == p->dispatches)
                a->limit = a->limit * 2 < ACCEPT_BATCH ? a->limit * 2 : ACCEPT_BATCH;
        a->full_at = 0;
        for (unsigned i = 0; i < a->limit; i++) {
                /* Its buffer bounds are the listener's (aj_proxy_new_with_options() sets them). */
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EAGAIN)
                                a->limit = i > 0 ? i : 1;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                /* Level-triggered listeners would spin; resume when a connection closes. */
                                if (p->active > 0)
                                        pause_listeners(p);
                        return;
                }
                unsigned slot = UINT32_MAX;
                for (unsigned s = 0; s < p->n_slots; s++)
                        if (!p->slots[s]) {
                                slot = s;
                                break;
                        }
                Conn *c = slot == UINT32_MAX ? NULL : calloc(1, sizeof(*c));
                if (c) {
                        c->in_cap = socks ? SOCKS_MAX : AJ_PROXY_HEAD_BUFFER_MIN;
                        c->in = malloc(c->in_cap);
                }
                if (!c || !c->in) {
                        if (c)
                                free(c);
                        close(fd);
                        continue;
                }
                c->p = p;
                c->slot = slot;
                c->id = p->next_id++;
                c->socks = socks;
                c->state = socks ? ST_SOCKS_GREETING : ST_HTTP_HEAD;
                c->cfd = fd;
                c->ufd = -1;
                c->start_ns = aj_loop_now(p->loop);
                aj_loop_timer_init(p->loop, &c->deadline, on_deadline, c);
                c->overflow = p->regular >= p->opts.max_connections;
                if (aj_loop_timer_set(&c->deadline, c->start_ns + p->opts.header_timeout_ms * 1000000ULL) < 0 ||
                    aj_loop_add_io(p->loop, fd, CLIENT_EVENTS, on_client_io, c, &c->cio) < 0) {
                        aj_loop_timer_stop(&c->deadline);
                        free(c->in);
                        free(c);
                        close(fd);
                        continue;
                }
                p->slots[slot] = c;
                p->active++;
                if (!c->overflow)
                        p->regular++;
                /* Data may already be there: ET reports it, but read now to save a round. */
                proxy_read_request(c, 0);
        }
        a->full_at = p->dispatches;
}

/* The state's deadline passed (the timer is stopped now): give up on what it waited for. */
static void on_deadline(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t;
        (void)now_ns;
        Conn *c = userdata;
        switch (c->state) {
        case ST_HTTP_HEAD:
                proxy_refuse(c, 408, 0, "request head not received in time");
                break;
        case ST_SOCKS_GREETING:
        case ST_SOCKS_REQUEST:
                proxy_conn_close(c);
                break;
        case ST_CONNECTING:
                c->next_cand = c->n_cand;
                proxy_connect_failed(c, -ETIMEDOUT);
                break;
        case ST_RESOLVING:
                c->error = "resolve timeout";
                proxy_refuse(c, 504, 0x04, "name resolution timed out");
                break;
        default:
                proxy_conn_close(c);
        }
}

static void on_listener(AjLoopIo *io, int fd, uint32_t events, void *userdata)
{
        (void)io;
        (void)events;
        AjProxy *p = userdata;
        accept_some(p, fd, fd == p->socks_fd);
}

/* mark_pending()'s wake-up: it keeps the loop's fd readable until the next dispatch. */
static void on_wake(AjLoopIo *io, int fd, uint32_t events, void *userdata)
{
        (void)io;
        (void)events;
        (void)userdata;
        uint64_t x;
        (void)!read(fd, &x, sizeof(x));
}

int aj_proxy_dispatch(AjProxy *p)
{
        p->dispatches++;
        int r = aj_loop_dispatch(p->loop, 0);
        if (r < 0)
                return r;

        /* Connections that used their budget: one more round each, in arrival order. */
        unsigned np = p->n_pending;
        unsigned *snapshot = p->pending_run; /* allocated up front: nothing here can fail */
        memcpy(snapshot, p->pending, np * sizeof(unsigned));
        p->n_pending = 0;
        for (unsigned i = 0; i < np; i++) {
                Conn *c = p->slots[snapshot[i]];
                if (!c || !c->pending)
                        continue;
                c->pending = false;
                if (c->state == ST_RELAY)
                        proxy_relay(c);
        }
        return 0;
}

int aj_proxy_fd(AjProxy *p) { return p->loop_fd; }

json_t *aj_proxy_stats(AjProxy *p)
{
        return json_pack("{s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)p->total, "active",
                         (json_int_t)p->active, "denied", (json_int_t)p->denied, "bytes_up", (json_int_t)p->bytes_up,
                         "bytes_down", (json_int_t)p->bytes_down);
}

size_t aj_proxy_relay_buffer_bytes(const AjProxy *p)
{
        size_t sum = 0;
        for (unsigned i = 0; i < p->n_slots; i++)
                if (p->slots[i])
                        sum += p->slots[i]->up.cap + p->slots[i]->down.cap;
        return sum;
}

size_t aj_proxy_head_buffer_bytes(const AjProxy *p)
{
        size_t sum = 0;
        for (unsigned i = 0; i < p->n_slots; i++)
                if (p->slots[i])
                        sum += p->slots[i]->in_cap + p->slots[i]->resp_cap;
        return sum;
}

void aj_proxy_free(AjProxy *p)
{
        if (!p)
                return;
        if (p->slots)
                aj_proxy_cancel_asks(p, "the run ended");
        for (unsigned s = 0; p->slots && s < p->n_slots; s++)
                if (p->slots[s])
                        proxy_conn_close(p->slots[s]);
        AjLoopIo *ios[] = { p->http_io, p->socks_io, p->wake_io };
        for (size_t i = 0; i < ARRAY_SIZE(ios); i++)
                aj_loop_io_remove(ios[i]);
        aj_resolver_free(p->resolver);
        aj_host_addrs_free(p->host_addrs);
        int fds[] = { p->http_fd, p->socks_fd, p->wakefd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        aj_loop_free(p->loop);
        aj_net_policy_free(p->granted);
        free(p->slots);
        free(p->pending);
        free(p->pending_run);
        free(p);
}

int aj_proxy_new_with_options(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks,
                              const AjProxyOptions *opts, AjProxy **ret)
{
        AjProxy *p = calloc(1, sizeof(*p));
        int r;

        if (!p) {
                if (http_fd >= 0)
                        close(http_fd);
                if (socks_fd >= 0)
                        close(socks_fd);
                return -ENOMEM;
        }
        p->http_fd = http_fd;
        p->socks_fd = socks_fd;
        p->loop_fd = p->wakefd = -1;
        p->policy = policy;
        p->hooks = hooks;
        p->next_id = 1;
        p->accept_pace[0].limit = p->accept_pace[1].limit = 1;
        if (opts)
                p->opts = *opts;
        if (!p->opts.header_timeout_ms)
                p->opts.header_timeout_ms = 30000;
        if (!p->opts.connect_timeout_ms)
                p->opts.connect_timeout_ms = 20000;
        if (!p->opts.max_connections || p->opts.max_connections > 65536)
                p->opts.max_connections = AJ_PROXY_MAX_CONNECTIONS;

        p->n_slots = p->opts.max_connections + RESERVE_SLOTS;
        p->slots = calloc(p->n_slots, sizeof(Conn *));
        p->pending = calloc(p->n_slots, sizeof(unsigned));
        p->pending_run = calloc(p->n_slots, sizeof(unsigned));
        if (!p->slots || !p->pending || !p->pending_run) {
                r = -ENOMEM;
                goto fail;
        }
        /* Accepted sockets inherit the listener's options (the kernel clones the buffer bounds,
         * with the lock that keeps autotuning off, and the inline urgent data, from the first
         * segment on), so they are set once,
         * here, whoever made the listener: the jail's init does too, but closes its copy before
         * the agent runs, so after this no one but the supervisor can change them. */
        int lfds[] = { http_fd, socks_fd };
        for (size_t i = 0; i < ARRAY_SIZE(lfds); i++)
                if (lfds[i] >= 0 && (r = proxy_socket_options(lfds[i])) < 0)
                        goto fail;
        r = aj_loop_new(&p->loop);
        if (r < 0)
                goto fail;
        p->loop_fd = aj_loop_fd(p->loop);
        p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->loop_fd < 0 || p->wakefd < 0) {
                r = p->loop_fd < 0 ? p->loop_fd : negative_errno();
                goto fail;
        }
        r = aj_resolver_new(p->loop, p->opts.connect_timeout_ms / 2, AJ_RESOLVE_EXACT, &p->resolver);
        if (r < 0)
                goto fail;
        r = aj_host_addrs_new(&p->host_addrs);
        if (r < 0)
                goto fail;
        if ((http_fd >= 0 && (r = aj_loop_add_io(p->loop, http_fd, EPOLLIN, on_listener, p, &p->http_io)) < 0) ||
            (socks_fd >= 0 && (r = aj_loop_add_io(p->loop, socks_fd, EPOLLIN, on_listener, p, &p->socks_io)) < 0) ||
            (r = aj_loop_add_io(p->loop, p->wakefd, EPOLLIN, on_wake, p, &p->wake_io)) < 0)
                goto fail;

        /* Each connection holds up to two fds (its two sockets): make room for the
         * connection limit rather than fail at accept. */
        struct rlimit rl;
        rlim_t want = (rlim_t)p->n_slots * 2 + 256;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
                rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        *ret = p;
        return 0;
fail:
        aj_proxy_free(p);
        return r;
}

int aj_proxy_new(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks, AjProxy **ret)
{
        return aj_proxy_new_with_options(http_fd, socks_fd, policy, hooks, NULL, ret);
}
