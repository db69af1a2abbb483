/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run-record.h"
#include "util/fd.h"
#include "util/sha256.h"

int aj_run_file_path(const char *run_dir, const char *name, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%s/%s", run_dir, name);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int aj_run_file_write_json(const char *run_dir, const char *name, json_t *doc)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, name, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_free_ char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        size_t n = strlen(text);
        text[n] = '\n';
        return aj_write_file_atomic(path, text, n + 1, 0640);
}

int aj_run_file_read_json(const char *run_dir, const char *name, json_t **ret)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, name, path, sizeof(path));
        if (r < 0)
                return r;
        _cleanup_free_ char *text = NULL;
        size_t len;
        r = aj_read_file(path, AJ_RUN_JSON_MAX, &text, &len);
        if (r < 0)
                return r;
        json_t *doc = json_loadb(text, len, 0, NULL);
        if (!doc)
                return -EBADMSG;
        *ret = doc;
        return 0;
}

int aj_incident_write(const char *run_dir, json_t *incident)
{
        return aj_run_file_write_json(run_dir, AJ_RUN_FILE_INCIDENT, incident);
}

int aj_incident_read(const char *run_dir, json_t **ret)
{
        return aj_run_file_read_json(run_dir, AJ_RUN_FILE_INCIDENT, ret);
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
        json_t *ev = json_pack("{s:I, s:s, s:s}", "count", (json_int_t)end->count, "last_sha256", end->last_hash, "end",
                               end_type);
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

typedef struct {
        const char *path;
        AjError *ret_error;
        int r;
} TypeCheck;

/* The member `key` of `obj` (named `name` in messages) as a string: NULL when absent or
 * null (when `nullable`); anything else fails the check. */
static const char *member_string(TypeCheck *tc, json_t *obj, const char *key, const char *name, bool nullable)
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

/* An object member (NULL when absent, or null if `nullable`). */
static json_t *member_object(TypeCheck *tc, json_t *obj, const char *key, bool nullable)
{
        json_t *v = json_object_get(obj, key);
        if (!v || (nullable && json_is_null(v)) || json_is_object(v) || tc->r < 0)
                return json_is_object(v) ? v : NULL;
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not an object%s", tc->path, key,
                             nullable ? " or null" : "");
        return NULL;
}

static pid_t member_pid(TypeCheck *tc, json_t *obj, const char *key)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v) || tc->r < 0)
                return 0;
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INT_MAX)
                return (pid_t)json_integer_value(v);
        tc->r = aj_error_set(tc->ret_error, -EBADMSG, "'%s': \"%s\" is not a process id", tc->path, key);
        return 0;
}

/* The typed view of rec->doc, again (after an update, or the first time). */
static int record_type(AjRunRecord *rec, const char *path, AjError *ret_error)
{
        json_t *d = rec->doc;
        TypeCheck tc = { .path = path, .ret_error = ret_error };
        rec->id = member_string(&tc, d, "id", "id", false);
        rec->name = member_string(&tc, d, "name", "name", false);
        json_t *prof = member_object(&tc, d, "profile", false);
        rec->profile_name = member_string(&tc, prof, "name", "profile.name", false);
        rec->profile_path = member_string(&tc, prof, "path", "profile.path", true);
        rec->profile_digest = member_string(&tc, prof, "digest", "profile.digest", true);
        rec->profile_workspace_mode = json_string_value(
                json_object_get(json_object_get(json_object_get(json_object_get(prof, "resolved"), "filesystem"),
                                                "workspace"),
                                "mode"));
        rec->cwd = member_string(&tc, d, "cwd", "cwd", true);
        rec->started = member_string(&tc, d, "started", "started", true);
        rec->ended = member_string(&tc, d, "ended", "ended", true);
        rec->status = member_string(&tc, d, "status", "status", false);
        rec->state = member_string(&tc, d, "state", "state", false);
        rec->supervisor_pid = member_pid(&tc, d, "supervisor_pid");
        rec->watchdog_pid = member_pid(&tc, d, "watchdog_pid");

        json_t *ws = member_object(&tc, d, "workspace", true);
        rec->workspace = (AjRunWorkspace){ .present = ws != NULL };
        rec->workspace.mode = member_string(&tc, ws, "mode", "workspace.mode", false);
        rec->workspace.path = member_string(&tc, ws, "path", "workspace.path", true);
        rec->workspace.upper = member_string(&tc, ws, "upper", "workspace.upper", true);
        rec->workspace.changes = member_string(&tc, ws, "changes", "workspace.changes", false);
        rec->workspace.decided_at = member_string(&tc, ws, "decided_at", "workspace.decided_at", true);

        json_t *q = member_object(&tc, d, "quarantine", true);
        rec->quarantine = (AjRunQuarantine){ .present = q != NULL,
                                             .released = json_is_true(json_object_get(q, "released")) };
        rec->quarantine.since = member_string(&tc, q, "since", "quarantine.since", true);
        rec->quarantine.cap = member_string(&tc, q, "cap", "quarantine.cap", true);
        rec->quarantine.released_at = member_string(&tc, q, "released_at", "quarantine.released_at", true);

        /* An anchor that does not hold together is no anchor (see run-record.h), not an error. */
        json_t *ev = member_object(&tc, d, "events", true);
        const char *hash = NULL;
        rec->anchor = (AjRunAnchor){ 0 };
        if (ev && aj_run_doc_anchor(d, &rec->anchor.count, &hash)) {
                rec->anchor.present = true;
                snprintf(rec->anchor.last_sha256, sizeof(rec->anchor.last_sha256), "%s", hash);
                rec->anchor.end = json_string_value(json_object_get(ev, "end"));
        }
        static const struct {
                const char *key;
                size_t offset;
        } shown[] = {
#define SHOWN(m) { #m, offsetof(AjRunRecord, shown.m) }
                SHOWN(command), SHOWN(workspace), SHOWN(quarantine), SHOWN(meters),
                SHOWN(network), SHOWN(usage),     SHOWN(exit),       SHOWN(degraded),
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
        if (r == -EBADMSG)
                return aj_error_set(ret_error, r, "'%s': not valid JSON", path);
        if (r < 0)
                return r;
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

int aj_run_record_move_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type)
{
        if (!rec->anchor.present)
                return 0;
        int r = aj_run_doc_set_anchor(rec->doc, end, end_type);
        return r < 0 ? r : record_retype(rec);
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

int aj_run_record_anchor_at(const char *run_dir, const AjChainEnd *end, const char *end_type)
{
        json_auto_t *doc = NULL;
        int r = aj_run_file_read_json(run_dir, AJ_RUN_FILE_RUN, &doc);
        if (r < 0)
                return r;
        if (!json_is_object(doc))
                return -EBADMSG;
        r = aj_run_doc_set_anchor(doc, end, end_type);
        if (r < 0)
                return r;
        return aj_run_file_write_json(run_dir, AJ_RUN_FILE_RUN, doc);
}
