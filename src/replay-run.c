/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A replay as a whole (replay.h): the recorded run's checks (ended, replayable, its
 * starting workspace still there), a scratch copy of that workspace, a new run of the
 * same command through `run`'s own code (aj_jail_run) with the gateway answering from
 * the recording, and the diff of the two chains.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentjail/exit-codes.h"
#include "jail.h"
#include "log.h"
#include "profile.h"
#include "replay.h"
#include "runs.h"
#include "util/fd.h"
#include "util/scratch.h"
#include "util/macros.h"
#include "util/strv.h"
#include "util/syscalls.h"
#include "workspace.h"

void aj_replay_result_done(AjReplayResult *r)
{
        json_decref(r->diff);
        free(r->workspace);
        *r = (AjReplayResult){ 0 };
}

/* The events the diff reads, with only what it reads (aj_replay_diff_event): a long chain
 * of the agent's undo records or arguments is not held. */
static int collect_verdicts(json_t *ev, void *userdata)
{
        json_t *events = userdata;
        json_t *kept = NULL;
        int r = aj_replay_diff_event(ev, json_array_size(events) == 0, &kept);
        return r < 0 ? r : kept && json_array_append_new(events, kept) < 0 ? -ENOMEM : 0;
}

static int read_chain(const char *run_dir, json_t **ret)
{
        char path[PATH_MAX];
        int r = aj_run_file_path(run_dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        json_t *a = json_array();
        if (!a)
                return -ENOMEM;
        r = aj_events_foreach(path, collect_verdicts, a, NULL);
        if (r < 0) {
                json_decref(a);
                return aj_log_errno(r, "Cannot read '%s'", path);
        }
        *ret = a;
        return 0;
}

/* cp -a SRC/. DEST: the scratch copy, owners and modes kept (a jail maps its owner). Holes
 * stay holes: GNU cp's --sparse=auto (its default, spelt out) copies a sparse file extent by
 * extent, as aj_copy_data does for commit and eval. SRC is the directory open at src_fd
 * (the one digested), DEST the one open at dest_fd (made for it in the scratch root), both
 * reached by cp through its own inherited fds: never a path again. */
static int copy_tree(int src_fd, const char *src, int dest_fd, const char *dest)
{
        _cleanup_free_ char *from = NULL, *to = NULL;
        if (asprintf(&from, "/proc/self/fd/%d/.", src_fd) < 0 || asprintf(&to, "/proc/self/fd/%d/.", dest_fd) < 0)
                return -ENOMEM;
        pid_t pid = fork();
        if (pid < 0)
                return aj_log_errno(-errno, "Cannot fork to copy the workspace");
        if (pid == 0) {
                if (fcntl(src_fd, F_SETFD, 0) < 0 || fcntl(dest_fd, F_SETFD, 0) < 0)
                        _exit(127);
                execlp("cp", "cp", "-a", "--sparse=auto", "--", from, to, (char *)NULL);
                _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                aj_error("Cannot copy the workspace '%s' to '%s' (cp -a failed)", src, dest);
                return -EIO;
        }
        return 0;
}

static const char *jstr(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

/* Why a recorded digest is not the starting workspace whole (its cut_at). */
static const char *incomplete_reason(json_t *ws)
{
        const char *cut = jstr(ws, "cut_at");
        if (!cut)
                return jstr(ws, "error") ? "its digest could not be taken" : "its recorded digest is incomplete";
        if (streq(cut, "changed"))
                return "the workspace changed while its digest was taken (an in-place workspace the agent wrote "
                       "at once)";
        if (streq(cut, "unfinished"))
                return "the run ended (agentjail was interrupted) before its digest was done";
        if (streq(cut, "unsupported_fs"))
                return "the workspace is on a filesystem whose change times cannot prove it unchanged while the run "
                       "went on (not ext4, xfs, btrfs or f2fs)";
        return "its recorded digest is incomplete (the tree passed the digest's limits)";
}

/* The recorded workspace's directory, opened without following a symlink anywhere on its
 * path (a recorded path is the kernel's own, with none): a path rerouted since through a
 * symlink is refused, not followed. When the run recorded the directory's identity, it
 * must be that directory (--force: a warning). */
static int open_source(const AjRun *run, const AjReplayOptions *o, json_t *ws, const char *source, int *ret_fd)
{
        int fd = sys_openat2(AT_FDCWD, source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0 && errno == ENOSYS)
                fd = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ELOOP) {
                aj_error("cannot replay run %s: the path to its workspace '%s' goes through a symlink now", run->id,
                         source);
                return -ELOOP;
        }
        if (fd < 0)
                return aj_log_errno(-errno, "Cannot open the workspace '%s'", source);
        _cleanup_close_ int keep = fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return aj_log_errno(-errno, "Cannot stat the workspace '%s'", source);
        json_t *dev = json_object_get(ws, "dev"), *ino = json_object_get(ws, "ino");
        if (json_is_integer(dev) && json_is_integer(ino) &&
            ((uint64_t)json_integer_value(dev) != (uint64_t)st.st_dev ||
             (uint64_t)json_integer_value(ino) != (uint64_t)st.st_ino)) {
                if (!o->force) {
                        aj_error("cannot replay run %s: '%s' is not the directory it started in (another device "
                                 "or inode); --force replays from it as it is now",
                                 run->id, source);
                        return -ESTALE;
                }
                aj_warning("'%s' is not the directory run %s started in (another device or inode); replaying from "
                           "it anyway (--force)",
                           source, run->id);
        }
        *ret_fd = TAKE_FD(keep);
        return 0;
}

/* The workspace the recorded run started from (*ret_fd: its directory), checked against
 * its digest. */
static int starting_workspace(const AjRun *run, const AjReplayOptions *o, const char **ret_source, int *ret_fd)
{
        json_t *ws = run->rec->shown.workspace_start;
        const char *source = ws ? (jstr(ws, "lower") ?: jstr(ws, "path")) : run->rec->cwd;
        if (!source) {
                aj_error("run %s recorded no workspace to start from", run->id);
                return -ENODATA;
        }
        *ret_source = source;
        int r = open_source(run, o, ws, source, ret_fd);
        if (r < 0)
                return r;
        const char *want = ws ? jstr(ws, "sha256") : NULL;
        if (ws && !json_is_true(json_object_get(ws, "complete"))) {
                if (o->force) {
                        aj_warning("run %s recorded no whole digest of its starting workspace (%s): replaying "
                                   "from '%s' as it is now (--force)",
                                   run->id, incomplete_reason(ws), source);
                        return 0;
                }
                aj_error("cannot replay run %s: it recorded no whole digest of its starting workspace '%s': %s; "
                         "--force replays from it as it is now",
                         run->id, source, incomplete_reason(ws));
                return -ESTALE;
        }
        if (!want) {
                if (o->force) {
                        aj_warning("run %s recorded no digest of its starting workspace: replaying from '%s' as it "
                                   "is now (--force)",
                                   run->id, source);
                        return 0;
                }
                aj_error("run %s recorded no digest of its starting workspace (a run records it when its gateway "
                         "does: llm.record \"digest\", the default, or \"full\"): '%s' may have changed since; "
                         "--force replays from it as it is now",
                         run->id, source);
                return -ENODATA;
        }
        json_auto_t *now = NULL;
        int dfd = openat(*ret_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = dfd < 0 ? -errno : aj_workspace_digest_fd(dfd, source, NULL, &now);
        if (r < 0)
                return aj_log_errno(r, "Cannot digest the workspace '%s'", source);
        const char *have = jstr(now, "sha256");
        if (have && streq(have, want))
                return 0;
        const char *why = "it changed since the run started";
        if (o->force) {
                aj_warning("the workspace '%s' is not run %s's start: %s; replaying anyway (--force)", source, run->id,
                           why);
                return 0;
        }
        aj_error("cannot replay run %s: its workspace '%s' is not as it started: %s (digest %.16s..., recorded "
                 "%.16s...); --force replays from it as it is now",
                 run->id, source, why, have ? have : "?", want);
        return -ESTALE;
}

/* The profile the replay runs under: given, or the original's resolved profile; either
 * way with "on_breach": "kill" and approvals timing out at once (a file in the scratch
 * dir): a breach or a held call is what a replay finds, not something to wait on. Its workspace must be the current directory:
 * the scratch copy. */
static int replay_profile(const AjRun *run, const AjReplayOptions *o, const AjScratch *scratch, char **ret_path,
                          char **ret_text, char ***ret_chain)
{
        _cleanup_free_ char *path = NULL, *given = NULL, *text = NULL;
        json_auto_t *doc = NULL;
        if (o->profile) {
                /* Found here, once, by its canonical path: the run loads the profile again in the
                 * scratch copy, whose ./profiles (last on the search path) is the recorded
                 * workspace's, not the one where the operator asked for the replay. */
                _cleanup_(aj_error_clear) AjError find_err = {};
                int r = aj_profile_find(o->profile, &given, &find_err);
                if (r < 0) {
                        aj_error("Cannot find the profile '%s': %s", o->profile, aj_error_text(&find_err, r));
                        return r;
                }
                /* Its extends chain too, here: the run resolves the names in it again in the
                 * scratch copy, and refuses another file than one found here (src/jail-plan.c). */
                AjProfile *gp = NULL;
                if ((r = aj_profile_load_file(given, &gp, &find_err)) < 0) {
                        aj_error("%s", aj_error_text(&find_err, r));
                        return r;
                }
                *ret_chain = gp->files ? aj_strv_copy(gp->files) : NULL;
                bool lost = gp->files && !*ret_chain;
                aj_profile_free(gp);
                if (lost)
                        return -ENOMEM;
                doc = json_pack("{s:s, s:s, s:{s:s}}", "extends", given, "on_breach", "kill", "approvals", "timeout",
                                AJ_REPLAY_APPROVAL_TIMEOUT);
        } else {
                json_t *resolved = run->rec->shown.resolved;
                if (!json_is_object(resolved)) {
                        aj_error("run %s recorded no resolved profile: name one with -p", run->id);
                        return -ENODATA;
                }
                doc = json_deep_copy(resolved);
                json_t *ap = json_object_get(doc, "approvals");
                if (doc)
                        json_object_set_new(doc, "on_breach", json_string("kill"));
                if (json_is_object(ap))
                        json_object_set_new(ap, "timeout", json_string(AJ_REPLAY_APPROVAL_TIMEOUT));
        }
        if (!doc || asprintf(&path, "%s/profile.json", scratch->path) < 0 ||
            !(text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
                return -ENOMEM;
        /* Made in the scratch root as it was made, never through a symlink, for the operator
         * (--keep); the run parses this text, never the file again by its path. */
        _cleanup_close_ int fd = openat(scratch->fd, "profile.json",
                                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || aj_write_all(fd, text, strlen(text)) < 0)
                return aj_log_errno(fd < 0 ? -errno : -EIO, "Cannot write the replay's profile '%s'", path);
        _cleanup_(aj_error_clear) AjError err = {};
        AjProfile *p = NULL;
        int r = aj_profile_parse(text, path, &p, &err);
        if (r < 0) {
                aj_error("%s", aj_error_text(&err, r));
                return r;
        }
        bool here = !p->workspace_path || streq(p->workspace_path, ".");
        size_t rw = p->rw.n;
        aj_profile_free(p);
        /* The scratch copy is the workspace; an rw bind is the host's own path, which the
         * replayed tools would write for real (second attacker review). */
        if (rw && !o->force) {
                aj_error("profile '%s': it binds %zu host path(s) read-write (filesystem.rw): the replayed tools would "
                         "write them for real, not a copy; replay under a profile without them, or --force",
                         path, rw);
                return -EPERM;
        }
        if (!here) {
                aj_error("profile '%s': its workspace is not the current directory: a replay runs in a scratch copy "
                         "of the recorded workspace, and would not",
                         path);
                return -EINVAL;
        }
        *ret_path = TAKE_PTR(path);
        *ret_text = TAKE_PTR(text);
        return 0;
}

static int command_of(const AjRun *run, char ***ret)
{
        json_t *cmd = run->rec->shown.command;
        _cleanup_strv_free_ char **argv = NULL;
        size_t i;
        json_t *a;
        json_array_foreach (cmd, i, a) {
                if (!json_is_string(a))
                        return -EBADMSG;
                if (aj_strv_push(&argv, json_string_value(a)) < 0)
                        return -ENOMEM;
        }
        if (!argv) {
                aj_error("run %s recorded no command", run->id);
                return -ENODATA;
        }
        *ret = TAKE_PTR(argv);
        return 0;
}

/* The run itself, its output on our stderr (stdout is the replay's report). */
static int run_replay(const AjRun *run, const AjReplayOptions *o, const char *scratch, int ws_fd, const char *ws,
                      const char *profile, const char *profile_text, char *const *chain, char **argv,
                      AjReplayResult *res)
{
        char id[AJ_RUN_ID_LEN + 1] = "";
        AjRunOptions ro = { .profile = profile,
                            .profile_text = profile_text,
                            .name = run->rec->name,
                            .verbose = o->verbose,
                            .tty = AJ_TTY_NEVER,
                            .argv = argv,
                            .replay_dir = run->dir,
                            .replay_of = run->id,
                            .replay_live = o->live,
                            .scratch_root = scratch,
                            .profile_chain = chain,
                            .ret_run_id = id };
        if (o->caps && !(ro.caps = aj_strv_copy(o->caps)))
                return -ENOMEM;
        _cleanup_close_ int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (here < 0 || saved_out < 0 || fchdir(ws_fd) < 0) {
                aj_strv_free(ro.caps);
                return aj_log_errno(-errno, "Cannot enter the scratch workspace '%s'", ws);
        }
        fflush(stdout);
        (void)dup2(STDERR_FILENO, STDOUT_FILENO);
        res->run_status = aj_jail_run(&ro);
        fflush(stdout);
        (void)dup2(saved_out, STDOUT_FILENO);
        if (fchdir(here) < 0)
                aj_warning("Cannot return to the directory replay started in: %s", strerror(errno));
        aj_strv_free(ro.caps);
        if (!id[0]) {
                aj_error("the replay of run %s did not start (exit status %d)", run->id, res->run_status);
                return -ECHILD;
        }
        snprintf(res->replay_id, sizeof(res->replay_id), "%s", id);
        return 0;
}

/* Whether `run` may be replayed at all: its record readable, the run over, not held in
 * quarantine (unless --force). */
static int replayable(const AjRun *run, const AjReplayOptions *o)
{
        if (!run->rec) {
                aj_error("run %s has no readable run.json: %s", run->id, aj_error_text(&run->rec_error, -EBADMSG));
                return -EBADMSG;
        }
        if (!run->rec->exit.present || !run->rec->ended) {
                aj_error("run %s has not ended: a replay needs its whole recording", run->id);
                return -EBUSY;
        }
        /* A quarantined run is held for review: running it again (its tools act again, on
         * the hosts its profile allows) is the operator's explicit choice. */
        if (run->rec->quarantine.present && !run->rec->quarantine.released && !o->force) {
                aj_error("run %s is quarantined (%s): review it first (agentjail inspect), release it, or replay with "
                         "--force",
                         run->id, run->rec->quarantine.cap ? run->rec->quarantine.cap : "breach");
                return -EPERM;
        }
        return 0;
}

/* The diff of the two chains, with what the reader needs beside it. */
static int compare(const AjRun *run, const AjReplayOptions *o, const AjPaths *paths, const char *ws,
                   AjReplayResult *res)
{
        json_auto_t *a = NULL, *b = NULL;
        char new_dir[PATH_MAX];
        snprintf(new_dir, sizeof(new_dir), "%s/runs/%s", paths->state_root, res->replay_id);
        int r;
        if ((r = read_chain(run->dir, &a)) < 0 || (r = read_chain(new_dir, &b)) < 0)
                return r;
        r = aj_replay_diff(a, b, &res->diff);
        if (r < 0)
                return aj_log_errno(r, "Cannot compare the chains of %s and %s", run->id, res->replay_id);
        json_object_set_new(res->diff, "replay_of", json_string(run->id));
        json_object_set_new(res->diff, "run", json_string(res->replay_id));
        json_object_set_new(res->diff, "run_status", json_integer(res->run_status));
        json_object_set_new(res->diff, "profile", json_string(o->profile ? o->profile : "(the original's resolved)"));
        json_object_set_new(res->diff, "workspace", o->keep ? json_string(ws) : json_null());
        return 0;
}

int aj_replay_run(const AjReplayOptions *o, AjReplayResult *res)
{
        *res = (AjReplayResult){ .run_status = -1 };
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        int r = aj_paths_resolve(&paths);
        if (r < 0)
                return aj_log_errno(r, "Cannot find a state directory (set AGENTJAIL_STATE_DIR)");
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        _cleanup_free_ char *note = NULL;
        r = aj_runs_find(&paths, o->run, &run, &note);
        if (r < 0) {
                aj_error("no run matches '%s'%s%s", o->run, note ? ": " : "", note ? note : "");
                return r;
        }
        if (note)
                aj_warning("%s", note);
        snprintf(res->original_id, sizeof(res->original_id), "%s", run->id);
        if ((r = replayable(run, o)) < 0)
                return r;
        _cleanup_(aj_error_clear) AjError err = {};
        _cleanup_(aj_replay_recording_freep) AjReplayRecording *recording = NULL;
        r = aj_replay_recording_load(run->dir, &recording, &err);
        if (r < 0) {
                aj_error("%s", aj_error_text(&err, r));
                return r;
        }
        json_t *llm = json_object_get(run->rec->shown.resolved, "llm");
        r = aj_replay_recording_check(recording, run->id, jstr(llm, "record") ?: (llm ? "digest" : NULL), &err);
        if (r < 0 && !(o->force && recording->bodies_kept)) {
                aj_error("%s", aj_error_text(&err, r));
                return r;
        }
        if (r < 0)
                aj_warning("%s", aj_error_text(&err, r));
        const char *source = NULL;
        _cleanup_close_ int source_fd = -1;
        if ((r = starting_workspace(run, o, &source, &source_fd)) < 0)
                return r;
        _cleanup_strv_free_ char **argv = NULL;
        if ((r = command_of(run, &argv)) < 0)
                return r;

        /* The scratch root is agentjail's own (util/scratch.h): made, written and removed
         * through its fds; the replayed run refuses a profile that would hand its agent any of
         * it but the workspace copy (src/sensitive.h AJ_PLACE_EVAL_SCRATCH). */
        const char *base = o->workdir ?: getenv("TMPDIR") ?: "/var/tmp";
        _cleanup_(aj_scratch_done) AjScratch scratch = AJ_SCRATCH_INIT;
        _cleanup_free_ char *ws = NULL, *profile = NULL, *profile_text = NULL, *src_copy = strdup(source);
        _cleanup_strv_free_ char **chain = NULL;
        _cleanup_close_ int ws_fd = -1;
        if (!src_copy)
                return -ENOMEM;
        if ((r = aj_scratch_make(base, "agentjail-replay", &scratch)) < 0)
                return aj_log_errno(r, "Cannot create a scratch directory under '%s'", base);
        const char *leaf = basename(src_copy);
        if (!*leaf || streq(leaf, "/") || streq(leaf, ".") || streq(leaf, "..") || streq(leaf, "profile.json"))
                leaf = "workspace";
        if (asprintf(&ws, "%s/%s", scratch.path, leaf) < 0) {
                r = -ENOMEM;
                goto out;
        }
        struct stat st;
        if (fstat(source_fd, &st) < 0 || (r = aj_scratch_mkdir(scratch.fd, leaf, st.st_mode & 07777, &ws_fd)) < 0 ||
            fchown(ws_fd, st.st_uid, st.st_gid) < 0) {
                r = aj_log_errno(r < 0 ? r : -errno, "Cannot make the scratch workspace '%s'", ws);
                goto out;
        }
        if ((r = copy_tree(source_fd, source, ws_fd, ws)) < 0 ||
            (r = replay_profile(run, o, &scratch, &profile, &profile_text, &chain)) < 0)
                goto out;
        if ((r = run_replay(run, o, scratch.path, ws_fd, ws, profile, profile_text, chain, argv, res)) < 0)
                goto out;

        r = compare(run, o, &paths, ws, res);
out:;
        int r2;
        if (o->keep)
                res->workspace = TAKE_PTR(ws);
        else if ((r2 = aj_scratch_remove(&scratch)) < 0)
                aj_warning("Cannot remove the scratch workspace '%s': %s", scratch.path, strerror(-r2));
        return r;
}
