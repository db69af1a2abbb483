/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-run control socket: <runtime>/<id>/control.sock, a Unix stream socket the
 * supervisor serves from its event loop, for `agentjail inspect | freeze | thaw | kill |
 * quarantine release | approve | deny`.
 *
 * Protocol (version 1): one JSON object per line each way, UTF-8, '\n'-terminated.
 *   request  {"op": "inspect"}
 *            {"op": "freeze", "reason": "TEXT"?}
 *            {"op": "thaw", "stop": N?, "raise": {"tokens": "+20000", "cost_usd": "5"}?}
 *            (stop: the freeze it answers, as inspect's "stop" and the freeze event say:
 *            refused, ESTALE, when the run is not frozen at that stop)
 *            {"op": "kill"}
 *            {"op": "release"}
 *            {"op": "approve", "call": "CALL-ID", "digest": "ARGUMENTS-SHA256"?}
 *            {"op": "deny", "call": "CALL-ID", "reason": "TEXT"?}
 *            Any request may carry "id" (string or integer), echoed in the reply.
 *            Unknown fields are errors.
 *   reply    {"ok": true, "result": {...}}            (inspect: the live state; approve, deny:
 *            the call decided; others: {})
 *            {"ok": false, "error": {"code": "EINVAL", "message": "..."}}
 *            code is the errno name of what failed (EPERM refused, EINVAL bad request,
 *            E2BIG line too long, EBUSY too many connections, ENOSYS op not available...).
 *
 * Access: the server checks SO_PEERCRED on every connection. Only the run's owner (the
 * supervisor's euid) and root may talk to it, and only from the supervisor's own user
 * namespace: a process inside a jail (always in the jail's user namespace) is refused even
 * with the owner's uid, as is a peer whose pid we cannot see. Anyone else gets one EPERM
 * reply and is disconnected. The socket file is also created 0600 (defence in depth).
 *
 * Limits: AJ_CONTROL_MAX_CLIENTS connections (more get EBUSY and are closed), request
 * lines up to AJ_CONTROL_MAX_LINE bytes (longer: E2BIG, then disconnected), replies up
 * to AJ_CONTROL_MAX_REPLY bytes. While a reply is unsent the server does not read from
 * that client, so a client that does not read its replies only stalls itself.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/stat.h>

#include "hooks.h"
#include "util/macros.h"

#define AJ_CONTROL_MAX_CLIENTS 16
#define AJ_CONTROL_MAX_LINE 8192
#define AJ_CONTROL_MAX_REPLY (1024 * 1024)
/* Limits on the "raise" object of "thaw". */
#define AJ_CONTROL_MAX_RAISE_KEYS 16
#define AJ_CONTROL_MAX_REASON 256

typedef struct AjControl AjControl;

/* Bind and listen on socket_path (replacing a stale socket there; a non-socket file is
 * -EEXIST). `ops` is copied; its callbacks run inside aj_control_dispatch(). */
int aj_control_new(const char *socket_path, uid_t owner, const AjControlOps *ops, AjControl **ret);
/* An epoll fd, readable while there is work for aj_control_dispatch(). */
int aj_control_fd(AjControl *c);
/* Accept, read, answer and flush whatever is ready, never blocking. Returns 0, or a
 * negative errno only if the server itself broke (a client's errors are its own). */
int aj_control_dispatch(AjControl *c);
/* Close every connection and the listener, and unlink the socket. Accepts NULL. */
void aj_control_free(AjControl *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjControl *, aj_control_free);

/* A namespace's identity: the dev/ino of its /proc/PID/ns/ file. */
typedef struct {
        dev_t dev;
        ino_t ino;
} AjNsId;

/* What the server learns of a peer when it connects. */
typedef struct {
        uid_t uid;         /* SO_PEERCRED, in our user namespace */
        pid_t pid;         /* SO_PEERCRED, in our pid namespace; 0: not visible from here */
        bool userns_known; /* the peer's user namespace was read (and the pid was still its) */
        AjNsId userns;
} AjControlPeer;

/* The access decision (pure): NULL when `peer` may control a run owned by `owner` from a
 * supervisor in user namespace `self_userns` (NULL: unknown, nobody may); otherwise why
 * not, for the EPERM reply. */
const char *aj_control_peer_refusal(const AjControlPeer *peer, uid_t owner, const AjNsId *self_userns);

/* Answer one request line (without the '\n'): the reply object (new reference). Pure
 * apart from the ops it calls; used by the server and by tests. */
json_t *aj_control_handle_line(const AjControlOps *ops, const char *line, size_t len, uid_t peer);

/* Why the client will not use a control socket (pure): NULL when `sock` (lstat) in `dir`
 * may be the run's for a caller of euid `self`: the directory is the caller's or root's
 * (anyone's for root) and not writable by group or others, and the socket is a socket. */
const char *aj_control_socket_problem(const struct stat *dir, const struct stat *sock, uid_t self);

/* Why the client will not use a run's directory for what is above it (pure): NULL when
 * `parent` (the runtime root) is the caller's or root's (anyone's for root) and nobody
 * else may rename or replace what is in it (not writable by group or others, or sticky). */
const char *aj_control_parent_problem(const struct stat *parent, uid_t self);

/* Whether a server of uid `server` (SO_PEERCRED) may be a run's supervisor for a caller of
 * euid `self`: the caller itself or root (anyone for root). */
bool aj_control_server_trusted(uid_t server, uid_t self);

/* Client: send `request`, wait at most timeout_ms for the whole reply. -ENOENT no socket,
 * -ECONNREFUSED nobody listening (a stale socket), -ETIMEDOUT, -EBADMSG bad reply,
 * -ECONNRESET closed without a reply, -EPERM not the run's socket (aj_control_socket_problem,
 * aj_control_parent_problem, its directory a symlink, or served by another user). The reply is the whole {"ok": ...} object. */
int aj_control_call(const char *socket_path, json_t *request, int timeout_ms, json_t **ret_reply);

/* A failed reply's error as "message (CODE)" for the operator, as a new string; NULL if
 * the reply is ok. */
char *aj_control_reply_error(json_t *reply);
