/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's seccomp filter. A pure plan (which rule each syscall number gets) is compiled by
 * libseccomp on the supervisor side and exported as raw BPF, so the child installs it with one
 * seccomp(2) call and no allocation. Compiled programs are cached, keyed by everything that can
 * change their bytes. See docs/seccomp.md for what is allowed and why.
 */

#include <errno.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>

#include "seccomp-internal.h"
#include "util/syscalls.h"

/*
 * Docker's default allowlist for syscalls that need no capability (64-bit names only), minus
 * io_uring_* (a large kernel attack surface that also escapes seccomp inspection of the
 * operations it performs), name_to_handle_at (file handles serve open_by_handle_at) and
 * io_setup (conditional_rules: ENOSYS); mmap, memfd_create and shmget are conditional there.
 * Names libseccomp knows but the native arch lacks resolve to negative numbers and are skipped.
 */
/* clang-format off */
static const int base_allow[] = {
        SCMP_SYS(accept), SCMP_SYS(accept4), SCMP_SYS(access), SCMP_SYS(adjtimex),
        SCMP_SYS(alarm), SCMP_SYS(arch_prctl), SCMP_SYS(bind), SCMP_SYS(brk), SCMP_SYS(capget),
        SCMP_SYS(capset), SCMP_SYS(chdir), SCMP_SYS(chmod), SCMP_SYS(chown),
        SCMP_SYS(clock_adjtime), SCMP_SYS(clock_getres), SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_nanosleep), SCMP_SYS(close), SCMP_SYS(close_range), SCMP_SYS(connect),
        SCMP_SYS(copy_file_range), SCMP_SYS(creat), SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(dup3),
        SCMP_SYS(epoll_create), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl),
        SCMP_SYS(epoll_ctl_old), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2),
        SCMP_SYS(epoll_wait), SCMP_SYS(epoll_wait_old), SCMP_SYS(eventfd), SCMP_SYS(eventfd2),
        SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(exit), SCMP_SYS(exit_group),
        SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(fadvise64), SCMP_SYS(fallocate),
        SCMP_SYS(fanotify_mark), SCMP_SYS(fchdir), SCMP_SYS(fchmod), SCMP_SYS(fchmodat),
        SCMP_SYS(fchown), SCMP_SYS(fchownat), SCMP_SYS(fcntl), SCMP_SYS(fdatasync),
        SCMP_SYS(fgetxattr), SCMP_SYS(flistxattr), SCMP_SYS(flock), SCMP_SYS(fork),
        SCMP_SYS(fremovexattr), SCMP_SYS(fsetxattr), SCMP_SYS(fstat), SCMP_SYS(fstatfs),
        SCMP_SYS(fsync), SCMP_SYS(ftruncate), SCMP_SYS(futex), SCMP_SYS(futex_waitv),
        SCMP_SYS(futimesat), SCMP_SYS(getcpu), SCMP_SYS(getcwd), SCMP_SYS(getdents),
        SCMP_SYS(getdents64), SCMP_SYS(getegid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
        SCMP_SYS(getgroups), SCMP_SYS(getitimer), SCMP_SYS(getpeername), SCMP_SYS(getpgid),
        SCMP_SYS(getpgrp), SCMP_SYS(getpid), SCMP_SYS(getppid), SCMP_SYS(getpriority),
        SCMP_SYS(getrandom), SCMP_SYS(getresgid), SCMP_SYS(getresuid), SCMP_SYS(getrlimit),
        SCMP_SYS(get_robust_list), SCMP_SYS(getrusage), SCMP_SYS(getsid), SCMP_SYS(getsockname),
        SCMP_SYS(getsockopt), SCMP_SYS(get_thread_area), SCMP_SYS(gettid),
        SCMP_SYS(gettimeofday), SCMP_SYS(getuid), SCMP_SYS(getxattr),
        SCMP_SYS(inotify_add_watch), SCMP_SYS(inotify_init), SCMP_SYS(inotify_init1),
        SCMP_SYS(inotify_rm_watch), SCMP_SYS(io_cancel), SCMP_SYS(io_destroy),
        SCMP_SYS(io_getevents), SCMP_SYS(io_pgetevents), SCMP_SYS(ioprio_get),
        SCMP_SYS(ioprio_set), SCMP_SYS(io_submit), SCMP_SYS(kill),
        SCMP_SYS(landlock_add_rule), SCMP_SYS(landlock_create_ruleset),
        SCMP_SYS(landlock_restrict_self), SCMP_SYS(lchown), SCMP_SYS(lgetxattr), SCMP_SYS(link),
        SCMP_SYS(linkat), SCMP_SYS(listen), SCMP_SYS(listxattr), SCMP_SYS(llistxattr),
        SCMP_SYS(lremovexattr), SCMP_SYS(lseek), SCMP_SYS(lsetxattr), SCMP_SYS(lstat),
        SCMP_SYS(madvise), SCMP_SYS(membarrier), SCMP_SYS(memfd_secret),
        SCMP_SYS(mincore), SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(mknod), SCMP_SYS(mknodat),
        SCMP_SYS(mlock), SCMP_SYS(mlock2), SCMP_SYS(mlockall), SCMP_SYS(mprotect),
        SCMP_SYS(mq_getsetattr), SCMP_SYS(mq_notify), SCMP_SYS(mq_open),
        SCMP_SYS(mq_timedreceive), SCMP_SYS(mq_timedsend), SCMP_SYS(mq_unlink), SCMP_SYS(mremap),
        SCMP_SYS(msgctl), SCMP_SYS(msgget), SCMP_SYS(msgrcv), SCMP_SYS(msgsnd), SCMP_SYS(msync),
        SCMP_SYS(munlock), SCMP_SYS(munlockall), SCMP_SYS(munmap), SCMP_SYS(nanosleep),
        SCMP_SYS(newfstatat), SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(pause),
        SCMP_SYS(pidfd_open), SCMP_SYS(pidfd_send_signal), SCMP_SYS(pipe), SCMP_SYS(pipe2),
        SCMP_SYS(pkey_alloc), SCMP_SYS(pkey_free), SCMP_SYS(pkey_mprotect), SCMP_SYS(poll),
        SCMP_SYS(ppoll), SCMP_SYS(prctl), SCMP_SYS(pread64), SCMP_SYS(preadv), SCMP_SYS(preadv2),
        SCMP_SYS(prlimit64), SCMP_SYS(process_mrelease), SCMP_SYS(pselect6), SCMP_SYS(pwrite64),
        SCMP_SYS(pwritev), SCMP_SYS(pwritev2), SCMP_SYS(read), SCMP_SYS(readahead),
        SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(readv), SCMP_SYS(recvfrom),
        SCMP_SYS(recvmmsg), SCMP_SYS(recvmsg), SCMP_SYS(remap_file_pages), SCMP_SYS(removexattr),
        SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(restart_syscall),
        SCMP_SYS(rmdir), SCMP_SYS(rseq), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigpending),
        SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigsuspend), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(rt_tgsigqueueinfo),
        SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_getattr), SCMP_SYS(sched_getparam),
        SCMP_SYS(sched_get_priority_max), SCMP_SYS(sched_get_priority_min),
        SCMP_SYS(sched_getscheduler), SCMP_SYS(sched_rr_get_interval),
        SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_setattr), SCMP_SYS(sched_setparam),
        SCMP_SYS(sched_setscheduler), SCMP_SYS(sched_yield), SCMP_SYS(seccomp), SCMP_SYS(select),
        SCMP_SYS(semctl), SCMP_SYS(semget), SCMP_SYS(semop), SCMP_SYS(semtimedop),
        SCMP_SYS(sendfile), SCMP_SYS(sendmmsg), SCMP_SYS(sendmsg), SCMP_SYS(sendto),
        SCMP_SYS(setfsgid), SCMP_SYS(setfsuid), SCMP_SYS(setgid), SCMP_SYS(setgroups),
        SCMP_SYS(setitimer), SCMP_SYS(setpgid), SCMP_SYS(setpriority), SCMP_SYS(setregid),
        SCMP_SYS(setresgid), SCMP_SYS(setresuid), SCMP_SYS(setreuid), SCMP_SYS(setrlimit),
        SCMP_SYS(set_robust_list), SCMP_SYS(setsid), SCMP_SYS(setsockopt),
        SCMP_SYS(set_thread_area), SCMP_SYS(set_tid_address), SCMP_SYS(setuid),
        SCMP_SYS(setxattr), SCMP_SYS(shmat), SCMP_SYS(shmctl), SCMP_SYS(shmdt),
        SCMP_SYS(shutdown), SCMP_SYS(sigaltstack), SCMP_SYS(signalfd), SCMP_SYS(signalfd4),
        SCMP_SYS(splice), SCMP_SYS(stat), SCMP_SYS(statfs), SCMP_SYS(statx), SCMP_SYS(symlink),
        SCMP_SYS(symlinkat), SCMP_SYS(sync), SCMP_SYS(sync_file_range), SCMP_SYS(syncfs),
        SCMP_SYS(sysinfo), SCMP_SYS(tee), SCMP_SYS(tgkill), SCMP_SYS(time), SCMP_SYS(timer_create),
        SCMP_SYS(timer_delete), SCMP_SYS(timer_getoverrun), SCMP_SYS(timer_gettime),
        SCMP_SYS(timer_settime), SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_gettime),
        SCMP_SYS(timerfd_settime), SCMP_SYS(times), SCMP_SYS(tkill), SCMP_SYS(truncate),
        SCMP_SYS(umask), SCMP_SYS(uname), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(utime),
        SCMP_SYS(utimensat), SCMP_SYS(utimes), SCMP_SYS(vfork), SCMP_SYS(vmsplice), SCMP_SYS(wait4),
        SCMP_SYS(waitid), SCMP_SYS(write), SCMP_SYS(writev),
};
/* clang-format on */

#if defined(__x86_64__)
/* Newer than Docker's list and than the installed headers, so by number; no privilege involved.
 * glibc starts using some (fchmodat2, map_shadow_stack) and would break on EPERM where it
 * expects ENOSYS. uretprobe/uprobe only work from the kernel's own trampolines (anyone else
 * gets SIGILL/ENXIO); denying them would crash a jailed process the host admin probes.
 * statmount/listmount show no more than /proc/self/mountinfo. */
/* clang-format off */
static const int recent_allow_x86_64[] = {
        335 /* uretprobe */,     336 /* uprobe */,        451 /* cachestat */,
        452 /* fchmodat2 */,     453 /* map_shadow_stack */, 454 /* futex_wake */,
        455 /* futex_wait */,    456 /* futex_requeue */, 457 /* statmount */,
        458 /* listmount */,     462 /* mseal */,         463 /* setxattrat */,
        464 /* getxattrat */,    465 /* listxattrat */,   466 /* removexattrat */,
        468 /* file_getattr */,  469 /* file_setattr */,
};
/* clang-format on */

#endif

static const struct {
        int nr;
        SeccompRule rule;
} conditional_rules[] = {
        { SCMP_SYS(clone), RULE_CLONE },
        { SCMP_SYS(clone3), RULE_ENOSYS },
        /* Native AIO contexts count against fs.aio-max-nr, one counter for the whole host that
         * no namespace or cgroup divides and root is not exempt from: a jail took all 65536
         * events and every io_setup on the host failed with EAGAIN until it ended. ENOSYS is a
         * kernel without CONFIG_AIO, which libaio's users (InnoDB, QEMU) fall back from. */
        { SCMP_SYS(io_setup), RULE_ENOSYS },
        { SCMP_SYS(mmap), RULE_NO_HUGETLB },
        { SCMP_SYS(memfd_create), RULE_NO_HUGETLB },
        { SCMP_SYS(shmget), RULE_NO_HUGETLB },
        { SCMP_SYS(socket), RULE_SOCKET_FAMILY },
        { SCMP_SYS(socketpair), RULE_SOCKETPAIR },
        { SCMP_SYS(personality), RULE_PERSONALITY },
        { SCMP_SYS(ioctl), RULE_IOCTL },
};

/*
 * RestrictSUIDSGID: no file gets S_ISUID or S_ISGID from inside a jail. The idmapped workspace
 * and rw binds map the agent to the files' owner (often root) on the host, so such a file would
 * be a setuid binary there for any local user. Every call that sets a mode is conditional on the
 * mode having neither bit (open only when it creates: the kernel ignores the mode otherwise).
 * openat2 passes its mode inside a struct the filter cannot read: it answers ENOSYS, as on a
 * kernel older than 5.6, so callers fall back to openat (the libcs' open() never uses it).
 * These conditions stay when a profile's `allow` names the syscall: they protect the host,
 * not the jail's own shape.
 */
/* SUID_SGID_BITS, OPEN_CREATE_FLAGS: seccomp-internal.h. */

/* clang-format off */
static const struct {
        int nr;
        SeccompRule rule;
} mode_rules[] = {
        { SCMP_SYS(chmod), RULE_MODE_A1 },   { SCMP_SYS(fchmod), RULE_MODE_A1 },
        { SCMP_SYS(fchmodat), RULE_MODE_A2 }, { SCMP_SYS(creat), RULE_MODE_A1 },
        { SCMP_SYS(mkdir), RULE_MODE_A1 },   { SCMP_SYS(mkdirat), RULE_MODE_A2 },
        { SCMP_SYS(mknod), RULE_MODE_A1 },   { SCMP_SYS(mknodat), RULE_MODE_A2 },
        { SCMP_SYS(open), RULE_OPEN_A1 },    { SCMP_SYS(openat), RULE_OPEN_A2 },
        { SCMP_SYS(openat2), RULE_ENOSYS },
#if defined(__x86_64__)
        /* fchmodat2(dirfd, path, mode, flags): newer than Debian 12's libseccomp. */
        { 452, RULE_MODE_A2 },
#endif
};
/* clang-format on */

SeccompRule aj_seccomp_mode_rule(int nr)
{
        for (size_t i = 0; i < ARRAY_SIZE(mode_rules); i++)
                if (mode_rules[i].nr == nr)
                        return mode_rules[i].rule;
        return RULE_DENY;
}

/*
 * Huge pages come from a pool the host reserved (vm.nr_hugepages: a database's, a VM's), not
 * from the page allocator, and a memory cgroup does not count them (v1 never; v2 only with
 * memory_hugetlb_accounting): a jail at 512 KiB of its 128 MiB limit held the host's whole
 * pool. Without a hugetlbfs mount (the jail has none) these three flags are the only ways to
 * ask for them. Transparent huge pages are ordinary memory and stay allowed.
 */
static const struct {
        int nr;
        unsigned arg;
        uint64_t flag;
} hugetlb_flags[] = {
        { SCMP_SYS(mmap), 3, MAP_HUGETLB },
        { SCMP_SYS(memfd_create), 1, MFD_HUGETLB },
        { SCMP_SYS(shmget), 2, SHM_HUGETLB },
};

bool aj_seccomp_hugetlb_flag(int nr, unsigned *ret_arg, uint64_t *ret_flag)
{
        for (size_t i = 0; i < ARRAY_SIZE(hugetlb_flags); i++)
                if (hugetlb_flags[i].nr == nr) {
                        *ret_arg = hugetlb_flags[i].arg;
                        *ret_flag = hugetlb_flags[i].flag;
                        return true;
                }
        return false;
}

/* CLONE_NAMESPACE_FLAGS: seccomp-internal.h. */

/* Docker's safe personas: PER_LINUX, PER_LINUX32, UNAME26 alone and with PER_LINUX32, query. */
static const uint32_t allowed_personas[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff };

/* Terminal input injection (TIOCSTI), the console multiplexer (TIOCLINUX), and changing a
 * terminal's line discipline (TIOCSETD): on any pty the jail opens it attaches HDLC, GSM 0710,
 * PPP, SLIP, HCI... drivers that only serial-line daemons use, and with dev.tty.ldisc_autoload
 * (distributions' default) it makes the kernel load their modules: the way in of n_hdlc's and
 * n_gsm's local root bugs. */
static const uint32_t denied_ioctls[] = { TIOCSTI, TIOCLINUX, TIOCSETD };

/*
 * limits.core false: RLIMIT_CORE is 1 byte, below any core file (a page at least), and the
 * kernel's mark for "no core dump helper": with a piped core_pattern (systemd-coredump,
 * apport) RLIMIT_CORE is otherwise ignored, and each crash of a jailed process started the
 * helper on the host, as root, outside the jail's cgroup, namespaces and limits, as many at
 * once as the agent crashed (kernel.core_pipe_limit is 0 by default). The agent may not put
 * the limit back to 0 (a lowering the kernel allows anyone), yet scripts do (`ulimit -c 0`,
 * `ulimit -c unlimited`) and stop on an error: a new RLIMIT_CORE succeeds without effect
 * (setrlimit, prlimit64 without an old limit to fill: SCMP_ACT_ERRNO(0)). prlimit64 asked for
 * the old limit too (util-linux's prlimit) is refused: its success would leave the old one
 * unfilled, garbage the caller would believe. Reading the limit is not touched.
 */
bool aj_seccomp_sets_core_limit(int nr, const uint64_t args[6])
{
        return nr == SCMP_SYS(prlimit64) && (uint32_t)args[1] == RLIMIT_CORE && args[2] != 0 && args[3] != 0;
}

static void plan_keep_core(SeccompPlan *plan)
{
        static const struct {
                int nr;
                SeccompRule rule;
        } keep[] = { { SCMP_SYS(setrlimit), RULE_KEEP_CORE_A0 }, { SCMP_SYS(prlimit64), RULE_KEEP_CORE_A1 } };
        for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
                if (keep[i].nr >= 0 && keep[i].nr < PLAN_NR_MAX && plan->rule[keep[i].nr] == RULE_ALLOW)
                        plan->rule[keep[i].nr] = (uint8_t)keep[i].rule;
}

/* AF_INET and AF_INET6 sockets the kernel makes without a module (add_socket_rules). */
typedef struct {
        uint32_t family, type, protocol;
        bool any_protocol; /* SOCK_RAW: a wildcard entry matches them all */
} SocketBuiltin;
#define SOCKET_TYPE_MASK 0xfu
/* clang-format off */
static const SocketBuiltin socket_builtin[] = {
        { AF_INET,  SOCK_STREAM, 0, false },  { AF_INET,  SOCK_STREAM, IPPROTO_TCP, false },
        { AF_INET,  SOCK_STREAM, IPPROTO_MPTCP, false },
        { AF_INET,  SOCK_DGRAM,  0, false },  { AF_INET,  SOCK_DGRAM,  IPPROTO_UDP, false },
        { AF_INET,  SOCK_DGRAM,  IPPROTO_UDPLITE, false }, { AF_INET, SOCK_DGRAM, IPPROTO_ICMP, false },
        { AF_INET,  SOCK_RAW,    0, true },
        { AF_INET6, SOCK_STREAM, 0, false },  { AF_INET6, SOCK_STREAM, IPPROTO_TCP, false },
        { AF_INET6, SOCK_STREAM, IPPROTO_MPTCP, false },
        { AF_INET6, SOCK_DGRAM,  0, false },  { AF_INET6, SOCK_DGRAM,  IPPROTO_UDP, false },
        { AF_INET6, SOCK_DGRAM,  IPPROTO_UDPLITE, false }, { AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6, false },
        { AF_INET6, SOCK_RAW,    0, true },
};
/* clang-format on */

bool aj_seccomp_host_inet6(const char *protocols)
{
        FILE *f = fopen(protocols, "re");
        if (!f)
                return false;
        bool found = false;
        char line[256];
        while (!found && fgets(line, sizeof(line), f))
                found = strncmp(line, "TCPv6 ", 6) == 0;
        fclose(f);
        return found;
}

bool aj_seccomp_socket_builtin(uint64_t family, uint64_t type, uint64_t protocol)
{
        for (size_t i = 0; i < ARRAY_SIZE(socket_builtin); i++) {
                const SocketBuiltin *b = &socket_builtin[i];
                if ((uint32_t)family == b->family && (type & SOCKET_TYPE_MASK) == b->type &&
                    (b->any_protocol || (uint32_t)protocol == b->protocol))
                        return true;
        }
        return false;
}

/* Syscalls no profile can allow: they do on the agent's behalf what the filter's argument
 * rules exist to refuse, out of the filter's sight. */
static bool never_allowed(int nr)
{
        return nr == SCMP_SYS(io_uring_setup) || nr == SCMP_SYS(io_uring_enter) || nr == SCMP_SYS(io_uring_register);
}

static int plan_apply_names(SeccompPlan *plan, char *const *names, SeccompRule rule, const char *what,
                            AjError *ret_error)
{
        size_t n = 0;
        for (char *const *p = names; p && *p; p++, n++) {
                if (n >= SPEC_NAMES_MAX) {
                        return aj_error_set(ret_error, -EINVAL, "seccomp.%s: more than %d names", what, SPEC_NAMES_MAX);
                }
                int nr;
                int r = aj_seccomp_syscall_lookup(*p, &nr);
                if (r < 0) {
                        return aj_error_set(ret_error, -EINVAL, "seccomp.%s: unknown syscall '%s'", what, *p);
                }
                if (r > 0 && rule == RULE_ALLOW && never_allowed(nr)) {
                        return aj_error_set(ret_error, -EINVAL,
                                            "seccomp.%s: '%s' cannot be allowed: io_uring opens, "
                                            "creates and changes files in the kernel where no seccomp "
                                            "rule sees it (it would lift the setuid/setgid rule, and "
                                            "every argument check)",
                                            what, *p);
                }
                if (r > 0) {
                        SeccompRule mode_rule = aj_seccomp_mode_rule(nr);
                        plan->rule[nr] = (uint8_t)(rule == RULE_ALLOW && mode_rule != RULE_DENY ? mode_rule : rule);
                }
        }
        return 0;
}

static void plan_set(SeccompPlan *plan, int nr, SeccompRule rule)
{
        /* Negative: a pseudo number for a syscall the native arch does not have. */
        if (nr >= 0 && nr < PLAN_NR_MAX)
                plan->rule[nr] = (uint8_t)rule;
}

int aj_seccomp_plan_build(const AjSeccompSpec *spec, SeccompPlan *ret, AjError *ret_error)
{
        if (spec->base && !streq(spec->base, "default") && !streq(spec->base, "docker-plus")) {
                return aj_error_set(ret_error, -EINVAL, "seccomp.default: unknown base filter '%s'", spec->base);
        }

        SeccompPlan plan = { .notify = spec->notify, .allow_netlink = spec->allow_netlink, .no_inet6 = spec->no_inet6 };
        for (size_t i = 0; i < ARRAY_SIZE(base_allow); i++)
                plan_set(&plan, base_allow[i], RULE_ALLOW);
#if defined(__x86_64__)
        for (size_t i = 0; i < ARRAY_SIZE(recent_allow_x86_64); i++)
                plan_set(&plan, recent_allow_x86_64[i], RULE_ALLOW);
#endif
        for (size_t i = 0; i < ARRAY_SIZE(conditional_rules); i++)
                plan_set(&plan, conditional_rules[i].nr, conditional_rules[i].rule);
        for (size_t i = 0; i < ARRAY_SIZE(mode_rules); i++)
                plan_set(&plan, mode_rules[i].nr, mode_rules[i].rule);

        /* Deny after allow: a name in both lists stays denied (fail closed). Names are all
         * validated before anything is reported, deny list first. */
        int r = plan_apply_names(&plan, spec->deny, RULE_DENY, "deny", ret_error);
        if (r < 0)
                return r;
        r = plan_apply_names(&plan, spec->allow, RULE_ALLOW, "allow", ret_error);
        if (r < 0)
                return r;
        r = plan_apply_names(&plan, spec->deny, RULE_DENY, "deny", ret_error);
        if (r < 0)
                return r;
        /* Last: it protects the host, so a profile's allow does not lift it. */
        if (spec->fixed_core)
                plan_keep_core(&plan);

        *ret = plan;
        return 0;
}

/* Allow `nr` when the low 32 bits of argument `arg` are none of `excluded`. The kernel truncates
 * such arguments to unsigned int, so the upper half must not matter; libseccomp has no masked
 * "not equal", so the complement is covered by prefix cubes, one MASKED_EQ rule each: a subtree
 * of the 32-bit space holding no excluded value is allowed whole. */
static int add_allow_lo32_except(scmp_filter_ctx ctx, int nr, unsigned arg, const uint32_t *excluded, size_t n_excluded,
                                 uint32_t prefix, unsigned depth)
{
        uint32_t mask = depth == 0 ? 0 : ~UINT32_C(0) << (32 - depth);
        bool hit = false;
        for (size_t i = 0; i < n_excluded; i++)
                if ((excluded[i] & mask) == prefix)
                        hit = true;
        if (!hit)
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                              SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, prefix));
        if (depth == 32)
                return 0;
        int r = add_allow_lo32_except(ctx, nr, arg, excluded, n_excluded, prefix, depth + 1);
        if (r < 0)
                return r;
        return add_allow_lo32_except(ctx, nr, arg, excluded, n_excluded, prefix | UINT32_C(1) << (31 - depth),
                                     depth + 1);
}

static int add_allow_lo32_in(scmp_filter_ctx ctx, int nr, unsigned arg, const uint32_t *values, size_t n_values)
{
        for (size_t i = 0; i < n_values; i++) {
                int r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                               SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, UINT32_MAX, values[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * socket(): AF_UNIX (AF_NETLINK with allow_netlink), and AF_INET/AF_INET6 with the types and
 * protocols the kernel has built in (aj_seccomp_socket_builtin). For any other (SCTP, L2TP,
 * SMC, a number nothing registered; SOCK_SEQPACKET) inet_create() asks for a module before
 * it checks anything of the caller: request_module() starts modprobe on the host, as root,
 * outside the jail's cgroup, namespaces and limits, once per call while no module answers
 * (a loop of such calls kept the host forking modprobe), and loads what it finds: kernel code
 * the host's owner never chose. SOCK_RAW matches every protocol without a module, and then
 * needs CAP_NET_RAW, which the jail lacks. A family the kernel has not registered is asked
 * of modprobe first, in __sock_create(), for any type: AF_INET6 where IPv6 is built but
 * booted disabled (ipv6.disable=1, a common hardening) or a module not loaded, on every call
 * (every program that tries IPv6 first); then it is EAFNOSUPPORT here, what the kernel says.
 */
static int add_socket_rules(scmp_filter_ctx ctx, int nr, const SeccompPlan *plan)
{
        uint32_t plain[] = { AF_UNIX, AF_NETLINK };
        int r = add_allow_lo32_in(ctx, nr, 0, plain, plan->allow_netlink ? 2 : 1);
        if (r >= 0 && plan->no_inet6)
                r = seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1,
                                           SCMP_A0_64(SCMP_CMP_MASKED_EQ, UINT32_MAX, AF_INET6));
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(socket_builtin); i++) {
                const SocketBuiltin *b = &socket_builtin[i];
                if (plan->no_inet6 && b->family == AF_INET6)
                        continue;
                if (b->any_protocol)
                        r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 2,
                                                   SCMP_A0_64(SCMP_CMP_MASKED_EQ, UINT32_MAX, b->family),
                                                   SCMP_A1_64(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, b->type));
                else
                        r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 3,
                                                   SCMP_A0_64(SCMP_CMP_MASKED_EQ, UINT32_MAX, b->family),
                                                   SCMP_A1_64(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, b->type),
                                                   SCMP_A2_64(SCMP_CMP_MASKED_EQ, UINT32_MAX, b->protocol));
        }
        return r;
}

/* setrlimit (the resource in argument 0) and prlimit64 (in 1, the new limit in 2, the old in 3)
 * with limits.core false (aj_seccomp_sets_core_limit): any other resource, and a read, as
 * allowed; a new RLIMIT_CORE succeeds without effect, but for a prlimit64 that also asks for
 * the old limit, which the deny action answers. */
static int add_keep_core_rules(scmp_filter_ctx ctx, int nr, unsigned arg)
{
        uint32_t core = RLIMIT_CORE;
        int r = add_allow_lo32_except(ctx, nr, arg, &core, 1, 0, 0);
        if (r < 0)
                return r;
        struct scmp_arg_cmp is_core = SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, UINT32_MAX, RLIMIT_CORE);
        if (arg == 0)
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(0), nr, 1, is_core);
        /* A read; and a set with no old limit to fill (both: a call that does nothing). */
        r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 2, is_core, SCMP_A2_64(SCMP_CMP_EQ, 0));
        if (r < 0)
                return r;
        return seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(0), nr, 2, is_core, SCMP_A3_64(SCMP_CMP_EQ, 0));
}

static int add_rule(scmp_filter_ctx ctx, const SeccompPlan *plan, int nr)
{
        switch ((SeccompRule)plan->rule[nr]) {
        case RULE_DENY:
                return 0;
        case RULE_ALLOW:
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 0);
        case RULE_ENOSYS:
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
        case RULE_CLONE:
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                              SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0));
        case RULE_SOCKET_FAMILY:
                return add_socket_rules(ctx, nr, plan);
        case RULE_SOCKETPAIR: {
                uint32_t family = AF_UNIX;
                return add_allow_lo32_in(ctx, nr, 0, &family, 1);
        }
        case RULE_PERSONALITY:
                return add_allow_lo32_in(ctx, nr, 0, allowed_personas, ARRAY_SIZE(allowed_personas));
        case RULE_IOCTL:
                return add_allow_lo32_except(ctx, nr, 1, denied_ioctls, ARRAY_SIZE(denied_ioctls), 0, 0);
        case RULE_NO_HUGETLB: {
                unsigned arg;
                uint64_t flag;
                if (!aj_seccomp_hugetlb_flag(nr, &arg, &flag))
                        return -EINVAL;
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, flag, 0));
        }
        case RULE_KEEP_CORE_A0:
        case RULE_KEEP_CORE_A1:
                return add_keep_core_rules(ctx, nr, plan->rule[nr] == RULE_KEEP_CORE_A0 ? 0 : 1);
        case RULE_MODE_A1:
        case RULE_MODE_A2:
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                              SCMP_CMP(plan->rule[nr] == RULE_MODE_A1 ? 1 : 2, SCMP_CMP_MASKED_EQ,
                                                       SUID_SGID_BITS, 0));
        case RULE_OPEN_A1:
        case RULE_OPEN_A2: {
                /* Two rules, either allows: the call creates nothing, or its mode is clean. */
                unsigned flags = plan->rule[nr] == RULE_OPEN_A1 ? 1 : 2;
                int r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                               SCMP_CMP(flags, SCMP_CMP_MASKED_EQ, OPEN_CREATE_FLAGS, 0));
                if (r < 0)
                        return r;
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                              SCMP_CMP(flags + 1, SCMP_CMP_MASKED_EQ, SUID_SGID_BITS, 0));
        }
        }
        return -EINVAL;
}

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
        if (*ctx)
                seccomp_release(*ctx);
}

static int export_program(scmp_filter_ctx ctx, AjBpfProgram *ret)
{
        /* libseccomp 2.5 exports only to an fd (seccomp_export_bpf_mem() came in 2.6). */
        _cleanup_close_ int fd = memfd_create("agentjail-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return r;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t size = (size_t)st.st_size;
        if (size == 0 || size % sizeof(struct sock_filter) != 0)
                return -EIO;
        if (size / sizeof(struct sock_filter) > BPF_MAXINSNS)
                return -E2BIG;
        _cleanup_free_ struct sock_filter *filter = malloc(size);
        if (!filter)
                return -ENOMEM;
        for (size_t done = 0; done < size;) {
                ssize_t n = pread(fd, (char *)filter + done, size - done, (off_t)done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                done += (size_t)n;
        }
        ret->len = (unsigned short)(size / sizeof(struct sock_filter));
        ret->filter = TAKE_PTR(filter);
        return 0;
}

int aj_seccomp_plan_compile(const SeccompPlan *plan, AjBpfProgram *ret)
{
        uint32_t deny_action = plan->notify ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(EPERM);
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = seccomp_init(deny_action);
        if (!ctx)
                return plan->notify ? -EOPNOTSUPP : -ENOMEM;

        /* Only the native arch is in the filter: foreign ABIs (i386 via int 0x80, x32 numbers
         * with bit 30 set) never reach the syscall table checks and kill the process. */
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return r;
        /* The caller sets no_new_privs itself before loading the raw program. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if (r < 0)
                return r;
        /* A binary tree over ~380 allowed numbers: a few comparisons per syscall, not hundreds. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        if (r < 0)
                return r;

        for (int nr = 0; nr < PLAN_NR_MAX; nr++) {
                r = add_rule(ctx, plan, nr);
                if (r < 0)
                        return r;
        }
        return export_program(ctx, ret);
}

int aj_seccomp_build(const AjSeccompSpec *spec, AjBpfProgram *ret, AjError *ret_error)
{
        SeccompPlan plan;
        int r = aj_seccomp_plan_build(spec, &plan, ret_error);
        if (r < 0)
                return r;
        return aj_seccomp_plan_compile(&plan, ret);
}

void aj_bpf_program_free(AjBpfProgram *p)
{
        if (!p)
                return;
        free(p->filter);
        p->filter = NULL;
        p->len = 0;
}

/* ---- child side ---- */

int aj_seccomp_load(const AjBpfProgram *prog, bool listener)
{
        if (!prog || !prog->filter || prog->len == 0)
                return -EINVAL;
        struct sock_fprog fprog = { .len = prog->len, .filter = prog->filter };
        unsigned long flags = listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
        /* The kernel creates the listener fd O_CLOEXEC. */
        long r = sys_seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog);
        if (r < 0)
                return -errno;
        return listener ? (int)r : 0;
}
