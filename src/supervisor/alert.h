/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The owner's alert command (profile alert.exec): started after a breach with incident.json
 * and when a tool call waits for approval (approval.json), one at a time; its pidfd in the
 * loop, killed at alert.timeout (a timer on the loop's clock); its output read from a pipe
 * into alert.log, which stops at logs.output_bytes as stdout.log does (log.truncated,
 * "stream": "alert").
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "quarantine.h"
#include "supervisor/sink.h"
#include "util/loop.h"

typedef struct {
        char *const *argv;   /* the profile's alert.exec (borrowed), NULL or empty: none */
        uint64_t timeout_ns; /* 0: 10 s */
        const char *run_dir; /* borrowed */
        const char *id;
        const char *name;
        uint64_t log_cap; /* alert.log's bound, the profile's logs.output_bytes (0: none) */
} AjSupAlertConfig;

typedef struct {
        AjSupAlertConfig cfg;
        AjLoop *loop;
        AjSupSink events;
        AjAlert alert;
        AjLoopIo *io;
        /* What the alerts write (stdout and stderr) comes through a pipe of ours and goes to
         * alert.log up to cfg.log_cap: the agent decides how many alerts run (each held call
         * starts one) and what they read, and an alert that prints its input (tee) wrote
         * 18 MB there for 300 held calls, outside every bound on the run's records. */
        int out_fd; /* the running alert's pipe, read end; -1 */
        AjLoopIo *out_io;
        int log_fd;      /* alert.log, opened with the first alert; -1 */
        uint64_t logged; /* its size */
        bool log_cut;    /* log.truncated recorded */
        AjLoopTimer timer;
        /* The alerts waiting for the running one to end, kind and input (string literals)
         * or NULL: [0] a breach's, [1] an approval's; run in that order. */
        struct {
                const char *kind, *input;
        } queued[2];
} AjSupAlert;

#define AJ_SUP_ALERT_INIT                                            \
        {                                                            \
                .alert = { .pidfd = -1 }, .out_fd = -1, .log_fd = -1 \
        }

void aj_sup_alert_init(AjSupAlert *a, AjLoop *loop, const AjSupAlertConfig *cfg, const AjSupSink *events);
/* Runs the alert with <run dir>/<input> as stdin; while one is still running, it waits to
 * run next (kind and input must outlive it: string literals): one of each kind at most, a
 * breach's first, a newer one of a kind in the older one's place (alert.skipped; the file
 * holds the newest request). So an agent holding a call just before it crosses a cap
 * cannot keep the breach from its owner. */
void aj_sup_alert_start(AjSupAlert *a, const char *kind, const char *input);
/* A tool call waits for an operator: approval.json, then the alert. */
void aj_sup_alert_approval(AjSupAlert *a, json_t *call);
/* After the run: an alert still running gets what is left of its time, then is killed; then
 * the one waiting, if any, runs the same way. alert.log is closed. */
void aj_sup_alert_finish(AjSupAlert *a);
