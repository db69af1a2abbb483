/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's view of the state directory: finding runs by id, id prefix or name,
 * telling live runs from exited and lost ones, and the few changes an operator makes to
 * a dead run's records (release from quarantine, purge). The records themselves are
 * src/run-record.h's. The supervisor never calls this.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rollback.h"
#include "run-record.h"
#include "state.h"
#include "util/macros.h"

/* A RUN argument of at least this many characters may be an id prefix. */
#define AJ_RUN_PREFIX_MIN 4
/* For a verb that acts on the run (freeze, thaw, kill, approve, deny, commit, discard,
 * quarantine release/purge, rollback --apply): a short prefix typed for a run since removed
 * may name a newer one (4 hex digits: one new run in 65,536 shares them; 8: one in 2^32). */
#define AJ_RUN_PREFIX_MIN_ACT 8
/* Timeout for the liveness probe (an "inspect" over the control socket). */
#define AJ_RUN_PROBE_TIMEOUT_MS 2000

typedef struct {
        char *id;
        char *dir;           /* <state>/runs/<id> */
        char *control_path;  /* <runtime>/<id>/control.sock */
        AjRunRecord *rec;    /* run.json; NULL when missing or unreadable */
        AjError rec_error;   /* why run.json is unreadable, when it is there but malformed
                             * (names the file and the member; the CLI warns with it) */
        uint64_t started_ns; /* from run.json "started"; 0 if unknown */
        /* Filled by aj_run_probe(): */
        bool probed;
        bool alive;         /* its supervisor or watchdog lives (aj_run_supervisor_alive) */
        bool live;          /* alive, and the control socket accepted a connection */
        int probe_error;    /* why the live inspect failed (0 if it worked or was not tried) */
        json_t *live_state; /* the inspect op's result, when it answered */
} AjRun;

void aj_run_free(AjRun *run);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjRun *, aj_run_free);
void aj_runs_free(AjRun **runs, size_t n);

/* Is `s` a run id (AJ_RUN_ID_LEN lowercase hex digits)? */
bool aj_run_id_valid(const char *s);

/* Load runs/<id> (which must exist; run.json may be missing). */
int aj_run_load(const AjPaths *paths, const char *id, AjRun **ret);
/* Every run directory, sorted by start time (oldest first), not probed. */
int aj_runs_list(const AjPaths *paths, AjRun ***ret_runs, size_t *ret_n);
/*
 * Resolve a RUN argument: an exact id; else a unique id prefix (>= AJ_RUN_PREFIX_MIN);
 * else a run name (the most recently started run of that name). -ENOENT nothing matches,
 * -ENOTUNIQ an ambiguous prefix (ret_note lists the candidates), -EINVAL not a valid
 * RUN. *ret_note (may be NULL) gets a message for the operator when the choice was not
 * obvious (several runs of that name), else NULL.
 */
int aj_runs_find(const AjPaths *paths, const char *query, AjRun **ret, char **ret_note);
/* The same with prefixes of at least `min_prefix` characters; a shorter one (of at least
 * AJ_RUN_PREFIX_MIN) that matches a run and names none is -ERANGE (ret_note says which).
 * RUN that is both a run's name and an id prefix (of any length) of another run: with a
 * `min_prefix` above AJ_RUN_PREFIX_MIN (a verb that acts) -ENOTUNIQ, ret_note naming both;
 * else the unique prefix's run (or the name's) with a note saying so. */
int aj_runs_find_min(const AjPaths *paths, const char *query, size_t min_prefix, AjRun **ret, char **ret_note);

/* Whether the run is alive, then, only if it is, its state from the control socket
 * (inspect op); fills the probe fields. */
void aj_run_probe(AjRun *run, int timeout_ms);

/* Is pid an agentjail supervisor that is still running (pid reuse is checked by comm)?
 * Only for runs without live.lock (older agentjails): anyone may run a process of that
 * name, and may get the pid once the supervisor is gone. */
bool aj_supervisor_alive(pid_t pid);
/* Is the run alive: does its supervisor or its watchdog still hold the run directory's
 * live.lock (run-record.h)? True too when that cannot be told (nothing may act on the run
 * as over); for a run without live.lock, or one whose live.lock is not ours to open
 * (another user's run, whose owner alone may remove it anyway), run.json's supervisor_pid
 * (aj_supervisor_alive; false without run.json). A run without run.json whose live.lock
 * is not held (none yet, or not yet locked: its supervisor's first syscalls) is alive while
 * its directory's life lock is held (state.h aj_run_dir_create). Never the control socket:
 * a dead run's socket path may be served by anyone who can make the runtime dir. */
bool aj_run_supervisor_alive(const AjRun *run);

/*
 * The state to show: "running" | "frozen" | "quarantined" | "exited" | "lost" |
 * "unknown". Pure: `live_state` is the live inspect result (or NULL), `live` whether the
 * control socket answered, `supervisor_alive` whether run.json's supervisor_pid runs.
 */
const char *aj_run_state_of(const AjRunRecord *rec, bool live, json_t *live_state, bool supervisor_alive);
/* The state of a probed run. */
const char *aj_run_display_state(const AjRun *run);

/* "tokens 1200/50000 cost $0.01/$2.00 tool_calls 3/500" from a meters object
 * {"tokens": {"limit": N|null, "used": N}, ...} (the broker's meter, as in run.json and
 * the inspect op). Caps without a limit show only when used. "-" when nothing shows.
 * New string. */
char *aj_meters_summary(json_t *meters);
/* The run's meters (live ones when probed live, else run.json "meters"), with egress
 * (counted by the proxy) merged in as "egress_bytes". New reference. */
json_t *aj_run_meters(const AjRun *run);

/* "45s", "12m", "3h05m", "4d07h". */
char *aj_format_age(uint64_t seconds, char *buf, size_t len);

/* Does the event's type match a --type filter? A prefix without a dot is a whole first
 * component ("net" matches "net" and "net.connect", not "network.x"); one with a dot is a
 * plain prefix ("tool.re" matches "tool.request"). */
bool aj_event_type_matches(json_t *ev, const char *prefix);
/* One human-readable line (no newline): "TIME  SEQ TYPE  key=value ...". */
int aj_event_format(json_t *ev, char **ret);
/* The journal from the chain: every tool.result, newest first: {gen_ai.tool.call.id,
 * gen_ai.tool.name, gen_ai.tool.call.arguments, status, ts, undo, seq, rollback} with the
 * undo record the agent gave (null when none), the tool.result's seq, and the last
 * rollback.step recorded for it ({result, seq, ts}, or null). Only the first result of a
 * call the broker allowed (a tool.verdict "allow", at once or after an approval; a new
 * tool.request with the same id starts a new call) is the call's: any other result (no
 * such call, not allowed, reported already) has "orphan" (why) and no tool or arguments,
 * and is never to be undone. The tool and arguments are the request's the "allow"
 * answered: the one just before it, or after an "approval" the request that was held.
 * "undo" and "gen_ai.tool.call.arguments" are the agent's values as compact JSON text (a
 * JSON string; null when none): aj_run_journal_value parses one. */
int aj_run_tool_journal(const AjRun *run, json_t **ret_calls);
/* A journal entry's "undo" or "gen_ai.tool.call.arguments": the journal holds the agent's
 * values as their compact JSON text (a JSON string: its DOM costs 20 to 60 times the text,
 * and a run has thousands of them), this is the value itself, parsed: a new reference, NULL
 * when the entry has none (null), or when out of memory. */
json_t *aj_run_journal_value(json_t *entry, const char *key);
/*
 * A dead run's records changed by an operator: these four append to its chain and rewrite
 * its run.json under the records' lock (events.h aj_events_lock), one change at a time
 * across operators, and start from run.json as it is under the lock (run->rec is replaced:
 * the one read before may predate another operator's change).
 *
 * An event appended (continuing the chain's seq), run.json's anchor moved to it and written
 * when there is a run.json. `fields` is consumed.
 */
int aj_run_append_event(AjRun *run, const char *type, json_t *fields);
/* The records' lock itself, held until *ret_fd is closed, and run.json read again under it
 * (run->rec replaced, NULL when run.json is missing). Not `exclusive` (shared, and -ENOENT
 * without a chain): for reading a dead run's run.json and chain as one (`logs --verify`,
 * rollback's plan: an anchor read before another operator's append made the chain look
 * extended after its end, "broken"). Never around the four calls here, which take it. */
int aj_run_lock_records(AjRun *run, bool exclusive, int *ret_fd);
/* A dead run's overlay workspace decided: "workspace.commit" or "workspace.discard" (with
 * `fields`, consumed, and the operator's uid) in the chain, then run.json's workspace
 * "changes" = `changes` ("committed", "discarded"). *ret_recorded says whether the event
 * was written (so a failure is the chain's or run.json's). */
int aj_run_decide_workspace(AjRun *run, const char *changes, json_t *fields, bool *ret_recorded);
/* The lock that makes a dead run's overlay decision one at a time: `commit`, `discard`, and
 * removing the run (prune, quarantine purge) flock() its kept changes' directory
 * (<run>/workspace) exclusively, without waiting, and hold it until they are done:
 * -EWOULDBLOCK when another holds it; *ret_fd -1 (and 0) when there is no such directory. */
int aj_run_lock_workspace(const AjRun *run, int *ret_fd);
/* Mark a dead run's quarantine released in run.json and record "quarantine.release";
 * -EALREADY when it is not quarantined (any more). */
int aj_run_release_offline(AjRun *run, uid_t by_uid);
/* One step of `agentjail rollback --apply` (src/rollback.h) recorded in a dead run: its
 * "rollback.step" event in the chain, then run.json's "rollback" (and anchor).
 * *ret_recorded says whether the event was written. */
int aj_run_rollback_record(AjRun *run, const AjRollbackStep *s, const AjRollbackOutcome *o, bool *ret_recorded);
/* A run's name (`run --name`, else the command's basename), in bytes. */
#define AJ_RUN_NAME_MAX 64
/* Delete the run directory, refusing anything that is not a run dir directly below
 * <state>/runs (-EPERM). It is renamed to AJ_RUN_REMOVING_PREFIX<id> first, so a removal
 * that fails half way (a mount inside, an immutable file) leaves a leftover, not a run
 * without its record; `agentjail prune` finishes leftovers. -EBUSY, left alone: a run whose
 * supervisor or watchdog holds its directory's life lock (state.h aj_run_dir_create: it
 * lives, or is starting and has no run.json yet), one being rolled back (`rollback
 * --apply`), or whose overlay changes are being committed or discarded
 * (aj_run_lock_workspace). */
#define AJ_RUN_REMOVING_PREFIX ".removing-"
int aj_run_remove_dir(const AjPaths *paths, const AjRun *run);
/* What aj_run_remove_dir's -EBUSY means, for the operator (`prune`, `quarantine purge`). */
#define AJ_RUN_REMOVE_BUSY_TEXT                                                                            \
        "in use: its workspace changes are being committed or discarded, it is being rolled back, or its " \
        "supervisor or watchdog is still there (a run starting, live or being cleaned up)"
/* The run id in a leftover's name (AJ_RUN_REMOVING_PREFIX<id>), or NULL. */
const char *aj_run_leftover_id(const char *name);
/* Delete <state>/runs/NAME, a leftover directory (-EPERM for any other name, or a symlink). */
int aj_run_remove_leftover(const AjPaths *paths, const char *name);
