/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail eval`: a finished case (cli/eval-internal.h). The facts its run left (the exit
 * status, the workspace after, with an overlay run's changes committed to the case's scratch
 * copy, the events in its chain, run.json's meters), then its verdict (src/eval-judge.c, pure).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/eval-internal.h"
#include "eval.h"
#include "events.h"
#include "mount.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/open-under.h"
#include "util/path.h"
#include "util/strv.h"
#include "workspace.h"

AjRun *eval_find_run(Eval *e, pid_t pid, uint64_t since_ns, bool claim)
{
        _cleanup_free_ char *runs = aj_path_join(e->paths.state_root, "runs");
        DIR *d = runs ? opendir(runs) : NULL;
        if (!d)
                return NULL;
        AjRun *found = NULL;
        struct dirent *de;
        while (!found && (de = readdir(d))) {
                if (!aj_run_id_valid(de->d_name) || aj_strv_sorted_contains(e->runs_before, e->n_before, de->d_name) ||
                    aj_strv_contains(e->claimed_runs, de->d_name))
                        continue;
                AjRun *run = NULL;
                if (aj_run_load(&e->paths, de->d_name, &run) < 0)
                        continue;
                /* run.json's start is the supervisor's clock, a little after ours. */
                if (run->rec && run->rec->supervisor_pid == pid && run->started_ns + 1000000000ULL >= since_ns)
                        found = run;
                else
                        aj_run_free(run);
        }
        closedir(d);
        if (found && claim)
                (void)aj_strv_push(&e->claimed_runs, found->id);
        return found;
}

void eval_finish_error(Eval *e, Slot *s, char *error)
{
        AjEvalResult *res = &e->results[s->index];
        res->result = AJ_EVAL_ERROR;
        res->error = error ? error : strdup("out of memory");
        res->seconds = (double)(aj_now_monotonic_ns() - s->start_ns) / 1e9;
}

/* ---- the facts ---- */

/* What a "files" check finds in the workspace the agent wrote: looked up inside it only
 * (symlinks resolve within it), non-blocking (a FIFO), at most AJ_EVAL_MAX_FILE_BYTES. */
static void file_fact(int ws_fd, const AjEvalFileCheck *chk, AjEvalFileFact *f)
{
        *f = (AjEvalFileFact){};
        int fd = aj_open_under(ws_fd, chk->path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, AJ_UNDER_FOLLOW);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return;
        if (fd < 0) {
                f->read_error = fd;
                return;
        }
        _cleanup_close_ int owned = fd;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                f->read_error = -errno;
                return;
        }
        f->exists = true;
        f->regular = S_ISREG(st.st_mode);
        if (!f->regular || (chk->kind != AJ_EVAL_FILE_EQUALS && chk->kind != AJ_EVAL_FILE_MATCHES))
                return;
        int r = aj_read_fd(fd, AJ_EVAL_MAX_FILE_BYTES, &f->content, &f->len);
        if (r == -EFBIG)
                f->too_big = true;
        else if (r < 0)
                f->read_error = r;
}

static int count_event(json_t *ev, void *userdata)
{
        void **ud = userdata;
        aj_eval_count_event(ud[0], ev, ud[1]);
        return 0;
}

/* An overlay run's changes (its upper dir in `dir`), applied to the case's scratch copy:
 * into *st. 0 or -errno with *ret_error. */
static int apply_changes(const char *dir, int ws_fd, AjWsStats *st, char **ret_error)
{
        char upper[PATH_MAX + 8];
        snprintf(upper, sizeof(upper), "%s/%s", dir, AJ_OVERLAY_UPPER);
        _cleanup_close_ int upper_fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (upper_fd < 0) {
                int r = -errno;
                (void)aj_asprintf(ret_error, "cannot open the overlay's changes '%s': %s", upper, strerror(-r));
                return r;
        }
        _cleanup_(aj_error_clear) AjError err = {};
        /* What applying writes is bounded: the upper files' allocated bytes (holes stay holes). */
        AjWsChange *v = NULL;
        size_t n = 0;
        int r = aj_ws_diff(upper_fd, ws_fd, 0, &v, &n, &err);
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot list the overlay's changes: %s", aj_error_text(&err, r));
                return r;
        }
        uint64_t total;
        r = aj_eval_overlay_budget(v, n, &total);
        aj_ws_changes_free(v, n);
        if (r < 0) {
                (void)aj_asprintf(ret_error,
                                  "the overlay's changes hold %llu MiB of file data, more than an eval applies (%llu MiB)",
                                  (unsigned long long)(total >> 20),
                                  (unsigned long long)(AJ_EVAL_MAX_OVERLAY_BYTES >> 20));
                return -EFBIG;
        }
        r = aj_ws_commit(upper_fd, ws_fd, 0, AJ_WS_COMMIT_FORCE | AJ_WS_COMMIT_INCLUDE_GIT, st, &err);
        if (r < 0)
                (void)aj_asprintf(ret_error, "cannot apply the overlay's changes to the scratch workspace: %s",
                                  aj_error_text(&err, r));
        return r;
}

/* The scratch copy opened at ws_fd is the directory the run's overlay covered: with an rw
 * bind of a directory above it (TMPDIR, say), the agent moved it away and put a symlink in
 * its place, and the changes, git's own files too, were applied as root where that pointed.
 * A record without the identity (this agentjail writes it) is refused too. */
static int check_workspace(const AjRunRecord *rec, int ws_fd, const char *ws, char **ret_error)
{
        int r = aj_run_workspace_check(&rec->workspace, ws_fd);
        if (r < 0) {
                _cleanup_free_ char *where = aj_printable_dup(ws, strlen(ws), AJ_ESCAPE_QUOTE);
                (void)aj_asprintf(ret_error,
                                  r == -ESTALE ? "the overlay's changes were not applied: the scratch workspace %s is "
                                                 "not the directory the run had (moved, or replaced by a symlink "
                                                 "or another directory during the run)"
                                  : r == -ENODATA ? "the overlay's changes were not applied: the run recorded no "
                                                    "identity of its workspace to tell %s is the directory it had"
                                                  : "the overlay's changes were not applied: cannot look at the "
                                                    "scratch workspace %s",
                                  where ?: "?");
        }
        return r;
}

/* An overlay run's changes, applied to the case's scratch copy (the very workspace the run
 * had, its alone, removed after the case unless `keep`) so that the assertions see the
 * workspace as the agent left it. That is the run's commit, recorded as `agentjail commit`
 * records one ("workspace.commit", with "eval": true; run.json's changes "committed") and
 * its kept changes removed: left "pending", the run named a workspace that was about to go,
 * which no commit could reach and which prune kept forever with the agent's files. Changes
 * that could not be applied (more than an eval applies, a process of the run left to write
 * into them, a failure) are discarded so, with why ("workspace.discard", "eval": true,
 * "error"), unless the copy is kept: an agent writing 4 GiB left them pending with every case. One at a time with an operator's commit or
 * discard of it (the same lock). 0 or -errno with *ret_error. */
static int apply_overlay(AjRun *run, int ws_fd, const char *ws, bool keep, char **ret_error)
{
        const char *mode = run->rec ? run->rec->profile_workspace_mode : NULL;
        if (!mode || !streq(mode, "overlay"))
                return 0;
        char dir[PATH_MAX];
        if (aj_run_file_path(run->dir, AJ_RUN_DIR_WORKSPACE, dir, sizeof(dir)) < 0)
                return -ENAMETOOLONG;
        /* `ws` may be the record's own (a replayed case's cwd), which reading it again frees. */
        _cleanup_free_ char *ws_copy = strdup(ws);
        if (!ws_copy)
                return -ENOMEM;
        ws = ws_copy;
        _cleanup_close_ int lock = -1;
        int r = aj_run_lock_workspace(run, &lock);
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot lock the overlay's changes '%s': %s", dir,
                                  r == -EWOULDBLOCK ? "an 'agentjail commit' or 'discard' of the run is running"
                                                    : strerror(-r));
                return r;
        }
        _cleanup_(aj_error_clear) AjError err = {};
        AjRunRecord *rec = NULL;
        r = aj_run_record_read(run->dir, &rec, &err);
        if (r < 0) {
                (void)aj_asprintf(ret_error, "cannot read the run's record: %s", aj_error_text(&err, r));
                return r;
        }
        aj_run_record_free(run->rec);
        run->rec = rec;
        const char *changes = rec->workspace.changes;
        if (changes && !streq(changes, "pending")) {
                (void)aj_asprintf(ret_error, "the overlay's changes were %s already", changes);
                return -EALREADY;
        }
        /* As commit does: a timed-out case's agent, killed but not gone (its supervisor is),
         * may still write into the upper dir while it is applied. */
        _cleanup_free_ char *unsettled = NULL;
        AjWsStats st = { 0 };
        int applied = aj_run_check_settled(run, &unsettled);
        if (applied < 0)
                (void)aj_asprintf(ret_error, "the overlay's changes were not applied: %s",
                                  unsettled ?: strerror(-applied));
        else if ((applied = check_workspace(rec, ws_fd, ws, ret_error)) >= 0)
                applied = apply_changes(dir, ws_fd, &st, ret_error);
        if (applied < 0 && keep)
                return applied;
        bool recorded;
        r = aj_run_decide_workspace(run, applied < 0 ? "discarded" : "committed",
                                    applied < 0 ? json_pack("{s:s, s:b, s:s}", "workspace", ws, "eval", true, "error",
                                                            *ret_error ?: "?")
                                                : json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:b}",
                                                            "workspace", ws, "added", (json_int_t)st.added, "modified",
                                                            (json_int_t)st.modified, "deleted", (json_int_t)st.deleted,
                                                            "replaced", (json_int_t)st.replaced, "skipped",
                                                            (json_int_t)st.skipped, "force", true, "git_applied",
                                                            (json_int_t)st.git_code, "eval", true),
                                    &recorded);
        if (r < 0 && applied < 0)
                return applied; /* still pending: 'agentjail discard' of it can record it */
        if (r < 0) {
                (void)aj_asprintf(ret_error, "the overlay's changes were applied but not recorded (%s): %s",
                                  recorded ? AJ_RUN_FILE_RUN : "the event chain", strerror(-r));
                return r;
        }
        /* As a commit or a discard does: what it kept is in the workspace now, or not wanted. A
         * failure leaves a directory that prune removes with the run. */
        (void)aj_rm_rf(dir);
        return applied;
}

/* ---- the verdict ---- */

/* The events the case's assertions count, from its run's chain; -errno with *ret_error. */
static int count_events(const AjEvalCase *c, const AjRun *run, size_t *counts, char **ret_error)
{
        if (!run || c->n_events == 0)
                return 0;
        char path[PATH_MAX];
        const void *ud[2] = { c, counts };
        if (aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0 ||
            aj_events_foreach(path, count_event, ud, NULL) < 0) {
                (void)aj_asprintf(ret_error, "cannot read the events of run %s", run->id);
                return -EIO;
        }
        return 0;
}

/* A replay's exit status says whether the verdicts changed; the case is judged on the
 * replayed command's, and on the scratch workspace it ran in (its run's cwd, inside the
 * case's dir): those into *exit_status and *ws. -errno with *ret_error when it made no run. */
static int replayed_outcome(const AjEvalCase *c, const AjRun *run, int *exit_status, const char **ws, char **ret_error)
{
        if (c->source != AJ_EVAL_SOURCE_RECORDED)
                return 0;
        if (!run || !run->rec || !run->rec->exit.present || !run->rec->cwd) {
                (void)aj_asprintf(ret_error, "agentjail replay %s made no run (exit status %d): see its log",
                                  c->recorded_run, *exit_status);
                return -ENOENT;
        }
        *exit_status = run->rec->exit.status;
        *ws = run->rec->cwd;
        return 0;
}

/* The workspace the case ran in, through the case dir's fd held since it was made (never by
 * the path again: eval handles it as root): the one made for it, or a replay's scratch copy
 * inside the case dir (its run's cwd, `ws`), with no symlink on the way. A new fd, or -1 with
 * errno set. */
static int open_workspace(const Slot *s, const char *ws)
{
        if (ws == s->ws)
                return fcntl(s->ws_fd, F_DUPFD_CLOEXEC, 3);
        size_t n = strlen(s->dir);
        int fd = strncmp(ws, s->dir, n) == 0 && ws[n] == '/'
                         ? aj_open_under(s->dir_fd, ws + n + 1, O_RDONLY | O_DIRECTORY, 0, AJ_UNDER_NO_SYMLINKS)
                         : -EXDEV; /* not in the case's dir */
        if (fd < 0) {
                errno = -fd;
                return -1;
        }
        return fd;
}

/* Each "files" check's fact; ws_fd < 0 (errno from its open): each one's read error. */
static void file_facts(const AjEvalCase *c, int ws_fd, AjEvalFileFact *files)
{
        for (size_t i = 0; i < c->n_files; i++) {
                if (ws_fd < 0)
                        files[i] = (AjEvalFileFact){ .read_error = -errno };
                else
                        file_fact(ws_fd, &c->files[i], &files[i]);
        }
}

/* The verdict into the case's result (taking its failures). */
static void set_result(const AjEvalCase *c, const Slot *s, AjEvalResult *res, AjEvalVerdict *v, int exit_status)
{
        res->n_checked = v->n_checked;
        res->failures = TAKE_PTR(v->failures);
        res->result = res->failures ? AJ_EVAL_FAIL : AJ_EVAL_PASS;
        if (s->stage > 0 && !s->timed_out) { /* stopped by an interrupt: not a verdict */
                res->result = AJ_EVAL_ERROR;
                res->error = strdup("interrupted: the run was stopped");
                return;
        }
        /* agentjail's own failure (a profile it refused...) says why the exit status is off. */
        if (res->failures && !s->timed_out && exit_status != c->exit_status && exit_status >= 125 &&
            exit_status <= 127) {
                _cleanup_free_ char *line = eval_last_output_line(s);
                char *with = NULL;
                if (line && aj_asprintf(&with, "%s: %s", res->failures[0], line) >= 0) {
                        free(res->failures[0]);
                        res->failures[0] = with;
                }
        }
}

void eval_judge_case(Eval *e, Slot *s, int exit_status)
{
        const AjEvalCase *c = &e->suite->cases[s->index];
        AjEvalResult *res = &e->results[s->index];
        res->seconds = (double)(aj_now_monotonic_ns() - s->start_ns) / 1e9;
        res->exit_status = exit_status;
        _cleanup_(aj_run_freep) AjRun *run = eval_find_run(e, s->pid, s->start_realtime_ns, true);
        if (run)
                snprintf(res->run_id, sizeof(res->run_id), "%s", run->id);

        _cleanup_free_ size_t *counts = calloc(c->n_events + 1, sizeof(size_t));
        _cleanup_free_ AjEvalFileFact *files = calloc(c->n_files + 1, sizeof(AjEvalFileFact));
        if (!counts || !files) {
                eval_finish_error(e, s, NULL);
                return;
        }
        char *err = NULL;
        const char *ws = s->ws;
        if (count_events(c, run, counts, &err) < 0 || replayed_outcome(c, run, &exit_status, &ws, &err) < 0) {
                eval_finish_error(e, s, err);
                return;
        }
        res->exit_status = exit_status;
        _cleanup_close_ int ws_fd = open_workspace(s, ws);
        if (run && ws_fd >= 0 && apply_overlay(run, ws_fd, ws, e->keep, &err) < 0) {
                eval_finish_error(e, s, err);
                return;
        }
        file_facts(c, ws_fd, files);
        AjEvalFacts facts = {
                .exit_status = exit_status,
                .exit_reason = run && run->rec && run->rec->exit.present ? run->rec->exit.reason : NULL,
                .timed_out = s->timed_out,
                .timeout_ns = c->timeout_ns,
                .files = files,
                .event_counts = counts,
                .meters = run && run->rec ? run->rec->shown.meters : NULL,
        };
        AjEvalVerdict v = {};
        int r = aj_eval_judge(c, &facts, &v);
        for (size_t i = 0; i < c->n_files; i++)
                free(files[i].content);
        if (r < 0) {
                eval_finish_error(e, s, NULL);
                return;
        }
        set_result(c, s, res, &v, exit_status);
}
