/* SPDX-License-Identifier: Apache-2.0 */
/* The services' line server (src/line-server.c) and output buffer (src/util/outbuf.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "line-server.h"
#include "util/macros.h"
#include "util/outbuf.h"

typedef struct {
        AjLoop *loop;
        AjLineServer *server;
        char dir[64], path[128];
        int lines, too_long, refused, closed, last_refusal;
        char last[256];
        bool hold_next; /* the next line's connection is held */
        AjLineConn *held;
} Env;

static Env env;

static void on_line(void *userdata, AjLineConn *c, const char *line, size_t len)
{
        Env *e = userdata;
        e->lines++;
        snprintf(e->last, sizeof(e->last), "%.*s", (int)len, line);
        if (e->hold_next) {
                e->hold_next = false;
                aj_line_conn_hold(c, +1);
                e->held = c;
                return;
        }
        char reply[300];
        int n = snprintf(reply, sizeof(reply), "re:%.*s", (int)(len > 200 ? 200 : len), line);
        if (len == 3 && memcmp(line, "big", 3) == 0)
                n = snprintf(reply, sizeof(reply), "%0100d", 0);
        aj_line_conn_queue(c, reply, (size_t)n);
}

static void on_too_long(void *userdata, AjLineConn *c)
{
        ((Env *)userdata)->too_long++;
        aj_line_conn_queue(c, "too long", 8);
}

static void on_refuse(void *userdata, int fd, int err)
{
        ((Env *)userdata)->refused++;
        ((Env *)userdata)->last_refusal = err;
        (void)!send(fd, "busy\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void on_closed(void *userdata, AjLineConn *c)
{
        Env *e = userdata;
        e->closed++;
        if (e->held == c)
                e->held = NULL;
}

static void start(const AjLineServerLimits *limits)
{
        static const AjLineServerOps ops = {
                .refuse = on_refuse, .line = on_line, .too_long = on_too_long, .closed = on_closed
        };
        memset(&env, 0, sizeof(env));
        snprintf(env.dir, sizeof(env.dir), "/tmp/aj-line-XXXXXX");
        cr_assert_not_null(mkdtemp(env.dir));
        snprintf(env.path, sizeof(env.path), "%s/s.sock", env.dir);
        cr_assert_eq(aj_loop_new(&env.loop), 0);
        int fd;
        cr_assert_eq(aj_line_server_listen(env.path, (uid_t)-1, (gid_t)-1, 16, &fd), 0);
        struct stat st;
        cr_assert_eq(stat(env.path, &st), 0);
        cr_expect_eq(st.st_mode & 0777, 0600, "the socket is 0600 from bind on");
        cr_assert_eq(aj_line_server_new(env.loop, fd, limits, &ops, &env, &env.server), 0);
}

static void stop(void)
{
        aj_line_server_free(env.server);
        aj_loop_free(env.loop);
        unlink(env.path);
        rmdir(env.dir);
}

static void pump(void)
{
        for (int i = 0; i < 5; i++)
                (void)aj_loop_dispatch(env.loop, 0);
}

static int client(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, env.path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        pump();
        return fd;
}

/* What the server sent so far (non-blocking); "" when nothing, "EOF" after a close. */
static const char *received(int fd)
{
        static char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n == 0)
                return "EOF";
        buf[n < 0 ? 0 : n] = 0;
        return buf;
}

static const AjLineServerLimits broker_like = {
        .max_line = 16,
        .max_output = 64,
        .max_connections = 2,
        .accepts_per_wake = 4,
        .discard_long_lines = true,
};

Test(line_server, lines_and_replies)
{
        start(&broker_like);
        int fd = client();
        cr_assert_eq(write(fd, "a\nbb\nc", 6), 6);
        pump();
        cr_expect_eq(env.lines, 2, "a line without its newline waits");
        cr_expect_str_eq(received(fd), "re:a\nre:bb\n");
        cr_assert_eq(write(fd, "\n", 1), 1);
        pump();
        cr_expect_str_eq(env.last, "c");
        cr_expect_eq(aj_line_server_connections(env.server), 1);
        close(fd);
        pump();
        cr_expect_eq(env.closed, 1);
        cr_expect_eq(aj_line_server_connections(env.server), 0);
        stop();
}

Test(line_server, overlong_line_discarded)
{
        start(&broker_like);
        int fd = client();
        /* 17 bytes without a newline fill the buffer: answered once, then dropped to the newline. */
        cr_assert_eq(write(fd, "0123456789abcdefg", 17), 17);
        pump();
        cr_assert_eq(write(fd, "0123456789abcdefghij\nok\n", 24), 24);
        pump();
        cr_expect_eq(env.too_long, 1);
        cr_expect_eq(env.lines, 1);
        cr_expect_str_eq(env.last, "ok");
        cr_expect_str_eq(received(fd), "too long\nre:ok\n");
        cr_expect_eq(env.closed, 0, "the connection stays");
        close(fd);
        stop();
}

Test(line_server, overlong_line_closes)
{
        AjLineServerLimits l = broker_like;
        l.discard_long_lines = false;
        l.one_reply_at_a_time = true;
        start(&l);
        int fd = client();
        cr_assert_eq(write(fd, "0123456789abcdefg", 17), 17);
        pump();
        cr_expect_eq(env.too_long, 1);
        cr_expect_eq(env.lines, 0);
        cr_expect_str_eq(received(fd), "too long\n");
        cr_expect_str_eq(received(fd), "EOF", "closed once the answer is sent");
        cr_expect_eq(env.closed, 1);
        close(fd);
        stop();
}

Test(line_server, output_cap_drops_a_peer_that_does_not_read)
{
        start(&broker_like);
        int fd = client();
        cr_assert_eq(write(fd, "1\n", 2), 2);
        pump();
        cr_expect_eq(env.closed, 0);
        /* A reply that would pass max_output (64): the connection is closed, not stalled on. */
        cr_assert_eq(write(fd, "big\n", 4), 4);
        pump();
        cr_expect_eq(env.closed, 1);
        close(fd);
        stop();
}

Test(line_server, connection_cap)
{
        start(&broker_like);
        int a = client(), b = client(), c = client();
        cr_expect_eq(env.refused, 1);
        cr_expect_eq(env.last_refusal, EBUSY);
        cr_expect_str_eq(received(c), "busy\n");
        cr_expect_str_eq(received(c), "EOF");
        cr_expect_eq(aj_line_server_connections(env.server), 2);
        close(a);
        close(b);
        close(c);
        stop();
}

Test(line_server, held_connection_outlives_eof)
{
        start(&broker_like);
        int fd = client();
        env.hold_next = true;
        cr_assert_eq(write(fd, "wait\n", 5), 5);
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        pump();
        cr_assert_not_null(env.held);
        cr_expect_eq(env.closed, 0, "held: still open after the peer's EOF");
        aj_line_conn_queue(env.held, "late", 4);
        aj_line_conn_hold(env.held, -1);
        aj_line_conn_flush(env.held);
        cr_expect_eq(env.closed, 1, "released and flushed: closed");
        cr_expect_str_eq(received(fd), "late\n");
        close(fd);
        stop();
}

Test(line_server, stale_socket_replaced_other_file_refused)
{
        char dir[] = "/tmp/aj-line-XXXXXX", path[64];
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/s", dir);
        int fd;
        cr_assert_eq(aj_line_server_listen(path, (uid_t)-1, (gid_t)-1, 4, &fd), 0);
        close(fd);
        cr_expect_eq(aj_line_server_listen(path, (uid_t)-1, (gid_t)-1, 4, &fd), 0, "a stale socket is replaced");
        close(fd);
        unlink(path);
        int f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        cr_assert_geq(f, 0);
        close(f);
        cr_expect_eq(aj_line_server_listen(path, (uid_t)-1, (gid_t)-1, 4, &fd), -EEXIST);
        unlink(path);
        rmdir(dir);
}

Test(outbuf, add_send_cap)
{
        AjOutBuf b = { 0 };
        cr_assert_eq(aj_outbuf_add(&b, "abc", 3, true, 8), 0);
        cr_assert_eq(aj_outbuf_add(&b, "defg", 4, false, 8), 0);
        cr_expect_eq(aj_outbuf_pending(&b), 8);
        cr_expect_eq(aj_outbuf_add(&b, "x", 1, false, 8), -ENOBUFS, "past max: refused, unchanged");
        cr_expect_eq(aj_outbuf_pending(&b), 8);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        size_t sent = 0;
        cr_expect_eq(aj_outbuf_send(&b, sv[0], &sent), 1);
        cr_expect_eq(sent, 8);
        cr_expect_eq(aj_outbuf_pending(&b), 0);
        char buf[16] = { 0 };
        cr_expect_eq(read(sv[1], buf, sizeof(buf)), 8);
        cr_expect_str_eq(buf, "abc\ndefg");
        cr_expect_eq(aj_outbuf_send_once(&b, sv[0]), 0, "nothing pending");
        close(sv[1]);
        cr_assert_eq(aj_outbuf_add(&b, "z", 1, false, 8), 0);
        cr_expect_eq(aj_outbuf_send(&b, sv[0], NULL), -EPIPE);
        close(sv[0]);
        aj_outbuf_clear(&b);
}

Test(line_server, corked_replies_wait_for_the_uncork)
{
        start(&broker_like);
        int a = client(), b = client();
        aj_line_server_cork(env.server);
        cr_assert_eq(write(a, "a1\na2\n", 6), 6);
        cr_assert_eq(write(b, "b1\n", 3), 3);
        pump();
        cr_expect_eq(env.lines, 3);
        cr_expect_str_eq(received(a), "", "nothing is sent while corked");
        cr_expect_str_eq(received(b), "");
        aj_line_server_uncork(env.server, true);
        cr_expect_str_eq(received(a), "re:a1\nre:a2\n");
        cr_expect_str_eq(received(b), "re:b1\n");
        /* Not corked any more: a turn sends its own replies. */
        cr_assert_eq(write(a, "a3\n", 3), 3);
        pump();
        cr_expect_str_eq(received(a), "re:a3\n");
        close(a);
        close(b);
        stop();
}

Test(line_server, an_uncork_without_sending_drops_the_corked_replies_and_closes)
{
        start(&broker_like);
        int a = client(), b = client();
        aj_line_server_cork(env.server);
        cr_assert_eq(write(a, "a1\n", 3), 3);
        pump();
        aj_line_server_uncork(env.server, false);
        cr_expect_str_eq(received(a), "EOF", "the reply is never sent; the connection is closed");
        cr_expect_eq(env.closed, 1);
        /* A connection with nothing queued since the cork is left alone. */
        cr_assert_eq(write(b, "b1\n", 3), 3);
        pump();
        cr_expect_str_eq(received(b), "re:b1\n");
        close(a);
        close(b);
        stop();
}

/* Sends `len` bytes of `c` one byte per read of the server's, then `tail`. */
static void trickle(int fd, char c, size_t len, const char *tail)
{
        for (size_t i = 0; i < len; i++) {
                cr_assert_eq(write(fd, &c, 1), 1);
                (void)aj_loop_dispatch(env.loop, 0);
        }
        cr_assert_eq(write(fd, tail, strlen(tail)), (ssize_t)strlen(tail));
        pump();
}

/* A line that arrives in pieces is searched for its newline once, not from its start on each
 * read: a maximal broker line (64 KiB) sent a byte at a time, or an overlong one being
 * dropped, costs each of its bytes searched once (searched from its start on each read,
 * 2^31 bytes). */
Test(line_server, a_line_read_in_pieces_is_searched_once)
{
        AjLineServerLimits l = broker_like;
        l.max_line = 65536;
        l.max_output = 4096;
        start(&l);
        int fd = client();
        trickle(fd, 'a', l.max_line, "\n");
        cr_expect_eq(env.lines, 1);
        cr_expect_eq(strlen(env.last), 255, "the line whole (as far as the test keeps it)");
        uint64_t scanned = aj_line_server_bytes_scanned(env.server);
        cr_expect_eq(scanned, l.max_line + 1, "%llu bytes searched for a maximal line", (unsigned long long)scanned);

        /* Too long: answered, then dropped up to its newline, a byte at a time too. */
        trickle(fd, 'b', 2 * l.max_line, "\nok\n");
        cr_expect_eq(env.too_long, 1);
        cr_expect_eq(env.lines, 2);
        cr_expect_str_eq(env.last, "ok");
        scanned = aj_line_server_bytes_scanned(env.server) - scanned;
        cr_expect_eq(scanned, 2 * l.max_line + 4, "%llu bytes searched for an overlong line",
                     (unsigned long long)scanned);
        close(fd);
        stop();
}
