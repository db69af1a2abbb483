/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's terminal, supervisor side (the relay itself is src/tty.c): whether the run
 * has one, the operator's terminal saved, put in raw mode and restored, the relay between
 * it and the pty master in the loop, and the signals a terminal takes (SIGWINCH, ^C and
 * ^\ typed while raw, SIGCONT).
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/signalfd.h>
#include <termios.h>

#include "jail.h"
#include "spawn.h"
#include "tty.h"
#include "util/loop.h"

typedef struct {
        bool tty;    /* the jail has a pty of its own */
        int term_fd; /* the operator's terminal (stdin), -1 when stdin is none */
        struct termios term_saved;
        bool term_raw;                 /* term_fd is in raw mode: restore term_saved */
        unsigned clipboard_reads_told; /* the clipboard reads the operator was told of */
        int winsize_fd;                /* where the window size comes from, or -1 */
        AjTtyRelay *relay;
        AjLoopIo *io;
        int restore_flags[2]; /* stdin/stdout file status flags to put back, or -1 */
} AjSupTerminal;

#define AJ_SUP_TERMINAL_INIT                                                 \
        {                                                                    \
                .term_fd = -1, .winsize_fd = -1, .restore_flags = { -1, -1 } \
        }

/* Decided before the watchdog starts: it restores the terminal if the supervisor dies. */
int aj_sup_terminal_setup(AjSupTerminal *t, AjTtyMode mode);
/* The pty master from the jail (taken): relayed in `loop`, the jail's output to `output`.
 * Fails closed: a jail whose terminal nobody relays would hang (the caller kills it). */
int aj_sup_terminal_start(AjSupTerminal *t, AjLoop *loop, int master, AjTtyOutputFn output, void *userdata);
/* The jail has a pty of its own. */
bool aj_sup_terminal_has_tty(const AjSupTerminal *t);
/* The operator's terminal (-1: none) and its saved modes, for the watchdog to restore. */
int aj_sup_terminal_saved(const AjSupTerminal *t, const struct termios **ret_saved);
/* The child's standard input: the pty (with the operator's modes and window size), /dev/null
 * for a terminal without one, or stdin itself. */
void aj_sup_terminal_child_config(const AjSupTerminal *t, AjSpawnConfig *cfg);
/* A signal the terminal takes rather than the jail. */
bool aj_sup_terminal_takes_signal(AjSupTerminal *t, const struct signalfd_siginfo *si);
/* Everything the jail wrote to its terminal has reached ours (true without one). */
bool aj_sup_terminal_output_done(const AjSupTerminal *t);
/* Idempotent; on every way out of a run (the watchdog covers a supervisor that died). */
void aj_sup_terminal_restore(AjSupTerminal *t);
void aj_sup_terminal_stop(AjSupTerminal *t);
void aj_sup_terminal_done(AjSupTerminal *t);
