/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>

#include "prune.h"
#include "util/macros.h"

typedef struct {
        uint64_t time_ns;
        size_t index;
} Ranked;

/* Newest first; equal times in input order, so the choice does not depend on qsort. */
static int newest_first(const void *a, const void *b)
{
        const Ranked *x = a, *y = b;
        if (x->time_ns != y->time_ns)
                return x->time_ns > y->time_ns ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

static bool older(const AjPruneRun *r, const AjPruneOptions *o)
{
        uint64_t age = o->now_ns > r->time_ns ? o->now_ns - r->time_ns : 0;
        return age > o->older_than_ns;
}

int aj_prune_select(const AjPruneRun *runs, size_t n, const AjPruneOptions *o, AjPruneDecision *ret)
{
        if (!o->has_older_than && !o->has_keep)
                return -EINVAL; /* no rule: never everything by accident */
        _cleanup_free_ Ranked *finished = calloc(n ? n : 1, sizeof(*finished));
        if (!finished)
                return -ENOMEM;
        size_t nf = 0;
        for (size_t i = 0; i < n; i++) {
                ret[i] = (AjPruneDecision){ .rank = SIZE_MAX };
                if (runs[i].life == AJ_PRUNE_FINISHED)
                        finished[nf++] = (Ranked){ .time_ns = runs[i].time_ns, .index = i };
        }
        qsort(finished, nf, sizeof(*finished), newest_first);
        for (size_t k = 0; k < nf; k++)
                ret[finished[k].index].rank = k;

        for (size_t i = 0; i < n; i++) {
                const AjPruneRun *r = &runs[i];
                AjPruneDecision *d = &ret[i];
                /* A run that is not finished has no rank: --keep never shelters it, and it
                 * is never removed whatever the rules say. */
                bool newest = o->has_keep && d->rank < o->keep;
                bool young = o->has_older_than && !older(r, o);
                d->matched = !newest && !young;
                if (r->life == AJ_PRUNE_LIVE)
                        d->verdict = AJ_PRUNE_KEEP_LIVE;
                else if (r->life != AJ_PRUNE_FINISHED)
                        d->verdict = AJ_PRUNE_KEEP_UNKNOWN;
                else if (newest)
                        d->verdict = AJ_PRUNE_KEEP_NEWEST;
                else if (young)
                        d->verdict = AJ_PRUNE_KEEP_YOUNG;
                else if (r->in_use)
                        d->verdict = AJ_PRUNE_KEEP_IN_USE;
                else if (r->remains)
                        d->verdict = AJ_PRUNE_KEEP_REMAINS;
                else if (r->quarantined && !o->quarantined)
                        d->verdict = AJ_PRUNE_KEEP_QUARANTINED;
                else if (r->pending && !o->discard_pending)
                        d->verdict = AJ_PRUNE_KEEP_PENDING;
                else if (!r->owned)
                        d->verdict = AJ_PRUNE_KEEP_NOT_OWNER;
                else
                        d->verdict = AJ_PRUNE_REMOVE;
        }
        return 0;
}

const char *aj_prune_verdict_name(AjPruneVerdict v)
{
        /* clang-format off */
        static const char *const names[] = {
                [AJ_PRUNE_REMOVE] = "remove",           [AJ_PRUNE_KEEP_YOUNG] = "young",
                [AJ_PRUNE_KEEP_NEWEST] = "newest",      [AJ_PRUNE_KEEP_LIVE] = "live",
                [AJ_PRUNE_KEEP_UNKNOWN] = "unknown",    [AJ_PRUNE_KEEP_QUARANTINED] = "quarantined",
                [AJ_PRUNE_KEEP_PENDING] = "pending",    [AJ_PRUNE_KEEP_NOT_OWNER] = "not_owner",
                [AJ_PRUNE_KEEP_REMAINS] = "remains",    [AJ_PRUNE_KEEP_IN_USE] = "in_use",
        };
        /* clang-format on */
        return (size_t)v < ARRAY_SIZE(names) && names[v] ? names[v] : "?";
}

const char *aj_prune_verdict_reason(AjPruneVerdict v)
{
        switch (v) {
        case AJ_PRUNE_REMOVE:
                return "removed";
        case AJ_PRUNE_KEEP_YOUNG:
                return "not older than --older-than";
        case AJ_PRUNE_KEEP_NEWEST:
                return "one of the newest --keep runs";
        case AJ_PRUNE_KEEP_LIVE:
                return "live: never pruned";
        case AJ_PRUNE_KEEP_UNKNOWN:
                return "state unknown (run.json missing or unreadable): never pruned";
        case AJ_PRUNE_KEEP_QUARANTINED:
                return "quarantined, evidence for review (--quarantined prunes it)";
        case AJ_PRUNE_KEEP_PENDING:
                return "overlay changes pending review: 'agentjail diff', then commit or discard "
                       "(--discard-pending prunes it)";
        case AJ_PRUNE_KEEP_NOT_OWNER:
                return "not yours: only its owner or root may remove it";
        case AJ_PRUNE_KEEP_IN_USE:
                return "what it left on the host is held by a live run of the same id (this directory a copy of "
                       "that run's, or the id another state directory's): kept while that run lives";
        case AJ_PRUNE_KEEP_REMAINS:
                return "its cgroup still holds processes that do not die: kept until they are gone (the next "
                       "prune tries again)";
        }
        return "?";
}
