/* SPDX-License-Identifier: Apache-2.0 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>

#include "resolve.h"
#include "util/clock.h"
#include "util/fd.h"

#define HOSTS_FILE_MAX (1024 * 1024)

typedef struct Query {
        AjResolver *r;
        uint64_t id;
        AjResolveCallback cb;
        void *userdata;
        bool in_ares;   /* c-ares still holds a pointer to us */
        bool done;      /* result recorded, not yet delivered */
        bool finished;  /* delivered or cancelled: free once c-ares lets go */
        int error;
        struct sockaddr_storage addrs[AJ_RESOLVE_MAX_ADDRS];
        size_t n;
        uint64_t deadline_ns;
        struct Query *prev, *next;
} Query;

struct AjResolver {
        int epfd, timerfd, eventfd;
        ares_channel channel;
        bool channel_ok;
        uint64_t timeout_ms;
        uint64_t next_id;
        size_t n_pending;
        char *hosts_override;
        Query *queries;
};

static void wake(AjResolver *r)
{
        uint64_t one = 1;
        /* Makes the epoll fd readable so the caller comes back to deliver. */
        (void)!write(r->eventfd, &one, sizeof(one));
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
        AjResolver *r = data;
        struct epoll_event ev = {
                .events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0),
                .data.fd = fd,
        };
        if (!readable && !writable) {
                epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
                return;
        }
        if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
                epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
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

int aj_resolver_new(uint64_t timeout_ms, AjResolver **ret)
{
        AjResolver *r = calloc(1, sizeof(*r));
        int k;

        if (!r)
                return -ENOMEM;
        r->epfd = r->timerfd = r->eventfd = -1;
        r->timeout_ms = timeout_ms ? timeout_ms : 5000;
        r->next_id = 1;

        const char *path = getenv("AGENTJAIL_HOSTS_FILE");
        if (path && *path) {
                k = aj_read_file(path, HOSTS_FILE_MAX, &r->hosts_override, NULL);
                if (k < 0)
                        goto fail;
        }

        r->epfd = epoll_create1(EPOLL_CLOEXEC);
        r->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        r->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->epfd < 0 || r->timerfd < 0 || r->eventfd < 0) {
                k = negative_errno();
                goto fail;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = r->timerfd };
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->timerfd, &ev) < 0) {
                k = negative_errno();
                goto fail;
        }
        ev.data.fd = r->eventfd;
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->eventfd, &ev) < 0) {
                k = negative_errno();
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
        k = ares_init_options(&r->channel, &opts,
                              ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS);
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

int aj_resolver_fd(AjResolver *r) { return r->epfd; }

static void query_unlink_free(AjResolver *r, Query *q)
{
        if (q->prev)
                q->prev->next = q->next;
        else
                r->queries = q->next;
        if (q->next)
                q->next->prev = q->prev;
        r->n_pending--;
        free(q);
}

static void arm_timer(AjResolver *r)
{
        uint64_t next = UINT64_MAX, now = aj_now_monotonic_ns();
        struct itimerspec its = {};

        for (Query *q = r->queries; q; q = q->next)
                if (!q->done && !q->finished && q->deadline_ns < next)
                        next = q->deadline_ns;
        struct timeval tv, *tvp = r->channel_ok ? ares_timeout(r->channel, NULL, &tv) : NULL;
        if (tvp) {
                uint64_t t = now + (uint64_t)tvp->tv_sec * 1000000000ULL + (uint64_t)tvp->tv_usec * 1000ULL;
                if (t < next)
                        next = t;
        }
        if (next != UINT64_MAX) {
                uint64_t d = next > now ? next - now : 1;
                its.it_value.tv_sec = (time_t)(d / 1000000000ULL);
                its.it_value.tv_nsec = (long)(d % 1000000000ULL);
                if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                        its.it_value.tv_nsec = 1;
        }
        timerfd_settime(r->timerfd, 0, &its, NULL);
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
        q->deadline_ns = aj_now_monotonic_ns() + r->timeout_ms * 1000000ULL;
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
        arm_timer(r);
        return 0;
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

int aj_resolver_dispatch(AjResolver *r)
{
        struct epoll_event evs[32];
        int n = epoll_wait(r->epfd, evs, ARRAY_SIZE(evs), 0);
        if (n < 0 && errno != EINTR)
                return negative_errno();
        for (int i = 0; i < n; i++) {
                int fd = evs[i].data.fd;
                if (fd == r->timerfd || fd == r->eventfd) {
                        uint64_t x;
                        (void)!read(fd, &x, sizeof(x));
                        continue;
                }
                ares_process_fd(r->channel, (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
                                (evs[i].events & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
        }
        /* Timeouts and retries. */
        ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);

        uint64_t now = aj_now_monotonic_ns();
        for (Query *q = r->queries; q; q = q->next)
                if (!q->done && !q->finished && now >= q->deadline_ns) {
                        q->error = -ETIMEDOUT;
                        q->n = 0;
                        q->done = true;
                }

        /* Deliver. A callback may start or cancel lookups: new ones go to the head (not
         * visited now, their own wake() brings us back); cancel only marks. */
        for (Query *q = r->queries; q; q = q->next)
                if (q->done && !q->finished) {
                        q->finished = true;
                        q->cb(q->userdata, q->error, q->addrs, q->n);
                }
        for (Query *q = r->queries, *next; q; q = next) {
                next = q->next;
                if (q->finished && !q->in_ares)
                        query_unlink_free(r, q);
        }
        arm_timer(r);
        return 0;
}

void aj_resolver_free(AjResolver *r)
{
        if (!r)
                return;
        for (Query *q = r->queries; q; q = q->next)
                q->finished = true;
        if (r->channel_ok) {
                /* Calls every outstanding callback with ARES_EDESTRUCTION (ignored: finished). */
                ares_destroy(r->channel);
                ares_library_cleanup();
        }
        while (r->queries) {
                r->queries->in_ares = false;
                query_unlink_free(r, r->queries);
        }
        if (r->epfd >= 0)
                close(r->epfd);
        if (r->timerfd >= 0)
                close(r->timerfd);
        if (r->eventfd >= 0)
                close(r->eventfd);
        free(r->hosts_override);
        free(r);
}

/* ------------------------------------------------------------------ this host's addresses */

struct AjHostAddrs {
        int nl;     /* netlink, subscribed to address changes; -1: re-read every time */
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

unsigned aj_host_addrs_reads(const AjHostAddrs *h) { return h->reads; }

void aj_host_addrs_free(AjHostAddrs *h)
{
        if (!h)
                return;
        if (h->nl >= 0)
                close(h->nl);
        aj_net_addr_set_done(&h->set);
        free(h);
}
