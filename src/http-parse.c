/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's HTTP/1.x parsers (see http-parse.h). */
#include "http-parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/macros.h"

#define MAX_TARGET 8192
#define MAX_HEADERS 128

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
        for (size_t i = 0; i < len && i < AJ_HTTP_MAX_HEAD; i++)
                if (buf[i] == '\n' && ((i >= 1 && buf[i - 1] == '\n') ||
                                       (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
                        head = i + 1;
                        break;
                }
        if (head == 0) {
                if (len >= AJ_HTTP_MAX_HEAD)
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
