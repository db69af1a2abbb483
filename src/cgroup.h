/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One cgroup per run. A front end over backends (cgroup-v2.c, cgroup-v1.c,
 * ops table in cgroup-internal.h): pure cgroup v2, or hybrid hosts where the
 * v1 memory/pids/cpu/freezer controllers sit beside a v2 tree whose
 * cgroup.freeze / cgroup.kill still work.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/macros.h"

typedef enum {
        AJ_CGROUP_MODE_UNIFIED, /* pure v2 */
        AJ_CGROUP_MODE_HYBRID,  /* v1 controllers + v2 tree (e.g. /sys/fs/cgroup/unified) */
        AJ_CGROUP_MODE_LEGACY,  /* v1 only */
        AJ_CGROUP_MODE_NONE,
} AjCgroupMode;

typedef struct {
        uint64_t memory_max; /* bytes; 0 = unlimited. Swap is always disabled when set. */
        uint64_t pids_max;   /* 0 = unlimited */
        double cpus;         /* 0 = unlimited */
} AjCgroupLimits;

typedef struct {
        uint64_t memory_current, memory_peak; /* bytes */
        uint64_t oom_kills;                   /* processes killed by the OOM killer */
        uint64_t memory_max_events;           /* times the limit was hit */
        uint64_t pids_current;
        uint64_t pids_max_events; /* forks refused at pids.max */
        uint64_t cpu_usage_usec;
        bool frozen;
} AjCgroupStats;

typedef struct AjCgroup AjCgroup;

int aj_cgroup_detect(AjCgroupMode *ret);
const char *aj_cgroup_mode_name(AjCgroupMode m);

/*
 * Create the run's cgroup "agentjail/<run_id>" in every hierarchy that is
 * needed, and apply the limits. If a requested limit cannot be enforced
 * (controller missing, no permission, no delegation), fails with -EOPNOTSUPP
 * and ret_error saying why, unless allow_degraded: then it succeeds and
 * *ret_unenforced says what is not enforced (caller records it; NULL when all is).
 * Cleans up on failure.
 */
int aj_cgroup_create(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                     char **ret_unenforced, AjError *ret_error);

/* The same in two halves, so the v1 half overlaps the jail's own setup: first what the
 * jail must be cloned into (the v2 cgroup), then, before the jail joins them, the v1
 * controller directories and their limits (same failure rules; nothing to do on pure v2). */
int aj_cgroup_create_v2_first(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                              char **ret_unenforced, AjError *ret_error);
int aj_cgroup_create_rest(AjCgroup *cg, char **ret_unenforced, AjError *ret_error);

/* Re-open an existing run's cgroup (for freeze/thaw/kill from another process). */
int aj_cgroup_open(const char *run_id, AjCgroup **ret);

/*
 * A cgroup's directories are named by the run id alone, in one tree for every state and
 * runtime directory of the host: a run directory's locks say nothing of a cgroup of that id
 * that another run directory's supervisor uses (a copy of a live run's directory, kept in
 * another state directory, is dead by its own locks). So the supervisor that creates the v2
 * directory holds it (flock LOCK_SH on its fd, the open file description aj_cgroup_v2_fd()
 * gives, closed by the jail's init and the watchdog with their other fds) until it removes
 * it; without a v2 directory (a v1-only host, or a hybrid one that could not make it), the
 * first v1 directory it made, the same way. What removes a cgroup it did not create
 * (`prune`'s reap) takes every directory of it first: aj_cgroup_claim(), LOCK_EX without
 * waiting, held until the cgroup is removed or freed; -EBUSY while a supervisor holds one.
 */
int aj_cgroup_claim(AjCgroup *cg);

/* The run ids that have a directory in some hierarchy, where aj_cgroup_open() looks (one
 * readdir of each "agentjail" parent, for a caller that asks of many runs: a miss costs
 * aj_cgroup_open() a failed lookup per hierarchy, which kernfs does not cache).
 * NULL-terminated, never NULL on success; sorted (strcmp), each id once, so a caller looks an
 * id up with aj_strv_sorted_contains(). O(n log n) in the directories listed. */
int aj_cgroup_list_ids(char ***ret_ids);

/* An O_DIRECTORY fd of the v2 cgroup for clone3(CLONE_INTO_CGROUP), or -1 if none. */
int aj_cgroup_v2_fd(const AjCgroup *cg);

/* Move `pid` into the cgroup in every hierarchy (skipping the v2 one when
 * `already_in_v2`, i.e. it was cloned into it). */
int aj_cgroup_attach(AjCgroup *cg, pid_t pid, bool already_in_v2);

/*
 * The other way into the v1 hierarchies, for a process that moves itself: the `tasks` file
 * of each of the run's v1 directories, opened for writing (O_CLOEXEC) into fds[] (at most
 * max; *ret_n of them, 0 on a pure v2 host). Writing "0" to a `tasks` file moves the writing
 * thread alone, which the kernel does without taking its threadgroup lock for writing; a pid
 * written to `cgroup.procs` (aj_cgroup_attach()) takes it, and on a hybrid host that write
 * waits for an RCU grace period whenever the lock has been idle (11 ms median on the
 * development VM, spaced runs; 0.03-0.05 ms for the thread's own "0"). So a process of one
 * thread (the jail's init) moves itself whole this way, while the opener's credentials
 * (the supervisor's: root's, or a rootless invoker's) are what the write is judged by. The caller closes the fds.
 */
#define AJ_CGROUP_V1_MAX 8 /* at least the v1 hierarchies a run uses */
int aj_cgroup_v1_task_fds(AjCgroup *cg, int *fds, size_t max, size_t *ret_n);

int aj_cgroup_freeze(AjCgroup *cg); /* returns once the kernel reports it frozen; failed: not frozen */
int aj_cgroup_thaw(AjCgroup *cg);
int aj_cgroup_kill(AjCgroup *cg); /* SIGKILL to every process, cgroup.kill where it works */
int aj_cgroup_stats(AjCgroup *cg, AjCgroupStats *ret);
/* Opens the counter files aj_cgroup_stats() reads and keeps them until the cgroup's removal:
 * each later call reads them through these fds (one read each, where an open, two reads and
 * a close were). A run calls it once its command runs, off the command's way, so that its
 * end reads run.exit's usage at that price. How many were kept. */
int aj_cgroup_keep_counters(AjCgroup *cg);
int aj_cgroup_pids(AjCgroup *cg, pid_t **ret_pids, size_t *ret_n);

/* An fd that becomes readable (EPOLLIN or EPOLLPRI) when OOM / pids.max
 * counters may have changed; call aj_cgroup_stats() then. -1 if not available. */
int aj_cgroup_event_fd(AjCgroup *cg);
/* Drain the event fd after it fired. */
void aj_cgroup_event_ack(AjCgroup *cg);

/*
 * Removal has one bound for the whole of it (kill, wait for the tasks to leave, rmdir): a task
 * still on its way out is waited for on the v2 cgroup's populated notification. The supervisor
 * waits AJ_CGROUP_REMOVE_MS, so that a jail that never empties does not hold the operator; what
 * is left then, its watchdog goes on removing, for up to AJ_CGROUP_REMOVE_LATE_MS
 * (src/supervisor/watchdog.h), as it does when the supervisor dies.
 */
#define AJ_CGROUP_REMOVE_MS 10000
#define AJ_CGROUP_REMOVE_LATE_MS (10 * 60 * 1000)

/* Kill what is left, wait up to timeout_ms for it to empty, rmdir every directory (and the
 * shared parents when unused). -ETIMEDOUT or -EBUSY: a task was still there at the bound;
 * what holds one stays, aj_cgroup_left() says so, and cg can be removed again. */
int aj_cgroup_remove(AjCgroup *cg, int timeout_ms);
/* Whether a directory of the run is still there (after a failed aj_cgroup_remove()). */
bool aj_cgroup_left(const AjCgroup *cg);
/* Whether a process is still in the run's cgroup: in the v2 directory or below it
 * (cgroup.events "populated"), or in a v1 directory (cgroup.procs), every hierarchy looked
 * at (a task can be moved out of one alone). 1, 0, or -errno when a directory cannot be read. */
int aj_cgroup_populated(const AjCgroup *cg);
/* aj_cgroup_remove() within AJ_CGROUP_REMOVE_MS, then free. */
int aj_cgroup_destroy(AjCgroup *cg);
void aj_cgroup_free(AjCgroup *cg); /* free memory only (does not remove) */
DEFINE_TRIVIAL_CLEANUP_FUNC(AjCgroup *, aj_cgroup_free);

/* Directories created for the run (for messages and run.json), NULL-terminated, owned by cg. */
char *const *aj_cgroup_paths(const AjCgroup *cg);

/* Pure helpers (unit tested). */
int aj_cgroup_format_cpu_max(double cpus, uint64_t period_us, char *buf, size_t len); /* "150000 100000" */
int aj_cgroup_parse_keyed(const char *text, const char *key, uint64_t *ret);          /* "oom_kill 3\n" */
