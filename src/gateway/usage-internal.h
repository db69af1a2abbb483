/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by usage.c and the per-API readers (usage-anthropic.c, usage-openai.c). */
#pragma once

#include <jansson.h>

#include "gateway/sse.h"
#include "gateway/usage.h"

struct AjLlmCall {
        AjLlmApi api;
        AjLlmUsage u;
        AjSse *sse;
        bool streaming;   /* the response is read as an event stream */
        bool stopped;     /* the stream could not be read on: the rest is not metered */
        bool strip_usage; /* drop the chat usage-only chunk */
        char *body;       /* a whole response, until its end */
        size_t body_len, body_cap;
        /* Chat streams name a tool call in its first chunk only, usually: (choice << 16 | index)
         * of the calls counted, so a provider repeating the name is not counted twice. */
        uint32_t chat_slots[AJ_LLM_MAX_TOOL_CALLS];
        size_t n_chat_slots;
        uint64_t uncached_input; /* Anthropic reports input without the cache reads and writes */
};

/* Replaces *dst with at most AJ_LLM_MAX_NAME bytes of s (cut at a UTF-8 boundary); NULL s: no change. */
void aj_llm_set_name(char **dst, const char *s);
/* A tool call the model asked for. */
void aj_llm_tool_call(AjLlmCall *c, const char *name);
/* The provider reported an error: the first is kept, the call FAILED. */
void aj_llm_provider_error(AjLlmCall *c, const char *type, const char *message);
/* An error object: {"type", "message"} (Anthropic) or {"code"|"type", "message"} (OpenAI). */
void aj_llm_error_object(AjLlmCall *c, json_t *err);
_printf_(2, 3) void aj_llm_parse_error(AjLlmCall *c, const char *fmt, ...);
/* A non-negative integer member: true and *ret when present. */
bool aj_llm_u64(json_t *o, const char *key, uint64_t *ret);
/* Counts the bytes of a string member as generated output. */
void aj_llm_output_bytes(AjLlmCall *c, json_t *o, const char *key);

void aj_llm_anthropic_event(AjLlmCall *c, const char *type, json_t *root);
void aj_llm_anthropic_body(AjLlmCall *c, json_t *root);
/* True for the usage-only chunk. */
bool aj_llm_chat_event(AjLlmCall *c, json_t *root);
void aj_llm_chat_body(AjLlmCall *c, json_t *root);
void aj_llm_responses_event(AjLlmCall *c, const char *type, json_t *root);
void aj_llm_responses_body(AjLlmCall *c, json_t *root);
