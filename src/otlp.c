/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "otlp.h"
#include "runs.h"
#include "util/macros.h"

/* OTLP/JSON AnyValue; NULL for JSON null (the attribute is left out). */
static json_t *any_value(json_t *v)
{
        char num[32];
        switch (json_typeof(v)) {
        case JSON_STRING:
                return json_pack("{s:O}", "stringValue", v);
        case JSON_INTEGER:
                /* int64 goes as a decimal string in OTLP/JSON. */
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return json_pack("{s:s}", "intValue", num);
        case JSON_REAL:
                return json_pack("{s:f}", "doubleValue", json_real_value(v));
        case JSON_TRUE:
        case JSON_FALSE:
                return json_pack("{s:b}", "boolValue", json_is_true(v));
        case JSON_ARRAY: {
                json_t *values = json_array();
                size_t i;
                json_t *e;
                json_array_foreach (v, i, e) {
                        json_t *a = any_value(e);
                        if (a)
                                json_array_append_new(values, a);
                }
                return json_pack("{s:{s:o}}", "arrayValue", "values", values);
        }
        case JSON_OBJECT: {
                json_t *kvs = json_array();
                const char *k;
                json_t *e;
                json_object_foreach (v, k, e) {
                        json_t *a = any_value(e);
                        if (a)
                                json_array_append_new(kvs, json_pack("{s:s, s:o}", "key", k, "value", a));
                }
                return json_pack("{s:{s:o}}", "kvlistValue", "values", kvs);
        }
        default:
                return NULL;
        }
}

static int add_attr(json_t *attrs, const char *key, json_t *value)
{
        json_t *a = any_value(value);
        if (!a)
                return 0;
        return json_array_append_new(attrs, json_pack("{s:s, s:o}", "key", key, "value", a));
}

static bool type_in(const char *type, const char *const *list)
{
        for (; *list; list++)
                if (streq(type, *list))
                        return true;
        return false;
}

int aj_otlp_severity(json_t *ev, const char **ret_text)
{
        static const char *const errors[] = { "cap.breach",    "oom",           "supervisor.lost",
                                              "launch.error",  "freeze.failed", "net.proxy.failed",
                                              "watchdog.lost", "cgroup.left",   NULL };
        static const char *const warnings[] = { "seccomp.denied", "seccomp.suppressed",
                                                "net.denied",     "broker.error",
                                                "freeze",         "kill",
                                                "quarantine",     "wall.limit",
                                                "wall.kill",      "pids.max",
                                                "degraded",       "alert.failed",
                                                "alert.timeout",  "watchdog.restarted",
                                                "events.torn",    NULL };
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *verdict = json_string_value(json_object_get(ev, "verdict"));
        const char *decision = json_string_value(json_object_get(ev, "decision"));
        int n = 9;
        if (type && type_in(type, errors))
                n = 17;
        else if ((type && type_in(type, warnings)) ||
                 (verdict && (streq(verdict, "deny") || streq(verdict, "breach"))) ||
                 (decision && !streq(decision, "approved")))
                n = 13;
        *ret_text = n == 17 ? "ERROR" : n == 13 ? "WARN" : "INFO";
        return n;
}

json_t *aj_otlp_log_record(json_t *ev)
{
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (!json_is_object(ev) || !type)
                return NULL;
        uint64_t ns = 0;
        char when[32];
        (void)aj_parse_timestamp(json_string_value(json_object_get(ev, "ts")), &ns);
        snprintf(when, sizeof(when), "%" PRIu64, ns);
        const char *sev_text;
        int sev = aj_otlp_severity(ev, &sev_text);
        json_t *attrs = json_array();
        const char *k;
        json_t *v;
        json_object_foreach (ev, k, v) {
                if (streq(k, "ts") || streq(k, "type"))
                        continue;
                const char *key = streq(k, "seq")    ? "agentjail.seq"
                                  : streq(k, "prev") ? "agentjail.prev"
                                  : streq(k, "run")  ? "agentjail.run.id"
                                                     : k;
                if (add_attr(attrs, key, v) < 0) {
                        json_decref(attrs);
                        return NULL;
                }
        }
        return json_pack("{s:s, s:s, s:i, s:s, s:s, s:{s:s}, s:o}", "timeUnixNano", when, "observedTimeUnixNano", when,
                         "severityNumber", sev, "severityText", sev_text, "eventName", type, "body", "stringValue",
                         type, "attributes", attrs);
}

json_t *aj_otlp_logs_request(const char *run_id, const char *run_name, const char *profile, const char *version,
                             json_t *records)
{
        json_t *res = json_array();
        if (!res) {
                json_decref(records);
                return NULL;
        }
        const char *keys[] = { "service.name", "agentjail.run.id", "agentjail.run.name", "agentjail.profile" };
        const char *values[] = { "agentjail", run_id, run_name, profile };
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                if (values[i])
                        json_array_append_new(res, json_pack("{s:s, s:{s:s}}", "key", keys[i], "value", "stringValue",
                                                             values[i]));
        return json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceLogs", "resource", "attributes", res,
                         "scopeLogs", "scope", "name", "agentjail", "version", version, "logRecords", records);
}

int aj_otlp_logs_request_frame(const char *run_id, const char *run_name, const char *profile, const char *version,
                               char **ret_head, char **ret_tail)
{
        /* The request with no records, cut where they go: "logRecords" is the last member
         * of the last objects (PRESERVE_ORDER), so its "[]" comes just before the end. */
        static const char end[] = "[]}]}]}";
        json_t *records = json_array();
        json_auto_t *doc = records ? aj_otlp_logs_request(run_id, run_name, profile, version, records) : NULL;
        _cleanup_free_ char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!text)
                return -ENOMEM;
        size_t n = strlen(text), e = sizeof(end) - 1;
        if (n < e || !streq(text + n - e, end))
                return -EINVAL;
        char *tail = strdup(end + 1);
        if (!tail)
                return -ENOMEM;
        text[n - e + 1] = 0;
        *ret_head = TAKE_PTR(text);
        *ret_tail = tail;
        return 0;
}
