/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP peer for the proxy benchmark (scripts/bench). Static, so it also runs in a jail.
 *
 *   http-bench serve [ADDR] [--cpu-file PATH]
 *       Listens on 127.0.0.1 (or the IPv4 ADDR; a free port, printed as the first line
 *       of stdout) and answers `GET /N` (origin form) with N zero bytes,
 *       `Connection: close`. Bodies up to 1 MiB are written by the accepting process;
 *       larger ones by a forked child, so a bulk transfer never blocks new connections.
 *       The peer is meant not to be the bottleneck: it writes from one zeroed buffer.
 *       With --cpu-file, each such child adds its CPU time (ns) to the 8-byte counter
 *       PATH (made, mapped shared) before it closes the connection.
 *   http-bench relay PORT [--copy] [--nonblock] [--sockbuf N] [--chunk N] [--cpu-file PATH]
 *       The proxy's peer: the least a user-space relay does. Listens like `serve`; for
 *       each connection a forked child connects to 127.0.0.1:PORT, forwards the
 *       request head and splices the answer back through a 1 MiB pipe (blocking, no
 *       policy, no accounting) until the server closes; its CPU goes to --cpu-file as
 *       `serve`'s. The options are one property of the jail's proxy each (session 24 of
 *       docs/performance.md): --copy recv/send through a 1 MiB buffer, --nonblock the
 *       same on non-blocking sockets with edge-triggered epoll, --sockbuf fixed
 *       SO_RCVBUF/SO_SNDBUF, --chunk at most N bytes a call. HTTP_BENCH_REPORT set:
 *       each child of `serve` and `relay` prints its CPU, calls and context switches.
 *   http-bench cpu CMD [ARG]...
 *       Runs CMD, then prints `cpu_ns=N` (its CPU time and its reaped children's, from
 *       wait4) on a line after its output; exits with its status.
 *   http-bench conns N HOST PORT [--proxy IP:PORT] [-c C]
 *       N sequential `GET /0` requests, each on a new connection, from C processes
 *       (default 1); through an HTTP proxy as absolute-form requests, or directly to
 *       HOST when it is an IPv4 address (else 127.0.0.1):PORT. Prints
 *       `connections_per_s=R errors=E p50_us=A p99_us=B` (A, B: each request's time,
 *       connect to the whole answer).
 *   http-bench connect N HOST PORT [--proxy IP:PORT]
 *       N sequential TCP connects to HOST:PORT (an IPv4 address), each timed until it is
 *       established: directly, connect() returning; through a proxy, its answer to
 *       `CONNECT HOST:PORT` (a 200). Prints `connect_p50_us=A connect_p99_us=B errors=E`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD 16384
#define INLINE_MAX (1 << 20)

static char zeros[1 << 20];

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int send_body(int fd, unsigned long long n)
{
        while (n > 0) {
                size_t chunk = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
                int r = write_all(fd, zeros, chunk);
                if (r < 0)
                        return r;
                n -= chunk;
        }
        return 0;
}

/* Reads the request head (bounded) and answers it; returns the body size, or -1 on a bad request. */
static long long read_request(int fd)
{
        char head[MAX_HEAD + 1];
        size_t have = 0;
        while (have < MAX_HEAD) {
                ssize_t r = read(fd, head + have, MAX_HEAD - have);
                if (r <= 0)
                        return -1;
                have += (size_t)r;
                head[have] = 0;
                if (strstr(head, "\r\n\r\n"))
                        break;
        }
        if (strncmp(head, "GET /", 5) != 0)
                return -1;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(head + 5, &end, 10);
        if (errno || end == head + 5 || *end != ' ' || n > (1ull << 40))
                return -1;
        return (long long)n;
}

static void answer(int fd, long long n)
{
        char hdr[256];
        if (n < 0) {
                static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                (void)!write_all(fd, bad, sizeof(bad) - 1);
                return;
        }
        int len = snprintf(hdr, sizeof(hdr),
                           "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                           "Content-Length: %lld\r\nConnection: close\r\n\r\n",
                           n);
        if (write_all(fd, hdr, (size_t)len) == 0)
                (void)send_body(fd, (unsigned long long)n);
}

/* How the relay moves the answer (`relay` options): the bench's relay splices, blocking,
 * with the kernel's autotuned socket buffers; the others are the experiments of
 * docs/performance.md's session 24, each one property of the jail's proxy. */
static struct {
        bool copy;     /* --copy: recv/send through a 1 MiB buffer, not splice through a pipe */
        bool nonblock; /* --nonblock: non-blocking sockets, edge-triggered epoll, as the proxy */
        int sockbuf;   /* --sockbuf N: SO_RCVBUF/SO_SNDBUF N on both sockets, as the proxy */
        size_t chunk;  /* --chunk N: at most N bytes a call (default 1 MiB) */
        uint64_t *cpu; /* --cpu-file PATH: the children's CPU ns, added up (shared, mapped) */
} ropt = { .chunk = 1 << 20 };

/* A bulk child's CPU, at its end: added to the relay's --cpu-file counter (ns), and with
 * HTTP_BENCH_REPORT set, a line on stderr (the experiments of docs/performance.md). */
static void report_cpu(const char *who, unsigned long long calls)
{
        struct timespec ts;
        struct rusage ru;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        if (ropt.cpu)
                __atomic_fetch_add(ropt.cpu, ns, __ATOMIC_RELAXED);
        if (getenv("HTTP_BENCH_REPORT") && getrusage(RUSAGE_SELF, &ru) == 0)
                fprintf(stderr, "%s: cpu_ns=%llu calls=%llu nvcsw=%ld nivcsw=%ld\n", who, (unsigned long long)ns, calls,
                        ru.ru_nvcsw, ru.ru_nivcsw);
}

/* A listener on addr (IPv4, network order), its port printed as the first line of stdout;
 * -1 on error. */
static int listen_at(in_addr_t addr)
{
        signal(SIGCHLD, SIG_IGN); /* children reap themselves */
        signal(SIGPIPE, SIG_IGN);
        int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr };
        socklen_t sl = sizeof(sa);
        if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1024) < 0 ||
            getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
                perror("http-bench: listen");
                return -1;
        }
        printf("%d\n", ntohs(sa.sin_port));
        fflush(stdout);
        return ls;
}

/* A child of the server: never outlives it (the bench kills the server by pid). */
static bool child_of_server(void)
{
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        return getppid() != 1;
}

/* Blocking: read a chunk (splice into the pipe, or recv into the buffer), pass it all on. */
static void move_blocking(int ufd, int cfd, char *buf, const int *p, unsigned long long *calls)
{
        for (;;) {
                ssize_t n = ropt.copy ? recv(ufd, buf, ropt.chunk, 0)
                                      : splice(ufd, NULL, p[1], NULL, ropt.chunk, SPLICE_F_MOVE);
                ++*calls;
                if (n <= 0)
                        return;
                size_t off = 0;
                while (off < (size_t)n) {
                        ssize_t w = ropt.copy ? send(cfd, buf + off, (size_t)n - off, MSG_NOSIGNAL)
                                              : splice(p[0], NULL, cfd, NULL, (size_t)n - off, SPLICE_F_MOVE);
                        ++*calls;
                        if (w <= 0)
                                return;
                        off += (size_t)w;
                }
        }
}

/* Non-blocking, as the jail's proxy: edge-triggered epoll on both sockets, a read only into
 * an empty buffer, send until the client is full, then wait for its room. */
static void move_nonblocking(int ufd, int cfd, char *buf, unsigned long long *calls)
{
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = ufd };
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev) < 0)
                return;
        ev = (struct epoll_event){ .events = EPOLLOUT | EPOLLET, .data.fd = cfd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0)
                return;
        fcntl(ufd, F_SETFL, O_NONBLOCK);
        fcntl(cfd, F_SETFL, O_NONBLOCK);
        size_t off = 0, len = 0;
        bool eof = false;
        for (;;) {
                while (len > off) {
                        ssize_t w = send(cfd, buf + off, len - off, MSG_NOSIGNAL);
                        ++*calls;
                        if (w < 0 && errno == EAGAIN)
                                break;
                        if (w <= 0)
                                return;
                        off += (size_t)w;
                }
                if (len == off && eof)
                        return;
                if (len == off) {
                        ssize_t n = recv(ufd, buf, ropt.chunk, 0);
                        ++*calls;
                        if (n > 0) {
                                off = 0;
                                len = (size_t)n;
                                continue;
                        }
                        if (n == 0) {
                                eof = true;
                                continue;
                        }
                        if (errno != EAGAIN)
                                return;
                }
                struct epoll_event got[2];
                ++*calls;
                if (epoll_wait(ep, got, 2, -1) < 0 && errno != EINTR)
                        return;
        }
}

static void relay_one(int cfd, int port)
{
        char head[MAX_HEAD];
        size_t have = 0;
        while (have < sizeof(head)) {
                ssize_t n = read(cfd, head + have, sizeof(head) - have);
                if (n <= 0)
                        return;
                have += (size_t)n;
                if (memmem(head, have, "\r\n\r\n", 4))
                        break;
        }
        struct sockaddr_in to = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ropt.sockbuf > 0)
                for (int i = 0; i < 2; i++) {
                        int fd = i ? cfd : ufd;
                        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &ropt.sockbuf, sizeof(ropt.sockbuf));
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &ropt.sockbuf, sizeof(ropt.sockbuf));
                }
        int p[2] = { -1, -1 };
        if (ufd < 0 || connect(ufd, (struct sockaddr *)&to, sizeof(to)) < 0 || write_all(ufd, head, have) < 0 ||
            (!ropt.copy && pipe2(p, O_CLOEXEC) < 0))
                return;
        char *buf = ropt.copy ? malloc(ropt.chunk) : NULL;
        if (ropt.copy && !buf)
                return;
        (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        unsigned long long calls = 0;
        if (ropt.nonblock && ropt.copy)
                move_nonblocking(ufd, cfd, buf, &calls);
        else
                move_blocking(ufd, cfd, buf, p, &calls);
        free(buf);
        report_cpu("relay", calls);
}

/* The next connection; -1 (reported) when the listener broke. */
static int accept_next(int ls)
{
        for (;;) {
                int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0)
                        return fd;
                if (errno != EINTR && errno != ECONNABORTED && errno != EMFILE) {
                        perror("http-bench: accept");
                        return -1;
                }
        }
}

static void reap(int sig)
{
        (void)sig;
        int saved = errno;
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        errno = saved;
}

static int relay(int port)
{
        int ls = listen_at(htonl(INADDR_LOOPBACK));
        /* Reaped here (not ignored), so that the children's CPU time adds up in this
         * process's cutime/cstime, where the bench reads it. */
        struct sigaction sa = { .sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
        sigaction(SIGCHLD, &sa, NULL);
        if (ls < 0)
                return 1;
        for (;;) {
                int fd = accept_next(ls);
                if (fd < 0)
                        return 1;
                if (fork() == 0) {
                        if (child_of_server()) {
                                close(ls);
                                relay_one(fd, port);
                        }
                        _exit(0);
                }
                close(fd);
        }
}

static int serve(in_addr_t addr)
{
        int ls = listen_at(addr);
        if (ls < 0)
                return 1;
        for (;;) {
                int fd = accept_next(ls);
                if (fd < 0)
                        return 1;
                long long n = read_request(fd);
                if (n > INLINE_MAX) {
                        pid_t pid = fork();
                        if (pid == 0) {
                                if (child_of_server()) {
                                        close(ls);
                                        answer(fd, n);
                                        report_cpu("serve", 0);
                                }
                                _exit(0);
                        }
                        if (pid < 0)
                                answer(fd, -1);
                } else {
                        answer(fd, n);
                }
                close(fd);
        }
}

/* One request on a new connection; true when the answer was a complete 200. */
static bool one_request(const struct sockaddr_in *to, const char *req, size_t req_len)
{
        char buf[4096];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        bool ok = false;
        size_t have = 0;
        if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) == 0 && write_all(fd, req, req_len) == 0) {
                for (;;) {
                        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
                        if (r <= 0)
                                break;
                        have += (size_t)r;
                        if (have == sizeof(buf) - 1)
                                have = 0; /* only the status line matters; it came first */
                }
                buf[have] = 0;
                ok = strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0;
        }
        close(fd);
        return ok;
}

/* One connection established, directly (connect() returns) or through an HTTP proxy
 * (its 200 to CONNECT); true when it was. */
static bool one_connect(const struct sockaddr_in *to, const char *req, size_t req_len)
{
        char buf[1024];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        bool ok = connect(fd, (const struct sockaddr *)to, sizeof(*to)) == 0;
        if (ok && req_len > 0) {
                size_t have = 0;
                ok = write_all(fd, req, req_len) == 0;
                while (ok && have < sizeof(buf) - 1) {
                        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
                        if (r <= 0)
                                break;
                        have += (size_t)r;
                        buf[have] = 0;
                        if (strstr(buf, "\r\n\r\n"))
                                break;
                }
                buf[have] = 0;
                ok = ok && (strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0);
        }
        close(fd);
        return ok;
}

/* Samples travel from the clients to the parent in records of up to PIPE_BUF bytes (atomic
 * writes); a negative value ends a client: -(its errors + 1). */
#define BATCH (4096 / sizeof(int64_t))

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static double percentile_us(int64_t *v, size_t n, double q)
{
        if (n == 0)
                return 0;
        size_t i = (size_t)(q * (double)(n - 1) + 0.5);
        return (double)v[i] / 1e3;
}

/* Runs n operations from c processes (one_request, or one_connect when `connect_only`):
 * the elapsed time, the errors and each operation's time (sorted). */
static int run_clients(long n, int c, bool connect_only, const struct sockaddr_in *to, const char *req, size_t len,
                       double *ret_secs, long *ret_errors, int64_t **ret_samples, size_t *ret_n)
{
        int pfd[2];
        if (pipe(pfd) < 0)
                return -1;
        int64_t *samples = calloc((size_t)n, sizeof(int64_t));
        if (!samples)
                return -1;
        uint64_t t0 = now_ns();
        for (int k = 0; k < c; k++) {
                pid_t pid = fork();
                if (pid < 0)
                        return -1;
                if (pid == 0) {
                        int64_t batch[BATCH];
                        size_t nb = 0;
                        long errors = 0;
                        for (long i = k; i < n; i += c) {
                                uint64_t s = now_ns();
                                bool ok = connect_only ? one_connect(to, req, len) : one_request(to, req, len);
                                if (!ok) {
                                        errors++;
                                        continue;
                                }
                                batch[nb++] = (int64_t)(now_ns() - s);
                                if (nb == BATCH) {
                                        (void)!write(pfd[1], batch, sizeof(batch));
                                        nb = 0;
                                }
                        }
                        batch[nb++] = -(int64_t)(errors + 1);
                        (void)!write(pfd[1], batch, nb * sizeof(int64_t));
                        _exit(0);
                }
        }
        close(pfd[1]);
        long errors = 0;
        int children = 0;
        size_t have = 0;
        int64_t batch[BATCH];
        ssize_t r;
        while ((r = read(pfd[0], batch, sizeof(batch))) > 0) {
                for (size_t i = 0; i < (size_t)r / sizeof(int64_t); i++) {
                        if (batch[i] < 0) {
                                errors += -batch[i] - 1;
                                children++;
                        } else if (have < (size_t)n) {
                                samples[have++] = batch[i];
                        }
                }
        }
        close(pfd[0]);
        while (wait(NULL) > 0)
                ;
        *ret_secs = (double)(now_ns() - t0) / 1e9;
        if (children != c)
                errors += n; /* a client died: the figures mean nothing */
        qsort(samples, have, sizeof(int64_t), cmp_i64);
        *ret_errors = errors;
        *ret_samples = samples;
        *ret_n = have;
        return 0;
}

static int parse_proxy(const char *proxy, struct sockaddr_in *to)
{
        char ip[64];
        int pport;
        if (sscanf(proxy, "%63[0-9.]:%d", ip, &pport) != 2 || inet_pton(AF_INET, ip, &to->sin_addr) != 1 || pport < 1 ||
            pport > 65535) {
                fprintf(stderr, "http-bench: --proxy wants IPv4:PORT, got '%s'\n", proxy);
                return -1;
        }
        to->sin_port = htons((uint16_t)pport);
        return 0;
}

static int conns(long n, const char *host, int port, const char *proxy, int c, bool connect_only)
{
        struct sockaddr_in to = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char req[512];
        int len = 0;
        if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
                if (connect_only && !proxy) {
                        fprintf(stderr, "http-bench: connect wants an IPv4 HOST, got '%s'\n", host);
                        return 2;
                }
                to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        if (proxy && parse_proxy(proxy, &to) < 0)
                return 2;
        if (connect_only && proxy)
                len = snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host,
                               port);
        else if (proxy)
                len = snprintf(req, sizeof(req),
                               "GET http://%s:%d/0 HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", host, port,
                               host, port);
        else if (!connect_only)
                len = snprintf(req, sizeof(req), "GET /0 HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", host,
                               port);
        double secs;
        long errors;
        int64_t *v;
        size_t nv;
        if (run_clients(n, c, connect_only, &to, req, (size_t)len, &secs, &errors, &v, &nv) < 0) {
                perror("http-bench");
                return 1;
        }
        if (connect_only)
                printf("connect_p50_us=%.1f connect_p99_us=%.1f errors=%ld\n", percentile_us(v, nv, 0.5),
                       percentile_us(v, nv, 0.99), errors);
        else
                printf("connections_per_s=%.0f errors=%ld p50_us=%.1f p99_us=%.1f\n", (double)n / secs, errors,
                       percentile_us(v, nv, 0.5), percentile_us(v, nv, 0.99));
        free(v);
        return errors ? 1 : 0;
}

/* `cpu CMD...`: runs CMD, then prints its CPU time (its own and its reaped children's, in ns
 * from wait4's rusage) as `cpu_ns=N` after what it printed; its exit status. */
static int run_timed(char **argv)
{
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
                execvp(argv[0], argv);
                perror(argv[0]);
                _exit(127);
        }
        int status;
        struct rusage ru;
        if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
                perror("http-bench: cpu");
                return 1;
        }
        unsigned long long us = (unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
                                (unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        printf("\ncpu_ns=%llu\n", us * 1000);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* The relay's children's CPU counter: 8 bytes of PATH (made, zeroed), mapped shared. */
static uint64_t *map_counter(const char *path)
{
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        void *m = MAP_FAILED;
        if (fd >= 0 && ftruncate(fd, sizeof(uint64_t)) == 0)
                m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (fd >= 0)
                close(fd);
        if (m == MAP_FAILED) {
                perror(path);
                return NULL;
        }
        return m;
}

int main(int argc, char **argv)
{
        struct in_addr addr = { htonl(INADDR_LOOPBACK) };
        if (argc >= 2 && strcmp(argv[1], "serve") == 0) {
                for (int i = 2; i < argc; i++) {
                        if (strcmp(argv[i], "--cpu-file") == 0 && i + 1 < argc && !ropt.cpu) {
                                if (!(ropt.cpu = map_counter(argv[++i])))
                                        return 1;
                        } else if (i != 2 || inet_pton(AF_INET, argv[i], &addr) != 1)
                                goto usage;
                }
                return serve(addr.s_addr);
        }
        if (argc >= 3 && strcmp(argv[1], "cpu") == 0)
                return run_timed(argv + 2);
        if (argc >= 3 && strcmp(argv[1], "relay") == 0 && atoi(argv[2]) > 0 && atoi(argv[2]) < 65536) {
                for (int i = 3; i < argc; i++) {
                        if (strcmp(argv[i], "--copy") == 0)
                                ropt.copy = true;
                        else if (strcmp(argv[i], "--nonblock") == 0)
                                ropt.nonblock = ropt.copy = true;
                        else if (strcmp(argv[i], "--sockbuf") == 0 && i + 1 < argc)
                                ropt.sockbuf = atoi(argv[++i]);
                        else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
                                ropt.chunk = (size_t)atoi(argv[++i]);
                        else if (strcmp(argv[i], "--cpu-file") == 0 && i + 1 < argc && !ropt.cpu) {
                                if (!(ropt.cpu = map_counter(argv[++i])))
                                        return 1;
                        } else
                                goto usage;
                }
                return relay(atoi(argv[2]));
        }
        bool connect_only = argc >= 5 && strcmp(argv[1], "connect") == 0;
        if (argc >= 5 && (strcmp(argv[1], "conns") == 0 || connect_only)) {
                long n = atol(argv[2]);
                const char *host = argv[3], *proxy = NULL;
                int port = atoi(argv[4]), c = 1;
                for (int i = 5; i < argc; i++) {
                        if (strcmp(argv[i], "--proxy") == 0 && i + 1 < argc)
                                proxy = argv[++i];
                        else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc && !connect_only)
                                c = atoi(argv[++i]);
                        else
                                goto usage;
                }
                if (n < 1 || n > 10000000 || port < 1 || port > 65535 || c < 1 || c > 64)
                        goto usage;
                return conns(n, host, port, proxy, c, connect_only);
        }
usage:
        fprintf(stderr,
                "usage: http-bench serve [ADDR] [--cpu-file PATH] | http-bench cpu CMD [ARG]... |\n"
                "       http-bench relay PORT [--copy] [--nonblock] [--sockbuf N] [--chunk N] [--cpu-file PATH] |\n"
                "       http-bench conns N HOST PORT [--proxy IP:PORT] [-c C] |\n"
                "       http-bench connect N HOST PORT [--proxy IP:PORT]\n");
        return 2;
}
