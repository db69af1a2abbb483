/* SPDX-License-Identifier: Apache-2.0 */
/* The diff of a run's chain and its replay's, verdict by verdict (replay.h). Pure. */
#include "replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macros.h"

/* One chain read into what the diff compares: each object maps a subject to
 * {"verdict", "seq"} (subjects in the order they appeared: JSON objects keep it). The
 * command's exit status is a subject too: a replay that ends otherwise has changed. */
typedef struct {
        json_t *tools, *hosts, *syscalls, *caps, *models, *exits;
        json_t *by_call; /* tool call id -> subject */
        json_t *counts;  /* tool key -> occurrences so far */
        json_t *summary;
} Chain;

static void chain_done(Chain *c)
{
        json_decref(c->tools);
        json_decref(c->hosts);
        json_decref(c->syscalls);
        json_decref(c->caps);
        json_decref(c->models);
        json_decref(c->exits);
        json_decref(c->by_call);
        json_decref(c->counts);
        json_decref(c->summary);
}

static const char *str(json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "";
}

static json_int_t seq_of(json_t *ev) { return json_integer_value(json_object_get(ev, "seq")); }

static int set_verdict(json_t *map, const char *subject, const char *verdict, json_int_t seq, const char *reason)
{
        json_t *v = json_pack("{s:s, s:I}", "verdict", verdict, "seq", seq);
        if (!v)
                return -ENOMEM;
        if (reason && *reason)
                json_object_set_new(v, "reason", json_string(reason));
        return json_object_set_new(map, subject, v) < 0 ? -ENOMEM : 0;
}

static void add_int(json_t *o, const char *key, json_int_t n)
{
        json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + n));
}

static int on_tool_request(Chain *c, json_t *ev)
{
        const char *name = str(ev, "gen_ai.tool.name"), *sha = str(ev, "arguments_sha256");
        char key[512];
        snprintf(key, sizeof(key), "%s %.12s", name, sha);
        json_int_t n = json_integer_value(json_object_get(c->counts, key)) + 1;
        json_object_set_new(c->counts, key, json_integer(n));
        char subject[560];
        if (n > 1)
                snprintf(subject, sizeof(subject), "%s #%lld", key, (long long)n);
        else
                snprintf(subject, sizeof(subject), "%s", key);
        add_int(c->summary, "tool_calls", 1);
        const char *id = str(ev, "gen_ai.tool.call.id");
        if (json_object_set_new(c->by_call, id, json_string(subject)) < 0)
                return -ENOMEM;
        return set_verdict(c->tools, subject, "none", seq_of(ev), NULL);
}

static int on_tool_verdict(Chain *c, json_t *ev, bool held)
{
        const char *subject = json_string_value(json_object_get(c->by_call, str(ev, "gen_ai.tool.call.id")));
        if (!subject)
                return 0; /* a verdict without its request: nothing to compare it with */
        const char *now = str(json_object_get(c->tools, subject), "verdict");
        if (held)
                return set_verdict(c->tools, subject, "held", seq_of(ev), NULL);
        if (streq(now, "held"))
                return 0; /* held stays the verdict: an operator's answer is not the profile's */
        return set_verdict(c->tools, subject, str(ev, "verdict"), seq_of(ev), str(ev, "reason"));
}

static int on_host(Chain *c, json_t *ev, bool denied)
{
        const char *host = str(ev, "host");
        if (!*host)
                return 0;
        char subject[300];
        snprintf(subject, sizeof(subject), "%s:%lld", host, (long long)json_integer_value(json_object_get(ev, "port")));
        const char *now = str(json_object_get(c->hosts, subject), "verdict");
        if (streq(now, "denied"))
                return 0;
        if (!denied && *now)
                return 0;
        return set_verdict(c->hosts, subject, denied ? "denied" : "allowed", seq_of(ev), str(ev, "reason"));
}

static int on_llm_request(Chain *c, json_t *ev, bool is_replay)
{
        char subject[200];
        json_t *replay = json_object_get(ev, "replay");
        const char *match = str(replay, "match");
        json_int_t call = json_integer_value(json_object_get(is_replay ? replay : ev, "call_id"));
        const char *verdict = str(ev, "verdict");
        if (is_replay && streq(match, "miss")) {
                snprintf(subject, sizeof(subject), "%s %s request %.12s", str(ev, "provider"), str(ev, "path"),
                         str(ev, "request_sha256"));
                return set_verdict(c->models, subject, "miss", seq_of(ev), NULL);
        }
        if (is_replay && !*match) {
                /* refused before the recording was asked (a cap, a bad body): by digest */
                snprintf(subject, sizeof(subject), "%s %s request %.12s", str(ev, "provider"), str(ev, "path"),
                         str(ev, "request_sha256"));
                return set_verdict(c->models, subject, verdict, seq_of(ev), str(ev, "reason"));
        }
        if (!is_replay && !streq(verdict, "allow")) {
                snprintf(subject, sizeof(subject), "%s %s request %.12s", str(ev, "provider"), str(ev, "path"),
                         str(ev, "request_sha256"));
                return set_verdict(c->models, subject, verdict, seq_of(ev), str(ev, "reason"));
        }
        snprintf(subject, sizeof(subject), "recorded call %lld (%s %s)", (long long)call, str(ev, "provider"),
                 str(ev, "path"));
        return set_verdict(c->models, subject, streq(verdict, "allow") ? "served" : verdict, seq_of(ev),
                           str(ev, "reason"));
}

static void on_llm_response(Chain *c, json_t *ev)
{
        if (json_is_false(json_object_get(ev, "metered")))
                return;
        add_int(c->summary, "model_calls", 1);
        add_int(c->summary, "input_tokens", json_integer_value(json_object_get(ev, "gen_ai.usage.input_tokens")));
        add_int(c->summary, "output_tokens", json_integer_value(json_object_get(ev, "gen_ai.usage.output_tokens")));
        json_t *cost = json_object_get(c->summary, "cost_usd");
        json_object_set_new(c->summary, "cost_usd",
                            json_real(json_number_value(cost) + json_number_value(json_object_get(ev, "cost_usd"))));
}

static int read_chain(json_t *events, bool is_replay, Chain *c)
{
        *c = (Chain){ .tools = json_object(),
                      .hosts = json_object(),
                      .syscalls = json_object(),
                      .caps = json_object(),
                      .models = json_object(),
                      .exits = json_object(),
                      .by_call = json_object(),
                      .counts = json_object(),
                      .summary = json_pack("{s:n, s:n, s:i, s:i, s:i, s:f, s:i}", "run", "exit", "model_calls", 0,
                                           "input_tokens", 0, "output_tokens", 0, "cost_usd", 0.0, "tool_calls", 0) };
        if (!c->tools || !c->hosts || !c->syscalls || !c->caps || !c->models || !c->exits || !c->by_call ||
            !c->counts || !c->summary)
                return -ENOMEM;
        size_t i;
        json_t *ev;
        json_array_foreach (events, i, ev) {
                const char *type = str(ev, "type");
                int r = 0;
                if (i == 0 && json_is_string(json_object_get(ev, "run")))
                        json_object_set(c->summary, "run", json_object_get(ev, "run"));
                if (streq(type, "tool.request"))
                        r = on_tool_request(c, ev);
                else if (streq(type, "tool.verdict"))
                        r = on_tool_verdict(c, ev, false);
                else if (streq(type, "approval.requested") && json_object_get(ev, "gen_ai.tool.call.id"))
                        r = on_tool_verdict(c, ev, true);
                else if (streq(type, "net.denied"))
                        r = on_host(c, ev, true);
                else if (streq(type, "net.connect"))
                        r = on_host(c, ev, streq(str(ev, "verdict"), "denied"));
                else if (streq(type, "seccomp.denied") && *str(ev, "syscall") &&
                         !json_object_get(c->syscalls, str(ev, "syscall")))
                        r = set_verdict(c->syscalls, str(ev, "syscall"), "denied", seq_of(ev), NULL);
                else if (streq(type, "cap.breach") && *str(ev, "cap") && !json_object_get(c->caps, str(ev, "cap")))
                        r = set_verdict(c->caps, str(ev, "cap"), "breach", seq_of(ev), NULL);
                else if (streq(type, "llm.request"))
                        r = on_llm_request(c, ev, is_replay);
                else if (streq(type, "llm.response"))
                        on_llm_response(c, ev);
                else if (streq(type, "run.exit")) {
                        json_t *status = json_object_get(ev, "status");
                        char verdict[24] = "?";
                        if (json_is_integer(status))
                                snprintf(verdict, sizeof(verdict), "%lld", (long long)json_integer_value(status));
                        json_object_set(c->summary, "exit", status);
                        r = set_verdict(c->exits, "the command's exit status", verdict, seq_of(ev), str(ev, "reason"));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_change(json_t *changes, const char *kind, const char *subject, json_t *before, json_t *after)
{
        json_t *ch = json_pack("{s:s, s:s, s:s, s:s, s:O?, s:O?}", "kind", kind, "subject", subject, "before",
                               before ? str(before, "verdict") : "absent", "after",
                               after ? str(after, "verdict") : "absent", "seq_before",
                               before ? json_object_get(before, "seq") : NULL, "seq_after",
                               after ? json_object_get(after, "seq") : NULL);
        if (!ch)
                return -ENOMEM;
        if (!json_object_get(ch, "seq_before"))
                json_object_set_new(ch, "seq_before", json_null());
        if (!json_object_get(ch, "seq_after"))
                json_object_set_new(ch, "seq_after", json_null());
        const char *reason = after ? str(after, "reason") : "";
        if (*reason)
                json_object_set_new(ch, "reason", json_string(reason));
        return json_array_append_new(changes, ch) < 0 ? -ENOMEM : 0;
}

/* Every subject of either side whose verdict differs. */
static int compare(json_t *changes, const char *kind, json_t *a, json_t *b)
{
        const char *k;
        json_t *v;
        json_object_foreach (a, k, v) {
                json_t *w = json_object_get(b, k);
                if ((!w || !streq(str(v, "verdict"), str(w, "verdict"))) && add_change(changes, kind, k, v, w) < 0)
                        return -ENOMEM;
        }
        json_object_foreach (b, k, v)
                if (!json_object_get(a, k) && add_change(changes, kind, k, NULL, v) < 0)
                        return -ENOMEM;
        return 0;
}

int aj_replay_diff_event(json_t *ev, bool first, json_t **ret)
{
        /* What read_chain and the parts it calls look at, and nothing else. */
        static const char *const types[] = { "tool.request", "tool.verdict",   "approval.requested", "net.denied",
                                             "net.connect",  "seccomp.denied", "cap.breach",         "llm.request",
                                             "llm.response", "run.exit" };
        static const char *const members[] = { "type",
                                               "seq",
                                               "run",
                                               "gen_ai.tool.name",
                                               "gen_ai.tool.call.id",
                                               "arguments_sha256",
                                               "verdict",
                                               "reason",
                                               "host",
                                               "port",
                                               "syscall",
                                               "cap",
                                               "provider",
                                               "path",
                                               "request_sha256",
                                               "call_id",
                                               "replay",
                                               "metered",
                                               "gen_ai.usage.input_tokens",
                                               "gen_ai.usage.output_tokens",
                                               "cost_usd",
                                               "status" };
        const char *type = str(ev, "type");
        bool keep = first;
        for (size_t i = 0; !keep && i < ARRAY_SIZE(types); i++)
                keep = streq(type, types[i]);
        *ret = NULL;
        if (!keep)
                return 0;
        json_auto_t *kept = json_object();
        if (!kept)
                return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(members); i++) {
                json_t *v = json_object_get(ev, members[i]);
                if (v && json_object_set(kept, members[i], v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(kept);
        return 0;
}

int aj_replay_diff(json_t *original, json_t *replay, json_t **ret)
{
        if (!json_is_array(original) || !json_is_array(replay))
                return -EINVAL;
        Chain a, b;
        int r = read_chain(original, false, &a);
        int q = read_chain(replay, true, &b);
        json_t *changes = json_array();
        if (r >= 0 && q >= 0 && changes) {
                /* The replay's model calls are the recording's (by recorded call id): the
                 * original's are subjects by their own call id. */
                r = compare(changes, "tool", a.tools, b.tools);
                if (r >= 0)
                        r = compare(changes, "host", a.hosts, b.hosts);
                if (r >= 0)
                        r = compare(changes, "syscall", a.syscalls, b.syscalls);
                if (r >= 0)
                        r = compare(changes, "cap", a.caps, b.caps);
                if (r >= 0)
                        r = compare(changes, "model_call", a.models, b.models);
                if (r >= 0)
                        r = compare(changes, "exit", a.exits, b.exits);
        }
        json_t *doc = NULL;
        if (r >= 0 && q >= 0 && changes)
                doc = json_pack("{s:b, s:O, s:O, s:O}", "changed", json_array_size(changes) > 0, "changes", changes,
                                "original", a.summary, "replay", b.summary);
        json_decref(changes);
        chain_done(&a);
        chain_done(&b);
        if (!doc)
                return r < 0 ? r : q < 0 ? q : -ENOMEM;
        *ret = doc;
        return 0;
}
