/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <criterion/criterion.h>
#include <string.h>

#include "net.h"

static AjNetPolicy *policy(char **entries)
{
        AjNetPolicy *p = NULL;
        size_t bad = 0;
        AjError err = {};
        int r = aj_net_policy_parse(entries, &p, &bad, &err);
        cr_assert_eq(r, 0, "parse failed at %zu: %s", bad, err.message ?: "");
        return p;
}

static struct sockaddr_storage addr(const char *s)
{
        struct sockaddr_storage ss = {};
        if (inet_pton(AF_INET, s, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
                ss.ss_family = AF_INET;
        else {
                cr_assert_eq(inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1, "%s", s);
                ss.ss_family = AF_INET6;
        }
        return ss;
}

Test(net, host_matching_table)
{
        char *entries[] = {
                "api.openai.com:443",    "*.githubusercontent.com",
                "Example.ORG.",          "*.corp.example:8443",
                "10.20.0.0/16:5432",     "[2001:db8::1]:443",
                "2001:db8:ff::/48",      "93.184.216.34",
                "xn--bcher-kva.example", NULL,
        };
        AjNetPolicy *p = policy(entries);
        static const struct {
                const char *host;
                uint16_t port;
                bool allowed;
                int rule;
                const char *reason; /* substring */
        } cases[] = {
                { "api.openai.com", 443, true, 0, "allowed by rule \"api.openai.com:443\"" },
                { "API.OpenAI.Com", 443, true, 0, NULL },              /* case-insensitive */
                { "api.openai.com.", 443, true, 0, NULL },             /* one trailing dot stripped */
                { "api.openai.com..", 443, false, -1, "empty label" }, /* not two */
                { "api.openai.com", 80, false, -1, "port 80 is not allowed for host api.openai.com" },
                { "openai.com", 443, false, -1, "host openai.com is not in the network allowlist" },
                { "evil-api.openai.com", 443, false, -1, NULL },
                { "api.openai.com.evil.net", 443, false, -1, NULL },
                { "raw.githubusercontent.com", 443, true, 1, NULL }, /* wildcard, any port */
                { "a.b.githubusercontent.com", 22, true, 1, NULL },
                { "githubusercontent.com", 443, false, -1, NULL }, /* subdomains only */
                { "xgithubusercontent.com", 443, false, -1, NULL },
                { "example.org", 1, true, 2, NULL }, /* entry's trailing dot */
                { "EXAMPLE.org.", 65535, true, 2, NULL },
                { "www.example.org", 80, false, -1, NULL },
                { "a.corp.example", 8443, true, 3, NULL },
                { "a.corp.example", 443, false, -1, "port 443 is not allowed" },
                { "10.20.3.4", 5432, true, 4, NULL }, /* CIDR + port */
                { "10.20.3.4", 5433, false, -1, "not covered by any address rule" },
                { "10.21.0.1", 5432, false, -1, NULL },
                { "2001:db8::1", 443, true, 5, NULL },
                { "2001:db8:0:0::1", 443, true, 5, NULL }, /* any spelling */
                { "2001:db8::2", 443, false, -1, NULL },
                { "2001:db8:ff:1::5", 9, true, 6, NULL },
                { "::ffff:93.184.216.34", 80, true, 7, NULL }, /* mapped == IPv4 */
                { "93.184.216.34", 80, true, 7, NULL },
                { "bücher.example", 443, false, -1, "non-ASCII host name" }, /* IDN must be punycode */
                { "xn--bcher-kva.example", 443, true, 8, NULL },
                { "XN--BCHER-KVA.example", 443, true, 8, NULL },
                { "127.1", 80, false, -1, "non-canonical numeric host" },
                { "2130706433", 80, false, -1, "non-canonical numeric host" },
                { "0x7f.0.0.1", 80, false, -1, "non-canonical numeric host" },
                { "api.openai.com%00", 443, false, -1, "invalid character" },
                { "api openai.com", 443, false, -1, "invalid character" },
                { "", 443, false, -1, "empty host name" },
                { "api.openai.com", 0, false, -1, "port 0" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                AjNetVerdict v;
                cr_assert_eq(aj_net_check_host(p, cases[i].host, cases[i].port, &v), 0);
                cr_expect_eq(v.allowed, cases[i].allowed, "case %zu %s:%u: %s", i, cases[i].host, cases[i].port,
                             v.reason);
                cr_expect_eq(v.rule, cases[i].rule, "case %zu %s: rule %d", i, cases[i].host, v.rule);
                if (cases[i].reason)
                        cr_expect(strstr(v.reason, cases[i].reason) != NULL, "case %zu: reason \"%s\" lacks \"%s\"", i,
                                  v.reason, cases[i].reason);
                cr_expect(strchr(v.reason, '\n') == NULL);
        }
        aj_net_policy_free(p);
}

/* A provider's fetch tool takes a domain as the host and its subdomains: both must be allowed. */
Test(net, a_domain_needs_its_subdomains)
{
        AjNetPolicy *p = policy((char *[]){ "a.test", "*.a.test:443", "b.test", "*.c.test", "10.0.0.1", NULL });
        AjNetVerdict v;
        cr_assert_eq(aj_net_check_domain(p, "a.test", 443, &v), 0);
        cr_expect(v.allowed, "%s", v.reason);
        aj_net_check_domain(p, "a.test", 80, &v);
        cr_expect(!v.allowed, "its subdomains on port 443 only");
        aj_net_check_domain(p, "b.test", 443, &v);
        cr_expect(!v.allowed && strstr(v.reason, "\"*.b.test\""), "%s", v.reason);
        aj_net_check_domain(p, "x.c.test", 443, &v);
        cr_expect(v.allowed, "a parent's wildcard covers the host and its subdomains: %s", v.reason);
        aj_net_check_domain(p, "c.test", 443, &v);
        cr_expect(!v.allowed, "... not the parent itself");
        aj_net_check_domain(p, "10.0.0.1", 443, &v);
        cr_expect(v.allowed, "an address has no subdomains: %s", v.reason);
        aj_net_check_domain(NULL, "a.test", 443, &v);
        cr_expect(!v.allowed);
        aj_net_policy_free(p);
}

Test(net, empty_policy_means_no_network)
{
        AjNetPolicy *p = policy((char *[]){ NULL });
        AjNetVerdict v;
        aj_net_check_host(p, "example.com", 443, &v);
        cr_expect(!v.allowed);
        cr_expect_str_eq(v.reason, "the network allowlist is empty (no network)");
        aj_net_check_host(NULL, "1.1.1.1", 443, &v);
        cr_expect(!v.allowed);
        aj_net_policy_free(p);
        cr_expect_eq(aj_net_policy_parse(NULL, &p, NULL, NULL), 0);
        cr_expect_eq(p->n_rules, 0);
        aj_net_policy_free(p);
}

Test(net, bad_entries_with_messages)
{
        static const struct {
                const char *entry;
                const char *message;
        } cases[] = {
                { "", "invalid network allow entry \"\": empty entry" },
                { "*", "invalid network allow entry \"*\": a wildcard must be written \"*.domain\"" },
                { "*.com", "invalid network allow entry \"*.com\": a wildcard needs at least two labels after "
                           "\"*.\" (e.g. \"*.example.com\")" },
                { "a.*.com", "invalid network allow entry \"a.*.com\": '*' is only allowed as the whole first label "
                             "(\"*.domain\")" },
                { "*.*.example.com", "invalid network allow entry \"*.*.example.com\": '*' is only allowed as the "
                                     "whole first label" },
                { "example.com:0", "invalid network allow entry \"example.com:0\": invalid port (expected 1-65535)" },
                { "example.com:65536", "invalid network allow entry \"example.com:65536\": invalid port (expected "
                                       "1-65535)" },
                { "example.com:https", "invalid network allow entry \"example.com:https\": invalid port (expected "
                                       "1-65535)" },
                { "exa mple.com", "invalid network allow entry \"exa mple.com\": invalid character in host name "
                                  "(allowed: letters, digits, '-', '_', '.')" },
                { "bücher.de", "invalid network allow entry \"bücher.de\": non-ASCII host name (write "
                               "internationalized names as punycode, xn--...)" },
                { "a..b", "invalid network allow entry \"a..b\": empty label in host name" },
                { "10.0.0.0/33", "invalid network allow entry \"10.0.0.0/33\": prefix length above 32" },
                { "10.0.0.1/8", "invalid network allow entry \"10.0.0.1/8\": address has bits set beyond the "
                                "prefix length" },
                { "300.1.1.1", "invalid network allow entry \"300.1.1.1\": invalid IPv4 address" },
                { "127.1", "invalid network allow entry \"127.1\": non-canonical IPv4 address (write four decimal "
                           "numbers)" },
                { "[2001:db8::1", "invalid network allow entry \"[2001:db8::1\": missing ']'" },
                { "[2001:db8::1]443", "invalid network allow entry \"[2001:db8::1]443\": unexpected text after ']'" },
                { "2001:db8::1:443x", "invalid network allow entry \"2001:db8::1:443x\": invalid address" },
                { "[fe80::/129]", "invalid network allow entry \"[fe80::/129]\": prefix length above 128" },
                { "[1.2.3.4]:80", "invalid network allow entry \"[1.2.3.4]:80\": invalid address" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *entries[] = { "ok.example", (char *)cases[i].entry, NULL };
                AjNetPolicy *p = NULL;
                size_t bad = 99;
                AjError err = {};
                cr_expect_eq(aj_net_policy_parse(entries, &p, &bad, &err), -EINVAL, "%s", cases[i].entry);
                cr_expect_null(p);
                cr_expect_eq(bad, 1);
                cr_expect_str_eq(err.message ?: "", cases[i].message);
                aj_error_clear(&err);
        }
}

Test(net, rebinding_rules)
{
        char *entries[] = { "*.example.com", "db.example.com:5432", "192.168.7.0/24", "[fd00::/8]:443", NULL };
        AjNetPolicy *p = policy(entries);
        static const struct {
                const char *address;
                uint16_t port;
                bool allowed;
        } cases[] = {
                { "93.184.216.34", 443, true }, /* public */
                { "2606:2800:220:1::1", 443, true },
                { "127.0.0.1", 443, false }, /* loopback */
                { "127.8.9.10", 443, false },
                { "::1", 443, false },
                { "169.254.169.254", 80, false }, /* cloud metadata */
                { "fe80::1", 443, false },        /* link-local */
                { "10.1.2.3", 443, false },       /* RFC 1918 */
                { "172.16.0.1", 443, false },
                { "172.31.255.255", 443, false },
                { "172.32.0.1", 443, true },
                { "192.168.1.1", 443, false },
                { "192.168.7.9", 443, true }, /* named by a CIDR entry */
                { "100.64.0.1", 443, false }, /* CGNAT */
                { "100.128.0.1", 443, true },
                { "fc00::1", 443, false }, /* unique-local */
                { "fd12::1", 443, true },  /* named, port 443 */
                { "fd12::1", 80, false },  /* named, other port */
                { "0.0.0.0", 443, false },
                { "::", 443, false },
                { "::ffff:127.0.0.1", 443, false }, /* mapped loopback */
                { "::ffff:192.168.7.1", 443, true },
                { "224.0.0.1", 443, false },
                { "255.255.255.255", 443, false },
                { "64:ff9b::7f00:1", 443, false },   /* NAT64 of 127.0.0.1 */
                { "64:ff9b:1::a00:1", 443, false },  /* local-use NAT64 (RFC 8215) */
                { "64:ff9b:1:ffff::1", 443, false }, /* anywhere in its /48 */
                { "64:ff9b:2::1", 443, true },       /* past it */
                { "2002:a00:1::1", 443, false },     /* 6to4 to 10.0.0.1 */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct sockaddr_storage ss = addr(cases[i].address);
                AjNetVerdict v;
                aj_net_check_resolved(p, false, "a.example.com", (struct sockaddr *)&ss, cases[i].port, &v);
                cr_expect_eq(v.allowed, cases[i].allowed, "%s:%u: %s", cases[i].address, cases[i].port, v.reason);
                if (!v.allowed)
                        cr_expect(strstr(v.reason, "rebinding protection") != NULL, "%s", v.reason);
        }
        struct sockaddr_storage ss = addr("127.0.0.1");
        AjNetVerdict v;
        aj_net_check_resolved(p, false, "a.example.com", (struct sockaddr *)&ss, 443, &v);
        cr_expect_str_eq(v.reason, "a.example.com resolves to internal address 127.0.0.1, which no address rule "
                                   "names (rebinding protection)");
        /* A literal internal address needs its own rule too. */
        aj_net_check_host(p, "127.0.0.1", 443, &v);
        cr_expect(!v.allowed);
        aj_net_check_host(p, "192.168.7.200", 443, &v);
        cr_expect(v.allowed);
        aj_net_policy_free(p);
}

/* The documentation ranges are routed to real hosts on some networks: not internal. */
Test(net, documentation_ranges_are_not_internal)
{
        char *entries[] = { "*.example.com", NULL };
        AjNetPolicy *p = policy(entries);
        static const char *const docs[] = { "192.0.2.1", "198.51.100.7", "203.0.113.254", "2001:db8::1",
                                            "::ffff:203.0.113.9" };
        for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
                struct sockaddr_storage ss = addr(docs[i]);
                AjNetVerdict v;
                cr_expect(!aj_net_address_is_internal((struct sockaddr *)&ss), "%s", docs[i]);
                aj_net_check_resolved(p, false, "a.example.com", (struct sockaddr *)&ss, 443, &v);
                cr_expect(v.allowed, "%s: %s", docs[i], v.reason);
        }
        aj_net_policy_free(p);
}

/* A name resolving to one of this host's own addresses is refused like loopback, whatever
 * range the address is in, unless an address rule names it. */
Test(net, own_addresses_refused_unless_named)
{
        char *entries[] = { "*.example.com", "198.51.100.0/24:8080", NULL };
        AjNetPolicy *p = policy(entries);
        AjNetAddrSet own = {};
        struct sockaddr_storage a1 = addr("203.0.113.5"), a2 = addr("2001:db8::5"), a3 = addr("198.51.100.1");
        cr_assert_eq(aj_net_addr_set_add(&own, (struct sockaddr *)&a1), 0);
        cr_assert_eq(aj_net_addr_set_add(&own, (struct sockaddr *)&a2), 0);
        cr_assert_eq(aj_net_addr_set_add(&own, (struct sockaddr *)&a3), 0);
        static const struct {
                const char *address;
                uint16_t port;
                bool allowed;
        } cases[] = {
                { "203.0.113.5", 443, false },  { "::ffff:203.0.113.5", 443, false }, /* mapped form of the same */
                { "2001:db8::5", 443, false },  { "203.0.113.6", 443, true },         /* not ours */
                { "2001:db8::6", 443, true },   { "198.51.100.1", 8080, true }, /* ours, but named by an address rule */
                { "198.51.100.1", 443, false },                                 /* ...for port 8080 only */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct sockaddr_storage ss = addr(cases[i].address);
                AjNetVerdict v;
                aj_net_check_resolved(p, aj_net_addr_set_contains(&own, (struct sockaddr *)&ss), "a.example.com",
                                      (struct sockaddr *)&ss, cases[i].port, &v);
                cr_expect_eq(v.allowed, cases[i].allowed, "%s:%u: %s", cases[i].address, cases[i].port, v.reason);
        }
        struct sockaddr_storage ss = addr("203.0.113.5");
        AjNetVerdict v;
        aj_net_check_resolved(p, true, "a.example.com", (struct sockaddr *)&ss, 443, &v);
        cr_expect_str_eq(v.reason, "a.example.com resolves to 203.0.113.5, an address of this host, which no "
                                   "address rule names (rebinding protection)");
        aj_net_addr_set_done(&own);
        aj_net_policy_free(p);
}

Test(net, reserved_hosts)
{
        char *entries[] = { "api.anthropic.com", "*.anthropic.com", "127.0.0.0/8", "example.com", NULL };
        AjNetPolicy *p = policy(entries);
        cr_assert_eq(aj_net_policy_reserve(p, "API.Anthropic.com.", 443, "served by the gateway"), 0);
        cr_assert_eq(aj_net_policy_reserve(p, "127.0.0.1", 80, "served by the gateway"), 0);
        cr_assert_eq(aj_net_policy_reserve(p, "bad name!", 80, "x"), -EINVAL);
        AjNetVerdict v;
        cr_assert_eq(aj_net_check_host(p, "api.anthropic.com", 443, &v), 0);
        cr_expect_not(v.allowed);
        cr_expect_eq(v.rule, -1);
        cr_expect_str_eq(v.reason, "api.anthropic.com is served by the gateway");
        cr_assert_eq(aj_net_check_host(p, "api.anthropic.com.", 8443, &v), 0);
        cr_expect_not(v.allowed, "every port of a reserved host");
        cr_assert_eq(aj_net_check_host(p, "127.0.0.1", 80, &v), 0);
        cr_expect_not(v.allowed, "a reserved address");
        cr_assert_eq(aj_net_check_host(p, "127.0.0.2", 80, &v), 0);
        cr_expect(v.allowed, "its neighbours are not reserved");
        cr_assert_eq(aj_net_check_host(p, "console.anthropic.com", 443, &v), 0);
        cr_expect(v.allowed, "other hosts of the domain are not reserved");
        cr_assert_eq(aj_net_check_host(p, "example.com", 443, &v), 0);
        cr_expect(v.allowed);
        aj_net_policy_free(p);
}

/* A reserved name's addresses are refused on its port, as a literal and as what another
 * name resolved to: reserved by name only, http://<its address>:4000 went around it. */
Test(net, reserved_host_addresses)
{
        char *entries[] = { "10.0.0.0/8", "alias.corp", NULL };
        AjNetPolicy *p = policy(entries);
        cr_assert_eq(aj_net_policy_reserve(p, "llm.corp", 4000, "served by the gateway"), 0);
        struct sockaddr_storage ss = addr("10.1.2.3"), mapped = addr("::ffff:10.1.2.3");
        cr_assert_eq(aj_net_policy_reserve_address(p, 0, (struct sockaddr *)&ss), 0);
        cr_assert_eq(aj_net_policy_reserve_address(p, 0, (struct sockaddr *)&mapped), 0);
        cr_expect_eq(p->reserved_addrs[0].n, 1, "kept once");
        cr_expect_eq(aj_net_policy_reserve_address(p, 1, (struct sockaddr *)&ss), -EINVAL);
        AjNetVerdict v;
        cr_assert_eq(aj_net_check_host(p, "10.1.2.3", 4000, &v), 0);
        cr_expect_not(v.allowed);
        cr_expect(v.reserved);
        cr_expect_str_eq(v.reason, "10.1.2.3 port 4000 is an address of llm.corp, served by the gateway");
        cr_assert_eq(aj_net_check_host(p, "::ffff:10.1.2.3", 4000, &v), 0);
        cr_expect_not(v.allowed, "its IPv4-mapped form");
        cr_assert_eq(aj_net_check_host(p, "10.1.2.3", 22, &v), 0);
        cr_expect(v.allowed, "another port of the address is not the provider's");
        cr_assert_eq(aj_net_check_resolved(p, false, "alias.corp", (struct sockaddr *)&ss, 4000, &v), 0);
        cr_expect_not(v.allowed, "a name resolving to it");
        cr_expect(v.reserved);
        cr_expect_str_eq(v.reason, "10.1.2.3 port 4000 is an address of llm.corp, served by the gateway");
        aj_net_policy_free(p);
}

/* A provider reserved by a literal (url https://10.1.2.3:4000) is its own address: another
 * name resolving to it is refused on its port as a name's addresses are. Reserved as text
 * only, alias.corp -> 10.1.2.3:4000 reached the provider around the gateway. */
Test(net, reserved_literal_is_its_own_address)
{
        char *entries[] = { "10.0.0.0/8", "alias.corp", NULL };
        AjNetPolicy *p = policy(entries);
        cr_assert_eq(aj_net_policy_reserve(p, "10.1.2.3", 4000, "served by the gateway"), 0);
        cr_assert_eq(aj_net_policy_reserve(p, "::ffff:10.9.9.9", 4001, "served by the gateway"), 0);
        cr_expect_eq(p->reserved_addrs[0].n, 1);
        struct sockaddr_storage ss = addr("10.1.2.3"), mapped = addr("::ffff:10.9.9.9");
        cr_assert_eq(aj_net_policy_reserve_address(p, 0, (struct sockaddr *)&ss), 0);
        cr_expect_eq(p->reserved_addrs[0].n, 1, "found again by a lookup: kept once");
        AjNetVerdict v;
        cr_assert_eq(aj_net_check_resolved(p, false, "alias.corp", (struct sockaddr *)&ss, 4000, &v), 0);
        cr_expect_not(v.allowed, "a name resolving to the literal");
        cr_expect(v.reserved);
        cr_expect_str_eq(v.reason, "10.1.2.3 port 4000 is an address of 10.1.2.3, served by the gateway");
        cr_assert_eq(aj_net_check_resolved(p, false, "alias.corp", (struct sockaddr *)&mapped, 4001, &v), 0);
        cr_expect_not(v.allowed, "an IPv4-mapped literal is its IPv4 address");
        cr_assert_eq(aj_net_check_resolved(p, false, "alias.corp", (struct sockaddr *)&ss, 22, &v), 0);
        cr_expect(v.allowed, "another port of the address is not the provider's");
        cr_assert_eq(aj_net_check_host(p, "10.1.2.3", 22, &v), 0);
        cr_expect_not(v.allowed, "the literal itself: every port, as a name");
        aj_net_policy_free(p);
}

/* One reading of an IP literal for the allowlist, the resolver, the proxy and the gateway's
 * TLS (an address is checked as an IP, not as a host name). */
Test(net, literal_address)
{
        struct sockaddr_storage ss;
        cr_assert(aj_net_literal_address("192.0.2.7", 443, &ss));
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        cr_expect_eq(in->sin_family, AF_INET);
        cr_expect_eq(ntohs(in->sin_port), 443);
        cr_expect_eq(ntohl(in->sin_addr.s_addr), 0xc0000207u);
        cr_assert(aj_net_literal_address("2001:db8::1", 0, &ss));
        cr_expect_eq(ss.ss_family, AF_INET6);
        cr_expect_eq(((const struct sockaddr_in6 *)&ss)->sin6_port, 0);
        cr_expect(aj_net_literal_address("::ffff:10.1.2.3", 0, NULL), "ret may be NULL");
        static const char *const names[] = { "example.com",   "127.1",         "0x7f000001", "2130706433",
                                             "[2001:db8::1]", "192.0.2.7:443", "",           " 192.0.2.7" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                ss.ss_family = AF_UNIX;
                cr_expect_not(aj_net_literal_address(names[i], 80, &ss), "'%s' is not a literal", names[i]);
                cr_expect_eq(ss.ss_family, AF_UNIX, "'%s': *ret written only for a literal", names[i]);
        }
}

/* network.ask: the allowlist's syntax plus "*"; matching names, addresses and ports. */
Test(net, ask_patterns_parse_and_match)
{
        AjNetPolicy *ask = NULL;
        AjError err = {};
        char *entries[] = { "*.npmjs.org:443", "pypi.org", "10.0.0.0/8:5432", "*:8080", NULL };
        cr_assert_eq(aj_net_ask_parse(entries, &ask, NULL, &err), 0, "%s", err.message ?: "");
        cr_expect_eq(aj_net_ask_match(ask, "registry.npmjs.org", 443), 0);
        cr_expect_eq(aj_net_ask_match(ask, "Registry.NPMJS.org.", 443), 0, "names compared in canonical form");
        cr_expect_eq(aj_net_ask_match(ask, "npmjs.org", 443), -1, "a wildcard matches strict subdomains only");
        cr_expect_eq(aj_net_ask_match(ask, "registry.npmjs.org", 80), -1, "the pattern's port");
        cr_expect_eq(aj_net_ask_match(ask, "pypi.org", 80), 1, "no port: any port");
        cr_expect_eq(aj_net_ask_match(ask, "10.1.2.3", 5432), 2, "an address by a range");
        cr_expect_eq(aj_net_ask_match(ask, "10.1.2.3", 5433), -1);
        cr_expect_eq(aj_net_ask_match(ask, "anything.example", 8080), 3, "\"*:PORT\": any host on that port");
        cr_expect_eq(aj_net_ask_match(ask, "192.0.2.1", 8080), 3, "\"*\" matches addresses too");
        cr_expect_eq(aj_net_ask_match(ask, "anything.example", 8081), -1);
        cr_expect_eq(aj_net_ask_match(ask, "bad name", 8080), -1, "an invalid name is never asked for");
        cr_expect_eq(aj_net_ask_match(ask, "127.1", 8080), -1, "nor a non-canonical number");
        cr_expect_eq(aj_net_ask_match(ask, "pypi.org", 0), -1, "nor port 0");
        cr_expect_eq(aj_net_ask_match(NULL, "pypi.org", 443), -1);
        aj_net_policy_free(ask);

        /* "*" is an ask pattern only: the allowlist still refuses it. */
        AjNetRule rule;
        const char *why = NULL;
        cr_expect_eq(aj_net_rule_parse("*", &rule, &why), -EINVAL);
        cr_assert_eq(aj_net_ask_rule_parse("*", &rule, &why), 0);
        cr_expect_eq(rule.kind, AJ_NET_RULE_ANY);
        aj_net_rule_done(&rule);
        static const char *const bad[][2] = {
                { "*.com", "invalid network ask entry \"*.com\": a wildcard needs at least two labels after \"*.\"" },
                { "**", "invalid network ask entry \"**\": a wildcard must be written \"*.domain\"" },
                { "*:0", "invalid network ask entry \"*:0\": invalid port" },
                { "", "invalid network ask entry \"\": empty entry" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *one[] = { (char *)bad[i][0], NULL };
                size_t at = 9;
                cr_expect_eq(aj_net_ask_parse(one, &ask, &at, &err), -EINVAL, "%s", bad[i][0]);
                cr_expect_eq(at, 0);
                cr_expect(err.message && strncmp(err.message, bad[i][1], strlen(bad[i][1])) == 0, "%s: %s", bad[i][0],
                          err.message ?: "");
                aj_error_clear(&err);
        }
}

/* --always: a rule added at run time; a reserved host is flagged (never asked for). */
Test(net, policy_add_and_reserved_flag)
{
        char *entries[] = { "example.com", NULL };
        AjNetPolicy *p = policy(entries);
        AjNetVerdict v;
        const char *why = NULL;
        cr_assert_eq(aj_net_check_host(p, "new.example", 443, &v), 0);
        cr_expect_not(v.allowed);
        cr_expect_not(v.reserved);
        cr_assert_eq(aj_net_policy_add(p, "new.example:443", &why), 0);
        cr_assert_eq(aj_net_check_host(p, "new.example", 443, &v), 0);
        cr_expect(v.allowed);
        cr_expect_str_eq(p->rules[v.rule].text, "new.example:443");
        cr_assert_eq(aj_net_check_host(p, "new.example", 80, &v), 0);
        cr_expect_not(v.allowed, "the port approved only");
        cr_expect_eq(aj_net_policy_add(p, "*", &why), -EINVAL, "never \"*\" into an allowlist");
        cr_assert_eq(aj_net_policy_add(p, "[2001:db8::1]:443", &why), 0);
        cr_assert_eq(aj_net_policy_reserve(p, "api.openai.com", 443, "served by the gateway"), 0);
        cr_assert_eq(aj_net_check_host(p, "api.openai.com", 443, &v), 0);
        cr_expect(v.reserved && !v.allowed);
        aj_net_policy_free(p);
}
