/* SPDX-License-Identifier: Apache-2.0 */
#include "util/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/macros.h"

/* Events taken per epoll wait; more ready fds are simply returned by the next one. */
#define LOOP_BATCH 32

struct AjLoopIo {
        AjLoop *loop;
        int fd;
        uint32_t events;
        bool removed;
        AjLoopIoFn fn;
        void *userdata;
        AjLoopIo *next_removed;
        AjLoopIo *prev, *next; /* every source not yet freed, for aj_loop_free() */
};

struct AjLoop {
        int epfd;
        uint64_t (*now_ns)(void);
        AjLoopTimer **heap; /* min-heap on deadline_ns */
        size_t n_heap, cap_heap;
        AjLoopIo *removed; /* freed after the batch that removed them */
        AjLoopIo *all;     /* every source not yet freed */
        bool dispatching;
        uint64_t turn;  /* two a dispatch: its fd callbacks', then its timers' (AjLoopTimer.armed_turn) */
        bool no_pwait2; /* epoll_pwait2() is missing (before Linux 5.11): millisecond waits */
        int timerfd;    /* nested loops only (aj_loop_fd()): armed no later than the earliest deadline */
        uint64_t timerfd_at;
};

/* The epoll data of the timerfd: no source has this address. */
static char timerfd_tag;

static void timerfd_follow(AjLoop *l)
{
        if (l->timerfd < 0)
                return;
        uint64_t at = l->n_heap ? l->heap[0]->deadline_ns : 0;
        /* Armed no later than the earliest deadline is enough: an early wake finds nothing
         * due and re-arms here. So a deadline moved later (a connection's timeout pushed
         * back on each request) costs no timerfd_settime(), and neither does the last timer
         * stopping while the armed time is still ahead: left armed, it wakes the loop once
         * for nothing, where disarming it and arming it again for the next timer (a
         * connection after a connection) cost two. */
        if (at == l->timerfd_at || (at && l->timerfd_at && l->timerfd_at < at) || (!at && l->timerfd_at > l->now_ns()))
                return;
        struct itimerspec its = { .it_value = { .tv_sec = (time_t)(at / 1000000000ull),
                                                .tv_nsec = (long)(at % 1000000000ull) } };
        /* An absolute time of 0 would disarm: a deadline at 0 ns is long past, fire now. */
        if (at != 0 && its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                its.it_value.tv_nsec = 1;
        if (timerfd_settime(l->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
                l->timerfd_at = at;
}

int aj_loop_new(AjLoop **ret)
{
        AjLoop *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                int r = -errno;
                free(l);
                return r;
        }
        l->now_ns = aj_now_monotonic_ns;
        l->timerfd = -1;
        *ret = l;
        return 0;
}

static void io_unlink_free(AjLoop *l, AjLoopIo *io)
{
        if (io->prev)
                io->prev->next = io->next;
        else
                l->all = io->next;
        if (io->next)
                io->next->prev = io->prev;
        free(io);
}

static void free_removed(AjLoop *l)
{
        while (l->removed) {
                AjLoopIo *io = l->removed;
                l->removed = io->next_removed;
                io_unlink_free(l, io);
        }
}

/* Sources still registered are freed too (their fds are the caller's to close). */
void aj_loop_free(AjLoop *l)
{
        if (!l)
                return;
        while (l->all)
                io_unlink_free(l, l->all);
        l->removed = NULL;
        for (size_t i = 0; i < l->n_heap; i++) {
                l->heap[i]->deadline_ns = 0;
                l->heap[i]->heap_index = SIZE_MAX;
        }
        free(l->heap);
        if (l->timerfd >= 0)
                close(l->timerfd);
        if (l->epfd >= 0)
                close(l->epfd);
        free(l);
}

uint64_t aj_loop_now(const AjLoop *l) { return l->now_ns(); }

void aj_loop_set_clock(AjLoop *l, uint64_t (*now_ns)(void)) { l->now_ns = now_ns ? now_ns : aj_now_monotonic_ns; }

int aj_loop_add_io(AjLoop *l, int fd, uint32_t events, AjLoopIoFn fn, void *userdata, AjLoopIo **ret)
{
        if (fd < 0 || !fn)
                return -EINVAL;
        AjLoopIo *io = calloc(1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        *io = (AjLoopIo){ .loop = l, .fd = fd, .events = events, .fn = fn, .userdata = userdata };
        struct epoll_event ev = { .events = events, .data.ptr = io };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                free(io);
                return r;
        }
        io->next = l->all;
        if (l->all)
                l->all->prev = io;
        l->all = io;
        if (ret)
                *ret = io;
        return 0;
}

int aj_loop_io_set_events(AjLoopIo *io, uint32_t events)
{
        if (!io || io->removed)
                return -EINVAL;
        if (io->events == events)
                return 0;
        struct epoll_event ev = { .events = events, .data.ptr = io };
        if (epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
                return -errno;
        io->events = events;
        return 0;
}

uint32_t aj_loop_io_events(const AjLoopIo *io) { return io->events; }

int aj_loop_io_fd(const AjLoopIo *io) { return io->fd; }

void aj_loop_io_remove(AjLoopIo *io)
{
        if (!io || io->removed)
                return;
        /* Fails only if the fd was closed already, which removed it from the epoll set. */
        (void)epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->removed = true;
        io->next_removed = io->loop->removed;
        io->loop->removed = io;
        if (!io->loop->dispatching)
                free_removed(io->loop);
}

/* The heap of armed timers. */

static void heap_place(AjLoop *l, size_t i, AjLoopTimer *t)
{
        l->heap[i] = t;
        t->heap_index = i;
}

static void heap_up(AjLoop *l, size_t i)
{
        AjLoopTimer *t = l->heap[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (l->heap[parent]->deadline_ns <= t->deadline_ns)
                        break;
                heap_place(l, i, l->heap[parent]);
                i = parent;
        }
        heap_place(l, i, t);
}

static void heap_down(AjLoop *l, size_t i)
{
        AjLoopTimer *t = l->heap[i];
        for (;;) {
                size_t child = 2 * i + 1;
                if (child >= l->n_heap)
                        break;
                if (child + 1 < l->n_heap && l->heap[child + 1]->deadline_ns < l->heap[child]->deadline_ns)
                        child++;
                if (t->deadline_ns <= l->heap[child]->deadline_ns)
                        break;
                heap_place(l, i, l->heap[child]);
                i = child;
        }
        heap_place(l, i, t);
}

static void heap_remove(AjLoop *l, AjLoopTimer *t)
{
        size_t i = t->heap_index;
        AjLoopTimer *last = l->heap[--l->n_heap];
        t->heap_index = SIZE_MAX;
        if (last == t)
                return;
        heap_place(l, i, last);
        heap_up(l, i);
        heap_down(l, last->heap_index);
}

void aj_loop_timer_init(AjLoop *l, AjLoopTimer *t, AjLoopTimerFn fn, void *userdata)
{
        *t = (AjLoopTimer){ .loop = l, .heap_index = SIZE_MAX, .fn = fn, .userdata = userdata };
}

void aj_loop_timer_stop(AjLoopTimer *t)
{
        if (!t || !t->loop || t->deadline_ns == 0)
                return;
        heap_remove(t->loop, t);
        t->deadline_ns = 0;
        if (!t->loop->dispatching)
                timerfd_follow(t->loop);
}

int aj_loop_timer_set(AjLoopTimer *t, uint64_t deadline_ns)
{
        AjLoop *l = t->loop;
        if (deadline_ns == 0) {
                aj_loop_timer_stop(t);
                return 0;
        }
        if (t->deadline_ns == 0) {
                if (l->n_heap == l->cap_heap) {
                        size_t cap = l->cap_heap ? l->cap_heap * 2 : 16;
                        AjLoopTimer **heap = reallocarray(l->heap, cap, sizeof(*heap));
                        if (!heap)
                                return -ENOMEM;
                        l->heap = heap;
                        l->cap_heap = cap;
                }
                t->deadline_ns = deadline_ns;
                t->armed_turn = l->turn;
                heap_place(l, l->n_heap++, t);
                heap_up(l, t->heap_index);
                if (!l->dispatching)
                        timerfd_follow(l);
                return 0;
        }
        uint64_t old = t->deadline_ns;
        t->deadline_ns = deadline_ns;
        t->armed_turn = l->turn;
        if (deadline_ns < old)
                heap_up(l, t->heap_index);
        else
                heap_down(l, t->heap_index);
        if (!l->dispatching)
                timerfd_follow(l);
        return 0;
}

int aj_loop_fd(AjLoop *l)
{
        if (l->timerfd < 0) {
                int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                if (fd < 0)
                        return -errno;
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &timerfd_tag };
                if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                l->timerfd = fd;
                l->timerfd_at = 0;
                timerfd_follow(l);
        }
        return l->epfd;
}

uint64_t aj_loop_timer_left(const AjLoopTimer *t)
{
        if (t->deadline_ns == 0)
                return 0;
        uint64_t now = aj_loop_now(t->loop);
        return t->deadline_ns > now ? t->deadline_ns - now : 0;
}

uint64_t aj_loop_next_deadline(const AjLoop *l) { return l->n_heap ? l->heap[0]->deadline_ns : 0; }

static int loop_wait(AjLoop *l, struct epoll_event *evs, int n, int64_t wait_ns)
{
        if (!l->no_pwait2) {
                struct timespec ts = { .tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000 };
                int r = epoll_pwait2(l->epfd, evs, n, wait_ns < 0 ? NULL : &ts, NULL);
                if (r >= 0 || errno != ENOSYS)
                        return r;
                l->no_pwait2 = true;
        }
        /* Rounded up: a timer must not be found early and waited for again in a busy loop. */
        int ms = wait_ns < 0 ? -1 : wait_ns > INT32_MAX * 1000000ll ? INT32_MAX : (int)((wait_ns + 999999) / 1000000);
        return epoll_wait(l->epfd, evs, n, ms);
}

int aj_loop_dispatch(AjLoop *l, int64_t max_wait_ns)
{
        int64_t wait_ns = max_wait_ns;
        uint64_t next = aj_loop_next_deadline(l);
        if (next) {
                uint64_t now = aj_loop_now(l);
                int64_t until = next > now ? (int64_t)(next - now) : 0;
                if (wait_ns < 0 || until < wait_ns)
                        wait_ns = until;
        }
        struct epoll_event evs[LOOP_BATCH];
        int n = loop_wait(l, evs, LOOP_BATCH, wait_ns);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;

        int calls = 0;
        l->dispatching = true;
        l->turn++;
        for (int i = 0; i < n; i++) {
                if (evs[i].data.ptr == &timerfd_tag) {
                        uint64_t x;
                        (void)!read(l->timerfd, &x, sizeof(x));
                        l->timerfd_at = 0; /* expired: disarmed */
                        continue;
                }
                AjLoopIo *io = evs[i].data.ptr;
                if (io->removed)
                        continue;
                io->fn(io, io->fd, evs[i].events, io->userdata);
                calls++;
        }
        /* Timers due now, those the fd callbacks above armed included (a result delivered
         * "from the loop", as the resolver's, runs in this dispatch, not after another wait).
         * One armed by a timer's callback (re-arming itself for "now") waits for the next
         * dispatch, so a dispatch always ends. */
        l->turn++;
        uint64_t now = aj_loop_now(l);
        while (l->n_heap && l->heap[0]->deadline_ns <= now && l->heap[0]->armed_turn != l->turn) {
                AjLoopTimer *t = l->heap[0];
                heap_remove(l, t);
                t->deadline_ns = 0;
                t->fn(t, now, t->userdata);
                calls++;
        }
        l->dispatching = false;
        free_removed(l);
        timerfd_follow(l);
        return calls;
}
