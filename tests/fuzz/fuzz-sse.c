/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's response readers: the SSE parser and the usage accumulator.
 * Input: byte 0 picks the API (bits 0-1), a stream or a whole body (bit 2) and
 * the chat usage-chunk stripping (bit 3); byte 1 the chunk size the response is
 * fed in (1 to 256); then a request body, a NUL, and the response bytes (no NUL:
 * all response). Checked as well: every event the parser emits, written back with
 * aj_sse_format() and parsed again, is the same event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gateway/sse.h"
#include "gateway/usage.h"

/* Responses larger than this add nothing the limits do not already cover. */
#define FUZZ_MAX_INPUT (1u << 20)

typedef struct {
        const AjSseEvent *want;
        int seen;
} Echo;

static int echo_back(void *userdata, const AjSseEvent *ev)
{
        Echo *e = userdata;
        if (e->seen++ || strcmp(ev->event, e->want->event) != 0 || ev->data_len != e->want->data_len ||
            memcmp(ev->data, e->want->data, ev->data_len) != 0)
                __builtin_trap();
        return 0;
}

/* Each event, formatted and parsed again, reads the same. */
static int round_trip(void *userdata, const AjSseEvent *ev)
{
        AjLlmCall *c = userdata;
        bool forward;
        char *text;
        size_t len;
        if (aj_llm_call_response_event(c, ev, &forward) < 0)
                return -1;
        if (strchr(ev->event, '\n') || strchr(ev->event, '\r') || aj_sse_format(ev, &text, &len) < 0)
                return 0;
        AjSse *s = NULL;
        Echo e = { .want = ev };
        if (aj_sse_new(0, &s) == 0) {
                if (aj_sse_feed(s, text, len, echo_back, &e) < 0 || aj_sse_finish(s) != 0 || e.seen != 1)
                        __builtin_trap();
                aj_sse_free(s);
        }
        free(text);
        return 0;
}

static void request(AjLlmCall *c, const uint8_t *body, size_t len)
{
        char *rewritten = NULL;
        size_t rlen;
        (void)aj_llm_call_request(c, body, len);
        if (aj_llm_openai_chat_add_usage(body, len, &rewritten, &rlen) == 1) {
                if (strstr(rewritten, "\"include_usage\":true") == NULL)
                        __builtin_trap();
                free(rewritten);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 2 || size > FUZZ_MAX_INPUT)
                return 0;
        AjLlmApi api = (AjLlmApi)(data[0] & 3);
        bool stream = data[0] & 4, strip = data[0] & 8;
        size_t chunk = (size_t)data[1] + 1;
        data += 2;
        size -= 2;
        const uint8_t *nul = memchr(data, '\0', size);
        const uint8_t *resp = nul ? nul + 1 : data;
        size_t resp_len = size - (size_t)(resp - data);

        AjLlmCall *c = NULL, *relayed = NULL;
        if (aj_llm_call_new(api, &c) < 0 || aj_llm_call_new(api, &relayed) < 0)
                goto out;
        if (nul) {
                request(c, data, (size_t)(nul - data));
                request(relayed, data, (size_t)(nul - data));
        }
        aj_llm_call_strip_usage_chunk(relayed, strip);
        aj_llm_call_response_start(c, 200, stream ? "text/event-stream" : "application/json");
        aj_llm_call_response_start(relayed, 200, "text/event-stream");

        /* The accumulator's own parser, fed in chunks ... */
        for (size_t at = 0; at < resp_len; at += chunk)
                if (aj_llm_call_response_data(c, resp + at, resp_len - at < chunk ? resp_len - at : chunk) < 0)
                        goto out;
        aj_llm_call_response_end(c);
        AjLlmCharge ch;
        aj_llm_call_charge(c, &ch);

        /* ... and a relay's, with a small event bound, feeding it event by event. */
        AjSse *s = NULL;
        if (aj_sse_new(4096, &s) == 0) {
                (void)aj_sse_feed(s, resp, resp_len, round_trip, relayed);
                (void)aj_sse_finish(s);
                aj_sse_free(s);
        }
        aj_llm_call_response_end(relayed);
        const AjLlmUsage *u = aj_llm_call_usage(relayed);
        if (u->n_tool_calls > AJ_LLM_MAX_TOOL_CALLS || u->n_tool_calls > u->tool_calls_total)
                __builtin_trap();
out:
        aj_llm_call_free(c);
        aj_llm_call_free(relayed);
        return 0;
}
