/* SPDX-License-Identifier: Apache-2.0 */
/* A run's model usage from its event chain: measured by the gateway beside self-reported. */
#include "llm-summary.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentjail/broker.h"
#include "events.h"
#include "util/format.h"

#define F_PROVIDER "provider"
#define F_RESPONSE_MODEL "gen_ai.response.model"
#define F_CACHE_WRITE "gen_ai.usage.cache_creation.input_tokens"
#define F_REASONING "reasoning_tokens"
#define F_WEB_SEARCHES "web_search_requests"
#define F_FINISH "gen_ai.response.finish_reasons"
#define OTHER_ROWS "(other)"

static const char *str_field(json_t *ev, const char *key) { return json_string_value(json_object_get(ev, key)); }

static uint64_t count_field(json_t *ev, const char *key)
{
        json_t *v = json_object_get(ev, key);
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* A cost: false when the event has none (an unpriced model). */
static bool cost_field(json_t *ev, double *ret)
{
        json_t *v = json_object_get(ev, AJ_BROKER_F_COST);
        if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
                return false;
        *ret = json_number_value(v);
        return true;
}

static void tally_add(AjLlmTally *t, const AjLlmTally *one)
{
        t->requests += one->requests;
        t->failed += one->failed;
        t->estimated += one->estimated;
        t->unpriced += one->unpriced;
        t->input += one->input;
        t->output += one->output;
        t->cache_read += one->cache_read;
        t->cache_write += one->cache_write;
        t->reasoning += one->reasoning;
        t->web_searches += one->web_searches;
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                t->tool_uses[f] += one->tool_uses[f];
        t->cost_usd += one->cost_usd;
}

/* The row of (provider, model): found, new, or past the limit the shared last row. */
static AjLlmTally *side_row(AjLlmSide *side, const char *provider, const char *model)
{
        char p[AJ_LLM_SUMMARY_MAX_NAME], m[AJ_LLM_SUMMARY_MAX_NAME];
        snprintf(p, sizeof(p), "%s", provider);
        snprintf(m, sizeof(m), "%s", model);
        for (size_t i = 0; i < side->n_rows; i++)
                if (streq(side->rows[i].provider, p) && streq(side->rows[i].model, m))
                        return &side->rows[i];
        AjLlmTally *row =
                &side->rows[side->n_rows < AJ_LLM_SUMMARY_MAX_ROWS ? side->n_rows : AJ_LLM_SUMMARY_MAX_ROWS - 1];
        if (side->n_rows == AJ_LLM_SUMMARY_MAX_ROWS) {
                snprintf(row->provider, sizeof(row->provider), "%s", OTHER_ROWS);
                snprintf(row->model, sizeof(row->model), "%s", OTHER_ROWS);
                return row;
        }
        *row = (AjLlmTally){ 0 };
        memcpy(row->provider, p, sizeof(p));
        memcpy(row->model, m, sizeof(m));
        side->n_rows++;
        return row;
}

static void side_add(AjLlmSide *side, const char *provider, const char *model, const AjLlmTally *one)
{
        tally_add(side_row(side, provider, model), one);
        tally_add(&side->total, one);
}

static void add_response(AjLlmSummary *s, json_t *ev)
{
        /* A request the gateway relayed but did not take for a model call (an agent's
         * HEAD / connectivity check): not a row of "?" in the model table. Events of
         * versions before "metered" was recorded count as model calls. */
        if (json_is_false(json_object_get(ev, "metered"))) {
                s->other++;
                return;
        }
        const char *model = str_field(ev, AJ_BROKER_F_MODEL) ?: str_field(ev, F_RESPONSE_MODEL) ?: "?";
        const char *outcome = str_field(ev, "outcome");
        AjLlmTally one = {
                .requests = 1,
                .failed = outcome && !streq(outcome, "complete") && !streq(outcome, "incomplete"),
                .estimated = json_is_true(json_object_get(ev, "estimated")),
                .input = count_field(ev, AJ_BROKER_F_INPUT_TOKENS),
                .output = count_field(ev, AJ_BROKER_F_OUTPUT_TOKENS),
                .cache_read = count_field(ev, AJ_BROKER_F_CACHED_TOKENS),
                .cache_write = count_field(ev, F_CACHE_WRITE),
                .reasoning = count_field(ev, F_REASONING),
                .web_searches = count_field(ev, F_WEB_SEARCHES),
        };
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                one.tool_uses[f] = count_field(ev, aj_tool_fee_field(f));
        one.unpriced = !cost_field(ev, &one.cost_usd);
        side_add(&s->measured, str_field(ev, F_PROVIDER) ?: "?", model, &one);
}

static void add_report(AjLlmSummary *s, json_t *ev)
{
        AjLlmTally one = {
                .requests = 1,
                .input = count_field(ev, AJ_BROKER_F_INPUT_TOKENS),
                .output = count_field(ev, AJ_BROKER_F_OUTPUT_TOKENS),
                .cache_read = count_field(ev, AJ_BROKER_F_CACHED_TOKENS),
        };
        one.unpriced = !cost_field(ev, &one.cost_usd) || streq(str_field(ev, AJ_BROKER_F_PRICE) ?: "", "unknown");
        side_add(&s->reported, "", str_field(ev, AJ_BROKER_F_MODEL) ?: "?", &one);
}

void aj_llm_summary_add(AjLlmSummary *s, json_t *ev)
{
        const char *type = str_field(ev, "type");
        if (!type)
                return;
        if (streq(type, "llm.response"))
                add_response(s, ev);
        else if (streq(type, AJ_BROKER_OP_TOKENS))
                add_report(s, ev);
}

static int add_cb(json_t *ev, void *userdata)
{
        aj_llm_summary_add(userdata, ev);
        return 0;
}

int aj_llm_summary_read(const char *events_path, AjLlmSummary **ret)
{
        AjLlmSummary *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        int r = aj_events_foreach(events_path, add_cb, s, NULL);
        if (r < 0) {
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

static uint64_t tally_tokens(const AjLlmTally *t) { return t->input + t->output; }

/* Is a below b, beyond what summing decimal costs can round away? */
static bool cost_below(double a, double b) { return a < b - 1e-9 - b * 1e-9; }

AjLlmCheck aj_llm_summary_check(const AjLlmSummary *s)
{
        const AjLlmTally *m = &s->measured.total, *r = &s->reported.total;
        if (!m->requests && !r->requests)
                return AJ_LLM_CHECK_NONE;
        if (!r->requests)
                return AJ_LLM_CHECK_MEASURED_ONLY;
        if (!m->requests)
                return AJ_LLM_CHECK_REPORTED_ONLY;
        if (tally_tokens(r) < tally_tokens(m) || cost_below(r->cost_usd, m->cost_usd))
                return AJ_LLM_CHECK_UNDER_REPORTED;
        if (tally_tokens(r) > tally_tokens(m) || cost_below(m->cost_usd, r->cost_usd))
                return AJ_LLM_CHECK_OVER_REPORTED;
        return AJ_LLM_CHECK_MATCHES;
}

const char *aj_llm_check_name(AjLlmCheck c)
{
        static const char *const names[] = {
                [AJ_LLM_CHECK_NONE] = "none",
                [AJ_LLM_CHECK_MEASURED_ONLY] = "measured-only",
                [AJ_LLM_CHECK_REPORTED_ONLY] = "self-reported-only",
                [AJ_LLM_CHECK_MATCHES] = "matches",
                [AJ_LLM_CHECK_OVER_REPORTED] = "over-reported",
                [AJ_LLM_CHECK_UNDER_REPORTED] = "under-reported",
        };
        return (size_t)c < ARRAY_SIZE(names) ? names[c] : "?";
}

char *aj_llm_summary_verdict(const AjLlmSummary *s)
{
        const AjLlmTally *m = &s->measured.total, *r = &s->reported.total;
        unsigned long long mt = tally_tokens(m), rt = tally_tokens(r);
        AjLlmCheck c = aj_llm_summary_check(s);
        char *text = NULL;
        int n;
        switch (c) {
        case AJ_LLM_CHECK_NONE:
                n = asprintf(&text, "no model calls: none through the gateway, none self-reported");
                break;
        case AJ_LLM_CHECK_MEASURED_ONLY:
                n = asprintf(&text, "measured %llu tokens ($%.6f); the agent reported none", mt, m->cost_usd);
                break;
        case AJ_LLM_CHECK_REPORTED_ONLY:
                n = asprintf(&text, "self-reported %llu tokens ($%.6f); nothing went through the gateway: not measured",
                             rt, r->cost_usd);
                break;
        default:
                if (rt != mt || c == AJ_LLM_CHECK_MATCHES)
                        n = asprintf(&text, "self-reported %llu tokens, measured %llu: %s", rt, mt,
                                     aj_llm_check_name(c));
                else
                        n = asprintf(&text, "self-reported $%.6f, measured $%.6f: %s", r->cost_usd, m->cost_usd,
                                     aj_llm_check_name(c));
                break;
        }
        return n < 0 ? NULL : text;
}

/* {"provider"?, "model"?, "requests" | "reports", tokens..., "cost_usd", ...}; provider and
 * model are given for a row, NULL for a side's total. */
static json_t *tally_json(const AjLlmTally *t, bool measured, const char *provider, const char *model)
{
        json_t *o = json_object();
        if (!o || (provider && json_object_set_new(o, "provider", json_string(provider)) < 0) ||
            (model && json_object_set_new(o, "model", json_string(model)) < 0) ||
            json_object_update_new(o, json_pack("{s:I, s:I, s:I, s:I, s:I}", measured ? "requests" : "reports",
                                                (json_int_t)t->requests, "tokens", (json_int_t)tally_tokens(t),
                                                "input_tokens", (json_int_t)t->input, "output_tokens",
                                                (json_int_t)t->output, "cache_read_tokens",
                                                (json_int_t)t->cache_read)) < 0 ||
            (measured &&
             json_object_update_new(o, json_pack("{s:I, s:I}", "cache_write_tokens", (json_int_t)t->cache_write,
                                                 "reasoning_tokens", (json_int_t)t->reasoning)) < 0) ||
            (measured && t->web_searches &&
             json_object_set_new(o, "web_searches", json_integer((json_int_t)t->web_searches)) < 0) ||
            json_object_update_new(o, json_pack("{s:f, s:I}", "cost_usd", t->cost_usd, "unpriced",
                                                (json_int_t)t->unpriced)) < 0 ||
            (measured && json_object_update_new(o, json_pack("{s:I, s:I}", "failed", (json_int_t)t->failed, "estimated",
                                                             (json_int_t)t->estimated)) < 0)) {
                json_decref(o);
                return NULL;
        }
        for (int f = 0; measured && f < AJ_TOOL_FEES; f++)
                if (t->tool_uses[f] &&
                    json_object_set_new(o, aj_tool_fee_field(f), json_integer((json_int_t)t->tool_uses[f])) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}

static json_t *side_json(const AjLlmSide *side, bool measured)
{
        json_t *o = tally_json(&side->total, measured, NULL, NULL), *models = json_array();
        if (!o || !models || json_object_set_new(o, "models", models) < 0) {
                json_decref(o);
                return NULL;
        }
        for (size_t i = 0; i < side->n_rows; i++) {
                const AjLlmTally *t = &side->rows[i];
                json_t *row = tally_json(t, measured, measured ? t->provider : NULL, t->model);
                if (!row || json_array_append_new(models, row) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

json_t *aj_llm_summary_json(const AjLlmSummary *s)
{
        _cleanup_free_ char *verdict = aj_llm_summary_verdict(s);
        json_t *m = side_json(&s->measured, true), *r = side_json(&s->reported, false);
        if (m && json_object_set_new(m, "other_requests", json_integer((json_int_t)s->other)) < 0) {
                json_decref(m);
                m = NULL;
        }
        if (!verdict || !m || !r) {
                json_decref(m);
                json_decref(r);
                return NULL;
        }
        return json_pack("{s:o, s:o, s:s, s:s}", "measured", m, "self_reported", r, "check",
                         aj_llm_check_name(aj_llm_summary_check(s)), "verdict", verdict);
}

/* ---- one llm.response as a line for `agentjail logs` ---- */

typedef struct {
        char *buf;
        size_t len, cap;
        bool oom;
} Line;

_printf_(2, 3) static void line_add(Line *l, const char *fmt, ...)
{
        if (l->oom)
                return;
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(l->buf + l->len, l->cap - l->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        l->oom = true;
                        return;
                }
                if ((size_t)n < l->cap - l->len) {
                        l->len += (size_t)n;
                        return;
                }
                size_t nc = (l->cap + (size_t)n + 1) * 2;
                char *nb = realloc(l->buf, nc);
                if (!nb) {
                        l->oom = true;
                        return;
                }
                l->buf = nb;
                l->cap = nc;
        }
}

/* " key=12ms" or " key=1.5ms" from a number of milliseconds. */
static void line_ms(Line *l, const char *key, json_t *v)
{
        if (json_is_integer(v))
                line_add(l, " %s=%lldms", key, (long long)json_integer_value(v));
        else if (json_is_real(v))
                line_add(l, " %s=%.1fms", key, json_real_value(v));
}

/* tools=Read,Bash (names as the event has them, at most 256 bytes shown). */
static void line_tools(Line *l, json_t *ev)
{
        json_t *tools = json_object_get(ev, "tool_calls");
        if (!json_is_array(tools) || json_array_size(tools) == 0)
                return;
        size_t start = l->len, i;
        json_t *t;
        json_array_foreach (tools, i, t) {
                line_add(l, "%s%.64s", i ? "," : " tools=", json_string_value(t) ?: "?");
                if (!l->oom && l->len - start > 256) {
                        line_add(l, ",...");
                        break;
                }
        }
        json_int_t total = json_integer_value(json_object_get(ev, "tool_calls_total"));
        if (total > (json_int_t)json_array_size(tools))
                line_add(l, " (%lld in all)", (long long)total);
}

static void line_usage(Line *l, json_t *ev)
{
        line_add(l, " in=%llu out=%llu", (unsigned long long)count_field(ev, AJ_BROKER_F_INPUT_TOKENS),
                 (unsigned long long)count_field(ev, AJ_BROKER_F_OUTPUT_TOKENS));
        static const struct {
                const char *field, *shown;
        } extra[] = { { AJ_BROKER_F_CACHED_TOKENS, "cached" },
                      { F_CACHE_WRITE, "cache_write" },
                      { F_REASONING, "reasoning" },
                      { F_WEB_SEARCHES, "web_searches" } };
        for (size_t i = 0; i < ARRAY_SIZE(extra); i++)
                if (count_field(ev, extra[i].field))
                        line_add(l, " %s=%llu", extra[i].shown, (unsigned long long)count_field(ev, extra[i].field));
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                if (count_field(ev, aj_tool_fee_field(f)))
                        line_add(l, " %s=%llu", aj_tool_fee_field(f),
                                 (unsigned long long)count_field(ev, aj_tool_fee_field(f)));
        if (json_is_true(json_object_get(ev, "estimated")))
                line_add(l, " (estimated)");
        double cost;
        if (cost_field(ev, &cost))
                line_add(l, " $%.6f", cost);
        else
                line_add(l, " cost=unpriced");
}

int aj_llm_response_format(json_t *ev, char **ret)
{
        if (!json_is_object(ev))
                return -EINVAL;
        Line l = { 0 };
        const char *model = str_field(ev, AJ_BROKER_F_MODEL), *answered = str_field(ev, F_RESPONSE_MODEL);
        line_add(&l, "%.64s %.128s", str_field(ev, F_PROVIDER) ?: "?", model ?: answered ?: "?");
        if (model && answered && !streq(model, answered))
                line_add(&l, " (%.128s)", answered);
        line_usage(&l, ev);
        line_ms(&l, "latency", json_object_get(ev, "latency_ms"));
        line_ms(&l, "ttfb", json_object_get(ev, "ttfb_ms"));
        json_t *stop = json_array_get(json_object_get(ev, F_FINISH), 0);
        if (json_is_string(stop))
                line_add(&l, " stop=%.64s", json_string_value(stop));
        line_tools(&l, ev);
        const char *outcome = str_field(ev, "outcome");
        if (outcome && !streq(outcome, "complete"))
                line_add(&l, " outcome=%.32s", outcome);
        json_t *status = json_object_get(ev, "status");
        if (json_is_integer(status) && json_integer_value(status) != 200)
                line_add(&l, " status=%lld", (long long)json_integer_value(status));
        if (str_field(ev, "error"))
                line_add(&l, " error=\"%.200s\"", str_field(ev, "error"));
        json_t *call = json_object_get(ev, "call");
        if (json_is_string(call))
                line_add(&l, " call=%.64s", json_string_value(call));
        else if (json_is_integer(call))
                line_add(&l, " call=%lld", (long long)json_integer_value(call));
        if (l.oom || !l.buf) {
                free(l.buf);
                return -ENOMEM;
        }
        /* The model, the provider's stop reason, error text and tool names: shown escaped. */
        char *shown = aj_printable_dup(l.buf, strlen(l.buf), 0);
        free(l.buf);
        if (!shown)
                return -ENOMEM;
        *ret = shown;
        return 0;
}
