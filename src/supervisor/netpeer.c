/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/netpeer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/macros.h"

/* Processes named when a socket is shared (after a fork). */
#define MAX_HOLDERS 8

/* An address as /proc/net/tcp{,6} prints it: the address's 32-bit words in memory
 * order, each "%08X", then ":%04X" of the port. An IPv4 address in tcp6 is mapped. */
static int table_form(const struct sockaddr *sa, bool v6_table, char *buf, size_t size)
{
        uint32_t w[4];
        unsigned port;
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                port = ntohs(in->sin_port);
                if (!v6_table) {
                        memcpy(&w[0], &in->sin_addr, 4);
                        snprintf(buf, size, "%08X:%04X", w[0], port);
                        return 0;
                }
                uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff };
                memcpy(mapped + 12, &in->sin_addr, 4);
                memcpy(w, mapped, 16);
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                if (!v6_table)
                        return -EAFNOSUPPORT;
                port = ntohs(in6->sin6_port);
                memcpy(w, &in6->sin6_addr, 16);
        } else {
                return -EAFNOSUPPORT;
        }
        snprintf(buf, size, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3], port);
        return 0;
}

int aj_net_peer_find_inode(const char *text, size_t len, const struct sockaddr *local, const struct sockaddr *remote,
                           uint64_t *ret_inode)
{
        /* The table's kind from its first data line's address width. */
        const char *nl = memchr(text, '\n', len);
        if (!nl)
                return -ENOENT;
        char want_local[64], want_remote[64];
        bool v6 = false;
        /* A tcp6 line's local address is 32 hex digits, tcp's 8. */
        const char *line = nl + 1;
        const char *colon = memchr(line, ':', (size_t)(text + len - line));
        if (colon) {
                const char *a = colon + 1;
                while (a < text + len && *a == ' ')
                        a++;
                const char *end = memchr(a, ':', (size_t)(text + len - a));
                v6 = end && end - a == 32;
        }
        int r = table_form(local, v6, want_local, sizeof(want_local));
        if (r < 0)
                return r;
        if ((r = table_form(remote, v6, want_remote, sizeof(want_remote))) < 0)
                return r;

        for (const char *p = nl + 1; p < text + len;) {
                const char *eol = memchr(p, '\n', (size_t)(text + len - p));
                size_t n = eol ? (size_t)(eol - p) : (size_t)(text + len - p);
                char buf[512];
                if (n < sizeof(buf)) {
                        memcpy(buf, p, n);
                        buf[n] = 0;
                        char l[64], rm[64];
                        unsigned long long inode;
                        /* sl: local rem st tx:rx tr:when retrnsmt uid timeout inode */
                        if (sscanf(buf, " %*u: %63s %63s %*x %*x:%*x %*x:%*x %*x %*u %*u %llu", l, rm, &inode) == 3 &&
                            streq(l, want_local) && streq(rm, want_remote)) {
                                *ret_inode = inode;
                                return 0;
                        }
                }
                if (!eol)
                        break;
                p = eol + 1;
        }
        return -ENOENT;
}

/* pids of the processes with an fd on socket `inode`, at most MAX_HOLDERS; the fd
 * entries looked at are bounded by *budget. -EACCES when no fd dir could be read. */
static int holders(const pid_t *pids, size_t n_pids, uint64_t inode, pid_t *ret, size_t *ret_n)
{
        char want[48];
        snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)inode);
        size_t budget = AJ_NET_PEER_MAX_FDS, found = 0;
        bool any_read = false;
        for (size_t i = 0; i < n_pids && budget > 0; i++) {
                char path[64];
                snprintf(path, sizeof(path), "/proc/%d/fd", (int)pids[i]);
                int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        continue;
                DIR *d = fdopendir(dfd);
                if (!d) {
                        close(dfd);
                        continue;
                }
                any_read = true;
                bool holds = false;
                struct dirent *de;
                while (!holds && budget > 0 && (de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        budget--;
                        char link[64];
                        ssize_t k = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
                        if (k <= 0)
                                continue;
                        link[k] = 0;
                        holds = streq(link, want);
                }
                closedir(d);
                if (holds && found < MAX_HOLDERS)
                        ret[found++] = pids[i];
        }
        *ret_n = found;
        return any_read ? 0 : -EACCES;
}

static json_t *unknown(const char *note) { return json_pack("{s:n, s:s}", "pid", "note", note); }

/* The pid as the jail sees it: the last NSpid of /proc/PID/status; 0 if unknown. */
static int jail_pid(pid_t pid)
{
        char path[64];
        _cleanup_free_ char *status = NULL;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (aj_read_file(path, 16384, &status, NULL) < 0)
                return 0;
        const char *ns = strstr(status, "\nNSpid:");
        if (!ns)
                return 0;
        ns += 7;
        int last = 0;
        for (;;) {
                char *end;
                long v = strtol(ns, &end, 10);
                if (end == ns)
                        break;
                last = (int)v;
                ns = end;
                if (*ns == '\n' || !*ns)
                        break;
        }
        return last;
}

json_t *aj_net_peer_process(pid_t ns_pid, const pid_t *pids, size_t n_pids, int fd)
{
        struct sockaddr_storage peer = {}, self = {};
        socklen_t pl = sizeof(peer), sl = sizeof(self);
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 || getsockname(fd, (struct sockaddr *)&self, &sl) < 0)
                return unknown("the connection's addresses could not be read");
        if (ns_pid <= 0)
                return unknown("the jail's network namespace is gone");

        uint64_t inode = 0;
        int r = -ENOENT;
        static const char *const tables[] = { "tcp", "tcp6" };
        for (size_t t = 0; t < ARRAY_SIZE(tables) && r == -ENOENT; t++) {
                char path[64];
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)ns_pid, tables[t]);
                int k = aj_read_file(path, AJ_NET_PEER_MAX_TABLE, &text, &len);
                if (k == -EFBIG)
                        return unknown("the jail has too many sockets to look the connection up");
                if (k < 0)
                        continue;
                r = aj_net_peer_find_inode(text, len, (struct sockaddr *)&peer, (struct sockaddr *)&self, &inode);
                if (r == -EAFNOSUPPORT)
                        r = -ENOENT;
        }
        if (r < 0 || inode == 0)
                return unknown("the connection's socket is not in the jail's network namespace any more");

        pid_t found[MAX_HOLDERS];
        size_t n = 0;
        if (holders(pids, n_pids, inode, found, &n) < 0)
                return unknown("the jail's processes' fds cannot be read");
        if (n == 0)
                return unknown("no process of the jail holds the connection's socket (it was passed on or closed)");
        if (n > 1) {
                json_t *list = json_array();
                for (size_t i = 0; list && i < n; i++)
                        json_array_append_new(list, json_integer(found[i]));
                return json_pack("{s:n, s:o?, s:s}", "pid", "pids", list, "note",
                                 "the connection's socket is shared by several processes (a fork)");
        }
        char path[64];
        _cleanup_free_ char *cmdline = NULL;
        size_t cmdlen = 0;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)found[0]);
        (void)aj_read_file(path, 4096, &cmdline, &cmdlen);
        /* The agent's bytes: printable ASCII only (valid UTF-8 for the chain). */
        for (size_t i = 0; cmdline && i + 1 < cmdlen; i++)
                if (cmdline[i] == 0)
                        cmdline[i] = ' ';
                else if ((unsigned char)cmdline[i] < 0x20 || (unsigned char)cmdline[i] >= 0x7f)
                        cmdline[i] = '?';
        if (cmdline && strlen(cmdline) > 256)
                cmdline[256] = 0;
        return json_pack("{s:i, s:i, s:s}", "pid", (int)found[0], "jail_pid", jail_pid(found[0]), "cmd",
                         cmdline ? cmdline : "");
}
