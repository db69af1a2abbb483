/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/breach.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "run-record.h"
#include "profile.h"
#include "quarantine.h"
#include "util/clock.h"
#include "util/parse.h"

void aj_sup_breach_init(AjSupBreach *b, const AjSupBreachConfig *cfg, const AjSupBreachOps *ops, void *userdata,
                        const AjSupSink *events)
{
        *b = (AjSupBreach){ .ops = ops, .userdata = userdata, .events = *events, .cfg = *cfg };
}

void aj_sup_breach_done(AjSupBreach *b)
{
        free(b->cap);
        b->cap = NULL;
        b->quarantine = (AjRunQuarantine){ 0 };
}

const char *aj_sup_breach_state(const AjSupBreach *b, bool exited)
{
        if (b->quarantined && !b->released)
                return "quarantined";
        if (exited)
                return "exited";
        return b->frozen ? "frozen" : "running";
}

bool aj_sup_breach_frozen(const AjSupBreach *b) { return b->frozen; }

uint64_t aj_sup_breach_stop(const AjSupBreach *b) { return b->frozen ? b->stop : 0; }

const char *aj_sup_breach_stop_cap(const AjSupBreach *b) { return b->frozen && b->stop_cap[0] ? b->stop_cap : NULL; }

bool aj_sup_breach_stopped(const AjSupBreach *b) { return b->frozen || b->killed; }

bool aj_sup_breach_killed(const AjSupBreach *b) { return b->killed && !b->exited_before_kill; }

const AjRunQuarantine *aj_sup_breach_quarantine(const AjSupBreach *b)
{
        return b->quarantine.present ? &b->quarantine : NULL;
}

uint64_t aj_sup_breach_log_cap(const AjSupBreach *b) { return b->cfg.log_cap; }

uint64_t aj_sup_breach_events_refused(const AjSupBreach *b) { return b->events_refused; }

uint64_t aj_sup_breach_egress_used(const AjSupBreach *b) { return b->egress_used; }

uint64_t aj_sup_breach_egress_limit(const AjSupBreach *b) { return b->cfg.egress_limit; }

void aj_sup_breach_set_exited(AjSupBreach *b, bool cmd, bool jail)
{
        b->cmd_exited |= cmd;
        b->jail_exited |= jail;
}

int aj_sup_breach_freeze(AjSupBreach *b, const char *by, const char *reason)
{
        if (!b->cfg.has_cgroup)
                return -EOPNOTSUPP;
        if (b->frozen)
                return 0;
        uint64_t t0 = aj_now_monotonic_ns();
        int r = b->ops->freeze(b->userdata);
        if (r < 0) {
                aj_sup_emit(&b->events, "freeze.failed", json_pack("{s:s, s:s}", "by", by, "error", strerror(-r)));
                return r;
        }
        b->frozen = true;
        b->stop++;
        snprintf(b->stop_cap, sizeof(b->stop_cap), "%s", streq(by, "breach") && reason ? reason : "");
        b->ops->frozen_changed(b->userdata, true);
        aj_sup_emit(&b->events, "freeze",
                    json_pack("{s:s, s:s?, s:I, s:I}", "by", by, "reason", reason, "stop", (json_int_t)b->stop,
                              "latency_us", (json_int_t)((aj_now_monotonic_ns() - t0) / 1000)));
        b->ops->changed(b->userdata);
        return 0;
}

int aj_sup_breach_thaw_jail(AjSupBreach *b) { return b->frozen ? b->ops->thaw(b->userdata) : 0; }

void aj_sup_breach_thawed(AjSupBreach *b, const char *by)
{
        if (!b->frozen)
                return;
        b->frozen = false;
        b->ops->frozen_changed(b->userdata, false);
        aj_sup_emit(&b->events, "thaw", json_pack("{s:s, s:I}", "by", by, "stop", (json_int_t)b->stop));
        b->ops->changed(b->userdata);
}

int aj_sup_breach_thaw(AjSupBreach *b, const char *by)
{
        int r = aj_sup_breach_thaw_jail(b);
        if (r < 0)
                return r;
        aj_sup_breach_thawed(b, by);
        return 0;
}

int aj_sup_breach_kill(AjSupBreach *b, const char *by)
{
        b->killed = true;
        b->exited_before_kill = b->cmd_exited;
        aj_sup_emit(&b->events, "kill", json_pack("{s:s}", "by", by));
        int r = b->ops->kill(b->userdata);
        /* A frozen task dies only once it runs again. */
        if (b->frozen) {
                (void)b->ops->thaw(b->userdata);
                b->frozen = false;
        }
        return r;
}

int aj_sup_breach_release(AjSupBreach *b)
{
        if (!b->quarantined)
                return -EINVAL;
        if (b->frozen) {
                int r = aj_sup_breach_thaw(b, "quarantine release");
                if (r < 0)
                        return r;
        }
        b->released = true;
        b->quarantine.released = true;
        b->quarantine.released_at = aj_format_timestamp(aj_now_realtime_ns(), b->released_at, sizeof(b->released_at));
        aj_sup_emit(&b->events, "quarantine.release", json_pack("{s:s}", "by", "operator"));
        b->ops->changed(b->userdata);
        return 0;
}

static void write_incident(AjSupBreach *b, const AjBreach *breach, const char *ts)
{
        json_auto_t *usage = b->ops->usage(b->userdata);
        json_auto_t *last = b->events.ops->tail(b->events.userdata, AJ_INCIDENT_LAST_EVENTS);
        if (!last)
                return;
        AjIncident incident = { .run = b->cfg.id,
                                .name = b->cfg.name,
                                .ts = ts,
                                .cap = breach->cap,
                                .limit = breach->limit,
                                .value = breach->value,
                                .request = breach->request,
                                .action = b->cfg.kill_on_breach ? "kill" : "freeze",
                                .usage = usage,
                                .last_events = last };
        (void)b->ops->write_incident(b->userdata, &incident);
        b->ops->alert(b->userdata, "breach", AJ_RUN_FILE_INCIDENT);
}

/* A cap's figure for a person: whole counts and bytes in full (66121600, not 6.61216e+07),
 * costs as they are (0.25). */
static const char *number_shown(double v, char *buf, size_t size)
{
        if (v == (double)(long long)v && v > -1e15 && v < 1e15)
                snprintf(buf, size, "%lld", (long long)v);
        else
                snprintf(buf, size, "%g", v);
        return buf;
}

void aj_sup_breach_handle(AjSupBreach *b, const AjBreach *breach)
{
        bool kill = b->cfg.kill_on_breach;
        json_auto_t *fields = json_pack("{s:s, s:f, s:f, s:O?, s:s, s:s?}", "cap", breach->cap, "limit", breach->limit,
                                        "value", breach->value, "request", breach->request, "action",
                                        kill ? "kill" : "freeze", "reason", breach->reason);
        int recorded = aj_sup_emit(&b->events, "cap.breach", json_incref(fields));
        if (b->quarantined && (b->frozen || b->killed))
                return; /* already stopped for an earlier breach: recorded, nothing more to do */

        /* disk_free is a floor: its value went below the limit; every other cap is a ceiling. */
        bool floor = streq(breach->cap, "disk_free");
        char value[32], limit[32];
        /* The meter's words where it has them: a price nobody gave leaves the value untold
         * ("0 > 10" would say the opposite of what happened). */
        if (breach->reason)
                aj_warning("run %s breached its %s cap (%s): %s", b->cfg.id, breach->cap, breach->reason,
                           kill ? "killing it" : "freezing it");
        else
                aj_warning("run %s breached its %s cap (%s %s %s): %s", b->cfg.id, breach->cap,
                           number_shown(breach->value, value, sizeof(value)), floor ? "<" : ">",
                           number_shown(breach->limit, limit, sizeof(limit)), kill ? "killing it" : "freezing it");
        if (kill)
                (void)aj_sup_breach_kill(b, "breach");
        else if (aj_sup_breach_freeze(b, "breach", breach->cap) < 0)
                (void)aj_sup_breach_kill(b, "breach (freeze failed)"); /* fail closed */
        /* The disk was full (one write of the agent's filled it): no room for the breach
         * while the agent ran; the records' room may be used now that it is stopped. */
        if (recorded < 0 && fields &&
            json_object_set_new(fields, "delayed", json_string("no room on disk before the stop")) >= 0)
                (void)aj_sup_emit(&b->events, "cap.breach", json_incref(fields));

        b->quarantined = true;
        free(b->cap);
        b->cap = strdup(breach->cap);
        b->quarantine = (AjRunQuarantine){
                .present = b->cap != NULL,
                .since = aj_format_timestamp(aj_now_realtime_ns(), b->since, sizeof(b->since)),
                .cap = b->cap,
                .limit = breach->limit,
                .value = breach->value,
        };
        aj_sup_emit(&b->events, "quarantine", json_pack("{s:s}", "cap", breach->cap));
        write_incident(b, breach, b->since);
        b->ops->changed(b->userdata);
}

/* events.jsonl refused an agent's event (-EFBIG): a breach the first time. */
static void events_full(AjSupBreach *b)
{
        b->events_refused++;
        /* Once per stop: what the agent had queued before the freeze is refused quietly;
         * thawed without a raise, its next refused event stops it again. Once the command
         * has exited there is nothing left to stop (the count is in log.refused). */
        if (b->frozen || b->killed || b->cmd_exited || b->jail_exited)
                return;
        AjBreach breach = { .cap = "log_bytes",
                            .limit = (double)aj_events_agent_share(b->cfg.log_cap),
                            .value = (double)b->events.ops->wanted(b->events.userdata) };
        aj_sup_breach_handle(b, &breach);
}

int aj_sup_breach_emit(AjSupBreach *b, const char *type, json_t *fields)
{
        return aj_sup_emit(&b->events, type, fields);
}

int aj_sup_breach_emit_agent(AjSupBreach *b, const char *type, json_t *fields)
{
        int r = b->events.ops->emit_agent(b->events.userdata, type, fields);
        /* Inside a batch the breach waits for its end: its own events are not the batch's.
         * While held, for the commit: its freeze and incident follow events on disk. */
        if (r == -EFBIG && b->events_held)
                b->events_full_due = true;
        else if (r == -EFBIG && !b->in_event_batch)
                events_full(b);
        return r;
}

int aj_sup_breach_check_log_cap(const AjSupBreach *b, json_t *value, uint64_t *ret_cap, AjError *ret_error)
{
        const char *v = json_is_string(value) ? json_string_value(value) : NULL;
        bool add = v && v[0] == '+';
        uint64_t n;
        if (json_is_integer(value) && json_integer_value(value) >= 0)
                n = (uint64_t)json_integer_value(value);
        else if (!v || aj_parse_size(v + add, &n) < 0)
                return aj_error_set(ret_error, -EINVAL, "log_bytes: expected a size such as +64M or 256M");
        uint64_t cap = add ? b->cfg.log_cap + n : n;
        if (cap > AJ_LOG_MAX_BYTES || cap < n)
                return aj_error_set(ret_error, -EINVAL, "log_bytes: at most 1T");
        uint64_t used = b->events.ops->bytes(b->events.userdata);
        if (aj_events_agent_share(cap) <= used)
                return aj_error_set(ret_error, -EINVAL,
                                    "log_bytes: %s would leave the agent no room (" AJ_RUN_FILE_EVENTS
                                    " has %llu bytes)",
                                    v ? v : "the new cap", (unsigned long long)used);
        *ret_cap = cap;
        return 0;
}

void aj_sup_breach_set_log_cap(AjSupBreach *b, uint64_t cap)
{
        b->cfg.log_cap = cap;
        b->events.ops->set_agent_limit(b->events.userdata, aj_events_agent_share(cap));
}

/* ---- the hooks of the broker and the proxy ---------------------------------------- */

static int hook_emit(void *userdata, const char *type, json_t *fields)
{
        return aj_sup_breach_emit_agent(userdata, type, fields);
}

static int hook_emit_text(void *userdata, const char *type, const char *object, size_t len)
{
        AjSupBreach *b = userdata;
        int r = b->events.ops->emit_agent_text(b->events.userdata, type, object, len);
        if (r == -EFBIG && b->events_held)
                b->events_full_due = true;
        else if (r == -EFBIG && !b->in_event_batch)
                events_full(b);
        return r;
}

static int hook_record(void *userdata, const char *type, json_t *fields)
{
        AjSupBreach *b = userdata;
        return aj_sup_emit(&b->events, type, fields);
}

static bool hook_log_full(void *userdata)
{
        AjSupBreach *b = userdata;
        return b->cfg.log_cap && b->events.ops->bytes(b->events.userdata) >= aj_events_agent_share(b->cfg.log_cap);
}

static void hook_breach(void *userdata, const AjBreach *breach) { aj_sup_breach_handle(userdata, breach); }

static int hook_charge_egress(void *userdata, uint64_t bytes, json_t *(*describe)(const void *subject),
                              const void *subject)
{
        AjSupBreach *b = userdata;
        if (b->cfg.egress_limit && b->egress_used + bytes > b->cfg.egress_limit) {
                json_t *connection = describe ? describe(subject) : NULL;
                AjBreach breach = { .cap = "egress_bytes",
                                    .limit = (double)b->cfg.egress_limit,
                                    .value = (double)(b->egress_used + bytes),
                                    .request = connection };
                b->egress_used = b->cfg.egress_limit;
                aj_sup_breach_handle(b, &breach);
                json_decref(connection);
                return 1;
        }
        b->egress_used += bytes;
        return 0;
}

static uint64_t hook_egress_left(void *userdata)
{
        AjSupBreach *b = userdata;
        if (!b->cfg.egress_limit)
                return UINT64_MAX;
        return b->egress_used < b->cfg.egress_limit ? b->cfg.egress_limit - b->egress_used : 0;
}

static void hook_approval_requested(void *userdata, json_t *call)
{
        AjSupBreach *b = userdata;
        b->ops->approval(b->userdata, call);
}

static void hook_batch_begin(void *userdata)
{
        AjSupBreach *b = userdata;
        b->in_event_batch = true;
        b->events.ops->batch_begin(b->events.userdata);
}

static int hook_batch_end(void *userdata)
{
        AjSupBreach *b = userdata;
        b->in_event_batch = false;
        int r = b->events.ops->batch_end(b->events.userdata);
        if (r == -EFBIG && b->events_held)
                b->events_full_due = true;
        else if (r == -EFBIG)
                events_full(b);
        return r;
}

static void hook_hold(void *userdata)
{
        AjSupBreach *b = userdata;
        if (!b->events.ops->hold || !b->events.ops->commit)
                return; /* a chain without group commit writes each event at once */
        b->events_held = true;
        b->events.ops->hold(b->events.userdata);
}

static int hook_commit(void *userdata)
{
        AjSupBreach *b = userdata;
        if (!b->events_held)
                return 0;
        b->events_held = false;
        int r = b->events.ops->commit(b->events.userdata);
        if (b->events_full_due) {
                b->events_full_due = false;
                events_full(b);
        }
        return r;
}

static size_t hook_held_bytes(void *userdata)
{
        AjSupBreach *b = userdata;
        return b->events_held && b->events.ops->held_bytes ? b->events.ops->held_bytes(b->events.userdata) : 0;
}

void aj_sup_breach_hooks(AjSupBreach *b, AjHooks *ret)
{
        *ret = (AjHooks){
                .userdata = b,
                .emit = hook_emit,
                .emit_text = b->events.ops->emit_agent_text ? hook_emit_text : NULL,
                .record = hook_record,
                .log_full = b->events.ops->bytes ? hook_log_full : NULL,
                .breach = hook_breach,
                .charge_egress = hook_charge_egress,
                .egress_left = hook_egress_left,
                .approval_requested = hook_approval_requested,
                .batch_begin = hook_batch_begin,
                .batch_end = hook_batch_end,
                .hold = hook_hold,
                .commit = hook_commit,
                .held_bytes = hook_held_bytes,
        };
}
