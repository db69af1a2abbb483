/* SPDX-License-Identifier: Apache-2.0 */
/* The run record: run.json typed (round trip, malformed members named), the anchor it
 * keeps of the event chain, and the chain verified against it (good, cut, tampered). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "run-record.h"
#include "util/fd.h"

static char root[64];

static void setup(void)
{
        snprintf(root, sizeof(root), "/tmp/aj-record-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) { aj_rm_rf(root); }

TestSuite(record, .init = setup, .fini = teardown, .timeout = 30);

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
        AjChainEnd end = { .count = 4 };
        memset(end.last_hash, 'a', 64);
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
