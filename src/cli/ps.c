/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail ps`: the runs in the state directory. */
#include <stdio.h>
#include <string.h>

#include "cli/verb.h"
#include "cli/verbs.h"

#define PS_USAGE "agentjail ps [--all] [--json]"
#define PS_HELP                                                                        \
        "Runs in the state directory, oldest first: id, name, profile, state\n"        \
        "(running, frozen, quarantined, exited, lost), age, and meter usage against\n" \
        "the caps. Without --all only live and quarantined runs are shown."

static void print_row(AjRun *run, const char *state)
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
        printf("%-12s  %-16.16s  %-10.10s  %-11s  %7s  %s%s%s\n", run->id, cli_run_name(run),
               cli_run_profile(run, prof, sizeof(prof)), state,
               run->started_ns ? aj_format_age(cli_age_seconds(run), age, sizeof(age)) : "?", meters ? meters : "-",
               stop, waiting);
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
        json_auto_t *arr = json_array();
        if (!json)
                printf("%-12s  %-16s  %-10s  %-11s  %7s  %s\n", "ID", "NAME", "PROFILE", "STATE", "AGE", "METERS");
        for (size_t i = 0; i < n; i++) {
                AjRun *run = runs[i];
                aj_run_probe(run, AJ_RUN_PROBE_TIMEOUT_MS);
                const char *state = aj_run_display_state(run);
                bool active = streq(state, "running") || streq(state, "frozen") || streq(state, "quarantined");
                if (!all && !run->live && !active)
                        continue;
                if (json)
                        json_array_append_new(arr, cli_run_summary_json(run, state));
                else
                        print_row(run, state);
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
