/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The watchdog: a process forked outside the jail (comm aj-watchdog, a process group of its
 * own) that waits on a socket; if the supervisor dies without saying "done", it restores the
 * operator's terminal, kills and removes the run's cgroup (waiting up to
 * AJ_CGROUP_REMOVE_LATE_MS for its processes to leave) and runtime dir, and appends
 * supervisor.lost. A supervisor whose own removal hit its bound hands the rest to it. The supervisor holds a pidfd on it in its loop: a dead watchdog is
 * replaced (3 times), then the run ends (fail closed).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <termios.h>

#include "supervisor/sink.h"
#include "util/loop.h"

typedef struct {
        /* The run's state changed (run.json has the new watchdog's pid). */
        void (*changed)(void *userdata);
        /* No watchdog any more: end the run. */
        void (*lost)(void *userdata);
} AjSupWatchdogOps;

typedef struct {
        const char *id, *run_dir, *runtime_dir; /* borrowed */
        int term_fd;                            /* the operator's terminal to restore, or -1 */
        /* Kept open until it exits, -1 none: the locks on the run's host ids
         * (src/host-id-pool.h), so that a killed supervisor's slot stays taken until the
         * jail's processes are killed and its cgroup is gone; the run's live.lock
         * (run-record.h), so that the run counts as live until supervisor.lost is written;
         * and the run directory's life lock (state.h aj_run_dir_create), so that nobody
         * removes the directory meanwhile. Every watchdog keeps them. */
        int hold_fds[4];
        const struct termios *term_saved;
        /* Optional: work the first watchdog does for the supervisor before it starts to wait
         * (it would only wait): its result written to fd, which the supervisor reads through
         * aj_sup_watchdog_take_prework(). */
        void (*prework)(void *arg, int fd);
        void *prework_arg;
} AjSupWatchdogConfig;

typedef struct {
        AjSupWatchdogConfig cfg;
        const AjSupWatchdogOps *ops;
        void *userdata;
        AjSupSink events;
        AjLoop *loop;
        int fd; /* our end of its socket: 'D' then close on a clean finish */
        pid_t pid;
        int pidfd; /* in the loop */
        AjLoopIo *io;
        int restarts;
        int prework_fd; /* read end of the first watchdog's prework, until taken */
} AjSupWatchdog;

#define AJ_SUP_WATCHDOG_INIT                            \
        {                                               \
                .fd = -1, .pidfd = -1, .prework_fd = -1 \
        }

/* Forks it: before anything exists on the host that a killed supervisor would leave behind. */
int aj_sup_watchdog_start(AjSupWatchdog *wd, const AjSupWatchdogConfig *cfg, const AjSupWatchdogOps *ops,
                          void *userdata, const AjSupSink *events);
/* Its pidfd into the loop (already dead shows at the first wait). */
int aj_sup_watchdog_watch(AjSupWatchdog *wd, AjLoop *loop);
void aj_sup_watchdog_stop(AjSupWatchdog *wd);
/* Its pid, 0 when there is none. */
pid_t aj_sup_watchdog_pid(const AjSupWatchdog *wd);
/* The run is over and cleaned up: "done", it exits. With cgroup_left (the supervisor's
 * aj_cgroup_remove() hit its bound, AJ_CGROUP_REMOVE_MS): it goes on removing the cgroup for up
 * to AJ_CGROUP_REMOVE_LATE_MS, keeping the fds it holds (the host ids) until then, and appends
 * cgroup.removed, or cgroup.left (the directories still there) when the bound is hit. */
void aj_sup_watchdog_finish(AjSupWatchdog *wd, bool cgroup_left);
/* Hands it a duplicate of fd (the caller keeps its own) to hold until it exits: the jail's
 * mount namespace, whose teardown (an RCU grace period, every mount of the jail's root
 * unmounted) then happens in the watchdog's exit after the run, not in the jail init's on
 * the run's way out. At most 4; a watchdog started again after a death holds none. */
int aj_sup_watchdog_hold(AjSupWatchdog *wd, int fd);
/* The prework's read end (the caller's to close), or -1. */
int aj_sup_watchdog_take_prework(AjSupWatchdog *wd);
