/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail doctor`: what this host gives agentjail (src/doctor.c, src/doctor-probe.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "doctor.h"

#define DOCTOR_USAGE "agentjail doctor [--workspace DIR] [--json]"
#define DOCTOR_HELP                                                                            \
        "What this host gives agentjail, as the invoker (root, or a user) would use it: the\n" \
        "kernel, the cgroup mode and which controllers are usable where (a user's delegated\n" \
        "subtree), user namespaces (and Ubuntu's AppArmor restriction), seccomp user\n"        \
        "notification, idmapped mounts on the workspace's filesystem, overlayfs, Landlock,\n"  \
        "nf_tables, and the state and runtime dirs. Each line is OK, degraded, missing or\n"   \
        "unused, with what it means for the profile keys it affects and the fix. Nothing is\n" \
        "left behind: the probes make no mount and remove what they create.\n"                 \
        "\n"                                                                                   \
        "  --workspace DIR   judge DIR as the workspace (default: the current directory)\n"    \
        "  --json            the report and the facts as one JSON document\n"                  \
        "\n"                                                                                   \
        "Exit status: 0 everything a default profile needs is OK, 1 something it needs is\n"   \
        "degraded or missing (named last), 2 usage."

enum { OPT_WORKSPACE = 0x200 };

int aj_cmd_doctor(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "workspace", required_argument, NULL, OPT_WORKSPACE },
                {},
        };
        bool json = false;
        const char *workspace = NULL;
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return cli_help(DOCTOR_USAGE, DOCTOR_HELP);
                case CLI_OPT_JSON:
                        json = true;
                        break;
                case OPT_WORKSPACE:
                        workspace = optarg;
                        break;
                default:
                        return cli_option_error("doctor", DOCTOR_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals("doctor", DOCTOR_USAGE, argc - optind, argv + optind, 0, 0);
        if (r)
                return r;

        _cleanup_(aj_doctor_facts_done) AjDoctorFacts facts = { 0 };
        r = aj_doctor_probe(workspace, &facts);
        if (r < 0) {
                if (workspace)
                        return cli_usage_error("doctor", DOCTOR_USAGE, "--workspace '%s': %s", workspace, strerror(-r));
                cli_fail("doctor", "cannot judge the current directory: %s", strerror(-r));
                return CLI_EXIT_FAIL;
        }
        _cleanup_(aj_doctor_report_done) AjDoctorReport rep = { 0 };
        r = aj_doctor_report(&facts, &rep);
        if (r < 0) {
                cli_fail("doctor", "%s", strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (json) {
                json_auto_t *doc = aj_doctor_report_json(&facts, &rep);
                if (!doc) {
                        cli_fail("doctor", "%s", strerror(ENOMEM));
                        return CLI_EXIT_FAIL;
                }
                cli_print_json(doc);
        } else {
                _cleanup_free_ char *text = NULL;
                r = aj_doctor_format_text(&facts, &rep, &text);
                if (r < 0) {
                        cli_fail("doctor", "%s", strerror(-r));
                        return CLI_EXIT_FAIL;
                }
                fputs(text, stdout);
        }
        return aj_doctor_report_ok(&rep) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
