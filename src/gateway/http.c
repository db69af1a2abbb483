/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/http.h"
#include "util/parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define CHUNK_LINE_MAX 4096
#define TRAILERS_MAX 8192

static bool is_tchar(unsigned char c)
{
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values: visible ASCII, space, tab and obs-text; never other controls. */
static bool is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool aj_gw_header_is(const AjGwHeader *h, const char *name)
{
        return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

const AjGwHeader *aj_gw_header_find(const AjGwHeader *h, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (aj_gw_header_is(&h[i], name))
                        return &h[i];
        return NULL;
}

static bool value_is(const AjGwHeader *h, const char *want)
{
        return strlen(want) == h->value_len && strncasecmp(h->value, want, h->value_len) == 0;
}

bool aj_gw_value_has_token(const char *value, size_t len, const char *token)
{
        size_t tl = strlen(token), i = 0;
        while (i < len) {
                while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
                        i++;
                size_t start = i;
                while (i < len && value[i] != ',')
                        i++;
                size_t end = i;
                while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
                        end--;
                if (end - start == tl && strncasecmp(value + start, token, tl) == 0)
                        return true;
        }
        return false;
}

/* Where the head ends (after CRLF CRLF), checking that every line ends in CRLF. */
static int find_head_end(const char *buf, size_t len, size_t max_head, size_t *ret_end, const char **why)
{
        size_t n = len < max_head ? len : max_head;
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\r') {
                        if (i + 1 < len && buf[i + 1] != '\n') {
                                *why = "bare CR in the head";
                                return -EINVAL;
                        }
                } else if (buf[i] == '\n') {
                        if (i == 0 || buf[i - 1] != '\r') {
                                *why = "bare LF in the head";
                                return -EINVAL;
                        }
                        if (i >= 3 && buf[i - 2] == '\n') {
                                *ret_end = i + 1;
                                return 0;
                        }
                }
        }
        if (len >= max_head) {
                *why = "request head too large";
                return -E2BIG;
        }
        return -EAGAIN;
}

/* Header lines from `p` to `end` (the last CRLF of the blank line excluded). */
static int parse_headers(const char *p, const char *end, AjGwHeader *headers, size_t *ret_n, const char **why)
{
        size_t n = 0;
        while (p < end) {
                const char *eol = memchr(p, '\r', (size_t)(end - p));
                if (!eol)
                        eol = end;
                if (eol == p)
                        break;
                if (*p == ' ' || *p == '\t') {
                        *why = "folded header line";
                        return -EINVAL;
                }
                const char *colon = p;
                while (colon < eol && is_tchar((unsigned char)*colon))
                        colon++;
                if (colon == p || colon == eol || *colon != ':') {
                        *why = "malformed header name";
                        return -EINVAL;
                }
                const char *v = colon + 1, *ve = eol;
                for (const char *c = v; c < ve; c++)
                        if (!is_value_char((unsigned char)*c)) {
                                *why = "control character in a header value";
                                return -EINVAL;
                        }
                while (v < ve && (*v == ' ' || *v == '\t'))
                        v++;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                if (n == AJ_GW_MAX_HEADERS) {
                        *why = "too many header fields";
                        return -E2BIG;
                }
                headers[n++] = (AjGwHeader){ p, (size_t)(colon - p), v, (size_t)(ve - v) };
                p = eol + 2;
        }
        *ret_n = n;
        return 0;
}

static int parse_content_length(const AjGwHeader *h, uint64_t *ret)
{
        if (h->value_len == 0 || h->value_len > 18)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < h->value_len; i++) {
                if (h->value[i] < '0' || h->value[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(h->value[i] - '0');
        }
        *ret = v;
        return 0;
}

static int refuse(int status, const char *reason, int *ret_status, const char **ret_why)
{
        *ret_status = status;
        *ret_why = reason;
        return -EINVAL;
}

/*
 * The path the gateway classifies (metered API or not) must be the path the provider
 * acts on, so only one spelling of each is served: no percent-escapes, ';' parameters,
 * dot or empty segments (a single trailing '/' aside), backslashes or bytes outside
 * printable ASCII in the path, and a query of printable ASCII without '#'. NULL when
 * `t` is canonical, else why not. Classification itself ignores case (usage.c).
 */
const char *aj_gw_target_not_canonical(const char *t, size_t len)
{
        static const char path_extra[] = "-._~!$&'()*+,=:@/";
        size_t q = 0;
        while (q < len && t[q] != '?')
                q++;
        if (q == 0 || t[0] != '/')
                return "the path must start with '/'";
        for (size_t i = 0; i < q; i++) {
                unsigned char c = (unsigned char)t[i];
                if (c == '%')
                        return "percent-escapes in the path are not served";
                if (c == ';')
                        return "';' in the path is not served";
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      (c && strchr(path_extra, c))))
                        return "the path has a character outside printable ASCII or reserved for other uses";
        }
        /* Segment by segment: "", "." and ".." are refused, but for the root and one trailing '/'. */
        for (size_t i = 1, start = 1; i <= q; i++) {
                if (i < q && t[i] != '/')
                        continue;
                size_t n = i - start;
                bool last = i == q;
                if (n == 0 && !(last && (q == 1 || t[q - 2] != '/')))
                        return "empty path segments ('//') are not served";
                if ((n == 1 && t[start] == '.') || (n == 2 && t[start] == '.' && t[start + 1] == '.'))
                        return "dot segments ('.', '..') in the path are not served";
                start = i + 1;
        }
        for (size_t i = q; i < len; i++) {
                unsigned char c = (unsigned char)t[i];
                if (c <= 0x20 || c >= 0x7f || c == '#')
                        return "the query has a character outside printable ASCII, or '#'";
        }
        return NULL;
}

static int parse_request_line(const char *p, const char *eol, AjGwRequestHead *h, int *st, const char **why)
{
        const char *m = p;
        while (p < eol && is_tchar((unsigned char)*p))
                p++;
        if (p == m || p == eol || *p != ' ')
                return refuse(400, "malformed request line", st, why);
        h->method = m;
        h->method_len = (size_t)(p - m);
        const char *t = ++p;
        while (p < eol && (unsigned char)*p > 0x20 && *p != 0x7f)
                p++;
        if (p == t || p == eol || *p != ' ')
                return refuse(400, "malformed request line", st, why);
        if (*t != '/')
                return refuse(400, "only origin-form request targets are served", st, why);
        if ((size_t)(p - t) > AJ_GW_MAX_TARGET)
                return refuse(414, "request target too long", st, why);
        const char *bad = aj_gw_target_not_canonical(t, (size_t)(p - t));
        if (bad)
                return refuse(400, bad, st, why);
        h->target = t;
        h->target_len = (size_t)(p - t);
        p++;
        if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
                return refuse(505, "only HTTP/1.0 and HTTP/1.1 are served", st, why);
        h->minor = (unsigned)(p[7] - '0');
        return 0;
}

/* Framing and connection handling of a request from its parsed headers. */
static int request_semantics(AjGwRequestHead *h, int *st, const char **why)
{
        const AjGwHeader *cl = NULL, *te = NULL;
        unsigned hosts = 0;
        h->keep_alive = h->minor == 1;
        for (size_t i = 0; i < h->n_headers; i++) {
                const AjGwHeader *x = &h->headers[i];
                if (aj_gw_header_is(x, "content-length")) {
                        if (cl)
                                return refuse(400, "repeated Content-Length", st, why);
                        cl = x;
                } else if (aj_gw_header_is(x, "transfer-encoding")) {
                        if (te)
                                return refuse(400, "repeated Transfer-Encoding", st, why);
                        te = x;
                } else if (aj_gw_header_is(x, "host")) {
                        hosts++;
                } else if (aj_gw_header_is(x, "connection")) {
                        if (aj_gw_value_has_token(x->value, x->value_len, "close"))
                                h->keep_alive = false;
                } else if (aj_gw_header_is(x, "expect")) {
                        if (!value_is(x, "100-continue"))
                                return refuse(417, "only Expect: 100-continue is understood", st, why);
                        h->expect_continue = true;
                }
        }
        if (hosts > 1 || (hosts == 0 && h->minor == 1))
                return refuse(400, "exactly one Host header is required", st, why);
        if (cl && te)
                return refuse(400, "both Content-Length and Transfer-Encoding", st, why);
        if (te) {
                if (h->minor == 0)
                        return refuse(400, "Transfer-Encoding in an HTTP/1.0 request", st, why);
                if (!value_is(te, "chunked"))
                        return refuse(400, "Transfer-Encoding other than chunked", st, why);
                h->body = AJ_GW_BODY_CHUNKED;
        } else if (cl) {
                if (parse_content_length(cl, &h->content_length) < 0)
                        return refuse(400, "invalid Content-Length", st, why);
                h->body = h->content_length ? AJ_GW_BODY_LENGTH : AJ_GW_BODY_NONE;
        }
        return 0;
}

int aj_gw_parse_request_head(const char *buf, size_t len, size_t max_head, AjGwRequestHead *ret, int *ret_status,
                             const char **ret_why)
{
        size_t end;
        const char *why = NULL;
        int r = find_head_end(buf, len, max_head, &end, &why);
        if (r == -EAGAIN)
                return r;
        if (r < 0)
                return refuse(r == -E2BIG ? 431 : 400, why, ret_status, ret_why);

        *ret = (AjGwRequestHead){ .head_len = end };
        const char *eol = memchr(buf, '\r', end);
        r = parse_request_line(buf, eol, ret, ret_status, ret_why);
        if (r < 0)
                return r;
        r = parse_headers(eol + 2, buf + end - 2, ret->headers, &ret->n_headers, &why);
        if (r < 0)
                return refuse(r == -E2BIG ? 431 : 400, why, ret_status, ret_why);
        return request_semantics(ret, ret_status, ret_why);
}

static int parse_status_line(const char *p, const char *eol, AjGwResponseHead *h, unsigned *minor)
{
        if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
                return -EBADMSG;
        *minor = (unsigned)(p[7] - '0');
        for (int i = 9; i < 12; i++)
                if (p[i] < '0' || p[i] > '9')
                        return -EBADMSG;
        h->status = (unsigned)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
        if (h->status < 100)
                return -EBADMSG;
        if (eol - p > 12 && p[12] != ' ')
                return -EBADMSG;
        h->reason = eol - p > 13 ? p + 13 : "";
        h->reason_len = eol - p > 13 ? (size_t)(eol - p - 13) : 0;
        for (size_t i = 0; i < h->reason_len; i++)
                if (!is_value_char((unsigned char)h->reason[i]))
                        return -EBADMSG;
        return 0;
}

static int response_semantics(AjGwResponseHead *h, unsigned minor, bool head_request)
{
        const AjGwHeader *te = NULL;
        bool have_cl = false;
        h->keep_alive = minor == 1;
        for (size_t i = 0; i < h->n_headers; i++) {
                const AjGwHeader *x = &h->headers[i];
                if (aj_gw_header_is(x, "transfer-encoding")) {
                        te = x;
                } else if (aj_gw_header_is(x, "content-length")) {
                        uint64_t v;
                        if (parse_content_length(x, &v) < 0 || (have_cl && v != h->content_length))
                                return -EBADMSG;
                        h->content_length = v;
                        have_cl = true;
                } else if (aj_gw_header_is(x, "connection")) {
                        if (aj_gw_value_has_token(x->value, x->value_len, "close"))
                                h->keep_alive = false;
                }
        }
        if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
                h->body = AJ_GW_BODY_NONE;
        else if (te) {
                h->body = value_is(te, "chunked") ? AJ_GW_BODY_CHUNKED : AJ_GW_BODY_UNTIL_CLOSE;
                if (have_cl || h->body == AJ_GW_BODY_UNTIL_CLOSE)
                        h->keep_alive = false;
        } else if (have_cl)
                h->body = h->content_length ? AJ_GW_BODY_LENGTH : AJ_GW_BODY_NONE;
        else {
                h->body = AJ_GW_BODY_UNTIL_CLOSE;
                h->keep_alive = false;
        }
        return 0;
}

int aj_gw_parse_response_head(const char *buf, size_t len, size_t max_head, bool head_request, AjGwResponseHead *ret)
{
        size_t end;
        const char *why;
        int r = find_head_end(buf, len, max_head, &end, &why);
        if (r == -EAGAIN)
                return r;
        if (r < 0)
                return -EBADMSG;
        *ret = (AjGwResponseHead){ .head_len = end };
        const char *eol = memchr(buf, '\r', end);
        unsigned minor;
        if (parse_status_line(buf, eol, ret, &minor) < 0)
                return -EBADMSG;
        if (parse_headers(eol + 2, buf + end - 2, ret->headers, &ret->n_headers, &why) < 0)
                return -EBADMSG;
        return response_semantics(ret, minor, head_request);
}

/* ------------------------------------------------------------------ chunked */

enum {
        CH_SIZE,
        CH_EXT,
        CH_SIZE_LF,
        CH_DATA,
        CH_DATA_CR,
        CH_DATA_LF,
        CH_TRAILER,
        CH_TRAILER_LINE,
        CH_TRAILER_LF,
        CH_END_LF,
        CH_DONE,
};

/* One framing byte (not data); -EBADMSG when it does not belong there. */
static int chunked_step(AjGwChunked *s, char c)
{
        switch (s->state) {
        case CH_SIZE:
                if (aj_hex_digit(c) >= 0) {
                        if (++s->digits > 15)
                                return -EBADMSG;
                        s->left = s->left * 16 + (uint64_t)aj_hex_digit(c);
                        return 0;
                }
                if (s->digits == 0 || (c != ';' && c != '\r'))
                        return -EBADMSG;
                s->state = c == ';' ? CH_EXT : CH_SIZE_LF;
                return 0;
        case CH_EXT:
                if (c == '\r') {
                        s->state = CH_SIZE_LF;
                        return 0;
                }
                return (!is_value_char((unsigned char)c) || ++s->line > CHUNK_LINE_MAX) ? -EBADMSG : 0;
        case CH_SIZE_LF:
                if (c != '\n')
                        return -EBADMSG;
                s->state = s->left ? CH_DATA : CH_TRAILER;
                s->digits = 0;
                s->line = 0;
                return 0;
        case CH_DATA_CR:
                if (c != '\r')
                        return -EBADMSG;
                s->state = CH_DATA_LF;
                return 0;
        case CH_DATA_LF:
                if (c != '\n')
                        return -EBADMSG;
                s->state = CH_SIZE;
                return 0;
        case CH_TRAILER:
        case CH_TRAILER_LINE:
                if (c == '\r') {
                        s->state = s->state == CH_TRAILER ? CH_END_LF : CH_TRAILER_LF;
                        return 0;
                }
                s->state = CH_TRAILER_LINE;
                return (!is_value_char((unsigned char)c) || ++s->line > TRAILERS_MAX) ? -EBADMSG : 0;
        case CH_TRAILER_LF:
                if (c != '\n')
                        return -EBADMSG;
                s->state = CH_TRAILER;
                return 0;
        case CH_END_LF:
                if (c != '\n')
                        return -EBADMSG;
                s->state = CH_DONE;
                return 0;
        default:
                return -EBADMSG;
        }
}

ssize_t aj_gw_chunked_next(AjGwChunked *s, const char *in, size_t len, const char **ret_data, size_t *ret_data_len,
                           bool *ret_done)
{
        size_t i = 0;
        *ret_data = NULL;
        *ret_data_len = 0;
        *ret_done = s->state == CH_DONE;
        while (i < len && s->state != CH_DONE) {
                if (s->state == CH_DATA) {
                        size_t n = len - i < s->left ? len - i : (size_t)s->left;
                        *ret_data = in + i;
                        *ret_data_len = n;
                        s->left -= n;
                        if (s->left == 0)
                                s->state = CH_DATA_CR;
                        return (ssize_t)(i + n);
                }
                if (chunked_step(s, in[i]) < 0)
                        return -EBADMSG;
                i++;
        }
        *ret_done = s->state == CH_DONE;
        return (ssize_t)i;
}
