/* SPDX-License-Identifier: Apache-2.0 */
/* The services' line server (see line-server.h). Level-triggered, on the owner's AjLoop. */
#include "line-server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/macros.h"
#include "util/outbuf.h"

struct AjLineConn {
        AjLineServer *s;
        AjLineConn *prev, *next;
        int fd;
        AjLoopIo *io;
        uid_t uid;
        size_t held;
        bool discarding; /* inside an overlong line: drop up to the next newline */
        bool eof;        /* the peer shut down its side: flush, then close */
        bool closing;    /* read nothing more: close once the output is sent */
        bool dead;       /* close now, or at the end of its turn */
        bool in_turn;    /* in its own callback: closing waits for the end of it */
        AjOutBuf out;
        size_t committed; /* corked: out's bytes queued before the cork (sent either way) */
        size_t in_len;
        size_t scanned; /* in[0..scanned) has no newline: a line read in pieces is searched once */
        char in[];      /* max_line + 1: a maximal line and its newline */
};

struct AjLineServer {
        AjLoop *loop;
        int listen_fd;
        AjLoopIo *listen_io;
        AjLineServerLimits lim;
        AjLineServerOps ops;
        void *userdata;
        AjLineConn *conns;
        size_t n_conns;
        int error;
        bool corked;      /* replies wait for aj_line_server_uncork() */
        uint64_t scanned; /* bytes searched for a newline, for the tests */
};

int aj_line_server_listen(const char *path, uid_t uid, gid_t gid, int backlog, int *ret_fd)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        /* A supervisor that died uncleanly leaves its socket; anything else is not ours. */
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                if (unlink(path) < 0)
                        return -errno;
        }
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* The umask makes bind() create the node 0600 at once: no window with looser bits.
         * The supervisor is single-threaded, so the process-wide umask change is not raced. */
        mode_t old = umask(0177);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return -errno;
        if (((uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(path, uid, gid) < 0) || listen(fd, backlog) < 0) {
                r = -errno;
                unlink(path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- connections ---- */

static void conn_free(AjLineConn *c)
{
        AjLineServer *s = c->s;
        if (s->ops.closed)
                s->ops.closed(s->userdata, c);
        aj_loop_io_remove(c->io);
        close(c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        aj_outbuf_clear(&c->out);
        free(c);
}

static void conn_send(AjLineConn *c)
{
        if (aj_outbuf_send(&c->out, c->fd, NULL) < 0)
                c->dead = true; /* EPIPE, ECONNRESET: the peer is gone */
}

/* After a turn or a reply from outside one: close it if it is finished, else watch what
 * it waits for (EPOLLOUT only while output is pending: back-pressure). */
static void conn_settle(AjLineConn *c)
{
        if (c->s->corked && !c->dead)
                return; /* aj_line_server_uncork() settles every connection */
        bool pending = aj_outbuf_pending(&c->out) > 0;
        if (!c->dead && !pending && (c->eof || c->closing) && c->held == 0)
                c->dead = true;
        if (!c->dead) {
                bool reading = !c->eof && !c->closing && !(c->s->lim.one_reply_at_a_time && pending);
                if (aj_loop_io_set_events(c->io, (reading ? EPOLLIN : 0) | (pending ? EPOLLOUT : 0)) < 0)
                        c->dead = true;
        }
        if (c->dead && !c->in_turn)
                conn_free(c);
}

/* Handles the complete lines in the input buffer (one at a time: until a reply is left
 * unsent), then deals with a line too long for it. */
static void conn_process(AjLineConn *c)
{
        AjLineServer *s = c->s;
        bool one = s->lim.one_reply_at_a_time, no_newline = false;
        size_t start = 0, from = c->scanned, cap = s->lim.max_line + 1;
        while (!c->dead && !(one && aj_outbuf_pending(&c->out) > 0)) {
                /* A partial line's bytes searched before are not searched again (nor moved,
                 * below): a maximal line sent a byte at a time would cost the square of its
                 * length. */
                size_t at = start > from ? start : from;
                char *nl = memchr(c->in + at, '\n', c->in_len - at);
                s->scanned += (nl ? (size_t)(nl - c->in) + 1 : c->in_len) - at;
                if (!nl) {
                        from = c->in_len;
                        no_newline = true;
                        break;
                }
                size_t len = (size_t)(nl - (c->in + start));
                if (c->discarding)
                        c->discarding = false; /* the end of an overlong line */
                else
                        s->ops.line(s->userdata, c, c->in + start, len);
                start += len + 1;
                if (one && !c->dead)
                        conn_send(c);
        }
        if (start > 0) /* a partial line stays where it is */
                memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        c->scanned = from > start ? from - start : 0;
        if (c->in_len < cap || (!s->lim.discard_long_lines && !no_newline))
                return;
        /* No newline within a maximal line: answered once. */
        if (!s->lim.discard_long_lines)
                c->closing = true;
        else if (c->discarding)
                goto drop;
        s->ops.too_long(s->userdata, c);
        c->discarding = s->lim.discard_long_lines;
drop:
        c->in_len = 0;
        c->scanned = 0;
}

static void conn_read(AjLineConn *c)
{
        size_t cap = c->s->lim.max_line + 1;
        if (c->in_len >= cap)
                return;
        ssize_t n = read(c->fd, c->in + c->in_len, cap - c->in_len);
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        c->dead = true;
                return;
        }
        if (n == 0) {
                c->eof = true; /* a last line without its newline is not a request */
                return;
        }
        c->in_len += (size_t)n;
        conn_process(c);
}

static void conn_event(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io;
        (void)fd;
        AjLineConn *c = userdata;
        bool one = c->s->lim.one_reply_at_a_time;

        c->in_turn = true;
        if (one && aj_outbuf_pending(&c->out) > 0) {
                conn_send(c);
                /* Lines read before the reply blocked are still waiting. */
                if (!c->dead && aj_outbuf_pending(&c->out) == 0 && !c->closing)
                        conn_process(c);
        } else if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                conn_read(c);
        }
        /* Gone both ways: even a connection held for replies can get no answer. */
        if ((revents & (EPOLLHUP | EPOLLERR)) && c->eof)
                c->dead = true;
        if (!one && !c->dead && !c->s->corked && aj_outbuf_pending(&c->out) > 0)
                conn_send(c);
        c->in_turn = false;
        conn_settle(c);
}

static void accept_one(AjLineServer *s, int fd)
{
        struct ucred cred;
        const struct ucred *peer = NULL;
        if (s->lim.peer_credentials) {
                socklen_t len = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred))
                        peer = &cred;
        }
        if (s->ops.accept && s->ops.accept(s->userdata, fd, peer) < 0)
                goto refused;
        if (s->n_conns >= s->lim.max_connections) {
                if (s->ops.refuse)
                        s->ops.refuse(s->userdata, fd, EBUSY);
                goto refused;
        }
        AjLineConn *c = calloc(1, sizeof(*c) + s->lim.max_line + 1);
        if (!c) {
                if (s->ops.refuse)
                        s->ops.refuse(s->userdata, fd, ENOMEM);
                goto refused;
        }
        *c = (AjLineConn){ .s = s, .fd = fd, .uid = peer ? peer->uid : (uid_t)-1 };
        if (aj_loop_add_io(s->loop, fd, EPOLLIN, conn_event, c, &c->io) < 0) {
                free(c);
                goto refused;
        }
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        return;
refused:
        close(fd);
}

static void on_listener(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io;
        (void)revents;
        AjLineServer *s = userdata;
        for (size_t i = 0; i < s->lim.accepts_per_wake; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue; /* a connection that died before we got to it */
                        if (errno != EAGAIN && s->error == 0)
                                s->error = -errno;
                        return;
                }
                accept_one(s, cfd);
        }
}

/* ---- the server ---- */

int aj_line_server_new(AjLoop *loop, int listen_fd, const AjLineServerLimits *limits, const AjLineServerOps *ops,
                       void *userdata, AjLineServer **ret)
{
        AjLineServer *s = calloc(1, sizeof(*s));
        if (!s) {
                close(listen_fd);
                return -ENOMEM;
        }
        *s = (AjLineServer){ .loop = loop, .listen_fd = listen_fd, .lim = *limits, .ops = *ops, .userdata = userdata };
        int r = aj_loop_add_io(loop, listen_fd, EPOLLIN, on_listener, s, &s->listen_io);
        if (r < 0) {
                aj_line_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void aj_line_server_free(AjLineServer *s)
{
        if (!s)
                return;
        while (s->conns)
                conn_free(s->conns);
        aj_loop_io_remove(s->listen_io);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        free(s);
}

size_t aj_line_server_connections(const AjLineServer *s) { return s->n_conns; }

uint64_t aj_line_server_bytes_scanned(const AjLineServer *s) { return s->scanned; }

int aj_line_server_take_error(AjLineServer *s)
{
        int r = s->error;
        s->error = 0;
        return r;
}

AjLineConn *aj_line_server_first(AjLineServer *s) { return s->conns; }

AjLineConn *aj_line_conn_next(AjLineConn *c) { return c->next; }

uid_t aj_line_conn_uid(const AjLineConn *c) { return c->uid; }

void aj_line_conn_queue(AjLineConn *c, const char *line, size_t len)
{
        if (!c->dead && aj_outbuf_add(&c->out, line, len, true, c->s->lim.max_output) < 0)
                c->dead = true; /* past max_output: the peer is not reading */
}

void aj_line_conn_kill(AjLineConn *c) { c->dead = true; }

bool aj_line_conn_dead(const AjLineConn *c) { return c->dead; }

void aj_line_conn_hold(AjLineConn *c, int delta) { c->held += (size_t)(ssize_t)delta; }

size_t aj_line_conn_held(const AjLineConn *c) { return c->held; }

void aj_line_conn_flush(AjLineConn *c)
{
        if (c->s->corked)
                return; /* sent (or dropped) at the uncork */
        if (!c->dead && aj_outbuf_pending(&c->out) > 0)
                conn_send(c);
        conn_settle(c);
}

void aj_line_server_cork(AjLineServer *s)
{
        s->corked = true;
        for (AjLineConn *c = s->conns; c; c = c->next)
                c->committed = aj_outbuf_pending(&c->out);
}

void aj_line_server_uncork(AjLineServer *s, bool send)
{
        s->corked = false;
        for (AjLineConn *c = s->conns, *next; c; c = next) {
                next = c->next;
                size_t pending = aj_outbuf_pending(&c->out);
                if (!send && pending > c->committed) {
                        /* Replies on the strength of what was not recorded: never sent. */
                        aj_outbuf_truncate(&c->out, c->committed);
                        c->dead = true;
                }
                if (!c->dead && pending > 0)
                        conn_send(c);
                conn_settle(c);
        }
}

bool aj_line_server_corked(const AjLineServer *s) { return s->corked; }
