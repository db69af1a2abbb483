/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"
#include "resolve.h"
#include "util/strv.h"

#define MAX_TARGET 8192
#define MAX_HEADERS 128
#define SOCKS_MAX 600
/* Bytes one direction may move per wake-up before yielding to other connections. */
#define PUMP_BUDGET (1024 * 1024)
#define SPLICE_CHUNK (1024 * 1024)
#define RESERVE_SLOTS 32
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
#define ACCEPT_BATCH 64
#define DISPATCH_EVENTS 256

/* epoll tags: low 2 bits say which fd of a connection (or a proxy-wide fd). */
enum { TAG_CLIENT = 0, TAG_UPSTREAM = 1, TAG_SPECIAL = 2 };
enum { SP_HTTP_LISTEN, SP_SOCKS_LISTEN, SP_RESOLVER, SP_TIMER, SP_WAKE };

typedef enum {
        ST_HTTP_HEAD,
        ST_SOCKS_GREETING,
        ST_SOCKS_REQUEST,
        ST_RESOLVING,
        ST_CONNECTING,
        ST_RELAY,
        ST_REFUSE, /* writing an error reply */
        ST_LINGER, /* reply sent; draining what the client still sends so it is not reset */
} ConnState;

typedef struct {
        int pr, pw;           /* the pipe between source and destination */
        size_t len;           /* bytes in the pipe */
        char *prefix;         /* sent to the destination before spliced data */
        size_t prefix_len, prefix_off;
        bool prefix_counts;   /* client bytes (counted) or the proxy's own reply (not) */
        bool src_eof, done;
        bool limited;         /* read at most `limit` more bytes from the source */
        uint64_t limit;
        uint64_t bytes;
} Dir;

struct AjProxy;

typedef struct Conn {
        struct AjProxy *p;
        unsigned slot;
        uint32_t gen;
        uint64_t id;
        bool socks, overflow, evaluated, denied, pending, is_connect;
        ConnState state;
        int cfd, ufd;
        char *in;
        size_t in_len;
        char *out;
        size_t out_len, out_off;
        size_t lingered;
        char host[AJ_NET_HOST_MAX + 1];
        uint16_t port;
        char rule[96];
        const char *error;
        struct sockaddr_storage cand[AJ_RESOLVE_MAX_ADDRS];
        size_t n_cand, next_cand;
        struct sockaddr_storage addr;
        bool connected;
        uint64_t resolve_id;
        bool resolving;
        char *fwd;      /* absolute-form: rewritten head + early body */
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
        size_t resp_len;
        Dir up, down;
        uint64_t start_ns, deadline_ns;
} Conn;

struct AjProxy {
        int epfd, http_fd, socks_fd, timerfd, wakefd;
        const AjNetPolicy *policy;
        const AjHooks *hooks;
        AjProxyOptions opts;
        AjResolver *resolver;
        AjHostAddrs *host_addrs;
        Conn **slots;
        uint32_t *gens;
        unsigned n_slots;
        unsigned active, regular;
        bool paused;
        uint64_t next_id;
        uint64_t total, denied, bytes_up, bytes_down;
        unsigned *pending;
        unsigned n_pending;
};

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t tag(unsigned slot, uint32_t gen, unsigned which)
{
        return ((uint64_t)gen << 32) | ((uint64_t)slot << 2) | which;
}

/* ------------------------------------------------------------------ listeners */

/* Fixed buffers (no autotuning past them): see AJ_PROXY_SOCKET_BUFFER. */
static int bound_buffers(int fd)
{
        int size = AJ_PROXY_SOCKET_BUFFER;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
                return negative_errno();
        return 0;
}

int aj_proxy_listen_at(const char *address, uint16_t port, int *ret_fd)
{
        struct sockaddr_storage ss = {};
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        socklen_t sl;

        if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                sl = sizeof(*in);
        } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                sl = sizeof(*in6);
        } else
                return -EINVAL;

        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        /* Accepted sockets inherit these, from their first segment on. */
        int r = bound_buffers(fd);
        if (r < 0)
                return r;
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
                return negative_errno();
        if (listen(fd, 1024) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_proxy_listen_in_current_netns(int *ret_http_fd, int *ret_socks_fd)
{
        _cleanup_close_ int http = -1, socks = -1;
        int r = aj_proxy_listen_at("127.0.0.1", AJ_PROXY_HTTP_PORT, &http);
        if (r < 0)
                return r;
        r = aj_proxy_listen_at("127.0.0.1", AJ_PROXY_SOCKS_PORT, &socks);
        if (r < 0)
                return r;
        *ret_http_fd = TAKE_FD(http);
        *ret_socks_fd = TAKE_FD(socks);
        return 0;
}

int aj_proxy_env_append(char ***env)
{
        static const char *const vars[] = {
                "HTTP_PROXY=http://127.0.0.1:3128",   "http_proxy=http://127.0.0.1:3128",
                "HTTPS_PROXY=http://127.0.0.1:3128",  "https_proxy=http://127.0.0.1:3128",
                "ALL_PROXY=socks5h://127.0.0.1:1080", "all_proxy=socks5h://127.0.0.1:1080",
                "NO_PROXY=localhost,127.0.0.1",       "no_proxy=localhost,127.0.0.1",
        };
        for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
                int r = aj_strv_push(env, vars[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ------------------------------------------------------------------ parsers */

void aj_http_request_done(AjHttpRequest *req)
{
        if (!req)
                return;
        free(req->forward_head);
        req->forward_head = NULL;
        req->forward_len = 0;
}

static int parse_authority(const char *s, size_t len, bool need_port, uint16_t default_port, char *host,
                           uint16_t *port, const char **why)
{
        const char *h = s, *pend = NULL;
        size_t hl;

        if (len == 0) {
                *why = "empty host";
                return -EINVAL;
        }
        if (memchr(s, '@', len)) {
                *why = "credentials in the URL are not supported";
                return -EINVAL;
        }
        if (s[0] == '[') {
                const char *close = memchr(s, ']', len);
                if (!close) {
                        *why = "missing ']' in IPv6 address";
                        return -EINVAL;
                }
                h = s + 1;
                hl = (size_t)(close - h);
                pend = close + 1;
                if (pend < s + len && *pend != ':') {
                        *why = "unexpected text after ']'";
                        return -EINVAL;
                }
        } else {
                const char *colon = memchr(s, ':', len);
                hl = colon ? (size_t)(colon - s) : len;
                pend = s + hl;
        }
        if (hl == 0 || hl > AJ_NET_HOST_MAX) {
                *why = "invalid host length";
                return -EINVAL;
        }
        for (size_t i = 0; i < hl; i++)
                if ((unsigned char)h[i] <= 0x20 || h[i] == '/' || h[i] == '\\' || h[i] == '%') {
                        *why = "invalid character in host";
                        return -EINVAL;
                }
        if (s[0] == '[') {
                char tmp[AJ_NET_HOST_MAX + 1];
                struct in6_addr a6;
                memcpy(tmp, h, hl);
                tmp[hl] = 0;
                if (inet_pton(AF_INET6, tmp, &a6) != 1) {
                        *why = "invalid IPv6 address";
                        return -EINVAL;
                }
        }
        unsigned v = 0;
        if (pend < s + len) {
                /* ":port" */
                const char *d = pend + 1;
                size_t dl = (size_t)(s + len - d);
                if (dl == 0 || dl > 5) {
                        *why = "invalid port";
                        return -EINVAL;
                }
                for (size_t i = 0; i < dl; i++) {
                        if (d[i] < '0' || d[i] > '9') {
                                *why = "invalid port";
                                return -EINVAL;
                        }
                        v = v * 10 + (unsigned)(d[i] - '0');
                }
                if (v == 0 || v > 65535) {
                        *why = "invalid port";
                        return -EINVAL;
                }
        } else if (need_port) {
                *why = "CONNECT needs host:port";
                return -EINVAL;
        } else
                v = default_port;
        memcpy(host, h, hl);
        host[hl] = 0;
        *port = (uint16_t)v;
        return 0;
}

static bool is_tchar(char ch)
{
        return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Does a Host header name the authority the request was checked for? Same host
 * (case-insensitive, one trailing dot ignored; IPv6 compared as addresses), same port
 * (80 when none is written). */
static bool host_header_matches(const char *value, size_t len, const char *host, uint16_t port)
{
        char hh[AJ_NET_HOST_MAX + 1];
        uint16_t hp;
        const char *why;
        if (parse_authority(value, len, false, 80, hh, &hp, &why) < 0 || hp != port)
                return false;
        struct in6_addr a, b;
        if (inet_pton(AF_INET6, hh, &a) == 1 || inet_pton(AF_INET6, host, &b) == 1)
                return inet_pton(AF_INET6, hh, &a) == 1 && inet_pton(AF_INET6, host, &b) == 1 &&
                       memcmp(&a, &b, sizeof(a)) == 0;
        size_t l1 = strlen(hh), l2 = strlen(host);
        if (l1 > 0 && hh[l1 - 1] == '.')
                l1--;
        if (l2 > 0 && host[l2 - 1] == '.')
                l2--;
        return l1 == l2 && strncasecmp(hh, host, l1) == 0;
}

static bool header_is(const char *line, size_t len, const char *name)
{
        size_t n = strlen(name);
        return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

/* The line at `l` in a head ending at `end` (which holds its '\n'): its length without the
 * line end, and where the next one starts. */
static size_t head_line(const char *l, const char *end, const char **ret_next)
{
        const char *e = memchr(l, '\n', (size_t)(end - l));
        size_t n = (size_t)(e - l);
        *ret_next = e + 1;
        return n > 0 && l[n - 1] == '\r' ? n - 1 : n;
}

/* A field value between `*value` and `vend` without the optional whitespace around it. */
static size_t trim_ows(const char **value, const char *vend)
{
        const char *v = *value;
        while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
        *value = v;
        return (size_t)(vend - v);
}

/* Content-Length: 1 to 18 digits, nothing else. */
static bool parse_content_length(const char *value, size_t vlen, uint64_t *ret)
{
        uint64_t v = 0;
        if (vlen == 0 || vlen > 18)
                return false;
        for (size_t k = 0; k < vlen; k++) {
                if (value[k] < '0' || value[k] > '9')
                        return false;
                v = v * 10 + (uint64_t)(value[k] - '0');
        }
        *ret = v;
        return true;
}

int aj_http_parse_request(const char *buf, size_t len, AjHttpRequest *ret, int *ret_status, const char **ret_why)
{
        AjHttpRequest req = {};
        size_t head = 0;

/* The request names two destinations (or hides which): a denial, with the request
 * line's host and port in *ret for the event. */
#define DENY(why)                                                                                          \
        do {                                                                                               \
                *ret_status = 400;                                                                         \
                *ret_why = (why);                                                                          \
                free(fwd);                                                                                 \
                memset(ret, 0, sizeof(*ret));                                                              \
                memcpy(ret->host, req.host, sizeof(req.host));                                             \
                ret->port = req.port;                                                                      \
                return -EPERM;                                                                             \
        } while (0)

#define FAIL(status, why)                                                                                  \
        do {                                                                                               \
                *ret_status = (status);                                                                    \
                *ret_why = (why);                                                                          \
                free(fwd);                                                                                 \
                return -EINVAL;                                                                            \
        } while (0)

        char *fwd = NULL;
        for (size_t i = 0; i < len && i < AJ_PROXY_MAX_HEADER; i++)
                if (buf[i] == '\n' && ((i >= 1 && buf[i - 1] == '\n') ||
                                       (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
                        head = i + 1;
                        break;
                }
        if (head == 0) {
                if (len >= AJ_PROXY_MAX_HEADER)
                        FAIL(431, "request head larger than 16 KiB");
                /* A request line alone can already be judged (and a client that never ends its
                 * head gets its answer early). */
                const char *nl = memchr(buf, '\n', len);
                if (!nl && len > MAX_TARGET + 32)
                        FAIL(414, "request line too long");
                return -EAGAIN;
        }
        for (size_t i = 0; i < head; i++) {
                unsigned char ch = (unsigned char)buf[i];
                if (ch == 0 || (ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7f)
                        FAIL(400, "control character in request head");
                /* A CR that does not end a line is a line end to some servers and not to others. */
                if (ch == '\r' && (i + 1 >= head || buf[i + 1] != '\n'))
                        FAIL(400, "bare CR in request head");
        }

        /* Request line. */
        const char *line = buf, *eol = memchr(buf, '\n', head);
        size_t ll = (size_t)(eol - line);
        if (ll > 0 && line[ll - 1] == '\r')
                ll--;
        const char *sp1 = memchr(line, ' ', ll);
        if (!sp1)
                FAIL(400, "malformed request line");
        size_t ml = (size_t)(sp1 - line);
        if (ml == 0 || ml >= sizeof(req.method))
                FAIL(400, "malformed request method");
        for (size_t i = 0; i < ml; i++)
                if (!isupper((unsigned char)line[i]) && line[i] != '-' && line[i] != '_')
                        FAIL(400, "malformed request method");
        memcpy(req.method, line, ml);
        req.method[ml] = 0;
        const char *target = sp1 + 1;
        const char *sp2 = memchr(target, ' ', (size_t)(line + ll - target));
        if (!sp2)
                FAIL(400, "malformed request line");
        size_t tl = (size_t)(sp2 - target);
        const char *version = sp2 + 1;
        size_t vl = (size_t)(line + ll - version);
        if (tl == 0)
                FAIL(400, "empty request target");
        if (tl > MAX_TARGET)
                FAIL(414, "request target longer than 8 KiB");
        if (!((vl == 8 && (memcmp(version, "HTTP/1.1", 8) == 0 || memcmp(version, "HTTP/1.0", 8) == 0))))
                FAIL(400, "unsupported HTTP version (HTTP/1.0 or HTTP/1.1 expected)");

        const char *why;
        const char *path = NULL;
        size_t pl = 0;
        if (streq(req.method, "CONNECT")) {
                req.is_connect = true;
                if (parse_authority(target, tl, true, 0, req.host, &req.port, &why) < 0)
                        FAIL(400, why);
        } else {
                if (target[0] == '/')
                        FAIL(400, "not a proxy request (expected an absolute http:// URL or CONNECT)");
                if (tl >= 8 && strncasecmp(target, "https://", 8) == 0)
                        FAIL(400, "https:// URLs go through CONNECT");
                if (tl < 7 || strncasecmp(target, "http://", 7) != 0)
                        FAIL(400, "unsupported URL scheme (only http:// is forwarded; use CONNECT or SOCKS5)");
                const char *auth = target + 7, *end = target + tl, *a_end = auth;
                while (a_end < end && *a_end != '/' && *a_end != '?' && *a_end != '#')
                        a_end++;
                if (parse_authority(auth, (size_t)(a_end - auth), false, 80, req.host, &req.port, &why) < 0)
                        FAIL(400, why);
                path = a_end;
                pl = (size_t)(end - a_end);
        }

        /* Headers: validated for both forms; rewritten for absolute-form. */
        /* The rewritten head is never longer than the original plus CRLFs for bare LFs. */
        size_t cap = head + 2 * MAX_HEADERS + 64;
        if (!req.is_connect) {
                fwd = malloc(cap + pl + 8);
                if (!fwd)
                        FAIL(500, "out of memory");
        }
        size_t fl = 0;
        if (fwd) {
                memcpy(fwd + fl, req.method, ml);
                fl += ml;
                fwd[fl++] = ' ';
                if (pl == 0 || path[0] != '/')
                        fwd[fl++] = '/';
                memcpy(fwd + fl, path, pl);
                fl += pl;
                fwd[fl++] = ' ';
                memcpy(fwd + fl, version, 8);
                fl += 8;
                memcpy(fwd + fl, "\r\n", 2);
                fl += 2;
        }
        bool have_host = false, have_length = false, have_te = false;
        unsigned n_headers = 0;
        const char *h = eol + 1;
        while (h < buf + head) {
                const char *next;
                size_t hl = head_line(h, buf + head, &next);
                if (hl == 0)
                        break;
                if (++n_headers > MAX_HEADERS)
                        FAIL(431, "more than 128 header fields");
                if (h[0] == ' ' || h[0] == '\t')
                        FAIL(400, "folded header lines are not accepted");
                const char *colon = memchr(h, ':', hl);
                if (!colon || colon == h)
                        FAIL(400, "malformed header field");
                for (const char *c = h; c < colon; c++)
                        if (*c == ' ' || *c == '\t')
                                FAIL(400, "whitespace in a header field name");
                        else if (!is_tchar(*c))
                                FAIL(400, "invalid character in a header field name");
                const char *value = colon + 1;
                size_t vlen = trim_ows(&value, h + hl);
                if (header_is(h, hl, "Host")) {
                        if (have_host)
                                DENY("more than one Host header");
                        have_host = true;
                        if (!req.is_connect && !host_header_matches(value, vlen, req.host, req.port))
                                DENY("the Host header does not match the request's authority");
                } else if (header_is(h, hl, "Content-Length")) {
                        if (have_length)
                                FAIL(400, "more than one Content-Length header");
                        have_length = true;
                        if (!parse_content_length(value, vlen, &req.content_length))
                                FAIL(400, "invalid Content-Length");
                } else if (header_is(h, hl, "Transfer-Encoding")) {
                        if (have_te)
                                FAIL(400, "more than one Transfer-Encoding header");
                        have_te = true;
                        if (vlen != 7 || strncasecmp(value, "chunked", 7) != 0)
                                FAIL(400, "unsupported Transfer-Encoding (only \"chunked\")");
                }
                bool hop = header_is(h, hl, "Proxy-Connection") || header_is(h, hl, "Proxy-Authorization") ||
                           header_is(h, hl, "Connection") || header_is(h, hl, "Keep-Alive");
                if (fwd && !hop) {
                        memcpy(fwd + fl, h, hl);
                        fl += hl;
                        memcpy(fwd + fl, "\r\n", 2);
                        fl += 2;
                }
                h = next;
        }
        if (!req.is_connect) {
                /* Request smuggling: two framings, or one a server may read differently. */
                if (have_te && have_length)
                        FAIL(400, "both Content-Length and Transfer-Encoding");
                if (have_te && memcmp(version, "HTTP/1.0", 8) == 0)
                        FAIL(400, "Transfer-Encoding in an HTTP/1.0 request");
                if (!have_host && memcmp(version, "HTTP/1.1", 8) == 0)
                        DENY("HTTP/1.1 request without a Host header");
                req.body = have_te ? AJ_HTTP_BODY_CHUNKED
                           : have_length && req.content_length > 0 ? AJ_HTTP_BODY_LENGTH
                                                                   : AJ_HTTP_BODY_NONE;
        }
        if (fwd) {
                /* One request per connection: the upstream closes after its answer, so a second
                 * request on this connection can never reach a host that was not checked. */
                if (!have_host) {
                        char hostline[AJ_NET_HOST_MAX + 32];
                        bool v6 = strchr(req.host, ':') != NULL;
                        int k = snprintf(hostline, sizeof(hostline), "Host: %s%s%s:%u\r\n", v6 ? "[" : "",
                                         req.host, v6 ? "]" : "", req.port);
                        char *nf = realloc(fwd, fl + (size_t)k + 32);
                        if (!nf)
                                FAIL(500, "out of memory");
                        fwd = nf;
                        memcpy(fwd + fl, hostline, (size_t)k);
                        fl += (size_t)k;
                }
                char *nf = realloc(fwd, fl + 32);
                if (!nf)
                        FAIL(500, "out of memory");
                fwd = nf;
                memcpy(fwd + fl, "Connection: close\r\n\r\n", 21);
                fl += 21;
        }
        req.head_len = head;
        req.forward_head = fwd;
        req.forward_len = fl;
        *ret = req;
        return 0;
#undef FAIL
#undef DENY
}

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER_START, CK_TRAILER,
       CK_TRAILER_LF, CK_END_LF, CK_DONE };

#define CHUNK_LINE_MAX 4096
#define CHUNK_TRAILERS_MAX (16 * 1024)

ssize_t aj_http_chunked_scan(AjHttpChunked *s, const char *buf, size_t len, bool *ret_done)
{
        size_t i = 0;
        while (i < len && s->state != CK_DONE) {
                unsigned char ch = (unsigned char)buf[i];
                switch (s->state) {
                case CK_SIZE:
                        if (isxdigit(ch)) {
                                if (++s->digits > 15)
                                        return -EBADMSG;
                                s->left = s->left * 16 + (uint64_t)(isdigit(ch) ? ch - '0' : (ch | 0x20) - 'a' + 10);
                        } else if (s->digits > 0 && ch == ';')
                                s->state = CK_EXT;
                        else if (s->digits > 0 && ch == '\r')
                                s->state = CK_SIZE_LF;
                        else
                                return -EBADMSG;
                        i++;
                        break;
                case CK_EXT:
                        if (ch == '\r')
                                s->state = CK_SIZE_LF;
                        else if ((ch < 0x20 && ch != '\t') || ch == 0x7f || ++s->line > CHUNK_LINE_MAX)
                                return -EBADMSG;
                        i++;
                        break;
                case CK_SIZE_LF:
                        if (ch != '\n')
                                return -EBADMSG;
                        s->state = s->left == 0 ? CK_TRAILER_START : CK_DATA;
                        s->digits = 0;
                        s->line = 0;
                        i++;
                        break;
                case CK_DATA: {
                        size_t k = len - i < s->left ? len - i : (size_t)s->left;
                        s->left -= k;
                        i += k;
                        if (s->left == 0)
                                s->state = CK_DATA_CR;
                        break;
                }
                case CK_DATA_CR:
                case CK_DATA_LF:
                        if (ch != (s->state == CK_DATA_CR ? '\r' : '\n'))
                                return -EBADMSG;
                        s->state = s->state == CK_DATA_CR ? CK_DATA_LF : CK_SIZE;
                        i++;
                        break;
                case CK_TRAILER_START:
                case CK_TRAILER:
                        if (ch == '\r')
                                s->state = s->state == CK_TRAILER_START ? CK_END_LF : CK_TRAILER_LF;
                        else if ((ch < 0x20 && ch != '\t') || ch == 0x7f || ++s->line > CHUNK_TRAILERS_MAX)
                                return -EBADMSG;
                        else
                                s->state = CK_TRAILER;
                        i++;
                        break;
                case CK_TRAILER_LF:
                case CK_END_LF:
                        if (ch != '\n')
                                return -EBADMSG;
                        s->state = s->state == CK_END_LF ? CK_DONE : CK_TRAILER_START;
                        i++;
                        break;
                }
        }
        *ret_done = s->state == CK_DONE;
        return (ssize_t)i;
}

int aj_http_rewrite_response(const char *buf, size_t len, bool head_request, AjHttpResponse *ret)
{
        size_t head = 0;
        for (size_t i = 1; i < len; i++)
                if (buf[i] == '\n' && (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
                        head = i + 1;
                        break;
                }
        if (head == 0)
                return -EAGAIN;
        /* "HTTP/1.x NNN" */
        if (head < 13 || memcmp(buf, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)buf[7]) || buf[8] != ' ' ||
            !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) || !isdigit((unsigned char)buf[11]))
                return -EBADMSG;
        if (memchr(buf, 0, head))
                return -EBADMSG;
        int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
        bool final = status >= 200 || status == 101;
        bool have_length = false, have_te = false, chunked = false;
        uint64_t length = 0;

        char *out = malloc(2 * head + 32); /* bare LFs become CRLFs */
        if (!out)
                return -ENOMEM;
        size_t ol = 0;
        const char *l = buf;
        bool first = true;
        while (l < buf + head) {
                const char *next;
                size_t ll = head_line(l, buf + head, &next);
                if (ll == 0)
                        break;
                const char *value = memchr(l, ':', ll);
                if (!first && value) {
                        value++;
                        size_t vlen = trim_ows(&value, l + ll);
                        const char *vend = value + vlen;
                        if (header_is(l, ll, "Content-Length")) {
                                uint64_t v = 0;
                                if (!parse_content_length(value, vlen, &v) || (have_length && v != length)) {
                                        free(out);
                                        return -EBADMSG;
                                }
                                have_length = true;
                                length = v;
                        } else if (header_is(l, ll, "Transfer-Encoding")) {
                                have_te = true;
                                /* Only a final "chunked" frames the body; anything else runs to the close. */
                                chunked = vlen >= 7 && strncasecmp(vend - 7, "chunked", 7) == 0 &&
                                          (vlen == 7 || vend[-8] == ',' || vend[-8] == ' ');
                        }
                }
                bool drop = !first && final &&
                            (header_is(l, ll, "Connection") || header_is(l, ll, "Keep-Alive") ||
                             header_is(l, ll, "Proxy-Connection"));
                if (!drop) {
                        memcpy(out + ol, l, ll);
                        ol += ll;
                        memcpy(out + ol, "\r\n", 2);
                        ol += 2;
                }
                first = false;
                l = next;
        }
        if (final) {
                memcpy(out + ol, "Connection: close\r\n", 19);
                ol += 19;
        }
        memcpy(out + ol, "\r\n", 2);
        ol += 2;

        AjHttpResponse r = { .head = out, .head_len = ol, .consumed = head, .final = final };
        /* RFC 9112 6.3, in its order. */
        if (!final || head_request || status == 204 || status == 304)
                r.body = AJ_HTTP_BODY_NONE;
        else if (status == 101)
                r.body = AJ_HTTP_BODY_UNTIL_CLOSE;
        else if (have_te)
                r.body = chunked ? AJ_HTTP_BODY_CHUNKED : AJ_HTTP_BODY_UNTIL_CLOSE;
        else if (have_length) {
                r.body = length > 0 ? AJ_HTTP_BODY_LENGTH : AJ_HTTP_BODY_NONE;
                r.content_length = length;
        } else
                r.body = AJ_HTTP_BODY_UNTIL_CLOSE;
        *ret = r;
        return 0;
}

int aj_socks_parse_greeting(const uint8_t *buf, size_t len)
{
        if (len < 1)
                return -EAGAIN;
        if (buf[0] != 5)
                return -EPROTO;
        if (len < 2)
                return -EAGAIN;
        size_t n = buf[1];
        if (n == 0)
                return -EPERM;
        if (len < 2 + n)
                return -EAGAIN;
        for (size_t i = 0; i < n; i++)
                if (buf[2 + i] == 0)
                        return (int)(2 + n);
        return -EPERM;
}

int aj_socks_parse_request(const uint8_t *buf, size_t len, AjSocksRequest *ret, uint8_t *ret_rep,
                           const char **ret_why)
{
        AjSocksRequest req = {};
        size_t need;

        if (len < 5)
                return -EAGAIN;
        if (buf[0] != 5) {
                *ret_rep = 0x01;
                *ret_why = "bad SOCKS version in request";
                return -EINVAL;
        }
        if (buf[2] != 0) {
                *ret_rep = 0x01;
                *ret_why = "reserved byte not zero";
                return -EINVAL;
        }
        req.atyp = buf[3];
        switch (buf[3]) {
        case 1:
                need = 4 + 4 + 2;
                break;
        case 3:
                need = 4 + 1 + (size_t)buf[4] + 2;
                break;
        case 4:
                need = 4 + 16 + 2;
                break;
        default:
                *ret_rep = 0x08;
                *ret_why = "address type not supported";
                return -EINVAL;
        }
        if (buf[1] != 1) {
                *ret_rep = 0x07;
                *ret_why = "only CONNECT is supported";
                return -EINVAL;
        }
        if (len < need)
                return -EAGAIN;
        if (buf[3] == 1)
                inet_ntop(AF_INET, buf + 4, req.host, sizeof(req.host));
        else if (buf[3] == 4)
                inet_ntop(AF_INET6, buf + 4, req.host, sizeof(req.host));
        else {
                /* A name the allowlist could judge, or nothing: never cut to fit (a longer
                 * name truncated to 253 bytes is another name, maybe an allowed one). */
                size_t n = buf[4];
                if (n == 0 || n > AJ_NET_HOST_MAX) {
                        *ret_rep = 0x02;
                        *ret_why = n == 0 ? "empty host name" : "host name longer than 253 bytes";
                        return -EPERM;
                }
                for (size_t i = 0; i < n; i++) {
                        uint8_t ch = buf[5 + i];
                        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_') {
                                *ret_rep = 0x02;
                                *ret_why = ch == 0 ? "NUL in host name" : "invalid character in host name";
                                return -EPERM;
                        }
                }
                memcpy(req.host, buf + 5, n);
                req.host[n] = 0;
        }
        req.port = (uint16_t)((buf[need - 2] << 8) | buf[need - 1]);
        req.consumed = need;
        *ret = req;
        return 0;
}

/* ------------------------------------------------------------------ connections */

static void conn_close(Conn *c);
static void conn_kick(Conn *c);
static int send_prefix(Conn *c, Dir *d, int dst);

static const char *proto_name(const Conn *c)
{
        return c->socks ? "socks5" : c->is_connect ? "http-connect" : "http";
}

static json_t *conn_json(const Conn *c)
{
        json_t *o = json_pack("{s:I, s:s, s:s, s:i}", "id", (json_int_t)c->id, "proto", proto_name(c), "host",
                              c->host, "port", (int)c->port);
        if (o && c->connected) {
                char a[INET6_ADDRSTRLEN];
                json_object_set_new(o, "address", json_string(aj_net_format_address((struct sockaddr *)&c->addr,
                                                                                    a, sizeof(a))));
        }
        return o;
}

static void emit(AjProxy *p, const char *type, json_t *fields)
{
        if (p->hooks && p->hooks->emit && fields)
                p->hooks->emit(p->hooks->userdata, type, fields);
        else
                json_decref(fields);
}

static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        *s = '?';
}

static const char *status_text(int s)
{
        switch (s) {
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 408: return "Request Timeout";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "Error";
        }
}

static void flush_out(Conn *c);

/* Answer with an error and close: an HTTP status or a SOCKS reply code. */
static void refuse(Conn *c, int http_status, uint8_t socks_rep, const char *reason_in)
{
        char reason[400];
        snprintf(reason, sizeof(reason), "%s", reason_in);
        sanitize(reason);
        if (!c->error)
                c->error = http_status == 403 ? NULL : "refused";
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = 0;
        if (c->socks) {
                if (c->state == ST_SOCKS_GREETING)
                        goto close_now;
                c->out = malloc(10);
                if (!c->out)
                        goto close_now;
                memcpy(c->out, (uint8_t[]){ 5, socks_rep, 0, 1, 0, 0, 0, 0, 0, 0 }, 10);
                c->out_len = 10;
        } else {
                int k = asprintf(&c->out,
                                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                                 "X-Agentjail-Reason: %s\r\nContent-Length: %zu\r\n\r\nagentjail proxy: %s\n",
                                 http_status, status_text(http_status), reason, strlen(reason) + 18, reason);
                if (k < 0) {
                        c->out = NULL;
                        goto close_now;
                }
                c->out_len = (size_t)k;
        }
        if (c->ufd >= 0) {
                epoll_ctl(c->p->epfd, EPOLL_CTL_DEL, c->ufd, NULL);
                close(c->ufd);
                c->ufd = -1;
        }
        if (c->resolving) {
                aj_resolver_cancel(c->p->resolver, c->resolve_id);
                c->resolving = false;
        }
        c->state = ST_REFUSE;
        c->deadline_ns = now_ns() + LINGER_MS * 1000000ULL;
        flush_out(c);
        return;
close_now:
        conn_close(c);
}

static void deny_with(Conn *c, const AjNetVerdict *v, const struct sockaddr *addr, int http_status)
{
        c->denied = true;
        c->p->denied++;
        json_t *f = conn_json(c);
        if (f) {
                json_object_set_new(f, "reason", json_string(v->reason));
                if (v->rule >= 0)
                        json_object_set_new(f, "rule", json_string(c->p->policy->rules[v->rule].text));
                if (addr) {
                        char a[INET6_ADDRSTRLEN];
                        json_object_set_new(f, "address", json_string(aj_net_format_address(addr, a, sizeof(a))));
                }
        }
        emit(c->p, "net.denied", f);
        char reason[400];
        snprintf(reason, sizeof(reason), "denied: %s", v->reason);
        refuse(c, http_status, 0x02, reason);
}

static void deny(Conn *c, const AjNetVerdict *v, const struct sockaddr *addr)
{
        deny_with(c, v, addr, 403);
}

/* Bytes after the one request a plain HTTP connection carries: never relayed. The first
 * time, say so (naming the next request's host when its head is there). */
static void note_pipelined(Conn *c, const char *data, size_t len)
{
        if (c->pipelined_seen || len == 0)
                return;
        c->pipelined_seen = true;
        c->p->denied++;
        AjHttpRequest next;
        int status;
        const char *why;
        bool parsed = aj_http_parse_request(data, len, &next, &status, &why) == 0;
        json_t *f = json_pack("{s:I, s:s, s:s, s:i, s:s}", "id", (json_int_t)c->id, "proto", "http", "host",
                              parsed ? next.host : "", "port", parsed ? (int)next.port : 0, "reason",
                              "a second request on a plain HTTP connection is not relayed (one request per "
                              "connection)");
        if (parsed)
                aj_http_request_done(&next);
        emit(c->p, "net.denied", f);
}

/* A request refused before any rule could be applied to it (no valid destination). */
static void deny_unjudged(Conn *c, const char *why)
{
        AjNetVerdict v = { .rule = -1 };
        snprintf(v.reason, sizeof(v.reason), "invalid destination: %s", why);
        deny(c, &v, NULL);
}

static void flush_out(Conn *c)
{
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->cfd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        conn_close(c);
                        return;
                }
                c->out_off += (size_t)n;
        }
        shutdown(c->cfd, SHUT_WR);
        c->state = ST_LINGER;
        conn_kick(c);
}

static void linger(Conn *c)
{
        char buf[16384];
        for (;;) {
                ssize_t n = recv(c->cfd, buf, sizeof(buf), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        conn_close(c);
                        return;
                }
                if (n < 0)
                        return;
                if (!c->socks && !c->is_connect && c->req_done)
                        note_pipelined(c, buf, (size_t)n);
                c->lingered += (size_t)n;
                if (c->lingered > LINGER_MAX_BYTES) {
                        conn_close(c);
                        return;
                }
        }
}

static int account(Conn *c, Dir *d, size_t n)
{
        AjProxy *p = c->p;
        d->bytes += n;
        if (d == &c->up)
                p->bytes_up += n;
        else
                p->bytes_down += n;
        if (p->hooks && p->hooks->charge_egress) {
                json_t *j = conn_json(c);
                int r = p->hooks->charge_egress(p->hooks->userdata, n, j);
                json_decref(j);
                if (r == 1) {
                        c->error = "egress cap reached";
                        return -EDQUOT;
                }
        }
        return 0;
}

static void mark_pending(Conn *c)
{
        AjProxy *p = c->p;
        if (c->pending)
                return;
        c->pending = true;
        p->pending[p->n_pending++] = c->slot;
        uint64_t one = 1;
        (void)!write(p->wakefd, &one, sizeof(one));
}

/* Moves data src -> pipe -> dst until one side would block or the budget is used.
 * Returns < 0 when the connection must close. */
static int pump(Conn *c, Dir *d, int src, int dst)
{
        size_t moved = 0;
        int r;

        if ((r = send_prefix(c, d, dst)) <= 0)
                return r;
        if (d->done)
                return 0;
        for (;;) {
                if (d->len > 0) {
                        ssize_t n = splice(d->pr, NULL, dst, NULL, d->len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
                        if (n < 0)
                                return errno == EAGAIN || errno == EINTR ? 0 : negative_errno();
                        d->len -= (size_t)n;
                        moved += (size_t)n;
                        if ((r = account(c, d, (size_t)n)) < 0)
                                return r;
                }
                if (d->src_eof) {
                        if (d->len > 0)
                                continue;
                        /* Half-close: pass the EOF on, keep the other direction going. */
                        shutdown(dst, SHUT_WR);
                        d->done = true;
                        return 0;
                }
                if (moved >= PUMP_BUDGET) {
                        mark_pending(c);
                        return 0;
                }
                size_t want = SPLICE_CHUNK;
                if (d->limited && d->limit < want)
                        want = (size_t)d->limit;
                ssize_t n = splice(src, NULL, d->pw, NULL, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
                if (n == 0) {
                        d->src_eof = true;
                        continue;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return negative_errno();
                        /* EAGAIN: the socket is empty, or the pipe is full (then drain it first). */
                        if (d->len == 0)
                                return 0;
                        continue;
                }
                d->len += (size_t)n;
                if (d->limited && (d->limit -= (size_t)n) == 0)
                        d->src_eof = true; /* all that was framed: the rest is not relayed */
        }
}

/* Sends what is queued in d->prefix: 1 when it is all sent, 0 when dst would block. */
static int send_prefix(Conn *c, Dir *d, int dst)
{
        while (d->prefix_off < d->prefix_len) {
                ssize_t n = send(dst, d->prefix + d->prefix_off, d->prefix_len - d->prefix_off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : negative_errno();
                }
                d->prefix_off += (size_t)n;
                int r;
                if (d->prefix_counts && (r = account(c, d, (size_t)n)) < 0)
                        return r;
        }
        return 1;
}

static int queue_prefix(Dir *d, const char *data, size_t len)
{
        char *copy = malloc(len);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, data, len);
        free(d->prefix);
        d->prefix = copy;
        d->prefix_len = len;
        d->prefix_off = 0;
        d->prefix_counts = true;
        return 0;
}

/* Plain HTTP, client -> upstream: the one request's body, exactly as far as its framing
 * says; then what the client still sends is read and dropped (bounded), so its EOF is
 * seen and passed on. */
static int pump_request(Conn *c)
{
        Dir *d = &c->up;
        char buf[16384];
        for (;;) {
                int r = send_prefix(c, d, c->ufd);
                if (r <= 0)
                        return r;
                if (d->done || c->up_stopped)
                        return 0;
                size_t want = sizeof(buf);
                if (!c->req_done && c->body == AJ_HTTP_BODY_LENGTH && c->body_left < want)
                        want = (size_t)c->body_left;
                ssize_t n = recv(c->cfd, buf, want, 0);
                if (n == 0) {
                        shutdown(c->ufd, SHUT_WR);
                        d->done = true;
                        return 0;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : negative_errno();
                }
                if (c->req_done) {
                        note_pipelined(c, buf, (size_t)n);
                        c->lingered += (size_t)n;
                        /* Past the bound, stop reading: the answer still gets through. */
                        if (c->lingered > LINGER_MAX_BYTES)
                                c->up_stopped = true;
                        continue;
                }
                size_t take = (size_t)n;
                if (c->body == AJ_HTTP_BODY_CHUNKED) {
                        ssize_t t = aj_http_chunked_scan(&c->chunk, buf, (size_t)n, &c->req_done);
                        if (t < 0) {
                                c->error = "malformed chunked body";
                                return -EBADMSG;
                        }
                        take = (size_t)t;
                } else {
                        c->body_left -= (size_t)n;
                        c->req_done = c->body_left == 0;
                }
                if (c->req_done && (size_t)n > take)
                        note_pipelined(c, buf + take, (size_t)n - take);
                if (take > 0 && (r = queue_prefix(d, buf, take)) < 0)
                        return r;
        }
}

#define RESPONSE_HEAD_MAX (64 * 1024)

/* Plain HTTP, a chunked response body: scanned in user space to find its end. */
static int pump_response_chunked(Conn *c)
{
        Dir *d = &c->down;
        char buf[16384];
        size_t moved = 0;
        for (;;) {
                int r = send_prefix(c, d, c->cfd);
                if (r <= 0)
                        return r;
                if (d->done)
                        return 0;
                if (d->src_eof) {
                        shutdown(c->cfd, SHUT_WR);
                        d->done = true;
                        return 0;
                }
                if (moved >= PUMP_BUDGET) {
                        mark_pending(c);
                        return 0;
                }
                ssize_t n = recv(c->ufd, buf, sizeof(buf), 0);
                if (n == 0) {
                        d->src_eof = true;
                        continue;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : negative_errno();
                }
                bool done = false;
                ssize_t t = aj_http_chunked_scan(&c->resp_chunk, buf, (size_t)n, &done);
                if (t < 0) {
                        c->error = "bad response from upstream";
                        return -EBADMSG;
                }
                if (t > 0 && (r = queue_prefix(d, buf, (size_t)t)) < 0)
                        return r;
                moved += (size_t)t;
                if (done)
                        d->src_eof = true; /* the answer is complete: nothing more is read */
        }
}

/* Interim (1xx) heads one request may get: a real server sends one or two (100 Continue,
 * 103 Early Hints); an endless stream of them kept the supervisor parsing heads. */
#define INTERIM_MAX 16

/* Plain HTTP, upstream -> client: the response head is rewritten (Connection: close) and
 * the body relayed as far as its framing says (spliced, or scanned when chunked); then
 * the client sees EOF, whether or not the upstream closes. */
static int pump_response(Conn *c)
{
        Dir *d = &c->down;
        for (;;) {
                int r = send_prefix(c, d, c->cfd);
                if (r <= 0)
                        return r;
                if (c->resp_done)
                        return c->resp_body == AJ_HTTP_BODY_CHUNKED ? pump_response_chunked(c)
                                                                    : pump(c, d, c->ufd, c->cfd);
                AjHttpResponse resp;
                r = c->resp ? aj_http_rewrite_response(c->resp, c->resp_len, c->head_request, &resp) : -EAGAIN;
                if (r == 0) {
                        size_t rest = c->resp_len - resp.consumed;
                        const char *more = c->resp + resp.consumed;
                        size_t take = 0;
                        if (resp.final) {
                                c->resp_done = true;
                                c->resp_body = resp.body;
                                switch (resp.body) {
                                case AJ_HTTP_BODY_NONE:
                                        d->src_eof = true;
                                        break;
                                case AJ_HTTP_BODY_LENGTH:
                                        take = rest < resp.content_length ? rest : (size_t)resp.content_length;
                                        d->limited = true;
                                        d->limit = resp.content_length - take;
                                        d->src_eof = d->limit == 0;
                                        break;
                                case AJ_HTTP_BODY_CHUNKED: {
                                        bool done = false;
                                        ssize_t t = aj_http_chunked_scan(&c->resp_chunk, more, rest, &done);
                                        if (t < 0) {
                                                free(resp.head);
                                                c->error = "bad response from upstream";
                                                return -EBADMSG;
                                        }
                                        take = (size_t)t;
                                        d->src_eof = done;
                                        break;
                                }
                                default:
                                        take = rest;
                                }
                        }
                        char *nh = realloc(resp.head, resp.head_len + take);
                        if (!nh) {
                                free(resp.head);
                                return -ENOMEM;
                        }
                        memcpy(nh + resp.head_len, more, take);
                        free(d->prefix);
                        d->prefix = nh;
                        d->prefix_len = resp.head_len + take;
                        d->prefix_off = 0;
                        d->prefix_counts = true;
                        if (!resp.final && ++c->interim > INTERIM_MAX) {
                                /* resp.head is d->prefix now (realloc above): freed with the connection. */
                                c->error = "bad response from upstream: too many interim (1xx) responses";
                                return -EBADMSG;
                        }
                        if (resp.final) {
                                free(c->resp);
                                c->resp = NULL;
                                c->resp_len = 0;
                        } else {
                                memmove(c->resp, more, rest);
                                c->resp_len = rest;
                        }
                        continue;
                }
                if (r != -EAGAIN || c->resp_len >= RESPONSE_HEAD_MAX) {
                        c->error = "bad response from upstream";
                        return r == -ENOMEM ? r : -EBADMSG;
                }
                if (!c->resp && !(c->resp = malloc(RESPONSE_HEAD_MAX)))
                        return -ENOMEM;
                ssize_t n = recv(c->ufd, c->resp + c->resp_len, RESPONSE_HEAD_MAX - c->resp_len, 0);
                if (n == 0) {
                        c->error = "upstream closed without a complete answer";
                        return -EBADMSG;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : negative_errno();
                }
                c->resp_len += (size_t)n;
        }
}

static void relay(Conn *c)
{
        bool plain = !c->socks && !c->is_connect;
        int r = plain ? pump_request(c) : pump(c, &c->up, c->cfd, c->ufd);
        if (r >= 0)
                r = plain ? pump_response(c) : pump(c, &c->down, c->ufd, c->cfd);
        if (r >= 0 && plain && c->down.done) {
                /* The answer is complete and the client was told "Connection: close": nothing
                 * more is relayed. Drain what the client still sends until it closes, so the
                 * answer is not cut by a reset. */
                if (c->resp_done && c->down.len == 0) {
                        epoll_ctl(c->p->epfd, EPOLL_CTL_DEL, c->ufd, NULL);
                        close(c->ufd);
                        c->ufd = -1;
                        c->state = ST_LINGER;
                        c->deadline_ns = now_ns() + LINGER_MS * 1000000ULL;
                        linger(c);
                        return;
                }
        }
        if (r < 0) {
                if (!c->error)
                        c->error = r == -ECONNRESET ? "connection reset" : r == -EPIPE ? "broken pipe" : "relay error";
                conn_close(c);
                return;
        }
        if (c->up.done && c->down.done)
                conn_close(c);
}

static int make_pipe(Dir *d)
{
        int fds[2];
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
                return negative_errno();
        d->pr = fds[0];
        d->pw = fds[1];
        /* A bigger pipe moves more per splice() and per wakeup; the default 64 KiB caps
         * a relay well below loopback speed. Best effort: pipe-max-size may be lower. */
        (void)fcntl(d->pw, F_SETPIPE_SZ, AJ_PROXY_PIPE_SIZE);
        return 0;
}

static void start_relay(Conn *c)
{
        if (make_pipe(&c->up) < 0 || make_pipe(&c->down) < 0) {
                refuse(c, 503, 0x01, "proxy out of resources (pipes)");
                return;
        }
        int one = 1;
        setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c->socks) {
                struct sockaddr_storage local = {};
                socklen_t sl = sizeof(local);
                uint8_t *rep = malloc(22);
                if (!rep) {
                        conn_close(c);
                        return;
                }
                getsockname(c->ufd, (struct sockaddr *)&local, &sl);
                rep[0] = 5;
                rep[1] = 0;
                rep[2] = 0;
                if (local.ss_family == AF_INET6) {
                        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&local;
                        rep[3] = 4;
                        memcpy(rep + 4, &a->sin6_addr, 16);
                        memcpy(rep + 20, &a->sin6_port, 2);
                        c->down.prefix_len = 22;
                } else {
                        struct sockaddr_in *a = (struct sockaddr_in *)&local;
                        rep[3] = 1;
                        memcpy(rep + 4, &a->sin_addr, 4);
                        memcpy(rep + 8, &a->sin_port, 2);
                        c->down.prefix_len = 10;
                }
                c->down.prefix = (char *)rep;
        } else if (c->is_connect) {
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                c->down.prefix = strdup(ok);
                if (!c->down.prefix) {
                        conn_close(c);
                        return;
                }
                c->down.prefix_len = sizeof(ok) - 1;
        }
        /* What the client sent after its request (pipelined body, TLS hello) goes first. */
        c->up.prefix = c->fwd;
        c->up.prefix_len = c->fwd_len;
        c->up.prefix_counts = true;
        c->fwd = NULL;
        c->fwd_len = 0;
        free(c->in);
        c->in = NULL;
        c->state = ST_RELAY;
        c->deadline_ns = 0;
        relay(c);
}

static void connect_next(Conn *c);

static void connect_failed(Conn *c, int err)
{
        if (c->ufd >= 0) {
                epoll_ctl(c->p->epfd, EPOLL_CTL_DEL, c->ufd, NULL);
                close(c->ufd);
                c->ufd = -1;
        }
        if (c->next_cand < c->n_cand) {
                connect_next(c);
                return;
        }
        char reason[400];
        char a[INET6_ADDRSTRLEN];
        aj_net_format_address((struct sockaddr *)&c->addr, a, sizeof(a));
        snprintf(reason, sizeof(reason), "cannot connect to %s port %u (%s): %s", c->host, c->port, a,
                 strerror(-err));
        c->error = err == -ECONNREFUSED ? "connection refused" : err == -ETIMEDOUT ? "connect timeout"
                                                                                   : "connect failed";
        c->connected = false;
        uint8_t rep = err == -ECONNREFUSED ? 0x05 : err == -ENETUNREACH ? 0x03 : err == -ETIMEDOUT ? 0x04 : 0x04;
        refuse(c, err == -ETIMEDOUT ? 504 : 502, rep, reason);
}

static void connect_next(Conn *c)
{
        AjProxy *p = c->p;
        while (c->next_cand < c->n_cand) {
                struct sockaddr_storage *ss = &c->cand[c->next_cand++];
                socklen_t sl = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
                if (ss->ss_family == AF_INET6)
                        ((struct sockaddr_in6 *)ss)->sin6_port = htons(c->port);
                else
                        ((struct sockaddr_in *)ss)->sin_port = htons(c->port);
                c->addr = *ss;
                c->connected = true; /* address known (reported even if the connect fails) */
                int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        connect_failed(c, negative_errno());
                        return;
                }
                /* Before connect(): the window scale is chosen from the buffer at SYN time. */
                int r = bound_buffers(fd);
                if (r < 0) {
                        close(fd);
                        connect_failed(c, r);
                        return;
                }
                if (connect(fd, (struct sockaddr *)ss, sl) < 0 && errno != EINPROGRESS) {
                        int err = negative_errno();
                        close(fd);
                        if (c->next_cand < c->n_cand)
                                continue;
                        connect_failed(c, err);
                        return;
                }
                c->ufd = fd;
                struct epoll_event ev = {
                        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                        .data.u64 = tag(c->slot, c->gen, TAG_UPSTREAM),
                };
                if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        connect_failed(c, negative_errno());
                        return;
                }
                c->state = ST_CONNECTING;
                return;
        }
        connect_failed(c, -EHOSTUNREACH);
}

static void on_resolved(void *userdata, int error, const struct sockaddr_storage *addrs, size_t n)
{
        Conn *c = userdata;
        AjNetVerdict first_denial = { .rule = -1 };
        struct sockaddr_storage denied_addr = {};
        bool have_denial = false;

        c->resolving = false;
        c->n_cand = c->next_cand = 0;
        const AjNetAddrSet *own = NULL;
        if (n > 0 && aj_host_addrs_get(c->p->host_addrs, &own) < 0) {
                /* Fail closed: without this host's addresses no resolved address can be judged. */
                AjNetVerdict v = { .rule = -1 };
                snprintf(v.reason, sizeof(v.reason), "cannot read this host's addresses to check %s", c->host);
                deny(c, &v, NULL);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                AjNetVerdict v;
                aj_net_check_resolved(c->p->policy, own, c->host, (const struct sockaddr *)&addrs[i], c->port, &v);
                if (v.allowed)
                        c->cand[c->n_cand++] = addrs[i];
                else if (!have_denial) {
                        first_denial = v;
                        denied_addr = addrs[i];
                        have_denial = true;
                }
        }
        if (c->n_cand > 0) {
                connect_next(c);
                return;
        }
        if (have_denial) {
                deny(c, &first_denial, (struct sockaddr *)&denied_addr);
                return;
        }
        char reason[400];
        snprintf(reason, sizeof(reason), "cannot resolve %s: %s", c->host,
                 error == -ETIMEDOUT ? "timed out" : error == -ENOENT ? "no such host" : "resolver failure");
        c->error = "resolve failed";
        refuse(c, error == -ETIMEDOUT ? 504 : 502, 0x04, reason);
}

/* The request is complete: check it, then resolve or connect. */
static void evaluate(Conn *c)
{
        AjProxy *p = c->p;
        AjNetVerdict v;

        if (c->overflow) {
                char reason[128];
                snprintf(reason, sizeof(reason), "too many connections (at most %u per run)", p->opts.max_connections);
                c->error = "connection limit";
                json_t *f = conn_json(c);
                if (f)
                        json_object_set_new(f, "reason", json_string(reason));
                emit(p, "net.denied", f);
                refuse(c, 503, 0x01, reason);
                return;
        }
        c->evaluated = true;
        p->total++;
        aj_net_check_host(p->policy, c->host, c->port, &v);
        if (v.rule >= 0)
                snprintf(c->rule, sizeof(c->rule), "%s", p->policy->rules[v.rule].text);
        if (!v.allowed) {
                deny(c, &v, NULL);
                return;
        }
        struct sockaddr_storage ss = {};
        if (inet_pton(AF_INET, c->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
                ss.ss_family = AF_INET;
        else if (inet_pton(AF_INET6, c->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
                ss.ss_family = AF_INET6;
        c->deadline_ns = now_ns() + p->opts.connect_timeout_ms * 1000000ULL;
        if (ss.ss_family != 0) {
                /* A literal: the address rule already decided. */
                c->cand[0] = ss;
                c->n_cand = 1;
                c->next_cand = 0;
                connect_next(c);
                return;
        }
        /* Resolve (and report) the canonical name the allowlist matched, not the client's spelling. */
        char norm[AJ_NET_HOST_MAX + 1];
        const char *why;
        if (aj_net_host_normalize(c->host, strlen(c->host), norm, &why) >= 0)
                memcpy(c->host, norm, strlen(norm) + 1);
        int r = aj_resolver_resolve(p->resolver, c->host, on_resolved, c, &c->resolve_id);
        if (r < 0) {
                c->error = "resolver busy";
                refuse(c, 503, 0x01, "too many name lookups in progress");
                return;
        }
        c->resolving = true;
        c->state = ST_RESOLVING;
}

static void read_request(Conn *c)
{
        size_t cap = c->socks ? SOCKS_MAX : AJ_PROXY_MAX_HEADER;
        bool eof = false;

        while (c->in_len < cap) {
                ssize_t n = recv(c->cfd, c->in + c->in_len, cap - c->in_len, 0);
                if (n == 0) {
                        eof = true;
                        break;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        conn_close(c);
                        return;
                }
                c->in_len += (size_t)n;
        }

        if (!c->socks) {
                AjHttpRequest req;
                int status;
                const char *why;
                int r = aj_http_parse_request(c->in, c->in_len, &req, &status, &why);
                if (r == -EAGAIN) {
                        if (eof)
                                conn_close(c);
                        return;
                }
                if (r == -EPERM) {
                        snprintf(c->host, sizeof(c->host), "%s", req.host);
                        c->port = req.port;
                        AjNetVerdict v = { .rule = -1 };
                        snprintf(v.reason, sizeof(v.reason), "%s", why);
                        deny_with(c, &v, NULL, status);
                        return;
                }
                if (r < 0) {
                        refuse(c, status, 0, why);
                        return;
                }
                snprintf(c->host, sizeof(c->host), "%s", req.host);
                c->port = req.port;
                c->is_connect = req.is_connect;
                size_t extra = c->in_len - req.head_len;
                size_t base = req.is_connect ? 0 : req.forward_len;
                if (!req.is_connect) {
                        /* What arrived with the head: its body (up to where it ends), then maybe
                         * another request, which is not relayed. */
                        const char *more = c->in + req.head_len;
                        size_t take = 0;
                        c->body = req.body;
                        c->head_request = streq(req.method, "HEAD");
                        c->body_left = req.content_length;
                        if (req.body == AJ_HTTP_BODY_LENGTH) {
                                take = extra < c->body_left ? extra : (size_t)c->body_left;
                                c->body_left -= take;
                                c->req_done = c->body_left == 0;
                        } else if (req.body == AJ_HTTP_BODY_CHUNKED) {
                                ssize_t t = aj_http_chunked_scan(&c->chunk, more, extra, &c->req_done);
                                if (t < 0) {
                                        aj_http_request_done(&req);
                                        refuse(c, 400, 0, "malformed chunked body");
                                        return;
                                }
                                take = (size_t)t;
                        } else
                                c->req_done = true;
                        if (c->req_done && extra > take)
                                note_pipelined(c, more + take, extra - take);
                        extra = take;
                }
                if (base + extra > 0) {
                        c->fwd = malloc(base + extra);
                        if (!c->fwd) {
                                aj_http_request_done(&req);
                                conn_close(c);
                                return;
                        }
                        if (base)
                                memcpy(c->fwd, req.forward_head, base);
                        memcpy(c->fwd + base, c->in + req.head_len, extra);
                        c->fwd_len = base + extra;
                }
                aj_http_request_done(&req);
                evaluate(c);
                return;
        }

        if (c->state == ST_SOCKS_GREETING) {
                int r = aj_socks_parse_greeting((uint8_t *)c->in, c->in_len);
                if (r == -EAGAIN) {
                        if (eof)
                                conn_close(c);
                        return;
                }
                if (r < 0) {
                        /* Bad version: just close; no acceptable method: say so (0xFF). */
                        if (r == -EPERM)
                                (void)!send(c->cfd, "\x05\xff", 2, MSG_NOSIGNAL);
                        conn_close(c);
                        return;
                }
                /* The method reply is two bytes into an empty socket buffer: it cannot block. */
                if (send(c->cfd, "\x05\x00", 2, MSG_NOSIGNAL) != 2) {
                        conn_close(c);
                        return;
                }
                memmove(c->in, c->in + r, c->in_len - (size_t)r);
                c->in_len -= (size_t)r;
                c->state = ST_SOCKS_REQUEST;
        }
        AjSocksRequest req;
        uint8_t rep;
        const char *why;
        int r = aj_socks_parse_request((uint8_t *)c->in, c->in_len, &req, &rep, &why);
        if (r == -EAGAIN) {
                if (eof)
                        conn_close(c);
                return;
        }
        if (r == -EPERM) {
                /* Not a name any rule could allow: a denial like the others, not a parse error. */
                deny_unjudged(c, why);
                return;
        }
        if (r < 0) {
                refuse(c, 400, rep, why);
                return;
        }
        snprintf(c->host, sizeof(c->host), "%s", req.host);
        c->port = req.port;
        if (c->in_len > req.consumed) {
                c->fwd_len = c->in_len - req.consumed;
                c->fwd = malloc(c->fwd_len);
                if (!c->fwd) {
                        conn_close(c);
                        return;
                }
                memcpy(c->fwd, c->in + req.consumed, c->fwd_len);
        }
        evaluate(c);
}

static void on_client(Conn *c)
{
        switch (c->state) {
        case ST_HTTP_HEAD:
        case ST_SOCKS_GREETING:
        case ST_SOCKS_REQUEST:
                read_request(c);
                break;
        case ST_RELAY:
                relay(c);
                break;
        case ST_REFUSE:
                flush_out(c);
                break;
        case ST_LINGER:
                linger(c);
                break;
        default:
                /* Resolving or connecting: the client waits; what it sends stays queued. */
                break;
        }
}

static void on_upstream(Conn *c, uint32_t events)
{
        if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof(err);
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        connect_failed(c, -err);
                        return;
                }
                start_relay(c);
                return;
        }
        if (c->state == ST_RELAY)
                relay(c);
}

/* Re-run a connection whose state changed without a new edge on its fds. */
static void conn_kick(Conn *c)
{
        if (c->state == ST_LINGER)
                linger(c);
}

static void conn_close(Conn *c)
{
        AjProxy *p = c->p;

        if (c->resolving)
                aj_resolver_cancel(p->resolver, c->resolve_id);
        if (c->evaluated) {
                json_t *f = conn_json(c);
                if (f) {
                        json_object_set_new(f, "verdict", json_string(c->denied ? "denied" : "allowed"));
                        if (c->rule[0])
                                json_object_set_new(f, "rule", json_string(c->rule));
                        json_object_set_new(f, "bytes_up", json_integer((json_int_t)c->up.bytes));
                        json_object_set_new(f, "bytes_down", json_integer((json_int_t)c->down.bytes));
                        json_object_set_new(f, "duration_ms",
                                            json_integer((json_int_t)((now_ns() - c->start_ns) / 1000000ULL)));
                        if (c->error)
                                json_object_set_new(f, "error", json_string(c->error));
                }
                emit(p, "net.connect", f);
        }
        if (c->cfd >= 0)
                close(c->cfd); /* closing removes it from epoll */
        if (c->ufd >= 0)
                close(c->ufd);
        Dir *dirs[] = { &c->up, &c->down };
        for (size_t i = 0; i < 2; i++) {
                if (dirs[i]->pr >= 0)
                        close(dirs[i]->pr);
                if (dirs[i]->pw >= 0)
                        close(dirs[i]->pw);
                free(dirs[i]->prefix);
        }
        free(c->in);
        free(c->out);
        free(c->fwd);
        free(c->resp);
        if (c->pending)
                for (unsigned i = 0; i < p->n_pending; i++)
                        if (p->pending[i] == c->slot) {
                                p->pending[i] = p->pending[--p->n_pending];
                                break;
                        }
        p->slots[c->slot] = NULL;
        p->gens[c->slot]++;
        p->active--;
        if (!c->overflow)
                p->regular--;
        free(c);

        if (p->paused) {
                struct epoll_event ev = { .events = EPOLLIN };
                ev.data.u64 = tag(SP_HTTP_LISTEN, 0, TAG_SPECIAL);
                epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->http_fd, &ev);
                ev.data.u64 = tag(SP_SOCKS_LISTEN, 0, TAG_SPECIAL);
                epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->socks_fd, &ev);
                p->paused = false;
        }
}

static void pause_listeners(AjProxy *p)
{
        struct epoll_event ev = { .events = 0 };
        ev.data.u64 = tag(SP_HTTP_LISTEN, 0, TAG_SPECIAL);
        epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->http_fd, &ev);
        ev.data.u64 = tag(SP_SOCKS_LISTEN, 0, TAG_SPECIAL);
        epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->socks_fd, &ev);
        p->paused = true;
}

static void accept_some(AjProxy *p, int lfd, bool socks)
{
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                /* Inherited from the listener, but that was made in the jail: set them here. */
                if (fd >= 0 && bound_buffers(fd) < 0) {
                        close(fd);
                        continue;
                }
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                /* Level-triggered listeners would spin; resume when a connection closes. */
                                if (p->active > 0)
                                        pause_listeners(p);
                        return;
                }
                unsigned slot = UINT32_MAX;
                for (unsigned s = 0; s < p->n_slots; s++)
                        if (!p->slots[s]) {
                                slot = s;
                                break;
                        }
                Conn *c = slot == UINT32_MAX ? NULL : calloc(1, sizeof(*c));
                if (c)
                        c->in = malloc(socks ? SOCKS_MAX : AJ_PROXY_MAX_HEADER);
                if (!c || !c->in) {
                        if (c)
                                free(c);
                        close(fd);
                        continue;
                }
                c->p = p;
                c->slot = slot;
                c->gen = p->gens[slot];
                c->id = p->next_id++;
                c->socks = socks;
                c->state = socks ? ST_SOCKS_GREETING : ST_HTTP_HEAD;
                c->cfd = fd;
                c->ufd = -1;
                c->up.pr = c->up.pw = c->down.pr = c->down.pw = -1;
                c->start_ns = now_ns();
                c->deadline_ns = c->start_ns + p->opts.header_timeout_ms * 1000000ULL;
                c->overflow = p->regular >= p->opts.max_connections;
                struct epoll_event ev = {
                        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                        .data.u64 = tag(slot, c->gen, TAG_CLIENT),
                };
                if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        free(c->in);
                        free(c);
                        close(fd);
                        continue;
                }
                p->slots[slot] = c;
                p->active++;
                if (!c->overflow)
                        p->regular++;
                /* Data may already be there: ET reports it, but read now to save a round. */
                read_request(c);
        }
}

static void on_timer(AjProxy *p)
{
        uint64_t now = now_ns();
        for (unsigned s = 0; s < p->n_slots; s++) {
                Conn *c = p->slots[s];
                if (!c || c->deadline_ns == 0 || c->deadline_ns > now)
                        continue;
                switch (c->state) {
                case ST_HTTP_HEAD:
                        c->deadline_ns = 0;
                        refuse(c, 408, 0, "request head not received in time");
                        break;
                case ST_SOCKS_GREETING:
                case ST_SOCKS_REQUEST:
                        conn_close(c);
                        break;
                case ST_RESOLVING:
                case ST_CONNECTING:
                        c->deadline_ns = 0;
                        if (c->state == ST_CONNECTING) {
                                c->next_cand = c->n_cand;
                                connect_failed(c, -ETIMEDOUT);
                        } else {
                                c->error = "resolve timeout";
                                refuse(c, 504, 0x04, "name resolution timed out");
                        }
                        break;
                default:
                        conn_close(c);
                }
        }
}

static void arm_timer(AjProxy *p)
{
        uint64_t next = UINT64_MAX, now = now_ns();
        for (unsigned s = 0; s < p->n_slots; s++) {
                Conn *c = p->slots[s];
                if (c && c->deadline_ns && c->deadline_ns < next)
                        next = c->deadline_ns;
        }
        struct itimerspec its = {};
        if (next != UINT64_MAX) {
                uint64_t d = next > now ? next - now : 1;
                its.it_value.tv_sec = (time_t)(d / 1000000000ULL);
                its.it_value.tv_nsec = (long)(d % 1000000000ULL);
        }
        timerfd_settime(p->timerfd, 0, &its, NULL);
}

static Conn *lookup(AjProxy *p, uint64_t u64)
{
        unsigned slot = (unsigned)((u64 & 0xffffffffULL) >> 2);
        uint32_t gen = (uint32_t)(u64 >> 32);
        if (slot >= p->n_slots || !p->slots[slot] || p->slots[slot]->gen != gen)
                return NULL;
        return p->slots[slot];
}

int aj_proxy_dispatch(AjProxy *p)
{
        struct epoll_event evs[DISPATCH_EVENTS];
        int n = epoll_wait(p->epfd, evs, DISPATCH_EVENTS, 0);
        if (n < 0)
                return errno == EINTR ? 0 : negative_errno();

        for (int i = 0; i < n; i++) {
                uint64_t u = evs[i].data.u64;
                unsigned which = (unsigned)(u & 3);
                if (which == TAG_SPECIAL) {
                        unsigned sp = (unsigned)((u & 0xffffffffULL) >> 2);
                        uint64_t x;
                        switch (sp) {
                        case SP_HTTP_LISTEN:
                                accept_some(p, p->http_fd, false);
                                break;
                        case SP_SOCKS_LISTEN:
                                accept_some(p, p->socks_fd, true);
                                break;
                        case SP_RESOLVER:
                                aj_resolver_dispatch(p->resolver);
                                break;
                        case SP_TIMER:
                                (void)!read(p->timerfd, &x, sizeof(x));
                                on_timer(p);
                                break;
                        case SP_WAKE:
                                (void)!read(p->wakefd, &x, sizeof(x));
                                break;
                        }
                        continue;
                }
                Conn *c = lookup(p, u);
                if (!c)
                        continue;
                if (which == TAG_CLIENT)
                        on_client(c);
                else
                        on_upstream(c, evs[i].events);
        }

        /* Connections that used their budget: one more round each, in arrival order. */
        unsigned np = p->n_pending;
        unsigned *snapshot = np ? malloc(np * sizeof(unsigned)) : NULL;
        if (np && snapshot) {
                memcpy(snapshot, p->pending, np * sizeof(unsigned));
                p->n_pending = 0;
                for (unsigned i = 0; i < np; i++) {
                        Conn *c = p->slots[snapshot[i]];
                        if (!c || !c->pending)
                                continue;
                        c->pending = false;
                        if (c->state == ST_RELAY)
                                relay(c);
                }
                free(snapshot);
        }
        arm_timer(p);
        return 0;
}

int aj_proxy_fd(AjProxy *p) { return p->epfd; }

json_t *aj_proxy_stats(AjProxy *p)
{
        return json_pack("{s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)p->total, "active",
                         (json_int_t)p->active, "denied", (json_int_t)p->denied, "bytes_up",
                         (json_int_t)p->bytes_up, "bytes_down", (json_int_t)p->bytes_down);
}

void aj_proxy_free(AjProxy *p)
{
        if (!p)
                return;
        for (unsigned s = 0; p->slots && s < p->n_slots; s++)
                if (p->slots[s])
                        conn_close(p->slots[s]);
        aj_resolver_free(p->resolver);
        aj_host_addrs_free(p->host_addrs);
        int fds[] = { p->epfd, p->http_fd, p->socks_fd, p->timerfd, p->wakefd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        free(p->slots);
        free(p->gens);
        free(p->pending);
        free(p);
}

static int add_special(AjProxy *p, int fd, unsigned sp)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag(sp, 0, TAG_SPECIAL) };
        return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? negative_errno() : 0;
}

int aj_proxy_new_with_options(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks,
                              const AjProxyOptions *opts, AjProxy **ret)
{
        AjProxy *p = calloc(1, sizeof(*p));
        int r;

        if (!p) {
                if (http_fd >= 0)
                        close(http_fd);
                if (socks_fd >= 0)
                        close(socks_fd);
                return -ENOMEM;
        }
        p->http_fd = http_fd;
        p->socks_fd = socks_fd;
        p->epfd = p->timerfd = p->wakefd = -1;
        p->policy = policy;
        p->hooks = hooks;
        p->next_id = 1;
        if (opts)
                p->opts = *opts;
        if (!p->opts.header_timeout_ms)
                p->opts.header_timeout_ms = 30000;
        if (!p->opts.connect_timeout_ms)
                p->opts.connect_timeout_ms = 20000;
        if (!p->opts.max_connections || p->opts.max_connections > 65536)
                p->opts.max_connections = AJ_PROXY_MAX_CONNECTIONS;

        p->n_slots = p->opts.max_connections + RESERVE_SLOTS;
        p->slots = calloc(p->n_slots, sizeof(Conn *));
        p->gens = calloc(p->n_slots, sizeof(uint32_t));
        p->pending = calloc(p->n_slots, sizeof(unsigned));
        if (!p->slots || !p->gens || !p->pending) {
                r = -ENOMEM;
                goto fail;
        }
        p->epfd = epoll_create1(EPOLL_CLOEXEC);
        p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->epfd < 0 || p->timerfd < 0 || p->wakefd < 0) {
                r = negative_errno();
                goto fail;
        }
        r = aj_resolver_new(p->opts.connect_timeout_ms / 2, &p->resolver);
        if (r < 0)
                goto fail;
        r = aj_host_addrs_new(&p->host_addrs);
        if (r < 0)
                goto fail;
        if ((http_fd >= 0 && (r = add_special(p, http_fd, SP_HTTP_LISTEN)) < 0) ||
            (socks_fd >= 0 && (r = add_special(p, socks_fd, SP_SOCKS_LISTEN)) < 0) ||
            (r = add_special(p, aj_resolver_fd(p->resolver), SP_RESOLVER)) < 0 ||
            (r = add_special(p, p->timerfd, SP_TIMER)) < 0 || (r = add_special(p, p->wakefd, SP_WAKE)) < 0)
                goto fail;

        /* Each connection holds up to six fds (two sockets, two pipes): make room for the
         * connection limit rather than fail at accept. */
        struct rlimit rl;
        rlim_t want = (rlim_t)p->n_slots * 6 + 256;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
                rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        *ret = p;
        return 0;
fail:
        aj_proxy_free(p);
        return r;
}

int aj_proxy_new(int http_fd, int socks_fd, const AjNetPolicy *policy, const AjHooks *hooks, AjProxy **ret)
{
        return aj_proxy_new_with_options(http_fd, socks_fd, policy, hooks, NULL, ret);
}
