/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/work.h"

#include <errno.h>
#include <sys/epoll.h>

#include "util/clock.h"

/* The supervisor spends at most this share of the jail's CPU limit (limits.cpu) on the
 * agent's broker requests and seccomp denials, in windows of WORK_BURST_S of CPU at that
 * rate: so a flooding jail and its supervisor use at most 1.5x the limit together. */
#define WORK_SHARE 0.5
#define WORK_BURST_S 0.1

static uint32_t wanted(const AjSupWork *w) { return w->paused || w->held ? 0 : EPOLLIN; }

static void set_sources(AjSupWork *w)
{
        for (size_t i = 0; i < AJ_SUP_WORK_SOURCES_MAX; i++)
                if (w->ios[i])
                        (void)aj_loop_io_set_events(w->ios[i], wanted(w));
}

static void on_refilled(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        AjSupWork *w = userdata;
        if (!w->paused)
                return;
        w->paused = false;
        set_sources(w);
        w->paused_ns += aj_now_monotonic_ns() - w->paused_at;
        w->changed(w->userdata);
}

void aj_sup_work_init(AjSupWork *w, AjLoop *loop, double cpu, void (*changed)(void *userdata), void *userdata)
{
        *w = (AjSupWork){ .share_cpu = WORK_SHARE * cpu, .changed = changed, .userdata = userdata };
        aj_loop_timer_init(loop, &w->timer, on_refilled, w);
        /* A budget of a whole CPU or more cannot bind a single-threaded supervisor. */
        if (cpu > 0 && WORK_SHARE * cpu < 1.0) {
                double per_sec = WORK_SHARE * cpu * 1e9; /* ns of work per second */
                aj_ratelimit_init(&w->rl, per_sec * WORK_BURST_S, per_sec);
        }
}

void aj_sup_work_stop(AjSupWork *w) { aj_loop_timer_stop(&w->timer); }

int aj_sup_work_watch(AjSupWork *w, AjLoopIo *io)
{
        for (size_t i = 0; i < AJ_SUP_WORK_SOURCES_MAX; i++)
                if (!w->ios[i]) {
                        w->ios[i] = io;
                        return wanted(w) ? 0 : aj_loop_io_set_events(io, 0);
                }
        return -ENOSPC;
}

void aj_sup_work_unwatch(AjSupWork *w, AjLoopIo *io)
{
        for (size_t i = 0; i < AJ_SUP_WORK_SOURCES_MAX; i++)
                if (w->ios[i] == io)
                        w->ios[i] = NULL;
}

bool aj_sup_work_paused(const AjSupWork *w) { return w->paused; }

void aj_sup_work_hold(AjSupWork *w, bool held)
{
        w->held = held;
        set_sources(w);
}

bool aj_sup_work_budgeted(const AjSupWork *w) { return w->rl.per_sec > 0; }

uint64_t aj_sup_work_start(const AjSupWork *w) { return w->rl.per_sec > 0 ? aj_now_monotonic_ns() : 0; }

/* Charges the supervisor's time since `start_ns` to the agent; past its budget, stop
 * reading its requests and denials until the budget has refilled: the agent waits (its
 * broker writes fill the socket, its denied calls block), the supervisor does not work
 * for it. */
void aj_sup_work_charge(AjSupWork *w, uint64_t start_ns)
{
        if (w->rl.per_sec <= 0)
                return;
        uint64_t now = aj_now_monotonic_ns();
        if (aj_ratelimit_charge(&w->rl, now, (double)(now - start_ns)) || w->paused)
                return;
        if (aj_loop_timer_set_in(&w->timer, aj_ratelimit_debt_ns(&w->rl)) < 0)
                return; /* cannot resume on time: keep serving rather than stall the run */
        w->paused = true;
        set_sources(w);
        w->paused_at = now;
        w->pauses++;
        w->changed(w->userdata);
}

json_t *aj_sup_work_throttled_json(const AjSupWork *w)
{
        if (w->pauses == 0)
                return NULL;
        return json_pack("{s:I, s:I, s:f}", "pauses", (json_int_t)w->pauses, "paused_ms",
                         (json_int_t)(w->paused_ns / 1000000), "budget_cpu", w->share_cpu);
}
