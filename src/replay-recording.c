/* SPDX-License-Identifier: Apache-2.0 */
/* A run's recorded model exchanges: read, matched, served again (replay.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "http-parse.h"
#include "replay.h"
#include "run-record.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/outbuf.h"

/* What llm-record.c writes at the end of a body cut at llm.record_bytes. */
#define CUT_MARK "\n[agentjail: cut at llm.record_bytes]\n"

void aj_replay_recording_free(AjReplayRecording *rec)
{
        if (!rec)
                return;
        for (size_t i = 0; i < rec->n; i++) {
                free(rec->entries[i].provider);
                free(rec->entries[i].path);
                free(rec->entries[i].content_type);
        }
        free(rec->entries);
        free(rec->llm_dir);
        free(rec);
}

const char *aj_replay_match_name(AjReplayMatch m)
{
        switch (m) {
        case AJ_REPLAY_DIGEST:
                return "digest";
        case AJ_REPLAY_POSITION:
                return "position";
        case AJ_REPLAY_MISS:
                break;
        }
        return "miss";
}

static const char *str(json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "";
}

static AjReplayEntry *entry_of(AjReplayRecording *rec, uint64_t call_id)
{
        for (size_t i = rec->n; i > 0; i--)
                if (rec->entries[i - 1].call_id == call_id)
                        return &rec->entries[i - 1];
        return NULL;
}

static int add_request(AjReplayRecording *rec, json_t *ev)
{
        if (!streq(str(ev, "verdict"), "allow")) {
                rec->n_refused++;
                return 0;
        }
        if (rec->n >= AJ_REPLAY_MAX_CALLS)
                return -E2BIG;
        AjReplayEntry *n = realloc(rec->entries, (rec->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        rec->entries = n;
        AjReplayEntry *e = &n[rec->n];
        *e = (AjReplayEntry){ .call_id = (uint64_t)json_integer_value(json_object_get(ev, "call_id")),
                              .stream = json_is_true(json_object_get(ev, "stream")),
                              .missing = "the call never got a response (no llm.response)" };
        e->provider = strdup(str(ev, "provider"));
        e->path = strdup(str(ev, "path"));
        snprintf(e->request_sha256, sizeof(e->request_sha256), "%s", str(ev, "request_sha256"));
        rec->n++;
        return e->provider && e->path ? 0 : -ENOMEM;
}

static void add_response(AjReplayRecording *rec, json_t *ev, int (*body_state)(void *, uint64_t), void *userdata)
{
        AjReplayEntry *e = entry_of(rec, (uint64_t)json_integer_value(json_object_get(ev, "call_id")));
        if (!e)
                return;
        e->status = (unsigned)json_integer_value(json_object_get(ev, "status"));
        const char *ct = str(ev, "content_type");
        free(e->content_type);
        e->content_type = *ct ? strdup(ct) : NULL;
        const char *relay = str(ev, "relay");
        if (!streq(relay, "completed"))
                e->missing = streq(relay, "cut_short") ? "the original's response was cut short (a cap)"
                                                       : "the original call failed (no whole response)";
        else if (e->status < 100 || e->status > 599)
                e->missing = "no HTTP status was recorded";
        else if (!rec->bodies_kept)
                e->missing = "its response body was not kept";
        else {
                int r = body_state ? body_state(userdata, e->call_id) : -ENOENT;
                e->missing = r == 0        ? NULL
                             : r == -E2BIG ? "its response body was cut at llm.record_bytes"
                                           : "its response body (llm/ID.response) is missing";
        }
}

int aj_replay_recording_from_events(json_t *events, const char *llm_dir, int (*body_state)(void *, uint64_t),
                                    void *userdata, AjReplayRecording **ret)
{
        AjReplayRecording *rec = calloc(1, sizeof(*rec));
        if (!rec)
                return -ENOMEM;
        _cleanup_(aj_replay_recording_freep) AjReplayRecording *owned = rec;
        if (llm_dir && !(rec->llm_dir = strdup(llm_dir)))
                return -ENOMEM;
        rec->bodies_kept = llm_dir != NULL;
        size_t i;
        json_t *ev;
        json_array_foreach (events, i, ev) {
                const char *type = str(ev, "type");
                if (streq(type, "llm.request")) {
                        int r = add_request(rec, ev);
                        if (r < 0)
                                return r;
                } else if (streq(type, "llm.response"))
                        add_response(rec, ev, body_state, userdata);
        }
        for (size_t k = 0; k < rec->n; k++)
                rec->n_missing += rec->entries[k].missing != NULL;
        *ret = TAKE_PTR(owned);
        return 0;
}

static int body_file_state(void *userdata, uint64_t call_id)
{
        const char *dir = userdata;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%llu.response", dir, (unsigned long long)call_id);
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -ENOENT;
        if ((uint64_t)st.st_size > AJ_REPLAY_MAX_RESPONSE + strlen(CUT_MARK))
                return -E2BIG;
        size_t m = strlen(CUT_MARK);
        char tail[64];
        if ((size_t)st.st_size >= m && pread(fd, tail, m, st.st_size - (off_t)m) == (ssize_t)m &&
            memcmp(tail, CUT_MARK, m) == 0)
                return -E2BIG;
        return 0;
}

static int collect(json_t *ev, void *userdata)
{
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (type && (streq(type, "llm.request") || streq(type, "llm.response")))
                return json_array_append(userdata, ev) < 0 ? -ENOMEM : 0;
        return 0;
}

int aj_replay_recording_load(const char *run_dir, AjReplayRecording **ret, AjError *ret_error)
{
        char path[PATH_MAX], llm[PATH_MAX];
        if (aj_run_file_path(run_dir, AJ_RUN_FILE_EVENTS, path, sizeof(path)) < 0 ||
            aj_run_file_path(run_dir, AJ_RUN_DIR_LLM, llm, sizeof(llm)) < 0)
                return aj_error_set(ret_error, -ENAMETOOLONG, "'%s': path too long", run_dir);
        json_auto_t *events = json_array();
        if (!events)
                return -ENOMEM;
        int r = aj_events_foreach(path, collect, events, NULL);
        if (r < 0)
                return aj_error_set(ret_error, r, "cannot read '%s': %s", path, strerror(-r));
        struct stat st;
        bool have_llm = lstat(llm, &st) == 0 && S_ISDIR(st.st_mode);
        r = aj_replay_recording_from_events(events, have_llm ? llm : NULL, body_file_state, llm, ret);
        if (r < 0)
                return aj_error_set(ret_error, r, "cannot read the recording of '%s': %s", run_dir, strerror(-r));
        return 0;
}

int aj_replay_recording_check(const AjReplayRecording *rec, const char *run_id, const char *record_mode,
                              AjError *ret_error)
{
        if (rec->n == 0 || rec->n_missing == 0)
                return 0;
        /* "off" keeps digests only; a "digest" run without bodies was recorded by an
         * agentjail whose "digest" kept nothing more. */
        bool off = record_mode && streq(record_mode, "off");
        if (!rec->bodies_kept)
                return aj_error_set(ret_error, -ENODATA,
                                    "run %s cannot be replayed: it made %zu model call%s but kept no response bodies "
                                    "(its llm.record was \"%s\"%s); a replayable run needs \"llm\": {\"record\": "
                                    "\"digest\"} (the default) or \"full\" in its profile",
                                    run_id, rec->n, rec->n == 1 ? "" : "s", record_mode ? record_mode : "?",
                                    off ? ", which keeps digests only"
                                        : ", recorded by an older agentjail that kept digests only");
        for (size_t i = 0; i < rec->n; i++)
                if (rec->entries[i].missing)
                        return aj_error_set(ret_error, -ENODATA,
                                            "run %s cannot be replayed whole: %zu of its %zu model calls cannot be "
                                            "served; the first, call %llu (%s %s): %s (--force replays it anyway, "
                                            "those calls are misses)",
                                            run_id, rec->n_missing, rec->n, (unsigned long long)rec->entries[i].call_id,
                                            rec->entries[i].provider, rec->entries[i].path, rec->entries[i].missing);
        return 0;
}

static bool same_route(const AjReplayEntry *e, const char *provider, const char *path)
{
        return streq(e->provider, provider) && streq(e->path, path);
}

ssize_t aj_replay_match(AjReplayRecording *rec, const char *provider, const char *path, const char *request_sha256,
                        size_t position, AjReplayMatch *ret_match, const char **ret_missing)
{
        *ret_match = AJ_REPLAY_MISS;
        *ret_missing = NULL;
        ssize_t found = -1;
        for (size_t i = 0; i < rec->n && found < 0; i++) {
                AjReplayEntry *e = &rec->entries[i];
                if (!e->served && same_route(e, provider, path) && streq(e->request_sha256, request_sha256)) {
                        found = (ssize_t)i;
                        *ret_match = AJ_REPLAY_DIGEST;
                }
        }
        if (found < 0 && position < rec->n && !rec->entries[position].served &&
            same_route(&rec->entries[position], provider, path)) {
                found = (ssize_t)position;
                *ret_match = AJ_REPLAY_POSITION;
        }
        if (found < 0)
                return -1;
        AjReplayEntry *e = &rec->entries[found];
        e->served = true;
        if (e->missing) {
                *ret_missing = e->missing;
                *ret_match = AJ_REPLAY_MISS;
                return -1;
        }
        return found;
}

static int buf_add(AjOutBuf *b, const void *p, size_t n) { return aj_outbuf_add(b, p, n, false, SIZE_MAX); }

static int buf_printf(AjOutBuf *b, const char *fmt, ...) _printf_(2, 3);
static int buf_printf(AjOutBuf *b, const char *fmt, ...)
{
        char tmp[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(tmp))
                return -EINVAL;
        return buf_add(b, tmp, (size_t)n);
}

/* The end of the SSE event that starts at body[off] (after its blank line), or len. */
static size_t event_end(const char *body, size_t off, size_t len)
{
        for (size_t i = off; i + 1 < len; i++) {
                if (body[i] == '\n' && body[i + 1] == '\n')
                        return i + 2;
                if (i + 3 < len && memcmp(body + i, "\r\n\r\n", 4) == 0)
                        return i + 4;
        }
        return len;
}

int aj_replay_response(const AjReplayEntry *e, const char *body, size_t body_len, char **ret, size_t *ret_len)
{
        const char *ct = e->content_type;
        if (!ct)
                ct = e->stream && e->status / 100 == 2 ? "text/event-stream" : "application/json";
        if (strpbrk(ct, "\r\n"))
                return -EINVAL;
        bool sse = strncasecmp(ct, "text/event-stream", 17) == 0;
        AjOutBuf b = { 0 };
        int r = buf_printf(&b, "HTTP/1.1 %u %s\r\ncontent-type: %s\r\nx-agentjail-replay: call %llu\r\n", e->status,
                           aj_http_reason_phrase(e->status), ct, (unsigned long long)e->call_id);
        if (r >= 0 && sse) {
                r = buf_printf(&b, "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
                for (size_t off = 0; r >= 0 && off < body_len;) {
                        size_t end = event_end(body, off, body_len);
                        r = buf_printf(&b, "%zx\r\n", end - off);
                        if (r >= 0)
                                r = buf_add(&b, body + off, end - off);
                        if (r >= 0)
                                r = buf_add(&b, "\r\n", 2);
                        off = end;
                }
                if (r >= 0)
                        r = buf_add(&b, "0\r\n\r\n", 5);
        } else if (r >= 0) {
                r = buf_printf(&b, "content-length: %zu\r\n\r\n", body_len);
                if (r >= 0)
                        r = buf_add(&b, body, body_len);
        }
        if (r >= 0)
                r = buf_add(&b, "", 1); /* a string too, for the reader's convenience */
        if (r < 0) {
                aj_outbuf_clear(&b);
                return r;
        }
        *ret = b.data;
        *ret_len = b.len - 1;
        return 0;
}

int aj_replay_read_body(const AjReplayRecording *rec, const AjReplayEntry *e, char **ret, size_t *ret_len)
{
        if (!rec->llm_dir)
                return -ENOENT;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%llu.response", rec->llm_dir, (unsigned long long)e->call_id);
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0)
                return fd;
        char *data = NULL;
        size_t n = 0;
        int r = aj_read_fd(fd, AJ_REPLAY_MAX_RESPONSE + 64, &data, &n);
        if (r < 0)
                return r == -EFBIG ? -E2BIG : r;
        size_t m = strlen(CUT_MARK);
        if (n >= m && memcmp(data + n - m, CUT_MARK, m) == 0) {
                free(data);
                return -E2BIG;
        }
        *ret = data;
        *ret_len = n;
        return 0;
}
