/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The network allowlist (profile "network.allow", --allow-net): parsing entries and
 * deciding whether a destination may be reached. Pure: no syscalls, no logging.
 *
 * Entries:
 *   "example.com"          exact host, any port
 *   "example.com:443"      exact host, one port
 *   "*.example.com[:443]"  any subdomain (not example.com itself)
 *   "10.1.2.3[:5432]", "10.20.0.0/16[:5432]"
 *   "2001:db8::1", "2001:db8::/32", "[2001:db8::1]:443", "[2001:db8::/32]:443"
 *
 * Host names are compared in canonical form: ASCII only (IDNs must be written as
 * punycode "xn--..."), lower-cased, one trailing dot stripped. Labels are
 * [a-z0-9_-], 1..63 characters, the name at most 253. Anything else is refused,
 * both in entries and in requests, so one spelling of a host can never pass where
 * another is denied. Numeric forms other than canonical dotted quads ("127.1",
 * "0x7f000001", "2130706433") are refused as host names.
 *
 * A name is allowed by host entries only; an address (literal or resolved) by
 * IP/CIDR entries. A name that resolves to an internal address (loopback,
 * link-local, private, CGNAT, unique-local, multicast, unspecified) may be
 * connected to only if an IP/CIDR entry covers that address: no DNS rebinding
 * into the host.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/macros.h"
#include "util/error.h"

#define AJ_NET_MAX_RULES 1024
#define AJ_NET_HOST_MAX 253

typedef enum {
        AJ_NET_RULE_HOST,     /* exact host name */
        AJ_NET_RULE_WILDCARD, /* "*.suffix": strict subdomains of suffix */
        AJ_NET_RULE_CIDR,     /* address range (a single address is /32 or /128) */
        AJ_NET_RULE_ANY,      /* "*": any host (ask patterns only, never the allowlist) */
} AjNetRuleKind;

typedef struct {
        AjNetRuleKind kind;
        char *text;       /* the entry as written (for messages) */
        char *host;       /* HOST: the name; WILDCARD: the suffix without "*." */
        int family;       /* CIDR: AF_INET or AF_INET6 */
        uint8_t addr[16]; /* CIDR: network address (4 or 16 bytes used) */
        unsigned prefix;  /* CIDR: prefix length */
        uint16_t port;    /* 0 = any port */
} AjNetRule;

/* A set of addresses: this host's interfaces', where the proxy connects from (kept current
 * by src/resolve.h's AjHostAddrs, which also asks the kernel's routes; a name resolving to
 * one of them reaches this host's own services, whatever range the address is in), and
 * those a reserved host resolved to. */
typedef struct {
        int family; /* AF_INET or AF_INET6 */
        uint8_t bytes[16];
} AjNetAddr;

typedef struct {
        AjNetAddr *addrs;
        size_t n;
} AjNetAddrSet;

typedef struct AjNetPolicy {
        AjNetRule *rules;
        size_t n_rules;
        char **reserved;              /* hosts refused whatever the rules say (canonical), NULL-terminated */
        uint16_t *reserved_ports;     /* ... each one's service port (its url's) */
        AjNetAddrSet *reserved_addrs; /* ... the addresses each one resolved to */
        char *reserved_why;           /* ... and why, for the reason */
} AjNetPolicy;

/* Parse a NULL-terminated list of entries (NULL or empty: no network at all). On a
 * bad entry returns -EINVAL with its index and a message naming the entry. */
int aj_net_policy_parse(char *const *entries, AjNetPolicy **ret, size_t *ret_bad_index, AjError *ret_error);
void aj_net_policy_free(AjNetPolicy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjNetPolicy *, aj_net_policy_free);

/* Ask patterns (profile "network.ask", --ask-net): a destination the allowlist refuses
 * but one of these matches is held for an operator's decision (src/proxy.h). The
 * allowlist's syntax, plus "*" and "*:PORT": any host (names and addresses). Errors say
 * "network ask entry". */
int aj_net_ask_parse(char *const *entries, AjNetPolicy **ret, size_t *ret_bad_index, AjError *ret_error);
int aj_net_ask_rule_parse(const char *entry, AjNetRule *ret, const char **ret_why);
/* The first ask pattern matching `host` (a name, normalized here, or an IP literal) and
 * `port`: its index, or -1 (no pattern, an invalid name, port 0). */
int aj_net_ask_match(const AjNetPolicy *ask, const char *host, uint16_t port);

/* Append one allowlist entry at run time (an operator's "approve --always"): -EINVAL with
 * ret_why for a bad entry, -E2BIG past AJ_NET_MAX_RULES. */
int aj_net_policy_add(AjNetPolicy *p, const char *entry, const char **ret_why);

/* Refuse `host` (a name or an IP literal) on every port, whatever the rules say, saying
 * `why` ("served by the LLM gateway: use $ANTHROPIC_BASE_URL"). `port` is its service's
 * (the url's): where the addresses the name resolves to are refused (below); a literal's
 * own address is one of them from here on. -EINVAL for a name that is not a host name. */
int aj_net_policy_reserve(AjNetPolicy *p, const char *host, uint16_t port, const char *why);
/* `sa` is an address reserved host `host` (its index in p->reserved) resolved to: a
 * destination at it on that host's port, a literal or what a name resolved to, is refused
 * as the host is (src/resolve.h's aj_resolve_reserved() adds them). Duplicates are kept
 * once. -EINVAL for a bad index, -EAFNOSUPPORT, -ENOMEM. */
int aj_net_policy_reserve_address(AjNetPolicy *p, size_t host, const struct sockaddr *sa);

/* `host` as an IP literal ("192.0.2.1", "2001:db8::1": IPv6 without brackets): true, with
 * its address and `port` in *ret when ret is not NULL; false for anything else (a name). */
bool aj_net_literal_address(const char *host, uint16_t port, struct sockaddr_storage *ret);

/* Parse one entry into *ret (owned strings; free with aj_net_rule_done). -EINVAL with a
 * static reason on error. */
int aj_net_rule_parse(const char *entry, AjNetRule *ret, const char **ret_why);
void aj_net_rule_done(AjNetRule *r);

/* Canonical host name into buf (>= AJ_NET_HOST_MAX + 1 bytes). -EINVAL with a reason. */
int aj_net_host_normalize(const char *host, size_t len, char *buf, const char **ret_why);

typedef struct {
        bool allowed;
        bool reserved;    /* refused as a reserved host: never asked for */
        int rule;         /* index of the deciding rule, -1 when none matched */
        char reason[320]; /* one line: which rule applied, or why nothing did */
} AjNetVerdict;

/* A destination as the client named it: a host name or an IP literal (as text,
 * IPv6 without brackets). For a name this only decides whether it may be resolved;
 * each resolved address then goes through aj_net_check_resolved(). */
int aj_net_check_host(const AjNetPolicy *p, const char *host, uint16_t port, AjNetVerdict *ret);

/* A domain as a provider's fetch tool takes it (Anthropic web_fetch's allowed_domains: the
 * host and every subdomain of it): allowed when the host is and a wildcard rule covers its
 * subdomains ("*.example.com" or one of a parent), on `port`. */
int aj_net_check_domain(const AjNetPolicy *p, const char *domain, uint16_t port, AjNetVerdict *ret);

/* IPv4-mapped IPv6 addresses match their IPv4 form. */
bool aj_net_addr_set_contains(const AjNetAddrSet *s, const struct sockaddr *sa);
/* Appends sa's address (IPv4-mapped stored as IPv4); -ENOMEM, -EAFNOSUPPORT. */
int aj_net_addr_set_add(AjNetAddrSet *s, const struct sockaddr *sa);
void aj_net_addr_set_done(AjNetAddrSet *s);

/* An address that `host` (already allowed by name) resolved to; the address actually
 * connected to. Refuses internal addresses, and this host's own (`own`: the caller asked
 * the host, src/resolve.h's aj_host_addrs_is_local()), unless an IP/CIDR entry covers the
 * address. */
int aj_net_check_resolved(const AjNetPolicy *p, bool own, const char *host, const struct sockaddr *sa, uint16_t port,
                          AjNetVerdict *ret);

/* Loopback, link-local, private, CGNAT, unique-local, multicast, unspecified, reserved
 * (IPv4-mapped IPv6 judged as IPv4). */
bool aj_net_address_is_internal(const struct sockaddr *sa);

/* Does an IP/CIDR rule cover this address and port? Returns the rule index or -1. */
int aj_net_find_cidr_rule(const AjNetPolicy *p, const struct sockaddr *sa, uint16_t port);

/* "1.2.3.4" / "2001:db8::1" (IPv4-mapped shown as IPv4) into buf (>= INET6_ADDRSTRLEN). */
const char *aj_net_format_address(const struct sockaddr *sa, char *buf, size_t len);
