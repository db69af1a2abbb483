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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "seccomp-filter.h"
#include "util/fd.h"
#include "util/macros.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void build_ok(const AjSeccompSpec *spec, AjBpfProgram *ret)
{
        _cleanup_free_ char *error = NULL;
        int r = aj_seccomp_build(spec, ret, &error);
        cr_assert_eq(r, 0, "aj_seccomp_build: %s (%s)", strerror(-r), error ? error : "");
        cr_assert_not_null(ret->filter);
        cr_assert_gt(ret->len, 0);
}

static bool program_eq(const AjBpfProgram *a, const AjBpfProgram *b)
{
        return a->len == b->len &&
               memcmp(a->filter, b->filter, a->len * sizeof(struct sock_filter)) == 0;
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
                { .notify = true },
                { .allow_netlink = true },
                { .deny = deny_getcwd },
                { .allow = allow_ptrace },
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
                _cleanup_free_ char *error = NULL;
                int r = aj_seccomp_build(&spec, &p, &error);
                cr_expect_eq(r, -EINVAL, "case %zu: %d", i, r);
                cr_expect_str_eq(error ? error : "(null)", bad_specs[i].message, "case %zu", i);
                cr_expect(p.filter == (struct sock_filter *)0x1 && p.len == 7,
                          "case %zu: ret written on failure", i);

                _cleanup_free_ char *error2 = NULL;
                r = aj_seccomp_build_cached(&spec, NULL, &p, &error2);
                cr_expect_eq(r, -EINVAL);
                cr_expect_str_eq(error2 ? error2 : "(null)", bad_specs[i].message);
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
                { SYS_read, "read" },   { SYS_ptrace, "ptrace" }, { SYS_unshare, "unshare" },
                { SYS_clone3, "clone3" }, { 452, "fchmodat2" }, { 462, "mseal" },
                { -1, NULL },           { 400, NULL },            { 1000, NULL },
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
static long p_process_vm_writev(void)
{
        return syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0);
}
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
static long p_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL); }
static long p_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long p_finit_module(void) { return syscall(SYS_finit_module, -1, "", 0); }
static long p_delete_module(void) { return syscall(SYS_delete_module, "agentjail-none", O_NONBLOCK); }
static long p_open_by_handle_at(void) { return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long p_name_to_handle_at(void) { return syscall(SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0); }
static long p_tiocsti(void) { return syscall(SYS_ioctl, -1, (unsigned long)TIOCSTI, NULL); }
static long p_tiocsti_high(void) { return syscall(SYS_ioctl, -1, TIOCSTI | (1UL << 32), NULL); }
static long p_tioclinux(void) { return syscall(SYS_ioctl, -1, (unsigned long)TIOCLINUX, NULL); }
/* Raw syscall(2), so the family reaches the filter with whatever upper bits we give it. */
static long raw_socket(unsigned long family, int type)
{
        return close_if_fd(syscall(SYS_socket, family, type, 0));
}
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
        { "prlimit64(self)", a_prlimit_self, 0, false },
        { "personality(query)", a_personality_query, 0, false },
        { "setpgid", a_setpgid, 0, false },
        { "fchmodat2", a_fchmodat2, ENOENT, false },
        { "sh, coreutils, git, python3, node", a_exec_tools, 0, false },
};

/* Runs each probe in its own forked child (a probe may change the child, e.g. unshare), with
 * the program loaded when `prog` is set; returns the mismatches, one line each ("" if none). */
static char *run_probes(const AjBpfProgram *prog, const Probe *probes, size_t n, Expect mode,
                        bool control_only)
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
                        if (prog && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                                     aj_seccomp_load(prog, false) != 0))
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
                        fprintf(f, "%s: errno %d (%s), want %s%d\n", probes[i].what, got,
                                strerrorname_np(got) ?: "?", mode == EXPECT_ERRNO ? "" : "not ",
                                probes[i].err);
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
        expect_probes(&(AjSeccompSpec){ .base = "default" }, denied_by_default,
                      ARRAY_SIZE(denied_by_default));
}

Test(seccomp_live, control_without_filter_is_not_eperm)
{
        if (geteuid() != 0)
                cr_skip_test("the control run needs root, where the kernel itself permits these");
        _cleanup_free_ char *report =
                run_probes(NULL, denied_by_default, ARRAY_SIZE(denied_by_default), EXPECT_NOT, true);
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

        char *allow[] = { "ptrace", "clone3", NULL };
        static const Probe allowed_back[] = {
                { "ptrace", p_ptrace, EPERM, false },
                { "clone3", p_clone3, ENOSYS, false },
                { "unshare", p_unshare, EPERM, false },
        };
        AjBpfProgram prog = {};
        build_ok(&(AjSeccompSpec){ .allow = allow }, &prog);
        _cleanup_free_ char *report = run_probes(&prog, allowed_back, 2, EXPECT_NOT, false);
        cr_assert_str_empty(report, "allowed back:\n%s", report);
        _cleanup_free_ char *report2 = run_probes(&prog, allowed_back + 2, 1, EXPECT_ERRNO, false);
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

/* ---- user notification ---- */

static int send_fd(int sock, int fd)
{
        char dummy = 'x';
        struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                              .msg_controllen = sizeof(u.buf) };
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
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                              .msg_controllen = sizeof(u.buf) };
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

static void cache_setup(void) { cr_assert_not_null(mkdtemp(cache_root)); }

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
        _cleanup_free_ char *error = NULL;
        int r = aj_seccomp_build_cached(spec, dir, &p, &error);
        cr_assert_eq(r, 0, "build_cached: %s", strerror(-r));
        cr_assert(program_eq(&p, want), "cached program differs from a fresh build");
        aj_bpf_program_free(&p);
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

Test(seccomp_cache, untrusted_dir_is_bypassed, .init = cache_setup, .fini = cache_teardown)
{
        _cleanup_free_ char *dir = NULL;
        cr_assert_geq(asprintf(&dir, "%s/shared", cache_root), 0);
        cr_assert_eq(mkdir(dir, 0700), 0);
        cr_assert_eq(chmod(dir, 0777), 0);
        AjSeccompSpec spec = {};
        AjBpfProgram fresh = {};
        build_ok(&spec, &fresh);
        build_cached_ok(&spec, dir, &fresh);
        free(only_entry(dir, 0));
        build_cached_ok(&spec, NULL, &fresh);
        aj_bpf_program_free(&fresh);
}

/* ---- rate limit ---- */

#define SEC UINT64_C(1000000000)

Test(seccomp_ratelimit, burst_and_refill)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 3, 1);
        uint64_t t = 1000 * SEC;
        static const struct {
                uint64_t at_ms; /* after the start */
                bool allowed;
                uint64_t suppressed;
        } steps[] = {
                { 0, true, 0 },     { 0, true, 0 },     { 0, true, 0 },  { 0, false, 1 },
                { 500, false, 2 },  { 1000, true, 2 },  { 1000, false, 3 },
                { 1999, false, 4 }, { 2000, true, 4 },
                /* A long pause refills to the burst, not beyond. */
                { 60000, true, 4 }, { 60000, true, 4 }, { 60000, true, 4 }, { 60000, false, 5 },
                /* A timestamp from the past refills nothing. */
                { 30000, false, 6 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
                bool a = aj_ratelimit_allow(&rl, t + steps[i].at_ms * (SEC / 1000));
                cr_expect_eq(a, steps[i].allowed, "step %zu", i);
                cr_expect_eq(rl.suppressed, steps[i].suppressed, "step %zu", i);
        }
}

Test(seccomp_ratelimit, fractional_rate)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 1, 0.5);
        uint64_t t = 5 * SEC;
        cr_expect(aj_ratelimit_allow(&rl, t));
        cr_expect_not(aj_ratelimit_allow(&rl, t + 1 * SEC));
        cr_expect(aj_ratelimit_allow(&rl, t + 2 * SEC));
        cr_expect_eq(rl.suppressed, 1);

        AjRateLimit none;
        aj_ratelimit_init(&none, 0, 100);
        cr_expect_not(aj_ratelimit_allow(&none, t));
        cr_expect_not(aj_ratelimit_allow(&none, t + 100 * SEC));
        cr_expect_eq(none.suppressed, 2);
}

/* The bucket as a work budget (the supervisor's ns of CPU for a jail): charges may leave it in
 * debt; the debt says how long until the refill pays it. */
Test(seccomp_ratelimit, work_budget_debt)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 100 * 1000000.0, 1e9 / 10); /* 0.1 CPU, 100 ms of burst */
        uint64_t t = 7 * SEC;
        cr_expect(aj_ratelimit_charge(&rl, t, 60 * 1000000.0));
        cr_expect_eq(aj_ratelimit_debt_ns(&rl), 0);
        cr_expect_not(aj_ratelimit_charge(&rl, t, 90 * 1000000.0), "150 ms of a 100 ms burst: in debt");
        /* 50 ms of debt at 0.1 CPU: 500 ms to pay it. */
        uint64_t debt = aj_ratelimit_debt_ns(&rl);
        cr_expect(debt >= 500 * 1000000ull && debt <= 500 * 1000000ull + 1000, "%llu", (unsigned long long)debt);
        cr_expect_not(aj_ratelimit_charge(&rl, t + 400 * 1000000ull, 0), "still in debt after 400 ms");
        cr_expect(aj_ratelimit_charge(&rl, t + debt, 0), "paid after the debt's time");
        cr_expect(aj_ratelimit_charge(&rl, t + 100 * SEC, 100 * 1000000.0), "a pause refills to the burst");
        cr_expect_not(aj_ratelimit_charge(&rl, t + 100 * SEC, 1), "and not beyond");
        cr_expect_eq(rl.suppressed, 0, "charges are not suppressions");

        AjRateLimit none;
        aj_ratelimit_init(&none, 0, 0);
        cr_expect_not(aj_ratelimit_charge(&none, t, 1));
        cr_expect_eq(aj_ratelimit_debt_ns(&none), 0, "no refill: no time pays it");
}
