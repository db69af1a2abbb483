/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy, served from the supervisor's event loop: an HTTP proxy (CONNECT
 * for TLS, absolute-form requests for plain HTTP) and a SOCKS5 proxy (CONNECT with
 * names, IPv4 and IPv6 addresses). The listening sockets live in the jail's network
 * namespace (created by the jail's child, passed to the supervisor); upstream
 * sockets are opened by the supervisor in the host's. Each request is checked with
 * src/net.h, names are resolved with src/resolve.h, data is relayed through a buffer
 * per direction (src/proxy-relay.c), bytes are charged to the egress meter and every
 * connection is an event ("net.connect" when it closes, "net.denied" at refusal). A
 * destination the allowlist refuses but network.ask matches waits for an operator
 * (src/proxy-ask.c).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hooks.h"
#include "http-parse.h"
#include "net.h"
#include "socks-parse.h"

#define AJ_PROXY_HTTP_PORT 3128
#define AJ_PROXY_SOCKS_PORT 1080
#define AJ_PROXY_MAX_HEADER AJ_HTTP_MAX_HEAD
/* What one connection may hold in the host, outside the jail's cgroup: its two sockets'
 * receive and send buffers in the kernel (SO_RCVBUF/SO_SNDBUF, which the kernel doubles
 * for bookkeeping) and its relay buffers in the supervisor (below). Without a bound, TCP
 * autotuning grows each socket to tcp_rmem/tcp_wmem's maximum (6 MiB / 4 MiB by default)
 * for a peer that does not read, and a few hundred idle tunnels push the host's TCP
 * memory into pressure. */
#define AJ_PROXY_SOCKET_BUFFER (256 * 1024)
/* The relay's buffers: each direction's is allocated at its first byte with
 * AJ_PROXY_BUFFER_MIN and grows a step (AJ_PROXY_BUFFER_SIZE, then AJ_PROXY_BUFFER_MAX)
 * each time a read fills it (a bulk transfer: fewer, larger reads and writes), while the
 * run's buffers together stay within AJ_PROXY_BUFFER_SIZE per direction of every
 * connection it may hold (aj_proxy_buffer_may_grow); it is freed when it has drained and
 * its source is idle, or its direction is done. */
#define AJ_PROXY_BUFFER_SIZE (256 * 1024)
#define AJ_PROXY_BUFFER_MIN (64 * 1024)
/* A request or response head's buffer, at first: most heads are under a kilobyte. It doubles
 * while a head fills it, up to AJ_PROXY_MAX_HEADER (requests) or 64 KiB (responses). */
#define AJ_PROXY_HEAD_BUFFER_MIN (4 * 1024)
#define AJ_PROXY_BUFFER_MAX (1024 * 1024)
#define AJ_PROXY_CONN_MAX_BYTES (4 * 2 * AJ_PROXY_SOCKET_BUFFER + 2 * AJ_PROXY_BUFFER_SIZE)
/* Connections at once per run (profile network.max_connections): with the above, a run
 * holds at most max_connections * AJ_PROXY_CONN_MAX_BYTES (256 * 2.5 MiB) in the host
 * (one connection's buffers may hold more than 2 * AJ_PROXY_BUFFER_SIZE, the run's never). */
#define AJ_PROXY_MAX_CONNECTIONS 256

/* Hosts awaiting an operator's decision at once (network.ask), and connections held for
 * them: more are refused (403, net.denied). Held connections count against
 * max_connections too. */
#define AJ_PROXY_MAX_ASKS 16
#define AJ_PROXY_MAX_HELD 64
#define AJ_PROXY_ASK_TIMEOUT_NS (15 * 60 * 1000000000ull)

typedef struct AjProxy AjProxy;

typedef struct {
        uint64_t header_timeout_ms;  /* request head / SOCKS handshake (default 30 s) */
        uint64_t connect_timeout_ms; /* resolution + connect (default 20 s) */
        unsigned max_connections;    /* default AJ_PROXY_MAX_CONNECTIONS */
        /* network.ask (borrowed, may be NULL): a destination the allowlist refuses but one
         * of these matches is held, without a reply, until aj_proxy_decide() or
         * ask_timeout_ns (0: AJ_PROXY_ASK_TIMEOUT_NS), when it is refused. */
        const AjNetPolicy *ask;
        uint64_t ask_timeout_ns;
        /* Optional: the jail's processes holding the client end of accepted socket `fd`,
         * for approval.requested: {"pid", "jail_pid", "cmd"} when one process holds it,
         * else {"pid": null, "note"} saying why it is not known. New reference or NULL. */
        json_t *(*peer_process)(void *userdata, int fd);
        void *peer_userdata;
} AjProxyOptions;

/* In the jail's child, after lo is up: 127.0.0.1:3128 (HTTP) and 127.0.0.1:1080
 * (SOCKS5), listening, O_CLOEXEC|O_NONBLOCK. */
int aj_proxy_listen_in_current_netns(int *ret_http_fd, int *ret_socks_fd);
/* Same for any loopback address and port (tests; port 0 picks one: see getsockname). */
int aj_proxy_listen_at(const char *address, uint16_t port, int *ret_fd);

/* Takes ownership of both fds (also on failure). `policy` and `hooks` are borrowed and
 * must outlive the proxy. `opts` may be NULL. */
int aj_proxy_new(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks, AjProxy **ret);
int aj_proxy_new_with_options(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks,
                              const AjProxyOptions *opts, AjProxy **ret);
int aj_proxy_fd(AjProxy *p);
int aj_proxy_dispatch(AjProxy *p);
/* Closes every connection (emitting their net.connect events). */
void aj_proxy_free(AjProxy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjProxy *, aj_proxy_free);
/* {"connections", "active", "denied", "bytes_up", "bytes_down"}; new reference. */
json_t *aj_proxy_stats(AjProxy *p);
/* What the relay's buffers hold now, every connection's both directions (their sizes). */
size_t aj_proxy_relay_buffer_bytes(const AjProxy *p);
/* What the connections' head buffers hold now (request and response heads; their sizes). */
size_t aj_proxy_head_buffer_bytes(const AjProxy *p);

/* Hosts awaiting approval, oldest first: [{"id": "net-N", "kind": "net", "host", "port",
 * "pattern", "state": "awaiting_approval", "connections", "process", "since", "age_s",
 * "timeout_in_s"}]. New reference, NULL without memory. */
json_t *aj_proxy_pending(AjProxy *p);
/* Approve or deny the host approval `id` ("net-N"): every connection waiting for it goes
 * on (judged as if allowed: resolution and the internal-address rules still apply) or
 * is refused (403, SOCKS "not allowed"). `always` (approve only) adds "host:port" to the
 * run's allowlist for the rest of the run. `by` names the operator. On success *ret
 * (if given) is {"id", "kind", "host", "port", "decision", "always", "connections"}.
 * -ENOENT: no such approval pending. */
int aj_proxy_decide(AjProxy *p, const char *id, bool approve, bool always, const char *by, const char *reason,
                    json_t **ret, AjError *ret_error);
/* Every pending host approval is cancelled (recorded; its connections closed). */
void aj_proxy_cancel_asks(AjProxy *p, const char *reason);

/* The agent's environment: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and lower-case
 * forms, appended as "KEY=VALUE" to a NULL-terminated vector. */
int aj_proxy_env_append(char ***env);

/* The parsers (pure): src/http-parse.h and src/socks-parse.h. */

/* Whether a relay buffer of `cap` bytes may grow to `want` when the run's buffers hold
 * `excess` bytes past AJ_PROXY_BUFFER_MIN each and it relays for at most max_connections
 * connections: the growth stays within max_connections * 2 * (AJ_PROXY_BUFFER_SIZE -
 * AJ_PROXY_BUFFER_MIN), so with every buffer's minimum the run's stay within
 * max_connections * 2 * AJ_PROXY_BUFFER_SIZE (pure). */
bool aj_proxy_buffer_may_grow(size_t excess, size_t cap, size_t want, unsigned max_connections);
