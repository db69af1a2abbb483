/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/loop.h"
#include "util/macros.h"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

typedef struct {
        int calls;
        uint32_t last_events;
        AjLoopIo *to_remove; /* removed by this callback */
        char buf[16];
} IoSeen;

static void on_io(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        IoSeen *s = userdata;
        (void)io;
        s->calls++;
        s->last_events = revents;
        if (revents & EPOLLIN)
                (void)!read(fd, s->buf, sizeof(s->buf));
        if (s->to_remove) {
                aj_loop_io_remove(s->to_remove);
                s->to_remove = NULL;
        }
}

Test(loop, io_ready_paused_removed)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        IoSeen seen = { 0 };
        AjLoopIo *io = NULL;
        cr_assert_eq(aj_loop_add_io(l, p[0], EPOLLIN, on_io, &seen, &io), 0);
        cr_expect_eq(aj_loop_dispatch(l, 0), 0, "nothing ready: no callback");
        cr_assert_eq(write(p[1], "x", 1), 1);
        cr_expect_eq(aj_loop_dispatch(l, -1), 1);
        cr_expect_eq(seen.calls, 1);
        cr_expect(seen.last_events & EPOLLIN);

        /* Paused: data waits in the pipe, no callback. */
        cr_assert_eq(aj_loop_io_set_events(io, 0), 0);
        cr_assert_eq(write(p[1], "y", 1), 1);
        cr_expect_eq(aj_loop_dispatch(l, 0), 0);
        cr_assert_eq(aj_loop_io_set_events(io, EPOLLIN), 0);
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect_eq(seen.calls, 2);

        aj_loop_io_remove(io);
        cr_assert_eq(write(p[1], "z", 1), 1);
        cr_expect_eq(aj_loop_dispatch(l, 0), 0, "a removed source is not called");
        cr_expect_eq(seen.calls, 2);
        close(p[0]);
        close(p[1]);
        aj_loop_free(l);
}

Test(loop, remove_later_source_in_same_batch)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        int a[2], b[2];
        cr_assert_eq(pipe2(a, O_CLOEXEC | O_NONBLOCK), 0);
        cr_assert_eq(pipe2(b, O_CLOEXEC | O_NONBLOCK), 0);
        IoSeen sa = { 0 }, sb = { 0 };
        AjLoopIo *ia = NULL, *ib = NULL;
        cr_assert_eq(aj_loop_add_io(l, a[0], EPOLLIN, on_io, &sa, &ia), 0);
        cr_assert_eq(aj_loop_add_io(l, b[0], EPOLLIN, on_io, &sb, &ib), 0);
        /* Whichever is called first removes the other, which must then not be called. */
        sa.to_remove = ib;
        sb.to_remove = ia;
        cr_assert_eq(write(a[1], "x", 1), 1);
        cr_assert_eq(write(b[1], "x", 1), 1);
        cr_expect_eq(aj_loop_dispatch(l, -1), 1);
        cr_expect_eq(sa.calls + sb.calls, 1);
        close(a[0]), close(a[1]), close(b[0]), close(b[1]);
        aj_loop_free(l);
}

typedef struct {
        uint64_t fired_at[64];
        int order[64];
        int n;
} Fired;

typedef struct {
        AjLoopTimer t;
        int id;
        Fired *f;
        uint64_t rearm_in; /* re-arms itself this far ahead once */
} TestTimer;

static void on_timer(AjLoopTimer *t, uint64_t now, void *userdata)
{
        TestTimer *tt = userdata;
        cr_assert_eq(t, &tt->t);
        tt->f->fired_at[tt->f->n] = now;
        tt->f->order[tt->f->n++] = tt->id;
        if (tt->rearm_in) {
                uint64_t in = tt->rearm_in;
                tt->rearm_in = 0;
                aj_loop_timer_set_in(t, in);
        }
}

Test(loop, timers_fire_in_deadline_order)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        aj_loop_set_clock(l, fake_clock);
        fake_now = 1000;
        Fired f = { 0 };
        TestTimer ts[40];
        /* Deadlines in a scrambled order, some equal. */
        for (int i = 0; i < 40; i++) {
                ts[i] = (TestTimer){ .id = i, .f = &f };
                aj_loop_timer_init(l, &ts[i].t, on_timer, &ts[i]);
                cr_assert_eq(aj_loop_timer_set(&ts[i].t, 2000 + (uint64_t)((i * 17) % 40) * 10), 0);
        }
        /* Move some, stop some. */
        cr_assert_eq(aj_loop_timer_set(&ts[3].t, 1500), 0);
        cr_assert_eq(aj_loop_timer_set(&ts[5].t, 9000), 0);
        aj_loop_timer_stop(&ts[7].t);
        aj_loop_timer_stop(&ts[7].t);
        cr_expect(!aj_loop_timer_armed(&ts[7].t));
        cr_expect_eq(aj_loop_next_deadline(l), 1500);
        cr_expect_eq(aj_loop_timer_left(&ts[3].t), 500);

        fake_now = 100000;
        cr_expect_eq(aj_loop_dispatch(l, 0), 39);
        cr_expect_eq(f.n, 39);
        cr_expect_eq(f.order[0], 3);
        cr_expect_eq(f.order[38], 5);
        for (int i = 1; i < f.n; i++) {
                uint64_t prev = f.order[i - 1] == 3   ? 1500
                                : f.order[i - 1] == 5 ? 9000
                                                      : 2000 + (uint64_t)((f.order[i - 1] * 17) % 40) * 10;
                uint64_t cur = f.order[i] == 3   ? 1500
                               : f.order[i] == 5 ? 9000
                                                 : 2000 + (uint64_t)((f.order[i] * 17) % 40) * 10;
                cr_expect_leq(prev, cur, "timer %d (%llu) fired after %d (%llu)", f.order[i], (unsigned long long)cur,
                              f.order[i - 1], (unsigned long long)prev);
                cr_expect_neq(f.order[i], 7, "a stopped timer fired");
        }
        cr_expect_eq(aj_loop_next_deadline(l), 0);
        aj_loop_free(l);
}

Test(loop, timer_rearming_itself_later)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        aj_loop_set_clock(l, fake_clock);
        fake_now = 50;
        Fired f = { 0 };
        TestTimer t = { .id = 1, .f = &f, .rearm_in = 1 }; /* re-armed for now + 1: not yet due */
        aj_loop_timer_init(l, &t.t, on_timer, &t);
        cr_assert_eq(aj_loop_timer_set(&t.t, 10), 0);
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect(aj_loop_timer_armed(&t.t));
        fake_now += 1;
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect_eq(f.n, 2);
        cr_expect(!aj_loop_timer_armed(&t.t));
        aj_loop_free(l);
}

static void rearm_now(AjLoopTimer *t, uint64_t now, void *userdata)
{
        int *n = userdata;
        (*n)++;
        aj_loop_timer_set(t, now);
}

/* A loop on the fake clock at 100 with timer t, which counts its calls in *n and re-arms
 * itself for now. */
static AjLoop *loop_with_rearming_timer(AjLoopTimer *t, int *n)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        aj_loop_set_clock(l, fake_clock);
        fake_now = 100;
        *n = 0;
        aj_loop_timer_init(l, t, rearm_now, n);
        return l;
}

Test(loop, timer_due_again_in_its_own_callback_waits_a_turn)
{
        int n;
        AjLoopTimer t;
        AjLoop *l = loop_with_rearming_timer(&t, &n);
        cr_assert_eq(aj_loop_timer_set(&t, 100), 0);
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect_eq(n, 1);
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect_eq(n, 2);
        aj_loop_timer_stop(&t);
        aj_loop_free(l);
}

/* An fd's callback that arms a timer for now (a result to deliver "from the loop"): it runs
 * in the same dispatch, after the fd callbacks, not after another wait. */
typedef struct {
        AjLoopTimer *t;
        int reads;
} ArmNow;

static void on_io_arm_now(AjLoopIo *io, int fd, uint32_t revents, void *userdata)
{
        (void)io, (void)revents;
        ArmNow *a = userdata;
        char c;
        a->reads += read(fd, &c, 1) == 1;
        aj_loop_timer_set(a->t, aj_loop_now(a->t->loop));
}

Test(loop, timer_armed_for_now_by_an_fd_runs_in_the_same_dispatch)
{
        int n;
        AjLoopTimer t;
        AjLoop *l = loop_with_rearming_timer(&t, &n);
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ArmNow a = { .t = &t };
        cr_assert_eq(aj_loop_add_io(l, p[0], EPOLLIN, on_io_arm_now, &a, NULL), 0);
        cr_assert_eq(write(p[1], "x", 1), 1);
        cr_expect_eq(aj_loop_dispatch(l, 0), 2, "the fd's callback and the timer's");
        cr_expect_eq(a.reads, 1);
        cr_expect_eq(n, 1);
        /* The timer re-armed itself for now in its callback: that waits for the next dispatch. */
        cr_expect(aj_loop_timer_armed(&t));
        cr_expect_eq(aj_loop_dispatch(l, 0), 1);
        cr_expect_eq(n, 2);
        aj_loop_timer_stop(&t);
        aj_loop_free(l);
        close(p[0]);
        close(p[1]);
}

Test(loop, real_clock_wait_ends_at_the_deadline)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        int n = 0;
        AjLoopTimer t;
        aj_loop_timer_init(l, &t, rearm_now, &n);
        uint64_t start = aj_loop_now(l);
        cr_assert_eq(aj_loop_timer_set_in(&t, 20 * 1000000ull), 0);
        int calls = 0;
        while (n == 0 && calls < 1000) {
                cr_assert_geq(aj_loop_dispatch(l, -1), 0);
                calls++;
        }
        cr_expect_eq(n, 1);
        cr_expect_geq(aj_loop_now(l) - start, 20 * 1000000ull, "the timer fired early");
        cr_expect_leq(calls, 2, "waiting took %d turns: the loop spun", calls);
        aj_loop_timer_stop(&t);
        aj_loop_free(l);
}

Test(loop, bad_arguments)
{
        AjLoop *l = NULL;
        cr_assert_eq(aj_loop_new(&l), 0);
        IoSeen s = { 0 };
        cr_expect_eq(aj_loop_add_io(l, -1, EPOLLIN, on_io, &s, NULL), -EINVAL);
        cr_expect_eq(aj_loop_add_io(l, 0, EPOLLIN, NULL, &s, NULL), -EINVAL);
        int fd = memfd_create("regular", MFD_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_expect_eq(aj_loop_add_io(l, fd, EPOLLIN, on_io, &s, NULL), -EPERM, "regular files cannot be polled");
        close(fd);
        aj_loop_free(l);
}

Test(loop, nested_loop_fd_wakes_the_parent_for_io_and_timers)
{
        AjLoop *parent = NULL, *child = NULL;
        cr_assert_eq(aj_loop_new(&parent), 0);
        cr_assert_eq(aj_loop_new(&child), 0);
        int cfd = aj_loop_fd(child);
        cr_assert_geq(cfd, 0);
        IoSeen ps = { 0 };
        cr_assert_eq(aj_loop_add_io(parent, cfd, EPOLLIN, on_io, &ps, NULL), 0);

        int n = 0;
        AjLoopTimer t;
        aj_loop_timer_init(child, &t, rearm_now, &n);
        cr_assert_eq(aj_loop_timer_set_in(&t, 10 * 1000000ull), 0);
        cr_expect_eq(aj_loop_dispatch(parent, 0), 0, "the child's timer is not due yet");
        /* The parent waits with no timer of its own: only the child's fd can wake it. */
        cr_expect_eq(aj_loop_dispatch(parent, 2000 * 1000000ll), 1);
        cr_expect_eq(ps.calls, 1);
        cr_expect_eq(aj_loop_dispatch(child, 0), 1);
        cr_expect_eq(n, 1);
        aj_loop_timer_stop(&t); /* rearm_now re-armed it for "now" */

        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        IoSeen cs = { 0 };
        cr_assert_eq(aj_loop_add_io(child, p[0], EPOLLIN, on_io, &cs, NULL), 0);
        cr_expect_eq(aj_loop_dispatch(parent, 0), 0);
        cr_assert_eq(write(p[1], "x", 1), 1);
        cr_expect_eq(aj_loop_dispatch(parent, 1000 * 1000000ll), 1);
        cr_expect_eq(aj_loop_dispatch(child, 0), 1);
        cr_expect_eq(cs.calls, 1);
        close(p[0]), close(p[1]);
        aj_loop_free(child);
        aj_loop_free(parent);
}

static void count_fire(AjLoopTimer *t, uint64_t now, void *userdata)
{
        (void)t, (void)now;
        (*(int *)userdata)++;
}

/* A parent loop and a child nested in it (its fd a source of the parent's, seen in ps). */
static void nested_pair(AjLoop **parent, AjLoop **child, IoSeen *ps)
{
        *parent = *child = NULL;
        cr_assert_eq(aj_loop_new(parent), 0);
        cr_assert_eq(aj_loop_new(child), 0);
        int cfd = aj_loop_fd(*child);
        cr_assert_geq(cfd, 0);
        cr_assert_eq(aj_loop_add_io(*parent, cfd, EPOLLIN, on_io, ps, NULL), 0);
}

/* A nested loop's deadline moved later (as a connection's timeout on each request): the
 * parent may wake at the old one, finds nothing due, and still wakes for the new one,
 * not before it. The same when it moves earlier again. */
Test(loop, nested_deadline_moved_later_then_earlier)
{
        AjLoop *parent, *child;
        IoSeen ps = { 0 };
        nested_pair(&parent, &child, &ps);
        int n = 0;
        AjLoopTimer t;
        aj_loop_timer_init(child, &t, count_fire, &n);
        uint64_t start = aj_loop_now(child);
        cr_assert_eq(aj_loop_timer_set_in(&t, 20 * 1000000ull), 0);
        cr_assert_eq(aj_loop_timer_set_in(&t, 80 * 1000000ull), 0);
        for (int i = 0; i < 10 && n == 0; i++) {
                (void)aj_loop_dispatch(parent, 2000 * 1000000ll);
                (void)aj_loop_dispatch(child, 0);
        }
        cr_expect_eq(n, 1, "the moved timer fired");
        cr_expect_geq(aj_loop_now(child) - start, 80 * 1000000ull, "not before its new deadline");

        start = aj_loop_now(child);
        cr_assert_eq(aj_loop_timer_set_in(&t, 500 * 1000000ull), 0);
        cr_assert_eq(aj_loop_timer_set_in(&t, 10 * 1000000ull), 0);
        cr_expect_eq(aj_loop_dispatch(parent, 2000 * 1000000ll), 1, "woken for the earlier deadline");
        cr_expect_eq(aj_loop_dispatch(child, 0), 1);
        cr_expect_eq(n, 2);
        cr_expect_lt(aj_loop_now(child) - start, 400 * 1000000ull, "at the earlier deadline, not the later");
        aj_loop_free(child);
        aj_loop_free(parent);
}

/* The last timer of a nested loop stopped before its deadline: the timerfd is left armed
 * (disarming it and arming it again for the next timer cost a timerfd_settime() each, a
 * connection after a connection in the proxy), so the parent wakes once at the old
 * deadline, finds nothing due in the child, and is not woken again. */
Test(loop, nested_last_timer_stopped_wakes_once_for_nothing)
{
        AjLoop *parent, *child;
        IoSeen ps = { 0 };
        nested_pair(&parent, &child, &ps);
        int n = 0;
        AjLoopTimer t, u;
        aj_loop_timer_init(child, &t, count_fire, &n);
        aj_loop_timer_init(child, &u, count_fire, &n);
        uint64_t start = aj_loop_now(child);
        cr_assert_eq(aj_loop_timer_set_in(&t, 30 * 1000000ull), 0);
        aj_loop_timer_stop(&t);
        cr_expect_eq(aj_loop_dispatch(parent, 2000 * 1000000ll), 1, "woken at the stopped timer's deadline");
        cr_expect_geq(aj_loop_now(child) - start, 30 * 1000000ull, "not before it");
        cr_expect_eq(aj_loop_dispatch(child, 0), 0, "nothing due");
        cr_expect_eq(n, 0);
        cr_expect_eq(aj_loop_dispatch(parent, 50 * 1000000ll), 0, "woken once only");

        /* A timer set after its predecessor stopped still fires at its own deadline. */
        cr_assert_eq(aj_loop_timer_set_in(&t, 200 * 1000000ull), 0);
        aj_loop_timer_stop(&t);
        start = aj_loop_now(child);
        cr_assert_eq(aj_loop_timer_set_in(&u, 20 * 1000000ull), 0);
        for (int i = 0; i < 10 && n == 0; i++) {
                (void)aj_loop_dispatch(parent, 2000 * 1000000ll);
                (void)aj_loop_dispatch(child, 0);
        }
        cr_expect_eq(n, 1);
        cr_expect_lt(aj_loop_now(child) - start, 150 * 1000000ull, "at its deadline, not the stopped one's");
        aj_loop_free(child);
        aj_loop_free(parent);
}
