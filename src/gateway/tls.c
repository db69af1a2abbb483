/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>

#include <dlfcn.h>

#include "net.h"

/*
 * OpenSSL is loaded when a run first needs TLS (a gateway with an https:// provider), not
 * linked: libcrypto's relocations cost every agentjail process most of a millisecond at
 * start-up (measured: `run` refusing a missing profile, 0.73 -> 1.47 ms), and most runs
 * never speak TLS. The functions below are resolved once from the library whose major
 * version the headers are; a missing library fails the gateway's start, closed.
 */
/* clang-format off */
#define TLS_FUNCTIONS(X) \
        X(ERR_clear_error) \
        X(ERR_peek_last_error) \
        X(ERR_error_string_n) \
        X(TLS_client_method) \
        X(SSL_CTX_new) \
        X(SSL_CTX_free) \
        X(SSL_CTX_ctrl) \
        X(SSL_CTX_set_verify) \
        X(SSL_CTX_set_options) \
        X(SSL_CTX_set_alpn_protos) \
        X(SSL_CTX_set_default_verify_paths) \
        X(SSL_CTX_load_verify_locations) \
        X(SSL_new) \
        X(SSL_free) \
        X(SSL_ctrl) \
        X(SSL_set_fd) \
        X(SSL_set_connect_state) \
        X(SSL_set1_host) \
        X(SSL_get0_param) \
        X(X509_VERIFY_PARAM_set_hostflags) \
        X(X509_VERIFY_PARAM_set1_ip_asc) \
        X(SSL_do_handshake) \
        X(SSL_get_error) \
        X(SSL_get_verify_result) \
        X(X509_verify_cert_error_string) \
        X(SSL_read_ex) \
        X(SSL_write_ex) \
        X(SSL_pending)
/* clang-format on */

static struct {
#define TLS_FIELD(f) __typeof__(&f) f;
        TLS_FUNCTIONS(TLS_FIELD)
#undef TLS_FIELD
} tls_lib;
static int tls_lib_state; /* 0: not tried, 1: loaded, < 0: -errno of the failed load */
static char tls_lib_error[256];

#ifdef OPENSSL_SHLIB_VERSION
#define TLS_STR2(x) #x
#define TLS_STR(x) TLS_STR2(x)
#define TLS_LIBRARY "libssl.so." TLS_STR(OPENSSL_SHLIB_VERSION)
#else
#define TLS_LIBRARY "libssl.so.1.1"
#endif

static int tls_lib_load(void)
{
        if (tls_lib_state)
                return tls_lib_state < 0 ? tls_lib_state : 0;
        /* libssl brings libcrypto, whose functions dlsym() finds through it. */
        void *h = dlopen(TLS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                snprintf(tls_lib_error, sizeof(tls_lib_error), "cannot load " TLS_LIBRARY ": %s", dlerror());
                return tls_lib_state = -ELIBACC;
        }
#define TLS_RESOLVE(f)                                                                        \
        if (!(tls_lib.f = (__typeof__(&f))dlsym(h, #f))) {                                    \
                snprintf(tls_lib_error, sizeof(tls_lib_error), TLS_LIBRARY " has no %s", #f); \
                return tls_lib_state = -ELIBBAD;                                              \
        }
        TLS_FUNCTIONS(TLS_RESOLVE)
#undef TLS_RESOLVE
        return tls_lib_state = 1, 0;
}

/* From here on, each OpenSSL call goes through the table (macros in OpenSSL's headers, such
 * as SSL_set_tlsext_host_name, expand to the functions below and come here too). */
#define TLS_CALL(f) (*tls_lib.f)
#define ERR_clear_error TLS_CALL(ERR_clear_error)
#define ERR_peek_last_error TLS_CALL(ERR_peek_last_error)
#define ERR_error_string_n TLS_CALL(ERR_error_string_n)
#define TLS_client_method TLS_CALL(TLS_client_method)
#define SSL_CTX_new TLS_CALL(SSL_CTX_new)
#define SSL_CTX_free TLS_CALL(SSL_CTX_free)
#define SSL_CTX_ctrl TLS_CALL(SSL_CTX_ctrl)
#define SSL_CTX_set_verify TLS_CALL(SSL_CTX_set_verify)
#define SSL_CTX_set_options TLS_CALL(SSL_CTX_set_options)
#define SSL_CTX_set_alpn_protos TLS_CALL(SSL_CTX_set_alpn_protos)
#define SSL_CTX_set_default_verify_paths TLS_CALL(SSL_CTX_set_default_verify_paths)
#define SSL_CTX_load_verify_locations TLS_CALL(SSL_CTX_load_verify_locations)
#define SSL_new TLS_CALL(SSL_new)
#define SSL_free TLS_CALL(SSL_free)
#define SSL_ctrl TLS_CALL(SSL_ctrl)
#define SSL_set_fd TLS_CALL(SSL_set_fd)
#define SSL_set_connect_state TLS_CALL(SSL_set_connect_state)
#define SSL_set1_host TLS_CALL(SSL_set1_host)
#define SSL_get0_param TLS_CALL(SSL_get0_param)
#define X509_VERIFY_PARAM_set_hostflags TLS_CALL(X509_VERIFY_PARAM_set_hostflags)
#define X509_VERIFY_PARAM_set1_ip_asc TLS_CALL(X509_VERIFY_PARAM_set1_ip_asc)
#define SSL_do_handshake TLS_CALL(SSL_do_handshake)
#define SSL_get_error TLS_CALL(SSL_get_error)
#define SSL_get_verify_result TLS_CALL(SSL_get_verify_result)
#define X509_verify_cert_error_string TLS_CALL(X509_verify_cert_error_string)
#define SSL_read_ex TLS_CALL(SSL_read_ex)
#define SSL_write_ex TLS_CALL(SSL_write_ex)
#define SSL_pending TLS_CALL(SSL_pending)

/* Sets ret_error to "WHAT: " and OpenSSL's last error, and returns err. */
static int last_error(AjError *ret_error, int err, const char *what)
{
        char buf[256] = "unknown error";
        unsigned long e = ERR_peek_last_error();
        if (e)
                ERR_error_string_n(e, buf, sizeof(buf));
        ERR_clear_error();
        return aj_error_set(ret_error, err, "%s: %s", what, buf);
}

int aj_gw_tls_load(AjError *ret_error)
{
        int r = tls_lib_load();
        if (r < 0)
                return aj_error_set(ret_error, r, "No TLS for the gateway: %s (Debian: apt-get install libssl3)",
                                    tls_lib_error);
        return 0;
}

int aj_gw_tls_ctx_new(const char *ca_file, SSL_CTX **ret, AjError *ret_error)
{
        int r = aj_gw_tls_load(ret_error);
        if (r < 0)
                return r;
        ERR_clear_error();
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return last_error(ret_error, -ENOMEM, "Failed to create a TLS context");
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* Renegotiation and compression are attack surface we do not need. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
        /* An end of stream without close_notify reads as an end: the HTTP framing (length,
         * last chunk) is what tells a complete response from a truncated one. */
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        static const unsigned char alpn[] = "\x08http/1.1";
        if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0 || SSL_CTX_set_default_verify_paths(ctx) != 1) {
                r = last_error(ret_error, -EIO, "Failed to load the system's trust store");
                SSL_CTX_free(ctx);
                return r;
        }
        if (ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
                char what[512];
                snprintf(what, sizeof(what), "Failed to load the CA file '%s'", ca_file);
                r = last_error(ret_error, -EINVAL, what);
                SSL_CTX_free(ctx);
                return r;
        }
        *ret = ctx;
        return 0;
}

/* Sessions and contexts exist only once the library is loaded. */
void aj_gw_tls_ctx_free(SSL_CTX *ctx)
{
        if (ctx)
                SSL_CTX_free(ctx);
}

int aj_gw_tls_new(SSL_CTX *ctx, int fd, const char *host, SSL **ret)
{
        ERR_clear_error();
        SSL *ssl = SSL_new(ctx);
        if (!ssl)
                return -ENOMEM;
        bool literal = aj_net_literal_address(host, 0, NULL);
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = SSL_set_fd(ssl, fd) == 1 &&
                 (literal ? X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1
                          : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1);
        if (!ok) {
                ERR_clear_error();
                SSL_free(ssl);
                return -EINVAL;
        }
        SSL_set_connect_state(ssl);
        *ret = ssl;
        return 0;
}

void aj_gw_tls_free(SSL *ssl)
{
        if (ssl)
                SSL_free(ssl);
}

static int want(SSL *ssl, int rc, uint32_t *ret_events)
{
        switch (SSL_get_error(ssl, rc)) {
        case SSL_ERROR_WANT_READ:
                *ret_events = EPOLLIN;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                *ret_events = EPOLLOUT;
                return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        default:
                return -EIO;
        }
}

int aj_gw_tls_handshake(SSL *ssl, uint32_t *ret_events, AjError *ret_error)
{
        ERR_clear_error();
        int rc = SSL_do_handshake(ssl);
        if (rc == 1)
                return 0;
        int r = want(ssl, rc, ret_events);
        if (r == -EAGAIN)
                return r;
        long v = SSL_get_verify_result(ssl);
        if (v == X509_V_OK)
                return last_error(ret_error, -EPROTO, "TLS handshake failed");
        ERR_clear_error();
        return aj_error_set(ret_error, -EPROTO, "certificate verification failed: %s",
                            X509_verify_cert_error_string(v));
}

ssize_t aj_gw_tls_read(SSL *ssl, void *buf, size_t n, uint32_t *ret_events)
{
        ERR_clear_error();
        size_t got = 0;
        int rc = SSL_read_ex(ssl, buf, n, &got);
        if (rc == 1)
                return (ssize_t)got;
        int r = want(ssl, rc, ret_events);
        ERR_clear_error();
        return r;
}

ssize_t aj_gw_tls_write(SSL *ssl, const void *buf, size_t n, uint32_t *ret_events)
{
        ERR_clear_error();
        size_t put = 0;
        int rc = SSL_write_ex(ssl, buf, n, &put);
        if (rc == 1)
                return (ssize_t)put;
        int r = want(ssl, rc, ret_events);
        ERR_clear_error();
        return r == 0 ? -EIO : r;
}

size_t aj_gw_tls_pending(SSL *ssl) { return (size_t)SSL_pending(ssl); }
