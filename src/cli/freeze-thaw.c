/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail freeze | thaw | kill`: a live run's processes, through its control socket. */
#include <stdio.h>
#include <string.h>

#include "cgroup.h"
#include "cli/verb.h"
#include "cli/verbs.h"
#include "control.h"
#include "util/parse.h"

#define FREEZE_USAGE "agentjail freeze RUN [--json]"
#define FREEZE_HELP                                                                    \
        "Freeze every process of a live run (cgroup freezer). It stays frozen until\n" \
        "'agentjail thaw' or 'agentjail kill'."
#define THAW_USAGE "agentjail thaw RUN [--stop N] [--raise KEY=VALUE]... [--json]"
#define THAW_HELP                                                                                   \
        "Thaw a frozen run. --raise changes a meter's cap first: \"+N\" adds to it,\n"              \
        "\"N\" sets it, e.g. --raise tokens=+20000 --raise cost_usd=5. --stop N: only if the run\n" \
        "is frozen at stop N (each freeze is numbered: 'agentjail inspect' and 'ps' show it);\n"    \
        "without it, a raise must raise the cap whose breach made the current stop."
#define KILL_USAGE "agentjail kill RUN [--json]"
#define KILL_HELP                                                                                  \
        "Kill every process of a live run (also a frozen one). The run's records stay. When its\n" \
        "supervisor does not answer in time, or its control socket is refused as not the run's,\n" \
        "the run's cgroup is killed directly (its record then shows the command killed by\n"       \
        "SIGKILL, not by whom)."

/* The op on the run named by argv's RUN; `req` is consumed. */
static int run_op(const char *cmd, const char *query, json_t *req, bool json, const char *done)
{
        json_auto_t *owned = req;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (!req || cli_open_run_to_act(cmd, query, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        return cli_control_op(cmd, run, owned, json, done);
}

/* freeze and kill: RUN and --json only. */
static int plain_op(int argc, char **argv, const char *op, const char *usage, const char *help, const char *done)
{
        bool json, want_help;
        const char *query;
        int r = cli_parse_json_run(argv[0], usage, argc, argv, &json, &want_help, &query);
        if (r)
                return r;
        if (want_help)
                return cli_help(usage, help);
        return run_op(argv[0], query, json_pack("{s:s}", "op", op), json, done);
}

int aj_cmd_freeze(int argc, char **argv) { return plain_op(argc, argv, "freeze", FREEZE_USAGE, FREEZE_HELP, "frozen"); }

/* The kill switch must not depend on the supervisor's loop: when it does not answer, the
 * run's cgroup is killed here (as its watchdog would), and the supervisor, once it runs
 * again, records the command's end as it finds it. */
static int kill_by_cgroup(AjRun *run)
{
        AjCgroup *cg = NULL;
        int r = aj_cgroup_open(run->id, &cg);
        if (r < 0)
                return r;
        r = aj_cgroup_kill(cg);
        aj_cgroup_free(cg);
        return r;
}

int aj_cmd_kill(int argc, char **argv)
{
        bool json, want_help;
        const char *query;
        int r = cli_parse_json_run(argv[0], KILL_USAGE, argc, argv, &json, &want_help, &query);
        if (r)
                return r;
        if (want_help)
                return cli_help(KILL_USAGE, KILL_HELP);
        json_auto_t *req = json_pack("{s:s}", "op", "kill");
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (!req || cli_open_run_to_act(argv[0], query, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        return cli_control_op_or(argv[0], run, req, json, "killed", kill_by_cgroup, "killed its cgroup directly");
}

/* One --raise KEY=VALUE into the request's "raise" object; CLI_EXIT_USAGE (reported) when
 * it is malformed or repeats a key. */
static int add_raise(json_t *req, const char *arg)
{
        const char *eq = strchr(arg, '=');
        size_t klen = eq ? (size_t)(eq - arg) : 0;
        if (!eq || klen == 0 || klen > 32 || strspn(arg, "abcdefghijklmnopqrstuvwxyz_") != klen || !eq[1] ||
            strlen(eq + 1) > 32)
                return cli_usage_error("thaw", THAW_USAGE, "--raise '%s': expected KEY=VALUE, e.g. tokens=+20000", arg);
        json_t *raise = json_object_get(req, "raise");
        if (!raise) {
                raise = json_object();
                if (!raise || json_object_set_new(req, "raise", raise) < 0)
                        return CLI_EXIT_FAIL;
        }
        char key[33];
        snprintf(key, sizeof(key), "%.*s", (int)klen, arg);
        if (json_object_get(raise, key))
                return cli_usage_error("thaw", THAW_USAGE, "--raise %s given twice", key);
        return json_object_set_new(raise, key, json_string(eq + 1)) < 0 ? CLI_EXIT_FAIL : 0;
}

int aj_cmd_thaw(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "raise", required_argument, NULL, CLI_OPT_RAISE },
                { "stop", required_argument, NULL, CLI_OPT_STOP },
                {},
        };
        const char *raises[AJ_CONTROL_MAX_RAISE_KEYS];
        bool json = false;
        size_t n_raise = 0;
        uint64_t stop = 0;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return cli_help(THAW_USAGE, THAW_HELP);
                case CLI_OPT_JSON:
                        json = true;
                        break;
                case CLI_OPT_RAISE:
                        if (n_raise >= AJ_CONTROL_MAX_RAISE_KEYS)
                                return cli_usage_error("thaw", THAW_USAGE, "at most %d --raise options",
                                                       AJ_CONTROL_MAX_RAISE_KEYS);
                        raises[n_raise++] = optarg;
                        break;
                case CLI_OPT_STOP:
                        if (aj_parse_u64(optarg, &stop) < 0 || stop == 0 || stop > INT64_MAX)
                                return cli_usage_error("thaw", THAW_USAGE,
                                                       "--stop '%s': expected a stop's number (1 or more, as "
                                                       "'agentjail inspect' shows it)",
                                                       optarg);
                        break;
                default:
                        return cli_option_error("thaw", THAW_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals("thaw", THAW_USAGE, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        json_auto_t *req = json_pack("{s:s}", "op", "thaw");
        if (req && stop && json_object_set_new(req, "stop", json_integer((json_int_t)stop)) < 0)
                return CLI_EXIT_FAIL;
        for (size_t i = 0; req && i < n_raise; i++)
                if ((r = add_raise(req, raises[i])))
                        return r;
        return run_op("thaw", argv[optind], TAKE_PTR(req), json, "thawed");
}
