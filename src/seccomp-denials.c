/* SPDX-License-Identifier: Apache-2.0 */
/* The supervisor's side of the filter: reading SECCOMP_RET_USER_NOTIF denials, why one
 * happened, and which ones are recorded (every distinct key, repeats rate limited). */

#include <errno.h>
#include <poll.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "seccomp-internal.h"
#include "util/syscalls.h"

/* ---- supervisor side ---- */

const char *aj_seccomp_denial_hint(const AjSeccompDenial *d)
{
        if (d->arch != seccomp_arch_native())
                return NULL;
        switch (aj_seccomp_mode_rule(d->nr)) {
        case RULE_MODE_A1:
                return d->args[1] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_MODE_A2:
                return d->args[2] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_OPEN_A1:
                return d->args[1] & OPEN_CREATE_FLAGS && d->args[2] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        case RULE_OPEN_A2:
                return d->args[2] & OPEN_CREATE_FLAGS && d->args[3] & SUID_SGID_BITS ? "setuid/setgid mode" : NULL;
        default:
                break;
        }
        if (d->nr == SCMP_SYS(clone) && d->args[0] & CLONE_NAMESPACE_FLAGS)
                return "namespace flags";
        if (d->nr == SCMP_SYS(socket) && ((uint32_t)d->args[0] == AF_INET || (uint32_t)d->args[0] == AF_INET6) &&
            !aj_seccomp_socket_builtin(d->args[0], d->args[1], d->args[2]))
                return "a protocol or type the kernel would load a module for";
        if (aj_seccomp_sets_core_limit(d->nr, d->args))
                return "the core dump limit (limits.core is false)";
        unsigned arg;
        uint64_t flag;
        if (aj_seccomp_hugetlb_flag(d->nr, &arg, &flag) && d->args[arg] & flag)
                return "huge pages (the host's pool)";
        return NULL;
}

int aj_seccomp_notify_handle(int listener_fd, AjSeccompDenial *ret)
{
        /* The kernel's structs may outgrow our headers; it tells us their size. */
        struct seccomp_notif_sizes sizes;
        if (sys_seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
                return -errno;
        union {
                struct seccomp_notif n;
                uint8_t raw[512];
        } req;
        union {
                struct seccomp_notif_resp r;
                uint8_t raw[512];
        } resp;
        if (sizes.seccomp_notif > sizeof(req) || sizes.seccomp_notif_resp > sizeof(resp))
                return -EOVERFLOW;

        /* RECV blocks when nothing is pending; the supervisor's event loop must never block. */
        struct pollfd pfd = { .fd = listener_fd, .events = POLLIN };
        int n = poll(&pfd, 1, 0);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        if (n == 0)
                return 0;
        if (pfd.revents & POLLNVAL)
                return -EBADF;
        if (!(pfd.revents & POLLIN))
                /* POLLHUP: every task using the filter is gone. */
                return (pfd.revents & POLLHUP) ? -ENOTCONN : 0;

        memset(&req, 0, sizeof(req)); /* RECV insists on a zeroed buffer */
        if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
                /* ENOENT: the target died (or was interrupted) after waking us up. */
                return errno == ENOENT || errno == EINTR ? 0 : -errno;

        memset(&resp, 0, sizeof(resp));
        resp.r.id = req.n.id;
        resp.r.error = -EPERM;
        if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
                return errno == ENOENT ? 0 : -errno;

        AjSeccompDenial d = {
                .pid = (pid_t)req.n.pid,
                .nr = req.n.data.nr,
                .arch = req.n.data.arch,
        };
        memcpy(d.args, req.n.data.args, sizeof(d.args));
        _cleanup_free_ char *name = seccomp_syscall_resolve_num_arch(d.arch, d.nr);
        const char *fallback = d.arch == seccomp_arch_native() ? aj_seccomp_syscall_name(d.nr) : NULL;
        if (name)
                snprintf(d.name, sizeof(d.name), "%s", name);
        else if (fallback)
                snprintf(d.name, sizeof(d.name), "%s", fallback);
        else
                snprintf(d.name, sizeof(d.name), "syscall_%d", d.nr);
        *ret = d;
        return 1;
}

/* The argument that tells denials of one syscall apart, as the filter's rules see it. */
static bool denial_sub(const AjSeccompDenial *d, uint32_t *ret)
{
        if (d->arch != seccomp_arch_native())
                return false;
        if (d->nr == SCMP_SYS(socket) || d->nr == SCMP_SYS(socketpair) || d->nr == SCMP_SYS(personality)) {
                *ret = (uint32_t)d->args[0];
                return true;
        }
        if (d->nr == SCMP_SYS(ioctl)) {
                *ret = (uint32_t)d->args[1];
                return true;
        }
        return false;
}

void aj_denial_log_init(AjDenialLog *log, double burst, double per_sec)
{
        memset(log, 0, sizeof(*log));
        snprintf(log->overflow.label, sizeof(log->overflow.label), "other");
        aj_ratelimit_init(&log->repeats, burst, per_sec);
}

void aj_denial_log_done(AjDenialLog *log)
{
        free(log->keys);
        log->keys = NULL;
        log->n_keys = log->cap_keys = 0;
}

/* The next key's place in the table (grown first if need be), or NULL: the table is at its
 * bound or no memory was left for it. */
static AjDenialKey *next_key(AjDenialLog *log)
{
        if (log->n_keys >= AJ_DENIAL_KEYS_MAX)
                return NULL;
        if (log->n_keys == log->cap_keys) {
                size_t cap = log->cap_keys ? log->cap_keys * 2 : 16;
                if (cap > AJ_DENIAL_KEYS_MAX)
                        cap = AJ_DENIAL_KEYS_MAX;
                AjDenialKey *k = reallocarray(log->keys, cap, sizeof(*k));
                if (!k)
                        return NULL;
                log->keys = k;
                log->cap_keys = cap;
        }
        return &log->keys[log->n_keys];
}

_Static_assert(AJ_DENIAL_KEYS_MAX <= UINT16_MAX, "key indexes are uint16_t");

static void denial_key_init(AjDenialKey *k, const AjSeccompDenial *d, bool has_sub, uint32_t sub)
{
        *k = (AjDenialKey){ .nr = d->nr, .arch = d->arch, .sub = sub, .has_sub = has_sub };
        if (!has_sub)
                snprintf(k->label, sizeof(k->label), "%s", d->name);
        else if (d->nr == SCMP_SYS(socket) || d->nr == SCMP_SYS(socketpair))
                snprintf(k->label, sizeof(k->label), "%.24s(%u)", d->name, sub);
        else
                snprintf(k->label, sizeof(k->label), "%.24s(0x%x)", d->name, sub);
}

bool aj_denial_log_note(AjDenialLog *log, const AjSeccompDenial *d, uint64_t now_ns, const AjDenialKey **ret_key)
{
        uint32_t sub = 0;
        bool has_sub = denial_sub(d, &sub);
        AjDenialKey *k = NULL;
        bool first = false;
        if (!has_sub && d->arch == seccomp_arch_native() && d->nr >= 0 && d->nr < AJ_DENIAL_NR_SLOTS) {
                /* A plain syscall: its own slot, which no flood of other keys can take. */
                uint16_t *slot = &log->nr_slot[d->nr];
                AjDenialKey *nk = *slot == 0 ? next_key(log) : NULL; /* room: see the bounds */
                if (nk) {
                        denial_key_init(nk, d, false, 0);
                        *slot = (uint16_t)++log->n_keys;
                        first = true;
                }
                if (*slot > 0)
                        k = &log->keys[*slot - 1];
        } else {
                /* A linear scan: at most AJ_DENIAL_ARG_KEYS_MAX compares, well under the two
                 * ioctls that answered the notification. */
                for (size_t i = 0; i < log->n_arg_keys; i++) {
                        AjDenialKey *c = &log->keys[log->arg_keys[i]];
                        if (c->nr == d->nr && c->arch == d->arch && c->has_sub == has_sub && c->sub == sub) {
                                k = c;
                                break;
                        }
                }
                if (!k && log->n_arg_keys < AJ_DENIAL_ARG_KEYS_MAX && (k = next_key(log))) {
                        denial_key_init(k, d, has_sub, sub);
                        log->arg_keys[log->n_arg_keys++] = (uint16_t)log->n_keys++;
                        first = true;
                }
        }
        if (!k)
                k = &log->overflow;

        log->total++;
        k->count++;
        if (ret_key)
                *ret_key = k;
        /* The first of a key is always named; the table's bounds bound those reports. */
        if (first || aj_ratelimit_allow(&log->repeats, now_ns))
                return true;
        k->suppressed++;
        log->suppressed++;
        return false;
}
