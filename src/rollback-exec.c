/* SPDX-License-Identifier: Apache-2.0 */
/* One rollback step's handler, run on the host (see rollback.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rollback.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/process.h"
#include "util/syscalls.h"

enum { ENV_N = 10 };

/* The handler's whole environment: nothing of agentjail's own is passed on. */
typedef struct {
        char *vars[ENV_N];
        char *envp[ENV_N + 1];
} Env;

static void env_done(Env *e)
{
        for (size_t i = 0; i < ENV_N; i++)
                free(e->vars[i]);
}

static int env_build(Env *e, const char *run_id, const AjRollbackStep *s)
{
        *e = (Env){ 0 };
        const struct passwd *pw = getpwuid(getuid());
        char uid[24];
        snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
        const char *home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : "/";
        const char *user = pw && pw->pw_name ? pw->pw_name : uid;
        size_t n = 0;
        int r = 0;
        r |= aj_asprintf(&e->vars[n++], "PATH=%s", AJ_ROLLBACK_PATH);
        r |= aj_asprintf(&e->vars[n++], "HOME=%s", home);
        r |= aj_asprintf(&e->vars[n++], "USER=%s", user);
        r |= aj_asprintf(&e->vars[n++], "LOGNAME=%s", user);
        r |= aj_asprintf(&e->vars[n++], "LANG=C.UTF-8");
        r |= aj_asprintf(&e->vars[n++], "AGENTJAIL_RUN_ID=%s", run_id);
        r |= aj_asprintf(&e->vars[n++], "AGENTJAIL_ROLLBACK_STEP=%u", s->step);
        r |= aj_asprintf(&e->vars[n++], "AGENTJAIL_ROLLBACK_OF=%u", s->of);
        r |= aj_asprintf(&e->vars[n++], "AGENTJAIL_TOOL_CALL_ID=%s", s->call_id);
        if (r < 0) {
                env_done(e);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                e->envp[i] = e->vars[i];
        return 0;
}

/* In the child, between clone and exec: async-signal-safe calls only. */
_noreturn_ static void child_exec(char *const *argv, char *const *envp, int in, int out, int report)
{
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 || setsid() < 0 || chdir("/") < 0) {
                int e = errno;
                (void)!write(report, &e, sizeof(e));
                _exit(127);
        }
        execve(argv[0], argv, envp);
        int e = errno;
        (void)!write(report, &e, sizeof(e));
        _exit(127);
}

static void keep_output(AjRollbackOutcome *o, const char *buf, size_t n)
{
        size_t room = AJ_ROLLBACK_OUTPUT_MAX - o->output_len;
        size_t k = n < room ? n : room;
        memcpy(o->output + o->output_len, buf, k);
        o->output_len += k;
        o->output[o->output_len] = 0;
        o->output_bytes += n;
}

/* Reads what the pipe has now, at most `rounds` reads (a handler writing without end must
 * not keep the caller from its deadline); false at EOF or an error (the pipe is done). */
static bool read_output(int fd, AjRollbackOutcome *o, unsigned rounds)
{
        char buf[16384];
        for (unsigned i = 0; i < rounds; i++) {
                ssize_t k = read(fd, buf, sizeof(buf));
                if (k > 0) {
                        keep_output(o, buf, (size_t)k);
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                return k < 0 && errno == EAGAIN;
        }
        return true;
}

typedef struct {
        int in, out, pidfd;
        pid_t pid;
} Child;

/* Feeds stdin, reads the output, until the handler exits or its time is up; true when it
 * exited on its own. */
static bool supervise(Child *c, const char *input, size_t input_len, uint64_t deadline, AjRollbackOutcome *o)
{
        size_t sent = 0;
        for (;;) {
                uint64_t now = aj_now_monotonic_ns();
                if (now >= deadline)
                        return false;
                struct pollfd p[3] = {
                        { .fd = c->pidfd, .events = POLLIN },
                        { .fd = c->out, .events = POLLIN },
                        { .fd = c->in, .events = POLLOUT },
                };
                uint64_t wait_ms = (deadline - now + 999999) / 1000000;
                int k = poll(p, 3, wait_ms > 60000 ? 60000 : (int)wait_ms);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return false; /* treated as a timeout: the handler is killed */
                if (p[1].revents && !read_output(c->out, o, 16)) {
                        close(c->out);
                        c->out = -1;
                }
                if (p[2].revents) {
                        ssize_t w = (p[2].revents & POLLOUT) ? write(c->in, input + sent, input_len - sent) : -1;
                        if (w > 0)
                                sent += (size_t)w;
                        /* Done, or the handler closed its stdin (EPIPE): it has what it read. */
                        if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == input_len) {
                                close(c->in);
                                c->in = -1;
                        }
                }
                if (p[0].revents)
                        return true;
        }
}

int aj_rollback_exec(char *const *argv, const char *input, size_t input_len, const char *run_id,
                     const AjRollbackStep *s, uint64_t timeout_ns, AjRollbackOutcome *ret)
{
        AjRollbackOutcome *o = ret;
        *o = (AjRollbackOutcome){ .result = AJ_ROLLBACK_ERROR, .exit_code = -1 };
        if (!argv || !argv[0] || argv[0][0] != '/') {
                o->error = -EINVAL;
                return 0;
        }
        Env env;
        int r = env_build(&env, run_id, s);
        if (r < 0)
                return r;
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, rep[2] = { -1, -1 };
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        /* A handler that closes its stdin unread must not kill agentjail with SIGPIPE. */
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
        sigaction(SIGPIPE, &ign, &old_pipe);
        uint64_t start = aj_now_monotonic_ns();
        int pidfd = -1;
        pid_t pid = aj_fork_pidfd(&pidfd);
        if (pid == 0)
                child_exec(argv, env.envp, in[0], out[1], rep[1]);
        if (pid < 0) {
                r = pid;
                sigaction(SIGPIPE, &old_pipe, NULL);
                goto fail;
        }
        close(in[0]);
        close(out[1]);
        close(rep[1]);
        in[0] = out[1] = rep[1] = -1;
        int e = 0;
        ssize_t n;
        do
                n = read(rep[0], &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        Child c = { .in = in[1], .out = out[0], .pidfd = pidfd, .pid = pid };
        in[1] = out[0] = -1;
        bool exited = true;
        if (n == (ssize_t)sizeof(e)) {
                o->error = -e; /* not started: it exits at once */
        } else {
                (void)fcntl(c.in, F_SETFL, O_NONBLOCK);
                (void)fcntl(c.out, F_SETFL, O_NONBLOCK);
                exited = supervise(&c, input, input_len, start + timeout_ns, o);
        }
        /* Before it is reaped its pid is still its process group's: nothing it started
         * outlives the step (a timeout kills the handler with them). */
        (void)kill(-pid, SIGKILL);
        if (!exited)
                (void)sys_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        siginfo_t si = { 0 };
        while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
                ;
        o->duration_ns = aj_now_monotonic_ns() - start;
        /* What is left in the pipe is finite now: its writers are dead (or escaped the
         * group, and are not waited for: a read that would block ends it). */
        if (c.out >= 0)
                (void)read_output(c.out, o, UINT_MAX);
        close(pidfd);
        if (c.in >= 0)
                close(c.in);
        if (c.out >= 0)
                close(c.out);
        sigaction(SIGPIPE, &old_pipe, NULL);
        if (n == (ssize_t)sizeof(e)) {
                o->result = AJ_ROLLBACK_ERROR;
        } else if (!exited) {
                o->result = AJ_ROLLBACK_TIMEOUT;
        } else if (si.si_code == CLD_EXITED) {
                o->exit_code = si.si_status;
                o->result = si.si_status == 0 ? AJ_ROLLBACK_OK : AJ_ROLLBACK_FAILED;
        } else {
                o->signal = si.si_status;
                o->result = AJ_ROLLBACK_FAILED;
        }
        r = 0;
fail:
        for (size_t i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
                if (rep[i] >= 0)
                        close(rep[i]);
        }
        env_done(&env);
        return r;
}
