/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail replay`: a recorded run again, under another profile, and what changed. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agentjail/exit-codes.h"
#include "cli/verb.h"
#include "cli/verbs.h"
#include "log.h"
#include "replay.h"
#include "util/strv.h"

#define REPLAY_USAGE                                                                         \
        "agentjail replay RUN [-p PROFILE] [--cap KEY=VALUE]... [--live] [--force] [--keep]" \
        " [--workdir DIR] [-v] [--json]"
#define REPLAY_HELP                                                                                     \
        "Run a recorded run's command again in a scratch copy of the workspace it started\n"            \
        "from (the original is never touched), under PROFILE (default: the original's\n"                \
        "resolved profile) and the given caps, with the LLM gateway answering the agent from\n"         \
        "the recording (by request digest, then by position; no provider is contacted). A\n"            \
        "run through the gateway replays unless its llm.record was \"off\". Then print every verdict\n" \
        "that changed (tool calls, hosts, syscalls, caps, model calls, the exit status) and the\n"      \
        "tokens and cost of both runs.\n"                                                               \
        "-p, --profile: the profile to replay under.\n"                                                 \
        "--cap: a cap for the replay (as `run --cap`).\n"                                               \
        "--live: a request the recording lacks goes to the provider (default: a 502 and an\n"           \
        "llm.replay_miss event).\n"                                                                     \
        "--force: replay although the workspace changed since the run started, or some\n"               \
        "responses were not kept (those calls are misses).\n"                                           \
        "--keep: keep the scratch workspace (its path is printed).\n"                                   \
        "--workdir: where the scratch workspace is made (default $TMPDIR or /var/tmp).\n"               \
        "-v, --verbose: more messages from the replayed run.\n"                                         \
        "Exit status: 0 nothing changed, 1 something changed, 125 the replay failed."

enum { OPT_CAP = 0x300, OPT_LIVE, OPT_KEEP, OPT_WORKDIR, OPT_FORCE };

static void print_summary(const char *label, json_t *s)
{
        json_t *exit = json_object_get(s, "exit");
        char status[16] = "?";
        if (json_is_integer(exit))
                snprintf(status, sizeof(status), "%lld", (long long)json_integer_value(exit));
        printf("  %-9s %-14s exit %-4s model calls %-4lld input %-8lld output %-8lld cost $%.6f tool calls %lld\n",
               label, cli_jstr(s, "run") ?: "?", status,
               (long long)json_integer_value(json_object_get(s, "model_calls")),
               (long long)json_integer_value(json_object_get(s, "input_tokens")),
               (long long)json_integer_value(json_object_get(s, "output_tokens")),
               json_number_value(json_object_get(s, "cost_usd")),
               (long long)json_integer_value(json_object_get(s, "tool_calls")));
}

static void print_seq(json_t *v)
{
        if (json_is_integer(v))
                printf(" #%-5lld", (long long)json_integer_value(v));
        else
                printf(" %-6s", "-");
}

static void print_table(json_t *diff)
{
        json_t *changes = json_object_get(diff, "changes");
        printf("replay %s of run %s: %zu verdict%s changed\n", cli_jstr(diff, "run") ?: "?",
               cli_jstr(diff, "replay_of") ?: "?", json_array_size(changes), json_array_size(changes) == 1 ? "" : "s");
        if (json_array_size(changes)) {
                printf("  %-11s %-44s %-9s %-7s %-9s %-7s %s\n", "KIND", "SUBJECT", "BEFORE", "EVENT", "AFTER", "EVENT",
                       "REASON");
                size_t i;
                json_t *c;
                json_array_foreach (changes, i, c) {
                        printf("  %-11s %-44s %-9s", cli_jstr(c, "kind"), cli_jstr(c, "subject"),
                               cli_jstr(c, "before"));
                        print_seq(json_object_get(c, "seq_before"));
                        printf(" %-9s", cli_jstr(c, "after"));
                        print_seq(json_object_get(c, "seq_after"));
                        printf(" %s\n", cli_jstr(c, "reason") ?: "");
                }
        }
        print_summary("original", json_object_get(diff, "original"));
        print_summary("replay", json_object_get(diff, "replay"));
        const char *ws = cli_jstr(diff, "workspace");
        if (ws)
                printf("  scratch workspace kept: %s\n", ws);
}

int aj_cmd_replay(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "profile", required_argument, NULL, 'p' },
                { "cap", required_argument, NULL, OPT_CAP },
                { "live", no_argument, NULL, OPT_LIVE },
                { "force", no_argument, NULL, OPT_FORCE },
                { "keep", no_argument, NULL, OPT_KEEP },
                { "workdir", required_argument, NULL, OPT_WORKDIR },
                { "verbose", no_argument, NULL, 'v' },
                {},
        };
        AjReplayOptions o = { 0 };
        bool json = false;
        _cleanup_strv_free_ char **caps = NULL;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":hp:v", options, NULL)) != -1) {
                if (c == 'h')
                        return cli_help(REPLAY_USAGE, REPLAY_HELP);
                else if (c == CLI_OPT_JSON)
                        json = true;
                else if (c == 'p')
                        o.profile = optarg;
                else if (c == OPT_CAP) {
                        if (!strchr(optarg, '='))
                                return cli_usage_error("replay", REPLAY_USAGE, "--cap '%s': expected KEY=VALUE",
                                                       optarg);
                        if (aj_strv_push(&caps, optarg) < 0)
                                return AJ_EXIT_LAUNCHER;
                } else if (c == OPT_LIVE)
                        o.live = true;
                else if (c == OPT_FORCE)
                        o.force = true;
                else if (c == OPT_KEEP)
                        o.keep = true;
                else if (c == OPT_WORKDIR)
                        o.workdir = optarg;
                else if (c == 'v')
                        o.verbose++;
                else
                        return cli_option_error("replay", REPLAY_USAGE, c, argv);
        }
        int r = cli_check_positionals("replay", REPLAY_USAGE, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        o.run = argv[optind];
        o.caps = caps;
        if (o.verbose)
                aj_log_set_level(o.verbose > 1 ? AJ_LOG_DEBUG : AJ_LOG_INFO);
        AjReplayResult res;
        r = aj_replay_run(&o, &res);
        if (r < 0) {
                aj_replay_result_done(&res);
                return AJ_EXIT_LAUNCHER;
        }
        bool changed = json_is_true(json_object_get(res.diff, "changed"));
        if (json)
                cli_print_json(res.diff);
        else if (cli_json_escape_strings(res.diff, 0) == 0) /* subjects: the agent's tool names, hosts */
                print_table(res.diff);
        else
                cli_fail("replay", "out of memory");
        aj_replay_result_done(&res);
        return changed ? 1 : 0;
}
