/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An agent's hook event (src/agent-hooks.c), which the model shapes: byte 0 picks the
 * agent (bits 0-1) and --on-timeout (bit 2); the rest is the event. Checked as well,
 * for every event that parses: the broker request is one JSON line within the broker's
 * limit, and every answer fails closed: before a tool call either a decision (exit 0,
 * one JSON document on stdout) or a blocking error (exit 2, a message on stderr), never
 * anything that would let the call through by accident.
 */
#include <stdlib.h>
#include <string.h>

#include "agent-hooks.h"
#include "agentjail/broker.h"
#include "fuzz.h"

static const char *const replies[] = {
        "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"allow\", \"usage\": {}}",
        "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"allow\", \"approval\": {\"by\": \"root\"}}",
        "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"deny\", \"reason\": \"no\"}",
        "{\"id\": 1, \"v\": 1, \"ok\": true, \"verdict\": \"breach\", \"reason\": \"cap\"}",
        "{\"id\": 1, \"v\": 1, \"ok\": false, \"error\": {\"code\": \"internal\", \"message\": \"x\"}}",
        "{\"id\": 2, \"v\": 1, \"ok\": true, \"verdict\": \"allow\"}",
        "{\"id\": 1, \"v\": 1, \"ok\": true}",
        "garbage",
};

static void check(const AjHookEvent *ev, const AjHookAnswer *a)
{
        if (ev->kind == AJ_HOOK_EVENT_PRE) {
                if (a->status == 0) {
                        json_t *v = a->out ? json_loads(a->out, 0, NULL) : NULL;
                        if (!json_is_object(v))
                                __builtin_trap();
                        json_decref(v);
                } else if (a->status != 2 || !a->err) {
                        __builtin_trap();
                }
        } else if (a->status != 0 && a->status != 1) {
                __builtin_trap();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        AjAgentKind agent = (AjAgentKind)((data[0] & 3) % AJ_AGENT_COUNT);
        AjHookOnTimeout on_timeout = data[0] & 4 ? AJ_HOOK_ON_TIMEOUT_ASK : AJ_HOOK_ON_TIMEOUT_DENY;
        AjHookEvent ev;
        if (aj_hook_event_parse(agent, (const char *)data + 1, size - 1, &ev, NULL) < 0)
                return 0;
        char *line = NULL;
        if (aj_hook_event_request(&ev, 1, &line) == 0) {
                json_t *v = json_loads(line, 0, NULL);
                if (!json_is_object(v) || strchr(line, '\n') || strlen(line) > AJ_BROKER_MAX_LINE)
                        __builtin_trap();
                json_decref(v);
                free(line);
        }
        for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
                AjHookAnswer a = {};
                if (aj_hook_answer_reply(&ev, replies[i], 1, &a) == 0)
                        check(&ev, &a);
                aj_hook_answer_done(&a);
        }
        AjHookAnswer a = {};
        if (aj_hook_answer_timeout(&ev, on_timeout, 5, &a) == 0)
                check(&ev, &a);
        aj_hook_answer_done(&a);
        aj_hook_event_done(&ev);
        return 0;
}
