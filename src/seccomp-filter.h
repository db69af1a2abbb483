/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's seccomp filter: built with libseccomp on the supervisor side
 * (pure, cacheable), loaded in the child as a raw BPF program (no allocation),
 * and denials reported through seccomp user notification.
 */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
        const char *base;     /* "default" */
        char *const *deny;    /* extra syscall names to deny (NULL-terminated, may be NULL) */
        char *const *allow;   /* syscall names allowed back (NULL-terminated, may be NULL) */
        bool notify;          /* denials go to the supervisor (SCMP_ACT_NOTIFY) instead of a bare EPERM */
        bool allow_netlink;   /* socket(AF_NETLINK, ...) permitted */
} AjSeccompSpec;

typedef struct {
        struct sock_filter *filter;
        unsigned short len;
} AjBpfProgram;

/* Build the filter for the native architecture. On a bad spec (unknown syscall name)
 * returns -EINVAL with *ret_error = "seccomp.deny: unknown syscall 'foo'". */
int aj_seccomp_build(const AjSeccompSpec *spec, AjBpfProgram *ret, char **ret_error);

/* Same, through a cache of compiled programs in cache_dir (keyed by a digest of the
 * spec, the libseccomp version and the kernel release). cache_dir may be NULL (no cache).
 * A corrupt or unreadable cache entry is rebuilt, never trusted. */
int aj_seccomp_build_cached(const AjSeccompSpec *spec, const char *cache_dir, AjBpfProgram *ret,
                            char **ret_error);

void aj_bpf_program_free(AjBpfProgram *p);

/* Child side, after no_new_privs: install the program with a raw seccomp(2) call.
 * With `listener`, returns the user-notification fd (>= 0); otherwise 0. -errno on failure.
 * Does not allocate. */
int aj_seccomp_load(const AjBpfProgram *prog, bool listener);

/* Supervisor side: one pending notification on `listener_fd` answered with EPERM. */
typedef struct {
        pid_t pid;        /* in the supervisor's pid namespace */
        int nr;           /* syscall number */
        uint32_t arch;    /* AUDIT_ARCH_* */
        uint64_t args[6];
        char name[48];    /* "ptrace", or "syscall_NNN" when unknown */
} AjSeccompDenial;

/* Reads one notification and answers it with EPERM. Returns 1 and fills *ret when one was
 * handled, 0 if none was pending (spurious wakeup or the target died), -errno on error
 * (-ENOENT/-EBADF style errors mean the listener is gone). */
int aj_seccomp_notify_handle(int listener_fd, AjSeccompDenial *ret);

/* Token bucket for reporting: at most `burst` reports, refilled at `per_sec`.
 * Returns true when this denial should be recorded; counts the suppressed ones. */
typedef struct {
        double tokens;
        double burst;
        double per_sec;
        uint64_t last_ns;
        uint64_t suppressed;
} AjRateLimit;

void aj_ratelimit_init(AjRateLimit *rl, double burst, double per_sec);
bool aj_ratelimit_allow(AjRateLimit *rl, uint64_t now_ns);
/* The same bucket as a budget of work (tokens: any unit, such as ns of CPU): takes
 * `amount`, which may leave it in debt; true while it is not. _debt_ns(): how long
 * until the refill pays the debt (0 when there is none). */
bool aj_ratelimit_charge(AjRateLimit *rl, uint64_t now_ns, double amount);
uint64_t aj_ratelimit_debt_ns(const AjRateLimit *rl);

/* Name of syscall `nr` on the native arch, or NULL. */
const char *aj_seccomp_syscall_name(int nr);
