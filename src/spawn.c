/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "gateway/gateway.h"
#include "ns.h"
#include "proxy.h"
#include "spawn.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/shared.h"
#include "util/clock.h"
#include "util/syscalls.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static const char *const stage_text[_AJ_STAGE_MAX] = {
        [AJ_STAGE_NONE] = "start the jail",
        [AJ_STAGE_SYNC] = "synchronize with the supervisor",
        [AJ_STAGE_SETGROUPS] = "drop supplementary groups",
        [AJ_STAGE_SETGID] = "switch to the jail's group id",
        [AJ_STAGE_SETUID] = "switch to the jail's user id",
        [AJ_STAGE_CAPS_RAISE] = "keep capabilities for setup",
        [AJ_STAGE_PDEATHSIG] = "tie the jail's life to the supervisor",
        [AJ_STAGE_CGROUPNS] = "enter a new cgroup namespace",
        [AJ_STAGE_HOSTNAME] = "set the hostname",
        [AJ_STAGE_LOOPBACK] = "bring up the loopback interface",
        [AJ_STAGE_PROXY] = "open the egress proxy's listeners in the jail",
        [AJ_STAGE_MOUNT] = "build the jail's filesystem",
        [AJ_STAGE_FDS] = "close inherited file descriptors",
        [AJ_STAGE_RLIMIT] = "set resource limits",
        [AJ_STAGE_CAPS_DROP] = "drop capabilities",
        [AJ_STAGE_NO_NEW_PRIVS] = "set no_new_privs",
        [AJ_STAGE_SECCOMP] = "load the seccomp filter",
        [AJ_STAGE_SEND_LISTENER] = "hand the seccomp listener to the supervisor",
        [AJ_STAGE_SIGNALS] = "set up signal handling in the jail's init",
        [AJ_STAGE_FORK] = "fork the command",
        [AJ_STAGE_SETSID] = "start a new session",
        [AJ_STAGE_STDIO] = "set up standard output",
        [AJ_STAGE_EXEC] = "execute the command",
        [AJ_STAGE_TTY] = "create the jail's terminal",
        [AJ_STAGE_USERNS] = "set the user namespace's limits (none nested, the inotify share)",
        [AJ_STAGE_NETNS] = "create the jail's network and IPC namespaces",
        [AJ_STAGE_SECUREBITS] = "put back the supervisor's securebits",
        [AJ_STAGE_CGROUP_JOIN] = "move into the run's v1 cgroups",
};

/* clang-format off */
static const char *const child_trace_text[_AJ_CHILD_T_MAX] = {
        [AJ_CHILD_T_STARTED] = "init: started", [AJ_CHILD_T_GO] = "init: go", [AJ_CHILD_T_CREDS] = "init: ids set",
        [AJ_CHILD_T_NET] = "init: network set up", [AJ_CHILD_T_MOUNTS] = "init: root built",
        [AJ_CHILD_T_JOINED] = "init: joined", [AJ_CHILD_T_SECCOMP] = "init: filter loaded",
        [AJ_CHILD_T_FORKED] = "init: command forked", [AJ_CHILD_T_EXITED] = "init: command exited",
};
/* clang-format on */

const char *aj_child_trace_name(AjChildTrace t) { return t < _AJ_CHILD_T_MAX ? child_trace_text[t] : "?"; }

static void child_trace(const AjSpawnConfig *cfg, AjChildTrace t)
{
        if (cfg->trace)
                cfg->trace[t] = aj_now_monotonic_ns();
}

const char *aj_spawn_stage_describe(AjSpawnStage stage)
{
        if ((int)stage < 0 || stage >= _AJ_STAGE_MAX || !stage_text[stage])
                return "set up the jail";
        return stage_text[stage];
}

/* Trees per AJ_MSG_TREES message: well under the kernel's SCM_MAX_FD (253). */
#define TREES_PER_MSG AJ_SPAWN_TREES_PER_MSG

typedef struct {
        AjChildMsg m; /* step: how many trees this message has; status: 1 on the last */
        uint32_t step[TREES_PER_MSG];
} TreesMsg;

static int send_fds(int fd, const void *buf, size_t len, const int *fds, size_t n_fds)
{
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        union {
                char buf[CMSG_SPACE(TREES_PER_MSG * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (n_fds > TREES_PER_MSG)
                return -E2BIG;
        if (n_fds > 0) {
                memset(&u, 0, sizeof(u));
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        }
        for (;;) {
                ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (n >= 0)
                        return 0;
                if (errno != EINTR)
                        return -errno;
        }
}

static int send_msg(int fd, const AjChildMsg *m, int pass_fd)
{
        return send_fds(fd, m, sizeof(*m), &pass_fd, pass_fd >= 0 ? 1 : 0);
}

/* recvmsg(2) on the sync socket, fds close-on-exec, retried on EINTR: bytes, or -errno.
 * ECONNRESET: the peer closed its end with messages of ours unread (a child that failed
 * before it read JOINED or its trees). The kernel says so once, before the messages the peer
 * sent (its launch error): read on, they come next, then the end (0). */
static ssize_t recv_msg(int sync_fd, struct msghdr *mh)
{
        ssize_t n;
        do
                n = recvmsg(sync_fd, mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && (errno == EINTR || errno == ECONNRESET));
        return n < 0 ? -errno : n;
}

int aj_spawn_recv(int sync_fd, AjChildMsg *ret, int *ret_fd)
{
        AjChildMsg m;
        struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        ssize_t n = recv_msg(sync_fd, &mh);
        if (n < 0)
                return (int)n;
        if (n == 0)
                return 0;
        int fd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        if ((size_t)n != sizeof(m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                if (fd >= 0)
                        close(fd);
                return -EBADMSG;
        }
        *ret = m;
        if (ret_fd)
                *ret_fd = fd;
        else if (fd >= 0)
                close(fd);
        return 1;
}

/* ---- the child ---------------------------------------------------------------- */

_noreturn_ static void child_fail(int sync_fd, AjSpawnStage stage, int err, int step)
{
        AjChildMsg m = { .type = AJ_MSG_ERROR, .stage = stage, .err = err < 0 ? -err : err, .step = step };
        (void)send_msg(sync_fd, &m, -1);
        _exit(125);
}

static void noop_handler(int sig) { (void)sig; }

static const int forwarded_signals[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };

/* What the terminal sent to the operator's process group while init was in it (blocked,
 * as in the supervisor, it was queued): the supervisor had its own copy, which it forwards
 * once the command runs and not before (supervise.c, forward_signal); kept, it was a second.
 * Setting SIG_IGN discards a pending signal, blocked or not (POSIX; the kernel's
 * do_sigaction); the disposition is put back at once. */
static void drop_pending_signals(void)
{
        for (size_t i = 0; i < ARRAY_SIZE(forwarded_signals); i++) {
                struct sigaction ign = { .sa_handler = SIG_IGN }, old;
                if (sigaction(forwarded_signals[i], &ign, &old) == 0)
                        (void)sigaction(forwarded_signals[i], &old, NULL);
        }
}

_noreturn_ static void exec_command(const AjSpawnConfig *cfg, int sync_fd, int cmd_in)
{
        /* Default dispositions and an empty mask (the supervisor's blocked signals were
         * inherited through clone): the command starts clean. */
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int s = 1; s < NSIG; s++)
                (void)sigaction(s, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);

        AjChildMsg m = { .type = AJ_MSG_EXEC_FAILED };
        if (setsid() < 0) {
                m.stage = AJ_STAGE_SETSID;
                m.err = errno;
                goto fail;
        }
        bool pty = cfg->stdin_mode == AJ_STDIN_PTY;
        /* The session leader with the jail's terminal as its controlling terminal: ^C, ^Z
         * and job control work through its line discipline, as in any terminal. */
        if ((pty && ioctl(cmd_in, TIOCSCTTY, 0) < 0) || dup2(cmd_in, 0) < 0 ||
            dup2(pty ? cmd_in : cfg->stdout_fd, 1) < 0 || dup2(pty ? cmd_in : cfg->stderr_fd, 2) < 0) {
                m.stage = AJ_STAGE_STDIO;
                m.err = errno;
                goto fail;
        }
        int fds[] = { cmd_in, cfg->stdout_fd, cfg->stderr_fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] > 2)
                        close(fds[i]);

        /* execvp() searches the PATH of `environ`, which must be the jail's. */
        environ = cfg->envp;
        execvp(cfg->argv[0], cfg->argv);
        m.stage = AJ_STAGE_EXEC;
        m.err = errno;
fail:
        (void)send_msg(sync_fd, &m, -1);
        _exit(m.stage == AJ_STAGE_EXEC && (m.err == ENOENT || m.err == ENOTDIR) ? 127 : 126);
}

_noreturn_ static void run_init(const AjSpawnConfig *cfg, int sync_fd, int cmd_in)
{
        sigset_t mask;
        sigemptyset(&mask);
        struct sigaction sa = { .sa_handler = noop_handler };
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ARRAY_SIZE(forwarded_signals); i++) {
                sigaddset(&mask, forwarded_signals[i]);
                sigaction(forwarded_signals[i], &sa, NULL);
        }
        sigaddset(&mask, SIGCHLD);
        sigaction(SIGCHLD, &sa, NULL);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                child_fail(sync_fd, AJ_STAGE_SIGNALS, errno, 0);

        /* vfork: init has nothing to do until the command has exec'd, and copying init's
         * page tables would be wasted. exec_command() never returns and touches no memory
         * init relies on (only `environ`, which init never reads). */
        child_trace(cfg, AJ_CHILD_T_FORKED);
        pid_t cmd = vfork();
        if (cmd < 0)
                child_fail(sync_fd, AJ_STAGE_FORK, errno, 0);
        if (cmd == 0)
                exec_command(cfg, sync_fd, cmd_in);

        /* Our copies of the command's stdio must go, or the supervisor never sees EOF (or,
         * with a pty, the master's hang-up). */
        int fds[] = { cmd_in, cfg->stdout_fd, cfg->stderr_fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0 && (i != 2 || fds[2] != fds[1]))
                        close(fds[i]);

        AjChildMsg started = { .type = AJ_MSG_STARTED, .pid = cmd };
        (void)send_msg(sync_fd, &started, -1);

        int cmd_status = 0;
        bool cmd_done = false;
        while (!cmd_done) {
                siginfo_t si;
                int sig = sigwaitinfo(&mask, &si);
                if (sig < 0)
                        continue;
                if (sig != SIGCHLD) {
                        /* To the command's process group, as a terminal would. */
                        if (kill(-cmd, sig) < 0)
                                (void)kill(cmd, sig);
                        continue;
                }
                for (;;) {
                        int st;
                        pid_t p = waitpid(-1, &st, WNOHANG);
                        if (p <= 0)
                                break;
                        if (p == cmd) {
                                cmd_status = st;
                                cmd_done = true;
                        }
                }
        }
        child_trace(cfg, AJ_CHILD_T_EXITED);
        AjChildMsg done = { .type = AJ_MSG_EXIT, .status = cmd_status, .pid = cmd };
        (void)send_msg(sync_fd, &done, -1);
        /* Exiting pid 1 makes the kernel kill whatever the command left running. */
        _exit(WIFEXITED(cmd_status) ? WEXITSTATUS(cmd_status) : 128 + WTERMSIG(cmd_status));
}

/* A new pseudo-terminal of the jail's own devpts instance (/dev/ptmx -> pts/ptmx): its
 * slave is /dev/pts/N in the jail, for ttyname() and `tty`. The master goes to the
 * supervisor; the slave is returned for the command. */
static int open_jail_pty(const AjSpawnConfig *cfg, int sync_fd, int *ret_slave)
{
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return -errno;
        int unlock = 0, slave = -1, r = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
                r = -errno;
                goto out;
        }
        slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                /* Before Linux 4.13: by name, which is ours (the instance is this jail's). */
                unsigned n;
                char path[64];
                if (ioctl(master, TIOCGPTN, &n) < 0) {
                        r = -errno;
                        goto out;
                }
                snprintf(path, sizeof(path), "/dev/pts/%u", n);
                slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (slave < 0) {
                        r = -errno;
                        goto out;
                }
        }
        if (cfg->have_termios)
                (void)tcsetattr(slave, TCSANOW, &cfg->termios);
        if (cfg->winsize.ws_row || cfg->winsize.ws_col)
                (void)ioctl(master, TIOCSWINSZ, &cfg->winsize);
        AjChildMsg m = { .type = AJ_MSG_PTY };
        r = send_msg(sync_fd, &m, master);
out:
        close(master);
        if (r < 0) {
                if (slave >= 0)
                        close(slave);
                return r;
        }
        *ret_slave = slave;
        return 0;
}

/* init's own 0, 1 and 2 become the jail's /dev/null: what the supervisor had there (the
 * operator's terminal) is never an fd in the jail. Returns the command's stdin. */
static int setup_stdio(const AjSpawnConfig *cfg, int sync_fd, int *ret_cmd_in, AjSpawnStage *ret_stage)
{
        *ret_stage = AJ_STAGE_STDIO;
        int null = open("/dev/null", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (null < 0)
                return -errno;
        int cmd_in = -1, r = 0;
        switch (cfg->stdin_mode) {
        case AJ_STDIN_INHERIT:
                cmd_in = fcntl(0, F_DUPFD_CLOEXEC, 3);
                if (cmd_in < 0 && errno == EBADF) /* the supervisor had no stdin */
                        cmd_in = fcntl(null, F_DUPFD_CLOEXEC, 3);
                break;
        case AJ_STDIN_NULL:
                cmd_in = fcntl(null, F_DUPFD_CLOEXEC, 3);
                break;
        case AJ_STDIN_PTY:
                *ret_stage = AJ_STAGE_TTY;
                r = open_jail_pty(cfg, sync_fd, &cmd_in);
                break;
        }
        if (r == 0 && cmd_in < 0)
                r = -errno;
        for (int fd = 0; r == 0 && fd <= 2; fd++)
                if (fd != null && dup2(null, fd) < 0)
                        r = -errno;
        if (null > 2)
                close(null);
        if (r < 0) {
                if (cmd_in >= 0)
                        close(cmd_in);
                return r;
        }
        *ret_cmd_in = cmd_in;
        return 0;
}

static int write_sysctl(const char *path, uint32_t value)
{
        char buf[16];
        snprintf(buf, sizeof(buf), "%u", value);
        return aj_write_file(path, buf);
}

/*
 * No user namespace can be created inside the jail, whatever its seccomp profile allows: the
 * namespace's root would hold CAP_SETFCAP over the agent's own files, and through the
 * idmapped workspace (owner mapped to the agent) a file capability it writes there is stored
 * as the owner's, root's for a root-owned workspace: host root for any local user. The limit
 * is the jail's own user namespace's sysctl (the sysctl set follows the writer's user
 * namespace, not the /proc mount), checked first when a child namespace is made; only
 * CAP_SYS_RESOURCE in the jail's namespace can raise it again, and the command has none.
 * Written before the mounts, while this /proc/sys is still writable here.
 *
 * The inotify limits are the same kind of sysctl, checked at the jail's namespace before
 * its host uid's count above it: where that uid is someone else's too (rootless: the
 * invoker's), they keep the jail to its share of that budget.
 */
static int set_userns_limits(const AjSpawnConfig *cfg)
{
        int r = write_sysctl("/proc/sys/user/max_user_namespaces", 0);
        if (r >= 0 && cfg->inotify_instances_max)
                r = write_sysctl("/proc/sys/user/max_inotify_instances", cfg->inotify_instances_max);
        if (r >= 0 && cfg->inotify_watches_max)
                r = write_sysctl("/proc/sys/user/max_inotify_watches", cfg->inotify_watches_max);
        return r;
}

/* One AJ_MSG_TREES message into trees[]: every fd it carried is placed or closed. */
static int recv_trees_msg(int sync_fd, size_t n_steps, int *trees, bool *ret_last)
{
        TreesMsg tm;
        union {
                char buf[CMSG_SPACE(TREES_PER_MSG * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = &tm, .iov_len = sizeof(tm) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        ssize_t n = recv_msg(sync_fd, &mh);
        if (n < 0)
                return (int)n;
        bool ok = (size_t)n >= sizeof(tm.m) && tm.m.type == AJ_MSG_TREES && tm.m.step >= 0 &&
                  tm.m.step <= TREES_PER_MSG && (size_t)n == sizeof(tm.m) + (size_t)tm.m.step * sizeof(uint32_t) &&
                  !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
        size_t got = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t j = 0; j < k; j++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof(int));
                        uint32_t step = ok && got < (size_t)tm.m.step ? tm.step[got] : UINT32_MAX;
                        if (step < n_steps && trees[step] < 0)
                                trees[step] = fd;
                        else {
                                close(fd);
                                ok = false;
                        }
                        got++;
                }
        }
        if (!ok || got != (size_t)tm.m.step)
                return -EPROTO;
        *ret_last = tm.m.status != 0;
        return 0;
}

int aj_spawn_recv_trees(int sync_fd, size_t n_steps, int **ret)
{
        int *trees = malloc((n_steps + 1) * sizeof(int));
        if (!trees)
                return -ENOMEM;
        for (size_t i = 0; i < n_steps; i++)
                trees[i] = -1;
        bool last = false;
        int r = 0;
        while (!last && (r = recv_trees_msg(sync_fd, n_steps, trees, &last)) >= 0)
                ;
        if (r < 0) {
                for (size_t i = 0; i < n_steps; i++)
                        if (trees[i] >= 0)
                                close(trees[i]);
                free(trees);
                return r;
        }
        *ret = trees;
        return 0;
}

/* Long on purpose: the jail child's steps, in the one order the kernel allows (mounts before
 * the pivot, capabilities dropped after the last privileged call, seccomp last before exec),
 * read top to bottom; each step is a call, and every failure is one {stage, errno} report. */
_noreturn_ static void child_main(const AjSpawnConfig *cfg, int sync_fd, int securebits_err)
{
        /* Tells the jail's init apart from the supervisor in ps and `agentjail inspect`. */
        child_trace(cfg, AJ_CHILD_T_STARTED);
        /* A new task often starts on its parent's CPU and takes it over; the supervisor,
         * whose clone3() has not returned yet, then waits for us (0.2-0.3 ms, measured
         * with `run -vv`: "cloned" after "init: started"). Give the CPU back at once. */
        (void)sched_yield();
        (void)prctl(PR_SET_NAME, "agentjail-init", 0, 0, 0);
        /* A network namespace costs a third of a millisecond to make: made here, by the
         * child (which has every capability in its new user namespace, so the namespaces
         * are that namespace's, as clone3's would be), it is made while the supervisor
         * plans (the config it reads after GO is completed meanwhile), not before the
         * clone. Nothing but this code runs until it is done. */
        int ns_err = unshare(CLONE_NEWNET | CLONE_NEWIPC) < 0 ? errno : 0;
        AjChildMsg go;
        int r = aj_spawn_recv(sync_fd, &go, NULL);
        if (r <= 0 || go.type != AJ_MSG_GO)
                _exit(125); /* the supervisor is gone or refused: nothing to report to */
        if (securebits_err)
                child_fail(sync_fd, AJ_STAGE_SECUREBITS, securebits_err, 0);
        if (ns_err)
                child_fail(sync_fd, AJ_STAGE_NETNS, ns_err, 0);
        child_trace(cfg, AJ_CHILD_T_GO);
        /* Out of the operator's session: init has no controlling terminal, and no signal
         * the terminal sends to the operator's process group reaches it from here on. */
        if (setsid() < 0)
                child_fail(sync_fd, AJ_STAGE_SETSID, errno, 0);
        drop_pending_signals();

        if (!cfg->rootless && setgroups(0, NULL) < 0)
                child_fail(sync_fd, AJ_STAGE_SETGROUPS, errno, 0);
        if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0)
                child_fail(sync_fd, AJ_STAGE_SETGID, errno, 0);
        /* Files created during setup need a mapped fsuid (else EOVERFLOW), so switch to
         * the jail's user now and keep the namespace's capabilities for the rest of setup. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
                child_fail(sync_fd, AJ_STAGE_SETUID, errno, 0);
        r = aj_caps_raise_effective();
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_CAPS_RAISE, r, 0);

        /* After the credential change (which clears it): if the supervisor dies, so do we.
         * If it died before this point, its end of the socket is already closed. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                child_fail(sync_fd, AJ_STAGE_PDEATHSIG, errno, 0);
        struct pollfd pfd = { .fd = sync_fd, .events = 0 };
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
                _exit(125);

        child_trace(cfg, AJ_CHILD_T_CREDS);
        if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
                child_fail(sync_fd, AJ_STAGE_HOSTNAME, errno, 0);
        r = aj_net_loopback_up();
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_LOOPBACK, r, 0);
        if (cfg->proxy_listeners) {
                /* Bound in the jail's namespace, served by the supervisor from outside. */
                int fds[2];
                r = aj_proxy_listen_in_current_netns(&fds[0], &fds[1]);
                if (r < 0)
                        child_fail(sync_fd, AJ_STAGE_PROXY, r, 0);
                for (int i = 0; i < 2; i++) {
                        AjChildMsg m = { .type = AJ_MSG_PROXY_LISTENER, .step = i };
                        r = send_msg(sync_fd, &m, fds[i]);
                        close(fds[i]);
                        if (r < 0)
                                child_fail(sync_fd, AJ_STAGE_PROXY, r, i);
                }
        }
        if (cfg->gateway_listener) {
                int fd;
                r = aj_proxy_listen_at("127.0.0.1", AJ_GATEWAY_PORT, &fd);
                if (r < 0)
                        child_fail(sync_fd, AJ_STAGE_PROXY, r, 2);
                AjChildMsg m = { .type = AJ_MSG_PROXY_LISTENER, .step = 2 };
                r = send_msg(sync_fd, &m, fd);
                close(fd);
                if (r < 0)
                        child_fail(sync_fd, AJ_STAGE_PROXY, r, 2);
        }

        child_trace(cfg, AJ_CHILD_T_NET);
        r = set_userns_limits(cfg);
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_USERNS, r, 0);

        int *trees = NULL;
        r = aj_spawn_recv_trees(sync_fd, aj_mount_plan_n_steps(cfg->mount), &trees);
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_SYNC, r, 0);
        size_t step = 0;
        r = aj_mount_apply(cfg->mount, trees, &step);
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_MOUNT, r, (int)step);
        child_trace(cfg, AJ_CHILD_T_MOUNTS);
        int cmd_in = -1;
        AjSpawnStage stdio_stage;
        r = setup_stdio(cfg, sync_fd, &cmd_in, &stdio_stage);
        if (r < 0)
                child_fail(sync_fd, stdio_stage, r, 0);

        /* The run's cgroup must be ours, and the root of our cgroup namespace, before anything
         * of the command runs. The supervisor made its v1 directories while we built the root
         * and sent their `tasks` files: we move ourselves, one thread, into each ("0": this
         * thread), which spares the kernel's threadgroup lock and the RCU grace period its
         * write side waits for on hybrid hosts (src/cgroup.h). Then JOINED. */
        AjChildMsg joined;
        for (int n_joined = 0;; n_joined++) {
                int task_fd = -1;
                r = aj_spawn_recv(sync_fd, &joined, &task_fd);
                if (r > 0 && joined.type == AJ_MSG_JOIN && task_fd >= 0) {
                        ssize_t w = write(task_fd, "0", 1);
                        int err = w == 1 ? 0 : w < 0 ? errno : EIO;
                        close(task_fd);
                        if (err)
                                child_fail(sync_fd, AJ_STAGE_CGROUP_JOIN, err, n_joined);
                        continue;
                }
                if (task_fd >= 0)
                        close(task_fd);
                if (r <= 0 || joined.type != AJ_MSG_JOINED)
                        _exit(125);
                break;
        }
        child_trace(cfg, AJ_CHILD_T_JOINED);
        if (unshare(CLONE_NEWCGROUP) < 0)
                child_fail(sync_fd, AJ_STAGE_CGROUPNS, errno, 0);

        int keep[] = { sync_fd, cfg->stdout_fd, cfg->stderr_fd, cmd_in };
        r = aj_close_all_except(3, keep, ARRAY_SIZE(keep));
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_FDS, r, 0);

        for (size_t i = 0; i < cfg->n_rlimits; i++)
                if (setrlimit(cfg->rlimits[i].resource, &cfg->rlimits[i].limit) < 0)
                        child_fail(sync_fd, AJ_STAGE_RLIMIT, errno, (int)i);

        /* The command may not read init's memory or fds through /proc. */
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

        r = aj_caps_drop_all();
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_CAPS_DROP, r, 0);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(sync_fd, AJ_STAGE_NO_NEW_PRIVS, errno, 0);

        /* Last: from here on, init itself runs under the filter the command inherits. */
        r = aj_seccomp_load(cfg->seccomp, cfg->seccomp_listener);
        if (r < 0)
                child_fail(sync_fd, AJ_STAGE_SECCOMP, r, 0);
        if (cfg->seccomp_listener) {
                AjChildMsg m = { .type = AJ_MSG_LISTENER };
                int q = send_msg(sync_fd, &m, r);
                close(r);
                if (q < 0)
                        child_fail(sync_fd, AJ_STAGE_SEND_LISTENER, q, 0);
        }
        child_trace(cfg, AJ_CHILD_T_SECCOMP);
        run_init(cfg, sync_fd, cmd_in);
}

/* ---- the supervisor side -------------------------------------------------------- */

/* The supervisor's credentials while it clones a jail owned by other ids (aj_spawn_clone). */
typedef struct {
        int securebits, dumpable;
        gid_t egid;
        bool switched;
} SavedCreds;

/* Effective ids to the owner's, capabilities kept: SECBIT_NO_SETUID_FIXUP keeps the kernel
 * from clearing them as the euid leaves 0 (CLONE_INTO_CGROUP needs them). The real and
 * saved ids stay 0: nothing running as the owner can signal us meanwhile. */
static int become_owner(const AjSpawnOwner *owner, SavedCreds *saved)
{
        *saved = (SavedCreds){};
        if (!owner || !owner->set)
                return 0;
        *saved = (SavedCreds){ .securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0),
                               .dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
                               .egid = getegid() };
        if (saved->securebits < 0 || saved->dumpable < 0)
                return -errno;
        if (prctl(PR_SET_SECUREBITS, (unsigned long)saved->securebits | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0)
                return -errno;
        saved->switched = true;
        if (setresgid((gid_t)-1, owner->gid, (gid_t)-1) < 0 || setresuid((uid_t)-1, owner->uid, (uid_t)-1) < 0)
                return -errno;
        return 0;
}

/* Back to root's effective ids and securebits; the euid change reset the dumpable flag
 * (to fs.suid_dumpable): put back too. Cannot fail as root; if it did, the supervisor must
 * not go on with another's ids. */
static void restore_creds(const SavedCreds *saved)
{
        if (!saved->switched)
                return;
        if (setresuid((uid_t)-1, 0, (uid_t)-1) < 0 || setresgid((gid_t)-1, saved->egid, (gid_t)-1) < 0 ||
            prctl(PR_SET_SECUREBITS, (unsigned long)saved->securebits, 0, 0, 0) < 0)
                abort();
        (void)prctl(PR_SET_DUMPABLE, saved->dumpable, 0, 0, 0);
}

/* A caller's real-time policy (SCHED_FIFO, SCHED_RR) never reaches the jail: the run's CPU limit
 * (cpu.max, v1's cfs quota) bounds the fair class only, so a real-time agent would run outside
 * it, and a v1 cpu cgroup, with no real-time runtime of its own, refuses the init outright.
 * SCHED_RESET_ON_FORK on the supervisor (a flag any task may set on itself) starts every
 * child in SCHED_OTHER, a negative nice reset to 0; the supervisor keeps its own policy. */
static int no_realtime_children(void)
{
        int policy = sched_getscheduler(0);
        if (policy < 0)
                return -errno;
        if (policy & SCHED_RESET_ON_FORK)
                return 0;
        if (policy != SCHED_FIFO && policy != SCHED_RR)
                return 0;
        struct sched_param param;
        if (sched_getparam(0, &param) < 0 || sched_setscheduler(0, policy | SCHED_RESET_ON_FORK, &param) < 0)
                return -errno;
        return 0;
}

int aj_spawn_clone(const AjSpawnConfig *cfg, const AjSpawnOwner *owner, AjSpawnHandle *ret)
{
        int r = no_realtime_children();
        if (r < 0)
                return r;
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return -errno;

        int pidfd = -1;
        struct clone_args args = {
                .flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_PIDFD, /* + child_main's */
                .pidfd = (uint64_t)(uintptr_t)&pidfd,
                .exit_signal = SIGCHLD,
        };
        if (cfg->cgroup_v2_fd >= 0) {
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = (uint64_t)cfg->cgroup_v2_fd;
        }
        SavedCreds saved;
        r = become_owner(owner, &saved);
        pid_t pid = r < 0 ? -1 : sys_clone3(&args);
        if (pid == 0) {
                close(sp[0]);
                /* The jail's securebits are the supervisor's (it has every capability in its
                 * new user namespace to set them); a failure is reported after GO. */
                int err = saved.switched && prctl(PR_SET_SECUREBITS, (unsigned long)saved.securebits, 0, 0, 0) < 0
                                  ? errno
                                  : 0;
                child_main(cfg, sp[1], err);
        }
        if (pid < 0 && r >= 0)
                r = -errno;
        restore_creds(&saved);
        if (pid < 0) {
                close(sp[0]);
                close(sp[1]);
                return r;
        }
        close(sp[1]);
        *ret = (AjSpawnHandle){
                .pid = pid,
                .pidfd = pidfd,
                .sync_fd = sp[0],
                .in_v2_cgroup = cfg->cgroup_v2_fd >= 0,
        };
        return 0;
}

int aj_spawn_config_share(const AjSpawnConfig *src, AjShared *s, AjSpawnConfig *dst)
{
        AjSpawnConfig c = *src;
        c.trace = dst->trace;
        c.cgroup_v2_fd = dst->cgroup_v2_fd;
        c.hostname = aj_shared_strdup(s, src->hostname);
        c.mount = src->mount ? aj_mount_plan_share(src->mount, s) : NULL;
        c.argv = aj_shared_strv(s, src->argv);
        c.envp = aj_shared_strv(s, src->envp);
        if ((src->hostname && !c.hostname) || (src->mount && !c.mount) || (src->argv && !c.argv) ||
            (src->envp && !c.envp))
                return -E2BIG;
        if (src->seccomp) {
                AjBpfProgram *p = aj_shared_alloc(s, sizeof(*p));
                struct sock_filter *f = aj_shared_alloc(s, (size_t)src->seccomp->len * sizeof(*f));
                if (!p || !f)
                        return -E2BIG;
                memcpy(f, src->seccomp->filter, (size_t)src->seccomp->len * sizeof(*f));
                *p = (AjBpfProgram){ .filter = f, .len = src->seccomp->len };
                c.seccomp = p;
        }
        *dst = c;
        return 0;
}

int aj_spawn_go(AjSpawnHandle *h)
{
        AjChildMsg m = { .type = AJ_MSG_GO };
        return send_msg(h->sync_fd, &m, -1);
}

int aj_spawn_send_trees(AjSpawnHandle *h, const AjMountPlan *plan)
{
        size_t n = aj_mount_plan_n_steps(plan), i = 0;
        do {
                TreesMsg tm = { .m = { .type = AJ_MSG_TREES } };
                int fds[TREES_PER_MSG];
                size_t k = 0;
                for (; i < n && k < TREES_PER_MSG; i++) {
                        int fd = aj_mount_plan_tree_fd(plan, i);
                        if (fd >= 0) {
                                tm.step[k] = (uint32_t)i;
                                fds[k++] = fd;
                        }
                }
                tm.m.step = (int32_t)k;
                tm.m.status = i >= n;
                int r = send_fds(h->sync_fd, &tm, sizeof(tm.m) + k * sizeof(uint32_t), fds, k);
                if (r < 0)
                        return r;
        } while (i < n);
        return 0;
}

int aj_spawn_send_join(AjSpawnHandle *h, int task_fd)
{
        AjChildMsg m = { .type = AJ_MSG_JOIN };
        return task_fd < 0 ? -EBADF : send_msg(h->sync_fd, &m, task_fd);
}

int aj_spawn_joined(AjSpawnHandle *h)
{
        AjChildMsg m = { .type = AJ_MSG_JOINED };
        return send_msg(h->sync_fd, &m, -1);
}

void aj_spawn_handle_done(AjSpawnHandle *h)
{
        if (h->pidfd >= 0)
                close(h->pidfd);
        if (h->sync_fd >= 0)
                close(h->sync_fd);
        h->pidfd = h->sync_fd = -1;
}
