/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's metering observer (llm.h): reserve the worst case before a call is
 * forwarded, read its response as it streams, cut it when it crosses a cap, settle
 * to the provider's measured usage, count its tool calls, write the events.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "gateway/key-paths.h"
#include "gateway/usage.h"
#include "log.h"
#include "supervisor/llm.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/sha256.h"

/* A response kept (llm.record "digest" or "full") beyond this is cut (and says so). */
#define MAX_RECORDED_RESPONSE (8u << 20)

struct AjSupLlmCall {
        AjSupLlm *l;
        AjLlmCall *usage;
        AjLlmApi api;
        bool metered;  /* a model call (not count_tokens, not another path) */
        bool reserved; /* res holds the worst case (or the measured use past it) */
        bool refused;
        bool forwarded; /* its llm.request is in the chain and it went to the provider */
        bool breached;  /* a breach was reported for this call */
        bool strip;     /* an OpenAI chat stream whose usage chunk the client did not ask for */
        bool tool_counted[AJ_LLM_MAX_TOOL_CALLS]; /* the response's tool calls counted so far */
        bool unkept_counted;                      /* the calls past AJ_LLM_MAX_TOOL_CALLS, counted at the end */
        bool unread_counted;                      /* the call a response not read whole may hold */
        const char *limit_set;                    /* the output limit the gateway set in the request (bound_output()) */
        uint64_t limit_set_tokens;                /* and its tokens */
        char *model;
        AjMeterUsage worst;
        AjMeterReservation res;
        uint64_t checked_in, checked_out, checked_searches, checked_tools, checked_cost; /* the charge last checked */
        AjSse *sse; /* strip: the stream, re-written without that chunk */
        char *pending;
        size_t pending_len, pending_size;
        AjSha256 out_sha;
        char request_sha[AJ_SHA256_HEX_SIZE];
        char *request_body; /* record "full": kept until on_done, within aj_sup_llm_record_room() */
        size_t request_len;
        bool request_truncated;
        char *response;
        size_t response_len, response_size;
        uint64_t response_bytes; /* all the response's bytes, kept or not */
        bool response_truncated;
        unsigned status;        /* the response's, 0 before its head */
        char *content_type;     /* the response's, recorded for a replay */
        json_t *provider_fetch; /* llm.provider_fetch let these through: llm.request's "provider_fetch" */
};

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static double cap_value(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? (double)v / AJ_PUSD_PER_USD : (double)v;
}

static void report_breach(AjSupLlmCall *cs, const AjMeterDecision *d, const char *provider)
{
        AjSupLlm *l = cs->l;
        if (d->verdict != AJ_VERDICT_BREACH || cs->breached || !l->hooks->breach)
                return;
        cs->breached = true;
        json_t *req = json_pack("{s:s, s:s?}", "provider", provider, "model", cs->model);
        AjBreach br = { .cap = aj_cap_name(d->cap),
                        .limit = cap_value(d->cap, d->limit),
                        .value = cap_value(d->cap, d->value),
                        .request = req,
                        .reason = d->price_missing ? d->reason : NULL };
        l->hooks->breach(l->hooks->userdata, &br);
        json_decref(req);
}

static int emit(AjSupLlm *l, const char *type, json_t *fields)
{
        return l->hooks->emit(l->hooks->userdata, type, fields);
}

/* A forwarded call's end: its llm.request was recorded (else it was not forwarded), so its
 * response (tokens, cost) is too, whatever the agent's share of the log has left. */
static int record(AjSupLlm *l, const char *type, json_t *fields)
{
        if (!l->hooks->record)
                return emit(l, type, fields);
        return l->hooks->record(l->hooks->userdata, type, fields);
}

static void call_free(AjSupLlmCall *cs)
{
        if (!cs)
                return;
        if (cs->reserved)
                aj_meter_settle(cs->l->meter, &cs->res, false);
        aj_llm_call_free(cs->usage);
        aj_sse_free(cs->sse);
        free(cs->model);
        free(cs->content_type);
        json_decref(cs->provider_fetch);
        free(cs->pending);
        cs->l->held -= cs->request_len + cs->response_len;
        free(cs->request_body);
        free(cs->response);
        free(cs);
}

/* The call is not forwarded: the agent gets `status` and "PREFIX: WHAT" in the provider's shape. */
static void refuse(AjGatewayVerdict *v, const AjGatewayProvider *pr, unsigned status, const char *prefix,
                   const char *what)
{
        v->status = status;
        bool openai = pr->api == AJ_GATEWAY_API_OPENAI;
        if (status == 413) {
                v->error_type = openai ? "invalid_request_error" : "request_too_large";
                v->error_code = NULL;
        } else if (status == 429) {
                v->error_type = openai ? "insufficient_quota" : "rate_limit_error";
                v->error_code = openai ? "insufficient_quota" : NULL;
        } else {
                v->error_type = openai ? "invalid_request_error"
                                       : (status == 403 ? "permission_error" : "invalid_request_error");
                v->error_code = NULL;
        }
        snprintf(v->message, sizeof(v->message), "%s: %s", prefix, what);
}

/* OpenAI chat streams: ask for the usage chunk, and hide it when the client did not. */
static int add_usage(AjSupLlmCall *cs, const AjGatewayRequest *req, AjGatewayVerdict *v)
{
        char *body = NULL;
        size_t len = 0;
        int r = aj_llm_openai_chat_add_usage(req->body, req->body_len, &body, &len);
        if (r <= 0)
                return r;
        r = aj_sse_new(AJ_LLM_MAX_EVENT, &cs->sse);
        if (r < 0) {
                free(body);
                return r;
        }
        v->body = body;
        v->body_len = len;
        cs->strip = true;
        aj_llm_call_strip_usage_chunk(cs->usage, true);
        return 0;
}

/* Whether the run caps what model calls may do: tokens, cost, or the tool calls the model
 * asks for (every cap of the meter is one of those). Under such a cap, model work the
 * gateway cannot read is refused: an API it does not meter (a batch, whose tool calls come
 * back in a file), a background response (its output fetched later by GET). */
static bool model_capped(const AjMeter *m)
{
        const AjMeterCaps *c = aj_meter_caps(m);
        for (int cap = 0; cap < _AJ_CAP_MAX; cap++)
                if (c->set[cap])
                        return true;
        return false;
}

/* Whether the run caps what model calls spend (tokens, cost). */
static bool spend_capped(const AjMeter *m)
{
        const AjMeterCaps *c = aj_meter_caps(m);
        return c->set[AJ_CAP_TOKENS] || c->set[AJ_CAP_COST_USD];
}

/* The output tokens an answer of a request that sets no limit is reserved. Unbounded, the
 * model may write up to its own maximum (128,000 for OpenAI's reasoning models, whose hidden
 * tokens no stream shows before its usage), in every call in flight: under a tokens or cost
 * cap, a model whose maximum is known (aj_meter_max_output()) is reserved the smaller of that
 * maximum and AJ_SUP_LLM_DEFAULT_MAX_OUTPUT, and what is reserved is what the request allows.
 * The shipped table's maximum is the provider's own: the provider stops there, and the
 * request goes as it is. Any other limit is set in the request, so that the provider stops
 * at what was reserved: AJ_SUP_LLM_DEFAULT_MAX_OUTPUT for a model whose maximum is more, and
 * a maximum the profile claims (its entry or "*"), which may be wrong (a claim of 8,000 for a
 * model writing 64,000 would otherwise overshoot a cap by the difference, in every call in
 * flight; one above the model's maximum has the request refused by OpenAI, which fails
 * closed). An unknown model's maximum is not known: setting one would have the request
 * refused (OpenAI refuses a max_completion_tokens above the model's maximum), so it is
 * forwarded as it is. Messages requires max_tokens of the client: nothing changes there. */
static int bound_output(AjSupLlmCall *cs, const AjGatewayRequest *req, AjGatewayVerdict *v, uint64_t *ret)
{
        const char *field = aj_llm_output_limit_field(cs->api);
        bool claimed = false;
        uint64_t most = field && spend_capped(cs->l->meter) ? aj_meter_max_output(cs->l->meter, cs->model, &claimed)
                                                            : 0;
        uint64_t limit = most < AJ_SUP_LLM_DEFAULT_MAX_OUTPUT ? most : AJ_SUP_LLM_DEFAULT_MAX_OUTPUT;
        *ret = AJ_SUP_LLM_DEFAULT_MAX_OUTPUT;
        if (!most)
                return 0;
        if (most <= AJ_SUP_LLM_DEFAULT_MAX_OUTPUT && !claimed) {
                *ret = most;
                return 0;
        }
        char *body = NULL;
        size_t len = 0;
        int r = aj_llm_set_output_limit(cs->api, v->body ? v->body : req->body, v->body ? v->body_len : req->body_len,
                                        limit, &body, &len);
        if (r <= 0)
                return r == -ENOMEM ? r : 0; /* the body was read: nothing else can fail */
        free(v->body);
        v->body = body;
        v->body_len = len;
        cs->limit_set = field;
        cs->limit_set_tokens = limit;
        *ret = limit;
        return 0;
}

static uint64_t mul_sat(uint64_t a, uint64_t b) { return b && a > UINT64_MAX / b ? UINT64_MAX : a * b; }
static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* The gate's backstop (run --hooks): a request that hands back the result of a tool call
 * the model asked for (the gateway counted it) but the broker never judged means the
 * agent ran the call without its hooks asking: whatever made the hook not run (a planted
 * setting, a hook that could not start, an agent built without hooks), it is caught
 * here, where the agent cannot reach. A successful result is a breach (the request is
 * refused and the run stopped for the operator); a failed one is recorded. */
static void check_gate(AjSupLlmCall *cs, const AjGatewayProvider *pr, AjGatewayVerdict *v)
{
        AjSupLlm *l = cs->l;
        const AjLlmUsage *u = aj_llm_call_usage(cs->usage);
        for (size_t i = 0; l->gate_tools && u && i < u->n_tool_results && !v->status; i++) {
                const char *id = u->tool_result_ids[i];
                uint8_t key[AJ_SHA256_SIZE];
                if (!id || !*id)
                        continue;
                aj_meter_call_id_key(id, key); /* once: the meter's lookup and the reported ring */
                if (!aj_meter_gate_missed_key(l->meter, key))
                        continue;
                bool seen = false;
                for (size_t k = 0; k < ARRAY_SIZE(l->gate_reported) && !seen; k++)
                        seen = memcmp(l->gate_reported[k], key, AJ_SHA256_SIZE) == 0;
                if (seen)
                        continue;
                memcpy(l->gate_reported[l->gate_reported_next], key, AJ_SHA256_SIZE);
                l->gate_reported_next = (l->gate_reported_next + 1) % ARRAY_SIZE(l->gate_reported);
                bool failed = u->tool_result_error[i];
                (void)emit(l, "tool.ungated",
                           json_pack("{s:s, s:s, s:b}", AJ_BROKER_F_TOOL_CALL_ID, id, "provider", pr->name, "failed",
                                     failed));
                if (failed)
                        continue;
                refuse(v, pr, 403, "agentjail: a tool call ran without asking the broker (its hooks did not run)", id);
                if (l->hooks->breach) {
                        json_t *req = json_pack("{s:s, s:s}", "provider", pr->name, AJ_BROKER_F_TOOL_CALL_ID, id);
                        AjBreach br = { .cap = "tool_gate", .limit = 0, .value = 1, .request = req };
                        l->hooks->breach(l->hooks->userdata, &br);
                        json_decref(req);
                }
        }
}

/* The tokens the provider holds for a response this run saw (its input and output, which a
 * request continuing it is billed as input): false when it is not one of the last
 * AJ_SUP_LLM_HELD_RESPONSES. */
static bool held_tokens(const AjSupLlm *l, const char *id, uint64_t *ret)
{
        uint8_t key[AJ_SHA256_SIZE];
        aj_sha256(id, strlen(id), key);
        for (size_t i = 0; i < ARRAY_SIZE(l->responses); i++)
                if (memcmp(l->responses[i].id, key, sizeof(key)) == 0 && l->responses[i].tokens) {
                        *ret = l->responses[i].tokens;
                        return true;
                }
        return false;
}

static void hold_response(AjSupLlm *l, const char *id, uint64_t tokens)
{
        size_t i = l->responses_next;
        aj_sha256(id, strlen(id), l->responses[i].id);
        l->responses[i].tokens = tokens ? tokens : 1;
        l->responses_next = (i + 1) % ARRAY_SIZE(l->responses);
}

/* Where the request lets the provider connect for the agent (usage.h AjLlmReachList), judged
 * against the run's network policy: data the agent puts in a URL, or hands an MCP server, would
 * otherwise leave through the provider to hosts the jail cannot reach itself. A place the
 * policy does not allow is refused, unless llm.provider_fetch lets the provider fetch anywhere
 * (then it is named in the event). docs/gateway.md "Provider-side fetching". */
static int judge_reach(AjSupLlmCall *cs, const AjGatewayProvider *pr, const AjLlmReachList *l, AjGatewayVerdict *v)
{
        for (size_t i = 0; i < l->n + (l->more ? 1 : 0); i++) {
                const AjLlmReach *e = i < l->n ? &l->items[i] : NULL;
                AjNetVerdict nv = {};
                if (e && e->host) {
                        int r = e->domain ? aj_net_check_domain(cs->l->net_policy, e->host, e->port, &nv)
                                          : aj_net_check_host(cs->l->net_policy, e->host, e->port, &nv);
                        if (r < 0)
                                return r;
                        if (nv.allowed)
                                continue;
                }
                _cleanup_free_ char *where = NULL, *what = NULL;
                if (e && e->host ? asprintf(&where, "%.160s, host %.100s port %u%s (%s)", e->what, e->host, e->port,
                                            e->domain ? " and its subdomains" : "", nv.reason) < 0
                                 : asprintf(&where, "%.200s, any host",
                                            e ? e->what : "more places than the gateway reads of one request") < 0) {
                        where = NULL;
                        return -ENOMEM;
                }
                if (cs->l->provider_fetch) {
                        if (!cs->provider_fetch && !(cs->provider_fetch = json_array()))
                                return -ENOMEM;
                        if (json_array_append_new(cs->provider_fetch, json_string(where)) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (asprintf(&what,
                             "the request lets the provider connect for the agent where the run's network policy "
                             "does not allow (llm.provider_fetch: true in the profile allows it): %s",
                             where) < 0) {
                        what = NULL;
                        return -ENOMEM;
                }
                refuse(v, pr, 403, "agentjail gateway", what);
                return 0;
        }
        return 0;
}

/* Anthropic's 1M-token context window, asked for by a beta ("anthropic-beta:
 * context-1m-2025-08-07", among others, in any of the agent's headers of that name, which the
 * gateway relays): a call whose input passes 200K tokens is then billed at the long-context
 * rate, every token of it (twice the input price, 1.5 times the output), which no price holds. */
static bool long_context_beta(const AjGatewayRequest *req)
{
        static const char beta[] = "context-1m";
        for (size_t i = 0; i < req->n_headers; i++) {
                const AjGwHeader *h = &req->headers[i];
                if (!aj_gw_header_is(h, "anthropic-beta"))
                        continue;
                for (size_t k = 0; k < h->value_len; k++) {
                        bool start = k == 0 || h->value[k - 1] == ',' || h->value[k - 1] == ' ' ||
                                     h->value[k - 1] == '\t';
                        if (start && h->value_len - k >= sizeof(beta) - 1 &&
                            strncasecmp(h->value + k, beta, sizeof(beta) - 1) == 0)
                                return true;
                }
        }
        return false;
}

/* Whether the body is sent with a Content-Encoding other than identity: the provider reads
 * what it decodes (a gzip of other JSON; bytes that are JSON as sent and something else once
 * decoded), the gateway the bytes as sent. */
static bool body_encoded(const AjGatewayRequest *req)
{
        for (size_t i = 0; i < req->n_headers; i++) {
                const AjGwHeader *h = &req->headers[i];
                if (aj_gw_header_is(h, "content-encoding") &&
                    !(h->value_len == 8 && strncasecmp(h->value, "identity", 8) == 0))
                        return true;
        }
        return false;
}

/* Whether a body that is not JSON is a form upload (a file), which the gateway does not read:
 * every Content-Type multipart/form-data (the body not encoded: refused before). Anything else
 * it cannot read (JSON behind a byte order mark, in UTF-16) a provider might still read as JSON. */
static bool form_upload(const AjGatewayRequest *req)
{
        bool multipart = false;
        for (size_t i = 0; i < req->n_headers; i++) {
                const AjGwHeader *h = &req->headers[i];
                bool type = aj_gw_header_is(h, "content-type");
                if (type && (h->value_len < 19 || strncasecmp(h->value, "multipart/form-data", 19) != 0))
                        return false;
                multipart |= type;
        }
        return multipart;
}

/* A body of a path the gateway does not meter (a batch of requests), read for the places it
 * lets the provider connect to: a form upload is not read; JSON repeating a key, and a body
 * that is neither JSON nor a form upload, are refused (the provider might read it otherwise). */
static int judge_body_reach(AjSupLlmCall *cs, const AjGatewayProvider *pr, const AjGatewayRequest *req,
                            AjGatewayVerdict *v)
{
        AjLlmReachList l = {};
        int r = req->body_len ? aj_llm_body_reach(req->body, req->body_len, &l) : 0;
        if (r == -E2BIG || r == -ELOOP || r == -EBADMSG)
                refuse(v, pr, r == -E2BIG ? 413 : 400, "agentjail gateway: the request body cannot be read",
                       r == -EBADMSG ? "it repeats a key" : "past the gateway's JSON bounds");
        else if (r == -EINVAL && !form_upload(req))
                refuse(v, pr, 400, "agentjail gateway: the request body cannot be read",
                       "neither JSON nor a multipart/form-data upload");
        else if (r >= 0)
                r = judge_reach(cs, pr, &l, v);
        aj_llm_reach_done(&l);
        return r == -ENOMEM ? r : 0;
}

/* The request read: 0, or the verdict set (refused). */
static int read_request(AjSupLlmCall *cs, const AjGatewayProvider *pr, const char *method, const char *path,
                        const AjGatewayRequest *req, AjGatewayVerdict *v)
{
        const char *api_name = pr->api == AJ_GATEWAY_API_OPENAI ? "openai" : "anthropic";
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256(req->body ? req->body : "", req->body_len, d);
        aj_sha256_hex(d, cs->request_sha);
        /* What the gateway meters and judges must be what the provider reads. */
        if (req->body_len && body_encoded(req)) {
                refuse(v, pr, 415, "agentjail gateway: the request body cannot be read",
                       "it has a Content-Encoding: the provider would read what it decodes, the gateway reads the "
                       "bytes as sent (send it unencoded)");
                return 0;
        }
        if (aj_llm_api_from_path(api_name, path, &cs->api) < 0) {
                /* Not a model call: relayed, not metered; but under a cap only reads are, since
                 * an API the gateway cannot meter might spend or ask for tool calls (fail closed). */
                bool read_only = streq(method, "GET") || streq(method, "HEAD");
                if (!read_only && model_capped(cs->l->meter))
                        refuse(v, pr, 403, "agentjail gateway: not a metered API, refused under the run's caps", path);
                return read_only || v->status ? 0 : judge_body_reach(cs, pr, req, v);
        }
        int r = aj_llm_call_new(cs->api, &cs->usage);
        if (r < 0)
                return r;
        aj_llm_call_set_upstream(cs->usage, aj_llm_upstream_from_url(pr->url));
        r = aj_llm_call_request(cs->usage, req->body, req->body_len);
        if (r < 0) {
                const char *why = aj_llm_call_usage(cs->usage)->parse_error;
                refuse(v, pr, r == -E2BIG ? 413 : 400, "agentjail gateway: the request body cannot be metered",
                       why ? why : "not a JSON object");
                return 0;
        }
        check_gate(cs, pr, v);
        const AjLlmUsage *u = aj_llm_call_usage(cs->usage);
        if (!v->status && (r = judge_reach(cs, pr, &u->reach, v)) < 0)
                return r;
        if (v->status)
                return 0;
        if (u->model && !(cs->model = strdup(u->model)))
                return -ENOMEM;
        if (cs->api == AJ_LLM_API_ANTHROPIC_COUNT_TOKENS)
                return 0; /* free */
        cs->metered = true;
        if (!cs->model) {
                refuse(v, pr, 400, "agentjail gateway", "the request names no model");
                return 0;
        }
        if (u->background && model_capped(cs->l->meter)) {
                refuse(v, pr, 403, "agentjail gateway",
                       "a background response is refused under the run's caps, as is a deferred or async "
                       "completion: its output is fetched later, where the gateway cannot meter it");
                return 0;
        }
        if (u->model_routed && model_capped(cs->l->meter)) {
                refuse(v, pr, 403, "agentjail gateway",
                       "a request letting the provider choose its model (OpenRouter's models, a preset, a router "
                       "model such as openrouter/auto) is refused under the run's caps: the gateway prices the model "
                       "it names");
                return 0;
        }
        /* OpenRouter bills the endpoint that answers, at its own price: a routing that may pass over
         * the cheapest one (an order, a filter, a sort other than by price) can cost more than the
         * model's price. Under a cost cap only with a max_price bounding it (reserved at it). */
        if (u->provider_routed && !u->max_price_set && aj_meter_caps(cs->l->meter)->set[AJ_CAP_COST_USD]) {
                refuse(v, pr, 403, "agentjail gateway",
                       "OpenRouter's provider routing (a \"provider\" object, a model variant that may cost more: "
                       ":nitro, :exacto, :extended, :thinking) is refused under the run's cost cap without "
                       "provider.max_price.prompt and .completion (and .request and .image, if given, as prices): "
                       "it may pick an endpoint priced above the model's price");
                return 0;
        }
        /* A variant the gateway does not know may bill anything (a catalog entry of its own price,
         * a routing): under a cost cap only when the profile or the table prices the whole name. */
        if (u->unknown_variant && aj_meter_caps(cs->l->meter)->set[AJ_CAP_COST_USD] &&
            !aj_meter_price_named(cs->l->meter, cs->model)) {
                char what[384];
                snprintf(what, sizeof(what),
                         "the model's variant \"%.32s\" is one the gateway does not know: what the provider bills "
                         "for it cannot be checked, refused under the run's cost cap; price \"%.96s\" by its whole "
                         "name in the profile's \"prices\" to allow it",
                         u->unknown_variant, cs->model);
                refuse(v, pr, 403, "agentjail gateway", what);
                return 0;
        }
        /* A member that lets the provider bill beyond tokens in a way the gateway cannot meter (a
         * tool type or a plugin it does not know, xAI's Live Search): its cost cannot be checked
         * against cost_usd before it is spent (fail closed). */
        if (u->unmetered && aj_meter_caps(cs->l->meter)->set[AJ_CAP_COST_USD]) {
                char what[384];
                snprintf(what, sizeof(what),
                         "the request asks for %s, which the provider may bill beyond tokens and the gateway cannot "
                         "meter: refused under the run's cost cap",
                         u->unmetered);
                refuse(v, pr, 403, "agentjail gateway", what);
                return 0;
        }
        if (long_context_beta(req) && aj_meter_caps(cs->l->meter)->set[AJ_CAP_COST_USD]) {
                refuse(v, pr, 403, "agentjail gateway",
                       "the request asks for the 1M-token context (anthropic-beta context-1m), whose calls past "
                       "200K input tokens the provider bills at a long-context rate the prices do not hold: "
                       "refused under the run's cost cap");
                return 0;
        }
        if (cs->api == AJ_LLM_API_OPENAI_CHAT && u->stream && (r = add_usage(cs, req, v)) < 0) {
                refuse(v, pr, 400, "agentjail gateway", "stream_options must be an object");
                return 0;
        }
        /* A request continuing a response the provider stored (previous_response_id) is billed
         * that response's input and output again as its own input: reserved as this run saw
         * them. One the gateway did not see (another run's, evicted), or a conversation, whose
         * items no response here tells, holds input it cannot count before the call. */
        uint64_t held = 0;
        if ((u->previous_response_id || u->held_input_unknown) &&
            (u->held_input_unknown || !held_tokens(cs->l, u->previous_response_id, &held)) &&
            spend_capped(cs->l->meter)) {
                refuse(v, pr, 403, "agentjail gateway",
                       "a previous_response_id of a response this run did not see, or a conversation, holds input "
                       "the provider bills that the gateway cannot count before the call: refused under the run's "
                       "tokens or cost cap (send the input whole)");
                return 0;
        }
        /* Each of the answers asked for ("n") may be as long as the limit: the provider bills
         * them all, so the worst case is all of them. */
        uint64_t per_answer = u->max_output_tokens;
        if (!per_answer && (r = bound_output(cs, req, v, &per_answer)) < 0)
                return r;
        /* And each web search the request allows, at its fee: one response could otherwise take
         * the run past cost_usd by all its searches. */
        uint64_t searches = u->max_searches;
        if (u->search_unbounded)
                searches = searches > UINT64_MAX - AJ_SUP_LLM_DEFAULT_SEARCHES ? UINT64_MAX
                                                                               : searches + AJ_SUP_LLM_DEFAULT_SEARCHES;
        cs->worst = (AjMeterUsage){ .model = cs->model,
                                    .input = sat_add(u->prompt_estimate, held),
                                    .output = sat_add(mul_sat(per_answer, u->choices ? u->choices : 1),
                                                      mul_sat(u->prediction_tokens, u->choices ? u->choices : 1)),
                                    .web_searches = searches };
        /* The dearest endpoint OpenRouter's routing may pick, where the request bounds it. */
        if (u->max_price_set) {
                cs->worst.input_price_floor = u->max_price_input;
                cs->worst.output_price_floor = u->max_price_output;
                cs->worst.call_fee = u->max_price_fee;
        }
        /* And one use of each other tool billed per use it offers: its fee must be known. */
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                cs->worst.tool_uses[f] = u->tool_offered[f];
        return 0;
}

static json_t *reserved_json(const AjMeterReservation *res, uint64_t web_searches)
{
        json_t *o = json_pack("{s:I, s:f}", "tokens", (json_int_t)res->amount[AJ_CAP_TOKENS], "cost_usd",
                              cap_value(AJ_CAP_COST_USD, res->amount[AJ_CAP_COST_USD]));
        if (o && web_searches && res->active)
                json_object_set_new(o, "web_searches",
                                    json_integer(web_searches > INT64_MAX ? INT64_MAX : (json_int_t)web_searches));
        return o;
}

static void on_request(void *userdata, AjGatewayCall *call, const AjGatewayRequest *req, AjGatewayVerdict *v)
{
        AjSupLlm *l = userdata;
        const AjGatewayProvider *pr = call->provider;
        AjSupLlmCall *cs = calloc(1, sizeof(*cs));
        if (!cs) {
                refuse(v, pr, 503, "agentjail gateway", "out of memory");
                return;
        }
        cs->l = l;
        call->data = cs;
        aj_sha256_init(&cs->out_sha);
        if (read_request(cs, pr, call->method, call->path, req, v) < 0) {
                refuse(v, pr, 503, "agentjail gateway", "out of memory");
                return;
        }
        if (!v->status && l->ended)
                refuse(v, pr, 503, "agentjail: the run is being killed", "no call is forwarded for it");
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        if (!v->status && cs->metered) {
                if (aj_meter_reserve_usage(l->meter, &cs->worst, &cs->res, &d) < 0)
                        refuse(v, pr, 400, "agentjail gateway", "the request cannot be metered");
                else if (d.verdict == AJ_VERDICT_BREACH)
                        refuse(v, pr, 429, "agentjail: the run is stopped for the operator", d.reason);
                else
                        cs->reserved = true;
        }
        cs->refused = v->status != 0;
        bool miss = false;
        json_t *replay = !cs->refused && l->replay ? aj_sup_llm_replay_answer(l, call, cs->request_sha, v, &miss)
                                                   : NULL;
        if (miss && v->status)
                cs->refused = true;
        if (l->record_requests && req->body_len) {
                /* Held within what can still be written: bodies of calls in flight cannot pin
                 * more of the supervisor's memory than llm.record_bytes. */
                uint64_t room = aj_sup_llm_record_room(l);
                size_t keep = req->body_len < room ? req->body_len : (size_t)room;
                cs->request_truncated = keep < req->body_len;
                if (keep && (cs->request_body = malloc(keep))) {
                        memcpy(cs->request_body, req->body, cs->request_len = keep);
                        l->held += keep;
                }
        }
        const AjLlmUsage *u = cs->usage ? aj_llm_call_usage(cs->usage) : NULL;
        json_t *ev = json_pack("{s:I, s:s, s:s, s:s?, s:b, s:b, s:s, s:o, s:s}", "call_id", (json_int_t)call->id,
                               "provider", pr->name, "path", call->path, "model", cs->model, "stream", u && u->stream,
                               "metered", cs->metered, "request_sha256", cs->request_sha, "reserved",
                               reserved_json(&cs->res, cs->worst.web_searches), "verdict",
                               d.verdict == AJ_VERDICT_BREACH ? "breach"
                               : cs->refused                  ? "refused"
                                                              : "allow");
        if (ev && d.verdict == AJ_VERDICT_BREACH)
                json_object_set_new(ev, "reason", json_string(d.reason));
        else if (ev && cs->refused) {
                /* What the agent was told, so that the log says why, not only that. */
                json_object_set_new(ev, "status", json_integer(v->status));
                json_object_set_new(ev, "reason", aj_json_string_shown(v->message));
        }
        if (ev && replay)
                json_object_set(ev, "replay", replay);
        if (ev && cs->provider_fetch)
                json_object_set(ev, "provider_fetch", cs->provider_fetch);
        if (ev && cs->limit_set && !cs->refused)
                json_object_set_new(ev, "output_limit_set",
                                    json_pack("{s:s, s:I}", "field", cs->limit_set, "tokens",
                                              (json_int_t)cs->limit_set_tokens));
        int r = emit(l, "llm.request", ev);
        if (miss)
                (void)emit(l, "llm.replay_miss",
                           json_pack("{s:I, s:s, s:s, s:s, s:b, s:s?}", "call_id", (json_int_t)call->id, "provider",
                                     pr->name, "path", call->path, "request_sha256", cs->request_sha, "live",
                                     l->replay_live, "replay_of", l->replay_of));
        json_decref(replay);
        cs->forwarded = r >= 0 && !cs->refused;
        if (r < 0 && !cs->refused) {
                /* Not recorded: not forwarded (the log cap's breach is the sink's). */
                free(v->body);
                v->body = NULL;
                free(v->response);
                v->response = NULL;
                refuse(v, pr, 429, "agentjail gateway", "the run's event log refused the call");
                cs->refused = true;
        }
        if (cs->refused && cs->reserved) {
                aj_meter_settle(l->meter, &cs->res, false);
                cs->reserved = false;
        }
        if (cs->refused) { /* a body rewritten before the refusal is not sent */
                free(v->body);
                v->body = NULL;
        }
        report_breach(cs, &d, pr->name);
}

static void on_response_head(void *userdata, AjGatewayCall *call, unsigned status, const AjGwHeader *headers,
                             size_t n_headers)
{
        (void)userdata;
        AjSupLlmCall *cs = call->data;
        if (!cs)
                return;
        const AjGwHeader *ct = aj_gw_header_find(headers, n_headers, "content-type");
        cs->status = status;
        free(cs->content_type);
        cs->content_type = ct && ct->value_len < 256 ? strndup(ct->value, ct->value_len) : NULL;
        if (!cs->usage)
                return;
        _cleanup_free_ char *type = ct ? strndup(ct->value, ct->value_len) : NULL;
        aj_llm_call_response_start(cs->usage, (int)status, type);
        /* Only an event stream has a usage chunk to hide: an error's body goes as it is. */
        if (cs->strip && (status / 100 != 2 || !type || strncasecmp(type, "text/event-stream", 17) != 0)) {
                cs->strip = false;
                aj_llm_call_strip_usage_chunk(cs->usage, false);
        }
}

/* The model a call is priced as: the one the request names, or, when the provider chose it (a
 * router model, fallbacks: relayed only without caps), the one the response names. */
static const char *priced_model(const AjSupLlmCall *cs)
{
        const AjLlmUsage *u = aj_llm_call_usage(cs->usage);
        return u->model_routed && u->response_model ? u->response_model : cs->model;
}

static void measured_usage(const AjSupLlmCall *cs, AjMeterUsage *ret)
{
        AjLlmCharge ch;
        aj_llm_call_charge(cs->usage, &ch);
        uint64_t cache_write = ch.cache_creation;
        uint64_t cache_read = ch.cache_read;
        if (cache_read + cache_write > ch.input) /* never trust a response to be coherent */
                cache_read = ch.input > cache_write ? ch.input - cache_write : 0, cache_write = ch.input - cache_read;
        *ret = (AjMeterUsage){ .model = priced_model(cs),
                               .input = ch.input,
                               .output = ch.output,
                               .cache_read = cache_read,
                               .cache_write = cache_write,
                               .cache_write_1h = ch.cache_creation_1h <= cache_write ? ch.cache_creation_1h : 0,
                               .web_searches = ch.web_searches,
                               .provider_cost = ch.provider_cost_pusd };
        memcpy(ret->tool_uses, ch.tool_uses, sizeof(ret->tool_uses));
        /* A routed call whose provider said nothing of its cost (the agent left before the usage,
         * a server that drops it) may have answered through the dearest endpoint its max_price
         * allows: priced at it, as it was reserved. */
        if (!aj_llm_call_usage(cs->usage)->provider_cost_reported) {
                ret->input_price_floor = cs->worst.input_price_floor;
                ret->output_price_floor = cs->worst.output_price_floor;
                ret->call_fee = cs->worst.call_fee;
        }
}

/* The uses of the provider's other tools, all fees together. */
static uint64_t tool_uses(const AjMeterUsage *u)
{
        uint64_t n = 0;
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                n = n > UINT64_MAX - u->tool_uses[f] ? UINT64_MAX : n + u->tool_uses[f];
        return n;
}

/* Whether every tool's uses in `m` are within those reserved in `worst`. */
static bool tools_within(const AjMeterUsage *m, const AjMeterUsage *worst)
{
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                if (m->tool_uses[f] > worst->tool_uses[f])
                        return false;
        return true;
}

/* The stream so far, against the caps: the call holds the larger of its worst case and
 * what it has used; true (d the breach) when that no longer fits. */
static bool crosses_cap(AjSupLlmCall *cs, AjMeterDecision *d)
{
        AjMeterUsage m;
        measured_usage(cs, &m);
        uint64_t tools = tool_uses(&m);
        if (m.input == cs->checked_in && m.output == cs->checked_out && m.web_searches == cs->checked_searches &&
            tools == cs->checked_tools && m.provider_cost == cs->checked_cost)
                return false;
        cs->checked_in = m.input;
        cs->checked_out = m.output;
        cs->checked_searches = m.web_searches;
        cs->checked_tools = tools;
        cs->checked_cost = m.provider_cost;
        /* The provider's own figure of the cost counts once it passes what is reserved. */
        if (m.input <= cs->worst.input && m.output <= cs->worst.output && m.cache_write == 0 &&
            m.web_searches <= cs->worst.web_searches && tools_within(&m, &cs->worst) &&
            m.provider_cost <= cs->res.amount[AJ_CAP_COST_USD])
                return false; /* within the reservation, which fit */
        AjMeterUsage hold = m;
        hold.input_price_floor = cs->worst.input_price_floor;
        hold.output_price_floor = cs->worst.output_price_floor;
        hold.call_fee = cs->worst.call_fee;
        hold.input = max_u64(m.input, cs->worst.input);
        hold.output = max_u64(m.output, cs->worst.output);
        hold.web_searches = max_u64(m.web_searches, cs->worst.web_searches);
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                hold.tool_uses[f] = max_u64(m.tool_uses[f], cs->worst.tool_uses[f]);
        AjMeterReservation res;
        aj_meter_settle(cs->l->meter, &cs->res, false);
        if (aj_meter_reserve_usage(cs->l->meter, &hold, &res, d) < 0 || d->verdict == AJ_VERDICT_BREACH) {
                AjMeterDecision again;
                (void)aj_meter_reserve_usage(cs->l->meter, &cs->worst, &cs->res, &again);
                return d->verdict == AJ_VERDICT_BREACH;
        }
        cs->res = res;
        cs->worst.input = hold.input;
        cs->worst.output = hold.output;
        cs->worst.web_searches = hold.web_searches;
        cs->worst.provider_cost = hold.provider_cost;
        memcpy(cs->worst.tool_uses, hold.tool_uses, sizeof(hold.tool_uses));
        return false;
}

static int append(char **buf, size_t *len, size_t *size, const void *data, size_t n)
{
        if (*len + n > *size) {
                size_t ns = max_u64(*size * 2, *len + n + 4096);
                char *b = realloc(*buf, ns);
                if (!b)
                        return -ENOMEM;
                *buf = b;
                *size = ns;
        }
        memcpy(*buf + *len, data, n);
        *len += n;
        return 0;
}

static int forward_event(void *userdata, const AjSseEvent *ev)
{
        AjSupLlmCall *cs = userdata;
        bool forward = true;
        int r = aj_llm_call_response_event(cs->usage, ev, &forward);
        if (r < 0 || !forward)
                return r;
        _cleanup_free_ char *wire = NULL;
        size_t n = 0;
        r = aj_sse_format(ev, &wire, &n);
        if (r < 0)
                return r;
        return append(&cs->pending, &cs->pending_len, &cs->pending_size, wire, n);
}

static void keep_response(AjSupLlmCall *cs, const char *buf, size_t n)
{
        AjSupLlm *l = cs->l;
        if (!l->record_responses || cs->response_truncated)
                return;
        uint64_t room = aj_sup_llm_record_room(l);
        size_t keep = n < room ? n : (size_t)room;
        if (cs->response_len + keep > MAX_RECORDED_RESPONSE)
                keep = MAX_RECORDED_RESPONSE - cs->response_len;
        if (keep && append(&cs->response, &cs->response_len, &cs->response_size, buf, keep) < 0)
                keep = 0;
        l->held += keep;
        if (keep < n)
                cs->response_truncated = true;
}

/* The model's tool calls count as the agent's (tool_calls, the rate, repeats), each keyed
 * as the broker keys a tool call: its name and the digest of its canonical arguments, so a
 * model asking for the same call again and again breaches repeat_limit. Each call is
 * counted as soon as it is whole in the response, BEFORE the bytes that end it are
 * forwarded: the agent cannot run it (and its hook cannot ask the broker) before the
 * gateway counted it, so the broker recognises the call by its id and does not count it
 * again (aj_meter_reserve_tool_call()). all: the response has ended, every call counts. */
static void count_tool_calls(AjSupLlmCall *cs, AjGatewayCall *call, bool all)
{
        const AjLlmUsage *u = aj_llm_call_usage(cs->usage);
        for (size_t i = 0; i < u->n_tool_calls; i++) {
                if (cs->tool_counted[i] || (!all && !aj_llm_call_tool_done(cs->usage, i)))
                        continue;
                cs->tool_counted[i] = true;
                AjMeterReservation res;
                AjMeterDecision dec;
                if (aj_meter_reserve_tool_call(cs->l->meter, u->tool_calls[i], u->tool_args_sha256[i],
                                               u->tool_call_ids[i], AJ_METER_BY_GATEWAY, aj_now_monotonic_ns(), &res,
                                               &dec) < 0)
                        continue;
                aj_meter_settle(cs->l->meter, &res, dec.verdict == AJ_VERDICT_ALLOW);
                report_breach(cs, &dec, call->provider->name);
        }
        /* A model's answer the gateway could not read whole (JSON nested past its bound: a tool
         * input 130 levels deep, a body past 8 MiB, an event past 4 MiB) may hold tool calls it
         * did not see: one is counted, under a key of its own, as soon as that is known, so a
         * loop of such answers still meets the tool caps (each counted none before). */
        if (u->unread && !cs->unread_counted && cs->status / 100 == 2) {
                cs->unread_counted = true;
                char key[48];
                snprintf(key, sizeof(key), "unread-%llu", (unsigned long long)call->id);
                AjMeterReservation res;
                AjMeterDecision dec;
                if (aj_meter_reserve_tool_call(cs->l->meter, "(a tool call in an answer the gateway could not read)",
                                               key, NULL, AJ_METER_BY_GATEWAY, aj_now_monotonic_ns(), &res,
                                               &dec) == 0) {
                        aj_meter_settle(cs->l->meter, &res, dec.verdict == AJ_VERDICT_ALLOW);
                        report_breach(cs, &dec, call->provider->name);
                }
        }
        /* Past the calls whose names are kept, the rest still count, each once (the tool
         * caps would otherwise not see a model that asks for 200 calls at a time); with no
         * name or arguments kept, each gets a key of its own, so they cannot make a repeat. */
        if (!all || cs->unkept_counted || u->tool_calls_total <= u->n_tool_calls)
                return;
        cs->unkept_counted = true;
        for (uint64_t i = u->n_tool_calls; i < u->tool_calls_total; i++) {
                char key[40];
                snprintf(key, sizeof(key), "unkept-%llu", (unsigned long long)i);
                AjMeterReservation res;
                AjMeterDecision dec;
                if (aj_meter_reserve_tool_call(cs->l->meter, "(a tool call past the ones kept)", key, NULL,
                                               AJ_METER_BY_GATEWAY, aj_now_monotonic_ns(), &res, &dec) < 0)
                        continue;
                aj_meter_settle(cs->l->meter, &res, dec.verdict == AJ_VERDICT_ALLOW);
                report_breach(cs, &dec, call->provider->name);
                if (dec.verdict == AJ_VERDICT_BREACH)
                        break; /* the run is stopped: one breach says it */
        }
}

static AjGatewayFlow on_response_bytes(void *userdata, AjGatewayCall *call, const char *buf, size_t n)
{
        (void)userdata;
        AjSupLlmCall *cs = call->data;
        if (!cs)
                return AJ_GATEWAY_CONTINUE;
        aj_sha256_update(&cs->out_sha, buf, n);
        cs->response_bytes += n;
        keep_response(cs, buf, n);
        if (!cs->usage)
                return AJ_GATEWAY_CONTINUE;
        if (cs->strip) {
                if (aj_sse_feed(cs->sse, buf, n, forward_event, cs) < 0) {
                        /* Unreadable from here: the rest is forwarded as it is. */
                        cs->strip = false;
                        (void)append(&cs->pending, &cs->pending_len, &cs->pending_size, buf, n);
                }
        } else
                (void)aj_llm_call_response_data(cs->usage, buf, n);
        count_tool_calls(cs, call, false);
        AjMeterDecision d;
        if (cs->reserved && crosses_cap(cs, &d)) {
                report_breach(cs, &d, call->provider->name);
                return AJ_GATEWAY_CUT;
        }
        return AJ_GATEWAY_CONTINUE;
}

static void filter(void *userdata, AjGatewayCall *call, const char *buf, size_t n, bool final, AjGatewaySink *sink)
{
        (void)userdata;
        AjSupLlmCall *cs = call->data;
        if (!cs || (!cs->strip && !cs->pending_len)) {
                if (n)
                        (void)aj_gateway_sink_write(sink, buf, n);
                return;
        }
        (void) final;
        if (cs->pending_len)
                (void)aj_gateway_sink_write(sink, cs->pending, cs->pending_len);
        cs->pending_len = 0;
}

static const char *relay_outcome(AjGatewayOutcome o)
{
        switch (o) {
        case AJ_GATEWAY_COMPLETED:
                return "completed";
        case AJ_GATEWAY_CUT_SHORT:
                return "cut_short";
        case AJ_GATEWAY_FAILED:
                return "failed";
        case AJ_GATEWAY_REFUSED:
                return "refused";
        }
        return "?";
}

static void add_price(json_t *ev, const AjMeterDecision *d)
{
        json_object_set_new(ev, "cost_usd", json_real(cap_value(AJ_CAP_COST_USD, d->cost_pusd)));
        /* The provider said what it charged (the usage's provider_cost_usd): the prices' own figure
         * beside it, cost_usd being the larger. */
        if (json_object_get(ev, "provider_cost_usd"))
                json_object_set_new(ev, "price_cost_usd", json_real(cap_value(AJ_CAP_COST_USD, d->priced_pusd)));
        if (!d->price_source) {
                json_object_set_new(ev, "price", json_string("unknown"));
                return;
        }
        json_object_set_new(ev, "price",
                            json_pack("{s:s, s:s, s:s?}", "entry", d->price_entry, "source", d->price_source, "date",
                                      d->price_date[0] ? d->price_date : NULL));
}

static void on_done(void *userdata, AjGatewayCall *call, AjGatewayOutcome outcome, uint64_t latency_ns)
{
        AjSupLlm *l = userdata;
        AjSupLlmCall *cs = call->data;
        if (!cs)
                return;
        call->data = NULL;
        json_t *ev = cs->usage && !cs->refused ? (aj_llm_call_response_end(cs->usage), aj_llm_call_to_json(cs->usage))
                                               : json_object();
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        bool charged_worst = false;
        if (cs->reserved) {
                AjMeterUsage m;
                measured_usage(cs, &m);
                /* The response was not read to its end after the provider had the request
                 * (the agent left, the stream was cut, the provider went silent while the
                 * agent did not read, the run was killed with the call in flight), or the call
                 * asked for a background response (no cap is set, else it was refused), or its
                 * answer was only an acknowledgment (no answer, no usage: fetched later): the
                 * provider may go on generating what it was asked for, billed but never seen.
                 * Such a call is charged its worst case. */
                const AjLlmUsage *u = aj_llm_call_usage(cs->usage);
                bool unread = call->forwarded && outcome != AJ_GATEWAY_COMPLETED;
                if (unread || u->background || u->acknowledged) {
                        charged_worst = m.input < cs->worst.input || m.output < cs->worst.output ||
                                        m.web_searches < cs->worst.web_searches || !tools_within(&cs->worst, &m);
                        m.input = max_u64(m.input, cs->worst.input);
                        m.output = max_u64(m.output, cs->worst.output);
                        m.web_searches = max_u64(m.web_searches, cs->worst.web_searches);
                        for (int f = 0; f < AJ_TOOL_FEES; f++)
                                m.tool_uses[f] = max_u64(m.tool_uses[f], cs->worst.tool_uses[f]);
                }
                if (aj_meter_settle_usage(l->meter, &cs->res, &m, &d) == 0) {
                        cs->reserved = false;
                        aj_sup_llm_account(l, call->provider->name, m.model, &m, d.cost_pusd);
                }
                if (u->response_id && cs->status / 100 == 2)
                        hold_response(l, u->response_id, sat_add(m.input, m.output));
        }
        if (ev) {
                json_object_set_new(ev, "call_id", json_integer((json_int_t)call->id));
                json_object_set_new(ev, "provider", json_string(call->provider->name));
                json_object_set_new(ev, "relay", json_string(relay_outcome(outcome)));
                if (call->agent_left)
                        json_object_set_new(ev, "agent_left", json_true());
                if (charged_worst)
                        json_object_set_new(ev, "charged", json_string("worst_case"));
                json_object_set_new(ev, "latency_ms", json_real((double)latency_ns / 1e6));
                if (call->first_byte_ns)
                        json_object_set_new(ev, "ttfb_ms",
                                            json_real((double)(call->first_byte_ns - call->started_ns) / 1e6));
                json_object_set_new(ev, "request_sha256", json_string(cs->request_sha));
                /* Not a model call (a HEAD /, a model list): relayed, counted apart. */
                json_object_set_new(ev, "metered", json_boolean(cs->metered));
                uint8_t dg[AJ_SHA256_SIZE];
                char hex[AJ_SHA256_HEX_SIZE];
                aj_sha256_final(&cs->out_sha, dg);
                json_object_set_new(ev, "output_sha256", json_string(aj_sha256_hex(dg, hex)));
                if (cs->metered && !cs->refused)
                        add_price(ev, &d);
                /* A cap the spend crossed: why (a model or a search without a price names it). */
                if (d.verdict == AJ_VERDICT_BREACH && d.reason[0])
                        json_object_set_new(ev, "breach_reason", json_string(d.reason));
                /* What a replay serves again besides the body (llm-replay.c). */
                if (cs->status && !json_object_get(ev, "status"))
                        json_object_set_new(ev, "status", json_integer(cs->status));
                if (cs->content_type)
                        json_object_set_new(ev, "content_type", json_string(cs->content_type));
        }
        (void)(cs->forwarded ? record(l, "llm.response", ev) : emit(l, "llm.response", ev));
        report_breach(cs, &d, call->provider->name);
        if (cs->usage && !cs->refused)
                count_tool_calls(cs, call, true);
        if (l->record_responses)
                aj_sup_llm_record(l, call->id, cs->request_body, cs->request_len, cs->request_truncated, cs->response,
                                  cs->response_len, cs->response_truncated);
        uint64_t response_bytes = cs->response_bytes;
        call_free(cs);
        /* The response's body and the DOMs of its body or events are freed by now. */
        aj_gateway_release_memory(response_bytes > SIZE_MAX ? SIZE_MAX : (size_t)response_bytes);
}

/* The key goes where the provider's default paths and the profile's opened ones say
 * (key-paths.h); anything else is refused before its body is read, and the agent is told
 * which profile field opens it. */
static void admit(void *userdata, const AjGatewayProvider *pr, const char *method, const char *path,
                  AjGatewayVerdict *v)
{
        AjSupLlm *l = userdata;
        char *const *rules = NULL;
        for (size_t i = 0; i < l->n_providers; i++)
                if (streq(l->names[i], pr->name))
                        rules = l->paths[i];
        if (aj_key_path_allowed(pr->api, rules, method, path))
                return;
        int n = (int)strcspn(path, "?");
        n = n > 128 ? 128 : n;
        char what[448];
        snprintf(what, sizeof(what),
                 "%.16s %.*s is not a model call or a model list: the provider's key is not sent there; the "
                 "profile's llm.providers.%s.paths opens it (\"%.16s %.*s\")",
                 method, n, path, pr->name, method, n, path);
        refuse(v, pr, 403, "agentjail gateway", what);
}

/* The gateway's own answers, outside any call (a request it could not parse or route, a
 * body past its bounds): nothing reached a provider or the meter, but the log says what
 * the agent tried and what it was told. */
static void on_refused(void *userdata, const char *method, const char *target, unsigned status, const char *message)
{
        AjSupLlm *l = userdata;
        (void)emit(l, "llm.refused",
                   json_pack("{s:s*, s:s*, s:i, s:o}", "method", method, "path", target, "status", (int)status,
                             "reason", aj_json_string_shown(message)));
}

void aj_sup_llm_observer(AjSupLlm *l, AjGatewayObserver *ret)
{
        *ret = (AjGatewayObserver){
                .userdata = l,
                .admit = admit,
                .on_request = on_request,
                .on_response_head = on_response_head,
                .on_response_bytes = on_response_bytes,
                .filter = filter,
                .on_done = on_done,
                .on_refused = on_refused,
        };
}
