/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs the gateway's relay (src/gateway/gateway.h) on 127.0.0.1 for
 * tests/integration/test-gateway-relay.sh, nested in an outer poll() loop as the
 * supervisor nests it, with a test observer driven by request headers:
 *   x-test-refuse: 1       on_request refuses (429, the provider's error shape)
 *   x-test-cut-after: N    on_response_bytes cuts once more than N body bytes were seen
 *   x-test-rewrite: 1      on_request replaces the body with {"rewritten":true}
 *   x-test-serve: N        on_request answers itself (AjGatewayVerdict.response): 200, a
 *                          chunked body of N bytes ('x', at most 64 MiB); nothing is forwarded
 *   x-test-filter: upper   (with --filter) the body is forwarded upper-cased
 *   x-test-filter: hold    (with --filter) the body is held back until its end
 * Each finished call is a line in the --log file: "id=N provider=P outcome=O status=S"
 * (then the path, tokens, and "agent_left" when the agent left first).
 * With --meter 1 each call is also metered as the supervisor meters it (the request
 * body and the response read by src/gateway/usage.h, the event's fields built and
 * serialized), for scripts/bench --only gateway; the log line gets "tokens=IN/OUT".
 *
 * gateway-relay-harness --port-file F --log F [--max-body N] [--max-connections N]
 *     [--filter 1] [--meter 1] [--response-timeout-ms N] --provider name,api,url,key[,ca_file] ...
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <jansson.h>

#include "gateway/gateway.h"
#include "gateway/usage.h"

typedef struct {
        char filter[8];
        char *held;
        size_t n_held;
        uint64_t cut_after; /* 0: never */
        uint64_t seen;
        unsigned status;
        AjLlmCall *llm; /* --meter */
} CallState;

static FILE *logf_;
static bool meter;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { stop = 1; }

static bool has_header(const AjGatewayRequest *req, const char *name, uint64_t *ret_value)
{
        const AjGwHeader *h = aj_gw_header_find(req->headers, req->n_headers, name);
        if (!h)
                return false;
        if (ret_value) {
                char buf[32] = "";
                snprintf(buf, sizeof(buf), "%.*s", (int)h->value_len, h->value);
                *ret_value = strtoull(buf, NULL, 10);
        }
        return true;
}

static void on_request(void *u, AjGatewayCall *call, const AjGatewayRequest *req, AjGatewayVerdict *v)
{
        CallState *s = calloc(1, sizeof(*s));
        call->data = s;
        if (has_header(req, "x-test-refuse", NULL)) {
                v->status = 429;
                v->error_type = call->provider->api == AJ_GATEWAY_API_OPENAI ? "insufficient_quota"
                                                                             : "rate_limit_error";
                v->error_code = call->provider->api == AJ_GATEWAY_API_OPENAI ? "insufficient_quota" : NULL;
                snprintf(v->message, sizeof(v->message), "agentjail: cost cap reached (test)");
        }
        uint64_t serve = 0;
        if (has_header(req, "x-test-serve", &serve) && serve <= (64u << 20)) {
                static const char head[] = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                                           "transfer-encoding: chunked\r\n\r\n";
                size_t cap = sizeof(head) + serve + (serve / 1000 + 1) * 16 + 8, n = 0;
                char *r = malloc(cap);
                if (r) {
                        n += (size_t)snprintf(r, cap, "%s", head);
                        for (uint64_t left = serve; left > 0;) {
                                size_t k = left < 1000 ? (size_t)left : 1000;
                                n += (size_t)snprintf(r + n, cap - n, "%zx\r\n", k);
                                memset(r + n, 'x', k);
                                n += k;
                                memcpy(r + n, "\r\n", 2);
                                n += 2;
                                left -= k;
                        }
                        memcpy(r + n, "0\r\n\r\n", 5);
                        v->response = r;
                        v->response_len = n + 5;
                }
        }
        if (has_header(req, "x-test-rewrite", NULL)) {
                v->body = strdup("{\"rewritten\":true}");
                v->body_len = strlen(v->body);
        }
        if (!s)
                return;
        AjLlmApi api;
        const char *api_name = call->provider->api == AJ_GATEWAY_API_OPENAI ? "openai" : "anthropic";
        if (meter && aj_llm_api_from_path(api_name, call->path, &api) == 0 && aj_llm_call_new(api, &s->llm) == 0)
                (void)aj_llm_call_request(s->llm, req->body, req->body_len);
        has_header(req, "x-test-cut-after", &s->cut_after);
        const AjGwHeader *f = aj_gw_header_find(req->headers, req->n_headers, "x-test-filter");
        if (f)
                snprintf(s->filter, sizeof(s->filter), "%.*s", (int)f->value_len, f->value);
}

static void filter(void *u, AjGatewayCall *call, const char *buf, size_t n, bool final, AjGatewaySink *sink)
{
        CallState *s = call->data;
        if (s && strcmp(s->filter, "hold") == 0) {
                char *h = realloc(s->held, s->n_held + n + 1);
                if (!h)
                        return;
                memcpy(h + s->n_held, buf, n);
                s->held = h;
                s->n_held += n;
                if (final)
                        aj_gateway_sink_write(sink, s->held, s->n_held);
                return;
        }
        char tmp[16384];
        for (size_t off = 0; off < n; off += sizeof(tmp)) {
                size_t k = n - off < sizeof(tmp) ? n - off : sizeof(tmp);
                for (size_t i = 0; i < k; i++)
                        tmp[i] = s && strcmp(s->filter, "upper") == 0 && buf[off + i] >= 'a' && buf[off + i] <= 'z'
                                         ? (char)(buf[off + i] - 32)
                                         : buf[off + i];
                aj_gateway_sink_write(sink, tmp, k);
        }
}

static void on_head(void *u, AjGatewayCall *call, unsigned status, const AjGwHeader *h, size_t n)
{
        CallState *s = call->data;
        if (!s)
                return;
        s->status = status;
        if (s->llm) {
                const AjGwHeader *ct = aj_gw_header_find(h, n, "content-type");
                char type[128] = "";
                if (ct)
                        snprintf(type, sizeof(type), "%.*s", (int)ct->value_len, ct->value);
                aj_llm_call_response_start(s->llm, (int)status, ct ? type : NULL);
        }
}

static AjGatewayFlow on_bytes(void *u, AjGatewayCall *call, const char *buf, size_t n)
{
        CallState *s = call->data;
        if (!s)
                return AJ_GATEWAY_CONTINUE;
        s->seen += n;
        if (s->llm)
                (void)aj_llm_call_response_data(s->llm, buf, n);
        return s->cut_after && s->seen > s->cut_after ? AJ_GATEWAY_CUT : AJ_GATEWAY_CONTINUE;
}

static void on_done(void *u, AjGatewayCall *call, AjGatewayOutcome outcome, uint64_t latency_ns)
{
        static const char *const names[] = { "completed", "cut", "failed", "refused" };
        CallState *s = call->data;
        char tokens[64] = "";
        if (s && s->llm) {
                aj_llm_call_response_end(s->llm);
                json_t *ev = aj_llm_call_to_json(s->llm);
                char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
                AjLlmCharge ch;
                aj_llm_call_charge(s->llm, &ch);
                snprintf(tokens, sizeof(tokens), " tokens=%llu/%llu", (unsigned long long)ch.input,
                         (unsigned long long)ch.output);
                free(text);
                json_decref(ev);
                aj_llm_call_free(s->llm);
        }
        fprintf(logf_, "id=%llu provider=%s outcome=%s status=%u path=%s%s%s\n", (unsigned long long)call->id,
                call->provider->name, names[outcome], s ? s->status : 0, call->path, tokens,
                call->agent_left ? " agent_left" : "");
        fflush(logf_);
        if (s)
                free(s->held);
        free(s);
}

static int parse_provider(char *spec, AjGatewayProvider *p)
{
        char *f[5] = { 0 };
        int n = 0;
        for (char *t = strtok(spec, ","); t && n < 5; t = strtok(NULL, ","))
                f[n++] = t;
        if (n < 4)
                return -EINVAL;
        *p = (AjGatewayProvider){ .name = f[0],
                                  .api = strcmp(f[1], "openai") == 0 ? AJ_GATEWAY_API_OPENAI : AJ_GATEWAY_API_ANTHROPIC,
                                  .url = f[2],
                                  .credential = f[3],
                                  .ca_file = f[4] };
        return 0;
}

static int listen_loopback(uint16_t *ret_port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0)
                return -errno;
        *ret_port = ntohs(a.sin_port);
        return fd;
}

int main(int argc, char **argv)
{
        AjGatewayProvider providers[8];
        size_t n = 0;
        const char *port_file = NULL, *log_file = NULL;
        AjGatewayOptions opts = { 0 };
        bool use_filter = false;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--port-file") == 0)
                        port_file = argv[i + 1];
                else if (strcmp(argv[i], "--log") == 0)
                        log_file = argv[i + 1];
                else if (strcmp(argv[i], "--max-body") == 0)
                        opts.max_body = strtoull(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--response-timeout-ms") == 0)
                        opts.response_timeout_ms = strtoull(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--filter") == 0)
                        use_filter = true;
                else if (strcmp(argv[i], "--meter") == 0)
                        meter = true;
                else if (strcmp(argv[i], "--max-connections") == 0)
                        opts.max_connections = (unsigned)strtoul(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--provider") == 0 && n < 8 && parse_provider(argv[i + 1], &providers[n]) == 0)
                        n++;
                else {
                        fprintf(stderr, "usage: see the top of gateway-relay-harness.c\n");
                        return 2;
                }
        }
        if (!port_file || !log_file || !(logf_ = fopen(log_file, "ae")))
                return 2;
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        uint16_t port = 0;
        int fd = listen_loopback(&port);
        if (fd < 0)
                return 1;
        AjGatewayObserver obs = { .on_request = on_request,
                                  .on_response_head = on_head,
                                  .on_response_bytes = on_bytes,
                                  .on_done = on_done,
                                  .filter = use_filter ? filter : NULL };
        AjGateway *gw = NULL;
        AjError err = {};
        int r = aj_gateway_new(fd, providers, n, &obs, &opts, &gw, &err);
        if (r < 0) {
                fprintf(stderr, "gateway: %s (%s)\n", err.message ? err.message : "failed", strerror(-r));
                return 1;
        }
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *pf = fopen(tmp, "we");
        if (!pf)
                return 1;
        fprintf(pf, "%u\n", port);
        fclose(pf);
        rename(tmp, port_file);
        while (!stop) {
                struct pollfd p = { .fd = aj_gateway_fd(gw), .events = POLLIN };
                if (poll(&p, 1, 1000) > 0 && aj_gateway_dispatch(gw) < 0)
                        break;
        }
        aj_gateway_free(gw);
        fclose(logf_);
        return 0;
}
