/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting the jail: clone3() into new namespaces, parent/child sync over a
 * SOCK_SEQPACKET pair, the child's setup sequence, and the pid-1 init that
 * reaps zombies and forwards signals to the command.
 *
 * Child errors never get logged from the child: it sends {stage, errno, step}
 * and exits; the supervisor turns that into one message and status 125.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <termios.h>

#include "mount.h"
#include "seccomp-filter.h"

typedef enum {
        AJ_STAGE_NONE = 0,
        AJ_STAGE_SYNC,
        AJ_STAGE_SETGROUPS,
        AJ_STAGE_SETGID,
        AJ_STAGE_SETUID,
        AJ_STAGE_CAPS_RAISE,
        AJ_STAGE_PDEATHSIG,
        AJ_STAGE_CGROUPNS,
        AJ_STAGE_HOSTNAME,
        AJ_STAGE_LOOPBACK,
        AJ_STAGE_PROXY,
        AJ_STAGE_MOUNT,
        AJ_STAGE_FDS,
        AJ_STAGE_RLIMIT,
        AJ_STAGE_CAPS_DROP,
        AJ_STAGE_NO_NEW_PRIVS,
        AJ_STAGE_SECCOMP,
        AJ_STAGE_SEND_LISTENER,
        AJ_STAGE_SIGNALS,
        AJ_STAGE_FORK,
        AJ_STAGE_SETSID,
        AJ_STAGE_STDIO,
        AJ_STAGE_EXEC,
        AJ_STAGE_TTY,
        AJ_STAGE_USERNS,
        AJ_STAGE_NETNS,
        AJ_STAGE_SECUREBITS,
        AJ_STAGE_CGROUP_JOIN,
        _AJ_STAGE_MAX,
} AjSpawnStage;

const char *aj_spawn_stage_describe(AjSpawnStage stage);

typedef enum {
        AJ_MSG_GO = 1,         /* supervisor -> child: id maps written, start setting up */
        AJ_MSG_JOINED,         /* supervisor -> child: moved into every cgroup hierarchy */
        AJ_MSG_ERROR,          /* child -> supervisor: setup failed at stage */
        AJ_MSG_LISTENER,       /* child -> supervisor: seccomp listener fd attached */
        AJ_MSG_STARTED,        /* init -> supervisor: command forked (pid inside the jail) */
        AJ_MSG_EXEC_FAILED,    /* command -> supervisor: execve failed with err */
        AJ_MSG_EXIT,           /* init -> supervisor: command's wait status */
        AJ_MSG_PROXY_LISTENER, /* child -> supervisor: a listener fd (step 0 HTTP, 1 SOCKS5, 2 the LLM gateway) */
        AJ_MSG_PTY,            /* child -> supervisor: the master of the jail's terminal */
        AJ_MSG_TREES,          /* supervisor -> child: detached mount trees (aj_spawn_send_trees) */
        AJ_MSG_JOIN,           /* supervisor -> child: a v1 `tasks` file to write "0" to (aj_spawn_send_join) */
} AjMsgType;

/* What the command gets as its standard input. Whatever the supervisor's own 0/1/2 are
 * (the operator's terminal), init replaces them with the jail's /dev/null. */
typedef enum {
        AJ_STDIN_INHERIT = 0, /* the supervisor's stdin (not a terminal: a file or pipe) */
        AJ_STDIN_NULL,        /* /dev/null */
        AJ_STDIN_PTY,         /* a new pseudo-terminal of the jail's devpts instance, also as 1
                               * and 2 and as the command's controlling terminal; the master
                               * goes to the supervisor (AJ_MSG_PTY) */
} AjSpawnStdin;

typedef struct {
        int32_t type;
        int32_t stage;
        int32_t err;    /* positive errno */
        int32_t step;   /* mount step for AJ_STAGE_MOUNT, rlimit index for AJ_STAGE_RLIMIT */
        int32_t status; /* wait status for AJ_MSG_EXIT */
        int32_t pid;
} AjChildMsg;

#define AJ_MAX_RLIMITS 16

/* `run -vv`: when the jail's init reached each of its steps (CLOCK_MONOTONIC ns, 0 = not
 * reached), stamped into memory shared with the supervisor (AjSpawnConfig.trace). */
typedef enum {
        AJ_CHILD_T_STARTED, /* running, after the clone */
        AJ_CHILD_T_GO,      /* told to go (maps written) */
        AJ_CHILD_T_CREDS,   /* ids and capabilities set */
        AJ_CHILD_T_NET,     /* hostname, loopback, listeners */
        AJ_CHILD_T_MOUNTS,  /* root built */
        AJ_CHILD_T_JOINED,  /* the supervisor's JOINED arrived */
        AJ_CHILD_T_SECCOMP, /* privileges dropped, filter loaded */
        AJ_CHILD_T_FORKED,  /* the command's process forked (about to exec) */
        AJ_CHILD_T_EXITED,  /* the command exited */
        _AJ_CHILD_T_MAX,
} AjChildTrace;

const char *aj_child_trace_name(AjChildTrace t);

typedef struct {
        bool rootless; /* ids mapped by an unprivileged user: setgroups is denied */
        uid_t uid;     /* inside the jail */
        gid_t gid;
        const char *hostname;
        const AjMountPlan *mount;
        const AjBpfProgram *seccomp;
        bool seccomp_listener;
        struct {
                int resource;
                struct rlimit limit;
        } rlimits[AJ_MAX_RLIMITS];
        size_t n_rlimits;
        /* The jail's user namespace's user.max_inotify_instances and _watches (0: not set):
         * its share of its host uid's budget when that uid is someone else's too (jail-plan.c,
         * plan_user_budgets). */
        uint32_t inotify_instances_max, inotify_watches_max;
        char **argv;
        char **envp;
        AjSpawnStdin stdin_mode;
        int stdout_fd, stderr_fd; /* write ends the command gets as 1 and 2 (-1 with a pty) */
        struct winsize winsize;   /* the pty's initial size (0x0: leave it) */
        bool have_termios;        /* the pty starts with these settings (the operator's) */
        struct termios termios;
        int cgroup_v2_fd;      /* CLONE_INTO_CGROUP target, or -1 */
        bool proxy_listeners;  /* create the egress proxy's listeners on the jail's 127.0.0.1 */
        bool gateway_listener; /* ... and the LLM gateway's (AJ_GATEWAY_PORT) */
        uint64_t *trace;       /* _AJ_CHILD_T_MAX stamps in shared memory, or NULL */
} AjSpawnConfig;

typedef struct {
        pid_t pid; /* init, in the supervisor's pid namespace */
        int pidfd;
        int sync_fd; /* supervisor's end */
        bool in_v2_cgroup;
} AjSpawnHandle;

/* The ids the jail's user namespace is created as (its owner, in the kernel's words). A
 * process of the owner's euid in the initial namespace has every capability in it (setns
 * into it and the jail's other namespaces, ptrace of its processes): only ids nobody else
 * may run as (src/jail.c's clone_jail()). */
typedef struct {
        bool set; /* false: the caller's (rootless: the caller's are the jail's host ids) */
        uid_t uid;
        gid_t gid;
} AjSpawnOwner;

/* Clone the jail's init (into cfg->cgroup_v2_fd). The child waits for aj_spawn_go(). cfg
 * may live in memory shared with the child (src/util/shared.h) and be completed after the
 * clone, with aj_spawn_config_share(): until GO the child reads only cfg->trace.
 *
 * A root-started run's owner is its host ids: the kernel counts the budgets of a user
 * namespace's processes (ucounts: inotify instances and watches, pending signals and POSIX
 * timers, mqueue bytes, user namespaces...) at every level up to the initial namespace, and
 * at the level above a namespace they are its owner's. Owned by root, every jail's counts
 * would be root's: one budget for all the jails on the host and root's own processes.
 * The supervisor's effective ids are the owner's for the clone only (its capabilities kept:
 * SECBIT_NO_SETUID_FIXUP, put back after, in the child too); *ret is written on success. */
int aj_spawn_clone(const AjSpawnConfig *cfg, const AjSpawnOwner *owner, AjSpawnHandle *ret);
/* A deep copy of src into dst, both its strings and its plan in s (dst lives there too),
 * keeping dst's trace and cgroup_v2_fd: what the child reads after GO. -E2BIG when s is
 * full. */
struct AjShared;
int aj_spawn_config_share(const AjSpawnConfig *src, struct AjShared *s, AjSpawnConfig *dst);
int aj_spawn_go(AjSpawnHandle *h);
/* After aj_spawn_go(): the detached trees aj_mount_plan_prepare() made after the clone
 * (none: still sent, the child waits for them before it builds its root). */
int aj_spawn_send_trees(AjSpawnHandle *h, const AjMountPlan *plan);
/* The child's side: the trees by step (*ret: n_steps entries, -1 for none; malloc'd). The
 * supervisor is trusted, but messages that do not add up (a step out of range or twice,
 * fewer or more fds than steps, another message) fail with -EPROTO rather than mount
 * the wrong thing. AJ_SPAWN_TREES_PER_MSG fds travel in one message at most. */
#define AJ_SPAWN_TREES_PER_MSG 64
int aj_spawn_recv_trees(int sync_fd, size_t n_steps, int **ret);
/* After GO, once the child is in all its cgroups: it waits for this before its cgroup
 * namespace and the command. */
int aj_spawn_joined(AjSpawnHandle *h);

/* Hand the child a v1 `tasks` file of the run's cgroup (aj_cgroup_v1_task_fds()): before it
 * takes JOINED it writes "0" to each such file it got, moving itself (one thread) into that
 * hierarchy, and fails the start (AJ_STAGE_CGROUP_JOIN, step: which file) if a write fails.
 * The caller keeps task_fd. */
int aj_spawn_send_join(AjSpawnHandle *h, int task_fd);
/* Receive one message (non-blocking fd: -EAGAIN when none). *ret_fd gets a passed fd or -1.
 * Returns 0 on EOF (child side closed), 1 when a message was read. */
int aj_spawn_recv(int sync_fd, AjChildMsg *ret, int *ret_fd);
void aj_spawn_handle_done(AjSpawnHandle *h);
