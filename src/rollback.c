/* SPDX-License-Identifier: Apache-2.0 */
/* The rollback plan, the handler's input and the step's event (pure; see rollback.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentjail/broker.h"
#include "meter.h"
#include "rollback.h"
#include "util/macros.h"

/* The broker records no more undo records in a run than one rollback plans. */
_Static_assert(AJ_ROLLBACK_MAX_STEPS == AJ_BROKER_MAX_UNDO, "the broker's undo limit is the plan's");

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

static void free_steps(AjRollbackPlan *p)
{
        for (size_t k = 0; k < p->n; k++)
                free(p->steps[k].undo_tool);
        free(p->steps);
}

void aj_rollback_plan_done(AjRollbackPlan *p)
{
        if (!p)
                return;
        free_steps(p);
        json_decref(p->left_out);
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
 * (a result without its request), or an undo record whose tool cannot be told, is gated
 * whenever the profile gates anything. */
static void step_gate(AjRollbackStep *s, const AjRollbackGate *g)
{
        s->gate = gate_match(g, s->tool) ?: gate_match(g, s->undo_tool);
        s->gated = s->gate || ((!s->tool || s->undo_tool_unclear) && g->n_patterns > 0);
}

const char *aj_rollback_step_gate_text(const AjRollbackStep *s)
{
        if (s->gate)
                return s->gate;
        return s->tool ? "the undo record's tool not known" : "tool not known";
}

/* Why a journal entry with an undo record is not a step (NULL: it is one). */
static const char *left_out_why(json_t *c, const AjRollbackGate *g, char *buf, size_t size)
{
        const char *orphan = json_string_value(json_object_get(c, "orphan"));
        const char *st = json_string_value(json_object_get(c, "status"));
        if (orphan) {
                snprintf(buf, size, "orphan: %s", orphan);
                return buf;
        }
        if (!g->include_failed && (!st || !streq(st, "ok")))
                return "failed-call";
        return NULL;
}

/* Whether s is call `a`'s (its first id_len bytes) step at result seq `seq`. */
static bool is_step_at(const AjRollbackStep *s, const char *a, size_t id_len, uint64_t seq)
{
        return s->result_seq == seq && strlen(s->call_id) == id_len && strncmp(s->call_id, a, id_len) == 0;
}

/* The steps an --approve names, either way it can be read: CALL_ID (every step with that id,
 * counted in *ret_by_id) and CALL_ID@RESULT_SEQ (that one step, in *ret_by_seq). Marks them
 * only when one reading alone names any: the call ids are the agent's, '@' and digits too,
 * so "c-1@17" may be both a call's id and call c-1's step at seq 17 (check_approvals refuses
 * that). */
static void approve_match(AjRollbackPlan *p, const char *a, bool *marks, size_t *ret_by_id, size_t *ret_by_seq)
{
        const char *at = strrchr(a, '@');
        bool seq_form = at && at[1] && strspn(at + 1, "0123456789") == strlen(at + 1) && strlen(at + 1) <= 19;
        uint64_t seq = seq_form ? strtoull(at + 1, NULL, 10) : 0;
        size_t id_len = seq_form ? (size_t)(at - a) : 0;
        size_t by_id = 0, by_seq = 0;
        for (size_t k = 0; k < p->n; k++) {
                const AjRollbackStep *s = &p->steps[k];
                by_id += streq(s->call_id, a);
                by_seq += seq_form && is_step_at(s, a, id_len, seq);
        }
        *ret_by_id = by_id;
        *ret_by_seq = by_seq;
        if (by_id && by_seq)
                return;
        for (size_t k = 0; k < p->n; k++) {
                const AjRollbackStep *s = &p->steps[k];
                if (by_id ? streq(s->call_id, a) : by_seq && is_step_at(s, a, id_len, seq))
                        marks[k] = true;
        }
}

static int plan_fail(AjRollbackPlan *p, int r)
{
        free_steps(p);
        json_decref(p->left_out);
        *p = (AjRollbackPlan){ 0 };
        return r;
}

/* The entry's undo record when it is an object (the only kind the broker records): its
 * compact JSON text, as the journal holds it. */
static const char *undo_object_text(json_t *c)
{
        const char *undo = json_string_value(json_object_get(c, "undo"));
        return undo && undo[0] == '{' ? undo : NULL;
}

/* The undo record's own "tool" (NULL: none, or not a string), a new string; -EINVAL when
 * the record is not JSON text. *ret_unclear: the record names a tool the gate cannot read as
 * the handler may: a "tool" that is not a string, or a member "tool" in other letter case
 * ("Tool", "TOOL"), which a handler matching names ignoring case reads as its tool (Go's
 * encoding/json: {"tool": "notes.undo", "Tool": "pay.refund"} decodes as pay.refund, the last
 * match winning; the broker refuses duplicates, not other spellings). */
static int undo_tool_of(const char *undo, char **ret, bool *ret_unclear)
{
        json_auto_t *v = json_loads(undo, JSON_DECODE_ANY, NULL);
        if (!v)
                return -EINVAL;
        const char *key;
        json_t *m;
        bool unclear = false;
        json_object_foreach (v, key, m)
                if (strcasecmp(key, "tool") == 0 && (!streq(key, "tool") || !json_is_string(m)))
                        unclear = true;
        const char *tool = json_string_value(json_object_get(v, "tool"));
        *ret = tool ? strdup(tool) : NULL;
        *ret_unclear = unclear;
        return tool && !*ret ? -ENOMEM : 0;
}

/* How many journal entries are steps (before the limit); counts the ok calls without an undo record. */
static size_t count_steps(json_t *journal, const AjRollbackGate *gate, AjRollbackPlan *p)
{
        size_t n = 0, i;
        json_t *c;
        char why_buf[200];
        json_array_foreach (journal, i, c) {
                const char *st = json_string_value(json_object_get(c, "status"));
                if (undo_object_text(c))
                        n += !left_out_why(c, gate, why_buf, sizeof(why_buf));
                else if (st && streq(st, "ok") && !json_object_get(c, "orphan"))
                        p->without_undo++;
        }
        return n;
}

/* Each entry with an undo record: a step (up to `planned`) or left out, with why. */
static int add_steps(json_t *journal, const AjRollbackGate *gate, size_t planned, AjRollbackPlan *p, AjError *err)
{
        size_t i;
        json_t *c;
        char why_buf[200];
        json_array_foreach (journal, i, c) {
                const char *undo = undo_object_text(c);
                if (!undo)
                        continue;
                json_t *seq = json_object_get(c, "seq");
                const char *id = json_string_value(json_object_get(c, "gen_ai.tool.call.id"));
                if (!id || !json_is_integer(seq) || json_integer_value(seq) <= 0) {
                        plan_fail(p, 0);
                        return aj_error_set(err, -EINVAL, "journal entry %zu has no call id or seq", i);
                }
                const char *why = left_out_why(c, gate, why_buf, sizeof(why_buf));
                if (!why && p->n == planned)
                        why = "past-limit";
                if (why) {
                        if (json_array_append_new(p->left_out,
                                                  json_pack("{s:s, s:O, s:O?, s:s}", "call_id", id, "result_seq", seq,
                                                            "status", json_object_get(c, "status"), "why", why)) < 0)
                                return plan_fail(p, -ENOMEM);
                        p->orphans += strncmp(why, "orphan", 6) == 0;
                        p->failed_calls += streq(why, "failed-call");
                        p->past_limit += streq(why, "past-limit");
                        continue;
                }
                json_t *args = json_object_get(c, "gen_ai.tool.call.arguments");
                if (args && !json_is_null(args) && !json_is_string(args)) {
                        plan_fail(p, 0);
                        return aj_error_set(err, -EINVAL, "journal entry %zu: its arguments are not JSON text", i);
                }
                char *undo_tool = NULL;
                bool unclear = false;
                int r = undo_tool_of(undo, &undo_tool, &unclear);
                if (r < 0) {
                        plan_fail(p, 0);
                        return r == -ENOMEM ? r
                                            : aj_error_set(err, r, "journal entry %zu: its undo record is not JSON", i);
                }
                AjRollbackStep *s = &p->steps[p->n];
                *s = (AjRollbackStep){
                        .step = (unsigned)(p->n + 1),
                        .of = (unsigned)planned,
                        .result_seq = (uint64_t)json_integer_value(seq),
                        .call_id = id,
                        .tool = json_string_value(json_object_get(c, "gen_ai.tool.name")),
                        .undo_tool = undo_tool,
                        .undo_tool_unclear = unclear,
                        .status = json_string_value(json_object_get(c, "status")),
                        .args = json_string_value(args),
                        .undo = undo,
                        .last_result = json_string_value(json_object_get(json_object_get(c, "rollback"), "result")),
                };
                p->n++;
                step_gate(s, gate);
        }
        return 0;
}

/* An approval that names no step is a typo the operator should hear about before anything
 * runs; a bare id several steps share (the agent reused it) is ambiguous. Marks the named. */
static int check_approvals(AjRollbackPlan *p, const AjRollbackGate *gate, bool *named, AjError *err)
{
        for (size_t a = 0; a < gate->n_approve; a++) {
                size_t by_id = 0, by_seq = 0;
                approve_match(p, gate->approve[a], named, &by_id, &by_seq);
                if (by_id && by_seq) {
                        plan_fail(p, 0);
                        const char *at = strrchr(gate->approve[a], '@');
                        return aj_error_set(err, -EINVAL,
                                            "--approve %s is ambiguous: it is a call's id (the agent's choice) and "
                                            "names call %.*s's step at result seq %s too; nothing approved. The "
                                            "first is %s@RESULT_SEQ; the second cannot be named apart from it",
                                            gate->approve[a], (int)(at - gate->approve[a]), gate->approve[a], at + 1,
                                            gate->approve[a]);
                }
                size_t m = by_id + by_seq;
                if (m == 0) {
                        plan_fail(p, 0);
                        return aj_error_set(err, -EINVAL, "--approve %s: no undo record of the run has that call id",
                                            gate->approve[a]);
                }
                if (m > 1) {
                        plan_fail(p, 0);
                        return aj_error_set(err, -EINVAL,
                                            "--approve %s: %zu steps have that call id (the agent reused it): name "
                                            "one as CALL@RESULT_SEQ",
                                            gate->approve[a], m);
                }
        }
        return 0;
}

/* Each step's action: applied already, held (gated, not approved) or to run. */
static void set_actions(AjRollbackPlan *p, const AjRollbackGate *gate, const bool *named)
{
        for (size_t k = 0; k < p->n; k++) {
                AjRollbackStep *s = &p->steps[k];
                s->approved = s->gated && (gate->approve_all_gated || named[k]);
                if (s->last_result && streq(s->last_result, aj_rollback_result_name(AJ_ROLLBACK_OK))) {
                        s->action = AJ_ROLLBACK_APPLIED;
                        p->applied++;
                } else if (s->gated && !s->approved) {
                        s->action = AJ_ROLLBACK_HELD;
                        p->held++;
                } else {
                        s->action = AJ_ROLLBACK_TO_RUN;
                        p->to_run++;
                }
        }
}

int aj_rollback_plan(json_t *journal, const AjRollbackGate *gate, AjRollbackPlan *ret, AjError *err)
{
        if (!json_is_array(journal))
                return aj_error_set(err, -EINVAL, "the tool journal is not an array");
        AjRollbackPlan p = { .left_out = json_array() };
        if (!p.left_out)
                return -ENOMEM;
        size_t n = count_steps(journal, gate, &p);
        size_t planned = n < AJ_ROLLBACK_MAX_STEPS ? n : AJ_ROLLBACK_MAX_STEPS;
        p.steps = planned ? calloc(planned, sizeof(*p.steps)) : NULL;
        if (planned && !p.steps)
                return plan_fail(&p, -ENOMEM);
        int r = add_steps(journal, gate, planned, &p, err);
        if (r < 0)
                return r;
        _cleanup_free_ bool *named = p.n ? calloc(p.n, sizeof(bool)) : NULL;
        if (p.n && !named)
                return plan_fail(&p, -ENOMEM);
        if ((r = check_approvals(&p, gate, named, err)) < 0)
                return r;
        set_actions(&p, gate, named);
        p.journal = json_incref(journal);
        *ret = p;
        return 0;
}

int aj_rollback_step_input(const AjRollbackStep *s, const char *run_id, char **ret_text)
{
        /* This step's values only, parsed from the journal's text now and let go after. */
        json_t *args = NULL, *undo = NULL;
        if ((s->args && !(args = json_loads(s->args, JSON_DECODE_ANY, NULL))) || !s->undo ||
            !(undo = json_loads(s->undo, JSON_DECODE_ANY, NULL))) {
                json_decref(args);
                return -EINVAL; /* not JSON text (or no memory to parse it) */
        }
        json_auto_t *doc = json_pack("{s:s, s:I, s:I, s:s, s:s?, s:o?, s:s?, s:o, s:I}", "run", run_id, "step",
                                     (json_int_t)s->step, "of", (json_int_t)s->of, "call_id", s->call_id, "tool",
                                     s->tool, "args", args, "status", s->status, "undo", undo, "result_seq",
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
