/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy's host approvals (network.ask, see proxy-internal.h): a connection to a host
 * the allowlist refuses but an ask pattern matches is held (state ST_ASKING: no reply, no
 * upstream socket) until an operator decides (aj_proxy_decide), the approval's deadline
 * passes (refused), its client goes away, or the run ends (cancelled).
 *
 * Connections to the same host and port that arrive while one waits share its approval
 * ("net-N"): one decision answers them all, so an agent that opens several connections
 * at once (a package manager's parallel downloads) asks its operator once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "proxy-internal.h"
#include "util/clock.h"
#include "util/format.h"

static void ask_id(const Ask *a, char *buf, size_t size)
{
        snprintf(buf, size, AJ_NET_APPROVAL_PREFIX "%" PRIu64, a->n);
}

static uint64_t ask_timeout_ns(const AjProxy *p)
{
        return p->opts.ask_timeout_ns ? p->opts.ask_timeout_ns : AJ_PROXY_ASK_TIMEOUT_NS;
}

/* {"kind", "id", "host", "port", "proto", "pattern", "process"...}: what approval events
 * and the approval request say about the host. */
static json_t *ask_json(const AjProxy *p, const Ask *a)
{
        char id[32], t[32];
        ask_id(a, id, sizeof(id));
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "kind", "net", "id", id, "host", a->host, "port",
                              (int)a->port, "proto", a->proto, "pattern", a->pattern, "timeout",
                              aj_format_duration(ask_timeout_ns(p), t, sizeof(t)));
        json_t *process = a->process ? json_incref(a->process)
                                     : json_pack("{s:n, s:s}", "pid", "note",
                                                 "the proxy cannot tell which process connected");
        if (o && json_object_set_new(o, "process", process) < 0) {
                json_decref(o);
                o = NULL;
        } else if (!o) {
                json_decref(process);
        }
        return o;
}

static int emit_checked(AjProxy *p, const char *type, json_t *fields)
{
        if (!fields)
                return -ENOMEM;
        if (!p->hooks || !p->hooks->emit) {
                json_decref(fields);
                return 0;
        }
        return p->hooks->emit(p->hooks->userdata, type, fields);
}

/* The end of a held host (a decision, its deadline, a cancel): one per approval (at most
 * AJ_PROXY_MAX_ASKS at once), recorded whatever the agent left of its share of the log. */
static int record(AjProxy *p, const char *type, json_t *fields)
{
        if (!fields)
                return -ENOMEM;
        if (!p->hooks || !p->hooks->record)
                return emit_checked(p, type, fields);
        return p->hooks->record(p->hooks->userdata, type, fields);
}

static void ask_free(AjProxy *p, Ask *a)
{
        aj_loop_timer_stop(&a->timer);
        json_decref(a->process);
        *a = (Ask){ 0 };
        p->n_asks--;
}

/* Records the decision (approved, denied, timeout, cancelled), then lets each connection
 * waiting for it go on or refuses it. `text` is the refusal's reason. */
static void finish(AjProxy *p, Ask *a, const char *decision, bool always, const char *by, const char *reason)
{
        bool approve = streq(decision, "approved");
        char id[32], text[300], rule[AJ_NET_HOST_MAX + 16] = "";
        ask_id(a, id, sizeof(id));

        if (approve && always) {
                /* Whether the grant can be kept is known before the event says so; it is
                 * added only once the event is written. */
                AjNetRule check;
                const char *why = NULL;
                snprintf(rule, sizeof(rule), strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host, a->port);
                if ((!p->granted && aj_net_policy_parse(NULL, &p->granted, NULL, NULL) < 0) ||
                    p->granted->n_rules >= AJ_NET_MAX_RULES || aj_net_rule_parse(rule, &check, &why) < 0)
                        always = false; /* the connections still go on; the event says it was not kept */
                else
                        aj_net_rule_done(&check);
        }
        json_t *ev = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:I}", "kind", "net", "id", id, "host", a->host, "port",
                               (int)a->port, "decision", decision, "by", by, "connections", (json_int_t)a->held);
        if (ev && reason)
                json_object_set_new(ev, "reason", json_string(reason));
        if (ev && approve)
                json_object_set_new(ev, "always", json_boolean(always));
        if (ev && approve && always)
                json_object_set_new(ev, "rule", json_string(rule));
        int r = record(p, "approval", ev);
        if (r < 0 && approve)
                approve = false; /* an approval the chain does not hold lets nothing through */
        if (approve && always) {
                const char *why = NULL;
                (void)aj_net_policy_add(p->granted, rule, &why); /* checked above: only ENOMEM is left */
        }

        if (streq(decision, "timeout"))
                snprintf(text, sizeof(text), "no approval for %.128s port %u within %s", a->host, a->port, reason);
        else if (streq(decision, "cancelled"))
                snprintf(text, sizeof(text), "approval %s cancelled: %.128s", id, reason);
        else if (!approve && streq(decision, "approved"))
                snprintf(text, sizeof(text), "approval %s could not be recorded", id);
        else
                snprintf(text, sizeof(text), "%.64s port %u denied by %.32s%s%.128s", a->host, a->port, by,
                         reason ? ": " : "", reason ? reason : "");

        /* Detach first: what proceeding or refusing does to a connection (closing it) must
         * not find the approval still there. */
        unsigned left = a->held;
        ask_free(p, a);
        for (unsigned s = 0; s < p->n_slots && left > 0; s++) {
                Conn *c = p->slots[s];
                if (!c || c->state != ST_ASKING || c->ask != a)
                        continue;
                c->ask = NULL;
                left--;
                p->held--;
                if (approve) {
                        c->approved = true;
                        snprintf(c->rule, sizeof(c->rule), "approved %s by %.32s", id, by);
                        proxy_proceed(c);
                } else {
                        AjNetVerdict v = { .rule = -1 };
                        snprintf(v.reason, sizeof(v.reason), "%s", text);
                        if (streq(decision, "cancelled"))
                                c->error = "cancelled";
                        proxy_deny(c, &v, NULL);
                }
        }
}

static void on_ask_timeout(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)now_ns;
        AjProxy *p = userdata;
        Ask *a = (Ask *)((char *)t - offsetof(Ask, timer));
        char d[32];
        finish(p, a, "timeout", false, "timeout", aj_format_duration(ask_timeout_ns(p), d, sizeof(d)));
}

bool proxy_granted(AjProxy *p, const char *host, uint16_t port, AjNetVerdict *ret)
{
        if (!p->granted || p->granted->n_rules == 0)
                return false;
        AjNetVerdict v;
        aj_net_check_host(p->granted, host, port, &v);
        if (!v.allowed)
                return false;
        snprintf(v.reason, sizeof(v.reason), "%s port %u approved for the rest of the run (\"%s\")", host, port,
                 p->granted->rules[v.rule].text);
        *ret = v;
        return true;
}

static Ask *find_ask(AjProxy *p, const char *host, uint16_t port)
{
        for (size_t i = 0; p->n_asks > 0 && i < AJ_PROXY_MAX_ASKS; i++)
                if (p->asks[i].used && p->asks[i].port == port && streq(p->asks[i].host, host))
                        return &p->asks[i];
        return NULL;
}

static void refuse_busy(Conn *c, const char *what, unsigned max)
{
        AjNetVerdict v = { .rule = -1 };
        snprintf(v.reason, sizeof(v.reason),
                 "%s port %u needs an operator's approval, but too many %s are waiting (at most %u)", c->host, c->port,
                 what, max);
        proxy_deny(c, &v, NULL);
}

bool proxy_ask(Conn *c, const AjNetVerdict *v)
{
        AjProxy *p = c->p;
        if (v->reserved || !p->opts.ask)
                return false;
        int i = aj_net_ask_match(p->opts.ask, c->host, c->port);
        if (i < 0)
                return false;

        /* The name as the allowlist would compare it: one approval per host, however spelt. */
        char norm[AJ_NET_HOST_MAX + 1];
        const char *why;
        if (!strchr(c->host, ':') && aj_net_host_normalize(c->host, strlen(c->host), norm, &why) >= 0)
                memcpy(c->host, norm, strlen(norm) + 1);

        if (p->held >= AJ_PROXY_MAX_HELD) {
                refuse_busy(c, "connections", AJ_PROXY_MAX_HELD);
                return true;
        }
        Ask *a = find_ask(p, c->host, c->port);
        if (!a) {
                for (size_t k = 0; !a && k < AJ_PROXY_MAX_ASKS; k++)
                        if (!p->asks[k].used)
                                a = &p->asks[k];
                if (!a) {
                        refuse_busy(c, "hosts", AJ_PROXY_MAX_ASKS);
                        return true;
                }
                *a = (Ask){ .used = true,
                            .n = ++p->next_ask,
                            .order = ++p->ask_order,
                            .since_ns = aj_now_realtime_ns(),
                            .port = c->port,
                            .proto = c->socks        ? "socks5"
                                     : c->is_connect ? "http-connect"
                                                     : "http" };
                snprintf(a->host, sizeof(a->host), "%s", c->host);
                snprintf(a->pattern, sizeof(a->pattern), "%s", p->opts.ask->rules[i].text);
                p->n_asks++;
                aj_loop_timer_init(p->loop, &a->timer, on_ask_timeout, p);
                if (p->opts.peer_process)
                        a->process = p->opts.peer_process(p->opts.peer_userdata, c->cfd);
                /* Armed before the event: a connection that could never time out is not held. */
                json_t *call = ask_json(p, a);
                int r = aj_loop_timer_set(&a->timer, aj_loop_now(p->loop) + ask_timeout_ns(p));
                if (r >= 0)
                        r = emit_checked(p, "approval.requested", json_incref(call));
                if (r < 0) {
                        /* Fail closed: an approval nobody can see is refused. */
                        json_decref(call);
                        ask_free(p, a);
                        AjNetVerdict d = *v;
                        snprintf(d.reason, sizeof(d.reason),
                                 "%s port %u needs an operator's approval, which could not be recorded", c->host,
                                 c->port);
                        proxy_deny(c, &d, NULL);
                        return true;
                }
                if (call && p->hooks && p->hooks->approval_requested)
                        p->hooks->approval_requested(p->hooks->userdata, call);
                json_decref(call);
        }
        a->held++;
        p->held++;
        c->ask = a;
        c->state = ST_ASKING;
        /* The approval's deadline is the connection's now. */
        aj_loop_timer_stop(&c->deadline);
        return true;
}

void proxy_ask_detach(Conn *c)
{
        Ask *a = c->ask;
        if (!a)
                return;
        AjProxy *p = c->p;
        c->ask = NULL;
        p->held--;
        if (--a->held > 0)
                return;
        /* Its last connection went away: nothing is left to decide. */
        char id[32];
        ask_id(a, id, sizeof(id));
        (void)record(p, "approval",
                     json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "kind", "net", "id", id, "host", a->host, "port",
                               (int)a->port, "decision", "cancelled", "reason", "the client closed the connection"));
        ask_free(p, a);
}

void aj_proxy_cancel_asks(AjProxy *p, const char *reason)
{
        for (size_t i = 0; p->n_asks > 0 && i < AJ_PROXY_MAX_ASKS; i++)
                if (p->asks[i].used)
                        finish(p, &p->asks[i], "cancelled", false, "agentjail", reason);
}

int aj_proxy_decide(AjProxy *p, const char *id, bool approve, bool always, const char *by, const char *reason,
                    json_t **ret, AjError *ret_error)
{
        Ask *a = NULL;
        for (size_t i = 0; p->n_asks > 0 && i < AJ_PROXY_MAX_ASKS && !a; i++) {
                char have[32];
                if (!p->asks[i].used)
                        continue;
                ask_id(&p->asks[i], have, sizeof(have));
                if (streq(have, id))
                        a = &p->asks[i];
        }
        if (!a)
                return aj_error_set(ret_error, -ENOENT, "no host approval \"%.128s\" is pending", id);
        if (always && !approve)
                return aj_error_set(ret_error, -EINVAL, "--always goes with approve, not deny");
        if (ret)
                *ret = json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:I}", "id", id, "kind", "net", "host", a->host,
                                 "port", (int)a->port, "decision", approve ? "approved" : "denied", "always", always,
                                 "connections", (json_int_t)a->held);
        finish(p, a, approve ? "approved" : "denied", always, by, reason);
        return 0;
}

static int cmp_ask(const void *x, const void *y)
{
        const Ask *a = *(const Ask *const *)x, *b = *(const Ask *const *)y;
        return a->order < b->order ? -1 : a->order > b->order;
}

json_t *aj_proxy_pending(AjProxy *p)
{
        json_t *list = json_array();
        const Ask *sorted[AJ_PROXY_MAX_ASKS];
        size_t n = 0;
        for (size_t i = 0; i < AJ_PROXY_MAX_ASKS; i++)
                if (p->asks[i].used)
                        sorted[n++] = &p->asks[i];
        qsort(sorted, n, sizeof(sorted[0]), cmp_ask);
        uint64_t now = aj_now_realtime_ns(), mono = aj_loop_now(p->loop);
        for (size_t i = 0; list && i < n; i++) {
                const Ask *a = sorted[i];
                char ts[40];
                json_t *o = ask_json(p, a);
                uint64_t deadline = a->timer.deadline_ns;
                if (o &&
                    (json_object_set_new(o, "state", json_string("awaiting_approval")) < 0 ||
                     json_object_set_new(o, "connections", json_integer((json_int_t)a->held)) < 0 ||
                     json_object_set_new(o, "since", json_string(aj_format_timestamp(a->since_ns, ts, sizeof(ts)))) <
                             0 ||
                     json_object_set_new(o, "age_s",
                                         json_real(now > a->since_ns ? (double)(now - a->since_ns) / 1e9 : 0.0)) < 0 ||
                     json_object_set_new(o, "timeout_in_s",
                                         json_real(deadline > mono ? (double)(deadline - mono) / 1e9 : 0.0)) < 0)) {
                        json_decref(o);
                        o = NULL;
                }
                if (!o || json_array_append_new(list, o) < 0) {
                        json_decref(list);
                        return NULL;
                }
        }
        return list;
}
