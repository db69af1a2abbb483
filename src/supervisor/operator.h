/* SPDX-License-Identifier: Apache-2.0 */
/* What operators ask of a live run (src/supervisor/operator.c). */
#pragma once

#include <jansson.h>
#include <sys/types.h>

#include "meter.h"
#include "supervisor/breach.h"
#include "supervisor/disk.h"
#include "supervisor/wall.h"

/* thaw [--stop N] [--raise ...]: all raises or none (wall cap, logs.events_bytes, the meters,
 * the disk reserve) with the thaw: a thaw that fails leaves every cap as it was. `stop` (0:
 * not named) must be the current stop's number (-ESTALE otherwise); a raise without one
 * must raise the cap whose breach made the current stop (-ESTALE otherwise). */
int aj_sup_thaw_raise(AjSupBreach *b, AjSupWall *w, AjSupDisk *disk, AjMeter *meter, uint64_t stop, json_t *raise,
                      AjError *ret_error);

/* inspect's list of the jail's processes (the first AJ_SUP_INSPECT_MAX_PROCESSES of pids, while
 * their records stay under AJ_SUP_INSPECT_PROCESSES_BYTES): each {pid, state, cmd, cpu_s, rss_kb},
 * cmd the argv escaped (util/format.h) and cut at AJ_SUP_INSPECT_CMD_BYTES; *ret_more is how
 * many pids were left out. The reply must stay far under AJ_CONTROL_MAX_REPLY with the
 * pending calls and meters beside it, whatever the agent's argv: a bigger one is refused
 * whole. NULL: out of memory. */
#define AJ_SUP_INSPECT_MAX_PROCESSES 256
#define AJ_SUP_INSPECT_CMD_BYTES 256
#define AJ_SUP_INSPECT_CMD_READ 4096
#define AJ_SUP_INSPECT_PROCESSES_BYTES (64 * 1024)
json_t *aj_sup_processes_json(const pid_t *pids, size_t n, size_t *ret_more);
