/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What one model call used, read from the provider's own response: an AjLlmCall
 * is fed the request body, then the response (a Server-Sent Events stream or a
 * whole JSON body, in chunks of any size), and gives the model, the input, output,
 * cache and reasoning tokens, the stop reason, the tool calls the model asked for
 * (names and a digest of their arguments), and whether the response completed, was cut or failed. Pure: no syscalls, no
 * logging; a response it cannot read is recorded (parse_error), never fatal.
 *
 * Where each number comes from (docs/gateway.md has the full table):
 *   Anthropic Messages: message_start's message.usage (input, cache reads and
 *     writes), message_delta's usage (CUMULATIVE output: the last one wins, deltas
 *     are never added), tool_use content blocks, message_stop ends it.
 *   OpenAI Chat Completions: the usage object (streaming: the final chunk with
 *     "choices": [] that stream_options.include_usage asks for), tool_calls.
 *   OpenAI Responses: response.completed / response.incomplete / response.failed
 *     carry the response with its usage; function_call output items.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/sse.h"
#include "prices.h"
#include "util/macros.h"
#include "util/sha256.h"

typedef enum {
        AJ_LLM_API_ANTHROPIC_MESSAGES,     /* POST /v1/messages */
        AJ_LLM_API_ANTHROPIC_COUNT_TOKENS, /* POST /v1/messages/count_tokens (free: counts, no usage) */
        AJ_LLM_API_OPENAI_CHAT,            /* POST /v1/chat/completions */
        AJ_LLM_API_OPENAI_RESPONSES,       /* POST /v1/responses */
        _AJ_LLM_API_MAX,
} AjLlmApi;

/* The server a call goes to, where a reading depends on who bills it: by the provider url's
 * host (aj_llm_upstream_from_url()). */
typedef enum {
        AJ_LLM_UPSTREAM_OTHER,  /* any other server (OpenRouter, xAI, a proxy): read fail closed */
        AJ_LLM_UPSTREAM_OPENAI, /* OpenAI's own API, https://api.openai.com: a file is input tokens */
} AjLlmUpstream;

typedef enum {
        AJ_LLM_PENDING,    /* the response has not ended */
        AJ_LLM_COMPLETE,   /* message_stop, [DONE], response.completed, or a whole body */
        AJ_LLM_INCOMPLETE, /* the provider stopped it early and said so (response.incomplete) */
        AJ_LLM_CUT,        /* the body ended before the provider's end: charged what was sent */
        AJ_LLM_FAILED,     /* an error status, an error event, or response.failed */
} AjLlmOutcome;

#define AJ_LLM_MAX_TOOL_CALLS 128         /* names kept per call; more are counted, not kept */
#define AJ_LLM_MAX_TOOL_ARGS (256u << 10) /* bytes of streamed tool arguments kept per call */
#define AJ_LLM_MAX_NAME 256               /* bytes of a model, tool name or stop reason kept */
#define AJ_LLM_MAX_CALL_ID 128            /* bytes of a tool call id kept (the broker's AJ_BROKER_MAX_ID) */
#define AJ_LLM_MAX_TOOL_RESULTS 64        /* a request's last tool results kept (the new ones are last) */
#define AJ_LLM_MAX_ERROR 512              /* bytes of an error message kept */
#define AJ_LLM_MAX_CONTAINERS 16          /* code interpreter container ids kept per call */
#define AJ_LLM_MAX_BODY (8u << 20)        /* a whole (not streamed) response body */
#define AJ_LLM_MAX_REQUEST (32u << 20)    /* a request body the gateway reads */
#define AJ_LLM_MAX_EVENT (4u << 20)       /* one SSE event (response.completed repeats the whole output) */
/* JSON from the agent (a request) or a provider (a body, an event, a tool call's arguments)
 * is scanned before jansson parses it (util/json-scan.h), and refused past these: jansson
 * spends up to ~232 bytes a value (an empty object; measured with 2.14), so a 16 MiB body
 * of "{}," took 1.2 GB of the supervisor's memory, which no cgroup of the jail holds. With
 * the bound, one DOM is at most ~240 MB (2^20 values), and one at a time (the supervisor
 * parses in its loop, the DOM is freed before it goes on). Measured: Claude Code 2.1's
 * first request (24 tools, the system prompt) holds 1,128 values, 11 deep, ~68 bytes a
 * value; a 15 MB session of tool uses and results 347 K values (43 bytes a value). So
 * 2^20 leaves 3x over a body near the gateway's max_body (16 MiB) of real requests, and
 * 128 levels >10x over the depth seen (jansson itself stops at 2048; the meter's walks
 * recurse). docs/gateway.md. */
#define AJ_LLM_MAX_JSON_VALUES (1u << 20)
#define AJ_LLM_MAX_JSON_DEPTH 128u
#define AJ_LLM_BLOB_TOKENS 1600     /* the prompt estimate of an image or document (base64 data) */
#define AJ_LLM_BYTES_PER_TOKEN 3    /* estimates: fewer bytes a token than usual, so not under-charged */
#define AJ_LLM_WEB_PLUGIN_RESULTS 5 /* OpenRouter's web plugin without max_results: its documented default */
/* The uses reserved of a tool billed per use whose bound the gateway reads but the request
 * leaves out (Anthropic's web_fetch without max_uses): the web search default's
 * (AJ_SUP_LLM_DEFAULT_SEARCHES, Claude Code's bound). */
#define AJ_LLM_DEFAULT_TOOL_USES 8
/* The pages a file OpenRouter may parse with a paid engine (mistral-ocr) is reserved and charged
 * as: Mistral OCR's documented limit of a document (1,000 pages). Nothing in a request bounds a
 * PDF's pages by its size: a compressed object stream holds thousands of pages in a few bytes. */
#define AJ_LLM_FILE_PAGES 1000
/* A provider's own statement of what a call cost (usage.h provider_cost_pusd) above this is
 * absurd (a call of the dearest model at its longest costs tens of dollars): an error named in
 * the event, and the call charged this (fail closed: it breaches any cap below it). */
#define AJ_LLM_MAX_PROVIDER_COST_USD 10000

#define AJ_LLM_MAX_REACH 16 /* places a request lets the provider connect to, kept; past it: more */

/* A place the request lets the provider connect to for the agent (usage-reach.c): a host and
 * port (of an MCP server's URL, or a web_fetch domain, which is the host and its subdomains),
 * or no host the gateway can name (host NULL): a fetch tool without allowed_domains, a
 * connector, a tool type it does not know, a member it cannot read. */
typedef struct {
        char *what; /* the member: "mcp_servers[0].url", "tools[1] \"web_fetch_20250910\" ..." */
        char *host; /* as written (an IPv6 literal without brackets); NULL: any host */
        uint16_t port;
        bool domain; /* and its subdomains */
} AjLlmReach;

typedef struct {
        AjLlmReach items[AJ_LLM_MAX_REACH];
        size_t n;
        bool more; /* more than were kept (or no memory): judged as any host */
} AjLlmReachList;
void aj_llm_reach_done(AjLlmReachList *l);
/* A body of a path the gateway does not meter (a batch of requests): every object in it read
 * as a request's tools and mcp_servers. -EINVAL when it is not JSON (an upload), -EBADMSG
 * when it is JSON repeating a key, -E2BIG or -ELOOP past the JSON bounds. */
int aj_llm_body_reach(const void *body, size_t len, AjLlmReachList *ret);

typedef struct {
        /* From the request. */
        char *model; /* NULL: the request named none */
        bool stream;
        uint64_t max_output_tokens; /* max_tokens, max_completion_tokens or max_output_tokens; 0: none */
        /* The answers the model writes, each up to max_output_tokens: "n" or "best_of",
         * the larger (Chat Completions, OpenAI-compatible servers); 1 when neither is set. */
        uint64_t choices;
        /* A Chat request's "prediction" (Predicted Outputs), estimated as the prompt is: the
         * tokens of it the model does not take are billed as output, past any output limit. */
        uint64_t prediction_tokens;
        /* Responses: the input the provider holds for the request, billed as its input but not
         * in its body: the response a previous_response_id names (its text, NULL: none), a
         * conversation (its items; or a previous_response_id that is not a string). */
        char *previous_response_id;
        bool held_input_unknown;
        /* "background" set (or xAI's "deferred"): the provider answers at once and runs the
         * model afterwards; the output is fetched later (GET /v1/responses/ID,
         * /v1/chat/deferred-completion/ID), where no call is metered. */
        bool background;
        /* A 2xx whole answer holding no answer and no usage ("choices", "output"): an
         * acknowledgment, the work run later and fetched by GET where no call is metered
         * (Perplexity's async API, a deferred or background request a server took as one). */
        bool acknowledged;
        /* The request lets the provider answer with a model it does not name: OpenRouter's
         * "models" (fallbacks tried when one fails, which the agent can make it do: a prompt
         * past the first one's context) or a preset ("@preset/NAME" in the model, "preset"),
         * which also holds a model list and tools (its server tools: web search) the request
         * does not show, and OpenRouter's router models ("openrouter/auto" and the rest of its
         * own "openrouter/" namespace), which pick the model that answers. Its price and its tools
         * are unknown: refused under a cap; without one it is priced by the model the response
         * names. */
        bool model_routed;
        /* OpenRouter's provider routing: a "provider" object (its order, only, ignore, sort,
         * quantizations, data policies..., any of which may pass over the cheapest endpoint) or
         * a model variant that may be billed above the model's price (":nitro", sorted by
         * throughput; ":exacto"; ":extended" and ":thinking", catalog entries of their own
         * price: prices.h aj_model_variant()) lets it answer through an endpoint priced above
         * the model's price. max_price_input/max_price_output: its
         * provider.max_price.prompt and .completion (USD per million tokens there) in pico-USD
         * per token, the dearest endpoint it may pick; max_price_set when both are numbers of
         * at least 0 or plain decimal strings (llm-meter.c reserves at them, and refuses a
         * routing without them under a cost cap). */
        bool provider_routed;
        /* A variant suffix of the model's name the gateway does not know (":batch", with its
         * colon), in OpenRouter's "vendor/model" form: what it bills is unknown; under a cost cap
         * refused unless the model's whole name is priced. NULL: none. */
        char *unknown_variant;
        bool max_price_set;
        uint64_t max_price_input, max_price_output;
        /* Its max_price.request once and .image for each image of the request (USD there), in
         * pico-USD: the fees the dearest endpoint it may pick bills the call besides its tokens
         * (reserved, and charged when the provider states no cost). A .request or .image that is
         * there and no price leaves max_price_set false. */
        uint64_t max_price_fee;
        /* The first member of the request that lets the provider bill beyond tokens in a way the
         * gateway cannot meter (a tool type or a plugin it does not know, xAI's Live Search
         * "search_parameters", a file-parser engine it does not know) or at a rate the prices do
         * not hold (Anthropic's fast mode "speed", a priority "service_tier", audio and image
         * tokens), named for the refusal: under a cost cap the request is refused (fail closed).
         * NULL: none. */
        char *unmetered;
        /* The tool results the request hands back to the model (Anthropic tool_result
         * blocks, Chat "tool" messages, Responses function_call_output items): the last
         * AJ_LLM_MAX_TOOL_RESULTS of them, by the id of the call each answers, and whether
         * it says the call failed (Anthropic is_error; the others cannot say). */
        char *tool_result_ids[AJ_LLM_MAX_TOOL_RESULTS];
        bool tool_result_error[AJ_LLM_MAX_TOOL_RESULTS];
        size_t n_tool_results;
        uint64_t prompt_estimate; /* input tokens estimated from the request, for a reservation */
        /* The web searches the request lets the provider run, billed per search: the sum of
         * its Anthropic web search tools' max_uses, 1 for a Chat Completions search (a
         * request with web_search_options, or a search model: it searches once and reports
         * no count); search_unbounded: a search tool without a bound besides (Anthropic's
         * without max_uses, the Responses API's web_search tools, the tools a stored prompt
         * may hold), which the reservation takes at a default number (docs/gateway.md). */
        uint64_t max_searches;
        bool search_unbounded;
        bool chat_search;       /* a Chat Completions search: its response is one search */
        bool chat_search_model; /* ... by its model, which searches for every request */
        /* OpenRouter's web plugin ("plugins": [{"id": "web", "max_results": N}], or a model
         * named "...:online"): billed per result, up to max_results (default
         * AJ_LLM_WEB_PLUGIN_RESULTS) a request, and the usage does not say how many: an
         * answered request is charged them all, priced as searches (included in
         * max_searches for the reservation). */
        uint64_t plugin_results;
        /* A namespaced search tool's searches ("tools": [{"type": "openrouter:web_search"}]:
         * OpenRouter's server tool, which any model may call 0 to N times a request, bounded by
         * no member the gateway reads, its uses not reported): AJ_LLM_DEFAULT_TOOL_USES each,
         * included in max_searches, and charged for an answer (fail closed, as plugin_results);
         * unreported_uses the same for its other namespaced tools billed per use
         * ("openrouter:web_fetch", "openrouter:image_generation"), included in tool_offered. xAI's
         * x_search (and its code_execution outside Anthropic's API) is counted so too: its response
         * names no call of it the gateway reads. A final usage that reports how many searches
         * the provider's server tools ran (server_searches) is charged that count instead. */
        uint64_t unreported_searches;
        uint64_t unreported_uses[AJ_TOOL_FEES];
        /* The Responses API's "prompt": a stored prompt, whose tools the request does not
         * show: reserved as if it offered every built-in tool the provider bills (unbounded
         * web search, one use of the others). */
        bool stored_prompt;
        /* The provider's other tools billed per use (prices.h AjToolFee) that the request offers:
         * Anthropic's web_fetch and code_execution tools, the Responses API's file_search,
         * code_interpreter and image_generation tools (by type, any version and letter case),
         * and the uses reserved for each: an Anthropic web_fetch tool's max_uses (summed; none,
         * or 0 or less: AJ_LLM_DEFAULT_TOOL_USES), one of each other tool, so that under a cost
         * cap a fee nobody priced refuses the request before the provider runs (and bills) any. */
        uint64_t tool_offered[AJ_TOOL_FEES];
        /* A code_interpreter tool whose container the provider starts itself ({"type": "auto"},
         * anything but a container id), or a stored prompt (which may hold one): the provider
         * creates the container before the model runs, so an answer is billed a container at
         * least, named in the response or not. */
        bool container_auto;
        /* Where the request lets the provider connect for the agent (Anthropic's mcp_servers and
         * web_fetch tools, the Responses API's mcp tools, images and files by URL, what the
         * gateway cannot read of them),
         * for the supervisor to judge against the run's network policy (docs/gateway.md). Read
         * for count_tokens too (the provider lists an MCP server's tools to count them). */
        AjLlmReachList reach;

        /* From the response. */
        int status;
        char *response_model;   /* the model that answered (often a dated snapshot) */
        char *response_id;      /* Responses: the response's "id", which a later request may continue */
        bool input_reported;    /* the provider reported the input tokens */
        bool output_reported;   /* ... and its final count of output tokens */
        uint64_t input_tokens;  /* ALL input: uncached + cache reads + cache writes */
        uint64_t output_tokens; /* reasoning included */
        uint64_t cache_read_tokens;
        uint64_t cache_creation_tokens;
        uint64_t cache_creation_1h_tokens; /* of those, kept an hour (priced apart) */
        uint64_t reasoning_tokens;
        /* Web searches the provider ran for the call, billed per search on top of the tokens:
         * Anthropic's usage.server_tool_use.web_search_requests, Responses' web_search_call
         * items, one for a Chat Completions search (chat_search) that was answered (by a
         * search model, streamed, or citing a url: usage.c), OpenRouter's web plugin results
         * besides (plugin_results, added by aj_llm_call_charge()). */
        uint64_t web_search_requests;
        /* Uses of the provider's other tools it bills per use (prices.h AjToolFee): Anthropic's
         * usage.server_tool_use.web_fetch_requests, the Responses API's file_search_call and
         * image_generation_call items, and the containers its code_interpreter_call items ran
         * in (an item without a container id, or past AJ_LLM_MAX_CONTAINERS, is another; one
         * for an answer when the provider starts it itself: container_auto), and one use of
         * Anthropic's code execution per response that ran it. */
        uint64_t tool_uses[AJ_TOOL_FEES];
        /* The searches the provider's server tools ran, as its final usage reports them
         * (OpenRouter's usage.server_tool_use.web_search_requests, xAI's
         * usage.server_side_tool_usage_details web_search_calls + x_search_calls):
         * server_searches_reported false when it reported none. */
        uint64_t server_searches;
        bool server_searches_reported;
        /* The same for xAI's code execution (usage.server_side_tool_usage_details
         * code_interpreter_calls): charged in place of the uses an unreported code_execution tool
         * is reserved at (unreported_uses). */
        uint64_t server_code_runs;
        bool server_code_runs_reported;
        /* What the provider says the call cost, in pico-USD: xAI's usage.cost_in_usd_ticks (1e-10
         * USD), OpenRouter's usage.cost (credits, USD; with is_byok true, plus
         * cost_details.upstream_inference_cost, billed on the user's own key); the largest of
         * the usages read. Only ever a floor: the call is charged the larger of it and the
         * gateway's own price (aj_llm_call_charge()). Read from the upstream's response alone,
         * never from the request. provider_cost_error: a figure that could not be taken (not a
         * number, negative, absurd), named; an absurd one is charged as
         * AJ_LLM_MAX_PROVIDER_COST_USD. */
        uint64_t provider_cost_pusd;
        bool provider_cost_reported;
        char *provider_cost_error;
        uint64_t counted_tokens; /* count_tokens: the count it returned */
        uint64_t output_bytes;   /* generated text and tool arguments seen in a stream */
        /* Part of the response was relayed but not read (past a bound, not JSON): it may hold
         * tool calls the gateway could not count. */
        bool unread;
        char *stop_reason;
        char *tool_calls[AJ_LLM_MAX_TOOL_CALLS];
        /* Each kept call's arguments_sha256, as the broker computes it (aj_meter_args_digest()
         * of the parsed arguments), once the response has ended: docs/gateway.md. */
        char tool_args_sha256[AJ_LLM_MAX_TOOL_CALLS][AJ_SHA256_HEX_SIZE];
        /* Each kept call's id (Anthropic tool_use.id, Chat tool_calls[].id, Responses
         * call_id), NULL when it gave none that a broker request could carry (a plain name
         * of 1 to AJ_LLM_MAX_CALL_ID bytes). A call whose id an earlier call of the same
         * response had is that call: not counted again. */
        char *tool_call_ids[AJ_LLM_MAX_TOOL_CALLS];
        size_t n_tool_calls;       /* names kept */
        uint64_t tool_calls_total; /* asked for, kept or not */
        AjLlmOutcome outcome;
        char *error;       /* the provider's error: "type: message" */
        char *parse_error; /* the first part of the response that could not be read, named */
} AjLlmUsage;

const char *aj_llm_api_name(AjLlmApi api);
const char *aj_llm_outcome_name(AjLlmOutcome o);

/* The metered API behind a request path (query string allowed) of a provider
 * speaking `provider_api` ("anthropic" or "openai"); a gateway URL may have a path
 * prefix, so the path is matched by its end. -ENOENT: not a metered call. */
int aj_llm_api_from_path(const char *provider_api, const char *path, AjLlmApi *ret);

typedef struct AjLlmCall AjLlmCall;

int aj_llm_call_new(AjLlmApi api, AjLlmCall **ret);
/* The upstream of a provider url ("https://host[:port][/path]", as the gateway validated it):
 * OPENAI only for https to api.openai.com (port 443), any letter case; anything else OTHER. */
AjLlmUpstream aj_llm_upstream_from_url(const char *url);
/* Before aj_llm_call_request(): the server the call goes to (default OTHER). */
void aj_llm_call_set_upstream(AjLlmCall *c, AjLlmUpstream upstream);
void aj_llm_call_free(AjLlmCall *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjLlmCall *, aj_llm_call_free);

/* The request body. -EINVAL when it is not a JSON object or repeats a key, -E2BIG when it
 * holds more than AJ_LLM_MAX_JSON_VALUES values, -ELOOP when it nests deeper than
 * AJ_LLM_MAX_JSON_DEPTH (parse_error says why): the gateway should refuse such a request
 * (413 for -E2BIG). */
int aj_llm_call_request(AjLlmCall *c, const void *body, size_t len);
/* Hide the usage-only chunk of an OpenAI chat stream from the client (the gateway
 * asked for it: aj_llm_openai_chat_add_usage()). */
void aj_llm_call_strip_usage_chunk(AjLlmCall *c, bool strip);

/* The response's status and Content-Type (NULL: unknown; then a 2xx answer to a
 * streaming request is read as a stream). */
void aj_llm_call_response_start(AjLlmCall *c, int status, const char *content_type);
/* Response bytes as they arrive. Only -ENOMEM is returned: what cannot be read is
 * recorded in parse_error and the rest of the stream is not metered. */
int aj_llm_call_response_data(AjLlmCall *c, const void *buf, size_t len);
/* The same for a relay that parses the stream itself (to drop events): one event;
 * *ret_forward false when the client must not see it. */
int aj_llm_call_response_event(AjLlmCall *c, const AjSseEvent *ev, bool *ret_forward);
/* The body ended (cleanly or not): an unfinished response is CUT. */
void aj_llm_call_response_end(AjLlmCall *c);

const AjLlmUsage *aj_llm_call_usage(const AjLlmCall *c);
/* Kept call i has ended in the response read so far (its arguments and digest are final):
 * the agent can have it whole from here (Anthropic content_block_stop, Responses
 * ".done" events, Chat's finish_reason; any call at the response's end). */
bool aj_llm_call_tool_done(const AjLlmCall *c, size_t i);

/* What to charge: the reported counts, or where the provider reported none (a cut
 * stream, an unreadable body) estimates: the prompt estimate for input, and at
 * least one token per AJ_LLM_BYTES_PER_TOKEN bytes of output seen. Input includes
 * cache reads and writes. */
typedef struct {
        uint64_t input, output, cache_read, cache_creation, cache_creation_1h;
        uint64_t web_searches;            /* as reported: a search is billed whether or not the call ended */
        uint64_t tool_uses[AJ_TOOL_FEES]; /* the same for the provider's other tools */
        uint64_t provider_cost_pusd;      /* what the provider says it charged (a floor); 0: nothing said */
        bool estimated;
} AjLlmCharge;
void aj_llm_call_charge(const AjLlmCall *c, AjLlmCharge *ret);

/* The call as event fields: api, status, outcome, the models, the charged tokens
 * under the gen_ai.* names of the broker protocol (with "estimated"), the
 * reasoning tokens, the finish reason, the tool calls, the errors. NULL without memory. */
struct json_t;
struct json_t *aj_llm_call_to_json(const AjLlmCall *c);

/* OpenAI chat streaming: the usage comes only with stream_options.include_usage.
 * When the body streams without it, returns 1 with a rewritten body (free() it)
 * that sets it, and the relay must drop the usage-only chunk the client did not
 * ask for (aj_llm_call_strip_usage_chunk()); 0 when nothing needs changing;
 * -EINVAL when the body is not a JSON object, repeats a key, or has a
 * stream_options that is not an object; -E2BIG or -ELOOP past the JSON bounds.
 * Without stream_options, the member is inserted and the client's bytes are
 * otherwise kept. */
int aj_llm_openai_chat_add_usage(const void *body, size_t len, char **ret_body, size_t *ret_len);
/* The output limit the gateway may set in a request of `api` that sets none: Chat's
 * max_completion_tokens, Responses' max_output_tokens; NULL for the others (Messages
 * requires max_tokens of the client: the provider refuses a request without it). */
const char *aj_llm_output_limit_field(AjLlmApi api);
/* A request that sets no output limit (none, null, negative, 0): returns 1 with a body
 * (free() it) that sets aj_llm_output_limit_field(api) to `limit`, inserted when absent
 * (the client's bytes kept), else set and the body re-printed. -EINVAL for an API without
 * such a field or a body that is not one JSON object without repeated keys; -E2BIG or
 * -ELOOP past the JSON bounds. */
int aj_llm_set_output_limit(AjLlmApi api, const void *body, size_t len, uint64_t limit, char **ret_body,
                            size_t *ret_len);
/* An OpenAI chat chunk with "choices": [] and a usage object: the one to drop. */
bool aj_llm_openai_chat_usage_only(const AjSseEvent *ev);
