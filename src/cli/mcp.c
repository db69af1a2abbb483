/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp [--name SERVER] -- CMD [ARG...]`, inside a jail: CMD is an MCP server
 * over stdio; this process relays JSON-RPC lines between it and the MCP client on our
 * own stdin/stdout, and asks the run's broker ($AGENTJAIL_BROKER) before every
 * tools/call (src/mcp.c judges and rewrites each line; this file is the I/O).
 *
 * One thread, one AjLoop: the client's stdin and stdout, the server's pipes, the broker
 * socket, a signalfd. A call held for approval waits in the pending table while other
 * messages keep flowing. Everything is bounded: a line is at most AJ_MCP_MAX_LINE; a
 * side whose output queue holds a line's worth is not read from until it drains (so a
 * queue holds at most about two lines); at most MAX_PENDING requests are tracked, and a
 * tracked tools/call is small (the broker takes its arguments, at most
 * AJ_BROKER_MAX_LINE bytes).
 */
#include "cli/mcp-cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentjail/broker.h"
#include "tty.h"
#include "util/fd.h"
#include "util/loop.h"
#include "util/macros.h"
#include "util/outbuf.h"

#define MAX_PENDING 128
#define READ_CHUNK (64 * 1024)
#define READER_SIZE ((size_t)AJ_MCP_MAX_LINE + READ_CHUNK)
#define BROKER_MAX_REPLY (1024 * 1024)
/* A tracked tools/call line is kept until the broker answers: it must fit the broker's line. */
#define MAX_CALL_LINE (2 * AJ_BROKER_MAX_LINE)
/* How long the server's stdout may stay open after it exited (a child of its own holds it). */
#define DRAIN_AFTER_EXIT_NS (2ull * 1000000000ull)
/* Queues are bounded by back-pressure (see the top); this only guards a logic error. */
#define QUEUE_HARD_MAX (4 * (size_t)AJ_MCP_MAX_LINE + MAX_PENDING * (size_t)MAX_CALL_LINE)

static const char help[] =
        "Usage: agentjail mcp [--name SERVER] -- CMD [ARG...]   (inside a jail: talks to $" AJ_BROKER_ENV ")\n"
        "\n"
        "Run the MCP server CMD over stdio behind a relay: the MCP client talks to this\n"
        "command's stdin and stdout. Every tools/call is first asked of the run's broker as\n"
        "the tool mcp.SERVER.TOOL: allowed calls go to the server, denied ones get a JSON-RPC\n"
        "error, calls the profile's approvals hold wait for an operator (other messages keep\n"
        "flowing); results are reported as tool_result. tools/list results do not show the\n"
        "tools the profile's tools rules deny. The exit status is the server's.\n"
        "\n"
        "Options:\n"
        "  -n, --name SERVER   the server's name in tool names ([A-Za-z0-9_-], at most 64;\n"
        "                      default: CMD's base name with other characters as '_')\n"
        "  -h, --help          this text\n";

int aj_mcp_cmd_parse(int argc, char **argv, AjMcpCmd *ret, AjError *ret_error)
{
        AjMcpCmd c = {};
        const char *name = NULL;
        int i = 1;

        for (; i < argc; i++) {
                const char *a = argv[i];
                if (streq(a, "--")) {
                        i++;
                        break;
                }
                if (streq(a, "-h") || streq(a, "--help")) {
                        *ret = (AjMcpCmd){ .help = true };
                        return 0;
                }
                if (streq(a, "--name") || streq(a, "-n")) {
                        if (i + 1 >= argc)
                                return aj_error_set(ret_error, -EINVAL, "%s needs a value", a);
                        name = argv[++i];
                        continue;
                }
                if (strncmp(a, "--name=", 7) == 0) {
                        name = a + 7;
                        continue;
                }
                if (a[0] == '-')
                        return aj_error_set(ret_error, -EINVAL, "unknown option \"%s\"", a);
                break; /* CMD without "--" */
        }
        if (i >= argc)
                return aj_error_set(ret_error, -EINVAL, "missing the server command (agentjail mcp -- CMD [ARG...])");
        if (name) {
                if (!aj_mcp_server_name_valid(name))
                        return aj_error_set(ret_error, -EINVAL,
                                            "--name: \"%s\" must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'",
                                            name, AJ_MCP_MAX_SERVER);
                snprintf(c.server, sizeof(c.server), "%s", name);
        } else {
                aj_mcp_server_from_command(argv[i], c.server);
        }
        c.argv = argv + i;
        *ret = c;
        return 0;
}

/* ---- the relay's state ---- */

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

typedef enum { P_FREE, P_VERDICT, P_CALL, P_LIST, P_CHECKING } PendingState;

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
        signed char *keep; /* per name: -1 unknown, 0 hide, 1 keep */
        size_t n_names, n_waiting;
        bool cancelled; /* P_VERDICT: the client gave up; an allowed call is not made */
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
        } broker;
        int sig_fd;
        AjLoopIo *sig_io;
        Pending pending[MAX_PENDING];
        unsigned long long next_generated, next_request;
        bool failed;
};

static void note(const char *fmt, ...) _printf_(1, 2);
static void note(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("agentjail mcp: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static void update_interest(Relay *r);

/* ---- writers ---- */

static void writer_flush(Relay *r, Writer *w)
{
        while (!w->dead && aj_outbuf_pending(&w->out) > 0) {
                ssize_t n = write(w->fd, w->out.data + w->out.off, aj_outbuf_pending(&w->out));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        w->dead = true; /* EPIPE: the reader is gone */
                        aj_outbuf_clear(&w->out);
                        break;
                }
                w->out.off += (size_t)n;
                if (w->out.off == w->out.len)
                        w->out.off = w->out.len = 0;
        }
        if (w->fd >= 0 && (w->dead || (w->close_on_drain && aj_outbuf_pending(&w->out) == 0))) {
                aj_loop_io_remove(w->io);
                w->io = NULL;
                close(w->fd);
                w->fd = -1;
                w->dead = true;
        }
        update_interest(r);
}

static void writer_add(Relay *r, Writer *w, const char *line)
{
        if (w->dead || w->fd < 0)
                return;
        if (aj_outbuf_add(&w->out, line, strlen(line), true, QUEUE_HARD_MAX) < 0) {
                note("out of memory for a queued message; dropped");
                return;
        }
        writer_flush(r, w);
}

/* ---- the broker ---- */

static void broker_lost(Relay *r, const char *why);

static void broker_flush(Relay *r)
{
        if (r->broker.fd < 0)
                return;
        int s = aj_outbuf_send(&r->broker.out, r->broker.fd, NULL);
        if (s < 0)
                return broker_lost(r, strerror(-s));
        update_interest(r);
}

static void on_broker(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

static int broker_connect(Relay *r)
{
        if (r->broker.fd >= 0)
                return 0;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(r->broker_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, r->broker_path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || aj_fd_set_nonblock(fd, true) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        int s = aj_loop_add_io(r->loop, fd, EPOLLIN, on_broker, r, &r->broker.io);
        if (s < 0) {
                close(fd);
                return s;
        }
        r->broker.fd = fd;
        return 0;
}

/* Queues one request (its "id" and "v" added). 0, or -errno: not sent. */
static int broker_send(Relay *r, json_t *req, const char *id)
{
        int s = broker_connect(r);
        if (s < 0)
                return s;
        if (json_object_set_new(req, AJ_BROKER_F_ID, json_string(id)) < 0 ||
            json_object_set_new(req, AJ_BROKER_F_V, json_integer(AJ_BROKER_VERSION)) < 0)
                return -ENOMEM;
        _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
        if (!line)
                return -ENOMEM;
        if (strlen(line) > AJ_BROKER_MAX_LINE)
                return -EMSGSIZE;
        s = aj_outbuf_add(&r->broker.out, line, strlen(line), true, QUEUE_HARD_MAX);
        if (s < 0)
                return s;
        broker_flush(r);
        return r->broker.fd >= 0 ? 0 : -ECONNRESET;
}

static void pending_free(Pending *p)
{
        json_decref(p->id);
        free(p->line);
        json_decref(p->response);
        free(p->names);
        free(p->keep);
        unsigned gen = p->gen + 1;
        *p = (Pending){ .gen = gen };
}

static void refuse(Relay *r, Pending *p, json_t *reply)
{
        _cleanup_free_ char *line = aj_mcp_refusal_line(p->id, p->tool, p->call_id, reply);
        if (line)
                writer_add(r, &r->client_out, line);
}

static void refuse_unavailable(Relay *r, Pending *p, const char *why)
{
        json_t *reply = json_pack("{s:b, s:{s:s}}", AJ_BROKER_F_OK, 0, AJ_BROKER_F_ERROR, "message", why);
        refuse(r, p, reply);
        json_decref(reply);
}

static void list_unavailable(Relay *r, Pending *p, const char *why)
{
        char message[512];
        snprintf(message, sizeof(message), "agentjail could not check the listed tools with the broker: %s", why);
        _cleanup_free_ char *line = aj_mcp_error_line(p->id, AJ_MCP_E_UNAVAILABLE, message, NULL);
        if (line)
                writer_add(r, &r->client_out, line);
}

/* Fail closed: calls and lists waiting on the broker get errors; the next request that
 * needs it connects again. */
static void broker_lost(Relay *r, const char *why)
{
        if (r->broker.fd >= 0) {
                aj_loop_io_remove(r->broker.io);
                r->broker.io = NULL;
                close(r->broker.fd);
                r->broker.fd = -1;
        }
        aj_outbuf_clear(&r->broker.out);
        r->broker.len = 0;
        for (size_t i = 0; i < MAX_PENDING; i++) {
                Pending *p = &r->pending[i];
                if (p->state == P_VERDICT) {
                        if (!p->cancelled)
                                refuse_unavailable(r, p, why);
                        pending_free(p);
                } else if (p->state == P_CHECKING) {
                        list_unavailable(r, p, why);
                        pending_free(p);
                }
        }
        update_interest(r);
}

static void send_tool_result(Relay *r, const char *call_id, const char *status)
{
        char id[64];
        snprintf(id, sizeof(id), "r:%llu", ++r->next_request);
        json_t *req = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_OP, AJ_BROKER_OP_TOOL_RESULT, AJ_BROKER_F_TOOL_CALL_ID,
                                call_id, AJ_BROKER_F_STATUS, status);
        int s = req ? broker_send(r, req, id) : -ENOMEM;
        json_decref(req);
        if (s < 0)
                note("could not report the result of %s to the broker: %s", call_id, strerror(-s));
}

static bool keep_name(void *userdata, const char *name)
{
        Pending *p = userdata;
        for (size_t i = 0; i < p->n_names; i++)
                if (streq(p->names[i], name))
                        return p->keep[i] > 0;
        return false;
}

static void list_done(Relay *r, Pending *p)
{
        size_t removed = 0;
        _cleanup_free_ char *line = aj_mcp_list_filter(p->response, keep_name, p, &removed);
        if (line)
                writer_add(r, &r->client_out, line);
        else
                list_unavailable(r, p, "out of memory");
        pending_free(p);
}

static void on_tool_verdict(Relay *r, Pending *p, json_t *reply)
{
        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
        bool allowed = json_is_true(json_object_get(reply, AJ_BROKER_F_OK)) && verdict &&
                       streq(verdict, AJ_BROKER_ALLOW);
        if (p->cancelled) {
                /* Nobody waits for it any more: not made, and the broker told it ended so. */
                if (allowed)
                        send_tool_result(r, p->call_id, "error");
                return pending_free(p);
        }
        if (allowed) {
                writer_add(r, &r->server_in, p->line);
                free(p->line);
                p->line = NULL;
                p->state = P_CALL;
                if (r->server_in.dead) {
                        /* Allowed, but the server can no longer take it. */
                        send_tool_result(r, p->call_id, "error");
                        refuse_unavailable(r, p, "the server's stdin is closed");
                        pending_free(p);
                }
                return;
        }
        refuse(r, p, reply);
        pending_free(p);
}

static void on_broker_reply(Relay *r, json_t *reply)
{
        const char *id = json_string_value(json_object_get(reply, AJ_BROKER_F_ID));
        unsigned slot, gen;
        size_t idx;
        int end = 0;

        if (!id) {
                /* Only a request it could not read has no id: this relay sent something wrong. */
                json_t *e = json_object_get(reply, AJ_BROKER_F_ERROR);
                return broker_lost(r, json_string_value(json_object_get(e, "message")) ?: "a reply without an id");
        }
        if (id[0] == 'r') {
                if (!json_is_true(json_object_get(reply, AJ_BROKER_F_OK)))
                        note("the broker refused a tool_result: %s",
                             json_string_value(json_object_get(json_object_get(reply, AJ_BROKER_F_ERROR), "message"))
                                     ?: "");
                return;
        }
        if (sscanf(id, "t:%u:%u%n", &slot, &gen, &end) == 2 && id[end] == 0 && slot < MAX_PENDING) {
                Pending *p = &r->pending[slot];
                if (p->state == P_VERDICT && p->gen == gen)
                        on_tool_verdict(r, p, reply);
                return;
        }
        if (sscanf(id, "k:%u:%u:%zu%n", &slot, &gen, &idx, &end) == 3 && id[end] == 0 && slot < MAX_PENDING) {
                Pending *p = &r->pending[slot];
                if (p->state != P_CHECKING || p->gen != gen || idx >= p->n_names || p->keep[idx] >= 0)
                        return;
                const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
                /* Anything but a clear allow hides the tool (fail closed). */
                p->keep[idx] = json_is_true(json_object_get(reply, AJ_BROKER_F_OK)) && verdict &&
                               streq(verdict, AJ_BROKER_ALLOW);
                if (--p->n_waiting == 0)
                        list_done(r, p);
                return;
        }
}

static void on_broker(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        if (revents & EPOLLOUT)
                broker_flush(r);
        if (r->broker.fd < 0 || !(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        if (!r->broker.buf && !(r->broker.buf = malloc(BROKER_MAX_REPLY)))
                return broker_lost(r, "out of memory");
        ssize_t n = read(fd, r->broker.buf + r->broker.len, BROKER_MAX_REPLY - r->broker.len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0)
                return broker_lost(r, n == 0 ? "the broker closed the connection" : strerror(errno));
        r->broker.len += (size_t)n;
        char *start = r->broker.buf, *nl;
        while ((nl = memchr(start, '\n', r->broker.len - (size_t)(start - r->broker.buf)))) {
                json_t *reply = json_loadb(start, (size_t)(nl - start), 0, NULL);
                start = nl + 1;
                if (!json_is_object(reply)) {
                        json_decref(reply);
                        return broker_lost(r, "a reply that is not a JSON object");
                }
                on_broker_reply(r, reply);
                json_decref(reply);
                if (r->broker.fd < 0)
                        return;
        }
        r->broker.len -= (size_t)(start - r->broker.buf);
        memmove(r->broker.buf, start, r->broker.len);
        if (r->broker.len == BROKER_MAX_REPLY)
                broker_lost(r, "a reply line that is too long");
}

/* ---- the pending table ---- */

static Pending *pending_find(Relay *r, const char *id_key)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                if (r->pending[i].state != P_FREE && streq(r->pending[i].id_key, id_key))
                        return &r->pending[i];
        return NULL;
}

static bool is_pending(void *userdata, const char *id_key) { return pending_find(userdata, id_key) != NULL; }

static Pending *pending_new(Relay *r, const AjMcpMsg *m)
{
        for (size_t i = 0; i < MAX_PENDING; i++) {
                Pending *p = &r->pending[i];
                if (p->state != P_FREE)
                        continue;
                p->id = json_deep_copy(m->id);
                if (!p->id)
                        return NULL;
                snprintf(p->id_key, sizeof(p->id_key), "%s", m->id_key);
                return p;
        }
        return NULL;
}

static void reply_to_client(Relay *r, const json_t *id, int code, const char *message)
{
        _cleanup_free_ char *line = aj_mcp_error_line(id, code, message, NULL);
        if (line)
                writer_add(r, &r->client_out, line);
}

/* ---- lines ---- */

static void client_tool_call(Relay *r, AjMcpMsg *m)
{
        char tool[AJ_BROKER_MAX_NAME + 1], id[64];
        if (strlen(m->line) > MAX_CALL_LINE)
                return reply_to_client(r, m->id, AJ_MCP_E_INVALID_PARAMS,
                                       "agentjail mcp: a tools/call is limited to 128 KiB (its arguments go to the "
                                       "broker, whose requests are at most 64 KiB)");
        if (aj_mcp_tool_name(r->server, m->tool, tool, sizeof(tool)) < 0)
                return reply_to_client(r, m->id, AJ_MCP_E_INVALID_PARAMS, "tools/call: \"params.name\" is too long");
        Pending *p = pending_new(r, m);
        if (!p)
                return reply_to_client(r, m->id, AJ_MCP_E_INTERNAL,
                                       "agentjail mcp: too many requests in flight; try again when some are answered");
        p->state = P_VERDICT;
        snprintf(p->tool, sizeof(p->tool), "%s", tool);
        aj_mcp_call_id(getpid(), m->id, ++r->next_generated, p->call_id, sizeof(p->call_id));
        p->line = TAKE_PTR(m->line);
        snprintf(id, sizeof(id), "t:%zu:%u", (size_t)(p - r->pending), p->gen);
        json_t *req = json_pack("{s:s, s:s, s:s, s:O?}", AJ_BROKER_F_OP, AJ_BROKER_OP_TOOL, AJ_BROKER_F_TOOL_NAME, tool,
                                AJ_BROKER_F_TOOL_CALL_ID, p->call_id, AJ_BROKER_F_TOOL_ARGS, m->arguments);
        int s = req ? broker_send(r, req, id) : -ENOMEM;
        json_decref(req);
        if (s < 0 && p->state == P_VERDICT) {
                char why[128];
                snprintf(why, sizeof(why), "%s",
                         s == -EMSGSIZE ? "the arguments are too large for the broker (its requests are at most 64 KiB)"
                                        : strerror(-s));
                refuse_unavailable(r, p, why);
                pending_free(p);
        }
}

/* notifications/cancelled for a tracked request: its slot is freed, so a client that gives
 * up on calls (an SDK's request timeout) does not fill the table. A call awaiting its
 * verdict is kept until the verdict, then not made; one the server runs is reported as
 * ended in error (its outcome will not be seen). */
static void client_cancelled(Relay *r, const char *key)
{
        Pending *p = pending_find(r, key);
        if (!p)
                return;
        switch (p->state) {
        case P_VERDICT:
                p->cancelled = true;
                p->id_key[0] = 0; /* the id may be used again */
                break;
        case P_CALL:
                send_tool_result(r, p->call_id, "error");
                pending_free(p);
                break;
        default:
                pending_free(p);
                break;
        }
}

static void on_client_line(Relay *r, const char *line, size_t len)
{
        AjMcpMsg m = {};
        if (aj_mcp_from_client(line, len, r->server, is_pending, r, &m) < 0) {
                reply_to_client(r, NULL, AJ_MCP_E_INTERNAL, "agentjail mcp: out of memory; nothing was forwarded");
                return;
        }
        switch (m.action) {
        case AJ_MCP_REPLY:
                writer_add(r, &r->client_out, m.line);
                break;
        case AJ_MCP_DROP:
                note("dropped from the client: %s", m.why);
                break;
        case AJ_MCP_TOOL_CALL:
                client_tool_call(r, &m);
                break;
        case AJ_MCP_TOOLS_LIST: {
                Pending *p = pending_new(r, &m);
                if (!p) {
                        reply_to_client(r, m.id, AJ_MCP_E_INTERNAL,
                                        "agentjail mcp: too many requests in flight; try again when some are answered");
                        break;
                }
                p->state = P_LIST;
                writer_add(r, &r->server_in, m.line);
                break;
        }
        default:
                if (m.cancel_key[0])
                        client_cancelled(r, m.cancel_key);
                writer_add(r, &r->server_in, m.line);
                break;
        }
        aj_mcp_msg_done(&m);
}

static void server_list_response(Relay *r, Pending *p, AjMcpMsg *m)
{
        const char **names = calloc(AJ_MCP_MAX_TOOLS, sizeof(*names));
        size_t n = 0;
        int s = names ? aj_mcp_list_names(m->msg, names, AJ_MCP_MAX_TOOLS, &n) : -ENOMEM;
        if (s < 0) {
                free(names);
                reply_to_client(r, p->id, AJ_MCP_E_INTERNAL,
                                s == -E2BIG ? "agentjail mcp: the server listed more tools than agentjail checks (1024)"
                                            : "agentjail mcp: out of memory");
                return pending_free(p);
        }
        if (n == 0 && !json_object_get(json_object_get(m->msg, "result"), "tools")) {
                /* An error or no tools array: nothing to filter. */
                free(names);
                writer_add(r, &r->client_out, m->line);
                return pending_free(p);
        }
        p->state = P_CHECKING;
        p->response = json_incref(m->msg);
        p->names = names;
        p->n_names = n;
        p->keep = malloc(n ? n : 1);
        if (!p->keep) {
                list_unavailable(r, p, "out of memory");
                return pending_free(p);
        }
        memset(p->keep, -1, n);
        if (n == 0)
                return list_done(r, p);
        unsigned gen = p->gen;
        size_t slot = (size_t)(p - r->pending);
        for (size_t i = 0; i < n; i++) {
                char id[64], tool[AJ_BROKER_MAX_NAME + 1];
                if (aj_mcp_tool_name(r->server, names[i], tool, sizeof(tool)) < 0) {
                        p->keep[i] = 0; /* a name no call could use */
                        continue;
                }
                snprintf(id, sizeof(id), "k:%zu:%u:%zu", slot, gen, i);
                json_t *req = json_pack("{s:s, s:s}", AJ_BROKER_F_OP, AJ_BROKER_OP_CHECK, AJ_BROKER_F_TOOL_NAME, tool);
                s = req ? broker_send(r, req, id) : -ENOMEM;
                json_decref(req);
                if (p->state != P_CHECKING || p->gen != gen)
                        return; /* the broker was lost: answered */
                if (s < 0) {
                        list_unavailable(r, p, strerror(-s));
                        return pending_free(p);
                }
                p->n_waiting++;
        }
        if (p->n_waiting == 0)
                list_done(r, p);
}

static void on_server_line(Relay *r, const char *line, size_t len)
{
        AjMcpMsg m = {};
        if (aj_mcp_from_server(line, len, &m) < 0) {
                note("out of memory; a message from the server was dropped");
                return;
        }
        Pending *p = m.action == AJ_MCP_RESPONSE && m.id_key[0] ? pending_find(r, m.id_key) : NULL;
        if (m.action == AJ_MCP_DROP) {
                note("dropped from the server: %s", m.why);
        } else if (p && p->state == P_CALL) {
                send_tool_result(r, p->call_id, aj_mcp_result_status(m.msg));
                writer_add(r, &r->client_out, m.line);
                pending_free(p);
        } else if (p && p->state == P_LIST) {
                server_list_response(r, p, &m);
        } else if (p) {
                /* A response to a call not yet allowed (or a list being checked): the server
                 * answered what it was never sent. Not passed on. */
                note("dropped from the server: a response to a request it was not sent");
        } else {
                writer_add(r, &r->client_out, m.line);
        }
        aj_mcp_msg_done(&m);
}

/* ---- readers ---- */

static void client_closed(Relay *r);
static void on_reader(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

static bool reader_blocked(Relay *r, Reader *rd)
{
        if (rd == &r->client_in)
                return aj_outbuf_pending(&r->server_in.out) >= AJ_MCP_MAX_LINE ||
                       aj_outbuf_pending(&r->client_out.out) >= AJ_MCP_MAX_LINE ||
                       aj_outbuf_pending(&r->broker.out) >= AJ_BROKER_MAX_OUTPUT / 2;
        return aj_outbuf_pending(&r->client_out.out) >= AJ_MCP_MAX_LINE ||
               aj_outbuf_pending(&r->broker.out) >= AJ_BROKER_MAX_OUTPUT / 2;
}

static void reader_line(Relay *r, Reader *rd, const char *line, size_t len)
{
        if (len == 0 || (len == 1 && line[0] == '\r'))
                return;
        if (rd == &r->client_in)
                on_client_line(r, line, len);
        else
                on_server_line(r, line, len);
}

static void reader_too_long(Relay *r, Reader *rd)
{
        if (rd == &r->client_in)
                reply_to_client(r, NULL, AJ_MCP_E_INVALID_REQUEST,
                                "agentjail mcp: a message longer than 8 MiB; discarded, nothing was forwarded");
        else
                note("dropped from the server: a message longer than 8 MiB");
}

/* The complete lines in the buffer, while the outputs take them. */
static void reader_process(Relay *r, Reader *rd)
{
        size_t start = 0;
        while (start < rd->len) {
                char *nl = memchr(rd->buf + start, '\n', rd->len - start);
                if (!nl)
                        break;
                size_t end = (size_t)(nl - rd->buf);
                if (rd->discarding) {
                        rd->discarding = false; /* the end of a line that was too long */
                } else if (end - start > AJ_MCP_MAX_LINE) {
                        reader_too_long(r, rd);
                } else {
                        if (reader_blocked(r, rd))
                                break;
                        reader_line(r, rd, rd->buf + start, end - start);
                }
                start = end + 1;
        }
        rd->len -= start;
        memmove(rd->buf, rd->buf + start, rd->len);
        bool whole_line = rd->len > 0 && memchr(rd->buf, '\n', rd->len);
        if (!whole_line && rd->discarding) {
                rd->len = 0;
        } else if (!whole_line && rd->len > AJ_MCP_MAX_LINE) {
                reader_too_long(r, rd);
                rd->discarding = true;
                rd->len = 0;
        }
        if (rd->eof && !whole_line && rd->len > 0 && !reader_blocked(r, rd)) {
                /* A last line without its newline. */
                if (!rd->discarding)
                        reader_line(r, rd, rd->buf, rd->len);
                rd->len = 0;
        }
        if (rd->eof && rd->len == 0 && !rd->done) {
                rd->done = true;
                if (rd == &r->client_in)
                        client_closed(r);
        }
}

static void reader_read(Relay *r, Reader *rd)
{
        if (rd->eof || reader_blocked(r, rd))
                return;
        if (!rd->buf && !(rd->buf = malloc(READER_SIZE))) {
                note("out of memory");
                r->failed = true;
                return;
        }
        if (rd->len == READER_SIZE)
                return reader_process(r, rd);
        ssize_t n = read(rd->fd, rd->buf + rd->len, READER_SIZE - rd->len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                rd->eof = true;
                aj_loop_io_remove(rd->io);
                rd->io = NULL;
        } else {
                rd->len += (size_t)n;
        }
        reader_process(r, rd);
}

static void on_reader(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        reader_read(r, fd == r->client_in.fd ? &r->client_in : &r->server_out);
}

static void on_writer(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        Writer *w = fd == r->client_out.fd ? &r->client_out : &r->server_in;
        if (revents & (EPOLLERR | EPOLLHUP)) {
                w->dead = true;
                aj_outbuf_clear(&w->out);
        }
        writer_flush(r, w);
}

/* The client sent its last message (it may still read): the server's stdin is closed
 * once no call waits for the broker's verdict (held ones too: a client that gives up
 * kills us, and the server's end follows) and what is queued for it is written. */
static void client_closed(Relay *r)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                if (r->pending[i].state == P_VERDICT)
                        return;
        if (!r->server_in.close_on_drain) {
                r->server_in.close_on_drain = true;
                writer_flush(r, &r->server_in);
        }
}

/* Which fds are watched for what: readers pause while their outputs are full. */
static void update_interest(Relay *r)
{
        Reader *readers[] = { &r->client_in, &r->server_out };
        for (size_t i = 0; i < ARRAY_SIZE(readers); i++) {
                Reader *rd = readers[i];
                if (rd->eof || rd->fd < 0 || rd->unpolled)
                        continue;
                /* Paused by leaving the loop: epoll reports a hang-up even with no events asked. */
                bool blocked = reader_blocked(r, rd) || rd->len == READER_SIZE;
                if (blocked && rd->io) {
                        aj_loop_io_remove(rd->io);
                        rd->io = NULL;
                } else if (!blocked && !rd->io && aj_loop_add_io(r->loop, rd->fd, EPOLLIN, on_reader, r, &rd->io) < 0) {
                        note("cannot watch an input");
                        r->failed = true;
                }
        }
        Writer *writers[] = { &r->client_out, &r->server_in };
        for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
                if (writers[i]->io)
                        (void)aj_loop_io_set_events(writers[i]->io, aj_outbuf_pending(&writers[i]->out) ? EPOLLOUT : 0);
        if (r->broker.io)
                (void)aj_loop_io_set_events(r->broker.io,
                                            EPOLLIN | (aj_outbuf_pending(&r->broker.out) ? EPOLLOUT : 0u));
}

/* ---- the server process, signals ---- */

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

static void reap(Relay *r)
{
        int st;
        pid_t p = waitpid(r->pid, &st, WNOHANG);
        if (p != r->pid)
                return;
        r->exited = true;
        r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        (void)aj_loop_timer_set_in(&r->drain_timer, DRAIN_AFTER_EXIT_NS);
}

static void on_signal(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD)
                        reap(r);
                else if (!r->exited)
                        (void)kill(r->pid, (int)si.ssi_signo);
        }
}

static void on_drain_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        Relay *r = userdata;
        if (!r->server_out.eof) {
                note("the server exited but its stdout is still open; not waiting for it");
                r->server_out.eof = r->server_out.done = true;
                aj_loop_io_remove(r->server_out.io);
                r->server_out.io = NULL;
        }
}

static int spawn_server(Relay *r, char **argv, const sigset_t *oldmask)
{
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0) {
                int e = -errno;
                close(in[0]);
                close(in[1]);
                return e;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                close(in[0]);
                close(in[1]);
                close(out[0]);
                close(out[1]);
                return e;
        }
        if (pid == 0) {
                /* The server dies with the relay: it must never run with nothing asking the broker. */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
                        _exit(126);
                signal(SIGPIPE, SIG_DFL);
                sigprocmask(SIG_SETMASK, oldmask, NULL);
                execvp(argv[0], argv);
                int e = errno;
                dprintf(2, "agentjail mcp: cannot run '%s': %s\n", argv[0], strerror(e));
                _exit(e == ENOENT ? 127 : 126);
        }
        close(in[0]);
        close(out[1]);
        r->pid = pid;
        r->server_in.fd = in[1];
        r->server_out.fd = out[0];
        if (aj_fd_set_nonblock(in[1], true) < 0 || aj_fd_set_nonblock(out[0], true) < 0)
                return -errno;
        return 0;
}

static bool finished(Relay *r)
{
        if (!r->exited || !r->server_out.done)
                return false;
        return r->client_out.dead || aj_outbuf_pending(&r->client_out.out) == 0;
}

static void relay_free(Relay *r)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                pending_free(&r->pending[i]);
        aj_loop_timer_stop(&r->drain_timer);
        aj_outbuf_clear(&r->client_out.out);
        aj_outbuf_clear(&r->server_in.out);
        aj_outbuf_clear(&r->broker.out);
        free(r->client_in.buf);
        free(r->server_out.buf);
        free(r->broker.buf);
        aj_loop_free(r->loop);
        int fds[] = { r->client_out.fd, r->client_in.fd, r->server_in.fd, r->server_out.fd, r->broker.fd, r->sig_fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static int relay_setup(Relay *r, char **argv, sigset_t *oldmask)
{
        int s, restore;
        sigset_t mask;

        sigemptyset(&mask);
        for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
                sigaddset(&mask, forwarded[i]);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, oldmask) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        r->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (r->sig_fd < 0)
                return -errno;
        if ((s = aj_loop_new(&r->loop)) < 0)
                return s;
        aj_loop_timer_init(r->loop, &r->drain_timer, on_drain_timeout, r);
        if ((s = broker_connect(r)) < 0) {
                note("cannot reach the broker at '%s': %s", r->broker_path, strerror(-s));
                return s;
        }
        /* Private non-blocking descriptions of our stdin/stdout (the client's are left alone). */
        if ((s = aj_tty_reopen_nonblock(0, O_RDONLY, &r->client_in.fd, &restore)) < 0 ||
            (s = aj_tty_reopen_nonblock(1, O_WRONLY, &r->client_out.fd, &restore)) < 0)
                return s;
        if ((s = spawn_server(r, argv, oldmask)) < 0) {
                note("cannot start '%s': %s", argv[0], strerror(-s));
                return s;
        }
        if ((s = aj_loop_add_io(r->loop, r->sig_fd, EPOLLIN, on_signal, r, &r->sig_io)) < 0 ||
            (s = aj_loop_add_io(r->loop, r->server_out.fd, EPOLLIN, on_reader, r, &r->server_out.io)) < 0 ||
            (s = aj_loop_add_io(r->loop, r->server_in.fd, 0, on_writer, r, &r->server_in.io)) < 0)
                return s;
        /* A file or /dev/null on stdin or stdout (scripts, tests) is not pollable, and never
         * blocks: read when there is room, written at once. */
        s = aj_loop_add_io(r->loop, r->client_in.fd, EPOLLIN, on_reader, r, &r->client_in.io);
        if (s == -EPERM)
                r->client_in.unpolled = true;
        else if (s < 0)
                return s;
        s = aj_loop_add_io(r->loop, r->client_out.fd, 0, on_writer, r, &r->client_out.io);
        return s == -EPERM ? 0 : s;
}

int aj_cmd_mcp(int argc, char **argv)
{
        AjMcpCmd cmd;
        _cleanup_(aj_error_clear) AjError err = {};
        sigset_t oldmask;

        int s = aj_mcp_cmd_parse(argc, argv, &cmd, &err);
        if (s < 0) {
                note("%s", aj_error_text(&err, s));
                return 2;
        }
        if (cmd.help) {
                fputs(help, stdout);
                return 0;
        }
        const char *path = getenv(AJ_BROKER_ENV);
        if (!path || !*path) {
                /* Without a broker nothing could be asked: the server is not started (fail closed). */
                note("$%s is not set (not inside an agentjail run?)", AJ_BROKER_ENV);
                return 2;
        }

        Relay *r = calloc(1, sizeof(*r));
        if (!r)
                return 2;
        r->server = cmd.server;
        r->broker_path = path;
        r->broker.fd = r->client_in.fd = r->client_out.fd = r->server_in.fd = r->server_out.fd = r->sig_fd = -1;
        s = relay_setup(r, cmd.argv, &oldmask);
        if (s < 0) {
                if (r->pid > 0) {
                        kill(r->pid, SIGKILL);
                        waitpid(r->pid, NULL, 0);
                }
                relay_free(r);
                free(r);
                return 2;
        }
        while (!finished(r) && !r->failed) {
                bool read_now = r->client_in.unpolled && !r->client_in.eof && !reader_blocked(r, &r->client_in);
                s = aj_loop_dispatch(r->loop, read_now ? 0 : -1);
                if (s >= 0 && read_now)
                        reader_read(r, &r->client_in);
                if (s < 0) {
                        note("event loop: %s", strerror(-s));
                        break;
                }
                /* Lines left in a buffer while an output was full, and an end not yet acted on. */
                if (!reader_blocked(r, &r->client_in) && (r->client_in.len > 0 || r->client_in.eof))
                        reader_process(r, &r->client_in);
                if (!reader_blocked(r, &r->server_out) && (r->server_out.len > 0 || r->server_out.eof))
                        reader_process(r, &r->server_out);
                if (r->client_in.done)
                        client_closed(r);
                update_interest(r);
        }
        if (!r->exited) {
                kill(r->pid, SIGKILL);
                waitpid(r->pid, NULL, 0);
                r->status = 2;
        }
        int status = r->status;
        relay_free(r);
        free(r);
        return status;
}
