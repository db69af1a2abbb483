/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run-record-internal.h"
#include "run-record.h"
#include "util/format.h"
#include "util/fd.h"
#include "util/sha256.h"

int aj_run_file_path(const char *run_dir, const char *name, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%s/%s", run_dir, name);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int aj_run_room_make(const char *run_dir)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_ROOM, path, sizeof(path));
        if (r < 0)
                return r;
        /* Made again at each thaw, so not exclusively: what is there must be a regular file
         * (a FIFO held the supervisor in open(2), a symlink had another file allocated). */
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_WRONLY | O_CREAT, 0600);
        if (fd < 0)
                return fd;
        /* Blocks, not a sparse size: what is allocated is what freeing it gives back. Not
         * posix_fallocate(), whose fallback writes the file block by block. */
        if (fallocate(fd, 0, 0, AJ_RUN_ROOM_BYTES) < 0) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        return 0;
}

int aj_run_room_release(const char *run_dir)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_ROOM, path, sizeof(path));
        if (r < 0)
                return r;
        if (unlink(path) < 0)
                return errno == ENOENT ? 0 : -errno;
        return 1;
}

int aj_run_live_hold(const char *run_dir, int *ret_fd)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_LIVE, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* Waits only for an operator's look (aj_run_live_held), a moment long. */
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

void aj_run_live_release(int fd, bool watchdog_keeps)
{
        /* A flock belongs to the open file, which the watchdog shares: unlocked here, the run
         * is over at once, not when the watchdog, told it is done, gets round to exiting. */
        aj_lock_release(fd, watchdog_keeps);
}

int aj_run_live_held(const char *run_dir)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_LIVE, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP ? -EBADF : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (flock(fd, LOCK_SH | LOCK_NB) == 0)
                return 0; /* nobody holds it: released with the fd */
        return errno == EWOULDBLOCK ? 1 : -errno;
}

static int write_json(const char *run_dir, const char *name, json_t *doc, size_t flags)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, name, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_free_ char *dumped = json_dumps(doc, flags | JSON_PRESERVE_ORDER);
        /* The agent's text in a record (a tool's name and arguments in approval.json, the
         * breaching request in incident.json) reaches the alert command's stdin and an
         * operator's cat or jq: nothing in it a terminal acts on or that reorders a line
         * (util/format.h), as in events.jsonl. The same JSON for a parser. */
        _cleanup_free_ char *text = dumped ? aj_json_text_hidden_escaped(dumped) : NULL;
        if (!text)
                return -ENOMEM;
        size_t n = strlen(text);
        text[n] = '\n';
        return aj_write_file_atomic(path, text, n + 1, 0640);
}

int aj_run_file_write_json(const char *run_dir, const char *name, json_t *doc)
{
        return write_json(run_dir, name, doc, JSON_INDENT(2));
}

/* No JSON_INDENT and no JSON_COMPACT: one line, with ", " and ": " between members. */
int aj_run_file_write_json_line(const char *run_dir, const char *name, json_t *doc)
{
        return write_json(run_dir, name, doc, 0);
}

int aj_run_file_read_json(const char *run_dir, const char *name, json_t **ret)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, name, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_free_ char *text = NULL;
        size_t len;
        r = aj_read_regular_file(path, AJ_RUN_JSON_MAX, &text, &len);
        if (r < 0)
                return r;
        json_t *doc = json_loadb(text, len, 0, NULL);
        if (!doc)
                return -EBADMSG;
        *ret = doc;
        return 0;
}

int aj_run_file_read_error(const char *path, int r, AjError *ret_error)
{
        if (r == -EBADMSG)
                return aj_error_set(ret_error, r, "'%s': not valid JSON", path);
        if (r == -EBADFD || r == -EISDIR || r == -ELOOP)
                return aj_error_set(ret_error, r, "'%s': %s", path, r == -ELOOP ? "a symlink" : aj_file_error_text(r));
        return r;
}

/* ---- the anchor ----------------------------------------------------------------------- */

static bool sha256_hex_valid(const char *s)
{
        if (!s || strlen(s) != AJ_SHA256_HEX_SIZE - 1)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

bool aj_run_doc_anchor(json_t *doc, uint64_t *ret_count, const char **ret_hash)
{
        json_t *ev = json_object_get(doc, "events");
        json_t *count = json_object_get(ev, "count");
        const char *hash = json_string_value(json_object_get(ev, "last_sha256"));
        if (!json_is_integer(count) || json_integer_value(count) <= 0 || !sha256_hex_valid(hash))
                return false;
        const char *status = json_string_value(json_object_get(doc, "status"));
        if (!json_is_string(json_object_get(ev, "end")) && !(status && streq(status, "exited")))
                return false;
        *ret_count = (uint64_t)json_integer_value(count);
        *ret_hash = hash;
        return true;
}

int aj_run_doc_set_anchor(json_t *doc, const AjChainEnd *end, const char *end_type)
{
        json_t *ev = json_pack("{s:I, s:s, s:s*}", "count", (json_int_t)end->count, "last_sha256", end->last_hash,
                               "end", end_type);
        if (!ev || json_object_set_new(doc, "events", ev) < 0)
                return -ENOMEM;
        return 0;
}

int aj_run_verify_chain(const AjRunRecord *rec, const char *path, AjChainCheck *ret, AjChainVerdict *ret_verdict)
{
        const AjRunAnchor *a = rec ? &rec->anchor : NULL;
        bool anchored = a && a->present;
        int r = aj_events_verify(path, anchored ? a->count : 0, anchored ? a->last_sha256 : NULL, ret);
        if (r < 0)
                return r;
        /* The anchor is the chain's end: every legitimate append moves it (the supervisor's
         * late events, the watchdog's supervisor.lost, an operator's), so events past it were
         * added after the chain was closed. Records of older agentjails (no "end") could have
         * events after their final run.json, and are not held to it. */
        if (ret->ok && anchored && a->end && ret->count > a->count) {
                ret->ok = false;
                ret->anchored = false;
                ret->after_anchor = true;
                ret->bad_seq = a->count + 1;
                snprintf(ret->problem, sizeof(ret->problem),
                         "event %llu comes after the chain's end that run.json recorded (event %llu, %s): "
                         "%llu events were added after it was closed",
                         (unsigned long long)a->count + 1, (unsigned long long)a->count, a->end,
                         (unsigned long long)(ret->count - a->count));
        }
        /* A torn line past the end: what the supervisor was writing when it was killed after
         * its final run.json, or bytes added; after the anchor either way. */
        if (!ret->ok && anchored && ret->torn_tail && ret->count >= a->count)
                ret->after_anchor = true;
        *ret_verdict = !ret->ok ? AJ_CHAIN_BROKEN : ret->anchored ? AJ_CHAIN_INTACT : AJ_CHAIN_NO_ANCHOR;
        return 0;
}

/* ---- run.json, typed ------------------------------------------------------------------ */

void aj_run_record_free(AjRunRecord *rec)
{
        if (!rec)
                return;
        json_decref(rec->doc);
        free(rec);
}

const char *aj_member_string(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, bool nullable)
{
        json_t *v = json_object_get(obj, key);
        if (!v || (nullable && json_is_null(v)) || tc->r < 0)
                return json_string_value(v);
        if (json_is_string(v))
                return json_string_value(v);
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not a string%s", tc->path, name,
                             nullable ? " or null" : "");
        return NULL;
}

json_t *aj_member_object(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, bool nullable)
{
        json_t *v = json_object_get(obj, key);
        if (!v || (nullable && json_is_null(v)) || json_is_object(v) || tc->r < 0)
                return json_is_object(v) ? v : NULL;
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not an object%s", tc->path, name,
                             nullable ? " or null" : "");
        return NULL;
}

json_t *aj_member_array(AjTypeCheck *tc, json_t *obj, const char *key, const char *name)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_array(v) || tc->r < 0)
                return json_is_array(v) ? v : NULL;
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not an array", tc->path, name);
        return NULL;
}

json_t *aj_member_number(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, double *ret)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v) || tc->r < 0)
                return NULL;
        if (json_is_number(v)) {
                *ret = json_number_value(v);
                return v;
        }
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not a number", tc->path, name);
        return NULL;
}

bool aj_member_integer(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, json_int_t min, json_int_t max,
                       json_int_t *ret)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v) || tc->r < 0)
                return false;
        if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
                *ret = json_integer_value(v);
                return true;
        }
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not an integer in [%lld, %lld]", tc->path, name,
                             (long long)min, (long long)max);
        return false;
}

static pid_t member_pid(AjTypeCheck *tc, json_t *obj, const char *key)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v) || tc->r < 0)
                return 0;
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INT_MAX)
                return (pid_t)json_integer_value(v);
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not a process id", tc->path, key);
        return 0;
}

static uint32_t member_id(AjTypeCheck *tc, json_t *obj, const char *key, const char *name)
{
        json_int_t v = 0;
        (void)aj_member_integer(tc, obj, key, name, 0, UINT32_MAX, &v);
        return (uint32_t)v;
}

static bool member_bool(AjTypeCheck *tc, json_t *obj, const char *key, const char *name)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_boolean(v) || tc->r < 0)
                return json_is_true(v);
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not true or false", tc->path, name);
        return false;
}

static void type_workspace(AjTypeCheck *tc, json_t *d, AjRunWorkspace *w)
{
        json_t *ws = aj_member_object(tc, d, "workspace", "workspace", true);
        *w = (AjRunWorkspace){ .present = ws != NULL };
        w->mode = aj_member_string(tc, ws, "mode", "workspace.mode", false);
        w->path = aj_member_string(tc, ws, "path", "workspace.path", true);
        w->upper = aj_member_string(tc, ws, "upper", "workspace.upper", true);
        w->changes = aj_member_string(tc, ws, "changes", "workspace.changes", false);
        w->decided_at = aj_member_string(tc, ws, "decided_at", "workspace.decided_at", true);
        w->decided_by = member_id(tc, ws, "decided_by", "workspace.decided_by");
        const char *id = aj_member_string(tc, ws, "id", "workspace.id", true);
        unsigned long long dev, ino;
        int end = 0;
        if (id && (sscanf(id, "%llu:%llu%n", &dev, &ino, &end) != 2 || (size_t)end != strlen(id) ||
                   strspn(id, "0123456789:") != strlen(id) || !isdigit(id[0])))
                tc->r = tc->r < 0 ? tc->r
                                  : aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"workspace.id\" is not DEV:INO",
                                                 tc->path);
        else if (id) {
                w->has_id = true;
                w->dev = dev;
                w->ino = ino;
        }
}

static void type_quarantine(AjTypeCheck *tc, json_t *d, AjRunQuarantine *q)
{
        json_t *o = aj_member_object(tc, d, "quarantine", "quarantine", true);
        *q = (AjRunQuarantine){ .present = o != NULL };
        q->since = aj_member_string(tc, o, "since", "quarantine.since", true);
        q->cap = aj_member_string(tc, o, "cap", "quarantine.cap", true);
        (void)aj_member_number(tc, o, "limit", "quarantine.limit", &q->limit);
        (void)aj_member_number(tc, o, "value", "quarantine.value", &q->value);
        q->released = member_bool(tc, o, "released", "quarantine.released");
        q->released_at = aj_member_string(tc, o, "released_at", "quarantine.released_at", true);
        json_int_t by = 0;
        q->has_released_by = aj_member_integer(tc, o, "released_by", "quarantine.released_by", 0, UINT32_MAX, &by);
        q->released_by = (uid_t)by;
}

static void type_exit(AjTypeCheck *tc, json_t *d, AjRunExit *e)
{
        json_t *o = aj_member_object(tc, d, "exit", "exit", true);
        *e = (AjRunExit){ .present = o != NULL, .code = -1, .signal = -1 };
        json_int_t v = 0;
        if (aj_member_integer(tc, o, "status", "exit.status", 0, 255, &v))
                e->status = (int)v;
        if (aj_member_integer(tc, o, "code", "exit.code", 0, 255, &v))
                e->code = (int)v;
        if (aj_member_integer(tc, o, "signal", "exit.signal", 1, 64, &v))
                e->signal = (int)v;
        e->reason = aj_member_string(tc, o, "reason", "exit.reason", false);
}

static void type_network(AjTypeCheck *tc, json_t *d, AjRunNetwork *n)
{
        json_t *o = aj_member_object(tc, d, "network", "network", false);
        *n = (AjRunNetwork){ .present = o != NULL, .counters = o };
        json_int_t v = 0;
        if (aj_member_integer(tc, o, "egress_bytes", "network.egress_bytes", 0, INT64_MAX, &v))
                n->egress_bytes = (uint64_t)v;
        if (aj_member_integer(tc, o, "egress_limit", "network.egress_limit", 0, INT64_MAX, &v))
                n->egress_limit = (uint64_t)v;
}

/* An anchor that does not hold together is no anchor (see run-record.h), not an error. */
static void type_anchor(AjTypeCheck *tc, json_t *d, AjRunAnchor *a)
{
        json_t *ev = aj_member_object(tc, d, "events", "events", true);
        const char *hash = NULL;
        *a = (AjRunAnchor){ 0 };
        if (ev && aj_run_doc_anchor(d, &a->count, &hash)) {
                a->present = true;
                snprintf(a->last_sha256, sizeof(a->last_sha256), "%s", hash);
                a->end = json_string_value(json_object_get(ev, "end"));
        }
}

/* One element of rollback.steps, typed; messages name "rollback.steps[i].MEMBER". */
static void type_rollback_step(AjTypeCheck *tc, json_t *o, size_t i, AjRunRollbackStep *s)
{
        char name[6][48];
        static const char *const members[] = { "call_id", "tool", "result_seq", "result", "exit_code", "at" };
        for (size_t k = 0; k < ARRAY_SIZE(members); k++)
                snprintf(name[k], sizeof(name[k]), "rollback.steps[%zu].%s", i, members[k]);
        *s = (AjRunRollbackStep){ .exit_code = -1 };
        if (!json_is_object(o)) {
                if (tc->r >= 0)
                        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"rollback.steps[%zu]\" is not an object",
                                             tc->path, i);
                return;
        }
        s->call_id = aj_member_string(tc, o, "call_id", name[0], false);
        s->tool = aj_member_string(tc, o, "tool", name[1], true);
        json_int_t v = 0;
        if (aj_member_integer(tc, o, "result_seq", name[2], 1, INT64_MAX, &v))
                s->result_seq = (uint64_t)v;
        s->result = aj_member_string(tc, o, "result", name[3], false);
        if (aj_member_integer(tc, o, "exit_code", name[4], 0, 255, &v))
                s->exit_code = (int)v;
        s->at = aj_member_string(tc, o, "at", name[5], true);
        s->by = member_id(tc, o, "by", "rollback.steps[].by");
        if (tc->r >= 0 && (!s->call_id || !s->result || !s->result_seq))
                tc->r = aj_error_set(tc->ret_error, -EBADMSG,
                                     "'%s': \"rollback.steps[%zu]\" needs call_id, result_seq and result", tc->path, i);
}

static void type_rollback(AjTypeCheck *tc, json_t *d, AjRunRollback *rb)
{
        json_t *o = aj_member_object(tc, d, "rollback", "rollback", true);
        *rb = (AjRunRollback){ .present = o != NULL };
        rb->updated_at = aj_member_string(tc, o, "updated_at", "rollback.updated_at", true);
        rb->steps = aj_member_array(tc, o, "steps", "rollback.steps");
        size_t i;
        json_t *e;
        json_array_foreach (rb->steps, i, e) {
                AjRunRollbackStep s;
                type_rollback_step(tc, e, i, &s);
                if (tc->r < 0)
                        return;
                rb->n_steps++;
                rb->n_ok += streq(s.result, "ok");
                rb->n_held += streq(s.result, "held");
                rb->n_failed += !streq(s.result, "ok") && !streq(s.result, "held");
        }
}

/* The typed view of rec->doc, again (after an update, or the first time). */
static int record_type(AjRunRecord *rec, const char *path, AjError *ret_error)
{
        json_t *d = rec->doc;
        AjTypeCheck tc = { .path = path, .ret_error = ret_error };
        rec->id = aj_member_string(&tc, d, "id", "id", false);
        rec->name = aj_member_string(&tc, d, "name", "name", false);
        json_t *prof = aj_member_object(&tc, d, "profile", "profile", false);
        rec->profile_name = aj_member_string(&tc, prof, "name", "profile.name", false);
        rec->profile_path = aj_member_string(&tc, prof, "path", "profile.path", true);
        rec->profile_digest = aj_member_string(&tc, prof, "digest", "profile.digest", true);
        rec->shown.resolved = json_object_get(prof, "resolved");
        rec->profile_workspace_mode = json_string_value(
                json_object_get(json_object_get(json_object_get(rec->shown.resolved, "filesystem"), "workspace"),
                                "mode"));
        rec->cwd = aj_member_string(&tc, d, "cwd", "cwd", true);
        rec->tty = member_bool(&tc, d, "tty", "tty");
        rec->shown.hooks = aj_member_object(&tc, d, "hooks", "hooks", true);
        rec->replay_of = aj_member_string(&tc, d, "replay_of", "replay_of", true);
        rec->shown.workspace_start = aj_member_object(&tc, d, "workspace_start", "workspace_start", true);
        rec->started = aj_member_string(&tc, d, "started", "started", true);
        rec->ended = aj_member_string(&tc, d, "ended", "ended", true);
        rec->status = aj_member_string(&tc, d, "status", "status", false);
        rec->state = aj_member_string(&tc, d, "state", "state", false);
        rec->supervisor_pid = member_pid(&tc, d, "supervisor_pid");
        rec->watchdog_pid = member_pid(&tc, d, "watchdog_pid");
        rec->host_uid = member_id(&tc, d, "host_uid", "host_uid");
        rec->host_gid = member_id(&tc, d, "host_gid", "host_gid");
        json_t *cg = aj_member_object(&tc, d, "cgroup", "cgroup", false);
        rec->cgroup_mode = aj_member_string(&tc, cg, "mode", "cgroup.mode", false);
        rec->shown.cgroup_paths = aj_member_array(&tc, cg, "paths", "cgroup.paths");
        type_workspace(&tc, d, &rec->workspace);
        type_quarantine(&tc, d, &rec->quarantine);
        type_network(&tc, d, &rec->network);
        type_exit(&tc, d, &rec->exit);
        type_anchor(&tc, d, &rec->anchor);
        type_rollback(&tc, d, &rec->rollback);
        static const struct {
                const char *key;
                size_t offset;
        } shown[] = {
#define SHOWN(m) { #m, offsetof(AjRunRecord, shown.m) }
                SHOWN(command), SHOWN(workspace), SHOWN(quarantine), SHOWN(meters), SHOWN(network),
                SHOWN(usage),   SHOWN(exit),      SHOWN(degraded),   SHOWN(llm),
#undef SHOWN
        };
        for (size_t i = 0; i < ARRAY_SIZE(shown); i++)
                *(json_t **)((char *)rec + shown[i].offset) = json_object_get(d, shown[i].key);
        rec->started_ns = 0;
        if (rec->started)
                (void)aj_parse_timestamp(rec->started, &rec->started_ns);
        return tc.r;
}

int aj_run_record_from_json(json_t *doc, const char *path, AjRunRecord **ret, AjError *ret_error)
{
        if (!json_is_object(doc))
                return aj_error_set(ret_error, -EBADMSG, "'%s': not a JSON object", path);
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = calloc(1, sizeof(*rec));
        if (!rec)
                return -ENOMEM;
        rec->doc = json_incref(doc);
        int r = record_type(rec, path, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(rec);
        return 0;
}

int aj_run_record_read(const char *run_dir, AjRunRecord **ret, AjError *ret_error)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_RUN, path, sizeof(path));
        if (r < 0)
                return r;
        json_auto_t *doc = NULL;
        r = aj_run_file_read_json(run_dir, AJ_RUN_FILE_RUN, &doc);
        if (r < 0)
                return aj_run_file_read_error(path, r, ret_error);
        return aj_run_record_from_json(doc, path, ret, ret_error);
}

int aj_run_record_write(const char *run_dir, const AjRunRecord *rec)
{
        return aj_run_file_write_json(run_dir, AJ_RUN_FILE_RUN, rec->doc);
}

bool aj_run_record_quarantined(const AjRunRecord *rec)
{
        if (!rec)
                return false;
        if (rec->quarantine.present)
                return !rec->quarantine.released;
        return rec->state && streq(rec->state, "quarantined");
}

/* After changing rec->doc: the typed view follows. The members written are strings and
 * objects of the right types, so this cannot fail on them. */
static int record_retype(AjRunRecord *rec) { return record_type(rec, AJ_RUN_FILE_RUN, NULL); }

int aj_run_record_set_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type)
{
        int r = aj_run_doc_set_anchor(rec->doc, end, end_type);
        return r < 0 ? r : record_retype(rec);
}

int aj_run_record_move_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type)
{
        const AjRunAnchor *a = &rec->anchor;
        if (!a->present)
                return 0;
        /* Appended after a tail that is not the anchored one: the anchor stays, the break with it. */
        if (a->end && !aj_chain_end_continues(end, a->count, a->last_sha256))
                return AJ_RUN_ANCHOR_KEPT;
        return aj_run_record_set_anchor(rec, end, end_type);
}

/* The object member `key` of doc, created when absent (or not an object). */
static json_t *object_member(json_t *doc, const char *key)
{
        json_t *o = json_object_get(doc, key);
        if (json_is_object(o))
                return o;
        o = json_object();
        if (!o || json_object_set_new(doc, key, o) < 0)
                return NULL;
        return o;
}

int aj_run_record_release(AjRunRecord *rec, uid_t uid, const char *ts)
{
        json_t *q = object_member(rec->doc, "quarantine");
        if (!q)
                return -ENOMEM;
        if (json_object_set_new(q, "released", json_true()) < 0 ||
            json_object_set_new(q, "released_at", json_string(ts)) < 0 ||
            json_object_set_new(q, "released_by", json_integer((json_int_t)uid)) < 0)
                return -ENOMEM;
        if (rec->state && streq(rec->state, "quarantined")) {
                bool exited = rec->status && streq(rec->status, "exited");
                if (json_object_set_new(rec->doc, "state", json_string(exited ? "exited" : "running")) < 0)
                        return -ENOMEM;
        }
        return record_retype(rec);
}

int aj_run_record_decide_workspace(AjRunRecord *rec, const char *changes, uid_t uid, const char *ts)
{
        json_t *ws = json_object_get(rec->doc, "workspace");
        if (!json_is_object(ws))
                return -ENOENT;
        if (json_object_set_new(ws, "changes", json_string(changes)) < 0 ||
            json_object_set_new(ws, "decided_at", json_string(ts)) < 0 ||
            json_object_set_new(ws, "decided_by", json_integer((json_int_t)uid)) < 0)
                return -ENOMEM;
        return record_retype(rec);
}

void aj_run_rollback_step_at(const AjRunRecord *rec, size_t i, AjRunRollbackStep *ret)
{
        AjTypeCheck tc = { .path = AJ_RUN_FILE_RUN };
        type_rollback_step(&tc, json_array_get(rec->rollback.steps, i), i, ret);
}

int aj_run_record_rollback_step(AjRunRecord *rec, const AjRunRollbackStep *step)
{
        json_t *rb = object_member(rec->doc, "rollback");
        if (!rb)
                return -ENOMEM;
        json_t *steps = json_object_get(rb, "steps");
        if (!json_is_array(steps)) {
                steps = json_array();
                if (!steps || json_object_set_new(rb, "steps", steps) < 0)
                        return -ENOMEM;
        }
        json_t *e = json_pack("{s:s, s:s?, s:I, s:s, s:o, s:s?, s:I}", "call_id", step->call_id, "tool", step->tool,
                              "result_seq", (json_int_t)step->result_seq, "result", step->result, "exit_code",
                              step->exit_code >= 0 ? json_integer(step->exit_code) : json_null(), "at", step->at, "by",
                              (json_int_t)step->by);
        if (!e)
                return -ENOMEM;
        size_t i;
        json_t *old;
        bool replaced = false;
        json_array_foreach (steps, i, old) {
                json_t *seq = json_object_get(old, "result_seq");
                if (json_is_integer(seq) && (uint64_t)json_integer_value(seq) == step->result_seq) {
                        if (json_array_set(steps, i, e) < 0) {
                                json_decref(e);
                                return -ENOMEM;
                        }
                        replaced = true;
                        break;
                }
        }
        int r = replaced ? 0 : json_array_append(steps, e);
        json_decref(e);
        if (r < 0 || json_object_set_new(rb, "updated_at", step->at ? json_string(step->at) : json_null()) < 0)
                return -ENOMEM;
        return record_retype(rec);
}

int aj_run_record_anchor_at(const char *run_dir, const AjChainEnd *end, const char *end_type)
{
        json_auto_t *doc = NULL;
        int r = aj_run_file_read_json(run_dir, AJ_RUN_FILE_RUN, &doc);
        if (r < 0)
                return r;
        if (!json_is_object(doc))
                return -EBADMSG;
        uint64_t count;
        const char *hash;
        if (json_is_string(json_object_get(json_object_get(doc, "events"), "end")) &&
            aj_run_doc_anchor(doc, &count, &hash) && !aj_chain_end_continues(end, count, hash))
                return AJ_RUN_ANCHOR_KEPT;
        r = aj_run_doc_set_anchor(doc, end, end_type);
        if (r < 0)
                return r;
        return aj_run_file_write_json(run_dir, AJ_RUN_FILE_RUN, doc);
}

/* ---- composing run.json --------------------------------------------------------------- */

/* Sets `key` to a new value; a NULL value (absent, or out of memory) leaves it out. */
static void put_new(json_t *o, const char *key, json_t *v)
{
        if (v)
                (void)json_object_set_new(o, key, v);
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *aj_run_quarantine_json(const AjRunQuarantine *q)
{
        if (!q || !q->present)
                return json_null();
        json_t *o = json_pack("{s:s?, s:s?, s:f, s:f, s:b}", "since", q->since, "cap", q->cap, "limit", q->limit,
                              "value", q->value, "released", q->released);
        if (!o)
                return NULL;
        if (q->released_at)
                put_new(o, "released_at", json_string(q->released_at));
        if (q->has_released_by)
                put_new(o, "released_by", json_integer((json_int_t)q->released_by));
        return o;
}

static json_t *workspace_json(const AjRunWorkspace *w)
{
        json_t *o = json_pack("{s:s, s:s?, s:s, s:s}", "mode", w->mode, "path", w->path, "upper", w->upper, "changes",
                              w->changes);
        if (o && w->has_id) {
                char id[48];
                snprintf(id, sizeof(id), "%llu:%llu", (unsigned long long)w->dev, (unsigned long long)w->ino);
                put_new(o, "id", json_string(id));
        }
        if (o && w->decided_at) {
                put_new(o, "decided_at", json_string(w->decided_at));
                put_new(o, "decided_by", json_integer((json_int_t)w->decided_by));
        }
        return o;
}

static json_t *network_json(const AjRunNetwork *n)
{
        json_t *o = n->counters ? json_copy(n->counters) : json_object();
        if (!o)
                return NULL;
        put_new(o, "egress_bytes", json_integer((json_int_t)n->egress_bytes));
        put_new(o, "egress_limit", n->egress_limit ? json_integer((json_int_t)n->egress_limit) : json_null());
        return o;
}

static json_t *exit_json(const AjRunExit *e)
{
        if (!e->present)
                return json_null();
        return json_pack("{s:i, s:o, s:o, s:s}", "status", e->status, "code",
                         e->code >= 0 ? json_integer(e->code) : json_null(), "signal",
                         e->signal >= 0 ? json_integer(e->signal) : json_null(), "reason", e->reason);
}

/* The members in the order a reader meets them, one per line: long on purpose. */
static json_t *compose_doc(const AjRunRecord *in)
{
        json_t *doc = json_object();
        if (!doc)
                return NULL;
        if (in->id)
                put_new(doc, "id", json_string(in->id));
        if (in->name)
                put_new(doc, "name", json_string(in->name));
        json_t *prof = json_pack("{s:s, s:s?, s:s?}", "name", in->profile_name, "path", in->profile_path, "digest",
                                 in->profile_digest);
        if (prof && in->shown.resolved)
                (void)json_object_set(prof, "resolved", in->shown.resolved);
        put_new(doc, "profile", prof);
        if (in->shown.command)
                (void)json_object_set(doc, "command", in->shown.command);
        if (in->cwd)
                put_new(doc, "cwd", json_string(in->cwd));
        put_new(doc, "tty", json_boolean(in->tty));
        if (in->shown.hooks)
                (void)json_object_set(doc, "hooks", in->shown.hooks);
        if (in->replay_of)
                put_new(doc, "replay_of", json_string(in->replay_of));
        if (in->shown.workspace_start)
                (void)json_object_set(doc, "workspace_start", in->shown.workspace_start);
        if (in->workspace.present)
                put_new(doc, "workspace", workspace_json(&in->workspace));
        if (in->started)
                put_new(doc, "started", json_string(in->started));
        put_new(doc, "ended", string_or_null(in->ended));
        if (in->status)
                put_new(doc, "status", json_string(in->status));
        if (in->state)
                put_new(doc, "state", json_string(in->state));
        put_new(doc, "quarantine", aj_run_quarantine_json(&in->quarantine));
        if (in->shown.meters)
                (void)json_object_set(doc, "meters", in->shown.meters);
        if (in->shown.llm)
                (void)json_object_set(doc, "llm", in->shown.llm);
        if (in->network.present)
                put_new(doc, "network", network_json(&in->network));
        if (in->anchor.present) {
                AjChainEnd end = { .count = in->anchor.count };
                snprintf(end.last_hash, sizeof(end.last_hash), "%s", in->anchor.last_sha256);
                (void)aj_run_doc_set_anchor(doc, &end, in->anchor.end);
        }
        put_new(doc, "supervisor_pid", json_integer(in->supervisor_pid));
        if (in->watchdog_pid > 0)
                put_new(doc, "watchdog_pid", json_integer(in->watchdog_pid));
        put_new(doc, "host_uid", json_integer((json_int_t)in->host_uid));
        put_new(doc, "host_gid", json_integer((json_int_t)in->host_gid));
        put_new(doc, "exit", exit_json(&in->exit));
        if (in->shown.usage)
                (void)json_object_set(doc, "usage", in->shown.usage);
        json_t *cg = json_object();
        if (cg) {
                put_new(cg, "mode", string_or_null(in->cgroup_mode));
                if (in->shown.cgroup_paths)
                        (void)json_object_set(cg, "paths", in->shown.cgroup_paths);
        }
        put_new(doc, "cgroup", cg);
        if (in->shown.degraded)
                (void)json_object_set(doc, "degraded", in->shown.degraded);
        if (in->rollback.present && in->rollback.steps)
                put_new(doc, "rollback",
                        json_pack("{s:s?, s:O}", "updated_at", in->rollback.updated_at, "steps", in->rollback.steps));
        return doc;
}

int aj_run_record_compose(const AjRunRecord *in, AjRunRecord **ret)
{
        json_auto_t *doc = compose_doc(in);
        if (!doc)
                return -ENOMEM;
        return aj_run_record_from_json(doc, AJ_RUN_FILE_RUN, ret, NULL);
}
