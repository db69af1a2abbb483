/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run directory's records, one owner: the names of its files, run.json as a typed
 * record (read, write, update), the anchor run.json keeps of the event chain, and the
 * JSON records a breach or a held call leaves (incident.json, approval.json). The chain
 * itself (events.jsonl: writer, reader, verifier) is src/events.h.
 *
 *   <state>/runs/<id>/run.json       the run: who, what, when, state, meters, the anchor
 *   <state>/runs/<id>/events.jsonl   the hash chain of events
 *   <state>/runs/<id>/incident.json  the last breach (quarantine)
 *   <state>/runs/<id>/approval.json  the last tool call held for an operator's decision
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "events.h"
#include "util/error.h"
#include "util/macros.h"

/* The file names, spelled here only. */
#define AJ_RUN_FILE_RUN "run.json"
#define AJ_RUN_FILE_EVENTS "events.jsonl"
#define AJ_RUN_FILE_INCIDENT "incident.json"
#define AJ_RUN_FILE_APPROVAL "approval.json"

/* run.json and incident.json are read whole, up to this size. */
#define AJ_RUN_JSON_MAX (16 * 1024 * 1024)

/* "<run_dir>/<name>" into buf; -ENAMETOOLONG when it does not fit. */
int aj_run_file_path(const char *run_dir, const char *name, char *buf, size_t len);

/* A JSON record of the run dir, indented, written atomically (rename). */
int aj_run_file_write_json(const char *run_dir, const char *name, json_t *doc);
/* A JSON record of the run dir, read whole: -ENOENT if absent, -EBADMSG if not JSON. */
int aj_run_file_read_json(const char *run_dir, const char *name, json_t **ret);

/* incident.json: what the last breach was (the supervisor writes it, `inspect` and
 * `quarantine show` read it; its members are shown as they are). */
int aj_incident_write(const char *run_dir, json_t *incident);
/* -ENOENT if the run never breached a cap. */
int aj_incident_read(const char *run_dir, json_t **ret);

/* ---- run.json ---------------------------------------------------------------------- */

/*
 * run.json's anchor: "events": {"count", "last_sha256", "end"}, the chain's length and
 * last line's hash when it was closed ("end": what closed it: run.exit, supervisor.lost,
 * or an operator's event). Only a closed chain has one: the supervisor writes it with
 * the final run.json, the watchdog with supervisor.lost, and an operator's append to a
 * dead run moves it. A run.json without one (a live run, a supervisor killed with its
 * watchdog) cannot show a cut-off tail. Records of older agentjails: count and
 * last_sha256 in a run.json whose status is "exited" count as an anchor; in a "running"
 * one they were a snapshot, not an end.
 */
typedef struct {
        bool present;
        uint64_t count;
        char last_sha256[65];
        const char *end; /* NULL in older records */
} AjRunAnchor;

/* "workspace" (overlay workspaces only). */
typedef struct {
        bool present;
        const char *mode, *path, *upper;
        const char *changes; /* "pending", "committed", "discarded" */
        const char *decided_at;
} AjRunWorkspace;

/* "quarantine" (an object after a breach; null or absent otherwise). */
typedef struct {
        bool present;
        bool released;
        const char *since, *cap, *released_at;
} AjRunQuarantine;

/*
 * run.json, typed. The strings point into `doc`, the document as read, which also keeps
 * what is not typed here (command, meters, network, usage, exit, cgroup, degraded: shown
 * as they are) and is what is written back, so fields of other versions survive an
 * update. Change it only through the aj_run_record_* updates below.
 */
typedef struct {
        const char *id, *name;
        const char *profile_name, *profile_path, *profile_digest;
        const char *profile_workspace_mode; /* profile.resolved.filesystem.workspace.mode */
        const char *cwd;
        const char *started, *ended;        /* RFC 3339; ended NULL while running */
        uint64_t started_ns;                /* 0 if unknown */
        const char *status;                 /* "starting", "running", "exited" */
        const char *state;                  /* "running", "frozen", "quarantined", "exited" */
        pid_t supervisor_pid, watchdog_pid; /* 0 if unknown */
        AjRunWorkspace workspace;
        AjRunQuarantine quarantine;
        AjRunAnchor anchor;
        /* Members shown as they are: JSON values borrowed from doc, NULL when absent. */
        struct {
                json_t *command, *workspace, *quarantine, *meters, *network, *usage, *exit, *degraded;
        } shown;
        json_t *doc;
} AjRunRecord;

void aj_run_record_free(AjRunRecord *rec);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjRunRecord *, aj_run_record_free);

/* Types a run.json document (takes a reference to doc). A member of the wrong type is an
 * error: -EBADMSG with ret_error (may be NULL) naming `path` and the member,
 * "'/x/run.json': \"started\" is not a string". Absent members are fine (older records). */
int aj_run_record_from_json(json_t *doc, const char *path, AjRunRecord **ret, AjError *ret_error);
/* <run_dir>/run.json: -ENOENT if absent, -EBADMSG (with ret_error) if malformed. */
int aj_run_record_read(const char *run_dir, AjRunRecord **ret, AjError *ret_error);
int aj_run_record_write(const char *run_dir, const AjRunRecord *rec);

/* run.json says the run is (or was) quarantined and nobody released it. */
bool aj_run_record_quarantined(const AjRunRecord *rec);

/* Updates (rec->doc and the typed view together; write with aj_run_record_write). */
/* After an append to a dead run's chain: moves the anchor if run.json had one (an
 * unanchored chain is not made to look complete by an operator's later event). */
int aj_run_record_move_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type);
/* The quarantine released by `uid` at `ts`; a "quarantined" state becomes "exited" or
 * "running" (by status). */
int aj_run_record_release(AjRunRecord *rec, uid_t uid, const char *ts);
/* The overlay workspace's changes decided ("committed", "discarded") by `uid` at `ts`. */
int aj_run_record_decide_workspace(AjRunRecord *rec, const char *changes, uid_t uid, const char *ts);

/* The supervisor composes run.json itself (src/jail.c); these are the anchor's JSON form
 * for it. aj_run_doc_anchor: does `doc` have an anchor (see above)? */
bool aj_run_doc_anchor(json_t *doc, uint64_t *ret_count, const char **ret_hash);
int aj_run_doc_set_anchor(json_t *doc, const AjChainEnd *end, const char *end_type);
/* In the watchdog: the chain closed by `end`, run.json's anchor set to it (-ENOENT
 * without a run.json: the supervisor died before the jail existed). */
int aj_run_record_anchor_at(const char *run_dir, const AjChainEnd *end, const char *end_type);

/* Verify <run_dir>'s events.jsonl at `path` against the record's anchor (rec may be
 * NULL: no run.json). See AjChainCheck. */
int aj_run_verify_chain(const AjRunRecord *rec, const char *path, AjChainCheck *ret, AjChainVerdict *ret_verdict);
