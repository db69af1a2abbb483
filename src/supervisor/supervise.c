/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The supervisor's loop for one run: the parts (src/supervisor/) wired to the run's cgroup,
 * records and jail through their ops tables, the services (broker, control, proxy) each one
 * source whose dispatch is charged to the work budget, the jail's messages, init's exit and
 * the forwarded signals. Single-threaded; nothing blocks between two waits.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util/syscalls.h"
#include "run-record.h"
#include "run.h"
#include "supervisor/netpeer.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

/* After init exits, how long to wait for the output pipes to drain. */
#define DRAIN_TIMEOUT_NS (2000 * 1000000ull)
/* After broker traffic the loop polls without sleeping for this long before it blocks
 * again. An agent's calls come in bursts (a loop, subprocesses), and waking a sleeping
 * supervisor costs far more than the work: on a 2-vCPU VM a bare Unix-socket echo
 * between two CPUs measured p50 60 us / p99 96 us blocking, 17 / 27 us with the echoing
 * side polling for 50 us. The cost is at most this much CPU time per broker message,
 * and none when the supervisor has a single CPU (it would only delay the agent). */
#define BROKER_SPIN_NS (50 * 1000ull)

static void on_drain_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata);
static void on_exit_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata);
static void jail_ending(Run *run);

/* Until init reports the command forked, a signal is held here, not sent: init drops what
 * is pending when it leaves the operator's session (spawn.c), and a ^C typed at the
 * terminal while the jail started reached both it (still in our process group) and us.
 * Forwarded before, the two copies were one pending signal or two, as init's steps and
 * ours fell. SIGKILL is never held. */
static void forward_signal(Run *run, int sig)
{
        if (run->child.init_exited)
                return;
        if (!run->child.started && sig != SIGKILL) {
                sigaddset(&run->child.held_signals, sig);
                return;
        }
        (void)sys_pidfd_send_signal(run->h.pidfd, sig, NULL, 0);
}

static void command_started(Run *run)
{
        run->child.started = true;
        for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(&run->child.held_signals, sig) == 1)
                        forward_signal(run, sig);
        sigemptyset(&run->child.held_signals);
}

/* ---- the parts' ops: what they do to the jail and the records ------------------------ */

static int jail_freeze(void *userdata)
{
        Run *run = userdata;
        return aj_cgroup_freeze(run->cgroup);
}

static int jail_thaw(void *userdata)
{
        Run *run = userdata;
        /* Before the agent runs again: a full disk's records may have used the room. (Not
         * for a kill, which thaws a frozen jail so that it dies.) */
        int r = run->breach.killed ? 0 : aj_run_room_make(run->run_dir);
        if (r < 0 && r != -EOPNOTSUPP)
                aj_error("Cannot keep room for the records of run %s in '%s/%s': %s", run->id, run->run_dir,
                         AJ_RUN_FILE_ROOM, aj_file_error_text(r));
        return aj_cgroup_thaw(run->cgroup);
}

static int jail_kill(void *userdata)
{
        Run *run = userdata;
        jail_ending(run);
        aj_sup_llm_end(&run->llm);
        int r = run->cgroup ? aj_cgroup_kill(run->cgroup) : -EOPNOTSUPP;
        if (r < 0 && !run->child.init_exited)
                r = sys_pidfd_send_signal(run->h.pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
        return r;
}

static void jail_frozen_changed(void *userdata, bool frozen)
{
        Run *run = userdata;
        aj_sup_wall_set_frozen(&run->wall, frozen);
        aj_sup_disk_set_frozen(&run->disk, frozen);
        aj_sup_work_hold(&run->work, frozen);
}

static void records_changed(void *userdata) { aj_run_write_json(userdata); }

static json_t *meters_usage(void *userdata)
{
        Run *run = userdata;
        return run->meter ? aj_meter_to_json(run->meter, aj_now_monotonic_ns(), false) : NULL;
}

static int incident_write(void *userdata, const AjIncident *incident)
{
        Run *run = userdata;
        int r = aj_incident_write(run->run_dir, incident);
        if (aj_run_room_would_help(r) && aj_run_room_use(run) > 0)
                r = aj_incident_write(run->run_dir, incident);
        if (r < 0)
                aj_log_errno(r, "Failed to write the incident record in '%s'", run->run_dir);
        return r;
}

static void alert_start(void *userdata, const char *kind, const char *input)
{
        Run *run = userdata;
        aj_sup_alert_start(&run->alert, kind, input);
}

static void approval_requested(void *userdata, json_t *call)
{
        Run *run = userdata;
        aj_sup_alert_approval(&run->alert, call);
}

static const AjSupBreachOps breach_ops = {
        .freeze = jail_freeze,
        .thaw = jail_thaw,
        .kill = jail_kill,
        .frozen_changed = jail_frozen_changed,
        .changed = records_changed,
        .usage = meters_usage,
        .write_incident = incident_write,
        .alert = alert_start,
        .approval = approval_requested,
};

static void wall_signal(void *userdata, int sig) { forward_signal(userdata, sig); }

static void wall_kill(void *userdata)
{
        Run *run = userdata;
        jail_ending(run);
        if (run->cgroup)
                (void)aj_cgroup_kill(run->cgroup);
}

static void cap_breach(void *userdata, const AjBreach *b)
{
        Run *run = userdata;
        aj_sup_breach_handle(&run->breach, b);
}

static const AjSupWallOps wall_ops = {
        .signal = wall_signal,
        .kill = wall_kill,
        .breach = cap_breach,
};

static const AjSupDiskOps disk_ops = { .breach = cap_breach };

static void work_changed(void *userdata)
{
        Run *run = userdata;
        aj_sup_output_update(&run->output);
}

/* The loop and the parts that live in it, once the profile, the caps and the cgroup are
 * known. The watchdog and the terminal are older (src/jail.c). */
int aj_run_parts_init(Run *run)
{
        const AjProfile *p = run->profile;
        int r = aj_loop_new(&run->loop);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up the supervisor's event loop");
        aj_loop_timer_init(run->loop, &run->drain_timer, on_drain_timeout, run);
        aj_loop_timer_init(run->loop, &run->exit_timer, on_exit_timeout, run);
        aj_sup_work_init(&run->work, run->loop, p->cpu, work_changed, run);
        aj_sup_output_init(&run->output, run->loop, p->log_output_bytes, &run->work, &run->sink);
        AjSupBreachConfig bc = { .id = run->id,
                                 .name = run->name,
                                 .has_cgroup = run->cgroup != NULL,
                                 .kill_on_breach = p->on_breach == AJ_ON_BREACH_KILL,
                                 .log_cap = p->log_events_bytes,
                                 .egress_limit = p->egress_bytes };
        aj_sup_breach_init(&run->breach, &bc, &breach_ops, run, &run->sink);
        aj_sup_breach_hooks(&run->breach, &run->hooks);
        aj_sup_denials_init(&run->denials, run->loop, &run->work, &run->hooks);
        aj_sup_wall_init(&run->wall, run->loop, p->wall_ns, p->wall_grace_ns, run->wall_cap_ns, &wall_ops, run,
                         &run->sink);
        aj_sup_disk_init(&run->disk, run->loop, p->disk_free_set, p->disk_free, &disk_ops, run);
        AjSupAlertConfig ac = { .argv = p->alert_exec.items,
                                .timeout_ns = p->alert_timeout_ns,
                                .run_dir = run->run_dir,
                                .id = run->id,
                                .name = run->name,
                                .log_cap = p->log_output_bytes };
        aj_sup_alert_init(&run->alert, run->loop, &ac, &run->sink);
        aj_sup_cgroup_events_init(&run->cg_events, run->cgroup, p->memory, p->pids, &run->sink);
        return 0;
}

void aj_run_parts_done(Run *run)
{
        aj_sup_disk_done(&run->disk);
        aj_sup_breach_done(&run->breach);
        aj_sup_llm_done(&run->llm);
}

/* ---- the services ------------------------------------------------------------------ */

static void on_broker(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        Run *run = userdata;
        uint64_t t0 = aj_sup_work_start(&run->work);
        (void)aj_broker_dispatch(run->broker);
        aj_sup_work_charge(&run->work, t0);
        if (run->may_spin)
                run->spin_until = aj_now_monotonic_ns() + BROKER_SPIN_NS;
}

static void on_control(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        Run *run = userdata;
        (void)aj_control_dispatch(run->control);
}

static void on_proxy(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        Run *run = userdata;
        uint64_t t0 = aj_sup_work_start(&run->work);
        (void)aj_proxy_dispatch(run->proxy);
        aj_sup_work_charge(&run->work, t0);
}

/* Who opened a connection waiting for a host approval (src/supervisor/netpeer.h). */
static json_t *proxy_peer_process(void *userdata, int fd)
{
        Run *run = userdata;
        pid_t *pids = NULL;
        size_t n = 0;
        if (run->child.init_exited || !run->cgroup || aj_cgroup_pids(run->cgroup, &pids, &n) < 0)
                return json_pack("{s:n, s:s}", "pid", "note", "the jail's processes cannot be listed");
        json_t *o = aj_net_peer_process(run->h.pid, pids, n, fd);
        free(pids);
        return o;
}

static void start_proxy(Run *run)
{
        AjProxyOptions opts = { .max_connections = run->profile->net_max_connections,
                                .ask = run->net_ask,
                                .ask_timeout_ns = run->profile->approval_timeout_ns,
                                .peer_process = proxy_peer_process,
                                .peer_userdata = run };
        int r = aj_proxy_new_with_options(run->proxy_fds[0], run->proxy_fds[1], run->net_policy, &run->hooks, &opts,
                                          &run->proxy);
        if (r < 0) {
                /* Fail closed: the agent gets no network, and the run says why. */
                aj_log_errno(r, "Cannot start the egress proxy");
                aj_events_emit(run->events, "net.proxy.failed", json_pack("{s:s}", "error", strerror(-r)));
                return;
        }
        run->proxy_fds[0] = run->proxy_fds[1] = -1; /* the proxy owns them now */
        if (aj_loop_add_io(run->loop, aj_proxy_fd(run->proxy), EPOLLIN, on_proxy, run, &run->proxy_io) >= 0)
                (void)aj_sup_work_watch(&run->work, run->proxy_io);
}

static void on_llm(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        Run *run = userdata;
        uint64_t t0 = aj_sup_work_start(&run->work);
        aj_sup_llm_dispatch(&run->llm);
        aj_sup_work_charge(&run->work, t0);
}

/* The gateway's listener, made by the jail's init in its network namespace. */
static void start_llm(Run *run, int fd)
{
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_sup_llm_start(&run->llm, fd, &err);
        if (r < 0) {
                /* Fail closed: the agent's model calls fail, and the run says why. */
                aj_error("%s", aj_error_text(&err, r));
                aj_events_emit(run->events, "llm.gateway.failed", json_pack("{s:s}", "error", aj_error_text(&err, r)));
                return;
        }
        if (aj_loop_add_io(run->loop, aj_sup_llm_fd(&run->llm), EPOLLIN, on_llm, run, &run->llm_io) >= 0)
                (void)aj_sup_work_watch(&run->work, run->llm_io);
}

static void stop_service(Run *run, AjLoopIo **io)
{
        aj_sup_work_unwatch(&run->work, *io);
        aj_loop_io_remove(*io);
        *io = NULL;
}

/* The command is done: its sockets and runtime dir can go now, overlapping the
 * kernel's teardown of the jail (its mounts, namespaces) on the other CPU. */
static void release_runtime(Run *run)
{
        stop_service(run, &run->broker_io);
        stop_service(run, &run->control_io);
        aj_broker_free(run->broker);
        run->broker = NULL;
        aj_control_free(run->control);
        run->control = NULL;
        if (run->runtime_dir && !run->runtime_removed) {
                int r = aj_runtime_dir_remove(run->runtime_dir);
                if (r < 0)
                        aj_log_errno(r, "Failed to remove '%s'", run->runtime_dir);
                run->runtime_removed = true;
        }
}

void aj_run_release_llm(Run *run)
{
        stop_service(run, &run->llm_io);
        aj_sup_llm_stop(&run->llm);
}

void aj_run_release_proxy(Run *run)
{
        stop_service(run, &run->proxy_io);
        aj_proxy_free(run->proxy);
        run->proxy = NULL;
}

void aj_run_release_services(Run *run)
{
        aj_run_release_llm(run);
        aj_run_release_proxy(run);
        stop_service(run, &run->broker_io);
        aj_broker_free(run->broker);
        run->broker = NULL;
        stop_service(run, &run->control_io);
        aj_control_free(run->control);
        run->control = NULL;
}

/* ---- the jail ------------------------------------------------------------------------ */

static void start_tty(Run *run, int master)
{
        if (aj_sup_terminal_start(&run->term, run->loop, master, aj_sup_output_tty, &run->output) < 0)
                forward_signal(run, SIGKILL); /* logged; a jail whose terminal nobody relays would hang */
}

static void child_exited(Run *run, int status)
{
        jail_ending(run); /* init exits now, killing what is left */
        run->child.have_status = true;
        run->child.cmd_status = status;
        aj_sup_breach_set_exited(&run->breach, true, false);
        if (!run->proxy && !run->llm_io) {
                aj_run_write_final_records(run);
                release_runtime(run);
        }
}

static void handle_child_msg(Run *run)
{
        for (;;) {
                AjChildMsg m;
                int fd = -1;
                int r = aj_spawn_recv(run->h.sync_fd, &m, &fd);
                if (r == -EAGAIN)
                        return;
                if (r <= 0) {
                        aj_loop_io_remove(run->sync_io);
                        run->sync_io = NULL;
                        close(run->h.sync_fd);
                        run->h.sync_fd = -1;
                        /* The init's end closes as it exits (it holds it until then), before
                         * its exit waits for the pid namespace: the jail is ending even when
                         * no status of its command came (the init killed from outside, by the
                         * OOM killer say), so its exit is waited for within the bound too. */
                        jail_ending(run);
                        return;
                }
                switch (m.type) {
                case AJ_MSG_ERROR:
                        run->child.launch_failed = true;
                        run->child.launch_error = m;
                        break;
                case AJ_MSG_LISTENER:
                        if (fd >= 0)
                                aj_sup_denials_take_listener(&run->denials, TAKE_FD(fd));
                        break;
                case AJ_MSG_STARTED:
                        command_started(run);
                        break;
                case AJ_MSG_PTY:
                        if (fd >= 0)
                                start_tty(run, TAKE_FD(fd));
                        break;
                case AJ_MSG_PROXY_LISTENER:
                        if (fd >= 0 && m.step == 2 && !run->llm_io)
                                start_llm(run, TAKE_FD(fd));
                        if (fd >= 0 && (m.step == 0 || m.step == 1) && run->proxy_fds[m.step] < 0)
                                run->proxy_fds[m.step] = TAKE_FD(fd);
                        if (run->proxy_fds[0] >= 0 && run->proxy_fds[1] >= 0 && !run->proxy)
                                start_proxy(run);
                        break;
                case AJ_MSG_EXEC_FAILED:
                        run->child.exec_failed = true;
                        run->child.exec_error = m;
                        break;
                case AJ_MSG_EXIT:
                        child_exited(run, m.status);
                        break;
                }
                if (fd >= 0)
                        close(fd);
        }
}

static void init_exited(Run *run, const siginfo_t *si)
{
        run->child.init_exited = true;
        if (si)
                run->child.init_info = *si;
        aj_sup_breach_set_exited(&run->breach, false, true);
}

/* init's exit did not come within AJ_JAIL_EXIT_MS of the jail's end: the run ends without
 * it (its records are written; the cgroup it stays in goes to the watchdog, "C"). Killed
 * without a status of its command, it was by our SIGKILL (jail_ending's callers). */
static void abandon_init(Run *run)
{
        if (run->child.init_exited || run->child.init_abandoned)
                return;
        run->child.init_abandoned = true;
        if (!run->child.have_status) {
                run->child.init_info.si_code = CLD_KILLED;
                run->child.init_info.si_status = SIGKILL;
        }
        aj_warning("The jail's init has not exited %d s after the jail's end: a process of the jail does not die "
                   "(in uninterruptible sleep, or frozen); the run ends without waiting for it",
                   AJ_JAIL_EXIT_MS / 1000);
}

/* The jail is ending (its command's status reported, or the jail killed): from now on its
 * init's exit is waited for AJ_JAIL_EXIT_MS at most. */
static void jail_ending(Run *run)
{
        if (!run->child.init_exited && !aj_loop_timer_armed(&run->exit_timer))
                (void)aj_loop_timer_set_in(&run->exit_timer, (uint64_t)AJ_JAIL_EXIT_MS * 1000000ull);
}

static void on_exit_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        abandon_init(userdata);
}

static void on_init_exit(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)revents;
        Run *run = userdata;
        siginfo_t si = { 0 };
        if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0) {
                init_exited(run, &si);
                aj_loop_io_remove(io);
                run->pidfd_io = NULL;
        }
}

static void on_sync(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        handle_child_msg(userdata);
}

void aj_run_handle_signal(const struct signalfd_siginfo *si, void *userdata)
{
        Run *run = userdata;
        int sig = (int)si->ssi_signo;
        /* The run is over and its records written; what is left is our reader taking its
         * output. One that takes no more would hold this process (and the run's cgroups) for
         * good: asked to stop, we stop waiting for it. The logs keep everything. */
        bool over = run->child.init_exited || run->child.init_abandoned;
        if (over && (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT)) {
                size_t dropped = aj_sup_output_abandon_reader(&run->output);
                if (dropped)
                        aj_warning("the run has ended; %zu bytes of its output were not passed on (the reader "
                                   "took no more); the run's logs have them",
                                   dropped);
                return;
        }
        if (sig != SIGCHLD && !aj_sup_terminal_takes_signal(&run->term, si))
                forward_signal(run, sig);
}

static void on_signal(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)revents;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                aj_run_handle_signal(&si, userdata);
}

void aj_run_kill_jail(Run *run)
{
        if (run->h.pidfd < 0 || run->child.init_exited)
                return;
        (void)sys_pidfd_send_signal(run->h.pidfd, SIGKILL, NULL, 0);
        if (run->child.init_abandoned)
                return;
        /* Its exit is waited for AJ_JAIL_EXIT_MS at most (a process of the jail that does not
         * die holds it): the pidfd turns readable when it has exited. */
        int64_t deadline = aj_now_monotonic_ms() + AJ_JAIL_EXIT_MS;
        struct pollfd pfd = { .fd = run->h.pidfd, .events = POLLIN };
        for (int64_t left; (left = deadline - aj_now_monotonic_ms()) > 0;) {
                int n = poll(&pfd, 1, (int)left);
                if (n > 0 || (n < 0 && errno != EINTR))
                        break;
        }
        siginfo_t si = { 0 };
        if (waitid(P_PIDFD, (id_t)run->h.pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0)
                init_exited(run, NULL);
        else
                abandon_init(run);
}

/* ---- the loop ------------------------------------------------------------------------ */

/* Every source into the loop, the clocks started: after the clone, before JOINED. */
int aj_run_loop_start(Run *run, const sigset_t *mask)
{
        int r;
        run->sigfd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (run->sigfd < 0)
                return -errno;
        if ((r = aj_loop_add_io(run->loop, run->sigfd, EPOLLIN, on_signal, run, &run->sig_io)) < 0 ||
            (r = aj_loop_add_io(run->loop, run->h.pidfd, EPOLLIN, on_init_exit, run, &run->pidfd_io)) < 0 ||
            (r = aj_fd_set_nonblock(run->h.sync_fd, true)) < 0 ||
            (r = aj_loop_add_io(run->loop, run->h.sync_fd, EPOLLIN, on_sync, run, &run->sync_io)) < 0)
                return r;
        if ((r = aj_sup_output_start(&run->output)) < 0 || (r = aj_sup_wall_start(&run->wall)) < 0)
                return r;
        if (run->broker) {
                if ((r = aj_loop_add_io(run->loop, aj_broker_fd(run->broker), EPOLLIN, on_broker, run,
                                        &run->broker_io)) < 0)
                        return r;
                (void)aj_sup_work_watch(&run->work, run->broker_io);
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/control.sock", run->runtime_dir);
        aj_run_control_ops(run, &run->control_ops);
        r = aj_control_new(path, geteuid(), &run->control_ops, &run->control);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the control socket '%s'", path);
        if ((r = aj_loop_add_io(run->loop, aj_control_fd(run->control), EPOLLIN, on_control, run, &run->control_io)) <
            0)
                return r;
        if ((r = aj_sup_watchdog_watch(&run->watchdog, run->loop)) < 0)
                return r;
        return aj_sup_cgroup_events_start(&run->cg_events, run->loop);
}

static void on_drain_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        Run *run = userdata;
        run->drain_expired = true;
}

/* init has exited: the loop ends when the output is out, or at the drain deadline. A reader
 * still taking the jail's output is waited for (as a pipe would), the deadline is for output
 * that never ends. */
static bool drained(Run *run)
{
        bool done = aj_sup_output_eof(&run->output) && !aj_sup_output_pending(&run->output) &&
                    aj_sup_terminal_output_done(&run->term);
        if (done)
                return true;
        if (aj_sup_output_pending(&run->output)) {
                run->drain_expired = false;
                (void)aj_loop_timer_set_in(&run->drain_timer, DRAIN_TIMEOUT_NS);
        } else if (run->drain_expired)
                return true;
        else if (!aj_loop_timer_armed(&run->drain_timer))
                (void)aj_loop_timer_set_in(&run->drain_timer, DRAIN_TIMEOUT_NS);
        return false;
}

int aj_run_loop(Run *run)
{
        /* Polling only helps when the agent can run on another CPU meanwhile. */
        cpu_set_t cpus;
        run->may_spin = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) > 1;
        int r = 0;
        while (!((run->child.init_exited || run->child.init_abandoned) && drained(run))) {
                uint64_t spin_start = run->spin_until != 0 ? aj_now_monotonic_ns() : 0;
                bool spinning = spin_start != 0 && spin_start < run->spin_until && !aj_sup_work_paused(&run->work);
                if (!spinning)
                        run->spin_until = 0;
                int n = aj_loop_dispatch(run->loop, spinning ? 0 : -1);
                /* Polling must not keep the CPU from a task that waits for it: the kernel
                 * often wakes the agent on the CPU of the supervisor that answered it,
                 * and there it would wait out the whole poll (1 call in 10 took 50 us
                 * more, back to back: the p99). */
                if (spinning && n == 0)
                        (void)sched_yield();
                if (spinning && aj_sup_work_budgeted(&run->work))
                        aj_sup_work_charge(&run->work, spin_start);
                if (n < 0) {
                        r = aj_log_errno(n, "epoll_wait() failed");
                        break;
                }
        }
        aj_loop_timer_stop(&run->drain_timer);
        aj_loop_timer_stop(&run->exit_timer);
        /* Messages sent just before init exited may still be queued. */
        if (run->h.sync_fd >= 0)
                handle_child_msg(run);
        /* Bounded too: the jail's tasks are dying with its init, but need not be gone yet. */
        aj_sup_denials_drain(&run->denials, 16 * AJ_SUP_DENIALS_PER_TURN);
        return r;
}

/* Every source out of the loop, every timer stopped, then the loop itself. */
void aj_run_loop_close(Run *run)
{
        if (!run->loop)
                return;
        AjLoopIo **ios[] = { &run->sig_io, &run->pidfd_io, &run->sync_io };
        for (size_t i = 0; i < ARRAY_SIZE(ios); i++) {
                aj_loop_io_remove(*ios[i]);
                *ios[i] = NULL;
        }
        aj_run_release_services(run);
        aj_sup_output_stop(&run->output);
        aj_sup_terminal_stop(&run->term);
        aj_sup_denials_done(&run->denials);
        aj_sup_cgroup_events_stop(&run->cg_events);
        aj_sup_watchdog_stop(&run->watchdog);
        aj_sup_alert_finish(&run->alert);
        aj_sup_workspace_start_done(&run->ws_start);
        aj_sup_wall_stop(&run->wall);
        aj_sup_disk_stop(&run->disk);
        aj_sup_work_stop(&run->work);
        aj_loop_timer_stop(&run->drain_timer);
        aj_loop_timer_stop(&run->exit_timer);
        aj_loop_free(run->loop);
        run->loop = NULL;
        if (run->sigfd >= 0)
                close(run->sigfd);
        run->sigfd = -1;
}
