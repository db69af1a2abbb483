/* SPDX-License-Identifier: Apache-2.0 */
/* Eval suites: the parser's errors with their positions, each assertion kind passing and
 * failing, the JUnit XML and JSON reports (src/eval*.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval-bounded.h"
#include "eval.h"
#include "util/clock.h"
#include "util/strv.h"

static AjEvalSuite *parse_ok(const char *text)
{
        AjEvalSuite *s = NULL;
        AjError err = {};
        int r = aj_eval_suite_parse("/srv/evals/s.json", text, &s, &err);
        cr_assert_eq(r, 0, "parse failed: %s", aj_error_text(&err, r));
        r = aj_eval_suite_compile(s, &err);
        cr_assert_eq(r, 0, "compile failed: %s", aj_error_text(&err, r));
        aj_error_clear(&err);
        return s;
}

/* The parser's message for a suite that must be refused. */
static void parse_fails(const char *text, const char *expect)
{
        AjEvalSuite *s = NULL;
        AjError err = {};
        int r = aj_eval_suite_parse("s.json", text, &s, &err);
        if (r == 0) {
                cr_assert_not_null(s);
                r = aj_eval_suite_compile(s, &err);
                aj_eval_suite_free(s);
                s = NULL;
        }
        cr_assert_eq(r, -EINVAL, "accepted: %s", text);
        cr_expect_str_eq(err.message, expect);
        aj_error_clear(&err);
}

Test(eval_suite, a_full_case_parses)
{
        AjEvalSuite *s = parse_ok(
                "{\"name\": \"triage\",\n"
                " \"defaults\": {\"fixture\": \"fx\", \"profile\": \"strict\", \"caps\": [\"tokens=10\"],"
                " \"timeout\": \"30s\"},\n"
                " \"cases\": [\n"
                "  {\"name\": \"a\", \"command\": [\"sh\", \"-c\", \"\"], \"profile\": \"p/x.json\","
                "   \"expect\": {\"exit\": 3,"
                "    \"files\": [{\"path\": \"o.txt\", \"equals\": \"\"}, {\"path\": \"d/e\", \"exists\": false},"
                "               {\"path\": \"m\", \"matches\": \"^a+$\"}],"
                "    \"events\": [{\"type\": \"net.*\", \"absent\": true},"
                "                 {\"type\": \"tool.verdict\", \"fields\": {\"verdict\": \"deny\"}, \"count\": 2}],"
                "    \"usage\": {\"tokens\": 100, \"tool_calls\": {\"min\": 1, \"max\": 4}}}},\n"
                "  {\"name\": \"b\", \"command\": [\"true\"], \"fixture\": \"/abs/t.tgz\", \"caps\": [],"
                "   \"timeout\": 5}\n"
                "]}");
        cr_assert_eq(s->n_cases, 2);
        cr_expect_str_eq(s->name, "triage");
        const AjEvalCase *a = &s->cases[0], *b = &s->cases[1];
        cr_expect_str_eq(a->argv[2], "");
        cr_expect_str_eq(a->fixture, "/srv/evals/fx");
        cr_expect_str_eq(a->profile, "/srv/evals/p/x.json");
        cr_expect_str_eq(a->caps[0], "tokens=10");
        cr_expect_eq(a->timeout_ns, 30000000000ULL);
        cr_expect_eq(a->exit_status, 3);
        cr_assert_eq(a->n_files, 3);
        cr_expect_eq(a->files[0].kind, AJ_EVAL_FILE_EQUALS);
        cr_expect_eq(a->files[1].kind, AJ_EVAL_FILE_ABSENT);
        cr_expect_eq(a->files[2].kind, AJ_EVAL_FILE_MATCHES);
        cr_assert_eq(a->n_events, 2);
        cr_expect(a->events[0].absent);
        cr_expect_eq(a->events[1].count, 2);
        cr_expect(a->usage[AJ_EVAL_USAGE_TOKENS].has_max && !a->usage[AJ_EVAL_USAGE_TOKENS].has_min);
        cr_expect_eq(a->usage[AJ_EVAL_USAGE_TOOL_CALLS].min, 1);
        /* b: its own fixture and caps over the defaults', the default profile name kept. */
        cr_expect_str_eq(b->fixture, "/abs/t.tgz");
        cr_expect_str_eq(b->profile, "strict");
        cr_expect_null(b->caps);
        cr_expect_eq(b->timeout_ns, 5000000000ULL);
        cr_expect_eq(b->exit_status, 0, "exit 0 is expected unless said");
        aj_eval_suite_free(s);
}

/* A suite named by a relative path: its relative profile and fixture paths are made
 * absolute when it is loaded (each case runs in another directory). */
Test(eval_suite, a_relative_suite_path_gives_absolute_case_paths)
{
        char tmp[] = "/tmp/aj-eval-rel-XXXXXX", sub[64], file[96], old[PATH_MAX];
        cr_assert_not_null(mkdtemp(tmp));
        snprintf(sub, sizeof(sub), "%s/suites", tmp);
        cr_assert_eq(mkdir(sub, 0700), 0);
        snprintf(file, sizeof(file), "%s/s.json", sub);
        FILE *f = fopen(file, "w");
        cr_assert_not_null(f);
        fputs("{\"cases\": [{\"name\": \"x\", \"command\": [\"true\"], \"profile\": \"p/x.json\","
              " \"fixture\": \"fx\"}]}",
              f);
        fclose(f);
        cr_assert_not_null(getcwd(old, sizeof(old)));
        cr_assert_eq(chdir(tmp), 0);
        AjEvalSuite *s = NULL;
        AjError err = {};
        int r = aj_eval_suite_load("suites/s.json", &s, &err);
        cr_assert_eq(chdir(old), 0);
        cr_assert_eq(r, 0, "%s", aj_error_text(&err, r));
        char want[PATH_MAX + 16], real[PATH_MAX];
        cr_assert_not_null(realpath(sub, real));
        snprintf(want, sizeof(want), "%s/p/x.json", real);
        cr_expect_str_eq(s->cases[0].profile, want, "the profile path is absolute");
        snprintf(want, sizeof(want), "%s/fx", real);
        cr_expect_str_eq(s->cases[0].fixture, want, "so is the fixture's");
        aj_eval_suite_free(s);
        unlink(file);
        rmdir(sub);
        rmdir(tmp);
}

Test(eval_suite, the_name_defaults_to_the_file)
{
        AjEvalSuite *s = parse_ok("{\"cases\": [{\"name\": \"x\", \"command\": [\"true\"]}]}");
        cr_expect_str_eq(s->name, "s");
        cr_expect_eq(s->cases[0].timeout_ns, AJ_EVAL_DEFAULT_TIMEOUT_NS);
        aj_eval_suite_free(s);
}

Test(eval_suite, errors_name_the_line_column_and_key)
{
        parse_fails("{\"cases\": [\n  {\"name\": \"a\", \"comand\": [\"true\"]}\n]}",
                    "s.json:2:17: cases[0].comand: unknown key \"comand\"");
        parse_fails("{\"cases\": [\n  {\"name\": \"a\", \"command\": []}\n]}",
                    "s.json:2:28: cases[0].command: must not be empty");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"files\": [{\"path\": \"../etc/passwd\", \"exists\": true}]}}]}",
                    "s.json:2:33: cases[0].expect.files[0].path: must not contain \"..\"");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"files\": [{\"path\": \"/etc/passwd\", \"exists\": true}]}}]}",
                    "s.json:2:33: cases[0].expect.files[0].path: must be relative to the workspace");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"files\": [{\"path\": \"f\", \"matches\": \"(\"}]}}]}",
                    "s.json:2:49: cases[0].expect.files[0].matches: not a valid regular expression: "
                    "Unmatched ( or \\(");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"files\": [{\"path\": \"f\", \"exists\": true, \"equals\": \"x\"}]}}]}",
                    "s.json:2:24: cases[0].expect.files[0]: give exactly one of \"exists\", \"equals\", \"matches\"");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"events\": [{\"type\": \"x\", \"absent\": true, \"count\": 1}]}}]}",
                    "s.json:2:64: cases[0].expect.events[0].count: \"count\" and \"absent\": true contradict "
                    "(\"count\": 0 is absent)");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"usage\": {\"tokens\": {\"min\": 5, \"max\": 2}}}}]}",
                    "s.json:2:34: cases[0].expect.usage.tokens: \"min\" is above \"max\"");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"],\n"
                    "  \"expect\": {\"usage\": {\"wall\": 1}}}]}",
                    "s.json:2:24: cases[0].expect.usage.wall: unknown key \"wall\"");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"exit\": 300}}]}",
                    "s.json:1:63: cases[0].expect.exit: expected an exit status (0 to 255)");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"]},\n {\"name\": \"a\", \"command\": [\"y\"]}]}",
                    "s.json:2:11: cases[1].name: case \"a\" is already cases[0]");
        parse_fails("{\"defaults\": {\"caps\": [\"tokenz=5\"]}, \"cases\": [{\"name\": \"a\", \"command\": [\"x\"]}]}",
                    "s.json:1:24: defaults.caps[0]: --cap tokenz=5: unknown cap \"tokenz\" (expected one of: tokens, "
                    "input_tokens, output_tokens, cost_usd, tool_calls, tool_calls_per_min, repeat_limit)");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"timeout\": \"soon\"}]}",
                    "s.json:1:55: cases[0].timeout: expected a duration (\"30s\", \"5m\") or whole seconds");
        parse_fails("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"run\": \"abc\"}]}",
                    "s.json:1:12: cases[0]: give exactly one of \"command\" (an argv) and \"run\" (a recorded run)");
        parse_fails("{\"cases\": []}", "s.json:1:11: cases: expected a non-empty array of cases");
        parse_fails("{\"cases\": [{\"name\": \"a\",\n \"command\": [\"x\"]},]}",
                    "s.json:2:20: invalid JSON: unexpected token near ']'");
        parse_fails("[]", "s.json:1:1: a suite is a JSON object with \"cases\"");
}

/* A suite whose "matches" pattern is RE; the parser's verdict (NULL: accepted). */
static char *regex_verdict(const char *re)
{
        json_t *doc = json_pack("{s:[{s:s, s:[s], s:{s:[{s:s, s:s}]}}]}", "cases", "name", "a", "command", "x",
                                "expect", "files", "path", "f", "matches", re);
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        AjEvalSuite *s = NULL;
        AjError err = {};
        int r = aj_eval_suite_parse("s.json", text, &s, &err);
        if (r == 0)
                r = aj_eval_suite_compile(s, &err);
        free(text);
        char *verdict = r == 0 ? NULL : strdup(err.message ?: "?");
        cr_assert(r == 0 || r == -EINVAL, "%s: %d", re, r);
        aj_eval_suite_free(s);
        aj_error_clear(&err);
        return verdict;
}

/* Each of RES is accepted (want NULL) or refused with a message holding `want`. */
static void expect_verdicts(const char *const *res, size_t n, const char *want)
{
        for (size_t i = 0; i < n; i++) {
                char *v = regex_verdict(res[i]);
                if (want)
                        cr_expect(v && strstr(v, want), "%s: %s", res[i], v ?: "accepted");
                else
                        cr_expect_null(v, "%s refused: %s", res[i], v);
                free(v);
        }
}

Test(eval_suite, a_pattern_is_weighed_before_it_is_compiled)
{
        /* Patterns a suite really holds compile. */
        const char *fine[] = {
                "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "a{1000}",
                "[]x]{3}",
                "[[:digit:]]{3,}",
                "\\{x{2}\\}",
                "(ab|cd){10,20}",
                "^ok [0-9]+$",
                "a{,5}",
                "(a+b+c+)+",
                ".*a.{20}b",
                "^(foo|bar)?$",
                "x*y*z*",
                "\\bword\\b",
                "(a|b)*c",
        };
        expect_verdicts(fine, sizeof(fine) / sizeof(*fine), NULL);
        /* What repetition expands past 1024 elements is refused before regcomp() runs: once
         * x{255}{255} took over 2 GiB there. Groups count as what they hold, unclosed ones too. */
        const char *heavy[] = {
                "x{255}{255}",
                "a{100}{100}",
                "((a{10}){10}){11}",
                "(x{1000}(x{1000}",
                "[a-z]{2000}",
                "h++++++++++++++++++++++++++",
                "a{99999999999999999999999}",
                "a{1,99999999999999999999999}",
        };
        expect_verdicts(heavy, sizeof(heavy) / sizeof(*heavy),
                        "matches: this regular expression is refused: its repetitions expand it past 1024 elements");
        /* A repetition of what can match empty: glibc's compile time grows exponentially
         * with those ((\b)* sixteen times: 273 s), whatever their weight. */
        const char *empty[] = {
                "(a*){300}",    "(()*){400}", "a{,200}{,200}", "(\\b)*(\\b)*(\\b)*",
                "y?{,8}{,8}*",  "(^|$)*",     "(x|\\b)*",      "y?{1,3}{,4}{3,}",
                "((\\b)*){12}", "a**",        "(a|)+",         "(x?)+",
        };
        expect_verdicts(empty, sizeof(empty) / sizeof(*empty),
                        "matches: this regular expression is refused: it repeats something that can match the "
                        "empty string");
        /* What the rules above do not foresee, a bounded child finds: a run of zero-width
         * assertions is light, but glibc copies closures for each (\b 58 times: 1.3 GB). */
        char *v = NULL, anchors[2 * 64 + 1] = "";
        for (int i = 0; i < 64; i++)
                strcat(anchors, "\\b");
        v = regex_verdict(anchors);
        cr_expect(v && strstr(v, "cases[0].expect.files[0].matches: this regular expression is refused: compiling it "),
                  "%s", v ?: "accepted");
        free(v);
        /* All of a suite's patterns together: 64 of the heaviest pass, 65 do not. */
        for (int n = 64; n <= 65; n++) {
                json_t *files = json_array();
                for (int i = 0; i < n; i++)
                        json_array_append_new(files, json_pack("{s:s, s:s}", "path", "f", "matches", "a{1020}"));
                json_t *doc = json_pack("{s:[{s:s, s:[s], s:{s:o}}]}", "cases", "name", "a", "command", "x", "expect",
                                        "files", files);
                char *text = json_dumps(doc, JSON_COMPACT);
                json_decref(doc);
                AjEvalSuite *suite = NULL;
                AjError err = {};
                int r = aj_eval_suite_parse("s.json", text, &suite, &err);
                if (n == 64)
                        cr_expect_eq(r, 0, "%s", err.message ?: "");
                else
                        cr_expect(r == -EINVAL && err.message &&
                                          strstr(err.message, "cases[0].expect.files[64].matches: the suite's regular "
                                                              "expressions together are past 65536 elements"),
                                  "%s", err.message ?: "accepted");
                aj_eval_suite_free(suite);
                aj_error_clear(&err);
                free(text);
        }
        v = regex_verdict("(a+)\\1");
        cr_expect(v && strstr(v, "backreferences (\\1 to \\9) are not supported"), "%s", v ?: "accepted");
        free(v);
        v = regex_verdict("((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))");
        cr_expect(v && strstr(v, "groups nested more than 32 deep"), "%s", v ?: "accepted");
        free(v);
}

Test(eval_suite, a_recorded_run_is_a_case_source)
{
        cr_expect(aj_eval_source_supported(AJ_EVAL_SOURCE_RECORDED));
        AjEvalSuite *suite = NULL;
        AjError err = {};
        const char *text = "{\"cases\": [{\"name\": \"a\", \"run\": \"0123456789ab\", \"profile\": \"strict\"}]}";
        cr_assert_eq(aj_eval_suite_parse("s.json", text, &suite, &err), 0, "%s", err.message ?: "");
        cr_expect_eq(suite->cases[0].source, AJ_EVAL_SOURCE_RECORDED);
        cr_expect_str_eq(suite->cases[0].recorded_run, "0123456789ab");
        aj_eval_suite_free(suite);
}

Test(eval_suite, a_fixture_error_points_at_the_case_or_the_default)
{
        AjEvalSuite *s = parse_ok("{\"defaults\": {\"fixture\": \"gone\"},\n"
                                  " \"cases\": [{\"name\": \"a\", \"command\": [\"x\"]},\n"
                                  "  {\"name\": \"b\", \"command\": [\"x\"], \"fixture\": \"also-gone\"}]}");
        AjError err = {};
        cr_expect_eq(aj_eval_suite_error_at(s, &err, 0, "fixture", "missing"), -EINVAL);
        cr_expect_str_eq(err.message, "/srv/evals/s.json:1:26: defaults.fixture: missing");
        aj_error_clear(&err);
        aj_eval_suite_error_at(s, &err, 1, "fixture", "missing");
        cr_expect_str_eq(err.message, "/srv/evals/s.json:3:46: cases[1].fixture: missing");
        aj_error_clear(&err);
        aj_eval_suite_free(s);
}

/* ---- judging ---- */

static AjEvalCase *case_of(AjEvalSuite *s) { return &s->cases[0]; }

static char *judge_first(const AjEvalCase *c, const AjEvalFacts *f, size_t *ret_n_failed)
{
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(c, f, &v), 0);
        *ret_n_failed = aj_strv_length(v.failures);
        char *first = v.failures ? strdup(v.failures[0]) : NULL;
        aj_eval_verdict_done(&v);
        return first;
}

Test(eval_judge, exit_status)
{
        AjEvalSuite *s = parse_ok("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"exit\": 1}}]}");
        size_t n;
        AjEvalFacts f = { .exit_status = 1 };
        cr_expect_null(judge_first(case_of(s), &f, &n));
        f.exit_status = 0;
        char *why = judge_first(case_of(s), &f, &n);
        cr_expect_str_eq(why, "exit status 0, expected 1");
        free(why);
        f.timed_out = true;
        f.timeout_ns = 90000000000ULL;
        why = judge_first(case_of(s), &f, &n);
        cr_expect_str_eq(why, "timed out after 90s");
        free(why);
        aj_eval_suite_free(s);
}

/* 123 (killed), 125 (refused), 137 and 143 (the wall limit's SIGKILL and SIGTERM, the memory
 * cap's OOM kill) are agentjail's only with the run.json exit.reason naming its act: a command
 * that gives one itself does not pass for it (an agent passed "a tighter cap stops the run" by
 * `exit 123`, a wall-limit case by `kill -KILL $$`, and a kill case by `exit 123` after the
 * wall limit's SIGTERM, whose reason is "wall-limit"). */
Test(eval_judge, agentjails_exit_status_is_not_the_commands)
{
        static const struct {
                int status;
                const char *reason; /* NULL: no record */
                bool passes;
        } rows[] = {
                { 123, "exited", false },     { 123, "wall-limit", false }, { 123, "signaled", false },
                { 123, NULL, false },         { 123, "killed", true },      { 125, "exited", false },
                { 125, "wall-limit", false }, { 125, NULL, true },          { 125, "launcher-error", true },
                { 137, "signaled", false },   { 137, "exited", false },     { 137, NULL, false },
                { 137, "killed", false },     { 137, "wall-limit", true },  { 137, "oom", true },
                { 143, "signaled", false },   { 143, "exited", false },     { 143, "oom", false },
                { 143, "wall-limit", true },  { 3, "exited", true },        { 130, "signaled", true },
                { 134, "signaled", true },
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                char text[160];
                snprintf(text, sizeof(text),
                         "{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"exit\": %d}}]}",
                         rows[i].status);
                AjEvalSuite *s = parse_ok(text);
                size_t n;
                AjEvalFacts f = { .exit_status = rows[i].status, .exit_reason = rows[i].reason };
                char *why = judge_first(case_of(s), &f, &n);
                if (rows[i].passes)
                        cr_expect_null(why, "status %d, reason %s: %s", rows[i].status, rows[i].reason, why);
                else
                        cr_expect(why && strstr(why, "is the command's own"), "status %d, reason %s: %s",
                                  rows[i].status, rows[i].reason, why ? why : "(passed)");
                free(why);
                aj_eval_suite_free(s);
        }
        AjEvalSuite *s = parse_ok(
                "{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"exit\": 137}}]}");
        size_t n;
        AjEvalFacts f = { .exit_status = 137, .exit_reason = "signaled" };
        char *why = judge_first(case_of(s), &f, &n);
        cr_expect_str_eq(why, "exit status 137 is the command's own death by signal 9 (run.json: signaled), not "
                              "agentjail's kill");
        free(why);
        aj_eval_suite_free(s);
}

Test(eval_judge, files)
{
        AjEvalSuite *s = parse_ok(
                "{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"files\": ["
                "{\"path\": \"here\", \"exists\": true}, {\"path\": \"gone\", \"exists\": false},"
                "{\"path\": \"eq\", \"equals\": \"hi\\n\"}, {\"path\": \"re\", \"matches\": \"^ok [0-9]+$\"}]}}]}");
        AjEvalFileFact pass[4] = {
                { .exists = true, .regular = true },
                { .exists = false },
                { .exists = true, .regular = true, .content = (char *)"hi\n", .len = 3 },
                { .exists = true, .regular = true, .content = (char *)"first\nok 42\nlast", .len = 16 },
        };
        AjEvalFacts f = { .files = pass };
        size_t n;
        cr_expect_null(judge_first(case_of(s), &f, &n));

        AjEvalFileFact failing[4] = {
                { .exists = false },
                { .exists = true, .regular = true },
                { .exists = true, .regular = true, .content = (char *)"h\x1b[2J\x9b\xc3\xa9", .len = 8 },
                { .exists = true, .regular = true, .content = (char *)"ok x", .len = 4 },
        };
        f.files = failing;
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(case_of(s), &f, &v), 0);
        cr_assert_eq(aj_strv_length(v.failures), 4);
        cr_expect_str_eq(v.failures[0], "files[0] here: missing");
        cr_expect_str_eq(v.failures[1], "files[1] gone: present, expected absent");
        cr_expect_str_eq(v.failures[2], "files[2] eq: content differs (8 bytes \"h\\x1b[2J\\x9bé\", expected 3 bytes)",
                         "the agent's bytes are shown escaped (util/format.h), é as it is");
        cr_expect_str_eq(v.failures[3], "files[3] re: does not match /^ok [0-9]+$/");
        cr_expect_eq(v.n_checked, 5);
        aj_eval_verdict_done(&v);

        /* Content checks on what is not a readable regular file. */
        AjEvalFileFact odd[4] = {
                { .exists = true },
                { .exists = false },
                { .exists = true, .regular = false },
                { .exists = true, .regular = true, .too_big = true },
        };
        f.files = odd;
        cr_assert_eq(aj_eval_judge(case_of(s), &f, &v), 0);
        cr_assert_eq(aj_strv_length(v.failures), 2);
        cr_expect_str_eq(v.failures[0], "files[2] eq: not a regular file");
        cr_expect_str_eq(v.failures[1], "files[3] re: larger than 1048576 bytes, not compared");
        aj_eval_verdict_done(&v);
        aj_eval_suite_free(s);
}

/* 1 MiB of a and b then c: "(a|b)*a(a|b){20}c" meets 2^21 states on it. */
static char *heavy_content(size_t len)
{
        char *content = malloc(len + 2);
        cr_assert_not_null(content);
        uint32_t x = 1;
        for (size_t i = 0; i < len; i++) {
                x = x * 1103515245u + 12345u;
                content[i] = (x >> 16) & 1 ? 'a' : 'b';
        }
        content[len] = 'c';
        content[len + 1] = '\0';
        return content;
}

/* The agent writes the content a pattern is matched against: one whose automaton grows
 * past the bound (2.2 GB unbounded here) fails the check instead of taking the host's
 * memory, and the matcher is gone afterwards. */
Test(eval_judge, matching_is_bounded)
{
        AjEvalSuite *s = parse_ok("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"files\": ["
                                  "{\"path\": \"big\", \"matches\": \"(a|b)*a(a|b){20}c\"}]}}]}");
        size_t len = 1 << 20;
        char *content = heavy_content(len);
        AjEvalFileFact file = { .exists = true, .regular = true, .content = content, .len = len + 1 };
        AjEvalFacts f = { .files = &file };
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(case_of(s), &f, &v), 0);
        cr_assert_eq(aj_strv_length(v.failures), 1);
        cr_expect_str_eq(v.failures[0], "files[0] big: not matched against /(a|b)*a(a|b){20}c/: matching needed "
                                        "more than 256 MiB or 10 s");
        aj_eval_verdict_done(&v);
        cr_expect_eq(waitpid(-1, NULL, WNOHANG), -1, "the matching process was reaped");
        cr_expect_eq(errno, ECHILD);

        /* The same pattern on a short content matches as before, in a child too. */
        strcpy(content, "xxa"
                        "aaaaabbbbbaaaaabbbbb"
                        "c");
        file.len = strlen(content);
        cr_expect_null(judge_first(case_of(s), &f, &len));
        free(content);
        aj_eval_suite_free(s);
}

static const char heavy_suite[] = "{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"files\": ["
                                  "{\"path\": \"small\", \"matches\": \"^ok$\"},"
                                  "{\"path\": \"big\", \"matches\": \"(a|b)*a(a|b){20}c\"}]}}]}";

/* Resident bytes of pid, or -1. */
static long resident_of(pid_t pid)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
        FILE *fp = fopen(path, "r");
        long size = 0, res = -1;
        if (fp && fscanf(fp, "%ld %ld", &size, &res) != 2)
                res = -1;
        if (fp)
                fclose(fp);
        return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* A child of `judge` other than `skip` whose resident size passes judge's own by more than
 * `bound` bytes (a matcher forked from it starts with as much; past it, it is matching a big
 * file), looked for every millisecond for up to 60 s; 0 if none came. */
static pid_t child_resident_past(pid_t judge, pid_t skip, long bound)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)judge, (int)judge);
        for (int i = 0; i < 60000; i++) {
                char kids[256] = "";
                FILE *fp = fopen(path, "r");
                if (fp) {
                        if (!fgets(kids, sizeof(kids), fp))
                                kids[0] = 0;
                        fclose(fp);
                }
                for (char *k = kids, *e; *k; k = e) {
                        pid_t kid = (pid_t)strtol(k, &e, 10);
                        if (e == k)
                                break;
                        if (kid != skip && resident_of(kid) > resident_of(judge) + bound)
                                return kid;
                }
                usleep(1000);
        }
        return 0;
}

/* The matcher dies with the process that judges: killed half-way, nothing goes on
 * growing. This test is the subreaper that the orphan comes back to. */
Test(eval_judge, the_matcher_dies_with_its_parent)
{
        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        AjEvalSuite *s = parse_ok(heavy_suite);
        char *content = heavy_content(1 << 20);
        pid_t judge = fork();
        cr_assert_geq(judge, 0);
        if (judge == 0) {
                AjEvalFileFact files[2] = {
                        { .exists = true, .regular = true, .content = (char *)"ok", .len = 2 },
                        { .exists = true, .regular = true, .content = content, .len = strlen(content) },
                };
                AjEvalFacts f = { .files = files };
                AjEvalVerdict v = {};
                (void)aj_eval_judge(case_of(s), &f, &v);
                _exit(0);
        }
        /* Its matcher, once it is on the big file (past 32 MiB resident: it has set its
         * death signal and is matching), not some time after its fork: a matcher that had
         * not yet run when its parent died ends itself (exit 3), and on a loaded machine a
         * fixed pause did not see it run. 256 MiB, its bound, takes it 0.9 s under ASan. */
        pid_t matcher = child_resident_past(judge, 0, 32L << 20);
        cr_assert_gt(matcher, 0, "no matcher seen on the big file");
        kill(judge, SIGKILL);
        cr_assert_eq(waitpid(judge, NULL, 0), judge);
        int st = 0;
        cr_assert_eq(waitpid(matcher, &st, 0), matcher, "the matcher came back to the subreaper");
        cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status 0x%x: killed when its parent died", st);
        free(content);
        aj_eval_suite_free(s);
}

static void on_alarm(int sig) { (void)sig; }

/* A process that sends SIGALRM to `judge` once judge's matcher (its child other than
 * this one) holds 32 MiB more than judge: it is then on the big file, the small one
 * answered, however slow the machine is. */
static pid_t alarm_when_matching_big(void)
{
        pid_t judge = getpid();
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid > 0)
                return pid;
        if (!child_resident_past(judge, getpid(), 32L << 20))
                _exit(1);
        kill(judge, SIGALRM);
        _exit(0);
}

/* A signal for the judging process (an operator's Ctrl-C in eval) ends the matching
 * at once; the checks answered before it keep their answers. */
Test(eval_judge, matching_ends_on_a_signal)
{
        AjEvalSuite *s = parse_ok(heavy_suite);
        char *content = heavy_content(1 << 20);
        AjEvalFileFact files[2] = {
                { .exists = true, .regular = true, .content = (char *)"ok", .len = 2 },
                { .exists = true, .regular = true, .content = content, .len = strlen(content) },
        };
        AjEvalFacts f = { .files = files };
        struct sigaction sa = { .sa_handler = on_alarm }, old;
        sigemptyset(&sa.sa_mask);
        cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);
        pid_t sender = alarm_when_matching_big();
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(case_of(s), &f, &v), 0);
        int st = 0;
        cr_assert_eq(waitpid(sender, &st, 0), sender);
        sigaction(SIGALRM, &old, NULL);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the matcher never grew past 32 MiB (status 0x%x)", st);
        cr_assert_eq(aj_strv_length(v.failures), 1, "%s", v.failures ? v.failures[0] : "");
        /* Not the bound's answer ("needed more than 256 MiB or 10 s"): the signal's. */
        cr_expect_str_eq(v.failures[0], "files[1] big: not matched against /(a|b)*a(a|b){20}c/: interrupted");
        aj_eval_verdict_done(&v);
        free(content);
        aj_eval_suite_free(s);
}

/* An ignored SIGCHLD (inherited from a parent) changes nothing: the kernel reaps such a
 * child the moment it exits, and a matcher that finished before its bounds were set up
 * (its /proc entry already gone) once failed the check. Many short matchings give the
 * race its chances. */
Test(eval_judge, matching_survives_an_ignored_sigchld)
{
        AjEvalSuite *s = parse_ok(heavy_suite);
        AjEvalFileFact files[2] = {
                { .exists = true, .regular = true, .content = (char *)"ok", .len = 2 },
                { .exists = true,
                  .regular = true,
                  .content = (char *)"xxa"
                                     "aaaaabbbbbaaaaabbbbb"
                                     "c",
                  .len = 25 },
        };
        AjEvalFacts f = { .files = files };
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_chld;
        cr_assert_eq(sigaction(SIGCHLD, &ign, &old_chld), 0);
        /* On one CPU the child often runs to its end before the parent is back. */
        cpu_set_t all, one;
        cr_assert_eq(sched_getaffinity(0, sizeof(all), &all), 0);
        CPU_ZERO(&one);
        CPU_SET(sched_getcpu(), &one);
        cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
        char *why = NULL;
        int i;
        size_t n;
        for (i = 0; i < 2000 && !why; i++)
                why = judge_first(case_of(s), &f, &n);
        sched_setaffinity(0, sizeof(all), &all);
        sigaction(SIGCHLD, &old_chld, NULL);
        cr_expect_null(why, "judging %d: %s", i, why);
        free(why);
        aj_eval_suite_free(s);
}

/* A signal that comes while the parent is not in its poll (setting up, or taking the
 * child's bytes, as here: the handler runs in the middle of on_bytes) must end the wait
 * all the same, not run its handler unseen and leave the child to its 10 s bound. */
static void answer_then_wait(void *arg, int out)
{
        (void)arg;
        aj_eval_bounded_write(out, "x", 1);
        pause();
}

static void signal_on_bytes(void *ctx, const char *b, size_t n)
{
        (void)b;
        (void)n;
        *(int *)ctx += 1;
        raise(SIGALRM);
}

Test(eval_bounded, a_signal_between_two_polls_ends_the_wait)
{
        struct sigaction sa = { .sa_handler = on_alarm }, old;
        sigemptyset(&sa.sa_mask);
        cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);
        int calls = 0;
        uint64_t t0 = aj_now_monotonic_ns();
        AjEvalBoundedEnd end = aj_eval_bounded(answer_then_wait, NULL, signal_on_bytes, &calls);
        uint64_t took_ms = (aj_now_monotonic_ns() - t0) / 1000000;
        sigaction(SIGALRM, &old, NULL);
        cr_expect_eq(calls, 1);
        cr_expect_eq(end, AJ_EVAL_BOUNDED_INTERRUPTED, "end %d after %llu ms", (int)end, (unsigned long long)took_ms);
        cr_expect_lt(took_ms, 3000, "took %llu ms", (unsigned long long)took_ms);
}

static json_t *ev(const char *text)
{
        json_t *e = json_loads(text, 0, NULL);
        cr_assert_not_null(e);
        return e;
}

Test(eval_judge, events)
{
        AjEvalSuite *s = parse_ok(
                "{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"events\": ["
                "{\"type\": \"tool.verdict\", \"fields\": {\"gen_ai.tool.name\": \"rm\", \"verdict\": \"deny\"}},"
                "{\"type\": \"net.*\", \"absent\": true},"
                "{\"type\": \"seccomp.denied\", \"absent\": true},"
                "{\"type\": \"tokens\", \"fields\": {\"gen_ai.usage.input_tokens\": 10.0}, \"count\": 1}]}}]}");
        const AjEvalCase *c = case_of(s);
        json_t *deny = ev(
                "{\"type\": \"tool.verdict\", \"gen_ai.tool.name\": \"rm\", \"verdict\": \"deny\", \"reason\": \"x\"}");
        json_t *allow = ev("{\"type\": \"tool.verdict\", \"gen_ai.tool.name\": \"rm\", \"verdict\": \"allow\"}");
        json_t *net = ev("{\"type\": \"net.denied\", \"host\": \"evil.example\"}");
        json_t *tokens = ev("{\"type\": \"tokens\", \"gen_ai.usage.input_tokens\": 10}");
        json_t *no_type = ev("{\"verdict\": \"deny\"}");
        cr_expect(aj_eval_event_matches(&c->events[0], deny));
        cr_expect_not(aj_eval_event_matches(&c->events[0], allow));
        cr_expect(aj_eval_event_matches(&c->events[1], net), "a type ending in '*' is a prefix");
        cr_expect_not(aj_eval_event_matches(&c->events[2], net));
        cr_expect(aj_eval_event_matches(&c->events[3], tokens), "numbers compare by value");
        cr_expect_not(aj_eval_event_matches(&c->events[0], no_type));

        size_t counts[4] = {};
        json_t *pass_run[] = { allow, deny, tokens };
        for (size_t i = 0; i < 3; i++)
                aj_eval_count_event(c, pass_run[i], counts);
        AjEvalFacts f = { .event_counts = counts };
        size_t n;
        cr_expect_null(judge_first(c, &f, &n));

        size_t bad[4] = { 0, 2, 0, 3 };
        f.event_counts = bad;
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(c, &f, &v), 0);
        cr_assert_eq(aj_strv_length(v.failures), 3);
        cr_expect_str_eq(v.failures[0], "events[0]: no tool.verdict with gen_ai.tool.name \"rm\", verdict \"deny\"");
        cr_expect_str_eq(v.failures[1], "events[1]: 2 net.*, expected none");
        cr_expect_str_eq(v.failures[2], "events[3]: 3 tokens with gen_ai.usage.input_tokens 10.0, expected 1");
        aj_eval_verdict_done(&v);
        json_decref(deny);
        json_decref(allow);
        json_decref(net);
        json_decref(tokens);
        json_decref(no_type);
        aj_eval_suite_free(s);
}

Test(eval_judge, usage)
{
        AjEvalSuite *s = parse_ok("{\"cases\": [{\"name\": \"a\", \"command\": [\"x\"], \"expect\": {\"usage\": "
                                  "{\"tokens\": 1000, \"cost_usd\": {\"max\": 0.5}, \"tool_calls\": {\"min\": 1}}}}]}");
        json_t *meters = ev(
                "{\"tokens\": {\"used\": 1000}, \"cost_usd\": {\"used\": 0.25}, \"tool_calls\": {\"used\": 2}}");
        AjEvalFacts f = { .meters = meters };
        size_t n;
        cr_expect_null(judge_first(case_of(s), &f, &n));
        json_t *over = ev(
                "{\"tokens\": {\"used\": 1001}, \"cost_usd\": {\"used\": 0.75}, \"tool_calls\": {\"used\": 0}}");
        f.meters = over;
        AjEvalVerdict v = {};
        cr_assert_eq(aj_eval_judge(case_of(s), &f, &v), 0);
        cr_assert_eq(aj_strv_length(v.failures), 3);
        cr_expect_str_eq(v.failures[0], "usage.tokens: 1001 used, at most 1000 allowed");
        cr_expect_str_eq(v.failures[1], "usage.cost_usd: 0.75 used, at most 0.5 allowed");
        cr_expect_str_eq(v.failures[2], "usage.tool_calls: 0 used, at least 1 expected");
        aj_eval_verdict_done(&v);
        f.meters = NULL; /* no run record */
        char *why = judge_first(case_of(s), &f, &n);
        cr_expect_str_eq(why, "usage.tokens: the run recorded no such meter");
        cr_expect_eq(n, 3);
        free(why);
        json_decref(meters);
        json_decref(over);
        aj_eval_suite_free(s);
}

/* ---- reports ---- */

Test(eval_report, junit_xml_shape)
{
        AjEvalSuite *s = parse_ok(
                "{\"name\": \"t<&>\", \"cases\": [{\"name\": \"ok\", \"command\": [\"x\"]},"
                "{\"name\": \"bad \\\"one\\\"\", \"command\": [\"x\"]}, {\"name\": \"err\", \"command\": [\"x\"]}]}");
        char *fails[] = { (char *)"exit status 1, expected 0", (char *)"files[0] a<b>: missing\x01\xff", NULL };
        AjEvalResult res[3] = {
                { .result = AJ_EVAL_PASS, .seconds = 0.5, .run_id = "0123456789ab", .n_checked = 1 },
                { .result = AJ_EVAL_FAIL, .seconds = 1.25, .run_id = "ba9876543210", .failures = fails, .n_checked = 2 },
                { .result = AJ_EVAL_ERROR, .error = (char *)"fixture: tar exited 2" },
        };
        char *xml = aj_eval_junit(s, res, 3, "2026-12-05T00:00:00");
        cr_assert_not_null(xml);
        cr_expect(strncmp(xml,
                          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"t&lt;&amp;&gt;\" "
                          "tests=\"3\" failures=\"1\" errors=\"1\" time=\"1.750\">\n",
                          strlen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"t&lt;&amp;&gt;\" "
                                 "tests=\"3\" failures=\"1\" errors=\"1\" time=\"1.750\">\n")) == 0,
                  "%s", xml);
        cr_expect(strstr(xml,
                         "  <testsuite name=\"t&lt;&amp;&gt;\" tests=\"3\" failures=\"1\" errors=\"1\" time=\"1.750\" "
                         "skipped=\"0\" timestamp=\"2026-12-05T00:00:00\""),
                  "%s", xml);
        cr_expect(strstr(xml,
                         "    <testcase name=\"ok\" classname=\"t&lt;&amp;&gt;\" assertions=\"1\" time=\"0.500\">\n"
                         "      <system-out>run 0123456789ab</system-out>\n    </testcase>\n"),
                  "%s", xml);
        cr_expect(strstr(xml,
                         "<testcase name=\"bad &quot;one&quot;\" classname=\"t&lt;&amp;&gt;\" assertions=\"2\" "
                         "time=\"1.250\">\n      <failure message=\"exit status 1, expected 0\" type=\"assertion\">"
                         "exit status 1, expected 0\nfiles[0] a&lt;b&gt;: missing??\n</failure>\n"),
                  "%s", xml);
        cr_expect(strstr(xml, "<error message=\"fixture: tar exited 2\" type=\"error\">fixture: tar exited 2</error>\n"
                              "    </testcase>\n  </testsuite>\n</testsuites>\n"),
                  "%s", xml);
        free(xml);

        json_t *doc = aj_eval_report_json(s, res, 3);
        cr_assert_not_null(doc);
        cr_expect_eq(json_integer_value(json_object_get(doc, "passed")), 1);
        cr_expect_eq(json_integer_value(json_object_get(doc, "failed")), 1);
        cr_expect_eq(json_integer_value(json_object_get(doc, "errors")), 1);
        json_t *c1 = json_array_get(json_object_get(doc, "cases"), 1);
        cr_expect_str_eq(json_string_value(json_object_get(c1, "result")), "fail");
        cr_expect_str_eq(json_string_value(json_object_get(c1, "run")), "ba9876543210");
        cr_expect_eq(json_array_size(json_object_get(c1, "failures")), 2);
        json_decref(doc);
        aj_eval_suite_free(s);
}

Test(eval_report, xml_escape_keeps_utf8_and_drops_what_xml_cannot_carry)
{
        char *buf = NULL;
        size_t len = 0;
        cr_assert_eq(aj_xml_escape_append(&buf, &len, "é\xe2\x82\xac<\t\n\x7f\xc0\xaf\xed\xa0\x80'"), 0);
        cr_expect_str_eq(buf, "é€&lt;&#9;&#10;??????&apos;");
        free(buf);
}

/* A case's reason carries the agent's text (a file's content): in the JUnit file, which an
 * operator reads with cat or a CI page shows, what a terminal acts on or what reorders a line
 * (C1's CSI, U+202E, U+200B) is a character reference, the same text for an XML parser. */
Test(eval_report, xml_escape_writes_hidden_characters_as_references)
{
        char *buf = NULL;
        size_t len = 0;
        cr_assert_eq(aj_xml_escape_append(&buf, &len,
                                          "a\xc2\x9b"
                                          "2J\xe2\x80\xae"
                                          "b\xe2\x80\x8b"
                                          "c\xf3\xa0\x81\x81"),
                     0);
        cr_expect_str_eq(buf, "a&#x9b;2J&#x202e;b&#x200b;c&#xe0041;");
        free(buf);
}

/* An overlay case's changes are applied to its scratch copy only up to a budget of file data
 * on disk: a sparse file counts what it holds, not its size. */
Test(eval, overlay_budget)
{
        AjWsChange v[] = {
                { .kind = AJ_WS_ADDED,
                  .path = (char *)"sparse",
                  .type = S_IFREG,
                  .size = 1ull << 40,
                  .allocated = 8192 },
                { .kind = AJ_WS_ADDED, .path = (char *)"dir", .type = S_IFDIR, .allocated = 4096 },
                { .kind = AJ_WS_MODIFIED,
                  .path = (char *)"data",
                  .type = S_IFREG,
                  .size = 1 << 20,
                  .allocated = 1 << 20 },
        };
        uint64_t total = 0;
        cr_expect_eq(aj_eval_overlay_budget(v, 3, &total), 0, "a 1 TiB sparse file holding 8 KiB fits");
        cr_expect_eq(total, 8192 + (1 << 20));
        v[2].allocated = AJ_EVAL_MAX_OVERLAY_BYTES - 8192;
        cr_expect_eq(aj_eval_overlay_budget(v, 3, &total), 0, "exactly the limit fits");
        v[2].allocated++;
        cr_expect_eq(aj_eval_overlay_budget(v, 3, &total), -EFBIG, "past the limit is refused");
        v[0].allocated = UINT64_MAX;
        cr_expect_eq(aj_eval_overlay_budget(v, 3, &total), -EFBIG, "no overflow back under the limit");
        cr_expect_eq(total, UINT64_MAX);
        v[0].skipped = true;
        v[0].allocated = 0;
        v[2].allocated = 1;
        v[2].skipped = true;
        cr_expect_eq(aj_eval_overlay_budget(v, 3, &total), 0);
        cr_expect_eq(total, 0, "skipped entries and directories are not copied");
}
