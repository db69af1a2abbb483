/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The orchestrator: the one place that knows the order of a run's steps. Each step has
 * its undo; a run does the steps in order, supervises the jail when all of them are done,
 * writes the outcome, and then undoes what was done, in reverse, on every path (also the
 * step that failed, whose undo copes with what it left half made).
 *
 * The steps that prepare the run are in src/jail-plan.c, the supervisor that runs the jail in
 * src/supervisor/ (supervise.c wires its parts together; records.c writes run.json).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentjail/exit-codes.h"
#include "doctor.h"
#include "jail.h"
#include "log.h"
#include "ns.h"
#include "run.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/strv.h"

typedef struct {
        const char *done;       /* for `run -vv`: start-up cost is a product feature; NULL: quiet */
        int (*run)(Run *run);   /* logs its own failure */
        void (*undo)(Run *run); /* NULL: nothing to undo; idempotent, copes with a half-done step */
} Step;

/* ---- the steps ------------------------------------------------------------------------ */

/* Was `sig` ignored when we were started (exec keeps only SIG_IGN and SIG_DFL)? */
static bool inherited_ignored(int sig)
{
        struct sigaction sa;
        return sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

/* Signals are taken through a signalfd; block them before anything is forked (first of
 * all: until then a signal takes its default action, which ends us before anything of the
 * run exists). One that would end a process and that we were started with ignored stays
 * ignored for the whole run, neither acted on nor forwarded: a background job of a
 * non-interactive shell ignores SIGINT and SIGQUIT (the terminal's ^C is the foreground
 * job's), nohup SIGHUP. Blocked, the kernel would queue it all the same (it never drops a
 * blocked signal) and the loop would forward it to the jail: so it was, but for the
 * run's first moments, before this step. SIGWINCH and SIGCONT the terminal relay needs. */
static int block_signals(Run *run)
{
        sigemptyset(&run->sigmask);
        static const int handled[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
        for (size_t i = 0; i < ARRAY_SIZE(handled); i++)
                if (handled[i] == SIGWINCH || handled[i] == SIGCONT || !inherited_ignored(handled[i]))
                        sigaddset(&run->sigmask, handled[i]);
        sigprocmask(SIG_BLOCK, &run->sigmask, &run->old_sigmask);
        signal(SIGPIPE, SIG_IGN);
        /* Inherited SIG_IGN would have the kernel reap our children (init, the watchdog)
         * before waitid() can see how they ended. */
        signal(SIGCHLD, SIG_DFL);
        return 0;
}

/* Pipes and sockets made below must not land on 0, 1 or 2, which the jail's init
 * replaces with /dev/null. */
static int open_std_fds(Run *run)
{
        (void)run;
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
                        return -EBADF;
        return 0;
}

static int setup_terminal(Run *run) { return aj_sup_terminal_setup(&run->term, run->opts->tty); }

static void restore_terminal(Run *run) { aj_sup_terminal_restore(&run->term); }

static void watchdog_changed(void *userdata)
{
        Run *run = userdata;
        if (!run->records_done) /* run.json has its new pid */
                aj_run_write_json(run);
}

static void watchdog_lost(void *userdata)
{
        Run *run = userdata;
        (void)aj_sup_breach_kill(&run->breach, "supervisor (watchdog lost)");
}

static const AjSupWatchdogOps watchdog_ops = { .changed = watchdog_changed, .lost = watchdog_lost };

/* Before anything exists on the host that a killed supervisor would leave behind. */
static int start_watchdog(Run *run)
{
        AjSupWatchdogConfig cfg = { .id = run->id,
                                    .run_dir = run->run_dir,
                                    .runtime_dir = run->runtime_dir,
                                    .hold_fds = { run->host_ids.fd[0], run->host_ids.fd[1], run->live_fd,
                                                  run->run_dir_lock },
                                    .prework = aj_run_places_prework,
                                    .prework_arg = run };
        cfg.term_fd = aj_sup_terminal_saved(&run->term, &cfg.term_saved);
        int r = aj_sup_watchdog_start(&run->watchdog, &cfg, &watchdog_ops, run, &run->sink);
        if (r < 0)
                return aj_log_errno(r, "Cannot start the watchdog process");
        return 0;
}

static void finish_watchdog(Run *run) { aj_sup_watchdog_finish(&run->watchdog, run->cgroup_left); }

static int plan(Run *run) { return aj_run_plan(run, &run->cfg); }

static void remove_runtime_dir(Run *run)
{
        if (run->runtime_dir && !run->runtime_removed) {
                int r = aj_runtime_dir_remove(run->runtime_dir);
                if (r < 0)
                        aj_log_errno(r, "Failed to remove '%s'", run->runtime_dir);
                run->runtime_removed = true;
        }
}

static void destroy_cgroup(Run *run)
{
        if (run->cgroup) {
                /* The operator waits at most AJ_CGROUP_REMOVE_MS; what is left (processes still
                 * on their way out of a loaded host), the watchdog goes on removing
                 * (finish_watchdog, after this undo). An init not waited for (AJ_JAIL_EXIT_MS)
                 * is held by a process that has had as long to die: not waited for again. */
                int r = aj_cgroup_remove(run->cgroup, run->child.init_abandoned ? 0 : AJ_CGROUP_REMOVE_MS);
                run->cgroup_left = r < 0 && aj_cgroup_left(run->cgroup);
                pid_t wd = aj_sup_watchdog_pid(&run->watchdog);
                if (run->cgroup_left && wd > 0)
                        aj_warning("The run's cgroup still holds processes after %d s: its watchdog (pid %d) goes "
                                   "on removing it, for up to %d minutes",
                                   (run->child.init_abandoned ? AJ_JAIL_EXIT_MS : AJ_CGROUP_REMOVE_MS) / 1000, (int)wd,
                                   AJ_CGROUP_REMOVE_LATE_MS / 60000);
                else if (r < 0)
                        aj_log_errno(r, "Failed to remove the run's cgroup");
                aj_cgroup_free(run->cgroup);
                run->cgroup = NULL;
        }
        aj_run_trace_step(run, "cgroup removed");
}

static int make_pipes(Run *run)
{
        if (aj_sup_terminal_has_tty(&run->term))
                return 0;
        if (pipe2(run->out_pipe, O_CLOEXEC) < 0 || pipe2(run->err_pipe, O_CLOEXEC) < 0)
                return aj_log_errno(-errno, "Cannot create the output pipes");
        run->cfg.stdout_fd = run->out_pipe[1];
        run->cfg.stderr_fd = run->err_pipe[1];
        return 0;
}

static void close_pipes(Run *run)
{
        for (int i = 0; i < 2; i++) {
                if (run->out_pipe[i] >= 0)
                        close(run->out_pipe[i]);
                if (run->err_pipe[i] >= 0)
                        close(run->err_pipe[i]);
                run->out_pipe[i] = run->err_pipe[i] = -1;
        }
}

/* A user namespace refused or without its capabilities: what on this host explains it
 * (Ubuntu's AppArmor restriction, a sysctl), rather than a bare EPERM. */
static void userns_hint(int err)
{
        const char *hint = aj_doctor_userns_hint_here(err);
        if (hint)
                aj_error("%s", hint);
}

/* The child's config lives in memory it shares with us: the jail is cloned before the plan
 * exists, and makes its network namespace (a third of a millisecond) while we plan; GO
 * comes once its config is complete (publish_config). A reservation, not an allocation:
 * only the pages written exist; its size bounds what the plan, the command line and the
 * environment may take (they are copied in whole). */
static int map_shared(Run *run)
{
        size_t size = 16u << 20;
        for (char **a = run->opts->argv; a && *a; a++)
                size += 2 * (strlen(*a) + 1 + sizeof(char *));
        for (char **e = environ; e && *e; e++)
                size += 2 * (strlen(*e) + 1 + sizeof(char *));
        int r = aj_shared_map(&run->shared, size);
        if (r < 0)
                return aj_log_errno(r, "Cannot map memory for the jail's configuration");
        run->jail_cfg = aj_shared_alloc(&run->shared, sizeof(*run->jail_cfg));
        if (!run->jail_cfg)
                return -ENOMEM;
        run->jail_cfg->stdout_fd = run->jail_cfg->stderr_fd = run->jail_cfg->cgroup_v2_fd = -1;
        if (aj_log_enabled(AJ_LOG_DEBUG))
                run->jail_cfg->trace = aj_shared_alloc(&run->shared, _AJ_CHILD_T_MAX * sizeof(uint64_t));
        return 0;
}

static int publish_config(Run *run)
{
        int r = aj_spawn_config_share(&run->cfg, &run->shared, run->jail_cfg);
        if (r < 0)
                return aj_log_errno(r,
                                    "The jail's configuration (mounts, command line, environment) does not fit "
                                    "in %zu MiB",
                                    run->shared.size >> 20);
        return 0;
}

static int clone_jail(Run *run)
{
        run->jail_cfg->cgroup_v2_fd = run->cgroup ? aj_cgroup_v2_fd(run->cgroup) : -1;
        /* Root-started: the jail's user namespace is its host ids' (src/spawn.h), unless
         * someone else may run as them: an account with that uid, in the initial
         * namespace, would have every capability in the jail's (setns into it, its mounts,
         * its network), not only what a process of the same uid has. Then it stays root's,
         * and the run's per-user budgets are counted as root's above it. */
        AjSpawnOwner owner = { .set = !run->rootless && !run->host_ids_shared,
                               .uid = run->host_uid,
                               .gid = run->host_gid };
        int r = aj_spawn_clone(run->jail_cfg, &owner, &run->h);
        if (r < 0) {
                aj_log_errno(r, "Cannot create the jail's namespaces (clone3)");
                userns_hint(r);
                return r;
        }
        /* The jail's copy is made: none for what we fork later (the workspace's hasher reads the
         * agent's files; the jail's init reads this after GO). */
        r = aj_shared_keep_from_forks(&run->shared);
        if (r < 0)
                return aj_log_errno(r, "Cannot keep the jail's configuration from other processes");
        /* The child has the write ends (the config keeps their numbers). */
        int *ends[] = { &run->out_pipe[1], &run->err_pipe[1] };
        for (size_t i = 0; i < ARRAY_SIZE(ends); i++)
                if (*ends[i] >= 0) {
                        close(*ends[i]);
                        *ends[i] = -1;
                }
        return 0;
}

/* The read ends to the output part, once it exists (after the plan, which sets its caps). */
static int wire_output(Run *run)
{
        if (aj_sup_terminal_has_tty(&run->term))
                aj_sup_output_no_pipes(&run->output); /* all output is the pty's */
        else {
                aj_sup_output_set_pipes(&run->output, run->out_pipe[0], run->err_pipe[0]);
                run->out_pipe[0] = run->err_pipe[0] = -1;
        }
        return 0;
}

/* The jail's mount namespace, opened while the child still has our credentials (it is our
 * unreaped child: the pid is its own). The watchdog holds it from JOINED on, so that its
 * teardown (every mount of the root, an RCU grace period: 0.3 ms here) happens in the
 * watchdog's exit after the run, not in the init's on the run's way out. Only an
 * optimisation: without it the init's exit tears the namespace down, as before. */
static int open_mount_ns(Run *run)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)run->h.pid);
        run->mnt_ns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (run->mnt_ns_fd < 0)
                aj_debug("Cannot open the jail's mount namespace (%s): %m; its init tears it down", path);
        return 0;
}

static void close_mount_ns(Run *run)
{
        if (run->mnt_ns_fd >= 0)
                close(run->mnt_ns_fd);
        run->mnt_ns_fd = -1;
}

static void hand_mount_ns_to_watchdog(Run *run)
{
        if (run->mnt_ns_fd < 0)
                return;
        int r = aj_sup_watchdog_hold(&run->watchdog, run->mnt_ns_fd);
        if (r < 0)
                aj_debug("The watchdog cannot hold the jail's mount namespace: %s", strerror(-r));
        close_mount_ns(run);
}

static int write_maps(Run *run)
{
        int r = aj_userns_write_maps(run->h.pid, run->profile->uid, run->host_uid, run->profile->gid, run->host_gid,
                                     run->rootless);
        if (r < 0) {
                aj_log_errno(r, "Cannot write the jail's user namespace maps (uid %u -> %u)",
                             (unsigned)run->profile->uid, (unsigned)run->host_uid);
                userns_hint(r);
                return r;
        }
        return 0;
}

/* run.start goes first in the chain; the child reads GO only after this write. */
static int release_jail(Run *run)
{
        aj_events_emit(run->events, "run.start",
                       json_pack("{s:o, s:s, s:s?, s:s?, s:i, s:I, s:s, s:b, s:o*}", "command",
                                 aj_run_strv_json(run->opts->argv), "profile", run->profile->name, "digest",
                                 run->profile->digest, "profile_path", run->profile->path, "pid", (int)run->h.pid,
                                 "host_uid", (json_int_t)run->host_uid, "cwd", run->cwd, "tty",
                                 aj_sup_terminal_has_tty(&run->term), "hooks", aj_run_hooks_json(run)));
        int r = aj_spawn_go(&run->h);
        if (r < 0)
                return aj_log_errno(r, "Cannot release the jail");
        return 0;
}

/* The v1 directories and limits (hybrid hosts), while the child builds its root. */
/* The trees are made after the clone, while the child makes its network namespace, and
 * sent before the places are judged: the child only builds its root with them, and the
 * command waits for JOINED, which let_command_run() sends only for a judged plan. */
static int watch_one(void *userdata, int fd, const char *what)
{
        Run *run = userdata;
        int r = aj_sup_disk_add(&run->disk, fd, what);
        if (r < 0)
                return aj_log_errno(r, "limits.disk_free: cannot watch the free space on %s", what);
        return 0;
}

/* limits.disk_free: the filesystems the agent writes, through the trees the jail will
 * mount (before they go to the child); a run that would start below it is refused. */
static int watch_disk(Run *run)
{
        const AjProfile *p = run->profile;
        if (p->disk_free_set && p->disk_free == 0)
                return 0;
        int r = aj_mount_plan_each_writable(run->mount, watch_one, run);
        /* And the run directory, whatever the workspace: the agent's output, its events, the
         * model bodies recorded for it go there (each capped, together more than a nearly
         * full state dir may have), and its records must still be written after a breach. */
        if (r >= 0) {
                int fd = open(run->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                _cleanup_free_ char *what = NULL;
                if (fd < 0)
                        r = aj_log_errno(-errno, "limits.disk_free: cannot open '%s'", run->run_dir);
                else if (asprintf(&what, "the run directory '%s' (its logs, events and recorded bodies)",
                                  run->run_dir) < 0) {
                        close(fd);
                        r = -ENOMEM;
                } else
                        r = watch_one(run, fd, what);
        }
        if (r < 0)
                return r == -E2BIG ? aj_log_errno(r, "limits.disk_free: the agent writes to more than %d filesystems",
                                                  AJ_DISK_MAX_FS)
                                   : r;
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_sup_disk_start(&run->disk, &err);
        if (r < 0)
                aj_error("%s: %s", p->path ? p->path : p->name, aj_error_text(&err, r));
        return r;
}

/* A send to the child that finds it gone (it failed a step of its own meanwhile: a mount
 * refused, its network) is no failure of the supervisor's step: the child's report is in the
 * socket, which the loop reads and reports (as for JOINED, let_command_run), and the command
 * never runs, since JOINED never reaches it. Failed there, the run said "Cannot hand the jail
 * its v1 cgroups: Broken pipe" (6 of 60 runs of a refused bind) in place of why. */
static bool child_gone(int r) { return r == -EPIPE || r == -ECONNRESET; }

static int send_trees(Run *run)
{
        int r = aj_spawn_send_trees(&run->h, run->mount);
        aj_mount_plan_close_fds(run->mount); /* the child has them now */
        if (child_gone(r))
                return 0;
        if (r < 0)
                return aj_log_errno(r, "Cannot hand the mount trees to the jail");
        return 0;
}

static int join_cgroups(Run *run)
{
        if (!run->cgroup)
                return 0;
        _cleanup_free_ char *unenforced = NULL;
        _cleanup_(aj_error_clear) AjError cg_err = {};
        int r = aj_cgroup_create_rest(run->cgroup, &unenforced, &cg_err);
        if (r < 0) {
                aj_error("Cannot enforce the profile's limits: %s", aj_error_text(&cg_err, r));
                aj_error("Refusing to start (add \"limits\" to the profile's \"allow_degraded\" to run "
                         "without them)");
                return r;
        }
        if (unenforced)
                aj_run_record_degraded(run, "limits", unenforced);
        if ((r = aj_run_mark_host_ids(run)) < 0)
                return r;
        /* A jail cloned into its v2 cgroup (or with none) moves itself into the v1 ones
         * (aj_cgroup_v1_task_fds(): no RCU grace period to wait for). The clone enters the
         * v2 cgroup whenever there is one (or fails), so the other branch does not run
         * today: kept so that a jail outside its v2 cgroup would be moved, never left. */
        if (aj_cgroup_v2_fd(run->cgroup) >= 0 && !run->h.in_v2_cgroup) {
                r = aj_cgroup_attach(run->cgroup, run->h.pid, false);
                if (r < 0)
                        return aj_log_errno(r, "Cannot move the jail into its cgroup");
                return 0;
        }
        int fds[AJ_CGROUP_V1_MAX];
        size_t n = 0;
        r = aj_cgroup_v1_task_fds(run->cgroup, fds, ARRAY_SIZE(fds), &n);
        if (r < 0)
                return aj_log_errno(r, "Cannot open the run's v1 cgroups for the jail to join");
        for (size_t i = 0; i < n; i++) {
                if (r >= 0)
                        r = aj_spawn_send_join(&run->h, fds[i]);
                close(fds[i]);
        }
        if (r < 0 && !child_gone(r))
                return aj_log_errno(r, "Cannot hand the jail its v1 cgroups");
        return 0;
}

static int start_loop(Run *run)
{
        int r = aj_run_loop_start(run, &run->sigmask);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up the supervisor's event loop");
        return 0;
}

/* A run whose gateway records (llm.record "digest" or "full") can be replayed, from where
 * it started: the workspace's digest, taken in the background once the command runs
 * (src/supervisor/workspace-start.c), so a large tree never delays the start. An overlay's
 * lower layer is that workspace, which the run never writes (its changes go to the upper
 * dir). Its directory is opened here, before the command runs, and must be the one the
 * plan checked: the hasher walks from it, never from the path the agent may reroute. */
static bool wants_workspace_digest(const Run *run)
{
        const AjProfile *p = run->profile;
        return aj_mount_plan_workspace_source(run->mount) && p->n_llm_providers > 0 &&
               p->llm_record != AJ_LLM_RECORD_OFF;
}

static void open_workspace_root(Run *run)
{
        const char *ws = aj_mount_plan_workspace_source(run->mount);
        dev_t dev;
        ino_t ino;
        int r = aj_mount_plan_workspace_id(run->mount, &dev, &ino) ? 0 : -ENODATA;
        if (r >= 0)
                r = aj_sup_workspace_start_open(&run->ws_start, ws, dev, ino);
        if (r < 0) {
                aj_warning("Cannot digest the workspace '%s' (a replay cannot check its start): %s", ws,
                           r == -ESTALE ? "it is not the directory the jail's mounts were checked with" : strerror(-r));
                run->workspace_start = json_pack("{s:s, s:s}", "path", ws, "error", strerror(-r));
        }
}

/* If this fails the child is already gone, and its own error report is in the socket. */
static int let_command_run(Run *run)
{
        /* Fail closed: never a command whose mounts were not judged. */
        if (!aj_mount_plan_places_judged(run->mount)) {
                aj_error("The jail's mounts were not checked against the sensitive places; refusing to start");
                return -EPERM;
        }
        if (wants_workspace_digest(run))
                open_workspace_root(run);
        /* The ctime rule's start: nothing in the jail has run the command before JOINED. */
        run->since_ns = aj_now_realtime_coarse_ns();
        (void)aj_spawn_joined(&run->h);
        hand_mount_ns_to_watchdog(run);
        aj_run_write_json(run);
        return 0;
}

/* Its process exits on its own once the trees are prepared; reaped at the end, it is never
 * waited for on the way to the command. */
static void reap_idmap_holder(Run *run)
{
        aj_userns_idmap_reap(run->idmap_holder);
        run->idmap_holder = 0;
}

/* run.exit's usage is read at the run's end, on the way from the command's exit to agentjail's:
 * its counter files opened now, while the command runs, are read there without an open and a
 * close each (cgroup.h aj_cgroup_keep_counters). Not kept (fds short), they are opened then. */
static int keep_cgroup_counters(Run *run)
{
        if (run->cgroup)
                (void)aj_cgroup_keep_counters(run->cgroup);
        return 0;
}

static int start_workspace_digest(Run *run)
{
        const AjProfile *p = run->profile;
        const char *ws = aj_mount_plan_workspace_source(run->mount);
        if (!wants_workspace_digest(run) || run->ws_start.root_fd < 0)
                return 0;
        bool overlay = p->workspace_mode == AJ_WORKSPACE_OVERLAY && run->overlay_dir;
        int r = aj_sup_workspace_start(&run->ws_start, run->loop, overlay, run->since_ns);
        if (r < 0) {
                aj_warning("Cannot digest the workspace '%s' (a replay cannot check its start): %s", ws, strerror(-r));
                run->workspace_start = json_pack("{s:s, s:s}", "path", ws, "error", strerror(-r));
                return 0;
        }
        aj_run_trace_step(run, "workspace digest started in the background");
        return 0;
}

/* The checklist. After the clone two things run side by side: the child makes its network
 * namespace and builds its root (it waits for the trees first), while the supervisor does
 * the steps from write_maps to start_loop (about a millisecond each) and the LLM provider
 * hosts' lookups, sent by the plan, are answered; the command waits for JOINED, after
 * their addresses are reserved. `run -vv` prints both, on one clock. */
static const Step steps[] = {
        { NULL, block_signals, NULL }, /* put back last of all, below */
        { NULL, open_std_fds, NULL },
        { "prepared (profile, run dir)", aj_run_prepare, NULL },
        { NULL, aj_run_set_keys_aside, NULL }, /* before the first fork */
        { NULL, setup_terminal, restore_terminal },
        { NULL, start_watchdog, finish_watchdog },
        { "cgroup created", aj_run_setup_cgroup, destroy_cgroup },
        { "pipes made", make_pipes, close_pipes },
        { NULL, map_shared, NULL }, /* unmapped by run_free() */
        { "cloned", clone_jail, aj_run_kill_jail },
        { NULL, open_mount_ns, close_mount_ns },
        { "planned (mounts, seccomp, env)", plan, remove_runtime_dir },
        { "parts ready", aj_run_parts_init, aj_run_loop_close },
        { NULL, wire_output, NULL },
        { NULL, publish_config, NULL },
        { "maps written", write_maps, NULL },
        { NULL, release_jail, NULL },
        { "mount trees prepared", aj_run_setup_idmap, reap_idmap_holder },
        { NULL, watch_disk, NULL },
        { "mount trees sent", send_trees, NULL },
        { "places checked", aj_run_check_places, NULL },
        { "cgroups joined", join_cgroups, NULL },
        { "services opened", aj_run_setup_while_child_builds, NULL },
        { "loop started", start_loop, NULL },
        { NULL, aj_run_reserve_llm_addresses, NULL }, /* traces itself: a gateway's runs only */
        { "command let run", let_command_run, NULL },
        { NULL, keep_cgroup_counters, NULL },   /* after the command: never on its way */
        { NULL, start_workspace_digest, NULL }, /* the same */
};

/* ---- supervising, and the outcome ---------------------------------------------------- */

static void report_launch_error(Run *run)
{
        const AjChildMsg *m = &run->child.launch_error;
        int err = m->err > 0 ? m->err : EIO;
        if (m->stage == AJ_STAGE_MOUNT) {
                char desc[512];
                aj_error("Failed to %s: %s: %s", aj_spawn_stage_describe((AjSpawnStage)m->stage),
                         aj_mount_step_describe(run->mount, (size_t)m->step, desc, sizeof(desc)), strerror(err));
                if (err == ESTALE)
                        aj_error("The mount's source changed after agentjail checked it; refusing to mount it");
                if (err == EACCES && run->rootless)
                        aj_error("The jail builds its root as host uid %u: every directory above the paths it "
                                 "mounts (the runtime dir '%s', binds, the workspace) must be searchable by it",
                                 (unsigned)run->host_uid, run->paths.runtime_root);
                else if (err == EACCES)
                        /* Bind sources are opened by the supervisor; the root's mount point is not. */
                        aj_error("The jail builds its root as host uid %u: every directory above the runtime "
                                 "dir '%s' must be searchable by it",
                                 (unsigned)run->host_uid, run->paths.runtime_root);
        } else if (m->stage == AJ_STAGE_RLIMIT) {
                aj_error("Failed to set %s: %s", aj_run_rlimit_name(run->rlimit_resources[m->step]), strerror(err));
        } else {
                aj_error("Failed to %s: %s", aj_spawn_stage_describe((AjSpawnStage)m->stage), strerror(err));
        }
        /* Under Ubuntu's restriction the clone works but the jail has no capabilities in it. */
        userns_hint(-err);
        aj_events_emit(run->events, "launch.error",
                       json_pack("{s:s, s:s}", "stage", aj_spawn_stage_describe((AjSpawnStage)m->stage), "error",
                                 strerror(err)));
}

/* -vv: init's steps, on the supervisor's clock (the same CLOCK_MONOTONIC). */
static void trace_init_steps(const Run *run)
{
        const uint64_t *trace = run->jail_cfg ? run->jail_cfg->trace : NULL;
        for (int t = 0; trace && t < _AJ_CHILD_T_MAX; t++)
                if (trace[t])
                        aj_debug("+%.3f ms %s", (double)(trace[t] - run->t0) / 1e6,
                                 aj_child_trace_name((AjChildTrace)t));
}

/* Every step done: the jail runs until init exits and its output is out. */
static int supervise(Run *run)
{
        (void)aj_run_loop(run);
        aj_sup_terminal_restore(&run->term); /* before any message below */
        aj_run_trace_step(run, "event loop done");
        trace_init_steps(run);
        aj_run_kill_jail(run);
        aj_run_write_final_records(run); /* unless init's report already did */
        if (run->child.launch_failed)
                report_launch_error(run);
        if (run->child.exec_failed) {
                int err = run->child.exec_error.err;
                const char *cmd = run->opts->argv[0];
                if (run->child.exec_error.stage == AJ_STAGE_EXEC && (err == ENOENT || err == ENOTDIR))
                        aj_error("'%s': command not found in the jail", cmd);
                else
                        aj_error("Cannot %s '%s': %s",
                                 aj_spawn_stage_describe((AjSpawnStage)run->child.exec_error.stage), cmd,
                                 strerror(err));
        }
        return run->final_status;
}

/* On every path once the run has records: a failed one's run.exit, --json, the alert's
 * end, and the anchor moved past events written after the final run.json. */
static void finish_records(Run *run, bool supervised)
{
        if (!run->events)
                return;
        if (!supervised)
                aj_run_write_launcher_error(run);
        aj_sup_terminal_restore(&run->term);
        aj_sup_output_reset_terminals(&run->output);
        if (run->opts->json && run->final_rec) {
                /* json_dumps escapes C0 only; the record holds names the agent chose. */
                _cleanup_free_ char *text = json_dumps(run->final_rec->doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
                _cleanup_free_ char *shown = text ? aj_json_text_hidden_escaped(text) : NULL;
                if (shown)
                        fprintf(stderr, "%s\n", shown);
        }
        aj_sup_alert_finish(&run->alert);
        aj_run_refresh_anchor(run);
        (void)aj_run_room_release(run->run_dir); /* the records are written */
}

/* Memory and fds, after every undo. */
static void run_free(Run *run)
{
        aj_sup_output_done(&run->output);
        aj_sup_terminal_done(&run->term);
        aj_spawn_handle_done(&run->h);
        aj_shared_unmap(&run->shared); /* the jail's config and trace stamps with it */
        for (int i = 0; i < 2; i++)
                if (run->proxy_fds[i] >= 0)
                        close(run->proxy_fds[i]);
        aj_run_parts_done(run);
        aj_sup_denials_free(&run->denials);
        aj_meter_free(run->meter);
        aj_reserved_lookups_free(run->llm_host_lookups);
        aj_net_policy_free(run->net_policy);
        aj_net_policy_free(run->net_ask);
        free(run->jail_dir);
        aj_cgroup_free(run->cgroup);
        aj_mount_plan_free(run->mount);
        aj_bpf_program_free(&run->bpf);
        aj_events_close(run->events);
        /* After the last record (and the watchdog's 'D'): only now may the directory go. A
         * watchdog still removing the cgroup ('C') shares both locks' open files and records
         * cgroup.removed or cgroup.left later: it keeps them until it exits (the directory is
         * not removed under it, the run stays live meanwhile). */
        bool watchdog_keeps = run->cgroup_left;
        aj_run_dir_unhold(&run->run_dir_lock, watchdog_keeps);
        aj_profile_free(run->profile);
        aj_paths_done(&run->paths);
        /* Last: every undo has run, nothing of the jail runs as these ids any more. */
        aj_host_id_lease_release(&run->host_ids);
        aj_run_live_release(run->live_fd, watchdog_keeps);
        if (run->runtime_hold_fd >= 0)
                close(run->runtime_hold_fd);
        aj_strv_free(run->envp);
        json_decref(run->degraded);
        json_decref(run->resolved_profile);
        json_decref(run->workspace_start);
        aj_run_record_free(run->final_rec);
        free(run->name);
        free(run->run_dir);
        free(run->overlay_dir);
        free(run->overlay_lower);
        free(run->runtime_dir);
        free(run->root_mountpoint);
        free(run->cwd);
}

int aj_jail_run(const AjRunOptions *opts)
{
        Run run = {
                .opts = opts,
                .h = { .pidfd = -1, .sync_fd = -1 },
                .out_pipe = { -1, -1 },
                .err_pipe = { -1, -1 },
                .proxy_fds = { -1, -1 },
                .mnt_ns_fd = -1,
                .run_dir_lock = -1,
                .cfg = { .stdout_fd = -1, .stderr_fd = -1, .cgroup_v2_fd = -1 },
                .shared = AJ_SHARED_INIT,
                .sigfd = -1,
                .watchdog = AJ_SUP_WATCHDOG_INIT,
                .host_ids = AJ_HOST_ID_LEASE_INIT,
                .live_fd = -1,
                .runtime_hold_fd = -1,
                .term = AJ_SUP_TERMINAL_INIT,
                .output = AJ_SUP_OUTPUT_INIT,
                .denials = AJ_SUP_DENIALS_INIT,
                .alert = AJ_SUP_ALERT_INIT,
                .ws_start = AJ_SUP_WORKSPACE_START_INIT,
        };
        run.degraded = json_array();
        run.started_ns = aj_now_realtime_ns();
        run.t0 = aj_now_monotonic_ns();

        size_t done = 0;
        while (done < ARRAY_SIZE(steps) && steps[done].run(&run) >= 0) {
                if (steps[done].done)
                        aj_run_trace_step(&run, steps[done].done);
                done++;
        }
        bool supervised = done == ARRAY_SIZE(steps);
        int status = supervised ? supervise(&run) : AJ_EXIT_LAUNCHER;
        finish_records(&run, supervised);
        /* The failed step too: its undo copes with what it left half made. */
        for (size_t i = supervised ? done : done + 1; i-- > 0;)
                if (steps[i].undo)
                        steps[i].undo(&run);
        aj_run_trace_step(&run, "cleaned up");
        run_free(&run);
        /* After everything: a signal still pending must not end us before the output is out. */
        sigprocmask(SIG_SETMASK, &run.old_sigmask, NULL);
        return status;
}
