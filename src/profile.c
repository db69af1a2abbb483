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
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "meter.h"
#include "net.h"
#include "profile.h"
#include "proxy.h"
#include "util/json-locate.h"
#include "util/parse.h"
#include "util/sha256.h"
#include "util/strv.h"
#include "util/error.h"
#include "util/format.h"

#define MAX_CHAIN 8               /* files in one `extends` chain */
#define MAX_FILE_SIZE (1024 * 1024)
#define MAX_ENTRIES 1024          /* per array or object a profile controls */
#define MAX_STRING 4096           /* paths, descriptions, environment values */
#define MAX_KEY_DEPTH 8
#define MAX_ID 4294967294ULL      /* (uid_t)-1 means "no id" to the kernel */
#define MAX_CPU 1024.0

#define DEFAULT_HOSTNAME "agentjail"
#define DEFAULT_HOME "/home/agent"
#define DEFAULT_ID 1000
#define DEFAULT_HOST_ID 100000
#define DEFAULT_WALL_GRACE_NS (10ULL * 1000000000ULL)
#define DEFAULT_ALERT_TIMEOUT_NS (10ULL * 1000000000ULL)
#define MAX_ALERT_TIMEOUT_NS (3600ULL * 1000000000ULL)
#define DEFAULT_APPROVAL_TIMEOUT_NS (15ULL * 60ULL * 1000000000ULL)
#define MAX_APPROVAL_TIMEOUT_NS (7ULL * 86400ULL * 1000000000ULL)
#define MAX_BROKER_NAME 256 /* tool patterns, model names: as the broker protocol allows */

/* jansson's own json_decrefp() accepts NULL. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- one file of a chain ---- */

typedef struct {
        char *file; /* as given or found, for messages */
        char *real; /* canonical path; NULL for a text that has no file */
        char *text;
        json_t *root;
} Source;

static void source_done(Source *s)
{
        free(s->file);
        free(s->real);
        free(s->text);
        if (s->root)
                json_decref(s->root);
        *s = (Source){};
}

/* Where a value is: keys and "[N]" indexes, for both the message and aj_json_locate(). */
typedef struct {
        const Source *src;
        AjError *err;
        const char *elem[MAX_KEY_DEPTH + 1];
        char index[MAX_KEY_DEPTH][24];
        size_t n;
} Check;

static void push_key(Check *c, const char *key)
{
        /* The schema is shallower than MAX_KEY_DEPTH; unknown deeper keys fail before a push. */
        if (c->n < MAX_KEY_DEPTH)
                c->elem[c->n] = key;
        c->n++;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

static void push_index(Check *c, size_t i)
{
        if (c->n < MAX_KEY_DEPTH) {
                snprintf(c->index[c->n], sizeof(c->index[c->n]), "[%zu]", i);
                c->elem[c->n] = c->index[c->n];
        }
        c->n++;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

static void pop(Check *c)
{
        c->n--;
        c->elem[c->n < MAX_KEY_DEPTH ? c->n : MAX_KEY_DEPTH] = NULL;
}

/* Appends s to buf, keeping it printable and short: keys come from untrusted files. */
static void append_sanitized(char *buf, size_t size, const char *s, size_t max)
{
        size_t len = strlen(buf);
        for (size_t i = 0; s[i] && len + 4 < size; i++) {
                if (i == max) {
                        memcpy(buf + len, "...", 3);
                        len += 3;
                        break;
                }
                unsigned char ch = (unsigned char)s[i];
                buf[len++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        buf[len] = 0;
}

static void format_key_path(const Check *c, char *buf, size_t size)
{
        buf[0] = 0;
        for (size_t i = 0; i < c->n && i < MAX_KEY_DEPTH; i++) {
                const char *e = c->elem[i];
                bool is_index = e == c->index[i];
                if (i > 0 && !is_index)
                        append_sanitized(buf, size, ".", 1);
                append_sanitized(buf, size, e, 64);
        }
}

/* Sets "FILE:LINE:COL: KEY.PATH: message" and returns -EINVAL. */
_printf_(3, 4) static int fail(Check *c, AjJsonLocateWhat what, const char *fmt, ...)
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
static const char *describe(const json_t *v, char *buf, size_t size)
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
        append_sanitized(buf, size, s, 60);
        if (json_is_string(v) && strlen(s) > 60)
                append_sanitized(buf, size, "\"", 1);
        return buf;
}

#define GOT(v) describe((v), (char[80]){}, 80)

/* ---- value checks shared by validation and conversion ---- */

/* NULL when `p` is a usable path; `home_ok` also accepts "~" and "~/...". */
static const char *path_problem(const char *p, bool home_ok)
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
static int bind_parse(const char *s, AjBind *ret)
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

static bool is_profile_name(const char *s)
{
        /* A leading dot would allow "." and ".." and hidden files. */
        if (!*s || *s == '.' || strlen(s) > 200)
                return false;
        for (const char *p = s; *p; p++)
                if (!(isalnum((unsigned char)*p) || strchr("_.-", *p)))
                        return false;
        return true;
}

static bool looks_like_path(const char *s)
{
        size_t n = strlen(s);
        return strchr(s, '/') || (n > 5 && streq(s + n - 5, ".json"));
}

static int json_size(const json_t *v, uint64_t *ret)
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

static int json_duration(const json_t *v, uint64_t *ret)
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

typedef int (*CheckFn)(Check *c, json_t *v);
typedef struct {
        const char *key;
        CheckFn check;
} Field;

static int check_object(Check *c, json_t *v, const Field *fields)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected an object, got %s", GOT(v));
        json_object_foreach(v, key, value) {
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
                        push_key(c, key);
                        int r = fail(c, AJ_JSON_AT_KEY, "unknown key (expected one of: %s)", expected);
                        pop(c);
                        return r;
                }
                push_key(c, key);
                int r = f->check(c, value);
                pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_string(Check *c, json_t *v)
{
        if (!json_is_string(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected a string, got %s", GOT(v));
        if (json_string_length(v) > MAX_STRING)
                return fail(c, AJ_JSON_AT_VALUE, "too long (at most %d bytes)", MAX_STRING);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return fail(c, AJ_JSON_AT_VALUE, "must not contain a NUL character");
        return 0;
}

static int check_bool(Check *c, json_t *v)
{
        if (!json_is_boolean(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected true or false, got %s", GOT(v));
        return 0;
}

/* Checks an array of strings, each with `each` (may be NULL). */
static int check_string_array(Check *c, json_t *v, CheckFn each)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected an array, got %s", GOT(v));
        if (json_array_size(v) > MAX_ENTRIES)
                return fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", MAX_ENTRIES);
        json_array_foreach(v, i, e) {
                push_index(c, i);
                int r = check_string(c, e);
                if (r >= 0 && each)
                        r = each(c, e);
                pop(c);
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
                return fail(c, AJ_JSON_AT_VALUE,
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
                return fail(c, AJ_JSON_AT_VALUE,
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
                return fail(c, AJ_JSON_AT_VALUE, "expected \"PATH\" or \"SRC:DST\", got %s", GOT(v));
        _cleanup_free_ char *src = colon ? strndup(body, colon - body) : strdup(body);
        if (!src)
                return -ENOMEM;
        const char *problem = path_problem(src, true);
        if (problem)
                return fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, src);
        if (colon && (problem = path_problem(colon + 1, true)))
                return fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, colon + 1);
        return 0;
}

static int check_jail_path(Check *c, json_t *v)
{
        const char *s = json_string_value(v);
        const char *problem = path_problem(s, false);
        if (problem)
                return fail(c, AJ_JSON_AT_VALUE, "%s: \"%s\"", problem, s);
        return 0;
}

static int check_jail_mountpoint(Check *c, json_t *v)
{
        int r = check_jail_path(c, v);
        if (r >= 0 && streq(json_string_value(v), "/"))
                return fail(c, AJ_JSON_AT_VALUE, "must not be \"/\" (the jail's root)");
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
                return fail(c, AJ_JSON_AT_VALUE, "%s, \"~/...\" or \".\" (the current directory): \"%s\"", problem, s);
        return 0;
}

static int check_workspace_mode(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        if (!streq(s, "rw") && !streq(s, "ro") && !streq(s, "overlay") && !streq(s, "none"))
                return fail(c, AJ_JSON_AT_VALUE, "expected \"rw\", \"ro\", \"overlay\" or \"none\", got %s",
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
                return fail(c, AJ_JSON_AT_VALUE, "%s or \"~\" (the invoking user's home): %s", problem, GOT(v));
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
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (unsigned long long)json_integer_value(v) > MAX_ID)
                return fail(c, AJ_JSON_AT_VALUE, "expected an integer from 0 to %llu, got %s", MAX_ID, GOT(v));
        return 0;
}

static int check_host_id(Check *c, json_t *v)
{
        int r = check_id(c, v);
        if (r >= 0 && json_integer_value(v) == 0)
                return fail(c, AJ_JSON_AT_VALUE, "must not be 0 (the agent never runs as host root)");
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
                return fail(c, AJ_JSON_AT_VALUE, "expected \"default\" (the only base today), got %s", GOT(v));
        return r;
}

static int check_syscall(Check *c, json_t *v)
{
        const char *s = json_string_value(v);
        if (!*s || seccomp_syscall_resolve_name(s) == __NR_SCMP_ERROR)
                return fail(c, AJ_JSON_AT_VALUE, "unknown system call %s", GOT(v));
        return 0;
}

static int check_syscalls(Check *c, json_t *v) { return check_string_array(c, v, check_syscall); }

static int check_seccomp(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "base", check_seccomp_base },
                { "deny", check_syscalls },
                { "allow", check_syscalls },
                { "log", check_bool },
                { "allow_netlink", check_bool },
                {},
        };
        return check_object(c, v, fields);
}

static int check_size(Check *c, json_t *v)
{
        uint64_t x;
        if (json_size(v, &x) < 0)
                return fail(c, AJ_JSON_AT_VALUE,
                            "expected a size such as \"512M\" or a number of bytes, got %s", GOT(v));
        return 0;
}

static int check_duration(Check *c, json_t *v)
{
        uint64_t x;
        if (json_duration(v, &x) < 0)
                return fail(c, AJ_JSON_AT_VALUE,
                            "expected a duration such as \"30s\", \"15m\", \"1h30m\" or a number of seconds, got %s",
                            GOT(v));
        return 0;
}

static int check_count(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return fail(c, AJ_JSON_AT_VALUE, "expected a non-negative integer, got %s", GOT(v));
        return 0;
}

static int check_cpu(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > MAX_CPU)
                return fail(c, AJ_JSON_AT_VALUE,
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
                { "core", check_bool },
                {},
        };
        return check_object(c, v, fields);
}

static int check_net_entry(Check *c, json_t *v)
{
        AjNetRule rule;
        const char *why = NULL;
        int r = aj_net_rule_parse(json_string_value(v), &rule, &why);
        if (r == -EINVAL)
                return fail(c, AJ_JSON_AT_VALUE, "invalid entry %s: %s", GOT(v), why);
        if (r < 0)
                return r;
        aj_net_rule_done(&rule);
        return 0;
}

static int check_net_allow(Check *c, json_t *v) { return check_string_array(c, v, check_net_entry); }

static int check_int_range(Check *c, json_t *v, json_int_t min, json_int_t max);

/* Each connection may hold a bounded number of bytes in the host's kernel (src/proxy.h):
 * the count bounds what one run can pin outside its cgroup. */
static int check_net_max_connections(Check *c, json_t *v) { return check_int_range(c, v, 1, 4096); }

static int check_network(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "allow", check_net_allow },
                { "egress_bytes", check_size },
                { "max_connections", check_net_max_connections },
                {},
        };
        return check_object(c, v, fields);
}

static int check_env_name(Check *c, json_t *v)
{
        if (!is_env_name(json_string_value(v)))
                return fail(c, AJ_JSON_AT_VALUE, "invalid variable name %s (expected [A-Za-z_][A-Za-z0-9_]*)",
                            GOT(v));
        return 0;
}

static int check_env_pass(Check *c, json_t *v) { return check_string_array(c, v, check_env_name); }

static int check_env_set(Check *c, json_t *v)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected an object, got %s", GOT(v));
        if (json_object_size(v) > MAX_ENTRIES)
                return fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", MAX_ENTRIES);
        json_object_foreach(v, key, value) {
                push_key(c, key);
                int r = 0;
                if (!is_env_name(key))
                        r = fail(c, AJ_JSON_AT_KEY, "invalid variable name (expected [A-Za-z_][A-Za-z0-9_]*)");
                if (r >= 0)
                        r = check_string(c, value);
                pop(c);
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

static const struct {
        const char *name;
        unsigned flag;
} degrade_names[] = {
        { "limits", AJ_DEGRADE_LIMITS },
        { "idmap", AJ_DEGRADE_IDMAP },
};

static unsigned degrade_flag(const char *s)
{
        for (size_t i = 0; i < ARRAY_SIZE(degrade_names); i++)
                if (streq(degrade_names[i].name, s))
                        return degrade_names[i].flag;
        return 0;
}

static int check_degrade_name(Check *c, json_t *v)
{
        if (!degrade_flag(json_string_value(v)))
                return fail(c, AJ_JSON_AT_VALUE, "unknown protection %s (expected one of: limits, idmap)", GOT(v));
        return 0;
}

static int check_allow_degraded(Check *c, json_t *v) { return check_string_array(c, v, check_degrade_name); }

/* ---- broker: meters, tools, approvals, prices, on_breach, alert (limits shared with src/meter.h) ---- */

static int check_int_range(Check *c, json_t *v, json_int_t min, json_int_t max)
{
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return fail(c, AJ_JSON_AT_VALUE, "expected an integer from %lld to %lld, got %s", (long long)min,
                            (long long)max, GOT(v));
        return 0;
}

static int check_meter_count(Check *c, json_t *v) { return check_int_range(c, v, 0, (json_int_t)AJ_CAP_MAX_COUNT); }
static int check_meter_per_min(Check *c, json_t *v) { return check_int_range(c, v, 0, (json_int_t)AJ_CAP_MAX_PER_MIN); }
static int check_meter_repeat(Check *c, json_t *v) { return check_int_range(c, v, 1, (json_int_t)AJ_CAP_MAX_REPEAT); }

static int check_meter_usd(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > AJ_CAP_MAX_USD)
                return fail(c, AJ_JSON_AT_VALUE, "expected a number of US dollars from 0 to 1000000, got %s", GOT(v));
        return 0;
}

static int check_meters(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "tokens", check_meter_count },
                { "input_tokens", check_meter_count },
                { "output_tokens", check_meter_count },
                { "cost_usd", check_meter_usd },
                { "tool_calls", check_meter_count },
                { "tool_calls_per_min", check_meter_per_min },
                { "repeat_limit", check_meter_repeat },
                { "wall", check_duration },
                {},
        };
        return check_object(c, v, fields);
}

/* Tool and model names cross the jail boundary: short, printable, no spaces. */
static bool is_broker_name(const char *s)
{
        if (!*s || strlen(s) > MAX_BROKER_NAME)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p <= 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static int check_tool_pattern(Check *c, json_t *v)
{
        if (!is_broker_name(json_string_value(v)))
                return fail(c, AJ_JSON_AT_VALUE,
                            "expected a tool name or a pattern with '*' (1 to 256 characters, no spaces or control "
                            "characters), got %s",
                            GOT(v));
        return 0;
}

static int check_tool_patterns(Check *c, json_t *v) { return check_string_array(c, v, check_tool_pattern); }

static int check_tools(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "allow", check_tool_patterns },
                { "deny", check_tool_patterns },
                {},
        };
        return check_object(c, v, fields);
}

static int check_approval_timeout(Check *c, json_t *v)
{
        uint64_t ns;
        if (json_duration(v, &ns) < 0 || ns == 0 || ns > MAX_APPROVAL_TIMEOUT_NS)
                return fail(c, AJ_JSON_AT_VALUE,
                            "expected a duration greater than 0 and at most \"7d\" such as \"15m\", got %s", GOT(v));
        return 0;
}

static int check_approvals(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "tools", check_tool_patterns },
                { "timeout", check_approval_timeout },
                {},
        };
        return check_object(c, v, fields);
}

static int check_price_value(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1)
                return fail(c, AJ_JSON_AT_VALUE, "expected US dollars per token from 0 to 1 (such as 2.5e-6), got %s",
                            GOT(v));
        return 0;
}

static int check_price(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "input", check_price_value },
                { "output", check_price_value },
                { "cached_input", check_price_value },
                {},
        };
        int r = check_object(c, v, fields);
        if (r < 0)
                return r;
        if (!json_object_get(v, "input") || !json_object_get(v, "output"))
                return fail(c, AJ_JSON_AT_VALUE, "expected both \"input\" and \"output\" (USD per token)");
        return 0;
}

static int check_prices(Check *c, json_t *v)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected an object of model names, got %s", GOT(v));
        if (json_object_size(v) > AJ_METER_MAX_PRICES)
                return fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", AJ_METER_MAX_PRICES);
        json_object_foreach(v, key, value) {
                push_key(c, key);
                int r = 0;
                if (!is_broker_name(key))
                        r = fail(c, AJ_JSON_AT_KEY,
                                 "invalid model name (1 to 256 characters, no spaces or control characters)");
                if (r >= 0)
                        r = check_price(c, value);
                pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_on_breach(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r >= 0 && !streq(json_string_value(v), "freeze") && !streq(json_string_value(v), "kill"))
                return fail(c, AJ_JSON_AT_VALUE, "expected \"freeze\" or \"kill\", got %s", GOT(v));
        return r;
}

static int check_alert_exec(Check *c, json_t *v)
{
        int r = check_string_array(c, v, NULL);
        if (r < 0 || json_array_size(v) == 0)
                return r;
        push_index(c, 0);
        const char *problem = path_problem(json_string_value(json_array_get(v, 0)), false);
        if (problem)
                r = fail(c, AJ_JSON_AT_VALUE, "the program: %s: %s", problem, GOT(json_array_get(v, 0)));
        pop(c);
        return r;
}

static int check_alert_timeout(Check *c, json_t *v)
{
        uint64_t ns;
        if (json_duration(v, &ns) < 0 || ns == 0 || ns > MAX_ALERT_TIMEOUT_NS)
                return fail(c, AJ_JSON_AT_VALUE, "expected a duration from \"1ms\" to \"1h\" such as \"10s\", got %s",
                            GOT(v));
        return 0;
}

static int check_alert(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "exec", check_alert_exec },
                { "timeout", check_alert_timeout },
                {},
        };
        return check_object(c, v, fields);
}

static int check_log_bytes(Check *c, json_t *v, uint64_t min)
{
        uint64_t x;
        if (json_size(v, &x) < 0 || x < min || x > AJ_LOG_MAX_BYTES) {
                char lo[32];
                aj_format_size(min, lo, sizeof(lo));
                return fail(c, AJ_JSON_AT_VALUE, "expected a size from \"%s\" to \"1T\" such as \"64M\", got %s", lo,
                            GOT(v));
        }
        return 0;
}

static int check_output_bytes(Check *c, json_t *v) { return check_log_bytes(c, v, AJ_LOG_MIN_OUTPUT_BYTES); }
static int check_events_bytes(Check *c, json_t *v) { return check_log_bytes(c, v, AJ_LOG_MIN_EVENTS_BYTES); }

static int check_reports_per_sec(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > AJ_LOG_MAX_REPORTS_PER_SEC)
                return fail(c, AJ_JSON_AT_VALUE, "expected an integer from 1 to %d, got %s", AJ_LOG_MAX_REPORTS_PER_SEC,
                            GOT(v));
        return 0;
}

static int check_logs(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "output_bytes", check_output_bytes },
                { "events_bytes", check_events_bytes },
                { "reports_per_sec", check_reports_per_sec },
                {},
        };
        return check_object(c, v, fields);
}

static int check_root(Check *c, json_t *v)
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
                {},
        };
        if (!json_is_object(v))
                return fail(c, AJ_JSON_AT_VALUE, "expected a JSON object at the top level, got %s", GOT(v));
        return check_object(c, v, fields);
}

/* ---- files and the search path ---- */

static int read_text(const char *path, char **ret)
{
        /* O_NONBLOCK: opening a FIFO someone named must not hang us; regular files ignore it. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > MAX_FILE_SIZE)
                return -EFBIG;
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        size_t have = 0;
        for (;;) {
                if (have > (size_t)st.st_size)
                        return -EFBIG;
                ssize_t n = read(fd, buf + have, (size_t)st.st_size + 1 - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                have += (size_t)n;
        }
        buf[have] = 0;
        /* jansson would stop at a NUL and silently ignore the rest. */
        if (strlen(buf) != have)
                return -EBADMSG;
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *read_error_text(int r)
{
        switch (r) {
        case -EFBIG:
                return "file is too large (at most 1 MiB)";
        case -EBADFD:
                return "not a regular file";
        case -EBADMSG:
                return "contains a NUL byte";
        default:
                return strerror(-r);
        }
}

static bool same_dir(const char *a, const char *b)
{
        if (streq(a, b))
                return true;
        _cleanup_free_ char *ra = realpath(a, NULL);
        _cleanup_free_ char *rb = realpath(b, NULL);
        return ra && rb && streq(ra, rb);
}

static int add_dir(char ***dirs, char *dir)
{
        if (!dir)
                return -ENOMEM;
        for (char **d = *dirs; d && *d; d++)
                if (same_dir(*d, dir)) {
                        free(dir);
                        return 0;
                }
        return aj_strv_consume(dirs, dir);
}

int aj_profile_search_path(char ***ret_dirs)
{
        _cleanup_strv_free_ char **dirs = NULL;
        char *d;
        int r;

        const char *xdg = getenv("XDG_CONFIG_HOME");
        const char *home = getenv("HOME");
        d = NULL;
        if (xdg && xdg[0] == '/') {
                if (asprintf(&d, "%s/agentjail/profiles", xdg) < 0)
                        return -ENOMEM;
        } else if (home && home[0] == '/') {
                if (asprintf(&d, "%s/.config/agentjail/profiles", home) < 0)
                        return -ENOMEM;
        }
        if (d) {
                r = add_dir(&dirs, d);
                if (r < 0)
                        return r;
        }
        /* ./profiles comes last (the blueprint had it first): the current directory is
         * usually the agent's writable workspace, and an agent must not be able to plant a
         * profile that shadows the operator's or a shipped one for its next run. */
        const char *fixed[] = { "/etc/agentjail/profiles", AJ_PROFILE_DATADIR, AJ_SOURCE_PROFILES, "./profiles" };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                r = add_dir(&dirs, strdup(fixed[i]));
                if (r < 0)
                        return r;
        }
        *ret_dirs = TAKE_PTR(dirs);
        return 0;
}

static bool is_regular_file(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Finds NAME.json on the search path. `skip_real` (may be NULL) is a file that
 * does not count: a profile that extends its own name (a user's default.json
 * extending the shipped default) continues the search below itself.
 */
static int find_profile(const char *name, const char *skip_real, char **ret_path, char **ret_searched)
{
        _cleanup_strv_free_ char **dirs = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s.json", *d, name) < 0)
                        return -ENOMEM;
                if (!is_regular_file(p))
                        continue;
                if (skip_real) {
                        _cleanup_free_ char *real = realpath(p, NULL);
                        if (real && streq(real, skip_real))
                                continue;
                }
                *ret_path = TAKE_PTR(p);
                return 0;
        }
        size_t len = 1;
        for (char **d = dirs; *d; d++)
                len += strlen(*d) + 2;
        char *s = calloc(1, len);
        if (!s)
                return -ENOMEM;
        for (char **d = dirs; *d; d++) {
                if (d != dirs)
                        strcat(s, ", ");
                strcat(s, *d);
        }
        *ret_searched = s;
        return -ENOENT;
}

/* ---- loading a chain ---- */

typedef struct {
        Source src[MAX_CHAIN];
        size_t n;
        AjError *err;
} Chain;

static void chain_done(Chain *ch)
{
        for (size_t i = 0; i < ch->n; i++)
                source_done(&ch->src[i]);
        ch->n = 0;
}

static int parse_source(Source *s, AjError *err)
{
        json_error_t je;
        s->root = json_loads(s->text, JSON_REJECT_DUPLICATES, &je);
        if (!s->root) {
                return aj_error_set(err, -EINVAL, "%s:%d:%d: invalid JSON: %s", s->file, je.line, je.column,
                                    je.text);
        }
        Check c = { .src = s, .err = err };
        return check_root(&c, s->root);
}

/* Error at the `extends` value of `s`. */
_printf_(3, 4) static int fail_extends(const Source *s, AjError *err, const char *fmt, ...)
{
        Check c = { .src = s, .err = err };
        char *msg;
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        push_key(&c, "extends");
        r = fail(&c, AJ_JSON_AT_VALUE, "%s", msg);
        free(msg);
        return r;
}

static int dir_of(const char *file, char **ret)
{
        const char *slash = file ? strrchr(file, '/') : NULL;
        char *d = !slash ? strdup(".") : slash == file ? strdup("/") : strndup(file, slash - file);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

/* Resolves the `extends` of the last source into the next one; 0 when there is none. */
static int chain_extend(Chain *ch)
{
        Source *child = &ch->src[ch->n - 1];
        json_t *ext = json_object_get(child->root, "extends");
        if (!ext)
                return 0;
        const char *target = json_string_value(ext);
        _cleanup_free_ char *file = NULL;
        int r;

        if (looks_like_path(target)) {
                if (target[0] == '/')
                        file = strdup(target);
                else {
                        _cleanup_free_ char *dir = NULL;
                        r = dir_of(streq(child->file, "<string>") ? NULL : child->file, &dir);
                        if (r < 0)
                                return r;
                        if (asprintf(&file, "%s/%s", dir, target) < 0)
                                file = NULL;
                }
                if (!file)
                        return -ENOMEM;
        } else {
                _cleanup_free_ char *searched = NULL;
                r = find_profile(target, child->real, &file, &searched);
                if (r == -ENOENT)
                        return fail_extends(child, ch->err, "profile \"%s\" not found (searched: %s)", target,
                                            searched);
                if (r < 0)
                        return r;
        }

        _cleanup_free_ char *real = realpath(file, NULL);
        if (!real)
                return fail_extends(child, ch->err, "cannot read \"%s\": %s", file, strerror(errno));
        for (size_t i = 0; i < ch->n; i++) {
                if (!ch->src[i].real || !streq(ch->src[i].real, real))
                        continue;
                _cleanup_free_ char *cycle = NULL;
                for (size_t j = i; j < ch->n; j++) {
                        char *next;
                        if (asprintf(&next, "%s%s -> ", cycle ?: "", ch->src[j].file) < 0)
                                return -ENOMEM;
                        free(cycle);
                        cycle = next;
                }
                return fail_extends(child, ch->err, "cycle: %s%s", cycle, file);
        }
        if (ch->n == MAX_CHAIN)
                return fail_extends(child, ch->err, "too deep: at most %d profiles in an extends chain",
                                    MAX_CHAIN);

        _cleanup_free_ char *text = NULL;
        r = read_text(file, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail_extends(child, ch->err, "cannot read \"%s\": %s", file, read_error_text(r));

        Source *parent = &ch->src[ch->n++];
        *parent = (Source){ .file = TAKE_PTR(file), .real = TAKE_PTR(real), .text = TAKE_PTR(text) };
        r = parse_source(parent, ch->err);
        if (r < 0)
                return r;
        return 1;
}

static json_t *merge(json_t *parent, json_t *child)
{
        json_t *out = json_object();
        const char *key;
        json_t *v;

        if (!out)
                return NULL;
        json_object_foreach(parent, key, v)
                if (json_object_set(out, key, v) < 0)
                        goto fail;
        json_object_foreach(child, key, v) {
                json_t *pv = json_object_get(out, key);
                if (json_is_object(pv) && json_is_object(v)) {
                        if (json_object_set_new(out, key, merge(pv, v)) < 0)
                                goto fail;
                } else if (json_object_set(out, key, v) < 0)
                        goto fail;
        }
        return out;
fail:
        json_decref(out);
        return NULL;
}

static json_t *get_path(json_t *root, const char *a, const char *b)
{
        json_t *x = json_object_get(root, a);
        return b ? json_object_get(x, b) : x;
}

/* Checks that need the merged tree: the values involved may come from different files. */
static int check_merged(Chain *ch, json_t *merged)
{
        json_t *deny = get_path(merged, "seccomp", "deny");
        json_t *allow = get_path(merged, "seccomp", "allow");
        size_t i, j;
        json_t *d, *a;

        json_array_foreach(deny, i, d) {
                json_array_foreach(allow, j, a) {
                        if (!json_equal(d, a))
                                continue;
                        /* Arrays are never merged, so exactly one file wrote this deny list. */
                        const Source *deny_src = &ch->src[0], *allow_src = &ch->src[0];
                        for (size_t k = 0; k < ch->n; k++) {
                                if (get_path(ch->src[k].root, "seccomp", "deny") == deny)
                                        deny_src = &ch->src[k];
                                if (get_path(ch->src[k].root, "seccomp", "allow") == allow)
                                        allow_src = &ch->src[k];
                        }
                        Check c = { .src = deny_src, .err = ch->err };
                        push_key(&c, "seccomp");
                        push_key(&c, "deny");
                        push_index(&c, i);
                        return fail(&c, AJ_JSON_AT_VALUE,
                                    "%s is also in seccomp.allow[%zu] (%s); remove it from one of them",
                                    GOT(d), j, allow_src->file);
                }
        }
        return 0;
}

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
        json_array_foreach(arr, i, e) {
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
        json_array_foreach(arr, i, e) {
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

static int profile_new_defaults(AjProfile **ret)
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
        p->approval_timeout_ns = DEFAULT_APPROVAL_TIMEOUT_NS;
        p->log_output_bytes = p->log_events_bytes = AJ_LOG_DEFAULT_BYTES;
        p->log_reports_per_sec = AJ_LOG_DEFAULT_REPORTS_PER_SEC;
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
                json_object_foreach(prices, key, v) {
                        AjProfilePrice *pr = &p->prices[p->n_prices];
                        pr->model = strdup(key);
                        if (!pr->model)
                                return -ENOMEM;
                        pr->input = json_number_value(json_object_get(v, "input"));
                        pr->output = json_number_value(json_object_get(v, "output"));
                        json_t *cached = json_object_get(v, "cached_input");
                        pr->cached_input = cached ? json_number_value(cached) : -1.0;
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
        return 0;
}

/* `root` is valid: every value was checked in the file that wrote it. */
static int profile_from_json(json_t *root, AjProfile *p)
{
        json_t *v, *fs, *ws, *user, *sc, *lim, *env;
        uint64_t u;
        int r;

        if ((r = dup_string(&p->description, json_object_get(root, "description"))) < 0 ||
            (r = dup_string(&p->hostname, json_object_get(root, "hostname"))) < 0)
                return r;

        fs = json_object_get(root, "filesystem");
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

        user = json_object_get(root, "user");
        if ((v = json_object_get(user, "uid")))
                p->uid = (uid_t)json_integer_value(v);
        if ((v = json_object_get(user, "gid")))
                p->gid = (uid_t)json_integer_value(v);
        if ((v = json_object_get(user, "host_uid")))
                p->host_uid = (uid_t)json_integer_value(v);
        if ((v = json_object_get(user, "host_gid")))
                p->host_gid = (uid_t)json_integer_value(v);

        sc = json_object_get(root, "seccomp");
        if ((r = dup_string(&p->seccomp_base, json_object_get(sc, "base"))) < 0 ||
            (r = strlist_from(&p->seccomp_deny, json_object_get(sc, "deny"))) < 0 ||
            (r = strlist_from(&p->seccomp_allow, json_object_get(sc, "allow"))) < 0)
                return r;
        if ((v = json_object_get(sc, "log")))
                p->seccomp_log = json_is_true(v);
        if ((v = json_object_get(sc, "allow_netlink")))
                p->allow_netlink = json_is_true(v);

        lim = json_object_get(root, "limits");
        if ((v = json_object_get(lim, "memory")) && json_size(v, &u) >= 0)
                p->memory = u;
        if ((v = json_object_get(lim, "fsize")) && json_size(v, &u) >= 0)
                p->fsize = u;
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

        if ((r = strlist_from(&p->net_allow, get_path(root, "network", "allow"))) < 0)
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
        json_object_foreach(json_object_get(env, "set"), key, v) {
                char *kv;
                if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0)
                        return -ENOMEM;
                r = aj_strv_consume(&p->env_set.items, kv);
                if (r < 0)
                        return r;
                p->env_set.n++;
        }

        size_t i;
        json_array_foreach(json_object_get(root, "allow_degraded"), i, v)
                p->allow_degraded |= degrade_flag(json_string_value(v));
        return broker_from_json(root, p);
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
                if (!e || (pr->cached_input >= 0 &&
                           json_object_set_new(e, "cached_input", json_real(pr->cached_input)) < 0)) {
                        json_decref(e);
                        return -ENOMEM;
                }
                if (json_object_set_new(prices, pr->model, e) < 0)
                        return -ENOMEM;
        }
        if (json_object_set_new(root, "on_breach",
                                json_string(p->on_breach == AJ_ON_BREACH_KILL ? "kill" : "freeze")) < 0 ||
            json_object_set_new(root, "alert",
                                json_pack("{s:o, s:o}", "exec", strlist_json(&p->alert_exec), "timeout",
                                          duration_json(p->alert_timeout_ns))) < 0)
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
        for (size_t i = 0; degraded && i < ARRAY_SIZE(degrade_names); i++)
                if (p->allow_degraded & degrade_names[i].flag)
                        json_array_append_new(degraded, json_string(degrade_names[i].name));

        json_t *workspace = p->workspace_path
                ? json_pack("{s:s, s:s}", "path", p->workspace_path, "mode", modes[p->workspace_mode])
                : json_pack("{s:s}", "mode", modes[p->workspace_mode]);

        /* json_pack() takes ownership of "o" arguments even on failure, and fails on a NULL one. */
        json_t *root = json_pack(
                "{s:s, s:{s:o, s:o, s:o, s:o, s:o, s:s, s:o}, s:{s:I, s:I, s:I, s:I},"
                " s:{s:s, s:o, s:o, s:b, s:b},"
                " s:{s:o, s:I, s:f, s:o, s:o, s:I, s:I, s:o, s:b},"
                " s:{s:o, s:o, s:I}, s:{s:o, s:o}, s:o, s:{s:o, s:o, s:I}}",
                "hostname", p->hostname,
                "filesystem",
                "ro", bindlist_json(&p->ro), "rw", bindlist_json(&p->rw), "tmpfs", strlist_json(&p->tmpfs),
                "hide", strlist_json(&p->hide), "workspace", workspace, "home", p->home,
                "allow_sensitive", strlist_json(&p->allow_sensitive),
                "user",
                "uid", (json_int_t)p->uid, "gid", (json_int_t)p->gid, "host_uid", (json_int_t)p->host_uid,
                "host_gid", (json_int_t)p->host_gid,
                "seccomp",
                "base", p->seccomp_base, "deny", strlist_json(&p->seccomp_deny),
                "allow", strlist_json(&p->seccomp_allow), "log", (int)p->seccomp_log,
                "allow_netlink", (int)p->allow_netlink,
                "limits",
                "memory", size_json(p->memory), "pids", (json_int_t)p->pids, "cpu", p->cpu,
                "wall", duration_json(p->wall_ns), "wall_grace", duration_json(p->wall_grace_ns),
                "nofile", (json_int_t)p->nofile, "nproc", (json_int_t)p->nproc, "fsize", size_json(p->fsize),
                "core", (int)p->core,
                "network", "allow", strlist_json(&p->net_allow), "egress_bytes", size_json(p->egress_bytes),
                "max_connections",
                (json_int_t)(p->net_max_connections ? p->net_max_connections : AJ_PROXY_MAX_CONNECTIONS),
                "env", "pass", strlist_json(&p->env_pass), "set", env_set_json(&p->env_set),
                "allow_degraded", degraded,
                "logs",
                "output_bytes", size_json(p->log_output_bytes), "events_bytes", size_json(p->log_events_bytes),
                "reports_per_sec", (json_int_t)p->log_reports_per_sec);
        if (!root)
                return NULL;
        if (broker_tree(p, root) < 0) {
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

void aj_profile_free(AjProfile *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->path);
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
        strlist_done(&p->env_pass);
        strlist_done(&p->env_set);
        strlist_done(&p->tools_allow);
        strlist_done(&p->tools_deny);
        strlist_done(&p->approval_tools);
        for (size_t i = 0; i < p->n_prices; i++)
                free(p->prices[i].model);
        free(p->prices);
        strlist_done(&p->alert_exec);
        free(p);
}

/* ---- entry points ---- */

/* Takes `text`; `file` is for messages and relative `extends`, `real` its canonical path or NULL. */
static int load_text(char *text, const char *file, char *real, const char *name, AjProfile **ret,
                     AjError *err)
{
        _cleanup_(chain_done) Chain ch = { .err = err };
        _cleanup_free_ char *owned_text = text, *owned_real = real;
        int r;

        ch.src[0] = (Source){ .file = strdup(file), .real = TAKE_PTR(owned_real), .text = TAKE_PTR(owned_text) };
        ch.n = 1;
        if (!ch.src[0].file)
                return -ENOMEM;
        r = parse_source(&ch.src[0], err);
        if (r < 0)
                return r;
        while ((r = chain_extend(&ch)) > 0)
                ;
        if (r < 0)
                return r;

        _cleanup_json_ json_t *merged = json_incref(ch.src[ch.n - 1].root);
        for (size_t i = ch.n - 1; i-- > 0;) {
                json_t *m = merge(merged, ch.src[i].root);
                if (!m)
                        return -ENOMEM;
                json_decref(merged);
                merged = m;
        }
        r = check_merged(&ch, merged);
        if (r < 0)
                return r;

        _cleanup_(aj_profile_freep) AjProfile *p = NULL;
        r = profile_new_defaults(&p);
        if (r < 0)
                return r;
        r = profile_from_json(merged, p);
        if (r < 0)
                return r;
        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;
        if (ch.src[0].real) {
                p->path = strdup(ch.src[0].real);
                if (!p->path)
                        return -ENOMEM;
        }
        r = aj_profile_update_digest(p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

static int load_path(const char *path, const char *name, AjProfile **ret, AjError *err)
{
        char *text = NULL;
        int r = read_text(path, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                return aj_error_set(err, r, "%s: %s", path, read_error_text(r));
        }
        char *real = realpath(path, NULL);
        if (!real) {
                r = -errno;
                free(text);
                return r;
        }
        return load_text(text, path, real, name, ret, err);
}

int aj_profile_load_file(const char *path, AjProfile **ret, AjError *err)
{
        return load_path(path, path, ret, err);
}

int aj_profile_load(const char *name_or_path, AjProfile **ret, AjError *err)
{
        if (looks_like_path(name_or_path))
                return load_path(name_or_path, name_or_path, ret, err);
        if (!is_profile_name(name_or_path)) {
                return aj_error_set(err, -EINVAL,
                                    "invalid profile name \"%s\" (expected [A-Za-z0-9_.-], not starting "
                                    "with '.', or a path)",
                                    name_or_path);
        }
        _cleanup_free_ char *path = NULL, *searched = NULL;
        int r = find_profile(name_or_path, NULL, &path, &searched);
        if (r == -ENOENT) {
                return aj_error_set(err, r, "profile \"%s\" not found (searched: %s)", name_or_path, searched);
        }
        if (r < 0)
                return r;
        return load_path(path, name_or_path, ret, err);
}

int aj_profile_parse(const char *text, const char *file, AjProfile **ret, AjError *err)
{
        char *copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        char *real = file ? realpath(file, NULL) : NULL;
        return load_text(copy, file ?: "<string>", real, file ?: "<string>", ret, err);
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

int aj_profile_list(char ***ret_names, char ***ret_paths)
{
        _cleanup_strv_free_ char **dirs = NULL, **names = NULL, **paths = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                DIR *dir = opendir(*d);
                if (!dir)
                        continue;
                struct dirent *de;
                while ((de = readdir(dir))) {
                        size_t len = strlen(de->d_name);
                        if (len <= 5 || !streq(de->d_name + len - 5, ".json"))
                                continue;
                        _cleanup_free_ char *name = strndup(de->d_name, len - 5);
                        char *path = NULL;
                        if (!name || asprintf(&path, "%s/%s", *d, de->d_name) < 0) {
                                closedir(dir);
                                return -ENOMEM;
                        }
                        if (!is_profile_name(name) || aj_strv_contains(names, name) || !is_regular_file(path)) {
                                free(path);
                                continue;
                        }
                        r = aj_strv_consume(&names, TAKE_PTR(name));
                        if (r < 0)
                                free(path);
                        else
                                r = aj_strv_consume(&paths, path);
                        if (r < 0) {
                                closedir(dir);
                                return r;
                        }
                }
                closedir(dir);
        }

        /* Sort names and paths together through an index of pairs. */
        size_t n = aj_strv_length(names);
        _cleanup_free_ char ***pairs = calloc(n + 1, sizeof(char **));
        if (!pairs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                pairs[i] = &names[i];
        qsort(pairs, n, sizeof(char **), compare_names);
        _cleanup_free_ char **sn = calloc(n + 1, sizeof(char *));
        _cleanup_free_ char **sp = calloc(n + 1, sizeof(char *));
        if (!sn || !sp)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t k = (size_t)(pairs[i] - names);
                sn[i] = names[k];
                sp[i] = paths[k];
        }
        free(TAKE_PTR(names));
        free(TAKE_PTR(paths));
        *ret_names = TAKE_PTR(sn);
        if (ret_paths)
                *ret_paths = TAKE_PTR(sp);
        else
                aj_strv_free(TAKE_PTR(sp));
        return 0;
}
