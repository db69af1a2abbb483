/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the relay's agent side (relay.c) and its upstream side
 * (relay-upstream.c). One GwConn is one agent connection; it owns at most one upstream
 * connection, kept alive between its requests to the same provider.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/gateway.h"
#include "gateway/http.h"
#include "gateway/tls.h"
#include "resolve.h"
#include "util/loop.h"

/* Bytes queued for the agent above which the upstream is not read (back-pressure), and
 * the most a filter may queue beyond it. */
#define GW_OUT_HIGH (64 * 1024)
#define GW_OUT_MAX (1024 * 1024)
#define GW_READ_CHUNK (16 * 1024)
#define GW_UPSTREAM_MAX_HEAD (64 * 1024)
#define GW_MAX_ADDRS 8
/* An upstream socket's kernel buffers: fixed, as the proxy's (src/proxy.h), so that a
 * response the agent does not read pins a bounded amount of the host's TCP memory. */
#define GW_SOCKET_BUFFER (256 * 1024)
/* After an error the agent may still be sending: its input is read and dropped for a
 * while, so that closing does not reset the connection before it read our answer. */
#define GW_LINGER_MS 2000
#define GW_LINGER_MAX (4 * 1024 * 1024)

typedef struct {
        char *data;
        size_t off, len, cap; /* pending bytes: data[off, len) */
} GwBuf;

int gw_buf_append(GwBuf *b, const void *p, size_t n, size_t max);
int gw_buf_printf(GwBuf *b, size_t max, const char *fmt, ...) _printf_(3, 4);
void gw_buf_consume(GwBuf *b, size_t n);
/* Frees; `wipe` zeroes first (a buffer that held the credential). */
void gw_buf_free(GwBuf *b, bool wipe);
static inline size_t gw_buf_pending(const GwBuf *b) { return b->len - b->off; }

typedef struct {
        AjGatewayProvider pub; /* strings owned */
        char *host;            /* no brackets */
        char *host_header;     /* Host: value */
        char *base_path;       /* url's path without a trailing '/', may be "" */
        uint16_t port;
        bool tls;
        SSL_CTX *tls_ctx;
        struct sockaddr_storage addr;
        bool have_addr; /* pre-resolved or a literal */
} GwProvider;

/* relay-provider.c: ret_error (may be NULL) may say why it failed. */
int gw_provider_init(GwProvider *p, const AjGatewayProvider *src, AjError *ret_error);
void gw_provider_done(GwProvider *p);

enum { C_HEAD, C_BODY, C_UPSTREAM, C_CLOSING };
enum { U_NONE, U_RESOLVING, U_CONNECTING, U_HANDSHAKE, U_SENDING, U_HEAD, U_BODY, U_IDLE };

typedef struct {
        int fd;
        AjLoopIo *io;
        SSL *ssl;
        int state;
        size_t provider;
        bool reused;    /* kept alive from an earlier request */
        bool got_bytes; /* of this request's response */
        bool retried;
        bool paused; /* back-pressure: the agent has GW_OUT_HIGH queued */
        uint64_t resolve_id;
        struct sockaddr_storage addrs[GW_MAX_ADDRS];
        size_t n_addrs, next_addr;
        size_t sent; /* of the connection's request bytes */
        GwBuf in;
        AjGwBody body;
        uint64_t left;
        AjGwChunked chunked;
        bool keep_alive;
        bool head_request;
        bool local; /* served from `served` (AjGatewayVerdict.response), no socket */
        GwBuf served;
} GwUpstream;

struct AjGateway {
        AjLoop *loop;
        GwProvider *providers;
        size_t n_providers;
        AjGatewayObserver obs;
        AjGatewayOptions opts;
        int listen_fd;
        AjLoopIo *listen_io;
        AjResolver *resolver;
        struct GwConn *conns;
        unsigned n_conns;
        uint64_t next_call_id;
        size_t buffered; /* request body bytes held, all connections */
};

typedef struct GwConn {
        AjGateway *gw;
        struct GwConn *prev, *next;
        int fd;
        AjLoopIo *io;
        AjLoopTimer timer;
        int state;
        bool lingering; /* C_CLOSING: our side is shut down, the agent's input drained */
        size_t drained;
        GwBuf in, out;
        /* the request being read or relayed */
        char *head; /* a copy: rq's pointers point here */
        AjGwRequestHead rq;
        size_t provider;
        bool routed;
        GwBuf body;
        AjGwChunked chunked;
        uint64_t body_left;
        char *method, *path;
        GwBuf upreq; /* head + body for the upstream: holds the credential */
        AjGatewayCall call;
        bool in_call;
        bool head_sent;      /* the response head went to the agent */
        bool client_chunked; /* ... with a chunked body */
        int sink_error;      /* a filter's write failed: the response cannot be relayed whole */
        /* The end of the body relayed so far that may begin the credential, held until the
         * next piece (or the end) tells (at most its length - 1; gw_conn_scrub()). */
        char *scrub_held;
        size_t scrub_len;
        bool agent_gone;  /* the agent left during the call: its output is dropped */
        size_t gone_read; /* bytes read from the provider since (at most GW_LINGER_MAX in all) */
        GwUpstream up;
} GwConn;

/* relay.c, for the upstream side */
void gw_conn_arm_timer(GwConn *c, uint64_t ms);
/* The upstream's response head (parsed), then body bytes, then its end. < 0: close c. */
int gw_conn_response_head(GwConn *c, const AjGwResponseHead *h);
int gw_conn_response_data(GwConn *c, const char *buf, size_t n);
int gw_conn_response_end(GwConn *c);
/* The upstream failed: a 502/504 if nothing was sent yet, else the agent's connection
 * ends. Always returns < 0 or 0 after queueing the error; the caller returns it. */
int gw_conn_upstream_failed(GwConn *c, unsigned status, const char *fmt, ...) _printf_(3, 4);
int gw_conn_update_events(GwConn *c);

/* relay-upstream.c */
int gw_upstream_start(GwConn *c);
/* Reads `response` (taken: a whole HTTP/1.1 response) as if a provider had sent it. */
int gw_upstream_serve(GwConn *c, char *response, size_t len);
/* Drives a paused upstream after the agent drained its queue. */
int gw_upstream_resume(GwConn *c);
void gw_upstream_close(GwConn *c);
/* The request is over: keep the connection for the next one if it is reusable. */
void gw_upstream_finish(GwConn *c, bool reusable);

/* relay.c */
int gw_conn_flush(GwConn *c);
/* Ends every loop callback that touched c (it may free c). */
void gw_conn_settle(GwConn *c, int r);
/* Reads what the agent already sent (pipelined requests) when the connection is idle. */
int gw_conn_process(GwConn *c);
void gw_conn_request_reset(GwConn *c);

/* relay-response.c */
void gw_call_end(GwConn *c, AjGatewayOutcome outcome);
/* An error response made by the relay (not in a call, or refused), then the connection
 * closes unless keep is set. api < 0: the shape both SDKs read. */
int gw_conn_error(GwConn *c, int api, unsigned status, const char *type, const char *code, const char *message,
                  bool keep);
/* gw_conn_error() for a request the relay answers itself, outside any call: the observer
 * hears of it (on_refused) and the connection closes after the answer. target: the
 * request's path when known (else c->path, which may be NULL). */
int gw_conn_refuse(GwConn *c, int api, unsigned status, const char *type, const char *target, const char *message);
