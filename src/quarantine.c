/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "quarantine.h"
#include "run-record.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/process.h"
#include "util/syscalls.h"

int aj_alert_log_open(const char *run_dir)
{
        char log[4096];
        if (aj_run_file_path(run_dir, AJ_RUN_FILE_ALERT_LOG, log, sizeof(log)) < 0)
                return -ENAMETOOLONG;
        /* A record like the others: a FIFO put in its place would hold the supervisor in
         * open(2) with no reader. */
        return aj_open_regular_at(AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND, 0640);
}

int aj_alert_start(char *const *argv, const char *run_dir, const char *run_id, const char *kind, const char *input,
                   int out, uint64_t timeout_ns, AjAlert *ret)
{
        if (!argv || !argv[0] || out < 0)
                return -EINVAL;
        char incident[4096];
        if (aj_run_file_path(run_dir, input, incident, sizeof(incident)) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int in = aj_open_regular_at(AT_FDCWD, incident, O_RDONLY, 0);
        if (in < 0)
                return in;
        /* Reports exec failure through a CLOEXEC pipe, so "command not found" is an error here. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        int pidfd = -1;
        pid_t pid = aj_fork_pidfd(&pidfd);
        if (pid < 0) {
                int r = pid;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                close(p[0]);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                signal(SIGPIPE, SIG_DFL);
                /* Not the supervisor's directory: that is where `agentjail run` started,
                 * the workspace as a rule, which the agent writes (a git command run there
                 * reads the agent's .git/config: core.fsmonitor is a command). */
                if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 || chdir("/") < 0)
                        _exit(127);
                setenv("AGENTJAIL_RUN_ID", run_id, 1);
                setenv("AGENTJAIL_ALERT", kind, 1);
                setenv("AGENTJAIL_ALERT_FILE", incident, 1);
                if (streq(kind, "breach"))
                        setenv("AGENTJAIL_INCIDENT", incident, 1);
                setsid();
                execvp(argv[0], argv);
                int e = errno;
                (void)!write(p[1], &e, sizeof(e));
                _exit(127);
        }
        close(p[1]);
        int e = 0;
        ssize_t n;
        do
                n = read(p[0], &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        close(p[0]);
        if (n == (ssize_t)sizeof(e)) {
                /* exec failed: reap the child, which exits at once. */
                siginfo_t si;
                waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
                close(pidfd);
                return -e;
        }
        *ret = (AjAlert){ .pid = pid, .pidfd = pidfd, .deadline_ns = aj_now_monotonic_ns() + timeout_ns };
        return 0;
}

/* `s` single-quoted for sh: each ' becomes '\'' (close, an escaped quote, reopen). */
static char *shell_quote(const char *s)
{
        size_t n = 3;
        for (const char *p = s; *p; p++)
                n += *p == '\'' ? 4 : 1;
        char *q = malloc(n), *o = q;
        if (!q)
                return NULL;
        *o++ = '\'';
        for (const char *p = s; *p; p++) {
                if (*p == '\'') {
                        memcpy(o, "'\\''", 4);
                        o += 4;
                } else {
                        *o++ = *p;
                }
        }
        *o++ = '\'';
        *o = '\0';
        return q;
}

int aj_approval_commands(const char *run_id, const char *call_id, const char *digest, char **ret_approve,
                         char **ret_deny)
{
        _cleanup_free_ char *call = shell_quote(call_id);
        if (!call)
                return -ENOMEM;
        char *approve = NULL, *deny = NULL;
        if ((digest ? asprintf(&approve, "agentjail approve %s %s --digest %s", run_id, call, digest)
                    : asprintf(&approve, "agentjail approve %s %s", run_id, call)) < 0)
                return -ENOMEM;
        if (asprintf(&deny, "agentjail deny %s %s --reason TEXT", run_id, call) < 0) {
                free(approve);
                return -ENOMEM;
        }
        *ret_approve = approve;
        *ret_deny = deny;
        return 0;
}
