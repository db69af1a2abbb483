/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "run-record.h"
#include "tty.h"
#include "util/fd.h"

#define OUTPUT_CHUNK 65536

static void on_readable(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
static void on_writable(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

void aj_sup_output_init(AjSupOutput *o, AjLoop *loop, uint64_t log_cap, AjSupWork *work, const AjSupSink *events)
{
        *o = (AjSupOutput)AJ_SUP_OUTPUT_INIT;
        o->loop = loop;
        o->events = *events;
        o->work = work;
        o->log_cap = log_cap;
}

void aj_sup_output_no_pipes(AjSupOutput *o) { o->streams[0].eof = o->streams[1].eof = true; }

void aj_sup_output_set_pipes(AjSupOutput *o, int out_fd, int err_fd)
{
        o->streams[0].fd = out_fd;
        o->streams[1].fd = err_fd;
        (void)aj_fd_set_nonblock(out_fd, true);
        (void)aj_fd_set_nonblock(err_fd, true);
}

/* As the run's other records: a symlink or a FIFO in a log's place is refused at once, not
 * written through nor waited on for a reader with the supervisor held in open(2). */
static int open_log(const char *dir, const char *name, int *ret_fd)
{
        char path[4096];
        int r = aj_run_file_path(dir, name, path, sizeof(path));
        if (r >= 0)
                r = aj_open_regular_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND, 0640);
        if (r < 0) {
                aj_error("Failed to create the output log '%s/%s': %s", dir, name, aj_file_error_text(r));
                return r;
        }
        *ret_fd = r;
        return 0;
}

int aj_sup_output_open_logs(AjSupOutput *o, const char *run_dir, bool tty)
{
        if (tty)
                return open_log(run_dir, AJ_RUN_FILE_TTY, &o->tty_log.log);
        int r = open_log(run_dir, AJ_RUN_FILE_STDOUT, &o->streams[0].log);
        return r < 0 ? r : open_log(run_dir, AJ_RUN_FILE_STDERR, &o->streams[1].log);
}

/* Appends to a stream's log up to logs.output_bytes; past it the output still reaches
 * the operator (the caller passes it through) but the log is cut, and log.truncated is
 * recorded once. Every stream the run logs goes through here. */
static void log_output(AjSupOutput *o, AjSupStream *s, const char *buf, size_t n)
{
        if (s->log < 0)
                return;
        size_t fit = aj_log_cap_fit(s->logged, o->log_cap, n);
        if (fit > 0 && aj_write_all(s->log, buf, fit) < 0) {
                aj_warning("cannot write the run's output log: %s", strerror(errno));
                close(s->log);
                s->log = -1;
                return;
        }
        s->logged += fit;
        if (fit < n && !s->log_cut) {
                s->log_cut = true;
                aj_sup_emit(&o->events, "log.truncated",
                            json_pack("{s:s, s:I}", "stream", s->name, "limit", (json_int_t)o->log_cap));
        }
}

void aj_sup_output_tty(void *userdata, const void *buf, size_t n)
{
        AjSupOutput *o = userdata;
        log_output(o, &o->tty_log, buf, n);
}

/* The jail's pipe is read while nothing is pending for our reader and the agent's work
 * budget is not in debt. Out of the loop rather than with no events: a pipe whose writers
 * are gone reports EPOLLHUP whatever is asked, and the loop would spin on it. */
static void set_reading(AjSupOutput *o, AjSupStream *s)
{
        bool want = s->fd >= 0 && !s->eof && s->pend_len == 0 && !aj_sup_work_paused(o->work);
        if (want == (s->io != NULL))
                return;
        if (want)
                (void)aj_loop_add_io(o->loop, s->fd, EPOLLIN, on_readable, o, &s->io);
        else {
                aj_loop_io_remove(s->io);
                s->io = NULL;
        }
}

void aj_sup_output_update(AjSupOutput *o)
{
        for (int i = 0; i < 2; i++)
                set_reading(o, &o->streams[i]);
}

static void stop_polling_writer(AjSupStream *s)
{
        aj_loop_io_remove(s->wio);
        s->wio = NULL;
}

static void stop_writing(AjSupStream *s)
{
        s->out = -1; /* the reader went away (EPIPE); keep logging */
        s->pend_len = s->pend_off = 0;
        stop_polling_writer(s);
}

/* Writes what is pending; what the reader cannot take now waits for EPOLLOUT. */
static void flush(AjSupOutput *o, AjSupStream *s)
{
        while (s->pend_off < s->pend_len) {
                ssize_t n = write(s->wfd, s->pend + s->pend_off, s->pend_len - s->pend_off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        /* EPERM: a regular file, which never makes a writer wait. */
                        if (!s->wio)
                                (void)aj_loop_add_io(o->loop, s->wfd, EPOLLOUT, on_writable, o, &s->wio);
                        set_reading(o, s);
                        return;
                }
                if (n <= 0) {
                        stop_writing(s);
                        break;
                }
                s->pend_off += (size_t)n;
        }
        s->pend_len = s->pend_off = 0;
        stop_polling_writer(s);
        set_reading(o, s);
}

static void pass_on(AjSupOutput *o, AjSupStream *s, const char *buf, size_t n)
{
        s->passed |= n > 0;
        if (s->wfd < 0) {
                if (aj_write_all(s->out, buf, n) < 0)
                        s->out = -1;
                return;
        }
        if (!s->pend && !(s->pend = malloc(OUTPUT_CHUNK))) {
                if (aj_write_all(s->out, buf, n) < 0) /* no memory: wait, as before */
                        s->out = -1;
                return;
        }
        memcpy(s->pend, buf, n);
        s->pend_len = n;
        s->pend_off = 0;
        flush(o, s);
}

static void pump(AjSupOutput *o, AjSupStream *s)
{
        char buf[OUTPUT_CHUNK];
        while (s->pend_len == 0) {
                ssize_t n = read(s->fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        n = 0;
                }
                if (n == 0) {
                        s->eof = true;
                        set_reading(o, s);
                        return;
                }
                log_output(o, s, buf, (size_t)n);
                if (s->out >= 0)
                        pass_on(o, s, buf, (size_t)n);
        }
}

static void on_readable(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)fd, (void)revents;
        AjSupOutput *o = userdata;
        AjSupStream *s = &o->streams[io == o->streams[1].io];
        uint64_t t0 = aj_sup_work_start(o->work);
        pump(o, s);
        aj_sup_work_charge(o->work, t0);
}

static void on_writable(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)fd;
        AjSupOutput *o = userdata;
        AjSupStream *s = &o->streams[io == o->streams[1].wio];
        if (revents & (EPOLLERR | EPOLLHUP))
                stop_writing(s);
        else
                flush(o, s);
        set_reading(o, s);
}

/* Our stdout/stderr made non-blocking for the loop (a slow reader of agentjail's output
 * stalled the wall clock, kill and every breach until it read). */
int aj_sup_output_start(AjSupOutput *o)
{
        if (o->streams[0].fd < 0)
                return 0;
        for (int i = 0; i < 2; i++) {
                AjSupStream *s = &o->streams[i];
                if (s->out >= 0 && aj_tty_reopen_nonblock(s->out, O_WRONLY, &s->wfd, &s->wfd_restore) < 0)
                        s->wfd = -1;
        }
        for (int i = 0; i < 2; i++) {
                int r = aj_loop_add_io(o->loop, o->streams[i].fd, EPOLLIN, on_readable, o, &o->streams[i].io);
                if (r < 0)
                        return r;
        }
        /* The jail's stderr goes to ours: a terminal, its messages share it with the jail. */
        if (o->streams[1].out >= 0 && isatty(o->streams[1].out))
                aj_log_set_lead(aj_tty_reset_text());
        return 0;
}

bool aj_sup_output_eof(const AjSupOutput *o) { return o->streams[0].eof && o->streams[1].eof; }

bool aj_sup_output_pending(const AjSupOutput *o) { return o->streams[0].pend_len || o->streams[1].pend_len; }

void aj_sup_output_stop(AjSupOutput *o)
{
        for (int i = 0; i < 2; i++) {
                aj_loop_io_remove(o->streams[i].io);
                o->streams[i].io = NULL;
                stop_polling_writer(&o->streams[i]);
        }
}

/* What a slow reader has not taken yet, blocking: nothing else waits on the loop now. */
static void write_rest(AjSupStream *s)
{
        if (s->wfd >= 0 && s->out >= 0 && s->pend_off < s->pend_len && aj_fd_set_nonblock(s->wfd, false) >= 0)
                (void)aj_write_all(s->wfd, s->pend + s->pend_off, s->pend_len - s->pend_off);
        s->pend_off = s->pend_len = 0;
}

void aj_sup_output_reset_terminals(AjSupOutput *o)
{
        for (int i = 0; i < 2; i++) {
                AjSupStream *s = &o->streams[i];
                write_rest(s);
                if (s->passed && s->out >= 0)
                        (void)aj_tty_reset_rendition(s->out, AJ_TTY_FENCE_MS);
                s->passed = false;
        }
        aj_log_set_lead(NULL);
}

void aj_sup_output_done(AjSupOutput *o)
{
        for (int i = 0; i < 2; i++) {
                AjSupStream *s = &o->streams[i];
                write_rest(s);
                if (s->wfd_restore >= 0)
                        (void)fcntl(i + 1, F_SETFL, s->wfd_restore);
                if (s->wfd >= 0)
                        close(s->wfd);
                s->wfd = -1;
                free(s->pend);
                s->pend = NULL;
                if (s->fd >= 0)
                        close(s->fd);
                s->fd = -1;
                if (s->log >= 0)
                        close(s->log);
                s->log = -1;
        }
        if (o->tty_log.log >= 0)
                close(o->tty_log.log);
        o->tty_log.log = -1;
}

size_t aj_sup_output_abandon_reader(AjSupOutput *o)
{
        size_t dropped = 0;
        for (int i = 0; i < 2; i++) {
                AjSupStream *s = &o->streams[i];
                if (!s->pend_len)
                        continue;
                dropped += s->pend_len - s->pend_off;
                stop_writing(s);
                set_reading(o, s);
        }
        return dropped;
}
