/* SPDX-License-Identifier: Apache-2.0 */
/* Finding runs in a fixture state dir, their states, event lines, offline release, purge. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "events.h"
#include "host-id-pool.h"
#include "quarantine.h"
#include "rollback.h"
#include "run-record.h"
#include "runs.h"
#include "state.h"
#include "util/fd.h"
#include "util/strv.h"

static char root[64];
static AjPaths paths;

static void setup(void)
{
        snprintf(root, sizeof(root), "/tmp/aj-runs-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        cr_assert_geq(asprintf(&paths.state_root, "%s/state", root), 0);
        cr_assert_geq(asprintf(&paths.runtime_root, "%s/runtime", root), 0);
        char runs[128];
        snprintf(runs, sizeof(runs), "%s/runs", paths.state_root);
        cr_assert_eq(aj_mkdir_p(runs, 0750), 0);
        cr_assert_eq(aj_mkdir_p(paths.runtime_root, 0711), 0);
}

static void teardown(void)
{
        aj_rm_rf(root);
        aj_paths_done(&paths);
}

TestSuite(runs, .init = setup, .fini = teardown);

/* A run dir with a run.json built from a format string (extra members after "name"). */
static void make_run(const char *id, const char *name, const char *started, const char *extra)
{
        char dir[256], text[2048];
        snprintf(dir, sizeof(dir), "%s/runs/%s", paths.state_root, id);
        cr_assert_eq(mkdir(dir, 0750), 0);
        snprintf(text, sizeof(text),
                 "{\"id\":\"%s\",\"name\":\"%s\",\"started\":\"%s\",\"profile\":{\"name\":\"default\"}%s%s}\n", id,
                 name, started, extra && *extra ? "," : "", extra ? extra : "");
        char path[300];
        snprintf(path, sizeof(path), "%s/run.json", dir);
        cr_assert_eq(aj_write_file_atomic(path, text, strlen(text), 0640), 0);
}

static void write_events(const char *id, const char *text)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/runs/%s/events.jsonl", paths.state_root, id);
        cr_assert_eq(aj_write_file_atomic(path, text, strlen(text), 0640), 0);
}

#define EXITED "\"status\":\"exited\",\"supervisor_pid\":1"

/* The run's chain closed at `end`: run.json's anchor set to it. */
static void anchor_run(const char *id, const AjChainEnd *end)
{
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/runs/%s", paths.state_root, id);
        AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_read(dir, &rec, NULL), 0);
        cr_assert_eq(aj_run_record_set_anchor(rec, end, "run.exit"), 0);
        cr_assert_eq(aj_run_record_write(dir, rec), 0);
        aj_run_record_free(rec);
}

Test(runs, find_by_id_prefix_and_name)
{
        make_run("abcd00000001", "triage", "2026-01-01T10:00:00.000000000Z", EXITED);
        make_run("abcd00000002", "triage", "2026-01-01T12:00:00.000000000Z", EXITED);
        make_run("abce00000003", "triage", "2026-01-01T11:00:00.000000000Z", EXITED);
        make_run("123456789abc", "other", "2026-01-01T09:00:00.000000000Z", EXITED);

        AjRun *run = NULL;
        char *note = NULL;
        cr_assert_eq(aj_runs_find(&paths, "abcd00000001", &run, &note), 0);
        cr_assert_str_eq(run->id, "abcd00000001");
        cr_assert_null(note);
        cr_assert_str_eq(json_string_value(json_object_get(run->rec->doc, "name")), "triage");
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "abce", &run, &note), 0, "a unique 4-character prefix");
        cr_assert_str_eq(run->id, "abce00000003");
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "1234567", &run, &note), 0);
        cr_assert_str_eq(run->id, "123456789abc");
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "abcd", &run, &note), -ENOTUNIQ, "two ids start with abcd");
        cr_assert_not_null(note);
        cr_assert(strstr(note, "abcd00000001") && strstr(note, "abcd00000002"), "note lists candidates: %s", note);
        cr_assert_null(strstr(note, "abce00000003"));
        free(note);
        note = NULL;

        cr_assert_eq(aj_runs_find(&paths, "123", &run, &note), -ENOENT, "prefixes need 4 characters");
        cr_assert_eq(aj_runs_find(&paths, "ffff", &run, &note), -ENOENT);
        cr_assert_eq(aj_runs_find(&paths, "nobody", &run, &note), -ENOENT);
        cr_assert_eq(aj_runs_find(&paths, "../runs", &run, &note), -EINVAL);
        cr_assert_eq(aj_runs_find(&paths, "..", &run, &note), -EINVAL);
        cr_assert_eq(aj_runs_find(&paths, "", &run, &note), -EINVAL);

        /* By name: the most recently started one, and the operator is told. */
        cr_assert_eq(aj_runs_find(&paths, "triage", &run, &note), 0);
        cr_assert_str_eq(run->id, "abcd00000002");
        cr_assert_not_null(note);
        cr_assert(strstr(note, "3 runs") && strstr(note, "abcd00000002"), "note: %s", note);
        free(note);
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "other", &run, &note), 0);
        cr_assert_str_eq(run->id, "123456789abc");
        cr_assert_null(note, "one run of that name: nothing to say");
        aj_run_free(run);
}

/* `kill 3f2a` typed for a run since pruned named the newer run that shares its first digits.
 * A verb that acts takes an id prefix of 8+ characters; a shorter one that matches is
 * refused as too short (-ERANGE), saying which run it matched, not taken as a name. */
Test(runs, acting_prefixes_need_8_characters)
{
        make_run("3f2a00000001", "triage", "2026-01-01T10:00:00.000000000Z", EXITED);
        AjRun *run = NULL;
        char *note = NULL;
        cr_assert_eq(aj_runs_find(&paths, "3f2a", &run, &note), 0, "to read, 4 characters do");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a", AJ_RUN_PREFIX_MIN_ACT, &run, &note), -ERANGE);
        cr_assert(note && strstr(note, "'3f2a' matches 1 run: 3f2a00000001"), "%s", note ?: "");
        free(note);
        note = NULL;
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a0000", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0);
        cr_assert_str_eq(run->id, "3f2a00000001");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a00000001", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0, "the id");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find_min(&paths, "triage", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0, "a name");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find_min(&paths, "3f2b", AJ_RUN_PREFIX_MIN_ACT, &run, &note), -ENOENT);

        /* A short prefix that is also the name of the one run whose id it starts names that run. */
        make_run("3f2a00000002", "3f2a", "2026-01-01T11:00:00.000000000Z", EXITED);
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/runs/3f2a00000001", paths.state_root);
        cr_assert_eq(aj_rm_rf(dir), 0);
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0);
        cr_assert_str_eq(run->id, "3f2a00000002");
        cr_assert_null(note);
        aj_run_free(run);
}

/* `kill 3f2a`, with a run named 3f2a and another whose id starts 3f2a: which one was meant?
 * A verb that acts refuses, naming both, whatever the prefix's length; the whole id names
 * either. One that reads takes the unique prefix's run (else the name's) and says so. */
Test(runs, a_name_that_is_another_runs_id_prefix_is_ambiguous_to_act_on)
{
        make_run("3f2a00000001", "triage", "2026-01-01T10:00:00.000000000Z", EXITED);
        make_run("bb693dbabf32", "3f2a", "2026-01-01T11:00:00.000000000Z", EXITED);
        make_run("cc693dbabf32", "3f2a0000", "2026-01-01T12:00:00.000000000Z", EXITED);
        AjRun *run = NULL;
        char *note = NULL;
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a", AJ_RUN_PREFIX_MIN_ACT, &run, &note), -ENOTUNIQ, "a short prefix");
        cr_assert(note && strstr(note, "'3f2a' is both a name (of run bb693dbabf32) and an id prefix (of "
                                       "3f2a00000001); give the whole id"),
                  "%s", note ?: "");
        free(note);
        note = NULL;
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a0000", AJ_RUN_PREFIX_MIN_ACT, &run, &note), -ENOTUNIQ,
                     "an 8-character prefix");
        cr_assert(note && strstr(note, "(of run cc693dbabf32)") && strstr(note, "(of 3f2a00000001)"), "%s", note ?: "");
        free(note);
        note = NULL;
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a00000001", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0);
        cr_assert_str_eq(run->id, "3f2a00000001");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find_min(&paths, "bb693dbabf32", AJ_RUN_PREFIX_MIN_ACT, &run, &note), 0);
        cr_assert_str_eq(run->id, "bb693dbabf32");
        aj_run_free(run);

        /* To read: the prefix's run, and the operator is told of the other. */
        cr_assert_eq(aj_runs_find(&paths, "3f2a", &run, &note), 0);
        cr_assert_str_eq(run->id, "3f2a00000001");
        cr_assert(note && strstr(note, "also the name of bb693dbabf32; using 3f2a00000001"), "%s", note ?: "");
        aj_run_free(run);
        free(note);
        note = NULL;

        /* A prefix of several runs and a name: to act, refused; to read, the name's run. */
        make_run("3f2a00000003", "x", "2026-01-01T13:00:00.000000000Z", EXITED);
        cr_assert_eq(aj_runs_find_min(&paths, "3f2a", AJ_RUN_PREFIX_MIN_ACT, &run, &note), -ENOTUNIQ);
        cr_assert(note && strstr(note, "(of 3f2a00000001 3f2a00000003)"), "%s", note ?: "");
        free(note);
        note = NULL;
        cr_assert_eq(aj_runs_find(&paths, "3f2a", &run, &note), 0);
        cr_assert_str_eq(run->id, "bb693dbabf32");
        cr_assert(note && strstr(note, "using the run of that name"), "%s", note ?: "");
        aj_run_free(run);
        free(note);
}

Test(runs, list_is_sorted_by_start_and_skips_foreign_entries)
{
        make_run("bbbb00000001", "b", "2026-01-02T00:00:00.5Z", EXITED);
        make_run("aaaa00000001", "a", "2026-01-03T00:00:00Z", EXITED);
        make_run("cccc00000001", "c", "2026-01-01T00:00:00.000000001Z", EXITED);
        char junk[256];
        snprintf(junk, sizeof(junk), "%s/runs/not-a-run", paths.state_root);
        cr_assert_eq(mkdir(junk, 0750), 0);
        snprintf(junk, sizeof(junk), "%s/runs/dddd00000001", paths.state_root);
        cr_assert_eq(mkdir(junk, 0750), 0); /* no run.json: listed */

        AjRun **runs = NULL;
        size_t n = 0;
        cr_assert_eq(aj_runs_list(&paths, &runs, &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_str_eq(runs[0]->id, "dddd00000001", "unknown start sorts first");
        cr_assert_str_eq(runs[1]->id, "cccc00000001");
        cr_assert_str_eq(runs[2]->id, "bbbb00000001");
        cr_assert_str_eq(runs[3]->id, "aaaa00000001");
        cr_assert_eq(runs[1]->started_ns, 1767225600ull * 1000000000ull + 1);
        cr_assert_eq(runs[2]->started_ns, 1767312000ull * 1000000000ull + 500000000ull);
        cr_assert_null(runs[0]->rec);
        /* Its directory held (a run starting: the life lock comes before anything in it):
         * unknown. Nothing holds it: a run whose supervisor died in start-up, lost (prunable;
         * as "unknown" it was kept for good). */
        int life = open(runs[0]->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(life, 0);
        cr_assert_eq(flock(life, LOCK_SH | LOCK_NB), 0);
        aj_run_probe(runs[0], 500);
        cr_assert_str_eq(aj_run_display_state(runs[0]), "unknown");
        close(life);
        aj_run_probe(runs[0], 500);
        cr_assert_str_eq(aj_run_display_state(runs[0]), "lost");
        cr_assert_null(runs[0]->rec_error.message, "a missing run.json is not a malformed one");
        cr_assert_eq(runs[0]->rec_error.err, 0);
        aj_runs_free(runs, n);
}

/* A run.json with a member of the wrong type: listed as unknown, and the reason kept for
 * the operator, naming the file and the member. */
Test(runs, malformed_record_is_unknown_with_a_reason)
{
        make_run("eeee00000001", "e", "2026-01-02T00:00:00Z", "\"status\":[\"exited\"]");
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "eeee00000001", &run, NULL), 0);
        cr_assert_null(run->rec);
        const char *why = run->rec_error.message;
        cr_assert_not_null(why);
        cr_assert_not_null(strstr(why, "eeee00000001/run.json"), "%s", why);
        cr_assert_not_null(strstr(why, "\"status\" is not a string"), "%s", why);
        aj_run_probe(run, 500);
        cr_assert_str_eq(aj_run_display_state(run), "unknown");
        aj_run_free(run);
}

static pid_t dead_pid(void)
{
        pid_t p = fork();
        if (p == 0)
                _exit(0);
        waitpid(p, NULL, 0);
        return p;
}

/* A live process whose comm is "agentjail", like a supervisor. */
static pid_t fake_supervisor(const char *comm)
{
        int pipefd[2];
        cr_assert_eq(pipe(pipefd), 0);
        pid_t p = fork();
        if (p == 0) {
                prctl(PR_SET_NAME, comm);
                close(pipefd[0]);
                (void)!write(pipefd[1], "x", 1);
                pause();
                _exit(0);
        }
        char c;
        close(pipefd[1]);
        cr_assert_eq(read(pipefd[0], &c, 1), 1);
        close(pipefd[0]);
        return p;
}

Test(runs, lost_runs_are_detected)
{
        char extra[256];
        snprintf(extra, sizeof(extra), "\"status\":\"running\",\"supervisor_pid\":%d", (int)dead_pid());
        make_run("aaaa00000001", "dead", "2026-01-01T00:00:00Z", extra);

        pid_t sup = fake_supervisor("agentjail");
        snprintf(extra, sizeof(extra), "\"status\":\"running\",\"state\":\"frozen\",\"supervisor_pid\":%d", (int)sup);
        make_run("aaaa00000002", "alive", "2026-01-01T00:00:00Z", extra);

        pid_t other = fake_supervisor("bash");
        snprintf(extra, sizeof(extra), "\"status\":\"running\",\"supervisor_pid\":%d", (int)other);
        make_run("aaaa00000003", "reused", "2026-01-01T00:00:00Z", extra);

        /* A stale control socket file (nobody listening) does not make a run live. */
        char rt[80];
        cr_assert_lt(snprintf(rt, sizeof(rt), "%s/aaaa00000001", paths.runtime_root), (int)sizeof(rt));
        cr_assert_eq(mkdir(rt, 0700), 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", rt);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);

        AjRun **runs = NULL;
        size_t n = 0;
        cr_assert_eq(aj_runs_list(&paths, &runs, &n), 0);
        cr_assert_eq(n, 3);
        for (size_t i = 0; i < n; i++)
                aj_run_probe(runs[i], 500);
        cr_assert(!runs[0]->live);
        cr_assert_str_eq(aj_run_display_state(runs[0]), "lost", "supervisor gone, no control socket");
        cr_assert_str_eq(aj_run_display_state(runs[1]), "frozen", "supervisor alive: not lost");
        cr_assert_str_eq(aj_run_display_state(runs[2]), "lost", "a reused pid is not a supervisor");
        aj_runs_free(runs, n);
        kill(sup, SIGKILL);
        kill(other, SIGKILL);
        waitpid(sup, NULL, 0);
        waitpid(other, NULL, 0);
}

/* A listening socket at <runtime>/<id>/control.sock, in a directory of `mode`: what serves
 * a run's control socket, here anyone's. It accepts (the backlog) and never answers. */
static int serve_control(const char *id, mode_t mode)
{
        char rt[80];
        cr_assert_lt(snprintf(rt, sizeof(rt), "%s/%s", paths.runtime_root, id), (int)sizeof(rt));
        cr_assert_eq(mkdir(rt, 0700), 0);
        cr_assert_eq(chmod(rt, mode), 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", rt);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(fd, 4), 0);
        return fd;
}

/* A run is live while its live.lock is held, whatever answers on its socket and whoever has
 * its pid. A dead run's socket served in a runtime dir others can write (the checks refuse
 * it: EPERM), or one that never answers, made the run live (and `prune` kept it forever);
 * a live run whose supervisor's pid is not ours to see (another pid namespace) was lost. */
Test(runs, live_is_the_runs_lock_not_its_socket_nor_its_pid)
{
        char extra[256], dir[256];
        /* Dead: the lock released; a process named agentjail has its supervisor's pid now,
         * and its socket is served by someone else, from a directory others can write. */
        pid_t squatter = fake_supervisor("agentjail");
        snprintf(extra, sizeof(extra), "\"status\":\"running\",\"supervisor_pid\":%d", (int)squatter);
        make_run("aaaa00000001", "dead-refused", "2026-01-01T00:00:00Z", extra);
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000001", paths.state_root);
        int fd = -1;
        cr_assert_eq(aj_run_live_hold(dir, &fd), 0);
        close(fd);
        int refused = serve_control("aaaa00000001", 0777);
        /* Dead too, its socket served from a proper directory but never answering. */
        make_run("aaaa00000002", "dead-silent", "2026-01-01T00:00:00Z", "\"status\":\"running\",\"supervisor_pid\":1");
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000002", paths.state_root);
        cr_assert_eq(aj_run_live_hold(dir, &fd), 0);
        close(fd);
        int silent = serve_control("aaaa00000002", 0700);
        /* Live: the lock held; its supervisor's pid means nothing here. */
        snprintf(extra, sizeof(extra), "\"status\":\"running\",\"supervisor_pid\":%d", (int)dead_pid());
        make_run("aaaa00000003", "live", "2026-01-01T00:00:00Z", extra);
        snprintf(dir, sizeof(dir), "%s/runs/aaaa00000003", paths.state_root);
        int held = -1;
        cr_assert_eq(aj_run_live_hold(dir, &held), 0);

        AjRun **runs = NULL;
        size_t n = 0;
        cr_assert_eq(aj_runs_list(&paths, &runs, &n), 0);
        cr_assert_eq(n, 3);
        for (size_t i = 0; i < n; i++)
                aj_run_probe(runs[i], 200);
        cr_expect(!runs[0]->alive && !runs[0]->live, "a refused socket does not make a dead run live");
        cr_expect_eq(runs[0]->probe_error, 0, "nor is it asked");
        cr_expect_str_eq(aj_run_display_state(runs[0]), "lost");
        cr_expect(!runs[1]->alive && !runs[1]->live, "nor does a socket that never answers");
        cr_expect_str_eq(aj_run_display_state(runs[1]), "lost");
        cr_expect(runs[2]->alive, "the lock held: live");
        cr_expect_str_eq(aj_run_display_state(runs[2]), "running", "not lost for a pid we cannot see");
        cr_expect(aj_run_supervisor_alive(runs[2]));
        aj_runs_free(runs, n);

        close(held);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000003", &run, NULL), 0);
        aj_run_probe(run, 200);
        cr_expect(!run->alive, "released: over");
        cr_expect_str_eq(aj_run_display_state(run), "lost");
        aj_run_free(run);
        close(refused);
        close(silent);
        kill(squatter, SIGKILL);
        waitpid(squatter, NULL, 0);
}

static AjRunRecord *record_of(json_t *doc)
{
        AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_from_json(doc, "run.json", &rec, NULL), 0);
        return rec;
}

Test(runs, state_of_prefers_live_then_quarantine)
{
        json_auto_t *exited = json_loads("{\"status\":\"exited\",\"state\":\"exited\"}", 0, NULL);
        json_auto_t *quar = json_loads("{\"status\":\"exited\",\"state\":\"quarantined\","
                                       "\"quarantine\":{\"cap\":\"tokens\",\"released\":false}}",
                                       0, NULL);
        json_auto_t *released = json_loads("{\"status\":\"exited\",\"state\":\"exited\","
                                           "\"quarantine\":{\"cap\":\"tokens\",\"released\":true}}",
                                           0, NULL);
        json_auto_t *old = json_loads("{\"status\":\"exited\"}", 0, NULL);
        json_auto_t *live = json_loads("{\"state\":\"frozen\"}", 0, NULL);

        _cleanup_(aj_run_record_freep) AjRunRecord *exited_r = record_of(exited);
        _cleanup_(aj_run_record_freep) AjRunRecord *quar_r = record_of(quar);
        _cleanup_(aj_run_record_freep) AjRunRecord *released_r = record_of(released);
        _cleanup_(aj_run_record_freep) AjRunRecord *old_r = record_of(old);
        cr_assert_str_eq(aj_run_state_of(exited_r, false, NULL, false), "exited");
        cr_assert_str_eq(aj_run_state_of(quar_r, false, NULL, false), "quarantined");
        cr_assert(aj_run_record_quarantined(quar_r));
        cr_assert_str_eq(aj_run_state_of(released_r, false, NULL, false), "exited");
        cr_assert(!aj_run_record_quarantined(released_r));
        cr_assert_str_eq(aj_run_state_of(old_r, false, NULL, false), "exited", "run.json without state/quarantine");
        cr_assert_str_eq(aj_run_state_of(exited_r, true, live, true), "frozen", "the live answer wins");
        cr_assert_str_eq(aj_run_state_of(NULL, true, NULL, true), "running");
        cr_assert_str_eq(aj_run_state_of(NULL, false, NULL, false), "unknown");
}

Test(runs, event_lines_for_logs)
{
        json_auto_t *ev = json_loads("{\"seq\":12,\"ts\":\"2026-11-23T22:38:56.227036336Z\",\"run\":\"2f38d89ce8e6\","
                                     "\"type\":\"net.connect\",\"bytes\":512,\"host\":\"api.example.com\",\"port\":443,"
                                     "\"allowed\":false,\"why\":\"not in the allowlist\",\"digest\":\"ff\"}",
                                     0, NULL);
        char *line = NULL;
        cr_assert_eq(aj_event_format(ev, &line), 0);
        cr_assert_str_eq(line, "2026-11-23 22:38:56.227    12 net.connect        allowed=false host=api.example.com "
                               "port=443 bytes=512 why=\"not in the allowlist\"");
        free(line);

        json_auto_t *ex =
                json_loads("{\"seq\":2,\"ts\":\"2026-11-23T22:38:56.229368071Z\",\"run\":\"x\","
                           "\"type\":\"run.exit\",\"status\":0,\"code\":0,\"signal\":null,\"reason\":\"exited\","
                           "\"command\":[\"sh\",\"-c\",\"echo hi\"]}",
                           0, NULL);
        cr_assert_eq(aj_event_format(ex, &line), 0);
        cr_assert_str_eq(line, "2026-11-23 22:38:56.229     2 run.exit           reason=exited status=0 code=0 "
                               "signal=null command=[\"sh\",\"-c\",\"echo hi\"]");
        free(line);

        /* Long values are cut, and the line stays one line. */
        char big[1000];
        memset(big, 'y', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        json_auto_t *lg = json_pack("{s:i, s:s, s:s, s:s}", "seq", 3, "ts", "bad", "type", "tool.request", "args", big);
        json_object_set_new(lg, "nl", json_string("a\nb"));
        cr_assert_eq(aj_event_format(lg, &line), 0);
        cr_assert_lt(strlen(line), 400);
        cr_assert_null(strchr(line, '\n'));
        cr_assert(strstr(line, "...") && strstr(line, "nl=\"a\\nb\""), "%s", line);
        free(line);

        cr_assert_eq(aj_event_format(NULL, &line), -EINVAL);

        /* An approval request in `logs` is shown whole: its arguments are what the operator
         * approves, and the agent orders them (a padded first member hid the second). */
        char pad[30001];
        memset(pad, ' ', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = 0;
        json_auto_t *ap = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:s}}", "seq", 9, "ts", "bad", "type",
                                    "approval.requested", "gen_ai.tool.name", "deploy", "gen_ai.tool.call.arguments",
                                    "note", pad, "cmd", "rm -rf /");
        cr_assert_eq(aj_event_format_log(ap, &line), 0);
        cr_assert(strstr(line, "\"cmd\":\"rm -rf /\"}"), "the arguments' end is shown: ...%s",
                  line + strlen(line) - 60);
        cr_assert_null(strchr(line, '\n'));
        free(line);
        /* inspect's summary still cuts it; another event type in `logs` too. */
        cr_assert_eq(aj_event_format(ap, &line), 0);
        cr_assert_lt(strlen(line), 400);
        cr_assert_null(strstr(line, "rm -rf"));
        free(line);
        cr_assert_eq(aj_event_format_log(lg, &line), 0);
        cr_assert_lt(strlen(line), 400);
        free(line);

        json_auto_t *t1 = json_pack("{s:s}", "type", "net.connect");
        json_auto_t *t2 = json_pack("{s:s}", "type", "network.thing");
        json_auto_t *t3 = json_pack("{s:s}", "type", "net");
        cr_assert(aj_event_type_matches(t1, "net"));
        cr_assert(!aj_event_type_matches(t2, "net"), "a prefix matches whole dotted components");
        cr_assert(aj_event_type_matches(t3, "net"));
        cr_assert(aj_event_type_matches(t1, "net.con"), "a prefix may end within the last component");
        cr_assert(aj_event_type_matches(t1, "net."));
        cr_assert(aj_event_type_matches(t1, NULL));
        cr_assert(!aj_event_type_matches(t1, "tool"));
}

Test(runs, meters_summary)
{
        json_auto_t *m = json_loads("{\"tokens\":{\"limit\":50000,\"used\":1200,\"remaining\":48800},"
                                    "\"cost_usd\":{\"limit\":2.0,\"used\":0.0125},"
                                    "\"tool_calls\":{\"limit\":null,\"used\":0},"
                                    "\"input_tokens\":{\"limit\":null,\"used\":900},"
                                    "\"egress_bytes\":{\"limit\":1048576,\"used\":2048},"
                                    "\"future_cap\":{\"limit\":3,\"used\":1}}",
                                    0, NULL);
        _cleanup_free_ char *s = aj_meters_summary(m);
        cr_assert_str_eq(s, "tokens 1200/50000 input_tokens 900 cost $0.01/$2.00 egress 2K/1M future_cap 1/3");
        _cleanup_free_ char *none = aj_meters_summary(NULL);
        cr_assert_str_eq(none, "-");
}

Test(runs, events_tail_append_and_offline_release)
{
        make_run("aaaa00000001", "q", "2026-01-01T00:00:00Z",
                 "\"status\":\"exited\",\"state\":\"quarantined\",\"supervisor_pid\":1,"
                 "\"quarantine\":{\"since\":\"2026-01-01T00:00:01Z\",\"cap\":\"tokens\",\"released\":false}");
        write_events("aaaa00000001",
                     "{\"seq\":1,\"type\":\"run.start\"}\nnot json\n{\"seq\":2,\"type\":\"cap.breach\"}\n"
                     "{\"seq\":3,\"type\":\"quarantine\"}\n");
        AjChainEnd closed = { .count = 3 };
        const char *last = "{\"seq\":3,\"type\":\"quarantine\"}";
        aj_events_line_hash(last, strlen(last), closed.last_hash);
        anchor_run("aaaa00000001", &closed);
        char path[300];
        snprintf(path, sizeof(path), "%s/runs/aaaa00000001/events.jsonl", paths.state_root);
        json_auto_t *tail = NULL;
        cr_assert_eq(aj_events_read_tail(path, 2, &tail), 0);
        cr_assert_eq(json_array_size(tail), 2);
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(tail, 0), "seq")), 2);

        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000001", &run, NULL), 0);
        cr_assert_str_eq(aj_run_display_state(run), "quarantined");
        cr_assert_eq(aj_run_release_offline(run, 4242), 0);
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "aaaa", &run, NULL), 0);
        json_t *q = json_object_get(run->rec->doc, "quarantine");
        cr_assert(json_is_true(json_object_get(q, "released")));
        cr_assert_not_null(json_string_value(json_object_get(q, "released_at")));
        cr_assert_str_eq(json_string_value(json_object_get(q, "cap")), "tokens", "the rest is kept");
        cr_assert_str_eq(json_string_value(json_object_get(run->rec->doc, "state")), "exited");
        cr_assert_str_eq(aj_run_display_state(run), "exited");
        cr_assert_eq(aj_run_release_offline(run, 4242), -EALREADY, "releasing twice");
        json_t *anchor = json_object_get(run->rec->doc, "events");
        cr_assert_eq(json_integer_value(json_object_get(anchor, "count")), 4, "the anchor moved to the release");
        cr_assert_str_eq(json_string_value(json_object_get(anchor, "end")), "quarantine.release");
        aj_run_free(run);

        json_auto_t *after = NULL;
        cr_assert_eq(aj_events_read_tail(path, 1, &after), 0);
        json_t *ev = json_array_get(after, 0);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "quarantine.release");
        cr_assert_eq(json_integer_value(json_object_get(ev, "seq")), 4, "the chain's seq continues");
        cr_assert_eq(json_integer_value(json_object_get(ev, "uid")), 4242);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "run")), "aaaa00000001");
}

/* A dead run `id` whose chain (run.start, tool.request, run.exit) run.json anchors; quarantined. */
static void make_closed_run(const char *id, char path[300])
{
        make_run(id, "t", "2026-01-01T00:00:00Z",
                 EXITED ",\"state\":\"quarantined\","
                        "\"quarantine\":{\"since\":\"2026-01-01T00:00:01Z\",\"cap\":\"tokens\",\"released\":false}");
        snprintf(path, 300, "%s/runs/%s/events.jsonl", paths.state_root, id);
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, id, "run.start", NULL, &end), 0);
        cr_assert_eq(aj_events_append(path, id, "tool.request", json_pack("{s:s}", "gen_ai.tool.name", "rm"), &end), 0);
        cr_assert_eq(aj_events_append(path, id, "run.exit", NULL, &end), 0);
        anchor_run(id, &end);
}

/* The file's text with its last line replaced by `line` (NULL: removed). */
static void replace_last_line(const char *path, const char *line)
{
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        size_t end = len - 1;
        while (end > 0 && text[end - 1] != '\n')
                end--;
        text[end] = 0;
        char *out = NULL;
        cr_assert_geq(asprintf(&out, "%s%s%s", text, line ?: "", line ? "\n" : ""), 0);
        cr_assert_eq(aj_write_file_atomic(path, out, strlen(out), 0640), 0);
        free(out);
        free(text);
}

/* The chain's verdict against run.json as it is now, and the run's anchor. */
static AjChainVerdict verdict_now(const char *id, const char *path, AjRunAnchor *ret_anchor, AjChainCheck *c)
{
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, id, &run, NULL), 0);
        AjChainVerdict v;
        cr_assert_eq(aj_run_verify_chain(run->rec, path, c, &v), 0);
        *ret_anchor = run->rec->anchor;
        ret_anchor->end = NULL;
        aj_run_free(run);
        return v;
}

/* An operator's append to a dead run links to the file's last event and moved run.json's
 * anchor to the new end whatever that last event was: a chain cut, changed or extended
 * after it was closed, which `logs --verify` called broken, verified as intact once a run
 * was released. The anchor moves only from the end it names; else it stays, the event
 * says why ("anchor_kept"), and the chain stays broken. */
Test(runs, an_append_after_a_cut_or_changed_tail_keeps_the_anchor)
{
        char path[300];
        AjRunAnchor before, after;
        AjChainCheck c;

        /* Cut: run.exit removed. The release is made and recorded, after event 2. */
        make_closed_run("aaaa0000000a", path);
        cr_assert_eq(verdict_now("aaaa0000000a", path, &before, &c), AJ_CHAIN_INTACT, "%s", c.problem);
        replace_last_line(path, NULL);
        cr_assert_eq(verdict_now("aaaa0000000a", path, &after, &c), AJ_CHAIN_BROKEN);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa0000000a", &run, NULL), 0);
        cr_assert_eq(aj_run_release_offline(run, 4242), 0);
        aj_run_free(run);
        cr_expect_eq(verdict_now("aaaa0000000a", path, &after, &c), AJ_CHAIN_BROKEN, "still broken: %s", c.problem);
        cr_expect_eq(after.count, 3);
        cr_expect_str_eq(after.last_sha256, before.last_sha256, "the anchor is where the run closed the chain");
        json_auto_t *tail = NULL;
        cr_assert_eq(aj_events_read_tail(path, 1, &tail), 0);
        json_t *ev = json_array_get(tail, 0);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "type")), "quarantine.release");
        cr_expect_eq(json_integer_value(json_object_get(ev, "seq")), 3, "linked to the file's last event");
        json_t *kept = json_object_get(ev, "anchor_kept");
        cr_expect_eq(json_integer_value(json_object_get(kept, "count")), 3);
        cr_expect_str_eq(json_string_value(json_object_get(kept, "last_sha256")) ?: "", before.last_sha256);
        cr_assert_eq(aj_runs_find(&paths, "aaaa0000000a", &run, NULL), 0);
        cr_expect(run->rec->quarantine.released, "the release itself is made");
        aj_run_free(run);

        /* Changed: run.exit rewritten (its prev still fits; only the anchor shows it). Every
         * later append keeps the anchor too. */
        make_closed_run("aaaa0000000b", path);
        (void)verdict_now("aaaa0000000b", path, &before, &c);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        char *last = text + len - 1;
        while (last > text && last[-1] != '\n')
                last--;
        char *edited = NULL;
        cr_assert_geq(asprintf(&edited, "%.*s,\"status\":0}", (int)(text + len - 2 - last), last), 0);
        free(text);
        replace_last_line(path, edited);
        free(edited);
        cr_assert_eq(verdict_now("aaaa0000000b", path, &after, &c), AJ_CHAIN_BROKEN);
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(aj_runs_find(&paths, "aaaa0000000b", &run, NULL), 0);
                cr_assert_eq(aj_run_append_event(run, "workspace.commit_failed", json_pack("{s:i}", "i", i)), 0);
                aj_run_free(run);
                cr_expect_eq(verdict_now("aaaa0000000b", path, &after, &c), AJ_CHAIN_BROKEN, "append %d: %s", i,
                             c.problem);
                cr_expect(after.count == 3 && streq(after.last_sha256, before.last_sha256), "append %d", i);
        }

        /* Extended: an event forged after the end, chained to it. */
        make_closed_run("aaaa0000000c", path);
        (void)verdict_now("aaaa0000000c", path, &before, &c);
        cr_assert_eq(aj_events_append(path, "aaaa0000000c", "tool.result", NULL, NULL), 0, "the forged event");
        cr_assert_eq(aj_runs_find(&paths, "aaaa0000000c", &run, NULL), 0);
        cr_assert_eq(aj_run_release_offline(run, 4242), 0);
        aj_run_free(run);
        cr_expect_eq(verdict_now("aaaa0000000c", path, &after, &c), AJ_CHAIN_BROKEN);
        cr_expect(c.after_anchor && c.bad_seq == 4, "%s", c.problem);
        cr_expect_eq(after.count, 3);
}

#define ALLOW(id) json_pack("{s:s, s:s}", "gen_ai.tool.call.id", id, "verdict", "allow")

/* The journal joins each result with its request, its seq and the last rollback.step for
 * it; recording a step appends to the chain, moves the anchor and fills run.json. */
Test(runs, tool_journal_and_rollback_steps)
{
        make_run("aaaa00000002", "rb", "2026-01-01T00:00:00Z", EXITED);
        char path[300];
        snprintf(path, sizeof(path), "%s/runs/aaaa00000002/events.jsonl", paths.state_root);
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.request",
                                      json_pack("{s:s, s:s, s:{s:i}}", "gen_ai.tool.call.id", "c-1", "gen_ai.tool.name",
                                                "crm.create", "gen_ai.tool.call.arguments", "id", 1),
                                      &end),
                     0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.verdict", ALLOW("c-1"), &end), 0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.result",
                                      json_pack("{s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", "c-1", "status", "ok",
                                                "undo", "tool", "crm.delete"),
                                      &end),
                     0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.request",
                                      json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "c-2", "gen_ai.tool.name",
                                                "crm.create"),
                                      &end),
                     0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.verdict", ALLOW("c-2"), &end), 0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "tool.result",
                                      json_pack("{s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", "c-2", "status", "ok",
                                                "undo", "tool", "crm.delete"),
                                      &end),
                     0);
        cr_assert_eq(aj_events_append(path, "aaaa00000002", "run.exit", NULL, &end), 0);
        anchor_run("aaaa00000002", &end);

        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000002", &run, NULL), 0);
        json_t *calls = NULL;
        cr_assert_eq(aj_run_tool_journal(run, &calls), 0);
        cr_assert_eq(json_array_size(calls), 2);
        json_t *newest = json_array_get(calls, 0);
        cr_expect_str_eq(json_string_value(json_object_get(newest, "gen_ai.tool.call.id")), "c-2");
        cr_expect_eq(json_integer_value(json_object_get(newest, "seq")), 6, "the tool.result's seq");
        cr_expect(json_is_null(json_object_get(newest, "rollback")), "not rolled back yet");

        AjRollbackPlan plan;
        AjRollbackGate gate = { 0 };
        cr_assert_eq(aj_rollback_plan(calls, &gate, &plan, NULL), 0);
        json_decref(calls);
        cr_assert_eq(plan.n, 2);
        AjRollbackOutcome ok = { .result = AJ_ROLLBACK_OK, .exit_code = 0 };
        bool recorded = false;
        cr_assert_eq(aj_run_rollback_record(run, &plan.steps[0], &ok, &recorded), 0);
        cr_expect(recorded);
        AjRollbackOutcome failed = { .result = AJ_ROLLBACK_FAILED, .exit_code = 2 };
        cr_assert_eq(aj_run_rollback_record(run, &plan.steps[1], &failed, &recorded), 0);
        aj_rollback_plan_done(&plan);
        aj_run_free(run);

        cr_assert_eq(aj_runs_find(&paths, "aaaa00000002", &run, NULL), 0);
        cr_expect_eq(run->rec->anchor.count, 9, "the anchor moved to the last step");
        cr_expect_str_eq(run->rec->anchor.end, AJ_ROLLBACK_EVENT);
        cr_expect_eq(run->rec->rollback.n_ok, 1);
        cr_expect_eq(run->rec->rollback.n_failed, 1);
        AjChainCheck check;
        AjChainVerdict verdict;
        cr_assert_eq(aj_run_verify_chain(run->rec, path, &check, &verdict), 0);
        cr_expect_eq(verdict, AJ_CHAIN_INTACT, "%s", check.problem);
        cr_assert_eq(aj_run_tool_journal(run, &calls), 0);
        json_t *rb = json_object_get(json_array_get(calls, 0), "rollback");
        cr_expect_str_eq(json_string_value(json_object_get(rb, "result")), "ok");
        cr_expect_eq(json_integer_value(json_object_get(rb, "seq")), 8);
        rb = json_object_get(json_array_get(calls, 1), "rollback");
        cr_expect_str_eq(json_string_value(json_object_get(rb, "result")), "failed");
        cr_assert_eq(aj_rollback_plan(calls, &gate, &plan, NULL), 0);
        cr_expect_eq(plan.steps[0].action, AJ_ROLLBACK_APPLIED, "the chain says it succeeded");
        cr_expect_eq(plan.steps[1].action, AJ_ROLLBACK_TO_RUN, "the failed one is left");
        aj_rollback_plan_done(&plan);
        json_decref(calls);
        aj_run_free(run);
}

/* The agent chooses the call ids: only the first result of a call the broker allowed is
 * the call's. A result for an id never asked for, for a denied call, for one still awaiting
 * approval, or a second result, is an orphan: no tool, no arguments, never planned. */
Test(runs, tool_journal_takes_only_the_first_result_of_an_allowed_call)
{
        make_run("aaaa00000003", "rb2", "2026-01-01T00:00:00Z",
                 EXITED ",\"events\":{\"count\":5,\"last_sha256\":\"" AJ_EVENTS_GENESIS "\",\"end\":\"run.exit\"}");
        char path[300];
        snprintf(path, sizeof(path), "%s/runs/aaaa00000003/events.jsonl", paths.state_root);
        AjChainEnd end;
#define EV(type, fields) cr_assert_eq(aj_events_append(path, "aaaa00000003", type, fields, &end), 0)
#define REQ(id, tool)                                                                         \
        json_pack("{s:s, s:s, s:{s:i}}", "gen_ai.tool.call.id", id, "gen_ai.tool.name", tool, \
                  "gen_ai.tool.call.arguments", "id", 42)
#define RES(id, st) \
        json_pack("{s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", id, "status", st, "undo", "tool", "crm.delete")
        EV("tool.request", REQ("c-1", "crm.create")); /* 1: denied */
        EV("tool.verdict", json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "c-1", "verdict", "deny"));
        EV("tool.result", RES("c-1", "ok"));   /* 3: orphan, not allowed */
        EV("tool.result", RES("ghost", "ok")); /* 4: orphan, no such call */
        EV("tool.request", REQ("c-2", "crm.create"));
        EV("tool.verdict", ALLOW("c-2"));
        EV("tool.result", RES("c-2", "ok"));          /* 7: the call's */
        EV("tool.result", RES("c-2", "ok"));          /* 8: orphan, reported already */
        EV("tool.request", REQ("c-3", "crm.update")); /* held for approval */
        EV("approval.requested", json_pack("{s:s}", "gen_ai.tool.call.id", "c-3"));
        EV("tool.result", RES("c-3", "ok")); /* 11: orphan, not (yet) allowed */
        EV("approval", json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "c-3", "decision", "approved"));
        EV("tool.verdict", ALLOW("c-3"));
        EV("tool.result", RES("c-3", "error"));       /* 14: the call's */
        EV("tool.request", REQ("c-2", "crm.create")); /* the id reused: a new call */
        EV("tool.verdict", ALLOW("c-2"));
        EV("tool.result", RES("c-2", "ok")); /* 17: the new call's */
        EV("run.exit", NULL);
#undef EV
#undef REQ
#undef RES

        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000003", &run, NULL), 0);
        json_t *calls = NULL;
        cr_assert_eq(aj_run_tool_journal(run, &calls), 0);
        cr_assert_eq(json_array_size(calls), 7, "every tool.result is listed");
        static const struct {
                int seq;
                const char *id, *orphan;
        } want[] = {
                { 17, "c-2", NULL },
                { 14, "c-3", NULL },
                { 11, "c-3", "the call was not allowed" },
                { 8, "c-2", "the call's result was reported already" },
                { 7, "c-2", NULL },
                { 4, "ghost", "no tool call with that id" },
                { 3, "c-1", "the call was not allowed" },
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                json_t *c = json_array_get(calls, i);
                cr_expect_eq(json_integer_value(json_object_get(c, "seq")), want[i].seq, "entry %zu", i);
                cr_expect_str_eq(json_string_value(json_object_get(c, "gen_ai.tool.call.id")), want[i].id);
                const char *orphan = json_string_value(json_object_get(c, "orphan"));
                if (want[i].orphan) {
                        cr_expect_str_eq(orphan ?: "(none)", want[i].orphan, "entry %zu (seq %d)", i, want[i].seq);
                        cr_expect(!json_is_string(json_object_get(c, "gen_ai.tool.name")), "an orphan names no tool");
                } else {
                        cr_expect_null(orphan, "entry %zu (seq %d) is its call's: %s", i, want[i].seq, orphan);
                        cr_expect(json_is_string(json_object_get(c, "gen_ai.tool.name")));
                }
        }

        AjRollbackPlan plan;
        AjRollbackGate gate = { 0 };
        cr_assert_eq(aj_rollback_plan(calls, &gate, &plan, NULL), 0);
        cr_expect_eq(plan.n, 2, "the two allowed calls that reported ok: %zu", plan.n);
        cr_expect_eq(plan.steps[0].result_seq, 17);
        cr_expect_eq(plan.steps[1].result_seq, 7);
        cr_expect_eq(plan.orphans, 4);
        cr_expect_eq(plan.failed_calls, 1, "c-3 reported error: held unless included");
        aj_rollback_plan_done(&plan);
        gate.include_failed = true;
        cr_assert_eq(aj_rollback_plan(calls, &gate, &plan, NULL), 0);
        cr_expect_eq(plan.n, 3, "--include-failed");
        cr_expect_str_eq(plan.steps[1].status, "error");
        cr_expect_str_eq(plan.steps[1].tool, "crm.update");
        aj_rollback_plan_done(&plan);
        json_decref(calls);
        aj_run_free(run);
}

/* While a call waits for the operator, the agent may send other requests under its id: a
 * denied one must not become the approved call in the journal, or its tool (not gated) and
 * its arguments would be what the handler is told the call was, and the undo of the gated
 * call would run without --approve. The approved call's own request is the held one; an
 * immediate verdict answers the request just before it. */
Test(runs, tool_journal_pairs_an_approval_with_the_held_request)
{
        make_run("aaaa00000004", "rb3", "2026-01-01T00:00:00Z",
                 EXITED ",\"events\":{\"count\":5,\"last_sha256\":\"" AJ_EVENTS_GENESIS "\",\"end\":\"run.exit\"}");
        char path[300];
        snprintf(path, sizeof(path), "%s/runs/aaaa00000004/events.jsonl", paths.state_root);
        AjChainEnd end;
#define EV(type, fields) cr_assert_eq(aj_events_append(path, "aaaa00000004", type, fields, &end), 0)
#define REQ(id, tool, arg)                                                                    \
        json_pack("{s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", id, "gen_ai.tool.name", tool, \
                  "gen_ai.tool.call.arguments", "a", arg)
#define VERDICT(id, tool, v) \
        json_pack("{s:s, s:s, s:s}", "gen_ai.tool.call.id", id, "gen_ai.tool.name", tool, "verdict", v)
#define RES(id, tool)                                                                                              \
        json_pack("{s:s, s:s, s:s, s:{s:s}}", "gen_ai.tool.call.id", id, "gen_ai.tool.name", tool, "status", "ok", \
                  "undo", "tool", "noop")
        EV("tool.request", REQ("X", "payments.refund", "held")); /* held */
        EV("approval.requested",
           json_pack("{s:s, s:s}", "gen_ai.tool.call.id", "X", "gen_ai.tool.name", "payments.refund"));
        EV("tool.request", REQ("X", "zzz.other", "forged")); /* denied at once: not in tools.allow */
        EV("tool.verdict", VERDICT("X", "zzz.other", "deny"));
        EV("approval", json_pack("{s:s, s:s, s:s}", "gen_ai.tool.call.id", "X", "gen_ai.tool.name", "payments.refund",
                                 "decision", "approved"));
        EV("tool.verdict", VERDICT("X", "payments.refund", "allow"));
        EV("tool.result", RES("X", "payments.refund")); /* 7: the approved call's */
        /* A verdict that follows no request of its call: nothing the journal vouches for. */
        EV("tool.request", REQ("Y", "search", "y"));
        EV("tool.request", REQ("Z", "search", "z"));
        EV("tool.verdict", VERDICT("Y", "search", "allow"));
        EV("tool.result", RES("Y", "search")); /* 11: orphan */
        EV("run.exit", NULL);
#undef EV
#undef REQ
#undef VERDICT
#undef RES

        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000004", &run, NULL), 0);
        json_t *calls = NULL;
        cr_assert_eq(aj_run_tool_journal(run, &calls), 0);
        cr_assert_eq(json_array_size(calls), 2);
        json_t *y = json_array_get(calls, 0);
        cr_expect_eq(json_integer_value(json_object_get(y, "seq")), 11);
        cr_expect_str_eq(json_string_value(json_object_get(y, "orphan")) ?: "(none)", "the call was not allowed");
        json_t *x = json_array_get(calls, 1);
        cr_expect_eq(json_integer_value(json_object_get(x, "seq")), 7);
        cr_expect_null(json_object_get(x, "orphan"), "the approved call's result");
        cr_expect_str_eq(json_string_value(json_object_get(x, "gen_ai.tool.name")) ?: "(none)", "payments.refund",
                         "the tool the operator approved, not the denied request's");
        json_auto_t *args = aj_run_journal_value(x, "gen_ai.tool.call.arguments");
        cr_expect_str_eq(json_string_value(json_object_get(args, "a")) ?: "(none)", "held");

        char *patterns[] = { "payments.*" };
        AjRollbackGate gate = { .patterns = patterns, .n_patterns = 1 };
        AjRollbackPlan plan;
        cr_assert_eq(aj_rollback_plan(calls, &gate, &plan, NULL), 0);
        cr_assert_eq(plan.n, 1);
        cr_expect_eq(plan.steps[0].action, AJ_ROLLBACK_HELD, "the undo of the approved payment waits for --approve");
        aj_rollback_plan_done(&plan);
        json_decref(calls);
        aj_run_free(run);
}

Test(runs, remove_dir_stays_inside_the_state_dir)
{
        make_run("aaaa00000001", "x", "2026-01-01T00:00:00Z", EXITED);
        write_events("aaaa00000001", "{}\n");
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000001", &run, NULL), 0);

        /* A record tampered to point elsewhere is refused. */
        char outside[256];
        snprintf(outside, sizeof(outside), "%s/precious", root);
        cr_assert_eq(mkdir(outside, 0700), 0);
        char *saved = run->dir;
        run->dir = outside;
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EPERM);
        run->dir = saved;
        cr_assert_eq(access(outside, F_OK), 0);

        cr_assert_eq(aj_run_remove_dir(&paths, run), 0);
        cr_assert_eq(access(run->dir, F_OK), -1);
        aj_run_free(run);

        /* A run "directory" that is a symlink to somewhere else is refused. */
        char link[256];
        snprintf(link, sizeof(link), "%s/runs/bbbb00000001", paths.state_root);
        cr_assert_eq(symlink(outside, link), 0);
        run = calloc(1, sizeof(*run));
        run->id = strdup("bbbb00000001");
        run->dir = strdup(link);
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EPERM);
        cr_assert_eq(access(outside, F_OK), 0);
        aj_run_free(run);
        cr_assert_eq(aj_runs_find(&paths, "bbbb00000001", &run, NULL), -ENOTDIR, "a symlink is not a run");
}

/* A starting run (its directory made, no run.json yet, no control socket) looks like a dead
 * run of unknown state to the operators' checks; `quarantine purge` removed it under its
 * supervisor, which went on without records, found by no verb. The directory's life lock
 * says it lives: held shared by the supervisor and the watchdogs it forks (the watchdog
 * alone after a SIGKILL, while it writes supervisor.lost), let go of for all of them at
 * the run's end. */
Test(runs, remove_dir_leaves_a_run_its_supervisor_holds)
{
        char *dir = NULL;
        int life = -1;
        cr_assert_eq(aj_run_dir_create(&paths, "aaaa00000003", &dir, &life), 0);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000003", &run, NULL), 0);
        cr_assert_null(run->rec, "no run.json yet");
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EBUSY, "a starting run's directory stays");
        cr_assert_eq(access(dir, F_OK), 0);

        /* A watchdog forked since keeps it after a supervisor killed without letting go. */
        pid_t watchdog = fork();
        cr_assert_geq(watchdog, 0);
        if (watchdog == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                pause();
                _exit(0);
        }
        close(life); /* the supervisor is gone, without a word */
        life = -1;
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EBUSY, "nor while its watchdog is there");
        kill(watchdog, SIGKILL);
        waitpid(watchdog, NULL, 0);
        cr_assert_eq(aj_run_remove_dir(&paths, run), 0, "then it goes");
        cr_assert_eq(access(dir, F_OK), -1);
        aj_run_free(run);
        free(dir);

        /* At a run's end the supervisor lets go for every holder: a watchdog still
         * exiting does not keep `quarantine purge` of the killed run from removing it. */
        cr_assert_eq(aj_run_dir_create(&paths, "aaaa00000004", &dir, &life), 0);
        watchdog = fork();
        cr_assert_geq(watchdog, 0);
        if (watchdog == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                pause();
                _exit(0);
        }
        aj_run_dir_unhold(&life, false);
        cr_assert_eq(aj_runs_find(&paths, "aaaa00000004", &run, NULL), 0);
        cr_assert_eq(aj_run_remove_dir(&paths, run), 0, "let go of: removed, the watchdog still there");
        kill(watchdog, SIGKILL);
        waitpid(watchdog, NULL, 0);
        aj_run_free(run);
        free(dir);
}

/* Two operators each found the dead run (run.json read), then changed it one after the
 * other: the second wrote back the run.json it had read, and the first's change was gone
 * (here the release: the run read as quarantined again, the chain saying released). */
Test(runs, offline_changes_start_from_run_json_as_it_is)
{
        const char *id = "aaaa00000005";
        char dir[256], path[300];
        snprintf(dir, sizeof(dir), "%s/runs/%s", paths.state_root, id);
        cr_assert_eq(mkdir(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, id, "run.start", NULL, &end), 0);
        cr_assert_eq(aj_events_append(path, id, "quarantine", json_pack("{s:s}", "cap", "tokens"), &end), 0);
        cr_assert_eq(aj_events_append(path, id, "run.exit", NULL, &end), 0);
        char text[2048], rj[300];
        snprintf(text, sizeof(text),
                 "{\"id\":\"%s\",\"name\":\"two-ops\",\"started\":\"2026-01-01T00:00:00Z\","
                 "\"profile\":{\"name\":\"default\"}," EXITED ",\"state\":\"quarantined\","
                 "\"quarantine\":{\"since\":\"2026-01-01T00:00:01Z\",\"cap\":\"tokens\",\"released\":false},"
                 "\"workspace\":{\"mode\":\"overlay\",\"path\":\"/nonexistent\",\"changes\":\"pending\"},"
                 "\"events\":{\"count\":%llu,\"last_sha256\":\"%s\",\"end\":\"run.exit\"}}\n",
                 id, (unsigned long long)end.count, end.last_hash);
        snprintf(rj, sizeof(rj), "%s/run.json", dir);
        cr_assert_eq(aj_write_file_atomic(rj, text, strlen(text), 0640), 0);

        AjRun *first = NULL, *second = NULL;
        cr_assert_eq(aj_runs_find(&paths, id, &first, NULL), 0);
        cr_assert_eq(aj_runs_find(&paths, id, &second, NULL), 0);
        cr_assert_eq(aj_run_release_offline(first, 4242), 0);
        bool recorded = false;
        cr_assert_eq(aj_run_decide_workspace(second, "discarded", json_object(), &recorded), 0);
        cr_assert(recorded);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, id, &run, NULL), 0);
        cr_expect(run->rec->quarantine.released, "the first operator's release is still in run.json");
        aj_run_free(run);
        cr_expect_eq(aj_run_release_offline(second, 4343), -EALREADY, "released already, by the first");
        aj_run_free(first);
        aj_run_free(second);

        cr_assert_eq(aj_runs_find(&paths, id, &run, NULL), 0);
        cr_expect_str_eq(run->rec->workspace.changes ?: "(none)", "discarded", "and so is the second's decision");
        cr_expect_str_eq(aj_run_display_state(run), "exited");
        AjChainCheck check;
        AjChainVerdict verdict;
        cr_assert_eq(aj_run_verify_chain(run->rec, path, &check, &verdict), 0);
        cr_expect_eq(verdict, AJ_CHAIN_INTACT, "%s", check.problem);
        cr_expect_eq(run->rec->anchor.count, 5, "the anchor at the second change");
        aj_run_free(run);
}

/* `quarantine release` of `id` in a child process: its pid. */
static pid_t release_in_child(const char *id, int close_fd)
{
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(close_fd);
                AjRun *run = NULL;
                if (aj_runs_find(&paths, id, &run, NULL) < 0)
                        _exit(2);
                _exit(aj_run_release_offline(run, 4242) == 0 ? 0 : 1);
        }
        return pid;
}

/* Two changes at once each appended from the chain's last line: two events with one seq,
 * a chain `logs --verify` calls broken and `rollback --apply` will not plan from. A change
 * waits for the records' lock another holds; and for a reader's (`logs --verify`, the
 * rollback's plan), which reads run.json's anchor and the chain as one. */
Test(runs, offline_changes_wait_for_each_other)
{
        const char *id = "aaaa00000006";
        char dir[256], path[300];
        snprintf(dir, sizeof(dir), "%s/runs/%s", paths.state_root, id);
        cr_assert_eq(mkdir(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, id, "run.start", NULL, &end), 0);
        cr_assert_eq(aj_events_append(path, id, "run.exit", NULL, &end), 0);
        char text[2048], rj[300];
        snprintf(text, sizeof(text),
                 "{\"id\":\"%s\",\"name\":\"two-ops\",\"started\":\"2026-01-01T00:00:00Z\","
                 "\"profile\":{\"name\":\"default\"}," EXITED ",\"state\":\"quarantined\","
                 "\"quarantine\":{\"since\":\"2026-01-01T00:00:01Z\",\"cap\":\"tokens\",\"released\":false},"
                 "\"events\":{\"count\":%llu,\"last_sha256\":\"%s\",\"end\":\"run.exit\"}}\n",
                 id, (unsigned long long)end.count, end.last_hash);
        snprintf(rj, sizeof(rj), "%s/run.json", dir);
        cr_assert_eq(aj_write_file_atomic(rj, text, strlen(text), 0640), 0);

        int held = -1;
        cr_assert_eq(aj_events_lock(path, true, &held), 0, "another operator's change under way");
        pid_t other = release_in_child(id, held);
        usleep(300 * 1000);
        int status = 0;
        cr_expect_eq(waitpid(other, &status, WNOHANG), 0, "the release waits for the lock");
        AjChainCheck check;
        cr_assert_eq(aj_events_verify(path, 0, NULL, &check), 0);
        cr_expect_eq(check.count, 2, "nothing appended meanwhile");
        close(held);
        cr_assert_eq(waitpid(other, &status, 0), other);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "then it is made");
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, id, &run, NULL), 0);
        AjChainVerdict verdict;
        cr_assert_eq(aj_run_verify_chain(run->rec, path, &check, &verdict), 0);
        cr_expect_eq(verdict, AJ_CHAIN_INTACT, "%s", check.problem);
        cr_expect_eq(check.count, 3);

        /* A reader holds it shared: run.json read again under it, a change waits. */
        cr_assert_eq(aj_write_file_atomic(rj, text, strlen(text), 0640), 0); /* quarantined again */
        cr_assert_eq(aj_run_lock_records(run, false, &held), 0);
        cr_expect(!run->rec->quarantine.released, "run.json as it is now");
        other = release_in_child(id, held);
        usleep(300 * 1000);
        cr_expect_eq(waitpid(other, &status, WNOHANG), 0, "a change waits for the reader");
        close(held);
        cr_assert_eq(waitpid(other, &status, 0), other);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        aj_run_free(run);
}

Test(runs, timestamps_and_ages)
{
        uint64_t ns;
        cr_assert_eq(aj_parse_timestamp("2026-11-23T21:59:20.000000123Z", &ns), 0);
        cr_assert_eq(ns, 1795471160ull * 1000000000ull + 123);
        cr_assert_eq(aj_parse_timestamp("2026-11-23T21:59:20Z", &ns), 0);
        cr_assert_eq(aj_parse_timestamp("2026-11-23 21:59:20", &ns), -EINVAL);
        cr_assert_eq(aj_parse_timestamp("2026-11-23T21:59:20.5+01:00", &ns), -EINVAL);
        char b[32];
        cr_assert_str_eq(aj_format_age(45, b, sizeof(b)), "45s");
        cr_assert_str_eq(aj_format_age(720, b, sizeof(b)), "12m");
        cr_assert_str_eq(aj_format_age(3 * 3600 + 5 * 60, b, sizeof(b)), "3h05m");
        cr_assert_str_eq(aj_format_age(4 * 86400 + 7 * 3600, b, sizeof(b)), "4d07h");
}

/* Runs `line` in sh with agentjail() printing its arguments one per line; returns the output. */
static char *sh_words(const char *dir, const char *line)
{
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                dup2(p[1], 1);
                close(p[0]);
                if (chdir(dir) < 0)
                        _exit(126);
                execl("/bin/sh", "sh", "-c", "agentjail() { printf '%s\\n' \"$@\"; }; eval \"$1\"", "sh", line,
                      (char *)NULL);
                _exit(127);
        }
        close(p[1]);
        static char out[4096];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof(out) - 1 && (n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
                len += (size_t)n;
        out[len] = '\0';
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        return out;
}

/* approval.json's "approve" and "deny" lines, run by a shell (an operator pasting them, an
 * alert script), pass the agent's call id as one word and run nothing of it. */
Test(runs, approval_commands_quote_the_call_id)
{
        static const char *const ids[] = { "a-1",    "x';touch${IFS}PWNED;'", "'",
                                           "a'b''c", "$(touch${IFS}PWNED)",   "`touch${IFS}PWNED`",
                                           "\\'\"",  "\";touch${IFS}PWNED;\"" };
        const char *digest = "3f5c0000000000000000000000000000000000000000000000000000000000ab";
        char dir[] = "/tmp/aj-approval.XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                char *approve = NULL, *deny = NULL;
                cr_assert_eq(aj_approval_commands("8c2dc5eb2307", ids[i], digest, &approve, &deny), 0);
                char want[1024];
                snprintf(want, sizeof(want), "approve\n8c2dc5eb2307\n%s\n--digest\n%s\n", ids[i], digest);
                cr_expect_str_eq(sh_words(dir, approve), want, "approve line for call id <%s>: %s", ids[i], approve);
                snprintf(want, sizeof(want), "deny\n8c2dc5eb2307\n%s\n--reason\nTEXT\n", ids[i]);
                cr_expect_str_eq(sh_words(dir, deny), want, "deny line for call id <%s>: %s", ids[i], deny);
                free(approve);
                free(deny);
        }
        char pwned[64];
        snprintf(pwned, sizeof(pwned), "%s/PWNED", dir);
        cr_expect_neq(access(pwned, F_OK), 0, "a call id ran a command");
        (void)unlink(pwned);
        cr_assert_eq(rmdir(dir), 0);
}

/* A run directory is never seen without its life lock: `ps` and `prune` probe that lock
 * exclusively (aj_run_display_state's "lost", aj_run_remove_dir), and one that came between
 * the directory's mkdir and the supervisor's flock made the run fail to start (EWOULDBLOCK),
 * or showed it "lost" and let `prune` remove it. Here a prober spins on each next run's
 * path, probing (or holding, as prune's removal does) as soon as it opens. */
Test(runs, a_run_dir_appears_already_held)
{
        enum { N = 300 };
        int ready[2];
        cr_assert_eq(pipe(ready), 0);
        pid_t prober = fork();
        cr_assert_geq(prober, 0);
        if (prober == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ready[0]);
                int bad = 0;
                for (int i = 0; i < N; i++) {
                        char dir[256];
                        snprintf(dir, sizeof(dir), "%s/runs/bbbb%08x", paths.state_root, (unsigned)i);
                        if (i == 0)
                                (void)!write(ready[1], "r", 1);
                        int fd;
                        while ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
                                ;
                        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                                bad++; /* unheld: a lost run to ps, prunable to prune */
                                usleep(200);
                        }
                        close(fd);
                }
                _exit(bad > 0 ? 1 : 0);
        }
        close(ready[1]);
        char c;
        cr_assert_eq(read(ready[0], &c, 1), 1);
        close(ready[0]);
        int failed = 0, lives[N];
        for (int i = 0; i < N; i++) {
                char id[16], *dir = NULL;
                int life = -1;
                snprintf(id, sizeof(id), "bbbb%08x", (unsigned)i);
                usleep(100);
                int r = aj_run_dir_create(&paths, id, &dir, &life);
                if (r < 0) {
                        failed++;
                        /* the prober waits on this one's path */
                        char path[256];
                        snprintf(path, sizeof(path), "%s/runs/%s", paths.state_root, id);
                        cr_assert_eq(mkdir(path, 0700), 0);
                }
                lives[i] = life; /* held until the prober has looked */
                free(dir);
        }
        int status = 0;
        cr_assert_eq(waitpid(prober, &status, 0), prober);
        for (int i = 0; i < N; i++)
                aj_run_dir_unhold(&lives[i], false);
        cr_expect_eq(failed, 0, "%d of %d runs failed to start under a probe", failed, N);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a run directory was seen unheld");
}

/* A run whose directory is made, before its supervisor holds live.lock (none yet, or made
 * and not yet locked), is alive: the life lock says so. `kill` of it waited only while
 * live.lock was held, and in those syscalls said "not live" and killed nothing. */
Test(runs, a_starting_run_is_alive_before_its_live_lock)
{
        char *dir = NULL;
        int life = -1;
        cr_assert_eq(aj_run_dir_create(&paths, "cccc00000001", &dir, &life), 0);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "cccc00000001", &run, NULL), 0);
        cr_assert(aj_run_supervisor_alive(run), "no live.lock yet: alive by its life lock");
        char path[300];
        snprintf(path, sizeof(path), "%s/" AJ_RUN_FILE_LIVE, dir);
        int live = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(live, 0);
        cr_assert(aj_run_supervisor_alive(run), "live.lock made, not yet locked: alive");
        cr_assert_str_neq(aj_run_display_state(run), "lost");
        close(live);
        aj_run_dir_unhold(&life, false);
        cr_assert_not(aj_run_supervisor_alive(run), "nothing holds it: not alive");
        cr_assert_str_eq(aj_run_display_state(run), "lost");
        aj_run_free(run);
        free(dir);
}

/* `ps` asked the life lock twice for a run without run.json (once to tell whether it is
 * alive, again for its state): the state shown is the one the probe's look found, not a
 * second look that may tell otherwise. */
Test(runs, the_probes_look_at_the_life_lock_is_the_one_shown)
{
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/runs/cccc00000002", paths.state_root);
        cr_assert_eq(mkdir(dir, 0750), 0);
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "cccc00000002", &run, NULL), 0);
        aj_run_probe(run, 500);
        cr_assert_not(run->alive, "nothing holds it");
        cr_assert_eq(run->life, 0, "the probe's look");
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(flock(fd, LOCK_SH | LOCK_NB), 0); /* held since */
        cr_assert_str_eq(aj_run_display_state(run), "lost", "the state of what the probe saw");
        aj_run_free(run);
        cr_assert_eq(aj_runs_find(&paths, "cccc00000002", &run, NULL), 0);
        cr_assert_str_eq(aj_run_display_state(run), "unknown", "unprobed: one look, now");
        aj_run_free(run);
        close(fd);
}

static void make_runtime_dir(const char *id)
{
        char rt[256];
        snprintf(rt, sizeof(rt), "%s/%s", paths.runtime_root, id);
        cr_assert_eq(mkdir(rt, 0700), 0);
        snprintf(rt, sizeof(rt), "%s/%s/jail", paths.runtime_root, id);
        cr_assert_eq(mkdir(rt, 0700), 0);
}

static bool runtime_dir_exists(const char *id)
{
        char rt[256];
        struct stat st;
        snprintf(rt, sizeof(rt), "%s/%s", paths.runtime_root, id);
        return lstat(rt, &st) == 0;
}

/* A run's runtime dir (and cgroup) is named by its id alone, in a runtime root that several
 * state directories share: a copy of a live run's directory in another state directory is
 * dead by its own locks, and its reap removed the live run's runtime dir (and killed its
 * cgroup: integ-cleanup). The supervisor holds its runtime dir for its life; a reap or a
 * removal of the run takes it first, and leaves it while it is held. */
Test(runs, a_reap_leaves_a_runtime_dir_its_supervisor_holds)
{
        make_run("dddd00000009", "copy", "2026-01-01T00:00:00Z", "\"status\":\"running\",\"supervisor_pid\":1");
        make_runtime_dir("dddd00000009");
        char rt[256];
        snprintf(rt, sizeof(rt), "%s/dddd00000009", paths.runtime_root);
        int held = -1;
        cr_assert_eq(aj_runtime_dir_hold(rt, false, &held), 0, "as the live run's supervisor does");
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "dddd00000009", &run, NULL), 0);
        AjRunRemains left = { 0 };
        cr_assert_eq(aj_run_remains(&paths, run, &left), 0);
        cr_assert_not_null(left.runtime_dir);
        cr_assert(left.in_use, "what ps shows: in use, as the reap finds it");
        aj_run_remains_done(&left);
        AjRunReaped reaped;
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), -EBUSY);
        cr_assert(reaped.found.in_use, "what prune says");
        aj_run_reaped_done(&reaped);
        cr_assert(runtime_dir_exists("dddd00000009"), "the live run's runtime dir is left");
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EBUSY, "nor is the copy removed");
        cr_assert(runtime_dir_exists("dddd00000009"));
        close(held);
        cr_assert_eq(aj_run_remains(&paths, run, &left), 0);
        cr_assert_not(left.in_use, "its supervisor gone: prune reaps it");
        cr_assert(runtime_dir_exists("dddd00000009"), "ps's look let it be");
        aj_run_remains_done(&left);
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), 0, "its supervisor gone: reaped");
        cr_assert_not(runtime_dir_exists("dddd00000009"));
        aj_run_reaped_done(&reaped);
        aj_run_free(run);
}

/* A run whose supervisor and watchdog were both killed left its runtime dir (and its cgroup,
 * which a unit test cannot make): reaped, and recorded as its watchdog would have, closing
 * its chain; never while something of the run holds its directory or its live.lock. */
Test(runs, a_dead_run_is_reaped_and_its_chain_closed)
{
        make_run("dddd00000001", "killed", "2026-01-01T00:00:00Z", "\"status\":\"running\",\"supervisor_pid\":1");
        write_events("dddd00000001", "");
        AjRun *run = NULL;
        cr_assert_eq(aj_runs_find(&paths, "dddd00000001", &run, NULL), 0);
        char path[300];
        snprintf(path, sizeof(path), "%s/events.jsonl", run->dir);
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, run->id, "run.start", json_object(), &end), 0);
        make_runtime_dir("dddd00000001");

        AjRunRemains rm = { 0 };
        cr_assert_eq(aj_run_remains(&paths, run, &rm), 0);
        cr_assert(aj_run_remains_any(&rm));
        cr_assert_not_null(rm.runtime_dir);
        char what[128];
        cr_assert_str_eq(aj_run_remains_describe(&rm, what, sizeof(what)), "its runtime dir");
        aj_run_remains_done(&rm);

        /* Held: its supervisor (or a watchdog) is there, or it is starting. */
        int life = open(run->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_eq(flock(life, LOCK_SH | LOCK_NB), 0);
        AjRunReaped reaped;
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), -EBUSY);
        cr_assert(runtime_dir_exists("dddd00000001"), "nothing removed under a holder");
        aj_run_reaped_done(&reaped);
        close(life);
        /* Its live.lock held: alive too. */
        int live = -1;
        cr_assert_eq(aj_run_live_hold(run->dir, &live), 0);
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), -EBUSY);
        cr_assert(runtime_dir_exists("dddd00000001"));
        aj_run_reaped_done(&reaped);
        cr_assert_eq(aj_run_remove_dir(&paths, run), -EBUSY, "nor removed");
        aj_run_live_release(live, false);

        cr_assert_eq(aj_run_reap(&paths, run, &reaped), 0);
        cr_assert_not(runtime_dir_exists("dddd00000001"), "its runtime dir is gone");
        cr_assert_str_eq(reaped.event, "supervisor.lost", "the chain nobody closed is closed");
        cr_assert_null(reaped.cgroup_left);
        aj_run_reaped_done(&reaped);
        json_auto_t *tail = NULL;
        cr_assert_eq(aj_events_read_tail(path, 1, &tail), 0);
        json_t *ev = json_array_get(tail, 0);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "supervisor.lost");
        cr_assert_str_eq(json_string_value(json_object_get(ev, "by")), "operator");
        cr_assert_str_eq(json_string_value(json_object_get(ev, "watchdog")), "lost");
        cr_assert_str_eq(json_string_value(json_object_get(ev, "runtime_dir")), "removed");
        cr_assert_str_eq(run->rec->anchor.end, "supervisor.lost");
        AjChainCheck check;
        AjChainVerdict verdict;
        cr_assert_eq(aj_run_verify_chain(run->rec, path, &check, &verdict), 0);
        cr_assert_eq(verdict, AJ_CHAIN_INTACT, "%s", check.problem);

        /* Nothing left: nothing done, nothing recorded. */
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), 0);
        cr_assert_not(aj_run_remains_any(&reaped.found));
        cr_assert_null(reaped.event);
        aj_run_reaped_done(&reaped);

        /* A closed chain: the removal after its end. */
        make_runtime_dir("dddd00000001");
        cr_assert_eq(aj_run_reap(&paths, run, &reaped), 0);
        cr_assert_str_eq(reaped.event, "runtime_dir.removed");
        aj_run_reaped_done(&reaped);
        cr_assert_str_eq(run->rec->anchor.end, "runtime_dir.removed");
        cr_assert_eq(aj_run_verify_chain(run->rec, path, &check, &verdict), 0);
        cr_assert_eq(verdict, AJ_CHAIN_INTACT, "%s", check.problem);

        /* Removing the run takes what it left first. */
        make_runtime_dir("dddd00000001");
        cr_assert_eq(aj_run_remove_dir(&paths, run), 0);
        cr_assert_not(runtime_dir_exists("dddd00000001"));
        aj_run_free(run);
}

/* A supervisor killed between its run directory's mkdir and its rename left runs/.making-ID,
 * which nothing listed nor removed: removed once nothing holds it and it is past the grace;
 * never one its supervisor holds, nor one younger (its supervisor may not have locked it). */
Test(runs, a_directory_being_made_is_removed_only_unheld_and_old)
{
        cr_assert_str_eq(aj_run_making_id(".making-eeee00000001"), "eeee00000001");
        cr_assert_null(aj_run_making_id(".making-nothex"));
        cr_assert_null(aj_run_making_id("eeee00000001"));
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/runs/.making-eeee00000001", paths.state_root);
        cr_assert_eq(mkdir(dir, 0700), 0);
        struct stat st;
        cr_assert_eq(stat(dir, &st), 0);
        uint64_t made = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
        uint64_t later = made + (AJ_RUN_MAKING_GRACE_S + 1) * 1000000000ull;
        cr_assert_eq(aj_run_remove_making(&paths, ".making-eeee00000001", made + 1000000000ull), -EBUSY,
                     "younger than the grace");
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_eq(flock(fd, LOCK_SH | LOCK_NB), 0);
        cr_assert_eq(aj_run_remove_making(&paths, ".making-eeee00000001", later), -EBUSY, "its supervisor holds it");
        close(fd);
        cr_assert_eq(aj_run_remove_making(&paths, "eeee00000001", later), -EPERM, "only such a name");
        char file[300];
        snprintf(file, sizeof(file), "%s/x", dir);
        int f = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        close(f);
        cr_assert_eq(aj_run_remove_making(&paths, ".making-eeee00000001", later), -ENOTEMPTY, "not a supervisor's");
        cr_assert_eq(unlink(file), 0);
        cr_assert_eq(aj_run_remove_making(&paths, ".making-eeee00000001", later), 0);
        cr_assert_neq(stat(dir, &st), 0, "gone");
}

/* ---- cgroups no run directory leads to (run-orphans.c) ---------------------------------- */

#define ORPHAN_ID "eeee0000000a"
static pid_t orphan_child = -1;

static void orphans_teardown(void)
{
        if (orphan_child > 0) {
                kill(orphan_child, SIGKILL);
                waitpid(orphan_child, NULL, 0);
        }
        AjCgroup *cg = NULL;
        if (aj_cgroup_open(ORPHAN_ID, &cg) == 0)
                (void)aj_cgroup_destroy(cg);
        teardown();
}

TestSuite(run_orphans, .init = setup, .fini = orphans_teardown);

/* One pass of aj_run_reap_orphans over the pool `dir`: its one orphan's error (the slot's
 * directories must be the cgroup's), or 1 when there is none. */
static int reap_orphans_once(const char *dir, bool dry_run)
{
        AjRunOrphan *v = NULL;
        size_t n = 0;
        cr_assert_eq(aj_run_reap_orphans(dir, NULL, dry_run, &v, &n, NULL), 0);
        cr_assert_leq(n, 1);
        int r = n ? v[0].error : 1;
        if (n && v[0].error != -EPERM)
                cr_assert_str_eq(v[0].run_id, ORPHAN_ID);
        aj_run_orphans_free(v, n);
        return r;
}

static bool dirs_exist(char *const *dirs)
{
        struct stat st;
        for (char *const *d = dirs; *d; d++)
                if (stat(*d, &st) < 0)
                        return false;
        return true;
}

/* A dead run's cgroup whose run directory is gone kept its host id slot for good: found from
 * the slot's file, left while its creator holds it or a process is in it (never killed),
 * removed once empty, which frees the slot. */
Test(run_orphans, a_cgroup_no_run_leads_to_is_removed_from_its_slot_once_empty)
{
        AjCgroupMode mode = AJ_CGROUP_MODE_NONE;
        if (geteuid() != 0 || aj_cgroup_detect(&mode) < 0 || mode == AJ_CGROUP_MODE_NONE)
                cr_skip_test("needs root and a cgroup hierarchy");
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/pool/host-ids", root);
        AjCgroup *cg = NULL;
        cr_assert_eq(aj_cgroup_create(ORPHAN_ID, NULL, true, &cg, NULL, NULL), 0);
        char **dirs = aj_strv_copy(aj_cgroup_paths(cg));
        cr_assert_not_null(dirs);
        cr_assert_not_null(dirs[0]);
        AjHostIdLease lease = AJ_HOST_ID_LEASE_INIT;
        unsigned long id = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &lease, &id, NULL), 0);
        /* Its run directory, in this state directory, is there: its prune's to reap. */
        char run_dir[128];
        snprintf(run_dir, sizeof(run_dir), "%s/runs/" ORPHAN_ID, paths.state_root);
        cr_assert_eq(mkdir(run_dir, 0700), 0);
        cr_assert_eq(aj_host_id_lease_mark(&lease, run_dir, dirs), 0);
        cr_assert_eq(reap_orphans_once(dir, false), 1, "a slot its run holds is no orphan's");
        aj_host_id_lease_release(&lease); /* its watchdog gave up, or was killed */

        cr_assert_eq(reap_orphans_once(dir, false), 1, "its run directory leads to it: no orphan");
        cr_assert_eq(rmdir(run_dir), 0); /* deleted by hand */
        cr_assert_eq(reap_orphans_once(dir, false), -EBUSY, "its creator (a supervisor) holds the cgroup");
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        orphan_child = fork();
        cr_assert_geq(orphan_child, 0);
        if (orphan_child == 0) {
                /* As the jail's init does: the cgroup's lock is its supervisor's alone. Said
                 * once its copy of the lock's fd is closed: until then the cgroup is held (a
                 * reap before it was -EBUSY, under ASan's slower fork now and then). */
                if (dup2(p[1], 3) < 0 || close_range(4, ~0U, 0) < 0 || write(3, "r", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        close(p[1]);
        char ready;
        cr_assert_eq(read(p[0], &ready, 1), 1, "the child closed what it inherited");
        cr_assert_eq(aj_cgroup_attach(cg, orphan_child, false), 0);
        aj_cgroup_free(cg); /* its supervisor killed: nothing removed */
        int r = reap_orphans_once(dir, false);
        cr_assert_eq(r, -ENOTEMPTY, "a process is in it: %s", strerror(-r));
        cr_assert_eq(kill(orphan_child, 0), 0, "and is not killed");
        cr_assert(dirs_exist(dirs));
        AjHostIdLease other = AJ_HOST_ID_LEASE_INIT;
        unsigned long other_id = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &other, &other_id, NULL), 0);
        cr_assert_neq(other_id, id, "the slot stays taken meanwhile");
        aj_host_id_lease_release(&other);

        kill(orphan_child, SIGKILL);
        waitpid(orphan_child, NULL, 0);
        orphan_child = -1;
        close(p[0]);
        /* A slot that does not say whose the cgroup is (an older agentjail's): left. */
        char slot[160];
        snprintf(slot, sizeof(slot), "%s/%lu", dir, id);
        char old[4096];
        int fd = open(slot, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        ssize_t n = read(fd, old, sizeof(old));
        cr_assert_gt(n, 0);
        cr_assert(strncmp(old, "/@/", 3) == 0, "the run directory's line first");
        char blank[4096];
        size_t first = strcspn(old, "\n");
        memset(blank, '\n', first);
        cr_assert_eq(pwrite(fd, blank, first, 0), (ssize_t)first, "its run directory's line blanked");
        cr_assert_eq(reap_orphans_once(dir, false), -ENOLINK);
        cr_assert(dirs_exist(dirs));
        cr_assert_eq(pwrite(fd, old, (size_t)n, 0), n);
        close(fd);
        cr_assert_eq(reap_orphans_once(dir, true), 0, "empty: --dry-run would remove it");
        cr_assert(dirs_exist(dirs), "... and removes nothing");
        cr_assert_eq(reap_orphans_once(dir, false), 0, "empty: removed");
        struct stat st;
        for (char **d = dirs; *d; d++)
                cr_assert(stat(*d, &st) < 0 && errno == ENOENT, "%s is gone", *d);
        cr_assert_eq(reap_orphans_once(dir, false), 1, "nothing kept any more");
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &other, &other_id, NULL), 0);
        cr_assert_eq(other_id, id, "the slot is free");
        aj_host_id_lease_release(&other);

        /* A slot whose lines are not a run's cgroup: left alone, whatever they name. */
        char stray[160];
        snprintf(stray, sizeof(stray), "%s/agentjail/" ORPHAN_ID, root);
        cr_assert_eq(aj_mkdir_p(stray, 0755), 0);
        char *const strays[] = { stray, NULL };
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &other, &other_id, NULL), 0);
        cr_assert_eq(aj_host_id_lease_mark(&other, run_dir, strays), 0);
        aj_host_id_lease_release(&other);
        cr_assert_eq(reap_orphans_once(dir, false), -EPERM, "not a cgroup aj_cgroup_open finds");
        cr_assert_eq(stat(stray, &st), 0, "left alone");
        aj_strv_free(dirs);
}
