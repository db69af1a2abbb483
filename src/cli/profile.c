/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail profile list | show | check`: the operator's view of profiles. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/verb.h"
#include "profile.h"
#include "util/format.h"
#include "util/strv.h"

#define USAGE "usage: agentjail profile [list [--json] | show NAME|FILE [--json] | check FILE...]"

enum { EXIT_OK = 0, EXIT_INVALID = 1, EXIT_USAGE = 2 };

_printf_(1, 2) static int usage_error(const char *fmt, ...)
{
        va_list ap;
        fputs("agentjail profile: ", stderr);
        va_start(ap, fmt);
        (void)aj_vfprintf_printable(stderr, fmt, ap); /* a file's name, the profile's words */
        va_end(ap);
        fputs("\n" USAGE "\n", stderr);
        return EXIT_USAGE;
}

static void print_help(void)
{
        _cleanup_strv_free_ char **dirs = NULL;

        puts(USAGE "\n"
                   "\n"
                   "  list [--json]          profiles on the search path: name, path, description\n"
                   "  show NAME|FILE [--json]\n"
                   "                         the resolved profile (after \"extends\", with every default\n"
                   "                         filled in) as JSON; the output is itself a valid profile\n"
                   "  check FILE...          validate profile files: prints \"FILE: ok\" for each valid\n"
                   "                         one, and FILE:LINE:COL: KEY: the problem for the others\n"
                   "\n"
                   "A profile may \"extends\" another, by name or by a path relative to its own\n"
                   "directory. The child is merged onto its parent: objects merge key by key,\n"
                   "recursively; arrays and scalar values in the child replace the parent's. So a\n"
                   "child's \"filesystem\": {\"ro\": [...]} replaces the whole list and keeps the\n"
                   "parent's other filesystem keys, and \"env\": {\"set\": {...}} adds variables.\n"
                   "At most 8 profiles in a chain. Unknown keys are errors.\n"
                   "\n"
                   "Exit status: 0 ok, 1 a profile is invalid or not found, 2 usage error.\n"
                   "\n"
                   "A NAME is looked up as NAME.json in:");
        if (aj_profile_search_path(&dirs) >= 0)
                for (char **d = dirs; *d; d++)
                        printf("  %s\n", *d);
}

static bool is_help(const char *s) { return streq(s, "--help") || streq(s, "-h"); }

static void print_error(const char *what, int r, AjError *err)
{
        if (err->message)
                (void)aj_fprintf_printable(stderr, "%s", err->message);
        else
                (void)aj_fprintf_printable(stderr, "%s: %s", what, strerror(-r));
        fputc('\n', stderr);
}

static int cmd_list(bool json)
{
        _cleanup_strv_free_ char **names = NULL, **paths = NULL;
        json_auto_t *arr = NULL;
        int r = aj_profile_list(&names, &paths);
        if (r < 0) {
                fprintf(stderr, "agentjail profile: cannot list profiles: %s\n", strerror(-r));
                return EXIT_INVALID;
        }
        if (json && !(arr = json_array()))
                return EXIT_INVALID;
        for (size_t i = 0; names[i]; i++) {
                _cleanup_(aj_profile_freep) AjProfile *p = NULL;
                AjError err = {};
                r = aj_profile_load_file(paths[i], &p, &err);
                if (json) {
                        json_t *o = json_pack("{s:s, s:s, s:s?}", "name", names[i], "path", paths[i], "description",
                                              p ? p->description : NULL);
                        if (o && r < 0)
                                json_object_set_new(o, "error", json_string(err.message ?: strerror(-r)));
                        json_array_append_new(arr, o);
                } else {
                        /* ./profiles is on the search path, and the current directory is
                         * usually the agent's workspace: a profile there is the agent's text. */
                        if (r < 0)
                                (void)aj_fprintf_printable(stdout,
                                                           "%-12s %s  (invalid: run 'agentjail profile check %s')",
                                                           names[i], paths[i], paths[i]);
                        else
                                (void)aj_fprintf_printable(stdout, "%-12s %s  %s", names[i], paths[i],
                                                           p->description ?: "");
                        putchar('\n');
                }
                aj_error_clear(&err);
        }
        if (json) {
                _cleanup_free_ char *s = json_dumps(arr, JSON_INDENT(2));
                if (!s || cli_print_json_text(s) < 0)
                        return EXIT_INVALID;
        }
        return EXIT_OK;
}

static int cmd_show(const char *what, bool json)
{
        _cleanup_(aj_profile_freep) AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_load(what, &p, &err);
        if (r < 0) {
                print_error(what, r, &err);
                aj_error_clear(&err);
                return EXIT_INVALID;
        }
        _cleanup_free_ char *s = aj_profile_to_json(p);
        if (!s) {
                fprintf(stderr, "agentjail profile: out of memory\n");
                return EXIT_INVALID;
        }
        /* Where it came from goes to stderr, so stdout stays a loadable profile. */
        if (!json) {
                (void)aj_fprintf_printable(stderr, "profile \"%s\" from %s, sha256 %s", p->name, p->path ?: "-",
                                           p->digest);
                fputc('\n', stderr);
        }
        /* The same JSON, without what a terminal acts on (json_dumps escapes C0 only). */
        if (cli_print_json_text(s) < 0) {
                fprintf(stderr, "agentjail profile: out of memory\n");
                return EXIT_INVALID;
        }
        return EXIT_OK;
}

static int cmd_check(char **files, int n)
{
        int status = EXIT_OK;
        for (int i = 0; i < n; i++) {
                _cleanup_(aj_profile_freep) AjProfile *p = NULL;
                AjError err = {};
                int r = aj_profile_load_file(files[i], &p, &err);
                if (r < 0) {
                        fflush(stdout);
                        print_error(files[i], r, &err);
                        status = EXIT_INVALID;
                } else
                        printf("%s: ok\n", files[i]);
                aj_error_clear(&err);
        }
        return status;
}

int aj_cmd_profile(int argc, char **argv)
{
        int r;
        for (int i = 1; i < argc; i++)
                if (is_help(argv[i])) {
                        print_help();
                        fflush(stdout);
                        return EXIT_OK;
                }

        const char *sub = argc > 1 ? argv[1] : "list";
        if (streq(sub, "list")) {
                bool json = false;
                for (int i = 2; i < argc; i++) {
                        if (!streq(argv[i], "--json"))
                                return usage_error("list: unexpected argument '%s'", argv[i]);
                        json = true;
                }
                r = cmd_list(json);
        } else if (streq(sub, "show")) {
                bool json = false;
                const char *what = NULL;
                for (int i = 2; i < argc; i++) {
                        if (streq(argv[i], "--json"))
                                json = true;
                        else if (argv[i][0] == '-' && argv[i][1])
                                return usage_error("show: unknown option '%s'", argv[i]);
                        else if (what)
                                return usage_error("show: unexpected argument '%s'", argv[i]);
                        else
                                what = argv[i];
                }
                if (!what)
                        return usage_error("show: missing profile NAME or FILE");
                r = cmd_show(what, json);
        } else if (streq(sub, "check")) {
                int first = 2;
                if (first < argc && streq(argv[first], "--"))
                        first++;
                if (first >= argc)
                        return usage_error("check: missing FILE");
                r = cmd_check(argv + first, argc - first);
        } else
                return usage_error("unknown command '%s'", sub);
        fflush(stdout);
        return r;
}
