/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's replay mode (llm.h, docs/replay.md): each model call the meter lets
 * through is answered from another run's recording (by request digest, then by
 * position: src/replay-recording.c) as if its provider had sent the response again
 * (status, content type, the body, an event stream chunked at its events), through the
 * same metering as a live response. A request the recording lacks is a miss: an
 * llm.replay_miss event and a 502 in the provider's shape, never sent to a provider
 * unless the replay is live.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "supervisor/llm.h"
#include "util/macros.h"

void aj_sup_llm_replay_keyless(AjSupLlm *l, bool keyless) { l->no_keys = keyless; }

int aj_sup_llm_replay_open(AjSupLlm *l, const char *run_dir, const char *run_id, bool live, AjError *err)
{
        _cleanup_(aj_error_clear) AjError why = {};
        int r = aj_replay_recording_load(run_dir, &l->replay, &why);
        if (r < 0)
                return aj_error_set(err, r, "replay of %s: %s", run_id, aj_error_text(&why, r));
        if (!(l->replay_of = strdup(run_id)))
                return -ENOMEM;
        l->replay_live = live;
        return 0;
}

void aj_sup_llm_replay_close(AjSupLlm *l)
{
        aj_replay_recording_free(l->replay);
        l->replay = NULL;
        free(l->replay_of);
        l->replay_of = NULL;
}

static void miss(AjSupLlm *l, AjGatewayCall *call, const char *request_sha256, const char *why, AjGatewayVerdict *v)
{
        if (l->replay_live)
                return; /* forwarded */
        bool openai = call->provider->api == AJ_GATEWAY_API_OPENAI;
        v->status = 502;
        v->error_type = openai ? "server_error" : "api_error";
        v->error_code = NULL;
        snprintf(v->message, sizeof(v->message),
                 "agentjail replay: run %s recorded no response for this request (%s %s, request sha256 %.16s...%s%s); "
                 "it was not sent to the provider",
                 l->replay_of, call->provider->name, call->path, request_sha256, why ? ": " : "", why ? why : "");
}

json_t *aj_sup_llm_replay_answer(AjSupLlm *l, AjGatewayCall *call, const char *request_sha256, AjGatewayVerdict *v,
                                 bool *ret_miss)
{
        *ret_miss = false;
        if (!l->replay)
                return NULL;
        AjReplayMatch how;
        const char *missing;
        size_t position = l->replay_position++;
        ssize_t i = aj_replay_match(l->replay, call->provider->name, call->path, request_sha256, position, &how,
                                    &missing);
        char *body = NULL, *response = NULL;
        size_t body_len = 0, response_len = 0;
        if (i >= 0) {
                const AjReplayEntry *e = &l->replay->entries[i];
                int r = aj_replay_read_body(l->replay, e, &body, &body_len);
                if (r >= 0)
                        r = aj_replay_response(e, body, body_len, &response, &response_len);
                free(body);
                if (r < 0) {
                        aj_log_errno(r, "replay of %s: cannot serve the response of call %llu", l->replay_of,
                                     (unsigned long long)e->call_id);
                        missing = "its recorded response could not be read";
                        how = AJ_REPLAY_MISS;
                }
        }
        if (how == AJ_REPLAY_MISS) {
                *ret_miss = true;
                miss(l, call, request_sha256, missing, v);
                return json_pack("{s:s, s:s?, s:b, s:s?}", "match", "miss", "run", l->replay_of, "live", l->replay_live,
                                 "why", missing);
        }
        free(v->body); /* nothing goes upstream */
        v->body = NULL;
        v->response = response;
        v->response_len = response_len;
        return json_pack("{s:s, s:I, s:s?}", "match", aj_replay_match_name(how), "call_id",
                         (json_int_t)l->replay->entries[i].call_id, "run", l->replay_of);
}
