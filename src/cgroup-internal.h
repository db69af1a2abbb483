/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the cgroup front end (cgroup.c) and its backends
 * (cgroup-v2.c, cgroup-v1.c). Not part of the public interface, but the pure
 * parts (layout parsing, path planning) are declared here so they can be
 * unit tested.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "cgroup.h"

/* The v1 controllers a run may need. */
typedef enum {
        AJ_CG_V1_MEMORY,
        AJ_CG_V1_PIDS,
        AJ_CG_V1_CPU,
        AJ_CG_V1_CPUACCT,
        AJ_CG_V1_FREEZER,
        _AJ_CG_V1_MAX,
} AjCgroupV1Controller;

#define AJ_CG_V1_BIT(c) (1U << (c))

const char *aj_cgroup_v1_name(AjCgroupV1Controller c);

/* Where the hierarchies are mounted. */
typedef struct {
        AjCgroupMode mode;
        char *v2_mount;                /* NULL when there is no v2 hierarchy */
        char *v1_mount[_AJ_CG_V1_MAX]; /* NULL when the controller is not mounted */
} AjCgroupLayout;

void aj_cgroup_layout_done(AjCgroupLayout *l);

/* Pure: the layout from the text of /proc/self/mountinfo. */
int aj_cgroup_layout_from_mountinfo(const char *mountinfo, AjCgroupLayout *ret);
/* Reads the running system's layout (statfs first, mountinfo only when needed). */
int aj_cgroup_layout_load(AjCgroupLayout *ret);
/* For tests: the layout every later aj_cgroup_layout_load() of this process gives (a
 * v1-only host's, made from a hybrid host's by leaving its v2 tree out). */
int aj_cgroup_layout_override(const AjCgroupLayout *l);

/* Pure: the cgroup path of `controller` (NULL: the v2 "0::" entry) in the
 * text of /proc/<pid>/cgroup. -ENOENT if absent. */
int aj_cgroup_parse_proc_cgroup(const char *text, const char *controller, char **ret_path);

/* Pure: a rootless supervisor (or its watchdog) that moved into its leaf
 * "<base>/agentjail/<id>.supervisor" still nests its runs under <base>: cuts such a
 * cgroup path (from /proc/self/cgroup) back to <base> in place ("" for the root). */
void aj_cgroup_strip_supervisor_leaf(char *path);

/* Pure: [A-Za-z0-9_-]{1,64}. */
bool aj_cgroup_run_id_valid(const char *run_id);

/* Pure: which v1 controllers a run needs (bitmask of AJ_CG_V1_BIT). On hybrid
 * hosts only those that enforce a requested limit (v2 does freeze, kill and
 * cpu accounting); freezer only when the v2 tree cannot freeze. On v1-only
 * hosts the freezer and cpuacct always (freeze/kill, cpu usage). */
unsigned aj_cgroup_v1_needed(AjCgroupMode mode, const AjCgroupLimits *limits, bool v2_can_freeze);

/* Absolute directories of one run. NULL entries are not used. A v1 entry with
 * v1_alias[c] set shares its directory with an earlier controller (co-mounted,
 * e.g. "cpu,cpuacct"): it is neither created nor removed on its own. */
typedef struct {
        char *v2_parent, *v2_run;
        char *v1_parent[_AJ_CG_V1_MAX], *v1_run[_AJ_CG_V1_MAX];
        bool v1_alias[_AJ_CG_V1_MAX];
} AjCgroupPlan;

void aj_cgroup_plan_done(AjCgroupPlan *p);

/*
 * Pure: plan the run's directories: <mount><base>/agentjail/<run_id>.
 * v2_base / v1_base[c] are cgroup paths relative to the hierarchy root ("/"
 * for root-started runs, the delegated cgroup for rootless ones); a NULL base
 * means "/". with_v2 selects the v2 directory, v1_mask the v1 controllers.
 */
int aj_cgroup_plan_paths(const AjCgroupLayout *layout, const char *run_id, bool with_v2, const char *v2_base,
                         char *const *v1_base, unsigned v1_mask, AjCgroupPlan *ret);

/* A counter file kept open: its directory's fd (aj_cg_v1(), aj_cg_v2()) and name. */
#define AJ_CG_KEPT_MAX 16
typedef struct {
        int dfd;
        char file[32];
        int fd;
} AjCgKept;

struct AjCgroup {
        AjCgroupMode mode;
        char *run_id;
        AjCgroupPlan plan;
        /* Which run directories exist and are ours (created, or found by open). */
        bool have_v2;
        bool have_v1[_AJ_CG_V1_MAX];
        int v2_fd; /* the v2 directory's, from its creation to its removal (its files are
                    * opened relative to it, and it holds the lock of aj_cgroup_claim) */
        /* Each primary v1 directory's fd, from its creation to its removal; an alias has its
         * primary's (not closed on its own); -1 none: its files are opened by path. */
        int v1_fd[_AJ_CG_V1_MAX];
        /* Locks on v1 directories (cgroup.h aj_cgroup_claim): the creator's shared one on the
         * first it made when there is no v2 directory (v2_fd holds that one), a claim's
         * exclusive one on each; -1 none. */
        int v1_lock_fd[_AJ_CG_V1_MAX];
        int event_fd; /* inotify (v2) or eventfd (v1 oom_control); owned */
        char **paths; /* for aj_cgroup_paths() */
        /* aj_cgroup_create_v2_first(): the v1 directories wait for aj_cgroup_create_rest() */
        bool v1_pending;
        AjCgroupLimits pending_limits;
        bool pending_allow_degraded;
        /* v2 without memory.peak (before Linux 5.19): the largest usage seen so far */
        uint64_t v2_peak_seen;
        /* The counter files aj_cgroup_stats() reads, kept open by aj_cgroup_keep_counters()
         * until the removal; `keeping` while it opens them. */
        AjCgKept kept[AJ_CG_KEPT_MAX];
        size_t n_kept;
        bool keeping;
        /* Rootless on pure v2: the delegated cgroup we started in, and the leaf
         * "<v2_parent>/<run_id>.supervisor" that our processes moved to so that it
         * could enable controllers (cgroup-v2.c, leave_base()); NULL otherwise. */
        char *v2_base, *v2_leaf;
        unsigned v2_base_enabled; /* controllers we enabled in v2_base's subtree_control */
};

/* Collects what a creation could not enforce. */
typedef struct {
        bool allow_degraded;
        bool rootless_hint; /* append the advice for unprivileged users once */
        char *text;         /* "; "-separated reasons */
} AjCgroupReasons;

/* Record that something cannot be enforced: -EOPNOTSUPP unless degraded
 * runs are allowed, then 0 (the reason is kept either way). */
int aj_cgroup_unenforced(AjCgroupReasons *r, const char *fmt, ...) _printf_(2, 3);

/* A cgroup directory as the file helpers take it: its path, and for the run's own directories
 * the fd kept open from their creation to their removal, which their files are opened relative
 * to: one name to look up, where the whole path is six or seven (/sys/fs/cgroup/memory/
 * agentjail/<id>/memory.limit_in_bytes) and a run opens some 25 of them. */
typedef struct {
        const char *path;
        int fd; /* -1: by path */
} AjCgDir;

static inline AjCgDir aj_cg_path(const char *path) { return (AjCgDir){ path, -1 }; }
static inline AjCgDir aj_cg_v2(const AjCgroup *cg) { return (AjCgDir){ cg->plan.v2_run, cg->v2_fd }; }
static inline AjCgDir aj_cg_v1(const AjCgroup *cg, size_t c) { return (AjCgDir){ cg->plan.v1_run[c], cg->v1_fd[c] }; }

/* Closes primary v1 directory c's fd, and its aliases' copies of it. */
void aj_cg_close_v1(AjCgroup *cg, size_t c);

/* Small file helpers on "<dir>/<file>". */
int aj_cg_read(AjCgDir dir, const char *file, char **ret);
int aj_cg_read_u64(AjCgDir dir, const char *file, uint64_t *ret);
int aj_cg_read_keyed(AjCgDir dir, const char *file, const char *key, uint64_t *ret);
int aj_cg_write(AjCgDir dir, const char *file, const char *text);
bool aj_cg_exists(AjCgDir dir, const char *file);
/* mkdir "parent" (may exist) then "run" (must not), redoing the parent when
 * a concurrent destroy removed it between the two. */
int aj_cg_mkdir_run(const char *parent, const char *run);
/* An fd of `dir` locked (flock `how`, LOCK_SH or LOCK_EX) without waiting: -EBUSY when held
 * in a conflicting mode (cgroup.h aj_cgroup_claim). */
int aj_cg_lock_dir(const char *dir, int how, int *ret_fd);
/* A counter of aj_cgroup_stats(): through its kept fd when there is one (read again from its
 * start); else opened, and kept while cg->keeping (then -EAGAIN: not read). */
int aj_cg_counter(AjCgroup *cg, AjCgDir dir, const char *file, char **ret);
int aj_cg_counter_u64(AjCgroup *cg, AjCgDir dir, const char *file, uint64_t *ret);
int aj_cg_counter_keyed(AjCgroup *cg, AjCgDir dir, const char *file, const char *key, uint64_t *ret);
void aj_cg_close_counters(AjCgroup *cg);
/* rmdir, retrying on EBUSY (a task still on its way out; v1 offlining) until `deadline`
 * (CLOCK_MONOTONIC ms), and for at least ~1 s. */
int aj_cg_rmdir(const char *dir, int64_t deadline);
/* rmdir of a shared "agentjail" parent; ENOTEMPTY/EBUSY mean another run uses it. */
void aj_cg_rmdir_parent(const char *dir);
/* Wait on a kernfs file (cgroup.events) until `key` reads `want`, POLLPRI. */
/* What is left until `deadline` (CLOCK_MONOTONIC ms) as a timeout in ms: 0 once it passed. */
int aj_cg_ms_left(int64_t deadline);
/* Through cg's kept fd of the file when it has one (NULL: none). */
int aj_cg_wait_keyed(const AjCgroup *cg, AjCgDir dir, const char *file, const char *key, uint64_t want, int timeout_ms);
/* The pids in "<dir>/cgroup.procs". */
int aj_cg_read_pids(AjCgDir dir, pid_t **ret, size_t *ret_n);
/* Move pid into dir (writes cgroup.procs). */
int aj_cg_attach(AjCgDir dir, pid_t pid);
/* DIR/FILE opened (O_CLOEXEC | O_NOFOLLOW added), or -errno. */
int aj_cg_open(AjCgDir dir, const char *file, int flags);
/* One pass of `sig` to every task listed in dir's cgroup.procs: how many there were, or -errno.
 * Never by number (kill(2)): a listed task that exits and is reaped before its signal leaves its
 * pid to the next fork on the host, which a kill by number would hit (aj_cg_signal_listed). */
int aj_cg_signal_all(AjCgDir dir, int sig);
/* `sig` to those of pids[] (read from dir's cgroup.procs earlier) that are still the cgroup's
 * when signalled: each through a pidfd opened before cgroup.procs is read again, and only if that
 * list still holds its pid. 0, or -errno (a pidfd that cannot be opened but for a gone task, a
 * list that cannot be read: then the rest of the batch is not signalled). */
int aj_cg_signal_listed(AjCgDir dir, int sig, const pid_t *pids, size_t n);

#define AJ_CG_WAIT_MS 5000

/* A kill's error once the cgroup is gone: removed under us (the run's supervisor saw the
 * jail end and cleaned up), it held nothing, since only an empty cgroup can be removed:
 * opening its files gives ENOENT, reading one already open ENODEV. */
static inline int aj_cg_removed_is_empty(int r) { return r == -ENOENT || r == -ENODEV ? 0 : r; }

/* Where cgroup filesystems are mounted, and the most a cgroup file may hold when read whole. */
#define CGROUP_ROOT "/sys/fs/cgroup"
#define CG_FILE_MAX (1024 * 1024)

/*
 * One backend per hierarchy kind. A run on a hybrid host uses both: the v2
 * part (no controllers there) for CLONE_INTO_CGROUP, freeze, kill, cpu usage,
 * and the v1 part for the limits. Each op touches only its own directories
 * and is a no-op when it has none.
 */
typedef struct {
        const char *name;
        /* Create this hierarchy's directories and apply the limits it enforces. */
        int (*create)(AjCgroup *cg, const AjCgroupLimits *limits, AjCgroupReasons *reasons);
        int (*attach)(AjCgroup *cg, pid_t pid);
        /* Returns once the kernel reports the requested state. A freeze that is not done
         * within AJ_CG_WAIT_MS (a task that does not reach the freezer: in uninterruptible
         * sleep) fails and is undone: nothing is left half frozen, to freeze later behind the
         * caller's back, nor FREEZING, where a task does not die of its SIGKILL. */
        int (*set_frozen)(AjCgroup *cg, bool frozen);
        bool (*can_freeze)(const AjCgroup *cg);
        /* SIGKILL to every process; returns once they are gone, or -ETIMEDOUT at `deadline`
         * (CLOCK_MONOTONIC ms). */
        int (*kill)(AjCgroup *cg, int64_t deadline);
        int (*pids)(AjCgroup *cg, pid_t **ret, size_t *ret_n);
        /* Fill the fields this hierarchy knows; leave the others alone. */
        int (*stats)(AjCgroup *cg, AjCgroupStats *st);
        /* A new pollable fd for OOM/pids.max changes, -ENODATA if none. */
        int (*open_event_fd)(AjCgroup *cg, int *ret_fd);
        void (*event_ack)(AjCgroup *cg);
        /* Wait until empty (killing what is still there), rmdir the run directories and try
         * the parents; -ETIMEDOUT/-EBUSY when a directory still holds a task at `deadline`. */
        int (*remove)(AjCgroup *cg, int64_t deadline);
} AjCgroupOps;

extern const AjCgroupOps aj_cgroup_v2_ops;
extern const AjCgroupOps aj_cgroup_v1_ops;
