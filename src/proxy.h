/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy, served from the supervisor's event loop: an HTTP proxy (CONNECT
 * for TLS, absolute-form requests for plain HTTP) and a SOCKS5 proxy (CONNECT with
 * names, IPv4 and IPv6 addresses). The listening sockets live in the jail's network
 * namespace (created by the jail's child, passed to the supervisor); upstream
 * sockets are opened by the supervisor in the host's. Each request is checked with
 * src/net.h, names are resolved with src/resolve.h, data is spliced through a pipe
 * per direction, bytes are charged to the egress meter and every connection is an
 * event ("net.connect" when it closes, "net.denied" at refusal).
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
/* What one connection may hold in the host's kernel, outside the jail's cgroup: its two
 * sockets' receive and send buffers (SO_RCVBUF/SO_SNDBUF, which the kernel doubles for
 * bookkeeping) and its two pipes. Without a bound, TCP autotuning grows each socket to
 * tcp_rmem/tcp_wmem's maximum (6 MiB / 4 MiB by default) for a peer that does not read,
 * and a few hundred idle tunnels push the host's TCP memory into pressure. */
#define AJ_PROXY_SOCKET_BUFFER (256 * 1024)
#define AJ_PROXY_PIPE_SIZE (256 * 1024)
#define AJ_PROXY_CONN_MAX_BYTES (4 * 2 * AJ_PROXY_SOCKET_BUFFER + 2 * AJ_PROXY_PIPE_SIZE)
/* Connections at once per run (profile network.max_connections): with the above, a run
 * holds at most max_connections * AJ_PROXY_CONN_MAX_BYTES (256 * 2.5 MiB) in the host. */
#define AJ_PROXY_MAX_CONNECTIONS 256

typedef struct AjProxy AjProxy;

typedef struct {
        uint64_t header_timeout_ms;  /* request head / SOCKS handshake (default 30 s) */
        uint64_t connect_timeout_ms; /* resolution + connect (default 20 s) */
        unsigned max_connections;    /* default AJ_PROXY_MAX_CONNECTIONS */
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

/* The agent's environment: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and lower-case
 * forms, appended as "KEY=VALUE" to a NULL-terminated vector. */
int aj_proxy_env_append(char ***env);

/* The parsers (pure): src/http-parse.h and src/socks-parse.h. */
