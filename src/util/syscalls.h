/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one place agentjail calls syscall(2): typed wrappers for the syscalls the C library we build
 * against does not wrap (or wraps only in versions newer than Debian 12's). Each one behaves like
 * a libc call: it returns what the kernel returns, or -1 with errno set; callers convert to
 * -errno as usual. Wrappers are named sys_<syscall>, so a grep for the syscall finds its callers. */

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mount.h> /* struct mount_attr */
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/openat2.h> /* struct open_how, RESOLVE_* */
#include <linux/sched.h>   /* struct clone_args, CLONE_PIDFD, CLONE_INTO_CGROUP */

/* Numbers are the same on every architecture that has the generic syscall table (x86-64,
 * aarch64, ...); older headers may lack them. */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif

/* ---- processes ---- */

static inline int sys_pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

static inline int sys_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags);
}

/* The I/O class of a process (linux/ioprio.h, which Debian 12's headers lack): idle runs
 * its I/O only when no other process wants the disk. */
#define AJ_IOPRIO_WHO_PROCESS 1
#define AJ_IOPRIO_CLASS_IDLE 3
#define AJ_IOPRIO_VALUE(class, data) (((class) << 13) | (data))

static inline int sys_ioprio_set(int which, int who, int ioprio)
{
        return (int)syscall(SYS_ioprio_set, which, who, ioprio);
}

/* Fork-like (no CLONE_VM): returns 0 in the child, which goes on from the call site. */
static inline pid_t sys_clone3(struct clone_args *args) { return (pid_t)syscall(SYS_clone3, args, sizeof(*args)); }

/* ---- fds and paths ---- */

static inline int sys_close_range(unsigned first, unsigned last, unsigned flags)
{
        return (int)syscall(SYS_close_range, first, last, flags);
}

static inline int sys_openat2(int dfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
        struct open_how how = { .flags = (uint64_t)flags, .mode = mode, .resolve = resolve };
        return (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}

/* ---- the new mount API ---- */

static inline int sys_open_tree(int dfd, const char *path, unsigned flags)
{
        return (int)syscall(SYS_open_tree, dfd, path, flags);
}

static inline int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
        return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

static inline int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct mount_attr *attr)
{
        return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}

static inline int sys_fsopen(const char *fstype, unsigned flags) { return (int)syscall(SYS_fsopen, fstype, flags); }

static inline int sys_fsconfig(int fd, unsigned cmd, const char *key, const char *value, int aux)
{
        return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

static inline int sys_fsmount(int fd, unsigned flags, unsigned attr)
{
        return (int)syscall(SYS_fsmount, fd, flags, attr);
}

static inline int sys_pivot_root(const char *new_root, const char *put_old)
{
        return (int)syscall(SYS_pivot_root, new_root, put_old);
}

/* ---- seccomp ---- */

/* seccomp(2) itself: libseccomp builds filters, but loading a raw program with a listener and
 * asking the kernel for its notification sizes go straight to the kernel. */
static inline long sys_seccomp(unsigned op, unsigned flags, void *args)
{
        return syscall(SYS_seccomp, op, flags, args);
}

/* ---- landlock (only asked for its ABI: `agentjail doctor`) ---- */

static inline int sys_landlock_create_ruleset(const void *attr, size_t size, unsigned flags)
{
        return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}
