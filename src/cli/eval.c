/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail eval SUITE.json`: each case in a fresh jail over a scratch copy of its fixture,
 * up to -j at once, then its assertions (src/eval*.c, pure) against what the run left: the
 * exit status, the workspace, the chain and run.json's meters. Each case is this binary's
 * own `agentjail run` as a child process, so it is a run like any other (recorded, listed
 * by ps, inspected, cleaned up by its supervisor); its run is found by the supervisor's pid
 * in run.json. Not the supervisor: this process may fork and block.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/eval-internal.h"
#include "cli/verb.h"
#include "cli/verbs.h"
#include "control.h"
#include "eval.h"
#include "events.h"
#include "mount.h"
#include "profile.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/open-under.h"
#include "util/path.h"
#include "util/strv.h"
#include "util/syscalls.h"
#include "workspace.h"

#define EVAL_USAGE "agentjail eval SUITE.json [-j N] [--junit FILE] [--json] [--keep]"
#define EVAL_HELP                                                                              \
        "Run an eval suite (docs/evals.md): each case's command in a jail of its own\n"        \
        "(`agentjail run`, with the case's profile and caps) over a fresh scratch copy of\n"   \
        "its workspace fixture (a directory, or a tarball), then its assertions: the exit\n"   \
        "status, files in the workspace after, events in the run's chain, usage from the\n"    \
        "meters. Prints a table (case, result, time, run, reason of the first failed\n"        \
        "assertion), with a progress line on a terminal.\n"                                    \
        "\n"                                                                                   \
        "Options:\n"                                                                           \
        "  -j, --jobs N       run up to N cases at once (default 1, at most 64)\n"             \
        "      --junit FILE   write the results as JUnit XML to FILE\n"                        \
        "      --json         print the results as one JSON document instead of the table\n"   \
        "      --keep         keep each case's scratch workspace (the table says where)\n"     \
        "\n"                                                                                   \
        "Exit status: 0 every case passed, 1 a case failed or could not run, 2 usage error,\n" \
        "125 the suite is not valid (FILE:LINE:COL: the key) or a fixture is missing."

#define EXIT_BAD_SUITE 125
/* After a case's timeout: SIGTERM (forwarded to the command), then agentjail's own kill over
 * the control socket, then SIGKILL to the supervisor (its watchdog cleans up after it). */
#define KILL_AFTER_TERM_MS 5000
#define SIGKILL_AFTER_TERM_MS 15000
#define PROGRESS_TICK_MS 1000
#define EVAL_LOG_MAX (1024 * 1024)

enum { OPT_JUNIT = 0x200, OPT_KEEP };

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static void slot_done(Slot *s)
{
        if (s->pidfd >= 0)
                close(s->pidfd);
        if (s->out_fd >= 0)
                close(s->out_fd);
        if (s->log_fd >= 0)
                close(s->log_fd);
        if (s->dir_fd >= 0)
                close(s->dir_fd);
        if (s->ws_fd >= 0)
                close(s->ws_fd);
        free(s->dir);
        free(s->ws);
        free(s->log);
        *s = (Slot){ .pidfd = -1, .out_fd = -1, .log_fd = -1, .dir_fd = -1, .ws_fd = -1 };
}

static uint64_t realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- processes ---- */

/* fork + exec argv in the directory open at cwd_fd (-1: ours) with stdin /dev/null and
 * stdout/stderr to log_fd; the pid. */
static int spawn(char *const *argv, int cwd_fd, int log_fd, const char *exe, const char *chain, pid_t *ret)
{
        _cleanup_close_ int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* The child's signals as a shell would leave them (ours catch INT and TERM). */
                signal(SIGINT, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                if ((cwd_fd >= 0 && fchdir(cwd_fd) < 0) || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
                    dup2(log_fd, 2) < 0 ||
                    (chain ? setenv(AJ_EVAL_PROFILE_ENV, chain, 1) : unsetenv(AJ_EVAL_PROFILE_ENV)) < 0)
                        _exit(127);
                execv(exe ? exe : argv[0], argv);
                if (!exe)
                        execvp(argv[0], argv);
                aj_fprintf_printable(stderr, "agentjail eval: cannot run '%s': %s", argv[0], strerror(errno));
                fputc('\n', stderr);
                _exit(127);
        }
        *ret = pid;
        return 0;
}

static int wait_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* A helper program (cp, tar) to the end, in the directory open at cwd_fd; its exit status or
 * -errno. */
static int run_helper(char *const *argv, int cwd_fd, int log_fd)
{
        pid_t pid;
        int r = spawn(argv, cwd_fd, log_fd, NULL, NULL, &pid);
        if (r < 0)
                return r;
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return wait_status(st);
}

/* For the reason (see eval-internal.h). */
char *eval_last_output_line(const Slot *s)
{
        char buf[sizeof(s->tail) + 1];
        size_t n = s->tail_len;
        memcpy(buf, s->tail, n);
        buf[n] = 0;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = 0;
        char *line = strrchr(buf, '\n');
        char out[256] = "";
        aj_append_printable(out, sizeof(out), line ? line + 1 : buf, 200);
        for (char *p = out; *p; p++) /* the command's bytes: printable ASCII only */
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        return out[0] ? strdup(out) : NULL;
}

/* What the pipe has now (non-blocking), into the log (bounded) and the tail; EOF closes it. */
static void drain_output(Slot *s)
{
        char buf[16384];
        while (s->out_fd >= 0) {
                ssize_t n = read(s->out_fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n == 0 || errno != EAGAIN) {
                                close(s->out_fd);
                                s->out_fd = -1;
                        }
                        return;
                }
                if (s->log_fd >= 0 && s->logged < EVAL_LOG_MAX) {
                        size_t w = (size_t)n < EVAL_LOG_MAX - s->logged ? (size_t)n : EVAL_LOG_MAX - s->logged;
                        if (aj_write_all(s->log_fd, buf, w) < 0) {
                                close(s->log_fd);
                                s->log_fd = -1;
                        }
                        s->logged += w;
                }
                size_t keep = (size_t)n < sizeof(s->tail) ? (size_t)n : sizeof(s->tail);
                size_t old = s->tail_len + keep > sizeof(s->tail) ? sizeof(s->tail) - keep : s->tail_len;
                memmove(s->tail, s->tail + s->tail_len - old, old);
                memcpy(s->tail + old, buf + n - keep, keep);
                s->tail_len = old + keep;
        }
}

/* ---- the case's workspace ---- */

static bool is_tarball(const char *p)
{
        static const char *const ext[] = { ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst" };
        size_t n = strlen(p);
        for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
                size_t e = strlen(ext[i]);
                if (n > e && streq(p + n - e, ext[i]))
                        return true;
        }
        return false;
}

/* The fixture into the empty workspace open at ws_fd (the helper's cwd: "."): the fixture is
 * only read. Owners are not kept (the workspace's files are the invoker's, which the jail maps
 * to the agent); modes and links are. */
static int copy_fixture(const char *fixture, int ws_fd, int log_fd, char **ret_error)
{
        struct stat st;
        if (stat(fixture, &st) < 0)
                return aj_asprintf(ret_error, "fixture '%s': %s", fixture, strerror(errno)) < 0 ? -ENOMEM : -errno;
        _cleanup_free_ char *src = NULL;
        int r;
        const char *tool;
        if (S_ISDIR(st.st_mode)) {
                if (!(src = aj_path_join(fixture, ".")))
                        return -ENOMEM;
                tool = "cp";
                r = run_helper((char *const[]){ "cp", "-R", "--no-dereference", "--preserve=mode,timestamps,links",
                                                "--", src, ".", NULL },
                               ws_fd, log_fd);
        } else if (S_ISREG(st.st_mode)) {
                tool = "tar";
                r = run_helper((char *const[]){ "tar", "-x", "--no-same-owner", "-f", (char *)fixture, "-C", ".",
                                                NULL },
                               ws_fd, log_fd);
        } else
                return aj_asprintf(ret_error, "fixture '%s': neither a directory nor a tarball", fixture) < 0 ? -ENOMEM
                                                                                                              : -EINVAL;
        if (r == 0)
                return 0;
        if (r < 0)
                return aj_asprintf(ret_error, "fixture: cannot run %s: %s", tool, strerror(-r)) < 0 ? -ENOMEM : r;
        /* What the tool said last (it wrote to the case's log, opened for reading too). */
        Slot said = { .out_fd = -1, .log_fd = -1 };
        off_t end = lseek(log_fd, 0, SEEK_END);
        off_t from = end > (off_t)sizeof(said.tail) ? end - (off_t)sizeof(said.tail) : 0;
        ssize_t n = end > 0 ? pread(log_fd, said.tail, sizeof(said.tail), from) : 0;
        said.tail_len = n > 0 ? (size_t)n : 0;
        _cleanup_free_ char *line = eval_last_output_line(&said);
        return aj_asprintf(ret_error, "fixture: %s exited %d%s%s", tool, r, line ? ": " : "", line ? line : "") < 0
                       ? -ENOMEM
                       : -EIO;
}

/* ---- starting and finishing cases ---- */

static char *run_name(const char *case_name)
{
        char buf[65] = "";
        snprintf(buf, sizeof(buf), "%s", case_name);
        for (char *p = buf; *p; p++)
                if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = '-';
        return strdup(buf);
}

/* The case's --profile and --caps, as both `run` and `replay` take them. */
static int push_profile_and_caps(char ***argv, const AjEvalCase *c)
{
        int r = 0;
        if (c->profile) {
                r = r ?: aj_strv_push(argv, "--profile");
                r = r ?: aj_strv_push(argv, c->profile);
        }
        for (char **cap = c->caps; cap && *cap; cap++) {
                r = r ?: aj_strv_push(argv, "--cap");
                r = r ?: aj_strv_push(argv, *cap);
        }
        return r;
}

/* A recorded run's case: `agentjail replay RUN` (docs/replay.md), its scratch workspace kept
 * inside the case's dir (judged, then removed with it). The profile and caps apply to the
 * replay; the model is answered from the recording. */
static int replay_argv(const Eval *e, const AjEvalCase *c, const char *dir, char ***ret)
{
        _cleanup_(aj_strv_freep) char **argv = NULL;
        int r = 0;
        r = r ?: aj_strv_push(&argv, e->self);
        r = r ?: aj_strv_push(&argv, "replay");
        r = r ?: aj_strv_push(&argv, c->recorded_run);
        r = r ?: aj_strv_push(&argv, "--keep");
        r = r ?: aj_strv_push(&argv, "--workdir");
        r = r ?: aj_strv_push(&argv, dir);
        r = r ?: push_profile_and_caps(&argv, c);
        if (r < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(argv);
        return 0;
}

/* `agentjail run` for the case, or `agentjail replay` for a recorded run's. */
static int case_argv(const Eval *e, const AjEvalCase *c, const char *name, const char *dir, char ***ret)
{
        _cleanup_(aj_strv_freep) char **argv = NULL;
        if (c->source == AJ_EVAL_SOURCE_RECORDED)
                return replay_argv(e, c, dir, ret);
        if (c->source != AJ_EVAL_SOURCE_COMMAND)
                return -EOPNOTSUPP; /* refused when the suite was parsed (aj_eval_source_supported) */
        int r = 0;
        r = r ?: aj_strv_push(&argv, e->self);
        r = r ?: aj_strv_push(&argv, "run");
        r = r ?: aj_strv_push(&argv, "--no-tty");
        r = r ?: aj_strv_push(&argv, "--name");
        r = r ?: aj_strv_push(&argv, name);
        r = r ?: push_profile_and_caps(&argv, c);
        r = r ?: aj_strv_push(&argv, "--");
        for (char **a = c->argv; a && *a; a++)
                r = r ?: aj_strv_push(&argv, *a);
        if (r < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(argv);
        return 0;
}

/* "case-N" (from 1), the case's dir in the scratch root, into buf (32 bytes). */
static const char *case_dir_name(size_t index, char *buf)
{
        snprintf(buf, 32, "case-%zu", index + 1);
        return buf;
}

static void remove_scratch(Eval *e, Slot *s)
{
        if (!s->dir)
                return;
        AjEvalResult *res = &e->results[s->index];
        if (e->keep) {
                res->workspace = s->ws ? strdup(s->ws) : NULL;
                return;
        }
        /* In the scratch root as it was made, the case's dir as it was made: emptied through
         * its held fd, its name removed only while it is still that directory. */
        char sub[32];
        int r = s->dir_fd < 0 ? 0 : aj_rm_rf_pinned(e->scratch.fd, case_dir_name(s->index, sub), s->dir_fd);
        if (r < 0) {
                (void)aj_fprintf_printable(stderr, "agentjail eval: cannot remove '%s': %s", s->dir, strerror(-r));
                fputc('\n', stderr);
        }
}

/* The case's scratch dirs, its fixture, its run started; -errno with *ret_error set (NULL: no memory). */
static int prepare_and_spawn(Eval *e, Slot *s, const AjEvalCase *c, char **ret_error)
{
        char sub[32];
        case_dir_name(s->index, sub);
        if (!(s->dir = aj_path_join(e->scratch.path, sub)) || !(s->ws = aj_path_join(s->dir, "workspace")) ||
            !(s->log = aj_path_join(s->dir, "agentjail.log")))
                return -ENOMEM;
        /* In the scratch root as it was made, each made here and opened without following a
         * symlink, then held. */
        int r = aj_scratch_mkdir(e->scratch.fd, sub, 0700, &s->dir_fd);
        if (r >= 0)
                r = aj_scratch_mkdir(s->dir_fd, "workspace", 0755, &s->ws_fd);
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot create '%s': %s", s->ws, strerror(-r));
                return r;
        }
        s->log_fd = openat(s->dir_fd, "agentjail.log", O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
                           0600);
        if (s->log_fd < 0) {
                r = -errno;
                (void)aj_asprintf(ret_error, "cannot create '%s': %s", s->log, strerror(-r));
                return r;
        }
        if (e->profile_errors && e->profile_errors[s->index]) {
                *ret_error = strdup(e->profile_errors[s->index]);
                return -ENOENT;
        }
        if (c->fixture && (r = copy_fixture(c->fixture, s->ws_fd, s->log_fd, ret_error)) < 0)
                return r;
        int out[2];
        if (pipe2(out, O_CLOEXEC) < 0) {
                r = -errno;
                (void)aj_asprintf(ret_error, "cannot make a pipe: %s", strerror(-r));
                return r;
        }
        s->out_fd = out[0];
        _cleanup_close_ int out_w = out[1];
        if ((r = aj_fd_set_nonblock(s->out_fd, true)) < 0)
                return r;
        _cleanup_free_ char *name = run_name(c->name);
        _cleanup_(aj_strv_freep) char **argv = NULL;
        r = name ? case_argv(e, c, name, s->dir, &argv) : -ENOMEM;
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot build the command: %s", strerror(-r));
                return r;
        }
        /* The chain its profile was loaded from when the suite started: the run refuses another. */
        const char *chain = e->profile_chains ? e->profile_chains[s->index] : NULL;
        r = chain ? spawn(argv, s->ws_fd, out_w, e->self, chain, &s->pid) : -ENOENT;
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot start agentjail run: %s", strerror(-r));
                return r;
        }
        s->pidfd = sys_pidfd_open(s->pid, 0);
        if (s->pidfd < 0)
                s->pidfd = -1; /* then only waitpid(WNOHANG) on each tick sees its end */
        return 0;
}

/* Start a case; one that cannot start is finished here, as an error. */
static void start_case(Eval *e, Slot *s, size_t index)
{
        const AjEvalCase *c = &e->suite->cases[index];
        *s = (Slot){ .used = true,
                     .index = index,
                     .pidfd = -1,
                     .out_fd = -1,
                     .log_fd = -1,
                     .dir_fd = -1,
                     .ws_fd = -1,
                     .start_ns = aj_now_monotonic_ns(),
                     .start_realtime_ns = realtime_ns() };
        s->deadline_ns = s->start_ns + c->timeout_ns;
        char *err = NULL;
        if (prepare_and_spawn(e, s, c, &err) >= 0)
                return;
        eval_finish_error(e, s, err);
        remove_scratch(e, s);
        slot_done(s);
        e->done++;
}

/* The case's process ended (reaped here): judge it, clean up. */
static void finish_case(Eval *e, Slot *s, int wstatus)
{
        drain_output(s);
        eval_judge_case(e, s, wait_status(wstatus));
        remove_scratch(e, s);
        slot_done(s);
        e->done++;
}

/* Past the deadline: ask the run to stop, harder each stage (see KILL_AFTER_TERM_MS). */
static void enforce_deadline(Eval *e, Slot *s, uint64_t now)
{
        uint64_t over_ms = now > s->deadline_ns ? (now - s->deadline_ns) / 1000000ULL : 0;
        if (now < s->deadline_ns)
                return;
        if (s->stage == 0) {
                s->timed_out = !interrupted;
                kill(s->pid, SIGTERM);
                s->stage = 1;
        } else if (s->stage == 1 && over_ms >= KILL_AFTER_TERM_MS) {
                s->stage = 2;
                AjRun *run = eval_find_run(e, s->pid, s->start_realtime_ns, false);
                if (run) {
                        json_auto_t *req = json_pack("{s:s}", "op", "kill");
                        json_t *reply = NULL;
                        if (req && aj_control_call(run->control_path, req, 2000, &reply) >= 0)
                                json_decref(reply);
                        aj_run_free(run);
                }
        } else if (s->stage == 2 && over_ms >= SIGKILL_AFTER_TERM_MS) {
                s->stage = 3;
                kill(s->pid, SIGKILL);
        }
}

/* ---- the loop ---- */

static void progress(const Eval *e, uint64_t start_ns)
{
        if (!e->progress)
                return;
        char line[512];
        int n = snprintf(line, sizeof(line), "\r[%zu/%zu] %.0fs", e->done, e->suite->n_cases,
                         (double)(aj_now_monotonic_ns() - start_ns) / 1e9);
        const char *sep = " running: ";
        for (size_t i = 0; i < e->jobs && n > 0 && (size_t)n < sizeof(line) - 80; i++) {
                if (!e->slots[i].used)
                        continue;
                char name[64] = "";
                aj_append_printable(name, sizeof(name), e->suite->cases[e->slots[i].index].name, 40);
                n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", sep, name);
                sep = ", ";
        }
        fprintf(stderr, "%s\033[K", line);
        fflush(stderr);
}

static size_t running(const Eval *e)
{
        size_t n = 0;
        for (size_t i = 0; i < e->jobs; i++)
                n += e->slots[i].used;
        return n;
}

static void run_all(Eval *e)
{
        uint64_t start = aj_now_monotonic_ns();
        bool stopping = false;
        while (e->done < e->suite->n_cases) {
                if (interrupted && !stopping) {
                        stopping = true;
                        /* Cases not started are reported as not run; running ones end now. */
                        for (; e->next < e->suite->n_cases; e->next++, e->done++)
                                e->results[e->next] = (AjEvalResult){ .result = AJ_EVAL_ERROR,
                                                                      .exit_status = -1,
                                                                      .error = strdup("not run: interrupted") };
                        for (size_t i = 0; i < e->jobs; i++)
                                if (e->slots[i].used)
                                        e->slots[i].deadline_ns = aj_now_monotonic_ns();
                }
                for (size_t i = 0; i < e->jobs && e->next < e->suite->n_cases && !stopping; i++)
                        if (!e->slots[i].used)
                                start_case(e, &e->slots[i], e->next++);
                if (e->done >= e->suite->n_cases)
                        break;
                struct pollfd pfd[2 * AJ_EVAL_MAX_JOBS];
                size_t n = 0;
                uint64_t now = aj_now_monotonic_ns(), wake = now + PROGRESS_TICK_MS * 1000000ULL;
                for (size_t i = 0; i < e->jobs; i++) {
                        Slot *s = &e->slots[i];
                        if (!s->used)
                                continue;
                        if (s->pidfd >= 0)
                                pfd[n++] = (struct pollfd){ .fd = s->pidfd, .events = POLLIN };
                        if (s->out_fd >= 0)
                                pfd[n++] = (struct pollfd){ .fd = s->out_fd, .events = POLLIN };
                        uint64_t next = s->stage == 0 ? s->deadline_ns : now + 500000000ULL;
                        if (next < wake)
                                wake = next;
                }
                progress(e, start);
                int timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
                if (running(e) > 0)
                        (void)poll(pfd, n, timeout_ms); /* EINTR: a signal, seen above */
                now = aj_now_monotonic_ns();
                for (size_t i = 0; i < e->jobs; i++) {
                        Slot *s = &e->slots[i];
                        if (!s->used)
                                continue;
                        drain_output(s);
                        int st;
                        pid_t p = waitpid(s->pid, &st, WNOHANG);
                        if (p == s->pid)
                                finish_case(e, s, st);
                        else
                                enforce_deadline(e, s, now);
                }
        }
        if (e->progress)
                fprintf(stderr, "\r\033[K");
}

/* ---- output ---- */

static void print_table(const Eval *e)
{
        const AjEvalSuite *su = e->suite;
        int w = 4;
        for (size_t i = 0; i < su->n_cases; i++) {
                int l = (int)strlen(su->cases[i].name);
                w = l > w ? (l > 40 ? 40 : l) : w;
        }
        printf("%-*s  %-6s  %7s  %-12s  %s\n", w, "CASE", "RESULT", "TIME", "RUN", "REASON");
        size_t counts[3] = {};
        for (size_t i = 0; i < su->n_cases; i++) {
                const AjEvalResult *r = &e->results[i];
                counts[r->result]++;
                char name[160] = "", reason[300] = "";
                aj_append_printable(name, sizeof(name), su->cases[i].name, 40);
                aj_append_printable(reason, sizeof(reason), aj_eval_result_reason(r), 200);
                printf("%-*s  %-6s  %6.2fs  %-12s  %s\n", w, name, aj_eval_result_name(r->result), r->seconds,
                       r->run_id[0] ? r->run_id : "-", reason);
                for (char **f = r->failures && r->failures[0] ? r->failures + 1 : NULL; f && *f; f++) {
                        char more[300] = "";
                        aj_append_printable(more, sizeof(more), *f, 200);
                        printf("%-*s  %-6s  %7s  %-12s  %s\n", w, "", "", "", "", more);
                }
        }
        printf("%s: %zu passed, %zu failed, %zu errors\n", su->name, counts[AJ_EVAL_PASS], counts[AJ_EVAL_FAIL],
               counts[AJ_EVAL_ERROR]);
        if (e->keep)
                printf("workspaces kept in %s/case-N/workspace\n", e->scratch.path);
}

static int write_junit(const Eval *e, const char *path)
{
        /* xs:dateTime without fraction or zone, as the Ant JUnit schema's pattern has it (UTC). */
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
        _cleanup_free_ char *xml = aj_eval_junit(e->suite, e->results, e->suite->n_cases, ts);
        if (!xml)
                return -ENOMEM;
        return aj_write_file_atomic(path, xml, strlen(xml), 0644);
}

static int parse_jobs(const char *arg, size_t *ret)
{
        char *end;
        errno = 0;
        long n = strtol(arg, &end, 10);
        if (errno || *end || end == arg || n < 1 || n > AJ_EVAL_MAX_JOBS)
                return -EINVAL;
        *ret = (size_t)n;
        return 0;
}

static void eval_done(Eval *e)
{
        for (size_t i = 0; e->results && i < e->suite->n_cases; i++)
                aj_eval_result_done(&e->results[i]);
        free(e->results);
        int r = e->keep ? 0 : aj_scratch_remove(&e->scratch);
        if (r < 0) {
                (void)aj_fprintf_printable(stderr, "agentjail eval: cannot remove '%s': %s", e->scratch.path,
                                           strerror(-r));
                fputc('\n', stderr);
        }
        aj_scratch_done(&e->scratch);
        aj_strv_free(e->runs_before);
        aj_strv_free(e->claimed_runs);
        for (size_t i = 0; e->profile_errors && i < e->suite->n_cases; i++)
                free(e->profile_errors[i]);
        free(e->profile_errors);
        for (size_t i = 0; e->profile_chains && i < e->suite->n_cases; i++)
                free(e->profile_chains[i]);
        free(e->profile_chains);
        aj_paths_done(&e->paths);
}

/* The runs there before the suite started are never a case's. */
static int snapshot_runs(Eval *e)
{
        _cleanup_free_ char *runs = aj_path_join(e->paths.state_root, "runs");
        if (!runs)
                return -ENOMEM;
        DIR *d = opendir(runs);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        size_t cap = 0;
        int r = 0;
        while (r >= 0 && (de = readdir(d))) {
                if (!aj_run_id_valid(de->d_name))
                        continue;
                r = aj_strv_append(&e->runs_before, &e->n_before, &cap, strdup(de->d_name));
        }
        closedir(d);
        if (e->runs_before)
                e->n_before = aj_strv_sort_unique(e->runs_before);
        return r;
}

/* Fixtures the file system does not have are the suite's error, before anything runs. */
static int check_fixtures(const AjEvalSuite *su)
{
        for (size_t i = 0; i < su->n_cases; i++) {
                const char *f = su->cases[i].fixture;
                struct stat st;
                if (!f)
                        continue;
                const char *why = stat(f, &st) < 0                       ? strerror(errno)
                                  : S_ISDIR(st.st_mode)                  ? NULL
                                  : S_ISREG(st.st_mode) && is_tarball(f) ? NULL
                                  : S_ISREG(st.st_mode) ? "a file that is not a tarball (.tar, .tar.gz, .tgz...)"
                                                        : "neither a directory nor a tarball";
                if (why) {
                        _cleanup_(aj_error_clear) AjError err = {};
                        int r = aj_eval_suite_error_at(su, &err, i, "fixture", "'%s': %s", f, why);
                        (void)aj_fprintf_printable(stderr, "agentjail eval: %s", aj_error_text(&err, r));
                        fputc('\n', stderr);
                        return -ENOENT;
                }
        }
        return 0;
}

/* Each case's profile by its real path, found here (where `agentjail eval` runs), as `run
 * --profile` would find it: a case's run starts in the scratch copy of its fixture, and a
 * name looked up there would find the fixture's ./profiles (the repository the agent works
 * on, last on the search path) instead of the operator's. A case whose profile is not found
 * keeps why in ret_errors[i] (its error when it starts: it never runs). */
static int resolve_profiles(AjEvalSuite *su, char ***ret_errors)
{
        char **errors = calloc(su->n_cases + 1, sizeof(char *));
        if (!errors)
                return -ENOMEM;
        for (size_t i = 0; i < su->n_cases; i++) {
                AjEvalCase *c = &su->cases[i];
                if (!c->profile)
                        continue;
                _cleanup_(aj_error_clear) AjError err = {};
                char *real = NULL;
                int r = aj_profile_find(c->profile, &real, &err);
                if (r < 0) {
                        if (aj_asprintf(&errors[i], "profile: %s", aj_error_text(&err, r)) < 0) {
                                for (size_t k = 0; k < i; k++)
                                        free(errors[k]);
                                free(errors);
                                return -ENOMEM;
                        }
                        continue;
                }
                free(c->profile);
                c->profile = real;
        }
        *ret_errors = errors;
        return 0;
}

/* A path for protect_inputs()'s list, once. */
static int push_input(char ***files, const char *path)
{
        if (aj_strv_contains(*files, path))
                return 0;
        return strchr(path, '\n') ? -EINVAL : aj_strv_push(files, path);
}

/* The files every case's profile is loaded from (its extends chain too), those it has the
 * host run (aj_profile_host_programs(): its alert command's) and every case's fixture, told
 * to each case's run (AJ_EVAL_INPUTS_ENV), which refuses to mount any of them writable: a
 * case's run loads its profile and gets its fixture's copy when it starts, after the cases
 * before it, and an agent with a writable bind of another case's profile (or alert script)
 * wrote it an alert.exec that ran on the host as root (of its fixture: its starting state).
 * A case whose profile does not load here gets its error in profile_errors[i] and never
 * runs: its files are not known, so they could not be protected, and an earlier case's agent
 * wrote the file its extends chain lacked (or the profile itself, left unprotected), which
 * its run then loaded. -1 when it cannot be told (said). */
static int protect_inputs(const AjEvalSuite *su, char **profile_errors, char **chains)
{
        _cleanup_(aj_strv_freep) char **files = NULL;
        for (size_t i = 0; i < su->n_cases; i++) {
                const AjEvalCase *c = &su->cases[i];
                _cleanup_(aj_error_clear) AjError err = {};
                AjProfile *p = NULL;
                int r = c->fixture ? push_input(&files, c->fixture) : 0;
                /* The profile its run loads: the case's, or without one the `default` a run
                 * loads (a replay's: the recorded run's resolved profile, a file of its own). A
                 * profile not found has its error already (resolve_profiles()). */
                const char *profile = c->profile ? c->profile : c->recorded_run ? NULL : "default";
                if (r >= 0 && profile && !profile_errors[i]) {
                        _cleanup_strv_free_ char **programs = NULL;
                        if ((r = c->profile ? aj_profile_load_file(profile, &p, &err)
                                            : aj_profile_load(profile, &p, &err)) < 0)
                                r = aj_asprintf(&profile_errors[i], "profile: %s", aj_error_text(&err, r)) < 0 ? -ENOMEM
                                                                                                               : 0;
                        else
                                r = aj_profile_host_programs(p, &programs);
                        for (char **f = p ? p->files : NULL; r >= 0 && f && *f; f++)
                                r = push_input(&files, *f);
                        for (char **f = programs; r >= 0 && f && *f; f++)
                                r = push_input(&files, *f);
                        if (r >= 0 && p)
                                r = aj_strv_join_lines(p->files, &chains[i]);
                        aj_profile_free(p);
                } else if (r >= 0 && !profile && !(chains[i] = strdup("")))
                        r = -ENOMEM;
                if (r < 0) {
                        cli_fail("eval", "cannot protect the profile and fixture of case '%s': %s", c->name,
                                 r == -EINVAL ? "a path of them has a newline" : strerror(-r));
                        return -1;
                }
        }
        /* push_input() took no path with a newline: only memory can fail. */
        _cleanup_free_ char *joined = NULL;
        if (aj_strv_join_lines(files, &joined) < 0) {
                cli_fail("eval", "out of memory");
                return -1;
        }
        size_t len = strlen(joined) + 1;
        /* One environment string is at most 128 KiB (MAX_ARG_STRLEN): the runs would not start. */
        if (len > 64 * 1024) {
                cli_fail("eval",
                         "the suite's profiles and fixtures are more files than eval can protect (%zu bytes "
                         "of paths, at most 64 KiB)",
                         len);
                return -1;
        }
        if (setenv(AJ_EVAL_INPUTS_ENV, joined, 1) < 0) {
                cli_fail("eval", "cannot set %s: %s", AJ_EVAL_INPUTS_ENV, strerror(errno));
                return -1;
        }
        return 0;
}

/* agentjail's own binary, the paths, the runs there before, the results, the scratch
 * directory; -1 when one is missing (said). */
static int eval_prepare(Eval *e)
{
        ssize_t n = readlink("/proc/self/exe", e->self, sizeof(e->self) - 1);
        const char *tmp = getenv("TMPDIR");
        const char *parent = tmp && tmp[0] == '/' ? tmp : "/tmp";
        if (n <= 0 || (size_t)n >= sizeof(e->self) - 1) {
                cli_fail("eval", "cannot find agentjail's own binary: %s", strerror(errno));
                return -1;
        }
        e->self[n] = 0;
        if (cli_open_paths("eval", &e->paths) < 0 || snapshot_runs(e) < 0)
                return -1;
        e->results = calloc(e->suite->n_cases, sizeof(AjEvalResult));
        if (!e->results) {
                cli_fail("eval", "out of memory");
                return -1;
        }
        /* Made and held (util/scratch.h): the cases' dirs are made in it and the whole removed
         * at the end (eval_done()) through its fds, so a symlink or another directory put in
         * its place is never followed. */
        int r = aj_scratch_make(parent, "agentjail-eval", &e->scratch);
        if (r < 0) {
                cli_fail("eval", "cannot make a scratch directory in '%s': %s", parent, strerror(-r));
                return -1;
        }
        /* The scratch root is agentjail's own while the cases run (it makes, reads and removes
         * their dirs in it as root): each case's run refuses a profile that would let
         * its agent write anywhere in it but its own workspace (src/sensitive.h). */
        if (setenv(AJ_EVAL_SCRATCH_ENV, e->scratch.path, 1) < 0) {
                cli_fail("eval", "cannot set %s: %s", AJ_EVAL_SCRATCH_ENV, strerror(errno));
                return -1;
        }
        if (!(e->profile_chains = calloc(e->suite->n_cases + 1, sizeof(char *)))) {
                cli_fail("eval", "out of memory");
                return -1;
        }
        if (protect_inputs(e->suite, e->profile_errors, e->profile_chains) < 0)
                return -1;
        for (size_t i = 0; i < e->suite->n_cases; i++)
                e->results[i].exit_status = -1;
        return 0;
}

/* The cases run with SIGINT and SIGTERM caught (they stop the suite: see run_all), and
 * SIGCHLD as the kernel's default even if the caller ignored it: an ignored SIGCHLD
 * reaps the cases by itself, and their exit statuses would be lost. */
static void run_interruptible(Eval *e)
{
        struct sigaction sa = { .sa_handler = on_signal }, dfl = { .sa_handler = SIG_DFL }, old_int, old_term, old_chld;
        sigemptyset(&sa.sa_mask);
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGCHLD, &dfl, &old_chld);
        run_all(e);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGCHLD, &old_chld, NULL);
}

/* The results out (JUnit, JSON or the table); the exit status. */
static int eval_report(const Eval *e, bool json, const char *junit)
{
        int r = 0;
        if (junit && (r = write_junit(e, junit)) < 0)
                cli_fail("eval", "cannot write '%s': %s", junit, strerror(-r));
        if (json) {
                json_auto_t *doc = aj_eval_report_json(e->suite, e->results, e->suite->n_cases);
                if (doc)
                        cli_print_json(doc);
        } else
                print_table(e);
        int status = CLI_EXIT_OK;
        for (size_t i = 0; i < e->suite->n_cases; i++)
                if (e->results[i].result != AJ_EVAL_PASS)
                        status = CLI_EXIT_FAIL;
        if (junit && r < 0)
                status = CLI_EXIT_FAIL;
        return status;
}

int aj_cmd_eval(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "jobs", required_argument, NULL, 'j' },
                { "junit", required_argument, NULL, OPT_JUNIT },
                { "keep", no_argument, NULL, OPT_KEEP },
                {},
        };
        bool json = false, keep = false;
        const char *junit = NULL;
        size_t jobs = 1;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":hj:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return cli_help(EVAL_USAGE, EVAL_HELP);
                case CLI_OPT_JSON:
                        json = true;
                        break;
                case 'j':
                        if (parse_jobs(optarg, &jobs) < 0)
                                return cli_usage_error("eval", EVAL_USAGE, "--jobs '%s': expected 1 to %d", optarg,
                                                       AJ_EVAL_MAX_JOBS);
                        break;
                case OPT_JUNIT:
                        junit = optarg;
                        break;
                case OPT_KEEP:
                        keep = true;
                        break;
                default:
                        return cli_option_error("eval", EVAL_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals("eval", EVAL_USAGE, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;

        _cleanup_(aj_error_clear) AjError err = {};
        _cleanup_(aj_eval_suite_freep) AjEvalSuite *suite = NULL;
        r = aj_eval_suite_load(argv[optind], &suite, &err);
        if (r >= 0)
                r = aj_eval_suite_compile(suite, &err);
        if (r < 0) {
                cli_fail("eval", "%s", aj_error_text(&err, r));
                return EXIT_BAD_SUITE;
        }
        if (check_fixtures(suite) < 0)
                return EXIT_BAD_SUITE;
        char **profile_errors = NULL;
        if (resolve_profiles(suite, &profile_errors) < 0) {
                cli_fail("eval", "out of memory");
                return CLI_EXIT_FAIL;
        }

        Eval e = { .suite = suite,
                   .profile_errors = profile_errors,
                   .jobs = jobs,
                   .keep = keep,
                   .scratch = AJ_SCRATCH_INIT,
                   .progress = isatty(STDERR_FILENO) };
        for (size_t i = 0; i < AJ_EVAL_MAX_JOBS; i++)
                e.slots[i] = (Slot){ .pidfd = -1, .out_fd = -1, .log_fd = -1, .dir_fd = -1, .ws_fd = -1 };
        int status = CLI_EXIT_FAIL;
        if (eval_prepare(&e) >= 0) {
                run_interruptible(&e);
                status = eval_report(&e, json, junit);
        }
        eval_done(&e);
        return status;
}
