/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail prune`: remove finished runs' directories by age or count (src/prune.c chooses). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "events.h"
#include "host-id-pool.h"
#include "mount.h"
#include "prune.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/parse.h"
#include "util/strv.h"

#define PRUNE_USAGE                                                                               \
        "agentjail prune [--older-than DURATION] [--keep N] [--quarantined] [--discard-pending] " \
        "[--dry-run] [--json]"
#define PRUNE_HELP                                                                               \
        "Remove the directories of finished runs (exited or lost) from the state directory.\n"   \
        "A live run, or one whose state cannot be told (no readable run.json), is never\n"       \
        "removed. At least one rule is needed; with both, a run goes only if both choose it.\n"  \
        "A run's time is when it ended (run.json \"ended\"), else when it started, else its\n"   \
        "directory's mtime.\n"                                                                   \
        "\n"                                                                                     \
        "  --older-than DURATION  runs that ended more than DURATION ago (30s, 15m, 12h, 7d)\n"  \
        "  --keep N               all but the newest N finished runs\n"                          \
        "  --quarantined          quarantined runs too (kept by default: evidence for review)\n" \
        "  --discard-pending      runs whose overlay workspace changes were neither committed\n" \
        "                         nor discarded too (kept by default: the agent's unreviewed\n"  \
        "                         work)\n"                                                       \
        "  --dry-run              print what would be removed, remove nothing\n"                 \
        "  --json                 one JSON document: removed, skipped (with reasons), failed\n"  \
        "\n"                                                                                     \
        "Exit status: 0 everything chosen was removed (or nothing was), 1 a removal failed,\n"   \
        "2 usage, 125 the state directory could not be read, or the runtime directory\n"         \
        "is not yours alone (others can write to it: nothing is removed)."

/* The state directory could not be read, the runtime root is refused (or memory ran out):
 * like `run`'s launcher errors. */
#define PRUNE_EXIT_ERROR 125

enum {
        OPT_OLDER_THAN = 0x200,
        OPT_KEEP,
        OPT_QUARANTINED,
        OPT_DISCARD_PENDING,
        OPT_DRY_RUN,
};

typedef struct {
        bool json, help, dry_run;
        AjPruneOptions rules;
} Options;

/* One entry of <state>/runs named like a run. */
typedef struct {
        char id[AJ_RUN_ID_LEN + 1];
        bool leftover;       /* AJ_RUN_REMOVING_PREFIX<id>: an earlier removal's rest */
        bool making;         /* AJ_RUN_DIR_MAKING_PREFIX<id>: a directory being made, or its rest */
        AjRun *run;          /* NULL: a leftover, or not a directory (refused) */
        bool reap;           /* a dead run that left something on the host (runs.h aj_run_reap) */
        AjRunReaped reaped;  /* what the reap did */
        int reap_error;      /* the reap's */
        mode_t type;         /* S_IFMT of the entry itself (lstat) */
        const char *state;   /* what ps shows */
        const char *time_of; /* "ended", "started", "mtime" */
        AjPruneRun facts;
        AjPruneDecision d;
        uint64_t bytes;
        bool bytes_exact;
        int error; /* the removal's */
} Entry;

static void entries_free(Entry *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                aj_run_free(v[i].run);
                aj_run_reaped_done(&v[i].reaped);
        }
        free(v);
}

static int parse_options(int argc, char **argv, Options *o)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "older-than", required_argument, NULL, OPT_OLDER_THAN },
                { "keep", required_argument, NULL, OPT_KEEP },
                { "quarantined", no_argument, NULL, OPT_QUARANTINED },
                { "discard-pending", no_argument, NULL, OPT_DISCARD_PENDING },
                { "dry-run", no_argument, NULL, OPT_DRY_RUN },
                {},
        };
        const char *cmd = "prune";
        uint64_t v;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        o->help = true;
                        return 0;
                case CLI_OPT_JSON:
                        o->json = true;
                        break;
                case OPT_OLDER_THAN:
                        if (aj_parse_duration(optarg, &v) < 0)
                                return cli_usage_error(cmd, PRUNE_USAGE,
                                                       "--older-than: expected a duration such as 12h or 7d, got '%s'",
                                                       optarg);
                        o->rules.has_older_than = true;
                        o->rules.older_than_ns = v;
                        break;
                case OPT_KEEP:
                        if (aj_parse_u64(optarg, &v) < 0 || v > SIZE_MAX / 2)
                                return cli_usage_error(cmd, PRUNE_USAGE,
                                                       "--keep: expected a number of runs (0 or more), got '%s'",
                                                       optarg);
                        o->rules.has_keep = true;
                        o->rules.keep = (size_t)v;
                        break;
                case OPT_QUARANTINED:
                        o->rules.quarantined = true;
                        break;
                case OPT_DISCARD_PENDING:
                        o->rules.discard_pending = true;
                        break;
                case OPT_DRY_RUN:
                        o->dry_run = true;
                        break;
                default:
                        return cli_option_error(cmd, PRUNE_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals(cmd, PRUNE_USAGE, argc - optind, argv + optind, 0, 0);
        if (r)
                return r;
        if (!o->rules.has_older_than && !o->rules.has_keep)
                return cli_usage_error(cmd, PRUNE_USAGE,
                                       "say which runs: --older-than DURATION, --keep N or both (nothing is pruned "
                                       "without a rule)");
        return 0;
}

/* An overlay workspace whose changes nobody decided, with changes to decide: its upper dir
 * holds something (or cannot be read: then it may). */
static bool overlay_pending(const AjRun *run)
{
        const AjRunWorkspace *ws = &run->rec->workspace;
        if (!ws->mode || !streq(ws->mode, "overlay") || (ws->changes && !streq(ws->changes, "pending")))
                return false;
        char dir[PATH_MAX], upper[PATH_MAX + 8];
        if (aj_run_file_path(run->dir, AJ_RUN_DIR_WORKSPACE, dir, sizeof(dir)) < 0)
                return true;
        snprintf(upper, sizeof(upper), "%s/%s", dir, AJ_OVERLAY_UPPER);
        int fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno != ENOENT; /* no upper dir: nothing was kept to decide */
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return true;
        }
        bool any = false;
        struct dirent *de;
        while (!any && (de = readdir(d)))
                any = !streq(de->d_name, ".") && !streq(de->d_name, "..");
        closedir(d);
        return any;
}

/* What prune needs to know of a run directory: the same probe as ps, quarantine purge and
 * diff. Live is the run's processes holding its live.lock, not a socket's answer: a
 * socket anyone can serve must neither keep a dead run forever nor, silent, give up a
 * live one. */
static void entry_facts(Entry *e, const struct stat *st)
{
        AjRun *run = e->run;
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        e->state = aj_run_display_state(run);
        /* Without run.json only a run lost in start-up (aj_run_display_state) is finished. */
        e->facts.life = run->alive                                                              ? AJ_PRUNE_LIVE
                        : streq(e->state, "unknown") || (!run->rec && !streq(e->state, "lost")) ? AJ_PRUNE_UNKNOWN
                                                                                                : AJ_PRUNE_FINISHED;
        e->facts.quarantined = run->rec && aj_run_record_quarantined(run->rec);
        e->facts.pending = run->rec && overlay_pending(run);
        e->facts.owned = geteuid() == 0 || st->st_uid == geteuid();
        uint64_t ended = 0;
        if (run->rec && run->rec->ended && aj_parse_timestamp(run->rec->ended, &ended) >= 0 && ended) {
                e->facts.time_ns = ended;
                e->time_of = "ended";
        } else if (run->started_ns) {
                e->facts.time_ns = run->started_ns;
                e->time_of = "started";
        } else {
                e->facts.time_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec;
                e->time_of = "mtime";
        }
}

/* Every entry of <state>/runs named like a run id; directories loaded and judged, anything
 * else kept as a refusal (a symlink is never followed). */
/* Whether a directory being made is held by its supervisor (or cannot be told: as held). */
static bool making_held(const char *runs, const char *name)
{
        char path[PATH_MAX];
        return snprintf(path, sizeof(path), "%s/%s", runs, name) >= (int)sizeof(path) || aj_run_dir_held(path) != 0;
}

static int gather(const AjPaths *paths, uint64_t now_ns, Entry **ret, size_t *ret_n)
{
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/runs", paths->state_root) < 0)
                return -ENOMEM;
        Entry *v = NULL;
        size_t n = 0, cap = 0;
        DIR *d = opendir(dir);
        if (!d) {
                *ret = NULL;
                *ret_n = 0;
                return errno == ENOENT ? 0 : -errno;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *leftover = aj_run_leftover_id(de->d_name), *making = aj_run_making_id(de->d_name);
                if (!leftover && !making && !aj_run_id_valid(de->d_name))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        Entry *nv = reallocarray(v, nc, sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = nc;
                }
                Entry *e = &v[n];
                /* A leftover that is not a directory is refused like any such entry. */
                *e = (Entry){ .type = st.st_mode & S_IFMT,
                              .leftover = leftover && S_ISDIR(st.st_mode),
                              .making = making && S_ISDIR(st.st_mode) };
                memcpy(e->id, leftover ?: making ?: de->d_name, AJ_RUN_ID_LEN); /* a valid id: that long */
                if (making) {
                        /* Its supervisor's lock, held from a few syscalls after the mkdir until the
                         * rename: unheld and past the grace, a supervisor killed in between left it
                         * (empty: nothing is in it before the rename). Gone whatever the rules;
                         * checked again, under that lock, as it goes (aj_run_remove_making). */
                        uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
                        bool old = now_ns > mtime && now_ns - mtime >= AJ_RUN_MAKING_GRACE_S * 1000000000ull;
                        if (!e->making || !old || making_held(dir, de->d_name))
                                continue; /* a run starting: not listed */
                        n++;
                        e->state = "making";
                        e->facts.life = AJ_PRUNE_UNKNOWN;
                        e->facts.owned = geteuid() == 0 || st.st_uid == geteuid();
                        e->d = (AjPruneDecision){ .verdict = e->facts.owned ? AJ_PRUNE_REMOVE : AJ_PRUNE_KEEP_NOT_OWNER,
                                                  .matched = true };
                        continue;
                }
                if (e->leftover) {
                        /* Chosen and started on already: finished whatever the rules say. */
                        n++;
                        e->state = "removing";
                        e->facts.life = AJ_PRUNE_UNKNOWN;
                        e->facts.owned = geteuid() == 0 || st.st_uid == geteuid();
                        e->d = (AjPruneDecision){ .verdict = e->facts.owned ? AJ_PRUNE_REMOVE : AJ_PRUNE_KEEP_NOT_OWNER,
                                                  .matched = true };
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        int q = aj_run_load(paths, e->id, &e->run);
                        if (q == -ENOENT)
                                continue; /* gone meanwhile */
                        if (q < 0)
                                e->run = NULL; /* swapped for something else: refused below */
                }
                n++;
                if (e->run)
                        entry_facts(e, &st);
                else {
                        e->facts.life = AJ_PRUNE_UNKNOWN;
                        e->state = "unknown";
                }
        }
        closedir(d);
        if (r < 0) {
                entries_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* What dead runs left on the host (their cgroup with what in it was slow to die, their runtime
 * dir: a supervisor killed with its watchdog, a watchdog that gave up), reaped first whatever
 * the rules (runs.h aj_run_reap); with --dry-run only found. A run whose cgroup stays is kept
 * (the prune.h fact "remains"): its directory is the one trace of it. 1 when a reap failed. */
static int reap(const AjPaths *paths, Entry *v, size_t n, bool dry_run)
{
        int status = CLI_EXIT_OK;
        for (size_t i = 0; i < n; i++) {
                Entry *e = &v[i];
                AjRun *run = e->run;
                /* A malformed run.json: its state cannot be told, nor its chain closed. */
                if (!run || run->alive || !e->facts.owned || (!run->rec && run->rec_error.err < 0))
                        continue;
                if (dry_run) {
                        e->reap = aj_run_remains(paths, run, &e->reaped.found) >= 0 &&
                                  aj_run_remains_any(&e->reaped.found);
                        /* What the reap would find: a live run's of the same id is left. */
                        if (e->reap && e->reaped.found.in_use) {
                                e->reap_error = -EBUSY;
                                e->facts.in_use = true;
                        }
                        continue;
                }
                e->reap_error = aj_run_reap(paths, run, &e->reaped);
                e->reap = e->reap_error < 0 || aj_run_remains_any(&e->reaped.found);
                if (e->reap_error < 0 || e->reaped.cgroup_left) {
                        e->facts.in_use = e->reaped.found.in_use;
                        e->facts.remains = !e->facts.in_use;
                        status = CLI_EXIT_FAIL;
                }
        }
        return status;
}

/* Why a reap failed, for the operator. */
static void reap_error_text(const Entry *e, char *buf, size_t len)
{
        if (e->reap_error < 0)
                snprintf(buf, len, "cannot reap it: %s",
                         e->reaped.found.in_use    ? AJ_RUN_REMAINS_IN_USE_TEXT
                         : e->reap_error == -EBUSY ? AJ_RUN_REMOVE_BUSY_TEXT
                                                   : strerror(-e->reap_error));
        else
                snprintf(buf, len, "%s (%s)", AJ_RUN_REMOVE_LEFT_TEXT, strerror(-e->reaped.cgroup_error));
}

/* Cgroups no run directory leads to, found from the host id slots they keep (runs.h
 * aj_run_reap_orphans): root's, the pool being the host's. */
typedef struct {
        AjRunOrphan *v;
        size_t n;
} Orphans;

static void orphans_done(Orphans *os) { aj_run_orphans_free(os->v, os->n); }

/* 1 when one could not be removed for another reason than a live run holding it or a slot
 * of an older agentjail's (which is only told). */
static int reap_orphans(const AjPaths *paths, bool dry_run, Orphans *ret)
{
        if (geteuid() != 0)
                return CLI_EXIT_OK;
        AjError err = { 0 };
        int r = aj_run_reap_orphans(AJ_HOST_ID_POOL_DIR, paths, dry_run, &ret->v, &ret->n, &err);
        if (r < 0) {
                cli_fail("prune", "cannot look for cgroups no run directory leads to: %s", aj_error_text(&err, r));
                aj_error_clear(&err);
                return CLI_EXIT_FAIL;
        }
        for (size_t i = 0; i < ret->n; i++)
                if ((ret->v[i].error < 0 && ret->v[i].error != -EBUSY && ret->v[i].error != -ENOLINK) ||
                    (ret->v[i].runtime_error < 0 && ret->v[i].runtime_error != -EBUSY))
                        return CLI_EXIT_FAIL;
        return CLI_EXIT_OK;
}

/* What became of one, for a person. */
static const char *orphan_action(const AjRunOrphan *o, bool dry_run)
{
        return o->error == 0 ? (dry_run ? "would reap" : "reaped")
               : o->error == -EBUSY || o->error == -ENOTEMPTY || o->error == -EPERM || o->error == -ENOLINK ? "kept"
                                                                                                            : "failed";
}

static void orphan_message(const AjRunOrphan *o, bool dry_run, char *buf, size_t len)
{
        size_t dirs = aj_strv_length(o->cgroup);
        char what[160];
        snprintf(what, sizeof(what), "host id slot %lu keeps %s%s (%zu director%s), no run directory leads to it",
                 o->host_id, o->run_id[0] ? "the cgroup of run " : "directories", o->run_id, dirs,
                 dirs == 1 ? "y" : "ies");
        snprintf(buf, len, "%s: %s", what,
                 o->error == 0 ? (dry_run ? "empty, would be removed" : "empty, removed: the slot is free")
                 : o->error == -ENOTEMPTY
                         ? "processes are still in it (its cgroup.procs lists them): kill them, the next prune "
                           "removes it"
                 : o->error == -EBUSY ? "held by a live run of that id"
                 : o->error == -EPERM ? "not a run's cgroup: left alone"
                 : o->error == -ENOLINK
                         ? "empty, but its slot does not name its run directory (an older agentjail's): left alone; "
                           "rmdir its directories to free the slot, unless a dead run's directory of yours names it "
                           "('agentjail prune' there reaps it)"
                         : strerror(-o->error));
        if (o->runtime_dir) {
                size_t at = strlen(buf);
                snprintf(buf + at, len - at, "; its runtime dir %s",
                         o->runtime_error == 0        ? (dry_run ? "would be removed" : "removed")
                         : o->runtime_error == -EBUSY ? "held by a live run of that id: left"
                                                      : strerror(-o->runtime_error));
        }
}

/* What became of an orphan's runtime dir (o->runtime_dir set), for --json. */
static const char *orphan_runtime_action(const AjRunOrphan *o, bool dry_run)
{
        return o->runtime_error == 0        ? (dry_run ? "would remove" : "removed")
               : o->runtime_error == -EBUSY ? "kept"
                                            : "failed";
}

static int by_time(const void *a, const void *b)
{
        const Entry *x = a, *y = b;
        if (x->facts.time_ns != y->facts.time_ns)
                return x->facts.time_ns < y->facts.time_ns ? -1 : 1;
        return strcmp(x->id, y->id);
}

static const char *entry_name(const Entry *e) { return e->run ? cli_run_name(e->run) : "-"; }

/* Chosen to go: a run the rules chose, or an earlier removal's leftover. */
static bool chosen(const Entry *e) { return (e->run || e->leftover || e->making) && e->d.verdict == AJ_PRUNE_REMOVE; }

/* Listed: what goes, what the rules chose but stays, and whatever is refused. */
static bool listed(const Entry *e) { return chosen(e) || e->d.matched || (!e->run && !e->leftover && !e->making); }

static const char *entry_prefix(const Entry *e)
{
        return e->leftover ? AJ_RUN_REMOVING_PREFIX : e->making ? AJ_RUN_DIR_MAKING_PREFIX : "";
}

static void entry_path(const AjPaths *paths, const Entry *e, char *buf, size_t len)
{
        if (e->run)
                snprintf(buf, len, "%s", e->run->dir);
        else
                snprintf(buf, len, "%s/runs/%s%s", paths->state_root, entry_prefix(e), e->id);
}

static uint64_t entry_age(const Entry *e, uint64_t now_ns)
{
        return e->run && now_ns > e->facts.time_ns ? (now_ns - e->facts.time_ns) / 1000000000ull : 0;
}

/* Why an entry that is not a run directory stays. */
static const char *refusal(const Entry *e)
{
        if (e->type == S_IFLNK)
                return "a symlink, not a run directory: refused, not followed";
        return e->type == S_IFDIR ? "not a run directory of the state dir: refused" : "not a directory: refused";
}

/* The skip's words: the verdict's, and why its state is unknown when run.json says why. */
static void skip_message(const Entry *e, char *buf, size_t len)
{
        if (!e->run && !e->leftover && !e->making) {
                snprintf(buf, len, "%s", refusal(e));
                return;
        }
        if (e->run && e->d.verdict == AJ_PRUNE_KEEP_UNKNOWN && e->run->rec_error.err < 0) {
                snprintf(buf, len, "state unknown (%s): never pruned", aj_error_text(&e->run->rec_error, 0));
                return;
        }
        snprintf(buf, len, "%s", aj_prune_verdict_reason(e->d.verdict));
}

/* Removes (or, with --dry-run, only measures) what was chosen; 1 when a removal failed. */
static int apply(const AjPaths *paths, Entry *v, size_t n, bool dry_run, uint64_t now_ns)
{
        int status = CLI_EXIT_OK;
        for (size_t i = 0; i < n; i++) {
                Entry *e = &v[i];
                if (!chosen(e))
                        continue;
                char path[PATH_MAX];
                entry_path(paths, e, path, sizeof(path));
                int q = aj_tree_usage(path, &e->bytes);
                e->bytes_exact = q == 0;
                if (q < 0)
                        e->bytes = 0;
                if (dry_run)
                        continue;
                char name[sizeof(AJ_RUN_REMOVING_PREFIX) + sizeof(AJ_RUN_DIR_MAKING_PREFIX) + AJ_RUN_ID_LEN];
                snprintf(name, sizeof(name), "%s%s", entry_prefix(e), e->id);
                if (e->leftover)
                        e->error = aj_run_remove_leftover(paths, name);
                else if (e->making)
                        e->error = aj_run_remove_making(paths, name, now_ns);
                else
                        e->error = aj_run_remove_dir(paths, e->run);
                if (e->error < 0)
                        status = CLI_EXIT_FAIL;
        }
        return status;
}

static const char *removal_error(int r)
{
        return r == -EPERM       ? "not a run directory of the state dir (a symlink?): refused"
               : r == -EBUSY     ? AJ_RUN_REMOVE_BUSY_TEXT ": left alone"
               : r == -ENOTEMPTY ? AJ_RUN_REMOVE_LEFT_TEXT
                                 : strerror(-r);
}

static json_t *entry_json(const AjPaths *paths, const Entry *e, uint64_t now_ns)
{
        char when[40], path[PATH_MAX];
        entry_path(paths, e, path, sizeof(path));
        json_t *o = json_pack("{s:s, s:s?, s:s}", "id", e->id, "name", e->run && e->run->rec ? e->run->rec->name : NULL,
                              "state", e->state ?: "unknown");
        if (o && e->run) {
                json_object_set_new(o, "age_seconds", json_integer((json_int_t)entry_age(e, now_ns)));
                json_object_set_new(o, "time", json_string(aj_format_timestamp(e->facts.time_ns, when, sizeof(when))));
                json_object_set_new(o, "time_of", json_string(e->time_of));
        }
        if (o && (e->run || e->leftover || e->making))
                json_object_set_new(o, "dir", json_string(path));
        if (o && (e->leftover || e->making))
                json_object_set_new(o, "leftover", json_true());
        return o;
}

static json_t *strv_json(char *const *v)
{
        json_t *a = json_array();
        for (char *const *p = v; a && p && *p; p++)
                json_array_append_new(a, json_string(*p));
        return a;
}

/* {id, name, state, cgroup, runtime_dir, event} of a reap, with cgroup_left and error when
 * what it left stays. */
static json_t *reap_json(const AjPaths *paths, const Entry *e, uint64_t now_ns)
{
        json_t *j = entry_json(paths, e, now_ns);
        if (!j)
                return NULL;
        const AjRunReaped *r = &e->reaped;
        json_object_set_new(j, "cgroup", strv_json(r->found.cgroup));
        json_object_set_new(j, "runtime_dir", r->found.runtime_dir ? json_string(r->found.runtime_dir) : json_null());
        json_object_set_new(j, "event", r->event ? json_string(r->event) : json_null());
        if (e->reap_error < 0 || r->cgroup_left) {
                char msg[640];
                reap_error_text(e, msg, sizeof(msg));
                json_object_set_new(j, "cgroup_left", strv_json(r->cgroup_left));
                json_object_set_new(j, "error", json_string(msg));
        }
        return j;
}

static json_t *orphans_json(const Orphans *os, bool dry_run)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < os->n; i++) {
                const AjRunOrphan *o = &os->v[i];
                char msg[512];
                orphan_message(o, dry_run, msg, sizeof(msg));
                json_t *rt = o->runtime_dir ? json_pack("{s:s, s:s}", "path", o->runtime_dir, "action",
                                                        orphan_runtime_action(o, dry_run))
                                            : NULL;
                json_array_append_new(a, json_pack("{s:I, s:s?, s:o, s:s, s:s, s:o*}", "host_id",
                                                   (json_int_t)o->host_id, "run_id", o->run_id[0] ? o->run_id : NULL,
                                                   "cgroup", strv_json(o->cgroup), "action", orphan_action(o, dry_run),
                                                   "message", msg, "runtime_dir", rt));
        }
        return a;
}

static int print_json(const AjPaths *paths, const Entry *v, size_t n, const Options *o, uint64_t now_ns,
                      const Orphans *os)
{
        json_auto_t *removed = json_array(), *skipped = json_array(), *failed = json_array(), *reaped = json_array();
        uint64_t freed = 0;
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
                const Entry *e = &v[i];
                bool remove = chosen(e);
                kept += !remove;
                json_t *rj = e->reap ? reap_json(paths, e, now_ns) : NULL;
                if (e->reap && (!rj || json_array_append_new(reaped, rj) < 0))
                        return -ENOMEM;
                if (!listed(e))
                        continue;
                json_t *j = entry_json(paths, e, now_ns);
                if (!j)
                        return -ENOMEM;
                if (remove) {
                        json_object_set_new(j, "bytes", json_integer((json_int_t)e->bytes));
                        json_object_set_new(j, "bytes_exact", json_boolean(e->bytes_exact));
                }
                if (remove && e->error < 0) {
                        json_object_set_new(j, "error", json_string(removal_error(e->error)));
                        json_array_append_new(failed, j);
                } else if (remove) {
                        freed += e->bytes;
                        json_array_append_new(removed, j);
                } else {
                        char msg[512];
                        skip_message(e, msg, sizeof(msg));
                        json_object_set_new(j, "reason",
                                            json_string(e->run || e->leftover || e->making
                                                                ? aj_prune_verdict_name(e->d.verdict)
                                                                : "refused"));
                        json_object_set_new(j, "message", json_string(msg));
                        json_array_append_new(skipped, j);
                }
        }
        json_auto_t *doc = json_pack("{s:b, s:o, s:o, s:b, s:b, s:O, s:O, s:O, s:I, s:I, s:I}", "dry_run", o->dry_run,
                                     "older_than_seconds",
                                     o->rules.has_older_than
                                             ? json_integer((json_int_t)(o->rules.older_than_ns / 1000000000ull))
                                             : json_null(),
                                     "keep", o->rules.has_keep ? json_integer((json_int_t)o->rules.keep) : json_null(),
                                     "quarantined", o->rules.quarantined, "discard_pending", o->rules.discard_pending,
                                     "removed", removed, "skipped", skipped, "failed", failed, "runs_removed",
                                     (json_int_t)json_array_size(removed), "bytes_freed", (json_int_t)freed, "kept",
                                     (json_int_t)kept);
        if (doc && json_object_set(doc, "reaped", reaped) < 0)
                return -ENOMEM;
        if (doc && json_object_set_new(doc, "orphans", orphans_json(os, o->dry_run)) < 0)
                return -ENOMEM;
        return cli_print_json(doc);
}

static void print_line(const char *action, const Entry *e, uint64_t now_ns, const char *size, const char *note)
{
        char age[32];
        printf("%-12s  %-12s  %-16.16s  %7s  %7s  %s\n", action, e->id, entry_name(e),
               e->run ? aj_format_age(entry_age(e, now_ns), age, sizeof(age)) : "-", size, note);
}

/* The reap's line: what a dead run left on the host, and what became of it. */
static void print_reap_line(const Entry *e, bool dry_run, uint64_t now_ns)
{
        char found[128], msg[640];
        aj_run_remains_describe(&e->reaped.found, found, sizeof(found));
        if (e->reap_error < 0 || e->reaped.cgroup_left) {
                reap_error_text(e, msg, sizeof(msg));
                print_line(dry_run ? "would fail" : "failed", e, now_ns, "-", msg);
        } else if (dry_run) {
                snprintf(msg, sizeof(msg), "left on the host: %s; killed and removed", found);
                print_line("would reap", e, now_ns, "-", msg);
        } else {
                snprintf(msg, sizeof(msg), "left on the host: %s; killed and removed%s%s%s", found,
                         e->reaped.event ? " (" : "", e->reaped.event ?: "", e->reaped.event ? " in its events)" : "");
                print_line("reaped", e, now_ns, "-", msg);
        }
}

static void print_text(const Entry *v, size_t n, const Options *o, uint64_t now_ns, const Orphans *os)
{
        uint64_t freed = 0;
        size_t removed = 0, failed = 0, skipped = 0, kept = 0, reaped = 0, unreaped = 0;
        bool header = false;
        for (size_t i = 0; i < n; i++) {
                const Entry *e = &v[i];
                bool remove = chosen(e);
                kept += !remove;
                if (!listed(e) && !e->reap)
                        continue;
                if (!header) {
                        printf("%-12s  %-12s  %-16s  %7s  %7s  %s\n", "ACTION", "ID", "NAME", "AGE", "SIZE", "NOTE");
                        header = true;
                }
                if (e->reap) {
                        print_reap_line(e, o->dry_run, now_ns);
                        reaped += e->reap_error >= 0 && !e->reaped.cgroup_left;
                        unreaped += e->reap_error < 0 || e->reaped.cgroup_left;
                }
                if (!listed(e))
                        continue;
                char size[40] = "-", msg[512];
                if (remove) {
                        char sz[32];
                        snprintf(size, sizeof(size), "%s%s", e->bytes_exact ? "" : ">",
                                 aj_format_size(e->bytes, sz, sizeof(sz)));
                }
                if (remove && e->error < 0) {
                        failed++;
                        print_line("failed", e, now_ns, size, removal_error(e->error));
                } else if (remove) {
                        removed++;
                        freed += e->bytes;
                        print_line(o->dry_run ? "would remove" : "removed", e, now_ns, size,
                                   e->leftover ? "the rest of an earlier removal"
                                   : e->making ? "a directory a run's supervisor was killed making (empty)"
                                   : streq(e->time_of, "started") ? "(no end time: its start)"
                                   : streq(e->time_of, "mtime")   ? "(no times in run.json: its directory's mtime)"
                                                                  : "");
                } else {
                        skipped++;
                        skip_message(e, msg, sizeof(msg));
                        print_line("kept", e, now_ns, size, msg);
                }
        }
        size_t orphans_reaped = 0;
        for (size_t i = 0; i < os->n; i++) {
                const AjRunOrphan * or = &os->v[i];
                if (!header) {
                        printf("%-12s  %-12s  %-16s  %7s  %7s  %s\n", "ACTION", "ID", "NAME", "AGE", "SIZE", "NOTE");
                        header = true;
                }
                char msg[512];
                orphan_message(or, o->dry_run, msg, sizeof(msg));
                printf("%-12s  %-12s  %-16.16s  %7s  %7s  %s\n", orphan_action(or, o->dry_run),
                       or->run_id[0] ? or->run_id : "-", "-", "-", "-", msg);
                orphans_reaped += or->error == 0;
        }
        char sz[32];
        aj_format_size(freed, sz, sizeof(sz));
        printf("%s %zu run%s, %s %s (%llu bytes); %zu kept", o->dry_run ? "would remove" : "removed", removed,
               removed == 1 ? "" : "s", o->dry_run ? "freeing" : "freed", sz, (unsigned long long)freed, kept);
        if (skipped)
                printf(" (%zu listed above with why)", skipped);
        if (reaped)
                printf("; %s what %zu dead run%s left on the host", o->dry_run ? "would reap" : "reaped", reaped,
                       reaped == 1 ? "" : "s");
        if (unreaped)
                printf("; %zu could not be reaped", unreaped);
        if (orphans_reaped)
                printf("; %s %zu cgroup%s no run directory leads to", o->dry_run ? "would remove" : "removed",
                       orphans_reaped, orphans_reaped == 1 ? "" : "s");
        if (failed)
                printf("; %zu could not be removed", failed);
        putchar('\n');
}

int aj_cmd_prune(int argc, char **argv)
{
        Options o = { 0 };
        int r = parse_options(argc, argv, &o);
        if (r)
                return r;
        if (o.help)
                return cli_help(PRUNE_USAGE, PRUNE_HELP);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        if (cli_open_paths("prune", &paths) < 0)
                return PRUNE_EXIT_ERROR;
        /* Its reaps remove dead runs' runtime dirs: as a run uses the runtime root, only once
         * it is ours alone (one others can write may hold their symlinks and directories).
         * Made if missing, as a run makes it: one that was not there when looked at could be
         * another user's by the reaps (/tmp/agentjail-UID, a symlink made meanwhile to a
         * directory of ours holding names like run ids, and each was removed). */
        _cleanup_(aj_error_clear) AjError rt_err = {};
        r = aj_runtime_root_prepare(&paths, &rt_err);
        if (r < 0) {
                cli_fail("prune", "%s; nothing was removed", aj_error_text(&rt_err, r));
                return PRUNE_EXIT_ERROR;
        }
        Entry *v = NULL;
        size_t n = 0;
        o.rules.now_ns = aj_now_realtime_ns();
        r = gather(&paths, o.rules.now_ns, &v, &n);
        if (r < 0) {
                cli_fail("prune", "cannot list '%s/runs': %s", paths.state_root, strerror(-r));
                return PRUNE_EXIT_ERROR;
        }
        if (n)
                qsort(v, n, sizeof(*v), by_time);
        int status = reap(&paths, v, n, o.dry_run);
        /* After the runs' reaps: what is left is no run's of this state directory. */
        _cleanup_(orphans_done) Orphans orphans = { 0 };
        if (reap_orphans(&paths, o.dry_run, &orphans) != CLI_EXIT_OK)
                status = CLI_EXIT_FAIL;
        _cleanup_free_ AjPruneRun *facts = calloc(n ? n : 1, sizeof(*facts));
        _cleanup_free_ AjPruneDecision *d = calloc(n ? n : 1, sizeof(*d));
        if (facts && d) {
                for (size_t i = 0; i < n; i++)
                        facts[i] = v[i].facts;
                r = aj_prune_select(facts, n, &o.rules, d);
        } else
                r = -ENOMEM;
        if (r < 0) {
                entries_free(v, n);
                cli_fail("prune", "%s", strerror(-r));
                return PRUNE_EXIT_ERROR;
        }
        for (size_t i = 0; i < n; i++)
                if (!v[i].leftover && !v[i].making)
                        v[i].d = d[i];
        if (apply(&paths, v, n, o.dry_run, o.rules.now_ns) != CLI_EXIT_OK)
                status = CLI_EXIT_FAIL;
        for (size_t i = 0; i < n; i++) {
                if (v[i].reap && (v[i].reap_error < 0 || v[i].reaped.cgroup_left)) {
                        char msg[512];
                        reap_error_text(&v[i], msg, sizeof(msg));
                        cli_fail("prune", "run %s: what it left on the host stays: %s", v[i].id, msg);
                }
                if (chosen(&v[i]) && v[i].error < 0) {
                        char path[PATH_MAX], left[PATH_MAX];
                        entry_path(&paths, &v[i], path, sizeof(path));
                        snprintf(left, sizeof(left), "%s/runs/" AJ_RUN_REMOVING_PREFIX "%s", paths.state_root, v[i].id);
                        struct stat st;
                        bool behind = !v[i].leftover && lstat(left, &st) == 0;
                        cli_fail("prune", "cannot remove '%s': %s%s%s%s", path, removal_error(v[i].error),
                                 behind ? " (what is left is '" : "", behind ? left : "",
                                 behind ? "': the next prune tries again)" : "");
                }
        }
        if (o.json)
                r = print_json(&paths, v, n, &o, o.rules.now_ns, &orphans);
        else
                print_text(v, n, &o, o.rules.now_ns, &orphans);
        entries_free(v, n);
        if (r < 0)
                return PRUNE_EXIT_ERROR;
        return status;
}
