/* SPDX-License-Identifier: Apache-2.0 */
/* The run record: run.json typed (round trip, malformed members named), the anchor it
 * keeps of the event chain, and the chain verified against it (good, cut, tampered). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "run-record-internal.h"
#include "run-record.h"
#include "util/fd.h"

static char root[64];

static void setup(void)
{
        snprintf(root, sizeof(root), "/tmp/aj-record-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) { aj_rm_rf(root); }

TestSuite(record, .init = setup, .fini = teardown);

static void write_text(const char *name, const char *text)
{
        char path[300];
        cr_assert_eq(aj_run_file_path(root, name, path, sizeof(path)), 0);
        cr_assert_eq(aj_write_file_atomic(path, text, strlen(text), 0640), 0);
}

#define RUN_JSON                                                                                                       \
        "{\"id\":\"abcd00000001\",\"name\":\"triage\",\"profile\":{\"name\":\"default\",\"path\":\"/p/default.json\"," \
        "\"digest\":\"ab\",\"resolved\":{\"filesystem\":{\"workspace\":{\"mode\":\"overlay\"}}}},"                     \
        "\"command\":[\"sh\",\"-c\",\"true\"],\"cwd\":\"/w\",\"workspace\":{\"mode\":\"overlay\",\"path\":\"/w\","     \
        "\"upper\":\"/s/upper\",\"changes\":\"pending\"},\"started\":\"2026-01-01T00:00:01.5Z\",\"ended\":null,"       \
        "\"status\":\"exited\",\"state\":\"quarantined\",\"quarantine\":{\"since\":\"2026-01-01T00:00:02Z\","          \
        "\"cap\":\"tokens\",\"released\":false},\"meters\":{\"tokens\":{\"limit\":10,\"used\":12}},"                   \
        "\"events\":{\"count\":3,\"last_sha256\":\"" AJ_EVENTS_GENESIS "\",\"end\":\"run.exit\"},"                     \
        "\"supervisor_pid\":4242,\"future_field\":{\"kept\":true}}"

Test(record, typed_and_round_trip)
{
        write_text(AJ_RUN_FILE_RUN, RUN_JSON);
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_run_record_read(root, &rec, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(rec->id, "abcd00000001");
        cr_assert_str_eq(rec->name, "triage");
        cr_assert_str_eq(rec->profile_name, "default");
        cr_assert_str_eq(rec->profile_path, "/p/default.json");
        cr_assert_str_eq(rec->profile_workspace_mode, "overlay");
        cr_assert_eq(rec->started_ns, 1767225601ull * 1000000000ull + 500000000ull);
        cr_assert_null(rec->ended);
        cr_assert_str_eq(rec->status, "exited");
        cr_assert_eq(rec->supervisor_pid, 4242);
        cr_assert_eq(rec->watchdog_pid, 0);
        cr_assert(rec->workspace.present);
        cr_assert_str_eq(rec->workspace.changes, "pending");
        cr_assert(rec->quarantine.present && !rec->quarantine.released);
        cr_assert(aj_run_record_quarantined(rec));
        cr_assert(rec->anchor.present);
        cr_assert_eq(rec->anchor.count, 3);
        cr_assert_str_eq(rec->anchor.end, "run.exit");
        cr_assert(json_is_array(rec->shown.command) && json_array_size(rec->shown.command) == 3);
        cr_assert(json_is_object(rec->shown.meters));
        cr_assert_null(rec->shown.exit, "absent members are NULL");

        /* Updates, written and read back: the typed view and the rest of the document. */
        AjChainEnd end = { .count = 4, .from_count = 3 };
        memset(end.last_hash, 'a', 64);
        snprintf(end.from_hash, sizeof(end.from_hash), "%s", rec->anchor.last_sha256); /* appended after it */
        cr_assert_eq(aj_run_record_move_anchor(rec, &end, "quarantine.release"), 0);
        cr_assert_eq(aj_run_record_release(rec, 1000, "2026-01-02T00:00:00Z"), 0);
        cr_assert_eq(aj_run_record_decide_workspace(rec, "discarded", 1000, "2026-01-02T00:00:01Z"), 0);
        cr_assert_str_eq(rec->state, "exited", "a released dead run is exited");
        cr_assert_eq(aj_run_record_write(root, rec), 0);

        _cleanup_(aj_run_record_freep) AjRunRecord *back = NULL;
        cr_assert_eq(aj_run_record_read(root, &back, NULL), 0);
        cr_assert(back->quarantine.released);
        cr_assert_str_eq(back->quarantine.released_at, "2026-01-02T00:00:00Z");
        cr_assert_str_eq(back->quarantine.cap, "tokens", "the rest of the quarantine is kept");
        cr_assert_str_eq(back->workspace.changes, "discarded");
        cr_assert_str_eq(back->workspace.decided_at, "2026-01-02T00:00:01Z");
        cr_assert_eq(back->anchor.count, 4);
        cr_assert_str_eq(back->anchor.end, "quarantine.release");
        cr_assert(!aj_run_record_quarantined(back));
        cr_assert(json_equal(back->doc, rec->doc), "what was written is what is read");
        cr_assert(json_is_true(json_object_get(json_object_get(back->doc, "future_field"), "kept")),
                  "members this version does not know survive an update");
        cr_assert_eq(json_integer_value(
                             json_object_get(json_object_get(json_object_get(back->doc, "meters"), "tokens"), "used")),
                     12);
}

Test(record, malformed_names_the_file_and_member)
{
        static const struct {
                const char *text, *want;
        } cases[] = {
                { "{\"id\":\"x\",\"started\":5}", "\"started\" is not a string or null" },
                { "{\"name\":[]}", "\"name\" is not a string" },
                { "{\"profile\":\"default\"}", "\"profile\" is not an object" },
                { "{\"profile\":{\"name\":1}}", "\"profile.name\" is not a string" },
                { "{\"quarantine\":{\"cap\":7}}", "\"quarantine.cap\" is not a string or null" },
                { "{\"workspace\":{\"changes\":true}}", "\"workspace.changes\" is not a string" },
                { "{\"supervisor_pid\":\"12\"}", "\"supervisor_pid\" is not a process id" },
                { "{\"rollback\":[]}", "\"rollback\" is not an object" },
                { "{\"rollback\":{\"steps\":{}}}", "\"rollback.steps\" is not an array" },
                { "{\"rollback\":{\"steps\":[7]}}", "\"rollback.steps[0]\" is not an object" },
                { "{\"rollback\":{\"steps\":[{\"call_id\":\"c\",\"result_seq\":2,\"result\":\"ok\"},"
                  "{\"call_id\":\"c\",\"result_seq\":\"3\",\"result\":\"ok\"}]}}",
                  "\"rollback.steps[1].result_seq\" is not an integer" },
                { "{\"rollback\":{\"steps\":[{\"call_id\":\"c\",\"result_seq\":2}]}}",
                  "\"rollback.steps[0]\" needs call_id, result_seq and result" },
                { "[1,2]", "not a JSON object" },
                { "{\"id\":", "not valid JSON" },
        };
        char path[300];
        cr_assert_eq(aj_run_file_path(root, AJ_RUN_FILE_RUN, path, sizeof(path)), 0);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                write_text(AJ_RUN_FILE_RUN, cases[i].text);
                AjRunRecord *rec = NULL;
                _cleanup_(aj_error_clear) AjError e = {};
                cr_assert_eq(aj_run_record_read(root, &rec, &e), -EBADMSG, "case %zu", i);
                cr_assert_null(rec);
                const char *err = e.message;
                cr_assert_not_null(err, "case %zu", i);
                cr_assert_not_null(strstr(err, path), "names the file: %s", err);
                cr_assert_not_null(strstr(err, cases[i].want), "case %zu: %s", i, err);
        }
        /* Absent members are fine: older records. */
        write_text(AJ_RUN_FILE_RUN, "{\"status\":\"exited\"}");
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_read(root, &rec, NULL), 0);
        cr_assert_null(rec->name);
        cr_assert(!rec->anchor.present && !rec->quarantine.present && !rec->workspace.present);
        unlink(path);
        AjRunRecord *none = NULL;
        cr_assert_eq(aj_run_record_read(root, &none, NULL), -ENOENT);
}

/* `rollback --apply`'s steps: each step's last outcome, replaced by result_seq. */
Test(record, rollback_steps_typed_and_updated)
{
        write_text(AJ_RUN_FILE_RUN, RUN_JSON);
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_read(root, &rec, NULL), 0);
        cr_assert_not(rec->rollback.present, "no rollback until one ran");
        AjRunRollbackStep s = { .call_id = "c-3",
                                .tool = "crm.create",
                                .result_seq = 30,
                                .result = "failed",
                                .exit_code = 3,
                                .at = "2026-01-02T00:00:00Z",
                                .by = 1000 };
        cr_assert_eq(aj_run_record_rollback_step(rec, &s), 0);
        s = (AjRunRollbackStep){
                .call_id = "c-2", .result_seq = 20, .result = "held", .exit_code = -1, .at = "2026-01-02T00:00:01Z"
        };
        cr_assert_eq(aj_run_record_rollback_step(rec, &s), 0);
        cr_assert_eq(rec->rollback.n_steps, 2);
        cr_expect_eq(rec->rollback.n_failed, 1);
        cr_expect_eq(rec->rollback.n_held, 1);
        s = (AjRunRollbackStep){ .call_id = "c-3",
                                 .tool = "crm.create",
                                 .result_seq = 30,
                                 .result = "ok",
                                 .exit_code = 0,
                                 .at = "2026-01-02T00:00:02Z",
                                 .by = 1000 };
        cr_assert_eq(aj_run_record_rollback_step(rec, &s), 0);
        cr_assert_eq(aj_run_record_write(root, rec), 0);

        _cleanup_(aj_run_record_freep) AjRunRecord *back = NULL;
        cr_assert_eq(aj_run_record_read(root, &back, NULL), 0);
        const AjRunRollback *rb = &back->rollback;
        cr_assert(rb->present);
        cr_assert_eq(rb->n_steps, 2, "a step run again replaces its outcome");
        cr_expect_eq(rb->n_ok, 1);
        cr_expect_eq(rb->n_failed, 0);
        cr_expect_eq(rb->n_held, 1);
        cr_expect_str_eq(rb->updated_at, "2026-01-02T00:00:02Z");
        AjRunRollbackStep got;
        aj_run_rollback_step_at(back, 0, &got);
        cr_expect_str_eq(got.call_id, "c-3");
        cr_expect_str_eq(got.tool, "crm.create");
        cr_expect_str_eq(got.result, "ok");
        cr_expect_eq(got.exit_code, 0);
        cr_expect_eq(got.result_seq, 30);
        cr_expect_eq(got.by, 1000);
        aj_run_rollback_step_at(back, 1, &got);
        cr_expect_str_eq(got.result, "held");
        cr_expect_null(got.tool);
        cr_expect_eq(got.exit_code, -1, "null: it ran nothing");
        cr_assert(json_is_true(json_object_get(json_object_get(back->doc, "future_field"), "kept")),
                  "the rest of run.json is kept");

        /* compose keeps it (a record this version knows) */
        _cleanup_(aj_run_record_freep) AjRunRecord *composed = NULL;
        back->cgroup_mode = "v2"; /* compose wants one; RUN_JSON has none */
        cr_assert_eq(aj_run_record_compose(back, &composed), 0);
        cr_expect_eq(composed->rollback.n_steps, 2);
}

/* The watchdog's update: the anchor set on the run.json that is there. */
Test(record, anchor_at_updates_run_json)
{
        AjChainEnd end = { .count = 7 };
        memset(end.last_hash, 'b', 64);
        cr_assert_eq(aj_run_record_anchor_at(root, &end, "supervisor.lost"), -ENOENT, "no run.json yet");
        write_text(AJ_RUN_FILE_RUN, "{\"status\":\"running\",\"name\":\"n\"}");
        cr_assert_eq(aj_run_record_anchor_at(root, &end, "supervisor.lost"), 0);
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_read(root, &rec, NULL), 0);
        cr_assert(rec->anchor.present);
        cr_assert_eq(rec->anchor.count, 7);
        cr_assert_str_eq(rec->anchor.end, "supervisor.lost");
        cr_assert_str_eq(rec->name, "n");
}

/* A chain of n events written by the supervisor's writer; ret_end gets its end. */
static void write_chain(const char *path, int n, AjChainEnd *ret_end)
{
        AjEventLog *log = NULL;
        cr_assert_eq(aj_events_open(path, "aaaa00000001", &log), 0);
        for (int i = 0; i < n; i++)
                cr_assert_eq(aj_events_emit(log, i == 0 ? "run.start" : "tool.request", json_pack("{s:i}", "i", i)), 0);
        ret_end->count = aj_events_last_seq(log);
        snprintf(ret_end->last_hash, sizeof(ret_end->last_hash), "%s", aj_events_last_hash(log));
        aj_events_close(log);
}

/* Drops the file's last line (a cut-off tail). */
static void cut_last_line(const char *path)
{
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        cr_assert_gt(len, 1);
        size_t end = len - 1;
        while (end > 0 && text[end - 1] != '\n')
                end--;
        cr_assert_eq(aj_write_file_atomic(path, text, end, 0640), 0);
        free(text);
}

static AjChainVerdict verdict_of(json_t *doc, const char *path, AjChainCheck *c)
{
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        /* doc NULL: no run.json at all. */
        if (doc)
                cr_assert_eq(aj_run_record_from_json(doc, "run.json", &rec, &err), 0, "%s", aj_error_text(&err, 0));
        AjChainVerdict v;
        cr_assert_eq(aj_run_verify_chain(rec, path, c, &v), 0);
        return v;
}

/* `logs --verify`: intact needs an anchor; without one a consistent chain is "no anchor",
 * never intact, since a cut-off tail would look the same. */
Test(record, verify_needs_an_anchor)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/events.jsonl", root);
        AjChainEnd end;
        write_chain(path, 4, &end);
        AjChainCheck c;

        json_auto_t *anchored = json_pack("{s:s, s:{s:I, s:s, s:s}}", "status", "running", "events", "count",
                                          (json_int_t)end.count, "last_sha256", end.last_hash, "end",
                                          "supervisor.lost");
        cr_assert_eq(verdict_of(anchored, path, &c), AJ_CHAIN_INTACT, "%s", c.problem);
        cr_assert(c.ok && c.anchored);
        cr_assert_eq(c.count, 4);

        /* An older agentjail's final run.json: status exited, no "end". */
        json_auto_t *legacy = json_pack("{s:s, s:{s:I, s:s}}", "status", "exited", "events", "count",
                                        (json_int_t)end.count, "last_sha256", end.last_hash);
        cr_assert_eq(verdict_of(legacy, path, &c), AJ_CHAIN_INTACT, "%s", c.problem);

        /* No anchor: stripped, never written (a live run), a live run's snapshot from an
         * older agentjail (running, no "end"), malformed, or no run.json at all. */
        json_auto_t *stripped = json_pack("{s:s}", "status", "exited");
        json_auto_t *snapshot = json_pack("{s:s, s:{s:I, s:s}}", "status", "running", "events", "count",
                                          (json_int_t)end.count, "last_sha256", end.last_hash);
        json_auto_t *bad_hash = json_pack("{s:s, s:{s:I, s:s, s:s}}", "status", "exited", "events", "count",
                                          (json_int_t)end.count, "last_sha256", "xyz", "end", "run.exit");
        json_auto_t *zero = json_pack("{s:s, s:{s:I, s:s, s:s}}", "status", "exited", "events", "count", (json_int_t)0,
                                      "last_sha256", end.last_hash, "end", "run.exit");
        json_t *none[] = { stripped, snapshot, bad_hash, zero, NULL };
        for (size_t i = 0; i < ARRAY_SIZE(none); i++) {
                cr_assert_eq(verdict_of(none[i], path, &c), AJ_CHAIN_NO_ANCHOR, "doc %zu", i);
                cr_assert(c.ok, "the chain itself is consistent (doc %zu)", i);
                cr_assert(!c.anchored);
                cr_assert_eq(c.count, 4);
        }

        /* The tail cut off: only the anchor shows it. */
        cut_last_line(path);
        cr_assert_eq(verdict_of(anchored, path, &c), AJ_CHAIN_BROKEN);
        cr_assert(strstr(c.problem, "events were removed") != NULL, "%s", c.problem);
        cr_assert_eq(verdict_of(stripped, path, &c), AJ_CHAIN_NO_ANCHOR);
        cr_assert_eq(c.count, 3);
}

/* An event appended to a dead run's chain moves an anchor run.json has, so it cannot be
 * removed unseen; it never creates one (that would certify a chain that may be cut). */
Test(record, appends_move_the_anchor)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/events.jsonl", root);
        AjChainEnd end;
        write_chain(path, 3, &end);
        json_auto_t *doc = json_object();
        cr_assert_eq(aj_run_doc_set_anchor(doc, &end, "run.exit"), 0);
        json_auto_t *unanchored = json_pack("{s:s}", "status", "running");

        AjChainEnd after;
        cr_assert_eq(aj_events_append(path, "aaaa00000001", "supervisor.lost", json_pack("{s:s}", "k", "v"), &after),
                     0);
        cr_assert_eq(after.count, 4);
        cr_assert_str_neq(after.last_hash, end.last_hash);
        AjChainCheck c;
        /* Until the anchor moves, the appended event is one past the recorded end. */
        cr_assert_eq(verdict_of(doc, path, &c), AJ_CHAIN_BROKEN, "an event past the anchor is not intact");
        cr_assert(c.after_anchor);
        cr_assert_eq(c.bad_seq, 4);
        cr_assert(strstr(c.problem, "added after it was closed") != NULL, "%s", c.problem);

        {
                _cleanup_(aj_run_record_freep) AjRunRecord *a = NULL, *u = NULL;
                cr_assert_eq(aj_run_record_from_json(doc, "run.json", &a, NULL), 0);
                cr_assert_eq(aj_run_record_from_json(unanchored, "run.json", &u, NULL), 0);
                cr_assert_eq(aj_run_record_move_anchor(a, &after, "supervisor.lost"), 0);
                cr_assert_eq(aj_run_record_move_anchor(u, &after, "supervisor.lost"), 0);
                cr_assert(a->anchor.present && a->anchor.count == 4);
                cr_assert(!u->anchor.present);
        }
        cr_assert_null(json_object_get(unanchored, "events"), "no anchor is made up");
        json_t *ev = json_object_get(doc, "events");
        cr_assert_eq(json_integer_value(json_object_get(ev, "count")), 4);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "end")), "supervisor.lost");
        cr_assert_eq(verdict_of(doc, path, &c), AJ_CHAIN_INTACT, "%s", c.problem);
        cr_assert_eq(c.count, 4);
        cr_assert_str_eq(c.last_hash, after.last_hash, "the append's end is the file's");

        cut_last_line(path);
        cr_assert_eq(verdict_of(doc, path, &c), AJ_CHAIN_BROKEN, "the appended event's removal shows");
        cr_assert_eq(c.bad_seq, 4);
}

/* The watchdog's append (cgroup.removed after the supervisor's final run.json) moves the
 * anchor only from the end it names: after a cut tail it stays, and the cut still shows. */
Test(record, the_watchdogs_append_after_a_cut_tail_keeps_the_anchor)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/events.jsonl", root);
        AjChainEnd end;
        write_chain(path, 3, &end);
        json_auto_t *doc = json_pack("{s:s}", "status", "exited");
        cr_assert_eq(aj_run_doc_set_anchor(doc, &end, "run.exit"), 0);
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_from_json(doc, "run.json", &rec, NULL), 0);
        cr_assert_eq(aj_run_record_write(root, rec), 0);

        cut_last_line(path);
        AjChainEnd after;
        cr_assert_eq(aj_events_append(path, "aaaa00000001", "cgroup.removed", NULL, &after), 0);
        cr_assert_eq(after.from_count, 2);
        cr_assert_eq(aj_run_record_anchor_at(root, &after, "cgroup.removed"), AJ_RUN_ANCHOR_KEPT);
        _cleanup_(aj_run_record_freep) AjRunRecord *back = NULL;
        cr_assert_eq(aj_run_record_read(root, &back, NULL), 0);
        cr_expect_eq(back->anchor.count, 3);
        cr_expect_str_eq(back->anchor.last_sha256, end.last_hash);
        AjChainCheck c;
        AjChainVerdict v;
        cr_assert_eq(aj_run_verify_chain(back, path, &c, &v), 0);
        cr_expect_eq(v, AJ_CHAIN_BROKEN, "the cut still shows");

        /* From the anchored end, it moves. */
        AjChainEnd next;
        cr_assert_eq(aj_events_append(path, "aaaa00000001", "cgroup.removed", NULL, &next), 0);
        cr_assert_eq(aj_run_record_anchor_at(root, &next, "cgroup.removed"), AJ_RUN_ANCHOR_KEPT, "still not");
        cr_assert_eq(unlink(path), 0);
        write_chain(path, 3, &end);
        cr_assert_eq(aj_run_record_set_anchor(rec, &end, "run.exit"), 0);
        cr_assert_eq(aj_run_record_write(root, rec), 0);
        cr_assert_eq(aj_events_append(path, "aaaa00000001", "cgroup.removed", NULL, &next), 0);
        cr_assert_eq(aj_run_record_anchor_at(root, &next, "cgroup.removed"), 0);
        _cleanup_(aj_run_record_freep) AjRunRecord *moved = NULL;
        cr_assert_eq(aj_run_record_read(root, &moved, NULL), 0);
        cr_expect_eq(moved->anchor.count, 4);
        cr_assert_eq(aj_run_verify_chain(moved, path, &c, &v), 0);
        cr_expect_eq(v, AJ_CHAIN_INTACT, "%s", c.problem);
}


/* A tampered event (one changed byte) breaks the chain at that event. */
Test(record, verify_finds_a_tampered_event)
{
        char path[300];
        snprintf(path, sizeof(path), "%s/events.jsonl", root);
        AjChainEnd end;
        write_chain(path, 4, &end);
        json_auto_t *doc = json_object();
        cr_assert_eq(aj_run_doc_set_anchor(doc, &end, "run.exit"), 0);
        AjChainCheck c;
        cr_assert_eq(verdict_of(doc, path, &c), AJ_CHAIN_INTACT, "%s", c.problem);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        char *at = strstr(text, "\"i\":2");
        cr_assert_not_null(at);
        at[4] = '9';
        cr_assert_eq(aj_write_file_atomic(path, text, len, 0640), 0);
        free(text);
        cr_assert_eq(verdict_of(doc, path, &c), AJ_CHAIN_BROKEN);
        cr_assert_eq(c.bad_seq, 4, "the event after the changed one no longer links to it");
        AjChainVerdict v;
        cr_assert_eq(aj_run_verify_chain(NULL, path, &c, &v), 0);
        cr_assert_eq(v, AJ_CHAIN_BROKEN, "no run.json does not hide a broken chain");
}

/* The text of a JSON value as run.json spells it (members in order). */
static char *dump(json_t *v)
{
        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        cr_assert_not_null(s);
        return s;
}

/* run.json as the supervisor composes it: every member, its name, its place, its value;
 * then written, read back and composed again from the typed view: the same document. */
Test(record, compose_every_member_and_back)
{
        json_auto_t *resolved = json_pack("{s:{s:{s:s}}}", "filesystem", "workspace", "mode", "overlay");
        json_auto_t *command = json_pack("[s, s]", "sh", "-c");
        json_auto_t *meters = json_pack("{s:{s:i}}", "tokens", "used", 3);
        json_auto_t *llm = json_pack("{s:i}", "calls", 1);
        json_auto_t *counters = json_pack("{s:i}", "connections", 2);
        json_auto_t *usage = json_pack("{s:i}", "memory_peak", 4096);
        json_auto_t *paths = json_pack("[s]", "/sys/fs/cgroup/agentjail/x");
        json_auto_t *degraded = json_pack("[{s:s, s:s}]", "what", "limits", "why", "no cpu");
        AjRunRecord in = {
                .id = "abcd00000001",
                .name = "triage",
                .profile_name = "default",
                .profile_path = "/p/default.json",
                .profile_digest = "ab",
                .cwd = "/w",
                .tty = true,
                .started = "2026-01-01T00:00:01Z",
                .ended = "2026-01-01T00:00:09Z",
                .status = "exited",
                .state = "quarantined",
                .supervisor_pid = 4242,
                .watchdog_pid = 4243, /* written when > 0 */
                .host_uid = 100000,
                .host_gid = 100001,
                .cgroup_mode = "hybrid",
                .workspace = { .present = true,
                               .mode = "overlay",
                               .path = "/w",
                               .upper = "/s/upper",
                               .changes = "pending",
                               .has_id = true,
                               .dev = 65024,
                               .ino = 18446744073709551615ull },
                .quarantine = { .present = true,
                                .since = "2026-01-01T00:00:05Z",
                                .cap = "tokens",
                                .limit = 10,
                                .value = 12,
                                .released = true,
                                .released_at = "2026-01-01T00:00:06Z" },
                .network = { .present = true, .counters = counters, .egress_bytes = 77 },
                .exit = { .present = true, .status = 137, .code = -1, .signal = 9, .reason = "signaled" },
                .anchor = { .present = true, .count = 3, .last_sha256 = AJ_EVENTS_GENESIS, .end = "run.exit" },
                .shown = { .resolved = resolved,
                           .command = command,
                           .meters = meters,
                           .llm = llm,
                           .usage = usage,
                           .cgroup_paths = paths,
                           .degraded = degraded },
        };
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_compose(&in, &rec), 0);
        _cleanup_free_ char *text = dump(rec->doc);
        cr_assert_str_eq(
                text,
                "{\"id\":\"abcd00000001\",\"name\":\"triage\",\"profile\":{\"name\":\"default\",\"path\":"
                "\"/p/default.json\",\"digest\":\"ab\",\"resolved\":{\"filesystem\":{\"workspace\":{\"mode\":\"overlay\"}}}},"
                "\"command\":[\"sh\",\"-c\"],\"cwd\":\"/w\",\"tty\":true,\"workspace\":{\"mode\":\"overlay\",\"path\":\"/w\","
                "\"upper\":\"/s/upper\",\"changes\":\"pending\",\"id\":\"65024:18446744073709551615\"},\"started\":"
                "\"2026-01-01T00:00:01Z\",\"ended\":"
                "\"2026-01-01T00:00:09Z\",\"status\":\"exited\",\"state\":\"quarantined\",\"quarantine\":{\"since\":"
                "\"2026-01-01T00:00:05Z\",\"cap\":\"tokens\",\"limit\":10.0,\"value\":12.0,\"released\":true,"
                "\"released_at\":\"2026-01-01T00:00:06Z\"},\"meters\":{\"tokens\":{\"used\":3}},\"llm\":{\"calls\":1},"
                "\"network\":{\"connections\":2,\"egress_bytes\":77,\"egress_limit\":null},\"events\":{\"count\":3,"
                "\"last_sha256\":\"" AJ_EVENTS_GENESIS "\",\"end\":\"run.exit\"},\"supervisor_pid\":4242,"
                "\"watchdog_pid\":4243,\"host_uid\":100000,\"host_gid\":100001,\"exit\":{\"status\":137,\"code\":null,"
                "\"signal\":9,\"reason\":\"signaled\"},\"usage\":{\"memory_peak\":4096},\"cgroup\":{\"mode\":\"hybrid\","
                "\"paths\":[\"/sys/fs/cgroup/agentjail/x\"]},\"degraded\":[{\"what\":\"limits\",\"why\":\"no cpu\"}]}");
        cr_assert_null(json_object_get(counters, "egress_bytes"), "the composer's values are not changed");

        /* The typed view of what was composed is what was given. */
        cr_assert_str_eq(rec->profile_workspace_mode, "overlay");
        cr_assert(rec->tty);
        cr_assert(rec->workspace.has_id && rec->workspace.dev == 65024 &&
                  rec->workspace.ino == 18446744073709551615ull);
        cr_assert_eq(rec->host_uid, 100000);
        cr_assert_eq(rec->host_gid, 100001);
        cr_assert_str_eq(rec->cgroup_mode, "hybrid");
        cr_assert(rec->exit.present && rec->exit.status == 137 && rec->exit.code == -1 && rec->exit.signal == 9);
        cr_assert_str_eq(rec->exit.reason, "signaled");
        cr_assert(rec->network.present && rec->network.egress_bytes == 77 && rec->network.egress_limit == 0);
        cr_assert_eq(rec->quarantine.limit, 10.0);
        cr_assert_eq(rec->quarantine.value, 12.0);
        cr_assert(rec->quarantine.released && !rec->quarantine.has_released_by);
        cr_assert(rec->anchor.present && rec->anchor.count == 3);

        cr_assert_eq(aj_run_record_write(root, rec), 0);
        _cleanup_(aj_run_record_freep) AjRunRecord *back = NULL, *again = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_run_record_read(root, &back, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_eq(aj_run_record_compose(back, &again), 0);
        _cleanup_free_ char *text_again = dump(again->doc);
        cr_assert_str_eq(text_again, text, "read and composed again: the same run.json");
}

/* A live run's run.json: null where the run has no outcome yet, no anchor, and the
 * members a run without them does not have are left out. */
Test(record, compose_a_live_run)
{
        json_auto_t *paths = json_array();
        AjRunRecord in = { .id = "abcd00000002",
                           .name = "n",
                           .profile_name = "default",
                           .started = "2026-01-01T00:00:01Z",
                           .status = "running",
                           .state = "running",
                           .supervisor_pid = 7,
                           .cgroup_mode = "none",
                           .shown.cgroup_paths = paths };
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL;
        cr_assert_eq(aj_run_record_compose(&in, &rec), 0);
        _cleanup_free_ char *text = dump(rec->doc);
        cr_assert_str_eq(text,
                         "{\"id\":\"abcd00000002\",\"name\":\"n\",\"profile\":{\"name\":\"default\",\"path\":null,\"digest\":"
                         "null},\"tty\":false,\"started\":\"2026-01-01T00:00:01Z\",\"ended\":null,\"status\":\"running\","
                         "\"state\":\"running\",\"quarantine\":null,\"supervisor_pid\":7,\"host_uid\":0,\"host_gid\":0,"
                         "\"exit\":null,\"cgroup\":{\"mode\":\"none\",\"paths\":[]}}");
        cr_assert(!rec->exit.present && !rec->anchor.present && !rec->quarantine.present);
        cr_assert(!aj_run_record_quarantined(rec));

        /* The supervisor's last events after the final run.json move its anchor. */
        AjChainEnd end = { .count = 5 };
        memset(end.last_hash, 'b', 64);
        cr_assert_eq(aj_run_record_move_anchor(rec, &end, "run.exit"), 0);
        cr_assert(!rec->anchor.present, "move_anchor never makes one up");
        cr_assert_eq(aj_run_record_set_anchor(rec, &end, "run.exit"), 0);
        cr_assert(rec->anchor.present && rec->anchor.count == 5);
        cr_assert_str_eq(rec->anchor.end, "run.exit");
}

/* The members typed since the supervisor composes run.json from the record: a wrong type
 * is named, with the file. */
Test(record, composed_members_mistyped)
{
        static const struct {
                const char *text, *want;
        } cases[] = {
                { "{\"tty\":\"yes\"}", "\"tty\" is not true or false" },
                { "{\"host_uid\":-1}", "\"host_uid\" is not an integer in [0, 4294967295]" },
                { "{\"exit\":{\"status\":\"0\"}}", "\"exit.status\" is not an integer in [0, 255]" },
                { "{\"exit\":{\"code\":0,\"reason\":3}}", "\"exit.reason\" is not a string" },
                { "{\"exit\":7}", "\"exit\" is not an object or null" },
                { "{\"cgroup\":{\"paths\":\"/x\"}}", "\"cgroup.paths\" is not an array" },
                { "{\"network\":{\"egress_bytes\":1.5}}", "\"network.egress_bytes\" is not an integer" },
                { "{\"quarantine\":{\"limit\":\"5\"}}", "\"quarantine.limit\" is not a number" },
                { "{\"quarantine\":{\"released\":1}}", "\"quarantine.released\" is not true or false" },
                { "{\"workspace\":{\"decided_by\":\"root\"}}", "\"workspace.decided_by\" is not an integer" },
                { "{\"workspace\":{\"id\":\"12\"}}", "\"workspace.id\" is not DEV:INO" },
                { "{\"workspace\":{\"id\":\"-1:2\"}}", "\"workspace.id\" is not DEV:INO" },
                { "{\"workspace\":{\"id\":\"1:2x\"}}", "\"workspace.id\" is not DEV:INO" },
                { "{\"workspace\":{\"id\":\"1: -2\"}}", "\"workspace.id\" is not DEV:INO" },
        };
        char path[300];
        cr_assert_eq(aj_run_file_path(root, AJ_RUN_FILE_RUN, path, sizeof(path)), 0);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                write_text(AJ_RUN_FILE_RUN, cases[i].text);
                AjRunRecord *rec = NULL;
                _cleanup_(aj_error_clear) AjError e = {};
                cr_assert_eq(aj_run_record_read(root, &rec, &e), -EBADMSG, "case %zu", i);
                cr_assert_not_null(e.message, "case %zu", i);
                cr_assert_not_null(strstr(e.message, path), "names the file: %s", e.message);
                cr_assert_not_null(strstr(e.message, cases[i].want), "case %zu: %s", i, e.message);
        }
}

/* A replay's run.json: replay_of and the starting workspace, composed, written, read back;
 * mistyped, they name the member. */
Test(record, replay_members)
{
        json_auto_t *ws = json_pack("{s:s, s:s, s:b}", "path", "/w", "sha256", "ab12", "complete", 1);
        json_auto_t *paths = json_array();
        AjRunRecord in = { .id = "abcd00000002",
                           .name = "agent",
                           .profile_name = "p",
                           .started = "2026-01-01T00:00:01Z",
                           .status = "running",
                           .state = "running",
                           .supervisor_pid = 7,
                           .cgroup_mode = "none",
                           .replay_of = "abcd00000001",
                           .shown = { .workspace_start = ws, .cgroup_paths = paths } };
        _cleanup_(aj_run_record_freep) AjRunRecord *rec = NULL, *back = NULL;
        cr_assert_eq(aj_run_record_compose(&in, &rec), 0);
        cr_assert_str_eq(json_string_value(json_object_get(rec->doc, "replay_of")), "abcd00000001");
        cr_assert(json_equal(json_object_get(rec->doc, "workspace_start"), ws));
        cr_assert_eq(aj_run_record_write(root, rec), 0);
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_run_record_read(root, &back, &err), 0, "%s", aj_error_text(&err, 0));
        cr_assert_str_eq(back->replay_of, "abcd00000001");
        cr_assert_str_eq(json_string_value(json_object_get(back->shown.workspace_start, "sha256")), "ab12");

        write_text(AJ_RUN_FILE_RUN, "{\"replay_of\":3}");
        AjRunRecord *bad = NULL;
        _cleanup_(aj_error_clear) AjError e = {};
        cr_assert_eq(aj_run_record_read(root, &bad, &e), -EBADMSG);
        cr_assert_not_null(strstr(e.message, "\"replay_of\" is not a string"), "%s", e.message);
        write_text(AJ_RUN_FILE_RUN, "{\"workspace_start\":\"x\"}");
        _cleanup_(aj_error_clear) AjError e2 = {};
        cr_assert_eq(aj_run_record_read(root, &bad, &e2), -EBADMSG);
        cr_assert_not_null(strstr(e2.message, "\"workspace_start\" is not an object"), "%s", e2.message);
}

/* live.lock: held while any process with the supervisor's open file lives (the watchdog
 * keeps it), released by the kernel when the last one is gone, killed or not. */
Test(record, live_lock_is_held_while_any_holder_lives)
{
        cr_expect_eq(aj_run_live_held(root), -ENOENT, "no live.lock: a run of an older agentjail");
        int fd = -1;
        cr_assert_eq(aj_run_live_hold(root, &fd), 0);
        cr_expect_eq(aj_run_live_held(root), 1, "held by the supervisor");
        int again = -1;
        cr_expect_eq(aj_run_live_hold(root, &again), -EEXIST, "never taken over from an existing file");

        /* The watchdog: forked with it, it keeps it after the supervisor is gone. */
        int go[2];
        cr_assert_eq(pipe(go), 0);
        pid_t watchdog = fork();
        cr_assert_geq(watchdog, 0);
        if (watchdog == 0) {
                close(go[1]);
                char c;
                (void)!read(go[0], &c, 1);
                _exit(0);
        }
        close(go[0]);
        close(fd);
        cr_expect_eq(aj_run_live_held(root), 1, "the supervisor gone, the watchdog holds it");
        close(go[1]);
        cr_assert_eq(waitpid(watchdog, NULL, 0), watchdog);
        cr_expect_eq(aj_run_live_held(root), 0, "both gone: not live");
        cr_expect_eq(aj_run_live_held(root), 0, "a look does not take it");

        /* A run that ends well: the supervisor's release is the end, the watchdog still
         * on its way out. */
        char path[300];
        cr_assert_eq(aj_run_file_path(root, AJ_RUN_FILE_LIVE, path, sizeof(path)), 0);
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(aj_run_live_hold(root, &fd), 0);
        cr_assert_eq(pipe(go), 0);
        watchdog = fork();
        cr_assert_geq(watchdog, 0);
        if (watchdog == 0) {
                close(go[1]);
                char c;
                (void)!read(go[0], &c, 1);
                _exit(0);
        }
        close(go[0]);
        aj_run_live_release(fd, false);
        cr_expect_eq(aj_run_live_held(root), 0, "released: over, the watchdog alive or not");
        close(go[1]);
        cr_assert_eq(waitpid(watchdog, NULL, 0), watchdog);

        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(symlink("/etc/passwd", path), 0);
        cr_expect_lt(aj_run_live_held(root), 0, "a symlink is not followed: cannot tell");
        cr_expect_neq(aj_run_live_held(root), -ENOENT);
}

/* The records' room is made again at each thaw, over what is there: a FIFO in its place is
 * refused at once (the supervisor waited in open(2) for a reader), a symlink refused with its
 * target left unallocated. */
Test(record, room_must_be_a_regular_file)
{
        char path[300], victim[300];
        cr_assert_eq(aj_run_file_path(root, "records.room", path, sizeof(path)), 0);
        cr_assert_eq(aj_run_file_path(root, "victim", victim, sizeof(victim)), 0);
        cr_assert_eq(mkfifo(path, 0600), 0);
        alarm(10); /* without the check, the open never returns */
        cr_expect_eq(aj_run_room_make(root), -EBADFD);
        alarm(0);
        cr_assert_eq(unlink(path), 0);
        write_text("victim", "");
        cr_assert_eq(symlink(victim, path), 0);
        cr_expect_eq(aj_run_room_make(root), -ELOOP);
        struct stat st;
        cr_assert_eq(stat(victim, &st), 0);
        cr_expect_eq(st.st_blocks, 0);
        cr_assert_eq(unlink(path), 0);
        int r = aj_run_room_make(root);
        cr_expect(r == 0 || r == -EOPNOTSUPP, "%s", strerror(-r));
}

/* run.json (and every record written whole) goes through a temporary file of the writer's
 * pid, made new: a FIFO put at that name is not waited on, a symlink not written through. */
Test(record, json_written_through_a_new_temporary_file)
{
        char tmp[300], victim[300];
        cr_assert_eq(aj_run_file_path(root, "victim", victim, sizeof(victim)), 0);
        snprintf(tmp, sizeof(tmp), "%s/run.json.tmp.%d", root, (int)getpid());
        cr_assert_eq(mkfifo(tmp, 0600), 0);
        json_t *doc = json_pack("{s:s}", "id", "abcd00000001");
        alarm(10); /* without a new file, the open never returns */
        cr_expect_eq(aj_run_file_write_json(root, "run.json", doc), 0);
        alarm(0);
        write_text("victim", "");
        cr_assert_eq(symlink(victim, tmp), 0);
        cr_expect_eq(aj_run_file_write_json(root, "run.json", doc), 0);
        json_decref(doc);
        struct stat st;
        cr_assert_eq(stat(victim, &st), 0);
        cr_expect_eq(st.st_size, 0, "the symlink's target was written");
        cr_expect_eq(lstat(tmp, &st), -1, "the temporary file was renamed");
        json_t *back = NULL;
        cr_assert_eq(aj_run_file_read_json(root, "run.json", &back), 0);
        cr_expect_str_eq(json_string_value(json_object_get(back, "id")), "abcd00000001");
        json_decref(back);
}
