/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The one error carrier. A fallible function returns a negative errno, as everywhere; when the
 * caller wants to know why in words, it passes an AjError, which the failing layer fills with
 * the errno and a message naming the thing ("profile \"x\" not found (searched: ...)"), and each
 * layer on the way up may put its context in front ("Cannot start the jail: ..."). The CLI, at
 * the top, prints aj_error_text() once. Pure code sets an AjError; it never logs.
 *
 *     _cleanup_(aj_error_clear) AjError e = {};
 *     int r = aj_ws_commit(..., &e);
 *     if (r < 0)
 *             return aj_log_errno(r, "%s", aj_error_text(&e, r));
 *
 * Every function taking an `AjError *` accepts NULL (the caller wants only the errno) and sets
 * it only on failure, though not on every failure (-ENOMEM and plain syscall errors may come
 * back bare): print aj_error_text(&e, r), which falls back to strerror(-r). Setting an AjError
 * that already holds an error replaces it.
 */

#include <stdarg.h>

#include "util/macros.h"

typedef struct {
        int err;       /* negative errno; 0 while no error was set */
        char *message; /* owned; NULL: no words beyond strerror(-err) */
} AjError;

/* Sets `e` to err (a negative errno) and the formatted message, and returns err, so a failure
 * reads `return aj_error_set(e, -EINVAL, "...", ...)`. "%m" is strerror(errno) as at the call.
 * Returns -ENOMEM (and leaves e->message NULL, e->err = -ENOMEM) when the message cannot be
 * allocated. */
_printf_(3, 4) int aj_error_set(AjError *e, int err, const char *fmt, ...);
_printf_(3, 0) int aj_error_setv(AjError *e, int err, const char *fmt, va_list ap);

/* Puts "PREFIX: " in front of the message (or of strerror(-err) when there is none) and
 * returns e->err (-EINVAL if nothing was set before). The errno is kept. */
_printf_(2, 3) int aj_error_prefix(AjError *e, const char *fmt, ...);

/* The words for a failure that returned r: the message when one was set, else strerror of e's
 * errno or of r; "" when there is neither. Never NULL; e may be NULL. */
const char *aj_error_text(const AjError *e, int r);

void aj_error_clear(AjError *e);
