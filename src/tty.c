/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tty.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

/* Rounds of reads and writes per dispatch: a jail that writes without pause to a fast
 * terminal must not keep the supervisor from its other sources. */
#define RELAY_ROUNDS 8

void aj_tty_make_raw(struct termios *t)
{
        t->c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
        t->c_oflag &= ~(tcflag_t)OPOST;
        t->c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        t->c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
        t->c_cflag |= CS8;
        t->c_cc[VMIN] = 1;
        t->c_cc[VTIME] = 0;
}

int aj_tty_enter_raw(int fd, const struct termios *saved)
{
        struct termios raw = *saved;
        aj_tty_make_raw(&raw);
        return tcsetattr(fd, TCSANOW, &raw) < 0 ? -errno : 0;
}

int aj_tty_restore(int fd, const struct termios *saved) { return aj_tty_restore_for(fd, saved, getpgrp()); }

int aj_tty_restore_for(int fd, const struct termios *saved, pid_t pgrp)
{
        /* A shell that took the terminal back (we were stopped, or killed) restores its own
         * settings and may already have set its line editor's: never undo those. */
        pid_t fg = tcgetpgrp(fd);
        if (fg > 0 && fg != pgrp)
                return -EPERM;
        sigset_t ttou, old;
        sigemptyset(&ttou);
        sigaddset(&ttou, SIGTTOU);
        sigprocmask(SIG_BLOCK, &ttou, &old);
        /* TCSANOW, then the input queue dropped: TCSAFLUSH's drain would wait for a terminal
         * the operator stopped (^S), but the input left is no one's to keep: a terminal's
         * answer to a query the agent printed before it exited (a title report, DECRQSS)
         * would otherwise be read by the operator's shell as typed. */
        int r = tcsetattr(fd, TCSANOW, saved) < 0 ? -errno : 0;
        if (r == 0 && tcflush(fd, TCIFLUSH) < 0)
                r = -errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

int aj_tty_copy_winsize(int from, int to)
{
        struct winsize ws;
        if (ioctl(from, TIOCGWINSZ, &ws) < 0)
                return -errno;
        if (ws.ws_row == 0 && ws.ws_col == 0)
                return 0;
        return ioctl(to, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

int aj_tty_reopen_nonblock(int fd, int acc, int *ret_fd, int *ret_restore_flags)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        int restore = -1, nfd = -1;
        if (!S_ISREG(st.st_mode) && !S_ISSOCK(st.st_mode)) {
                char path[64];
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                nfd = open(path, acc | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        }
        if (nfd < 0) {
                nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (nfd < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode)) {
                        int flags = fcntl(nfd, F_GETFL);
                        if (flags >= 0 && !(flags & O_NONBLOCK) && fcntl(nfd, F_SETFL, flags | O_NONBLOCK) == 0)
                                restore = flags;
                }
        }
        *ret_fd = nfd;
        *ret_restore_flags = restore;
        return 0;
}

/* ---- the relay ------------------------------------------------------------------- */

typedef struct {
        char data[AJ_TTY_BUF_SIZE];
        size_t off, len;
} Buf;

typedef struct {
        int fd;
        bool pollable; /* epoll accepts it; otherwise it is always ready (a regular file) */
        uint32_t mask; /* events currently registered, 0: not in the epoll set */
} End;

struct AjTtyRelay {
        int epfd;
        End in, out, master;
        bool in_eof, master_eof, out_broken, veof_sent;
        bool shown; /* some of the jail's output reached `out` */
        /* DA1 queries in what reached `out`, answers in what came from `in` (the fence's
         * count), and where each scan is in a sequence. */
        unsigned da1_asked, da1_answered;
        AjTtyEsc asked_state, answered_state;
        /* Clipboard reads taken out of the jail's output (clipboard_read()), and the bytes
         * at the end of from_jail that may still begin one: not written until decided. */
        unsigned clipboard_reads;
        size_t held;
        Buf to_jail, from_jail;
        AjTtyOutputFn on_output;
        void *userdata;
};

static bool end_pollable(int epfd, int fd)
{
        struct epoll_event ev = { .events = 0 };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return false;
        (void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
        return true;
}

static int end_want(AjTtyRelay *t, End *e, uint32_t want)
{
        if (e->fd < 0 || !e->pollable || e->mask == want)
                return 0;
        struct epoll_event ev = { .events = want, .data.fd = e->fd };
        int op = e->mask == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
        if (epoll_ctl(t->epfd, op, e->fd, &ev) < 0)
                return -errno;
        e->mask = want;
        return 0;
}

static size_t buf_space(Buf *b)
{
        if (b->len == 0)
                b->off = 0;
        else if (b->off > 0 && b->off + b->len == sizeof(b->data)) {
                memmove(b->data, b->data + b->off, b->len);
                b->off = 0;
        }
        return sizeof(b->data) - b->off - b->len;
}

enum { ESC_GROUND, ESC_ESC, ESC_LEAD, ESC_CSI, ESC_STRING };

/* A new sequence from `c` when it begins one (ESC, the C1 introducers), in any state. */
static bool esc_begin(AjTtyEsc *e, unsigned char c, AjTtyEscEvent *ret)
{
        bool lead = e->state == ESC_LEAD;
        unsigned char kind = c == 0x9d ? ']' : c == 0x90 ? 'P' : 0;
        if (c == 0x1b) {
                e->state = ESC_ESC;
                *ret = AJ_TTY_ESC_PART;
        } else if (c == 0x9b) {
                *e = (AjTtyEsc){ .state = ESC_CSI, .intro = lead ? 2 : 1 };
                *ret = AJ_TTY_ESC_CSI;
        } else if (kind) {
                *e = (AjTtyEsc){ .state = ESC_STRING, .kind = kind, .intro = lead ? 2 : 1 };
                *ret = AJ_TTY_ESC_STRING;
        } else
                return false;
        return true;
}

AjTtyEscEvent aj_tty_esc_feed(AjTtyEsc *e, unsigned char c)
{
        AjTtyEscEvent ev;
        if (esc_begin(e, c, &ev))
                return ev;
        switch (e->state) {
        case ESC_ESC:
                if (c == '[') {
                        *e = (AjTtyEsc){ .state = ESC_CSI, .intro = 2 };
                        return AJ_TTY_ESC_CSI;
                }
                if (c == ']' || c == 'P') {
                        *e = (AjTtyEsc){ .state = ESC_STRING, .kind = c, .intro = 2 };
                        return AJ_TTY_ESC_STRING;
                }
                *e = (AjTtyEsc){ .state = ESC_GROUND, .final = c };
                return AJ_TTY_ESC_FINAL;
        case ESC_CSI:
                if (c >= '0' && c <= '?') {
                        if (c >= '<') {
                                e->marker = e->params == 0 ? c : e->marker;
                                e->privates++;
                        }
                        e->colons += c == ':';
                        e->params++;
                        return AJ_TTY_ESC_CSI_PARAM;
                }
                e->state = ESC_GROUND;
                e->final = c;
                return AJ_TTY_ESC_CSI_FINAL;
        case ESC_STRING:
                if (c == 0x9c || c == 0x18 || c == 0x1a || (c == 0x07 && e->kind == ']')) {
                        e->state = ESC_GROUND;
                        return AJ_TTY_ESC_PART;
                }
                return AJ_TTY_ESC_STRING_BYTE;
        default:
                e->state = c == 0xc2 ? ESC_LEAD : ESC_GROUND;
                return c == 0xc2 ? AJ_TTY_ESC_PART : AJ_TTY_ESC_TEXT;
        }
}

/* A query a terminal may answer with DA1, counted generously (a count too high only makes
 * the fence wait for its timeout): CSI [params] c without a private marker, in any form,
 * and DECID (ESC Z). */
static bool da1_query(const AjTtyEsc *e, AjTtyEscEvent ev)
{
        return (ev == AJ_TTY_ESC_CSI_FINAL && e->final == 'c' && e->privates == 0) ||
               (ev == AJ_TTY_ESC_FINAL && e->final == 'Z');
}

/* A terminal's answer to DA1: CSI ? Ps;... c (in 8-bit form from a terminal set to 8-bit
 * controls, S8C1T). */
static bool da1_answer(const AjTtyEsc *e, AjTtyEscEvent ev)
{
        return ev == AJ_TTY_ESC_CSI_FINAL && e->final == 'c' && e->marker == '?' && e->privates == 1 && e->colons == 0;
}

static unsigned scan(bool (*is)(const AjTtyEsc *, AjTtyEscEvent), AjTtyEsc *e, const char *buf, size_t n)
{
        unsigned found = 0;
        for (size_t i = 0; i < n; i++)
                found += is(e, aj_tty_esc_feed(e, (unsigned char)buf[i]));
        return found;
}

/*
 * A clipboard read the jail's output asks the terminal for: OSC 52 ; Pc ; ? (xterm's
 * "manipulate selection data", the selection's text answered as base64, typed into the
 * jail). A terminal set to answer it (tmux's set-clipboard on, xterm's GetSelection
 * allowed) hands the agent what the operator last copied. Matched at `p` (`n` bytes): OSC as
 * ESC ], as the C1 byte and as U+009D in UTF-8; the command number with leading zeros
 * (xterm and tmux read it as a number); a selection list of c, p, q, s, 0 to 7; the data
 * beginning with '?'. Returns the length through that '?' (the part taken out: without its
 * introducer, what follows is text), CLIP_NOT when `p` does not begin one, CLIP_MORE when
 * the bytes end before that is known. Fail closed: a number or a selection list longer than
 * any terminal needs is taken out the same way, up to where it was cut.
 */
#define CLIP_NOT 0
#define CLIP_MORE ((size_t)-1)
#define CLIP_MAX_DIGITS 8
#define CLIP_MAX_SELECTIONS 32

size_t aj_tty_clipboard_read_at(const unsigned char *p, size_t n)
{
        if (n == 0)
                return CLIP_MORE;
        /* Its introducer, one token from p[0]: not ESC 0x9d, whose OSC is the second byte's. */
        AjTtyEsc e = { 0 };
        AjTtyEscEvent ev = aj_tty_esc_feed(&e, p[0]);
        size_t i = 1;
        if (ev == AJ_TTY_ESC_PART) {
                if (n < 2)
                        return CLIP_MORE;
                ev = aj_tty_esc_feed(&e, p[1]);
                i = 2;
        }
        if (ev != AJ_TTY_ESC_STRING || e.kind != ']' || e.intro != i)
                return CLIP_NOT;
        unsigned long cmd = 0;
        size_t digits = 0;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
                if (digits == CLIP_MAX_DIGITS)
                        return i;
                cmd = cmd * 10 + (unsigned long)(p[i] - '0');
        }
        if (i == n)
                return CLIP_MORE;
        if (digits == 0 || cmd != 52 || p[i] != ';')
                return CLIP_NOT;
        size_t sel = 0;
        for (i++; i < n && p[i] != ';'; i++, sel++)
                if (sel == CLIP_MAX_SELECTIONS)
                        return i;
                else if (!strchr("cpqs01234567", p[i]) || p[i] == 0)
                        return CLIP_NOT;
        if (i + 1 >= n)
                return CLIP_MORE;
        return p[i + 1] == '?' ? i + 2 : CLIP_NOT;
}

/* Takes the clipboard reads out of the jail's output not yet written: the `fresh` bytes just
 * read and those held from before, at the buffer's end. What may still begin one is held. */
static void filter_clipboard_reads(AjTtyRelay *t, size_t fresh)
{
        Buf *b = &t->from_jail;
        unsigned char *data = (unsigned char *)b->data + b->off;
        size_t end = b->len, i = end - fresh - t->held;
        t->held = 0;
        while (i < end) {
                if (data[i] != 0x1b && data[i] != 0x9d && data[i] != 0xc2) {
                        i++;
                        continue;
                }
                size_t m = aj_tty_clipboard_read_at(data + i, end - i);
                if (m == CLIP_MORE) {
                        t->held = end - i;
                        return;
                }
                if (m == CLIP_NOT) {
                        i++;
                        continue;
                }
                memmove(data + i, data + i + m, end - i - m);
                end -= m;
                b->len -= m;
                t->clipboard_reads++;
        }
}

/* > 0 bytes read, 0 nothing now, -1 end of input (EOF, EIO: the other side hung up). */
static ssize_t fill(int fd, Buf *b)
{
        size_t space = buf_space(b);
        if (space == 0)
                return 0;
        ssize_t n;
        do
                n = read(fd, b->data + b->off + b->len, space);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        if (n == 0)
                return -1;
        b->len += (size_t)n;
        return n;
}

/* > 0 bytes written (of the first `len`), 0 nothing now, -1 the reader is gone. */
static ssize_t drain(int fd, Buf *b, size_t len)
{
        if (len == 0)
                return 0;
        ssize_t n;
        do
                n = write(fd, b->data + b->off, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        b->off += (size_t)n;
        b->len -= (size_t)n;
        return n;
}

int aj_tty_relay_new(int in_fd, int out_fd, int master_fd, AjTtyOutputFn on_output, void *userdata, AjTtyRelay **ret)
{
        AjTtyRelay *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->in.fd = in_fd;
        t->out.fd = out_fd;
        t->master.fd = master_fd;
        t->on_output = on_output;
        t->userdata = userdata;
        t->in_eof = in_fd < 0;
        t->veof_sent = in_fd < 0; /* no input at all is not an end of input to report */
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        int r = t->epfd < 0 ? -errno : aj_fd_set_nonblock(master_fd, true);
        if (r < 0) {
                aj_tty_relay_free(t);
                return r;
        }
        t->in.pollable = in_fd >= 0 && end_pollable(t->epfd, in_fd);
        t->out.pollable = end_pollable(t->epfd, out_fd);
        t->master.pollable = true;
        *ret = t;
        return 0;
}

int aj_tty_relay_fd(const AjTtyRelay *t) { return t->epfd; }
int aj_tty_relay_master(const AjTtyRelay *t) { return t->master.fd; }

/* The input ended: the jail sees an end of file, as at a terminal (^D), when its line
 * discipline is canonical; a full-screen program in raw mode just gets no more input. */
static void send_veof(AjTtyRelay *t)
{
        t->veof_sent = true;
        struct termios tio;
        if (tcgetattr(t->master.fd, &tio) < 0 || !(tio.c_lflag & ICANON))
                return;
        char c = (char)tio.c_cc[VEOF];
        (void)!write(t->master.fd, &c, 1);
}

int aj_tty_relay_dispatch(AjTtyRelay *t)
{
        for (int round = 0; round < RELAY_ROUNDS; round++) {
                bool progress = false;
                /* The jail's output: to the transcript as read, to the operator as it drains. */
                if (!t->master_eof) {
                        ssize_t n = fill(t->master.fd, &t->from_jail);
                        if (n < 0) {
                                /* What was held cannot become a clipboard read any more (and
                                 * the fence ends a sequence left open). */
                                t->master_eof = true;
                                t->held = 0;
                        } else if (n > 0) {
                                progress = true;
                                /* The new bytes end the buffer (fill() may have moved it). */
                                Buf *b = &t->from_jail;
                                if (t->on_output)
                                        t->on_output(t->userdata, b->data + b->off + b->len - (size_t)n, (size_t)n);
                                filter_clipboard_reads(t, (size_t)n);
                        }
                }
                if (t->out_broken)
                        t->from_jail.len = t->held = 0; /* the operator went away: keep the transcript only */
                else if (t->from_jail.len > t->held) {
                        ssize_t n = drain(t->out.fd, &t->from_jail, t->from_jail.len - t->held);
                        if (n < 0) {
                                t->out_broken = true;
                                t->from_jail.len = 0;
                        } else if (n > 0) {
                                t->shown = true;
                                t->da1_asked += scan(da1_query, &t->asked_state,
                                                     t->from_jail.data + t->from_jail.off - (size_t)n, (size_t)n);
                        }
                        progress |= n != 0;
                }
                /* The operator's input; none is taken once the jail's side has hung up
                 * (what is typed then is for the operator's shell). */
                if (!t->in_eof && !t->master_eof) {
                        ssize_t n = fill(t->in.fd, &t->to_jail);
                        if (n < 0)
                                t->in_eof = true;
                        else if (n > 0)
                                t->da1_answered += scan(da1_answer, &t->answered_state,
                                                        t->to_jail.data + t->to_jail.off + t->to_jail.len - (size_t)n,
                                                        (size_t)n);
                        progress |= n != 0;
                }
                if (t->master_eof)
                        t->to_jail.len = 0;
                else if (t->to_jail.len > 0) {
                        ssize_t n = drain(t->master.fd, &t->to_jail, t->to_jail.len);
                        if (n < 0)
                                t->to_jail.len = 0;
                        progress |= n != 0;
                }
                if (t->in_eof && t->to_jail.len == 0 && !t->veof_sent && !t->master_eof)
                        send_veof(t);
                if (!progress)
                        break;
        }

        int r;
        uint32_t master = 0;
        if (!t->master_eof) {
                if (t->from_jail.len < sizeof(t->from_jail.data))
                        master |= EPOLLIN;
                if (t->to_jail.len > 0)
                        master |= EPOLLOUT;
        }
        bool in_room = t->to_jail.len < sizeof(t->to_jail.data);
        if ((r = end_want(t, &t->master, master)) < 0 ||
            (r = end_want(t, &t->in, !t->in_eof && !t->master_eof && in_room ? EPOLLIN : 0)) < 0 ||
            (r = end_want(t, &t->out, !t->out_broken && t->from_jail.len > 0 ? EPOLLOUT : 0)) < 0)
                return r;
        return 0;
}

bool aj_tty_relay_output_done(const AjTtyRelay *t) { return t->master_eof && (t->from_jail.len == 0 || t->out_broken); }

unsigned aj_tty_relay_clipboard_reads(const AjTtyRelay *t) { return t->clipboard_reads; }

void aj_tty_relay_buffered(const AjTtyRelay *t, size_t *ret_in, size_t *ret_out)
{
        *ret_in = t->to_jail.len;
        *ret_out = t->from_jail.len;
}

static bool same_terminal(int a, int b)
{
        struct stat sa, sb;
        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && S_ISCHR(sa.st_mode) && S_ISCHR(sb.st_mode) &&
               sa.st_rdev == sb.st_rdev && isatty(a);
}

/* Until `deadline`: a wait for `events` on `fd`, > 0 when ready, 0 when not yet (call
 * again), -ETIMEDOUT past it. */
static int wait_until(int fd, short events, uint64_t deadline)
{
        uint64_t now = aj_now_monotonic_ns();
        if (now >= deadline)
                return -ETIMEDOUT;
        struct pollfd pfd = { .fd = fd, .events = events };
        int n = poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
        return n < 0 ? (errno == EINTR ? 0 : -errno) : n;
}

/* All of `text` to the non-blocking `fd` by `deadline`. */
static int write_until(int fd, const char *text, size_t len, uint64_t deadline)
{
        while (len > 0) {
                ssize_t n = write(fd, text, len);
                if (n > 0) {
                        text += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                int r = wait_until(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* What a jail's output may leave set that would hide or garble what is printed after it
 * (agentjail's warnings, the shell's prompt): a control string left open (DCS, OSC: it
 * swallowed everything after) ended by CAN and by ST (tmux's DCS takes CAN as data), then
 * the rendition (concealed, black on black) and the character sets (line drawing in place
 * of letters). */
static const char reset[] = "\x18\x1b\\\x1b[0m\x1b(B\x1b)B\x0f";

/* Is fd a terminal whose foreground is this process group's (or nobody's)? */
static bool terminal_ours(int fd)
{
        if (!isatty(fd))
                return false;
        pid_t fg = tcgetpgrp(fd);
        return fg <= 0 || fg == getpgrp(); /* else the shell has the terminal: its input is its own */
}

const char *aj_tty_reset_text(void) { return reset; }

int aj_tty_reset_rendition(int fd, int timeout_ms)
{
        if (fd < 0 || !terminal_ours(fd))
                return 0;
        return write_until(fd, reset, sizeof(reset) - 1, aj_now_monotonic_ns() + (uint64_t)timeout_ms * 1000000u);
}

int aj_tty_relay_fence(AjTtyRelay *t, int timeout_ms)
{
        if (!t->shown || t->out_broken || t->from_jail.len > 0 || !terminal_ours(t->out.fd))
                return 0;
        static const char query[] = "\x1b[c";
        bool fence = t->in.fd >= 0 && !t->in_eof && same_terminal(t->in.fd, t->out.fd);
        char text[sizeof(reset) + sizeof(query)];
        size_t len = (size_t)snprintf(text, sizeof(text), "%s%s", reset, fence ? query : "");
        /* The terminal may not have read the jail's last bytes yet: the text waits for room. */
        uint64_t deadline = aj_now_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
        int r = write_until(t->out.fd, text, len, deadline);
        if (r < 0 || !fence)
                return r;
        /* A terminal answers in the order it was asked: once the answer to our query is in,
         * so is every answer to the jail's. Ours is the DA1 answer after one to each DA1
         * query of the jail's not answered yet. */
        unsigned want = t->da1_asked + 1;
        while (t->da1_answered < want) {
                int n = wait_until(t->in.fd, POLLIN, deadline);
                if (n < 0)
                        return n;
                if (n == 0)
                        continue;
                char buf[512];
                ssize_t got = read(t->in.fd, buf, sizeof(buf));
                if (got == 0)
                        return -EIO; /* hung up: no shell will read it either */
                if (got < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (got > 0)
                        t->da1_answered += scan(da1_answer, &t->answered_state, buf, (size_t)got);
        }
        return 0;
}

void aj_tty_relay_free(AjTtyRelay *t)
{
        if (!t)
                return;
        int fds[] = { t->epfd, t->in.fd, t->out.fd, t->master.fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        free(t);
}
