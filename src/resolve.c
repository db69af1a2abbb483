/* SPDX-License-Identifier: Apache-2.0 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolve.h"
#include "util/fd.h"
#include "util/strv.h"

#define HOSTS_FILE_MAX (1024 * 1024)

typedef struct Query {
        AjResolver *r;
        uint64_t id;
        AjResolveCallback cb;
        void *userdata;
        bool in_ares;  /* c-ares still holds a pointer to us */
        bool done;     /* result recorded, not yet delivered */
        bool finished; /* delivered or cancelled: free once c-ares lets go */
        int error;
        struct sockaddr_storage addrs[AJ_RESOLVE_MAX_ADDRS];
        size_t n;
        AjLoopTimer deadline;
        struct Query *prev, *next;
} Query;

/* A socket of c-ares's, watched on the loop. */
typedef struct Sock {
        int fd;
        AjLoopIo *io;
        struct Sock *next;
} Sock;

struct AjResolver {
        AjLoop *loop;
        AjLoopTimer ares_timer; /* c-ares's own timeouts and retries (ares_timeout()) */
        AjLoopTimer wake;       /* delivery from the loop, never from the caller's call */
        Sock *socks;
        bool closing;
        ares_channel channel;
        bool channel_ok;
        uint64_t timeout_ms;
        uint64_t next_id;
        size_t n_pending;
        char *hosts_override;
        Query *queries;
};

static void deliver(AjResolver *r);

static void wake(AjResolver *r)
{
        /* Due at once: the loop calls back after the callback that asked returns (in the
         * same dispatch, its timers' turn: src/util/loop.h), never from within it. */
        (void)aj_loop_timer_set(&r->wake, 1);
}

static void arm_ares_timer(AjResolver *r)
{
        struct timeval tv, *tvp = r->channel_ok ? ares_timeout(r->channel, NULL, &tv) : NULL;
        if (!tvp) {
                aj_loop_timer_stop(&r->ares_timer);
                return;
        }
        uint64_t d = (uint64_t)tvp->tv_sec * 1000000000ULL + (uint64_t)tvp->tv_usec * 1000ULL;
        (void)aj_loop_timer_set_in(&r->ares_timer, d ? d : 1);
}

static void on_sock(AjLoopIo *io, int fd, uint32_t events, void *userdata)
{
        AjResolver *r = userdata;
        ares_process_fd(r->channel, (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
                        (events & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
        deliver(r);
}

static void on_ares_timer(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        AjResolver *r = userdata;
        /* Timeouts and retries. */
        ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        deliver(r);
}

static void on_wake(AjLoopTimer *t, uint64_t now_ns, void *userdata) { deliver(userdata); }

static void on_query_deadline(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        Query *q = userdata;
        if (q->done || q->finished)
                return;
        q->error = -ETIMEDOUT;
        q->n = 0;
        q->done = true;
        deliver(q->r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
        AjResolver *r = data;
        uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
        Sock **pp = &r->socks;
        while (*pp && (*pp)->fd != fd)
                pp = &(*pp)->next;
        Sock *s = *pp;
        if (!events || r->closing) {
                if (s) {
                        aj_loop_io_remove(s->io);
                        *pp = s->next;
                        free(s);
                }
                return;
        }
        if (s) {
                (void)aj_loop_io_set_events(s->io, events);
                return;
        }
        /* Without memory the socket is not watched: its query ends at its deadline. */
        s = calloc(1, sizeof(*s));
        if (!s)
                return;
        s->fd = fd;
        if (aj_loop_add_io(r->loop, fd, events, on_sock, r, &s->io) < 0) {
                free(s);
                return;
        }
        s->next = r->socks;
        r->socks = s;
}

static bool token_eq(const char *tok, size_t len, const char *name)
{
        if (len > 1 && tok[len - 1] == '.')
                len--;
        return strlen(name) == len && strncasecmp(tok, name, len) == 0;
}

size_t aj_hosts_lookup(const char *text, const char *name, struct sockaddr_storage *addrs, size_t max)
{
        size_t n = 0;
        const char *line = text;

        while (line && *line && n < max) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);
                const char *hash = memchr(line, '#', len);
                if (hash)
                        len = (size_t)(hash - line);

                const char *tok[64];
                size_t tlen[64], nt = 0;
                for (size_t i = 0; i < len && nt < ARRAY_SIZE(tok);) {
                        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
                                i++;
                        size_t start = i;
                        while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
                                i++;
                        if (i > start) {
                                tok[nt] = line + start;
                                tlen[nt++] = i - start;
                        }
                }
                bool match = false;
                for (size_t t = 1; t < nt && !match; t++)
                        match = token_eq(tok[t], tlen[t], name);
                if (match && tlen[0] < INET6_ADDRSTRLEN) {
                        char a[INET6_ADDRSTRLEN];
                        memcpy(a, tok[0], tlen[0]);
                        a[tlen[0]] = 0;
                        struct sockaddr_storage ss = {};
                        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                        if (inet_pton(AF_INET, a, &in->sin_addr) == 1) {
                                in->sin_family = AF_INET;
                                addrs[n++] = ss;
                        } else if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
                                in6->sin6_family = AF_INET6;
                                addrs[n++] = ss;
                        }
                }
                line = end ? end + 1 : NULL;
        }
        return n;
}

static void ares_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
        Query *q = arg;

        q->in_ares = false;
        if (!q->done && !q->finished) {
                q->n = 0;
                if (status == ARES_SUCCESS && res) {
                        for (struct ares_addrinfo_node *node = res->nodes; node && q->n < AJ_RESOLVE_MAX_ADDRS;
                             node = node->ai_next) {
                                if (node->ai_family != AF_INET && node->ai_family != AF_INET6)
                                        continue;
                                if ((size_t)node->ai_addrlen > sizeof(struct sockaddr_storage))
                                        continue;
                                memset(&q->addrs[q->n], 0, sizeof(q->addrs[q->n]));
                                memcpy(&q->addrs[q->n], node->ai_addr, node->ai_addrlen);
                                q->n++;
                        }
                }
                switch (status) {
                case ARES_SUCCESS:
                        q->error = q->n > 0 ? 0 : -ENOENT;
                        break;
                case ARES_ENOTFOUND:
                case ARES_ENODATA:
                case ARES_ENONAME:
                        q->error = -ENOENT;
                        break;
                case ARES_ETIMEOUT:
                        q->error = -ETIMEDOUT;
                        break;
                case ARES_EDESTRUCTION:
                case ARES_ECANCELLED:
                        q->error = -ECANCELED;
                        break;
                default:
                        q->error = -EIO;
                }
                q->done = true;
                wake(q->r);
        }
        if (res)
                ares_freeaddrinfo(res);
}

int aj_resolver_new(AjLoop *loop, uint64_t timeout_ms, AjResolveNames names, AjResolver **ret)
{
        AjResolver *r = calloc(1, sizeof(*r));
        int k;

        if (!r)
                return -ENOMEM;
        r->loop = loop;
        aj_loop_timer_init(loop, &r->ares_timer, on_ares_timer, r);
        aj_loop_timer_init(loop, &r->wake, on_wake, r);
        r->timeout_ms = timeout_ms ? timeout_ms : 5000;
        r->next_id = 1;

        const char *path = getenv("AGENTJAIL_HOSTS_FILE");
        if (path && *path) {
                k = aj_read_file(path, HOSTS_FILE_MAX, &r->hosts_override, NULL);
                if (k < 0)
                        goto fail;
        }

        k = ares_library_init(ARES_LIB_INIT_ALL);
        if (k != ARES_SUCCESS) {
                k = -ENOMEM;
                goto fail;
        }
        struct ares_options opts = {
                .sock_state_cb = sock_state_cb,
                .sock_state_cb_data = r,
                /* Each try gets a third of the budget; our own deadline bounds the rest. */
                .timeout = (int)(r->timeout_ms / 3 > 0 ? r->timeout_ms / 3 : 1),
                .tries = 2,
                .lookups = (char *)"fb",
        };
        int optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
        if (names == AJ_RESOLVE_EXACT) {
                /* No search domains: resolv.conf's "search" turned an allowed
                 * "nx.example.com" that does not exist into "nx.example.com.corp.example", a
                 * host no rule names. No HOSTALIASES either. ARES_FLAG_NOSEARCH alone does not
                 * reach ares_getaddrinfo() (c-ares 1.18 searched with it set); an empty list
                 * of domains replaces resolv.conf's. */
                opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
                opts.domains = NULL;
                opts.ndomains = 0;
                optmask |= ARES_OPT_FLAGS | ARES_OPT_DOMAINS;
        }
        k = ares_init_options(&r->channel, &opts, optmask);
        if (k != ARES_SUCCESS) {
                ares_library_cleanup();
                k = k == ARES_ENOMEM ? -ENOMEM : -EIO;
                goto fail;
        }
        r->channel_ok = true;
        *ret = r;
        return 0;
fail:
        aj_resolver_free(r);
        return k;
}

static void query_unlink_free(AjResolver *r, Query *q)
{
        if (q->prev)
                q->prev->next = q->next;
        else
                r->queries = q->next;
        if (q->next)
                q->next->prev = q->prev;
        r->n_pending--;
        aj_loop_timer_stop(&q->deadline);
        free(q);
}

int aj_resolver_resolve(AjResolver *r, const char *name, AjResolveCallback cb, void *userdata, uint64_t *ret_id)
{
        if (!name || !*name || strlen(name) > 253)
                return -EINVAL;
        if (r->n_pending >= AJ_RESOLVE_MAX_PENDING)
                return -EBUSY;
        Query *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->r = r;
        q->id = r->next_id++;
        q->cb = cb;
        q->userdata = userdata;
        aj_loop_timer_init(r->loop, &q->deadline, on_query_deadline, q);
        if (aj_loop_timer_set_in(&q->deadline, r->timeout_ms * 1000000ULL) < 0) {
                free(q);
                return -ENOMEM;
        }
        q->next = r->queries;
        if (r->queries)
                r->queries->prev = q;
        r->queries = q;
        r->n_pending++;
        *ret_id = q->id;

        if (r->hosts_override) {
                q->n = aj_hosts_lookup(r->hosts_override, name, q->addrs, AJ_RESOLVE_MAX_ADDRS);
                if (q->n > 0) {
                        q->done = true;
                        wake(r);
                        return 0;
                }
        }
        struct ares_addrinfo_hints hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                /* Sorting connects UDP sockets in the loop; the proxy tries addresses in order anyway. */
                .ai_flags = ARES_AI_NOSORT,
        };
        q->in_ares = true;
        ares_getaddrinfo(r->channel, name, NULL, &hints, ares_cb, q);
        arm_ares_timer(r);
        return 0;
}

typedef struct {
        AjNetPolicy *p;
        size_t host;
        size_t *pending;
        int error;     /* the lookup's: 0 when it found addresses */
        int add_error; /* reserving what it found */
} ReservedLookup;

struct AjReservedLookups {
        AjNetPolicy *p;
        AjLoop *loop; /* of their own: the run's serves no one yet */
        AjResolver *res;
        ReservedLookup *l;
        size_t n, pending;
};

static void on_reserved(void *userdata, int error, const struct sockaddr_storage *addrs, size_t n)
{
        ReservedLookup *l = userdata;
        (*l->pending)--;
        l->error = error ? error : n == 0 ? -ENOENT : 0;
        for (size_t i = 0; i < n && l->add_error == 0; i++)
                l->add_error = aj_net_policy_reserve_address(l->p, l->host, (const struct sockaddr *)&addrs[i]);
}

void aj_reserved_lookups_free(AjReservedLookups *rl)
{
        if (!rl)
                return;
        aj_resolver_free(rl->res); /* before its loop */
        aj_loop_free(rl->loop);
        free(rl->l);
        free(rl);
}

int aj_resolve_reserved_start(AjNetPolicy *p, uint64_t timeout_ms, AjReservedLookups **ret)
{
        _cleanup_(aj_reserved_lookups_freep) AjReservedLookups *rl = calloc(1, sizeof(*rl));
        if (!rl)
                return -ENOMEM;
        rl->p = p;
        rl->n = aj_strv_length(p->reserved);
        if (rl->n == 0) {
                *ret = TAKE_PTR(rl);
                return 0;
        }
        if (!(rl->l = calloc(rl->n, sizeof(*rl->l))))
                return -ENOMEM;
        int r = aj_loop_new(&rl->loop);
        if (r < 0)
                return r;
        if ((r = aj_resolver_new(rl->loop, timeout_ms, AJ_RESOLVE_SEARCH, &rl->res)) < 0)
                return r;
        for (size_t i = 0; i < rl->n; i++) {
                rl->l[i] = (ReservedLookup){ .p = p, .host = i, .pending = &rl->pending };
                uint64_t id;
                if ((r = aj_resolver_resolve(rl->res, p->reserved[i], on_reserved, &rl->l[i], &id)) < 0)
                        return r;
                rl->pending++;
        }
        *ret = TAKE_PTR(rl);
        return 0;
}

int aj_resolve_reserved_finish(AjReservedLookups *rl, char ***ret_unresolved)
{
        int r;
        /* Each lookup has its deadline, from its start: the loop ends. */
        while (rl->pending > 0)
                if ((r = aj_loop_dispatch(rl->loop, -1)) < 0)
                        return r;
        for (size_t i = 0; i < rl->n; i++) {
                const ReservedLookup *l = &rl->l[i];
                if (l->add_error < 0 && l->add_error != -EAFNOSUPPORT)
                        return l->add_error;
                if (l->error == 0)
                        continue;
                char *u;
                if (asprintf(&u, "%s (%s)", rl->p->reserved[i],
                             l->error == -ETIMEDOUT ? "timed out"
                             : l->error == -ENOENT  ? "no such host"
                                                    : "resolver failure") < 0 ||
                    aj_strv_consume(ret_unresolved, u) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int aj_resolve_reserved(AjNetPolicy *p, uint64_t timeout_ms, char ***ret_unresolved)
{
        _cleanup_(aj_reserved_lookups_freep) AjReservedLookups *rl = NULL;
        int r = aj_resolve_reserved_start(p, timeout_ms, &rl);
        return r < 0 ? r : aj_resolve_reserved_finish(rl, ret_unresolved);
}

void aj_resolver_cancel(AjResolver *r, uint64_t id)
{
        for (Query *q = r->queries; q; q = q->next)
                if (q->id == id) {
                        q->finished = true;
                        wake(r);
                        return;
                }
}

/* Results recorded (by c-ares, a deadline or the hosts file) go to their callers; what is
 * finished and let go by c-ares is freed. From the loop only. */
static void deliver(AjResolver *r)
{
        aj_loop_timer_stop(&r->wake);
        /* A callback may start or cancel lookups: new ones go to the head (not visited now,
         * their own wake() brings us back); cancel only marks. */
        for (Query *q = r->queries; q; q = q->next)
                if (q->done && !q->finished) {
                        q->finished = true;
                        aj_loop_timer_stop(&q->deadline);
                        q->cb(q->userdata, q->error, q->addrs, q->n);
                }
        for (Query *q = r->queries, *next; q; q = next) {
                next = q->next;
                if (q->finished && !q->in_ares)
                        query_unlink_free(r, q);
        }
        arm_ares_timer(r);
}

void aj_resolver_free(AjResolver *r)
{
        if (!r)
                return;
        for (Query *q = r->queries; q; q = q->next)
                q->finished = true;
        /* Stop watching c-ares's sockets; it closes them. */
        r->closing = true;
        while (r->socks) {
                Sock *sk = r->socks;
                r->socks = sk->next;
                aj_loop_io_remove(sk->io);
                free(sk);
        }
        if (r->channel_ok) {
                /* Calls every outstanding callback with ARES_EDESTRUCTION (ignored: finished). */
                ares_destroy(r->channel);
                ares_library_cleanup();
        }
        while (r->queries) {
                r->queries->in_ares = false;
                query_unlink_free(r, r->queries);
        }
        aj_loop_timer_stop(&r->ares_timer);
        aj_loop_timer_stop(&r->wake);
        free(r->hosts_override);
        free(r);
}

/* ------------------------------------------------------------------ this host's addresses */

struct AjHostAddrs {
        int nl; /* netlink, subscribed to address changes; -1: re-read every time */
        int rt; /* netlink for route queries (RTM_GETROUTE); -1: opened at the next query */
        uint32_t seq;
        bool stale;
        unsigned reads;
        AjNetAddrSet set;
};

static int host_addrs_read(AjHostAddrs *h)
{
        struct ifaddrs *ifa = NULL;
        AjNetAddrSet set = {};
        if (getifaddrs(&ifa) < 0)
                return negative_errno();
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
                if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
                        continue;
                int r = aj_net_addr_set_add(&set, i->ifa_addr);
                if (r < 0) {
                        freeifaddrs(ifa);
                        aj_net_addr_set_done(&set);
                        return r;
                }
        }
        freeifaddrs(ifa);
        aj_net_addr_set_done(&h->set);
        h->set = set;
        h->reads++;
        return 0;
}

int aj_host_addrs_new(AjHostAddrs **ret)
{
        AjHostAddrs *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->stale = true;
        /* Opened now, with the other one; a failure here is retried at the first query. */
        h->rt = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        h->nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (h->nl >= 0) {
                struct sockaddr_nl sa = { .nl_family = AF_NETLINK,
                                          .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR };
                if (bind(h->nl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        close(h->nl);
                        h->nl = -1;
                }
        }
        /* Subscribed first, read second: no change can fall between the two. */
        int r = host_addrs_read(h);
        if (r < 0) {
                aj_host_addrs_free(h);
                return r;
        }
        h->stale = false;
        *ret = h;
        return 0;
}

int aj_host_addrs_get(AjHostAddrs *h, const AjNetAddrSet **ret)
{
        if (h->nl < 0)
                h->stale = true;
        else
                for (;;) {
                        char buf[8192];
                        ssize_t n = recv(h->nl, buf, sizeof(buf), MSG_DONTWAIT);
                        if (n > 0 || (n < 0 && errno == ENOBUFS)) {
                                h->stale = true; /* a change, or so many that some were lost */
                                continue;
                        }
                        if (n < 0 && errno == EINTR)
                                continue;
                        break;
                }
        if (h->stale) {
                int r = host_addrs_read(h);
                if (r < 0)
                        return r;
                h->stale = false;
        }
        *ret = &h->set;
        return 0;
}

/* The kernel's route to `sa` (RTM_GETROUTE, as connect() would look it up: this process's
 * uid, no mark, no source): 1 when it is delivered to this host (a local, anycast, broadcast
 * or multicast route), 0 when it leaves or has no route (connect() fails on its own),
 * -errno when the kernel's answer cannot be had. */
static int route_is_local(AjHostAddrs *h, const struct sockaddr *sa)
{
        struct {
                struct nlmsghdr nh;
                struct rtmsg rt;
                struct rtattr dst;
                uint8_t addr[16];
        } req = {};
        size_t alen;
        if (sa->sa_family == AF_INET) {
                alen = 4;
                memcpy(req.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
                req.rt.rtm_family = AF_INET;
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                /* connect() on a mapped address goes out over IPv4. */
                bool mapped = IN6_IS_ADDR_V4MAPPED(a6);
                alen = mapped ? 4 : 16;
                memcpy(req.addr, mapped ? a6->s6_addr + 12 : a6->s6_addr, alen);
                req.rt.rtm_family = mapped ? AF_INET : AF_INET6;
        } else
                return -EAFNOSUPPORT;
        req.rt.rtm_dst_len = (unsigned char)(alen * 8);
        req.dst.rta_type = RTA_DST;
        req.dst.rta_len = (unsigned short)RTA_LENGTH(alen);
        req.nh.nlmsg_type = RTM_GETROUTE;
        req.nh.nlmsg_flags = NLM_F_REQUEST;
        req.nh.nlmsg_seq = ++h->seq;
        req.nh.nlmsg_len = (uint32_t)(NLMSG_LENGTH(sizeof(struct rtmsg)) + RTA_LENGTH(alen));

        if (h->rt < 0) {
                h->rt = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
                if (h->rt < 0)
                        return negative_errno();
        }
        /* Whatever an earlier query left unread (its answer came after we gave up) goes. */
        char buf[8192];
        while (recv(h->rt, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                ;
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        if (sendto(h->rt, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
                return negative_errno();
        /* rtnetlink answers within sendto(): the reply is queued by the time it returns. */
        for (;;) {
                ssize_t n = recv(h->rt, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? -ETIMEDOUT : negative_errno();
                if (n == 0)
                        return -EIO;
                for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
                        if (nh->nlmsg_seq != req.nh.nlmsg_seq)
                                continue;
                        if (nh->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(nh);
                                if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                                        return -EIO;
                                /* No route, one that refuses, or no such family in this kernel
                                 * (booted with ipv6.disable=1): connect() reaches nothing. */
                                if (e->error == -ENETUNREACH || e->error == -EHOSTUNREACH || e->error == -EACCES ||
                                    e->error == -EOPNOTSUPP || e->error == -EAFNOSUPPORT)
                                        return 0;
                                return e->error < 0 ? e->error : -EIO;
                        }
                        if (nh->nlmsg_type != RTM_NEWROUTE || nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
                                return -EIO;
                        const struct rtmsg *rt = NLMSG_DATA(nh);
                        return rt->rtm_type == RTN_LOCAL || rt->rtm_type == RTN_ANYCAST ||
                               rt->rtm_type == RTN_BROADCAST || rt->rtm_type == RTN_MULTICAST;
                }
        }
}

int aj_host_addrs_is_local(AjHostAddrs *h, const struct sockaddr *sa)
{
        const AjNetAddrSet *set;
        int r = aj_host_addrs_get(h, &set);
        if (r < 0)
                return r;
        if (aj_net_addr_set_contains(set, sa))
                return 1;
        return route_is_local(h, sa);
}

unsigned aj_host_addrs_reads(const AjHostAddrs *h) { return h->reads; }

void aj_host_addrs_free(AjHostAddrs *h)
{
        if (!h)
                return;
        if (h->nl >= 0)
                close(h->nl);
        if (h->rt >= 0)
                close(h->rt);
        aj_net_addr_set_done(&h->set);
        free(h);
}
