/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "prices.h"

static AjPriceTable *shipped(void)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/data/prices.json", getenv("AGENTJAIL_SOURCE_DIR") ?: ".");
        AjPriceTable *t = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_load(path, &t, &err), 0, "%s: %s", path, aj_error_text(&err, 0));
        return t;
}

Test(prices, shipped_table_is_dated_and_prices_current_models)
{
        AjPriceTable *t = shipped();
        cr_expect_eq(strlen(t->date), 10);
        static const char *const models[] = {
                "claude-opus-4-5",
                "claude-opus-4-1",
                "claude-sonnet-4-5",
                "claude-sonnet-4",
                "claude-haiku-4-5",
                "claude-3-5-haiku",
                "gpt-4o",
                "gpt-4o-mini",
                "gpt-4.1",
                "gpt-4.1-mini",
                "o3",
                "o4-mini",
                "gpt-5",
                "gpt-5-mini",
                "gpt-5.4",
        };
        for (size_t i = 0; i < ARRAY_SIZE(models); i++) {
                const AjPrice *p = aj_price_table_find(t, models[i]);
                cr_assert_not_null(p, "%s has a price", models[i]);
                cr_expect_gt(p->input, 0, "%s", models[i]);
                cr_expect_gt(p->output, p->input, "%s: output costs more than input", models[i]);
                cr_expect_leq(p->cache_read, p->input, "%s: a cache read costs no more than input", models[i]);
        }
        /* Spot checks against the providers' pages (USD per million tokens -> pico-USD per token). */
        const AjPrice *p = aj_price_table_find(t, "claude-sonnet-4-5-20250929");
        cr_assert_not_null(p);
        cr_expect_eq(p->input, 3000000);
        cr_expect_eq(p->output, 15000000);
        cr_expect_eq(p->cache_read, 300000);
        cr_expect_eq(p->cache_write, 3750000);
        cr_expect_eq(p->cache_write_1h, 6000000);
        /* Anthropic's web search: $10 per 1,000 searches, 1e10 pico-USD each. */
        cr_expect(p->web_search_priced);
        cr_expect_eq(p->web_search, 10000000000ULL);
        /* A snapshot priced apart from its base name: its own entry, never the cheaper base's. */
        p = aj_price_table_find(t, "gpt-4o-2024-05-13");
        cr_assert_not_null(p);
        cr_expect_str_eq(p->model, "gpt-4o-2024-05-13");
        cr_expect_eq(p->input, 5000000);
        cr_expect_eq(p->output, 15000000);
        cr_expect_eq(p->cache_read, p->input, "no cached-input price: cache reads cost what input does");
        p = aj_price_table_find(t, "gpt-4o-mini-2024-07-18");
        cr_assert_not_null(p);
        cr_expect_eq(p->input, 150000);
        cr_expect_eq(p->cache_read, 75000);
        cr_expect_eq(p->cache_write, p->input, "OpenAI does not charge cache writes");
        aj_price_table_free(t);
}

Test(prices, base_name_strips_only_a_date_or_latest)
{
        static const struct {
                const char *model, *base;
        } cases[] = {
                { "claude-sonnet-4-5-20250929", "claude-sonnet-4-5" },
                { "claude-3-5-haiku-20241022", "claude-3-5-haiku" },
                { "claude-3-5-haiku-latest", "claude-3-5-haiku" },
                { "claude-opus-4-1@20250805", "claude-opus-4-1" },
                { "gpt-4o-2024-08-06", "gpt-4o" },
                { "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano" },
                { "o3-2025-04-16", "o3" },
                { "gpt-4o", NULL },
                { "claude-opus-4-5", NULL },
                { "gpt-4o-mini", NULL },
                { "x-2025091", NULL },
                { "-20250929", NULL },
                { "gpt-4o-2024-8-06", NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char buf[AJ_PRICE_MAX_NAME + 1];
                bool cut = aj_price_base_name(cases[i].model, buf, sizeof(buf));
                cr_expect_eq(cut, cases[i].base != NULL, "%s", cases[i].model);
                if (cut && cases[i].base)
                        cr_expect_str_eq(buf, cases[i].base);
        }
}

Test(prices, exact_name_wins_over_the_base_name)
{
        const char *text = "{\"date\": \"2026-01-02\", \"models\": {\"m\": {\"input\": 1, \"output\": 2},"
                           " \"m-20250101\": {\"input\": 5, \"output\": 6}}}";
        AjPriceTable *t = NULL;
        cr_assert_eq(aj_price_table_parse(text, strlen(text), "t", &t, NULL), 0);
        cr_expect_eq(aj_price_table_find(t, "m-20250101")->input, 5000000);
        cr_expect_eq(aj_price_table_find(t, "m-20250102")->input, 1000000);
        cr_expect_null(aj_price_table_find(t, "m2"));
        cr_expect_null(aj_price_table_find(NULL, "m"));
        aj_price_table_free(t);
}

/* OpenRouter's model variants: a name with a variant suffix ("vendor/m:floor") had no price but
 * an entry of that whole name. Now a name without an entry of its own is priced as the name
 * without its known variant suffixes (of any kind: one that may cost more is bounded by
 * max_price or refused, llm-meter.c), or that name's dated base; an unknown suffix is kept (the
 * whole name, or nothing), and so is a tag before the name's last '/'. */
Test(prices, variant_suffix_priced_as_the_base_model)
{
        const char *text =
                "{\"date\": \"2026-01-02\", \"models\": {\"v/m\": {\"input\": 1, \"output\": 2},"
                " \"v/m:extended\": {\"input\": 5, \"output\": 6}, \"llama3\": {\"input\": 1, \"output\": 1}}}";
        AjPriceTable *t = NULL;
        cr_assert_eq(aj_price_table_parse(text, strlen(text), "t", &t, NULL), 0);
        static const struct {
                const char *model;
                uint64_t input; /* 0: no entry */
        } cases[] = {
                { "v/m:floor", 1000000 },
                { "v/m:free", 1000000 },
                { "v/m:NITRO", 1000000 },
                { "v/m:online:free", 1000000 },
                { "v/m-2025-01-01:exacto", 1000000 },
                { "v/m:extended", 5000000 },
                { "v/m:thinking", 1000000 },
                { "v/m:batch", 0 },
                { "v/m:floor:batch", 0 },
                { "llama3:8b", 0 },
                { "v/m:", 0 },
                { ":floor", 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                const AjPrice *p = aj_price_table_find(t, cases[i].model);
                cr_expect_eq(p ? p->input : 0, cases[i].input, "%s", cases[i].model);
        }
        cr_expect_eq(aj_model_variant("floor", 5), AJ_MODEL_VARIANT_SAME);
        cr_expect_eq(aj_model_variant("Exacto", 6), AJ_MODEL_VARIANT_DEARER);
        cr_expect_eq(aj_model_variant("flo", 3), AJ_MODEL_VARIANT_UNKNOWN);
        cr_expect_null(aj_price_table_get(t, "v/m:floor"));
        aj_price_table_free(t);
}

Test(prices, cost_counts_cache_reads_and_writes_apart)
{
        AjPrice p = { .model = "m",
                      .input = 3000000,
                      .output = 15000000,
                      .cache_read = 300000,
                      .cache_write = 3750000,
                      .cache_write_1h = 6000000 };
        AjTokens t = { .input = 3500, .output = 100, .cache_read = 2000, .cache_write = 500, .cache_write_1h = 200 };
        cr_expect_eq(aj_price_cost(&p, &t),
                     1000 * 3000000ULL + 2000 * 300000ULL + 300 * 3750000ULL + 200 * 6000000ULL + 100 * 15000000ULL);
        t = (AjTokens){ .input = UINT64_MAX, .output = UINT64_MAX };
        cr_expect_eq(aj_price_cost(&p, &t), UINT64_MAX, "saturates");
        /* Web searches at their fee (pico-USD each), on top of the tokens. */
        p.web_search = 10000000000ULL;
        t = (AjTokens){ .input = 10, .output = 1, .web_searches = 4 };
        cr_expect_eq(aj_price_cost(&p, &t), 10 * 3000000ULL + 15000000ULL + 4 * 10000000000ULL);
        /* The other tools' uses at their fees. */
        p.tool_fee[AJ_TOOL_FEE_CODE_INTERPRETER] = 30000000000ULL;
        t.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER] = 2;
        cr_expect_eq(aj_price_cost(&p, &t), 10 * 3000000ULL + 15000000ULL + 4 * 10000000000ULL + 2 * 30000000000ULL);
}

/* The other tools' fees: USD per 1,000 uses in a table; none given: not priced. */
Test(prices, tool_fees_parsed_per_1000_uses)
{
        const char *text = "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                           "\"file_search\": 2.5, \"code_interpreter\": 30}}}";
        AjPriceTable *t = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(text, strlen(text), "test", &t, &err), 0, "%s", aj_error_text(&err, 0));
        const AjPrice *p = aj_price_table_find(t, "m");
        cr_assert_not_null(p);
        cr_expect(p->tool_fee_priced[AJ_TOOL_FEE_FILE_SEARCH]);
        cr_expect_eq(p->tool_fee[AJ_TOOL_FEE_FILE_SEARCH], 2500000000ULL, "$0.0025 a call");
        cr_expect_eq(p->tool_fee[AJ_TOOL_FEE_CODE_INTERPRETER], 30000000000ULL, "$0.03 a container");
        cr_expect_not(p->tool_fee_priced[AJ_TOOL_FEE_WEB_FETCH]);
        cr_expect_not(p->tool_fee_priced[AJ_TOOL_FEE_IMAGE_GENERATION]);
        cr_expect_str_eq(aj_tool_fee_name(AJ_TOOL_FEE_IMAGE_GENERATION), "image_generation");
        cr_expect_eq(aj_tool_fee_from_name("web_fetch"), AJ_TOOL_FEE_WEB_FETCH);
        cr_expect_eq(aj_tool_fee_from_name("web_search"), -1, "web search has fields of its own");
        aj_price_table_free(t);
}

/* Anthropic's code execution has a fee of its own, per response that ran it (its usage
 * reports no container time): "code_execution", counted as code_execution_containers. */
Test(prices, code_execution_fee_parsed)
{
        const char *text = "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                           "\"code_execution\": 50}}}";
        AjPriceTable *t = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(text, strlen(text), "test", &t, &err), 0, "%s", aj_error_text(&err, 0));
        const AjPrice *p = aj_price_table_find(t, "m");
        cr_assert_not_null(p);
        cr_expect(p->tool_fee_priced[AJ_TOOL_FEE_CODE_EXECUTION]);
        cr_expect_eq(p->tool_fee[AJ_TOOL_FEE_CODE_EXECUTION], 50000000000ULL, "$0.05 a use");
        cr_expect_str_eq(aj_tool_fee_name(AJ_TOOL_FEE_CODE_EXECUTION), "code_execution");
        cr_expect_str_eq(aj_tool_fee_field(AJ_TOOL_FEE_CODE_EXECUTION), "code_execution_containers");
        cr_expect_eq(aj_tool_fee_from_name("code_execution"), AJ_TOOL_FEE_CODE_EXECUTION);
        AjTokens tok = { .input = 10 };
        tok.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] = 2;
        cr_expect_eq(aj_price_cost(p, &tok), 10 * 1000000ULL + 2 * 50000000000ULL);
        aj_price_table_free(t);
}

/* A model's maximum output (max_output_tokens): read as given, found by a dated snapshot's
 * base name as its prices are, none when the entry does not say. The shipped table gives it
 * only where OpenAI's own model page was read (data/prices.json "sources"). */
Test(prices, max_output_tokens_parsed_and_found_by_base_name)
{
        const char *text = "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                           "\"max_output_tokens\": 16384}, \"n\": {\"input\": 1, \"output\": 2}}}";
        AjPriceTable *t = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(text, strlen(text), "test", &t, &err), 0, "%s", aj_error_text(&err, 0));
        const AjPrice *p = aj_price_table_find(t, "m-2025-04-14");
        cr_assert_not_null(p);
        cr_expect_str_eq(p->model, "m");
        cr_expect_eq(p->max_output, 16384);
        cr_expect_eq(aj_price_table_find(t, "n")->max_output, 0, "not given: not known");
        aj_price_table_free(t);

        t = shipped();
        static const char *const documented[] = { "gpt-5.5", "gpt-5.4-nano" };
        for (size_t i = 0; i < ARRAY_SIZE(documented); i++)
                cr_expect_eq(aj_price_table_find(t, documented[i])->max_output, 128000, "%s", documented[i]);
        cr_expect_eq(aj_price_table_find(t, "gpt-4o")->max_output, 0, "not read on OpenAI's page: not known");
        aj_price_table_free(t);
}

Test(prices, invalid_tables_are_refused_with_the_entry_named)
{
        static const struct {
                const char *text, *error;
        } cases[] = {
                { "[]", "expected a JSON object with \"date\" and \"models\"" },
                { "{\"models\": {}}", "\"date\": expected the date the prices were checked, as \"YYYY-MM-DD\"" },
                { "{\"date\": \"2026-13\", \"models\": {}}", "\"date\": expected" },
                { "{\"date\": \"2026-12-04\"}", "\"models\": expected an object of model names" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1}}}",
                  "models.m: \"input\" and \"output\" are required" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": -2}}}",
                  "models.m.output: expected USD per million tokens" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, \"cached\": 1}}}",
                  "models.m: unknown key \"cached\"" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, \"web_search\": -1}}}",
                  "models.m.web_search: expected USD per 1,000 searches, 0 to 10000" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, \"file_search\": \"2.5\"}}}",
                  "models.m.file_search: expected USD per 1,000 uses, 0 to 10000" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": 0}}}",
                  "models.m.max_output_tokens: expected the model's maximum output tokens, a whole number from 1 to "
                  "10000000" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": -5}}}",
                  "models.m.max_output_tokens: expected" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                  "\"max_output_tokens\": 16384.5}}}",
                  "models.m.max_output_tokens: expected" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                  "\"max_output_tokens\": \"16384\"}}}",
                  "models.m.max_output_tokens: expected" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": {\"input\": 1, \"output\": 2, "
                  "\"max_output_tokens\": 10000001}}}",
                  "models.m.max_output_tokens: expected" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"a b\": {\"input\": 1, \"output\": 2}}}",
                  "models: \"a b\": invalid model name" },
                { "{\"date\": \"2026-12-04\", \"models\": {\"m\": 3}}", "models.m: expected an object of prices" },
                { "{\"date\": \"2026-12-04\",", "invalid JSON at line 1" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjPriceTable *t = NULL;
                AjError e = {};
                cr_expect_eq(aj_price_table_parse(cases[i].text, strlen(cases[i].text), "t", &t, &e), -EINVAL, "%s",
                             cases[i].text);
                cr_expect_null(t);
                const char *err = e.message;
                cr_assert_not_null(err, "%s", cases[i].text);
                cr_expect(strncmp(err, cases[i].error, strlen(cases[i].error)) == 0, "%s -> %s", cases[i].text, err);
                aj_error_clear(&e);
        }
}

Test(prices, default_table_is_found)
{
        AjPriceTable *t = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_load_default(&t, &err), 0, "%s", aj_error_text(&err, 0));
        cr_expect_not_null(aj_price_table_find(t, "gpt-4o"));
        aj_price_table_free(t);
}
