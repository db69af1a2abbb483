/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy's insides, shared by its files:
 *   proxy.c          the service: listeners, accept, deadlines, dispatch, a connection's
 *                    life (its events, refusal, close)
 *   proxy-request.c  from the first byte to a connected upstream: read and parse the
 *                    request, judge it (names, then resolved addresses), connect
 *   proxy-relay.c    the relay: read and write through a buffer per direction (grown for
 *                    bulk within the run's bound), plain HTTP framed, bytes counted
 *   proxy-ask.c      connections held for an operator's decision (network.ask)
 *   http-parse.c, socks-parse.c   the parsers (pure)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "proxy.h"
#include "resolve.h"
#include "util/loop.h"
#include "util/outbuf.h"

#define SOCKS_MAX 600
/* Bytes one direction may move per wake-up before yielding to other connections. */
#define PUMP_BUDGET (1024 * 1024)
#define RESERVE_SLOTS 32
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
#define ACCEPT_BATCH 64
/* What an edge on a socket says about what it receives: data, its end, or an error. */
#define EDGE_FROM (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
/* What the sockets are watched for (edge-triggered): the client's room (EPOLLOUT) only
 * once a send to it found it full (proxy_watch_client_room); either socket's data
 * (EPOLLIN) not while the direction it feeds waits for room (Dir.unwatched). */
#define CLIENT_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)
#define UPSTREAM_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

typedef enum {
        ST_HTTP_HEAD,
        ST_SOCKS_GREETING,
        ST_SOCKS_REQUEST,
        ST_RESOLVING,
        ST_CONNECTING,
        ST_ASKING, /* held for an operator's decision: no reply, no upstream */
        ST_RELAY,
        ST_REFUSE, /* writing an error reply */
        ST_LINGER, /* reply sent; draining what the client still sends so it is not reset */
} ConnState;

typedef struct {
        char *buf;          /* between source and destination: NULL until the first read */
        size_t off, len;    /* what is in it, not yet written */
        size_t cap;         /* its size (what is past AJ_PROXY_BUFFER_MIN: AjProxy.buffer_excess) */
        AjOutBuf prefix;    /* sent to the destination before spliced data */
        bool prefix_counts; /* client bytes (counted) or the proxy's own reply (not) */
        bool src_eof, done;
        bool blocked; /* its last send found the destination full: the destination's EPOLLOUT runs it */
        /* Blocked after a relay round: its source's data is not watched, as nothing can be
         * read into the full buffer until the destination has room (whose edge runs it);
         * each segment the source got meanwhile woke the loop for a send that failed. Its
         * end, an error or a hang-up still are. */
        bool unwatched;
        /* A read found the source empty and no edge of it came since (edges clear it): a
         * read now would find nothing, so none is made. */
        bool quiet;
        bool limited; /* read at most `limit` more bytes from the source */
        uint64_t limit;
        uint64_t bytes;
} Dir;

struct AjProxy;

/* A host awaiting an operator's decision ("net-N"); every connection to the same host and
 * port that arrives meanwhile waits for the same decision. */
typedef struct Ask {
        bool used;
        uint64_t n;        /* the N of "net-N" */
        uint64_t order;    /* arrival order */
        uint64_t since_ns; /* CLOCK_REALTIME */
        char host[AJ_NET_HOST_MAX + 1];
        uint16_t port;
        char pattern[96]; /* the ask pattern that matched */
        const char *proto;
        unsigned held;     /* connections waiting for it */
        json_t *process;   /* who asked first (opts.peer_process), or NULL */
        AjLoopTimer timer; /* the deadline; userdata: the proxy */
} Ask;

typedef struct Conn {
        struct AjProxy *p;
        unsigned slot;
        uint64_t id;
        bool socks, overflow, evaluated, denied, pending, is_connect;
        ConnState state;
        int cfd, ufd;
        AjLoopIo *cio, *uio; /* edge-triggered */
        bool room_watched;   /* the client's EPOLLOUT too (proxy_watch_client_room) */
        char *in;
        size_t in_len, in_cap;
        AjOutBuf out; /* an error reply */
        size_t lingered;
        char host[AJ_NET_HOST_MAX + 1];
        uint16_t port;
        char rule[96];
        const char *error;
        Ask *ask;      /* ST_ASKING: the approval it waits for */
        bool approved; /* let through by an operator: addresses judged like resolved ones */
        bool admitted; /* let through while the agent's share of the log had room: its
                        * net.connect at the end is written whatever is left (hooks' record) */
        struct sockaddr_storage cand[AJ_RESOLVE_MAX_ADDRS];
        size_t n_cand, next_cand;
        struct sockaddr_storage addr;
        bool connected;
        uint64_t resolve_id;
        bool resolving;
        char *fwd; /* absolute-form: rewritten head + early body */
        size_t fwd_len;
        /* Plain HTTP: one request per client connection. Its body is framed here, and
         * nothing the client sends after it is relayed; the response head is rewritten
         * to say "Connection: close". */
        AjHttpBody body;
        uint64_t body_left;
        AjHttpChunked chunk;
        bool req_done, up_stopped, pipelined_seen, resp_done, head_request;
        unsigned interim; /* 1xx heads relayed for this request */
        AjHttpBody resp_body;
        AjHttpChunked resp_chunk;
        char *resp;
        size_t resp_len, resp_cap;
        Dir up, down;
        uint64_t start_ns;
        AjLoopTimer deadline; /* header, connect, linger: what the state waits for */
} Conn;

/* A listener's accept limit per wake-up (accept_some()). */
typedef struct {
        unsigned limit;
        uint64_t full_at; /* the dispatch that stopped at the limit, 0: it found the queue empty */
} AcceptPace;

/* Its own AjLoop, nested in the supervisor's (aj_proxy_fd()): the listeners, the resolver's
 * sockets and timers, every connection's two sockets, and one deadline timer per connection. */
struct AjProxy {
        AjLoop *loop;
        int loop_fd, http_fd, socks_fd, wakefd;
        AjLoopIo *http_io, *socks_io, *wake_io;
        const AjNetPolicy *policy;
        const AjHooks *hooks;
        AjProxyOptions opts;
        AjResolver *resolver;
        AjHostAddrs *host_addrs;
        Conn **slots;
        unsigned n_slots;
        unsigned active, regular;
        bool paused;
        AcceptPace accept_pace[2]; /* the HTTP listener's, the SOCKS listener's */
        uint64_t dispatches;       /* aj_proxy_dispatch() calls */
        uint64_t next_id;
        uint64_t total, denied, bytes_up, bytes_down;
        size_t buffer_excess; /* the relay buffers' bytes past AJ_PROXY_BUFFER_MIN each (aj_proxy_buffer_may_grow) */
        unsigned *pending;
        unsigned n_pending;
        unsigned *pending_run; /* aj_proxy_dispatch()'s copy of `pending` (allocated with it) */
        /* network.ask */
        Ask asks[AJ_PROXY_MAX_ASKS];
        unsigned n_asks, held;
        uint64_t next_ask, ask_order;
        AjNetPolicy *granted; /* hosts approved --always, judged after the allowlist */
};

/* proxy.c */
void proxy_set_deadline_ms(Conn *c, uint64_t ms);
void proxy_close_upstream(Conn *c);
int proxy_socket_options(int fd);
json_t *proxy_conn_json(const Conn *c);
void proxy_emit(AjProxy *p, const char *type, json_t *fields);
/* Answer with an error and close: an HTTP status or a SOCKS reply code. */
void proxy_refuse(Conn *c, int http_status, uint8_t socks_rep, const char *reason_in);
void proxy_conn_close(Conn *c);
/* A send to the client found its socket full: from now on its room (EPOLLOUT) is watched
 * too. Until then only what it sends is (most connections never fill it, and each ACK of
 * theirs would wake the loop for nothing). < 0: it cannot be (the connection must close). */
int proxy_watch_client_room(Conn *c);
/* Watches each socket for what its directions wait for (CLIENT_EVENTS, UPSTREAM_EVENTS,
 * Dir.unwatched, room_watched). < 0: it cannot be (the connection must close). */
int proxy_watch(Conn *c);
/* Re-run a connection whose state changed without a new edge on its fds. */
void proxy_conn_kick(Conn *c);

/* proxy-request.c */
/* `events`: the client's edge that runs it (0: none, right after accept). */
void proxy_read_request(Conn *c, uint32_t events);
/* Refuse with 403 (SOCKS "not allowed") and record net.denied. */
void proxy_deny(Conn *c, const AjNetVerdict *v, const struct sockaddr *addr);
/* The destination may be reached: resolve it, or connect to the literal. */
void proxy_proceed(Conn *c);
void proxy_connect_failed(Conn *c, int err);
/* Bytes after the one request a plain HTTP connection carries: never relayed. */
void proxy_note_pipelined(Conn *c, const char *data, size_t len);

/* proxy-ask.c */
/* `v` refused c's destination: hold it for an operator when an ask pattern matches.
 * False: not asked for (the caller refuses as before); true: held or refused here. */
bool proxy_ask(Conn *c, const AjNetVerdict *v);
/* A held connection is going away (closed): it no longer waits; the last one cancels. */
void proxy_ask_detach(Conn *c);
/* Hosts approved with --always: the verdict of the grants for c's destination. */
bool proxy_granted(AjProxy *p, const char *host, uint16_t port, AjNetVerdict *ret);

/* proxy-relay.c */
void proxy_start_relay(Conn *c);
void proxy_relay(Conn *c);
/* An edge on one of the connection's sockets: only the directions it concerns run. */
void proxy_relay_events(Conn *c, bool client, uint32_t events);
void proxy_flush_out(Conn *c);
void proxy_linger(Conn *c);
/* Frees a direction's buffer; its growth goes back to the run's room. */
void proxy_free_buffer(Conn *c, Dir *d);
/* Room after `len` bytes in a head buffer that starts at AJ_PROXY_HEAD_BUFFER_MIN and doubles
 * when full, up to `max`; -ENOMEM. */
ssize_t proxy_head_room(char **buf, size_t *cap, size_t len, size_t max);
