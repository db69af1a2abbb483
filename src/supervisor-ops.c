/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the supervisor does for the modules in its loop (broker, proxy) and for
 * operators (control socket): events, breaches (freeze or kill, incident,
 * alert, quarantine), freeze/thaw with caps raised, kill, release, inspect.
 * Everything runs on the supervisor's one thread, between two epoll_wait()s.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "run.h"
#include "runs.h"
#include "util/fd.h"
#include "util/parse.h"
#include "util/macros.h"

/* Events in an incident record, and in `inspect`. */
#define INSPECT_LAST_EVENTS 10

const char *aj_run_state(const Run *run, bool exited)
{
        if (run->quarantined && !run->released)
                return "quarantined";
        if (exited)
                return "exited";
        return run->frozen ? "frozen" : "running";
}

/* The last n events (from the end of the file only), or an empty array. */
static json_t *last_events(const Run *run, size_t n)
{
        char path[4096];
        json_t *tail = NULL;
        snprintf(path, sizeof(path), "%s/events.jsonl", run->run_dir);
        if (aj_events_read_tail(path, n, &tail) < 0)
                return json_array();
        return tail;
}


static void handle_breach(Run *run, const AjBreach *b);

/* Stop a timer and return what was left of it. */
static uint64_t timer_pause(AjLoopTimer *t)
{
        uint64_t left = aj_loop_timer_left(t);
        aj_loop_timer_stop(t);
        return left;
}

/* Time spent frozen does not count against the wall-clock limit or the wall cap. */
static void pause_wall(Run *run)
{
        if (run->profile->wall_ns && !run->wall_fired)
                run->wall_remaining_ns = timer_pause(&run->wall_timer);
        if (run->has_wall_cap)
                run->wall_cap_remaining_ns = timer_pause(&run->wall_cap_timer);
}

static void resume_wall(Run *run)
{
        if (run->profile->wall_ns && !run->wall_fired && run->wall_remaining_ns) {
                (void)aj_loop_timer_set_in(&run->wall_timer, run->wall_remaining_ns);
                run->wall_remaining_ns = 0;
        }
        /* An exhausted wall cap breaches again at once unless it was raised. */
        if (run->has_wall_cap)
                (void)aj_loop_timer_set_in(&run->wall_cap_timer, run->wall_cap_remaining_ns);
}

json_t *aj_run_wall_cap_json(Run *run)
{
        if (!run->wall_cap_ns)
                return NULL;
        uint64_t left = run->wall_cap_remaining_ns;
        if (!run->frozen && run->has_wall_cap)
                left = aj_loop_timer_left(&run->wall_cap_timer);
        return json_pack("{s:f, s:f, s:f}", "limit", (double)run->wall_cap_ns / 1e9, "used",
                         (double)(run->wall_cap_ns - left) / 1e9, "remaining", (double)left / 1e9);
}

void aj_run_wall_cap_expired(Run *run)
{
        run->wall_cap_remaining_ns = 0;
        AjBreach b = { .cap = "wall", .limit = (double)run->wall_cap_ns / 1e9, .value = (double)run->wall_cap_ns / 1e9 };
        handle_breach(run, &b);
}

/* thaw --raise wall=+DUR adds running time; wall=DUR sets the cap (counted from the start). */
static int raise_wall(Run *run, const char *value, char **ret_error)
{
        bool add = value[0] == '+';
        uint64_t d;
        if (!run->has_wall_cap) {
                *ret_error = strdup("wall: this run has no wall cap to raise");
                return -EINVAL;
        }
        if (aj_parse_duration(value + add, &d) < 0) {
                if (asprintf(ret_error, "wall: '%s': expected a duration such as +10m or 1h", value) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        uint64_t used = run->wall_cap_ns - run->wall_cap_remaining_ns;
        uint64_t cap = add ? run->wall_cap_ns + d : d;
        if (cap <= used) {
                if (asprintf(ret_error, "wall: %s would not leave the run any time (it has run %.1fs)", value,
                             (double)used / 1e9) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        run->wall_cap_ns = cap;
        run->wall_cap_remaining_ns = cap - used;
        return 0;
}

/* thaw --raise log_bytes=+SIZE adds to logs.events_bytes; log_bytes=SIZE sets it. The new
 * cap must leave the agent room past what events.jsonl already holds. Returns the cap. */
static int raise_log_bytes(Run *run, json_t *value, uint64_t *ret_cap, char **ret_error)
{
        const char *v = json_is_string(value) ? json_string_value(value) : NULL;
        bool add = v && v[0] == '+';
        uint64_t n;
        if (json_is_integer(value) && json_integer_value(value) >= 0)
                n = (uint64_t)json_integer_value(value);
        else if (!v || aj_parse_size(v + add, &n) < 0) {
                *ret_error = strdup("log_bytes: expected a size such as +64M or 256M");
                return -EINVAL;
        }
        uint64_t cap = add ? run->profile->log_events_bytes + n : n;
        if (cap > AJ_LOG_MAX_BYTES || cap < n) {
                *ret_error = strdup("log_bytes: at most 1T");
                return -EINVAL;
        }
        uint64_t used = aj_events_bytes(run->events);
        if (aj_events_agent_share(cap) <= used) {
                if (asprintf(ret_error, "log_bytes: %s would leave the agent no room (events.jsonl has %llu bytes)",
                             v ? v : "the new cap", (unsigned long long)used) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        *ret_cap = cap;
        return 0;
}

int aj_run_freeze(Run *run, const char *by, const char *reason)
{
        if (!run->cgroup)
                return -EOPNOTSUPP;
        if (run->frozen)
                return 0;
        uint64_t t0 = aj_now_monotonic_ns();
        int r = aj_cgroup_freeze(run->cgroup);
        if (r < 0) {
                aj_events_emit(run->events, "freeze.failed",
                               json_pack("{s:s, s:s}", "by", by, "error", strerror(-r)));
                return r;
        }
        run->frozen = true;
        pause_wall(run);
        aj_events_emit(run->events, "freeze",
                       json_pack("{s:s, s:s?, s:I}", "by", by, "reason", reason, "latency_us",
                                 (json_int_t)((aj_now_monotonic_ns() - t0) / 1000)));
        aj_run_write_json(run);
        return 0;
}

int aj_run_thaw(Run *run, const char *by)
{
        if (!run->frozen)
                return 0;
        int r = aj_cgroup_thaw(run->cgroup);
        if (r < 0)
                return r;
        run->frozen = false;
        resume_wall(run);
        aj_events_emit(run->events, "thaw", json_pack("{s:s}", "by", by));
        aj_run_write_json(run);
        return 0;
}

int aj_run_kill(Run *run, const char *by)
{
        run->killed_by_policy = true;
        run->have_status_before_kill = run->have_status;
        aj_events_emit(run->events, "kill", json_pack("{s:s}", "by", by));
        int r = run->cgroup ? aj_cgroup_kill(run->cgroup) : -EOPNOTSUPP;
        if (r < 0 && !run->init_exited)
                r = syscall(SYS_pidfd_send_signal, run->h.pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
        /* A frozen task dies only once it runs again. */
        if (run->frozen && run->cgroup) {
                (void)aj_cgroup_thaw(run->cgroup);
                run->frozen = false;
        }
        return r;
}

static void alert_exited(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        aj_run_alert_event(userdata, false);
}

static void start_alert(Run *run, const char *kind, const char *input)
{
        const AjProfile *p = run->profile;
        if (!p->alert_exec.items || !p->alert_exec.items[0])
                return;
        uint64_t timeout = p->alert_timeout_ns ? p->alert_timeout_ns : 10ull * 1000000000ull;
        if (run->alert.pidfd >= 0) {
                aj_events_emit(run->events, "alert.skipped",
                               json_pack("{s:s}", "why", "the previous alert is still running"));
                return;
        }
        int r = aj_alert_start(p->alert_exec.items, run->run_dir, run->id, kind, input, timeout, &run->alert);
        if (r < 0) {
                aj_warning("Cannot run the alert command '%s': %s", p->alert_exec.items[0], strerror(-r));
                aj_events_emit(run->events, "alert.failed",
                               json_pack("{s:s, s:s}", "command", p->alert_exec.items[0], "error", strerror(-r)));
                run->alert.pidfd = -1;
                return;
        }
        (void)aj_loop_add_io(run->loop, run->alert.pidfd, EPOLLIN, alert_exited, run, &run->alert_io);
        (void)aj_loop_timer_set_in(&run->alert_timer, timeout);
        aj_events_emit(run->events, "alert",
                       json_pack("{s:s, s:s, s:i, s:I}", "kind", kind, "command", p->alert_exec.items[0], "pid",
                                 (int)run->alert.pid, "timeout_ms", (json_int_t)(timeout / 1000000)));
}

void aj_run_alert_event(Run *run, bool timer)
{
        if (run->alert.pidfd < 0)
                return;
        siginfo_t si = { 0 };
        if (timer) {
                if (waitid(P_PIDFD, (id_t)run->alert.pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0) {
                        (void)syscall(SYS_pidfd_send_signal, run->alert.pidfd, SIGKILL, NULL, 0);
                        aj_events_emit(run->events, "alert.timeout", json_pack("{s:i}", "pid", (int)run->alert.pid));
                        aj_warning("The alert command did not finish in time and was killed");
                        (void)waitid(P_PIDFD, (id_t)run->alert.pidfd, &si, WEXITED);
                }
        } else if (waitid(P_PIDFD, (id_t)run->alert.pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
                return;
        }
        if (si.si_pid != 0) {
                bool ok = si.si_code == CLD_EXITED && si.si_status == 0;
                aj_events_emit(run->events, "alert.exit",
                               json_pack("{s:s, s:i}", si.si_code == CLD_EXITED ? "code" : "signal", si.si_status,
                                         "pid", (int)run->alert.pid));
                if (!ok)
                        aj_warning("The alert command failed (see alert.log in the run directory)");
        }
        aj_loop_io_remove(run->alert_io);
        run->alert_io = NULL;
        close(run->alert.pidfd);
        run->alert.pidfd = -1;
        aj_loop_timer_stop(&run->alert_timer);
}

static void handle_breach(Run *run, const AjBreach *b)
{
        bool kill = run->profile->on_breach == AJ_ON_BREACH_KILL;
        aj_events_emit(run->events, "cap.breach",
                       json_pack("{s:s, s:f, s:f, s:O?, s:s}", "cap", b->cap, "limit", b->limit, "value", b->value,
                                 "request", b->request, "action", kill ? "kill" : "freeze"));
        if (run->quarantined && (run->frozen || run->killed_by_policy))
                return; /* already stopped for an earlier breach: recorded, nothing more to do */

        aj_warning("run %s breached its %s cap (%g > %g): %s", run->id, b->cap, b->value, b->limit,
                   kill ? "killing it" : "freezing it");
        if (kill)
                (void)aj_run_kill(run, "breach");
        else if (aj_run_freeze(run, "breach", b->cap) < 0)
                (void)aj_run_kill(run, "breach (freeze failed)"); /* fail closed */

        char ts[40];
        run->quarantined = true;
        json_decref(run->quarantine);
        run->quarantine = json_pack("{s:s, s:s, s:f, s:f, s:b}", "since",
                                    aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts)), "cap", b->cap,
                                    "limit", b->limit, "value", b->value, "released", 0);
        aj_events_emit(run->events, "quarantine", json_pack("{s:s}", "cap", b->cap));

        json_t *incident = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:O?, s:s, s:o?, s:o}", "run", run->id, "name",
                                     run->name, "ts", ts, "cap", b->cap, "limit", b->limit, "value", b->value,
                                     "request", b->request, "action", kill ? "kill" : "freeze", "usage",
                                     run->meter ? aj_meter_to_json(run->meter, aj_now_monotonic_ns(), false) : NULL,
                                     "last_events", last_events(run, AJ_INCIDENT_LAST_EVENTS));
        if (incident) {
                int r = aj_incident_write(run->run_dir, incident);
                if (r < 0)
                        aj_log_errno(r, "Failed to write the incident record in '%s'", run->run_dir);
                start_alert(run, "breach", "incident.json");
                json_decref(incident);
        }
        aj_run_write_json(run);
}

void aj_run_events_full(Run *run)
{
        run->events_refused++;
        /* Once per stop: what the agent had queued before the freeze is refused quietly;
         * thawed without a raise, its next refused event stops it again. Once the command
         * has exited there is nothing left to stop (the count is in log.refused). */
        if (run->frozen || run->killed_by_policy || run->have_status || run->init_exited)
                return;
        AjBreach b = { .cap = "log_bytes",
                       .limit = (double)aj_events_agent_share(run->profile->log_events_bytes),
                       .value = (double)aj_events_wanted(run->events) };
        handle_breach(run, &b);
}

int aj_run_emit_agent(Run *run, const char *type, json_t *fields)
{
        int r = aj_events_emit_agent(run->events, type, fields);
        /* Inside a batch the breach waits for its end: its own events are not the batch's. */
        if (r == -EFBIG && !run->in_event_batch)
                aj_run_events_full(run);
        return r;
}

/* ---- hooks ---------------------------------------------------------------------------- */

static int hook_emit(void *userdata, const char *type, json_t *fields)
{
        return aj_run_emit_agent(userdata, type, fields);
}

static void hook_breach(void *userdata, const AjBreach *b)
{
        handle_breach(userdata, b);
}

static int hook_charge_egress(void *userdata, uint64_t bytes, json_t *connection)
{
        Run *run = userdata;
        if (run->egress_limit && run->egress_used + bytes > run->egress_limit) {
                AjBreach b = { .cap = "egress_bytes",
                               .limit = (double)run->egress_limit,
                               .value = (double)(run->egress_used + bytes),
                               .request = connection };
                run->egress_used = run->egress_limit;
                handle_breach(run, &b);
                return 1;
        }
        run->egress_used += bytes;
        return 0;
}

/* The owner learns that a call waits for them: approval.json and the alert command. */
static void hook_approval_requested(void *userdata, json_t *call)
{
        Run *run = userdata;
        const AjProfile *p = run->profile;
        if (!p->alert_exec.items || !p->alert_exec.items[0])
                return;
        char ts[40];
        const char *id = json_string_value(json_object_get(call, "gen_ai.tool.call.id"));
        const char *digest = json_string_value(json_object_get(call, "arguments_sha256"));
        _cleanup_free_ char *approve = NULL, *deny = NULL;
        if (aj_approval_commands(run->id, id ? id : "?", digest ? digest : "?", &approve, &deny) < 0) {
                aj_log_errno(-ENOMEM, "Failed to write the approval request in '%s'", run->run_dir);
                return;
        }
        json_auto_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:s}", "kind", "approval", "run", run->id, "name",
                                     run->name, "ts", aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts)),
                                     "call", call, "approve", approve, "deny", deny);
        int r = doc ? aj_run_file_write_json(run->run_dir, "approval.json", doc) : -ENOMEM;
        if (r < 0) {
                aj_log_errno(r, "Failed to write the approval request in '%s'", run->run_dir);
                return;
        }
        start_alert(run, "approval", "approval.json");
}

static void hook_batch_begin(void *userdata)
{
        Run *run = userdata;
        run->in_event_batch = true;
        aj_events_batch_begin(run->events);
}

static int hook_batch_end(void *userdata)
{
        Run *run = userdata;
        run->in_event_batch = false;
        int r = aj_events_batch_end(run->events);
        if (r == -EFBIG)
                aj_run_events_full(run);
        return r;
}

void aj_run_hooks(Run *run, AjHooks *ret)
{
        *ret = (AjHooks){
                .userdata = run,
                .emit = hook_emit,
                .breach = hook_breach,
                .charge_egress = hook_charge_egress,
                .approval_requested = hook_approval_requested,
                .batch_begin = hook_batch_begin,
                .batch_end = hook_batch_end,
        };
}

/* ---- operator actions ----------------------------------------------------------------- */

static int op_freeze(void *userdata, const char *reason)
{
        return aj_run_freeze(userdata, "operator", reason);
}

static int op_thaw(void *userdata, json_t *raise, char **ret_error)
{
        Run *run = userdata;
        if (raise && json_object_size(raise) > 0) {
                if (!run->meter) {
                        *ret_error = strdup("this run has no meters to raise");
                        return -EINVAL;
                }
                /* "wall" and "log_bytes" are the supervisor's; the rest is the meter's. All or nothing. */
                _cleanup_(json_decrefp) json_t *rest = json_deep_copy(raise);
                json_t *wall = json_object_get(raise, "wall"), *log_bytes = json_object_get(raise, "log_bytes");
                uint64_t saved_cap = run->wall_cap_ns, saved_left = run->wall_cap_remaining_ns;
                uint64_t log_cap = 0;
                if (log_bytes) {
                        json_object_del(rest, "log_bytes");
                        int r = raise_log_bytes(run, log_bytes, &log_cap, ret_error);
                        if (r < 0)
                                return r;
                }
                if (wall) {
                        json_object_del(rest, "wall");
                        if (!json_is_string(wall)) {
                                *ret_error = strdup("wall: expected a duration string such as \"+10m\"");
                                return -EINVAL;
                        }
                        int r = raise_wall(run, json_string_value(wall), ret_error);
                        if (r < 0)
                                return r;
                }
                if (json_object_size(rest) > 0) {
                        int r = aj_meter_raise_json(run->meter, rest, ret_error);
                        if (r < 0) {
                                run->wall_cap_ns = saved_cap;
                                run->wall_cap_remaining_ns = saved_left;
                                return r;
                        }
                }
                if (log_cap) {
                        run->profile->log_events_bytes = log_cap;
                        aj_events_set_agent_limit(run->events, aj_events_agent_share(log_cap));
                }
                aj_events_emit(run->events, "caps.raise", json_pack("{s:O, s:s}", "raise", raise, "by", "operator"));
        }
        return aj_run_thaw(run, "operator");
}

static int op_kill(void *userdata)
{
        return aj_run_kill(userdata, "operator");
}

static int op_release(void *userdata)
{
        Run *run = userdata;
        if (!run->quarantined)
                return -EINVAL;
        if (run->frozen) {
                int r = aj_run_thaw(run, "quarantine release");
                if (r < 0)
                        return r;
        }
        char ts[40];
        run->released = true;
        json_object_set_new(run->quarantine, "released", json_true());
        json_object_set_new(run->quarantine, "released_at",
                            json_string(aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts))));
        aj_events_emit(run->events, "quarantine.release", json_pack("{s:s}", "by", "operator"));
        aj_run_write_json(run);
        return 0;
}

static json_t *process_json(pid_t pid)
{
        char path[64];
        _cleanup_free_ char *stat = NULL, *cmdline = NULL, *status = NULL;
        size_t cmdlen = 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (aj_read_file(path, 4096, &stat, NULL) < 0)
                return NULL;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        (void)aj_read_file(path, 4096, &cmdline, &cmdlen);
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        (void)aj_read_file(path, 16384, &status, NULL);

        /* stat: "pid (comm) S ppid ... utime(14) stime(15)": comm may contain spaces. */
        char state = '?';
        unsigned long long utime = 0, stime = 0;
        char *rp = strrchr(stat, ')');
        if (rp && rp[1]) {
                state = rp[2];
                char *f = rp + 2;
                int field = 3;
                for (char *tok = strtok(f, " "); tok; tok = strtok(NULL, " "), field++) {
                        if (field == 14)
                                utime = strtoull(tok, NULL, 10);
                        else if (field == 15) {
                                stime = strtoull(tok, NULL, 10);
                                break;
                        }
                }
        }
        long long rss_kb = -1;
        char *vm = status ? strstr(status, "VmRSS:") : NULL;
        if (vm)
                rss_kb = strtoll(vm + 6, NULL, 10);
        for (size_t i = 0; cmdline && i + 1 < cmdlen; i++)
                if (cmdline[i] == 0)
                        cmdline[i] = ' ';
        long hz = sysconf(_SC_CLK_TCK);
        char st[2] = { state, 0 };
        return json_pack("{s:i, s:s, s:s, s:f, s:I}", "pid", (int)pid, "state", st, "cmd",
                         cmdline && *cmdline ? cmdline : "", "cpu_s", (double)(utime + stime) / (double)(hz > 0 ? hz : 100),
                         "rss_kb", (json_int_t)rss_kb);
}

static json_t *inspect_meters(Run *run, uint64_t now)
{
        json_t *m = run->meter ? aj_meter_to_json(run->meter, now, false) : NULL;
        json_t *wall = aj_run_wall_cap_json(run);
        if (m && wall)
                json_object_set_new(m, "wall", wall);
        else
                json_decref(wall);
        return m;
}

static json_t *op_inspect(void *userdata)
{
        Run *run = userdata;
        json_t *procs = json_array();
        pid_t *pids = NULL;
        size_t n = 0;
        if (run->cgroup && aj_cgroup_pids(run->cgroup, &pids, &n) >= 0) {
                for (size_t i = 0; i < n && i < 256; i++) {
                        json_t *p = process_json(pids[i]);
                        if (p)
                                json_array_append_new(procs, p);
                }
                free(pids);
        }
        uint64_t now = aj_now_monotonic_ns();
        /* The broker goes when the command exits; what was in flight then stays in the chain. */
        json_t *pending = run->broker ? aj_broker_in_flight(run->broker) : json_array();
        json_int_t dropped = run->broker ? (json_int_t)aj_broker_in_flight_dropped(run->broker) : 0;
        return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o?, s:o?, s:I, s:o, s:o, s:o?, s:I, s:I}", "id", run->id, "name",
                         run->name, "state", aj_run_state(run, false), "frozen", run->frozen, "processes", procs,
                         "meters", inspect_meters(run, now), "pending", pending, "pending_dropped", dropped,
                         "last_events", last_events(run, INSPECT_LAST_EVENTS), "quarantine",
                         run->quarantine ? json_incref(run->quarantine) : json_null(), "network",
                         run->proxy ? aj_proxy_stats(run->proxy) : NULL, "egress_bytes", (json_int_t)run->egress_used,
                         "egress_limit", (json_int_t)run->egress_limit);
}

/* "root", a user name, or "uid N": who decided, for the chain and the agent's reply. */
static void operator_name(uid_t uid, char *buf, size_t size)
{
        struct passwd pw, *found = NULL;
        char tmp[1024];
        if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &found) == 0 && found)
                snprintf(buf, size, "%s", found->pw_name);
        else
                snprintf(buf, size, "uid %u", (unsigned)uid);
}

static int op_decide(void *userdata, const char *call_id, bool approve, const char *digest, const char *reason,
                     uid_t peer, json_t **ret_result, char **ret_error)
{
        Run *run = userdata;
        if (!run->broker) {
                if (asprintf(ret_error, "the run's command has exited: no call is awaiting approval") < 0)
                        *ret_error = NULL;
                return -ENOENT;
        }
        char by[128];
        operator_name(peer, by, sizeof(by));
        return aj_broker_decide(run->broker, call_id, approve, digest, by, reason, ret_result, ret_error);
}

void aj_run_control_ops(Run *run, AjControlOps *ret)
{
        *ret = (AjControlOps){
                .userdata = run,
                .freeze = op_freeze,
                .thaw = op_thaw,
                .kill = op_kill,
                .release = op_release,
                .inspect = op_inspect,
                .decide = op_decide,
        };
}
