/* SPDX-License-Identifier: Apache-2.0 */
/* The schema of the broker keys: meters, tools, approvals, prices, on_breach, alert, and logs
 * (limits shared with src/meter.h). Pure. */

#include <math.h>
#include <string.h>

#include "config.h"
#include "meter.h"
#include "profile-internal.h"
#include "rollback.h"
#include "util/parse.h"

/* ---- broker: meters, tools, approvals, prices, on_breach, alert (limits shared with src/meter.h) ---- */

int check_int_range(Check *c, json_t *v, json_int_t min, json_int_t max)
{
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an integer from %lld to %lld, got %s", (long long)min,
                                  (long long)max, GOT(v));
        return 0;
}

static int check_meter_count(Check *c, json_t *v) { return check_int_range(c, v, 0, (json_int_t)AJ_CAP_MAX_COUNT); }
static int check_meter_per_min(Check *c, json_t *v) { return check_int_range(c, v, 0, (json_int_t)AJ_CAP_MAX_PER_MIN); }
static int check_meter_repeat(Check *c, json_t *v) { return check_int_range(c, v, 1, (json_int_t)AJ_CAP_MAX_REPEAT); }

static int check_meter_usd(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > AJ_CAP_MAX_USD)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a number of US dollars from 0 to 1000000, got %s",
                                  GOT(v));
        return 0;
}

int check_meters(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "tokens", check_meter_count },
                { "input_tokens", check_meter_count },
                { "output_tokens", check_meter_count },
                { "cost_usd", check_meter_usd },
                { "tool_calls", check_meter_count },
                { "tool_calls_per_min", check_meter_per_min },
                { "repeat_limit", check_meter_repeat },
                { "wall", check_duration },
                {},
        };
        return check_object(c, v, fields);
}

/* Tool and model names cross the jail boundary: short, printable, no spaces. */
static bool is_broker_name(const char *s)
{
        if (!*s || strlen(s) > MAX_BROKER_NAME)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p <= 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static int check_tool_pattern(Check *c, json_t *v)
{
        if (!is_broker_name(json_string_value(v)))
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a tool name or a pattern with '*' (1 to 256 characters, no spaces or control "
                                  "characters), got %s",
                                  GOT(v));
        return 0;
}

static int check_tool_patterns(Check *c, json_t *v) { return check_string_array(c, v, check_tool_pattern); }

int check_tools(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "allow", check_tool_patterns },
                { "deny", check_tool_patterns },
                {},
        };
        return check_object(c, v, fields);
}

static int check_approval_timeout(Check *c, json_t *v)
{
        uint64_t ns;
        if (json_duration(v, &ns) < 0 || ns == 0 || ns > MAX_APPROVAL_TIMEOUT_NS)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a duration greater than 0 and at most \"7d\" such as \"15m\", got %s",
                                  GOT(v));
        return 0;
}

int check_approvals(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "tools", check_tool_patterns },
                { "timeout", check_approval_timeout },
                {},
        };
        return check_object(c, v, fields);
}

static int check_price_value(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected US dollars per token from 0 to 1 (such as 2.5e-6), got %s", GOT(v));
        return 0;
}

/* A web search the provider runs: billed per search, dollars rather than fractions of a cent. */
static int check_search_price_value(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected US dollars per search from 0 to 1 (such as 0.01), got %s", GOT(v));
        return 0;
}

/* A use of another tool the provider runs (prices.h AjToolFee): per call or container. */
static int check_tool_fee_value(Check *c, json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected US dollars per use from 0 to 1 (such as 0.03), got %s",
                                  GOT(v));
        return 0;
}

/* The model's maximum output (prices.h AjPrice.max_output): a whole number of tokens. */
static int check_max_output_tokens(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > AJ_PRICE_MAX_OUTPUT_TOKENS)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected the model's maximum output tokens, a whole number from 1 to %d, got %s",
                                  AJ_PRICE_MAX_OUTPUT_TOKENS, GOT(v));
        return 0;
}

static int check_price(Check *c, json_t *v)
{
        _Static_assert(AJ_TOOL_FEES == 6, "a field per fee below, named as aj_tool_fee_name()");
        static const Field fields[] = {
                { "input", check_price_value },
                { "output", check_price_value },
                { "cached_input", check_price_value },
                { "web_search", check_search_price_value },
                { "web_fetch", check_tool_fee_value },
                { "file_search", check_tool_fee_value },
                { "code_interpreter", check_tool_fee_value },
                { "image_generation", check_tool_fee_value },
                { "code_execution", check_tool_fee_value },
                { "file_parser", check_tool_fee_value },
                { "max_output_tokens", check_max_output_tokens },
                {},
        };
        int r = check_object(c, v, fields);
        if (r < 0)
                return r;
        if (!json_object_get(v, "input") || !json_object_get(v, "output"))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected both \"input\" and \"output\" (USD per token)");
        return 0;
}

int check_prices(Check *c, json_t *v)
{
        const char *key;
        json_t *value;

        if (!json_is_object(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an object of model names, got %s", GOT(v));
        if (json_object_size(v) > AJ_METER_MAX_PRICES)
                return check_fail(c, AJ_JSON_AT_VALUE, "too many entries (at most %d)", AJ_METER_MAX_PRICES);
        json_object_foreach (v, key, value) {
                check_push_key(c, key);
                int r = 0;
                if (!is_broker_name(key))
                        r = check_fail(c, AJ_JSON_AT_KEY,
                                       "invalid model name (1 to 256 characters, no spaces or control characters)");
                if (r >= 0)
                        r = check_price(c, value);
                check_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

int check_on_breach(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r >= 0 && !streq(json_string_value(v), "freeze") && !streq(json_string_value(v), "kill"))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"freeze\" or \"kill\", got %s", GOT(v));
        return r;
}

static int check_exec(Check *c, json_t *v)
{
        int r = check_string_array(c, v, NULL);
        if (r < 0 || json_array_size(v) == 0)
                return r;
        check_push_index(c, 0);
        const char *problem = path_problem(json_string_value(json_array_get(v, 0)), false);
        if (problem)
                r = check_fail(c, AJ_JSON_AT_VALUE, "the program: %s: %s", problem, GOT(json_array_get(v, 0)));
        check_pop(c);
        return r;
}

static int check_alert_timeout(Check *c, json_t *v)
{
        uint64_t ns;
        if (json_duration(v, &ns) < 0 || ns == 0 || ns > MAX_ALERT_TIMEOUT_NS)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a duration from \"1ms\" to \"1h\" such as \"10s\", got %s", GOT(v));
        return 0;
}

int check_alert(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "exec", check_exec },
                { "timeout", check_alert_timeout },
                {},
        };
        return check_object(c, v, fields);
}

static int check_rollback_timeout(Check *c, json_t *v)
{
        uint64_t ns;
        if (json_duration(v, &ns) < 0 || ns < AJ_ROLLBACK_TIMEOUT_MIN_NS || ns > AJ_ROLLBACK_TIMEOUT_MAX_NS)
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "expected a duration from \"1s\" to \"1h\" such as \"60s\", got %s", GOT(v));
        return 0;
}

/* The operator's handler of undo records, run on the host by `agentjail rollback --apply`. */
int check_rollback(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "exec", check_exec },
                { "timeout", check_rollback_timeout },
                {},
        };
        return check_object(c, v, fields);
}

static int check_log_bytes(Check *c, json_t *v, uint64_t min)
{
        uint64_t x;
        if (json_size(v, &x) < 0 || x < min || x > AJ_LOG_MAX_BYTES) {
                char lo[32];
                aj_format_size(min, lo, sizeof(lo));
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a size from \"%s\" to \"1T\" such as \"64M\", got %s",
                                  lo, GOT(v));
        }
        return 0;
}

static int check_output_bytes(Check *c, json_t *v) { return check_log_bytes(c, v, AJ_LOG_MIN_OUTPUT_BYTES); }
static int check_events_bytes(Check *c, json_t *v) { return check_log_bytes(c, v, AJ_LOG_MIN_EVENTS_BYTES); }

static int check_reports_per_sec(Check *c, json_t *v)
{
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > AJ_LOG_MAX_REPORTS_PER_SEC)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an integer from 1 to %d, got %s",
                                  AJ_LOG_MAX_REPORTS_PER_SEC, GOT(v));
        return 0;
}

int check_logs(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "output_bytes", check_output_bytes },
                { "events_bytes", check_events_bytes },
                { "reports_per_sec", check_reports_per_sec },
                {},
        };
        return check_object(c, v, fields);
}
