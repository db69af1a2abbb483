/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "events.h"
#include "log.h"
#include "run-record.h"
#include "util/syscalls.h"
#include "state.h"
#include "tty.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

/* Its comm, for operators (and tests) looking for it: a child of the supervisor. */
#define WATCHDOG_COMM "aj-watchdog"
/* How many times a run's watchdog is replaced after it died; the next death ends the run,
 * so a loop of kills cannot keep the supervisor forking. */
#define WATCHDOG_RESTARTS_MAX 3
/* What aj_sup_watchdog_hold() may hand it: the jail's mount namespace. */
#define WATCHDOG_HELD_MAX 4

/* What removing the run's cgroup came to, in the watchdog. */
typedef struct {
        int r;          /* 0: nothing of it is left */
        int64_t waited; /* ms */
        json_t *left;   /* the directories still there, when r < 0 */
} CgroupRemoval;

/* Kills what is left of the jail and removes its cgroup, waiting for the processes to leave
 * (on the v2 cgroup's populated notification) up to AJ_CGROUP_REMOVE_LATE_MS: nobody waits for
 * the watchdog, and a process on its way out of a loaded host (in D state, its memory being
 * freed) may take longer than the supervisor's AJ_CGROUP_REMOVE_MS. */
static CgroupRemoval remove_cgroup(const AjSupWatchdog *wd)
{
        CgroupRemoval res = { 0 };
        int64_t t0 = aj_now_monotonic_ms();
        AjCgroup *cg = NULL;
        int r = aj_cgroup_open(wd->cfg.id, &cg);
        if (r >= 0) {
                r = aj_cgroup_remove(cg, AJ_CGROUP_REMOVE_LATE_MS);
                if (r >= 0 || !aj_cgroup_left(cg))
                        r = 0;
                else {
                        res.left = json_array();
                        struct stat st;
                        for (char *const *p = aj_cgroup_paths(cg); *p; p++)
                                if (stat(*p, &st) == 0)
                                        json_array_append_new(res.left, json_string(*p));
                }
                aj_cgroup_free(cg);
        } else if (r == -ENOENT)
                r = 0; /* none, or the supervisor removed it */
        res.r = r;
        res.waited = aj_now_monotonic_ms() - t0;
        return res;
}

/* An event the watchdog appends to the run's chain, run.json's anchor moved to it, so that
 * removing it shows in `logs --verify`. */
static void record(const AjSupWatchdog *wd, const char *type, json_t *fields)
{
        char path[4096];
        if (aj_run_file_path(wd->cfg.run_dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0) {
                json_decref(fields);
                return;
        }
        /* The run's changes to its records (an operator's release, a rollback step) wait for
         * ours, and ours for theirs. */
        _cleanup_close_ int lock = -1;
        if (aj_events_lock(path, true, &lock) < 0) {
                json_decref(fields);
                return;
        }
        AjChainEnd end;
        /* Continues the chain's sequence numbers from the file (the supervisor's gone). */
        if (aj_events_append(path, wd->cfg.id, type, fields, &end) < 0)
                return;
        /* -ENOENT: no run.json yet, the supervisor died before the jail existed. */
        (void)aj_run_record_anchor_at(wd->cfg.run_dir, &end, type);
}

/* The removal's outcome in an event's fields: "cgroup_left" (the directories still there)
 * and "error" when it failed. */
static json_t *removal_json(CgroupRemoval *res, json_t *fields)
{
        json_object_set_new(fields, "waited_ms", json_integer(res->waited));
        if (res->r < 0) {
                json_object_set_new(fields, "cgroup_left", res->left ? res->left : json_array());
                json_object_set_new(fields, "error", json_string(strerror(-res->r)));
                res->left = NULL;
        }
        return fields;
}

/* The supervisor gone: supervisor.lost closes the chain. */
static void record_lost(const AjSupWatchdog *wd, CgroupRemoval *res)
{
        /* The jail is gone: the room kept for the records is theirs now (a disk the agent
         * filled would have none for supervisor.lost and the anchor), and nobody else would
         * remove it. */
        (void)aj_run_room_release(wd->cfg.run_dir);
        const char *action = res->r >= 0 ? "jail killed, cgroup removed" : "jail killed, cgroup left";
        record(wd, "supervisor.lost", removal_json(res, json_pack("{s:s}", "action", action)));
}

/* The supervisor could not remove the cgroup within its bound and handed it to us ('C'). */
static void finish_removal(const AjSupWatchdog *wd)
{
        CgroupRemoval res = remove_cgroup(wd);
        if (res.r < 0) {
                aj_error("Run %s: its cgroup still holds processes after %d more minutes; left in place "
                         "(cgroup.left in its events)",
                         wd->cfg.id, AJ_CGROUP_REMOVE_LATE_MS / 60000);
                record(wd, "cgroup.left", removal_json(&res, json_object()));
        } else
                record(wd, "cgroup.removed", removal_json(&res, json_object()));
}

/*
 * If the supervisor is SIGKILLed, the jail dies with it (PDEATHSIG on init), but
 * its cgroup and runtime dir would stay. A tiny process outside the jail waits on
 * a socket: its end without the 'D' message means the supervisor is gone, and it cleans
 * up. An 'H' message hands it an fd to hold until it exits (aj_sup_watchdog_hold()).
 * The supervisor in turn holds a pidfd on it (watchdog_exited()).
 */
_noreturn_ static void watchdog_main(const AjSupWatchdog *wd, int rfd, int prework_fd)
{
        (void)prctl(PR_SET_NAME, WATCHDOG_COMM, 0, 0, 0);
        /* SIGTTOU: restoring the terminal from outside its foreground group (below). */
        static const int ignored[] = { SIGINT,  SIGTERM, SIGHUP,  SIGQUIT, SIGPIPE,
                                       SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU };
        for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
                signal(ignored[i], SIG_IGN);
        /* A process group of its own: what kills the supervisor's whole group (`timeout -s
         * KILL`, a cancelled CI job, kill -KILL -PGID) must leave the one that cleans up.
         * The terminal is restored for the group it leaves. */
        pid_t group = getpgrp();
        (void)setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int keep[] = { rfd,
                       2,
                       wd->cfg.term_fd,
                       prework_fd,
                       wd->cfg.hold_fds[0],
                       wd->cfg.hold_fds[1],
                       wd->cfg.hold_fds[2],
                       wd->cfg.hold_fds[3] };
        (void)aj_close_all_except(3, keep, ARRAY_SIZE(keep));
        if (prework_fd >= 0) {
                wd->cfg.prework(wd->cfg.prework_arg, prework_fd);
                close(prework_fd);
        }
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
        }
        /* Held until we exit; the kernel drops them then. */
        int held[WATCHDOG_HELD_MAX];
        size_t n_held = 0;
        for (;;) {
                char c = 0;
                int fd = -1;
                ssize_t n = aj_recv_with_fd(rfd, &c, 1, &fd);
                if (n == 1 && c == 'H' && fd >= 0 && n_held < ARRAY_SIZE(held)) {
                        held[n_held++] = fd;
                        continue;
                }
                if (fd >= 0)
                        close(fd);
                if (n == 1 && c == 'D')
                        _exit(0);
                if (n == 1 && c == 'C') {
                        finish_removal(wd);
                        _exit(0);
                }
                if (n != -EBADMSG && !(n == 1 && c == 'H'))
                        break; /* the supervisor's end closed: it is gone */
        }

        /* First, while the operator's shell may still be waiting for its terminal: the
         * supervisor may have died with it in raw mode. */
        if (wd->cfg.term_fd >= 0)
                (void)aj_tty_restore_for(wd->cfg.term_fd, wd->cfg.term_saved, group);
        CgroupRemoval res = remove_cgroup(wd);
        (void)aj_runtime_dir_remove(wd->cfg.runtime_dir);
        record_lost(wd, &res);
        _exit(0);
}

static int watchdog_fork(AjSupWatchdog *wd)
{
        int p[2], w[2] = { -1, -1 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
                return -errno;
        /* Only the first watchdog works for the supervisor; a failed pipe just skips it. */
        if (wd->cfg.prework && wd->restarts == 0 && wd->prework_fd < 0 && pipe2(w, O_CLOEXEC) < 0)
                w[0] = w[1] = -1;
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                if (w[0] >= 0)
                        close(w[0]), close(w[1]);
                return r;
        }
        if (pid == 0) {
                close(p[1]);
                if (w[0] >= 0)
                        close(w[0]);
                watchdog_main(wd, p[0], w[1]);
        }
        close(p[0]);
        if (w[0] >= 0) {
                close(w[1]);
                wd->prework_fd = w[0];
        }
        /* Our own child, not reaped yet: its pid cannot have been reused. */
        int pidfd = sys_pidfd_open(pid, 0);
        if (pidfd < 0) {
                int r = -errno;
                /* Killed before its pipe closes, so it cannot take the run for lost. */
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                close(p[1]);
                return r;
        }
        wd->fd = p[1];
        wd->pid = pid;
        wd->pidfd = pidfd;
        return 0;
}

int aj_sup_watchdog_hold(AjSupWatchdog *wd, int fd)
{
        if (wd->fd < 0)
                return -ENOTCONN;
        return aj_send_with_fd(wd->fd, "H", 1, fd);
}

int aj_sup_watchdog_take_prework(AjSupWatchdog *wd)
{
        int fd = wd->prework_fd;
        wd->prework_fd = -1;
        return fd;
}

/* How it ended: "code" or "signal" (both null when it was reaped elsewhere). */
static json_t *wait_status_json(const siginfo_t *si, json_t *fields)
{
        bool known = si->si_pid != 0, exited = si->si_code == CLD_EXITED;
        json_object_set_new(fields, "code", known && exited ? json_integer(si->si_status) : json_null());
        json_object_set_new(fields, "signal", known && !exited ? json_integer(si->si_status) : json_null());
        return fields;
}

/*
 * The watchdog died while the supervisor lives. The agent cannot do that (it is outside
 * the jail's pid and user namespaces); root on the host, or the OOM killer, can. Without
 * it a supervisor killed next would leave the run's cgroups and runtime dir behind, with
 * no supervisor.lost: start another and record it. A bounded number of times; then, or
 * if no new one starts, end the run (fail closed) rather than run it unwatched.
 */
static void on_watchdog(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
void aj_sup_watchdog_stop(AjSupWatchdog *wd);

static void watchdog_exited(AjSupWatchdog *wd)
{
        /* A readable pidfd means the process has exited: it can clean up nothing any more,
         * whether or not it can be reaped. waitid() reaps it and says how; it finds nothing
         * when it was reaped elsewhere, or while a tracer (root on the host) still holds its
         * zombie (reparented to us later, reaped by init after us). Either way it is gone:
         * waiting for the reap would leave a readable fd in the loop, and the loop spinning. */
        struct pollfd pfd = { .fd = wd->pidfd, .events = POLLIN };
        if (poll(&pfd, 1, 0) == 0)
                return; /* not exited (no spurious wake-up expected; cheap to rule out) */
        siginfo_t si = { 0 };
        (void)waitid(P_PIDFD, (id_t)wd->pidfd, &si, WEXITED | WNOHANG);
        aj_loop_io_remove(wd->io);
        wd->io = NULL;
        close(wd->pidfd);
        wd->pidfd = -1;
        close(wd->fd);
        wd->fd = -1;
        pid_t old = wd->pid;
        wd->pid = 0;

        int r = -ELOOP;
        if (wd->restarts < WATCHDOG_RESTARTS_MAX) {
                r = watchdog_fork(wd);
                if (r >= 0) {
                        wd->restarts++;
                        aj_sup_emit(&wd->events, "watchdog.restarted",
                                    wait_status_json(&si, json_pack("{s:i, s:i, s:i, s:i}", "old_pid", (int)old, "pid",
                                                                    (int)wd->pid, "restarts", wd->restarts,
                                                                    "restarts_max", WATCHDOG_RESTARTS_MAX)));
                        r = aj_loop_add_io(wd->loop, wd->pidfd, EPOLLIN, on_watchdog, wd, &wd->io);
                }
                if (r >= 0) {
                        aj_warning("The watchdog (pid %d) died; started another (pid %d)", (int)old, (int)wd->pid);
                        wd->ops->changed(wd->userdata); /* run.json has its new pid */
                        return;
                }
        }
        if (r == -ELOOP)
                aj_error("The watchdog (pid %d) died after %d restarts: ending the run (fail closed: a killed "
                         "supervisor would leave it behind)",
                         (int)old, wd->restarts);
        else
                aj_log_errno(r,
                             "The watchdog (pid %d) died and no new one starts: ending the run (fail closed: a "
                             "killed supervisor would leave it behind)",
                             (int)old);
        aj_sup_emit(&wd->events, "watchdog.lost",
                    wait_status_json(&si, json_pack("{s:i, s:i, s:s, s:s}", "pid", (int)old, "restarts", wd->restarts,
                                                    "error", r == -ELOOP ? "restart limit reached" : strerror(-r),
                                                    "action", "jail killed")));
        wd->ops->lost(wd->userdata);
}

static void on_watchdog(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        AjSupWatchdog *wd = userdata;
        if (wd->pidfd >= 0)
                watchdog_exited(wd);
}

void aj_sup_watchdog_finish(AjSupWatchdog *wd, bool cgroup_left)
{
        aj_sup_watchdog_stop(wd);
        if (wd->prework_fd >= 0) {
                close(wd->prework_fd);
                wd->prework_fd = -1;
        }
        if (wd->pidfd >= 0) {
                close(wd->pidfd);
                wd->pidfd = -1;
        }
        if (wd->fd < 0)
                return;
        /* It exits as soon as it reads 'D'; waiting for that would only add latency
         * (our own exit hands it to init, which reaps it). 'C': the cgroup is still there,
         * it goes on removing it, and exits then. */
        (void)aj_send_with_fd(wd->fd, cgroup_left ? "C" : "D", 1, -1);
        close(wd->fd);
        wd->fd = -1;
}


int aj_sup_watchdog_start(AjSupWatchdog *wd, const AjSupWatchdogConfig *cfg, const AjSupWatchdogOps *ops,
                          void *userdata, const AjSupSink *events)
{
        wd->cfg = *cfg;
        wd->ops = ops;
        wd->userdata = userdata;
        wd->events = *events;
        return watchdog_fork(wd);
}

int aj_sup_watchdog_watch(AjSupWatchdog *wd, AjLoop *loop)
{
        wd->loop = loop;
        if (wd->pidfd < 0)
                return 0;
        return aj_loop_add_io(loop, wd->pidfd, EPOLLIN, on_watchdog, wd, &wd->io);
}

void aj_sup_watchdog_stop(AjSupWatchdog *wd)
{
        aj_loop_io_remove(wd->io);
        wd->io = NULL;
}

pid_t aj_sup_watchdog_pid(const AjSupWatchdog *wd) { return wd->pid; }
