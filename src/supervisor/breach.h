/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Breaches and what follows them: a cap crossed (the broker's meters, egress, the wall cap,
 * events.jsonl full) freezes the jail (or kills it, on_breach "kill"; killed too when it
 * cannot be frozen: fail closed), records the quarantine and incident.json and starts the
 * owner's alert. Also the operator's freeze, thaw, kill and release, and the hooks the
 * broker and the proxy get (src/hooks.h). Everything it does to the jail or the records
 * goes through AjSupBreachOps and the event sink, so it is unit tested with fakes.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "hooks.h"
#include "run-record.h"
#include "supervisor/sink.h"

typedef struct {
        int (*freeze)(void *userdata); /* the jail's cgroup: -EOPNOTSUPP without one */
        int (*thaw)(void *userdata);
        int (*kill)(void *userdata); /* every process of the jail */
        /* The wall clock stands still while frozen. */
        void (*frozen_changed)(void *userdata, bool frozen);
        /* The run's state changed: rewrite run.json. */
        void (*changed)(void *userdata);
        /* The meters' usage for incident.json (a new reference, or NULL). */
        json_t *(*usage)(void *userdata);
        int (*write_incident)(void *userdata, const AjIncident *incident);
        /* The owner's alert command with <run dir>/<input> (no-op without one). */
        void (*alert)(void *userdata, const char *kind, const char *input);
        /* A tool call waits for an operator (AjHooks.approval_requested). */
        void (*approval)(void *userdata, json_t *call);
} AjSupBreachOps;

typedef struct {
        const char *id, *name; /* borrowed, for incident.json */
        bool has_cgroup;       /* without one the jail cannot be frozen */
        bool kill_on_breach;   /* on_breach "kill" */
        uint64_t log_cap;      /* logs.events_bytes */
        uint64_t egress_limit; /* 0: none */
} AjSupBreachConfig;

typedef struct {
        const AjSupBreachOps *ops;
        void *userdata;
        AjSupSink events;
        AjSupBreachConfig cfg; /* log_cap as raised */
        uint64_t egress_used;

        bool frozen;
        /* Each freeze is a stop, numbered from 1: what a `thaw --stop N` (and its raises)
         * answers. stop_cap: the cap whose breach made the current one ("" for an operator's). */
        uint64_t stop;
        char stop_cap[40];
        bool quarantined, released;
        AjRunQuarantine quarantine; /* run.json's; its strings point into: */
        char since[40], released_at[40], *cap;
        bool killed; /* on_breach "kill" or an operator's kill */
        bool exited_before_kill;
        bool cmd_exited;  /* the command's status is known */
        bool jail_exited; /* init is gone */
        bool in_event_batch;
        bool events_held;     /* the broker holds the chain for a group commit */
        bool events_full_due; /* a refusal while held: the breach waits for the commit */
        uint64_t events_refused;
} AjSupBreach;

void aj_sup_breach_init(AjSupBreach *b, const AjSupBreachConfig *cfg, const AjSupBreachOps *ops, void *userdata,
                        const AjSupSink *events);
void aj_sup_breach_done(AjSupBreach *b);
/* The hooks for the broker and the proxy: userdata is `b`. */
void aj_sup_breach_hooks(AjSupBreach *b, AjHooks *ret);

void aj_sup_breach_handle(AjSupBreach *b, const AjBreach *breach);
int aj_sup_breach_freeze(AjSupBreach *b, const char *by, const char *reason);
int aj_sup_breach_thaw(AjSupBreach *b, const char *by);
/* The two halves of a thaw, for a thaw that changes caps in between (aj_sup_thaw_raise): the
 * jail's cgroup thawed (nothing recorded; -errno, still frozen, when it fails), then the
 * run's record of it. */
int aj_sup_breach_thaw_jail(AjSupBreach *b);
void aj_sup_breach_thawed(AjSupBreach *b, const char *by);
/* Kill the jail with a "kill" event: exit 123 (unless the command had exited already). */
int aj_sup_breach_kill(AjSupBreach *b, const char *by);
/* Release from quarantine: -EINVAL when not quarantined. */
int aj_sup_breach_release(AjSupBreach *b);
/* The command's status arrived (cmd) or init exited (jail): nothing left to stop. */
void aj_sup_breach_set_exited(AjSupBreach *b, bool cmd, bool jail);

/* An event the agent's actions cause: within its share of logs.events_bytes; the first
 * refused one is a breach (cap log_bytes), after the batch it is part of. */
int aj_sup_breach_emit_agent(AjSupBreach *b, const char *type, json_t *fields);
/* thaw --raise log_bytes=+SIZE adds to logs.events_bytes, log_bytes=SIZE sets it; the new
 * cap must leave the agent room. _set_log_cap() applies what _check_log_cap() returned. */
int aj_sup_breach_check_log_cap(const AjSupBreach *b, json_t *value, uint64_t *ret_cap, AjError *ret_error);
void aj_sup_breach_set_log_cap(AjSupBreach *b, uint64_t cap);

/* One of the supervisor's own records (never refused): caps.raise. */
int aj_sup_breach_emit(AjSupBreach *b, const char *type, json_t *fields);

/* The run's state word for run.json and `ps`: running, frozen, quarantined, exited. */
const char *aj_sup_breach_state(const AjSupBreach *b, bool exited);
bool aj_sup_breach_frozen(const AjSupBreach *b);
/* The current stop's number (0 when not frozen) and the cap whose breach made it (NULL for
 * an operator's freeze). */
uint64_t aj_sup_breach_stop(const AjSupBreach *b);
const char *aj_sup_breach_stop_cap(const AjSupBreach *b);
/* Frozen, or killed (by a breach or an operator): nothing in the jail writes any more. */
bool aj_sup_breach_stopped(const AjSupBreach *b);
/* Killed by policy or an operator while the command still ran: exit 123. */
bool aj_sup_breach_killed(const AjSupBreach *b);
/* The quarantine record (borrowed) or NULL. */
const AjRunQuarantine *aj_sup_breach_quarantine(const AjSupBreach *b);
uint64_t aj_sup_breach_log_cap(const AjSupBreach *b);
uint64_t aj_sup_breach_events_refused(const AjSupBreach *b);
uint64_t aj_sup_breach_egress_used(const AjSupBreach *b);
uint64_t aj_sup_breach_egress_limit(const AjSupBreach *b);
