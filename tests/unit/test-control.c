/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket: a real server in a temporary directory with fake AjControlOps.
 * The server runs in the test process (it is single-threaded, like the supervisor);
 * clients run in forked children, which report through their exit status.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "util/macros.h"

typedef struct {
        int freezes, thaws, kills, releases, inspects, decides;
        uint64_t stop; /* the last thaw's */
        char reason[64];
        char call[64], digest[80];
        bool approved, always;
        uid_t peer;
        json_t *raise;
        bool big_inspect;
} Fake;

static int fake_freeze(void *ud, const char *reason)
{
        Fake *f = ud;
        f->freezes++;
        snprintf(f->reason, sizeof(f->reason), "%s", reason);
        return f->freezes > 1 ? -EALREADY : 0;
}

static int fake_thaw(void *ud, uint64_t stop, json_t *raise, AjError *ret_error)
{
        Fake *f = ud;
        f->thaws++;
        f->stop = stop;
        json_decref(f->raise);
        f->raise = raise ? json_deep_copy(raise) : NULL;
        if (json_object_get(raise, "bogus"))
                return aj_error_set(ret_error, -EINVAL, "bogus: unknown cap");
        return 0;
}

static int fake_kill(void *ud)
{
        ((Fake *)ud)->kills++;
        return 0;
}

static int fake_release(void *ud)
{
        ((Fake *)ud)->releases++;
        return 0;
}

static json_t *fake_inspect(void *ud)
{
        Fake *f = ud;
        f->inspects++;
        json_t *r = json_pack("{s:s, s:i}", "state", "running", "n", f->inspects);
        if (f->big_inspect) {
                char *pad = malloc(16384);
                memset(pad, 'x', 16383);
                pad[16383] = 0;
                json_object_set_new(r, "pad", json_string(pad));
                free(pad);
        }
        return r;
}

static int fake_decide(void *ud, const char *call_id, bool approve, bool always, const char *digest, const char *reason,
                       uid_t peer, json_t **ret_result, AjError *ret_error)
{
        Fake *f = ud;
        f->decides++;
        f->always = always;
        snprintf(f->call, sizeof(f->call), "%s", call_id);
        snprintf(f->digest, sizeof(f->digest), "%s", digest ? digest : "");
        snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
        f->approved = approve;
        f->peer = peer;
        if (streq(call_id, "gone"))
                return aj_error_set(ret_error, -ENOENT, "no call \"gone\" is awaiting approval");
        *ret_result = json_pack("{s:s, s:s}", "gen_ai.tool.call.id", call_id, "decision",
                                approve ? "approved" : "denied");
        return 0;
}

static Fake fake;
static AjControlOps ops = { .userdata = &fake,
                            .freeze = fake_freeze,
                            .thaw = fake_thaw,
                            .kill = fake_kill,
                            .release = fake_release,
                            .inspect = fake_inspect,
                            .decide = fake_decide };

static char dir[64];
static char sock[128];

static void setup(void)
{
        memset(&fake, 0, sizeof(fake));
        snprintf(dir, sizeof(dir), "/tmp/aj-control-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        chmod(dir, 0711); /* the other-uid client must reach the socket */
        snprintf(sock, sizeof(sock), "%s/control.sock", dir);
}

static void teardown(void)
{
        json_decref(fake.raise);
        fake.raise = NULL;
        unlink(sock);
        rmdir(dir);
}

TestSuite(control, .init = setup, .fini = teardown);

/* Serve until the child exits; returns its exit status (or 128+signal). */
static int serve_until_exit(AjControl *c, pid_t pid)
{
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        cr_assert_geq(pidfd, 0);
        for (;;) {
                struct pollfd p[2] = { { .fd = aj_control_fd(c), .events = POLLIN },
                                       { .fd = pidfd, .events = POLLIN } };
                int n = poll(p, 2, 10000);
                if (n == 0) {
                        kill(pid, SIGKILL);
                        cr_assert_fail("client child did not finish within 10s");
                }
                if (p[0].revents)
                        cr_assert_eq(aj_control_dispatch(c), 0);
                if (p[1].revents)
                        break;
        }
        close(pidfd);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static json_t *call(const char *line_json)
{
        json_t *req = json_loads(line_json, 0, NULL);
        json_t *reply = NULL;
        int r = aj_control_call(sock, req, 5000, &reply);
        json_decref(req);
        return r < 0 ? NULL : reply;
}

static bool reply_ok(json_t *reply) { return json_is_true(json_object_get(reply, "ok")); }

static const char *reply_code(json_t *reply)
{
        return json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
}

static int raw_connect(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, sock);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -1;
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* Read one reply line from a raw connection. */
static json_t *raw_reply(int fd)
{
        char buf[4096];
        size_t have = 0;
        while (have < sizeof(buf) - 1) {
                ssize_t n = read(fd, buf + have, 1);
                if (n <= 0)
                        return NULL;
                if (buf[have] == '\n')
                        return json_loadb(buf, have, 0, NULL);
                have++;
        }
        return NULL;
}

/* The server closed the connection: EOF, or ECONNRESET when it left input unread. */
static bool hung_up(int fd)
{
        char b;
        ssize_t n = read(fd, &b, 1);
        return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* ---- the request handler alone ---- */

static json_t *handle(const char *line) { return aj_control_handle_line(&ops, line, strlen(line), 0); }

Test(control, handler_maps_each_op)
{
        json_auto_t *r1 = handle("{\"op\":\"freeze\",\"reason\":\"looks odd\",\"id\":7}");
        cr_assert(reply_ok(r1));
        cr_assert_eq(json_integer_value(json_object_get(r1, "id")), 7);
        cr_assert_eq(fake.freezes, 1);
        cr_assert_str_eq(fake.reason, "looks odd");

        json_auto_t *r2 = handle("{\"op\":\"freeze\"}");
        cr_assert(!reply_ok(r2), "the op's own error must be passed on");
        cr_assert_str_eq(reply_code(r2), "EALREADY");
        cr_assert_str_eq(fake.reason, "operator", "default reason");

        json_auto_t *r3 = handle("{\"op\":\"thaw\",\"raise\":{\"tokens\":\"+20000\",\"cost_usd\":\"5\"}}");
        cr_assert(reply_ok(r3));
        cr_assert_eq(fake.thaws, 1);
        cr_assert_str_eq(json_string_value(json_object_get(fake.raise, "tokens")), "+20000");
        cr_assert_str_eq(json_string_value(json_object_get(fake.raise, "cost_usd")), "5");

        json_auto_t *r4 = handle("{\"op\":\"thaw\"}");
        cr_assert(reply_ok(r4));
        cr_assert_null(fake.raise, "thaw without raise passes NULL");
        cr_assert_eq(fake.stop, 0, "no stop named");

        json_auto_t *r4s = handle("{\"op\":\"thaw\",\"stop\":3}");
        cr_assert(reply_ok(r4s));
        cr_assert_eq(fake.stop, 3, "the stop named reaches the supervisor");
        json_auto_t *r4z = handle("{\"op\":\"thaw\",\"stop\":0}");
        cr_assert_str_eq(reply_code(r4z), "EINVAL", "stops are numbered from 1");
        json_auto_t *r4x = handle("{\"op\":\"thaw\",\"stop\":\"2\"}");
        cr_assert_str_eq(reply_code(r4x), "EINVAL");

        json_auto_t *r5 = handle("{\"op\":\"thaw\",\"raise\":{\"bogus\":\"1\"}}");
        cr_assert(!reply_ok(r5));
        cr_assert_str_eq(reply_code(r5), "EINVAL");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r5, "error"), "message")),
                         "bogus: unknown cap", "the op's error text reaches the operator");

        json_auto_t *r6 = handle("{\"op\":\"kill\"}");
        json_auto_t *r7 = handle("{\"op\":\"release\"}");
        cr_assert(reply_ok(r6) && reply_ok(r7));
        cr_assert_eq(fake.kills, 1);
        cr_assert_eq(fake.releases, 1);

        json_auto_t *r8 = handle("{\"op\":\"inspect\"}");
        cr_assert(reply_ok(r8));
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r8, "result"), "state")), "running");
}

Test(control, approve_and_deny)
{
        const char *sha = "7e84cbf0f7a7c92c037058665d66152f8eb8580ab2534e52c877bccceb9cc7bf";
        char line[256];
        snprintf(line, sizeof(line), "{\"op\":\"approve\",\"call\":\"c-1\",\"digest\":\"%s\"}", sha);
        json_auto_t *r1 = aj_control_handle_line(&ops, line, strlen(line), 1234);
        cr_assert(reply_ok(r1));
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(r1, "result"), "decision")), "approved");
        cr_expect(fake.approved);
        cr_expect_str_eq(fake.call, "c-1");
        cr_expect_str_eq(fake.digest, sha);
        cr_expect_eq(fake.peer, 1234, "the decision names the peer's uid");

        json_auto_t *r2 = handle("{\"op\":\"deny\",\"call\":\"c-2\",\"reason\":\"not now\"}");
        cr_assert(reply_ok(r2));
        cr_expect(!fake.approved);
        cr_expect_str_eq(fake.reason, "not now");

        json_auto_t *r4 = handle("{\"op\":\"approve\",\"call\":\"net-3\",\"always\":true}");
        cr_assert(reply_ok(r4));
        cr_expect(fake.always, "approve carries \"always\" (a host approval for the rest of the run)");
        cr_expect_str_eq(fake.call, "net-3");

        json_auto_t *r3 = handle("{\"op\":\"approve\",\"call\":\"gone\"}");
        cr_expect_str_eq(reply_code(r3), "ENOENT");
        cr_expect(strstr(json_string_value(json_object_get(json_object_get(r3, "error"), "message")), "gone") != NULL);

        static const char *const bad[][2] = {
                { "{\"op\":\"approve\"}", "field 'call'" },
                { "{\"op\":\"approve\",\"call\":\"\"}", "field 'call'" },
                { "{\"op\":\"approve\",\"call\":7}", "field 'call'" },
                { "{\"op\":\"approve\",\"call\":\"c\",\"digest\":\"abc\"}", "field 'digest'" },
                { "{\"op\":\"approve\",\"call\":\"c\",\"reason\":\"x\"}", "unknown field 'reason'" },
                { "{\"op\":\"deny\",\"call\":\"c\",\"digest\":\"x\"}", "unknown field 'digest'" },
                { "{\"op\":\"deny\",\"call\":\"c\",\"reason\":\"\"}", "field 'reason'" },
                { "{\"op\":\"approve\",\"call\":\"net-1\",\"always\":1}", "field 'always'" },
                { "{\"op\":\"deny\",\"call\":\"net-1\",\"always\":true}", "unknown field 'always'" },
        };
        int before = fake.decides;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_auto_t *r = handle(bad[i][0]);
                cr_expect_str_eq(reply_code(r), "EINVAL", "%s", bad[i][0]);
                const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
                cr_expect(msg && strstr(msg, bad[i][1]), "%s: message '%s' lacks '%s'", bad[i][0], msg, bad[i][1]);
        }
        cr_expect_eq(fake.decides, before, "bad requests never reach the supervisor");
}

Test(control, handler_rejects_bad_requests_naming_the_field)
{
        static const struct {
                const char *line, *code, *mentions;
        } cases[] = {
                { "not json", "EINVAL", "not JSON" },
                { "[1,2]", "EINVAL", "object" },
                { "{}", "EINVAL", "'op'" },
                { "{\"op\":5}", "EINVAL", "'op'" },
                { "{\"op\":\"explode\"}", "EINVAL", "explode" },
                { "{\"op\":\"kill\",\"force\":true}", "EINVAL", "'force'" },
                { "{\"op\":\"freeze\",\"reason\":42}", "EINVAL", "'reason'" },
                { "{\"op\":\"thaw\",\"raise\":[1]}", "EINVAL", "'raise'" },
                { "{\"op\":\"thaw\",\"raise\":{\"tokens\":\"lots\"}}", "EINVAL", "raise.tokens" },
                { "{\"op\":\"thaw\",\"raise\":{\"tokens\":-5}}", "EINVAL", "raise.tokens" },
                { "{\"op\":\"thaw\",\"raise\":{\"Bad-Key\":\"1\"}}", "EINVAL", "Bad-Key" },
                { "{\"op\":\"inspect\",\"id\":[1]}", "EINVAL", "'id'" },
                { "{\"op\":\"kill\",\"op\":\"kill\"}", "EINVAL", "duplicate" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                json_auto_t *r = handle(cases[i].line);
                cr_assert(!reply_ok(r), "'%s' must fail", cases[i].line);
                cr_assert_str_eq(reply_code(r), cases[i].code, "'%s'", cases[i].line);
                const char *msg = json_string_value(json_object_get(json_object_get(r, "error"), "message"));
                cr_assert(msg && strstr(msg, cases[i].mentions), "'%s': message '%s' should mention %s", cases[i].line,
                          msg, cases[i].mentions);
        }
        cr_assert_eq(fake.kills + fake.thaws + fake.freezes + fake.inspects, 0, "no op ran for a bad request");

        /* 17 caps is over the limit. */
        json_auto_t *req = json_pack("{s:s, s:{}}", "op", "thaw", "raise");
        for (int i = 0; i <= AJ_CONTROL_MAX_RAISE_KEYS; i++) {
                char k[16];
                snprintf(k, sizeof(k), "cap_%c", 'a' + i);
                json_object_set_new(json_object_get(req, "raise"), k, json_string("1"));
        }
        _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
        json_auto_t *r = handle(line);
        cr_assert(!reply_ok(r));
        cr_assert_eq(fake.thaws, 0);
}

Test(control, missing_ops_answer_enosys)
{
        AjControlOps none = { 0 };
        json_auto_t *r = aj_control_handle_line(&none, "{\"op\":\"kill\"}", 13, 0);
        cr_assert(!reply_ok(r));
        cr_assert_str_eq(reply_code(r), "ENOSYS");
}

/* ---- a real server ---- */

Test(control, ops_over_the_socket)
{
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        struct stat st;
        cr_assert_eq(lstat(sock, &st), 0);
        cr_assert(S_ISSOCK(st.st_mode));
        cr_assert_eq(st.st_mode & 0777, 0600, "socket mode is %o", st.st_mode & 0777);

        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                json_t *r;
                if (!(r = call("{\"op\":\"inspect\"}")) || !reply_ok(r) ||
                    json_integer_value(json_object_get(json_object_get(r, "result"), "n")) != 1)
                        _exit(1);
                if (!(r = call("{\"op\":\"freeze\",\"reason\":\"by test\"}")) || !reply_ok(r))
                        _exit(2);
                if (!(r = call("{\"op\":\"thaw\",\"raise\":{\"tokens\":\"+20000\"}}")) || !reply_ok(r))
                        _exit(3);
                if (!(r = call("{\"op\":\"kill\"}")) || !reply_ok(r))
                        _exit(4);
                if (!(r = call("{\"op\":\"release\",\"id\":\"abc\"}")) || !reply_ok(r) ||
                    strcmp(json_string_value(json_object_get(r, "id")) ?: "", "abc") != 0)
                        _exit(5);
                _exit(0);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_eq(fake.inspects, 1);
        cr_assert_eq(fake.freezes, 1);
        cr_assert_str_eq(fake.reason, "by test");
        cr_assert_eq(fake.thaws, 1);
        cr_assert_str_eq(json_string_value(json_object_get(fake.raise, "tokens")), "+20000");
        cr_assert_eq(fake.kills, 1);
        cr_assert_eq(fake.releases, 1);
        aj_control_free(c);
        cr_assert_eq(access(sock, F_OK), -1, "aj_control_free removes the socket");
}

Test(control, malformed_and_oversized_lines_get_errors_and_the_server_survives)
{
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        pid_t pid = fork();
        if (pid == 0) {
                int fd = raw_connect();
                if (fd < 0)
                        _exit(1);
                /* Two requests in one write, the first malformed: both answered in order. */
                const char *two = "{oops\n{\"op\":\"inspect\"}\r\n";
                if (write(fd, two, strlen(two)) != (ssize_t)strlen(two))
                        _exit(2);
                json_t *r = raw_reply(fd);
                if (!r || reply_ok(r) || strcmp(reply_code(r) ?: "", "EINVAL") != 0)
                        _exit(3);
                r = raw_reply(fd);
                if (!r || !reply_ok(r))
                        _exit(4);
                close(fd);

                /* A line longer than the limit: E2BIG, then the server hangs up. */
                fd = raw_connect();
                char *big = malloc(AJ_CONTROL_MAX_LINE + 100);
                memset(big, 'a', AJ_CONTROL_MAX_LINE + 100);
                if (write(fd, big, AJ_CONTROL_MAX_LINE + 100) < AJ_CONTROL_MAX_LINE)
                        _exit(5);
                r = raw_reply(fd);
                if (!r || reply_ok(r) || strcmp(reply_code(r) ?: "", "E2BIG") != 0)
                        _exit(6);
                if (!hung_up(fd))
                        _exit(7); /* closed after the error */
                close(fd);

                /* Binary garbage and a client that disconnects mid-line. */
                fd = raw_connect();
                if (write(fd, "\x01\x02\xff{\"op\"", 8) != 8)
                        _exit(8);
                close(fd);

                r = call("{\"op\":\"inspect\"}");
                if (!r || !reply_ok(r))
                        _exit(9);
                _exit(0);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_eq(fake.inspects, 2);
        aj_control_free(c);
}

Test(control, other_uids_are_refused)
{
        if (geteuid() != 0)
                cr_skip_test("needs root: it switches to uids 65534 and 65533");
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, 0, &ops, &c), 0);
        /* The file mode already keeps others out; open it up to test the server's own check. */
        cr_assert_eq(chmod(sock, 0666), 0);
        pid_t pid = fork();
        if (pid == 0) {
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(1);
                int fd = raw_connect();
                if (fd < 0)
                        _exit(2);
                /* The refusal may come before this is sent: then the write fails (EPIPE). */
                (void)!send(fd, "{\"op\":\"kill\"}\n", 14, MSG_NOSIGNAL);
                json_t *r = raw_reply(fd);
                if (!r || reply_ok(r) || strcmp(reply_code(r) ?: "", "EPERM") != 0)
                        _exit(4);
                if (!hung_up(fd))
                        _exit(5); /* and disconnected */
                _exit(0);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_eq(fake.kills, 0, "a refused client's request must not reach the ops");
        aj_control_free(c);

        /* Owned by 65534: that uid and root get through, uid 65533 does not. */
        cr_assert_eq(aj_control_new(sock, 65534, &ops, &c), 0);
        struct stat st;
        cr_assert_eq(lstat(sock, &st), 0);
        cr_assert_eq(st.st_uid, 65534, "the socket belongs to the run's owner");
        cr_assert_eq(chmod(sock, 0666), 0);
        pid = fork();
        if (pid == 0) {
                json_t *r = call("{\"op\":\"kill\"}");
                if (!r || !reply_ok(r))
                        _exit(1); /* root */
                pid_t k = fork();
                if (k == 0) {
                        if (setresuid(65533, 65533, 65533) < 0)
                                _exit(1);
                        r = call("{\"op\":\"kill\"}");
                        _exit(r && !reply_ok(r) && strcmp(reply_code(r) ?: "", "EPERM") == 0 ? 0 : 2);
                }
                int status;
                waitpid(k, &status, 0);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        _exit(2);
                if (setresuid(65534, 65534, 65534) < 0)
                        _exit(3);
                r = call("{\"op\":\"kill\"}");
                _exit(r && reply_ok(r) ? 0 : 4);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_eq(fake.kills, 2, "root and the owner were let through");
        aj_control_free(c);
}

/* The decision: uid first, then the peer must be visible and in our user namespace. */
Test(control, peer_refusal_table)
{
        const AjNsId host = { 4, 4026531837 }, jail = { 4, 4026532901 };
        const struct {
                AjControlPeer peer;
                uid_t owner;
                const AjNsId *self;
                const char *want; /* a word of the refusal; NULL: allowed */
        } cases[] = {
                { { 1000, 42, true, host }, 1000, &host, NULL },                          /* the owner on the host */
                { { 0, 42, true, host }, 1000, &host, NULL },                             /* root on the host */
                { { 1001, 42, true, host }, 1000, &host, "owner" },                       /* another uid */
                { { 1000, 42, true, jail }, 1000, &host, "user namespace" },              /* the owner's uid, jailed */
                { { 0, 42, true, jail }, 1000, &host, "user namespace" },                 /* root's kuid, jailed */
                { { 1000, 0, true, host }, 1000, &host, "not visible" },                  /* pid 0: another pid ns */
                { { 1000, 42, false, host }, 1000, &host, "cannot identify" },            /* unread / pid reused */
                { { 1000, 42, true, host }, 1000, NULL, "cannot identify" },              /* ours unknown */
                { { 1000, 42, true, { 5, 4026531837 } }, 1000, &host, "user namespace" }, /* dev counts */
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                const char *why = aj_control_peer_refusal(&cases[i].peer, cases[i].owner, cases[i].self);
                if (!cases[i].want)
                        cr_expect_null(why, "case %zu: refused: %s", i, why);
                else
                        cr_expect(why && strstr(why, cases[i].want), "case %zu: %s, want \"%s\"", i,
                                  why ? why : "allowed", cases[i].want);
        }
}

/* A process in another user namespace with the owner's uid (what a rootless jail's agent
 * is, reaching its own run's socket) is refused; the same uid outside is served. */
Test(control, peers_in_another_user_namespace_are_refused)
{
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        pid_t pid = fork();
        if (pid == 0) {
                json_t *r = call("{\"op\":\"kill\"}");
                if (!r || !reply_ok(r))
                        _exit(1); /* the owner, here */
                pid_t k = fork();
                if (k == 0) {
                        /* kuid unchanged: SO_PEERCRED still says the owner's uid. */
                        if (unshare(CLONE_NEWUSER) < 0)
                                _exit(1);
                        r = call("{\"op\":\"kill\"}");
                        _exit(r && !reply_ok(r) && strcmp(reply_code(r) ?: "", "EPERM") == 0 ? 0 : 2);
                }
                int status;
                waitpid(k, &status, 0);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        _exit(10 + (WIFEXITED(status) ? WEXITSTATUS(status) : 9));
                _exit(0);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_eq(fake.kills, 1, "only the host-side owner was let through");
        aj_control_free(c);
}

Test(control, connection_limit_and_many_clients)
{
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        pid_t pid = fork();
        if (pid == 0) {
                int fds[AJ_CONTROL_MAX_CLIENTS];
                for (int i = 0; i < AJ_CONTROL_MAX_CLIENTS; i++)
                        if ((fds[i] = raw_connect()) < 0)
                                _exit(1);
                /* Interleaved requests on all of them, each answered on its own connection. */
                for (int i = 0; i < AJ_CONTROL_MAX_CLIENTS; i++) {
                        char line[64];
                        int n = snprintf(line, sizeof(line), "{\"op\":\"inspect\",\"id\":%d}\n", i);
                        if (write(fds[i], line, (size_t)n) != n)
                                _exit(2);
                }
                for (int i = AJ_CONTROL_MAX_CLIENTS - 1; i >= 0; i--) {
                        json_t *r = raw_reply(fds[i]);
                        if (!r || !reply_ok(r) || json_integer_value(json_object_get(r, "id")) != i)
                                _exit(3);
                }
                /* One more is refused, politely. */
                json_t *r = call("{\"op\":\"inspect\"}");
                if (!r || reply_ok(r) || strcmp(reply_code(r) ?: "", "EBUSY") != 0)
                        _exit(4);
                for (int i = 0; i < AJ_CONTROL_MAX_CLIENTS; i++)
                        close(fds[i]);
                /* The server sees the hang-ups and takes clients again: at once on an idle
                 * machine; on a loaded one its accept may come before the hang-ups in one
                 * dispatch, and the server may wait for a CPU, so allow it up to 30 s (a server
                 * that never frees the slots fails). */
                for (int attempt = 0; attempt < 3000; attempt++) {
                        r = call("{\"op\":\"inspect\"}");
                        if (r && reply_ok(r))
                                _exit(0);
                        usleep(10000);
                }
                _exit(5);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        cr_assert_geq(fake.inspects, AJ_CONTROL_MAX_CLIENTS + 1);
        aj_control_free(c);
}

Test(control, a_client_that_does_not_read_stalls_only_itself)
{
        AjControl *c = NULL;
        fake.big_inspect = true;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        pid_t pid = fork();
        if (pid == 0) {
                int slow = raw_connect();
                int flags = fcntl(slow, F_GETFL);
                fcntl(slow, F_SETFL, flags | O_NONBLOCK);
                /* Far more reply data than socket buffers hold, and never read. */
                const char *req = "{\"op\":\"inspect\"}\n";
                size_t sent = 0;
                for (int i = 0; i < 2000; i++) {
                        ssize_t n = write(slow, req, strlen(req));
                        if (n <= 0)
                                break;
                        sent += (size_t)n;
                }
                if (sent < 100 * strlen(req))
                        _exit(1);
                /* Meanwhile another client is served. */
                json_t *r = call("{\"op\":\"inspect\"}");
                if (!r || !reply_ok(r))
                        _exit(2);
                close(slow);
                r = call("{\"op\":\"kill\"}");
                _exit(r && reply_ok(r) ? 0 : 3);
        }
        {
                int st_ = serve_until_exit(c, pid);
                cr_assert_eq(st_, 0, "client step %d failed", st_);
        }
        /* The slow client's requests were not all handled: the server stopped reading. */
        cr_assert_lt(fake.inspects, 500, "handled %d requests of a client that reads nothing", fake.inspects);
        cr_assert_eq(fake.kills, 1);
        aj_control_free(c);
}

Test(control, client_errors)
{
        json_auto_t *req = json_pack("{s:s}", "op", "inspect");
        json_t *reply = NULL;
        cr_assert_eq(aj_control_call(sock, req, 1000, &reply), -ENOENT, "no socket");

        /* A stale socket nobody listens on. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, sock);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        cr_assert_eq(aj_control_call(sock, req, 1000, &reply), -ECONNREFUSED);

        /* The server replaces a stale socket, but never another kind of file. */
        AjControl *c = NULL;
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), 0);
        aj_control_free(c);
        int f = open(sock, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        close(f);
        cr_assert_eq(aj_control_new(sock, geteuid(), &ops, &c), -EEXIST);
        cr_assert_eq(access(sock, F_OK), 0, "a regular file is left alone");

        /* A listener that never answers: the client gives up on time. */
        unlink(sock);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(fd, 4), 0);
        cr_assert_eq(aj_control_call(sock, req, 200, &reply), -ETIMEDOUT);
        close(fd);
}

/* The client's side: which sockets an operator command talks to. */
Test(control, client_trust_table)
{
        const struct {
                mode_t dir_mode;
                uid_t dir_uid;
                mode_t sock_mode;
                uid_t self;
                const char *want; /* a word of the problem; NULL: usable */
        } cases[] = {
                { S_IFDIR | 0700, 1000, S_IFSOCK | 0600, 1000, NULL },              /* a rootless run's */
                { S_IFDIR | 0700, 0, S_IFSOCK | 0600, 1000, NULL },                 /* a root-started run's */
                { S_IFDIR | 0755, 1001, S_IFSOCK | 0777, 1000, "another user" },    /* /tmp/agentjail-UID squatted */
                { S_IFDIR | 0770, 1000, S_IFSOCK | 0600, 1000, "can write" },       /* the group could swap it */
                { S_IFDIR | 0703, 0, S_IFSOCK | 0600, 1000, "can write" },          /* root's, world-writable */
                { S_IFDIR | 0700, 1000, S_IFLNK | 0777, 1000, "symlink" },          /* to another run's socket */
                { S_IFDIR | 0700, 1000, S_IFREG | 0600, 1000, "not a socket" },     /* a file */
                { S_IFREG | 0700, 1000, S_IFSOCK | 0600, 1000, "not a directory" }, /* cannot happen: O_DIRECTORY */
                { S_IFDIR | 0700, 1001, S_IFSOCK | 0600, 0, NULL },                 /* root reaches a user's runs */
                { S_IFDIR | 0777, 1001, S_IFSOCK | 0600, 0, "can write" },          /* but not through a shared dir */
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct stat d = { .st_mode = cases[i].dir_mode, .st_uid = cases[i].dir_uid };
                struct stat s = { .st_mode = cases[i].sock_mode, .st_uid = cases[i].dir_uid };
                const char *why = aj_control_socket_problem(&d, &s, cases[i].self);
                if (!cases[i].want)
                        cr_expect_null(why, "case %zu: refused: %s", i, why);
                else
                        cr_expect(why && strstr(why, cases[i].want), "case %zu: %s, want \"%s\"", i,
                                  why ? why : "usable", cases[i].want);
        }
        /* The directory above (the runtime root): whoever writes it names the run's directory. */
        const struct {
                mode_t mode;
                uid_t uid, self;
                const char *want;
        } parents[] = {
                { S_IFDIR | 0700, 1000, 1000, NULL },           /* /tmp/agentjail-UID, XDG's */
                { S_IFDIR | 0711, 0, 1000, NULL },              /* /run/agentjail */
                { S_IFDIR | 01777, 0, 1000, NULL },             /* /tmp: others cannot rename ours */
                { S_IFDIR | 0700, 1001, 1000, "another user" }, /* /tmp/agentjail-UID squatted */
                { S_IFDIR | 0777, 1000, 1000, "can write" },    /* anyone swaps the run's directory */
                { S_IFDIR | 0775, 0, 1000, "can write" },       /* its group does */
                { S_IFDIR | 0755, 1001, 0, NULL },              /* root reaches a user's runs */
                { S_IFDIR | 0777, 1001, 0, "can write" },       /* but not through a shared dir */
                { S_IFREG | 0700, 1000, 1000, "not a directory" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(parents); i++) {
                struct stat p = { .st_mode = parents[i].mode, .st_uid = parents[i].uid };
                const char *why = aj_control_parent_problem(&p, parents[i].self);
                if (!parents[i].want)
                        cr_expect_null(why, "parent %zu: refused: %s", i, why);
                else
                        cr_expect(why && strstr(why, parents[i].want), "parent %zu: %s, want \"%s\"", i,
                                  why ? why : "usable", parents[i].want);
        }
        cr_expect(aj_control_server_trusted(1000, 1000));
        cr_expect(aj_control_server_trusted(0, 1000), "root's supervisor of a run started with sudo");
        cr_expect_not(aj_control_server_trusted(1001, 1000), "another user's process");
        cr_expect(aj_control_server_trusted(1001, 0), "root reaches a user's runs");
}

/* Listen on `path` as uid `uid` in a child (SO_PEERCRED is the listener's, at listen()),
 * accepting and answering "ok" until killed; the socket is made connectable for all. */
static pid_t serve_as(const char *path, uid_t uid)
{
        int ready[2];
        cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0777) < 0 ||
                    setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0 || listen(fd, 4) < 0)
                        _exit(1);
                (void)!write(ready[1], "r", 1);
                for (;;) {
                        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                        if (c >= 0) {
                                (void)!write(c, "{\"ok\":true}\n", 12);
                                close(c);
                        }
                }
        }
        close(ready[1]);
        char b;
        cr_assert_eq(read(ready[0], &b, 1), 1, "the fake server started");
        close(ready[0]);
        return pid;
}

static void stop(pid_t pid)
{
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* A rootless operator whose runtime root another user made first (/tmp/agentjail-UID):
 * that user's socket answered "killed" for a run that went on, and a symlink of theirs sent
 * the request to another socket. Every one is refused (-EPERM) before a byte is sent. */
Test(control, client_refuses_sockets_it_cannot_trust)
{
        if (geteuid() != 0)
                cr_skip_test("needs root: it switches to uids 65534 and 65533");
        char other[128], own[128], path[192];
        snprintf(other, sizeof(other), "%s/other", dir);
        snprintf(own, sizeof(own), "%s/own", dir);
        cr_assert_eq(mkdir(other, 0755), 0);
        cr_assert_eq(chown(other, 65533, 65533), 0);
        cr_assert_eq(mkdir(own, 0700), 0);
        cr_assert_eq(chown(own, 65534, 65534), 0);

        /* 1: served by 65533 in its own directory. 2: a symlink there to a socket 65534
         * could use (root's, in 65534's own directory). 3: served by 65533 in 65534's own
         * directory (a socket of 65534's own kind is the only one it talks to). */
        snprintf(path, sizeof(path), "%s/squat.sock", other);
        pid_t squat = serve_as(path, 65533);
        snprintf(path, sizeof(path), "%s/root.sock", own);
        pid_t root = serve_as(path, 0);
        char link[192];
        snprintf(link, sizeof(link), "%s/link.sock", other);
        cr_assert_eq(symlink(path, link), 0);
        cr_assert_eq(lchown(link, 65533, 65533), 0);
        snprintf(path, sizeof(path), "%s/foreign.sock", own);
        pid_t foreign = serve_as(path, 65533);
        /* 4: the run's directory a symlink in the squatter's root, to 65534's own directory,
         * where root's socket is (another run's): the directory it names passes every check. */
        snprintf(link, sizeof(link), "%s/run-link", other);
        cr_assert_eq(symlink(own, link), 0);
        cr_assert_eq(lchown(link, 65533, 65533), 0);

        pid_t pid = fork();
        if (pid == 0) {
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(1);
                json_t *req = json_pack("{s:s}", "op", "kill"), *reply = NULL;
                const char *names[] = { "other/squat.sock", "other/link.sock", "own/foreign.sock",
                                        "other/run-link/root.sock", "own/root.sock" };
                const int want[] = { -EPERM, -EPERM, -EPERM, -EPERM, 0 };
                for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                        char p[256];
                        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
                        int r = aj_control_call(p, req, 2000, &reply);
                        if (r != want[i])
                                _exit(10 + (int)i);
                        if (r == 0)
                                json_decref(reply);
                }
                _exit(0);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        stop(squat);
        stop(root);
        stop(foreign);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "client step %d failed (10: a squatter's socket, 11: its symlink, 12: a foreign server, 13: its "
                  "symlink to a run's directory, 14: root's)",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        const char *made[] = { "other/squat.sock", "other/link.sock", "other/run-link", "own/root.sock",
                               "own/foreign.sock" };
        for (size_t i = 0; i < ARRAY_SIZE(made); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, made[i]);
                cr_expect_eq(unlink(path), 0, "%s", path);
        }
        cr_expect_eq(rmdir(other), 0);
        cr_expect_eq(rmdir(own), 0);
}
