/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay's responses to the agent: relayed ones (head rewritten, body forwarded as it
 * arrives, through the observer), errors the relay makes itself in the provider's shape,
 * and the end of each call.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gateway/relay-internal.h"
#include "http-parse.h"
#include "util/clock.h"

char *aj_gateway_error_body(AjGatewayApi api, const char *type, const char *code, const char *message)
{
        json_t *o;
        if (api == AJ_GATEWAY_API_OPENAI)
                o = json_pack("{s:{s:s, s:s, s:s?}}", "error", "message", message, "type", type, "code", code);
        else
                o = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", message);
        if (!o)
                return NULL;
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

void gw_call_end(GwConn *c, AjGatewayOutcome outcome)
{
        if (!c->in_call)
                return;
        c->in_call = false;
        AjGateway *gw = c->gw;
        uint64_t latency = aj_now_monotonic_ns() - c->call.started_ns;
        if (gw->obs.on_done)
                gw->obs.on_done(gw->obs.userdata, &c->call, outcome, latency);
}

int gw_conn_error(GwConn *c, int api, unsigned status, const char *type, const char *code, const char *message,
                  bool keep)
{
        /* api < 0: Anthropic's shape, whose "error" object OpenAI's SDKs read as well. */
        _cleanup_free_ char *body = aj_gateway_error_body(api < 0 ? AJ_GATEWAY_API_ANTHROPIC : (AjGatewayApi)api, type,
                                                          code, message);
        if (!body)
                return -ENOMEM;
        keep = keep && c->rq.keep_alive;
        int r = gw_buf_printf(&c->out, GW_OUT_MAX,
                              "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                              status, aj_http_reason_phrase(status), strlen(body), keep ? "" : "Connection: close\r\n",
                              body);
        if (r < 0)
                return r;
        gw_conn_request_reset(c);
        c->state = keep ? C_HEAD : C_CLOSING;
        gw_conn_arm_timer(c, c->gw->opts.idle_timeout_ms);
        return 0;
}

int gw_conn_refuse(GwConn *c, int api, unsigned status, const char *type, const char *target, const char *message)
{
        AjGateway *gw = c->gw;
        if (gw->obs.on_refused)
                gw->obs.on_refused(gw->obs.userdata, c->method, target ? target : c->path, status, message);
        return gw_conn_error(c, api, status, type, NULL, message, false);
}

int gw_conn_upstream_failed(GwConn *c, unsigned status, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        gw_upstream_close(c);
        gw_call_end(c, AJ_GATEWAY_FAILED);
        if (c->head_sent) {
                /* The agent has part of a response: only an abrupt end tells it so. */
                c->state = C_CLOSING;
                return 0;
        }
        int api = (int)c->gw->providers[c->provider].pub.api;
        return gw_conn_error(c, api, status, status == 504 ? "timeout_error" : "api_error", NULL, msg, false);
}

static bool hop_by_hop(const AjGwResponseHead *h, const AjGwHeader *x)
{
        static const char *const dropped[] = { "connection",     "keep-alive", "proxy-connection", "transfer-encoding",
                                               "content-length", "te",         "trailer",          "upgrade" };
        for (size_t i = 0; i < ARRAY_SIZE(dropped); i++)
                if (aj_gw_header_is(x, dropped[i]))
                        return true;
        for (size_t i = 0; i < h->n_headers; i++)
                if (aj_gw_header_is(&h->headers[i], "connection") && x->name_len < 64) {
                        char name[64];
                        memcpy(name, x->name, x->name_len);
                        name[x->name_len] = 0;
                        if (aj_gw_value_has_token(h->headers[i].value, h->headers[i].value_len, name))
                                return true;
                }
        return false;
}

int gw_conn_response_head(GwConn *c, const AjGwResponseHead *h)
{
        AjGateway *gw = c->gw;
        const char *key = gw->providers[c->provider].pub.credential;
        c->call.first_byte_ns = aj_now_monotonic_ns();
        if (gw->obs.on_response_head)
                gw->obs.on_response_head(gw->obs.userdata, &c->call, h->status, h->headers, h->n_headers);

        bool has_body = h->body != AJ_GW_BODY_NONE;
        bool known_length = h->body == AJ_GW_BODY_LENGTH && !gw->obs.filter;
        if (has_body && !known_length) {
                c->client_chunked = c->rq.minor == 1;
                if (!c->client_chunked)
                        c->rq.keep_alive = false; /* HTTP/1.0: the end of the body is the close */
        }
        GwBuf *o = &c->out;
        /* A provider echoing the key (a header it should not have, its reason phrase) never
         * reaches the agent. */
        size_t k = strlen(key);
        bool quoted = memmem(h->reason, h->reason_len, key, k);
        int r = gw_buf_printf(o, GW_OUT_MAX, "HTTP/1.1 %u %.*s\r\n", h->status,
                              quoted ? (int)strlen(aj_http_reason_phrase(h->status)) : (int)h->reason_len,
                              quoted ? aj_http_reason_phrase(h->status) : h->reason);
        for (size_t i = 0; r >= 0 && i < h->n_headers; i++) {
                const AjGwHeader *x = &h->headers[i];
                if (hop_by_hop(h, x) || memmem(x->value, x->value_len, key, k) || memmem(x->name, x->name_len, key, k))
                        continue;
                r = gw_buf_printf(o, GW_OUT_MAX, "%.*s: %.*s\r\n", (int)x->name_len, x->name, (int)x->value_len,
                                  x->value);
        }
        if (r >= 0 && known_length)
                r = gw_buf_printf(o, GW_OUT_MAX, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
        else if (r >= 0 && c->client_chunked)
                r = gw_buf_printf(o, GW_OUT_MAX, "Transfer-Encoding: chunked\r\n");
        else if (r >= 0 && !has_body && h->status >= 200 && h->status != 204 && h->status != 304 &&
                 !streq(c->method, "HEAD"))
                r = gw_buf_printf(o, GW_OUT_MAX, "Content-Length: 0\r\n");
        if (r >= 0)
                r = gw_buf_printf(o, GW_OUT_MAX, "%s\r\n", c->rq.keep_alive ? "" : "Connection: close\r\n");
        if (r < 0)
                return r;
        /* Not flushed here: it leaves with the body bytes read with it (up_pump()). */
        c->head_sent = true;
        return 0;
}

static int emit_raw(GwConn *c, const void *buf, size_t n)
{
        if (n == 0)
                return 0;
        int r = c->client_chunked ? gw_buf_printf(&c->out, GW_OUT_MAX, "%zx\r\n", n) : 0;
        if (r >= 0)
                r = gw_buf_append(&c->out, buf, n, GW_OUT_MAX);
        if (r >= 0 && c->client_chunked)
                r = gw_buf_append(&c->out, "\r\n", 2, GW_OUT_MAX);
        return r;
}

/* The credential is the supervisor's, never the agent's: a provider quoting it in a body
 * (an error repeating the header it got, a TRACE, a debug page; headers are dropped in
 * gw_conn_response_head()) has each occurrence replaced by as many '*', so a
 * Content-Length still holds. A piece's last bytes that may begin it are held until the
 * next piece tells, or the body ends (end: flush them). */
static int emit(GwConn *c, const void *buf, size_t n, bool end)
{
        const char *key = c->gw->providers[c->provider].pub.credential;
        size_t k = strlen(key);
        if (c->scrub_len == 0 && !memchr(buf, key[0], n))
                return emit_raw(c, buf, n); /* nothing here can begin it */
        size_t len = c->scrub_len + n;
        _cleanup_free_ char *w = malloc(len ? len : 1);
        if (!w)
                return -ENOMEM;
        if (c->scrub_len)
                memcpy(w, c->scrub_held, c->scrub_len);
        if (n)
                memcpy(w + c->scrub_len, buf, n);
        for (char *p = w; (p = memmem(p, len - (size_t)(p - w), key, k)); p += k)
                memset(p, '*', k);
        size_t hold = 0;
        for (size_t s = k - 1 < len ? k - 1 : len; !end && s > 0 && !hold; s--)
                if (w[len - s] == key[0] && memcmp(w + len - s, key, s) == 0)
                        hold = s;
        int r = emit_raw(c, w, len - hold);
        if (r < 0)
                return r;
        if (hold && !c->scrub_held && !(c->scrub_held = malloc(k)))
                return -ENOMEM;
        if (hold)
                memcpy(c->scrub_held, w + len - hold, hold);
        c->scrub_len = hold;
        return 0;
}

int aj_gateway_sink_write(AjGatewaySink *sink, const void *buf, size_t n)
{
        int r = emit(sink, buf, n, false);
        if (r < 0 && !sink->sink_error)
                sink->sink_error = r;
        return r;
}

int gw_conn_response_data(GwConn *c, const char *buf, size_t n)
{
        AjGateway *gw = c->gw;
        if (gw->obs.on_response_bytes &&
            gw->obs.on_response_bytes(gw->obs.userdata, &c->call, buf, n) == AJ_GATEWAY_CUT) {
                /* Flush what was forwarded, then close without the last chunk: the agent
                 * sees a truncated response, never a complete one. */
                gw_upstream_close(c);
                gw_call_end(c, AJ_GATEWAY_CUT_SHORT);
                c->state = C_CLOSING;
                return gw_conn_flush(c);
        }
        int r = 0;
        if (gw->obs.filter) {
                gw->obs.filter(gw->obs.userdata, &c->call, buf, n, false, c);
                r = c->sink_error;
        } else
                r = emit(c, buf, n, false);
        if (r < 0)
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: the response could not be forwarded");
        return 0; /* flushed once for all a read brought (up_pump()) */
}

int gw_conn_response_end(GwConn *c)
{
        AjGateway *gw = c->gw;
        if (gw->obs.filter && c->head_sent)
                gw->obs.filter(gw->obs.userdata, &c->call, "", 0, true, c);
        int r = c->sink_error;
        if (r >= 0 && c->scrub_len)
                r = emit(c, "", 0, true);
        if (r >= 0 && c->client_chunked)
                r = gw_buf_append(&c->out, "0\r\n\r\n", 5, GW_OUT_MAX);
        if (r < 0)
                return gw_conn_upstream_failed(c, 502, "agentjail gateway: the response could not be forwarded");
        /* Sent before the call ends, so that the call says whether the agent was still there. */
        r = gw_conn_flush(c);
        if (r < 0)
                return r;
        gw_call_end(c, AJ_GATEWAY_COMPLETED);
        bool keep = c->rq.keep_alive;
        gw_conn_request_reset(c);
        c->state = keep ? C_HEAD : C_CLOSING;
        gw_conn_arm_timer(c, gw->opts.idle_timeout_ms);
        return gw_conn_flush(c);
}
