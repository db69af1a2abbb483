/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-hooks.h"
#include "cli/run.h"
#include "runs.h"
#include "util/error.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/strv.h"

static const char main_help[] =
        "Usage: agentjail COMMAND [OPTIONS]\n"
        "\n"
        "Run AI agent processes in a kernel-enforced jail.\n"
        "\n"
        "Commands:\n"
        "  run [OPTIONS] -- CMD [ARG...]   run CMD in a jail (see 'agentjail run --help')\n"
        "  profile list|show NAME|check FILE...\n"
        "                                  list, print (resolved) or validate profiles\n"
        "  ps [--all] [--json]             runs: state, age, usage vs caps\n"
        "  inspect RUN [--json]            caps vs usage, processes, pending calls, last events\n"
        "  logs RUN [-f] [--json] [--type PREFIX]\n"
        "                                  the run's event chain\n"
        "  freeze RUN | thaw RUN [--stop N] [--raise KEY=VALUE]... | kill RUN\n"
        "  approve RUN CALL [--digest SHA256] [--always] | deny RUN CALL [--reason TEXT]\n"
        "                                  decide a tool call or a host (net-N) held for approval\n"
        "  quarantine list | show RUN | release RUN | purge RUN\n"
        "  prune [--older-than DURATION] [--keep N] [--dry-run] [--json]\n"
        "                                  remove finished runs' directories from the state dir\n"
        "  diff RUN | commit RUN [--force] [--include-git | --exclude-git] | discard RUN\n"
        "                                  review an overlay workspace's changes, apply or drop them\n"
        "  rollback RUN [--apply [--dry-run] [--keep-going] [--approve CALL]...]\n"
        "                                  what undoes a run; --apply runs the undo records through\n"
        "                                  the profile's rollback.exec\n"
        "  replay RUN [-p PROFILE] [--cap KEY=VALUE] [--live] [--json]\n"
        "                                  run a recorded run again under PROFILE, the model answered\n"
        "                                  from the recording; the verdicts that changed\n"
        "  eval SUITE.json [-j N] [--junit FILE] [--json]\n"
        "                                  run an eval suite: cases in fresh jails, their assertions\n"
        "  doctor [--workspace DIR] [--json]\n"
        "                                  what this host gives agentjail, and what to fix\n"
        "  meter tool|result|tokens|usage|hook\n"
        "                                  report to the run's broker (inside a jail); hook: an\n"
        "                                  agent's hook command (claude-code, codex, gemini)\n"
        "  mcp [--name SERVER] -- CMD [ARG...]\n"
        "                                  an MCP server whose tool calls ask the broker (inside a jail)\n"
        "  help                            this text\n"
        "  version                         print the version\n";

static const char run_help[] =
        "Usage: agentjail run [OPTIONS] -- CMD [ARG...]\n"
        "\n"
        "Run CMD in new user, pid, mount, network, uts, ipc and cgroup namespaces with\n"
        "all capabilities dropped, no_new_privs, a seccomp allowlist, cgroup limits and\n"
        "the filesystem view of a permission profile. The current directory is the\n"
        "workspace (read-write in the default profile) and the command's cwd.\n"
        "\n"
        "Options:\n"
        "  -p, --profile NAME|FILE   permission profile (default: \"default\")\n"
        "  -n, --name NAME           name of the run (default: the command's basename)\n"
        "      --ro PATH[:DEST]      bind PATH read-only into the jail (at DEST)\n"
        "      --cap KEY=VALUE       cap a meter for this run: tokens, input_tokens, output_tokens,\n"
        "                            cost_usd, tool_calls, tool_calls_per_min, repeat_limit\n"
        "      --allow-net HOST[:PORT]  allow egress to HOST (added to the profile's network.allow)\n"
        "      --ask-net PATTERN     a connection to a host the allowlist refuses but PATTERN\n"
        "                            matches (\"*\", \"*.example.com\", HOST[:PORT]) waits for an\n"
        "                            operator: agentjail approve RUN net-N (added to network.ask)\n"
        "      --llm NAME            serve the model provider NAME (the profile's llm.providers.NAME,\n"
        "                            or anthropic, openai) through the metering gateway: the agent\n"
        "                            gets its base URL and a placeholder key, the key stays here\n"
        "      --rw PATH[:DEST]      bind PATH read-write into the jail (at DEST)\n"
        "      --hooks AGENT         install AGENT's hooks so that each of its tool calls asks the\n"
        "                            run's broker first and reports its result (claude-code: the\n"
        "                            jail's /etc/claude-code/managed-settings.json; the operator's\n"
        "                            own settings are not touched)\n"
        "  -t, --tty                 give the jail a terminal of its own (a new pseudo-terminal)\n"
        "                            even when stdin is not a terminal; it is the default when\n"
        "                            stdin is one: the operator's terminal is relayed in raw mode\n"
        "                            and never handed to the jail\n"
        "      --no-tty              no terminal: output through pipes (stdout.log, stderr.log),\n"
        "                            and a terminal stdin becomes /dev/null\n"
        "      --json                print the final run record (run.json) on stderr\n"
        "  -v, --verbose             more messages from agentjail\n"
        "  -h, --help                this text\n"
        "\n"
        "Exit status:\n"
        "  the command's own status, or\n"
        "  123     agentjail killed the run (a cap breach with on_breach \"kill\", or\n"
        "          `agentjail kill`)\n"
        "  128+N   the command was killed by signal N (137: SIGKILL, e.g. out of memory\n"
        "          or the wall-clock limit's grace period ran out)\n"
        "  125     agentjail failed (bad profile or option, a protection could not be set up)\n"
        "  126     the command was found but could not be executed\n"
        "  127     the command was not found in the jail\n"
        "\n"
        "Each run is recorded in $AGENTJAIL_STATE_DIR/runs/ID/ (default /var/lib/agentjail\n"
        "as root): run.json, events.jsonl, stdout.log and stderr.log (or tty.log, the\n"
        "transcript of the jail's terminal).\n";

const char *aj_cli_main_help(void) { return main_help; }
const char *aj_cli_run_help(void) { return run_help; }

int aj_cli_parse_bind(const char *arg, AjBind *ret, AjError *ret_error)
{
        if (!arg || !*arg)
                return aj_error_set(ret_error, -EINVAL, "empty path");
        const char *colon = strchr(arg, ':');
        _cleanup_free_ char *src = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
        _cleanup_free_ char *dst = strdup(colon ? colon + 1 : arg);
        if (!src || !dst)
                return -ENOMEM;
        if (!*src || !*dst || (colon && strchr(colon + 1, ':')))
                return aj_error_set(ret_error, -EINVAL, "'%s': expected PATH or SRC:DEST", arg);
        if (dst[0] != '/')
                return aj_error_set(ret_error, -EINVAL, "'%s': the destination inside the jail must be absolute", arg);
        /* A relative source is relative to the current directory (resolved by the mount planner). */
        *ret = (AjBind){ .source = TAKE_PTR(src), .target = TAKE_PTR(dst), .optional = false };
        return 0;
}

static int bind_list_add(AjBindList *l, const char *arg, AjError *ret_error)
{
        AjBind b;
        int r = aj_cli_parse_bind(arg, &b, ret_error);
        if (r < 0)
                return r;
        AjBind *n = realloc(l->items, (l->n + 1) * sizeof(AjBind));
        if (!n) {
                free(b.source);
                free(b.target);
                return -ENOMEM;
        }
        l->items = n;
        l->items[l->n++] = b;
        return 0;
}

static void bind_list_done(AjBindList *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].source);
                free(l->items[i].target);
        }
        free(l->items);
        l->items = NULL;
        l->n = 0;
}

void aj_cli_run_options_done(AjRunOptions *o)
{
        aj_strv_free(o->caps);
        aj_strv_free(o->allow_net);
        aj_strv_free(o->llm);
        aj_strv_free(o->ask_net);
        o->caps = o->allow_net = o->llm = o->ask_net = NULL;
        bind_list_done(&o->extra_ro);
        bind_list_done(&o->extra_rw);
}

enum { OPT_RO = 0x100, OPT_RW, OPT_JSON, OPT_CAP, OPT_ALLOW_NET, OPT_NO_TTY, OPT_LLM, OPT_HOOKS, OPT_ASK_NET };

/* --cap, --allow-net, --ask-net, --llm: each may be given again, and each adds to its list. */
static int add_repeated(AjRunOptions *o, int opt, const char *arg, AjError *ret_error)
{
        if (opt == OPT_CAP && !strchr(arg, '='))
                return aj_error_set(ret_error, -EINVAL, "--cap: '%s': expected KEY=VALUE, e.g. tokens=50000", arg);
        if (opt == OPT_ALLOW_NET && !*arg)
                return aj_error_set(ret_error, -EINVAL, "--allow-net: empty entry");
        if (opt == OPT_ASK_NET && !*arg)
                return aj_error_set(ret_error, -EINVAL, "--ask-net: empty pattern");
        if (opt == OPT_LLM && !*arg)
                return aj_error_set(ret_error, -EINVAL, "--llm: expected a provider name, e.g. --llm anthropic");
        char ***list = opt == OPT_CAP         ? &o->caps
                       : opt == OPT_ALLOW_NET ? &o->allow_net
                       : opt == OPT_ASK_NET   ? &o->ask_net
                                              : &o->llm;
        return aj_strv_push(list, arg) < 0 ? -ENOMEM : 0;
}

/* --ro, --rw: PATH or SRC:DEST, each may be given again. */
static int add_bind(AjRunOptions *o, int opt, const char *arg, AjError *ret_error)
{
        bool ro = opt == OPT_RO;
        int r = bind_list_add(ro ? &o->extra_ro : &o->extra_rw, arg, ret_error);
        if (r < 0 && r != -ENOMEM)
                (void)aj_error_prefix(ret_error, "--%s", ro ? "ro" : "rw");
        return r;
}

static const struct option run_options[] = {
        { "profile", required_argument, NULL, 'p' },
        { "name", required_argument, NULL, 'n' },
        { "ro", required_argument, NULL, OPT_RO },
        { "rw", required_argument, NULL, OPT_RW },
        { "json", no_argument, NULL, OPT_JSON },
        { "cap", required_argument, NULL, OPT_CAP },
        { "allow-net", required_argument, NULL, OPT_ALLOW_NET },
        { "ask-net", required_argument, NULL, OPT_ASK_NET },
        { "llm", required_argument, NULL, OPT_LLM },
        { "hooks", required_argument, NULL, OPT_HOOKS },
        { "tty", no_argument, NULL, 't' },
        { "no-tty", no_argument, NULL, OPT_NO_TTY },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* One option c (as getopt_long returned it, with optarg and optind) into o: 0, 1 for --help,
 * or -errno with ret_error set. */
static int parse_option(AjRunOptions *o, int c, char **argv, AjError *ret_error)
{
        switch (c) {
        case 'p':
                o->profile = optarg;
                return 0;
        case 'n':
                if (!*optarg || strlen(optarg) > AJ_RUN_NAME_MAX || strchr(optarg, '/') ||
                    !aj_printable_as_is(optarg, strlen(optarg))) {
                        _cleanup_free_ char *shown = aj_printable_dup(optarg, strlen(optarg), 0);
                        return aj_error_set(ret_error, -EINVAL,
                                            "--name: '%s': use 1 to %d printable characters (UTF-8) and no '/'",
                                            shown ?: "?", AJ_RUN_NAME_MAX);
                }
                o->name = optarg;
                return 0;
        case OPT_RO:
        case OPT_RW:
                return add_bind(o, c, optarg, ret_error);
        case OPT_JSON:
                o->json = true;
                return 0;
        case OPT_CAP:
        case OPT_ALLOW_NET:
        case OPT_ASK_NET:
        case OPT_LLM:
                return add_repeated(o, c, optarg, ret_error);
        case OPT_HOOKS: {
                AjAgentKind agent;
                if (aj_agent_from_name(optarg, &agent) < 0 || !aj_hook_settings_path(agent))
                        return aj_error_set(ret_error, -EINVAL, "--hooks: unknown agent '%s' (accepted: %s)", optarg,
                                            AJ_HOOK_SETTINGS_AGENTS);
                o->hooks = optarg;
                return 0;
        }
        case 't':
        case OPT_NO_TTY:
                o->tty = c == 't' ? AJ_TTY_ALWAYS : AJ_TTY_NEVER;
                return 0;
        case 'v':
                o->verbose++;
                return 0;
        case 'h':
                return 1;
        case ':':
                return aj_error_set(ret_error, -EINVAL, "option '%s' needs a value", argv[optind - 1]);
        default:
                return aj_error_set(ret_error, -EINVAL, "unknown option '%s' (see 'agentjail run --help')",
                                    argv[optind - 1]);
        }
}

int aj_cli_parse_run(int argc, char **argv, AjRunOptions *ret, AjError *ret_error)
{
        AjRunOptions o = { 0 };
        int r = 0;

        optind = 0; /* full re-initialisation of getopt for repeated calls (tests) */
        opterr = 0;
        int c;
        /* "+": stop at the first non-option, so the command's own options are left alone. */
        while (r == 0 && (c = getopt_long(argc, argv, "+:p:n:tvh", run_options, NULL)) != -1)
                r = parse_option(&o, c, argv, ret_error);
        if (r == 0 && optind >= argc)
                r = aj_error_set(ret_error, -EINVAL,
                                 "no command given (usage: agentjail run [OPTIONS] -- CMD [ARG...])");
        if (r != 0) {
                aj_cli_run_options_done(&o);
                return r;
        }
        o.argv = argv + optind;
        *ret = o;
        return 0;
}
