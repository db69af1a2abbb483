/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tty.h"
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

/* > 0 bytes written, 0 nothing now, -1 the reader is gone. */
static ssize_t drain(int fd, Buf *b)
{
        if (b->len == 0)
                return 0;
        ssize_t n;
        do
                n = write(fd, b->data + b->off, b->len);
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
                        if (n < 0)
                                t->master_eof = true;
                        else if (n > 0) {
                                progress = true;
                                /* The new bytes end the buffer (fill() may have moved it). */
                                Buf *b = &t->from_jail;
                                if (t->on_output)
                                        t->on_output(t->userdata, b->data + b->off + b->len - (size_t)n, (size_t)n);
                        }
                }
                if (t->out_broken)
                        t->from_jail.len = 0; /* the operator went away: keep the transcript only */
                else if (t->from_jail.len > 0) {
                        ssize_t n = drain(t->out.fd, &t->from_jail);
                        if (n < 0) {
                                t->out_broken = true;
                                t->from_jail.len = 0;
                        }
                        progress |= n != 0;
                }
                /* The operator's input; none is taken once the jail's side has hung up
                 * (what is typed then is for the operator's shell). */
                if (!t->in_eof && !t->master_eof) {
                        ssize_t n = fill(t->in.fd, &t->to_jail);
                        if (n < 0)
                                t->in_eof = true;
                        progress |= n != 0;
                }
                if (t->master_eof)
                        t->to_jail.len = 0;
                else if (t->to_jail.len > 0) {
                        ssize_t n = drain(t->master.fd, &t->to_jail);
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

void aj_tty_relay_buffered(const AjTtyRelay *t, size_t *ret_in, size_t *ret_out)
{
        *ret_in = t->to_jail.len;
        *ret_out = t->from_jail.len;
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
