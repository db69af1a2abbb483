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
