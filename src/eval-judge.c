/* SPDX-License-Identifier: Apache-2.0 */
/* A case's assertions against what its run did (the facts src/cli/eval.c gathers). Pure but
 * for the "matches" checks, which run in a child process with bounded memory and time. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentjail/exit-codes.h"
#include "eval-bounded.h"
#include "eval.h"
#include "util/format.h"
#include "util/strv.h"

/* Numbers are equal by value (1 and 1.0); anything else as jansson compares it. */
static bool value_equal(json_t *a, json_t *b)
{
        if (json_is_number(a) && json_is_number(b))
                return json_number_value(a) == json_number_value(b);
        return json_equal(a, b);
}

static bool type_matches(const char *pattern, const char *type)
{
        size_t n = strlen(pattern);
        if (n > 0 && pattern[n - 1] == '*')
                return strncmp(pattern, type, n - 1) == 0;
        return streq(pattern, type);
}

bool aj_eval_event_matches(const AjEvalEventCheck *chk, json_t *ev)
{
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (!type || !type_matches(chk->type, type))
                return false;
        const char *key;
        json_t *want;
        json_object_foreach (chk->fields, key, want) {
                json_t *got = json_object_get(ev, key);
                if (!got || !value_equal(got, want))
                        return false;
        }
        return true;
}

void aj_eval_count_event(const AjEvalCase *c, json_t *ev, size_t *counts)
{
        for (size_t i = 0; i < c->n_events; i++)
                if (aj_eval_event_matches(&c->events[i], ev))
                        counts[i]++;
}

void aj_eval_verdict_done(AjEvalVerdict *v)
{
        aj_strv_free(v->failures);
        *v = (AjEvalVerdict){};
}

_printf_(2, 3) static int add_failure(AjEvalVerdict *v, const char *fmt, ...)
{
        char *s;
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        return aj_strv_consume(&v->failures, s) < 0 ? -ENOMEM : 0;
}

/* The event check as a person reads it: `tool.verdict with verdict "deny", gen_ai.tool.name "rm"`. */
static void describe_event_check(const AjEvalEventCheck *e, char *buf, size_t size)
{
        buf[0] = 0;
        aj_append_printable(buf, size, e->type, 128);
        const char *key;
        json_t *want;
        bool first = true;
        json_object_foreach (e->fields, key, want) {
                aj_append_printable(buf, size, first ? " with " : ", ", 8);
                first = false;
                aj_append_printable(buf, size, key, 64);
                aj_append_printable(buf, size, " ", 1);
                _cleanup_free_ char *v = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
                aj_append_printable(buf, size, v ? v : "?", 80);
        }
}

/* A case's "matches" checks run in one bounded child (eval-bounded.h): the states glibc's
 * regexec() builds depend on the content, which is the agent's ("(a|b)*a(a|b){20}c"
 * against 1 MiB of a and b took 2.2 GB here). It writes one byte per check as it goes, so
 * the checks before a bound are still judged. */
enum {
        MATCH_NO = 0,
        MATCH_YES = 1,
        MATCH_LIMIT = -1,       /* past a bound */
        MATCH_INTERRUPTED = -2, /* a signal reached the parent meanwhile */
        MATCH_FAILED = -3,      /* the process could not be started or bounded */
        MATCH_UNUSED = -4,      /* not a "matches" check with content */
};

static bool match_wanted(const AjEvalFileCheck *chk, const AjEvalFileFact *f)
{
        return chk->kind == AJ_EVAL_FILE_MATCHES && chk->re_compiled &&
               (f->read_error >= 0 || f->read_error == -ENOENT) && f->exists && f->regular && !f->too_big && f->content;
}

typedef struct {
        const AjEvalCase *c;
        const AjEvalFacts *f;
        signed char *res;
        size_t next, got, want;
} Matching;

static void match_body(void *arg, int out)
{
        const Matching *m = arg;
        for (size_t i = 0; i < m->c->n_files; i++) {
                if (!match_wanted(&m->c->files[i], &m->f->files[i]))
                        continue;
                /* regexec stops at a NUL: a file with one is matched up to it (docs/evals.md). */
                errno = 0;
                int r = regexec(&m->c->files[i].re, m->f->files[i].content, 0, NULL, 0);
                /* An allocation that failed comes back as REG_NOMATCH: errno tells. */
                char b = r == 0 ? 'y' : errno == ENOMEM || r == REG_ESPACE ? 'm' : r == REG_NOMATCH ? 'n' : 'e';
                aj_eval_bounded_write(out, &b, 1);
        }
}

static void match_answers(void *ctx, const char *b, size_t n)
{
        Matching *m = ctx;
        for (size_t j = 0; j < n && m->got < m->want; j++, m->got++) {
                while (m->res[m->next] == MATCH_UNUSED)
                        m->next++;
                m->res[m->next++] = b[j] == 'y'   ? MATCH_YES
                                    : b[j] == 'n' ? MATCH_NO
                                    : b[j] == 'm' ? MATCH_LIMIT
                                                  : MATCH_FAILED;
        }
}

static void match_all(const AjEvalCase *c, const AjEvalFacts *f, signed char *res)
{
        Matching m = { .c = c, .f = f, .res = res };
        for (size_t i = 0; i < c->n_files; i++) {
                res[i] = match_wanted(&c->files[i], &f->files[i]) ? MATCH_FAILED : MATCH_UNUSED;
                m.want += res[i] == MATCH_FAILED;
        }
        if (m.want == 0)
                return;
        AjEvalBoundedEnd end = aj_eval_bounded(match_body, &m, match_answers, &m);
        /* What the checks without an answer get. */
        signed char rest = end == AJ_EVAL_BOUNDED_LIMIT         ? MATCH_LIMIT
                           : end == AJ_EVAL_BOUNDED_INTERRUPTED ? MATCH_INTERRUPTED
                                                                : MATCH_FAILED;
        for (size_t i = m.next; m.got < m.want && i < c->n_files; i++)
                if (res[i] == MATCH_FAILED)
                        res[i] = rest;
}

static int judge_file(const AjEvalFileCheck *chk, const AjEvalFileFact *f, signed char match, size_t i,
                      AjEvalVerdict *v)
{
        char path[160] = "";
        aj_append_printable(path, sizeof(path), chk->path, 120);
        if (f->read_error < 0 && f->read_error != -ENOENT)
                return add_failure(v, "files[%zu] %s: cannot be read: %s", i, path, strerror(-f->read_error));
        switch (chk->kind) {
        case AJ_EVAL_FILE_EXISTS:
                return f->exists ? 0 : add_failure(v, "files[%zu] %s: missing", i, path);
        case AJ_EVAL_FILE_ABSENT:
                return f->exists ? add_failure(v, "files[%zu] %s: present, expected absent", i, path) : 0;
        case AJ_EVAL_FILE_EQUALS:
        case AJ_EVAL_FILE_MATCHES:
                break;
        }
        if (!f->exists)
                return add_failure(v, "files[%zu] %s: missing", i, path);
        if (!f->regular)
                return add_failure(v, "files[%zu] %s: not a regular file", i, path);
        if (f->too_big || !f->content)
                return add_failure(v, "files[%zu] %s: larger than %d bytes, not compared", i, path,
                                   AJ_EVAL_MAX_FILE_BYTES);
        if (chk->kind == AJ_EVAL_FILE_EQUALS) {
                size_t want = strlen(chk->text);
                if (f->len == want && memcmp(f->content, chk->text, want) == 0)
                        return 0;
                /* The agent's bytes, shown escaped (util/format.h: no escape sequences, no
                 * C1 controls, no invalid UTF-8 for a terminal or the JUnit report). */
                char got[64] = "";
                aj_append_printable(got, sizeof(got), f->content, 40);
                return add_failure(v, "files[%zu] %s: content differs (%zu bytes \"%s\", expected %zu bytes)", i, path,
                                   f->len, got, want);
        }
        if (match == MATCH_YES)
                return 0;
        char re[96] = "";
        aj_append_printable(re, sizeof(re), chk->text, 80);
        if (match == MATCH_LIMIT)
                return add_failure(v,
                                   "files[%zu] %s: not matched against /%s/: matching needed more than %d MiB or %d s",
                                   i, path, re, (int)(AJ_EVAL_BOUNDED_MAX_BYTES >> 20), AJ_EVAL_BOUNDED_MAX_MS / 1000);
        if (match == MATCH_INTERRUPTED)
                return add_failure(v, "files[%zu] %s: not matched against /%s/: interrupted", i, path, re);
        if (match != MATCH_NO)
                return add_failure(v, "files[%zu] %s: not matched against /%s/: the matching process failed", i, path,
                                   re);
        return add_failure(v, "files[%zu] %s: does not match /%s/", i, path, re);
}

static int judge_event(const AjEvalEventCheck *chk, size_t got, size_t i, AjEvalVerdict *v)
{
        char what[512];
        describe_event_check(chk, what, sizeof(what));
        if (chk->absent)
                return got == 0 ? 0 : add_failure(v, "events[%zu]: %zu %s, expected none", i, got, what);
        if (chk->count >= 0)
                return got == (size_t)chk->count
                               ? 0
                               : add_failure(v, "events[%zu]: %zu %s, expected %" PRId64, i, got, what, chk->count);
        return got > 0 ? 0 : add_failure(v, "events[%zu]: no %s", i, what);
}

static void format_number(double d, char *buf, size_t size)
{
        if (d == (double)(int64_t)d && d < 1e15)
                snprintf(buf, size, "%" PRId64, (int64_t)d);
        else
                snprintf(buf, size, "%.6g", d);
}

static int judge_usage(const AjEvalBound *b, AjEvalUsageKey k, json_t *meters, AjEvalVerdict *v)
{
        const char *name = aj_eval_usage_name(k);
        json_t *used = json_object_get(json_object_get(meters, name), "used");
        if (!json_is_number(used))
                return add_failure(v, "usage.%s: the run recorded no such meter", name);
        double u = json_number_value(used);
        char got[32], lim[32];
        format_number(u, got, sizeof(got));
        if (b->has_max && u > b->max) {
                format_number(b->max, lim, sizeof(lim));
                return add_failure(v, "usage.%s: %s used, at most %s allowed", name, got, lim);
        }
        if (b->has_min && u < b->min) {
                format_number(b->min, lim, sizeof(lim));
                return add_failure(v, "usage.%s: %s used, at least %s expected", name, got, lim);
        }
        return 0;
}

/* The statuses agentjail gives when it acted, and the run.json exit.reason each needs to be its
 * own: 123 when it killed the run (a breach, `agentjail kill`), 125 when it refused it (no run
 * made: no record), 137 and 143 when its wall limit's SIGKILL or SIGTERM, or its memory cap's
 * OOM kill, ended the command. The command may give any of them itself: `exit 123` passed
 * "a tighter cap stops the run" (attacker review 19), `kill -KILL $$` "the wall limit stops the
 * run" and `exit 123` after the wall limit's SIGTERM (reason "wall-limit", which is not
 * "exited") a kill assertion (attacker review 26). So each needs its own reason, named; a
 * status without one here is the command's to give. NULL: not one of agentjail's. */
static const char *const *agentjails_reasons(int status)
{
        static const char *const killed[] = { "killed", NULL };
        static const char *const refused[] = { "launcher-error", NULL };
        static const char *const sigkill[] = { "wall-limit", "oom", NULL };
        static const char *const sigterm[] = { "wall-limit", NULL };
        switch (status) {
        case AJ_EXIT_KILLED:
                return killed;
        case AJ_EXIT_LAUNCHER:
                return refused;
        case AJ_EXIT_SIGNAL_BASE + SIGKILL:
                return sigkill;
        case AJ_EXIT_SIGNAL_BASE + SIGTERM:
                return sigterm;
        default:
                return NULL;
        }
}

static bool agentjails_own(const AjEvalFacts *f)
{
        const char *const *reasons = agentjails_reasons(f->exit_status);
        if (!reasons)
                return true;
        if (!f->exit_reason) /* no record: only a run agentjail refused before making one */
                return f->exit_status == AJ_EXIT_LAUNCHER;
        for (; *reasons; reasons++)
                if (streq(*reasons, f->exit_reason))
                        return true;
        return false;
}

static const char *agentjails_act(int status)
{
        switch (status) {
        case AJ_EXIT_LAUNCHER:
                return "agentjail's refusal";
        case AJ_EXIT_SIGNAL_BASE + SIGTERM:
                return "agentjail's wall limit";
        default:
                return "agentjail's kill";
        }
}

int aj_eval_judge(const AjEvalCase *c, const AjEvalFacts *f, AjEvalVerdict *ret)
{
        AjEvalVerdict v = {};
        int r = 0;
        v.n_checked++;
        if (f->timed_out) {
                char d[32];
                r = add_failure(&v, "timed out after %s", aj_format_duration(f->timeout_ns, d, sizeof(d)));
        } else if (f->exit_status != c->exit_status)
                r = add_failure(&v, "exit status %d, expected %d", f->exit_status, c->exit_status);
        else if (!agentjails_own(f)) {
                const char *reason = f->exit_reason ? f->exit_reason : "no exit recorded";
                if (streq(reason, "signaled"))
                        r = add_failure(&v,
                                        "exit status %d is the command's own death by signal %d (run.json: %s), not %s",
                                        f->exit_status, f->exit_status - AJ_EXIT_SIGNAL_BASE, reason,
                                        agentjails_act(f->exit_status));
                else
                        r = add_failure(&v, "exit status %d is the command's own (run.json: %s), not %s",
                                        f->exit_status, reason, agentjails_act(f->exit_status));
        }
        signed char *matched = c->n_files ? malloc(c->n_files) : NULL;
        if (c->n_files && !matched)
                r = -ENOMEM;
        else
                match_all(c, f, matched);
        for (size_t i = 0; r >= 0 && i < c->n_files; i++, v.n_checked++)
                r = judge_file(&c->files[i], &f->files[i], matched[i], i, &v);
        free(matched);
        for (size_t i = 0; r >= 0 && i < c->n_events; i++, v.n_checked++)
                r = judge_event(&c->events[i], f->event_counts[i], i, &v);
        for (AjEvalUsageKey k = 0; r >= 0 && k < _AJ_EVAL_USAGE_MAX; k++) {
                if (!c->usage[k].has_min && !c->usage[k].has_max)
                        continue;
                v.n_checked++;
                r = judge_usage(&c->usage[k], k, f->meters, &v);
        }
        if (r < 0) {
                aj_eval_verdict_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

int aj_eval_overlay_budget(const AjWsChange *v, size_t n, uint64_t *ret_total)
{
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
                if (v[i].skipped || v[i].type != S_IFREG)
                        continue;
                total = v[i].allocated > UINT64_MAX - total ? UINT64_MAX : total + v[i].allocated;
        }
        *ret_total = total;
        return total > AJ_EVAL_MAX_OVERLAY_BYTES ? -EFBIG : 0;
}
