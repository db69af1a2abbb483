/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run directory's records, one owner: the names of its files, run.json as a typed
 * record (read, compose, write, update), the anchor run.json keeps of the event chain,
 * and the typed records a breach or a held call leaves (incident.json, approval.json:
 * run-record-alerts.c). The chain itself (events.jsonl: writer, reader, verifier) is
 * src/events.h.
 *
 *   <state>/runs/<id>/run.json       the run: who, what, when, state, meters, the anchor
 *   <state>/runs/<id>/events.jsonl   the hash chain of events
 *   <state>/runs/<id>/incident.json  the last breach (quarantine)
 *   <state>/runs/<id>/approval.json  the last call or connection held for an operator
 *   <state>/runs/<id>/stdout.log, stderr.log (tty.log with a terminal), alert.log
 *   <state>/runs/<id>/llm/           the gateway's bodies ("record": "full")
 *   <state>/runs/<id>/workspace/     an overlay workspace's upper/ and work/
 *   <state>/runs/<id>/live.lock      locked while the run's supervisor or watchdog lives
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "events.h"
#include "util/error.h"
#include "util/macros.h"

/* The names of the run directory's files, spelled here only. */
#define AJ_RUN_FILE_RUN "run.json"
#define AJ_RUN_FILE_EVENTS "events.jsonl"
#define AJ_RUN_FILE_INCIDENT "incident.json"
#define AJ_RUN_FILE_APPROVAL "approval.json"
#define AJ_RUN_FILE_STDOUT "stdout.log" /* the command's output (src/supervisor/output.c) */
#define AJ_RUN_FILE_STDERR "stderr.log"
#define AJ_RUN_FILE_TTY "tty.log"         /* the terminal's transcript, with a terminal */
#define AJ_RUN_FILE_ALERT_LOG "alert.log" /* the alert command's output (src/quarantine.c) */
#define AJ_RUN_DIR_LLM "llm"              /* the gateway's bodies, "record": "full" */
#define AJ_RUN_DIR_WORKSPACE "workspace"  /* an overlay workspace's upper and work dirs */
#define AJ_RUN_FILE_ROOM "records.room"   /* room kept on disk for the records (below) */
#define AJ_RUN_FILE_LIVE "live.lock"      /* locked while the run's processes live (below) */

/*
 * Whether a run is live: the supervisor creates live.lock (0600) right after the run
 * directory and holds an exclusive flock(2) on it; the watchdog keeps the same open file
 * until it exits (the jail's init closes its copy before the command). The supervisor
 * unlocks it when the run is over; killed, it leaves the lock to the watchdog, and the
 * kernel drops it when the watchdog is gone too, whether it exits or is killed. So a run is
 * live exactly while its processes are: not a pid that may be reused by anyone's process
 * named agentjail, not a control socket that another user may serve in a runtime dir they
 * made (nor one that does not answer); and nobody but the run's owner (or root) can open
 * the file to hold the lock in their place.
 */
int aj_run_live_hold(const char *run_dir, int *ret_fd);
/* The run is over (every undo done): unlocks for every holder, the watchdog too, and closes
 * fd; with `watchdog_keeps` (a watchdog still removing the run's cgroup, "C"), only closes it:
 * the run stays live until the watchdog has recorded the removal and exits. A killed
 * supervisor never gets here: the watchdog's copy keeps the run live until it has closed the
 * chain and exits. Accepts -1. */
void aj_run_live_release(int fd, bool watchdog_keeps);
/* 1 held (live), 0 not (its processes are gone), -ENOENT no live.lock (a run of an older
 * agentjail, or one whose directory is being made), other -errno: cannot tell. */
int aj_run_live_held(const char *run_dir);

/* run.json and incident.json are read whole, up to this size. */
#define AJ_RUN_JSON_MAX (16 * 1024 * 1024)

/* "<run_dir>/<name>" into buf; -ENAMETOOLONG when it does not fit. */
int aj_run_file_path(const char *run_dir, const char *name, char *buf, size_t len);

/*
 * The records' room: disk space allocated for the run's own records while it lives. One
 * write of the agent's (a fallocate through an overlay workspace, whose upper layer is in
 * the run directory) can fill the state dir's filesystem between two looks of
 * limits.disk_free; run.json, incident.json and the supervisor's events would then have no
 * room, and the run would read as lost, not quarantined. The supervisor frees this room
 * (aj_run_room_release) when one of its records cannot be written for want of space, once
 * nothing in the jail can take it (frozen, killed or ended), and writes again; the
 * watchdog frees it before supervisor.lost. It is made again before a thaw, and removed
 * with the run's end. Only filesystems that allocate with fallocate(2) keep one.
 */
#define AJ_RUN_ROOM_BYTES (2 * 1024 * 1024)
/* 0, or -EOPNOTSUPP (no room kept on this filesystem), -ENOSPC... */
int aj_run_room_make(const char *run_dir);
/* 1 when it freed the room, 0 when there was none. */
int aj_run_room_release(const char *run_dir);
/* Whether a write failed for want of space, so that freeing the room may let it through. */
static inline bool aj_run_room_would_help(int r) { return r == -ENOSPC || r == -EDQUOT; }

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
        uid_t decided_by; /* with decided_at */
        /* "id": "DEV:INO", the directory the run's overlay covered (older records: none).
         * diff and commit open `path` and want this one: a symlink or another directory put
         * there since would have the agent's changes applied to it. */
        bool has_id;
        uint64_t dev, ino;
} AjRunWorkspace;

/* "quarantine" (an object after a breach; null otherwise). */
typedef struct {
        bool present;
        bool released;
        const char *since, *cap, *released_at;
        double limit, value;  /* the cap's, when it was crossed */
        bool has_released_by; /* a dead run released by an operator: */
        uid_t released_by;
} AjRunQuarantine;

/* "exit": the outcome (null while the run lives). */
typedef struct {
        bool present;
        int status;       /* agentjail's exit status */
        int code, signal; /* -1: none (null) */
        const char *reason;
} AjRunExit;

/* "network" (an allowlist, or egress counted): the proxy's counters as they are, and the
 * egress cap's two members. */
typedef struct {
        bool present;
        json_t *counters;                    /* borrowed; NULL: none */
        uint64_t egress_bytes, egress_limit; /* egress_limit 0: null, no cap */
} AjRunNetwork;

/* One step of "rollback" (below): the last outcome `agentjail rollback --apply` recorded
 * for an undo record. Strings point into the document. */
typedef struct {
        const char *call_id;
        const char *tool;    /* NULL: not known */
        uint64_t result_seq; /* the tool.result's seq: the step's identity */
        const char *result;  /* "ok", "failed", "timeout", "error", "held" (src/rollback.h) */
        int exit_code;       /* -1: none */
        const char *at;      /* RFC 3339 */
        uid_t by;            /* the operator */
} AjRunRollbackStep;

/* "rollback": what `agentjail rollback --apply` did with the run's undo records (absent
 * until it ran); each step typed on read (aj_run_rollback_step_at), the counts by result. */
typedef struct {
        bool present;
        json_t *steps; /* borrowed array, in the order they were first recorded */
        size_t n_steps, n_ok, n_failed, n_held;
        const char *updated_at;
} AjRunRollback;

/*
 * run.json, typed: the one way it is read (aj_run_record_read: a view of the document as
 * read, whose strings point into `doc`), written from scratch (the supervisor fills the
 * typed members and aj_run_record_compose makes the document) and changed (the
 * aj_run_record_* updates, which edit `doc` and the view together). Members whose shape
 * another module owns are carried as JSON values ("shown", borrowed): the resolved profile
 * (profile.c), the command, the meters (meter.c), the gateway's summary (llm-record.c), the
 * usage, the cgroup's paths, the degraded notes.
 *
 * Forward compatibility: an update keeps the members of the document this version does
 * not know (and writes it back as read but for what it changes); compose writes only what
 * it knows. Older records lack members: absent is never an error, a member of the wrong
 * type is.
 */
typedef struct {
        const char *id, *name;
        const char *profile_name, *profile_path, *profile_digest;
        const char *profile_workspace_mode; /* profile.resolved.filesystem.workspace.mode */
        const char *cwd;
        const char *replay_of; /* `agentjail replay`: the run this one replays */
        bool tty;
        const char *started, *ended;        /* RFC 3339; ended NULL while running */
        uint64_t started_ns;                /* 0 if unknown (read only) */
        const char *status;                 /* "starting", "running", "exited" */
        const char *state;                  /* "running", "frozen", "quarantined", "exited" */
        pid_t supervisor_pid, watchdog_pid; /* 0 if unknown */
        uid_t host_uid;
        gid_t host_gid;
        const char *cgroup_mode;
        AjRunWorkspace workspace;
        AjRunQuarantine quarantine;
        AjRunNetwork network;
        AjRunExit exit;
        AjRunAnchor anchor;
        AjRunRollback rollback;
        /* JSON values (borrowed from doc, or from the composer), NULL when absent. The
         * members that are typed above are here too, as they are, for showing. */
        struct {
                json_t *command, *workspace, *quarantine, *meters, *network, *usage, *exit, *degraded;
                json_t *resolved, *llm, *cgroup_paths;
                json_t *hooks; /* the agent hooks `run --hooks` installed (agent-hooks.c) */
                /* the workspace when the run started (src/workspace-digest.c): its digest,
                 * and for an overlay the lower layer it covers */
                json_t *workspace_start;
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

/* A new record from the typed members of `in` (its doc is not used; the JSON values are
 * referenced, not copied: pass values nobody changes afterwards): run.json as the
 * supervisor writes it, the members in the order a reader meets them. */
int aj_run_record_compose(const AjRunRecord *in, AjRunRecord **ret);

/* Updates (rec->doc and the typed view together; write with aj_run_record_write). */
/* The chain closed at `end` (by an event of type end_type): run.json's anchor. */
int aj_run_record_set_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type);
/* After an append to a dead run's chain: moves the anchor if run.json had one (an
 * unanchored chain is not made to look complete by an operator's later event), and only
 * when the append continued from it (AjChainEnd's from_*): else the file's tail was not
 * the anchored end (cut, changed, or extended since), and moving the anchor to the new end
 * would make that chain verify; it stays, and AJ_RUN_ANCHOR_KEPT is returned. Anchors of
 * older records (no "end") are moved as before. */
#define AJ_RUN_ANCHOR_KEPT 1
int aj_run_record_move_anchor(AjRunRecord *rec, const AjChainEnd *end, const char *end_type);
/* The quarantine released by `uid` at `ts`; a "quarantined" state becomes "exited" or
 * "running" (by status). */
int aj_run_record_release(AjRunRecord *rec, uid_t uid, const char *ts);
/* The overlay workspace's changes decided ("committed", "discarded") by `uid` at `ts`. */
int aj_run_record_decide_workspace(AjRunRecord *rec, const char *changes, uid_t uid, const char *ts);

/* A step of `agentjail rollback --apply` recorded (after its rollback.step event): the
 * step with the same result_seq is replaced, else it is added. */
int aj_run_record_rollback_step(AjRunRecord *rec, const AjRunRollbackStep *step);
/* Step i of rec->rollback (i < n_steps), typed when the record was read. */
void aj_run_rollback_step_at(const AjRunRecord *rec, size_t i, AjRunRollbackStep *ret);

/* "quarantine" as JSON (a new reference; null when absent): for the live state the
 * control socket answers. */
json_t *aj_run_quarantine_json(const AjRunQuarantine *q);

/* The anchor in a run.json document (see above), and set on one; tests build documents
 * with them. */
bool aj_run_doc_anchor(json_t *doc, uint64_t *ret_count, const char **ret_hash);
int aj_run_doc_set_anchor(json_t *doc, const AjChainEnd *end, const char *end_type);
/* In the watchdog: the chain closed by `end`, run.json's anchor set to it (-ENOENT
 * without a run.json: the supervisor died before the jail existed); an anchor the append
 * did not continue from stays (AJ_RUN_ANCHOR_KEPT), as in aj_run_record_move_anchor. */
int aj_run_record_anchor_at(const char *run_dir, const AjChainEnd *end, const char *end_type);

/* Verify <run_dir>'s events.jsonl at `path` against the record's anchor (rec may be
 * NULL: no run.json). See AjChainCheck. */
int aj_run_verify_chain(const AjRunRecord *rec, const char *path, AjChainCheck *ret, AjChainVerdict *ret_verdict);

/* ---- incident.json and approval.json (src/run-record-alerts.c) ----------------------- */

/*
 * incident.json: what the last breach was. The supervisor writes it (breach.c fills it),
 * the alert command gets it on stdin, `inspect` and `quarantine show` read it. Read, the
 * strings and values point into `doc`, which `quarantine show --json` prints as it is
 * (members of other versions included). Absent members are fine; a member of the wrong
 * type is an error naming the file and the member.
 */
typedef struct {
        const char *run, *name, *ts;
        const char *cap;
        double limit, value;
        json_t *request;     /* the request that would have crossed the cap, or NULL */
        const char *action;  /* "freeze", "kill" */
        json_t *usage;       /* the meters' usage then, or NULL */
        json_t *last_events; /* the chain's last events (an array) */
        /* As read: the numbers as they were written (an integer stays one when shown). */
        struct {
                json_t *limit, *value;
        } shown;
        json_t *doc; /* as read; NULL in a record to write */
} AjIncident;

void aj_incident_free(AjIncident *inc);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjIncident *, aj_incident_free);
int aj_incident_write(const char *run_dir, const AjIncident *inc);
/* -ENOENT if the run never breached a cap; -EBADMSG (with ret_error) if malformed. */
int aj_incident_read(const char *run_dir, AjIncident **ret, AjError *ret_error);
int aj_incident_from_json(json_t *doc, const char *path, AjIncident **ret, AjError *ret_error);

/*
 * approval.json: the last call held for an operator's decision, with the commands that
 * decide it; the alert command gets it on stdin. Its subject is a tool call (the broker's
 * approvals: "call", the call as `inspect` lists it) or a connection to a host (the
 * proxy's: "host", {"kind": "net", "id", "host", "port", ...}).
 */
typedef enum {
        AJ_APPROVAL_TOOL,
        AJ_APPROVAL_NET,
} AjApprovalSubject;

typedef struct {
        AjApprovalSubject subject;
        const char *run, *name, *ts;
        json_t *call;               /* AJ_APPROVAL_TOOL: the held call, as the broker describes it */
        json_t *host;               /* AJ_APPROVAL_NET: the held connection, as the proxy describes it
                       * ({"kind": "net", "id", "host", "port", ...}) */
        const char *approve, *deny; /* the operator's commands that decide it */
        const char *approve_always; /* AJ_APPROVAL_NET: ... and allow the host for the run */
        json_t *doc;                /* as read; NULL in a record to write */
} AjApproval;

void aj_approval_free(AjApproval *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjApproval *, aj_approval_free);
int aj_approval_write(const char *run_dir, const AjApproval *a);
/* -ENOENT if no call was ever held; -EBADMSG (with ret_error) if malformed. */
int aj_approval_read(const char *run_dir, AjApproval **ret, AjError *ret_error);
