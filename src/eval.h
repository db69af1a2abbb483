/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eval suites (`agentjail eval`, docs/evals.md): cases that each run a command in a fresh
 * jail over a copy of a workspace fixture, then assertions on what the run did. Pure:
 * eval-suite.c parses and validates a suite file (errors name FILE:LINE:COL and the
 * key, like a profile's), eval-judge.c judges a case from the facts the runner gathered
 * (exit status, files, the chain's events, the meters), eval-report.c makes the JUnit XML
 * and the JSON report. The runner is src/cli/eval.c.
 */
#pragma once

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"
#include "util/error.h"
#include "util/macros.h"
#include "workspace.h"

/* Hard limits on what a suite file asks for. */
#define AJ_EVAL_MAX_SUITE_BYTES (1024 * 1024)
#define AJ_EVAL_MAX_CASES 1000
#define AJ_EVAL_MAX_CHECKS 256 /* per kind of assertion in one case */
#define AJ_EVAL_MAX_ARGV 256
#define AJ_EVAL_MAX_STRING 4096
#define AJ_EVAL_MAX_NAME 128
#define AJ_EVAL_MAX_FILE_BYTES (1024 * 1024)   /* a file's content compared or matched */
#define AJ_EVAL_MAX_OVERLAY_BYTES (4ULL << 30) /* file data an overlay case's changes may hold */
#define AJ_EVAL_MAX_JOBS 64
#define AJ_EVAL_DEFAULT_TIMEOUT_NS (600ULL * 1000000000ULL)
#define AJ_EVAL_MAX_TIMEOUT_NS (24ULL * 3600ULL * 1000000000ULL)

/* Where a case's run comes from. */
typedef enum {
        AJ_EVAL_SOURCE_COMMAND,  /* "command": `agentjail run` of an argv */
        AJ_EVAL_SOURCE_RECORDED, /* "run": a recorded run, replayed (needs `agentjail replay`) */
} AjEvalSource;

typedef enum {
        AJ_EVAL_FILE_EXISTS,
        AJ_EVAL_FILE_ABSENT,
        AJ_EVAL_FILE_EQUALS,  /* the whole content, exactly */
        AJ_EVAL_FILE_MATCHES, /* a POSIX extended regular expression, anywhere in the content */
} AjEvalFileKind;

typedef struct {
        char *path; /* relative to the workspace, no ".." */
        AjEvalFileKind kind;
        char *text; /* EQUALS: the content; MATCHES: the expression as written */
        regex_t re; /* MATCHES */
        bool re_compiled;
} AjEvalFileCheck;

typedef struct {
        char *type;     /* exact, or a prefix when it ends in '*' ("net.*") */
        json_t *fields; /* members the event must have with these values; NULL: any */
        bool absent;    /* no event may match */
        int64_t count;  /* exactly this many must match; -1: at least one */
} AjEvalEventCheck;

/* The meters usage bounds read from run.json ("meters".KEY."used"). */
typedef enum {
        AJ_EVAL_USAGE_TOKENS,
        AJ_EVAL_USAGE_INPUT_TOKENS,
        AJ_EVAL_USAGE_OUTPUT_TOKENS,
        AJ_EVAL_USAGE_COST_USD,
        AJ_EVAL_USAGE_TOOL_CALLS,
        _AJ_EVAL_USAGE_MAX,
} AjEvalUsageKey;

const char *aj_eval_usage_name(AjEvalUsageKey k);

typedef struct {
        bool has_min, has_max;
        double min, max;
} AjEvalBound;

typedef struct {
        char *name;
        AjEvalSource source;
        char **argv;        /* COMMAND (NULL-terminated) */
        char *recorded_run; /* RECORDED */
        char *fixture;      /* a directory or a tarball, resolved against the suite's directory;
                             * NULL: an empty workspace */
        char *profile;      /* a name, or a path resolved against the suite's directory; NULL: default */
        char **caps;        /* "KEY=VALUE", as `run --cap` takes them (NULL-terminated, may be NULL) */
        uint64_t timeout_ns;
        int exit_status; /* agentjail's exit status (the command's, or 123, 125...) */
        AjEvalFileCheck *files;
        size_t n_files;
        AjEvalEventCheck *events;
        size_t n_events;
        AjEvalBound usage[_AJ_EVAL_USAGE_MAX];
} AjEvalCase;

typedef struct {
        char *file; /* as given, for messages */
        char *dir;  /* the suite file's directory: relative fixtures and profile paths start here */
        char *text;
        char *name; /* "name", else the file's base name without ".json" */
        AjEvalCase *cases;
        size_t n_cases;
} AjEvalSuite;

void aj_eval_suite_free(AjEvalSuite *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjEvalSuite *, aj_eval_suite_free);

/* Parse and validate a suite's text; `file` names it in messages and its directory is where
 * relative paths start. -EINVAL with "FILE:LINE:COL: cases[2].expect.files[0].path:
 * message" in *err. */
int aj_eval_suite_parse(const char *file, const char *text, AjEvalSuite **ret, AjError *err);
/* Read `file` (at most AJ_EVAL_MAX_SUITE_BYTES) and parse it; relative paths in it start
 * in the file's directory made absolute (realpath), whatever the current directory. */
int aj_eval_suite_load(const char *file, AjEvalSuite **ret, AjError *err);
/* Compile the suite's "matches" patterns: all of them first in a bounded child process
 * (eval-bounded.h: glibc's regcomp() has patterns that take it gigabytes or hours), then
 * here. -EINVAL with the pattern's "FILE:LINE:COL: ...matches: message" when one is not a
 * valid expression or is past the bounds; -EINTR when a signal came meanwhile. */
int aj_eval_suite_compile(AjEvalSuite *s, AjError *err);
/* "FILE:LINE:COL: cases[I].KEY: message" about a case's member (for the runner's checks
 * that need the file system, e.g. a fixture that is missing). Returns -EINVAL. */
_printf_(5, 6) int aj_eval_suite_error_at(const AjEvalSuite *s, AjError *err, size_t case_index, const char *key,
                                          const char *fmt, ...);
/* Whether this build runs cases of that source; the parser refuses the others with the
 * position of the member. A recorded run needs `agentjail replay`: when it lands, say yes
 * here and build its argv in src/cli/eval.c's case_argv(). */
bool aj_eval_source_supported(AjEvalSource source);

/* ---- judging (eval-judge.c) ---- */

/* A file of a case's "files" checks, as found in the workspace after the run. */
typedef struct {
        bool exists;
        bool regular;  /* a regular file (content read) */
        char *content; /* NUL-terminated; NULL when not read */
        size_t len;
        bool too_big;   /* larger than AJ_EVAL_MAX_FILE_BYTES: content not read */
        int read_error; /* -errno: it could not be looked at */
} AjEvalFileFact;

typedef struct {
        int exit_status;
        const char *exit_reason; /* run.json's exit.reason ("exited": the command's own status); NULL: none */
        bool timed_out;
        uint64_t timeout_ns;
        const AjEvalFileFact *files; /* one per case->files */
        const size_t *event_counts;  /* one per case->events: events that matched */
        json_t *meters;              /* run.json's "meters"; NULL when there is no record */
} AjEvalFacts;

/* Does the event match the check's type and fields (whatever absent and count say)? */
bool aj_eval_event_matches(const AjEvalEventCheck *chk, json_t *ev);
/* counts[i]++ for each of the case's event checks `ev` matches. */
void aj_eval_count_event(const AjEvalCase *c, json_t *ev, size_t *counts);

typedef struct {
        size_t n_checked;
        char **failures; /* a reason for each failed assertion, in the suite's order (NULL-terminated) */
} AjEvalVerdict;

void aj_eval_verdict_done(AjEvalVerdict *v);
/* Every assertion of the case against the facts: exit, files, events, usage, in that
 * order. 0 (the verdict filled; passed when no failures) or -ENOMEM. */
int aj_eval_judge(const AjEvalCase *c, const AjEvalFacts *f, AjEvalVerdict *ret);

/* What applying an overlay case's changes to its scratch copy writes: the allocated bytes of
 * the upper files it copies (holes stay holes), in *ret_total (saturating). -EFBIG past
 * AJ_EVAL_MAX_OVERLAY_BYTES: the case is an error, nothing is applied. */
int aj_eval_overlay_budget(const AjWsChange *v, size_t n, uint64_t *ret_total);

/* ---- reports (eval-report.c) ---- */

typedef enum {
        AJ_EVAL_PASS,
        AJ_EVAL_FAIL,  /* an assertion failed (a timeout is one) */
        AJ_EVAL_ERROR, /* the case could not be run (fixture, spawn, no run record) */
} AjEvalResultKind;

const char *aj_eval_result_name(AjEvalResultKind k); /* "pass", "fail", "error" */

typedef struct {
        AjEvalResultKind result;
        double seconds;
        char run_id[AJ_RUN_ID_LEN + 1]; /* "" when the case made no run */
        int exit_status;                /* -1: none */
        size_t n_checked;
        char **failures; /* FAIL: the failed assertions (NULL-terminated) */
        char *error;     /* ERROR: why */
        char *workspace; /* kept with --keep, else NULL */
} AjEvalResult;

void aj_eval_result_done(AjEvalResult *r);
/* The first failed assertion or the error; "" when it passed. */
const char *aj_eval_result_reason(const AjEvalResult *r);

/* JUnit XML (testsuites > testsuite > testcase, with failure/error carrying a message)
 * for `n` results in the suite's case order; `timestamp` as "YYYY-MM-DDTHH:MM:SS" (UTC). New string or NULL. */
char *aj_eval_junit(const AjEvalSuite *s, const AjEvalResult *results, size_t n, const char *timestamp);
/* {"suite", "file", "passed", "failed", "errors", "cases": [{"name", "result", "seconds",
 * "run", "exit", "assertions", "failures", "error"}]}. New reference or NULL. */
json_t *aj_eval_report_json(const AjEvalSuite *s, const AjEvalResult *results, size_t n);
/* XML 1.0 text with &<>"' escaped; control characters and invalid UTF-8 become '?'; what
 * util/format.h hides (C1 controls, bidi controls, invisible code points) becomes a
 * character reference ("&#x202e;").
 * Appends to a NUL-terminated malloc'ed string; -ENOMEM. */
int aj_xml_escape_append(char **buf, size_t *len, const char *s);
