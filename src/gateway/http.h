/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's HTTP/1.1 parsers (pure, no syscalls, never log): an origin-form request
 * head from the agent (strict: an agent is hostile), an upstream's response head, and a
 * chunked-body decoder for both directions. Heads are parsed in place: names and values
 * point into the caller's buffer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AJ_GW_MAX_HEADERS 100
#define AJ_GW_MAX_TARGET 8192

typedef struct {
        const char *name;
        size_t name_len;
        const char *value; /* optional whitespace trimmed */
        size_t value_len;
} AjGwHeader;

typedef enum {
        AJ_GW_BODY_NONE,
        AJ_GW_BODY_LENGTH,
        AJ_GW_BODY_CHUNKED,
        AJ_GW_BODY_UNTIL_CLOSE, /* responses only */
} AjGwBody;

typedef struct {
        const char *method;
        size_t method_len;
        const char *target; /* origin-form: starts with '/' */
        size_t target_len;
        unsigned minor; /* HTTP/1.minor */
        AjGwHeader headers[AJ_GW_MAX_HEADERS];
        size_t n_headers;
        AjGwBody body;
        uint64_t content_length;
        bool keep_alive;
        bool expect_continue;
        size_t head_len; /* bytes of the head, blank line included */
} AjGwRequestHead;

typedef struct {
        unsigned status;
        const char *reason;
        size_t reason_len;
        AjGwHeader headers[AJ_GW_MAX_HEADERS];
        size_t n_headers;
        AjGwBody body;
        uint64_t content_length;
        bool keep_alive;
        size_t head_len;
} AjGwResponseHead;

/* 0: a complete head in *ret; -EAGAIN: need more bytes (the caller answers 431 once it holds
 * max_head bytes); -EINVAL: refused, with an HTTP status (400, 414, 431, 501, 505) and a
 * one-line reason. Refused as smuggling or ambiguity: bare CR or LF, controls, obs-fold,
 * whitespace before a colon, a Content-Length that is not digits or is repeated, a
 * Transfer-Encoding other than one "chunked" (or on HTTP/1.0), both Content-Length and
 * Transfer-Encoding, more than one Host, a target that is not origin-form. */
/* NULL when a request target has the one spelling the gateway serves, else why not
 * (parse_request_head refuses such a target with 400; see http.c). */
const char *aj_gw_target_not_canonical(const char *target, size_t len);
int aj_gw_parse_request_head(const char *buf, size_t len, size_t max_head, AjGwRequestHead *ret, int *ret_status,
                             const char **ret_why);

/* 0, -EAGAIN (need more; -EBADMSG once max_head bytes are held) or -EBADMSG: not an HTTP/1.x
 * response, or conflicting framing. head_request / 1xx / 204 / 304: no body. */
int aj_gw_parse_response_head(const char *buf, size_t len, size_t max_head, bool head_request, AjGwResponseHead *ret);

/* The first header named `name` (case-insensitive), NULL if none. */
const AjGwHeader *aj_gw_header_find(const AjGwHeader *h, size_t n, const char *name);
bool aj_gw_header_is(const AjGwHeader *h, const char *name);
/* Whether a comma-separated value lists `token` (case-insensitive; Connection). */
bool aj_gw_value_has_token(const char *value, size_t len, const char *token);

/* Chunked body decoder (RFC 9112 7.1): strict CRLF, at most 15 hex digits, bounded chunk
 * extensions and trailers (discarded). Start zeroed. */
typedef struct {
        uint8_t state;
        unsigned digits;
        uint64_t left;
        size_t line;
} AjGwChunked;

/* Consumes framing from `in` up to and including at most one span of data, which is
 * returned in *ret_data / *ret_data_len (a pointer into `in`, possibly empty). Returns the
 * bytes consumed (> 0 when len > 0 and not done), -EBADMSG when malformed. *ret_done: the
 * last chunk and the trailers were read; the bytes after it are not consumed. */
ssize_t aj_gw_chunked_next(AjGwChunked *s, const char *in, size_t len, const char **ret_data, size_t *ret_data_len,
                           bool *ret_done);
