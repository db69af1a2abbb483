/* SPDX-License-Identifier: Apache-2.0 */
/* What operators ask of a live run (src/supervisor/operator.c). */
#pragma once

#include <jansson.h>

#include "meter.h"
#include "supervisor/breach.h"
#include "supervisor/wall.h"

/* thaw --raise: all raises or none (wall cap, logs.events_bytes, the meters), then thaw. */
int aj_sup_thaw_raise(AjSupBreach *b, AjSupWall *w, AjMeter *meter, json_t *raise, AjError *ret_error);
