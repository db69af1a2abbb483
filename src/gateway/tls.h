/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's TLS client (OpenSSL): one context per provider (the system's trust store
 * plus an optional CA file, TLS 1.2 or newer, peer verification required), and
 * non-blocking sessions with SNI and host name (or IP address) verification. OpenSSL's
 * error conventions end here: callers see -errno and a message.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* Loads OpenSSL (dlopen'ed on first use, so runs without a gateway never pay for it).
 * The supervisor calls it before the command may start: a host without libssl refuses
 * the run instead of starting it with a gateway that cannot reach its providers. */
int aj_gw_tls_load(AjError *ret_error);

/* ca_file may be NULL. On failure ret_error (may be NULL) says why. */
int aj_gw_tls_ctx_new(const char *ca_file, SSL_CTX **ret, AjError *ret_error);
void aj_gw_tls_ctx_free(SSL_CTX *ctx);

/* A client session on a connected non-blocking socket, verifying `host` (a name or an
 * address literal). The fd stays the caller's. */
int aj_gw_tls_new(SSL_CTX *ctx, int fd, const char *host, SSL **ret);
void aj_gw_tls_free(SSL *ssl);

/* 0: done; -EAGAIN: call again when *ret_events (EPOLLIN/EPOLLOUT) are ready; -EPROTO:
 * failed, ret_error (may be NULL) says why, e.g. the certificate verification result. */
int aj_gw_tls_handshake(SSL *ssl, uint32_t *ret_events, AjError *ret_error);
/* > 0 bytes, 0 at a clean or unclean end of stream, -EAGAIN (with *ret_events), -EIO. */
ssize_t aj_gw_tls_read(SSL *ssl, void *buf, size_t n, uint32_t *ret_events);
ssize_t aj_gw_tls_write(SSL *ssl, const void *buf, size_t n, uint32_t *ret_events);
/* Bytes OpenSSL already decrypted and holds (epoll will not report them). */
size_t aj_gw_tls_pending(SSL *ssl);
