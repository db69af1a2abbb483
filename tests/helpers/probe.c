/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe: runs inside a jail (statically linked, no files needed) and reports what it
 * sees as `key=value` lines, so the integration tests can check isolation from the
 * inside. Every subcommand exits 0 unless its description says otherwise; failures of
 * the thing being probed are reported as errno names, not as exit statuses.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/kcmp.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_BLUETOOTH
#define AF_BLUETOOTH 31
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef TIOCSETD
#define TIOCSETD 0x5423
#endif

/* glibc headers may predate the newer syscalls; the numbers are the x86-64 ones. */
#if defined(__x86_64__)
#ifndef SYS_kexec_file_load
#define SYS_kexec_file_load 320
#endif
#ifndef SYS_userfaultfd
#define SYS_userfaultfd 323
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_fspick
#define SYS_fspick 433
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- errno / signal names */

struct name_entry {
        int value;
        const char *name;
};

/* clang-format off */
#define N(x) { x, #x }
static const struct name_entry errno_names[] = {
        N(EPERM), N(ENOENT), N(ESRCH), N(EINTR), N(EIO), N(ENXIO), N(E2BIG), N(ENOEXEC),
        N(EBADF), N(ECHILD), N(EAGAIN), N(ENOMEM), N(EACCES), N(EFAULT), N(ENOTBLK), N(EBUSY),
        N(EEXIST), N(EXDEV), N(ENODEV), N(ENOTDIR), N(EISDIR), N(EINVAL), N(ENFILE), N(EMFILE),
        N(ENOTTY), N(ETXTBSY), N(EFBIG), N(ENOSPC), N(ESPIPE), N(EROFS), N(EMLINK), N(EPIPE),
        N(EDOM), N(ERANGE), N(EDEADLK), N(ENAMETOOLONG), N(ENOLCK), N(ENOSYS), N(ENOTEMPTY),
        N(ELOOP), N(ENOMSG), N(EIDRM), N(ENOSTR), N(ENODATA), N(ETIME), N(ENOSR), N(ENOLINK),
        N(EPROTO), N(EBADMSG), N(EOVERFLOW), N(EILSEQ), N(EUSERS), N(ENOTSOCK),
        N(EDESTADDRREQ), N(EMSGSIZE), N(EPROTOTYPE), N(ENOPROTOOPT), N(EPROTONOSUPPORT),
        N(ESOCKTNOSUPPORT), N(EOPNOTSUPP), N(EPFNOSUPPORT), N(EAFNOSUPPORT), N(EADDRINUSE),
        N(EADDRNOTAVAIL), N(ENETDOWN), N(ENETUNREACH), N(ENETRESET), N(ECONNABORTED),
        N(ECONNRESET), N(ENOBUFS), N(EISCONN), N(ENOTCONN), N(ESHUTDOWN), N(ETIMEDOUT),
        N(ECONNREFUSED), N(EHOSTDOWN), N(EHOSTUNREACH), N(EALREADY), N(EINPROGRESS),
        N(ESTALE), N(EDQUOT), N(ECANCELED), N(ENOKEY), N(EKEYEXPIRED), N(EKEYREVOKED),
        N(EKEYREJECTED), N(EOWNERDEAD), N(ENOTRECOVERABLE), N(ERFKILL), N(EHWPOISON),
        N(ENOMEDIUM), N(EMEDIUMTYPE), N(EREMOTEIO), N(EBADFD), N(ENOPKG),
};

static const struct name_entry signal_names[] = {
        N(SIGHUP), N(SIGINT), N(SIGQUIT), N(SIGILL), N(SIGTRAP), N(SIGABRT), N(SIGBUS),
        N(SIGFPE), N(SIGKILL), N(SIGUSR1), N(SIGSEGV), N(SIGUSR2), N(SIGPIPE), N(SIGALRM),
        N(SIGTERM), N(SIGSTKFLT), N(SIGCHLD), N(SIGCONT), N(SIGSTOP), N(SIGTSTP), N(SIGTTIN),
        N(SIGTTOU), N(SIGURG), N(SIGXCPU), N(SIGXFSZ), N(SIGVTALRM), N(SIGPROF), N(SIGWINCH),
        N(SIGIO), N(SIGPWR), N(SIGSYS),
};
#undef N
/* clang-format on */

static const char *errno_name(int e)
{
        static char buf[32];

        if (e == 0)
                return "OK";
        for (size_t i = 0; i < ARRAY_SIZE(errno_names); i++)
                if (errno_names[i].value == e)
                        return errno_names[i].name;
        snprintf(buf, sizeof(buf), "E%d", e);
        return buf;
}

static const char *signal_name(int sig)
{
        static char buf[32];

        for (size_t i = 0; i < ARRAY_SIZE(signal_names); i++)
                if (signal_names[i].value == sig)
                        return signal_names[i].name;
        snprintf(buf, sizeof(buf), "SIG%d", sig);
        return buf;
}

static int parse_signal(const char *s)
{
        char *end;
        long v;

        for (size_t i = 0; i < ARRAY_SIZE(signal_names); i++)
                if (strcmp(s, signal_names[i].name) == 0 || strcmp(s, signal_names[i].name + 3) == 0)
                        return signal_names[i].value;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v <= 0 || v >= NSIG)
                return -1;
        return (int)v;
}

static int parse_long(const char *s, long min, long max, long *ret)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void usage_error(const char *msg)
{
        fprintf(stderr, "probe: %s\n", msg);
        exit(2);
}

/* ------------------------------------------------------------------------- syscalls */

/* Each returns 0 if the call succeeded, or the errno it failed with. The arguments are
 * chosen so that a permitted call changes nothing on the host (invalid magic numbers,
 * nonexistent paths, bad fds, our own memory or our own pty). */

static int ret_errno(long r) { return r < 0 ? errno : 0; }

static int try_ptrace(void)
{
        /* PEEKDATA on a process we do not trace: ESRCH when permitted, never attaches. */
        return ret_errno(syscall(SYS_ptrace, PTRACE_PEEKDATA, 1, 0, 0));
}

static int try_process_vm_readv(void)
{
        static volatile int source = 42;
        int dest = 0;
        struct iovec local = { .iov_base = &dest, .iov_len = sizeof(dest) };
        struct iovec remote = { .iov_base = (void *)&source, .iov_len = sizeof(source) };

        return ret_errno(syscall(SYS_process_vm_readv, getpid(), &local, 1UL, &remote, 1UL, 0UL));
}

static int try_process_vm_writev(void)
{
        static volatile int target = 7;
        int value = 7;
        struct iovec local = { .iov_base = &value, .iov_len = sizeof(value) };
        struct iovec remote = { .iov_base = (void *)&target, .iov_len = sizeof(target) };

        return ret_errno(syscall(SYS_process_vm_writev, getpid(), &local, 1UL, &remote, 1UL, 0UL));
}

static int try_kcmp(void)
{
        pid_t p = getpid();

        return ret_errno(syscall(SYS_kcmp, p, p, KCMP_VM, 0UL, 0UL));
}

static int try_pidfd_getfd(void) { return ret_errno(syscall(SYS_pidfd_getfd, -1, 0, 0)); }

static int try_io_uring_setup(void)
{
        /* zero entries: EINVAL when the syscall is reachable. */
        long r = syscall(SYS_io_uring_setup, 0U, NULL);

        if (r >= 0)
                close((int)r);
        return ret_errno(r);
}

static int try_userfaultfd(void)
{
        long r = syscall(SYS_userfaultfd, O_CLOEXEC);

        if (r >= 0)
                close((int)r);
        return ret_errno(r);
}

static int try_bpf(void) { return ret_errno(syscall(SYS_bpf, -1, NULL, 0U)); }

static int try_perf_event_open(void) { return ret_errno(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0UL)); }

static int try_keyctl(void)
{
        /* An invalid operation: EOPNOTSUPP when reachable. */
        return ret_errno(syscall(SYS_keyctl, 0x7fff, 0UL, 0UL, 0UL, 0UL));
}

static int try_add_key(void) { return ret_errno(syscall(SYS_add_key, "probe-invalid-type", "probe", NULL, 0UL, 0)); }

static int try_request_key(void) { return ret_errno(syscall(SYS_request_key, "probe-invalid-type", "probe", NULL, 0)); }

static int try_mount(void) { return ret_errno(syscall(SYS_mount, "none", "/nonexistent-probe", "tmpfs", 0UL, NULL)); }

static int try_umount2(void) { return ret_errno(syscall(SYS_umount2, "/nonexistent-probe", 0)); }

static int try_pivot_root(void)
{
        return ret_errno(syscall(SYS_pivot_root, "/nonexistent-probe", "/nonexistent-probe"));
}

static int try_chroot(void) { return ret_errno(syscall(SYS_chroot, "/nonexistent-probe")); }

static int try_fsopen(void)
{
        long r = syscall(SYS_fsopen, "probe-nonexistent-fs", 0U);

        if (r >= 0)
                close((int)r);
        return ret_errno(r);
}

static int try_fsmount(void) { return ret_errno(syscall(SYS_fsmount, -1, 0U, 0U)); }

static int try_fspick(void) { return ret_errno(syscall(SYS_fspick, -1, "", 0U)); }

static int try_open_tree(void) { return ret_errno(syscall(SYS_open_tree, AT_FDCWD, "/nonexistent-probe", 0U)); }

static int try_move_mount(void) { return ret_errno(syscall(SYS_move_mount, -1, "", -1, "", 0U)); }

static int try_mount_setattr(void) { return ret_errno(syscall(SYS_mount_setattr, -1, "", 0U, NULL, 0UL)); }

static int try_unshare(void)
{
        /* Run in a throwaway child (see run_isolated), so success changes nothing here. */
        return ret_errno(syscall(SYS_unshare, CLONE_NEWUSER));
}

static int try_setns(void) { return ret_errno(syscall(SYS_setns, -1, 0)); }

static int try_raw_clone(unsigned long flags)
{
        long r = syscall(SYS_clone, flags | SIGCHLD, 0UL, NULL, NULL, 0UL);

        if (r == 0)
                _exit(0);
        if (r < 0)
                return errno;
        while (waitpid((pid_t)r, NULL, 0) < 0 && errno == EINTR)
                ;
        return 0;
}

static int try_clone_newuser(void) { return try_raw_clone(CLONE_NEWUSER); }

static int try_clone_newns(void) { return try_raw_clone(CLONE_NEWNS); }

static int try_clone_newnet(void) { return try_raw_clone(CLONE_NEWNET); }

static int try_clone3(void)
{
        /* A NULL, zero-sized argument: EINVAL when reachable, never creates a process. */
        return ret_errno(syscall(SYS_clone3, NULL, 0UL));
}

static int try_io_setup(void)
{
        /* One event: a real context when allowed (destroyed again), counted against the
         * host-wide fs.aio-max-nr while it exists. */
        unsigned long ctx = 0;
        if (syscall(SYS_io_setup, 1U, &ctx) < 0)
                return errno;
        (void)syscall(SYS_io_destroy, ctx);
        return 0;
}

static int try_kexec_load(void)
{
        /* Flags with an unknown architecture: rejected before anything is loaded. */
        return ret_errno(syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xffff0000UL));
}

static int try_kexec_file_load(void)
{
        return ret_errno(syscall(SYS_kexec_file_load, -1, -1, 0UL, NULL, 0xfffffff0UL));
}

static int try_init_module(void) { return ret_errno(syscall(SYS_init_module, NULL, 0UL, "")); }

static int try_finit_module(void) { return ret_errno(syscall(SYS_finit_module, -1, "", 0)); }

static int try_delete_module(void)
{
        return ret_errno(syscall(SYS_delete_module, "probe_nonexistent_module", O_NONBLOCK));
}

static int try_open_by_handle_at(void)
{
        long r = syscall(SYS_open_by_handle_at, -1, NULL, O_RDONLY | O_CLOEXEC);

        if (r >= 0)
                close((int)r);
        return ret_errno(r);
}

static int try_name_to_handle_at(void)
{
        return ret_errno(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));
}

/* A terminal that is ours alone, so TIOCSTI can inject nothing into a real session. */
static int open_private_tty(void)
{
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        char name[64];
        int slave;

        if (master < 0)
                goto fallback;
        if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0) {
                close(master);
                goto fallback;
        }
        /* As its controlling terminal (new session), TIOCSTI is then permitted by the
         * kernel itself, so only a filter can refuse it. */
        (void)setsid();
        slave = open(name, O_RDWR | O_CLOEXEC);
        /* Keep the master open for the lifetime of the (short-lived) child. */
        if (slave >= 0)
                return slave;
        close(master);
fallback:
        /* Not a tty: a permitted ioctl fails with ENOTTY, a filtered one with EPERM. */
        return open("/dev/null", O_RDWR | O_CLOEXEC);
}

static int try_ioctl_common(unsigned long cmd, void *arg)
{
        int fd = open_private_tty();
        int e;

        if (fd < 0) {
                /* Even without /dev, fd -1 still reaches the filter: EBADF when permitted. */
                return ret_errno(syscall(SYS_ioctl, -1, cmd, arg));
        }
        e = ret_errno(syscall(SYS_ioctl, fd, cmd, arg));
        close(fd);
        return e;
}

static int try_ioctl_tiocsti(void)
{
        char c = '\n';

        return try_ioctl_common(TIOCSTI, &c);
}

static int try_ioctl_tiocsti_high(void)
{
        char c = '\n';

        /* The kernel truncates cmd to 32 bits; a filter must too. */
        return try_ioctl_common((unsigned long)TIOCSTI | (1UL << 32), &c);
}

static int try_ioctl_tioclinux(void)
{
        char subcode = 7; /* TIOCL_GETSHIFTSTATE: read-only */

        return try_ioctl_common(TIOCLINUX, &subcode);
}

static int try_ioctl_tiocsetd(void)
{
        int ldisc = 0; /* N_TTY, what a new terminal has: changes nothing where allowed */

        return try_ioctl_common(TIOCSETD, &ldisc);
}

/* Huge pages from the host's pool: each request fails in the kernel's first checks (no
 * length, an empty segment) or makes an empty file, so nothing is taken where allowed. */
static int try_mmap_hugetlb(void)
{
        void *m = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

        return m == MAP_FAILED ? errno : 0;
}

static int try_memfd_hugetlb(void)
{
        long fd = syscall(SYS_memfd_create, "probe", MFD_CLOEXEC | MFD_HUGETLB);

        if (fd < 0)
                return errno;
        close((int)fd);
        return 0;
}

static int try_shmget_hugetlb(void) { return ret_errno(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600 | SHM_HUGETLB)); }

static int try_socket(int domain, int type, int protocol)
{
        long r = syscall(SYS_socket, domain, type | SOCK_CLOEXEC, protocol);

        if (r >= 0)
                close((int)r);
        return ret_errno(r);
}

static int try_socket_packet(void) { return try_socket(AF_PACKET, SOCK_RAW, htons(0x0003)); }

static int try_socket_netlink(void) { return try_socket(AF_NETLINK, SOCK_RAW, 0); }

static int try_socket_vsock(void) { return try_socket(AF_VSOCK, SOCK_STREAM, 0); }

static int try_socket_bluetooth(void) { return try_socket(AF_BLUETOOTH, SOCK_RAW, 0); }

static int try_socket_unix(void) { return try_socket(AF_UNIX, SOCK_STREAM, 0); }

static int try_socket_inet(void) { return try_socket(AF_INET, SOCK_STREAM, 0); }

static int try_socket_inet6(void) { return try_socket(AF_INET6, SOCK_STREAM, 0); }

static int try_reboot(void)
{
        /* Wrong magic numbers: the kernel refuses with EINVAL even for root. */
        return ret_errno(syscall(SYS_reboot, 0, 0, 0U, NULL));
}

static int try_swapon(void) { return ret_errno(syscall(SYS_swapon, "/nonexistent-probe", 0)); }

static int try_acct(void)
{
        /* Never NULL: that would switch accounting off. */
        return ret_errno(syscall(SYS_acct, "/nonexistent-probe/acct"));
}

static int try_settimeofday(void)
{
        /* An out-of-range tv_usec is rejected (EINVAL) before anything is set. */
        struct timeval tv = { .tv_sec = 0, .tv_usec = 2000000 };

        return ret_errno(syscall(SYS_settimeofday, &tv, NULL));
}

static int try_syslog(void)
{
        /* SYSLOG_ACTION_SIZE_BUFFER: reads a number. */
        return ret_errno(syscall(SYS_syslog, 10, NULL, 0));
}

static int try_iopl(void)
{
#ifdef SYS_iopl
        /* Level 0 only ever lowers the I/O privilege level. */
        return ret_errno(syscall(SYS_iopl, 0));
#else
        return ENOSYS;
#endif
}

static int try_getpid(void) { return ret_errno(syscall(SYS_getpid)); }

static int try_unknown_1000(void) { return ret_errno(syscall(1000, 0, 0, 0, 0, 0, 0)); }

#if defined(__x86_64__)
/* The 32-bit entry point from a 64-bit process: a filter that checks syscall numbers but
 * not the architecture would let i386 ptrace (26) through as x86-64 msync (26). */
static long int80_syscall(long nr, long a, long b, long c, long d)
{
        long ret;

        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d) : "memory", "cc");
        return ret;
}

static int try_i386_ptrace(void)
{
        long r = int80_syscall(26, PTRACE_PEEKDATA, 1, 0, 0);

        return r < 0 && r > -4096 ? (int)-r : 0;
}

static int try_x32_ptrace(void)
{
        /* x32 ptrace is 521 with the x32 bit: a bypass if the filter ignores that bit. */
        return ret_errno(syscall(0x40000000L | 521, PTRACE_PEEKDATA, 1, 0, 0));
}
#endif

struct syscall_probe {
        const char *name;
        int (*fn)(void);
};

static const struct syscall_probe syscall_probes[] = {
        { "ptrace", try_ptrace },
        { "process_vm_readv", try_process_vm_readv },
        { "process_vm_writev", try_process_vm_writev },
        { "kcmp", try_kcmp },
        { "pidfd_getfd", try_pidfd_getfd },
        { "io_uring_setup", try_io_uring_setup },
        { "userfaultfd", try_userfaultfd },
        { "bpf", try_bpf },
        { "perf_event_open", try_perf_event_open },
        { "keyctl", try_keyctl },
        { "add_key", try_add_key },
        { "request_key", try_request_key },
        { "mount", try_mount },
        { "umount2", try_umount2 },
        { "pivot_root", try_pivot_root },
        { "chroot", try_chroot },
        { "fsopen", try_fsopen },
        { "fsmount", try_fsmount },
        { "fspick", try_fspick },
        { "open_tree", try_open_tree },
        { "move_mount", try_move_mount },
        { "mount_setattr", try_mount_setattr },
        { "unshare", try_unshare },
        { "setns", try_setns },
        { "clone_newuser", try_clone_newuser },
        { "clone_newns", try_clone_newns },
        { "clone_newnet", try_clone_newnet },
        { "clone3", try_clone3 },
        { "io_setup", try_io_setup },
        { "kexec_load", try_kexec_load },
        { "kexec_file_load", try_kexec_file_load },
        { "init_module", try_init_module },
        { "finit_module", try_finit_module },
        { "delete_module", try_delete_module },
        { "open_by_handle_at", try_open_by_handle_at },
        { "name_to_handle_at", try_name_to_handle_at },
        { "ioctl_tiocsti", try_ioctl_tiocsti },
        { "ioctl_tiocsti_high", try_ioctl_tiocsti_high },
        { "ioctl_tioclinux", try_ioctl_tioclinux },
        { "ioctl_tiocsetd", try_ioctl_tiocsetd },
        { "mmap_hugetlb", try_mmap_hugetlb },
        { "memfd_hugetlb", try_memfd_hugetlb },
        { "shmget_hugetlb", try_shmget_hugetlb },
        { "socket_packet", try_socket_packet },
        { "socket_netlink", try_socket_netlink },
        { "socket_vsock", try_socket_vsock },
        { "socket_bluetooth", try_socket_bluetooth },
        { "socket_unix", try_socket_unix },
        { "socket_inet", try_socket_inet },
        { "socket_inet6", try_socket_inet6 },
        { "reboot", try_reboot },
        { "swapon", try_swapon },
        { "acct", try_acct },
        { "settimeofday", try_settimeofday },
        { "syslog", try_syslog },
        { "iopl", try_iopl },
        { "getpid", try_getpid },
        { "unknown_1000", try_unknown_1000 },
#if defined(__x86_64__)
        { "i386_ptrace", try_i386_ptrace },
        { "x32_ptrace", try_x32_ptrace },
#endif
};

static const struct syscall_probe *find_syscall_probe(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(syscall_probes); i++)
                if (strcmp(syscall_probes[i].name, name) == 0)
                        return &syscall_probes[i];
        return NULL;
}

static ssize_t read_full(int fd, void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n = read(fd, (char *)buf + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

static int write_full(int fd, const void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n = write(fd, (const char *)buf + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                done += (size_t)n;
        }
        return 0;
}

/* Each probe runs in its own child: a successful unshare()/clone() or a SIGSYS from a
 * killing filter must not affect the probes after it. Prints one line. */
static void run_isolated(const struct syscall_probe *p)
{
        int pipefd[2];
        int result = -1;
        int status;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                printf("%s=PROBE-ERROR-%s\n", p->name, errno_name(errno));
                return;
        }
        pid = fork();
        if (pid < 0) {
                printf("%s=PROBE-ERROR-%s\n", p->name, errno_name(errno));
                close(pipefd[0]);
                close(pipefd[1]);
                return;
        }
        if (pid == 0) {
                int e;

                close(pipefd[0]);
                errno = 0;
                e = p->fn();
                (void)write_full(pipefd[1], &e, sizeof(e));
                _exit(0);
        }
        close(pipefd[1]);
        if (read_full(pipefd[0], &result, sizeof(result)) != (ssize_t)sizeof(result))
                result = -1;
        close(pipefd[0]);
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR) {
                        status = 0;
                        break;
                }
        }
        if (result >= 0)
                printf("%s=%s\n", p->name, errno_name(result));
        else if (WIFSIGNALED(status))
                printf("%s=%s\n", p->name, signal_name(WTERMSIG(status)));
        else
                printf("%s=PROBE-ERROR\n", p->name);
        fflush(stdout);
}

static int cmd_syscall(int argc, char **argv)
{
        if (argc < 1)
                usage_error("syscall: need at least one NAME (or 'all')");
        for (int i = 0; i < argc; i++) {
                const struct syscall_probe *p;

                if (strcmp(argv[i], "all") == 0) {
                        for (size_t j = 0; j < ARRAY_SIZE(syscall_probes); j++)
                                run_isolated(&syscall_probes[j]);
                        continue;
                }
                p = find_syscall_probe(argv[i]);
                if (!p) {
                        printf("%s=UNKNOWN-PROBE\n", argv[i]);
                        continue;
                }
                run_isolated(p);
        }
        return 0;
}

/* deny-loop N [NAME]: call a (normally denied) syscall N times in this process, to check
 * that the supervisor rate-limits what it records. */
static int cmd_deny_loop(int argc, char **argv)
{
        const struct syscall_probe *p;
        const char *name = argc >= 2 ? argv[1] : "keyctl";
        long n, denied = 0, ok = 0;
        int last = 0;

        if (argc < 1 || parse_long(argv[0], 1, 100000000L, &n) < 0)
                usage_error("deny-loop: need a count N");
        p = find_syscall_probe(name);
        /* Those change this process's namespaces or create processes when permitted. */
        if (!p || strcmp(name, "unshare") == 0 || strncmp(name, "clone", 5) == 0)
                usage_error("deny-loop: unsupported syscall name");
        for (long i = 0; i < n; i++) {
                int e = p->fn();

                if (e == EPERM)
                        denied++;
                else if (e == 0)
                        ok++;
                last = e;
        }
        printf("calls=%ld denied=%ld ok=%ld last=%s\n", n, denied, ok, errno_name(last));
        return 0;
}

/* deny-threads T SECONDS [NAME]: T threads each calling a denied syscall without pause (each
 * answer from the supervisor's notification listener releases a thread that asks again at
 * once), while this thread sleeps SECONDS and then exits 0: the supervisor must stay free
 * for its timers (the wall limit) and the operator's control socket meanwhile. */
static const struct syscall_probe *flood_probe;

static void *deny_thread(void *arg)
{
        (void)arg;
        for (;;)
                (void)flood_probe->fn();
        return NULL;
}

static int cmd_deny_threads(int argc, char **argv)
{
        long t, secs;
        if (argc < 2 || parse_long(argv[0], 1, 4096, &t) < 0 || parse_long(argv[1], 1, 3600, &secs) < 0)
                usage_error("deny-threads: need a thread count T and SECONDS");
        const char *name = argc >= 3 ? argv[2] : "keyctl";
        flood_probe = find_syscall_probe(name);
        if (!flood_probe || strcmp(name, "unshare") == 0 || strncmp(name, "clone", 5) == 0)
                usage_error("deny-threads: unsupported syscall name");
        long started = 0;
        for (long i = 0; i < t; i++) {
                pthread_t th;
                if (pthread_create(&th, NULL, deny_thread, NULL) == 0)
                        started++;
        }
        printf("threads=%ld\n", started);
        sleep((unsigned)secs);
        _exit(0);
}

/* --------------------------------------------------------------------------- status */

static void print_status_field(const char *key)
{
        char line[512];
        size_t klen = strlen(key);
        FILE *f = fopen("/proc/self/status", "re");

        if (!f) {
                printf("%s=%s\n", key, errno_name(errno));
                return;
        }
        while (fgets(line, sizeof(line), f)) {
                char *v;

                if (strncmp(line, key, klen) != 0 || line[klen] != ':')
                        continue;
                v = line + klen + 1;
                while (*v == ' ' || *v == '\t')
                        v++;
                v[strcspn(v, "\n")] = '\0';
                printf("%s=%s\n", key, v);
                fclose(f);
                return;
        }
        fclose(f);
        printf("%s=MISSING\n", key);
}

static int cmd_status(void)
{
        static const char *const fields[] = {
                "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"
        };
        gid_t groups[256];
        char host[HOST_NAME_MAX + 1];
        char cwd[PATH_MAX];
        int ngroups;

        printf("uid=%u\ngid=%u\neuid=%u\negid=%u\n", (unsigned)getuid(), (unsigned)getgid(), (unsigned)geteuid(),
               (unsigned)getegid());
        ngroups = getgroups((int)ARRAY_SIZE(groups), groups);
        printf("groups=");
        if (ngroups < 0)
                printf("%s", errno_name(errno));
        for (int i = 0; i < ngroups; i++)
                printf("%s%u", i > 0 ? "," : "", (unsigned)groups[i]);
        printf("\n");
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
                print_status_field(fields[i]);
        printf("pid=%d\nppid=%d\nsid=%d\npgid=%d\n", (int)getpid(), (int)getppid(), (int)getsid(0), (int)getpgid(0));
        if (gethostname(host, sizeof(host)) == 0) {
                host[sizeof(host) - 1] = '\0';
                printf("hostname=%s\n", host);
        } else
                printf("hostname=%s\n", errno_name(errno));
        if (getcwd(cwd, sizeof(cwd)))
                printf("cwd=%s\n", cwd);
        else
                printf("cwd=%s\n", errno_name(errno));
        return 0;
}

/* ------------------------------------------------------------------------ files */

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmd_ls(int argc, char **argv)
{
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;

        if (argc != 1)
                usage_error("ls: need DIR");
        d = opendir(argv[0]);
        if (!d) {
                printf("ls=%s\n", errno_name(errno));
                return 0;
        }
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        char **nn = realloc(names, ncap * sizeof(*names));

                        if (!nn)
                                break;
                        names = nn;
                        cap = ncap;
                }
                names[n] = strdup(de->d_name);
                if (!names[n])
                        break;
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(*names), compare_strings);
        for (size_t i = 0; i < n; i++) {
                printf("%s\n", names[i]);
                free(names[i]);
        }
        free(names);
        return 0;
}

static int cmd_read(int argc, char **argv)
{
        char buf[65536];
        long long total = 0;
        int fd;

        if (argc != 1)
                usage_error("read: need PATH");
        fd = open(argv[0], O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                printf("read=%s\n", errno_name(errno));
                return 0;
        }
        for (;;) {
                ssize_t r = read(fd, buf, sizeof(buf));

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        printf("read=%s\n", errno_name(errno));
                        close(fd);
                        return 0;
                }
                if (r == 0)
                        break;
                total += r;
        }
        close(fd);
        printf("read=OK bytes=%lld\n", total);
        return 0;
}

static int cmd_write(int argc, char **argv)
{
        int fd, r;

        if (argc != 1)
                usage_error("write: need PATH");
        fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
                printf("write=%s\n", errno_name(errno));
                return 0;
        }
        r = write_full(fd, "x", 1);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        printf("write=%s\n", errno_name(-r));
        return 0;
}

static int cmd_stat(int argc, char **argv)
{
        struct stat st;

        if (argc != 1)
                usage_error("stat: need PATH");
        if (lstat(argv[0], &st) < 0) {
                printf("stat=%s\n", errno_name(errno));
                return 0;
        }
        printf("stat=OK uid=%u gid=%u mode=%04o\n", (unsigned)st.st_uid, (unsigned)st.st_gid,
               (unsigned)(st.st_mode & 07777));
        return 0;
}

/* ---------------------------------------------------------------------- network */

static int cmd_ifaces(void)
{
        char line[512];
        int sock;
        FILE *f = fopen("/proc/net/dev", "re");

        if (!f) {
                printf("ifaces=%s\n", errno_name(errno));
                return 0;
        }
        /* Any socket family reaches the generic device ioctls. */
        sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sock < 0)
                sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        for (int lineno = 0; fgets(line, sizeof(line), f); lineno++) {
                char *name = line, *colon;
                struct ifreq ifr;

                if (lineno < 2) /* two header lines */
                        continue;
                while (*name == ' ')
                        name++;
                colon = strchr(name, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                memset(&ifr, 0, sizeof(ifr));
                if (strlen(name) >= sizeof(ifr.ifr_name))
                        continue;
                memcpy(ifr.ifr_name, name, strlen(name));
                if (sock >= 0 && ioctl(sock, SIOCGIFFLAGS, &ifr) == 0)
                        printf("iface=%s up=%d\n", name, (ifr.ifr_flags & IFF_UP) ? 1 : 0);
                else
                        printf("iface=%s up=%s\n", name, errno_name(sock < 0 ? EBADF : errno));
        }
        if (sock >= 0)
                close(sock);
        fclose(f);
        return 0;
}

/* Connect with a bounded wait, so a filtered (silently dropped) route cannot hang a test. */
static int connect_bounded(int fd, const struct sockaddr *sa, socklen_t len)
{
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int flags = fcntl(fd, F_GETFL);
        socklen_t elen = sizeof(int);
        int err = 0, r;

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return errno;
        if (connect(fd, sa, len) == 0)
                return 0;
        if (errno != EINPROGRESS)
                return errno;
        do
                r = poll(&pfd, 1, 3000);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return errno;
        if (r == 0)
                return ETIMEDOUT;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
                return errno;
        return err;
}

static int cmd_connect_unix(int argc, char **argv, bool abstract)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t off = abstract ? 1 : 0;
        size_t len;
        int fd, e;

        if (argc != 1)
                usage_error("connect-unix: need NAME or PATH");
        len = strlen(argv[0]);
        if (len + off >= sizeof(sa.sun_path))
                usage_error("connect-unix: name too long");
        memcpy(sa.sun_path + off, argv[0], len);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                printf("connect=%s\n", errno_name(errno));
                return 0;
        }
        /* Abstract names are not NUL-terminated: the length says where they end. */
        e = connect_bounded(fd, (struct sockaddr *)&sa,
                            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + off + len + (abstract ? 0 : 1)));
        close(fd);
        printf("connect=%s\n", errno_name(e));
        return 0;
}

static int cmd_connect_tcp(int argc, char **argv)
{
        struct sockaddr_storage ss;
        socklen_t sslen;
        long port;
        int fd, e;

        if (argc != 2 || parse_long(argv[1], 1, 65535, &port) < 0)
                usage_error("connect-tcp: need ADDR PORT");
        memset(&ss, 0, sizeof(ss));
        if (strchr(argv[0], ':')) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, argv[0], &s6->sin6_addr) != 1)
                        usage_error("connect-tcp: bad IPv6 address");
                sslen = sizeof(*s6);
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

                s4->sin_family = AF_INET;
                s4->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, argv[0], &s4->sin_addr) != 1)
                        usage_error("connect-tcp: bad IPv4 address");
                sslen = sizeof(*s4);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                printf("connect=%s\n", errno_name(errno));
                return 0;
        }
        e = connect_bounded(fd, (struct sockaddr *)&ss, sslen);
        close(fd);
        printf("connect=%s\n", errno_name(e));
        return 0;
}

static int cmd_sethostname(int argc, char **argv)
{
        char host[HOST_NAME_MAX + 1];

        if (argc != 1)
                usage_error("sethostname: need NAME");
        if (sethostname(argv[0], strlen(argv[0])) < 0)
                printf("sethostname=%s\n", errno_name(errno));
        else
                printf("sethostname=OK\n");
        if (gethostname(host, sizeof(host)) == 0) {
                host[sizeof(host) - 1] = '\0';
                printf("hostname=%s\n", host);
        } else
                printf("hostname=%s\n", errno_name(errno));
        return 0;
}

/* ---------------------------------------------------------------- resource bombs */

static int cmd_forkbomb(int argc, char **argv)
{
        long max = 10000, n = 0;
        int err = 0;
        pid_t *pids;

        /* A ceiling, so that running the probe outside a jail cannot take the host down. */
        if (argc >= 1 && parse_long(argv[0], 1, 1000000L, &max) < 0)
                usage_error("forkbomb: bad MAX");
        pids = calloc((size_t)max, sizeof(*pids));
        if (!pids) {
                printf("forks=0 errno=ENOMEM\n");
                return 0;
        }
        while (n < max) {
                pid_t pid = fork();

                if (pid < 0) {
                        err = errno;
                        break;
                }
                if (pid == 0) {
                        /* Die with the parent if it is killed before it cleans up. */
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (getppid() == 1)
                                _exit(0);
                        for (;;)
                                pause();
                }
                pids[n++] = pid;
        }
        printf("forks=%ld errno=%s\n", n, err ? errno_name(err) : "NONE");
        fflush(stdout);
        for (long i = 0; i < n; i++)
                kill(pids[i], SIGKILL);
        for (long i = 0; i < n; i++)
                while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
                        ;
        free(pids);
        return 0;
}

static int cmd_membomb(int argc, char **argv)
{
        const size_t step = 1024 * 1024;
        long limit = -1, mb = 0;

        if (argc >= 1 && parse_long(argv[0], 1, 1L << 30, &limit) < 0)
                usage_error("membomb: bad MB");
        while (limit < 0 || mb < limit) {
                /* Fresh anonymous pages, touched, so they are really charged. */
                char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

                if (p == MAP_FAILED) {
                        printf("membomb=%s mb=%ld\n", errno_name(errno), mb);
                        return 0;
                }
                memset(p, 0xa5, step);
                mb++;
                if (mb % 64 == 0) {
                        printf("mb=%ld\n", mb);
                        fflush(stdout);
                }
        }
        printf("membomb=done mb=%ld\n", mb);
        return 0;
}

static int cmd_kill_all(void)
{
        printf("kill_all=sent\n");
        fflush(stdout);
        /* kill(-1) skips ourselves and our pid namespace's init. */
        if (kill(-1, SIGKILL) < 0)
                printf("kill_all_result=%s\n", errno_name(errno));
        else
                printf("kill_all_result=OK\n");
        return 0;
}

static int compare_ints(const void *a, const void *b)
{
        int x = *(const int *)a, y = *(const int *)b;

        return (x > y) - (x < y);
}

/* Opens /dev/ptmx until it fails or MAX are open (default 4096): ptys=N and why it stopped. */
static int cmd_ptys(int argc, char **argv)
{
        long max = 4096;
        long n = 0;
        int err = 0;

        if (argc > 0 && parse_long(argv[0], 1, 1 << 20, &max) < 0)
                return 2;
        for (; n < max; n++) {
                if (open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC) < 0) {
                        err = errno;
                        break;
                }
        }
        printf("ptys=%ld\nptys_stop=%s\n", n, err ? errno_name(err) : "max");
        return 0;
}

static int cmd_pids(void)
{
        int *pids = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d = opendir("/proc");

        if (!d) {
                printf("pids=%s\n", errno_name(errno));
                return 0;
        }
        while ((de = readdir(d))) {
                long v;

                if (parse_long(de->d_name, 1, INT_MAX, &v) < 0)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        int *np = realloc(pids, ncap * sizeof(*pids));

                        if (!np)
                                break;
                        pids = np;
                        cap = ncap;
                }
                pids[n++] = (int)v;
        }
        closedir(d);
        if (n > 0)
                qsort(pids, n, sizeof(*pids), compare_ints);
        for (size_t i = 0; i < n; i++)
                printf("%d\n", pids[i]);
        free(pids);
        return 0;
}

/* ------------------------------------------------------------ process lifecycle */

static void sleep_seconds(double s)
{
        struct timespec ts;

        if (s < 0)
                s = 0;
        ts.tv_sec = (time_t)s;
        ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* inotify-hog SECONDS: takes inotify instances until the kernel refuses one (the host
 * uid's fs.inotify.max_user_instances, counted across user namespaces, or the fd limit),
 * prints `inotify_instances=N errno=NAME` and `ready`, and holds them for SECONDS.
 * inotify: one instance, `inotify=OK` or the errno's name. */
static int cmd_inotify(int argc, char **argv, bool hog)
{
        if (!hog) {
                int fd = inotify_init1(IN_CLOEXEC);
                printf("inotify=%s\n", errno_name(fd >= 0 ? 0 : errno));
                return 0;
        }
        if (argc != 1)
                usage_error("inotify-hog: need SECONDS");
        int n = 0, err = 0;
        for (; n < 100000; n++)
                if (inotify_init1(IN_CLOEXEC) < 0) {
                        err = errno;
                        break;
                }
        printf("inotify_instances=%d errno=%s\nready\n", n, errno_name(err));
        fflush(stdout);
        sleep_seconds(strtod(argv[0], NULL));
        return 0;
}

/* timer-hog SECONDS: POSIX timers until the kernel refuses one (each holds a pending
 * signal, counted against RLIMIT_SIGPENDING per host uid and up the user namespaces),
 * prints `timers=N errno=NAME` and `ready`, holds them for SECONDS. timer: one,
 * `timer=OK` or the errno's name. */
static int cmd_timer(int argc, char **argv, bool hog)
{
        int id;
        if (!hog) {
                long r = syscall(SYS_timer_create, CLOCK_MONOTONIC, NULL, &id);
                printf("timer=%s\n", errno_name(r == 0 ? 0 : errno));
                return 0;
        }
        if (argc != 1)
                usage_error("timer-hog: need SECONDS");
        int n = 0, err = 0;
        for (; n < 10000000; n++)
                if (syscall(SYS_timer_create, CLOCK_MONOTONIC, NULL, &id) != 0) {
                        err = errno;
                        break;
                }
        printf("timers=%d errno=%s\nready\n", n, errno_name(err));
        fflush(stdout);
        sleep_seconds(strtod(argv[0], NULL));
        return 0;
}

/* shm-lock BYTES SECONDS: a System V segment of BYTES locked in memory (SHM_LOCK, counted
 * against RLIMIT_MEMLOCK per host uid and up the user namespaces), prints `shm_lock=OK` or
 * the errno's name and `ready`, holds it for SECONDS. */
static int cmd_shm_lock(int argc, char **argv)
{
        long bytes;
        if (argc != 2 || parse_long(argv[0], 1, 1L << 30, &bytes) < 0)
                usage_error("shm-lock: need BYTES SECONDS");
        int id = shmget(IPC_PRIVATE, (size_t)bytes, IPC_CREAT | 0600);
        int r = id < 0 ? -1 : shmctl(id, SHM_LOCK, NULL);
        printf("shm_lock=%s\nready\n", errno_name(r == 0 ? 0 : errno));
        fflush(stdout);
        sleep_seconds(strtod(argv[1], NULL));
        if (id >= 0)
                shmctl(id, IPC_RMID, NULL);
        return 0;
}

static int cmd_sleep(int argc, char **argv)
{
        char *end;
        double s;

        if (argc != 1)
                usage_error("sleep: need SECONDS");
        errno = 0;
        s = strtod(argv[0], &end);
        if (errno != 0 || end == argv[0] || *end != '\0' || s < 0 || s > 86400)
                usage_error("sleep: bad SECONDS");
        sleep_seconds(s);
        printf("slept=%s\n", argv[0]);
        return 0;
}

/* seize PID SECONDS (run on the host, not in a jail): attach to PID as a tracer that never
 * waits for it, so that when PID dies its zombie stays held by us, unreapable by its parent,
 * for SECONDS. Prints "seized PID" once attached. */
static int cmd_seize(int argc, char **argv)
{
        long pid;
        char *end;
        double s;

        if (argc != 2 || parse_long(argv[0], 1, INT_MAX, &pid) < 0)
                usage_error("seize: need PID SECONDS");
        errno = 0;
        s = strtod(argv[1], &end);
        if (errno != 0 || end == argv[1] || *end != '\0' || s < 0 || s > 3600)
                usage_error("seize: bad SECONDS");
        if (ptrace(PTRACE_SEIZE, (pid_t)pid, NULL, NULL) < 0) {
                printf("seize=%s\n", strerror(errno));
                return 1;
        }
        printf("seized %ld\n", pid);
        fflush(stdout);
        sleep_seconds(s);
        return 0;
}

static int cmd_exit(int argc, char **argv)
{
        long code;

        if (argc != 1 || parse_long(argv[0], 0, 255, &code) < 0)
                usage_error("exit: need N (0-255)");
        fflush(stdout);
        _exit((int)code);
}

static int cmd_signal(int argc, char **argv)
{
        sigset_t set;
        int sig;

        if (argc != 1 || (sig = parse_signal(argv[0])) < 0)
                usage_error("signal: need SIG");
        fflush(stdout);
        signal(sig, SIG_DFL);
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        /* Still alive: the signal's default action is not fatal (or it was blocked). */
        printf("signal=survived\n");
        return 1;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) { got_signal = sig; }

static int cmd_wait_signal(void)
{
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction sa;
        sigset_t block, old;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigemptyset(&block);
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
                sigaction(sigs[i], &sa, NULL);
                sigaddset(&block, sigs[i]);
        }
        /* Blocked until sigsuspend, so a signal between "ready" and the wait is not lost. */
        sigprocmask(SIG_BLOCK, &block, &old);
        sigdelset(&old, SIGINT);
        sigdelset(&old, SIGTERM);
        sigdelset(&old, SIGHUP);
        printf("ready\n");
        fflush(stdout);
        while (!got_signal)
                sigsuspend(&old);
        printf("got=%s\n", signal_name((int)got_signal));
        fflush(stdout);
        _exit(42);
}

/* For the wall limit's grace period: only SIGKILL can end this before SECONDS. */
static int cmd_ignore_signals(int argc, char **argv)
{
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
        long secs;

        if (argc != 1 || parse_long(argv[0], 0, 86400, &secs) < 0)
                usage_error("ignore-signals: need SECONDS");
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
                signal(sigs[i], SIG_IGN);
        printf("ready\n");
        fflush(stdout);
        sleep_seconds((double)secs);
        printf("ignore_signals=done\n");
        return 0;
}

static int cmd_echo_stdin(void)
{
        char buf[65536];

        for (;;) {
                ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "probe: read stdin: %s\n", errno_name(errno));
                        return 1;
                }
                if (r == 0)
                        return 0;
                if (write_full(STDOUT_FILENO, buf, (size_t)r) < 0)
                        return 1;
        }
}

static int cmd_stderr(int argc, char **argv)
{
        if (argc != 1)
                usage_error("stderr: need TEXT");
        fprintf(stderr, "%s\n", argv[0]);
        return 0;
}

static int cmd_env(void)
{
        extern char **environ;

        for (char **e = environ; e && *e; e++)
                printf("%s\n", *e);
        return 0;
}

/* State letter of /proc/PID/stat, or 0 if the process is gone. */
static char proc_state(const char *pid)
{
        char path[64], buf[512];
        ssize_t n;
        char *rp;
        int fd;

        snprintf(path, sizeof(path), "/proc/%s/stat", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        /* comm may contain spaces and parentheses: the state follows the last ')'. */
        rp = strrchr(buf, ')');
        if (!rp || rp[1] != ' ' || rp[2] == '\0')
                return '?';
        return rp[2];
}

static int count_zombies(void)
{
        struct dirent *de;
        DIR *d = opendir("/proc");
        int n = 0;

        if (!d)
                return -1;
        while ((de = readdir(d))) {
                long v;

                if (parse_long(de->d_name, 1, INT_MAX, &v) < 0)
                        continue;
                if (proc_state(de->d_name) == 'Z')
                        n++;
        }
        closedir(d);
        return n;
}

static int cmd_zombie_parent(void)
{
        int pipefd[2];
        pid_t child, grandchild = -1;
        char gpid[32];
        char state = 0;
        int z;

        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                printf("zombie_parent=%s\n", errno_name(errno));
                return 0;
        }
        child = fork();
        if (child < 0) {
                printf("zombie_parent=%s\n", errno_name(errno));
                return 0;
        }
        if (child == 0) {
                pid_t g;

                close(pipefd[0]);
                g = fork();
                if (g == 0) {
                        /* Outlive the parent, so that init (not it) must reap us. */
                        sleep_seconds(0.2);
                        _exit(0);
                }
                (void)write_full(pipefd[1], &g, sizeof(g));
                _exit(0);
        }
        close(pipefd[1]);
        if (read_full(pipefd[0], &grandchild, sizeof(grandchild)) != (ssize_t)sizeof(grandchild))
                grandchild = -1;
        close(pipefd[0]);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
        if (grandchild <= 0) {
                printf("zombie_parent=EFORK\n");
                return 0;
        }
        snprintf(gpid, sizeof(gpid), "%d", (int)grandchild);
        /* Give the reaper up to 3 s after the grandchild's exit. */
        for (int i = 0; i < 64; i++) {
                sleep_seconds(0.05);
                state = proc_state(gpid);
                if (state == 0 && i >= 4)
                        break;
        }
        z = count_zombies();
        printf("grandchild=%d grandchild_state=%s\n", (int)grandchild,
               state == 0 ? "gone" : (state == 'Z' ? "zombie" : "alive"));
        printf("zombies=%d\n", z);
        return 0;
}

/* deny-distinct: many different denied calls back to back in one process (each syscall once,
 * socket() with each refused family, the two refused ioctls), so the test can check that the
 * supervisor names every one. Prints `call=LABEL RESULT` per call, then `calls=N denied=M`.
 * Arguments are harmless even without the filter (and the jail holds no capabilities). */
#if defined(__x86_64__)
static const struct {
        const char *name;
        long nr;
        long a[6];
} distinct_calls[] = {
        { "ptrace", 101, { 2, 1 } },
        { "process_vm_readv", 310, { 1 } },
        { "process_vm_writev", 311, { 1 } },
        { "kcmp", 312, { 1, 1 } },
        { "pidfd_getfd", 438, { -1 } },
        { "io_uring_setup", 425, { 0 } },
        { "io_uring_enter", 426, { -1 } },
        { "io_uring_register", 427, { -1 } },
        { "bpf", 321, { -1 } },
        { "perf_event_open", 298, { 0, 0, -1, -1 } },
        { "keyctl", 250, { -1 } },
        { "add_key", 248, { 0 } },
        { "request_key", 249, { 0 } },
        { "mount", 165, { 0 } },
        { "pivot_root", 155, { 0 } },
        { "chroot", 161, { 0 } },
        { "fsopen", 430, { 0 } },
        { "fsconfig", 431, { -1 } },
        { "fsmount", 432, { -1 } },
        { "fspick", 433, { -1 } },
        { "open_tree", 428, { -1 } },
        { "move_mount", 429, { -1, 0, -1 } },
        { "mount_setattr", 442, { -1 } },
        { "setns", 308, { -1 } },
        { "kexec_load", 246, { 0, 0, 0, 0xdead0000L } },
        { "kexec_file_load", 320, { -1, -1, 0, 0, 0xdead } },
        { "init_module", 175, { 0 } },
        { "finit_module", 313, { -1 } },
        { "open_by_handle_at", 304, { -1 } },
        { "name_to_handle_at", 303, { -1 } },
        { "reboot", 169, { 0 } },
        { "syslog", 103, { 10 } },
        { "iopl", 172, { 0 } },
        { "ioperm", 173, { 0 } },
        { "modify_ldt", 154, { 0 } },
        { "mbind", 237, { 0 } },
        { "set_mempolicy", 238, { 0 } },
        { "get_mempolicy", 239, { 0 } },
        { "move_pages", 279, { 0 } },
        { "quotactl", 179, { 0 } },
        { "lookup_dcookie", 212, { 0 } },
        { "fanotify_init", 300, { 0 } },
        { "clock_settime", 227, { 0 } },
        { "settimeofday", 164, { 0 } },
        { "process_madvise", 440, { -1 } },
        { "syscall_1000", 1000, { 0 } },
        { "syscall_1001", 1001, { 0 } },
        { "syscall_1002", 1002, { 0 } },
};
#endif

static int cmd_deny_distinct(void)
{
        int calls = 0, denied = 0;

#if defined(__x86_64__)
        for (size_t i = 0; i < ARRAY_SIZE(distinct_calls); i++) {
                const long *a = distinct_calls[i].a;
                long r = syscall(distinct_calls[i].nr, a[0], a[1], a[2], a[3], a[4], a[5]);
                int e = r < 0 ? errno : 0;

                printf("call=%s %s\n", distinct_calls[i].name, e ? errno_name(e) : "OK");
                calls++;
                denied += e == EPERM;
        }
#endif
        for (long fam = 3; fam <= 45; fam++) {
                long r;
                int e;

                if (fam == AF_INET6)
                        continue;
                r = syscall(SYS_socket, fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                e = r < 0 ? errno : 0;
                if (r >= 0)
                        close((int)r);
                printf("call=socket(%ld) %s\n", fam, e ? errno_name(e) : "OK");
                calls++;
                denied += e == EPERM;
        }
        static const unsigned long ioctls[] = { TIOCSTI, TIOCLINUX, TIOCSETD };
        for (size_t i = 0; i < ARRAY_SIZE(ioctls); i++) {
                long r = syscall(SYS_ioctl, -1, ioctls[i], NULL);
                int e = r < 0 ? errno : 0;

                printf("call=ioctl(0x%lx) %s\n", ioctls[i], e ? errno_name(e) : "OK");
                calls++;
                denied += e == EPERM;
        }
        printf("calls=%d denied=%d\n", calls, denied);
        return 0;
}

/* abi-write: a write(2) through each foreign syscall ABI (i386 via int 0x80, x32), whose
 * effect is visible: the bytes arrive on a pipe or not. Per ABI: NAME_effect=yes|no and
 * NAME_how=OK|errno|signal. Run on the host too: kernels without IA32 emulation kill
 * int 0x80 with SIGSEGV, kernels without x32 answer ENOSYS. */
#if defined(__x86_64__)
static long abi_i386_write(int fd, const char *buf, size_t len)
{
        return int80_syscall(4 /* i386 write */, fd, (long)buf, (long)len, 0);
}

static long abi_x32_write(int fd, const char *buf, size_t len)
{
        long r = syscall(0x40000000L | 1 /* x32 write */, fd, buf, len);

        return r < 0 ? -errno : r;
}

static void abi_write_one(const char *name, long (*fn)(int, const char *, size_t))
{
        static const char msg[] = "FOREIGN-ABI-RAN";
        int pipefd[2], status = 0;
        char got[32];
        ssize_t n;
        pid_t pid;
        /* int 0x80 truncates pointers to 32 bits: the buffer must live below 4 GiB. */
        char *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);

        if (buf == MAP_FAILED || pipe2(pipefd, O_CLOEXEC) < 0) {
                printf("%s_effect=PROBE-ERROR %s_how=PROBE-ERROR\n", name, name);
                return;
        }
        memcpy(buf, msg, sizeof(msg));
        pid = fork();
        if (pid == 0) {
                long r = fn(pipefd[1], buf, sizeof(msg) - 1);

                _exit(r < 0 && r > -4096 ? (int)-r : 0);
        }
        close(pipefd[1]);
        n = pid > 0 ? read_full(pipefd[0], got, sizeof(got)) : -1;
        close(pipefd[0]);
        if (pid > 0)
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
        printf("%s_effect=%s ", name, n > 0 ? "yes" : "no");
        if (pid < 0)
                printf("%s_how=PROBE-ERROR\n", name);
        else if (WIFSIGNALED(status))
                printf("%s_how=%s\n", name, signal_name(WTERMSIG(status)));
        else if (WEXITSTATUS(status) == 0)
                printf("%s_how=OK\n", name);
        else
                printf("%s_how=%s\n", name, errno_name(WEXITSTATUS(status)));
        munmap(buf, 4096);
}
#endif

static int cmd_abi_write(void)
{
#if defined(__x86_64__)
        abi_write_one("i386", abi_i386_write);
        abi_write_one("x32", abi_x32_write);
#endif
        return 0;
}

/* ------------------------------------------------------------------------- setuid plants */

/* suid-plant DIR: every way to give a file in DIR S_ISUID/S_ISGID, and a file capability;
 * one `name=RESULT` line each (OK or the errno). The test then looks at DIR from the host. */
static void plant_report(const char *name, long r) { printf("%s=%s\n", name, r < 0 ? errno_name(errno) : "OK"); }

static long close_fd_result(long r)
{
        if (r >= 0)
                close((int)r);
        return r;
}

static int cmd_suid_plant(int argc, char **argv)
{
        char path[PATH_MAX];
        int dfd, fd;

        if (argc != 1)
                usage_error("suid-plant: need DIR");
        umask(0); /* without the filter every bit asked for would stick */
        dfd = open(argv[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                printf("dir=%s\n", errno_name(errno));
                return 0;
        }
        /* A plain executable first (allowed), the target of the chmods. */
        fd = openat(dfd, "target", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);
        plant_report("create_0755", fd);
        if (fd >= 0) {
                errno = 0;
                plant_report("fchmod_4755", syscall(SYS_fchmod, fd, 04755));
                close(fd);
        }
        snprintf(path, sizeof(path), "%s/target", argv[0]);
        plant_report("chmod_4755", syscall(SYS_chmod, path, 04755));
        plant_report("chmod_2755", syscall(SYS_chmod, path, 02755));
        plant_report("chmod_6755", syscall(SYS_chmod, path, 06755));
        plant_report("fchmodat_6755", syscall(SYS_fchmodat, dfd, "target", 06755));
#if defined(__x86_64__)
        plant_report("fchmodat2_4755", syscall(452, dfd, "target", 04755, 0));
#endif
        plant_report("openat_creat_4755",
                     close_fd_result(syscall(SYS_openat, dfd, "o", O_CREAT | O_WRONLY | O_CLOEXEC, 04755)));
        snprintf(path, sizeof(path), "%s/c", argv[0]);
        plant_report("creat_6755", close_fd_result(syscall(SYS_creat, path, 06755)));
        snprintf(path, sizeof(path), "%s/d", argv[0]);
        plant_report("mkdir_2755", syscall(SYS_mkdir, path, 02755));
        plant_report("mkdirat_4755", syscall(SYS_mkdirat, dfd, "da", 04755));
        snprintf(path, sizeof(path), "%s/n", argv[0]);
        plant_report("mknod_4755", syscall(SYS_mknod, path, S_IFREG | 04755, 0));
        plant_report("mknodat_2755", syscall(SYS_mknodat, dfd, "na", S_IFREG | 02755, 0));
        {
                struct {
                        uint64_t flags, mode, resolve;
                } how = { .flags = O_CREAT | O_WRONLY | O_CLOEXEC, .mode = 04755 };
                plant_report("openat2_4755", close_fd_result(syscall(437, dfd, "o2", &how, sizeof(how))));
        }
        /* A file capability (VFS_CAP_REVISION_2, effective, permitted CAP_SETUID): root's
         * setuid in another form. Needs CAP_SETFCAP, which the jail never has. */
        {
                uint32_t cap[5] = { 0x02000000 | 1, 1u << 7, 0, 0, 0 };

                fd = openat(dfd, "capfile", O_CREAT | O_WRONLY | O_CLOEXEC, 0755);
                plant_report("create_capfile", fd);
                snprintf(path, sizeof(path), "%s/capfile", argv[0]);
                plant_report("setxattr_capability", setxattr(path, "security.capability", cap, sizeof(cap), 0));
                if (fd >= 0) {
                        plant_report("fsetxattr_capability", fsetxattr(fd, "security.capability", cap, sizeof(cap), 0));
                        close(fd);
                }
        }
        close(dfd);
        return 0;
}

/* xattr-get PATH NAME: size=N or the errno (for the host side of a test). */
static int cmd_xattr_get(int argc, char **argv)
{
        char buf[256];
        ssize_t n;

        if (argc != 2)
                usage_error("xattr-get: need PATH NAME");
        n = lgetxattr(argv[0], argv[1], buf, sizeof(buf));
        if (n < 0)
                printf("xattr=%s\n", errno_name(errno));
        else
                printf("xattr=size-%zd\n", n);
        return 0;
}

/* ------------------------------------------------------------------------- main */

static void usage(void)
{
        fprintf(stderr, "usage: probe COMMAND [ARGS]\n"
                        "  status | syscall NAME...|all | deny-loop N [NAME] | deny-threads T SECONDS [NAME]\n"
                        "  ls DIR | read PATH\n"
                        "  write PATH | stat PATH | ifaces | connect-unix-abstract NAME\n"
                        "  connect-unix PATH | connect-tcp ADDR PORT | sethostname NAME\n"
                        "  forkbomb [MAX] | membomb [MB] | kill-all | pids | ptys [MAX] | sleep SECONDS\n"
                        "  exit N | signal SIG | wait-signal | ignore-signals SECONDS | echo-stdin\n"
                        "  stderr TEXT | env | inotify | inotify-hog SECONDS | timer | timer-hog SECONDS\n"
                        "  shm-lock BYTES SECONDS\n"
                        "  zombie-parent | list-syscalls | suid-plant DIR | xattr-get PATH NAME\n"
                        "  deny-distinct | abi-write | seize PID SECONDS (host side)\n");
}

int main(int argc, char **argv)
{
        const char *cmd;
        int sub_argc;
        char **sub_argv;
        int r;

        if (argc < 2) {
                usage();
                return 2;
        }
        /* Output is read through pipes; keep line order stable against stderr and kills. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        cmd = argv[1];
        sub_argc = argc - 2;
        sub_argv = argv + 2;

        if (strcmp(cmd, "status") == 0)
                r = cmd_status();
        else if (strcmp(cmd, "syscall") == 0)
                r = cmd_syscall(sub_argc, sub_argv);
        else if (strcmp(cmd, "deny-loop") == 0)
                r = cmd_deny_loop(sub_argc, sub_argv);
        else if (strcmp(cmd, "deny-threads") == 0)
                r = cmd_deny_threads(sub_argc, sub_argv);
        else if (strcmp(cmd, "list-syscalls") == 0) {
                for (size_t i = 0; i < ARRAY_SIZE(syscall_probes); i++)
                        printf("%s\n", syscall_probes[i].name);
                r = 0;
        } else if (strcmp(cmd, "ls") == 0)
                r = cmd_ls(sub_argc, sub_argv);
        else if (strcmp(cmd, "read") == 0)
                r = cmd_read(sub_argc, sub_argv);
        else if (strcmp(cmd, "write") == 0)
                r = cmd_write(sub_argc, sub_argv);
        else if (strcmp(cmd, "stat") == 0)
                r = cmd_stat(sub_argc, sub_argv);
        else if (strcmp(cmd, "ifaces") == 0)
                r = cmd_ifaces();
        else if (strcmp(cmd, "connect-unix-abstract") == 0)
                r = cmd_connect_unix(sub_argc, sub_argv, true);
        else if (strcmp(cmd, "connect-unix") == 0)
                r = cmd_connect_unix(sub_argc, sub_argv, false);
        else if (strcmp(cmd, "connect-tcp") == 0)
                r = cmd_connect_tcp(sub_argc, sub_argv);
        else if (strcmp(cmd, "sethostname") == 0)
                r = cmd_sethostname(sub_argc, sub_argv);
        else if (strcmp(cmd, "forkbomb") == 0)
                r = cmd_forkbomb(sub_argc, sub_argv);
        else if (strcmp(cmd, "membomb") == 0)
                r = cmd_membomb(sub_argc, sub_argv);
        else if (strcmp(cmd, "kill-all") == 0)
                r = cmd_kill_all();
        else if (strcmp(cmd, "pids") == 0)
                r = cmd_pids();
        else if (strcmp(cmd, "ptys") == 0)
                r = cmd_ptys(sub_argc, sub_argv);
        else if (strcmp(cmd, "sleep") == 0)
                r = cmd_sleep(sub_argc, sub_argv);
        else if (strcmp(cmd, "timer") == 0)
                r = cmd_timer(sub_argc, sub_argv, false);
        else if (strcmp(cmd, "timer-hog") == 0)
                r = cmd_timer(sub_argc, sub_argv, true);
        else if (strcmp(cmd, "shm-lock") == 0)
                r = cmd_shm_lock(sub_argc, sub_argv);
        else if (strcmp(cmd, "inotify") == 0)
                r = cmd_inotify(sub_argc, sub_argv, false);
        else if (strcmp(cmd, "inotify-hog") == 0)
                r = cmd_inotify(sub_argc, sub_argv, true);
        else if (strcmp(cmd, "exit") == 0)
                r = cmd_exit(sub_argc, sub_argv);
        else if (strcmp(cmd, "signal") == 0)
                r = cmd_signal(sub_argc, sub_argv);
        else if (strcmp(cmd, "wait-signal") == 0)
                r = cmd_wait_signal();
        else if (strcmp(cmd, "ignore-signals") == 0)
                r = cmd_ignore_signals(sub_argc, sub_argv);
        else if (strcmp(cmd, "echo-stdin") == 0)
                r = cmd_echo_stdin();
        else if (strcmp(cmd, "stderr") == 0)
                r = cmd_stderr(sub_argc, sub_argv);
        else if (strcmp(cmd, "env") == 0)
                r = cmd_env();
        else if (strcmp(cmd, "zombie-parent") == 0)
                r = cmd_zombie_parent();
        else if (strcmp(cmd, "abi-write") == 0)
                r = cmd_abi_write();
        else if (strcmp(cmd, "deny-distinct") == 0)
                r = cmd_deny_distinct();
        else if (strcmp(cmd, "suid-plant") == 0)
                r = cmd_suid_plant(sub_argc, sub_argv);
        else if (strcmp(cmd, "xattr-get") == 0)
                r = cmd_xattr_get(sub_argc, sub_argv);
        else if (strcmp(cmd, "seize") == 0)
                r = cmd_seize(sub_argc, sub_argv);
        else {
                usage();
                return 2;
        }
        if (fflush(stdout) != 0)
                return 1;
        return r;
}
