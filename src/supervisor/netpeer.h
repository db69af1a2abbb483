/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which of the jail's processes opened a connection to the proxy (for a host approval's
 * "process"). TCP has no peer credentials, so it is found the long way: the client's
 * socket in the jail's /proc/net/tcp (its local address is the accepted socket's peer),
 * its inode, then the jail's processes that hold that inode as an fd. All of it bounded.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Bytes of /proc/PID/net/tcp{,6} read (some 7000 sockets): past it, not known. */
#define AJ_NET_PEER_MAX_TABLE (1024 * 1024)
/* fd entries looked at across the jail's processes per lookup. */
#define AJ_NET_PEER_MAX_FDS 65536

/* Pure: the inode of the socket whose local address is `local` and remote `remote` in a
 * /proc/net/tcp or tcp6 table (`text`, `len` bytes). 0 with *ret_inode, -ENOENT when no
 * line has them, -EAFNOSUPPORT for an address of another family. */
int aj_net_peer_find_inode(const char *text, size_t len, const struct sockaddr *local, const struct sockaddr *remote,
                           uint64_t *ret_inode);

/* The process(es) of the jail holding the client end of `fd` (a socket the proxy
 * accepted in the jail's network namespace): {"pid", "jail_pid", "cmd"} when exactly one
 * holds it, else {"pid": null, "pids"?, "note"}. `ns_pid` is any process in that
 * namespace (init); `pids` the jail's processes (host pids). New reference, NULL without
 * memory. */
json_t *aj_net_peer_process(pid_t ns_pid, const pid_t *pids, size_t n_pids, int fd);
