/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host ids of a run's own. The kernel counts a user's budgets per host uid across user
 * namespaces (ucounts: pending signals and POSIX timers under RLIMIT_SIGPENDING, inotify
 * instances and watches, mqueue bytes, pipe pages past fs.pipe-user-pages-soft), so jails
 * that all map to one host uid share them: one agent exhausting inotify instances leaves
 * every other jail on the host with none. A root-started run whose profile does not name
 * its host ids (user.host_uid/host_gid) takes a slot of a fixed pool instead: uid = gid =
 * AJ_HOST_ID_POOL_FIRST + slot, distinct from every other live run's. Distinct ids alone
 * divide only what the kernel counts per uid (pipe pages): the ucounts are charged, above
 * a user namespace, to its owner, so the jail's namespace is created as these ids too
 * (aj_spawn_clone()'s owner).
 *
 * A slot is held by an exclusive flock on the file <dir>/<id> (the directory is root's,
 * 0700, created on first use; the files stay, one per slot ever used at once, which the
 * lowest-free-first choice keeps at the peak number of concurrent runs). A lock lives as
 * long as any fd on its open file: the supervisor and its watchdog hold it, so a killed
 * supervisor frees the slot only when the watchdog has killed what was left of the jail and
 * exits. The jail's init closes it before the command runs (never the agent's to unlock).
 *
 * The lock alone is not the jail's life: a watchdog that gives up on a process that does not
 * die (AJ_CGROUP_REMOVE_LATE_MS), or one killed with its supervisor, lets go of it while the
 * jail's processes may still run as these ids. So the slot's file also names the run's
 * cgroup directories (aj_host_id_lease_mark, written before any process is in them), and a
 * slot whose last holder's directories are still there is not free, whoever holds its lock
 * (fail closed: one that cannot be checked is not free either). `agentjail prune` removes a
 * dead run's cgroup once its processes are gone (runs.h aj_run_reap), which frees the slot;
 * the file names the run's directory too ("/@<dir>" line), so that root's prune also finds, from
 * the slot, a cgroup whose run directory is gone (runs.h aj_run_reap_orphans).
 *
 * A profile that names ids inside the pool shares them on purpose (today's behaviour):
 * it takes a shared lock on their slot, so the pool never hands that slot to a run of
 * its own while such a run lives, and the run does not start while one holds it alone, nor
 * while the slot keeps an ended run's cgroup (the same leftovers the pool checks).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

/* 0x70000000: past Debian's subordinate ranges (useradd hands them out from 100000 up to
 * 600100000), systemd-nspawn's (524288-1879048191) and systemd's own; the pool ends below
 * 2^31 (1879113727). */
#define AJ_HOST_ID_POOL_FIRST 1879048192UL
#define AJ_HOST_ID_POOL_SIZE 65536UL
/* Root's, whatever AGENTJAIL_RUNTIME_DIR says: the budgets are the whole host's, so is the
 * pool (runs with different runtime dirs must not get the same ids). */
#define AJ_HOST_ID_POOL_DIR "/run/agentjail/host-ids"

/* The locks a run holds on its ids' slots: two when a profile names a uid and a gid in two
 * different slots. -1: none. Held by an exclusive (own: fd[0]) or shared (named) lock. */
typedef struct {
        int fd[2];
        bool own;        /* a slot of the run's own (aj_host_id_pool_take) */
        size_t mark_len; /* its file's length (aj_host_id_lease_mark pads to it) */
} AjHostIdLease;

#define AJ_HOST_ID_LEASE_INIT    \
        {                        \
                .fd = { -1, -1 } \
        }

/* The most a slot's file holds: the run's cgroup directories, one per line. */
#define AJ_HOST_ID_MARK_MAX 8192

static inline bool aj_host_id_in_pool(unsigned long id)
{
        return id >= AJ_HOST_ID_POOL_FIRST && id - AJ_HOST_ID_POOL_FIRST < AJ_HOST_ID_POOL_SIZE;
}

/* The lowest free slot of the first n_slots (<= AJ_HOST_ID_POOL_SIZE; tests use fewer)
 * under `dir`, locked exclusively: its id in *ret_id. A slot is free when nobody holds its
 * lock and none of the directories its file names exists (then its file is emptied for the
 * new holder's). -EUSERS when every slot is held or keeps an ended run's directories;
 * -EPERM when `dir` or its parent is not the euid's alone (a symlink, writable by others);
 * else -errno of a mkdir, open or flock; ret_error says which. */
int aj_host_id_pool_take(const char *dir, unsigned long n_slots, AjHostIdLease *ret, unsigned long *ret_id,
                         AjError *ret_error);
/* A profile's named ids: a shared lock on the slot of each that is in the pool (none
 * outside it). -EBUSY when a run holds one of them as its own, or its slot keeps an ended
 * run's directories (or its file cannot be read: not free for the pool either). */
int aj_host_id_pool_share(const char *dir, uid_t uid, gid_t gid, AjHostIdLease *ret, AjError *ret_error);
/* Names in the own slot's file the directories that hold the run's processes (its cgroup's,
 * aj_cgroup_paths), before any process is in them: the slot stays taken while one of them
 * exists. Called again as more are made, with every one of them, the first ones first (the
 * file only grows, so a supervisor killed in the write leaves the earlier ones named).
 * `run_dir` (absolute; NULL: none) goes first, on a line of its own ("/@<run_dir>"): whose
 * directories they are, so that `prune` can tell those no run directory leads to any more
 * (aj_host_id_pool_kept). 0 and nothing written for a lease without a slot of its own;
 * -E2BIG past AJ_HOST_ID_MARK_MAX, -EINVAL for a path that is not absolute or holds a
 * newline; else -errno of the write. */
int aj_host_id_lease_mark(AjHostIdLease *l, const char *run_dir, char *const *paths);
void aj_host_id_lease_release(AjHostIdLease *l);

/* Every slot under `dir` that nobody holds and that keeps an ended run's directories (the
 * ones its file names that are still there): fn(id, run_dir, dirs, userdata), run_dir the
 * run directory its file names (NULL: none, an older agentjail's), called with the slot's
 * lock held exclusively (no run takes it meanwhile). What removes those directories frees
 * the slot (`agentjail prune`, for a run whose directory is gone: runs.h
 * aj_run_reap_orphans). A slot whose file cannot be read or is not ours is left out (it
 * stays kept). 0 without the directory; else the first -errno of fn, or of opening the
 * directory (ret_error says which). */
typedef int (*AjHostIdKeptFn)(unsigned long id, const char *run_dir, char *const *dirs, void *userdata);
int aj_host_id_pool_kept(const char *dir, AjHostIdKeptFn fn, void *userdata, AjError *ret_error);
