/* SPDX-License-Identifier: Apache-2.0 */
/* An eval suite file: parse and validate (the schema of docs/evals.md). Every error names
 * the file, the line and column (util/json-locate.h) and the key path. Pure. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval-bounded.h"
#include "eval.h"
#include "meter.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/json-locate.h"
#include "util/parse.h"
#include "util/path.h"
#include "util/strv.h"

#define MAX_DEPTH 8

static const char *const usage_names[_AJ_EVAL_USAGE_MAX] = {
        [AJ_EVAL_USAGE_TOKENS] = "tokens",
        [AJ_EVAL_USAGE_INPUT_TOKENS] = "input_tokens",
        [AJ_EVAL_USAGE_OUTPUT_TOKENS] = "output_tokens",
        [AJ_EVAL_USAGE_COST_USD] = "cost_usd",
        [AJ_EVAL_USAGE_TOOL_CALLS] = "tool_calls",
};

const char *aj_eval_usage_name(AjEvalUsageKey k) { return k < _AJ_EVAL_USAGE_MAX ? usage_names[k] : "?"; }

bool aj_eval_source_supported(AjEvalSource source)
{
        return source == AJ_EVAL_SOURCE_COMMAND || source == AJ_EVAL_SOURCE_RECORDED;
}

/* Where a value is: keys and "[N]" indexes, for the message and for aj_json_locate(). */
typedef struct {
        const char *file, *text;
        AjError *err;
        const char *elem[MAX_DEPTH + 1];
        char index[MAX_DEPTH][24];
        size_t n;
        unsigned long re_weight; /* of the "matches" patterns so far (re_too_costly) */
} Where;

static void push_key(Where *w, const char *key)
{
        if (w->n < MAX_DEPTH)
                w->elem[w->n] = key;
        w->n++;
        w->elem[w->n < MAX_DEPTH ? w->n : MAX_DEPTH] = NULL;
}

static void push_index(Where *w, size_t i)
{
        if (w->n < MAX_DEPTH) {
                snprintf(w->index[w->n], sizeof(w->index[w->n]), "[%zu]", i);
                w->elem[w->n] = w->index[w->n];
        }
        w->n++;
        w->elem[w->n < MAX_DEPTH ? w->n : MAX_DEPTH] = NULL;
}

static void pop(Where *w)
{
        w->n--;
        w->elem[w->n < MAX_DEPTH ? w->n : MAX_DEPTH] = NULL;
}

static int vfail(const Where *w, AjJsonLocateWhat what, const char *fmt, va_list ap)
{
        char keys[512] = "";
        for (size_t i = 0; i < w->n && i < MAX_DEPTH; i++) {
                if (i > 0 && w->elem[i] != w->index[i])
                        aj_append_printable(keys, sizeof(keys), ".", 1);
                aj_append_printable(keys, sizeof(keys), w->elem[i], 64);
        }
        _cleanup_free_ char *msg = NULL;
        if (aj_vasprintf(&msg, fmt, ap) < 0)
                return -ENOMEM;
        const char *sep = keys[0] ? ": " : "";
        unsigned line, col;
        if (aj_json_locate(w->text, w->elem, what, &line, &col) >= 0)
                return aj_error_set(w->err, -EINVAL, "%s:%u:%u: %s%s%s", w->file, line, col, keys, sep, msg);
        return aj_error_set(w->err, -EINVAL, "%s: %s%s%s", w->file, keys, sep, msg);
}

/* "FILE:LINE:COL: KEY.PATH: message" at the value; -EINVAL. */
_printf_(2, 3) static int fail(const Where *w, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vfail(w, AJ_JSON_AT_VALUE, fmt, ap);
        va_end(ap);
        return r;
}

/* The same at the member's key (an unknown key). */
_printf_(2, 3) static int fail_key(const Where *w, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vfail(w, AJ_JSON_AT_KEY, fmt, ap);
        va_end(ap);
        return r;
}

static const char *type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        default:
                return "null";
        }
}

/* Every key of `v` (an object) must be in `known` (NULL-terminated). */
static int check_keys(Where *w, json_t *v, const char *const *known)
{
        const char *key;
        json_t *member;
        json_object_foreach (v, key, member) {
                bool ok = false;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = streq(*k, key);
                if (!ok) {
                        push_key(w, key);
                        char shown[80] = "";
                        aj_append_printable(shown, sizeof(shown), key, 60);
                        return fail_key(w, "unknown key \"%s\"", shown);
                }
        }
        return 0;
}

/* A string of 1..max bytes, without NUL (jansson allows one) or control characters
 * (names show in tables and XML). */
static int get_string(Where *w, json_t *v, size_t max, bool allow_control, const char **ret)
{
        if (!json_is_string(v))
                return fail(w, "expected a string, got %s", type_name(v));
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0)
                return fail(w, "must not be empty");
        if (len > max)
                return fail(w, "longer than %zu bytes", max);
        if (strlen(s) != len)
                return fail(w, "must not contain a NUL character");
        for (const char *p = s; !allow_control && *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return fail(w, "must not contain control characters");
        *ret = s;
        return 0;
}

static int dup_string(Where *w, json_t *v, size_t max, char **ret)
{
        const char *s;
        int r = get_string(w, v, max, false, &s);
        if (r < 0)
                return r;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* A path relative to the workspace: not absolute, no "..", no empty component. */
static int check_rel_path(Where *w, const char *p)
{
        if (p[0] == '/')
                return fail(w, "must be relative to the workspace");
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 2 && s[0] == '.' && s[1] == '.')
                        return fail(w, "must not contain \"..\"");
                s += n;
                s += *s == '/';
        }
        return 0;
}

/* Against the suite's directory, unless absolute. */
static int resolve_path(const AjEvalSuite *s, const char *p, char **ret)
{
        *ret = p[0] == '/' ? strdup(p) : aj_path_join(s->dir, p);
        return *ret ? 0 : -ENOMEM;
}

static int parse_argv(Where *w, json_t *v, char ***ret)
{
        if (!json_is_array(v))
                return fail(w, "expected an array of strings (the command and its arguments), got %s", type_name(v));
        size_t n = json_array_size(v);
        if (n == 0)
                return fail(w, "must not be empty");
        if (n > AJ_EVAL_MAX_ARGV)
                return fail(w, "more than %d arguments", AJ_EVAL_MAX_ARGV);
        _cleanup_(aj_strv_freep) char **argv = NULL;
        size_t i;
        json_t *a;
        json_array_foreach (v, i, a) {
                push_index(w, i);
                /* An argument may be a script with newlines, or empty (but not the command). */
                const char *s = "";
                bool empty_arg = i > 0 && json_is_string(a) && json_string_length(a) == 0;
                int r = empty_arg ? 0 : get_string(w, a, AJ_EVAL_MAX_STRING, true, &s);
                if (r < 0)
                        return r;
                pop(w);
                if (aj_strv_push(&argv, s) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(argv);
        return 0;
}

static int parse_caps(Where *w, json_t *v, char ***ret)
{
        if (!json_is_array(v))
                return fail(w, "expected an array of \"KEY=VALUE\" strings, got %s", type_name(v));
        if (json_array_size(v) > 64)
                return fail(w, "more than 64 caps");
        _cleanup_(aj_strv_freep) char **caps = NULL;
        size_t i;
        json_t *a;
        json_array_foreach (v, i, a) {
                push_index(w, i);
                const char *s;
                int r = get_string(w, a, 256, false, &s);
                if (r < 0)
                        return r;
                /* What `run --cap` would say, here with the position. */
                AjMeterCaps scratch = {};
                _cleanup_(aj_error_clear) AjError cerr = {};
                r = aj_meter_apply_cap_arg(&scratch, s, &cerr);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return fail(w, "%s", aj_error_text(&cerr, r));
                pop(w);
                if (aj_strv_push(&caps, s) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(caps);
        return 0;
}

static int parse_timeout(Where *w, json_t *v, uint64_t *ret)
{
        uint64_t ns;
        if (json_is_integer(v) && json_integer_value(v) > 0 &&
            (uint64_t)json_integer_value(v) <= AJ_EVAL_MAX_TIMEOUT_NS / 1000000000ULL)
                ns = (uint64_t)json_integer_value(v) * 1000000000ULL;
        else if (!json_is_string(v) || aj_parse_duration(json_string_value(v), &ns) < 0 || ns == 0)
                return fail(w, "expected a duration (\"30s\", \"5m\") or whole seconds");
        if (ns > AJ_EVAL_MAX_TIMEOUT_NS)
                return fail(w, "at most 24h");
        *ret = ns;
        return 0;
}

/* ---- expect ---- */

/* What glibc's regcomp() builds grows with the pattern as its repetitions expand it:
 * "x{255}{255}" is 65,025 copies of x, and each copy's epsilon closures make memory and
 * time grow with the square of that ("()*" 1,365 times: 4 s and 88 MB here). So a
 * pattern is weighed before it is compiled: each literal, bracket expression, group and
 * operator weighs 1, a bound {n,m} multiplies what it repeats by m+1 (n+1 for {n,}), a
 * '+' by 2 (glibc copies it: "x+" is "xx*", so "x++++..." doubles with each '+'), and
 * 1024 is the most (the worst pattern of that weight found: 0.1 s, 8 MB). Backreferences
 * are refused too: the content they are matched against is what the agent wrote, and
 * matching them can take exponential time. NULL when the pattern may be compiled,
 * otherwise why not. */
#define RE_MAX_WEIGHT 1024
#define RE_TOO_FAR "its repetitions expand it past 1024 elements (a bound {n,m} counts as m+1 copies, a '+' as two)"
/* All the patterns of one suite together (each is compiled and kept while the suite runs). */
#define RE_MAX_SUITE_WEIGHT (64 * RE_MAX_WEIGHT)
#define RE_MAX_NESTING 32

static size_t re_bracket_end(const char *re, size_t i)
{
        /* re[i] == '['; POSIX: a ']' first (after an optional '^') is a literal. */
        i++;
        if (re[i] == '^')
                i++;
        if (re[i] == ']')
                i++;
        while (re[i] && re[i] != ']') {
                if (re[i] == '[' && (re[i + 1] == ':' || re[i + 1] == '=' || re[i + 1] == '.')) {
                        char close = re[i + 1];
                        const char *end = strchr(re + i + 2, close);
                        while (end && end[1] != ']')
                                end = strchr(end + 1, close);
                        if (!end)
                                return strlen(re);
                        i = (size_t)(end - re) + 2;
                } else {
                        i++;
                }
        }
        return re[i] ? i + 1 : i;
}

static unsigned long re_bound(const char *re, size_t *i, unsigned long *ret_min)
{
        /* re[*i] == '{' followed by a digit or ',': "{n}", "{n,}", "{n,m}", "{,m}"; saturates.
         * Returns the most copies + 1. */
        unsigned long n = 0, m = 0;
        size_t j = *i + 1;
        for (; re[j] >= '0' && re[j] <= '9'; j++)
                n = n > 100000 ? n : n * 10 + (unsigned long)(re[j] - '0');
        m = n;
        if (re[j] == ',') {
                j++;
                if (re[j] >= '0' && re[j] <= '9') {
                        m = 0;
                        for (; re[j] >= '0' && re[j] <= '9'; j++)
                                m = m > 100000 ? m : m * 10 + (unsigned long)(re[j] - '0');
                }
        }
        if (re[j] == '}')
                j++;
        *i = j;
        *ret_min = n;
        return (m > n ? m : n) + 1;
}

/* A group being weighed: its weight so far, the last thing in it (what a following
 * operator repeats: its weight and whether it can match the empty string), and whether
 * the branch so far and any branch before it can match empty. */
typedef struct {
        unsigned long sum, last;
        bool has_last, last_empty, branch_empty, branch_empty_before_last, any_empty;
} ReFrame;

static bool re_over(const ReFrame *f, size_t d)
{
        /* An unclosed group is expanded before regcomp() finds it unclosed: count them all. */
        unsigned long total = 0;
        for (size_t k = 0; k <= d; k++)
                total += f[k].sum;
        return total > RE_MAX_WEIGHT;
}

static void re_item(ReFrame *f, unsigned long w, bool empty)
{
        f->sum += w;
        f->last = w;
        f->has_last = true;
        f->last_empty = empty;
        f->branch_empty_before_last = f->branch_empty;
        f->branch_empty = f->branch_empty && empty;
}

/* An operator repeats the last thing `extra` more weight's worth; `empty`: the result can
 * match empty ("*", "?", "{0,m}"). */
static const char *re_repeat(ReFrame *f, unsigned long extra, bool empty)
{
        if (!f->has_last)
                return NULL; /* nothing to repeat: regcomp() refuses it or takes it literally */
        /* glibc recomputes the epsilon closure of every node on a loop of empty matches,
         * each time it is reached: "(\b)*" twelve times took 2.6 s to compile, sixteen
         * times 273 s, "y?{,8}{,8}*" over 150 s. */
        if (f->last_empty)
                return "it repeats something that can match the empty string (as in (a*)*, (x|)+, "
                       "a?{2,} or (^)*), which glibc takes exponential time to compile; write it "
                       "without (a* for (a*)*)";
        f->sum += extra;
        f->last += extra;
        f->last_empty = empty;
        f->branch_empty = f->branch_empty_before_last && empty;
        return NULL;
}

static const char *re_too_costly(const char *re, unsigned long *ret_weight)
{
        ReFrame f[RE_MAX_NESTING + 1] = { { .branch_empty = true } };
        size_t d = 0;
        const char *why = NULL;
        for (size_t i = 0; re[i] && !why;) {
                char c = re[i];
                if (c == '\\') {
                        if (re[i + 1] >= '1' && re[i + 1] <= '9')
                                return "backreferences (\\1 to \\9) are not supported: on the content an "
                                       "agent wrote they can take exponential time";
                        /* GNU's zero-width escapes match empty, like ^ and $. */
                        bool anchor = re[i + 1] && strchr("bB<>`'", re[i + 1]);
                        i += re[i + 1] ? 2 : 1;
                        re_item(&f[d], 1, anchor);
                } else if (c == '[') {
                        i = re_bracket_end(re, i);
                        re_item(&f[d], 1, false);
                } else if (c == '(') {
                        if (d == RE_MAX_NESTING)
                                return "groups nested more than 32 deep";
                        d++;
                        f[d] = (ReFrame){ .branch_empty = true };
                        i++;
                } else if (c == ')' && d > 0) {
                        unsigned long w = f[d].sum + 1;
                        bool empty = f[d].any_empty || f[d].branch_empty;
                        d--;
                        i++;
                        re_item(&f[d], w, empty);
                } else if (c == '|') {
                        f[d].any_empty = f[d].any_empty || f[d].branch_empty;
                        f[d].branch_empty = true;
                        f[d].has_last = false;
                        f[d].sum++;
                        i++;
                } else if (c == '{' && ((re[i + 1] >= '0' && re[i + 1] <= '9') || re[i + 1] == ',')) {
                        /* The repeated thing is already in sum: add the further copies. */
                        unsigned long min = 0, times = re_bound(re, &i, &min);
                        unsigned long extra = f[d].last * (times - 1);
                        if (f[d].last && extra / f[d].last != times - 1)
                                return RE_TOO_FAR;
                        why = re_repeat(&f[d], extra, min == 0);
                } else if (c == '*' || c == '?' || c == '+') {
                        /* glibc compiles x+ as x x*: a copy, so each '+' doubles (x+++...). */
                        why = re_repeat(&f[d], 1 + (c == '+' ? f[d].last : 0), c != '+');
                        i++;
                } else {
                        re_item(&f[d], 1, c == '^' || c == '$');
                        i++;
                }
                if (!why && re_over(f, d))
                        return RE_TOO_FAR;
        }
        if (why)
                return why;
        *ret_weight = 0;
        for (size_t k = 0; k <= d; k++)
                *ret_weight += f[k].sum;
        return NULL;
}

static int parse_file_check(Where *w, json_t *v, AjEvalFileCheck *f)
{
        static const char *const keys[] = { "path", "exists", "equals", "matches", NULL };
        if (!json_is_object(v))
                return fail(w, "expected an object ({\"path\": ..., \"exists\"|\"equals\"|\"matches\": ...}), got %s",
                            type_name(v));
        int r = check_keys(w, v, keys);
        if (r < 0)
                return r;
        json_t *path = json_object_get(v, "path");
        if (!path)
                return fail(w, "\"path\" is required");
        push_key(w, "path");
        if ((r = dup_string(w, path, AJ_EVAL_MAX_STRING, &f->path)) < 0 || (r = check_rel_path(w, f->path)) < 0)
                return r;
        pop(w);
        json_t *exists = json_object_get(v, "exists"), *equals = json_object_get(v, "equals"),
               *matches = json_object_get(v, "matches");
        if (!!exists + !!equals + !!matches != 1)
                return fail(w, "give exactly one of \"exists\", \"equals\", \"matches\"");
        if (exists) {
                push_key(w, "exists");
                if (!json_is_boolean(exists))
                        return fail(w, "expected true or false, got %s", type_name(exists));
                pop(w);
                f->kind = json_is_true(exists) ? AJ_EVAL_FILE_EXISTS : AJ_EVAL_FILE_ABSENT;
                return 0;
        }
        if (equals) {
                push_key(w, "equals");
                /* The content may be empty and have any character but NUL. */
                if (!json_is_string(equals))
                        return fail(w, "expected a string, got %s", type_name(equals));
                if (json_string_length(equals) > AJ_EVAL_MAX_FILE_BYTES ||
                    strlen(json_string_value(equals)) != json_string_length(equals))
                        return fail(w, "at most %d bytes, without NUL", AJ_EVAL_MAX_FILE_BYTES);
                pop(w);
                f->kind = AJ_EVAL_FILE_EQUALS;
                f->text = strdup(json_string_value(equals));
                return f->text ? 0 : -ENOMEM;
        }
        push_key(w, "matches");
        const char *re;
        if ((r = get_string(w, matches, AJ_EVAL_MAX_STRING, true, &re)) < 0)
                return r;
        f->kind = AJ_EVAL_FILE_MATCHES;
        f->text = strdup(re);
        if (!f->text)
                return -ENOMEM;
        unsigned long weight = 0;
        const char *costly = re_too_costly(re, &weight);
        if (costly)
                return fail(w, "this regular expression is refused: %s", costly);
        w->re_weight += weight;
        if (w->re_weight > RE_MAX_SUITE_WEIGHT)
                return fail(w, "the suite's regular expressions together are past %d elements", RE_MAX_SUITE_WEIGHT);
        /* Compiled by aj_eval_suite_compile(), after a bounded child has. */
        pop(w);
        return 0;
}

static int parse_event_check(Where *w, json_t *v, AjEvalEventCheck *e)
{
        static const char *const keys[] = { "type", "fields", "absent", "count", NULL };
        if (!json_is_object(v))
                return fail(w, "expected an object ({\"type\": ..., \"fields\": {...}}), got %s", type_name(v));
        int r = check_keys(w, v, keys);
        if (r < 0)
                return r;
        json_t *type = json_object_get(v, "type");
        if (!type)
                return fail(w, "\"type\" is required");
        push_key(w, "type");
        if ((r = dup_string(w, type, 128, &e->type)) < 0)
                return r;
        if (strchr(e->type, '*') && strchr(e->type, '*') != e->type + strlen(e->type) - 1)
                return fail(w, "'*' may only end the type (a prefix, e.g. \"net.*\")");
        pop(w);
        json_t *fields = json_object_get(v, "fields");
        if (fields) {
                push_key(w, "fields");
                if (!json_is_object(fields))
                        return fail(w, "expected an object of event members and their values, got %s",
                                    type_name(fields));
                if (json_object_size(fields) > 64)
                        return fail(w, "more than 64 members");
                pop(w);
                e->fields = json_incref(fields);
        }
        json_t *absent = json_object_get(v, "absent"), *count = json_object_get(v, "count");
        e->count = -1;
        if (absent) {
                push_key(w, "absent");
                if (!json_is_boolean(absent))
                        return fail(w, "expected true or false, got %s", type_name(absent));
                pop(w);
                e->absent = json_is_true(absent);
        }
        if (count) {
                push_key(w, "count");
                if (e->absent)
                        return fail(w, "\"count\" and \"absent\": true contradict (\"count\": 0 is absent)");
                if (!json_is_integer(count) || json_integer_value(count) < 0 || json_integer_value(count) > 1000000000)
                        return fail(w, "expected a whole number of events, got %s", type_name(count));
                pop(w);
                e->count = json_integer_value(count);
        }
        return 0;
}

static int parse_bound_number(Where *w, json_t *v, double *ret)
{
        if (!json_is_number(v) || json_number_value(v) < 0)
                return fail(w, "expected a number >= 0, got %s", type_name(v));
        *ret = json_number_value(v);
        return 0;
}

static int parse_usage(Where *w, json_t *v, AjEvalBound *usage)
{
        if (!json_is_object(v))
                return fail(w, "expected an object of meters and bounds, got %s", type_name(v));
        int r = check_keys(w, v,
                           (const char *const[]){ usage_names[0], usage_names[1], usage_names[2], usage_names[3],
                                                  usage_names[4], NULL });
        if (r < 0)
                return r;
        for (size_t k = 0; k < _AJ_EVAL_USAGE_MAX; k++) {
                json_t *b = json_object_get(v, usage_names[k]);
                if (!b)
                        continue;
                push_key(w, usage_names[k]);
                AjEvalBound *u = &usage[k];
                if (json_is_number(b)) { /* a plain number is the most it may use */
                        if ((r = parse_bound_number(w, b, &u->max)) < 0)
                                return r;
                        u->has_max = true;
                } else if (json_is_object(b)) {
                        if ((r = check_keys(w, b, (const char *const[]){ "min", "max", NULL })) < 0)
                                return r;
                        json_t *min = json_object_get(b, "min"), *max = json_object_get(b, "max");
                        if (!min && !max)
                                return fail(w, "give \"min\", \"max\" or both");
                        if (min) {
                                push_key(w, "min");
                                if ((r = parse_bound_number(w, min, &u->min)) < 0)
                                        return r;
                                pop(w);
                                u->has_min = true;
                        }
                        if (max) {
                                push_key(w, "max");
                                if ((r = parse_bound_number(w, max, &u->max)) < 0)
                                        return r;
                                pop(w);
                                u->has_max = true;
                        }
                        if (min && max && u->min > u->max)
                                return fail(w, "\"min\" is above \"max\"");
                } else
                        return fail(w, "expected a number (the most) or {\"min\", \"max\"}, got %s", type_name(b));
                pop(w);
        }
        return 0;
}

/* The array at `key` of `expect`: each element through `each` into a new array of `size`-byte items. */
static int parse_checks(Where *w, json_t *expect, const char *key, size_t size, int (*each)(Where *, json_t *, void *),
                        void **ret_items, size_t *ret_n)
{
        json_t *v = json_object_get(expect, key);
        if (!v)
                return 0;
        push_key(w, key);
        if (!json_is_array(v))
                return fail(w, "expected an array, got %s", type_name(v));
        size_t n = json_array_size(v);
        if (n > AJ_EVAL_MAX_CHECKS)
                return fail(w, "more than %d assertions", AJ_EVAL_MAX_CHECKS);
        char *items = calloc(n ? n : 1, size);
        if (!items)
                return -ENOMEM;
        *ret_items = items;
        size_t i;
        json_t *e;
        json_array_foreach (v, i, e) {
                push_index(w, i);
                *ret_n = i + 1; /* so the caller frees what was parsed, also on failure */
                int r = each(w, e, items + i * size);
                if (r < 0)
                        return r;
                pop(w);
        }
        pop(w);
        return 0;
}

static int each_file(Where *w, json_t *v, void *item) { return parse_file_check(w, v, item); }
static int each_event(Where *w, json_t *v, void *item) { return parse_event_check(w, v, item); }

static int parse_expect(Where *w, json_t *v, AjEvalCase *c)
{
        static const char *const keys[] = { "exit", "files", "events", "usage", NULL };
        if (!json_is_object(v))
                return fail(w, "expected an object, got %s", type_name(v));
        int r = check_keys(w, v, keys);
        if (r < 0)
                return r;
        json_t *ex = json_object_get(v, "exit");
        if (ex) {
                push_key(w, "exit");
                if (!json_is_integer(ex) || json_integer_value(ex) < 0 || json_integer_value(ex) > 255)
                        return fail(w, "expected an exit status (0 to 255)");
                c->exit_status = (int)json_integer_value(ex);
                pop(w);
        }
        void *items = NULL;
        r = parse_checks(w, v, "files", sizeof(AjEvalFileCheck), each_file, &items, &c->n_files);
        c->files = items;
        if (r < 0)
                return r;
        items = NULL;
        r = parse_checks(w, v, "events", sizeof(AjEvalEventCheck), each_event, &items, &c->n_events);
        c->events = items;
        if (r < 0)
                return r;
        json_t *usage = json_object_get(v, "usage");
        if (usage) {
                push_key(w, "usage");
                if ((r = parse_usage(w, usage, c->usage)) < 0)
                        return r;
                pop(w);
        }
        return 0;
}

/* ---- a case ---- */

/* Members a case shares with "defaults". */
static int parse_common(Where *w, const AjEvalSuite *s, json_t *v, AjEvalCase *c)
{
        int r;
        json_t *m;
        if ((m = json_object_get(v, "fixture"))) {
                push_key(w, "fixture");
                const char *p;
                if ((r = get_string(w, m, AJ_EVAL_MAX_STRING, false, &p)) < 0)
                        return r;
                free(c->fixture);
                if ((r = resolve_path(s, p, &c->fixture)) < 0)
                        return r;
                pop(w);
        }
        if ((m = json_object_get(v, "profile"))) {
                push_key(w, "profile");
                const char *p;
                if ((r = get_string(w, m, AJ_EVAL_MAX_STRING, false, &p)) < 0)
                        return r;
                size_t n = strlen(p);
                bool is_path = strchr(p, '/') || (n > 5 && streq(p + n - 5, ".json"));
                free(c->profile);
                c->profile = NULL;
                if ((r = is_path ? resolve_path(s, p, &c->profile) : ((c->profile = strdup(p)) ? 0 : -ENOMEM)) < 0)
                        return r;
                pop(w);
        }
        if ((m = json_object_get(v, "caps"))) {
                push_key(w, "caps");
                aj_strv_free(c->caps);
                c->caps = NULL;
                if ((r = parse_caps(w, m, &c->caps)) < 0)
                        return r;
                pop(w);
        }
        if ((m = json_object_get(v, "timeout"))) {
                push_key(w, "timeout");
                if ((r = parse_timeout(w, m, &c->timeout_ns)) < 0)
                        return r;
                pop(w);
        }
        return 0;
}

static void case_done(AjEvalCase *c)
{
        free(c->name);
        aj_strv_free(c->argv);
        free(c->recorded_run);
        free(c->fixture);
        free(c->profile);
        aj_strv_free(c->caps);
        for (size_t i = 0; i < c->n_files; i++) {
                free(c->files[i].path);
                free(c->files[i].text);
                if (c->files[i].re_compiled)
                        regfree(&c->files[i].re);
        }
        free(c->files);
        for (size_t i = 0; i < c->n_events; i++) {
                free(c->events[i].type);
                json_decref(c->events[i].fields);
        }
        free(c->events);
        *c = (AjEvalCase){};
}

static int copy_defaults(const AjEvalCase *d, AjEvalCase *c)
{
        c->timeout_ns = d->timeout_ns;
        if ((d->fixture && !(c->fixture = strdup(d->fixture))) || (d->profile && !(c->profile = strdup(d->profile))) ||
            (d->caps && !(c->caps = aj_strv_copy(d->caps))))
                return -ENOMEM;
        return 0;
}

static int parse_case(Where *w, const AjEvalSuite *s, const AjEvalCase *defaults, json_t *v, AjEvalCase *c)
{
        static const char *const keys[] = { "name",    "description", "command", "run",    "fixture",
                                            "profile", "caps",        "timeout", "expect", NULL };
        if (!json_is_object(v))
                return fail(w, "expected an object, got %s", type_name(v));
        int r = check_keys(w, v, keys);
        if (r < 0)
                return r;
        if ((r = copy_defaults(defaults, c)) < 0)
                return r;
        json_t *name = json_object_get(v, "name");
        if (!name)
                return fail(w, "\"name\" is required");
        push_key(w, "name");
        if ((r = dup_string(w, name, AJ_EVAL_MAX_NAME, &c->name)) < 0)
                return r;
        for (size_t i = 0; i < (size_t)(c - s->cases); i++)
                if (streq(s->cases[i].name, c->name))
                        return fail(w, "case \"%s\" is already cases[%zu]", c->name, i);
        pop(w);
        json_t *desc = json_object_get(v, "description");
        if (desc && !json_is_string(desc)) {
                push_key(w, "description");
                return fail(w, "expected a string, got %s", type_name(desc));
        }
        json_t *cmd = json_object_get(v, "command"), *run = json_object_get(v, "run");
        if (!!cmd + !!run != 1)
                return fail(w, "give exactly one of \"command\" (an argv) and \"run\" (a recorded run)");
        if (cmd) {
                push_key(w, "command");
                c->source = AJ_EVAL_SOURCE_COMMAND;
                if ((r = parse_argv(w, cmd, &c->argv)) < 0)
                        return r;
                pop(w);
        } else {
                push_key(w, "run");
                c->source = AJ_EVAL_SOURCE_RECORDED;
                if ((r = dup_string(w, run, 128, &c->recorded_run)) < 0)
                        return r;
                if (!aj_eval_source_supported(c->source))
                        return fail(w, "a recorded run as a case's source needs 'agentjail replay', "
                                       "which this build does not have; use \"command\"");
                pop(w);
        }
        if ((r = parse_common(w, s, v, c)) < 0)
                return r;
        json_t *expect = json_object_get(v, "expect");
        if (expect) {
                push_key(w, "expect");
                if ((r = parse_expect(w, expect, c)) < 0)
                        return r;
                pop(w);
        }
        return 0;
}

static int parse_root(Where *w, AjEvalSuite *s, json_t *root)
{
        static const char *const keys[] = { "name", "description", "defaults", "cases", NULL };
        static const char *const default_keys[] = { "fixture", "profile", "caps", "timeout", NULL };
        if (!json_is_object(root))
                return fail(w, "a suite is a JSON object with \"cases\"");
        int r = check_keys(w, root, keys);
        if (r < 0)
                return r;
        json_t *name = json_object_get(root, "name");
        if (name) {
                push_key(w, "name");
                free(s->name);
                s->name = NULL;
                if ((r = dup_string(w, name, AJ_EVAL_MAX_NAME, &s->name)) < 0)
                        return r;
                pop(w);
        }
        json_t *desc = json_object_get(root, "description");
        if (desc && !json_is_string(desc)) {
                push_key(w, "description");
                return fail(w, "expected a string, got %s", type_name(desc));
        }
        _cleanup_(case_done) AjEvalCase defaults = { .timeout_ns = AJ_EVAL_DEFAULT_TIMEOUT_NS };
        json_t *d = json_object_get(root, "defaults");
        if (d) {
                push_key(w, "defaults");
                if (!json_is_object(d))
                        return fail(w, "expected an object, got %s", type_name(d));
                if ((r = check_keys(w, d, default_keys)) < 0 || (r = parse_common(w, s, d, &defaults)) < 0)
                        return r;
                pop(w);
        }
        json_t *cases = json_object_get(root, "cases");
        if (!cases)
                return fail(w, "\"cases\" is required");
        push_key(w, "cases");
        if (!json_is_array(cases) || json_array_size(cases) == 0)
                return fail(w, "expected a non-empty array of cases");
        if (json_array_size(cases) > AJ_EVAL_MAX_CASES)
                return fail(w, "more than %d cases", AJ_EVAL_MAX_CASES);
        s->cases = calloc(json_array_size(cases), sizeof(AjEvalCase));
        if (!s->cases)
                return -ENOMEM;
        size_t i;
        json_t *c;
        json_array_foreach (cases, i, c) {
                push_index(w, i);
                s->n_cases = i + 1;
                if ((r = parse_case(w, s, &defaults, c, &s->cases[i])) < 0)
                        return r;
                pop(w);
        }
        pop(w);
        return 0;
}

void aj_eval_suite_free(AjEvalSuite *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n_cases; i++)
                case_done(&s->cases[i]);
        free(s->cases);
        free(s->file);
        free(s->dir);
        free(s->text);
        free(s->name);
        free(s);
}

static char *default_name(const char *file)
{
        _cleanup_free_ char *copy = strdup(file);
        if (!copy)
                return NULL;
        char *base = basename(copy);
        size_t n = strlen(base);
        if (n > 5 && streq(base + n - 5, ".json"))
                base[n - 5] = 0;
        char buf[AJ_EVAL_MAX_NAME + 4] = "";
        aj_append_printable(buf, sizeof(buf), base, AJ_EVAL_MAX_NAME);
        return strdup(buf[0] ? buf : "suite");
}

/* `dir`: the directory relative paths start in (NULL: the file's, as written). */
static int suite_parse(const char *file, const char *dir, const char *text, AjEvalSuite **ret, AjError *err)
{
        _cleanup_(aj_eval_suite_freep) AjEvalSuite *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        _cleanup_free_ char *copy = strdup(file);
        if (!copy || !(s->file = strdup(file)) || !(s->text = strdup(text)) ||
            !(s->dir = strdup(dir ?: dirname(copy))) || !(s->name = default_name(file)))
                return -ENOMEM;
        json_error_t je;
        json_auto_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
        if (!root)
                return aj_error_set(err, -EINVAL, "%s:%d:%d: invalid JSON: %s", file, je.line, je.column, je.text);
        Where w = { .file = s->file, .text = s->text, .err = err };
        int r = parse_root(&w, s, root);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int aj_eval_suite_parse(const char *file, const char *text, AjEvalSuite **ret, AjError *err)
{
        return suite_parse(file, NULL, text, ret, err);
}

int aj_eval_suite_load(const char *file, AjEvalSuite **ret, AjError *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = aj_read_file(file, AJ_EVAL_MAX_SUITE_BYTES, &text, &len);
        if (r == -EFBIG)
                return aj_error_set(err, r, "%s: larger than %d bytes", file, AJ_EVAL_MAX_SUITE_BYTES);
        if (r < 0)
                return aj_error_set(err, r, "Cannot read '%s': %s", file, strerror(-r));
        if (strlen(text) != len)
                return aj_error_set(err, -EINVAL, "%s: a NUL byte in the text", file);
        /* Relative fixtures and profile paths start in the suite's directory, made absolute
         * here: each case runs elsewhere (in its scratch workspace), where a relative
         * "dir/profile.json" would name the wrong file (one of the fixture's, say). */
        _cleanup_free_ char *copy = strdup(file);
        if (!copy)
                return -ENOMEM;
        _cleanup_free_ char *dir = realpath(dirname(copy), NULL);
        if (!dir) {
                r = -errno;
                return aj_error_set(err, r, "Cannot resolve the directory of '%s': %s", file, strerror(-r));
        }
        return suite_parse(file, dir, text, ret, err);
}

/* ---- compiling the patterns: first where it can be killed (eval-bounded.h) ---- */

#define RE_FLAGS (REG_EXTENDED | REG_NOSUB | REG_NEWLINE)

/* The child compiles every pattern in order and keeps them all (the parent will hold them
 * all): 'c' before each, then 'k', or 'e' and the error code, and stops at an error. */
static void compile_body(void *arg, int out)
{
        const AjEvalSuite *s = arg;
        for (size_t i = 0; i < s->n_cases; i++)
                for (size_t j = 0; j < s->cases[i].n_files; j++) {
                        const AjEvalFileCheck *f = &s->cases[i].files[j];
                        if (f->kind != AJ_EVAL_FILE_MATCHES)
                                continue;
                        aj_eval_bounded_write(out, "c", 1);
                        regex_t re;
                        int rc = regcomp(&re, f->text, RE_FLAGS);
                        char rec[2] = { rc == 0 ? 'k' : 'e', (char)(rc & 0x7f) };
                        aj_eval_bounded_write(out, rec, rc == 0 ? 1 : 2);
                        if (rc != 0)
                                return;
                }
}

typedef struct {
        size_t started, compiled; /* patterns begun, patterns compiled */
        int error;                /* regcomp()'s code for pattern `started` - 1; 0 none */
        bool want_code;
} Compiling;

static void compile_answers(void *ctx, const char *b, size_t n)
{
        Compiling *k = ctx;
        for (size_t i = 0; i < n; i++) {
                if (k->want_code) {
                        k->error = b[i] ? b[i] : REG_ESPACE;
                        k->want_code = false;
                } else if (b[i] == 'c')
                        k->started++;
                else if (b[i] == 'k')
                        k->compiled++;
                else if (b[i] == 'e')
                        k->want_code = true;
        }
}

/* "FILE:LINE:COL: cases[I].expect.files[J].matches: message" */
_printf_(5, 6) static int pattern_error(const AjEvalSuite *s, AjError *err, size_t i, size_t j, const char *fmt, ...)
{
        Where w = { .file = s->file, .text = s->text, .err = err };
        push_key(&w, "cases");
        push_index(&w, i);
        push_key(&w, "expect");
        push_key(&w, "files");
        push_index(&w, j);
        push_key(&w, "matches");
        va_list ap;
        va_start(ap, fmt);
        int r = vfail(&w, AJ_JSON_AT_VALUE, fmt, ap);
        va_end(ap);
        return r;
}

static int invalid_pattern(const AjEvalSuite *s, AjError *err, size_t i, size_t j, int rc)
{
        char why[160];
        regerror(rc, NULL, why, sizeof(why));
        return pattern_error(s, err, i, j, "not a valid regular expression: %s", why);
}

/* The suite's n-th "matches" check (from 1) in *ret_i, *ret_j when there is one; returns
 * how many there are. */
static size_t find_pattern(const AjEvalSuite *s, size_t n, size_t *ret_i, size_t *ret_j)
{
        size_t count = 0;
        for (size_t i = 0; i < s->n_cases; i++)
                for (size_t j = 0; j < s->cases[i].n_files; j++)
                        if (s->cases[i].files[j].kind == AJ_EVAL_FILE_MATCHES && ++count == n) {
                                *ret_i = i;
                                *ret_j = j;
                        }
        return count;
}

int aj_eval_suite_compile(AjEvalSuite *s, AjError *err)
{
        Compiling k = { 0 };
        AjEvalBoundedEnd end = aj_eval_bounded(compile_body, s, compile_answers, &k);
        if (end == AJ_EVAL_BOUNDED_INTERRUPTED)
                return aj_error_set(err, -EINTR, "%s: interrupted while its patterns were compiled", s->file);
        /* Where it stopped: the pattern it had begun last. */
        size_t i = 0, j = 0, total = find_pattern(s, k.started, &i, &j);
        if (k.started > 0 && k.error == REG_ESPACE)
                return pattern_error(s, err, i, j,
                                     "this regular expression is refused: compiling it needs more than %ld MiB",
                                     AJ_EVAL_BOUNDED_MAX_BYTES >> 20);
        if (k.started > 0 && k.error)
                return invalid_pattern(s, err, i, j, k.error);
        if (k.started > 0 && k.compiled < k.started && end == AJ_EVAL_BOUNDED_LIMIT)
                return pattern_error(s, err, i, j,
                                     "this regular expression is refused: compiling it (after the patterns before "
                                     "it) needed more than %ld MiB or %d s",
                                     AJ_EVAL_BOUNDED_MAX_BYTES >> 20, AJ_EVAL_BOUNDED_MAX_MS / 1000);
        if (k.compiled != total || k.error)
                return aj_error_set(err, -EIO, "%s: its patterns could not be compiled in a bounded process%s", s->file,
                                    end == AJ_EVAL_BOUNDED_LIMIT ? " (past its bounds)" : "");
        /* Each compiled in the child within the bounds: here too, the same. */
        for (i = 0; i < s->n_cases; i++)
                for (j = 0; j < s->cases[i].n_files; j++) {
                        AjEvalFileCheck *f = &s->cases[i].files[j];
                        if (f->kind != AJ_EVAL_FILE_MATCHES || f->re_compiled)
                                continue;
                        int rc = regcomp(&f->re, f->text, RE_FLAGS);
                        if (rc != 0)
                                return invalid_pattern(s, err, i, j, rc);
                        f->re_compiled = true;
                }
        return 0;
}

int aj_eval_suite_error_at(const AjEvalSuite *s, AjError *err, size_t case_index, const char *key, const char *fmt, ...)
{
        /* At the case's member; one it took from "defaults" is there; else at the case. */
        Where w = { .file = s->file, .text = s->text, .err = err };
        unsigned line, col;
        push_key(&w, "cases");
        push_index(&w, case_index);
        push_key(&w, key);
        AjJsonLocateWhat what = AJ_JSON_AT_VALUE;
        if (aj_json_locate(s->text, w.elem, what, &line, &col) < 0) {
                w.n = 0;
                push_key(&w, "defaults");
                push_key(&w, key);
                if (aj_json_locate(s->text, w.elem, what, &line, &col) < 0) {
                        w.n = 0;
                        push_key(&w, "cases");
                        push_index(&w, case_index);
                        what = AJ_JSON_AT_KEY;
                }
        }
        va_list ap;
        va_start(ap, fmt);
        int r = vfail(&w, what, fmt, ap);
        va_end(ap);
        return r;
}
