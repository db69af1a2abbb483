/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state of one run in the supervisor, shared by the orchestrator (jail.c) and
 * the services it offers its modules and operators (supervisor-ops.c). Internal.
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <termios.h>

#include "broker.h"
#include "cgroup.h"
#include "control.h"
#include "events.h"
#include "hooks.h"
#include "jail.h"
#include "meter.h"
#include "mount.h"
#include "net.h"
#include "profile.h"
#include "proxy.h"
#include "quarantine.h"
#include "seccomp-filter.h"
#include "spawn.h"
#include "state.h"
#include "tty.h"
#include "util/loop.h"

typedef struct {
        int fd;      /* read end of the command's pipe */
        int out;     /* our own stdout/stderr, -1 once it failed (EPIPE) */
        int log;     /* stdout.log / stderr.log */
        bool eof;
        const char *name;  /* "stdout", "stderr": for log.truncated */
        uint64_t logged;   /* bytes in the log, at most logs.output_bytes */
        bool log_cut;      /* log.truncated recorded */
        /* Passing it on never blocks the supervisor: `out` reopened non-blocking (-1: could
         * not be, plain blocking writes), what a slow reader has not taken yet, and while
         * that is pending the jail's pipe is not read (the jail waits, not the loop). */
        int wfd;
        int wfd_restore;   /* out's file status flags to put back (shared with others), or -1 */
        AjLoopIo *io;      /* fd in the loop (while reading) */
        AjLoopIo *wio;     /* wfd in the loop, waiting for room */
        bool wfd_polled;   /* wfd is in the loop, waiting for room */
        bool reading;      /* fd is in the loop */
        char *pend;
        size_t pend_len, pend_off;
} OutputStream;

typedef struct {
        const AjRunOptions *opts;
        AjProfile *profile;
        AjPaths paths;
        char id[AJ_RUN_ID_LEN + 1];
        char *name;
        char *run_dir;
        char *overlay_dir;   /* workspace mode overlay: <run_dir>/workspace (upper/, work/) */
        char *overlay_lower; /* ... and the workspace it covers */
        char *runtime_dir;
        char *root_mountpoint;
        char *cwd;
        AjEventLog *events;
        AjCgroup *cgroup;
        AjMountPlan *mount;
        AjBpfProgram bpf;
        char **envp;
        json_t *degraded;
        json_t *resolved_profile; /* parsed once for every run.json write */
        uint64_t started_ns;
        uint64_t t0; /* monotonic, for -vv step timings */
        uid_t host_uid;
        gid_t host_gid;
        bool rootless;

        int watchdog_fd; /* write end: 'D' then close on a clean finish */
        pid_t watchdog_pid;
        int watchdog_pidfd; /* in the event loop: a dead watchdog is replaced or ends the run */
        int watchdog_restarts;

        AjSpawnHandle h;
        AjLoop *loop;
        int sigfd, listener, cg_event_fd;
        AjLoopIo *sig_io, *pidfd_io, *sync_io, *listener_io, *cg_io, *watchdog_io, *tty_io;
        AjLoopIo *broker_io, *control_io, *proxy_io, *alert_io;
        AjLoopTimer wall_timer;   /* profile wall: SIGTERM, then SIGKILL after the grace */
        AjLoopTimer drain_timer;  /* after init exits: how long the output may take */
        bool drain_expired;
        bool may_spin;            /* more than one CPU: poll after broker traffic */
        uint64_t spin_until;      /* ... until then (BROKER_SPIN_NS) */
        OutputStream streams[2];

        /* the jail's terminal (src/tty.c) */
        bool tty;                 /* the jail has a pty of its own */
        int term_fd;              /* the operator's terminal (stdin), -1 when stdin is none */
        struct termios term_saved;
        bool term_raw;            /* term_fd is in raw mode: restore term_saved */
        int winsize_fd;           /* where the window size comes from, or -1 */
        AjTtyRelay *tty_relay;
        OutputStream tty_log;     /* tty.log, the transcript: only its log and logged count */
        int tty_restore_flags[2]; /* stdin/stdout file status flags to put back, or -1 */

        /* outcome */
        bool launch_failed;
        AjChildMsg launch_error;
        bool exec_failed;
        AjChildMsg exec_error;
        bool have_status;
        int cmd_status;
        bool init_exited;
        siginfo_t init_info;
        bool wall_fired, wall_killed;
        AjDenialLog denials;
        /* The supervisor's own work for the agent (broker requests, seccomp denials, polling
         * for the next request), in ns, within WORK_SHARE of limits.cpu: in debt, the broker
         * and the seccomp listener are not read until work_timer fires (back-pressure). */
        AjRateLimit work_rl;
        AjLoopTimer work_timer;
        bool work_paused;
        uint64_t work_pauses, work_paused_ns, work_paused_at;
        AjCgroupStats last_stats;

        /* metering, operators, network (src/supervisor-ops.c) */
        AjMeter *meter;
        AjBroker *broker;
        AjControl *control;
        AjProxy *proxy;
        AjNetPolicy *net_policy;
        char *jail_dir;     /* <runtime>/<id>/jail, bound at /run/agentjail */
        bool frozen;
        bool quarantined, released;
        json_t *quarantine; /* {"since", "cap", "released", ...} or NULL */
        bool killed_by_policy; /* on_breach "kill" or an operator's kill */
        bool have_status_before_kill; /* the command had already exited when the kill came */
        uint64_t wall_remaining_ns; /* while frozen, the wall timer is paused */
        /* meters.wall / --cap wall=: a breach, not a kill; paused while frozen too */
        uint64_t wall_cap_ns;
        uint64_t wall_cap_remaining_ns;
        AjLoopTimer wall_cap_timer;
        bool has_wall_cap;
        uint64_t egress_used, egress_limit;
        /* logs.events_bytes: the agent's events past its share are refused, a breach */
        bool in_event_batch;
        uint64_t events_refused;
        AjAlert alert;
        AjLoopTimer alert_timer;
        AjHooks hooks;
        AjControlOps control_ops;
        int proxy_fds[2]; /* HTTP, SOCKS5 listeners from the child, until the proxy takes them */
        bool records_done; /* run.exit and the final run.json are written */
        bool runtime_removed;
        int rlimit_resources[AJ_MAX_RLIMITS]; /* which rlimit each index of the spawn config is */
        int final_status;
        json_t *final_doc;  /* the final run.json, for --json */
} Run;

/* supervisor-ops.c */
void aj_run_hooks(Run *run, AjHooks *ret);
void aj_run_control_ops(Run *run, AjControlOps *ret);
/* The run's state word for run.json and `ps`: running, frozen, quarantined, exited. */
const char *aj_run_state(const Run *run, bool exited);
/* Rewrite run.json (status "running"). Defined in jail.c. */
void aj_run_write_json(Run *run);
/* The alert's pidfd or timer fired. */
void aj_run_alert_event(Run *run, bool timer);
/* Freeze/thaw the run's cgroup with events; pause/resume the wall clock. */
int aj_run_freeze(Run *run, const char *by, const char *reason);
int aj_run_thaw(Run *run, const char *by);
/* Kill the jail (the whole cgroup) with a "kill" event: exit 123. */
int aj_run_kill(Run *run, const char *by);
/* An agent's event was refused (-EFBIG): events.jsonl is full; a breach the first time. */
void aj_run_events_full(Run *run);
/* Emit an event the agent's actions cause: within its share of logs.events_bytes. */
int aj_run_emit_agent(Run *run, const char *type, json_t *fields);
/* The wall-time cap expired: a breach. */
void aj_run_wall_cap_expired(Run *run);
/* {"limit", "used", "remaining"} in seconds, or NULL without a wall cap. */
json_t *aj_run_wall_cap_json(Run *run);
