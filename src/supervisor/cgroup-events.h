/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run cgroup's events as they happen: OOM kills and pids.max become events (the
 * agent's: dropped, never a breach, past its share of logs.events_bytes), and the usage
 * run.json reports (memory peak, CPU).
 */
#pragma once

#include <stdint.h>

#include "cgroup.h"
#include "supervisor/sink.h"
#include "util/loop.h"

typedef struct {
        AjCgroup *cgroup; /* borrowed; NULL: none */
        AjSupSink events;
        uint64_t memory_max, pids_max; /* the profile's, for the events */
        AjLoopIo *io;
        AjCgroupStats last;
} AjSupCgroupEvents;

void aj_sup_cgroup_events_init(AjSupCgroupEvents *c, AjCgroup *cgroup, uint64_t memory_max, uint64_t pids_max,
                               const AjSupSink *events);
/* The cgroup's event fd into the loop. */
int aj_sup_cgroup_events_start(AjSupCgroupEvents *c, AjLoop *loop);
/* Reads the stats now, recording what is new. */
void aj_sup_cgroup_events_check(AjSupCgroupEvents *c);
const AjCgroupStats *aj_sup_cgroup_events_stats(const AjSupCgroupEvents *c);
void aj_sup_cgroup_events_stop(AjSupCgroupEvents *c);
