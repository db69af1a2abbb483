/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Meters and caps for a run: tokens, cost, tool calls, rate, repeats; tool
 * allow/deny rules; the price table. Pure: no syscalls, no logging, time comes
 * in as a parameter (CLOCK_MONOTONIC ns in the supervisor, a fake clock in tests).
 *
 * Reserve-then-settle: a request is checked against every cap together with
 * everything already reserved; only if it fits is it reserved, and it becomes
 * usage when settled (committed, or released when its event could not be
 * recorded). A request that would cross a cap is a breach and reserves NOTHING:
 * usage never exceeds a cap (but measured spend settled with
 * aj_meter_settle_usage() is counted whole); the attempted value is reported.
 * Money is counted in integer pico-dollars so "exactly at the cap" is exact.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prices.h"
#include "util/error.h"
#include "util/macros.h"
#include "util/json-fast.h"
#include "util/sha256.h"

struct AjProfile;

typedef enum {
        AJ_CAP_TOKENS, /* input + output */
        AJ_CAP_INPUT_TOKENS,
        AJ_CAP_OUTPUT_TOKENS,
        AJ_CAP_COST_USD,           /* limit and usage in pico-USD (1e-12) */
        AJ_CAP_TOOL_CALLS,         /* allowed tool calls, total */
        AJ_CAP_TOOL_CALLS_PER_MIN, /* allowed tool calls in the last 60 s (sliding) */
        AJ_CAP_REPEAT_LIMIT,       /* identical calls (name + arguments digest) in a row */
        _AJ_CAP_MAX,
} AjCap;

#define AJ_PUSD_PER_USD 1000000000000.0
#define AJ_RATE_WINDOW_NS (60ULL * 1000000000ULL)

/* Hard limits on what a profile or --cap may ask for. */
#define AJ_CAP_MAX_COUNT 1000000000000000ULL /* tokens, tool calls */
#define AJ_CAP_MAX_USD 1000000.0
#define AJ_CAP_MAX_PER_MIN 100000ULL /* tool_calls_per_min: a window entry per call */
#define AJ_CAP_MAX_REPEAT 1000000ULL
#define AJ_METER_MAX_PRICES 1024
#define AJ_METER_MAX_RULES 1024
#define AJ_METER_MAX_CALL_IDS 1024 /* ids of counted tool calls remembered per side (oldest forgotten) */

typedef struct {
        bool set[_AJ_CAP_MAX];
        uint64_t limit[_AJ_CAP_MAX]; /* AJ_CAP_COST_USD in pico-USD */
} AjMeterCaps;

const char *aj_cap_name(AjCap cap);     /* the profile / --cap key, e.g. "tool_calls_per_min" */
int aj_cap_from_name(const char *name); /* AjCap or -EINVAL */

/* Caps from the profile's "meters" (unset keys: no cap). */
void aj_meter_caps_from_profile(const struct AjProfile *p, AjMeterCaps *ret);
/* "--cap KEY=VALUE": KEY a cap name, VALUE a number ("unlimited" removes the cap).
 * On error returns -EINVAL and a message naming the argument in ret_error. */
int aj_meter_apply_cap_arg(AjMeterCaps *caps, const char *arg, AjError *ret_error);

typedef struct AjMeter AjMeter;

int aj_meter_new(const AjMeterCaps *caps, AjMeter **ret);
/* Caps plus the profile's prices and tool rules. */
int aj_meter_new_for_profile(const struct AjProfile *p, const AjMeterCaps *caps, AjMeter **ret);
void aj_meter_free(AjMeter *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjMeter *, aj_meter_free);

/* USD per token; cached_input < 0: cached input is priced as input. The model "*"
 * prices every model without an entry of its own (in the profile or the table). */
int aj_meter_set_price(AjMeter *m, const char *model, double input, double output, double cached_input);
/* The fee of a web search the provider runs for `model` (set by aj_meter_set_price()), USD
 * per search. -ENOENT: the model has no price. */
int aj_meter_set_price_web_search(AjMeter *m, const char *model, double usd_per_search);
/* The same for a use of another tool the provider runs (prices.h AjToolFee), USD per use. */
int aj_meter_set_price_tool_fee(AjMeter *m, const char *model, AjToolFee fee, double usd_per_use);
/* The model's maximum output tokens an answer (set by aj_meter_set_price()): 1 to
 * AJ_PRICE_MAX_OUTPUT_TOKENS, else -EINVAL. -ENOENT: the model has no price. */
int aj_meter_set_price_max_output(AjMeter *m, const char *model, uint64_t tokens);
/* The shipped price table (src/prices.h), under the prices set above: a model is
 * priced by the profile's entry for its name or base name, else the table's, else
 * the profile's "*". Takes ownership (NULL: no table). */
void aj_meter_set_price_table(AjMeter *m, AjPriceTable *table);
/* Or: the table is read by `load` when a model is first priced (at most once; a failure
 * leaves the table out). For runs where no price is needed at start. */
void aj_meter_set_price_loader(AjMeter *m, int (*load)(void *userdata, AjPriceTable **ret), void *userdata);

typedef enum { AJ_TOOL_RULE_ALLOW, AJ_TOOL_RULE_DENY } AjToolRuleKind;
/* Glob with '*' (any run of characters, dots included). Deny rules win; once an
 * allow rule exists (or aj_meter_restrict_tools() was called), unmatched names are denied. */
int aj_meter_add_tool_rule(AjMeter *m, AjToolRuleKind kind, const char *pattern);
void aj_meter_restrict_tools(AjMeter *m); /* "allow": [] : an allow list that matches nothing */
bool aj_glob_match(const char *pattern, const char *name);

typedef enum {
        AJ_VERDICT_ALLOW, /* tool: allowed; tokens: ok */
        AJ_VERDICT_DENY,  /* tool rules said no: not a breach, nothing counted */
        AJ_VERDICT_BREACH,
} AjVerdict;

typedef struct {
        AjVerdict verdict;
        AjCap cap;        /* BREACH: the first cap crossed */
        uint64_t limit;   /* BREACH: the cap (pico-USD for cost) */
        uint64_t value;   /* BREACH: what usage would have become */
        char reason[384]; /* DENY, BREACH: for humans */
        /* tools: "gateway" or "broker" when the other side already counted this call
         * (its call id): judged by the rules, not counted again; NULL otherwise */
        const char *counted_by;
        /* tokens */
        uint64_t cost_pusd;   /* charged: the larger of priced_pusd and the provider's figure */
        uint64_t priced_pusd; /* the prices' own figure */
        bool price_known;
        /* BREACH of cost_usd because the model has no price while a cost cap is set:
         * the cost cannot be checked, so the report or request is refused (fail closed). */
        bool price_missing;
        char price_entry[AJ_PRICE_MAX_NAME + 1]; /* the entry used: the model, its base name, or "*" */
        const char *price_source;                /* "profile" or "table"; NULL without a price */
        char price_date[16];                     /* the table's date; "" for the profile's prices */
} AjMeterDecision;

/* The verdict the tools rules alone give `name` (ALLOW or DENY with the reason): no cap is
 * looked at, nothing is reserved or counted. The broker's `check`. */
void aj_meter_check_tool(const AjMeter *m, const char *name, AjMeterDecision *ret_decision);

/* What one request holds between reserve and settle. Caller-owned. */
typedef struct {
        bool active;
        bool is_tool;
        bool repeat_counted;
        uint64_t amount[_AJ_CAP_MAX]; /* only additive caps */
        uint64_t now_ns;
        uint8_t repeat_key[AJ_SHA256_SIZE];
        bool has_id; /* id_key names the call (aj_meter_reserve_tool_call()) */
        bool exempt; /* counted already by the other side: commits nothing */
        uint8_t by;  /* AjMeterCounter of the side reserving */
        uint8_t id_key[AJ_SHA256_SIZE];
        int16_t claimed_slot; /* exempt: the other side's slot it claimed, and that slot's put */
        uint32_t claimed_gen;
} AjMeterReservation;

/* sha256 hex of the canonical JSON (sorted keys, compact) of `args` (NULL = null). */
int aj_meter_args_digest(const json_t *args, char ret_hex[AJ_SHA256_HEX_SIZE]);
/* The same, also handing over the canonical text (free() it). */
int aj_meter_args_canon(const json_t *args, char **ret_canon, char ret_hex[AJ_SHA256_HEX_SIZE]);

/* Checks a tool call. ALLOW: *ret_res is active and must be settled. DENY or BREACH:
 * nothing reserved (ret_res inactive). */
int aj_meter_reserve_tool(AjMeter *m, const char *name, const char *args_digest, uint64_t now_ns,
                          AjMeterReservation *ret_res, AjMeterDecision *ret_decision);
/* Who counts a tool call: the gateway (the model asked for it in a response) or the broker
 * (a `tool` request: a hook, the MCP relay, `agentjail meter tool`). */
typedef enum { AJ_METER_BY_GATEWAY = 0, AJ_METER_BY_BROKER = 1 } AjMeterCounter;

/* The broker judged a tool call by this id (whatever its verdict): remembered (the last
 * AJ_METER_MAX_CALL_IDS) so that the gateway can tell a tool result the gate saw from one
 * it never did. */
void aj_meter_note_judged(AjMeter *m, const char *call_id);
/* True when the gateway counted a model's tool call `call_id` (it is among the last
 * AJ_METER_MAX_CALL_IDS it counted) and the broker never judged it: with an agent's hooks
 * installed, the call ran without asking. */
bool aj_meter_gate_missed(const AjMeter *m, const char *call_id);
/* aj_meter_reserve_tool() for a call with an id (NULL or "": none). The gateway's calls are
 * not judged by the tools rules (those name the broker's calls; the gateway refuses nothing
 * the model asked for): only the caps. One call seen from both sides (the model's tool call
 * id, which the agents' hooks pass on) is counted once:
 *   - an id the OTHER side counted, not yet claimed: the call is judged by the tools rules
 *     only (it is in the caps already), counts nothing and leaves the repeat streak alone
 *     (ret_decision->counted_by names that side); the id is claimed by this reservation
 *     (a commit consumes it, a release gives it back): one id exempts one call, once;
 *   - otherwise as aj_meter_reserve_tool(), and a commit remembers the id as this side's
 *     (the last AJ_METER_MAX_CALL_IDS ids of each side, oldest forgotten: forgetting only
 *     ever counts a call twice, never not at all; the broker's ids, which an agent
 *     names, are kept apart and cannot push out the gateway's). */
int aj_meter_reserve_tool_call(AjMeter *m, const char *name, const char *args_digest, const char *call_id,
                               AjMeterCounter by, uint64_t now_ns, AjMeterReservation *ret_res,
                               AjMeterDecision *ret_decision);
/* The broker's `tool` request: aj_meter_note_judged(call_id) (when given) and
 * aj_meter_reserve_tool_call(..., AJ_METER_BY_BROKER, ...), the id hashed once. */
int aj_meter_judge_tool_call(AjMeter *m, const char *name, const char *args_digest, const char *call_id,
                             uint64_t now_ns, AjMeterReservation *ret_res, AjMeterDecision *ret_decision);
/* The key call ids are remembered by (sha256 of the id); aj_meter_gate_missed() for a key. */
void aj_meter_call_id_key(const char *call_id, uint8_t ret_key[AJ_SHA256_SIZE]);
bool aj_meter_gate_missed_key(const AjMeter *m, const uint8_t key[AJ_SHA256_SIZE]);
/* Ids remembered and not yet claimed, by the side that counted them (tests, inspection). */
size_t aj_meter_call_ids(const AjMeter *m, AjMeterCounter by);
/* Model usage to check: input includes the cache reads and writes. */
typedef struct {
        const char *model;
        uint64_t input, output, cache_read, cache_write;
        uint64_t cache_write_1h;          /* the part of cache_write kept an hour */
        uint64_t web_searches;            /* searches the provider ran, billed per search */
        uint64_t tool_uses[AJ_TOOL_FEES]; /* uses of its other tools, billed per use (prices.h) */
        /* What the provider says the call cost (pico-USD; 0: nothing said): the cost is the
         * larger of it and the prices' own figure, never less than either. */
        uint64_t provider_cost;
        /* The least an input or output token is priced at (pico-USD per token; 0: the price's):
         * the dearest endpoint a provider's routing may pick (OpenRouter's provider.max_price). */
        uint64_t input_price_floor, output_price_floor;
        /* A fee billed for the call besides its tokens and tools (pico-USD): the per-request
         * and per-image fees of the dearest endpoint a provider's routing may pick (OpenRouter's
         * provider.max_price.request and .image). */
        uint64_t call_fee;
} AjMeterUsage;
/* The most output tokens `model` writes in one answer: the profile's entry for its name or
 * base name, else the table's, else the profile's "*" (the first of them that gives one);
 * 0 when none does. *ret_from_profile (NULL: not wanted) says whether the profile gave it
 * (its entry or "*"), a claim of the operator's, rather than the shipped table. */
uint64_t aj_meter_max_output(const AjMeter *m, const char *model, bool *ret_from_profile);
/* Whether the profile's prices or the shipped table has an entry of exactly `model`'s name
 * (not its base name, nor "*"). */
bool aj_meter_price_named(const AjMeter *m, const char *model);
/* Checks model usage against the token and cost caps. A model without a price
 * while cost_usd is capped is a BREACH that reserves nothing (price_missing).
 * -EINVAL when the cache reads and writes exceed the input. */
int aj_meter_reserve_usage(AjMeter *m, const AjMeterUsage *u, AjMeterReservation *ret_res,
                           AjMeterDecision *ret_decision);
/* A gateway call, reserved at its worst case, settled to what the provider
 * measured: the reservation is released and `measured` committed whatever the
 * caps say (it was spent; usage may then pass a cap), a cap it crosses (or an
 * unpriced model under a cost cap: its tokens count, its cost cannot) returned as
 * a BREACH. -EINVAL as aj_meter_reserve_usage(), the reservation kept. */
int aj_meter_settle_usage(AjMeter *m, AjMeterReservation *res, const AjMeterUsage *measured,
                          AjMeterDecision *ret_decision);
/* The same for a report of model usage (input includes cached = cache reads). */
int aj_meter_reserve_tokens(AjMeter *m, const char *model, uint64_t input, uint64_t output, uint64_t cached,
                            AjMeterReservation *ret_res, AjMeterDecision *ret_decision);
/* commit: the reservation becomes usage; otherwise it is released. Idempotent. */
void aj_meter_settle(AjMeter *m, AjMeterReservation *res, bool commit);

/* Current usage of one cap (tool_calls_per_min: calls in the window ending at now_ns). */
uint64_t aj_meter_used(const AjMeter *m, AjCap cap, uint64_t now_ns);
const AjMeterCaps *aj_meter_caps(const AjMeter *m);
/* Put back caps saved from aj_meter_caps() (a raise undone: its thaw failed). */
void aj_meter_caps_restore(AjMeter *m, const AjMeterCaps *caps);

/* {"tokens": {"limit": N|null, "used": N, "remaining": N|null}, ..., "cost_usd": {... in USD}}.
 * only_set: leave out caps without a limit. New reference or NULL. */
json_t *aj_meter_to_json(const AjMeter *m, uint64_t now_ns, bool only_set);
/* The same object printed into o as json_dumpb() would (compact, o's precision), without
 * building it: the broker's reply to every tokens report. -1: leave it to jansson. */
int aj_meter_out_json(const AjMeter *m, uint64_t now_ns, bool only_set, AjJsonOut *o);

/* Raise (or set) a cap at run time: value "+N" adds, "N" sets, "unlimited" removes.
 * -EINVAL with a message naming key and value. */
int aj_meter_raise(AjMeter *m, const char *key, const char *value, AjError *ret_error);
/* {"tokens": "+20000", "cost_usd": "5"} (strings or numbers): all applied or none. */
int aj_meter_raise_json(AjMeter *m, const json_t *raise, AjError *ret_error);
