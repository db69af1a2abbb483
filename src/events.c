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
#include "util/json-fast.h"
#include "util/sha256.h"

/* Room for any struct tm's fields as %04d-%02d-%02dT%02d:%02d:%02d. */
#define AJ_TS_BASE_MAX 80
/* The line buffer kept between writes: a broker group (committed past 64 KiB) and its
 * last line fit; a larger event's growth is given back after its write. */
#define EVENTS_BUF_KEEP (128u << 10)

struct AjEventLog {
        int fd;
        uint64_t seq;
        char *run_json; /* the run id as a JSON string, encoded once */
        /* Lines are formatted here and wait for one write(2): the events of a batch
         * (aj_events_batch_begin()/_end()), and everything emitted while the log is held
         * (aj_events_hold()/_commit()). buf[0..len) holds `unwritten` events, in the chain
         * already (seq, pending_prev) but not yet in the file. */
        char *buf;
        size_t len, cap;
        uint64_t unwritten;
        bool held;
        bool fd_broken; /* a failed write could not be cut off: nothing more is written */
        bool batching;
        int batch_err; /* an event of the batch was refused: the whole batch is */
        /* Where the batch began, to drop it whole. */
        size_t batch_len;
        uint64_t batch_unwritten;
        char batch_prev[AJ_SHA256_HEX_SIZE];
        /* The room kept for the supervisor's own records (aj_events_set_room). */
        int (*room_release)(void *userdata);
        void *room_userdata;
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
        /* As the chain's readers open it: a symlink or a FIFO put in its place is refused,
         * never written through nor waited on for a reader. */
        log->fd = aj_open_regular_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND, 0640);
        struct stat st;
        if (!log->run_json || log->fd < 0 || fstat(log->fd, &st) < 0) {
                int r = !log->run_json ? -ENOMEM : log->fd < 0 ? log->fd : -errno;
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
/* `text` (len bytes), when not NULL, is the fields already printed: a compact JSON object
 * (ENSURE_ASCII) without the header's keys. */
static ssize_t format_line(AjEventLog *log, const char *type, json_t *fields, const char *text, size_t text_len)
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
        /* The header by hand (it is on every line): what snprintf would make of
         * {"seq":%llu,"ts":"%s.%09lluZ","run":%s,"type":"%s","prev":"%s"}. */
        const char *t = type_json ? type_json : type;
        size_t tn = strlen(t), rn = strlen(log->run_json), bn = strlen(log->ts_base);
        size_t need = 64 + 20 + bn + 10 + rn + tn + 2 + AJ_SHA256_HEX_SIZE;
        if (log->cap - log->len < need && reserve(log, need) < 0)
                return -ENOMEM;
        char *h = log->buf + log->len, *p = h;
#define PUT(s, n) (memcpy(p, (s), (n)), p += (n))
        char num[24];
        size_t i = sizeof(num);
        unsigned long long v = (unsigned long long)(log->seq + 1);
        do
                num[--i] = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        PUT("{\"seq\":", 7);
        PUT(num + i, sizeof(num) - i);
        PUT(",\"ts\":\"", 7);
        PUT(log->ts_base, bn);
        *p++ = '.';
        unsigned long long frac = (unsigned long long)(now % 1000000000ull);
        for (int d = 8; d >= 0; d--, frac /= 10)
                p[d] = (char)('0' + frac % 10);
        p += 9;
        PUT("Z\",\"run\":", 9);
        PUT(log->run_json, rn);
        PUT(",\"type\":", 8);
        if (!type_json)
                *p++ = '"';
        PUT(t, tn);
        if (!type_json)
                *p++ = '"';
        PUT(",\"prev\":\"", 9);
        PUT(log->pending_prev, AJ_SHA256_HEX_SIZE - 1);
        *p++ = '"';
#undef PUT
        int hn = (int)(p - h);
        size_t at = log->len + (size_t)hn, body;
        if (text && text_len > 2) {
                if (log->cap - at < text_len + 1 && reserve(log, (size_t)hn + text_len + 1) < 0)
                        return -ENOMEM;
                memcpy(log->buf + at, text, text_len);
                body = text_len;
                log->buf[at] = ',';
        } else if (fields && json_object_size(fields) > 0) {
                /* The fields' own object, its opening brace turned into a comma. */
                const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII;
                ssize_t fast = aj_json_dump_fast(fields, log->buf + at, log->cap - at, true, 0);
                body = fast >= 0 ? (size_t)fast : json_dumpb(fields, log->buf + at, log->cap - at, flags);
                if (body == 0)
                        return -ENOMEM;
                if (body + 1 > log->cap - at) {
                        if (reserve(log, (size_t)hn + body + 1) < 0)
                                return -ENOMEM;
                        size_t again = fast >= 0 ? (size_t)aj_json_dump_fast(fields, log->buf + at, log->cap - at, true,
                                                                             0)
                                                 : json_dumpb(fields, log->buf + at, log->cap - at, flags);
                        if (again != body)
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

/* Writes what waits in the buffer: on success it is the file's; on failure none of it is in
 * the chain (seq and the chain's head go back to the last line written). `own`: the buffer
 * holds one event of the supervisor's own, which may use the records' room. */
static int flush_buffer(AjEventLog *log, bool own)
{
        if (log->len == 0)
                return 0;
        if (log->fd_broken) {
                log->seq -= log->unwritten;
                memcpy(log->pending_prev, log->prev, sizeof(log->prev));
                log->len = 0;
                log->unwritten = 0;
                return -EIO;
        }
        int r = aj_write_all(log->fd, log->buf, log->len);
        /* A short write then an error (ENOSPC, EDQUOT, EFBIG) left the group's head in the
         * file: cut it off, or the next line would reuse its seqs and glue onto its tail. */
        if (r < 0 && ftruncate(log->fd, (off_t)log->bytes) < 0)
                log->fd_broken = true;
        /* The supervisor's own record, on a full disk: once, in the room kept for it. */
        if (own && !log->fd_broken && (r == -ENOSPC || r == -EDQUOT) && log->room_release &&
            log->room_release(log->room_userdata) > 0) {
                r = aj_write_all(log->fd, log->buf, log->len);
                if (r < 0 && ftruncate(log->fd, (off_t)log->bytes) < 0)
                        log->fd_broken = true;
        }
        if (r < 0) {
                log->seq -= log->unwritten;
                memcpy(log->pending_prev, log->prev, sizeof(log->prev));
        } else {
                memcpy(log->prev, log->pending_prev, sizeof(log->prev));
                log->bytes += log->len;
        }
        log->len = 0;
        log->unwritten = 0;
        /* What a large event or group grew is given back, not kept resident for the run. */
        if (log->cap > EVENTS_BUF_KEEP) {
                char *nb = realloc(log->buf, EVENTS_BUF_KEEP);
                if (nb) {
                        log->buf = nb;
                        log->cap = EVENTS_BUF_KEEP;
                }
        }
        return r;
}

static int flush(AjEventLog *log) { return flush_buffer(log, false); }

static int emit(AjEventLog *log, const char *type, json_t *fields, const char *text, size_t text_len, bool agent)
{
        if (log->batching && log->batch_err < 0) {
                json_decref(fields);
                return log->batch_err;
        }
        char head[AJ_SHA256_HEX_SIZE];
        memcpy(head, log->pending_prev, sizeof(head));
        ssize_t n = reserve(log, 512);
        if (n >= 0)
                n = format_line(log, type, fields, text, text_len);
        json_decref(fields);
        if (n >= 0 && agent && log->agent_limit &&
            aj_log_cap_fit(log->bytes + log->len, log->agent_limit, (size_t)n) < (size_t)n) {
                log->wanted = log->bytes + log->len + (uint64_t)n;
                n = -EFBIG;
        }
        if (n < 0) {
                /* Nothing of it is in the chain; a batch goes whole or not at all. */
                memcpy(log->pending_prev, head, sizeof(head));
                if (log->batching)
                        log->batch_err = (int)n;
                return (int)n;
        }
        log->len += (size_t)n;
        log->unwritten++;
        log->seq++;
        if (log->batching || log->held)
                return 0;
        return flush_buffer(log, !agent);
}

int aj_events_emit(AjEventLog *log, const char *type, json_t *fields)
{
        return emit(log, type, fields, NULL, 0, false);
}

int aj_events_emit_agent(AjEventLog *log, const char *type, json_t *fields)
{
        return emit(log, type, fields, NULL, 0, true);
}

int aj_events_emit_agent_text(AjEventLog *log, const char *type, const char *object, size_t len)
{
        if (len < 2 || object[0] != '{' || object[len - 1] != '}')
                return -EINVAL;
        return emit(log, type, NULL, object, len, true);
}

void aj_events_set_agent_limit(AjEventLog *log, uint64_t limit) { log->agent_limit = limit; }

void aj_events_set_room(AjEventLog *log, int (*release)(void *userdata), void *userdata)
{
        log->room_release = release;
        log->room_userdata = userdata;
}

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

void aj_events_batch_begin(AjEventLog *log)
{
        log->batching = true;
        log->batch_err = 0;
        log->batch_len = log->len;
        log->batch_unwritten = log->unwritten;
        memcpy(log->batch_prev, log->pending_prev, sizeof(log->batch_prev));
}

int aj_events_batch_end(AjEventLog *log)
{
        log->batching = false;
        int r = log->batch_err;
        log->batch_err = 0;
        if (r < 0) {
                /* Dropped whole; what was held before it stays. */
                log->seq -= log->unwritten - log->batch_unwritten;
                log->len = log->batch_len;
                log->unwritten = log->batch_unwritten;
                memcpy(log->pending_prev, log->batch_prev, sizeof(log->pending_prev));
                return r;
        }
        return log->held ? 0 : flush(log);
}

void aj_events_hold(AjEventLog *log) { log->held = true; }

int aj_events_end_partial_line(AjEventLog *log)
{
        if (log->len > 0 || log->batching || log->held)
                return -EBUSY;
        int r = reserve(log, 1);
        if (r < 0)
                return r;
        /* Not an event: the byte that ends the line a killed writer left. The batch begins
         * before it, so that it goes with the batch's events or not at all. */
        aj_events_batch_begin(log);
        log->buf[log->len++] = '\n';
        return 0;
}

int aj_events_commit(AjEventLog *log)
{
        log->held = false;
        return log->batching ? 0 : flush(log);
}

size_t aj_events_held_bytes(const AjEventLog *log) { return log->len; }

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
        if (log->fd >= 0 && !log->batching)
                (void)flush(log); /* held events are the chain's: a close commits them */
        if (log->fd >= 0)
                close(log->fd);
        free(log->buf);
        free(log->run_json);
        free(log);
}
