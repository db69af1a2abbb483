/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one clock: every timeout, deadline and rate in agentjail is measured in nanoseconds of
 * CLOCK_MONOTONIC (which does not jump when the wall clock is set); CLOCK_REALTIME is only for
 * timestamps a person reads. */

#include <stdint.h>
#include <time.h>

static inline uint64_t aj_timespec_ns(const struct timespec *ts)
{
        return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static inline uint64_t aj_now_monotonic_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return aj_timespec_ns(&ts);
}

static inline uint64_t aj_now_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return aj_timespec_ns(&ts);
}
