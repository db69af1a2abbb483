/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket: server (in the supervisor's loop) and client (operator commands). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "util/syscalls.h"
#include "line-server.h"
#include "util/clock.h"

/* The server is a line server (src/line-server.h) on a loop of its own, nested in the
 * supervisor's; it has no timers. */
struct AjControl {
        AjLoop *loop;
        int loop_fd;
        AjLineServer *server;
        char *path;
        uid_t owner;
        bool self_userns_known;
        AjNsId self_userns;
        AjControlOps ops;
};

/* ---- requests -> replies (pure apart from the ops) ---------------------------- */

static const char *errno_code(int err)
{
        const char *n = err > 0 ? strerrorname_np(err) : NULL;
        return n ? n : "EIO";
}

_printf_(3, 4) static json_t *error_reply(json_t *id, int err, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        json_t *reply = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", errno_code(err), "message", msg);
        if (reply && id)
                json_object_set(reply, "id", id);
        return reply;
}

static json_t *ok_reply(json_t *id, json_t *result)
{
        json_t *reply = json_pack("{s:b, s:o}", "ok", 1, "result", result ? result : json_object());
        if (reply && id)
                json_object_set(reply, "id", id);
        return reply;
}

static bool raise_key_valid(const char *k)
{
        size_t n = strlen(k);
        if (n == 0 || n > 32)
                return false;
        return strspn(k, "abcdefghijklmnopqrstuvwxyz_") == n;
}

/* "+20000", "5", "2.50", "100M": the supervisor interprets them; here only their shape. */
static bool raise_value_valid(json_t *v)
{
        if (json_is_integer(v))
                return json_integer_value(v) >= 0;
        if (json_is_real(v))
                return json_real_value(v) >= 0;
        if (!json_is_string(v))
                return false;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > 32 || strlen(s) != n)
                return false;
        if (streq(s, "unlimited"))
                return true;
        if (*s == '+')
                s++, n--;
        if (n == 0 || *s < '0' || *s > '9')
                return false;
        size_t digits = strspn(s, "0123456789.");
        /* Sizes ("2G") and durations ("10m", "1h30m", for the wall cap); the supervisor
         * parses the value for real. */
        return strspn(s + digits, "0123456789.KMGTkmgtiBsmhdu") == n - digits;
}

static json_t *check_fields(json_t *req, json_t *id, const char *op, const char *const *allowed)
{
        const char *key;
        json_t *v;
        json_object_foreach (req, key, v) {
                bool ok = streq(key, "op") || streq(key, "id");
                for (size_t i = 0; !ok && allowed && allowed[i]; i++)
                        ok = streq(key, allowed[i]);
                if (!ok)
                        return error_reply(id, EINVAL, "unknown field '%.64s' for op '%s'", key, op);
        }
        return NULL;
}

static json_t *do_freeze(const AjControlOps *ops, json_t *req, json_t *id)
{
        static const char *const fields[] = { "reason", NULL };
        json_t *bad = check_fields(req, id, "freeze", fields);
        if (bad)
                return bad;
        const char *reason = "operator";
        json_t *r = json_object_get(req, "reason");
        if (r) {
                if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > AJ_CONTROL_MAX_REASON ||
                    strlen(json_string_value(r)) != json_string_length(r))
                        return error_reply(id, EINVAL, "field 'reason': expected a string of 1 to %d bytes",
                                           AJ_CONTROL_MAX_REASON);
                reason = json_string_value(r);
        }
        if (!ops->freeze)
                return error_reply(id, ENOSYS, "freeze is not available");
        int rr = ops->freeze(ops->userdata, reason);
        if (rr < 0)
                return error_reply(id, -rr, "freeze failed: %s", strerror(-rr));
        return ok_reply(id, NULL);
}

static json_t *do_thaw(const AjControlOps *ops, json_t *req, json_t *id)
{
        static const char *const fields[] = { "raise", "stop", NULL };
        json_t *bad = check_fields(req, id, "thaw", fields);
        if (bad)
                return bad;
        json_t *jstop = json_object_get(req, "stop");
        if (jstop && (!json_is_integer(jstop) || json_integer_value(jstop) < 1))
                return error_reply(id, EINVAL, "field 'stop': expected a stop's number (1 or more)");
        uint64_t stop = jstop ? (uint64_t)json_integer_value(jstop) : 0;
        json_t *raise = json_object_get(req, "raise");
        if (json_is_null(raise))
                raise = NULL;
        if (raise) {
                if (!json_is_object(raise))
                        return error_reply(id, EINVAL,
                                           "field 'raise': expected an object like {\"tokens\": \"+20000\"}");
                if (json_object_size(raise) > AJ_CONTROL_MAX_RAISE_KEYS)
                        return error_reply(id, EINVAL, "field 'raise': at most %d caps", AJ_CONTROL_MAX_RAISE_KEYS);
                const char *key;
                json_t *v;
                json_object_foreach (raise, key, v) {
                        if (!raise_key_valid(key))
                                return error_reply(id, EINVAL, "field 'raise': '%.64s' is not a cap name", key);
                        if (!raise_value_valid(v))
                                return error_reply(id, EINVAL,
                                                   "field 'raise.%s': expected \"+N\" (add), \"N\" (set), a duration "
                                                   "for wall (\"+10m\") or \"unlimited\"",
                                                   key);
                }
                if (json_object_size(raise) == 0)
                        raise = NULL;
        }
        if (!ops->thaw)
                return error_reply(id, ENOSYS, "thaw is not available");
        _cleanup_(aj_error_clear) AjError err = {};
        int rr = ops->thaw(ops->userdata, stop, raise, &err);
        if (rr < 0)
                return error_reply(id, -rr, "%s", aj_error_text(&err, rr));
        return ok_reply(id, NULL);
}

static json_t *do_simple(const AjControlOps *ops, json_t *req, json_t *id, const char *op, int (*fn)(void *userdata))
{
        json_t *bad = check_fields(req, id, op, NULL);
        if (bad)
                return bad;
        if (!fn)
                return error_reply(id, ENOSYS, "%s is not available", op);
        int rr = fn(ops->userdata);
        if (rr < 0)
                return error_reply(id, -rr, "%s failed: %s", op, strerror(-rr));
        return ok_reply(id, NULL);
}

static json_t *do_inspect(const AjControlOps *ops, json_t *req, json_t *id)
{
        json_t *bad = check_fields(req, id, "inspect", NULL);
        if (bad)
                return bad;
        if (!ops->inspect)
                return error_reply(id, ENOSYS, "inspect is not available");
        json_t *state = ops->inspect(ops->userdata);
        if (!state)
                return error_reply(id, EIO, "inspect failed");
        return ok_reply(id, state);
}

static json_t *do_decide(const AjControlOps *ops, json_t *req, json_t *id, bool approve, uid_t peer)
{
        static const char *const approve_fields[] = { "call", "digest", "always", NULL };
        static const char *const deny_fields[] = { "call", "reason", NULL };
        const char *op = approve ? "approve" : "deny";
        json_t *bad = check_fields(req, id, op, approve ? approve_fields : deny_fields);
        if (bad)
                return bad;
        json_t *call = json_object_get(req, "call");
        if (!json_is_string(call) || json_string_length(call) == 0 || json_string_length(call) > 128 ||
            strlen(json_string_value(call)) != json_string_length(call))
                return error_reply(id, EINVAL, "field 'call': expected a tool call id of 1 to 128 bytes");
        json_t *digest = json_object_get(req, "digest");
        if (digest && (!json_is_string(digest) || json_string_length(digest) != 64 ||
                       strspn(json_string_value(digest), "0123456789abcdef") != 64))
                return error_reply(id, EINVAL, "field 'digest': expected 64 lower-case hex digits (arguments_sha256)");
        json_t *reason = json_object_get(req, "reason");
        if (reason && (!json_is_string(reason) || json_string_length(reason) == 0 ||
                       json_string_length(reason) > AJ_CONTROL_MAX_REASON ||
                       strlen(json_string_value(reason)) != json_string_length(reason)))
                return error_reply(id, EINVAL, "field 'reason': expected a string of 1 to %d bytes",
                                   AJ_CONTROL_MAX_REASON);
        json_t *always = json_object_get(req, "always");
        if (always && !json_is_boolean(always))
                return error_reply(id, EINVAL, "field 'always': expected true or false");
        if (!ops->decide)
                return error_reply(id, ENOSYS, "%s is not available", op);
        json_t *result = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        int rr = ops->decide(ops->userdata, json_string_value(call), approve, json_is_true(always),
                             digest ? json_string_value(digest) : NULL, reason ? json_string_value(reason) : NULL, peer,
                             &result, &err);
        if (rr < 0) {
                json_decref(result);
                return error_reply(id, -rr, "%s", aj_error_text(&err, rr));
        }
        return ok_reply(id, result);
}

json_t *aj_control_handle_line(const AjControlOps *ops, const char *line, size_t len, uid_t peer)
{
        json_error_t jerr;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        json_auto_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!req)
                return error_reply(NULL, EINVAL, "request is not JSON: %s (column %d)", jerr.text, jerr.column);
        if (!json_is_object(req))
                return error_reply(NULL, EINVAL, "request must be a JSON object");
        json_t *id = json_object_get(req, "id");
        if (id && !json_is_string(id) && !json_is_integer(id))
                return error_reply(NULL, EINVAL, "field 'id': expected a string or an integer");
        if (id && json_is_string(id) && json_string_length(id) > 128)
                return error_reply(NULL, EINVAL, "field 'id': longer than 128 bytes");
        json_t *opv = json_object_get(req, "op");
        if (!opv)
                return error_reply(id, EINVAL, "missing field 'op'");
        if (!json_is_string(opv))
                return error_reply(id, EINVAL, "field 'op': expected a string");
        const char *op = json_string_value(opv);
        if (streq(op, "inspect"))
                return do_inspect(ops, req, id);
        if (streq(op, "freeze"))
                return do_freeze(ops, req, id);
        if (streq(op, "thaw"))
                return do_thaw(ops, req, id);
        if (streq(op, "kill"))
                return do_simple(ops, req, id, "kill", ops->kill);
        if (streq(op, "release"))
                return do_simple(ops, req, id, "release", ops->release);
        if (streq(op, "approve") || streq(op, "deny"))
                return do_decide(ops, req, id, streq(op, "approve"), peer);
        return error_reply(id, EINVAL,
                           "field 'op': unknown op '%.64s' (inspect, freeze, thaw, kill, release, approve, deny)", op);
}

/* Compact JSON + '\n'; a reply past the limit becomes an E2BIG error. */
static char *reply_line(json_t *reply, size_t *ret_len)
{
        char *text = json_dumps(reply, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        size_t n = text ? strlen(text) : 0;
        if (text && n + 1 > AJ_CONTROL_MAX_REPLY) {
                free(text);
                json_auto_t *big = error_reply(json_object_get(reply, "id"), E2BIG, "reply larger than %d bytes",
                                               AJ_CONTROL_MAX_REPLY);
                text = big ? json_dumps(big, JSON_COMPACT) : NULL;
                n = text ? strlen(text) : 0;
        }
        if (!text)
                return NULL;
        text[n] = '\n'; /* json_dumps leaves room for the NUL: replace it */
        *ret_len = n + 1;
        return text;
}

/* ---- server ---------------------------------------------------------------------- */

/* Best effort: one reply line to a connection that is about to be closed. */
static void refuse(int fd, int err, const char *message)
{
        json_auto_t *reply = error_reply(NULL, err, "%s", message);
        size_t n;
        _cleanup_free_ char *line = reply ? reply_line(reply, &n) : NULL;
        if (line)
                (void)!send(fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

const char *aj_control_peer_refusal(const AjControlPeer *peer, uid_t owner, const AjNsId *self_userns)
{
        if (peer->uid != owner && peer->uid != 0)
                return "only the run's owner or root may control this run";
        if (peer->pid <= 0)
                return "the peer's process is not visible from the supervisor (another pid namespace)";
        if (!self_userns || !peer->userns_known)
                return "cannot identify the peer's user namespace";
        if (peer->userns.dev != self_userns->dev || peer->userns.ino != self_userns->ino)
                return "the peer is in another user namespace (inside a jail?): only the host may control a run";
        return NULL;
}

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static int ns_id(const char *path, AjNsId *ret)
{
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        *ret = (AjNsId){ st.st_dev, st.st_ino };
        return 0;
}

/*
 * Which user namespace the peer is in. A jail is always a new user namespace (spawn.c), and
 * nothing inside can leave it for ours (setns() to a user namespace needs CAP_SYS_ADMIN
 * over it, which a child namespace never has over its parent), whatever uid it maps to; an
 * operator on the host shares the supervisor's. This holds whichever cgroup layout the host
 * has, so it is the check (the run's cgroup would say the same for a jailed process, but
 * needs the cgroup path here and differs between v1 and v2).
 *
 * /proc/PID names whoever has the pid now: the peer may have exited and its pid been reused.
 * So the read is bracketed by a pidfd of the peer: SO_PEERPIDFD (the very process that
 * connected, Linux 6.5+), else pidfd_open() of the SO_PEERCRED pid at once; the read counts
 * only if that process is still alive after it (a pidfd never follows a reused pid).
 */
static void peer_gather(int fd, const struct ucred *cred, AjControlPeer *ret)
{
        char path[64];
        int pidfd = -1;
        socklen_t len = sizeof(pidfd);

        *ret = (AjControlPeer){ .uid = cred->uid, .pid = cred->pid };
        if (cred->pid <= 0)
                return;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0 || len != sizeof(pidfd))
                pidfd = sys_pidfd_open(cred->pid, 0);
        if (pidfd < 0)
                return;
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)cred->pid);
        if (ns_id(path, &ret->userns) == 0 && (sys_pidfd_send_signal(pidfd, 0, NULL, 0) == 0 || errno == EPERM))
                ret->userns_known = true;
        close(pidfd);
}

/* Who may talk to the run: refused (with a reply saying why) before the connection cap. */
static int on_accept(void *userdata, int fd, const struct ucred *cred)
{
        AjControl *c = userdata;
        if (!cred) {
                refuse(fd, EPERM, "cannot identify the peer");
                return -EPERM;
        }
        AjControlPeer peer;
        peer_gather(fd, cred, &peer);
        const char *why = aj_control_peer_refusal(&peer, c->owner, c->self_userns_known ? &c->self_userns : NULL);
        if (why) {
                refuse(fd, EPERM, why);
                return -EPERM;
        }
        return 0;
}

static void on_refuse(void *userdata, int fd, int err)
{
        (void)userdata;
        refuse(fd, err, err == EBUSY ? "too many control connections" : "out of memory");
}

static void queue_reply(AjLineConn *conn, json_t *reply)
{
        size_t n;
        _cleanup_free_ char *line = reply ? reply_line(reply, &n) : NULL;
        json_decref(reply);
        if (!line) {
                aj_line_conn_kill(conn);
                return;
        }
        aj_line_conn_queue(conn, line, n - 1); /* without the '\n' reply_line ends it with */
}

static void on_line(void *userdata, AjLineConn *conn, const char *line, size_t len)
{
        AjControl *c = userdata;
        queue_reply(conn, aj_control_handle_line(&c->ops, line, len, aj_line_conn_uid(conn)));
}

static void on_too_long(void *userdata, AjLineConn *conn)
{
        (void)userdata;
        queue_reply(conn, error_reply(NULL, E2BIG, "request line longer than %d bytes", AJ_CONTROL_MAX_LINE - 1));
}

int aj_control_dispatch(AjControl *c)
{
        int r = aj_loop_dispatch(c->loop, 0);
        return r < 0 ? r : aj_line_server_take_error(c->server);
}

int aj_control_fd(AjControl *c) { return c->loop_fd; }

int aj_control_new(const char *socket_path, uid_t owner, const AjControlOps *ops, AjControl **ret)
{
        static const AjLineServerLimits limits = {
                .max_line = AJ_CONTROL_MAX_LINE - 1,
                .max_output = AJ_CONTROL_MAX_REPLY,
                .max_connections = AJ_CONTROL_MAX_CLIENTS,
                .accepts_per_wake = AJ_CONTROL_MAX_CLIENTS,
                .one_reply_at_a_time = true,
                .peer_credentials = true,
        };
        static const AjLineServerOps server_ops = {
                .accept = on_accept,
                .refuse = on_refuse,
                .line = on_line,
                .too_long = on_too_long,
        };
        if (!socket_path || !ops)
                return -EINVAL;
        AjControl *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->owner = owner;
        /* Unknown: every peer is refused (the run itself goes on). */
        c->self_userns_known = ns_id("/proc/self/ns/user", &c->self_userns) == 0;
        c->ops = *ops;
        int listen_fd = -1;
        int r = aj_loop_new(&c->loop);
        if (r == 0 && (c->loop_fd = aj_loop_fd(c->loop)) < 0)
                r = c->loop_fd;
        _cleanup_free_ char *path = r == 0 ? strdup(socket_path) : NULL;
        if (r == 0 && !path)
                r = -ENOMEM;
        if (r == 0)
                r = aj_line_server_listen(socket_path, geteuid() == 0 && owner != 0 ? owner : (uid_t)-1, (gid_t)-1, 16,
                                          &listen_fd);
        if (r == 0) {
                c->path = TAKE_PTR(path); /* bound by us: unlinked at the end */
                r = aj_line_server_new(c->loop, listen_fd, &limits, &server_ops, c, &c->server);
        }
        if (r < 0) {
                aj_control_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void aj_control_free(AjControl *c)
{
        if (!c)
                return;
        aj_line_server_free(c->server);
        if (c->path)
                unlink(c->path);
        aj_loop_free(c->loop);
        free(c->path);
        free(c);
}

/* ---- client ---------------------------------------------------------------------- */

static int wait_fd(int fd, short events, int64_t deadline)
{
        for (;;) {
                int64_t left = deadline - (int64_t)aj_now_monotonic_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = events };
                int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        return 0;
        }
}

/* The one reply line: an error of the send (send_err) counts when the server closed
 * without one. */
static int read_reply(int fd, int64_t deadline, int send_err, json_t **ret_reply)
{
        size_t cap = 4096, have = 0;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (have == cap) {
                        if (cap >= AJ_CONTROL_MAX_REPLY)
                                return -EBADMSG;
                        cap *= 4;
                        char *nb = realloc(buf, cap);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                ssize_t n = recv(fd, buf + have, cap - have, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return send_err ?: -errno;
                        int r = wait_fd(fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == 0)
                        return have ? -EBADMSG : (send_err ?: -ECONNRESET);
                char *nl = memchr(buf + have, '\n', (size_t)n);
                have += (size_t)n;
                if (!nl)
                        continue;
                json_t *reply = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
                if (!reply || !json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok"))) {
                        json_decref(reply);
                        return -EBADMSG;
                }
                *ret_reply = reply;
                return 0;
        }
}

const char *aj_control_socket_problem(const struct stat *dir, const struct stat *sock, uid_t self)
{
        if (!S_ISDIR(dir->st_mode))
                return "its directory is not a directory";
        if (self != 0 && dir->st_uid != self && dir->st_uid != 0)
                return "its directory belongs to another user";
        if (dir->st_mode & (S_IWGRP | S_IWOTH))
                return "other users can write to its directory";
        if (!S_ISSOCK(sock->st_mode))
                return S_ISLNK(sock->st_mode) ? "it is a symlink" : "it is not a socket";
        return NULL;
}

const char *aj_control_parent_problem(const struct stat *parent, uid_t self)
{
        if (!S_ISDIR(parent->st_mode))
                return "the directory above it is not a directory";
        if (self != 0 && parent->st_uid != self && parent->st_uid != 0)
                return "the directory above it belongs to another user";
        /* Sticky (/tmp): others may add names but not rename or replace ours. */
        if ((parent->st_mode & (S_IWGRP | S_IWOTH)) && !(parent->st_mode & S_ISVTX))
                return "other users can write to the directory above it";
        return NULL;
}

bool aj_control_server_trusted(uid_t server, uid_t self) { return self == 0 || server == self || server == 0; }

/* `path` at its last '/': *ret_dir a copy of what is before ("/" for the root, "." for
 * none), *ret_name what is after. */
static int split_last(const char *path, char **ret_dir, const char **ret_name)
{
        const char *slash = strrchr(path, '/');
        *ret_dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
        *ret_name = slash ? slash + 1 : path;
        return *ret_dir ? 0 : -ENOMEM;
}

/* Connect to the run's socket and nothing else. Rootless, the runtime root may be
 * /tmp/agentjail-UID made by another user first (a run refuses it, an operator command
 * used to follow it): its sockets answered "killed" for a run that went on, and its
 * symlinks sent our requests to another run's socket. So the socket's directory must be
 * ours or root's and nobody else's to write, and so must the directory above it (the
 * runtime root), since whoever writes that one names the run's directory: it is opened
 * there without following a symlink (one to another run's directory passed every check of
 * the directory it named). The connect goes through that directory's fd (it cannot be
 * swapped after the check), and the server must be us or root. */
static int connect_run_socket(int fd, const char *socket_path)
{
        _cleanup_free_ char *dir = NULL, *parent = NULL;
        const char *name, *base;
        if (split_last(socket_path, &dir, &name) < 0 || split_last(dir, &parent, &base) < 0)
                return -ENOMEM;
        _cleanup_close_ int pfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0)
                return -errno;
        /* "/x.sock": the directory is the root, above which there is nothing else. */
        _cleanup_close_ int dfd = openat(pfd, *base ? base : ".", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
        struct stat pst, dst, sst;
        if (fstat(pfd, &pst) < 0 || fstat(dfd, &dst) < 0)
                return -errno;
        if (fstatat(dfd, name, &sst, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (aj_control_parent_problem(&pst, geteuid()) || aj_control_socket_problem(&dst, &sst, geteuid()))
                return -EPERM;

        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, name) >= (int)sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        /* Non-blocking: a full backlog gives EAGAIN instead of hanging the operator. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        return aj_control_server_trusted(cred.uid, geteuid()) ? 0 : -EPERM;
}

int aj_control_call(const char *socket_path, json_t *request, int timeout_ms, json_t **ret_reply)
{
        if (!socket_path || !request)
                return -EINVAL;
        int64_t deadline = (int64_t)aj_now_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 1);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int cr = connect_run_socket(fd, socket_path);
        if (cr < 0)
                return cr;

        size_t len;
        _cleanup_free_ char *line = json_dumps(request, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (!line)
                return -ENOMEM;
        len = strlen(line);
        line[len++] = '\n';
        int send_err = 0;
        for (size_t off = 0; off < len;) {
                ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EPIPE || errno == ECONNRESET) {
                                /* A refusal (EPERM, EBUSY) is sent and the connection closed
                                 * on accept: the reply may be waiting to be read. */
                                send_err = -errno;
                                break;
                        }
                        if (errno != EAGAIN)
                                return -errno;
                        int r = wait_fd(fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                off += (size_t)n;
        }

        return read_reply(fd, deadline, send_err, ret_reply);
}

char *aj_control_reply_error(json_t *reply)
{
        if (json_is_true(json_object_get(reply, "ok")))
                return NULL;
        json_t *e = json_object_get(reply, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        char *s;
        if (asprintf(&s, "%s (%s)", msg ? msg : "request failed", code ? code : "EIO") < 0)
                return NULL;
        return s;
}
