/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/wall.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"

static void on_limit(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        AjSupWall *w = userdata;
        if (!w->fired) {
                w->fired = true;
                aj_sup_emit(&w->events, "wall.limit",
                            json_pack("{s:I, s:s}", "wall_ns", (json_int_t)w->limit_ns, "action", "SIGTERM"));
                w->ops->signal(w->userdata, SIGTERM);
                (void)aj_loop_timer_set_in(&w->limit_timer, w->grace_ns);
        } else if (!w->killed) {
                w->killed = true;
                aj_sup_emit(&w->events, "wall.kill", json_pack("{s:s}", "action", "SIGKILL"));
                w->ops->kill(w->userdata);
                w->ops->signal(w->userdata, SIGKILL);
        }
}

static void on_cap(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        AjSupWall *w = userdata;
        w->cap_remaining_ns = 0;
        AjBreach b = { .cap = "wall", .limit = (double)w->cap_ns / 1e9, .value = (double)w->cap_ns / 1e9 };
        w->ops->breach(w->userdata, &b);
}

void aj_sup_wall_init(AjSupWall *w, AjLoop *loop, uint64_t limit_ns, uint64_t grace_ns, uint64_t cap_ns,
                      const AjSupWallOps *ops, void *userdata, const AjSupSink *events)
{
        *w = (AjSupWall){ .ops = ops,
                          .userdata = userdata,
                          .events = *events,
                          .limit_ns = limit_ns,
                          .grace_ns = grace_ns,
                          .cap_ns = cap_ns };
        aj_loop_timer_init(loop, &w->limit_timer, on_limit, w);
        aj_loop_timer_init(loop, &w->cap_timer, on_cap, w);
}

int aj_sup_wall_start(AjSupWall *w)
{
        int r;
        if (w->limit_ns && (r = aj_loop_timer_set_in(&w->limit_timer, w->limit_ns)) < 0)
                return r;
        if (w->cap_ns) {
                w->has_cap = true;
                w->cap_remaining_ns = w->cap_ns;
                if ((r = aj_loop_timer_set_in(&w->cap_timer, w->cap_ns)) < 0)
                        return r;
        }
        return 0;
}

void aj_sup_wall_stop(AjSupWall *w)
{
        aj_loop_timer_stop(&w->limit_timer);
        aj_loop_timer_stop(&w->cap_timer);
}

/* Stop a timer and return what was left of it. */
static uint64_t timer_pause(AjLoopTimer *t)
{
        uint64_t left = aj_loop_timer_left(t);
        aj_loop_timer_stop(t);
        return left;
}

void aj_sup_wall_set_frozen(AjSupWall *w, bool frozen)
{
        if (frozen == w->frozen)
                return;
        w->frozen = frozen;
        if (frozen) {
                if (w->limit_ns && !w->fired)
                        w->remaining_ns = timer_pause(&w->limit_timer);
                if (w->has_cap)
                        w->cap_remaining_ns = timer_pause(&w->cap_timer);
                return;
        }
        if (w->limit_ns && !w->fired && w->remaining_ns) {
                (void)aj_loop_timer_set_in(&w->limit_timer, w->remaining_ns);
                w->remaining_ns = 0;
        }
        /* An exhausted wall cap breaches again at once unless it was raised. */
        if (w->has_cap)
                (void)aj_loop_timer_set_in(&w->cap_timer, w->cap_remaining_ns);
}

bool aj_sup_wall_fired(const AjSupWall *w) { return w->fired; }

json_t *aj_sup_wall_cap_json(const AjSupWall *w)
{
        if (!w->cap_ns)
                return NULL;
        uint64_t left = w->cap_remaining_ns;
        if (!w->frozen && w->has_cap)
                left = aj_loop_timer_left(&w->cap_timer);
        return json_pack("{s:f, s:f, s:f}", "limit", (double)w->cap_ns / 1e9, "used", (double)(w->cap_ns - left) / 1e9,
                         "remaining", (double)left / 1e9);
}

int aj_sup_wall_raise(AjSupWall *w, const char *value, AjSupWallSaved *ret_saved, AjError *ret_error)
{
        bool add = value[0] == '+';
        uint64_t d;
        if (!w->has_cap)
                return aj_error_set(ret_error, -EINVAL, "wall: this run has no wall cap to raise");
        if (aj_parse_duration(value + add, &d) < 0)
                return aj_error_set(ret_error, -EINVAL, "wall: '%s': expected a duration such as +10m or 1h", value);
        uint64_t used = w->cap_ns - w->cap_remaining_ns;
        uint64_t cap = add ? w->cap_ns + d : d;
        if (cap <= used)
                return aj_error_set(ret_error, -EINVAL, "wall: %s would not leave the run any time (it has run %.1fs)",
                                    value, (double)used / 1e9);
        *ret_saved = (AjSupWallSaved){ .cap_ns = w->cap_ns, .cap_remaining_ns = w->cap_remaining_ns };
        w->cap_ns = cap;
        w->cap_remaining_ns = cap - used;
        return 0;
}

void aj_sup_wall_raise_undo(AjSupWall *w, const AjSupWallSaved *saved)
{
        w->cap_ns = saved->cap_ns;
        w->cap_remaining_ns = saved->cap_remaining_ns;
}
