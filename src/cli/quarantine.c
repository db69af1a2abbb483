/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail quarantine [list | show | release | purge]`: runs stopped by a breach. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "control.h"
#include "util/clock.h"
#include "util/syscalls.h"

/* How long purge waits for a killed run's supervisor to finish. */
#define PURGE_WAIT_MS 20000
#define QUARANTINE_HELP                                                                        \
        "  list           runs quarantined after a cap breach and not released (default)\n"    \
        "  show RUN       the incident record: cap, value, limit, trigger, last events\n"      \
        "  release RUN    release it: a live run is thawed; a dead run's records are marked\n" \
        "  purge RUN      kill the run if it is live, then delete its run directory"
#define QUARANTINE_USAGE "agentjail quarantine [list | show RUN | release RUN | purge RUN] [--json]"

static json_t *quarantine_entry(AjRun *run)
{
        const AjRunQuarantine *q = run->rec ? &run->rec->quarantine : &(AjRunQuarantine){ 0 };
        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        (void)aj_incident_read(run->dir, &inc, NULL);
        const char *cap = q->cap ?: inc ? inc->cap : NULL;
        return json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:b}", "id", run->id, "name", run->rec ? run->rec->name : NULL,
                         "state", aj_run_display_state(run), "since", q->since, "cap", cap, "incident", inc != NULL);
}

static int quarantine_list(bool json)
{
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        if (cli_open_paths("quarantine", &paths) < 0)
                return CLI_EXIT_FAIL;
        AjRun **runs = NULL;
        size_t n = 0;
        int r = aj_runs_list(&paths, &runs, &n);
        if (r < 0) {
                cli_fail("quarantine", "cannot list '%s/runs': %s", paths.state_root, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        json_auto_t *arr = json_array();
        if (!json)
                printf("%-12s  %-16s  %-11s  %-14s  %s\n", "ID", "NAME", "STATE", "CAP", "SINCE");
        for (size_t i = 0; i < n; i++) {
                if (!aj_run_record_quarantined(runs[i]->rec))
                        continue;
                json_t *e = quarantine_entry(runs[i]);
                if (!json)
                        printf("%-12s  %-16.16s  %-11s  %-14.14s  %s\n", runs[i]->id, cli_run_name(runs[i]),
                               cli_jstr(e, "state"), cli_jstr(e, "cap") ?: "?", cli_jstr(e, "since") ?: "?");
                json_array_append_new(arr, e);
        }
        aj_runs_free(runs, n);
        if (json) {
                json_auto_t *doc = json_pack("{s:O}", "runs", arr);
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        }
        return CLI_EXIT_OK;
}

static int quarantine_show(AjRun *run, bool json)
{
        _cleanup_(aj_incident_freep) AjIncident *inc = NULL;
        _cleanup_(aj_error_clear) AjError e = { 0 };
        int r = aj_incident_read(run->dir, &inc, &e);
        if (r < 0) {
                if (r == -ENOENT)
                        cli_fail("quarantine", "run %s has no incident record (it never breached a cap)", run->id);
                else if (e.message)
                        cli_fail("quarantine", "%s", e.message);
                else
                        cli_fail("quarantine", "cannot read '%s/%s': %s", run->dir, AJ_RUN_FILE_INCIDENT, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (json)
                return cli_print_json(inc->doc) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        printf("run         %s (%s), state %s\n", run->id, cli_run_name(run), aj_run_display_state(run));
        printf("cap         %s: value ", inc->cap ?: "?");
        cli_print_value(inc->shown.value ?: json_null());
        printf(", limit ");
        cli_print_value(inc->shown.limit ?: json_null());
        putchar('\n');
        /* The other members as they are (those of other versions too). */
        const char *key;
        json_t *v;
        json_object_foreach (inc->doc, key, v) {
                if (streq(key, "cap") || streq(key, "value") || streq(key, "limit") || streq(key, "last_events") ||
                    streq(key, "run"))
                        continue;
                printf("%-11s ", key);
                cli_print_value(v);
                putchar('\n');
        }
        const AjRunQuarantine *q = run->rec ? &run->rec->quarantine : NULL;
        if (q && q->present)
                printf("quarantine  %s%s%s\n", q->released ? "released" : "not released", q->released_at ? " at " : "",
                       q->released_at ?: "");
        const AjRunRollback *rb = run->rec ? &run->rec->rollback : NULL;
        if (rb && rb->present)
                printf("rollback    %zu ok, %zu failed, %zu held (agentjail inspect %s)\n", rb->n_ok, rb->n_failed,
                       rb->n_held, run->id);
        puts("last events:");
        cli_print_events(inc->last_events);
        return CLI_EXIT_OK;
}

static int quarantine_release(AjRun *run, bool json)
{
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        if (run->live) {
                json_auto_t *req = json_pack("{s:s}", "op", "release");
                return cli_control_op("quarantine", run, req, json, "released from quarantine");
        }
        if (run->alive) {
                cli_fail("quarantine", "run %s is running but its control socket does not answer; not releasing it",
                         run->id);
                return CLI_EXIT_FAIL;
        }
        int r = aj_run_release_offline(run, getuid());
        if (r == -EALREADY || r == -ENOENT) {
                cli_fail("quarantine", "run %s is not quarantined", run->id);
                return CLI_EXIT_FAIL;
        }
        if (r < 0) {
                cli_fail("quarantine", "cannot release run %s: %s", run->id, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:b}", "run", run->id, "op", "release", "ok", 1, "live",
                                             0);
                cli_print_json(doc);
        } else {
                printf("run %s released from quarantine (it is not live: records updated)\n", run->id);
        }
        return CLI_EXIT_OK;
}

static int wait_pidfd(int pidfd, int timeout_ms)
{
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        for (;;) {
                int n = poll(&p, 1, timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
        }
}

/* The run directory removed once its supervisor has let go of it (state.h
 * aj_run_dir_create): a killed run's supervisor whose pid run.json does not name (a run
 * killed while it started) is waited for here, up to the deadline. */
static int remove_when_let_go(const AjPaths *paths, const AjRun *run, int64_t deadline_ms)
{
        for (;;) {
                int r = aj_run_remove_dir(paths, run);
                if (r != -EBUSY || (int64_t)aj_now_monotonic_ms() >= deadline_ms)
                        return r;
                (void)poll(NULL, 0, 20);
        }
}

static int quarantine_purge(const AjPaths *paths, AjRun *run, bool json)
{
        aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
        int64_t deadline = (int64_t)aj_now_monotonic_ms() + PURGE_WAIT_MS;
        bool supervisor = run->alive, killed = false;
        if (run->live || supervisor) {
                /* Starting (no run.json yet: alive by its directory's life lock, no socket). */
                if (!run->live && !run->rec) {
                        cli_fail("quarantine", "cannot remove '%s': " AJ_RUN_REMOVE_BUSY_TEXT, run->dir);
                        return CLI_EXIT_FAIL;
                }
                if (!run->live) {
                        cli_fail("quarantine",
                                 "run %s is live but its control socket does not answer: cannot kill it, "
                                 "not purging",
                                 run->id);
                        return CLI_EXIT_FAIL;
                }
                /* Opened before the kill so its exit cannot be missed. */
                _cleanup_close_ int pidfd = supervisor && run->rec ? sys_pidfd_open(run->rec->supervisor_pid, 0) : -1;
                json_auto_t *req = json_pack("{s:s}", "op", "kill");
                json_auto_t *reply = NULL;
                int r = aj_control_call(run->control_path, req, CLI_CONTROL_TIMEOUT_MS, &reply);
                if (r < 0 || !json_is_true(json_object_get(reply, "ok"))) {
                        _cleanup_free_ char *err = r < 0 ? NULL : aj_control_reply_error(reply);
                        cli_fail("quarantine", "run %s is live and could not be killed (%s): not purging", run->id,
                                 err ? err : strerror(-r));
                        return CLI_EXIT_FAIL;
                }
                if (pidfd >= 0 && wait_pidfd(pidfd, PURGE_WAIT_MS) < 0) {
                        cli_fail("quarantine",
                                 "run %s was killed but its supervisor is still running after %ds: "
                                 "not purging",
                                 run->id, PURGE_WAIT_MS / 1000);
                        return CLI_EXIT_FAIL;
                }
                killed = true;
        }
        int r = killed ? remove_when_let_go(paths, run, deadline) : aj_run_remove_dir(paths, run);
        if (r < 0) {
                cli_fail("quarantine", "cannot remove '%s': %s", run->dir,
                         r == -EPERM   ? "not a run directory of the state dir"
                         : r == -EBUSY ? AJ_RUN_REMOVE_BUSY_TEXT
                                       : strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:s, s:b, s:s}", "run", run->id, "op", "purge", "ok", 1, "dir",
                                             run->dir);
                cli_print_json(doc);
        } else {
                printf("run %s purged (%s removed)\n", run->id, run->dir);
        }
        return CLI_EXIT_OK;
}

int aj_cmd_quarantine(int argc, char **argv)
{
        static const struct option options[] = { CLI_OPTIONS_COMMON, {} };
        bool json = false;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (c == 'h') {
                        puts("usage: " QUARANTINE_USAGE "\n\n" QUARANTINE_HELP);
                        return CLI_EXIT_OK;
                }
                if (c != CLI_OPT_JSON)
                        return cli_option_error("quarantine", QUARANTINE_USAGE, c, argv);
                json = true;
        }
        int n = argc - optind;
        char **pos = argv + optind;
        int r = cli_check_positionals("quarantine", QUARANTINE_USAGE, n, pos, 0, 2);
        if (r)
                return r;
        const char *sub = n > 0 ? pos[0] : "list";
        if (streq(sub, "list")) {
                if (n > 1)
                        return cli_usage_error("quarantine", QUARANTINE_USAGE, "unexpected argument '%s'", pos[1]);
                return quarantine_list(json);
        }
        if (!streq(sub, "show") && !streq(sub, "release") && !streq(sub, "purge"))
                return cli_usage_error("quarantine", QUARANTINE_USAGE, "unknown subcommand '%s'", sub);
        if (n < 2)
                return cli_usage_error("quarantine", QUARANTINE_USAGE, "%s: missing RUN argument", sub);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        int (*open_run)(const char *, const char *, AjPaths *, AjRun **) = streq(sub, "show") ? cli_open_run
                                                                                              : cli_open_run_to_act;
        if (open_run("quarantine", pos[1], &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        if (streq(sub, "show"))
                return quarantine_show(run, json);
        if (streq(sub, "release"))
                return quarantine_release(run, json);
        return quarantine_purge(&paths, run, json);
}
