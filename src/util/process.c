/* SPDX-License-Identifier: Apache-2.0 */
#include "util/process.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>

#include "util/syscalls.h"

pid_t aj_fork_pidfd(int *ret_pidfd)
{
        int pidfd = -1;
        struct clone_args args = { .flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD };
        pid_t pid = sys_clone3(&args);
        if (pid < 0)
                return -errno;
        if (pid > 0)
                *ret_pidfd = pidfd;
        return pid;
}

void aj_cpus_place_away(pid_t pid, AjCpuPlacement *p)
{
        p->placed = false;
        int here = sched_getcpu();
        if (here < 0 || sched_getaffinity(0, sizeof(p->cpus), &p->cpus) < 0 || !CPU_ISSET(here, &p->cpus))
                return;
        cpu_set_t away = p->cpus;
        CPU_CLR(here, &away);
        p->placed = CPU_COUNT(&away) > 0 && sched_setaffinity(pid, sizeof(away), &away) == 0;
}

int aj_cpus_place_back(pid_t pid, AjCpuPlacement *p)
{
        if (!p->placed)
                return 0;
        p->placed = false;
        return sched_setaffinity(pid, sizeof(p->cpus), &p->cpus) < 0 ? -errno : 0;
}
