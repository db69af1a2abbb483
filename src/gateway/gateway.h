/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LLM gateway's relay: an HTTP/1.1 server for the agent (on a listening socket the
 * caller made, in the jail's network namespace) that routes each request by path prefix
 * to a provider, injects the provider's real credential and relays the response as it
 * arrives, over TLS (OpenSSL, verified) or plain HTTP. It runs on its own AjLoop, nested
 * in the supervisor's like the broker's and the proxy's: poll aj_gateway_fd() and call
 * aj_gateway_dispatch(). Metering plugs in through AjGatewayObserver; the relay knows
 * nothing about tokens or prices. See docs/gateway-relay.md.
 *
 * The process must ignore SIGPIPE (the supervisor does): TLS writes use write(2).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/http.h"
#include "util/error.h"
#include "util/macros.h"

/* The jail-side port (in the jail's own network namespace, on 127.0.0.1). Make the
 * listening socket with aj_proxy_listen_at() (src/proxy.h): its accepted sockets inherit
 * the proxy's fixed kernel buffer sizes. */
#define AJ_GATEWAY_PORT 4100

typedef struct AjGateway AjGateway;

typedef enum {
        AJ_GATEWAY_API_ANTHROPIC,
        AJ_GATEWAY_API_OPENAI,
} AjGatewayApi;

typedef struct {
        const char *name;       /* [a-z0-9_-]; routes "/NAME" and below unless prefix is set */
        const char *prefix;     /* optional: "/anthropic" ("/" alone routes everything) */
        AjGatewayApi api;       /* where the credential goes, and the error shape */
        const char *url;        /* "https://host[:port][/base]" or "http://..." */
        const char *credential; /* the real key, read on the host; never sent to the agent */
        const char *ca_file;    /* optional: trusted in addition to the system's store */
        /* Optional: connect here instead of resolving the url's host (the port is the
         * url's); the host name is still what TLS verifies. */
        const struct sockaddr_storage *address;
} AjGatewayProvider;

typedef struct {
        size_t max_head;              /* request head, default 64 KiB (431 past it) */
        size_t max_body;              /* one request body, default 16 MiB (413) */
        size_t max_buffered;          /* request bodies held at once, all connections: 64 MiB (503) */
        unsigned max_connections;     /* agent connections at once, default 64 */
        uint64_t idle_timeout_ms;     /* a request must arrive whole within: default 60 s */
        uint64_t connect_timeout_ms;  /* resolve + connect + TLS: default 20 s */
        uint64_t response_timeout_ms; /* upstream silent for: default 600 s (504) */
} AjGatewayOptions;

/* One model call: a request the agent sent whole and the relay routed. */
typedef struct {
        uint64_t id; /* 1, 2, ... per gateway */
        const AjGatewayProvider *provider;
        const char *method;
        const char *path;       /* as sent upstream, query included */
        uint64_t started_ns;    /* CLOCK_MONOTONIC, when the request was complete */
        uint64_t first_byte_ns; /* when the upstream's response head arrived, 0 before */
        void *data;             /* the observer's, from on_request to on_done */
        bool agent_left;        /* the agent closed its connection before the call ended */
        /* The request went to the provider whole (its last byte written): from then on the
         * provider may generate, and bill, all it was asked for, whatever is read of it. */
        bool forwarded;
} AjGatewayCall;

typedef struct {
        const AjGwHeader *headers; /* the agent's, as it sent them (placeholder key included) */
        size_t n_headers;
        const char *body; /* the complete body, de-chunked */
        size_t body_len;
} AjGatewayRequest;

/* on_request's answer; zeroed on entry: allow, body unchanged. */
typedef struct {
        unsigned status;        /* != 0: refused with this status (429...), never forwarded */
        const char *error_type; /* e.g. "rate_limit_error" (Anthropic) / "insufficient_quota" */
        const char *error_code; /* OpenAI's "code", may be NULL */
        char message[512];
        char *body; /* optional replacement body (malloc'd, the relay takes it) */
        size_t body_len;
        /* Optional, with status 0: a complete HTTP/1.1 response (head and framed body,
         * malloc'd, the relay takes it) served as if the provider had sent it. Nothing is
         * forwarded; the observer sees it as any response (head, bytes, filter, done) and
         * the agent gets it read and re-framed as a provider's (replay: src/supervisor/
         * llm-replay.c). */
        char *response;
        size_t response_len;
} AjGatewayVerdict;

typedef enum {
        AJ_GATEWAY_CONTINUE,
        AJ_GATEWAY_CUT, /* end the agent's response here and close the upstream */
} AjGatewayFlow;

typedef enum {
        /* The whole response was relayed (or, the agent gone, read and seen by the
         * observer: agent_left). */
        AJ_GATEWAY_COMPLETED,
        AJ_GATEWAY_CUT_SHORT, /* on_response_bytes cut it, or the agent left before its end */
        AJ_GATEWAY_FAILED,    /* upstream unreachable, TLS, timeout, malformed */
        AJ_GATEWAY_REFUSED,   /* on_request refused it */
} AjGatewayOutcome;

typedef struct GwConn AjGatewaySink;
/* From a filter: forward these bytes to the agent. -ENOBUFS past the per-connection bound. */
int aj_gateway_sink_write(AjGatewaySink *sink, const void *buf, size_t n);

/* Every callback is optional. on_done is called once for every call on_request saw. */
typedef struct {
        void *userdata;
        /* Whether a routed request may go to its provider at all, asked as soon as its head is
         * read (before its body): `path` is its target under the provider's prefix, canonical
         * (aj_gw_target_not_canonical()), query included ("/v1/files?x" of "/openai/v1/files?x",
         * "/" for the prefix itself). A verdict with a status refuses it (its status, error_type
         * and message are read): the agent gets it in the provider's shape, on_refused sees it,
         * nothing reaches the provider, and the connection closes. NULL: every request may. */
        void (*admit)(void *userdata, const AjGatewayProvider *provider, const char *method, const char *path,
                      AjGatewayVerdict *verdict);
        void (*on_request)(void *userdata, AjGatewayCall *call, const AjGatewayRequest *req, AjGatewayVerdict *verdict);
        void (*on_response_head)(void *userdata, AjGatewayCall *call, unsigned status, const AjGwHeader *headers,
                                 size_t n_headers);
        /* The response body as it arrives, de-chunked. Bytes of a call that returns CUT are
         * not forwarded. */
        AjGatewayFlow (*on_response_bytes)(void *userdata, AjGatewayCall *call, const char *buf, size_t n);
        /* NULL: the body is forwarded as it arrives. Otherwise the filter forwards what it
         * chooses with aj_gateway_sink_write(), now or later; final: the body ended (n == 0),
         * forward what is held back. The agent then gets a chunked body. */
        void (*filter)(void *userdata, AjGatewayCall *call, const char *buf, size_t n, bool final, AjGatewaySink *sink);
        void (*on_done)(void *userdata, AjGatewayCall *call, AjGatewayOutcome outcome, uint64_t latency_ns);
        /* An answer the relay made itself, with no call: a request it could not parse or
         * route, a body past its bounds or incomplete in time. method and target (the
         * request's path, printable ASCII) are NULL where they were not read; message is
         * what the agent was told. The connection closes after it. */
        void (*on_refused)(void *userdata, const char *method, const char *target, unsigned status,
                           const char *message);
} AjGatewayObserver;

/* Takes listen_fd (listening, O_NONBLOCK|O_CLOEXEC), also on failure. The providers are
 * copied; observer and opts may be NULL. On failure ret_error (may be NULL) may say why. */
int aj_gateway_new(int listen_fd, const AjGatewayProvider *providers, size_t n_providers,
                   const AjGatewayObserver *observer, const AjGatewayOptions *opts, AjGateway **ret,
                   AjError *ret_error);
int aj_gateway_fd(AjGateway *gw);
int aj_gateway_dispatch(AjGateway *gw);
/* Closes every connection; calls in flight end as FAILED. */
void aj_gateway_free(AjGateway *gw);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjGateway *, aj_gateway_free);

/* Agent connections open now (tests, stats). */
unsigned aj_gateway_connections(const AjGateway *gw);

/* `freed` bytes were just freed (a request body and the DOM the meter built of it, a
 * response): when that is at least AJ_GATEWAY_TRIM_BYTES, glibc's free pages go back to the
 * host (malloc_trim(0)): glibc keeps a heap that grew, and the supervisor is in no memory
 * cgroup. Cheap for a small heap; never called for small calls. */
#define AJ_GATEWAY_TRIM_BYTES (1u << 20)
void aj_gateway_release_memory(size_t freed);

/* The error body an agent's SDK understands, in the provider's shape (malloc'd JSON):
 * Anthropic {"type":"error","error":{"type":T,"message":M}}, OpenAI
 * {"error":{"message":M,"type":T,"code":C}}. */
char *aj_gateway_error_body(AjGatewayApi api, const char *type, const char *code, const char *message);
