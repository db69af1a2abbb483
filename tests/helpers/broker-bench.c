/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Broker benchmark: `broker-bench SOCKET_PATH [--events FILE] [-n N]`, or
 * `broker-bench --client [-n N] [--marks DIR]` inside a jail (scripts/bench), where the run's own
 * broker on $AGENTJAIL_BROKER is measured, with the run's real event log.
 * Without --client it forks a broker (meter without caps, one priced model) serving SOCKET_PATH
 * with fake hooks (events dropped) or, with --events, the real event log
 * (held and written once per wake-up, as in a run). Then measures from this process:
 *   - "tokens" messages/s pipelined on 1 connection and on 8 connections;
 *   - "tool" round-trip latency (one request in flight), p50/p99; with --client also
 *     for calls 1 ms apart (the supervisor asleep when each arrives); with --marks, at each
 *     phase's bounds a byte to DIR/mark and a wait for one from DIR/ack (two FIFOs), while
 *     scripts/bench reads the supervisor's CPU: nothing samples during a phase;
 *     without, the forked broker's CPU per message (/proc/PID/schedstat).
 * Prints one JSON object. With --tool-only, only N "tool" round trips back to back (the
 * broker's instructions per call under valgrind's callgrind: the difference of two N).
 * `broker-bench --echo [-n N]` measures the peer of the round trip: the same requests
 * answered by a bare process that sleeps in epoll_wait() and echoes a reply at once,
 * back to back and 1 ms apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "events.h"
#include "meter.h"
#include "util/fd.h"

static int drop_emit(void *userdata, const char *type, json_t *fields)
{
        json_decref(fields);
        return 0;
}

static int log_emit(void *userdata, const char *type, json_t *fields) { return aj_events_emit(userdata, type, fields); }
static int log_emit_text(void *userdata, const char *type, const char *object, size_t len)
{
        return aj_events_emit_agent_text(userdata, type, object, len);
}
static void log_batch_begin(void *userdata) { aj_events_batch_begin(userdata); }
static int log_batch_end(void *userdata) { return aj_events_batch_end(userdata); }
static void log_hold(void *userdata) { aj_events_hold(userdata); }
static int log_commit(void *userdata) { return aj_events_commit(userdata); }
static size_t log_held_bytes(void *userdata) { return aj_events_held_bytes(userdata); }

static void on_term(int sig) { _exit(0); }

static void serve(const char *path, const char *events, int ready_fd)
{
        /* Stopped with SIGTERM, it exits as a process would: a profiler (valgrind's callgrind,
         * which counts the broker's instructions whatever the machine's load) writes its figures. */
        signal(SIGTERM, on_term);
        AjEventLog *log = NULL;
        if (events && aj_events_open(events, "bench", &log) < 0)
                _exit(1);
        AjHooks hooks = { .userdata = log, .emit = drop_emit };
        if (events)
                hooks = (AjHooks){ .userdata = log,
                                   .emit = log_emit,
                                   .emit_text = log_emit_text,
                                   .batch_begin = log_batch_begin,
                                   .batch_end = log_batch_end,
                                   .hold = log_hold,
                                   .commit = log_commit,
                                   .held_bytes = log_held_bytes };
        AjMeter *m = NULL;
        AjBroker *b = NULL;
        if (aj_meter_new(NULL, &m) < 0 || aj_meter_set_price(m, "gpt-4o", 2.5e-6, 1e-5, 1.25e-6) < 0 ||
            aj_broker_new(path, (uid_t)-1, (gid_t)-1, m, &hooks, &b) < 0)
                _exit(1);
        (void)!write(ready_fd, "x", 1);
        close(ready_fd);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN };
        epoll_ctl(ep, EPOLL_CTL_ADD, aj_broker_fd(b), &ev);
        for (;;) {
                struct epoll_event out;
                if (epoll_wait(ep, &out, 1, -1) > 0 && aj_broker_dispatch(b) < 0)
                        _exit(1);
        }
}

static int connect_to(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                perror("connect");
                exit(1);
        }
        return fd;
}

typedef struct {
        int fd;
        long sent, answered, errors;
        char out[8192];
        size_t out_len, out_off;
        char in[65536];
        size_t in_len;
} Client;

static const char tokens_fmt[] = "{\"id\":%ld,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"gpt-4o\","
                                 "\"gen_ai.usage.input_tokens\":1200,\"gen_ai.usage.output_tokens\":300,"
                                 "\"gen_ai.usage.cache_read.input_tokens\":200}\n";

/* Counts complete reply lines; a reply with "ok":false is an error. */
static void consume(Client *c)
{
        char *start = c->in, *end = c->in + c->in_len, *nl;
        while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
                *nl = 0;
                if (!strstr(start, "\"ok\":true"))
                        c->errors++;
                c->answered++;
                start = nl + 1;
        }
        c->in_len = (size_t)(end - start);
        memmove(c->in, start, c->in_len);
}

/* Pipelined: keeps up to `window` requests in flight per connection. */
static double run_tokens(const char *path, int n_conns, long total, long window)
{
        Client *cl = calloc((size_t)n_conns, sizeof(Client));
        struct pollfd *p = calloc((size_t)n_conns, sizeof(struct pollfd));
        long per = total / n_conns;
        for (int i = 0; i < n_conns; i++)
                cl[i].fd = connect_to(path);
        uint64_t t0 = aj_now_monotonic_ns();
        for (;;) {
                int active = 0;
                for (int i = 0; i < n_conns; i++) {
                        Client *c = &cl[i];
                        if (c->answered >= per) {
                                p[i] = (struct pollfd){ .fd = -1 };
                                continue;
                        }
                        active++;
                        /* Refill the output buffer while the window allows. */
                        if (c->out_off == c->out_len) {
                                c->out_len = c->out_off = 0;
                                while (c->sent < per && c->sent - c->answered < window &&
                                       c->out_len + 512 < sizeof(c->out)) {
                                        c->out_len += (size_t)snprintf(c->out + c->out_len, sizeof(c->out) - c->out_len,
                                                                       tokens_fmt, c->sent);
                                        c->sent++;
                                }
                        }
                        p[i] = (struct pollfd){ .fd = c->fd,
                                                .events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0) };
                }
                if (!active)
                        break;
                if (poll(p, (nfds_t)n_conns, 5000) <= 0) {
                        fprintf(stderr, "broker-bench: stalled\n");
                        exit(1);
                }
                for (int i = 0; i < n_conns; i++) {
                        Client *c = &cl[i];
                        if (p[i].fd < 0)
                                continue;
                        if (p[i].revents & POLLOUT) {
                                ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
                                if (w > 0)
                                        c->out_off += (size_t)w;
                        }
                        if (p[i].revents & (POLLIN | POLLHUP)) {
                                ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
                                if (r == 0) {
                                        fprintf(stderr, "broker-bench: disconnected\n");
                                        exit(1);
                                }
                                if (r > 0) {
                                        c->in_len += (size_t)r;
                                        consume(c);
                                }
                        }
                }
        }
        double secs = (double)(aj_now_monotonic_ns() - t0) / 1e9;
        long errors = 0;
        for (int i = 0; i < n_conns; i++) {
                errors += cl[i].errors;
                close(cl[i].fd);
        }
        if (errors)
                fprintf(stderr, "broker-bench: %ld error replies\n", errors);
        free(cl);
        free(p);
        return (double)(per * n_conns) / secs;
}

/* CPU time the process has run, in ns (/proc/PID/schedstat): what the broker spends,
 * whatever else the machine runs. 0 if unreadable. */
static uint64_t cpu_ns(pid_t pid)
{
        char path[64];
        unsigned long long ns = 0;
        snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
        FILE *f = fopen(path, "re");
        if (f) {
                if (fscanf(f, "%llu", &ns) != 1)
                        ns = 0;
                fclose(f);
        }
        return ns;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* One request in flight; with gap_us, that long idle between the requests. */
static void latency_on(int fd, long n, long gap_us, double *ret_p50, double *ret_p99)
{
        uint64_t *lat = calloc((size_t)n, sizeof(uint64_t));
        char line[512], buf[65536];
        for (long i = 0; i < n; i++) {
                int len = snprintf(line, sizeof(line),
                                   "{\"id\":%ld,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"crm.update\","
                                   "\"gen_ai.tool.call.arguments\":{\"record\":%ld,\"name\":\"x\"}}\n",
                                   i, i);
                uint64_t t0 = aj_now_monotonic_ns();
                if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len)
                        exit(1);
                size_t have = 0;
                for (;;) {
                        ssize_t r = read(fd, buf + have, sizeof(buf) - have);
                        if (r <= 0)
                                exit(1);
                        have += (size_t)r;
                        if (buf[have - 1] == '\n')
                                break;
                }
                lat[i] = aj_now_monotonic_ns() - t0;
                if (gap_us > 0)
                        nanosleep(&(struct timespec){ .tv_nsec = gap_us * 1000 }, NULL);
        }
        qsort(lat, (size_t)n, sizeof(uint64_t), cmp_u64);
        *ret_p50 = (double)lat[n / 2] / 1000.0;
        *ret_p99 = (double)lat[n * 99 / 100] / 1000.0;
        free(lat);
}

static void run_latency(const char *path, long n, long gap_us, double *ret_p50, double *ret_p99)
{
        int fd = connect_to(path);
        aj_fd_set_nonblock(fd, false);
        latency_on(fd, n, gap_us, ret_p50, ret_p99);
        close(fd);
}

/* The peer for the round trip: the same requests to a process that sleeps in
 * epoll_wait() and answers each line at once with a reply of a broker's size. */
static void run_echo(long n, long gap_us, double *ret_p50, double *ret_p99)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                exit(1);
        pid_t pid = fork();
        if (pid < 0)
                exit(1);
        if (pid == 0) {
                close(sv[0]);
                char reply[320], in[4096];
                memset(reply, 'x', sizeof(reply));
                reply[sizeof(reply) - 1] = '\n';
                int ep = epoll_create1(EPOLL_CLOEXEC);
                struct epoll_event ev = { .events = EPOLLIN };
                epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
                for (;;) {
                        struct epoll_event out;
                        if (epoll_wait(ep, &out, 1, -1) < 1)
                                continue;
                        ssize_t r = read(sv[1], in, sizeof(in));
                        if (r <= 0)
                                _exit(0);
                        if (memchr(in, '\n', (size_t)r) && write(sv[1], reply, sizeof(reply)) < 0)
                                _exit(1);
                }
        }
        close(sv[1]);
        latency_on(sv[0], n, gap_us, ret_p50, ret_p99);
        close(sv[0]);
        waitpid(pid, NULL, 0);
}

/* The phases' bounds for whoever reads the supervisor's CPU (scripts/bench): a byte to
 * DIR/mark, then a wait for one from DIR/ack. Blocking FIFOs, so the reader sleeps through
 * the phases instead of sampling in them (a sampler waking every 2 ms took the p99 of the
 * round trips it measured). */
typedef struct {
        int mark, ack;
} Marks;

static int marks_open(Marks *m, const char *dir)
{
        char p[4096];
        snprintf(p, sizeof p, "%s/mark", dir);
        m->mark = open(p, O_WRONLY | O_CLOEXEC);
        snprintf(p, sizeof p, "%s/ack", dir);
        m->ack = m->mark < 0 ? -1 : open(p, O_RDONLY | O_CLOEXEC);
        if (m->ack < 0) {
                fprintf(stderr, "broker-bench: cannot open the FIFOs in '%s': %s\n", dir, strerror(errno));
                return -1;
        }
        return 0;
}

static void mark(Marks *m)
{
        char c = 'm';
        if (m->mark < 0)
                return;
        if (write(m->mark, &c, 1) != 1 || read(m->ack, &c, 1) != 1) {
                fprintf(stderr, "broker-bench: the mark's reader is gone\n");
                exit(1);
        }
}

static void marks_close(Marks *m)
{
        if (m->mark >= 0)
                close(m->mark);
        if (m->ack >= 0)
                close(m->ack);
}

int main(int argc, char **argv)
{
        const char *path = NULL, *events = NULL;
        long n = 200000;
        const char *marks = NULL;
        bool client = false, echo = false, tool_only = false;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--client"))
                        client = true;
                else if (streq(argv[i], "--echo"))
                        echo = true;
                else if (streq(argv[i], "--tool-only"))
                        tool_only = true;
                else if (streq(argv[i], "--events") && i + 1 < argc)
                        events = argv[++i];
                else if (streq(argv[i], "--marks") && i + 1 < argc)
                        marks = argv[++i];
                else if (streq(argv[i], "-n") && i + 1 < argc)
                        n = atol(argv[++i]);
                else if (!path)
                        path = argv[i];
                else {
                        fprintf(stderr, "usage: broker-bench SOCKET_PATH [--events FILE] [-n N] [--tool-only]\n");
                        return 2;
                }
        }
        if (echo) {
                double p50, p99, g50, g99;
                run_echo(n, 0, &p50, &p99);
                run_echo(2000, 1000, &g50, &g99);
                printf("{\"echo_rtt_p50_us\": %.1f, \"echo_rtt_p99_us\": %.1f, \"echo_spaced_rtt_p50_us\": %.1f, "
                       "\"echo_spaced_rtt_p99_us\": %.1f}\n",
                       p50, p99, g50, g99);
                return 0;
        }
        if (client) {
                /* Only the measuring side: the broker is the run's supervisor. */
                path = getenv("AGENTJAIL_BROKER");
                if (!path || events || n < 1000) {
                        fprintf(stderr, "usage: broker-bench --client [-n N>=1000] (needs $AGENTJAIL_BROKER)\n");
                        return 2;
                }
                signal(SIGPIPE, SIG_IGN);
                Marks m = { -1, -1 };
                if (marks && marks_open(&m, marks) < 0)
                        return 1;
                /* The supervisor's CPU is read at each mark, between the phases. */
                mark(&m);
                double one = run_tokens(path, 1, n, 256);
                mark(&m);
                double eight = run_tokens(path, 8, n, 256);
                mark(&m);
                double p50, p99, g50, g99;
                run_latency(path, n / 10, 0, &p50, &p99);
                mark(&m);
                marks_close(&m);
                run_latency(path, 2000, 1000, &g50, &g99);
                printf("{\"events\": \"run\", \"tokens_msgs_per_s_1conn\": %.0f, \"tokens_msgs_per_s_8conn\": %.0f, "
                       "\"tool_rtt_p50_us\": %.1f, \"tool_rtt_p99_us\": %.1f, \"tool_spaced_rtt_p50_us\": %.1f, "
                       "\"tool_spaced_rtt_p99_us\": %.1f, \"n\": %ld}\n",
                       one, eight, p50, p99, g50, g99, n);
                return 0;
        }
        if (!path || n < 1000) {
                fprintf(stderr, "usage: broker-bench SOCKET_PATH [--events FILE] [-n N>=1000]\n");
                return 2;
        }
        int ready[2];
        if (pipe2(ready, O_CLOEXEC) < 0)
                return 1;
        pid_t pid = fork();
        if (pid < 0)
                return 1;
        if (pid == 0) {
                close(ready[0]);
                serve(path, events, ready[1]);
        }
        close(ready[1]);
        char c;
        if (read(ready[0], &c, 1) != 1) {
                fprintf(stderr, "broker-bench: the broker did not start on '%s'\n", path);
                waitpid(pid, NULL, 0);
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        if (tool_only) {
                double p50, p99;
                uint64_t c0 = cpu_ns(pid);
                run_latency(path, n, 0, &p50, &p99);
                uint64_t c1 = cpu_ns(pid);
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
                unlink(path);
                printf("{\"events\": \"%s\", \"tool_rtt_p50_us\": %.1f, \"tool_rtt_p99_us\": %.1f, "
                       "\"broker_cpu_us_per_tool\": %.2f, \"n\": %ld}\n",
                       events ? "file" : "dropped", p50, p99, (double)(c1 - c0) / 1e3 / (double)n, n);
                return 0;
        }
        uint64_t c0 = cpu_ns(pid);
        double one = run_tokens(path, 1, n, 256);
        uint64_t c1 = cpu_ns(pid);
        double eight = run_tokens(path, 8, n, 256);
        uint64_t c2 = cpu_ns(pid);
        double p50, p99;
        run_latency(path, n / 10, 0, &p50, &p99);
        uint64_t c3 = cpu_ns(pid);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        unlink(path);
        /* The broker's CPU per message: its own cost, apart from the client's and the load. */
        printf("{\"events\": \"%s\", \"tokens_msgs_per_s_1conn\": %.0f, \"tokens_msgs_per_s_8conn\": %.0f, "
               "\"tool_rtt_p50_us\": %.1f, \"tool_rtt_p99_us\": %.1f, \"broker_cpu_us_per_tokens_1conn\": %.2f, "
               "\"broker_cpu_us_per_tokens_8conn\": %.2f, \"broker_cpu_us_per_tool\": %.2f}\n",
               events ? "file" : "dropped", one, eight, p50, p99, (double)(c1 - c0) / 1e3 / (double)n,
               (double)(c2 - c1) / 1e3 / (double)n, (double)(c3 - c2) / 1e3 / (double)(n / 10));
        return 0;
}
