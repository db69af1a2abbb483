/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "jansson-budget.h"
#include "runs.h"
#include "util/sha256.h"
#include "state.h"
#include "util/fd.h"
#include "util/macros.h"

/* A new event log in a fresh temporary directory (dir: a mkdtemp template). */
static AjEventLog *open_temp_log(char *dir, char path[256], const char *run_id)
{
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, 256, "%s/events.jsonl", dir);
        AjEventLog *log = NULL;
        cr_assert_eq(aj_events_open(path, run_id, &log), 0);
        return log;
}

Test(events, timestamp_format)
{
        char buf[40];
        aj_format_timestamp(1795471160ull * 1000000000ull + 123, buf, sizeof(buf));
        cr_assert_str_eq(buf, "2026-11-23T21:59:20.000000123Z");
}

/* The date is computed without the C library's calendar (which reads the time zone file):
 * it must agree with gmtime_r() on every day, and parse back to the same instant, from 1970 to 2200 (leap years, centuries, the
 * year 2000 and 2100), at a time of day that moves through the whole day. */
Test(events, timestamp_agrees_with_gmtime)
{
        char buf[64], want[64], base[40];
        for (int64_t day = 0; day < 84000; day++) {
                time_t t = (time_t)(day * 86400 + (day * 7919) % 86400);
                struct tm tm;
                cr_assert_not_null(gmtime_r(&t, &tm));
                strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
                snprintf(want, sizeof(want), "%s.000000007Z", base);
                aj_format_timestamp((uint64_t)t * 1000000000ull + 7, buf, sizeof(buf));
                cr_assert_str_eq(buf, want, "day %lld", (long long)day);
                uint64_t back = 0;
                cr_assert_eq(aj_parse_timestamp(buf, &back), 0, "%s", buf);
                cr_assert_eq(back, (uint64_t)t * 1000000000ull + 7, "%s parsed back", buf);
        }
}

Test(events, chain_is_sequenced_and_complete)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "abc123");
        cr_assert_eq(aj_events_emit(log, "run.start", json_pack("{s:s}", "profile", "default")), 0);
        cr_assert_eq(aj_events_emit(log, "seccomp.denied", json_pack("{s:s, s:i}", "syscall", "ptrace", "nr", 101)), 0);
        cr_assert_eq(aj_events_emit(log, "run.exit", NULL), 0);
        cr_assert_eq(aj_events_last_seq(log), 3);
        aj_events_close(log);

        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        char *save = NULL;
        int n = 0;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_error_t e;
                json_t *ev = json_loads(line, 0, &e);
                cr_assert_not_null(ev, "line %d is not JSON: %s", n + 1, e.text);
                n++;
                cr_assert_eq(json_integer_value(json_object_get(ev, "seq")), n);
                cr_assert_str_eq(json_string_value(json_object_get(ev, "run")), "abc123");
                const char *ts = json_string_value(json_object_get(ev, "ts"));
                cr_assert_not_null(ts);
                cr_assert_eq(strlen(ts), 30, "timestamp '%s' is not RFC 3339 with ns", ts);
                if (n == 2) {
                        cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "seccomp.denied");
                        cr_assert_str_eq(json_string_value(json_object_get(ev, "syscall")), "ptrace");
                }
                json_decref(ev);
        }
        cr_assert_eq(n, 3);
        free(text);
        aj_rm_rf(dir);
}

Test(state, run_ids_are_unique_hex)
{
        char a[AJ_RUN_ID_LEN + 1], b[AJ_RUN_ID_LEN + 1];
        cr_assert_eq(aj_run_id_new(a), 0);
        cr_assert_eq(aj_run_id_new(b), 0);
        cr_assert_eq(strlen(a), AJ_RUN_ID_LEN);
        cr_assert_eq(strspn(a, "0123456789abcdef"), AJ_RUN_ID_LEN);
        cr_assert_str_neq(a, b);
}

Test(state, paths_follow_the_environment)
{
        setenv("AGENTJAIL_STATE_DIR", "/tmp/x-state", 1);
        setenv("AGENTJAIL_RUNTIME_DIR", "/tmp/x-run", 1);
        AjPaths p;
        cr_assert_eq(aj_paths_resolve(&p), 0);
        cr_assert_str_eq(p.state_root, "/tmp/x-state");
        cr_assert_str_eq(p.runtime_root, "/tmp/x-run");
        aj_paths_done(&p);
}

Test(state, runtime_root_problems)
{
        static const struct {
                mode_t mode;
                uid_t uid;
                bool exact;
                const char *want; /* NULL: fine */
        } cases[] = {
                { S_IFDIR | 0700, 1000, true, NULL },
                { S_IFDIR | 0700, 1001, true, "it belongs to another user" },
                { S_IFDIR | 0777, 1000, true, "its mode is not 0700" },
                { S_IFDIR | 01777, 1000, true, "its mode is not 0700" },
                { S_IFDIR | 0750, 1000, true, "its mode is not 0700" },
                { S_IFLNK | 0777, 1000, true, "it is a symlink" },
                { S_IFREG | 0700, 1000, true, "it is not a directory" },
                { S_IFDIR | 0711, 1000, false, NULL }, /* /run/agentjail, XDG_RUNTIME_DIR */
                { S_IFDIR | 0755, 1000, false, NULL },
                { S_IFDIR | 0775, 1000, false, "other users can write to it" },
                { S_IFDIR | 0757, 1000, false, "other users can write to it" },
                { S_IFDIR | 0711, 0, false, "it belongs to another user" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct stat st = { .st_mode = cases[i].mode, .st_uid = cases[i].uid };
                const char *got = aj_runtime_root_problem(&st, 1000, cases[i].exact);
                if (cases[i].want)
                        cr_expect(got && strcmp(got, cases[i].want) == 0, "case %zu: got %s", i, got ? got : "(null)");
                else
                        cr_expect_null(got, "case %zu: got %s", i, got);
        }
}

Test(state, runtime_root_fallback_is_created_private)
{
        char dir[] = "/tmp/aj-rt-XXXXXX", root[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(root, sizeof(root), "%s/agentjail-test", dir);
        AjPaths p = { .runtime_root = root, .runtime_in_tmp = true };
        AjError err = {};
        umask(0);
        cr_assert_eq(aj_runtime_root_prepare(&p, &err), 0, "%s", aj_error_text(&err, 0));
        struct stat st;
        cr_assert_eq(lstat(root, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0700);
        cr_expect_eq(aj_runtime_root_prepare(&p, &err), 0, "an existing private one is reused");
        cr_assert_eq(chmod(root, 0755), 0);
        cr_expect_eq(aj_runtime_root_prepare(&p, &err), -EPERM);
        cr_expect(err.message && strstr(err.message, "its mode is not 0700"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        cr_assert_eq(rmdir(root), 0);
        cr_assert_eq(symlink(dir, root), 0);
        cr_expect_eq(aj_runtime_root_prepare(&p, &err), -EPERM, "a symlink is never followed");
        cr_expect(err.message && strstr(err.message, "it is a symlink"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        unlink(root);
        rmdir(dir);
}

/* AGENTJAIL_RUNTIME_DIR or $XDG_RUNTIME_DIR/agentjail: another user's symlink there (on a
 * shared tmpfs, /dev/shm) to a private directory of ours passed, and could be repointed. */
Test(state, runtime_root_elsewhere_is_never_a_symlink)
{
        char dir[] = "/tmp/aj-rt-XXXXXX", root[64], real[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(root, sizeof(root), "%s/runtime", dir);
        snprintf(real, sizeof(real), "%s/real", dir);
        cr_assert_eq(mkdir(real, 0700), 0);
        cr_assert_eq(symlink(real, root), 0);
        AjPaths p = { .runtime_root = root };
        AjError err = {};
        cr_expect_eq(aj_runtime_root_prepare(&p, &err), -EPERM, "a symlink is never followed");
        cr_expect(err.message && strstr(err.message, "it is a symlink"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        cr_assert_eq(unlink(root), 0);
        cr_expect_eq(aj_runtime_root_prepare(&p, &err), 0, "made here, it is used: %s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        rmdir(root);
        rmdir(real);
        rmdir(dir);
}

/* Doctor called another user's state dir a problem; runs wrote their records there anyway
 * (AGENTJAIL_STATE_DIR=/tmp/x made first: that user swapped a run's directory for theirs). */
Test(state, state_root_must_be_ours)
{
        char dir[] = "/tmp/aj-st-XXXXXX", root[64], real[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(root, sizeof(root), "%s/state", dir);
        snprintf(real, sizeof(real), "%s/real", dir);
        AjPaths p = { .state_root = root };
        AjError err = {};
        struct stat st;

        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_READ, &err), 0, "an operator command: none yet is fine");
        cr_expect_neq(access(root, F_OK), 0, "and is not made");
        umask(0);
        cr_assert_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_eq(lstat(root, &st), 0);
        cr_expect_eq(st.st_mode & 07777, geteuid() == 0 ? 0750 : 0700, "made by a run: %o", st.st_mode & 07777);

        cr_assert_eq(chmod(root, 0777), 0);
        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), -EPERM);
        cr_expect(err.message && strstr(err.message, "other users can write to it"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_READ, &err), -EPERM, "nor read from");
        aj_error_clear(&err);
        cr_assert_eq(chmod(root, 0755), 0);

        if (geteuid() == 0) {
                cr_assert_eq(chown(root, 65534, 65534), 0);
                cr_expect_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), -EPERM,
                             "another user's: no run writes there");
                cr_expect(err.message && strstr(err.message, "belongs to another user"), "%s", aj_error_text(&err, 0));
                aj_error_clear(&err);
                cr_expect_eq(aj_state_root_check(&p, AJ_STATE_READ, &err), 0, "root may read a user's");
                aj_error_clear(&err);
                /* But not run what the user wrote in them (a rollback.exec) as root. */
                cr_expect_eq(aj_state_root_check(&p, AJ_STATE_ACT, &err), -EPERM, "nor act on them");
                cr_expect(err.message && strstr(err.message, "uid 65534's") &&
                                  strstr(err.message, "run it as that user"),
                          "%s", aj_error_text(&err, 0));
                aj_error_clear(&err);
                cr_assert_eq(chown(root, 0, 0), 0);
        }
        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_ACT, &err), 0, "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);

        cr_assert_eq(rmdir(root), 0);
        cr_assert_eq(mkdir(real, 0700), 0);
        cr_assert_eq(symlink(real, root), 0);
        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), -EPERM, "a symlink is never followed");
        cr_expect(err.message && strstr(err.message, "it is a symlink"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        unlink(root);
        rmdir(real);
        rmdir(dir);
}

/* The directories above the state dir: whoever may rename an entry in one of them may put a
 * directory of theirs in the state dir's place after the check (a group-shared project dir
 * holding AGENTJAIL_STATE_DIR: a member swapped in records that `rollback --apply` ran). */
Test(state, state_root_parents_must_be_safe)
{
        char dir[] = "/tmp/aj-stp-XXXXXX", shared[64], root[96];
        cr_assert_not_null(mkdtemp(dir));
        cr_assert_eq(chmod(dir, 0755), 0);
        snprintf(shared, sizeof(shared), "%s/shared", dir);
        snprintf(root, sizeof(root), "%s/state", shared);
        cr_assert_eq(mkdir(shared, 0755), 0);
        cr_assert_eq(mkdir(root, 0700), 0);
        AjPaths p = { .state_root = root };
        AjError err = {};

        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), 0, "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        cr_assert_eq(chmod(shared, 0775), 0);
        for (AjStateUse use = AJ_STATE_READ; use <= AJ_STATE_RUN; use++) {
                cr_expect_eq(aj_state_root_check(&p, use, &err), -EPERM, "a group-writable parent, use %d", use);
                cr_expect(err.message && strstr(err.message, shared) && strstr(err.message, "can write"), "%s",
                          aj_error_text(&err, 0));
                aj_error_clear(&err);
        }
        cr_assert_eq(chmod(shared, 01777), 0);
        cr_expect_eq(aj_state_root_check(&p, AJ_STATE_RUN, &err), 0, "sticky, as /tmp: %s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        if (geteuid() == 0) {
                cr_assert_eq(chmod(shared, 0755), 0);
                cr_assert_eq(chown(shared, 65534, 65534), 0);
                cr_expect_eq(aj_state_root_check(&p, AJ_STATE_ACT, &err), -EPERM, "a parent another user owns");
                cr_expect(err.message && strstr(err.message, "belongs to another user"), "%s", aj_error_text(&err, 0));
                aj_error_clear(&err);
                cr_expect_eq(aj_state_root_check(&p, AJ_STATE_READ, &err), 0, "root may read there");
                aj_error_clear(&err);
        }
        rmdir(root);
        rmdir(shared);
        rmdir(dir);
}

Test(state, run_and_runtime_dirs)
{
        char dir[] = "/tmp/aj-state-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        AjPaths p = { .state_root = dir, .runtime_root = dir };
        char *run_dir = NULL, *rt = NULL;
        int lock = -1, lock2 = -1;
        cr_assert_eq(aj_run_dir_create(&p, "0123456789ab", &run_dir, &lock), 0);
        cr_assert_geq(lock, 0, "the run's life lock");
        cr_assert_eq(aj_run_dir_create(&p, "0123456789ab", &rt, &lock2), -EEXIST, "a run dir is never reused");
        aj_run_dir_unhold(&lock, false);
        cr_assert_eq(lock, -1);
        cr_assert_eq(aj_runtime_dir_create(&p, "0123456789ab", &rt), 0);
        char *mp = NULL;
        cr_assert_eq(aj_root_mountpoint(&p, &mp), 0);
        cr_assert_eq(access(mp, F_OK), 0);
        free(mp);
        cr_assert_eq(aj_root_mountpoint(&p, &mp), 0, "the shared mount point may exist already");

        /* What a run leaves, plus something unexpected: all of it goes. */
        char path[512];
        snprintf(path, sizeof(path), "%s/jail", rt);
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/jail/broker.sock", rt);
        cr_assert_eq(aj_write_file_atomic(path, "", 0, 0600), 0);
        snprintf(path, sizeof(path), "%s/unexpected", rt);
        cr_assert_eq(aj_write_file_atomic(path, "x", 1, 0600), 0);
        cr_assert_eq(aj_runtime_dir_remove(rt), 0);
        cr_assert_neq(access(rt, F_OK), 0);
        /* A run that did not get to its services' end: its sockets are still there, and go by
         * name (the directories tried first find them not empty). */
        cr_assert_eq(mkdir(rt, 0700), 0);
        snprintf(path, sizeof(path), "%s/jail", rt);
        cr_assert_eq(mkdir(path, 0755), 0);
        static const char *const socks[] = { "jail/broker.sock", "control.sock" };
        for (size_t i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", rt, socks[i]);
                cr_assert_eq(aj_write_file_atomic(path, "", 0, 0600), 0);
        }
        cr_assert_eq(aj_runtime_dir_remove(rt), 0);
        cr_assert_neq(access(rt, F_OK), 0);
        free(mp);
        free(run_dir);
        free(rt);
        aj_rm_rf(dir);
}

Test(events, batch_is_written_together_and_in_sequence)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", NULL), 0);
        aj_events_batch_begin(log);
        cr_assert_eq(aj_events_emit(log, "tool.request", json_pack("{s:s}", "gen_ai.tool.name", "x")), 0);
        cr_assert_eq(aj_events_emit(log, "tool.verdict", json_pack("{s:s}", "verdict", "allow")), 0);
        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        cr_assert_null(strstr(text, "tool.request"), "nothing of a batch is written before its end");
        free(text);
        cr_assert_eq(aj_events_batch_end(log), 0);
        cr_assert_eq(aj_events_emit(log, "run.exit", NULL), 0);
        cr_assert_eq(aj_events_last_seq(log), 4);
        aj_events_close(log);
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        const char *want[] = { "\"seq\":1", "\"seq\":2,", "tool.request", "\"seq\":3,", "tool.verdict", "\"seq\":4," };
        const char *p = text;
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                const char *q = strstr(p, want[i]);
                cr_assert_not_null(q, "missing or out of order: %s in\n%s", want[i], text);
                p = q;
        }
        free(text);
        aj_rm_rf(dir);
}

/* Every line is one JSON object with the header first, whatever the fields hold. */
Test(events, lines_stay_valid_json_for_any_fields)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r\"1");

        /* Larger than the line buffer's first size, so it grows mid-line. */
        size_t big_len = 100000;
        char *big = malloc(big_len + 1);
        cr_assert_not_null(big);
        for (size_t i = 0; i < big_len; i++)
                big[i] = (char)('a' + i % 26);
        big[big_len] = 0;
        aj_events_batch_begin(log);
        cr_assert_eq(aj_events_emit(log, "a.big", json_pack("{s:s}", "text", big)), 0);
        cr_assert_eq(aj_events_emit(log, "b.unicode", json_pack("{s:s}", "text", "caf\xc3\xa9 \"q\" \n\x01")), 0);
        cr_assert_eq(aj_events_batch_end(log), 0);
        /* Header fields cannot be overridden by the fields. */
        cr_assert_eq(aj_events_emit(log, "c.reserved", json_pack("{s:i, s:s, s:s}", "seq", 99, "type", "x", "k", "v")),
                     0);
        cr_assert_eq(aj_events_emit(log, "odd \"type\"", json_object()), 0);
        cr_assert_eq(aj_events_emit(log, "e.null", NULL), 0);
        aj_events_close(log);

        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        const char *types[] = { "a.big", "b.unicode", "c.reserved", "odd \"type\"", "e.null" };
        char *save = NULL;
        int n = 0;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
                cr_assert_lt(n, 5);
                cr_assert_eq(strncmp(line, "{\"seq\":", 7), 0, "line %d starts with %.20s", n + 1, line);
                for (const char *c = line; *c; c++)
                        cr_assert_lt((unsigned char)*c, 0x80, "line %d is not ASCII", n + 1);
                json_error_t e;
                json_t *ev = json_loads(line, JSON_REJECT_DUPLICATES, &e);
                cr_assert_not_null(ev, "line %d is not JSON (or has a duplicate key): %s", n + 1, e.text);
                cr_assert_eq(json_integer_value(json_object_get(ev, "seq")), n + 1);
                cr_assert_str_eq(json_string_value(json_object_get(ev, "run")), "r\"1");
                cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), types[n]);
                if (n == 0)
                        cr_assert_str_eq(json_string_value(json_object_get(ev, "text")), big);
                if (n == 1)
                        cr_assert_str_eq(json_string_value(json_object_get(ev, "text")), "caf\xc3\xa9 \"q\" \n\x01");
                if (n == 2)
                        cr_assert_str_eq(json_string_value(json_object_get(ev, "k")), "v");
                json_decref(ev);
        }
        cr_assert_eq(n, 5);
        free(text);
        free(big);
        aj_rm_rf(dir);
}

/* The chain: each "prev" is the sha256 of the line before; a changed, removed or
 * reordered line is found, and so is a cut-off end when run.json's count is known. */
Test(events, chain_links_every_line_and_verify_finds_changes)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_expect_str_eq(aj_events_last_hash(log), AJ_EVENTS_GENESIS);
        cr_assert_eq(aj_events_emit(log, "run.start", json_pack("{s:s}", "profile", "default")), 0);
        aj_events_batch_begin(log);
        cr_assert_eq(aj_events_emit(log, "tool.request", json_pack("{s:s}", "gen_ai.tool.name", "x")), 0);
        cr_assert_eq(aj_events_emit(log, "tool.verdict", json_pack("{s:s}", "verdict", "allow")), 0);
        cr_assert_eq(aj_events_batch_end(log), 0);
        cr_assert_eq(aj_events_emit(log, "run.exit", json_pack("{s:s, s:s}", "prev", "forged", "k", "v")), 0);
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        aj_events_close(log);

        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        /* Each line's prev, recomputed here from the bytes of the line before. */
        char prev[AJ_SHA256_HEX_SIZE] = AJ_EVENTS_GENESIS;
        int n = 0;
        for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1, n++) {
                json_t *ev = json_loadb(line, (size_t)(nl - line), JSON_REJECT_DUPLICATES, NULL);
                cr_assert_not_null(ev, "line %d", n + 1);
                cr_expect_str_eq(json_string_value(json_object_get(ev, "prev")), prev, "line %d", n + 1);
                json_decref(ev);
                aj_events_line_hash(line, (size_t)(nl - line), prev);
        }
        cr_assert_eq(n, 4);
        cr_expect_str_eq(prev, last, "the log's last hash is the last line's");

        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, 4, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.count, 4);
        cr_expect_str_eq(c.last_hash, last);

        /* An appended event (an operator's, on a dead run) continues the chain. */
        cr_assert_eq(aj_events_append(path, "r1", "quarantine.release", json_pack("{s:s}", "by", "operator"), NULL), 0);
        cr_assert_eq(aj_events_verify(path, 4, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.count, 5);

        free(text);
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        /* A changed byte in event 2: event 3's prev no longer fits. */
        char *changed = strdup(text);
        char *x = strstr(changed, "\"gen_ai.tool.name\":\"x\"");
        cr_assert_not_null(x);
        x[strlen("\"gen_ai.tool.name\":\"")] = 'y'; /* still valid JSON, another event */
        FILE *f = fopen(path, "w");
        fputs(changed, f);
        fclose(f);
        cr_assert_eq(aj_events_verify(path, 4, last, &c), 0);
        cr_expect(!c.ok);
        cr_expect_eq(c.bad_seq, 3, "bad_seq %llu: %s", (unsigned long long)c.bad_seq, c.problem);
        free(changed);

        /* The end cut off: only run.json's count shows it. */
        char *cut = strdup(text);
        char *third = strstr(cut, "\"seq\":4,");
        cr_assert_not_null(third);
        third[-1] = 0;
        f = fopen(path, "w");
        fputs(cut, f);
        fclose(f);
        cr_assert_eq(aj_events_verify(path, 0, NULL, &c), 0);
        cr_expect(c.ok, "without run.json's count a cut end cannot be seen");
        cr_assert_eq(aj_events_verify(path, 4, last, &c), 0);
        cr_expect(!c.ok);
        cr_expect(strstr(c.problem, "events were removed") != NULL, "%s", c.problem);
        free(cut);

        /* A line removed from the middle. */
        char *gap = strdup(text);
        char *l2 = strstr(gap, "{\"seq\":2,"), *l3 = strstr(gap, "{\"seq\":3,");
        memmove(l2, l3, strlen(l3) + 1);
        f = fopen(path, "w");
        fputs(gap, f);
        fclose(f);
        cr_assert_eq(aj_events_verify(path, 4, last, &c), 0);
        cr_expect(!c.ok);
        cr_expect_eq(c.bad_seq, 2);
        free(gap);

        free(text);
        aj_rm_rf(dir);
}

/* ---- a line torn by a killed writer ---- */

static void write_text(const char *path, const char *text, const char *mode)
{
        FILE *f = fopen(path, mode);
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
}

/* Line n (from 1) of text, without its newline: a new string. */
static char *nth_line(const char *text, int n)
{
        const char *p = text;
        for (int i = 1; i < n; i++) {
                p = strchr(p, '\n');
                cr_assert_not_null(p, "line %d", n);
                p++;
        }
        return strndup(p, strcspn(p, "\n"));
}

/* A chain of two events, closed; its last hash in last. */
static void two_events(char *dir, char path[256], char last[AJ_SHA256_HEX_SIZE])
{
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", json_pack("{s:s}", "profile", "default")), 0);
        cr_assert_eq(aj_events_emit(log, "tool.request", json_pack("{s:s}", "gen_ai.tool.name", "x")), 0);
        snprintf(last, AJ_SHA256_HEX_SIZE, "%s", aj_events_last_hash(log));
        aj_events_close(log);
}

/* What a write(2) cut short by SIGKILL leaves: the head of the next line, no newline. */
#define TORN_HEAD "{\"seq\":3,\"ts\":\"1999-01-01T00:00:00.1234"

/* The watchdog's supervisor.lost after a supervisor killed in the middle of a line: the
 * torn bytes stay, ended, named by events.torn right after them (their length and hash,
 * chained to the last whole line), and the chain verifies up to its new end. Glued onto
 * the torn bytes, supervisor.lost was neither parsed nor chained, and verify called the
 * chain broken. */
Test(events, a_line_torn_by_a_killed_writer_is_kept_and_named)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256], last[AJ_SHA256_HEX_SIZE];
        two_events(dir, path, last);
        write_text(path, TORN_HEAD, "a");

        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, "r1", "supervisor.lost", json_pack("{s:s}", "action", "x"), &end), 0);
        cr_expect_eq(end.count, 4, "two events, events.torn, supervisor.lost: %llu", (unsigned long long)end.count);

        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        char *l2 = nth_line(text, 2), *l3 = nth_line(text, 3), *l4 = nth_line(text, 4), *l5 = nth_line(text, 5);
        cr_expect_str_eq(l3, TORN_HEAD, "the torn bytes are kept as they were, ended");
        json_t *torn = json_loads(l4, 0, NULL), *lost = json_loads(l5, 0, NULL);
        cr_assert_not_null(torn, "%s", l4);
        cr_assert_not_null(lost, "%s", l5);
        char h[AJ_SHA256_HEX_SIZE];
        cr_expect_str_eq(json_string_value(json_object_get(torn, "type")), AJ_EVENTS_TORN);
        cr_expect_eq(json_integer_value(json_object_get(torn, "seq")), 3);
        cr_expect_eq(json_integer_value(json_object_get(torn, "bytes")), (json_int_t)strlen(TORN_HEAD));
        aj_events_line_hash(TORN_HEAD, strlen(TORN_HEAD), h);
        cr_expect_str_eq(json_string_value(json_object_get(torn, "sha256")), h);
        aj_events_line_hash(l2, strlen(l2), h);
        cr_expect_str_eq(json_string_value(json_object_get(torn, "prev")), h, "chained to the last whole line");
        cr_expect_str_eq(json_string_value(json_object_get(lost, "type")), "supervisor.lost");
        cr_expect_eq(json_integer_value(json_object_get(lost, "seq")), 4);
        json_decref(torn);
        json_decref(lost);

        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.count, 4);
        cr_expect_eq(c.torn_lines, 1);
        cr_expect_eq(c.torn_tail, 0);
        cr_expect_str_eq(c.last_hash, end.last_hash);

        /* An operator's append later continues it as any chain. */
        cr_assert_eq(aj_events_append(path, "r1", "workspace.discard", NULL, &end), 0);
        cr_expect_eq(end.count, 5);
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        free(text);
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);

        /* The torn bytes are evidence: changed, the record no longer names them. */
        char *changed = strdup(text);
        char *at = strstr(changed, "1999-01-01");
        cr_assert_not_null(at);
        at[0] = '2';
        write_text(path, changed, "w");
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(!c.ok, "a changed torn line is found");
        cr_expect_eq(c.bad_seq, 3, "bad_seq %llu: %s", (unsigned long long)c.bad_seq, c.problem);
        free(changed);

        /* Removed, the record names a line that is not there. */
        char *gone = strdup(text);
        char *torn_at = strstr(gone, TORN_HEAD);
        memmove(torn_at, torn_at + strlen(TORN_HEAD) + 1, strlen(torn_at + strlen(TORN_HEAD) + 1) + 1);
        write_text(path, gone, "w");
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(!c.ok, "a removed torn line is found");
        cr_expect_eq(c.bad_seq, 3);
        cr_expect(strstr(c.problem, "removed") != NULL, "%s", c.problem);
        free(gone);

        /* The record removed: a line that is not an event is no torn one on its own. */
        char *unnamed = strdup(text);
        char *rec = strstr(unnamed, TORN_HEAD "\n");
        cr_assert_not_null(rec);
        rec += strlen(TORN_HEAD) + 1;
        char *after = strchr(rec, '\n') + 1;
        memmove(rec, after, strlen(after) + 1);
        write_text(path, unnamed, "w");
        cr_assert_eq(aj_events_verify(path, 0, NULL, &c), 0);
        cr_expect(!c.ok, "a line that is not an event, without its record, breaks the chain");
        cr_expect_eq(c.bad_seq, 3);
        free(unnamed);

        free(l2);
        free(l3);
        free(l4);
        free(l5);
        free(text);
        aj_rm_rf(dir);
}

/* Cut exactly before its newline, the line is whole: it is ended, and the chain goes on
 * from it (no torn record). */
Test(events, a_whole_line_without_its_newline_is_ended_not_torn)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256], last[AJ_SHA256_HEX_SIZE];
        two_events(dir, path, last);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(truncate(path, st.st_size - 1), 0);

        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, "r1", "supervisor.lost", NULL, &end), 0);
        cr_expect_eq(end.count, 3);
        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        cr_expect_null(strstr(text, AJ_EVENTS_TORN));
        free(text);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.torn_lines, 0);
        aj_rm_rf(dir);
}

/* Torn and nobody appended since (the supervisor and its watchdog both killed): the chain
 * before it is consistent, the tail is reported; past a recorded end it is not ok. */
Test(events, a_torn_tail_nobody_ended)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256], last[AJ_SHA256_HEX_SIZE];
        two_events(dir, path, last);
        write_text(path, TORN_HEAD, "a");
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, 0, NULL, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect(!c.anchored);
        cr_expect_eq(c.count, 2);
        cr_expect_eq(c.torn_tail, strlen(TORN_HEAD));
        cr_assert_eq(aj_events_verify(path, 2, last, &c), 0);
        cr_expect(!c.ok, "bytes after the recorded end");
        cr_expect_eq(c.bad_seq, 3);
        cr_expect(strstr(c.problem, "without a newline") != NULL, "%s", c.problem);
        aj_rm_rf(dir);
}

/* The first line torn: events.torn is the chain's first event. */
Test(events, the_first_line_torn)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        write_text(path, "{\"seq\":1,\"ts\"", "w");
        AjChainEnd end;
        cr_assert_eq(aj_events_append(path, "r1", "supervisor.lost", NULL, &end), 0);
        cr_expect_eq(end.count, 2);
        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        char *l2 = nth_line(text, 2);
        json_t *torn = json_loads(l2, 0, NULL);
        cr_assert_not_null(torn);
        cr_expect_str_eq(json_string_value(json_object_get(torn, "prev")), AJ_EVENTS_GENESIS);
        cr_expect_eq(json_integer_value(json_object_get(torn, "seq")), 1);
        json_decref(torn);
        free(l2);
        free(text);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, end.count, end.last_hash, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.torn_lines, 1);
        aj_rm_rf(dir);
}

Test(events, log_cap_arithmetic)
{
        cr_expect_eq(aj_log_cap_fit(0, 100, 40), 40);
        cr_expect_eq(aj_log_cap_fit(60, 100, 40), 40, "exactly up to the cap");
        cr_expect_eq(aj_log_cap_fit(70, 100, 40), 30, "cut at the cap");
        cr_expect_eq(aj_log_cap_fit(100, 100, 1), 0);
        cr_expect_eq(aj_log_cap_fit(150, 100, 1), 0, "already past it (an older, larger file)");
        cr_expect_eq(aj_log_cap_fit(0, UINT64_MAX, SIZE_MAX), SIZE_MAX);
        /* The supervisor's reserve: 1/16 of the cap, at most 1 MiB. */
        cr_expect_eq(aj_events_agent_share(64 << 10), (64 << 10) - (4 << 10));
        cr_expect_eq(aj_events_agent_share(64ULL << 20), (64ULL << 20) - (1ULL << 20));
        cr_expect_eq(aj_events_agent_share(16ULL << 20), (15ULL << 20));
}

/* The agent's events stop at its share; the supervisor's still go in, and the chain holds. */
Test(events, agent_events_refused_past_their_share_supervisor_events_not)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", NULL), 0);
        aj_events_set_agent_limit(log, 4096);
        char big[600];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        int r = 0, accepted = 0;
        while ((r = aj_events_emit_agent(log, "tool.result", json_pack("{s:s}", "undo", big))) == 0)
                accepted++;
        cr_expect_eq(r, -EFBIG);
        cr_expect(accepted >= 5, "accepted %d", accepted);
        cr_expect_leq(aj_events_bytes(log), 4096);
        cr_expect_gt(aj_events_wanted(log), 4096);
        uint64_t seq = aj_events_last_seq(log);

        /* A batch with a refused event is dropped whole. */
        aj_events_set_agent_limit(log, aj_events_bytes(log) + 400);
        aj_events_batch_begin(log);
        cr_expect_eq(aj_events_emit_agent(log, "tool.request", NULL), 0);
        cr_expect_eq(aj_events_emit_agent(log, "tool.verdict", json_pack("{s:s}", "undo", big)), -EFBIG);
        cr_expect_eq(aj_events_batch_end(log), -EFBIG);
        cr_expect_eq(aj_events_last_seq(log), seq);

        cr_assert_eq(aj_events_emit(log, "cap.breach", json_pack("{s:s}", "cap", "log_bytes")), 0);
        cr_assert_eq(aj_events_emit(log, "run.exit", NULL), 0);
        cr_expect_eq(aj_events_last_seq(log), seq + 2);
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        uint64_t bytes = aj_events_bytes(log);
        aj_events_close(log);

        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_expect_eq((uint64_t)st.st_size, bytes, "the size is counted as written");
        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        cr_expect_null(strstr(text, "tool.request"), "nothing of the refused batch is written");
        free(text);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, seq + 2, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);

        /* Reopened, the size is the file's. */
        cr_assert_eq(aj_events_open(path, "r1", &log), 0);
        cr_expect_eq(aj_events_bytes(log), bytes);
        aj_events_close(log);
        aj_rm_rf(dir);
}

/* ---- group commit: held events, one write ---- */

static size_t file_size(const char *path)
{
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        return (size_t)st.st_size;
}

Test(events, held_events_are_chained_and_written_at_the_commit)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", NULL), 0);
        size_t before = file_size(path);

        aj_events_hold(log);
        cr_assert_eq(aj_events_emit_agent(log, "tokens", json_pack("{s:i}", "n", 1)), 0);
        /* A request's pair, as the broker emits it, inside the hold. */
        aj_events_batch_begin(log);
        cr_assert_eq(aj_events_emit_agent(log, "tool.request", json_pack("{s:s}", "c", "x")), 0);
        cr_assert_eq(aj_events_emit_agent(log, "tool.verdict", json_pack("{s:s}", "v", "allow")), 0);
        cr_assert_eq(aj_events_batch_end(log), 0);
        cr_assert_eq(aj_events_emit_agent(log, "tokens", json_pack("{s:i}", "n", 2)), 0);
        cr_expect_eq(aj_events_last_seq(log), 5, "held events have their places in the chain");
        cr_expect_eq(file_size(path), before, "nothing held is written before the commit");
        cr_expect_gt(aj_events_held_bytes(log), 0);

        cr_assert_eq(aj_events_commit(log), 0);
        cr_expect_gt(file_size(path), before);
        cr_expect_eq(aj_events_held_bytes(log), 0);
        cr_expect_eq(aj_events_bytes(log), file_size(path));
        /* Not held any more: written at once. */
        size_t after = file_size(path);
        cr_assert_eq(aj_events_emit(log, "run.exit", NULL), 0);
        cr_expect_gt(file_size(path), after);
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        aj_events_close(log);

        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, 6, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        cr_expect_eq(c.count, 6);
        aj_rm_rf(dir);
}

Test(events, a_refusal_while_held_drops_only_itself)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", NULL), 0);
        char big[2000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        aj_events_set_agent_limit(log, aj_events_bytes(log) + 1500);

        aj_events_hold(log);
        cr_assert_eq(aj_events_emit_agent(log, "tokens", json_pack("{s:i}", "n", 1)), 0);
        cr_expect_eq(aj_events_emit_agent(log, "tool.result", json_pack("{s:s}", "undo", big)), -EFBIG);
        aj_events_batch_begin(log);
        cr_assert_eq(aj_events_emit_agent(log, "tool.request", NULL), 0);
        cr_expect_eq(aj_events_emit_agent(log, "tool.verdict", json_pack("{s:s}", "undo", big)), -EFBIG);
        cr_expect_eq(aj_events_batch_end(log), -EFBIG, "the batch is dropped whole");
        cr_assert_eq(aj_events_emit_agent(log, "tokens", json_pack("{s:i}", "n", 2)), 0);
        cr_expect_eq(aj_events_last_seq(log), 3);
        cr_assert_eq(aj_events_commit(log), 0);
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        aj_events_close(log);

        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        cr_expect_null(strstr(text, "tool.request"), "nothing of the refused batch is written");
        cr_expect_null(strstr(text, "xxxx"), "the refused event is not written");
        free(text);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, 3, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        aj_rm_rf(dir);
}

Test(events, a_failed_commit_leaves_none_of_the_held_events_in_the_chain)
{
        /* A full filesystem: every write fails with ENOSPC. (Not /dev/full: the log is a
         * regular file or nothing.) A tmpfs of one page, filled, in a mount namespace of the
         * test's own. */
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        cr_assert_not_null(mkdtemp(dir));
        if (unshare(CLONE_NEWNS) < 0) {
                rmdir(dir);
                cr_skip_test("unshare(CLONE_NEWNS): %s (needs root)", strerror(errno));
        }
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        cr_assert_eq(mount("full", dir, "tmpfs", 0, "size=4k"), 0);
        snprintf(path, sizeof(path), "%s/fill", dir);
        int fill = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        cr_assert_geq(fill, 0);
        char page[4096] = { 0 };
        while (write(fill, page, sizeof(page)) > 0)
                ;
        cr_assert_eq(errno, ENOSPC);
        close(fill);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        AjEventLog *log = NULL;
        cr_assert_eq(aj_events_open(path, "r1", &log), 0);
        aj_events_hold(log);
        cr_assert_eq(aj_events_emit(log, "tokens", NULL), 0);
        cr_assert_eq(aj_events_emit(log, "tokens", NULL), 0);
        cr_expect_eq(aj_events_last_seq(log), 2);
        cr_expect_eq(aj_events_commit(log), -ENOSPC);
        cr_expect_eq(aj_events_last_seq(log), 0, "the chain is back where the file is");
        cr_expect_str_eq(aj_events_last_hash(log), AJ_EVENTS_GENESIS);
        cr_expect_eq(aj_events_held_bytes(log), 0);
        aj_events_close(log);
        umount2(dir, MNT_DETACH);
        rmdir(dir);
}

Test(events, fields_printed_by_the_caller)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        const char obj[] = "{\"model\":\"m\",\"n\":3}";
        cr_assert_eq(aj_events_emit_agent_text(log, "tokens", obj, sizeof(obj) - 1), 0);
        cr_assert_eq(aj_events_emit_agent_text(log, "tokens", "{}", 2), 0);
        cr_expect_eq(aj_events_emit_agent_text(log, "tokens", "[1]", 3), -EINVAL, "only an object");
        aj_events_set_agent_limit(log, aj_events_bytes(log) + 10);
        cr_expect_eq(aj_events_emit_agent_text(log, "tokens", obj, sizeof(obj) - 1), -EFBIG, "the agent's cap holds");
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        aj_events_close(log);

        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, NULL), 0);
        char *second = strchr(text, '\n');
        cr_assert_not_null(second);
        *second = 0;
        json_t *ev = json_loads(text, 0, NULL);
        cr_assert_not_null(ev, "%s", text);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "type")), "tokens");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "model")), "m");
        cr_expect_eq(json_integer_value(json_object_get(ev, "n")), 3);
        json_decref(ev);
        ev = json_loads(second + 1, JSON_DISABLE_EOF_CHECK, NULL);
        cr_assert_not_null(ev, "an empty object: just the header");
        cr_expect_eq(json_integer_value(json_object_get(ev, "seq")), 2);
        json_decref(ev);
        free(text);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, 2, last, &c), 0);
        cr_expect(c.ok, "%s", c.problem);
        aj_rm_rf(dir);
}

/* A commit cut short (a short write, then an error: ENOSPC from a disk the agent filled,
 * EFBIG past RLIMIT_FSIZE, EDQUOT) leaves the head of the group in the file; it is cut
 * off, so that the chain still verifies once later events follow. */
Test(events, a_short_commit_keeps_the_file_verifiable)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        AjEventLog *log = open_temp_log(dir, path, "r1");
        cr_assert_eq(aj_events_emit(log, "run.start", NULL), 0);
        char pad[150];
        memset(pad, 'p', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = 0;
        aj_events_hold(log);
        for (int i = 0; i < 5; i++)
                cr_assert_eq(aj_events_emit_agent(log, "tokens", json_pack("{s:i, s:s}", "n", i, "pad", pad)), 0);
        size_t held = aj_events_held_bytes(log);
        /* Room for about half of the group. */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit old, lim;
        cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = file_size(path) + held / 2;
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
        cr_expect_lt(aj_events_commit(log), 0, "the commit fails");
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
        /* The disk has room again; the run goes on. */
        cr_assert_eq(aj_events_emit(log, "run.exit", NULL), 0);
        uint64_t seq = aj_events_last_seq(log);
        char last[AJ_SHA256_HEX_SIZE];
        snprintf(last, sizeof(last), "%s", aj_events_last_hash(log));
        cr_expect_eq(aj_events_bytes(log), file_size(path), "the size the log counts is the file's");
        aj_events_close(log);
        AjChainCheck c;
        cr_assert_eq(aj_events_verify(path, seq, last, &c), 0);
        cr_expect(c.ok, "the chain is broken after a short commit: %s", c.problem);
        if (getenv("KEEP"))
                fprintf(stderr, "%s\n", path);
        else
                aj_rm_rf(dir);
}

/* jansson's own allocations, counted (json_set_alloc_funcs): the bytes live, and their peak. */
static size_t json_live, json_peak;

static void *counting_malloc(size_t size)
{
        max_align_t *p = malloc(sizeof(max_align_t) + size);
        if (!p)
                return NULL;
        *(size_t *)p = size;
        json_live += size;
        if (json_live > json_peak)
                json_peak = json_live;
        return p + 1;
}

static void counting_free(void *ptr)
{
        if (!ptr)
                return;
        max_align_t *p = (max_align_t *)ptr - 1;
        json_live -= *(size_t *)p;
        free(p);
}

/* An events.jsonl of `count` lines, each an event of seq 1.. carrying `args` (JSON text). */
static void write_tail_fixture(const char *path, const char *args, int count)
{
        FILE *f = fopen(path, "we");
        cr_assert_not_null(f);
        for (int seq = 1; seq <= count; seq++)
                fprintf(f,
                        "{\"seq\": %d, \"ts\": \"2026-12-06T01:00:00.000000000Z\", \"type\": \"approval.requested\", "
                        "\"run\": \"r1\", \"arguments\": %s}\n",
                        seq, args);
        cr_assert_eq(fclose(f), 0);
}

static char *repeat(const char *head, const char *unit, const char *sep, size_t n, const char *tail)
{
        size_t len = strlen(head) + n * (strlen(unit) + strlen(sep)) + strlen(tail) + 1;
        char *s = malloc(len), *p = s;
        cr_assert_not_null(s);
        p = stpcpy(p, head);
        for (size_t i = 0; i < n; i++)
                p = stpcpy(stpcpy(p, i ? sep : ""), unit);
        stpcpy(p, tail);
        return s;
}

/* The tail of events.jsonl (read for an incident and for inspect) is the agent's to fill.
 * Read back, it costs the events kept and the line at hand: not the DOM of the whole last
 * megabyte (42 MB of it for 1,100 small lines of deep nests), and the events kept stop
 * short of a bound of values (16 lines of a broker request's worth of empty objects: 71 MB). */
Test(events, tail_holds_what_it_keeps_not_the_whole_tail)
{
        json_set_alloc_funcs(counting_malloc, counting_free);
        char dir[] = "/tmp/aj-events-XXXXXX", path[256];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);

        /* Six nests of 60 levels a line (the broker refuses past 64), ~1 KiB: 1,100 lines. */
        _cleanup_free_ char *nest = repeat("", "[", "", 60, "0");
        _cleanup_free_ char *nest_end = repeat(nest, "]", "", 60, "");
        _cleanup_free_ char *deep = repeat("[", nest_end, ", ", 6, "]");
        write_tail_fixture(path, deep, 1100);
        json_auto_t *tail = NULL;
        cr_assert_eq(aj_events_read_tail(path, 10, &tail), 0);
        cr_assert_eq(json_array_size(tail), 10);
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(tail, 0), "seq")), 1091, "oldest first");
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(tail, 9), "seq")), 1100);
        size_t kept = json_live;
        cr_expect_lt(json_peak, kept + 256 * 1024, "jansson's peak %zu bytes for 10 events of %zu bytes", json_peak,
                     kept);
        json_decref(TAKE_PTR(tail));

        /* 16 lines of 21,000 empty objects (a maximal broker request's worth): 6 kept. */
        _cleanup_free_ char *empties = repeat("[", "{}", ",", 21000, "]");
        write_tail_fixture(path, empties, 17);
        json_peak = json_live;
        cr_assert_eq(aj_events_read_tail(path, 50, &tail), 0);
        cr_expect_eq(json_array_size(tail), 6, "as many of the last as fit 2^17 values");
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(tail, 5), "seq")), 17);
        cr_expect_lt(json_peak, 32u << 20, "jansson's peak %zu bytes", json_peak);
        aj_rm_rf(dir);
}

static int count_event(json_t *ev, void *userdata)
{
        (*(size_t *)userdata)++;
        return 0;
}

/* A line whose DOM does not fit in memory is an error, not a bad line skipped: the
 * rollback journal read a chain of large undo records under pressure as a shorter one. */
Test(events, foreach_fails_on_a_line_it_has_no_memory_for)
{
        char path[] = "/tmp/aj-events-oom-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        FILE *f = fdopen(fd, "w");
        cr_assert_not_null(f);
        fputs("{\"seq\":1,\"type\":\"a\"}\n{\"seq\":2,\"type\":\"b\",\"undo\":{\"a\":[0", f);
        for (int k = 1; k < 2000000; k++) /* 4 MB of text, some 100 MB of DOM */
                fputs(",0", f);
        fputs("]}}\n{\"seq\":3,\"type\":\"c\"}\n", f);
        fclose(f);

        size_t seen = 0, bad = 0;
        jansson_budget_set(48 << 20);
        int r = aj_events_foreach(path, count_event, &seen, &bad);
        jansson_budget_clear();
        cr_expect_eq(r, -ENOMEM, "not the chain without the line: %d, %zu seen, %zu bad", r, seen, bad);
        cr_expect_eq(bad, 0);
        cr_expect_eq(seen, 1, "stopped at the line");
        seen = bad = 0;
        cr_expect_eq(aj_events_foreach(path, count_event, &seen, &bad), 0, "with room, it is read");
        cr_expect_eq(seen, 3);
        unlink(path);
}

/* The chain's writer opens it as its readers do: a symlink in its place is refused, its target
 * not written, and a FIFO refused at once (an open(2) for writing waited for a reader, the
 * supervisor held before the run had started). */
Test(events, writer_refuses_a_symlink_or_a_fifo)
{
        char dir[] = "/tmp/aj-events-XXXXXX", path[64], victim[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        snprintf(victim, sizeof(victim), "%s/victim", dir);
        cr_assert_eq(aj_write_file_atomic(victim, "", 0, 0600), 0);
        cr_assert_eq(symlink(victim, path), 0);
        AjEventLog *log = NULL;
        cr_expect_eq(aj_events_open(path, "0123456789ab", &log), -ELOOP);
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(mkfifo(path, 0600), 0);
        alarm(10); /* without the check, the open never returns */
        cr_expect_eq(aj_events_open(path, "0123456789ab", &log), -EBADFD);
        alarm(0);
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(aj_events_open(path, "0123456789ab", &log), 0);
        cr_expect_eq(aj_events_emit(log, "run.start", NULL), 0);
        aj_events_close(log);
        struct stat st;
        cr_assert_eq(stat(victim, &st), 0);
        cr_expect_eq(st.st_size, 0);
        aj_rm_rf(dir);
}
