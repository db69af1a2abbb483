/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker protocol: the input is what a jailed client writes on its connection (any
 * number of request lines, oversized lines, binary). A fresh broker per input, with caps
 * low enough that breaches happen and tool calls named "hold*" held for approval; the
 * client writes everything, shuts its side down and reads until the broker closes.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker.h"
#include "fuzz.h"
#include "meter.h"

/* Rounds of dispatch per input: a connection is done long before (each round handles
 * what is ready). */
#define MAX_ROUNDS 10000

static int emit(void *userdata, const char *type, json_t *fields)
{
        json_decref(fields);
        return 0;
}

/* The printed events must be what the chain takes: one JSON object. */
static int emit_text(void *userdata, const char *type, const char *object, size_t len)
{
        json_t *o = json_loadb(object, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o))
                abort();
        json_decref(o);
        return 0;
}

static bool held;
static void hold(void *userdata) { held = true; }
static int commit(void *userdata)
{
        if (!held)
                abort(); /* a commit without its hold */
        held = false;
        return 0;
}
static size_t held_bytes(void *userdata) { return 0; }

static void breach(void *userdata, const AjBreach *b)
{
        if (held)
                abort(); /* a breach is handled after its events are committed */
}

static char dir[64];

static char sock_path[128];

/* Also when the last input left its socket behind (a crash skips this: scripts/fuzz
 * removes its AJ_FUZZ_TMPDIR then). */
static void remove_dir(void)
{
        if (sock_path[0])
                unlink(sock_path);
        rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 256 * 1024)
                return 0;
        if (!dir[0]) {
                /* A socket per input: on tmpfs its bind() takes microseconds, not a millisecond.
                 * Under scripts/fuzz, in its AJ_FUZZ_TMPDIR, which it removes however we end. */
                const char *top = getenv("AJ_FUZZ_TMPDIR");
                snprintf(dir, sizeof(dir), "%s/aj-fuzz-broker-XXXXXX",
                         top && *top && strlen(top) < sizeof(dir) - 24 ? top : "/dev/shm");
                if (!mkdtemp(dir)) {
                        snprintf(dir, sizeof(dir), "/tmp/aj-fuzz-broker-XXXXXX");
                        if (!mkdtemp(dir))
                                abort();
                }
                atexit(remove_dir);
        }
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char *path = sa.sun_path;
        snprintf(path, sizeof(sa.sun_path), "%s/broker.sock", dir);
        snprintf(sock_path, sizeof(sock_path), "%s", path);

        AjMeterCaps caps = { 0 };
        caps.set[AJ_CAP_TOOL_CALLS] = true;
        caps.limit[AJ_CAP_TOOL_CALLS] = 5;
        caps.set[AJ_CAP_TOKENS] = true;
        caps.limit[AJ_CAP_TOKENS] = 100000;
        caps.set[AJ_CAP_REPEAT_LIMIT] = true;
        caps.limit[AJ_CAP_REPEAT_LIMIT] = 3;
        AjHooks hooks = { .emit = emit,
                          .emit_text = emit_text,
                          .breach = breach,
                          .hold = hold,
                          .commit = commit,
                          .held_bytes = held_bytes };
        AjMeter *meter = NULL;
        AjBroker *b = NULL;
        if (aj_meter_new(&caps, &meter) < 0 || aj_broker_new(path, (uid_t)-1, (gid_t)-1, meter, &hooks, &b) < 0)
                abort();
        char *holds[] = { "hold*", NULL };
        if (aj_broker_set_approvals(b, holds, 1, 0) < 0)
                abort();

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                abort();

        size_t off = 0;
        bool shut = false, closed = false;
        char sink[65536];
        for (int round = 0; round < MAX_ROUNDS && !closed; round++) {
                if (off < size) {
                        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
                        if (n > 0)
                                off += (size_t)n;
                        else if (n < 0 && errno != EAGAIN)
                                break; /* the broker closed the connection */
                }
                if (off == size && !shut) {
                        shutdown(fd, SHUT_WR);
                        shut = true;
                }
                if (aj_broker_dispatch(b) < 0)
                        abort();
                for (;;) {
                        ssize_t n = recv(fd, sink, sizeof(sink), 0);
                        if (n == 0)
                                closed = true;
                        if (n <= 0)
                                break;
                }
                /* Held calls keep the connection open: let the run end them. */
                if (shut && round > 100)
                        aj_broker_cancel_held(b);
        }
        close(fd);
        (void)aj_broker_dispatch(b);
        aj_broker_free(b);
        aj_meter_free(meter);
        return 0;
}
