/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one clock: every timeout, deadline and rate in agentjail is measured in nanoseconds of
 * CLOCK_MONOTONIC (which does not jump when the wall clock is set); CLOCK_REALTIME is only for
 * timestamps a person reads. */

#include <errno.h>
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

/* The clock the kernel stamps file times with (current_time(): the coarse realtime clock,
 * or a finer reading never earlier than it): a file changed after this call has a ctime
 * not before what it returns (src/workspace-digest.c). */
static inline uint64_t aj_now_realtime_coarse_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return aj_timespec_ns(&ts);
}

/* Milliseconds of CLOCK_MONOTONIC, for poll() timeouts and bounded retry loops. */
static inline int64_t aj_now_monotonic_ms(void) { return (int64_t)(aj_now_monotonic_ns() / 1000000ull); }

/* Sleeps ms milliseconds, resuming after signals. Only for short bounded kernel retries (a cgroup
 * that is still offlining), never to poll for an event that has an fd. */
static inline void aj_sleep_ms(long ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}
