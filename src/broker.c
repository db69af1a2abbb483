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
 *
 * Group commit (when the hooks offer hold/commit): a dispatch holds the chain and corks
 * the replies, handles every ready connection, then writes all the events with one
 * write(2) and only then sends the replies; if that write fails, the replies that
 * depended on it are dropped and their connections closed (what was counted stays
 * counted: fail closed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker-internal.h"
#include "events.h"
#include "util/json-fast.h"
#include "util/json-flat.h"
#include "util/json-scan.h"
#include "util/parse.h"
#include "util/strv.h"

/* ---- request validation ---- */

/* A short printable rendering of an untrusted string for messages. */
static const char *shown(const char *s, char *buf, size_t size)
{
        buf[0] = 0;
        return aj_append_printable(buf, size, s, 64);
}
#define SHOWN(s) shown((s), (char[80]){}, 80)

/* Unknown fields are errors: a misspelt field must not be silently ignored. */
static const char *unknown_field(json_t *req, const char *const *allowed)
{
        const char *key;
        json_t *v;
        json_object_foreach (req, key, v) {
                const char *const *a = allowed;
                while (*a && !streq(*a, key))
                        a++;
                if (!*a)
                        return key;
        }
        return NULL;
}

/* A required (or, with optional, possibly absent) name field; NULL after an error reply. */
static const char *get_name(AjBroker *b, Conn *c, json_t *req, json_t *id, const char *field, size_t max, bool optional,
                            bool *ret_missing)
{
        json_t *v = json_object_get(req, field);
        if (!v) {
                if (optional) {
                        *ret_missing = true;
                        return NULL;
                }
                broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"", field);
                return NULL;
        }
        if (!json_is_string(v) || !aj_plain_name(json_string_value(v), json_string_length(v), max)) {
                broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
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
                broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"", field);
                return -1;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > AJ_BROKER_MAX_TOKENS) {
                broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                   "field \"%s\": expected an integer from 0 to %llu", field,
                                   (unsigned long long)AJ_BROKER_MAX_TOKENS);
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
        broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "unknown field \"%s\" for op \"%s\"", SHOWN(bad), op);
        return -1;
}

/* ---- operations ---- */

/* Printable ASCII (no space): an id that reads and types one way. */
static bool typed_id(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

/* A call the approvals would hold that cannot be held: denied, *d says why. */
static bool cannot_hold(AjBroker *b, const char *call_id, const char *name, const char *digest, AjMeterDecision *d)
{
        char key[AJ_SHA256_HEX_SIZE];
        broker_held_call_key(name, digest, key);
        if (strncmp(call_id, AJ_NET_APPROVAL_PREFIX, strlen(AJ_NET_APPROVAL_PREFIX)) == 0)
                snprintf(d->reason, sizeof(d->reason),
                         "call ids beginning with \"" AJ_NET_APPROVAL_PREFIX
                         "\" name host approvals: use another id for a call that needs approval");
        /* The operator's decision names the call by its id, as typed: two ids that look the
         * same (e and U+0301 against U+00E9, a Cyrillic a against a Latin one) would let the
         * approval reviewed for one call allow the other. */
        /* ... and as an argument: "--always" or "-h" is read as an option, and the ready-made
         * approve and deny commands (approval.json) would not name the call. */
        else if (!typed_id(call_id) || call_id[0] == '-')
                snprintf(d->reason, sizeof(d->reason),
                         "a call held for approval needs an id of printable ASCII not beginning with '-' (the "
                         "operator types it in `agentjail approve`): use another id");
        else if (b->n_awaiting >= MAX_AWAITING)
                snprintf(d->reason, sizeof(d->reason), "too many calls awaiting approval (at most %d)", MAX_AWAITING);
        else if (broker_in_flight_find(b, call_id, true))
                snprintf(d->reason, sizeof(d->reason), "call id \"%.128s\" is already awaiting approval", call_id);
        else if (!broker_held_id_refused(b, call_id, key, d->reason, sizeof(d->reason)))
                return false;
        d->verdict = AJ_VERDICT_DENY;
        return true;
}

static void out_key(AjJsonOut *o, const char *key)
{
        AJ_JSON_OUT_LITERAL(o, ",\"");
        aj_json_out_raw(o, key, strlen(key));
        AJ_JSON_OUT_LITERAL(o, "\":");
}

static int out_string(AjJsonOut *o, const char *s) { return aj_json_out_string(o, s, strlen(s)); }

/* tool.request's fields, as tool_request_event() builds them. */
static bool print_tool_request(AjJsonOut *o, const char *name, const char *call_id, const char *digest, json_t *args,
                               const char *canon)
{
        AJ_JSON_OUT_LITERAL(o, "{\"" AJ_BROKER_F_TOOL_NAME "\":");
        bool ok = out_string(o, name) >= 0;
        out_key(o, AJ_BROKER_F_TOOL_CALL_ID);
        ok = ok && out_string(o, call_id) >= 0;
        out_key(o, "arguments_sha256");
        ok = ok && out_string(o, digest) >= 0;
        size_t len = strlen(canon), cut = broker_logged_args_cut(canon, len);
        if (cut == len) {
                out_key(o, AJ_BROKER_F_TOOL_ARGS);
                ok = ok && aj_json_out_value(o, args) >= 0;
        } else {
                out_key(o, "arguments_truncated");
                ok = ok && aj_json_out_string(o, canon, cut) >= 0;
                out_key(o, "arguments_size");
                aj_json_out_integer(o, (json_int_t)len);
        }
        AJ_JSON_OUT_LITERAL(o, "}");
        return ok && o->len <= o->size;
}

static json_t *tool_request_event(const char *name, const char *call_id, const char *digest, json_t *args,
                                  const char *canon)
{
        json_t *ev = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name, AJ_BROKER_F_TOOL_CALL_ID, call_id,
                               "arguments_sha256", digest);
        if (ev && broker_add_logged_args(ev, args, canon) < 0) {
                json_decref(ev);
                ev = NULL;
        }
        return ev;
}

/* The events of an allowed tool call, tool.request then tool.verdict, printed straight into
 * the chain (the text the jansson values of the other path would print, without building
 * them). Below 0: not recorded (nothing of the two is); 0: recorded; 1: not for this path
 * (not allowed, no emit_text, a byte jansson must escape), nothing done. */
static int tool_events_printed(AjBroker *b, const char *name, const char *call_id, const char *digest, json_t *args,
                               const char *canon, const AjMeterDecision *d)
{
        if (d->verdict != AJ_VERDICT_ALLOW || !b->hooks || !b->hooks->emit_text)
                return 1;
        char request[4096], verdict[1024];
        AjJsonOut o = aj_json_out(request, sizeof(request), true, 0);
        if (!print_tool_request(&o, name, call_id, digest, args, canon))
                return 1;
        size_t request_len = o.len;
        o = aj_json_out(verdict, sizeof(verdict), true, 0);
        AJ_JSON_OUT_LITERAL(&o, "{\"" AJ_BROKER_F_TOOL_NAME "\":");
        bool ok = out_string(&o, name) >= 0;
        out_key(&o, AJ_BROKER_F_TOOL_CALL_ID);
        ok = ok && out_string(&o, call_id) >= 0;
        AJ_JSON_OUT_LITERAL(&o, ",\"" AJ_BROKER_F_VERDICT "\":\"" AJ_BROKER_ALLOW "\"");
        if (d->counted_by) {
                out_key(&o, "counted_by");
                ok = ok && out_string(&o, d->counted_by) >= 0;
        }
        AJ_JSON_OUT_LITERAL(&o, "}");
        if (!ok || o.len > o.size)
                return 1;
        return broker_emit_text_pair(b, "tool.request", request, request_len, "tool.verdict", verdict, o.len);
}

_Static_assert(AJ_BROKER_VERSION == 1, "tool_reply_printed() prints \"v\":1");

/* The reply to an allowed tool call, as broker_verdict_reply() and the call id would print;
 * false when it is not for this path (nothing queued). */
static bool tool_reply_printed(AjBroker *b, Conn *c, json_t *id, const char *call_id)
{
        char text[1024];
        AjJsonOut o = aj_json_out(text, sizeof(text), false, 12);
        AJ_JSON_OUT_LITERAL(&o, "{\"" AJ_BROKER_F_ID "\":");
        bool ok = aj_json_out_value(&o, id) >= 0;
        AJ_JSON_OUT_LITERAL(&o, ",\"v\":1,\"ok\":true,\"verdict\":\"" AJ_BROKER_ALLOW "\"");
        out_key(&o, AJ_BROKER_F_USAGE);
        ok = ok && aj_meter_out_json(b->meter, b->now_ns(), true, &o) >= 0;
        out_key(&o, AJ_BROKER_F_TOOL_CALL_ID);
        ok = ok && out_string(&o, call_id) >= 0;
        AJ_JSON_OUT_LITERAL(&o, "}");
        if (!ok || o.len > o.size)
                return false;
        aj_line_conn_queue(c, text, o.len);
        return true;
}

static void op_tool(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = {
                AJ_BROKER_F_ID,        AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_TOOL_NAME, AJ_BROKER_F_TOOL_CALL_ID,
                AJ_BROKER_F_TOOL_ARGS, NULL
        };
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
        /* A reused id is a new call, judged anew: an earlier call's right to an undo record
         * goes (as in the rollback's journal), granted again only if this one is allowed. */
        broker_undo_right_revoke(b, call_id);
        json_t *args = json_object_get(req, AJ_BROKER_F_TOOL_ARGS);
        _cleanup_(json_decrefp) json_t *null_args = args ? NULL : json_null();
        if (!args)
                args = null_args;
        _cleanup_free_ char *canon = NULL;
        int r = aj_meter_args_canon(args, &canon, digest);
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);

        AjMeterReservation res;
        AjMeterDecision d;
        /* The gate saw it (aj_meter_gate_missed), whatever the verdict. The agent's own id
         * (not one made up here): the model's tool call id, by which the gateway's count of
         * the same call is recognised (counted once, claimed once). */
        r = aj_meter_judge_tool_call(b->meter, name, digest, no_call_id ? NULL : call_id, b->now_ns(), &res, &d);
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);

        if (d.verdict == AJ_VERDICT_ALLOW && broker_needs_approval(b, name)) {
                if (!cannot_hold(b, call_id, name, digest, &d))
                        return broker_hold(b, c, id, name, call_id, digest, &res,
                                           tool_request_event(name, call_id, digest, args, canon), args);
                aj_meter_settle(b->meter, &res, false);
        }
        /* Both events in one write(2), still before the reply (and before the verdict
         * counts: a failed write releases the reservation). */
        r = tool_events_printed(b, name, call_id, digest, args, canon, &d);
        if (r > 0) {
                json_t *verdict = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_TOOL_NAME, name, AJ_BROKER_F_TOOL_CALL_ID,
                                            call_id, AJ_BROKER_F_VERDICT, broker_verdict_name(d.verdict, true));
                if (verdict && d.counted_by && d.verdict == AJ_VERDICT_ALLOW &&
                    json_object_set_new(verdict, "counted_by", json_string(d.counted_by)) < 0) {
                        json_decref(verdict);
                        verdict = NULL;
                }
                if (verdict && broker_add_breach(verdict, &d) < 0) {
                        json_decref(verdict);
                        verdict = NULL;
                }
                r = broker_emit_pair(b, "tool.request", tool_request_event(name, call_id, digest, args, canon),
                                     "tool.verdict", verdict);
        }
        aj_meter_settle(b->meter, &res, r >= 0);
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);
        if (d.verdict == AJ_VERDICT_ALLOW) {
                broker_in_flight_add(b, call_id, name, digest);
                (void)broker_undo_right_grant(b, call_id, name); /* full: its undo is refused */
        }
        if (broker_report_breach(b, &d, req) < 0)
                return broker_reply_unrecorded(b, c, id, -EIO);

        if (d.verdict == AJ_VERDICT_ALLOW && tool_reply_printed(b, c, id, call_id))
                return;
        json_t *reply = broker_verdict_reply(b, id, broker_verdict_name(d.verdict, true), &d);
        broker_conn_reply(c, broker_reply_set(reply, AJ_BROKER_F_TOOL_CALL_ID, json_string(call_id)));
}

static void op_tool_result(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = {
                AJ_BROKER_F_ID,   AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_TOOL_CALL_ID, AJ_BROKER_F_STATUS,
                AJ_BROKER_F_UNDO, NULL
        };
        bool unused = false;

        if (check_fields(b, c, req, id, AJ_BROKER_OP_TOOL_RESULT, allowed) < 0)
                return;
        const char *call_id = get_name(b, c, req, id, AJ_BROKER_F_TOOL_CALL_ID, AJ_BROKER_MAX_ID, false, &unused);
        if (!call_id)
                return;
        json_t *status = json_object_get(req, AJ_BROKER_F_STATUS);
        if (!status)
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"%s\"",
                                          AJ_BROKER_F_STATUS);
        if (!json_is_string(status) ||
            (!streq(json_string_value(status), "ok") && !streq(json_string_value(status), "error")))
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                          "field \"%s\": expected \"ok\" or \"error\"", AJ_BROKER_F_STATUS);
        json_t *undo = json_object_get(req, AJ_BROKER_F_UNDO);
        if (undo && !json_is_object(undo))
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                          "field \"%s\": expected an object describing how to reverse the call",
                                          AJ_BROKER_F_UNDO);

        /* The journal rollback plans from holds no more than it can plan (AJ_ROLLBACK_MAX_STEPS). */
        if (undo && b->n_undo >= AJ_BROKER_MAX_UNDO)
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                          "field \"%s\": this run has recorded %d undo records, the most a rollback "
                                          "plans: report the result without one",
                                          AJ_BROKER_F_UNDO, AJ_BROKER_MAX_UNDO);
        /* The call ids are the agent's: an undo record is taken only with the first result of
         * a call this broker allowed, else the operator's rollback would "reverse", on the
         * host, what never happened (a call never asked for, denied, still awaiting approval,
         * or reported already). */
        const char *tool = broker_undo_right(b, call_id);
        if (undo && !tool)
                return broker_reply_error(
                        b, c, id, AJ_BROKER_E_BAD_REQUEST,
                        "field \"%s\": call id \"%.128s\" is %s: only the first result of an allowed call may carry an "
                        "undo record%s",
                        AJ_BROKER_F_UNDO, call_id,
                        broker_in_flight_find(b, call_id, true)
                                ? "still awaiting approval"
                                : "no allowed call awaiting its result (never asked for, denied, or reported already)",
                        b->undo_rights_full ? " (or it was allowed while the broker already remembered "
                                              "the most calls awaiting results it keeps)"
                                            : "");
        if (!broker_report_allowed(b, c, id))
                return;
        /* The undo record is kept whole: it is the rollback journal (the line limit bounds it).
         * The tool is the one the broker allowed, not the agent's word. */
        json_t *ev = json_pack("{s:s, s:s?, s:O, s:O?}", AJ_BROKER_F_TOOL_CALL_ID, call_id, AJ_BROKER_F_TOOL_NAME, tool,
                               AJ_BROKER_F_STATUS, status, AJ_BROKER_F_UNDO, undo);
        int r = broker_emit(b, "tool.result", broker_add_reports_suppressed(b, ev));
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);
        broker_reports_suppressed_recorded(b);
        if (undo)
                b->n_undo++;
        broker_undo_right_revoke(b, call_id); /* tool points into it: not used after */
        InFlight *f = broker_in_flight_find(b, call_id, false);
        if (f)
                broker_in_flight_remove(b, f);
        broker_conn_reply(c, broker_envelope(id, true));
}

/* Totals as they stand once a tokens request is settled (a breach commits nothing). */
static const AjCap total_caps[] = { AJ_CAP_TOKENS, AJ_CAP_INPUT_TOKENS, AJ_CAP_OUTPUT_TOKENS, AJ_CAP_COST_USD };

static json_t *tokens_reply(AjBroker *b, json_t *id, const AjMeterDecision *d, const char *price)
{
        json_t *reply = broker_verdict_reply(b, id, broker_verdict_name(d->verdict, false), d);
        reply = broker_reply_set(reply, AJ_BROKER_F_COST, json_real(broker_cap_value(AJ_CAP_COST_USD, d->cost_pusd)));
        return broker_reply_set(reply, AJ_BROKER_F_PRICE, json_string(price));
}

_Static_assert(AJ_BROKER_VERSION == 1, "tokens_printed() prints \"v\":1");

static int out_cap(AjJsonOut *o, AjCap cap, uint64_t v)
{
        out_key(o, aj_cap_name(cap));
        if (cap == AJ_CAP_COST_USD)
                return aj_json_out_real(o, broker_cap_value(cap, v));
        aj_json_out_integer(o, (json_int_t)v);
        return 0;
}

/* The common tokens request, allowed with nothing more to say (no breach, no reports
 * refused before it): its event and its reply printed from the numbers, with the text the
 * jansson values below would print, without building them. 1: recorded and answered (or
 * answered "internal"); 0: not for this path, nothing done. */
static int tokens_printed(AjBroker *b, Conn *c, json_t *id, const char *model, const uint64_t n[3],
                          AjMeterReservation *res, const AjMeterDecision *d)
{
        if (d->verdict != AJ_VERDICT_ALLOW || !b->hooks || !b->hooks->emit_text ||
            b->report_rl.suppressed != b->reports_suppressed_told)
                return 0;
        static const char *const count_keys[] = { AJ_BROKER_F_INPUT_TOKENS, AJ_BROKER_F_OUTPUT_TOKENS,
                                                  AJ_BROKER_F_CACHED_TOKENS };
        const char *price = d->price_known ? "known" : "unknown";
        char ev[1024];
        AjJsonOut o = aj_json_out(ev, sizeof(ev), true, 0);
        AJ_JSON_OUT_LITERAL(&o, "{\"" AJ_BROKER_F_MODEL "\":");
        bool ok = aj_json_out_string(&o, model, strlen(model)) >= 0;
        for (size_t i = 0; i < ARRAY_SIZE(count_keys); i++) {
                out_key(&o, count_keys[i]);
                aj_json_out_integer(&o, (json_int_t)n[i]);
        }
        out_key(&o, AJ_BROKER_F_COST);
        ok = ok && aj_json_out_real(&o, broker_cap_value(AJ_CAP_COST_USD, d->cost_pusd)) >= 0;
        out_key(&o, AJ_BROKER_F_PRICE);
        ok = ok && aj_json_out_string(&o, price, strlen(price)) >= 0;
        out_key(&o, AJ_BROKER_F_VERDICT);
        ok = ok && aj_json_out_string(&o, AJ_BROKER_OK, strlen(AJ_BROKER_OK)) >= 0;
        AJ_JSON_OUT_LITERAL(&o, ",\"totals\":");
        for (size_t i = 0; ok && i < ARRAY_SIZE(total_caps); i++) {
                size_t at = o.len;
                ok = out_cap(&o, total_caps[i],
                             aj_meter_used(b->meter, total_caps[i], 0) + res->amount[total_caps[i]]) >= 0;
                if (i == 0 && at < o.size)
                        o.buf[at] = '{'; /* the object opens where the first member's comma was */
        }
        AJ_JSON_OUT_LITERAL(&o, "}}");
        if (!ok || o.len > sizeof(ev))
                return 0;
        int r = b->hooks->emit_text(b->hooks->userdata, "tokens", ev, o.len);
        aj_meter_settle(b->meter, res, r >= 0);
        if (r < 0) {
                broker_reply_unrecorded(b, c, id, r);
                return 1;
        }

        char text[1024];
        o = aj_json_out(text, sizeof(text), false, 12);
        AJ_JSON_OUT_LITERAL(&o, "{\"" AJ_BROKER_F_ID "\":");
        ok = aj_json_out_value(&o, id) >= 0;
        AJ_JSON_OUT_LITERAL(&o, ",\"v\":1,\"ok\":true,\"verdict\":\"" AJ_BROKER_OK "\"");
        out_key(&o, AJ_BROKER_F_USAGE);
        ok = ok && aj_meter_out_json(b->meter, b->now_ns(), true, &o) >= 0;
        out_key(&o, AJ_BROKER_F_COST);
        ok = ok && aj_json_out_real(&o, broker_cap_value(AJ_CAP_COST_USD, d->cost_pusd)) >= 0;
        out_key(&o, AJ_BROKER_F_PRICE);
        ok = ok && aj_json_out_string(&o, price, strlen(price)) >= 0;
        AJ_JSON_OUT_LITERAL(&o, "}");
        if (ok && o.len <= sizeof(text))
                aj_line_conn_queue(c, text, o.len);
        else
                broker_conn_reply(c, tokens_reply(b, id, d, price));
        return 1;
}

static void op_tokens(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID,
                                               AJ_BROKER_F_V,
                                               AJ_BROKER_F_OP,
                                               AJ_BROKER_F_MODEL,
                                               AJ_BROKER_F_INPUT_TOKENS,
                                               AJ_BROKER_F_OUTPUT_TOKENS,
                                               AJ_BROKER_F_CACHED_TOKENS,
                                               NULL };
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
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                          "field \"%s\": must not exceed \"%s\" (cached input tokens are part of the input)",
                                          AJ_BROKER_F_CACHED_TOKENS, AJ_BROKER_F_INPUT_TOKENS);

        if (!broker_report_allowed(b, c, id))
                return;
        AjMeterReservation res;
        AjMeterDecision d;
        int r = aj_meter_reserve_tokens(b->meter, model, input, output, cached, &res, &d);
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);

        if (tokens_printed(b, c, id, model, (const uint64_t[3]){ input, output, cached }, &res, &d))
                return;
        json_t *totals = json_object();
        for (size_t i = 0; totals && i < ARRAY_SIZE(total_caps); i++) {
                AjCap cap = total_caps[i];
                uint64_t v = aj_meter_used(b->meter, cap, 0) + res.amount[cap];
                if (json_object_set_new(totals, aj_cap_name(cap), broker_cap_json(cap, v)) < 0) {
                        json_decref(totals);
                        totals = NULL;
                }
        }
        const char *price = d.price_known ? "known" : "unknown";
        json_t *ev = json_pack("{s:s, s:I, s:I, s:I, s:f, s:s, s:s, s:o}", AJ_BROKER_F_MODEL, model,
                               AJ_BROKER_F_INPUT_TOKENS, (json_int_t)input, AJ_BROKER_F_OUTPUT_TOKENS,
                               (json_int_t)output, AJ_BROKER_F_CACHED_TOKENS, (json_int_t)cached, AJ_BROKER_F_COST,
                               broker_cap_value(AJ_CAP_COST_USD, d.cost_pusd), AJ_BROKER_F_PRICE, price,
                               AJ_BROKER_F_VERDICT, broker_verdict_name(d.verdict, false), "totals", totals);
        if (ev && broker_add_breach(ev, &d) < 0) {
                json_decref(ev);
                ev = NULL;
        }
        r = broker_emit(b, "tokens", broker_add_reports_suppressed(b, ev));
        aj_meter_settle(b->meter, &res, r >= 0);
        if (r < 0)
                return broker_reply_unrecorded(b, c, id, r);
        broker_reports_suppressed_recorded(b);
        if (broker_report_breach(b, &d, req) < 0)
                return broker_reply_unrecorded(b, c, id, -EIO);

        broker_conn_reply(c, tokens_reply(b, id, &d, price));
}

static void op_usage(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, NULL };
        if (check_fields(b, c, req, id, AJ_BROKER_OP_USAGE, allowed) < 0)
                return;
        json_t *reply = broker_envelope(id, true);
        if (reply &&
            json_object_set_new(reply, AJ_BROKER_F_USAGE, aj_meter_to_json(b->meter, b->now_ns(), false)) < 0) {
                json_decref(reply);
                reply = NULL;
        }
        broker_conn_reply(c, reply);
}

/* The checks counted since the last tool.checks, as one (CheckSummary); kept when it cannot be
 * written (the agent's share of the log is full), for the next. */
static int checks_record(AjBroker *b)
{
        CheckSummary *s = &b->checks;
        if (s->allowed + s->denied == 0)
                return 0;
        json_t *names = json_array();
        for (size_t i = 0; names && i < s->n_denied_names; i++)
                if (json_array_append_new(names, json_string(s->denied_names[i])) < 0) {
                        json_decref(names);
                        names = NULL;
                }
        int r = broker_emit(b, "tool.checks",
                            json_pack("{s:I, s:I, s:I, s:I, s:o}", "checks", (json_int_t)(s->allowed + s->denied),
                                      "allowed", (json_int_t)s->allowed, "denied", (json_int_t)s->denied, "run_checks",
                                      (json_int_t)s->run_total, "denied_names", names));
        if (r < 0)
                return r;
        s->allowed = s->denied = 0;
        s->n_denied_names = 0;
        return 0;
}

static void on_checks_due(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t;
        (void)now_ns;
        (void)checks_record(userdata);
}

static void checks_count(AjBroker *b, const char *name, bool allowed)
{
        CheckSummary *s = &b->checks;
        s->run_total++;
        if (allowed)
                s->allowed++;
        else {
                s->denied++;
                bool known = false;
                for (size_t i = 0; !known && i < s->n_denied_names; i++)
                        known = streq(s->denied_names[i], name);
                if (!known && s->n_denied_names < AJ_BROKER_CHECK_SUMMARY_NAMES)
                        snprintf(s->denied_names[s->n_denied_names++], sizeof(s->denied_names[0]), "%s", name);
        }
        if (!aj_loop_timer_armed(&s->timer))
                (void)aj_loop_timer_set(&s->timer, b->now_ns() + AJ_BROKER_CHECK_SUMMARY_NS);
}

void aj_broker_flush_checks(AjBroker *b)
{
        if (!b)
                return;
        aj_loop_timer_stop(&b->checks.timer);
        (void)checks_record(b);
}

/* What a `tool` request with this name would meet from the tools rules and approvals, without
 * counting it as a call, holding it or recording it on its own: for a relay that hides denied
 * tools from a listing (agentjail mcp). The caps are not judged: they change with every call.
 * Checks are summed into tool.checks (checks_count). */
static void op_check(AjBroker *b, Conn *c, json_t *req, json_t *id)
{
        static const char *const allowed[] = { AJ_BROKER_F_ID, AJ_BROKER_F_V, AJ_BROKER_F_OP, AJ_BROKER_F_TOOL_NAME,
                                               NULL };
        bool unused = false;
        AjMeterDecision d;

        if (check_fields(b, c, req, id, AJ_BROKER_OP_CHECK, allowed) < 0)
                return;
        const char *name = get_name(b, c, req, id, AJ_BROKER_F_TOOL_NAME, AJ_BROKER_MAX_NAME, false, &unused);
        if (!name)
                return;
        aj_meter_check_tool(b->meter, name, &d);
        bool allowed_now = d.verdict == AJ_VERDICT_ALLOW;
        checks_count(b, name, allowed_now);
        json_t *reply = broker_envelope(id, true);
        reply = broker_reply_set(reply, AJ_BROKER_F_VERDICT,
                                 json_string(allowed_now ? AJ_BROKER_ALLOW : AJ_BROKER_DENY));
        reply = broker_reply_set(reply, AJ_BROKER_F_TOOL_NAME, json_string(name));
        if (!allowed_now)
                reply = broker_reply_set(reply, AJ_BROKER_F_REASON, json_string(d.reason));
        reply = broker_reply_set(reply, AJ_BROKER_F_APPROVAL_REQUIRED,
                                 json_boolean(allowed_now && broker_needs_approval(b, name)));
        broker_conn_reply(c, reply);
}

static void handle_line(AjBroker *b, Conn *c, const char *line, size_t len)
{
        json_error_t je;

        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (strspn(line, " \t\r") >= len)
                return; /* blank lines are allowed between requests */
        /* Most requests are plain (tokens; tool calls and results with arguments or undo
         * records of plain strings, small integers and literals, nested at most
         * AJ_JSON_FLAT_MAX_DEPTH levels; usage, check): parsed without jansson's lexer;
         * anything else, and every error, is jansson's. */
        _cleanup_(json_decrefp) json_t *req = NULL;
        if (aj_json_load_flat(line, len, &req) <= 0) {
                /* What the agent nests ends up in records that nest it deeper still (an
                 * event, incident.json, approval.json): bounded far below jansson's own
                 * limit (2048), which such a record would otherwise pass and be unreadable
                 * (the count of values is bounded by the line: ~32,800, ~5 MB of DOM at the
                 * dearest, ~21,800 empty objects). */
                _Static_assert(AJ_BROKER_MAX_DEPTH == 64, "the message below");
                if (aj_json_scan(line, len, UINT64_MAX, AJ_BROKER_MAX_DEPTH, NULL) == -ELOOP)
                        return broker_reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST,
                                                  "the request nests arrays and objects deeper than 64 levels");
                req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        }
        if (!req)
                return broker_reply_error(b, c, NULL, AJ_BROKER_E_BAD_JSON, "invalid JSON at column %d: %s", je.column,
                                          je.text);
        if (!json_is_object(req))
                return broker_reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST, "a request must be a JSON object");

        json_t *id = json_object_get(req, AJ_BROKER_F_ID);
        if (!id)
                return broker_reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST, "missing field \"id\"");
        if (!(json_is_integer(id) ||
              (json_is_string(id) && json_string_length(id) >= 1 && json_string_length(id) <= AJ_BROKER_MAX_ID &&
               strlen(json_string_value(id)) == json_string_length(id))))
                return broker_reply_error(b, c, NULL, AJ_BROKER_E_BAD_REQUEST,
                                          "field \"id\": expected an integer or a string of 1 to %d bytes",
                                          AJ_BROKER_MAX_ID);

        json_t *v = json_object_get(req, AJ_BROKER_F_V);
        if (!v)
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST,
                                          "missing field \"v\" (the protocol version, %d)", AJ_BROKER_VERSION);
        if (!json_is_integer(v) || json_integer_value(v) != AJ_BROKER_VERSION)
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_VERSION,
                                          "field \"v\": unsupported protocol version (this broker speaks %d)",
                                          AJ_BROKER_VERSION);

        json_t *op = json_object_get(req, AJ_BROKER_F_OP);
        if (!op)
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "missing field \"op\"");
        if (!json_is_string(op))
                return broker_reply_error(b, c, id, AJ_BROKER_E_BAD_REQUEST, "field \"op\": expected a string");
        const char *o = json_string_value(op);
        if (streq(o, AJ_BROKER_OP_TOOL))
                op_tool(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_TOOL_RESULT))
                op_tool_result(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_TOKENS))
                op_tokens(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_USAGE))
                op_usage(b, c, req, id);
        else if (streq(o, AJ_BROKER_OP_CHECK))
                op_check(b, c, req, id);
        else
                broker_reply_error(b, c, id, AJ_BROKER_E_UNKNOWN_OP,
                                   "field \"op\": unknown operation \"%s\" (expected tool, tool_result, tokens, usage "
                                   "or check)",
                                   SHOWN(o));
}

/* ---- the server ---- */

static void on_line(void *userdata, AjLineConn *c, const char *line, size_t len)
{
        AjBroker *b = userdata;
        handle_line(b, c, line, len);
        /* A bound on what waits for one write: the events of many maximal lines. */
        if (b->grouping && b->hooks->held_bytes && b->hooks->held_bytes(b->hooks->userdata) >= GROUP_MAX_BYTES)
                (void)broker_commit(b);
}

static void on_too_long(void *userdata, AjLineConn *c)
{
        broker_reply_error(userdata, c, NULL, AJ_BROKER_E_LINE_TOO_LONG,
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
        if (broker_error_event_allowed(b))
                (void)broker_emit(b, "broker.error",
                                  json_pack("{s:s, s:s}", "code", AJ_BROKER_E_BUSY, "message", "too many connections"));
}

static void on_closed(void *userdata, AjLineConn *c)
{
        AjBroker *b = userdata;
        if (aj_line_conn_held(c) > 0)
                broker_cancel_held(b, c, b->closing ? "the run ended" : "the caller disconnected");
}

/* ---- group commit ---- */

static bool can_group(const AjBroker *b) { return b->hooks && b->hooks->hold && b->hooks->commit; }

static void group_begin(AjBroker *b)
{
        if (!can_group(b))
                return;
        b->hooks->hold(b->hooks->userdata);
        aj_line_server_cork(b->server);
        b->grouping = true;
}

/* One write(2) for every event held, then the replies, or none of them if it failed. */
static int group_end(AjBroker *b)
{
        if (!b->grouping)
                return 0;
        b->grouping = false;
        int r = b->hooks->commit(b->hooks->userdata);
        if (r < 0)
                b->commits_failed++;
        aj_line_server_uncork(b->server, r >= 0);
        return r;
}

int broker_commit(AjBroker *b)
{
        if (!b->grouping)
                return 0;
        int r = group_end(b);
        group_begin(b);
        return r;
}

int broker_ungroup(AjBroker *b, bool *ret_was)
{
        *ret_was = b->grouping;
        return group_end(b);
}

void broker_regroup(AjBroker *b, bool was)
{
        if (was)
                group_begin(b);
}

int aj_broker_dispatch(AjBroker *b)
{
        group_begin(b);
        int r = aj_loop_dispatch(b->loop, 0);
        (void)group_end(b); /* a failure has closed the connections it concerned */
        return r < 0 ? r : 0;
}

size_t aj_broker_connections(const AjBroker *b) { return aj_line_server_connections(b->server); }

int aj_broker_fd(AjBroker *b) { return b->loop_fd; }

void aj_broker_set_clock(AjBroker *b, uint64_t (*now_ns)(void))
{
        b->now_ns = now_ns ? now_ns : aj_now_monotonic_ns;
        aj_loop_set_clock(b->loop, now_ns);
        aj_ratelimit_init(&b->error_rl, ERROR_BURST, ERROR_PER_SEC); /* a new clock, a new bucket */
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
        aj_ratelimit_init(&b->error_rl, ERROR_BURST, ERROR_PER_SEC);
        b->approval_timeout_ns = AJ_BROKER_APPROVAL_TIMEOUT_NS;
        r = aj_loop_new(&b->loop);
        if (r < 0) {
                free(b);
                return r;
        }
        aj_loop_timer_init(b->loop, &b->checks.timer, on_checks_due, b);
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
        broker_undo_rights_free(b);
        json_decref(b->held_ids);
        aj_loop_timer_stop(&b->checks.timer);
        aj_loop_free(b->loop);
        free(b);
}
