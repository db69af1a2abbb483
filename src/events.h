/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's event chain: events.jsonl, one JSON object per line, append-only.
 * Each event is written (one write(2) with O_APPEND) before the supervisor acts
 * on or answers what it records, so a crash loses nothing acknowledged.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "util/macros.h"

typedef struct AjEventLog AjEventLog;

int aj_events_open(const char *path, const char *run_id, AjEventLog **ret);
/* Append {seq, ts, run, type, prev, ...fields}. `fields` (an object or NULL) is consumed. */
int aj_events_emit(AjEventLog *log, const char *type, json_t *fields);
uint64_t aj_events_last_seq(const AjEventLog *log);
/* Continue a chain already in the file: the next event is last_seq + 1, linked to the
 * line whose hash is last_hash. */
void aj_events_resume(AjEventLog *log, uint64_t last_seq, const char *last_hash);
/* The chain (tamper evidence): every event's "prev" is the sha256, in hex, of the line
 * before it as written (without its newline); the first event's is AJ_EVENTS_GENESIS.
 * run.json records the count and the last line's hash at the end of the run. */
#define AJ_EVENTS_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"
void aj_events_line_hash(const char *line, size_t len, char out[65]);
/* The hash of the last line written (AJ_EVENTS_GENESIS before any). */
const char *aj_events_last_hash(const AjEventLog *log);
/* Events emitted between these two are written with ONE write(2) by _end(), which
 * returns its result: a request's events reach the file together, before its reply. */
void aj_events_batch_begin(AjEventLog *log);
int aj_events_batch_end(AjEventLog *log);
void aj_events_close(AjEventLog *log);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjEventLog *, aj_events_close);

/* RFC 3339 UTC with nanoseconds: "2026-11-23T21:59:20.123456789Z" (buf >= 32). */
char *aj_format_timestamp(uint64_t realtime_ns, char *buf, size_t len);
uint64_t aj_now_realtime_ns(void);
uint64_t aj_now_monotonic_ns(void);
