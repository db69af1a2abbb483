/* SPDX-License-Identifier: Apache-2.0 */
/* A case's assertions against what its run did (the facts src/cli/eval.c gathers). Pure but
 * for the "matches" checks, which run in a child process with bounded memory and time. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval.h"
#include "util/clock.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/process.h"
#include "util/strv.h"
#include "util/syscalls.h"

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
 * 2.2 GB here. So a case's "matches" checks run in one child process that dies with its
 * parent, which kills it once it is AJ_EVAL_MATCH_MAX_BYTES resident past what the parent
 * had at the fork (its /proc statm, read every few ms) or when the case's
 * AJ_EVAL_MATCH_MAX_MS have passed; the kernel backs both (RLIMIT_AS four times that
 * much, RLIMIT_CPU). A resident bound, not RLIMIT_AS alone: regexec() answers "no match"
 * when an allocation fails, and ASan's allocator has its address space reserved from the
 * start. The child writes one byte per check to a pipe as it goes, so the checks before a
 * bound are still judged. */
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
        return chk->kind == AJ_EVAL_FILE_MATCHES && (f->read_error >= 0 || f->read_error == -ENOENT) && f->exists &&
               f->regular && !f->too_big && f->content;
}

/* Field `field` (0: size, 1: resident) of a statm file, in bytes; -1 if unreadable. */
static long statm_bytes(int fd, int field)
{
        char buf[128];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        long v[2] = { 0, 0 };
        if (sscanf(buf, "%ld %ld", &v[0], &v[1]) != 2 || v[field] <= 0)
                return -1;
        return v[field] * sysconf(_SC_PAGESIZE);
}

static long statm_of(const char *path, int field)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        long b = statm_bytes(fd, field);
        close(fd);
        return b;
}

_noreturn_ static void matcher_child(const AjEvalCase *c, const AjEvalFacts *f, int out, pid_t parent)
{
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(3);
        /* The caller's handlers (eval's SIGINT, SIGTERM) are not this process's. */
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXCPU };
        for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
                signal(sigs[i], SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        long vm = statm_of("/proc/self/statm", 0);
        rlim_t secs = (AJ_EVAL_MATCH_MAX_MS + 999) / 1000, more = 4 * (rlim_t)AJ_EVAL_MATCH_MAX_BYTES;
        struct rlimit as = { (rlim_t)vm + more, (rlim_t)vm + more }, cpu = { secs, secs + 1 }, core = { 0, 0 };
        if (vm < 0 || setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_AS, &as) < 0 ||
            setrlimit(RLIMIT_CPU, &cpu) < 0)
                _exit(4);
        for (size_t i = 0; i < c->n_files; i++) {
                if (!match_wanted(&c->files[i], &f->files[i]))
                        continue;
                /* regexec stops at a NUL: a file with one is matched up to it (docs/evals.md). */
                errno = 0;
                int r = regexec(&c->files[i].re, f->files[i].content, 0, NULL, 0);
                /* An allocation that failed comes back as REG_NOMATCH: errno tells. */
                char b = r == 0 ? 'y' : errno == ENOMEM || r == REG_ESPACE ? 'm' : r == REG_NOMATCH ? 'n' : 'e';
                ssize_t w;
                do
                        w = write(out, &b, 1);
                while (w < 0 && errno == EINTR);
                if (w != 1)
                        _exit(5);
        }
        _exit(0);
}

static void match_all(const AjEvalCase *c, const AjEvalFacts *f, signed char *res)
{
        size_t want = 0;
        for (size_t i = 0; i < c->n_files; i++) {
                res[i] = match_wanted(&c->files[i], &f->files[i]) ? MATCH_FAILED : MATCH_UNUSED;
                want += res[i] == MATCH_FAILED;
        }
        int p[2];
        if (want == 0 || pipe2(p, O_CLOEXEC) < 0)
                return;
        pid_t parent = getpid();
        long base = statm_of("/proc/self/statm", 1);
        if (base < 0) {
                close(p[0]);
                close(p[1]);
                return; /* no bound without it: every check fails, "the matching process failed" */
        }
        int pidfd = -1;
        pid_t pid = aj_fork_pidfd(&pidfd);
        if (pid == 0) {
                close(p[0]);
                matcher_child(c, f, p[1], parent);
        }
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                return;
        }
        uint64_t deadline = aj_now_monotonic_ns() + (uint64_t)AJ_EVAL_MATCH_MAX_MS * 1000000ULL;
        size_t next = 0, got = 0;
        signed char rest = MATCH_FAILED; /* what the checks without an answer get */
        char statm[64];
        snprintf(statm, sizeof(statm), "/proc/%d/statm", (int)pid);
        int mfd = open(statm, O_RDONLY | O_CLOEXEC);
        while (mfd >= 0 && got < want) {
                uint64_t now = aj_now_monotonic_ns();
                if (now >= deadline) {
                        rest = MATCH_LIMIT;
                        break;
                }
                long rss = statm_bytes(mfd, 1);
                if (rss > base + AJ_EVAL_MATCH_MAX_BYTES) {
                        rest = MATCH_LIMIT;
                        break;
                }
                /* Gone before answering: read what it wrote, then its status says why. */
                struct pollfd pf = { .fd = p[0], .events = POLLIN };
                int n = poll(&pf, 1, 4);
                if (n < 0 && errno == EINTR) {
                        rest = MATCH_INTERRUPTED;
                        break;
                }
                if (n <= 0)
                        continue; /* the deadline is checked above */
                char buf[256];
                ssize_t k = read(p[0], buf, sizeof(buf));
                if (k < 0 && errno == EINTR) {
                        rest = MATCH_INTERRUPTED;
                        break;
                }
                if (k <= 0)
                        break; /* it ended early: its status says why */
                for (ssize_t j = 0; j < k && got < want; j++, got++) {
                        while (res[next] == MATCH_UNUSED)
                                next++;
                        res[next++] = buf[j] == 'y'   ? MATCH_YES
                                      : buf[j] == 'n' ? MATCH_NO
                                      : buf[j] == 'm' ? MATCH_LIMIT
                                                      : MATCH_FAILED;
                }
        }
        close(p[0]);
        if (mfd >= 0)
                close(mfd);
        (void)sys_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        siginfo_t si = { 0 };
        int w;
        do
                w = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
        while (w < 0 && errno == EINTR);
        close(pidfd);
        /* Killed by the CPU limit, or out of address space before it could answer. */
        if (rest == MATCH_FAILED && w == 0 &&
            ((si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) && si.si_status == SIGXCPU))
                rest = MATCH_LIMIT;
        for (size_t i = next; got < want && i < c->n_files; i++)
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
        if (match == MATCH_YES)
                return 0;
        char re[96] = "";
        aj_append_printable(re, sizeof(re), chk->text, 80);
        if (match == MATCH_LIMIT)
                return add_failure(v,
                                   "files[%zu] %s: not matched against /%s/: matching needed more than %d MiB or %d s",
                                   i, path, re, (int)(AJ_EVAL_MATCH_MAX_BYTES >> 20), AJ_EVAL_MATCH_MAX_MS / 1000);
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
