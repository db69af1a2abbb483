/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "util/error.h"
#include "util/macros.h"
#include "util/strv.h"

#define MAX_ENTRY_LEN 300

void aj_net_rule_done(AjNetRule *r)
{
        if (!r)
                return;
        free(r->text);
        free(r->host);
        *r = (AjNetRule){};
}

void aj_net_policy_free(AjNetPolicy *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n_rules; i++)
                aj_net_rule_done(&p->rules[i]);
        free(p->rules);
        for (size_t i = 0; p->reserved && p->reserved[i]; i++)
                aj_net_addr_set_done(&p->reserved_addrs[i]);
        aj_strv_free(p->reserved);
        free(p->reserved_addrs);
        free(p->reserved_ports);
        free(p->reserved_why);
        free(p);
}

bool aj_net_literal_address(const char *host, uint16_t port, struct sockaddr_storage *ret)
{
        struct sockaddr_storage ss = {};
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
        } else
                return false;
        if (ret)
                *ret = ss;
        return true;
}

/* A reserved host's canonical text: the name normalized, an address formatted. */
static int reserved_form(const char *host, char buf[AJ_NET_HOST_MAX + 1])
{
        struct sockaddr_storage ss;
        const char *why;
        if (aj_net_literal_address(host, 0, &ss)) {
                char a[INET6_ADDRSTRLEN];
                snprintf(buf, AJ_NET_HOST_MAX + 1, "%s", aj_net_format_address((struct sockaddr *)&ss, a, sizeof(a)));
                return 0;
        }
        return aj_net_host_normalize(host, strlen(host), buf, &why);
}

int aj_net_policy_reserve(AjNetPolicy *p, const char *host, uint16_t port, const char *why)
{
        char norm[AJ_NET_HOST_MAX + 1];
        int r = reserved_form(host, norm);
        if (r < 0)
                return r;
        if (!p->reserved_why && !(p->reserved_why = strdup(why)))
                return -ENOMEM;
        size_t n = aj_strv_length(p->reserved);
        uint16_t *ports = realloc(p->reserved_ports, (n + 1) * sizeof(*ports));
        if (!ports)
                return -ENOMEM;
        p->reserved_ports = ports;
        ports[n] = port;
        AjNetAddrSet *addrs = realloc(p->reserved_addrs, (n + 1) * sizeof(*addrs));
        if (!addrs)
                return -ENOMEM;
        p->reserved_addrs = addrs;
        addrs[n] = (AjNetAddrSet){};
        if ((r = aj_strv_push(&p->reserved, norm)) < 0)
                return r;
        /* A literal is its own address: another name resolving to it is refused on its port
         * as a name's addresses are (aj_resolve_reserved() finds it again, kept once). */
        struct sockaddr_storage ss;
        if (aj_net_literal_address(norm, 0, &ss))
                return aj_net_policy_reserve_address(p, n, (struct sockaddr *)&ss);
        return 0;
}

/* The reserved host whose address `sa` is, on its port `port`, or -1. */
static ssize_t find_reserved_address(const AjNetPolicy *p, const struct sockaddr *sa, uint16_t port)
{
        for (size_t i = 0; p->reserved && p->reserved[i]; i++)
                if (p->reserved_ports[i] == port && aj_net_addr_set_contains(&p->reserved_addrs[i], sa))
                        return (ssize_t)i;
        return -1;
}

int aj_net_policy_reserve_address(AjNetPolicy *p, size_t host, const struct sockaddr *sa)
{
        if (host >= aj_strv_length(p->reserved))
                return -EINVAL;
        if (aj_net_addr_set_contains(&p->reserved_addrs[host], sa))
                return 0;
        return aj_net_addr_set_add(&p->reserved_addrs[host], sa);
}

/* A destination at an address a reserved name resolved to, on its port: refused as the
 * name is (else the name's reservation is one literal away). */
static bool reserved_address(const AjNetPolicy *p, const struct sockaddr *sa, uint16_t port, AjNetVerdict *v)
{
        ssize_t host = find_reserved_address(p, sa, port);
        if (host < 0)
                return false;
        char shown[INET6_ADDRSTRLEN];
        aj_net_format_address(sa, shown, sizeof(shown));
        *v = (AjNetVerdict){ .rule = -1, .reserved = true };
        snprintf(v->reason, sizeof(v->reason), "%s port %u is an address of %s, %s", shown, port, p->reserved[host],
                 p->reserved_why);
        return true;
}

static bool reserved(const AjNetPolicy *p, const char *host, AjNetVerdict *v)
{
        char norm[AJ_NET_HOST_MAX + 1];
        if (!p->reserved || reserved_form(host, norm) < 0)
                return false;
        for (char **h = p->reserved; *h; h++)
                if (streq(*h, norm)) {
                        snprintf(v->reason, sizeof(v->reason), "%s is %s", norm, p->reserved_why);
                        v->reserved = true;
                        return true;
                }
        return false;
}

int aj_net_host_normalize(const char *host, size_t len, char *buf, const char **ret_why)
{
        /* One trailing dot is the root label ("example.com." is example.com); strip it
         * before anything else so both spellings compare equal everywhere. */
        if (len > 0 && host[len - 1] == '.')
                len--;
        if (len == 0) {
                *ret_why = "empty host name";
                return -EINVAL;
        }
        if (len > AJ_NET_HOST_MAX) {
                *ret_why = "host name longer than 253 characters";
                return -EINVAL;
        }
        size_t label = 0;
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)host[i];
                if (ch >= 0x80) {
                        *ret_why = "non-ASCII host name (write internationalized names as punycode, xn--...)";
                        return -EINVAL;
                }
                if (ch == '.') {
                        if (label == 0) {
                                *ret_why = "empty label in host name";
                                return -EINVAL;
                        }
                        label = 0;
                        buf[i] = '.';
                        continue;
                }
                if (!isalnum(ch) && ch != '-' && ch != '_') {
                        *ret_why = "invalid character in host name (allowed: letters, digits, '-', '_', '.')";
                        return -EINVAL;
                }
                if (++label > 63) {
                        *ret_why = "host name label longer than 63 characters";
                        return -EINVAL;
                }
                buf[i] = (char)tolower(ch);
        }
        if (label == 0) {
                *ret_why = "empty label in host name";
                return -EINVAL;
        }
        buf[len] = 0;

        /* The C library reads "127.1", "0x7f.1" and "2130706433" as addresses: such a
         * "name" would reach an address no IP entry names. Only canonical literals. */
        struct in_addr a4;
        if (inet_aton(buf, &a4) != 0 && inet_pton(AF_INET, buf, &a4) != 1) {
                *ret_why = "non-canonical numeric host (write IPv4 addresses as four decimal numbers)";
                return -EINVAL;
        }
        return 0;
}

static int parse_port(const char *s, uint16_t *ret)
{
        if (!*s || strlen(s) > 5)
                return -EINVAL;
        unsigned v = 0;
        for (const char *c = s; *c; c++) {
                if (*c < '0' || *c > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned)(*c - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t)v;
        return 0;
}

/* "ADDR" or "ADDR/PREFIX" (no port, no brackets) into the rule. */
static int parse_cidr(const char *s, bool want_v6, AjNetRule *r, const char **ret_why)
{
        char addr[INET6_ADDRSTRLEN + 8];
        const char *slash = strchr(s, '/');
        size_t alen = slash ? (size_t)(slash - s) : strlen(s);
        if (alen == 0 || alen >= sizeof(addr)) {
                *ret_why = "invalid address";
                return -EINVAL;
        }
        memcpy(addr, s, alen);
        addr[alen] = 0;

        uint8_t bytes[16] = {};
        int family;
        unsigned max;
        if (inet_pton(AF_INET, addr, bytes) == 1 && !want_v6) {
                family = AF_INET;
                max = 32;
        } else if (inet_pton(AF_INET6, addr, bytes) == 1) {
                family = AF_INET6;
                max = 128;
        } else {
                *ret_why = "invalid address";
                return -EINVAL;
        }
        unsigned prefix = max;
        if (slash) {
                const char *p = slash + 1;
                if (!*p || strlen(p) > 3) {
                        *ret_why = "invalid prefix length";
                        return -EINVAL;
                }
                prefix = 0;
                for (; *p; p++) {
                        if (*p < '0' || *p > '9') {
                                *ret_why = "invalid prefix length";
                                return -EINVAL;
                        }
                        prefix = prefix * 10 + (unsigned)(*p - '0');
                }
                if (prefix > max) {
                        *ret_why = family == AF_INET ? "prefix length above 32" : "prefix length above 128";
                        return -EINVAL;
                }
        }
        for (unsigned bit = prefix; bit < max; bit++)
                if (bytes[bit / 8] & (0x80 >> (bit % 8))) {
                        *ret_why = "address has bits set beyond the prefix length";
                        return -EINVAL;
                }
        r->kind = AJ_NET_RULE_CIDR;
        r->family = family;
        memcpy(r->addr, bytes, sizeof(bytes));
        r->prefix = prefix;
        return 0;
}

/* "[v6]", "[v6]:port" or "[v6/prefix]:port" (buf is modified). */
static int parse_bracketed(char *buf, AjNetRule *r, const char **ret_why)
{
        char *close = strchr(buf, ']');
        if (!close) {
                *ret_why = "missing ']'";
                return -EINVAL;
        }
        *close = 0;
        if (close[1] == ':') {
                if (parse_port(close + 2, &r->port) < 0) {
                        *ret_why = "invalid port (expected 1-65535)";
                        return -EINVAL;
                }
        } else if (close[1]) {
                *ret_why = "unexpected text after ']'";
                return -EINVAL;
        }
        return parse_cidr(buf + 1, true, r, ret_why);
}

/* A host name or "*.domain", normalized. */
static int parse_host(const char *hostpart, AjNetRule *r, const char **ret_why)
{
        int k;
        char norm[AJ_NET_HOST_MAX + 1];
        if (hostpart[0] == '*') {
                if (hostpart[1] != '.' || !hostpart[2]) {
                        *ret_why = "a wildcard must be written \"*.domain\"";
                        return -EINVAL;
                }
                if (strchr(hostpart + 2, '*')) {
                        *ret_why = "'*' is only allowed as the whole first label";
                        return -EINVAL;
                }
                if ((k = aj_net_host_normalize(hostpart + 2, strlen(hostpart + 2), norm, ret_why)) < 0)
                        return k;
                if (!strchr(norm, '.')) {
                        /* "*.com" would open a whole top-level domain. */
                        *ret_why = "a wildcard needs at least two labels after \"*.\" (e.g. \"*.example.com\")";
                        return -EINVAL;
                }
                r->kind = AJ_NET_RULE_WILDCARD;
        } else {
                if (strchr(hostpart, '*')) {
                        *ret_why = "'*' is only allowed as the whole first label (\"*.domain\")";
                        return -EINVAL;
                }
                if ((k = aj_net_host_normalize(hostpart, strlen(hostpart), norm, ret_why)) < 0)
                        return k;
                r->kind = AJ_NET_RULE_HOST;
        }
        r->host = strdup(norm);
        if (!r->host)
                return -ENOMEM;
        return 0;
}

static int rule_parse(const char *entry, bool ask, AjNetRule *ret, const char **ret_why)
{
        AjNetRule r = {};
        char buf[MAX_ENTRY_LEN + 1];
        size_t len = entry ? strlen(entry) : 0;
        int k;

        if (len == 0) {
                *ret_why = "empty entry";
                return -EINVAL;
        }
        if (len > MAX_ENTRY_LEN) {
                *ret_why = "entry longer than 300 characters";
                return -EINVAL;
        }
        memcpy(buf, entry, len + 1);

        char *hostpart = buf;
        if (buf[0] == '[') {
                if ((k = parse_bracketed(buf, &r, ret_why)) < 0)
                        return k;
                goto done;
        }

        size_t colons = 0;
        for (char *c = buf; *c; c++)
                colons += *c == ':';
        if (colons > 1) {
                /* Bare IPv6 (no port: a port needs brackets). */
                if ((k = parse_cidr(buf, true, &r, ret_why)) < 0)
                        return k;
                goto done;
        }
        if (colons == 1) {
                char *colon = strchr(buf, ':');
                *colon = 0;
                if (parse_port(colon + 1, &r.port) < 0) {
                        *ret_why = "invalid port (expected 1-65535)";
                        return -EINVAL;
                }
        }
        hostpart = buf;

        if (ask && streq(hostpart, "*")) {
                r.kind = AJ_NET_RULE_ANY;
                goto done;
        }

        /* Looks like an address (digits and dots, maybe a prefix)? Then it must be one. */
        if (strchr(hostpart, '/') || strspn(hostpart, "0123456789.") == strlen(hostpart)) {
                struct in_addr a4;
                if (!strchr(hostpart, '/') && inet_pton(AF_INET, hostpart, &a4) != 1 && inet_aton(hostpart, &a4) == 0) {
                        *ret_why = "invalid IPv4 address";
                        return -EINVAL;
                }
                if ((k = parse_cidr(hostpart, false, &r, ret_why)) < 0) {
                        if (inet_aton(hostpart, &a4) != 0 && !strchr(hostpart, '/'))
                                *ret_why = "non-canonical IPv4 address (write four decimal numbers)";
                        return k;
                }
                goto done;
        }

        if ((k = parse_host(hostpart, &r, ret_why)) < 0)
                return k;

done:
        r.text = strdup(entry);
        if (!r.text) {
                aj_net_rule_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

int aj_net_rule_parse(const char *entry, AjNetRule *ret, const char **ret_why)
{
        return rule_parse(entry, false, ret, ret_why);
}

int aj_net_ask_rule_parse(const char *entry, AjNetRule *ret, const char **ret_why)
{
        return rule_parse(entry, true, ret, ret_why);
}

static int policy_parse(char *const *entries, bool ask, AjNetPolicy **ret, size_t *ret_bad_index, AjError *ret_error)
{
        AjNetPolicy *p = calloc(1, sizeof(*p));
        size_t n = 0;

        if (!p)
                return -ENOMEM;
        while (entries && entries[n])
                n++;
        if (n > AJ_NET_MAX_RULES) {
                aj_net_policy_free(p);
                if (ret_bad_index)
                        *ret_bad_index = AJ_NET_MAX_RULES;
                return aj_error_set(ret_error, -EINVAL, "too many network %s entries (at most %d)",
                                    ask ? "ask" : "allow", AJ_NET_MAX_RULES);
        }
        if (n > 0) {
                p->rules = calloc(n, sizeof(AjNetRule));
                if (!p->rules) {
                        aj_net_policy_free(p);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n; i++) {
                const char *why = NULL;
                int r = rule_parse(entries[i], ask, &p->rules[i], &why);
                if (r < 0) {
                        aj_net_policy_free(p);
                        if (r != -EINVAL)
                                return r;
                        if (ret_bad_index)
                                *ret_bad_index = i;
                        char shown[64];
                        snprintf(shown, sizeof(shown), "%s", entries[i]);
                        for (char *c = shown; *c; c++)
                                if ((unsigned char)*c < 0x20 || *c == '"')
                                        *c = '?';
                        return aj_error_set(ret_error, -EINVAL, "invalid network %s entry \"%s%s\": %s",
                                            ask ? "ask" : "allow", shown,
                                            strlen(entries[i]) >= sizeof(shown) ? "..." : "", why);
                }
                p->n_rules++;
        }
        *ret = p;
        return 0;
}

int aj_net_policy_parse(char *const *entries, AjNetPolicy **ret, size_t *ret_bad_index, AjError *ret_error)
{
        return policy_parse(entries, false, ret, ret_bad_index, ret_error);
}

int aj_net_ask_parse(char *const *entries, AjNetPolicy **ret, size_t *ret_bad_index, AjError *ret_error)
{
        return policy_parse(entries, true, ret, ret_bad_index, ret_error);
}

int aj_net_policy_add(AjNetPolicy *p, const char *entry, const char **ret_why)
{
        if (p->n_rules >= AJ_NET_MAX_RULES) {
                *ret_why = "the allowlist is full";
                return -E2BIG;
        }
        AjNetRule rule;
        int r = rule_parse(entry, false, &rule, ret_why);
        if (r < 0)
                return r;
        AjNetRule *n = realloc(p->rules, (p->n_rules + 1) * sizeof(*n));
        if (!n) {
                aj_net_rule_done(&rule);
                return -ENOMEM;
        }
        p->rules = n;
        p->rules[p->n_rules++] = rule;
        return 0;
}

/* IPv4-mapped IPv6 addresses are IPv4 for every decision: ::ffff:127.0.0.1 is loopback. */
static int address_bytes(const struct sockaddr *sa, uint8_t out[16])
{
        if (sa->sa_family == AF_INET) {
                memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
                return AF_INET;
        }
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a)) {
                        memcpy(out, a->s6_addr + 12, 4);
                        return AF_INET;
                }
                memcpy(out, a->s6_addr, 16);
                return AF_INET6;
        }
        return -EAFNOSUPPORT;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
        unsigned full = prefix / 8, rest = prefix % 8;
        if (memcmp(a, net, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (a[full] & mask) == (net[full] & mask);
}

bool aj_net_address_is_internal(const struct sockaddr *sa)
{
        static const struct {
                uint8_t net[4];
                unsigned prefix;
        } v4[] = {
                { { 0, 0, 0, 0 }, 8 },      /* "this network", 0.0.0.0 */
                { { 10, 0, 0, 0 }, 8 },     /* RFC 1918 */
                { { 100, 64, 0, 0 }, 10 },  /* CGNAT */
                { { 127, 0, 0, 0 }, 8 },    /* loopback */
                { { 169, 254, 0, 0 }, 16 }, /* link-local, cloud metadata */
                { { 172, 16, 0, 0 }, 12 },  /* RFC 1918 */
                { { 192, 0, 0, 0 }, 24 },   /* IETF protocol assignments */
                { { 192, 168, 0, 0 }, 16 }, /* RFC 1918 */
                { { 198, 18, 0, 0 }, 15 },  /* benchmarking */
                { { 224, 0, 0, 0 }, 4 },    /* multicast */
                { { 240, 0, 0, 0 }, 4 },    /* reserved, broadcast */
        };
        static const struct {
                uint8_t net[16];
                unsigned prefix;
        } v6[] = {
                { {}, 128 },                                    /* :: */
                { { [15] = 1 }, 128 },                          /* ::1 */
                { { 0xfe, 0x80 }, 10 },                         /* link-local */
                { { 0xfe, 0xc0 }, 10 },                         /* site-local (deprecated) */
                { { 0xfc }, 7 },                                /* unique-local */
                { { 0xff }, 8 },                                /* multicast */
                { { 0x00, 0x64, 0xff, 0x9b }, 96 },             /* NAT64: may embed any IPv4 */
                { { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 48 }, /* local-use NAT64 (RFC 8215), the same */
                { { 0x20, 0x02 }, 16 },                         /* 6to4: a tunnel to the IPv4 it embeds */
                { {}, 96 },                                     /* IPv4-compatible (deprecated) */
        };
        uint8_t a[16];
        int family = address_bytes(sa, a);

        if (family == AF_INET) {
                for (size_t i = 0; i < ARRAY_SIZE(v4); i++)
                        if (prefix_match(a, v4[i].net, v4[i].prefix))
                                return true;
                return false;
        }
        if (family == AF_INET6) {
                for (size_t i = 0; i < ARRAY_SIZE(v6); i++)
                        if (prefix_match(a, v6[i].net, v6[i].prefix))
                                return true;
                return false;
        }
        return true;
}

int aj_net_find_cidr_rule(const AjNetPolicy *p, const struct sockaddr *sa, uint16_t port)
{
        uint8_t a[16];
        int family = address_bytes(sa, a);
        if (family < 0 || !p)
                return -1;
        for (size_t i = 0; i < p->n_rules; i++) {
                const AjNetRule *r = &p->rules[i];
                if (r->kind != AJ_NET_RULE_CIDR || r->family != family)
                        continue;
                if (r->port != 0 && r->port != port)
                        continue;
                if (prefix_match(a, r->addr, r->prefix))
                        return (int)i;
        }
        return -1;
}

const char *aj_net_format_address(const struct sockaddr *sa, char *buf, size_t len)
{
        uint8_t a[16];
        int family = address_bytes(sa, a);
        if (family < 0 || !inet_ntop(family, a, buf, (socklen_t)len))
                snprintf(buf, len, "?");
        return buf;
}

static bool host_matches(const AjNetRule *r, const char *host, uint16_t port)
{
        if (r->port != 0 && r->port != port)
                return false;
        if (r->kind == AJ_NET_RULE_ANY)
                return true;
        if (r->kind == AJ_NET_RULE_HOST)
                return streq(r->host, host);
        if (r->kind == AJ_NET_RULE_WILDCARD) {
                size_t hl = strlen(host), sl = strlen(r->host);
                return hl > sl + 1 && host[hl - sl - 1] == '.' && streq(host + hl - sl, r->host);
        }
        return false;
}

int aj_net_check_host(const AjNetPolicy *p, const char *host, uint16_t port, AjNetVerdict *ret)
{
        AjNetVerdict v = { .rule = -1 };
        struct sockaddr_storage ss;
        char norm[AJ_NET_HOST_MAX + 1];
        const char *why;

        if (!p || p->n_rules == 0) {
                snprintf(v.reason, sizeof(v.reason), "the network allowlist is empty (no network)");
                *ret = v;
                return 0;
        }
        if (port == 0) {
                snprintf(v.reason, sizeof(v.reason), "port 0 is not a destination");
                *ret = v;
                return 0;
        }
        if (reserved(p, host, &v)) {
                *ret = v;
                return 0;
        }
        if (aj_net_literal_address(host, 0, &ss)) {
                char shown[INET6_ADDRSTRLEN];
                if (reserved_address(p, (struct sockaddr *)&ss, port, &v)) {
                        *ret = v;
                        return 0;
                }
                aj_net_format_address((struct sockaddr *)&ss, shown, sizeof(shown));
                int i = aj_net_find_cidr_rule(p, (struct sockaddr *)&ss, port);
                if (i >= 0) {
                        v.allowed = true;
                        v.rule = i;
                        snprintf(v.reason, sizeof(v.reason), "%s port %u allowed by rule \"%s\"", shown, port,
                                 p->rules[i].text);
                } else {
                        snprintf(v.reason, sizeof(v.reason), "%s port %u is not covered by any address rule", shown,
                                 port);
                }
                *ret = v;
                return 0;
        }
        if (aj_net_host_normalize(host, strlen(host), norm, &why) < 0) {
                snprintf(v.reason, sizeof(v.reason), "invalid host name: %s", why);
                *ret = v;
                return 0;
        }
        bool name_seen = false;
        for (size_t i = 0; i < p->n_rules; i++) {
                const AjNetRule *r = &p->rules[i];
                if (r->kind == AJ_NET_RULE_CIDR)
                        continue;
                if (host_matches(r, norm, port)) {
                        v.allowed = true;
                        v.rule = (int)i;
                        snprintf(v.reason, sizeof(v.reason), "%s port %u allowed by rule \"%s\"", norm, port, r->text);
                        *ret = v;
                        return 0;
                }
                AjNetRule any = *r;
                any.port = 0;
                if (host_matches(&any, norm, port))
                        name_seen = true;
        }
        if (name_seen)
                snprintf(v.reason, sizeof(v.reason), "port %u is not allowed for host %s by any rule", port, norm);
        else
                snprintf(v.reason, sizeof(v.reason), "host %s is not in the network allowlist", norm);
        *ret = v;
        return 0;
}

int aj_net_check_domain(const AjNetPolicy *p, const char *domain, uint16_t port, AjNetVerdict *ret)
{
        int r = aj_net_check_host(p, domain, port, ret);
        char norm[AJ_NET_HOST_MAX + 1], probe[AJ_NET_HOST_MAX + 3];
        const char *why;
        if (r < 0 || !ret->allowed || aj_net_literal_address(domain, 0, NULL) ||
            aj_net_host_normalize(domain, strlen(domain), norm, &why) < 0)
                return r; /* an address has no subdomains; a bad name was refused above */
        /* A subdomain no rule names exactly: only a wildcard covering all of them matches it. */
        snprintf(probe, sizeof(probe), "_.%s", norm);
        for (size_t i = 0; i < p->n_rules; i++)
                if (p->rules[i].kind == AJ_NET_RULE_WILDCARD && host_matches(&p->rules[i], probe, port))
                        return 0;
        *ret = (AjNetVerdict){ .rule = -1 };
        snprintf(ret->reason, sizeof(ret->reason),
                 "%.100s port %u is allowed but not its subdomains, which a domain covers (allow \"*.%.100s\" too)",
                 norm, port, norm);
        return 0;
}

bool aj_net_addr_set_contains(const AjNetAddrSet *s, const struct sockaddr *sa)
{
        uint8_t a[16];
        int family = address_bytes(sa, a);
        if (!s || family < 0)
                return false;
        for (size_t i = 0; i < s->n; i++)
                if (s->addrs[i].family == family && memcmp(s->addrs[i].bytes, a, family == AF_INET ? 4 : 16) == 0)
                        return true;
        return false;
}

int aj_net_addr_set_add(AjNetAddrSet *s, const struct sockaddr *sa)
{
        AjNetAddr a = {};
        a.family = address_bytes(sa, a.bytes);
        if (a.family < 0)
                return a.family;
        AjNetAddr *n = realloc(s->addrs, (s->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        s->addrs = n;
        s->addrs[s->n++] = a;
        return 0;
}

void aj_net_addr_set_done(AjNetAddrSet *s)
{
        if (!s)
                return;
        free(s->addrs);
        s->addrs = NULL;
        s->n = 0;
}

int aj_net_check_resolved(const AjNetPolicy *p, bool own_in, const char *host, const struct sockaddr *sa, uint16_t port,
                          AjNetVerdict *ret)
{
        AjNetVerdict v = { .rule = -1 };
        char shown[INET6_ADDRSTRLEN];

        if (p && reserved_address(p, sa, port, &v)) {
                *ret = v;
                return 0;
        }
        aj_net_format_address(sa, shown, sizeof(shown));
        bool internal = aj_net_address_is_internal(sa);
        bool own = !internal && own_in;
        if (!internal && !own) {
                v.allowed = true;
                snprintf(v.reason, sizeof(v.reason), "%s resolved to public address %s", host, shown);
                *ret = v;
                return 0;
        }
        int i = aj_net_find_cidr_rule(p, sa, port);
        if (i >= 0) {
                v.allowed = true;
                v.rule = i;
                snprintf(v.reason, sizeof(v.reason), "%s resolved to %s address %s, allowed by rule \"%s\"", host,
                         own ? "this host's" : "internal", shown, p->rules[i].text);
        } else if (own) {
                snprintf(v.reason, sizeof(v.reason),
                         "%s resolves to %s, an address of this host, which no address rule names (rebinding "
                         "protection)",
                         host, shown);
        } else {
                snprintf(v.reason, sizeof(v.reason),
                         "%s resolves to internal address %s, which no address rule names (rebinding protection)", host,
                         shown);
        }
        *ret = v;
        return 0;
}

int aj_net_ask_match(const AjNetPolicy *ask, const char *host, uint16_t port)
{
        struct sockaddr_storage ss;
        char norm[AJ_NET_HOST_MAX + 1];
        const char *why;

        if (!ask || port == 0)
                return -1;
        if (aj_net_literal_address(host, 0, &ss)) {
                for (size_t i = 0; i < ask->n_rules; i++)
                        if (ask->rules[i].kind == AJ_NET_RULE_ANY &&
                            (!ask->rules[i].port || ask->rules[i].port == port))
                                return (int)i;
                return aj_net_find_cidr_rule(ask, (struct sockaddr *)&ss, port);
        }
        if (aj_net_host_normalize(host, strlen(host), norm, &why) < 0)
                return -1;
        for (size_t i = 0; i < ask->n_rules; i++)
                if (ask->rules[i].kind != AJ_NET_RULE_CIDR && host_matches(&ask->rules[i], norm, port))
                        return (int)i;
        return -1;
}
