/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail mcp [--name SERVER] -- CMD [ARG...]`, inside a jail: CMD is an MCP server
 * over stdio; this process relays JSON-RPC lines between it and the MCP client on our
 * own stdin/stdout, and asks the run's broker ($AGENTJAIL_BROKER) before every
 * tools/call (src/mcp.c judges and rewrites each line; cli/mcp-*.c are the I/O).
 *
 * This file: the command line, the server process and its signals, the relay's setup
 * and its loop. The relay's state and its parts are in cli/mcp-relay.h.
 */
#include "cli/mcp-cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/mcp-relay.h"
#include "tty.h"
#include "util/fd.h"
#include "util/format.h"

/* How long the server's stdout may stay open after it exited (a child of its own holds it). */
#define DRAIN_AFTER_EXIT_NS (2ull * 1000000000ull)

static const char help[] =
        "Usage: agentjail mcp [--name SERVER] -- CMD [ARG...]   (inside a jail: talks to $" AJ_BROKER_ENV ")\n"
        "\n"
        "Run the MCP server CMD over stdio behind a relay: the MCP client talks to this\n"
        "command's stdin and stdout. Every tools/call is first asked of the run's broker as\n"
        "the tool mcp.SERVER.TOOL: allowed calls go to the server, denied ones get a JSON-RPC\n"
        "error, calls the profile's approvals hold wait for an operator (other messages keep\n"
        "flowing); results are reported as tool_result. tools/list results do not show the\n"
        "tools the profile's tools rules deny. The exit status is the server's.\n"
        "\n"
        "Options:\n"
        "  -n, --name SERVER   the server's name in tool names ([A-Za-z0-9_-], at most 64;\n"
        "                      default: CMD's base name with other characters as '_')\n"
        "  -h, --help          this text\n";

int aj_mcp_cmd_parse(int argc, char **argv, AjMcpCmd *ret, AjError *ret_error)
{
        AjMcpCmd c = {};
        const char *name = NULL;
        int i = 1;

        for (; i < argc; i++) {
                const char *a = argv[i];
                if (streq(a, "--")) {
                        i++;
                        break;
                }
                if (streq(a, "-h") || streq(a, "--help")) {
                        *ret = (AjMcpCmd){ .help = true };
                        return 0;
                }
                if (streq(a, "--name") || streq(a, "-n")) {
                        if (i + 1 >= argc)
                                return aj_error_set(ret_error, -EINVAL, "%s needs a value", a);
                        name = argv[++i];
                        continue;
                }
                if (strncmp(a, "--name=", 7) == 0) {
                        name = a + 7;
                        continue;
                }
                if (a[0] == '-')
                        return aj_error_set(ret_error, -EINVAL, "unknown option \"%s\"", a);
                break; /* CMD without "--" */
        }
        if (i >= argc)
                return aj_error_set(ret_error, -EINVAL, "missing the server command (agentjail mcp -- CMD [ARG...])");
        if (name) {
                if (!aj_mcp_server_name_valid(name))
                        return aj_error_set(ret_error, -EINVAL,
                                            "--name: \"%s\" must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'",
                                            name, AJ_MCP_MAX_SERVER);
                snprintf(c.server, sizeof(c.server), "%s", name);
        } else {
                aj_mcp_server_from_command(argv[i], c.server);
        }
        c.argv = argv + i;
        *ret = c;
        return 0;
}

void mcp_note(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("agentjail mcp: ", stderr);
        (void)aj_vfprintf_printable(stderr, fmt, ap); /* ids and errors from the server's messages */
        fputc('\n', stderr);
        va_end(ap);
}

/* ---- the server process, signals ---- */

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

static void reap(Relay *r)
{
        int st;
        pid_t p = waitpid(r->pid, &st, WNOHANG);
        if (p != r->pid)
                return;
        r->exited = true;
        r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        (void)aj_loop_timer_set_in(&r->drain_timer, DRAIN_AFTER_EXIT_NS);
}

static void on_signal(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        Relay *r = userdata;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD)
                        reap(r);
                else if (!r->exited)
                        (void)kill(r->pid, (int)si.ssi_signo);
        }
}

static void on_drain_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        Relay *r = userdata;
        if (!r->server_out.eof) {
                mcp_note("the server exited but its stdout is still open; not waiting for it");
                r->server_out.eof = r->server_out.done = true;
                aj_loop_io_remove(r->server_out.io);
                r->server_out.io = NULL;
        }
}

static int spawn_server(Relay *r, char **argv, const sigset_t *oldmask)
{
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0) {
                int e = -errno;
                close(in[0]);
                close(in[1]);
                return e;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                close(in[0]);
                close(in[1]);
                close(out[0]);
                close(out[1]);
                return e;
        }
        if (pid == 0) {
                /* The server dies with the relay: it must never run with nothing asking the broker. */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
                        _exit(126);
                signal(SIGPIPE, SIG_DFL);
                sigprocmask(SIG_SETMASK, oldmask, NULL);
                execvp(argv[0], argv);
                int e = errno;
                aj_fprintf_printable(stderr, "agentjail mcp: cannot run '%s': %s", argv[0], strerror(e));
                fputc('\n', stderr);
                _exit(e == ENOENT ? 127 : 126);
        }
        close(in[0]);
        close(out[1]);
        r->pid = pid;
        r->server_in.fd = in[1];
        r->server_out.fd = out[0];
        if (aj_fd_set_nonblock(in[1], true) < 0 || aj_fd_set_nonblock(out[0], true) < 0)
                return -errno;
        return 0;
}

static bool finished(Relay *r)
{
        if (!r->exited || !r->server_out.done)
                return false;
        return r->client_out.dead || aj_outbuf_pending(&r->client_out.out) == 0;
}

static void relay_free(Relay *r)
{
        for (size_t i = 0; i < MAX_PENDING; i++)
                mcp_pending_free(&r->pending[i]);
        aj_loop_timer_stop(&r->drain_timer);
        aj_outbuf_clear(&r->client_out.out);
        aj_outbuf_clear(&r->server_in.out);
        aj_outbuf_clear(&r->broker.out);
        free(r->client_in.buf);
        free(r->server_out.buf);
        free(r->broker.buf);
        aj_loop_free(r->loop);
        int fds[] = { r->client_out.fd, r->client_in.fd, r->server_in.fd, r->server_out.fd, r->broker.fd, r->sig_fd };
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static int relay_setup(Relay *r, char **argv, sigset_t *oldmask)
{
        int s, restore;
        sigset_t mask;

        sigemptyset(&mask);
        for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
                sigaddset(&mask, forwarded[i]);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, oldmask) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        r->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (r->sig_fd < 0)
                return -errno;
        if ((s = aj_loop_new(&r->loop)) < 0)
                return s;
        aj_loop_timer_init(r->loop, &r->drain_timer, on_drain_timeout, r);
        if ((s = mcp_broker_connect(r)) < 0) {
                mcp_note("cannot reach the broker at '%s': %s", r->broker_path, strerror(-s));
                return s;
        }
        /* Private non-blocking descriptions of our stdin/stdout (the client's are left alone). */
        if ((s = aj_tty_reopen_nonblock(0, O_RDONLY, &r->client_in.fd, &restore)) < 0 ||
            (s = aj_tty_reopen_nonblock(1, O_WRONLY, &r->client_out.fd, &restore)) < 0)
                return s;
        if ((s = spawn_server(r, argv, oldmask)) < 0) {
                mcp_note("cannot start '%s': %s", argv[0], strerror(-s));
                return s;
        }
        if ((s = aj_loop_add_io(r->loop, r->sig_fd, EPOLLIN, on_signal, r, &r->sig_io)) < 0 ||
            (s = aj_loop_add_io(r->loop, r->server_out.fd, EPOLLIN, mcp_on_reader, r, &r->server_out.io)) < 0 ||
            (s = aj_loop_add_io(r->loop, r->server_in.fd, 0, mcp_on_writer, r, &r->server_in.io)) < 0)
                return s;
        /* A file or /dev/null on stdin or stdout (scripts, tests) is not pollable, and never
         * blocks: read when there is room, written at once. */
        s = aj_loop_add_io(r->loop, r->client_in.fd, EPOLLIN, mcp_on_reader, r, &r->client_in.io);
        if (s == -EPERM)
                r->client_in.unpolled = true;
        else if (s < 0)
                return s;
        s = aj_loop_add_io(r->loop, r->client_out.fd, 0, mcp_on_writer, r, &r->client_out.io);
        return s == -EPERM ? 0 : s;
}

int aj_cmd_mcp(int argc, char **argv)
{
        AjMcpCmd cmd;
        _cleanup_(aj_error_clear) AjError err = {};
        sigset_t oldmask;

        int s = aj_mcp_cmd_parse(argc, argv, &cmd, &err);
        if (s < 0) {
                mcp_note("%s", aj_error_text(&err, s));
                return 2;
        }
        if (cmd.help) {
                fputs(help, stdout);
                return 0;
        }
        const char *path = getenv(AJ_BROKER_ENV);
        if (!path || !*path) {
                /* Without a broker nothing could be asked: the server is not started (fail closed). */
                mcp_note("$%s is not set (not inside an agentjail run?)", AJ_BROKER_ENV);
                return 2;
        }

        Relay *r = calloc(1, sizeof(*r));
        if (!r)
                return 2;
        r->server = cmd.server;
        r->broker_path = path;
        r->broker.fd = r->client_in.fd = r->client_out.fd = r->server_in.fd = r->server_out.fd = r->sig_fd = -1;
        s = relay_setup(r, cmd.argv, &oldmask);
        if (s < 0) {
                if (r->pid > 0) {
                        kill(r->pid, SIGKILL);
                        waitpid(r->pid, NULL, 0);
                }
                relay_free(r);
                free(r);
                return 2;
        }
        while (!finished(r) && !r->failed) {
                bool read_now = r->client_in.unpolled && !r->client_in.eof && !mcp_reader_blocked(r, &r->client_in);
                s = aj_loop_dispatch(r->loop, read_now ? 0 : -1);
                if (s >= 0 && read_now)
                        mcp_reader_read(r, &r->client_in);
                if (s < 0) {
                        mcp_note("event loop: %s", strerror(-s));
                        break;
                }
                /* Lines left in a buffer while an output was full, and an end not yet acted on. */
                if (!mcp_reader_blocked(r, &r->client_in) && (r->client_in.len > 0 || r->client_in.eof))
                        mcp_reader_process(r, &r->client_in);
                if (!mcp_reader_blocked(r, &r->server_out) && (r->server_out.len > 0 || r->server_out.eof))
                        mcp_reader_process(r, &r->server_out);
                if (r->client_in.done)
                        mcp_client_closed(r);
                mcp_update_interest(r);
        }
        if (!r->exited) {
                kill(r->pid, SIGKILL);
                waitpid(r->pid, NULL, 0);
                r->status = 2;
        }
        int status = r->status;
        relay_free(r);
        free(r);
        return status;
}
