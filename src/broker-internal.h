/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker's insides, shared by its files:
 *   broker.c        the server (a line server on the broker's own loop), request lines
 *                   to operations, the operations
 *   broker-reply.c  events and replies: errors, verdicts, rate limits on reports
 *   broker-calls.c  the table of tool calls in flight, the allowed calls that may report
 *                   an undo record, and approvals (held calls, their
 *                   deadlines, decisions)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agentjail/broker.h"
#include "broker.h"
#include "line-server.h"
#include "util/ratelimit.h"
#include "util/format.h"
#include "util/loop.h"

#define MAX_ACCEPTS_PER_DISPATCH 16
/* Allowed tool calls tracked until their tool_result; past this the oldest is dropped. */
#define MAX_IN_FLIGHT 256
/* Their index by call id: chains from 2x as many buckets (a power of two). */
#define IN_FLIGHT_BUCKETS 512
/* Allowed calls remembered until their tool_result, whatever the in-flight table drops:
 * only these may report an undo record. Past this, a newly allowed call is not remembered
 * (its undo record is refused, saying so). */
#define MAX_UNDO_RIGHTS AJ_BROKER_MAX_UNDO
/* Calls held for approval at once; more are denied (a loop must not pile them up). */
#define MAX_AWAITING 64
/* broker.error events: a burst, then a steady rate; the rest are counted, not written. */
#define ERROR_BURST 20
#define ERROR_PER_SEC 5
/* `check` requests: read-only, but an agent asking them probes the tools rules, so they are
 * counted and summed into tool.checks events (broker.h aj_broker_flush_checks). */
typedef struct {
        uint64_t allowed, denied; /* since the last tool.checks written */
        uint64_t run_total;       /* in the run */
        char denied_names[AJ_BROKER_CHECK_SUMMARY_NAMES][AJ_BROKER_MAX_NAME + 1];
        size_t n_denied_names;
        AjLoopTimer timer; /* armed while some are counted and not written */
} CheckSummary;

/* Group commit: the events held for one write(2) are committed early past this. One write
 * per 64 KiB of events is a few hundred a second at full rate; 1 MiB groups kept a 1 MiB
 * buffer resident in every supervisor a pipelining agent had loaded once. */
#define GROUP_MAX_BYTES (64u << 10)

/* An allowed call's right to report an undo record: one allocation each, the id then the
 * tool's name (a jansson object took about 160 bytes an entry, 640 KiB when full). */
typedef struct UndoRight {
        struct UndoRight *next;
        uint32_t hash;
        const char *name; /* in id[], after the id's NUL */
        char id[];
} UndoRight;
#define UNDO_BUCKETS 1024

typedef AjLineConn Conn; /* held calls: aj_line_conn_hold() keeps it open for their replies */

/* A tool call awaiting an operator's decision (held: no reply yet, its meter reservation
 * kept), or allowed and without its tool_result yet. `inspect` lists both. */
typedef struct {
        bool used;
        bool awaiting;     /* held for approval; never dropped to make room */
        uint64_t order;    /* arrival order: the smallest is the oldest */
        uint64_t since_ns; /* CLOCK_REALTIME */
        char call_id[AJ_BROKER_MAX_ID + 1];
        char name[AJ_BROKER_MAX_NAME + 1];
        char digest[AJ_SHA256_HEX_SIZE];
        /* awaiting only */
        Conn *conn;
        json_t *req_id;
        AjMeterReservation res;
        AjLoopTimer timer; /* the deadline, on b->now_ns()'s clock; userdata: the broker */
        /* The index: the call id's hash, the next slot in its bucket's chain; the arrival
         * list, oldest first (slot numbers, -1: none). */
        uint32_t hash;
        int16_t chain, older, newer;
} InFlight;

struct AjBroker {
        AjLoop *loop;
        int loop_fd;
        AjLineServer *server;
        char *path;
        AjMeter *meter;
        const AjHooks *hooks;
        uint64_t next_call;
        uint64_t (*now_ns)(void);
        AjRateLimit error_rl;             /* broker.error events; .suppressed: not yet told in one */
        AjRateLimit report_rl;            /* tool_result + tokens; per_sec 0: none */
        uint64_t reports_suppressed_told; /* report_rl.suppressed already in an event */
        InFlight *in_flight;              /* MAX_IN_FLIGHT slots, allocated with the first allowed call */
        size_t n_in_flight, n_awaiting;
        /* Found by call id without a scan: hashed (seeded) into buckets of chains; dropped
         * oldest first from the arrival list; free slots on a stack. */
        uint32_t in_flight_seed;
        int16_t in_flight_bucket[IN_FLIGHT_BUCKETS];
        int16_t oldest, newest;
        int16_t free_slot[MAX_IN_FLIGHT];
        size_t n_free;
        uint64_t in_flight_order, in_flight_dropped;
        uint64_t n_undo; /* tool_result undo records recorded: at most AJ_BROKER_MAX_UNDO */
        /* call id -> tool name: allowed calls without a tool_result yet, at most
         * MAX_UNDO_RIGHTS, hashed like the calls in flight into UNDO_BUCKETS chains (NULL
         * until the first); allowed calls not remembered, the table full. */
        UndoRight **undo_rights;
        size_t n_undo_rights;
        uint64_t undo_rights_full;
        /* approvals: calls whose tool name matches wait for aj_broker_decide() */
        /* call id -> the call it was held as (broker_held_call_key(), hex): every id held in
         * this run, which names that call from then on (NULL until the first hold) */
        json_t *held_ids;
        uint64_t n_held; /* calls held in this run: at most AJ_BROKER_MAX_APPROVALS */
        char **approval_globs;
        size_t n_approval_globs;
        uint64_t approval_timeout_ns;
        CheckSummary checks;
        bool closing;  /* in aj_broker_free(): held calls end with the run */
        bool grouping; /* in aj_broker_dispatch(): events held, replies corked */
        uint64_t commits_failed;
};

/* broker.c: inside aj_broker_dispatch(), writes the events held so far and sends the replies
 * they back (or closes those connections, if the write failed: its result), then holds
 * again. Before anything that acts outside the broker on recorded events (a breach, an
 * operator asked). Outside a dispatch: 0, nothing to do. */
int broker_commit(AjBroker *b);
/* The same in two halves, for what must happen with nothing held (a breach's own records,
 * an operator told): commit and stop grouping (*ret_was: it was), then group again. */
int broker_ungroup(AjBroker *b, bool *ret_was);
void broker_regroup(AjBroker *b, bool was);

/* broker-reply.c: events and replies (every event is emitted before its reply is queued) */
void broker_conn_reply(Conn *c, json_t *reply);
int broker_emit(AjBroker *b, const char *type, json_t *fields);
int broker_emit_pair(AjBroker *b, const char *type1, json_t *fields1, const char *type2, json_t *fields2);
/* The same with both events already printed (hooks' emit_text, which the caller checked). */
int broker_emit_text_pair(AjBroker *b, const char *type1, const char *text1, size_t len1, const char *type2,
                          const char *text2, size_t len2);
/* The same for the end of a held call (an operator's decision, its timeout, its cancel): in
 * the supervisor's reserve (hooks' record), never refused by the agent's share of the log,
 * one per hold (at most AJ_BROKER_MAX_APPROVALS a run). */
int broker_record(AjBroker *b, const char *type, json_t *fields);
int broker_record_pair(AjBroker *b, const char *type1, json_t *fields1, const char *type2, json_t *fields2);
bool broker_error_event_allowed(AjBroker *b);
json_t *broker_envelope(json_t *id, bool ok);
/* Records broker.error (rate limited) and queues the error reply. `id` may be NULL. */
_printf_(5, 6) void broker_reply_error(AjBroker *b, Conn *c, json_t *id, const char *code, const char *fmt, ...);
void broker_reply_unrecorded(AjBroker *b, Conn *c, json_t *id, int r);
bool broker_report_allowed(AjBroker *b, Conn *c, json_t *id);
json_t *broker_add_reports_suppressed(AjBroker *b, json_t *ev);
void broker_reports_suppressed_recorded(AjBroker *b);
double broker_cap_value(AjCap cap, uint64_t v);
json_t *broker_cap_json(AjCap cap, uint64_t v);
int broker_add_breach(json_t *o, const AjMeterDecision *d);
json_t *broker_verdict_reply(AjBroker *b, json_t *id, const char *verdict, const AjMeterDecision *d);
json_t *broker_reply_set(json_t *reply, const char *key, json_t *value);
/* Commits what is held first: < 0 when that failed (the request is not recorded). */
int broker_report_breach(AjBroker *b, const AjMeterDecision *d, json_t *req);
int broker_add_logged_args(json_t *ev, json_t *args, const char *canon);
/* How much of the canonical arguments (len bytes) the events log: len when they are small
 * enough to log whole, else the first AJ_BROKER_MAX_LOGGED_ARGS bytes or less (a whole
 * UTF-8 character), as arguments_truncated. */
size_t broker_logged_args_cut(const char *canon, size_t len);
const char *broker_verdict_name(AjVerdict v, bool tool);

/* broker-calls.c: tool calls in flight, approvals */
InFlight *broker_in_flight_find(AjBroker *b, const char *call_id, bool awaiting);
InFlight *broker_in_flight_add(AjBroker *b, const char *call_id, const char *name, const char *digest);
void broker_in_flight_remove(AjBroker *b, InFlight *f);
/* Allowed calls that may report an undo record with their first tool_result: granted with
 * an allowing verdict, revoked by a new request with the same id or by the result. */
int broker_undo_right_grant(AjBroker *b, const char *call_id, const char *name);
void broker_undo_right_revoke(AjBroker *b, const char *call_id);
/* The allowed call's tool name, or NULL: the id is no allowed call awaiting its result. */
const char *broker_undo_right(const AjBroker *b, const char *call_id);
void broker_undo_rights_free(AjBroker *b);
bool broker_needs_approval(const AjBroker *b, const char *name);
/* What a held call id names: sha256 over the tool name and the arguments' digest, in hex. */
void broker_held_call_key(const char *name, const char *digest, char ret_hex[AJ_SHA256_HEX_SIZE]);
/* True, and why in `reason`, when a call the approvals would hold cannot be held under this
 * id: the id names another call held earlier in the run, or the run has asked for all the
 * approvals it may. `key` from broker_held_call_key(). */
bool broker_held_id_refused(const AjBroker *b, const char *call_id, const char *key, char *reason, size_t size);
/* The call waits for an operator (see broker-calls.c). `ev` (tool.request) is consumed. */
void broker_hold(AjBroker *b, Conn *c, json_t *id, const char *name, const char *call_id, const char *digest,
                 AjMeterReservation *res, json_t *ev, json_t *args);
/* The caller of these held calls went away (or the run ended): nothing to answer. */
void broker_cancel_held(AjBroker *b, Conn *c, const char *reason);
