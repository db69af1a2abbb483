/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A server of newline-delimited requests on a listening Unix stream socket, on an AjLoop:
 * the broker and the control socket. It owns what they share: accept with a connection
 * cap (and the peer's credentials), a per-connection input buffer of one maximal line,
 * an output queue with a cap and EPOLLOUT back-pressure, half-close and close. What a line
 * means, and every reply, is the owner's (its ops).
 *
 * A connection is closed when it fails, when its output would pass max_output (a peer that
 * does not read must not stall the loop or the others), or once its peer has shut down its
 * side and everything queued is sent, unless the owner holds it open (replies still due).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "util/loop.h"

typedef struct AjLineServer AjLineServer;
typedef struct AjLineConn AjLineConn;

typedef struct {
        size_t max_line;   /* bytes before the '\n' */
        size_t max_output; /* unsent bytes per connection */
        size_t max_connections;
        size_t accepts_per_wake; /* bounded, so a connection flood cannot hold the loop */
        /* A line longer than max_line: too_long() answers it; then either the rest of it is
         * dropped up to its newline and the connection goes on (true), or nothing more is
         * read and the connection is closed once the answer is sent (false). */
        bool discard_long_lines;
        /* While a reply is unsent, nothing more is read or handled from that connection, so
         * a client that does not read its replies only stalls itself and at most one reply
         * is queued. Otherwise every complete line read is handled and the replies queue. */
        bool one_reply_at_a_time;
        bool peer_credentials; /* read SO_PEERCRED for accept() */
} AjLineServerLimits;

typedef struct {
        /* A new connection, before the cap is checked. `cred` is NULL unless asked for, or
         * when it could not be read. < 0 refuses it (accept() has said why on fd). */
        int (*accept)(void *userdata, int fd, const struct ucred *cred);
        /* A connection that is not taken: err EBUSY (the cap) or ENOMEM. A last word on fd. */
        void (*refuse)(void *userdata, int fd, int err);
        /* One request line (len bytes, without the '\n', which still follows it in memory). */
        void (*line)(void *userdata, AjLineConn *c, const char *line, size_t len);
        void (*too_long)(void *userdata, AjLineConn *c);
        /* The connection is being closed (its queued output is dropped). */
        void (*closed)(void *userdata, AjLineConn *c);
} AjLineServerOps;

/* Creates a Unix stream socket bound at `path` (a stale socket there is replaced, any other
 * file is -EEXIST), mode 0600 from the start, owned by uid/gid (-1: unchanged), listening. */
int aj_line_server_listen(const char *path, uid_t uid, gid_t gid, int backlog, int *ret_fd);

/* Serves listen_fd (taken, also on failure) on `loop`. `ops` is copied. */
int aj_line_server_new(AjLoop *loop, int listen_fd, const AjLineServerLimits *limits, const AjLineServerOps *ops,
                       void *userdata, AjLineServer **ret);
/* Closes every connection (closed() for each) and the listening socket. Accepts NULL. */
void aj_line_server_free(AjLineServer *s);
size_t aj_line_server_connections(const AjLineServer *s);
/* The bytes searched for a newline so far: each byte read once (a test's count). */
uint64_t aj_line_server_bytes_scanned(const AjLineServer *s);
/* The first failure to accept (other than EAGAIN, EINTR, ECONNABORTED) since the last call,
 * as -errno, then cleared; 0 if none. */
int aj_line_server_take_error(AjLineServer *s);
/* The connections, newest first. */
AjLineConn *aj_line_server_first(AjLineServer *s);
AjLineConn *aj_line_conn_next(AjLineConn *c);

uid_t aj_line_conn_uid(const AjLineConn *c);
/* Queues one reply line ('\n' appended). Past max_output, or without memory, the connection
 * is marked dead and closed. Nothing is sent until aj_line_conn_flush() or the end of the
 * connection's turn. */
void aj_line_conn_queue(AjLineConn *c, const char *line, size_t len);
/* Marks the connection to be closed at the end of its turn or at aj_line_conn_flush(). */
void aj_line_conn_kill(AjLineConn *c);
bool aj_line_conn_dead(const AjLineConn *c);
/* Replies still due (held): +1 or -1. A held connection stays open after its peer's EOF. */
void aj_line_conn_hold(AjLineConn *c, int delta);
size_t aj_line_conn_held(const AjLineConn *c);
/* Group commit: while corked, replies queue and nothing is sent; uncork(send = true) sends
 * what every connection has queued (its turn's writes, after the owner has recorded what
 * they depend on), uncork(send = false) drops what was queued since the cork and closes
 * those connections (what the replies depended on could not be recorded). For servers
 * that answer without one_reply_at_a_time. */
void aj_line_server_cork(AjLineServer *s);
void aj_line_server_uncork(AjLineServer *s, bool send);
bool aj_line_server_corked(const AjLineServer *s);
/* Sends what is queued now, for a reply made outside the connection's own turn (a timer, an
 * operator's decision); closes the connection if that finished it: `c` may be gone after. */
void aj_line_conn_flush(AjLineConn *c);
