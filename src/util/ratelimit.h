/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The one token bucket: at most `burst` tokens, refilled at `per_sec` per second of the caller's
 * clock (nanoseconds passed in, so tests drive it with a fake clock). Pure. Used for seccomp denial
 * reports, the broker's reports and broker.error events, and the supervisor's work budget. */
typedef struct {
        double tokens;
        double burst;
        double per_sec;
        uint64_t last_ns;
        uint64_t suppressed;
} AjRateLimit;

void aj_ratelimit_init(AjRateLimit *rl, double burst, double per_sec);
/* Takes one token: true when the event should go ahead; else counts it in `suppressed`.
 * Time never runs backwards for the bucket: an older timestamp refills nothing. */
bool aj_ratelimit_allow(AjRateLimit *rl, uint64_t now_ns);
/* The same bucket as a budget of work (tokens: any unit, such as ns of CPU): takes
 * `amount`, which may leave it in debt; true while it is not. _debt_ns(): how long
 * until the refill pays the debt (0 when there is none). */
bool aj_ratelimit_charge(AjRateLimit *rl, uint64_t now_ns, double amount);
uint64_t aj_ratelimit_debt_ns(const AjRateLimit *rl);
