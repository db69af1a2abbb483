/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's event chain as the supervisor's parts see it: a small table of functions, so
 * that a part (breach, wall clock, watchdog, ...) is unit tested against a fake chain.
 * aj_sup_sink_for_log() is the real one, over src/events.c.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"

typedef struct {
        /* The supervisor's own records: never refused. `fields` is consumed. */
        int (*emit)(void *userdata, const char *type, json_t *fields);
        /* What the agent's actions cause: -EFBIG past its share of logs.events_bytes. */
        int (*emit_agent)(void *userdata, const char *type, json_t *fields);
        /* Optional: emit_agent() with the fields printed (aj_events_emit_agent_text()). */
        int (*emit_agent_text)(void *userdata, const char *type, const char *object, size_t len);
        void (*batch_begin)(void *userdata);
        int (*batch_end)(void *userdata);
        /* Optional: group commit (aj_events_hold(), _commit(), _held_bytes()). */
        void (*hold)(void *userdata);
        int (*commit)(void *userdata);
        size_t (*held_bytes)(void *userdata);
        /* events.jsonl's size; and what it would have become with the refused events. */
        uint64_t (*bytes)(void *userdata);
        uint64_t (*wanted)(void *userdata);
        /* The agent's share (0: none). */
        void (*set_agent_limit)(void *userdata, uint64_t limit);
        /* The last n events, oldest first (an empty array when they cannot be read). */
        json_t *(*tail)(void *userdata, size_t n);
} AjSupSinkOps;

typedef struct {
        const AjSupSinkOps *ops;
        void *userdata;
} AjSupSink;

static inline int aj_sup_emit(const AjSupSink *s, const char *type, json_t *fields)
{
        return s->ops->emit(s->userdata, type, fields);
}

/* The real chain: `log` and the run directory its events.jsonl is in (both borrowed). */
typedef struct {
        AjEventLog *log;
        const char *run_dir;
} AjSupEventLog;

void aj_sup_sink_for_log(AjSupEventLog *log, AjSupSink *ret);
