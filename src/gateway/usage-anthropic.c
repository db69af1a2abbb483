/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Anthropic Messages responses. A stream: message_start carries the model and the
 * input usage (input_tokens without the cache, cache_read_input_tokens,
 * cache_creation_input_tokens) and a first output count; each message_delta
 * carries the CUMULATIVE usage so far (output_tokens, and newer API versions
 * repeat the input counts): every value replaces the last, none is added. A
 * content_block_start of type tool_use is a tool call, its arguments the
 * input_json_delta fragments up to its content_block_stop; message_stop ends the
 * message; an error event fails it. A whole body is the final message.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/usage-internal.h"

/* The searches charged: the final usage's count (a search that failed is not billed);
 * until it comes, and when it never does (the stream cut: the agent left, the provider
 * failed), at least one per web_search block started, which ran and was billed all the
 * same. */
static uint64_t billed(uint64_t reported, bool final, uint64_t started)
{
        return !final && started > reported ? started : reported;
}

/* The same for the web fetches (web_fetch_requests, web_fetch blocks). */
static void searches_update(AjLlmCall *c)
{
        c->u.web_search_requests = billed(c->searches_reported, c->searches_final, c->searches_started);
        c->u.tool_uses[AJ_TOOL_FEE_WEB_FETCH] = billed(c->fetches_reported, c->fetches_final, c->fetches_started);
}

/* Every count present in `usage` replaces the one before; `final`: the message's last
 * (message_delta, a whole body), whose search count is the one billed. */
static void take_usage(AjLlmCall *c, json_t *usage, bool final)
{
        AjLlmUsage *u = &c->u;
        uint64_t v;
        if (!json_is_object(usage))
                return;
        if (aj_llm_u64(usage, "input_tokens", &v)) {
                c->uncached_input = v;
                u->input_reported = true;
        }
        if (aj_llm_u64(usage, "cache_read_input_tokens", &v))
                u->cache_read_tokens = v;
        if (aj_llm_u64(usage, "cache_creation_input_tokens", &v))
                u->cache_creation_tokens = v;
        /* The split by lifetime: an hour-long write costs more than a 5-minute one. */
        if (aj_llm_u64(json_object_get(usage, "cache_creation"), "ephemeral_1h_input_tokens", &v))
                u->cache_creation_1h_tokens = v < u->cache_creation_tokens ? v : u->cache_creation_tokens;
        if (aj_llm_u64(usage, "output_tokens", &v))
                u->output_tokens = v;
        /* Searches by the web_search server tool, billed per search (cumulative too). */
        if (aj_llm_u64(json_object_get(usage, "server_tool_use"), "web_search_requests", &v)) {
                c->searches_reported = v;
                c->searches_final = c->searches_final || final;
        }
        /* And by the web_fetch server tool: billed per fetch where a price says so. */
        if (aj_llm_u64(json_object_get(usage, "server_tool_use"), "web_fetch_requests", &v)) {
                c->fetches_reported = v;
                c->fetches_final = c->fetches_final || final;
        }
        searches_update(c);
        u->input_tokens = c->uncached_input + u->cache_read_tokens + u->cache_creation_tokens;
        /* A server speaking this API for another (OpenRouter's, xAI's) may say what it charged. */
        aj_llm_provider_cost(c, usage);
}

/* Anthropic's code execution ran (a code execution block, or the message names its
 * container): billed by container time, which the usage does not report, so one use per
 * response, at the fee a price gives a use (prices.h AJ_TOOL_FEE_CODE_EXECUTION). */
static void code_execution_used(AjLlmCall *c)
{
        if (c->u.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] == 0)
                c->u.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] = 1;
}

/* A server tool block of the code execution tool: "code_execution" (its first version),
 * "bash_code_execution" and "text_editor_code_execution" (the later ones). */
static bool code_execution_block(const char *name)
{
        size_t n = name ? strlen(name) : 0;
        return n >= 14 && streq(name + n - 14, "code_execution");
}

/* The message's container (a whole body's, message_start's message, message_delta's delta):
 * code execution ran in it. */
static void container_named(AjLlmCall *c, json_t *o)
{
        json_t *container = json_object_get(o, "container");
        if (container && !json_is_null(container))
                code_execution_used(c);
}

/* A content block at `index`: a tool_use block is a tool call, its input the arguments
 * (streamed: {} at the start, then input_json_delta fragments until content_block_stop). */
static void content_block(AjLlmCall *c, json_t *block, uint32_t index)
{
        const char *type = json_string_value(json_object_get(block, "type"));
        const char *name = json_string_value(json_object_get(block, "name"));
        if (type && streq(type, "server_tool_use") && name && (streq(name, "web_search") || streq(name, "web_fetch"))) {
                if (streq(name, "web_search"))
                        c->searches_started++;
                else
                        c->fetches_started++;
                searches_update(c);
        }
        if (type && streq(type, "server_tool_use") && code_execution_block(name))
                code_execution_used(c);
        /* Server tools (server_tool_use: web search, code execution) run at the
         * provider, not in the jail: not counted as the agent's tool calls. */
        if (!type || !streq(type, "tool_use") ||
            aj_llm_tool_call(c, json_string_value(json_object_get(block, "name")), json_object_get(block, "id"),
                             index) < 0)
                return;
        json_t *input = json_object_get(block, "input");
        if (input)
                aj_llm_tool_args_json(c, index, input);
}

static uint32_t block_index(json_t *root) { return (uint32_t)json_integer_value(json_object_get(root, "index")); }

static void delta(AjLlmCall *c, json_t *d)
{
        aj_llm_output_bytes(c, d, "text");
        aj_llm_output_bytes(c, d, "partial_json");
        aj_llm_output_bytes(c, d, "thinking");
}

static void stream_delta(AjLlmCall *c, json_t *root)
{
        json_t *d = json_object_get(root, "delta");
        json_t *frag = json_object_get(d, "partial_json");
        delta(c, d);
        if (json_is_string(frag))
                aj_llm_tool_args_fragment(c, block_index(root), json_string_value(frag), json_string_length(frag));
}

void aj_llm_anthropic_event(AjLlmCall *c, const char *type, json_t *root)
{
        AjLlmUsage *u = &c->u;
        if (streq(type, "message_start")) {
                json_t *m = json_object_get(root, "message");
                aj_llm_set_name(&u->response_model, json_string_value(json_object_get(m, "model")));
                take_usage(c, json_object_get(m, "usage"), false);
                container_named(c, m);
        } else if (streq(type, "content_block_start"))
                content_block(c, json_object_get(root, "content_block"), block_index(root));
        else if (streq(type, "content_block_delta"))
                stream_delta(c, root);
        else if (streq(type, "content_block_stop"))
                aj_llm_tool_args_end(c, block_index(root));
        else if (streq(type, "message_delta")) {
                aj_llm_set_name(&u->stop_reason,
                                json_string_value(json_object_get(json_object_get(root, "delta"), "stop_reason")));
                container_named(c, json_object_get(root, "delta"));
                json_t *usage = json_object_get(root, "usage");
                take_usage(c, usage, true);
                if (json_is_object(usage) && json_object_get(usage, "output_tokens"))
                        u->output_reported = true;
        } else if (streq(type, "message_stop")) {
                if (u->outcome == AJ_LLM_PENDING)
                        u->outcome = AJ_LLM_COMPLETE;
        } else if (streq(type, "error"))
                aj_llm_error_object(c, json_object_get(root, "error"));
        /* ping and event types added later: nothing to meter. */
}

void aj_llm_anthropic_body(AjLlmCall *c, json_t *root)
{
        AjLlmUsage *u = &c->u;
        uint64_t v;
        if (c->api == AJ_LLM_API_ANTHROPIC_COUNT_TOKENS) {
                if (aj_llm_u64(root, "input_tokens", &v))
                        u->counted_tokens = v;
                u->outcome = AJ_LLM_COMPLETE;
                return;
        }
        aj_llm_set_name(&u->response_model, json_string_value(json_object_get(root, "model")));
        aj_llm_set_name(&u->stop_reason, json_string_value(json_object_get(root, "stop_reason")));
        container_named(c, root);
        size_t i;
        json_t *block;
        json_array_foreach (json_object_get(root, "content"), i, block) {
                content_block(c, block, (uint32_t)i);
                aj_llm_tool_args_end(c, (uint32_t)i);
                delta(c, block);
                if (json_is_object(block) && json_object_get(block, "input")) {
                        char *args = json_dumps(json_object_get(block, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
                        u->output_bytes += args ? strlen(args) : 0;
                        free(args);
                }
        }
        json_t *usage = json_object_get(root, "usage");
        take_usage(c, usage, true);
        u->output_reported = json_is_object(usage) && json_object_get(usage, "output_tokens");
        u->outcome = AJ_LLM_COMPLETE;
}
