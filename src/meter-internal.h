/* SPDX-License-Identifier: Apache-2.0 */
/* Between meter.c and meter-caps.c: the caps' names and values. */
#pragma once

#include <math.h>
#include <stdint.h>

#include "meter.h"
#include "util/parse.h"

/* Bytes of a tool name or pattern quoted in a reason. */
#define REASON_NAME_MAX 160

#define CAP_LIST "tokens, input_tokens, output_tokens, cost_usd, tool_calls, tool_calls_per_min, repeat_limit"

extern const char *const aj_meter_cap_names[_AJ_CAP_MAX];
/* The largest value `cap` may have. */
uint64_t aj_meter_cap_max(AjCap cap);
/* What a value of `cap` looks like, for messages. */
const char *aj_meter_cap_expected(AjCap cap);
/* A value of `cap` as written (tokens, USD, a count): -EINVAL when it is not one. */
int aj_meter_parse_cap_value(AjCap cap, const char *s, uint64_t *ret);

static inline uint64_t aj_meter_usd_to_pusd(double usd) { return aj_round_u64(usd * AJ_PUSD_PER_USD); }
