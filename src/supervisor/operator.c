/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What operators ask of a live run through its control socket (src/control.c): freeze,
 * thaw (with caps raised), kill, release, inspect, approve/deny. Each is a call into the
 * part that owns it (src/supervisor/breach.c, wall.c) or a service (the broker).
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "run.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/parse.h"

/* Events in `inspect`. */
#define INSPECT_LAST_EVENTS 10

static int op_freeze(void *userdata, const char *reason)
{
        Run *run = userdata;
        return aj_sup_breach_freeze(&run->breach, "operator", reason);
}

/* thaw --raise disk_free=SIZE: the free space the run must leave (0: not watched). */
static int parse_disk_free(json_t *v, uint64_t *ret, AjError *ret_error)
{
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                *ret = (uint64_t)json_integer_value(v);
                return 0;
        }
        if (json_is_string(v) && aj_parse_size(json_string_value(v), ret) >= 0)
                return 0;
        return aj_error_set(ret_error, -EINVAL,
                            "disk_free: expected a size such as 256M (the free space the run must leave; 0: not "
                            "watched)");
}

/* Which stop a thaw answers. Named (`thaw --stop N`): that one, and no other; a thaw typed
 * for a stop that is over must not land on a later one. A raise answers a stop: without a
 * number, it must at least raise the cap whose breach made this stop (operator B's "+1000
 * tokens" for a tokens breach that operator A has answered meanwhile must not thaw the run
 * stopped since for its cost). */
static int check_stop(const AjSupBreach *b, uint64_t stop, json_t *raise, bool raising, AjError *ret_error)
{
        uint64_t now = aj_sup_breach_stop(b);
        const char *cap = aj_sup_breach_stop_cap(b);
        char why[80] = "";
        if (now)
                snprintf(why, sizeof(why), "%s%s", cap ? "a breach of its " : "an operator's freeze", cap ? cap : "");
        if (stop && stop != now) {
                if (!now)
                        return aj_error_set(ret_error, -ESTALE,
                                            "stop %llu is over: the run is not frozen (thawed meanwhile?); nothing "
                                            "changed",
                                            (unsigned long long)stop);
                if (stop > now)
                        return aj_error_set(ret_error, -ESTALE,
                                            "the run has had no stop %llu: it is frozen at stop %llu (%s); nothing "
                                            "changed",
                                            (unsigned long long)stop, (unsigned long long)now, why);
                return aj_error_set(ret_error, -ESTALE,
                                    "stop %llu is over: the run is frozen again, at stop %llu (%s); nothing changed: "
                                    "look again (agentjail inspect) and name stop %llu",
                                    (unsigned long long)stop, (unsigned long long)now, why, (unsigned long long)now);
        }
        /* A raise answers a stop: "+N" adds to the cap as it is then, and two operators who
         * answered one breach with the same raise had it applied twice, the second to a run
         * the first had thawed. Refused on a run that is not frozen, nothing changed. */
        if (raising && !now)
                return aj_error_set(ret_error, -EALREADY,
                                    "the run is not frozen (thawed meanwhile?): no cap raised; raise its caps "
                                    "while it is stopped");
        if (raising && !stop && !(cap && json_object_get(raise, cap)))
                return aj_error_set(ret_error, -ESTALE,
                                    "the run is at stop %llu (%s), which this raise does not answer: no cap raised; "
                                    "name the stop it is for (--stop %llu) to raise other caps",
                                    (unsigned long long)now, why, (unsigned long long)now);
        return 0;
}

/* The raises that can fail, applied (wall, meters) or checked (log_bytes, disk_free), with
 * what puts them back. */
typedef struct {
        bool wall_raised, meter_raised;
        AjSupWallSaved wall;
        AjMeterCaps caps;
        uint64_t log_cap, reserve;
        json_t *disk_free;
} Raised;

static void raised_undo(const Raised *s, AjSupWall *w, AjMeter *meter)
{
        if (s->wall_raised)
                aj_sup_wall_raise_undo(w, &s->wall);
        if (s->meter_raised)
                aj_meter_caps_restore(meter, &s->caps);
}

static int apply_raises(AjSupBreach *b, AjSupWall *w, AjMeter *meter, json_t *raise, Raised *s, AjError *ret_error)
{
        _cleanup_(json_decrefp) json_t *rest = json_deep_copy(raise);
        if (!rest)
                return -ENOMEM;
        json_object_del(rest, "disk_free");
        if (!meter && json_object_size(rest) > 0)
                return aj_error_set(ret_error, -EINVAL, "this run has no meters to raise");
        json_t *wall = json_object_get(raise, "wall"), *log_bytes = json_object_get(raise, "log_bytes");
        if (log_bytes) {
                json_object_del(rest, "log_bytes");
                int r = aj_sup_breach_check_log_cap(b, log_bytes, &s->log_cap, ret_error);
                if (r < 0)
                        return r;
        }
        if (wall) {
                json_object_del(rest, "wall");
                if (!json_is_string(wall))
                        return aj_error_set(ret_error, -EINVAL, "wall: expected a duration string such as \"+10m\"");
                int r = aj_sup_wall_raise(w, json_string_value(wall), &s->wall, ret_error);
                if (r < 0)
                        return r;
                s->wall_raised = true;
        }
        if (json_object_size(rest) > 0) {
                s->caps = *aj_meter_caps(meter);
                int r = aj_meter_raise_json(meter, rest, ret_error);
                if (r < 0) {
                        raised_undo(s, w, meter);
                        return r;
                }
                s->meter_raised = true;
        }
        return 0;
}

int aj_sup_thaw_raise(AjSupBreach *b, AjSupWall *w, AjSupDisk *disk, AjMeter *meter, uint64_t stop, json_t *raise,
                      AjError *ret_error)
{
        /* "disk_free", "wall" and "log_bytes" are the supervisor's; the rest is the meter's.
         * All or nothing: each is checked before any is applied. */
        bool raising = raise && json_object_size(raise) > 0;
        int r = check_stop(b, stop, raise, raising, ret_error);
        if (r < 0)
                return r;
        Raised s = { .disk_free = raising ? json_object_get(raise, "disk_free") : NULL };
        if (s.disk_free) {
                r = parse_disk_free(s.disk_free, &s.reserve, ret_error);
                if (r < 0)
                        return r;
                if (!disk)
                        return aj_error_set(ret_error, -EINVAL, "this run does not watch disk space");
        }
        /* Below a reserve, a thaw would let the agent write on until the next look stops it
         * again: refused instead, with the free space it needs. */
        if (disk && aj_sup_breach_frozen(b)) {
                r = aj_sup_disk_check_thaw(disk, s.disk_free != NULL, s.reserve, ret_error);
                if (r < 0)
                        return r;
        }
        if (raising && (r = apply_raises(b, w, meter, raise, &s, ret_error)) < 0)
                return r;
        /* The raises are part of the thaw: one that fails leaves the caps as they were, so the
         * operator's retry ("+N" again) is not a second raise. */
        r = aj_sup_breach_thaw_jail(b);
        if (r < 0) {
                raised_undo(&s, w, meter);
                return aj_error_set(ret_error, r, "cannot thaw the run's cgroup: %s%s", strerror(-r),
                                    raising ? "; no cap raised" : "");
        }
        if (raising) {
                if (s.log_cap)
                        aj_sup_breach_set_log_cap(b, s.log_cap);
                if (s.disk_free)
                        aj_sup_disk_set_reserve(disk, s.reserve);
                aj_sup_breach_emit(b, "caps.raise",
                                   json_pack("{s:O, s:s, s:I}", "raise", raise, "by", "operator", "stop",
                                             (json_int_t)aj_sup_breach_stop(b)));
        }
        aj_sup_breach_thawed(b, "operator");
        return 0;
}

static int op_thaw(void *userdata, uint64_t stop, json_t *raise, AjError *ret_error)
{
        Run *run = userdata;
        return aj_sup_thaw_raise(&run->breach, &run->wall, &run->disk, run->meter, stop, raise, ret_error);
}

static int op_kill(void *userdata)
{
        Run *run = userdata;
        return aj_sup_breach_kill(&run->breach, "operator");
}

static int op_release(void *userdata)
{
        Run *run = userdata;
        return aj_sup_breach_release(&run->breach);
}

/* One jail process for inspect. Its argv is the agent's bytes: shown escaped and cut
 * (util/format.h), so the record is always valid UTF-8 and small; a process whose /proc
 * files cannot be read is still listed by its pid. */
static json_t *process_json(pid_t pid)
{
        char path[64];
        _cleanup_free_ char *stat = NULL, *cmdline = NULL, *status = NULL;
        size_t cmdlen = 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        (void)aj_read_file(path, 4096, &stat, NULL);
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        (void)aj_read_file(path, AJ_SUP_INSPECT_CMD_READ, &cmdline, &cmdlen);
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        (void)aj_read_file(path, 16384, &status, NULL);

        /* stat: "pid (comm) S ppid ... utime(14) stime(15)": comm may contain spaces. */
        char state = '?';
        unsigned long long utime = 0, stime = 0;
        char *rp = stat ? strrchr(stat, ')') : NULL;
        if (rp && rp[1] && rp[2]) {
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
        /* The arguments, NUL-separated (the last one's NUL dropped), joined by spaces. */
        if (cmdline && cmdlen > 0 && cmdline[cmdlen - 1] == 0)
                cmdlen--;
        for (size_t i = 0; cmdline && i < cmdlen; i++)
                if (cmdline[i] == 0)
                        cmdline[i] = ' ';
        char cmd[AJ_SUP_INSPECT_CMD_BYTES + AJ_ESCAPE_MAX + 4] = "";
        if (cmdline)
                aj_append_printable(cmd, sizeof(cmd), cmdline, AJ_SUP_INSPECT_CMD_BYTES);
        long hz = sysconf(_SC_CLK_TCK);
        char st[2] = { aj_printable_as_is(&state, 1) && state != ' ' ? state : '?', 0 };
        json_t *p = json_pack("{s:i, s:s, s:s, s:f, s:I}", "pid", (int)pid, "state", st, "cmd", cmd, "cpu_s",
                              (double)(utime + stime) / (double)(hz > 0 ? hz : 100), "rss_kb", (json_int_t)rss_kb);
        return p ?: json_pack("{s:i}", "pid", (int)pid);
}

json_t *aj_sup_processes_json(const pid_t *pids, size_t n, size_t *ret_more)
{
        json_t *procs = json_array();
        size_t shown_bytes = 0, i = 0;
        for (; procs && i < n && i < AJ_SUP_INSPECT_MAX_PROCESSES && shown_bytes < AJ_SUP_INSPECT_PROCESSES_BYTES;
             i++) {
                json_t *p = process_json(pids[i]);
                if (!p || json_array_append_new(procs, p) < 0)
                        break;
                const char *cmd = json_string_value(json_object_get(p, "cmd"));
                shown_bytes += 64 + (cmd ? strlen(cmd) : 0);
        }
        *ret_more = n - i;
        return procs;
}

static json_t *op_inspect(void *userdata)
{
        Run *run = userdata;
        json_t *procs = NULL;
        pid_t *pids = NULL;
        size_t n = 0, more = 0;
        if (run->cgroup && aj_cgroup_pids(run->cgroup, &pids, &n) >= 0) {
                procs = aj_sup_processes_json(pids, n, &more);
                free(pids);
        }
        /* The broker goes when the command exits; what was in flight then stays in the chain. */
        json_t *pending = run->broker ? aj_broker_in_flight(run->broker) : json_array();
        /* Hosts a proxy connection waits for, beside the tool calls. */
        json_t *hosts = run->proxy ? aj_proxy_pending(run->proxy) : NULL;
        if (pending && hosts)
                json_array_extend(pending, hosts);
        json_decref(hosts);
        json_int_t dropped = run->broker ? (json_int_t)aj_broker_in_flight_dropped(run->broker) : 0;
        json_t *doc = json_pack("{s:s, s:s, s:s, s:b, s:o, s:I, s:o?, s:o?, s:I, s:o, s:o, s:o?, s:I, s:I}", "id",
                                run->id, "name", run->name, "state", aj_run_state(run, false), "frozen",
                                aj_sup_breach_frozen(&run->breach), "processes", procs ?: json_array(),
                                "processes_more", (json_int_t)more, "meters", aj_run_meters_json(run), "pending",
                                pending, "pending_dropped", dropped, "last_events",
                                run->sink.ops->tail(run->sink.userdata, INSPECT_LAST_EVENTS), "quarantine",
                                aj_run_quarantine_json(aj_sup_breach_quarantine(&run->breach)), "network",
                                run->proxy ? aj_proxy_stats(run->proxy) : NULL, "egress_bytes",
                                (json_int_t)aj_sup_breach_egress_used(&run->breach), "egress_limit",
                                (json_int_t)aj_sup_breach_egress_limit(&run->breach));
        /* The stop a `thaw --stop N` answers, while frozen. */
        uint64_t stop = aj_sup_breach_stop(&run->breach);
        const char *cap = aj_sup_breach_stop_cap(&run->breach);
        if (doc && stop &&
            (json_object_set_new(doc, "stop", json_integer((json_int_t)stop)) < 0 ||
             json_object_set_new(doc, "stop_cause", json_string(cap ? cap : "operator")) < 0)) {
                json_decref(doc);
                return NULL;
        }
        return doc;
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

static int op_decide(void *userdata, const char *call_id, bool approve, bool always, const char *digest,
                     const char *reason, uid_t peer, json_t **ret_result, AjError *ret_error)
{
        Run *run = userdata;
        char by[128];
        if (strncmp(call_id, AJ_NET_APPROVAL_PREFIX, strlen(AJ_NET_APPROVAL_PREFIX)) == 0) {
                if (digest)
                        return aj_error_set(ret_error, -EINVAL,
                                            "a host approval has no digest (--digest is for tool calls)");
                if (!run->proxy)
                        return aj_error_set(ret_error, -ENOENT,
                                            "the run has no egress proxy: no host is awaiting approval");
                operator_name(peer, by, sizeof(by));
                return aj_proxy_decide(run->proxy, call_id, approve, always, by, reason, ret_result, ret_error);
        }
        if (always)
                return aj_error_set(ret_error, -EINVAL,
                                    "--always is for host approvals (" AJ_NET_APPROVAL_PREFIX "N), not tool calls");
        if (!run->broker)
                return aj_error_set(ret_error, -ENOENT, "the run's command has exited: no call is awaiting approval");
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
