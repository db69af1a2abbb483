/* SPDX-License-Identifier: Apache-2.0 */
/* src/replay.c (the diff of two chains), src/replay-recording.c (matching, framing) and
 * src/workspace-digest.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "replay.h"
#include "supervisor/workspace-start.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/loop.h"
#include "workspace.h"

/* A chain of events from one JSON array literal. */
static json_t *chain(const char *text)
{
        json_error_t e;
        json_t *a = json_loads(text, 0, &e);
        cr_assert(a, "fixture: %s (line %d)", e.text, e.line);
        return a;
}

#define TOOL_OK(seq, id, name, sha)                                                                                    \
        "{\"seq\":" #seq ",\"type\":\"tool.request\",\"gen_ai.tool.name\":\"" name "\",\"gen_ai.tool.call.id\":\"" id  \
        "\",\"arguments_sha256\":\"" sha "\"},"                                                                        \
        "{\"seq\":" #seq "1,\"type\":\"tool.verdict\",\"gen_ai.tool.name\":\"" name "\",\"gen_ai.tool.call.id\":\"" id \
        "\",\"verdict\":\"allow\"}"

static const char *ORIGINAL =
        "[{\"seq\":1,\"run\":\"aaaaaaaaaaaa\",\"type\":\"run.start\"},"
        "{\"seq\":2,\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"fake\",\"path\":\"/v1/messages\","
        "\"request_sha256\":\"r1\",\"verdict\":\"allow\",\"stream\":false},"
        "{\"seq\":3,\"type\":\"llm.response\",\"call_id\":1,\"status\":200,\"relay\":\"completed\",\"metered\":true,"
        "\"gen_ai.usage.input_tokens\":100,\"gen_ai.usage.output_tokens\":20,\"cost_usd\":0.5}," TOOL_OK(
                4, "c1", "Bash",
                "1111111111111111") "," TOOL_OK(5, "c2", "Write",
                                                "2222222222222222") ","
                                                                    "{\"seq\":6,\"type\":\"net.connect\",\"host\":\"example.com\",\"port\":443,\"verdict\":\"allowed\"},"
                                                                    "{\"seq\":7,\"type\":\"run.exit\",\"status\":0}]";

static json_t *diff_of(const char *a, const char *b)
{
        json_t *ca = chain(a), *cb = chain(b), *d = NULL;
        cr_assert_eq(aj_replay_diff(ca, cb, &d), 0);
        json_decref(ca);
        json_decref(cb);
        return d;
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* The replay's side of ORIGINAL: its model call served from the recording. */
static const char *REPLAY_SAME =
        "[{\"seq\":1,\"run\":\"bbbbbbbbbbbb\",\"type\":\"run.start\"},"
        "{\"seq\":2,\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"fake\",\"path\":\"/v1/messages\","
        "\"request_sha256\":\"r1\",\"verdict\":\"allow\",\"replay\":{\"match\":\"digest\",\"call_id\":1}},"
        "{\"seq\":3,\"type\":\"llm.response\",\"call_id\":1,\"status\":200,\"relay\":\"completed\",\"metered\":true,"
        "\"gen_ai.usage.input_tokens\":100,\"gen_ai.usage.output_tokens\":20,\"cost_usd\":0.5}," TOOL_OK(
                4, "c9", "Bash",
                "1111111111111111") "," TOOL_OK(5, "c8", "Write",
                                                "2222222222222222") ","
                                                                    "{\"seq\":6,\"type\":\"net.connect\",\"host\":\"example.com\",\"port\":443,\"verdict\":\"allowed\"},"
                                                                    "{\"seq\":7,\"type\":\"run.exit\",\"status\":0}]";

Test(replay_diff, same_chains_no_change)
{
        json_t *d = diff_of(ORIGINAL, REPLAY_SAME);
        cr_assert(json_is_false(json_object_get(d, "changed")));
        cr_assert_eq(json_array_size(json_object_get(d, "changes")), 0);
        json_t *o = json_object_get(d, "original"), *r = json_object_get(d, "replay");
        cr_assert_str_eq(jstr(o, "run"), "aaaaaaaaaaaa");
        cr_assert_str_eq(jstr(r, "run"), "bbbbbbbbbbbb");
        cr_assert_eq(json_integer_value(json_object_get(o, "input_tokens")), 100);
        cr_assert_eq(json_integer_value(json_object_get(r, "output_tokens")), 20);
        cr_assert_eq(json_integer_value(json_object_get(r, "tool_calls")), 2);
        cr_assert_eq(json_integer_value(json_object_get(r, "model_calls")), 1);
        cr_assert_float_eq(json_number_value(json_object_get(r, "cost_usd")), 0.5, 1e-9);
        json_decref(d);
}

Test(replay_diff, tool_now_denied)
{
        json_t *d = diff_of(
                ORIGINAL,
                "[{\"seq\":1,\"run\":\"bbbbbbbbbbbb\",\"type\":\"run.start\"},"
                "{\"seq\":2,\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"fake\",\"path\":\"/v1/messages\","
                "\"request_sha256\":\"r1\",\"verdict\":\"allow\",\"replay\":{\"match\":\"digest\",\"call_id\":1}}," TOOL_OK(
                        4, "c9", "Bash",
                        "1111111111111111") ","
                                            "{\"seq\":5,\"type\":\"tool.request\",\"gen_ai.tool.name\":\"Write\",\"gen_ai.tool.call.id\":\"c8\","
                                            "\"arguments_sha256\":\"2222222222222222\"},"
                                            "{\"seq\":6,\"type\":\"tool.verdict\",\"gen_ai.tool.name\":\"Write\",\"gen_ai.tool.call.id\":\"c8\","
                                            "\"verdict\":\"deny\",\"reason\":\"denied by tools.deny\"},"
                                            "{\"seq\":7,\"type\":\"net.connect\",\"host\":\"example.com\",\"port\":443,\"verdict\":\"allowed\"},"
                                            "{\"seq\":8,\"type\":\"run.exit\",\"status\":1}]");
        cr_assert(json_is_true(json_object_get(d, "changed")));
        json_t *ch = json_object_get(d, "changes");
        cr_assert_eq(json_array_size(ch), 2, "%zu changes", json_array_size(ch));
        json_t *c = json_array_get(ch, 0);
        cr_assert_str_eq(jstr(c, "kind"), "tool");
        cr_assert_str_eq(jstr(c, "subject"), "Write 222222222222");
        cr_assert_str_eq(jstr(c, "before"), "allow");
        cr_assert_str_eq(jstr(c, "after"), "deny");
        cr_assert_eq(json_integer_value(json_object_get(c, "seq_after")), 6);
        cr_assert_str_eq(jstr(c, "reason"), "denied by tools.deny");
        c = json_array_get(ch, 1);
        cr_assert_str_eq(jstr(c, "kind"), "exit");
        cr_assert_str_eq(jstr(c, "before"), "0");
        cr_assert_str_eq(jstr(c, "after"), "1");
        cr_assert_eq(json_integer_value(json_object_get(c, "seq_after")), 8);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "replay"), "exit")), 1);
        json_decref(d);
}

/* Every verdict the same but the command's exit status: the replay changed (a tool's
 * result that differed when it ran again, say), and says so rather than "nothing changed". */
Test(replay_diff, exit_status_alone_is_a_change)
{
        json_t *d = diff_of("[{\"seq\":1,\"type\":\"run.exit\",\"status\":0,\"reason\":\"exited\"}]",
                            "[{\"seq\":1,\"type\":\"run.exit\",\"status\":137,\"reason\":\"signaled\"}]");
        cr_assert(json_is_true(json_object_get(d, "changed")));
        json_t *ch = json_object_get(d, "changes");
        cr_assert_eq(json_array_size(ch), 1, "%zu changes", json_array_size(ch));
        json_t *c = json_array_get(ch, 0);
        cr_assert_str_eq(jstr(c, "kind"), "exit");
        cr_assert_str_eq(jstr(c, "subject"), "the command's exit status");
        cr_assert_str_eq(jstr(c, "before"), "0");
        cr_assert_str_eq(jstr(c, "after"), "137");
        cr_assert_str_eq(jstr(c, "reason"), "signaled");
        json_decref(d);
}

Test(replay_diff, held_and_repeated_calls)
{
        /* The second Bash call with the same arguments is its own subject; held wins over
         * the operator's later answer. */
        json_t *d = diff_of(
                "[" TOOL_OK(1, "a", "Bash", "11") "," TOOL_OK(2, "b", "Bash", "11") "]",
                "[" TOOL_OK(
                        1, "x", "Bash",
                        "11") ","
                              "{\"seq\":2,\"type\":\"tool.request\",\"gen_ai.tool.name\":\"Bash\","
                              "\"gen_ai.tool.call.id\":\"y\",\"arguments_sha256\":\"11\"},"
                              "{\"seq\":3,\"type\":\"approval.requested\",\"gen_ai.tool.name\":\"Bash\","
                              "\"gen_ai.tool.call.id\":\"y\"},"
                              "{\"seq\":4,\"type\":\"tool.verdict\",\"gen_ai.tool.call.id\":\"y\",\"verdict\":\"allow\"}]");
        json_t *ch = json_object_get(d, "changes");
        cr_assert_eq(json_array_size(ch), 1);
        cr_assert_str_eq(jstr(json_array_get(ch, 0), "subject"), "Bash 11 #2");
        cr_assert_str_eq(jstr(json_array_get(ch, 0), "after"), "held");
        json_decref(d);
}

Test(replay_diff, host_now_refused)
{
        json_t *d = diff_of(
                ORIGINAL,
                "[{\"seq\":1,\"run\":\"bbbbbbbbbbbb\",\"type\":\"run.start\"},"
                "{\"seq\":2,\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"fake\",\"path\":\"/v1/messages\","
                "\"request_sha256\":\"r1\",\"verdict\":\"allow\",\"replay\":{\"match\":\"position\",\"call_id\":1}}," TOOL_OK(
                        4, "c9", "Bash",
                        "1111111111111111") "," TOOL_OK(5, "c8", "Write",
                                                        "2222222222222222") ","
                                                                            "{\"seq\":6,\"type\":\"net.denied\",\"host\":\"example.com\",\"port\":443,\"reason\":\"not in "
                                                                            "network.allow\"},"
                                                                            "{\"seq\":7,\"type\":\"net.connect\",\"host\":\"example.com\",\"port\":443,\"verdict\":\"denied\"},"
                                                                            "{\"seq\":8,\"type\":\"seccomp.denied\",\"syscall\":\"ptrace\"},"
                                                                            "{\"seq\":9,\"type\":\"run.exit\",\"status\":0}]");
        json_t *ch = json_object_get(d, "changes");
        cr_assert_eq(json_array_size(ch), 2, "%zu changes", json_array_size(ch));
        json_t *h = json_array_get(ch, 0), *s = json_array_get(ch, 1);
        cr_assert_str_eq(jstr(h, "kind"), "host");
        cr_assert_str_eq(jstr(h, "subject"), "example.com:443");
        cr_assert_str_eq(jstr(h, "before"), "allowed");
        cr_assert_str_eq(jstr(h, "after"), "denied");
        cr_assert_eq(json_integer_value(json_object_get(h, "seq_after")), 6);
        cr_assert_str_eq(jstr(h, "reason"), "not in network.allow");
        cr_assert_str_eq(jstr(s, "kind"), "syscall");
        cr_assert_str_eq(jstr(s, "subject"), "ptrace");
        cr_assert_str_eq(jstr(s, "before"), "absent");
        cr_assert_str_eq(jstr(s, "after"), "denied");
        json_decref(d);
}

Test(replay_diff, cap_breach_and_model_miss)
{
        json_t *d = diff_of(
                ORIGINAL,
                "[{\"seq\":1,\"run\":\"bbbbbbbbbbbb\",\"type\":\"run.start\"},"
                "{\"seq\":2,\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"fake\",\"path\":\"/v1/messages\","
                "\"request_sha256\":\"r1\",\"verdict\":\"allow\",\"replay\":{\"match\":\"digest\",\"call_id\":1}}," TOOL_OK(
                        4, "c9", "Bash",
                        "1111111111111111") "," TOOL_OK(5, "c8", "Write",
                                                        "2222222222222222") ","
                                                                            "{\"seq\":6,\"type\":\"net.connect\",\"host\":\"example.com\",\"port\":443,\"verdict\":\"allowed\"},"
                                                                            "{\"seq\":7,\"type\":\"llm.request\",\"call_id\":2,\"provider\":\"fake\",\"path\":\"/v1/messages\","
                                                                            "\"request_sha256\":\"r2abcdef\",\"verdict\":\"refused\",\"replay\":{\"match\":\"miss\"}},"
                                                                            "{\"seq\":8,\"type\":\"cap.breach\",\"cap\":\"tool_calls\",\"limit\":2,\"value\":3},"
                                                                            "{\"seq\":9,\"type\":\"run.exit\",\"status\":0}]");
        json_t *ch = json_object_get(d, "changes");
        cr_assert_eq(json_array_size(ch), 2, "%zu changes", json_array_size(ch));
        json_t *cap = json_array_get(ch, 0), *m = json_array_get(ch, 1);
        cr_assert_str_eq(jstr(cap, "kind"), "cap");
        cr_assert_str_eq(jstr(cap, "subject"), "tool_calls");
        cr_assert_str_eq(jstr(cap, "after"), "breach");
        cr_assert_eq(json_integer_value(json_object_get(cap, "seq_after")), 8);
        cr_assert(json_is_null(json_object_get(cap, "seq_before")));
        cr_assert_str_eq(jstr(m, "kind"), "model_call");
        cr_assert_str_eq(jstr(m, "after"), "miss");
        cr_assert_str_eq(jstr(m, "subject"), "fake /v1/messages request r2abcdef");
        json_decref(d);
}

Test(replay_diff, not_arrays)
{
        json_t *d = NULL, *a = json_object(), *b = json_array();
        cr_assert_eq(aj_replay_diff(a, b, &d), -EINVAL);
        json_decref(a);
        json_decref(b);
}

/* ---- the recording ---- */

static int bodies_whole_but_3(void *userdata, uint64_t id)
{
        (void)userdata;
        return id == 3 ? -E2BIG : 0;
}

static const char *RECORDING =
        "[{\"type\":\"llm.request\",\"call_id\":1,\"provider\":\"p\",\"path\":\"/v1/messages\",\"request_sha256\":\"a\","
        "\"verdict\":\"allow\",\"stream\":true},"
        "{\"type\":\"llm.response\",\"call_id\":1,\"status\":200,\"relay\":\"completed\",\"content_type\":"
        "\"text/event-stream\"},"
        "{\"type\":\"llm.request\",\"call_id\":2,\"provider\":\"p\",\"path\":\"/v1/messages\",\"request_sha256\":\"b\","
        "\"verdict\":\"allow\"},"
        "{\"type\":\"llm.response\",\"call_id\":2,\"status\":200,\"relay\":\"completed\"},"
        "{\"type\":\"llm.request\",\"call_id\":3,\"provider\":\"p\",\"path\":\"/v1/messages\",\"request_sha256\":\"c\","
        "\"verdict\":\"allow\"},"
        "{\"type\":\"llm.response\",\"call_id\":3,\"status\":200,\"relay\":\"completed\"},"
        "{\"type\":\"llm.request\",\"call_id\":4,\"provider\":\"p\",\"path\":\"/v1/messages\",\"request_sha256\":\"d\","
        "\"verdict\":\"refused\"}]";

Test(replay_recording, match_by_digest_then_position)
{
        json_t *ev = chain(RECORDING);
        AjReplayRecording *rec = NULL;
        cr_assert_eq(aj_replay_recording_from_events(ev, "/nonexistent", bodies_whole_but_3, NULL, &rec), 0);
        cr_assert_eq(rec->n, 3);
        cr_assert_eq(rec->n_refused, 1);
        cr_assert_eq(rec->n_missing, 1);
        AjError err = { 0 };
        cr_assert_eq(aj_replay_recording_check(rec, "r", "digest", &err), -ENODATA);
        cr_assert(strstr(aj_error_text(&err, 0), "call 3"), "%s", aj_error_text(&err, 0));
        cr_assert(strstr(aj_error_text(&err, 0), "cut at llm.record_bytes"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);

        AjReplayMatch m;
        const char *why;
        /* b by digest even asked first; then an unknown body at position 0 gets call 1 */
        cr_assert_eq(aj_replay_match(rec, "p", "/v1/messages", "b", 0, &m, &why), 1);
        cr_assert_eq(m, AJ_REPLAY_DIGEST);
        cr_assert_eq(aj_replay_match(rec, "p", "/v1/messages", "zz", 0, &m, &why), 0);
        cr_assert_eq(m, AJ_REPLAY_POSITION);
        /* served once only: b again is a miss (position 1 is served) */
        cr_assert_eq(aj_replay_match(rec, "p", "/v1/messages", "b", 1, &m, &why), -1);
        cr_assert_eq(m, AJ_REPLAY_MISS);
        cr_assert_null(why);
        /* another path never matches by position */
        cr_assert_eq(aj_replay_match(rec, "p", "/v1/other", "zz", 2, &m, &why), -1);
        /* c found, but its body was cut: a miss that says why */
        cr_assert_eq(aj_replay_match(rec, "p", "/v1/messages", "c", 9, &m, &why), -1);
        cr_assert_eq(m, AJ_REPLAY_MISS);
        cr_assert_str_eq(why, "its response body was cut at llm.record_bytes");
        aj_replay_recording_free(rec);
        json_decref(ev);
}

/* No bodies: "off" says it keeps digests only; a "digest" run without bodies was
 * recorded by an older agentjail. Either way the modes that replay are named. */
Test(replay_recording, a_run_without_bodies_cannot_be_replayed)
{
        json_t *ev = chain(RECORDING);
        AjReplayRecording *rec = NULL;
        cr_assert_eq(aj_replay_recording_from_events(ev, NULL, NULL, NULL, &rec), 0);
        cr_assert_eq(rec->n_missing, 3);
        AjError err = { 0 };
        cr_assert_eq(aj_replay_recording_check(rec, "abc", "off", &err), -ENODATA);
        const char *text = aj_error_text(&err, 0);
        cr_expect(strstr(text, "its llm.record was \"off\", which keeps digests only"), "%s", text);
        cr_expect(strstr(text, "\"record\": \"digest\"} (the default) or \"full\""), "%s", text);
        cr_expect(strstr(text, "3 model calls"), "%s", text);
        aj_error_clear(&err);
        cr_assert_eq(aj_replay_recording_check(rec, "abc", "digest", &err), -ENODATA);
        cr_expect(strstr(aj_error_text(&err, 0), "older agentjail"), "%s", aj_error_text(&err, 0));
        aj_error_clear(&err);
        aj_replay_recording_free(rec);
        json_decref(ev);
}

Test(replay_recording, response_framing)
{
        AjReplayEntry sse = { .call_id = 7, .status = 200, .content_type = (char *)"text/event-stream" };
        const char body[] = "event: a\ndata: 1\n\nevent: b\ndata: 2\n\n";
        char *out = NULL;
        size_t n = 0;
        cr_assert_eq(aj_replay_response(&sse, body, strlen(body), &out, &n), 0);
        cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-agentjail-replay: call 7\r\n"
                              "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                              "12\r\nevent: a\ndata: 1\n\n\r\n12\r\nevent: b\ndata: 2\n\n\r\n0\r\n\r\n");
        free(out);
        AjReplayEntry js = { .call_id = 8, .status = 429 };
        cr_assert_eq(aj_replay_response(&js, "{}", 2, &out, &n), 0);
        cr_assert_str_eq(out, "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
                              "x-agentjail-replay: call 8\r\ncontent-length: 2\r\n\r\n{}");
        free(out);
        AjReplayEntry bad = { .status = 200, .content_type = (char *)"text/plain\r\nx: y" };
        cr_assert_eq(aj_replay_response(&bad, "", 0, &out, &n), -EINVAL);
}

/* ---- the workspace's digest ---- */

static void put(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        cr_assert(f, "%s", path);
        fputs(text, f);
        fclose(f);
}

static char *make_tree(void)
{
        char tmpl[] = "/tmp/test-replay-XXXXXX";
        cr_assert(mkdtemp(tmpl));
        char p[512];
        snprintf(p, sizeof(p), "%s/sub", tmpl);
        cr_assert_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/sub/a.txt", tmpl);
        put(p, "hello\n");
        snprintf(p, sizeof(p), "%s/link", tmpl);
        cr_assert_eq(symlink("/etc/passwd", p), 0);
        return strdup(tmpl);
}

static const char *digest(const char *dir, json_t **keep)
{
        cr_assert_eq(aj_workspace_digest(dir, NULL, keep), 0);
        return json_string_value(json_object_get(*keep, "sha256"));
}

Test(workspace_digest, content_mode_and_links_count_times_do_not)
{
        _cleanup_free_ char *dir = make_tree();
        json_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        const char *d0 = digest(dir, &a);
        cr_assert(json_is_true(json_object_get(a, "complete")));
        cr_assert_eq(json_integer_value(json_object_get(a, "entries")), 3);
        cr_assert_eq(json_integer_value(json_object_get(a, "bytes")), 6);
        char p[512];
        snprintf(p, sizeof(p), "%s/sub/a.txt", dir);
        cr_assert_eq(utimensat(AT_FDCWD, p, (struct timespec[]){ { 1, 0 }, { 1, 0 } }, 0), 0);
        cr_assert_str_eq(digest(dir, &b), d0, "times are not hashed");
        cr_assert_eq(chmod(p, 0600), 0);
        const char *d2 = digest(dir, &c);
        cr_assert_str_neq(d2, d0, "modes are");
        cr_assert_eq(chmod(p, 0644), 0);
        put(p, "hellO\n");
        cr_assert_str_neq(digest(dir, &d), d0, "contents are");
        json_decref(a);
        json_decref(b);
        json_decref(c);
        json_decref(d);
        json_t *e = NULL;
        AjWorkspaceDigestLimits lim = { .max_entries = 100, .max_bytes = 3, .max_ms = 10000 };
        cr_assert_eq(aj_workspace_digest(dir, &lim, &e), 0);
        cr_assert(json_is_false(json_object_get(e, "complete")));
        cr_assert_str_eq(json_string_value(json_object_get(e, "cut_at")), "bytes");
        json_decref(e);
        cr_assert_eq(aj_rm_rf(dir), 0);
}

/* ---- the ctime rule, and the digest taken while a run goes on ---- */

static struct timespec ts(time_t s, long ns) { return (struct timespec){ .tv_sec = s, .tv_nsec = ns }; }

#define SEC 1000000000ULL
#define MS 1000000ULL

Test(workspace_digest, ctime_rule)
{
        uint64_t since = 1000 * SEC + 500 * MS;
        /* A sub-millisecond stamp (ext4, tmpfs...): within 1 ms of the start is a change. */
        cr_expect_not(aj_workspace_changed_since(&(struct timespec){ 1000, 497 * (long)MS + 123457 }, since),
                      "3 ms before the start: before it");
        cr_expect(aj_workspace_changed_since(&(struct timespec){ 1000, 499 * (long)MS + 123457 }, since),
                  "0.9 ms before: may be a change stamped by a coarse clock");
        cr_expect(aj_workspace_changed_since(&(struct timespec){ 1000, 500 * (long)MS + 1 }, since), "after");
        cr_expect(aj_workspace_changed_since(&(struct timespec){ 2000, 1 }, since), "long after");
        /* A whole-second (or whole-millisecond) stamp may come from a coarse filesystem. */
        struct timespec whole = ts(999, 0);
        cr_expect(aj_workspace_changed_since(&whole, since), "1.5 s before, whole second: within FAT's 2 s");
        whole = ts(998, 0);
        cr_expect_not(aj_workspace_changed_since(&whole, since), "2.5 s before: before");
        whole = ts(999, 5 * (long)MS);
        cr_expect(aj_workspace_changed_since(&whole, since), "a whole millisecond counts as coarse");
        cr_expect_not(aj_workspace_changed_since(&(struct timespec){ 2000, 1 }, 0), "no start: no rule");
        whole = ts(-5, 0);
        cr_expect_not(aj_workspace_changed_since(&whole, since), "before 1970");
}

/* After the start's stamp (and far enough from the tree's making that a coarse clock
 * cannot blur them): the same digest as without the rule; then a file written, a name
 * added: "changed", naming the entry, never a digest said complete. */
Test(workspace_digest, a_change_since_the_start_is_caught)
{
        _cleanup_free_ char *dir = make_tree();
        json_t *plain = NULL, *a = NULL, *b = NULL, *c = NULL;
        const char *d0 = digest(dir, &plain);
        aj_sleep_ms(30);
        AjWorkspaceDigestLimits lim;
        aj_workspace_digest_limits_default(&lim);
        lim.since_ns = aj_now_realtime_coarse_ns();
        cr_assert_eq(aj_workspace_digest(dir, &lim, &a), 0);
        cr_expect(json_is_true(json_object_get(a, "complete")), "%s", json_dumps(a, 0));
        cr_expect_str_eq(json_string_value(json_object_get(a, "sha256")), d0);

        char p[512];
        snprintf(p, sizeof(p), "%s/sub/a.txt", dir);
        put(p, "hello\n"); /* the same contents: only its ctime tells */
        cr_assert_eq(aj_workspace_digest(dir, &lim, &b), 0);
        cr_expect(json_is_false(json_object_get(b, "complete")));
        cr_expect_str_eq(json_string_value(json_object_get(b, "cut_at")), "changed");
        cr_expect_str_eq(json_string_value(json_object_get(b, "changed")), "sub/a.txt");

        snprintf(p, sizeof(p), "%s/new", dir);
        put(p, "x");
        cr_assert_eq(aj_workspace_digest(dir, &lim, &c), 0);
        cr_expect_str_eq(json_string_value(json_object_get(c, "cut_at")), "changed");
        cr_expect_str_eq(json_string_value(json_object_get(c, "changed")), ".", "the root: a name was added");
        json_decref(plain);
        json_decref(a);
        json_decref(b);
        json_decref(c);
        cr_assert_eq(aj_rm_rf(dir), 0);
}

/* The background hasher (src/supervisor/workspace-start.c), a real process on a real loop. */
static json_t *hash_opened(AjSupWorkspaceStart *w, bool overlay, uint64_t since_ns, bool through_loop);

static void open_root(AjSupWorkspaceStart *w, const char *dir)
{
        struct stat st;
        cr_assert_eq(stat(dir, &st), 0);
        cr_assert_eq(aj_sup_workspace_start_open(w, dir, st.st_dev, st.st_ino), 0);
}

static json_t *hash_in_background(const char *dir, bool overlay, uint64_t since_ns, bool through_loop)
{
        AjSupWorkspaceStart w = AJ_SUP_WORKSPACE_START_INIT;
        open_root(&w, dir);
        return hash_opened(&w, overlay, since_ns, through_loop);
}

/* Takes *wp (opened). */
static json_t *hash_opened(AjSupWorkspaceStart *wp, bool overlay, uint64_t since_ns, bool through_loop)
{
        AjSupWorkspaceStart w = *wp;
        AjLoop *loop = NULL;
        cr_assert_eq(aj_loop_new(&loop), 0);
        cr_assert_eq(aj_sup_workspace_start(&w, loop, overlay, since_ns), 0);
        cr_assert(aj_sup_workspace_start_started(&w));
        for (int i = 0; through_loop && w.pidfd >= 0 && i < 1000; i++)
                cr_assert_geq(aj_loop_dispatch(loop, 100 * (int64_t)MS), 0);
        if (through_loop)
                cr_assert_lt(w.pidfd, 0, "the loop reaped the hasher");
        json_t *r = aj_sup_workspace_start_finish(&w, -1, NULL, NULL);
        aj_sup_workspace_start_done(&w);
        aj_loop_free(loop);
        cr_assert_not_null(r);
        return r;
}

Test(workspace_start, the_digest_comes_from_a_background_process)
{
        _cleanup_free_ char *dir = make_tree();
        json_t *plain = NULL;
        const char *d0 = digest(dir, &plain);
        aj_sleep_ms(30);
        json_t *r = hash_in_background(dir, false, aj_now_realtime_coarse_ns(), true);
        cr_expect(json_is_true(json_object_get(r, "complete")), "%s", json_dumps(r, 0));
        cr_expect_str_eq(json_string_value(json_object_get(r, "sha256")) ?: "", d0);
        cr_expect_str_eq(json_string_value(json_object_get(r, "mode")), "in_place");
        cr_expect_null(json_object_get(r, "lower"));
        cr_expect(json_is_integer(json_object_get(r, "ms")));
        json_decref(r);
        /* A start before everything in the tree was made (as if it all changed during the
         * run), waited for at the end: incomplete, "changed"; an overlay's lower layer named. */
        r = hash_in_background(dir, true, aj_now_realtime_coarse_ns() - 3600 * SEC, false);
        cr_expect(json_is_false(json_object_get(r, "complete")), "%s", json_dumps(r, 0));
        cr_expect_str_eq(json_string_value(json_object_get(r, "cut_at")) ?: "", "changed");
        cr_expect_str_eq(json_string_value(json_object_get(r, "mode")), "overlay");
        cr_expect_str_eq(json_string_value(json_object_get(r, "lower")) ?: "", dir);
        json_decref(r);
        json_decref(plain);
        cr_assert_eq(aj_rm_rf(dir), 0);
}

Test(workspace_start, the_hasher_output_is_checked)
{
        static const char good[] = "{\"path\":\"/w\",\"sha256\":\"" /* 64 hex */
                                   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                                   "\",\"entries\":3,\"bytes\":6,\"complete\":true}";
        json_t *r = aj_sup_workspace_start_record(good, strlen(good), "/w", true);
        cr_expect_str_eq(json_string_value(json_object_get(r, "mode")), "overlay");
        cr_expect_str_eq(json_string_value(json_object_get(r, "lower")), "/w");
        cr_expect_null(json_object_get(r, "error"));
        json_decref(r);
        const char *bad[] = { "", "{", "[]",
                              "{\"path\":\"/w\",\"sha256\":\"xyz\",\"entries\":1,\"bytes\":1,\"complete\":true}" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                r = aj_sup_workspace_start_record(bad[i], strlen(bad[i]), "/w", false);
                cr_expect_null(json_object_get(r, "sha256"), "%s", bad[i]);
                cr_expect_not_null(json_object_get(r, "error"), "%s", bad[i]);
                cr_expect_str_eq(json_string_value(json_object_get(r, "mode")), "in_place");
                json_decref(r);
        }
        /* Another tree's digest is not this one's. */
        r = aj_sup_workspace_start_record(good, strlen(good), "/other", false);
        cr_expect_null(json_object_get(r, "sha256"));
        json_decref(r);
        static const char failed[] = "{\"path\":\"/w\",\"error\":\"Permission denied\"}";
        r = aj_sup_workspace_start_record(failed, strlen(failed), "/w", false);
        cr_expect_str_eq(json_string_value(json_object_get(r, "error")), "Permission denied");
        json_decref(r);
}

/* ---- attacks on the background digest ---- */

Test(workspace_digest, filesystems_the_ctime_rule_trusts)
{
        char name[32];
        cr_expect(aj_workspace_fs_ctime_rule(0xEF53, name, sizeof(name)));
        cr_expect_str_eq(name, "ext4");
        cr_expect(aj_workspace_fs_ctime_rule(0x58465342, NULL, 0), "xfs");
        cr_expect(aj_workspace_fs_ctime_rule(0x9123683E, NULL, 0), "btrfs");
        cr_expect(aj_workspace_fs_ctime_rule(0xF2F52010, NULL, 0), "f2fs");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x01021994, name, sizeof(name)));
        cr_expect_str_eq(name, "tmpfs", "no page_mkwrite: a write through a mapping stamps nothing");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x6969, name, sizeof(name)));
        cr_expect_str_eq(name, "nfs");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x65735546, name, sizeof(name)), "fuse, virtiofs");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x01021997, NULL, 0), "9p");
        cr_expect_not(aj_workspace_fs_ctime_rule(0xFE534D42, NULL, 0), "smb2");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x794c7630, NULL, 0), "overlay");
        cr_expect_not(aj_workspace_fs_ctime_rule(0x12345678, name, sizeof(name)));
        cr_expect_str_eq(name, "0x12345678", "unknown: named by its number, not trusted");
}

/* tmpfs (shmem) has no page_mkwrite: a MAP_SHARED mapping made after the start whose page
 * is first read-faulted is mapped writable, and the write through it never stamps ctime.
 * A tree on tmpfs is never said complete under the ctime rule: "unsupported_fs". */
Test(workspace_digest, a_tmpfs_write_through_a_mapping_is_not_missed)
{
        char tmpl[] = "/dev/shm/test-replay-XXXXXX";
        cr_assert(mkdtemp(tmpl));
        char p[512];
        snprintf(p, sizeof(p), "%s/a.txt", tmpl);
        put(p, "original contents\n");
        json_t *plain = NULL, *a = NULL;
        const char *d0 = digest(tmpl, &plain);
        cr_expect(json_is_true(json_object_get(plain, "complete")), "without the rule: the tree now, whole");
        aj_sleep_ms(30);
        AjWorkspaceDigestLimits lim;
        aj_workspace_digest_limits_default(&lim);
        lim.since_ns = aj_now_realtime_coarse_ns(); /* the command may run from here */
        /* The agent: map, read, then write. */
        int fd = open(p, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        volatile char *m = mmap(NULL, 18, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        cr_assert_neq((void *)m, MAP_FAILED);
        char c = m[0];
        (void)c;
        memcpy((char *)m, "CHANGED!", 8);
        munmap((void *)m, 18);
        close(fd);
        cr_assert_eq(aj_workspace_digest(tmpl, &lim, &a), 0);
        bool complete = json_is_true(json_object_get(a, "complete"));
        const char *sha = json_string_value(json_object_get(a, "sha256"));
        cr_expect(!complete || strcmp(sha ?: "", d0) == 0,
                  "a digest said complete of a tree that was not the start: %s (start %s)", json_dumps(a, 0), d0);
        cr_expect_str_eq(json_string_value(json_object_get(a, "cut_at")) ?: "", "unsupported_fs");
        cr_expect_str_eq(json_string_value(json_object_get(a, "fs")) ?: "", "tmpfs");
        json_decref(plain);
        json_decref(a);
        cr_assert_eq(aj_rm_rf(tmpl), 0);
}

/* A tmpfs mounted below a tree on a trusted filesystem: judged where the walk crosses. */
Test(workspace_digest, another_filesystem_below_is_judged_too)
{
        _cleanup_free_ char *dir = make_tree();
        int pfd[2];
        cr_assert_eq(pipe(pfd), 0);
        pid_t pid = fork();
        if (pid == 0) {
                close(pfd[0]);
                char p[512], out[512] = "setup";
                snprintf(p, sizeof(p), "%s/sub", dir);
                if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
                    mount("t", p, "tmpfs", 0, "size=1m") == 0) {
                        aj_sleep_ms(30);
                        AjWorkspaceDigestLimits lim;
                        aj_workspace_digest_limits_default(&lim);
                        lim.since_ns = aj_now_realtime_coarse_ns(); /* the mount is older */
                        json_t *j = NULL;
                        if (aj_workspace_digest(dir, &lim, &j) == 0)
                                snprintf(out, sizeof(out), "%s %s",
                                         json_string_value(json_object_get(j, "cut_at")) ?: "complete",
                                         json_string_value(json_object_get(j, "fs")) ?: "-");
                }
                (void)!write(pfd[1], out, strlen(out));
                _exit(0);
        }
        close(pfd[1]);
        char got[512] = "";
        ssize_t n = read(pfd[0], got, sizeof(got) - 1);
        got[n > 0 ? n : 0] = 0;
        close(pfd[0]);
        cr_assert_eq(waitpid(pid, NULL, 0), pid);
        cr_expect_str_eq(got, "unsupported_fs tmpfs");
        cr_assert_eq(aj_rm_rf(dir), 0);
}

/* The hasher walks from the directory opened (and checked) before the command ran, never
 * its path again: an agent with a writable bind above the workspace renames an ancestor
 * and puts a symlink (which root, on the host, would follow) in its place; the digest is
 * still the planned directory's. */
Test(workspace_start, the_root_is_the_planned_directory)
{
        char tmpl[] = "/tmp/test-replay-XXXXXX";
        cr_assert(mkdtemp(tmpl));
        char p[512], q[512];
        snprintf(p, sizeof(p), "%s/team", tmpl);
        cr_assert_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/team/proj", tmpl);
        cr_assert_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/team/proj/real.txt", tmpl);
        put(p, "the real start\n");
        snprintf(p, sizeof(p), "%s/decoy", tmpl);
        cr_assert_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/decoy/proj", tmpl);
        cr_assert_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/decoy/proj/fake.txt", tmpl);
        put(p, "what the agent wants recorded\n");
        char ws[512];
        snprintf(ws, sizeof(ws), "%s/team/proj", tmpl); /* the planned, mounted workspace */
        json_t *plain = NULL;
        const char *d0 = digest(ws, &plain);
        struct stat planned;
        cr_assert_eq(stat(ws, &planned), 0);
        aj_sleep_ms(30);
        /* Before the command runs. */
        AjSupWorkspaceStart w = AJ_SUP_WORKSPACE_START_INIT;
        open_root(&w, ws);
        uint64_t since = aj_now_realtime_coarse_ns();
        /* The agent, before the hasher starts (a rename of team, not of the mount point
         * proj, which would be EBUSY): */
        snprintf(p, sizeof(p), "%s/team", tmpl);
        snprintf(q, sizeof(q), "%s/team.old", tmpl);
        cr_assert_eq(rename(p, q), 0);
        snprintf(q, sizeof(q), "%s/decoy", tmpl);
        cr_assert_eq(symlink(q, p), 0);
        json_t *r = hash_opened(&w, false, since, true);
        cr_expect(json_is_true(json_object_get(r, "complete")), "%s", json_dumps(r, 0));
        cr_expect_str_eq(json_string_value(json_object_get(r, "sha256")) ?: "", d0, "the planned directory's");
        cr_expect_eq(json_integer_value(json_object_get(r, "ino")), (json_int_t)planned.st_ino);
        cr_expect_eq(json_integer_value(json_object_get(r, "dev")), (json_int_t)planned.st_dev);
        json_decref(r);
        /* Opening it now (through the symlink): refused, and not the plan's directory. */
        AjSupWorkspaceStart w2 = AJ_SUP_WORKSPACE_START_INIT;
        cr_expect_lt(aj_sup_workspace_start_open(&w2, ws, planned.st_dev, planned.st_ino), 0);
        aj_sup_workspace_start_done(&w2);
        snprintf(p, sizeof(p), "%s/decoy/proj", tmpl);
        cr_expect_eq(aj_sup_workspace_start_open(&w2, p, planned.st_dev, planned.st_ino), -ESTALE,
                     "another directory than the plan's");
        aj_sup_workspace_start_done(&w2);
        json_decref(plain);
        cr_assert_eq(aj_rm_rf(tmpl), 0);
}

/* The names listed are bounded across the directories open at once, not per directory:
 * 128 levels could each hold ~max_entries names (the defaults: 128 x 200,000 names of up
 * to 255 bytes, several GiB in a root process outside the jail's cgroup). Scaled down: 40
 * levels of 1,900 long names under max_entries 2,000 must fit in what 2,000 names take
 * (here: 4 MiB of data segment more), and say "entries". */
Test(workspace_digest, names_held_are_bounded_across_levels)
{
        char tmpl[] = "/tmp/test-replay-XXXXXX";
        cr_assert(mkdtemp(tmpl));
        char dir[4096], p[4096], target[4096];
        snprintf(dir, sizeof(dir), "%s", tmpl);
        char longname[201];
        for (int lvl = 0; lvl < 40; lvl++) {
                snprintf(target, sizeof(target), "%s/t%d", tmpl, lvl); /* ext4: 65,000 links at most */
                put(target, "");
                for (int i = 0; i < 1900; i++) {
                        memset(longname, 'x', 200);
                        longname[200] = 0;
                        snprintf(longname, 8, "1%06d", i);
                        longname[7] = 'x';
                        size_t dl = strlen(dir);
                        memcpy(p, dir, dl);
                        p[dl] = '/';
                        memcpy(p + dl + 1, longname, sizeof(longname));
                        cr_assert_eq(link(target, p), 0, "%s", p);
                }
                size_t l = strlen(dir);
                snprintf(dir + l, sizeof(dir) - l, "/0"); /* sorted first: walked while the rest is held */
                cr_assert_eq(mkdir(dir, 0755), 0);
        }
        int pfd[2];
        cr_assert_eq(pipe(pfd), 0);
        pid_t pid = fork();
        if (pid == 0) {
                close(pfd[0]);
                struct rlimit rl;
                getrlimit(RLIMIT_DATA, &rl);
                /* what the process uses now, and 4 MiB */
                FILE *f = fopen("/proc/self/status", "r");
                unsigned long kb = 0;
                char line[256];
                while (f && fgets(line, sizeof(line), f))
                        if (sscanf(line, "VmData: %lu kB", &kb) == 1)
                                break;
                if (!f || !kb)
                        _exit(2);
                fclose(f);
                rl.rlim_cur = kb * 1024 + (4u << 20);
                setrlimit(RLIMIT_DATA, &rl);
                AjWorkspaceDigestLimits lim = { .max_entries = 2000, .max_bytes = 1 << 20, .max_ms = 60000 };
                json_t *j = NULL;
                int r = aj_workspace_digest(tmpl, &lim, &j);
                const char *cut = r == 0 ? json_string_value(json_object_get(j, "cut_at")) : NULL;
                (void)!write(pfd[1], cut ?: "-", strlen(cut ?: "-"));
                _exit(r == -ENOMEM ? 1 : 0);
        }
        close(pfd[1]);
        char got[64] = "";
        ssize_t n = read(pfd[0], got, sizeof(got) - 1);
        got[n > 0 ? n : 0] = 0;
        close(pfd[0]);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "the walk ran out of memory: names held grow with depth x max_entries (status %d)", st);
        cr_expect_str_eq(got, "entries");
        cr_assert_eq(aj_rm_rf(tmpl), 0);
}

/* A tree of exactly max_entries entries is whole; one more is not. */
Test(workspace_digest, the_entries_limit_is_exact)
{
        _cleanup_free_ char *dir = make_tree(); /* 3 entries */
        json_t *a = NULL, *b = NULL;
        AjWorkspaceDigestLimits lim = { .max_entries = 3, .max_bytes = 1 << 20, .max_ms = 10000 };
        cr_assert_eq(aj_workspace_digest(dir, &lim, &a), 0);
        cr_expect(json_is_true(json_object_get(a, "complete")), "%s", json_dumps(a, 0));
        lim.max_entries = 2;
        cr_assert_eq(aj_workspace_digest(dir, &lim, &b), 0);
        cr_expect_str_eq(json_string_value(json_object_get(b, "cut_at")) ?: "", "entries");
        json_decref(a);
        json_decref(b);
        cr_assert_eq(aj_rm_rf(dir), 0);
}

static void count_signal(const struct signalfd_siginfo *si, void *userdata)
{
        if (si->ssi_signo == SIGWINCH)
                (*(int *)userdata)++;
}

/* The end of a run waits for the hasher unless agentjail is asked to stop: a terminal
 * resize (SIGWINCH, in the supervisor's signalfd mask) is no such thing, and is still
 * handled; a SIGTERM is. */
Test(workspace_start, only_a_stop_signal_cuts_the_wait)
{
        _cleanup_free_ char *dir = make_tree();
        aj_sleep_ms(30);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGWINCH);
        sigaddset(&m, SIGTERM);
        sigaddset(&m, SIGUSR1);
        sigprocmask(SIG_BLOCK, &m, NULL);
        int sfd = signalfd(-1, &m, SFD_CLOEXEC | SFD_NONBLOCK);
        cr_assert_geq(sfd, 0);
        AjLoop *loop = NULL;
        cr_assert_eq(aj_loop_new(&loop), 0);
        AjSupWorkspaceStart w = AJ_SUP_WORKSPACE_START_INIT;
        open_root(&w, dir);
        cr_assert_eq(aj_sup_workspace_start(&w, loop, false, aj_now_realtime_coarse_ns()), 0);
        raise(SIGWINCH);
        raise(SIGUSR1);
        int winch = 0;
        json_t *r = aj_sup_workspace_start_finish(&w, sfd, count_signal, &winch);
        cr_expect(json_is_true(json_object_get(r, "complete")), "cut by a SIGWINCH: %s", json_dumps(r, 0));
        cr_expect_eq(winch, 1, "the resize was handled as the loop would");
        json_decref(r);
        aj_sup_workspace_start_done(&w);
        /* A hasher that takes a while (/usr): a stop signal ends the wait. */
        w = (AjSupWorkspaceStart)AJ_SUP_WORKSPACE_START_INIT;
        open_root(&w, "/usr");
        cr_assert_eq(aj_sup_workspace_start(&w, loop, false, aj_now_realtime_coarse_ns()), 0);
        raise(SIGTERM);
        r = aj_sup_workspace_start_finish(&w, sfd, count_signal, &winch);
        cr_expect_str_eq(json_string_value(json_object_get(r, "cut_at")) ?: "", "unfinished", "%s", json_dumps(r, 0));
        json_decref(r);
        aj_sup_workspace_start_done(&w);
        cr_expect(aj_sup_workspace_start_stops_wait(SIGINT) && aj_sup_workspace_start_stops_wait(SIGHUP) &&
                  aj_sup_workspace_start_stops_wait(SIGQUIT) && !aj_sup_workspace_start_stops_wait(SIGCONT));
        aj_loop_free(loop);
        close(sfd);
        sigprocmask(SIG_UNBLOCK, &m, NULL);
        cr_assert_eq(aj_rm_rf(dir), 0);
}

/* A file changed while it is read is caught by its own stamp before the read, not only by
 * the start's: with the start's stamp of no help (here one in the future, as a wall clock
 * stepped back would make it), a file chmod'ed over and over while it is hashed is still
 * "changed". */
Test(workspace_digest, a_change_while_read_is_caught_by_the_stamp_before)
{
        _cleanup_free_ char *dir = make_tree();
        char p[512];
        snprintf(p, sizeof(p), "%s/big", dir);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0);
        static char chunk[1 << 20];
        memset(chunk, 'x', sizeof(chunk));
        for (int i = 0; i < 64; i++)
                cr_assert_eq(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
        close(fd);
        AjWorkspaceDigestLimits lim;
        aj_workspace_digest_limits_default(&lim);
        lim.since_ns = aj_now_realtime_coarse_ns() + 3600 * SEC;
        json_t *a = NULL;
        cr_assert_eq(aj_workspace_digest(dir, &lim, &a), 0);
        cr_expect(json_is_true(json_object_get(a, "complete")), "untouched: whole %s", json_dumps(a, 0));
        json_decref(a);
        pid_t pid = fork();
        if (pid == 0) {
                for (int i = 0; i < 2000000; i++) {
                        (void)chmod(p, 0644);
                        struct stat st;
                        (void)stat(p, &st); /* multigrain stamps: a stamp seen, the next is new */
                }
                _exit(0);
        }
        bool changed = false;
        for (int tries = 0; tries < 5 && !changed; tries++) {
                cr_assert_eq(aj_workspace_digest(dir, &lim, &a), 0);
                changed = streq(json_string_value(json_object_get(a, "cut_at")) ?: "", "changed");
                if (changed)
                        cr_expect_str_eq(json_string_value(json_object_get(a, "changed")), "big");
                json_decref(a);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_expect(changed, "a file chmod'ed while it was read");
        cr_assert_eq(aj_rm_rf(dir), 0);
}

/* A replay reads both chains through aj_replay_diff_event: the events the diff reads with
 * the members it reads, nothing of the agent's bulk. An agent's chain of undo records of
 * tiny values (64 MiB of them) was held whole: 1.3 GB in `agentjail replay`. */
Test(replay_diff, a_chain_is_read_without_the_agents_bulk)
{
        json_auto_t *start = json_pack("{s:s, s:i, s:s, s:[s]}", "type", "run.start", "seq", 1, "run", "r1", "command",
                                       "sh");
        json_auto_t *request = json_pack("{s:s, s:i, s:s, s:s, s:s, s:[i,i,i]}", "type", "tool.request", "seq", 2,
                                         "gen_ai.tool.name", "t", "gen_ai.tool.call.id", "c1", "arguments_sha256", "ab",
                                         "gen_ai.tool.call.arguments", 0, 0, 0);
        json_auto_t *result = json_pack("{s:s, s:i, s:s, s:{s:[i,i,i]}}", "type", "tool.result", "seq", 3,
                                        "gen_ai.tool.call.id", "c1", "undo", "a", 0, 0, 0);
        json_auto_t *asked = json_pack("{s:s, s:i, s:s, s:[i]}", "type", "approval.requested", "seq", 4,
                                       "gen_ai.tool.call.id", "c1", "gen_ai.tool.call.arguments", 0);
        json_auto_t *llm = json_pack("{s:s, s:i, s:s, s:{s:s, s:i}}", "type", "llm.request", "seq", 5, "verdict",
                                     "allow", "replay", "match", "digest", "call_id", 1);
        json_t *kept = NULL;
        cr_assert_eq(aj_replay_diff_event(start, true, &kept), 0);
        cr_assert_not_null(kept, "the first event: the run's id");
        cr_expect_str_eq(json_string_value(json_object_get(kept, "run")), "r1");
        cr_expect_null(json_object_get(kept, "command"));
        json_decref(kept);
        cr_assert_eq(aj_replay_diff_event(start, false, &kept), 0);
        cr_expect_null(kept, "run.start is not read past the first event");
        cr_assert_eq(aj_replay_diff_event(result, false, &kept), 0);
        cr_expect_null(kept, "a tool.result (its undo record) is not read");
        cr_assert_eq(aj_replay_diff_event(request, false, &kept), 0);
        cr_assert_not_null(kept);
        cr_expect_null(json_object_get(kept, "gen_ai.tool.call.arguments"), "no arguments");
        cr_expect_str_eq(json_string_value(json_object_get(kept, "arguments_sha256")), "ab");
        cr_expect_eq(json_object_size(kept), 5);
        json_decref(kept);
        cr_assert_eq(aj_replay_diff_event(asked, false, &kept), 0);
        cr_expect_null(json_object_get(kept, "gen_ai.tool.call.arguments"), "approval.requested: no arguments");
        json_decref(kept);
        cr_assert_eq(aj_replay_diff_event(llm, false, &kept), 0);
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(kept, "replay"), "match")) ?: "(none)",
                         "digest");
        json_decref(kept);
}
