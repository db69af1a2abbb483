/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's records, written by the supervisor: run.json (rewritten at every change of
 * state while the run lives, the final one with the outcome and the chain's anchor) and
 * the events that close the chain (supervisor.throttled, seccomp.suppressed, log.refused,
 * run.exit). A view over the parts: it reads them through their functions.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentjail/exit-codes.h"
#include "log.h"
#include "run.h"
#include "run-record.h"
#include "util/fd.h"
#include "util/macros.h"
#include "workspace.h"


const char *aj_run_state(const Run *run, bool exited) { return aj_sup_breach_state(&run->breach, exited); }

/* The meters with the wall cap, or NULL without meters. */
json_t *aj_run_meters_json(Run *run)
{
        json_t *m = run->meter ? aj_meter_to_json(run->meter, aj_now_monotonic_ns(), false) : NULL;
        json_t *wall = aj_sup_wall_cap_json(&run->wall);
        if (m && wall)
                json_object_set_new(m, "wall", wall);
        else
                json_decref(wall);
        return m;
}

typedef struct {
        int status; /* agentjail's exit status */
        int code;   /* -1 if none */
        int signal; /* -1 if none */
        const char *reason;
} Outcome;

static Outcome compute_outcome(const Run *run)
{
        Outcome o = { .status = AJ_EXIT_LAUNCHER, .code = -1, .signal = -1, .reason = "launcher-error" };
        if (run->child.launch_failed)
                return o;
        if (run->child.have_status) {
                if (WIFEXITED(run->child.cmd_status)) {
                        o.code = WEXITSTATUS(run->child.cmd_status);
                        o.status = o.code;
                        o.reason = "exited";
                } else if (WIFSIGNALED(run->child.cmd_status)) {
                        o.signal = WTERMSIG(run->child.cmd_status);
                        o.status = AJ_EXIT_SIGNAL_BASE + o.signal;
                        o.reason = "signaled";
                }
        } else if (run->child.init_exited || run->child.init_abandoned) {
                /* init itself died (OOM killer, SIGKILL at the wall limit): the whole jail went. */
                if (run->child.init_info.si_code == CLD_EXITED) {
                        o.code = run->child.init_info.si_status;
                        o.status = o.code;
                        o.reason = "exited";
                } else {
                        o.signal = run->child.init_info.si_status;
                        o.status = AJ_EXIT_SIGNAL_BASE + o.signal;
                        o.reason = "signaled";
                }
        }
        if (run->child.exec_failed) {
                o.reason = "exec-failed";
                o.status = run->child.exec_error.stage == AJ_STAGE_EXEC &&
                                           (run->child.exec_error.err == ENOENT || run->child.exec_error.err == ENOTDIR)
                                   ? AJ_EXIT_NOT_FOUND
                                   : AJ_EXIT_NOT_EXECUTABLE;
        }
        if (aj_sup_breach_killed(&run->breach) && !run->child.exec_failed) {
                o.reason = "killed";
                o.status = AJ_EXIT_KILLED;
        } else if (aj_sup_wall_fired(&run->wall) && !run->child.exec_failed)
                o.reason = "wall-limit";
        else if (aj_sup_cgroup_events_stats(&run->cg_events)->oom_kills > 0 && o.signal == SIGKILL)
                o.reason = "oom";
        return o;
}

static json_t *usage_json(const Run *run)
{
        const AjCgroupStats *s = aj_sup_cgroup_events_stats(&run->cg_events);
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "memory_peak", (json_int_t)s->memory_peak, "cpu_usec",
                         (json_int_t)s->cpu_usage_usec, "oom_kills", (json_int_t)s->oom_kills, "pids_max_events",
                         (json_int_t)s->pids_max_events, "seccomp_denied",
                         (json_int_t)aj_sup_denials_total(&run->denials), "seccomp_denied_by",
                         aj_sup_denials_by_key(&run->denials, false));
}

/* The parts' state as run.json's typed record (composed and serialised by run-record.c). */
static int compose_record(Run *run, const char *status, const Outcome *o, uint64_t ended_ns, AjRunRecord **ret)
{
        char started[40], ended[40], upper[4096];
        if (!run->resolved_profile) {
                _cleanup_free_ char *resolved = aj_profile_to_json(run->profile);
                if (resolved)
                        run->resolved_profile = json_loads(resolved, 0, NULL);
        }
        AjCgroupMode mode = AJ_CGROUP_MODE_NONE;
        (void)aj_cgroup_detect(&mode);
        json_t *llm = run->llm.n_providers ? aj_sup_llm_summary(&run->llm) : NULL;
        bool network = run->net_policy || aj_sup_breach_egress_used(&run->breach);
        const AjRunQuarantine *q = aj_sup_breach_quarantine(&run->breach);
        json_auto_t *command = aj_run_strv_json(run->opts->argv), *meters = run->meter ? aj_run_meters_json(run) : NULL,
                    *llm_copy = run->llm.n_providers ? (llm ? json_deep_copy(llm) : json_object()) : NULL,
                    *counters = network && run->proxy ? aj_proxy_stats(run->proxy) : NULL,
                    *usage = o ? usage_json(run) : NULL,
                    *cgroup_paths = aj_run_strv_json(run->cgroup ? aj_cgroup_paths(run->cgroup) : NULL),
                    *hooks = aj_run_hooks_json(run);
        AjRunRecord rec = {
                .id = run->id,
                .name = run->name,
                .profile_name = run->profile->name,
                .profile_path = run->profile->path,
                .profile_digest = run->profile->digest,
                .cwd = run->cwd,
                .replay_of = run->opts->replay_of,
                .tty = aj_sup_terminal_has_tty(&run->term),
                .started = aj_format_timestamp(run->started_ns, started, sizeof(started)),
                .ended = ended_ns ? aj_format_timestamp(ended_ns, ended, sizeof(ended)) : NULL,
                .status = status,
                .state = aj_run_state(run, o != NULL),
                .supervisor_pid = getpid(),
                .watchdog_pid = o ? 0 : aj_sup_watchdog_pid(&run->watchdog),
                .host_uid = run->host_uid,
                .host_gid = run->host_gid,
                .cgroup_mode = aj_cgroup_mode_name(mode),
                .quarantine = q ? *q : (AjRunQuarantine){ 0 },
                .network = { .present = network,
                             .counters = counters,
                             .egress_bytes = aj_sup_breach_egress_used(&run->breach),
                             .egress_limit = aj_sup_breach_egress_limit(&run->breach) },
                .shown = { .resolved = run->resolved_profile,
                           .command = command,
                           .meters = meters,
                           .llm = llm_copy,
                           .usage = usage,
                           .cgroup_paths = cgroup_paths,
                           .hooks = hooks,
                           .workspace_start = run->workspace_start,
                           .degraded = run->degraded },
        };
        if (run->overlay_dir) {
                snprintf(upper, sizeof(upper), "%s/%s", run->overlay_dir, AJ_OVERLAY_UPPER);
                rec.workspace = (AjRunWorkspace){ .present = true,
                                                  .mode = "overlay",
                                                  .path = run->overlay_lower,
                                                  .upper = upper,
                                                  .changes = "pending" };
                dev_t dev;
                ino_t ino;
                if (aj_mount_plan_workspace_id(run->mount, &dev, &ino)) {
                        rec.workspace.has_id = true;
                        rec.workspace.dev = (uint64_t)dev;
                        rec.workspace.ino = (uint64_t)ino;
                }
        }
        if (o)
                rec.exit = (AjRunExit){
                        .present = true, .status = o->status, .code = o->code, .signal = o->signal, .reason = o->reason
                };
        /* The anchor (see run-record.h): only when the chain is closed. A live run's count
         * would be stale at once, and would make a cut-off tail look like the end. */
        if (run->events && o) {
                rec.anchor = (AjRunAnchor){ .present = true,
                                            .count = aj_events_last_seq(run->events),
                                            .end = "run.exit" };
                snprintf(rec.anchor.last_sha256, sizeof(rec.anchor.last_sha256), "%s",
                         aj_events_last_hash(run->events));
        }
        return aj_run_record_compose(&rec, ret);
}

int aj_run_room_use(void *userdata)
{
        Run *run = userdata;
        /* Frozen, killed, or its command done (init exits right after saying so, and the
         * kernel kills what is left): freed while the agent still ran, the room would be
         * the agent's. */
        if (!aj_sup_breach_stopped(&run->breach) && !run->child.have_status && !run->child.init_exited)
                return 0;
        int r = aj_run_room_release(run->run_dir);
        if (r > 0)
                aj_warning("run %s: its filesystem is full; its records use the room kept for them", run->id);
        return r;
}

/* A record of the run's, written again in the room kept for the records when the disk
 * had none. */
static int write_record(Run *run, const AjRunRecord *rec)
{
        int r = aj_run_record_write(run->run_dir, rec);
        if (aj_run_room_would_help(r) && aj_run_room_use(run) > 0)
                r = aj_run_record_write(run->run_dir, rec);
        return r;
}

/* Rewrites run.json; returns the record written (NULL if it could not be made). */
static AjRunRecord *write_run_json(Run *run, const char *status, const Outcome *o, uint64_t ended_ns)
{
        AjRunRecord *rec = NULL;
        int r = compose_record(run, status, o, ended_ns, &rec);
        if (r >= 0)
                r = write_record(run, rec);
        if (r < 0)
                aj_log_errno(r, "Failed to write '%s/%s'", run->run_dir, AJ_RUN_FILE_RUN);
        return rec;
}

/* Why aj_ws_git_changed() did not look at everything ("cut_at"), for the operator. */
static void git_cut_reason(const char *cut_at, const char *config_error, char *buf, size_t size)
{
        const char *c = cut_at ?: "";
        if (streq(c, "workspace_entries"))
                snprintf(buf, size, "more than %u entries in the workspace: repositories past them were not looked for",
                         AJ_WS_GIT_WALK_ENTRIES);
        else if (streq(c, "workspace_depth"))
                snprintf(buf, size, "directories more than %u levels deep were not looked into", AJ_WS_GIT_WALK_DEPTH);
        else if (streq(c, "workspace_time"))
                snprintf(buf, size,
                         "the workspace took more than %u ms to list: repositories past that were not "
                         "looked for",
                         AJ_WS_GIT_WALK_MS);
        else if (streq(c, "repositories"))
                snprintf(buf, size, "more than %u repositories", AJ_WS_GIT_MAX_REPOS);
        else if (streq(c, "entries") || streq(c, "depth"))
                snprintf(buf, size, "more than %u entries or %u levels in the repositories' own files",
                         AJ_WS_GIT_MAX_ENTRIES, AJ_WS_GIT_MAX_DEPTH);
        else if (streq(c, "config"))
                snprintf(buf, size, "%s", config_error ?: "a repository's git config, or yours, could not be read");
        else
                snprintf(buf, size, "a path too long");
}

/* A run that wrote the workspace in place ("rw"): the files of its repositories (nested
 * ones too) that git run there by the operator takes commands from (a hook,
 * core.fsmonitor in .git/config on a mere `git status`) and the run changed
 * (src/workspace-git.c). Nothing prevents the agent from writing them (its own commits
 * write .git too); the operator is told, in the chain and on the terminal, before running
 * git there. */
static void report_git_changes(Run *run)
{
        const char *ws = aj_mount_plan_workspace_source(run->mount);
        dev_t dev;
        ino_t ino;
        if (run->profile->workspace_mode != AJ_WORKSPACE_RW || !ws || !run->since_ns ||
            !aj_mount_plan_workspace_id(run->mount, &dev, &ino))
                return;
        struct stat st;
        _cleanup_close_ int fd = open(ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        json_t *found = NULL;
        int r = fd < 0 ? -errno : fstat(fd, &st) < 0 ? -errno : st.st_dev != dev || st.st_ino != ino ? -ESTALE : 0;
        if (r >= 0)
                r = aj_ws_git_changed(fd, run->since_ns, NULL, &found);
        if (r < 0) {
                aj_warning("Cannot look for changes to git's own files in the workspace '%s': %s", ws,
                           r == -ESTALE ? "it is not the directory the jail was given" : strerror(-r));
                aj_events_emit(run->events, "workspace.git_changed",
                               json_pack("{s:s, s:s}", "workspace", ws, "error", strerror(-r)));
                return;
        }
        if (!found)
                return;
        size_t count = (size_t)json_integer_value(json_object_get(found, "count"));
        const char *first = json_string_value(json_array_get(json_object_get(found, "paths"), 0));
        if (count)
                aj_warning("The run changed %zu of git's own files in the workspace '%s' (first: %s): git run there "
                           "takes commands from them (hooks, core.fsmonitor on 'git status'); look at them before "
                           "you run git in it ('agentjail logs %s --type workspace.git_changed')",
                           count, ws, first ?: "?", run->id);
        if (json_is_true(json_object_get(found, "cut"))) {
                char why[512];
                git_cut_reason(json_string_value(json_object_get(found, "cut_at")),
                               json_string_value(json_object_get(found, "config_error")), why, sizeof(why));
                aj_warning("Git's own files in the workspace '%s' were not all looked at (%s): look at its "
                           "repositories' .git before you run git in them",
                           ws, why);
        }
        json_object_set_new(found, "workspace", json_string(ws));
        aj_events_emit(run->events, "workspace.git_changed", found);
}

/*
 * run.exit and the final run.json. Called as soon as init reports the command's status
 * (while the kernel is still tearing the jail down on another CPU), or after the loop
 * when there is no such report (launch failure, the jail killed). With a proxy, after
 * the loop: closing it records the last connections, which belong before run.exit.
 */
void aj_run_write_final_records(Run *run)
{
        if (run->records_done)
                return;
        run->records_done = true;
        aj_run_release_llm(run);
        /* Its connections' events belong before run.exit: closed later (the loop's undo),
         * a tunnel the agent left open was recorded after the chain's anchor, and `logs
         * --verify` called the run's own chain broken. */
        aj_run_release_proxy(run);
        json_t *throttled = aj_sup_work_throttled_json(&run->work);
        if (throttled)
                aj_events_emit(run->events, "supervisor.throttled", throttled);
        json_t *suppressed = aj_sup_denials_suppressed_json(&run->denials);
        if (suppressed)
                aj_events_emit(run->events, "seccomp.suppressed", suppressed);
        aj_sup_cgroup_events_check(&run->cg_events);
        aj_broker_flush_checks(run->broker);
        if (run->broker && aj_broker_reports_suppressed(run->broker) > 0)
                aj_events_emit(run->events, "broker.suppressed",
                               json_pack("{s:I, s:I}", "reports", (json_int_t)aj_broker_reports_suppressed(run->broker),
                                         "reports_per_sec", (json_int_t)run->profile->log_reports_per_sec));
        if (run->broker)
                aj_broker_cancel_held(run->broker);
        if (aj_sup_breach_events_refused(&run->breach) > 0)
                aj_events_emit(run->events, "log.refused",
                               json_pack("{s:I, s:I}", "events", (json_int_t)aj_sup_breach_events_refused(&run->breach),
                                         "limit",
                                         (json_int_t)aj_events_agent_share(aj_sup_breach_log_cap(&run->breach))));
        if (aj_sup_workspace_start_started(&run->ws_start)) {
                /* What is left of its time; a signal asking agentjail to stop (^C, SIGTERM,
                 * SIGHUP, SIGQUIT) ends the wait, and is taken: it meant "stop waiting", the
                 * command is over. Any other is handled as the loop would. */
                json_decref(run->workspace_start);
                run->workspace_start = aj_sup_workspace_start_finish(&run->ws_start, run->sigfd, aj_run_handle_signal,
                                                                     run);
                const char *cut = json_string_value(json_object_get(run->workspace_start, "cut_at"));
                struct signalfd_siginfo si;
                while (cut && streq(cut, "unfinished") && run->sigfd >= 0 &&
                       read(run->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                        ;
        }
        report_git_changes(run);
        Outcome o = compute_outcome(run);
        run->final_status = o.status;
        aj_events_emit(run->events, "run.exit",
                       json_pack("{s:i, s:o, s:o, s:s, s:o}", "status", o.status, "code",
                                 o.code >= 0 ? json_integer(o.code) : json_null(), "signal",
                                 o.signal >= 0 ? json_integer(o.signal) : json_null(), "reason", o.reason, "usage",
                                 usage_json(run)));
        run->final_rec = write_run_json(run, "exited", &o, aj_now_realtime_ns());
        aj_run_trace_step(run, "records written");
}

/* Events after the final run.json (a launch error's report, the alert's end) move its
 * anchor, so that they cannot be removed unseen either. */
void aj_run_refresh_anchor(Run *run)
{
        AjRunRecord *rec = run->final_rec;
        if (!rec || !run->events)
                return;
        if (rec->anchor.present && rec->anchor.count == aj_events_last_seq(run->events))
                return;
        AjChainEnd end = { .count = aj_events_last_seq(run->events) };
        snprintf(end.last_hash, sizeof(end.last_hash), "%s", aj_events_last_hash(run->events));
        int r = aj_run_record_set_anchor(rec, &end, "run.exit");
        if (r >= 0)
                r = write_record(run, rec);
        if (r < 0)
                aj_log_errno(r, "Failed to write '%s/%s'", run->run_dir, AJ_RUN_FILE_RUN);
}

void aj_run_write_json(Run *run) { aj_run_record_free(write_run_json(run, "running", NULL, 0)); }


void aj_run_write_launcher_error(Run *run)
{
        Outcome o = { .status = AJ_EXIT_LAUNCHER, .code = -1, .signal = -1, .reason = "launcher-error" };
        aj_events_emit(run->events, "run.exit",
                       json_pack("{s:i, s:n, s:n, s:s}", "status", o.status, "code", "signal", "reason", o.reason));
        run->final_rec = write_run_json(run, "exited", &o, aj_now_realtime_ns());
}
