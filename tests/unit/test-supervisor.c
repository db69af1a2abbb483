/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The supervisor's parts against a fake run: the wall clock, breaches, freeze/thaw with
 * caps raised and the alert, on a loop with a fake clock, a fake event chain and a fake
 * jail (cgroup freeze/thaw/kill, signals) that record what was done.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "meter.h"
#include "supervisor/alert.h"
#include "supervisor/breach.h"
#include "supervisor/disk.h"
#include "supervisor/netpeer.h"
#include "supervisor/operator.h"
#include "supervisor/output.h"
#include "supervisor/wall.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/loop.h"

#define SEC 1000000000ull

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

/* ---- the fake chain ---- */

typedef struct {
        json_t *events; /* [{"type": ..., fields...}] */
        bool full;      /* emit_agent refuses (-EFBIG) */
        int no_space;   /* how many more emits fail with -ENOSPC (a disk filled at once) */
        bool in_batch, batch_refused;
        uint64_t bytes, agent_limit;
} FakeChain;

static int chain_emit(void *userdata, const char *type, json_t *fields)
{
        FakeChain *c = userdata;
        if (c->no_space > 0) {
                c->no_space--;
                json_decref(fields);
                return -ENOSPC;
        }
        json_t *e = fields ? fields : json_object();
        json_object_set_new(e, "type", json_string(type));
        json_array_append_new(c->events, e);
        return 0;
}

static int chain_emit_agent(void *userdata, const char *type, json_t *fields)
{
        FakeChain *c = userdata;
        if (c->full) {
                json_decref(fields);
                if (c->in_batch)
                        c->batch_refused = true;
                return -EFBIG;
        }
        return chain_emit(userdata, type, fields);
}

static void chain_batch_begin(void *userdata)
{
        FakeChain *c = userdata;
        c->in_batch = true;
        c->batch_refused = false;
}

static int chain_batch_end(void *userdata)
{
        FakeChain *c = userdata;
        c->in_batch = false;
        return c->batch_refused ? -EFBIG : 0;
}

static int chain_emit_agent_text(void *userdata, const char *type, const char *object, size_t len)
{
        return chain_emit_agent(userdata, type, json_loadb(object, len, 0, NULL));
}

static bool chain_held;
static void chain_hold(void *userdata) { chain_held = true; }
static int chain_commit(void *userdata)
{
        chain_held = false;
        return 0;
}

static uint64_t chain_bytes(void *userdata) { return ((FakeChain *)userdata)->bytes; }

static uint64_t chain_wanted(void *userdata) { return ((FakeChain *)userdata)->bytes + 100; }

static void chain_set_agent_limit(void *userdata, uint64_t limit) { ((FakeChain *)userdata)->agent_limit = limit; }

static json_t *chain_tail(void *userdata, size_t n)
{
        (void)userdata, (void)n;
        return json_array();
}

static const AjSupSinkOps chain_ops = {
        .emit = chain_emit,
        .emit_agent = chain_emit_agent,
        .emit_agent_text = chain_emit_agent_text,
        .batch_begin = chain_batch_begin,
        .hold = chain_hold,
        .commit = chain_commit,
        .batch_end = chain_batch_end,
        .bytes = chain_bytes,
        .wanted = chain_wanted,
        .set_agent_limit = chain_set_agent_limit,
        .tail = chain_tail,
};

/* How many events of this type. */
static size_t count(const FakeChain *c, const char *type)
{
        size_t n = 0, i;
        json_t *e;
        json_array_foreach (c->events, i, e)
                n += strcmp(json_string_value(json_object_get(e, "type")), type) == 0;
        return n;
}

static json_t *last(const FakeChain *c, const char *type)
{
        json_t *found = NULL, *e;
        size_t i;
        json_array_foreach (c->events, i, e)
                if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
                        found = e;
        return found;
}

/* ---- the fake run: a jail, the wall clock and the breach part wired as supervise.c does ---- */

typedef struct {
        AjLoop *loop;
        FakeChain chain;
        AjSupSink sink;
        AjSupWall wall;
        AjSupBreach breach;
        int sigterms, sigkills, cgroup_kills, freezes, thaws, changes, incidents;
        int freeze_error; /* what the cgroup's freeze returns */
        int thaw_error;   /* and its thaw */
        bool frozen;
        char alerts[4][32];
        int n_alerts;
        char incident_cap[32], incident_action[16], incident_since[40]; /* the last incident's */
        bool incident_events;                                           /* the chain's tail is an array */
} FakeRun;

static int jail_freeze(void *u)
{
        FakeRun *f = u;
        if (f->freeze_error)
                return f->freeze_error;
        f->freezes++;
        f->frozen = true;
        return 0;
}

static int jail_thaw(void *u)
{
        FakeRun *f = u;
        if (f->thaw_error)
                return f->thaw_error;
        f->thaws++;
        f->frozen = false;
        return 0;
}

static int jail_kill(void *u)
{
        ((FakeRun *)u)->cgroup_kills++;
        return 0;
}

static void frozen_changed(void *u, bool frozen) { aj_sup_wall_set_frozen(&((FakeRun *)u)->wall, frozen); }

static void changed(void *u) { ((FakeRun *)u)->changes++; }

static json_t *usage(void *u)
{
        (void)u;
        return json_object();
}

static int write_incident(void *u, const AjIncident *incident)
{
        FakeRun *f = u;
        f->incidents++;
        snprintf(f->incident_cap, sizeof(f->incident_cap), "%s", incident->cap);
        snprintf(f->incident_action, sizeof(f->incident_action), "%s", incident->action);
        snprintf(f->incident_since, sizeof(f->incident_since), "%s", incident->ts);
        f->incident_events = json_is_array(incident->last_events);
        return 0;
}

static void alert(void *u, const char *kind, const char *input)
{
        FakeRun *f = u;
        (void)input;
        if (f->n_alerts < 4)
                snprintf(f->alerts[f->n_alerts++], sizeof(f->alerts[0]), "%s", kind);
}

static void approval(void *u, json_t *call) { (void)u, (void)call; }

static const AjSupBreachOps breach_ops = {
        .freeze = jail_freeze,
        .thaw = jail_thaw,
        .kill = jail_kill,
        .frozen_changed = frozen_changed,
        .changed = changed,
        .usage = usage,
        .write_incident = write_incident,
        .alert = alert,
        .approval = approval,
};

static void wall_signal(void *u, int sig)
{
        FakeRun *f = u;
        if (sig == SIGTERM)
                f->sigterms++;
        else if (sig == SIGKILL)
                f->sigkills++;
}

static void wall_kill(void *u) { ((FakeRun *)u)->cgroup_kills++; }

static void wall_breach(void *u, const AjBreach *b) { aj_sup_breach_handle(&((FakeRun *)u)->breach, b); }

static const AjSupWallOps wall_ops = { .signal = wall_signal, .kill = wall_kill, .breach = wall_breach };

typedef struct {
        uint64_t wall_ns, grace_ns, cap_ns, log_cap, egress_limit;
        bool kill_on_breach;
} FakeConfig;

static FakeRun *fake_run(const FakeConfig *c)
{
        FakeRun *f = calloc(1, sizeof(*f));
        cr_assert(f);
        fake_now = 1000 * SEC;
        cr_assert_eq(aj_loop_new(&f->loop), 0);
        aj_loop_set_clock(f->loop, fake_clock);
        f->chain.events = json_array();
        f->sink = (AjSupSink){ .ops = &chain_ops, .userdata = &f->chain };
        AjSupBreachConfig bc = { .id = "0123456789ab",
                                 .name = "test",
                                 .has_cgroup = true,
                                 .kill_on_breach = c->kill_on_breach,
                                 .log_cap = c->log_cap ? c->log_cap : 1 << 20,
                                 .egress_limit = c->egress_limit };
        aj_sup_breach_init(&f->breach, &bc, &breach_ops, f, &f->sink);
        aj_sup_wall_init(&f->wall, f->loop, c->wall_ns, c->grace_ns, c->cap_ns, &wall_ops, f, &f->sink);
        cr_assert_eq(aj_sup_wall_start(&f->wall), 0);
        return f;
}

static void fake_run_free(FakeRun *f)
{
        aj_sup_wall_stop(&f->wall);
        aj_sup_breach_done(&f->breach);
        aj_loop_free(f->loop);
        json_decref(f->chain.events);
        free(f);
}

/* Moves the fake clock on and runs what is due. */
static void advance(FakeRun *f, uint64_t ns)
{
        fake_now += ns;
        (void)aj_loop_dispatch(f->loop, 0);
}

/* ---- the wall clock ---- */

Test(supervisor, wall_limit_sigterm_then_sigkill_after_grace)
{
        FakeRun *f = fake_run(&(FakeConfig){ .wall_ns = 10 * SEC, .grace_ns = 3 * SEC });
        advance(f, 9 * SEC);
        cr_expect_eq(f->sigterms, 0);
        advance(f, 1 * SEC);
        cr_expect_eq(f->sigterms, 1, "SIGTERM at the wall limit");
        cr_expect_eq(count(&f->chain, "wall.limit"), 1);
        cr_expect(aj_sup_wall_fired(&f->wall));
        advance(f, 2 * SEC);
        cr_expect_eq(f->sigkills, 0, "not before the grace period");
        advance(f, 1 * SEC);
        cr_expect_eq(f->sigkills, 1, "SIGKILL after the grace period");
        cr_expect_eq(f->cgroup_kills, 1, "the whole cgroup killed");
        cr_expect_eq(count(&f->chain, "wall.kill"), 1);
        advance(f, 100 * SEC);
        cr_expect_eq(f->sigkills, 1, "once");
        fake_run_free(f);
}

Test(supervisor, wall_limit_stands_still_while_frozen)
{
        FakeRun *f = fake_run(&(FakeConfig){ .wall_ns = 10 * SEC, .grace_ns = 3 * SEC });
        advance(f, 4 * SEC);
        cr_assert_eq(aj_sup_breach_freeze(&f->breach, "operator", NULL), 0);
        cr_expect_eq(f->freezes, 1);
        cr_expect_eq(count(&f->chain, "freeze"), 1);
        cr_expect_str_eq(aj_sup_breach_state(&f->breach, false), "frozen");
        advance(f, 3600 * SEC);
        cr_expect_eq(f->sigterms, 0, "frozen time does not count");
        cr_assert_eq(aj_sup_breach_thaw(&f->breach, "operator"), 0);
        cr_expect_eq(count(&f->chain, "thaw"), 1);
        advance(f, 5 * SEC);
        cr_expect_eq(f->sigterms, 0);
        advance(f, 1 * SEC);
        cr_expect_eq(f->sigterms, 1, "the 6 s left run after the thaw");
        fake_run_free(f);
}

/* ---- breaches ---- */

Test(supervisor, wall_cap_breach_freezes_and_quarantines)
{
        FakeRun *f = fake_run(&(FakeConfig){ .cap_ns = 10 * SEC });
        advance(f, 10 * SEC);
        json_t *b = last(&f->chain, "cap.breach");
        cr_assert(b, "a breach at the wall cap");
        cr_expect_str_eq(json_string_value(json_object_get(b, "cap")), "wall");
        cr_expect_str_eq(json_string_value(json_object_get(b, "action")), "freeze");
        cr_expect_eq(f->freezes, 1);
        cr_expect_eq(f->cgroup_kills, 0, "frozen, not killed");
        cr_expect_eq(count(&f->chain, "quarantine"), 1);
        cr_expect_eq(f->incidents, 1);
        cr_expect_eq(f->n_alerts, 1);
        cr_expect_str_eq(f->alerts[0], "breach");
        cr_expect_str_eq(aj_sup_breach_state(&f->breach, false), "quarantined");
        cr_expect_str_eq(aj_sup_breach_state(&f->breach, true), "quarantined");
        const AjRunQuarantine *q = aj_sup_breach_quarantine(&f->breach);
        cr_assert_not_null(q);
        cr_expect_str_eq(q->cap, "wall");
        cr_expect(!q->released);
        /* incident.json's record: the cap, the action, when, and the chain's last events
         * (this fake chain's tail is empty). */
        cr_expect_str_eq(f->incident_cap, "wall");
        cr_expect_str_eq(f->incident_action, "freeze");
        cr_expect_str_eq(f->incident_since, q->since, "the incident is the quarantine's");
        cr_expect(f->incident_events);
        cr_expect(f->changes >= 1, "run.json rewritten");
        json_auto_t *wall = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(wall, "remaining")), 0.0);

        /* Thawed without a raise: the exhausted cap breaches again at once, recorded, and
         * the run is stopped again. */
        cr_assert_eq(aj_sup_breach_thaw(&f->breach, "operator"), 0);
        advance(f, 1);
        cr_expect_eq(count(&f->chain, "cap.breach"), 2);
        fake_run_free(f);
}

Test(supervisor, thaw_raise_wall_adds_time_all_or_nothing)
{
        FakeRun *f = fake_run(&(FakeConfig){ .cap_ns = 10 * SEC });
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        advance(f, 10 * SEC);
        cr_assert(aj_sup_breach_frozen(&f->breach));
        AjError err = {};

        /* A bad meter raise leaves the wall cap as it was, and the run frozen. */
        json_auto_t *bad = json_pack("{s:s, s:s}", "wall", "+10s", "tokens", "lots");
        cr_expect_lt(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, bad, &err), 0);
        cr_expect(err.message);
        aj_error_clear(&err);
        json_auto_t *w0 = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(w0, "limit")), 10.0);
        cr_expect(aj_sup_breach_frozen(&f->breach));

        /* Not a duration, or no time left: refused. */
        json_auto_t *none = json_pack("{s:s}", "wall", "5s");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, none, &err), -EINVAL);
        cr_expect(strstr(err.message, "would not leave the run any time"), "%s", err.message);
        aj_error_clear(&err);

        json_auto_t *raise = json_pack("{s:s}", "wall", "+10s");
        cr_assert_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, raise, &err), 0);
        cr_expect_eq(count(&f->chain, "caps.raise"), 1);
        cr_expect(!aj_sup_breach_frozen(&f->breach));
        json_auto_t *w1 = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(w1, "limit")), 20.0);
        cr_expect_eq(json_real_value(json_object_get(w1, "remaining")), 10.0);
        advance(f, 9 * SEC);
        cr_expect_eq(count(&f->chain, "cap.breach"), 1, "10 s more to run");
        advance(f, 1 * SEC);
        cr_expect_eq(count(&f->chain, "cap.breach"), 2);
        aj_meter_free(m);
        fake_run_free(f);
}

/* Two operators answered one stop with the same "+N": both raises were applied, the second
 * to the run the first had thawed. A raise is for a frozen run only. */
Test(supervisor, thaw_raise_answers_one_stop)
{
        FakeRun *f = fake_run(&(FakeConfig){ .cap_ns = 10 * SEC });
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        advance(f, 10 * SEC);
        cr_assert(aj_sup_breach_frozen(&f->breach));
        AjError err = {};
        json_auto_t *raise = json_pack("{s:s}", "wall", "+10s");
        cr_assert_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, raise, &err), 0, "the first operator's");
        cr_expect(!aj_sup_breach_frozen(&f->breach));
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, raise, &err), -EALREADY, "the second's");
        cr_expect(err.message && strstr(err.message, "not frozen"), "%s", err.message ?: "");
        aj_error_clear(&err);
        json_auto_t *w = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(w, "limit")), 20.0, "raised once");
        cr_expect_eq(count(&f->chain, "caps.raise"), 1);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, NULL, &err), 0, "a plain thaw is still fine");
        aj_meter_free(m);
        fake_run_free(f);
}

/* Operator A answered a tokens breach (stop 1) and thawed; the run was stopped again for its
 * cost (stop 2). Operator B's raise typed for stop 1 landed on stop 2 and thawed it. Each
 * stop has a number: a thaw naming another is refused, as is a raise without one that does
 * not raise the cap that made the current stop. */
Test(supervisor, a_thaw_for_an_earlier_stop_does_not_land_on_a_later_one)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOKENS] = caps.set[AJ_CAP_COST_USD] = true;
        caps.limit[AJ_CAP_TOKENS] = 1000;
        caps.limit[AJ_CAP_COST_USD] = 1000000;
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        AjError err = {};

        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "tokens", .limit = 1000, .value = 1200 });
        cr_assert_eq(aj_sup_breach_stop(&f->breach), 1);
        cr_expect_str_eq(aj_sup_breach_stop_cap(&f->breach), "tokens");
        json_t *fr = last(&f->chain, "freeze");
        cr_expect_eq(json_integer_value(json_object_get(fr, "stop")), 1, "the freeze event numbers its stop");
        json_auto_t *a = json_pack("{s:s}", "tokens", "+1000");
        cr_assert_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, a, &err), 0, "A answers stop 1");
        cr_expect_eq(aj_sup_breach_stop(&f->breach), 0, "not frozen: no current stop");

        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "cost_usd", .limit = 1e-6, .value = 2e-6 });
        cr_assert_eq(aj_sup_breach_stop(&f->breach), 2);
        json_auto_t *b = json_pack("{s:s}", "tokens", "+1000");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, b, &err), -ESTALE, "B's, named for stop 1");
        cr_expect(err.message && strstr(err.message, "stop 1 is over: the run is frozen again, at stop 2 (a breach "
                                                     "of its cost_usd)"),
                  "%s", err.message ?: "");
        aj_error_clear(&err);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, b, &err), -ESTALE,
                     "B's, unnamed: a tokens raise does not answer a cost stop");
        cr_expect(err.message && strstr(err.message, "name the stop it is for (--stop 2)"), "%s", err.message ?: "");
        aj_error_clear(&err);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, NULL, &err), -ESTALE,
                     "a plain thaw naming stop 1 too");
        aj_error_clear(&err);
        cr_expect(aj_sup_breach_frozen(&f->breach), "still frozen");
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOKENS], 2000, "raised once, by A");
        cr_expect_eq(count(&f->chain, "caps.raise"), 1);

        json_auto_t *c = json_pack("{s:s}", "tokens", "+1000");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 2, c, &err), 0, "named: any cap");
        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "cost_usd", .limit = 1e-6, .value = 2e-6 });
        json_auto_t *d = json_pack("{s:s}", "cost_usd", "+1");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, d, &err), 0,
                     "unnamed, raising the cap that made the stop");
        cr_assert_eq(aj_sup_breach_freeze(&f->breach, "operator", NULL), 0);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, NULL, &err), 0,
                     "a plain thaw, unnamed, for the operator who just looked");
        aj_meter_free(m);
        fake_run_free(f);
}

/* A thaw whose cgroup would not thaw had its raises applied already: the operator's retry
 * raised the cap a second time. The raises are part of the thaw. */
Test(supervisor, a_failed_thaw_raises_nothing)
{
        FakeRun *f = fake_run(&(FakeConfig){ .cap_ns = 10 * SEC, .log_cap = 1 << 20 });
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 1000;
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        AjError err = {};
        advance(f, 10 * SEC);
        cr_assert(aj_sup_breach_frozen(&f->breach));
        f->thaw_error = -EBUSY;
        json_auto_t *raise = json_pack("{s:s, s:s, s:s}", "wall", "+10s", "tokens", "+1000", "log_bytes", "+1M");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, raise, &err), -EBUSY);
        cr_expect(err.message && strstr(err.message, "no cap raised"), "%s", err.message ?: "");
        aj_error_clear(&err);
        cr_expect(aj_sup_breach_frozen(&f->breach));
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOKENS], 1000);
        json_auto_t *w0 = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(w0, "limit")), 10.0);
        cr_expect_eq(aj_sup_breach_log_cap(&f->breach), 1 << 20);
        cr_expect_eq(count(&f->chain, "caps.raise"), 0);

        f->thaw_error = 0;
        cr_assert_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, raise, &err), 0, "the retry");
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOKENS], 2000, "raised once");
        json_auto_t *w1 = aj_sup_wall_cap_json(&f->wall);
        cr_expect_eq(json_real_value(json_object_get(w1, "limit")), 20.0);
        cr_expect_eq(aj_sup_breach_log_cap(&f->breach), 2 << 20);
        cr_expect_eq(count(&f->chain, "caps.raise"), 1);
        cr_expect_eq(count(&f->chain, "thaw"), 1);
        aj_meter_free(m);
        fake_run_free(f);
}

Test(supervisor, thaw_raise_without_wall_cap_is_refused)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        cr_assert_eq(aj_sup_breach_freeze(&f->breach, "operator", NULL), 0, "raises are for a frozen run");
        AjError err = {};
        json_auto_t *raise = json_pack("{s:s}", "wall", "+10s");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 1, raise, &err), -EINVAL);
        cr_expect(strstr(err.message, "no wall cap"), "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, NULL, 1, raise, &err), -EINVAL, "no meters");
        aj_error_clear(&err);
        aj_meter_free(m);
        fake_run_free(f);
}

Test(supervisor, log_bytes_breach_once_per_stop)
{
        FakeRun *f = fake_run(&(FakeConfig){ .log_cap = 1 << 20 });
        f->chain.full = true;
        cr_expect_eq(aj_sup_breach_emit_agent(&f->breach, "tool_call", json_object()), -EFBIG);
        json_t *b = last(&f->chain, "cap.breach");
        cr_assert(b);
        cr_expect_str_eq(json_string_value(json_object_get(b, "cap")), "log_bytes");
        cr_expect_eq(f->freezes, 1);
        /* Queued before the freeze: refused quietly. */
        cr_expect_eq(aj_sup_breach_emit_agent(&f->breach, "tool_call", json_object()), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 1);

        /* Raised: the new cap must leave room; then the agent's share follows it. */
        AjError err = {};
        f->chain.bytes = 2 << 20;
        json_auto_t *small = json_pack("{s:s}", "log_bytes", "+64K");
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, NULL, 0, small, &err), -EINVAL, "no meters");
        aj_error_clear(&err);
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        cr_expect_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, small, &err), -EINVAL);
        cr_expect(strstr(err.message, "no room"), "%s", err.message);
        aj_error_clear(&err);
        json_auto_t *raise = json_pack("{s:s}", "log_bytes", "+64M");
        cr_assert_eq(aj_sup_thaw_raise(&f->breach, &f->wall, NULL, m, 0, raise, &err), 0);
        cr_expect_eq(aj_sup_breach_log_cap(&f->breach), (1 << 20) + (64ull << 20));
        cr_expect_eq(f->chain.agent_limit, aj_events_agent_share((1 << 20) + (64ull << 20)));
        cr_expect(!aj_sup_breach_frozen(&f->breach));

        /* Thawed, full again: stopped again. */
        cr_expect_eq(aj_sup_breach_emit_agent(&f->breach, "tool_call", json_object()), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 2);
        cr_expect_eq(aj_sup_breach_events_refused(&f->breach), 3);
        aj_meter_free(m);
        fake_run_free(f);
}

Test(supervisor, log_bytes_breach_waits_for_the_batch)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        AjHooks hooks;
        aj_sup_breach_hooks(&f->breach, &hooks);
        f->chain.full = true;
        hooks.batch_begin(hooks.userdata);
        cr_expect_eq(hooks.emit(hooks.userdata, "tool_call", json_object()), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 0, "not inside the batch");
        cr_expect_eq(hooks.batch_end(hooks.userdata), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 1, "after it");
        fake_run_free(f);
}

Test(supervisor, no_log_bytes_breach_after_the_command_exited)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        aj_sup_breach_set_exited(&f->breach, true, false);
        f->chain.full = true;
        cr_expect_eq(aj_sup_breach_emit_agent(&f->breach, "tool_call", json_object()), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 0);
        cr_expect_eq(aj_sup_breach_events_refused(&f->breach), 1, "counted for log.refused");
        fake_run_free(f);
}

/* What the egress meter still takes: the proxy sends no more than that. */
Test(supervisor, egress_left_is_what_the_cap_still_takes)
{
        FakeRun *f = fake_run(&(FakeConfig){ .egress_limit = 1000 });
        AjHooks hooks;
        aj_sup_breach_hooks(&f->breach, &hooks);
        cr_assert_not_null(hooks.egress_left);
        cr_expect_eq(hooks.egress_left(hooks.userdata), 1000);
        cr_expect_eq(hooks.charge_egress(hooks.userdata, 600, NULL, NULL), 0);
        cr_expect_eq(hooks.egress_left(hooks.userdata), 400);
        cr_expect_eq(hooks.charge_egress(hooks.userdata, 400, NULL, NULL), 0, "up to the cap is within it");
        cr_expect_eq(hooks.egress_left(hooks.userdata), 0);
        cr_expect_eq(count(&f->chain, "cap.breach"), 0);
        cr_expect_eq(hooks.charge_egress(hooks.userdata, 1, NULL, NULL), 1, "one byte more crosses it");
        cr_expect_eq(hooks.egress_left(hooks.userdata), 0);
        cr_expect_eq(aj_sup_breach_egress_used(&f->breach), 1000);
        fake_run_free(f);
        f = fake_run(&(FakeConfig){ 0 });
        aj_sup_breach_hooks(&f->breach, &hooks);
        cr_expect_eq(hooks.egress_left(hooks.userdata), UINT64_MAX, "no cap");
        fake_run_free(f);
}

/* The proxy's description of a connection, counted. */
static json_t *describe_conn(const void *subject)
{
        (*(unsigned *)subject)++;
        return json_pack("{s:s, s:i}", "host", "example.com", "port", 443);
}

Test(supervisor, on_breach_kill)
{
        FakeRun *f = fake_run(&(FakeConfig){ .kill_on_breach = true, .egress_limit = 1000 });
        AjHooks hooks;
        aj_sup_breach_hooks(&f->breach, &hooks);
        unsigned described = 0;
        cr_expect_eq(hooks.charge_egress(hooks.userdata, 600, describe_conn, &described), 0);
        cr_expect_eq(described, 0, "within the cap: the connection is not described");
        cr_expect_eq(hooks.charge_egress(hooks.userdata, 600, describe_conn, &described), 1,
                     "crossed: close the connection");
        cr_expect_eq(described, 1);
        json_t *b = last(&f->chain, "cap.breach");
        cr_assert(b);
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(b, "request"), "host")), "example.com",
                         "the breach's record carries the connection");
        cr_expect_str_eq(json_string_value(json_object_get(b, "cap")), "egress_bytes");
        cr_expect_str_eq(json_string_value(json_object_get(b, "action")), "kill");
        cr_expect_eq(f->cgroup_kills, 1);
        cr_expect_eq(f->freezes, 0);
        cr_expect(aj_sup_breach_killed(&f->breach), "exit 123");
        cr_expect_eq(aj_sup_breach_egress_used(&f->breach), 1000);
        /* A later breach is recorded, nothing more done. */
        hooks.breach(hooks.userdata, &(AjBreach){ .cap = "tokens", .limit = 1, .value = 2 });
        cr_expect_eq(count(&f->chain, "cap.breach"), 2);
        cr_expect_eq(f->cgroup_kills, 1);
        cr_expect_eq(f->n_alerts, 1);
        fake_run_free(f);
}

Test(supervisor, kill_after_the_command_exited_keeps_its_status)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        aj_sup_breach_set_exited(&f->breach, true, false);
        cr_expect_eq(aj_sup_breach_kill(&f->breach, "operator"), 0);
        cr_expect_eq(count(&f->chain, "kill"), 1);
        cr_expect(!aj_sup_breach_killed(&f->breach), "its own status, not 123");
        fake_run_free(f);
}

Test(supervisor, freeze_failure_kills)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        f->freeze_error = -EBUSY;
        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "tokens", .limit = 10, .value = 11 });
        cr_expect_eq(count(&f->chain, "freeze.failed"), 1);
        cr_expect_eq(f->cgroup_kills, 1, "fail closed");
        json_t *k = last(&f->chain, "kill");
        cr_assert(k);
        cr_expect_str_eq(json_string_value(json_object_get(k, "by")), "breach (freeze failed)");
        cr_expect(aj_sup_breach_killed(&f->breach));
        fake_run_free(f);
}

/* The agent filled the disk in one write: the breach's own event found no room while the
 * agent ran; once the jail is stopped (when the records' room may be used) it is written. */
Test(supervisor, breach_recorded_after_the_stop_when_the_disk_had_no_room)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        f->chain.no_space = 1;
        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "disk_free", .limit = 10, .value = 0 });
        cr_assert(f->frozen);
        cr_expect_eq(count(&f->chain, "cap.breach"), 1);
        json_t *b = last(&f->chain, "cap.breach");
        cr_assert(b);
        cr_expect_str_eq(json_string_value(json_object_get(b, "cap")), "disk_free");
        cr_expect_str_eq(json_string_value(json_object_get(b, "delayed")), "no room on disk before the stop");
        cr_expect_eq(count(&f->chain, "quarantine"), 1);
        cr_expect_eq(f->incidents, 1);
        /* Recorded the first time: once, not delayed. */
        FakeRun *g = fake_run(&(FakeConfig){ 0 });
        aj_sup_breach_handle(&g->breach, &(AjBreach){ .cap = "disk_free", .limit = 10, .value = 0 });
        cr_expect_eq(count(&g->chain, "cap.breach"), 1);
        cr_expect_null(json_object_get(last(&g->chain, "cap.breach"), "delayed"));
        fake_run_free(g);
        fake_run_free(f);
}

Test(supervisor, release_thaws_and_records)
{
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        cr_expect_eq(aj_sup_breach_release(&f->breach), -EINVAL, "not quarantined");
        aj_sup_breach_handle(&f->breach, &(AjBreach){ .cap = "tokens", .limit = 10, .value = 11 });
        cr_assert(f->frozen);
        cr_assert_eq(aj_sup_breach_release(&f->breach), 0);
        cr_expect(!f->frozen);
        cr_expect_eq(count(&f->chain, "quarantine.release"), 1);
        cr_expect_str_eq(aj_sup_breach_state(&f->breach, false), "running");
        cr_expect(aj_sup_breach_quarantine(&f->breach)->released);
        cr_expect_not_null(aj_sup_breach_quarantine(&f->breach)->released_at, "released_at is recorded");
        fake_run_free(f);
}

/* ---- the alert ---- */

Test(supervisor, alert_killed_at_its_timeout)
{
        char dir[] = "/tmp/aj-test-alert-XXXXXX";
        cr_assert(mkdtemp(dir));
        char path[4096];
        snprintf(path, sizeof(path), "%s/incident.json", dir);
        FILE *fp = fopen(path, "w");
        cr_assert(fp);
        fputs("{}\n", fp);
        fclose(fp);

        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        char *argv[] = { "/bin/sleep", "30", NULL };
        AjSupAlertConfig ac = {
                .argv = argv, .timeout_ns = 5 * SEC, .run_dir = dir, .id = "0123456789ab", .name = "test"
        };
        AjSupAlert a = AJ_SUP_ALERT_INIT;
        aj_sup_alert_init(&a, f->loop, &ac, &f->sink);
        aj_sup_alert_start(&a, "breach", "incident.json");
        json_t *started = last(&f->chain, "alert");
        cr_assert(started, "the alert started");
        cr_expect_eq(json_integer_value(json_object_get(started, "timeout_ms")), 5000);
        advance(f, 4 * SEC);
        cr_expect_eq(count(&f->chain, "alert.timeout"), 0);
        advance(f, 1 * SEC);
        cr_expect_eq(count(&f->chain, "alert.timeout"), 1, "killed at its timeout");
        json_t *ex = last(&f->chain, "alert.exit");
        cr_assert(ex);
        cr_expect_eq(json_integer_value(json_object_get(ex, "signal")), SIGKILL);
        cr_expect_lt(a.alert.pidfd, 0);
        aj_sup_alert_finish(&a);
        fake_run_free(f);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        cr_expect_eq(system(path), 0);
}

/* An agent holds a call for approval (the alert starts, and may run for alert.timeout), then
 * crosses a cap at once: the breach's alert must still reach the owner, after the running
 * one, not be skipped. Held calls that come while an alert runs wait as one: the newest. */
Test(supervisor, alert_for_a_breach_is_queued_not_skipped)
{
        char dir[] = "/tmp/aj-test-alert-XXXXXX";
        cr_assert(mkdtemp(dir));
        char path[4096];
        const char *files[] = { "incident.json", "approval.json" };
        for (size_t i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                FILE *fp = fopen(path, "w");
                cr_assert(fp);
                fputs("{}\n", fp);
                fclose(fp);
        }
        FakeRun *f = fake_run(&(FakeConfig){ 0 });
        char *argv[] = { "/bin/sleep", "30", NULL };
        AjSupAlertConfig ac = {
                .argv = argv, .timeout_ns = 5 * SEC, .run_dir = dir, .id = "0123456789ab", .name = "test"
        };
        AjSupAlert a = AJ_SUP_ALERT_INIT;
        aj_sup_alert_init(&a, f->loop, &ac, &f->sink);
        aj_sup_alert_start(&a, "approval", "approval.json");
        aj_sup_alert_start(&a, "breach", "incident.json");
        aj_sup_alert_start(&a, "approval", "approval.json"); /* after a breach: waits behind it */
        cr_expect_eq(count(&f->chain, "alert"), 1, "one at a time");
        advance(f, 5 * SEC);
        cr_expect_eq(count(&f->chain, "alert.timeout"), 1, "the first killed at its timeout");
        cr_expect_eq(count(&f->chain, "alert"), 2, "then the breach's alert started");
        json_t *started = last(&f->chain, "alert");
        cr_assert(started);
        cr_expect_str_eq(json_string_value(json_object_get(started, "kind")), "breach");
        advance(f, 5 * SEC);
        cr_expect_eq(count(&f->chain, "alert"), 3, "then the approval waiting behind it");
        cr_expect_str_eq(json_string_value(json_object_get(last(&f->chain, "alert"), "kind")), "approval");
        /* Two approvals waiting are one: the newest request (approval.json holds it). */
        aj_sup_alert_start(&a, "approval", "approval.json");
        aj_sup_alert_start(&a, "approval", "approval.json");
        cr_expect_eq(count(&f->chain, "alert.skipped"), 1, "the older approval waiting is replaced");
        advance(f, 5 * SEC);
        cr_expect_eq(count(&f->chain, "alert"), 4, "the newest approval's alert");
        advance(f, 5 * SEC);
        cr_expect_eq(count(&f->chain, "alert"), 4, "and nothing more");
        aj_sup_alert_finish(&a);
        cr_expect_lt(a.alert.pidfd, 0);
        fake_run_free(f);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        cr_expect_eq(system(path), 0);
}

/* An alert of argv with an approval.json to read, in a fresh run directory; alert_log_size
 * is alert.log's size there, alert_fixture_free removes it. */
typedef struct {
        char dir[32];
        FakeRun *f;
        AjSupAlertConfig ac;
        AjSupAlert a;
} AlertFixture;

static void alert_fixture(AlertFixture *x, char **argv, uint64_t timeout_ns, uint64_t log_cap)
{
        snprintf(x->dir, sizeof(x->dir), "/tmp/aj-test-alert-XXXXXX");
        cr_assert(mkdtemp(x->dir));
        char path[4096];
        snprintf(path, sizeof(path), "%s/approval.json", x->dir);
        FILE *fp = fopen(path, "w");
        cr_assert(fp);
        fputs("{}\n", fp);
        fclose(fp);
        x->f = fake_run(&(FakeConfig){ 0 });
        x->ac = (AjSupAlertConfig){ .argv = argv,
                                    .timeout_ns = timeout_ns,
                                    .run_dir = x->dir,
                                    .id = "0123456789ab",
                                    .name = "test",
                                    .log_cap = log_cap };
        x->a = (AjSupAlert)AJ_SUP_ALERT_INIT;
        aj_sup_alert_init(&x->a, x->f->loop, &x->ac, &x->f->sink);
}

static off_t alert_log_size(const AlertFixture *x)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/alert.log", x->dir);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        return st.st_size;
}

static void alert_fixture_free(AlertFixture *x)
{
        fake_run_free(x->f);
        char cmd[4096];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
        cr_expect_eq(system(cmd), 0);
}

/* The agent decides how many alerts run (each call it holds for approval starts one) and
 * what they read (its arguments in approval.json); an alert that prints its input (tee)
 * wrote 18 MB to alert.log for 300 held calls, past every bound on the run's records.
 * alert.log stops at logs.output_bytes as stdout.log does: the rest is read and dropped,
 * and log.truncated says so once; a later alert adds nothing. */
Test(supervisor, alert_log_stops_at_its_bound)
{
        char *argv[] = { "/bin/sh", "-c", "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2", NULL };
        AlertFixture x;
        alert_fixture(&x, argv, 20 * SEC, 4096);
        for (int round = 0; round < 2; round++) {
                aj_sup_alert_start(&x.a, "approval", "approval.json");
                cr_assert_geq(x.a.alert.pidfd, 0, "the alert started");
                for (int i = 0; i < 2000 && x.a.alert.pidfd >= 0; i++)
                        (void)aj_loop_dispatch(x.f->loop, 10 * 1000000);
                cr_assert_lt(x.a.alert.pidfd, 0, "the alert ended (its output was read)");
                json_t *ex = last(&x.f->chain, "alert.exit");
                cr_assert(ex);
                cr_expect_eq(json_integer_value(json_object_get(ex, "code")), 0);
        }
        aj_sup_alert_finish(&x.a);
        off_t size = alert_log_size(&x);
        cr_expect_eq(size, 4096, "alert.log holds %lld bytes", (long long)size);
        cr_expect_eq(count(&x.f->chain, "log.truncated"), 1, "the cut is recorded once");
        json_t *cut = last(&x.f->chain, "log.truncated");
        cr_assert(cut);
        cr_expect_str_eq(json_string_value(json_object_get(cut, "stream")), "alert");
        cr_expect_eq(json_integer_value(json_object_get(cut, "limit")), 4096);
        alert_fixture_free(&x);
}

/* A process the alert left behind, writing without end to the pipe it inherited, does not
 * hold the supervisor: what is there when the alert ends is read (a bounded amount), the
 * pipe closed, and the writer's next write fails (SIGPIPE). */
Test(supervisor, alert_output_left_writing_does_not_hold_the_loop)
{
        char *argv[] = { "/bin/sh", "-c", "yes & sleep 0.2; exit 0", NULL };
        AlertFixture x;
        alert_fixture(&x, argv, 20 * SEC, 65536);
        aj_sup_alert_start(&x.a, "approval", "approval.json");
        cr_assert_geq(x.a.alert.pidfd, 0, "the alert started");
        uint64_t until = aj_now_monotonic_ns() + 10 * SEC;
        while (x.a.alert.pidfd >= 0 && aj_now_monotonic_ns() < until)
                (void)aj_loop_dispatch(x.f->loop, 10 * 1000000);
        cr_assert_lt(x.a.alert.pidfd, 0, "the alert's end was seen");
        cr_expect_lt(x.a.out_fd, 0, "its pipe is closed");
        aj_sup_alert_finish(&x.a);
        cr_expect_eq(alert_log_size(&x), 65536);
        alert_fixture_free(&x);
}

/* An alert that writes without end, still running when the run ends, gets what is left of
 * its time and is killed: its output, always there to read, does not keep the end waiting. */
Test(supervisor, alert_writing_without_end_is_killed_at_the_run_end, .timeout = 20)
{
        char *argv[] = { "/usr/bin/yes", NULL };
        AlertFixture x;
        alert_fixture(&x, argv, SEC / 2, 65536);
        aj_sup_alert_start(&x.a, "approval", "approval.json");
        cr_assert_geq(x.a.alert.pidfd, 0, "the alert started");
        uint64_t t0 = aj_now_monotonic_ns();
        aj_sup_alert_finish(&x.a);
        uint64_t took = aj_now_monotonic_ns() - t0;
        cr_expect_lt(took, 5 * SEC, "the end waited %llu ms", (unsigned long long)(took / 1000000));
        cr_expect_lt(x.a.alert.pidfd, 0);
        cr_expect(last(&x.f->chain, "alert.timeout"), "the alert was killed at its time");
        cr_expect_eq(alert_log_size(&x), 65536);
        alert_fixture_free(&x);
}

/* The epoll instances this process holds, each replaced by /dev/null (their own fds kept in
 * saved[], *n of them) so that every epoll_ctl on them fails; put back by loops_restore. */
static void loops_break(int *saved, size_t max, int *fds, size_t *n)
{
        *n = 0;
        for (int fd = 0; fd < 1024 && *n < max; fd++) {
                char link[64], target[64];
                snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
                ssize_t len = readlink(link, target, sizeof(target) - 1);
                if (len < 0)
                        continue;
                target[len] = '\0';
                if (strcmp(target, "anon_inode:[eventpoll]") != 0)
                        continue;
                saved[*n] = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
                cr_assert_geq(saved[*n], 0);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                cr_assert_geq(null, 0);
                cr_assert_eq(dup3(null, fd, O_CLOEXEC), fd);
                close(null);
                fds[(*n)++] = fd;
        }
}

static void loops_restore(const int *saved, const int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                cr_assert_eq(dup3(saved[i], fds[i], O_CLOEXEC), fds[i]);
                close(saved[i]);
        }
}

/* Where its pipe cannot be watched (epoll_ctl failing: in a rootless run the agent shares
 * its uid's epoll watches with the supervisor and can use them up), the alert still runs to
 * its end, its output dropped and the record saying so; before, nothing read the pipe and
 * an alert writing more than it holds waited there until its timeout, the owner not told. */
Test(supervisor, alert_runs_to_its_end_when_its_pipe_cannot_be_watched)
{
        char *argv[] = { "/bin/sh", "-c", "head -c 1048576 /dev/zero", NULL };
        AlertFixture x;
        alert_fixture(&x, argv, 20 * SEC, 65536);
        int saved[8], fds[8];
        size_t n;
        loops_break(saved, ARRAY_SIZE(saved), fds, &n);
        cr_assert_gt(n, 0, "the loop's epoll instance found");
        aj_sup_alert_start(&x.a, "approval", "approval.json");
        loops_restore(saved, fds, n);
        cr_assert_geq(x.a.alert.pidfd, 0, "the alert started");
        siginfo_t si = { 0 };
        for (int i = 0; i < 300 && si.si_pid == 0; i++) {
                cr_assert_eq(waitid(P_PIDFD, (id_t)x.a.alert.pidfd, &si, WEXITED | WNOHANG | WNOWAIT), 0);
                if (si.si_pid == 0)
                        usleep(10000);
        }
        cr_expect_neq(si.si_pid, 0, "the alert ended by itself within 3 s (its timeout is 20 s)");
        cr_expect(last(&x.f->chain, "alert.output_lost"), "the record says its output was dropped");
        aj_sup_alert_finish(&x.a);
        json_t *ex = last(&x.f->chain, "alert.exit");
        cr_assert(ex);
        cr_expect_eq(json_integer_value(json_object_get(ex, "code")), 0);
        cr_expect_not(last(&x.f->chain, "alert.timeout"));
        alert_fixture_free(&x);
}

/* ---- who opened a proxy connection (src/supervisor/netpeer.h) ---- */

static struct sockaddr_in v4(const char *a, uint16_t port)
{
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
        cr_assert_eq(inet_pton(AF_INET, a, &in.sin_addr), 1);
        return in;
}

/* Tables as the kernel prints them on a little-endian host (the words in memory order). */
Test(netpeer, finds_the_client_socket_in_tcp_and_tcp6_tables)
{
        static const char tcp[] =
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
                "   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 "
                "0000000000000000 100 0 0 10 0\n"
                "   1: 0100007F:0C38 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 "
                "0000000000000000 20 4 30 10 -1\n"
                "   2: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 2222 1 "
                "0000000000000000 20 4 30 10 -1\n";
        static const char tcp6[] =
                "  sl  local_address                         remote_address                        st tx_queue "
                "rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
                "   0: 0000000000000000FFFF00000100007F:9C41 0000000000000000FFFF00000100007F:0C38 01 "
                "00000000:00000000 00:00000000 00000000  1000        0 4444 1 0000000000000000 20 4 30 10 -1\n";
        struct sockaddr_in client = v4("127.0.0.1", 40000), proxy = v4("127.0.0.1", 3128);
        uint64_t inode = 0;
        cr_assert_eq(aj_net_peer_find_inode(tcp, strlen(tcp), (struct sockaddr *)&client, (struct sockaddr *)&proxy,
                                            &inode),
                     0);
        cr_expect_eq(inode, 2222, "the client's socket, not the proxy's end of it (3333)");
        struct sockaddr_in other = v4("127.0.0.1", 40002);
        cr_expect_eq(aj_net_peer_find_inode(tcp, strlen(tcp), (struct sockaddr *)&other, (struct sockaddr *)&proxy,
                                            &inode),
                     -ENOENT);
        struct sockaddr_in mapped = v4("127.0.0.1", 40001);
        cr_assert_eq(aj_net_peer_find_inode(tcp6, strlen(tcp6), (struct sockaddr *)&mapped, (struct sockaddr *)&proxy,
                                            &inode),
                     0);
        cr_expect_eq(inode, 4444, "an IPv4 client on an IPv6 socket is found in tcp6, mapped");
        cr_expect_eq(aj_net_peer_find_inode("", 0, (struct sockaddr *)&client, (struct sockaddr *)&proxy, &inode),
                     -ENOENT);
        cr_expect_eq(aj_net_peer_find_inode("garbage\n1: x y\n", 16, (struct sockaddr *)&client,
                                            (struct sockaddr *)&proxy, &inode),
                     -ENOENT);
}

/* A network namespace of the test's own (as root), with its loopback up: the host's socket
 * tables may hold more than a jail's lookup reads (other jobs' connections, TIME_WAITs),
 * and the lookup would then rightly give up. Unprivileged, the host's namespace it is. */
static void own_netns(void)
{
        if (unshare(CLONE_NEWNET) < 0)
                return;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert(fd >= 0);
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        cr_assert_eq(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
        ifr.ifr_flags |= IFF_UP;
        cr_assert_eq(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
        close(fd);
}

/* The real thing, in this process: a loopback connection accepted here, its client end
 * held by this process only, then by a forked child too. */
Test(netpeer, names_the_process_holding_the_client_end)
{
        own_netns();
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = v4("127.0.0.1", 0);
        socklen_t al = sizeof(a);
        cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(l, 4), 0);
        cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        cr_assert(s >= 0);
        pid_t self = getpid();
        json_t *who = aj_net_peer_process(self, &self, 1, s);
        cr_assert_not_null(who);
        cr_expect_eq(json_integer_value(json_object_get(who, "pid")), self, "%s", json_dumps(who, 0));
        cr_expect(json_is_string(json_object_get(who, "cmd")));
        json_decref(who);

        pid_t child = fork();
        if (child == 0) {
                pause();
                _exit(0);
        }
        pid_t both[] = { self, child };
        who = aj_net_peer_process(self, both, 2, s);
        cr_assert_not_null(who);
        cr_expect(json_is_null(json_object_get(who, "pid")), "a shared socket names no one process");
        cr_expect_eq(json_array_size(json_object_get(who, "pids")), 2);
        json_decref(who);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);

        close(c);
        who = aj_net_peer_process(self, &self, 1, s);
        cr_expect(json_is_null(json_object_get(who, "pid")), "a closed client is not guessed at");
        cr_expect(json_is_string(json_object_get(who, "note")));
        json_decref(who);
        close(s);
        close(l);
}

/* The broker holds the chain for a group commit: an agent's event refused meanwhile (the log
 * full) stops the run at the commit, once the held events are written, not before. */
Test(supervisor, log_bytes_breach_waits_for_the_commit)
{
        FakeRun *f = fake_run(&(FakeConfig){ .log_cap = 1 << 20 });
        AjHooks hooks;
        aj_sup_breach_hooks(&f->breach, &hooks);
        cr_assert_not_null(hooks.hold);
        cr_assert_not_null(hooks.emit_text);
        hooks.hold(hooks.userdata);
        cr_expect(chain_held);
        f->chain.full = true;
        cr_expect_eq(hooks.emit_text(hooks.userdata, "tokens", "{\"n\":1}", 7), -EFBIG);
        cr_expect_eq(count(&f->chain, "cap.breach"), 0, "no breach while the chain is held");
        cr_expect_eq(f->freezes, 0);
        cr_expect_eq(hooks.commit(hooks.userdata), 0);
        cr_expect(!chain_held);
        cr_expect_eq(count(&f->chain, "cap.breach"), 1, "the breach, at the commit");
        cr_expect_eq(f->freezes, 1);
        fake_run_free(f);
}

/* ---- inspect's process list (src/supervisor/operator.c) ---- */

static pid_t spawn_argv(char *const argv[])
{
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                execv(argv[0], argv);
                _exit(127);
        }
        return pid;
}

static void wait_exec(pid_t pid)
{
        /* Until the child's cmdline is the new program's (after execv). */
        char path[64], buf[16];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        for (int i = 0; i < 15000; i++) { /* 30 s at most: a loaded machine runs it late */
                FILE *f = fopen(path, "re");
                size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
                if (f)
                        fclose(f);
                if (n >= 7 && memcmp(buf, "/bin/sh", 7) == 0)
                        return;
                usleep(2000);
        }
        cr_assert_fail("pid %d never ran /bin/sh", (int)pid);
}

Test(supervisor, inspect_reply_bounded_with_fat_argv)
{
        /* 60 processes with 4000 control bytes each (6 bytes each in an ASCII reply): the
         * reply once passed AJ_CONTROL_MAX_REPLY and the operator saw nothing at all. */
        enum { N = 60 };
        char fat[4001];
        memset(fat, 0x01, 4000);
        fat[4000] = 0;
        char *argv[] = { "/bin/sh", "-c", "sleep 30", fat, NULL };
        pid_t pids[N + 1];
        for (size_t i = 0; i < N; i++)
                pids[i] = spawn_argv(argv);
        char *hidden[] = { "/bin/sh", "-c", "sleep 30", "\xff-hidden \x1b]0;OWNED\x07", NULL };
        pids[N] = spawn_argv(hidden);
        for (size_t i = 0; i <= N; i++)
                wait_exec(pids[i]);
        size_t more = 99;
        json_auto_t *procs = aj_sup_processes_json(pids, N + 1, &more);
        for (size_t i = 0; i <= N; i++) {
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
        }
        cr_assert_not_null(procs);
        cr_expect_eq(json_array_size(procs), N + 1, "every process listed");
        cr_expect_eq(more, 0);
        json_auto_t *reply = json_pack("{s:O}", "processes", procs);
        _cleanup_free_ char *text = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
        cr_assert_not_null(text);
        cr_expect_lt(strlen(text), AJ_CONTROL_MAX_REPLY / 4, "%zu bytes", strlen(text));
        const char *cmd = json_string_value(json_object_get(json_array_get(procs, 0), "cmd"));
        cr_assert_not_null(cmd);
        const char *start = "/bin/sh -c sleep 30 \\x01\\x01";
        cr_expect(strncmp(cmd, start, strlen(start)) == 0, "%s", cmd);
        cr_expect(strlen(cmd) <= AJ_SUP_INSPECT_CMD_BYTES + AJ_ESCAPE_MAX + 3, "cut: %zu", strlen(cmd));
        cr_expect(strstr(cmd, "...") != NULL, "the cut is marked");
        /* The non-UTF-8 argv is listed (it once made the record fail, the process hidden), escaped. */
        const char *h = json_string_value(json_object_get(json_array_get(procs, N), "cmd"));
        cr_assert_not_null(h, "the \\xff process is listed with its cmd");
        cr_expect_str_eq(h, "/bin/sh -c sleep 30 \\xff-hidden \\x1b]0;OWNED\\x07");
}

Test(supervisor, inspect_processes_total_budget)
{
        /* More pids than the list takes: the rest are counted, never a bigger reply. */
        pid_t pids[AJ_SUP_INSPECT_MAX_PROCESSES + 5];
        for (size_t i = 0; i < ARRAY_SIZE(pids); i++)
                pids[i] = getpid();
        size_t more = 0;
        json_auto_t *procs = aj_sup_processes_json(pids, ARRAY_SIZE(pids), &more);
        cr_assert_not_null(procs);
        cr_expect_eq(json_array_size(procs) + more, ARRAY_SIZE(pids));
        cr_expect_geq(more, 5);
}

/* limits.disk_free: the default reserve and how often to look. */
Test(disk, reserve_and_period)
{
        cr_expect_eq(aj_disk_reserve(false, 0, 64ULL << 20), (64ULL << 20) / 20, "5% of a small filesystem");
        cr_expect_eq(aj_disk_reserve(false, 0, 1ULL << 40), 1ULL << 30, "at most 1 GiB");
        cr_expect_eq(aj_disk_reserve(true, 0, 1ULL << 40), 0, "set to 0: not watched");
        cr_expect_eq(aj_disk_reserve(true, 123, 1ULL << 40), 123);
        cr_expect_eq(aj_disk_next_check_ns(0), 5000000ULL, "no room: the shortest period");
        cr_expect_eq(aj_disk_next_check_ns(1ULL << 40), 1000000000ULL, "lots: once a second");
        /* 400 MiB of room: half of it at 4 GiB/s is about 49 ms. */
        uint64_t ns = aj_disk_next_check_ns(400ULL << 20);
        cr_expect(ns > 45000000ULL && ns < 50000000ULL, "%llu ns", (unsigned long long)ns);
}

static int disk_breaches;
static void count_disk_breach(void *u, const AjBreach *b)
{
        (void)u;
        cr_expect_str_eq(b->cap, "disk_free");
        disk_breaches++;
}

/* A filesystem it cannot leave that much on: refused at the start and at a thaw, in words
 * that say what and how much; the same filesystem added twice is watched once. */
Test(disk, start_and_thaw_checks)
{
        AjLoop *loop = NULL;
        cr_assert_eq(aj_loop_new(&loop), 0);
        static const AjSupDiskOps ops = { .breach = count_disk_breach };
        AjSupDisk d;
        aj_sup_disk_init(&d, loop, true, 1ULL << 62, &ops, NULL);
        cr_assert_eq(aj_sup_disk_add(&d, open("/", O_PATH | O_CLOEXEC), "the workspace '/'"), 0);
        cr_assert_eq(aj_sup_disk_add(&d, open("/", O_PATH | O_CLOEXEC), "the rw bind '/'"), 0);
        cr_expect_eq(d.n, 1, "one filesystem, watched once");
        AjError err = {};
        cr_expect_eq(aj_sup_disk_start(&d, &err), -ENOSPC);
        cr_expect(strstr(err.message, "limits.disk_free: the workspace '/' has ") &&
                          strstr(err.message, "free, less than the 4.0 EiB the run must leave there; free some space"),
                  "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(aj_sup_disk_check_thaw(&d, false, 0, &err), -ENOSPC);
        cr_expect(strstr(err.message, "make room first"), "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(aj_sup_disk_check_thaw(&d, true, 0, &err), 0, "a raise to 0 would thaw");
        aj_sup_disk_set_reserve(&d, 0);
        cr_expect_eq(aj_sup_disk_start(&d, &err), 0, "0: not watched");
        cr_expect_eq(disk_breaches, 0);
        /* Below again, thawed: a breach at once. */
        aj_sup_disk_set_reserve(&d, 1ULL << 62);
        aj_sup_disk_set_frozen(&d, true);
        aj_sup_disk_set_frozen(&d, false);
        cr_expect_eq(disk_breaches, 1);
        aj_sup_disk_stop(&d);
        aj_sup_disk_done(&d);
        aj_loop_free(loop);
}

/* The output logs are opened as the run's other records: a FIFO in stdout.log's place (whoever
 * can write the run directory) is refused at once, not waited on for a reader with the
 * supervisor held in open(2); a symlink in stderr.log's is refused, its target not written. */
Test(supervisor, output_logs_must_be_regular_files)
{
        char dir[] = "/tmp/aj-output-XXXXXX", path[64], victim[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/stdout.log", dir);
        cr_assert_eq(mkfifo(path, 0600), 0);
        AjSupOutput o = AJ_SUP_OUTPUT_INIT;
        alarm(10); /* without the check, the open never returns */
        cr_expect_eq(aj_sup_output_open_logs(&o, dir, false), -EBADFD);
        alarm(0);
        aj_sup_output_done(&o);
        cr_assert_eq(unlink(path), 0);
        snprintf(victim, sizeof(victim), "%s/victim", dir);
        cr_assert_eq(aj_write_file_atomic(victim, "", 0, 0600), 0);
        snprintf(path, sizeof(path), "%s/stderr.log", dir);
        cr_assert_eq(symlink(victim, path), 0);
        AjSupOutput o2 = AJ_SUP_OUTPUT_INIT;
        cr_expect_eq(aj_sup_output_open_logs(&o2, dir, false), -ELOOP);
        aj_sup_output_done(&o2);
        cr_assert_eq(unlink(path), 0);
        AjSupOutput o3 = AJ_SUP_OUTPUT_INIT;
        cr_expect_eq(aj_sup_output_open_logs(&o3, dir, false), 0);
        aj_sup_output_done(&o3);
        struct stat st;
        cr_assert_eq(stat(victim, &st), 0);
        cr_expect_eq(st.st_size, 0);
        aj_rm_rf(dir);
}
