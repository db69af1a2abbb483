/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Profiles: JSON files -> AjProfile.
 *
 * Loading goes in three steps:
 *   1. each file of the `extends` chain is parsed and validated on its own
 *      (types, unknown keys, values), so every error names the file, line and
 *      column where the bad value was written;
 *   2. the chain is merged on the JSON level, parent first: objects merge key
 *      by key, recursively; arrays and scalars of the child replace the
 *      parent's. So a child's "filesystem.ro" replaces the whole list, while
 *      its "env.set" adds to (or overrides single keys of) the parent's;
 *   3. the merged tree, valid by construction, is converted to AjProfile on
 *      top of the built-in defaults.
 * The merge shares the files' own json_t values (reference counted), so a
 * check on the merged tree can still find the file a value came from by
 * pointer identity.
 *
 * Step 1 is profile-schema.c (and profile-schema-broker.c for the broker's keys), finding
 * files and step 2 are profile-load.c, step 3 and the way back to JSON are here.
 */

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "profile-internal.h"
#include "proxy.h"
#include "rollback.h"
#include "util/format.h"
#include "util/sha256.h"
#include "util/strv.h"

/* ---- conversion ---- */

static int strlist_push(AjStrList *l, const char *s)
{
        int r = aj_strv_push(&l->items, s);
        if (r >= 0)
                l->n++;
        return r;
}

static int strlist_from(AjStrList *l, json_t *arr)
{
        size_t i;
        json_t *e;
        json_array_foreach (arr, i, e) {
                int r = strlist_push(l, json_string_value(e));
                if (r < 0)
                        return r;
        }
        return 0;
}

static void strlist_done(AjStrList *l)
{
        aj_strv_free(l->items);
        *l = (AjStrList){};
}

static int bindlist_from(AjBindList *l, json_t *arr)
{
        size_t n = json_array_size(arr), i;
        json_t *e;
        if (n == 0)
                return 0;
        l->items = calloc(n, sizeof(AjBind));
        if (!l->items)
                return -ENOMEM;
        json_array_foreach (arr, i, e) {
                int r = bind_parse(json_string_value(e), &l->items[i]);
                if (r < 0)
                        return r;
                l->n++;
        }
        return 0;
}

static void bindlist_done(AjBindList *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].source);
                free(l->items[i].target);
        }
        free(l->items);
        *l = (AjBindList){};
}

static int dup_string(char **dst, json_t *v)
{
        if (!v)
                return 0;
        char *s = strdup(json_string_value(v));
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

int profile_new_defaults(AjProfile **ret)
{
        _cleanup_(aj_profile_freep) AjProfile *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->workspace_path = strdup(".");
        p->home = strdup(DEFAULT_HOME);
        p->hostname = strdup(DEFAULT_HOSTNAME);
        p->seccomp_base = strdup("default");
        if (!p->workspace_path || !p->home || !p->hostname || !p->seccomp_base)
                return -ENOMEM;
        p->workspace_mode = AJ_WORKSPACE_RW;
        p->uid = p->gid = DEFAULT_ID;
        p->host_uid = p->host_gid = DEFAULT_HOST_ID;
        p->seccomp_log = true;
        p->wall_grace_ns = DEFAULT_WALL_GRACE_NS;
        p->meters = (AjProfileMeters){ -1, -1, -1, -1, -1, -1, -1.0 }; /* no caps */
        p->on_breach = AJ_ON_BREACH_FREEZE;
        p->alert_timeout_ns = DEFAULT_ALERT_TIMEOUT_NS;
        p->rollback_timeout_ns = AJ_ROLLBACK_TIMEOUT_DEFAULT_NS;
        p->approval_timeout_ns = DEFAULT_APPROVAL_TIMEOUT_NS;
        p->log_output_bytes = p->log_events_bytes = AJ_LOG_DEFAULT_BYTES;
        p->log_reports_per_sec = AJ_LOG_DEFAULT_REPORTS_PER_SEC;
        p->llm_record_bytes = AJ_LOG_DEFAULT_BYTES;
        *ret = TAKE_PTR(p);
        return 0;
}

static int broker_from_json(json_t *root, AjProfile *p)
{
        json_t *v, *m = json_object_get(root, "meters"), *tools = json_object_get(root, "tools");
        const char *key;
        uint64_t u;
        int r;

        static const struct {
                const char *key;
                size_t offset;
        } counts[] = {
                { "tokens", offsetof(AjProfileMeters, tokens) },
                { "input_tokens", offsetof(AjProfileMeters, input_tokens) },
                { "output_tokens", offsetof(AjProfileMeters, output_tokens) },
                { "tool_calls", offsetof(AjProfileMeters, tool_calls) },
                { "tool_calls_per_min", offsetof(AjProfileMeters, tool_calls_per_min) },
                { "repeat_limit", offsetof(AjProfileMeters, repeat_limit) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(counts); i++)
                if ((v = json_object_get(m, counts[i].key)))
                        *(int64_t *)((char *)&p->meters + counts[i].offset) = (int64_t)json_integer_value(v);
        if ((v = json_object_get(m, "cost_usd")))
                p->meters.cost_usd = json_number_value(v);
        if ((v = json_object_get(m, "wall")) && json_duration(v, &u) >= 0)
                p->meters.wall_ns = u;

        if ((v = json_object_get(tools, "allow"))) {
                p->tools_allow_set = true;
                if ((r = strlist_from(&p->tools_allow, v)) < 0)
                        return r;
        }
        if ((r = strlist_from(&p->tools_deny, json_object_get(tools, "deny"))) < 0)
                return r;
        json_t *approvals = json_object_get(root, "approvals");
        if ((r = strlist_from(&p->approval_tools, json_object_get(approvals, "tools"))) < 0)
                return r;
        if ((v = json_object_get(approvals, "timeout")) && json_duration(v, &u) >= 0)
                p->approval_timeout_ns = u;

        json_t *prices = json_object_get(root, "prices");
        if (json_object_size(prices) > 0) {
                p->prices = calloc(json_object_size(prices), sizeof(AjProfilePrice));
                if (!p->prices)
                        return -ENOMEM;
                json_object_foreach (prices, key, v) {
                        AjProfilePrice *pr = &p->prices[p->n_prices];
                        pr->model = strdup(key);
                        if (!pr->model)
                                return -ENOMEM;
                        pr->input = json_number_value(json_object_get(v, "input"));
                        pr->output = json_number_value(json_object_get(v, "output"));
                        json_t *cached = json_object_get(v, "cached_input");
                        pr->cached_input = cached ? json_number_value(cached) : -1.0;
                        json_t *search = json_object_get(v, "web_search");
                        pr->web_search = search ? json_number_value(search) : -1.0;
                        for (int f = 0; f < AJ_TOOL_FEES; f++) {
                                json_t *fee = json_object_get(v, aj_tool_fee_name(f));
                                pr->tool_fee[f] = fee ? json_number_value(fee) : -1.0;
                        }
                        json_t *most = json_object_get(v, "max_output_tokens");
                        pr->max_output_tokens = most ? (uint64_t)json_integer_value(most) : 0;
                        p->n_prices++;
                }
        }

        if ((v = json_object_get(root, "on_breach")))
                p->on_breach = streq(json_string_value(v), "kill") ? AJ_ON_BREACH_KILL : AJ_ON_BREACH_FREEZE;
        json_t *alert = json_object_get(root, "alert");
        if ((r = strlist_from(&p->alert_exec, json_object_get(alert, "exec"))) < 0)
                return r;
        if ((v = json_object_get(alert, "timeout")) && json_duration(v, &u) >= 0)
                p->alert_timeout_ns = u;
        json_t *rollback = json_object_get(root, "rollback");
        if ((r = strlist_from(&p->rollback_exec, json_object_get(rollback, "exec"))) < 0)
                return r;
        if ((v = json_object_get(rollback, "timeout")) && json_duration(v, &u) >= 0)
                p->rollback_timeout_ns = u;
        return 0;
}

static int filesystem_from_json(json_t *fs, AjProfile *p)
{
        json_t *v, *ws;
        int r;

        if ((r = bindlist_from(&p->ro, json_object_get(fs, "ro"))) < 0 ||
            (r = bindlist_from(&p->rw, json_object_get(fs, "rw"))) < 0 ||
            (r = strlist_from(&p->tmpfs, json_object_get(fs, "tmpfs"))) < 0 ||
            (r = strlist_from(&p->hide, json_object_get(fs, "hide"))) < 0 ||
            (r = strlist_from(&p->allow_sensitive, json_object_get(fs, "allow_sensitive"))) < 0 ||
            (r = dup_string(&p->home, json_object_get(fs, "home"))) < 0)
                return r;
        ws = json_object_get(fs, "workspace");
        if ((r = dup_string(&p->workspace_path, json_object_get(ws, "path"))) < 0)
                return r;
        if ((v = json_object_get(ws, "mode"))) {
                const char *m = json_string_value(v);
                p->workspace_mode = streq(m, "ro")        ? AJ_WORKSPACE_RO
                                    : streq(m, "none")    ? AJ_WORKSPACE_NONE
                                    : streq(m, "overlay") ? AJ_WORKSPACE_OVERLAY
                                                          : AJ_WORKSPACE_RW;
        }
        if (p->workspace_mode == AJ_WORKSPACE_NONE) {
                free(p->workspace_path);
                p->workspace_path = NULL;
        }
        return 0;
}

static void limits_from_json(json_t *lim, AjProfile *p)
{
        json_t *v;
        uint64_t u;

        if ((v = json_object_get(lim, "memory")) && json_size(v, &u) >= 0)
                p->memory = u;
        if ((v = json_object_get(lim, "fsize")) && json_size(v, &u) >= 0)
                p->fsize = u;
        if ((v = json_object_get(lim, "disk_free")) && json_size(v, &u) >= 0) {
                p->disk_free_set = true;
                p->disk_free = u;
        }
        if ((v = json_object_get(lim, "pids")))
                p->pids = (uint64_t)json_integer_value(v);
        if ((v = json_object_get(lim, "nofile")))
                p->nofile = (uint64_t)json_integer_value(v);
        if ((v = json_object_get(lim, "nproc")))
                p->nproc = (uint64_t)json_integer_value(v);
        if ((v = json_object_get(lim, "cpu")))
                p->cpu = json_number_value(v);
        if ((v = json_object_get(lim, "wall")) && json_duration(v, &u) >= 0)
                p->wall_ns = u;
        if ((v = json_object_get(lim, "wall_grace")) && json_duration(v, &u) >= 0)
                p->wall_grace_ns = u;
        if ((v = json_object_get(lim, "core")))
                p->core = json_is_true(v);
}

/* `root` is valid: every value was checked in the file that wrote it. */
int profile_from_json(json_t *root, AjProfile *p)
{
        json_t *v, *user, *sc, *env;
        uint64_t u;
        int r;

        if ((r = dup_string(&p->description, json_object_get(root, "description"))) < 0 ||
            (r = dup_string(&p->hostname, json_object_get(root, "hostname"))) < 0 ||
            (r = filesystem_from_json(json_object_get(root, "filesystem"), p)) < 0)
                return r;

        user = json_object_get(root, "user");
        if ((v = json_object_get(user, "uid")))
                p->uid = (uid_t)json_integer_value(v);
        if ((v = json_object_get(user, "gid")))
                p->gid = (uid_t)json_integer_value(v);
        if ((v = json_object_get(user, "host_uid"))) {
                p->host_uid = (uid_t)json_integer_value(v);
                p->host_ids_set = true;
        }
        if ((v = json_object_get(user, "host_gid"))) {
                p->host_gid = (uid_t)json_integer_value(v);
                p->host_ids_set = true;
        }

        sc = json_object_get(root, "seccomp");
        if ((r = dup_string(&p->seccomp_base, json_object_get(sc, "base"))) < 0 ||
            (r = strlist_from(&p->seccomp_deny, json_object_get(sc, "deny"))) < 0 ||
            (r = strlist_from(&p->seccomp_allow, json_object_get(sc, "allow"))) < 0)
                return r;
        if ((v = json_object_get(sc, "log")))
                p->seccomp_log = json_is_true(v);
        if ((v = json_object_get(sc, "allow_netlink")))
                p->allow_netlink = json_is_true(v);

        limits_from_json(json_object_get(root, "limits"), p);

        if ((r = strlist_from(&p->net_allow, get_path(root, "network", "allow"))) < 0)
                return r;
        if ((r = strlist_from(&p->net_ask, get_path(root, "network", "ask"))) < 0)
                return r;
        if ((v = get_path(root, "network", "egress_bytes")) && json_size(v, &u) >= 0)
                p->egress_bytes = u;
        if ((v = get_path(root, "network", "max_connections")) && json_is_integer(v))
                p->net_max_connections = (unsigned)json_integer_value(v);
        if ((v = get_path(root, "logs", "output_bytes")) && json_size(v, &u) >= 0)
                p->log_output_bytes = u;
        if ((v = get_path(root, "logs", "events_bytes")) && json_size(v, &u) >= 0)
                p->log_events_bytes = u;
        if ((v = get_path(root, "logs", "reports_per_sec")))
                p->log_reports_per_sec = (uint64_t)json_integer_value(v);

        env = json_object_get(root, "env");
        if ((r = strlist_from(&p->env_pass, json_object_get(env, "pass"))) < 0)
                return r;
        const char *key;
        json_object_foreach (json_object_get(env, "set"), key, v) {
                char *kv;
                if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0)
                        return -ENOMEM;
                r = aj_strv_consume(&p->env_set.items, kv);
                if (r < 0)
                        return r;
                p->env_set.n++;
        }

        size_t i;
        json_array_foreach (json_object_get(root, "allow_degraded"), i, v)
                p->allow_degraded |= degrade_flag(json_string_value(v));
        int r2 = broker_from_json(root, p);
        return r2 < 0 ? r2 : llm_from_json(root, p);
}

/* ---- back to JSON ---- */

static json_t *size_json(uint64_t bytes)
{
        static const struct {
                char suffix;
                uint64_t unit;
        } units[] = { { 'T', 1ULL << 40 }, { 'G', 1ULL << 30 }, { 'M', 1ULL << 20 }, { 'K', 1ULL << 10 } };
        for (size_t i = 0; bytes > 0 && i < ARRAY_SIZE(units); i++)
                if (bytes % units[i].unit == 0) {
                        char buf[32];
                        snprintf(buf, sizeof(buf), "%llu%c", (unsigned long long)(bytes / units[i].unit),
                                 units[i].suffix);
                        return json_string(buf);
                }
        return json_integer((json_int_t)bytes);
}

static json_t *duration_json(uint64_t ns)
{
        static const struct {
                const char *suffix;
                uint64_t unit;
        } units[] = {
                { "h", 3600000000000ULL }, { "m", 60000000000ULL }, { "s", 1000000000ULL },
                { "ms", 1000000ULL },      { "us", 1000ULL },
        };
        char buf[128] = "";
        size_t len = 0;
        if (ns == 0)
                return json_string("0");
        for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                uint64_t q = ns / units[i].unit;
                ns %= units[i].unit;
                if (q)
                        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%llu%s", (unsigned long long)q,
                                                units[i].suffix);
        }
        /* aj_parse_duration() has no "ns"; a fraction of a microsecond says the same. */
        if (ns)
                snprintf(buf + len, sizeof(buf) - len, "0.%03lluus", (unsigned long long)ns);
        return json_string(buf);
}

static json_t *strlist_json(const AjStrList *l)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < l->n; i++)
                if (json_array_append_new(a, json_string(l->items[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *bindlist_json(const AjBindList *l)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < l->n; i++) {
                const AjBind *b = &l->items[i];
                char *s;
                bool same = !b->target || streq(b->source, b->target);
                if (asprintf(&s, "%s%s%s%s", b->optional ? "?" : "", b->source, same ? "" : ":",
                             same ? "" : b->target) < 0 ||
                    json_array_append_new(a, json_string(s)) < 0) {
                        json_decref(a);
                        return NULL;
                }
                free(s);
        }
        return a;
}

static json_t *env_set_json(const AjStrList *l)
{
        json_t *o = json_object();
        for (size_t i = 0; o && i < l->n; i++) {
                /* Entries added by other code may lack the '=': an empty value then. */
                const char *eq = strchrnul(l->items[i], '=');
                _cleanup_free_ char *k = strndup(l->items[i], eq - l->items[i]);
                if (!k || json_object_set_new(o, k, json_string(*eq ? eq + 1 : "")) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

/* Adds meters, tools, approvals, prices, on_breach and alert to `root`. Unset caps are left out. */
static int broker_tree(const AjProfile *p, json_t *root)
{
        const AjProfileMeters *pm = &p->meters;
        const struct {
                const char *key;
                int64_t value;
        } counts[] = {
                { "tokens", pm->tokens },
                { "input_tokens", pm->input_tokens },
                { "output_tokens", pm->output_tokens },
                { "tool_calls", pm->tool_calls },
                { "tool_calls_per_min", pm->tool_calls_per_min },
                { "repeat_limit", pm->repeat_limit },
        };
        json_t *meters = json_object(), *prices = json_object();
        json_t *tools = json_pack("{s:o}", "deny", strlist_json(&p->tools_deny));
        int r = json_object_set_new(root, "meters", meters);
        r |= json_object_set_new(root, "prices", prices);
        r |= json_object_set_new(root, "tools", tools);
        if (r < 0 || !meters || !prices || !tools)
                return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(counts); i++)
                if (counts[i].value >= 0 &&
                    json_object_set_new(meters, counts[i].key, json_integer(counts[i].value)) < 0)
                        return -ENOMEM;
        if (pm->cost_usd >= 0 && json_object_set_new(meters, "cost_usd", json_real(pm->cost_usd)) < 0)
                return -ENOMEM;
        if (pm->wall_ns && json_object_set_new(meters, "wall", duration_json(pm->wall_ns)) < 0)
                return -ENOMEM;
        if (p->tools_allow_set && json_object_set_new(tools, "allow", strlist_json(&p->tools_allow)) < 0)
                return -ENOMEM;
        /* Always shown, like "alert": the timeout is part of the digest even with no tools listed. */
        if (json_object_set_new(root, "approvals",
                                json_pack("{s:o, s:o}", "tools", strlist_json(&p->approval_tools), "timeout",
                                          duration_json(p->approval_timeout_ns))) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_prices; i++) {
                const AjProfilePrice *pr = &p->prices[i];
                json_t *e = json_pack("{s:f, s:f}", "input", pr->input, "output", pr->output);
                if (!e ||
                    (pr->cached_input >= 0 &&
                     json_object_set_new(e, "cached_input", json_real(pr->cached_input)) < 0) ||
                    (pr->web_search >= 0 && json_object_set_new(e, "web_search", json_real(pr->web_search)) < 0)) {
                        json_decref(e);
                        return -ENOMEM;
                }
                for (int f = 0; f < AJ_TOOL_FEES; f++)
                        if (pr->tool_fee[f] >= 0 &&
                            json_object_set_new(e, aj_tool_fee_name(f), json_real(pr->tool_fee[f])) < 0) {
                                json_decref(e);
                                return -ENOMEM;
                        }
                if (pr->max_output_tokens &&
                    json_object_set_new(e, "max_output_tokens", json_integer((json_int_t)pr->max_output_tokens)) < 0) {
                        json_decref(e);
                        return -ENOMEM;
                }
                if (json_object_set_new(prices, pr->model, e) < 0)
                        return -ENOMEM;
        }
        if (json_object_set_new(root, "on_breach", json_string(p->on_breach == AJ_ON_BREACH_KILL ? "kill" : "freeze")) <
                    0 ||
            json_object_set_new(root, "alert",
                                json_pack("{s:o, s:o}", "exec", strlist_json(&p->alert_exec), "timeout",
                                          duration_json(p->alert_timeout_ns))) < 0)
                return -ENOMEM;
        /* Shown only when set: the digests of the profiles without one stay what they were. */
        if ((p->rollback_exec.n || p->rollback_timeout_ns != AJ_ROLLBACK_TIMEOUT_DEFAULT_NS) &&
            json_object_set_new(root, "rollback",
                                json_pack("{s:o, s:o}", "exec", strlist_json(&p->rollback_exec), "timeout",
                                          duration_json(p->rollback_timeout_ns))) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *profile_tree(const AjProfile *p)
{
        static const char *const modes[] = {
                [AJ_WORKSPACE_RW] = "rw",
                [AJ_WORKSPACE_RO] = "ro",
                [AJ_WORKSPACE_NONE] = "none",
                [AJ_WORKSPACE_OVERLAY] = "overlay",
        };
        json_t *degraded = json_array();
        for (size_t i = 0; degraded && i < n_degrade_names; i++)
                if (p->allow_degraded & degrade_names[i].flag)
                        json_array_append_new(degraded, json_string(degrade_names[i].name));

        json_t *workspace = p->workspace_path ? json_pack("{s:s, s:s}", "path", p->workspace_path, "mode",
                                                          modes[p->workspace_mode])
                                              : json_pack("{s:s}", "mode", modes[p->workspace_mode]);

        /* json_pack() takes ownership of "o" arguments even on failure, and fails on a NULL one. */
        /* The host ids only when the profile sets them: unset, each run takes ids of its own from
         * the pool, and shown as the pool's first they read back as set to it, so a replay under
         * a run's resolved profile pinned that one slot, and did not start while any other run
         * held it as its own. */
        json_t *user = json_pack("{s:I, s:I}", "uid", (json_int_t)p->uid, "gid", (json_int_t)p->gid);
        if (user && p->host_ids_set &&
            (json_object_set_new(user, "host_uid", json_integer(p->host_uid)) < 0 ||
             json_object_set_new(user, "host_gid", json_integer(p->host_gid)) < 0)) {
                json_decref(user);
                user = NULL;
        }
        json_t *root = json_pack("{s:s, s:{s:o, s:o, s:o, s:o, s:o, s:s, s:o}, s:o,"
                                 " s:{s:s, s:o, s:o, s:b, s:b},"
                                 " s:{s:o, s:I, s:f, s:o, s:o, s:I, s:I, s:o, s:o*, s:b},"
                                 " s:{s:o, s:o, s:o, s:I}, s:{s:o, s:o}, s:o, s:{s:o, s:o, s:I}}",
                                 "hostname", p->hostname, "filesystem", "ro", bindlist_json(&p->ro), "rw",
                                 bindlist_json(&p->rw), "tmpfs", strlist_json(&p->tmpfs), "hide",
                                 strlist_json(&p->hide), "workspace", workspace, "home", p->home, "allow_sensitive",
                                 strlist_json(&p->allow_sensitive), "user", user, "seccomp", "base", p->seccomp_base,
                                 "deny", strlist_json(&p->seccomp_deny), "allow", strlist_json(&p->seccomp_allow),
                                 "log", (int)p->seccomp_log, "allow_netlink", (int)p->allow_netlink, "limits", "memory",
                                 size_json(p->memory), "pids", (json_int_t)p->pids, "cpu", p->cpu, "wall",
                                 duration_json(p->wall_ns), "wall_grace", duration_json(p->wall_grace_ns), "nofile",
                                 (json_int_t)p->nofile, "nproc", (json_int_t)p->nproc, "fsize", size_json(p->fsize),
                                 "disk_free", p->disk_free_set ? size_json(p->disk_free) : NULL, "core", (int)p->core,
                                 "network", "allow", strlist_json(&p->net_allow), "ask", strlist_json(&p->net_ask),
                                 "egress_bytes", size_json(p->egress_bytes), "max_connections",
                                 (json_int_t)(p->net_max_connections ? p->net_max_connections
                                                                     : AJ_PROXY_MAX_CONNECTIONS),
                                 "env", "pass", strlist_json(&p->env_pass), "set", env_set_json(&p->env_set),
                                 "allow_degraded", degraded, "logs", "output_bytes", size_json(p->log_output_bytes),
                                 "events_bytes", size_json(p->log_events_bytes), "reports_per_sec",
                                 (json_int_t)p->log_reports_per_sec);
        if (!root)
                return NULL;
        if (broker_tree(p, root) < 0 || llm_to_json(p, root) < 0) {
                json_decref(root);
                return NULL;
        }
        if (p->description && json_object_set_new(root, "description", json_string(p->description)) < 0) {
                json_decref(root);
                return NULL;
        }
        return root;
}

char *aj_profile_to_json(const AjProfile *p)
{
        _cleanup_json_ json_t *tree = profile_tree(p);
        if (!tree)
                return NULL;
        /* Put the description first, where a reader looks for it. */
        json_t *desc = json_object_get(tree, "description");
        if (desc) {
                _cleanup_json_ json_t *ordered = json_pack("{s:O}", "description", desc);
                if (!ordered || json_object_del(tree, "description") < 0 || json_object_update(ordered, tree) < 0)
                        return NULL;
                return json_dumps(ordered, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        }
        return json_dumps(tree, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
}

int aj_profile_update_digest(AjProfile *p)
{
        _cleanup_json_ json_t *tree = profile_tree(p);
        if (!tree)
                return -ENOMEM;
        _cleanup_free_ char *canon = json_dumps(tree, JSON_SORT_KEYS | JSON_COMPACT);
        if (!canon)
                return -ENOMEM;
        uint8_t d[AJ_SHA256_SIZE];
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256(canon, strlen(canon), d);
        char *digest = strdup(aj_sha256_hex(d, hex));
        if (!digest)
                return -ENOMEM;
        free(p->digest);
        p->digest = digest;
        return 0;
}

/* `word` (`len` bytes) as a path from "/" (where the commands start) into files, once; not a
 * path (no '/'): nothing. */
static int push_host_path(char ***files, const char *word, size_t len)
{
        /* Nor "/" itself ("/", "./", "//": `expr 4 / 2`, `awk '{print $1 / 2}'`): as a
         * directory with all it holds, it refused every writable mount, the workspace too, for
         * a division; the handlers start in "/", their relative words are taken from it, and
         * "/" itself is never writable (AJ_PLACE_SYSTEM_DIR). */
        if (!memchr(word, '/', len) || strspn(word, "/.") >= len)
                return 0;
        _cleanup_free_ char *path = NULL;
        if (aj_asprintf(&path, "%s%.*s", word[0] == '/' ? "" : "/", (int)len, word) < 0)
                return -ENOMEM;
        return aj_strv_contains(*files, path) ? 0 : aj_strv_push(files, path);
}

/* What separates the words of a handler's argument that may be paths: blanks and the
 * characters a shell's or an interpreter's inline code puts around them (`sh -c "cd DIR &&
 * ./x"`, `python3 -c "exec(open('/x').read())"`, `X=/x`, `PATH=/a:/b`). */
#define HOST_WORD_SEPARATORS " \t\n\r\v\f;&|()<>`$\"'=,:{}[]"

/* Each word of `a` that is a path into files; an option's or a file reference's attached to
 * it (`-f/opt/x.awk`, `-I/x`, `@/x`) from its first '/' too. */
static int push_host_words(char ***files, const char *a)
{
        while (*a) {
                a += strspn(a, HOST_WORD_SEPARATORS);
                size_t len = strcspn(a, HOST_WORD_SEPARATORS);
                int r = len ? push_host_path(files, a, len) : 0;
                const char *slash = len && (a[0] == '-' || a[0] == '@') ? memchr(a, '/', len) : NULL;
                if (r >= 0 && slash)
                        r = push_host_path(files, slash, len - (size_t)(slash - a));
                if (r < 0)
                        return r;
                a += len;
        }
        return 0;
}

/* `a` with a shell's home expansions done, `home` for the handler's own: `~` and `~/` at a
 * word's start, `~USER` (its passwd home; an unknown user: left), `$HOME` and `${HOME}`; NULL
 * in *ret when there is none. */
static int expand_home(const char *a, const char *home, char **ret)
{
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return -ENOMEM;
        bool any = false;
        for (const char *c = a; *c;) {
                const char *rest = NULL, *with = NULL;
                if (c[0] == '~' && (c == a || strchr(HOST_WORD_SEPARATORS, c[-1]))) {
                        size_t n = strcspn(c + 1, HOST_WORD_SEPARATORS "/");
                        if (n == 0)
                                with = home;
                        else {
                                _cleanup_free_ char *user = strndup(c + 1, n);
                                const struct passwd *pw = user ? getpwnam(user) : NULL;
                                with = pw && pw->pw_dir ? pw->pw_dir : NULL;
                        }
                        rest = c + 1 + n;
                } else if (strncmp(c, "${HOME}", 7) == 0) {
                        with = home, rest = c + 7;
                } else if (strncmp(c, "$HOME", 5) == 0 && !isalnum((unsigned char)c[5]) && c[5] != '_') {
                        with = home, rest = c + 5;
                }
                if (with) {
                        fputs(with, f);
                        c = rest;
                        any = true;
                } else
                        fputc(*c++, f);
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = any ? TAKE_PTR(out) : NULL;
        return 0;
}

/* Whether expand_home() has anything to expand in `a`. */
static bool names_a_home(const char *a) { return strchr(a, '~') || strstr(a, "$HOME") || strstr(a, "${HOME}"); }

int aj_profile_host_programs(const AjProfile *p, char ***ret)
{
        _cleanup_strv_free_ char **files = NULL;
        const AjStrList *lists[] = { &p->alert_exec, &p->rollback_exec };
        /* The homes a handler's shell expands `~` and $HOME to: the alert's inherits our
         * environment, a rollback handler is given its user's passwd home (rollback-exec.c).
         * Looked up once an argument names a home: the passwd lookup (NSS) is not made for
         * every run's places. */
        const char *homes[2] = { NULL, NULL };
        bool homes_known = false;
        for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
                /* Every word of every argument: which of them the program runs as code (an
                 * interpreter's script, `env X=1 SCRIPT`'s, a word of `sh -c`'s) is the
                 * program's to decide, not agentjail's to guess (attacker review 26); and
                 * each again as a shell expands a home in it (`sh -c "~/hooks/alert"`). */
                for (size_t i = 0; i < lists[l]->n; i++) {
                        const char *a = lists[l]->items[i];
                        int r = push_host_words(&files, a);
                        bool home = names_a_home(a);
                        if (r >= 0 && home && !homes_known) {
                                const struct passwd *pw = getpwuid(getuid());
                                homes[0] = getenv("HOME");
                                homes[1] = pw ? pw->pw_dir : NULL;
                                homes_known = true;
                        }
                        for (size_t h = 0; r >= 0 && home && h < ARRAY_SIZE(homes); h++) {
                                _cleanup_free_ char *expanded = NULL;
                                if (!homes[h] || homes[h][0] != '/')
                                        continue;
                                r = expand_home(a, homes[h], &expanded);
                                if (r >= 0 && expanded)
                                        r = push_host_words(&files, expanded);
                        }
                        if (r < 0)
                                return r;
                }
        }
        *ret = TAKE_PTR(files);
        return 0;
}

void aj_profile_free(AjProfile *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->path);
        aj_strv_free(p->files);
        free(p->description);
        free(p->digest);
        bindlist_done(&p->ro);
        bindlist_done(&p->rw);
        strlist_done(&p->tmpfs);
        strlist_done(&p->hide);
        strlist_done(&p->allow_sensitive);
        free(p->workspace_path);
        free(p->home);
        free(p->hostname);
        free(p->seccomp_base);
        strlist_done(&p->seccomp_deny);
        strlist_done(&p->seccomp_allow);
        strlist_done(&p->net_allow);
        strlist_done(&p->net_ask);
        strlist_done(&p->env_pass);
        strlist_done(&p->env_set);
        strlist_done(&p->tools_allow);
        strlist_done(&p->tools_deny);
        strlist_done(&p->approval_tools);
        for (size_t i = 0; i < p->n_prices; i++)
                free(p->prices[i].model);
        free(p->prices);
        strlist_done(&p->alert_exec);
        strlist_done(&p->rollback_exec);
        llm_free(p);
        free(p);
}
