/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Asynchronous name resolution on an AjLoop (c-ares): the resolver's sockets are sources
 * of the caller's loop, its timeouts (c-ares's retries, each lookup's deadline) timers on
 * it. Callbacks only ever run from the loop's dispatch, never from aj_resolver_resolve(),
 * so callers need not be re-entrant.
 *
 * Order: the file named by $AGENTJAIL_HOSTS_FILE (read once, at creation; /etc/hosts
 * format), then c-ares with lookups "fb" (/etc/hosts, then DNS per resolv.conf; its search
 * domains only with AJ_RESOLVE_SEARCH).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net.h"
#include "util/loop.h"
#include "util/macros.h"

#define AJ_RESOLVE_MAX_ADDRS 8
#define AJ_RESOLVE_MAX_PENDING 1024

typedef struct AjResolver AjResolver;

/* error: 0, or -ENOENT (no such name / no address), -ETIMEDOUT, -ECANCELED (resolver freed),
 * -EIO (other failure). addrs: n entries (port 0), valid during the call only. */
typedef void (*AjResolveCallback)(void *userdata, int error, const struct sockaddr_storage *addrs, size_t n);

typedef enum {
        /* resolv.conf's search domains and HOSTALIASES apply (the operator's names: the
         * gateway's provider URLs) */
        AJ_RESOLVE_SEARCH,
        /* the name looked up is the name given, nothing else (the agent's names, checked by
         * the allowlist as written) */
        AJ_RESOLVE_EXACT,
} AjResolveNames;

/* timeout_ms bounds each query as a whole (c-ares' tries and servers included). `loop` is
 * borrowed: free the resolver before it. */
int aj_resolver_new(AjLoop *loop, uint64_t timeout_ms, AjResolveNames names, AjResolver **ret);
/* Starts a lookup; *ret_id identifies it for aj_resolver_cancel(). -EBUSY past
 * AJ_RESOLVE_MAX_PENDING. */
int aj_resolver_resolve(AjResolver *r, const char *name, AjResolveCallback cb, void *userdata, uint64_t *ret_id);
/* The callback will not be called for this lookup. Unknown ids are ignored. */
void aj_resolver_cancel(AjResolver *r, uint64_t id);
/* Pending callbacks are dropped (not called). */
void aj_resolver_free(AjResolver *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjResolver *, aj_resolver_free);

/* Resolves every name `p` reserves (aj_net_policy_reserve(): the operator's names, so
 * search domains apply), waiting at most timeout_ms for each, and reserves each address
 * found (aj_net_policy_reserve_address()); a literal address resolves to itself, which its
 * reservation already holds. A name that did not resolve is appended to *ret_unresolved as
 * "NAME (why)": its name stays reserved, no address of it is. Negative errno only for the
 * resolver itself failing or no memory.
 *
 * In two halves, so that the lookups go on while the caller does other work (a run's jail
 * builds its root meanwhile): _start sends them and returns at once (each one's timeout_ms
 * runs from here); _finish waits for what is still out, and only then changes `p`, which
 * must outlive `rl`: run it before any loop serves those the policy judges.
 * aj_resolve_reserved() is both at once. */
#define AJ_RESOLVE_RESERVED_TIMEOUT_MS 5000
typedef struct AjReservedLookups AjReservedLookups;
int aj_resolve_reserved_start(AjNetPolicy *p, uint64_t timeout_ms, AjReservedLookups **ret);
int aj_resolve_reserved_finish(AjReservedLookups *rl, char ***ret_unresolved);
void aj_reserved_lookups_free(AjReservedLookups *rl);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjReservedLookups *, aj_reserved_lookups_free);
int aj_resolve_reserved(AjNetPolicy *p, uint64_t timeout_ms, char ***ret_unresolved);

/* This host's addresses in the caller's network namespace, for src/net.h's rule that a
 * name resolving to one of them is refused: its interface addresses (all interfaces, IPv4
 * and IPv6), and every address its routing tables deliver locally.
 *
 * The interface addresses are a set: a netlink socket subscribed to address changes
 * (RTM_NEWADDR/RTM_DELADDR) is drained at each lookup; when it reported anything (or
 * overflowed, or could not be opened) the set is re-read with getifaddrs(). A change the
 * kernel made before the lookup is therefore always seen.
 *
 * They are not all of the host: an address with a prefix on lo makes the whole prefix local
 * (203.0.113.1/29 on lo: 203.0.113.5 reaches this host's services too), and so does a
 * "local" route (AnyIP: `ip route add local 2001:db8::/64 dev lo`), neither an interface's
 * address. So an address outside the set is looked up in the kernel's routing tables
 * (RTM_GETROUTE, as connect() would route it): a local, anycast, broadcast or multicast
 * route is this host. */
typedef struct AjHostAddrs AjHostAddrs;

int aj_host_addrs_new(AjHostAddrs **ret);
/* The current set (valid until the next call); -errno when it cannot be read (callers
 * refuse: fail closed). */
int aj_host_addrs_get(AjHostAddrs *h, const AjNetAddrSet **ret);
/* Is `sa` this host's (above)? 1 yes, 0 no, -errno when that cannot be told (callers
 * refuse: fail closed). IPv4-mapped addresses are judged as IPv4. */
int aj_host_addrs_is_local(AjHostAddrs *h, const struct sockaddr *sa);
/* Times the set was read (tests). */
unsigned aj_host_addrs_reads(const AjHostAddrs *h);
void aj_host_addrs_free(AjHostAddrs *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjHostAddrs *, aj_host_addrs_free);

/* Parse hosts-file text: looks `name` up (case-insensitive), up to max addresses. Pure. */
size_t aj_hosts_lookup(const char *text, const char *name, struct sockaddr_storage *addrs, size_t max);
