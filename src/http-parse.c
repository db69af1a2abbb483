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

/* One pass over an authority ("host", "[v6]", ":port"), each check next to the byte it
 * reads: split, it would scan the same bytes twice. */
static int parse_authority(const char *s, size_t len, bool need_port, uint16_t default_port, char *host, uint16_t *port,
                           const char **why)
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

static bool is_tchar(char ch) { return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch)); }

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

/* A request head being read: what the steps of aj_http_parse_request() pass on. */
typedef struct {
        const char *buf;
        size_t head;         /* bytes of the head, blank line included */
        const char *eol;     /* the request line's '\n' */
        const char *version; /* "HTTP/1.0" or "HTTP/1.1" */
        const char *path;    /* absolute-form: what follows the authority */
        size_t pl;
        char *fwd; /* absolute-form: the head to send upstream, being written */
        size_t fl;
        bool have_host, have_length, have_te;
        int status;
        const char *why;
} HeadParse;

/* The request is malformed: -EINVAL with an HTTP status. */
static int fail(HeadParse *hp, int status, const char *why)
{
        hp->status = status;
        hp->why = why;
        return -EINVAL;
}

/* The request names two destinations (or hides which): a denial (-EPERM, status 400). */
static int deny(HeadParse *hp, const char *why)
{
        hp->status = 400;
        hp->why = why;
        return -EPERM;
}

/* Where the head ends, and that it holds no byte servers could read differently. */
static int find_head(HeadParse *hp, size_t len)
{
        const char *buf = hp->buf;
        for (size_t i = 0; i < len && i < AJ_HTTP_MAX_HEAD; i++)
                if (buf[i] == '\n' &&
                    ((i >= 1 && buf[i - 1] == '\n') || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
                        hp->head = i + 1;
                        break;
                }
        if (hp->head == 0) {
                if (len >= AJ_HTTP_MAX_HEAD)
                        return fail(hp, 431, "request head larger than 16 KiB");
                /* A request line alone can already be judged (and a client that never ends its
                 * head gets its answer early). */
                const char *nl = memchr(buf, '\n', len);
                if (!nl && len > MAX_TARGET + 32)
                        return fail(hp, 414, "request line too long");
                return -EAGAIN;
        }
        for (size_t i = 0; i < hp->head; i++) {
                unsigned char ch = (unsigned char)buf[i];
                if (ch == 0 || (ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7f)
                        return fail(hp, 400, "control character in request head");
                /* A CR that does not end a line is a line end to some servers and not to others. */
                if (ch == '\r' && (i + 1 >= hp->head || buf[i + 1] != '\n'))
                        return fail(hp, 400, "bare CR in request head");
        }
        return 0;
}

/* The request target: CONNECT's authority, or an absolute http:// URL. */
static int parse_target(HeadParse *hp, AjHttpRequest *req, const char *target, size_t tl)
{
        const char *why;
        if (streq(req->method, "CONNECT")) {
                req->is_connect = true;
                if (parse_authority(target, tl, true, 0, req->host, &req->port, &why) < 0)
                        return fail(hp, 400, why);
                return 0;
        }
        if (target[0] == '/')
                return fail(hp, 400, "not a proxy request (expected an absolute http:// URL or CONNECT)");
        if (tl >= 8 && strncasecmp(target, "https://", 8) == 0)
                return fail(hp, 400, "https:// URLs go through CONNECT");
        if (tl < 7 || strncasecmp(target, "http://", 7) != 0)
                return fail(hp, 400, "unsupported URL scheme (only http:// is forwarded; use CONNECT or SOCKS5)");
        const char *auth = target + 7, *end = target + tl, *a_end = auth;
        while (a_end < end && *a_end != '/' && *a_end != '?' && *a_end != '#')
                a_end++;
        if (parse_authority(auth, (size_t)(a_end - auth), false, 80, req->host, &req->port, &why) < 0)
                return fail(hp, 400, why);
        hp->path = a_end;
        hp->pl = (size_t)(end - a_end);
        return 0;
}

static int parse_request_line(HeadParse *hp, AjHttpRequest *req)
{
        const char *line = hp->buf;
        hp->eol = memchr(line, '\n', hp->head);
        size_t ll = (size_t)(hp->eol - line);
        if (ll > 0 && line[ll - 1] == '\r')
                ll--;
        const char *sp1 = memchr(line, ' ', ll);
        if (!sp1)
                return fail(hp, 400, "malformed request line");
        size_t ml = (size_t)(sp1 - line);
        if (ml == 0 || ml >= sizeof(req->method))
                return fail(hp, 400, "malformed request method");
        for (size_t i = 0; i < ml; i++)
                if (!isupper((unsigned char)line[i]) && line[i] != '-' && line[i] != '_')
                        return fail(hp, 400, "malformed request method");
        memcpy(req->method, line, ml);
        req->method[ml] = 0;
        const char *target = sp1 + 1;
        const char *sp2 = memchr(target, ' ', (size_t)(line + ll - target));
        if (!sp2)
                return fail(hp, 400, "malformed request line");
        size_t tl = (size_t)(sp2 - target);
        hp->version = sp2 + 1;
        size_t vl = (size_t)(line + ll - hp->version);
        if (tl == 0)
                return fail(hp, 400, "empty request target");
        if (tl > MAX_TARGET)
                return fail(hp, 414, "request target longer than 8 KiB");
        if (!((vl == 8 && (memcmp(hp->version, "HTTP/1.1", 8) == 0 || memcmp(hp->version, "HTTP/1.0", 8) == 0))))
                return fail(hp, 400, "unsupported HTTP version (HTTP/1.0 or HTTP/1.1 expected)");
        return parse_target(hp, req, target, tl);
}

/* Absolute-form: the forwarded head starts with the request line in origin form. */
static int start_forward_head(HeadParse *hp, const AjHttpRequest *req)
{
        if (req->is_connect)
                return 0;
        /* The rewritten head is never longer than the original plus CRLFs for bare LFs. */
        size_t cap = hp->head + 2 * MAX_HEADERS + 64;
        hp->fwd = malloc(cap + hp->pl + 8);
        if (!hp->fwd)
                return fail(hp, 500, "out of memory");
        size_t ml = strlen(req->method);
        memcpy(hp->fwd + hp->fl, req->method, ml);
        hp->fl += ml;
        hp->fwd[hp->fl++] = ' ';
        if (hp->pl == 0 || hp->path[0] != '/')
                hp->fwd[hp->fl++] = '/';
        memcpy(hp->fwd + hp->fl, hp->path, hp->pl);
        hp->fl += hp->pl;
        hp->fwd[hp->fl++] = ' ';
        memcpy(hp->fwd + hp->fl, hp->version, 8);
        hp->fl += 8;
        memcpy(hp->fwd + hp->fl, "\r\n", 2);
        hp->fl += 2;
        return 0;
}

/* One header field: validated; Host, Content-Length and Transfer-Encoding noted. */
static int check_header(HeadParse *hp, AjHttpRequest *req, const char *h, size_t hl)
{
        if (h[0] == ' ' || h[0] == '\t')
                return fail(hp, 400, "folded header lines are not accepted");
        const char *colon = memchr(h, ':', hl);
        if (!colon || colon == h)
                return fail(hp, 400, "malformed header field");
        for (const char *c = h; c < colon; c++)
                if (*c == ' ' || *c == '\t')
                        return fail(hp, 400, "whitespace in a header field name");
                else if (!is_tchar(*c))
                        return fail(hp, 400, "invalid character in a header field name");
        const char *value = colon + 1;
        size_t vlen = trim_ows(&value, h + hl);
        if (header_is(h, hl, "Host")) {
                if (hp->have_host)
                        return deny(hp, "more than one Host header");
                hp->have_host = true;
                if (!req->is_connect && !host_header_matches(value, vlen, req->host, req->port))
                        return deny(hp, "the Host header does not match the request's authority");
        } else if (header_is(h, hl, "Content-Length")) {
                if (hp->have_length)
                        return fail(hp, 400, "more than one Content-Length header");
                hp->have_length = true;
                if (!parse_content_length(value, vlen, &req->content_length))
                        return fail(hp, 400, "invalid Content-Length");
        } else if (header_is(h, hl, "Transfer-Encoding")) {
                if (hp->have_te)
                        return fail(hp, 400, "more than one Transfer-Encoding header");
                hp->have_te = true;
                if (vlen != 7 || strncasecmp(value, "chunked", 7) != 0)
                        return fail(hp, 400, "unsupported Transfer-Encoding (only \"chunked\")");
        }
        return 0;
}

/* Headers: validated for both forms; copied to the forwarded head for absolute-form, less the
 * hop-by-hop ones. */
static int scan_headers(HeadParse *hp, AjHttpRequest *req)
{
        unsigned n_headers = 0;
        const char *h = hp->eol + 1, *end = hp->buf + hp->head;
        while (h < end) {
                const char *next;
                size_t hl = head_line(h, end, &next);
                if (hl == 0)
                        break;
                if (++n_headers > MAX_HEADERS)
                        return fail(hp, 431, "more than 128 header fields");
                int r = check_header(hp, req, h, hl);
                if (r < 0)
                        return r;
                bool hop = header_is(h, hl, "Proxy-Connection") || header_is(h, hl, "Proxy-Authorization") ||
                           header_is(h, hl, "Connection") || header_is(h, hl, "Keep-Alive");
                if (hp->fwd && !hop) {
                        memcpy(hp->fwd + hp->fl, h, hl);
                        hp->fl += hl;
                        memcpy(hp->fwd + hp->fl, "\r\n", 2);
                        hp->fl += 2;
                }
                h = next;
        }
        return 0;
}

/* Absolute-form: how the body ends, refusing request smuggling (two framings, or one a
 * server may read differently). */
static int check_framing(HeadParse *hp, AjHttpRequest *req)
{
        if (req->is_connect)
                return 0;
        if (hp->have_te && hp->have_length)
                return fail(hp, 400, "both Content-Length and Transfer-Encoding");
        if (hp->have_te && memcmp(hp->version, "HTTP/1.0", 8) == 0)
                return fail(hp, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (!hp->have_host && memcmp(hp->version, "HTTP/1.1", 8) == 0)
                return deny(hp, "HTTP/1.1 request without a Host header");
        req->body = hp->have_te                                  ? AJ_HTTP_BODY_CHUNKED
                    : hp->have_length && req->content_length > 0 ? AJ_HTTP_BODY_LENGTH
                                                                 : AJ_HTTP_BODY_NONE;
        return 0;
}

/* One request per connection: the upstream closes after its answer, so a second request
 * on this connection can never reach a host that was not checked. */
static int end_forward_head(HeadParse *hp, const AjHttpRequest *req)
{
        if (!hp->fwd)
                return 0;
        if (!hp->have_host) {
                char hostline[AJ_NET_HOST_MAX + 32];
                bool v6 = strchr(req->host, ':') != NULL;
                int k = snprintf(hostline, sizeof(hostline), "Host: %s%s%s:%u\r\n", v6 ? "[" : "", req->host,
                                 v6 ? "]" : "", req->port);
                char *nf = realloc(hp->fwd, hp->fl + (size_t)k + 32);
                if (!nf)
                        return fail(hp, 500, "out of memory");
                hp->fwd = nf;
                memcpy(hp->fwd + hp->fl, hostline, (size_t)k);
                hp->fl += (size_t)k;
        }
        char *nf = realloc(hp->fwd, hp->fl + 32);
        if (!nf)
                return fail(hp, 500, "out of memory");
        hp->fwd = nf;
        memcpy(hp->fwd + hp->fl, "Connection: close\r\n\r\n", 21);
        hp->fl += 21;
        return 0;
}

int aj_http_parse_request(const char *buf, size_t len, AjHttpRequest *ret, int *ret_status, const char **ret_why)
{
        AjHttpRequest req = {};
        HeadParse hp = { .buf = buf };
        int r = find_head(&hp, len);
        if (r == 0)
                r = parse_request_line(&hp, &req);
        if (r == 0)
                r = start_forward_head(&hp, &req);
        if (r == 0)
                r = scan_headers(&hp, &req);
        if (r == 0)
                r = check_framing(&hp, &req);
        if (r == 0)
                r = end_forward_head(&hp, &req);
        if (r == -EAGAIN)
                return r;
        if (r < 0) {
                free(hp.fwd);
                *ret_status = hp.status;
                *ret_why = hp.why;
                if (r == -EPERM) {
                        /* The denial's event names the request line's host and port. */
                        memset(ret, 0, sizeof(*ret));
                        memcpy(ret->host, req.host, sizeof(req.host));
                        ret->port = req.port;
                }
                return r;
        }
        req.head_len = hp.head;
        req.forward_head = hp.fwd;
        req.forward_len = hp.fl;
        *ret = req;
        return 0;
}

enum {
        CK_SIZE,
        CK_EXT,
        CK_SIZE_LF,
        CK_DATA,
        CK_DATA_CR,
        CK_DATA_LF,
        CK_TRAILER_START,
        CK_TRAILER,
        CK_TRAILER_LF,
        CK_END_LF,
        CK_DONE
};

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

/* Where a final response's body ends (RFC 9112 6.3, in its order). chunked: 1 chunked, 0 another
 * Transfer-Encoding, -1 none; length: Content-Length, UINT64_MAX when absent. */
static void response_body(AjHttpResponse *r, int status, int chunked, uint64_t length)
{
        if (status == 204 || status == 304)
                r->body = AJ_HTTP_BODY_NONE;
        else if (status == 101)
                r->body = AJ_HTTP_BODY_UNTIL_CLOSE;
        else if (chunked >= 0)
                r->body = chunked ? AJ_HTTP_BODY_CHUNKED : AJ_HTTP_BODY_UNTIL_CLOSE;
        else if (length != UINT64_MAX) {
                r->body = length > 0 ? AJ_HTTP_BODY_LENGTH : AJ_HTTP_BODY_NONE;
                r->content_length = length;
        } else
                r->body = AJ_HTTP_BODY_UNTIL_CLOSE;
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

        *ret = (AjHttpResponse){ .head = out, .head_len = ol, .consumed = head, .final = final };
        if (final && !head_request)
                response_body(ret, status, have_te ? (chunked ? 1 : 0) : -1, have_length ? length : UINT64_MAX);
        return 0;
}

const char *aj_http_reason_phrase(unsigned status)
{
        switch (status) {
        case 200:
                return "OK";
        case 400:
                return "Bad Request";
        case 401:
                return "Unauthorized";
        case 403:
                return "Forbidden";
        case 404:
                return "Not Found";
        case 408:
                return "Request Timeout";
        case 413:
                return "Content Too Large";
        case 414:
                return "URI Too Long";
        case 417:
                return "Expectation Failed";
        case 429:
                return "Too Many Requests";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        case 502:
                return "Bad Gateway";
        case 503:
                return "Service Unavailable";
        case 504:
                return "Gateway Timeout";
        case 505:
                return "HTTP Version Not Supported";
        case 529:
                return "Overloaded";
        default:
                return status >= 200 && status < 300 ? "OK" : "Error";
        }
}
