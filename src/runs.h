/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's view of the state directory: finding runs by id, id prefix or name,
 * telling live runs from exited and lost ones, and the few changes an operator makes to
 * a dead run's records (release from quarantine, purge). The records themselves are
 * src/run-record.h's. The supervisor never calls this.
 */
#pragma once

#include <jansson.h>
#include <limits.h>
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
        int life;           /* its directory's life lock, when the probe asked: 1 held, 0 not,
                             * -errno; AJ_RUN_LIFE_UNASKED */
        bool live;          /* alive, and the control socket accepted a connection */
        int probe_error;    /* why the live inspect failed (0 if it worked or was not tried) */
        json_t *live_state; /* the inspect op's result, when it answered */
} AjRun;

#define AJ_RUN_LIFE_UNASKED INT_MIN

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
/* Whether something of the run (its supervisor, starting or not, or a watchdog) holds the
 * life lock of the directory `dir` (state.h aj_run_dir_create; a directory being made's
 * too): 1 held, 0 not, -errno when it cannot be told. */
int aj_run_dir_held(const char *dir);

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
/* One human-readable line (no newline): "TIME  SEQ TYPE  key=value ...", each value cut
 * at 200 bytes (a summary: inspect's last events). */
int aj_event_format(json_t *ev, char **ret);
/* The same for `logs`, where an operator reviews what they approve: an approval request
 * (approval.requested) is shown whole, its arguments however long. */
int aj_event_format_log(json_t *ev, char **ret);
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
 * lives, or is starting and has no run.json yet) or its live.lock, one being rolled back
 * (`rollback --apply`), or whose overlay changes are being committed or discarded
 * (aj_run_lock_workspace). What the dead run left on the host goes first (aj_run_reap's
 * removal, not recorded: the records go with it); -ENOTEMPTY, left alone, when its cgroup
 * still holds processes: the directory is the one trace of them. */
#define AJ_RUN_REMOVING_PREFIX ".removing-"
int aj_run_remove_dir(const AjPaths *paths, const AjRun *run);
/* What aj_run_remove_dir's -ENOTEMPTY means: the run's cgroup still holds processes. */
#define AJ_RUN_REMOVE_LEFT_TEXT                                                                       \
        "its cgroup still holds processes that do not die (killed, not yet gone: in uninterruptible " \
        "sleep, or frozen): kept until they are gone, the next prune tries again"

/*
 * What a dead run left on the host. Its supervisor removes its cgroup and runtime dir at its
 * end, its watchdog when the supervisor is killed (src/supervisor/watchdog.h); both killed
 * (root's SIGKILL to the two, the OOM killer), or a watchdog that gave up on a process that
 * does not die (cgroup.left), leave them: the cgroup's directories, with whatever process of
 * the jail was slow to die still in them, and the run's host id slot taken meanwhile
 * (host-id-pool.h). `ps` shows them, `prune` reaps them.
 */
typedef struct {
        char **cgroup;     /* its cgroup's directories still there (aj_cgroup_paths), NULL none */
        char *runtime_dir; /* its runtime dir, when still there */
        bool in_use;       /* held by a live run's supervisor of that id: a reap leaves them */
} AjRunRemains;
void aj_run_remains_done(AjRunRemains *rm);
bool aj_run_remains_any(const AjRunRemains *rm);
/* "its cgroup (4 directories), its runtime dir" into buf. */
char *aj_run_remains_describe(const AjRunRemains *rm, char *buf, size_t len);
/* What of the run (one that is not alive: for a live one, its own) is still on the host;
 * -errno when that cannot be told (an unreadable cgroup layout). Its cgroup and runtime dir
 * are named by the run id alone: `in_use` when a live run's supervisor holds them (another
 * run directory's of that id: this one is a copy of its directory), by the locks aj_run_reap
 * takes, tried here and let go (so `ps` and `prune` tell one story). */
int aj_run_remains(const AjPaths *paths, const AjRun *run, AjRunRemains *ret);
/* The same for one of many runs (`ps`): its cgroup looked for only when `cgroup_ids`, the
 * n_ids ids with a cgroup directory (cgroup.h aj_cgroup_list_ids, listed once, sorted), has
 * its id (a binary search). */
int aj_run_remains_among(const AjPaths *paths, const AjRun *run, char *const *cgroup_ids, size_t n_ids,
                         AjRunRemains *ret);
/* What in_use means, for the operator (`ps`, `prune`). */
#define AJ_RUN_REMAINS_IN_USE_TEXT                                                                      \
        "in use: held by a live run of the same id (its cgroup and runtime dir are named by the id "    \
        "alone; this run directory is a copy of that run's, or that id's in another state directory), " \
        "so no prune reaps it while that run lives"

/* Whether the run's cgroup (a run not alive: what it left) still holds processes: killed,
 * not yet gone, they may still write where the run could (its overlay's upper dir). 1, 0
 * (none, or no cgroup left), -errno when that cannot be told. */
int aj_run_remains_populated(const AjRun *run);
/* What a decision that applies the run's overlay changes (`commit`, an eval case's apply),
 * and `diff` showing them for review, checks first, once it holds the changes' lock (aj_run_lock_workspace): the run is not alive
 * (aj_run_supervisor_alive: neither its supervisor nor its watchdog is there, whatever its
 * cgroup holds) and no process of it is left to write into them (aj_run_remains_populated).
 * 0 when so; -EBUSY when not, -errno when that cannot be told, each with *ret_why saying so
 * for the operator (NULL when out of memory). */
int aj_run_check_settled(const AjRun *run, char **ret_why);
/* Whether the directory open at `fd` is the one a dead run's overlay covered (run.json's
 * workspace.id): 0, -ESTALE when it is another (the path moved, or a symlink or another
 * directory put there since, through an rw bind of a directory above it), -ENODATA when the
 * record has no identity (an older agentjail's). What applies the agent's changes as root
 * (`commit`, an eval case's apply) checks the workspace it opened so: else it writes them,
 * git's own files too, wherever the agent's symlink points. */
int aj_run_workspace_check(const AjRunWorkspace *ws, int fd);
/*
 * A dead run's cgroup that no run directory leads to (its run directory deleted after its
 * supervisor and watchdog were both killed, or its watchdog gave up): its host id slot stays
 * taken while it is there (host-id-pool.h), and no reap of a run finds it. Found from the
 * slots nobody holds that keep directories (aj_host_id_pool_kept, under `pool_dir`), each
 * slot's lock held meanwhile, whose file names a run directory that is gone (one that is
 * there is its state directory's to reap, and record): removed when they are one run's
 * cgroup as aj_cgroup_open finds it (".../agentjail/<run id>"), no supervisor holds it
 * (aj_cgroup_claim) and no process is in it. Its processes are never killed: nothing says
 * whose they are any more.
 */
typedef struct {
        unsigned long host_id;
        char run_id[AJ_RUN_ID_LEN + 1]; /* "" when the directories are not a run's cgroup */
        char **cgroup;                  /* the directories the slot names that were there */
        /* 0 removed (with dry_run: would be), -ENOTEMPTY processes are in it, -EBUSY a
         * supervisor holds it, -EPERM not a run's cgroup, -ENOLINK its slot does not name
         * its run directory (an older agentjail's; both left alone), else -errno of the look
         * or the removal. */
        int error;
        /* Its runtime dir under `paths` (the one a run of that id had), when it was there and
         * the cgroup was removed (or would be): removed with it unless a supervisor holds it
         * (runtime_error -EBUSY) or the removal failed (-errno); NULL when there was none. */
        char *runtime_dir;
        int runtime_error;
} AjRunOrphan;
void aj_run_orphans_free(AjRunOrphan *v, size_t n);
int aj_run_reap_orphans(const char *pool_dir, const AjPaths *paths, bool dry_run, AjRunOrphan **ret, size_t *ret_n,
                        AjError *ret_error);

/* What aj_run_check_settled says of a run that is alive. */
#define AJ_RUN_STILL_THERE_TEXT                                                                         \
        "its supervisor or watchdog is still there (the run live, or being cleaned up), and may still " \
        "change what it left: wait for it to exit, or 'agentjail kill' it"
/* What a decision on such a run (`commit`, aj_run_remains_populated) is told to do. */
#define AJ_RUN_REMAINS_POPULATED_TEXT                                                                \
        "its supervisor is gone but its cgroup still holds processes (killed, not yet gone: in "     \
        "uninterruptible sleep, or frozen), which may still change what it left. 'agentjail prune' " \
        "(any rule: it reaps what dead runs left first, and keeps a run whose changes are pending) " \
        "kills them and removes the cgroup once they are gone, or kill them yourself ('agentjail "   \
        "ps --json' lists the cgroup's directories)"

/* How long a reap waits for the processes it killed to leave the cgroup. */
#define AJ_RUN_REAP_CGROUP_MS 10000
typedef struct {
        AjRunRemains found; /* what was there */
        char **cgroup_left; /* the cgroup's directories still there after the reap, NULL none */
        int cgroup_error;   /* why, when cgroup_left */
        int runtime_error;  /* removing the runtime dir: 0 or -errno */
        int64_t waited_ms;  /* for the cgroup to empty */
        const char *event;  /* what was recorded in the run's chain (static), NULL nothing */
} AjRunReaped;
void aj_run_reaped_done(AjRunReaped *r);
/* Reaps a dead run: under its directory's life lock, taken exclusively without waiting (so
 * never a run whose supervisor or watchdog is there, nor one starting: its directory has
 * its name only once its supervisor holds that lock, and its cgroup is made after), and with
 * its live.lock free, kills what is left in its cgroup (cgroup.kill on v2, a kill loop on v1),
 * removes the cgroup (waiting AJ_RUN_REAP_CGROUP_MS for the processes to leave) and the
 * runtime dir, and records it in the run's chain, under the records' lock: a chain nothing
 * closed is closed with supervisor.lost ("by": "operator", "watchdog": "lost"), as its
 * watchdog would have; a closed one gets cgroup.removed or runtime_dir.removed (a removal
 * that failed there is not recorded: ps shows what is left). 0 with nothing found when there
 * was nothing; -EBUSY when something of the run holds it or lives, -EPERM for a directory
 * that is not a run's of the state dir, else -errno (then *ret says what was done). */
int aj_run_reap(const AjPaths *paths, AjRun *run, AjRunReaped *ret);
/* What aj_run_remove_dir's -EBUSY means, for the operator (`prune`, `quarantine purge`). */
#define AJ_RUN_REMOVE_BUSY_TEXT                                                                            \
        "in use: its workspace changes are being committed or discarded, it is being rolled back, or its " \
        "supervisor or watchdog is still there (a run starting, live or being cleaned up)"
/* The run id in a leftover's name (AJ_RUN_REMOVING_PREFIX<id>), or NULL. */
const char *aj_run_leftover_id(const char *name);
/* Delete <state>/runs/NAME, a leftover directory (-EPERM for any other name, or a symlink). */
int aj_run_remove_leftover(const AjPaths *paths, const char *name);
/* The run id in the name of a directory being made (state.h AJ_RUN_DIR_MAKING_PREFIX<id>),
 * or NULL. One that stays is a supervisor's killed between its mkdir and its rename. */
const char *aj_run_making_id(const char *name);
/* How old such a directory must be before it is taken for a leftover: its supervisor takes
 * its lock a few syscalls after the mkdir. */
#define AJ_RUN_MAKING_GRACE_S 60
/* Removes <state>/runs/NAME, a directory being made that nobody holds (its lock taken
 * exclusively without waiting while it goes) and older than AJ_RUN_MAKING_GRACE_S: -EBUSY
 * when held or younger (a run starting), -EPERM for another name, a symlink or not a
 * directory, -ENOTEMPTY when something is in it (never a supervisor's: refused). */
int aj_run_remove_making(const AjPaths *paths, const char *name, uint64_t now_ns);
