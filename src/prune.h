/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail prune`'s choice (pure): from what is known of each run directory (is the run
 * finished, quarantined, holding an overlay's pending changes, the operator's to remove,
 * when it ended) and the operator's rules (--older-than, --keep), which runs go and why
 * each other one stays. src/cli/prune.c gathers the facts and removes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the operator's verbs know of a run's life (runs.h: probed, its supervisor checked). */
typedef enum {
        AJ_PRUNE_FINISHED, /* exited or lost: neither its supervisor nor its watchdog lives */
        AJ_PRUNE_LIVE,     /* its supervisor or watchdog lives (runs.h: aj_run_supervisor_alive) */
        AJ_PRUNE_UNKNOWN,  /* run.json missing or unreadable: nothing says it ended */
} AjPruneLife;

typedef struct {
        AjPruneLife life;
        bool quarantined; /* quarantined and not released */
        bool pending;     /* an overlay workspace's changes neither committed nor discarded */
        bool owned;       /* the operator may remove it (its owner, or root) */
        bool remains;     /* its cgroup still holds processes that do not die (runs.h aj_run_reap) */
        bool in_use;      /* what it left is a live run's of the same id (runs.h AjRunRemains in_use) */
        uint64_t time_ns; /* when it ended (else started, else the dir's mtime), realtime */
} AjPruneRun;

typedef struct {
        bool has_older_than;
        uint64_t older_than_ns; /* --older-than: pruned only when now - time_ns > this */
        bool has_keep;
        size_t keep;          /* --keep: the newest this many finished runs stay */
        bool quarantined;     /* --quarantined: quarantined runs may go too */
        bool discard_pending; /* --discard-pending: so may pending overlay changes */
        uint64_t now_ns;
} AjPruneOptions;

typedef enum {
        AJ_PRUNE_REMOVE,
        AJ_PRUNE_KEEP_YOUNG,       /* not older than --older-than */
        AJ_PRUNE_KEEP_NEWEST,      /* one of the newest --keep finished runs */
        AJ_PRUNE_KEEP_LIVE,        /* never */
        AJ_PRUNE_KEEP_UNKNOWN,     /* never: its state cannot be told */
        AJ_PRUNE_KEEP_QUARANTINED, /* without --quarantined */
        AJ_PRUNE_KEEP_PENDING,     /* without --discard-pending */
        AJ_PRUNE_KEEP_NOT_OWNER,   /* someone else's (the control socket's rule: owner or root) */
        AJ_PRUNE_KEEP_REMAINS,     /* its cgroup still holds processes: the one trace of them */
        AJ_PRUNE_KEEP_IN_USE,      /* its cgroup or runtime dir is a live run's of the same id */
} AjPruneVerdict;

typedef struct {
        AjPruneVerdict verdict;
        /* The age/keep rules chose it (then a KEEP_* verdict but YOUNG/NEWEST is a run they
         * chose that stays: the operator is told why). */
        bool matched;
        size_t rank; /* among finished runs, 0 the newest (SIZE_MAX for the others) */
} AjPruneDecision;

/* Decides each of runs[0..n) into ret[0..n). -EINVAL without either rule. */
int aj_prune_select(const AjPruneRun *runs, size_t n, const AjPruneOptions *o, AjPruneDecision *ret);

/* "remove", "young", "newest", "live", "unknown", "quarantined", "pending", "not_owner",
 * "remains", "in_use". */
const char *aj_prune_verdict_name(AjPruneVerdict v);
/* Why a run stays, for a person: "quarantined (--quarantined prunes it)". */
const char *aj_prune_verdict_reason(AjPruneVerdict v);
