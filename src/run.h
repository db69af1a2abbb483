/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One run in the supervisor: what it is (set up by the steps in src/jail.c and
 * src/jail-plan.c), the jail's process, the services in the loop, and the supervisor's
 * parts (src/supervisor/), each owning its own state behind its own functions. Internal
 * to the orchestrator and the supervisor; the parts themselves never see it.
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "cgroup.h"
#include "control.h"
#include "events.h"
#include "hooks.h"
#include "host-id-pool.h"
#include "jail.h"
#include "meter.h"
#include "mount.h"
#include "net.h"
#include "profile.h"
#include "proxy.h"
#include "resolve.h"
#include "run-record.h"
#include "seccomp-filter.h"
#include "spawn.h"
#include "state.h"
#include "supervisor/alert.h"
#include "supervisor/breach.h"
#include "supervisor/cgroup-events.h"
#include "supervisor/denials.h"
#include "supervisor/llm.h"
#include "supervisor/operator.h"
#include "supervisor/output.h"
#include "supervisor/sink.h"
#include "supervisor/terminal.h"
#include "supervisor/disk.h"
#include "supervisor/wall.h"
#include "supervisor/watchdog.h"
#include "supervisor/work.h"
#include "supervisor/workspace-start.h"
#include "util/loop.h"
#include "util/shared.h"

/* The run's runtime dir as the jail sees it. */
#define AJ_JAIL_DIR "/run/agentjail"
/* The broker's socket in it ($AGENTJAIL_BROKER; `--hooks` pins it in the hook command). */
#define AJ_BROKER_SOCKET "broker.sock"
/* Where this binary is bind-mounted in the jail (in the root tmpfs: no host file needed). */
#define AJ_JAIL_BIN "/opt/agentjail/bin"

/* What the jail's child and init reported. */
typedef struct {
        bool launch_failed;
        AjChildMsg launch_error;
        /* init reported the command forked (AJ_MSG_STARTED): only from then on are signals
         * forwarded to it; those taken before wait in `held_signals` (supervise.c). */
        bool started;
        sigset_t held_signals;
        bool exec_failed;
        AjChildMsg exec_error;
        bool have_status;
        int cmd_status;
        bool init_exited;
        /* Its exit did not come within AJ_JAIL_EXIT_MS of the jail's end (a process of the
         * jail that does not die holds the pid namespace's teardown in it): not waited for. */
        bool init_abandoned;
        siginfo_t init_info;
} AjRunChild;

/* How long the jail's init may take to exit once the jail is ending (its command's status
 * reported, or the jail killed): the kernel tears the pid namespace down in init's exit,
 * reaping every process in it, and one that does not die (in uninterruptible sleep, or
 * frozen) holds it there as long. The same bound as the cgroup's removal. */
#define AJ_JAIL_EXIT_MS AJ_CGROUP_REMOVE_MS

typedef struct {
        /* what the run is */
        const AjRunOptions *opts;
        AjProfile *profile;
        AjPaths paths;
        char id[AJ_RUN_ID_LEN + 1];
        char *name;
        char *run_dir;
        char *overlay_dir;   /* workspace mode overlay: <run_dir>/workspace (upper/, work/) */
        char *overlay_lower; /* ... and the workspace it covers */
        char *runtime_dir;
        char *jail_dir; /* <runtime>/<id>/jail, bound at /run/agentjail */
        char *root_mountpoint;
        char *cwd;
        json_t *workspace_start; /* run.json's workspace_start (replayable runs), owned */
        uint64_t since_ns;       /* coarse realtime just before the command may run (the ctime rule) */
        AjEventLog *events;
        AjSupEventLog event_log; /* the parts' view of it: */
        AjSupSink sink;
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
        /* root-started: the lock on host_uid's slot (src/host-id-pool.h), also the watchdog's;
         * held until every undo is done (the jail's processes are gone) */
        AjHostIdLease host_ids;
        /* the lock on the run directory's live.lock (run-record.h), also the watchdog's: the
         * run is live while one of us holds it */
        int live_fd;
        /* root-started with host ids someone else may run as ("host_ids" in allow_degraded):
         * the jail's user namespace stays root's (src/spawn.h's AjSpawnOwner) */
        bool host_ids_shared;
        bool rootless;
        uint64_t wall_cap_ns;                 /* meters.wall / --cap wall= */
        int rlimit_resources[AJ_MAX_RLIMITS]; /* which rlimit each index of the spawn config is */
        rlim_t core_limit;                    /* the jail's RLIMIT_CORE with limits.core false (plan_core_limit) */

        /* the jail */
        sigset_t sigmask, old_sigmask; /* taken through the signalfd; the caller's, put back */
        AjSpawnConfig cfg;
        AjSpawnHandle h;
        AjRunChild child;
        int out_pipe[2], err_pipe[2]; /* until the clone: the command's stdout and stderr */
        int proxy_fds[2];             /* HTTP, SOCKS5 listeners from the child, until the proxy takes them */
        int mnt_ns_fd;                /* the jail's mount namespace, until the watchdog holds it */
        /* the run directory's life lock (state.h aj_run_dir_create), also the watchdogs';
         * let go of last, once every record is written */
        int run_dir_lock;
        AjShared shared;         /* shared with the jail child: its copy of the config */
        AjSpawnConfig *jail_cfg; /* in `shared`: complete from publish_config() on */

        /* the supervisor: its loop and its parts */
        AjLoop *loop;
        int sigfd;
        AjLoopIo *sig_io, *pidfd_io, *sync_io;
        AjLoopTimer drain_timer; /* after init exits: how long the output may take */
        AjLoopTimer exit_timer;  /* from the jail's end: how long init's exit may take */
        bool drain_expired;
        bool may_spin;       /* more than one CPU: poll after broker traffic */
        uint64_t spin_until; /* ... until then (BROKER_SPIN_NS) */
        AjSupWatchdog watchdog;
        AjSupTerminal term;
        AjSupOutput output;
        AjSupWork work;
        AjSupDenials denials;
        AjSupWall wall;
        AjSupDisk disk; /* limits.disk_free */
        AjSupBreach breach;
        AjSupAlert alert;
        AjSupCgroupEvents cg_events;
        AjSupWorkspaceStart ws_start; /* the workspace's digest, taken while the run goes on */

        /* the services in the loop */
        AjMeter *meter;
        AjBroker *broker;
        AjControl *control;
        AjProxy *proxy;
        AjNetPolicy *net_policy;
        AjNetPolicy *net_ask;                /* network.ask + --ask-net, or NULL */
        AjReservedLookups *llm_host_lookups; /* the provider hosts' names, from the plan to the command */
        AjLoopIo *broker_io, *control_io, *proxy_io, *llm_io;
        AjSupLlm llm; /* the LLM gateway (llm.providers), its metering */
        AjHooks hooks;
        AjControlOps control_ops;

        /* the records */
        bool records_done; /* run.exit and the final run.json are written */
        bool runtime_removed;
        int runtime_hold_fd; /* the runtime dir, held (state.h aj_runtime_dir_hold); -1 */
        bool cgroup_left;    /* its removal hit AJ_CGROUP_REMOVE_MS: the watchdog finishes it */
        pid_t idmap_holder;  /* the idmap namespace's process, exiting, to reap; 0 none */
        int final_status;
        AjRunRecord *final_rec; /* the final run.json, for --json */
} Run;

/* src/jail-plan.c: the steps that prepare the run */
void aj_run_trace_step(const Run *run, const char *step);
int aj_run_prepare(Run *run);
int aj_run_set_keys_aside(Run *run);
int aj_run_plan(Run *run, AjSpawnConfig *cfg);
int aj_run_setup_cgroup(Run *run);
/* The run's cgroup directories named in its host id slot's file (host-id-pool.h): after each
 * is made, before a process is in it. */
int aj_run_mark_host_ids(Run *run);
int aj_run_setup_idmap(Run *run);
int aj_run_check_places(Run *run);
void aj_run_places_prework(void *arg, int fd);
int aj_run_setup_while_child_builds(Run *run);
int aj_run_reserve_llm_addresses(Run *run);
void aj_run_record_degraded(Run *run, const char *what, const char *why);
json_t *aj_run_strv_json(char *const *v);
/* --hooks: {"agent", "settings" (the file in the jail), "command"}, NULL without. */
json_t *aj_run_hooks_json(const Run *run);
const char *aj_run_rlimit_name(int resource);

/* src/supervisor/supervise.c: the parts wired together, the loop */
int aj_run_parts_init(Run *run);
int aj_run_loop_start(Run *run, const sigset_t *mask);
/* A signal read from the supervisor's signalfd (userdata: the Run), as the loop handles
 * it: the terminal's, or forwarded to the jail while it lives. */
void aj_run_handle_signal(const struct signalfd_siginfo *si, void *userdata);
int aj_run_loop(Run *run);
void aj_run_loop_close(Run *run);
void aj_run_kill_jail(Run *run);
void aj_run_release_services(Run *run);
/* The gateway closed: calls still in flight are settled and recorded (before run.exit). */
void aj_run_release_llm(Run *run);
/* The proxy closed: connections still open (the jail is gone) and held host approvals are
 * recorded, net.connect and approval (before run.exit). */
void aj_run_release_proxy(Run *run);
void aj_run_parts_done(Run *run);

/* src/supervisor/records.c: run.json and the end of the chain */
void aj_run_write_json(Run *run);
void aj_run_write_final_records(Run *run);
void aj_run_write_launcher_error(Run *run);
void aj_run_refresh_anchor(Run *run);
/* The records' room (run-record.h): freed for a record that found no space, only once the
 * jail can no longer take it; 1 when freed. The event chain's room hook. */
int aj_run_room_use(void *run);
const char *aj_run_state(const Run *run, bool exited);
json_t *aj_run_meters_json(Run *run);

/* src/supervisor/operator.c: what operators ask through the control socket */
void aj_run_control_ops(Run *run, AjControlOps *ret);
