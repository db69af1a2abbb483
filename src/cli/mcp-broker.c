/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp`'s broker side: one connection to $AGENTJAIL_BROKER, made when a request
 * needs it; tools/call verdicts, tools/list checks, tool results; a lost broker fails the
 * calls and lists waiting on it closed (cli/mcp-relay.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/mcp-relay.h"
#include "util/fd.h"
#include "util/json-scan.h"

/* ---- the broker ---- */

static void broker_lost(Relay *r, const char *why);

static void broker_flush(Relay *r)
{
        if (r->broker.fd < 0)
                return;
        int s = aj_outbuf_send(&r->broker.out, r->broker.fd, NULL);
        if (s < 0)
                return broker_lost(r, strerror(-s));
        mcp_update_interest(r);
}

static void on_broker(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

int mcp_broker_connect(Relay *r)
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

/* Queues one request (its "id" and "v" added). 0, or -errno: not sent (-EMSGSIZE, -ELOOP: past
 * the broker's line or depth). */
int mcp_broker_send(Relay *r, json_t *req, const char *id)
{
        int s = mcp_broker_connect(r);
        if (s < 0)
                return s;
        if (json_object_set_new(req, AJ_BROKER_F_ID, json_string(id)) < 0 ||
            json_object_set_new(req, AJ_BROKER_F_V, json_integer(AJ_BROKER_VERSION)) < 0)
                return -ENOMEM;
        _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
        if (!line)
                return -ENOMEM;
        size_t len = strlen(line);
        if (len > AJ_BROKER_MAX_LINE)
                return -EMSGSIZE;
        /* The broker answers a request nested deeper than it takes without its id, as one it
         * could not read: this connection's fault, so it would be dropped, failing every call
         * waiting on it and cancelling the held ones. Refused here, this request alone. */
        if (aj_json_scan(line, len, UINT64_MAX, AJ_BROKER_MAX_DEPTH, NULL) == -ELOOP)
                return -ELOOP;
        s = aj_outbuf_add(&r->broker.out, line, len, true, QUEUE_HARD_MAX);
        if (s < 0)
                return s;
        broker_flush(r);
        return r->broker.fd >= 0 ? 0 : -ECONNRESET;
}

static void refuse(Relay *r, Pending *p, json_t *reply)
{
        _cleanup_free_ char *line = aj_mcp_refusal_line(p->id, p->tool, p->call_id, reply);
        if (line)
                mcp_writer_add(r, &r->client_out, line);
}

void mcp_refuse_unavailable(Relay *r, Pending *p, const char *why)
{
        json_t *reply = json_pack("{s:b, s:{s:s}}", AJ_BROKER_F_OK, 0, AJ_BROKER_F_ERROR, "message", why);
        refuse(r, p, reply);
        json_decref(reply);
}

void mcp_list_unavailable(Relay *r, Pending *p, const char *why)
{
        char message[512];
        snprintf(message, sizeof(message), "agentjail could not check the listed tools with the broker: %s", why);
        _cleanup_free_ char *line = aj_mcp_error_line(p->id, AJ_MCP_E_UNAVAILABLE, message, NULL);
        if (line)
                mcp_writer_add(r, &r->client_out, line);
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
        r->broker.checks_out = 0; /* their replies will not come */
        for (size_t i = 0; i < MAX_PENDING; i++) {
                Pending *p = &r->pending[i];
                if (p->state == P_VERDICT) {
                        if (!p->cancelled)
                                mcp_refuse_unavailable(r, p, why);
                        mcp_pending_free(p);
                } else if (p->state == P_CHECKING) {
                        mcp_list_unavailable(r, p, why);
                        mcp_pending_free(p);
                }
        }
        mcp_update_interest(r);
}

void mcp_send_tool_result(Relay *r, const char *call_id, const char *status)
{
        char id[64];
        snprintf(id, sizeof(id), "r:%llu", ++r->next_request);
        json_t *req = json_pack("{s:s, s:s, s:s}", AJ_BROKER_F_OP, AJ_BROKER_OP_TOOL_RESULT, AJ_BROKER_F_TOOL_CALL_ID,
                                call_id, AJ_BROKER_F_STATUS, status);
        int s = req ? mcp_broker_send(r, req, id) : -ENOMEM;
        json_decref(req);
        if (s < 0)
                mcp_note("could not report the result of %s to the broker: %s", call_id, strerror(-s));
}

static bool keep_name(void *userdata, const char *name)
{
        Pending *p = userdata;
        for (size_t i = 0; i < p->n_names; i++)
                if (streq(p->names[i], name))
                        return p->keep[i] > 0;
        return false;
}

void mcp_list_done(Relay *r, Pending *p)
{
        size_t removed = 0;
        _cleanup_free_ char *line = aj_mcp_list_filter(p->response, keep_name, p, &removed);
        if (line)
                mcp_writer_add(r, &r->client_out, line);
        else
                mcp_list_unavailable(r, p, "out of memory");
        mcp_pending_free(p);
}

/* A listing whose names are all answered is filtered and sent; false: not yet. */
static bool list_checked(Relay *r, Pending *p)
{
        if (p->next_check < p->n_names || p->n_waiting > 0)
                return false;
        mcp_list_done(r, p);
        return true;
}

/* Sends the listings' checks, lowest slot first, while fewer than MAX_CHECKS_OUT wait for
 * their replies (each reply sends the next): the broker's replies are read as they come,
 * never piled up past what it keeps for a connection. */
void mcp_checks_send(Relay *r)
{
        for (size_t slot = 0; slot < MAX_PENDING; slot++) {
                Pending *p = &r->pending[slot];
                if (p->state != P_CHECKING)
                        continue;
                unsigned gen = p->gen;
                while (p->next_check < p->n_names && r->broker.checks_out < MAX_CHECKS_OUT) {
                        size_t i = p->next_check++;
                        char id[64], tool[AJ_BROKER_MAX_NAME + 1];
                        if (aj_mcp_tool_name(r->server, p->names[i], tool, sizeof(tool)) < 0) {
                                p->keep[i] = 0; /* a name no call could use */
                                continue;
                        }
                        snprintf(id, sizeof(id), "k:%zu:%u:%zu", slot, gen, i);
                        json_t *req = json_pack("{s:s, s:s}", AJ_BROKER_F_OP, AJ_BROKER_OP_CHECK, AJ_BROKER_F_TOOL_NAME,
                                                tool);
                        int s = req ? mcp_broker_send(r, req, id) : -ENOMEM;
                        json_decref(req);
                        if (p->state != P_CHECKING || p->gen != gen)
                                return; /* the broker was lost: every listing answered */
                        if (s < 0) {
                                mcp_list_unavailable(r, p, strerror(-s));
                                mcp_pending_free(p);
                                break;
                        }
                        p->n_waiting++;
                        r->broker.checks_out++;
                }
                if (p->state == P_CHECKING)
                        (void)list_checked(r, p);
                if (r->broker.checks_out >= MAX_CHECKS_OUT)
                        return;
        }
}

static void on_tool_verdict(Relay *r, Pending *p, json_t *reply)
{
        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
        bool allowed = json_is_true(json_object_get(reply, AJ_BROKER_F_OK)) && verdict &&
                       streq(verdict, AJ_BROKER_ALLOW);
        if (p->cancelled) {
                /* Nobody waits for it any more: not made, and the broker told it ended so. */
                if (allowed)
                        mcp_send_tool_result(r, p->call_id, "error");
                return mcp_pending_free(p);
        }
        if (allowed) {
                mcp_writer_add(r, &r->server_in, p->line);
                free(p->line);
                p->line = NULL;
                p->state = P_CALL;
                if (r->server_in.dead) {
                        /* Allowed, but the server can no longer take it. */
                        mcp_send_tool_result(r, p->call_id, "error");
                        mcp_refuse_unavailable(r, p, "the server's stdin is closed");
                        mcp_pending_free(p);
                }
                return;
        }
        refuse(r, p, reply);
        mcp_pending_free(p);
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
                        mcp_note("the broker refused a tool_result: %s",
                                 json_string_value(
                                         json_object_get(json_object_get(reply, AJ_BROKER_F_ERROR), "message"))
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
                if (r->broker.checks_out > 0)
                        r->broker.checks_out--; /* answered, whether its listing still waits or not */
                Pending *p = &r->pending[slot];
                if (p->state == P_CHECKING && p->gen == gen && idx < p->next_check && p->keep[idx] < 0) {
                        const char *verdict = json_string_value(json_object_get(reply, AJ_BROKER_F_VERDICT));
                        /* Anything but a clear allow hides the tool (fail closed). */
                        p->keep[idx] = json_is_true(json_object_get(reply, AJ_BROKER_F_OK)) && verdict &&
                                       streq(verdict, AJ_BROKER_ALLOW);
                        p->n_waiting--;
                        (void)list_checked(r, p);
                }
                return mcp_checks_send(r);
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
