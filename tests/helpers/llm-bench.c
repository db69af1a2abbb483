/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LLM gateway benchmark's two ends (scripts/bench --only gateway), so that the
 * figures measure the gateway and not an interpreter:
 *
 *   llm-bench serve --json FILE --sse FILE [--gap-us N] [--cert PEM --key PEM]
 *       A fake provider on 127.0.0.1 (the port is printed): HTTP/1.1 keep-alive, one
 *       thread per connection, over TLS (OpenSSL) with --cert and --key. A request whose body asks for "stream": true gets the
 *       SSE file, chunked: the first event at once, the rest N us later (default 500,
 *       so that the time to first byte is not the whole response); any other request
 *       gets the JSON file with a Content-Length.
 *
 *   llm-bench latency --direct PORT [--direct-prefix P] --gateway PORT --prefix P [-n N] [--warmup N]
 *       One keep-alive connection to the provider and one through the gateway, requests
 *       alternating between them (so load that comes and goes is shared): non-streaming
 *       latency, then streaming time to first body byte. Prints one JSON object (us).
 *       (With --direct-prefix, "direct" is another route of the gateway: plain HTTP to
 *       the provider against TLS, say.)
 *
 *   llm-bench rate --port PORT [--prefix P] [-c CONNS] [--seconds S] [--stream]
 *       CONNS keep-alive connections (a thread each) sending requests back to back for
 *       S seconds. Prints {"requests_per_s": ..., "errors": ...}.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSG (1u << 20)

static const char BODY[] =
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"messages\":[{\"role\":\"user\",\"content\":"
        "\"Why does the test fail?\"}]}";
static const char BODY_STREAM[] =
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"stream\":true,\"messages\":[{\"role\":\"user\","
        "\"content\":\"Why does the test fail?\"}]}";

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
        fprintf(stderr, "llm-bench: %s: %s\n", what, strerror(errno));
        exit(1);
}

static int write_all_fd(int fd, const char *buf, size_t len)
{
        while (len) {
                ssize_t n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* A server connection: a socket, or TLS over it. */
typedef struct {
        int fd;
        SSL *ssl;
} Io;

static ssize_t io_read(Io *io, char *buf, size_t len)
{
        if (!io->ssl)
                return read(io->fd, buf, len);
        int n = SSL_read(io->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : 0;
}

static int io_write_all(Io *io, const char *buf, size_t len)
{
        if (!io->ssl)
                return write_all_fd(io->fd, buf, len);
        while (len) {
                int n = SSL_write(io->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
                if (n <= 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}


static char *read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        if (!f)
                die(path);
        char *buf = malloc(MAX_MSG);
        size_t n = buf ? fread(buf, 1, MAX_MSG - 1, f) : 0;
        fclose(f);
        if (!buf || n == 0)
                die(path);
        buf[n] = 0;
        *ret_len = n;
        return buf;
}

/* The end of an HTTP head in buf (the offset of its body), 0 when incomplete. */
static size_t head_end(const char *buf, size_t len)
{
        const char *e = memmem(buf, len, "\r\n\r\n", 4);
        return e ? (size_t)(e - buf) + 4 : 0;
}

/* A header's value (case-insensitive name) in a head, or NULL. */
static const char *header(const char *head, size_t len, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = memmem(head, len, "\r\n", 2); p && p + 2 + n < head + len;
             p = memmem(p + 2, len - (size_t)(p + 2 - head), "\r\n", 2))
                if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
                        return p + 3 + n;
        return NULL;
}

/* ---- the fake provider ---- */

static const char *json_body, *sse_body;
static size_t json_len, sse_len;
static unsigned gap_us = 500;
static SSL_CTX *tls; /* --cert, --key */

/* One chunk in one write, as a server flushing an event does. */
static int send_chunk(Io *fd, const char *data, size_t len, bool last)
{
        char *msg = malloc(len + 64);
        if (!msg)
                return -1;
        int n = snprintf(msg, 64, "%zx\r\n", len);
        memcpy(msg + n, data, len);
        memcpy(msg + n + len, last ? "\r\n0\r\n\r\n" : "\r\n", last ? 7 : 2);
        int r = io_write_all(fd, msg, (size_t)n + len + (last ? 7 : 2));
        free(msg);
        return r;
}

static int answer(Io *fd, bool stream)
{
        char head[256];
        if (!stream) {
                int n = snprintf(head, sizeof(head),
                                 "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n",
                                 json_len);
                /* One write, as a provider's server would. */
                char *msg = malloc((size_t)n + json_len);
                if (!msg)
                        return -1;
                memcpy(msg, head, (size_t)n);
                memcpy(msg + n, json_body, json_len);
                int r = io_write_all(fd, msg, (size_t)n + json_len);
                free(msg);
                return r;
        }
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
        const char *split = strstr(sse_body, "\n\n");
        size_t first = split ? (size_t)(split - sse_body) + 2 : sse_len;
        if (io_write_all(fd, head, (size_t)n) < 0 || send_chunk(fd, sse_body, first, first == sse_len) < 0)
                return -1;
        if (first == sse_len)
                return 0;
        if (gap_us)
                usleep(gap_us);
        return send_chunk(fd, sse_body + first, sse_len - first, true);
}

static void *serve_conn(void *arg)
{
        Io io = { .fd = (int)(intptr_t)arg };
        char *buf = malloc(MAX_MSG);
        size_t have = 0;
        if (tls && (!(io.ssl = SSL_new(tls)) || SSL_set_fd(io.ssl, io.fd) != 1 || SSL_accept(io.ssl) != 1)) {
                free(buf);
                buf = NULL;
        }
        while (buf) {
                size_t h = head_end(buf, have);
                const char *cl = h ? header(buf, h, "content-length") : NULL;
                size_t body = cl ? strtoul(cl, NULL, 10) : 0;
                if (h && have >= h + body) {
                        bool stream = memmem(buf + h, body, "\"stream\":true", 13) != NULL;
                        if (answer(&io, stream) < 0)
                                break;
                        memmove(buf, buf + h + body, have - h - body);
                        have -= h + body;
                        continue;
                }
                if (have == MAX_MSG)
                        break;
                ssize_t n = io_read(&io, buf + have, MAX_MSG - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                have += (size_t)n;
        }
        free(buf);
        if (io.ssl)
                SSL_shutdown(io.ssl);
        SSL_free(io.ssl);
        close(io.fd);
        return NULL;
}

_Noreturn static void serve(void)
{
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof(a);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 512) < 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
                die("listen");
        printf("%u\n", ntohs(a.sin_port));
        fflush(stdout);
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        die("accept");
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                pthread_t t;
                if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) != 0)
                        close(fd);
                else
                        pthread_detach(t);
        }
}

/* ---- the client ---- */

typedef struct {
        int fd;
        char *buf;
        char req[1024];
        size_t req_len;
} Client;

static void client_open(Client *c, unsigned port, const char *prefix, bool stream)
{
        int one = 1;
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
                die("connect");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->buf = malloc(MAX_MSG);
        if (!c->buf)
                die("malloc");
        const char *body = stream ? BODY_STREAM : BODY;
        int n = snprintf(c->req, sizeof(c->req),
                         "POST %s/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: placeholder\r\n"
                         "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
                         "content-length: %zu\r\n\r\n%s",
                         prefix, strlen(body), body);
        c->req_len = (size_t)n;
}

/* Is a chunked body complete (its last chunk and the empty trailer)? -1 malformed. */
static int chunked_done(const char *p, size_t len)
{
        size_t off = 0;
        for (;;) {
                const char *eol = memmem(p + off, len - off, "\r\n", 2);
                if (!eol)
                        return 0;
                char *end;
                unsigned long size = strtoul(p + off, &end, 16);
                if (end == p + off)
                        return -1;
                off = (size_t)(eol - p) + 2;
                if (size == 0)
                        return len - off >= 2 ? 1 : 0;
                if (len - off < size + 2)
                        return 0;
                off += size + 2;
        }
}

/* One request, its response read whole: 0 with the times (ns), -1 on an error. */
static int exchange(Client *c, uint64_t *ret_ttfb, uint64_t *ret_total)
{
        uint64_t t0 = now_ns(), ttfb = 0;
        if (write_all_fd(c->fd, c->req, c->req_len) < 0)
                return -1;
        size_t have = 0;
        for (;;) {
                ssize_t n = read(c->fd, c->buf + have, MAX_MSG - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                have += (size_t)n;
                size_t h = head_end(c->buf, have);
                if (!h)
                        continue;
                if (!ttfb && have > h)
                        ttfb = now_ns();
                if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
                        return -1;
                const char *cl = header(c->buf, h, "content-length");
                int done = cl ? have >= h + strtoul(cl, NULL, 10) : chunked_done(c->buf + h, have - h);
                if (done < 0)
                        return -1;
                if (done)
                        break;
        }
        *ret_total = now_ns() - t0;
        *ret_ttfb = ttfb - t0;
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static double quantile_us(uint64_t *v, size_t n, double q)
{
        qsort(v, n, sizeof(*v), cmp_u64);
        size_t i = (size_t)(q * (double)(n - 1) + 0.5);
        return (double)v[i] / 1e3;
}

/* n alternating requests on the two clients; the chosen time of each (ttfb or total). */
static void alternate(Client *d, Client *g, size_t n, size_t warmup, bool ttfb, uint64_t *vd, uint64_t *vg)
{
        for (size_t i = 0; i < warmup + n; i++) {
                uint64_t t[2][2];
                /* Which goes first alternates too. */
                Client *first = i % 2 ? g : d, *second = i % 2 ? d : g;
                if (exchange(first, &t[0][0], &t[0][1]) < 0 || exchange(second, &t[1][0], &t[1][1]) < 0) {
                        fprintf(stderr, "llm-bench: a request failed (request %zu)\n", i);
                        exit(1);
                }
                if (i < warmup)
                        continue;
                uint64_t *td = i % 2 ? t[1] : t[0], *tg = i % 2 ? t[0] : t[1];
                vd[i - warmup] = ttfb ? td[0] : td[1];
                vg[i - warmup] = ttfb ? tg[0] : tg[1];
        }
}

static int latency(unsigned direct, const char *direct_prefix, unsigned gateway, const char *prefix, size_t n,
                   size_t warmup)
{
        uint64_t *vd = calloc(n, sizeof(uint64_t)), *vg = calloc(n, sizeof(uint64_t));
        if (!vd || !vg)
                die("calloc");
        Client d, g;
        client_open(&d, direct, direct_prefix, false);
        client_open(&g, gateway, prefix, false);
        alternate(&d, &g, n, warmup, false, vd, vg);
        double d50 = quantile_us(vd, n, 0.5), d99 = quantile_us(vd, n, 0.99);
        double g50 = quantile_us(vg, n, 0.5), g99 = quantile_us(vg, n, 0.99);
        close(d.fd);
        close(g.fd);
        free(d.buf);
        free(g.buf);
        client_open(&d, direct, direct_prefix, true);
        client_open(&g, gateway, prefix, true);
        alternate(&d, &g, n, warmup, true, vd, vg);
        double sd50 = quantile_us(vd, n, 0.5), sd99 = quantile_us(vd, n, 0.99);
        double sg50 = quantile_us(vg, n, 0.5), sg99 = quantile_us(vg, n, 0.99);
        printf("{\"requests\": %zu, \"direct_p50_us\": %.1f, \"direct_p99_us\": %.1f, \"gateway_p50_us\": %.1f, "
               "\"gateway_p99_us\": %.1f, \"ttfb_direct_p50_us\": %.1f, \"ttfb_direct_p99_us\": %.1f, "
               "\"ttfb_gateway_p50_us\": %.1f, \"ttfb_gateway_p99_us\": %.1f}\n",
               n, d50, d99, g50, g99, sd50, sd99, sg50, sg99);
        return 0;
}

typedef struct {
        unsigned port;
        const char *prefix;
        bool stream;
        uint64_t until_ns;
        uint64_t done, errors;
} RateThread;

static void *rate_thread(void *arg)
{
        RateThread *t = arg;
        Client c;
        client_open(&c, t->port, t->prefix, t->stream);
        uint64_t ttfb, total;
        while (now_ns() < t->until_ns) {
                if (exchange(&c, &ttfb, &total) < 0) {
                        t->errors++;
                        close(c.fd);
                        free(c.buf);
                        client_open(&c, t->port, t->prefix, t->stream);
                        continue;
                }
                t->done++;
        }
        close(c.fd);
        free(c.buf);
        return NULL;
}

static int rate(unsigned port, const char *prefix, unsigned conns, double seconds, bool stream)
{
        RateThread *t = calloc(conns, sizeof(*t));
        pthread_t *tid = calloc(conns, sizeof(*tid));
        if (!t || !tid)
                die("calloc");
        uint64_t start = now_ns(), until = start + (uint64_t)(seconds * 1e9);
        for (unsigned i = 0; i < conns; i++) {
                t[i] = (RateThread){ .port = port, .prefix = prefix, .stream = stream, .until_ns = until };
                if (pthread_create(&tid[i], NULL, rate_thread, &t[i]) != 0)
                        die("pthread_create");
        }
        uint64_t done = 0, errors = 0;
        for (unsigned i = 0; i < conns; i++) {
                pthread_join(tid[i], NULL);
                done += t[i].done;
                errors += t[i].errors;
        }
        double elapsed = (double)(now_ns() - start) / 1e9;
        printf("{\"connections\": %u, \"requests\": %llu, \"requests_per_s\": %.0f, \"errors\": %llu}\n", conns,
               (unsigned long long)done, (double)done / elapsed, (unsigned long long)errors);
        return 0;
}

static void usage(void)
{
        fprintf(stderr, "usage: llm-bench serve --json FILE --sse FILE [--gap-us N] [--cert PEM --key PEM]\n"
                        "       llm-bench latency --direct PORT [--direct-prefix P] --gateway PORT --prefix P "
                        "[-n N] [--warmup N]\n"
                        "       llm-bench rate --port PORT [--prefix P] [-c N] [--seconds S] [--stream]\n");
        exit(2);
}

int main(int argc, char **argv)
{
        if (argc < 2)
                usage();
        signal(SIGPIPE, SIG_IGN);
        const char *mode = argv[1], *prefix = "", *direct_prefix = "", *json_path = NULL, *sse_path = NULL;
        const char *cert = NULL, *key = NULL;
        unsigned direct = 0, gateway = 0, port = 0, conns = 1;
        size_t n = 2000, warmup = 200;
        double seconds = 2;
        bool stream = false;
        for (int i = 2; i < argc; i++) {
                const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(o, "--stream") == 0) {
                        stream = true;
                        continue;
                }
                if (!v)
                        usage();
                i++;
                if (strcmp(o, "--json") == 0)
                        json_path = v;
                else if (strcmp(o, "--sse") == 0)
                        sse_path = v;
                else if (strcmp(o, "--gap-us") == 0)
                        gap_us = (unsigned)strtoul(v, NULL, 10);
                else if (strcmp(o, "--direct") == 0)
                        direct = (unsigned)strtoul(v, NULL, 10);
                else if (strcmp(o, "--gateway") == 0)
                        gateway = (unsigned)strtoul(v, NULL, 10);
                else if (strcmp(o, "--port") == 0)
                        port = (unsigned)strtoul(v, NULL, 10);
                else if (strcmp(o, "--prefix") == 0)
                        prefix = v;
                else if (strcmp(o, "--direct-prefix") == 0)
                        direct_prefix = v;
                else if (strcmp(o, "--cert") == 0)
                        cert = v;
                else if (strcmp(o, "--key") == 0)
                        key = v;
                else if (strcmp(o, "-n") == 0)
                        n = strtoul(v, NULL, 10);
                else if (strcmp(o, "--warmup") == 0)
                        warmup = strtoul(v, NULL, 10);
                else if (strcmp(o, "-c") == 0)
                        conns = (unsigned)strtoul(v, NULL, 10);
                else if (strcmp(o, "--seconds") == 0)
                        seconds = strtod(v, NULL);
                else
                        usage();
        }
        if (strcmp(mode, "serve") == 0 && json_path && sse_path) {
                json_body = read_file(json_path, &json_len);
                sse_body = read_file(sse_path, &sse_len);
                if (cert || key) {
                        tls = SSL_CTX_new(TLS_server_method());
                        if (!tls || !cert || !key || SSL_CTX_use_certificate_chain_file(tls, cert) != 1 ||
                            SSL_CTX_use_PrivateKey_file(tls, key, SSL_FILETYPE_PEM) != 1) {
                                ERR_print_errors_fp(stderr);
                                return 1;
                        }
                }
                serve();
        }
        if (strcmp(mode, "latency") == 0 && direct && gateway && n > 0)
                return latency(direct, direct_prefix, gateway, prefix, n, warmup);
        if (strcmp(mode, "rate") == 0 && port && conns > 0 && conns <= 256)
                return rate(port, prefix, conns, seconds, stream);
        usage();
}
