/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "otlp.h"

static json_t *attr(json_t *rec, const char *key)
{
        size_t i;
        json_t *a;
        json_array_foreach (json_object_get(rec, "attributes"), i, a)
                if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
                        return json_object_get(a, "value");
        return NULL;
}

Test(otlp, an_event_becomes_a_log_record)
{
        json_t *ev =
                json_loads("{\"seq\":7,\"ts\":\"2026-11-23T21:59:20.000000123Z\",\"run\":\"abc\",\"type\":\"tool.verdict\","
                           "\"prev\":\"00ff\",\"gen_ai.tool.name\":\"crm.update\",\"verdict\":\"allow\",\"cost_usd\":0.25,"
                           "\"ok\":true,\"gone\":null,\"usage\":{\"tokens\":{\"used\":3}},\"argv\":[\"a\",1]}",
                           0, NULL);
        cr_assert_not_null(ev);
        json_t *rec = aj_otlp_log_record(ev);
        cr_assert_not_null(rec);
        cr_expect_str_eq(json_string_value(json_object_get(rec, "timeUnixNano")), "1795471160000000123");
        cr_expect_str_eq(json_string_value(json_object_get(rec, "eventName")), "tool.verdict");
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(rec, "body"), "stringValue")),
                         "tool.verdict");
        cr_expect_eq(json_integer_value(json_object_get(rec, "severityNumber")), 9);
        cr_expect_str_eq(json_string_value(json_object_get(rec, "severityText")), "INFO");
        cr_expect_str_eq(json_string_value(json_object_get(attr(rec, "agentjail.seq"), "intValue")), "7");
        cr_expect_str_eq(json_string_value(json_object_get(attr(rec, "agentjail.run.id"), "stringValue")), "abc");
        cr_expect_str_eq(json_string_value(json_object_get(attr(rec, "agentjail.prev"), "stringValue")), "00ff");
        cr_expect_str_eq(json_string_value(json_object_get(attr(rec, "gen_ai.tool.name"), "stringValue")),
                         "crm.update");
        cr_expect_eq(json_real_value(json_object_get(attr(rec, "cost_usd"), "doubleValue")), 0.25);
        cr_expect(json_is_true(json_object_get(attr(rec, "ok"), "boolValue")));
        cr_expect_null(attr(rec, "gone"), "null fields are left out");
        cr_expect_null(attr(rec, "ts"));
        cr_expect_null(attr(rec, "type"));
        json_t *kv = json_object_get(json_object_get(attr(rec, "usage"), "kvlistValue"), "values");
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(kv, 0), "key")), "tokens");
        json_t *arr = json_object_get(json_object_get(attr(rec, "argv"), "arrayValue"), "values");
        cr_expect_eq(json_array_size(arr), 2);
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(arr, 1), "intValue")), "1");
        json_decref(rec);
        json_decref(ev);
        json_t *not_event = json_array();
        cr_expect_null(aj_otlp_log_record(not_event));
        json_decref(not_event);
}

Test(otlp, severities)
{
        static const struct {
                const char *ev;
                int n;
        } cases[] = {
                { "{\"type\":\"run.start\"}", 9 },
                { "{\"type\":\"cap.breach\"}", 17 },
                { "{\"type\":\"supervisor.lost\"}", 17 },
                { "{\"type\":\"watchdog.lost\"}", 17 },
                { "{\"type\":\"watchdog.restarted\"}", 13 },
                { "{\"type\":\"seccomp.denied\"}", 13 },
                { "{\"type\":\"net.denied\"}", 13 },
                { "{\"type\":\"freeze\"}", 13 },
                { "{\"type\":\"tool.verdict\",\"verdict\":\"deny\"}", 13 },
                { "{\"type\":\"tool.verdict\",\"verdict\":\"breach\"}", 13 },
                { "{\"type\":\"tokens\",\"verdict\":\"ok\"}", 9 },
                { "{\"type\":\"approval\",\"decision\":\"approved\"}", 9 },
                { "{\"type\":\"approval\",\"decision\":\"timeout\"}", 13 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *ev = json_loads(cases[i].ev, 0, NULL);
                const char *text;
                cr_expect_eq(aj_otlp_severity(ev, &text), cases[i].n, "%s", cases[i].ev);
                cr_expect_str_eq(text, cases[i].n == 17 ? "ERROR" : cases[i].n == 13 ? "WARN" : "INFO");
                json_decref(ev);
        }
}

Test(otlp, the_request_names_the_run)
{
        json_t *records = json_array();
        json_array_append_new(records, json_object());
        json_t *req = aj_otlp_logs_request("abc", NULL, "default", "0.1.0", records);
        cr_assert_not_null(req);
        json_t *rl = json_array_get(json_object_get(req, "resourceLogs"), 0);
        json_t *attrs = json_object_get(json_object_get(rl, "resource"), "attributes");
        cr_expect_eq(json_array_size(attrs), 3, "the missing name is left out");
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(attrs, 0), "key")), "service.name");
        json_t *sl = json_array_get(json_object_get(rl, "scopeLogs"), 0);
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(sl, "scope"), "name")), "agentjail");
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(sl, "scope"), "version")), "0.1.0");
        cr_expect_eq(json_array_size(json_object_get(sl, "logRecords")), 1);
        json_decref(req);
}
