/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meter.h"
#include "profile.h"

#define SEC 1000000000ULL

static AjMeter *meter_with(AjCap cap, uint64_t limit)
{
        AjMeterCaps caps = {};
        caps.set[cap] = true;
        caps.limit[cap] = limit;
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        return m;
}

/* Reserves and commits; returns the verdict. */
static AjVerdict tokens(AjMeter *m, const char *model, uint64_t in, uint64_t out, uint64_t cached, AjMeterDecision *ret)
{
        AjMeterReservation res;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tokens(m, model, in, out, cached, &res, &d), 0);
        cr_assert_eq(res.active, d.verdict == AJ_VERDICT_ALLOW);
        aj_meter_settle(m, &res, true);
        if (ret)
                *ret = d;
        return d.verdict;
}

static AjVerdict tool_at(AjMeter *m, const char *name, const char *args, uint64_t now, AjMeterDecision *ret)
{
        AjMeterReservation res;
        AjMeterDecision d;
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *a = json_loads(args ? args : "null", JSON_DECODE_ANY, NULL);
        cr_assert_not_null(a);
        cr_assert_eq(aj_meter_args_digest(a, digest), 0);
        json_decref(a);
        cr_assert_eq(aj_meter_reserve_tool(m, name, digest, now, &res, &d), 0);
        aj_meter_settle(m, &res, true);
        if (ret)
                *ret = d;
        return d.verdict;
}

static AjVerdict tool(AjMeter *m, const char *name, const char *args) { return tool_at(m, name, args, 1 * SEC, NULL); }

Test(meter, token_caps_breach_exactly_past_the_boundary)
{
        static const AjCap caps[] = { AJ_CAP_TOKENS, AJ_CAP_INPUT_TOKENS, AJ_CAP_OUTPUT_TOKENS };
        for (size_t i = 0; i < ARRAY_SIZE(caps); i++) {
                AjMeter *m = meter_with(caps[i], 1000);
                /* 600 + 400 = 1000 for "tokens"; each half alone for input/output. */
                uint64_t in = caps[i] == AJ_CAP_OUTPUT_TOKENS ? 0 : caps[i] == AJ_CAP_TOKENS ? 600 : 1000;
                uint64_t out = caps[i] == AJ_CAP_INPUT_TOKENS ? 0 : caps[i] == AJ_CAP_TOKENS ? 400 : 1000;
                cr_expect_eq(tokens(m, "m", in, out, 0, NULL), AJ_VERDICT_ALLOW, "%s at the cap", aj_cap_name(caps[i]));
                cr_expect_eq(aj_meter_used(m, caps[i], 0), 1000);
                AjMeterDecision d;
                bool out_only = caps[i] == AJ_CAP_OUTPUT_TOKENS;
                cr_expect_eq(tokens(m, "m", out_only ? 0 : 1, out_only ? 1 : 0, 0, &d), AJ_VERDICT_BREACH,
                             "%s past the cap", aj_cap_name(caps[i]));
                cr_expect_eq(d.cap, caps[i]);
                cr_expect_eq(d.limit, 1000);
                cr_expect_eq(d.value, 1001);
                /* Nothing committed: usage stays at the cap, and zero more is still fine. */
                cr_expect_eq(aj_meter_used(m, caps[i], 0), 1000);
                cr_expect_eq(tokens(m, "m", 0, 0, 0, NULL), AJ_VERDICT_ALLOW);
                aj_meter_free(m);
        }
}

Test(meter, cost_with_cached_input_price_and_exact_cap)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 10000000000ULL); /* $0.01 */
        cr_assert_eq(aj_meter_set_price(m, "gpt-4o", 2.5e-6, 1.0e-5, 1.25e-6), 0);
        AjMeterDecision d;
        /* 1000 input of which 400 cached, 200 output: 600*2.5e-6 + 400*1.25e-6 + 200*1e-5 = 0.004 */
        cr_expect_eq(tokens(m, "gpt-4o", 1000, 200, 400, &d), AJ_VERDICT_ALLOW);
        cr_expect(d.price_known);
        cr_expect_eq(d.cost_pusd, 4000000000ULL);
        /* 0.006 more is exactly $0.01: at the cap is fine, pico-dollar arithmetic is exact. */
        cr_expect_eq(tokens(m, "gpt-4o", 0, 600, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 10000000000ULL);
        cr_expect_eq(tokens(m, "gpt-4o", 1, 0, 0, &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_COST_USD);
        cr_expect_eq(d.value, 10000000000ULL + 2500000ULL);
        cr_expect(strstr(d.reason, "cost_usd") != NULL, "%s", d.reason);
        aj_meter_free(m);
}

Test(meter, cached_input_defaults_to_input_price)
{
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        cr_assert_eq(aj_meter_set_price(m, "x", 1e-6, 2e-6, -1), 0);
        AjMeterDecision d;
        tokens(m, "x", 100, 0, 100, &d);
        cr_expect_eq(d.cost_pusd, 100000000ULL);
        AjMeterReservation res;
        cr_expect_eq(aj_meter_reserve_tokens(m, "x", 10, 0, 11, &res, &d), -EINVAL, "cached > input");
        aj_meter_free(m);
}

/* Without a cost cap an unknown model costs 0 and is marked "unknown"; token caps still count. */
Test(meter, unknown_model_without_cost_cap_costs_nothing_but_counts_tokens)
{
        AjMeter *m = meter_with(AJ_CAP_TOKENS, 10000000);
        cr_assert_eq(aj_meter_set_price(m, "known", 1e-6, 1e-6, -1), 0);
        AjMeterDecision d;
        cr_expect_eq(tokens(m, "mystery", 1000000, 1000000, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_not(d.price_known);
        cr_expect_null(d.price_source);
        cr_expect_eq(d.cost_pusd, 0);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), 2000000);
        aj_meter_free(m);
}

/* Fail closed: with a cost cap, a model without a price is a breach that counts nothing
 * (issue 10: "--cap cost_usd=0.01" was bypassed by any model missing from the table). */
Test(meter, unknown_model_with_cost_cap_is_refused_unless_a_fallback_price_exists)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 10000000000ULL); /* $0.01 */
        cr_assert_eq(aj_meter_set_price(m, "known", 1e-6, 1e-6, -1), 0);
        AjMeterDecision d;
        for (int i = 0; i < 3; i++) {
                cr_expect_eq(tokens(m, "some-new-model", 200000, 0, 0, &d), AJ_VERDICT_BREACH);
                cr_expect(d.price_missing);
                cr_expect_eq(d.cap, AJ_CAP_COST_USD);
                cr_expect_eq(d.limit, 10000000000ULL);
        }
        cr_expect(strstr(d.reason, "no price for model \"some-new-model\"") != NULL, "%s", d.reason);
        cr_expect(strstr(d.reason, "\"prices\"") != NULL, "the reason says how to add a price: %s", d.reason);
        cr_expect(strstr(d.reason, "$0.010000") != NULL, "%s", d.reason);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), 0, "nothing was counted");
        /* A known model still works under the cap. */
        cr_expect_eq(tokens(m, "known", 1000, 0, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_not(d.price_missing);

        /* A "*" entry prices every model without its own: the fallback price. */
        cr_assert_eq(aj_meter_set_price(m, "*", 1e-12, 0, -1), 0);
        cr_expect_eq(tokens(m, "mystery", 1, 0, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect(d.price_known);
        cr_expect_str_eq(d.price_entry, "*");
        cr_expect_str_eq(d.price_source, "profile");
        cr_expect_eq(d.cost_pusd, 1);
        cr_expect_eq(tokens(m, "mystery", 20000000000ULL, 0, 0, &d), AJ_VERDICT_BREACH);
        cr_expect_not(d.price_missing);
        aj_meter_free(m);
}

static AjPriceTable *table(void)
{
        const char *t =
                "{\"date\": \"2026-12-04\", \"models\": {"
                "\"claude-sonnet-4-5\": {\"input\": 3, \"output\": 15, \"cache_read\": 0.3, \"cache_write\": 3.75},"
                "\"gpt-4o\": {\"input\": 2.5, \"output\": 10, \"cache_read\": 1.25}}}";
        AjPriceTable *pt = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(t, strlen(t), "test", &pt, &err), 0, "%s", aj_error_text(&err, 0));
        return pt;
}

Test(meter, table_prices_dated_snapshots_and_reports_the_entry_used)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 1000000000000ULL);
        aj_meter_set_price_table(m, table());
        AjMeterReservation res;
        AjMeterDecision d;
        /* 1000 uncached + 2000 cache reads + 500 cache writes in, 100 out. */
        AjMeterUsage u = { "claude-sonnet-4-5-20250929", 3500, 100, 2000, 500 };
        cr_assert_eq(aj_meter_reserve_usage(m, &u, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.price_entry, "claude-sonnet-4-5");
        cr_expect_str_eq(d.price_source, "table");
        cr_expect_str_eq(d.price_date, "2026-12-04");
        cr_expect_eq(d.cost_pusd, 1000 * 3000000ULL + 2000 * 300000ULL + 500 * 3750000ULL + 100 * 15000000ULL);
        aj_meter_settle(m, &res, true);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), d.cost_pusd);

        u = (AjMeterUsage){ "claude-sonnet-4-5", 10, 0, 6, 5 };
        cr_expect_eq(aj_meter_reserve_usage(m, &u, &res, &d), -EINVAL, "cache beyond the input");
        u = (AjMeterUsage){ "claude-sonnet-4-5", 10, 0, 0, 5, 6 };
        cr_expect_eq(aj_meter_reserve_usage(m, &u, &res, &d), -EINVAL, "hour-long writes beyond the writes");

        /* The profile's price overrides the table's, for the snapshot too. */
        cr_assert_eq(aj_meter_set_price(m, "gpt-4o", 1e-6, 2e-6, -1), 0);
        cr_expect_eq(tokens(m, "gpt-4o-2024-08-06", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.price_source, "profile");
        cr_expect_str_eq(d.price_date, "");
        cr_expect_eq(d.cost_pusd, 10 * 1000000ULL + 10 * 2000000ULL);
        /* Not a prefix match: an unknown sibling has no price. */
        cr_expect_eq(tokens(m, "gpt-4o-audio-preview", 10, 10, 0, &d), AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        aj_meter_free(m);
}

/* A model's maximum output: the profile's entry (name or base name), else the table's entry,
 * else the profile's "*"; 0 when none gives one. Whether the profile gave it (a claim the
 * gateway writes into a request, llm-meter.c bound_output()) is said. A bad value is refused. */
Test(meter, max_output_of_a_model)
{
        AjMeter *m = meter_with(AJ_CAP_TOKENS, 1000000);
        const char *t = "{\"date\": \"2026-12-04\", \"models\": {"
                        "\"gpt-a\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": 16384},"
                        "\"gpt-b\": {\"input\": 1, \"output\": 2}}}";
        AjPriceTable *pt = NULL;
        AjError err = {};
        bool claimed = true;
        cr_assert_eq(aj_price_table_parse(t, strlen(t), "test", &pt, &err), 0, "%s", aj_error_text(&err, 0));
        aj_meter_set_price_table(m, pt);
        cr_expect_eq(aj_meter_max_output(m, "gpt-a", &claimed), 16384);
        cr_expect_not(claimed, "the shipped table's");
        cr_expect_eq(aj_meter_max_output(m, "gpt-a-2025-04-14", NULL), 16384, "a snapshot: its base name's");
        cr_expect_eq(aj_meter_max_output(m, "gpt-b", &claimed), 0);
        cr_expect_not(claimed);
        cr_expect_eq(aj_meter_max_output(m, "other", NULL), 0);
        /* A profile entry that prices only the tokens: the table's maximum still holds. */
        cr_assert_eq(aj_meter_set_price(m, "gpt-a", 1e-6, 1e-6, -1), 0);
        cr_expect_eq(aj_meter_max_output(m, "gpt-a", &claimed), 16384);
        cr_expect_not(claimed, "still the table's");
        cr_assert_eq(aj_meter_set_price_max_output(m, "gpt-a", 4096), 0);
        cr_expect_eq(aj_meter_max_output(m, "gpt-a-2025-04-14", &claimed), 4096, "the profile's own");
        cr_expect(claimed, "the profile's own");
        cr_assert_eq(aj_meter_set_price(m, "*", 1e-6, 1e-6, -1), 0);
        cr_expect_eq(aj_meter_max_output(m, "other", NULL), 0);
        cr_assert_eq(aj_meter_set_price_max_output(m, "*", 8192), 0);
        claimed = false;
        cr_expect_eq(aj_meter_max_output(m, "other", &claimed), 8192, "\"*\"'s");
        cr_expect(claimed, "\"*\"'s");
        claimed = false;
        cr_expect_eq(aj_meter_max_output(m, "gpt-b", &claimed), 8192, "the table's entry gives none: \"*\"'s");
        cr_expect(claimed, "\"*\"'s");
        cr_expect_eq(aj_meter_set_price_max_output(m, "gpt-a", 0), -EINVAL);
        cr_expect_eq(aj_meter_set_price_max_output(m, "gpt-a", AJ_PRICE_MAX_OUTPUT_TOKENS + 1ULL), -EINVAL);
        cr_expect_eq(aj_meter_set_price_max_output(m, "unpriced", 100), -ENOENT);
        aj_meter_free(m);
}

/* Web searches the provider ran are priced per search: the table's fee (USD per 1,000 there),
 * a profile's (USD per search), the table's fee under a profile entry that prices only tokens,
 * a "*" entry's; none under a cost cap is a breach naming the fix, its tokens still charged. */
Test(meter, web_searches_priced_per_search)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 1000000000000ULL);
        const char *t = "{\"date\": \"2026-12-04\", \"models\": {"
                        "\"claude-sonnet-4-5\": {\"input\": 3, \"output\": 15, \"web_search\": 10},"
                        "\"gpt-4o\": {\"input\": 2.5, \"output\": 10}}}";
        AjPriceTable *pt = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(t, strlen(t), "test", &pt, &err), 0, "%s", aj_error_text(&err, 0));
        aj_meter_set_price_table(m, pt);
        AjMeterReservation res = {};
        AjMeterDecision d;
        /* $10 per 1,000 searches: 3 searches are $0.03, 3e10 pico-USD, on top of the tokens. */
        AjMeterUsage u = { .model = "claude-sonnet-4-5-20250929", .input = 100, .output = 10, .web_searches = 3 };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 100 * 3000000ULL + 10 * 15000000ULL + 3 * 10000000000ULL);
        /* A profile entry for the model without a fee: the table's fee still applies. */
        cr_assert_eq(aj_meter_set_price(m, "claude-sonnet-4-5", 1e-6, 1e-6, -1), 0);
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.cost_pusd, 110 * 1000000ULL + 3 * 10000000000ULL);
        /* With a fee of its own: that one. */
        cr_assert_eq(aj_meter_set_price_web_search(m, "claude-sonnet-4-5", 0.02), 0);
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.cost_pusd, 110 * 1000000ULL + 3 * 20000000000ULL);
        cr_expect_eq(aj_meter_set_price_web_search(m, "unpriced", 0.02), -ENOENT);
        cr_expect_eq(aj_meter_set_price_web_search(m, "claude-sonnet-4-5", 2), -EINVAL);
        /* No fee anywhere for gpt-4o: a breach, its tokens charged, the reason says what to add. */
        uint64_t before = aj_meter_used(m, AJ_CAP_COST_USD, 0);
        u = (AjMeterUsage){ .model = "gpt-4o", .input = 100, .output = 10, .web_searches = 2 };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        cr_expect(strstr(d.reason, "2 web search(es) for model \"gpt-4o\"") && strstr(d.reason, "\"web_search\""), "%s",
                  d.reason);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0) - before, 100 * 2500000ULL + 10 * 10000000ULL);
        /* The same call without searches needs no fee. */
        u.web_searches = 0;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        /* A "*" entry's fee prices the searches of a model whose entry has none. */
        cr_assert_eq(aj_meter_set_price(m, "*", 1e-6, 1e-6, -1), 0);
        cr_assert_eq(aj_meter_set_price_web_search(m, "*", 0.025), 0);
        u.web_searches = 2;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 100 * 2500000ULL + 10 * 10000000ULL + 2 * 25000000000ULL);
        aj_meter_free(m);

        /* Without a cost cap, unpriced searches are not a breach. */
        m = meter_with(AJ_CAP_TOKENS, 1000000);
        cr_assert_eq(aj_meter_set_price(m, "x", 1e-6, 1e-6, -1), 0);
        u = (AjMeterUsage){ .model = "x", .input = 10, .output = 10, .web_searches = 5 };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 20 * 1000000ULL);
        aj_meter_free(m);
}

/* The searches a request allows are reserved at their fee before it is forwarded: a call
 * cannot take the run past cost_usd by its searches; unpriced ones under a cost cap refuse
 * the call before it runs; what the response did not use is settled back. */
Test(meter, web_searches_reserved_then_settled_to_what_ran)
{
        /* $0.10: tokens 100 x 3e-6 + 10 x 1.5e-5 = $0.00045, and 8 searches at $0.01 fit; 10 do not. */
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 100000000000ULL);
        cr_assert_eq(aj_meter_set_price(m, "claude-x", 3e-6, 1.5e-5, -1), 0);
        cr_assert_eq(aj_meter_set_price_web_search(m, "claude-x", 0.01), 0);
        AjMeterReservation res = {};
        AjMeterDecision d;
        AjMeterUsage worst = { .model = "claude-x", .input = 100, .output = 10, .web_searches = 8 };
        cr_assert_eq(aj_meter_reserve_usage(m, &worst, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        uint64_t tokens = 100 * 3000000ULL + 10 * 15000000ULL;
        cr_expect_eq(res.amount[AJ_CAP_COST_USD], tokens + 8 * 10000000000ULL);
        /* One search ran: the other seven are settled back. */
        AjMeterUsage ran = worst;
        ran.web_searches = 1;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &ran, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), tokens + 10000000000ULL);
        /* Ten allowed do not fit what is left ($0.0895): refused before it runs, nothing reserved. */
        worst.web_searches = 10;
        cr_assert_eq(aj_meter_reserve_usage(m, &worst, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_COST_USD);
        cr_expect_not(res.active);
        /* Searches of a model no fee covers, under the cost cap: refused before the call, naming
         * what to add; the same request without a search tool goes. */
        cr_assert_eq(aj_meter_set_price(m, "gpt-x", 1e-6, 1e-6, -1), 0);
        AjMeterUsage chat = { .model = "gpt-x", .input = 10, .output = 10, .web_searches = 1 };
        cr_assert_eq(aj_meter_reserve_usage(m, &chat, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        cr_expect(strstr(d.reason, "1 web search(es) for model \"gpt-x\"") && strstr(d.reason, "\"web_search\""), "%s",
                  d.reason);
        cr_expect_not(res.active);
        chat.web_searches = 0;
        cr_assert_eq(aj_meter_reserve_usage(m, &chat, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        aj_meter_settle(m, &res, false);
        aj_meter_free(m);
}

/* The provider's other tools billed per use: at the model's fee, the table's, then "*"'s;
 * none under a cost cap is a breach naming the key to add, the rest still charged. */
Test(meter, provider_tool_uses_priced_per_use)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 1000000000000ULL);
        cr_assert_eq(aj_meter_set_price(m, "gpt-x", 1e-6, 1e-6, -1), 0);
        cr_assert_eq(aj_meter_set_price_tool_fee(m, "gpt-x", AJ_TOOL_FEE_CODE_INTERPRETER, 0.03), 0);
        cr_expect_eq(aj_meter_set_price_tool_fee(m, "nope", AJ_TOOL_FEE_CODE_INTERPRETER, 0.03), -ENOENT);
        cr_expect_eq(aj_meter_set_price_tool_fee(m, "gpt-x", AJ_TOOL_FEES, 0.03), -EINVAL);
        cr_expect_eq(aj_meter_set_price_tool_fee(m, "gpt-x", AJ_TOOL_FEE_FILE_SEARCH, 2), -EINVAL);
        AjMeterReservation res = {};
        AjMeterDecision d;
        AjMeterUsage u = { .model = "gpt-x", .input = 10, .output = 10 };
        u.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER] = 2;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 20 * 1000000ULL + 2 * 30000000000ULL);
        /* A file search nobody priced: a breach naming "file_search", the rest charged. */
        uint64_t before = aj_meter_used(m, AJ_CAP_COST_USD, 0);
        u.tool_uses[AJ_TOOL_FEE_FILE_SEARCH] = 3;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        cr_expect(strstr(d.reason, "3 use(s) of the provider's file_search tool for model \"gpt-x\"") &&
                          strstr(d.reason, "add \"file_search\""),
                  "%s", d.reason);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0) - before, 20 * 1000000ULL + 2 * 30000000000ULL);
        /* A "*" entry's fee covers it. */
        cr_assert_eq(aj_meter_set_price(m, "*", 1e-6, 1e-6, -1), 0);
        cr_assert_eq(aj_meter_set_price_tool_fee(m, "*", AJ_TOOL_FEE_FILE_SEARCH, 0.0025), 0);
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 20 * 1000000ULL + 2 * 30000000000ULL + 3 * 2500000000ULL);
        aj_meter_free(m);
        /* Without a cost cap an unpriced use is no breach. */
        m = meter_with(AJ_CAP_TOKENS, 1000);
        cr_assert_eq(aj_meter_set_price(m, "gpt-x", 1e-6, 1e-6, -1), 0);
        u = (AjMeterUsage){ .model = "gpt-x", .input = 10, .output = 10 };
        u.tool_uses[AJ_TOOL_FEE_WEB_FETCH] = 1;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        aj_meter_free(m);
}

/* A request's reservation of the provider's tools (llm-meter.c): Anthropic's code execution
 * that no price covers refuses it under a cost cap, naming "code_execution", before anything
 * is spent; 50 web fetches at their fee are reserved whole, past the cap a breach. */
Test(meter, provider_tool_uses_reserved_before_the_call)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 300000000000ULL); /* $0.30 */
        cr_assert_eq(aj_meter_set_price(m, "claude-x", 1e-6, 1e-6, -1), 0);
        AjMeterReservation res = {};
        AjMeterDecision d;
        AjMeterUsage u = { .model = "claude-x", .input = 10, .output = 10 };
        u.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] = 1;
        cr_assert_eq(aj_meter_reserve_usage(m, &u, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        cr_expect(strstr(d.reason, "code_execution tool for model \"claude-x\"") &&
                          strstr(d.reason, "add \"code_execution\""),
                  "%s", d.reason);
        cr_expect_not(res.active);
        cr_assert_eq(aj_meter_set_price_tool_fee(m, "claude-x", AJ_TOOL_FEE_CODE_EXECUTION, 0.05), 0);
        cr_assert_eq(aj_meter_reserve_usage(m, &u, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        aj_meter_settle(m, &res, false);
        u.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] = 0;
        cr_assert_eq(aj_meter_set_price_tool_fee(m, "claude-x", AJ_TOOL_FEE_WEB_FETCH, 0.01), 0);
        u.tool_uses[AJ_TOOL_FEE_WEB_FETCH] = 50;
        cr_assert_eq(aj_meter_reserve_usage(m, &u, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH, "50 x $0.01 past $0.30");
        cr_expect_not(d.price_missing);
        cr_expect_not(res.active);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 0, "nothing spent");
        aj_meter_free(m);
}

Test(meter, tool_calls_cap)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 3);
        for (int i = 0; i < 3; i++)
                cr_expect_eq(tool(m, "search", i == 0 ? "1" : i == 1 ? "2" : "3"), AJ_VERDICT_ALLOW);
        AjMeterDecision d;
        cr_expect_eq(tool_at(m, "search", "4", SEC, &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_TOOL_CALLS);
        cr_expect_eq(d.limit, 3);
        cr_expect_eq(d.value, 4);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 3);
        aj_meter_free(m);
}

Test(meter, repeat_detector)
{
        AjMeter *m = meter_with(AJ_CAP_REPEAT_LIMIT, 3);
        for (int i = 0; i < 3; i++)
                cr_expect_eq(tool(m, "crm.update", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_ALLOW, "call %d", i + 1);
        /* Same arguments, other key order: the canonical digest is the same. */
        AjMeterDecision d;
        cr_expect_eq(tool_at(m, "crm.update", "{\"x\": [1, 2], \"id\": 7}", SEC, &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        cr_expect_eq(d.value, 4);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_REPEAT_LIMIT, 0), 3);
        /* A different call resets the streak; then three identical ones are fine again. */
        cr_expect_eq(tool(m, "crm.update", "{\"id\": 8}"), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_REPEAT_LIMIT, 0), 1);
        cr_expect_eq(tool(m, "crm.update", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool(m, "crm.update", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool(m, "crm.update", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool(m, "crm.update", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_BREACH);
        /* Same arguments, another tool: not a repeat. */
        cr_expect_eq(tool(m, "crm.read", "{\"id\": 7, \"x\": [1, 2]}"), AJ_VERDICT_ALLOW);
        aj_meter_free(m);
}

/* Reserves a call without settling it: one awaiting its result or an approval. */
static AjVerdict hold(AjMeter *m, const char *name, const char *args, AjMeterReservation *res, AjMeterDecision *ret)
{
        AjMeterDecision d;
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *a = json_loads(args, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(a);
        cr_assert_eq(aj_meter_args_digest(a, digest), 0);
        json_decref(a);
        cr_assert_eq(aj_meter_reserve_tool(m, name, digest, 1 * SEC, res, &d), 0);
        if (ret)
                *ret = d;
        return d.verdict;
}

/* Calls held together (for approval) with one key may be approved one after another: each
 * counts in the streak it could end, whatever key the committed streak has. Only those with
 * the streak's key were counted, so three held "deploy" calls after a "search" were all
 * approved under repeat_limit=2 (a streak of 3). */
Test(meter, repeat_limit_counts_held_calls_of_any_key)
{
        AjMeter *m = meter_with(AJ_CAP_REPEAT_LIMIT, 2);
        cr_expect_eq(tool(m, "search", "1"), AJ_VERDICT_ALLOW);
        AjMeterReservation r[3];
        AjMeterDecision d;
        cr_expect_eq(hold(m, "deploy", "{\"env\": \"prod\"}", &r[0], NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(hold(m, "deploy", "{\"env\": \"prod\"}", &r[1], NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(hold(m, "deploy", "{\"env\": \"prod\"}", &r[2], &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        cr_expect_eq(d.value, 3);
        /* Another key is not held back by them. */
        cr_expect_eq(tool(m, "search", "2"), AJ_VERDICT_ALLOW);
        /* A held call denied (released) leaves the streak it could have made. */
        aj_meter_settle(m, &r[1], false);
        cr_expect_eq(hold(m, "deploy", "{\"env\": \"prod\"}", &r[1], NULL), AJ_VERDICT_ALLOW);
        /* Both approved: a streak of 2, at the limit; a third is past it. */
        aj_meter_settle(m, &r[0], true);
        aj_meter_settle(m, &r[1], true);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_REPEAT_LIMIT, 0), 2);
        cr_expect_eq(tool_at(m, "deploy", "{\"env\": \"prod\"}", SEC, &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.value, 3);
        /* Held calls with the streak's key count on top of it, as before. */
        AjMeter *m2 = meter_with(AJ_CAP_REPEAT_LIMIT, 3);
        cr_expect_eq(tool(m2, "t", "1"), AJ_VERDICT_ALLOW);
        cr_expect_eq(hold(m2, "t", "1", &r[0], NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(hold(m2, "t", "1", &r[1], NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(hold(m2, "t", "1", &r[2], &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.value, 4);
        aj_meter_settle(m2, &r[0], true);
        aj_meter_settle(m2, &r[1], true);
        cr_expect_eq(aj_meter_used(m2, AJ_CAP_REPEAT_LIMIT, 0), 3);
        aj_meter_free(m2);
        aj_meter_free(m);
}

Test(meter, rate_window_slides)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS_PER_MIN, 3);
        char a[8];
        /* Calls at 0 s, 10 s, 20 s fill the window. */
        for (int i = 0; i < 3; i++) {
                snprintf(a, sizeof(a), "%d", i);
                cr_expect_eq(tool_at(m, "t", a, (uint64_t)i * 10 * SEC, NULL), AJ_VERDICT_ALLOW);
        }
        AjMeterDecision d;
        cr_expect_eq(tool_at(m, "t", "\"x\"", 59 * SEC, &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_TOOL_CALLS_PER_MIN);
        cr_expect_eq(d.value, 4);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 59 * SEC), 3);
        /* At 60 s the call from 0 s has left the window (60 s old): room for one. */
        cr_expect_eq(tool_at(m, "t", "\"y\"", 60 * SEC, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool_at(m, "t", "\"z\"", 60 * SEC + 1, NULL), AJ_VERDICT_BREACH);
        cr_expect_eq(tool_at(m, "t", "\"z\"", 70 * SEC, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 70 * SEC), 3);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 200 * SEC), 0);
        aj_meter_free(m);
}

/* A minute after a burst of calls, nothing has pruned the window (only a tool call does):
 * a read of the rate (the broker's `usage` op, every reply's usage) must not walk every
 * stale call. 100000 calls, then 20000 reads: a walk is ~200 us a read (4 s in all), a
 * bisection well under a microsecond. */
Test(meter, rate_window_read_is_not_a_walk_of_stale_calls)
{
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        for (uint64_t i = 0; i < AJ_CAP_MAX_PER_MIN; i++) {
                char digest[AJ_SHA256_HEX_SIZE];
                snprintf(digest, sizeof(digest), "%064llu", (unsigned long long)i);
                AjMeterReservation res;
                AjMeterDecision d;
                cr_assert_eq(aj_meter_reserve_tool(m, "t", digest, SEC + i * 100000, &res, &d), 0);
                aj_meter_settle(m, &res, true);
        }
        cr_assert_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 20 * SEC), AJ_CAP_MAX_PER_MIN);
        /* This thread's CPU time, not the wall clock: what the reads cost, however long
         * a loaded machine left the test waiting for a CPU. */
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        uint64_t sum = 0;
        for (int i = 0; i < 20000; i++)
                sum += aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 200 * SEC);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        cr_expect_eq(sum, 0);
        cr_expect_lt(ms, 500.0, "20000 reads of a stale window of %llu calls took %.0f ms of CPU",
                     (unsigned long long)AJ_CAP_MAX_PER_MIN, ms);
        /* Half of them left at 66 s (started before 6 s): the count is exact. */
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 66 * SEC), AJ_CAP_MAX_PER_MIN / 2 - 1);
        aj_meter_free(m);
}

/* A call committed after a later one (reserved, held, then approved) keeps the window in
 * time order: it counts from the newer start, never leaves early, and the later calls
 * after it are still found. */
Test(meter, rate_window_out_of_order_commit)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS_PER_MIN, 10);
        AjMeterReservation held;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tool(m, "held", NULL, 10 * SEC, &held, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(tool_at(m, "t", "1", 20 * SEC, NULL), AJ_VERDICT_ALLOW);
        aj_meter_settle(m, &held, true); /* started at 10 s, committed after the call of 20 s */
        cr_expect_eq(tool_at(m, "t", "2", 30 * SEC, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 75 * SEC), 3);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 85 * SEC), 1);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 90 * SEC), 0);
        aj_meter_free(m);
}

Test(meter, tool_rules_deny_wins_and_allow_list)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 100);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_ALLOW, "crm.*"), 0);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_ALLOW, "search"), 0);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_DENY, "crm.delete*"), 0);
        AjMeterDecision d;
        cr_expect_eq(tool_at(m, "crm.update", NULL, SEC, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool_at(m, "search", NULL, SEC, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool_at(m, "crm.delete_all", NULL, SEC, &d), AJ_VERDICT_DENY);
        cr_expect_str_eq(d.reason, "tool \"crm.delete_all\" is denied by tools.deny \"crm.delete*\"");
        cr_expect_eq(tool_at(m, "email.send", NULL, SEC, &d), AJ_VERDICT_DENY);
        cr_expect_str_eq(d.reason, "tool \"email.send\" is not in tools.allow");
        cr_expect_eq(tool_at(m, "searchx", NULL, SEC, &d), AJ_VERDICT_DENY);
        /* Denials are not breaches and count nothing. */
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 2);
        aj_meter_free(m);

        /* No allow list: everything not denied is allowed; an empty allow list allows nothing. */
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        cr_expect_eq(tool_at(m, "anything", NULL, SEC, NULL), AJ_VERDICT_ALLOW);
        aj_meter_restrict_tools(m);
        cr_expect_eq(tool_at(m, "anything", NULL, SEC, NULL), AJ_VERDICT_DENY);
        aj_meter_free(m);
}

Test(meter, glob)
{
        cr_expect(aj_glob_match("*", ""));
        cr_expect(aj_glob_match("crm.*", "crm.update"));
        cr_expect(aj_glob_match("crm.*", "crm."));
        cr_expect_not(aj_glob_match("crm.*", "crm"));
        cr_expect(aj_glob_match("*.send", "email.send"));
        cr_expect(aj_glob_match("a*b*c", "aXbYbZc"));
        cr_expect_not(aj_glob_match("a*b*c", "aXbYbZ"));
        cr_expect(aj_glob_match("refund.**", "refund.x.y"));
        cr_expect_not(aj_glob_match("search", "search2"));
        /* '?' and '[' are literal: tool names are not file names. */
        cr_expect(aj_glob_match("a?[b]", "a?[b]"));
        cr_expect_not(aj_glob_match("a?", "ab"));
}

/*
 * Reserve-then-settle under interleaving: many clients hold reservations at once,
 * settled (committed or released) in a random order. Usage plus what is reserved
 * never passes a cap, and the final usage is exactly what was committed.
 */
Test(meter, interleaving_never_passes_a_cap)
{
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 10000;
        caps.set[AJ_CAP_TOOL_CALLS] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 50;
        caps.set[AJ_CAP_COST_USD] = true;
        caps.limit[AJ_CAP_COST_USD] = 5000000000ULL; /* $0.005 */
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        cr_assert_eq(aj_meter_set_price(m, "m", 1e-6, 1e-6, -1), 0);

        enum { CLIENTS = 16, ROUNDS = 4000 };
        AjMeterReservation held[CLIENTS] = {};
        uint64_t committed_tokens = 0, committed_calls = 0, breaches = 0;
        srand(12345);
        for (int round = 0; round < ROUNDS; round++) {
                int c = rand() % CLIENTS;
                if (held[c].active) {
                        bool commit = rand() % 4 != 0;
                        if (commit) {
                                committed_tokens += held[c].amount[AJ_CAP_TOKENS];
                                committed_calls += held[c].is_tool;
                        }
                        aj_meter_settle(m, &held[c], commit);
                        cr_assert_not(held[c].active);
                } else {
                        AjMeterDecision d;
                        char digest[AJ_SHA256_HEX_SIZE];
                        snprintf(digest, sizeof(digest), "%d", round);
                        if (rand() % 2)
                                cr_assert_eq(aj_meter_reserve_tool(m, "t", digest, SEC, &held[c], &d), 0);
                        else
                                cr_assert_eq(aj_meter_reserve_tokens(m, "m", (uint64_t)(rand() % 300),
                                                                     (uint64_t)(rand() % 300), 0, &held[c], &d),
                                             0);
                        if (d.verdict == AJ_VERDICT_BREACH)
                                breaches++;
                }
                uint64_t reserved_tokens = 0;
                for (int i = 0; i < CLIENTS; i++)
                        reserved_tokens += held[i].active ? held[i].amount[AJ_CAP_TOKENS] : 0;
                cr_assert_leq(aj_meter_used(m, AJ_CAP_TOKENS, 0) + reserved_tokens, 10000);
                cr_assert_leq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 50);
                cr_assert_leq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 5000000000ULL);
        }
        for (int i = 0; i < CLIENTS; i++)
                aj_meter_settle(m, &held[i], false);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), committed_tokens);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), committed_calls);
        cr_expect_gt(breaches, 0, "the test should reach the caps");
        /* A released reservation frees its room. */
        AjMeterReservation r;
        AjMeterDecision d;
        uint64_t left = 10000 - aj_meter_used(m, AJ_CAP_TOKENS, 0);
        if (left > 0 && left <= 5000) {
                cr_assert_eq(aj_meter_reserve_tokens(m, "none", left, 0, 0, &r, &d), 0);
                cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
                aj_meter_settle(m, &r, false);
                cr_assert_eq(aj_meter_reserve_tokens(m, "none", left, 0, 0, &r, &d), 0);
                cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
                aj_meter_settle(m, &r, false);
        }
        aj_meter_free(m);
}

Test(meter, raise)
{
        AjMeter *m = meter_with(AJ_CAP_TOKENS, 100);
        AjError err = {};
        /* Priced: with the cost cap set below, an unpriced model would be refused. */
        cr_assert_eq(aj_meter_set_price(m, "m", 1e-12, 0, -1), 0);
        cr_expect_eq(tokens(m, "m", 100, 0, 0, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(tokens(m, "m", 1, 0, 0, NULL), AJ_VERDICT_BREACH);
        cr_assert_eq(aj_meter_raise(m, "tokens", "+50", &err), 0);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOKENS], 150);
        cr_expect_eq(tokens(m, "m", 50, 0, 0, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(tokens(m, "m", 1, 0, 0, NULL), AJ_VERDICT_BREACH);
        cr_assert_eq(aj_meter_raise(m, "cost_usd", "5", &err), 0);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_COST_USD], 5000000000000ULL);
        cr_assert_eq(aj_meter_raise(m, "tokens", "unlimited", &err), 0);
        cr_expect_eq(tokens(m, "m", 1000000, 0, 0, NULL), AJ_VERDICT_ALLOW);

        cr_expect_eq(aj_meter_raise(m, "tokens", "+5", &err), -EINVAL);
        cr_expect_str_eq(err.message, "tokens=+5: tokens has no cap to add to; give the new value without '+'");
        aj_error_clear(&err);
        cr_expect_eq(aj_meter_raise(m, "tokenz", "5", &err), -EINVAL);
        cr_expect(strstr(err.message, "cannot raise \"tokenz\": unknown cap") == err.message, "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(aj_meter_raise(m, "cost_usd", "+abc", &err), -EINVAL);
        cr_expect(strstr(err.message, "cost_usd=+abc: expected a number of US dollars") == err.message, "%s",
                  err.message);
        aj_error_clear(&err);

        /* JSON form (thaw --raise): all or nothing. */
        json_t *raise = json_pack("{s:s, s:s}", "cost_usd", "+1.5", "tool_calls", "x");
        cr_expect_eq(aj_meter_raise_json(m, raise, &err), -EINVAL);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_COST_USD], 5000000000000ULL, "partly applied");
        aj_error_clear(&err);
        json_decref(raise);
        raise = json_pack("{s:s, s:i}", "cost_usd", "+1.5", "tool_calls", 10);
        cr_expect_eq(aj_meter_raise_json(m, raise, &err), 0);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_COST_USD], 6500000000000ULL);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOOL_CALLS], 10);
        json_decref(raise);
        aj_meter_free(m);
}

Test(meter, cap_args)
{
        AjMeterCaps caps = {};
        AjError err = {};
        cr_assert_eq(aj_meter_apply_cap_arg(&caps, "tokens=50000", &err), 0);
        cr_expect(caps.set[AJ_CAP_TOKENS]);
        cr_expect_eq(caps.limit[AJ_CAP_TOKENS], 50000);
        cr_assert_eq(aj_meter_apply_cap_arg(&caps, "cost_usd=0.25", &err), 0);
        cr_expect_eq(caps.limit[AJ_CAP_COST_USD], 250000000000ULL);
        cr_assert_eq(aj_meter_apply_cap_arg(&caps, "tool_calls_per_min=0", &err), 0);
        cr_expect(caps.set[AJ_CAP_TOOL_CALLS_PER_MIN]);
        cr_assert_eq(aj_meter_apply_cap_arg(&caps, "tokens=unlimited", &err), 0);
        cr_expect_not(caps.set[AJ_CAP_TOKENS]);

        static const struct {
                const char *arg, *msg;
        } bad[] = {
                { "tokens", "--cap tokens: expected KEY=VALUE (KEY one of: tokens, input_tokens, output_tokens, "
                            "cost_usd, tool_calls, tool_calls_per_min, repeat_limit)" },
                { "=5", "--cap =5: expected KEY=VALUE (KEY one of: tokens, input_tokens, output_tokens, cost_usd, "
                        "tool_calls, tool_calls_per_min, repeat_limit)" },
                { "tokns=5", "--cap tokns=5: unknown cap \"tokns\" (expected one of: tokens, input_tokens, "
                             "output_tokens, cost_usd, tool_calls, tool_calls_per_min, repeat_limit)" },
                { "tokens=-1", "--cap tokens=-1: expected an integer from 0 to 1000000000000000, or \"unlimited\"" },
                { "tokens=1e5", "--cap tokens=1e5: expected an integer from 0 to 1000000000000000, or \"unlimited\"" },
                { "tokens=", "--cap tokens=: expected an integer from 0 to 1000000000000000, or \"unlimited\"" },
                { "cost_usd=nan", "--cap cost_usd=nan: expected a number of US dollars from 0 to 1000000, such as "
                                  "\"5\" or \"0.25\", or \"unlimited\"" },
                { "cost_usd=1.2.3", "--cap cost_usd=1.2.3: expected a number of US dollars from 0 to 1000000, such "
                                    "as \"5\" or \"0.25\", or \"unlimited\"" },
                { "cost_usd=2000000", "--cap cost_usd=2000000: expected a number of US dollars from 0 to 1000000, "
                                      "such as \"5\" or \"0.25\", or \"unlimited\"" },
                { "repeat_limit=0", "--cap repeat_limit=0: expected an integer from 1 to 1000000, or \"unlimited\"" },
                { "tool_calls_per_min=100001",
                  "--cap tool_calls_per_min=100001: expected an integer from 0 to 100000, or \"unlimited\"" },
        };
        AjMeterCaps before = caps;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                cr_expect_eq(aj_meter_apply_cap_arg(&caps, bad[i].arg, &err), -EINVAL, "%s", bad[i].arg);
                cr_expect_str_eq(err.message ?: "", bad[i].msg);
                aj_error_clear(&err);
        }
        cr_expect_eq(memcmp(&before, &caps, sizeof(caps)), 0, "a bad --cap changed the caps");
}

Test(meter, to_json)
{
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 200000;
        caps.set[AJ_CAP_COST_USD] = true;
        caps.limit[AJ_CAP_COST_USD] = 5000000000000ULL;
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        cr_assert_eq(aj_meter_set_price(m, "m", 1e-6, 1e-6, -1), 0);
        tokens(m, "m", 1000, 500, 0, NULL);
        json_t *all = aj_meter_to_json(m, SEC, false);
        cr_assert_not_null(all);
        cr_expect_eq(json_object_size(all), _AJ_CAP_MAX);
        json_t *t = json_object_get(all, "tokens");
        cr_expect_eq(json_integer_value(json_object_get(t, "limit")), 200000);
        cr_expect_eq(json_integer_value(json_object_get(t, "used")), 1500);
        cr_expect_eq(json_integer_value(json_object_get(t, "remaining")), 198500);
        json_t *c = json_object_get(all, "cost_usd");
        cr_expect_float_eq(json_real_value(json_object_get(c, "used")), 0.0015, 1e-12);
        cr_expect_float_eq(json_real_value(json_object_get(c, "limit")), 5.0, 1e-12);
        json_t *calls = json_object_get(all, "tool_calls");
        cr_expect(json_is_null(json_object_get(calls, "limit")));
        cr_expect(json_is_null(json_object_get(calls, "remaining")));
        cr_expect_eq(json_integer_value(json_object_get(calls, "used")), 0);
        json_decref(all);
        json_t *set = aj_meter_to_json(m, SEC, true);
        cr_expect_eq(json_object_size(set), 2);
        json_decref(set);
        aj_meter_free(m);
}

/* The broker's reply prints the usage without building it: the same text as jansson's dump
 * of aj_meter_to_json(), at both precisions, set caps or all, as the counts grow. */
Test(meter, out_json_is_jansson_text)
{
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 200000;
        caps.set[AJ_CAP_COST_USD] = true;
        caps.limit[AJ_CAP_COST_USD] = 5000000000000ULL;
        caps.set[AJ_CAP_TOOL_CALLS] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 7;
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(&caps, &m), 0);
        cr_assert_eq(aj_meter_set_price(m, "m", 3.1e-6, 1.7e-5, -1), 0);
        for (int i = 0; i < 40; i++) {
                for (int only_set = 0; only_set < 2; only_set++)
                        for (int precision = 0; precision <= 12; precision += 12) {
                                json_t *v = aj_meter_to_json(m, SEC, only_set);
                                char want[2048], got[2048];
                                size_t wn = json_dumpb(v, want, sizeof(want),
                                                       JSON_COMPACT | (precision ? JSON_REAL_PRECISION(precision) : 0));
                                json_decref(v);
                                AjJsonOut o = aj_json_out(got, sizeof(got), false, precision);
                                cr_assert_eq(aj_meter_out_json(m, SEC, only_set, &o), 0);
                                cr_assert_eq(o.len, wn, "%.*s against %.*s", (int)o.len, got, (int)wn, want);
                                cr_assert_eq(memcmp(got, want, wn), 0, "%.*s against %.*s", (int)o.len, got, (int)wn,
                                             want);
                        }
                tokens(m, "m", 1000 + 37 * i, 500 + 11 * i, 0, NULL);
        }
        AjMeter *none = NULL;
        cr_assert_eq(aj_meter_new(NULL, &none), 0);
        char got[16];
        AjJsonOut o = aj_json_out(got, sizeof(got), false, 0);
        cr_assert_eq(aj_meter_out_json(none, SEC, true, &o), 0);
        cr_expect_eq(o.len, 2);
        cr_expect_eq(memcmp(got, "{}", 2), 0);
        aj_meter_free(none);
        aj_meter_free(m);
}

Test(meter, from_profile)
{
        const char *text = "{ \"meters\": { \"tokens\": 100, \"cost_usd\": 0.5, \"repeat_limit\": 2 },"
                           "  \"tools\": { \"allow\": [\"crm.*\"], \"deny\": [\"crm.drop\"] },"
                           "  \"prices\": { \"m\": { \"input\": 1e-6, \"output\": 2e-6 } } }";
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse(text, NULL, &p, &err);
        cr_assert_eq(r, 0, "%s", err.message ?: "");
        AjMeterCaps caps;
        aj_meter_caps_from_profile(p, &caps);
        cr_expect(caps.set[AJ_CAP_TOKENS]);
        cr_expect_eq(caps.limit[AJ_CAP_TOKENS], 100);
        cr_expect_eq(caps.limit[AJ_CAP_COST_USD], 500000000000ULL);
        cr_expect(caps.set[AJ_CAP_REPEAT_LIMIT]);
        cr_expect_not(caps.set[AJ_CAP_TOOL_CALLS]);
        cr_assert_eq(aj_meter_apply_cap_arg(&caps, "tokens=50", NULL), 0);
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new_for_profile(p, &caps, &m), 0);
        AjMeterDecision d;
        cr_expect_eq(tool_at(m, "crm.read", NULL, SEC, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(tool_at(m, "crm.drop", NULL, SEC, NULL), AJ_VERDICT_DENY);
        cr_expect_eq(tool_at(m, "web", NULL, SEC, NULL), AJ_VERDICT_DENY);
        cr_expect_eq(tokens(m, "m", 30, 20, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 70000000ULL);
        cr_expect_eq(tokens(m, "m", 1, 0, 0, &d), AJ_VERDICT_BREACH, "--cap tokens=50 overrides the profile");
        aj_meter_free(m);
        aj_profile_free(p);
}

/* The gateway: reserve the worst case before forwarding, settle to the measured usage. */
Test(meter, gateway_reserves_the_worst_case_and_settles_the_measured_usage)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 100000000000ULL); /* $0.10 */
        aj_meter_set_price_table(m, table());
        AjMeterReservation res, res2;
        AjMeterDecision d;
        /* Worst case: 2000 prompt tokens + max_tokens 4096 at $3/$15: $0.06744. */
        AjMeterUsage worst = { "claude-sonnet-4-5", 2000, 4096, 0, 0, 0 };
        cr_assert_eq(aj_meter_reserve_usage(m, &worst, &res, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);
        /* A second one at the same time would cross the cap: refused before any spend. */
        cr_assert_eq(aj_meter_reserve_usage(m, &worst, &res2, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect_not(res2.active);
        /* The provider measured less: only that is used, the rest freed. */
        AjMeterUsage measured = { "claude-sonnet-4-5-20250929", 1800, 300, 0, 0, 0 };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &measured, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 1800 * 3000000ULL + 300 * 15000000ULL);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), 2100);
        cr_assert_eq(aj_meter_reserve_usage(m, &worst, &res2, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW, "the freed reservation is available again");
        /* Measured above the worst case (a prompt estimate too low): counted whole, a breach. */
        AjMeterUsage more = { "claude-sonnet-4-5", 20000, 4096, 0, 0, 0 };
        cr_assert_eq(aj_meter_settle_usage(m, &res2, &more, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_COST_USD);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), 2100 + 24096);
        cr_expect_gt(aj_meter_used(m, AJ_CAP_COST_USD, 0), 100000000000ULL, "measured spend passes the cap");
        /* An unpriced model under the cost cap: its tokens count, it is a breach. */
        AjMeterReservation none = {};
        AjMeterUsage unknown = { "mystery", 10, 10, 0, 0, 0 };
        cr_assert_eq(aj_meter_settle_usage(m, &none, &unknown, &d), 0);
        cr_expect(d.price_missing);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOKENS, 0), 2100 + 24096 + 20);
        AjMeterUsage bad = { "m", 1, 0, 2, 0, 0 };
        cr_expect_eq(aj_meter_settle_usage(m, &none, &bad, &d), -EINVAL);
        aj_meter_free(m);
}

/* The table read when a model is first priced: once, and only when the profile's own
 * prices do not answer; a table that cannot be read leaves models unpriced. */
static int loads;
static int load_table(void *userdata, AjPriceTable **ret)
{
        loads++;
        if (userdata)
                return -EBADMSG;
        *ret = table();
        return 0;
}

Test(meter, price_table_read_when_first_needed)
{
        AjMeter *m = meter_with(AJ_CAP_TOKENS, 1000000);
        AjMeterDecision d;
        loads = 0;
        aj_meter_set_price_loader(m, load_table, NULL);
        cr_assert_eq(aj_meter_set_price(m, "mine", 1e-6, 2e-6, -1), 0);
        cr_expect_eq(tokens(m, "mine", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(loads, 0, "the profile's price answered: the table is not read");
        cr_expect_eq(tokens(m, "claude-sonnet-4-5", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(loads, 1);
        cr_expect_str_eq(d.price_source, "table");
        cr_expect(d.price_known);
        cr_expect_eq(tokens(m, "gpt-4o", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(loads, 1, "read once");
        aj_meter_free(m);

        m = meter_with(AJ_CAP_TOKENS, 1000000);
        loads = 0;
        aj_meter_set_price_loader(m, load_table, (void *)1);
        cr_expect_eq(tokens(m, "claude-sonnet-4-5", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_not(d.price_known, "an unreadable table prices nothing");
        cr_expect_eq(tokens(m, "claude-sonnet-4-5", 10, 10, 0, &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(loads, 1, "and is not read again for every report");
        aj_meter_free(m);
}

/* ---- one call seen from both sides (gateway and broker), by its id ---- */

/* Reserves a call with an id from one side and commits it; returns the verdict. */
static AjVerdict side_call(AjMeter *m, AjMeterCounter by, const char *name, const char *args, const char *id,
                           AjMeterDecision *ret)
{
        AjMeterReservation res;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tool_call(m, name, args, id, by, 0, &res, &d), 0);
        aj_meter_settle(m, &res, true);
        if (ret)
                *ret = d;
        return d.verdict;
}

#define GW AJ_METER_BY_GATEWAY
#define BR AJ_METER_BY_BROKER

Test(meter, same_call_id_from_both_sides_is_counted_once)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 100);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, GW, "exec_command", "g1", "call_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_null(d.counted_by);
        cr_expect_eq(aj_meter_call_ids(m, GW), 1);
        /* The hook's request for the same call: another name and arguments, the same id. */
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h1", "call_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 1);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS_PER_MIN, 0), 1);
        cr_expect_eq(aj_meter_call_ids(m, GW), 0, "claimed");
        /* The other order: the broker first, the gateway recognises it. */
        cr_expect_eq(side_call(m, BR, "claude.Bash", "h2", "toolu_2", &d), AJ_VERDICT_ALLOW);
        cr_expect_null(d.counted_by);
        cr_expect_eq(side_call(m, GW, "Bash", "g2", "toolu_2", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "broker");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 2);
        /* Exactly at the cap: the already-counted call still goes (it is in the count). */
        AjMeter *m1 = meter_with(AJ_CAP_TOOL_CALLS, 1);
        cr_expect_eq(side_call(m1, GW, "exec_command", "g1", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m1, BR, "codex.Bash", "h1", "call_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m1, BR, "codex.Bash", "h1", "call_2", &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_TOOL_CALLS);
        aj_meter_free(m1);
        aj_meter_free(m);
}

/* The keys differ on the two sides (exec_command {"cmd"} and codex.Bash {"command"}): the
 * streak must advance once per call, by the side that counted it, or it restarts forever. */
Test(meter, repeat_streak_advances_once_per_call_seen_from_both_sides)
{
        AjMeter *m = meter_with(AJ_CAP_REPEAT_LIMIT, 2);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, GW, "exec_command", "same", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "same-h", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_REPEAT_LIMIT, 0), 1);
        cr_expect_eq(side_call(m, GW, "exec_command", "same", "call_2", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "same-h", "call_2", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_REPEAT_LIMIT, 0), 2);
        /* The third identical call: a breach at the gateway. */
        cr_expect_eq(side_call(m, GW, "exec_command", "same", "call_3", &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        cr_expect_eq(d.value, 3);
        cr_expect_eq(aj_meter_call_ids(m, GW), 0, "a call not counted leaves no id");
        aj_meter_free(m);
}

/* An id exempts one call, once: replaying it for other calls counts them. */
Test(meter, a_claimed_id_does_not_exempt_a_second_call)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 100);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, GW, "exec_command", "g", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "call_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        for (int i = 0; i < 5; i++) {
                char args[16];
                snprintf(args, sizeof(args), "other-%d", i);
                cr_expect_eq(side_call(m, BR, "codex.Bash", args, "call_1", &d), AJ_VERDICT_ALLOW);
                cr_expect_null(d.counted_by, "replay %d", i);
        }
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 6);
        /* Nor does the broker's own id exempt a broker call, or the gateway's a gateway call. */
        cr_expect_eq(side_call(m, GW, "exec_command", "g", "call_9", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, GW, "exec_command", "g", "call_9", &d), AJ_VERDICT_ALLOW);
        cr_expect_null(d.counted_by);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 8);
        aj_meter_free(m);
}

Test(meter, unknown_or_no_call_id_is_counted_as_before)
{
        AjMeter *m = meter_with(AJ_CAP_REPEAT_LIMIT, 2);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, GW, "exec_command", "g", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "call_unknown", &d), AJ_VERDICT_ALLOW);
        cr_expect_null(d.counted_by);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", NULL, NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "", &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 3);
        aj_meter_free(m);
}

/* The rules still judge an exempt call; a denied or released one does not use up the id. */
Test(meter, counted_call_is_still_judged_by_the_rules)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 100);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_DENY, "codex.Bash"), 0);
        AjMeterDecision d;
        AjMeterReservation res;
        cr_expect_eq(side_call(m, GW, "exec_command", "g", "call_1", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "call_1", &d), AJ_VERDICT_DENY);
        cr_expect_eq(aj_meter_call_ids(m, GW), 1, "a denied request claims nothing");
        /* Held, then released (an approval denied or timed out): the id is back. */
        cr_assert_eq(aj_meter_reserve_tool_call(m, "codex.Edit", "h", "call_1", BR, 0, &res, &d), 0);
        cr_expect_str_eq(d.counted_by, "gateway");
        cr_expect_eq(aj_meter_call_ids(m, GW), 0, "claimed while held");
        AjMeterReservation res2;
        cr_assert_eq(aj_meter_reserve_tool_call(m, "codex.Edit", "h2", "call_1", BR, 0, &res2, &d), 0);
        cr_expect_null(d.counted_by, "a second request while the first is held is counted");
        aj_meter_settle(m, &res2, false);
        aj_meter_settle(m, &res, false);
        cr_expect_eq(aj_meter_call_ids(m, GW), 1);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 1);
        cr_expect_eq(side_call(m, BR, "codex.Edit", "h", "call_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 1);
        aj_meter_free(m);
}

/* A released claim gives back the slot it claimed: repeating a request that is refused at
 * once under a model's id (helper-77 noticed) must not push the gateway's other ids out of
 * its ring, which the backstop and the count of calls seen twice read. */
Test(meter, a_released_claim_pushes_no_id_out)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 100000);
        AjMeterDecision d;
        for (int i = 0; i < 10; i++) {
                char id[16];
                snprintf(id, sizeof(id), "g_%d", i);
                cr_expect_eq(side_call(m, GW, "exec_command", "g", id, NULL), AJ_VERDICT_ALLOW);
        }
        cr_expect(aj_meter_gate_missed(m, "g_5"), "counted by the gateway, never judged");
        for (int i = 0; i < 3 * AJ_METER_MAX_CALL_IDS; i++) {
                AjMeterReservation res;
                cr_assert_eq(aj_meter_reserve_tool_call(m, "codex.Bash", "h", "g_0", BR, 0, &res, &d), 0);
                cr_assert_str_eq(d.counted_by, "gateway", "round %d", i);
                aj_meter_settle(m, &res, false);
        }
        cr_expect_eq(aj_meter_call_ids(m, GW), 10, "the same ten ids, none pushed out: %zu", aj_meter_call_ids(m, GW));
        cr_expect(aj_meter_gate_missed(m, "g_5"), "the backstop still knows g_5");
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "g_9", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway", "and a call it counted is still counted once");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 10);
        aj_meter_free(m);
}

/* The tools rules name the broker's calls (claude.Bash); the model's own names (Bash) are
 * what the gateway sees. A call the model asked for counts whatever the rules say of its
 * name, and its id is known to the backstop (found by the third attacker review: with
 * tools.allow ["claude.*"] the gateway counted nothing: no tool cap, no repeat_limit and no
 * tool_gate on the model's calls). */
Test(meter, the_gateway_counts_what_the_rules_would_deny)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 2);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_ALLOW, "claude.*"), 0);
        aj_meter_restrict_tools(m);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_DENY, "*rm*"), 0);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, GW, "Bash", "g1", "toolu_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, GW, "rm_file", "g2", "toolu_2", &d), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 2);
        cr_expect(aj_meter_gate_missed(m, "toolu_1"), "the backstop knows the call");
        cr_expect_eq(side_call(m, GW, "Bash", "g3", "toolu_3", &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_TOOL_CALLS);
        /* The broker's names are still judged by the rules, an exempt call too. */
        cr_expect_eq(side_call(m, BR, "Bash", "h", "toolu_1", &d), AJ_VERDICT_DENY);
        cr_expect_eq(side_call(m, BR, "claude.rm", "h", "toolu_2", &d), AJ_VERDICT_DENY);
        cr_expect_eq(side_call(m, BR, "claude.Bash", "h", "toolu_1", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), 2);
        aj_meter_free(m);

        m = meter_with(AJ_CAP_REPEAT_LIMIT, 2);
        cr_assert_eq(aj_meter_add_tool_rule(m, AJ_TOOL_RULE_ALLOW, "claude.*"), 0);
        aj_meter_restrict_tools(m);
        cr_expect_eq(side_call(m, GW, "Bash", "same", "toolu_a", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, GW, "Bash", "same", "toolu_b", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(side_call(m, GW, "Bash", "same", "toolu_c", &d), AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        aj_meter_free(m);
}

/* Only the last AJ_METER_MAX_CALL_IDS are remembered: the oldest forgotten (then counted
 * twice, never not at all). */
Test(meter, call_ids_remembered_are_bounded)
{
        AjMeter *m = NULL;
        cr_assert_eq(aj_meter_new(NULL, &m), 0);
        char id[32];
        for (int i = 0; i < AJ_METER_MAX_CALL_IDS + 10; i++) {
                snprintf(id, sizeof(id), "call_%d", i);
                cr_assert_eq(side_call(m, GW, "exec_command", id, id, NULL), AJ_VERDICT_ALLOW);
        }
        cr_expect_eq(aj_meter_call_ids(m, GW), AJ_METER_MAX_CALL_IDS);
        AjMeterDecision d;
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "call_0", &d), AJ_VERDICT_ALLOW);
        cr_expect_null(d.counted_by, "forgotten: counted again");
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", "call_10", &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        snprintf(id, sizeof(id), "call_%d", AJ_METER_MAX_CALL_IDS + 9);
        cr_expect_eq(side_call(m, BR, "codex.Bash", "h", id, &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by, "gateway");
        cr_expect_eq(aj_meter_used(m, AJ_CAP_TOOL_CALLS, 0), AJ_METER_MAX_CALL_IDS + 11);
        aj_meter_free(m);
}

/* Outstanding reservations are counted exactly however large they are: a saturating one
 * (a request asking for 2^64 tokens, no cap on them yet) settled leaves every other one
 * counted, so a cap raised later sees what is really outstanding. */
Test(meter, reservations_are_counted_exactly_past_saturation)
{
        AjMeter *m = meter_with(AJ_CAP_TOOL_CALLS, 10);
        AjMeterReservation big, small, next;
        AjMeterDecision d;
        AjError err = {};

        cr_assert_eq(aj_meter_reserve_tokens(m, "m", UINT64_MAX, 0, 0, &big, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_assert_eq(aj_meter_reserve_tokens(m, "m", 1000, 0, 0, &small, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);
        aj_meter_settle(m, &big, false);
        cr_assert_eq(aj_meter_raise(m, "tokens", "1500", &err), 0);

        cr_assert_eq(aj_meter_reserve_tokens(m, "m", 600, 0, 0, &next, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH, "1,000 outstanding and 600 more are past 1,500");
        aj_meter_settle(m, &next, false);
        aj_meter_settle(m, &small, false);
        cr_assert_eq(aj_meter_reserve_tokens(m, "m", 600, 0, 0, &next, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW, "nothing outstanding: 600 fit");
        aj_meter_settle(m, &next, true);
        cr_assert_eq(aj_meter_reserve_tokens(m, "m", 900, 0, 0, &next, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW, "600 used and 900 fit exactly");
        aj_meter_settle(m, &next, false);
        aj_meter_free(m);
}

/* A cap set below what the run has used and holds reserved had it over the cap the moment
 * it was thawed: refused, naming what it has; at exactly that, or with "+N", it is fine. */
Test(meter, raise_below_used_and_reserved_is_refused)
{
        AjMeter *m = meter_with(AJ_CAP_TOKENS, 1000);
        AjError err = {};
        cr_assert_eq(tokens(m, "m", 600, 0, 0, NULL), AJ_VERDICT_ALLOW);
        AjMeterReservation held;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tokens(m, "m", 300, 0, 0, &held, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);

        cr_expect_eq(aj_meter_raise(m, "tokens", "899", &err), -EINVAL);
        cr_expect_str_eq(err.message,
                         "tokens=899: below what the run has already used and holds reserved (900): it would be over "
                         "the cap as soon as it ran; give at least 900, or \"+N\"");
        aj_error_clear(&err);
        cr_expect_eq(aj_meter_caps(m)->limit[AJ_CAP_TOKENS], 1000, "unchanged");
        json_auto_t *both = json_pack("{s:s, s:s}", "tool_calls", "5", "tokens", "10");
        cr_expect_eq(aj_meter_raise_json(m, both, &err), -EINVAL, "all or nothing");
        aj_error_clear(&err);
        cr_expect(!aj_meter_caps(m)->set[AJ_CAP_TOOL_CALLS]);
        cr_expect_eq(aj_meter_raise(m, "tokens", "900", &err), 0, "no room left, but not over");
        cr_expect_eq(aj_meter_raise(m, "tokens", "+10", &err), 0);
        aj_meter_settle(m, &held, false);
        cr_expect_eq(aj_meter_raise(m, "tokens", "600", &err), 0, "released: only the used counts");
        aj_meter_free(m);
}

/* What the provider says a call cost (AjMeterUsage.provider_cost) is a floor: the cost is the
 * larger of it and the prices' figure (priced_pusd keeps the latter), past the cap a breach;
 * a model without a price is charged the provider's figure (without a cost cap; under one it
 * is still a breach, its figure counted). */
Test(meter, provider_cost_is_a_floor)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 1000000000000ULL); /* $1 */
        cr_assert_eq(aj_meter_set_price(m, "x", 1e-6, 2e-6, -1), 0);
        AjMeterReservation res = {};
        AjMeterDecision d;
        uint64_t priced = 100 * 1000000ULL + 10 * 2000000ULL;
        AjMeterUsage u = { .model = "x", .input = 100, .output = 10, .provider_cost = 500000000ULL };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.priced_pusd, priced);
        cr_expect_eq(d.cost_pusd, 500000000ULL);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 500000000ULL);
        /* Below the prices' figure: the prices'. */
        u.provider_cost = 1;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.cost_pusd, priced);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 500000000ULL + priced);
        /* Past the cap: a breach, counted. */
        u.provider_cost = 2000000000000ULL;
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect_eq(d.cap, AJ_CAP_COST_USD);
        /* Unpriced under the cap: a breach that still counts what the provider said. */
        uint64_t before = aj_meter_used(m, AJ_CAP_COST_USD, 0);
        u = (AjMeterUsage){ .model = "unpriced", .input = 1, .output = 1, .provider_cost = 7 };
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH);
        cr_expect(d.price_missing);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0) - before, 7);
        aj_meter_free(m);
        /* Without a cost cap, an unpriced model is charged the provider's figure. */
        m = meter_with(AJ_CAP_TOKENS, 1000000);
        cr_assert_eq(aj_meter_settle_usage(m, &res, &u, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(d.cost_pusd, 7);
        cr_expect_eq(aj_meter_used(m, AJ_CAP_COST_USD, 0), 7);
        aj_meter_free(m);
}

/* A price floor per token (a routing's dearest endpoint: OpenRouter's provider.max_price)
 * prices the tokens at the dearer of it and the model's price. */
Test(meter, price_floor_per_token)
{
        AjMeter *m = meter_with(AJ_CAP_COST_USD, 1000000000000ULL);
        cr_assert_eq(aj_meter_set_price(m, "x", 1e-6, 2e-6, -1), 0);
        AjMeterReservation res = {};
        AjMeterDecision d;
        AjMeterUsage u = {
                .model = "x", .input = 100, .output = 10, .input_price_floor = 5000000, .output_price_floor = 1000000
        };
        cr_assert_eq(aj_meter_reserve_usage(m, &u, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_ALLOW);
        cr_expect_eq(res.amount[AJ_CAP_COST_USD], 100 * 5000000ULL + 10 * 2000000ULL);
        aj_meter_settle(m, &res, false);
        aj_meter_free(m);
}
