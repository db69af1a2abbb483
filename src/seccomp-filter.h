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

#include "util/error.h"
#include "util/ratelimit.h"

typedef struct {
        const char *base;   /* "default" */
        char *const *deny;  /* extra syscall names to deny (NULL-terminated, may be NULL) */
        char *const *allow; /* syscall names allowed back (NULL-terminated, may be NULL) */
        bool notify;        /* denials go to the supervisor (SCMP_ACT_NOTIFY) instead of a bare EPERM */
        bool allow_netlink; /* socket(AF_NETLINK, ...) permitted */
        bool fixed_core;    /* RLIMIT_CORE stays as the jail's init set it (a set: 0, no effect) */
        /* The host's kernel has no AF_INET6 (aj_seccomp_host_inet6 false): socket(AF_INET6, ...)
         * is EAFNOSUPPORT here, before the kernel's modprobe for it. */
        bool no_inet6;
} AjSeccompSpec;

/* Whether the host's kernel has AF_INET6 registered: its TCPv6 is in `protocols`
 * (/proc/net/protocols, a list global to the kernel). Built but booted with ipv6.disable=1, or
 * a module not loaded, it has not; a file that cannot be read counts as not (fail closed). */
bool aj_seccomp_host_inet6(const char *protocols);

typedef struct {
        struct sock_filter *filter;
        unsigned short len;
} AjBpfProgram;

/* Build the filter for the native architecture. On a bad spec (unknown syscall name)
 * returns -EINVAL with ret_error saying "seccomp.deny: unknown syscall 'foo'". */
int aj_seccomp_build(const AjSeccompSpec *spec, AjBpfProgram *ret, AjError *ret_error);

/* What a cache key covers besides the spec and the plan it yields. */
typedef struct {
        const uint8_t *build_id; /* the agentjail binary's GNU build-id: the code that compiles
                                  * (its ioctl lists, masks, personas are in no plan) */
        size_t build_id_len;     /* > 0 */
        const char *libseccomp;  /* "2.5.4" */
        const char *kernel;      /* uname release */
} AjSeccompKeyInputs;

/* The cache key (pure: no syscall, same inputs, same key). -EINVAL on a bad spec or inputs. */
int aj_seccomp_cache_key(const AjSeccompSpec *spec, const AjSeccompKeyInputs *in, uint8_t ret_key[32]);

/* Same, through a cache of compiled programs in cache_dir (keyed by aj_seccomp_cache_key:
 * the spec, this binary's build-id, the libseccomp version and the kernel release; a binary
 * without a build-id does not cache), each entry authenticated with HMAC-SHA256
 * under a secret kept in secret_dir (created there on first use). Both directories must be
 * ours and not writable by others, as must every directory above them; otherwise, and for
 * any entry that does not check out, the program is compiled and nothing cached is trusted.
 * Either directory may be NULL (no cache). */
int aj_seccomp_build_cached(const AjSeccompSpec *spec, const char *cache_dir, const char *secret_dir, AjBpfProgram *ret,
                            AjError *ret_error);

void aj_bpf_program_free(AjBpfProgram *p);

/* Child side, after no_new_privs: install the program with a raw seccomp(2) call.
 * With `listener`, returns the user-notification fd (>= 0); otherwise 0. -errno on failure.
 * Does not allocate. */
int aj_seccomp_load(const AjBpfProgram *prog, bool listener);

/* Supervisor side: one pending notification on `listener_fd` answered with EPERM. */
typedef struct {
        pid_t pid;     /* in the supervisor's pid namespace */
        int nr;        /* syscall number */
        uint32_t arch; /* AUDIT_ARCH_* */
        uint64_t args[6];
        char name[48]; /* "ptrace", or "syscall_NNN" when unknown */
} AjSeccompDenial;

/* Reads one notification and answers it with EPERM. Returns 1 and fills *ret when one was
 * handled, 0 if none was pending (spurious wakeup or the target died), -errno on error
 * (-ENOENT/-EBADF style errors mean the listener is gone). */
int aj_seccomp_notify_handle(int listener_fd, AjSeccompDenial *ret);

/* Why a denial of a conditionally allowed syscall happened, when the arguments say so
 * ("setuid/setgid mode", "namespace flags"); NULL otherwise. Pure. */
const char *aj_seccomp_denial_hint(const AjSeccompDenial *d);


/*
 * What the supervisor records of denials: every distinct key (a syscall, or a syscall with the
 * argument its rule looks at: socket's family, ioctl's request, personality's persona) is
 * reported the first time it is seen; repeats of a known key share one token bucket; counts
 * are kept per key. Bounded in two parts, so that one cannot crowd out the other: every native
 * syscall number below AJ_DENIAL_NR_SLOTS always has room for a key of its own (at most that
 * many exist), and keys with an argument (an agent picks ioctl requests from 2^32), or with a
 * number past the slots, share AJ_DENIAL_ARG_KEYS_MAX; past those they are counted together
 * under `overflow` and reported only as repeats are. The key table grows as keys come (most runs
 * have none), so that the log costs nothing until a denial arrives; a key that finds no memory
 * is counted under `overflow`. Pure.
 */
#define AJ_DENIAL_NR_SLOTS 1024
#define AJ_DENIAL_ARG_KEYS_MAX 512
#define AJ_DENIAL_KEYS_MAX (AJ_DENIAL_NR_SLOTS + AJ_DENIAL_ARG_KEYS_MAX)
#define AJ_DENIAL_LABEL_MAX 48

typedef struct {
        int nr;
        uint32_t arch;
        uint32_t sub; /* the distinguishing argument's low 32 bits, when has_sub */
        bool has_sub;
        uint64_t count;                  /* denials of this key */
        uint64_t suppressed;             /* of which not reported */
        char label[AJ_DENIAL_LABEL_MAX]; /* "ptrace", "socket(16)", "ioctl(0x5412)" */
} AjDenialKey;

typedef struct {
        AjDenialKey *keys; /* in order of first denial; n_keys of cap_keys used */
        size_t n_keys, cap_keys;
        uint16_t nr_slot[AJ_DENIAL_NR_SLOTS];      /* a plain native key's index + 1; 0: none */
        uint16_t arg_keys[AJ_DENIAL_ARG_KEYS_MAX]; /* the other keys' indexes */
        size_t n_arg_keys;
        AjDenialKey overflow; /* label "other" */
        AjRateLimit repeats;
        uint64_t total;
        uint64_t suppressed;
} AjDenialLog;

void aj_denial_log_init(AjDenialLog *log, double burst, double per_sec);
void aj_denial_log_done(AjDenialLog *log);
/* Counts `d`; true when it should be recorded as an event. *ret_key (may be NULL) is the
 * key it was counted under. */
bool aj_denial_log_note(AjDenialLog *log, const AjSeccompDenial *d, uint64_t now_ns, const AjDenialKey **ret_key);

/* Name of syscall `nr` on the native arch, or NULL. */
const char *aj_seccomp_syscall_name(int nr);
