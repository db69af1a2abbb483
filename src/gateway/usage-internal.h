/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by usage.c, usage-tools.c and the per-API readers (usage-anthropic.c, usage-openai.c). */
#pragma once

#include <jansson.h>

#include "gateway/sse.h"
#include "gateway/usage.h"

/* One tool call's arguments: fragments until the call ends, then its digest. */
typedef struct {
        uint32_t key;
        char *buf; /* the fragments kept */
        size_t len, cap;
        uint64_t seen;  /* fragment bytes seen, kept or not */
        bool have_json; /* json_sha256 is the digest of the arguments the call started with */
        bool done;      /* u->tool_args_sha256 is set */
        char json_sha256[AJ_SHA256_HEX_SIZE];
} AjLlmToolArgs;

struct AjLlmCall {
        AjLlmApi api;
        AjLlmUpstream upstream;
        AjLlmUsage u;
        AjSse *sse;
        bool streaming;   /* the response is read as an event stream */
        bool stopped;     /* could not be read on: the rest counts as output unread (usage.c unread()) */
        bool strip_usage; /* drop the chat usage-only chunk */
        char *body;       /* a whole response, until its end */
        size_t body_len, body_cap;
        /* The kept tool calls' arguments as they are read (usage-tools.c); a call is found
         * by its key in the response: Anthropic's content block index, Chat's (choice << 16
         * | index) (a stream names a call in its first chunk only, usually, so a provider
         * repeating the name is not counted twice), Responses' output_index. */
        AjLlmToolArgs tool_args[AJ_LLM_MAX_TOOL_CALLS];
        uint64_t tool_args_kept; /* fragment bytes kept, all calls: at most AJ_LLM_MAX_TOOL_ARGS */
        uint64_t uncached_input; /* Anthropic reports input without the cache reads and writes */
        /* Anthropic's web searches: the web_search blocks started, the count the usage
         * reported, and whether that was the final usage (message_delta, a whole body). */
        uint64_t searches_started, searches_reported;
        bool searches_final;
        /* The same for its web fetches (web_fetch blocks, web_fetch_requests). */
        uint64_t fetches_started, fetches_reported;
        bool fetches_final;
        /* The Responses code interpreter's containers counted (usage.h tool_uses). */
        char *containers[AJ_LLM_MAX_CONTAINERS];
        size_t n_containers;
        /* One container is counted already for a tool whose container the provider starts
         * itself (usage.h container_auto): the first one named is it. */
        bool auto_container;
        /* xAI's server-side tools the request enabled (AJ_XAI_* bits, by tool type), and which of
         * their internal calls' names (aj_llm_xai_server_call()) the client declared as its own
         * tools: a call so named is the client's, counted. */
        unsigned xai_server_tools;
        uint32_t xai_declared;
        /* The provider's own calls its response listed as items (xAI's custom_tool_call items of
         * its search tools and x_search_call items; of its code execution): searches and code
         * runs, charged where its usage does not say how many (aj_llm_call_charge()). */
        uint64_t xai_search_items, xai_code_items;
};

/* xAI's server-side tool families, by the type of the tool that enables them. */
enum {
        AJ_XAI_WEB = 1u << 0,         /* "web_search" */
        AJ_XAI_X = 1u << 1,           /* "x_search" */
        AJ_XAI_CODE = 1u << 2,        /* "code_interpreter" (its Responses name), "code_execution" */
        AJ_XAI_COLLECTIONS = 1u << 3, /* "collections_search", "file_search" (its Responses name) */
        AJ_XAI_VIEW = 1u << 4,        /* with a family's: a view of an image or video it found (tokens only) */
};

/* Request side: the family a tool of this type enables (0: none), and the names the tool
 * object declares as the client's own (its name, function.name, custom.name, a namespace's
 * and its members'), marked in c->xai_declared. */
void aj_llm_xai_tool(AjLlmCall *c, json_t *tool);
/* Response side: the family of a call named `name` that xAI ran itself for a server-side tool
 * the request enabled, and that is no tool the client declared; 0 when it is the client's. */
unsigned aj_llm_xai_server_call(const AjLlmCall *c, const char *name);

/* 0 when JSON text from the agent or a provider is within AJ_LLM_MAX_JSON_VALUES and
 * AJ_LLM_MAX_JSON_DEPTH, so it may be parsed; else -E2BIG or -ELOOP, and *ret_why says
 * which bound, for a message. */
int aj_llm_json_bounded(const void *text, size_t len, const char **ret_why);
/* Replaces *dst with at most AJ_LLM_MAX_NAME bytes of s (cut at a UTF-8 boundary); NULL s: no change. */
void aj_llm_set_name(char **dst, const char *s);
/* A tool call the model asked for, `key` naming it within the response, `id` its id (a
 * JSON string, or anything else: none): its place in u->tool_calls, or -1 when not kept
 * (too many, no name, no memory) or when an earlier call had that id (the same call). */
int aj_llm_tool_call(AjLlmCall *c, const char *name, json_t *id, uint32_t key);
/* The kept call `key`: its place, or -1. */
int aj_llm_tool_find(const AjLlmCall *c, uint32_t key);
/* A fragment of the arguments of call `key` (JSON text, streamed). */
void aj_llm_tool_args_fragment(AjLlmCall *c, uint32_t key, const char *frag, size_t len);
/* The whole arguments of call `key` as JSON text: the call's digest, whatever came before. */
void aj_llm_tool_args_text(AjLlmCall *c, uint32_t key, const char *text, size_t len);
/* The arguments as a JSON value (Anthropic's input): the digest, unless fragments follow. */
void aj_llm_tool_args_json(AjLlmCall *c, uint32_t key, json_t *args);
/* Call `key` has ended: its digest from what was read. */
void aj_llm_tool_args_end(AjLlmCall *c, uint32_t key);
/* The response has ended: every call not digested yet is, from what was read. */
void aj_llm_tool_args_finish(AjLlmCall *c);
/* The provider reported an error: the first is kept, the call FAILED. */
void aj_llm_provider_error(AjLlmCall *c, const char *type, const char *message);
/* An error object: {"type", "message"} (Anthropic) or {"code"|"type", "message"} (OpenAI). */
void aj_llm_error_object(AjLlmCall *c, json_t *err);
_printf_(2, 3) void aj_llm_parse_error(AjLlmCall *c, const char *fmt, ...);
/* A non-negative integer member: true and *ret when present. */
bool aj_llm_u64(json_t *o, const char *key, uint64_t *ret);
/* What the provider says the call cost, from a usage object (usage.h provider_cost_pusd). */
void aj_llm_provider_cost(AjLlmCall *c, json_t *usage);
/* Counts the bytes of a string member as generated output. */
void aj_llm_output_bytes(AjLlmCall *c, json_t *o, const char *key);

void aj_llm_anthropic_event(AjLlmCall *c, const char *type, json_t *root);
void aj_llm_anthropic_body(AjLlmCall *c, json_t *root);
/* True for the usage-only chunk. */
bool aj_llm_chat_event(AjLlmCall *c, json_t *root);
void aj_llm_chat_body(AjLlmCall *c, json_t *root);
void aj_llm_responses_event(AjLlmCall *c, const char *type, json_t *root);
void aj_llm_responses_body(AjLlmCall *c, json_t *root);
/* A tool's type as the name of a provider's built-in tool (without a namespace such as
 * "openrouter:"; *ret_namespaced says there was one), NULL when not a string; and whether the
 * gateway knows the type (a tool it meters, a search, a tool free beyond tokens). */
const char *aj_llm_tool_type(json_t *tool, bool *ret_namespaced);
bool aj_llm_tool_known(json_t *tool);
/* usage-reach.c: the places a request (`root`) lets the provider connect to. */
void aj_llm_reach_of(AjLlmApi api, json_t *root, AjLlmReachList *l);
/* Whether the string member `key` of `parent` (itself member `pkey` of its own object) gives
 * the content of an image, document, file or audio part: its data, a URL or a file id. */
bool aj_llm_blob_at(const char *key, json_t *parent, const char *pkey);
