/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's event chain: events.jsonl, one JSON object per line, append-only.
 * Each event is written (one write(2) with O_APPEND) before the supervisor acts
 * on or answers what it records, so a crash loses nothing acknowledged.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/clock.h"
#include "util/macros.h"

typedef struct AjEventLog AjEventLog;

/* Opens (or creates) the chain at `path` to append to, as a regular file only
 * (aj_open_regular_at: a symlink -ELOOP, a FIFO or anything else -EBADFD, at once). */
int aj_events_open(const char *path, const char *run_id, AjEventLog **ret);
/* Append {seq, ts, run, type, prev, ...fields}. `fields` (an object or NULL) is consumed. */
int aj_events_emit(AjEventLog *log, const char *type, json_t *fields);
uint64_t aj_events_last_seq(const AjEventLog *log);

/* The cap on events.jsonl (profile logs.events_bytes) is the agent's: the events its
 * actions cause (broker, proxy, seccomp denials, oom) are emitted with _emit_agent(),
 * refused with -EFBIG once the file would pass the agent's share of the cap. The
 * supervisor's own records (breach, quarantine, operator actions, run.exit) use
 * aj_events_emit(), never refused: they have the rest of the cap, a reserve of 1/16 of
 * it (at most 1 MiB), and there are a bounded few of them per breach or operator action. */
#define AJ_EVENTS_MAX_RESERVE (1ULL << 20)
uint64_t aj_events_agent_share(uint64_t cap);
/* When one of the supervisor's own events (aj_events_emit, neither held nor batched) cannot
 * be written for want of space (ENOSPC, EDQUOT), release(userdata) may free the room kept
 * for the records (run-record.h, AJ_RUN_FILE_ROOM): > 0, freed, and the event is written
 * again, once. The agent's events never use it. */
void aj_events_set_room(AjEventLog *log, int (*release)(void *userdata), void *userdata);
void aj_events_set_agent_limit(AjEventLog *log, uint64_t limit); /* 0: none */
int aj_events_emit_agent(AjEventLog *log, const char *type, json_t *fields);
/* The same, with the fields already printed: `object` (len bytes) is a compact JSON object,
 * ASCII only, without the header's keys (seq, ts, run, type, prev); the caller vouches for
 * it (util/json-fast.h prints one). For the broker's hottest events. */
int aj_events_emit_agent_text(AjEventLog *log, const char *type, const char *object, size_t len);
/* The file's size; and what it would have become with the last event refused. */
uint64_t aj_events_bytes(const AjEventLog *log);
uint64_t aj_events_wanted(const AjEventLog *log);
/* How many of `n` more bytes fit in a log of `used` bytes capped at `cap`. */
size_t aj_log_cap_fit(uint64_t used, uint64_t cap, size_t n);
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
 * returns its result: a request's events reach the file together, before its reply;
 * if one of them was refused, none is written and _end() returns that error. */
void aj_events_batch_begin(AjEventLog *log);
int aj_events_batch_end(AjEventLog *log);
/* Group commit: from _hold() to _commit() every event (and batch) is formatted, hashed
 * into the chain and kept in order, and _commit() writes them all with ONE write(2) and
 * returns its result. An event refused meanwhile drops only itself (a batch, itself
 * whole). If the write fails, none of the held events is in the chain: whoever answered
 * on their strength must not send those answers (the broker closes those connections).
 * For a server answering many requests per wake-up: one write for all of them, still
 * before any of their replies leaves. */
void aj_events_hold(AjEventLog *log);
int aj_events_commit(AjEventLog *log);
/* The file ends without a newline (a writer killed in the middle of its line): begins a
 * batch whose first byte is one, ending that line; aj_events_batch_end() writes it with the
 * events emitted meanwhile, or none of it. -EBUSY with anything held or batched. */
int aj_events_end_partial_line(AjEventLog *log);
/* Bytes formatted and not yet written (held, or in a batch). */
size_t aj_events_held_bytes(const AjEventLog *log);
void aj_events_close(AjEventLog *log);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjEventLog *, aj_events_close);

/* RFC 3339 UTC with nanoseconds: "2026-11-23T21:59:20.123456789Z" (buf >= 32). */
char *aj_format_timestamp(uint64_t realtime_ns, char *buf, size_t len);
/* "2026-11-23T22:38:56.212456483Z" -> ns since the epoch. */
int aj_parse_timestamp(const char *s, uint64_t *ret_ns);

/* ---- the chain read back (src/events-chain.c) --------------------------------------- */

/* The last `n` events of an events.jsonl, from its last megabyte (lines that are not JSON
 * objects are skipped), oldest first; fewer when the last ones hold more than 2^17 JSON
 * values between them: the agent fills these lines, and an incident or inspect holds them
 * as jansson's DOM. Parsed from the end, one line at a time, each scanned first. */
int aj_events_read_tail(const char *path, size_t n, json_t **ret_array);
/* Calls fn(event, userdata) for every line that is a JSON object, in order, until fn
 * returns < 0 (returned); *ret_bad (may be NULL) counts the other lines. -errno if
 * unreadable; -ENOMEM when a line could not be parsed for want of memory (never skipped as
 * a bad line). */
int aj_events_foreach(const char *path, int (*fn)(json_t *ev, void *userdata), void *userdata, size_t *ret_bad);

/* The end of a chain: its length and the hash of its last line (run.json's anchor). After
 * an append (aj_events_append), also the end it continued from: the file's last event
 * before it (0 and AJ_EVENTS_GENESIS for an empty file). */
typedef struct {
        uint64_t count;
        char last_hash[65];
        uint64_t from_count;
        char from_hash[65];
} AjChainEnd;
/* Did the append that made `end` continue from event `count` hashing to `hash` (run.json's
 * anchor)? */
bool aj_chain_end_continues(const AjChainEnd *end, uint64_t count, const char *hash);
/* Append an event to a chain nobody else is writing (a dead run's), continuing its seq.
 * ret_end (may be NULL) gets the chain's new end, for run.json's anchor. Whoever else may
 * append to the same dead run's chain meanwhile holds aj_events_lock() around it.
 *
 * A writer killed in the middle of a line (SIGKILL during a write(2) of a group commit,
 * a crash) leaves the file ending without a newline. If what follows the last newline is a
 * whole JSON object, only its newline was missing: it is ended and the chain goes on from
 * it. Otherwise those bytes are a torn line: it is ended, kept as it is (evidence), and
 * AJ_EVENTS_TORN {"bytes": its length, "sha256": its hash} is recorded right after it,
 * chained to the last whole line, before the event; the newline and both events are one
 * write(2). aj_events_verify() accepts a line that is not an event only right before that
 * record, and only the bytes it names. */
#define AJ_EVENTS_TORN "events.torn"
int aj_events_append(const char *path, const char *run_id, const char *type, json_t *fields, AjChainEnd *ret_end);
/* The same, for a chain whose end run.json recorded as `anchor` (count and last_hash; NULL:
 * none). The event is linked to the file's last event whatever it is, but when that is not
 * the anchored one (events removed, changed or added since the chain was closed) it says
 * so: "anchor_kept": {"count", "last_sha256"}, the anchor, which its caller then leaves
 * where it is (aj_chain_end_continues is false), so that the verifier still finds the
 * break: moved to the new end, an operator's append made a cut or changed tail verify. */
int aj_events_append_after(const char *path, const char *run_id, const AjChainEnd *anchor, const char *type,
                           json_t *fields, AjChainEnd *ret_end);
/* The lock of a dead run's records, for what writes them after its supervisor (operators'
 * verbs, the watchdog's supervisor.lost): an exclusive flock() on the chain at `path`
 * (created if missing, never a symlink), waited for; *ret_fd holds it until closed. Each
 * holder appends from the chain's last line and rewrites run.json from what it read: two at
 * once chained two events to the same one (a chain `logs --verify` calls broken), and the
 * second run.json lost the first's change. Held for one event and one run.json at a time.
 * Not `exclusive`: shared, for reading run.json and the chain as one (never creates it). */
int aj_events_lock(const char *path, bool exclusive, int *ret_fd);

/* Checks the chain of events.jsonl: consecutive seq from 1, each "prev" the sha256 of the
 * line before, and (when expect_count > 0, from run.json) that event expect_count exists
 * and hashes to expect_hash. A line that is not an event is a torn one (see
 * aj_events_append) only when the next event is AJ_EVENTS_TORN naming its length and hash;
 * an AJ_EVENTS_TORN without that line before it is a line removed. A broken chain is not
 * an error: ok is false and bad_seq and problem say where and what. < 0 only when the file
 * cannot be read. */
typedef enum {
        AJ_CHAIN_INTACT,    /* consistent, and it reaches run.json's anchor */
        AJ_CHAIN_BROKEN,    /* an event was changed, removed, added or reordered */
        AJ_CHAIN_NO_ANCHOR, /* consistent, but nothing shows whether its end was cut off */
} AjChainVerdict;
typedef struct {
        bool ok;             /* no inconsistency found */
        bool anchored;       /* the end was checked against an anchor */
        bool after_anchor;   /* not ok because events follow the anchored end (aj_run_verify_chain) */
        uint64_t count;      /* events checked */
        uint64_t bad_seq;    /* the first event that does not fit (0 when ok) */
        uint64_t torn_lines; /* lines torn by a killed writer, each named by the AJ_EVENTS_TORN after it */
        /* The file ends in this many bytes without a newline: a line torn by a killed writer
         * and nothing appended since (nobody closed the chain after it). Past an anchor
         * (expect_count) it is not ok: bytes follow the recorded end. */
        uint64_t torn_tail;
        char problem[200];
        char last_hash[65];
} AjChainCheck;
int aj_events_verify(const char *path, uint64_t expect_count, const char *expect_hash, AjChainCheck *ret);
