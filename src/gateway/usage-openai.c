/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenAI responses. Chat Completions: the usage object (prompt_tokens with the
 * cached ones, completion_tokens with the reasoning ones); streamed, it comes only
 * in a last chunk with "choices": [] when the request set
 * stream_options.include_usage, which the gateway adds when the client did not
 * (aj_llm_openai_chat_add_usage()). Tool calls are choices[].(delta|message).tool_calls.
 * Responses: the response object that response.completed, response.incomplete
 * and response.failed carry (or the whole body) holds the usage; "..._call" output
 * items are tool calls, but for the built-in tools that run at the provider. A tool
 * call's arguments go to usage-tools.c, whole or in fragments.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/usage-internal.h"
#include "util/macros.h"

/* The searches the provider's server tools ran, as its usage reports them (usage.h
 * server_searches): OpenRouter's usage.server_tool_use.web_search_requests, xAI's
 * usage.server_side_tool_usage_details web_search_calls and x_search_calls (summed: its two
 * search tools, billed alike); the larger when both are there. xAI's code runs there too
 * (server_code_runs), and what the provider says the call cost. */
static void server_searches(AjLlmCall *c, json_t *usage)
{
        json_t *xai = json_object_get(usage, "server_side_tool_usage_details");
        uint64_t v, web = 0, x = 0;
        bool have_web = aj_llm_u64(xai, "web_search_calls", &web), have_x = aj_llm_u64(xai, "x_search_calls", &x);
        bool have = false;
        uint64_t n = 0;
        if (aj_llm_u64(json_object_get(usage, "server_tool_use"), "web_search_requests", &v)) {
                n = v;
                have = true;
        }
        if (have_web || have_x) {
                v = web > UINT64_MAX - x ? UINT64_MAX : web + x;
                n = v > n ? v : n;
                have = true;
        }
        if (have) {
                c->u.server_searches = n;
                c->u.server_searches_reported = true;
        }
        if (aj_llm_u64(xai, "code_interpreter_calls", &v)) {
                c->u.server_code_runs = v;
                c->u.server_code_runs_reported = true;
        }
        aj_llm_provider_cost(c, usage);
}

static void chat_usage(AjLlmCall *c, json_t *usage)
{
        AjLlmUsage *u = &c->u;
        uint64_t v;
        if (!json_is_object(usage))
                return;
        if (aj_llm_u64(usage, "prompt_tokens", &v)) {
                u->input_tokens = v;
                u->input_reported = true;
        }
        if (aj_llm_u64(usage, "completion_tokens", &v)) {
                u->output_tokens = v;
                u->output_reported = true;
        }
        if (aj_llm_u64(json_object_get(usage, "prompt_tokens_details"), "cached_tokens", &v))
                u->cache_read_tokens = v;
        if (aj_llm_u64(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens", &v))
                u->reasoning_tokens = v;
        server_searches(c, usage);
}

static uint32_t chat_key(json_int_t choice, json_int_t index)
{
        return (uint32_t)(choice & 0xffff) << 16 | (uint32_t)(index & 0xffff);
}

/* A tool call's function ({"name", "arguments": JSON text}) or, for a custom tool,
 * custom ({"name", "input": free text}); *ret_args the member of its arguments. */
static json_t *chat_fn(json_t *tc, const char **ret_args)
{
        json_t *fn = json_object_get(tc, "function");
        *ret_args = "arguments";
        if (!fn && (fn = json_object_get(tc, "custom")))
                *ret_args = "input";
        return fn;
}

/* Keys of streamed calls without an "index": (choice << 16) | CHAT_UNINDEXED | n. */
#define CHAT_UNINDEXED 0x8000u

/* Some OpenAI-compatible servers stream tool calls without "index" (often a call whole in
 * one chunk): keyed by index 0 they all were one call, and a response asking for five was
 * counted as one. Without an index, a chunk naming a call (an id other than the choice's
 * last unindexed call's, or a name) starts the choice's next call; a chunk with neither
 * continues its last one. */
static uint32_t chat_unindexed_key(const AjLlmCall *c, json_int_t choice, json_t *tc, const char *name)
{
        uint32_t base = chat_key(choice, CHAT_UNINDEXED);
        int last = -1;
        uint32_t n = 0;
        for (size_t k = 0; k < c->u.n_tool_calls; k++)
                if ((c->tool_args[k].key & ~(CHAT_UNINDEXED - 1)) == base) {
                        last = (int)k;
                        n++;
                }
        const char *id = json_string_value(json_object_get(tc, "id"));
        if (last >= 0) {
                const char *last_id = c->u.tool_call_ids[last];
                if (id ? last_id && streq(id, last_id) : !name)
                        return c->tool_args[last].key;
        }
        /* Past the kept calls, every chunk naming a call is counted (aj_llm_tool_call). */
        return base | (n & (CHAT_UNINDEXED - 1));
}

/* Whether a chunk at the key of call `k` starts another call: it names an id, and not
 * that call's. Ollama streams every call whole with "index": 0 (ollama#15457), so keyed by
 * index alone, a response asking for three was counted one. */
static bool chat_another_call(const AjLlmCall *c, int k, json_t *tc)
{
        const char *id = json_string_value(json_object_get(tc, "id"));
        return k >= 0 && id && c->u.tool_call_ids[k] && !streq(id, c->u.tool_call_ids[k]);
}

/* A streamed tool call: counted once per (choice, index), when its name is seen, and again
 * for each new id at that index (the call before it is whole then; chunks without an id
 * go on with the latest); its arguments are the fragments of function.arguments
 * (custom.input), digested at the response's end. */
static void chat_stream_tool(AjLlmCall *c, json_int_t choice, json_t *tc)
{
        const char *akey;
        json_t *fn = chat_fn(tc, &akey), *args = json_object_get(fn, akey);
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *index = json_object_get(tc, "index");
        uint32_t key = json_is_integer(index) ? chat_key(choice, json_integer_value(index) & (CHAT_UNINDEXED - 1))
                                              : chat_unindexed_key(c, choice, tc, name);
        aj_llm_output_bytes(c, fn, akey);
        int k = aj_llm_tool_find(c, key);
        bool another = chat_another_call(c, k, tc);
        if (another)
                aj_llm_tool_args_end(c, key);
        if (name && (k < 0 || another))
                (void)aj_llm_tool_call(c, name, json_object_get(tc, "id"), key);
        if (json_is_string(args))
                aj_llm_tool_args_fragment(c, key, json_string_value(args), json_string_length(args));
}

/* A whole tool call: function.arguments is a string of JSON (custom.input free text). */
static void chat_tool(AjLlmCall *c, json_int_t choice, size_t i, json_t *tc)
{
        const char *akey;
        json_t *fn = chat_fn(tc, &akey), *args = json_object_get(fn, akey);
        uint32_t key = chat_key(choice, (json_int_t)i);
        if (aj_llm_tool_call(c, json_string_value(json_object_get(fn, "name")), json_object_get(tc, "id"), key) >= 0 &&
            json_is_string(args))
                aj_llm_tool_args_text(c, key, json_string_value(args), json_string_length(args));
}

/* A Chat search (web_search_options) on a model that may not search: a url_citation
 * annotation says it did (one search: the API reports no count). */
static void chat_annotations(AjLlmCall *c, json_t *msg)
{
        json_t *a;
        size_t i;
        if (!c->u.chat_search || c->u.web_search_requests)
                return;
        json_array_foreach (json_object_get(msg, "annotations"), i, a) {
                const char *type = json_string_value(json_object_get(a, "type"));
                if (type && streq(type, "url_citation")) {
                        c->u.web_search_requests = 1;
                        return;
                }
        }
}

static void chat_choice(AjLlmCall *c, json_t *choice, bool stream)
{
        json_t *msg = json_object_get(choice, stream ? "delta" : "message");
        json_int_t index = json_integer_value(json_object_get(choice, "index"));
        size_t i;
        json_t *tc;
        chat_annotations(c, msg);
        aj_llm_output_bytes(c, msg, "content");
        aj_llm_output_bytes(c, msg, "refusal");
        json_array_foreach (json_object_get(msg, "tool_calls"), i, tc) {
                if (stream)
                        chat_stream_tool(c, index, tc);
                else
                        chat_tool(c, index, i, tc);
        }
        const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
        if (finish && !c->u.stop_reason)
                aj_llm_set_name(&c->u.stop_reason, finish);
        /* The choice is finished: its streamed calls are whole (an agent may run them now). */
        for (size_t k = 0; finish && stream && k < c->u.n_tool_calls; k++)
                if (c->tool_args[k].key >> 16 == ((uint32_t)index & 0xffff))
                        aj_llm_tool_args_end(c, c->tool_args[k].key);
}

bool aj_llm_chat_event(AjLlmCall *c, json_t *root)
{
        json_t *choices = json_object_get(root, "choices"), *choice;
        size_t i;
        if (!c->u.response_model)
                aj_llm_set_name(&c->u.response_model, json_string_value(json_object_get(root, "model")));
        json_array_foreach (choices, i, choice)
                chat_choice(c, choice, true);
        json_t *usage = json_object_get(root, "usage");
        chat_usage(c, usage);
        json_t *error = json_object_get(root, "error");
        if (error && !json_is_null(error))
                aj_llm_error_object(c, error);
        return json_is_array(choices) && json_array_size(choices) == 0 && json_is_object(usage);
}

/* A 2xx whole answer without its answer (`answer`, an array) and without usage: no answer but
 * an acknowledgment of work the provider runs later (usage.h acknowledged). */
static void acknowledged(AjLlmCall *c, json_t *root, const char *answer)
{
        if (c->u.status / 100 == 2 && !json_is_array(json_object_get(root, answer)) &&
            !json_is_object(json_object_get(root, "usage")))
                c->u.acknowledged = true;
}

void aj_llm_chat_body(AjLlmCall *c, json_t *root)
{
        json_t *choice;
        size_t i;
        aj_llm_set_name(&c->u.response_model, json_string_value(json_object_get(root, "model")));
        json_array_foreach (json_object_get(root, "choices"), i, choice)
                chat_choice(c, choice, false);
        chat_usage(c, json_object_get(root, "usage"));
        acknowledged(c, root, "choices");
        c->u.outcome = AJ_LLM_COMPLETE;
}

/* ---- Responses ---- */

/* A call item: every output item "..._call" is a call the client carries out (a
 * function's, a custom tool's, and the built-in tools the client runs: computer_call,
 * local_shell_call, shell_call, apply_patch_call; one added later too: fail closed),
 * except the built-in tools that run at the provider. */
static bool is_tool_item(const char *type)
{
        static const char *const at_provider[] = { "web_search_call",       "file_search_call", "code_interpreter_call",
                                                   "image_generation_call", "mcp_call",         "x_search_call" };
        size_t n = type ? strlen(type) : 0;
        if (n <= 5 || !streq(type + n - 5, "_call"))
                return false;
        for (size_t i = 0; i < ARRAY_SIZE(at_provider); i++)
                if (streq(type, at_provider[i]))
                        return false;
        return true;
}

/* An item of a call the provider ran itself, by the family of its tool (AJ_XAI_*), or 0: xAI's
 * x_search_call, and the custom_tool_call items its server-side tools list their internal calls
 * as (usage-tools.c aj_llm_xai_server_call(): named as one, enabled by the request, and no tool
 * of the client's). */
static unsigned server_item(const AjLlmCall *c, json_t *item)
{
        const char *type = json_string_value(json_object_get(item, "type"));
        if (type && streq(type, "x_search_call"))
                return AJ_XAI_X;
        if (!type || !streq(type, "custom_tool_call"))
                return 0;
        return aj_llm_xai_server_call(c, json_string_value(json_object_get(item, "name")));
}

/* A tool call item's whole arguments: function_call's arguments (JSON text),
 * custom_tool_call's input (free text); a built-in tool's action (computer, shell) or
 * operation (apply_patch), else the item without its ids and status, as JSON. */
static void item_args(AjLlmCall *c, json_t *item, uint32_t key)
{
        const char *type = json_string_value(json_object_get(item, "type"));
        if (!is_tool_item(type) || server_item(c, item))
                return;
        if (streq(type, "function_call") || streq(type, "custom_tool_call")) {
                json_t *args = json_object_get(item, streq(type, "function_call") ? "arguments" : "input");
                if (json_is_string(args))
                        aj_llm_tool_args_text(c, key, json_string_value(args), json_string_length(args));
                return;
        }
        json_t *args = json_object_get(item, "action") ?: json_object_get(item, "operation");
        json_t *rest = args ? NULL : json_copy(item);
        if (rest) {
                json_object_del(rest, "id");
                json_object_del(rest, "call_id");
                json_object_del(rest, "status");
        }
        if (args || rest)
                aj_llm_tool_args_json(c, key, args ?: rest);
        aj_llm_tool_args_end(c, key);
        json_decref(rest);
}

/* The Responses API's built-in tools the provider bills per use besides web search: the
 * fee an item of `type` counts toward, or -1 (the code interpreter's per container). */
static int fee_item(const char *type)
{
        if (!type)
                return -1;
        if (streq(type, "file_search_call"))
                return AJ_TOOL_FEE_FILE_SEARCH;
        if (streq(type, "image_generation_call"))
                return AJ_TOOL_FEE_IMAGE_GENERATION;
        if (streq(type, "code_interpreter_call"))
                return AJ_TOOL_FEE_CODE_INTERPRETER;
        return -1;
}

/* The fee an item counts toward (fee_item()), and xAI's collections_search calls (of its
 * file_search tool, custom_tool_call items): billed per call, a file search's use each. */
static int item_fee(const AjLlmCall *c, json_t *item, const char *type)
{
        int fee = fee_item(type);
        return fee < 0 && server_item(c, item) == AJ_XAI_COLLECTIONS ? AJ_TOOL_FEE_FILE_SEARCH : fee;
}

/* Whether a code_interpreter_call item ran in a container not counted yet among `seen` (n
 * kept, at most max); an item without a container id is another container. */
static bool new_container(const char *id, const char **seen, size_t n)
{
        for (size_t i = 0; id && i < n; i++)
                if (streq(seen[i], id))
                        return false;
        return true;
}

/* A code interpreter container in the stream: billed once, however many calls ran in it. */
static void container_used(AjLlmCall *c, json_t *item)
{
        const char *id = json_string_value(json_object_get(item, "container_id"));
        if (!new_container(id, (const char **)c->containers, c->n_containers))
                return;
        if (c->auto_container)
                c->auto_container = false; /* the one counted when the answer started */
        else
                c->u.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER]++;
        if (id && c->n_containers < AJ_LLM_MAX_CONTAINERS && strlen(id) <= AJ_LLM_MAX_NAME &&
            (c->containers[c->n_containers] = strdup(id)))
                c->n_containers++;
}

/* An output item at `key` (its output_index): a tool call is counted, under its name or,
 * for a built-in tool, the item's type without "_call" ("local_shell"). */
static void output_item(AjLlmCall *c, json_t *item, uint32_t key)
{
        const char *type = json_string_value(json_object_get(item, "type"));
        int fee = item_fee(c, item, type);
        /* The web search tool runs at the provider, billed per call: counted for the cost;
         * so are the other built-in tools it bills per use. */
        if (type && streq(type, "web_search_call"))
                c->u.web_search_requests++;
        if (fee == AJ_TOOL_FEE_CODE_INTERPRETER)
                container_used(c, item);
        else if (fee >= 0)
                c->u.tool_uses[fee]++;
        /* A call xAI ran itself: a search or a code run it bills (a view of what a search found
         * is billed as tokens), no call of the client's. */
        unsigned family = server_item(c, item);
        if (!(family & AJ_XAI_VIEW) && (family & (AJ_XAI_WEB | AJ_XAI_X)))
                c->xai_search_items++;
        else if (family == AJ_XAI_CODE)
                c->xai_code_items++;
        if (family || !is_tool_item(type))
                return;
        const char *name = json_string_value(json_object_get(item, "name"));
        char builtin[AJ_LLM_MAX_NAME];
        if (!name) {
                snprintf(builtin, sizeof(builtin), "%.*s", (int)(strlen(type) - 5), type);
                name = builtin;
        }
        (void)aj_llm_tool_call(c, name, json_object_get(item, "call_id"), key);
}

static void responses_usage(AjLlmCall *c, json_t *usage)
{
        AjLlmUsage *u = &c->u;
        uint64_t v;
        if (!json_is_object(usage))
                return;
        if (aj_llm_u64(usage, "input_tokens", &v)) {
                u->input_tokens = v;
                u->input_reported = true;
        }
        if (aj_llm_u64(usage, "output_tokens", &v)) {
                u->output_tokens = v;
                u->output_reported = true;
        }
        if (aj_llm_u64(json_object_get(usage, "input_tokens_details"), "cached_tokens", &v))
                u->cache_read_tokens = v;
        if (aj_llm_u64(json_object_get(usage, "output_tokens_details"), "reasoning_tokens", &v))
                u->reasoning_tokens = v;
        server_searches(c, usage);
}

/* A final response object: usage, status, why it stopped. */
/* The response's id, which a later request's previous_response_id may name. */
static void response_id(AjLlmCall *c, json_t *resp)
{
        const char *id = json_string_value(json_object_get(resp, "id"));
        if (!id || (c->u.response_id && streq(c->u.response_id, id)))
                return;
        char *d = strdup(id);
        if (!d)
                return;
        free(c->u.response_id);
        c->u.response_id = d;
}

static void final_response(AjLlmCall *c, json_t *resp)
{
        AjLlmUsage *u = &c->u;
        const char *status = json_string_value(json_object_get(resp, "status"));
        aj_llm_set_name(&u->response_model, json_string_value(json_object_get(resp, "model")));
        response_id(c, resp);
        responses_usage(c, json_object_get(resp, "usage"));
        if (status && streq(status, "incomplete")) {
                const char *why = json_string_value(
                        json_object_get(json_object_get(resp, "incomplete_details"), "reason"));
                aj_llm_set_name(&u->stop_reason, why ? why : status);
                if (u->outcome != AJ_LLM_FAILED)
                        u->outcome = AJ_LLM_INCOMPLETE;
        } else if (status && streq(status, "failed")) {
                aj_llm_set_name(&u->stop_reason, status);
                json_t *err = json_object_get(resp, "error");
                if (json_is_object(err))
                        aj_llm_error_object(c, err);
                else
                        aj_llm_provider_error(c, "failed", "the response failed without an error object");
        } else {
                aj_llm_set_name(&u->stop_reason, status ? status : "completed");
                if (u->outcome == AJ_LLM_PENDING)
                        u->outcome = AJ_LLM_COMPLETE;
        }
}

static uint32_t output_index(json_t *root)
{
        return (uint32_t)json_integer_value(json_object_get(root, "output_index"));
}

/* The items of a final response: the arguments of calls no ".done" event gave, and its
 * web searches, which the stream's ".added" events may have named fewer of. */
static void final_items(AjLlmCall *c, json_t *resp)
{
        json_t *item;
        size_t i;
        uint64_t searches = 0, uses[AJ_TOOL_FEES] = {}, server_searches = 0, server_code = 0;
        const char *containers[AJ_LLM_MAX_CONTAINERS];
        size_t n_containers = 0;
        json_array_foreach (json_object_get(resp, "output"), i, item) {
                const char *type = json_string_value(json_object_get(item, "type"));
                const char *id = json_string_value(json_object_get(item, "container_id"));
                int fee = item_fee(c, item, type);
                searches += type && streq(type, "web_search_call");
                unsigned family = server_item(c, item);
                server_searches += !(family & AJ_XAI_VIEW) && (family & (AJ_XAI_WEB | AJ_XAI_X));
                server_code += family == AJ_XAI_CODE;
                if (fee >= 0 && fee != AJ_TOOL_FEE_CODE_INTERPRETER)
                        uses[fee]++;
                else if (fee >= 0 && new_container(id, containers, n_containers)) {
                        uses[fee]++;
                        if (id && n_containers < AJ_LLM_MAX_CONTAINERS)
                                containers[n_containers++] = id;
                }
                item_args(c, item, (uint32_t)i);
        }
        if (searches > c->u.web_search_requests)
                c->u.web_search_requests = searches;
        if (server_searches > c->xai_search_items)
                c->xai_search_items = server_searches;
        if (server_code > c->xai_code_items)
                c->xai_code_items = server_code;
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                if (uses[f] > c->u.tool_uses[f])
                        c->u.tool_uses[f] = uses[f];
}

/* Argument events: fragments (".delta"), then the whole (".done"). */
static bool args_event(AjLlmCall *c, const char *type, json_t *root)
{
        json_t *v;
        if (streq(type, "response.function_call_arguments.delta") ||
            streq(type, "response.custom_tool_call_input.delta")) {
                aj_llm_output_bytes(c, root, "delta");
                if (json_is_string(v = json_object_get(root, "delta")))
                        aj_llm_tool_args_fragment(c, output_index(root), json_string_value(v), json_string_length(v));
        } else if (streq(type, "response.function_call_arguments.done") ||
                   streq(type, "response.custom_tool_call_input.done")) {
                v = json_object_get(root, streq(type, "response.function_call_arguments.done") ? "arguments" : "input");
                if (json_is_string(v))
                        aj_llm_tool_args_text(c, output_index(root), json_string_value(v), json_string_length(v));
        } else if (streq(type, "response.output_item.done"))
                item_args(c, json_object_get(root, "item"), output_index(root));
        else
                return false;
        return true;
}

void aj_llm_responses_event(AjLlmCall *c, const char *type, json_t *root)
{
        if (streq(type, "response.created") || streq(type, "response.in_progress")) {
                response_id(c, json_object_get(root, "response"));
                if (!c->u.response_model)
                        aj_llm_set_name(&c->u.response_model,
                                        json_string_value(json_object_get(json_object_get(root, "response"), "model")));
        } else if (streq(type, "response.output_item.added"))
                output_item(c, json_object_get(root, "item"), output_index(root));
        else if (args_event(c, type, root))
                return;
        else if (streq(type, "response.output_text.delta") || streq(type, "response.refusal.delta") ||
                 streq(type, "response.reasoning_summary_text.delta"))
                aj_llm_output_bytes(c, root, "delta");
        else if (streq(type, "response.completed") || streq(type, "response.incomplete") ||
                 streq(type, "response.failed")) {
                final_items(c, json_object_get(root, "response"));
                final_response(c, json_object_get(root, "response"));
        } else if (streq(type, "error"))
                aj_llm_error_object(c, root);
}

void aj_llm_responses_body(AjLlmCall *c, json_t *root)
{
        json_t *item;
        size_t i;
        json_array_foreach (json_object_get(root, "output"), i, item)
                output_item(c, item, (uint32_t)i);
        final_items(c, root);
        final_response(c, root);
        acknowledged(c, root, "output");
}

/* ---- the request rewrites ---- */

/* The body with `member` ("KEY":VALUE,) after its first '{', the client's bytes otherwise
 * unchanged (numbers are not re-printed): 1 with *ret_body malloc'd. The object must not be
 * empty (a request names its model). */
static int insert_member(const char *body, size_t len, const char *member, char **ret_body, size_t *ret_len)
{
        size_t m = strlen(member);
        const char *brace = memchr(body, '{', len);
        if (!brace)
                return -EINVAL;
        size_t head = (size_t)(brace - body) + 1, n = len + m;
        char *out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, body, head);
        memcpy(out + head, member, m);
        memcpy(out + head + m, body + head, len - head);
        out[n] = '\0';
        *ret_body = out;
        *ret_len = n;
        return 1;
}

static int insert_options(const char *body, size_t len, char **ret_body, size_t *ret_len)
{
        return insert_member(body, len, "\"stream_options\":{\"include_usage\":true},", ret_body, ret_len);
}

/* A request body as the rewrite reads it: 0 with *ret one JSON object (json_decref() it);
 * -EINVAL when it is not one or repeats a key, -E2BIG or -ELOOP past the JSON bounds. */
static int request_root(const void *body, size_t len, json_t **ret)
{
        const char *why;
        int r = aj_llm_json_bounded(body, len, &why);
        if (r < 0)
                return r;
        /* Duplicate keys are refused: the provider's parser might read the other one. */
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root)) {
                json_decref(root);
                return -EINVAL;
        }
        *ret = root;
        return 0;
}

/* `o`'s member `key` set to `value` (taken), and `root`, which holds `o`, printed compact: 1
 * with *ret_body malloc'd, or -ENOMEM. */
static int set_and_print(json_t *root, json_t *o, const char *key, json_t *value, char **ret_body, size_t *ret_len)
{
        char *out;
        if (json_object_set_new(o, key, value) < 0 || !(out = json_dumps(root, JSON_COMPACT)))
                return -ENOMEM;
        *ret_len = strlen(out);
        *ret_body = out;
        return 1;
}

int aj_llm_openai_chat_add_usage(const void *body, size_t len, char **ret_body, size_t *ret_len)
{
        json_t *root = NULL;
        int r = request_root(body, len, &root);
        if (r < 0)
                return r;
        if (json_is_true(json_object_get(root, "stream"))) {
                json_t *opts = json_object_get(root, "stream_options");
                if (!opts)
                        r = insert_options(body, len, ret_body, ret_len);
                else if (!json_is_object(opts))
                        r = -EINVAL;
                else if (!json_is_true(json_object_get(opts, "include_usage")))
                        /* There without include_usage true: set, the body re-printed. */
                        r = set_and_print(root, opts, "include_usage", json_true(), ret_body, ret_len);
        }
        json_decref(root);
        return r;
}

const char *aj_llm_output_limit_field(AjLlmApi api)
{
        switch (api) {
        case AJ_LLM_API_OPENAI_CHAT:
                return "max_completion_tokens"; /* OpenAI's reasoning models refuse max_tokens */
        case AJ_LLM_API_OPENAI_RESPONSES:
                return "max_output_tokens";
        default:
                return NULL;
        }
}

int aj_llm_set_output_limit(AjLlmApi api, const void *body, size_t len, uint64_t limit, char **ret_body,
                            size_t *ret_len)
{
        const char *key = aj_llm_output_limit_field(api);
        json_t *root = NULL;
        if (!key || limit > INT64_MAX)
                return -EINVAL;
        int r = request_root(body, len, &root);
        if (r < 0)
                return r;
        if (!json_object_get(root, key)) {
                char member[64];
                snprintf(member, sizeof(member), "\"%s\":%llu,", key, (unsigned long long)limit);
                r = insert_member(body, len, member, ret_body, ret_len);
        } else /* there as no limit (null, a negative number, 0): set, the body re-printed */
                r = set_and_print(root, root, key, json_integer((json_int_t)limit), ret_body, ret_len);
        json_decref(root);
        return r;
}

bool aj_llm_openai_chat_usage_only(const AjSseEvent *ev)
{
        const char *why;
        if (aj_llm_json_bounded(ev->data, ev->data_len, &why) < 0)
                return false;
        json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
        json_t *choices = json_object_get(root, "choices");
        bool only = json_is_array(choices) && json_array_size(choices) == 0 &&
                    json_is_object(json_object_get(root, "usage"));
        json_decref(root);
        return only;
}
