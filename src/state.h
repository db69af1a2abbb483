/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where runs live. Root: /var/lib/agentjail (state) and /run/agentjail
 * (runtime: sockets, mount points); rootless: $XDG_STATE_HOME/agentjail and
 * $XDG_RUNTIME_DIR/agentjail (without it, /tmp/agentjail-UID, which must be the
 * invoker's, mode 0700: aj_runtime_root_prepare). AGENTJAIL_STATE_DIR / AGENTJAIL_RUNTIME_DIR
 * override both (tests use them).
 *   <state>/runs/<id>/         the run's records (src/run-record.h), stdout.log, stderr.log
 *   <state>/cache/seccomp/   compiled filters
 *   <runtime>/<id>/          per-run sockets and the jail root's mount point
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "util/error.h"

typedef struct {
        char *state_root;
        char *runtime_root;
        bool runtime_in_tmp; /* rootless without XDG_RUNTIME_DIR: /tmp/agentjail-UID */
} AjPaths;

int aj_paths_resolve(AjPaths *ret);
void aj_paths_done(AjPaths *p);

#define AJ_RUN_ID_LEN 12
/* 12 lowercase hex characters from getrandom(). */
int aj_run_id_new(char ret[AJ_RUN_ID_LEN + 1]);

/* What a command does with the state dir, for aj_state_root_check(). */
typedef enum {
        /* An operator command reading records (ps, logs, inspect): a missing dir is fine,
         * root's is fine, and root may read anyone's. */
        AJ_STATE_READ,
        /* One acting on what the records say with the invoker's rights (rollback --apply runs
         * the recorded rollback.exec, commit writes to the recorded workspace): only records
         * nobody else could have written, so the invoker's or root's, root's alone for root. */
        AJ_STATE_ACT,
        /* A run writing its own: the invoker's, made if missing (0750 as root, 0700 rootless). */
        AJ_STATE_RUN,
} AjStateUse;

/*
 * The state root must be ours alone, as doctor says: owned by the euid, writable by nobody
 * else, not a symlink. Another user's (AGENTJAIL_STATE_DIR=/tmp/x made first) could swap a
 * run's directory for one of theirs: forged records, forged undo records for `rollback
 * --apply`. `use` relaxes that for reading (above).
 * -EPERM with ret_error saying what is wrong.
 */
int aj_state_root_check(const AjPaths *paths, AjStateUse use, AjError *ret_error);
/* <state>/runs/<id>, created 0750 as root, 0700 rootless (fails if it exists), and its
 * life's lock: *ret_lock_fd, the directory opened (CLOEXEC) with a shared flock() on it,
 * which the run's supervisor and its watchdogs hold until the run's records are all
 * written (the watchdog, after a killed supervisor, until supervisor.lost is). Removing a
 * run directory takes it exclusively (aj_run_remove_dir, src/runs.h): a run that lives, or
 * is starting with no run.json yet, is never removed under its supervisor. */
int aj_run_dir_create(const AjPaths *paths, const char *id, char **ret_dir, int *ret_lock_fd);
/* The name a run directory has until its lock is held (<state>/runs/.making-<id>): never a
 * run's, so nothing sees a run's directory unheld. One is left only by a supervisor killed
 * in those few syscalls (empty; not a run: ps and prune pass it by). */
#define AJ_RUN_DIR_MAKING_PREFIX ".making-"
/* Lets go of the run directory's life lock (for every process sharing it) and closes it;
 * *lock_fd becomes -1. With `watchdog_keeps` (a watchdog still removing the run's cgroup, "C",
 * shares the open file and records after us) only closes it: the lock is the watchdog's until
 * it exits. Accepts -1. */
void aj_run_dir_unhold(int *lock_fd, bool watchdog_keeps);
/* <runtime>/<id> (not created). */
char *aj_runtime_dir_path(const AjPaths *paths, const char *id);
/* <runtime>/.root: the mount point every jail mounts its root on, inside its own
 * mount namespace (always empty on the host). Created once. */
int aj_root_mountpoint(const AjPaths *paths, char **ret);
/*
 * Creates the runtime root if needed and checks it is ours alone: owned by the euid,
 * writable by nobody else, not a symlink (never followed); the /tmp fallback must also
 * have mode 0700 (any local user can create /tmp/agentjail-UID first). -EPERM with ret_error saying what is wrong. Call before the two below.
 */
int aj_runtime_root_prepare(const AjPaths *paths, AjError *ret_error);
/* What makes a runtime root unsafe for `uid` (NULL: nothing). `exact_0700` for the /tmp
 * fallback. Pure. */
const char *aj_runtime_root_problem(const struct stat *st, uid_t uid, bool exact_0700);
/* <runtime>/<id>, created 0711. */
int aj_runtime_dir_create(const AjPaths *paths, const char *id, char **ret_dir);
/* Like a run's cgroup (cgroup.h aj_cgroup_claim), its runtime dir is named by the run id
 * alone, one for every state directory that shares the runtime root: the supervisor holds
 * it (LOCK_SH, `exclusive` false) for its life, and what removes one it did not make (a reap)
 * takes it exclusively first. The open directory (O_NOFOLLOW) in *ret_fd; -EBUSY when held
 * the other way, -ELOOP/-ENOTDIR for what is not a directory. */
int aj_runtime_dir_hold(const char *dir, bool exclusive, int *ret_fd);
int aj_runtime_dir_remove(const char *dir);
