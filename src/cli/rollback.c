/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail rollback`: what it takes to undo a run. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/verb.h"
#include "cli/verbs.h"

#define ROLLBACK_USAGE "agentjail rollback RUN [--json]"
#define ROLLBACK_HELP                                                                         \
        "What it takes to undo a run: its workspace changes (an overlay workspace can\n"      \
        "still be discarded) and, newest first, the tool calls that reported a result with\n" \
        "the undo record the agent gave (the compensating action), and those it gave none\n"  \
        "for. agentjail does not run the compensating actions: they are the operator's."

static void print_workspace(const AjRun *run, json_t *ws)
{
        const AjRunRecord *rec = run->rec;
        printf("run %s (%s)\n", run->id, cli_run_name(run));
        const char *changes = ws ? rec->workspace.changes : NULL;
        const char *mode = rec ? rec->profile_workspace_mode : NULL;
        if (!json_is_object(ws) && mode && streq(mode, "ro"))
                printf("workspace: read-only, the agent could not change it\n");
        else if (!json_is_object(ws) && mode && streq(mode, "none"))
                printf("workspace: none was mounted\n");
        else if (!json_is_object(ws))
                printf("workspace: written in place (mode %s): agentjail kept no copy to go back to\n",
                       mode ? mode : "rw");
        else if (changes && streq(changes, "pending"))
                printf("workspace: %s untouched; the agent's changes are kept: 'agentjail discard %s' drops them\n",
                       rec->workspace.path ?: "?", run->id);
        else
                printf("workspace: the agent's changes were %s (%s)\n", changes ? changes : "?",
                       rec->workspace.decided_at ?: "?");
}

static void print_calls(json_t *calls, size_t with_undo, size_t unreversible)
{
        size_t i;
        json_t *c;
        printf("tool calls with a result, newest first: %zu; %zu with an undo record, %zu succeeded without one\n",
               json_array_size(calls), with_undo, unreversible);
        json_array_foreach (calls, i, c) {
                json_t *undo = json_object_get(c, "undo");
                _cleanup_free_ char *u = json_is_null(undo) ? NULL
                                                            : json_dumps(undo, JSON_COMPACT | JSON_PRESERVE_ORDER);
                const char *st = cli_jstr(c, "status") ?: "?";
                printf("  %-20s %-24s %-6s %s\n", cli_jstr(c, "gen_ai.tool.call.id"),
                       cli_jstr(c, "gen_ai.tool.name") ?: "?", st,
                       u                 ? u
                       : streq(st, "ok") ? "(no undo record: reverse it by hand)"
                                         : "(failed, no undo record)");
        }
}

int aj_cmd_rollback(int argc, char **argv)
{
        bool json, help;
        const char *query;
        int r = cli_parse_json_run("rollback", ROLLBACK_USAGE, argc, argv, &json, &help, &query);
        if (r)
                return r;
        if (help)
                return cli_help(ROLLBACK_USAGE, ROLLBACK_HELP);
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (cli_open_run("rollback", query, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        json_t *calls = NULL;
        r = aj_run_tool_journal(run, &calls);
        if (r < 0) {
                cli_fail("rollback", "cannot read '%s/%s': %s", run->dir, AJ_RUN_FILE_EVENTS, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        json_auto_t *owned = calls;
        size_t with_undo = 0, unreversible = 0, i;
        json_t *c;
        json_array_foreach (calls, i, c) {
                bool undo = !json_is_null(json_object_get(c, "undo"));
                const char *st = cli_jstr(c, "status");
                with_undo += undo;
                unreversible += !undo && st && streq(st, "ok");
        }
        const AjRunRecord *rec = run->rec;
        json_t *ws = rec && rec->workspace.present ? rec->shown.workspace : NULL;
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:O?, s:O, s:I, s:I}", "run", run->id, "workspace", ws, "calls",
                                             calls, "with_undo", (json_int_t)with_undo, "ok_without_undo",
                                             (json_int_t)unreversible);
                cli_print_json(doc);
                return CLI_EXIT_OK;
        }
        print_workspace(run, ws);
        print_calls(calls, with_undo, unreversible);
        return CLI_EXIT_OK;
}
