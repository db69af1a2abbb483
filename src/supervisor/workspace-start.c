/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/workspace-start.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/syscalls.h"
#include "workspace.h"

/* Past the digest's own time limit, how long the hasher may take to say so. */
#define DEADLINE_MARGIN_NS (5ull * 1000000000ull)
/* The most read of its output: a digest's record is a few hundred bytes and two paths. */
#define MAX_OUTPUT (64u * 1024)

static void set_mode(json_t *o, const char *path, bool overlay)
{
        json_object_set_new(o, "mode", json_string(overlay ? "overlay" : "in_place"));
        if (overlay)
                json_object_set_new(o, "lower", json_string(path));
}

static json_t *error_record(const char *path, bool overlay, const char *error)
{
        json_t *o = json_pack("{s:s, s:s}", "path", path, "error", error);
        if (o)
                set_mode(o, path, overlay);
        return o;
}

static bool is_hex64(const char *s)
{
        if (!s || strlen(s) != 64)
                return false;
        for (size_t i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

json_t *aj_sup_workspace_start_record(const char *out, size_t n, const char *path, bool overlay)
{
        json_t *o = n ? json_loadb(out, n, 0, NULL) : NULL;
        const char *error = json_string_value(json_object_get(o, "error"));
        bool digest = json_is_object(o) && streq(json_string_value(json_object_get(o, "path")) ?: "", path) &&
                      is_hex64(json_string_value(json_object_get(o, "sha256"))) &&
                      json_is_boolean(json_object_get(o, "complete")) &&
                      json_is_integer(json_object_get(o, "entries")) && json_is_integer(json_object_get(o, "bytes"));
        if (!digest) {
                json_t *e = error_record(path, overlay, error ? error : "the digest process reported nothing usable");
                json_decref(o);
                return e;
        }
        set_mode(o, path, overlay);
        return o;
}

/* Stopped before it was done: no digest, and why. */
static json_t *incomplete_record(const char *path, bool overlay, const char *cut)
{
        json_t *o = json_pack("{s:s, s:b, s:s}", "path", path, "complete", false, "cut_at", cut);
        if (o)
                set_mode(o, path, overlay);
        return o;
}

/* The child: hashes the tree at root_fd, writes its record, exits. Never returns. */
_noreturn_ static void hasher(int out, int root_fd, const char *path, uint64_t since_ns, pid_t parent)
{
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(1);
        int keep[] = { out, root_fd };
        if (aj_close_all_except(0, keep, 2) < 0)
                _exit(1);
        (void)prctl(PR_SET_NAME, "aj-digest");
        /* Behind the agent for the CPU and the disk: it is bookkeeping, not the run's work. */
        (void)setpriority(PRIO_PROCESS, 0, 19);
        (void)sys_ioprio_set(AJ_IOPRIO_WHO_PROCESS, 0, AJ_IOPRIO_VALUE(AJ_IOPRIO_CLASS_IDLE, 0));
        AjWorkspaceDigestLimits lim;
        aj_workspace_digest_limits_default(&lim);
        lim.since_ns = since_ns;
        uint64_t t0 = aj_now_monotonic_ns();
        json_t *j = NULL;
        /* Its own open file (the supervisor's offset untouched), of the directory itself:
         * never the path again, whose ancestors the agent may have swapped by now. */
        int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = fd < 0 ? -errno : aj_workspace_digest_fd(fd, path, &lim, &j);
        if (r < 0)
                j = json_pack("{s:s, s:s}", "path", path, "error", strerror(-r));
        else
                json_object_set_new(j, "ms", json_integer((json_int_t)((aj_now_monotonic_ns() - t0) / 1000000)));
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        _exit(text && aj_write_all(out, text, strlen(text)) >= 0 ? 0 : 1);
}

static void leave_loop(AjSupWorkspaceStart *w)
{
        aj_loop_io_remove(w->io);
        w->io = NULL;
        if (w->loop)
                aj_loop_timer_stop(&w->timer);
}

/* The hasher has exited (or is killed now, kill_cut its record): reaped, its record kept. */
static void collect(AjSupWorkspaceStart *w, const char *kill_cut)
{
        if (w->pidfd < 0)
                return;
        siginfo_t si = { 0 };
        if (kill_cut) {
                (void)sys_pidfd_send_signal(w->pidfd, SIGKILL, NULL, 0);
                while (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED) < 0 && errno == EINTR)
                        ;
        } else if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                return; /* not yet */
        leave_loop(w);
        _cleanup_free_ char *buf = malloc(MAX_OUTPUT);
        ssize_t n = buf && !kill_cut ? aj_read_full(w->out_fd, buf, MAX_OUTPUT) : 0;
        json_decref(w->result);
        if (kill_cut)
                w->result = incomplete_record(w->path, w->overlay, kill_cut);
        else
                w->result = aj_sup_workspace_start_record(buf, n > 0 ? (size_t)n : 0, w->path, w->overlay);
        /* The directory digested, as the mount plan checked it and the hasher walked it. */
        json_object_set_new(w->result, "dev", json_integer((json_int_t)w->dev));
        json_object_set_new(w->result, "ino", json_integer((json_int_t)w->ino));
        close(w->pidfd);
        close(w->out_fd);
        w->pidfd = w->out_fd = -1;
        w->pid = -1;
        json_t *cut = json_object_get(w->result, "cut_at");
        aj_debug("workspace digest of '%s': %s%s", w->path,
                 json_string_value(json_object_get(w->result, "error"))
                         ?: (json_is_true(json_object_get(w->result, "complete")) ? "complete" : "incomplete, cut at "),
                 json_string_value(cut) ?: "");
}

static void on_exit_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        collect(userdata, NULL);
}

static void on_deadline(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        collect(userdata, "time");
}

int aj_sup_workspace_start_open(AjSupWorkspaceStart *w, const char *path, dev_t dev, ino_t ino)
{
        if (w->root_fd >= 0 || w->path)
                return -EALREADY;
        /* The path is the kernel's own (no symlink in it): one that appeared since is
         * refused, and the identity settles it whatever the way there was. */
        int fd = sys_openat2(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0 && errno == ENOSYS)
                fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : st.st_dev != dev || st.st_ino != ino ? -ESTALE : 0;
        if (r < 0) {
                close(fd);
                return r;
        }
        if (!(w->path = strdup(path))) {
                close(fd);
                return -ENOMEM;
        }
        w->root_fd = fd;
        w->dev = dev;
        w->ino = ino;
        return 0;
}

int aj_sup_workspace_start(AjSupWorkspaceStart *w, AjLoop *loop, bool overlay, uint64_t since_ns)
{
        if (w->root_fd < 0 || !w->path || w->pidfd >= 0)
                return -EBADF;
        w->overlay = overlay;
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                close(p[0]);
                hasher(p[1], w->root_fd, w->path, since_ns, parent);
        }
        close(p[1]);
        /* The hasher has its own: the supervisor holds the workspace no longer. */
        close(w->root_fd);
        w->root_fd = -1;
        int pidfd = sys_pidfd_open(pid, 0);
        if (pidfd < 0) {
                int r = -errno;
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                close(p[0]);
                return r;
        }
        AjWorkspaceDigestLimits lim;
        aj_workspace_digest_limits_default(&lim);
        *w = (AjSupWorkspaceStart){ .loop = loop,
                                    .path = w->path,
                                    .root_fd = -1,
                                    .dev = w->dev,
                                    .ino = w->ino,
                                    .overlay = overlay,
                                    .pid = pid,
                                    .pidfd = pidfd,
                                    .out_fd = p[0],
                                    .deadline_ns = aj_now_monotonic_ns() + lim.max_ms * 1000000ull +
                                                   DEADLINE_MARGIN_NS };
        aj_loop_timer_init(loop, &w->timer, on_deadline, w);
        int r = aj_loop_add_io(loop, pidfd, EPOLLIN, on_exit_io, w, &w->io);
        if (r >= 0)
                r = aj_loop_timer_set(&w->timer, w->deadline_ns);
        if (r < 0)
                collect(w, "error");
        return r;
}

bool aj_sup_workspace_start_started(const AjSupWorkspaceStart *w) { return w->pidfd >= 0 || w->result; }

bool aj_sup_workspace_start_stops_wait(int signo)
{
        return signo == SIGINT || signo == SIGTERM || signo == SIGHUP || signo == SIGQUIT;
}

json_t *aj_sup_workspace_start_finish(AjSupWorkspaceStart *w, int sigfd, AjSupSignalHandler other, void *userdata)
{
        while (w->pidfd >= 0) {
                uint64_t now = aj_now_monotonic_ns();
                if (now >= w->deadline_ns) {
                        collect(w, "time");
                        break;
                }
                struct pollfd pfd[2] = { { .fd = w->pidfd, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
                int n = poll(pfd, sigfd >= 0 ? 2 : 1, (int)((w->deadline_ns - now) / 1000000) + 1);
                if (n < 0 && errno != EINTR) {
                        collect(w, "unfinished");
                        break;
                }
                if (n <= 0)
                        continue;
                /* Signals first: one that came with the hasher's end is still handled (the
                 * loop is gone once this returns). Only a signal that asks agentjail to stop
                 * ends the wait; any other goes where the loop would have sent it. */
                bool stop = false;
                if (sigfd >= 0 && pfd[1].revents) {
                        struct signalfd_siginfo si;
                        while (!stop && read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                                if (aj_sup_workspace_start_stops_wait((int)si.ssi_signo))
                                        stop = true;
                                else if (other)
                                        other(&si, userdata);
                        }
                }
                if (stop)
                        collect(w, "unfinished");
                else if (pfd[0].revents)
                        collect(w, NULL);
        }
        return json_incref(w->result);
}

void aj_sup_workspace_start_done(AjSupWorkspaceStart *w)
{
        collect(w, "unfinished");
        leave_loop(w);
        w->loop = NULL;
        json_decref(w->result);
        w->result = NULL;
        free(w->path);
        w->path = NULL;
        if (w->root_fd >= 0)
                close(w->root_fd);
        w->root_fd = -1;
}
