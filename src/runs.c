/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "control.h"
#include "events.h"
#include "llm-summary.h"
#include "log.h"
#include "rollback.h"
#include "runs.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/parse.h"
#include "util/strv.h"
/* Field values longer than this are cut in the human-readable event lines. */
#define EVENT_VALUE_MAX 200

void aj_run_free(AjRun *run)
{
        if (!run)
                return;
        free(run->id);
        free(run->dir);
        free(run->control_path);
        aj_run_record_free(run->rec);
        aj_error_clear(&run->rec_error);
        json_decref(run->live_state);
        free(run);
}

void aj_runs_free(AjRun **runs, size_t n)
{
        if (!runs)
                return;
        for (size_t i = 0; i < n; i++)
                aj_run_free(runs[i]);
        free(runs);
}

bool aj_run_id_valid(const char *s)
{
        return s && strlen(s) == AJ_RUN_ID_LEN && strspn(s, "0123456789abcdef") == AJ_RUN_ID_LEN;
}

char *aj_format_age(uint64_t s, char *buf, size_t len)
{
        if (s < 60)
                snprintf(buf, len, "%llus", (unsigned long long)s);
        else if (s < 3600)
                snprintf(buf, len, "%llum", (unsigned long long)(s / 60));
        else if (s < 86400)
                snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
        else
                snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400),
                         (unsigned long long)(s % 86400 / 3600));
        return buf;
}

/* ---- loading and finding ---------------------------------------------------------- */

int aj_run_load(const AjPaths *paths, const char *id, AjRun **ret)
{
        if (!aj_run_id_valid(id))
                return -EINVAL;
        _cleanup_(aj_run_freep) AjRun *run = calloc(1, sizeof(*run));
        if (!run)
                return -ENOMEM;
        char *dir = NULL, *control = NULL;
        if (asprintf(&dir, "%s/runs/%s", paths->state_root, id) < 0)
                dir = NULL;
        if (asprintf(&control, "%s/%s/control.sock", paths->runtime_root, id) < 0)
                control = NULL;
        run->dir = dir;
        run->control_path = control;
        run->life = AJ_RUN_LIFE_UNASKED;
        if (!(run->id = strdup(id)) || !dir || !control)
                return -ENOMEM;
        struct stat st;
        if (lstat(run->dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        /* A run whose run.json is missing or broken is still listed, as "unknown". */
        if (aj_run_record_read(run->dir, &run->rec, &run->rec_error) < 0)
                run->rec = NULL;
        if (run->rec)
                run->started_ns = run->rec->started_ns;
        *ret = TAKE_PTR(run);
        return 0;
}

static int run_cmp(const void *a, const void *b)
{
        const AjRun *x = *(AjRun *const *)a, *y = *(AjRun *const *)b;
        if (x->started_ns != y->started_ns)
                return x->started_ns < y->started_ns ? -1 : 1;
        return strcmp(x->id, y->id);
}

int aj_runs_list(const AjPaths *paths, AjRun ***ret_runs, size_t *ret_n)
{
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/runs", paths->state_root) < 0)
                return -ENOMEM;
        AjRun **runs = NULL;
        size_t n = 0;
        DIR *d = opendir(dir);
        if (!d && errno != ENOENT)
                return -errno;
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (!aj_run_id_valid(de->d_name))
                        continue;
                AjRun *run = NULL;
                if (aj_run_load(paths, de->d_name, &run) < 0)
                        continue; /* vanished meanwhile, or not a directory */
                AjRun **nr = realloc(runs, (n + 1) * sizeof(*runs));
                if (!nr) {
                        aj_run_free(run);
                        aj_runs_free(runs, n);
                        closedir(d);
                        return -ENOMEM;
                }
                runs = nr;
                runs[n++] = run;
        }
        if (d)
                closedir(d);
        if (n)
                qsort(runs, n, sizeof(*runs), run_cmp);
        *ret_runs = runs;
        *ret_n = n;
        return 0;
}

static const char *doc_str(json_t *doc, const char *key) { return json_string_value(json_object_get(doc, key)); }

static const char *run_name_of(const AjRun *run) { return run->rec ? run->rec->name : NULL; }

/* " abcd00000001 abcd00000002": the ids that start with query, `hits` of them (NULL without memory). */
static char *prefix_ids(AjRun **runs, size_t n, const char *query, size_t hits)
{
        size_t qlen = strlen(query), cap = 1 + hits * (AJ_RUN_ID_LEN + 1), off = 0;
        char *ids = malloc(cap);
        if (!ids)
                return NULL;
        ids[0] = 0;
        for (size_t i = 0; i < n; i++)
                if (strncmp(runs[i]->id, query, qlen) == 0 && off + AJ_RUN_ID_LEN + 1 < cap)
                        off += (size_t)snprintf(ids + off, cap - off, " %s", runs[i]->id);
        return ids;
}

/* "'abcd' matches 2 runs: abcd00000001 abcd00000002" (NULL without memory). */
static char *ambiguous_note(AjRun **runs, size_t n, const char *query, size_t hits)
{
        _cleanup_free_ char *ids = prefix_ids(runs, n, query, hits);
        char *note = NULL;
        if (!ids || asprintf(&note, "'%s' matches %zu run%s:%s", query, hits, hits == 1 ? "" : "s", ids) < 0)
                return NULL;
        return note;
}

/* "'3f2a' is both a name (of run bb693dbabf32) and an id prefix (of 3f2a00000001)" and what
 * follows: RUN means one run as a name and another (or several) as an id prefix. */
static char *both_note(AjRun **runs, size_t n, const char *query, ssize_t named, size_t name_hits, size_t prefix_hits,
                       const char *then)
{
        _cleanup_free_ char *ids = prefix_ids(runs, n, query, prefix_hits);
        _cleanup_free_ char *of_name = NULL;
        char *note = NULL;
        if (!ids)
                return NULL;
        if ((name_hits > 1 ? asprintf(&of_name, "of %zu runs, the most recent %s", name_hits, runs[named]->id)
                           : asprintf(&of_name, "of run %s", runs[named]->id)) < 0) {
                of_name = NULL;
                return NULL;
        }
        if (asprintf(&note, "'%s' is both a name (%s) and an id prefix (of%s); %s", query, of_name, ids, then) < 0)
                return NULL;
        return note;
}

int aj_runs_find(const AjPaths *paths, const char *query, AjRun **ret, char **ret_note)
{
        return aj_runs_find_min(paths, query, AJ_RUN_PREFIX_MIN, ret, ret_note);
}

int aj_runs_find_min(const AjPaths *paths, const char *query, size_t min_prefix, AjRun **ret, char **ret_note)
{
        size_t qlen = query ? strlen(query) : 0;
        if (qlen == 0 || qlen > 255 || strchr(query, '/') || streq(query, ".") || streq(query, ".."))
                return -EINVAL;
        char *note = NULL;

        if (aj_run_id_valid(query)) {
                AjRun *run = NULL;
                int r = aj_run_load(paths, query, &run);
                if (r >= 0) {
                        *ret = run;
                        if (ret_note)
                                *ret_note = NULL;
                        return 0;
                }
                if (r != -ENOENT)
                        return r;
        }

        AjRun **runs = NULL;
        size_t n = 0;
        int r = aj_runs_list(paths, &runs, &n);
        if (r < 0)
                return r;

        /* What RUN names each way: the runs whose ids it starts, the runs of that name. */
        ssize_t prefix_hit = -1, named = -1;
        size_t prefix_hits = 0, name_hits = 0;
        bool hexq = qlen >= AJ_RUN_PREFIX_MIN && qlen < AJ_RUN_ID_LEN && strspn(query, "0123456789abcdef") == qlen;
        for (size_t i = 0; hexq && i < n; i++)
                if (strncmp(runs[i]->id, query, qlen) == 0) {
                        prefix_hit = (ssize_t)i;
                        prefix_hits++;
                }
        /* Sorted by start: the last one with the name is the most recent. */
        for (size_t i = 0; i < n; i++) {
                const char *name = run_name_of(runs[i]);
                if (name && streq(name, query)) {
                        named = (ssize_t)i;
                        name_hits++;
                }
        }
        /* A name that is also the start of another run's id: `kill 3f2a` may be meant for the
         * run named 3f2a or for 3f2a91c04b7e. A verb that acts does not guess, whatever the
         * prefix's length (only the whole id, tried above, is never a name); one that reads
         * takes the unique prefix's run, else the name's, and says so. */
        bool acting = min_prefix > AJ_RUN_PREFIX_MIN;
        bool both = prefix_hits && named >= 0 && !(prefix_hits == 1 && prefix_hit == named);
        /* Too short to act on: it matches, but is not taken as the run's. */
        size_t short_hits = qlen < min_prefix ? prefix_hits : 0;

        ssize_t chosen = -1;
        r = -ENOENT;
        if (both && acting) {
                r = -ENOTUNIQ;
                note = both_note(runs, n, query, named, name_hits, prefix_hits, "give the whole id of the run meant");
        } else if (prefix_hits == 1 && !short_hits) {
                chosen = prefix_hit;
                if (both && asprintf(&note,
                                     "'%s' is also the name of %s; using %s, whose id it starts (the whole id "
                                     "names either)",
                                     query, runs[named]->id, runs[chosen]->id) < 0)
                        note = NULL;
        } else if (named >= 0) {
                chosen = named;
                if (both)
                        note = both_note(runs, n, query, named, name_hits, prefix_hits,
                                         "using the run of that name (the whole id names either)");
                else if (name_hits > 1 &&
                         asprintf(&note, "'%s' names %zu runs; using the most recent one, %s (started %s)", query,
                                  name_hits, runs[chosen]->id, runs[chosen]->rec->started ?: "?") < 0)
                        note = NULL;
        } else if (short_hits) {
                r = -ERANGE;
                note = ambiguous_note(runs, n, query, short_hits);
        } else if (prefix_hits > 1) {
                r = -ENOTUNIQ;
                note = ambiguous_note(runs, n, query, prefix_hits);
        }

        if (chosen >= 0) {
                *ret = runs[chosen];
                runs[chosen] = NULL;
                r = 0;
        }
        aj_runs_free(runs, n);
        if (ret_note)
                *ret_note = note;
        else
                free(note);
        return r;
}

/* ---- liveness and state ------------------------------------------------------------- */

bool aj_supervisor_alive(pid_t pid)
{
        if (pid <= 1)
                return false;
        if (kill(pid, 0) < 0 && errno != EPERM)
                return false;
        /* A reused pid belongs to some other program. */
        char path[64], comm[32] = "";
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno != ENOENT;
        ssize_t n = read(fd, comm, sizeof(comm) - 1);
        if (n <= 0)
                return true;
        comm[n] = 0;
        comm[strcspn(comm, "\n")] = 0;
        return streq(comm, "agentjail");
}

int aj_run_dir_held(const char *dir)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? 1 : -errno;
        (void)flock(fd, LOCK_UN);
        return 0;
}

/* aj_run_supervisor_alive, and the life lock's answer when it was asked (a run without
 * run.json whose live.lock is not held) in *ret_life, else AJ_RUN_LIFE_UNASKED. */
static bool supervisor_alive(const AjRun *run, int *ret_life)
{
        *ret_life = AJ_RUN_LIFE_UNASKED;
        int r = aj_run_live_held(run->dir);
        if (r > 0)
                return true;
        /* No run.json and live.lock not held (none yet, or made and not yet locked): a
         * supervisor in its first syscalls holds the directory's life lock, which is what
         * says it lives until live.lock does; `kill` then must wait for it, not find it
         * "not live". (A run.json is written only once live.lock is held.) */
        if (!run->rec && run->rec_error.err == 0 && (r == 0 || r == -ENOENT)) {
                int q = *ret_life = aj_run_dir_held(run->dir);
                if (q >= 0 || q == -ENOENT)
                        return q > 0;
                if (q != -EACCES)
                        return true; /* cannot tell: as live */
        }
        if (r == 0)
                return false;
        /* No live.lock: a run of an older agentjail, by its pid and comm. Not ours to open
         * (root's run, read by a member of its group): the same. */
        if (r == -ENOENT || r == -EACCES)
                return run->rec && aj_supervisor_alive(run->rec->supervisor_pid);
        return true; /* cannot tell: as live, so that nothing acts on the run as over */
}

bool aj_run_supervisor_alive(const AjRun *run)
{
        int life;
        return supervisor_alive(run, &life);
}

void aj_run_probe(AjRun *run, int timeout_ms)
{
        run->probed = true;
        run->live = false;
        run->probe_error = 0;
        json_decref(run->live_state);
        run->live_state = NULL;
        /* Only a run whose processes exist is asked: whatever answers at a dead run's socket
         * path is not the run (a socket another user serves in a runtime dir they made), and
         * it must neither make the run live nor hear the request. */
        run->alive = supervisor_alive(run, &run->life);
        if (!run->alive)
                return;

        struct stat st;
        if (lstat(run->control_path, &st) < 0 || !S_ISSOCK(st.st_mode))
                return;
        json_auto_t *req = json_pack("{s:s}", "op", "inspect");
        json_auto_t *reply = NULL;
        int r = req ? aj_control_call(run->control_path, req, timeout_ms, &reply) : -ENOMEM;
        if (r == -ECONNREFUSED || r == -ENOENT)
                return; /* a stale socket of a supervisor that is gone */
        run->live = true;
        if (r < 0) {
                run->probe_error = r;
                return;
        }
        if (json_is_true(json_object_get(reply, "ok"))) {
                run->live_state = json_incref(json_object_get(reply, "result"));
                return;
        }
        const char *code = json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
        run->probe_error = code && streq(code, "EPERM") ? -EPERM : -EIO;
}

static bool state_name_valid(const char *s)
{
        return s && (streq(s, "running") || streq(s, "frozen") || streq(s, "quarantined") || streq(s, "exited"));
}

const char *aj_run_state_of(const AjRunRecord *rec, bool live, json_t *live_state, bool supervisor_alive)
{
        const char *state = rec ? rec->state : NULL;
        const char *status = rec ? rec->status : NULL;
        if (live) {
                const char *ls = doc_str(live_state, "state");
                if (state_name_valid(ls))
                        return ls;
                if (state_name_valid(state) && !streq(state, "exited"))
                        return state;
                return "running";
        }
        if (!rec)
                return "unknown";
        if (aj_run_record_quarantined(rec))
                return "quarantined";
        if (status && (streq(status, "running") || streq(status, "starting"))) {
                if (!supervisor_alive)
                        return "lost";
                return state && streq(state, "frozen") ? "frozen" : "running";
        }
        if (status && streq(status, "exited"))
                return "exited";
        return "unknown";
}

const char *aj_run_display_state(const AjRun *run)
{
        int life = run->life;
        bool alive = run->probed ? run->alive : supervisor_alive(run, &life);
        /* No run.json (none, not a malformed one) and nothing of the run holds its directory:
         * its supervisor died in start-up, before it wrote it (SIGKILLed, or the host went
         * down), and its watchdog, if it had one, is done. Lost, and prunable as such: as
         * "unknown" each such directory stayed for good. The probe's answer, when it asked
         * (always, for such a run found not alive), is the one taken. */
        if (!run->rec && run->rec_error.err == 0 && !run->live && !alive &&
            (life != AJ_RUN_LIFE_UNASKED ? life : aj_run_dir_held(run->dir)) == 0)
                return "lost";
        return aj_run_state_of(run->rec, run->live, run->live_state, !run->live && alive);
}

/* ---- meters -------------------------------------------------------------------------- */

static const char *meter_label(const char *key)
{
        if (streq(key, "cost_usd"))
                return "cost";
        if (streq(key, "egress_bytes"))
                return "egress";
        return key;
}

static void meter_value(const char *key, json_t *v, char *buf, size_t len)
{
        if (json_is_string(v)) {
                snprintf(buf, len, "%.32s", json_string_value(v));
                return;
        }
        double d = json_number_value(v);
        if (streq(key, "cost_usd"))
                snprintf(buf, len, "$%.2f", d);
        else if (streq(key, "egress_bytes") && d >= 0 && d < 1.8e19)
                aj_format_size((uint64_t)d, buf, len);
        else if (d == floor(d) && fabs(d) < 1e15)
                snprintf(buf, len, "%.0f", d);
        else
                snprintf(buf, len, "%g", d);
}

static void meter_append(char *out, size_t *used, size_t cap, const char *key, json_t *entry)
{
        json_t *limit = json_object_get(entry, "limit"), *u = json_object_get(entry, "used");
        bool has_limit = json_is_number(limit) || json_is_string(limit);
        bool has_use = (json_is_number(u) && json_number_value(u) > 0) || json_is_string(u);
        /* Meters without a cap that were never used are noise in a one-line summary. */
        if (!has_limit && !has_use)
                return;
        char ub[48], lb[48] = "";
        if (json_is_number(u) || json_is_string(u))
                meter_value(key, u, ub, sizeof(ub));
        else
                snprintf(ub, sizeof(ub), streq(key, "cost_usd") ? "$0.00" : "0");
        if (has_limit)
                meter_value(key, limit, lb, sizeof(lb));
        if (*used + 128 >= cap)
                return;
        *used += (size_t)snprintf(out + *used, cap - *used, "%s%s %s%s%s", *used ? " " : "", meter_label(key), ub,
                                  has_limit ? "/" : "", lb);
}

char *aj_meters_summary(json_t *meters)
{
        static const char *const order[] = { "tokens",     "input_tokens",       "output_tokens", "cost_usd",
                                             "tool_calls", "tool_calls_per_min", "egress_bytes",  NULL };
        size_t cap = 1024, used = 0;
        char *out = calloc(1, cap);
        if (!out)
                return NULL;
        for (size_t i = 0; order[i]; i++)
                meter_append(out, &used, cap, order[i], json_object_get(meters, order[i]));
        /* Meters this version does not know about still show up, after the known ones. */
        const char *key;
        json_t *v;
        if (json_is_object(meters))
                json_object_foreach (meters, key, v) {
                        bool known = false;
                        for (size_t i = 0; order[i] && !known; i++)
                                known = streq(order[i], key);
                        if (!known)
                                meter_append(out, &used, cap, key, v);
                }
        if (used == 0)
                strcpy(out, "-");
        return out;
}

json_t *aj_run_meters(const AjRun *run)
{
        /* Live numbers when the supervisor answered, else the last ones it wrote. */
        bool live = json_is_object(json_object_get(run->live_state, "meters"));
        json_t *m = live ? json_object_get(run->live_state, "meters") : run->rec ? run->rec->shown.meters : NULL;
        json_t *out = json_is_object(m) ? json_deep_copy(m) : json_object();
        if (!out)
                return NULL;
        /* Egress is counted by the proxy, outside the meter: inspect has it at the top level,
         * run.json under "network". */
        json_t *net = live ? run->live_state : run->rec ? run->rec->shown.network : NULL;
        json_t *eu = json_object_get(net, "egress_bytes"), *el = json_object_get(net, "egress_limit");
        if (json_is_integer(el) && json_integer_value(el) == 0)
                el = NULL; /* inspect says 0 for "no egress cap" */
        if (!json_object_get(out, "egress_bytes") && (json_is_integer(eu) || json_is_integer(el)))
                json_object_set_new(out, "egress_bytes",
                                    json_pack("{s:O, s:O}", "limit", json_is_integer(el) ? el : json_null(), "used",
                                              json_is_integer(eu) ? eu : json_integer(0)));
        return out;
}

bool aj_event_type_matches(json_t *ev, const char *prefix)
{
        if (!prefix || !*prefix)
                return true;
        const char *type = doc_str(ev, "type");
        if (!type)
                return false;
        size_t n = strlen(prefix);
        if (strncmp(type, prefix, n) != 0)
                return false;
        /* "net" is a whole first component (not "network.x"); "tool.re" is a plain prefix. */
        return type[n] == 0 || type[n] == '.' || strchr(prefix, '.');
}

static bool bare_string(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr("_./:@+-,", *s)))
                        return false;
        return true;
}

/* max: the most bytes of the value shown (then cut with "..."), 0 for all of it. */
static void append_field(char **buf, size_t *len, size_t *cap, const char *key, json_t *v, size_t max)
{
        _cleanup_free_ char *text = NULL;
        if (json_is_string(v) && bare_string(json_string_value(v)))
                text = strdup(json_string_value(v));
        else
                text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        if (!text)
                return;
        if (max && strlen(text) > max)
                strcpy(text + max - 3, "...");
        size_t need = strlen(key) + strlen(text) + 3;
        if (*len + need >= *cap) {
                size_t nc = (*cap + need) * 2;
                char *nb = realloc(*buf, nc);
                if (!nb)
                        return;
                *buf = nb;
                *cap = nc;
        }
        *len += (size_t)snprintf(*buf + *len, *cap - *len, " %s=%s", key, text);
}

/* What an operator decides on, shown whole where they are told to review it (`logs`): an
 * approval request's every member. Cut, the agent's arguments hid what the call does past
 * their first 200 bytes (a padded first member, in the order the agent chose). */
static bool reviewed_whole(json_t *ev, bool whole_review)
{
        const char *type = doc_str(ev, "type");
        return whole_review && type && streq(type, "approval.requested");
}

static int event_format(json_t *ev, bool whole_review, char **ret)
{
        /* The fields an operator scans for come first; the rest follow in file order. */
        static const char *const first[] = { "reason", "status", "code",    "signal",
                                             "cap",    "limit",  "value",   "gen_ai.tool.name",
                                             "tool",   "call",   "verdict", "allowed",
                                             "host",   "port",   "syscall", NULL };
        static const char *const skip[] = { "seq", "ts", "run", "type", "prev", "digest", "profile_path", NULL };
        if (!json_is_object(ev))
                return -EINVAL;
        const char *ts = doc_str(ev, "ts");
        char when[32];
        if (ts && strlen(ts) >= 23 && ts[10] == 'T')
                snprintf(when, sizeof(when), "%.10s %.12s", ts, ts + 11);
        else
                snprintf(when, sizeof(when), "%.23s", ts ? ts : "?");
        json_t *seq = json_object_get(ev, "seq");
        const char *type = doc_str(ev, "type");
        size_t max = reviewed_whole(ev, whole_review) ? 0 : EVENT_VALUE_MAX;

        size_t cap = 256, len = 0;
        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        len = (size_t)snprintf(buf, cap, "%s %5lld %-18.64s", when,
                               json_is_integer(seq) ? (long long)json_integer_value(seq) : 0LL, type ? type : "?");
        _cleanup_free_ char *llm = NULL;
        if (type && streq(type, "llm.response") && aj_llm_response_format(ev, &llm) >= 0) {
                /* A model call reads better in a fixed order, with units. */
                _cleanup_free_ char *line = NULL;
                int n = asprintf(&line, "%s %s", buf, llm);
                free(buf);
                if (n < 0)
                        return -ENOMEM;
                return (*ret = aj_printable_dup(line, (size_t)n, 0)) ? 0 : -ENOMEM;
        }
        for (size_t i = 0; first[i]; i++) {
                json_t *v = json_object_get(ev, first[i]);
                if (v)
                        append_field(&buf, &len, &cap, first[i], v, max);
        }
        const char *key;
        json_t *v;
        json_object_foreach (ev, key, v) {
                bool done = false;
                for (size_t i = 0; first[i] && !done; i++)
                        done = streq(first[i], key);
                for (size_t i = 0; skip[i] && !done; i++)
                        done = streq(skip[i], key);
                if (!done)
                        append_field(&buf, &len, &cap, key, v, max);
        }
        while (len > 0 && buf[len - 1] == ' ')
                buf[--len] = 0;
        /* The agent's strings (names, ids, arguments): one line, escaped (util/format.h). */
        char *shown = aj_printable_dup(buf, len, 0);
        free(buf);
        if (!shown)
                return -ENOMEM;
        *ret = shown;
        return 0;
}

int aj_event_format(json_t *ev, char **ret) { return event_format(ev, false, ret); }

int aj_event_format_log(json_t *ev, char **ret) { return event_format(ev, true, ret); }

/* ---- the tool calls' journal ------------------------------------------------------------ */

typedef struct {
        json_t *held;    /* call id -> the tool.request held for approval (its approval.requested) */
        json_t *allowed; /* call id -> the tool.request an "allow" answered: the call a result is of */
        json_t *state;   /* call id -> "asked", "allowed" (a tool.verdict allow) or "reported" */
        json_t *calls;   /* oldest first */
        json_t *by_seq;  /* the tool.result's seq (as a string) -> its entry in calls */
        json_t *prev;    /* the event before this one */
} Journal;

/* A rollback.step of `agentjail rollback --apply`: the last one for a call is its state. */
static int journal_rollback_step(Journal *j, json_t *ev)
{
        json_t *seq = json_object_get(ev, "result_seq");
        const char *result = doc_str(ev, "result");
        if (!json_is_integer(seq) || !result)
                return 0;
        char key[32];
        snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(seq));
        json_t *c = json_object_get(j->by_seq, key);
        if (!c)
                return 0;
        return json_object_set_new(c, "rollback",
                                   json_pack("{s:s, s:O, s:s?}", "result", result, "seq", json_object_get(ev, "seq"),
                                             "ts", doc_str(ev, "ts")));
}

/* What a tool.result is to the journal: its call's result (NULL), or an orphan, and why.
 * Only the first result of a call the broker allowed counts: the agent chooses the ids,
 * so a result for a call never asked for, denied, still awaiting approval or already
 * reported names nothing that happened and must never be undone. */
static const char *journal_orphan(Journal *j, const char *id, json_t *result)
{
        const char *st = json_string_value(json_object_get(j->state, id));
        if (!st)
                return "no tool call with that id";
        if (streq(st, "asked"))
                return "the call was not allowed";
        if (streq(st, "reported"))
                return "the call's result was reported already";
        /* The broker names the tool it allowed in the result: another is not this call. */
        const char *tool = doc_str(result, "gen_ai.tool.name");
        if (tool && !streq(tool, doc_str(json_object_get(j->allowed, id), "gen_ai.tool.name") ?: ""))
                return "the result names another tool than the call allowed";
        return NULL;
}

/* The tool.request a tool.verdict answers, from the events the broker writes together:
 * an immediate verdict follows its request; a held call's follows the operator's
 * "approval", and its request is the one approval.requested followed, whatever requests
 * the agent sent under the same id meanwhile (a denied one must not lend the approved
 * call its tool and arguments, nor take the approval's gate off the undo). NULL when the
 * verdict follows neither, or names another tool: no call the journal can vouch for. */
static json_t *journal_answered(Journal *j, json_t *verdict, const char *id)
{
        const char *prev_type = doc_str(j->prev, "type"), *prev_id = doc_str(j->prev, "gen_ai.tool.call.id");
        json_t *req = NULL;
        if (prev_type && prev_id && streq(prev_id, id)) {
                if (streq(prev_type, "tool.request"))
                        req = j->prev;
                else if (streq(prev_type, "approval"))
                        req = json_object_get(j->held, id);
        }
        const char *tool = doc_str(verdict, "gen_ai.tool.name");
        if (!req || (tool && !streq(tool, doc_str(req, "gen_ai.tool.name") ?: "")))
                return NULL;
        return req;
}

static int journal_verdict(Journal *j, json_t *ev, const char *id)
{
        const char *verdict = doc_str(ev, "verdict");
        json_t *req = journal_answered(j, ev, id);
        const char *prev_type = doc_str(j->prev, "type");
        int r = 0;
        if (verdict && streq(verdict, "allow") && req) {
                /* At once or after an approval: the call that happens now, whatever the id
                 * named before (the broker grants its undo record the same way). */
                r = json_object_set(j->allowed, id, req) < 0 ||
                                    json_object_set_new(j->state, id, json_string("allowed")) < 0
                            ? -ENOMEM
                            : 0;
        }
        if (prev_type && streq(prev_type, "approval")) /* decided: no longer held */
                json_object_del(j->held, id);
        return r;
}

/* The agent's value as its compact JSON text (a JSON string), NULL when there is none; *oom
 * when it could not be made. Its DOM costs 20 to 60 times the text: the journal holds
 * thousands of them, each parsed only when it is used (aj_run_journal_value). */
static json_t *journal_text(json_t *v, bool *oom)
{
        if (!v || json_is_null(v))
                return NULL;
        _cleanup_free_ char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        json_t *s = text ? json_string(text) : NULL;
        *oom |= !s;
        return s;
}

json_t *aj_run_journal_value(json_t *entry, const char *key)
{
        const char *text = json_string_value(json_object_get(entry, key));
        return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

static int journal_result(Journal *j, json_t *ev, const char *id)
{
        const char *orphan = journal_orphan(j, id, ev);
        json_t *req = orphan ? NULL : json_object_get(j->allowed, id);
        json_t *seq = json_object_get(ev, "seq");
        bool oom = false;
        json_t *args = journal_text(json_object_get(req, "gen_ai.tool.call.arguments"), &oom);
        json_t *undo = journal_text(json_object_get(ev, "undo"), &oom);
        json_t *c = oom ? NULL
                        : json_pack("{s:s, s:s?, s:o?, s:s?, s:s?, s:o, s:O?, s:n}", "gen_ai.tool.call.id", id,
                                    "gen_ai.tool.name", doc_str(req, "gen_ai.tool.name"), "gen_ai.tool.call.arguments",
                                    args, "status", doc_str(ev, "status"), "ts", doc_str(ev, "ts"), "undo",
                                    undo ? undo : json_null(), "seq", json_is_integer(seq) ? seq : NULL, "rollback");
        if (oom) {
                json_decref(args);
                json_decref(undo);
        }
        if (c && orphan && json_object_set_new(c, "orphan", json_string(orphan)) < 0) {
                json_decref(c);
                c = NULL;
        }
        if (!c || json_array_append_new(j->calls, c) < 0)
                return -ENOMEM;
        if (orphan)
                return 0;
        if (json_object_set_new(j->state, id, json_string("reported")) < 0)
                return -ENOMEM;
        json_object_del(j->allowed, id);
        if (json_is_integer(seq)) {
                char key[32];
                snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(seq));
                return json_object_set(j->by_seq, key, c);
        }
        return 0;
}

static int journal_event(Journal *j, json_t *ev)
{
        const char *type = doc_str(ev, "type"), *id = doc_str(ev, "gen_ai.tool.call.id");
        if (type && streq(type, "rollback.step"))
                return journal_rollback_step(j, ev);
        if (!type || !id)
                return 0;
        if (streq(type, "tool.request")) { /* a reused id: a new call, judged anew */
                json_object_del(j->allowed, id);
                return json_object_set_new(j->state, id, json_string("asked")) < 0 ? -ENOMEM : 0;
        }
        if (streq(type, "approval.requested")) { /* the request just before it is held */
                const char *prev_type = doc_str(j->prev, "type"), *prev_id = doc_str(j->prev, "gen_ai.tool.call.id");
                if (prev_type && prev_id && streq(prev_type, "tool.request") && streq(prev_id, id))
                        return json_object_set(j->held, id, j->prev) < 0 ? -ENOMEM : 0;
                json_object_del(j->held, id);
                return 0;
        }
        if (streq(type, "tool.verdict"))
                return journal_verdict(j, ev, id);
        if (streq(type, "tool.result"))
                return journal_result(j, ev, id);
        return 0;
}

static int journal_add(json_t *ev, void *userdata)
{
        Journal *j = userdata;
        int r = journal_event(j, ev);
        json_decref(j->prev);
        j->prev = json_incref(ev);
        return r;
}

/* The journal from the chain: every allowed tool call that reported a result, newest
 * first, with its undo record (null when the agent gave none). */
int aj_run_tool_journal(const AjRun *run, json_t **ret_calls)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        json_auto_t *held = json_object(), *allowed = json_object(), *state = json_object(), *calls = json_array(),
                    *by_seq = json_object();
        Journal j = { .held = held, .allowed = allowed, .state = state, .calls = calls, .by_seq = by_seq };
        r = held && allowed && state && calls && by_seq ? aj_events_foreach(path, journal_add, &j, NULL) : -ENOMEM;
        json_decref(j.prev);
        if (r < 0)
                return r;
        json_t *newest_first = json_array();
        for (size_t i = json_array_size(calls); newest_first && i > 0; i--)
                if (json_array_append(newest_first, json_array_get(calls, i - 1)) < 0) {
                        json_decref(newest_first);
                        newest_first = NULL;
                }
        if (!newest_first)
                return -ENOMEM;
        *ret_calls = newest_first;
        return 0;
}

/* ---- operator changes to dead runs ----------------------------------------------------- */

int aj_run_lock_records(AjRun *run, bool exclusive, int *ret_fd)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_close_ int fd = -1;
        r = aj_events_lock(path, exclusive, &fd);
        if (r < 0)
                return r;
        AjRunRecord *rec = NULL;
        r = aj_run_record_read(run->dir, &rec, NULL);
        if (r < 0 && r != -ENOENT)
                return r;
        aj_run_record_free(run->rec);
        run->rec = rec;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Under the records' lock: the event, and run.json's anchor moved in run->rec, unless the
 * chain did not end at it (the event says so, the operator is told, the anchor stays). */
static int append_locked(AjRun *run, const char *type, json_t *fields)
{
        json_auto_t *owned = fields;
        char path[PATH_MAX];
        int r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        const AjRunAnchor *a = run->rec && run->rec->anchor.present && run->rec->anchor.end ? &run->rec->anchor : NULL;
        AjChainEnd anchor = { .count = a ? a->count : 0 }, end;
        if (a)
                snprintf(anchor.last_hash, sizeof(anchor.last_hash), "%s", a->last_sha256);
        r = aj_events_append_after(path, run->id, a ? &anchor : NULL, type, TAKE_PTR(owned), &end);
        if (r < 0)
                return r;
        r = run->rec ? aj_run_record_move_anchor(run->rec, &end, type) : 0;
        if (r == AJ_RUN_ANCHOR_KEPT)
                aj_warning("run %s: its event chain does not end at event %llu, where run.json's anchor says it "
                           "was closed: it was cut, changed or extended since. The %s event is recorded after its "
                           "last event (%llu) and the anchor left as it was ('agentjail logs %s --verify')",
                           run->id, (unsigned long long)anchor.count, type, (unsigned long long)end.from_count,
                           run->id);
        return r;
}

int aj_run_append_event(AjRun *run, const char *type, json_t *fields)
{
        json_auto_t *owned = fields;
        _cleanup_close_ int lock = -1;
        int r = aj_run_lock_records(run, true, &lock);
        if (r < 0)
                return r;
        r = append_locked(run, type, TAKE_PTR(owned));
        if (r < 0 || !run->rec)
                return r;
        return aj_run_record_write(run->dir, run->rec);
}

/* The prologue of every change to a dead run's records: the records' lock (*ret_fd), then
 * run.json as it is under it; -ENOENT without one (nothing to change). */
static int lock_records_of_run(AjRun *run, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        int r = aj_run_lock_records(run, true, &fd);
        if (r < 0)
                return r;
        if (!run->rec)
                return -ENOENT;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_run_release_offline(AjRun *run, uid_t by_uid)
{
        _cleanup_close_ int lock = -1;
        int r = lock_records_of_run(run, &lock);
        if (r < 0)
                return r;
        if (!aj_run_record_quarantined(run->rec))
                return -EALREADY;
        char ts[40];
        aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts));
        /* The chain first: a record of the release exists before its effect does. */
        r = append_locked(run, "quarantine.release",
                          json_pack("{s:s, s:I, s:b}", "by", "operator", "uid", (json_int_t)by_uid, "live", 0));
        if (r >= 0)
                r = aj_run_record_release(run->rec, by_uid, ts);
        if (r < 0)
                return r;
        return aj_run_record_write(run->dir, run->rec);
}

int aj_run_decide_workspace(AjRun *run, const char *changes, json_t *fields, bool *ret_recorded)
{
        json_auto_t *owned = fields;
        *ret_recorded = false;
        if (!owned)
                return -ENOMEM;
        _cleanup_close_ int lock = -1;
        int r = lock_records_of_run(run, &lock);
        if (r < 0)
                return r;
        const char *type = streq(changes, "committed") ? "workspace.commit" : "workspace.discard";
        if (json_object_set_new(owned, "uid", json_integer((json_int_t)getuid())) < 0)
                return -ENOMEM;
        r = append_locked(run, type, TAKE_PTR(owned));
        if (r < 0)
                return r;
        *ret_recorded = true;
        char ts[40];
        aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts));
        r = aj_run_record_decide_workspace(run->rec, changes, getuid(), ts);
        return r < 0 ? r : aj_run_record_write(run->dir, run->rec);
}

int aj_run_lock_workspace(const AjRun *run, int *ret_fd)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run->dir, AJ_RUN_DIR_WORKSPACE, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
                return -errno;
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_run_rollback_record(AjRun *run, const AjRollbackStep *s, const AjRollbackOutcome *o, bool *ret_recorded)
{
        *ret_recorded = false;
        _cleanup_close_ int lock = -1;
        int r = lock_records_of_run(run, &lock);
        if (r < 0)
                return r;
        json_t *fields = aj_rollback_step_event(s, o, getuid());
        if (!fields)
                return -ENOMEM;
        r = append_locked(run, AJ_ROLLBACK_EVENT, fields);
        if (r < 0)
                return r;
        *ret_recorded = true;
        char ts[40];
        aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts));
        AjRunRollbackStep step = {
                .call_id = s->call_id,
                .tool = s->tool,
                .result_seq = s->result_seq,
                .result = aj_rollback_result_name(o->result),
                .exit_code = o->exit_code,
                .at = ts,
                .by = getuid(),
        };
        r = aj_run_record_rollback_step(run->rec, &step);
        return r < 0 ? r : aj_run_record_write(run->dir, run->rec);
}

/* The run directory's life lock (state.h aj_run_dir_create), taken exclusively without
 * waiting: *ret_fd holds it. Only <state>/runs/<valid id>, a real directory (-EPERM);
 * -EBUSY when a supervisor or a watchdog holds it (shared), or `rollback --apply`. */
static int hold_run_dir(const AjPaths *paths, const AjRun *run, int *ret_fd)
{
        if (!aj_run_id_valid(run->id))
                return -EPERM;
        _cleanup_free_ char *expected = NULL;
        if (asprintf(&expected, "%s/runs/%s", paths->state_root, run->id) < 0)
                return -ENOMEM;
        if (!streq(expected, run->dir))
                return -EPERM;
        struct stat st;
        if (lstat(expected, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -EPERM;
        _cleanup_close_ int fd = open(expected, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* With its life lock held: nothing of the run lives any more (its live.lock free; a run of
 * an older agentjail, without one, by its supervisor's pid). -EBUSY when something does,
 * another -errno when that cannot be told. */
static int check_dead(const AjRun *run)
{
        int r = aj_run_live_held(run->dir);
        if (r > 0)
                return -EBUSY;
        if (r == -ENOENT)
                return run->rec && aj_supervisor_alive(run->rec->supervisor_pid) ? -EBUSY : 0;
        return r;
}

/* Its life lock held in *ret_fd, and nothing of it alive (check_dead()). */
static int hold_dead_run(const AjPaths *paths, const AjRun *run, int *ret_fd)
{
        int r = hold_run_dir(paths, run, ret_fd);
        return r < 0 ? r : check_dead(run);
}

/* ---- what a dead run left on the host ------------------------------------------------- */

void aj_run_remains_done(AjRunRemains *rm)
{
        aj_strv_free(rm->cgroup);
        free(rm->runtime_dir);
        *rm = (AjRunRemains){ 0 };
}

bool aj_run_remains_any(const AjRunRemains *rm) { return (rm->cgroup && rm->cgroup[0]) || rm->runtime_dir; }

char *aj_run_remains_describe(const AjRunRemains *rm, char *buf, size_t len)
{
        size_t dirs = aj_strv_length(rm->cgroup);
        char cg[64] = "";
        if (dirs)
                snprintf(cg, sizeof(cg), "its cgroup (%zu director%s)", dirs, dirs == 1 ? "y" : "ies");
        snprintf(buf, len, "%s%s%s", cg, dirs && rm->runtime_dir ? ", " : "", rm->runtime_dir ? "its runtime dir" : "");
        return buf;
}

/* What of the run is still on the host, found (aj_run_remains without in_use); its cgroup
 * looked for only when cgroup_ids (NULL: unknown; its n_ids ids sorted) lists its id. */
static int find_remains(const AjPaths *paths, const AjRun *run, char *const *cgroup_ids, size_t n_ids,
                        AjRunRemains *ret)
{
        if (!aj_run_id_valid(run->id))
                return -EINVAL;
        _cleanup_(aj_run_remains_done) AjRunRemains rm = { 0 };
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        int r = !cgroup_ids || aj_strv_sorted_contains(cgroup_ids, n_ids, run->id) ? aj_cgroup_open(run->id, &cg)
                                                                                   : -ENOENT;
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0 && !(rm.cgroup = aj_strv_copy(aj_cgroup_paths(cg))))
                return -ENOMEM;
        _cleanup_free_ char *rt = aj_runtime_dir_path(paths, run->id);
        if (!rt)
                return -ENOMEM;
        struct stat st;
        if (lstat(rt, &st) == 0)
                rm.runtime_dir = TAKE_PTR(rt);
        else if (errno != ENOENT)
                return -errno;
        *ret = rm;
        rm = (AjRunRemains){ 0 };
        return 0;
}

/* Takes what a reap acts on: the run's runtime dir and every directory of its cgroup,
 * exclusively, without waiting (*ret_rt_fd, *ret_cg hold them; NULL/-1 for what is not
 * there). Named by the id alone, they are held (shared) by a live run's supervisor of
 * another run directory of that id (this one a copy of its directory): -EBUSY, and
 * rm->in_use, then. The one predicate of `ps` (aj_run_remains) and `prune` (the reap). */
static int claim_remains(const AjRun *run, AjRunRemains *rm, int *ret_rt_fd, AjCgroup **ret_cg)
{
        _cleanup_close_ int rt_fd = -1;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        int r = 0;
        if (rm->runtime_dir && aj_runtime_dir_hold(rm->runtime_dir, true, &rt_fd) == -EBUSY)
                r = -EBUSY;
        if (r == 0 && rm->cgroup) {
                r = aj_cgroup_open(run->id, &cg);
                if (r >= 0)
                        r = aj_cgroup_claim(cg);
                else if (r == -ENOENT)
                        r = 0; /* gone meanwhile */
        }
        rm->in_use = r == -EBUSY;
        if (r < 0)
                return r;
        *ret_rt_fd = TAKE_FD(rt_fd);
        *ret_cg = TAKE_PTR(cg);
        return 0;
}

int aj_run_remains(const AjPaths *paths, const AjRun *run, AjRunRemains *ret)
{
        return aj_run_remains_among(paths, run, NULL, 0, ret);
}

int aj_run_remains_among(const AjPaths *paths, const AjRun *run, char *const *cgroup_ids, size_t n_ids,
                         AjRunRemains *ret)
{
        _cleanup_(aj_run_remains_done) AjRunRemains rm = { 0 };
        int r = find_remains(paths, run, cgroup_ids, n_ids, &rm);
        if (r < 0)
                return r;
        if (aj_run_remains_any(&rm)) {
                _cleanup_close_ int rt_fd = -1;
                _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
                r = claim_remains(run, &rm, &rt_fd, &cg);
                if (r < 0 && r != -EBUSY)
                        return r;
        }
        *ret = rm;
        rm = (AjRunRemains){ 0 };
        return 0;
}

int aj_run_remains_populated(const AjRun *run)
{
        if (!aj_run_id_valid(run->id))
                return -EINVAL;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        int r = aj_cgroup_open(run->id, &cg);
        if (r >= 0)
                r = aj_cgroup_populated(cg);
        /* A directory gone meanwhile was removed: it was empty. */
        return r == -ENOENT ? 0 : r;
}

int aj_run_check_settled(const AjRun *run, char **ret_why)
{
        *ret_why = NULL;
        /* Its supervisor or watchdog may still write its records and kill or remove what is
         * left, and the cgroup it keeps may be empty only for now (a timed-out eval case's
         * watchdog, its supervisor gone). True too when that cannot be told. */
        if (aj_run_supervisor_alive(run)) {
                *ret_why = strdup(AJ_RUN_STILL_THERE_TEXT);
                return -EBUSY;
        }
        int r = aj_run_remains_populated(run);
        if (r > 0)
                *ret_why = strdup(AJ_RUN_REMAINS_POPULATED_TEXT);
        else if (r < 0)
                (void)aj_asprintf(ret_why,
                                  "cannot tell whether its cgroup still holds processes (which may still change what "
                                  "it left): %s",
                                  strerror(-r));
        return r > 0 ? -EBUSY : r;
}

int aj_run_workspace_check(const AjRunWorkspace *ws, int fd)
{
        if (!ws->has_id)
                return -ENODATA;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        return (uint64_t)st.st_dev == ws->dev && (uint64_t)st.st_ino == ws->ino ? 0 : -ESTALE;
}

void aj_run_reaped_done(AjRunReaped *r)
{
        aj_run_remains_done(&r->found);
        aj_strv_free(r->cgroup_left);
        *r = (AjRunReaped){ 0 };
}

/* The cgroup's directories of `found` still there. */
static char **dirs_left(char *const *found)
{
        char **left = NULL;
        struct stat st;
        for (char *const *p = found; p && *p; p++)
                if (stat(*p, &st) == 0 && aj_strv_push(&left, *p) < 0) {
                        aj_strv_free(left);
                        return NULL;
                }
        return left;
}

/* Kills what is left in the run's cgroup and removes it (AJ_RUN_REAP_CGROUP_MS for its
 * processes to leave), then its runtime dir, with its life lock held and nothing of it alive
 * (check_dead). */
static int reap_held(const AjPaths *paths, const AjRun *run, AjRunReaped *ret)
{
        int r = find_remains(paths, run, NULL, 0, &ret->found);
        if (r < 0)
                return r;
        /* Its runtime dir and cgroup are named by the id alone: held by a supervisor, they
         * are a live run's of another run directory of that id (a copy of its directory in
         * another state directory is dead by its own locks). Nothing is done then. */
        _cleanup_close_ int rt_fd = -1;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        r = claim_remains(run, &ret->found, &rt_fd, &cg);
        if (r < 0)
                return r;
        if (cg) {
                int64_t t0 = aj_now_monotonic_ms();
                r = aj_cgroup_remove(cg, AJ_RUN_REAP_CGROUP_MS);
                ret->waited_ms = aj_now_monotonic_ms() - t0;
                /* -ENOENT: gone meanwhile; a failure with nothing left: it did empty. */
                if (r < 0 && r != -ENOENT && (ret->cgroup_left = dirs_left(ret->found.cgroup)))
                        ret->cgroup_error = r;
        }
        if (ret->found.runtime_dir)
                ret->runtime_error = aj_runtime_dir_remove(ret->found.runtime_dir);
        return 0;
}

/* The reap in the run's chain, under the records' lock: what its watchdog would have written.
 * A chain nothing closed (both the supervisor and its watchdog died) is closed with
 * supervisor.lost; a closed one gets cgroup.removed (or runtime_dir.removed) after it. A
 * removal that failed on a closed chain is not recorded again at every prune: the run shows
 * what is left (ps), and its events already end with the run's end or cgroup.left. */
static int record_reap(AjRun *run, AjRunReaped *ret)
{
        _cleanup_close_ int lock = -1;
        int r = aj_run_lock_records(run, true, &lock);
        if (r < 0)
                return r;
        bool open_chain = !run->rec || !run->rec->anchor.present;
        bool cg = ret->found.cgroup != NULL, left = ret->cgroup_left != NULL;
        const char *type = open_chain     ? "supervisor.lost"
                           : cg && !left  ? "cgroup.removed"
                           : !cg && !left ? "runtime_dir.removed"
                                          : NULL;
        if (!type)
                return 0;
        json_auto_t *fields = json_pack("{s:s, s:I}", "by", "operator", "uid", (json_int_t)getuid());
        if (!fields)
                return -ENOMEM;
        if (open_chain)
                json_object_set_new(fields, "action",
                                    json_string(!cg    ? "runtime dir removed"
                                                : left ? "jail killed, cgroup left"
                                                       : "jail killed, cgroup removed"));
        if (open_chain)
                json_object_set_new(fields, "watchdog", json_string("lost"));
        if (cg)
                json_object_set_new(fields, "waited_ms", json_integer(ret->waited_ms));
        if (left) {
                json_t *dirs = json_array();
                for (char **d = ret->cgroup_left; dirs && *d; d++)
                        json_array_append_new(dirs, json_string(*d));
                json_object_set_new(fields, "cgroup_left", dirs);
                json_object_set_new(fields, "error", json_string(strerror(-ret->cgroup_error)));
        }
        if (ret->found.runtime_dir)
                json_object_set_new(fields, "runtime_dir", json_string(ret->runtime_error < 0 ? "left" : "removed"));
        char path[PATH_MAX];
        r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        AjChainEnd end;
        r = aj_events_append(path, run->id, type, TAKE_PTR(fields), &end);
        if (r < 0)
                return r;
        ret->event = type;
        if (!run->rec)
                return 0; /* died before run.json: no anchor to move, as the watchdog's */
        /* An open chain is closed here, as the watchdog's supervisor.lost closes it; a closed
         * one's anchor moves as for any operator's append. */
        r = open_chain ? aj_run_record_set_anchor(run->rec, &end, type)
                       : aj_run_record_move_anchor(run->rec, &end, type);
        return r < 0 ? r : aj_run_record_write(run->dir, run->rec);
}

int aj_run_reap(const AjPaths *paths, AjRun *run, AjRunReaped *ret)
{
        *ret = (AjRunReaped){ 0 };
        _cleanup_close_ int life_fd = -1;
        int r = hold_dead_run(paths, run, &life_fd);
        if (r < 0)
                return r;
        if ((r = reap_held(paths, run, ret)) < 0)
                return r;
        if (!aj_run_remains_any(&ret->found))
                return 0;
        return record_reap(run, ret);
}

int aj_run_remove_dir(const AjPaths *paths, const AjRun *run)
{
        /* Its life's lock, held shared by a supervisor and its watchdogs: a run that lives,
         * or starts (no run.json yet, no control socket: what the callers' checks go by), or
         * whose watchdog is writing supervisor.lost; and exclusively by `rollback --apply`.
         * Held until the directory is gone. */
        _cleanup_close_ int life_fd = -1;
        int r = hold_dead_run(paths, run, &life_fd);
        if (r < 0)
                return r;
        /* One that cannot be opened as a directory, no commit or discard can lock either. */
        _cleanup_close_ int lock_fd = -1;
        if (aj_run_lock_workspace(run, &lock_fd) == -EWOULDBLOCK)
                return -EBUSY;
        _cleanup_free_ char *runs = NULL;
        if (asprintf(&runs, "%s/runs", paths->state_root) < 0)
                return -ENOMEM;
        /* Symlinked parents are fine (the state root may be one); the run dir itself must
         * resolve to exactly <real runs dir>/<id>. */
        _cleanup_free_ char *real_runs = realpath(runs, NULL), *real_dir = realpath(run->dir, NULL);
        if (!real_runs || !real_dir)
                return -errno;
        size_t n = strlen(real_runs);
        if (strncmp(real_dir, real_runs, n) != 0 || real_dir[n] != '/' || !streq(real_dir + n + 1, run->id))
                return -EPERM;
        /* Never the only trace of what the run left on the host (`prune` reaps and records
         * first): what a killed supervisor and watchdog left is removed here too, and a
         * cgroup whose processes do not die keeps the run. */
        _cleanup_(aj_run_reaped_done) AjRunReaped reaped = { 0 };
        if ((r = reap_held(paths, run, &reaped)) < 0)
                return r;
        if (reaped.cgroup_left)
                return -ENOTEMPTY;
        /* Out of sight first (one rename): a removal that stops half way leaves no run
         * without its run.json, only a leftover the next `prune` finishes. The rename
         * moves whatever the name is by then, a symlink as a symlink, and aj_rm_rf never
         * follows one. */
        _cleanup_free_ char *doomed = NULL;
        if (asprintf(&doomed, "%s/" AJ_RUN_REMOVING_PREFIX "%s", real_runs, run->id) < 0)
                return -ENOMEM;
        if (renameat2(AT_FDCWD, real_dir, AT_FDCWD, doomed, RENAME_NOREPLACE) < 0)
                return -errno;
        return aj_rm_rf(doomed);
}

const char *aj_run_leftover_id(const char *name)
{
        size_t n = strlen(AJ_RUN_REMOVING_PREFIX);
        return strncmp(name, AJ_RUN_REMOVING_PREFIX, n) == 0 && aj_run_id_valid(name + n) ? name + n : NULL;
}

int aj_run_remove_leftover(const AjPaths *paths, const char *name)
{
        if (!aj_run_leftover_id(name))
                return -EPERM;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/runs/%s", paths->state_root, name) < 0)
                return -ENOMEM;
        struct stat st;
        if (lstat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -EPERM;
        return aj_rm_rf(path);
}

const char *aj_run_making_id(const char *name)
{
        size_t n = strlen(AJ_RUN_DIR_MAKING_PREFIX);
        return strncmp(name, AJ_RUN_DIR_MAKING_PREFIX, n) == 0 && aj_run_id_valid(name + n) ? name + n : NULL;
}

int aj_run_remove_making(const AjPaths *paths, const char *name, uint64_t now_ns)
{
        if (!aj_run_making_id(name))
                return -EPERM;
        _cleanup_free_ char *runs = NULL;
        if (asprintf(&runs, "%s/runs", paths->state_root) < 0)
                return -ENOMEM;
        _cleanup_close_ int dfd = open(runs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        /* The lock its supervisor takes before the rename (state.h aj_run_dir_create): held,
         * it is a run starting; taken here, no supervisor can take it, and one that made the
         * directory and had not opened it yet fails its start rather than run without it. */
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        uint64_t made = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
        if (now_ns < made || now_ns - made < AJ_RUN_MAKING_GRACE_S * 1000000000ull)
                return -EBUSY; /* its supervisor may be between its mkdir and its open */
        /* Nothing is ever written in it before the rename: empty, or not a leftover of ours. */
        return unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}
