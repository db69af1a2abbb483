/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker server (see broker.h, include/agentjail/broker.h and
 * docs/broker-protocol.md). Its own AjLoop, nested in the supervisor's: the
 * listening socket and every connection are served by the line server
 * (src/line-server.h), the approval deadlines are timers on that loop.
 *
 * Per connection: an input buffer of one maximal line (a longer line is
 * answered with an error and discarded up to its newline, the connection
 * stays), and an output buffer bounded by AJ_BROKER_MAX_OUTPUT (a client that
 * does not read its replies is disconnected when it would grow past that, so
 * it never stalls the loop or the other clients).
 *
 * Order for every request: check (reserve in the meter), emit its events, then
 * settle and queue the reply. An event that cannot be written releases the
 * reservation and answers "internal": nothing unrecorded is ever allowed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "broker.h"
#include "events.h"
#include "line-server.h"
#include "seccomp-filter.h"
#include "util/strv.h"

#define MAX_ACCEPTS_PER_DISPATCH 16
/* Allowed tool calls tracked until their tool_result; past this the oldest is dropped. */
#define MAX_IN_FLIGHT 256
/* Calls held for approval at once; more are denied (a loop must not pile them up). */
#define MAX_AWAITING 64
/* broker.error events: a burst, then a steady rate; the rest are counted, not written. */
#define ERROR_BURST 20
#define ERROR_PER_SEC 5

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
        double error_tokens;
        uint64_t error_refill_ns;
        uint64_t errors_suppressed;
        AjRateLimit report_rl; /* tool_result + tokens; per_sec 0: none */
        uint64_t reports_suppressed_told; /* report_rl.suppressed already in an event */
        InFlight *in_flight; /* MAX_IN_FLIGHT slots, allocated with the first allowed call */
        size_t n_in_flight, n_awaiting;
        uint64_t in_flight_order, in_flight_dropped;
        /* approvals: calls whose tool name matches wait for aj_broker_decide() */
        char **approval_globs;
        size_t n_approval_globs;
        uint64_t approval_timeout_ns;
        bool closing; /* in aj_broker_free(): held calls end with the run */
};

static void cancel_held(AjBroker *b, Conn *c, const char *reason);

/* ---- replies ---- */

static void conn_reply(Conn *c, json_t *reply)
{
        if (!reply) {
                aj_line_conn_kill(c);
                return;
        }
        _cleanup_free_ char *s = json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(12));
        json_decref(reply);
        if (!s) {
                aj_line_conn_kill(c);
                return;
        }
        aj_line_conn_queue(c, s, strlen(s));
}

/* ---- events ---- */

static int emit(AjBroker *b, const char *type, json_t *fields)
{
        if (!fields)
                return -ENOMEM;
        if (!b->hooks || !b->hooks->emit) {
                json_decref(fields);
                return 0;
        }
        return b->hooks->emit(b->hooks->userdata, type, fields);
}

/* A request's two events together: one write(2) when the supervisor batches, still
 * before the reply. The second is dropped if the first could not be recorded. Both
 * `fields` are consumed. */
static int emit_pair(AjBroker *b, const char *type1, json_t *fields1, const char *type2, json_t *fields2)
{
        bool batched = b->hooks && b->hooks->batch_begin && b->hooks->batch_end;
        if (batched)
                b->hooks->batch_begin(b->hooks->userdata);
        int r = emit(b, type1, fields1);
        if (r >= 0)
                r = emit(b, type2, fields2);
        else
                json_decref(fields2);
        if (batched) {
                int q = b->hooks->batch_end(b->hooks->userdata);
                if (r >= 0)
                        r = q;
        }
        return r;
}

/* Token bucket for broker.error: garbage from a client must not fill the event log. */
static bool error_event_allowed(AjBroker *b)
{
        uint64_t now = b->now_ns();
        if (b->error_refill_ns == 0 || now < b->error_refill_ns) {
                b->error_tokens = ERROR_BURST;
                b->error_refill_ns = now;
        }
        b->error_tokens += (double)(now - b->error_refill_ns) / 1e9 * ERROR_PER_SEC;
        if (b->error_tokens > ERROR_BURST)
                b->error_tokens = ERROR_BURST;
        b->error_refill_ns = now;
        if (b->error_tokens < 1) {
                b->errors_suppressed++;
                return false;
        }
        b->error_tokens -= 1;
        return true;
}

static json_t *envelope(json_t *id, bool ok)
{
        return json_pack("{s:O?, s:i, s:b}", AJ_BROKER_F_ID, id, AJ_BROKER_F_V, AJ_BROKER_VERSION, AJ_BROKER_F_OK,
                         (int)ok);
}

static void queue_error(Conn *c, json_t *id, const char *code, const char *msg)
{
        json_t *r = envelope(id, false);
        if (r && json_object_set_new(r, AJ_BROKER_F_ERROR, json_pack("{s:s, s:s}", "code", code, "message", msg)) < 0) {
                json_decref(r);
                r = NULL;
        }
        conn_reply(c, r);
}

/* Records broker.error (rate limited) and queues the error reply. `id` may be NULL. */
_printf_(5, 6) static void reply_error(AjBroker *b, Conn *c, json_t *id, const char *code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (error_event_allowed(b)) {
                json_t *f = json_pack("{s:s, s:s, s:O?}", "code", code, "message", msg, "id", id);
                if (f && b->errors_suppressed) {
                        json_object_set_new(f, "suppressed", json_integer((json_int_t)b->errors_suppressed));
                        b->errors_suppressed = 0;
                }
                (void)emit(b, "broker.error", f); /* the reply says what went wrong either way */
        }
        queue_error(c, id, code, msg);
}

/* tool_result and tokens within logs.reports_per_sec; else an error reply, nothing recorded. */
static bool report_allowed(AjBroker *b, Conn *c, json_t *id)
{
        AjRateLimit *rl = &b->report_rl;
        if (rl->per_sec <= 0 || aj_ratelimit_allow(rl, b->now_ns()))
                return true;
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "too many tool_result and tokens reports (at most %.0f per second after a burst of %.0f): "
                 "not recorded, nothing counted; send it again later",
                 rl->per_sec, rl->burst);
        queue_error(c, id, AJ_BROKER_E_RATE_LIMITED, msg);
        return false;
}

/* The reports refused since the last recorded one, into that one's event. */
static json_t *add_reports_suppressed(AjBroker *b, json_t *ev)
{
        uint64_t n = b->report_rl.suppressed - b->reports_suppressed_told;
        if (!ev || n == 0)
                return ev;
        if (json_object_set_new(ev, "suppressed", json_integer((json_int_t)n)) < 0) {
                json_decref(ev);
                return NULL;
        }
        return ev;
}

static void reports_suppressed_recorded(AjBroker *b)
{
        b->reports_suppressed_told = b->report_rl.suppressed;
}

void aj_broker_set_report_rate(AjBroker *b, uint64_t per_sec)
{
        aj_ratelimit_init(&b->report_rl, 10.0 * (double)per_sec, (double)per_sec);
}

uint64_t aj_broker_reports_suppressed(const AjBroker *b)
{
        return b->report_rl.suppressed;
}

/* ---- request validation ---- */

/* A short printable rendering of an untrusted string for messages. */
static const char *shown(const char *s, char *buf, size_t size)
{
        size_t j = 0;
        for (size_t i = 0; s[i] && j + 4 < size; i++) {
                if (i == 64) {
                        memcpy(buf + j, "...", 3);
                        j += 3;
                        break;
                }
                unsigned char ch = (unsigned char)s[i];
                buf[j++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        buf[j] = 0;
        return buf;
}
#define SHOWN(s) shown((s), (char[80]){}, 80)

static bool is_name(const char *s, size_t len, size_t max)
{
        if (len == 0 || len > max || strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

/* Unknown fields are errors: a misspelt field must not be silently ignored. */
static const char *unknown_field(json_t *req, const char *const *allowed)
{
        const char *key;
        json_t *v;
        json_object_foreach(req, key, v) {
                const char *const *a = allowed;
                while (*a && !streq(*a, key))
                        a++;
                if (!*a)
                        return key;
        }
        return NULL;
}

/* A required (or, with optional, possibly absent) name field; NULL after an error reply. */
static const char *get_name(AjBroker *b, Conn *c, json_t *req, json_t *id, const char *field, size_t max,
                            bool optional, bool *ret_missing)
{
        json_t *v = json_object_get(req, field);
        if (!v) {
                if (optional) {
                        *ret_missing = true;
                        return NULL;
                }
                reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"", field);
                return NULL;
        }
        if (!json_is_string(v) || !is_name(json_string_value(v), json_string_length(v), max)) {
                reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                            "field \"%s\": expected a string of 1 to %zu characters without spaces or control "
                            "characters",
                            field, max);
                return NULL;
        }
        return json_string_value(v);
}

/* 1: got it, 0: absent (optional), -1: error replied. */
static int get_count(AjBroker *b, Conn *c, json_t *req, json_t *id, const char *field, bool optional, uint64_t *ret)
{
        json_t *v = json_object_get(req, field);
        if (!v) {
                if (optional)
                        return 0;
                reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"", field);
                return -1;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > AJ_BROKER_MAX_TOKENS) {
                reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "field \"%s\": expected an integer from 0 to %llu",
                            field, (unsigned long long)AJ_BROKER_MAX_TOKENS);
                return -1;
        }
        *ret = (uint64_t)json_integer_value(v);
        return 1;
}

static int check_fields(AjBroker *b, Conn *c, json_t *req, json_t *id, const char *op, const char *const *allowed)
{
        const char *bad = unknown_field(req, allowed);
        if (!bad)
                return 0;
        reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "unknown field \"%s\" for op \"%s\"", SHOWN(bad), op);
        return -1;
}

static double cap_value(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? (double)v / AJ_PUSD_PER_USD : (double)v;
}

static json_t *cap_json(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? json_real(cap_value(cap, v)) : json_integer((json_int_t)v);
}

/* Adds the breach fields of `d` to an event or a reply. */
static int add_breach(json_t *o, const AjMeterDecision *d)
{
        if (d->verdict == AJ_VERDICT_ALLOW)
                return 0;
        if (json_object_set_new(o, AJ_BROKER_F_REASON, json_string(d->reason)) < 0)
                return -ENOMEM;
        if (d->verdict != AJ_VERDICT_BREACH)
                return 0;
        if (json_object_set_new(o, AJ_BROKER_F_CAP, json_string(aj_cap_name(d->cap))) < 0 ||
            json_object_set_new(o, AJ_BROKER_F_LIMIT, cap_json(d->cap, d->limit)) < 0 ||
            json_object_set_new(o, AJ_BROKER_F_VALUE, cap_json(d->cap, d->value)) < 0)
                return -ENOMEM;
        return 0;
}

/* The reply to a metered request: the verdict, the reason and breach fields of `d` (may
 * be NULL), and usage against the caps that are set. NULL without memory. */
static json_t *verdict_reply(AjBroker *b, json_t *id, const char *verdict, const AjMeterDecision *d)
{
        json_t *reply = envelope(id, true);
        if (reply && (json_object_set_new(reply, AJ_BROKER_F_VERDICT, json_string(verdict)) < 0 ||
                      (d && add_breach(reply, d) < 0) ||
                      json_object_set_new(reply, AJ_BROKER_F_USAGE, aj_meter_to_json(b->meter, b->now_ns(), true)) < 0)) {
                json_decref(reply);
                reply = NULL;
        }
        return reply;
}

/* Adds `value` (consumed) to `reply` (consumed too, and NULL, on failure). */
static json_t *reply_set(json_t *reply, const char *key, json_t *value)
{
        if (reply && json_object_set_new(reply, key, value) < 0) {
                json_decref(reply);
                return NULL;
        }
        if (!reply)
                json_decref(value);
        return reply;
}

static void report_breach(AjBroker *b, const AjMeterDecision *d, json_t *req)
{
        if (d->verdict != AJ_VERDICT_BREACH || !b->hooks || !b->hooks->breach)
                return;
        AjBreach br = {
                .cap = aj_cap_name(d->cap),
                .limit = cap_value(d->cap, d->limit),
                .value = cap_value(d->cap, d->value),
                .request = req,
        };
        b->hooks->breach(b->hooks->userdata, &br);
}

/* The arguments as logged: the value itself when small, else a truncated canonical text. */
static int add_logged_args(json_t *ev, json_t *args, const char *canon)
{
        size_t len = strlen(canon);
        if (len <= AJ_BROKER_MAX_LOGGED_ARGS)
                return json_object_set(ev, AJ_BROKER_F_TOOL_ARGS, args) < 0 ? -ENOMEM : 0;
        size_t cut = AJ_BROKER_MAX_LOGGED_ARGS;
        /* Cut at a character boundary: the text is UTF-8 and must stay valid. */
        while (cut > 0 && ((unsigned char)canon[cut] & 0xc0) == 0x80)
                cut--;
        if (json_object_set_new(ev, "arguments_truncated", json_stringn(canon, cut)) < 0 ||
            json_object_set_new(ev, "arguments_size", json_integer((json_int_t)len)) < 0)
                return -ENOMEM;
        return 0;
}

static const char *verdict_name(AjVerdict v, bool tool)
{
        switch (v) {
        case AJ_VERDICT_ALLOW:
                return tool ? AJ_BROKER_ALLOW : AJ_BROKER_OK;
        case AJ_VERDICT_DENY:
                return AJ_BROKER_DENY;
        default:
                return AJ_BROKER_BREACH;
        }
}

static void reply_unrecorded(AjBroker *b, Conn *c, json_t *id, int r)
{
        reply_error(b, c, id, AJ_BROKER_E_INTERNAL, "the event could not be recorded (%s); nothing was counted",
                    strerror(r < 0 ? -r : EIO));
}

/* ---- tool calls in flight ---- */

static InFlight *in_flight_find(AjBroker *b, const char *call_id, bool awaiting)
{
        for (size_t i = 0; b->n_in_flight > 0 && i < MAX_IN_FLIGHT; i++)
                if (b->in_flight[i].used && b->in_flight[i].awaiting == awaiting &&
                    streq(b->in_flight[i].call_id, call_id))
                        return &b->in_flight[i];
        return NULL;
}

/* A slot for a new call: a free one, or the oldest allowed call, let go. NULL without
 * memory (then the call is simply not listed) or when every slot is held (not possible
 * while MAX_AWAITING < MAX_IN_FLIGHT). */
static InFlight *in_flight_add(AjBroker *b, const char *call_id, const char *name, const char *digest)
{
        if (!b->in_flight && !(b->in_flight = calloc(MAX_IN_FLIGHT, sizeof(InFlight))))
                return NULL;
        InFlight *slot = in_flight_find(b, call_id, false); /* a reused call id: the newer call */
        for (size_t i = 0; !slot && i < MAX_IN_FLIGHT; i++)
                if (!b->in_flight[i].used)
                        slot = &b->in_flight[i];
        if (!slot) {
                for (size_t i = 0; i < MAX_IN_FLIGHT; i++)
                        if (!b->in_flight[i].awaiting && (!slot || b->in_flight[i].order < slot->order))
                                slot = &b->in_flight[i];
                if (!slot)
                        return NULL;
                b->in_flight_dropped++;
                b->n_in_flight--;
        }
        if (!slot->used)
                b->n_in_flight++;
        *slot = (InFlight){ .used = true, .order = ++b->in_flight_order, .since_ns = aj_now_realtime_ns() };
        snprintf(slot->call_id, sizeof(slot->call_id), "%s", call_id);
        snprintf(slot->name, sizeof(slot->name), "%s", name);
        memcpy(slot->digest, digest, sizeof(slot->digest));
        return slot;
}

static void in_flight_remove(AjBroker *b, InFlight *f)
{
        aj_loop_timer_stop(&f->timer);
        if (f->awaiting) {
                b->n_awaiting--;
                if (f->conn)
                        aj_line_conn_hold(f->conn, -1);
                json_decref(f->req_id);
        }
        *f = (InFlight){ 0 };
        b->n_in_flight--;
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

static bool needs_approval(const AjBroker *b, const char *name)
{
        for (size_t i = 0; i < b->n_approval_globs; i++)
                if (aj_glob_match(b->approval_globs[i], name))
                        return true;
        return false;
}

/* "15m", "90s": how long a call may wait, for messages. */
static const char *duration_text(uint64_t ns, char *buf, size_t size)
{
        uint64_t s = ns / 1000000000ull;
        if (s >= 60 && s % 60 == 0)
                snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
        else
                snprintf(buf, size, "%llus", (unsigned long long)s);
        return buf;
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
        int r = emit_pair(b, "approval",
                          json_pack("{s:s, s:s, s:s, s:s, s:s*}", AJ_BROKER_F_TOOL_NAME, f->name,
                                    AJ_BROKER_F_TOOL_CALL_ID, f->call_id, "decision", decision, "by", by,
                                    AJ_BROKER_F_REASON, streq(decision, "timeout") ? NULL : reason),
                          "tool.verdict",
                          json_pack("{s:s, s:s, s:s, s:s*}", AJ_BROKER_F_TOOL_NAME, f->name, AJ_BROKER_F_TOOL_CALL_ID,
                                    f->call_id, AJ_BROKER_F_VERDICT, approve ? AJ_BROKER_ALLOW : AJ_BROKER_DENY,
                                    AJ_BROKER_F_REASON, approve ? NULL : text));
        /* The call happens now: that is when the rate window counts it. */
        f->res.now_ns = b->now_ns();
        aj_meter_settle(b->meter, &f->res, approve && r >= 0);

        Conn *c = f->conn;
        json_t *id = json_incref(f->req_id);
        json_t *reply = NULL;
        if (r >= 0) {
                reply = verdict_reply(b, id, approve ? AJ_BROKER_ALLOW : AJ_BROKER_DENY, NULL);
                reply = reply_set(reply, AJ_BROKER_F_TOOL_CALL_ID, json_string(f->call_id));
                if (!approve)
                        reply = reply_set(reply, AJ_BROKER_F_REASON, json_string(text));
                reply = reply_set(reply, "approval", json_pack("{s:s, s:s}", "decision", decision, "by", by));
        }
        if (approve && r >= 0) {
                /* Now an allowed call like any other, until its tool_result. */
                f->awaiting = false;
                aj_loop_timer_stop(&f->timer);
                b->n_awaiting--;
                if (c)
                        aj_line_conn_hold(c, -1);
                json_decref(f->req_id);
                f->req_id = NULL;
                f->conn = NULL;
        } else {
                in_flight_remove(b, f);
        }
        if (c) {
                if (r < 0)
                        reply_unrecorded(b, c, id, r);
                else
                        conn_reply(c, reply);
                aj_line_conn_flush(c); /* c may be gone after */
        } else {
                json_decref(reply);
        }
        json_decref(id);
}

/* The caller of these held calls went away (or the run ended): nothing to answer. */
static void cancel_held(AjBroker *b, Conn *c, const char *reason)
{
        for (size_t i = 0; aj_line_conn_held(c) > 0 && i < MAX_IN_FLIGHT; i++) {
                InFlight *f = &b->in_flight[i];
                if (!f->used || !f->awaiting || f->conn != c)
                        continue;
                (void)emit(b, "approval",
                           json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, f->name, AJ_BROKER_F_TOOL_CALL_ID,
                                     f->call_id, "decision", "cancelled", AJ_BROKER_F_REASON, reason));
                aj_meter_settle(b->meter, &f->res, false);
                in_flight_remove(b, f);
        }
}

void aj_broker_cancel_held(AjBroker *b)
{
        for (Conn *c = aj_line_server_first(b->server); c && b->n_awaiting > 0; c = aj_line_conn_next(c))
                if (aj_line_conn_held(c) > 0)
                        cancel_held(b, c, "the run ended");
}

/* A held call's deadline passed: denied, its caller answered. */
static void on_held_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)now_ns;
        AjBroker *b = userdata;
        InFlight *f = (InFlight *)((char *)t - offsetof(InFlight, timer));
        char d[32];
        finish_held(b, f, false, "timeout", "timeout", duration_text(b->approval_timeout_ns, d, sizeof(d)));
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
                     const char *reason, json_t **ret_call, char **ret_error)
{
        InFlight *f = in_flight_find(b, call_id, true);
        if (!f) {
                if (ret_error && asprintf(ret_error, "no call \"%.128s\" is awaiting approval", call_id) < 0)
                        *ret_error = NULL;
                return -ENOENT;
        }
        if (digest && !streq(digest, f->digest)) {
                if (ret_error &&
                    asprintf(ret_error, "call \"%s\" has arguments_sha256 %s, not %.64s: not the call reviewed",
                             f->call_id, f->digest, digest) < 0)
                        *ret_error = NULL;
                return -ESTALE;
        }
        if (ret_call)
                *ret_call = json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_CALL_ID, f->call_id,
                                      AJ_BROKER_F_TOOL_NAME, f->name, "arguments_sha256", f->digest, "decision",
                                      approve ? "approved" : "denied");
        finish_held(b, f, approve, approve ? "approved" : "denied", by, reason);
        return 0;
}

/* ---- operations ---- */

/* The call waits for an operator: its request and approval.requested are recorded, its
 * reservation kept; the reply comes from finish_held(). `ev` (tool.request) is consumed. */
static void hold(AjBroker *b, Conn *c, json_t *id, const char *name, const char *call_id, const char *digest,
                 AjMeterReservation *res, json_t *ev, json_t *args, const char *canon)
{
        InFlight *f = in_flight_add(b, call_id, name, digest);
        if (!f) {
                json_decref(ev);
                aj_meter_settle(b->meter, res, false);
                return reply_unrecorded(b, c, id, -ENOMEM);
        }
        char t[32];
        aj_loop_timer_init(b->loop, &f->timer, on_held_timeout, b);
        /* Armed before the events: a call that could never time out is not held. */
        int r = aj_loop_timer_set(&f->timer, b->now_ns() + b->approval_timeout_ns);
        if (r < 0)
                json_decref(ev);
        else
                r = emit_pair(b, "tool.request", ev, "approval.requested",
                              json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name, AJ_BROKER_F_TOOL_CALL_ID,
                                        call_id, "arguments_sha256", digest, "timeout",
                                        duration_text(b->approval_timeout_ns, t, sizeof(t))));
        if (r < 0) {
                in_flight_remove(b, f);
                aj_meter_settle(b->meter, res, false);
                return reply_unrecorded(b, c, id, r);
        }
        f->awaiting = true;
        f->conn = c;
        f->req_id = json_incref(id);
        f->res = *res;
        aj_line_conn_hold(c, +1);
        b->n_awaiting++;
        if (b->hooks && b->hooks->approval_requested) {
                json_auto_t *call = json_pack("{s:s, s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name,
                                              AJ_BROKER_F_TOOL_CALL_ID, call_id, "arguments_sha256", digest, "timeout",
                                              duration_text(b->approval_timeout_ns, t, sizeof(t)));
                if (call && add_logged_args(call, args, canon) >= 0)
                        b->hooks->approval_requested(b->hooks->userdata, call);
        }
}

static void op_tool(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_TOOL_NAME,
                                                AJ_BROKER_F_TOOL_CALL_ID, AJ_BROKER_F_TOOL_ARGS, NULL };
        bool no_call_id = false, unused = false;
        char generated[32], digest[AJ_SHA256_HEX_SIZE];

        if (check_fields(b, c, req, id, AJ_BROKER_OP_TOOL, allowed) < 0)
                return;
        const char *name = get_name(b, c, req, id, AJ_BROKER_F_TOOL_NAME, AJ_BROKER_MAX_NAME, false, &unused);
        if (!name)
                return;
        const char *call_id = get_name(b, c, req, id, AJ_BROKER_F_TOOL_CALL_ID, AJ_BROKER_MAX_ID, true, &no_call_id);
        if (!call_id && !no_call_id)
                return;
        if (!call_id) {
                snprintf(generated, sizeof(generated), "call-%llu", (unsigned long long)++b->next_call);
                call_id = generated;
        }
        json_t *args = json_object_get(req, AJ_BROKER_F_TOOL_ARGS);
        _cleanup_(json_decrefp) json_t *null_args = args ? NULL : json_null();
        if (!args)
                args = null_args;
        _cleanup_free_ char *canon = NULL;
        int r = aj_meter_args_canon(args, &canon, digest);
        if (r < 0)
                return reply_unrecorded(b, c, id, r);

        AjMeterReservation res;
        AjMeterDecision d;
        r = aj_meter_reserve_tool(b->meter, name, digest, b->now_ns(), &res, &d);
        if (r < 0)
                return reply_unrecorded(b, c, id, r);

        json_t *ev = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name, AJ_BROKER_F_TOOL_CALL_ID, call_id,
                               "arguments_sha256", digest);
        if (ev && add_logged_args(ev, args, canon) < 0) {
                json_decref(ev);
                ev = NULL;
        }
        if (d.verdict == AJ_VERDICT_ALLOW && needs_approval(b, name)) {
                if (b->n_awaiting >= MAX_AWAITING || in_flight_find(b, call_id, true)) {
                        aj_meter_settle(b->meter, &res, false);
                        d.verdict = AJ_VERDICT_DENY;
                        if (b->n_awaiting >= MAX_AWAITING)
                                snprintf(d.reason, sizeof(d.reason), "too many calls awaiting approval (at most %d)",
                                         MAX_AWAITING);
                        else
                                snprintf(d.reason, sizeof(d.reason), "call id \"%.128s\" is already awaiting approval",
                                         call_id);
                } else {
                        return hold(b, c, id, name, call_id, digest, &res, ev, args, canon);
                }
        }
        /* Both events in one write(2), still before the reply (and before the verdict
         * counts: a failed write releases the reservation). */
        json_t *verdict = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name, AJ_BROKER_F_TOOL_CALL_ID, call_id,
                                    AJ_BROKER_F_VERDICT, verdict_name(d.verdict, true));
        if (verdict && add_breach(verdict, &d) < 0) {
                json_decref(verdict);
                verdict = NULL;
        }
        r = emit_pair(b, "tool.request", ev, "tool.verdict", verdict);
        aj_meter_settle(b->meter, &res, r >= 0);
        if (r < 0)
                return reply_unrecorded(b, c, id, r);
        if (d.verdict == AJ_VERDICT_ALLOW)
                in_flight_add(b, call_id, name, digest);
        report_breach(b, &d, req);

        json_t *reply = verdict_reply(b, id, verdict_name(d.verdict, true), &d);
        conn_reply(c, reply_set(reply, AJ_BROKER_F_TOOL_CALL_ID, json_string(call_id)));
}

static void op_tool_result(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_TOOL_CALL_ID,
                                                AJ_BROKER_F_STATUS, AJ_BROKER_F_UNDO, NULL };
        bool unused = false;

        if (check_fields(b, c, req, id, AJ_BROKER_OP_TOOL_RESULT, allowed) < 0)
                return;
        const char *call_id = get_name(b, c, req, id, AJ_BROKER_F_TOOL_CALL_ID, AJ_BROKER_MAX_ID, false, &unused);
        if (!call_id)
                return;
        json_t *status = json_object_get(req, AJ_BROKER_F_STATUS);
        if (!status)
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"", AJ_BROKER_F_STATUS);
        if (!json_is_string(status) ||
            (!streq(json_string_value(status), "ok") && !streq(json_string_value(status), "error")))
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "field \"%s\": expected \"ok\" or \"error\"",
                                   AJ_BROKER_F_STATUS);
        json_t *undo = json_object_get(req, AJ_BROKER_F_UNDO);
        if (undo && !json_is_object(undo))
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                   "field \"%s\": expected an object describing how to reverse the call",
                                   AJ_BROKER_F_UNDO);

        if (!report_allowed(b, c, id))
                return;
        /* The undo record is kept whole: it is the rollback journal (the line limit bounds it). */
        json_t *ev = json_pack("{s:s, s:O, s:O?}", AJ_BROKER_F_TOOL_CALL_ID, call_id, AJ_BROKER_F_STATUS, status,
                               AJ_BROKER_F_UNDO, undo);
        int r = emit(b, "tool.result", add_reports_suppressed(b, ev));
        if (r < 0)
                return reply_unrecorded(b, c, id, r);
        reports_suppressed_recorded(b);
        InFlight *f = in_flight_find(b, call_id, false);
        if (f)
                in_flight_remove(b, f);
        conn_reply(c, envelope(id, true));
}

static void op_tokens(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_MODEL,
                                                AJ_BROKER_F_INPUT_TOKENS, AJ_BROKER_F_OUTPUT_TOKENS,
                                                AJ_BROKER_F_CACHED_TOKENS, NULL };
        bool unused = false;
        uint64_t input, output, cached = 0;

        if (check_fields(b, c, req, id, AJ_BROKER_OP_TOKENS, allowed) < 0)
                return;
        const char *model = get_name(b, c, req, id, AJ_BROKER_F_MODEL, AJ_BROKER_MAX_NAME, false, &unused);
        if (!model || get_count(b, c, req, id, AJ_BROKER_F_INPUT_TOKENS, false, &input) < 0 ||
            get_count(b, c, req, id, AJ_BROKER_F_OUTPUT_TOKENS, false, &output) < 0 ||
            get_count(b, c, req, id, AJ_BROKER_F_CACHED_TOKENS, true, &cached) < 0)
                return;
        if (cached > input)
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                   "field \"%s\": must not exceed \"%s\" (cached input tokens are part of the input)",
                                   AJ_BROKER_F_CACHED_TOKENS, AJ_BROKER_F_INPUT_TOKENS);

        if (!report_allowed(b, c, id))
                return;
        AjMeterReservation res;
        AjMeterDecision d;
        int r = aj_meter_reserve_tokens(b->meter, model, input, output, cached, &res, &d);
        if (r < 0)
                return reply_unrecorded(b, c, id, r);

        /* Totals as they stand once this request is settled (a breach commits nothing). */
        static const AjCap total_caps[] = { AJ_CAP_TOKENS, AJ_CAP_INPUT_TOKENS, AJ_CAP_OUTPUT_TOKENS, AJ_CAP_COST_USD };
        json_t *totals = json_object();
        for (size_t i = 0; totals && i < ARRAY_SIZE(total_caps); i++) {
                AjCap cap = total_caps[i];
                uint64_t v = aj_meter_used(b->meter, cap, 0) + res.amount[cap];
                if (json_object_set_new(totals, aj_cap_name(cap), cap_json(cap, v)) < 0) {
                        json_decref(totals);
                        totals = NULL;
                }
        }
        const char *price = d.price_known ? "known" : "unknown";
        json_t *ev = json_pack("{s:s, s:I, s:I, s:I, s:f, s:s, s:s, s:o}", AJ_BROKER_F_MODEL, model,
                               AJ_BROKER_F_INPUT_TOKENS, (json_int_t)input, AJ_BROKER_F_OUTPUT_TOKENS,
                               (json_int_t)output, AJ_BROKER_F_CACHED_TOKENS, (json_int_t)cached, AJ_BROKER_F_COST,
                               cap_value(AJ_CAP_COST_USD, d.cost_pusd), AJ_BROKER_F_PRICE, price,
                               AJ_BROKER_F_VERDICT, verdict_name(d.verdict, false), "totals", totals);
        if (ev && add_breach(ev, &d) < 0) {
                json_decref(ev);
                ev = NULL;
        }
        r = emit(b, "tokens", add_reports_suppressed(b, ev));
        aj_meter_settle(b->meter, &res, r >= 0);
        if (r < 0)
                return reply_unrecorded(b, c, id, r);
        reports_suppressed_recorded(b);
        report_breach(b, &d, req);

        json_t *reply = verdict_reply(b, id, verdict_name(d.verdict, false), &d);
        reply = reply_set(reply, AJ_BROKER_F_COST, json_real(cap_value(AJ_CAP_COST_USD, d.cost_pusd)));
        conn_reply(c, reply_set(reply, AJ_BROKER_F_PRICE, json_string(price)));
}

static void op_usage(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, NULL };
        if (check_fields(b, c, req, id, AJ_BROKER_OP_USAGE, allowed) < 0)
                return;
        json_t *reply = envelope(id, true);
        if (reply &&
            json_object_set_new(reply, AJ_BROKER_F_USAGE, aj_meter_to_json(b->meter, b->now_ns(), false)) < 0) {
                json_decref(reply);
                reply = NULL;
        }
        conn_reply(c, reply);
}

static void handle_line(AjBroker *b, Conn *c, const char *line, size_t len)
{
        json_error_t je;

        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (strspn(line, " \t\r") >= len)
                return; /* blank lines are allowed between requests */
        _cleanup_(json_decrefp) json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        if (!req)
                return reply_error(b, c, NULL, AJ_BROKER_E_BAD_JSON, "invalid JSON at column %d: %s", je.column,
                                   je.text);
        if (!json_is_object(req))
                return reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST, "a request must be a JSON object");

        json_t *id = json_object_get(req, AJ_BROKER_F_ID);
        if (!id)
                return reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST, "missing field \"id\"");
        if (!(json_is_integer(id) || (json_is_string(id) && json_string_length(id) >= 1 &&
                                      json_string_length(id) <= AJ_BROKER_MAX_ID &&
                                      strlen(json_string_value(id)) == json_string_length(id))))
                return reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST,
                                   "field \"id\": expected an integer or a string of 1 to %d bytes", AJ_BROKER_MAX_ID);

        json_t *v = json_object_get(req, AJ_BROKER_F_V);
        if (!v)
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"v\" (the protocol version, %d)",
                                   AJ_BROKER_VERSION);
        if (!json_is_integer(v) || json_integer_value(v) != AJ_BROKER_VERSION)
                return reply_error(b, c, id, AJ_BROKER_E_BAD_VERSION,
                                   "field \"v\": unsupported protocol version (this broker speaks %d)",
                                   AJ_BROKER_VERSION);

        json_t *op = json_object_get(req, AJ_BROKER_F_OP);
        if (!op)
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"op\"");
        if (!json_is_string(op))
                return reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "field \"op\": expected a string");
        const char *o = json_string_value(op);
        if (streq(o, AJ_BROKER_OP_TOOL))
                op_tool(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_TOOL_RESULT))
                op_tool_result(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_TOKENS))
                op_tokens(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_USAGE))
                op_usage(b, c, req, id);
        else
                reply_error(b, c, id, AJ_BROKER_E_UNKNOWN_OP,
                            "field \"op\": unknown operation \"%s\" (expected tool, tool_result, tokens or usage)",
                            SHOWN(o));
}

/* ---- the server ---- */

static void on_line(void *userdata, AjLineConn *c, const char *line, size_t len)
{
        handle_line(userdata, c, line, len);
}

static void on_too_long(void *userdata, AjLineConn *c)
{
        reply_error(userdata, c, NULL, AJ_BROKER_E_LINE_TOO_LONG,
                    "request line longer than %d bytes; discarded up to the next newline", AJ_BROKER_MAX_LINE);
}

static void on_refuse(void *userdata, int fd, int err)
{
        AjBroker *b = userdata;
        if (err != EBUSY)
                return;
        char line[256];
        int len = snprintf(line, sizeof(line),
                           "{\"id\":null,\"v\":%d,\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":"
                           "\"too many connections (at most %d)\"}}\n",
                           AJ_BROKER_VERSION, AJ_BROKER_E_BUSY, AJ_BROKER_MAX_CONNECTIONS);
        /* Best effort: a fresh socket always has room for one short line. */
        (void)!send(fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (error_event_allowed(b))
                (void)emit(b, "broker.error",
                           json_pack("{s:s, s:s}", "code", AJ_BROKER_E_BUSY, "message", "too many connections"));
}

static void on_closed(void *userdata, AjLineConn *c)
{
        AjBroker *b = userdata;
        if (aj_line_conn_held(c) > 0)
                cancel_held(b, c, b->closing ? "the run ended" : "the caller disconnected");
}

int aj_broker_dispatch(AjBroker *b)
{
        int r = aj_loop_dispatch(b->loop, 0);
        return r < 0 ? r : 0;
}

size_t aj_broker_connections(const AjBroker *b)
{
        return aj_line_server_connections(b->server);
}

int aj_broker_fd(AjBroker *b)
{
        return b->loop_fd;
}

void aj_broker_set_clock(AjBroker *b, uint64_t (*now_ns)(void))
{
        b->now_ns = now_ns ? now_ns : aj_now_monotonic_ns;
        aj_loop_set_clock(b->loop, now_ns);
}

int aj_broker_new(const char *socket_path, uid_t owner_uid, gid_t owner_gid, AjMeter *meter, const AjHooks *hooks,
                  AjBroker **ret)
{
        static const AjLineServerLimits limits = {
                .max_line = AJ_BROKER_MAX_LINE,
                .max_output = AJ_BROKER_MAX_OUTPUT,
                .max_connections = AJ_BROKER_MAX_CONNECTIONS,
                .accepts_per_wake = MAX_ACCEPTS_PER_DISPATCH,
                .discard_long_lines = true,
        };
        static const AjLineServerOps ops = {
                .refuse = on_refuse,
                .line = on_line,
                .too_long = on_too_long,
                .closed = on_closed,
        };
        int listen_fd, r;

        AjBroker *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->meter = meter;
        b->hooks = hooks;
        b->now_ns = aj_now_monotonic_ns;
        b->approval_timeout_ns = AJ_BROKER_APPROVAL_TIMEOUT_NS;
        r = aj_loop_new(&b->loop);
        if (r < 0) {
                free(b);
                return r;
        }
        b->loop_fd = aj_loop_fd(b->loop);
        if (b->loop_fd < 0) {
                r = b->loop_fd;
                goto fail;
        }
        r = aj_line_server_listen(socket_path, owner_uid, owner_gid, 128, &listen_fd);
        if (r < 0)
                goto fail;
        b->path = strdup(socket_path);
        if (!b->path) {
                close(listen_fd);
                unlink(socket_path);
                r = -ENOMEM;
                goto fail;
        }
        r = aj_line_server_new(b->loop, listen_fd, &limits, &ops, b, &b->server);
        if (r < 0)
                goto fail;
        *ret = b;
        return 0;
fail:
        aj_broker_free(b);
        return r;
}

void aj_broker_free(AjBroker *b)
{
        if (!b)
                return;
        b->closing = true;
        aj_line_server_free(b->server);
        aj_strv_free(b->approval_globs);
        if (b->path)
                unlink(b->path);
        free(b->path);
        free(b->in_flight);
        aj_loop_free(b->loop);
        free(b);
}
