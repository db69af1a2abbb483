/* SPDX-License-Identifier: Apache-2.0 */
/* The terminal relay with a real pty pair and pipes standing for the operator's side. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tty.h"

static void open_pty(int *ret_master, int *ret_slave, bool raw)
{
        int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        cr_assert(m >= 0);
        cr_assert(grantpt(m) == 0 && unlockpt(m) == 0);
        int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        cr_assert(s >= 0);
        if (raw) {
                struct termios t;
                cr_assert(tcgetattr(s, &t) == 0);
                aj_tty_make_raw(&t);
                cr_assert(tcsetattr(s, TCSANOW, &t) == 0);
        }
        *ret_master = m;
        *ret_slave = s;
}

static void make_pipe(int p[2]) { cr_assert(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0); }

typedef struct {
        char data[1 << 20];
        size_t len;
} Transcript;

/* Byte k of a stream that shows any loss, duplication or reordering. */
static char pattern(size_t k) { return (char)(k % 251); }

static bool is_pattern(const char *buf, size_t len, size_t from)
{
        for (size_t i = 0; i < len; i++)
                if (buf[i] != pattern(from + i))
                        return false;
        return true;
}

static void record(void *userdata, const void *buf, size_t n)
{
        Transcript *t = userdata;
        if (t->len + n <= sizeof(t->data)) {
                memcpy(t->data + t->len, buf, n);
                t->len += n;
        } else
                t->len = sizeof(t->data) + 1; /* overflowed: the test only counts */
}

Test(tty, raw_mode_bits)
{
        int m, s;
        open_pty(&m, &s, false);
        struct termios t;
        cr_assert(tcgetattr(s, &t) == 0);
        cr_assert(t.c_lflag & ICANON, "a new pty starts cooked");
        aj_tty_make_raw(&t);
        cr_assert_eq(t.c_lflag & (ECHO | ECHONL | ICANON | ISIG | IEXTEN), 0u);
        cr_assert_eq(t.c_iflag & (ICRNL | INLCR | IGNCR | IXON | ISTRIP | BRKINT), 0u);
        cr_assert_eq(t.c_oflag & OPOST, 0u);
        cr_assert_eq(t.c_cflag & CSIZE, (tcflag_t)CS8);
        cr_assert_eq(t.c_cc[VMIN], 1);
        cr_assert_eq(t.c_cc[VTIME], 0);
        close(m);
        close(s);
}

Test(tty, relays_both_ways_and_keeps_the_transcript)
{
        int m, s, in[2], out[2];
        open_pty(&m, &s, true);
        make_pipe(in);
        make_pipe(out);
        Transcript tr = { .len = 0 };
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in[0], out[1], m, record, &tr, &t) == 0);

        cr_assert(write(in[1], "typed", 5) == 5);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        char buf[64] = { 0 };
        cr_assert_eq(read(s, buf, sizeof(buf)), 5);
        cr_assert_str_eq(buf, "typed");

        cr_assert(write(s, "shown", 5) == 5);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        memset(buf, 0, sizeof(buf));
        cr_assert_eq(read(out[0], buf, sizeof(buf)), 5);
        cr_assert_str_eq(buf, "shown");
        cr_assert_eq(tr.len, 5);
        cr_assert(memcmp(tr.data, "shown", 5) == 0);
        cr_assert_not(aj_tty_relay_output_done(t));

        /* Every slave fd closed: the jail's side hung up, nothing left to show. */
        close(s);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        cr_assert(aj_tty_relay_output_done(t));
        aj_tty_relay_free(t);
        close(in[1]);
        close(out[0]);
}

Test(tty, output_is_bounded_when_the_operator_does_not_read)
{
        int m, s, in[2], out[2];
        open_pty(&m, &s, true);
        make_pipe(in);
        make_pipe(out);
        cr_assert(fcntl(out[0], F_SETPIPE_SZ, 4096) >= 0);
        static Transcript tr;
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in[0], out[1], m, record, &tr, &t) == 0);

        /* The jail writes as fast as it can; nobody reads the operator's side. */
        char chunk[4096];
        size_t written = 0;
        bool throttled = false;
        for (int i = 0; i < 4096 && !throttled; i++) {
                for (size_t k = 0; k < sizeof(chunk); k++)
                        chunk[k] = pattern(written + k);
                ssize_t n = write(s, chunk, sizeof(chunk));
                if (n < 0) {
                        cr_assert_eq(errno, EAGAIN);
                        /* Once more after the relay has had its turn: still full. */
                        cr_assert(aj_tty_relay_dispatch(t) == 0);
                        ssize_t again = write(s, chunk, sizeof(chunk));
                        throttled = again < 0 && errno == EAGAIN;
                        if (again > 0)
                                written += (size_t)again;
                        continue;
                }
                written += (size_t)n;
                cr_assert(aj_tty_relay_dispatch(t) == 0);
        }
        cr_assert(throttled, "the jail's writes block once the buffers are full (wrote %zu bytes)", written);
        size_t bin, bout;
        aj_tty_relay_buffered(t, &bin, &bout);
        cr_assert_leq(bout, AJ_TTY_BUF_SIZE);
        cr_assert_eq(bout, AJ_TTY_BUF_SIZE, "the relay's buffer is full, and no more");
        cr_assert_lt(written, 1024 * 1024, "the kernel's and the relay's buffers bound the output held");

        /* The operator reads again: the output flows, all of it, in order. */
        char buf[65536];
        size_t got = 0;
        for (int i = 0; i < 1000 && got < written; i++) {
                ssize_t n = read(out[0], buf, sizeof(buf));
                if (n > 0) {
                        cr_assert(is_pattern(buf, (size_t)n, got), "the operator sees the bytes in order");
                        got += (size_t)n;
                }
                cr_assert(aj_tty_relay_dispatch(t) == 0);
        }
        cr_assert_eq(got, written);
        cr_assert_eq(tr.len, written, "the transcript has every byte");
        cr_assert(is_pattern(tr.data, tr.len, 0), "the transcript has the bytes in order, once");
        aj_tty_relay_free(t);
        close(s);
        close(in[1]);
        close(out[0]);
}

Test(tty, input_is_bounded_when_the_jail_does_not_read)
{
        int m, s, in[2], out[2];
        open_pty(&m, &s, true);
        make_pipe(in);
        make_pipe(out);
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in[0], out[1], m, NULL, NULL, &t) == 0);
        char chunk[4096];
        memset(chunk, 'y', sizeof(chunk));
        bool throttled = false;
        for (int i = 0; i < 4096 && !throttled; i++) {
                if (write(in[1], chunk, sizeof(chunk)) < 0) {
                        cr_assert_eq(errno, EAGAIN);
                        cr_assert(aj_tty_relay_dispatch(t) == 0);
                        throttled = write(in[1], chunk, sizeof(chunk)) < 0 && errno == EAGAIN;
                        continue;
                }
                cr_assert(aj_tty_relay_dispatch(t) == 0);
        }
        cr_assert(throttled, "the operator's input stops being read once the jail's side is full");
        size_t bin, bout;
        aj_tty_relay_buffered(t, &bin, &bout);
        cr_assert_leq(bin, AJ_TTY_BUF_SIZE);
        aj_tty_relay_free(t);
        close(s);
        close(in[1]);
        close(out[0]);
}

Test(tty, end_of_input_is_an_end_of_file_in_the_jail)
{
        int m, s, in[2], out[2];
        open_pty(&m, &s, false); /* canonical, as a shell reading a line */
        make_pipe(in);
        make_pipe(out);
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in[0], out[1], m, NULL, NULL, &t) == 0);
        cr_assert(write(in[1], "line\n", 5) == 5);
        close(in[1]);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        char buf[64] = { 0 };
        cr_assert_eq(read(s, buf, sizeof(buf)), 5);
        cr_assert_str_eq(buf, "line\n");
        /* Then VEOF: a read of 0 (not EAGAIN), as after ^D at a terminal. */
        cr_assert_eq(read(s, buf, sizeof(buf)), 0);
        aj_tty_relay_free(t);
        close(s);
        close(out[0]);
}

Test(tty, reopen_leaves_the_shared_description_blocking)
{
        int p[2];
        cr_assert(pipe2(p, O_CLOEXEC) == 0);
        int fd, restore;
        cr_assert(aj_tty_reopen_nonblock(p[0], O_RDONLY, &fd, &restore) == 0);
        cr_assert_neq(fd, p[0]);
        cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
        cr_assert_not(fcntl(p[0], F_GETFL) & O_NONBLOCK, "the operator's shell's fd is untouched");
        cr_assert_eq(restore, -1);
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        char c;
        cr_assert(read(fd, &c, 1) < 0 && errno == EAGAIN);
        close(fd);
        close(p[0]);
        close(p[1]);
}

Test(tty, restore_drops_pending_input)
{
        /* What the terminal answered to the agent's last query (here a cursor position
         * report) must not reach the operator's shell as typed input. */
        int m, s;
        open_pty(&m, &s, false);
        struct termios saved;
        cr_assert(tcgetattr(s, &saved) == 0);
        cr_assert_eq(aj_tty_enter_raw(s, &saved), 0);
        const char answer[] = "\x1b[24;80R";
        cr_assert_eq(write(m, answer, sizeof(answer) - 1), (ssize_t)(sizeof(answer) - 1));
        int pending = 0;
        for (int i = 0; i < 10000 && pending == 0; i++) { /* the kernel's worker queues it: 10 s at most */
                cr_assert(ioctl(s, FIONREAD, &pending) == 0);
                if (pending == 0)
                        usleep(1000);
        }
        cr_assert_gt(pending, 0, "the answer is queued on the terminal");
        cr_assert_eq(aj_tty_restore(s, &saved), 0);
        cr_assert(ioctl(s, FIONREAD, &pending) == 0);
        cr_expect_eq(pending, 0, "%d bytes left for the shell", pending);
        struct termios now;
        cr_assert(tcgetattr(s, &now) == 0);
        cr_expect(now.c_lflag & ICANON, "cooked again");
        close(m);
        close(s);
}

/* A terminal emulator on the operator pty's master `om`: reads what was written to the
 * terminal and answers its queries in order (DA1 with DA1's answer, DSR 6 with a cursor
 * position report), each `delay_ms` after the one before, until it has answered `n`. */
static pid_t slow_terminal(int om, int n, int delay_ms)
{
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid > 0)
                return pid;
        char seen[4096];
        size_t len = 0, at = 0;
        for (int answered = 0; answered < n;) {
                ssize_t got = read(om, seen + len, sizeof(seen) - len);
                if (got <= 0)
                        _exit(1);
                len += (size_t)got;
                for (char *q; (q = memmem(seen + at, len - at, "\x1b[", 2)) && q + 2 < seen + len;) {
                        at = (size_t)(q - seen) + 2;
                        const char *answer = seen[at] == 'c' ? "\x1b[?1;2c" : seen[at] == '6' ? "\x1b[24;80R" : NULL;
                        if (!answer)
                                continue;
                        usleep((useconds_t)delay_ms * 1000);
                        if (write(om, answer, strlen(answer)) < 0)
                                _exit(1);
                        answered++;
                }
        }
        _exit(0);
}

static int pending_input(int fd)
{
        int pending = 0;
        cr_assert(ioctl(fd, FIONREAD, &pending) == 0);
        return pending;
}

Test(tty, fence_waits_for_the_answers_to_the_jails_last_queries)
{
        /* The jail asks for its device attributes, then for the cursor's position, then
         * exits; a slow terminal answers each 100 ms after the one before: without the
         * fence, the cursor report (and the fence's) would be left for the operator's shell.
         * The jail's own DA1 answer first must not be taken for the fence's. */
        int m, s, om, os;
        open_pty(&m, &s, true);
        open_pty(&om, &os, false); /* the operator's terminal: os, its emulator: om */
        struct termios saved;
        cr_assert(tcgetattr(os, &saved) == 0);
        cr_assert_eq(aj_tty_enter_raw(os, &saved), 0);
        int in = dup(os), out = dup(os);
        cr_assert(in >= 0 && out >= 0);
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in, out, m, NULL, NULL, &t) == 0);
        const char queries[] = "output\x1b[c\x1b[6n";
        cr_assert_eq(write(s, queries, sizeof(queries) - 1), (ssize_t)(sizeof(queries) - 1));
        close(s); /* the jail has ended */
        for (int i = 0; i < 100 && !aj_tty_relay_output_done(t); i++) {
                cr_assert(aj_tty_relay_dispatch(t) == 0);
                usleep(1000);
        }
        cr_assert(aj_tty_relay_output_done(t));
        pid_t emu = slow_terminal(om, 3, 100);
        cr_assert_eq(aj_tty_relay_fence(t, 5000), 0);
        cr_assert_eq(aj_tty_restore(os, &saved), 0);
        int status;
        cr_assert_eq(waitpid(emu, &status, 0), emu);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the terminal answered all three queries");
        usleep(50 * 1000);
        /* Read as the shell would (non-canonical: a cooked FIONREAD counts whole lines). */
        cr_assert_eq(aj_tty_enter_raw(os, &saved), 0);
        char left[64];
        ssize_t n = read(os, left, sizeof(left));
        cr_expect(n < 0 && errno == EAGAIN, "%zd bytes of answers left for the shell", n);
        aj_tty_relay_free(t);
        close(om);
        close(os);
}

Test(tty, fence_ends_at_its_timeout_and_only_where_output_went_to_the_terminal)
{
        int m, s, om, os;
        open_pty(&m, &s, true);
        open_pty(&om, &os, true);
        int in = dup(os), out = dup(os);
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(in, out, m, NULL, NULL, &t) == 0);
        cr_assert_eq(aj_tty_relay_fence(t, 50), 0, "nothing shown, nothing to fence");
        cr_assert(write(s, "x", 1) == 1);
        for (int i = 0; i < 100 && pending_input(om) == 0; i++) {
                cr_assert(aj_tty_relay_dispatch(t) == 0);
                usleep(1000);
        }
        /* A terminal that never answers: the fence gives up at its timeout. */
        cr_assert_eq(aj_tty_relay_fence(t, 50), -ETIMEDOUT);
        aj_tty_relay_free(t);
        close(s);
        close(om);
        close(os);
}

/* The events of `text` fed from state `e`, one letter each: Text, Part, Final (ESC x), Csi,
 * parameter (p), csi final (f), String, string byte (s). */
static void esc_events(AjTtyEsc *e, const char *text, char *out)
{
        static const char letter[] = {
                [AJ_TTY_ESC_TEXT] = 'T',   [AJ_TTY_ESC_PART] = 'P',        [AJ_TTY_ESC_FINAL] = 'F',
                [AJ_TTY_ESC_CSI] = 'C',    [AJ_TTY_ESC_CSI_PARAM] = 'p',   [AJ_TTY_ESC_CSI_FINAL] = 'f',
                [AJ_TTY_ESC_STRING] = 'S', [AJ_TTY_ESC_STRING_BYTE] = 's',
        };
        for (; *text; text++)
                *out++ = letter[aj_tty_esc_feed(e, (unsigned char)*text)];
        *out = 0;
}

/* The one tokenizer the DA1 counts and the clipboard filter are found on: each introducer in
 * its 7-bit, 8-bit and UTF-8 forms, a sequence carried across reads, ESC and the C1 bytes
 * beginning a new one wherever they are. */
Test(tty, escape_tokenizer)
{
        static const struct {
                const char *text, *events;
                unsigned char final, marker, intro, kind;
                unsigned params, privates, colons;
        } cases[] = {
                { "a\x1b[?1;2c", "TPCppppf", 'c', '?', 2, 0, 4, 1, 0 },
                { "\x9b?1;2c", "Cppppf", 'c', '?', 1, 0, 4, 1, 0 },
                { "\xc2\x9b"
                  "6n",
                  "PCpf", 'n', 0, 2, 0, 1, 0, 0 },
                { "\x1b[1:2;>c", "PCpppppf", 'c', 0, 2, 0, 5, 1, 1 },
                { "\x1bZ", "PF", 'Z', 0, 0, 0, 0, 0, 0 },
                { "\x1b[1\x1b[c", "PCpPCf", 'c', 0, 2, 0, 0, 0, 0 },
                { "\x1b[1\x9b"
                  "c",
                  "PCpCf", 'c', 0, 1, 0, 0, 0, 0 },
                { "\x1b]52;c;?\x07x", "PSssssssPT", 0, 0, 2, ']', 0, 0, 0 },
                { "\x9d"
                  "0;t\x9c",
                  "SsssP", 0, 0, 1, ']', 0, 0, 0 },
                { "\xc2\x9d"
                  "0;t\x1b\\",
                  "PSsssPF", '\\', 0, 0, 0, 0, 0, 0 },
                { "\x1bPq\x07\x18", "PSssP", 0, 0, 2, 'P', 0, 0, 0 },
                { "\x90q\x1b[c", "SsPCf", 'c', 0, 2, 0, 0, 0, 0 },
                { "\xc2\xa3\xc3\x9b"
                  "c",
                  "PTTCf", 'c', 0, 1, 0, 0, 0, 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                AjTtyEsc e = { 0 };
                char got[64];
                esc_events(&e, cases[i].text, got);
                cr_expect_str_eq(got, cases[i].events, "case %zu", i);
                cr_expect_eq(e.final, cases[i].final, "case %zu: final %#x", i, e.final);
                cr_expect_eq(e.marker, cases[i].marker, "case %zu", i);
                cr_expect_eq(e.intro, cases[i].intro, "case %zu: intro %u", i, e.intro);
                cr_expect_eq(e.kind, cases[i].kind, "case %zu", i);
                cr_expect_eq(e.params, cases[i].params, "case %zu: params %u", i, e.params);
                cr_expect_eq(e.privates, cases[i].privates, "case %zu", i);
                cr_expect_eq(e.colons, cases[i].colons, "case %zu", i);
        }
        /* Split across reads: the state carries the sequence, byte by byte as whole. */
        static const char *const whole[] = { "\x1b[?64;1c",
                                             "\xc2\x9d"
                                             "52;c;?\x07",
                                             "\x1bP1$r\x1b\\" };
        for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
                for (size_t cut = 0; cut <= strlen(whole[i]); cut++) {
                        char head[32], a[64], b[64], one[64];
                        snprintf(head, sizeof(head), "%.*s", (int)cut, whole[i]);
                        AjTtyEsc split = { 0 }, at_once = { 0 };
                        esc_events(&split, head, a);
                        esc_events(&split, whole[i] + cut, b);
                        esc_events(&at_once, whole[i], one);
                        strcat(a, b);
                        cr_expect_str_eq(a, one, "%zu cut at %zu", i, cut);
                        cr_expect(memcmp(&split, &at_once, sizeof(split)) == 0, "%zu cut at %zu", i, cut);
                }
}

/* An agent in the jail printed OSC 52 ; c ; ? and a terminal set to answer clipboard reads
 * (tmux's set-clipboard on) typed the operator's paste buffer into the jail. Now each such
 * read is taken out of the output (its introducer through the '?'), in each of its spellings,
 * and nothing else is. */
Test(tty, clipboard_read_matcher)
{
        static const struct {
                const char *text;
                size_t n, want; /* n: 0 for strlen; want: CLIP length, 0 none, SIZE_MAX more */
        } cases[] = {
                { "\x1b]52;c;?\x07", 0, 8 },
                { "\x1b]52;;?\x1b\\", 0, 7 },
                { "\x1b]052;c;?\x07", 0, 9 },
                { "\x9d"
                  "52;c;?",
                  0, 7 },
                { "\xc2\x9d"
                  "52;s0;?\xc2\x9c",
                  0, 9 },
                { "\x1b]52;cpqs01234567;?", 0, 19 },
                { "\x1b]52;c;?x", 0, 8 },
                { "\x1b]52;c;aGVsbG8=\x07", 0, 0 },
                { "\x1b]0;title\x07", 0, 0 },
                { "\x1b]520;c;?\x07", 0, 0 },
                { "\x1b]52;x;?\x07", 0, 0 },
                { "\x1b[31m", 0, 0 },
                { "\xc2\xa3", 0, 0 },
                { "plain", 0, 0 },
                { "\x1b]52;c", 0, SIZE_MAX },
                { "\x1b]52;c;", 0, SIZE_MAX },
                { "\x1b]5", 0, SIZE_MAX },
                { "\x1b", 0, SIZE_MAX },
                { "\xc2", 0, SIZE_MAX },
                { "\x1b]52;c\0;?", 10, 0 },
                /* Longer than any terminal needs: taken out as far as read (fail closed). */
                { "\x1b]000000052;c;?", 0, 10 },
                { "\x1b]52;ccccccccccccccccccccccccccccccccc;?", 0, 37 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t n = cases[i].n ? cases[i].n : strlen(cases[i].text);
                size_t got = aj_tty_clipboard_read_at((const unsigned char *)cases[i].text, n);
                cr_expect_eq(got, cases[i].want, "case %zu: %zu, want %zu", i, got, cases[i].want);
        }
}

Test(tty, clipboard_reads_are_not_relayed)
{
        int m, s, out[2];
        open_pty(&m, &s, true);
        make_pipe(out);
        Transcript tr = { .len = 0 };
        AjTtyRelay *t;
        cr_assert(aj_tty_relay_new(-1, out[1], m, record, &tr, &t) == 0);
        /* A read split across the jail's writes, a clipboard write, a read in 8-bit form. */
        static const char *const parts[] = { "a\x1b]5", "2;c;",
                                             "?\x07"
                                             "b\x1b]52;c;SGk=\x07",
                                             "\x9d"
                                             "52;p;?\x9c"
                                             "c" };
        static const char shown[] = "a\x07"
                                    "b\x1b]52;c;SGk=\x07\x9c"
                                    "c";
        char raw[256] = "";
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                strcat(raw, parts[i]);
                cr_assert(write(s, parts[i], strlen(parts[i])) == (ssize_t)strlen(parts[i]));
                cr_assert(aj_tty_relay_dispatch(t) == 0);
        }
        char buf[256] = { 0 };
        ssize_t got = read(out[0], buf, sizeof(buf) - 1);
        cr_assert_eq(got, (ssize_t)strlen(shown), "got %zd bytes", got);
        cr_expect(memcmp(buf, shown, strlen(shown)) == 0);
        cr_expect_eq(aj_tty_relay_clipboard_reads(t), 2u);
        /* The transcript keeps what the jail wrote. */
        cr_expect_eq(tr.len, strlen(raw));
        cr_expect(memcmp(tr.data, raw, strlen(raw)) == 0);
        /* The start of one the jail never finished is written when its side hangs up. */
        cr_assert(write(s, "\x1b]52;c", 6) == 6);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        cr_expect_eq(read(out[0], buf, sizeof(buf)), -1, "held until it is known");
        close(s);
        cr_assert(aj_tty_relay_dispatch(t) == 0);
        cr_expect_eq(read(out[0], buf, sizeof(buf)), 6);
        cr_assert(aj_tty_relay_output_done(t));
        aj_tty_relay_free(t);
        close(out[0]);
}
