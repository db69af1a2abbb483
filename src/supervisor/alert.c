/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/alert.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util/syscalls.h"
#include "run-record.h"
#include "state.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

#define ALERT_TIMEOUT_DEFAULT_NS (10ull * 1000000000ull)
#define OUTPUT_CHUNK 65536
/* Chunks read in one wake-up: the loop's other work goes on between them. */
#define OUTPUT_CHUNKS_PER_WAKE 16

static bool configured(const AjSupAlert *a) { return a->cfg.argv && a->cfg.argv[0]; }

static void close_output(AjSupAlert *a)
{
        aj_loop_io_remove(a->out_io);
        a->out_io = NULL;
        if (a->out_fd >= 0)
                close(a->out_fd);
        a->out_fd = -1;
}

/* What the alert wrote, into alert.log up to its bound; the rest is read and dropped, and
 * log.truncated recorded once. A few chunks at a time, until the pipe is empty: a process
 * the alert left behind may write as fast as this reads. At its end (every writer gone)
 * or on an error the pipe is closed. */
static void read_output(AjSupAlert *a)
{
        char buf[OUTPUT_CHUNK];
        uint64_t cap = a->cfg.log_cap ? a->cfg.log_cap : UINT64_MAX;
        for (int i = 0; a->out_fd >= 0 && i < OUTPUT_CHUNKS_PER_WAKE; i++) {
                ssize_t n = read(a->out_fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        close_output(a);
                        return;
                }
                size_t fit = aj_log_cap_fit(a->logged, cap, (size_t)n);
                if (fit > 0 && a->log_fd >= 0 && aj_write_all(a->log_fd, buf, fit) < 0) {
                        aj_warning("cannot write " AJ_RUN_FILE_ALERT_LOG ": %s", strerror(errno));
                        close(a->log_fd);
                        a->log_fd = -1;
                }
                a->logged += fit;
                if (fit < (size_t)n && !a->log_cut) {
                        a->log_cut = true;
                        aj_sup_emit(&a->events, "log.truncated",
                                    json_pack("{s:s, s:I}", "stream", "alert", "limit", (json_int_t)cap));
                }
        }
}

static void on_output(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        read_output(userdata);
}

static void start_queued(AjSupAlert *a)
{
        for (size_t i = 0; i < ARRAY_SIZE(a->queued) && a->alert.pidfd < 0; i++) {
                const char *kind = a->queued[i].kind, *input = a->queued[i].input;
                a->queued[i].kind = a->queued[i].input = NULL;
                if (kind)
                        aj_sup_alert_start(a, kind, input);
        }
}

/* The alert's pidfd (timer false) or its timer (true) fired. */
static void alert_event(AjSupAlert *a, bool timer)
{
        if (a->alert.pidfd < 0)
                return;
        siginfo_t si = { 0 };
        if (timer) {
                if (waitid(P_PIDFD, (id_t)a->alert.pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0) {
                        (void)sys_pidfd_send_signal(a->alert.pidfd, SIGKILL, NULL, 0);
                        aj_sup_emit(&a->events, "alert.timeout", json_pack("{s:i}", "pid", (int)a->alert.pid));
                        aj_warning("The alert command did not finish in time and was killed");
                        (void)waitid(P_PIDFD, (id_t)a->alert.pidfd, &si, WEXITED);
                }
        } else if (waitid(P_PIDFD, (id_t)a->alert.pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
                return;
        }
        if (si.si_pid != 0) {
                bool ok = si.si_code == CLD_EXITED && si.si_status == 0;
                aj_sup_emit(&a->events, "alert.exit",
                            json_pack("{s:i, s:i}", si.si_code == CLD_EXITED ? "code" : "signal", si.si_status, "pid",
                                      (int)a->alert.pid));
                if (!ok)
                        aj_warning("The alert command failed (see " AJ_RUN_FILE_ALERT_LOG " in the run directory)");
        }
        /* What it wrote before it ended (the pipe holds at most its size, 64 KiB unless the
         * alert grew it; a megabyte is read); a process it left behind holding the pipe is
         * not waited for (its writes fail once the pipe is closed). */
        read_output(a);
        close_output(a);
        aj_loop_io_remove(a->io);
        a->io = NULL;
        close(a->alert.pidfd);
        a->alert.pidfd = -1;
        aj_loop_timer_stop(&a->timer);
        start_queued(a);
}

static void on_alert_exit(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        alert_event(userdata, false);
}

static void on_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        alert_event(userdata, true);
}

void aj_sup_alert_init(AjSupAlert *a, AjLoop *loop, const AjSupAlertConfig *cfg, const AjSupSink *events)
{
        *a = (AjSupAlert){
                .cfg = *cfg, .loop = loop, .events = *events, .alert = { .pidfd = -1 }, .out_fd = -1, .log_fd = -1
        };
        aj_loop_timer_init(loop, &a->timer, on_timeout, a);
}

void aj_sup_alert_start(AjSupAlert *a, const char *kind, const char *input)
{
        if (!configured(a))
                return;
        uint64_t timeout = a->cfg.timeout_ns ? a->cfg.timeout_ns : ALERT_TIMEOUT_DEFAULT_NS;
        if (a->alert.pidfd >= 0) {
                /* Not dropped: the agent could hold a call just before it crosses a cap. */
                size_t slot = streq(kind, "breach") ? 0 : 1;
                if (a->queued[slot].kind)
                        aj_sup_emit(&a->events, "alert.skipped",
                                    json_pack("{s:s, s:s}", "kind", a->queued[slot].kind, "why",
                                              "a newer one waits in its place for the running alert"));
                a->queued[slot].kind = kind;
                a->queued[slot].input = input;
                return;
        }
        int r = 0, out[2] = { -1, -1 };
        if (a->log_fd < 0) {
                r = aj_alert_log_open(a->cfg.run_dir);
                struct stat st;
                if (r >= 0) {
                        a->log_fd = r;
                        a->logged = fstat(a->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
                }
        }
        if (r >= 0 && pipe2(out, O_CLOEXEC) < 0)
                r = -errno;
        if (r >= 0 && aj_fd_set_nonblock(out[0], true) < 0)
                r = -errno;
        int add = r >= 0 ? aj_loop_add_io(a->loop, out[0], EPOLLIN, on_output, a, &a->out_io) : 0;
        if (add < 0) {
                /* Nothing would read the pipe until the alert ended, and a full pipe would
                 * hold it until its timeout: the owner not told. The add can fail where the
                 * agent can make it (a rootless jail shares its uid's epoll watches with us),
                 * so the alert runs, its output dropped, and the record says so. */
                a->out_io = NULL;
                close(out[0]);
                close(out[1]);
                out[0] = -1;
                out[1] = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (out[1] < 0)
                        r = -errno;
                else
                        aj_sup_emit(&a->events, "alert.output_lost",
                                    json_pack("{s:s, s:s}", "error", strerror(-add), "reason",
                                              "its pipe could not be watched; its output goes to /dev/null"));
        }
        if (r >= 0)
                r = aj_alert_start(a->cfg.argv, a->cfg.run_dir, a->cfg.id, kind, input, out[1], timeout, &a->alert);
        if (out[1] >= 0)
                close(out[1]);
        a->out_fd = out[0];
        if (r < 0) {
                close_output(a);
                aj_warning("Cannot run the alert command '%s': %s", a->cfg.argv[0], strerror(-r));
                aj_sup_emit(&a->events, "alert.failed",
                            json_pack("{s:s, s:s}", "command", a->cfg.argv[0], "error", strerror(-r)));
                a->alert.pidfd = -1;
                return;
        }
        (void)aj_loop_add_io(a->loop, a->alert.pidfd, EPOLLIN, on_alert_exit, a, &a->io);
        (void)aj_loop_timer_set_in(&a->timer, timeout);
        aj_sup_emit(&a->events, "alert",
                    json_pack("{s:s, s:s, s:i, s:I}", "kind", kind, "command", a->cfg.argv[0], "pid", (int)a->alert.pid,
                              "timeout_ms", (json_int_t)(timeout / 1000000)));
}

/* The owner learns that a call (or, "kind": "net", a host a proxy connection asks for)
 * waits for them: approval.json and the alert command. */
void aj_sup_alert_approval(AjSupAlert *a, json_t *call)
{
        if (!configured(a))
                return;
        char ts[40];
        bool net = json_is_string(json_object_get(call, "kind")) &&
                   streq(json_string_value(json_object_get(call, "kind")), "net");
        const char *id = json_string_value(json_object_get(call, net ? "id" : "gen_ai.tool.call.id"));
        const char *digest = json_string_value(json_object_get(call, "arguments_sha256"));
        _cleanup_free_ char *approve = NULL, *deny = NULL, *always = NULL;
        if (aj_approval_commands(a->cfg.id, id ? id : "?",
                                 net      ? NULL
                                 : digest ? digest
                                          : "?",
                                 &approve, &deny) < 0 ||
            (net && asprintf(&always, "%s --always", approve) < 0)) {
                aj_log_errno(-ENOMEM, "Failed to write the approval request in '%s'", a->cfg.run_dir);
                return;
        }
        AjApproval approval = { .subject = net ? AJ_APPROVAL_NET : AJ_APPROVAL_TOOL,
                                .run = a->cfg.id,
                                .name = a->cfg.name,
                                .ts = aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts)),
                                .call = net ? NULL : call,
                                .host = net ? call : NULL,
                                .approve = approve,
                                .deny = deny,
                                .approve_always = always };
        int r = aj_approval_write(a->cfg.run_dir, &approval);
        if (r < 0) {
                aj_log_errno(r, "Failed to write the approval request in '%s'", a->cfg.run_dir);
                return;
        }
        aj_sup_alert_start(a, "approval", AJ_RUN_FILE_APPROVAL);
}

void aj_sup_alert_finish(AjSupAlert *a)
{
        /* Each ending alert starts one waiting (alert_event): at most three in all. */
        while (a->alert.pidfd >= 0) {
                uint64_t now = aj_now_monotonic_ns();
                int timeout = a->alert.deadline_ns > now ? (int)((a->alert.deadline_ns - now) / 1000000) + 1 : 0;
                /* Its output read meanwhile: one that fills the pipe would wait for us. */
                struct pollfd pfd[2] = { { .fd = a->alert.pidfd, .events = POLLIN },
                                         { .fd = a->out_fd, .events = POLLIN } };
                int n;
                do
                        n = poll(pfd, a->out_fd >= 0 ? 2 : 1, timeout);
                while (n < 0 && errno == EINTR);
                /* Past its time, the output is not read on: an alert that writes without
                 * end keeps the pipe readable, and this would never reach the kill. */
                bool late = timeout == 0;
                if (n > 0 && !(pfd[0].revents & POLLIN) && !late) {
                        read_output(a);
                        continue;
                }
                alert_event(a, n <= 0 || late); /* past its time, or poll failed: killed, so the loop ends */
        }
        memset(a->queued, 0, sizeof(a->queued)); /* could not start: alert_start said why */
        close_output(a);
        if (a->log_fd >= 0)
                close(a->log_fd);
        a->log_fd = -1;
}
