/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's events and replies (see broker-internal.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker-internal.h"
#include "events.h"
#include "util/json-fast.h"

/* ---- replies ---- */

void broker_conn_reply(Conn *c, json_t *reply)
{
        if (!reply) {
                aj_line_conn_kill(c);
                return;
        }
        /* Most replies fit here, and need no allocation. */
        char small[1024];
        ssize_t n = aj_json_dump_fast(reply, small, sizeof(small), false, 12);
        if (n >= 0 && (size_t)n <= sizeof(small)) {
                json_decref(reply);
                aj_line_conn_queue(c, small, (size_t)n);
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

int broker_emit(AjBroker *b, const char *type, json_t *fields)
{
        if (!fields)
                return -ENOMEM;
        if (!b->hooks || !b->hooks->emit) {
                json_decref(fields);
                return 0;
        }
        return b->hooks->emit(b->hooks->userdata, type, fields);
}

int broker_record(AjBroker *b, const char *type, json_t *fields)
{
        if (!fields)
                return -ENOMEM;
        if (!b->hooks || !b->hooks->record)
                return broker_emit(b, type, fields);
        return b->hooks->record(b->hooks->userdata, type, fields);
}

/* One event of a pair: its fields as jansson values, or (text != NULL) already printed. */
typedef struct {
        const char *type;
        json_t *fields;
        const char *text;
        size_t len;
} PairEvent;

static int pair_one(AjBroker *b, bool own, PairEvent e)
{
        if (e.text)
                return b->hooks->emit_text(b->hooks->userdata, e.type, e.text, e.len);
        return own ? broker_record(b, e.type, e.fields) : broker_emit(b, e.type, e.fields);
}

static int pair(AjBroker *b, bool own, PairEvent e1, PairEvent e2)
{
        bool batched = b->hooks && b->hooks->batch_begin && b->hooks->batch_end;
        if (batched)
                b->hooks->batch_begin(b->hooks->userdata);
        int r = pair_one(b, own, e1);
        if (r >= 0)
                r = pair_one(b, own, e2);
        else
                json_decref(e2.fields);
        if (batched) {
                int q = b->hooks->batch_end(b->hooks->userdata);
                if (r >= 0)
                        r = q;
        }
        return r;
}

/* A request's two events together: one write(2) when the supervisor batches, still
 * before the reply. The second is dropped if the first could not be recorded. Both
 * `fields` are consumed. */
int broker_emit_pair(AjBroker *b, const char *type1, json_t *fields1, const char *type2, json_t *fields2)
{
        return pair(b, false, (PairEvent){ .type = type1, .fields = fields1 },
                    (PairEvent){ .type = type2, .fields = fields2 });
}

int broker_emit_text_pair(AjBroker *b, const char *type1, const char *text1, size_t len1, const char *type2,
                          const char *text2, size_t len2)
{
        return pair(b, false, (PairEvent){ .type = type1, .text = text1, .len = len1 },
                    (PairEvent){ .type = type2, .text = text2, .len = len2 });
}

int broker_record_pair(AjBroker *b, const char *type1, json_t *fields1, const char *type2, json_t *fields2)
{
        return pair(b, true, (PairEvent){ .type = type1, .fields = fields1 },
                    (PairEvent){ .type = type2, .fields = fields2 });
}

/* broker.error events: garbage from a client must not fill the event log. */
bool broker_error_event_allowed(AjBroker *b) { return aj_ratelimit_allow(&b->error_rl, b->now_ns()); }

json_t *broker_envelope(json_t *id, bool ok)
{
        return json_pack("{s:O?, s:i, s:b}", AJ_BROKER_F_ID, id, AJ_BROKER_F_V, AJ_BROKER_VERSION, AJ_BROKER_F_OK,
                         (int)ok);
}

static void queue_error(Conn *c, json_t *id, const char *code, const char *msg)
{
        json_t *r = broker_envelope(id, false);
        if (r && json_object_set_new(r, AJ_BROKER_F_ERROR, json_pack("{s:s, s:s}", "code", code, "message", msg)) < 0) {
                json_decref(r);
                r = NULL;
        }
        broker_conn_reply(c, r);
}

/* Records broker.error (rate limited) and queues the error reply. `id` may be NULL. */
_printf_(5, 6) void broker_reply_error(AjBroker *b, Conn *c, json_t *id, const char *code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (broker_error_event_allowed(b)) {
                json_t *f = json_pack("{s:s, s:s, s:O?}", "code", code, "message", msg, "id", id);
                if (f && b->error_rl.suppressed) {
                        json_object_set_new(f, "suppressed", json_integer((json_int_t)b->error_rl.suppressed));
                        b->error_rl.suppressed = 0;
                }
                (void)broker_emit(b, "broker.error", f); /* the reply says what went wrong either way */
        }
        queue_error(c, id, code, msg);
}

/* tool_result and tokens within logs.reports_per_sec; else an error reply, nothing recorded. */
bool broker_report_allowed(AjBroker *b, Conn *c, json_t *id)
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
json_t *broker_add_reports_suppressed(AjBroker *b, json_t *ev)
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

void broker_reports_suppressed_recorded(AjBroker *b) { b->reports_suppressed_told = b->report_rl.suppressed; }

void aj_broker_set_report_rate(AjBroker *b, uint64_t per_sec)
{
        aj_ratelimit_init(&b->report_rl, 10.0 * (double)per_sec, (double)per_sec);
}

uint64_t aj_broker_reports_suppressed(const AjBroker *b) { return b->report_rl.suppressed; }

double broker_cap_value(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? (double)v / AJ_PUSD_PER_USD : (double)v;
}

json_t *broker_cap_json(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? json_real(broker_cap_value(cap, v)) : json_integer((json_int_t)v);
}

/* Adds the breach fields of `d` to an event or a reply. */
int broker_add_breach(json_t *o, const AjMeterDecision *d)
{
        if (d->verdict == AJ_VERDICT_ALLOW)
                return 0;
        if (json_object_set_new(o, AJ_BROKER_F_REASON, json_string(d->reason)) < 0)
                return -ENOMEM;
        if (d->verdict != AJ_VERDICT_BREACH)
                return 0;
        if (json_object_set_new(o, AJ_BROKER_F_CAP, json_string(aj_cap_name(d->cap))) < 0 ||
            json_object_set_new(o, AJ_BROKER_F_LIMIT, broker_cap_json(d->cap, d->limit)) < 0 ||
            json_object_set_new(o, AJ_BROKER_F_VALUE, broker_cap_json(d->cap, d->value)) < 0)
                return -ENOMEM;
        return 0;
}

/* The reply to a metered request: the verdict, the reason and breach fields of `d` (may
 * be NULL), and usage against the caps that are set. NULL without memory. */
json_t *broker_verdict_reply(AjBroker *b, json_t *id, const char *verdict, const AjMeterDecision *d)
{
        json_t *reply = broker_envelope(id, true);
        if (reply &&
            (json_object_set_new(reply, AJ_BROKER_F_VERDICT, json_string(verdict)) < 0 ||
             (d && broker_add_breach(reply, d) < 0) ||
             json_object_set_new(reply, AJ_BROKER_F_USAGE, aj_meter_to_json(b->meter, b->now_ns(), true)) < 0)) {
                json_decref(reply);
                reply = NULL;
        }
        return reply;
}

/* Adds `value` (consumed) to `reply` (consumed too, and NULL, on failure). */
json_t *broker_reply_set(json_t *reply, const char *key, json_t *value)
{
        if (reply && json_object_set_new(reply, key, value) < 0) {
                json_decref(reply);
                return NULL;
        }
        if (!reply)
                json_decref(value);
        return reply;
}

int broker_report_breach(AjBroker *b, const AjMeterDecision *d, json_t *req)
{
        if (d->verdict != AJ_VERDICT_BREACH || !b->hooks || !b->hooks->breach)
                return 0;
        /* The freeze, the incident and the alert follow the breaching request on disk, and
         * the breach's own records are written as it makes them. */
        bool was;
        int r = broker_ungroup(b, &was);
        if (r < 0) {
                broker_regroup(b, was);
                return r;
        }
        AjBreach br = {
                .cap = aj_cap_name(d->cap),
                .limit = broker_cap_value(d->cap, d->limit),
                .value = broker_cap_value(d->cap, d->value),
                .request = req,
                .reason = d->price_missing ? d->reason : NULL,
        };
        b->hooks->breach(b->hooks->userdata, &br);
        broker_regroup(b, was);
        return 0;
}

size_t broker_logged_args_cut(const char *canon, size_t len)
{
        if (len <= AJ_BROKER_MAX_LOGGED_ARGS)
                return len;
        size_t cut = AJ_BROKER_MAX_LOGGED_ARGS;
        /* Cut at a character boundary: the text is UTF-8 and must stay valid. */
        while (cut > 0 && ((unsigned char)canon[cut] & 0xc0) == 0x80)
                cut--;
        return cut;
}

/* The arguments as logged: the value itself when small, else a truncated canonical text. */
int broker_add_logged_args(json_t *ev, json_t *args, const char *canon)
{
        size_t len = strlen(canon), cut = broker_logged_args_cut(canon, len);
        if (cut == len)
                return json_object_set(ev, AJ_BROKER_F_TOOL_ARGS, args) < 0 ? -ENOMEM : 0;
        if (json_object_set_new(ev, "arguments_truncated", json_stringn(canon, cut)) < 0 ||
            json_object_set_new(ev, "arguments_size", json_integer((json_int_t)len)) < 0)
                return -ENOMEM;
        return 0;
}

const char *broker_verdict_name(AjVerdict v, bool tool)
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

void broker_reply_unrecorded(AjBroker *b, Conn *c, json_t *id, int r)
{
        broker_reply_error(b, c, id, AJ_BROKER_E_INTERNAL, "the event could not be recorded (%s); nothing was counted",
                           strerror(r < 0 ? -r : EIO));
}
