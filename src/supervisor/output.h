/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's output: its stdout and stderr pipes appended to stdout.log/stderr.log and
 * passed on to ours without ever blocking the loop (ours reopened non-blocking; while a
 * slow reader has not taken a chunk, the jail's pipe is not read: the jail waits, not the
 * wall clock, kill or a breach), and the terminal's transcript, tty.log. Every log is cut
 * at logs.output_bytes (log.truncated once). Reading is charged to the work budget.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "supervisor/sink.h"
#include "supervisor/work.h"
#include "util/loop.h"

typedef struct {
        int fd;  /* read end of the command's pipe */
        int out; /* our own stdout/stderr, -1 once it failed (EPIPE) */
        int log; /* stdout.log / stderr.log / tty.log */
        bool eof;
        const char *name; /* "stdout", "stderr", "tty": for log.truncated */
        uint64_t logged;  /* bytes in the log, at most logs.output_bytes */
        bool log_cut;     /* log.truncated recorded */
        /* Passing it on never blocks the supervisor: `out` reopened non-blocking (-1: could
         * not be, plain blocking writes), what a slow reader has not taken yet, and while
         * that is pending the jail's pipe is not read (the jail waits, not the loop). */
        int wfd;
        int wfd_restore; /* out's file status flags to put back (shared with others), or -1 */
        AjLoopIo *io;    /* fd in the loop, while reading */
        AjLoopIo *wio;   /* wfd in the loop, waiting for room */
        char *pend;
        size_t pend_len, pend_off;
        bool passed; /* some of the jail's output was passed on to `out` */
} AjSupStream;

typedef struct {
        AjLoop *loop;
        AjSupSink events;
        AjSupWork *work;
        uint64_t log_cap;       /* logs.output_bytes */
        AjSupStream streams[2]; /* stdout, stderr */
        AjSupStream tty_log;    /* tty.log, the transcript: only its log and logged count */
} AjSupOutput;

#define AJ_SUP_STREAM_INIT(o, n)                                                           \
        {                                                                                  \
                .fd = -1, .out = (o), .log = -1, .name = (n), .wfd = -1, .wfd_restore = -1 \
        }
#define AJ_SUP_OUTPUT_INIT                                                                       \
        {                                                                                        \
                .streams = { AJ_SUP_STREAM_INIT(1, "stdout"), AJ_SUP_STREAM_INIT(2, "stderr") }, \
                .tty_log = AJ_SUP_STREAM_INIT(-1, "tty")                                         \
        }

void aj_sup_output_init(AjSupOutput *o, AjLoop *loop, uint64_t log_cap, AjSupWork *work, const AjSupSink *events);
/* With a terminal the jail has no pipes: all output is the pty's. */
void aj_sup_output_no_pipes(AjSupOutput *o);
/* Takes the read ends of the command's pipes (made non-blocking here). */
void aj_sup_output_set_pipes(AjSupOutput *o, int out_fd, int err_fd);
/* stdout.log and stderr.log, or tty.log (in run_dir): regular files only (a symlink or a
 * FIFO there is refused at once); logs a failure, naming the file. */
int aj_sup_output_open_logs(AjSupOutput *o, const char *run_dir, bool tty);
/* Into the loop: our stdout/stderr reopened non-blocking, the pipes read. */
int aj_sup_output_start(AjSupOutput *o);
/* The work budget paused or resumed: stop or start reading. */
void aj_sup_output_update(AjSupOutput *o);
/* What the terminal relay read from the jail, for tty.log. */
void aj_sup_output_tty(void *userdata, const void *buf, size_t n);
bool aj_sup_output_eof(const AjSupOutput *o);
/* Something our reader has not taken yet. */
bool aj_sup_output_pending(const AjSupOutput *o);
/* The run has ended and the operator asked us to stop (a signal) while our reader takes no
 * more: what waits for it is dropped and the rest of the jail's output goes to the logs
 * only. Returns the bytes dropped. */
size_t aj_sup_output_abandon_reader(AjSupOutput *o);
/* Out of the loop (before it is freed). */
void aj_sup_output_stop(AjSupOutput *o);
/* The run is over, before agentjail's last messages: the rest to a reader that was slow
 * (blocking), then, on each of our stdout and stderr that is a terminal the jail's output
 * reached, what the jail left set that would hide what comes after (aj_tty_reset_rendition:
 * a control string left open, concealed text, line drawing), as a terminal of its own is
 * reset (aj_tty_relay_fence). */
void aj_sup_output_reset_terminals(AjSupOutput *o);
/* At the very end, after the records and the clean up: the rest to a reader that was slow,
 * blocking now that nothing else waits on the loop; the shared flags put back; closed. */
void aj_sup_output_done(AjSupOutput *o);
