/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/key-paths.h"
#include "gateway/usage.h"
#include "../helpers/json-dom-shape.h"
#include "util/json-scan.h"
#include "meter.h"

static char *read_fixture(const char *name, size_t *ret_len)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/llm/%s", AJ_TEST_FIXTURES, name);
        FILE *f = fopen(path, "re");
        cr_assert_not_null(f, "fixture %s", path);
        char *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
        buf[n] = '\0';
        *ret_len = n;
        return buf;
}

typedef struct {
        AjLlmApi api;
        int status;
        const char *content_type;
        const char *request; /* NULL: none */
} Setup;

/* Everything the call found, as one string to compare runs with. */
static void summary(const AjLlmCall *c, char *out, size_t size)
{
        const AjLlmUsage *u = aj_llm_call_usage(c);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        int n = snprintf(out, size,
                         "model=%s in=%llu out=%llu cr=%llu cw=%llu reason=%llu counted=%llu bytes=%llu stop=%s "
                         "outcome=%s rep=%d/%d err=%s perr=%s charge=%llu/%llu/%llu/%llu/%d tools=%llu:",
                         u->response_model ?: "-", (unsigned long long)u->input_tokens,
                         (unsigned long long)u->output_tokens, (unsigned long long)u->cache_read_tokens,
                         (unsigned long long)u->cache_creation_tokens, (unsigned long long)u->reasoning_tokens,
                         (unsigned long long)u->counted_tokens, (unsigned long long)u->output_bytes,
                         u->stop_reason ?: "-", aj_llm_outcome_name(u->outcome), u->input_reported, u->output_reported,
                         u->error ?: "-", u->parse_error ?: "-", (unsigned long long)ch.input,
                         (unsigned long long)ch.output, (unsigned long long)ch.cache_read,
                         (unsigned long long)ch.cache_creation, ch.estimated, (unsigned long long)u->tool_calls_total);
        for (size_t i = 0; i < u->n_tool_calls && n > 0 && (size_t)n < size; i++)
                n += snprintf(out + n, size - (size_t)n, "%s#%s@%s,", u->tool_calls[i], u->tool_call_ids[i] ?: "-",
                              u->tool_args_sha256[i]);
}

/* Feeds `in` cut at `cut` (len: whole), or one byte at a time when bytewise. */
static AjLlmCall *feed(const Setup *s, const char *in, size_t len, size_t cut, bool bytewise)
{
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(s->api, &c), 0);
        if (s->request)
                cr_assert_eq(aj_llm_call_request(c, s->request, strlen(s->request)), 0);
        aj_llm_call_response_start(c, s->status, s->content_type);
        if (bytewise)
                for (size_t i = 0; i < len; i++)
                        cr_assert_eq(aj_llm_call_response_data(c, in + i, 1), 0);
        else {
                cr_assert_eq(aj_llm_call_response_data(c, in, cut), 0);
                cr_assert_eq(aj_llm_call_response_data(c, in + cut, len - cut), 0);
        }
        aj_llm_call_response_end(c);
        return c;
}

/* Parses `in` whole, at every two-chunk split and byte by byte: the same result each
 * time. Returns the call of the whole parse (free it). */
static AjLlmCall *parse_all_ways(const Setup *s, const char *in, size_t len)
{
        static char want[8192], got[8192];
        AjLlmCall *whole = feed(s, in, len, len, false);
        summary(whole, want, sizeof(want));
        for (size_t cut = 0; cut <= len; cut++) {
                AjLlmCall *c = feed(s, in, len, cut, false);
                summary(c, got, sizeof(got));
                cr_assert_str_eq(got, want, "split at %zu", cut);
                aj_llm_call_free(c);
        }
        AjLlmCall *c = feed(s, in, len, 0, true);
        summary(c, got, sizeof(got));
        cr_assert_str_eq(got, want, "byte by byte");
        aj_llm_call_free(c);
        return whole;
}

static AjLlmCall *fixture(const Setup *s, const char *name)
{
        size_t len;
        char *in = read_fixture(name, &len);
        AjLlmCall *c = parse_all_ways(s, in, len);
        if (strstr(name, ".sse")) {
                /* The same stream with "\r\n" line ends reads the same. */
                char *crlf = malloc(2 * len + 1);
                size_t n = 0;
                for (size_t i = 0; i < len; i++) {
                        if (in[i] == '\n')
                                crlf[n++] = '\r';
                        crlf[n++] = in[i];
                }
                AjLlmCall *c2 = feed(s, crlf, n, n / 2, false);
                char a[8192], b[8192];
                summary(c, a, sizeof(a));
                summary(c2, b, sizeof(b));
                cr_expect_str_eq(b, a, "CRLF %s", name);
                aj_llm_call_free(c2);
                free(crlf);
        }
        free(in);
        return c;
}

#define SSE "text/event-stream"
#define JSON "application/json"
#define ANTHROPIC_REQ                                                                 \
        "{\"model\": \"claude-sonnet-4-5\", \"max_tokens\": 1024, \"stream\": true, " \
        "\"messages\": [{\"role\": \"user\", \"content\": \"Why does the test fail?\"}]}"
#define CHAT_REQ                                                                                    \
        "{\"model\": \"gpt-4o\", \"stream\": true, \"stream_options\": {\"include_usage\": true}, " \
        "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}"

static const AjLlmUsage *U(const AjLlmCall *c) { return aj_llm_call_usage(c); }

/* Tool call i is `name` with the arguments `args` (JSON text): the digest the broker
 * computes for a tool call with those arguments. */
static void expect_tool(const AjLlmCall *c, size_t i, const char *name, const char *args)
{
        char want[AJ_SHA256_HEX_SIZE];
        json_t *v = json_loads(args, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(v, "%s", args);
        cr_assert_eq(aj_meter_args_digest(v, want), 0);
        json_decref(v);
        cr_assert_lt(i, U(c)->n_tool_calls);
        cr_expect_str_eq(U(c)->tool_calls[i], name);
        cr_expect_str_eq(U(c)->tool_args_sha256[i], want, "%s %s", name, args);
}

static void sha256_hex(const void *data, size_t len, char out[AJ_SHA256_HEX_SIZE])
{
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256(data, len, d);
        aj_sha256_hex(d, out);
}

Test(gateway_usage, anthropic_stream)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        AjLlmCall *c = fixture(&s, "anthropic-stream.sse");
        cr_expect_str_eq(U(c)->model, "claude-sonnet-4-5");
        cr_expect_str_eq(U(c)->response_model, "claude-sonnet-4-5-20250929");
        cr_expect_eq(U(c)->input_tokens, 472 + 2048 + 11520);
        cr_expect_eq(U(c)->cache_read_tokens, 11520);
        cr_expect_eq(U(c)->cache_creation_tokens, 2048);
        cr_expect_eq(U(c)->cache_creation_1h_tokens, 0);
        cr_expect_eq(U(c)->output_tokens, 38);
        cr_expect_str_eq(U(c)->stop_reason, "end_turn");
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input, 14040);
        cr_expect_eq(ch.output, 38);
        cr_expect_not(ch.estimated);
        aj_llm_call_free(c);
}

/* The web_search server tool runs at the provider, billed per search: its count (cumulative,
 * in the last message_delta) is kept for the cost; its blocks are not the agent's tool calls. */
Test(gateway_usage, anthropic_web_searches_counted)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        AjLlmCall *c = fixture(&s, "anthropic-web-search.sse");
        cr_expect_eq(U(c)->web_search_requests, 2);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        cr_expect_eq(U(c)->input_tokens, 9120);
        cr_expect_eq(U(c)->output_tokens, 91);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 2);
        json_t *ev = aj_llm_call_to_json(c);
        cr_expect_eq(json_integer_value(json_object_get(ev, "web_search_requests")), 2);
        json_decref(ev);
        aj_llm_call_free(c);
        /* Without searches the event has no such field. */
        c = fixture(&s, "anthropic-stream.sse");
        cr_expect_eq(U(c)->web_search_requests, 0);
        ev = aj_llm_call_to_json(c);
        cr_expect_null(json_object_get(ev, "web_search_requests"));
        json_decref(ev);
        aj_llm_call_free(c);
}

/* Responses: each web_search_call item is a search the provider billed, counted once
 * (output_item.added, or the body's output), and not an agent's tool call. */
Test(gateway_usage, openai_responses_web_search_calls_counted)
{
        static const char body[] =
                "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-test\","
                "\"output\":[{\"type\":\"web_search_call\",\"id\":\"ws_1\",\"status\":\"completed\"},"
                "{\"type\":\"web_search_call\",\"id\":\"ws_2\",\"status\":\"completed\"},"
                "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", NULL };
        AjLlmCall *c = parse_all_ways(&s, body, strlen(body));
        cr_expect_eq(U(c)->web_search_requests, 2);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        aj_llm_call_free(c);
        char sse[4096];
        snprintf(sse, sizeof(sse),
                 "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,"
                 "\"item\":{\"type\":\"web_search_call\",\"id\":\"ws_1\",\"status\":\"in_progress\"}}\n\n"
                 "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,"
                 "\"item\":{\"type\":\"web_search_call\",\"id\":\"ws_1\",\"status\":\"completed\"}}\n\n"
                 "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":%s}\n\n",
                 body);
        Setup st = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        c = parse_all_ways(&st, sse, strlen(sse));
        cr_expect_eq(U(c)->web_search_requests, 2,
                     "the added item, not again when done, and the completed response's other one");
        aj_llm_call_free(c);
}

/* A stream that ends before its usage (cut by the agent leaving, or by the provider) had
 * searches run all the same: each web_search block started is one, so leaving once they
 * ran did not make them free. A complete one is charged by its usage (a failed search is
 * not billed). */
Test(gateway_usage, anthropic_web_searches_of_a_cut_stream_are_counted)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        AjLlmCall *c = fixture(&s, "anthropic-web-search-cut.sse");
        cr_expect_eq(U(c)->web_search_requests, 2);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 2);
        aj_llm_call_free(c);
        /* Two blocks started, the usage says one was billed (the other failed): the usage. */
        size_t len;
        char *in = read_fixture("anthropic-web-search.sse", &len);
        const char *from = "\"server_tool_use\":{\"web_search_requests\":2}}";
        char *at = strstr(strstr(in, "event: message_delta"), from);
        cr_assert_not_null(at);
        at[strlen("\"server_tool_use\":{\"web_search_requests\":")] = '1';
        c = parse_all_ways(&s, in, len);
        cr_expect_eq(U(c)->web_search_requests, 1);
        aj_llm_call_free(c);
        free(in);
}

/* The provider's other tools billed per use: Anthropic's web fetches (the final usage's
 * web_fetch_requests; a stream cut before it, the web_fetch blocks started), the Responses
 * API's file searches and images (an item each) and code interpreter containers (each
 * container_id once, an item without one another). None is the agent's tool call. */
Test(gateway_usage, provider_tool_uses_counted)
{
        static const char body[] =
                "{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
                "\"content\":[{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_fetch\","
                "\"input\":{\"url\":\"https://example.com\"}},{\"type\":\"text\",\"text\":\"x\"}],"
                "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":10,\"output_tokens\":2,"
                "\"server_tool_use\":{\"web_search_requests\":0,\"web_fetch_requests\":2}}}";
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, "application/json", NULL };
        AjLlmCall *c = parse_all_ways(&s, body, strlen(body));
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_WEB_FETCH], 2, "the final usage's count");
        cr_expect_eq(U(c)->web_search_requests, 0);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_WEB_FETCH], 2);
        json_t *ev = aj_llm_call_to_json(c);
        cr_expect_eq(json_integer_value(json_object_get(ev, "web_fetch_requests")), 2);
        cr_expect_null(json_object_get(ev, "file_search_calls"));
        json_decref(ev);
        aj_llm_call_free(c);
        static const char cut[] =
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\","
                "\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"server_tool_use\":{\"web_fetch_requests\":0}}}}\n\n"
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_fetch\",\"input\":{}}}\n\n";
        Setup st = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        c = parse_all_ways(&st, cut, strlen(cut));
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_WEB_FETCH], 1, "the fetch started, billed though the stream was cut");
        aj_llm_call_free(c);

        static const char resp[] =
                "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-x\",\"output\":["
                "{\"type\":\"file_search_call\",\"id\":\"fs_1\",\"status\":\"completed\",\"queries\":[\"a\"]},"
                "{\"type\":\"file_search_call\",\"id\":\"fs_2\",\"status\":\"completed\",\"queries\":[\"b\"]},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\",\"status\":\"completed\",\"container_id\":\"cntr_a\"},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_2\",\"status\":\"completed\",\"container_id\":\"cntr_a\"},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_3\",\"status\":\"completed\",\"container_id\":\"cntr_b\"},"
                "{\"type\":\"image_generation_call\",\"id\":\"ig_1\",\"status\":\"completed\"},"
                "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        Setup sr = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", NULL };
        c = parse_all_ways(&sr, resp, strlen(resp));
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_FILE_SEARCH], 2);
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], 2, "two containers, three calls");
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_IMAGE_GENERATION], 1);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        ev = aj_llm_call_to_json(c);
        cr_expect_eq(json_integer_value(json_object_get(ev, "code_interpreter_containers")), 2);
        cr_expect_eq(json_integer_value(json_object_get(ev, "file_search_calls")), 2);
        cr_expect_eq(json_integer_value(json_object_get(ev, "image_generation_calls")), 1);
        json_decref(ev);
        aj_llm_call_free(c);
        /* Streamed: as the items are added, then the final response's list, not counted twice. */
        char sse[8192];
        snprintf(sse, sizeof(sse),
                 "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":2,"
                 "\"item\":{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\",\"status\":\"in_progress\","
                 "\"container_id\":\"cntr_a\"}}\n\n"
                 "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":3,"
                 "\"item\":{\"type\":\"code_interpreter_call\",\"id\":\"ci_2\",\"status\":\"in_progress\","
                 "\"container_id\":\"cntr_a\"}}\n\n"
                 "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,"
                 "\"item\":{\"type\":\"file_search_call\",\"id\":\"fs_1\",\"status\":\"in_progress\"}}\n\n"
                 "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":%s}\n\n",
                 resp);
        Setup ss = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        c = parse_all_ways(&ss, sse, strlen(sse));
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_FILE_SEARCH], 2, "the final list names more than were added");
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], 2);
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_IMAGE_GENERATION], 1);
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_tool_use_stream)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "anthropic-tool-use.sse");
        cr_expect_eq(U(c)->input_tokens, 1531);
        cr_expect_eq(U(c)->output_tokens, 189);
        cr_expect_str_eq(U(c)->stop_reason, "tool_use");
        cr_assert_eq(U(c)->n_tool_calls, 2);
        cr_expect_str_eq(U(c)->tool_calls[0], "get_weather");
        cr_expect_str_eq(U(c)->tool_calls[1], "get_time");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        cr_expect_str_eq(U(c)->tool_call_ids[1], "toolu_01A09q90qw90lq917835lq9");
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        /* The input_json_delta fragments, joined and parsed at content_block_stop. */
        expect_tool(c, 0, "get_weather", "{\"unit\": \"fahrenheit\", \"location\": \"San Francisco, CA\"}");
        expect_tool(c, 1, "get_time", "{\"timezone\":\"America/Los_Angeles\"}");
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_output_is_cumulative_never_added)
{
        const char *in =
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\","
                "\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":400,\"cache_creation\":"
                "{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":300},\"output_tokens\":1}}}\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},"
                "\"usage\":{\"output_tokens\":40}}\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                "\"end_turn\"},\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":100,"
                "\"output_tokens\":87}}\n\n"
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        AjLlmCall *c = parse_all_ways(&s, in, strlen(in));
        cr_expect_eq(U(c)->output_tokens, 87);
        cr_expect_eq(U(c)->input_tokens, 507, "a later input count replaces the first");
        cr_expect_eq(U(c)->cache_read_tokens, 100);
        cr_expect_eq(U(c)->cache_creation_tokens, 400);
        cr_expect_eq(U(c)->cache_creation_1h_tokens, 300, "hour-long cache writes are priced apart");
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_cut_stream_is_charged_what_was_sent)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        AjLlmCall *c = fixture(&s, "anthropic-cut.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_CUT);
        cr_expect(U(c)->input_reported);
        cr_expect_not(U(c)->output_reported);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input, 14040, "message_start's input is known");
        size_t text = strlen("The test fails because `parse_duration` returns seconds while the caller expects "
                             "milliseconds. Multiply by 1000");
        cr_expect_eq(U(c)->output_bytes, text);
        cr_expect_eq(ch.output, (text + 2) / 3);
        cr_expect(ch.estimated);
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_error_event_mid_stream)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "anthropic-stream-error.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_FAILED);
        cr_expect_str_eq(U(c)->error, "overloaded_error: Overloaded");
        cr_expect_eq(U(c)->input_tokens, 96);
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_whole_body)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, JSON, NULL };
        AjLlmCall *c = fixture(&s, "anthropic.json");
        cr_expect_str_eq(U(c)->response_model, "claude-sonnet-4-5-20250929");
        cr_expect_eq(U(c)->input_tokens, 384 + 1024);
        cr_expect_eq(U(c)->cache_read_tokens, 1024);
        cr_expect_eq(U(c)->output_tokens, 58);
        cr_expect_str_eq(U(c)->stop_reason, "tool_use");
        cr_assert_eq(U(c)->n_tool_calls, 1);
        cr_expect_str_eq(U(c)->tool_calls[0], "get_weather");
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        expect_tool(c, 0, "get_weather", "{\"location\": \"San Francisco, CA\"}");
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_error_body_is_not_charged)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 429, JSON, ANTHROPIC_REQ };
        AjLlmCall *c = fixture(&s, "anthropic-error.json");
        cr_expect_eq(U(c)->outcome, AJ_LLM_FAILED);
        cr_expect(strncmp(U(c)->error, "rate_limit_error: This request", 30) == 0, "%s", U(c)->error);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input + ch.output, 0);
        aj_llm_call_free(c);
}

Test(gateway_usage, anthropic_count_tokens_is_free)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_COUNT_TOKENS, 200, JSON, NULL };
        AjLlmCall *c = fixture(&s, "anthropic-count-tokens.json");
        cr_expect_eq(U(c)->counted_tokens, 2095);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input + ch.output, 0);
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_chat_stream)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, CHAT_REQ };
        AjLlmCall *c = fixture(&s, "openai-chat-stream.sse");
        cr_expect_str_eq(U(c)->response_model, "gpt-4o-2024-08-06");
        cr_expect_eq(U(c)->input_tokens, 1117);
        cr_expect_eq(U(c)->cache_read_tokens, 1024);
        cr_expect_eq(U(c)->output_tokens, 10);
        cr_expect_str_eq(U(c)->stop_reason, "stop");
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_chat_tool_calls_stream_counted_once_each)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-chat-tools-stream.sse");
        cr_assert_eq(U(c)->tool_calls_total, 2);
        cr_expect_str_eq(U(c)->tool_calls[0], "get_weather");
        cr_expect_str_eq(U(c)->tool_calls[1], "send_email");
        /* The id comes in a call's first chunk only. */
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_DdmO9pD3xa9XTPNJ32zg2hcA");
        cr_expect_str_eq(U(c)->tool_call_ids[1], "call_ABC123xyzPQR789");
        /* Each call's function.arguments fragments, per index, parsed at the end. */
        expect_tool(c, 0, "get_weather", "{\"location\":\"Paris, France\"}");
        expect_tool(c, 1, "send_email", "{\"body\":\"Hi\",\"to\":\"bob@example.com\"}");
        cr_expect_eq(U(c)->output_tokens, 57);
        cr_expect_str_eq(U(c)->stop_reason, "tool_calls");
        aj_llm_call_free(c);
}

/* Tool calls streamed without "index" (some OpenAI-compatible servers): each chunk naming a
 * call (a new id, or a name without one) is the next call, a chunk with neither continues the
 * last; keyed as index 0 they were counted as one. */
Test(gateway_usage, openai_chat_tool_calls_stream_without_index)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-chat-tools-stream-noindex.sse");
        cr_assert_eq(U(c)->tool_calls_total, 3);
        cr_assert_eq(U(c)->n_tool_calls, 3);
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_1");
        cr_expect_str_eq(U(c)->tool_call_ids[1], "call_2");
        cr_expect_null(U(c)->tool_call_ids[2]);
        expect_tool(c, 0, "get_weather", "{\"location\":\"Paris\"}");
        expect_tool(c, 1, "get_weather", "{\"location\":\"Rome\"}");
        expect_tool(c, 2, "send_email", "{\"to\":\"bob@example.com\"}");
        cr_expect_eq(U(c)->output_tokens, 40);
        aj_llm_call_free(c);
}

/* Ollama streams every call whole with "index": 0 (ollama#15457): a chunk whose id is not
 * that of the call at its index is the next call, and chunks without an id go on with it. */
Test(gateway_usage, openai_chat_tool_calls_stream_reusing_an_index)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-chat-tools-stream-index-reused.sse");
        cr_assert_eq(U(c)->tool_calls_total, 4);
        cr_assert_eq(U(c)->n_tool_calls, 4);
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_a1");
        cr_expect_str_eq(U(c)->tool_call_ids[3], "call_d4");
        expect_tool(c, 0, "file_write", "{\"filePath\":\"hello.py\",\"content\":\"print(\\\"hello\\\")\"}");
        expect_tool(c, 1, "file_write", "{\"filePath\":\"world.py\",\"content\":\"print(\\\"world\\\")\"}");
        expect_tool(c, 2, "run_shell", "{\"cmd\":\"ls\"}");
        expect_tool(c, 3, "run_shell", "{\"cmd\":\"pwd\"}");
        for (size_t i = 0; i < 4; i++)
                cr_expect(aj_llm_call_tool_done(c, i), "call %zu is whole", i);
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_chat_cut_stream_is_estimated)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, CHAT_REQ };
        AjLlmCall *c = fixture(&s, "openai-chat-cut.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_CUT);
        cr_expect_not(U(c)->input_reported);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input, U(c)->prompt_estimate);
        cr_expect_gt(ch.input, 0);
        cr_expect_eq(U(c)->output_bytes, strlen("Hello! How can I help you today"));
        cr_expect_eq(ch.output, 11);
        cr_expect(ch.estimated);
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_chat_whole_body)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, "application/json; charset=utf-8", NULL };
        AjLlmCall *c = fixture(&s, "openai-chat.json");
        cr_expect_str_eq(U(c)->response_model, "o4-mini-2025-04-16");
        cr_expect_eq(U(c)->input_tokens, 2006);
        cr_expect_eq(U(c)->cache_read_tokens, 1920);
        cr_expect_eq(U(c)->output_tokens, 300);
        cr_expect_eq(U(c)->reasoning_tokens, 192);
        cr_assert_eq(U(c)->n_tool_calls, 1);
        cr_expect_str_eq(U(c)->tool_calls[0], "run_tests");
        expect_tool(c, 0, "run_tests", "{\"path\": \"tests/\"}");
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_error_body)
{
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 400, JSON, CHAT_REQ };
        AjLlmCall *c = fixture(&s, "openai-error.json");
        cr_expect_eq(U(c)->outcome, AJ_LLM_FAILED);
        cr_expect(strncmp(U(c)->error, "context_length_exceeded: This model's", 37) == 0, "%s", U(c)->error);
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_responses_stream)
{
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-responses-stream.sse");
        cr_expect_str_eq(U(c)->response_model, "o3-2025-04-16");
        cr_expect_eq(U(c)->input_tokens, 2214);
        cr_expect_eq(U(c)->cache_read_tokens, 1536);
        cr_expect_eq(U(c)->output_tokens, 517);
        cr_expect_eq(U(c)->reasoning_tokens, 448);
        cr_expect_str_eq(U(c)->stop_reason, "completed");
        cr_assert_eq(U(c)->tool_calls_total, 1, "added once, not again when done or completed");
        cr_expect_str_eq(U(c)->tool_calls[0], "read_file");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_12dmwGNyZ2DTXPMvfvzvA2Dj");
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        /* The canonical form, pinned: sha256 of {"path":"src/main.c"}. */
        cr_expect_str_eq(U(c)->tool_args_sha256[0], "9ab3d36541dbacfe77809f4d829d3de07ab98a052f659b3d98ef7e0db3bda489");
        aj_llm_call_free(c);
}

Test(gateway_usage, openai_responses_whole_body)
{
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, JSON, NULL };
        AjLlmCall *c = fixture(&s, "openai-responses.json");
        cr_expect_eq(U(c)->input_tokens, 2214);
        cr_expect_eq(U(c)->output_tokens, 517);
        cr_expect_eq(U(c)->tool_calls_total, 1);
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        expect_tool(c, 0, "read_file", "{\"path\":\"src/main.c\"}");
        aj_llm_call_free(c);
}

Test(gateway_usage, responses_tool_arguments_split_across_deltas)
{
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-responses-tools-stream.sse");
        cr_assert_eq(U(c)->tool_calls_total, 2);
        /* A delta ends inside an escape ("\\" then "\"hi..."): the fragments are joined as text. */
        expect_tool(c, 0, "run_command", "{\"cwd\":\"/work\",\"cmd\":\"echo \\\"hi\\\"\"}");
        expect_tool(c, 1, "read_file", "{\"lines\":[1,40],\"path\":\"src/main.c\"}");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_Q2x9mB7kL4pT1vN8rC3sD6fH");
        cr_expect_str_eq(U(c)->tool_call_ids[1], "call_Z7y6xW5vU4tS3rQ2pO1nM0lK");
        cr_expect_eq(U(c)->output_tokens, 96);
        aj_llm_call_free(c);
}

Test(gateway_usage, tool_arguments_of_a_cut_stream_are_digested_as_sent)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "anthropic-tool-use-cut.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_CUT);
        cr_assert_eq(U(c)->n_tool_calls, 1);
        /* Not JSON (cut): the digest of the bytes. */
        const char *sent = "{\"command\": \"make test\", \"timeo";
        char want[AJ_SHA256_HEX_SIZE];
        sha256_hex(sent, strlen(sent), want);
        cr_expect_str_eq(U(c)->tool_args_sha256[0], want);
        aj_llm_call_free(c);
}

/* The same arguments however written, in any API, are one key; others are another. */
Test(gateway_usage, same_call_same_digest_different_arguments_another)
{
        const char *chat =
                "{\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"tool_calls\":["
                "{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1,\\\"b\\\":[true,null]}\"}},"
                "{\"function\":{\"name\":\"f\",\"arguments\":\" { \\\"b\\\" : [true, null], \\\"a\\\" : 1 }\"}},"
                "{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":2,\\\"b\\\":[true,null]}\"}},"
                "{\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}},"
                "{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1,\\\"a\\\":1}\"}}"
                "]}}]}";
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, JSON, NULL };
        AjLlmCall *c = parse_all_ways(&s, chat, strlen(chat));
        cr_assert_eq(U(c)->n_tool_calls, 5);
        expect_tool(c, 0, "f", "{\"b\":[true,null],\"a\":1}");
        cr_expect_str_eq(U(c)->tool_args_sha256[1], U(c)->tool_args_sha256[0], "key order and spaces do not matter");
        cr_expect_str_neq(U(c)->tool_args_sha256[2], U(c)->tool_args_sha256[0]);
        char raw[AJ_SHA256_HEX_SIZE];
        sha256_hex("not json", 8, raw);
        cr_expect_str_eq(U(c)->tool_args_sha256[3], raw, "unparseable: the bytes");
        sha256_hex("{\"a\":1,\"a\":1}", 13, raw);
        cr_expect_str_eq(U(c)->tool_args_sha256[4], raw, "a repeated key: the bytes");

        /* The same call from Anthropic (its input is an object) is the same key. */
        const char *msg = "{\"model\":\"m\",\"content\":[{\"type\":\"tool_use\",\"name\":\"f\",\"input\":"
                          "{\"b\":[true,null],\"a\":1}}],\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}";
        Setup a = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, JSON, NULL };
        AjLlmCall *c2 = parse_all_ways(&a, msg, strlen(msg));
        cr_assert_eq(U(c2)->n_tool_calls, 1);
        cr_expect_str_eq(U(c2)->tool_args_sha256[0], U(c)->tool_args_sha256[0]);
        aj_llm_call_free(c2);
        aj_llm_call_free(c);
}

/* An Anthropic stream of one tool call whose arguments are {"data":"xxx..."} with `n` x's. */
static char *long_arguments_stream(size_t n, size_t *ret_len)
{
        size_t cap = n + 65536;
        char *out = malloc(cap), *x = malloc(n + 1);
        memset(x, 'x', n);
        x[n] = '\0';
        size_t len = (size_t)
                snprintf(out, cap,
                         "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                         "\"content_block\":{\"type\":\"tool_use\",\"name\":\"w\",\"input\":{}}}\n\n"
                         "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                         "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"data\\\":\\\"\"}}\n\n");
        for (size_t off = 0; off < n; off += 65536) {
                size_t k = n - off < 65536 ? n - off : 65536;
                len += (size_t)
                        snprintf(out + len, cap - len,
                                 "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                                 "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"%.*s\"}}\n\n",
                                 (int)k, x + off);
        }
        len += (size_t)snprintf(out + len, cap - len,
                                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                                "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"}\"}}\n\n"
                                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
        free(x);
        *ret_len = len;
        return out;
}

Test(gateway_usage, tool_arguments_past_the_cap_are_digested_with_a_marker)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        size_t n = AJ_LLM_MAX_TOOL_ARGS + 1000, len;
        char *in = long_arguments_stream(n, &len);
        AjLlmCall *c = feed(&s, in, len, len / 3, false), *again = feed(&s, in, len, len / 2, false);
        cr_assert_eq(U(c)->n_tool_calls, 1);
        cr_expect_str_eq(U(again)->tool_args_sha256[0], U(c)->tool_args_sha256[0], "the same call, the same digest");
        /* The first AJ_LLM_MAX_TOOL_ARGS bytes of {"data":"xxx...x"}, then the marker. */
        size_t total = n + strlen("{\"data\":\"\"}");
        char *kept = malloc(AJ_LLM_MAX_TOOL_ARGS + 80);
        memcpy(kept, "{\"data\":\"", 9);
        memset(kept + 9, 'x', AJ_LLM_MAX_TOOL_ARGS - 9);
        int m = snprintf(kept + AJ_LLM_MAX_TOOL_ARGS, 80, "%cagentjail: cut at %u of %zu bytes", '\0',
                         AJ_LLM_MAX_TOOL_ARGS, total);
        char want[AJ_SHA256_HEX_SIZE];
        sha256_hex(kept, AJ_LLM_MAX_TOOL_ARGS + (size_t)m, want);
        cr_expect_str_eq(U(c)->tool_args_sha256[0], want);
        free(kept);
        aj_llm_call_free(c);
        aj_llm_call_free(again);
        free(in);

        /* Under the cap the same stream is parsed: the broker's digest. */
        in = long_arguments_stream(1000, &len);
        c = feed(&s, in, len, len / 2, false);
        char *args = malloc(1100);
        snprintf(args, 1100, "{\"data\":\"%01000d\"}", 0);
        memset(args + 9, 'x', 1000);
        expect_tool(c, 0, "w", args);
        free(args);
        aj_llm_call_free(c);
        free(in);
}

Test(gateway_usage, openai_responses_incomplete_and_failed)
{
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "openai-responses-incomplete.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_INCOMPLETE);
        cr_expect_str_eq(U(c)->stop_reason, "max_output_tokens");
        cr_expect_eq(U(c)->output_tokens, 64);
        cr_expect_eq(U(c)->reasoning_tokens, 48);
        aj_llm_call_free(c);
        c = fixture(&s, "openai-responses-failed.sse");
        cr_expect_eq(U(c)->outcome, AJ_LLM_FAILED);
        cr_expect_str_eq(U(c)->error, "server_error: The model failed to generate a response.");
        aj_llm_call_free(c);
}

Test(gateway_usage, malformed_event_is_named_never_fatal)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        AjLlmCall *c = fixture(&s, "anthropic-malformed.sse");
        cr_assert_not_null(U(c)->parse_error);
        cr_expect(strstr(U(c)->parse_error, "event 'message_delta'") != NULL, "%s", U(c)->parse_error);
        cr_expect_eq(U(c)->input_tokens, 10);
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE, "the events after it are still read");
        aj_llm_call_free(c);

        static const char *const bad[] = { "data: [1,2]\n\n", "data: \"x\"\n\n", "data: {\n\n", "data: \xff\xfe\n\n" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                Setup o = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
                c = parse_all_ways(&o, bad[i], strlen(bad[i]));
                cr_expect_not_null(U(c)->parse_error, "%s", bad[i]);
                cr_expect(strstr(U(c)->parse_error, "event 'message'") != NULL);
                aj_llm_call_free(c);
        }
}

Test(gateway_usage, oversized_event_and_body_are_refused)
{
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        aj_llm_call_response_start(c, 200, SSE);
        char chunk[65536];
        memset(chunk, 'x', sizeof(chunk));
        cr_assert_eq(aj_llm_call_response_data(c, "data: ", 6), 0);
        for (size_t i = 0; i < (AJ_LLM_MAX_EVENT / sizeof(chunk)) + 2; i++)
                cr_assert_eq(aj_llm_call_response_data(c, chunk, sizeof(chunk)), 0);
        aj_llm_call_response_end(c);
        cr_assert_not_null(U(c)->parse_error);
        cr_expect(strstr(U(c)->parse_error, "larger than") != NULL);
        cr_expect_eq(U(c)->outcome, AJ_LLM_CUT);
        aj_llm_call_free(c);

        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
        aj_llm_call_response_start(c, 200, JSON);
        for (size_t i = 0; i < (AJ_LLM_MAX_BODY / sizeof(chunk)) + 2; i++)
                cr_assert_eq(aj_llm_call_response_data(c, chunk, sizeof(chunk)), 0);
        aj_llm_call_response_end(c);
        cr_expect(strstr(U(c)->parse_error, "larger than") != NULL);
        aj_llm_call_free(c);
}

Test(gateway_usage, request_fields_and_prompt_estimate)
{
        static const struct {
                AjLlmApi api;
                const char *body;
                uint64_t max;
        } cases[] = {
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"max_tokens\":1024,\"stream\":true}", 1024 },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_tokens\":10,\"max_completion_tokens\":20}", 20 },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_tokens\":10}", 10 },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_output_tokens\":300}", 300 },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_output_tokens\":-1}", 0 },
                /* A server reads one or the other: the larger is the worst case. */
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_completion_tokens\":10,\"max_tokens\":20000}",
                  20000 },
                /* A real with no fraction is the number a lenient server reads (100000.0). */
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_tokens\":1e5}", 100000 },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"max_tokens\":4096.0}", 4096 },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_output_tokens\":null}", 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), 0);
                cr_expect_eq(U(c)->max_output_tokens, cases[i].max, "%s", cases[i].body);
                cr_expect_str_eq(U(c)->model, "m");
                aj_llm_call_free(c);
        }
        /* An image counts as AJ_LLM_BLOB_TOKENS, whatever its base64 size. */
        char body[8192];
        char blob[6000];
        memset(blob, 'A', sizeof(blob) - 1);
        blob[sizeof(blob) - 1] = '\0';
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                 "{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"%s\"}}]}]}",
                 blob);
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        cr_assert_eq(aj_llm_call_request(c, body, strlen(body)), 0);
        cr_expect_geq(U(c)->prompt_estimate, AJ_LLM_BLOB_TOKENS);
        cr_expect_lt(U(c)->prompt_estimate, AJ_LLM_BLOB_TOKENS + 100);
        cr_expect_eq(aj_llm_call_request(c, "{\"model\":", 9), -EINVAL);
        cr_expect(strstr(U(c)->parse_error, "request: invalid JSON") != NULL);
        aj_llm_call_free(c);
}

/* Only an image, document or audio part is estimated as AJ_LLM_BLOB_TOKENS: text the provider
 * reads as tokens counts its bytes wherever it is, also when it begins "data:", is the data of
 * a plain-text document, or sits in a tool's schema shaped like an image part (each was
 * reserved as one image: 12 KB of text as 1600 tokens, and 600 KB just the same). */
Test(gateway_usage, prompt_estimate_blobs_are_parts)
{
        static const struct {
                AjLlmApi api;
                const char *fmt;
                bool blob;
        } cases[] = {
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                  "{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"%s\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"data:image/png;base64,%s\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":"
                  "{\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;base64,%s\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                  "\"input_audio\":{\"data\":\"%s\",\"format\":\"wav\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                  "\"image_url\":\"data:image/jpeg;base64,%s\"},{\"type\":\"input_file\",\"file_data\":"
                  "\"data:application/pdf;base64,%s\"}]}]}",
                  true },
                /* An image or file given by URL or id is one too, not its few bytes. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                  "{\"type\":\"url\",\"url\":\"https://example.com/\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                  "\"image_url\":{\"url\":\"https://example.com/a.png\"}}]}]}",
                  true },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                  "\"file_id\":\"file-1\"}]}]}",
                  true },
                /* Text. */
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"data: %s\"}]}", false },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"data:image/png;base64,%s\"}]}",
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\","
                  "\"source\":{\"type\":\"text\",\"media_type\":\"text/plain\",\"data\":\"%s\"}}]}]}",
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"system\":[{\"type\":\"text\",\"text\":\"x\",\"source\":{\"type\":\"base64\","
                  "\"data\":\"%s\"}}],\"messages\":[]}",
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                  "\"parameters\":{\"type\":\"object\",\"image_url\":{\"url\":\"data:image/png;base64,%s\"}}}}]}",
                  false },
        };
        char text[12001];
        memset(text, 'A', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                /* Each %s of the case is the text. */
                char body[32768];
                size_t n = 0;
                for (const char *f = cases[i].fmt; *f; f++) {
                        if (f[0] == '%' && f[1] == 's') {
                                n += (size_t)snprintf(body + n, sizeof(body) - n, "%s", text);
                                f++;
                        } else
                                body[n++] = *f;
                }
                body[n] = '\0';
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, body, strlen(body)), 0, "case %zu", i);
                uint64_t e = U(c)->prompt_estimate;
                if (cases[i].blob)
                        cr_expect(e >= AJ_LLM_BLOB_TOKENS && e < 2 * AJ_LLM_BLOB_TOKENS + 100, "case %zu: %llu", i,
                                  (unsigned long long)e);
                else
                        cr_expect_geq(e, sizeof(text) / AJ_LLM_BYTES_PER_TOKEN, "case %zu: %llu", i,
                                      (unsigned long long)e);
                aj_llm_call_free(c);
        }
}

/* An output limit the provider might read as a number but the gateway could not (a string,
 * a fraction) is refused, naming it: reserved as "no limit" (32000) it let a lenient server
 * generate "1e6" or "200000" tokens past a cap that would have refused the request. */
Test(gateway_usage, request_output_limit_unreadable)
{
        static const struct {
                AjLlmApi api;
                const char *body, *key;
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_tokens\":\"200000\"}", "max_tokens" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"max_tokens\":10,\"max_completion_tokens\":1.5}",
                  "max_completion_tokens" },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"max_tokens\":true}", "max_tokens" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_output_tokens\":[100]}", "max_output_tokens" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_output_tokens\":1e300}", "max_output_tokens" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                char want[64];
                snprintf(want, sizeof(want), "\"%s\" must be a whole number", cases[i].key);
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), -EINVAL, "%s",
                             cases[i].body);
                cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, want), "%s: %s", cases[i].body,
                          U(c)->parse_error ? U(c)->parse_error : "(none)");
                aj_llm_call_free(c);
        }
}

/* The answers a request asks for ("n", "best_of") multiply its worst case (the supervisor
 * reserves each of them at the output limit); what the provider might read as a count but
 * is not a positive whole number is refused. "background" is read as the provider might. */
Test(gateway_usage, request_choices_and_background)
{
        static const struct {
                const char *body;
                int r;
                uint64_t choices;
                bool background;
        } cases[] = {
                { "{\"model\":\"m\"}", 0, 1, false },
                { "{\"model\":\"m\",\"n\":null,\"background\":null}", 0, 1, false },
                { "{\"model\":\"m\",\"n\":100}", 0, 100, false },
                { "{\"model\":\"m\",\"n\":3.0}", 0, 3, false },
                { "{\"model\":\"m\",\"n\":2,\"best_of\":5}", 0, 5, false },
                { "{\"model\":\"m\",\"n\":\"100\"}", -EINVAL, 0, false },
                { "{\"model\":\"m\",\"n\":0}", -EINVAL, 0, false },
                { "{\"model\":\"m\",\"n\":2.5}", -EINVAL, 0, false },
                { "{\"model\":\"m\",\"best_of\":[4]}", -EINVAL, 0, false },
                { "{\"model\":\"m\",\"background\":false}", 0, 1, false },
                { "{\"model\":\"m\",\"background\":true}", 0, 1, true },
                { "{\"model\":\"m\",\"background\":\"true\"}", 0, 1, true },
                { "{\"model\":\"m\",\"background\":1}", 0, 1, true },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), cases[i].r, "%s",
                             cases[i].body);
                if (cases[i].r == 0) {
                        cr_expect_eq(U(c)->choices, cases[i].choices, "%s", cases[i].body);
                        cr_expect_eq(U(c)->background, cases[i].background, "%s", cases[i].body);
                } else
                        cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, "must be a positive whole number"),
                                  "%s: %s", cases[i].body, U(c)->parse_error ? U(c)->parse_error : "(none)");
                aj_llm_call_free(c);
        }
}

/* The web searches a request allows, for its reservation: each Anthropic web search tool's
 * max_uses (summed over the tools, any version of the type, its case too), a tool without a
 * bound (no max_uses, null, 0, negative; the Responses API's tools have none) unbounded
 * unless the Responses API's max_tool_calls bounds every built-in tool's calls, a Chat
 * search (web_search_options, a search model) one; a bound the provider might read as a
 * number but that is not a whole one is refused, naming it. */
/* The provider's tools billed per use that a request offers, by type (any version and
 * case), whatever the API, and the uses reserved of each (llm-meter.c): an Anthropic
 * web_fetch tool's max_uses (summed; none, 0 or less: AJ_LLM_DEFAULT_TOOL_USES; not a whole
 * number: refused, naming it), one of every other tool; a stored prompt (the Responses
 * API's "prompt") one of each Responses tool; a code interpreter without a container id is
 * one the provider starts itself. */
Test(gateway_usage, request_tools_billed_per_use_offered)
{
        static const struct {
                AjLlmApi api;
                const char *body;
                int r;
                uint64_t offered[AJ_TOOL_FEES];
                bool container_auto, stored_prompt;
        } cases[] = {
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}",
                  0,
                  {} },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"file_search\",\"vector_store_ids\":[\"v\"]},"
                  "{\"type\":\"image_generation\"},{\"type\":\"Code_Interpreter\",\"container\":{\"type\":\"auto\"}}]}",
                  0,
                  { [AJ_TOOL_FEE_FILE_SEARCH] = 1, [AJ_TOOL_FEE_IMAGE_GENERATION] = 1, [AJ_TOOL_FEE_CODE_INTERPRETER] = 1 },
                  true },
                /* A container of the agent's own (made by /v1/containers): not started by the provider. */
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\",\"container\":\"cntr_1\"}]}",
                  0,
                  { [AJ_TOOL_FEE_CODE_INTERPRETER] = 1 } },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\"}]}",
                  0,
                  { [AJ_TOOL_FEE_CODE_INTERPRETER] = 1 },
                  true },
                /* Anthropic's web_fetch: its max_uses, read as web search's. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\"}]}",
                  0,
                  { [AJ_TOOL_FEE_WEB_FETCH] = AJ_LLM_DEFAULT_TOOL_USES } },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":50}]}",
                  0,
                  { [AJ_TOOL_FEE_WEB_FETCH] = 50 } },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":2},"
                  "{\"type\":\"WEB_FETCH_20260209\",\"name\":\"web_fetch\",\"max_uses\":3e0}]}",
                  0,
                  { [AJ_TOOL_FEE_WEB_FETCH] = 5 } },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":0}]}",
                  0,
                  { [AJ_TOOL_FEE_WEB_FETCH] = AJ_LLM_DEFAULT_TOOL_USES } },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":\"50\"}]}",
                  -EINVAL },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":1.5}]}",
                  -EINVAL },
                /* max_uses is the Messages API's: elsewhere a web_fetch tool is one use whatever it says. */
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch\",\"max_uses\":\"x\"}]}",
                  0,
                  { [AJ_TOOL_FEE_WEB_FETCH] = 1 } },
                /* Anthropic's code execution, any version. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"code_execution_20250825\",\"name\":\"code_execution\"}]}",
                  0,
                  { [AJ_TOOL_FEE_CODE_EXECUTION] = 1 } },
                /* A stored prompt may hold any Responses tool, a code interpreter whose container
                 * the provider starts (and bills) before the model runs among them. */
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"prompt\":{\"id\":\"pmpt_1\"},\"input\":\"x\"}",
                  0,
                  { [AJ_TOOL_FEE_FILE_SEARCH] = 1, [AJ_TOOL_FEE_IMAGE_GENERATION] = 1, [AJ_TOOL_FEE_CODE_INTERPRETER] = 1 },
                  true,
                  true },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"prompt\":null}", 0, {} },
                /* "prompt" is the Responses API's member only. */
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"prompt\":{\"id\":\"pmpt_1\"}}", 0, {} },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), cases[i].r, "%s",
                             cases[i].body);
                if (cases[i].r < 0) {
                        cr_expect(U(c)->parse_error &&
                                          strstr(U(c)->parse_error, "\"tools[].max_uses\" must be a whole"),
                                  "%s: %s", cases[i].body, U(c)->parse_error ?: "(none)");
                        aj_llm_call_free(c);
                        continue;
                }
                for (int f = 0; f < AJ_TOOL_FEES; f++)
                        cr_expect_eq(U(c)->tool_offered[f], cases[i].offered[f], "%s: %s: %llu", cases[i].body,
                                     aj_tool_fee_name(f), (unsigned long long)U(c)->tool_offered[f]);
                cr_expect_eq(U(c)->container_auto, cases[i].container_auto, "%s", cases[i].body);
                cr_expect_eq(U(c)->stored_prompt, cases[i].stored_prompt, "%s", cases[i].body);
                cr_expect_eq(U(c)->search_unbounded, cases[i].stored_prompt, "%s", cases[i].body);
                aj_llm_call_free(c);
        }
}

Test(gateway_usage, request_web_searches_allowed)
{
#define WS(extra) "{\"model\":\"m\",\"tools\":[{\"name\":\"get_weather\",\"input_schema\":{}}" extra "]}"
        static const struct {
                AjLlmApi api;
                const char *body;
                int r;
                uint64_t max;
                bool unbounded, chat;
        } cases[] = {
                { AJ_LLM_API_ANTHROPIC_MESSAGES, WS(""), 0, 0, false, false },
                /* Claude Code's WebSearch: max_uses 8. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":8}"), 0, 8, false,
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20260209\",\"name\":\"web_search\",\"max_uses\":3},"
                     "{\"type\":\"WEB_SEARCH_20250305\",\"name\":\"web_search\",\"max_uses\":4.0}"),
                  0, 7, false, false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}"), 0,
                  0, true, false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":null}"), 0, 0, true,
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":-1}"), 0, 0, true,
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":0}"), 0, 0, true, false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":1e15}"), 0,
                  1000000000000000ULL, false, false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":\"8\"}"), -EINVAL },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":2.5}"), -EINVAL },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":true}"), -EINVAL },
                /* Not a search tool: its max_uses bounds its own uses (request_tools_billed_per_use_offered). */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  WS(",{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\",\"max_uses\":2}"), 0, 0, false, false },
                /* OpenRouter's web plugin: max_results (default 5) results, whatever the API. */
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"openai/gpt-4o\",\"plugins\":[{\"id\":\"web\"}]}", 0, 5, false,
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"openai/gpt-4o\",\"plugins\":[{\"id\":\"file-parser\"},{\"id\":\"WEB\",\"max_results\":2}]}",
                  0, 2, false, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"openai/gpt-4o:online\"}", 0, 5, false, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"openai/gpt-4o:ONLINE:free\"}", 0, 5, false, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"openai/gpt-4o:onlinex\"}", 0, 0, false, false },
                /* :online is the plugin's shorthand, not documented as merged with a plugin given
                 * besides: both are reserved (it was the plugin's alone, 1, while 6 results could be
                 * billed). */
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"openai/gpt-4o:online\",\"plugins\":[{\"id\":\"web\",\"max_results\":1}]}", 0, 6, false,
                  false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"id\":\"web\",\"max_results\":0}]}", 0, 5,
                  false, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"openai/o4-mini\",\"plugins\":[{\"id\":\"web\",\"max_results\":3}]}", 0, 3, false,
                  false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"anthropic/claude-sonnet-4.5:online\"}", 0, 5, false,
                  false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"id\":\"web\",\"max_results\":\"3\"}]}",
                  -EINVAL },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"id\":\"web\",\"max_results\":2.5}]}",
                  -EINVAL },
                /* A stored prompt's web search: unbounded, unless max_tool_calls bounds it. */
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"prompt\":{\"id\":\"pmpt_1\"}}", 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_tool_calls\":2,\"prompt\":{\"id\":\"pmpt_1\"}}",
                  0, 2, false, false },
                { AJ_LLM_API_OPENAI_RESPONSES, WS(",{\"type\":\"web_search\"}"), 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES, WS(",{\"type\":\"web_search_preview_2025_03_11\"}"), 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"max_tool_calls\":3,\"tools\":[{\"type\":\"web_search\"}]}", 0, 3, false, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"max_tool_calls\":0,\"tools\":[{\"type\":\"web_search\"}]}", 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_tool_calls\":\"3\",\"tools\":[]}", -EINVAL },
                /* max_uses is Anthropic's: a Responses or Chat provider ignoring it searches
                 * unbounded, so it bounds nothing there (nor is its type checked). */
                { AJ_LLM_API_OPENAI_RESPONSES, WS(",{\"type\":\"web_search\",\"max_uses\":1}"), 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES, WS(",{\"type\":\"web_search\",\"max_uses\":\"x\"}"), 0, 0, true, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"max_tool_calls\":3,\"tools\":[{\"type\":\"web_search\",\"max_uses\":1}]}", 0, 3,
                  false, false },
                { AJ_LLM_API_OPENAI_CHAT, WS(",{\"type\":\"web_search\",\"max_uses\":1}"), 0, 0, true, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"gpt-4o\"}", 0, 0, false, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"gpt-4o\",\"web_search_options\":{}}", 0, 1, false, true },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"gpt-4o\",\"web_search_options\":null}", 0, 0, false, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"gpt-4o-search-preview\"}", 0, 1, false, true },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"gpt-4o-mini-search-preview-2025-03-11\"}", 0, 1, false, true },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"GPT-5-SEARCH-API\"}", 0, 1, false, true },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"o3-deep-research\"}", 0, 0, false, false },
                /* Responses has no search model of that kind: its searches are items. */
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"gpt-4o-search-preview\"}", 0, 0, false, false },
        };
#undef WS
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), cases[i].r, "%s: %s",
                             cases[i].body, U(c)->parse_error ?: "");
                if (cases[i].r == 0) {
                        cr_expect_eq(U(c)->max_searches, cases[i].max, "%s: %llu", cases[i].body,
                                     (unsigned long long)U(c)->max_searches);
                        cr_expect_eq(U(c)->search_unbounded, cases[i].unbounded, "%s", cases[i].body);
                        cr_expect_eq(U(c)->chat_search, cases[i].chat, "%s", cases[i].body);
                } else
                        cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, "must be a whole number") &&
                                          (strstr(U(c)->parse_error, "max_uses") ||
                                           strstr(U(c)->parse_error, "max_tool_calls") ||
                                           strstr(U(c)->parse_error, "plugins[].max_results")),
                                  "%s: %s", cases[i].body, U(c)->parse_error ? U(c)->parse_error : "(none)");
                aj_llm_call_free(c);
        }
        /* A tool repeating max_uses: the provider might read the other one. */
        const char *dup = "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\","
                          "\"max_uses\":1,\"max_uses\":100}]}";
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, dup, strlen(dup)), -EINVAL);
        cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, "duplicate"), "%s",
                  U(c)->parse_error ? U(c)->parse_error : "(none)");
        aj_llm_call_free(c);
}

/* A Chat Completions search reports no search count: an answer is one search, whole or
 * streamed, cut or not; an error status none (not billed). */
Test(gateway_usage, chat_search_answered_is_one_search)
{
        static const char body[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-search-preview\","
                "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"x\"},"
                "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3}}";
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, "application/json", "{\"model\":\"gpt-4o-search-preview\"}" };
        AjLlmCall *c = parse_all_ways(&s, body, strlen(body));
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(U(c)->web_search_requests, 1);
        cr_expect_eq(ch.web_searches, 1);
        json_t *ev = aj_llm_call_to_json(c);
        cr_expect_eq(json_integer_value(json_object_get(ev, "web_search_requests")), 1);
        json_decref(ev);
        aj_llm_call_free(c);
        /* Streamed with web_search_options, and cut before any chunk: searched all the same. */
        static const char cut[] = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",";
        Setup st = { AJ_LLM_API_OPENAI_CHAT, 200, SSE,
                     "{\"model\":\"gpt-4o\",\"stream\":true,\"web_search_options\":{}}" };
        c = feed(&st, cut, strlen(cut), strlen(cut), false);
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 1);
        aj_llm_call_free(c);
        /* An error is not billed. */
        Setup se = { AJ_LLM_API_OPENAI_CHAT, 400, "application/json", "{\"model\":\"gpt-4o-search-preview\"}" };
        static const char err[] = "{\"error\":{\"message\":\"no\",\"type\":\"invalid_request_error\"}}";
        c = feed(&se, err, strlen(err), strlen(err), false);
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 0);
        cr_expect_eq(U(c)->web_search_requests, 0);
        aj_llm_call_free(c);
        /* Another model without web_search_options: no search. */
        Setup sn = { AJ_LLM_API_OPENAI_CHAT, 200, "application/json", "{\"model\":\"gpt-4o\"}" };
        c = parse_all_ways(&sn, body, strlen(body));
        cr_expect_eq(U(c)->web_search_requests, 0);
        aj_llm_call_free(c);
}

/* web_search_options on a model that may not search: a whole answer says so by a
 * url_citation annotation (one search), none is no search; a stream is one search all
 * the same (OpenAI's search models stream without annotations), a search model's answer
 * always. */
Test(gateway_usage, chat_search_counted_by_its_annotations)
{
#define CHAT_BODY(annotations)                                                                                \
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":" \
        "{\"role\":\"assistant\",\"content\":\"x\"" annotations "},\"finish_reason\":\"stop\"}],"             \
        "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3}}"
        static const char none[] = CHAT_BODY("");
        static const char cited[] = CHAT_BODY(",\"annotations\":[{\"type\":\"url_citation\",\"url_citation\":"
                                              "{\"url\":\"https://example.com\",\"start_index\":0,\"end_index\":1}}]");
        static const char other[] = CHAT_BODY(",\"annotations\":[{\"type\":\"file_citation\"}]");
#undef CHAT_BODY
        static const struct {
                const char *request, *body;
                uint64_t searches;
        } cases[] = {
                { "{\"model\":\"m\",\"web_search_options\":{}}", none, 0 },
                { "{\"model\":\"m\",\"web_search_options\":{}}", other, 0 },
                { "{\"model\":\"m\",\"web_search_options\":{}}", cited, 1 },
                { "{\"model\":\"gpt-4o-search-preview\"}", none, 1 },
                { "{\"model\":\"gpt-4o-search-preview\",\"web_search_options\":{}}", cited, 1 },
                { "{\"model\":\"m\"}", cited, 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, "application/json", cases[i].request };
                AjLlmCall *c = parse_all_ways(&s, cases[i].body, strlen(cases[i].body));
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.web_searches, cases[i].searches, "%s: %llu", cases[i].request,
                             (unsigned long long)ch.web_searches);
                /* The reservation is kept whatever the answer: one search. */
                cr_expect_eq(U(c)->max_searches, strstr(cases[i].request, "search") ? 1 : 0, "%s", cases[i].request);
                aj_llm_call_free(c);
        }
        /* Streamed, without an annotation: one search. */
        static const char sse[] =
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n"
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],"
                "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        Setup st = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, "{\"model\":\"m\",\"stream\":true,\"web_search_options\":{}}" };
        AjLlmCall *c = parse_all_ways(&st, sse, strlen(sse));
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 1);
        aj_llm_call_free(c);
}

/* OpenRouter's web plugin bills each result, up to max_results, and the usage does not say
 * how many: an answer is charged them all (as searches, at the model's web_search fee); an
 * error status none. */
Test(gateway_usage, web_plugin_answer_is_charged_its_results)
{
        static const char body[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"openai/gpt-4o\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\",\"annotations\":[{\"type\":\"url_citation\","
                "\"url_citation\":{\"url\":\"https://example.com\"}}]},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3,\"cost\":0.02}}";
        static const struct {
                const char *request;
                int status;
                uint64_t searches;
        } cases[] = {
                { "{\"model\":\"openai/gpt-4o:online\"}", 200, 5 },
                { "{\"model\":\"openai/gpt-4o\",\"plugins\":[{\"id\":\"web\",\"max_results\":3}]}", 200, 3 },
                { "{\"model\":\"openai/gpt-4o:online\",\"plugins\":[{\"id\":\"web\",\"max_results\":3}]}", 200, 8 },
                { "{\"model\":\"openai/gpt-4o:online\"}", 402, 0 },
                { "{\"model\":\"openai/gpt-4o\"}", 200, 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_CHAT, cases[i].status, "application/json", cases[i].request };
                AjLlmCall *c = feed(&s, body, strlen(body), strlen(body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.web_searches, cases[i].searches, "%s %d: %llu", cases[i].request, cases[i].status,
                             (unsigned long long)ch.web_searches);
                json_t *ev = aj_llm_call_to_json(c);
                cr_expect_eq(json_integer_value(json_object_get(ev, "web_search_requests")),
                             (json_int_t)cases[i].searches);
                json_decref(ev);
                aj_llm_call_free(c);
        }
        /* A stream cut at once: the plugin searched before the model answered. */
        static const char cut[] = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",";
        Setup st = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, "{\"model\":\"x/y:online\",\"stream\":true}" };
        AjLlmCall *c = feed(&st, cut, strlen(cut), 3, false);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 5);
        aj_llm_call_free(c);
}

/* OpenRouter may answer with a model the request does not name: its "models" fallbacks (the
 * agent can make the first fail: a prompt past its context) or a preset's, which may hold
 * server tools besides. Priced as "model", such a request was reserved and charged at the
 * cheap model's price while a dear one answered: it is flagged, and refused under a cap. */
Test(gateway_usage, request_letting_the_provider_choose_the_model)
{
        static const struct {
                const char *body;
                bool routed;
        } cases[] = {
                { "{\"model\":\"cheap/m\"}", false },
                { "{\"model\":\"cheap/m\",\"models\":[\"cheap/m\",\"anthropic/claude-opus-4\"]}", true },
                { "{\"model\":\"cheap/m\",\"models\":[\"cheap/m:online\"]}", true },
                { "{\"model\":\"cheap/m\",\"models\":[\"cheap/m\"]}", false },
                { "{\"model\":\"cheap/m\",\"models\":[]}", false },
                { "{\"model\":\"cheap/m\",\"models\":null}", false },
                { "{\"model\":\"cheap/m\",\"models\":\"anthropic/claude-opus-4\"}", true },
                { "{\"model\":\"@preset/mine\"}", true },
                { "{\"model\":\"cheap/m@PRESET/mine\"}", true },
                { "{\"model\":\"cheap/m\",\"preset\":\"mine\"}", true },
                /* OpenRouter's router models pick the model that answers: priced by their own name
                 * ($0), they were reserved and charged nothing while a dear model answered. */
                { "{\"model\":\"openrouter/auto\"}", true },
                { "{\"model\":\"OpenRouter/auto-code\"}", true },
                { "{\"model\":\"openrouter/auto-beta:online\"}", true },
                { "{\"model\":\"openrouterx/m\"}", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), 0, "%s: %s", cases[i].body,
                             U(c)->parse_error ?: "");
                cr_expect_eq(U(c)->model_routed, cases[i].routed, "%s", cases[i].body);
                aj_llm_call_free(c);
        }
        /* Spelled so that a provider ignoring case would read it and the gateway not. */
        static const char *const twins[] = { "{\"model\":\"m\",\"Models\":[\"x\"]}",
                                             "{\"model\":\"m\",\"PRESET\":\"p\"}" };
        for (size_t i = 0; i < ARRAY_SIZE(twins); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, twins[i], strlen(twins[i])), -EINVAL, "%s", twins[i]);
                aj_llm_call_free(c);
        }
}

/* OpenRouter's server tools ("openrouter:web_search", "openrouter:web_fetch"): any model may
 * call them 0 to N times a request, no member the gateway reads bounds them (max_uses nor
 * max_tool_calls), and the response does not report their uses. They were taken for no tool:
 * neither reserved nor charged. Now a namespaced tool is the tool its name says, reserved at
 * AJ_LLM_DEFAULT_TOOL_USES uses and charged them for an answer (none for an error status). */
Test(gateway_usage, namespaced_server_tools_are_reserved_and_charged)
{
        static const struct {
                AjLlmApi api;
                const char *request;
                uint64_t searches, fetches;
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"openai/gpt-4o\",\"tools\":[{\"type\":\"openrouter:web_search\"}]}",
                  AJ_LLM_DEFAULT_TOOL_USES, 0 },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"OpenRouter:Web_Search\",\"parameters\":{\"max_results\":3}},"
                  "{\"type\":\"openrouter:web_fetch\"}]}",
                  AJ_LLM_DEFAULT_TOOL_USES, AJ_LLM_DEFAULT_TOOL_USES },
                /* Anthropic's max_uses is not its bound, nor max_tool_calls. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:web_search\",\"max_uses\":1},"
                  "{\"type\":\"openrouter:web_fetch\",\"max_uses\":1}]}",
                  AJ_LLM_DEFAULT_TOOL_USES, AJ_LLM_DEFAULT_TOOL_USES },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"max_tool_calls\":1,\"tools\":[{\"type\":\"openrouter:web_search\"}]}",
                  AJ_LLM_DEFAULT_TOOL_USES, 0 },
                /* With a bounded search tool besides: both. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:web_search\"},"
                  "{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":2}]}",
                  AJ_LLM_DEFAULT_TOOL_USES + 2, 0 },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:datetime\"}]}", 0, 0 },
        };
        static const char body[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3}}";
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].request, strlen(cases[i].request)), 0, "%s: %s",
                             cases[i].request, U(c)->parse_error ?: "");
                cr_expect_eq(U(c)->max_searches, cases[i].searches, "%s: %llu", cases[i].request,
                             (unsigned long long)U(c)->max_searches);
                cr_expect_not(U(c)->search_unbounded, "%s", cases[i].request);
                cr_expect_eq(U(c)->tool_offered[AJ_TOOL_FEE_WEB_FETCH], cases[i].fetches, "%s", cases[i].request);
                aj_llm_call_free(c);
                if (cases[i].api != AJ_LLM_API_OPENAI_CHAT)
                        continue;
                for (int status = 200; status <= 500; status += 300) {
                        Setup s = { AJ_LLM_API_OPENAI_CHAT, status, "application/json", cases[i].request };
                        c = feed(&s, body, strlen(body), strlen(body), false);
                        AjLlmCharge ch;
                        aj_llm_call_charge(c, &ch);
                        cr_expect_eq(ch.web_searches, status == 200 ? cases[i].searches : 0, "%s %d: %llu",
                                     cases[i].request, status, (unsigned long long)ch.web_searches);
                        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_WEB_FETCH], status == 200 ? cases[i].fetches : 0, "%s %d",
                                     cases[i].request, status);
                        aj_llm_call_free(c);
                }
        }
}

/* A code interpreter whose container the provider starts itself ({"type": "auto"}, or none
 * given): an answer is billed a container whether or not an item names it, and the first
 * container named is that one; a container of the agent's (its id) only as items name it. */
Test(gateway_usage, auto_container_is_counted_once_named_or_not)
{
        static const char no_call[] =
                "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"m\",\"output\":["
                "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        static const char one[] =
                "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"m\",\"output\":["
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\",\"status\":\"completed\",\"container_id\":\"cntr_a\"},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_2\",\"status\":\"completed\",\"container_id\":\"cntr_a\"}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        static const char two[] =
                "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"m\",\"output\":["
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\",\"status\":\"completed\",\"container_id\":\"cntr_a\"},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci_2\",\"status\":\"completed\",\"container_id\":\"cntr_b\"}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        static const char auto_req[] =
                "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\",\"container\":{\"type\":\"auto\"}}]}";
        static const char own_req[] =
                "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\",\"container\":\"cntr_a\"}]}";
        static const struct {
                const char *request, *body;
                int status;
                uint64_t containers;
        } cases[] = {
                { auto_req, no_call, 200, 1 }, { auto_req, one, 200, 1 }, { auto_req, two, 200, 2 },
                { own_req, no_call, 200, 0 },  { own_req, one, 200, 1 },  { auto_req, no_call, 500, 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_RESPONSES, cases[i].status, "application/json", cases[i].request };
                AjLlmCall *c = cases[i].status == 200 ? parse_all_ways(&s, cases[i].body, strlen(cases[i].body))
                                                      : feed(&s, cases[i].body, strlen(cases[i].body), 0, false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], cases[i].containers, "case %zu: %llu", i,
                             (unsigned long long)ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER]);
                aj_llm_call_free(c);
        }
        /* Streamed: the item added names the container counted when the answer started. */
        static const char sse[] =
                "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,"
                "\"item\":{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\",\"status\":\"in_progress\","
                "\"container_id\":\"cntr_a\"}}\n\n"
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\","
                "\"status\":\"completed\",\"model\":\"m\",\"output\":[{\"type\":\"code_interpreter_call\",\"id\":\"ci_1\","
                "\"status\":\"completed\",\"container_id\":\"cntr_a\"}],\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}}\n\n";
        Setup st = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, auto_req };
        AjLlmCall *c = parse_all_ways(&st, sse, strlen(sse));
        cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], 1);
        aj_llm_call_free(c);
}

/* Anthropic's code execution is billed by container time, which its usage does not report:
 * a response that ran it (a code execution server tool block, or the message naming its
 * container) is one use, priced per use (code_execution_containers). */
Test(gateway_usage, anthropic_code_execution_counted_per_response)
{
#define MSG(container, content)                                                                          \
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\"" container \
        ",\"content\":[" content "],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5}}"
        static const struct {
                const char *body;
                uint64_t uses;
        } cases[] = {
                { MSG("", "{\"type\":\"text\",\"text\":\"x\"}"), 0 },
                { MSG(",\"container\":{\"id\":\"container_1\",\"expires_at\":\"2026-12-06T15:00:00Z\"}",
                      "{\"type\":\"text\",\"text\":\"x\"}"),
                  1 },
                { MSG("", "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"bash_code_execution\","
                          "\"input\":{\"command\":\"ls\"}},{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_2\","
                          "\"name\":\"code_execution\",\"input\":{\"code\":\"1\"}}"),
                  1 },
                { MSG(",\"container\":null", "{\"type\":\"text\",\"text\":\"x\"}"), 0 },
        };
#undef MSG
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, "application/json", NULL };
                AjLlmCall *c = parse_all_ways(&s, cases[i].body, strlen(cases[i].body));
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION], cases[i].uses, "%s", cases[i].body);
                cr_expect_eq(U(c)->tool_calls_total, 0, "a server tool is not the agent's call");
                json_t *ev = aj_llm_call_to_json(c);
                cr_expect_eq(json_integer_value(json_object_get(ev, "code_execution_containers")),
                             (json_int_t)cases[i].uses);
                json_decref(ev);
                aj_llm_call_free(c);
        }
        /* Streamed and cut after the block started: it ran. And a container in message_delta. */
        static const char cut[] =
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\","
                "\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"text_editor_code_execution\",\"input\":{}}}\n\n";
        static const char delta[] =
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\","
                "\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
                "\"container\":{\"id\":\"container_1\"}},\"usage\":{\"output_tokens\":5}}\n\n"
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        const char *streams[] = { cut, delta };
        for (size_t i = 0; i < ARRAY_SIZE(streams); i++) {
                Setup st = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
                AjLlmCall *c = parse_all_ways(&st, streams[i], strlen(streams[i]));
                cr_expect_eq(U(c)->tool_uses[AJ_TOOL_FEE_CODE_EXECUTION], 1, "stream %zu", i);
                aj_llm_call_free(c);
        }
}

/* "stream" is read as a JSON boolean: anything else a lenient provider might take as true is
 * refused, naming it, for every API (the gateway adds the usage events of a stream it knows of). */
Test(gateway_usage, request_stream_must_be_boolean)
{
        static const struct {
                AjLlmApi api;
                const char *body;
                int r;
                bool stream;
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\"}", 0, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"stream\":null}", 0, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"stream\":false}", 0, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"stream\":true}", 0, true },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"stream\":\"true\"}", -EINVAL, false },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"stream\":1}", -EINVAL, false },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"stream\":\"yes\"}", -EINVAL, false },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"stream\":{}}", -EINVAL, false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), cases[i].r, "%s",
                             cases[i].body);
                if (cases[i].r == 0)
                        cr_expect_eq(U(c)->stream, cases[i].stream, "%s", cases[i].body);
                else
                        cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, "\"stream\" must be true or false"),
                                  "%s: %s", cases[i].body, U(c)->parse_error ? U(c)->parse_error : "(none)");
                aj_llm_call_free(c);
        }
}

/* A member named like one the gateway reads but in other letters (a provider matching names
 * ignoring case, as Go's encoding/json does, Unicode's simple folding included: "ſ" is "s",
 * "K" (Kelvin) is "k") is refused, naming it: {"Stream": true} streamed without the usage the
 * gateway adds, {"model": "cheap", "MODEL": "dear"} was priced as the cheap one. */
Test(gateway_usage, request_member_in_other_letter_case_is_refused)
{
        static const struct {
                AjLlmApi api;
                const char *body, *named;
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"Stream\":true}", "Stream" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"cheap\",\"MODEL\":\"dear\"}", "MODEL" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"\xc5\xbftream\":true}", "\\u017Ftream" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"N\":50}", "N" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"Max_Tokens\":9}", "Max_Tokens" },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"Include_Usage\":false}}",
                  "Include_Usage" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"Background\":true}", "Background" },
                /* The web search tools' bounds (docs/gateway.md): the tools, their type and
                 * max_uses, the Responses API's max_tool_calls, Chat's web_search_options. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\","
                  "\"max_uses\":1,\"Max_Uses\":100}]}",
                  "Max_Uses" },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"tools\":[{\"name\":\"x\"},{\"TYPE\":\"web_search_20250305\",\"name\":\"web_search\"}]}",
                  "TYPE" },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"Tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}", "Tools" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"max_tool_calls\":1,\"MAX_TOOL_CALLS\":50}",
                  "MAX_TOOL_CALLS" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"Web_Search_Options\":{}}", "Web_Search_Options" },
                /* OpenRouter's web plugin, a stored prompt, a code interpreter's container. */
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"Plugins\":[{\"id\":\"web\"}]}", "Plugins" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"ID\":\"web\"}]}", "ID" },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"plugins\":[{\"id\":\"web\",\"max_results\":1,\"Max_Results\":9}]}",
                  "Max_Results" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"Prompt\":{\"id\":\"pmpt_1\"}}", "Prompt" },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\",\"container\":\"cntr_1\",\"Container\":{\"type\":\"auto\"}}]}",
                  "Container" },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_to\xe2\x84\xaa"
                  "ens\":9}",
                  "max_to\\u212Aens" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), -EINVAL, "%s",
                             cases[i].body);
                const char *e = U(c)->parse_error;
                cr_expect(e && strstr(e, cases[i].named) && strstr(e, "letter case"), "%s: %s", cases[i].body,
                          e ? e : "(none)");
                aj_llm_call_free(c);
        }
        /* Other members are the provider's business, whatever their case. */
        const char *ok = "{\"model\":\"m\",\"stream\":true,\"Temperature\":1,\"metadata\":{\"Model\":\"x\"}}";
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, ok, strlen(ok)), 0, "%s", U(c)->parse_error ?: "");
        aj_llm_call_free(c);
}

Test(gateway_usage, chat_rewrite_adds_include_usage)
{
        char *out = NULL;
        size_t len = 0;
        /* The client's bytes are kept: numbers are not re-printed. */
        const char *b = " {\"model\":\"gpt-4o\", \"stream\": true, \"temperature\": 0.7, \"messages\": []}";
        cr_assert_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), 1);
        cr_expect_str_eq(out, " {\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\", \"stream\": true, "
                              "\"temperature\": 0.7, \"messages\": []}");
        cr_expect_eq(len, strlen(out));
        json_t *j = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
        cr_expect(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
        json_decref(j);
        free(out);
        b = "{\"stream\":true,\"stream_options\":{\"include_usage\":false,\"x\":1}}";
        cr_assert_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), 1);
        cr_expect_str_eq(out, "{\"stream\":true,\"stream_options\":{\"include_usage\":true,\"x\":1}}");
        free(out);
        b = "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
        cr_expect_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), 0);
        b = "{\"stream\":false}";
        cr_expect_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), 0);
        b = "{\"stream\":true,\"stream_options\":null}";
        cr_expect_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), -EINVAL);
        b = "{\"stream\":false,\"stream\":true}";
        cr_expect_eq(aj_llm_openai_chat_add_usage(b, strlen(b), &out, &len), -EINVAL, "duplicate keys");
        cr_expect_eq(aj_llm_openai_chat_add_usage("[]", 2, &out, &len), -EINVAL);
        cr_expect_eq(aj_llm_openai_chat_add_usage("{", 1, &out, &len), -EINVAL);

        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
        b = "{\"model\":\"cheap\",\"model\":\"dear\"}";
        cr_expect_eq(aj_llm_call_request(c, b, strlen(b)), -EINVAL, "a request repeating a key is refused");
        aj_llm_call_free(c);
}

/* The output limit the gateway sets (llm-meter.c bound_output()): the field the API takes,
 * inserted with the client's bytes kept, or set where the request has it as no limit; none
 * for Messages (max_tokens is the client's to set) or count_tokens. */
Test(gateway_usage, output_limit_rewrite)
{
        char *out = NULL;
        size_t len = 0;
        cr_expect_str_eq(aj_llm_output_limit_field(AJ_LLM_API_OPENAI_CHAT), "max_completion_tokens");
        cr_expect_str_eq(aj_llm_output_limit_field(AJ_LLM_API_OPENAI_RESPONSES), "max_output_tokens");
        cr_expect_null(aj_llm_output_limit_field(AJ_LLM_API_ANTHROPIC_MESSAGES));
        cr_expect_null(aj_llm_output_limit_field(AJ_LLM_API_ANTHROPIC_COUNT_TOKENS));
        const char *b = "{\"model\":\"gpt-5.5\", \"temperature\": 0.70, \"messages\": []}";
        cr_assert_eq(aj_llm_set_output_limit(AJ_LLM_API_OPENAI_CHAT, b, strlen(b), 32000, &out, &len), 1);
        cr_expect_str_eq(out, "{\"max_completion_tokens\":32000,\"model\":\"gpt-5.5\", \"temperature\": 0.70, "
                              "\"messages\": []}");
        cr_expect_eq(len, strlen(out));
        free(out);
        b = "{\"model\":\"gpt-5.5\",\"max_output_tokens\":null,\"input\":\"hi\"}";
        cr_assert_eq(aj_llm_set_output_limit(AJ_LLM_API_OPENAI_RESPONSES, b, strlen(b), 32000, &out, &len), 1);
        json_t *j = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
        cr_expect_eq(json_integer_value(json_object_get(j, "max_output_tokens")), 32000, "%s", out);
        json_decref(j);
        free(out);
        b = "{\"model\":\"claude-x\",\"messages\":[]}";
        cr_expect_eq(aj_llm_set_output_limit(AJ_LLM_API_ANTHROPIC_MESSAGES, b, strlen(b), 32000, &out, &len), -EINVAL);
        b = "{\"model\":\"a\",\"model\":\"b\"}";
        cr_expect_eq(aj_llm_set_output_limit(AJ_LLM_API_OPENAI_CHAT, b, strlen(b), 32000, &out, &len), -EINVAL,
                     "duplicate keys");
        cr_expect_eq(aj_llm_set_output_limit(AJ_LLM_API_OPENAI_CHAT, "[]", 2, 32000, &out, &len), -EINVAL);
}

/* A relay that parses the stream itself: the usage chunk is metered, not forwarded. */
static int relay(void *userdata, const AjSseEvent *ev)
{
        AjLlmCall *c = userdata;
        bool forward;
        cr_assert_eq(aj_llm_call_response_event(c, ev, &forward), 0);
        cr_assert_eq(forward, !aj_llm_openai_chat_usage_only(ev) || !aj_llm_call_usage(c)->stream);
        return forward ? 1 : 0;
}

Test(gateway_usage, chat_usage_chunk_is_stripped_when_the_gateway_asked_for_it)
{
        size_t len;
        char *in = read_fixture("openai-chat-stream.sse", &len);
        for (int strip = 0; strip <= 1; strip++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                /* "stream" in the request stands for "strip" in relay()'s check. */
                const char *req = strip ? "{\"stream\":true}" : "{\"stream\":false}";
                cr_assert_eq(aj_llm_call_request(c, req, strlen(req)), 0);
                aj_llm_call_strip_usage_chunk(c, strip);
                aj_llm_call_response_start(c, 200, SSE);
                AjSse *sse = NULL;
                cr_assert_eq(aj_sse_new(0, &sse), 0);
                cr_assert_eq(aj_sse_feed(sse, in, len, relay, c), 0);
                aj_sse_free(sse);
                aj_llm_call_response_end(c);
                cr_expect_eq(U(c)->input_tokens, 1117, "metered either way");
                cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
                aj_llm_call_free(c);
        }
        free(in);
}

Test(gateway_usage, api_from_path)
{
        AjLlmApi api;
        cr_expect_eq(aj_llm_api_from_path("anthropic", "/v1/messages?beta=true", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_ANTHROPIC_MESSAGES);
        cr_expect_eq(aj_llm_api_from_path("anthropic", "/v1/messages/count_tokens", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_ANTHROPIC_COUNT_TOKENS);
        cr_expect_eq(aj_llm_api_from_path("openai", "/v1/chat/completions", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_OPENAI_CHAT);
        cr_expect_eq(aj_llm_api_from_path("openai", "/proxy/v1/responses/", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_OPENAI_RESPONSES);
        cr_expect_eq(aj_llm_api_from_path("openai", "/v1/models", &api), -ENOENT);
        /* Any case: a server that ignores case must not get an unmetered model call. */
        cr_expect_eq(aj_llm_api_from_path("anthropic", "/V1/Messages", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_ANTHROPIC_MESSAGES);
        cr_expect_eq(aj_llm_api_from_path("openai", "/v1/Chat/COMPLETIONS/", &api), 0);
        cr_expect_eq(api, AJ_LLM_API_OPENAI_CHAT);
        cr_expect_eq(aj_llm_api_from_path("openai", "/v1/messages", &api), -ENOENT);
        cr_expect_eq(aj_llm_api_from_path("anthropic", "/v1/chat/completions", &api), -ENOENT);
}

/* Where the key goes (key-paths.h): by default the model calls this API meters (POST) and
 * reads of the models, nothing else of the account; a rule opens more, '*' one segment. */
Test(gateway_usage, key_paths_default_set)
{
        static const struct {
                AjGatewayApi api;
                const char *method, *path;
                bool allowed;
        } cases[] = {
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/messages", true },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/messages?beta=true", true },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/messages/count_tokens", true },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/V1/Messages/", true },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/models", true },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/models?limit=20", true },
                { AJ_GATEWAY_API_ANTHROPIC, "HEAD", "/v1/models/claude-sonnet-4-5", true },
                { AJ_GATEWAY_API_ANTHROPIC, "HEAD", "/", true },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/", false },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/models", false },
                { AJ_GATEWAY_API_ANTHROPIC, "DELETE", "/v1/models/x", false },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/models/x/y", false },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/messages", false },
                { AJ_GATEWAY_API_ANTHROPIC, "post", "/v1/messages", false },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/messages/batches", false },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/messages/batches/b1/results", false },
                { AJ_GATEWAY_API_ANTHROPIC, "GET", "/v1/files", false },
                { AJ_GATEWAY_API_ANTHROPIC, "POST", "/v1/chat/completions", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/chat/completions", true },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/responses", true },
                { AJ_GATEWAY_API_OPENAI, "POST", "/async/chat/completions", true },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/models", true },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/models/", true },
                { AJ_GATEWAY_API_OPENAI, "GET", "/V1/MODELS/gpt-5", true },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/chat/completions", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/responses/resp_1", false },
                { AJ_GATEWAY_API_OPENAI, "DELETE", "/v1/responses/resp_1", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/responses/compact", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/files", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/files/file-1/content", false },
                { AJ_GATEWAY_API_OPENAI, "DELETE", "/v1/files/file-1", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/fine_tuning/jobs", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/embeddings", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/batches", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/messages", false },
                /* Only the gateway's one spelling of a path matches (it refuses the others). */
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/models/../files", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "/v1/models/%2e%2e", false },
                { AJ_GATEWAY_API_OPENAI, "GET", "//v1/models", false },
                { AJ_GATEWAY_API_OPENAI, "POST", "/v1/chat/completions/.", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                cr_expect_eq(aj_key_path_allowed(cases[i].api, NULL, cases[i].method, cases[i].path), cases[i].allowed,
                             "%s %s: %s", cases[i].method, cases[i].path, cases[i].allowed ? "refused" : "allowed");
}

Test(gateway_usage, key_path_rules)
{
        static const struct {
                const char *rule, *method, *path;
                bool match;
        } cases[] = {
                { "GET /v1/files", "GET", "/v1/files", true },
                { "GET /v1/files", "GET", "/v1/files?purpose=batch", true },
                { "GET /v1/files", "GET", "/v1/files/", true },
                { "GET /v1/files", "GET", "/V1/Files", true },
                { "GET /v1/files", "HEAD", "/v1/files", false },
                { "GET /v1/files", "get", "/v1/files", false },
                { "GET /v1/files", "GET", "/v1/files/file-1", false },
                { "GET /v1/files", "GET", "/v1", false },
                { "GET /v1/files", "GET", "/v1/filesx", false },
                { "GET /v1/files/*/content", "GET", "/v1/files/file-1/content", true },
                { "GET /v1/files/*/content", "GET", "/v1/files/content", false },
                { "GET /v1/files/*/content", "GET", "/v1/files/a/b/content", false },
                { "GET /v1/files/*/content", "GET", "/v1/files/../content", false },
                { "GET /v1/files/*/content", "GET", "/v1/files/%2e%2e/content", false },
                { "GET /v1/files/*/content", "GET", "/v1/files//content", false },
                { "GET /v1/files/*", "GET", "/v1/files/file-1", true },
                { "GET /v1/files/*", "GET", "/v1/files", false },
                { "* /v1/batches", "POST", "/v1/batches", true },
                { "* /v1/batches", "DELETE", "/v1/batches", true },
                { "* /v1/batches", "PROPFIND", "/v1/batches", true },
                { "DELETE /v1/files/*", "DELETE", "/v1/files/file-1", true },
                { "DELETE /v1/files/*", "POST", "/v1/files/file-1", false },
                { "GET /", "GET", "/", true },
                { "GET /", "GET", "/?x=1", true },
                { "GET /", "GET", "/v1", false },
                { "GET /v1/x", "GET", "/", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                cr_expect_null(aj_key_path_rule_problem(cases[i].rule), "%s", cases[i].rule);
                cr_expect_eq(aj_key_path_rule_matches(cases[i].rule, cases[i].method, cases[i].path), cases[i].match,
                             "%s against %s %s", cases[i].rule, cases[i].method, cases[i].path);
        }
        char *rules[] = { "GET /v1/files", "DELETE /v1/files/*", NULL };
        cr_expect(aj_key_path_allowed(AJ_GATEWAY_API_OPENAI, rules, "DELETE", "/v1/files/f"), "opened by a rule");
        cr_expect(aj_key_path_allowed(AJ_GATEWAY_API_OPENAI, rules, "POST", "/v1/responses"), "the default set stays");
        cr_expect(!aj_key_path_allowed(AJ_GATEWAY_API_OPENAI, rules, "POST", "/v1/files"), "nothing else");
        char long_rule[300];
        snprintf(long_rule, sizeof(long_rule), "GET /%0280d", 0);
        cr_expect_str_eq(aj_key_path_rule_problem(long_rule), "too long (at most 256 bytes)");
        cr_expect_not_null(aj_key_path_rule_problem(NULL));
}

Test(gateway_usage, call_as_event_fields)
{
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        size_t len;
        char *in = read_fixture("anthropic-tool-use.sse", &len);
        AjLlmCall *c = feed(&s, in, len, len, false);
        json_t *o = aj_llm_call_to_json(c);
        cr_assert_not_null(o);
        char *text = json_dumps(o, JSON_COMPACT);
        cr_expect_str_eq(text,
                         "{\"api\":\"anthropic.messages\",\"status\":200,\"outcome\":\"complete\",\"stream\":true,"
                         "\"gen_ai.request.model\":\"claude-sonnet-4-5\",\"gen_ai.response.model\":"
                         "\"claude-opus-4-5-20251101\",\"gen_ai.usage.input_tokens\":1531,"
                         "\"gen_ai.usage.output_tokens\":189,\"gen_ai.usage.cache_read.input_tokens\":0,"
                         "\"gen_ai.usage.cache_creation.input_tokens\":0,\"cache_creation_1h_tokens\":0,"
                         "\"reasoning_tokens\":0,\"estimated\":false,"
                         "\"gen_ai.response.finish_reasons\":[\"tool_use\"],\"tool_calls\":[\"get_weather\","
                         "\"get_time\"],\"tool_calls_total\":2,\"tool_arguments_sha256\":["
                         "\"e3bcc4c9ae4055cb6074141d47d10b1ad2f3d57d74c42e3f32611a0246b550d0\","
                         "\"2334aca2d0fc6eb4b724fa9a7ca7718c69e47e85f7202e5cae29f51bea7947c1\"],"
                         "\"tool_call_ids\":[\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"toolu_01A09q90qw90lq917835lq9\"],"
                         "\"error\":null,\"parse_error\":null}");
        free(text);
        json_decref(o);
        aj_llm_call_free(c);
        free(in);
}

Test(gateway_usage, content_type_unknown_follows_the_request)
{
        const char *body = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"
                           "data: [DONE]\n\n";
        Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, NULL, "{\"model\":\"gpt-4o\",\"stream\":true}" };
        AjLlmCall *c = parse_all_ways(&s, body, strlen(body));
        cr_expect_eq(U(c)->input_tokens, 3);
        cr_expect_eq(U(c)->output_tokens, 4);
        cr_expect_eq(U(c)->outcome, AJ_LLM_COMPLETE);
        aj_llm_call_free(c);
        /* A response with no bytes at all: cut, the prompt estimate charged. */
        c = feed(&s, "", 0, 0, false);
        cr_expect_eq(U(c)->outcome, AJ_LLM_CUT);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.input, U(c)->prompt_estimate);
        cr_expect_eq(ch.output, 0);
        aj_llm_call_free(c);
}

/* Feeds `in` up to (not including) the first occurrence of `stop`, the response not ended. */
static AjLlmCall *feed_until(const Setup *s, const char *in, const char *stop)
{
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(s->api, &c), 0);
        aj_llm_call_response_start(c, s->status, s->content_type);
        const char *end = strstr(in, stop);
        cr_assert_not_null(end, "%s", stop);
        cr_assert_eq(aj_llm_call_response_data(c, in, (size_t)(end - in)), 0);
        return c;
}

/* Every call the client carries out is a tool call: Chat custom tools (custom.name,
 * custom.input), and the Responses built-in tools the client runs (local_shell, shell,
 * computer, apply_patch, and a "..._call" item added later); not the tools that run at
 * the provider (web search, code interpreter, remote MCP). */
Test(gateway_usage, tool_calls_the_client_runs_are_counted_whatever_their_kind)
{
        const char *chat = "{\"model\":\"gpt-5\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"custom\",\"custom\":{\"name\":\"code_exec\","
                           "\"input\":\"print(1)\"}}]},\"finish_reason\":\"tool_calls\"}],"
                           "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5}}";
        Setup sc = { AJ_LLM_API_OPENAI_CHAT, 200, JSON, NULL };
        AjLlmCall *c = parse_all_ways(&sc, chat, strlen(chat));
        cr_expect_eq(U(c)->n_tool_calls, 1);
        cr_expect_str_eq(U(c)->tool_calls[0], "code_exec");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_1");
        aj_llm_call_free(c);

        const char *stream =
                "data: {\"model\":\"gpt-5\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                "\"id\":\"call_2\",\"type\":\"custom\",\"custom\":{\"name\":\"code_exec\",\"input\":\"\"}}]}}]}\n\n"
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"custom\":"
                "{\"input\":\"{\\\"a\\\":1}\"}}]}}]}\n\n"
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
                "data: [DONE]\n\n";
        Setup ss = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, NULL };
        c = parse_all_ways(&ss, stream, strlen(stream));
        cr_expect_eq(U(c)->n_tool_calls, 1);
        expect_tool(c, 0, "code_exec", "{\"a\":1}");
        aj_llm_call_free(c);

        const char *resp =
                "{\"id\":\"r\",\"object\":\"response\",\"model\":\"gpt-5\",\"status\":\"completed\",\"output\":["
                "{\"type\":\"web_search_call\",\"id\":\"ws\",\"status\":\"completed\"},"
                "{\"type\":\"code_interpreter_call\",\"id\":\"ci\",\"code\":\"1\"},"
                "{\"type\":\"mcp_call\",\"id\":\"mc\",\"name\":\"remote\",\"arguments\":\"{}\"},"
                "{\"type\":\"local_shell_call\",\"id\":\"ls\",\"call_id\":\"call_ls\",\"status\":\"completed\","
                "\"action\":{\"type\":\"exec\",\"command\":[\"rm\",\"-rf\",\"/\"]}},"
                "{\"type\":\"shell_call\",\"id\":\"sh\",\"call_id\":\"call_sh\",\"action\":{\"commands\":[\"ls\"]}},"
                "{\"type\":\"computer_call\",\"id\":\"cu\",\"call_id\":\"call_cu\",\"action\":{\"type\":\"click\","
                "\"x\":1,\"y\":2}},"
                "{\"type\":\"apply_patch_call\",\"id\":\"ap\",\"call_id\":\"call_ap\",\"operation\":{\"type\":"
                "\"update_file\",\"path\":\"a.c\"}},"
                "{\"type\":\"teleport_call\",\"id\":\"tp\",\"call_id\":\"call_tp\",\"status\":\"completed\","
                "\"where\":\"mars\"}],"
                "\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}";
        Setup sr = { AJ_LLM_API_OPENAI_RESPONSES, 200, JSON, NULL };
        c = parse_all_ways(&sr, resp, strlen(resp));
        cr_expect_eq(U(c)->tool_calls_total, 5, "the provider's own tools are not the agent's calls");
        cr_assert_eq(U(c)->n_tool_calls, 5);
        expect_tool(c, 0, "local_shell", "{\"type\":\"exec\",\"command\":[\"rm\",\"-rf\",\"/\"]}");
        expect_tool(c, 1, "shell", "{\"commands\":[\"ls\"]}");
        expect_tool(c, 2, "computer", "{\"type\":\"click\",\"x\":1,\"y\":2}");
        expect_tool(c, 3, "apply_patch", "{\"type\":\"update_file\",\"path\":\"a.c\"}");
        expect_tool(c, 4, "teleport", "{\"type\":\"teleport_call\",\"where\":\"mars\"}");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "call_ls");
        aj_llm_call_free(c);

        /* Streamed: whole (counted, before its bytes are forwarded) at its output_item.done. */
        const char *sse = "event: response.output_item.added\n"
                          "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":"
                          "\"local_shell_call\",\"id\":\"ls\",\"call_id\":\"call_ls\",\"status\":\"in_progress\","
                          "\"action\":{\"type\":\"exec\",\"command\":[\"id\"]}}}\n\n"
                          "event: response.output_item.done\n"
                          "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":"
                          "\"local_shell_call\",\"id\":\"ls\",\"call_id\":\"call_ls\",\"status\":\"completed\","
                          "\"action\":{\"type\":\"exec\",\"command\":[\"id\"]}}}\n\n";
        Setup st = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        c = feed_until(&st, sse, "event: response.output_item.done");
        cr_expect_eq(U(c)->n_tool_calls, 1, "counted when it starts");
        cr_expect_not(aj_llm_call_tool_done(c, 0), "not whole yet");
        cr_assert_eq(aj_llm_call_response_data(c, strstr(sse, "event: response.output_item.done"),
                                               strlen(strstr(sse, "event: response.output_item.done"))),
                     0);
        cr_expect(aj_llm_call_tool_done(c, 0), "whole at its output_item.done");
        aj_llm_call_free(c);
}

/* A call is whole (the agent can run it) before the response ends: at its
 * content_block_stop, its Responses ".done" event, its Chat choice's finish_reason. The
 * gateway counts it then, before forwarding the bytes that end it. */
Test(gateway_usage, tool_call_done_before_the_response_ends)
{
        size_t len;
        Setup a = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, NULL };
        char *in = read_fixture("anthropic-tool-use.sse", &len);
        /* Up to the second tool_use's start: the first is whole, the second is not. */
        AjLlmCall *c = feed_until(&a, in,
                                  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3");
        cr_assert_eq(U(c)->n_tool_calls, 2);
        cr_expect(aj_llm_call_tool_done(c, 0));
        cr_expect_not(aj_llm_call_tool_done(c, 1));
        cr_expect_eq(U(c)->outcome, AJ_LLM_PENDING);
        expect_tool(c, 0, "get_weather", "{\"unit\": \"fahrenheit\", \"location\": \"San Francisco, CA\"}");
        aj_llm_call_free(c);
        free(in);

        Setup ch = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, NULL };
        in = read_fixture("openai-chat-tools-stream.sse", &len);
        c = feed_until(&ch, in, "\"finish_reason\":\"tool_calls\"");
        cr_assert_eq(U(c)->n_tool_calls, 2);
        cr_expect_not(aj_llm_call_tool_done(c, 0), "a chat call is whole when its choice finishes");
        aj_llm_call_free(c);
        c = feed_until(&ch, in, "\"choices\":[],");
        cr_expect(aj_llm_call_tool_done(c, 0));
        cr_expect(aj_llm_call_tool_done(c, 1));
        expect_tool(c, 1, "send_email", "{\"body\":\"Hi\",\"to\":\"bob@example.com\"}");
        cr_expect_not(aj_llm_call_tool_done(c, 2));
        aj_llm_call_free(c);
        free(in);

        Setup r = { AJ_LLM_API_OPENAI_RESPONSES, 200, SSE, NULL };
        in = read_fixture("openai-responses-stream.sse", &len);
        c = feed_until(&r, in, "event: response.completed");
        cr_assert_eq(U(c)->n_tool_calls, 1);
        cr_expect(aj_llm_call_tool_done(c, 0));
        cr_expect_eq(U(c)->outcome, AJ_LLM_PENDING);
        aj_llm_call_free(c);
        free(in);
}

/* Hostile ids: one the provider gives twice is one call; one a broker request could not
 * carry (too long, spaces, not a string) is none. */
Test(gateway_usage, tool_call_ids_bounded_and_deduplicated)
{
        char big[300];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        char *body = NULL;
        cr_assert(asprintf(&body,
                           "{\"model\":\"m\",\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":1,"
                           "\"output_tokens\":1},\"content\":["
                           "{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"a\",\"input\":{}},"
                           "{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"b\",\"input\":{}},"
                           "{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":\"c\",\"input\":{}},"
                           "{\"type\":\"tool_use\",\"id\":\"has space\",\"name\":\"d\",\"input\":{}},"
                           "{\"type\":\"tool_use\",\"id\":7,\"name\":\"e\",\"input\":{}},"
                           "{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"f\",\"input\":{}}]}",
                           big) > 0);
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, JSON, NULL };
        AjLlmCall *c = feed(&s, body, strlen(body), strlen(body), false);
        cr_assert_eq(U(c)->n_tool_calls, 5);
        cr_expect_eq(U(c)->tool_calls_total, 5, "the repeated id is not another call");
        cr_expect_str_eq(U(c)->tool_calls[0], "a");
        cr_expect_str_eq(U(c)->tool_call_ids[0], "toolu_A");
        cr_expect_str_eq(U(c)->tool_calls[1], "c");
        cr_expect_null(U(c)->tool_call_ids[1], "longer than %d bytes", AJ_LLM_MAX_CALL_ID);
        cr_expect_null(U(c)->tool_call_ids[2]);
        cr_expect_null(U(c)->tool_call_ids[3]);
        cr_expect_str_eq(U(c)->tool_call_ids[4], "toolu_B");
        aj_llm_call_free(c);
        free(body);
}

/* ---- JSON an agent or a provider sends: bounded before jansson parses it ---- */

/* kB of the process's memory: VmRSS (now) or VmHWM (its peak). */
static long status_kb(const char *key)
{
        FILE *f = fopen("/proc/self/status", "re");
        cr_assert_not_null(f);
        char line[256];
        long v = -1;
        size_t n = strlen(key);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, n) == 0 && line[n] == ':')
                        v = strtol(line + n + 1, NULL, 10);
        fclose(f);
        cr_assert_geq(v, 0, "%s", key);
        return v;
}

/* PREFIX, then `count` times ELEM (without the last comma), then SUFFIX: malloc'd, its pages touched. */
static char *repeat_json(const char *prefix, const char *elem, size_t count, const char *suffix, size_t *ret_len)
{
        size_t pl = strlen(prefix), el = strlen(elem), sl = strlen(suffix);
        char *b = malloc(pl + count * el + sl + 1);
        cr_assert_not_null(b);
        size_t len = 0;
        memcpy(b, prefix, pl);
        len += pl;
        for (size_t i = 0; i < count; i++, len += el)
                memcpy(b + len, elem, el);
        if (count && elem[el - 1] == ',')
                len--;
        memcpy(b + len, suffix, sl);
        len += sl;
        b[len] = 0;
        *ret_len = len;
        return b;
}

Test(gateway_usage, request_of_16_mib_of_empty_objects_is_refused_unparsed)
{
        size_t len;
        char *b = repeat_json("{\"model\":\"x\",\"max_tokens\":1,\"messages\":[", "{},", ((16u << 20) - 100) / 3, "]}",
                              &len);
        long before = status_kb("VmRSS");
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, b, len), -E2BIG);
        cr_expect_str_eq(U(c)->parse_error, "request: more than 1048576 JSON values (agentjail's limit)");
        cr_expect_null(U(c)->model, "nothing of it was read");
        long peak = status_kb("VmHWM");
        /* Parsed, it took 1.2 GB (jansson: ~232 bytes an empty object). */
        cr_expect_lt(peak - before, 64 << 10, "peak memory grew %ld kB", peak - before);
        aj_llm_call_free(c);
        free(b);
}

Test(gateway_usage, request_at_the_value_bound_is_read_past_it_refused)
{
        /* {"model":"x","messages":[0,...]}: 1 + 2 + 2 + count values */
        size_t count = AJ_LLM_MAX_JSON_VALUES - 5, len;
        char *b = repeat_json("{\"model\":\"x\",\"messages\":[", "0,", count, "]}", &len);
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, b, len), 0, "exactly %u values", AJ_LLM_MAX_JSON_VALUES);
        cr_expect_str_eq(U(c)->model, "x");
        aj_llm_call_free(c);
        free(b);
        b = repeat_json("{\"model\":\"x\",\"messages\":[", "0,", count + 1, "]}", &len);
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, b, len), -E2BIG, "one value more");
        aj_llm_call_free(c);
        char *out = NULL;
        size_t out_len;
        cr_expect_eq(aj_llm_openai_chat_add_usage(b, len, &out, &out_len), -E2BIG);
        free(b);
}

Test(gateway_usage, request_nested_past_the_depth_bound_is_refused)
{
        /* {"model":"x","m": + depth-1 arrays */
        for (unsigned depth = AJ_LLM_MAX_JSON_DEPTH; depth <= AJ_LLM_MAX_JSON_DEPTH + 1; depth++) {
                char b[1024];
                int n = snprintf(b, sizeof(b), "{\"model\":\"x\",\"m\":");
                for (unsigned i = 1; i < depth; i++)
                        b[n++] = '[';
                for (unsigned i = 1; i < depth; i++)
                        b[n++] = ']';
                b[n++] = '}';
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
                int r = aj_llm_call_request(c, b, (size_t)n);
                if (depth == AJ_LLM_MAX_JSON_DEPTH)
                        cr_expect_eq(r, 0, "%u levels", depth);
                else {
                        cr_expect_eq(r, -ELOOP, "%u levels", depth);
                        cr_expect_str_eq(U(c)->parse_error,
                                         "request: JSON nested deeper than 128 levels (agentjail's limit)");
                }
                aj_llm_call_free(c);
        }
}

Test(gateway_usage, a_large_real_request_is_read)
{
        /* A long session: 20,000 turns of a tool use and its result, 10.8 MB and ~700 K values
         * (denser than real sessions: 15 bytes a value, Claude Code's are 40 to 70), with
         * quotes, brackets and escapes in its strings. */
        const char *turn = "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Let me read it [{\\\"\"},"
                           "{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"Read\",\"input\":{\"file_path\":"
                           "\"/src/a.c\",\"limit\":200}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                           "\"tool_use_id\":\"toolu_01\",\"content\":\"int main(void) { puts(\\\"}]\\\\\\\\\\\"); "
                           "return 0; }\\n/* and some more text of the file, as tools return: lines of code, "
                           "of logs, of a test's output, of a listing of files; most of what a session sends is "
                           "text like this, in few values; a long one is far denser than a real session is. */\"}]},";
        size_t len;
        char *b = repeat_json("{\"model\":\"claude-x\",\"max_tokens\":8192,\"stream\":true,\"messages\":[", turn, 20000,
                              "]}", &len);
        cr_assert_gt(len, 10u << 20, "%zu bytes", len);
        AjJsonShape sh;
        cr_assert_eq(aj_json_scan(b, len, UINT64_MAX, UINT_MAX, &sh), 0);
        cr_expect_gt(sh.values, 680000, "%llu values", (unsigned long long)sh.values);
        json_t *check = json_loadb(b, len, 0, NULL);
        cr_assert_not_null(check, "the fixture is JSON");
        json_decref(check);
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_ANTHROPIC_MESSAGES, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, b, len), 0, "%s", U(c)->parse_error ?: "");
        cr_expect_str_eq(U(c)->model, "claude-x");
        cr_expect(U(c)->stream);
        cr_expect_eq(U(c)->n_tool_results, AJ_LLM_MAX_TOOL_RESULTS);
        aj_llm_call_free(c);
        free(b);
}

Test(gateway_usage, provider_body_and_event_past_the_bound_are_not_parsed_and_charged_as_output)
{
        /* A whole body: 8 MiB minus a little of "{},". */
        size_t len;
        char *b = repeat_json("{\"type\":\"message\",\"content\":[", "{},", ((8u << 20) - 100) / 3, "]}", &len);
        long before = status_kb("VmRSS");
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, JSON, ANTHROPIC_REQ };
        AjLlmCall *c = feed(&s, b, len, len / 2, false);
        cr_expect_str_eq(U(c)->parse_error, "response body: more than 1048576 JSON values, not read");
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect(ch.estimated);
        cr_expect_geq(ch.output, len / AJ_LLM_BYTES_PER_TOKEN, "its bytes count as output seen");
        cr_expect_lt(status_kb("VmHWM") - before, 64 << 10, "peak memory");
        aj_llm_call_free(c);
        free(b);

        /* One SSE event just under the 4 MiB event limit, "[]," past the values' bound. */
        char *ev = repeat_json("event: message_delta\ndata: {\"type\":\"message_delta\",\"x\":[", "[],",
                               ((4u << 20) - 200) / 3, "]}\n\n", &len);
        s = (Setup){ AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        before = status_kb("VmRSS");
        c = feed(&s, ev, len, len / 3, false);
        cr_expect_str_eq(U(c)->parse_error, "event 'message_delta': more than 1048576 JSON values, not read");
        cr_expect_geq(U(c)->output_bytes, len - 100);
        cr_expect_lt(status_kb("VmHWM") - before, 64 << 10, "peak memory");
        aj_llm_call_free(c);
        free(ev);
}

/* A 2xx answer the gateway relays but cannot read is no free call: not JSON, past the body
 * limit, or a stream cut short by an event past its limit, its bytes count as output. */
Test(gateway_usage, unreadable_answers_count_their_bytes_as_output)
{
        size_t len = 300000;
        char *junk = malloc(len);
        cr_assert_not_null(junk);
        memset(junk, 'x', len);
        Setup s = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, JSON, ANTHROPIC_REQ };
        AjLlmCall *c = feed(&s, junk, len, len / 2, false);
        cr_expect(strstr(U(c)->parse_error, "invalid JSON") != NULL, "%s", U(c)->parse_error);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_geq(ch.output, len / AJ_LLM_BYTES_PER_TOKEN, "not JSON: %llu", (unsigned long long)ch.output);
        aj_llm_call_free(c);

        /* An error status is not billed by the provider: nothing charged for its page. */
        s.status = 502;
        c = feed(&s, junk, len, len / 2, false);
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.output, 0);
        aj_llm_call_free(c);
        free(junk);

        /* Past the whole-body limit (8 MiB): the body is not kept, every byte counts. */
        len = (8u << 20) + 4096;
        char *big = malloc(len);
        cr_assert_not_null(big);
        memset(big, ' ', len);
        s.status = 200;
        c = feed(&s, big, len, 4096, false);
        cr_expect(strstr(U(c)->parse_error, "larger than") != NULL, "%s", U(c)->parse_error);
        aj_llm_call_charge(c, &ch);
        cr_expect_geq(ch.output, len / AJ_LLM_BYTES_PER_TOKEN, "past the limit: %llu", (unsigned long long)ch.output);
        aj_llm_call_free(c);
        free(big);

        /* A stream whose event passes 4 MiB: that data and all after it count. */
        size_t elen = (4u << 20) + 100;
        char *ev = malloc(elen);
        cr_assert_not_null(ev);
        memcpy(ev, "data: ", 6);
        memset(ev + 6, 'y', elen - 6);
        s = (Setup){ AJ_LLM_API_ANTHROPIC_MESSAGES, 200, SSE, ANTHROPIC_REQ };
        c = feed(&s, ev, elen, elen / 2, false);
        cr_expect(strstr(U(c)->parse_error, "larger than") != NULL, "%s", U(c)->parse_error);
        cr_assert_eq(aj_llm_call_response_data(c, ev, 1 << 20), 0);
        cr_expect_geq(U(c)->output_bytes, elen / 2 + (1 << 20), "what followed counts: %llu",
                      (unsigned long long)U(c)->output_bytes);
        aj_llm_call_free(c);
        free(ev);
}

Test(gateway_usage, the_scan_counts_what_jansson_builds_of_every_fixture)
{
        static const char *const names[] = {
                "anthropic.json",
                "anthropic-count-tokens.json",
                "anthropic-error.json",
                "openai-chat.json",
                "openai-error.json",
                "openai-responses.json",
                "anthropic-tool-use.sse",
                "openai-chat-tools-stream.sse",
                "openai-responses-tools-stream.sse",
                "openai-responses-stream.sse",
        };
        unsigned checked = 0;
        for (size_t f = 0; f < ARRAY_SIZE(names); f++) {
                size_t len;
                char *in = read_fixture(names[f], &len);
                bool sse = strstr(names[f], ".sse") != NULL;
                for (char *line = in; line && *line;) {
                        char *nl = strchr(line, '\n');
                        size_t n = nl ? (size_t)(nl - line) : strlen(line);
                        const char *text = line;
                        if (sse) {
                                if (n < 6 || strncmp(line, "data: ", 6) != 0) {
                                        line = nl ? nl + 1 : NULL;
                                        continue;
                                }
                                text += 6, n -= 6;
                        } else
                                n = len;
                        json_t *v = json_loadb(text, n, JSON_DECODE_ANY, NULL);
                        if (v) {
                                AjJsonShape want = {}, got;
                                json_dom_shape(v, 0, &want);
                                json_decref(v);
                                cr_assert_eq(aj_json_scan(text, n, UINT64_MAX, UINT_MAX, &got), 0);
                                cr_expect_eq(got.values, want.values, "%s: %.*s", names[f], (int)n, text);
                                cr_expect_eq(got.depth, want.depth, "%s: %.*s", names[f], (int)n, text);
                                checked++;
                        }
                        line = sse && nl ? nl + 1 : NULL;
                }
                free(in);
        }
        cr_expect_gt(checked, 30, "%u texts checked", checked);
}

/* OpenRouter's file parser bills PDF pages ($2 per 1,000 with mistral-ocr, the engine it falls
 * back to when none is named and the model reads no files itself), which no response reports:
 * it was neither reserved nor charged. Every file of a Chat or Responses request is now
 * AJ_LLM_FILE_PAGES pages of the file_parser fee, reserved and charged for an answer, unless a
 * file-parser plugin names a free engine (and none a paid one); an engine the gateway does not
 * know is unmetered (refused under a cost cap). */
Test(gateway_usage, file_parser_pages_reserved_and_charged)
{
#define PDF "{\"type\":\"file\",\"file\":{\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;base64,JVBE\"}}"
#define CHAT_FILES(parts, plugins) \
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[" parts "]}]" plugins "}"
        static const struct {
                AjLlmApi api;
                const char *body;
                uint64_t pages;
                bool unmetered;
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT, CHAT_FILES(PDF, ""), 1000, false },
                { AJ_LLM_API_OPENAI_CHAT, CHAT_FILES(PDF "," PDF, ",\"plugins\":[{\"id\":\"file-parser\"}]"), 2000,
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"mistral-ocr\"}}]"), 1000,
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"pdf-text\"}}]"), 0,
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"cloudflare-ai\"}}]"), 0,
                  false },
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"native\"}}]"), 0,
                  false },
                /* A free engine and a paid one: the paid one may run. */
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"native\"}},"
                                  "{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"MISTRAL-OCR\"}}]"),
                  1000, false },
                /* Another spelling of a free engine may be read as none (the paid default). */
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"Native\"}}]"), 1000,
                  true },
                { AJ_LLM_API_OPENAI_CHAT, CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":\"x\"}]"),
                  1000, true },
                { AJ_LLM_API_OPENAI_CHAT,
                  CHAT_FILES(PDF, ",\"plugins\":[{\"id\":\"File-Parser\",\"pdf\":{\"engine\":\"pdf-text\"}}]"), 1000,
                  true },
                /* No file: nothing to parse. */
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[],\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":"
                  "\"mistral-ocr\"}}]}",
                  0, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\","
                  "\"file_id\":\"file-1\"},{\"type\":\"input_text\",\"text\":\"x\"}]}]}",
                  1000, false },
                /* Anthropic's documents are read by the model (billed as tokens). */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"document\",\"source\":{\"type\":\"base64\",\"media_type\":\"application/pdf\",\"data\":\"JVBE\"}}]}]}",
                  0, false },
        };
        static const char body[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3}}";
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), 0, "%s: %s", cases[i].body,
                             U(c)->parse_error ?: "");
                cr_expect_eq(U(c)->tool_offered[AJ_TOOL_FEE_FILE_PARSER], cases[i].pages, "%s: %llu", cases[i].body,
                             (unsigned long long)U(c)->tool_offered[AJ_TOOL_FEE_FILE_PARSER]);
                cr_expect_eq(U(c)->unmetered != NULL, cases[i].unmetered, "%s: %s", cases[i].body,
                             U(c)->unmetered ?: "(none)");
                aj_llm_call_free(c);
                if (cases[i].api != AJ_LLM_API_OPENAI_CHAT)
                        continue;
                for (int status = 200; status <= 500; status += 300) {
                        Setup s = { AJ_LLM_API_OPENAI_CHAT, status, "application/json", cases[i].body };
                        c = feed(&s, body, strlen(body), strlen(body), false);
                        AjLlmCharge ch;
                        aj_llm_call_charge(c, &ch);
                        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_FILE_PARSER], status == 200 ? cases[i].pages : 0, "%s %d",
                                     cases[i].body, status);
                        json_t *ev = aj_llm_call_to_json(c);
                        cr_expect_eq(json_integer_value(json_object_get(ev, "file_parser_pages")),
                                     status == 200 ? (json_int_t)cases[i].pages : 0);
                        json_decref(ev);
                        aj_llm_call_free(c);
                }
        }
#undef PDF
#undef CHAT_FILES
}

/* A request member that lets the provider bill beyond tokens, which the gateway does not
 * understand, was relayed as if free: xAI's Live Search ("search_parameters", per source), a
 * tool type it does not know (xAI's collections_search), an OpenRouter plugin it does not know,
 * and members billing tokens at a rate the prices do not hold (Anthropic's fast mode, 2 to 6
 * times; OpenAI's priority tier; audio and image tokens).
 * Each is now named in unmetered (llm-meter.c refuses it under a cost cap); what it knows to
 * bill nothing beyond tokens is not. */
Test(gateway_usage, members_billed_beyond_tokens_it_cannot_meter_are_named)
{
        static const struct {
                AjLlmApi api;
                const char *body;
                const char *unmetered; /* a part of the name, NULL: none */
        } cases[] = {
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"grok-4\",\"search_parameters\":{\"mode\":\"auto\"}}",
                  "search_parameters" },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"grok-4\",\"search_parameters\":{\"sources\":[{\"type\":\"x\"}]}}",
                  "search_parameters" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"grok-4\",\"search_parameters\":{\"mode\":\"off\"}}", NULL },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"grok-4\",\"search_parameters\":null}", NULL },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"collections_search\",\"collection_ids\":[\"c\"]}]}",
                  "\"collections_search\"" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:sandbox\"}]}",
                  "\"openrouter:sandbox\"" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"tools\":[{\"type\":7}]}", "not a string" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"id\":\"moderation\"}]}", "\"moderation\"" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"max_results\":3}]}", "(none)" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":{\"id\":\"web\"}}", "not an array" },
                /* Billed at a rate the (standard-tier, text) prices do not hold. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"claude-opus-4-6\",\"max_tokens\":5,\"speed\":\"fast\"}",
                  "\"fast\"" },
                { AJ_LLM_API_ANTHROPIC_MESSAGES, "{\"model\":\"m\",\"max_tokens\":5,\"speed\":1}", "speed" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"service_tier\":\"priority\"}", "\"priority\"" },
                { AJ_LLM_API_OPENAI_RESPONSES, "{\"model\":\"m\",\"service_tier\":\"scale\"}", "\"scale\"" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"modalities\":[\"text\",\"audio\"],\"audio\":{}}",
                  "audio" },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"modalities\":[\"image\",\"text\"]}", "\"image\"" },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                  "\"input_audio\":{\"data\":\"AAAA\",\"format\":\"wav\"}}]}]}",
                  "input_audio" },
                /* What it knows. */
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_tokens\":5,\"speed\":\"standard\",\"service_tier\":\"standard_only\"}",
                  NULL },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"service_tier\":\"flex\",\"modalities\":[\"text\"],\"audio\":null}", NULL },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"service_tier\":\"auto\",\"speed\":null}", NULL },
                { AJ_LLM_API_OPENAI_CHAT, "{\"model\":\"m\",\"plugins\":[{\"id\":\"web\"}]}", NULL },
                { AJ_LLM_API_OPENAI_CHAT,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                  "{\"type\":\"custom\",\"name\":\"g\"},{\"type\":\"openrouter:datetime\"}]}",
                  NULL },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"local_shell\"},{\"type\":\"shell\"},{\"type\":\"apply_patch\"},"
                  "{\"type\":\"computer_use_preview\"},{\"type\":\"mcp\",\"server_url\":\"https://x\"},"
                  "{\"type\":\"web_search\"},{\"type\":\"file_search\"},{\"type\":\"x_search\"}]}",
                  NULL },
                { AJ_LLM_API_ANTHROPIC_MESSAGES,
                  "{\"model\":\"m\",\"max_tokens\":5,\"tools\":[{\"name\":\"Bash\",\"input_schema\":{}},"
                  "{\"type\":\"bash_20250124\",\"name\":\"bash\"},{\"type\":\"text_editor_20250728\",\"name\":\"e\"},"
                  "{\"type\":\"computer_20250124\",\"name\":\"c\"},{\"type\":\"memory_20250818\",\"name\":\"m\"},"
                  "{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\"},{\"type\":\"custom\",\"name\":\"x\"}]}",
                  NULL },
                /* A namespace (Codex's multi-agent functions) of a client's own tools only. */
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"multi_agent_v1\",\"tools\":["
                  "{\"type\":\"function\",\"name\":\"spawn\"},{\"type\":\"custom\",\"name\":\"g\"}]}]}",
                  NULL },
                /* One holding a provider's tool, another namespace, or no list: not looked into. */
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":["
                  "{\"type\":\"function\",\"name\":\"f\"},{\"type\":\"image_generation\"}]}]}",
                  "\"namespace\"" },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":["
                  "{\"type\":\"namespace\",\"name\":\"o\",\"tools\":[]}]}]}",
                  "\"namespace\"" },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":{}}]}",
                  "\"namespace\"" },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"tools\":[{\"type\":\"x:namespace\",\"name\":\"n\",\"tools\":[]}]}",
                  "\"x:namespace\"" },
                /* Spelled in other letter case: refused as the members the gateway reads are. */
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(cases[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), 0, "%s: %s", cases[i].body,
                             U(c)->parse_error ?: "");
                if (cases[i].unmetered)
                        cr_expect(U(c)->unmetered && strstr(U(c)->unmetered, cases[i].unmetered), "%s: %s",
                                  cases[i].body, U(c)->unmetered ?: "(none)");
                else
                        cr_expect_null(U(c)->unmetered, "%s: %s", cases[i].body, U(c)->unmetered);
                aj_llm_call_free(c);
        }
        static const char *const twins[] = {
                "{\"model\":\"m\",\"Search_Parameters\":{\"mode\":\"on\"}}",
                "{\"model\":\"m\",\"search_parameters\":{\"mode\":\"off\",\"Mode\":\"on\"}}",
                "{\"model\":\"m\",\"plugins\":[{\"id\":\"file-parser\",\"PDF\":{\"engine\":\"mistral-ocr\"}}]}",
                "{\"model\":\"m\",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"native\",\"ENGINE\":\"x\"}}]}",
                "{\"model\":\"m\",\"Speed\":\"fast\"}",
                "{\"model\":\"m\",\"SERVICE_TIER\":\"priority\"}",
                "{\"model\":\"m\",\"Modalities\":[\"audio\"]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(twins); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, twins[i], strlen(twins[i])), -EINVAL, "%s", twins[i]);
                aj_llm_call_free(c);
        }
}

/* Attacks on the unknown-tool rule (review): a tool the gateway reads as a client's own or
 * not at all, that a provider may read as its paid tool. A namespaced type is a provider's
 * tool (OpenRouter's server tools): the client's own types ("function", "custom", ...) under a
 * namespace were taken as free. A "tools" entry that is not an object, or "tools" that is not
 * an array, was not looked into. A namespace's members and its own "tools" in other letter
 * case were not checked as the top-level tools' members are. Each is now named in unmetered
 * (or refused as a case twin). */
Test(gateway_usage, tools_the_gateway_cannot_read_are_unmetered)
{
        static const char *const unread[] = {
                "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:function\"}]}",
                "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:mcp_search\"}]}",
                "{\"model\":\"m\",\"tools\":[{\"type\":\"x:computer\"}]}",
                "{\"model\":\"m\",\"tools\":[\"web_search\"]}",
                "{\"model\":\"m\",\"tools\":[[{\"type\":\"web_search\"}]]}",
                "{\"model\":\"m\",\"tools\":{\"type\":\"web_search\"}}",
                "{\"model\":\"m\",\"tools\":\"web_search\"}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(unread); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, unread[i], strlen(unread[i])), 0, "%s: %s", unread[i],
                             U(c)->parse_error ?: "");
                cr_expect(U(c)->unmetered != NULL, "%s", unread[i]);
                aj_llm_call_free(c);
        }
        static const char *const twins[] = {
                "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":["
                "{\"type\":\"function\",\"name\":\"f\",\"Type\":\"web_search\"}]}]}",
                "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":[],"
                "\"Tools\":[{\"type\":\"web_search\"}]}]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(twins); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, twins[i], strlen(twins[i])), -EINVAL, "%s", twins[i]);
                aj_llm_call_free(c);
        }
        /* What real clients send stays free: Codex's namespace, null tools, no tools. */
        static const char *const free_[] = {
                "{\"model\":\"m\",\"tools\":null}",
                "{\"model\":\"m\",\"tools\":[]}",
                "{\"model\":\"m\",\"tools\":[{\"type\":\"namespace\",\"name\":\"n\",\"tools\":["
                "{\"type\":\"function\",\"name\":\"f\"}]}]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(free_); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, free_[i], strlen(free_[i])), 0, "%s", free_[i]);
                cr_expect_null(U(c)->unmetered, "%s: %s", free_[i], U(c)->unmetered);
                aj_llm_call_free(c);
        }
}

/* xAI's x_search, and its code_execution outside Anthropic's API: billed per call ($5 per
 * 1,000), run 0 to N times, and no item of the response the gateway reads counts them. They
 * were reserved and charged nothing (x_search was no tool the gateway knew; code_execution one
 * use reserved, none charged): now AJ_LLM_DEFAULT_TOOL_USES each, reserved and charged for an
 * answer, as OpenRouter's server tools. */
Test(gateway_usage, xai_server_tools_reserved_and_charged)
{
        static const char req[] =
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"code_execution\"}]}";
        static const char body[] =
                "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"grok-4\",\"output\":["
                "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
        cr_assert_eq(aj_llm_call_request(c, req, strlen(req)), 0);
        cr_expect_eq(U(c)->max_searches, AJ_LLM_DEFAULT_TOOL_USES);
        cr_expect_not(U(c)->search_unbounded);
        cr_expect_eq(U(c)->tool_offered[AJ_TOOL_FEE_CODE_EXECUTION], AJ_LLM_DEFAULT_TOOL_USES);
        cr_expect_null(U(c)->unmetered);
        aj_llm_call_free(c);
        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", req };
        c = feed(&s, body, strlen(body), strlen(body), false);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, AJ_LLM_DEFAULT_TOOL_USES);
        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION], AJ_LLM_DEFAULT_TOOL_USES);
        aj_llm_call_free(c);
}

/* OpenRouter's usage reports the searches its server tools ran
 * (usage.server_tool_use.web_search_requests): where a final usage says so, a namespaced
 * search tool is charged that count, not the default it is reserved at; without it (a stream
 * cut before its usage, a provider that does not say) the default, fail closed. The web
 * plugin's results are not searches, and no response counts them (its url_citation
 * annotations name those the answer cites): still its max_results. */
Test(gateway_usage, server_tool_searches_charged_as_reported)
{
        static const char req[] = "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:web_search\"}]}";
        static const char plugin_req[] =
                "{\"model\":\"m\",\"tools\":[{\"type\":\"openrouter:web_search\"}],\"plugins\":[{\"id\":\"web\","
                "\"max_results\":3}]}";
#define CHAT_BODY(usage)                                                                                                \
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":" \
        "\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,"                \
        "\"completion_tokens\":3" usage "}}"
        static const struct {
                const char *request, *body;
                uint64_t searches;
        } cases[] = {
                { req, CHAT_BODY(",\"server_tool_use\":{\"web_search_requests\":2,\"tool_calls_executed\":2}"), 2 },
                { req, CHAT_BODY(",\"server_tool_use\":{\"web_search_requests\":0}"), 0 },
                { req, CHAT_BODY(""), AJ_LLM_DEFAULT_TOOL_USES },
                { req, CHAT_BODY(",\"server_tool_use\":{\"web_search_requests\":\"2\"}"), AJ_LLM_DEFAULT_TOOL_USES },
                { plugin_req, CHAT_BODY(",\"server_tool_use\":{\"web_search_requests\":1}"), 1 + 3 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_CHAT, 200, "application/json", cases[i].request };
                AjLlmCall *c = feed(&s, cases[i].body, strlen(cases[i].body), strlen(cases[i].body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.web_searches, cases[i].searches, "%s: %llu", cases[i].body,
                             (unsigned long long)ch.web_searches);
                aj_llm_call_free(c);
        }
        /* Streamed: the count comes with the usage chunk; a stream cut before it is the default. */
        static const char stream[] =
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"content\":\"x\"}}]}\n\n"
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":"
                "{\"prompt_tokens\":20,\"completion_tokens\":3,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n"
                "data: [DONE]\n\n";
        static const char sreq[] = "{\"model\":\"m\",\"stream\":true,\"tools\":[{\"type\":\"openrouter:web_search\"}]}";
        Setup st = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, sreq };
        AjLlmCall *c = feed(&st, stream, strlen(stream), strlen(stream), false);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, 1);
        aj_llm_call_free(c);
        size_t first = (size_t)(strstr(stream, "\n\n") - stream) + 2;
        c = feed(&st, stream, first, first, false); /* cut after the first chunk */
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(ch.web_searches, AJ_LLM_DEFAULT_TOOL_USES);
        aj_llm_call_free(c);
#undef CHAT_BODY
}

/* A stored prompt may hold a code interpreter whose container the provider starts itself:
 * OpenAI creates (and bills, $0.03) that container before the model runs, and a response
 * whose model made no call names none. It was reserved, not charged: now an answer is one. */
Test(gateway_usage, stored_prompt_answer_is_charged_its_auto_container)
{
        static const char req[] = "{\"model\":\"m\",\"prompt\":{\"id\":\"pmpt_1\"},\"input\":\"x\"}";
        static const char body[] =
                "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"m\",\"output\":["
                "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],"
                "\"usage\":{\"input_tokens\":20,\"output_tokens\":3}}";
        for (int status = 200; status <= 500; status += 300) {
                Setup s = { AJ_LLM_API_OPENAI_RESPONSES, status, "application/json", req };
                AjLlmCall *c = feed(&s, body, strlen(body), strlen(body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], status == 200 ? 1 : 0, "%d", status);
                aj_llm_call_free(c);
        }
}

/* What the provider says a call cost was not read: xAI's usage.cost_in_usd_ticks (1e-10 USD),
 * OpenRouter's usage.cost (credits, USD; a BYOK call's inference billed on the user's key in
 * cost_details.upstream_inference_cost). Now it is a floor of the charge (provider_cost_pusd),
 * in the event beside the gateway's figure; a figure that is not a number or negative is an
 * error named there and not taken (never a lower charge), one past AJ_LLM_MAX_PROVIDER_COST_USD
 * an error charged as that bound. An error status is not billed, and a request's members are
 * never read as one. */
Test(gateway_usage, provider_cost_is_read_as_a_floor)
{
#define RESP_BODY(usage)                                                                                             \
        "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"grok-4\",\"output\":[{\"type\":" \
        "\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],\"usage\":"    \
        "{\"input_tokens\":20,\"output_tokens\":3" usage "}}"
        static const struct {
                const char *body;
                bool reported;
                uint64_t pusd;
                const char *error; /* a part of it; NULL: none */
        } cases[] = {
                { RESP_BODY(",\"cost_in_usd_ticks\":292331500"), true, 29233150000ULL, NULL },
                { RESP_BODY(",\"cost\":0.95"), true, 950000000000ULL, NULL },
                { RESP_BODY(",\"cost\":0.95,\"is_byok\":true,\"cost_details\":{\"upstream_inference_cost\":19}"), true,
                  19950000000000ULL, NULL },
                { RESP_BODY(",\"cost\":0.95,\"is_byok\":false,\"cost_details\":{\"upstream_inference_cost\":0.95}"),
                  true, 950000000000ULL, NULL },
                { RESP_BODY(",\"cost\":0,\"cost_in_usd_ticks\":10"), true, 1000, NULL },
                { RESP_BODY(""), false, 0, NULL },
                { RESP_BODY(",\"cost\":null"), false, 0, NULL },
                { RESP_BODY(",\"cost\":\"0.5\""), false, 0, "usage.cost is not a number" },
                { RESP_BODY(",\"cost\":-1"), false, 0, "usage.cost -1 is negative" },
                { RESP_BODY(",\"cost_in_usd_ticks\":-5"), false, 0, "usage.cost_in_usd_ticks -5 is negative" },
                { RESP_BODY(",\"cost\":1e300"), true, 10000000000000000ULL, "is past 10000 USD a call" },
                { RESP_BODY(",\"cost_in_usd_ticks\":200000000000000"), true, 10000000000000000ULL, "past 10000 USD" },
                /* One bad figure does not hide a good one. */
                { RESP_BODY(",\"cost\":true,\"cost_in_usd_ticks\":100"), true, 10000, "usage.cost is not a number" },
                /* Perplexity's usage.cost is an object whose total_cost holds its per-request
                 * (search) fee besides the tokens: read as usage.cost.total_cost. */
                { RESP_BODY(",\"cost\":{\"input_tokens_cost\":0.00002,\"output_tokens_cost\":0.00003,"
                            "\"request_cost\":0.014,\"total_cost\":0.01405}"),
                  true, 14050000000ULL, NULL },
                { RESP_BODY(",\"cost\":{\"total_cost\":\"0.5\"}"), false, 0, "usage.cost.total_cost is not a number" },
                { RESP_BODY(",\"cost\":{\"request_cost\":0.014}"), false, 0, "usage.cost has no total_cost" },
        };
        static const char req[] = "{\"model\":\"grok-4\",\"usage\":{\"cost\":100,\"cost_in_usd_ticks\":1}}";
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                for (int status = 200; status <= 500; status += 300) {
                        Setup s = { AJ_LLM_API_OPENAI_RESPONSES, status, "application/json", req };
                        AjLlmCall *c = feed(&s, cases[i].body, strlen(cases[i].body), strlen(cases[i].body), false);
                        AjLlmCharge ch;
                        aj_llm_call_charge(c, &ch);
                        json_t *ev = aj_llm_call_to_json(c);
                        cr_assert_not_null(ev);
                        if (status >= 400) {
                                cr_expect_eq(ch.provider_cost_pusd, 0, "%s: an error status is not billed",
                                             cases[i].body);
                                json_decref(ev);
                                aj_llm_call_free(c);
                                continue;
                        }
                        cr_expect_eq(U(c)->provider_cost_reported, cases[i].reported, "%s", cases[i].body);
                        cr_expect_eq(ch.provider_cost_pusd, cases[i].pusd, "%s: %llu", cases[i].body,
                                     (unsigned long long)ch.provider_cost_pusd);
                        json_t *figure = json_object_get(ev, "provider_cost_usd");
                        cr_expect_eq(figure != NULL, cases[i].reported, "%s", cases[i].body);
                        if (figure)
                                cr_expect_float_eq(json_real_value(figure), (double)cases[i].pusd / 1e12, 1e-9, "%s",
                                                   cases[i].body);
                        const char *err = json_string_value(json_object_get(ev, "provider_cost_error"));
                        if (cases[i].error)
                                cr_expect(err && strstr(err, cases[i].error), "%s: %s", cases[i].body, err ?: "(none)");
                        else
                                cr_expect_null(err, "%s: %s", cases[i].body, err);
                        json_decref(ev);
                        aj_llm_call_free(c);
                }
        }
        /* Chat (OpenRouter's stream: the usage chunk), and Anthropic's API as another server speaks it. */
        static const char stream[] =
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"content\":\"x\"}}]}\n\n"
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":"
                "{\"prompt_tokens\":20,\"completion_tokens\":3,\"cost\":0.25}}\n\n"
                "data: [DONE]\n\n";
        Setup st = { AJ_LLM_API_OPENAI_CHAT, 200, SSE, "{\"model\":\"m\",\"stream\":true}" };
        AjLlmCall *c = feed(&st, stream, strlen(stream), strlen(stream), false);
        cr_expect_eq(U(c)->provider_cost_pusd, 250000000000ULL);
        aj_llm_call_free(c);
        static const char msg[] =
                "{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[{\"type\":"
                "\"text\",\"text\":\"x\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":20,"
                "\"output_tokens\":3,\"cost_in_usd_ticks\":5000}}";
        Setup sa = { AJ_LLM_API_ANTHROPIC_MESSAGES, 200, "application/json", "{\"model\":\"m\",\"max_tokens\":5}" };
        c = feed(&sa, msg, strlen(msg), strlen(msg), false);
        cr_expect_eq(U(c)->provider_cost_pusd, 500000ULL);
        aj_llm_call_free(c);
#undef RESP_BODY
}

/* xAI reports the searches its server tools ran in usage.server_side_tool_usage_details
 * (web_search_calls, x_search_calls), which was not read: x_search was charged the fail-closed
 * AJ_LLM_DEFAULT_TOOL_USES, and a web_search whose response emits no web_search_call item was
 * charged none. Now a final usage with those counts is charged them (their sum); its
 * code_interpreter_calls the same for its code_execution tool. */
Test(gateway_usage, xai_server_side_tool_usage_counts_searches)
{
#define XAI_BODY(usage)                                                                                              \
        "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"grok-4\",\"output\":[{\"type\":" \
        "\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}],\"usage\":"    \
        "{\"input_tokens\":20,\"output_tokens\":3" usage "}}"
        static const char x_req[] = "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"}]}";
        static const char web_req[] = "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"web_search\"}]}";
        static const char both_req[] = "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"web_search\"},{\"type\":"
                                       "\"x_search\"}]}";
        static const struct {
                const char *request, *body;
                uint64_t searches;
        } cases[] = {
                { x_req,
                  XAI_BODY(
                          ",\"num_server_side_tools_used\":3,\"server_side_tool_usage_details\":{\"web_search_calls\":0,"
                          "\"x_search_calls\":3,\"code_interpreter_calls\":0}"),
                  3 },
                { x_req, XAI_BODY(",\"server_side_tool_usage_details\":{\"x_search_calls\":0}"), 0 },
                { x_req, XAI_BODY(""), AJ_LLM_DEFAULT_TOOL_USES },
                { x_req, XAI_BODY(",\"server_side_tool_usage_details\":{\"x_search_calls\":-1}"),
                  AJ_LLM_DEFAULT_TOOL_USES },
                { web_req, XAI_BODY(",\"server_side_tool_usage_details\":{\"web_search_calls\":2}"), 2 },
                { web_req, XAI_BODY(""), 0 },
                { both_req,
                  XAI_BODY(",\"server_side_tool_usage_details\":{\"web_search_calls\":2,\"x_search_calls\":3}"), 5 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", cases[i].request };
                AjLlmCall *c = feed(&s, cases[i].body, strlen(cases[i].body), strlen(cases[i].body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.web_searches, cases[i].searches, "%s %s: %llu", cases[i].request, cases[i].body,
                             (unsigned long long)ch.web_searches);
                aj_llm_call_free(c);
        }
        /* Its code execution (per call) likewise, from code_interpreter_calls. */
        static const char code_req[] = "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"code_execution\"}]}";
        static const struct {
                const char *body;
                uint64_t runs;
        } code[] = {
                { XAI_BODY(",\"server_side_tool_usage_details\":{\"code_interpreter_calls\":2}"), 2 },
                { XAI_BODY(",\"server_side_tool_usage_details\":{\"code_interpreter_calls\":0}"), 0 },
                { XAI_BODY(""), AJ_LLM_DEFAULT_TOOL_USES },
        };
        for (size_t i = 0; i < ARRAY_SIZE(code); i++) {
                Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", code_req };
                AjLlmCall *c = feed(&s, code[i].body, strlen(code[i].body), strlen(code[i].body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION], code[i].runs, "%s: %llu", code[i].body,
                             (unsigned long long)ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION]);
                aj_llm_call_free(c);
        }
#undef XAI_BODY
}

/* OpenAI's own API reads a PDF as input tokens (its text and an image of each page), reported
 * in its usage, but every file of a request was reserved and charged AJ_LLM_FILE_PAGES pages of
 * OpenRouter's file parser, whichever server the call went to: under a cost cap an OpenAI user
 * sending a PDF was refused until the profile priced "file_parser": 0. The pages are now
 * reserved for any server but OpenAI's own (https://api.openai.com), which a url names
 * exactly; a proxy or OpenRouter keeps them (fail closed). */
Test(gateway_usage, file_pages_not_reserved_on_openai_itself)
{
        static const struct {
                const char *url;
                AjLlmUpstream want;
        } urls[] = {
                { "https://api.openai.com", AJ_LLM_UPSTREAM_OPENAI },
                { "https://api.openai.com/v1", AJ_LLM_UPSTREAM_OPENAI },
                { "https://API.OpenAI.com:443/", AJ_LLM_UPSTREAM_OPENAI },
                { "http://api.openai.com", AJ_LLM_UPSTREAM_OTHER },
                { "https://api.openai.com:8443", AJ_LLM_UPSTREAM_OTHER },
                { "https://api.openai.com.example.net", AJ_LLM_UPSTREAM_OTHER },
                { "https://api.openai.co", AJ_LLM_UPSTREAM_OTHER },
                { "https://proxy.example/api.openai.com", AJ_LLM_UPSTREAM_OTHER },
                { "https://openrouter.ai/api", AJ_LLM_UPSTREAM_OTHER },
                { NULL, AJ_LLM_UPSTREAM_OTHER },
        };
        for (size_t i = 0; i < ARRAY_SIZE(urls); i++)
                cr_expect_eq(aj_llm_upstream_from_url(urls[i].url), urls[i].want, "%s", urls[i].url ?: "(null)");
        static const char *const requests[] = {
                "{\"model\":\"gpt-5\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{"
                "\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;base64,JVBE\"}}]}]}",
        };
        static const char body[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"gpt-5\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":2000,\"completion_tokens\":3}}";
        for (int up = AJ_LLM_UPSTREAM_OTHER; up <= AJ_LLM_UPSTREAM_OPENAI; up++) {
                uint64_t pages = up == AJ_LLM_UPSTREAM_OPENAI ? 0 : AJ_LLM_FILE_PAGES;
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                aj_llm_call_set_upstream(c, (AjLlmUpstream)up);
                cr_assert_eq(aj_llm_call_request(c, requests[0], strlen(requests[0])), 0);
                cr_expect_eq(U(c)->tool_offered[AJ_TOOL_FEE_FILE_PARSER], pages, "upstream %d", up);
                aj_llm_call_response_start(c, 200, "application/json");
                cr_assert_eq(aj_llm_call_response_data(c, body, strlen(body)), 0);
                aj_llm_call_response_end(c);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_FILE_PARSER], pages, "upstream %d", up);
                cr_expect_eq(ch.input, 2000);
                aj_llm_call_free(c);
        }
}

/* OpenRouter bills the endpoint that answers at its own price, and its provider routing (a
 * "provider" object: order, only, ignore, sort, filters; a ":nitro" model) may pass over the
 * cheapest, but the request was read as priced at the model's price. Now provider_routed says
 * so, and provider.max_price.prompt and .completion (USD per million tokens) are read as the
 * dearest price per token it may pick; spelled otherwise, refused as any member read. A sort by
 * price alone, which OpenRouter documents as its ":floor" variant, was routing too; now it is not. */
Test(gateway_usage, openrouter_provider_routing_is_read)
{
        static const struct {
                const char *body;
                bool routed, bounded;
                uint64_t in, out; /* pico-USD per token */
        } cases[] = {
                { "{\"model\":\"m\"}", false, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":null}", false, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"order\":[\"dear\"],\"allow_fallbacks\":false}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"throughput\",\"max_price\":{\"prompt\":3,"
                  "\"completion\":15.5}}}",
                  true, true, 3000000, 15500000 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":0,\"completion\":0}}}", true, true, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":3}}}", true, false, 3000000, 0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\"3\",\"completion\":\"0.15\"}}}", true,
                  true, 3000000, 150000 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\"1e3\",\"completion\":1}}}", true, false,
                  0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\" 3\",\"completion\":1}}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\"3.\",\"completion\":1}}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\"-1\",\"completion\":1}}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":\"0x10\",\"completion\":1}}}", true, false,
                  0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":-1,\"completion\":15}}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":1e9,\"completion\":1}}}", true, true,
                  1000000000000ULL, 1000000 },
                { "{\"model\":\"m\",\"provider\":\"dear\"}", true, false, 0, 0 },
                { "{\"model\":\"vendor/m:nitro\"}", true, false, 0, 0 },
                { "{\"model\":\"vendor/m:NITRO:free\"}", true, false, 0, 0 },
                { "{\"model\":\"vendor/m:floor\"}", false, false, 0, 0 },
                /* Sorted by price only: OpenRouter's ":floor", priced as the model. */
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"price\"}}", false, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":{\"by\":\"price\"}}}", false, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":{\"by\":\"price\",\"partition\":\"model\"}}}", false, false,
                  0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"price\",\"max_price\":{\"prompt\":3,\"completion\":"
                  "15}}}",
                  false, true, 3000000, 15000000 },
                /* ... and nothing else: any other member or sort is routing. */
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"price\",\"order\":[\"dear\"]}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"price\",\"only\":null}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"latency\"}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":\"Price\"}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":{\"by\":\"price\",\"partition\":\"none\"}}}", true, false, 0,
                  0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":{\"by\":\"price\",\"max\":1}}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":{}}}", true, false, 0, 0 },
                { "{\"model\":\"m\",\"provider\":{\"sort\":null}}", true, false, 0, 0 },
                { "{\"model\":\"vendor/m:nitro\",\"provider\":{\"sort\":\"price\"}}", true, false, 0, 0 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, cases[i].body, strlen(cases[i].body)), 0, "%s: %s", cases[i].body,
                             U(c)->parse_error ?: "");
                cr_expect_eq(U(c)->provider_routed, cases[i].routed, "%s", cases[i].body);
                cr_expect_eq(U(c)->max_price_set, cases[i].bounded, "%s", cases[i].body);
                if (cases[i].bounded) {
                        cr_expect_eq(U(c)->max_price_input, cases[i].in, "%s: %llu", cases[i].body,
                                     (unsigned long long)U(c)->max_price_input);
                        cr_expect_eq(U(c)->max_price_output, cases[i].out, "%s: %llu", cases[i].body,
                                     (unsigned long long)U(c)->max_price_output);
                }
                aj_llm_call_free(c);
        }
        static const char *const twins[] = {
                "{\"model\":\"m\",\"Provider\":{\"order\":[\"dear\"]}}",
                "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":1,\"completion\":1},\"MAX_PRICE\":{}}}",
                "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":1,\"completion\":1,\"Completion\":99}}}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(twins); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, twins[i], strlen(twins[i])), -EINVAL, "%s", twins[i]);
                aj_llm_call_free(c);
        }
}

/* xAI's Responses API lists the calls its server-side tools make (x_search's x_keyword_search,
 * web_search's browse_page, code execution's code_execution) as custom_tool_call items, the
 * type of a client's custom tool's call: each was counted as one of the agent's tool calls, so a
 * run's tool_calls cap tripped on the provider's own searches. Such an item is xAI's own when
 * its name is one of a server-side tool the request enabled and no tool the client declared; a
 * call named as one of the client's tools (any letter case, any API's way of naming a tool)
 * counts, so an agent cannot hide its own calls behind a search's name. */
Test(gateway_usage, xai_server_tool_items_are_not_client_calls)
{
#define XAI_ITEM(name)                                                                \
        "{\"type\":\"custom_tool_call\",\"call_id\":\"xs_" name "\",\"name\":\"" name \
        "\",\"input\":\"{}\",\"status\":\"completed\"}"
#define XAI_RESP(items, usage)                                                                                    \
        "{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"grok-4\",\"output\":[" items  \
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"x\"}]}]," \
        "\"usage\":{\"input_tokens\":20,\"output_tokens\":3" usage "}}"
        static const char two_searches[] = XAI_RESP(XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_user_search") ",", "");
        static const struct {
                const char *request, *body;
                uint64_t calls, searches;
        } cases[] = {
                /* xAI's own: not the client's calls; the searches charged the 8 reserved (no usage). */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"}]}", two_searches, 0,
                  AJ_LLM_DEFAULT_TOOL_USES },
                /* ... or what the usage says it billed. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"}]}",
                  XAI_RESP(XAI_ITEM("x_keyword_search") ",",
                           ",\"server_side_tool_usage_details\":{\"x_search_calls\":1}"),
                  0, 1 },
                /* Web search's browse_page, a search, and view_image, billed as tokens only;
                 * x_search_call items alike. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"web_search\"}]}",
                  XAI_RESP(XAI_ITEM("browse_page") "," XAI_ITEM("view_image") ",", ""), 0, 1 },
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"}]}",
                  XAI_RESP("{\"type\":\"x_search_call\",\"id\":\"x1\",\"name\":\"x_semantic_search\",\"arguments\":"
                           "\"{}\",\"status\":\"completed\"},",
                           ""),
                  0, AJ_LLM_DEFAULT_TOOL_USES },
                /* More items than the 8 reserved, no usage: the items. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"}]}",
                  XAI_RESP(
                          XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM(
                                  "x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_keyword_search") "," XAI_ITEM("x_thread_fetch") ",",
                          ""),
                  0, 9 },
                /* The search tool not enabled: a call so named is the client's. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"custom\",\"name\":\"lookup\"}]}", two_searches, 2, 0 },
                /* The client declares a tool of that name (Responses custom, Chat function, any
                 * case, in a namespace): its call counts. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"custom\",\"name\":"
                  "\"x_keyword_search\"}]}",
                  two_searches, 1, AJ_LLM_DEFAULT_TOOL_USES },
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"function\",\"function\":"
                  "{\"name\":\"X_User_Search\"}}]}",
                  two_searches, 1, AJ_LLM_DEFAULT_TOOL_USES },
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"namespace\",\"name\":\"ns\","
                  "\"tools\":[{\"type\":\"function\",\"name\":\"x_keyword_search\"},{\"type\":\"custom\",\"name\":"
                  "\"x_user_search\"}]}]}",
                  two_searches, 2, AJ_LLM_DEFAULT_TOOL_USES },
                /* A client's own custom tool next to xAI's searches: only it counts. */
                { "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"custom\",\"name\":"
                  "\"lookup\"}]}",
                  XAI_RESP(XAI_ITEM("x_keyword_search") "," XAI_ITEM("lookup") ",", ""), 1, AJ_LLM_DEFAULT_TOOL_USES },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json", cases[i].request };
                AjLlmCall *c = feed(&s, cases[i].body, strlen(cases[i].body), strlen(cases[i].body), false);
                AjLlmCharge ch;
                aj_llm_call_charge(c, &ch);
                cr_expect_eq(U(c)->tool_calls_total, cases[i].calls, "%zu %s: %llu calls", i, cases[i].request,
                             (unsigned long long)U(c)->tool_calls_total);
                cr_expect_eq(ch.web_searches, cases[i].searches, "%zu %s: %llu searches", i, cases[i].request,
                             (unsigned long long)ch.web_searches);
                aj_llm_call_free(c);
        }
        /* Streamed alike: the item's .added names it, its input deltas are no call's arguments. */
        static const char stream[] =
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"grok-4\"}}\n\n"
                "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,"
                "\"item\":{\"type\":\"custom_tool_call\",\"call_id\":\"xs_1\",\"name\":\"x_keyword_search\",\"input\":"
                "\"\",\"status\":\"in_progress\"}}\n\n"
                "event: response.custom_tool_call_input.delta\ndata: {\"type\":\"response.custom_tool_call_input."
                "delta\",\"output_index\":0,\"delta\":\"{\\\"query\\\":\\\"a\\\"}\"}\n\n"
                "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,"
                "\"item\":{\"type\":\"custom_tool_call\",\"call_id\":\"xs_1\",\"name\":\"x_keyword_search\",\"input\":"
                "\"{\\\"query\\\":\\\"a\\\"}\",\"status\":\"completed\"}}\n\n"
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":"
                "\"completed\",\"model\":\"grok-4\",\"output\":[{\"type\":\"custom_tool_call\",\"call_id\":\"xs_1\","
                "\"name\":\"x_keyword_search\",\"input\":\"{}\",\"status\":\"completed\"}],\"usage\":{\"input_tokens\":"
                "5,\"output_tokens\":2,\"server_side_tool_usage_details\":{\"x_search_calls\":1}}}}\n\n";
        Setup ss = { AJ_LLM_API_OPENAI_RESPONSES, 200, "text/event-stream",
                     "{\"model\":\"grok-4\",\"stream\":true,\"tools\":[{\"type\":\"x_search\"}]}" };
        AjLlmCall *c = parse_all_ways(&ss, stream, strlen(stream));
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        cr_expect_eq(ch.web_searches, 1);
        aj_llm_call_free(c);
        /* xAI's code interpreter (its Responses name for code execution) bills each run: its
         * code_execution items are its own, charged as runs where they pass the containers. */
        static const char code_body[] = XAI_RESP(XAI_ITEM("code_execution") "," XAI_ITEM("code_execution") "," XAI_ITEM(
                                                         "code_execution") ",",
                                                 "");
        Setup sc = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json",
                     "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"code_interpreter\"}]}" };
        c = feed(&sc, code_body, strlen(code_body), strlen(code_body), false);
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER], 3);
        aj_llm_call_free(c);
        /* Its file_search tool's collections_search calls, billed per call: a file search's use
         * each (they were charged none, however many ran). */
        static const char collections_body[] =
                XAI_RESP(XAI_ITEM("collections_search") "," XAI_ITEM("collections_search") "," XAI_ITEM(
                                 "collections_search") ",",
                         "");
        Setup sf = { AJ_LLM_API_OPENAI_RESPONSES, 200, "application/json",
                     "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"file_search\",\"vector_store_ids\":[\"c\"]}]}" };
        c = feed(&sf, collections_body, strlen(collections_body), strlen(collections_body) / 2, false);
        aj_llm_call_charge(c, &ch);
        cr_expect_eq(U(c)->tool_calls_total, 0);
        cr_expect_eq(ch.tool_uses[AJ_TOOL_FEE_FILE_SEARCH], 3, "%llu file searches",
                     (unsigned long long)ch.tool_uses[AJ_TOOL_FEE_FILE_SEARCH]);
        aj_llm_call_free(c);
        /* Where the client's tools may be some the request does not list (a stored prompt's), or
         * at OpenAI's own API (no server tool of its lists custom_tool_call items), a call so named
         * is the client's: a stored custom tool "x_keyword_search" ran uncounted. */
        static const char stored[] = "{\"model\":\"grok-4\",\"prompt\":{\"id\":\"pmpt_1\"},\"tools\":[{\"type\":"
                                     "\"x_search\"}]}";
        for (int up = AJ_LLM_UPSTREAM_OTHER; up <= AJ_LLM_UPSTREAM_OPENAI; up++) {
                const char *request = up == AJ_LLM_UPSTREAM_OPENAI
                                              ? "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"web_search\"}]}"
                                              : stored;
                static const char body[] = XAI_RESP(XAI_ITEM("x_keyword_search") "," XAI_ITEM("web_search") ",", "");
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
                aj_llm_call_set_upstream(c, (AjLlmUpstream)up);
                cr_assert_eq(aj_llm_call_request(c, request, strlen(request)), 0);
                aj_llm_call_response_start(c, 200, "application/json");
                cr_assert_eq(aj_llm_call_response_data(c, body, strlen(body)), 0);
                aj_llm_call_response_end(c);
                cr_expect_eq(U(c)->tool_calls_total, 2, "%s: %llu calls", request,
                             (unsigned long long)U(c)->tool_calls_total);
                aj_llm_call_free(c);
        }
        /* The names a tool declares are read as the other members are: spelled in another letter
         * case, a provider matching keys so declares the client's tool, the gateway saw none. */
        static const char *const twins[] = {
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"custom\",\"Name\":"
                "\"x_keyword_search\"}]}",
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"function\",\"FUNCTION\":"
                "{\"name\":\"x_keyword_search\"}}]}",
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"function\",\"function\":"
                "{\"NAME\":\"x_keyword_search\"}}]}",
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"custom\",\"custom\":"
                "{\"Name\":\"x_keyword_search\"}}]}",
                "{\"model\":\"grok-4\",\"tools\":[{\"type\":\"x_search\"},{\"type\":\"namespace\",\"name\":"
                "\"ns\",\"tools\":[{\"type\":\"custom\",\"nAme\":\"x_keyword_search\"}]}]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(twins); i++) {
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_RESPONSES, &c), 0);
                cr_expect_eq(aj_llm_call_request(c, twins[i], strlen(twins[i])), -EINVAL, "%s", twins[i]);
                cr_expect(U(c)->parse_error && strstr(U(c)->parse_error, "other letter case"), "%s: %s", twins[i],
                          U(c)->parse_error ?: "(none)");
                aj_llm_call_free(c);
        }
#undef XAI_RESP
#undef XAI_ITEM
}

/* OpenRouter's variants and max_price fees, as the request reads them: a variant that may cost
 * more than the base model is provider routing, one billed at its price or less is not, an
 * unknown one (in OpenRouter's vendor/model form) is named; max_price.request once and .image
 * per image part make the call's fee, and a fee that is no price leaves the routing unbounded;
 * images the request only refers to cannot be counted. */
Test(gateway_usage, openrouter_variants_and_max_price_fees)
{
        static const struct {
                const char *body;
                bool routed;
                const char *unknown;
        } variants[] = {
                { "{\"model\":\"vendor/m:exacto\"}", true, NULL },
                { "{\"model\":\"vendor/m:extended\"}", true, NULL },
                { "{\"model\":\"vendor/m:thinking\"}", true, NULL },
                { "{\"model\":\"vendor/m:free\"}", false, NULL },
                { "{\"model\":\"vendor/m:online\"}", false, NULL },
                { "{\"model\":\"vendor/m:batch\"}", false, ":batch" },
                { "{\"model\":\"vendor/m:free:Q4:nitro\"}", true, ":Q4" },
                { "{\"model\":\"llama3:8b\"}", false, NULL },
                { "{\"model\":\"ft:gpt-4o-mini:org::abc\"}", false, NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(variants); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, variants[i].body, strlen(variants[i].body)), 0);
                cr_expect_eq(U(c)->provider_routed, variants[i].routed, "%s", variants[i].body);
                if (variants[i].unknown)
                        cr_expect_str_eq(U(c)->unknown_variant ?: "(none)", variants[i].unknown, "%s",
                                         variants[i].body);
                else
                        cr_expect_null(U(c)->unknown_variant, "%s", variants[i].body);
                aj_llm_call_free(c);
        }
#define IMG "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/a.png\"}}"
#define BODY(fees, more)                                                                                          \
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[" IMG "," IMG "," IMG "]}],\"provider\":" \
        "{\"max_price\":{\"prompt\":1,\"completion\":1" fees "}}" more "}"
        static const struct {
                AjLlmApi api;
                const char *body;
                bool bounded;
                uint64_t fee;
                bool unmetered;
        } fees[] = {
                { AJ_LLM_API_OPENAI_CHAT, BODY("", ""), true, 0, false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"request\":\"0.01\"", ""), true, 10000000000ULL, false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"request\":0.01,\"image\":\"0.002\"", ""), true, 16000000000ULL,
                  false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"image\":null", ""), true, 0, false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"request\":-1", ""), false, 0, false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"image\":\"1e3\"", ""), false, 0, false },
                { AJ_LLM_API_OPENAI_CHAT, BODY(",\"request\":1e9", ""), true,
                  (uint64_t)AJ_LLM_MAX_PROVIDER_COST_USD * 1000000000000ULL, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
                  "\"https://x/a.png\"}]}],\"provider\":{\"max_price\":{\"prompt\":1,\"completion\":1,\"image\":1}}}",
                  true, 1000000000000ULL, false },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"previous_response_id\":\"r1\",\"input\":\"hi\",\"provider\":{\"max_price\":"
                  "{\"prompt\":1,\"completion\":1,\"image\":1}}}",
                  true, 0, true },
                { AJ_LLM_API_OPENAI_RESPONSES,
                  "{\"model\":\"m\",\"previous_response_id\":\"r1\",\"input\":\"hi\",\"provider\":{\"max_price\":"
                  "{\"prompt\":1,\"completion\":1}}}",
                  true, 0, false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(fees); i++) {
                AjLlmCall *c = NULL;
                cr_assert_eq(aj_llm_call_new(fees[i].api, &c), 0);
                cr_assert_eq(aj_llm_call_request(c, fees[i].body, strlen(fees[i].body)), 0, "%s: %s", fees[i].body,
                             U(c)->parse_error ?: "");
                cr_expect_eq(U(c)->max_price_set, fees[i].bounded, "%s", fees[i].body);
                if (fees[i].bounded)
                        cr_expect_eq(U(c)->max_price_fee, fees[i].fee, "%s: %llu", fees[i].body,
                                     (unsigned long long)U(c)->max_price_fee);
                cr_expect_eq(U(c)->unmetered != NULL, fees[i].unmetered, "%s: %s", fees[i].body,
                             U(c)->unmetered ?: "-");
                aj_llm_call_free(c);
        }
        static const char twin[] = "{\"model\":\"m\",\"provider\":{\"max_price\":{\"prompt\":1,\"completion\":1,"
                                   "\"request\":1,\"Request\":0}}}";
        AjLlmCall *c = NULL;
        cr_assert_eq(aj_llm_call_new(AJ_LLM_API_OPENAI_CHAT, &c), 0);
        cr_expect_eq(aj_llm_call_request(c, twin, strlen(twin)), -EINVAL);
        aj_llm_call_free(c);
#undef BODY
#undef IMG
}
