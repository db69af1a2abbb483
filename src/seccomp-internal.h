/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the parts of the seccomp module share (seccomp-filter.c: the plan and its compilation;
 * seccomp-names.c: syscall names; seccomp-cache.c: compiled programs on disk;
 * seccomp-denials.c: the supervisor's side); nothing else includes this. */

#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "seccomp-filter.h"
#include "util/error.h"

/* Syscall numbers the plan covers; native numbers on every 64-bit arch stay far below this. */
#define PLAN_NR_MAX 1024
/* Hard limits on what a profile controls. */
#define SPEC_NAMES_MAX 1024
#define SPEC_NAME_LEN_MAX 64

typedef enum {
        RULE_DENY = 0, /* no rule: the filter's default action */
        RULE_ALLOW,
        RULE_ENOSYS,        /* clone3: glibc falls back to clone(), whose flags we can inspect */
        RULE_CLONE,         /* allowed without namespace flags */
        RULE_SOCKET_FAMILY, /* AF_UNIX (+ AF_NETLINK), AF_INET/AF_INET6 built in (aj_seccomp_socket_builtin) */
        RULE_SOCKETPAIR,    /* allowed for AF_UNIX, the only family that implements it widely */
        RULE_PERSONALITY,   /* allowed for the harmless personas only */
        RULE_IOCTL,         /* allowed except terminal input injection */
        RULE_MODE_A1,       /* allowed unless the mode (argument 1) has S_ISUID or S_ISGID */
        RULE_MODE_A2,       /* the same, mode in argument 2 */
        RULE_OPEN_A1,       /* allowed unless flags (argument 1) create and the mode (2) has them */
        RULE_OPEN_A2,       /* the same, flags in argument 2 and mode in 3 (openat) */
        RULE_NO_HUGETLB,    /* allowed unless the flags ask for huge pages (aj_seccomp_hugetlb_flag) */
        RULE_KEEP_CORE_A0,  /* setrlimit: a new RLIMIT_CORE (argument 0) succeeds without effect */
        RULE_KEEP_CORE_A1,  /* prlimit64: the same (argument 1, new limit 2); refused with an old one (3) */
} SeccompRule;

typedef struct {
        uint8_t rule[PLAN_NR_MAX];
        bool notify;
        bool allow_netlink;
        bool no_inet6;
} SeccompPlan;

/* Mode bits and flags the RestrictSUIDSGID rules look at (seccomp-filter.c says why). */
#define SUID_SGID_BITS ((uint64_t)(S_ISUID | S_ISGID))
/* O_TMPFILE without the O_DIRECTORY it includes: the bit that makes open create a file. */
#define OPEN_CREATE_FLAGS ((uint64_t)(O_CREAT | (O_TMPFILE & ~O_DIRECTORY)))

/* CLONE_NEWTIME is absent on purpose: in clone() bit 0x80 belongs to the exit signal, and the
 * kernel only accepts CLONE_NEWTIME through clone3() and unshare(), both denied. */
#define CLONE_NAMESPACE_FLAGS                                                                                 \
        ((uint64_t)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
                    CLONE_NEWCGROUP))

/* ---- seccomp-filter.c ---- */

/* An AF_INET/AF_INET6 socket the kernel makes without loading a module. Pure. */
bool aj_seccomp_socket_builtin(uint64_t family, uint64_t type, uint64_t protocol);
/* A prlimit64 of a new RLIMIT_CORE that RULE_KEEP_CORE_A1 refuses (it asks for the old one too). Pure. */
bool aj_seccomp_sets_core_limit(int nr, const uint64_t args[6]);

/* The rule of a syscall that sets a file mode (RULE_MODE_*, RULE_OPEN_*, RULE_ENOSYS), else RULE_DENY. */
SeccompRule aj_seccomp_mode_rule(int nr);
/* For a RULE_NO_HUGETLB syscall, the argument holding its flags and the flag that takes pages
 * from the host's huge page pool; false for any other syscall. */
bool aj_seccomp_hugetlb_flag(int nr, unsigned *ret_arg, uint64_t *ret_flag);
int aj_seccomp_plan_build(const AjSeccompSpec *spec, SeccompPlan *ret, AjError *ret_error);
int aj_seccomp_plan_compile(const SeccompPlan *plan, AjBpfProgram *ret);

/* ---- seccomp-names.c ---- */

/* 1 with *ret_nr for a native syscall, 0 for a name libseccomp knows on another arch only,
 * -ENOENT for an unknown name. */
int aj_seccomp_syscall_lookup(const char *name, int *ret_nr);
