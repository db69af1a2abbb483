/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp`'s relay, shared between its parts: cli/mcp.c (the command, the server
 * process and its signals, the loop), cli/mcp-streams.c (the line streams on the client's
 * and the server's pipes), cli/mcp-messages.c (each line from the client or the server,
 * the pending table), cli/mcp-broker.c (the broker connection and its replies).
 *
 * One thread, one AjLoop: the client's stdin and stdout, the server's pipes, the broker
 * socket, a signalfd. A call held for approval waits in the pending table while other
 * messages keep flowing. Everything is bounded: a line is at most AJ_MCP_MAX_LINE; a
 * side whose output queue holds a line's worth is not read from until it drains (so a
 * queue holds at most about two lines); at most MAX_PENDING requests are tracked, and a
 * tracked tools/call is small (the broker takes its arguments, at most
 * AJ_BROKER_MAX_LINE bytes); at most MAX_CHECKS_OUT of a listing's checks await the
 * broker's replies (the broker's own queue for us is bounded: it would hang up).
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "agentjail/broker.h"
#include "mcp.h"
#include "util/loop.h"
#include "util/macros.h"
#include "util/outbuf.h"

#define MAX_PENDING 128
#define READ_CHUNK (64 * 1024)
#define READER_SIZE ((size_t)AJ_MCP_MAX_LINE + READ_CHUNK)
#define BROKER_MAX_REPLY (1024 * 1024)
/* tools/list checks sent to the broker and not yet answered, all listings together: the
 * broker closes a connection whose unread replies pass AJ_BROKER_MAX_OUTPUT (256 KiB), and
 * that would fail every call and listing waiting on it and cancel the held ones. A check's
 * reply is at most about 1 KiB (a name of AJ_BROKER_MAX_NAME, twice, escaped), so these,
 * the MAX_PENDING verdicts and their tool_results stay well under it. */
#define MAX_CHECKS_OUT 32
/* A tracked tools/call line is kept until the broker answers: it must fit the broker's line. */
#define MAX_CALL_LINE (2 * AJ_BROKER_MAX_LINE)
/* How long the server's stdout may stay open after it exited (a child of its own holds it). */
/* Queues are bounded by back-pressure (see the top); this only guards a logic error. */
#define QUEUE_HARD_MAX (4 * (size_t)AJ_MCP_MAX_LINE + MAX_PENDING * (size_t)MAX_CALL_LINE)

typedef struct Relay Relay;

typedef struct {
        int fd;
        AjLoopIo *io;
        char *buf;
        size_t len;
        bool eof, done, discarding;
        bool unpolled; /* a regular file or /dev/null: epoll refuses it, a read never blocks */
} Reader;

typedef struct {
        int fd;
        AjLoopIo *io;
        AjOutBuf out;
        bool dead;           /* the reader went away: what is queued is dropped */
        bool close_on_drain; /* close once everything queued is written */
} Writer;

/* P_REQUEST: any other request, forwarded; only its response is passed on (by its id). */
typedef enum { P_FREE, P_VERDICT, P_CALL, P_LIST, P_CHECKING, P_REQUEST } PendingState;

typedef struct {
        PendingState state;
        unsigned gen;
        char id_key[AJ_MCP_MAX_ID + 1];
        json_t *id;
        char call_id[AJ_BROKER_MAX_ID + 1];
        char tool[AJ_BROKER_MAX_NAME + 1];
        char *line;       /* P_VERDICT: the tools/call to forward once allowed */
        json_t *response; /* P_CHECKING: the tools/list response whose names are checked */
        const char **names;
        signed char *keep;         /* per name: -1 unknown, 0 hide, 1 keep */
        size_t n_names, n_waiting; /* P_CHECKING: names; checks sent and not answered */
        size_t next_check;         /* P_CHECKING: the next name to check (mcp_checks_send) */
        bool cancelled;            /* P_VERDICT: the client gave up; an allowed call is not made */
} Pending;

struct Relay {
        AjLoop *loop;
        const char *server;
        const char *broker_path;
        pid_t pid;
        int status;
        bool exited;
        AjLoopTimer drain_timer;
        Reader client_in, server_out;
        Writer client_out, server_in;
        struct {
                int fd;
                AjLoopIo *io;
                AjOutBuf out;
                char *buf;
                size_t len;
                size_t checks_out; /* checks sent on this connection, not yet answered */
        } broker;
        int sig_fd;
        AjLoopIo *sig_io;
        Pending pending[MAX_PENDING];
        unsigned long long next_generated, next_request;
        bool failed;
};

void mcp_note(const char *fmt, ...) _printf_(1, 2);

/* ---- the line streams (mcp-streams.c) ---- */

void mcp_writer_add(Relay *r, Writer *w, const char *line);
bool mcp_reader_blocked(Relay *r, Reader *rd);
void mcp_reader_process(Relay *r, Reader *rd);
void mcp_reader_read(Relay *r, Reader *rd);
void mcp_on_reader(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
void mcp_on_writer(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
void mcp_client_closed(Relay *r);
void mcp_update_interest(Relay *r);

/* ---- the broker (mcp-broker.c) ---- */

int mcp_broker_connect(Relay *r);
int mcp_broker_send(Relay *r, json_t *req, const char *id);
void mcp_refuse_unavailable(Relay *r, Pending *p, const char *why);
void mcp_list_unavailable(Relay *r, Pending *p, const char *why);
void mcp_send_tool_result(Relay *r, const char *call_id, const char *status);
void mcp_list_done(Relay *r, Pending *p);
void mcp_checks_send(Relay *r);

/* ---- messages and the pending table (mcp-messages.c) ---- */

void mcp_pending_free(Pending *p);
void mcp_reply_to_client(Relay *r, const json_t *id, int code, const char *message);
void mcp_on_client_line(Relay *r, const char *line, size_t len);
void mcp_on_server_line(Relay *r, const char *line, size_t len);
