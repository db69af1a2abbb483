/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "gateway/gateway.h"
#include "gateway/http.h"

static int parse(const char *s, AjGwRequestHead *h, int *status, const char **why)
{
        return aj_gw_parse_request_head(s, strlen(s), 4096, h, status, why);
}

Test(gateway_http, request_ok)
{
        AjGwRequestHead h;
        int st = 0;
        const char *why = NULL;
        const char *s = "POST /anthropic/v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
                        "x-api-key:  placeholder \r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\nBODY";
        cr_assert_eq(parse(s, &h, &st, &why), 0, "%s", why);
        cr_expect_eq(h.head_len, strlen(s) - 4);
        cr_expect_eq(h.method_len, 4);
        cr_expect_eq(strncmp(h.target, "/anthropic/v1/messages?beta=true", h.target_len), 0);
        cr_expect_eq(h.minor, 1);
        cr_expect_eq(h.n_headers, 4);
        const AjGwHeader *k = aj_gw_header_find(h.headers, h.n_headers, "X-API-KEY");
        cr_assert_not_null(k);
        cr_expect_eq(k->value_len, 11, "trimmed");
        cr_expect_eq(h.body, AJ_GW_BODY_LENGTH);
        cr_expect_eq(h.content_length, 12);
        cr_expect(h.keep_alive);
        cr_expect(h.expect_continue);

        cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n", &h,
                           &st, &why),
                     0);
        cr_expect_eq(h.body, AJ_GW_BODY_CHUNKED);
        cr_expect(!h.keep_alive);
        cr_expect_eq(parse("GET / HTTP/1.1\r\nHost: x\r\n", &h, &st, &why), -EAGAIN);
        cr_expect_eq(parse("GET / HTTP/1.0\r\n\r\n", &h, &st, &why), 0);
        cr_expect(!h.keep_alive);
}

Test(gateway_http, request_refused)
{
        static const struct {
                const char *req;
                int status;
        } cases[] = {
                { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                  400 },
                { "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
                { "GET / HTTP/1.1\nHost: x\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
                { "GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
                { "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417 },
                /* One spelling of each path: what is classified is what the provider gets. */
                { "POST /anthropic/v1/messages/. HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages/.. HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/x/../messages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1%2Fmessages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/%6dessages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages;x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic//v1/messages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages// HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1\\messages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/m\xc3\xa9ssages HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages?a=\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages?a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
                { "POST /anthropic/v1/messages#b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                AjGwRequestHead h;
                int st = 0;
                const char *why = NULL;
                cr_expect_eq(parse(cases[i].req, &h, &st, &why), -EINVAL, "case %zu", i);
                cr_expect_eq(st, cases[i].status, "case %zu: %d (%s)", i, st, why);
                cr_expect_not_null(why);
        }
}

Test(gateway_http, canonical_targets_served)
{
        static const char *const ok[] = {
                "/",
                "/anthropic/v1/messages",
                "/anthropic/v1/messages/",
                "/openai/v1/chat/completions?x=%20y",
                "/anthropic/v1/messages?beta=true",
                "/a/.well-known/x",
                "/a/b:c@d",
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                cr_expect_null(aj_gw_target_not_canonical(ok[i], strlen(ok[i])), "%s", ok[i]);
        cr_expect_not_null(aj_gw_target_not_canonical("", 0));
        cr_expect_not_null(aj_gw_target_not_canonical("?x", 2));
}

Test(gateway_http, request_head_cap)
{
        char big[5000];
        memset(big, 'a', sizeof(big));
        memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
        AjGwRequestHead h;
        int st = 0;
        const char *why = NULL;
        cr_expect_eq(aj_gw_parse_request_head(big, sizeof(big), 4096, &h, &st, &why), -EINVAL);
        cr_expect_eq(st, 431);
        cr_expect_eq(aj_gw_parse_request_head(big, 100, 4096, &h, &st, &why), -EAGAIN);
}

Test(gateway_http, response_framing)
{
        AjGwResponseHead h;
        const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        cr_assert_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), 0);
        cr_expect_eq(h.status, 200);
        cr_expect_eq(h.body, AJ_GW_BODY_CHUNKED);
        cr_expect(h.keep_alive);
        s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        cr_assert_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), 0);
        cr_expect_eq(h.body, AJ_GW_BODY_LENGTH);
        cr_expect_eq(h.content_length, 10);
        cr_assert_eq(aj_gw_parse_response_head(s, strlen(s), 4096, true, &h), 0);
        cr_expect_eq(h.body, AJ_GW_BODY_NONE, "HEAD");
        s = "HTTP/1.0 200 OK\r\n\r\n";
        cr_assert_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), 0);
        cr_expect_eq(h.body, AJ_GW_BODY_UNTIL_CLOSE);
        cr_expect(!h.keep_alive);
        s = "HTTP/1.1 204\r\n\r\n";
        cr_assert_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), 0);
        cr_expect_eq(h.body, AJ_GW_BODY_NONE);
        s = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        cr_expect_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), -EBADMSG);
        s = "SSH-2.0-x\r\n\r\n";
        cr_expect_eq(aj_gw_parse_response_head(s, strlen(s), 4096, false, &h), -EBADMSG);
}

static ssize_t decode_all(const char *in, size_t len, size_t step, char *out, size_t *out_len, bool *done)
{
        AjGwChunked s = { 0 };
        size_t used = 0;
        *out_len = 0;
        *done = false;
        while (used < len && !*done) {
                size_t avail = len - used < step ? len - used : step;
                size_t off = 0;
                while (off < avail && !*done) {
                        const char *d;
                        size_t dl;
                        ssize_t k = aj_gw_chunked_next(&s, in + used + off, avail - off, &d, &dl, done);
                        if (k < 0)
                                return k;
                        if (dl)
                                memcpy(out + *out_len, d, dl);
                        *out_len += dl;
                        off += (size_t)k;
                }
                used += off;
        }
        return (ssize_t)used;
}

Test(gateway_http, chunked_every_boundary)
{
        const char *in = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        size_t len = strlen(in);
        for (size_t step = 1; step <= len; step++) {
                char out[64];
                size_t out_len;
                bool done;
                ssize_t used = decode_all(in, len, step, out, &out_len, &done);
                cr_assert(done, "step %zu", step);
                cr_expect_eq(used, (ssize_t)(len - 4), "step %zu: the bytes after the body stay", step);
                cr_expect_eq(out_len, 31);
                cr_expect_eq(memcmp(out, "helloabcdefghijklmnopqrstuvwxyz", 31), 0);
        }
}

Test(gateway_http, chunked_malformed)
{
        static const char *const bad[] = {
                "x\r\n",
                "\r\n",
                "5\nhello\r\n",
                "5\r\nhelloX\r\n",
                "1234567890abcdef\r\n",
                "-1\r\n",
                "5 \r\nhello\r\n",
                "0\r\nX\x01\r\n\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char out[64];
                size_t out_len;
                bool done;
                cr_expect_eq(decode_all(bad[i], strlen(bad[i]), 64, out, &out_len, &done), -EBADMSG, "case %zu", i);
        }
}

Test(gateway_http, error_bodies)
{
        char *a = aj_gateway_error_body(AJ_GATEWAY_API_ANTHROPIC, "rate_limit_error", NULL, "cap \"x\"");
        cr_expect_str_eq(a,
                         "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"cap \\\"x\\\"\"}}");
        char *o = aj_gateway_error_body(AJ_GATEWAY_API_OPENAI, "insufficient_quota", "insufficient_quota", "cap");
        cr_expect_str_eq(
                o, "{\"error\":{\"message\":\"cap\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}");
        free(a);
        free(o);
}

Test(gateway_http, connection_tokens)
{
        cr_expect(aj_gw_value_has_token("keep-alive, Close", 17, "close"));
        cr_expect(!aj_gw_value_has_token("closed", 6, "close"));
}

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static int new_gateway(const AjGatewayProvider *p, AjError *err)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        AjGateway *gw = NULL;
        int r = aj_gateway_new(fd, p, 1, NULL, NULL, &gw, err);
        if (r >= 0) {
                cr_expect_geq(aj_gateway_fd(gw), 0);
                cr_expect_eq(aj_gateway_connections(gw), 0);
                aj_gateway_free(gw);
        }
        return r;
}

Test(gateway_relay, providers_validated)
{
        static const struct {
                const char *name, *url, *key, *why;
        } bad[] = {
                { "Anthropic", "https://api.anthropic.com", "k", "a provider name is" },
                { "a", "ftp://x", "k", "must start with https:// or http://" },
                { "a", "https://user@x", "k", "may not hold credentials" },
                { "a", "https://x/?q=1", "k", "may not hold credentials, a query" },
                { "a", "https://x:0", "k", "invalid port" },
                { "a", "https://x:99999", "k", "invalid port" },
                { "a", "https://[::1", "k", "missing ']'" },
                { "a", "https://", "k", "invalid host" },
                { "a", "https://x", "", "the credential is empty" },
                { "a", "https://x", "sk\r\nX-Evil: 1", "control characters" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                AjGatewayProvider p = { .name = bad[i].name, .url = bad[i].url, .credential = bad[i].key };
                _cleanup_(aj_error_clear) AjError err = {};
                cr_expect_eq(new_gateway(&p, &err), -EINVAL, "case %zu", i);
                cr_expect(err.message && strstr(err.message, bad[i].why), "case %zu: %s", i,
                          err.message ? err.message : "(null)");
        }
        AjGatewayProvider ca = { .name = "a", .url = "https://x", .credential = "k", .ca_file = "/nonexistent/ca.pem" };
        _cleanup_(aj_error_clear) AjError err = {};
        cr_expect_lt(new_gateway(&ca, &err), 0);
        cr_expect(err.message && strstr(err.message, "Failed to load the CA file '/nonexistent/ca.pem'"), "%s",
                  err.message ? err.message : "(null)");

        static const char *const good[] = { "https://api.anthropic.com", "http://10.0.0.5:4000/v1/",
                                            "https://[::1]:8443/base", "https://127.0.0.1" };
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                AjGatewayProvider p = { .name = "ok", .url = good[i], .credential = "sk-1" };
                aj_error_clear(&err);
                cr_expect_eq(new_gateway(&p, &err), 0, "%s: %s", good[i], aj_error_text(&err, 0));
        }
}

/* ------------------------------------------------------------------ the agent leaving */

#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>

typedef struct {
        int done;
        AjGatewayOutcome outcome;
        bool agent_left;
        size_t bytes; /* of the body, as the observer saw it (what is metered) */
} Seen;

static AjGatewayFlow seen_bytes(void *userdata, AjGatewayCall *call, const char *buf, size_t n)
{
        (void)call, (void)buf;
        ((Seen *)userdata)->bytes += n;
        return AJ_GATEWAY_CONTINUE;
}

static void seen_done(void *userdata, AjGatewayCall *call, AjGatewayOutcome outcome, uint64_t latency_ns)
{
        (void)latency_ns;
        Seen *s = userdata;
        s->done++;
        s->outcome = outcome;
        s->agent_left = call->agent_left;
}

static int listen_local(uint16_t *port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        cr_assert_geq(fd, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(fd, 8), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        *port = ntohs(a.sin_port);
        return fd;
}

static void turn(AjGateway *gw)
{
        struct pollfd p = { .fd = aj_gateway_fd(gw), .events = POLLIN };
        (void)poll(&p, 1, 20);
        cr_assert_geq(aj_gateway_dispatch(gw), 0);
}

/* What the fake provider answers: an SSE stream, chunked. */
static const char sse_head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
static const char sse_one[] = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
static const char sse_two[] = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

static void send_chunk(int fd, const char *s)
{
        char b[256];
        int n = snprintf(b, sizeof(b), "%zx\r\n%s\r\n", strlen(s), s);
        cr_assert_eq(send(fd, b, (size_t)n, MSG_NOSIGNAL), n);
}

/* A relay serving one provider, "fake", at http://127.0.0.1:PORT`base` (its listening socket
 * in *ret_pl), itself listening on *ret_gport. */
static AjGateway *relay_to_local(const char *base, const AjGatewayObserver *obs, int *ret_pl, uint16_t *ret_gport)
{
        uint16_t pport;
        *ret_pl = listen_local(&pport);
        int gl = listen_local(ret_gport);
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)pport, base);
        AjGatewayProvider p = { .name = "fake", .url = url, .credential = "sk-test" };
        AjGateway *gw = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_gateway_new(gl, &p, 1, obs, NULL, &gw, &err), 0, "%s", aj_error_text(&err, 0));
        return gw;
}

/* An agent connected to the gateway at `gport`, having sent `rq`. */
static int agent_connect(uint16_t gport, const char *rq)
{
        int agent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons(gport),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        cr_assert_eq(connect(agent, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(send(agent, rq, strlen(rq), 0), (ssize_t)strlen(rq));
        return agent;
}

/* The provider's side of the call, accepted on `pl`, once it read up to `until` (its bytes in
 * got, got_len). */
static int provider_reads(AjGateway *gw, int pl, const char *until, char *got, size_t size, size_t *got_len)
{
        int up = -1;
        *got_len = 0;
        for (int i = 0; i < 200 && !memmem(got, *got_len, until, strlen(until)); i++) {
                turn(gw);
                if (up < 0)
                        up = accept4(pl, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                ssize_t n = up >= 0 ? recv(up, got + *got_len, size - *got_len, 0) : -1;
                if (n > 0)
                        *got_len += (size_t)n;
        }
        return up;
}

/* A call whose agent closes (rst: resets) its connection after the provider sent the
 * head and the first event, before the relay read more; whole: the provider had sent
 * the rest too (first: before the agent closed; the relay then finds out on writing).
 * Returns what the observer saw. */
static Seen agent_leaves(bool whole, bool rst, bool first)
{
        Seen seen = { 0 };
        uint16_t gport;
        int pl;
        AjGatewayObserver obs = { .userdata = &seen, .on_response_bytes = seen_bytes, .on_done = seen_done };
        AjGateway *gw = relay_to_local("", &obs, &pl, &gport);

        int agent = agent_connect(gport, "POST /fake/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");

        /* The provider accepts and reads the request whole. */
        char got[4096];
        size_t got_len;
        int up = provider_reads(gw, pl, "\r\n\r\n{}", got, sizeof(got), &got_len);
        cr_assert(got_len && memmem(got, got_len, "\r\n\r\n{}", 6), "the provider got the request");

        /* The head and a first event reach the agent. */
        cr_assert_eq(send(up, sse_head, sizeof(sse_head) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(sse_head) - 1);
        send_chunk(up, sse_one);
        for (int i = 0; i < 200 && seen.bytes < strlen(sse_one); i++)
                turn(gw);
        cr_assert_eq(seen.bytes, strlen(sse_one));

        /* The agent leaves first; then the provider ends its response, or not. */
        if (rst) {
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                cr_assert_eq(setsockopt(agent, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        }
        if (whole && first) {
                send_chunk(up, sse_two);
                cr_assert_eq(send(up, "0\r\n\r\n", 5, MSG_NOSIGNAL), 5);
        }
        close(agent);
        if (whole && !first) {
                send_chunk(up, sse_two);
                cr_assert_eq(send(up, "0\r\n\r\n", 5, MSG_NOSIGNAL), 5);
        }
        for (int i = 0; i < 200 && !seen.done; i++)
                turn(gw);
        cr_expect_eq(aj_gateway_connections(gw), 0, "the agent's connection is closed");
        aj_gateway_free(gw);
        close(up);
        close(pl);
        return seen;
}

Test(gateway_relay, agent_leaving_after_the_whole_response_is_completed)
{
        for (int i = 0; i < 4; i++) {
                bool rst = i & 1, first = i & 2;
                Seen s = agent_leaves(true, rst, first);
                cr_expect_eq(s.done, 1, "case %d: on_done once", i);
                cr_expect_eq(s.outcome, AJ_GATEWAY_COMPLETED, "case %d: outcome %d", i, (int)s.outcome);
                cr_expect(s.agent_left, "case %d: the call says the agent left", i);
                cr_expect_eq(s.bytes, strlen(sse_one) + strlen(sse_two), "case %d: the whole body is metered", i);
        }
}

Test(gateway_relay, agent_leaving_mid_response_cuts_it_short)
{
        for (int rst = 0; rst < 2; rst++) {
                Seen s = agent_leaves(false, rst, false);
                cr_expect_eq(s.done, 1, "rst %d: on_done once", rst);
                cr_expect_eq(s.outcome, AJ_GATEWAY_CUT_SHORT, "rst %d: outcome %d", rst, (int)s.outcome);
                cr_expect(s.agent_left, "rst %d", rst);
                cr_expect_eq(s.bytes, strlen(sse_one), "rst %d: what arrived is metered", rst);
        }
}

/* ------------------------------------------------------------------ the key echoed */

/* The provider answers `head` then each of `pieces` as a read of its own; returns what the
 * agent got, whole (NUL-terminated, malloc'd). */
static char *echoed(const char *head, const char *const *pieces, size_t n_pieces, const char *key)
{
        uint16_t pport, gport;
        int pl = listen_local(&pport);
        int gl = listen_local(&gport);
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)pport);
        AjGatewayProvider p = { .name = "fake", .url = url, .credential = key };
        AjGateway *gw = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        cr_assert_eq(aj_gateway_new(gl, &p, 1, NULL, NULL, &gw, &err), 0, "%s", aj_error_text(&err, 0));
        int agent = agent_connect(gport, "TRACE /fake/v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        char got[4096];
        size_t got_len;
        int up = provider_reads(gw, pl, "\r\n\r\n", got, sizeof(got), &got_len);
        cr_assert(memmem(got, got_len, key, strlen(key)), "the provider got the key");
        cr_assert_eq(send(up, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
        for (int i = 0; i < 20; i++)
                turn(gw);
        for (size_t k = 0; k < n_pieces; k++) {
                cr_assert_eq(send(up, pieces[k], strlen(pieces[k]), MSG_NOSIGNAL), (ssize_t)strlen(pieces[k]));
                for (int i = 0; i < 20; i++)
                        turn(gw);
        }
        close(up);
        char *out = calloc(1, 65536);
        size_t out_len = 0;
        cr_assert(fcntl(agent, F_SETFL, O_NONBLOCK) == 0);
        for (int i = 0; i < 200; i++) {
                turn(gw);
                ssize_t n = recv(agent, out + out_len, 65535 - out_len, 0);
                if (n > 0)
                        out_len += (size_t)n;
                else if (n == 0)
                        break;
        }
        close(agent);
        aj_gateway_free(gw);
        close(pl);
        return out;
}

/* The key never reaches the agent, however the provider quotes it: in a header's value or
 * name, the reason phrase, or a body (an error repeating the header, a TRACE's echo), also
 * split across the provider's writes, chunked or framed by Content-Length (kept right). */
Test(gateway_relay, key_echoed_by_the_provider_never_reaches_the_agent)
{
        static const char key[] = "sk-test-KEY123";
        static const char *const split[] = { "22\r\n{\"error\":\"bad key sk-test-K",
                                             "EY1",
                                             "23\"}\r\n",
                                             "20\r\nTRACE / HTTP/1.1 sk-sk-test-KEY1\r\n",
                                             "8\r\n23 sk-te\r\n",
                                             "0\r\n\r\n" };
        char *out = echoed("HTTP/1.1 401 bad sk-test-KEY123\r\nContent-Type: application/json\r\nX-Echo: "
                           "sk-test-KEY123\r\nsk-test-KEY123: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                           split, ARRAY_SIZE(split), key);
        cr_expect(strstr(out, "HTTP/1.1 401 Unauthorized\r\n"), "%s", out);
        cr_expect(!strstr(out, "KEY"), "%s", out);
        size_t stars = 0;
        for (const char *c = out; *c; c++)
                stars += *c == '*';
        cr_expect_eq(stars, 2 * strlen(key), "each quote masked whole: %s", out);
        cr_expect(strstr(out, "sk-te\r\n0\r\n\r\n"), "a prefix of the key at the end is the body's: %s", out);
        free(out);

        static const char *const whole[] = { "{\"error\":\"sk-test-", "KEY123\"}" };
        out = echoed("HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n", whole, ARRAY_SIZE(whole), key);
        cr_expect(strstr(out, "Content-Length: 26\r\n"), "%s", out);
        cr_expect(strstr(out, "\r\n\r\n{\"error\":\"**************\"}"), "%s", out);
        free(out);
}

/* ------------------------------------------------------------------ admission */

typedef struct {
        char admit_method[16], admit_path[64];
        char refused_method[16], refused_path[64];
        unsigned refused_status;
} Admission;

static void admit_all_but_files(void *userdata, const AjGatewayProvider *p, const char *method, const char *path,
                                AjGatewayVerdict *v)
{
        Admission *a = userdata;
        snprintf(a->admit_method, sizeof(a->admit_method), "%s", method);
        snprintf(a->admit_path, sizeof(a->admit_path), "%s", path);
        if (strncmp(path, "/v1/files", 9) == 0) {
                v->status = 403;
                v->error_type = "permission_error";
                snprintf(v->message, sizeof(v->message), "not for %s", p->name);
        }
}

static void admission_refused(void *userdata, const char *method, const char *target, unsigned status,
                              const char *message)
{
        Admission *a = userdata;
        (void)message;
        snprintf(a->refused_method, sizeof(a->refused_method), "%s", method ? method : "");
        snprintf(a->refused_path, sizeof(a->refused_path), "%s", target ? target : "");
        a->refused_status = status;
}

/* Whatever the agent reads of the gateway's answer, until it closes or `until` is in it. */
static size_t agent_reads(AjGateway *gw, int agent, const char *until, char *got, size_t size)
{
        size_t len = 0;
        for (int i = 0; i < 200 && !(until && memmem(got, len, until, strlen(until))); i++) {
                turn(gw);
                ssize_t n = recv(agent, got + len, size - 1 - len, MSG_DONTWAIT);
                if (n == 0)
                        break;
                if (n > 0)
                        len += (size_t)n;
        }
        got[len] = 0;
        return len;
}

/* The observer's admit sees a request's path under the provider's prefix before its body is
 * read; one it refuses gets its status in the provider's shape, is told to on_refused, and
 * never reaches the provider (not even a connection). */
Test(gateway_relay, a_request_not_admitted_never_reaches_the_provider)
{
        uint16_t gport;
        int pl;
        Admission a = {};
        AjGatewayObserver obs = { .userdata = &a, .admit = admit_all_but_files, .on_refused = admission_refused };
        AjGateway *gw = relay_to_local("/base", &obs, &pl, &gport);

        /* A body announced and never sent: refused on its head alone. */
        int agent = agent_connect(gport,
                                  "DELETE /fake/v1/files/f1?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n");
        char got[2048];
        agent_reads(gw, agent, NULL, got, sizeof(got));
        cr_expect(strncmp(got, "HTTP/1.1 403 ", 13) == 0, "%s", got);
        cr_expect(strstr(got, "\"type\":\"permission_error\",\"message\":\"not for fake\""), "%s", got);
        cr_expect_str_eq(a.admit_method, "DELETE");
        cr_expect_str_eq(a.admit_path, "/v1/files/f1?x=1", "the path under the provider's prefix");
        cr_expect_str_eq(a.refused_method, "DELETE");
        cr_expect_str_eq(a.refused_path, "/base/v1/files/f1?x=1");
        cr_expect_eq(a.refused_status, 403);
        cr_expect_lt(accept4(pl, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), 0, "the provider was never connected to");
        close(agent);

        /* The prefix alone is "/"; an admitted request goes on as before. */
        agent = agent_connect(gport, "HEAD /fake HTTP/1.1\r\nHost: x\r\n\r\n");
        char up_got[2048];
        size_t up_len;
        int up = provider_reads(gw, pl, "\r\n\r\n", up_got, sizeof(up_got), &up_len);
        cr_expect_str_eq(a.admit_method, "HEAD");
        cr_expect_str_eq(a.admit_path, "/");
        cr_assert_geq(up, 0, "the provider got the admitted request");
        cr_expect(up_len > 17 && strncmp(up_got, "HEAD /base/ HTTP/1.1", 20) == 0, "%.*s", (int)up_len, up_got);
        close(up);
        close(agent);
        aj_gateway_free(gw);
        close(pl);
}
