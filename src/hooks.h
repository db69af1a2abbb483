/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the supervisor (src/jail.c) offers the modules it runs in its event loop
 * (broker, proxy, control). A table of function pointers so each module is unit
 * tested with its own fakes. Every callback runs on the supervisor's single thread.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef struct {
        const char *cap; /* "tokens", "input_tokens", "output_tokens", "cost_usd", "tool_calls",
                            * "tool_calls_per_min", "repeat_limit", "egress_bytes", "wall",
                            * "log_bytes", "disk_free" (a floor: value below limit) */
        double limit;
        double value;       /* what the usage would have become */
        json_t *request;    /* the triggering request or connection (borrowed, may be NULL) */
        const char *reason; /* the meter's words where the value cannot be told (a price nobody gave),
                             * shown instead of the figures (borrowed; NULL: the figures say it) */
} AjBreach;

typedef struct {
        void *userdata;
        /* Append an event to the run's chain; returns once it is written. `fields` is consumed. */
        int (*emit)(void *userdata, const char *type, json_t *fields);
        /* Optional: emit() with the fields already printed, a compact JSON object in ASCII
         * without the chain's header keys (aj_events_emit_agent_text()). */
        int (*emit_text)(void *userdata, const char *type, const char *object, size_t len);
        /* Optional: the record of an action's end whose start is in the chain already and
         * was let through while the agent's share of the log had room (a forwarded model
         * call's llm.response: tokens and cost). Written whatever that share has left (the
         * supervisor's reserve): refused, it hid what was done and paid for; bounded, one per
         * start (a proxy connection's net.connect too, see log_full; a held call's or host's
         * decision, one per hold). Without it, emit(). */
        int (*record)(void *userdata, const char *type, json_t *fields);
        /* Optional: whether the agent's share of the log is used up. The proxy then lets no
         * connection through (refused, its net.denied is the agent's event, so a breach): a
         * connection it lets through is recorded at its end with record() (net.connect,
         * with its bytes), so at most the connections open at once pass the share. */
        bool (*log_full)(void *userdata);
        /* A cap was crossed. The supervisor freezes (or, with on_breach "kill", kills) the
         * run's cgroup, writes incident.json, runs the alert command, marks the run
         * quarantined. The caller still answers its request afterwards. */
        void (*breach)(void *userdata, const AjBreach *breach);
        /* Count `bytes` of egress against the egress_bytes cap. Returns 0 when within the
         * cap, 1 when these bytes crossed it (the breach has been handled; close the
         * connection). describe(subject), called only then, gives the connection's
         * description for the breach's record (a new reference, or NULL); describe may be
         * NULL. (Built on every call, it cost the proxy a JSON object per send.) */
        int (*charge_egress)(void *userdata, uint64_t bytes, json_t *(*describe)(const void *subject),
                             const void *subject);
        /* Optional: how many bytes charge_egress() still takes before the cap is crossed
         * (UINT64_MAX without a cap). The proxy sends no more than that, so a connection's
         * bytes stop at the cap rather than one buffer past it. */
        uint64_t (*egress_left)(void *userdata);
        /* Optional: a tool call is now held for an operator's decision (its events are
         * written). `call` (borrowed): {gen_ai.tool.name, gen_ai.tool.call.id,
         * arguments_sha256, timeout, and the arguments as logged}; or, from the proxy, a host
         * {kind: "net", id: "net-N", host, port, proto, pattern, process, timeout}. */
        void (*approval_requested)(void *userdata, json_t *call);
        /* Optional (may be NULL): the events emitted between them are written together by
         * batch_end(), whose result says whether they were recorded. */
        void (*batch_begin)(void *userdata);
        int (*batch_end)(void *userdata);
        /* Optional (both or neither): group commit. Events emitted after hold() are in the
         * chain but wait for commit(), which writes them with one write(2) and returns its
         * result (< 0: none of them is recorded). held_bytes(): how many wait. */
        void (*hold)(void *userdata);
        int (*commit)(void *userdata);
        size_t (*held_bytes)(void *userdata);
} AjHooks;

/* Approval ids of hosts held by the proxy ("net-3"); the broker refuses to hold a tool
 * call whose id begins so, so an id names one thing. */
#define AJ_NET_APPROVAL_PREFIX "net-"

/* Operator actions the control socket (src/control.c) asks of the supervisor. */
typedef struct {
        void *userdata;
        int (*freeze)(void *userdata, const char *reason);
        /* `stop`: the stop it answers (0: not named); `raise`: {"tokens": "+20000", "cost_usd":
         * "5"} ("+N" adds, "N" sets); may be NULL. */
        int (*thaw)(void *userdata, uint64_t stop, json_t *raise, AjError *ret_error);
        int (*kill)(void *userdata);
        /* Release from quarantine: thaws if frozen, records who released it. */
        int (*release)(void *userdata);
        /* Live state: {"state", "caps", "usage", "pending", "processes", "last_events"}. New reference. */
        json_t *(*inspect)(void *userdata);
        /* Approve or deny a tool call held for approval (src/broker.h, aj_broker_decide), or
         * a host a proxy connection waits for (an id "net-N": src/proxy.h, aj_proxy_decide;
         * `always`: the host stays allowed for the rest of the run). `peer` is the operator's
         * uid (SO_PEERCRED). On success *ret_result is the call or host decided. */
        int (*decide)(void *userdata, const char *call_id, bool approve, bool always, const char *digest,
                      const char *reason, uid_t peer, json_t **ret_result, AjError *ret_error);
} AjControlOps;
