/* SPDX-License-Identifier: Apache-2.0 */
/* Validation of one profile file: every key, type and value, each error naming the file, line,
 * column and key path (the schema of docs/profiles.md). Pure. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "profile-internal.h"
#include "proxy.h"
#include "util/format.h"
#include "util/parse.h"

/* ---- one file of a chain ---- */

void source_done(Source *s)
{
        free(s->file);
        free(s->real);
        free(s->text);
        if (s->root)
                json_decref(s->root);
        *s = (Source){};
}

void check_push_key(Check *c, const char *key)
{
        /* The schema is shallower than MAX_KEY_DEPTH; unknown deeper keys fail before a push. */
        if (c->n < MAX_KEY_DEPTH)
                c->elem[c->n] = key;
        c->n++;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

void check_push_index(Check *c, size_t i)
{
        if (c->n < MAX_KEY_DEPTH) {
                snprintf(c->index[c->n], sizeof(c->index[c->n]), "[%zu]", i);
                c->elem[c->n] = c->index[c->n];
        }
        c->n++;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

void check_pop(Check *c)
{
        c->n--;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

static void format_key_path(const Check *c, char *buf, size_t size)
{
        buf[0] = 0;
        for (size_t i = 0; i < c->n && i < MAX_KEY_DEPTH; i++) {
                const char *e = c->elem[i];
                bool is_index = e == c->index[i];
                if (i > 0 && !is_index)
                        aj_append_printable(buf, size, ".", 1);
                aj_append_printable(buf, size, e, 64);
        }
}

/* Sets "FILE:LINE:COL: KEY.PATH: message" and returns -EINVAL. */
_printf_(3, 4) int check_fail(Check *c, AjJsonLocateWhat what, const char *fmt, ...)
{
        char keys[512];
        char *msg;
        unsigned line, col;
        va_list ap;

        if (!c->err)
                return -EINVAL;
        va_start(ap, fmt);
        int r = aj_vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        format_key_path(c, keys, sizeof(keys));
        const char *sep = keys[0] ? ": " : "";
        if (aj_json_locate(c->src->text, c->elem, what, &line, &col) >= 0)
                r = aj_error_set(c->err, -EINVAL, "%s:%u:%u: %s%s%s", c->src->file, line, col, keys, sep, msg);
        else
                r = aj_error_set(c->err, -EINVAL, "%s: %s%s%s", c->src->file, keys, sep, msg);
        free(msg);
        return r;
}

/* A short rendering of a value for "got ..." in messages. */
const char *describe_value(const json_t *v, char *buf, size_t size)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_NULL:
                return "null";
        case JSON_TRUE:
                return "true";
        case JSON_FALSE:
                return "false";
        default:
                break;
        }
        _cleanup_free_ char *s = json_dumps(v, JSON_ENCODE_ANY);
        if (!s)
                return "a value";
        buf[0] = 0;
        aj_append_printable(buf, size, s, 60);
        if (json_is_string(v) && strlen(s) > 60)
                aj_append_printable(buf, size, "\"", 1);
        return buf;
}

/* ---- value checks shared by validation and conversion ---- */

/* NULL when `p` is a usable path; `home_ok` also accepts "~" and "~/...". */
const char *path_problem(const char *p, bool home_ok)
{
        if (!*p)
                return "path must not be empty";
        if (strlen(p) >= PATH_MAX)
                return "path is too long";
        if (p[0] != '/' && !(home_ok && p[0] == '~' && (p[1] == 0 || p[1] == '/')))
                return "path must be absolute"; /* "~/..." is accepted silently where home_ok */
        /* ".." would let a bind or a mask point outside where it seems to. */
        for (const char *s = p; (s = strstr(s, "..")); s += 2)
                if ((s == p || s[-1] == '/') && (s[2] == 0 || s[2] == '/'))
                        return "path must not contain \"..\"";
        return NULL;
}

/* Splits "?SRC:DST" / "SRC" into a bind; fails only on ENOMEM (validated before). */
int bind_parse(const char *s, AjBind *ret)
{
        AjBind b = {};
        if (*s == '?') {
                b.optional = true;
                s++;
        }
        const char *colon = strchr(s, ':');
        b.source = colon ? strndup(s, colon - s) : strdup(s);
        b.target = strdup(colon ? colon + 1 : s);
        if (!b.source || !b.target) {
                free(b.source);
                free(b.target);
                return -ENOMEM;
        }
        *ret = b;
        return 0;
}

static bool is_env_name(const char *s)
{
        if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
                return false;
        for (const char *p = s; *p; p++)
                if (!(isalnum((unsigned char)*p) || *p == '_'))
                        return false;
        return strlen(s) <= 255;
}

bool is_profile_name(const char *s)
{
        /* A leading dot would allow "." and ".." and hidden files. */
        if (!*s || *s == '.' || strlen(s) > 200)
                return false;
        for (const char *p = s; *p; p++)
                if (!(isalnum((unsigned char)*p) || strchr("_.-", *p)))
                        return false;
        return true;
}

bool looks_like_path(const char *s)
{
        size_t n = strlen(s);
        return strchr(s, '/') || (n > 5 && streq(s + n - 5, ".json"));
}

int json_size(const json_t *v, uint64_t *ret)
{
        if (json_is_integer(v)) {
                if (json_integer_value(v) < 0)
                        return -EINVAL;
                *ret = (uint64_t)json_integer_value(v);
                return 0;
        }
        if (json_is_string(v))
                return aj_parse_size(json_string_value(v), ret);
        return -EINVAL;
}

int json_duration(const json_t *v, uint64_t *ret)
{
        if (json_is_integer(v)) {
                json_int_t s = json_integer_value(v);
                if (s < 0 || s > (json_int_t)(UINT64_MAX / 1000000000ULL / 2))
                        return -EINVAL;
                *ret = (uint64_t)s * 1000000000ULL;
                return 0;
        }
        if (json_is_string(v))
                return aj_parse_duration(json_string_value(v), ret);
        return -EINVAL;
}

/* ---- schema ---- */

int check_object(Check *c, json_t *v, const Field *fields)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an object, got %s", GOT(v));
        json_object_foreach (v, key, value) {
                const Field *f = fields;
                while (f->key && !streq(f->key, key))
                        f++;
                if (!f->key) {
                        char expected[256] = "";
                        for (f = fields; f->key; f++) {
                                if (f != fields)
                                        strcat(expected, ", ");
                                strcat(expected, f->key);
                        }
                        check_push_key(c, key);
                        int r = check_fail(c, AJ_JSON_AT_KEY, "unknown key (expected one of: %s)", expected);
                        check_pop(c);
                        return r;
                }
                check_push_key(c, key);
                int r = f->check(c, value);
                check_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

int check_string(Check *c, json_t *v)
{
        if (!json_is_string(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a string, got %s", GOT(v));
        if (json_string_length(v) > MAX_STRING)
                return check_fail(c, AJ_JSON_AT_VALUE, "too long (at most %d bytes)", MAX_STRING);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "must not contain a NUL character");
        return 0;
}

int check_bool(Check *c, json_t *v)
{
        if (!json_is_boolean(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected true or false, got %s", GOT(v));
        return 0;
}

/* Checks an array of strings, each with `each` (may be NULL). */
int check_string_array(Check *c, json_t *v, CheckFn each)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an array, got %s", GOT(v));
        if (json_array_size(v) > MAX_ENTRIES)
                return check_fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", MAX_ENTRIES);
        json_array_foreach (v, i, e) {
                check_push_index(c, i);
                int r = check_string(c, e);
                if (r >= 0 && each)
                        r = each(c, e);
                check_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_extends(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        if (!looks_like_path(s) && !is_profile_name(s))
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a profile name ([A-Za-z0-9_.-], not starting with '.') or a path, got %s",
                                  GOT(v));
        return 0;
}

static int check_hostname(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        bool ok = n >= 1 && n <= 63 && s[0] != '-';
        for (size_t i = 0; ok && i < n; i++)
                ok = isalnum((unsigned char)s[i]) || s[i] == '-';
        if (!ok)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected 1 to 63 characters from [A-Za-z0-9-], not starting with '-', got %s",
                                  GOT(v));
        return 0;
}

static int check_bind(Check *c, json_t *v)
{
        const char *s = json_string_value(v);
        const char *body = *s == '?' ? s + 1 : s;
        const char *colon = strchr(body, ':');
        if (colon && strchr(colon + 1, ':'))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"PATH\" or \"SRC:DST\", got %s", GOT(v));
        _cleanup_free_ char *src = colon ? strndup(body, colon - body) : strdup(body);
        if (!src)
                return -ENOMEM;
        const char *problem = path_problem(src, true);
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, src);
        if (colon && (problem = path_problem(colon + 1, true)))
                return check_fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, colon + 1);
        return 0;
}

static int check_jail_path(Check *c, json_t *v)
{
        const char *s = json_string_value(v);
        const char *problem = path_problem(s, false);
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, s);
        return 0;
}

static int check_jail_mountpoint(Check *c, json_t *v)
{
        int r = check_jail_path(c, v);
        if (r >= 0 && streq(json_string_value(v), "/"))
                return check_fail(c, AJ_JSON_AT_VALUE, "must not be \"/\" (the jail's root)");
        return r;
}

static int check_binds(Check *c, json_t *v) { return check_string_array(c, v, check_bind); }
static int check_mountpoints(Check *c, json_t *v) { return check_string_array(c, v, check_jail_mountpoint); }

static int check_home(Check *c, json_t *v)
{
        int r = check_string(c, v);
        return r < 0 ? r : check_jail_mountpoint(c, v);
}

static int check_workspace_path(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        if (streq(s, "."))
                return 0;
        const char *problem = path_problem(s, true);
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s, \"~/...\" or \".\" (the current directory): \"%s\"",
                                  problem, s);
        return 0;
}

static int check_workspace_mode(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        if (!streq(s, "rw") && !streq(s, "ro") && !streq(s, "overlay") && !streq(s, "none"))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"rw\", \"ro\", \"overlay\" or \"none\", got %s",
                                  GOT(v));
        return 0;
}

static int check_workspace(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "path", check_workspace_path },
                { "mode", check_workspace_mode },
                {},
        };
        return check_object(c, v, fields);
}

static int check_sensitive_place(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *problem = path_problem(json_string_value(v), true);
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s or \"~\" (the invoking user's home): %s", problem, GOT(v));
        return 0;
}

static int check_allow_sensitive(Check *c, json_t *v) { return check_string_array(c, v, check_sensitive_place); }

static int check_filesystem(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "ro", check_binds },
                { "rw", check_binds },
                { "tmpfs", check_mountpoints },
                { "hide", check_mountpoints },
                { "workspace", check_workspace },
                { "home", check_home },
                { "allow_sensitive", check_allow_sensitive },
                {},
        };
        return check_object(c, v, fields);
}

static int check_id(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) > MAX_ID)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an integer from 0 to %llu, got %s", MAX_ID, GOT(v));
        return 0;
}

static int check_host_id(Check *c, json_t *v)
{
        int r = check_id(c, v);
        if (r >= 0 && json_integer_value(v) == 0)
                return check_fail(c, AJ_JSON_AT_VALUE, "must not be 0 (the agent never runs as host root)");
        return r;
}

static int check_user(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "uid", check_id },
                { "gid", check_id },
                { "host_uid", check_host_id },
                { "host_gid", check_host_id },
                {},
        };
        return check_object(c, v, fields);
}

static int check_seccomp_base(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r >= 0 && !streq(json_string_value(v), "default"))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"default\" (the only base today), got %s", GOT(v));
        return r;
}

static int check_syscall(Check *c, json_t *v)
{
        const char *s = json_string_value(v);
        if (!*s || seccomp_syscall_resolve_name(s) == __NR_SCMP_ERROR)
                return check_fail(c, AJ_JSON_AT_VALUE, "unknown system call %s", GOT(v));
        return 0;
}

static int check_syscalls(Check *c, json_t *v) { return check_string_array(c, v, check_syscall); }

static int check_seccomp(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "base", check_seccomp_base }, { "deny", check_syscalls },      { "allow", check_syscalls },
                { "log", check_bool },          { "allow_netlink", check_bool }, {},
        };
        return check_object(c, v, fields);
}

static int check_size(Check *c, json_t *v)
{
        uint64_t x;
        if (json_size(v, &x) < 0)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a size such as \"512M\" or a number of bytes, got %s",
                                  GOT(v));
        return 0;
}

int check_duration(Check *c, json_t *v)
{
        uint64_t x;
        if (json_duration(v, &x) < 0)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a duration such as \"30s\", \"15m\", \"1h30m\" or a number of seconds, got %s",
                                  GOT(v));
        return 0;
}

static int check_count(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a non-negative integer, got %s", GOT(v));
        return 0;
}

static int check_cpu(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > MAX_CPU)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a number of CPUs greater than 0 and at most 1024 (0 = not limited), got %s",
                                  GOT(v));
        return 0;
}

static int check_limits(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "memory", check_size },
                { "pids", check_count },
                { "cpu", check_cpu },
                { "wall", check_duration },
                { "wall_grace", check_duration },
                { "nofile", check_count },
                { "nproc", check_count },
                { "fsize", check_size },
                { "disk_free", check_size },
                { "core", check_bool },
                {},
        };
        return check_object(c, v, fields);
}

/* One network.allow (ask: false) or network.ask entry, by the parser net.c has for each. */
static int check_net_rule(Check *c, json_t *v, bool ask)
{
        AjNetRule rule;
        const char *why = NULL;
        int r = ask ? aj_net_ask_rule_parse(json_string_value(v), &rule, &why)
                    : aj_net_rule_parse(json_string_value(v), &rule, &why);
        if (r == -EINVAL)
                return check_fail(c, AJ_JSON_AT_VALUE, "invalid entry %s: %s", GOT(v), why);
        if (r < 0)
                return r;
        aj_net_rule_done(&rule);
        return 0;
}

static int check_net_entry(Check *c, json_t *v) { return check_net_rule(c, v, false); }

static int check_net_allow(Check *c, json_t *v) { return check_string_array(c, v, check_net_entry); }

/* network.ask: the allowlist's syntax, plus "*" (any host). */
static int check_net_ask_entry(Check *c, json_t *v) { return check_net_rule(c, v, true); }

static int check_net_ask(Check *c, json_t *v) { return check_string_array(c, v, check_net_ask_entry); }

/* Each connection may hold a bounded number of bytes in the host's kernel (src/proxy.h):
 * the count bounds what one run can pin outside its cgroup. */
static int check_net_max_connections(Check *c, json_t *v) { return check_int_range(c, v, 1, 4096); }

static int check_network(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "allow", check_net_allow },
                { "ask", check_net_ask },
                { "egress_bytes", check_size },
                { "max_connections", check_net_max_connections },
                {},
        };
        return check_object(c, v, fields);
}

static int check_env_name(Check *c, json_t *v)
{
        if (!is_env_name(json_string_value(v)))
                return check_fail(c, AJ_JSON_AT_VALUE, "invalid variable name %s (expected [A-Za-z_][A-Za-z0-9_]*)",
                                  GOT(v));
        return 0;
}

static int check_env_pass(Check *c, json_t *v) { return check_string_array(c, v, check_env_name); }

static int check_env_set(Check *c, json_t *v)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an object, got %s", GOT(v));
        if (json_object_size(v) > MAX_ENTRIES)
                return check_fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", MAX_ENTRIES);
        json_object_foreach (v, key, value) {
                check_push_key(c, key);
                int r = 0;
                if (!is_env_name(key))
                        r = check_fail(c, AJ_JSON_AT_KEY, "invalid variable name (expected [A-Za-z_][A-Za-z0-9_]*)");
                if (r >= 0)
                        r = check_string(c, value);
                check_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_env(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "pass", check_env_pass },
                { "set", check_env_set },
                {},
        };
        return check_object(c, v, fields);
}

const DegradeName degrade_names[] = {
        { "limits", AJ_DEGRADE_LIMITS },
        { "idmap", AJ_DEGRADE_IDMAP },
        { "host_ids", AJ_DEGRADE_HOST_IDS },
};
const size_t n_degrade_names = ARRAY_SIZE(degrade_names);

unsigned degrade_flag(const char *s)
{
        for (size_t i = 0; i < n_degrade_names; i++)
                if (streq(degrade_names[i].name, s))
                        return degrade_names[i].flag;
        return 0;
}

static int check_degrade_name(Check *c, json_t *v)
{
        if (!degrade_flag(json_string_value(v)))
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "unknown protection %s (expected one of: limits, idmap, host_ids)", GOT(v));
        return 0;
}

static int check_allow_degraded(Check *c, json_t *v) { return check_string_array(c, v, check_degrade_name); }

int check_root(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "extends", check_extends },
                { "description", check_string },
                { "hostname", check_hostname },
                { "filesystem", check_filesystem },
                { "user", check_user },
                { "seccomp", check_seccomp },
                { "limits", check_limits },
                { "network", check_network },
                { "env", check_env },
                { "allow_degraded", check_allow_degraded },
                { "meters", check_meters },
                { "tools", check_tools },
                { "approvals", check_approvals },
                { "prices", check_prices },
                { "on_breach", check_on_breach },
                { "alert", check_alert },
                { "logs", check_logs },
                { "llm", check_llm },
                { "rollback", check_rollback },
                {},
        };
        if (!json_is_object(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a JSON object at the top level, got %s", GOT(v));
        return check_object(c, v, fields);
}
