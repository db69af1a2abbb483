/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's terminal, supervisor side: the operator's terminal in raw mode (saved and
 * restored), and a relay between it and the master of the pseudo-terminal the jail
 * created in its own devpts instance. The operator's terminal is never an fd in the jail.
 *
 * The relay owns an epoll fd that the supervisor adds to its loop as one source, and a
 * dispatch() that does all ready work without blocking. Each direction has one bounded
 * buffer: when it is full the relay stops reading that direction's source (back-pressure).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <termios.h>

/* Bytes buffered per direction at most. */
#define AJ_TTY_BUF_SIZE 16384

/* cfmakeraw() without touching anything but the mode bits: no echo, no line editing, no
 * signals from ^C/^Z/^\, no CR/NL translation, 8-bit, one byte at a time. Pure. */
void aj_tty_make_raw(struct termios *t);

/* Put the terminal `fd` into raw mode; `saved` is its current state (tcgetattr). */
int aj_tty_enter_raw(int fd, const struct termios *saved);
/* Set `saved` back, draining what was written first. Never stops the caller: a process
 * in the background of that terminal leaves it to its foreground (-EPERM). */
int aj_tty_restore(int fd, const struct termios *saved);
/* The same, on behalf of process group `pgrp` (the watchdog, in a group of its own,
 * restores for the supervisor's): only while `pgrp` is the terminal's foreground. */
int aj_tty_restore_for(int fd, const struct termios *saved, pid_t pgrp);

/* Copy the window size of terminal `from` to pty master `to` (which signals SIGWINCH
 * to the jail's foreground process group when it changed). */
int aj_tty_copy_winsize(int from, int to);

/* A private open file description of `fd` (its /proc/self/fd entry reopened) with
 * O_NONBLOCK, so that the operator's shell's description stays blocking. Falls back to
 * a dup() for what cannot be reopened (regular files: never block anyway; sockets:
 * O_NONBLOCK is set on the shared description and *ret_restore_flags says what to put
 * back, else -1). `acc` is O_RDONLY or O_WRONLY. */
int aj_tty_reopen_nonblock(int fd, int acc, int *ret_fd, int *ret_restore_flags);

typedef struct AjTtyRelay AjTtyRelay;

/* Called with every chunk read from the master (the transcript). */
typedef void (*AjTtyOutputFn)(void *userdata, const void *buf, size_t n);

/* in_fd: the operator's input (-1: none), out_fd: where the jail's output goes; both
 * non-blocking where they can be polled (see aj_tty_reopen_nonblock); the relay owns all
 * three fds, also when it fails. The master is made non-blocking. */
int aj_tty_relay_new(int in_fd, int out_fd, int master_fd, AjTtyOutputFn on_output, void *userdata, AjTtyRelay **ret);
int aj_tty_relay_fd(const AjTtyRelay *t);
int aj_tty_relay_master(const AjTtyRelay *t);
/* Do all reads and writes that do not block; returns < 0 only on an epoll failure. */
int aj_tty_relay_dispatch(AjTtyRelay *t);
/* The jail's side is closed (every slave fd gone) and its output written or dropped. */
bool aj_tty_relay_output_done(const AjTtyRelay *t);
/* Bytes held in each direction's buffer (tests, bounds). */
void aj_tty_relay_buffered(const AjTtyRelay *t, size_t *ret_in, size_t *ret_out);
/*
 * Escape sequences, one byte at a time: what the relay looks for in either direction (the
 * jail's DA1 queries, the terminal's DA1 answers, the jail's clipboard reads) is found on
 * these tokens. ESC x; CSI (ESC [, the C1 byte 0x9b, U+009B in UTF-8), its parameter bytes
 * ('0' to '?') and the byte that ends it (any other: its final, whatever it is); OSC (ESC ],
 * 0x9d, U+009D) and DCS (ESC P, 0x90, U+0090) and their strings up to a terminator (BEL
 * for OSC, ST: ESC \ or 0x9c; CAN, SUB). ESC and the C1 CSI, OSC and DCS bytes begin a
 * new sequence wherever they are, as any UTF-8 character's second byte too (generous: the
 * 9b of U+00DB, C3 9B, begins a CSI as U+009B's does).
 * A sequence split across reads is carried in the state.
 */
typedef enum {
        AJ_TTY_ESC_TEXT,       /* a byte of no sequence */
        AJ_TTY_ESC_PART,       /* an introducer's first byte (ESC, UTF-8's 0xc2), a string's end
                                * (ESC \ is an ESC x) */
        AJ_TTY_ESC_FINAL,      /* ESC x ended: `final` x */
        AJ_TTY_ESC_CSI,        /* a CSI began (`intro` bytes) */
        AJ_TTY_ESC_CSI_PARAM,  /* one of its parameter bytes */
        AJ_TTY_ESC_CSI_FINAL,  /* it ended: `final`, and what its parameters held */
        AJ_TTY_ESC_STRING,     /* an OSC or DCS began (`intro` bytes; `kind`) */
        AJ_TTY_ESC_STRING_BYTE /* a byte of its string */
} AjTtyEscEvent;

typedef struct {
        unsigned char state;  /* where the scan is (tty.c) */
        unsigned char kind;   /* the string's: ']' OSC, 'P' DCS */
        unsigned char intro;  /* the last introducer's length in bytes: 1 (C1), 2 */
        unsigned char final;  /* the byte that ended the last ESC x or CSI */
        unsigned char marker; /* the CSI's first parameter byte when it is '<' to '?', else 0 */
        unsigned params;      /* its parameter bytes, */
        unsigned privates;    /* those of them '<' to '?', wherever they are, */
        unsigned colons;      /* and ':' */
} AjTtyEsc;

AjTtyEscEvent aj_tty_esc_feed(AjTtyEsc *e, unsigned char c);

/* The jail's output never asks the operator's terminal for the clipboard: OSC 52 with the
 * data '?', which a terminal set to answer it (tmux's set-clipboard on, xterm's
 * GetSelection allowed) answers with what the operator last copied, typed into the jail.
 * Each is taken out of the output before it is written (its introducer through the '?':
 * what follows is text); clipboard writes and every other sequence pass as they are. How
 * many were taken out. The transcript (on_output) keeps them. */
unsigned aj_tty_relay_clipboard_reads(const AjTtyRelay *t);
/* The length of the clipboard read (above) at `p` (n bytes) to take out, 0 when `p` does not
 * begin one, (size_t)-1 when the bytes end before that is known (exposed for tests). */
size_t aj_tty_clipboard_read_at(const unsigned char *p, size_t n);
/* Before the operator's terminal is restored, when the jail's output reached it: what the
 * jail left set that would hide or garble what is printed after the run is reset (a
 * control string left open, the rendition, the character sets). And
 * the terminal answers the queries the jail printed last (a cursor position or device
 * attributes report, a window title) once it has read them, which may be after the jail
 * has ended, and the operator's shell would read the answers as typed. So when that
 * terminal is also the input, ask it for its device attributes (DA1) and read and drop
 * what it sends until that answer is in: the answers come in order, and the relay counts
 * the jail's DA1 queries and their answers to tell ours. `timeout_ms` at most (a terminal
 * that does not answer DA1, or not each of the jail's queries: -ETIMEDOUT). 0 when done
 * or nothing to do, else -errno. */
#define AJ_TTY_FENCE_MS 500
int aj_tty_relay_fence(AjTtyRelay *t, int timeout_ms);
/* The reset above alone, for output that reached a terminal through a pipe (a --no-tty run
 * from a terminal): written to fd when it is a terminal this process group has in the
 * foreground, within timeout_ms (a stopped terminal: -ETIMEDOUT). 0 when written or not a
 * terminal, else -errno. */
int aj_tty_reset_rendition(int fd, int timeout_ms);
/* That reset's text (for log.h aj_log_set_lead). */
const char *aj_tty_reset_text(void);
void aj_tty_relay_free(AjTtyRelay *t);
