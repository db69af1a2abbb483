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
#include "net.h"

#define AJ_PROXY_HTTP_PORT 3128
#define AJ_PROXY_SOCKS_PORT 1080
#define AJ_PROXY_MAX_HEADER (16 * 1024)
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

/* ---- Parsers (pure; exposed for tests) ---- */

typedef enum {
        AJ_HTTP_BODY_NONE,
        AJ_HTTP_BODY_LENGTH,  /* Content-Length bytes */
        AJ_HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
        AJ_HTTP_BODY_UNTIL_CLOSE, /* responses only: until the server closes */
} AjHttpBody;

typedef struct {
        bool is_connect;
        AjHttpBody body;          /* absolute-form: how the request's body ends */
        uint64_t content_length;
        char method[16];
        char host[AJ_NET_HOST_MAX + 1]; /* IPv6 without brackets */
        uint16_t port;
        size_t head_len;        /* bytes of the request head, blank line included */
        char *forward_head;     /* absolute-form: the head to send upstream (malloc'd) */
        size_t forward_len;
} AjHttpRequest;

/* 0 and *ret filled: a complete head; -EAGAIN: need more bytes; -EPERM: a request whose
 * Host header is missing (HTTP/1.1), repeated or names another authority than the
 * request line (status 400; only ret->host and ret->port are filled, for the denial);
 * otherwise -EINVAL with an HTTP status (400, 414, 431) and a one-line reason in why.
 * Rejected as request smuggling: bare CR, NUL and other controls, folded lines, a
 * Content-Length that is not digits or is repeated, Transfer-Encoding other than one
 * "chunked" (or on HTTP/1.0), both Content-Length and Transfer-Encoding. */
int aj_http_parse_request(const char *buf, size_t len, AjHttpRequest *ret, int *ret_status, const char **ret_why);
void aj_http_request_done(AjHttpRequest *req);

/* Where a chunked body ends (RFC 9112 7.1; strict: CRLF only, at most 15 hex digits, bounded
 * extensions and trailers). Start zeroed. */
typedef struct {
        uint8_t state;
        unsigned digits;
        uint64_t left;
        size_t line;
} AjHttpChunked;

/* How many of `len` bytes belong to the body: all of them, or up to its end (*ret_done).
 * -EBADMSG: malformed. */
ssize_t aj_http_chunked_scan(AjHttpChunked *s, const char *buf, size_t len, bool *ret_done);

typedef struct {
        char *head;     /* the head to send the client (malloc'd) */
        size_t head_len;
        size_t consumed; /* bytes of the upstream's head */
        bool final;      /* false: an interim 1xx, another head follows */
        AjHttpBody body; /* where the body ends (RFC 9112 6.3) */
        uint64_t content_length;
} AjHttpResponse;

/* An upstream's response head, rewritten for the client: Connection, Keep-Alive and
 * Proxy-Connection dropped and "Connection: close" added (one request per client
 * connection). Interim 1xx heads (not 101) are passed on as they are. 0: *ret filled;
 * -EAGAIN: need more; -EBADMSG: not an HTTP/1.x response head, or conflicting
 * Content-Length. */
int aj_http_rewrite_response(const char *buf, size_t len, bool head_request, AjHttpResponse *ret);

typedef struct {
        char host[AJ_NET_HOST_MAX + 1]; /* name, or address as text */
        uint16_t port;
        uint8_t atyp;                   /* 1, 3 or 4 */
        size_t consumed;
} AjSocksRequest;

/* Greeting: >0 bytes consumed (no-auth offered), -EAGAIN need more, -EPROTO bad version,
 * -EPERM no acceptable method. */
int aj_socks_parse_greeting(const uint8_t *buf, size_t len);
/* Request: 0 ok, -EAGAIN need more, otherwise a SOCKS reply code (1..8) with why. */
int aj_socks_parse_request(const uint8_t *buf, size_t len, AjSocksRequest *ret, uint8_t *ret_rep,
                           const char **ret_why);
