/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The orchestrator. Order of a run:
 *   profile -> run dir + event log -> plans (mounts, seccomp, env, rlimits)
 *   -> cgroup (fail closed) -> runtime dir -> watchdog -> idmapped trees
 *   -> clone3 -> id maps + v1 cgroups -> GO -> event loop -> records -> clean up.
 * The supervisor is single-threaded; everything after the clone happens in one
 * epoll loop. Host-side state (cgroup, runtime dir) is undone at one place.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentjail/exit-codes.h"
#include "cgroup.h"
#include "events.h"
#include "jail.h"
#include "run.h"
#include "runs.h"
#include "log.h"
#include "mount.h"
#include "ns.h"
#include "seccomp-filter.h"
#include "spawn.h"
#include "state.h"
#include "util/fd.h"
#include "util/parse.h"
#include "util/macros.h"
#include "util/strv.h"

extern char **environ;

/* Denials reported per run: the first of each syscall (or socket family, ioctl request) always;
 * repeats a burst, then a steady trickle; the rest are counted per syscall. */
#define SECCOMP_REPORT_BURST 20.0
#define SECCOMP_REPORT_PER_SEC 5.0
/* After init exits, how long to wait for the output pipes to drain. */
#define DRAIN_TIMEOUT_MS 2000
/* After broker traffic the loop polls without sleeping for this long before it blocks
 * again. An agent's calls come in bursts (a loop, subprocesses), and waking a sleeping
 * supervisor costs far more than the work: on a 2-vCPU VM a bare Unix-socket echo
 * between two CPUs measured p50 60 us / p99 96 us blocking, 17 / 27 us with the echoing
 * side polling for 50 us. The cost is at most this much CPU time per broker message,
 * and none when the supervisor has a single CPU (it would only delay the agent). */
#define BROKER_SPIN_NS (50 * 1000ull)
/* The supervisor spends at most this share of the jail's CPU limit (limits.cpu) on the
 * agent's broker requests and seccomp denials, in windows of WORK_BURST_NS of CPU at that
 * rate: so a flooding jail and its supervisor use at most 1.5x the limit together. */
#define WORK_SHARE 0.5
#define WORK_BURST_S 0.1
/* The run's runtime dir as the jail sees it. */
#define AJ_JAIL_DIR "/run/agentjail"
/* Where this binary is bind-mounted in the jail (in the root tmpfs: no host file needed). */
#define AJ_JAIL_BIN "/opt/agentjail/bin"


static void write_final_records(Run *run);
static void forward_signal(Run *run, int sig);
static void release_runtime(Run *run);
static int make_overlay_dirs(Run *run);

/* `run -vv` prints how long each start-up step took: start-up cost is a product feature. */
static void trace_step(const Run *run, const char *step)
{
        aj_debug("+%.3f ms %s", (double)(aj_now_monotonic_ns() - run->t0) / 1e6, step);
}

static int epoll_add(int epfd, int fd, Source src, uint32_t events)
{
        struct epoll_event ev = { .events = events, .data.u64 = (uint64_t)src };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        return 0;
}

static void epoll_del(int epfd, int fd)
{
        if (fd >= 0)
                (void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

static json_t *strv_to_json(char *const *v)
{
        json_t *a = json_array();
        for (size_t i = 0; v && v[i]; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static void record_degraded(Run *run, const char *what, const char *why)
{
        aj_warning("%s is not enforced: %s", what, why);
        json_array_append_new(run->degraded, json_pack("{s:s, s:s}", "what", what, "why", why));
        aj_events_emit(run->events, "degraded", json_pack("{s:s, s:s}", "what", what, "why", why));
}

/* ---- planning ------------------------------------------------------------------- */

static int build_env(Run *run)
{
        const AjProfile *p = run->profile;
        _cleanup_strv_free_ char **env = NULL;
        int r = 0;

        for (size_t i = 0; i < p->env_pass.n; i++) {
                const char *v = getenv(p->env_pass.items[i]);
                if (!v)
                        continue;
                char *kv;
                if (asprintf(&kv, "%s=%s", p->env_pass.items[i], v) < 0 || (r = aj_strv_consume(&env, kv)) < 0)
                        return -ENOMEM;
        }
        const char *home = p->home ? p->home : "/home/agent";
        const char *fixed[][2] = {
                { "HOME", home }, { "USER", "agent" }, { "LOGNAME", "agent" }, { "SHELL", "/bin/sh" },
                { "AGENTJAIL", "1" }, { "AGENTJAIL_RUN_ID", run->id },
        };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                char *kv;
                if (asprintf(&kv, "%s=%s", fixed[i][0], fixed[i][1]) < 0 || aj_strv_consume(&env, kv) < 0)
                        return -ENOMEM;
        }
        /* The profile's "set" comes last and wins over anything above. */
        for (size_t i = 0; i < p->env_set.n; i++) {
                const char *kv = p->env_set.items[i];
                size_t klen = strcspn(kv, "=");
                for (size_t j = 0; env && env[j]; j++)
                        if (strncmp(env[j], kv, klen) == 0 && env[j][klen] == '=') {
                                free(env[j]);
                                for (size_t k = j; env[k]; k++)
                                        env[k] = env[k + 1];
                                break;
                        }
                if (aj_strv_push(&env, kv) < 0)
                        return -ENOMEM;
        }
        bool has_path = false;
        for (size_t j = 0; env && env[j]; j++)
                if (strncmp(env[j], "PATH=", 5) == 0) {
                        /* `agentjail meter` is on the PATH, after everything the profile put there. */
                        char *np;
                        if (asprintf(&np, "%s:" AJ_JAIL_BIN, env[j]) < 0)
                                return -ENOMEM;
                        free(env[j]);
                        env[j] = np;
                        has_path = true;
                }
        if (!has_path && aj_strv_push(&env, "PATH=/usr/local/bin:/usr/bin:/bin:" AJ_JAIL_BIN) < 0)
                return -ENOMEM;
        if (aj_strv_push(&env, "AGENTJAIL_BROKER=" AJ_JAIL_DIR "/broker.sock") < 0)
                return -ENOMEM;
        if (run->net_policy) {
                static const char *const proxy_env[] = {
                        "HTTP_PROXY=http://127.0.0.1:3128",  "http_proxy=http://127.0.0.1:3128",
                        "HTTPS_PROXY=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
                        "ALL_PROXY=socks5h://127.0.0.1:1080", "all_proxy=socks5h://127.0.0.1:1080",
                        "NO_PROXY=localhost,127.0.0.1",      "no_proxy=localhost,127.0.0.1",
                };
                for (size_t i = 0; i < ARRAY_SIZE(proxy_env); i++)
                        if (aj_strv_push(&env, proxy_env[i]) < 0)
                                return -ENOMEM;
        }
        run->envp = TAKE_PTR(env);
        return 0;
}

static void add_rlimit(AjSpawnConfig *cfg, int resource, uint64_t value)
{
        if (cfg->n_rlimits >= AJ_MAX_RLIMITS)
                return;
        cfg->rlimits[cfg->n_rlimits].resource = resource;
        cfg->rlimits[cfg->n_rlimits].limit.rlim_cur = value;
        cfg->rlimits[cfg->n_rlimits].limit.rlim_max = value;
        cfg->n_rlimits++;
}

static const char *rlimit_name(int resource)
{
        switch (resource) {
        case RLIMIT_NOFILE: return "limits.nofile";
        case RLIMIT_NPROC: return "limits.nproc";
        case RLIMIT_FSIZE: return "limits.fsize";
        case RLIMIT_CORE: return "limits.core";
        default: return "a resource limit";
        }
}

/* ---- the watchdog ----------------------------------------------------------------- */

/* Its comm, for operators (and tests) looking for it: a child of the supervisor. */
#define WATCHDOG_COMM "aj-watchdog"
/* How many times a run's watchdog is replaced after it died; the next death ends the run,
 * so a loop of kills cannot keep the supervisor forking. */
#define WATCHDOG_RESTARTS_MAX 3

/* In the watchdog, the supervisor gone: supervisor.lost closes the chain, and run.json's
 * anchor moves to it, so that removing it shows in `logs --verify`. */
static void watchdog_record_lost(const Run *run)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->run_dir);
        AjChainEnd end;
        /* Continues the chain's sequence numbers from the file (the supervisor's died). */
        if (aj_events_append(path, run->id, "supervisor.lost",
                             json_pack("{s:s}", "action", "jail killed, cgroup removed"), &end) < 0)
                return;
        snprintf(path, sizeof(path), "%s/run.json", run->run_dir);
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (aj_read_file(path, AJ_RUN_JSON_MAX, &text, &len) < 0)
                return; /* none yet: the supervisor died before the jail existed */
        json_auto_t *doc = json_loadb(text, len, 0, NULL);
        if (json_is_object(doc) && aj_run_doc_set_anchor(doc, &end, "supervisor.lost") >= 0)
                (void)aj_run_json_write(run->run_dir, doc);
}

/*
 * If the supervisor is SIGKILLed, the jail dies with it (PDEATHSIG on init), but
 * its cgroup and runtime dir would stay. A tiny process outside the jail waits on
 * a pipe: EOF without the 'D' byte means the supervisor is gone, and it cleans up.
 * The supervisor in turn holds a pidfd on it (watchdog_exited()).
 */
_noreturn_ static void watchdog_main(Run *run, int rfd)
{
        (void)prctl(PR_SET_NAME, WATCHDOG_COMM, 0, 0, 0);
        /* SIGTTOU: restoring the terminal from outside its foreground group (below). */
        static const int ignored[] = { SIGINT, SIGTERM, SIGHUP,  SIGQUIT, SIGPIPE,
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
        int keep[] = { rfd, 2, run->term_fd };
        (void)aj_close_all_except(3, keep, ARRAY_SIZE(keep));
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
        }
        char c = 0;
        ssize_t n;
        do
                n = read(rfd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1 && c == 'D')
                _exit(0);

        /* First, while the operator's shell may still be waiting for its terminal: the
         * supervisor may have died with it in raw mode. */
        if (run->term_fd >= 0)
                (void)aj_tty_restore_for(run->term_fd, &run->term_saved, group);
        AjCgroup *cg = NULL;
        if (aj_cgroup_open(run->id, &cg) >= 0)
                (void)aj_cgroup_destroy(cg);
        (void)aj_runtime_dir_remove(run->runtime_dir);
        watchdog_record_lost(run);
        _exit(0);
}

static int watchdog_start(Run *run)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                close(p[1]);
                watchdog_main(run, p[0]);
        }
        close(p[0]);
        /* Our own child, not reaped yet: its pid cannot have been reused. */
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                int r = -errno;
                /* Killed before its pipe closes, so it cannot take the run for lost. */
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                close(p[1]);
                return r;
        }
        run->watchdog_fd = p[1];
        run->watchdog_pid = pid;
        run->watchdog_pidfd = pidfd;
        return 0;
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
static void watchdog_exited(Run *run)
{
        /* A readable pidfd means the process has exited: it can clean up nothing any more,
         * whether or not it can be reaped. waitid() reaps it and says how; it finds nothing
         * when it was reaped elsewhere, or while a tracer (root on the host) still holds its
         * zombie (reparented to us later, reaped by init after us). Either way it is gone:
         * waiting for the reap would leave a readable fd in the loop, and the loop spinning. */
        struct pollfd pfd = { .fd = run->watchdog_pidfd, .events = POLLIN };
        if (poll(&pfd, 1, 0) == 0)
                return; /* not exited (no spurious wake-up expected; cheap to rule out) */
        siginfo_t si = { 0 };
        (void)waitid(P_PIDFD, (id_t)run->watchdog_pidfd, &si, WEXITED | WNOHANG);
        epoll_del(run->epfd, run->watchdog_pidfd);
        close(run->watchdog_pidfd);
        run->watchdog_pidfd = -1;
        close(run->watchdog_fd);
        run->watchdog_fd = -1;
        pid_t old = run->watchdog_pid;
        run->watchdog_pid = 0;

        int r = -ELOOP;
        if (run->watchdog_restarts < WATCHDOG_RESTARTS_MAX) {
                r = watchdog_start(run);
                if (r >= 0) {
                        run->watchdog_restarts++;
                        aj_events_emit(run->events, "watchdog.restarted",
                                       wait_status_json(&si, json_pack("{s:i, s:i, s:i, s:i}", "old_pid", (int)old,
                                                                       "pid", (int)run->watchdog_pid, "restarts",
                                                                       run->watchdog_restarts, "restarts_max",
                                                                       WATCHDOG_RESTARTS_MAX)));
                        r = epoll_add(run->epfd, run->watchdog_pidfd, SRC_WATCHDOG, EPOLLIN);
                }
                if (r >= 0) {
                        aj_warning("The watchdog (pid %d) died; started another (pid %d)", (int)old,
                                   (int)run->watchdog_pid);
                        if (!run->records_done) /* run.json has its new pid */
                                aj_run_write_json(run);
                        return;
                }
        }
        if (r == -ELOOP)
                aj_error("The watchdog (pid %d) died after %d restarts: ending the run (fail closed: a killed "
                         "supervisor would leave it behind)", (int)old, run->watchdog_restarts);
        else
                aj_log_errno(r, "The watchdog (pid %d) died and no new one starts: ending the run (fail closed: a "
                             "killed supervisor would leave it behind)", (int)old);
        aj_events_emit(run->events, "watchdog.lost",
                       wait_status_json(&si, json_pack("{s:i, s:i, s:s, s:s}", "pid", (int)old, "restarts",
                                                       run->watchdog_restarts, "error",
                                                       r == -ELOOP ? "restart limit reached" : strerror(-r),
                                                       "action", "jail killed")));
        (void)aj_run_kill(run, "supervisor (watchdog lost)");
}

static void watchdog_finish(Run *run)
{
        if (run->watchdog_pidfd >= 0) {
                close(run->watchdog_pidfd);
                run->watchdog_pidfd = -1;
        }
        if (run->watchdog_fd < 0)
                return;
        /* It exits as soon as it reads 'D'; waiting for that would only add latency
         * (our own exit hands it to init, which reaps it). */
        (void)aj_write_all(run->watchdog_fd, "D", 1);
        close(run->watchdog_fd);
        run->watchdog_fd = -1;
}

/* ---- the event loop ------------------------------------------------------------ */

/* Appends to a stream's log up to logs.output_bytes; past it the output still reaches
 * the operator (the caller passes it through) but the log is cut, and log.truncated is
 * recorded once. Every stream the run logs goes through here. */
static void log_output(Run *run, OutputStream *s, const char *buf, size_t n)
{
        if (s->log < 0)
                return;
        uint64_t cap = run->profile->log_output_bytes;
        size_t fit = aj_log_cap_fit(s->logged, cap, n);
        if (fit > 0 && aj_write_all(s->log, buf, fit) < 0) {
                aj_warning("cannot write the run's output log: %s", strerror(errno));
                close(s->log);
                s->log = -1;
                return;
        }
        s->logged += fit;
        if (fit < n && !s->log_cut) {
                s->log_cut = true;
                aj_events_emit(run->events, "log.truncated",
                               json_pack("{s:s, s:I}", "stream", s->name, "limit", (json_int_t)cap));
        }
}

#define OUTPUT_CHUNK 65536

static Source stream_source(const Run *run, const OutputStream *s, bool writer)
{
        bool err = s == &run->streams[1];
        return writer ? (err ? SRC_STDERR_W : SRC_STDOUT_W) : (err ? SRC_STDERR : SRC_STDOUT);
}

/* The jail's pipe is read while nothing is pending for our reader and the agent's work
 * budget is not in debt. Out of epoll rather than with no events: a pipe whose writers are
 * gone reports EPOLLHUP whatever is asked, and the loop would spin on it. */
static void stream_set_reading(Run *run, OutputStream *s)
{
        bool want = s->fd >= 0 && !s->eof && s->pend_len == 0 && !run->work_paused;
        if (want == s->reading)
                return;
        if (want)
                (void)epoll_add(run->epfd, s->fd, stream_source(run, s, false), EPOLLIN);
        else
                epoll_del(run->epfd, s->fd);
        s->reading = want;
}

static void stream_stop_writing(Run *run, OutputStream *s)
{
        s->out = -1; /* the reader went away (EPIPE); keep logging */
        s->pend_len = s->pend_off = 0;
        if (s->wfd_polled)
                epoll_del(run->epfd, s->wfd);
        s->wfd_polled = false;
}

/* Writes what is pending; what the reader cannot take now waits for EPOLLOUT. */
static void stream_flush(Run *run, OutputStream *s)
{
        while (s->pend_off < s->pend_len) {
                ssize_t n = write(s->wfd, s->pend + s->pend_off, s->pend_len - s->pend_off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        /* EPERM: a regular file, which never makes a writer wait. */
                        if (!s->wfd_polled &&
                            epoll_add(run->epfd, s->wfd, stream_source(run, s, true), EPOLLOUT) >= 0)
                                s->wfd_polled = true;
                        stream_set_reading(run, s);
                        return;
                }
                if (n <= 0) {
                        stream_stop_writing(run, s);
                        break;
                }
                s->pend_off += (size_t)n;
        }
        s->pend_len = s->pend_off = 0;
        if (s->wfd_polled)
                epoll_del(run->epfd, s->wfd);
        s->wfd_polled = false;
        stream_set_reading(run, s);
}

static void pump_output(Run *run, OutputStream *s)
{
        char buf[OUTPUT_CHUNK];
        while (s->pend_len == 0) {
                ssize_t n = read(s->fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        n = 0;
                }
                if (n == 0) {
                        s->eof = true;
                        stream_set_reading(run, s);
                        return;
                }
                log_output(run, s, buf, (size_t)n);
                if (s->out < 0)
                        continue;
                if (s->wfd < 0) {
                        if (aj_write_all(s->out, buf, (size_t)n) < 0)
                                s->out = -1;
                        continue;
                }
                if (!s->pend && !(s->pend = malloc(OUTPUT_CHUNK))) {
                        if (aj_write_all(s->out, buf, (size_t)n) < 0) /* no memory: wait, as before */
                                s->out = -1;
                        continue;
                }
                memcpy(s->pend, buf, (size_t)n);
                s->pend_len = (size_t)n;
                s->pend_off = 0;
                stream_flush(run, s);
        }
}

/* Our stdout/stderr made non-blocking for the loop (a slow reader of agentjail's output
 * stalled the wall clock, kill and every breach until it read). */
static void streams_open_writers(Run *run)
{
        for (int i = 0; i < 2; i++) {
                OutputStream *s = &run->streams[i];
                if (s->fd < 0 || s->out < 0)
                        continue;
                if (aj_tty_reopen_nonblock(s->out, O_WRONLY, &s->wfd, &s->wfd_restore) < 0)
                        s->wfd = -1;
        }
}

/* At the very end, after the records and the clean up: the rest to a reader that was slow,
 * blocking now that nothing else waits on the loop; and the shared flags put back. */
static void streams_close_writers(Run *run)
{
        for (int i = 0; i < 2; i++) {
                OutputStream *s = &run->streams[i];
                if (s->wfd >= 0 && s->out >= 0 && s->pend_off < s->pend_len &&
                    aj_fd_set_nonblock(s->wfd, false) >= 0)
                        (void)aj_write_all(s->wfd, s->pend + s->pend_off, s->pend_len - s->pend_off);
                if (s->wfd_restore >= 0)
                        (void)fcntl(i + 1, F_SETFL, s->wfd_restore);
                if (s->wfd >= 0)
                        close(s->wfd);
                s->wfd = -1;
                free(s->pend);
                s->pend = NULL;
        }
}

static void handle_denials(Run *run)
{
        for (;;) {
                AjSeccompDenial d;
                int r = aj_seccomp_notify_handle(run->listener, &d);
                if (r == 0)
                        return;
                if (r < 0) {
                        if (r != -EAGAIN && r != -EINTR) {
                                epoll_del(run->epfd, run->listener);
                                close(run->listener);
                                run->listener = -1;
                        }
                        return;
                }
                if (!aj_denial_log_note(&run->denials, &d, aj_now_monotonic_ns(), NULL))
                        continue;
                json_t *args = json_array();
                for (int i = 0; i < 6; i++)
                        json_array_append_new(args, json_integer((json_int_t)d.args[i]));
                json_t *f = json_pack("{s:s, s:i, s:o, s:i}", "syscall", d.name, "nr", d.nr, "args", args, "pid",
                                      (int)d.pid);
                const char *hint = aj_seccomp_denial_hint(&d);
                if (f && hint)
                        json_object_set_new(f, "hint", json_string(hint));
                aj_run_emit_agent(run, "seccomp.denied", f);
        }
}

static void check_cgroup_events(Run *run)
{
        AjCgroupStats st;
        if (!run->cgroup || aj_cgroup_stats(run->cgroup, &st) < 0)
                return;
        if (st.oom_kills > run->last_stats.oom_kills)
                aj_events_emit_agent(run->events, "oom",
                               json_pack("{s:I, s:I}", "oom_kills", (json_int_t)st.oom_kills, "memory_max",
                                         (json_int_t)run->profile->memory));
        if (st.pids_max_events > run->last_stats.pids_max_events)
                aj_events_emit_agent(run->events, "pids.max",
                               json_pack("{s:I, s:I}", "events", (json_int_t)st.pids_max_events, "pids_max",
                                         (json_int_t)run->profile->pids));
        if (st.memory_peak < run->last_stats.memory_peak)
                st.memory_peak = run->last_stats.memory_peak;
        run->last_stats = st;
}

static void start_proxy(Run *run)
{
        AjProxyOptions opts = { .max_connections = run->profile->net_max_connections };
        int r = aj_proxy_new_with_options(run->proxy_fds[0], run->proxy_fds[1], run->net_policy, &run->hooks, &opts,
                                          &run->proxy);
        if (r < 0) {
                /* Fail closed: the agent gets no network, and the run says why. */
                aj_log_errno(r, "Cannot start the egress proxy");
                aj_events_emit(run->events, "net.proxy.failed", json_pack("{s:s}", "error", strerror(-r)));
                return;
        }
        run->proxy_fds[0] = run->proxy_fds[1] = -1; /* the proxy owns them now */
        (void)epoll_add(run->epfd, aj_proxy_fd(run->proxy), SRC_PROXY, run->work_paused ? 0 : EPOLLIN);
}

/* ---- the jail's terminal ------------------------------------------------------- */

static void tty_output(void *userdata, const void *buf, size_t n)
{
        Run *run = userdata;
        log_output(run, &run->tty_log, buf, n);
}

static void tty_raw(Run *run)
{
        if (run->term_fd < 0)
                return;
        int r = aj_tty_enter_raw(run->term_fd, &run->term_saved);
        if (r < 0)
                aj_log_errno(r, "Cannot put the terminal into raw mode");
        else {
                run->term_raw = true;
                aj_log_set_crlf(isatty(STDERR_FILENO));
        }
}

/* Idempotent; on every way out of a run (the watchdog covers a supervisor that died). */
static void tty_restore(Run *run)
{
        if (run->term_raw) {
                (void)aj_tty_restore(run->term_fd, &run->term_saved);
                run->term_raw = false;
                aj_log_set_crlf(false);
        }
}

static void start_tty(Run *run, int master)
{
        if (!run->tty || run->tty_relay) {
                close(master);
                return;
        }
        int in = -1, out = -1, r;
        if (aj_tty_reopen_nonblock(STDIN_FILENO, O_RDONLY, &in, &run->tty_restore_flags[0]) < 0)
                in = -1; /* no input: the jail's terminal only shows output */
        r = aj_tty_reopen_nonblock(STDOUT_FILENO, O_WRONLY, &out, &run->tty_restore_flags[1]);
        if (r < 0)
                out = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (out < 0) {
                r = -errno;
                if (in >= 0)
                        close(in);
                close(master);
        } else /* owns the three fds, also when it fails */
                r = aj_tty_relay_new(in, out, master, tty_output, run, &run->tty_relay);
        if (r >= 0)
                r = epoll_add(run->epfd, aj_tty_relay_fd(run->tty_relay), SRC_TTY, EPOLLIN);
        if (r < 0) {
                /* A jail whose terminal nobody relays would hang: fail closed. */
                aj_log_errno(r, "Cannot relay the jail's terminal");
                forward_signal(run, SIGKILL);
                return;
        }
        if (run->winsize_fd >= 0)
                (void)aj_tty_copy_winsize(run->winsize_fd, master);
        tty_raw(run);
        (void)aj_tty_relay_dispatch(run->tty_relay);
}

/* Signals in tty mode: the window size goes to the pty (whose line discipline signals
 * the jail), ^C and ^\ typed at our own terminal were relayed as bytes in raw mode. */
static bool tty_takes_signal(Run *run, const struct signalfd_siginfo *si)
{
        if (!run->tty)
                return false;
        switch (si->ssi_signo) {
        case SIGWINCH:
                if (run->tty_relay && run->winsize_fd >= 0)
                        (void)aj_tty_copy_winsize(run->winsize_fd, aj_tty_relay_master(run->tty_relay));
                return true;
        case SIGINT:
        case SIGQUIT:
                /* From our terminal while it is raw: the byte already went to the jail (with
                 * `-t` and a terminal that is not raw, ^C is forwarded as without a pty). */
                return run->term_raw && si->ssi_code == SI_KERNEL;
        case SIGCONT:
                /* Stopped and continued: the shell set its own modes meanwhile. */
                if (run->term_raw)
                        tty_raw(run);
                if (run->tty_relay && run->winsize_fd >= 0)
                        (void)aj_tty_copy_winsize(run->winsize_fd, aj_tty_relay_master(run->tty_relay));
                return false;
        default:
                return false;
        }
}

/* Decided before the watchdog starts: it restores the terminal if the supervisor dies. */
static int setup_terminal(Run *run)
{
        bool stdin_tty = isatty(STDIN_FILENO);
        run->tty = run->opts->tty == AJ_TTY_ALWAYS || (run->opts->tty == AJ_TTY_AUTO && stdin_tty);
        if (!run->tty)
                return 0;
        if (stdin_tty) {
                if (tcgetattr(STDIN_FILENO, &run->term_saved) < 0)
                        return aj_log_errno(-errno, "Cannot read the terminal's settings");
                run->term_fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
                if (run->term_fd < 0)
                        return aj_log_errno(-errno, "Cannot duplicate the terminal's fd");
                run->winsize_fd = run->term_fd;
        } else if (isatty(STDOUT_FILENO))
                run->winsize_fd = STDOUT_FILENO;
        return 0;
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
                        epoll_del(run->epfd, run->h.sync_fd);
                        close(run->h.sync_fd);
                        run->h.sync_fd = -1;
                        return;
                }
                switch (m.type) {
                case AJ_MSG_ERROR:
                        run->launch_failed = true;
                        run->launch_error = m;
                        break;
                case AJ_MSG_LISTENER:
                        if (fd >= 0 && run->listener < 0) {
                                run->listener = TAKE_FD(fd);
                                (void)aj_fd_set_nonblock(run->listener, true);
                                (void)epoll_add(run->epfd, run->listener, SRC_LISTENER, EPOLLIN);
                        }
                        break;
                case AJ_MSG_STARTED:
                        break;
                case AJ_MSG_PTY:
                        if (fd >= 0)
                                start_tty(run, TAKE_FD(fd));
                        break;
                case AJ_MSG_PROXY_LISTENER:
                        if (fd >= 0 && (m.step == 0 || m.step == 1) && run->proxy_fds[m.step] < 0)
                                run->proxy_fds[m.step] = TAKE_FD(fd);
                        if (run->proxy_fds[0] >= 0 && run->proxy_fds[1] >= 0 && !run->proxy)
                                start_proxy(run);
                        break;
                case AJ_MSG_EXEC_FAILED:
                        run->exec_failed = true;
                        run->exec_error = m;
                        break;
                case AJ_MSG_EXIT:
                        run->have_status = true;
                        run->cmd_status = m.status;
                        if (!run->proxy) {
                                write_final_records(run);
                                release_runtime(run);
                        }
                        break;
                }
                if (fd >= 0)
                        close(fd);
        }
}

static void forward_signal(Run *run, int sig)
{
        if (!run->init_exited)
                (void)syscall(SYS_pidfd_send_signal, run->h.pidfd, sig, NULL, 0);
}

int aj_timerfd_arm(int fd, uint64_t ns)
{
        struct itimerspec its = { .it_value = { .tv_sec = (time_t)(ns / 1000000000ull),
                                                .tv_nsec = (long)(ns % 1000000000ull) } };
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                its.it_value.tv_nsec = 1;
        return timerfd_settime(fd, 0, &its, NULL) < 0 ? -errno : 0;
}

static void handle_wall(Run *run)
{
        uint64_t expirations;
        (void)!read(run->wallfd, &expirations, sizeof(expirations));
        if (!run->wall_fired) {
                run->wall_fired = true;
                aj_events_emit(run->events, "wall.limit",
                               json_pack("{s:I, s:s}", "wall_ns", (json_int_t)run->profile->wall_ns, "action",
                                         "SIGTERM"));
                forward_signal(run, SIGTERM);
                (void)aj_timerfd_arm(run->wallfd, run->profile->wall_grace_ns);
        } else if (!run->wall_killed) {
                run->wall_killed = true;
                aj_events_emit(run->events, "wall.kill", json_pack("{s:s}", "action", "SIGKILL"));
                if (run->cgroup)
                        (void)aj_cgroup_kill(run->cgroup);
                forward_signal(run, SIGKILL);
        }
}

static void work_sources_set(Run *run, uint32_t events)
{
        struct epoll_event ev = { .events = events, .data.u64 = SRC_BROKER };
        if (run->broker)
                (void)epoll_ctl(run->epfd, EPOLL_CTL_MOD, aj_broker_fd(run->broker), &ev);
        ev.data.u64 = SRC_LISTENER;
        if (run->listener >= 0)
                (void)epoll_ctl(run->epfd, EPOLL_CTL_MOD, run->listener, &ev);
        ev.data.u64 = SRC_PROXY;
        if (run->proxy)
                (void)epoll_ctl(run->epfd, EPOLL_CTL_MOD, aj_proxy_fd(run->proxy), &ev);
}

static uint64_t work_start(const Run *run)
{
        return run->work_rl.per_sec > 0 ? aj_now_monotonic_ns() : 0;
}

/* Charges the supervisor's time since `start_ns` to the agent; past its budget, stop
 * reading its requests and denials until the budget has refilled: the agent waits (its
 * broker writes fill the socket, its denied calls block), the supervisor does not work
 * for it. */
static void work_charge(Run *run, uint64_t start_ns)
{
        if (run->work_rl.per_sec <= 0)
                return;
        uint64_t now = aj_now_monotonic_ns();
        if (aj_ratelimit_charge(&run->work_rl, now, (double)(now - start_ns)) || run->work_paused)
                return;
        if (aj_timerfd_arm(run->work_timerfd, aj_ratelimit_debt_ns(&run->work_rl)) < 0)
                return; /* cannot resume on time: keep serving rather than stall the run */
        work_sources_set(run, 0);
        run->work_paused = true;
        run->work_paused_at = now;
        run->work_pauses++;
        for (int i = 0; i < 2; i++)
                stream_set_reading(run, &run->streams[i]);
}

static void work_resume(Run *run)
{
        uint64_t x;
        (void)!read(run->work_timerfd, &x, sizeof(x));
        if (!run->work_paused)
                return;
        work_sources_set(run, EPOLLIN);
        run->work_paused = false;
        run->work_paused_ns += aj_now_monotonic_ns() - run->work_paused_at;
        for (int i = 0; i < 2; i++)
                stream_set_reading(run, &run->streams[i]);
}

static int event_loop(Run *run)
{
        uint64_t drain_deadline = 0, spin_until = 0;
        /* Polling only helps when the agent can run on another CPU meanwhile. */
        cpu_set_t cpus;
        bool may_spin = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) > 1;
        for (;;) {
                bool outputs_done = run->streams[0].eof && run->streams[1].eof &&
                                    run->streams[0].pend_len == 0 && run->streams[1].pend_len == 0 &&
                                    (!run->tty_relay || aj_tty_relay_output_done(run->tty_relay));
                if (run->init_exited && outputs_done)
                        break;
                /* A reader still taking the jail's output: wait for it (as a pipe would), the
                 * drain deadline is for output that never ends. */
                if (run->streams[0].pend_len || run->streams[1].pend_len)
                        drain_deadline = 0;
                int timeout = -1;
                if (run->init_exited) {
                        uint64_t now = aj_now_monotonic_ns();
                        if (drain_deadline == 0)
                                drain_deadline = now + DRAIN_TIMEOUT_MS * 1000000ull;
                        if (now >= drain_deadline)
                                break;
                        timeout = (int)((drain_deadline - now) / 1000000ull) + 1;
                }
                struct epoll_event evs[16];
                uint64_t spin_start = spin_until != 0 ? aj_now_monotonic_ns() : 0;
                bool spinning = spin_start != 0 && spin_start < spin_until && !run->work_paused;
                if (!spinning)
                        spin_until = 0;
                int n = epoll_wait(run->epfd, evs, ARRAY_SIZE(evs), spinning ? 0 : timeout);
                if (spinning && run->work_rl.per_sec > 0)
                        work_charge(run, spin_start);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return aj_log_errno(-errno, "epoll_wait() failed");
                }
                for (int i = 0; i < n; i++) {
                        switch ((Source)evs[i].data.u64) {
                        case SRC_SIGNAL: {
                                struct signalfd_siginfo si;
                                while (read(run->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                        if (si.ssi_signo != SIGCHLD && !tty_takes_signal(run, &si))
                                                forward_signal(run, (int)si.ssi_signo);
                                break;
                        }
                        case SRC_PIDFD: {
                                siginfo_t si = { 0 };
                                if (waitid(P_PIDFD, (id_t)run->h.pidfd, &si, WEXITED | WNOHANG) == 0 &&
                                    si.si_pid != 0) {
                                        run->init_exited = true;
                                        run->init_info = si;
                                        epoll_del(run->epfd, run->h.pidfd);
                                }
                                break;
                        }
                        case SRC_SYNC:
                                handle_child_msg(run);
                                break;
                        case SRC_STDOUT:
                        case SRC_STDERR: {
                                OutputStream *s = &run->streams[evs[i].data.u64 == SRC_STDERR];
                                uint64_t t0 = work_start(run);
                                if (s->reading)
                                        pump_output(run, s);
                                work_charge(run, t0);
                                break;
                        }
                        case SRC_STDOUT_W:
                        case SRC_STDERR_W: {
                                OutputStream *s = &run->streams[evs[i].data.u64 == SRC_STDERR_W];
                                if (evs[i].events & (EPOLLERR | EPOLLHUP))
                                        stream_stop_writing(run, s);
                                else
                                        stream_flush(run, s);
                                stream_set_reading(run, s);
                                break;
                        }
                        case SRC_LISTENER:
                                if (run->listener < 0)
                                        break;
                                if (evs[i].events & EPOLLIN) {
                                        uint64_t t0 = work_start(run);
                                        handle_denials(run);
                                        work_charge(run, t0);
                                } else if (run->listener >= 0) {
                                        epoll_del(run->epfd, run->listener);
                                        close(run->listener);
                                        run->listener = -1;
                                }
                                break;
                        case SRC_WALL:
                                handle_wall(run);
                                break;
                        case SRC_CGROUP:
                                aj_cgroup_event_ack(run->cgroup);
                                check_cgroup_events(run);
                                break;
                        /* A module may have been released earlier in this same batch of events
                         * (release_runtime() when the command exits). */
                        case SRC_BROKER:
                                if (run->broker) {
                                        uint64_t t0 = work_start(run);
                                        (void)aj_broker_dispatch(run->broker);
                                        work_charge(run, t0);
                                        if (may_spin)
                                                spin_until = aj_now_monotonic_ns() + BROKER_SPIN_NS;
                                }
                                break;
                        case SRC_WORK_TIMER:
                                work_resume(run);
                                break;
                        case SRC_CONTROL:
                                if (run->control)
                                        (void)aj_control_dispatch(run->control);
                                break;
                        case SRC_PROXY:
                                if (run->proxy) {
                                        uint64_t t0 = work_start(run);
                                        (void)aj_proxy_dispatch(run->proxy);
                                        work_charge(run, t0);
                                }
                                break;
                        case SRC_ALERT:
                                aj_run_alert_event(run, false);
                                break;
                        case SRC_ALERT_TIMER:
                                aj_run_alert_event(run, true);
                                break;
                        case SRC_WALL_CAP:
                                aj_run_wall_cap_expired(run);
                                break;
                        case SRC_WATCHDOG:
                                if (run->watchdog_pidfd >= 0)
                                        watchdog_exited(run);
                                break;
                        case SRC_TTY:
                                if (run->tty_relay)
                                        (void)aj_tty_relay_dispatch(run->tty_relay);
                                break;
                        }
                }
        }
        /* Messages sent just before init exited may still be queued. */
        if (run->h.sync_fd >= 0)
                handle_child_msg(run);
        if (run->listener >= 0)
                handle_denials(run);
        return 0;
}

/* ---- outcome -------------------------------------------------------------------- */

typedef struct {
        int status;          /* agentjail's exit status */
        int code;            /* -1 if none */
        int signal;          /* -1 if none */
        const char *reason;
} Outcome;

static Outcome compute_outcome(Run *run)
{
        Outcome o = { .status = AJ_EXIT_LAUNCHER, .code = -1, .signal = -1, .reason = "launcher-error" };
        if (run->launch_failed)
                return o;
        if (run->have_status) {
                if (WIFEXITED(run->cmd_status)) {
                        o.code = WEXITSTATUS(run->cmd_status);
                        o.status = o.code;
                        o.reason = "exited";
                } else if (WIFSIGNALED(run->cmd_status)) {
                        o.signal = WTERMSIG(run->cmd_status);
                        o.status = AJ_EXIT_SIGNAL_BASE + o.signal;
                        o.reason = "signaled";
                }
        } else if (run->init_exited) {
                /* init itself died (OOM killer, SIGKILL at the wall limit): the whole jail went. */
                if (run->init_info.si_code == CLD_EXITED) {
                        o.code = run->init_info.si_status;
                        o.status = o.code;
                        o.reason = "exited";
                } else {
                        o.signal = run->init_info.si_status;
                        o.status = AJ_EXIT_SIGNAL_BASE + o.signal;
                        o.reason = "signaled";
                }
        }
        if (run->exec_failed) {
                o.reason = "exec-failed";
                o.status = run->exec_error.stage == AJ_STAGE_EXEC &&
                                           (run->exec_error.err == ENOENT || run->exec_error.err == ENOTDIR)
                                   ? AJ_EXIT_NOT_FOUND
                                   : AJ_EXIT_NOT_EXECUTABLE;
        }
        if (run->killed_by_policy && !run->exec_failed && !run->have_status_before_kill) {
                o.reason = "killed";
                o.status = AJ_EXIT_KILLED;
        } else if (run->wall_fired && !run->exec_failed)
                o.reason = "wall-limit";
        else if (run->last_stats.oom_kills > 0 && o.signal == SIGKILL)
                o.reason = "oom";
        return o;
}

/* {label: count} over the denial table; `suppressed` counts only what was not reported. */
static json_t *denials_by_key(const AjDenialLog *log, bool suppressed)
{
        json_t *o = json_object();
        for (size_t i = 0; i <= log->n_keys; i++) {
                const AjDenialKey *k = i < log->n_keys ? &log->keys[i] : &log->overflow;
                uint64_t n = suppressed ? k->suppressed : k->count;
                if (n > 0)
                        json_object_set_new(o, k->label, json_integer((json_int_t)n));
        }
        return o;
}

static json_t *usage_json(const Run *run)
{
        const AjCgroupStats *s = &run->last_stats;
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "memory_peak", (json_int_t)s->memory_peak, "cpu_usec",
                         (json_int_t)s->cpu_usage_usec, "oom_kills", (json_int_t)s->oom_kills, "pids_max_events",
                         (json_int_t)s->pids_max_events, "seccomp_denied", (json_int_t)run->denials.total,
                         "seccomp_denied_by", denials_by_key(&run->denials, false));
}

static json_t *run_document(Run *run, const char *status, const Outcome *o, uint64_t ended_ns)
{
        char ts[40];
        json_t *doc = json_object();
        json_object_set_new(doc, "id", json_string(run->id));
        json_object_set_new(doc, "name", json_string(run->name));
        json_t *prof = json_pack("{s:s, s:s?, s:s?}", "name", run->profile->name, "path", run->profile->path,
                                 "digest", run->profile->digest);
        if (!run->resolved_profile) {
                _cleanup_free_ char *resolved = aj_profile_to_json(run->profile);
                if (resolved)
                        run->resolved_profile = json_loads(resolved, 0, NULL);
        }
        if (run->resolved_profile)
                json_object_set(prof, "resolved", run->resolved_profile);
        json_object_set_new(doc, "profile", prof);
        json_object_set_new(doc, "command", strv_to_json(run->opts->argv));
        json_object_set_new(doc, "cwd", json_string(run->cwd));
        json_object_set_new(doc, "tty", json_boolean(run->tty));
        if (run->overlay_dir) {
                const char *ws = run->overlay_lower;
                char upper[4096];
                snprintf(upper, sizeof(upper), "%s/upper", run->overlay_dir);
                json_object_set_new(doc, "workspace",
                                    json_pack("{s:s, s:s?, s:s, s:s}", "mode", "overlay", "path", ws, "upper", upper,
                                              "changes", "pending"));
        }
        json_object_set_new(doc, "started", json_string(aj_format_timestamp(run->started_ns, ts, sizeof(ts))));
        json_object_set_new(doc, "ended",
                            ended_ns ? json_string(aj_format_timestamp(ended_ns, ts, sizeof(ts))) : json_null());
        json_object_set_new(doc, "status", json_string(status));
        json_object_set_new(doc, "state", json_string(aj_run_state(run, o != NULL)));
        json_object_set_new(doc, "quarantine", run->quarantine ? json_incref(run->quarantine) : json_null());
        if (run->meter) {
                json_t *m = aj_meter_to_json(run->meter, aj_now_monotonic_ns(), false);
                json_t *wall = aj_run_wall_cap_json(run);
                if (m && wall)
                        json_object_set_new(m, "wall", wall);
                else
                        json_decref(wall);
                json_object_set_new(doc, "meters", m);
        }
        if (run->net_policy || run->egress_used) {
                json_t *net = run->proxy ? aj_proxy_stats(run->proxy) : json_object();
                if (net) {
                        json_object_set_new(net, "egress_bytes", json_integer((json_int_t)run->egress_used));
                        json_object_set_new(net, "egress_limit",
                                            run->egress_limit ? json_integer((json_int_t)run->egress_limit) : json_null());
                        json_object_set_new(doc, "network", net);
                }
        }
        /* The anchor (see runs.h): only when the chain is closed. A live run's count would be
         * stale at once, and would make a cut-off tail look like the end. */
        if (run->events && o) {
                AjChainEnd end = { .count = aj_events_last_seq(run->events) };
                snprintf(end.last_hash, sizeof(end.last_hash), "%s", aj_events_last_hash(run->events));
                (void)aj_run_doc_set_anchor(doc, &end, "run.exit");
        }
        json_object_set_new(doc, "supervisor_pid", json_integer(getpid()));
        if (!o && run->watchdog_pid > 0)
                json_object_set_new(doc, "watchdog_pid", json_integer(run->watchdog_pid));
        json_object_set_new(doc, "host_uid", json_integer((json_int_t)run->host_uid));
        json_object_set_new(doc, "host_gid", json_integer((json_int_t)run->host_gid));
        if (o) {
                json_object_set_new(doc, "exit",
                                    json_pack("{s:i, s:o, s:o, s:s}", "status", o->status, "code",
                                              o->code >= 0 ? json_integer(o->code) : json_null(), "signal",
                                              o->signal >= 0 ? json_integer(o->signal) : json_null(), "reason",
                                              o->reason));
                json_object_set_new(doc, "usage", usage_json(run));
        } else {
                json_object_set_new(doc, "exit", json_null());
        }
        json_t *cg = json_object();
        AjCgroupMode mode = AJ_CGROUP_MODE_NONE;
        (void)aj_cgroup_detect(&mode);
        json_object_set_new(cg, "mode", json_string(aj_cgroup_mode_name(mode)));
        json_object_set_new(cg, "paths", strv_to_json(run->cgroup ? aj_cgroup_paths(run->cgroup) : NULL));
        json_object_set_new(doc, "cgroup", cg);
        json_object_set(doc, "degraded", run->degraded);
        return doc;
}

/* Rewrites run.json; returns the document written (new reference) for --json. */
static json_t *write_run_json(Run *run, const char *status, const Outcome *o, uint64_t ended_ns)
{
        json_t *doc = run_document(run, status, o, ended_ns);
        int r = aj_run_json_write(run->run_dir, doc);
        if (r < 0)
                aj_log_errno(r, "Failed to write '%s/run.json'", run->run_dir);
        return doc;
}

/*
 * run.exit and the final run.json. Called as soon as init reports the command's status
 * (while the kernel is still tearing the jail down on another CPU), or after the loop
 * when there is no such report (launch failure, the jail killed). With a proxy, after
 * the loop: closing it records the last connections, which belong before run.exit.
 */
/* The command is done: its sockets and runtime dir can go now, overlapping the
 * kernel's teardown of the jail (its mounts, namespaces) on the other CPU. */
static void release_runtime(Run *run)
{
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

static void write_final_records(Run *run)
{
        if (run->records_done)
                return;
        run->records_done = true;
        if (run->work_pauses > 0)
                aj_events_emit(run->events, "supervisor.throttled",
                               json_pack("{s:I, s:I, s:f}", "pauses", (json_int_t)run->work_pauses, "paused_ms",
                                         (json_int_t)(run->work_paused_ns / 1000000), "budget_cpu",
                                         WORK_SHARE * run->profile->cpu));
        if (run->denials.suppressed > 0)
                aj_events_emit(run->events, "seccomp.suppressed",
                               json_pack("{s:I, s:I, s:o}", "suppressed", (json_int_t)run->denials.suppressed, "total",
                                         (json_int_t)run->denials.total, "by_syscall",
                                         denials_by_key(&run->denials, true)));
        check_cgroup_events(run);
        if (run->broker && aj_broker_reports_suppressed(run->broker) > 0)
                aj_events_emit(run->events, "broker.suppressed",
                               json_pack("{s:I, s:I}", "reports", (json_int_t)aj_broker_reports_suppressed(run->broker),
                                         "reports_per_sec", (json_int_t)run->profile->log_reports_per_sec));
        if (run->broker)
                aj_broker_cancel_held(run->broker);
        if (run->events_refused > 0)
                aj_events_emit(run->events, "log.refused",
                               json_pack("{s:I, s:I}", "events", (json_int_t)run->events_refused, "limit",
                                         (json_int_t)aj_events_agent_share(run->profile->log_events_bytes)));
        Outcome o = compute_outcome(run);
        run->final_status = o.status;
        aj_events_emit(run->events, "run.exit",
                       json_pack("{s:i, s:o, s:o, s:s, s:o}", "status", o.status, "code",
                                 o.code >= 0 ? json_integer(o.code) : json_null(), "signal",
                                 o.signal >= 0 ? json_integer(o.signal) : json_null(), "reason", o.reason, "usage",
                                 usage_json(run)));
        run->final_doc = write_run_json(run, "exited", &o, aj_now_realtime_ns());
        trace_step(run, "records written");
}

/* Events after the final run.json (a launch error's report, the alert's end) move its
 * anchor, so that they cannot be removed unseen either. */
static void refresh_anchor(Run *run)
{
        if (!run->final_doc || !run->events)
                return;
        uint64_t count = 0;
        const char *hash = NULL;
        if (aj_run_doc_anchor(run->final_doc, &count, &hash) && count == aj_events_last_seq(run->events))
                return;
        AjChainEnd end = { .count = aj_events_last_seq(run->events) };
        snprintf(end.last_hash, sizeof(end.last_hash), "%s", aj_events_last_hash(run->events));
        if (aj_run_doc_set_anchor(run->final_doc, &end, "run.exit") < 0)
                return;
        int r = aj_run_json_write(run->run_dir, run->final_doc);
        if (r < 0)
                aj_log_errno(r, "Failed to write '%s/run.json'", run->run_dir);
}

void aj_run_write_json(Run *run)
{
        json_decref(write_run_json(run, "running", NULL, 0));
}

static void report_launch_error(Run *run)
{
        const AjChildMsg *m = &run->launch_error;
        int err = m->err > 0 ? m->err : EIO;
        if (m->stage == AJ_STAGE_MOUNT) {
                char desc[512];
                aj_error("Failed to %s: %s: %s", aj_spawn_stage_describe((AjSpawnStage)m->stage),
                         aj_mount_step_describe(run->mount, (size_t)m->step, desc, sizeof(desc)), strerror(err));
                if (err == ESTALE)
                        aj_error("The mount's source changed after agentjail checked it; refusing to mount it");
                if (err == EACCES && run->rootless)
                        aj_error("The jail builds its root as host uid %u: every directory above the paths it "
                                 "mounts (the runtime dir '%s', binds, the workspace) must be searchable by it",
                                 (unsigned)run->host_uid, run->paths.runtime_root);
                else if (err == EACCES)
                        /* Bind sources are opened by the supervisor; the root's mount point is not. */
                        aj_error("The jail builds its root as host uid %u: every directory above the runtime "
                                 "dir '%s' must be searchable by it",
                                 (unsigned)run->host_uid, run->paths.runtime_root);
        } else if (m->stage == AJ_STAGE_RLIMIT) {
                aj_error("Failed to set %s: %s", rlimit_name(run->rlimit_resources[m->step]), strerror(err));
        } else {
                aj_error("Failed to %s: %s", aj_spawn_stage_describe((AjSpawnStage)m->stage), strerror(err));
        }
        aj_events_emit(run->events, "launch.error",
                       json_pack("{s:s, s:s}", "stage", aj_spawn_stage_describe((AjSpawnStage)m->stage), "error",
                                 strerror(err)));
}

/* ---- setup ---------------------------------------------------------------------- */

static int open_log(const char *dir, const char *name)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        return fd < 0 ? -errno : fd;
}

static int prepare(Run *run)
{
        const AjRunOptions *opts = run->opts;
        int r;

        r = aj_paths_resolve(&run->paths);
        if (r < 0)
                return aj_log_errno(r, "Cannot find a state directory (set AGENTJAIL_STATE_DIR)");

        AjProfileError perr = { 0 };
        r = aj_profile_load(opts->profile ? opts->profile : "default", &run->profile, &perr);
        if (r < 0) {
                aj_error("%s", perr.message ? perr.message : strerror(-r));
                aj_profile_error_clear(&perr);
                return r;
        }

        trace_step(run, "profile loaded");
        run->cwd = getcwd(NULL, 0);
        if (!run->cwd)
                return aj_log_errno(-errno, "Cannot determine the current directory");
        run->rootless = geteuid() != 0;
        run->host_uid = run->rootless ? geteuid() : run->profile->host_uid;
        run->host_gid = run->rootless ? getegid() : run->profile->host_gid;

        if (aj_run_id_new(run->id) < 0)
                return aj_log_errno(-errno, "Cannot generate a run id");
        if (opts->name)
                run->name = strdup(opts->name);
        else {
                _cleanup_free_ char *tmp = strdup(opts->argv[0]);
                run->name = tmp ? strdup(basename(tmp)) : NULL;
        }
        if (!run->name)
                return -ENOMEM;

        /* Known before it exists, so the watchdog (forked next) can remove it. */
        run->runtime_dir = aj_runtime_dir_path(&run->paths, run->id);
        if (!run->runtime_dir)
                return -ENOMEM;
        r = aj_run_dir_create(&run->paths, run->id, &run->run_dir);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the run directory under '%s/runs'", run->paths.state_root);
        char path[4096];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->run_dir);
        r = aj_events_open(path, run->id, &run->events);
        if (r < 0)
                return aj_log_errno(r, "Failed to open '%s'", path);
        aj_events_set_agent_limit(run->events, aj_events_agent_share(run->profile->log_events_bytes));
        return 0;
}

/* What must exist before the command runs but not before the jail is cloned: done
 * while the child builds its root, between GO and JOINED, so it costs no wall time. */
static int setup_while_child_builds(Run *run)
{
        if (run->tty) {
                run->tty_log.log = open_log(run->run_dir, "tty.log");
                if (run->tty_log.log < 0)
                        return aj_log_errno(run->tty_log.log, "Failed to create the transcript in '%s'", run->run_dir);
        } else {
                run->streams[0].log = open_log(run->run_dir, "stdout.log");
                run->streams[1].log = open_log(run->run_dir, "stderr.log");
                if (run->streams[0].log < 0 || run->streams[1].log < 0)
                        return aj_log_errno(run->streams[0].log < 0 ? run->streams[0].log
                                                                    : run->streams[1].log,
                                            "Failed to create the output logs in '%s'", run->run_dir);
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/broker.sock", run->jail_dir);
        int r = aj_broker_new(path, run->host_uid, run->host_gid, run->meter, &run->hooks, &run->broker);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the broker socket '%s'", path);
        aj_broker_set_report_rate(run->broker, run->profile->log_reports_per_sec);
        r = aj_broker_set_approvals(run->broker, run->profile->approval_tools.items, run->profile->approval_tools.n,
                                    run->profile->approval_timeout_ns);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up approvals");
        return 0;
}

/* <runtime>/<id>/jail: bound at /run/agentjail in the jail. Root-owned and not writable
 * by the agent (it cannot replace the broker socket); the socket itself is the agent's. */
static int setup_jail_dir(Run *run)
{
        if (asprintf(&run->jail_dir, "%s/jail", run->runtime_dir) < 0)
                return -ENOMEM;
        if (mkdir(run->jail_dir, 0755) < 0)
                return aj_log_errno(-errno, "Failed to create '%s'", run->jail_dir);
        return 0;
}

static int setup_meter_and_broker(Run *run)
{
        const AjProfile *p = run->profile;
        AjMeterCaps caps;
        aj_meter_caps_from_profile(p, &caps);
        run->wall_cap_ns = p->meters.wall_ns;
        for (char **c = run->opts->caps; c && *c; c++) {
                _cleanup_free_ char *err = NULL;
                if (strncmp(*c, "wall=", 5) == 0) {
                        /* The wall cap is the supervisor's timer, not the broker's meter. */
                        uint64_t d = 0;
                        if (!streq(*c + 5, "unlimited") && (aj_parse_duration(*c + 5, &d) < 0 || d == 0)) {
                                aj_error("--cap: '%s': expected wall=DURATION such as wall=30m", *c);
                                return -EINVAL;
                        }
                        run->wall_cap_ns = d;
                        continue;
                }
                int r = aj_meter_apply_cap_arg(&caps, *c, &err);
                if (r < 0) {
                        aj_error("--cap: %s", err ? err : strerror(-r));
                        return r;
                }
        }
        int r = aj_meter_new_for_profile(p, &caps, &run->meter);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up the run's meters");
        /* The shipped price table, under the profile's prices. */
        _cleanup_(aj_price_table_freep) AjPriceTable *prices = NULL;
        _cleanup_free_ char *prices_err = NULL;
        r = aj_price_table_load_default(&prices, &prices_err);
        if (r == -ENOENT)
                aj_warning("No price table: %s; only the profile's prices apply", prices_err ?: "not found");
        else if (r < 0) {
                aj_error("Cannot read the price table: %s", prices_err ?: strerror(-r));
                return r;
        } else
                aj_meter_set_price_table(run->meter, TAKE_PTR(prices));
        run->egress_limit = p->egress_bytes;

        aj_run_hooks(run, &run->hooks);

        /* The allowlist: the profile's plus --allow-net. No entry: no proxy, no network. */
        _cleanup_strv_free_ char **allow = aj_strv_copy(p->net_allow.items);
        for (char **a = run->opts->allow_net; a && *a; a++)
                if (aj_strv_push(&allow, *a) < 0)
                        return -ENOMEM;
        if (allow && allow[0]) {
                size_t bad = 0;
                _cleanup_free_ char *err = NULL;
                r = aj_net_policy_parse(allow, &run->net_policy, &bad, &err);
                if (r < 0) {
                        aj_error("network allowlist: '%s': %s", allow[bad] ? allow[bad] : "?", err ? err : strerror(-r));
                        return r;
                }
        }
        return 0;
}

/* The places the workspace and the binds are checked against (src/mount.h): the system's
 * own trees, the generic places, home directories, and agentjail's own state, runtime and
 * config dirs and binary. */
static int build_sensitive(Run *run, const char *exe, const char *host_home, AjSensitiveList *ret)
{
        _cleanup_strv_free_ char **dirs = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r < 0)
                return r;
        const char *xdg = getenv("XDG_CONFIG_HOME");
        char *d = NULL;
        if (xdg && xdg[0] == '/')
                r = asprintf(&d, "%s/agentjail", xdg);
        else if (host_home && host_home[0] == '/')
                r = asprintf(&d, "%s/.config/agentjail", host_home);
        if (r < 0 || (d && aj_strv_consume(&dirs, d) < 0) || aj_strv_push(&dirs, "/etc/agentjail") < 0)
                return -ENOMEM;
        AjSensitiveSources src = {
                .state_root = run->paths.state_root,
                .runtime_root = run->paths.runtime_root,
                .host_home = host_home,
                .exe = exe,
                .config_dirs = dirs,
                .passwd = "/etc/passwd",
                .home_root = "/home",
        };
        return aj_sensitive_list_build(&src, ret);
}

static int plan(Run *run, AjSpawnConfig *cfg)
{
        const AjProfile *p = run->profile;
        int r;

        _cleanup_free_ char *rt = NULL, *rt_err = NULL;
        r = aj_runtime_root_prepare(&run->paths, &rt_err);
        if (r < 0) {
                aj_error("%s", rt_err ? rt_err : strerror(-r));
                return r;
        }
        r = aj_runtime_dir_create(&run->paths, run->id, &rt);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the runtime directory under '%s'", run->paths.runtime_root);
        r = aj_root_mountpoint(&run->paths, &run->root_mountpoint);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the jails' mount point under '%s'", run->paths.runtime_root);

        r = setup_jail_dir(run);
        if (r < 0)
                return r;
        trace_step(run, "runtime dir created");
        r = setup_meter_and_broker(run);
        if (r < 0)
                return r;

        /* The agentjail binary, for `agentjail meter` inside the jail. */
        _cleanup_free_ char *exe = realpath("/proc/self/exe", NULL);
        _cleanup_free_ AjBind *ro = calloc(run->opts->extra_ro.n + 1, sizeof(AjBind));
        if (!ro)
                return -ENOMEM;
        AjBindList extra_ro = { .items = ro, .n = run->opts->extra_ro.n };
        memcpy(ro, run->opts->extra_ro.items, run->opts->extra_ro.n * sizeof(AjBind));
        if (exe)
                ro[extra_ro.n++] = (AjBind){ .source = exe, .target = (char *)AJ_JAIL_BIN "/agentjail" };

        const char *host_home = getenv("HOME");
        struct passwd *pw = getpwuid(getuid());
        if ((!host_home || host_home[0] != '/') && pw)
                host_home = pw->pw_dir;
        if (p->workspace_mode == AJ_WORKSPACE_OVERLAY && !run->rootless) {
                r = make_overlay_dirs(run);
                if (r < 0)
                        return r;
        }
        _cleanup_(aj_sensitive_list_done) AjSensitiveList sensitive = { 0 };
        r = build_sensitive(run, exe, host_home, &sensitive);
        if (r < 0)
                return aj_log_errno(r, "Cannot list the places a workspace must not expose");
        AjMountContext mctx = {
                .sensitive = &sensitive,
                .overlay_dir = run->overlay_dir,
                .cwd = run->cwd,
                .host_home = host_home,
                .extra_ro = extra_ro,
                .extra_rw = run->opts->extra_rw,
                .uid = p->uid,
                .gid = p->gid,
                .user_name = "agent",
                .hostname = p->hostname ? p->hostname : "agentjail",
                .idmap = !run->rootless,
                .runtime_dir = run->jail_dir,
                .root_mountpoint = run->root_mountpoint,
        };
        _cleanup_free_ char *err = NULL;
        r = aj_mount_plan_build(p, &mctx, &run->mount, &err);
        if (r < 0) {
                aj_error("%s: %s", run->profile->path ? run->profile->path : run->profile->name,
                         err ? err : strerror(-r));
                return r;
        }

        for (char *const *a = aj_mount_plan_sensitive_allowed(run->mount); a && *a; a++)
                record_degraded(run, "sensitive", *a);
        trace_step(run, "mount plan built");
        AjSeccompSpec spec = {
                .base = p->seccomp_base ? p->seccomp_base : "default",
                .deny = p->seccomp_deny.items,
                .allow = p->seccomp_allow.items,
                .notify = p->seccomp_log,
                .allow_netlink = p->allow_netlink,
        };
        _cleanup_free_ char *cache = NULL;
        if (asprintf(&cache, "%s/cache/seccomp", run->paths.state_root) < 0)
                return -ENOMEM;
        _cleanup_free_ char *serr = NULL;
        /* The cache's secret lives in the runtime root, never bound into a jail (only
         * <runtime>/<id>/jail is), and apart from the cache it authenticates. */
        r = aj_seccomp_build_cached(&spec, cache, run->paths.runtime_root, &run->bpf, &serr);
        if (r < 0) {
                aj_error("Cannot build the seccomp filter: %s", serr ? serr : strerror(-r));
                return r;
        }

        trace_step(run, "seccomp program ready");
        r = build_env(run);
        if (r < 0)
                return aj_log_errno(r, "Cannot build the command's environment");

        *cfg = (AjSpawnConfig){
                .rootless = run->rootless,
                .uid = p->uid,
                .gid = p->gid,
                .hostname = mctx.hostname,
                .mount = run->mount,
                .seccomp = &run->bpf,
                .seccomp_listener = p->seccomp_log,
                .argv = run->opts->argv,
                .envp = run->envp,
                .cgroup_v2_fd = -1,
                .proxy_listeners = run->net_policy != NULL,
                .stdout_fd = -1,
                .stderr_fd = -1,
        };
        if (run->tty) {
                cfg->stdin_mode = AJ_STDIN_PTY;
                if (run->winsize_fd >= 0)
                        (void)ioctl(run->winsize_fd, TIOCGWINSZ, &cfg->winsize);
                /* The operator's erase character, UTF-8 input, ...: as ssh and script(1) do. */
                cfg->have_termios = run->term_fd >= 0;
                cfg->termios = run->term_saved;
        } else
                cfg->stdin_mode = isatty(STDIN_FILENO) ? AJ_STDIN_NULL : AJ_STDIN_INHERIT;
        if (p->nofile)
                add_rlimit(cfg, RLIMIT_NOFILE, p->nofile);
        if (p->nproc)
                add_rlimit(cfg, RLIMIT_NPROC, p->nproc);
        if (p->fsize)
                add_rlimit(cfg, RLIMIT_FSIZE, p->fsize);
        if (!p->core)
                add_rlimit(cfg, RLIMIT_CORE, 0);
        for (size_t i = 0; i < cfg->n_rlimits; i++)
                run->rlimit_resources[i] = cfg->rlimits[i].resource;
        return 0;
}

static int setup_cgroup(Run *run)
{
        const AjProfile *p = run->profile;
        AjCgroupLimits lim = { .memory_max = p->memory, .pids_max = p->pids, .cpus = p->cpu };
        _cleanup_free_ char *err = NULL;
        bool degrade = p->allow_degraded & AJ_DEGRADE_LIMITS;
        int r = aj_cgroup_create_v2_first(run->id, &lim, degrade, &run->cgroup, &err);
        if (r < 0) {
                aj_error("Cannot enforce the profile's limits: %s", err ? err : strerror(-r));
                if (!degrade)
                        aj_error("Refusing to start (add \"limits\" to the profile's \"allow_degraded\" to run "
                                 "without them)");
                return r;
        }
        if (err)
                record_degraded(run, "limits", err);
        return 0;
}

/* <run dir>/workspace/{upper,work}: the overlay workspace's writes, kept with the run
 * for `agentjail diff | commit | discard`. Root-only until setup_idmap() hands the upper
 * root to the agent. */
static int make_overlay_dirs(Run *run)
{
        if (asprintf(&run->overlay_dir, "%s/workspace", run->run_dir) < 0) {
                run->overlay_dir = NULL;
                return -ENOMEM;
        }
        char path[4096];
        if (mkdir(run->overlay_dir, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", run->overlay_dir);
        snprintf(path, sizeof(path), "%s/upper", run->overlay_dir);
        if (mkdir(path, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", path);
        snprintf(path, sizeof(path), "%s/work", run->overlay_dir);
        if (mkdir(path, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", path);
        return 0;
}

static int setup_idmap(Run *run)
{
        if (run->rootless)
                return 0;
        const char *ws = aj_mount_plan_workspace_source(run->mount);
        uid_t owner_uid = 0;
        gid_t owner_gid = 0;
        if (ws) {
                struct stat st;
                if (stat(ws, &st) < 0)
                        return aj_log_errno(-errno, "Cannot stat the workspace '%s'", ws);
                owner_uid = st.st_uid;
                owner_gid = st.st_gid;
                /* The overlay's root directory is the upper dir's: it must be the agent's, with
                 * the workspace's mode, as the idmapped workspace root would be. */
                if (run->overlay_dir) {
                        char upper[4096];
                        snprintf(upper, sizeof(upper), "%s/upper", run->overlay_dir);
                        if (!run->overlay_lower && !(run->overlay_lower = strdup(ws)))
                                return -ENOMEM;
                        if (chown(upper, run->host_uid, run->host_gid) < 0 || chmod(upper, st.st_mode & 07777) < 0)
                                return aj_log_errno(-errno, "Cannot prepare the overlay upper dir '%s'", upper);
                }
        }
        _cleanup_close_ int userns = -1;
        int r = aj_userns_idmap_fd(owner_uid, owner_gid, run->host_uid, run->host_gid, &userns);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the user namespace for the idmapped workspace");
        _cleanup_free_ char *err = NULL;
        r = aj_mount_plan_prepare(run->mount, userns, &err);
        if (r < 0) {
                aj_error("Cannot prepare the jail's mounts: %s", err ? err : strerror(-r));
                return r;
        }
        return 0;
}

static int start_loop_fds(Run *run, const sigset_t *mask)
{
        int r;
        run->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (run->epfd < 0)
                return -errno;
        run->sigfd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (run->sigfd < 0)
                return -errno;
        if ((r = epoll_add(run->epfd, run->sigfd, SRC_SIGNAL, EPOLLIN)) < 0 ||
            (r = epoll_add(run->epfd, run->h.pidfd, SRC_PIDFD, EPOLLIN)) < 0 ||
            (r = aj_fd_set_nonblock(run->h.sync_fd, true)) < 0 ||
            (r = epoll_add(run->epfd, run->h.sync_fd, SRC_SYNC, EPOLLIN)) < 0)
                return r;
        if (run->streams[0].fd >= 0) {
                streams_open_writers(run);
                for (int i = 0; i < 2; i++) {
                        r = epoll_add(run->epfd, run->streams[i].fd, i ? SRC_STDERR : SRC_STDOUT, EPOLLIN);
                        if (r < 0)
                                return r;
                        run->streams[i].reading = true;
                }
        }
        if (run->profile->wall_ns) {
                run->wallfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                if (run->wallfd < 0)
                        return -errno;
                if ((r = aj_timerfd_arm(run->wallfd, run->profile->wall_ns)) < 0 ||
                    (r = epoll_add(run->epfd, run->wallfd, SRC_WALL, EPOLLIN)) < 0)
                        return r;
        }
        if (run->broker && (r = epoll_add(run->epfd, aj_broker_fd(run->broker), SRC_BROKER, EPOLLIN)) < 0)
                return r;
        /* A budget of a whole CPU or more cannot bind a single-threaded supervisor. */
        if (run->profile->cpu > 0 && WORK_SHARE * run->profile->cpu < 1.0) {
                double per_sec = WORK_SHARE * run->profile->cpu * 1e9; /* ns of work per second */
                run->work_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                if (run->work_timerfd < 0)
                        return -errno;
                if ((r = epoll_add(run->epfd, run->work_timerfd, SRC_WORK_TIMER, EPOLLIN)) < 0)
                        return r;
                aj_ratelimit_init(&run->work_rl, per_sec * WORK_BURST_S, per_sec);
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/control.sock", run->runtime_dir);
        aj_run_control_ops(run, &run->control_ops);
        r = aj_control_new(path, geteuid(), &run->control_ops, &run->control);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the control socket '%s'", path);
        if ((r = epoll_add(run->epfd, aj_control_fd(run->control), SRC_CONTROL, EPOLLIN)) < 0)
                return r;
        run->alert_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (run->alert_timerfd < 0 || (r = epoll_add(run->epfd, run->alert_timerfd, SRC_ALERT_TIMER, EPOLLIN)) < 0)
                return run->alert_timerfd < 0 ? -errno : r;
        if (run->wall_cap_ns) {
                run->wallcapfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                if (run->wallcapfd < 0)
                        return -errno;
                run->wall_cap_remaining_ns = run->wall_cap_ns;
                if ((r = aj_timerfd_arm(run->wallcapfd, run->wall_cap_ns)) < 0 ||
                    (r = epoll_add(run->epfd, run->wallcapfd, SRC_WALL_CAP, EPOLLIN)) < 0)
                        return r;
        }
        /* Already dead (since the start of the run) shows at the first epoll_wait. */
        if (run->watchdog_pidfd >= 0 && (r = epoll_add(run->epfd, run->watchdog_pidfd, SRC_WATCHDOG, EPOLLIN)) < 0)
                return r;
        if (run->cgroup) {
                run->cg_event_fd = aj_cgroup_event_fd(run->cgroup);
                if (run->cg_event_fd >= 0 &&
                    (r = epoll_add(run->epfd, run->cg_event_fd, SRC_CGROUP, EPOLLIN | EPOLLPRI)) < 0)
                        return r;
        }
        return 0;
}

/* An alert still running when the jail has ended gets what is left of its time. */
static void finish_alert(Run *run)
{
        if (run->alert.pidfd < 0)
                return;
        uint64_t now = aj_now_monotonic_ns();
        int timeout = run->alert.deadline_ns > now ? (int)((run->alert.deadline_ns - now) / 1000000) + 1 : 0;
        struct pollfd pfd = { .fd = run->alert.pidfd, .events = POLLIN };
        int n;
        do
                n = poll(&pfd, 1, timeout);
        while (n < 0 && errno == EINTR);
        aj_run_alert_event(run, n == 0);
}

static void kill_jail(Run *run)
{
        if (run->h.pidfd >= 0 && !run->init_exited) {
                (void)syscall(SYS_pidfd_send_signal, run->h.pidfd, SIGKILL, NULL, 0);
                siginfo_t si;
                while (waitid(P_PIDFD, (id_t)run->h.pidfd, &si, WEXITED) < 0 && errno == EINTR)
                        ;
                run->init_exited = true;
        }
}

int aj_jail_run(const AjRunOptions *opts)
{
        Run run = {
                .opts = opts,
                .watchdog_fd = -1, .watchdog_pidfd = -1,
                .h = { .pidfd = -1, .sync_fd = -1 },
                .epfd = -1, .sigfd = -1, .wallfd = -1, .listener = -1, .cg_event_fd = -1,
                .alert = { .pidfd = -1 }, .alert_timerfd = -1, .proxy_fds = { -1, -1 }, .wallcapfd = -1,
                .work_timerfd = -1,
                .streams = { { .fd = -1, .out = STDOUT_FILENO, .log = -1, .name = "stdout", .wfd = -1,
                               .wfd_restore = -1 },
                             { .fd = -1, .out = STDERR_FILENO, .log = -1, .name = "stderr", .wfd = -1,
                               .wfd_restore = -1 } },
                .term_fd = -1, .winsize_fd = -1, .tty_restore_flags = { -1, -1 },
                .tty_log = { .fd = -1, .out = -1, .log = -1, .name = "tty", .wfd = -1, .wfd_restore = -1 },
        };
        run.degraded = json_array();
        run.started_ns = aj_now_realtime_ns();
        run.t0 = aj_now_monotonic_ns();
        aj_denial_log_init(&run.denials, SECCOMP_REPORT_BURST, SECCOMP_REPORT_PER_SEC);
        int status = AJ_EXIT_LAUNCHER;
        int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
        AjSpawnConfig cfg;
        int r;

        /* Signals are taken through a signalfd; block them before anything is forked. */
        sigset_t mask, old_mask;
        sigemptyset(&mask);
        static const int handled[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
        for (size_t i = 0; i < ARRAY_SIZE(handled); i++)
                sigaddset(&mask, handled[i]);
        sigprocmask(SIG_BLOCK, &mask, &old_mask);
        signal(SIGPIPE, SIG_IGN);
        /* Inherited SIG_IGN would have the kernel reap our children (init, the watchdog)
         * before waitid() can see how they ended. */
        signal(SIGCHLD, SIG_DFL);
        /* Pipes and sockets made below must not land on 0, 1 or 2, which the jail's init
         * replaces with /dev/null. */
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
                        goto out;

        if (prepare(&run) < 0)
                goto out;
        trace_step(&run, "prepared (profile, run dir)");
        if (setup_terminal(&run) < 0)
                goto fail_records;
        /* Before anything exists on the host that a killed supervisor would leave behind. */
        if (watchdog_start(&run) < 0) {
                aj_log_errno(-errno, "Cannot start the watchdog process");
                goto fail_records;
        }
        if (plan(&run, &cfg) < 0)
                goto fail_records;
        trace_step(&run, "planned (mounts, seccomp, env)");
        if (setup_cgroup(&run) < 0)
                goto fail_records;
        trace_step(&run, "cgroup created");
        if (setup_idmap(&run) < 0)
                goto fail_records;
        trace_step(&run, "mount trees prepared");

        if (!run.tty) {
                if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
                        aj_log_errno(-errno, "Cannot create the output pipes");
                        goto fail_records;
                }
                cfg.stdout_fd = out_pipe[1];
                cfg.stderr_fd = err_pipe[1];
        }
        cfg.cgroup_v2_fd = run.cgroup ? aj_cgroup_v2_fd(run.cgroup) : -1;

        r = aj_spawn_clone(&cfg, &run.h);
        if (r < 0) {
                aj_log_errno(r, "Cannot create the jail's namespaces (clone3)");
                goto fail_records;
        }
        if (run.tty) {
                run.streams[0].eof = run.streams[1].eof = true; /* all output is the pty's */
        } else {
                close(out_pipe[1]);
                close(err_pipe[1]);
                out_pipe[1] = err_pipe[1] = -1;
                run.streams[0].fd = out_pipe[0];
                run.streams[1].fd = err_pipe[0];
                out_pipe[0] = err_pipe[0] = -1;
                (void)aj_fd_set_nonblock(run.streams[0].fd, true);
                (void)aj_fd_set_nonblock(run.streams[1].fd, true);
        }
        aj_mount_plan_close_fds(run.mount);
        trace_step(&run, "cloned");

        r = aj_userns_write_maps(run.h.pid, run.profile->uid, run.host_uid, run.profile->gid, run.host_gid,
                                 run.rootless);
        if (r < 0) {
                aj_log_errno(r, "Cannot write the jail's user namespace maps (uid %u -> %u)",
                             (unsigned)run.profile->uid, (unsigned)run.host_uid);
                goto fail_kill;
        }
        trace_step(&run, "maps written");
        /* run.start goes first in the chain; the child reads GO only after this write. */
        aj_events_emit(run.events, "run.start",
                       json_pack("{s:o, s:s, s:s?, s:s?, s:i, s:I, s:s, s:b}", "command", strv_to_json(opts->argv),
                                 "profile", run.profile->name, "digest", run.profile->digest, "profile_path",
                                 run.profile->path, "pid", (int)run.h.pid, "host_uid", (json_int_t)run.host_uid,
                                 "cwd", run.cwd, "tty", run.tty));
        r = aj_spawn_go(&run.h);
        if (r < 0) {
                aj_log_errno(r, "Cannot release the jail");
                goto fail_kill;
        }
        if (run.cgroup) {
                /* The v1 directories and limits (hybrid hosts), while the child builds its root. */
                _cleanup_free_ char *cg_err = NULL;
                r = aj_cgroup_create_rest(run.cgroup, &cg_err);
                if (r < 0) {
                        aj_error("Cannot enforce the profile's limits: %s", cg_err ? cg_err : strerror(-r));
                        aj_error("Refusing to start (add \"limits\" to the profile's \"allow_degraded\" to run "
                                 "without them)");
                        goto fail_kill;
                }
                if (cg_err)
                        record_degraded(&run, "limits", cg_err);
                r = aj_cgroup_attach(run.cgroup, run.h.pid, run.h.in_v2_cgroup);
                if (r < 0) {
                        aj_log_errno(r, "Cannot move the jail into its cgroup");
                        goto fail_kill;
                }
        }
        trace_step(&run, "cgroups joined");
        /* The child builds its root meanwhile (most of a millisecond), and waits for JOINED
         * before its command can run: everything up to JOINED overlaps that. */
        if (setup_while_child_builds(&run) < 0)
                goto fail_kill;
        r = start_loop_fds(&run, &mask);
        if (r < 0) {
                aj_log_errno(r, "Cannot set up the supervisor's event loop");
                goto fail_kill;
        }
        /* If this fails the child is already gone, and its own error report is in the socket. */
        (void)aj_spawn_joined(&run.h);
        aj_run_write_json(&run);

        (void)event_loop(&run);
        tty_restore(&run); /* before any message below */
        trace_step(&run, "event loop done");
        kill_jail(&run);
        write_final_records(&run); /* unless init's report already did */
        if (run.launch_failed)
                report_launch_error(&run);
        if (run.exec_failed) {
                int err = run.exec_error.err;
                if (run.exec_error.stage == AJ_STAGE_EXEC && (err == ENOENT || err == ENOTDIR))
                        aj_error("'%s': command not found in the jail", opts->argv[0]);
                else
                        aj_error("Cannot %s '%s': %s", aj_spawn_stage_describe((AjSpawnStage)run.exec_error.stage),
                                 opts->argv[0], strerror(err));
        }
        status = run.final_status;
        goto cleanup;

fail_kill:
        kill_jail(&run);
fail_records:
        if (run.events) {
                Outcome o = { .status = AJ_EXIT_LAUNCHER, .code = -1, .signal = -1, .reason = "launcher-error" };
                aj_events_emit(run.events, "run.exit",
                               json_pack("{s:i, s:n, s:n, s:s}", "status", o.status, "code", "signal", "reason",
                                         o.reason));
                run.final_doc = write_run_json(&run, "exited", &o, aj_now_realtime_ns());
        }
cleanup:
        tty_restore(&run);
        if (opts->json && run.final_doc) {
                char *text = json_dumps(run.final_doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (text) {
                        fprintf(stderr, "%s\n", text);
                        free(text);
                }
        }
        finish_alert(&run);
        refresh_anchor(&run);
        aj_proxy_free(run.proxy);
        run.proxy = NULL;
        aj_broker_free(run.broker);
        run.broker = NULL;
        aj_control_free(run.control);
        run.control = NULL;
        if (run.cgroup) {
                r = aj_cgroup_destroy(run.cgroup);
                if (r < 0)
                        aj_log_errno(r, "Failed to remove the run's cgroup");
                run.cgroup = NULL;
        }
        trace_step(&run, "cgroup removed");
        if (run.runtime_dir && !run.runtime_removed) {
                r = aj_runtime_dir_remove(run.runtime_dir);
                if (r < 0)
                        aj_log_errno(r, "Failed to remove '%s'", run.runtime_dir);
        }
        watchdog_finish(&run);
        trace_step(&run, "cleaned up");
out:
        for (int i = 0; i < 2; i++) {
                if (out_pipe[i] >= 0)
                        close(out_pipe[i]);
                if (err_pipe[i] >= 0)
                        close(err_pipe[i]);
        }
        streams_close_writers(&run);
        for (int i = 0; i < 2; i++) {
                if (run.streams[i].fd >= 0)
                        close(run.streams[i].fd);
                if (run.streams[i].log >= 0)
                        close(run.streams[i].log);
        }
        if (run.listener >= 0)
                close(run.listener);
        aj_tty_relay_free(run.tty_relay);
        for (int i = 0; i < 2; i++)
                if (run.tty_restore_flags[i] >= 0)
                        (void)fcntl(i, F_SETFL, run.tty_restore_flags[i]);
        if (run.tty_log.log >= 0)
                close(run.tty_log.log);
        if (run.term_fd >= 0)
                close(run.term_fd);
        if (run.epfd >= 0)
                close(run.epfd);
        if (run.sigfd >= 0)
                close(run.sigfd);
        if (run.wallfd >= 0)
                close(run.wallfd);
        aj_spawn_handle_done(&run.h);
        for (int i = 0; i < 2; i++)
                if (run.proxy_fds[i] >= 0)
                        close(run.proxy_fds[i]);
        if (run.alert_timerfd >= 0)
                close(run.alert_timerfd);
        if (run.wallcapfd >= 0)
                close(run.wallcapfd);
        if (run.work_timerfd >= 0)
                close(run.work_timerfd);
        aj_meter_free(run.meter);
        aj_net_policy_free(run.net_policy);
        json_decref(run.quarantine);
        free(run.jail_dir);
        aj_cgroup_free(run.cgroup);
        aj_mount_plan_free(run.mount);
        aj_bpf_program_free(&run.bpf);
        aj_events_close(run.events);
        aj_profile_free(run.profile);
        aj_paths_done(&run.paths);
        aj_strv_free(run.envp);
        json_decref(run.degraded);
        json_decref(run.resolved_profile);
        json_decref(run.final_doc);
        free(run.name);
        free(run.run_dir);
        free(run.overlay_dir);
        free(run.overlay_lower);
        free(run.runtime_dir);
        free(run.root_mountpoint);
        free(run.cwd);
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        return status;
}
