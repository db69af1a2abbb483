/* SPDX-License-Identifier: Apache-2.0 */
/* Model usage from fixture event chains: measured (llm.response) beside self-reported
 * (tokens), the under-reporting check, and the one-line rendering of a model call. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "cli/verbs.h"
#include "llm-summary.h"
#include "runs.h"
#include "util/fd.h"

#define FIXTURE(name) AJ_TEST_FIXTURES "/llm-events/" name

static AjLlmSummary *read_fixture(const char *path)
{
        AjLlmSummary *s = NULL;
        cr_assert_eq(aj_llm_summary_read(path, &s), 0, "%s", path);
        return s;
}

static char *verdict(const AjLlmSummary *s)
{
        char *v = aj_llm_summary_verdict(s);
        cr_assert_not_null(v);
        return v;
}

Test(llm_summary, none)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("none.jsonl"));
        cr_assert_eq(s->measured.n_rows, 0);
        cr_assert_eq(s->reported.n_rows, 0);
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_NONE);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "no model calls: none through the gateway, none self-reported");
        json_auto_t *j = aj_llm_summary_json(s);
        cr_assert_str_eq(json_string_value(json_object_get(j, "check")), "none");
        cr_assert_eq(json_array_size(json_object_get(json_object_get(j, "measured"), "models")), 0);
}

Test(llm_summary, one_model)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("one-model.jsonl"));
        cr_assert_eq(s->measured.n_rows, 1, "llm.request events are not counted");
        const AjLlmTally *t = &s->measured.rows[0];
        cr_assert_str_eq(t->provider, "anthropic");
        cr_assert_str_eq(t->model, "claude-sonnet-4-5", "keyed by the requested model, not the snapshot");
        cr_assert_eq(t->requests, 2);
        cr_assert_eq(t->input, 7000);
        cr_assert_eq(t->output, 500);
        cr_assert_eq(t->cache_read, 3000);
        cr_assert_eq(t->cache_write, 1000);
        cr_assert_eq(t->failed + t->estimated + t->unpriced, 0);
        cr_assert_float_eq(t->cost_usd, 0.02115, 1e-12);
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_MEASURED_ONLY);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "measured 7500 tokens ($0.021150); the agent reported none");

        json_auto_t *j = aj_llm_summary_json(s);
        json_t *m = json_object_get(j, "measured"), *row = json_array_get(json_object_get(m, "models"), 0);
        cr_assert_eq(json_integer_value(json_object_get(m, "requests")), 2);
        cr_assert_eq(json_integer_value(json_object_get(m, "tokens")), 7500);
        cr_assert_str_eq(json_string_value(json_object_get(row, "provider")), "anthropic");
        cr_assert_eq(json_integer_value(json_object_get(row, "cache_write_tokens")), 1000);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "self_reported"), "reports")), 0);
}

Test(llm_summary, several_models)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("several-models.jsonl"));
        cr_assert_eq(s->measured.n_rows, 4, "sonnet twice, gpt-4o, haiku, o3");
        static const char *const want[][2] = { { "anthropic", "claude-sonnet-4-5" },
                                               { "openai", "gpt-4o" },
                                               { "anthropic", "claude-haiku-4-5" },
                                               { "openai", "o3" } };
        for (size_t i = 0; i < 4; i++) {
                cr_assert_str_eq(s->measured.rows[i].provider, want[i][0]);
                cr_assert_str_eq(s->measured.rows[i].model, want[i][1]);
        }
        const AjLlmTally *sonnet = &s->measured.rows[0], *o3 = &s->measured.rows[3], *tot = &s->measured.total;
        cr_assert_eq(sonnet->requests, 2);
        cr_assert_eq(sonnet->failed, 1, "a cut stream did not complete");
        cr_assert_eq(sonnet->estimated, 1);
        cr_assert_eq(o3->reasoning, 800);
        cr_assert_eq(tot->requests, 5);
        cr_assert_eq(tot->input, 4600);
        cr_assert_eq(tot->output, 1250);
        cr_assert_eq(tot->cache_read, 1000);
        cr_assert_float_eq(tot->cost_usd, 0.0214, 1e-12);
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_MEASURED_ONLY);
}

/* Web searches the provider ran: summed per model (shown only where there were some), and
 * on the call's logs line. */
Test(llm_summary, web_searches_summed_and_shown)
{
        AjLlmSummary *s = calloc(1, sizeof(*s));
        cr_assert_not_null(s);
        json_auto_t *a = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f}", "type", "llm.response", "provider",
                                   "anthropic", "outcome", "complete", AJ_BROKER_F_MODEL, "claude-sonnet-4-5",
                                   AJ_BROKER_F_INPUT_TOKENS, 100, AJ_BROKER_F_OUTPUT_TOKENS, 10, "web_search_requests",
                                   3, AJ_BROKER_F_COST, 0.0305);
        json_auto_t *b = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f}", "type", "llm.response", "provider", "openai",
                                   "outcome", "complete", AJ_BROKER_F_MODEL, "gpt-4o", AJ_BROKER_F_INPUT_TOKENS, 10,
                                   AJ_BROKER_F_OUTPUT_TOKENS, 1, AJ_BROKER_F_COST, 0.0001);
        aj_llm_summary_add(s, a);
        aj_llm_summary_add(s, a);
        aj_llm_summary_add(s, b);
        cr_assert_eq(s->measured.n_rows, 2);
        cr_expect_eq(s->measured.rows[0].web_searches, 6);
        cr_expect_eq(s->measured.rows[1].web_searches, 0);
        cr_expect_eq(s->measured.total.web_searches, 6);
        json_auto_t *j = aj_llm_summary_json(s);
        json_t *rows = json_object_get(json_object_get(j, "measured"), "models");
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(rows, 0), "web_searches")), 6);
        cr_expect_null(json_object_get(json_array_get(rows, 1), "web_searches"), "none: not shown");
        _cleanup_free_ char *line = NULL;
        cr_assert_eq(aj_llm_response_format(a, &line), 0);
        cr_expect(strstr(line, " in=100 out=10 web_searches=3 $0.030500"), "%s", line);
        /* The provider's other tools billed per use: summed and shown the same way. */
        json_object_set_new(b, "code_interpreter_containers", json_integer(1));
        aj_llm_summary_add(s, b);
        cr_expect_eq(s->measured.rows[1].tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], 1);
        json_auto_t *j2 = aj_llm_summary_json(s);
        rows = json_object_get(json_object_get(j2, "measured"), "models");
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(rows, 1), "code_interpreter_containers")), 1);
        cr_expect_null(json_object_get(json_array_get(rows, 0), "code_interpreter_containers"));
        _cleanup_free_ char *line2 = NULL;
        cr_assert_eq(aj_llm_response_format(b, &line2), 0);
        cr_expect(strstr(line2, " code_interpreter_containers=1 $"), "%s", line2);
        free(s);
}

Test(llm_summary, self_reported_only)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("self-reported-only.jsonl"));
        cr_assert_eq(s->measured.n_rows, 0);
        cr_assert_eq(s->reported.n_rows, 2);
        cr_assert_str_eq(s->reported.rows[0].model, "gpt-4o");
        cr_assert_eq(s->reported.rows[0].requests, 2);
        cr_assert_eq(s->reported.rows[0].input, 2000);
        cr_assert_eq(s->reported.rows[0].cache_read, 200);
        cr_assert_eq(s->reported.rows[1].unpriced, 1, "price unknown");
        cr_assert_eq(s->reported.total.requests, 3);
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_REPORTED_ONLY);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "self-reported 4400 tokens ($0.008750); nothing went through the gateway: not measured");
        json_auto_t *j = aj_llm_summary_json(s);
        json_t *r = json_object_get(j, "self_reported");
        cr_assert_eq(json_integer_value(json_object_get(r, "reports")), 3);
        cr_assert_null(json_object_get(json_array_get(json_object_get(r, "models"), 0), "provider"));
        cr_assert_str_eq(json_string_value(json_object_get(j, "check")), "self-reported-only");
}

Test(llm_summary, under_reported_tokens)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("under-reported.jsonl"));
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_UNDER_REPORTED);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "self-reported 1200 tokens, measured 5400: under-reported");
        json_auto_t *j = aj_llm_summary_json(s);
        cr_assert_str_eq(json_string_value(json_object_get(j, "check")), "under-reported");
        cr_assert_str_eq(json_string_value(json_object_get(j, "verdict")), v);
}

Test(llm_summary, under_reported_cost_under_a_cheaper_model)
{
        /* The same tokens, reported under a cheaper model's name. */
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("cheap-model-reported.jsonl"));
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_UNDER_REPORTED);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "self-reported $0.002000, measured $0.030000: under-reported");
}

Test(llm_summary, matching_and_over_reports)
{
        _cleanup_free_ AjLlmSummary *s = read_fixture(FIXTURE("matches.jsonl"));
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_MATCHES);
        _cleanup_free_ char *v = verdict(s);
        cr_assert_str_eq(v, "self-reported 1500 tokens, measured 1500: matches");
        json_auto_t *extra = json_pack("{s:s, s:s, s:i, s:i, s:f}", "type", "tokens", "gen_ai.request.model", "gpt-4o",
                                       "gen_ai.usage.input_tokens", 10, "gen_ai.usage.output_tokens", 0, "cost_usd",
                                       0.000025);
        aj_llm_summary_add(s, extra);
        cr_assert_eq(aj_llm_summary_check(s), AJ_LLM_CHECK_OVER_REPORTED);
}

Test(llm_summary, rows_are_bounded)
{
        _cleanup_free_ AjLlmSummary *s = calloc(1, sizeof(*s));
        cr_assert_not_null(s);
        for (int i = 0; i < 100; i++) {
                char model[32];
                snprintf(model, sizeof(model), "model-%d", i);
                json_auto_t *ev = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f}", "type", "llm.response", "provider",
                                            "openai", "gen_ai.request.model", model, "gen_ai.usage.input_tokens", 10,
                                            "gen_ai.usage.output_tokens", 1, "cost_usd", 0.5);
                aj_llm_summary_add(s, ev);
        }
        cr_assert_eq(s->measured.n_rows, AJ_LLM_SUMMARY_MAX_ROWS);
        const AjLlmTally *last = &s->measured.rows[AJ_LLM_SUMMARY_MAX_ROWS - 1];
        cr_assert_str_eq(last->model, "(other)");
        cr_assert_eq(last->requests, 100 - (AJ_LLM_SUMMARY_MAX_ROWS - 1));
        cr_assert_eq(s->measured.total.requests, 100);
        cr_assert_eq(s->measured.total.input, 1000);
        /* A model name longer than kept is cut, and the same cut name is the same row. */
        char long_name[400];
        memset(long_name, 'm', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = 0;
        _cleanup_free_ AjLlmSummary *t = calloc(1, sizeof(*t));
        for (int i = 0; i < 2; i++) {
                json_auto_t *ev = json_pack("{s:s, s:s, s:s}", "type", "llm.response", "provider", "x",
                                            "gen_ai.request.model", long_name);
                aj_llm_summary_add(t, ev);
        }
        cr_assert_eq(t->measured.n_rows, 1);
        cr_assert_eq(strlen(t->measured.rows[0].model), AJ_LLM_SUMMARY_MAX_NAME - 1);
        cr_assert_eq(t->measured.rows[0].unpriced, 2, "no cost_usd: unpriced");
        cr_assert_eq(t->measured.rows[0].failed, 0, "no outcome is not a failure");
}

Test(llm_summary, missing_file)
{
        AjLlmSummary *s = NULL;
        cr_assert_eq(aj_llm_summary_read(FIXTURE("no-such-file.jsonl"), &s), -ENOENT);
        cr_assert_null(s);
}

/* The nth line of a fixture, parsed. */
static json_t *fixture_event(const char *path, int n)
{
        FILE *f = fopen(path, "re");
        cr_assert_not_null(f);
        char *line = NULL;
        size_t cap = 0;
        for (int i = 0; i <= n; i++)
                cr_assert_gt(getline(&line, &cap, f), 0);
        fclose(f);
        json_t *ev = json_loads(line, 0, NULL);
        free(line);
        cr_assert_not_null(ev);
        return ev;
}

Test(llm_summary, response_line)
{
        json_auto_t *ev = fixture_event(FIXTURE("one-model.jsonl"), 2);
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_llm_response_format(ev, &text), 0);
        cr_assert_str_eq(text, "anthropic claude-sonnet-4-5 (claude-sonnet-4-5-20250929) in=5000 out=400 cached=3000 "
                               "cache_write=1000 $0.013650 latency=812ms ttfb=95ms stop=tool_use tools=Read,Bash "
                               "call=llm-1");
        /* `agentjail logs` prints it after the time, seq and type. */
        _cleanup_free_ char *line = NULL;
        cr_assert_eq(aj_event_format(ev, &line), 0);
        cr_assert_str_eq(line, "2026-12-04 21:00:02.000     2 llm.response       anthropic claude-sonnet-4-5 "
                               "(claude-sonnet-4-5-20250929) in=5000 out=400 cached=3000 cache_write=1000 $0.013650 "
                               "latency=812ms ttfb=95ms stop=tool_use tools=Read,Bash call=llm-1");
        /* --type llm picks both halves of a call. */
        cr_assert(aj_event_type_matches(ev, "llm"));
        json_auto_t *req = fixture_event(FIXTURE("one-model.jsonl"), 1);
        cr_assert(aj_event_type_matches(req, "llm"));
        cr_assert_not(aj_event_type_matches(req, "llm.response"));
}

Test(llm_summary, response_line_of_a_cut_unpriced_call)
{
        json_auto_t *cut = fixture_event(FIXTURE("several-models.jsonl"), 4);
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_llm_response_format(cut, &text), 0);
        cr_assert_str_eq(text, "anthropic claude-sonnet-4-5 in=1000 out=0 (estimated) $0.003000 latency=812ms "
                               "ttfb=95ms outcome=cut call=llm-4");
        json_auto_t *ev = json_pack("{s:s, s:s, s:i, s:s, s:s, s:f, s:[s,s,s], s:i}", "type", "llm.response",
                                    "provider", "openai", "status", 429, "outcome", "failed", "error",
                                    "rate_limit_error: slow down", "latency_ms", 1.25, "tool_calls", "a", "b", "c",
                                    "tool_calls_total", 5);
        free(text);
        text = NULL;
        cr_assert_eq(aj_llm_response_format(ev, &text), 0);
        cr_assert_str_eq(text, "openai ? in=0 out=0 cost=unpriced latency=1.2ms tools=a,b,c (5 in all) outcome=failed "
                               "status=429 error=\"rate_limit_error: slow down\"");
        cr_assert_eq(aj_llm_response_format(json_null(), &text), -EINVAL);
}

Test(llm_summary, agent_and_provider_text_is_escaped)
{
        /* The model is the agent's (older runs, before the gateway refused such names), the
         * stop reason and the error the provider's: a window title, a colour, C1 CSI. */
        json_auto_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:[s], s:s, s:s, s:i}", "type", "llm.response", "provider",
                                    "anthropic", "gen_ai.request.model", "m\x1b]0;OWNED\x07\x1b[31mRED",
                                    "gen_ai.response.model",
                                    "r\xc2\x9b"
                                    "2J",
                                    "gen_ai.response.finish_reasons", "end\x1b[2K", "outcome", "failed", "error",
                                    "bad model m\x1b]52;c;ZWNobyBvd25lZA==\x07", "status", 400);
        cr_assert_not_null(ev);
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_llm_response_format(ev, &text), 0);
        cr_expect_null(strchr(text, 0x1b), "no ESC: %s", text);
        cr_expect_null(strstr(text, "\xc2\x9b"), "no C1 CSI: %s", text);
        cr_expect(strstr(text, "m\\x1b]0;OWNED\\x07\\x1b[31mRED") != NULL, "%s", text);
        cr_expect(strstr(text, "(r\\u009b2J)") != NULL, "%s", text);
        cr_expect(strstr(text, "stop=end\\x1b[2K") != NULL, "%s", text);
        cr_expect(strstr(text, "\\x1b]52;c;") != NULL, "%s", text);
        _cleanup_free_ char *line = NULL;
        cr_assert_eq(aj_event_format(ev, &line), 0);
        cr_expect_null(strchr(line, 0x1b), "logs: no ESC: %s", line);
        /* Any other event: a tool name with C1 controls (older runs), an argument with a newline. */
        json_auto_t *tool = json_pack("{s:s, s:s, s:s}", "type", "tool.request", "gen_ai.tool.name",
                                      "a\xc2\x9b"
                                      "2J\xc2\x9d"
                                      "0;T\xc2\x9c"
                                      "b",
                                      "note", "x\n2026-12-04 forged line");
        _cleanup_free_ char *tl = NULL;
        cr_assert_eq(aj_event_format(tool, &tl), 0);
        cr_expect_null(strstr(tl, "\xc2\x9b"), "%s", tl);
        cr_expect_null(strchr(tl, '\n'), "one line: %s", tl);
        cr_expect(strstr(tl, "a\\u009b2J\\u009d0;T\\u009cb") != NULL, "%s", tl);
}

/* ---- the verbs on a fixture run directory (no jail) ---- */

static char root[64];

/* A dead run 0123456789ab whose chain is the concatenation of fixtures. */
static void make_fixture_run(const char *const *fixtures)
{
        snprintf(root, sizeof(root), "/tmp/aj-llm-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        char dir[256], path[300];
        snprintf(dir, sizeof(dir), "%s/state/runs/0123456789ab", root);
        cr_assert_eq(aj_mkdir_p(dir, 0750), 0);
        snprintf(path, sizeof(path), "%s/runtime", root);
        cr_assert_eq(aj_mkdir_p(path, 0711), 0);
        cr_assert_eq(setenv("AGENTJAIL_RUNTIME_DIR", path, 1), 0);
        snprintf(path, sizeof(path), "%s/state", root);
        cr_assert_eq(setenv("AGENTJAIL_STATE_DIR", path, 1), 0);
        static const char rec[] =
                "{\"id\":\"0123456789ab\",\"name\":\"llm\",\"started\":\"2026-12-04T21:00:00.000000000Z\","
                "\"profile\":{\"name\":\"default\"},\"status\":\"exited\",\"supervisor_pid\":1}\n";
        snprintf(path, sizeof(path), "%s/run.json", dir);
        cr_assert_eq(aj_write_file_atomic(path, rec, strlen(rec), 0640), 0);
        snprintf(path, sizeof(path), "%s/events.jsonl", dir);
        FILE *out = fopen(path, "we");
        cr_assert_not_null(out);
        for (size_t i = 0; fixtures[i]; i++) {
                FILE *in = fopen(fixtures[i], "re");
                cr_assert_not_null(in);
                char buf[4096];
                size_t n;
                while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                        cr_assert_eq(fwrite(buf, 1, n, out), n);
                fclose(in);
        }
        cr_assert_eq(fclose(out), 0);
}

/* Run a verb with its stdout in a string (new). */
static char *verb_output(int (*fn)(int, char **), char **argv, int argc, int *ret_rc)
{
        char path[128];
        snprintf(path, sizeof(path), "%s/stdout", root);
        fflush(stdout);
        int saved = dup(STDOUT_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert_geq(saved, 0);
        cr_assert_geq(fd, 0);
        cr_assert_geq(dup2(fd, STDOUT_FILENO), 0);
        close(fd);
        *ret_rc = fn(argc, argv);
        fflush(stdout);
        cr_assert_geq(dup2(saved, STDOUT_FILENO), 0);
        close(saved);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(aj_read_file(path, 1 << 20, &text, &len), 0);
        return text;
}

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)))
#define VERB_OUTPUT(fn, rc, ...) verb_output(fn, ARGV(__VA_ARGS__), ARGC(__VA_ARGS__), rc)

static void remove_fixture_run(void) { aj_rm_rf(root); }

Test(llm_summary, inspect_and_logs_of_a_fixture_run, .fini = remove_fixture_run)
{
        make_fixture_run(
                (const char *const[]){ FIXTURE("several-models.jsonl"), FIXTURE("under-reported.jsonl"), NULL });
        int rc;
        _cleanup_free_ char *json = VERB_OUTPUT(aj_cmd_inspect, &rc, "inspect", "0123456789ab", "--json");
        cr_assert_eq(rc, 0);
        json_auto_t *doc = json_loads(json, 0, NULL);
        json_t *mc = json_object_get(doc, "model_calls");
        cr_assert_str_eq(json_string_value(json_object_get(mc, "check")), "under-reported", "%s", json);
        cr_assert_str_eq(json_string_value(json_object_get(mc, "verdict")),
                         "self-reported 1200 tokens, measured 11250: under-reported");
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(mc, "measured"), "requests")), 6);
        cr_assert_eq(json_array_size(json_object_get(json_object_get(mc, "measured"), "models")), 4);

        _cleanup_free_ char *text = VERB_OUTPUT(aj_cmd_inspect, &rc, "inspect", "0123456789ab");
        cr_assert_eq(rc, 0);
        cr_assert(strstr(text, "model calls measured by the LLM gateway:\n"), "%s", text);
        cr_assert(strstr(text, "  openai       o3                                    1        100       900         0"
                               "         0       800   $0.007400\n"),
                  "%s", text);
        cr_assert(strstr(text, "  total                                              6       9600      1650"), "%s",
                  text);
        cr_assert(strstr(text, "  WARNING: self-reported 1200 tokens, measured 11250: under-reported\n"), "%s", text);

        _cleanup_free_ char *logs = VERB_OUTPUT(aj_cmd_logs, &rc, "logs", "0123456789ab", "--type", "llm");
        cr_assert_eq(rc, 0);
        size_t lines = 0;
        for (const char *p = logs; (p = strchr(p, '\n')); p++)
                lines++;
        cr_assert_eq(lines, 6, "the six model calls, not the tokens report nor run.start: %s", logs);
        cr_assert(strstr(logs, " llm.response       openai o3 in=100 out=900 reasoning=800 $0.007400 latency=812ms "
                               "ttfb=95ms stop=completed call=llm-5\n"),
                  "%s", logs);
}

Test(llm_summary, inspect_of_a_run_without_model_calls, .fini = remove_fixture_run)
{
        make_fixture_run((const char *const[]){ FIXTURE("none.jsonl"), NULL });
        int rc;
        _cleanup_free_ char *text = VERB_OUTPUT(aj_cmd_inspect, &rc, "inspect", "0123456789ab");
        cr_assert_eq(rc, 0);
        cr_assert(strstr(text, "model calls none (no calls through the LLM gateway, no self-reported tokens)\n"), "%s",
                  text);
}

/* What the gateway relayed but did not take for a model call (Claude Code's HEAD / at
 * start) is counted apart, not as a model "?" row; events from before "metered" was
 * recorded still count as model calls. */
Test(llm_summary, relayed_requests_that_are_not_model_calls)
{
        _cleanup_free_ AjLlmSummary *s = calloc(1, sizeof(*s));
        cr_assert_not_null(s);
        json_auto_t *head = json_pack("{s:s, s:s, s:b, s:s}", "type", "llm.response", "provider", "anthropic",
                                      "metered", false, "relay", "completed");
        json_auto_t *call = json_pack("{s:s, s:s, s:b, s:s, s:I, s:I}", "type", "llm.response", "provider", "anthropic",
                                      "metered", true, "gen_ai.request.model", "claude-test",
                                      "gen_ai.usage.input_tokens", (json_int_t)10, "gen_ai.usage.output_tokens",
                                      (json_int_t)2);
        json_auto_t *old = json_pack("{s:s, s:s, s:s}", "type", "llm.response", "provider", "anthropic",
                                     "gen_ai.request.model", "claude-old");
        aj_llm_summary_add(s, head);
        aj_llm_summary_add(s, call);
        aj_llm_summary_add(s, old);
        cr_expect_eq(s->other, 1);
        cr_expect_eq(s->measured.n_rows, 2, "claude-test and claude-old, no \"?\" row");
        cr_expect_eq(s->measured.total.requests, 2);
        for (size_t i = 0; i < s->measured.n_rows; i++)
                cr_expect_str_neq(s->measured.rows[i].model, "?");
        json_auto_t *j = aj_llm_summary_json(s);
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "measured"), "other_requests")), 1);
}
