/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The supervisor's own work for the agent (broker requests, seccomp denials, the proxy,
 * the output relay, polling for the next request), in ns, within a share of limits.cpu:
 * in debt, the sources it watches are paused (aj_loop_io_set_events(io, 0)) until a timer
 * says the budget has refilled: back-pressure, the agent waits, not the supervisor.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "seccomp-filter.h"
#include "util/loop.h"

#define AJ_SUP_WORK_SOURCES_MAX 4

typedef struct {
        AjRateLimit rl;   /* per_sec 0: no budget */
        double share_cpu; /* the budget in CPUs, for supervisor.throttled */
        AjLoopTimer timer;
        bool paused;
        bool held; /* the jail is frozen: its services do nothing for it (aj_sup_work_hold) */
        uint64_t pauses, paused_ns, paused_at;
        AjLoopIo *ios[AJ_SUP_WORK_SOURCES_MAX];
        /* Told when it pauses or resumes (the output relay stops reading too). */
        void (*changed)(void *userdata);
        void *userdata;
} AjSupWork;

/* cpu: the jail's limits.cpu (0: none); no budget when the share is a CPU or more. */
void aj_sup_work_init(AjSupWork *w, AjLoop *loop, double cpu, void (*changed)(void *userdata), void *userdata);
void aj_sup_work_stop(AjSupWork *w);
/* A source to pause while in debt (EPOLLIN otherwise); added paused when in debt now. */
int aj_sup_work_watch(AjSupWork *w, AjLoopIo *io);
void aj_sup_work_unwatch(AjSupWork *w, AjLoopIo *io);
bool aj_sup_work_paused(const AjSupWork *w);
/* While the jail is frozen the sources are paused too, whatever the budget says: what the
 * agent sent before the freeze (a model call, a connection, a tool call) waits for the
 * thaw instead of being acted on for a run stopped for the operator. */
void aj_sup_work_hold(AjSupWork *w, bool held);
bool aj_sup_work_budgeted(const AjSupWork *w);
/* Around a piece of work: _start() returns its start, _charge() charges it. */
uint64_t aj_sup_work_start(const AjSupWork *w);
void aj_sup_work_charge(AjSupWork *w, uint64_t start_ns);
/* supervisor.throttled's fields, or NULL when it never paused. */
json_t *aj_sup_work_throttled_json(const AjSupWork *w);
