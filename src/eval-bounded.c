/* SPDX-License-Identifier: Apache-2.0 */
#include "eval-bounded.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/macros.h"
#include "util/process.h"
#include "util/syscalls.h"

/* Field `field` (0: size, 1: resident) of a statm file, in bytes; -1 if unreadable. */
static long statm_bytes(int fd, int field)
{
        char buf[128];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        long v[2] = { 0, 0 };
        if (sscanf(buf, "%ld %ld", &v[0], &v[1]) != 2 || v[field] <= 0)
                return -1;
        return v[field] * sysconf(_SC_PAGESIZE);
}

static long statm_of(const char *path, int field)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        long b = statm_bytes(fd, field);
        close(fd);
        return b;
}

void aj_eval_bounded_write(int out, const void *b, size_t n)
{
        const char *p = b;
        while (n > 0) {
                ssize_t w = write(out, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        _exit(5);
                p += w;
                n -= (size_t)w;
        }
}

_noreturn_ static void child(void (*body)(void *arg, int out), void *arg, int out, int go, pid_t parent)
{
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(3);
        /* Nothing runs before the parent holds this process's statm: an ignored SIGCHLD
         * reaps a process the moment it exits, and a body that finished first would leave
         * no /proc entry to bound and no answer read. The parent's close is the start. */
        char c;
        ssize_t r;
        while ((r = read(go, &c, 1)) < 0 && errno == EINTR)
                ;
        if (r != 0)
                _exit(3);
        close(go);
        /* The caller's handlers (eval's SIGINT, SIGTERM) are not this process's. */
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXCPU, SIGCHLD };
        for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
                signal(sigs[i], SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        long vm = statm_of("/proc/self/statm", 0);
        rlim_t secs = (AJ_EVAL_BOUNDED_MAX_MS + 999) / 1000, more = 4 * (rlim_t)AJ_EVAL_BOUNDED_MAX_BYTES;
        struct rlimit as = { (rlim_t)vm + more, (rlim_t)vm + more }, cpu = { secs, secs + 1 }, core = { 0, 0 };
        if (vm < 0 || setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_AS, &as) < 0 ||
            setrlimit(RLIMIT_CPU, &cpu) < 0)
                _exit(4);
        body(arg, out);
        _exit(0);
}

static AjEvalBoundedEnd bounded_wait(void (*body)(void *arg, int out), void *arg,
                                     void (*on_bytes)(void *ctx, const char *b, size_t n), void *ctx,
                                     const sigset_t *caller);

AjEvalBoundedEnd aj_eval_bounded(void (*body)(void *arg, int out), void *arg,
                                 void (*on_bytes)(void *ctx, const char *b, size_t n), void *ctx)
{
        /* A signal that comes while the child is being set up must still end the wait:
         * held back until ppoll() lets it in, it interrupts ppoll() at once instead of
         * running its handler before any wait began (and then going unseen until the
         * bounds end the child). The child takes no mask of ours: it clears its own. */
        sigset_t all, caller;
        sigfillset(&all);
        if (sigprocmask(SIG_BLOCK, &all, &caller) < 0)
                return AJ_EVAL_BOUNDED_FAILED;
        AjEvalBoundedEnd end = bounded_wait(body, arg, on_bytes, ctx, &caller);
        sigprocmask(SIG_SETMASK, &caller, NULL);
        return end;
}

static AjEvalBoundedEnd bounded_wait(void (*body)(void *arg, int out), void *arg,
                                     void (*on_bytes)(void *ctx, const char *b, size_t n), void *ctx,
                                     const sigset_t *caller)
{
        int p[2], go[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return AJ_EVAL_BOUNDED_FAILED;
        if (pipe2(go, O_CLOEXEC) < 0) {
                close(p[0]);
                close(p[1]);
                return AJ_EVAL_BOUNDED_FAILED;
        }
        pid_t parent = getpid();
        long base = statm_of("/proc/self/statm", 1);
        int pidfd = -1;
        pid_t pid = base < 0 ? -ENOENT : aj_fork_pidfd(&pidfd);
        if (pid == 0) {
                close(p[0]);
                close(go[1]);
                child(body, arg, p[1], go[0], parent);
        }
        close(p[1]);
        close(go[0]);
        if (pid < 0) {
                close(p[0]);
                close(go[1]);
                return AJ_EVAL_BOUNDED_FAILED; /* no bound without its base: nothing runs */
        }
        char statm[64];
        snprintf(statm, sizeof(statm), "/proc/%d/statm", (int)pid);
        int mfd = open(statm, O_RDONLY | O_CLOEXEC);
        close(go[1]); /* the child starts (or, without its statm, ends: killed below) */
        uint64_t deadline = aj_now_monotonic_ns() + (uint64_t)AJ_EVAL_BOUNDED_MAX_MS * 1000000ULL;
        AjEvalBoundedEnd end = mfd < 0 ? AJ_EVAL_BOUNDED_FAILED : AJ_EVAL_BOUNDED_DONE;
        bool eof = false;
        while (mfd >= 0 && !eof) {
                if (aj_now_monotonic_ns() >= deadline || statm_bytes(mfd, 1) > base + AJ_EVAL_BOUNDED_MAX_BYTES) {
                        end = AJ_EVAL_BOUNDED_LIMIT;
                        break;
                }
                struct pollfd pf = { .fd = p[0], .events = POLLIN };
                const struct timespec tick = { .tv_nsec = 4 * 1000000L };
                int n = ppoll(&pf, 1, &tick, caller);
                if (n < 0 && errno == EINTR) {
                        end = AJ_EVAL_BOUNDED_INTERRUPTED;
                        break;
                }
                if (n <= 0)
                        continue;
                char buf[256];
                ssize_t k = read(p[0], buf, sizeof(buf));
                if (k < 0 && errno == EINTR) {
                        end = AJ_EVAL_BOUNDED_INTERRUPTED;
                        break;
                }
                if (k <= 0)
                        eof = true;
                else
                        on_bytes(ctx, buf, (size_t)k);
        }
        close(p[0]);
        if (mfd >= 0)
                close(mfd);
        (void)sys_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        siginfo_t si = { 0 };
        int w;
        do
                w = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
        while (w < 0 && errno == EINTR);
        close(pidfd);
        if (end == AJ_EVAL_BOUNDED_DONE) {
                /* EOF: the body returned (exit 0), or the kernel stopped it (SIGXCPU), or it
                 * died otherwise. An ignored SIGCHLD leaves no status: then only a whole
                 * answer (the caller's to judge) counts. */
                if (w == 0 && si.si_code == CLD_EXITED && si.si_status == 0)
                        end = AJ_EVAL_BOUNDED_DONE;
                else if (w == 0 && (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) && si.si_status == SIGXCPU)
                        end = AJ_EVAL_BOUNDED_LIMIT;
                else if (w == 0 || errno != ECHILD)
                        end = AJ_EVAL_BOUNDED_FAILED;
        }
        return end;
}
