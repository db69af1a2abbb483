/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's seccomp filter. A pure plan (which rule each syscall number gets) is compiled by
 * libseccomp on the supervisor side and exported as raw BPF, so the child installs it with one
 * seccomp(2) call and no allocation. Compiled programs are cached, keyed by everything that can
 * change their bytes. See docs/seccomp.md for what is allowed and why.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>

#include "seccomp-filter.h"
#include "util/build-id.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/sha256.h"

/* Syscall numbers the plan covers; native numbers on every 64-bit arch stay far below this. */
#define PLAN_NR_MAX 1024
/* Hard limits on what a profile controls. */
#define SPEC_NAMES_MAX 1024
#define SPEC_NAME_LEN_MAX 64

typedef enum {
        RULE_DENY = 0,      /* no rule: the filter's default action */
        RULE_ALLOW,
        RULE_ENOSYS,        /* clone3: glibc falls back to clone(), whose flags we can inspect */
        RULE_CLONE,         /* allowed without namespace flags */
        RULE_SOCKET_FAMILY, /* allowed for AF_UNIX, AF_INET, AF_INET6 (+ AF_NETLINK) */
        RULE_SOCKETPAIR,    /* allowed for AF_UNIX, the only family that implements it widely */
        RULE_PERSONALITY,   /* allowed for the harmless personas only */
        RULE_IOCTL,         /* allowed except terminal input injection */
        RULE_MODE_A1,       /* allowed unless the mode (argument 1) has S_ISUID or S_ISGID */
        RULE_MODE_A2,       /* the same, mode in argument 2 */
        RULE_OPEN_A1,       /* allowed unless flags (argument 1) create and the mode (2) has them */
        RULE_OPEN_A2,       /* the same, flags in argument 2 and mode in 3 (openat) */
} SeccompRule;

typedef struct {
        uint8_t rule[PLAN_NR_MAX];
        bool notify;
        bool allow_netlink;
} SeccompPlan;

/*
 * Docker's default allowlist for syscalls that need no capability (64-bit names only), minus
 * io_uring_* (a large kernel attack surface that also escapes seccomp inspection of the
 * operations it performs) and name_to_handle_at (file handles serve open_by_handle_at).
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
        SCMP_SYS(ioprio_set), SCMP_SYS(io_setup), SCMP_SYS(io_submit), SCMP_SYS(kill),
        SCMP_SYS(landlock_add_rule), SCMP_SYS(landlock_create_ruleset),
        SCMP_SYS(landlock_restrict_self), SCMP_SYS(lchown), SCMP_SYS(lgetxattr), SCMP_SYS(link),
        SCMP_SYS(linkat), SCMP_SYS(listen), SCMP_SYS(listxattr), SCMP_SYS(llistxattr),
        SCMP_SYS(lremovexattr), SCMP_SYS(lseek), SCMP_SYS(lsetxattr), SCMP_SYS(lstat),
        SCMP_SYS(madvise), SCMP_SYS(membarrier), SCMP_SYS(memfd_create), SCMP_SYS(memfd_secret),
        SCMP_SYS(mincore), SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(mknod), SCMP_SYS(mknodat),
        SCMP_SYS(mlock), SCMP_SYS(mlock2), SCMP_SYS(mlockall), SCMP_SYS(mmap), SCMP_SYS(mprotect),
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
        SCMP_SYS(setxattr), SCMP_SYS(shmat), SCMP_SYS(shmctl), SCMP_SYS(shmdt), SCMP_SYS(shmget),
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

/* Native names by number, so reports and profile names need no allocation or libseccomp. */
/* clang-format off */
static const char *const native_names[] = {
        [0] = "read", [1] = "write", [2] = "open", [3] = "close", [4] = "stat", [5] = "fstat",
        [6] = "lstat", [7] = "poll", [8] = "lseek", [9] = "mmap", [10] = "mprotect",
        [11] = "munmap", [12] = "brk", [13] = "rt_sigaction", [14] = "rt_sigprocmask",
        [15] = "rt_sigreturn", [16] = "ioctl", [17] = "pread64", [18] = "pwrite64", [19] = "readv",
        [20] = "writev", [21] = "access", [22] = "pipe", [23] = "select", [24] = "sched_yield",
        [25] = "mremap", [26] = "msync", [27] = "mincore", [28] = "madvise", [29] = "shmget",
        [30] = "shmat", [31] = "shmctl", [32] = "dup", [33] = "dup2", [34] = "pause",
        [35] = "nanosleep", [36] = "getitimer", [37] = "alarm", [38] = "setitimer", [39] = "getpid",
        [40] = "sendfile", [41] = "socket", [42] = "connect", [43] = "accept", [44] = "sendto",
        [45] = "recvfrom", [46] = "sendmsg", [47] = "recvmsg", [48] = "shutdown", [49] = "bind",
        [50] = "listen", [51] = "getsockname", [52] = "getpeername", [53] = "socketpair",
        [54] = "setsockopt", [55] = "getsockopt", [56] = "clone", [57] = "fork", [58] = "vfork",
        [59] = "execve", [60] = "exit", [61] = "wait4", [62] = "kill", [63] = "uname",
        [64] = "semget", [65] = "semop", [66] = "semctl", [67] = "shmdt", [68] = "msgget",
        [69] = "msgsnd", [70] = "msgrcv", [71] = "msgctl", [72] = "fcntl", [73] = "flock",
        [74] = "fsync", [75] = "fdatasync", [76] = "truncate", [77] = "ftruncate",
        [78] = "getdents", [79] = "getcwd", [80] = "chdir", [81] = "fchdir", [82] = "rename",
        [83] = "mkdir", [84] = "rmdir", [85] = "creat", [86] = "link", [87] = "unlink",
        [88] = "symlink", [89] = "readlink", [90] = "chmod", [91] = "fchmod", [92] = "chown",
        [93] = "fchown", [94] = "lchown", [95] = "umask", [96] = "gettimeofday", [97] = "getrlimit",
        [98] = "getrusage", [99] = "sysinfo", [100] = "times", [101] = "ptrace", [102] = "getuid",
        [103] = "syslog", [104] = "getgid", [105] = "setuid", [106] = "setgid", [107] = "geteuid",
        [108] = "getegid", [109] = "setpgid", [110] = "getppid", [111] = "getpgrp",
        [112] = "setsid", [113] = "setreuid", [114] = "setregid", [115] = "getgroups",
        [116] = "setgroups", [117] = "setresuid", [118] = "getresuid", [119] = "setresgid",
        [120] = "getresgid", [121] = "getpgid", [122] = "setfsuid", [123] = "setfsgid",
        [124] = "getsid", [125] = "capget", [126] = "capset", [127] = "rt_sigpending",
        [128] = "rt_sigtimedwait", [129] = "rt_sigqueueinfo", [130] = "rt_sigsuspend",
        [131] = "sigaltstack", [132] = "utime", [133] = "mknod", [134] = "uselib",
        [135] = "personality", [136] = "ustat", [137] = "statfs", [138] = "fstatfs",
        [139] = "sysfs", [140] = "getpriority", [141] = "setpriority", [142] = "sched_setparam",
        [143] = "sched_getparam", [144] = "sched_setscheduler", [145] = "sched_getscheduler",
        [146] = "sched_get_priority_max", [147] = "sched_get_priority_min",
        [148] = "sched_rr_get_interval", [149] = "mlock", [150] = "munlock", [151] = "mlockall",
        [152] = "munlockall", [153] = "vhangup", [154] = "modify_ldt", [155] = "pivot_root",
        [156] = "_sysctl", [157] = "prctl", [158] = "arch_prctl", [159] = "adjtimex",
        [160] = "setrlimit", [161] = "chroot", [162] = "sync", [163] = "acct",
        [164] = "settimeofday", [165] = "mount", [166] = "umount2", [167] = "swapon",
        [168] = "swapoff", [169] = "reboot", [170] = "sethostname", [171] = "setdomainname",
        [172] = "iopl", [173] = "ioperm", [174] = "create_module", [175] = "init_module",
        [176] = "delete_module", [177] = "get_kernel_syms", [178] = "query_module",
        [179] = "quotactl", [180] = "nfsservctl", [181] = "getpmsg", [182] = "putpmsg",
        [183] = "afs_syscall", [184] = "tuxcall", [185] = "security", [186] = "gettid",
        [187] = "readahead", [188] = "setxattr", [189] = "lsetxattr", [190] = "fsetxattr",
        [191] = "getxattr", [192] = "lgetxattr", [193] = "fgetxattr", [194] = "listxattr",
        [195] = "llistxattr", [196] = "flistxattr", [197] = "removexattr", [198] = "lremovexattr",
        [199] = "fremovexattr", [200] = "tkill", [201] = "time", [202] = "futex",
        [203] = "sched_setaffinity", [204] = "sched_getaffinity", [205] = "set_thread_area",
        [206] = "io_setup", [207] = "io_destroy", [208] = "io_getevents", [209] = "io_submit",
        [210] = "io_cancel", [211] = "get_thread_area", [212] = "lookup_dcookie",
        [213] = "epoll_create", [214] = "epoll_ctl_old", [215] = "epoll_wait_old",
        [216] = "remap_file_pages", [217] = "getdents64", [218] = "set_tid_address",
        [219] = "restart_syscall", [220] = "semtimedop", [221] = "fadvise64",
        [222] = "timer_create", [223] = "timer_settime", [224] = "timer_gettime",
        [225] = "timer_getoverrun", [226] = "timer_delete", [227] = "clock_settime",
        [228] = "clock_gettime", [229] = "clock_getres", [230] = "clock_nanosleep",
        [231] = "exit_group", [232] = "epoll_wait", [233] = "epoll_ctl", [234] = "tgkill",
        [235] = "utimes", [236] = "vserver", [237] = "mbind", [238] = "set_mempolicy",
        [239] = "get_mempolicy", [240] = "mq_open", [241] = "mq_unlink", [242] = "mq_timedsend",
        [243] = "mq_timedreceive", [244] = "mq_notify", [245] = "mq_getsetattr",
        [246] = "kexec_load", [247] = "waitid", [248] = "add_key", [249] = "request_key",
        [250] = "keyctl", [251] = "ioprio_set", [252] = "ioprio_get", [253] = "inotify_init",
        [254] = "inotify_add_watch", [255] = "inotify_rm_watch", [256] = "migrate_pages",
        [257] = "openat", [258] = "mkdirat", [259] = "mknodat", [260] = "fchownat",
        [261] = "futimesat", [262] = "newfstatat", [263] = "unlinkat", [264] = "renameat",
        [265] = "linkat", [266] = "symlinkat", [267] = "readlinkat", [268] = "fchmodat",
        [269] = "faccessat", [270] = "pselect6", [271] = "ppoll", [272] = "unshare",
        [273] = "set_robust_list", [274] = "get_robust_list", [275] = "splice", [276] = "tee",
        [277] = "sync_file_range", [278] = "vmsplice", [279] = "move_pages", [280] = "utimensat",
        [281] = "epoll_pwait", [282] = "signalfd", [283] = "timerfd_create", [284] = "eventfd",
        [285] = "fallocate", [286] = "timerfd_settime", [287] = "timerfd_gettime",
        [288] = "accept4", [289] = "signalfd4", [290] = "eventfd2", [291] = "epoll_create1",
        [292] = "dup3", [293] = "pipe2", [294] = "inotify_init1", [295] = "preadv",
        [296] = "pwritev", [297] = "rt_tgsigqueueinfo", [298] = "perf_event_open",
        [299] = "recvmmsg", [300] = "fanotify_init", [301] = "fanotify_mark", [302] = "prlimit64",
        [303] = "name_to_handle_at", [304] = "open_by_handle_at", [305] = "clock_adjtime",
        [306] = "syncfs", [307] = "sendmmsg", [308] = "setns", [309] = "getcpu",
        [310] = "process_vm_readv", [311] = "process_vm_writev", [312] = "kcmp",
        [313] = "finit_module", [314] = "sched_setattr", [315] = "sched_getattr",
        [316] = "renameat2", [317] = "seccomp", [318] = "getrandom", [319] = "memfd_create",
        [320] = "kexec_file_load", [321] = "bpf", [322] = "execveat", [323] = "userfaultfd",
        [324] = "membarrier", [325] = "mlock2", [326] = "copy_file_range", [327] = "preadv2",
        [328] = "pwritev2", [329] = "pkey_mprotect", [330] = "pkey_alloc", [331] = "pkey_free",
        [332] = "statx", [333] = "io_pgetevents", [334] = "rseq", [335] = "uretprobe",
        [336] = "uprobe", [424] = "pidfd_send_signal", [425] = "io_uring_setup",
        [426] = "io_uring_enter", [427] = "io_uring_register", [428] = "open_tree",
        [429] = "move_mount", [430] = "fsopen", [431] = "fsconfig", [432] = "fsmount",
        [433] = "fspick", [434] = "pidfd_open", [435] = "clone3", [436] = "close_range",
        [437] = "openat2", [438] = "pidfd_getfd", [439] = "faccessat2", [440] = "process_madvise",
        [441] = "epoll_pwait2", [442] = "mount_setattr", [443] = "quotactl_fd",
        [444] = "landlock_create_ruleset", [445] = "landlock_add_rule",
        [446] = "landlock_restrict_self", [447] = "memfd_secret", [448] = "process_mrelease",
        [449] = "futex_waitv", [450] = "set_mempolicy_home_node", [451] = "cachestat",
        [452] = "fchmodat2", [453] = "map_shadow_stack", [454] = "futex_wake", [455] = "futex_wait",
        [456] = "futex_requeue", [457] = "statmount", [458] = "listmount",
        [459] = "lsm_get_self_attr", [460] = "lsm_set_self_attr", [461] = "lsm_list_modules",
        [462] = "mseal", [463] = "setxattrat", [464] = "getxattrat", [465] = "listxattrat",
        [466] = "removexattrat", [467] = "open_tree_attr", [468] = "file_getattr",
        [469] = "file_setattr",
};
/* clang-format on */
#endif

static const struct {
        int nr;
        SeccompRule rule;
} conditional_rules[] = {
        { SCMP_SYS(clone), RULE_CLONE },
        { SCMP_SYS(clone3), RULE_ENOSYS },
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
#define SUID_SGID_BITS ((uint64_t)(S_ISUID | S_ISGID))
/* O_TMPFILE without the O_DIRECTORY it includes: the bit that makes open create a file. */
#define OPEN_CREATE_FLAGS ((uint64_t)(O_CREAT | (O_TMPFILE & ~O_DIRECTORY)))

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

static SeccompRule mode_rule_of(int nr)
{
        for (size_t i = 0; i < ARRAY_SIZE(mode_rules); i++)
                if (mode_rules[i].nr == nr)
                        return mode_rules[i].rule;
        return RULE_DENY;
}

/* CLONE_NEWTIME is absent on purpose: in clone() bit 0x80 belongs to the exit signal, and the
 * kernel only accepts CLONE_NEWTIME through clone3() and unshare(), both denied. */
#define CLONE_NAMESPACE_FLAGS                                                                      \
        ((uint64_t)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |     \
                    CLONE_NEWNET | CLONE_NEWCGROUP))

/* Docker's safe personas: PER_LINUX, PER_LINUX32, UNAME26 alone and with PER_LINUX32, query. */
static const uint32_t allowed_personas[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff };

/* Terminal input injection (TIOCSTI) and the console multiplexer (TIOCLINUX). */
static const uint32_t denied_ioctls[] = { TIOCSTI, TIOCLINUX };

const char *aj_seccomp_syscall_name(int nr)
{
#if defined(__x86_64__)
        if (nr < 0 || (size_t)nr >= ARRAY_SIZE(native_names))
                return NULL;
        return native_names[nr];
#else
        /* Elsewhere only libseccomp has the table, and it allocates: callers fall back to it. */
        return NULL;
#endif
}

/* 1 with *ret_nr for a native syscall, 0 for a name libseccomp knows on another arch only,
 * -ENOENT for an unknown name. */
static int syscall_lookup(const char *name, int *ret_nr)
{
        if (strlen(name) > SPEC_NAME_LEN_MAX)
                return -ENOENT;
#if defined(__x86_64__)
        for (size_t i = 0; i < ARRAY_SIZE(native_names); i++)
                if (native_names[i] && streq(native_names[i], name)) {
                        *ret_nr = (int)i;
                        return 1;
                }
#endif
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR)
                return -ENOENT;
        if (nr < 0 || nr >= PLAN_NR_MAX)
                return 0;
        *ret_nr = nr;
        return 1;
}

/* Syscalls no profile can allow: they do on the agent's behalf what the filter's argument
 * rules exist to refuse, out of the filter's sight. */
static bool never_allowed(int nr)
{
        return nr == SCMP_SYS(io_uring_setup) || nr == SCMP_SYS(io_uring_enter) ||
               nr == SCMP_SYS(io_uring_register);
}

static int plan_apply_names(SeccompPlan *plan, char *const *names, SeccompRule rule,
                            const char *what, char **ret_error)
{
        size_t n = 0;
        for (char *const *p = names; p && *p; p++, n++) {
                if (n >= SPEC_NAMES_MAX) {
                        if (ret_error && asprintf(ret_error, "seccomp.%s: more than %d names", what,
                                                  SPEC_NAMES_MAX) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                int nr;
                int r = syscall_lookup(*p, &nr);
                if (r < 0) {
                        if (ret_error && asprintf(ret_error, "seccomp.%s: unknown syscall '%s'",
                                                  what, *p) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                if (r > 0 && rule == RULE_ALLOW && never_allowed(nr)) {
                        if (ret_error && asprintf(ret_error, "seccomp.%s: '%s' cannot be allowed: io_uring opens, "
                                                  "creates and changes files in the kernel where no seccomp "
                                                  "rule sees it (it would lift the setuid/setgid rule, and "
                                                  "every argument check)", what, *p) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                if (r > 0) {
                        SeccompRule mode_rule = mode_rule_of(nr);
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

static int plan_build(const AjSeccompSpec *spec, SeccompPlan *ret, char **ret_error)
{
        if (spec->base && !streq(spec->base, "default") && !streq(spec->base, "docker-plus")) {
                if (ret_error &&
                    asprintf(ret_error, "seccomp.default: unknown base filter '%s'", spec->base) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }

        SeccompPlan plan = { .notify = spec->notify, .allow_netlink = spec->allow_netlink };
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

        *ret = plan;
        return 0;
}

/* Allow `nr` when the low 32 bits of argument `arg` are none of `excluded`. The kernel truncates
 * such arguments to unsigned int, so the upper half must not matter; libseccomp has no masked
 * "not equal", so the complement is covered by prefix cubes, one MASKED_EQ rule each: a subtree
 * of the 32-bit space holding no excluded value is allowed whole. */
static int add_allow_lo32_except(scmp_filter_ctx ctx, int nr, unsigned arg, const uint32_t *excluded,
                                 size_t n_excluded, uint32_t prefix, unsigned depth)
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
        return add_allow_lo32_except(ctx, nr, arg, excluded, n_excluded,
                                     prefix | UINT32_C(1) << (31 - depth), depth + 1);
}

static int add_allow_lo32_in(scmp_filter_ctx ctx, int nr, unsigned arg, const uint32_t *values,
                             size_t n_values)
{
        for (size_t i = 0; i < n_values; i++) {
                int r = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                               SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, UINT32_MAX, values[i]));
                if (r < 0)
                        return r;
        }
        return 0;
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
        case RULE_SOCKET_FAMILY: {
                uint32_t families[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };
                size_t n = plan->allow_netlink ? 4 : 3;
                return add_allow_lo32_in(ctx, nr, 0, families, n);
        }
        case RULE_SOCKETPAIR: {
                uint32_t family = AF_UNIX;
                return add_allow_lo32_in(ctx, nr, 0, &family, 1);
        }
        case RULE_PERSONALITY:
                return add_allow_lo32_in(ctx, nr, 0, allowed_personas, ARRAY_SIZE(allowed_personas));
        case RULE_IOCTL:
                return add_allow_lo32_except(ctx, nr, 1, denied_ioctls, ARRAY_SIZE(denied_ioctls), 0, 0);
        case RULE_MODE_A1:
        case RULE_MODE_A2:
                return seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1,
                                              SCMP_CMP(plan->rule[nr] == RULE_MODE_A1 ? 1 : 2,
                                                       SCMP_CMP_MASKED_EQ, SUID_SGID_BITS, 0));
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

static int plan_compile(const SeccompPlan *plan, AjBpfProgram *ret)
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

int aj_seccomp_build(const AjSeccompSpec *spec, AjBpfProgram *ret, char **ret_error)
{
        SeccompPlan plan;
        int r = plan_build(spec, &plan, ret_error);
        if (r < 0)
                return r;
        return plan_compile(&plan, ret);
}

void aj_bpf_program_free(AjBpfProgram *p)
{
        if (!p)
                return;
        free(p->filter);
        p->filter = NULL;
        p->len = 0;
}

/* ---- cache ---- */

/* v2: entries are authenticated with HMAC-SHA256 under a per-host secret (v1 had a plain
 * digest anyone able to write the file could recompute). v3: the key covers the agentjail
 * binary's build-id (the compile code: ioctl lists, masks, personas), so an upgrade never
 * reuses a program an older build compiled. */
#define CACHE_FORMAT "agentjail seccomp cache v3"
#define CACHE_MAGIC "AJSECBP3"
#define CACHE_VERSION 3
#define CACHE_SECRET_FILE "seccomp-cache.key"
#define CACHE_SECRET_SIZE 32

typedef struct {
        char magic[8];
        uint32_t version;
        uint32_t n_insns;
        uint8_t key[AJ_SHA256_SIZE];
        /* HMAC-SHA256 under the secret of the fields above and the body. */
        uint8_t mac[AJ_SHA256_SIZE];
} CacheHeader;

static int strcmp_ptr(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted and deduplicated, so list order and repeats do not split the cache. */
static int digest_names(AjSha256 *c, const char *label, char *const *names)
{
        size_t n = 0;
        while (names && names[n])
                n++;
        aj_sha256_update(c, label, strlen(label) + 1);
        if (n == 0)
                return 0;
        _cleanup_free_ const char **sorted = malloc(n * sizeof(char *));
        if (!sorted)
                return -ENOMEM;
        memcpy(sorted, names, n * sizeof(char *));
        qsort(sorted, n, sizeof(char *), strcmp_ptr);
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && streq(sorted[i], sorted[i - 1]))
                        continue;
                aj_sha256_update(c, sorted[i], strlen(sorted[i]) + 1);
        }
        return 0;
}

/* Pure: the same inputs give the same key, on any host. */
static int cache_key(const AjSeccompSpec *spec, const SeccompPlan *plan, const AjSeccompKeyInputs *in,
                     uint8_t key[AJ_SHA256_SIZE])
{
        if (!in->build_id || in->build_id_len == 0 || !in->libseccomp || !in->kernel)
                return -EINVAL;

        AjSha256 c;
        aj_sha256_init(&c);
        aj_sha256_update(&c, CACHE_FORMAT, sizeof(CACHE_FORMAT));

        /* The code that compiles the plan: its constants are not in the plan. */
        uint64_t len = in->build_id_len;
        aj_sha256_update(&c, &len, sizeof(len));
        aj_sha256_update(&c, in->build_id, in->build_id_len);

        char buf[256];
        int n = snprintf(buf, sizeof(buf), "base=%s notify=%d netlink=%d arch=%u",
                         spec->base ? spec->base : "default", plan->notify, plan->allow_netlink,
                         seccomp_arch_native());
        aj_sha256_update(&c, buf, (size_t)n + 1);
        int r = digest_names(&c, "deny", spec->deny);
        if (r < 0)
                return r;
        r = digest_names(&c, "allow", spec->allow);
        if (r < 0)
                return r;
        /* The plan itself: a change to this file's tables invalidates old entries on its own. */
        aj_sha256_update(&c, plan->rule, sizeof(plan->rule));

        aj_sha256_update(&c, "libseccomp", sizeof("libseccomp"));
        aj_sha256_update(&c, in->libseccomp, strlen(in->libseccomp) + 1);
        aj_sha256_update(&c, "kernel", sizeof("kernel"));
        aj_sha256_update(&c, in->kernel, strlen(in->kernel) + 1);
        aj_sha256_final(&c, key);
        return 0;
}

int aj_seccomp_cache_key(const AjSeccompSpec *spec, const AjSeccompKeyInputs *in, uint8_t ret_key[32])
{
        SeccompPlan plan;
        _cleanup_free_ char *error = NULL;
        int r = plan_build(spec, &plan, &error);
        if (r < 0)
                return r;
        return cache_key(spec, &plan, in, ret_key);
}

/* This host's and this binary's inputs. No build-id: -ENOENT (the caller does not cache). */
static int key_inputs_here(AjSeccompKeyInputs *in, uint8_t id[AJ_BUILD_ID_MAX], char lib[32],
                           struct utsname *u)
{
        int n = aj_build_id(id);
        if (n < 0)
                return n;
        const struct scmp_version *v = seccomp_version();
        if (uname(u) < 0)
                return -errno;
        snprintf(lib, 32, "%u.%u.%u", v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0);
        *in = (AjSeccompKeyInputs){ .build_id = id, .build_id_len = (size_t)n, .libseccomp = lib,
                                    .kernel = u->release };
        return 0;
}

/* Owned by us, not writable by group or others. */
static bool stat_ours(const struct stat *st)
{
        return st->st_uid == geteuid() && (st->st_mode & 0022) == 0;
}

/* Every directory above `path` (absolute, no symlink components): owned by root or us, and
 * not writable by others unless sticky (/tmp: nobody else can rename or remove our entry).
 * Returns 1 when trusted, 0 when not, -ELOOP when a component is a symlink and -EINVAL for a
 * relative path (the caller resolves them and asks again). */
static int parents_trusted(const char *path)
{
        char buf[PATH_MAX];
        size_t len = strlen(path);
        if (path[0] != '/')
                return -EINVAL; /* resolved by the caller */
        if (len >= sizeof(buf))
                return 0;
        memcpy(buf, path, len + 1);
        for (char *p = buf + len; p > buf;) {
                struct stat st;
                if (lstat(buf, &st) < 0)
                        return -errno;
                if (S_ISLNK(st.st_mode))
                        return -ELOOP;
                if (!S_ISDIR(st.st_mode))
                        return 0;
                if (p != buf + len) { /* a parent */
                        if (st.st_uid != 0 && st.st_uid != geteuid())
                                return 0;
                        if ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX))
                                return 0;
                }
                while (p > buf && *p != '/')
                        p--;
                *p = 0;
        }
        /* The root directory itself. */
        struct stat st;
        if (lstat("/", &st) < 0)
                return -errno;
        return st.st_uid == 0 && !(st.st_mode & 0022) ? 1 : 0;
}

/*
 * Opens `dir` (created 0700 when `create`) if nobody but us and root could have put anything
 * in it: the directory ours and not group/world-writable, every directory above it root's or
 * ours and not writable by others. Symlinks on the way are resolved first, so the checks
 * are on the real path. -EPERM when untrusted.
 */
static int open_trusted_dir(const char *dir, bool create)
{
        if (create && aj_mkdir_p(dir, 0700) < 0)
                return -EPERM;
        int r = parents_trusted(dir);
        _cleanup_free_ char *real = NULL;
        if (r == -ELOOP || r == -EINVAL) {
                real = realpath(dir, NULL);
                if (!real)
                        return -errno;
                r = parents_trusted(real);
        }
        if (r <= 0)
                return r < 0 ? r : -EPERM;
        _cleanup_close_ int fd = open(real ? real : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!stat_ours(&st))
                return -EPERM;
        return TAKE_FD(fd);
}

static int read_exact(int fd, void *buf, size_t len)
{
        for (size_t done = 0; done < len;) {
                ssize_t n = read(fd, (char *)buf + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EBADMSG;
                done += (size_t)n;
        }
        return 0;
}

static int secret_create(int dfd)
{
        uint8_t secret[CACHE_SECRET_SIZE];
        for (size_t done = 0; done < sizeof(secret);) {
                ssize_t n = getrandom(secret + done, sizeof(secret) - done, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", CACHE_SECRET_FILE, (int)getpid());
        /* Left over from a crashed run of the same pid: ours (the directory is). */
        (void)unlinkat(dfd, tmp, 0);
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r = aj_write_all(fd, secret, sizeof(secret));
        explicit_bzero(secret, sizeof(secret));
        /* link() never replaces: with two runs racing, the first key wins for both. */
        if (r >= 0 && linkat(dfd, tmp, dfd, CACHE_SECRET_FILE, 0) < 0 && errno != EEXIST)
                r = -errno;
        (void)unlinkat(dfd, tmp, 0);
        return r;
}

/* The secret: a 32-byte file of ours, mode 0600 or stricter, one link; created if absent. */
static int secret_load(int dfd, uint8_t ret[CACHE_SECRET_SIZE])
{
        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_close_ int fd = openat(dfd, CACHE_SECRET_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
                if (fd < 0) {
                        if (errno != ENOENT)
                                return -errno;
                        int r = secret_create(dfd);
                        if (r < 0)
                                return r;
                        continue;
                }
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077) != 0 ||
                    st.st_nlink != 1 || st.st_size != CACHE_SECRET_SIZE)
                        return -EPERM;
                return read_exact(fd, ret, CACHE_SECRET_SIZE);
        }
        return -ENOENT;
}

static void cache_mac(const uint8_t secret[CACHE_SECRET_SIZE], const CacheHeader *h, const void *body,
                      size_t body_len, uint8_t out[AJ_SHA256_SIZE])
{
        AjHmacSha256 m;
        aj_hmac_sha256_init(&m, secret, CACHE_SECRET_SIZE);
        aj_hmac_sha256_update(&m, h, offsetof(CacheHeader, mac));
        aj_hmac_sha256_update(&m, body, body_len);
        aj_hmac_sha256_final(&m, out);
}

static void cache_name(const uint8_t key[AJ_SHA256_SIZE], char name[AJ_SHA256_HEX_SIZE + 4])
{
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256_hex(key, hex);
        snprintf(name, AJ_SHA256_HEX_SIZE + 4, "%s.bpf", hex);
}

static int cache_read(int dfd, const char *name, const uint8_t key[AJ_SHA256_SIZE],
                      const uint8_t secret[CACHE_SECRET_SIZE], AjBpfProgram *ret)
{
        size_t max = sizeof(CacheHeader) + (size_t)BPF_MAXINSNS * sizeof(struct sock_filter);
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || !stat_ours(&st))
                return -EPERM;
        if ((size_t)st.st_size <= sizeof(CacheHeader) || (size_t)st.st_size > max)
                return -EBADMSG;

        size_t size = (size_t)st.st_size;
        _cleanup_free_ uint8_t *buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        int r = read_exact(fd, buf, size);
        if (r < 0)
                return r;

        CacheHeader h;
        memcpy(&h, buf, sizeof(h));
        size_t body = size - sizeof(h);
        if (memcmp(h.magic, CACHE_MAGIC, sizeof(h.magic)) != 0 || h.version != CACHE_VERSION ||
            memcmp(h.key, key, AJ_SHA256_SIZE) != 0 || h.n_insns == 0 || h.n_insns > BPF_MAXINSNS ||
            body != (size_t)h.n_insns * sizeof(struct sock_filter))
                return -EBADMSG;
        uint8_t mac[AJ_SHA256_SIZE];
        cache_mac(secret, &h, buf + sizeof(h), body, mac);
        if (!aj_digest_eq(mac, h.mac))
                return -EBADMSG;

        struct sock_filter *filter = malloc(body);
        if (!filter)
                return -ENOMEM;
        memcpy(filter, buf + sizeof(h), body);
        ret->filter = filter;
        ret->len = (unsigned short)h.n_insns;
        return 0;
}

static int cache_write(int dfd, const char *name, const uint8_t key[AJ_SHA256_SIZE],
                       const uint8_t secret[CACHE_SECRET_SIZE], const AjBpfProgram *prog)
{
        size_t body = (size_t)prog->len * sizeof(struct sock_filter);
        CacheHeader h = { .version = CACHE_VERSION, .n_insns = prog->len };
        memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
        memcpy(h.key, key, AJ_SHA256_SIZE);
        cache_mac(secret, &h, prog->filter, body, h.mac);

        char tmp[AJ_SHA256_HEX_SIZE + 32];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", name, (int)getpid());
        (void)unlinkat(dfd, tmp, 0);
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* No fsync: a torn entry after a crash fails its MAC and is rebuilt. */
        int r = aj_write_all(fd, &h, sizeof(h));
        if (r >= 0)
                r = aj_write_all(fd, prog->filter, body);
        if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(dfd, tmp, 0);
        return r;
}

int aj_seccomp_build_cached(const AjSeccompSpec *spec, const char *cache_dir, const char *secret_dir,
                            AjBpfProgram *ret, char **ret_error)
{
        SeccompPlan plan;
        int r = plan_build(spec, &plan, ret_error);
        if (r < 0)
                return r;
        if (!cache_dir || !secret_dir)
                return plan_compile(&plan, ret);

        /* Anything that does not check out (a directory someone else could write, a secret that
         * is not ours alone, an entry whose MAC fails) means compiling afresh: never trusted. */
        uint8_t secret[CACHE_SECRET_SIZE];
        uint8_t key[AJ_SHA256_SIZE];
        uint8_t build_id[AJ_BUILD_ID_MAX];
        char lib[32];
        struct utsname u;
        AjSeccompKeyInputs in;
        /* No build-id (a binary linked without one): nothing says which code compiled an
         * entry, so nothing is cached. */
        if (key_inputs_here(&in, build_id, lib, &u) < 0 || cache_key(spec, &plan, &in, key) < 0)
                return plan_compile(&plan, ret);
        _cleanup_close_ int secret_dfd = open_trusted_dir(secret_dir, false);
        _cleanup_close_ int cache_dfd = secret_dfd >= 0 ? open_trusted_dir(cache_dir, true) : -1;
        if (cache_dfd < 0 || secret_load(secret_dfd, secret) < 0)
                return plan_compile(&plan, ret);

        char name[AJ_SHA256_HEX_SIZE + 4];
        cache_name(key, name);
        AjBpfProgram prog = {};
        if (cache_read(cache_dfd, name, key, secret, &prog) >= 0) {
                explicit_bzero(secret, sizeof(secret));
                *ret = prog;
                return 0;
        }
        r = plan_compile(&plan, &prog);
        if (r >= 0)
                /* Best effort: a read-only or full cache only costs the next run a compilation. */
                (void)cache_write(cache_dfd, name, key, secret, &prog);
        explicit_bzero(secret, sizeof(secret));
        if (r < 0)
                return r;
        *ret = prog;
        return 0;
}

/* ---- child side ---- */

int aj_seccomp_load(const AjBpfProgram *prog, bool listener)
{
        if (!prog || !prog->filter || prog->len == 0)
                return -EINVAL;
        struct sock_fprog fprog = { .len = prog->len, .filter = prog->filter };
        unsigned long flags = listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
        /* The kernel creates the listener fd O_CLOEXEC. */
        long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
        if (r < 0)
                return -errno;
        return listener ? (int)r : 0;
}

/* ---- supervisor side ---- */

const char *aj_seccomp_denial_hint(const AjSeccompDenial *d)
{
        if (d->arch != seccomp_arch_native())
                return NULL;
        switch (mode_rule_of(d->nr)) {
        case RULE_MODE_A1:
                return d->args[1] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_MODE_A2:
                return d->args[2] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_OPEN_A1:
                return d->args[1] & OPEN_CREATE_FLAGS && d->args[2] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_OPEN_A2:
                return d->args[2] & OPEN_CREATE_FLAGS && d->args[3] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        default:
                break;
        }
        if (d->nr == SCMP_SYS(clone) && d->args[0] & CLONE_NAMESPACE_FLAGS)
                return "namespace flags";
        return NULL;
}

int aj_seccomp_notify_handle(int listener_fd, AjSeccompDenial *ret)
{
        /* The kernel's structs may outgrow our headers; it tells us their size. */
        struct seccomp_notif_sizes sizes;
        if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
                return -errno;
        union {
                struct seccomp_notif n;
                uint8_t raw[512];
        } req;
        union {
                struct seccomp_notif_resp r;
                uint8_t raw[512];
        } resp;
        if (sizes.seccomp_notif > sizeof(req) || sizes.seccomp_notif_resp > sizeof(resp))
                return -EOVERFLOW;

        /* RECV blocks when nothing is pending; the supervisor's event loop must never block. */
        struct pollfd pfd = { .fd = listener_fd, .events = POLLIN };
        int n = poll(&pfd, 1, 0);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        if (n == 0)
                return 0;
        if (pfd.revents & POLLNVAL)
                return -EBADF;
        if (!(pfd.revents & POLLIN))
                /* POLLHUP: every task using the filter is gone. */
                return (pfd.revents & POLLHUP) ? -ENOTCONN : 0;

        memset(&req, 0, sizeof(req)); /* RECV insists on a zeroed buffer */
        if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
                /* ENOENT: the target died (or was interrupted) after waking us up. */
                return errno == ENOENT || errno == EINTR ? 0 : -errno;

        memset(&resp, 0, sizeof(resp));
        resp.r.id = req.n.id;
        resp.r.error = -EPERM;
        if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
                return errno == ENOENT ? 0 : -errno;

        AjSeccompDenial d = {
                .pid = (pid_t)req.n.pid,
                .nr = req.n.data.nr,
                .arch = req.n.data.arch,
        };
        memcpy(d.args, req.n.data.args, sizeof(d.args));
        _cleanup_free_ char *name = seccomp_syscall_resolve_num_arch(d.arch, d.nr);
        const char *fallback = d.arch == seccomp_arch_native() ? aj_seccomp_syscall_name(d.nr) : NULL;
        if (name)
                snprintf(d.name, sizeof(d.name), "%s", name);
        else if (fallback)
                snprintf(d.name, sizeof(d.name), "%s", fallback);
        else
                snprintf(d.name, sizeof(d.name), "syscall_%d", d.nr);
        *ret = d;
        return 1;
}

void aj_ratelimit_init(AjRateLimit *rl, double burst, double per_sec)
{
        *rl = (AjRateLimit){ .tokens = burst, .burst = burst, .per_sec = per_sec };
}

static void ratelimit_refill(AjRateLimit *rl, uint64_t now_ns)
{
        /* Time never runs backwards for the bucket: an older timestamp refills nothing. */
        if (now_ns > rl->last_ns) {
                if (rl->per_sec > 0) {
                        double refill = (double)(now_ns - rl->last_ns) * 1e-9 * rl->per_sec;
                        rl->tokens = rl->tokens + refill > rl->burst ? rl->burst : rl->tokens + refill;
                }
                rl->last_ns = now_ns;
        }
}

bool aj_ratelimit_allow(AjRateLimit *rl, uint64_t now_ns)
{
        ratelimit_refill(rl, now_ns);
        if (rl->tokens >= 1.0) {
                rl->tokens -= 1.0;
                return true;
        }
        rl->suppressed++;
        return false;
}

/* The argument that tells denials of one syscall apart, as the filter's rules see it. */
static bool denial_sub(const AjSeccompDenial *d, uint32_t *ret)
{
        if (d->arch != seccomp_arch_native())
                return false;
        if (d->nr == SCMP_SYS(socket) || d->nr == SCMP_SYS(socketpair) || d->nr == SCMP_SYS(personality)) {
                *ret = (uint32_t)d->args[0];
                return true;
        }
        if (d->nr == SCMP_SYS(ioctl)) {
                *ret = (uint32_t)d->args[1];
                return true;
        }
        return false;
}

void aj_denial_log_init(AjDenialLog *log, double burst, double per_sec)
{
        memset(log, 0, sizeof(*log));
        snprintf(log->overflow.label, sizeof(log->overflow.label), "other");
        aj_ratelimit_init(&log->repeats, burst, per_sec);
}

_Static_assert(AJ_DENIAL_KEYS_MAX <= UINT16_MAX, "key indexes are uint16_t");

static void denial_key_init(AjDenialKey *k, const AjSeccompDenial *d, bool has_sub, uint32_t sub)
{
        *k = (AjDenialKey){ .nr = d->nr, .arch = d->arch, .sub = sub, .has_sub = has_sub };
        if (!has_sub)
                snprintf(k->label, sizeof(k->label), "%s", d->name);
        else if (d->nr == SCMP_SYS(socket) || d->nr == SCMP_SYS(socketpair))
                snprintf(k->label, sizeof(k->label), "%.24s(%u)", d->name, sub);
        else
                snprintf(k->label, sizeof(k->label), "%.24s(0x%x)", d->name, sub);
}

bool aj_denial_log_note(AjDenialLog *log, const AjSeccompDenial *d, uint64_t now_ns,
                        const AjDenialKey **ret_key)
{
        uint32_t sub = 0;
        bool has_sub = denial_sub(d, &sub);
        AjDenialKey *k = NULL;
        bool first = false;
        if (!has_sub && d->arch == seccomp_arch_native() && d->nr >= 0 && d->nr < AJ_DENIAL_NR_SLOTS) {
                /* A plain syscall: its own slot, which no flood of other keys can take. */
                uint16_t *slot = &log->nr_slot[d->nr];
                if (*slot == 0 && log->n_keys < AJ_DENIAL_KEYS_MAX) { /* always true: see the bounds */
                        denial_key_init(&log->keys[log->n_keys], d, false, 0);
                        *slot = (uint16_t)++log->n_keys;
                        first = true;
                }
                if (*slot > 0)
                        k = &log->keys[*slot - 1];
        } else {
                /* A linear scan: at most AJ_DENIAL_ARG_KEYS_MAX compares, well under the two
                 * ioctls that answered the notification. */
                for (size_t i = 0; i < log->n_arg_keys; i++) {
                        AjDenialKey *c = &log->keys[log->arg_keys[i]];
                        if (c->nr == d->nr && c->arch == d->arch && c->has_sub == has_sub && c->sub == sub) {
                                k = c;
                                break;
                        }
                }
                if (!k && log->n_arg_keys < AJ_DENIAL_ARG_KEYS_MAX && log->n_keys < AJ_DENIAL_KEYS_MAX) {
                        k = &log->keys[log->n_keys];
                        denial_key_init(k, d, has_sub, sub);
                        log->arg_keys[log->n_arg_keys++] = (uint16_t)log->n_keys++;
                        first = true;
                }
        }
        if (!k)
                k = &log->overflow;

        log->total++;
        k->count++;
        if (ret_key)
                *ret_key = k;
        /* The first of a key is always named; the table's bounds bound those reports. */
        if (first || aj_ratelimit_allow(&log->repeats, now_ns))
                return true;
        k->suppressed++;
        log->suppressed++;
        return false;
}

bool aj_ratelimit_charge(AjRateLimit *rl, uint64_t now_ns, double amount)
{
        ratelimit_refill(rl, now_ns);
        rl->tokens -= amount;
        return rl->tokens >= 0;
}

uint64_t aj_ratelimit_debt_ns(const AjRateLimit *rl)
{
        if (rl->tokens >= 0 || rl->per_sec <= 0)
                return 0;
        return (uint64_t)(-rl->tokens / rl->per_sec * 1e9) + 1;
}
