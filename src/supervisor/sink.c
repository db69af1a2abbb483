/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/sink.h"

#include <stdio.h>

#include "run-record.h"

static int log_emit(void *userdata, const char *type, json_t *fields)
{
        AjSupEventLog *l = userdata;
        return aj_events_emit(l->log, type, fields);
}

static int log_emit_agent(void *userdata, const char *type, json_t *fields)
{
        AjSupEventLog *l = userdata;
        return aj_events_emit_agent(l->log, type, fields);
}

static int log_emit_agent_text(void *userdata, const char *type, const char *object, size_t len)
{
        AjSupEventLog *l = userdata;
        return aj_events_emit_agent_text(l->log, type, object, len);
}

static void log_batch_begin(void *userdata)
{
        AjSupEventLog *l = userdata;
        aj_events_batch_begin(l->log);
}

static int log_batch_end(void *userdata)
{
        AjSupEventLog *l = userdata;
        return aj_events_batch_end(l->log);
}

static void log_hold(void *userdata)
{
        AjSupEventLog *l = userdata;
        aj_events_hold(l->log);
}

static int log_commit(void *userdata)
{
        AjSupEventLog *l = userdata;
        return aj_events_commit(l->log);
}

static size_t log_held_bytes(void *userdata)
{
        AjSupEventLog *l = userdata;
        return aj_events_held_bytes(l->log);
}

static uint64_t log_bytes(void *userdata)
{
        AjSupEventLog *l = userdata;
        return aj_events_bytes(l->log);
}

static uint64_t log_wanted(void *userdata)
{
        AjSupEventLog *l = userdata;
        return aj_events_wanted(l->log);
}

static void log_set_agent_limit(void *userdata, uint64_t limit)
{
        AjSupEventLog *l = userdata;
        aj_events_set_agent_limit(l->log, limit);
}

/* The last n events (from the end of the file only), or an empty array. */
static json_t *last_events(void *userdata, size_t n)
{
        AjSupEventLog *l = userdata;
        char path[4096];
        json_t *tail = NULL;
        if (aj_run_file_path(l->run_dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0 ||
            aj_events_read_tail(path, n, &tail) < 0)
                return json_array();
        return tail;
}

static const AjSupSinkOps log_ops = {
        .emit = log_emit,
        .emit_agent = log_emit_agent,
        .emit_agent_text = log_emit_agent_text,
        .batch_begin = log_batch_begin,
        .batch_end = log_batch_end,
        .hold = log_hold,
        .commit = log_commit,
        .held_bytes = log_held_bytes,
        .bytes = log_bytes,
        .wanted = log_wanted,
        .set_agent_limit = log_set_agent_limit,
        .tail = last_events,
};

void aj_sup_sink_for_log(AjSupEventLog *log, AjSupSink *ret) { *ret = (AjSupSink){ .ops = &log_ops, .userdata = log }; }
