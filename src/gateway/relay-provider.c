/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's buffers and its providers: a provider's url parsed into host, port, scheme
 * and base path, its strings copied (the credential wiped when freed), its TLS context.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gateway/relay-internal.h"
#include "net.h"

/* ------------------------------------------------------------------ buffers */

int gw_buf_append(GwBuf *b, const void *p, size_t n, size_t max)
{
        if (b->off > 0 && b->off == b->len)
                b->off = b->len = 0;
        if (b->len - b->off + n > max)
                return -ENOBUFS;
        if (b->len + n > b->cap && b->off > 0) {
                memmove(b->data, b->data + b->off, b->len - b->off);
                b->len -= b->off;
                b->off = 0;
        }
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->len + n)
                        cap *= 2;
                char *d = realloc(b->data, cap);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = cap;
        }
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

int gw_buf_printf(GwBuf *b, size_t max, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        int r = gw_buf_append(b, s, (size_t)n, max);
        free(s);
        return r;
}

void gw_buf_consume(GwBuf *b, size_t n)
{
        b->off += n;
        if (b->off >= b->len)
                b->off = b->len = 0;
}

void aj_gateway_release_memory(size_t freed)
{
        if (freed >= AJ_GATEWAY_TRIM_BYTES)
                (void)malloc_trim(0);
}

void gw_buf_free(GwBuf *b, bool wipe)
{
        size_t cap = b->cap;
        if (wipe && b->data)
                explicit_bzero(b->data, b->cap);
        free(b->data);
        *b = (GwBuf){ 0 };
        /* A request body is freed after the meter's DOM of it (on_request ran first). */
        aj_gateway_release_memory(cap);
}

/* ------------------------------------------------------------------ providers */

static bool valid_name(const char *s)
{
        if (!s || !*s || strlen(s) > 64)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
                        return false;
        return true;
}

static bool valid_text(const char *s, bool allow_space)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x21 || *s == 0x7f)
                        if (!(allow_space && *s == ' '))
                                return false;
        return true;
}

/* "https://host[:port][/path]": no credentials, query or fragment. */
static int parse_url(GwProvider *p, const char *url, const char **why)
{
        const char *rest;
        if (strncmp(url, "https://", 8) == 0) {
                p->tls = true;
                p->port = 443;
                rest = url + 8;
        } else if (strncmp(url, "http://", 7) == 0) {
                p->port = 80;
                rest = url + 7;
        } else {
                *why = "the url must start with https:// or http://";
                return -EINVAL;
        }
        if (!valid_text(url, false) || strpbrk(rest, "@?#\\")) {
                *why = "the url may not hold credentials, a query, a fragment or spaces";
                return -EINVAL;
        }
        size_t alen = strcspn(rest, "/");
        const char *a = rest, *port = NULL;
        size_t hlen;
        if (*a == '[') {
                const char *close = memchr(a, ']', alen);
                if (!close) {
                        *why = "missing ']' in the url";
                        return -EINVAL;
                }
                hlen = (size_t)(close - a - 1);
                a++;
                port = close[1] == ':' ? close + 2 : NULL;
        } else {
                const char *colon = memchr(a, ':', alen);
                hlen = colon ? (size_t)(colon - a) : alen;
                port = colon ? colon + 1 : NULL;
        }
        if (port) {
                char *end;
                unsigned long v = strtoul(port, &end, 10);
                if (end == port || end != rest + alen || v == 0 || v > 65535) {
                        *why = "invalid port in the url";
                        return -EINVAL;
                }
                p->port = (uint16_t)v;
        }
        if (hlen == 0 || hlen > 253) {
                *why = "invalid host in the url";
                return -EINVAL;
        }
        p->host = strndup(a, hlen);
        const char *path = rest + alen;
        size_t plen = strlen(path);
        while (plen > 0 && path[plen - 1] == '/')
                plen--;
        p->base_path = strndup(path, plen);
        if (!p->host || !p->base_path)
                return -ENOMEM;
        bool v6 = strchr(p->host, ':') != NULL;
        bool default_port = p->port == (p->tls ? 443 : 80);
        char port_text[8] = "";
        if (!default_port)
                snprintf(port_text, sizeof(port_text), ":%u", (unsigned)p->port);
        if (asprintf(&p->host_header, "%s%s%s%s", v6 ? "[" : "", p->host, v6 ? "]" : "", port_text) < 0) {
                p->host_header = NULL;
                return -ENOMEM;
        }
        return 0;
}

void gw_provider_done(GwProvider *p)
{
        free((char *)p->pub.name);
        free((char *)p->pub.prefix);
        free((char *)p->pub.url);
        if (p->pub.credential) {
                explicit_bzero((char *)p->pub.credential, strlen(p->pub.credential));
                free((char *)p->pub.credential);
        }
        free((char *)p->pub.ca_file);
        free(p->host);
        free(p->host_header);
        free(p->base_path);
        aj_gw_tls_ctx_free(p->tls_ctx);
}

int gw_provider_init(GwProvider *p, const AjGatewayProvider *src, AjError *ret_error)
{
        const char *why = NULL;
        if (!valid_name(src->name))
                why = "a provider name is [a-z0-9_-], 1 to 64 characters";
        else if (!src->url)
                why = "no url";
        else if (!src->credential || !*src->credential || !valid_text(src->credential, false))
                why = "the credential is empty or holds spaces or control characters";
        else if (src->prefix && (src->prefix[0] != '/' || !valid_text(src->prefix, false)))
                why = "a prefix starts with '/'";
        if (!why && asprintf((char **)&p->pub.prefix, "%s%s", src->prefix ? "" : "/",
                             src->prefix ? src->prefix : src->name) < 0)
                return -ENOMEM;
        int r = why ? -EINVAL : parse_url(p, src->url, &why);
        if (r < 0)
                return why ? aj_error_set(ret_error, r, "Provider '%s': %s", src->name ? src->name : "", why) : r;
        size_t pl = strlen(p->pub.prefix);
        while (pl > 1 && p->pub.prefix[pl - 1] == '/')
                ((char *)p->pub.prefix)[--pl] = 0;
        p->pub.api = src->api;
        p->pub.name = strdup(src->name);
        p->pub.url = strdup(src->url);
        p->pub.credential = strdup(src->credential);
        p->pub.ca_file = src->ca_file ? strdup(src->ca_file) : NULL;
        if (!p->pub.name || !p->pub.url || !p->pub.credential || (src->ca_file && !p->pub.ca_file))
                return -ENOMEM;
        if (src->address) {
                p->addr = *src->address;
                if (p->addr.ss_family == AF_INET)
                        ((struct sockaddr_in *)&p->addr)->sin_port = htons(p->port);
                else
                        ((struct sockaddr_in6 *)&p->addr)->sin6_port = htons(p->port);
                p->have_addr = true;
        } else
                p->have_addr = aj_net_literal_address(p->host, p->port, &p->addr);
        if (p->tls)
                return aj_gw_tls_ctx_new(p->pub.ca_file, &p->tls_ctx, ret_error);
        return 0;
}
