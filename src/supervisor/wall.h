/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wall clock: the profile's wall limit (SIGTERM, then after the grace period SIGKILL
 * to the whole jail) and the wall cap (meters.wall, --cap wall=: a breach, not a kill,
 * raised by `thaw --raise wall=`). Both stand still while the run is frozen. Timers on
 * the supervisor's loop; what they do goes through AjSupWallOps.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "hooks.h"
#include "supervisor/sink.h"
#include "util/loop.h"

typedef struct {
        void (*signal)(void *userdata, int sig); /* to the jail's init */
        void (*kill)(void *userdata);            /* every process of the jail (its cgroup) */
        void (*breach)(void *userdata, const AjBreach *b);
} AjSupWallOps;

typedef struct {
        const AjSupWallOps *ops;
        void *userdata;
        AjSupSink events;
        /* the wall limit */
        uint64_t limit_ns, grace_ns;
        AjLoopTimer limit_timer;
        bool fired, killed;
        uint64_t remaining_ns; /* while frozen */
        /* the wall cap */
        bool has_cap; /* started with one: only then can it be raised */
        uint64_t cap_ns;
        uint64_t cap_remaining_ns;
        AjLoopTimer cap_timer;
        bool frozen;
} AjSupWall;

/* cap_ns: 0 for none. Nothing runs until aj_sup_wall_start(). */
void aj_sup_wall_init(AjSupWall *w, AjLoop *loop, uint64_t limit_ns, uint64_t grace_ns, uint64_t cap_ns,
                      const AjSupWallOps *ops, void *userdata, const AjSupSink *events);
int aj_sup_wall_start(AjSupWall *w);
void aj_sup_wall_stop(AjSupWall *w);
/* Frozen: both clocks stand still (the grace period after SIGTERM does not). */
void aj_sup_wall_set_frozen(AjSupWall *w, bool frozen);
/* The wall limit expired (SIGTERM was sent): the run ended at its wall limit. */
bool aj_sup_wall_fired(const AjSupWall *w);
/* {"limit", "used", "remaining"} in seconds, or NULL without a wall cap. */
json_t *aj_sup_wall_cap_json(const AjSupWall *w);
/* thaw --raise wall=+DUR adds running time; wall=DUR sets the cap (counted from the start).
 * aj_sup_wall_raise_undo() puts back what the last raise changed (all or nothing). */
typedef struct {
        uint64_t cap_ns, cap_remaining_ns;
} AjSupWallSaved;
int aj_sup_wall_raise(AjSupWall *w, const char *value, AjSupWallSaved *ret_saved, AjError *ret_error);
void aj_sup_wall_raise_undo(AjSupWall *w, const AjSupWallSaved *saved);
