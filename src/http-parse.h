/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.x as the egress proxy reads it (pure: no syscalls, no logging): a client's request
 * head, checked against smuggling and rewritten for the upstream; where a chunked body ends;
 * an upstream's response head, rewritten for the client.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net.h"

#define AJ_HTTP_MAX_HEAD (16 * 1024) /* a request head, blank line included */


typedef enum {
        AJ_HTTP_BODY_NONE,
        AJ_HTTP_BODY_LENGTH,      /* Content-Length bytes */
        AJ_HTTP_BODY_CHUNKED,     /* Transfer-Encoding: chunked */
        AJ_HTTP_BODY_UNTIL_CLOSE, /* responses only: until the server closes */
} AjHttpBody;

typedef struct {
        bool is_connect;
        AjHttpBody body; /* absolute-form: how the request's body ends */
        uint64_t content_length;
        char method[16];
        char host[AJ_NET_HOST_MAX + 1]; /* IPv6 without brackets */
        uint16_t port;
        size_t head_len;    /* bytes of the request head, blank line included */
        char *forward_head; /* absolute-form: the head to send upstream (malloc'd) */
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
        char *head; /* the head to send the client (malloc'd) */
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

/* The reason phrase of a status the proxy or the gateway answers with ("Bad Gateway");
 * "Error" for one it does not know. */
const char *aj_http_reason_phrase(unsigned status);
