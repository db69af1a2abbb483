/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* fork() with a pidfd made in the same step (clone3 CLONE_PIDFD): the pidfd names this
 * child even when SIGCHLD is ignored and the kernel reaps it at once, so signalling or
 * polling it can never reach a recycled pid. Returns the pid (0 in the child, with
 * *ret_pidfd untouched) or -errno. No atfork handlers run: the caller must have no
 * other threads if the child calls malloc(). */
pid_t aj_fork_pidfd(int *ret_pidfd);
