/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model call accumulator (see usage.h): the request, the response's framing
 * (a stream of events or a whole body), the helpers the per-API readers share,
 * and what is charged. The readers themselves are in usage-anthropic.c and
 * usage-openai.c.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentjail/broker.h"
#include "gateway/usage-internal.h"
#include "meter.h"
#include "util/format.h"
#include "util/json-scan.h"
#include "util/macros.h"
#include "util/parse.h"

static const char *const api_names[_AJ_LLM_API_MAX] = {
        [AJ_LLM_API_ANTHROPIC_MESSAGES] = "anthropic.messages",
        [AJ_LLM_API_ANTHROPIC_COUNT_TOKENS] = "anthropic.count_tokens",
        [AJ_LLM_API_OPENAI_CHAT] = "openai.chat_completions",
        [AJ_LLM_API_OPENAI_RESPONSES] = "openai.responses",
};

const char *aj_llm_api_name(AjLlmApi api) { return api >= 0 && api < _AJ_LLM_API_MAX ? api_names[api] : "unknown"; }

const char *aj_llm_outcome_name(AjLlmOutcome o)
{
        static const char *const names[] = {
                [AJ_LLM_PENDING] = "pending", [AJ_LLM_COMPLETE] = "complete", [AJ_LLM_INCOMPLETE] = "incomplete",
                [AJ_LLM_CUT] = "cut",         [AJ_LLM_FAILED] = "failed",
        };
        return o >= 0 && o < (int)ARRAY_SIZE(names) ? names[o] : "unknown";
}

/* Any case: a provider that matches paths without case must not get a model call the
 * gateway took for something else. */
static bool ends_with(const char *s, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);
        return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

int aj_llm_api_from_path(const char *provider_api, const char *path, AjLlmApi *ret)
{
        if (!provider_api || !path)
                return -ENOENT;
        size_t len = strcspn(path, "?#");
        while (len > 1 && path[len - 1] == '/')
                len--;
        if (streq(provider_api, "anthropic")) {
                if (ends_with(path, len, "/v1/messages"))
                        return *ret = AJ_LLM_API_ANTHROPIC_MESSAGES, 0;
                if (ends_with(path, len, "/v1/messages/count_tokens"))
                        return *ret = AJ_LLM_API_ANTHROPIC_COUNT_TOKENS, 0;
        } else if (streq(provider_api, "openai")) {
                /* OpenAI-compatible servers are often mounted without "/v1". */
                if (ends_with(path, len, "/chat/completions"))
                        return *ret = AJ_LLM_API_OPENAI_CHAT, 0;
                if (ends_with(path, len, "/responses"))
                        return *ret = AJ_LLM_API_OPENAI_RESPONSES, 0;
        }
        return -ENOENT;
}

int aj_llm_call_new(AjLlmApi api, AjLlmCall **ret)
{
        if (api < 0 || api >= _AJ_LLM_API_MAX)
                return -EINVAL;
        AjLlmCall *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->api = api;
        *ret = c;
        return 0;
}

AjLlmUpstream aj_llm_upstream_from_url(const char *url)
{
        static const char host[] = "api.openai.com";
        if (!url || strncasecmp(url, "https://", 8) != 0)
                return AJ_LLM_UPSTREAM_OTHER;
        const char *a = url + 8;
        size_t alen = strcspn(a, "/"), n = sizeof(host) - 1;
        if (alen < n || strncasecmp(a, host, n) != 0)
                return AJ_LLM_UPSTREAM_OTHER;
        if (alen == n || (alen == n + 4 && strncmp(a + n, ":443", 4) == 0))
                return AJ_LLM_UPSTREAM_OPENAI;
        return AJ_LLM_UPSTREAM_OTHER;
}

void aj_llm_call_set_upstream(AjLlmCall *c, AjLlmUpstream upstream) { c->upstream = upstream; }

void aj_llm_call_free(AjLlmCall *c)
{
        if (!c)
                return;
        AjLlmUsage *u = &c->u;
        free(u->model);
        free(u->unmetered);
        free(u->unknown_variant);
        free(u->response_model);
        free(u->response_id);
        free(u->previous_response_id);
        free(u->stop_reason);
        aj_llm_reach_done(&u->reach);
        for (size_t i = 0; i < u->n_tool_calls; i++) {
                free(u->tool_calls[i]);
                free(u->tool_call_ids[i]);
                free(c->tool_args[i].buf);
        }
        for (size_t i = 0; i < u->n_tool_results; i++)
                free(u->tool_result_ids[i]);
        free(u->error);
        free(u->parse_error);
        free(u->provider_cost_error);
        for (size_t i = 0; i < c->n_containers; i++)
                free(c->containers[i]);
        aj_sse_free(c->sse);
        free(c->body);
        free(c);
}

const AjLlmUsage *aj_llm_call_usage(const AjLlmCall *c) { return &c->u; }

void aj_llm_call_strip_usage_chunk(AjLlmCall *c, bool strip) { c->strip_usage = strip; }

/* ---- helpers for the readers ---- */

int aj_llm_json_bounded(const void *text, size_t len, const char **ret_why)
{
        _Static_assert(AJ_LLM_MAX_JSON_VALUES == 1048576 && AJ_LLM_MAX_JSON_DEPTH == 128, "the messages below");
        int r = aj_json_scan(text, len, AJ_LLM_MAX_JSON_VALUES, AJ_LLM_MAX_JSON_DEPTH, NULL);
        if (r == -E2BIG)
                *ret_why = "more than 1048576 JSON values";
        else if (r == -ELOOP)
                *ret_why = "JSON nested deeper than 128 levels";
        return r;
}

/* What the gateway relays but cannot read still costs: a response it cannot meter must
 * not be a free one (a broken or hostile provider, an answer padded past a bound). Its
 * bytes count as output seen (aj_llm_call_charge: a token per AJ_LLM_BYTES_PER_TOKEN), and
 * the call is marked: the meter counts a tool call it may hold. */
static void unread(AjLlmCall *c, size_t len)
{
        c->u.output_bytes += len;
        c->u.unread = true;
}

/* At most `max` bytes of s, not splitting a UTF-8 sequence. */
static char *bounded_copy(const char *s, size_t max)
{
        size_t n = strnlen(s, max + 1);
        if (n > max) {
                n = max;
                while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                        n--;
        }
        return strndup(s, n);
}

void aj_llm_set_name(char **dst, const char *s)
{
        if (!s)
                return;
        char *n = bounded_copy(s, AJ_LLM_MAX_NAME);
        if (!n)
                return; /* out of memory: the old value stays */
        free(*dst);
        *dst = n;
}

void aj_llm_provider_error(AjLlmCall *c, const char *type, const char *message)
{
        c->u.outcome = AJ_LLM_FAILED;
        if (c->u.error)
                return;
        char *e = NULL;
        if (asprintf(&e, "%s: %s", type ? type : "error", message ? message : "(no message)") < 0)
                return;
        c->u.error = bounded_copy(e, AJ_LLM_MAX_ERROR);
        free(e);
}

void aj_llm_error_object(AjLlmCall *c, json_t *err)
{
        const char *type = json_string_value(json_object_get(err, "type"));
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *message = json_string_value(json_object_get(err, "message"));
        if (json_is_string(err))
                message = json_string_value(err);
        aj_llm_provider_error(c, code ? code : type, message);
}

/* The first message of its kind is kept in *dst (at most AJ_LLM_MAX_ERROR bytes). */
_printf_(2, 0) static void first_message(char **dst, const char *fmt, va_list ap)
{
        char *m = NULL;
        if (*dst || aj_vasprintf(&m, fmt, ap) < 0)
                return;
        *dst = bounded_copy(m, AJ_LLM_MAX_ERROR);
        free(m);
}

void aj_llm_parse_error(AjLlmCall *c, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        first_message(&c->u.parse_error, fmt, ap);
        va_end(ap);
}

bool aj_llm_u64(json_t *o, const char *key, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t)json_integer_value(v);
        return true;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

_printf_(2, 3) static void provider_cost_error(AjLlmCall *c, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        first_message(&c->u.provider_cost_error, fmt, ap);
        va_end(ap);
}

/* A provider's figure `v` (member `name`, in USD, or in xAI's ticks of 1e-10 USD) in pico-USD:
 * true and *ret_pusd when it can be taken; a figure past AJ_LLM_MAX_PROVIDER_COST_USD is taken
 * as that (fail closed), with an error; one that is not a number, or negative, is an error, not
 * taken. */
static bool cost_figure(AjLlmCall *c, const char *name, json_t *v, bool ticks, uint64_t *ret_pusd)
{
        if (!json_is_number(v)) {
                provider_cost_error(c, "usage.%s is not a number: not taken", name);
                return false;
        }
        /* A whole number of ticks is exact in pico-USD (100 each) below the bound. */
        if (ticks && json_is_integer(v) && json_integer_value(v) >= 0 &&
            json_integer_value(v) <= (json_int_t)AJ_LLM_MAX_PROVIDER_COST_USD * 10000000000) {
                *ret_pusd = (uint64_t)json_integer_value(v) * 100;
                return true;
        }
        double usd = json_number_value(v) * (ticks ? 1e-10 : 1);
        if (!isfinite(usd) || usd < 0) {
                provider_cost_error(c, "usage.%s %.17g is negative: not taken", name, json_number_value(v));
                return false;
        }
        if (usd > AJ_LLM_MAX_PROVIDER_COST_USD) {
                provider_cost_error(c, "usage.%s %.17g is past %d USD a call: charged %d USD", name,
                                    json_number_value(v), AJ_LLM_MAX_PROVIDER_COST_USD, AJ_LLM_MAX_PROVIDER_COST_USD);
                usd = AJ_LLM_MAX_PROVIDER_COST_USD;
        }
        *ret_pusd = aj_round_u64(usd * AJ_PUSD_PER_USD);
        return true;
}

void aj_llm_provider_cost(AjLlmCall *c, json_t *usage)
{
        json_t *ticks = json_object_get(usage, "cost_in_usd_ticks"), *cost = json_object_get(usage, "cost");
        uint64_t pusd = 0, v;
        bool taken = false;
        if (!json_is_object(usage))
                return;
        if (ticks && !json_is_null(ticks) && cost_figure(c, "cost_in_usd_ticks", ticks, true, &v)) {
                pusd = v;
                taken = true;
        }
        /* Perplexity's: an object of the parts (tokens, its per-request search fee) and their sum. */
        const char *cost_name = "cost";
        if (json_is_object(cost)) {
                cost_name = "cost.total_cost";
                if (!(cost = json_object_get(cost, "total_cost")))
                        provider_cost_error(c, "usage.cost has no total_cost: not taken");
        }
        if (cost && !json_is_null(cost) && cost_figure(c, cost_name, cost, false, &v)) {
                /* A BYOK call: "cost" is OpenRouter's fee, the inference billed on the user's own key. */
                json_t *up = json_object_get(json_object_get(usage, "cost_details"), "upstream_inference_cost");
                uint64_t w = 0;
                if (json_is_true(json_object_get(usage, "is_byok")) && up && !json_is_null(up) &&
                    cost_figure(c, "cost_details.upstream_inference_cost", up, false, &w))
                        v = v > UINT64_MAX - w ? UINT64_MAX : v + w;
                pusd = max_u64(pusd, v);
                taken = true;
        }
        if (!taken)
                return;
        c->u.provider_cost_pusd = max_u64(c->u.provider_cost_pusd, pusd);
        c->u.provider_cost_reported = true;
}

void aj_llm_output_bytes(AjLlmCall *c, json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);
        if (json_is_string(v))
                c->u.output_bytes += json_string_length(v);
}

/* ---- the request ---- */

static bool member_is(json_t *o, const char *key, const char *value)
{
        const char *s = json_string_value(json_object_get(o, key));
        return s && streq(s, value);
}

/* Whether the string `s`, member `key` of `parent` (itself member `pkey` of its own object),
 * gives the content of an image, document, file or audio part, estimated at
 * AJ_LLM_BLOB_TOKENS whatever its size, since the provider reads it as such however it is
 * given: the data of a base64 source (Anthropic's), input_audio's data, Chat's
 * image_url.url and file.file_data / file_id, Responses' input_image image_url / file_id
 * and input_file file_data / file_url / file_id, Anthropic's url and file sources. Anywhere
 * else, and a plain-text document's data, it is text the provider reads as tokens: taken
 * for an image by its key ("data") or its first bytes ("data:"), 600 KB of text were
 * reserved as 1600 tokens; and an image given by URL or file id counted its few bytes. */
bool aj_llm_blob_at(const char *key, json_t *parent, const char *pkey)
{
        if (!key || !parent)
                return false;
        if (streq(key, "data"))
                return member_is(parent, "type", "base64") || (pkey && streq(pkey, "input_audio"));
        if (streq(key, "url"))
                return (pkey && streq(pkey, "image_url")) || member_is(parent, "type", "url");
        if (streq(key, "image_url"))
                return member_is(parent, "type", "input_image");
        if (streq(key, "file_data") || streq(key, "file_url") || streq(key, "file_id"))
                return (pkey && streq(pkey, "file")) || member_is(parent, "type", "input_file") ||
                       member_is(parent, "type", "input_image") || member_is(parent, "type", "file");
        return false;
}

/* Bytes of text in a request, and its base64 blobs (images, documents, audio): only in the
 * conversation (`media`: under "messages" or "input"), where parts are read as such; a tool's
 * schema shaped like an image part is text to the provider. */
static void measure(json_t *v, const char *key, json_t *parent, const char *pkey, bool media, uint64_t *bytes,
                    uint64_t *blobs)
{
        const char *k;
        json_t *e;
        size_t i;
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                json_object_foreach (v, k, e) {
                        *bytes += strlen(k);
                        measure(e, k, v, key, media, bytes, blobs);
                }
                break;
        case JSON_ARRAY:
                json_array_foreach (v, i, e)
                        measure(e, NULL, NULL, key, media, bytes, blobs);
                break;
        case JSON_STRING:
                if (media && aj_llm_blob_at(key, parent, pkey))
                        (*blobs)++;
                else
                        *bytes += json_string_length(v);
                break;
        default:
                *bytes += 4;
        }
}

static void measure_request(json_t *root, uint64_t *bytes, uint64_t *blobs)
{
        const char *k;
        json_t *e;
        json_object_foreach (root, k, e) {
                *bytes += strlen(k);
                measure(e, k, root, NULL, streq(k, "messages") || streq(k, "input"), bytes, blobs);
        }
}

/* A whole number of tokens or answers as the provider might read it: an integer, or a
 * real with no fraction (1e5: OpenAI-compatible servers validate leniently and take
 * 100000.0 as 100000). 1 with *ret set; 0 for a member absent, null or negative (no
 * limit: llama.cpp's -1); -1 for anything else (a string, a fraction, true), which the
 * provider might read as a number all the same. */
static int whole_of(json_t *v, uint64_t *ret)
{
        double d = json_is_real(v) ? json_real_value(v) : -1;
        if (!v || json_is_null(v) || (json_is_number(v) && json_number_value(v) < 0))
                return 0;
        if (json_is_integer(v))
                *ret = (uint64_t)json_integer_value(v);
        else if (d >= 0 && d <= 1e15 && d == (double)(uint64_t)d)
                *ret = (uint64_t)d;
        else
                return -1;
        return 1;
}

/* The output limit: the larger of the members naming it (a server reads one or the other:
 * vLLM max_completion_tokens first, others max_tokens), 0 when none is set. -EINVAL with
 * *ret_key the member when one is not a whole number (whole_of()). */
/* The members naming each API's output limit. */
static const char *const output_limit_keys[_AJ_LLM_API_MAX][2] = {
        [AJ_LLM_API_ANTHROPIC_MESSAGES] = { "max_tokens", NULL },
        [AJ_LLM_API_ANTHROPIC_COUNT_TOKENS] = { NULL, NULL },
        /* max_tokens is the older name of max_completion_tokens, which OpenAI's reasoning
         * models take (they refuse max_tokens). */
        [AJ_LLM_API_OPENAI_CHAT] = { "max_completion_tokens", "max_tokens" },
        [AJ_LLM_API_OPENAI_RESPONSES] = { "max_output_tokens", NULL },
};

static int max_output_of(AjLlmApi api, json_t *root, uint64_t *ret, const char **ret_key)
{
        const char *const *keys = output_limit_keys[api];
        uint64_t most = 0, v;
        for (size_t i = 0; i < 2 && keys[i]; i++) {
                int r = whole_of(json_object_get(root, keys[i]), &v);
                if (r < 0) {
                        *ret_key = keys[i];
                        return -EINVAL;
                }
                if (r > 0 && v > most)
                        most = v;
        }
        *ret = most;
        return 0;
}

/* How many answers the request asks for ("n", and "best_of" that OpenAI-compatible servers
 * generate and then choose from): 1 unless either is set. A member the provider might read
 * as a number but that is not a positive whole one is refused: the worst case would not be
 * known. 0 on success, -EINVAL with *ret_key the member. */
static int choices_of(json_t *root, uint64_t *ret, const char **ret_key)
{
        static const char *const keys[] = { "n", "best_of" };
        uint64_t most = 1;
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                json_t *v = json_object_get(root, keys[i]);
                uint64_t k = 0;
                if (!v || json_is_null(v))
                        continue;
                if (whole_of(v, &k) <= 0 || k == 0) {
                        *ret_key = keys[i];
                        return -EINVAL;
                }
                most = k > most ? k : most;
        }
        *ret = most;
        return 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        uint64_t r;
        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* A member that lets the provider bill beyond tokens in a way the gateway cannot meter
 * (usage.h unmetered): the first one is kept, as "WHAT \"VALUE\"" (the value shown as JSON,
 * cut), for the refusal under a cost cap. */
static void unmetered(AjLlmCall *c, const char *what, const char *value)
{
        if (c->u.unmetered)
                return;
        json_auto_t *v = value ? json_string(value) : NULL;
        _cleanup_free_ char *shown = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
        char *s = NULL;
        if (asprintf(&s, "%s%s%.80s", what, shown ? " " : "", shown ? shown : "") < 0)
                return;
        c->u.unmetered = s;
}

/* A tool's type as the name of a provider's built-in tool: what follows its namespace when
 * it has one (OpenRouter's server tools, "openrouter:web_search", "openrouter:web_fetch",
 * "openrouter:image_generation", which it runs for any model on any API, 0 to N times a
 * request, bounded by no member the gateway reads, and whose uses the response does not
 * report). *ret_namespaced says it had one. */
static const char *tool_type(json_t *tool, bool *ret_namespaced)
{
        const char *type = json_string_value(json_object_get(tool, "type"));
        const char *colon = type ? strrchr(type, ':') : NULL;
        *ret_namespaced = colon != NULL;
        return colon ? colon + 1 : type;
}

/* xAI's X search tool ("x_search"): billed per call like its web search ($5 per 1,000 calls,
 * docs.x.ai's pricing), run 0 to N times a request, and its calls are not items of the
 * response the gateway counts. */
static bool x_search_tool(const char *type) { return type && strncasecmp(type, "x_search", 8) == 0; }

/* A web search tool the provider runs: Anthropic's "web_search_20250305" (and later
 * versions), the Responses API's "web_search", "web_search_preview" and their dated
 * versions, a namespaced one (tool_type()), xAI's x_search. Any case: a provider matching it
 * so would run the searches. */
static bool search_tool(json_t *tool)
{
        bool namespaced;
        const char *type = tool_type(tool, &namespaced);
        return type && (strncasecmp(type, "web_search", 10) == 0 || x_search_tool(type));
}

/* A tool type that bills nothing beyond tokens: one the client runs (a function, a custom
 * tool, OpenAI's local_shell, shell, computer_use_preview and apply_patch, Anthropic's bash_*,
 * text_editor_*, computer_* and memory_*), or one the provider runs free (a remote MCP server's
 * tools, "mcp" and Anthropic's "mcp_toolset"; Anthropic's tool_search_tool_*). Exact names in
 * lower case, versioned families by prefix: a provider reading another spelling as a paid tool
 * is not given the benefit of the doubt. Never under a namespace (tool_type()): a namespaced
 * type is a provider's own tool, not the client's, and the one free there is OpenRouter's
 * "openrouter:datetime" (free_typed_tool()). */
static bool free_tool(const char *type)
{
        static const char *const exact[] = { "function", "custom", "local_shell", "shell", "apply_patch" };
        static const char *const prefix[] = {
                "computer", "bash_", "text_editor_", "memory", "mcp", "tool_search_tool_"
        };
        for (size_t i = 0; i < ARRAY_SIZE(exact); i++)
                if (streq(type, exact[i]))
                        return true;
        for (size_t i = 0; i < ARRAY_SIZE(prefix); i++)
                if (strncmp(type, prefix[i], strlen(prefix[i])) == 0)
                        return true;
        return false;
}

/* A tool whose type (`full`, as given; `type`, tool_type()'s) bills nothing beyond tokens. */
static bool free_typed_tool(const char *full, const char *type, bool namespaced)
{
        return namespaced ? streq(full, "openrouter:datetime") : free_tool(type);
}

/* A group of tools under one name (the Responses API's "namespace": {"type": "namespace",
 * "name", "tools": [...]}, as Codex sends its multi-agent functions), billing nothing beyond
 * tokens when every tool it holds is a client's own (a function or a custom tool): a group
 * holding a provider's tool, another group, or anything else is not looked into further and
 * stays a type the gateway does not know. */
static bool free_namespace(json_t *tool)
{
        const char *type = json_string_value(json_object_get(tool, "type"));
        if (!type || !streq(type, "namespace"))
                return false;
        json_t *tools = json_object_get(tool, "tools"), *member;
        size_t i;
        if (!json_is_array(tools))
                return false;
        json_array_foreach (tools, i, member) {
                const char *t = json_string_value(json_object_get(member, "type"));
                if (!t || !(streq(t, "function") || streq(t, "custom")))
                        return false;
        }
        return true;
}

/* The provider's tool billed per use that `tool` offers (usage.h tool_offered), or -1. Any
 * case and version, as search_tool(). */
static int fee_tool(json_t *tool)
{
        static const struct {
                const char *prefix;
                AjToolFee fee;
        } tools[] = {
                { "web_fetch", AJ_TOOL_FEE_WEB_FETCH },
                { "file_search", AJ_TOOL_FEE_FILE_SEARCH },
                { "code_interpreter", AJ_TOOL_FEE_CODE_INTERPRETER },
                { "image_generation", AJ_TOOL_FEE_IMAGE_GENERATION },
                { "code_execution", AJ_TOOL_FEE_CODE_EXECUTION },
        };
        bool namespaced;
        const char *type = tool_type(tool, &namespaced);
        for (size_t i = 0; type && i < ARRAY_SIZE(tools); i++)
                if (strncasecmp(type, tools[i].prefix, strlen(tools[i].prefix)) == 0)
                        return (int)tools[i].fee;
        return -1;
}

const char *aj_llm_tool_type(json_t *tool, bool *ret_namespaced) { return tool_type(tool, ret_namespaced); }

bool aj_llm_tool_known(json_t *tool)
{
        bool namespaced;
        const char *type = tool_type(tool, &namespaced);
        return type && (fee_tool(tool) >= 0 || search_tool(tool) ||
                        free_typed_tool(json_string_value(json_object_get(tool, "type")), type, namespaced) ||
                        free_namespace(tool));
}

/* A Chat Completions search model (gpt-4o-search-preview, gpt-4o-mini-search-preview,
 * gpt-5-search-api): it searches the web for every request. */
static bool search_model(const char *model)
{
        size_t n = model ? strlen(model) : 0;
        for (size_t i = 0; i + 7 <= n; i++)
                if (strncasecmp(model + i, "-search", 7) == 0 && (i + 7 == n || model[i + 7] == '-'))
                        return true;
        return false;
}

/* OpenRouter's ":online" model variant (web search by its web plugin): a ":online" suffix
 * of the name, before or after another variant (":online:free"), any case. */
static bool online_model(const char *model)
{
        for (const char *p = model ? strchr(model, ':') : NULL; p; p = strchr(p + 1, ':'))
                if (strncasecmp(p, ":online", 7) == 0 && (p[7] == '\0' || p[7] == ':'))
                        return true;
        return false;
}

/* The engine a file-parser plugin names for PDFs (OpenRouter): 0 one that bills nothing beyond
 * tokens ("pdf-text" and "cloudflare-ai", free; "native", the model reads the file, billed as
 * input tokens), 1 one billed per page ("mistral-ocr", $2 per 1,000 pages, or none named:
 * OpenRouter then lets the model read the file if it can, else runs mistral-ocr), -1 one the
 * gateway does not know. The free ones only as OpenRouter spells them: a provider reading
 * another spelling may fall back to its default. */
static int parser_engine(json_t *plugin)
{
        static const char *const free_engines[] = { "pdf-text", "cloudflare-ai", "native" };
        json_t *pdf = json_object_get(plugin, "pdf");
        json_t *engine = json_object_get(pdf, "engine");
        if (pdf && !json_is_null(pdf) && !json_is_object(pdf))
                return -1;
        if (!engine || json_is_null(engine))
                return 1;
        if (!json_is_string(engine))
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(free_engines); i++)
                if (streq(json_string_value(engine), free_engines[i]))
                        return 0;
        return strcasecmp(json_string_value(engine), "mistral-ocr") == 0 ? 1 : -1;
}

/* The content parts of a request of one of `types` ("type"), at any depth of `v`: the files
 * it hands the model ("file" in Chat Completions, "input_file" in Responses), its audio. */
static uint64_t parts_in(json_t *v, const char *const *types, size_t n_types)
{
        const char *k;
        json_t *e;
        size_t i;
        uint64_t n = 0;
        if (json_is_object(v)) {
                const char *type = json_string_value(json_object_get(v, "type"));
                for (size_t t = 0; type && t < n_types; t++)
                        n += streq(type, types[t]);
                json_object_foreach (v, k, e)
                        n = sat_add(n, parts_in(e, types, n_types));
        } else if (json_is_array(v)) {
                json_array_foreach (v, i, e)
                        n = sat_add(n, parts_in(e, types, n_types));
        }
        return n;
}

/* OpenRouter's plugins (usage.h plugin_results, unmetered): the results its web plugin may
 * fetch, each "plugins" entry with "id" "web" (any case) its max_results (absent, null, 0 or
 * less: the default, AJ_LLM_WEB_PLUGIN_RESULTS), summed, and a ":online" model one default
 * plugin more (OpenRouter documents it as the plugin's shorthand, not as merged with one the
 * request gives: both are reserved and charged); the pages its file parser may bill
 * (parser_engine(): every file of a Chat or Responses request, AJ_LLM_FILE_PAGES each, unless
 * a file-parser plugin names a free engine and none a paid one; reserved and, as no response
 * says how many, charged for an answer). A plugin the gateway does not know (another id, or not
 * an object with a string id) may bill anything: unmetered. -EINVAL with *ret_key when a
 * max_results is not a whole number. */
static int plugins_of(AjLlmCall *c, json_t *root, const char **ret_key)
{
        AjLlmUsage *u = &c->u;
        json_t *plugins = json_object_get(root, "plugins"), *plugin;
        size_t i;
        bool parser_free = false, parser_paid = false;
        if (plugins && !json_is_null(plugins) && !json_is_array(plugins))
                unmetered(c, "\"plugins\" that is not an array", NULL);
        json_array_foreach (plugins, i, plugin) {
                const char *id = json_string_value(json_object_get(plugin, "id"));
                uint64_t v = 0;
                /* Only as OpenRouter spells it: a provider ignoring another spelling would parse
                 * with its default engine, whatever this one names. */
                if (id && streq(id, "file-parser")) {
                        int e = parser_engine(plugin);
                        if (e < 0)
                                unmetered(c, "the file-parser plugin's pdf.engine",
                                          json_string_value(json_object_get(json_object_get(plugin, "pdf"), "engine")));
                        parser_free |= e == 0;
                        parser_paid |= e > 0;
                        continue;
                }
                if (!id || strcasecmp(id, "web") != 0) {
                        unmetered(c, "a plugin the gateway does not know, \"id\"", id ? id : "(none)");
                        continue;
                }
                int r = whole_of(json_object_get(plugin, "max_results"), &v);
                if (r < 0) {
                        *ret_key = "plugins[].max_results";
                        return -EINVAL;
                }
                u->plugin_results = sat_add(u->plugin_results, r > 0 && v > 0 ? v : AJ_LLM_WEB_PLUGIN_RESULTS);
        }
        if (online_model(json_string_value(json_object_get(root, "model"))))
                u->plugin_results = sat_add(u->plugin_results, AJ_LLM_WEB_PLUGIN_RESULTS);
        u->max_searches = sat_add(u->max_searches, u->plugin_results);
        /* OpenAI's own API reads a PDF as input tokens (its text and an image of each page), which
         * its usage reports: no parser bills pages there. Any other server may be OpenRouter, or
         * a proxy in front of it (fail closed). */
        if ((c->api == AJ_LLM_API_OPENAI_CHAT || c->api == AJ_LLM_API_OPENAI_RESPONSES) &&
            c->upstream != AJ_LLM_UPSTREAM_OPENAI) {
                static const char *const file_parts[] = { "file", "input_file" };
                uint64_t files = parts_in(json_object_get(root,
                                                          c->api == AJ_LLM_API_OPENAI_CHAT ? "messages" : "input"),
                                          file_parts, ARRAY_SIZE(file_parts));
                uint64_t pages = files > UINT64_MAX / AJ_LLM_FILE_PAGES ? UINT64_MAX : files * AJ_LLM_FILE_PAGES;
                if (parser_paid || !parser_free) {
                        u->tool_offered[AJ_TOOL_FEE_FILE_PARSER] = pages;
                        u->unreported_uses[AJ_TOOL_FEE_FILE_PARSER] = pages;
                }
        }
        return 0;
}

/* The uses of Anthropic's web_fetch tool the request allows: its max_uses, read as a web
 * search tool's (absent, null, 0 or less: AJ_LLM_DEFAULT_TOOL_USES). The other tools billed
 * per use (and another API's web_fetch, which has no such member) are reserved one use. A
 * namespaced tool (tool_type(): OpenRouter's server tools, without a bound and unreported) is
 * AJ_LLM_DEFAULT_TOOL_USES uses, reserved and charged for an answer (usage.h unreported_uses). */
static int tool_uses_of(AjLlmCall *c, json_t *tool, int fee, const char **ret_key)
{
        AjLlmUsage *u = &c->u;
        uint64_t v = 0, n = 1;
        bool namespaced;
        tool_type(tool, &namespaced);
        /* xAI's code_execution (Chat, Responses): billed per call, which no item it answers with
         * counts; Anthropic's is counted by its blocks. */
        if (namespaced || (fee == AJ_TOOL_FEE_CODE_EXECUTION && c->api != AJ_LLM_API_ANTHROPIC_MESSAGES)) {
                u->unreported_uses[fee] = sat_add(u->unreported_uses[fee], AJ_LLM_DEFAULT_TOOL_USES);
                u->tool_offered[fee] = sat_add(u->tool_offered[fee], AJ_LLM_DEFAULT_TOOL_USES);
                return 0;
        }
        if (fee == AJ_TOOL_FEE_WEB_FETCH && c->api == AJ_LLM_API_ANTHROPIC_MESSAGES) {
                int r = whole_of(json_object_get(tool, "max_uses"), &v);
                if (r < 0) {
                        *ret_key = "tools[].max_uses";
                        return -EINVAL;
                }
                n = r > 0 && v > 0 ? v : AJ_LLM_DEFAULT_TOOL_USES;
        }
        if (fee == AJ_TOOL_FEE_CODE_INTERPRETER && !json_is_string(json_object_get(tool, "container")))
                u->container_auto = true;
        u->tool_offered[fee] = fee == AJ_TOOL_FEE_WEB_FETCH ? sat_add(u->tool_offered[fee], n)
                                                            : max_u64(u->tool_offered[fee], 1);
        return 0;
}

/* The web searches the request allows (usage.h max_searches): each Anthropic web search
 * tool's max_uses (a whole number of at least 1; absent, null, 0 or negative: no bound),
 * the Responses API's max_tool_calls, which bounds all its built-in tools' calls together
 * (0: no bound, as a lenient server might read it), a Chat search's one, and the results of
 * OpenRouter's web plugin. max_uses is Anthropic's: another API's search tools have no such
 * member, and a provider of it ignoring one ({"type": "web_search", "max_uses": 1}) would
 * search unbounded, so there a search tool is without a bound whatever it says. A Responses
 * request naming a stored prompt may offer any of its built-in tools: unbounded searches and
 * one use of each other tool. -EINVAL with *ret_key the member when a bound is not a whole
 * number (whole_of()): the provider might read it as one the gateway did not. */
static int searches_of(AjLlmCall *c, json_t *root, const char **ret_key)
{
        AjLlmUsage *u = &c->u;
        json_t *tool;
        size_t i;
        uint64_t v;
        /* Tools the gateway cannot read (not an array, an entry not an object) may name any
         * tool a provider reads otherwise: unmetered, fail closed. */
        json_t *tools = json_object_get(root, "tools");
        if (tools && !json_is_null(tools) && !json_is_array(tools))
                unmetered(c, "\"tools\" that is not an array", NULL);
        json_array_foreach (tools, i, tool) {
                if (!json_is_object(tool))
                        unmetered(c, "a \"tools\" entry that is not an object", NULL);
                aj_llm_xai_tool(c, tool);
                int fee = fee_tool(tool);
                bool namespaced;
                const char *type = tool_type(tool, &namespaced);
                json_t *t = json_object_get(tool, "type");
                if (fee >= 0 && tool_uses_of(c, tool, fee, ret_key) < 0)
                        return -EINVAL;
                /* A tool of a type the gateway does not know may be one the provider runs and
                 * bills (xAI's collections_search, one added later): unmetered, fail closed. No
                 * type is a client's own tool (Anthropic's). */
                if (t && !json_is_null(t) &&
                    (!type || (fee < 0 && !search_tool(tool) &&
                               !free_typed_tool(json_string_value(t), type, namespaced) && !free_namespace(tool))))
                        unmetered(c, "a tool type the gateway does not know,",
                                  type ? json_string_value(t) : "(not a string)");
                if (!search_tool(tool))
                        continue;
                if (namespaced || x_search_tool(type)) {
                        /* Its bounds are not max_uses, nor max_tool_calls (added below). */
                        u->unreported_searches = sat_add(u->unreported_searches, AJ_LLM_DEFAULT_TOOL_USES);
                        continue;
                }
                if (c->api != AJ_LLM_API_ANTHROPIC_MESSAGES) {
                        u->search_unbounded = true;
                        continue;
                }
                int r = whole_of(json_object_get(tool, "max_uses"), &v);
                if (r < 0) {
                        *ret_key = "tools[].max_uses";
                        return -EINVAL;
                }
                if (r == 0 || v == 0)
                        u->search_unbounded = true;
                else
                        u->max_searches = sat_add(u->max_searches, v);
        }
        json_t *prompt = json_object_get(root, "prompt");
        if (c->api == AJ_LLM_API_OPENAI_RESPONSES && prompt && !json_is_null(prompt)) {
                static const AjToolFee stored[] = { AJ_TOOL_FEE_FILE_SEARCH, AJ_TOOL_FEE_CODE_INTERPRETER,
                                                    AJ_TOOL_FEE_IMAGE_GENERATION };
                u->stored_prompt = true;
                u->search_unbounded = true;
                u->container_auto = true;
                for (size_t k = 0; k < ARRAY_SIZE(stored); k++)
                        u->tool_offered[stored[k]] = 1;
        }
        if (c->api == AJ_LLM_API_OPENAI_RESPONSES) {
                int r = whole_of(json_object_get(root, "max_tool_calls"), &v);
                if (r < 0) {
                        *ret_key = "max_tool_calls";
                        return -EINVAL;
                }
                if (r > 0 && v > 0 && (u->search_unbounded || u->max_searches > v)) {
                        u->search_unbounded = false;
                        u->max_searches = v;
                }
        }
        u->max_searches = sat_add(u->max_searches, u->unreported_searches);
        /* xAI's Live Search: billed per source used, which the gateway does not price. */
        json_t *live = json_object_get(root, "search_parameters");
        const char *mode = json_string_value(json_object_get(live, "mode"));
        if (live && !json_is_null(live) && !(mode && streq(mode, "off")))
                unmetered(c, "\"search_parameters\" (xAI's Live Search, billed per source) with \"mode\"",
                          mode ? mode : "(none)");
        json_t *opts = json_object_get(root, "web_search_options");
        u->chat_search_model = c->api == AJ_LLM_API_OPENAI_CHAT &&
                               search_model(json_string_value(json_object_get(root, "model")));
        if (c->api == AJ_LLM_API_OPENAI_CHAT && ((opts && !json_is_null(opts)) || u->chat_search_model)) {
                u->chat_search = true;
                u->max_searches = sat_add(u->max_searches, 1);
        }
        return plugins_of(c, root, ret_key);
}

/* Members that make the provider bill at a rate the prices do not hold (usage.h unmetered):
 * Anthropic's fast mode ("speed" other than "standard": 2 to 6 times the standard rate), a
 * service tier above the standard one (OpenAI's "priority" and "scale"; "auto", "default",
 * "flex" and Anthropic's "standard_only" are not), output other than text ("modalities"
 * naming another, "audio": audio and image tokens are priced apart from text), audio input
 * ("input_audio" parts, likewise), and Anthropic's inference_geo other than "global" (its
 * default: "us" runs the model in the US only, billed at 1.1 times the price). The prices are
 * standard-tier text prices (data/prices.json), so each would be charged a fraction of what it
 * costs. */
static void rate_members_of(AjLlmCall *c, json_t *root)
{
        static const char *const tiers[] = { "auto", "default", "flex", "standard_only" };
        static const char *const audio_parts[] = { "input_audio" };
        json_t *speed = json_object_get(root, "speed"), *tier = json_object_get(root, "service_tier");
        json_t *geo = json_object_get(root, "inference_geo");
        json_t *audio = json_object_get(root, "audio"), *modalities = json_object_get(root, "modalities"), *m;
        size_t i;
        if (speed && !json_is_null(speed) && !(json_is_string(speed) && streq(json_string_value(speed), "standard")))
                unmetered(c, "\"speed\" (Anthropic's fast mode, billed at a multiple of the standard rate)",
                          json_is_string(speed) ? json_string_value(speed) : "(not a string)");
        if (tier && !json_is_null(tier)) {
                bool standard = false;
                for (size_t t = 0; json_is_string(tier) && t < ARRAY_SIZE(tiers); t++)
                        standard |= streq(json_string_value(tier), tiers[t]);
                if (!standard)
                        unmetered(c, "\"service_tier\" (billed above the standard rate)",
                                  json_is_string(tier) ? json_string_value(tier) : "(not a string)");
        }
        if (geo && !json_is_null(geo) && !(json_is_string(geo) && streq(json_string_value(geo), "global")))
                unmetered(c, "\"inference_geo\" (inference in one geography, billed above the standard rate)",
                          json_is_string(geo) ? json_string_value(geo) : "(not a string)");
        if (audio && !json_is_null(audio))
                unmetered(c, "\"audio\" output (audio tokens are billed apart from text)", NULL);
        if (modalities && !json_is_null(modalities) && !json_is_array(modalities))
                unmetered(c, "\"modalities\" that is not an array", NULL);
        json_array_foreach (modalities, i, m)
                if (!json_is_string(m) || !streq(json_string_value(m), "text"))
                        unmetered(c, "output of a modality other than text (billed apart from text), \"modalities\"",
                                  json_is_string(m) ? json_string_value(m) : "(not a string)");
        if (parts_in(json_object_get(root, "messages"), audio_parts, 1) ||
            parts_in(json_object_get(root, "input"), audio_parts, 1))
                unmetered(c, "audio input (\"input_audio\" parts: audio tokens are billed apart from text)", NULL);
}

/* One tool result of the request, over the oldest kept when there are more. */
static void tool_result_add(AjLlmUsage *u, json_t *id, bool error)
{
        if (!json_is_string(id) || !aj_plain_name(json_string_value(id), json_string_length(id), AJ_LLM_MAX_CALL_ID))
                return;
        char *s = strdup(json_string_value(id));
        if (!s)
                return;
        if (u->n_tool_results == AJ_LLM_MAX_TOOL_RESULTS) {
                free(u->tool_result_ids[0]);
                memmove(u->tool_result_ids, u->tool_result_ids + 1, (AJ_LLM_MAX_TOOL_RESULTS - 1) * sizeof(char *));
                memmove(u->tool_result_error, u->tool_result_error + 1, (AJ_LLM_MAX_TOOL_RESULTS - 1) * sizeof(bool));
                u->n_tool_results--;
        }
        u->tool_result_ids[u->n_tool_results] = s;
        u->tool_result_error[u->n_tool_results++] = error;
}

static void tool_results_of(AjLlmApi api, json_t *root, AjLlmUsage *u)
{
        size_t i, j;
        json_t *item, *block;
        switch (api) {
        case AJ_LLM_API_ANTHROPIC_MESSAGES:
                json_array_foreach (json_object_get(root, "messages"), i, item) {
                        json_array_foreach (json_object_get(item, "content"), j, block) {
                                const char *type = json_string_value(json_object_get(block, "type"));
                                if (type && streq(type, "tool_result"))
                                        tool_result_add(u, json_object_get(block, "tool_use_id"),
                                                        json_is_true(json_object_get(block, "is_error")));
                        }
                }
                break;
        case AJ_LLM_API_OPENAI_CHAT:
                json_array_foreach (json_object_get(root, "messages"), i, item) {
                        const char *role = json_string_value(json_object_get(item, "role"));
                        if (role && streq(role, "tool"))
                                tool_result_add(u, json_object_get(item, "tool_call_id"), false);
                }
                break;
        case AJ_LLM_API_OPENAI_RESPONSES:
                json_array_foreach (json_object_get(root, "input"), i, item) {
                        const char *type = json_string_value(json_object_get(item, "type"));
                        if (type && streq(type, "function_call_output"))
                                tool_result_add(u, json_object_get(item, "call_id"), false);
                }
                break;
        default:
                break;
        }
}

/* A member's name as a provider matching names ignoring case would read it: ASCII letters
 * lowered, and the two other letters Unicode's simple case folding takes to ASCII (Go's
 * encoding/json folds so): U+017F LONG S is "s", U+212A KELVIN SIGN is "k". false when
 * the name is longer than `size`. */
static bool fold_name(const char *name, size_t len, char *out, size_t size)
{
        size_t n = 0;
        for (size_t i = 0; i < len; n++) {
                if (n + 1 >= size)
                        return false;
                const unsigned char *p = (const unsigned char *)name + i;
                if (len - i >= 2 && p[0] == 0xc5 && p[1] == 0xbf) {
                        out[n] = 's';
                        i += 2;
                } else if (len - i >= 3 && p[0] == 0xe2 && p[1] == 0x84 && p[2] == 0xaa) {
                        out[n] = 'k';
                        i += 3;
                } else {
                        out[n] = (char)(p[0] >= 'A' && p[0] <= 'Z' ? p[0] - 'A' + 'a' : p[0]);
                        i++;
                }
        }
        out[n] = '\0';
        return true;
}

/* A member of `o` that a provider matching names ignoring case would take for one of
 * `names` (which the gateway reads) but that is not spelled so: the gateway and the
 * provider would read different values ({"Stream": true}: a stream without the usage the
 * gateway asks for; {"model": "cheap", "MODEL": "dear"}: priced as the cheap one). Like a
 * repeated key, refused. NULL when there is none. */
static const char *case_twin(json_t *o, const char *const *names, size_t n_names)
{
        const char *key;
        json_t *v;
        char folded[32];
        json_object_foreach (o, key, v) {
                if (!fold_name(key, strlen(key), folded, sizeof(folded)))
                        continue; /* longer than any name read */
                for (size_t i = 0; i < n_names; i++)
                        if (streq(folded, names[i]) && !streq(key, names[i]))
                                return key;
        }
        return NULL;
}

/* OpenRouter's members that let it answer with another model than "model" (usage.h
 * model_routed): "models" unless it names only that model, "preset", a preset named in the
 * model ("@preset/NAME", or "MODEL@preset/NAME"), and a router model: OpenRouter's own
 * "openrouter/" namespace ("openrouter/auto", "openrouter/auto-code", ...), whose models pick
 * another to answer, priced as the one picked; any case. */
static bool model_routed(json_t *root, const char *model)
{
        json_t *models = json_object_get(root, "models"), *m;
        json_t *preset = json_object_get(root, "preset");
        size_t i;
        if (preset && !json_is_null(preset))
                return true;
        if (model && strncasecmp(model, "openrouter/", 11) == 0)
                return true;
        for (size_t k = 0; model && model[k]; k++)
                if (strncasecmp(model + k, "@preset/", 8) == 0)
                        return true;
        if (!models || json_is_null(models))
                return false;
        if (!json_is_array(models))
                return true;
        json_array_foreach (models, i, m)
                if (!json_is_string(m) || !model || !streq(json_string_value(m), model))
                        return true;
        return false;
}

/* OpenRouter's model variants (prices.h aj_model_variant()), the ":suffix"es after the name's
 * last '/': one that may be billed above the model's price (":nitro", ":exacto", ":extended",
 * ":thinking") is provider routing (usage.h provider_routed), and the first one the gateway does
 * not know is kept (unknown_variant) in a name of OpenRouter's "vendor/model" form, the one
 * OpenRouter reads variants in (a tag elsewhere, Ollama's "llama3:8b", OpenAI's "ft:..." names,
 * is no variant). */
static void variants_of(AjLlmCall *c, const char *model)
{
        const char *slash = model ? strrchr(model, '/') : NULL;
        for (const char *p = model ? strchr(slash ? slash : model, ':') : NULL; p; p = strchr(p + 1, ':')) {
                const char *next = strchr(p + 1, ':');
                size_t len = next ? (size_t)(next - p - 1) : strlen(p + 1);
                AjModelVariant kind = aj_model_variant(p + 1, len);
                if (kind == AJ_MODEL_VARIANT_DEARER)
                        c->u.provider_routed = true;
                else if (kind == AJ_MODEL_VARIANT_UNKNOWN && slash && !c->u.unknown_variant)
                        c->u.unknown_variant = strndup(p, len + 1);
        }
}

/* A max_price member in USD: true and *ret when it is a number of at least 0, or a string of
 * digits with an optional fraction ("3", "0.15": OpenRouter's SDKs send strings; nothing another
 * parser could read as another number, no exponent, sign or space). */
static bool max_price_usd(json_t *v, double *ret)
{
        double usd;
        if (json_is_number(v))
                usd = json_number_value(v);
        else if (json_is_string(v)) {
                const char *t = json_string_value(v);
                size_t digits = strspn(t, "0123456789");
                if (digits == 0 || digits > 15 ||
                    (t[digits] && (t[digits] != '.' || strspn(t + digits + 1, "0123456789") == 0 ||
                                   t[digits + 1 + strspn(t + digits + 1, "0123456789")])))
                        return false;
                usd = strtod(t, NULL);
        } else
                return false;
        if (!isfinite(usd) || usd < 0)
                return false;
        *ret = usd;
        return true;
}

/* A max_price member of USD per million tokens in pico-USD per token: 1 USD per million tokens
 * is 10^6 pico-USD a token; past 1 USD a token it is taken as that, the bound of a price
 * (meter.c price_ok()). */
static bool price_per_million(json_t *v, uint64_t *ret)
{
        double usd;
        if (!max_price_usd(v, &usd))
                return false;
        double p = usd * 1e6;
        *ret = p > AJ_PUSD_PER_USD ? (uint64_t)AJ_PUSD_PER_USD : (uint64_t)ceil(p);
        return true;
}

/* A max_price member of USD per request or per image in pico-USD: absent or null is none (0);
 * past AJ_LLM_MAX_PROVIDER_COST_USD taken as that. false when it is there and not a price. */
static bool fee_usd(json_t *v, uint64_t *ret)
{
        double usd;
        if (!v || json_is_null(v)) {
                *ret = 0;
                return true;
        }
        if (!max_price_usd(v, &usd))
                return false;
        *ret = usd >= AJ_LLM_MAX_PROVIDER_COST_USD ? (uint64_t)AJ_LLM_MAX_PROVIDER_COST_USD * AJ_PUSD_PER_USD
                                                   : (uint64_t)ceil(usd * AJ_PUSD_PER_USD);
        return true;
}

/* OpenRouter's provider routing (usage.h provider_routed, max_price_*): its max_price.prompt and
 * .completion bound the tokens' price; .request and .image (USD per request, per input image),
 * the fees an endpoint may bill besides: the call's fee is the request's once and the image's
 * for each image part of the request ("image_url", "input_image", Anthropic's "image", at any
 * depth). Images the request only refers to (input the provider holds, by previous_response_id
 * or conversation) cannot be counted: unmetered, fail closed. */
/* A "provider" object asking only for its endpoints sorted by price, which OpenRouter documents as
 * exactly its ":floor" variant (priced as the model, prices.h aj_model_variant()): "sort" as
 * "price" or as {"by": "price"} (with "partition": "model", its default, at most), beside a
 * max_price at most (which only passes over endpoints priced above it). Any other member, even
 * null or another spelling, is routing the gateway does not read (fail closed). */
static bool provider_price_sort_only(json_t *provider)
{
        json_t *sort = json_object_get(provider, "sort");
        size_t members = json_object_size(provider);
        if (!sort || members != 1 + (json_object_get(provider, "max_price") != NULL))
                return false;
        if (json_is_string(sort))
                return streq(json_string_value(sort), "price");
        json_t *by = json_object_get(sort, "by"), *partition = json_object_get(sort, "partition");
        return json_is_string(by) && streq(json_string_value(by), "price") &&
               json_object_size(sort) == 1 + (partition != NULL) &&
               (!partition || (json_is_string(partition) && streq(json_string_value(partition), "model")));
}

static void provider_routing_of(AjLlmCall *c, json_t *root)
{
        static const char *const image_parts[] = { "image_url", "input_image", "image" };
        static const char *const held[] = { "previous_response_id", "conversation" };
        AjLlmUsage *u = &c->u;
        json_t *provider = json_object_get(root, "provider");
        json_t *max_price = json_object_get(provider, "max_price");
        json_t *image = json_object_get(max_price, "image");
        uint64_t request_fee, image_fee;
        u->provider_routed = provider && !json_is_null(provider) && !provider_price_sort_only(provider);
        variants_of(c, json_string_value(json_object_get(root, "model")));
        u->max_price_set = price_per_million(json_object_get(max_price, "prompt"), &u->max_price_input) &&
                           price_per_million(json_object_get(max_price, "completion"), &u->max_price_output) &&
                           fee_usd(json_object_get(max_price, "request"), &request_fee) && fee_usd(image, &image_fee);
        if (!u->max_price_set)
                return;
        uint64_t images = parts_in(root, image_parts, ARRAY_SIZE(image_parts)), fee;
        fee = images && image_fee > UINT64_MAX / images ? UINT64_MAX : images * image_fee;
        u->max_price_fee = sat_add(request_fee, fee);
        for (size_t i = 0; image_fee && i < ARRAY_SIZE(held); i++) {
                json_t *v = json_object_get(root, held[i]);
                if (v && !json_is_null(v))
                        unmetered(c,
                                  "provider.max_price.image with input the provider holds, whose images cannot be "
                                  "counted:",
                                  held[i]);
        }
}

/* A tool's members (case_twin()), and the "name" of its "function" and "custom" objects. */
static const char *tool_twin(json_t *tool, const char *const *members, size_t n_members,
                             const char *const declared[static 1])
{
        const char *twin = case_twin(tool, members, n_members);
        if (!twin)
                twin = case_twin(json_object_get(tool, "function"), declared, 1);
        if (!twin)
                twin = case_twin(json_object_get(tool, "custom"), declared, 1);
        return twin;
}

/* The members the gateway reads, at the top, in stream_options, in each tool and in each
 * plugin: spelled only so. */
static int check_case_twins(AjLlmCall *c, json_t *root)
{
        static const char *const top[] = {
                "model",
                "stream",
                "stream_options",
                "background",
                "deferred",
                "request",
                "n",
                "best_of",
                "max_tokens",
                "max_completion_tokens",
                "max_output_tokens",
                "messages",
                "input",
                "tools",
                "max_tool_calls",
                "web_search_options",
                "plugins",
                "prompt",
                "models",
                "preset",
                "search_parameters",
                "speed",
                "service_tier",
                "inference_geo",
                "audio",
                "modalities",
                "provider",
                "previous_response_id",
                "conversation",
                "prediction",
                "mcp_servers",
        };
        static const char *const opts[] = { "include_usage" };
        /* "tools": a namespace's (free_namespace()), whose members are checked as a tool's. The
         * names a tool declares as the client's (usage-tools.c aj_llm_xai_tool()): a call of xAI's
         * server tools is told from a client's by them. */
        static const char *const tool_members[] = { "type",       "max_uses",    "container", "tools",
                                                    "name",       "function",    "custom",    "allowed_domains",
                                                    "server_url", "connector_id" };
        static const char *const declared[] = { "name" };
        static const char *const plugin_members[] = { "id", "max_results", "pdf" };
        static const char *const engine[] = { "engine" }, *const mode[] = { "mode" };
        static const char *const provider[] = { "max_price" }, *const max_price[] = { "prompt", "completion", "request",
                                                                                      "image" };
        const char *twin = case_twin(root, top, ARRAY_SIZE(top));
        json_t *tool;
        size_t i;
        if (!twin)
                twin = case_twin(json_object_get(root, "stream_options"), opts, ARRAY_SIZE(opts));
        if (!twin)
                twin = case_twin(json_object_get(root, "search_parameters"), mode, ARRAY_SIZE(mode));
        if (!twin)
                twin = case_twin(json_object_get(root, "provider"), provider, ARRAY_SIZE(provider));
        if (!twin)
                twin = case_twin(json_object_get(json_object_get(root, "provider"), "max_price"), max_price,
                                 ARRAY_SIZE(max_price));
        json_array_foreach (json_object_get(root, "tools"), i, tool) {
                if (twin)
                        break;
                twin = tool_twin(tool, tool_members, ARRAY_SIZE(tool_members), declared);
                json_t *member;
                size_t k;
                json_array_foreach (json_object_get(tool, "tools"), k, member) {
                        if (twin)
                                break;
                        twin = tool_twin(member, tool_members, ARRAY_SIZE(tool_members), declared);
                }
        }
        json_array_foreach (json_object_get(root, "plugins"), i, tool) {
                if (twin)
                        break;
                twin = case_twin(tool, plugin_members, ARRAY_SIZE(plugin_members));
                if (!twin)
                        twin = case_twin(json_object_get(tool, "pdf"), engine, ARRAY_SIZE(engine));
        }
        if (!twin)
                return 0;
        json_auto_t *name = json_string(twin);
        _cleanup_free_ char *shown = name ? json_dumps(name, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
        aj_llm_parse_error(c,
                           "request: member %s is one the gateway reads in other letter case: a provider "
                           "matching names ignoring case would read it, the gateway does not (spell it in "
                           "lower case)",
                           shown ? shown : "?");
        return -EINVAL;
}

int aj_llm_call_request(AjLlmCall *c, const void *body, size_t len)
{
        const char *why;
        int r = aj_llm_json_bounded(body, len, &why);
        if (r < 0) {
                aj_llm_parse_error(c, "request: %s (agentjail's limit)", why);
                return r;
        }
        json_error_t err;
        /* Duplicate keys are refused: the provider might read the other "model" or "stream". */
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(root)) {
                if (root)
                        aj_llm_parse_error(c, "request: expected a JSON object");
                else
                        aj_llm_parse_error(c, "request: invalid JSON at line %d column %d: %s", err.line, err.column,
                                           err.text);
                json_decref(root);
                return -EINVAL;
        }
        if (check_case_twins(c, root) < 0) {
                json_decref(root);
                return -EINVAL;
        }
        AjLlmUsage *u = &c->u;
        /* The model is the agent's text, shown by the operator's verbs (logs, inspect): a plain
         * name, or the request is refused (util/parse.h). */
        json_t *model = json_object_get(root, "model");
        if (model && (!json_is_string(model) ||
                      !aj_plain_name(json_string_value(model), json_string_length(model), AJ_LLM_MAX_NAME))) {
                aj_llm_parse_error(c,
                                   "request: \"model\" must be a plain name (at most %d bytes of printable UTF-8, "
                                   "no spaces or control characters)",
                                   AJ_LLM_MAX_NAME);
                json_decref(root);
                return -EINVAL;
        }
        const char *bad = NULL;
        if (choices_of(root, &u->choices, &bad) < 0) {
                aj_llm_parse_error(c, "request: \"%s\" must be a positive whole number", bad);
                json_decref(root);
                return -EINVAL;
        }
        if (max_output_of(c->api, root, &u->max_output_tokens, &bad) < 0) {
                aj_llm_parse_error(c, "request: \"%s\" must be a whole number of tokens", bad);
                json_decref(root);
                return -EINVAL;
        }
        if (c->api != AJ_LLM_API_ANTHROPIC_COUNT_TOKENS && searches_of(c, root, &bad) < 0) {
                aj_llm_parse_error(c, "request: \"%s\" must be a whole number", bad);
                json_decref(root);
                return -EINVAL;
        }
        /* A "stream" the provider might read as true ("true", 1) but the gateway would not: the
         * answer would stream without the usage events the gateway adds for streams, charged only
         * by its visible bytes (a reasoning model's hidden tokens never show). */
        json_t *stream = json_object_get(root, "stream");
        if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
                aj_llm_parse_error(c, "request: \"stream\" must be true or false");
                json_decref(root);
                return -EINVAL;
        }
        aj_llm_set_name(&u->model, json_string_value(model));
        u->stream = json_is_true(stream);
        /* Anything but false or null might be read as true by the provider. xAI's "deferred" is
         * the same: answered at once with a request_id, fetched by GET later; and so is a body
         * wrapping the request in "request" (Perplexity's async API, at /async/chat/completions),
         * whose members the gateway would not read. */
        json_t *bg = json_object_get(root, "background"), *deferred = json_object_get(root, "deferred");
        json_t *wrapped = json_object_get(root, "request");
        u->background = (bg && !json_is_false(bg) && !json_is_null(bg)) ||
                        (deferred && !json_is_false(deferred) && !json_is_null(deferred)) ||
                        (wrapped && !json_is_null(wrapped));
        u->model_routed = model_routed(root, json_string_value(model));
        provider_routing_of(c, root);
        rate_members_of(c, root);
        tool_results_of(c->api, root, u);
        aj_llm_reach_of(c->api, root, &u->reach);
        uint64_t bytes = 0, blobs = 0;
        measure_request(root, &bytes, &blobs);
        u->prompt_estimate = (bytes + AJ_LLM_BYTES_PER_TOKEN - 1) / AJ_LLM_BYTES_PER_TOKEN + blobs * AJ_LLM_BLOB_TOKENS;
        /* The input the provider holds (Responses): billed, not in the body. */
        json_t *previous = json_object_get(root, "previous_response_id");
        json_t *conversation = json_object_get(root, "conversation");
        if (c->api == AJ_LLM_API_OPENAI_RESPONSES) {
                if (json_is_string(previous))
                        u->previous_response_id = strdup(json_string_value(previous));
                u->held_input_unknown = (previous && !json_is_null(previous) && !json_is_string(previous)) ||
                                        (conversation && !json_is_null(conversation));
        }
        /* Predicted Outputs: what the model rejects of the prediction is billed as output. */
        json_t *prediction = json_object_get(root, "prediction");
        if (c->api == AJ_LLM_API_OPENAI_CHAT && prediction && !json_is_null(prediction)) {
                uint64_t pbytes = 0, pblobs = 0;
                measure(prediction, "prediction", root, NULL, false, &pbytes, &pblobs);
                u->prediction_tokens = (pbytes + AJ_LLM_BYTES_PER_TOKEN - 1) / AJ_LLM_BYTES_PER_TOKEN;
        }
        json_decref(root);
        return 0;
}

/* ---- the response ---- */

void aj_llm_call_response_start(AjLlmCall *c, int status, const char *content_type)
{
        AjLlmUsage *u = &c->u;
        bool answered = status >= 200 && status < 300;
        u->status = status;
        if (content_type)
                c->streaming = strncasecmp(content_type, "text/event-stream", 17) == 0;
        else
                c->streaming = u->stream && answered;
        /* A Chat Completions search model searches before it answers, and the response says
         * nothing of it: an answer is one search billed (an error status is not billed). Another
         * model asked to search (web_search_options) says so by url_citation annotations
         * (usage-openai.c), but a stream may carry none (OpenAI's search models stream without
         * them): a streamed answer is one search, a whole one only with an annotation. */
        if (u->chat_search && answered && u->web_search_requests == 0 && (u->chat_search_model || c->streaming))
                u->web_search_requests = 1;
        /* A code interpreter container the provider starts itself is billed whether or not the
         * response names it: an answer is one at least (the first container named is it). */
        if (u->container_auto && answered && u->tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER] == 0) {
                u->tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER] = 1;
                c->auto_container = true;
        }
}

static void event_json(AjLlmCall *c, const AjSseEvent *ev, json_t *root, bool *ret_forward)
{
        const char *type = json_string_value(json_object_get(root, "type"));
        if (!type)
                type = ev->event;
        switch (c->api) {
        case AJ_LLM_API_ANTHROPIC_MESSAGES:
        case AJ_LLM_API_ANTHROPIC_COUNT_TOKENS:
                aj_llm_anthropic_event(c, type, root);
                break;
        case AJ_LLM_API_OPENAI_CHAT:
                if (aj_llm_chat_event(c, root) && c->strip_usage)
                        *ret_forward = false;
                break;
        case AJ_LLM_API_OPENAI_RESPONSES:
                aj_llm_responses_event(c, type, root);
                break;
        default:
                break;
        }
}

int aj_llm_call_response_event(AjLlmCall *c, const AjSseEvent *ev, bool *ret_forward)
{
        *ret_forward = true;
        if (c->stopped)
                return 0;
        if (c->api == AJ_LLM_API_OPENAI_CHAT && ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
                if (c->u.outcome == AJ_LLM_PENDING)
                        c->u.outcome = AJ_LLM_COMPLETE;
                return 0;
        }
        const char *why;
        if (aj_llm_json_bounded(ev->data, ev->data_len, &why) < 0) {
                /* Not read: hiding the usage in a monster event does not make the call free. */
                aj_llm_parse_error(c, "event '%.64s': %s, not read", ev->event, why);
                unread(c, ev->data_len);
                return 0;
        }
        json_error_t err;
        json_t *root = json_loadb(ev->data, ev->data_len, 0, &err);
        if (!json_is_object(root)) {
                if (root)
                        aj_llm_parse_error(c, "event '%.64s': expected a JSON object", ev->event);
                else
                        aj_llm_parse_error(c, "event '%.64s': invalid JSON at column %d: %s", ev->event, err.column,
                                           err.text);
                json_decref(root);
                return 0;
        }
        event_json(c, ev, root, ret_forward);
        json_decref(root);
        return 0;
}

static int on_event(void *userdata, const AjSseEvent *ev)
{
        bool forward;
        return aj_llm_call_response_event(userdata, ev, &forward);
}

static int body_append(AjLlmCall *c, const void *buf, size_t len)
{
        if (c->stopped) {
                unread(c, len);
                return 0;
        }
        if (len > AJ_LLM_MAX_BODY - c->body_len) {
                aj_llm_parse_error(c, "response body: larger than %u bytes, not read", AJ_LLM_MAX_BODY);
                c->stopped = true;
                unread(c, c->body_len + len);
                return 0;
        }
        if (c->body_len + len > c->body_cap) {
                size_t cap = c->body_cap ? c->body_cap : 4096;
                while (cap < c->body_len + len)
                        cap *= 2;
                char *b = realloc(c->body, cap);
                if (!b)
                        return -ENOMEM;
                c->body = b;
                c->body_cap = cap;
        }
        if (len)
                memcpy(c->body + c->body_len, buf, len);
        c->body_len += len;
        return 0;
}

int aj_llm_call_response_data(AjLlmCall *c, const void *buf, size_t len)
{
        if (!c->streaming)
                return body_append(c, buf, len);
        if (c->stopped) {
                unread(c, len);
                return 0;
        }
        if (!c->sse) {
                int r = aj_sse_new(AJ_LLM_MAX_EVENT, &c->sse);
                if (r < 0)
                        return r;
        }
        int r = aj_sse_feed(c->sse, buf, len, on_event, c);
        if (r == -E2BIG) {
                aj_llm_parse_error(c, "stream: an event larger than %u bytes, the rest is not read", AJ_LLM_MAX_EVENT);
                c->stopped = true;
                unread(c, len);
                return 0;
        }
        return r;
}

static void body_end(AjLlmCall *c)
{
        if (c->stopped || c->body_len == 0)
                return;
        const char *why;
        if (aj_llm_json_bounded(c->body, c->body_len, &why) < 0) {
                aj_llm_parse_error(c, "response body: %s, not read", why);
                unread(c, c->body_len);
                return;
        }
        json_error_t err;
        json_t *root = json_loadb(c->body, c->body_len, 0, &err);
        if (!json_is_object(root)) {
                /* An error page from a proxy in between is not worth a parse error (and an
                 * error status is not billed). */
                if (c->u.status < 400) {
                        aj_llm_parse_error(c, "response body: invalid JSON at line %d column %d: %s", err.line,
                                           err.column, err.text);
                        unread(c, c->body_len);
                }
                json_decref(root);
                return;
        }
        json_t *error = json_object_get(root, "error");
        if (c->u.status >= 400 || (error && !json_is_null(error)))
                aj_llm_error_object(c, error);
        else if (c->api == AJ_LLM_API_ANTHROPIC_MESSAGES || c->api == AJ_LLM_API_ANTHROPIC_COUNT_TOKENS)
                aj_llm_anthropic_body(c, root);
        else if (c->api == AJ_LLM_API_OPENAI_CHAT)
                aj_llm_chat_body(c, root);
        else
                aj_llm_responses_body(c, root);
        json_decref(root);
}

void aj_llm_call_response_end(AjLlmCall *c)
{
        if (!c->streaming)
                body_end(c);
        aj_llm_tool_args_finish(c);
        free(c->body);
        c->body = NULL;
        c->body_len = c->body_cap = 0;
        if (c->u.status >= 400 && !c->u.error) {
                char type[32];
                snprintf(type, sizeof(type), "HTTP %d", c->u.status);
                aj_llm_provider_error(c, type, "the provider's answer had no error object");
        }
        if (c->u.status >= 400)
                c->u.outcome = AJ_LLM_FAILED;
        if (c->u.outcome == AJ_LLM_PENDING)
                c->u.outcome = AJ_LLM_CUT;
}


void aj_llm_call_charge(const AjLlmCall *c, AjLlmCharge *ret)
{
        const AjLlmUsage *u = &c->u;
        AjLlmCharge ch = {};
        /* An error status: the provider did not run the model (and does not bill). */
        if (c->api == AJ_LLM_API_ANTHROPIC_COUNT_TOKENS || u->status >= 400) {
                *ret = ch;
                return;
        }
        bool ended = u->outcome == AJ_LLM_COMPLETE || u->outcome == AJ_LLM_INCOMPLETE || u->outcome == AJ_LLM_FAILED;
        uint64_t seen = (u->output_bytes + AJ_LLM_BYTES_PER_TOKEN - 1) / AJ_LLM_BYTES_PER_TOKEN;
        ch.input = u->input_reported ? u->input_tokens : max_u64(u->input_tokens, u->prompt_estimate);
        ch.output = u->output_reported && ended ? u->output_tokens : max_u64(u->output_tokens, seen);
        ch.cache_read = u->cache_read_tokens;
        ch.cache_creation = u->cache_creation_tokens;
        ch.cache_creation_1h = u->cache_creation_1h_tokens;
        ch.web_searches = u->web_search_requests;
        memcpy(ch.tool_uses, u->tool_uses, sizeof(ch.tool_uses));
        if (u->status >= 200 && u->status < 300) {
                /* OpenRouter's web plugin: its results are billed, their number not reported. */
                ch.web_searches = sat_add(ch.web_searches, u->plugin_results);
                /* Namespaced server tools: their uses are not counted by items, so an answer is
                 * charged what was reserved for them, or what a response said if more; a final
                 * usage that says how many searches the server tools ran is charged that.
                 * The calls xAI's server tools listed as items count where no usage says. */
                uint64_t unreported = u->server_searches_reported
                                              ? u->server_searches
                                              : max_u64(u->unreported_searches, c->xai_search_items);
                ch.web_searches = max_u64(ch.web_searches, sat_add(unreported, u->plugin_results));
                uint64_t code_runs = u->server_code_runs_reported ? u->server_code_runs : c->xai_code_items;
                for (int f = 0; f < AJ_TOOL_FEES; f++) {
                        bool reported = f == AJ_TOOL_FEE_CODE_EXECUTION && u->server_code_runs_reported &&
                                        u->unreported_uses[f];
                        ch.tool_uses[f] = max_u64(ch.tool_uses[f],
                                                  reported ? u->server_code_runs : u->unreported_uses[f]);
                }
                if (u->unreported_uses[AJ_TOOL_FEE_CODE_EXECUTION] && !u->server_code_runs_reported)
                        ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION] = max_u64(ch.tool_uses[AJ_TOOL_FEE_CODE_EXECUTION],
                                                                           c->xai_code_items);
                /* xAI's code interpreter (its Responses name for code execution) bills each run,
                 * not a container: the larger of the containers counted and the runs. */
                if (u->tool_offered[AJ_TOOL_FEE_CODE_INTERPRETER] && c->upstream != AJ_LLM_UPSTREAM_OPENAI)
                        ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER] = max_u64(ch.tool_uses[AJ_TOOL_FEE_CODE_INTERPRETER],
                                                                             code_runs);
        }
        ch.provider_cost_pusd = u->provider_cost_pusd;
        ch.estimated = !u->input_reported || !(u->output_reported && ended);
        *ret = ch;
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *aj_llm_call_to_json(const AjLlmCall *c)
{
        const AjLlmUsage *u = &c->u;
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);
        json_t *tools = json_array(), *finish = json_array(), *args = json_array(), *ids = json_array();
        for (size_t i = 0; tools && args && ids && i < u->n_tool_calls; i++)
                if (json_array_append_new(tools, json_string(u->tool_calls[i])) < 0 ||
                    json_array_append_new(ids, string_or_null(u->tool_call_ids[i])) < 0 ||
                    json_array_append_new(args,
                                          c->tool_args[i].done ? json_string(u->tool_args_sha256[i]) : json_null()) < 0)
                        goto fail;
        if (!args || !ids)
                goto fail;
        if (!finish || (u->stop_reason && json_array_append_new(finish, json_string(u->stop_reason)) < 0))
                goto fail;
        json_t *o = json_pack("{s:s, s:i, s:s, s:b, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o, s:I, s:o, "
                              "s:o, s:o, s:o}",
                              "api", aj_llm_api_name(c->api), "status", u->status, "outcome",
                              aj_llm_outcome_name(u->outcome), "stream", u->stream, AJ_BROKER_F_MODEL,
                              string_or_null(u->model), "gen_ai.response.model", string_or_null(u->response_model),
                              AJ_BROKER_F_INPUT_TOKENS, (json_int_t)ch.input, AJ_BROKER_F_OUTPUT_TOKENS,
                              (json_int_t)ch.output, AJ_BROKER_F_CACHED_TOKENS, (json_int_t)ch.cache_read,
                              "gen_ai.usage.cache_creation.input_tokens", (json_int_t)ch.cache_creation,
                              "cache_creation_1h_tokens", (json_int_t)ch.cache_creation_1h, "reasoning_tokens",
                              (json_int_t)u->reasoning_tokens, "estimated", ch.estimated,
                              "gen_ai.response.finish_reasons", finish, "tool_calls", tools, "tool_calls_total",
                              (json_int_t)u->tool_calls_total, "tool_arguments_sha256", args, "tool_call_ids", ids,
                              "error", string_or_null(u->error), "parse_error", string_or_null(u->parse_error));
        /* Part of the response was not read: the meter counted a tool call it may hold. */
        if (o && u->unread && json_object_set_new(o, "unread", json_true()) < 0) {
                json_decref(o);
                return NULL;
        }
        if (o && ch.web_searches &&
            json_object_set_new(o, "web_search_requests", json_integer((json_int_t)ch.web_searches)) < 0) {
                json_decref(o);
                return NULL;
        }
        /* The provider's own figure of the cost, beside the gateway's (the event's cost_usd). */
        if (o && u->provider_cost_reported &&
            json_object_set_new(o, "provider_cost_usd", json_real((double)ch.provider_cost_pusd / AJ_PUSD_PER_USD)) <
                    0) {
                json_decref(o);
                return NULL;
        }
        if (o && u->provider_cost_error &&
            json_object_set_new(o, "provider_cost_error", json_string(u->provider_cost_error)) < 0) {
                json_decref(o);
                return NULL;
        }
        for (int f = 0; o && f < AJ_TOOL_FEES; f++)
                if (ch.tool_uses[f] &&
                    json_object_set_new(o, aj_tool_fee_field(f), json_integer((json_int_t)ch.tool_uses[f])) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
fail:
        json_decref(tools);
        json_decref(finish);
        json_decref(args);
        json_decref(ids);
        return NULL;
}
