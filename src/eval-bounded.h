/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* glibc's regcomp() and regexec() have inputs that take them gigabytes or hours (docs/
 * evals.md), and both meet what the operator wrote and what the agent wrote. So they run
 * in a child process: it dies with its parent, has the default signal actions, starts its
 * body only once the parent holds its /proc statm (an ignored SIGCHLD reaps it at exit), and is
 * killed once it is AJ_EVAL_BOUNDED_MAX_BYTES resident past what the parent had at the
 * fork (its /proc statm, read every few ms) or AJ_EVAL_BOUNDED_MAX_MS have passed; the
 * kernel backs both (RLIMIT_AS four times that much, RLIMIT_CPU). A resident bound, not
 * RLIMIT_AS alone: regexec() answers "no match" when an allocation fails, and ASan's
 * allocator has its address space reserved from the start. */
#define AJ_EVAL_BOUNDED_MAX_BYTES (256L << 20)
#define AJ_EVAL_BOUNDED_MAX_MS 10000

typedef enum {
        AJ_EVAL_BOUNDED_DONE,        /* the body returned */
        AJ_EVAL_BOUNDED_LIMIT,       /* killed past a bound */
        AJ_EVAL_BOUNDED_INTERRUPTED, /* a signal reached the parent meanwhile: the child is killed */
        AJ_EVAL_BOUNDED_FAILED,      /* could not be started or bounded, or died otherwise */
} AjEvalBoundedEnd;

/* Runs body(arg, out) in such a child; what it writes to `out` reaches on_bytes(ctx, ...)
 * as it comes, so the parent knows how far it got when it is killed. The parent must have
 * no other threads (the child calls malloc()). */
AjEvalBoundedEnd aj_eval_bounded(void (*body)(void *arg, int out), void *arg,
                                 void (*on_bytes)(void *ctx, const char *b, size_t n), void *ctx);

/* Writes all of b in the child (the body's helper); exits the child if it cannot. */
void aj_eval_bounded_write(int out, const void *b, size_t n);
