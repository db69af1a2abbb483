/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"

static void raw(AjSupTerminal *t)
{
        if (t->term_fd < 0)
                return;
        int r = aj_tty_enter_raw(t->term_fd, &t->term_saved);
        if (r < 0)
                aj_log_errno(r, "Cannot put the terminal into raw mode");
        else {
                t->term_raw = true;
                aj_log_set_crlf(isatty(STDERR_FILENO));
                aj_log_set_lead(isatty(STDERR_FILENO) ? aj_tty_reset_text() : NULL);
        }
}

void aj_sup_terminal_restore(AjSupTerminal *t)
{
        if (t->term_raw) {
                /* Raw still: the terminal's late answers to the jail's queries are read
                 * and dropped, not echoed, before the shell can have them. */
                int r = t->relay ? aj_tty_relay_fence(t->relay, AJ_TTY_FENCE_MS) : 0;
                if (r < 0)
                        aj_debug("the terminal's answers were not fenced: %s", strerror(-r));
                (void)aj_tty_restore(t->term_fd, &t->term_saved);
                t->term_raw = false;
                aj_log_set_crlf(false);
                aj_log_set_lead(NULL);
        }
        unsigned reads = t->relay ? aj_tty_relay_clipboard_reads(t->relay) : 0;
        if (reads > t->clipboard_reads_told) {
                aj_warning("The run's output asked your terminal %u time%s for your clipboard (OSC 52): not passed on",
                           reads, reads == 1 ? "" : "s");
                t->clipboard_reads_told = reads;
        }
}

int aj_sup_terminal_setup(AjSupTerminal *t, AjTtyMode mode)
{
        bool stdin_tty = isatty(STDIN_FILENO);
        t->tty = mode == AJ_TTY_ALWAYS || (mode == AJ_TTY_AUTO && stdin_tty);
        if (!t->tty)
                return 0;
        if (stdin_tty) {
                if (tcgetattr(STDIN_FILENO, &t->term_saved) < 0)
                        return aj_log_errno(-errno, "Cannot read the terminal's settings");
                t->term_fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
                if (t->term_fd < 0)
                        return aj_log_errno(-errno, "Cannot duplicate the terminal's fd");
                t->winsize_fd = t->term_fd;
        } else if (isatty(STDOUT_FILENO))
                t->winsize_fd = STDOUT_FILENO;
        return 0;
}

bool aj_sup_terminal_has_tty(const AjSupTerminal *t) { return t->tty; }

int aj_sup_terminal_saved(const AjSupTerminal *t, const struct termios **ret_saved)
{
        *ret_saved = &t->term_saved;
        return t->term_fd;
}

void aj_sup_terminal_child_config(const AjSupTerminal *t, AjSpawnConfig *cfg)
{
        if (!t->tty) {
                cfg->stdin_mode = isatty(STDIN_FILENO) ? AJ_STDIN_NULL : AJ_STDIN_INHERIT;
                return;
        }
        cfg->stdin_mode = AJ_STDIN_PTY;
        if (t->winsize_fd >= 0)
                (void)ioctl(t->winsize_fd, TIOCGWINSZ, &cfg->winsize);
        /* The operator's erase character, UTF-8 input, ...: as ssh and script(1) do. */
        cfg->have_termios = t->term_fd >= 0;
        cfg->termios = t->term_saved;
}

static void on_relay(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd, (void)revents;
        AjSupTerminal *t = userdata;
        (void)aj_tty_relay_dispatch(t->relay);
}

int aj_sup_terminal_start(AjSupTerminal *t, AjLoop *loop, int master, AjTtyOutputFn output, void *userdata)
{
        if (!t->tty || t->relay) {
                close(master);
                return 0;
        }
        int in = -1, out = -1, r;
        if (aj_tty_reopen_nonblock(STDIN_FILENO, O_RDONLY, &in, &t->restore_flags[0]) < 0)
                in = -1; /* no input: the jail's terminal only shows output */
        r = aj_tty_reopen_nonblock(STDOUT_FILENO, O_WRONLY, &out, &t->restore_flags[1]);
        if (r < 0)
                out = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (out < 0) {
                r = -errno;
                if (in >= 0)
                        close(in);
                close(master);
        } else /* owns the three fds, also when it fails */
                r = aj_tty_relay_new(in, out, master, output, userdata, &t->relay);
        if (r >= 0)
                r = aj_loop_add_io(loop, aj_tty_relay_fd(t->relay), EPOLLIN, on_relay, t, &t->io);
        if (r < 0)
                return aj_log_errno(r, "Cannot relay the jail's terminal");
        if (t->winsize_fd >= 0)
                (void)aj_tty_copy_winsize(t->winsize_fd, master);
        raw(t);
        (void)aj_tty_relay_dispatch(t->relay);
        return 0;
}

/* Signals in tty mode: the window size goes to the pty (whose line discipline signals
 * the jail), ^C and ^\ typed at our own terminal were relayed as bytes in raw mode. */
bool aj_sup_terminal_takes_signal(AjSupTerminal *t, const struct signalfd_siginfo *si)
{
        if (!t->tty)
                return false;
        switch (si->ssi_signo) {
        case SIGWINCH:
                if (t->relay && t->winsize_fd >= 0)
                        (void)aj_tty_copy_winsize(t->winsize_fd, aj_tty_relay_master(t->relay));
                return true;
        case SIGINT:
        case SIGQUIT:
                /* From our terminal while it is raw: the byte already went to the jail (with
                 * `-t` and a terminal that is not raw, ^C is forwarded as without a pty). */
                return t->term_raw && si->ssi_code == SI_KERNEL;
        case SIGCONT:
                /* Stopped and continued: the shell set its own modes meanwhile. */
                if (t->term_raw)
                        raw(t);
                if (t->relay && t->winsize_fd >= 0)
                        (void)aj_tty_copy_winsize(t->winsize_fd, aj_tty_relay_master(t->relay));
                return false;
        default:
                return false;
        }
}

bool aj_sup_terminal_output_done(const AjSupTerminal *t) { return !t->relay || aj_tty_relay_output_done(t->relay); }

void aj_sup_terminal_stop(AjSupTerminal *t)
{
        aj_loop_io_remove(t->io);
        t->io = NULL;
}

void aj_sup_terminal_done(AjSupTerminal *t)
{
        aj_sup_terminal_stop(t);
        aj_tty_relay_free(t->relay);
        t->relay = NULL;
        for (int i = 0; i < 2; i++)
                if (t->restore_flags[i] >= 0)
                        (void)fcntl(i, F_SETFL, t->restore_flags[i]);
        t->restore_flags[0] = t->restore_flags[1] = -1;
        if (t->term_fd >= 0)
                close(t->term_fd);
        t->term_fd = -1;
}
