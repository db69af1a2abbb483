/* SPDX-License-Identifier: Apache-2.0 */
/* src/replay.c (the diff of two chains), src/replay-recording.c (matching, framing) and
 * src/workspace-digest.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replay.h"
#include "util/fd.h"
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
        cr_assert_eq(json_array_size(ch), 1, "%zu changes", json_array_size(ch));
        json_t *c = json_array_get(ch, 0);
        cr_assert_str_eq(jstr(c, "kind"), "tool");
        cr_assert_str_eq(jstr(c, "subject"), "Write 222222222222");
        cr_assert_str_eq(jstr(c, "before"), "allow");
        cr_assert_str_eq(jstr(c, "after"), "deny");
        cr_assert_eq(json_integer_value(json_object_get(c, "seq_after")), 6);
        cr_assert_str_eq(jstr(c, "reason"), "denied by tools.deny");
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "replay"), "exit")), 1);
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
        cr_assert_eq(aj_replay_recording_check(rec, "r", &err), -ENODATA);
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

Test(replay_recording, digest_mode_cannot_be_replayed)
{
        json_t *ev = chain(RECORDING);
        AjReplayRecording *rec = NULL;
        cr_assert_eq(aj_replay_recording_from_events(ev, NULL, NULL, NULL, &rec), 0);
        cr_assert_eq(rec->n_missing, 3);
        AjError err = { 0 };
        cr_assert_eq(aj_replay_recording_check(rec, "abc", &err), -ENODATA);
        cr_assert(strstr(aj_error_text(&err, 0), "\"record\": \"full\""), "%s", aj_error_text(&err, 0));
        cr_assert(strstr(aj_error_text(&err, 0), "3 model calls"), "%s", aj_error_text(&err, 0));
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
