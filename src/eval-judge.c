/* SPDX-License-Identifier: Apache-2.0 */
/* A case's assertions against what its run did (the facts src/cli/eval.c gathers). Pure but
 * for a "matches" check, which runs in a child process with bounded memory and time. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* glibc's regexec() caches the automaton states it meets, and how many it meets depends on
 * the content, which is the agent's: "(a|b)*a(a|b){20}c" against 1 MiB of a and b took
 * 2.2 GB here. So the match runs in a child, killed past AJ_EVAL_MATCH_MAX_RSS resident
 * or AJ_EVAL_MATCH_MAX_MS: 1 matched, 0 did not, -E2BIG over a bound, else -errno. */
static long rss_bytes(pid_t pid)
{
        char p[64], buf[128];
        snprintf(p, sizeof(p), "/proc/%d/statm", (int)pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        long size = 0, resident = 0;
        if (sscanf(buf, "%ld %ld", &size, &resident) != 2)
                return -1;
        return resident * sysconf(_SC_PAGESIZE);
}

static int match_bounded(const regex_t *re, const char *content)
{
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(regexec(re, content, 0, NULL, 0) == 0 ? 0 : 1);
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int status = 0;
        for (long wait_ms = 1;; wait_ms = wait_ms < 8 ? wait_ms * 2 : 8) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR) {
                        int r = -errno;
                        kill(pid, SIGKILL);
                        (void)waitpid(pid, NULL, 0);
                        return r;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
                if (ms > AJ_EVAL_MATCH_MAX_MS || rss_bytes(pid) > AJ_EVAL_MATCH_MAX_RSS) {
                        kill(pid, SIGKILL);
                        (void)waitpid(pid, NULL, 0);
                        return -E2BIG;
                }
                (void)poll(NULL, 0, (int)wait_ms);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) <= 1)
                return WEXITSTATUS(status) == 0;
        return -ECHILD;
}

static int judge_file(const AjEvalFileCheck *chk, const AjEvalFileFact *f, size_t i, AjEvalVerdict *v)
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
                /* The agent's bytes, shown: printable ASCII only (no escape sequences, no
                 * 8-bit controls for a terminal). */
                char got[64] = "";
                aj_append_printable(got, sizeof(got), f->content, 40);
                for (char *p = got; *p; p++)
                        if ((unsigned char)*p >= 0x80)
                                *p = '?';
                return add_failure(v, "files[%zu] %s: content differs (%zu bytes \"%s\", expected %zu bytes)", i, path,
                                   f->len, got, want);
        }
        /* regexec stops at a NUL: a file with one is matched up to it (said so in docs/evals.md). */
        int m = match_bounded(&chk->re, f->content);
        if (m == 1)
                return 0;
        char re[96] = "";
        aj_append_printable(re, sizeof(re), chk->text, 80);
        if (m == -E2BIG)
                return add_failure(v,
                                   "files[%zu] %s: not matched against /%s/: matching needed more than %d MiB or %d s",
                                   i, path, re, (int)(AJ_EVAL_MATCH_MAX_RSS >> 20), AJ_EVAL_MATCH_MAX_MS / 1000);
        if (m < 0)
                return add_failure(v, "files[%zu] %s: not matched against /%s/: %s", i, path, re,
                                   m == -ECHILD ? "the matching process failed" : strerror(-m));
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
        for (size_t i = 0; r >= 0 && i < c->n_files; i++, v.n_checked++)
                r = judge_file(&c->files[i], &f->files[i], i, &v);
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
