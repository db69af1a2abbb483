/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caps, by name and value (src/meter-caps.c), for the meter (src/meter.c): what a cap is
 * called, its largest value, and how its values are written (profiles, --cap, raise).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meter-internal.h"
#include "meter.h"
#include "profile.h"
#include "util/error.h"
#include "util/parse.h"

const char *const aj_meter_cap_names[_AJ_CAP_MAX] = {
        [AJ_CAP_TOKENS] = "tokens",
        [AJ_CAP_INPUT_TOKENS] = "input_tokens",
        [AJ_CAP_OUTPUT_TOKENS] = "output_tokens",
        [AJ_CAP_COST_USD] = "cost_usd",
        [AJ_CAP_TOOL_CALLS] = "tool_calls",
        [AJ_CAP_TOOL_CALLS_PER_MIN] = "tool_calls_per_min",
        [AJ_CAP_REPEAT_LIMIT] = "repeat_limit",
};


const char *aj_cap_name(AjCap cap) { return cap >= 0 && cap < _AJ_CAP_MAX ? aj_meter_cap_names[cap] : "unknown"; }

int aj_cap_from_name(const char *name)
{
        for (int i = 0; i < _AJ_CAP_MAX; i++)
                if (name && streq(aj_meter_cap_names[i], name))
                        return i;
        return -EINVAL;
}


/* ---- cap values ---- */

uint64_t aj_meter_cap_max(AjCap cap)
{
        switch (cap) {
        case AJ_CAP_COST_USD:
                return aj_meter_usd_to_pusd(AJ_CAP_MAX_USD);
        case AJ_CAP_TOOL_CALLS_PER_MIN:
                return AJ_CAP_MAX_PER_MIN;
        case AJ_CAP_REPEAT_LIMIT:
                return AJ_CAP_MAX_REPEAT;
        default:
                return AJ_CAP_MAX_COUNT;
        }
}

const char *aj_meter_cap_expected(AjCap cap)
{
        switch (cap) {
        case AJ_CAP_COST_USD:
                return "a number of US dollars from 0 to 1000000, such as \"5\" or \"0.25\"";
        case AJ_CAP_TOOL_CALLS_PER_MIN:
                return "an integer from 0 to 100000";
        case AJ_CAP_REPEAT_LIMIT:
                return "an integer from 1 to 1000000";
        default:
                return "an integer from 0 to 1000000000000000";
        }
}

/* A cap value as a user writes it: digits (and one '.' for cost_usd). */
int aj_meter_parse_cap_value(AjCap cap, const char *s, uint64_t *ret)
{
        uint64_t v;
        if (cap == AJ_CAP_COST_USD) {
                /* strtod alone would take "nan", "inf", hex and exponents. */
                if (!*s || strspn(s, "0123456789.") != strlen(s) || !strpbrk(s, "0123456789") ||
                    (strchr(s, '.') && strchr(s, '.') != strrchr(s, '.')))
                        return -EINVAL;
                double d = strtod(s, NULL);
                if (!isfinite(d) || d < 0 || d > AJ_CAP_MAX_USD)
                        return -ERANGE;
                v = aj_meter_usd_to_pusd(d);
        } else {
                int r = aj_parse_u64(s, &v);
                if (r < 0)
                        return r;
        }
        if (v > aj_meter_cap_max(cap) || (cap == AJ_CAP_REPEAT_LIMIT && v < 1))
                return -ERANGE;
        *ret = v;
        return 0;
}

void aj_meter_caps_from_profile(const AjProfile *p, AjMeterCaps *ret)
{
        AjMeterCaps c = {};
        const AjProfileMeters *pm = &p->meters;
        const int64_t counts[_AJ_CAP_MAX] = {
                [AJ_CAP_TOKENS] = pm->tokens,
                [AJ_CAP_INPUT_TOKENS] = pm->input_tokens,
                [AJ_CAP_OUTPUT_TOKENS] = pm->output_tokens,
                [AJ_CAP_COST_USD] = -1,
                [AJ_CAP_TOOL_CALLS] = pm->tool_calls,
                [AJ_CAP_TOOL_CALLS_PER_MIN] = pm->tool_calls_per_min,
                [AJ_CAP_REPEAT_LIMIT] = pm->repeat_limit,
        };
        for (int i = 0; i < _AJ_CAP_MAX; i++)
                if (counts[i] >= 0) {
                        c.set[i] = true;
                        c.limit[i] = (uint64_t)counts[i];
                }
        if (pm->cost_usd >= 0) {
                c.set[AJ_CAP_COST_USD] = true;
                c.limit[AJ_CAP_COST_USD] = aj_meter_usd_to_pusd(pm->cost_usd);
        }
        *ret = c;
}

int aj_meter_apply_cap_arg(AjMeterCaps *caps, const char *arg, AjError *ret_error)
{
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
                return aj_error_set(ret_error, -EINVAL, "--cap %s: expected KEY=VALUE (KEY one of: " CAP_LIST ")", arg);
        _cleanup_free_ char *key = strndup(arg, eq - arg);
        if (!key)
                return -ENOMEM;
        int cap = aj_cap_from_name(key);
        if (cap < 0)
                return aj_error_set(ret_error, -EINVAL, "--cap %s: unknown cap \"%s\" (expected one of: " CAP_LIST ")",
                                    arg, key);
        if (streq(eq + 1, "unlimited")) {
                caps->set[cap] = false;
                caps->limit[cap] = 0;
                return 0;
        }
        uint64_t v;
        if (aj_meter_parse_cap_value(cap, eq + 1, &v) < 0)
                return aj_error_set(ret_error, -EINVAL, "--cap %s: expected %s, or \"unlimited\"", arg,
                                    aj_meter_cap_expected(cap));
        caps->set[cap] = true;
        caps->limit[cap] = v;
        return 0;
}
