/* SPDX-License-Identifier: Apache-2.0 */
/* An eval suite (src/eval*.c): one JSON text parsed as a suite, then each case judged
 * against empty facts and the results written as JUnit XML and JSON. */
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Suites are files an operator writes; 64 KiB covers every shape. */
        if (size > 64 * 1024)
                return 0;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        AjEvalSuite *s = NULL;
        AjError err = { 0 };
        if (aj_eval_suite_parse("/fuzz/suite.json", text, &s, &err) == 0) {
                AjEvalResult *res = calloc(s->n_cases, sizeof(*res));
                for (size_t i = 0; res && i < s->n_cases; i++) {
                        const AjEvalCase *c = &s->cases[i];
                        AjEvalFileFact *files = calloc(c->n_files + 1, sizeof(*files));
                        size_t *counts = calloc(c->n_events + 1, sizeof(*counts));
                        AjEvalFacts f = { .exit_status = (int)i, .files = files, .event_counts = counts };
                        AjEvalVerdict v = { 0 };
                        if (files && counts && aj_eval_judge(c, &f, &v) == 0) {
                                res[i].result = v.failures ? AJ_EVAL_FAIL : AJ_EVAL_PASS;
                                res[i].failures = v.failures;
                                res[i].n_checked = v.n_checked;
                        }
                        free(files);
                        free(counts);
                }
                if (res) {
                        free(aj_eval_junit(s, res, s->n_cases, "2026-01-01T00:00:00"));
                        json_decref(aj_eval_report_json(s, res, s->n_cases));
                        for (size_t i = 0; i < s->n_cases; i++)
                                aj_eval_result_done(&res[i]);
                        free(res);
                }
                aj_eval_suite_free(s);
        }
        aj_error_clear(&err);
        free(text);
        return 0;
}
