/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's LLM gateway (docs/gateway.md): the profile's llm.providers served on the
 * jail's loopback (127.0.0.1:AJ_GATEWAY_PORT, a listener the jail's init makes in its
 * network namespace) by the relay of src/gateway/, with the metering observer: each
 * model call reserved at its worst case against the meter before it is forwarded,
 * read as it streams (a cap crossed mid-way cuts it), settled to the provider's own
 * usage, its tool calls counted, llm.request / llm.response events, and unless
 * llm.record is "off" its response bodies kept under the run directory (with "full"
 * the request bodies too; the keys redacted): what a replay answers with.
 *
 * The keys are read on the host after the clone (the jail's init never holds them), a
 * key_env variable is wiped from agentjail's own environment once read and never
 * passed on; the agent gets a base URL and a worthless placeholder key.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/gateway.h"
#include "hooks.h"
#include "meter.h"
#include "net.h"
#include "profile.h"
#include "replay.h"
#include "util/error.h"
#include "util/loop.h"

/* The output a request without max_tokens is reserved at (docs/gateway.md). */
#define AJ_SUP_LLM_DEFAULT_MAX_OUTPUT 32000ULL
/* The web searches a search tool without a bound (Anthropic's without max_uses, the
 * Responses API's) is reserved at: Claude Code's own bound (its WebSearch tool asks for
 * max_uses 8). docs/gateway.md. */
#define AJ_SUP_LLM_DEFAULT_SEARCHES 8ULL
/* The Responses API's responses remembered, for a request continuing one. */
#define AJ_SUP_LLM_HELD_RESPONSES 256
/* What one kept file costs against llm.record_bytes besides its bytes: the number of
 * files an agent can make the supervisor write is bounded too. */
#define AJ_SUP_LLM_RECORD_FILE_COST 512
/* A key file larger than this is not a key. */
#define AJ_SUP_LLM_MAX_KEY 4096

typedef struct AjSupLlmCall AjSupLlmCall;

typedef struct {
        AjMeter *meter;        /* borrowed */
        const AjHooks *hooks;  /* emit (the agent's share), breach */
        const char *run_dir;   /* borrowed: llm/ for the bodies kept */
        bool record_responses; /* llm.record "digest" or "full": llm/ID.response */
        bool record_requests;  /* "full": llm/ID.request.json too */
        uint64_t record_bytes; /* cap of everything kept under llm/ */
        uint64_t recorded;     /* written there, each file charged AJ_SUP_LLM_RECORD_FILE_COST too */
        uint64_t held;         /* bodies held in memory by calls in flight, for recording */
        bool record_cut;       /* llm.record_cut emitted: the cap was reached */
        /* run --hooks: every tool call the model asks for must reach the broker through the
         * agent's hooks before its result comes back (aj_meter_gate_missed). */
        bool gate_tools;
        /* Where a request may let the provider connect for the agent (its MCP servers, fetch
         * tools): hosts the run's network policy allows (borrowed; NULL: none), or anywhere with
         * llm.provider_fetch (each such place named in llm.request's "provider_fetch"). */
        const AjNetPolicy *net_policy;
        bool provider_fetch;
        uint8_t gate_reported[16][32]; /* sha256 of the last ids reported, so a result is once */
        size_t gate_reported_next;
        /* The Responses API's last responses, by the sha256 of their id, with the tokens a
         * request naming one as previous_response_id is billed as input besides its own
         * (the input and output of that response), which its body does not show. */
        struct {
                uint8_t id[32];
                uint64_t tokens;
        } responses[AJ_SUP_LLM_HELD_RESPONSES];
        size_t responses_next;
        size_t n_providers;
        AjGatewayProvider providers[AJ_LLM_MAX_PROVIDERS];
        char *keys[AJ_LLM_MAX_PROVIDERS]; /* wiped when freed */
        /* Before the clone, each key_env value moves into a pipe (kernel memory) and is wiped
         * from our environment, so the jail's init, a copy of us, never holds it: read back
         * after the clone. key_fd_set: the array is valid (-1: none). */
        int key_fd[AJ_LLM_MAX_PROVIDERS];
        bool key_fd_set;
        char *names[AJ_LLM_MAX_PROVIDERS];
        char *urls[AJ_LLM_MAX_PROVIDERS];
        char *ca_files[AJ_LLM_MAX_PROVIDERS];
        char **paths[AJ_LLM_MAX_PROVIDERS]; /* llm.providers.NAME.paths: opened besides the default set */
        AjGateway *gw;
        AjLoopIo *io;
        json_t *summary;       /* {"PROVIDER": {"MODEL": {"requests", tokens..., "cost_usd"}}} */
        size_t summary_models; /* model rows in it, at most AJ_SUP_LLM_SUMMARY_MODELS */
        uint64_t calls;
        bool ended; /* the run is being killed: no call is forwarded any more (aj_sup_llm_end) */
        /* Replay (llm-replay.c): calls are answered from another run's recording. */
        AjReplayRecording *replay;
        char *replay_of;
        bool replay_live;       /* a miss goes to the provider */
        bool no_keys;           /* replay without --live: no key is read, none is needed */
        size_t replay_position; /* model calls asked so far */
} AjSupLlm;

/* Before the clone: every provider's key is where the profile says (fail closed:
 * the error names the provider and the place). No key is read into memory. */
int aj_sup_llm_check_keys(AjSupLlm *l, const AjProfile *p, AjError *err);
/* The variables the agent gets (appended to *env: base URLs, placeholder keys). */
int aj_sup_llm_env(const AjProfile *p, const char *run_id, char ***env);
/* Whether NAME=... is a provider's key_env (never passed into the jail). */
bool aj_sup_llm_is_key_env(const AjProfile *p, const char *name, size_t len);
/* The API host names the gateway serves (the egress proxy refuses them), NULL-terminated,
 * and each one's port (the url's, or its scheme's), as many. */
int aj_sup_llm_reserved_hosts(const AjProfile *p, char ***ret, uint16_t **ret_ports);

/* After the clone: reads the keys (wiping a key_env value from our environment). */
int aj_sup_llm_init(AjSupLlm *l, const AjProfile *p, AjMeter *meter, const AjHooks *hooks, const char *run_dir,
                    AjError *err);
/* Serves the providers on `listen_fd` (taken, also on failure). */
int aj_sup_llm_start(AjSupLlm *l, int listen_fd, AjError *err);
int aj_sup_llm_fd(const AjSupLlm *l);
void aj_sup_llm_dispatch(AjSupLlm *l);
/* The run is being killed: every call from now on is refused (the calls the agent pipelined
 * behind the one that breached are read from the gateway's buffer, a kept connection to
 * the provider at hand; those in flight end as the jail does). */
void aj_sup_llm_end(AjSupLlm *l);
/* Model rows run.json's summary keeps, all providers together: the model name is the
 * agent's to pick, one a request, so past these a provider's further models are added up as
 * AJ_SUP_LLM_SUMMARY_OTHER (the events keep each call's). */
#define AJ_SUP_LLM_SUMMARY_MODELS 256
#define AJ_SUP_LLM_SUMMARY_OTHER "(other models)"

/* Stops serving (calls in flight end FAILED and are settled); keeps the summary. */
void aj_sup_llm_stop(AjSupLlm *l);
void aj_sup_llm_done(AjSupLlm *l);
/* run.json's "llm": per provider and model; NULL when nothing was served. Borrowed. */
json_t *aj_sup_llm_summary(const AjSupLlm *l);

/* src/supervisor/llm-replay.c: the replay mode. Before aj_sup_llm_check_keys: a replay
 * that never goes to a provider (not live) needs no key. */
void aj_sup_llm_replay_keyless(AjSupLlm *l, bool keyless);
/* After aj_sup_llm_init: answer from the recording of the run in `run_dir`. */
int aj_sup_llm_replay_open(AjSupLlm *l, const char *run_dir, const char *run_id, bool live, AjError *err);
/* For a call the meter let through: v->response from the recording, or a miss (refused
 * with 502 in the provider's shape, or forwarded when live; *ret_miss set). Returns
 * llm.request's "replay" member (a new reference), NULL when not replaying. */
json_t *aj_sup_llm_replay_answer(AjSupLlm *l, AjGatewayCall *call, const char *request_sha256, AjGatewayVerdict *v,
                                 bool *ret_miss);
void aj_sup_llm_replay_close(AjSupLlm *l);

/* src/supervisor/llm-meter.c: the observer */
void aj_sup_llm_observer(AjSupLlm *l, AjGatewayObserver *ret);

/* src/supervisor/llm-record.c: run.json's summary, and the bodies kept (llm/ID.response
 * unless "record" is "off", llm/ID.request.json with "full", under the run directory,
 * every key replaced by "[REDACTED]", llm.record_bytes in all: past it a body is cut and
 * says so). `request` is written only with record_requests. */
void aj_sup_llm_account(AjSupLlm *l, const char *provider, const char *model, const AjMeterUsage *u,
                        uint64_t cost_pusd);
/* How many more bytes of bodies a call may hold for recording (never more than can be
 * written: everything past llm.record_bytes would be cut anyway). */
uint64_t aj_sup_llm_record_room(const AjSupLlm *l);
void aj_sup_llm_record(AjSupLlm *l, uint64_t id, const char *request, size_t request_len, bool request_truncated,
                       const char *response, size_t response_len, bool response_truncated);
