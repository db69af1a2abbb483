/* SPDX-License-Identifier: Apache-2.0 */
/* The records a breach and a held call leave in the run directory, typed: incident.json and
 * approval.json (run-record.h). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "run-record-internal.h"
#include "run-record.h"
#include "util/macros.h"

/* A record read whole: -ENOENT if absent, -EBADMSG (naming the file) if not a JSON object. */
static int read_doc(const char *run_dir, const char *name, char *path, size_t len, json_t **ret, AjError *ret_error)
{
        int r = aj_run_file_path(run_dir, name, path, len);
        if (r < 0)
                return r;
        json_t *doc = NULL;
        r = aj_run_file_read_json(run_dir, name, &doc);
        if (r < 0)
                return aj_run_file_read_error(path, r, ret_error);
        *ret = doc;
        return 0;
}

/* ---- incident.json -------------------------------------------------------------------- */

void aj_incident_free(AjIncident *inc)
{
        if (!inc)
                return;
        json_decref(inc->doc);
        free(inc);
}

int aj_incident_write(const char *run_dir, const AjIncident *inc)
{
        json_auto_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:O?, s:s, s:O?, s:O}", "run", inc->run, "name",
                                     inc->name, "ts", inc->ts, "cap", inc->cap, "limit", inc->limit, "value",
                                     inc->value, "request", inc->request, "action", inc->action, "usage", inc->usage,
                                     "last_events", inc->last_events);
        if (!doc)
                return -ENOMEM;
        return aj_run_file_write_json_line(run_dir, AJ_RUN_FILE_INCIDENT, doc);
}

int aj_incident_from_json(json_t *doc, const char *path, AjIncident **ret, AjError *ret_error)
{
        if (!json_is_object(doc))
                return aj_error_set(ret_error, -EBADMSG, "'%s': not a JSON object", path);
        _cleanup_(aj_incident_freep) AjIncident *inc = calloc(1, sizeof(*inc));
        if (!inc)
                return -ENOMEM;
        inc->doc = json_incref(doc);
        AjTypeCheck tc = { .path = path, .ret_error = ret_error };
        inc->run = aj_member_string(&tc, doc, "run", "run", false);
        inc->name = aj_member_string(&tc, doc, "name", "name", false);
        inc->ts = aj_member_string(&tc, doc, "ts", "ts", false);
        inc->cap = aj_member_string(&tc, doc, "cap", "cap", false);
        inc->shown.limit = aj_member_number(&tc, doc, "limit", "limit", &inc->limit);
        inc->shown.value = aj_member_number(&tc, doc, "value", "value", &inc->value);
        inc->request = aj_member_object(&tc, doc, "request", "request", true);
        inc->action = aj_member_string(&tc, doc, "action", "action", false);
        inc->usage = aj_member_object(&tc, doc, "usage", "usage", true);
        inc->last_events = aj_member_array(&tc, doc, "last_events", "last_events");
        if (tc.r < 0)
                return tc.r;
        *ret = TAKE_PTR(inc);
        return 0;
}

int aj_incident_read(const char *run_dir, AjIncident **ret, AjError *ret_error)
{
        char path[PATH_MAX];
        json_auto_t *doc = NULL;
        int r = read_doc(run_dir, AJ_RUN_FILE_INCIDENT, path, sizeof(path), &doc, ret_error);
        return r < 0 ? r : aj_incident_from_json(doc, path, ret, ret_error);
}

/* ---- approval.json -------------------------------------------------------------------- */

void aj_approval_free(AjApproval *a)
{
        if (!a)
                return;
        json_decref(a->doc);
        free(a);
}

/* What is held: "call" (a tool call) or "host" (a connection). */
static json_t *subject_json(const AjApproval *a, const char **ret_key)
{
        switch (a->subject) {
        case AJ_APPROVAL_TOOL:
                *ret_key = "call";
                return a->call ? json_incref(a->call) : NULL;
        case AJ_APPROVAL_NET:
                *ret_key = "host";
                return a->host ? json_incref(a->host) : NULL;
        }
        return NULL;
}

int aj_approval_write(const char *run_dir, const AjApproval *a)
{
        const char *key = NULL;
        json_t *subject = subject_json(a, &key);
        if (!subject)
                return -EINVAL;
        json_auto_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s*}", "kind", "approval", "run", a->run,
                                     "name", a->name, "ts", a->ts, key, subject, "approve", a->approve, "deny", a->deny,
                                     "approve_always", a->approve_always);
        if (!doc)
                return -ENOMEM;
        return aj_run_file_write_json_line(run_dir, AJ_RUN_FILE_APPROVAL, doc);
}

static int approval_from_json(json_t *doc, const char *path, AjApproval **ret, AjError *ret_error)
{
        if (!json_is_object(doc))
                return aj_error_set(ret_error, -EBADMSG, "'%s': not a JSON object", path);
        _cleanup_(aj_approval_freep) AjApproval *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->doc = json_incref(doc);
        AjTypeCheck tc = { .path = path, .ret_error = ret_error };
        a->run = aj_member_string(&tc, doc, "run", "run", false);
        a->name = aj_member_string(&tc, doc, "name", "name", false);
        a->ts = aj_member_string(&tc, doc, "ts", "ts", false);
        a->call = aj_member_object(&tc, doc, "call", "call", false);
        a->host = aj_member_object(&tc, doc, "host", "host", false);
        (void)aj_member_string(&tc, a->host, "id", "host.id", false);
        const char *host = aj_member_string(&tc, a->host, "host", "host.host", false);
        json_int_t port = 0;
        (void)aj_member_integer(&tc, a->host, "port", "host.port", 1, 65535, &port);
        a->approve = aj_member_string(&tc, doc, "approve", "approve", false);
        a->deny = aj_member_string(&tc, doc, "deny", "deny", false);
        a->approve_always = aj_member_string(&tc, doc, "approve_always", "approve_always", false);
        if (tc.r < 0)
                return tc.r;
        if (!a->call == !a->host)
                return aj_error_set(ret_error, -EBADMSG,
                                    "'%s': needs one of \"call\" (a tool call) or \"host\" (a connection)", path);
        if (a->host && (!host || !port))
                return aj_error_set(ret_error, -EBADMSG, "'%s': \"host\" needs \"host\" and \"port\"", path);
        a->subject = a->host ? AJ_APPROVAL_NET : AJ_APPROVAL_TOOL;
        *ret = TAKE_PTR(a);
        return 0;
}

int aj_approval_read(const char *run_dir, AjApproval **ret, AjError *ret_error)
{
        char path[PATH_MAX];
        json_auto_t *doc = NULL;
        int r = read_doc(run_dir, AJ_RUN_FILE_APPROVAL, path, sizeof(path), &doc, ret_error);
        return r < 0 ? r : approval_from_json(doc, path, ret, ret_error);
}
