/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "util/fd.h"

struct AjEventLog {
        int fd;
        uint64_t seq;
        char *run_id;
        /* Between aj_events_batch_begin() and _end(): lines wait here for one write(2). */
        bool batching;
        char *batch;
        size_t batch_len, batch_seq;
};

uint64_t aj_now_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t aj_now_monotonic_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

char *aj_format_timestamp(uint64_t ns, char *buf, size_t len)
{
        time_t sec = (time_t)(ns / 1000000000ull);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char base[32];
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, len, "%s.%09lluZ", base, (unsigned long long)(ns % 1000000000ull));
        return buf;
}

int aj_events_open(const char *path, const char *run_id, AjEventLog **ret)
{
        AjEventLog *log = calloc(1, sizeof(*log));
        if (!log)
                return -ENOMEM;
        log->run_id = strdup(run_id);
        log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (!log->run_id || log->fd < 0) {
                int r = log->fd < 0 ? -errno : -ENOMEM;
                aj_events_close(log);
                return r;
        }
        *ret = log;
        return 0;
}

int aj_events_emit(AjEventLog *log, const char *type, json_t *fields)
{
        char ts[40];
        json_t *ev = json_object();
        if (!ev) {
                json_decref(fields);
                return -ENOMEM;
        }
        json_object_set_new(ev, "seq", json_integer((json_int_t)(log->seq + 1)));
        json_object_set_new(ev, "ts", json_string(aj_format_timestamp(aj_now_realtime_ns(), ts, sizeof(ts))));
        json_object_set_new(ev, "run", json_string(log->run_id));
        json_object_set_new(ev, "type", json_string(type));
        if (fields) {
                json_object_update(ev, fields);
                json_decref(fields);
        }
        char *line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        json_decref(ev);
        if (!line)
                return -ENOMEM;
        size_t n = strlen(line);
        line[n] = '\n'; /* json_dumps leaves room: replace NUL, write n+1 */
        if (log->batching) {
                char *nb = realloc(log->batch, log->batch_len + n + 1);
                if (!nb) {
                        free(line);
                        return -ENOMEM;
                }
                memcpy(nb + log->batch_len, line, n + 1);
                log->batch = nb;
                log->batch_len += n + 1;
                log->batch_seq++;
                log->seq++;
                free(line);
                return 0;
        }
        int r = aj_write_all(log->fd, line, n + 1);
        free(line);
        if (r < 0)
                return r;
        log->seq++;
        return 0;
}

void aj_events_batch_begin(AjEventLog *log)
{
        log->batching = true;
}

int aj_events_batch_end(AjEventLog *log)
{
        log->batching = false;
        if (log->batch_len == 0)
                return 0;
        int r = aj_write_all(log->fd, log->batch, log->batch_len);
        if (r < 0)
                log->seq -= log->batch_seq; /* none of them is in the chain */
        free(log->batch);
        log->batch = NULL;
        log->batch_len = log->batch_seq = 0;
        return r;
}

uint64_t aj_events_last_seq(const AjEventLog *log) { return log->seq; }

void aj_events_close(AjEventLog *log)
{
        if (!log)
                return;
        if (log->fd >= 0)
                close(log->fd);
        free(log->batch);
        free(log->run_id);
        free(log);
}
