/* SPDX-License-Identifier: Apache-2.0 */
#include "util/ratelimit.h"

void aj_ratelimit_init(AjRateLimit *rl, double burst, double per_sec)
{
        *rl = (AjRateLimit){ .tokens = burst, .burst = burst, .per_sec = per_sec };
}

static void ratelimit_refill(AjRateLimit *rl, uint64_t now_ns)
{
        /* Time never runs backwards for the bucket: an older timestamp refills nothing. */
        if (now_ns > rl->last_ns) {
                if (rl->per_sec > 0) {
                        double refill = (double)(now_ns - rl->last_ns) * 1e-9 * rl->per_sec;
                        rl->tokens = rl->tokens + refill > rl->burst ? rl->burst : rl->tokens + refill;
                }
                rl->last_ns = now_ns;
        }
}

bool aj_ratelimit_allow(AjRateLimit *rl, uint64_t now_ns)
{
        ratelimit_refill(rl, now_ns);
        if (rl->tokens >= 1.0) {
                rl->tokens -= 1.0;
                return true;
        }
        rl->suppressed++;
        return false;
}

bool aj_ratelimit_charge(AjRateLimit *rl, uint64_t now_ns, double amount)
{
        ratelimit_refill(rl, now_ns);
        rl->tokens -= amount;
        return rl->tokens >= 0;
}

uint64_t aj_ratelimit_debt_ns(const AjRateLimit *rl)
{
        if (rl->tokens >= 0 || rl->per_sec <= 0)
                return 0;
        return (uint64_t)(-rl->tokens / rl->per_sec * 1e9) + 1;
}
