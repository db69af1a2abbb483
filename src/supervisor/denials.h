/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp listener (profile seccomp.log): each denial answered EPERM and recorded as
 * seccomp.denied, the first of each syscall (socket family, ioctl request) always, repeats
 * rate limited and counted (src/seccomp-filter.h, AjDenialLog). Charged to the work budget.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "hooks.h"
#include "seccomp-filter.h"
#include "supervisor/work.h"
#include "util/loop.h"

typedef struct {
        AjLoop *loop;
        AjSupWork *work;
        const AjHooks *hooks; /* emit: the agent's events */
        int listener;
        AjLoopIo *io;
        AjDenialLog log;
} AjSupDenials;

#define AJ_SUP_DENIALS_INIT    \
        {                      \
                .listener = -1 \
        }

void aj_sup_denials_init(AjSupDenials *d, AjLoop *loop, AjSupWork *work, const AjHooks *hooks);
/* The listener fd from the jail's child (taken; a second one is closed). */
void aj_sup_denials_take_listener(AjSupDenials *d, int fd);
/* Handles at most `max` queued notifications: a loop turn takes AJ_SUP_DENIALS_PER_TURN, so
 * that many threads making denied calls cannot keep the loop in here (each answer releases a
 * thread that asks again at once) while its timers (the wall limit, a kill's grace) and the
 * operator's control socket wait; the listener stays readable and comes back next turn.
 * After the loop: denials just before init exited. */
#define AJ_SUP_DENIALS_PER_TURN 64
void aj_sup_denials_drain(AjSupDenials *d, unsigned max);
/* {label: count}; `suppressed`: only what was not reported. */
json_t *aj_sup_denials_by_key(const AjSupDenials *d, bool suppressed);
uint64_t aj_sup_denials_total(const AjSupDenials *d);
/* seccomp.suppressed's fields, or NULL when nothing was. */
json_t *aj_sup_denials_suppressed_json(const AjSupDenials *d);
void aj_sup_denials_done(AjSupDenials *d);
/* Its memory, once nothing reads its counts any more. */
void aj_sup_denials_free(AjSupDenials *d);
