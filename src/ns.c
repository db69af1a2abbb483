/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ns.h"
#include "util/fd.h"
#include "util/macros.h"

static int write_proc(pid_t pid, const char *file, const char *text)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
        return aj_write_file(path, text);
}

int aj_userns_write_maps(pid_t pid, uid_t inside_uid, uid_t host_uid, gid_t inside_gid, gid_t host_gid,
                         bool deny_setgroups)
{
        char line[64];
        int r;
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)inside_uid, (unsigned)host_uid);
        r = write_proc(pid, "uid_map", line);
        if (r < 0)
                return r;
        if (deny_setgroups) {
                r = write_proc(pid, "setgroups", "deny");
                if (r < 0)
                        return r;
        }
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)inside_gid, (unsigned)host_gid);
        return write_proc(pid, "gid_map", line);
}

int aj_userns_idmap_fd(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid, int *ret_fd)
{
        /* A user namespace needs a process to exist; a child that only waits for its
         * pipe to close gives us one long enough to write its maps and open it. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        struct clone_args args = {
                .flags = CLONE_NEWUSER,
                .exit_signal = SIGCHLD,
        };
        pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
        if (pid < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                char c;
                close(p[1]);
                (void)!read(p[0], &c, 1);
                _exit(0);
        }
        close(p[0]);

        int r = 0, fd = -1;
        char line[64];
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)from_uid, (unsigned)to_uid);
        r = write_proc(pid, "uid_map", line);
        if (r >= 0) {
                snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)from_gid, (unsigned)to_gid);
                r = write_proc(pid, "gid_map", line);
        }
        if (r >= 0) {
                snprintf(line, sizeof(line), "/proc/%d/ns/user", (int)pid);
                fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        r = -errno;
        }
        close(p[1]);
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return r;
        *ret_fd = fd;
        return 0;
}

static int nl_to_errno(int nlerr)
{
        switch (-nlerr) {
        case NLE_NOMEM: return -ENOMEM;
        case NLE_PERM: return -EPERM;
        case NLE_NOACCESS: return -EACCES;
        case NLE_OBJ_NOTFOUND: return -ENODEV;
        case NLE_AGAIN: return -EAGAIN;
        default: return -EIO;
        }
}

static void nl_socket_freep(struct nl_sock **s)
{
        if (*s)
                nl_socket_free(*s);
}

static void rtnl_link_putp(struct rtnl_link **l)
{
        if (*l)
                rtnl_link_put(*l);
}

int aj_net_loopback_up(void)
{
        _cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
        if (!sk)
                return -ENOMEM;
        int r = nl_connect(sk, NETLINK_ROUTE);
        if (r < 0)
                return nl_to_errno(r);
        _cleanup_(rtnl_link_putp) struct rtnl_link *lo = NULL;
        r = rtnl_link_get_kernel(sk, 0, "lo", &lo);
        if (r < 0)
                return nl_to_errno(r);
        _cleanup_(rtnl_link_putp) struct rtnl_link *change = rtnl_link_alloc();
        if (!change)
                return -ENOMEM;
        rtnl_link_set_flags(change, IFF_UP);
        r = rtnl_link_change(sk, lo, change, 0);
        if (r < 0)
                return nl_to_errno(r);
        return 0;
}
