/* SPDX-License-Identifier: Apache-2.0 */
/* The rollback plan, the handler's input and the step's event (pure; see rollback.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meter.h"
#include "rollback.h"
#include "util/macros.h"

/* clang-format off */
static const char *const result_names[] = {
        [AJ_ROLLBACK_OK] = "ok",
        [AJ_ROLLBACK_FAILED] = "failed",
        [AJ_ROLLBACK_TIMEOUT] = "timeout",
        [AJ_ROLLBACK_ERROR] = "error",
        [AJ_ROLLBACK_HELD_BACK] = "held",
};
/* clang-format on */

const char *aj_rollback_result_name(AjRollbackResult r)
{
        return (size_t)r < ARRAY_SIZE(result_names) ? result_names[r] : "?";
}

int aj_rollback_result_from_name(const char *name, AjRollbackResult *ret)
{
        for (size_t i = 0; name && i < ARRAY_SIZE(result_names); i++)
                if (streq(result_names[i], name)) {
                        *ret = (AjRollbackResult)i;
                        return 0;
                }
        return -EINVAL;
}

void aj_rollback_plan_done(AjRollbackPlan *p)
{
        if (!p)
                return;
        free(p->steps);
        json_decref(p->journal);
        *p = (AjRollbackPlan){ 0 };
}

static const char *gate_match(const AjRollbackGate *g, const char *name)
{
        for (size_t i = 0; name && i < g->n_patterns; i++)
                if (aj_glob_match(g->patterns[i], name))
                        return g->patterns[i];
        return NULL;
}

/* Gated when approvals.tools matches the call's tool or the tool the undo record names:
 * undoing a gated action is as consequential as doing it. A call whose tool is not known
 * (a result without its request) is gated whenever the profile gates anything. */
static void step_gate(AjRollbackStep *s, const AjRollbackGate *g)
{
        s->gate = gate_match(g, s->tool) ?: gate_match(g, s->undo_tool);
        s->gated = s->gate || (!s->tool && g->n_patterns > 0);
        if (!s->gated)
                return;
        s->approved = g->approve_all_gated;
        for (size_t i = 0; !s->approved && i < g->n_approve; i++)
                s->approved = streq(g->approve[i], s->call_id);
}

int aj_rollback_plan(json_t *journal, const AjRollbackGate *gate, AjRollbackPlan *ret, AjError *err)
{
        if (!json_is_array(journal))
                return aj_error_set(err, -EINVAL, "the tool journal is not an array");
        size_t n = 0, i;
        json_t *c;
        AjRollbackPlan p = { 0 };
        json_array_foreach (journal, i, c) {
                json_t *undo = json_object_get(c, "undo");
                const char *st = json_string_value(json_object_get(c, "status"));
                if (json_is_object(undo))
                        n++;
                else if (st && streq(st, "ok"))
                        p.without_undo++;
        }
        if (n > AJ_ROLLBACK_MAX_STEPS)
                return aj_error_set(err, -E2BIG, "%zu undo records: more than %d, the most one rollback plans", n,
                                    AJ_ROLLBACK_MAX_STEPS);
        p.steps = n ? calloc(n, sizeof(*p.steps)) : NULL;
        if (n && !p.steps)
                return -ENOMEM;
        json_array_foreach (journal, i, c) {
                json_t *undo = json_object_get(c, "undo");
                if (!json_is_object(undo))
                        continue;
                json_t *seq = json_object_get(c, "seq");
                const char *id = json_string_value(json_object_get(c, "gen_ai.tool.call.id"));
                if (!id || !json_is_integer(seq) || json_integer_value(seq) <= 0) {
                        free(p.steps);
                        return aj_error_set(err, -EINVAL, "journal entry %zu has no call id or seq", i);
                }
                AjRollbackStep *s = &p.steps[p.n];
                *s = (AjRollbackStep){
                        .step = (unsigned)(p.n + 1),
                        .of = (unsigned)n,
                        .result_seq = (uint64_t)json_integer_value(seq),
                        .call_id = id,
                        .tool = json_string_value(json_object_get(c, "gen_ai.tool.name")),
                        .undo_tool = json_string_value(json_object_get(undo, "tool")),
                        .args = json_object_get(c, "gen_ai.tool.call.arguments"),
                        .undo = undo,
                        .last_result = json_string_value(json_object_get(json_object_get(c, "rollback"), "result")),
                };
                p.n++;
                step_gate(s, gate);
                if (s->last_result && streq(s->last_result, aj_rollback_result_name(AJ_ROLLBACK_OK))) {
                        s->action = AJ_ROLLBACK_APPLIED;
                        p.applied++;
                } else if (s->gated && !s->approved) {
                        s->action = AJ_ROLLBACK_HELD;
                        p.held++;
                } else {
                        s->action = AJ_ROLLBACK_TO_RUN;
                        p.to_run++;
                }
        }
        /* An approval that names no step is a typo the operator should hear about before
         * anything runs. */
        for (size_t a = 0; a < gate->n_approve; a++) {
                bool found = false;
                for (size_t k = 0; k < p.n && !found; k++)
                        found = streq(p.steps[k].call_id, gate->approve[a]);
                if (!found) {
                        free(p.steps);
                        return aj_error_set(err, -EINVAL, "--approve %s: no undo record of the run has that call id",
                                            gate->approve[a]);
                }
        }
        p.journal = json_incref(journal);
        *ret = p;
        return 0;
}

int aj_rollback_step_input(const AjRollbackStep *s, const char *run_id, char **ret_text)
{
        json_auto_t *doc = json_pack("{s:s, s:I, s:I, s:s, s:s?, s:O?, s:O, s:I}", "run", run_id, "step",
                                     (json_int_t)s->step, "of", (json_int_t)s->of, "call_id", s->call_id, "tool",
                                     s->tool, "args", s->args, "undo", s->undo, "result_seq",
                                     (json_int_t)s->result_seq);
        if (!doc) /* "tool" and "args" are null when the call's request is not known */
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        size_t len = strlen(text);
        char *line = malloc(len + 2);
        if (!line)
                return -ENOMEM;
        memcpy(line, text, len);
        line[len] = '\n';
        line[len + 1] = 0;
        *ret_text = line;
        return 0;
}

/* The output as a JSON string can hold it: printable ASCII, newlines and tabs; the rest '?'. */
static json_t *output_excerpt(const AjRollbackOutcome *o)
{
        char buf[AJ_ROLLBACK_OUTPUT_MAX + 1];
        size_t n = o->output_len < AJ_ROLLBACK_OUTPUT_MAX ? o->output_len : AJ_ROLLBACK_OUTPUT_MAX;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)o->output[i];
                buf[i] = (ch >= 0x20 && ch < 0x7f) || ch == '\n' || ch == '\t' ? (char)ch : '?';
        }
        buf[n] = 0;
        return json_string(buf);
}

json_t *aj_rollback_step_event(const AjRollbackStep *s, const AjRollbackOutcome *o, uid_t uid)
{
        json_t *ev = json_pack("{s:s, s:s?, s:s?, s:I, s:I, s:I, s:s, s:I}", "gen_ai.tool.call.id", s->call_id,
                               "gen_ai.tool.name", s->tool, "undo_tool", s->undo_tool, "step", (json_int_t)s->step,
                               "of", (json_int_t)s->of, "result_seq", (json_int_t)s->result_seq, "result",
                               aj_rollback_result_name(o->result), "uid", (json_int_t)uid);
        if (!ev)
                return NULL;
        if (o->result == AJ_ROLLBACK_HELD_BACK) {
                if (json_object_set_new(ev, "gate", s->gate ? json_string(s->gate) : json_null()) < 0) {
                        json_decref(ev);
                        return NULL;
                }
                return ev;
        }
        json_t *excerpt = output_excerpt(o);
        int r = json_object_set_new(ev, "exit_code", o->exit_code >= 0 ? json_integer(o->exit_code) : json_null());
        if (o->signal > 0)
                r |= json_object_set_new(ev, "signal", json_integer(o->signal));
        r |= json_object_set_new(ev, "duration_ms", json_integer((json_int_t)(o->duration_ns / 1000000)));
        r |= json_object_set_new(ev, "output", excerpt);
        r |= json_object_set_new(ev, "output_bytes", json_integer((json_int_t)o->output_bytes));
        if (o->result == AJ_ROLLBACK_ERROR)
                r |= json_object_set_new(ev, "error", json_string(strerror(-o->error)));
        if (r < 0 || !excerpt) {
                json_decref(ev);
                return NULL;
        }
        return ev;
}
