/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The supervisor's event loop: file descriptors with a callback each, and deadline timers,
 * on one epoll instance and one earliest-deadline heap. Single-threaded; nothing here logs.
 *
 * Sources are owned by the loop (freed with it): aj_loop_io_remove() may be called from any callback
 * (also for a source whose event is later in the same batch: it is not called again), and
 * the memory is released after the batch. Timers are owned by their caller (embedded in
 * its struct, set up with aj_loop_timer_init()), and must be stopped before that memory is
 * freed; a callback may stop or re-arm any timer, its own included.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct AjLoop AjLoop;
typedef struct AjLoopIo AjLoopIo;
typedef struct AjLoopTimer AjLoopTimer;

/* revents: the epoll events that fired (EPOLLIN, EPOLLOUT, EPOLLHUP, ...). */
typedef void (*AjLoopIoFn)(AjLoopIo *io, int fd, uint32_t revents, void *userdata);
/* now_ns: the loop's clock when the timer's deadline was found passed. */
typedef void (*AjLoopTimerFn)(AjLoopTimer *t, uint64_t now_ns, void *userdata);

struct AjLoopTimer {
        AjLoop *loop;
        uint64_t deadline_ns; /* 0: stopped */
        size_t heap_index;
        uint64_t armed_turn; /* the loop's turn when it was last armed (a timer's callback arming one for now: next dispatch) */
        AjLoopTimerFn fn;
        void *userdata;
};

int aj_loop_new(AjLoop **ret);
void aj_loop_free(AjLoop *l);
static inline void aj_loop_freep(AjLoop **l) { aj_loop_free(*l); }

/* The loop's clock (CLOCK_MONOTONIC nanoseconds unless a test replaces it). */
uint64_t aj_loop_now(const AjLoop *l);
void aj_loop_set_clock(AjLoop *l, uint64_t (*now_ns)(void));

/* Watches fd for `events` (0: registered but paused). The loop never closes fd. */
int aj_loop_add_io(AjLoop *l, int fd, uint32_t events, AjLoopIoFn fn, void *userdata, AjLoopIo **ret);
int aj_loop_io_set_events(AjLoopIo *io, uint32_t events);
uint32_t aj_loop_io_events(const AjLoopIo *io);
int aj_loop_io_fd(const AjLoopIo *io);
/* Stops watching (EPOLL_CTL_DEL): call it before closing the fd. NULL is accepted. */
void aj_loop_io_remove(AjLoopIo *io);

void aj_loop_timer_init(AjLoop *l, AjLoopTimer *t, AjLoopTimerFn fn, void *userdata);
/* Fires once at deadline_ns on the loop's clock (0 stops it); re-arming moves it. */
int aj_loop_timer_set(AjLoopTimer *t, uint64_t deadline_ns);
static inline int aj_loop_timer_set_in(AjLoopTimer *t, uint64_t from_now_ns)
{
        return aj_loop_timer_set(t, aj_loop_now(t->loop) + from_now_ns);
}
void aj_loop_timer_stop(AjLoopTimer *t);
static inline bool aj_loop_timer_armed(const AjLoopTimer *t) { return t->deadline_ns != 0; }
/* Nanoseconds left (0 when due or stopped). */
uint64_t aj_loop_timer_left(const AjLoopTimer *t);

/* The earliest armed deadline, 0 when no timer is armed. */
uint64_t aj_loop_next_deadline(const AjLoop *l);

/* For a loop nested in another (a service's own loop inside the supervisor's): an fd that is
 * readable when this loop has work, ready fds or a due timer (a timerfd armed no later than
 * the earliest deadline, which needs the real clock; it may wake early once after a deadline
 * moved later, finding nothing due). The parent then calls aj_loop_dispatch(l, 0). */
int aj_loop_fd(AjLoop *l);

/* Waits for events until the earliest timer or `max_wait_ns` (-1: no limit, 0: do not wait),
 * then calls the callbacks of the fds that are ready, then of the timers that are due, those
 * the fd callbacks armed for now included; a timer armed for now by a timer's callback waits
 * for the next dispatch. Returns
 * the number of callbacks made (0 on a timeout or EINTR), or -errno. */
int aj_loop_dispatch(AjLoop *l, int64_t max_wait_ns);
