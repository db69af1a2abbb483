/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail ps`: the runs in the state directory. */
#include <stdio.h>
#include <string.h>

#include "cgroup.h"
#include "cli/verb.h"
#include "cli/verbs.h"
#include "util/strv.h"

#define PS_USAGE "agentjail ps [--all] [--json]"
#define PS_HELP                                                                        \
        "Runs in the state directory, oldest first: id, name, profile, state\n"        \
        "(running, frozen, quarantined, exited, lost), age, and meter usage against\n" \
        "the caps. Without --all only live and quarantined runs are shown, and dead\n" \
        "runs that left their cgroup or runtime dir on the host (agentjail prune\n"    \
        "reaps them). Leftovers marked 'in use: held by a live run of the same id'\n"  \
        "are that live run's (a cgroup and runtime dir are named by the id alone),\n"  \
        "so no prune reaps them while it lives; with --json such a run's \"left\"\n"   \
        "member has \"in_use\": true."

static void print_row(AjRun *run, const char *state, const AjRunRemains *left)
{
        json_auto_t *m = aj_run_meters(run);
        _cleanup_free_ char *meters = aj_meters_summary(m);
        char age[32], prof[256], waiting[64] = "";
        size_t held = cli_awaiting_approval(run);
        if (held)
                snprintf(waiting, sizeof(waiting), "  [%zu call%s awaiting approval]", held, held == 1 ? "" : "s");
        char stop[80] = "";
        json_t *n = json_object_get(run->live_state, "stop");
        const char *cause = cli_jstr(run->live_state, "stop_cause");
        if (json_is_integer(n))
                snprintf(stop, sizeof(stop), "  [stop %lld: %.40s]", (long long)json_integer_value(n),
                         cause ? cause : "?");
        char remains[512] = "", what[128];
        if (aj_run_remains_any(left))
                snprintf(remains, sizeof(remains),
                         left->in_use ? "  [on the host: %s, " AJ_RUN_REMAINS_IN_USE_TEXT "]"
                                      : "  [left on the host: %s; 'agentjail prune' reaps it]",
                         aj_run_remains_describe(left, what, sizeof(what)));
        printf("%-12s  %-16.16s  %-10.10s  %-11s  %7s  %s%s%s%s\n", run->id, cli_run_name(run),
               cli_run_profile(run, prof, sizeof(prof)), state,
               run->started_ns ? aj_format_age(cli_age_seconds(run), age, sizeof(age)) : "?", meters ? meters : "-",
               stop, waiting, remains);
}

/* What a dead run left on the host (runs.h aj_run_remains) as run summary members. */
static void left_json(json_t *doc, const AjRunRemains *left)
{
        if (!doc || !aj_run_remains_any(left))
                return;
        json_t *dirs = json_array();
        for (char **d = left->cgroup; dirs && d && *d; d++)
                json_array_append_new(dirs, json_string(*d));
        json_object_set_new(doc, "left",
                            json_pack("{s:o, s:s?, s:b}", "cgroup", dirs ? dirs : json_array(), "runtime_dir",
                                      left->runtime_dir, "in_use", left->in_use));
}

static int list_runs(bool all, bool json)
{
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        if (cli_open_paths("ps", &paths) < 0)
                return CLI_EXIT_FAIL;
        AjRun **runs = NULL;
        size_t n = 0;
        int r = aj_runs_list(&paths, &runs, &n);
        if (r < 0) {
                cli_fail("ps", "cannot list '%s/runs': %s", paths.state_root, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        /* Listed once: a lookup of each dead run's cgroup in every hierarchy cost ps about
         * 40 us a run (kernfs keeps no negative entries). None listed: each is looked up. */
        _cleanup_strv_free_ char **cgroup_ids = NULL;
        if (aj_cgroup_list_ids(&cgroup_ids) < 0)
                cgroup_ids = NULL;
        size_t n_cgroup_ids = aj_strv_length(cgroup_ids);
        json_auto_t *arr = json_array();
        if (!json)
                printf("%-12s  %-16s  %-10s  %-11s  %7s  %s\n", "ID", "NAME", "PROFILE", "STATE", "AGE", "METERS");
        for (size_t i = 0; i < n; i++) {
                AjRun *run = runs[i];
                aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
                const char *state = aj_run_display_state(run);
                bool active = streq(state, "running") || streq(state, "frozen") || streq(state, "quarantined");
                /* A dead run that left its cgroup or runtime dir (its supervisor killed with
                 * its watchdog, a watchdog that gave up on a process that does not die) is
                 * shown until `prune` reaps it: something of it may still run. */
                _cleanup_(aj_run_remains_done) AjRunRemains left = { 0 };
                if (!run->alive)
                        (void)aj_run_remains_among(&paths, run, cgroup_ids, n_cgroup_ids, &left);
                if (!all && !run->live && !active && !aj_run_remains_any(&left))
                        continue;
                if (run->rec_error.err < 0) /* its state shows "unknown": why, naming the file */
                        cli_fail("ps", "warning: run %s: its record is unreadable: %s", run->id,
                                 aj_error_text(&run->rec_error, 0));
                if (json) {
                        json_t *doc = cli_run_summary_json(run, state);
                        left_json(doc, &left);
                        json_array_append_new(arr, doc);
                } else
                        print_row(run, state, &left);
        }
        aj_runs_free(runs, n);
        if (json) {
                json_auto_t *doc = json_pack("{s:O}", "runs", arr);
                if (cli_print_json(doc) < 0)
                        return CLI_EXIT_FAIL;
        }
        return CLI_EXIT_OK;
}

int aj_cmd_ps(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "all", no_argument, NULL, 'a' },
                {},
        };
        bool all = false, json = false;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":ha", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        puts("usage: " PS_USAGE "\n\n" PS_HELP);
                        return CLI_EXIT_OK;
                case CLI_OPT_JSON:
                        json = true;
                        break;
                case 'a':
                        all = true;
                        break;
                default:
                        return cli_option_error("ps", PS_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals("ps", PS_USAGE, argc - optind, argv + optind, 0, 0);
        if (r)
                return r;
        return list_runs(all, json);
}
