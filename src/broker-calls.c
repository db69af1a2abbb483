/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker's tool calls in flight (the table `inspect` lists) and approvals: a held call
 * keeps its meter reservation, its connection (held open for the reply) and its request
 * id, with a deadline timer on the broker's loop, until aj_broker_decide(), the deadline,
 * or its caller's disconnection.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker-internal.h"
#include "events.h"
#include "util/strv.h"

/* ---- tool calls in flight ---- */

/* FNV-1a over the id, from a random per-broker seed, then mixed so that the bucket (the
 * low bits) depends on every bit of the seed (FNV's multiplications carry only upwards):
 * an agent cannot aim its ids at one chain beforehand, and a chain is never longer than
 * the table anyway (a scan, as without an index). */
static uint32_t call_id_hash(const AjBroker *b, const char *call_id)
{
        uint32_t h = 2166136261u ^ b->in_flight_seed;
        for (const unsigned char *p = (const unsigned char *)call_id; *p; p++)
                h = (h ^ *p) * 16777619u;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        h *= 0x846ca68bu;
        h ^= h >> 16;
        return h;
}

static int16_t slot_no(const AjBroker *b, const InFlight *f) { return (int16_t)(f - b->in_flight); }

static InFlight *slot_at(AjBroker *b, int16_t i) { return i < 0 ? NULL : &b->in_flight[i]; }

static InFlight *find_hashed(AjBroker *b, const char *call_id, uint32_t h, bool awaiting)
{
        for (InFlight *f = b->in_flight ? slot_at(b, b->in_flight_bucket[h % IN_FLIGHT_BUCKETS]) : NULL; f;
             f = slot_at(b, f->chain))
                if (f->hash == h && f->awaiting == awaiting && streq(f->call_id, call_id))
                        return f;
        return NULL;
}

InFlight *broker_in_flight_find(AjBroker *b, const char *call_id, bool awaiting)
{
        if (b->n_in_flight == 0)
                return NULL;
        return find_hashed(b, call_id, call_id_hash(b, call_id), awaiting);
}

static int table_init(AjBroker *b)
{
        if (b->in_flight)
                return 0;
        if (!(b->in_flight = calloc(MAX_IN_FLIGHT, sizeof(InFlight))))
                return -ENOMEM;
        for (size_t i = 0; i < IN_FLIGHT_BUCKETS; i++)
                b->in_flight_bucket[i] = -1;
        for (size_t i = 0; i < MAX_IN_FLIGHT; i++)
                b->free_slot[i] = (int16_t)(MAX_IN_FLIGHT - 1 - i);
        b->n_free = MAX_IN_FLIGHT;
        b->oldest = b->newest = -1;
        uint32_t seed = 0;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
                seed = (uint32_t)aj_now_monotonic_ns() ^ (uint32_t)((uintptr_t)b >> 4);
        b->in_flight_seed = seed;
        return 0;
}

/* Out of the index and the arrival list, onto the free stack. */
static void slot_unlink(AjBroker *b, InFlight *f)
{
        int16_t me = slot_no(b, f);
        int16_t *link = &b->in_flight_bucket[f->hash % IN_FLIGHT_BUCKETS];
        while (*link != me)
                link = &b->in_flight[*link].chain;
        *link = f->chain;
        if (f->older >= 0)
                b->in_flight[f->older].newer = f->newer;
        else
                b->oldest = f->newer;
        if (f->newer >= 0)
                b->in_flight[f->newer].older = f->older;
        else
                b->newest = f->older;
        b->free_slot[b->n_free++] = me;
        b->n_in_flight--;
}

/* A slot for a new call: a free one, or the oldest allowed call, let go. NULL without
 * memory (then the call is simply not listed) or when every slot is held (not possible
 * while MAX_AWAITING < MAX_IN_FLIGHT). */
InFlight *broker_in_flight_add(AjBroker *b, const char *call_id, const char *name, const char *digest)
{
        if (table_init(b) < 0)
                return NULL;
        uint32_t h = call_id_hash(b, call_id);
        InFlight *slot = find_hashed(b, call_id, h, false); /* a reused call id: the newer call */
        if (slot)
                slot_unlink(b, slot);
        else if (b->n_free == 0) {
                /* The oldest allowed call; held ones (at most MAX_AWAITING) are skipped. */
                for (slot = slot_at(b, b->oldest); slot && slot->awaiting; slot = slot_at(b, slot->newer))
                        ;
                if (!slot)
                        return NULL;
                b->in_flight_dropped++;
                slot_unlink(b, slot);
        }
        int16_t i = b->free_slot[--b->n_free];
        slot = &b->in_flight[i];
        *slot = (InFlight){ .used = true,
                            .order = ++b->in_flight_order,
                            .since_ns = aj_now_realtime_ns(),
                            .hash = h,
                            .chain = b->in_flight_bucket[h % IN_FLIGHT_BUCKETS],
                            .older = b->newest,
                            .newer = -1 };
        b->in_flight_bucket[h % IN_FLIGHT_BUCKETS] = i;
        if (b->newest >= 0)
                b->in_flight[b->newest].newer = i;
        else
                b->oldest = i;
        b->newest = i;
        b->n_in_flight++;
        snprintf(slot->call_id, sizeof(slot->call_id), "%s", call_id);
        snprintf(slot->name, sizeof(slot->name), "%s", name);
        memcpy(slot->digest, digest, sizeof(slot->digest));
        return slot;
}

void broker_in_flight_remove(AjBroker *b, InFlight *f)
{
        aj_loop_timer_stop(&f->timer);
        if (f->awaiting) {
                b->n_awaiting--;
                if (f->conn)
                        aj_line_conn_hold(f->conn, -1);
                json_decref(f->req_id);
        }
        slot_unlink(b, f);
        *f = (InFlight){ 0 };
}

static int cmp_in_flight(const void *x, const void *y)
{
        const InFlight *a = *(InFlight *const *)x, *b = *(InFlight *const *)y;
        return a->order < b->order ? -1 : a->order > b->order;
}

json_t *aj_broker_in_flight(const AjBroker *b)
{
        json_t *list = json_array();
        InFlight *sorted[MAX_IN_FLIGHT];
        size_t n = 0;
        for (size_t i = 0; list && b->n_in_flight > 0 && i < MAX_IN_FLIGHT; i++)
                if (b->in_flight[i].used)
                        sorted[n++] = &b->in_flight[i];
        qsort(sorted, n, sizeof(sorted[0]), cmp_in_flight);
        uint64_t now = aj_now_realtime_ns();
        for (size_t i = 0; list && i < n; i++) {
                char ts[40];
                const InFlight *f = sorted[i];
                json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f}", AJ_BROKER_F_TOOL_CALL_ID, f->call_id,
                                      AJ_BROKER_F_TOOL_NAME, f->name, "state",
                                      f->awaiting ? "awaiting_approval" : "running", "arguments_sha256", f->digest,
                                      "since", aj_format_timestamp(f->since_ns, ts, sizeof(ts)), "age_s",
                                      now > f->since_ns ? (double)(now - f->since_ns) / 1e9 : 0.0);
                if (o && f->awaiting) {
                        uint64_t mono = b->now_ns(), deadline = f->timer.deadline_ns;
                        double left = deadline > mono ? (double)(deadline - mono) / 1e9 : 0.0;
                        if (json_object_set_new(o, "timeout_in_s", json_real(left)) < 0) {
                                json_decref(o);
                                o = NULL;
                        }
                }
                if (!o || json_array_append_new(list, o) < 0) {
                        json_decref(list);
                        return NULL;
                }
        }
        return list;
}

uint64_t aj_broker_in_flight_dropped(const AjBroker *b) { return b->in_flight_dropped; }

/* ---- approvals ---- */

static UndoRight **undo_link(const AjBroker *b, const char *call_id, uint32_t h)
{
        UndoRight **link = &b->undo_rights[h % UNDO_BUCKETS];
        while (*link && ((*link)->hash != h || !streq((*link)->id, call_id)))
                link = &(*link)->next;
        return link;
}

int broker_undo_right_grant(AjBroker *b, const char *call_id, const char *name)
{
        if (!b->undo_rights && !(b->undo_rights = calloc(UNDO_BUCKETS, sizeof(*b->undo_rights))))
                return -ENOMEM;
        uint32_t h = call_id_hash(b, call_id);
        UndoRight **link = undo_link(b, call_id, h);
        if (!*link && b->n_undo_rights >= MAX_UNDO_RIGHTS) {
                b->undo_rights_full++; /* bounded: this call's undo record will be refused */
                return -ENOSPC;
        }
        size_t id_len = strlen(call_id), name_len = strlen(name);
        UndoRight *u = malloc(sizeof(*u) + id_len + 1 + name_len + 1);
        if (!u)
                return -ENOMEM;
        u->hash = h;
        memcpy(u->id, call_id, id_len + 1);
        u->name = memcpy(u->id + id_len + 1, name, name_len + 1);
        if (*link) { /* the same id again: the newer call's tool */
                u->next = (*link)->next;
                free(*link);
        } else {
                u->next = b->undo_rights[h % UNDO_BUCKETS];
                link = &b->undo_rights[h % UNDO_BUCKETS];
                b->n_undo_rights++;
        }
        *link = u;
        return 0;
}

void broker_undo_right_revoke(AjBroker *b, const char *call_id)
{
        if (!b->undo_rights)
                return;
        UndoRight **link = undo_link(b, call_id, call_id_hash(b, call_id));
        UndoRight *u = *link;
        if (!u)
                return;
        *link = u->next;
        free(u);
        b->n_undo_rights--;
}

const char *broker_undo_right(const AjBroker *b, const char *call_id)
{
        if (!b->undo_rights)
                return NULL;
        const UndoRight *u = *undo_link(b, call_id, call_id_hash(b, call_id));
        return u ? u->name : NULL;
}

void broker_undo_rights_free(AjBroker *b)
{
        if (!b->undo_rights)
                return;
        for (size_t i = 0; i < UNDO_BUCKETS; i++)
                while (b->undo_rights[i]) {
                        UndoRight *u = b->undo_rights[i];
                        b->undo_rights[i] = u->next;
                        free(u);
                }
        free(b->undo_rights);
        b->undo_rights = NULL;
        b->n_undo_rights = 0;
}

void broker_held_call_key(const char *name, const char *digest, char ret_hex[AJ_SHA256_HEX_SIZE])
{
        AjSha256 h;
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256_init(&h);
        aj_sha256_update(&h, name, strlen(name) + 1); /* the NUL separates name and digest */
        aj_sha256_update(&h, digest, strlen(digest));
        aj_sha256_final(&h, d);
        aj_sha256_hex(d, ret_hex);
}

/* The operator decides on a held call by its id (and --digest, of its arguments only), while
 * the caller may hang up and ask again: an id held once names that call, its tool and its
 * arguments, for the rest of the run, or the decision meant for one call would allow another.
 * Remembering them is bounded by the number of holds a run may ask for, which also bounds the
 * operator's interruptions (a cancelled call counts nothing against the caps). */
bool broker_held_id_refused(const AjBroker *b, const char *call_id, const char *key, char *reason, size_t size)
{
        const char *named = b->held_ids ? json_string_value(json_object_get(b->held_ids, call_id)) : NULL;
        if (named && !streq(named, key))
                snprintf(reason, size,
                         "call id \"%.128s\" was held for approval earlier in this run as another call (another tool "
                         "or other arguments): an id held names one call; use a new id",
                         call_id);
        else if (b->n_held >= AJ_BROKER_MAX_APPROVALS)
                snprintf(reason, size,
                         "this run has asked for %d approvals, the most it may: call \"%.128s\" cannot be held",
                         AJ_BROKER_MAX_APPROVALS, call_id);
        else
                return false;
        return true;
}

bool broker_needs_approval(const AjBroker *b, const char *name)
{
        for (size_t i = 0; i < b->n_approval_globs; i++)
                if (aj_glob_match(b->approval_globs[i], name))
                        return true;
        return false;
}

/* Records the decision on a held call and answers it: `approve` commits its reservation
 * and leaves it in flight until its tool_result; otherwise the reservation is released
 * and the call is gone. `decision`: approved, denied or timeout. */
static void finish_held(AjBroker *b, InFlight *f, bool approve, const char *decision, const char *by,
                        const char *reason)
{
        char text[512];
        if (!approve) {
                if (streq(decision, "timeout"))
                        snprintf(text, sizeof(text), "no approval within %s", reason);
                else
                        snprintf(text, sizeof(text), "denied by %s%s%s", by, reason ? ": " : "", reason ? reason : "");
        }
        /* The operator's decision (or the deadline's): recorded whatever the agent left of
         * its share of the log, which it could fill meanwhile to make "approved" go unrecorded. */
        int r = broker_record_pair(b, "approval",
                                   json_pack("{s:s, s:s, s:s, s:s, s:s*}", AJ_BROKER_F_TOOL_NAME, f->name,
                                             AJ_BROKER_F_TOOL_CALL_ID, f->call_id, "decision", decision, "by", by,
                                             AJ_BROKER_F_REASON, streq(decision, "timeout") ? NULL : reason),
                                   "tool.verdict",
                                   json_pack("{s:s, s:s, s:s, s:s*, s:s*}", AJ_BROKER_F_TOOL_NAME, f->name,
                                             AJ_BROKER_F_TOOL_CALL_ID, f->call_id, AJ_BROKER_F_VERDICT,
                                             approve ? AJ_BROKER_ALLOW : AJ_BROKER_DENY, AJ_BROKER_F_REASON,
                                             approve ? NULL : text, "counted_by",
                                             approve && f->res.exempt ? "gateway" : NULL));
        /* The call happens now: that is when the rate window counts it. */
        f->res.now_ns = b->now_ns();
        aj_meter_settle(b->meter, &f->res, approve && r >= 0);

        Conn *c = f->conn;
        json_t *id = json_incref(f->req_id);
        json_t *reply = NULL;
        if (r >= 0) {
                reply = broker_verdict_reply(b, id, approve ? AJ_BROKER_ALLOW : AJ_BROKER_DENY, NULL);
                reply = broker_reply_set(reply, AJ_BROKER_F_TOOL_CALL_ID, json_string(f->call_id));
                if (!approve)
                        reply = broker_reply_set(reply, AJ_BROKER_F_REASON, json_string(text));
                reply = broker_reply_set(reply, "approval", json_pack("{s:s, s:s}", "decision", decision, "by", by));
        }
        if (approve && r >= 0) {
                /* Now an allowed call like any other, until its tool_result. */
                (void)broker_undo_right_grant(b, f->call_id, f->name);
                f->awaiting = false;
                aj_loop_timer_stop(&f->timer);
                b->n_awaiting--;
                if (c)
                        aj_line_conn_hold(c, -1);
                json_decref(f->req_id);
                f->req_id = NULL;
                f->conn = NULL;
        } else {
                broker_in_flight_remove(b, f);
        }
        if (c) {
                if (r < 0)
                        broker_reply_unrecorded(b, c, id, r);
                else
                        broker_conn_reply(c, reply);
                aj_line_conn_flush(c); /* c may be gone after */
        } else {
                json_decref(reply);
        }
        json_decref(id);
}

/* The caller of these held calls went away (or the run ended): nothing to answer. */
void broker_cancel_held(AjBroker *b, Conn *c, const char *reason)
{
        for (size_t i = 0; aj_line_conn_held(c) > 0 && i < MAX_IN_FLIGHT; i++) {
                InFlight *f = &b->in_flight[i];
                if (!f->used || !f->awaiting || f->conn != c)
                        continue;
                (void)broker_record(b, "approval",
                                    json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, f->name,
                                              AJ_BROKER_F_TOOL_CALL_ID, f->call_id, "decision", "cancelled",
                                              AJ_BROKER_F_REASON, reason));
                aj_meter_settle(b->meter, &f->res, false);
                broker_in_flight_remove(b, f);
        }
}

void aj_broker_cancel_held(AjBroker *b)
{
        for (Conn *c = aj_line_server_first(b->server); c && b->n_awaiting > 0; c = aj_line_conn_next(c))
                if (aj_line_conn_held(c) > 0)
                        broker_cancel_held(b, c, "the run ended");
}

/* A held call's deadline passed: denied, its caller answered. */
static void on_held_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)now_ns;
        AjBroker *b = userdata;
        InFlight *f = (InFlight *)((char *)t - offsetof(InFlight, timer));
        char d[32];
        finish_held(b, f, false, "timeout", "timeout", aj_format_duration(b->approval_timeout_ns, d, sizeof(d)));
}

int aj_broker_set_approvals(AjBroker *b, char *const *globs, size_t n, uint64_t timeout_ns)
{
        char **copy = calloc(n + 1, sizeof(char *));
        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(copy[i] = strdup(globs[i]))) {
                        aj_strv_free(copy);
                        return -ENOMEM;
                }
        aj_strv_free(b->approval_globs);
        b->approval_globs = copy;
        b->n_approval_globs = n;
        b->approval_timeout_ns = timeout_ns ? timeout_ns : AJ_BROKER_APPROVAL_TIMEOUT_NS;
        return 0;
}

int aj_broker_decide(AjBroker *b, const char *call_id, bool approve, const char *digest, const char *by,
                     const char *reason, json_t **ret_call, AjError *ret_error)
{
        InFlight *f = broker_in_flight_find(b, call_id, true);
        if (!f)
                return aj_error_set(ret_error, -ENOENT, "no call \"%.128s\" is awaiting approval", call_id);
        if (digest && !streq(digest, f->digest))
                return aj_error_set(ret_error, -ESTALE,
                                    "call \"%s\" has arguments_sha256 %s, not %.64s: not the call reviewed", f->call_id,
                                    f->digest, digest);
        if (ret_call)
                *ret_call = json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_CALL_ID, f->call_id,
                                      AJ_BROKER_F_TOOL_NAME, f->name, "arguments_sha256", f->digest, "decision",
                                      approve ? "approved" : "denied");
        finish_held(b, f, approve, approve ? "approved" : "denied", by, reason);
        return 0;
}

/* ---- holding a call ---- */

/* The call waits for an operator: its request and approval.requested are recorded, its
 * reservation kept; the reply comes from finish_held(). `ev` (tool.request) is consumed. */
void broker_hold(AjBroker *b, Conn *c, json_t *id, const char *name, const char *call_id, const char *digest,
                 AjMeterReservation *res, json_t *ev, json_t *args)
{
        /* The id names this call from now on, held or not (a failure below leaves it so:
         * the binding only ever refuses). */
        char key[AJ_SHA256_HEX_SIZE];
        broker_held_call_key(name, digest, key);
        if (!b->held_ids)
                b->held_ids = json_object();
        InFlight *f = NULL;
        if (b->held_ids && json_object_set_new(b->held_ids, call_id, json_string(key)) == 0) {
                b->n_held++;
                f = broker_in_flight_add(b, call_id, name, digest);
        }
        if (!f) {
                json_decref(ev);
                aj_meter_settle(b->meter, res, false);
                return broker_reply_unrecorded(b, c, id, -ENOMEM);
        }
        char t[32];
        aj_loop_timer_init(b->loop, &f->timer, on_held_timeout, b);
        /* Armed before the events: a call that could never time out is not held. */
        int r = aj_loop_timer_set(&f->timer, b->now_ns() + b->approval_timeout_ns);
        /* What the operator decides on is recorded whole, however long (tool.request keeps a
         * cut for ordinary calls): a held call's arguments are bounded by the request line
         * and the number held, and a call the chain cannot take is not held (refused). */
        json_t *asked = r < 0 ? NULL
                              : json_pack("{s:s, s:s, s:s, s:s, s:O}", AJ_BROKER_F_TOOL_NAME, name,
                                          AJ_BROKER_F_TOOL_CALL_ID, call_id, "arguments_sha256", digest, "timeout",
                                          aj_format_duration(b->approval_timeout_ns, t, sizeof(t)),
                                          AJ_BROKER_F_TOOL_ARGS, args);
        if (r < 0)
                json_decref(ev);
        else if (!asked) {
                json_decref(ev);
                r = -ENOMEM;
        } else
                r = broker_emit_pair(b, "tool.request", ev, "approval.requested", asked);
        bool was = false;
        if (r >= 0)
                r = broker_ungroup(b, &was); /* the operator is told of a call whose events are on disk */
        if (r < 0) {
                broker_regroup(b, was);
                broker_in_flight_remove(b, f);
                aj_meter_settle(b->meter, res, false);
                return broker_reply_unrecorded(b, c, id, r);
        }
        f->awaiting = true;
        f->conn = c;
        f->req_id = json_incref(id);
        f->res = *res;
        aj_line_conn_hold(c, +1);
        b->n_awaiting++;
        if (b->hooks && b->hooks->approval_requested) {
                json_auto_t *call = json_pack("{s:s, s:s, s:s, s:s, s:O}", AJ_BROKER_F_TOOL_NAME, name,
                                              AJ_BROKER_F_TOOL_CALL_ID, call_id, "arguments_sha256", digest, "timeout",
                                              aj_format_duration(b->approval_timeout_ns, t, sizeof(t)),
                                              AJ_BROKER_F_TOOL_ARGS, args);
                if (call)
                        b->hooks->approval_requested(b->hooks->userdata, call);
        }
        broker_regroup(b, was);
}
