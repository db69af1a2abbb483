/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sched.h>
#include <stdbool.h>
#include <sys/types.h>

/* fork() with a pidfd made in the same step (clone3 CLONE_PIDFD): the pidfd names this
 * child even when SIGCHLD is ignored and the kernel reaps it at once, so signalling or
 * polling it can never reach a recycled pid. Returns the pid (0 in the child, with
 * *ret_pidfd untouched) or -errno. No atfork handlers run: the caller must have no
 * other threads if the child calls malloc(). */
pid_t aj_fork_pidfd(int *ret_pidfd);

/* A task kept off the caller's CPU for a while, and the CPUs to give it back. */
typedef struct {
        cpu_set_t cpus; /* the caller's, when placed */
        bool placed;
} AjCpuPlacement;

/* A new child waits on its parent's CPU until that one is free or another CPU takes it, which
 * on a 2-CPU host took up to a millisecond with the other idle (docs/performance.md, session
 * 24). Lets pid run on every CPU the caller may use but the one it is on now (moved at once
 * when it waits for a CPU); nothing when there is no other, or on error. */
void aj_cpus_place_away(pid_t pid, AjCpuPlacement *p);
/* Gives pid every CPU the caller had, if it was placed: 0, or -errno. */
int aj_cpus_place_back(pid_t pid, AjCpuPlacement *p);
