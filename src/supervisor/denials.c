/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/denials.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/fd.h"

/* Denials reported per run: the first of each syscall (or socket family, ioctl request) always;
 * repeats a burst, then a steady trickle; the rest are counted per syscall. */
#define SECCOMP_REPORT_BURST 20.0
#define SECCOMP_REPORT_PER_SEC 5.0

static void on_listener(AjLoopIo *io, int fd, uint32_t revents, void *userdata);

void aj_sup_denials_init(AjSupDenials *d, AjLoop *loop, AjSupWork *work, const AjHooks *hooks)
{
        d->loop = loop;
        d->work = work;
        d->hooks = hooks;
        d->listener = -1;
        d->io = NULL;
        aj_denial_log_init(&d->log, SECCOMP_REPORT_BURST, SECCOMP_REPORT_PER_SEC);
}

static void listener_close(AjSupDenials *d)
{
        aj_sup_work_unwatch(d->work, d->io);
        aj_loop_io_remove(d->io);
        d->io = NULL;
        if (d->listener >= 0)
                close(d->listener);
        d->listener = -1;
}

void aj_sup_denials_take_listener(AjSupDenials *d, int fd)
{
        if (d->listener >= 0) {
                close(fd);
                return;
        }
        d->listener = fd;
        (void)aj_fd_set_nonblock(fd, true);
        if (aj_loop_add_io(d->loop, fd, EPOLLIN, on_listener, d, &d->io) >= 0)
                (void)aj_sup_work_watch(d->work, d->io);
}

static void report(AjSupDenials *d, const AjSeccompDenial *den)
{
        json_t *args = json_array();
        for (int i = 0; i < 6; i++)
                json_array_append_new(args, json_integer((json_int_t)den->args[i]));
        json_t *f = json_pack("{s:s, s:i, s:o, s:i}", "syscall", den->name, "nr", den->nr, "args", args, "pid",
                              (int)den->pid);
        const char *hint = aj_seccomp_denial_hint(den);
        if (f && hint)
                json_object_set_new(f, "hint", json_string(hint));
        d->hooks->emit(d->hooks->userdata, "seccomp.denied", f);
}

void aj_sup_denials_drain(AjSupDenials *d, unsigned max)
{
        for (unsigned i = 0; i < max && d->listener >= 0; i++) {
                AjSeccompDenial den;
                int r = aj_seccomp_notify_handle(d->listener, &den);
                if (r == 0)
                        return;
                if (r < 0) {
                        if (r != -EAGAIN && r != -EINTR)
                                listener_close(d);
                        return;
                }
                if (aj_denial_log_note(&d->log, &den, aj_now_monotonic_ns(), NULL))
                        report(d, &den);
        }
}

static void on_listener(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)fd;
        AjSupDenials *d = userdata;
        if (revents & EPOLLIN) {
                uint64_t t0 = aj_sup_work_start(d->work);
                aj_sup_denials_drain(d, AJ_SUP_DENIALS_PER_TURN);
                aj_sup_work_charge(d->work, t0);
        } else
                listener_close(d);
}

json_t *aj_sup_denials_by_key(const AjSupDenials *d, bool suppressed)
{
        const AjDenialLog *log = &d->log;
        json_t *o = json_object();
        for (size_t i = 0; i <= log->n_keys; i++) {
                const AjDenialKey *k = i < log->n_keys ? &log->keys[i] : &log->overflow;
                uint64_t n = suppressed ? k->suppressed : k->count;
                if (n > 0)
                        json_object_set_new(o, k->label, json_integer((json_int_t)n));
        }
        return o;
}

uint64_t aj_sup_denials_total(const AjSupDenials *d) { return d->log.total; }

json_t *aj_sup_denials_suppressed_json(const AjSupDenials *d)
{
        if (d->log.suppressed == 0)
                return NULL;
        return json_pack("{s:I, s:I, s:o}", "suppressed", (json_int_t)d->log.suppressed, "total",
                         (json_int_t)d->log.total, "by_syscall", aj_sup_denials_by_key(d, true));
}

void aj_sup_denials_done(AjSupDenials *d) { listener_close(d); }

void aj_sup_denials_free(AjSupDenials *d) { aj_denial_log_done(&d->log); }
