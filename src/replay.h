/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replaying a recorded run (docs/replay.md): its model exchanges as the gateway recorded
 * them (llm.request / llm.response events and, unless "llm.record" is "off", the response
 * bodies under runs/ID/llm/), served again by request digest, then by position; and the diff of
 * two runs' chains, verdict by verdict.
 *
 *   src/replay.c            the diff of two chains (pure)
 *   src/replay-recording.c  the recording: read from a run directory, matched, each
 *                           response made into an HTTP response again (pure but the read)
 *   src/replay-run.c        a replay as a whole: checks, the scratch workspace, the run
 *                           (aj_jail_run), the diff; `agentjail replay` and `eval` call it
 *   src/supervisor/llm-replay.c  the gateway's replay mode in the run
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/macros.h"

/* A recorded response is served up to this size (llm-meter.c keeps at most 8 MiB). */
#define AJ_REPLAY_MAX_RESPONSE (8u << 20)
/* A replay's held calls wait this long for an operator (then they are denied; the diff
 * says "held"): a replay is not an approval session. */
#define AJ_REPLAY_APPROVAL_TIMEOUT "1s"
/* At most this many model calls are read from a recording. */
#define AJ_REPLAY_MAX_CALLS 100000

/* ---- the recording ------------------------------------------------------------------- */

typedef struct {
        uint64_t call_id; /* the original's: llm/ID.response */
        char *provider, *path;
        char request_sha256[65];
        unsigned status;
        char *content_type;  /* NULL: not recorded (older runs): from `stream` */
        bool stream;         /* llm.request's */
        bool served;         /* by this replay already */
        const char *missing; /* why it cannot be served (static text), NULL when it can */
} AjReplayEntry;

typedef struct {
        AjReplayEntry *entries; /* in the order the original made the calls */
        size_t n;
        size_t n_missing; /* entries that cannot be served */
        size_t n_refused; /* calls the original's gateway refused (never forwarded) */
        char *llm_dir;    /* <run>/llm, NULL when the run kept no bodies */
        bool bodies_kept; /* the run kept response bodies (an llm/ directory) */
} AjReplayRecording;

void aj_replay_recording_free(AjReplayRecording *rec);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjReplayRecording *, aj_replay_recording_free);

/* The recording from a chain's events (an array, in order), pure: `llm_dir` (may be NULL)
 * is where the bodies would be; `body_state(userdata, call_id)` says whether
 * llm/ID.response is there whole (0), absent (-ENOENT) or cut (-E2BIG). */
int aj_replay_recording_from_events(json_t *events, const char *llm_dir,
                                    int (*body_state)(void *userdata, uint64_t call_id), void *userdata,
                                    AjReplayRecording **ret);
/* From <run_dir>: events.jsonl and llm/. */
int aj_replay_recording_load(const char *run_dir, AjReplayRecording **ret, AjError *ret_error);
/* Whether a run can be replayed: 0, or -ENODATA with the reason (naming what is missing
 * and the record mode a replayable run needs). `record_mode`: the run's llm.record as its
 * resolved profile says ("digest", "full", "off"), NULL when not known. */
int aj_replay_recording_check(const AjReplayRecording *rec, const char *run_id, const char *record_mode,
                              AjError *ret_error);

typedef enum {
        AJ_REPLAY_MISS,
        AJ_REPLAY_DIGEST,   /* the same request (provider, path, body digest) */
        AJ_REPLAY_POSITION, /* another body, the same provider and path, at the same place */
} AjReplayMatch;

const char *aj_replay_match_name(AjReplayMatch m);

/* The recorded call that answers a request: the first unserved entry with the same
 * provider, path and body digest; else the entry at `position` (the request's place among
 * the replay's model calls, 0-based) when it is unserved and has the same provider and
 * path. The entry found is marked served. -1 and AJ_REPLAY_MISS when none (or when the
 * one found cannot be served: *ret_missing then says why). */
ssize_t aj_replay_match(AjReplayRecording *rec, const char *provider, const char *path, const char *request_sha256,
                        size_t position, AjReplayMatch *ret_match, const char **ret_missing);

/* The HTTP/1.1 response a provider would have sent for `e` with `body`: its status, its
 * content type, and an event stream chunked at its events' ends (as a provider streams
 * them), anything else with a Content-Length. malloc'd. */
int aj_replay_response(const AjReplayEntry *e, const char *body, size_t body_len, char **ret, size_t *ret_len);
/* Reads llm/ID.response of entry `e` whole (-E2BIG past AJ_REPLAY_MAX_RESPONSE or when
 * it was cut at llm.record_bytes). */
int aj_replay_read_body(const AjReplayRecording *rec, const AjReplayEntry *e, char **ret, size_t *ret_len);

/* ---- the diff of two chains ----------------------------------------------------------- */

/*
 * What changed between an original run's chain and its replay's (both arrays of events,
 * in order): a document
 *   {"changed": bool, "changes": [CHANGE...], "original": SUMMARY, "replay": SUMMARY}
 * CHANGE: {"kind": "tool"|"host"|"syscall"|"cap"|"model_call", "subject": "...",
 *          "before": V, "after": V, "seq_before": N|null, "seq_after": N|null, "reason": "..."?}
 *   tool: a tool call (name and arguments digest, the nth such call): allow, deny, breach,
 *         held (an operator was asked), none (asked, no verdict), absent (never asked)
 *   host: HOST:PORT: allowed, denied, absent
 *   syscall: a syscall name: denied, absent
 *   cap: a cap name: breach, absent (seq: the cap.breach event)
 *   model_call: a model call of the recording: served (digest/position), refused, miss, absent
 * SUMMARY: {"run", "exit", "model_calls", "input_tokens", "output_tokens", "cost_usd",
 *           "tool_calls"} (tokens and cost as the gateway measured them).
 */
int aj_replay_diff(json_t *original, json_t *replay, json_t **ret);
/* An event as aj_replay_diff reads it (*ret, a new reference): only the types it reads (and
 * the chain's first event, for the run's id), with only the members it reads; *ret NULL for
 * any other. A chain is read through this: the agent's bulk (undo records, arguments, of
 * tiny JSON values, some 20 times their bytes as a DOM) is never held. -ENOMEM. */
int aj_replay_diff_event(json_t *ev, bool first, json_t **ret);

/* ---- a replay as a whole (src/replay-run.c) -------------------------------------------- */

typedef struct {
        const char *run;     /* RUN: id, prefix or name */
        const char *profile; /* NULL: the original's resolved profile */
        char **caps;         /* --cap KEY=VALUE, NULL-terminated, may be NULL */
        bool live;           /* a request the recording lacks goes to the provider */
        bool force;          /* replay although the workspace's digest differs, or responses are missing */
        bool keep;           /* keep the scratch workspace */
        const char *workdir; /* where the scratch workspace is made (default $TMPDIR or /var/tmp) */
        int verbose;
} AjReplayOptions;

typedef struct {
        char original_id[64], replay_id[64];
        int run_status;  /* the replayed run's exit status (aj_jail_run) */
        json_t *diff;    /* aj_replay_diff's document, with "replay_of" */
        char *workspace; /* the scratch workspace (removed unless keep) */
} AjReplayResult;

void aj_replay_result_done(AjReplayResult *r);

/* Runs a replay: 0 (ret filled) or -errno with the error already reported. */
int aj_replay_run(const AjReplayOptions *o, AjReplayResult *ret);
