/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Model prices: the shipped, dated table (data/prices.json, USD per million
 * tokens) and the profile's "prices" (USD per token), held the same way, in
 * integer pico-USD per token. A model is priced by an entry of its exact name,
 * else by the entry of its base name: the name without a trailing snapshot date
 * ("-20250929", "-2025-04-14", "@20250929") or "-latest", so
 * claude-sonnet-4-5-20250929 is priced as claude-sonnet-4-5 and gpt-4o-2024-08-06
 * as gpt-4o. Nothing else is guessed: an unknown model has no price.
 * Parsing and lookup are pure; aj_price_table_load*() read files.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/macros.h"

#define AJ_PRICE_MAX_ENTRIES 1024
#define AJ_PRICE_MAX_NAME 256
#define AJ_PRICE_MAX_USD_PER_MTOK 100000.0
#define AJ_PRICE_MAX_USD_PER_KSEARCH 10000.0
/* The largest "max_output_tokens" an entry may give (the largest model maximum published is
 * 128,000). */
#define AJ_PRICE_MAX_OUTPUT_TOKENS 10000000
#define AJ_PRICE_TABLE_MAX_SIZE (1u << 20)
#define AJ_PRICE_TABLE_NAME "prices.json"

/* The tools a provider runs besides web search whose use it bills on top of the tokens,
 * each priced per use (docs/gateway.md): Anthropic's web fetch
 * (usage.server_tool_use.web_fetch_requests), and the Responses API's file search (each
 * file_search_call item), code interpreter (each container its code_interpreter_call items
 * ran in) and image generation (each image_generation_call item), and Anthropic's code
 * execution (billed by container time, which its usage does not report: one use per
 * response that ran it, priced at what the profile says a use costs), and the pages of the
 * files OpenRouter may parse with a paid engine (its file-parser plugin's "mistral-ocr", the
 * default where the model reads no files itself), which no response reports. */
typedef enum {
        AJ_TOOL_FEE_WEB_FETCH,
        AJ_TOOL_FEE_FILE_SEARCH,
        AJ_TOOL_FEE_CODE_INTERPRETER,
        AJ_TOOL_FEE_IMAGE_GENERATION,
        AJ_TOOL_FEE_CODE_EXECUTION,
        AJ_TOOL_FEE_FILE_PARSER,
        AJ_TOOL_FEES,
} AjToolFee;

/* The fee's name in a price entry ("web_fetch", "file_search", "code_interpreter",
 * "image_generation", "code_execution", "file_parser"), and the llm.response field counting
 * its uses ("web_fetch_requests", "file_search_calls", "code_interpreter_containers",
 * "image_generation_calls", "code_execution_containers", "file_parser_pages"). */
const char *aj_tool_fee_name(AjToolFee f);
const char *aj_tool_fee_field(AjToolFee f);
/* The fee named `name`, or -1. */
int aj_tool_fee_from_name(const char *name);

typedef struct {
        char *model;
        uint64_t input, output, cache_read, cache_write; /* pico-USD per token */
        uint64_t cache_write_1h;                         /* an hour-long cache write (Anthropic) */
        /* A web search the provider runs for the model (Anthropic's web_search server tool,
         * OpenAI's web_search_call), billed per search on top of the tokens: pico-USD each;
         * web_search_priced false: no fee known. */
        uint64_t web_search;
        bool web_search_priced;
        /* The other tools' fees, pico-USD per use; tool_fee_priced false: no fee known. */
        uint64_t tool_fee[AJ_TOOL_FEES];
        bool tool_fee_priced[AJ_TOOL_FEES];
        /* The most output tokens the model writes in one answer, as its provider documents it
         * (a request asking for more is refused by the provider); 0: not known. */
        uint64_t max_output;
} AjPrice;

/* The tokens of a call. input counts ALL input, cache reads and writes included;
 * cache_write_1h is the part of cache_write kept for an hour, priced apart;
 * web_searches the searches the provider ran for it (priced per search). */
typedef struct {
        uint64_t input, output, cache_read, cache_write, cache_write_1h;
        uint64_t web_searches;
        uint64_t tool_uses[AJ_TOOL_FEES]; /* priced per use at tool_fee */
} AjTokens;

typedef struct {
        char *date;   /* "YYYY-MM-DD": when the prices were checked; NULL for the profile's */
        char *origin; /* the file it was read from, or "profile" */
        AjPrice *entries;
        size_t n;
} AjPriceTable;

int aj_price_table_new(const char *origin, AjPriceTable **ret);
void aj_price_table_free(AjPriceTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjPriceTable *, aj_price_table_free);

/* Adds or replaces the entry for p->model (copied). -E2BIG past AJ_PRICE_MAX_ENTRIES. */
int aj_price_table_set(AjPriceTable *t, const AjPrice *p);

/* {"date": "YYYY-MM-DD", "models": {"NAME": {"input": N, "output": N, "cache_read": N,
 * "cache_write": N, "cache_write_1h": N, "web_search": N, "web_fetch": N, ...,
 * "max_output_tokens": N}}} in USD per million tokens (cache prices default to the input
 * price, cache_write_1h to cache_write), web_search and the other tools' fees
 * (aj_tool_fee_name()) in USD per 1,000 uses (none: no fee known), max_output_tokens the
 * model's maximum output (a whole number, 1 to AJ_PRICE_MAX_OUTPUT_TOKENS; none: not known).
 * -EINVAL with a message naming the entry in ret_error. */
int aj_price_table_parse(const char *text, size_t len, const char *origin, AjPriceTable **ret, AjError *ret_error);
int aj_price_table_load(const char *path, AjPriceTable **ret, AjError *ret_error);
/* The first table found of /etc/agentjail/prices.json, the installed one and the
 * source tree's; -ENOENT when there is none (ret_error lists where it looked). */
int aj_price_table_load_default(AjPriceTable **ret, AjError *ret_error);

/* The base name of a dated snapshot into buf; false when `model` has no date suffix. */
bool aj_price_base_name(const char *model, char *buf, size_t size);

/* OpenRouter's model variants, a ":suffix" of the name (docs.openrouter.ai, "Model Variants"),
 * by what they do to the price: SAME, billed at the base model's price or less (:free, a
 * catalog entry priced 0; :floor, its endpoints sorted by price, as provider.sort "price";
 * :online, the base model with its web plugin, which the gateway reserves and charges apart);
 * DEARER, may be billed above it (:nitro and :exacto, endpoints sorted by throughput or by
 * tool-calling quality, passing over the cheapest; :extended and :thinking, catalog entries of
 * their own price); UNKNOWN, any other. Any letter case. */
typedef enum {
        AJ_MODEL_VARIANT_UNKNOWN,
        AJ_MODEL_VARIANT_SAME,
        AJ_MODEL_VARIANT_DEARER,
} AjModelVariant;
AjModelVariant aj_model_variant(const char *suffix, size_t len);
/* `model` without the trailing variant suffixes it knows (after the name's last '/') into buf;
 * false when it has none. */
bool aj_price_variant_base(const char *model, char *buf, size_t size);
/* The entry of `model`: exact name, else base name (a dated snapshot's), else the name
 * without its known variant suffixes (or its base name): "vendor/model:floor" is priced as
 * "vendor/model". NULL t or no entry: NULL. */
const AjPrice *aj_price_table_find(const AjPriceTable *t, const char *model);
/* The entry of exactly `model` (no base name), or NULL. */
const AjPrice *aj_price_table_get(const AjPriceTable *t, const char *model);

/* Pico-USD for the tokens; saturates at UINT64_MAX. */
uint64_t aj_price_cost(const AjPrice *p, const AjTokens *t);
