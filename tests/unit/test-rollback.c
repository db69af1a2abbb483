/* SPDX-License-Identifier: Apache-2.0 */
/* The rollback plan (order, steps applied already, approval gating), the handler's input,
 * the rollback.step event, and running a handler (exit, output bound, timeout, environment). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rollback.h"
#include "util/clock.h"

/* A journal as aj_run_tool_journal makes it, newest first: its entries' undo records and
 * arguments written here as values, held as their compact JSON text. */
static json_t *journal(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);
        cr_assert_not_null(j, "%s", e.text);
        size_t i;
        json_t *c;
        json_array_foreach (j, i, c) {
                const char *keys[] = { "undo", "gen_ai.tool.call.arguments" };
                for (size_t k = 0; k < 2; k++) {
                        json_t *v = json_object_get(c, keys[k]);
                        if (!v || json_is_null(v))
                                continue;
                        char *dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                        cr_assert_not_null(dumped);
                        json_object_set_new(c, keys[k], json_string(dumped));
                        free(dumped);
                }
        }
        return j;
}

#define CALL(id, tool, seq, undo, rollback)                                                                 \
        "{\"gen_ai.tool.call.id\":\"" id "\",\"gen_ai.tool.name\":" tool ",\"gen_ai.tool.call.arguments\":" \
        "{\"id\":1},\"status\":\"ok\",\"ts\":\"t\",\"undo\":" undo ",\"seq\":" #seq ",\"rollback\":" rollback "}"

#define UNDO(tool) "{\"tool\":\"" tool "\",\"arguments\":{\"id\":1}}"

static const AjRollbackGate no_gate = { 0 };

Test(rollback, plan_is_newest_first_with_one_step_per_undo_record)
{
        json_auto_t *j = journal("[" CALL("c-3", "\"crm.create\"", 30, UNDO("crm.delete"),
                                          "null") "," CALL("c-2", "\"mail.send\"", 20, "null",
                                                           "null") "," CALL("c-1", "\"crm.create\"", 10,
                                                                            UNDO("crm.delete"), "null") "]");
        AjRollbackPlan p;
        AjError err = {};
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, &err), 0, "%s", err.message ?: "");
        cr_assert_eq(p.n, 2, "a call without an undo record is no step");
        cr_expect_eq(p.without_undo, 1, "it is counted: to reverse by hand");
        cr_expect_str_eq(p.steps[0].call_id, "c-3");
        cr_expect_eq(p.steps[0].step, 1);
        cr_expect_eq(p.steps[0].of, 2);
        cr_expect_eq(p.steps[0].result_seq, 30);
        cr_expect_str_eq(p.steps[0].undo_tool, "crm.delete");
        cr_expect_str_eq(p.steps[1].call_id, "c-1");
        cr_expect_eq(p.steps[1].step, 2);
        cr_expect_eq(p.to_run, 2);
        cr_expect_eq(p.steps[1].action, AJ_ROLLBACK_TO_RUN);
        aj_rollback_plan_done(&p);
}

Test(rollback, steps_the_chain_has_applied_are_not_run_again)
{
        json_auto_t *j = journal(
                "[" CALL("c-3", "\"crm.create\"", 30, UNDO("crm.delete"), "{\"result\":\"ok\",\"seq\":40}") "," CALL(
                        "c-2", "\"crm.create\"", 20, UNDO("crm.delete"),
                        "{\"result\":\"failed\",\"seq\":41}") "," CALL("c-1", "\"crm.create\"", 10, UNDO("crm.delete"),
                                                                       "null") "]");
        AjRollbackPlan p;
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, NULL), 0);
        cr_assert_eq(p.n, 3);
        cr_expect_eq(p.steps[0].action, AJ_ROLLBACK_APPLIED, "its last rollback.step was ok");
        cr_expect_eq(p.steps[1].action, AJ_ROLLBACK_TO_RUN, "a failed step is tried again");
        cr_expect_str_eq(p.steps[1].last_result, "failed");
        cr_expect_eq(p.steps[2].action, AJ_ROLLBACK_TO_RUN);
        cr_expect_eq(p.applied, 1);
        cr_expect_eq(p.to_run, 2);
        cr_expect_eq(p.steps[2].step, 3, "the numbering stays the run's, whatever is left");
        aj_rollback_plan_done(&p);
}

Test(rollback, gated_steps_are_held_unless_approved)
{
        static char *patterns[] = { "crm.restore", "pay.*" };
        json_auto_t *j = journal("[" CALL("c-4", "\"pay.refund\"", 40, UNDO("pay.charge"),
                                          "null") "," CALL("c-3", "\"crm.delete\"", 30, UNDO("crm.restore"),
                                                           "null") "," CALL("c-2", "null", 20, UNDO("x.undo"),
                                                                            "null") "," CALL("c-1", "\"crm.create\"",
                                                                                             10, UNDO("crm.delete"),
                                                                                             "null") "]");
        AjRollbackGate gate = { .patterns = patterns, .n_patterns = 2 };
        AjRollbackPlan p;
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, NULL), 0);
        cr_expect(p.steps[0].gated, "the call's own tool matches");
        cr_expect_str_eq(p.steps[0].gate, "pay.*");
        cr_expect(p.steps[1].gated, "the undo record's tool matches");
        cr_expect_str_eq(p.steps[1].gate, "crm.restore");
        cr_expect(p.steps[2].gated, "a call whose tool is not known is gated when anything is");
        cr_expect_null(p.steps[2].gate);
        cr_expect_not(p.steps[3].gated);
        cr_expect_eq(p.held, 3);
        cr_expect_eq(p.to_run, 1);
        for (size_t i = 0; i < 3; i++)
                cr_expect_eq(p.steps[i].action, AJ_ROLLBACK_HELD);
        aj_rollback_plan_done(&p);

        static char *approve[] = { "c-3" };
        gate.approve = approve;
        gate.n_approve = 1;
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, NULL), 0);
        cr_expect_eq(p.steps[1].action, AJ_ROLLBACK_TO_RUN, "--approve c-3");
        cr_expect(p.steps[1].approved);
        cr_expect_eq(p.steps[0].action, AJ_ROLLBACK_HELD, "only the call named");
        cr_expect_eq(p.held, 2);
        aj_rollback_plan_done(&p);

        gate = (AjRollbackGate){ .patterns = patterns, .n_patterns = 2, .approve_all_gated = true };
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, NULL), 0);
        cr_expect_eq(p.held, 0, "--approve-all-gated");
        cr_expect_eq(p.to_run, 4);
        aj_rollback_plan_done(&p);

        /* Without patterns nothing is gated, not even a call whose tool is not known. */
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, NULL), 0);
        cr_expect_eq(p.held, 0);
        aj_rollback_plan_done(&p);
}

/* The undo record is the agent's. A handler reading it with Go's encoding/json matches member
 * names ignoring case, the last match winning: {"tool": "x.undo", "Tool": "pay.refund"} runs
 * pay.refund there while the gate read x.undo and ran the step unapproved. An undo record whose
 * tool cannot be told (another spelling of "tool", a "tool" that is not a string) is held. */
Test(rollback, an_undo_tool_spelt_otherwise_is_gated)
{
        static char *patterns[] = { "pay.*" };
        json_auto_t *j = journal(
                "[" CALL("c-4", "\"notes.write\"", 40, "{\"tool\":\"notes.undo\",\"Tool\":\"pay.refund\"}",
                         "null") "," CALL("c-3", "\"notes.write\"", 30, "{\"TOOL\":\"pay.refund\"}",
                                          "null") "," CALL("c-2", "\"notes.write\"", 20, "{\"tool\":[\"pay.refund\"]}",
                                                           "null") "," CALL("c-1", "\"notes.write\"", 10,
                                                                            "{\"tool\":\"notes.undo\",\"tools\":1}",
                                                                            "null") "]");
        AjRollbackGate gate = { .patterns = patterns, .n_patterns = 1 };
        AjRollbackPlan p;
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, NULL), 0);
        cr_assert_eq(p.n, 4);
        cr_expect(p.steps[0].gated, "\"Tool\" beside \"tool\" was not gated");
        cr_expect_str_eq(p.steps[0].undo_tool, "notes.undo");
        cr_expect(p.steps[1].gated, "\"TOOL\" alone was not gated");
        cr_expect(p.steps[2].gated, "a \"tool\" that is not a string was not gated");
        cr_expect_null(p.steps[2].gate);
        cr_expect_str_eq(aj_rollback_step_gate_text(&p.steps[2]), "the undo record's tool not known");
        cr_expect_not(p.steps[3].gated, "another member's name is no tool");
        cr_expect_eq(p.held, 3);
        aj_rollback_plan_done(&p);

        /* Without patterns nothing is gated. */
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, NULL), 0);
        cr_expect_eq(p.held, 0);
        aj_rollback_plan_done(&p);
}

Test(rollback, an_approval_of_no_step_is_refused)
{
        static char *approve[] = { "c-9" };
        AjRollbackGate gate = { .approve = approve, .n_approve = 1 };
        json_auto_t *j = journal("[" CALL("c-1", "\"crm.create\"", 10, UNDO("crm.delete"),
                                          "null") "," CALL("c-9", "\"crm.create\"", 5, "null", "null") "]");
        AjRollbackPlan p;
        AjError err = {};
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, &err), -EINVAL);
        cr_expect_str_eq(err.message, "--approve c-9: no undo record of the run has that call id",
                         "c-9 has a result but no undo record");
        aj_error_clear(&err);
}

Test(rollback, bad_journals_and_too_many_steps)
{
        AjRollbackPlan p;
        AjError err = {};
        json_auto_t *noseq = journal("[{\"gen_ai.tool.call.id\":\"c\",\"undo\":{}}]");
        cr_expect_eq(aj_rollback_plan(noseq, &no_gate, &p, &err), -EINVAL);
        aj_error_clear(&err);
        /* The journal holds undo records as their JSON text: text that is not JSON is no
         * journal aj_run_tool_journal made. */
        json_auto_t *bad_undo =
                json_loads("[{\"gen_ai.tool.call.id\":\"c\",\"status\":\"ok\",\"undo\":\"{x\",\"seq\":1}]", 0, NULL);
        cr_assert_eq(aj_rollback_plan(bad_undo, &no_gate, &p, &err), -EINVAL);
        cr_expect_str_eq(err.message, "journal entry 0: its undo record is not JSON");
        aj_error_clear(&err);
        /* More than one rollback plans: the newest are planned, the oldest left out and
         * listed, not the whole run refused. */
        json_auto_t *big = json_array();
        for (int i = AJ_ROLLBACK_MAX_STEPS + 2; i > 0; i--)
                json_array_append_new(big, json_pack("{s:s, s:s, s:s, s:i}", "gen_ai.tool.call.id", "c", "status", "ok",
                                                     "undo", "{}", "seq", i));
        cr_assert_eq(aj_rollback_plan(big, &no_gate, &p, &err), 0, "%s", err.message ?: "");
        cr_expect_eq(p.n, AJ_ROLLBACK_MAX_STEPS);
        cr_expect_eq(p.steps[0].result_seq, AJ_ROLLBACK_MAX_STEPS + 2, "the newest first");
        cr_expect_eq(p.steps[0].of, AJ_ROLLBACK_MAX_STEPS);
        cr_expect_eq(p.past_limit, 2);
        cr_assert_eq(json_array_size(p.left_out), 2);
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(p.left_out, 1), "result_seq")), 1,
                     "the oldest are left out");
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(p.left_out, 1), "why")), "past-limit");
        aj_rollback_plan_done(&p);
}

/* Orphan results (not an allowed call's first) are never steps; the undo records of
 * failed calls are left out unless included. Both are listed with why. */
Test(rollback, orphans_and_failed_calls_are_left_out)
{
        json_auto_t *j = journal("[{\"gen_ai.tool.call.id\":\"ghost\",\"status\":\"ok\",\"undo\":" UNDO(
                "crm.delete") ",\"seq\":40,"
                              "\"rollback\":null,\"orphan\":\"no tool call with that id\"},"
                              "{\"gen_ai.tool.call.id\":\"c-2\",\"gen_ai.tool.name\":\"crm.create\",\"status\":\"error\",\"undo\":" UNDO(
                                      "crm.delete") ",\"seq\":30,\"rollback\":null}," CALL("c-1", "\"crm.create\"", 10,
                                                                                           UNDO("crm.delete"),
                                                                                           "null") "]");
        AjRollbackPlan p;
        AjError err = {};
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, &err), 0, "%s", err.message ?: "");
        cr_assert_eq(p.n, 1, "only c-1");
        cr_expect_str_eq(p.steps[0].call_id, "c-1");
        cr_expect_eq(p.steps[0].of, 1);
        cr_expect_eq(p.orphans, 1);
        cr_expect_eq(p.failed_calls, 1);
        cr_assert_eq(json_array_size(p.left_out), 2);
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(p.left_out, 0), "why")),
                         "orphan: no tool call with that id");
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(p.left_out, 1), "why")), "failed-call");
        aj_rollback_plan_done(&p);

        /* An --approve of an orphan names no step. */
        static char *approve[] = { "ghost" };
        AjRollbackGate gate = { .approve = approve, .n_approve = 1 };
        cr_expect_eq(aj_rollback_plan(j, &gate, &p, &err), -EINVAL);
        aj_error_clear(&err);

        gate = (AjRollbackGate){ .include_failed = true };
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, NULL), 0);
        cr_assert_eq(p.n, 2, "--include-failed plans the failed call's undo");
        cr_expect_str_eq(p.steps[0].status, "error");
        cr_expect_eq(p.orphans, 1, "never an orphan");
        char *text = NULL;
        cr_assert_eq(aj_rollback_step_input(&p.steps[0], "abcdef012345", &text), 0);
        cr_expect_not_null(strstr(text, "\"status\":\"error\""), "the handler is told the call failed: %s", text);
        free(text);
        aj_rollback_plan_done(&p);
}

/* A reused call id: a bare --approve is ambiguous, CALL@RESULT_SEQ names one step. */
Test(rollback, approvals_name_one_step)
{
        static char *patterns[] = { "crm.*" };
        json_auto_t *j = journal(
                "[" CALL("c-1", "\"crm.create\"", 20, UNDO("crm.delete"),
                         "null") "," CALL("c-1", "\"crm.create\"", 10, UNDO("crm.delete"), "null") "]");
        static char *bare[] = { "c-1" }, *one[] = { "c-1@10" }, *none[] = { "c-1@11" };
        AjRollbackGate gate = { .patterns = patterns, .n_patterns = 1, .approve = bare, .n_approve = 1 };
        AjRollbackPlan p;
        AjError err = {};
        cr_expect_eq(aj_rollback_plan(j, &gate, &p, &err), -EINVAL);
        cr_expect_not_null(strstr(err.message ?: "", "2 steps have that call id"), "%s", err.message ?: "");
        aj_error_clear(&err);
        gate.approve = one;
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, &err), 0, "%s", err.message ?: "");
        cr_expect_eq(p.steps[0].action, AJ_ROLLBACK_HELD, "seq 20 is not approved");
        cr_expect_eq(p.steps[1].action, AJ_ROLLBACK_TO_RUN, "seq 10 is");
        aj_rollback_plan_done(&p);
        gate.approve = none;
        cr_expect_eq(aj_rollback_plan(j, &gate, &p, &err), -EINVAL);
        aj_error_clear(&err);
}

/* The call ids are the agent's, '@' and digits too: a call "c-1@10" beside call c-1's step at
 * result seq 10 made "--approve c-1@10", typed for that step (as the refusal of a bare "c-1"
 * asks), approve the agent's "c-1@10" instead, its undo run unreviewed. Refused as ambiguous. */
Test(rollback, an_approval_that_is_also_a_call_id_is_refused)
{
        static char *patterns[] = { "crm.*" };
        json_auto_t *j = journal("[" CALL("c-1@10", "\"crm.create\"", 30, UNDO("crm.wipe"),
                                          "null") "," CALL("c-1", "\"crm.create\"", 20, UNDO("crm.delete"),
                                                           "null") "," CALL("c-1", "\"crm.create\"", 10,
                                                                            UNDO("crm.delete"), "null") "]");
        static char *typed[] = { "c-1@10" }, *whole[] = { "c-1@10@30" };
        AjRollbackGate gate = { .patterns = patterns, .n_patterns = 1, .approve = typed, .n_approve = 1 };
        AjRollbackPlan p;
        AjError err = {};
        int r = aj_rollback_plan(j, &gate, &p, &err);
        if (r == 0) {
                cr_expect_eq(p.steps[0].action, AJ_ROLLBACK_HELD, "the agent's c-1@10 was approved by c-1@10");
                aj_rollback_plan_done(&p);
        }
        cr_assert_eq(r, -EINVAL);
        cr_expect_not_null(strstr(err.message ?: "", "is ambiguous"), "%s", err.message ?: "");
        aj_error_clear(&err);

        /* The agent's call by its whole id and seq: that step alone. */
        gate.approve = whole;
        cr_assert_eq(aj_rollback_plan(j, &gate, &p, &err), 0, "%s", err.message ?: "");
        cr_expect_eq(p.steps[0].action, AJ_ROLLBACK_TO_RUN);
        cr_expect_eq(p.steps[1].action, AJ_ROLLBACK_HELD);
        cr_expect_eq(p.steps[2].action, AJ_ROLLBACK_HELD);
        aj_rollback_plan_done(&p);
}

Test(rollback, handler_input_document)
{
        json_auto_t *j = journal("[" CALL("c-1", "\"crm.create\"", 10, UNDO("crm.delete"),
                                          "null") "," CALL("c-0", "null", 9, UNDO("x"), "null") "]");
        AjRollbackPlan p;
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, NULL), 0);
        char *text = NULL;
        cr_assert_eq(aj_rollback_step_input(&p.steps[0], "abcdef012345", &text), 0);
        cr_expect_str_eq(text,
                         "{\"run\":\"abcdef012345\",\"step\":1,\"of\":2,\"call_id\":\"c-1\",\"tool\":\"crm.create\","
                         "\"args\":{\"id\":1},\"status\":\"ok\",\"undo\":{\"tool\":\"crm.delete\",\"arguments\":{\"id\":1}},"
                         "\"result_seq\":10}\n");
        free(text);
        p.steps[1].args = NULL;
        cr_assert_eq(aj_rollback_step_input(&p.steps[1], "abcdef012345", &text), 0);
        cr_expect_not_null(strstr(text, "\"tool\":null,\"args\":null"), "unknown ones are null: %s", text);
        free(text);
        aj_rollback_plan_done(&p);
}

Test(rollback, step_event_fields)
{
        json_auto_t *j = journal("[" CALL("c-1", "\"crm.create\"", 10, UNDO("crm.delete"), "null") "]");
        AjRollbackPlan p;
        cr_assert_eq(aj_rollback_plan(j, &no_gate, &p, NULL), 0);
        AjRollbackOutcome o = { .result = AJ_ROLLBACK_FAILED, .exit_code = 3, .duration_ns = 1500000000ULL };
        const char out[] = "line 1\n\x1b[31mred\xff\tend";
        memcpy(o.output, out, sizeof(out));
        o.output_len = sizeof(out) - 1;
        o.output_bytes = 99999;
        json_auto_t *ev = aj_rollback_step_event(&p.steps[0], &o, 42);
        cr_assert_not_null(ev);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "gen_ai.tool.call.id")), "c-1");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "gen_ai.tool.name")), "crm.create");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "undo_tool")), "crm.delete");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "result")), "failed");
        cr_expect_eq(json_integer_value(json_object_get(ev, "exit_code")), 3);
        cr_expect_eq(json_integer_value(json_object_get(ev, "result_seq")), 10);
        cr_expect_eq(json_integer_value(json_object_get(ev, "duration_ms")), 1500);
        cr_expect_eq(json_integer_value(json_object_get(ev, "uid")), 42);
        cr_expect_eq(json_integer_value(json_object_get(ev, "output_bytes")), 99999);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "output")), "line 1\n?[31mred?\tend",
                         "control bytes and non-ASCII become '?'");
        cr_expect_null(json_object_get(ev, "signal"), "no signal, no member");

        AjRollbackOutcome held = { .result = AJ_ROLLBACK_HELD_BACK, .exit_code = -1 };
        json_auto_t *hv = aj_rollback_step_event(&p.steps[0], &held, 0);
        cr_expect_str_eq(json_string_value(json_object_get(hv, "result")), "held");
        cr_expect_null(json_object_get(hv, "exit_code"), "a held step ran nothing");
        cr_expect_null(json_object_get(hv, "output"));
        aj_rollback_plan_done(&p);
}

Test(rollback, result_names_round_trip)
{
        for (int r = AJ_ROLLBACK_OK; r <= AJ_ROLLBACK_HELD_BACK; r++) {
                AjRollbackResult back;
                cr_assert_eq(aj_rollback_result_from_name(aj_rollback_result_name(r), &back), 0);
                cr_expect_eq((int)back, r);
        }
        AjRollbackResult x;
        cr_expect_eq(aj_rollback_result_from_name("done", &x), -EINVAL);
}

/* ---- running a handler ---- */

static const AjRollbackStep step = { .step = 2, .of = 5, .call_id = "c-7", .result_seq = 3 };

static AjRollbackOutcome run_sh(const char *script, const char *input, uint64_t timeout_ns)
{
        char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };
        AjRollbackOutcome o;
        cr_assert_eq(aj_rollback_exec(argv, input, strlen(input), "abcdef012345", &step, timeout_ns, &o), 0);
        return o;
}

Test(rollback, exec_gives_stdin_and_keeps_the_exit_status)
{
        AjRollbackOutcome o = run_sh("cat; echo err >&2; exit 3", "{\"undo\":1}\n", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_FAILED);
        cr_expect_eq(o.exit_code, 3);
        cr_expect_str_eq(o.output, "{\"undo\":1}\nerr\n", "stdout then stderr, one pipe");
        o = run_sh("read line; test \"$line\" = hello", "hello\n", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_OK);
        cr_expect_eq(o.exit_code, 0);
        o = run_sh("kill -9 $$", "", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_FAILED);
        cr_expect_eq(o.signal, 9);
        cr_expect_eq(o.exit_code, -1);
}

Test(rollback, exec_has_a_clean_environment)
{
        setenv("AGENTJAIL_STATE_DIR", "/secret", 1);
        setenv("SOME_TOKEN", "x", 1);
        AjRollbackOutcome o = run_sh("env | cut -d= -f1 | sort | tr '\\n' ' '; pwd", "", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_OK);
        /* sh itself adds PWD (and perhaps SHLVL, OLDPWD); nothing of the caller's passes. */
        cr_expect_not_null(strstr(o.output, "AGENTJAIL_ROLLBACK_OF AGENTJAIL_ROLLBACK_STEP AGENTJAIL_RUN_ID "
                                            "AGENTJAIL_TOOL_CALL_ID HOME LANG LOGNAME PATH "),
                           "%s", o.output);
        cr_expect_null(strstr(o.output, "SOME_TOKEN"), "%s", o.output);
        cr_expect_null(strstr(o.output, "AGENTJAIL_STATE_DIR"), "%s", o.output);
        cr_expect_not_null(strstr(o.output, "\n/\n") ?: strstr(o.output, " /\n"), "cwd is /: %s", o.output);
        o = run_sh("echo \"$AGENTJAIL_ROLLBACK_STEP/$AGENTJAIL_ROLLBACK_OF $AGENTJAIL_TOOL_CALL_ID $AGENTJAIL_RUN_ID\"",
                   "", 10000000000ULL);
        cr_expect_str_eq(o.output, "2/5 c-7 abcdef012345\n");
}

Test(rollback, exec_output_is_bounded)
{
        AjRollbackOutcome o = run_sh("head -c 1000000 /dev/zero | tr '\\0' x", "", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_OK);
        cr_expect_eq(o.output_len, AJ_ROLLBACK_OUTPUT_MAX);
        cr_expect_eq(o.output_bytes, 1000000, "the rest is read and counted, not kept");
}

Test(rollback, exec_timeout_kills_the_handler_and_its_group)
{
        uint64_t t0 = aj_now_monotonic_ns();
        /* A child in the background keeps the output pipe open: it must not hold the step. */
        AjRollbackOutcome o = run_sh("sleep 30 & echo started; sleep 30", "", 300000000ULL);
        uint64_t took = aj_now_monotonic_ns() - t0;
        cr_expect_eq(o.result, AJ_ROLLBACK_TIMEOUT);
        cr_expect_eq(o.exit_code, -1);
        cr_expect_lt(took, 5000000000ULL, "took %llu ns", (unsigned long long)took);
        cr_expect_str_eq(o.output, "started\n");
        /* A handler that exits leaving a child behind: the step ends when it exits. */
        t0 = aj_now_monotonic_ns();
        o = run_sh("sleep 30 & exit 0", "", 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_OK);
        cr_expect_lt(aj_now_monotonic_ns() - t0, 5000000000ULL);
}

Test(rollback, exec_of_a_missing_program_is_an_error_outcome)
{
        char *argv[] = { "/nonexistent/handler", NULL };
        AjRollbackOutcome o;
        cr_assert_eq(aj_rollback_exec(argv, "", 0, "abcdef012345", &step, 1000000000ULL, &o), 0);
        cr_expect_eq(o.result, AJ_ROLLBACK_ERROR);
        cr_expect_eq(o.error, -ENOENT);
        char *rel[] = { "handler", NULL };
        cr_assert_eq(aj_rollback_exec(rel, "", 0, "abcdef012345", &step, 1000000000ULL, &o), 0);
        cr_expect_eq(o.result, AJ_ROLLBACK_ERROR, "a relative program is refused");
        cr_expect_eq(o.error, -EINVAL);
}

Test(rollback, exec_survives_a_handler_that_ignores_its_stdin)
{
        /* More input than a pipe holds, never read: no SIGPIPE for agentjail, the step ends. */
        size_t n = 1 << 20;
        char *big = malloc(n + 1);
        memset(big, 'a', n);
        big[n] = 0;
        AjRollbackOutcome o = run_sh("exec 0<&-; exit 0", big, 10000000000ULL);
        cr_expect_eq(o.result, AJ_ROLLBACK_OK);
        free(big);
}
