/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail prune`'s choice (src/prune.c): which runs go, and why each other one stays. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prune.h"
#include "runs.h"
#include "util/fd.h"

#define S 1000000000ull
#define DAY (86400 * S)
#define NOW (1000 * DAY)

/* A finished run, yours, that ended `days_ago` days ago. */
static AjPruneRun done(double days_ago)
{
        return (AjPruneRun){ .life = AJ_PRUNE_FINISHED, .owned = true, .time_ns = NOW - (uint64_t)(days_ago * DAY) };
}

static AjPruneOptions older_than(uint64_t days)
{
        return (AjPruneOptions){ .has_older_than = true, .older_than_ns = days * DAY, .now_ns = NOW };
}

static AjPruneOptions keep(size_t n) { return (AjPruneOptions){ .has_keep = true, .keep = n, .now_ns = NOW }; }

static void decide(const AjPruneRun *runs, size_t n, const AjPruneOptions *o, AjPruneDecision *d)
{
        cr_assert_eq(aj_prune_select(runs, n, o, d), 0);
}

Test(prune, no_rule_is_refused)
{
        AjPruneRun runs[] = { done(30) };
        AjPruneDecision d[1];
        AjPruneOptions o = { .now_ns = NOW, .quarantined = true, .discard_pending = true };
        cr_assert_eq(aj_prune_select(runs, 1, &o, d), -EINVAL, "no --older-than and no --keep: nothing chosen");
}

Test(prune, older_than_by_time)
{
        AjPruneRun runs[] = { done(10), done(7.5), done(6.9), done(0) };
        AjPruneDecision d[4];
        AjPruneOptions o = older_than(7);
        decide(runs, 4, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_YOUNG);
        cr_assert_eq(d[3].verdict, AJ_PRUNE_KEEP_YOUNG);
        cr_assert(d[0].matched && d[1].matched && !d[2].matched && !d[3].matched);
}

Test(prune, older_than_exactly_the_age_stays)
{
        AjPruneRun runs[] = { done(7) };
        AjPruneDecision d[1];
        AjPruneOptions o = older_than(7);
        decide(runs, 1, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_YOUNG, "more than 7d: exactly 7d is not older");
}

Test(prune, a_future_time_is_young)
{
        AjPruneRun runs[] = { { .life = AJ_PRUNE_FINISHED, .owned = true, .time_ns = NOW + DAY } };
        AjPruneDecision d[1];
        AjPruneOptions o = older_than(0);
        decide(runs, 1, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_YOUNG, "a clock set back does not make a run old");
}

Test(prune, keep_the_newest_whatever_the_order)
{
        /* Listed out of time order: the rank is by time, not position. */
        AjPruneRun runs[] = { done(3), done(1), done(5), done(2), done(4) };
        AjPruneDecision d[5];
        AjPruneOptions o = keep(2);
        decide(runs, 5, &o, d);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_KEEP_NEWEST);
        cr_assert_eq(d[3].verdict, AJ_PRUNE_KEEP_NEWEST);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[4].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[1].rank, 0);
        cr_assert_eq(d[3].rank, 1);
        cr_assert_eq(d[0].rank, 2);
        cr_assert_eq(d[4].rank, 3);
        cr_assert_eq(d[2].rank, 4);
}

Test(prune, keep_zero_and_more_than_there_are)
{
        AjPruneRun runs[] = { done(1), done(2) };
        AjPruneDecision d[2];
        AjPruneOptions o = keep(0);
        decide(runs, 2, &o, d);
        cr_assert(d[0].verdict == AJ_PRUNE_REMOVE && d[1].verdict == AJ_PRUNE_REMOVE, "--keep 0: every finished run");
        o = keep(5);
        decide(runs, 2, &o, d);
        cr_assert(d[0].verdict == AJ_PRUNE_KEEP_NEWEST && d[1].verdict == AJ_PRUNE_KEEP_NEWEST);
        cr_assert(!d[0].matched && !d[1].matched);
}

Test(prune, equal_times_rank_in_input_order)
{
        AjPruneRun runs[] = { done(1), done(1), done(1) };
        AjPruneDecision d[3];
        AjPruneOptions o = keep(1);
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_NEWEST);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_REMOVE);
}

Test(prune, both_rules_must_agree)
{
        /* --older-than 7d --keep 2: the two newest stay however old; the rest only if old. */
        AjPruneRun runs[] = { done(20), done(10), done(9), done(8), done(1) };
        AjPruneDecision d[5];
        AjPruneOptions o = older_than(7);
        o.has_keep = true;
        o.keep = 2;
        decide(runs, 5, &o, d);
        cr_assert_eq(d[4].verdict, AJ_PRUNE_KEEP_NEWEST, "the newest (and young)");
        cr_assert_eq(d[3].verdict, AJ_PRUNE_KEEP_NEWEST, "old, but the second newest");
        cr_assert_eq(d[2].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);

        AjPruneRun young[] = { done(3), done(2), done(1) };
        decide(young, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_YOUNG, "beyond --keep, but not older than 7d");
        cr_assert(!d[0].matched);
}

Test(prune, live_and_unknown_runs_are_never_removed)
{
        AjPruneRun runs[] = {
                { .life = AJ_PRUNE_LIVE, .owned = true, .time_ns = NOW - 30 * DAY },
                { .life = AJ_PRUNE_UNKNOWN, .owned = true, .time_ns = NOW - 30 * DAY },
                done(0.5),
        };
        AjPruneDecision d[3];
        AjPruneOptions o = keep(0);
        o.quarantined = o.discard_pending = true;
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_LIVE);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_KEEP_UNKNOWN);
        cr_assert(d[0].matched && d[1].matched, "chosen by the rules, so the operator is told why they stay");
        cr_assert_eq(d[2].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[0].rank, SIZE_MAX);
        cr_assert_eq(d[1].rank, SIZE_MAX);
        cr_assert_eq(d[2].rank, 0);
}

Test(prune, a_live_run_takes_no_place_among_the_newest)
{
        /* The live run is newer, but --keep 1 keeps the newest *finished* run. */
        AjPruneRun runs[] = { done(2), done(1), { .life = AJ_PRUNE_LIVE, .owned = true, .time_ns = NOW } };
        AjPruneDecision d[3];
        AjPruneOptions o = keep(1);
        decide(runs, 3, &o, d);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_KEEP_NEWEST);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_LIVE);
}

Test(prune, quarantined_and_pending_need_their_flags)
{
        AjPruneRun runs[] = { done(9), done(9), done(9) };
        runs[0].quarantined = true;
        runs[1].pending = true;
        runs[2].quarantined = runs[2].pending = true;
        AjPruneDecision d[3];
        AjPruneOptions o = older_than(7);
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_QUARANTINED);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_KEEP_PENDING);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_QUARANTINED);
        cr_assert(d[0].matched && d[1].matched && d[2].matched);

        o.quarantined = true;
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_KEEP_PENDING);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_PENDING, "--quarantined does not discard pending changes");

        o.quarantined = false;
        o.discard_pending = true;
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_QUARANTINED);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_QUARANTINED);

        o.quarantined = true;
        decide(runs, 3, &o, d);
        for (size_t i = 0; i < 3; i++)
                cr_assert_eq(d[i].verdict, AJ_PRUNE_REMOVE);
}

Test(prune, quarantined_runs_count_among_the_newest)
{
        /* --keep N keeps the newest N finished runs, quarantined ones included. */
        AjPruneRun runs[] = { done(3), done(2), done(1) };
        runs[2].quarantined = true;
        AjPruneDecision d[3];
        AjPruneOptions o = keep(1);
        decide(runs, 3, &o, d);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_NEWEST);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_REMOVE);
}

Test(prune, someone_elses_run_stays)
{
        AjPruneRun runs[] = { done(9), done(9) };
        runs[0].owned = false;
        AjPruneDecision d[2];
        AjPruneOptions o = older_than(1);
        o.quarantined = o.discard_pending = true;
        decide(runs, 2, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_NOT_OWNER);
        cr_assert(d[0].matched);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
}

/* A dead run whose cgroup still holds processes the reap could not kill: its directory is
 * the one trace of them (and of the host id slot they keep), whatever the rules say. It
 * still counts among the newest, as a finished run. */
Test(prune, a_run_whose_cgroup_still_holds_processes_stays)
{
        AjPruneRun runs[] = { done(9), done(8), done(1) };
        runs[0].remains = true;
        AjPruneDecision d[3];
        AjPruneOptions o = older_than(2);
        o.quarantined = o.discard_pending = true;
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_REMAINS);
        cr_assert(d[0].matched, "chosen by the rules, and told why it stays");
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert_eq(d[2].verdict, AJ_PRUNE_KEEP_YOUNG);
        o = keep(1);
        decide(runs, 3, &o, d);
        cr_assert_eq(d[0].rank, 2);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_REMAINS);
}

/* A copy of a live run's directory (dead by its own locks) whose cgroup and runtime dir the
 * live run holds: kept, and told so, not as a run whose processes do not die. */
Test(prune, a_run_whose_remains_a_live_run_holds_stays_in_use)
{
        AjPruneRun runs[] = { done(9), done(8) };
        runs[0].in_use = true;
        AjPruneDecision d[2];
        AjPruneOptions o = keep(0);
        decide(runs, 2, &o, d);
        cr_assert_eq(d[0].verdict, AJ_PRUNE_KEEP_IN_USE);
        cr_assert(d[0].matched);
        cr_assert_eq(d[1].verdict, AJ_PRUNE_REMOVE);
        cr_assert(strstr(aj_prune_verdict_reason(AJ_PRUNE_KEEP_IN_USE), "live run of the same id"));
}

Test(prune, nothing_to_decide)
{
        AjPruneOptions o = keep(3);
        cr_assert_eq(aj_prune_select(NULL, 0, &o, NULL), 0);
}

Test(prune, verdict_names_and_reasons)
{
        cr_assert_str_eq(aj_prune_verdict_name(AJ_PRUNE_REMOVE), "remove");
        cr_assert_str_eq(aj_prune_verdict_name(AJ_PRUNE_KEEP_PENDING), "pending");
        cr_assert_str_eq(aj_prune_verdict_name(AJ_PRUNE_KEEP_NOT_OWNER), "not_owner");
        cr_assert_str_eq(aj_prune_verdict_name((AjPruneVerdict)99), "?");
        cr_assert_str_eq(aj_prune_verdict_name(AJ_PRUNE_KEEP_REMAINS), "remains");
        cr_assert_str_eq(aj_prune_verdict_name(AJ_PRUNE_KEEP_IN_USE), "in_use");
        for (int v = AJ_PRUNE_REMOVE; v <= AJ_PRUNE_KEEP_IN_USE; v++) {
                cr_assert_str_neq(aj_prune_verdict_name((AjPruneVerdict)v), "?");
                cr_assert_str_neq(aj_prune_verdict_reason((AjPruneVerdict)v), "?");
        }
        cr_assert(strstr(aj_prune_verdict_reason(AJ_PRUNE_KEEP_QUARANTINED), "--quarantined"));
        cr_assert(strstr(aj_prune_verdict_reason(AJ_PRUNE_KEEP_PENDING), "--discard-pending"));
}

Test(prune, leftover_names)
{
        cr_assert_str_eq(aj_run_leftover_id(".removing-0123456789ab"), "0123456789ab");
        cr_assert_null(aj_run_leftover_id("0123456789ab"), "a run is not a leftover");
        cr_assert_null(aj_run_leftover_id(".removing-0123456789AB"));
        cr_assert_null(aj_run_leftover_id(".removing-0123456789ab/.."));
        cr_assert_null(aj_run_leftover_id(".removing-"));
        cr_assert_null(aj_run_leftover_id(".removing-../../etc"));
}

/* ---- aj_tree_usage (util/fd.h): the sizes prune reports ---------------------------- */

static char tree[64];

static void write_bytes(const char *path, size_t len)
{
        char *buf = malloc(len);
        cr_assert_not_null(buf);
        memset(buf, 'x', len);
        cr_assert_eq(aj_write_file_atomic(path, buf, len, 0600), 0);
        free(buf);
}

static void tree_setup(void)
{
        snprintf(tree, sizeof(tree), "/tmp/aj-usage-XXXXXX");
        cr_assert_not_null(mkdtemp(tree));
}

static void tree_teardown(void) { aj_rm_rf(tree); }

Test(tree_usage, counts_files_and_never_follows_symlinks, .init = tree_setup, .fini = tree_teardown)
{
        char p[256], outside[] = "/tmp/aj-usage-out-XXXXXX";
        cr_assert_not_null(mkdtemp(outside));
        snprintf(p, sizeof(p), "%s/big", outside);
        write_bytes(p, 1 << 20);

        uint64_t empty;
        cr_assert_eq(aj_tree_usage(tree, &empty), 0);
        snprintf(p, sizeof(p), "%s/a", tree);
        write_bytes(p, 64 * 1024);
        snprintf(p, sizeof(p), "%s/d", tree);
        cr_assert_eq(mkdir(p, 0700), 0);
        snprintf(p, sizeof(p), "%s/d/b", tree);
        write_bytes(p, 64 * 1024);
        snprintf(p, sizeof(p), "%s/d/link", tree);
        cr_assert_eq(symlink(outside, p), 0);

        uint64_t bytes;
        cr_assert_eq(aj_tree_usage(tree, &bytes), 0, "exact");
        cr_assert_geq(bytes, empty + 128 * 1024, "both files: %llu", (unsigned long long)bytes);
        cr_assert_lt(bytes, empty + 512 * 1024, "not the 1 MiB behind the symlink: %llu", (unsigned long long)bytes);
        aj_rm_rf(outside);

        snprintf(p, sizeof(p), "%s/d/link", tree);
        cr_assert_eq(aj_tree_usage(p, &bytes), 0, "a symlink itself");
        cr_assert_lt(bytes, 64 * 1024);
        cr_assert_eq(aj_tree_usage("/nonexistent/aj-usage", &bytes), -ENOENT);
}

Test(tree_usage, hard_links_count_once, .init = tree_setup, .fini = tree_teardown)
{
        char p[256], q[256];
        uint64_t empty, one, many;
        cr_assert_eq(aj_tree_usage(tree, &empty), 0);
        snprintf(p, sizeof(p), "%s/big", tree);
        write_bytes(p, 1 << 20);
        cr_assert_eq(aj_tree_usage(tree, &one), 0);
        /* 300 more names for the same 1 MiB, as an agent can make in its overlay. */
        for (int i = 0; i < 300; i++) {
                snprintf(q, sizeof(q), "%s/l%d", tree, i);
                cr_assert_eq(link(p, q), 0);
        }
        cr_assert_eq(aj_tree_usage(tree, &many), 0, "exact");
        cr_assert_lt(many, one + 256 * 1024, "the file once (%llu against %llu), not 301 times",
                     (unsigned long long)many, (unsigned long long)one);
        cr_assert_geq(many, empty + (1 << 20));
}

Test(tree_usage, too_deep_is_a_lower_bound, .init = tree_setup, .fini = tree_teardown)
{
        char p[4096];
        size_t len = (size_t)snprintf(p, sizeof(p), "%s", tree);
        for (int i = 0; i < AJ_TREE_USAGE_LEVELS + 2; i++) {
                len += (size_t)snprintf(p + len, sizeof(p) - len, "/d");
                cr_assert_eq(mkdir(p, 0700), 0);
        }
        snprintf(p + len, sizeof(p) - len, "/f");
        write_bytes(p, 64 * 1024);
        uint64_t bytes;
        cr_assert_eq(aj_tree_usage(tree, &bytes), 1, "deeper than the bound: not all counted, and it says so");
        cr_assert_lt(bytes, 64 * 1024 + (AJ_TREE_USAGE_LEVELS + 3) * 4096);
}
