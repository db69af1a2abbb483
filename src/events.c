/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "events.h"
#include "util/fd.h"
#include "util/sha256.h"

/* Room for any struct tm's fields as %04d-%02d-%02dT%02d:%02d:%02d. */
#define AJ_TS_BASE_MAX 80

struct AjEventLog {
        int fd;
        uint64_t seq;
        char *run_json; /* the run id as a JSON string, encoded once */
        /* Lines are formatted here; between aj_events_batch_begin() and _end() they wait
         * here for one write(2). */
        char *buf;
        size_t len, cap;
        bool batching;
        size_t batch_seq;
        int batch_err; /* an event of the batch was refused: the whole batch is */
        /* The file's size, and the agent's share of it (0: no limit). */
        uint64_t bytes, agent_limit, wanted;
        /* The chain: the hash of the last line written, and of the last line formatted
         * (ahead of it inside a batch, until the batch is written). */
        char prev[AJ_SHA256_HEX_SIZE], pending_prev[AJ_SHA256_HEX_SIZE];
        /* The timestamp's whole-second part, formatted once per second. */
        time_t ts_sec;
        char ts_base[AJ_TS_BASE_MAX];
};

/* YYYY-MM-DDTHH:MM:SS in UTC, computed here: glibc's gmtime_r() and strftime() both read
 * the time zone file (/etc/localtime) on their first call, for a time that is UTC anyway,
 * and the first event is written while the jail waits for the supervisor. The date from
 * the count of days since 1970-01-01 goes through the proleptic Gregorian calendar's
 * 400-year eras (146097 days each), with years starting on March 1st so that the leap
 * day is the last of its year. */
static void format_utc_seconds(time_t sec, char buf[static AJ_TS_BASE_MAX])
{
        int64_t t = (int64_t)sec;
        int64_t days = t / 86400, rem = t % 86400;
        if (rem < 0)
                rem += 86400, days--;
        int64_t z = days + 719468; /* days since 0000-03-01 */
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;                                      /* [0, 146096] */
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
        int64_t mp = (5 * doy + 2) / 153;                                    /* March = 0 */
        int64_t day = doy - (153 * mp + 2) / 5 + 1;
        int64_t month = mp < 10 ? mp + 3 : mp - 9;
        int64_t year = yoe + era * 400 + (month <= 2);
        snprintf(buf, AJ_TS_BASE_MAX,
                 "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02" PRId64 ":%02" PRId64 ":%02" PRId64, year, month, day,
                 rem / 3600, rem / 60 % 60, rem % 60);
}

/* The inverse, for parsing without timegm() (which reads the time zone file too). */
static int64_t days_from_civil(int64_t year, int64_t month, int64_t day)
{
        year -= month <= 2;
        int64_t era = (year >= 0 ? year : year - 399) / 400;
        int64_t yoe = year - era * 400;
        int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

char *aj_format_timestamp(uint64_t ns, char *buf, size_t len)
{
        char base[AJ_TS_BASE_MAX];
        format_utc_seconds((time_t)(ns / 1000000000ull), base);
        snprintf(buf, len, "%s.%09lluZ", base, (unsigned long long)(ns % 1000000000ull));
        return buf;
}

int aj_parse_timestamp(const char *s, uint64_t *ret_ns)
{
        struct tm tm = { 0 };
        if (!s)
                return -EINVAL;
        const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
                return -EINVAL;
        uint64_t frac = 0;
        if (*end == '.') {
                int digits = 0;
                for (end++; *end >= '0' && *end <= '9'; end++, digits++)
                        if (digits < 9)
                                frac = frac * 10 + (uint64_t)(*end - '0');
                for (; digits < 9; digits++)
                        frac *= 10;
        }
        if (!streq(end, "Z"))
                return -EINVAL;
        int64_t t = days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 + tm.tm_hour * 3600 +
                    tm.tm_min * 60 + tm.tm_sec;
        if (t < 0)
                return -ERANGE;
        *ret_ns = (uint64_t)t * 1000000000ull + frac;
        return 0;
}

int aj_events_open(const char *path, const char *run_id, AjEventLog **ret)
{
        AjEventLog *log = calloc(1, sizeof(*log));
        if (!log)
                return -ENOMEM;
        log->ts_sec = (time_t)-1;
        memcpy(log->prev, AJ_EVENTS_GENESIS, sizeof(log->prev));
        memcpy(log->pending_prev, AJ_EVENTS_GENESIS, sizeof(log->pending_prev));
        json_t *id = json_string(run_id);
        log->run_json = id ? json_dumps(id, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
        json_decref(id);
        log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        struct stat st;
        if (!log->run_json || log->fd < 0 || fstat(log->fd, &st) < 0) {
                int r = !log->run_json ? -ENOMEM : -errno;
                aj_events_close(log);
                return r;
        }
        log->bytes = (uint64_t)st.st_size;
        *ret = log;
        return 0;
}

static int reserve(AjEventLog *log, size_t more)
{
        if (log->len + more <= log->cap)
                return 0;
        size_t cap = log->cap ? log->cap : 4096;
        while (cap < log->len + more)
                cap *= 2;
        char *nb = realloc(log->buf, cap);
        if (!nb)
                return -ENOMEM;
        log->buf = nb;
        log->cap = cap;
        return 0;
}

/* Event types are the supervisor's own names ("tool.request"); anything else is escaped. */
static bool plain_type(const char *s)
{
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
                        return false;
        return true;
}

/* Appends one line at log->buf + log->len without moving log->len; returns its length. */
static ssize_t format_line(AjEventLog *log, const char *type, json_t *fields)
{
        static const char *const reserved[] = { "seq", "ts", "run", "type", "prev" };
        uint64_t now = aj_now_realtime_ns();
        time_t sec = (time_t)(now / 1000000000ull);
        if (sec != log->ts_sec) {
                format_utc_seconds(sec, log->ts_base);
                log->ts_sec = sec;
        }
        _cleanup_free_ char *type_json = NULL;
        if (!plain_type(type)) {
                json_t *t = json_string(type);
                type_json = t ? json_dumps(t, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
                json_decref(t);
                if (!type_json)
                        return -ENOMEM;
        }
        /* The header first; the fields may not override it. */
        for (size_t i = 0; fields && i < ARRAY_SIZE(reserved); i++)
                (void)json_object_del(fields, reserved[i]);
        int hn;
        for (;;) {
                size_t room = log->cap - log->len;
                hn = snprintf(log->buf + log->len, room,
                              "{\"seq\":%llu,\"ts\":\"%s.%09lluZ\",\"run\":%s,\"type\":%s%s%s,\"prev\":\"%s\"",
                              (unsigned long long)(log->seq + 1), log->ts_base,
                              (unsigned long long)(now % 1000000000ull), log->run_json, type_json ? "" : "\"",
                              type_json ? type_json : type, type_json ? "" : "\"", log->pending_prev);
                if (hn < 0)
                        return -EINVAL;
                if ((size_t)hn < room)
                        break;
                if (reserve(log, (size_t)hn + 1) < 0)
                        return -ENOMEM;
        }
        size_t at = log->len + (size_t)hn, body;
        if (fields && json_object_size(fields) > 0) {
                /* The fields' own object, its opening brace turned into a comma. */
                const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII;
                body = json_dumpb(fields, log->buf + at, log->cap - at, flags);
                if (body == 0)
                        return -ENOMEM;
                if (body + 1 > log->cap - at) {
                        if (reserve(log, (size_t)hn + body + 1) < 0)
                                return -ENOMEM;
                        if (json_dumpb(fields, log->buf + at, log->cap - at, flags) != body)
                                return -EIO;
                }
                log->buf[at] = ',';
        } else {
                if (at + 2 > log->cap && reserve(log, (size_t)hn + 2) < 0)
                        return -ENOMEM;
                log->buf[at] = '}';
                body = 1;
        }
        log->buf[at + body] = '\n';
        aj_events_line_hash(log->buf + log->len, (size_t)hn + body, log->pending_prev);
        return (ssize_t)((size_t)hn + body + 1);
}

static int emit(AjEventLog *log, const char *type, json_t *fields, bool agent)
{
        if (log->batching && log->batch_err < 0) {
                json_decref(fields);
                return log->batch_err;
        }
        ssize_t n = reserve(log, 512);
        if (n >= 0)
                n = format_line(log, type, fields);
        json_decref(fields);
        if (n >= 0 && agent && log->agent_limit &&
            aj_log_cap_fit(log->bytes + log->len, log->agent_limit, (size_t)n) < (size_t)n) {
                log->wanted = log->bytes + log->len + (uint64_t)n;
                n = -EFBIG;
        }
        if (n < 0) {
                /* Nothing of it is in the chain; a batch goes whole or not at all. */
                if (log->batching)
                        log->batch_err = (int)n;
                else
                        memcpy(log->pending_prev, log->prev, sizeof(log->prev));
                return (int)n;
        }
        if (log->batching) {
                log->len += (size_t)n;
                log->batch_seq++;
                log->seq++;
                return 0;
        }
        int r = aj_write_all(log->fd, log->buf + log->len, (size_t)n);
        if (r < 0) {
                memcpy(log->pending_prev, log->prev, sizeof(log->prev)); /* not in the chain */
                return r;
        }
        memcpy(log->prev, log->pending_prev, sizeof(log->prev));
        log->seq++;
        log->bytes += (uint64_t)n;
        return 0;
}

int aj_events_emit(AjEventLog *log, const char *type, json_t *fields) { return emit(log, type, fields, false); }

int aj_events_emit_agent(AjEventLog *log, const char *type, json_t *fields) { return emit(log, type, fields, true); }

void aj_events_set_agent_limit(AjEventLog *log, uint64_t limit) { log->agent_limit = limit; }

uint64_t aj_events_bytes(const AjEventLog *log) { return log->bytes; }

uint64_t aj_events_wanted(const AjEventLog *log) { return log->wanted; }

uint64_t aj_events_agent_share(uint64_t cap)
{
        uint64_t reserve = cap / 16 < AJ_EVENTS_MAX_RESERVE ? cap / 16 : AJ_EVENTS_MAX_RESERVE;
        return cap - reserve;
}

size_t aj_log_cap_fit(uint64_t used, uint64_t cap, size_t n)
{
        if (used >= cap)
                return 0;
        return cap - used < n ? (size_t)(cap - used) : n;
}

void aj_events_line_hash(const char *line, size_t len, char out[AJ_SHA256_HEX_SIZE])
{
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256(line, len, d);
        aj_sha256_hex(d, out);
}

const char *aj_events_last_hash(const AjEventLog *log) { return log->prev; }

void aj_events_batch_begin(AjEventLog *log) { log->batching = true; }

int aj_events_batch_end(AjEventLog *log)
{
        log->batching = false;
        int r = log->batch_err;
        log->batch_err = 0;
        if (r == 0 && log->len == 0)
                return 0;
        if (r == 0)
                r = aj_write_all(log->fd, log->buf, log->len);
        if (r == 0)
                log->bytes += log->len;
        if (r < 0) {
                log->seq -= log->batch_seq; /* none of them is in the chain */
                memcpy(log->pending_prev, log->prev, sizeof(log->prev));
        } else {
                memcpy(log->prev, log->pending_prev, sizeof(log->prev));
        }
        log->len = log->batch_seq = 0;
        return r;
}

uint64_t aj_events_last_seq(const AjEventLog *log) { return log->seq; }

void aj_events_resume(AjEventLog *log, uint64_t last_seq, const char *last_hash)
{
        log->seq = last_seq;
        snprintf(log->prev, sizeof(log->prev), "%s", last_hash);
        memcpy(log->pending_prev, log->prev, sizeof(log->prev));
}

void aj_events_close(AjEventLog *log)
{
        if (!log)
                return;
        if (log->fd >= 0)
                close(log->fd);
        free(log->buf);
        free(log->run_json);
        free(log);
}
