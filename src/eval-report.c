/* SPDX-License-Identifier: Apache-2.0 */
/* An eval's results as JUnit XML (what CI systems read) and as JSON. Pure. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "util/format.h"
#include "util/strv.h"

const char *aj_eval_result_name(AjEvalResultKind k)
{
        switch (k) {
        case AJ_EVAL_PASS:
                return "pass";
        case AJ_EVAL_FAIL:
                return "fail";
        case AJ_EVAL_ERROR:
                return "error";
        }
        return "?";
}

void aj_eval_result_done(AjEvalResult *r)
{
        aj_strv_free(r->failures);
        free(r->error);
        free(r->workspace);
        *r = (AjEvalResult){ .exit_status = -1 };
}

const char *aj_eval_result_reason(const AjEvalResult *r)
{
        if (r->result == AJ_EVAL_ERROR)
                return r->error ? r->error : "?";
        if (r->result == AJ_EVAL_FAIL)
                return r->failures && r->failures[0] ? r->failures[0] : "?";
        return "";
}

static int append(char **buf, size_t *len, const char *s, size_t n)
{
        char *b = realloc(*buf, *len + n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + *len, s, n);
        *len += n;
        b[*len] = 0;
        *buf = b;
        return 0;
}

_printf_(3, 4) static int appendf(char **buf, size_t *len, const char *fmt, ...)
{
        _cleanup_free_ char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? r : append(buf, len, s, strlen(s));
}

/* The length of the valid UTF-8 sequence at s (1..4; NUL-terminated), or 0 for one XML 1.0
 * cannot hold: invalid UTF-8 (util/format.h's rule: no overlongs, surrogates or past
 * U+10FFFF) or the non-characters U+FFFE and U+FFFF. */
static size_t utf8_len(const unsigned char *s)
{
        size_t n = aj_utf8_len((const char *)s, strnlen((const char *)s, 4));
        if (n == 3 && s[0] == 0xef && s[1] == 0xbf && (s[2] == 0xbe || s[2] == 0xbf))
                return 0;
        return n;
}

int aj_xml_escape_append(char **buf, size_t *len, const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                const char *rep = NULL;
                switch (*p) {
                case '&':
                        rep = "&amp;";
                        break;
                case '<':
                        rep = "&lt;";
                        break;
                case '>':
                        rep = "&gt;";
                        break;
                case '"':
                        rep = "&quot;";
                        break;
                case '\'':
                        rep = "&apos;";
                        break;
                case '\n':
                        rep = "&#10;"; /* kept in attributes too, where a raw newline becomes a space */
                        break;
                case '\t':
                        rep = "&#9;";
                        break;
                default:
                        break;
                }
                if (!rep && (*p < 0x20 || *p == 0x7f))
                        rep = "?";
                int r;
                if (rep) {
                        r = append(buf, len, rep, strlen(rep));
                        p++;
                } else {
                        size_t n = utf8_len(p);
                        if (n > 1 && !aj_printable_as_is((const char *)p, n)) {
                                /* What util/format.h hides (C1, bidi, invisible): a reference,
                                 * the same text for a parser, nothing for a terminal or a page. */
                                char ref[16];
                                int k = snprintf(ref, sizeof(ref), "&#x%x;", (unsigned)aj_utf8_code_point(p, n));
                                r = append(buf, len, ref, (size_t)k);
                        } else
                                r = n ? append(buf, len, (const char *)p, n) : append(buf, len, "?", 1);
                        p += n ? n : 1;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ATTR="escaped value" with a leading space. */
static int attr(char **buf, size_t *len, const char *name, const char *value)
{
        int r = appendf(buf, len, " %s=\"", name);
        if (r >= 0)
                r = aj_xml_escape_append(buf, len, value);
        return r < 0 ? r : append(buf, len, "\"", 1);
}

static void count(const AjEvalResult *results, size_t n, size_t *ret_fail, size_t *ret_err, double *ret_time)
{
        *ret_fail = *ret_err = 0;
        *ret_time = 0;
        for (size_t i = 0; i < n; i++) {
                *ret_fail += results[i].result == AJ_EVAL_FAIL;
                *ret_err += results[i].result == AJ_EVAL_ERROR;
                *ret_time += results[i].seconds;
        }
}

static int junit_case(char **b, size_t *l, const AjEvalSuite *s, const AjEvalCase *c, const AjEvalResult *res)
{
        int r = append(b, l, "    <testcase", 13);
        char t[32];
        snprintf(t, sizeof(t), "%.3f", res->seconds);
        char n_checked[24];
        snprintf(n_checked, sizeof(n_checked), "%zu", res->n_checked);
        if (r >= 0 && (r = attr(b, l, "name", c->name)) >= 0 && (r = attr(b, l, "classname", s->name)) >= 0 &&
            (r = attr(b, l, "assertions", n_checked)) >= 0)
                r = attr(b, l, "time", t);
        if (r >= 0)
                r = append(b, l, ">\n", 2);
        if (r >= 0 && res->result != AJ_EVAL_PASS) {
                bool fail = res->result == AJ_EVAL_FAIL;
                r = append(b, l, fail ? "      <failure" : "      <error", fail ? 14 : 12);
                if (r >= 0 && (r = attr(b, l, "message", aj_eval_result_reason(res))) >= 0)
                        r = attr(b, l, "type", fail ? "assertion" : "error");
                if (r >= 0)
                        r = append(b, l, ">", 1);
                for (char **f = fail ? res->failures : NULL; r >= 0 && f && *f; f++)
                        if ((r = aj_xml_escape_append(b, l, *f)) >= 0)
                                r = append(b, l, "\n", 1);
                if (r >= 0 && !fail)
                        r = aj_xml_escape_append(b, l, res->error ? res->error : "?");
                if (r >= 0)
                        r = append(b, l, fail ? "</failure>\n" : "</error>\n", fail ? 11 : 9);
        }
        if (r >= 0 && res->run_id[0])
                r = appendf(b, l, "      <system-out>run %s</system-out>\n", res->run_id);
        return r < 0 ? r : append(b, l, "    </testcase>\n", 16);
}

char *aj_eval_junit(const AjEvalSuite *s, const AjEvalResult *results, size_t n, const char *timestamp)
{
        _cleanup_free_ char *b = NULL;
        size_t l = 0, failures, errors;
        double total;
        count(results, n, &failures, &errors, &total);
        char head[256];
        snprintf(head, sizeof(head), " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" time=\"%.3f\"", n, failures,
                 errors, total);
        int r = appendf(&b, &l, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites");
        if (r >= 0 && (r = attr(&b, &l, "name", s->name)) >= 0 && (r = appendf(&b, &l, "%s>\n", head)) >= 0 &&
            (r = append(&b, &l, "  <testsuite", 12)) >= 0 && (r = attr(&b, &l, "name", s->name)) >= 0 &&
            (r = appendf(&b, &l, "%s skipped=\"0\"", head)) >= 0 && (r = attr(&b, &l, "timestamp", timestamp)) >= 0)
                r = attr(&b, &l, "file", s->file);
        if (r >= 0)
                r = append(&b, &l, ">\n", 2);
        for (size_t i = 0; r >= 0 && i < n && i < s->n_cases; i++)
                r = junit_case(&b, &l, s, &s->cases[i], &results[i]);
        if (r >= 0)
                r = appendf(&b, &l, "  </testsuite>\n</testsuites>\n");
        return r < 0 ? NULL : TAKE_PTR(b);
}

/* A JSON string of text that may hold invalid UTF-8 (a file's content in a reason): '?' for it. */
static json_t *json_text(const char *s)
{
        if (!s)
                return NULL;
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return NULL;
        for (unsigned char *p = (unsigned char *)copy; *p;) {
                size_t n = utf8_len(p);
                if (!n)
                        *p = '?';
                p += n ? n : 1;
        }
        return json_string(copy);
}

json_t *aj_eval_report_json(const AjEvalSuite *s, const AjEvalResult *results, size_t n)
{
        size_t failures, errors;
        double total;
        count(results, n, &failures, &errors, &total);
        json_auto_t *cases = json_array();
        if (!cases)
                return NULL;
        for (size_t i = 0; i < n && i < s->n_cases; i++) {
                const AjEvalResult *res = &results[i];
                json_t *fails = json_array();
                for (char **f = res->failures; fails && f && *f; f++)
                        if (json_array_append_new(fails, json_text(*f)) < 0) {
                                json_decref(fails);
                                fails = NULL;
                        }
                json_t *c = json_pack("{s:s, s:s, s:f, s:s?, s:o?, s:I, s:o?, s:o?, s:s?}", "name", s->cases[i].name,
                                      "result", aj_eval_result_name(res->result), "seconds", res->seconds, "run",
                                      res->run_id[0] ? res->run_id : NULL, "exit",
                                      res->exit_status >= 0 ? json_integer(res->exit_status) : NULL, "assertions",
                                      (json_int_t)res->n_checked, "failures", fails, "error", json_text(res->error),
                                      "workspace", res->workspace);
                if (!c || json_array_append_new(cases, c) < 0)
                        return NULL;
        }
        return json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:O}", "suite", s->name, "file", s->file, "passed",
                         (json_int_t)(n - failures - errors), "failed", (json_int_t)failures, "errors",
                         (json_int_t)errors, "seconds", total, "cases", cases);
}
