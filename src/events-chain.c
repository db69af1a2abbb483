/* SPDX-License-Identifier: Apache-2.0 */
/* The event chain read back: its tail, every event in order, an append to a chain nobody
 * else is writing (a dead run's), and the verifier. The writer is src/events.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "util/fd.h"
#include "util/json-scan.h"
#include "util/sha256.h"

/* How much of the end of events.jsonl aj_events_read_tail() reads. */
#define EVENTS_TAIL_BYTES (1024 * 1024)
/* The JSON values (util/json-scan.h) of the events it keeps: at most some 30 MB of jansson's
 * DOM (all empty objects), where the megabyte of 16 broker requests of empty objects was 71
 * MB; room for three events carrying a maximal request line (at most ~32,800 values each),
 * four undo records of 400 nests 60 deep (integ-breach), and far more than 50 ordinary
 * events. */
#define EVENTS_TAIL_MAX_VALUES (1u << 17)

/* The last n events, parsed from the end backwards one line at a time until n are kept: the
 * tail's bytes are the agent's to fill (parsed whole, a megabyte of small lines of deep nests
 * held 42 MB of jansson's DOM), so what is held is the raw tail, the line at hand and the n
 * kept, and each line is scanned before it is parsed: the events kept stop short of
 * EVENTS_TAIL_MAX_VALUES. */
int aj_events_read_tail(const char *path, size_t n, json_t **ret_array)
{
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        off_t start = st.st_size > EVENTS_TAIL_BYTES ? st.st_size - EVENTS_TAIL_BYTES : 0;
        size_t want = (size_t)(st.st_size - start);
        _cleanup_free_ char *buf = malloc(want + 1);
        if (!buf)
                return -ENOMEM;
        if (lseek(fd, start, SEEK_SET) < 0)
                return -errno;
        ssize_t got = aj_read_full(fd, buf, want);
        if (got < 0)
                return (int)got;
        size_t end = (size_t)got, first = 0;
        if (start > 0) {
                /* Started mid-line: the first whole line follows the first newline. */
                const char *nl = memchr(buf, '\n', end);
                first = nl ? (size_t)(nl - buf) + 1 : end;
        }
        json_auto_t *newest_first = json_array();
        if (!newest_first)
                return -ENOMEM;
        uint64_t values = 0;
        while (json_array_size(newest_first) < n && end > first) {
                const char *nl = memrchr(buf + first, '\n', end - first);
                size_t begin = nl ? (size_t)(nl - buf) + 1 : first;
                AjJsonShape shape = { 0 };
                if (aj_json_scan(buf + begin, end - begin, EVENTS_TAIL_MAX_VALUES - values, UINT_MAX, &shape) == -E2BIG)
                        break;
                json_t *ev = end > begin ? json_loadb(buf + begin, end - begin, 0, NULL) : NULL;
                if (json_is_object(ev)) {
                        values += shape.values;
                        if (json_array_append_new(newest_first, ev) < 0)
                                return -ENOMEM;
                } else {
                        json_decref(ev);
                }
                end = nl ? begin - 1 : first;
        }
        json_t *all = json_array();
        if (!all)
                return -ENOMEM;
        for (size_t i = json_array_size(newest_first); i-- > 0;)
                if (json_array_append(all, json_array_get(newest_first, i)) < 0) {
                        json_decref(all);
                        return -ENOMEM;
                }
        *ret_array = all;
        return 0;
}

/* How the file ends, for an append: its last whole line, and what a killed writer left
 * after it. */
typedef struct {
        char *last; /* the last whole line, without its newline; NULL: none */
        size_t last_len;
        bool unterminated; /* the file does not end with a newline */
        size_t torn;       /* ...and its last `torn` bytes are not a whole line (0: they are) */
        char torn_hash[AJ_SHA256_HEX_SIZE];
} FileEnd;

static void file_end_done(FileEnd *e) { free(e->last); }

/* Reads up to two lines' worth from the end: a whole line and a torn one after it are each at
 * most EVENTS_TAIL_BYTES long. */
static int read_file_end(int fd, FileEnd *ret)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        *ret = (FileEnd){ 0 };
        if (st.st_size == 0)
                return 0;
        off_t window = 2 * EVENTS_TAIL_BYTES;
        off_t start = st.st_size > window ? st.st_size - window : 0;
        size_t want = (size_t)(st.st_size - start), have = 0;
        _cleanup_free_ char *buf = malloc(want + 1);
        if (!buf)
                return -ENOMEM;
        while (have < want) {
                ssize_t k = pread(fd, buf + have, want - have, start + (off_t)have);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                have += (size_t)k;
        }
        /* [begin, end): the last whole line, once found. */
        size_t end = have;
        if (buf[end - 1] == '\n') {
                end--;
        } else {
                ret->unterminated = true;
                const char *nl = memrchr(buf, '\n', end);
                size_t tail = nl ? (size_t)(nl - buf) + 1 : 0;
                if (!nl && start > 0)
                        return -E2BIG;
                /* A prefix of a line (a JSON object) is never a JSON object itself: only the
                 * whole line is, its newline all that is missing. */
                json_t *v = json_loadb(buf + tail, end - tail, 0, NULL);
                bool whole = json_is_object(v);
                json_decref(v);
                if (!whole) {
                        ret->torn = end - tail;
                        aj_events_line_hash(buf + tail, ret->torn, ret->torn_hash);
                        if (!nl)
                                return 0; /* the first line torn: no whole line before it */
                        end = tail - 1;
                }
        }
        size_t begin = end;
        while (begin > 0 && buf[begin - 1] != '\n')
                begin--;
        if (begin == 0 && start > 0)
                return -E2BIG;
        ret->last = strndup(buf + begin, end - begin);
        if (!ret->last)
                return -ENOMEM;
        ret->last_len = end - begin;
        return 0;
}

int aj_events_lock(const char *path, bool exclusive, int *ret_fd)
{
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY | (exclusive ? O_CREAT : 0), 0640);
        if (fd < 0)
                return fd;
        while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

bool aj_chain_end_continues(const AjChainEnd *end, uint64_t count, const char *hash)
{
        return end->from_count == count && hash && streq(end->from_hash, hash);
}

int aj_events_append(const char *path, const char *run_id, const char *type, json_t *fields, AjChainEnd *ret_end)
{
        return aj_events_append_after(path, run_id, NULL, type, fields, ret_end);
}

/* The appended event's note that the file did not end at the anchor (see events.h). */
static int note_anchor_kept(json_t **fields, const AjChainEnd *anchor)
{
        if (!*fields && !(*fields = json_object()))
                return -ENOMEM;
        json_t *kept = json_pack("{s:I, s:s}", "count", (json_int_t)anchor->count, "last_sha256", anchor->last_hash);
        if (!kept || json_object_set_new(*fields, "anchor_kept", kept) < 0)
                return -ENOMEM;
        return 0;
}

int aj_events_append_after(const char *path, const char *run_id, const AjChainEnd *anchor, const char *type,
                           json_t *fields, AjChainEnd *ret_end)
{
        json_auto_t *owned = fields;
        _cleanup_(file_end_done) FileEnd fe = { 0 };
        {
                _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY | O_CREAT, 0640);
                if (fd < 0)
                        return fd;
                int r = read_file_end(fd, &fe);
                if (r < 0)
                        return r;
        }
        uint64_t seq = 0;
        char prev[AJ_SHA256_HEX_SIZE] = AJ_EVENTS_GENESIS;
        if (fe.last) {
                json_auto_t *ev = json_loadb(fe.last, fe.last_len, 0, NULL);
                if (json_is_integer(json_object_get(ev, "seq")))
                        seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
                aj_events_line_hash(fe.last, fe.last_len, prev);
        }
        AjChainEnd from = { .from_count = seq };
        snprintf(from.from_hash, sizeof(from.from_hash), "%s", prev);
        if (anchor && !aj_chain_end_continues(&from, anchor->count, anchor->last_hash)) {
                int r = note_anchor_kept(&owned, anchor);
                if (r < 0)
                        return r;
        }
        /* The supervisor's own writer, so the line is formatted and chained the same way. */
        _cleanup_(aj_events_closep) AjEventLog *log = NULL;
        int r = aj_events_open(path, run_id, &log);
        if (r < 0)
                return r;
        aj_events_resume(log, seq, prev);
        if (fe.unterminated) {
                r = aj_events_end_partial_line(log);
                if (r < 0)
                        return r;
                if (fe.torn > 0)
                        (void)aj_events_emit(log, AJ_EVENTS_TORN,
                                             json_pack("{s:I, s:s}", "bytes", (json_int_t)fe.torn, "sha256",
                                                       fe.torn_hash)); /* a failure fails the batch */
        }
        r = aj_events_emit(log, type, json_incref(owned));
        if (fe.unterminated) {
                int q = aj_events_batch_end(log);
                r = r < 0 ? r : q;
        }
        if (r < 0)
                return r;
        if (ret_end) {
                *ret_end = from;
                ret_end->count = aj_events_last_seq(log);
                snprintf(ret_end->last_hash, sizeof(ret_end->last_hash), "%s", aj_events_last_hash(log));
        }
        return 0;
}

/* The chain to read line by line (aj_open_regular_at: a FIFO put there must not hang us). */
static int open_stream(const char *path, FILE **ret)
{
        _cleanup_close_ int fd = aj_open_regular_at(AT_FDCWD, path, O_RDONLY, 0);
        if (fd < 0)
                return fd;
        FILE *f = fdopen(fd, "re");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        *ret = f;
        return 0;
}

static int verify_stream(FILE *f, uint64_t expect_count, const char *expect_hash, AjChainCheck *ret);

int aj_events_verify(const char *path, uint64_t expect_count, const char *expect_hash, AjChainCheck *ret)
{
        *ret = (AjChainCheck){ 0 };
        FILE *f = NULL;
        int r = open_stream(path, &f);
        if (r < 0)
                return r;
        r = verify_stream(f, expect_count, expect_hash, ret);
        fclose(f);
        return r;
}

/* A line that is not an event, waiting for the AJ_EVENTS_TORN after it to name it. */
typedef struct {
        bool pending;
        size_t bytes;
        char hash[AJ_SHA256_HEX_SIZE];
} TornLine;

/* Is ev the AJ_EVENTS_TORN record of `torn`? */
static bool names_torn_line(json_t *ev, const TornLine *torn)
{
        json_t *bytes = json_object_get(ev, "bytes");
        const char *hash = json_string_value(json_object_get(ev, "sha256"));
        return json_is_integer(bytes) && json_integer_value(bytes) == (json_int_t)torn->bytes && hash &&
               streq(hash, torn->hash);
}

static int verify_stream(FILE *f, uint64_t expect_count, const char *expect_hash, AjChainCheck *ret)
{
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        char prev[AJ_SHA256_HEX_SIZE] = AJ_EVENTS_GENESIS;
        TornLine torn = { 0 };
        ssize_t n;
        while ((n = getline(&line, &size, f)) > 0) {
                size_t len = (size_t)n;
                uint64_t want = ret->count + 1;
                if (line[len - 1] != '\n') {
                        /* The end of the file, torn, and nobody appended after it. */
                        if (!torn.pending)
                                ret->torn_tail = len;
                        break;
                }
                len--;
                json_auto_t *ev = json_loadb(line, len, 0, NULL);
                const char *type = json_string_value(json_object_get(ev, "type"));
                bool torn_record = type && streq(type, AJ_EVENTS_TORN);
                if (!torn.pending && !json_is_object(ev) && len > 0) {
                        torn = (TornLine){ .pending = true, .bytes = len };
                        aj_events_line_hash(line, len, torn.hash);
                        continue;
                }
                if (torn.pending && !(torn_record && names_torn_line(ev, &torn))) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "the line before event %llu is not an event, and event %llu is not the " AJ_EVENTS_TORN
                                 " record naming it (a torn line is one only right before that record)",
                                 (unsigned long long)want, (unsigned long long)want);
                        return 0;
                }
                if (!torn.pending && torn_record) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "event %llu records a torn line right before it, which is not there: it was removed",
                                 (unsigned long long)want);
                        return 0;
                }
                json_t *seq = json_object_get(ev, "seq");
                const char *p = json_string_value(json_object_get(ev, "prev"));
                if (!json_is_integer(seq) || (uint64_t)json_integer_value(seq) != want) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "line %llu is not event %llu (an event "
                                 "was removed, added or reordered)",
                                 (unsigned long long)want, (unsigned long long)want);
                        return 0;
                }
                if (!p) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "event %llu has no \"prev\" (not hash-chained: written by an older agentjail?)",
                                 (unsigned long long)want);
                        return 0;
                }
                if (!streq(p, prev)) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "event %llu's \"prev\" is not the hash of event %llu: one of them was changed",
                                 (unsigned long long)want, (unsigned long long)(want - 1));
                        return 0;
                }
                if (torn.pending) {
                        torn.pending = false;
                        ret->torn_lines++;
                }
                aj_events_line_hash(line, len, prev);
                ret->count = want;
                if (expect_count && want == expect_count && expect_hash && !streq(prev, expect_hash)) {
                        ret->bad_seq = want;
                        snprintf(ret->problem, sizeof(ret->problem),
                                 "event %llu is not the one run.json recorded at the end of the run: it was changed",
                                 (unsigned long long)want);
                        return 0;
                }
        }
        if (ferror(f))
                return -EIO;
        if (torn.pending) {
                ret->bad_seq = ret->count + 1;
                snprintf(ret->problem, sizeof(ret->problem),
                         "the line after event %llu is not an event, and no " AJ_EVENTS_TORN " record follows it",
                         (unsigned long long)ret->count);
                return 0;
        }
        if (expect_count > ret->count) {
                ret->bad_seq = ret->count + 1;
                snprintf(ret->problem, sizeof(ret->problem),
                         "run.json recorded %llu events at the end of the run; the file has %llu: events were removed",
                         (unsigned long long)expect_count, (unsigned long long)ret->count);
                return 0;
        }
        if (ret->torn_tail && expect_count) {
                /* The recorded end is written after any torn line is ended (aj_events_append). */
                ret->bad_seq = ret->count + 1;
                snprintf(ret->problem, sizeof(ret->problem),
                         "%llu bytes without a newline follow event %llu, the end run.json recorded: a line torn by "
                         "a killed writer after the chain was closed, or bytes added",
                         (unsigned long long)ret->torn_tail, (unsigned long long)ret->count);
                return 0;
        }
        memcpy(ret->last_hash, prev, sizeof(prev));
        ret->ok = true;
        ret->anchored = expect_count > 0 && expect_hash;
        return 0;
}

int aj_events_foreach(const char *path, int (*fn)(json_t *ev, void *userdata), void *userdata, size_t *ret_bad)
{
        FILE *f = NULL;
        int r = open_stream(path, &f);
        if (r < 0)
                return r;
        char *line = NULL;
        size_t size = 0, bad = 0;
        ssize_t n;
        while (r >= 0 && (n = getline(&line, &size, f)) > 0) {
                /* A line whose DOM did not fit (jansson says only that it failed; malloc says
                 * why) is not a bad line to skip: a reader that missed an event (a verdict, a
                 * rollback.step) would act on a chain that is not the one written. */
                errno = 0;
                json_auto_t *ev = json_loadb(line, (size_t)n, 0, NULL);
                if (json_is_object(ev))
                        r = fn(ev, userdata);
                else if (!ev && errno == ENOMEM)
                        r = -ENOMEM;
                else
                        bad++;
        }
        free(line);
        fclose(f);
        if (ret_bad)
                *ret_bad = bad;
        return r;
}
