/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp filter, compiled (export and compare) and live: denied syscalls are called in a
 * forked child that loaded the filter, with a control run without it proving that the errno
 * comes from the filter and not from the kernel's own checks.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "seccomp-filter.h"
#include "util/build-id.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/sha256.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void build_ok(const AjSeccompSpec *spec, AjBpfProgram *ret)
{
        _cleanup_(aj_error_clear) AjError error = {};
        int r = aj_seccomp_build(spec, ret, &error);
        cr_assert_eq(r, 0, "aj_seccomp_build: %s (%s)", strerror(-r), error.message ?: "");
        cr_assert_not_null(ret->filter);
        cr_assert_gt(ret->len, 0);
}

static bool program_eq(const AjBpfProgram *a, const AjBpfProgram *b)
{
        return a->len == b->len && memcmp(a->filter, b->filter, a->len * sizeof(struct sock_filter)) == 0;
}

/* ---- compiled program ---- */

Test(seccomp_build, default_program_shape_and_determinism)
{
        AjSeccompSpec spec = { .base = "default" };
        AjBpfProgram a = {}, b = {};
        build_ok(&spec, &a);
        build_ok(&spec, &b);
        cr_assert(program_eq(&a, &b), "same spec, different bytes");
        cr_assert_leq(a.len, BPF_MAXINSNS);
        /* Every seccomp program must look at the arch before trusting the number. */
        cr_assert_eq(a.filter[0].code, BPF_LD | BPF_W | BPF_ABS);
        cr_assert_eq(a.filter[0].k, offsetof(struct seccomp_data, arch));
        aj_bpf_program_free(&a);
        aj_bpf_program_free(&b);
        cr_assert_null(a.filter);
        aj_bpf_program_free(NULL);
}

Test(seccomp_build, spec_changes_change_program)
{
        char *deny_getcwd[] = { "getcwd", NULL };
        char *allow_ptrace[] = { "ptrace", NULL };
        const AjSeccompSpec variants[] = {
                { .notify = true },      { .allow_netlink = true }, { .no_inet6 = true },
                { .deny = deny_getcwd }, { .allow = allow_ptrace },
        };
        AjSeccompSpec base = {};
        AjBpfProgram def = {};
        build_ok(&base, &def);
        for (size_t i = 0; i < ARRAY_SIZE(variants); i++) {
                AjBpfProgram v = {};
                build_ok(&variants[i], &v);
                cr_expect(!program_eq(&def, &v), "variant %zu compiles to the default program", i);
                aj_bpf_program_free(&v);
        }
        aj_bpf_program_free(&def);
}

Test(seccomp_build, name_order_and_repeats_do_not_matter)
{
        char *d1[] = { "getcwd", "getpid", NULL };
        char *d2[] = { "getpid", "getcwd", "getcwd", NULL };
        AjBpfProgram a = {}, b = {};
        build_ok(&(AjSeccompSpec){ .deny = d1 }, &a);
        build_ok(&(AjSeccompSpec){ .deny = d2 }, &b);
        cr_assert(program_eq(&a, &b));
        aj_bpf_program_free(&a);
        aj_bpf_program_free(&b);
}

static const struct {
        const char *list; /* "deny" or "allow" */
        const char *names[3];
        const char *base;
        const char *message;
} bad_specs[] = {
        { "deny", { "foo" }, NULL, "seccomp.deny: unknown syscall 'foo'" },
        { "allow", { "bar" }, NULL, "seccomp.allow: unknown syscall 'bar'" },
        { "deny", { "getcwd", "not_a_syscall" }, NULL, "seccomp.deny: unknown syscall 'not_a_syscall'" },
        { "allow", { "" }, NULL, "seccomp.allow: unknown syscall ''" },
        { "deny", { "" }, "weird", "seccomp.default: unknown base filter 'weird'" },
        /* io_uring does file operations out of the filter's sight: never allowed. */
        { "allow",
          { "getcwd", "io_uring_setup" },
          NULL,
          "seccomp.allow: 'io_uring_setup' cannot be allowed: io_uring opens, creates and changes files in the "
          "kernel where no seccomp rule sees it (it would lift the setuid/setgid rule, and every argument check)" },
        { "allow",
          { "io_uring_enter" },
          NULL,
          "seccomp.allow: 'io_uring_enter' cannot be allowed: io_uring opens, creates and changes files in the "
          "kernel where no seccomp rule sees it (it would lift the setuid/setgid rule, and every argument check)" },
};

Test(seccomp_build, unknown_names_are_rejected_with_message)
{
        for (size_t i = 0; i < ARRAY_SIZE(bad_specs); i++) {
                char *names[4] = {};
                for (size_t j = 0; j < 3 && bad_specs[i].names[j]; j++)
                        names[j] = (char *)bad_specs[i].names[j];
                AjSeccompSpec spec = { .base = bad_specs[i].base };
                if (!bad_specs[i].base) {
                        if (streq(bad_specs[i].list, "deny"))
                                spec.deny = names;
                        else
                                spec.allow = names;
                }
                AjBpfProgram p = { .filter = (struct sock_filter *)0x1, .len = 7 };
                _cleanup_(aj_error_clear) AjError error = {};
                int r = aj_seccomp_build(&spec, &p, &error);
                cr_expect_eq(r, -EINVAL, "case %zu: %d", i, r);
                cr_expect_str_eq(error.message ?: "(null)", bad_specs[i].message, "case %zu", i);
                cr_expect(p.filter == (struct sock_filter *)0x1 && p.len == 7, "case %zu: ret written on failure", i);

                _cleanup_(aj_error_clear) AjError error2 = {};
                r = aj_seccomp_build_cached(&spec, NULL, NULL, &p, &error2);
                cr_expect_eq(r, -EINVAL);
                cr_expect_str_eq(error2.message ?: "(null)", bad_specs[i].message);
        }
}

Test(seccomp_build, foreign_arch_names_are_accepted)
{
        /* A profile written for i386 or arm must still load on x86-64. */
        char *deny[] = { "socketcall", "chown32", NULL };
        AjBpfProgram a = {}, def = {};
        build_ok(&(AjSeccompSpec){ .deny = deny }, &a);
        build_ok(&(AjSeccompSpec){}, &def);
        cr_assert(program_eq(&a, &def));
        aj_bpf_program_free(&a);
        aj_bpf_program_free(&def);
}

/* ---- syscall names ---- */

Test(seccomp_names, static_table)
{
        static const struct {
                int nr;
                const char *name;
        } cases[] = {
                { SYS_read, "read" },
                { SYS_ptrace, "ptrace" },
                { SYS_unshare, "unshare" },
                { SYS_clone3, "clone3" },
                { 452, "fchmodat2" },
                { 462, "mseal" },
                { -1, NULL },
                { 400, NULL },
                { 1000, NULL },
                { 0x40000000, NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                const char *n = aj_seccomp_syscall_name(cases[i].nr);
                if (cases[i].name)
                        cr_expect_str_eq(n ? n : "(null)", cases[i].name, "nr %d", cases[i].nr);
                else
                        cr_expect_null(n, "nr %d -> %s", cases[i].nr, n);
        }
}

Test(seccomp_names, agrees_with_libseccomp)
{
        for (int nr = 0; nr < 512; nr++) {
                _cleanup_free_ char *lib = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
                const char *ours = aj_seccomp_syscall_name(nr);
                if (lib)
                        cr_expect_str_eq(ours ? ours : "(null)", lib, "nr %d", nr);
        }
}

/* ---- live ---- */

typedef enum {
        EXPECT_ERRNO, /* fails with exactly `err` (0: succeeds) */
        EXPECT_NOT,   /* anything but `err` */
} Expect;

typedef struct {
        const char *what;
        long (*call)(void);
        int err;
        /* The control run (no filter, as root) must not see EPERM: the filter denies it. */
        bool control;
} Probe;

static long clone_child_exit(long r)
{
        if (r == 0)
                _exit(0);
        if (r > 0)
                waitpid((pid_t)r, NULL, 0);
        return r;
}

static long close_if_fd(long r)
{
        if (r >= 0)
                close((int)r);
        return r;
}

static long p_ptrace(void) { return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0); }
static long p_process_vm_readv(void) { return syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0); }
static long p_process_vm_writev(void) { return syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0); }
static long p_kcmp(void) { return syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0); }
static long p_pidfd_getfd(void) { return syscall(SYS_pidfd_getfd, -1, 0, 0); }
static long p_io_uring_setup(void) { return syscall(SYS_io_uring_setup, 0, NULL); }
static long p_io_uring_enter(void) { return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0); }
static long p_userfaultfd(void) { return close_if_fd(syscall(SYS_userfaultfd, O_CLOEXEC)); }
static long p_bpf(void) { return syscall(SYS_bpf, -1, NULL, 0); }
static long p_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long p_keyctl(void) { return syscall(SYS_keyctl, -1, 0, 0, 0, 0); }
static long p_add_key(void) { return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0); }
static long p_request_key(void) { return syscall(SYS_request_key, NULL, NULL, NULL, 0); }
static long p_mount(void) { return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL); }
static long p_umount2(void) { return syscall(SYS_umount2, "/nonexistent-agentjail", 0); }
static long p_pivot_root(void) { return syscall(SYS_pivot_root, NULL, NULL); }
static long p_chroot(void) { return syscall(SYS_chroot, NULL); }
static long p_fsopen(void) { return syscall(SYS_fsopen, NULL, 0); }
static long p_fsmount(void) { return syscall(SYS_fsmount, -1, 0, 0); }
static long p_open_tree(void) { return syscall(SYS_open_tree, -1, NULL, 0); }
static long p_move_mount(void) { return syscall(SYS_move_mount, -1, NULL, -1, NULL, 0); }
static long p_mount_setattr(void) { return syscall(SYS_mount_setattr, -1, NULL, 0, NULL, 0); }
static long p_unshare(void) { return syscall(SYS_unshare, CLONE_NEWUSER); }
static long p_setns(void) { return syscall(SYS_setns, -1, 0); }
static long clone_flags(unsigned long flags)
{
        return clone_child_exit(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0));
}
static long p_clone_newuser(void) { return clone_flags(CLONE_NEWUSER); }
static long p_clone_newnet(void) { return clone_flags(CLONE_NEWNET); }
static long p_clone3(void) { return syscall(SYS_clone3, NULL, 0); }
/* No events: EINVAL from the kernel, before it counts anything against fs.aio-max-nr. */
static long p_io_setup(void)
{
        unsigned long ctx = 0;
        return syscall(SYS_io_setup, 0, &ctx);
}
static long p_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL); }
static long p_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long p_finit_module(void) { return syscall(SYS_finit_module, -1, "", 0); }
static long p_delete_module(void) { return syscall(SYS_delete_module, "agentjail-none", O_NONBLOCK); }
static long p_open_by_handle_at(void) { return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long p_name_to_handle_at(void) { return syscall(SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0); }
static long p_tiocsti(void) { return syscall(SYS_ioctl, -1, (unsigned long)TIOCSTI, NULL); }
static long p_tiocsti_high(void) { return syscall(SYS_ioctl, -1, TIOCSTI | (1UL << 32), NULL); }
static long p_tioclinux(void) { return syscall(SYS_ioctl, -1, (unsigned long)TIOCLINUX, NULL); }
/* The huge page requests fail in the kernel's first checks (no length, an empty segment) or,
 * for memfd_create, make an empty file: nothing comes from the host's pool in any case. */
static long p_mmap_hugetlb(void)
{
        void *m = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        return m == MAP_FAILED ? -1 : 0;
}
static long p_memfd_hugetlb(void) { return close_if_fd(memfd_create("aj", MFD_CLOEXEC | MFD_HUGETLB)); }
static long p_shmget_hugetlb(void) { return shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600 | SHM_HUGETLB); }
static long p_tiocsetd(void) { return syscall(SYS_ioctl, -1, (unsigned long)TIOCSETD, NULL); }
static long p_tiocsetd_high(void) { return syscall(SYS_ioctl, -1, TIOCSETD | (1UL << 32), NULL); }
/* Raw syscall(2), so the family reaches the filter with whatever upper bits we give it. */
static long raw_socket(unsigned long family, int type) { return close_if_fd(syscall(SYS_socket, family, type, 0)); }
static long p_socket_packet(void) { return raw_socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC); }
static long p_socket_netlink(void) { return raw_socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC); }
static long p_socket_vsock(void) { return raw_socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC); }
static long p_socket_packet_high(void) { return raw_socket(AF_PACKET | 1UL << 32, SOCK_RAW | SOCK_CLOEXEC); }
static long p_socket_unix_high(void) { return raw_socket(AF_UNIX | 1UL << 32, SOCK_STREAM | SOCK_CLOEXEC); }
static long p_tcgets_high(void) { return syscall(SYS_ioctl, -1, TCGETS | (0xffUL << 40), NULL); }
static long p_socketpair_inet(void)
{
        int sv[2];
        return syscall(SYS_socketpair, AF_INET, SOCK_STREAM, 0, sv);
}
static long p_personality_norandom(void) { return syscall(SYS_personality, ADDR_NO_RANDOMIZE); }
static long p_reboot(void) { return syscall(SYS_reboot, 0, 0, 0, NULL); }
static long p_swapoff(void) { return syscall(SYS_swapoff, "/nonexistent-agentjail"); }
static long p_settimeofday(void) { return syscall(SYS_settimeofday, NULL, NULL); }
static long p_syslog(void) { return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0); }
static long p_iopl(void) { return syscall(SYS_iopl, 4); }
static long p_modify_ldt(void) { return syscall(SYS_modify_ldt, 0, NULL, 0); }
static long p_acct(void) { return syscall(SYS_acct, NULL); }
static long p_mbind(void) { return syscall(SYS_mbind, NULL, 0, 0, NULL, 0, 0); }
static long p_unused_1000(void) { return syscall(1000); }

static const Probe denied_by_default[] = {
        { "ptrace", p_ptrace, EPERM, true },
        { "process_vm_readv", p_process_vm_readv, EPERM, true },
        { "process_vm_writev", p_process_vm_writev, EPERM, true },
        { "kcmp", p_kcmp, EPERM, true },
        { "pidfd_getfd", p_pidfd_getfd, EPERM, true },
        { "io_uring_setup", p_io_uring_setup, EPERM, true },
        { "io_uring_enter", p_io_uring_enter, EPERM, true },
        { "userfaultfd", p_userfaultfd, EPERM, true },
        { "bpf", p_bpf, EPERM, true },
        { "perf_event_open", p_perf_event_open, EPERM, true },
        { "keyctl", p_keyctl, EPERM, true },
        { "add_key", p_add_key, EPERM, true },
        { "request_key", p_request_key, EPERM, true },
        { "mount", p_mount, EPERM, true },
        { "umount2", p_umount2, EPERM, true },
        { "pivot_root", p_pivot_root, EPERM, true },
        { "chroot", p_chroot, EPERM, true },
        { "fsopen", p_fsopen, EPERM, true },
        { "fsmount", p_fsmount, EPERM, true },
        { "open_tree", p_open_tree, EPERM, true },
        { "move_mount", p_move_mount, EPERM, true },
        { "mount_setattr", p_mount_setattr, EPERM, true },
        { "unshare(CLONE_NEWUSER)", p_unshare, EPERM, true },
        { "setns", p_setns, EPERM, true },
        { "clone(CLONE_NEWUSER)", p_clone_newuser, EPERM, true },
        { "clone(CLONE_NEWNET)", p_clone_newnet, EPERM, true },
        { "clone3", p_clone3, ENOSYS, true },
        { "io_setup", p_io_setup, ENOSYS, true },
        /* Lockdown can make the kernel itself answer EPERM here: no control. */
        { "kexec_load", p_kexec_load, EPERM, false },
        { "init_module", p_init_module, EPERM, true },
        { "finit_module", p_finit_module, EPERM, true },
        { "delete_module", p_delete_module, EPERM, true },
        { "open_by_handle_at", p_open_by_handle_at, EPERM, true },
        { "name_to_handle_at", p_name_to_handle_at, EPERM, true },
        { "ioctl(TIOCSTI)", p_tiocsti, EPERM, true },
        { "ioctl(TIOCSTI | 1 << 32)", p_tiocsti_high, EPERM, true },
        { "ioctl(TIOCLINUX)", p_tioclinux, EPERM, true },
        { "mmap(MAP_HUGETLB)", p_mmap_hugetlb, EPERM, true },
        { "memfd_create(MFD_HUGETLB)", p_memfd_hugetlb, EPERM, true },
        { "shmget(SHM_HUGETLB)", p_shmget_hugetlb, EPERM, true },
        { "ioctl(TIOCSETD)", p_tiocsetd, EPERM, true },
        { "ioctl(TIOCSETD | 1 << 32)", p_tiocsetd_high, EPERM, true },
        { "socket(AF_PACKET)", p_socket_packet, EPERM, true },
        { "socket(AF_NETLINK)", p_socket_netlink, EPERM, true },
        { "socket(AF_VSOCK)", p_socket_vsock, EPERM, true },
        { "socketpair(AF_INET)", p_socketpair_inet, EPERM, true },
        { "personality(ADDR_NO_RANDOMIZE)", p_personality_norandom, EPERM, true },
        { "reboot", p_reboot, EPERM, true },
        { "swapoff", p_swapoff, EPERM, true },
        { "settimeofday", p_settimeofday, EPERM, true },
        { "syslog", p_syslog, EPERM, true },
        { "iopl", p_iopl, EPERM, true },
        { "modify_ldt", p_modify_ldt, EPERM, true },
        { "acct", p_acct, EPERM, true },
        { "mbind", p_mbind, EPERM, true },
        { "syscall(1000)", p_unused_1000, EPERM, true },
};

static void *thread_main(void *arg) { return arg; }

static long a_fork_wait(void)
{
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0)
                _exit(7);
        int status;
        if (waitpid(pid, &status, 0) < 0)
                return -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 7) {
                errno = EIO;
                return -1;
        }
        return 0;
}

static long a_thread(void)
{
        /* glibc tries clone3 first: this needs the ENOSYS answer and the clone fallback. */
        pthread_t t;
        int r = pthread_create(&t, NULL, thread_main, (void *)0x42);
        if (r != 0) {
                errno = r;
                return -1;
        }
        void *out = NULL;
        pthread_join(t, &out);
        if (out != (void *)0x42) {
                errno = EIO;
                return -1;
        }
        return 0;
}

static long a_exec_tools(void)
{
        /* Real programs, exec'd under the filter: shell, coreutils, git, python3, node. */
        static const char script[] =
                "set -e; x=$(echo hi | tr h H); [ \"$x\" = Hi ]; ls / >/dev/null; "
                "if command -v git >/dev/null; then d=$(mktemp -d); cd \"$d\"; git init -q .; echo a > f; "
                "git add f; git -c user.name=t -c user.email=t@t commit -qm m; cd /; rm -rf \"$d\"; fi; "
                "if command -v python3 >/dev/null; then python3 -c 'import os, threading, "
                "subprocess; t = threading.Thread(target=os.getcwd); t.start(); t.join(); "
                "subprocess.run([\"true\"], check=True)'; fi; "
                "if command -v node >/dev/null; then node -e 'require(\"child_process\")"
                ".execFileSync(\"true\"); new Promise(r => setTimeout(r, 1))'; fi";
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (devnull >= 0)
                        dup2(devnull, STDOUT_FILENO);
                execl("/bin/sh", "sh", "-c", script, (char *)NULL);
                _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0)
                return -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                errno = WIFEXITED(status) ? 1000 + WEXITSTATUS(status) : 2000 + WTERMSIG(status);
                return -1;
        }
        return 0;
}

static long a_socket_unix(void) { return close_if_fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)); }
static long a_socket_inet(void) { return close_if_fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }
static long a_socket_inet6(void) { return close_if_fd(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)); }
static long a_socketpair_unix(void)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        close(sv[0]);
        close(sv[1]);
        return 0;
}
static long a_pipe2_fionread(void)
{
        int p[2], n = -1;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        long r = write(p[1], "abc", 3) == 3 ? ioctl(p[0], FIONREAD, &n) : -1;
        close(p[0]);
        close(p[1]);
        if (r == 0 && n != 3) {
                errno = EIO;
                return -1;
        }
        return r;
}
static long a_tcgets_badfd(void) { return syscall(SYS_ioctl, -1, (unsigned long)TCGETS, NULL); }
static long a_getpid(void) { return syscall(SYS_getpid) > 0 ? 0 : -1; }
static long a_prctl_name(void) { return prctl(PR_SET_NAME, "aj-probe", 0, 0, 0); }
static long a_prctl_nnp(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
static long a_getcwd(void)
{
        char buf[4096];
        return getcwd(buf, sizeof(buf)) ? 0 : -1;
}
static long a_memfd(void) { return close_if_fd(memfd_create("aj", MFD_CLOEXEC)); }
static long a_mmap_anon(void)
{
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m == MAP_FAILED ? -1 : munmap(m, 4096);
}
static long a_shmget_empty(void) { return shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600); }
static long a_prlimit_self(void)
{
        struct rlimit rl;
        if (prlimit(0, RLIMIT_NOFILE, NULL, &rl) < 0)
                return -1;
        return prlimit(0, RLIMIT_NOFILE, &rl, NULL);
}
static long a_personality_query(void) { return personality(0xffffffff) < 0 ? -1 : 0; }
static long a_setpgid(void) { return setpgid(0, 0); }
static long a_fchmodat2(void) { return syscall(452, AT_FDCWD, "/nonexistent-agentjail", 0644, 0); }

static const Probe allowed_by_default[] = {
        { "getpid", a_getpid, 0, false },
        { "fork+wait", a_fork_wait, 0, false },
        { "pthread_create", a_thread, 0, false },
        { "socket(AF_UNIX)", a_socket_unix, 0, false },
        { "socket(AF_INET)", a_socket_inet, 0, false },
        { "socket(AF_INET6)", a_socket_inet6, 0, false },
        { "socketpair(AF_UNIX)", a_socketpair_unix, 0, false },
        { "pipe2+ioctl(FIONREAD)", a_pipe2_fionread, 0, false },
        { "ioctl(TCGETS) on a bad fd", a_tcgets_badfd, EBADF, false },
        { "prctl(PR_SET_NAME)", a_prctl_name, 0, false },
        { "prctl(PR_SET_NO_NEW_PRIVS)", a_prctl_nnp, 0, false },
        { "getcwd", a_getcwd, 0, false },
        { "memfd_create", a_memfd, 0, false },
        { "mmap(MAP_ANONYMOUS)", a_mmap_anon, 0, false },
        { "shmget without SHM_HUGETLB (empty: EINVAL)", a_shmget_empty, EINVAL, false },
        { "prlimit64(self)", a_prlimit_self, 0, false },
        { "personality(query)", a_personality_query, 0, false },
        { "setpgid", a_setpgid, 0, false },
        { "fchmodat2", a_fchmodat2, ENOENT, false },
        { "sh, coreutils, git, python3, node", a_exec_tools, 0, false },
};

/* Runs each probe in its own forked child (a probe may change the child, e.g. unshare), with
 * the program loaded when `prog` is set; returns the mismatches, one line each ("" if none). */
static char *run_probes(const AjBpfProgram *prog, const Probe *probes, size_t n, Expect mode, bool control_only)
{
        char *out = NULL;
        size_t out_len = 0;
        FILE *f = open_memstream(&out, &out_len);
        cr_assert_not_null(f);
        for (size_t i = 0; i < n; i++) {
                if (control_only && !probes[i].control)
                        continue;
                int p[2];
                cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
                pid_t pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0) {
                        close(p[0]);
                        if (prog && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || aj_seccomp_load(prog, false) != 0))
                                _exit(91);
                        errno = 0;
                        long r = probes[i].call();
                        int got = r < 0 ? errno : 0;
                        (void)!write(p[1], &got, sizeof(got));
                        _exit(0);
                }
                close(p[1]);
                int got = -1;
                ssize_t k = read(p[0], &got, sizeof(got));
                close(p[0]);
                int status;
                cr_assert_eq(waitpid(pid, &status, 0), pid);
                if (k != sizeof(got) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(f, "%s: probe child status 0x%x\n", probes[i].what, status);
                        continue;
                }
                bool ok = mode == EXPECT_ERRNO ? got == probes[i].err : got != probes[i].err;
                if (!ok)
                        fprintf(f, "%s: errno %d (%s), want %s%d\n", probes[i].what, got, strerrorname_np(got) ?: "?",
                                mode == EXPECT_ERRNO ? "" : "not ", probes[i].err);
        }
        fclose(f);
        return out;
}

static void expect_probes(const AjSeccompSpec *spec, const Probe *probes, size_t n)
{
        AjBpfProgram prog = {};
        build_ok(spec, &prog);
        _cleanup_free_ char *report = run_probes(&prog, probes, n, EXPECT_ERRNO, false);
        aj_bpf_program_free(&prog);
        cr_assert_str_empty(report, "under the filter:\n%s", report);
}

Test(seccomp_live, default_denies)
{
        expect_probes(&(AjSeccompSpec){ .base = "default" }, denied_by_default, ARRAY_SIZE(denied_by_default));
}

Test(seccomp_live, control_without_filter_is_not_eperm)
{
        if (geteuid() != 0)
                cr_skip_test("the control run needs root, where the kernel itself permits these");
        _cleanup_free_ char *report = run_probes(NULL, denied_by_default, ARRAY_SIZE(denied_by_default), EXPECT_NOT,
                                                 true);
        cr_assert_str_empty(report, "without the filter:\n%s", report);
}

Test(seccomp_live, default_allows_what_programs_need)
{
        expect_probes(&(AjSeccompSpec){}, allowed_by_default, ARRAY_SIZE(allowed_by_default));
}

Test(seccomp_live, high_bits_of_int_args_do_not_bypass)
{
        /* The kernel truncates socket()'s family and ioctl()'s cmd to 32 bits; the filter
         * decides on the same 32 bits, so garbage above neither hides a denied value nor
         * breaks an allowed one. */
        static const Probe probes[] = {
                { "socket(AF_PACKET | 1 << 32)", p_socket_packet_high, EPERM, false },
                { "ioctl(TIOCSTI | 1 << 32)", p_tiocsti_high, EPERM, false },
                { "socket(AF_UNIX | 1 << 32)", p_socket_unix_high, 0, false },
                { "ioctl(TCGETS | 0xff << 40) on a bad fd", p_tcgets_high, EBADF, false },
        };
        expect_probes(&(AjSeccompSpec){}, probes, ARRAY_SIZE(probes));
}

Test(seccomp_live, x32_abi_kills_the_process)
{
        AjBpfProgram prog = {};
        build_ok(&(AjSeccompSpec){}, &prog);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || aj_seccomp_load(&prog, false) < 0)
                        _exit(91);
                syscall(0x40000000 | SYS_getpid); /* __X32_SYSCALL_BIT */
                _exit(0);
        }
        aj_bpf_program_free(&prog);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS, "status 0x%x", status);
}

Test(seccomp_live, profile_deny_and_allow)
{
        char *deny[] = { "getcwd", NULL };
        static const Probe denied_getcwd[] = {
                { "getcwd", a_getcwd, EPERM, false },
                { "getpid", a_getpid, 0, false },
        };
        expect_probes(&(AjSeccompSpec){ .deny = deny }, denied_getcwd, ARRAY_SIZE(denied_getcwd));

        char *allow[] = { "ptrace", "clone3", "io_setup", NULL };
        static const Probe allowed_back[] = {
                { "ptrace", p_ptrace, EPERM, false },
                { "clone3", p_clone3, ENOSYS, false },
                { "io_setup", p_io_setup, ENOSYS, false },
                { "unshare", p_unshare, EPERM, false },
        };
        AjBpfProgram prog = {};
        build_ok(&(AjSeccompSpec){ .allow = allow }, &prog);
        _cleanup_free_ char *report = run_probes(&prog, allowed_back, 3, EXPECT_NOT, false);
        cr_assert_str_empty(report, "allowed back:\n%s", report);
        _cleanup_free_ char *report2 = run_probes(&prog, allowed_back + 3, 1, EXPECT_ERRNO, false);
        cr_assert_str_empty(report2, "still denied:\n%s", report2);
        aj_bpf_program_free(&prog);
}

Test(seccomp_live, deny_wins_over_allow)
{
        char *both[] = { "getcwd", NULL };
        static const Probe probes[] = { { "getcwd", a_getcwd, EPERM, false } };
        expect_probes(&(AjSeccompSpec){ .deny = both, .allow = both }, probes, ARRAY_SIZE(probes));
}

Test(seccomp_live, allow_netlink)
{
        static const Probe probes[] = {
                { "socket(AF_NETLINK)", p_socket_netlink, 0, false },
                { "socket(AF_PACKET)", p_socket_packet, EPERM, false },
        };
        expect_probes(&(AjSeccompSpec){ .allow_netlink = true }, probes, ARRAY_SIZE(probes));
}

/* ---- sockets: no module loaded for the jail ---- */

/* Each run only under the filter: without it, the kernel would ask modprobe for the module
 * (and load SCTP, L2TP... on the test host where it exists). */
static long s_inet_sctp_seqpacket(void) { return raw_socket(AF_INET, SOCK_SEQPACKET | SOCK_CLOEXEC); }
static long sock3(unsigned long family, unsigned long type, unsigned long protocol)
{
        return close_if_fd(syscall(SYS_socket, family, type, protocol));
}
static long s_inet_stream_sctp(void) { return sock3(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_SCTP); }
static long s_inet6_dgram_l2tp(void) { return sock3(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 115 /* IPPROTO_L2TP */); }
static long s_inet_stream_unknown(void) { return sock3(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 200); }
static long s_inet_stream_tcp_high(void)
{
        return sock3(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP | 1UL << 32);
}
static long s_inet_stream(void) { return sock3(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long s_inet_dgram_udp(void) { return sock3(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP); }
static long s_inet_sctp_high_type(void) { return sock3(AF_INET, SOCK_STREAM | 1UL << 40, IPPROTO_SCTP); }

/* A protocol or type the kernel has not built in had inet_create() start modprobe on the host
 * (as root, outside the jail's cgroup and namespaces) before any check of the caller: once per
 * call while no module answers, and whatever module it found was loaded. */
Test(seccomp_live, no_socket_has_the_host_load_a_module)
{
        static const Probe probes[] = {
                { "socket(AF_INET, SOCK_SEQPACKET)", s_inet_sctp_seqpacket, EPERM, false },
                { "socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)", s_inet_stream_sctp, EPERM, false },
                { "socket(AF_INET6, SOCK_DGRAM, IPPROTO_L2TP)", s_inet6_dgram_l2tp, EPERM, false },
                { "socket(AF_INET, SOCK_STREAM, 200)", s_inet_stream_unknown, EPERM, false },
                { "socket(AF_INET, SOCK_STREAM | 1 << 40, IPPROTO_SCTP)", s_inet_sctp_high_type, EPERM, false },
                { "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP | 1 << 32)", s_inet_stream_tcp_high, 0, false },
                { "socket(AF_INET, SOCK_STREAM, 0)", s_inet_stream, 0, false },
                { "socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)", s_inet_dgram_udp, 0, false },
        };
        expect_probes(&(AjSeccompSpec){}, probes, ARRAY_SIZE(probes));
        AjSeccompDenial d = { .nr = SYS_socket, .arch = AUDIT_ARCH_X86_64, .args = { AF_INET, SOCK_STREAM, 132 } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)",
                         "a protocol or type the kernel would load a module for");
        d.args[0] = AF_PACKET;
        cr_expect_null(aj_seccomp_denial_hint(&d));
}

static long s_inet6_stream(void) { return sock3(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static long s_inet6_dgram_udp(void) { return sock3(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP); }
static long s_inet6_high(void) { return sock3(AF_INET6 | 1UL << 32, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

/* A family the host's kernel has not registered has __sock_create() ask modprobe for it, for
 * any type or protocol, on every call: AF_INET6 booted with ipv6.disable=1 (or a module not
 * loaded), which every program trying IPv6 first calls. Then the filter answers as the kernel
 * would, EAFNOSUPPORT, and modprobe is never asked; AF_INET stays. */
Test(seccomp_live, a_host_without_inet6_has_no_modprobe_for_it)
{
        static const Probe probes[] = {
                { "socket(AF_INET6, SOCK_STREAM, 0)", s_inet6_stream, EAFNOSUPPORT, false },
                { "socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP)", s_inet6_dgram_udp, EAFNOSUPPORT, false },
                { "socket(AF_INET6 | 1 << 32, SOCK_DGRAM, 0)", s_inet6_high, EAFNOSUPPORT, false },
                { "socket(AF_INET, SOCK_STREAM, 0)", s_inet_stream, 0, false },
                { "socket(AF_UNIX)", a_socket_unix, 0, false },
        };
        expect_probes(&(AjSeccompSpec){ .no_inet6 = true }, probes, ARRAY_SIZE(probes));
}

/* Told from /proc/net/protocols (TCPv6 registered or not); a file that cannot be read: none. */
Test(seccomp_build, host_inet6_from_the_kernels_protocols)
{
        char dir[] = "/tmp/agentjail-test-inet6.XXXXXX", path[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/protocols", dir);
        static const char with[] = "protocol  size sockets  memory press maxhdr  slab module\n"
                                   "MPTCPv6   2064      0      92   no       0   yes  kernel\n"
                                   "TCPv6     2432      0      92   no     320   yes  kernel\n"
                                   "TCP       2272      4      92   no     320   yes  kernel\n";
        static const char without[] = "protocol  size sockets  memory press maxhdr  slab module\n"
                                      "MPTCPv6   2064      0      92   no       0   yes  kernel\n"
                                      "TCP       2272      4      92   no     320   yes  kernel\n";
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(with, f);
        fclose(f);
        cr_expect(aj_seccomp_host_inet6(path), "TCPv6 listed: the host has AF_INET6");
        f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(without, f);
        fclose(f);
        cr_expect_not(aj_seccomp_host_inet6(path), "no TCPv6 (MPTCPv6 is not it): the host has no AF_INET6");
        unlink(path);
        cr_expect_not(aj_seccomp_host_inet6(path), "no file: counted as none (fail closed)");
        rmdir(dir);
}

/* ---- limits.core false: RLIMIT_CORE kept at the jail's 1 byte ---- */

/* The probes run with RLIMIT_CORE 1 byte, soft and hard, as the jail's processes do; 0 where
 * the test's hard limit is 0 and it cannot raise it (no CAP_SYS_RESOURCE), as the jail's is
 * then (src/jail-plan.c, jail_core_limit). */
static struct rlimit jail_core = { 1, 1 };
static const struct rlimit core_zero = { 0, 0 }, core_unlimited = { RLIM_INFINITY, RLIM_INFINITY };

/* `r`, unless the limit moved from the jail's: then ENOTRECOVERABLE. */
static long core_kept(long r)
{
        struct rlimit now;
        if (r < 0 || getrlimit(RLIMIT_CORE, &now) < 0)
                return -1;
        if (now.rlim_cur != jail_core.rlim_cur || now.rlim_max != jail_core.rlim_max) {
                errno = ENOTRECOVERABLE;
                return -1;
        }
        return r;
}
static long c_setrlimit_core_zero(void) { return core_kept(syscall(SYS_setrlimit, RLIMIT_CORE, &core_zero)); }
static long c_setrlimit_core_unlimited(void) { return core_kept(syscall(SYS_setrlimit, RLIMIT_CORE, &core_unlimited)); }
static long c_setrlimit_core_high(void)
{
        return core_kept(syscall(SYS_setrlimit, RLIMIT_CORE | 1UL << 32, &core_zero));
}
static long c_prlimit_core_set(void) { return core_kept(syscall(SYS_prlimit64, 0, RLIMIT_CORE, &core_zero, NULL)); }
static long c_prlimit_core_swap(void)
{
        struct rlimit old;
        return core_kept(syscall(SYS_prlimit64, 0, RLIMIT_CORE, &core_zero, &old));
}
static long c_prlimit_core_read(void)
{
        struct rlimit old = { 7, 7 };
        long r = syscall(SYS_prlimit64, 0, RLIMIT_CORE, NULL, &old);
        if (r == 0 && old.rlim_cur != jail_core.rlim_cur) {
                errno = ENODATA; /* the old limit was not filled */
                return -1;
        }
        return r;
}
static long c_getrlimit_core(void)
{
        struct rlimit old;
        return getrlimit(RLIMIT_CORE, &old);
}
static long c_setrlimit_nofile(void)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -1;
        return syscall(SYS_setrlimit, RLIMIT_NOFILE, &rl);
}
/* limits.core true: the change is made. */
static long c_setrlimit_core_zero_made(void)
{
        struct rlimit now;
        if (syscall(SYS_setrlimit, RLIMIT_CORE, &core_zero) < 0 || getrlimit(RLIMIT_CORE, &now) < 0)
                return -1;
        if (now.rlim_cur != 0) {
                errno = ENOTRECOVERABLE;
                return -1;
        }
        return 0;
}

/* With a piped core_pattern (systemd-coredump, apport) the kernel ignores RLIMIT_CORE but for
 * its value 1: a jailed process that crashed started the host's helper, as root, outside the
 * jail's cgroup and namespaces, once per crash; the jail sets 1 and the agent must not lower
 * it to 0 (which the kernel allows anyone). Scripts setting it (`ulimit -c 0`, `ulimit -c
 * unlimited`) must not stop on an error: the set succeeds and changes nothing
 * (ENOTRECOVERABLE: it changed). A prlimit64 that asks for the old limit too is refused: it
 * would be left unfilled. */
Test(seccomp_live, the_core_limit_stays_as_the_jail_set_it)
{
        jail_core = (struct rlimit){ 1, 1 };
        if (setrlimit(RLIMIT_CORE, &jail_core) < 0)
                jail_core = (struct rlimit){ 0, 0 };
        cr_assert_eq(setrlimit(RLIMIT_CORE, &jail_core), 0, "%s", strerror(errno));
        static const Probe kept[] = {
                { "setrlimit(RLIMIT_CORE, 0)", c_setrlimit_core_zero, 0, false },
                { "setrlimit(RLIMIT_CORE, unlimited)", c_setrlimit_core_unlimited, 0, false },
                { "setrlimit(RLIMIT_CORE | 1 << 32, 0)", c_setrlimit_core_high, 0, false },
                { "prlimit64(RLIMIT_CORE, new, NULL)", c_prlimit_core_set, 0, false },
                { "prlimit64(RLIMIT_CORE, new, old)", c_prlimit_core_swap, EPERM, false },
                { "prlimit64(RLIMIT_CORE, NULL, old)", c_prlimit_core_read, 0, false },
                { "getrlimit(RLIMIT_CORE)", c_getrlimit_core, 0, false },
                { "setrlimit(RLIMIT_NOFILE)", c_setrlimit_nofile, 0, false },
                { "prlimit64(self)", a_prlimit_self, 0, false },
        };
        expect_probes(&(AjSeccompSpec){ .fixed_core = true }, kept, ARRAY_SIZE(kept));
        /* A profile's allow does not lift it: it protects the host. */
        char *allow[] = { "setrlimit", "prlimit64", NULL };
        expect_probes(&(AjSeccompSpec){ .fixed_core = true, .allow = allow }, kept, 6);
        /* limits.core true: the agent's to set. */
        static const Probe free_core[] = {
                { "setrlimit(RLIMIT_CORE, 0)", c_setrlimit_core_zero_made, 0, false },
        };
        expect_probes(&(AjSeccompSpec){}, free_core, ARRAY_SIZE(free_core));
}

/* ---- RestrictSUIDSGID ---- */

/* A directory (root's, as the idmapped workspace maps the agent to the owner) with one file;
 * each probe creates its own name, so the control run without the filter can succeed too. */
static char suid_dir[] = "/tmp/aj-test-suid.XXXXXX";
static char suid_file[64];

static void suid_setup(void)
{
        cr_assert_not_null(mkdtemp(suid_dir));
        snprintf(suid_file, sizeof(suid_file), "%s/file", suid_dir);
        int fd = open(suid_file, O_CREAT | O_WRONLY | O_CLOEXEC, 0755);
        cr_assert_geq(fd, 0);
        close(fd);
}

static void suid_teardown(void) { aj_rm_rf(suid_dir); }

static const char *suid_path(const char *leaf)
{
        static char buf[128];
        snprintf(buf, sizeof(buf), "%s/%s", suid_dir, leaf);
        return buf;
}

static long fd_call(int flags, long (*call)(int))
{
        int fd = open(suid_file, flags | O_CLOEXEC);
        if (fd < 0)
                return -1;
        long r = call(fd);
        int e = errno;
        close(fd);
        errno = e;
        return r;
}

static long fchmod_4755(int fd) { return syscall(SYS_fchmod, fd, 04755); }
static long fchmod_0755(int fd) { return syscall(SYS_fchmod, fd, 0755); }
static long s_chmod_4755(void) { return syscall(SYS_chmod, suid_file, 04755); }
static long s_chmod_2755(void) { return syscall(SYS_chmod, suid_file, 02755); }
static long s_chmod_6755(void) { return syscall(SYS_chmod, suid_file, 06755); }
/* umode_t is 16 bits: garbage above must not hide the bits the kernel keeps. */
static long s_chmod_4755_high(void) { return syscall(SYS_chmod, suid_file, 04755UL | 1UL << 32 | 1UL << 16); }
static long s_fchmod_4755(void) { return fd_call(O_RDONLY, fchmod_4755); }
static long s_fchmodat_2755(void) { return syscall(SYS_fchmodat, AT_FDCWD, suid_file, 02755); }
static long s_fchmodat2_4755(void) { return syscall(452, AT_FDCWD, suid_file, 04755, 0); }
static long s_open_creat_4755(void)
{
        return close_if_fd(syscall(SYS_open, suid_path("o"), O_CREAT | O_WRONLY | O_CLOEXEC, 04755));
}
static long s_openat_creat_2755(void)
{
        return close_if_fd(syscall(SYS_openat, AT_FDCWD, suid_path("oa"), O_CREAT | O_WRONLY | O_CLOEXEC, 02755));
}
static long s_openat_tmpfile_4755(void)
{
        return close_if_fd(syscall(SYS_openat, AT_FDCWD, suid_dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 04755));
}
static long s_creat_6755(void) { return close_if_fd(syscall(SYS_creat, suid_path("c"), 06755)); }
static long s_mkdir_2755(void) { return syscall(SYS_mkdir, suid_path("d"), 02755); }
static long s_mkdirat_4755(void) { return syscall(SYS_mkdirat, AT_FDCWD, suid_path("da"), 04755); }
static long s_mknod_4755(void) { return syscall(SYS_mknod, suid_path("n"), S_IFREG | 04755, 0); }
static long s_mknodat_2755(void) { return syscall(SYS_mknodat, AT_FDCWD, suid_path("na"), S_IFREG | 02755, 0); }
static long s_openat2(void)
{
        struct {
                uint64_t flags, mode, resolve;
        } how = { .flags = O_CREAT | O_WRONLY | O_CLOEXEC, .mode = 04755 };
        return close_if_fd(syscall(437 /* openat2 */, AT_FDCWD, suid_path("o2"), &how, sizeof(how)));
}

static const Probe suid_denied[] = {
        { "chmod(04755)", s_chmod_4755, EPERM, true },
        { "chmod(02755)", s_chmod_2755, EPERM, true },
        { "chmod(06755)", s_chmod_6755, EPERM, true },
        { "chmod(04755 | high garbage)", s_chmod_4755_high, EPERM, true },
        { "fchmod(04755)", s_fchmod_4755, EPERM, true },
        { "fchmodat(02755)", s_fchmodat_2755, EPERM, true },
        /* Kernels before 6.6 lack fchmodat2 (ENOSYS): the control cannot insist on success. */
        { "fchmodat2(04755)", s_fchmodat2_4755, EPERM, true },
        { "open(O_CREAT, 04755)", s_open_creat_4755, EPERM, true },
        { "openat(O_CREAT, 02755)", s_openat_creat_2755, EPERM, true },
        { "openat(O_TMPFILE, 04755)", s_openat_tmpfile_4755, EPERM, true },
        { "creat(06755)", s_creat_6755, EPERM, true },
        { "mkdir(02755)", s_mkdir_2755, EPERM, true },
        { "mkdirat(04755)", s_mkdirat_4755, EPERM, true },
        { "mknod(S_IFREG | 04755)", s_mknod_4755, EPERM, true },
        { "mknodat(S_IFREG | 02755)", s_mknodat_2755, EPERM, true },
        /* The mode is behind a pointer: as on a kernel without openat2, so libc falls back. */
        { "openat2", s_openat2, ENOSYS, true },
};

static long s_chmod_0755(void) { return syscall(SYS_chmod, suid_file, 01777); }
static long s_fchmod_0755(void) { return fd_call(O_RDONLY, fchmod_0755); }
static long s_fchmodat2_0700(void)
{
        long r = syscall(452, AT_FDCWD, suid_file, 0700, 0);
        return r < 0 && errno == ENOSYS ? 0 : r;
}
/* Without O_CREAT the kernel ignores the mode, so junk there is harmless and allowed. */
static long s_open_rdonly_junk_mode(void)
{
        return close_if_fd(syscall(SYS_open, suid_file, O_RDONLY | O_CLOEXEC, 06777));
}
static long s_openat_creat_0644(void)
{
        return close_if_fd(syscall(SYS_openat, AT_FDCWD, suid_path("plain"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
}
static long s_mkdir_1777(void) { return syscall(SYS_mkdir, suid_path("sticky"), 01777); }

static const Probe suid_allowed[] = {
        { "chmod(01777)", s_chmod_0755, 0, false },
        { "fchmod(0755)", s_fchmod_0755, 0, false },
        { "fchmodat2(0700)", s_fchmodat2_0700, 0, false },
        { "open(O_RDONLY, mode 06777)", s_open_rdonly_junk_mode, 0, false },
        { "openat(O_CREAT, 0644)", s_openat_creat_0644, 0, false },
        { "mkdir(01777)", s_mkdir_1777, 0, false },
};

static bool file_has_suid_bits(void)
{
        struct stat st;
        cr_assert_eq(stat(suid_file, &st), 0);
        return (st.st_mode & (S_ISUID | S_ISGID)) != 0;
}

Test(seccomp_suid, setuid_and_setgid_modes_are_denied, .init = suid_setup, .fini = suid_teardown)
{
        expect_probes(&(AjSeccompSpec){}, suid_denied, ARRAY_SIZE(suid_denied));
        cr_assert(!file_has_suid_bits(), "a denied call still changed the file");
        /* Only the file the test made is left: nothing was created with the bits. */
        DIR *d = opendir(suid_dir);
        cr_assert_not_null(d);
        struct dirent *e;
        while ((e = readdir(d)))
                cr_expect(streq(e->d_name, ".") || streq(e->d_name, "..") || streq(e->d_name, "file"),
                          "'%s' was created", e->d_name);
        closedir(d);
}

Test(seccomp_suid, control_without_filter_sets_the_bits, .init = suid_setup, .fini = suid_teardown)
{
        if (geteuid() != 0)
                cr_skip_test("the control run needs root (setgid on a file of another group)");
        _cleanup_free_ char *report = run_probes(NULL, suid_denied, ARRAY_SIZE(suid_denied), EXPECT_NOT, true);
        cr_assert_str_empty(report, "without the filter:\n%s", report);
        cr_assert(file_has_suid_bits());
}

Test(seccomp_suid, ordinary_modes_still_work, .init = suid_setup, .fini = suid_teardown)
{
        expect_probes(&(AjSeccompSpec){}, suid_allowed, ARRAY_SIZE(suid_allowed));
}

Test(seccomp_suid, allow_list_does_not_lift_the_mode_rule, .init = suid_setup, .fini = suid_teardown)
{
        char *allow[] = { "chmod", "fchmod", "fchmodat", "fchmodat2", "open",    "openat",
                          "creat", "mkdir",  "mkdirat",  "mknod",     "mknodat", NULL };
        expect_probes(&(AjSeccompSpec){ .allow = allow }, suid_denied, ARRAY_SIZE(suid_denied) - 1);
}

Test(seccomp_suid, notify_reports_the_denial_with_a_hint, .init = suid_setup, .fini = suid_teardown)
{
        AjSeccompDenial d = { .nr = SYS_fchmodat, .arch = AUDIT_ARCH_X86_64, .args = { 0, 0, 04755 } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)", "setuid/setgid mode");
        d = (AjSeccompDenial){ .nr = SYS_openat, .arch = AUDIT_ARCH_X86_64, .args = { 0, 0, O_CREAT, 06000 } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)", "setuid/setgid mode");
        d = (AjSeccompDenial){ .nr = SYS_ptrace, .arch = AUDIT_ARCH_X86_64 };
        cr_expect_null(aj_seccomp_denial_hint(&d));
        d = (AjSeccompDenial){ .nr = SYS_mmap,
                               .arch = AUDIT_ARCH_X86_64,
                               .args = { 0, 4096, 3, MAP_PRIVATE | MAP_HUGETLB } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)", "huge pages (the host's pool)");
        d = (AjSeccompDenial){ .nr = SYS_shmget, .arch = AUDIT_ARCH_X86_64, .args = { 0, 4096, SHM_HUGETLB } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)", "huge pages (the host's pool)");
        d = (AjSeccompDenial){ .nr = SYS_unshare, .arch = AUDIT_ARCH_X86_64, .args = { CLONE_NEWUSER } };
        cr_expect_null(aj_seccomp_denial_hint(&d));
        d = (AjSeccompDenial){ .nr = SYS_prlimit64,
                               .arch = AUDIT_ARCH_X86_64,
                               .args = { 0, RLIMIT_CORE, 0x1000, 0x2000 } };
        cr_expect_str_eq(aj_seccomp_denial_hint(&d) ?: "(null)", "the core dump limit (limits.core is false)");
        d = (AjSeccompDenial){ .nr = SYS_setrlimit, .arch = AUDIT_ARCH_X86_64, .args = { RLIMIT_NOFILE, 0x1000 } };
        cr_expect_null(aj_seccomp_denial_hint(&d));
}

/* ---- user notification ---- */

static int send_fd(int sock, int fd)
{
        char dummy = 'x';
        struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
        char dummy;
        struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
                return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (!c || c->cmsg_type != SCM_RIGHTS)
                return -1;
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        return fd;
}

static int handle_one(int listener, AjSeccompDenial *d)
{
        struct pollfd pfd = { .fd = listener, .events = POLLIN };
        cr_assert_eq(poll(&pfd, 1, 10000), 1, "no notification within 10s");
        return aj_seccomp_notify_handle(listener, d);
}

Test(seccomp_notify, denials_are_reported_and_answered_eperm)
{
        AjBpfProgram prog = {};
        build_ok(&(AjSeccompSpec){ .notify = true }, &prog);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                close(sv[0]);
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(90);
                int listener = aj_seccomp_load(&prog, true);
                if (listener < 0 || send_fd(sv[1], listener) < 0)
                        _exit(91);
                close(listener);
                char go;
                if (read(sv[1], &go, 1) != 1)
                        _exit(92);
                errno = 0;
                long r = syscall(SYS_unshare, CLONE_NEWUSER);
                int e1 = r < 0 ? errno : 0;
                errno = 0;
                r = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
                int e2 = r < 0 ? errno : 0;
                /* Allowed syscalls never reach the supervisor. */
                if (syscall(SYS_getpid) != getpid())
                        _exit(93);
                _exit(e1 == EPERM && e2 == EPERM ? 0 : 100 + (e1 != EPERM) + 2 * (e2 != EPERM));
        }
        close(sv[1]);
        aj_bpf_program_free(&prog);

        int listener = recv_fd(sv[0]);
        cr_assert_geq(listener, 0, "child sent no listener");
        AjSeccompDenial d;
        memset(&d, 0xaa, sizeof(d));
        cr_assert_eq(aj_seccomp_notify_handle(listener, &d), 0, "nothing pending yet");
        cr_assert_eq(write(sv[0], "g", 1), 1);

        cr_assert_eq(handle_one(listener, &d), 1);
        cr_expect_str_eq(d.name, "unshare");
        cr_expect_eq(d.nr, SYS_unshare);
        cr_expect_eq(d.pid, pid);
        cr_expect_eq(d.arch, AUDIT_ARCH_X86_64);
        cr_expect_eq(d.args[0], (uint64_t)CLONE_NEWUSER);

        cr_assert_eq(handle_one(listener, &d), 1);
        cr_expect_str_eq(d.name, "ptrace");
        cr_expect_eq(d.args[0], (uint64_t)PTRACE_TRACEME);
        cr_expect_eq(d.pid, pid);

        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "status 0x%x", status);
        cr_assert_eq(WEXITSTATUS(status), 0, "child saw the wrong errno (code %d)", WEXITSTATUS(status));

        /* No task left behind the filter: the listener reports it instead of blocking. */
        cr_expect_eq(aj_seccomp_notify_handle(listener, &d), -ENOTCONN);
        close(listener);
        cr_expect_eq(aj_seccomp_notify_handle(listener, &d), -EBADF);
        close(sv[0]);
}

Test(seccomp_notify, target_killed_while_waiting_is_not_an_error)
{
        AjBpfProgram prog = {};
        build_ok(&(AjSeccompSpec){ .notify = true }, &prog);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                close(sv[0]);
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(90);
                int listener = aj_seccomp_load(&prog, true);
                if (listener < 0 || send_fd(sv[1], listener) < 0)
                        _exit(91);
                syscall(SYS_unshare, CLONE_NEWUSER);
                _exit(0);
        }
        close(sv[1]);
        aj_bpf_program_free(&prog);
        int listener = recv_fd(sv[0]);
        cr_assert_geq(listener, 0);
        struct pollfd pfd = { .fd = listener, .events = POLLIN };
        cr_assert_eq(poll(&pfd, 1, 10000), 1);
        /* The pending notification vanishes with its task. */
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        AjSeccompDenial d;
        int r = aj_seccomp_notify_handle(listener, &d);
        cr_expect(r == 0 || r == -ENOTCONN, "r = %d", r);
        close(listener);
        close(sv[0]);
}

/* ---- cache ---- */

static char cache_root[] = "/tmp/aj-test-seccomp.XXXXXX";
static char secret_dir[64]; /* stands for the runtime root */

static void cache_setup(void)
{
        cr_assert_not_null(mkdtemp(cache_root));
        snprintf(secret_dir, sizeof(secret_dir), "%s/rt", cache_root);
        cr_assert_eq(mkdir(secret_dir, 0711), 0);
}

static void cache_teardown(void) { aj_rm_rf(cache_root); }

/* The one *.bpf entry in dir (fails the test if there is not exactly one, or a temp file). */
static char *only_entry(const char *dir, size_t want)
{
        DIR *d = opendir(dir);
        cr_assert_not_null(d, "opendir %s: %m", dir);
        char *found = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                size_t len = strlen(de->d_name);
                cr_expect(len == 68 && streq(de->d_name + 64, ".bpf"), "stray file %s", de->d_name);
                n++;
                free(found);
                cr_assert_geq(asprintf(&found, "%s/%s", dir, de->d_name), 0);
        }
        closedir(d);
        cr_assert_eq(n, want, "%zu cache entries, want %zu", n, want);
        return found;
}

static ino_t inode_of(const char *path)
{
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        return st.st_ino;
}

static void build_cached_ok(const AjSeccompSpec *spec, const char *dir, const AjBpfProgram *want)
{
        AjBpfProgram p = {};
        _cleanup_(aj_error_clear) AjError error = {};
        int r = aj_seccomp_build_cached(spec, dir, secret_dir, &p, &error);
        cr_assert_eq(r, 0, "build_cached: %s", strerror(-r));
        cr_assert(program_eq(&p, want), "cached program differs from a fresh build");
        aj_bpf_program_free(&p);
}

/* The key covers the code that compiles (the build-id), not only the spec and the plan: an
 * upgraded binary with other ioctl lists or masks must not reuse an older build's program. */
Test(seccomp_cache, key_covers_build_id)
{
        static const uint8_t id_a[] = { 0x31, 0x0a, 0x05, 0xef, 0x1a, 0xdb, 0x39, 0x3d, 0x90, 0xff };
        static const uint8_t id_b[] = { 0x31, 0x0a, 0x05, 0xef, 0x1a, 0xdb, 0x39, 0x3d, 0x90, 0xfe };
        AjSeccompSpec spec = { .notify = true };
        AjSeccompKeyInputs in = { id_a, sizeof(id_a), "2.5.4", "6.1.0-test" };
        uint8_t k1[AJ_SHA256_SIZE], k2[AJ_SHA256_SIZE], k3[AJ_SHA256_SIZE], k4[AJ_SHA256_SIZE];

        cr_assert_eq(aj_seccomp_cache_key(&spec, &in, k1), 0);
        cr_assert_eq(aj_seccomp_cache_key(&spec, &in, k2), 0);
        cr_expect_eq(memcmp(k1, k2, sizeof(k1)), 0, "same inputs, same key");

        in.build_id = id_b;
        cr_assert_eq(aj_seccomp_cache_key(&spec, &in, k3), 0);
        cr_expect_neq(memcmp(k1, k3, sizeof(k1)), 0, "another build-id, another key");
        in.build_id_len = sizeof(id_b) - 1; /* a prefix of id_a */
        cr_assert_eq(aj_seccomp_cache_key(&spec, &in, k4), 0);
        cr_expect_neq(memcmp(k1, k4, sizeof(k1)), 0);
        cr_expect_neq(memcmp(k3, k4, sizeof(k1)), 0);

        in = (AjSeccompKeyInputs){ id_a, sizeof(id_a), "2.5.4", "6.1.0-other" };
        cr_assert_eq(aj_seccomp_cache_key(&spec, &in, k4), 0);
        cr_expect_neq(memcmp(k1, k4, sizeof(k1)), 0, "another kernel, another key");

        /* No build-id: no key (the cache is not used). */
        in.build_id_len = 0;
        cr_expect_eq(aj_seccomp_cache_key(&spec, &in, k4), -EINVAL);
        in = (AjSeccompKeyInputs){ NULL, 4, "2.5.4", "6.1.0-test" };
        cr_expect_eq(aj_seccomp_cache_key(&spec, &in, k4), -EINVAL);
}

/* The running program's build-id is found in memory (meson links with --build-id). */
Test(seccomp_cache, build_id_found)
{
        uint8_t a[AJ_BUILD_ID_MAX], b[AJ_BUILD_ID_MAX];
        int n = aj_build_id(a);

        cr_assert_geq(n, 16, "build-id length %d", n);
        cr_expect_eq(aj_build_id(b), n);
        cr_expect_eq(memcmp(a, b, (size_t)n), 0);
}

Test(seccomp_cache, hit_miss_and_corruption, .init = cache_setup, .fini = cache_teardown)
{
        _cleanup_free_ char *dir = NULL;
        cr_assert_geq(asprintf(&dir, "%s/cache/seccomp", cache_root), 0);
        AjSeccompSpec spec = { .notify = true };
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);

        build_cached_ok(&spec, dir, &fresh);
        struct stat st;
        cr_assert_eq(stat(dir, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0700, "cache dir mode %o", st.st_mode & 07777);
        _cleanup_free_ char *entry = only_entry(dir, 1);
        cr_assert_eq(stat(entry, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0600);
        cr_expect_eq((size_t)st.st_size, 80 + fresh.len * sizeof(struct sock_filter));
        ino_t ino = inode_of(entry);

        /* A hit reads the entry and does not rewrite it. */
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_eq(inode_of(entry), ino, "hit rewrote the entry");

        /* One flipped bit in the body: rebuilt and replaced. */
        int fd = open(entry, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        uint8_t byte;
        cr_assert_eq(pread(fd, &byte, 1, 80 + 12), 1);
        byte ^= 0x01;
        cr_assert_eq(pwrite(fd, &byte, 1, 80 + 12), 1);
        close(fd);
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_neq(inode_of(entry), ino, "corrupt entry was not replaced");
        ino = inode_of(entry);

        /* Truncated. */
        cr_assert_eq(truncate(entry, 50), 0);
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_neq(inode_of(entry), ino);

        /* Not a multiple of an instruction. */
        ino = inode_of(entry);
        fd = open(entry, O_WRONLY | O_APPEND | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, "xyz", 3), 3);
        close(fd);
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_neq(inode_of(entry), ino);
        free(only_entry(dir, 1));
        aj_bpf_program_free(&fresh);
}

Test(seccomp_cache, entries_are_bound_to_their_spec, .init = cache_setup, .fini = cache_teardown)
{
        char *deny[] = { "getcwd", NULL };
        AjSeccompSpec a = {}, b = { .deny = deny };
        AjBpfProgram pa = {}, pb = {};
        build_ok(&a, &pa);
        build_ok(&b, &pb);

        _cleanup_free_ char *dir_a = NULL, *dir_b = NULL;
        cr_assert_geq(asprintf(&dir_a, "%s/a", cache_root), 0);
        cr_assert_geq(asprintf(&dir_b, "%s/b", cache_root), 0);
        build_cached_ok(&a, dir_a, &pa);
        build_cached_ok(&b, dir_b, &pb);
        _cleanup_free_ char *entry_a = only_entry(dir_a, 1);
        _cleanup_free_ char *entry_b = only_entry(dir_b, 1);

        /* A's valid entry planted under B's name must not give B the program of A. */
        _cleanup_free_ char *data = NULL;
        size_t len;
        cr_assert_eq(aj_read_file(entry_a, 1 << 20, &data, &len), 0);
        cr_assert_eq(aj_write_file_atomic(entry_b, data, len, 0600), 0);
        build_cached_ok(&b, dir_b, &pb);

        /* Same dir, two specs: two entries. */
        build_cached_ok(&a, dir_b, &pa);
        free(only_entry(dir_b, 2));
        aj_bpf_program_free(&pa);
        aj_bpf_program_free(&pb);
}

static size_t count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d)
                return 0;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* The cache is not used at all: the fresh program, and nothing written. */
static void expect_bypassed(const char *dir, const char *why)
{
        AjSeccompSpec spec = {};
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_eq(count_entries(dir), 0, "%s: the cache was used", why);
        aj_bpf_program_free(&fresh);
}

Test(seccomp_cache, untrusted_dir_is_bypassed, .init = cache_setup, .fini = cache_teardown)
{
        _cleanup_free_ char *dir = NULL;
        cr_assert_geq(asprintf(&dir, "%s/shared", cache_root), 0);
        cr_assert_eq(mkdir(dir, 0700), 0);
        cr_assert_eq(chmod(dir, 0777), 0);
        expect_bypassed(dir, "world-writable cache dir");
        cr_assert_eq(chmod(dir, 0720), 0);
        expect_bypassed(dir, "group-writable cache dir");
        if (geteuid() == 0) {
                cr_assert_eq(chmod(dir, 0700), 0);
                cr_assert_eq(chown(dir, 65534, 65534), 0);
                expect_bypassed(dir, "cache dir of another user");
        }
        AjSeccompSpec spec = {};
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, NULL, &fresh);
        aj_bpf_program_free(&fresh);
}

Test(seccomp_cache, parents_must_be_trusted_too, .init = cache_setup, .fini = cache_teardown)
{
        /* A directory of ours under one anybody can write (not sticky): they could rename it
         * away and put their own in its place. */
        _cleanup_free_ char *open_parent = NULL, *dir = NULL;
        cr_assert_geq(asprintf(&open_parent, "%s/open", cache_root), 0);
        cr_assert_geq(asprintf(&dir, "%s/open/cache", cache_root), 0);
        cr_assert_eq(mkdir(open_parent, 0777), 0);
        cr_assert_eq(chmod(open_parent, 0777), 0);
        expect_bypassed(dir, "cache under a world-writable parent");
        /* Sticky (like /tmp): others cannot move our entries, so it is fine. */
        cr_assert_eq(chmod(open_parent, 01777), 0);
        AjSeccompSpec spec = {};
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, dir, &fresh);
        cr_expect_eq(count_entries(dir), 1, "a sticky parent is trusted");
        /* Through a symlink, the real path is what is checked. */
        _cleanup_free_ char *link = NULL;
        cr_assert_geq(asprintf(&link, "%s/link", cache_root), 0);
        cr_assert_eq(symlink(dir, link), 0);
        build_cached_ok(&spec, link, &fresh);
        cr_expect_eq(count_entries(dir), 1, "a hit through the symlink");
        cr_assert_eq(aj_rm_rf(dir), 0);
        cr_assert_eq(chmod(open_parent, 0777), 0);
        expect_bypassed(link, "symlink to a cache under a world-writable parent");
        aj_bpf_program_free(&fresh);
}

Test(seccomp_cache, the_secret, .init = cache_setup, .fini = cache_teardown)
{
        _cleanup_free_ char *dir = NULL, *secret = NULL;
        cr_assert_geq(asprintf(&dir, "%s/cache", cache_root), 0);
        cr_assert_geq(asprintf(&secret, "%s/seccomp-cache.key", secret_dir), 0);
        AjSeccompSpec spec = {};
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, dir, &fresh);
        struct stat st;
        cr_assert_eq(lstat(secret, &st), 0, "no secret was created");
        cr_expect(S_ISREG(st.st_mode));
        cr_expect_eq(st.st_mode & 07777, 0600);
        cr_expect_eq(st.st_size, 32);
        cr_expect_eq(st.st_uid, geteuid());
        _cleanup_free_ char *k1 = NULL;
        size_t len;
        cr_assert_eq(aj_read_file(secret, 64, &k1, &len), 0);

        /* A secret others can read is no secret: the cache is not used. */
        cr_assert_eq(aj_rm_rf(dir), 0);
        cr_assert_eq(chmod(secret, 0640), 0);
        expect_bypassed(dir, "secret readable by the group");
        /* Nor through a symlink (to a proper 0600 file). */
        _cleanup_free_ char *elsewhere = NULL;
        cr_assert_geq(asprintf(&elsewhere, "%s/elsewhere", cache_root), 0);
        cr_assert_eq(rename(secret, elsewhere), 0);
        cr_assert_eq(chmod(elsewhere, 0600), 0);
        cr_assert_eq(symlink(elsewhere, secret), 0);
        expect_bypassed(dir, "secret is a symlink");
        cr_assert_eq(unlink(secret), 0);
        /* Nor another user's. */
        if (geteuid() == 0) {
                cr_assert_eq(rename(elsewhere, secret), 0);
                cr_assert_eq(chown(secret, 65534, 65534), 0);
                expect_bypassed(dir, "secret of another user");
        }
        (void)unlink(secret);
        /* Nor of the wrong size. */
        cr_assert_eq(aj_write_file_atomic(secret, "short", 5, 0600), 0);
        expect_bypassed(dir, "secret of 5 bytes");
        cr_assert_eq(unlink(secret), 0);
        /* A secret dir others can write: bypassed, and no secret created there. */
        cr_assert_eq(chmod(secret_dir, 0777), 0);
        expect_bypassed(dir, "world-writable secret dir");
        cr_expect_neq(access(secret, F_OK), 0);
        cr_assert_eq(chmod(secret_dir, 0711), 0);
        /* Gone: a new one is made (and old entries fail their MAC). */
        build_cached_ok(&spec, dir, &fresh);
        _cleanup_free_ char *k2 = NULL;
        cr_assert_eq(aj_read_file(secret, 64, &k2, &len), 0);
        cr_expect_eq(len, 32);
        cr_expect(memcmp(k1, k2, 32) != 0, "the same secret twice");
        aj_bpf_program_free(&fresh);
}

/* What the attacker of issue 8 wrote: a one-instruction ALLOW program under a header that
 * looks right, with `mac` filled by `how`. */
static void forge_entry(const char *entry, const uint8_t mac[32])
{
        _cleanup_free_ char *data = NULL;
        size_t len;
        cr_assert_eq(aj_read_file(entry, 1 << 20, &data, &len), 0);
        cr_assert_gt(len, 80);
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        char forged[80 + sizeof(allow)];
        memcpy(forged, data, 48); /* magic, version, n_insns, key */
        uint32_t one = 1;
        memcpy(forged + 12, &one, 4);
        memcpy(forged + 48, mac, 32);
        memcpy(forged + 80, &allow, sizeof(allow));
        cr_assert_eq(aj_write_file_atomic(entry, forged, sizeof(forged), 0600), 0);
}

Test(seccomp_cache, forged_entries_are_rebuilt, .init = cache_setup, .fini = cache_teardown)
{
        _cleanup_free_ char *dir = NULL;
        cr_assert_geq(asprintf(&dir, "%s/cache/seccomp", cache_root), 0);
        AjSeccompSpec spec = { .notify = true };
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, dir, &fresh);
        _cleanup_free_ char *entry = only_entry(dir, 1);
        _cleanup_free_ char *good = NULL;
        size_t good_len;
        cr_assert_eq(aj_read_file(entry, 1 << 20, &good, &good_len), 0);

        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        uint8_t mac[32];
        /* 1. The plain digest of the body, as the v1 header had it. */
        aj_sha256(&allow, sizeof(allow), mac);
        forge_entry(entry, mac);
        build_cached_ok(&spec, dir, &fresh);
        /* 2. A MAC under some other key (the attacker's guess). */
        uint8_t other_key[32] = { 1, 2, 3 };
        aj_hmac_sha256(other_key, sizeof(other_key), &allow, sizeof(allow), mac);
        forge_entry(entry, mac);
        build_cached_ok(&spec, dir, &fresh);
        /* 3. Zeros. */
        memset(mac, 0, sizeof(mac));
        forge_entry(entry, mac);
        build_cached_ok(&spec, dir, &fresh);
        /* Each time the entry was rebuilt: it is the good one again. */
        _cleanup_free_ char *now = NULL;
        size_t now_len;
        cr_assert_eq(aj_read_file(entry, 1 << 20, &now, &now_len), 0);
        cr_expect(now_len == good_len && memcmp(now, good, good_len) == 0, "the entry was not rebuilt");
        /* An entry of another user (same bytes) is not read: rebuilt as ours. */
        if (geteuid() == 0) {
                cr_assert_eq(chown(entry, 65534, 65534), 0);
                build_cached_ok(&spec, dir, &fresh);
                struct stat est;
                cr_assert_eq(stat(entry, &est), 0);
                cr_expect_eq(est.st_uid, 0, "another user's entry was kept");
        }
        /* And a planted symlink in place of the entry is not followed. */
        cr_assert_eq(unlink(entry), 0);
        _cleanup_free_ char *target = NULL;
        cr_assert_geq(asprintf(&target, "%s/planted", cache_root), 0);
        cr_assert_eq(aj_write_file_atomic(target, good, good_len, 0600), 0);
        cr_assert_eq(symlink(target, entry), 0);
        build_cached_ok(&spec, dir, &fresh);
        struct stat st;
        cr_assert_eq(lstat(entry, &st), 0);
        cr_expect(S_ISREG(st.st_mode), "the symlink was left in place");
        aj_bpf_program_free(&fresh);
}

#define SEC UINT64_C(1000000000)

/* ---- denial log: every distinct key named, repeats limited and counted per key ---- */

static AjSeccompDenial denial(int nr, uint64_t a0, uint64_t a1)
{
        AjSeccompDenial d = { .pid = 7, .nr = nr, .arch = AUDIT_ARCH_X86_64, .args = { a0, a1 } };
        snprintf(d.name, sizeof(d.name), "%s", aj_seccomp_syscall_name(nr) ?: "syscall_?");
        return d;
}

static bool note(AjDenialLog *log, int nr, uint64_t a0, uint64_t a1, uint64_t t, const AjDenialKey **k)
{
        AjSeccompDenial d = denial(nr, a0, a1);
        return aj_denial_log_note(log, &d, t, k);
}

static AjDenialLog *new_log(double burst, double per_sec)
{
        static AjDenialLog log;
        aj_denial_log_done(&log);
        aj_denial_log_init(&log, burst, per_sec);
        return &log;
}

static const AjDenialKey *key_of(const AjDenialLog *log, const char *label)
{
        for (size_t i = 0; i < log->n_keys; i++)
                if (streq(log->keys[i].label, label))
                        return &log->keys[i];
        return streq(label, "other") ? &log->overflow : NULL;
}

Test(seccomp_denials, every_distinct_syscall_is_reported_once_past_a_flood)
{
        AjDenialLog *log = new_log(20, 5);
        uint64_t t = 10 * SEC;
        /* A flood of one syscall exhausts the repeat budget ... */
        size_t reported = 0;
        for (int i = 0; i < 1000; i++)
                reported += note(log, SYS_keyctl, 0, 0, t, NULL);
        cr_expect_eq(reported, 1 + 20, "the first keyctl, then the burst of repeats");
        /* ... and 76 different syscalls back to back are still each named. */
        size_t distinct = 0;
        for (int nr = 100; nr < 460 && distinct < 76; nr++) {
                if (nr == SYS_keyctl || !aj_seccomp_syscall_name(nr))
                        continue;
                AjSeccompDenial d = denial(nr, 0, 0);
                const AjDenialKey *k = NULL;
                cr_expect(aj_denial_log_note(log, &d, t, &k), "%s was not reported", d.name);
                /* personality's key carries the persona: "personality(0x0)". */
                cr_expect(strncmp(k->label, d.name, strlen(d.name)) == 0, "%s under '%s'", d.name, k->label);
                distinct++;
        }
        cr_assert_eq(distinct, 76);
        /* Their repeats are limited, counted per name. */
        cr_expect_not(note(log, SYS_ptrace, 0, 0, t, NULL));
        cr_expect_not(note(log, SYS_ptrace, 0, 0, t, NULL));
        cr_expect_eq(key_of(log, "keyctl")->count, 1000);
        cr_expect_eq(key_of(log, "keyctl")->suppressed, 1000 - 21);
        cr_expect_eq(key_of(log, "ptrace")->count, 3);
        cr_expect_eq(key_of(log, "ptrace")->suppressed, 2);
        cr_expect_eq(log->total, 1000 + 76 + 2);
        cr_expect_eq(log->suppressed, 1000 - 21 + 2);
        /* The bucket refills for repeats as before. */
        cr_expect(note(log, SYS_ptrace, 0, 0, t + SEC, NULL));
}

Test(seccomp_denials, socket_families_and_ioctl_requests_are_keys)
{
        AjDenialLog *log = new_log(0, 0); /* no repeats reported at all */
        uint64_t t = SEC;
        cr_expect(note(log, SYS_socket, AF_PACKET, 3, t, NULL));
        cr_expect(note(log, SYS_socket, AF_NETLINK, 3, t, NULL));
        /* The kernel looks at the low 32 bits only, and so do the keys. */
        cr_expect_not(note(log, SYS_socket, AF_PACKET | 1ULL << 40, 1, t, NULL));
        cr_expect(note(log, SYS_ioctl, 0, TIOCSTI, t, NULL));
        cr_expect(note(log, SYS_ioctl, 1, TIOCLINUX, t, NULL));
        cr_expect_not(note(log, SYS_ioctl, 2, TIOCSTI, t, NULL));
        /* Other syscalls' arguments do not split them. */
        cr_expect(note(log, SYS_ptrace, 1, 0, t, NULL));
        cr_expect_not(note(log, SYS_ptrace, 2, 9, t, NULL));
        cr_expect_eq(log->n_keys, 5);
        cr_expect_eq(key_of(log, "socket(17)")->count, 2);
        cr_expect_eq(key_of(log, "socket(17)")->suppressed, 1);
        cr_expect_not_null(key_of(log, "socket(16)"));
        char tiocsti[32];
        snprintf(tiocsti, sizeof(tiocsti), "ioctl(0x%x)", (unsigned)TIOCSTI);
        cr_expect_eq(key_of(log, tiocsti)->count, 2);
        cr_expect_eq(key_of(log, "ptrace")->suppressed, 1);
}

Test(seccomp_denials, the_table_is_bounded)
{
        /* 2^32 ioctl requests cannot grow the supervisor: past their share they are one key. */
        AjDenialLog *log = new_log(3, 0);
        uint64_t t = SEC;
        size_t reported = 0;
        for (uint32_t req = 0; req < AJ_DENIAL_ARG_KEYS_MAX + 1000; req++)
                reported += note(log, SYS_ioctl, 0, req, t, NULL);
        cr_expect_eq(log->n_keys, AJ_DENIAL_ARG_KEYS_MAX);
        cr_expect_eq(reported, AJ_DENIAL_ARG_KEYS_MAX + 3, "each key in the table, then the repeat burst");
        cr_expect_eq(key_of(log, "other")->count, 1000);
        cr_expect_eq(key_of(log, "other")->suppressed, 1000 - 3);
        cr_expect_eq(log->total, AJ_DENIAL_ARG_KEYS_MAX + 1000);
        /* A syscall first denied after that flood is still named, under its own key. */
        const AjDenialKey *k = NULL;
        cr_expect(note(log, SYS_ptrace, 0, 0, t, &k), "ptrace is reported although the repeat budget is spent");
        cr_expect_str_eq(k->label, "ptrace");
        cr_expect_eq(key_of(log, "other")->count, 1000);
        /* Every native number without an argument key has room; the table never holds more
         * than both bounds. */
        for (int nr = 0; nr < AJ_DENIAL_NR_SLOTS; nr++)
                if (nr != SYS_ioctl && nr != SYS_socket && nr != SYS_socketpair && nr != SYS_personality)
                        note(log, nr, 0, 0, t, NULL);
        cr_expect_leq(log->n_keys, AJ_DENIAL_KEYS_MAX);
        cr_expect_eq(key_of(log, "other")->count, 1000, "no plain syscall went to 'other'");
}

/* Numbers no native syscall has (2^32 of them, like ioctl requests) cannot crowd out the
 * real syscalls either: an agent denied 600 made-up numbers and then ptrace and kexec_load
 * once each must see both named. */
Test(seccomp_denials, made_up_numbers_do_not_hide_real_syscalls)
{
        AjDenialLog *log = new_log(20, 5);
        uint64_t t = SEC;
        for (int i = 0; i < 600; i++) {
                AjSeccompDenial d = denial(2000 + i, 0, 0);
                snprintf(d.name, sizeof(d.name), "syscall_%d", 2000 + i);
                aj_denial_log_note(log, &d, t, NULL);
        }
        cr_expect_eq(key_of(log, "other")->count, 600 - AJ_DENIAL_ARG_KEYS_MAX);
        const AjDenialKey *k = NULL;
        cr_expect(note(log, SYS_ptrace, 2, 1, t, &k), "ptrace named");
        cr_expect_str_eq(k->label, "ptrace");
        cr_expect(note(log, SYS_kexec_load, 0, 0, t, &k), "kexec_load named");
        cr_expect_str_eq(k->label, "kexec_load");
        cr_expect_eq(log->total, 602);
}

/* A run with no denial pays nothing for the table (the supervisor forks a watchdog that
 * lives as long as the run: every page it touched would be copied again on write), and the
 * table never grows past its bound, whatever an agent sends. */
Test(seccomp_denials, the_key_table_grows_on_demand_within_its_bound)
{
        AjDenialLog *log = new_log(20, 5);
        cr_expect_null(log->keys, "no key table before the first denial");
        cr_expect_eq(log->cap_keys, 0);
        uint64_t t = SEC;
        for (int nr = 0; nr < AJ_DENIAL_NR_SLOTS; nr++)
                (void)note(log, nr, 0, 0, t, NULL);
        size_t before = log->n_arg_keys; /* socket, ioctl... with an argument of 0 */
        for (uint32_t i = 0; i < 2 * AJ_DENIAL_ARG_KEYS_MAX; i++)
                (void)note(log, SYS_ioctl, 3, 0x10000 + i, t, NULL);
        cr_expect_leq(log->cap_keys, AJ_DENIAL_KEYS_MAX);
        cr_expect_leq(log->n_keys, log->cap_keys);
        cr_expect_eq(log->n_arg_keys, AJ_DENIAL_ARG_KEYS_MAX);
        cr_expect_eq(key_of(log, "other")->count, 2 * AJ_DENIAL_ARG_KEYS_MAX - (AJ_DENIAL_ARG_KEYS_MAX - before),
                     "the ioctls past the bound are 'other'");
        aj_denial_log_done(log);
        cr_expect_null(log->keys);
}

/* ---- HMAC-SHA256 (src/util/sha256.c), which authenticates the cache: RFC 4231 ---- */

static size_t unhex(const char *hex, uint8_t *out, size_t max)
{
        size_t n = strlen(hex) / 2;
        cr_assert_leq(n, max);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(sscanf(hex + 2 * i, "%2hhx", &out[i]), 1);
        return n;
}

Test(hmac_sha256, rfc4231_vectors)
{
        static const struct {
                const char *key, *data, *mac; /* hex */
        } v[] = {
                /* 1 */
                { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
                  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
                /* 2: a key shorter than the block */
                { "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
                  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
                /* 3 */
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                  "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
                  "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
                /* 4 */
                { "0102030405060708090a0b0c0d0e0f10111213141516171819",
                  "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
                  "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
                /* 6: a key longer than the block is hashed first */
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                  "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
                  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
                /* 7 */
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                  "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
                  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
                uint8_t key[200], data[200], want[32], got[32];
                size_t kl = unhex(v[i].key, key, sizeof(key));
                size_t dl = unhex(v[i].data, data, sizeof(data));
                unhex(v[i].mac, want, sizeof(want));
                aj_hmac_sha256(key, kl, data, dl, got);
                cr_expect(memcmp(got, want, 32) == 0, "vector %zu", i);
                cr_expect(aj_digest_eq(got, want), "vector %zu", i);
                /* In pieces, byte by byte: the same MAC. */
                AjHmacSha256 h;
                aj_hmac_sha256_init(&h, key, kl);
                for (size_t j = 0; j < dl; j++)
                        aj_hmac_sha256_update(&h, data + j, 1);
                aj_hmac_sha256_final(&h, got);
                cr_expect(memcmp(got, want, 32) == 0, "vector %zu in pieces", i);
                got[31] ^= 1;
                cr_expect_not(aj_digest_eq(got, want), "vector %zu, one bit off", i);
        }
}
