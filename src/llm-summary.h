/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A run's model usage, from its event chain: what the LLM gateway measured (its
 * llm.response events: per provider and model, requests, tokens, cost) beside what
 * the agent reported itself (the broker's `tokens` events), and whether those
 * reports under-state the measured usage. Read from events.jsonl, so it works the
 * same for a live run and an ended one. Pure apart from aj_llm_summary_read().
 *
 * Event fields read (docs/gateway.md): llm.response has "provider", the model
 * (gen_ai.request.model, else gen_ai.response.model), gen_ai.usage.input_tokens
 * (all input, cached included), gen_ai.usage.output_tokens (reasoning included),
 * gen_ai.usage.cache_read.input_tokens, gen_ai.usage.cache_creation.input_tokens,
 * reasoning_tokens, outcome, estimated, cost_usd; `tokens` has the model, the
 * input, output and cache-read counts and cost_usd.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "prices.h"
#include "util/macros.h"

#define AJ_LLM_SUMMARY_MAX_ROWS 64  /* provider/model rows kept a side; more add to the last, "(other)" */
#define AJ_LLM_SUMMARY_MAX_NAME 128 /* bytes of a provider or model name kept */

typedef struct {
        char provider[AJ_LLM_SUMMARY_MAX_NAME]; /* "" on the self-reported side */
        char model[AJ_LLM_SUMMARY_MAX_NAME];
        uint64_t requests;  /* measured: calls; self-reported: reports */
        uint64_t failed;    /* measured calls that did not complete (failed, cut, refused...) */
        uint64_t estimated; /* measured calls charged on an estimate (no final count) */
        uint64_t unpriced;  /* calls or reports without a cost */
        uint64_t input, output, cache_read, cache_write, reasoning;
        uint64_t web_searches;            /* searches the provider ran (measured; billed per search) */
        uint64_t tool_uses[AJ_TOOL_FEES]; /* uses of its other tools billed per use (prices.h) */
        double cost_usd;
} AjLlmTally;

typedef struct {
        AjLlmTally rows[AJ_LLM_SUMMARY_MAX_ROWS];
        size_t n_rows;
        AjLlmTally total;
} AjLlmSide;

typedef struct {
        AjLlmSide measured; /* llm.response of model calls */
        AjLlmSide reported; /* tokens */
        uint64_t other;     /* llm.response "metered": false: relayed, not model calls */
} AjLlmSummary;

typedef enum {
        AJ_LLM_CHECK_NONE,           /* no model calls either way */
        AJ_LLM_CHECK_MEASURED_ONLY,  /* the agent reported nothing (normal for an agent that does not) */
        AJ_LLM_CHECK_REPORTED_ONLY,  /* nothing went through the gateway */
        AJ_LLM_CHECK_MATCHES,        /* the reports are at least the measured usage, and not more */
        AJ_LLM_CHECK_OVER_REPORTED,  /* the reports exceed it (harmless for the caps) */
        AJ_LLM_CHECK_UNDER_REPORTED, /* fewer tokens or less cost reported than measured */
} AjLlmCheck;

/* Add one event (anything but llm.response and tokens is ignored). */
void aj_llm_summary_add(AjLlmSummary *s, json_t *ev);
/* The summary of an event file. New, free() it; -errno when unreadable (-ENOENT: no file). */
int aj_llm_summary_read(const char *events_path, AjLlmSummary **ret);

AjLlmCheck aj_llm_summary_check(const AjLlmSummary *s);
const char *aj_llm_check_name(AjLlmCheck c);
/* "self-reported 1200 tokens, measured 5400: under-reported" and the like. New string. */
char *aj_llm_summary_verdict(const AjLlmSummary *s);
/* {"measured": {totals..., "models": [...]}, "self_reported": {...}, "check", "verdict"}. */
json_t *aj_llm_summary_json(const AjLlmSummary *s);

/* An llm.response event's fields as one readable line (no time, seq or type):
 * "anthropic claude-sonnet-4-5 in=1200 out=300 cached=200 $0.005750 812ms ttfb=95ms
 * stop=end_turn tools=Read,Bash call=...". -EINVAL when it is not an object. */
int aj_llm_response_format(json_t *ev, char **ret);
