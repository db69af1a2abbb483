/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail logs`: a run's event chain, printed, followed, exported (OTLP) or verified. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli/verb.h"
#include "cli/verbs.h"
#include "config.h"
#include "events.h"
#include "otlp.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/syscalls.h"

#define LOGS_LINE_MAX (1024 * 1024)
#define LOGS_HELP                                                                                           \
        "The run's event chain, one line per event: time (UTC), seq, type, fields.\n"                       \
        "  -f, --follow       keep printing new events until the run exits (or Ctrl-C)\n"                   \
        "  --json             the raw JSON lines of events.jsonl\n"                                         \
        "  -t, --type PREFIX  only events whose type is PREFIX or starts with PREFIX.\n"                    \
        "                     (\"net\" matches net.connect; \"tool.re\" matches tool.request;\n"            \
        "                     \"llm\" the model calls: llm.request and llm.response)\n"                     \
        "  --verify           check the chain instead of printing it: every event's \"prev\" is\n"          \
        "                     the sha256 of the line before, and the run's end matches run.json's\n"        \
        "                     anchor; exit 0 intact, 1 changed, removed or added events\n"                  \
        "                     (which, on stderr), 3 consistent but run.json has no anchor (a cut-off end\n" \
        "                     could not be seen: a live run, or one whose supervisor was lost); a line\n"   \
        "                     torn by a killed writer is kept, and accepted only right before the\n"        \
        "                     events.torn event that names its length and sha256\n"                         \
        "  --otlp             the events (with --type, the matching ones) as one OpenTelemetry\n"           \
        "                     OTLP/JSON logs request, for a collector's /v1/logs"

#define LOGS_USAGE "agentjail logs RUN [-f] [--json | --otlp] [--type PREFIX] | logs RUN --verify [--json]"

typedef struct {
        bool json;
        const char *type;
        size_t bad_lines;
} LogPrinter;

static void log_line(LogPrinter *lp, const char *line, size_t len)
{
        if (len == 0)
                return;
        json_auto_t *ev = json_loadb(line, len, 0, NULL);
        if (!json_is_object(ev)) {
                lp->bad_lines++;
                return;
        }
        if (!aj_event_type_matches(ev, lp->type))
                return;
        if (lp->json) {
                /* The line as the chain holds it, but for raw C1 controls and DEL (the same JSON). */
                _cleanup_free_ char *text = strndup(line, len);
                if (text)
                        cli_print_json_text(text);
                return;
        }
        _cleanup_free_ char *text = NULL;
        if (aj_event_format_log(ev, &text) >= 0)
                puts(text);
}

/* Print every complete line readable from fd; keeps a partial last line in buf. */
static int log_drain(LogPrinter *lp, int fd, char *buf, size_t *have)
{
        for (;;) {
                ssize_t n = read(fd, buf + *have, LOGS_LINE_MAX - *have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                *have += (size_t)n;
                char *start = buf, *nl;
                while ((nl = memchr(start, '\n', *have - (size_t)(start - buf)))) {
                        log_line(lp, start, (size_t)(nl - start));
                        start = nl + 1;
                }
                *have -= (size_t)(start - buf);
                memmove(buf, start, *have);
                if (*have == LOGS_LINE_MAX) {
                        /* A line this long is no event the supervisor wrote. */
                        lp->bad_lines++;
                        *have = 0;
                }
        }
        fflush(stdout);
        return 0;
}

/* Has the run stopped writing to its chain (exited, or its supervisor is gone)? */
static bool run_finished(AjRun *run)
{
        aj_run_record_free(run->rec);
        run->rec = NULL;
        if (aj_run_record_read(run->dir, &run->rec, NULL) < 0)
                return !aj_run_supervisor_alive(run);
        const char *status = run->rec->status;
        if (status && streq(status, "exited"))
                return true;
        return !aj_run_supervisor_alive(run);
}

static int follow_logs(LogPrinter *lp, AjRun *run, int fd, char *buf, size_t *have)
{
        char path[PATH_MAX];
        _cleanup_close_ int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0)
                return -errno;
        int r = aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return r;
        if (inotify_add_watch(ino, path, IN_MODIFY) < 0)
                return -errno;
        /* run.json is replaced by rename(): watch the directory for it. */
        if (inotify_add_watch(ino, run->dir, IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF) < 0)
                return -errno;

        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, &old);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        r = sfd < 0 ? -errno : 0;

        /* The supervisor's exit wakes us too, in case nobody is left to write run.json. */
        _cleanup_close_ int pidfd = -1;
        if (aj_run_supervisor_alive(run))
                pidfd = sys_pidfd_open(run->rec->supervisor_pid, 0);

        while (r == 0) {
                r = log_drain(lp, fd, buf, have);
                if (r < 0 || run_finished(run)) {
                        if (r == 0)
                                r = log_drain(lp, fd, buf, have);
                        break;
                }
                struct pollfd p[3] = { { .fd = ino, .events = POLLIN },
                                       { .fd = sfd, .events = POLLIN },
                                       { .fd = pidfd, .events = POLLIN } };
                if (poll(p, pidfd >= 0 ? 3 : 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (p[1].revents)
                        break; /* the operator stopped following */
                if (p[2].revents) {
                        close(pidfd);
                        pidfd = -1;
                }
                char evbuf[4096];
                while (read(ino, evbuf, sizeof(evbuf)) > 0)
                        ;
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

typedef struct {
        const char *type;
        size_t n;
} OtlpScan;

/* Each record printed as it is made, never held with the others (aj_otlp_logs_request_frame). */
static int otlp_add(json_t *ev, void *userdata)
{
        OtlpScan *o = userdata;
        if (o->type && !aj_event_type_matches(ev, o->type))
                return 0;
        json_auto_t *rec = aj_otlp_log_record(ev);
        if (!rec)
                return 0;
        _cleanup_free_ char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        /* json_dumps leaves C1 and DEL raw, which a terminal may act on (cli_print_json_text). */
        _cleanup_free_ char *shown = text ? aj_json_text_hidden_escaped(text) : NULL;
        if (!shown)
                return -ENOMEM;
        if (o->n++ > 0)
                fputc(',', stdout);
        fputs(shown, stdout);
        return 0;
}

static int otlp_logs(AjRun *run, const char *path, const char *type)
{
        char pbuf[256];
        _cleanup_free_ char *head = NULL, *tail = NULL;
        int r = aj_otlp_logs_request_frame(run->id, run->rec ? run->rec->name : NULL,
                                           cli_run_profile(run, pbuf, sizeof(pbuf)), AJ_VERSION, &head, &tail);
        _cleanup_free_ char *shown_head = r >= 0 ? aj_json_text_hidden_escaped(head) : NULL;
        if (!shown_head) {
                cli_fail("logs", "out of memory");
                return CLI_EXIT_FAIL;
        }
        if (access(path, R_OK) < 0) {
                cli_fail("logs", "cannot read '%s': %s", path, strerror(errno));
                return CLI_EXIT_FAIL;
        }
        OtlpScan scan = { .type = type };
        size_t bad = 0;
        fputs(shown_head, stdout);
        r = aj_events_foreach(path, otlp_add, &scan, &bad);
        if (r < 0) {
                fputc('\n', stdout);
                cli_fail("logs", "cannot export '%s' (the request printed is cut short): %s", path, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        puts(tail);
        if (bad)
                cli_fail("logs", "warning: %zu line(s) of '%s' are not JSON events", bad, path);
        return CLI_EXIT_OK;
}

/* `logs --verify` exit statuses (docs/operating.md): a script must not take a chain whose
 * end nothing pins down for an intact one. */
enum { EXIT_VERIFY_NO_ANCHOR = 3 };

static int verify_chain(AjRun *run, const char *path, bool json)
{
        AjChainCheck c;
        AjChainVerdict v;
        /* run.json and the chain as one (runs.h aj_run_lock_records): the run.json read
         * before an operator's change to the dead run (a release, a rollback step) has the
         * anchor before it, and the chain read after looked extended past its end. */
        _cleanup_close_ int records = -1;
        int r = aj_run_lock_records(run, false, &records);
        if (r == -ENOENT)
                r = 0; /* no chain: said below */
        if (r >= 0)
                r = aj_run_verify_chain(run->rec, path, &c, &v);
        if (r < 0) {
                cli_fail("logs", "cannot read '%s': %s", path, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        static const char *const verdicts[] = {
                [AJ_CHAIN_INTACT] = "intact", [AJ_CHAIN_BROKEN] = "broken", [AJ_CHAIN_NO_ANCHOR] = "no-anchor"
        };
        char why[300] = "";
        /* Its supervisor still writing the last events (between the final run.json and the
         * anchor's refresh): not a verdict either way yet. */
        bool closing = v == AJ_CHAIN_BROKEN && c.after_anchor && aj_run_supervisor_alive(run);
        if (closing) {
                v = AJ_CHAIN_NO_ANCHOR;
                snprintf(why, sizeof(why),
                         "events follow " AJ_RUN_FILE_RUN "'s anchor while the supervisor is still closing "
                         "the run: check again when it is done");
        } else if (v == AJ_CHAIN_NO_ANCHOR) {
                const char *status = run->rec ? run->rec->status : NULL;
                bool running = status && (streq(status, "running") || streq(status, "starting"));
                int w = snprintf(why, sizeof(why),
                                 AJ_RUN_FILE_RUN " records no anchor%s: a cut-off tail cannot be detected",
                                 !run->rec ? " (" AJ_RUN_FILE_RUN " is missing or unreadable)"
                                 : running && aj_run_supervisor_alive(run) ? " (the run is still running)"
                                                                           : "");
                if (c.torn_tail && w > 0 && (size_t)w < sizeof(why))
                        snprintf(why + w, sizeof(why) - (size_t)w,
                                 "; the file ends in a torn line (%llu bytes without a newline: a writer killed in "
                                 "the middle of it, and nothing appended since)",
                                 (unsigned long long)c.torn_tail);
        }
        if (json) {
                json_auto_t *doc = json_pack("{s:s, s:b, s:s, s:b, s:I}", "run", run->id, "ok", v == AJ_CHAIN_INTACT,
                                             "verdict", verdicts[v], "anchored", c.anchored, "events",
                                             (json_int_t)c.count);
                if (doc && c.ok)
                        json_object_set_new(doc, "last_sha256", json_string(c.last_hash));
                if (doc && c.torn_lines)
                        json_object_set_new(doc, "torn_lines", json_integer((json_int_t)c.torn_lines));
                if (doc && c.torn_tail)
                        json_object_set_new(doc, "torn_tail_bytes", json_integer((json_int_t)c.torn_tail));
                if (doc && v == AJ_CHAIN_BROKEN)
                        json_object_set_new(doc, "bad_seq", json_integer((json_int_t)c.bad_seq));
                if (doc && v != AJ_CHAIN_INTACT)
                        json_object_set_new(doc, "problem", json_string(v == AJ_CHAIN_BROKEN ? c.problem : why));
                cli_print_json(doc);
        } else if (v == AJ_CHAIN_INTACT) {
                printf("run %s: the event chain is intact: %llu events, the last sha256 %s\n", run->id,
                       (unsigned long long)c.count, c.last_hash);
                if (c.torn_lines)
                        printf("run %s: %llu line(s) torn by a killed writer, each kept and named by the "
                               "%s event after it\n",
                               run->id, (unsigned long long)c.torn_lines, AJ_EVENTS_TORN);
        }
        if (v == AJ_CHAIN_BROKEN)
                cli_fail("logs", "run %s: the event chain is broken: %s", run->id, c.problem);
        else if (v == AJ_CHAIN_NO_ANCHOR)
                cli_fail("logs", "run %s: the event chain is consistent for %llu events, but %s", run->id,
                         (unsigned long long)c.count, why);
        return v == AJ_CHAIN_INTACT ? CLI_EXIT_OK : v == AJ_CHAIN_BROKEN ? CLI_EXIT_FAIL : EXIT_VERIFY_NO_ANCHOR;
}

typedef struct {
        bool json, follow, verify, otlp;
        const char *type;
        const char *run;
} LogsOptions;

/* 0 with *o filled, 1 for --help (printed), or CLI_EXIT_USAGE (reported). */
static int parse_logs_options(int argc, char **argv, LogsOptions *o)
{
        static const struct option options[] = {
                CLI_OPTIONS_COMMON,
                { "follow", no_argument, NULL, 'f' },
                { "type", required_argument, NULL, 't' },
                { "verify", no_argument, NULL, CLI_OPT_VERIFY },
                { "otlp", no_argument, NULL, CLI_OPT_OTLP },
                {},
        };
        *o = (LogsOptions){ 0 };
        int c;
        cli_getopt_reset();
        while ((c = getopt_long(argc, argv, ":hft:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        puts("usage: " LOGS_USAGE "\n\n" LOGS_HELP);
                        return 1;
                case CLI_OPT_JSON:
                        o->json = true;
                        break;
                case 'f':
                        o->follow = true;
                        break;
                case 't':
                        o->type = optarg;
                        break;
                case CLI_OPT_VERIFY:
                        o->verify = true;
                        break;
                case CLI_OPT_OTLP:
                        o->otlp = true;
                        break;
                default:
                        return cli_option_error("logs", LOGS_USAGE, c, argv);
                }
        }
        int r = cli_check_positionals("logs", LOGS_USAGE, argc - optind, argv + optind, 1, 1);
        if (r)
                return r;
        if (o->type && (!*o->type || strlen(o->type) > 64))
                return cli_usage_error("logs", LOGS_USAGE, "--type: expected 1 to 64 characters");
        o->run = argv[optind];
        return 0;
}

/* The events printed (and followed), one line each or as JSON lines. */
static int print_logs(AjRun *run, const char *path, const LogsOptions *o)
{
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0) {
                cli_fail("logs", "cannot open '%s': %s", path, aj_file_error_text(fd));
                return CLI_EXIT_FAIL;
        }
        _cleanup_free_ char *buf = malloc(LOGS_LINE_MAX);
        if (!buf)
                return CLI_EXIT_FAIL;
        size_t have = 0;
        LogPrinter lp = { .json = o->json, .type = o->type };
        int r = o->follow ? follow_logs(&lp, run, fd, buf, &have) : log_drain(&lp, fd, buf, &have);
        if (r == 0 && have)
                log_line(&lp, buf, have); /* a last line without '\n' */
        fflush(stdout);
        if (r < 0) {
                cli_fail("logs", "reading '%s': %s", path, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (lp.bad_lines)
                cli_fail("logs", "warning: %zu line(s) of '%s' are not JSON events", lp.bad_lines, path);
        return CLI_EXIT_OK;
}

int aj_cmd_logs(int argc, char **argv)
{
        LogsOptions o;
        int r = parse_logs_options(argc, argv, &o);
        if (r)
                return r == 1 ? CLI_EXIT_OK : r;
        _cleanup_(aj_paths_done) AjPaths paths = { 0 };
        _cleanup_(aj_run_freep) AjRun *run = NULL;
        if (cli_open_run("logs", o.run, &paths, &run) < 0)
                return CLI_EXIT_FAIL;
        char path[PATH_MAX];
        if (aj_run_file_path(run->dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0)
                return CLI_EXIT_FAIL;
        if (o.verify)
                return verify_chain(run, path, o.json);
        if (o.otlp)
                return otlp_logs(run, path, o.type);
        return print_logs(run, path, &o);
}
