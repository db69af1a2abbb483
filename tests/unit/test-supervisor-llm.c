/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's metering observer (src/supervisor/llm-meter.c) driven directly, with a
 * real meter and fake hooks: reserve before forwarding, refuse and breach past a cap,
 * settle to the measured usage, cut a stream that crosses a cap, count tool calls and
 * their repeats (keyed as the broker keys them). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/llm.h"
#include "util/strv.h"

static json_t *events;
static json_t *breaches;

static int fake_emit(void *userdata, const char *type, json_t *fields)
{
        (void)userdata;
        json_object_set_new(fields, "type", json_string(type));
        json_array_append_new(events, fields);
        return 0;
}

static void fake_breach(void *userdata, const AjBreach *b)
{
        (void)userdata;
        json_array_append_new(breaches,
                              json_pack("{s:s, s:f, s:f}", "cap", b->cap, "limit", b->limit, "value", b->value));
}

static const AjHooks hooks = { .emit = fake_emit, .breach = fake_breach };
static const AjGatewayProvider anthropic = { .name = "anthropic", .api = AJ_GATEWAY_API_ANTHROPIC };
static const AjGatewayProvider openai = { .name = "openai", .api = AJ_GATEWAY_API_OPENAI };

typedef struct {
        AjMeter *meter;
        AjSupLlm llm;
        AjGatewayObserver obs;
} Fixture;

/* claude-test: 1e-4 USD per input token, 2e-4 per output token. */
static void setup(Fixture *f, const char *caps)
{
        events = json_array();
        breaches = json_array();
        AjMeterCaps c = {};
        AjError err = {};
        if (caps)
                cr_assert_eq(aj_meter_apply_cap_arg(&c, caps, &err), 0, "%s", err.message ?: "");
        cr_assert_eq(aj_meter_new(&c, &f->meter), 0);
        cr_assert_eq(aj_meter_set_price(f->meter, "claude-test", 1e-4, 2e-4, -1), 0);
        f->llm = (AjSupLlm){ .meter = f->meter, .hooks = &hooks, .run_dir = "/nonexistent" };
        aj_sup_llm_observer(&f->llm, &f->obs);
}

static void teardown(Fixture *f)
{
        aj_sup_llm_done(&f->llm);
        aj_meter_free(f->meter);
        json_decref(events);
        json_decref(breaches);
}

static void request(Fixture *f, AjGatewayCall *call, const AjGatewayProvider *pr, const char *path, const char *body,
                    AjGatewayVerdict *v)
{
        *call = (AjGatewayCall){
                .id = 1, .provider = pr, .method = *body ? "POST" : "GET", .path = path, .started_ns = 1
        };
        *v = (AjGatewayVerdict){};
        AjGatewayRequest req = { .body = body, .body_len = strlen(body) };
        f->obs.on_request(f->obs.userdata, call, &req, v);
        /* Allowed: the relay sends it to the provider whole. */
        call->forwarded = !v->status && !v->response;
}

/* A request the gateway refuses before it goes: `status`, its message saying `says` (NULL:
 * anything), the call then ended as the relay ends a refused one. */
static void expect_refused(Fixture *f, const AjGatewayProvider *pr, const char *path, const char *body, unsigned status,
                           const char *says)
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, pr, path, body, &v);
        cr_expect_eq(v.status, status, "%s %s: %s", path, body, v.message ? v.message : "");
        if (says)
                cr_expect(v.message && strstr(v.message, says), "%s", v.message ? v.message : "(none)");
        free(v.body);
        f->obs.on_done(f->obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
}

static void respond(Fixture *f, AjGatewayCall *call, const char *ctype, const char *body, AjGatewayOutcome o)
{
        AjGwHeader h = { .name = "content-type", .name_len = 12, .value = ctype, .value_len = strlen(ctype) };
        f->obs.on_response_head(f->obs.userdata, call, 200, &h, 1);
        cr_expect_eq(f->obs.on_response_bytes(f->obs.userdata, call, body, strlen(body)), AJ_GATEWAY_CONTINUE);
        f->obs.on_done(f->obs.userdata, call, o, 1000);
}

/* A request forwarded, then answered whole with `reply` (JSON). */
static void answered(Fixture *f, const AjGatewayProvider *pr, const char *path, const char *body, const char *reply)
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, pr, path, body, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        free(v.body);
        respond(f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
}

static json_t *last_event(const char *type)
{
        json_t *found = NULL, *e;
        size_t i;
        json_array_foreach (events, i, e)
                if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
                        found = e;
        return found;
}

/* An allowed request whose agent left before the answer (the relay stopped reading): the
 * call ended cut short. Returns what its llm.request reserved (borrowed from the events). */
static json_t *agent_left(Fixture *f, const AjGatewayProvider *pr, const char *path, const char *body)
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, pr, path, body, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        json_t *reserved = json_object_get(last_event("llm.request"), "reserved");
        call.agent_left = true;
        f->obs.on_done(f->obs.userdata, &call, AJ_GATEWAY_CUT_SHORT, 1000);
        return reserved;
}

/* The agent's share of the log, full from now on: emit() refuses, record() writes. */
static bool share_full;
static int share_emit(void *userdata, const char *type, json_t *fields)
{
        if (share_full) {
                json_decref(fields);
                return -EFBIG;
        }
        return fake_emit(userdata, type, fields);
}
static const AjHooks hooks_with_record = { .emit = share_emit, .record = fake_emit, .breach = fake_breach };

#define MSG "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
#define REPLY                                                                                               \
        "{\"id\":\"m\",\"type\":\"message\",\"model\":\"claude-test\",\"content\":[{\"type\":\"tool_use\"," \
        "\"id\":\"t\",\"name\":\"get_weather\",\"input\":{}}],\"stop_reason\":\"tool_use\",\"usage\":"      \
        "{\"input_tokens\":25,\"output_tokens\":7,\"cache_read_input_tokens\":3}}"

Test(supervisor_llm, reserve_then_settle_to_measured)
{
        Fixture f;
        setup(&f, "tokens=1000");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        json_t *rq = last_event("llm.request");
        cr_assert_not_null(rq);
        cr_expect_str_eq(json_string_value(json_object_get(rq, "verdict")), "allow");
        json_int_t reserved = json_integer_value(json_object_get(json_object_get(rq, "reserved"), "tokens"));
        cr_expect_gt(reserved, 10, "the prompt estimate and max_tokens are reserved");
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), 0, "reserved, not used");

        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), 35, "settled to 25 + 3 + 7");
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 1, "the model's tool call counts");
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs);
        cr_expect_eq(json_integer_value(json_object_get(rs, "gen_ai.usage.input_tokens")), 28);
        cr_expect_eq(json_integer_value(json_object_get(rs, "gen_ai.usage.output_tokens")), 7);
        cr_expect_str_eq(json_string_value(json_object_get(rs, "relay")), "completed");
        cr_expect_null(json_object_get(rs, "agent_left"), "said only when the agent left");
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(rs, "price"), "entry")), "claude-test");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(json_object_get(f.llm.summary, "anthropic"),
                                                                        "claude-test"),
                                                        "requests")),
                     1);
        cr_expect_eq(json_array_size(breaches), 0);
        teardown(&f);
}

/* The relay read the whole response after the agent left: completed, metered whole,
 * and the event says the agent left. */
Test(supervisor_llm, agent_left_after_the_whole_response_is_completed_and_metered)
{
        Fixture f;
        setup(&f, "tokens=1000");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        call.agent_left = true;
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), 35, "settled as when the agent stays");
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs);
        cr_expect_str_eq(json_string_value(json_object_get(rs, "relay")), "completed");
        cr_expect(json_is_true(json_object_get(rs, "agent_left")));
        cr_expect_eq(json_integer_value(json_object_get(rs, "gen_ai.usage.output_tokens")), 7);
        teardown(&f);
}

/* The agent sent its request and left before the answer: the relay stops reading, but the
 * provider goes on generating (and billing) what it was asked for. Leaving must not be a
 * way around the caps: the call is charged its reservation, and the event says so. */
Test(supervisor_llm, agent_left_before_the_answer_is_charged_its_worst_case)
{
        Fixture f;
        setup(&f, "tokens=1000");
        json_int_t reserved = json_integer_value(
                json_object_get(agent_left(&f, &anthropic, "/v1/messages", MSG), "tokens"));
        cr_assert_gt(reserved, 10);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), (uint64_t)reserved, "charged the reservation");
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs);
        cr_expect_str_eq(json_string_value(json_object_get(rs, "relay")), "cut_short");
        cr_expect_str_eq(json_string_value(json_object_get(rs, "charged")), "worst_case");
        teardown(&f);
}

/* The provider had the request and the response was not read to its end, the agent still
 * there: the provider went silent while the agent did not read (the relay's response timeout),
 * or the run was killed while frozen with the call in flight. The provider may have generated
 * (and billed) all it was asked for: charged the reservation, as when the agent leaves. A call
 * that failed before its request went whole (the provider unreachable) is charged what it measured (its prompt's estimate). */
Test(supervisor_llm, a_forwarded_call_not_read_to_its_end_is_charged_its_worst_case)
{
        Fixture f;
        setup(&f, "tokens=1000");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        json_int_t reserved = json_integer_value(
                json_object_get(json_object_get(last_event("llm.request"), "reserved"), "tokens"));
        cr_assert_gt(reserved, 10);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 1000);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), (uint64_t)reserved, "charged the reservation");
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs);
        cr_expect_str_eq(json_string_value(json_object_get(rs, "relay")), "failed");
        cr_expect_str_eq(json_string_value(json_object_get(rs, "charged")), "worst_case");

        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        call.forwarded = false; /* failed connecting */
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 1000);
        cr_expect_lt(aj_meter_used(f.meter, AJ_CAP_TOKENS, 0), 2 * (uint64_t)reserved,
                     "never sent: its prompt estimate only, not its output limit");
        cr_expect_null(json_object_get(last_event("llm.response"), "charged"));
        teardown(&f);
}

/* A body with a Content-Encoding is read by the provider as it decodes it, by the gateway as
 * sent: JSON as sent, with "br" or "deflate" claimed, was metered as that JSON and forwarded
 * with the header. Refused (415), model call or not; "identity" is no encoding. */
Test(supervisor_llm, an_encoded_request_body_is_refused)
{
        Fixture f;
        setup(&f, NULL);
        static const AjGwHeader br = { "Content-Encoding", 16, "br", 2 };
        static const AjGwHeader identity = { "content-encoding", 16, "identity", 8 };
        const struct {
                const AjGatewayProvider *pr;
                const char *path;
                const char *body;
                const AjGwHeader *h;
                unsigned status;
        } cases[] = {
                { &anthropic, "/v1/messages", MSG, &br, 415 },
                { &anthropic, "/v1/messages", MSG, &identity, 0 },
                { &openai, "/v1/containers", "{\"name\":\"c\"}", &br, 415 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjGatewayCall call = { .id = 1, .provider = cases[i].pr, .method = "POST", .path = cases[i].path };
                AjGatewayVerdict v = {};
                AjGatewayRequest req = { cases[i].h, 1, cases[i].body, strlen(cases[i].body) };
                f.obs.on_request(f.obs.userdata, &call, &req, &v);
                cr_expect_eq(v.status, cases[i].status, "%zu: %s", i, v.message);
                if (cases[i].status)
                        cr_expect(strstr(v.message, "Content-Encoding"), "%s", v.message);
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, cases[i].status ? AJ_GATEWAY_REFUSED : AJ_GATEWAY_FAILED, 0);
        }
        teardown(&f);
}

Test(supervisor_llm, refused_before_forwarding_past_a_cap)
{
        Fixture f;
        setup(&f, "cost_usd=0.001");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_expect_eq(v.status, 429);
        cr_expect_str_eq(v.error_type, "rate_limit_error");
        cr_expect(strstr(v.message, "cost_usd"), "%s", v.message);
        cr_assert_eq(json_array_size(breaches), 1);
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(breaches, 0), "cap")), "cost_usd");
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.request"), "verdict")), "breach");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_COST_USD, 0), 0, "nothing spent");
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.response"), "relay")), "refused");
        cr_expect_eq(json_array_size(breaches), 1, "one breach per call");
        teardown(&f);
}

Test(supervisor_llm, unpriced_model_under_a_cost_cap_is_refused)
{
        Fixture f;
        setup(&f, "cost_usd=5");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions", "{\"model\":\"gpt-unknown\",\"messages\":[]}", &v);
        cr_expect_eq(v.status, 429);
        cr_expect_str_eq(v.error_type, "insufficient_quota");
        cr_expect_str_eq(v.error_code, "insufficient_quota");
        cr_expect_eq(json_array_size(breaches), 1);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
}

Test(supervisor_llm, bad_body_and_unmetered_paths)
{
        Fixture f;
        setup(&f, NULL);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", "{\"model\":\"a\",\"model\":\"b\"}", &v);
        cr_expect_eq(v.status, 400, "a repeated key is refused");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        request(&f, &call, &anthropic, "/v1/models", "", &v);
        cr_expect_eq(v.status, 0, "another path is relayed");
        cr_expect(json_is_false(json_object_get(last_event("llm.request"), "metered")));
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_COMPLETED, 0);
        teardown(&f);
}

static long vm_kb(const char *key)
{
        FILE *f = fopen("/proc/self/status", "re");
        cr_assert_not_null(f);
        char line[256];
        long v = -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0)
                        v = strtol(line + strlen(key), NULL, 10);
        fclose(f);
        return v;
}

Test(supervisor_llm, a_request_of_more_json_values_than_parsed_is_refused_413)
{
        Fixture f;
        setup(&f, NULL);
        /* 16 MiB of {}: jansson's DOM of it took 1.2 GB of the supervisor's memory. */
        size_t n = ((16u << 20) - 100) / 3, len = 0;
        char *body = malloc(3 * n + 100);
        cr_assert_not_null(body);
        len = (size_t)sprintf(body, "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[");
        for (size_t i = 0; i < n; i++, len += 3)
                memcpy(body + len, "{},", 3);
        memcpy(body + len - 1, "]}", 3);
        len++;
        long before = vm_kb("VmRSS:");
        AjGatewayCall call = { .id = 1, .provider = &anthropic, .method = "POST", .path = "/v1/messages" };
        AjGatewayVerdict v = {};
        AjGatewayRequest req = { .body = body, .body_len = len };
        f.obs.on_request(f.obs.userdata, &call, &req, &v);
        cr_expect_eq(v.status, 413);
        cr_expect_str_eq(v.error_type, "request_too_large");
        cr_expect(strstr(v.message, "more than 1048576 JSON values"), "%s", v.message);
        cr_expect_lt(vm_kb("VmHWM:") - before, 64 << 10, "the supervisor's peak memory");
        json_t *ev = last_event("llm.request");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "verdict")), "refused");
        cr_expect_eq(json_integer_value(json_object_get(ev, "status")), 413, "the status the agent got is recorded");
        cr_expect(strstr(json_string_value(json_object_get(ev, "reason")) ?: "", "more than 1048576 JSON values"),
                  "and why");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        free(body);
        teardown(&f);
}

/* The gateway's own answers outside a call are recorded with what the agent was told; a
 * message that is not UTF-8 (a parser quoting the agent's bytes, a cut) is kept escaped,
 * not dropped with the event. */
Test(supervisor_llm, answers_outside_a_call_are_recorded)
{
        Fixture f;
        setup(&f, NULL);
        cr_assert_not_null(f.obs.on_refused);
        f.obs.on_refused(f.obs.userdata, "POST", "/v1/messages", 413, "agentjail gateway: request body too large");
        json_t *ev = last_event("llm.refused");
        cr_assert_not_null(ev);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "method")), "POST");
        cr_expect_str_eq(json_string_value(json_object_get(ev, "path")), "/v1/messages");
        cr_expect_eq(json_integer_value(json_object_get(ev, "status")), 413);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "reason")), "agentjail gateway: request body too large");

        f.obs.on_refused(f.obs.userdata, NULL, NULL, 400, "agentjail gateway: bad \xff\x1b[2J near");
        ev = last_event("llm.refused");
        cr_assert_not_null(ev, "an event even for a message that is not UTF-8");
        cr_expect_null(json_object_get(ev, "method"));
        cr_expect_eq(json_integer_value(json_object_get(ev, "status")), 400);
        cr_expect_str_eq(json_string_value(json_object_get(ev, "reason")), "agentjail gateway: bad \\xff\\x1b[2J near");
        teardown(&f);
}

/* A streamed Messages call of claude-test allowed and its response's head read. */
static void start_stream(Fixture *f, AjGatewayCall *call)
{
        AjGatewayVerdict v;
        request(f, call, &anthropic, "/v1/messages",
                "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":10,\"messages\":[]}", &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        AjGwHeader h = { .name = "content-type", .name_len = 12, .value = "text/event-stream", .value_len = 17 };
        f->obs.on_response_head(f->obs.userdata, call, 200, &h, 1);
}

/* A stream under `caps` fed `events` (SSE texts, NULL-ended) in turn: all go on but the
 * last, where it crosses `cap` and is cut, one breach, the call then ended cut short and
 * `charged` of `meter` used (`why`). */
typedef struct {
        const char *caps;
        const char *events[4];
        const char *cap;
        AjCap meter;
        uint64_t charged;
        const char *why;
} StreamCut;

static void expect_stream_cut(const StreamCut *s)
{
        Fixture f;
        setup(&f, s->caps);
        AjGatewayCall call;
        start_stream(&f, &call);
        size_t n = 0;
        while (n < ARRAY_SIZE(s->events) && s->events[n])
                n++;
        for (size_t i = 0; i < n; i++)
                cr_expect_eq(f.obs.on_response_bytes(f.obs.userdata, &call, s->events[i], strlen(s->events[i])),
                             i + 1 < n ? AJ_GATEWAY_CONTINUE : AJ_GATEWAY_CUT, "event %zu", i);
        cr_assert_eq(json_array_size(breaches), 1);
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(breaches, 0), "cap")), s->cap);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_CUT_SHORT, 1000);
        cr_expect_eq(aj_meter_used(f.meter, s->meter, 0), s->charged, "%s", s->why);
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.response"), "relay")), "cut_short");
        cr_expect_eq(json_array_size(breaches), 1, "one breach per call");
        teardown(&f);
}

Test(supervisor_llm, stream_past_its_reservation_and_a_cap_is_cut)
{
        expect_stream_cut(&(StreamCut){
                .caps = "input_tokens=100",
                .events = { "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
                            "\"claude-test\",\"usage\":{\"input_tokens\":500,\"output_tokens\":1}}}\n\n" },
                .cap = "input_tokens",
                .meter = AJ_CAP_INPUT_TOKENS,
                .charged = 500,
                .why = "what was used is charged",
        });
}

Test(supervisor_llm, unmetered_spend_refused_under_caps)
{
        Fixture f;
        setup(&f, "tokens=1000");
        AjGatewayCall call;
        AjGatewayVerdict v;
        /* An API the gateway cannot meter is refused under a token cap. */
        expect_refused(&f, &openai, "/v1/embeddings", "{\"model\":\"e\",\"input\":\"x\"}", 403, "/v1/embeddings");
        request(&f, &call, &openai, "/v1/models", "", &v);
        cr_expect_eq(v.status, 0);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_COMPLETED, 0); /* as the relay does for every call */
        teardown(&f);
}

static unsigned admitted(Fixture *f, const AjGatewayProvider *pr, const char *method, const char *path,
                         AjGatewayVerdict *v)
{
        *v = (AjGatewayVerdict){};
        cr_assert_not_null(f->obs.admit);
        f->obs.admit(f->obs.userdata, pr, method, path, v);
        return v->status;
}

/* The key goes to the model calls and the model list only, unless the profile opens a path
 * for that provider; the refusal says which field opens it. */
Test(supervisor_llm, the_key_goes_only_where_the_profile_lets_it)
{
        Fixture f;
        setup(&f, NULL);
        AjGatewayVerdict v;
        cr_expect_eq(admitted(&f, &anthropic, "POST", "/v1/messages", &v), 0);
        cr_expect_eq(admitted(&f, &anthropic, "HEAD", "/", &v), 0, "Claude Code's check at startup");
        cr_expect_eq(admitted(&f, &openai, "POST", "/v1/responses", &v), 0);
        cr_expect_eq(admitted(&f, &openai, "GET", "/v1/models/gpt-5", &v), 0);
        cr_expect_eq(admitted(&f, &openai, "GET", "/v1/files?limit=5", &v), 403, "without a cap too");
        cr_expect_str_eq(v.error_type, "invalid_request_error");
        cr_expect_str_eq(v.message,
                         "agentjail gateway: GET /v1/files is not a model call or a model list: the provider's key is "
                         "not sent there; the profile's llm.providers.openai.paths opens it (\"GET /v1/files\")");
        cr_expect_eq(admitted(&f, &anthropic, "DELETE", "/v1/files/file_1", &v), 403);
        cr_expect_str_eq(v.error_type, "permission_error");
        cr_expect(strstr(v.message, "llm.providers.anthropic.paths opens it (\"DELETE /v1/files/file_1\")"), "%s",
                  v.message);

        /* Opened for openai: for openai alone. */
        f.llm.names[0] = strdup("openai");
        cr_assert_eq(aj_strv_push(&f.llm.paths[0], "GET /v1/files/*/content"), 0);
        cr_assert_eq(aj_strv_push(&f.llm.paths[0], "* /v1/files/*"), 0);
        f.llm.n_providers = 1;
        cr_expect_eq(admitted(&f, &openai, "GET", "/v1/files/file_1/content", &v), 0);
        cr_expect_eq(admitted(&f, &openai, "DELETE", "/v1/files/file_1", &v), 0);
        cr_expect_eq(admitted(&f, &openai, "GET", "/v1/files", &v), 403, "only what is opened");
        cr_expect_eq(admitted(&f, &anthropic, "DELETE", "/v1/files/file_1", &v), 403, "another provider's stays shut");
        teardown(&f);
}

/* Opening a path does not open the meter: under a cap a request the gateway cannot meter is
 * still refused (a POST of an API it does not read), reads still go. */
Test(supervisor_llm, an_opened_path_still_obeys_the_caps)
{
        Fixture f;
        setup(&f, "tokens=1000");
        f.llm.names[0] = strdup("openai");
        cr_assert_eq(aj_strv_push(&f.llm.paths[0], "* /v1/embeddings"), 0);
        f.llm.n_providers = 1;
        AjGatewayVerdict v;
        cr_expect_eq(admitted(&f, &openai, "POST", "/v1/embeddings", &v), 0, "opened");
        expect_refused(&f, &openai, "/v1/embeddings", "{\"model\":\"e\",\"input\":\"x\"}", 403,
                       "not a metered API, refused under the run's caps");
        teardown(&f);
}

/* Under a tool cap alone, too: a batch's answers (tool calls included) come back in a file
 * the gateway never reads, a background response's by a later GET. */
Test(supervisor_llm, unreadable_model_work_refused_under_a_tool_cap)
{
        Fixture f;
        setup(&f, "tool_calls=5");
        AjGatewayCall call;
        AjGatewayVerdict v;
        expect_refused(&f, &anthropic, "/v1/messages/batches", "{\"requests\":[]}", 403, NULL);
        expect_refused(&f, &openai, "/v1/responses", "{\"model\":\"claude-test\",\"input\":\"hi\",\"background\":true}",
                       403, "background");
        /* xAI's deferred completion: answered at once with a request_id and no usage, the output
         * fetched by GET /v1/chat/deferred-completion/ID (its tool calls, its usage unread). */
        expect_refused(&f, &openai, "/v1/chat/completions",
                       "{\"model\":\"claude-test\",\"messages\":[],\"max_tokens\":500,\"deferred\":true}", 403,
                       "deferred");
        expect_refused(&f, &openai, "/v1/chat/completions",
                       "{\"model\":\"claude-test\",\"messages\":[],\"max_tokens\":500,\"Deferred\":true}", 400,
                       "Deferred");
        /* Perplexity's async API: the request wrapped in "request", its answer fetched by GET. */
        expect_refused(&f, &openai, "/async/chat/completions",
                       "{\"model\":\"claude-test\",\"max_tokens\":1,\"request\":{\"model\":\"claude-test\","
                       "\"messages\":[]}}",
                       403, "async");
        request(&f, &call, &openai, "/v1/responses/resp_1", "", &v);
        cr_expect_eq(v.status, 0, "reads are relayed");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_COMPLETED, 0);
        cr_expect_eq(json_array_size(breaches), 0, "refusals, not breaches");
        teardown(&f);
}

/* Without a cap a background response (or an xAI deferred completion) is relayed; its output is
 * never seen, so it is charged its worst case, not the nothing its "queued" answer reports. */
Test(supervisor_llm, background_response_without_caps_is_charged_its_worst_case)
{
        Fixture f;
        setup(&f, NULL);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/responses",
                "{\"model\":\"claude-test\",\"input\":\"hi\",\"max_output_tokens\":500,\"background\":true}", &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        respond(&f, &call, "application/json",
                "{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"claude-test\",\"status\":\"queued\","
                "\"output\":[],\"usage\":null}",
                AJ_GATEWAY_COMPLETED);
        cr_expect_geq(aj_meter_used(f.meter, AJ_CAP_OUTPUT_TOKENS, 0), 500, "max_output_tokens charged");
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.response"), "charged")), "worst_case");
        teardown(&f);
        setup(&f, NULL);
        request(&f, &call, &openai, "/v1/chat/completions",
                "{\"model\":\"claude-test\",\"messages\":[],\"max_tokens\":500,\"deferred\":true}", &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        free(v.body);
        respond(&f, &call, "application/json", "{\"request_id\":\"f15c114e-f47d-40ca-8d5c-8c23d656eeb6\"}",
                AJ_GATEWAY_COMPLETED);
        cr_expect_geq(aj_meter_used(f.meter, AJ_CAP_OUTPUT_TOKENS, 0), 500, "max_tokens charged");
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.response"), "charged")), "worst_case");
        teardown(&f);
}

/* A 2xx answer to a model call that holds no answer and no usage is an acknowledgment: the
 * work runs later and its answer is fetched by GET, unmetered (Perplexity's async API at
 * /async/chat/completions; an xAI deferred completion; whatever member asked for it). It was
 * charged the prompt estimate and the few bytes it held; it is charged its worst case, as a
 * background response is, under a cap or not. An answer without usage (a server that reports
 * none) is still charged what it shows. */
Test(supervisor_llm, acknowledged_call_charged_its_worst_case)
{
        for (int capped = 0; capped < 2; capped++) {
                Fixture f;
                setup(&f, capped ? "tokens=100000" : NULL);
                answered(&f, &openai, "/async/chat/completions", "{\"model\":\"claude-test\",\"messages\":[]}",
                         "{\"id\":\"a1\",\"model\":\"claude-test\",\"status\":\"CREATED\",\"response\":null}");
                cr_expect_geq(aj_meter_used(f.meter, AJ_CAP_OUTPUT_TOKENS, 0), 32000, "capped %d: %llu", capped,
                              (unsigned long long)aj_meter_used(f.meter, AJ_CAP_OUTPUT_TOKENS, 0));
                cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.response"), "charged")),
                                 "worst_case");
                teardown(&f);
        }
        Fixture f;
        setup(&f, NULL);
        answered(&f, &openai, "/v1/chat/completions", "{\"model\":\"claude-test\",\"messages\":[]}",
                 "{\"id\":\"c\",\"model\":\"claude-test\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":\"hello\"},\"finish_reason\":\"stop\"}]}");
        cr_expect_lt(aj_meter_used(f.meter, AJ_CAP_OUTPUT_TOKENS, 0), 100, "an answer without usage: what it shows");
        cr_expect_null(json_object_get(last_event("llm.response"), "charged"));
        teardown(&f);
}

/* Each answer a request asks for may be as long as its limit: all are reserved. */
Test(supervisor_llm, every_answer_asked_for_is_reserved)
{
        Fixture f;
        setup(&f, "tokens=400");
        AjGatewayCall call;
        AjGatewayVerdict v;
        const char *one = "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[]}";
        request(&f, &call, &openai, "/v1/chat/completions", one, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
        const char *fifty = "{\"model\":\"claude-test\",\"n\":50,\"max_tokens\":10,\"messages\":[]}";
        request(&f, &call, &openai, "/v1/chat/completions", fifty, &v);
        cr_expect_eq(v.status, 429, "50 answers of 10 tokens do not fit 400 tokens");
        json_t *rq = last_event("llm.request");
        cr_expect_str_eq(json_string_value(json_object_get(rq, "verdict")), "breach");
        const char *why = json_string_value(json_object_get(rq, "reason")) ?: "(none)";
        cr_expect(strstr(why, "would be 5"), "%s", why);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
}

/* The models of the output-limit tests, by their maximum output: gpt-016k's is below the
 * reserve of a request without a limit (AJ_SUP_LLM_DEFAULT_MAX_OUTPUT), gpt-128k's above it,
 * gpt-none's not known; names of one length, so that their requests' prompt estimates match. */
static void set_output_maxima(Fixture *f)
{
        const char *t = "{\"date\": \"2026-12-04\", \"models\": {"
                        "\"gpt-016k\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": 16384},"
                        "\"gpt-128k\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": 128000},"
                        "\"gpt-none\": {\"input\": 1, \"output\": 2},"
                        "\"claude-128k\": {\"input\": 1, \"output\": 2, \"max_output_tokens\": 128000}}}";
        AjPriceTable *pt = NULL;
        AjError err = {};
        cr_assert_eq(aj_price_table_parse(t, strlen(t), "test", &pt, &err), 0, "%s", aj_error_text(&err, 0));
        aj_meter_set_price_table(f->meter, pt);
}

/* One call: the body forwarded (the client's when the gateway wrote none; json_decref() it)
 * and the tokens its llm.request reserved. */
static json_t *forwarded(Fixture *f, const AjGatewayProvider *pr, const char *path, const char *body,
                         json_int_t *ret_reserved)
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, pr, path, body, &v);
        cr_assert_eq(v.status, 0, "%s: %s", body, v.message);
        json_t *sent = v.body ? json_loadb(v.body, v.body_len, JSON_REJECT_DUPLICATES, NULL)
                              : json_loads(body, 0, NULL);
        cr_assert(json_is_object(sent), "%s: the body sent is one JSON object", body);
        json_t *client = json_loads(body, 0, NULL);
        cr_expect(json_equal(json_object_get(sent, "model"), json_object_get(client, "model")), "%s", body);
        json_decref(client);
        *ret_reserved = json_integer_value(
                json_object_get(json_object_get(last_event("llm.request"), "reserved"), "tokens"));
        free(v.body);
        f->obs.on_done(f->obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
        return sent;
}

/* A request without an output limit may be answered with up to the model's own maximum (a
 * reasoning model's 128,000 tokens), past the reserve of AJ_SUP_LLM_DEFAULT_MAX_OUTPUT. Under
 * a tokens or cost cap: a model whose maximum is known and no more than the reserve is
 * reserved that maximum, the request left alone; one whose maximum is above it has the reserve
 * set in the request (Chat's max_completion_tokens, Responses' max_output_tokens), and its
 * llm.request says so; an unknown model's request is forwarded as it is, reserved as before. A
 * dated snapshot is its base name's. A limit the request sets, a Messages request (Anthropic
 * requires max_tokens) and a run without such a cap are left alone. */
Test(supervisor_llm, the_output_limit_is_bounded_by_the_model_maximum)
{
        static const char *const caps[] = { "tokens=100000000", "cost_usd=1000" };
        for (size_t c = 0; c < ARRAY_SIZE(caps); c++) {
                Fixture f;
                setup(&f, caps[c]);
                set_output_maxima(&f);
                json_int_t unknown, small, large;
                json_t *sent = forwarded(&f, &openai, "/v1/chat/completions",
                                         "{\"model\":\"gpt-none\",\"messages\":[]}", &unknown);
                cr_expect_null(json_object_get(sent, "max_completion_tokens"), "%s: unknown maximum: left alone",
                               caps[c]);
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);

                sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-016k\",\"messages\":[]}",
                                 &small);
                cr_expect_null(json_object_get(sent, "max_completion_tokens"), "%s: a maximum below the reserve",
                               caps[c]);
                cr_expect_eq(unknown - small, AJ_SUP_LLM_DEFAULT_MAX_OUTPUT - 16384, "%s: reserved its maximum",
                             caps[c]);
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);

                static const struct {
                        const char *path, *body, *field;
                } above[] = {
                        { "/v1/chat/completions", "{\"model\":\"gpt-128k\",\"messages\":[]}", "max_completion_tokens" },
                        { "/v1/chat/completions", "{\"model\":\"gpt-128k-2026-01-01\",\"messages\":[]}",
                          "max_completion_tokens" },
                        { "/v1/chat/completions",
                          "{\"model\":\"gpt-128k\",\"stream\":true,\"max_tokens\":null,\"messages\":[]}",
                          "max_completion_tokens" },
                        { "/v1/responses", "{\"model\":\"gpt-128k\",\"input\":\"hi\"}", "max_output_tokens" },
                        { "/v1/responses", "{\"model\":\"gpt-128k\",\"max_output_tokens\":null,\"input\":\"hi\"}",
                          "max_output_tokens" },
                };
                for (size_t i = 0; i < ARRAY_SIZE(above); i++) {
                        sent = forwarded(&f, &openai, above[i].path, above[i].body, &large);
                        cr_expect_eq(json_integer_value(json_object_get(sent, above[i].field)),
                                     AJ_SUP_LLM_DEFAULT_MAX_OUTPUT, "%s: %s: %s set", caps[c], above[i].body,
                                     above[i].field);
                        json_t *said = json_object_get(last_event("llm.request"), "output_limit_set");
                        cr_expect_str_eq(json_string_value(json_object_get(said, "field")) ?: "", above[i].field);
                        cr_expect_eq(json_integer_value(json_object_get(said, "tokens")),
                                     AJ_SUP_LLM_DEFAULT_MAX_OUTPUT);
                        json_decref(sent);
                }
                sent = forwarded(&f, &openai, "/v1/chat/completions",
                                 "{\"model\":\"gpt-128k\",\"stream\":true,\"messages\":[]}", &large);
                cr_expect(json_is_true(json_object_get(json_object_get(sent, "stream_options"), "include_usage")),
                          "the usage chunk still asked for");
                cr_expect_eq(json_integer_value(json_object_get(sent, "max_completion_tokens")),
                             AJ_SUP_LLM_DEFAULT_MAX_OUTPUT);
                json_decref(sent);

                /* Left alone: the request's own limit, Messages. */
                sent = forwarded(&f, &openai, "/v1/chat/completions",
                                 "{\"model\":\"gpt-128k\",\"max_tokens\":100,\"messages\":[]}", &large);
                cr_expect_null(json_object_get(sent, "max_completion_tokens"));
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);
                sent = forwarded(&f, &anthropic, "/v1/messages", "{\"model\":\"claude-128k\",\"messages\":[]}", &large);
                cr_expect_null(json_object_get(sent, "max_tokens"), "Messages: nothing set");
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);
                teardown(&f);
        }
        Fixture f;
        setup(&f, "tool_calls=100");
        set_output_maxima(&f);
        json_int_t reserved;
        json_t *sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-128k\",\"messages\":[]}",
                                 &reserved);
        cr_expect_null(json_object_get(sent, "max_completion_tokens"), "no tokens or cost cap: left alone");
        json_decref(sent);
        teardown(&f);
}

/* A maximum the profile claims (its entry, or "*" for every model without one) may be wrong:
 * reserved without being sent, a model writing more would pass the cap. It is set in the
 * request, so that the provider stops at what was reserved, and the llm.request says so; a
 * claim above the reserve sets the reserve. The shipped table's maximum is not set. */
Test(supervisor_llm, a_claimed_maximum_is_set_in_the_request)
{
        static const char *const caps[] = { "tokens=100000000", "cost_usd=1000" };
        for (size_t c = 0; c < ARRAY_SIZE(caps); c++) {
                Fixture f;
                setup(&f, caps[c]);
                set_output_maxima(&f);
                json_int_t unknown, claimed;
                json_t *sent = forwarded(&f, &openai, "/v1/chat/completions",
                                         "{\"model\":\"gpt-none\",\"messages\":[]}", &unknown);
                json_decref(sent);
                cr_assert_eq(aj_meter_set_price(f.meter, "*", 1e-6, 1e-6, -1), 0);
                cr_assert_eq(aj_meter_set_price_max_output(f.meter, "*", 8000), 0);
                cr_assert_eq(aj_meter_set_price(f.meter, "gpt-016k", 1e-6, 1e-6, -1), 0);
                static const struct {
                        const char *path, *body, *field;
                        json_int_t tokens;
                } cases[] = {
                        { "/v1/chat/completions", "{\"model\":\"gpt-any\",\"messages\":[]}", "max_completion_tokens",
                          8000 },
                        { "/v1/chat/completions", "{\"model\":\"gpt-none\",\"messages\":[]}", "max_completion_tokens",
                          8000 },
                        { "/v1/responses", "{\"model\":\"gpt-any\",\"input\":\"hi\"}", "max_output_tokens", 8000 },
                };
                for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                        sent = forwarded(&f, &openai, cases[i].path, cases[i].body, &claimed);
                        cr_expect_eq(json_integer_value(json_object_get(sent, cases[i].field)), cases[i].tokens,
                                     "%s: %s: \"*\"'s maximum set", caps[c], cases[i].body);
                        json_t *said = json_object_get(last_event("llm.request"), "output_limit_set");
                        cr_expect_str_eq(json_string_value(json_object_get(said, "field")) ?: "", cases[i].field);
                        cr_expect_eq(json_integer_value(json_object_get(said, "tokens")), cases[i].tokens);
                        json_decref(sent);
                }
                sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-none\",\"messages\":[]}",
                                 &claimed);
                cr_expect_eq(unknown - claimed, AJ_SUP_LLM_DEFAULT_MAX_OUTPUT - 8000, "%s: reserved as set", caps[c]);
                json_decref(sent);

                /* The shipped table's maximum: the provider's own, not set. */
                sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-016k\",\"messages\":[]}",
                                 &claimed);
                cr_expect_null(json_object_get(sent, "max_completion_tokens"), "%s: the table's maximum", caps[c]);
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);

                /* The profile's own entry, below the table's, and one above the reserve. */
                cr_assert_eq(aj_meter_set_price_max_output(f.meter, "gpt-016k", 4096), 0);
                sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-016k\",\"messages\":[]}",
                                 &claimed);
                cr_expect_eq(json_integer_value(json_object_get(sent, "max_completion_tokens")), 4096,
                             "%s: the profile's own maximum set", caps[c]);
                cr_expect_eq(unknown - claimed, AJ_SUP_LLM_DEFAULT_MAX_OUTPUT - 4096, "%s", caps[c]);
                json_decref(sent);
                cr_assert_eq(aj_meter_set_price_max_output(f.meter, "*", 64000), 0);
                sent = forwarded(&f, &openai, "/v1/chat/completions", "{\"model\":\"gpt-none\",\"messages\":[]}",
                                 &claimed);
                cr_expect_eq(json_integer_value(json_object_get(sent, "max_completion_tokens")),
                             AJ_SUP_LLM_DEFAULT_MAX_OUTPUT, "%s: the reserve set", caps[c]);
                cr_expect_eq(claimed, unknown);
                json_decref(sent);

                /* The request's own limit is left alone. */
                sent = forwarded(&f, &openai, "/v1/chat/completions",
                                 "{\"model\":\"gpt-none\",\"max_tokens\":100,\"messages\":[]}", &claimed);
                cr_expect_null(json_object_get(sent, "max_completion_tokens"));
                cr_expect_null(json_object_get(last_event("llm.request"), "output_limit_set"));
                json_decref(sent);
                teardown(&f);
        }
}

/* A Chat request's prediction (Predicted Outputs) is reserved as output too: the tokens of it
 * the model rejects are billed as output, past the output limit, and were reserved only as
 * the prompt's (10,000 tokens of prediction with max_tokens 10 fitted a cap of 15,000). */
Test(supervisor_llm, a_prediction_is_reserved_as_output)
{
        Fixture f;
        setup(&f, "tokens=15000");
        static char body[40000];
        char text[30001];
        memset(text, 'a', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        snprintf(body, sizeof(body),
                 "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[],\"prediction\":{\"type\":\"content\","
                 "\"content\":\"%s\"}}",
                 text);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions", body, &v);
        cr_expect_eq(v.status, 429, "%s", v.message);
        free(v.body);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        /* Without it, the same request fits. */
        snprintf(body, sizeof(body),
                 "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"%s\"}]}",
                 text);
        request(&f, &call, &openai, "/v1/chat/completions", body, &v);
        cr_expect_eq(v.status, 0, "%s", v.message);
        free(v.body);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
        teardown(&f);
}

/* A Responses request continuing a stored response (previous_response_id) is billed that
 * response's input and output again as input, which its body does not show: reserved as the
 * run saw them; one the run did not see, and a conversation, refused under a token or cost
 * cap (they were reserved as the few bytes of their new input). */
Test(supervisor_llm, input_the_provider_holds_is_reserved)
{
        for (int capped = 0; capped < 2; capped++) {
                Fixture f;
                setup(&f, capped ? "tokens=100000" : "tool_calls=100");
                AjGatewayCall call;
                AjGatewayVerdict v;
                static const char *const unseen[] = {
                        "{\"model\":\"claude-test\",\"input\":\"hi\",\"previous_response_id\":\"resp_other\"}",
                        "{\"model\":\"claude-test\",\"input\":\"hi\",\"conversation\":\"conv_1\"}",
                        "{\"model\":\"claude-test\",\"input\":\"hi\",\"previous_response_id\":7}",
                };
                for (size_t i = 0; i < ARRAY_SIZE(unseen); i++) {
                        request(&f, &call, &openai, "/v1/responses", unseen[i], &v);
                        cr_expect_eq(v.status, capped ? 403 : 0, "%s: %s", unseen[i], v.message);
                        free(v.body);
                        f.obs.on_done(f.obs.userdata, &call, capped ? AJ_GATEWAY_REFUSED : AJ_GATEWAY_FAILED, 0);
                }
                answered(&f, &openai, "/v1/responses",
                         "{\"model\":\"claude-test\",\"input\":\"hi\",\"max_output_tokens\":10}",
                         "{\"id\":\"resp_1\",\"model\":\"claude-test\",\"status\":\"completed\",\"output\":[],"
                         "\"usage\":{\"input_tokens\":50000,\"output_tokens\":10}}");
                /* 50,010 used, and 50,010 held for resp_1 besides the new input: past 100,000. */
                request(&f, &call, &openai, "/v1/responses",
                        "{\"model\":\"claude-test\",\"input\":\"more\",\"max_output_tokens\":10,"
                        "\"previous_response_id\":\"resp_1\"}",
                        &v);
                cr_expect_eq(v.status, capped ? 429 : 0, "%s", v.message);
                json_t *rq = last_event("llm.request");
                const char *why = json_string_value(json_object_get(rq, "reason")) ?: "";
                cr_expect(!capped || strstr(why, "would be 10"), "%s", why);
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, capped ? AJ_GATEWAY_REFUSED : AJ_GATEWAY_FAILED, 0);
                teardown(&f);
        }
}

/* A reply asking for get_weather `n` times, with the arguments `input` (a JSON object). */
static char *tool_reply(int n, const char *input)
{
        char *body = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&body, &size);
        fputs("{\"id\":\"m\",\"type\":\"message\",\"model\":\"claude-test\",\"content\":[", f);
        for (int i = 0; i < n; i++)
                fprintf(f, "%s{\"type\":\"tool_use\",\"id\":\"t%d\",\"name\":\"get_weather\",\"input\":%s}",
                        i ? "," : "", i, input);
        fputs("],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}", f);
        fclose(f);
        return body;
}

static void model_call(Fixture *f, int n, const char *input)
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        char *body = tool_reply(n, input);
        respond(f, &call, "application/json", body, AJ_GATEWAY_COMPLETED);
        free(body);
}

static const char *breach_cap(size_t i)
{
        return json_string_value(json_object_get(json_array_get(breaches, i), "cap"));
}

Test(supervisor_llm, model_repeating_a_tool_call_breaches_repeat_limit)
{
        Fixture f;
        setup(&f, "repeat_limit=3");
        /* The same call in one response, four times: the fourth is past the limit. */
        model_call(&f, 3, "{\"city\":\"Paris\"}");
        cr_expect_eq(json_array_size(breaches), 0, "three in a row are allowed");
        model_call(&f, 1, "{ \"city\" : \"Paris\" }");
        cr_assert_eq(json_array_size(breaches), 1, "the same arguments, however written, are a repeat");
        cr_expect_str_eq(breach_cap(0), "repeat_limit");
        cr_expect_eq(json_real_value(json_object_get(json_array_get(breaches, 0), "value")), 4);
        teardown(&f);

        /* Other arguments are another call: no repeat. */
        setup(&f, "repeat_limit=3");
        for (int i = 0; i < 4; i++) {
                char input[64];
                snprintf(input, sizeof(input), "{\"city\":\"Paris\",\"day\":%d}", i);
                model_call(&f, 1, input);
        }
        cr_expect_eq(json_array_size(breaches), 0);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 4);
        teardown(&f);
}

Test(supervisor_llm, model_and_broker_calls_share_the_repeat_key)
{
        Fixture f;
        setup(&f, "repeat_limit=2");
        model_call(&f, 2, "{\"city\":\"Paris\"}");
        cr_expect_eq(json_array_size(breaches), 0);
        /* The broker's key for the same call: the name and the canonical arguments' digest. */
        json_t *args = json_pack("{s:s}", "city", "Paris");
        char digest[AJ_SHA256_HEX_SIZE];
        cr_assert_eq(aj_meter_args_digest(args, digest), 0);
        json_decref(args);
        AjMeterReservation res;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tool(f.meter, "get_weather", digest, 2, &res, &d), 0);
        cr_expect_eq(d.verdict, AJ_VERDICT_BREACH, "the third identical call, through the broker");
        cr_expect_eq(d.cap, AJ_CAP_REPEAT_LIMIT);
        teardown(&f);
}

/* ---- one call seen by the gateway and by the broker (a hook), by its id ---- */

/* The broker's side of a call: a hook's `tool` request with the model's call id. */
static AjVerdict hook_call(Fixture *f, const char *name, const char *command, const char *id, AjMeterDecision *ret)
{
        json_t *args = json_pack("{s:s}", "command", command);
        char digest[AJ_SHA256_HEX_SIZE];
        cr_assert_eq(aj_meter_args_digest(args, digest), 0);
        json_decref(args);
        AjMeterReservation res;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tool_call(f->meter, name, digest, id, AJ_METER_BY_BROKER, 2, &res, &d), 0);
        aj_meter_settle(f->meter, &res, true);
        if (ret)
                *ret = d;
        return d.verdict;
}

/* One streamed tool call (Bash {"cmd": ...}) with id `id`, in three parts: up to its
 * content_block_stop (excluded), the stop, then the message's end. */
static void stream_parts(const char *id, const char *cmd, char **a, char **b, char **c)
{
        cr_assert(asprintf(a,
                           "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
                           "\"claude-test\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"
                           "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                           "\"content_block\":{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":\"Bash\",\"input\":{}}}\n\n"
                           "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                           "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"cmd\\\":\\\"%s\\\"}\"}}\n\n",
                           id, cmd) > 0);
        *b = strdup("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
        *c = strdup("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},"
                    "\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

#define STREAM_MSG                                                                                                   \
        "{\"model\":\"claude-test\",\"max_tokens\":10,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":" \
        "\"hi\"}]}"

/* A streamed response asking for one call; `between` runs after the call is whole and
 * forwarded, before the message ends (where Claude Code or Codex may run it). */
static void stream_call(Fixture *f, const char *id, const char *cmd, void (*between)(Fixture *, const char *))
{
        AjGatewayCall call;
        AjGatewayVerdict v;
        char *a, *b, *c;
        request(f, &call, &anthropic, "/v1/messages", STREAM_MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        stream_parts(id, cmd, &a, &b, &c);
        AjGwHeader h = { .name = "content-type", .name_len = 12, .value = "text/event-stream", .value_len = 17 };
        f->obs.on_response_head(f->obs.userdata, &call, 200, &h, 1);
        uint64_t before = aj_meter_used(f->meter, AJ_CAP_TOOL_CALLS, 0);
        cr_expect_eq(f->obs.on_response_bytes(f->obs.userdata, &call, a, strlen(a)), AJ_GATEWAY_CONTINUE);
        cr_expect_eq(aj_meter_used(f->meter, AJ_CAP_TOOL_CALLS, 0), before, "not whole yet: not counted");
        (void)f->obs.on_response_bytes(f->obs.userdata, &call, b, strlen(b));
        if (between)
                between(f, id);
        (void)f->obs.on_response_bytes(f->obs.userdata, &call, c, strlen(c));
        f->obs.on_done(f->obs.userdata, &call, AJ_GATEWAY_COMPLETED, 1000);
        free(a);
        free(b);
        free(c);
}

static void hook_between(Fixture *f, const char *id)
{
        AjMeterDecision d;
        uint64_t before = aj_meter_used(f->meter, AJ_CAP_TOOL_CALLS, 0);
        cr_expect_eq(hook_call(f, "claude.Bash", "ls", id, &d), AJ_VERDICT_ALLOW);
        cr_expect_str_eq(d.counted_by ?: "(null)", "gateway", "the gateway counted it when it was whole: %s", id);
        cr_expect_eq(aj_meter_used(f->meter, AJ_CAP_TOOL_CALLS, 0), before);
}

/* A streamed call is counted when it is whole, before its end is forwarded: the hook that
 * runs it mid-stream finds it counted; the response's end does not count it again. */
Test(supervisor_llm, streamed_call_counted_when_whole_and_once_with_the_hook)
{
        Fixture f;
        setup(&f, "tool_calls=10");
        stream_call(&f, "toolu_1", "ls", hook_between);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        stream_call(&f, "toolu_2", "pwd", NULL);
        cr_expect_eq(hook_call(&f, "claude.Bash", "pwd", "toolu_2", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 2);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS_PER_MIN, 2), 2);
        /* A hook call the gateway never saw (an unknown id) counts. */
        cr_expect_eq(hook_call(&f, "claude.Bash", "pwd", "toolu_other", NULL), AJ_VERDICT_ALLOW);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 3);
        teardown(&f);
}

/* The other order (the broker first): the gateway recognises the id and does not count it. */
Test(supervisor_llm, broker_counted_first_is_not_counted_again_by_the_gateway)
{
        Fixture f;
        setup(&f, "tool_calls=10");
        cr_expect_eq(hook_call(&f, "claude.Bash", "ls", "toolu_9", NULL), AJ_VERDICT_ALLOW);
        stream_call(&f, "toolu_9", "ls", NULL);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        stream_call(&f, "toolu_9", "ls", NULL);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 2, "the id was claimed once");
        teardown(&f);
}

/* repeat_limit with the hooks on: the gateway's key and the hook's key differ, yet the
 * streak grows once per call and the third identical call is a breach. */
Test(supervisor_llm, repeat_limit_trips_with_the_hooks_on)
{
        Fixture f;
        setup(&f, "repeat_limit=2");
        for (int i = 1; i <= 2; i++) {
                char id[16];
                snprintf(id, sizeof(id), "toolu_%d", i);
                stream_call(&f, id, "echo same", hook_between);
                cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_REPEAT_LIMIT, 0), (uint64_t)i);
        }
        cr_expect_eq(json_array_size(breaches), 0);
        stream_call(&f, "toolu_3", "echo same", NULL);
        cr_assert_eq(json_array_size(breaches), 1, "the third identical call");
        cr_expect_str_eq(breach_cap(0), "repeat_limit");
        /* Not counted by the gateway: the hook's request for it is judged anew (and counted). */
        AjMeterDecision d;
        (void)hook_call(&f, "claude.Bash", "echo same", "toolu_3", &d);
        cr_expect_null(d.counted_by);
        teardown(&f);
}

/* ---- "record": "full" ---------------------------------------------------------------- */

static char record_dir[64];

static void setup_record(Fixture *f, uint64_t record_bytes, const char *key)
{
        setup(f, NULL);
        snprintf(record_dir, sizeof(record_dir), "/tmp/aj-llm-record-XXXXXX");
        cr_assert_not_null(mkdtemp(record_dir));
        f->llm.run_dir = record_dir;
        f->llm.record_responses = f->llm.record_requests = true;
        f->llm.record_bytes = record_bytes;
        f->llm.n_providers = 1;
        f->llm.keys[0] = strdup(key);
}

static size_t count_files(void)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "ls %s/llm 2>/dev/null | wc -l", record_dir);
        FILE *p = popen(cmd, "r");
        size_t n = 0;
        cr_assert(p && fscanf(p, "%zu", &n) == 1);
        pclose(p);
        return n;
}

static char *slurp(const char *name)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/llm/%s", record_dir, name);
        FILE *fp = fopen(path, "r");
        if (!fp)
                return NULL;
        char *buf = calloc(1, 1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, fp);
        buf[n] = 0;
        fclose(fp);
        return buf;
}

static void remove_record_dir(void)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", record_dir);
        cr_assert_eq(system(cmd), 0);
}

Test(supervisor_llm, record_files_are_bounded_and_the_cut_is_said_once)
{
        Fixture f;
        /* Room for a few files: refused and answered calls alike cost a file each. */
        setup_record(&f, 8 * AJ_SUP_LLM_RECORD_FILE_COST, "sk-secret-key");
        for (uint64_t i = 1; i <= 200; i++) {
                AjGatewayCall call;
                AjGatewayVerdict v;
                request(&f, &call, &anthropic, "/v1/messages", "not json", &v);
                call.id = i;
                cr_expect_eq(v.status, 400);
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        }
        size_t files = count_files();
        cr_expect_gt(files, 0, "the first calls are kept");
        cr_expect_leq(files, 8, "200 refused calls made %zu files under a cap worth 8", files);
        cr_expect_leq(f.llm.recorded, f.llm.record_bytes);
        size_t cuts = 0, i;
        json_t *e;
        json_array_foreach (events, i, e)
                cuts += strcmp(json_string_value(json_object_get(e, "type")), "llm.record_cut") == 0;
        cr_expect_eq(cuts, 1, "llm.record_cut once, not per call");
        cr_expect_eq(f.llm.held, 0, "nothing held once the calls ended");
        remove_record_dir();
        teardown(&f);
}

Test(supervisor_llm, record_redacts_a_key_cut_by_the_limit_whole)
{
        Fixture f;
        static const char key[] = "sk-0123456789abcdefghij";
        /* The request body is cut in the middle of the key: no prefix of it may be written. */
        setup_record(&f, 2 * AJ_SUP_LLM_RECORD_FILE_COST + 600, key);
        char body[2048];
        int n = snprintf(body, sizeof(body), "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[],\"x\":\"");
        memset(body + n, 'a', 590 - (size_t)n);
        snprintf(body + 590, sizeof(body) - 590, "%s\"}", key);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", body, &v);
        cr_assert_eq(v.status, 0);
        cr_expect_leq(f.llm.held, f.llm.record_bytes, "held within the cap");
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        _cleanup_free_ char *req = slurp("1.request.json");
        cr_assert_not_null(req);
        cr_expect_null(strstr(req, "sk-0123"), "no part of the key: %s", req + 580);
        cr_expect_not_null(strstr(req, "cut at llm.record_bytes"), "the cut is said");
        cr_expect_eq(f.llm.held, 0);
        remove_record_dir();
        teardown(&f);
}

Test(supervisor_llm, record_redacts_every_key_occurrence)
{
        Fixture f;
        setup_record(&f, 1 << 20, "KEY123");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages",
                "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[],\"a\":\"KEY123KEY123 xKEY12 KEY123\"}",
                &v);
        cr_assert_eq(v.status, 0);
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        _cleanup_free_ char *req = slurp("1.request.json");
        cr_assert_not_null(req);
        cr_expect_not_null(strstr(req, "\"[REDACTED][REDACTED] xKEY12 [REDACTED]\""), "%s", req);
        remove_record_dir();
        teardown(&f);
}

/* "digest" (the default): the response body, which a replay answers with, and not the
 * request's; nothing held once the call is over. */
Test(supervisor_llm, record_digest_keeps_the_response_not_the_request)
{
        Fixture f;
        setup_record(&f, 1 << 20, "KEY123");
        f.llm.record_requests = false;
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[]}",
                &v);
        cr_assert_eq(v.status, 0);
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        _cleanup_free_ char *resp = slurp("1.response");
        cr_assert_not_null(resp, "the response body is kept");
        cr_expect_str_eq(resp, REPLY);
        _cleanup_free_ char *req = slurp("1.request.json");
        cr_expect_null(req, "the request body is not");
        cr_expect_eq(count_files(), 1);
        cr_expect_eq(f.llm.held, 0);
        remove_record_dir();
        teardown(&f);
}

/* "off": digests only, no file at all. */
Test(supervisor_llm, record_off_keeps_no_body)
{
        Fixture f;
        setup_record(&f, 1 << 20, "KEY123");
        f.llm.record_requests = f.llm.record_responses = false;
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", "{\"model\":\"claude-test\",\"max_tokens\":1,\"messages\":[]}",
                &v);
        cr_assert_eq(v.status, 0);
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        cr_expect_eq(count_files(), 0);
        remove_record_dir();
        teardown(&f);
}

/* ---- the gate's backstop (run --hooks) ---- */

/* A request handing back one tool result (Anthropic tool_result), answered or refused. */
static unsigned result_request(Fixture *f, const char *id, bool error)
{
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":"
                 "[{\"type\":\"tool_result\",\"tool_use_id\":\"%s\",\"is_error\":%s,\"content\":\"out\"}]}]}",
                 id, error ? "true" : "false");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(f, &call, &anthropic, "/v1/messages", body, &v);
        unsigned status = v.status;
        free(v.body);
        if (status)
                f->obs.on_done(f->obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        else
                respond(f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        return status;
}

static size_t count_events(const char *type)
{
        size_t n = 0, i;
        json_t *e;
        json_array_foreach (events, i, e)
                n += strcmp(json_string_value(json_object_get(e, "type")), type) == 0;
        return n;
}

Test(supervisor_llm, a_tool_result_the_gate_never_judged_stops_the_run)
{
        Fixture f;
        setup(&f, NULL);
        f.llm.gate_tools = true;
        /* Asked by the model, judged by the broker (the hook ran): goes on. */
        stream_call(&f, "toolu_a", "ls", NULL);
        aj_meter_note_judged(f.meter, "toolu_a");
        cr_expect_eq(result_request(&f, "toolu_a", false), 0);
        cr_expect_eq(count_events("tool.ungated"), 0);
        /* Asked by the model, never judged, and it ran: refused, a breach, recorded. */
        stream_call(&f, "toolu_b", "ls", NULL);
        cr_expect_eq(result_request(&f, "toolu_b", false), 403);
        cr_assert_eq(json_array_size(breaches), 1);
        cr_expect_str_eq(breach_cap(0), "tool_gate");
        cr_expect_eq(count_events("tool.ungated"), 1);
        /* The same result in the next request (the conversation repeats it): said once. */
        cr_expect_eq(result_request(&f, "toolu_b", false), 0);
        cr_expect_eq(json_array_size(breaches), 1);
        /* Never judged, but it failed (a tool the agent could not even start): recorded only. */
        stream_call(&f, "toolu_c", "ls", NULL);
        cr_expect_eq(result_request(&f, "toolu_c", true), 0);
        cr_expect_eq(json_array_size(breaches), 1);
        cr_expect_eq(count_events("tool.ungated"), 2);
        /* An id the model never asked for through the gateway: nothing to say. */
        cr_expect_eq(result_request(&f, "toolu_zzz", false), 0);
        cr_expect_eq(count_events("tool.ungated"), 2);
        teardown(&f);

        /* Without --hooks nothing is expected of the broker. */
        setup(&f, NULL);
        stream_call(&f, "toolu_d", "ls", NULL);
        cr_expect_eq(result_request(&f, "toolu_d", false), 0);
        cr_expect_eq(json_array_size(breaches), 0);
        teardown(&f);
}

/* A response asking for more tool calls than the gateway keeps the names of: every one
 * still counts against the tool caps (found by the second attacker review: 200 calls under
 * tool_calls=150 counted 128 and breached nothing). */
Test(supervisor_llm, tool_calls_past_the_kept_ones_still_count)
{
        Fixture f;
        setup(&f, "tool_calls=150");
        model_call(&f, 200, "{\"city\":\"Paris\"}");
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 150, "counted up to the cap");
        cr_assert_eq(json_array_size(breaches), 1, "and the cap breached");
        cr_expect_str_eq(breach_cap(0), "tool_calls");
        teardown(&f);

        setup(&f, NULL);
        model_call(&f, 200, "{\"city\":\"Paris\"}");
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 200, "all 200 counted");
        teardown(&f);
}

/* Once the run is being killed no call is forwarded: the agent's pipelined calls are read from
 * the gateway's buffer after the kill (one went to the provider on a kept connection). */
Test(supervisor_llm, no_call_is_forwarded_for_a_run_being_killed)
{
        Fixture f;
        setup(&f, "tokens=1000");
        answered(&f, &anthropic, "/v1/messages", MSG, REPLY);
        aj_sup_llm_end(&f.llm);
        expect_refused(&f, &anthropic, "/v1/messages", MSG, 503, "being killed");
        cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.request"), "verdict")), "refused");
        teardown(&f);
}

/* A model's answer the gateway could not read (a tool input nested past its JSON depth bound,
 * as a model filling a deep schema writes it) may hold tool calls: one is counted per such
 * answer, so a loop of them still meets tool_calls (none was counted: 5 calls under a cap of 2
 * in integ-gateway). An error answer is not the model's work. */
Test(supervisor_llm, an_answer_the_gateway_cannot_read_counts_a_tool_call)
{
        Fixture f;
        setup(&f, "tool_calls=2");
        char reply[4096] = "{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"claude-test\",\"content\":[{\"type\":"
                           "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":";
        for (int i = 0; i < 130; i++)
                strcat(reply, "{\"a\":");
        strcat(reply, "1");
        for (int i = 0; i < 130; i++)
                strcat(reply, "}");
        strcat(reply, "}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}");
        answered(&f, &anthropic, "/v1/messages", MSG, reply);
        cr_expect_eq(aj_meter_used(f.meter, AJ_CAP_TOOL_CALLS, 0), 1, "the unread answer counts one call");
        cr_expect(json_is_true(json_object_get(last_event("llm.response"), "unread")), "and its event says so");
        answered(&f, &anthropic, "/v1/messages", MSG, reply);
        cr_expect_eq(json_array_size(breaches), 0);
        answered(&f, &anthropic, "/v1/messages", MSG, reply);
        cr_assert_eq(json_array_size(breaches), 1, "the third passes tool_calls=2");
        cr_expect_str_eq(breach_cap(0), "tool_calls");
        teardown(&f);
}

/* A call the broker judged stays judged however many other calls the broker judges after
 * it (an MCP relay's, say): the backstop does not fire on it later (second attacker
 * review: the separate ring of 1024 could be flushed). */
Test(supervisor_llm, a_judged_call_stays_judged)
{
        Fixture f;
        setup(&f, NULL);
        f.llm.gate_tools = true;
        stream_call(&f, "toolu_keep", "ls", NULL);
        aj_meter_note_judged(f.meter, "toolu_keep");
        for (int i = 0; i < 3000; i++) {
                char id[32];
                snprintf(id, sizeof(id), "mcp-other-%d", i);
                aj_meter_note_judged(f.meter, id);
        }
        cr_expect_eq(result_request(&f, "toolu_keep", false), 0);
        cr_expect_eq(json_array_size(breaches), 0);
        teardown(&f);
}

/* The model is the agent's to name, one a request: run.json's summary keeps a bounded number
 * of rows and adds up the rest (each call stays in the events). */
Test(supervisor_llm, the_summary_keeps_a_bounded_number_of_models)
{
        AjSupLlm l = {};
        AjMeterUsage u = { .input = 2, .output = 1 };
        const size_t n = AJ_SUP_LLM_SUMMARY_MODELS + 100;
        for (size_t i = 0; i < n; i++) {
                char model[32];
                snprintf(model, sizeof(model), "model-%zu", i);
                aj_sup_llm_account(&l, "openai", model, &u, 0);
        }
        aj_sup_llm_account(&l, "openai", "model-0", &u, 0);
        json_t *p = json_object_get(aj_sup_llm_summary(&l), "openai");
        cr_assert_not_null(p);
        cr_expect_eq(json_object_size(p), AJ_SUP_LLM_SUMMARY_MODELS + 1, "%zu rows", json_object_size(p));
        json_t *other = json_object_get(p, AJ_SUP_LLM_SUMMARY_OTHER);
        cr_assert_not_null(other, "the models past the bound are added up");
        cr_expect_eq(json_integer_value(json_object_get(other, "requests")), 100);
        cr_expect_eq(json_integer_value(json_object_get(other, "gen_ai.usage.input_tokens")), 200);
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(p, "model-0"), "requests")), 2,
                     "a model kept before the bound keeps its own row");
        aj_sup_llm_done(&l);
}

/* A call forwarded while the agent's share of the log had room ends after the share is
 * full (the agent filled it meanwhile): its response, tokens and cost, is still recorded;
 * a call refused for want of room is not forwarded, and its end is the agent's event. */
Test(supervisor_llm, response_of_a_forwarded_call_recorded_when_the_share_is_full)
{
        Fixture f;
        setup(&f, NULL);
        f.llm.hooks = &hooks_with_record;
        share_full = false;
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &anthropic, "/v1/messages", MSG, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        share_full = true;
        respond(&f, &call, "application/json", REPLY, AJ_GATEWAY_COMPLETED);
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs, "the forwarded call's response is in the chain");
        cr_expect_eq(json_integer_value(json_object_get(rs, "gen_ai.usage.output_tokens")), 7);
        cr_expect_not_null(json_object_get(rs, "cost_usd"));

        size_t before = json_array_size(events);
        AjGatewayCall refused;
        request(&f, &refused, &anthropic, "/v1/messages", MSG, &v);
        cr_expect_eq(v.status, 429, "no room for its llm.request: not forwarded");
        free(v.body);
        free(v.response);
        f.obs.on_done(f.obs.userdata, &refused, AJ_GATEWAY_COMPLETED, 1000);
        cr_expect_eq(json_array_size(events), before, "nothing of the refused call takes the reserve");
        share_full = false;
        teardown(&f);
}

/* Anthropic's 1M-token context (the beta "context-1m-2025-08-07", which the gateway relays
 * with the agent's other headers) bills every token of a call whose input passes 200K at its
 * long-context rate (twice the input price, 1.5 times the output), which no price holds: under
 * a cost cap each such call was charged half of what it cost, so the run spent up to twice its
 * cost_usd. Refused under a cost cap (403), in any letter case and among other betas, in any
 * of several headers; relayed under a token cap, which prices nothing, and without the beta. */
Test(supervisor_llm, long_context_beta_refused_under_a_cost_cap)
{
        static const char *const betas[] = { "context-1m-2025-08-07", "Context-1M-2025-08-07",
                                             "interleaved-thinking-2025-05-14, context-1m-2025-08-07" };
        static const AjGwHeader other = { "anthropic-beta", 14, "interleaved-thinking-2025-05-14", 31 };
        for (size_t i = 0; i < ARRAY_SIZE(betas); i++)
                for (int capped = 0; capped < 2; capped++) {
                        Fixture f;
                        setup(&f, capped ? "cost_usd=5" : "tokens=100000");
                        AjGwHeader h[2] = { other, { "Anthropic-Beta", 14, betas[i], strlen(betas[i]) } };
                        AjGatewayCall call = {
                                .id = 1, .provider = &anthropic, .method = "POST", .path = "/v1/messages"
                        };
                        AjGatewayVerdict v = {};
                        AjGatewayRequest req = { h, 2, MSG, strlen(MSG) };
                        f.obs.on_request(f.obs.userdata, &call, &req, &v);
                        cr_expect_eq(v.status, capped ? 403 : 0, "%s: %s", betas[i], v.message ?: "");
                        if (capped)
                                cr_expect(v.message && strstr(v.message, "context-1m") && strstr(v.message, "cost cap"),
                                          "%s", v.message ?: "");
                        free(v.body);
                        f.obs.on_done(f.obs.userdata, &call, capped ? AJ_GATEWAY_REFUSED : AJ_GATEWAY_FAILED, 0);
                        teardown(&f);
                }
        /* Without it, the same request goes under the cost cap. */
        Fixture f;
        setup(&f, "cost_usd=5");
        AjGatewayCall call = { .id = 1, .provider = &anthropic, .method = "POST", .path = "/v1/messages" };
        AjGatewayVerdict v = {};
        AjGatewayRequest req = { &other, 1, MSG, strlen(MSG) };
        f.obs.on_request(f.obs.userdata, &call, &req, &v);
        cr_expect_eq(v.status, 0, "%s", v.message ?: "");
        free(v.body);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
        teardown(&f);
}

/* A request member that lets the provider bill beyond tokens in a way the gateway cannot
 * meter (xAI's Live Search, a tool type or an OpenRouter plugin it does not know) was relayed
 * under a cost cap as if free. It is refused (403, naming it) under a cost cap, before the
 * provider sees it; a token cap alone does not price anything, so it is relayed there. */
Test(supervisor_llm, unmetered_billing_refused_under_a_cost_cap)
{
        static const char *const bodies[] = {
                "{\"model\":\"claude-test\",\"messages\":[],\"search_parameters\":{\"mode\":\"on\"}}",
                "{\"model\":\"claude-test\",\"messages\":[],\"tools\":[{\"type\":\"collections_search\"}]}",
                "{\"model\":\"claude-test\",\"messages\":[],\"plugins\":[{\"id\":\"moderation\"}]}",
                "{\"model\":\"claude-test\",\"messages\":[],\"service_tier\":\"priority\"}",
                /* Anthropic's US-only inference: 1.1 times the price, for its models since Opus 4.6. */
                "{\"model\":\"claude-test\",\"messages\":[],\"inference_geo\":\"us\"}",
                "{\"model\":\"claude-test\",\"messages\":[],\"inference_geo\":1}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
                Fixture f;
                setup(&f, "cost_usd=5");
                AjGatewayCall call;
                AjGatewayVerdict v;
                request(&f, &call, &openai, "/v1/chat/completions", bodies[i], &v);
                cr_expect_eq(v.status, 403, "%s", bodies[i]);
                cr_expect(strstr(v.message, "cannot meter") && strstr(v.message, "cost cap"), "%s", v.message);
                cr_expect_str_eq(json_string_value(json_object_get(last_event("llm.request"), "verdict")), "refused");
                cr_expect_eq(json_array_size(breaches), 0, "a refusal, not a breach");
                f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
                teardown(&f);
                setup(&f, "tokens=100000");
                request(&f, &call, &openai, "/v1/chat/completions", bodies[i], &v);
                cr_expect_eq(v.status, 0, "%s: %s", bodies[i], v.message);
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
                teardown(&f);
        }
}

/* OpenRouter's router models ("openrouter/auto") answer with a model they pick, priced at that
 * model's rate; priced by the router's own name ($0 or none), the call cost nothing. Under a
 * cap it is refused; without one it is priced, and summed, as the model the response names. */
Test(supervisor_llm, router_model_refused_under_a_cap_else_priced_as_the_answering_model)
{
        static const char req[] = "{\"model\":\"openrouter/auto\",\"max_tokens\":10,\"messages\":[]}";
        static const char reply[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"claude-test\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10}}";
        Fixture f;
        setup(&f, "cost_usd=5");
        expect_refused(&f, &openai, "/v1/chat/completions", req, 403, "openrouter/auto");
        teardown(&f);
        setup(&f, NULL);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions", req, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        json_t *rs = last_event("llm.response");
        cr_assert_not_null(rs);
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(rs, "price"), "entry")), "claude-test");
        /* 100 x 1e-4 + 10 x 2e-4 */
        cr_expect_float_eq(json_real_value(json_object_get(rs, "cost_usd")), 0.012, 1e-9);
        cr_expect_not_null(json_object_get(json_object_get(f.llm.summary, "openai"), "claude-test"));
        teardown(&f);
}

/* A file OpenRouter may parse at a per-page fee (mistral-ocr, its default where the model reads
 * no files itself): under a cost cap its pages must be priced (the file_parser fee), else the
 * request is refused before anything is parsed; priced, AJ_LLM_FILE_PAGES pages a file are
 * reserved and an answer charged them. A free engine named: nothing to price. */
Test(supervisor_llm, file_parser_pages_priced_under_a_cost_cap)
{
#define FILE_REQ(plugins)                                                                                           \
        "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"     \
        "\"file\",\"file\":{\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;base64,JVBE\"}}]}]" plugins \
        "}"
        static const char reply[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"claude-test\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10}}";
        Fixture f;
        setup(&f, "cost_usd=5");
        expect_refused(&f, &openai, "/v1/chat/completions", FILE_REQ(""), 429, "file_parser");
        teardown(&f);
        AjGatewayCall call;
        AjGatewayVerdict v;

        setup(&f, "cost_usd=5");
        request(&f, &call, &openai, "/v1/chat/completions",
                FILE_REQ(",\"plugins\":[{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"pdf-text\"}}]"), &v);
        cr_expect_eq(v.status, 0, "a free engine: %s", v.message);
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        cr_expect_null(json_object_get(last_event("llm.response"), "file_parser_pages"));
        teardown(&f);

        setup(&f, "cost_usd=5");
        cr_assert_eq(aj_meter_set_price_tool_fee(f.meter, "claude-test", AJ_TOOL_FEE_FILE_PARSER, 0.002), 0);
        request(&f, &call, &openai, "/v1/chat/completions", FILE_REQ(""), &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        cr_expect_geq(json_real_value(
                              json_object_get(json_object_get(last_event("llm.request"), "reserved"), "cost_usd")),
                      2.0, "1,000 pages at $0.002 reserved");
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        json_t *rs = last_event("llm.response");
        cr_expect_eq(json_integer_value(json_object_get(rs, "file_parser_pages")), 1000);
        cr_expect_float_eq(json_real_value(json_object_get(rs, "cost_usd")), 2.012, 1e-9);
        teardown(&f);
#undef FILE_REQ
}

/* What the provider says it charged (OpenRouter's usage.cost, xAI's usage.cost_in_usd_ticks)
 * was not read: a call the prices put below it was charged less than was spent. The call is
 * now charged the larger of the two, both in its event (cost_usd the charge, price_cost_usd
 * the prices' figure, provider_cost_usd the provider's), and a figure past the cap breaches. */
Test(supervisor_llm, provider_cost_is_a_floor_of_the_charge)
{
#define COST_REPLY(usage)                                                                                   \
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"claude-test\",\"choices\":[{\"index\":0," \
        "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{"   \
        "\"prompt_tokens\":100,\"completion_tokens\":10" usage "}}"
        static const char req[] = "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[]}";
        static const struct {
                const char *reply;
                double cost, provider; /* provider < 0: none said */
                bool breach;
        } cases[] = {
                /* 100 x 1e-4 + 10 x 2e-4 = 0.012 by the prices */
                { COST_REPLY(",\"cost\":0.5"), 0.5, 0.5, false },
                { COST_REPLY(",\"cost_in_usd_ticks\":10000000"), 0.012, 0.001, false },
                { COST_REPLY(""), 0.012, -1, false },
                { COST_REPLY(",\"cost\":-3"), 0.012, -1, false },
                { COST_REPLY(",\"cost\":2"), 2, 2, true },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Fixture f;
                setup(&f, "cost_usd=1");
                AjGatewayCall call;
                AjGatewayVerdict v;
                request(&f, &call, &openai, "/v1/chat/completions", req, &v);
                cr_assert_eq(v.status, 0, "%s", v.message);
                respond(&f, &call, "application/json", cases[i].reply, AJ_GATEWAY_COMPLETED);
                json_t *rs = last_event("llm.response");
                cr_assert_not_null(rs);
                cr_expect_float_eq(json_real_value(json_object_get(rs, "cost_usd")), cases[i].cost, 1e-9, "%s",
                                   cases[i].reply);
                cr_expect_float_eq(aj_meter_used(f.meter, AJ_CAP_COST_USD, 0) / 1e12, cases[i].cost, 1e-9, "%s",
                                   cases[i].reply);
                json_t *p = json_object_get(rs, "provider_cost_usd");
                if (cases[i].provider >= 0) {
                        cr_expect_float_eq(json_real_value(p), cases[i].provider, 1e-9, "%s", cases[i].reply);
                        cr_expect_float_eq(json_real_value(json_object_get(rs, "price_cost_usd")), 0.012, 1e-9, "%s",
                                           cases[i].reply);
                } else {
                        cr_expect_null(p, "%s", cases[i].reply);
                        cr_expect_null(json_object_get(rs, "price_cost_usd"), "%s", cases[i].reply);
                }
                cr_expect_eq(json_array_size(breaches) > 0, cases[i].breach, "%s", cases[i].reply);
                teardown(&f);
        }
#undef COST_REPLY
}

/* OpenAI's own API reads a PDF as input tokens: a request to it sending one is not reserved
 * OpenRouter's file parser pages, so under a cost cap it goes without a "file_parser" price
 * (it was refused 429); to another server it still needs one (fail closed). */
Test(supervisor_llm, openai_itself_sends_pdfs_without_a_file_parser_price)
{
        static const char req[] =
                "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"file\",\"file\":{\"filename\":\"a.pdf\",\"file_data\":\"data:application/pdf;base64,JVBE\"}}]}]}";
        static const char reply[] =
                "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"claude-test\",\"choices\":[{\"index\":0,"
                "\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10}}";
        static const AjGatewayProvider direct = { .name = "openai",
                                                  .api = AJ_GATEWAY_API_OPENAI,
                                                  .url = "https://api.openai.com" };
        static const AjGatewayProvider router = { .name = "openrouter",
                                                  .api = AJ_GATEWAY_API_OPENAI,
                                                  .url = "https://openrouter.ai/api" };
        Fixture f;
        setup(&f, "cost_usd=5");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &direct, "/v1/chat/completions", req, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        json_t *rs = last_event("llm.response");
        cr_expect_null(json_object_get(rs, "file_parser_pages"));
        cr_expect_float_eq(json_real_value(json_object_get(rs, "cost_usd")), 0.012, 1e-9);
        teardown(&f);
        setup(&f, "cost_usd=5");
        expect_refused(&f, &router, "/api/v1/chat/completions", req, 429, "file_parser");
        teardown(&f);
}

/* A stream whose usage says it cost more than was reserved and than the cap allows is cut
 * there, as a stream past its tokens is: the provider's figure counts as it arrives. */
Test(supervisor_llm, stream_whose_provider_cost_passes_the_cap_is_cut)
{
        expect_stream_cut(&(StreamCut){
                .caps = "cost_usd=1",
                .events = { "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
                            "\"claude-test\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
                            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                            "\"end_turn\"},\"usage\":{\"output_tokens\":2,\"cost\":3}}\n\n" },
                .cap = "cost_usd",
                .meter = AJ_CAP_COST_USD,
                .charged = 3000000000000ULL,
                .why = "what it said it charged",
        });
}

/* OpenRouter's provider routing (an order, a sort by throughput, a :nitro model...) may answer
 * through an endpoint priced above the model's price, which the reservation assumed: under a
 * cost cap it is refused without provider.max_price, and with one reserved at the dearer of
 * the two; without a cost cap it goes. */
Test(supervisor_llm, openrouter_provider_routing_under_a_cost_cap)
{
        static const char ordered[] =
                "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[],\"provider\":{\"order\":[\"dear\"]}}";
        /* 200 USD per million is 2e-4 a token, twice claude-test's input price. */
        static const char bounded[] =
                "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[],\"provider\":{\"order\":[\"dear\"],"
                "\"max_price\":{\"prompt\":200,\"completion\":100}}}";
        Fixture f;
        setup(&f, "cost_usd=5");
        expect_refused(&f, &openai, "/v1/chat/completions", ordered, 403, "max_price");
        expect_refused(&f, &openai, "/v1/chat/completions",
                       "{\"model\":\"claude-test:nitro\",\"max_tokens\":10,\"messages\":[]}", 403, NULL);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions", bounded, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        /* Every token at 2e-4: the prompt's at max_price (the model's is 1e-4), the output's at the
         * model's (max_price's 1e-4 is less). */
        json_t *reserved = json_object_get(last_event("llm.request"), "reserved");
        cr_expect_float_eq(json_real_value(json_object_get(reserved, "cost_usd")),
                           (double)json_integer_value(json_object_get(reserved, "tokens")) * 2e-4, 1e-9);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
        setup(&f, "tokens=100000");
        request(&f, &call, &openai, "/v1/chat/completions", ordered, &v);
        cr_expect_eq(v.status, 0, "without a cost cap: %s", v.message);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
}

/* A routed call the provider says no cost of (the agent left before the usage, a proxy that
 * drops it) may have answered through the endpoint at max_price: it is charged at it, as it
 * was reserved, not at the model's price. */
Test(supervisor_llm, openrouter_routed_call_without_its_cost_is_charged_at_max_price)
{
        static const char bounded[] =
                "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[],\"provider\":{\"order\":[\"dear\"],"
                "\"max_price\":{\"prompt\":1000,\"completion\":1000}}}";
        static const char reply[] = "{\"id\":\"c\",\"model\":\"claude-test\",\"choices\":[{\"message\":{\"role\":"
                                    "\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],"
                                    "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10}}";
        Fixture f;
        setup(&f, "cost_usd=5");
        double reserved = json_real_value(
                json_object_get(agent_left(&f, &openai, "/v1/chat/completions", bounded), "cost_usd"));
        cr_expect_float_eq((double)aj_meter_used(f.meter, AJ_CAP_COST_USD, 0) / 1e12, reserved, 1e-9,
                           "left: charged the reservation, at max_price");
        teardown(&f);
        setup(&f, "cost_usd=5");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions", bounded, &v);
        cr_assert_eq(v.status, 0, "%s", v.message);
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        /* 1000 USD per million is 1e-3 a token. */
        cr_expect_float_eq((double)aj_meter_used(f.meter, AJ_CAP_COST_USD, 0) / 1e12, 110 * 1e-3, 1e-9,
                           "answered without usage.cost: at max_price");
        teardown(&f);
}

/* OpenRouter's model variants: "vendor/m:floor" (its endpoints sorted by price) was priced by an
 * entry of that whole name only, so under a cost cap it was refused for want of a price; a
 * variant that may cost more than the base model (:exacto, :extended, :thinking) went priced as
 * nothing or the "*" price; one the gateway does not know went the same. Now a variant billed
 * at the base model's price or less is priced as the base model, one that may cost more is
 * provider routing (refused without max_price), and an unknown one is refused naming it unless
 * the profile prices the whole name. */
Test(supervisor_llm, openrouter_model_variants_under_a_cost_cap)
{
        static const struct {
                const char *model;
                int status;
                const char *says;
        } cases[] = {
                { "vendor/claude-test:floor", 0, NULL },
                { "vendor/claude-test:free", 0, NULL },
                { "vendor/claude-test:exacto", 403, "max_price" },
                { "vendor/claude-test:extended", 403, "max_price" },
                { "vendor/claude-test:THINKING", 403, "max_price" },
                { "vendor/claude-test:batch", 403, "\":batch\"" },
                { "vendor/claude-test:floor:weird", 403, "\":weird\"" },
                { "vendor/priced:batch", 0, NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Fixture f;
                setup(&f, "cost_usd=5");
                cr_assert_eq(aj_meter_set_price(f.meter, "vendor/claude-test", 1e-4, 2e-4, -1), 0);
                cr_assert_eq(aj_meter_set_price(f.meter, "vendor/priced:batch", 1e-4, 2e-4, -1), 0);
                /* A fallback price does not make an unknown variant's bill known. */
                cr_assert_eq(aj_meter_set_price(f.meter, "*", 1e-6, 1e-6, -1), 0);
                char body[256];
                snprintf(body, sizeof(body), "{\"model\":\"%s\",\"max_tokens\":10,\"messages\":[]}", cases[i].model);
                AjGatewayCall call;
                AjGatewayVerdict v;
                request(&f, &call, &openai, "/v1/chat/completions", body, &v);
                cr_expect_eq(v.status, cases[i].status, "%s: %d %s", cases[i].model, v.status, v.message ?: "");
                if (cases[i].says)
                        cr_expect(v.message && strstr(v.message, cases[i].says), "%s: %s", cases[i].model,
                                  v.message ?: "");
                if (!cases[i].status) {
                        /* Priced as the base model: 1e-4 an input token, 2e-4 an output one. */
                        json_t *price = json_object_get(last_event("llm.request"), "reserved");
                        cr_expect_gt(json_real_value(json_object_get(price, "cost_usd")), 0, "%s", cases[i].model);
                }
                f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
                teardown(&f);
        }
        /* Without a cost cap, an unknown variant goes (a token cap prices nothing). */
        Fixture f;
        setup(&f, "tokens=100000");
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/chat/completions",
                "{\"model\":\"vendor/claude-test:batch\",\"max_tokens\":10,\"messages\":[]}", &v);
        cr_expect_eq(v.status, 0, "%s", v.message ?: "");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
}

/* OpenRouter's provider.max_price.request and .image (USD per request, per input image: the fees
 * an endpoint may bill besides the tokens) were not read: a routed call through an endpoint with
 * such fees was reserved and, without usage.cost, charged its tokens only. Now they are reserved
 * (the request's once, the image's per image of the request) and charged when the provider
 * states no cost; one that is no price refuses the routing under a cost cap. */
Test(supervisor_llm, openrouter_max_price_request_and_image_fees)
{
#define ROUTED(fees)                                                                                                          \
        "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"               \
        "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":" \
        "\"data:image/png;base64,BB\"}}]}],\"provider\":{\"max_price\":{\"prompt\":1,\"completion\":1" fees "}}}"
        static const char reply[] = "{\"id\":\"c\",\"model\":\"claude-test\",\"choices\":[{\"message\":{\"role\":"
                                    "\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],"
                                    "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":10}}";
        Fixture f;
        AjGatewayCall call;
        AjGatewayVerdict v;
        setup(&f, "cost_usd=5");
        request(&f, &call, &openai, "/v1/chat/completions", ROUTED(""), &v);
        cr_assert_eq(v.status, 0, "%s", v.message ?: "");
        double plain = json_real_value(
                json_object_get(json_object_get(last_event("llm.request"), "reserved"), "cost_usd"));
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
        /* $0.5 a request and $0.25 an image, two images: $1 more reserved. */
        setup(&f, "cost_usd=5");
        request(&f, &call, &openai, "/v1/chat/completions", ROUTED(",\"request\":\"0.5\",\"image\":0.25"), &v);
        cr_assert_eq(v.status, 0, "%s", v.message ?: "");
        double with_fees = json_real_value(
                json_object_get(json_object_get(last_event("llm.request"), "reserved"), "cost_usd"));
        /* (The longer body's prompt estimate is a few tokens more.) */
        cr_expect(with_fees - plain >= 1.0 && with_fees - plain < 1.01, "%f %f", with_fees, plain);
        /* Answered without usage.cost: charged the tokens (at the model's price, above max_price
         * here) and the fees. */
        respond(&f, &call, "application/json", reply, AJ_GATEWAY_COMPLETED);
        cr_expect_float_eq((double)aj_meter_used(f.meter, AJ_CAP_COST_USD, 0) / 1e12, 100 * 1e-4 + 10 * 2e-4 + 1.0,
                           1e-9);
        teardown(&f);
        /* A fee that is no price: the routing is not bounded. */
        setup(&f, "cost_usd=5");
        request(&f, &call, &openai, "/v1/chat/completions", ROUTED(",\"image\":\"1e3\""), &v);
        cr_expect_eq(v.status, 403, "%s", v.message ?: "");
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        teardown(&f);
#undef ROUTED
}

/* Where a request lets the provider connect for the agent (MCP servers, fetch tools) is judged
 * against the run's network policy: data would otherwise leave through the provider to hosts
 * the jail cannot reach. `allow`: network.allow entries (NULL: no network). */
static void setup_reach(Fixture *f, char *const *allow, bool provider_fetch, AjNetPolicy **policy)
{
        setup(f, NULL);
        *policy = NULL;
        if (allow)
                cr_assert_eq(aj_net_policy_parse(allow, policy, NULL, NULL), 0);
        f->llm.net_policy = *policy;
        f->llm.provider_fetch = provider_fetch;
}

#define ANTHROPIC_WITH(members) "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[]," members "}"
#define RESPONSES_WITH(members) "{\"model\":\"claude-test\",\"input\":\"hi\"," members "}"

/* `body` to `path` gets `status`; 403 says `says`. */
static void expect_reach(Fixture *f, const AjGatewayProvider *pr, const char *path, const char *body, unsigned status,
                         const char *says)
{
        expect_refused(f, pr, path, body, status, status ? says : NULL);
        if (status == 403)
                cr_expect(strstr(json_string_value(json_object_get(last_event("llm.request"), "reason")) ?: "",
                                 "llm.provider_fetch"),
                          "%s", body);
}

Test(supervisor_llm, provider_fetching_is_judged_against_the_network_policy)
{
        static const char *const web_fetch_free = ANTHROPIC_WITH("\"tools\":[{\"type\":\"web_fetch_20250910\","
                                                                 "\"name\":\"web_fetch\"}]");
        static const char *const web_fetch_bound = ANTHROPIC_WITH(
                "\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\","
                "\"allowed_domains\":[\"example.com\"]}]");
        static const char *const mcp_server = ANTHROPIC_WITH(
                "\"mcp_servers\":[{\"type\":\"url\",\"name\":\"m\",\"url\":\"https://mcp.example.com/sse\"}]");
        static const char *const responses_mcp = RESPONSES_WITH(
                "\"tools\":[{\"type\":\"mcp\",\"server_label\":\"m\",\"server_url\":\"https://mcp.example.com/mcp\"}]");
        char *host_only[] = { "example.com", "mcp.example.com:443", NULL };
        char *with_subdomains[] = { "example.com", "*.example.com", NULL };
        Fixture f;
        AjNetPolicy *policy;

        /* No network: each is refused, naming the tool and the host. */
        setup_reach(&f, NULL, false, &policy);
        expect_reach(&f, &anthropic, "/v1/messages", web_fetch_free, 403,
                     "web_fetch_20250910\" without allowed_domains");
        expect_reach(&f, &anthropic, "/v1/messages", web_fetch_bound, 403, "host example.com port 443");
        expect_reach(&f, &anthropic, "/v1/messages", mcp_server, 403,
                     "mcp_servers[0].url, host mcp.example.com port 443");
        expect_reach(&f, &anthropic, "/v1/messages/count_tokens", mcp_server, 403, "mcp_servers[0]");
        expect_reach(&f, &openai, "/v1/responses", responses_mcp, 403, "\"mcp\" server_url, host mcp.example.com");
        /* Any letter case and version the provider would take, a namespace's fetch tool. */
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"tools\":[{\"type\":\"WEB_FETCH_20260101\",\"name\":\"f\"}]"), 403,
                     "WEB_FETCH_20260101");
        expect_reach(&f, &openai, "/v1/chat/completions",
                     "{\"model\":\"claude-test\",\"messages\":[],\"tools\":[{\"type\":\"openrouter:web_fetch\"}]}", 403,
                     "openrouter:web_fetch");
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH("\"tools\":[{\"type\":\"MCP\",\"server_label\":\"m\",\"server_url\":"
                                    "\"https://mcp.example.com\"}]"),
                     403, "\"MCP\" server_url");
        expect_reach(&f, &openai, "/v1/responses", RESPONSES_WITH("\"tools\":[{\"type\":\"mcp_remote\"}]"), 403,
                     "\"mcp_remote\" server_url, any host");
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"tools\":[{\"type\":\"mcp_toolset\",\"mcp_server_name\":\"m\"}]"), 0, NULL);
        /* A provider's connector, a tool type the gateway does not know, a stored prompt, what it
         * cannot read: no host it can judge. */
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH("\"tools\":[{\"type\":\"mcp\",\"server_label\":\"g\",\"connector_id\":"
                                    "\"connector_gmail\"}]"),
                     403, "connector_id connector_gmail, any host");
        expect_reach(&f, &openai, "/v1/responses", RESPONSES_WITH("\"tools\":[{\"type\":\"url_context\"}]"), 403,
                     "a type the gateway does not know");
        expect_reach(&f, &openai, "/v1/responses", RESPONSES_WITH("\"prompt\":{\"id\":\"pmpt_1\"}"), 403,
                     "stored \"prompt\"");
        expect_reach(&f, &anthropic, "/v1/messages", ANTHROPIC_WITH("\"mcp_servers\":{}"), 403, "not an array");
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"mcp_servers\":[{\"type\":\"url\",\"url\":\"ftp://x\"}]"), 403, "any host");
        /* A member spelled in another case, which a provider matching names so would read. */
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"f\","
                                    "\"allowed_domains\":[\"example.com\"],\"Allowed_Domains\":[\"evil.com\"]}]"),
                     400, NULL);
        expect_reach(&f, &anthropic, "/v1/messages", ANTHROPIC_WITH("\"MCP_Servers\":[]"), 400, NULL);
        /* A path the gateway does not meter (a batch of requests) is read for them too. */
        expect_reach(&f, &anthropic, "/v1/messages/batches",
                     "{\"requests\":[{\"custom_id\":\"a\",\"params\":" ANTHROPIC_WITH(
                             "\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"f\"}]") "}]}",
                     403, "web_fetch_20250910");
        /* What Claude Code sends (its WebSearch is a server tool, its WebFetch the client's) goes. */
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"tools\":[{\"name\":\"WebFetch\",\"input_schema\":{\"type\":\"object\"}},"
                                    "{\"type\":\"web_search_20250305\",\"name\":\"web_search\",\"max_uses\":8}]"),
                     0, NULL);
        /* Images and files by URL: the provider fetches them; inline data it does not. */
        expect_reach(&f, &anthropic, "/v1/messages",
                     "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":["
                     "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://evil.test/x?d=secret\"}}]}]}",
                     403, "an image or file by URL (\"url\"), host evil.test port 443");
        expect_reach(&f, &openai, "/v1/chat/completions",
                     "{\"model\":\"claude-test\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                     "\"image_url\",\"image_url\":{\"url\":\"http://evil.test/a.png\"}}]}]}",
                     403, "host evil.test port 80");
        expect_reach(&f, &openai, "/v1/responses",
                     "{\"model\":\"claude-test\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
                     "\"input_file\",\"file_url\":\"https://evil.test/a.pdf\"}]}]}",
                     403, "(\"file_url\"), host evil.test");
        expect_reach(&f, &openai, "/v1/chat/completions",
                     "{\"model\":\"claude-test\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                     "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}]}",
                     0, NULL);
        expect_reach(&f, &anthropic, "/v1/messages/batches", "{\"requests\":[]}", 0, NULL);
        expect_reach(&f, &anthropic, "/v1/messages/batches", "{\"requests\":[],\"requests\":[]}", 400, "repeats a key");
        expect_reach(&f, &anthropic, "/v1/files", "--boundary\r\nnot json", 400, "neither JSON nor");
        teardown(&f);

        /* Hosts the policy allows go; a domain only with its subdomains (the provider fetches
         * from them too); a URL's user info is not read past. */
        setup_reach(&f, host_only, false, &policy);
        expect_reach(&f, &anthropic, "/v1/messages", mcp_server, 0, NULL);
        expect_reach(&f, &openai, "/v1/responses", responses_mcp, 0, NULL);
        expect_reach(&f, &anthropic, "/v1/messages", web_fetch_bound, 403, "not its subdomains");
        expect_reach(&f, &anthropic, "/v1/messages", web_fetch_free, 403, "without allowed_domains");
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"mcp_servers\":[{\"type\":\"url\",\"url\":\"https://mcp.example.com:8443/\"}]"),
                     403, "port 8443");
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"mcp_servers\":[{\"type\":\"url\",\"url\":"
                                    "\"https://mcp.example.com@evil.com/\"}]"),
                     403, "any host");
        /* Brackets hold an IPv6 address, nothing a URL parser would read as a name. */
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"mcp_servers\":[{\"type\":\"url\",\"url\":\"https://[mcp.example.com]/\"}]"), 403,
                     "any host");
        teardown(&f);
        aj_net_policy_free(policy);
        setup_reach(&f, with_subdomains, false, &policy);
        expect_reach(&f, &anthropic, "/v1/messages", web_fetch_bound, 0, NULL);
        expect_reach(&f, &anthropic, "/v1/messages",
                     ANTHROPIC_WITH("\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"f\","
                                    "\"allowed_domains\":[\"example.com\",\"evil.com\"]}]"),
                     403, "allowed_domains[1], host evil.com");
        teardown(&f);
        aj_net_policy_free(policy);

        /* llm.provider_fetch lets them through, and the event names each. */
        setup_reach(&f, NULL, true, &policy);
        AjGatewayCall call;
        AjGatewayVerdict v;
        request(&f, &call, &openai, "/v1/responses",
                RESPONSES_WITH("\"tools\":[{\"type\":\"mcp\",\"server_label\":\"g\",\"connector_id\":\"c\"},"
                               "{\"type\":\"mcp\",\"server_label\":\"m\",\"server_url\":\"https://mcp.example.com\"}]"),
                &v);
        cr_expect_eq(v.status, 0, "%s", v.message);
        json_t *fetch = json_object_get(last_event("llm.request"), "provider_fetch");
        cr_expect_eq(json_array_size(fetch), 2);
        cr_expect(strstr(json_string_value(json_array_get(fetch, 1)), "host mcp.example.com port 443"));
        free(v.body);
        f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_FAILED, 0);
        teardown(&f);
}

/* URLs the provider fetches in shapes other than the ones the gateway first read: each refused
 * without network. */
Test(supervisor_llm, provider_fetching_in_every_url_shape_is_judged)
{
#define CHAT_PART(part) "{\"model\":\"claude-test\",\"messages\":[{\"role\":\"user\",\"content\":[" part "]}]}"
        static const char *const bodies[] = {
                /* Chat's image_url as a plain string (vLLM, Mistral) */
                CHAT_PART("{\"type\":\"image_url\",\"image_url\":\"https://evil.test/a.png\"}"),
                /* a file part's file_data given as a URL (OpenRouter) */
                CHAT_PART(
                        "{\"type\":\"file\",\"file\":{\"filename\":\"a.pdf\",\"file_data\":\"https://evil.test/a.pdf\"}}"),
                /* video and audio by URL (OpenRouter, vLLM) */
                CHAT_PART("{\"type\":\"video_url\",\"video_url\":{\"url\":\"https://evil.test/v.mp4\"}}"),
                CHAT_PART("{\"type\":\"audio_url\",\"audio_url\":{\"url\":\"https://evil.test/a.wav\"}}"),
                /* Mistral's document_url */
                CHAT_PART("{\"type\":\"document_url\",\"document_url\":\"https://evil.test/a.pdf\"}"),
                CHAT_PART(
                        "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"https://evil.test/a.wav\",\"format\":\"wav\"}}"),
                /* xAI Live Search's RSS source: the provider fetches the feed */
                "{\"model\":\"claude-test\",\"messages\":[],\"search_parameters\":{\"mode\":\"on\",\"sources\":[{\"type\":\"rss\",\"links\":[\"https://evil.test/feed\"]}]}}",
        };
        Fixture f;
        AjNetPolicy *policy;
        setup_reach(&f, NULL, false, &policy);
        for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
                AjGatewayCall call;
                AjGatewayVerdict v;
                request(&f, &call, &openai, "/v1/chat/completions", bodies[i], &v);
                cr_expect_eq(v.status, 403, "%zu: %s: %s", i, bodies[i], v.message ?: "");
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, v.status ? AJ_GATEWAY_REFUSED : AJ_GATEWAY_FAILED, 0);
        }
        /* A path the gateway does not meter: any URL member of the body (an image edit's
         * images, a webhook) is one the provider connects to. */
        expect_reach(&f, &openai, "/v1/images/edits",
                     "{\"model\":\"gpt-image-1\",\"prompt\":\"p\",\"images\":[{\"image_url\":"
                     "\"https://evil.test/a.png\"}]}",
                     403, "(\"image_url\"), host evil.test");
        /* The image generation tool's mask. */
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH("\"tools\":[{\"type\":\"image_generation\",\"input_image_mask\":"
                                    "{\"image_url\":\"https://evil.test/m.png\"}}]"),
                     403, "host evil.test");
        /* A hosted container's network, in a tool or created for one: only "disabled" goes. */
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH(
                             "\"tools\":[{\"type\":\"shell\",\"environment\":{\"type\":\"container_auto\","
                             "\"network_policy\":{\"type\":\"allowlist\",\"allowed_domains\":[\"evil.test\"]}}}]"),
                     403, "network_policy allowed_domains[0], host evil.test");
        expect_reach(&f, &openai, "/v1/containers",
                     "{\"name\":\"c\",\"network_policy\":{\"type\":\"allowlist\",\"allowed_domains\":[\"evil.test\"]}}",
                     403, "host evil.test");
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH("\"tools\":[{\"type\":\"code_interpreter\",\"container\":{\"type\":\"auto\","
                                    "\"network_policy\":{\"type\":\"open\"}}}]"),
                     403, "any host");
        expect_reach(&f, &openai, "/v1/responses",
                     RESPONSES_WITH("\"tools\":[{\"type\":\"shell\",\"environment\":{\"type\":\"container_auto\","
                                    "\"network_policy\":{\"type\":\"disabled\"}}}]"),
                     0, NULL);
        /* A body it cannot read is refused unless a form upload: JSON behind a byte order mark
         * (which Python's json.loads takes) would otherwise go unjudged. */
        static const char bom_body[] = "\xef\xbb\xbf{\"name\":\"c\",\"network_policy\":{\"type\":\"allowlist\","
                                       "\"allowed_domains\":[\"evil.test\"]}}";
        static const AjGwHeader json_type = { "content-type", 12, "application/json", 16 };
        static const AjGwHeader form_type = { "content-type", 12, "multipart/form-data; boundary=b", 31 };
        static const AjGwHeader gzip = { "content-encoding", 16, "gzip", 4 };
        const struct {
                const char *body;
                AjGwHeader headers[2];
                size_t n;
                unsigned status;
        } raw[] = {
                { bom_body, { json_type }, 1, 400 },
                { "--b\r\n\r\nfile\r\n--b--\r\n", { form_type }, 1, 0 },
                { "\x1f\x8b not read", { form_type, gzip }, 2, 415 },
                { "--b\r\n", { form_type, json_type }, 2, 400 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(raw); i++) {
                AjGatewayCall call = { .id = 1, .provider = &openai, .method = "POST", .path = "/v1/containers" };
                AjGatewayVerdict v = {};
                AjGatewayRequest req = { raw[i].headers, raw[i].n, raw[i].body, strlen(raw[i].body) };
                f.obs.on_request(f.obs.userdata, &call, &req, &v);
                cr_expect_eq(v.status, raw[i].status, "%zu: %s", i, v.message ?: "");
                free(v.body);
                f.obs.on_done(f.obs.userdata, &call, AJ_GATEWAY_REFUSED, 0);
        }
        /* A model call to a path the gateway does not take for one is still read as one. */
        expect_reach(&f, &openai, "/v1/responses/.", RESPONSES_WITH("\"prompt\":{\"id\":\"pmpt_1\"}"), 403,
                     "stored \"prompt\"");
        /* Inline data, a replayed search's results and citations (not fetched again) go. */
        expect_reach(&f, &openai, "/v1/chat/completions",
                     CHAT_PART(
                             "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"//uQxAAA+/=\",\"format\":\"mp3\"}}"),
                     0, NULL);
        expect_reach(&f, &anthropic, "/v1/messages",
                     "{\"model\":\"claude-test\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":["
                     "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\","
                     "\"data\":\"/9j/4AAQSkZJRg\"}}]},{\"role\":\"assistant\",\"content\":[{\"type\":"
                     "\"web_search_tool_result\",\"tool_use_id\":\"s\",\"content\":[{\"type\":\"web_search_result\","
                     "\"url\":\"https://evil.test/\",\"title\":\"t\",\"encrypted_content\":\"e\"}]},{\"type\":"
                     "\"text\",\"text\":\"t\",\"citations\":[{\"type\":\"web_search_result_location\",\"url\":"
                     "\"https://evil.test/\",\"title\":\"t\",\"cited_text\":\"c\",\"encrypted_index\":\"i\"}]}]}]}",
                     0, NULL);
        expect_reach(&f, &openai, "/v1/responses",
                     "{\"model\":\"claude-test\",\"input\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":"
                     "[{\"type\":\"output_text\",\"text\":\"t\",\"annotations\":[{\"type\":\"url_citation\","
                     "\"url\":\"https://evil.test/\",\"title\":\"t\",\"start_index\":0,\"end_index\":1}]}]}]}",
                     0, NULL);
        teardown(&f);
#undef CHAT_PART
}

/* The hosts the proxy reserves and the ports their addresses are reserved on: the url's own
 * port, else its scheme's. */
Test(supervisor_llm, reserved_hosts_and_their_ports)
{
        AjLlmProvider prov[] = { { .url = (char *)"https://api.anthropic.com" },
                                 { .url = (char *)"http://llm.corp:4000/v1" },
                                 { .url = (char *)"http://10.1.2.3" },
                                 { .url = (char *)"https://gw.example:8443" } };
        AjProfile p = { .llm_providers = prov, .n_llm_providers = 4 };
        char **hosts = NULL;
        uint16_t *ports = NULL;
        cr_assert_eq(aj_sup_llm_reserved_hosts(&p, &hosts, &ports), 0);
        const char *want[] = { "api.anthropic.com", "llm.corp", "10.1.2.3", "gw.example" };
        const uint16_t want_ports[] = { 443, 4000, 80, 8443 };
        for (size_t i = 0; i < 4; i++) {
                cr_expect_str_eq(hosts[i], want[i]);
                cr_expect_eq(ports[i], want_ports[i], "%s", want[i]);
        }
        cr_expect_null(hosts[4]);
        aj_strv_free(hosts);
        free(ports);
}
