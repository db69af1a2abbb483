/* SPDX-License-Identifier: Apache-2.0 */
/* Model prices (see prices.h). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "prices.h"
#include "util/fd.h"
#include "util/parse.h"

static const struct {
        const char *name, *field;
} tool_fees[AJ_TOOL_FEES] = {
        [AJ_TOOL_FEE_WEB_FETCH] = { "web_fetch", "web_fetch_requests" },
        [AJ_TOOL_FEE_FILE_SEARCH] = { "file_search", "file_search_calls" },
        [AJ_TOOL_FEE_CODE_INTERPRETER] = { "code_interpreter", "code_interpreter_containers" },
        [AJ_TOOL_FEE_IMAGE_GENERATION] = { "image_generation", "image_generation_calls" },
        [AJ_TOOL_FEE_CODE_EXECUTION] = { "code_execution", "code_execution_containers" },
        [AJ_TOOL_FEE_FILE_PARSER] = { "file_parser", "file_parser_pages" },
};

const char *aj_tool_fee_name(AjToolFee f) { return f >= 0 && f < AJ_TOOL_FEES ? tool_fees[f].name : "?"; }

const char *aj_tool_fee_field(AjToolFee f) { return f >= 0 && f < AJ_TOOL_FEES ? tool_fees[f].field : "?"; }

int aj_tool_fee_from_name(const char *name)
{
        for (int i = 0; name && i < AJ_TOOL_FEES; i++)
                if (streq(tool_fees[i].name, name))
                        return i;
        return -1;
}

int aj_price_table_new(const char *origin, AjPriceTable **ret)
{
        AjPriceTable *t = calloc(1, sizeof(*t));
        if (!t || !(t->origin = strdup(origin ? origin : "?"))) {
                free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

void aj_price_table_free(AjPriceTable *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n; i++)
                free(t->entries[i].model);
        free(t->entries);
        free(t->date);
        free(t->origin);
        free(t);
}

int aj_price_table_set(AjPriceTable *t, const AjPrice *p)
{
        if (!p->model || !*p->model)
                return -EINVAL;
        for (size_t i = 0; i < t->n; i++)
                if (streq(t->entries[i].model, p->model)) {
                        char *name = t->entries[i].model;
                        t->entries[i] = *p;
                        t->entries[i].model = name;
                        return 0;
                }
        if (t->n >= AJ_PRICE_MAX_ENTRIES)
                return -E2BIG;
        AjPrice *n = realloc(t->entries, (t->n + 1) * sizeof(AjPrice));
        if (!n)
                return -ENOMEM;
        t->entries = n;
        char *name = strdup(p->model);
        if (!name)
                return -ENOMEM;
        t->entries[t->n] = *p;
        t->entries[t->n++].model = name;
        return 0;
}

/* ---- names ---- */

static bool all_digits(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!isdigit((unsigned char)s[i]))
                        return false;
        return true;
}

/* Length of a trailing date or "-latest" to cut from `model`, 0 if none. */
static size_t date_suffix(const char *model, size_t len)
{
        /* -20250929 or @20250929 */
        if (len > 9 && (model[len - 9] == '-' || model[len - 9] == '@') && all_digits(model + len - 8, 8))
                return 9;
        /* -2025-04-14 */
        if (len > 11 && model[len - 11] == '-' && all_digits(model + len - 10, 4) && model[len - 6] == '-' &&
            all_digits(model + len - 5, 2) && model[len - 3] == '-' && all_digits(model + len - 2, 2))
                return 11;
        if (len > 7 && streq(model + len - 7, "-latest"))
                return 7;
        return 0;
}

bool aj_price_base_name(const char *model, char *buf, size_t size)
{
        size_t len = strlen(model), cut = date_suffix(model, len);
        if (cut == 0 || len - cut >= size)
                return false;
        memcpy(buf, model, len - cut);
        buf[len - cut] = '\0';
        return true;
}

AjModelVariant aj_model_variant(const char *suffix, size_t len)
{
        static const struct {
                const char *name;
                AjModelVariant kind;
        } variants[] = {
                { "free", AJ_MODEL_VARIANT_SAME },       { "floor", AJ_MODEL_VARIANT_SAME },
                { "online", AJ_MODEL_VARIANT_SAME },     { "nitro", AJ_MODEL_VARIANT_DEARER },
                { "exacto", AJ_MODEL_VARIANT_DEARER },   { "extended", AJ_MODEL_VARIANT_DEARER },
                { "thinking", AJ_MODEL_VARIANT_DEARER },
        };
        for (size_t i = 0; i < ARRAY_SIZE(variants); i++)
                if (strlen(variants[i].name) == len && strncasecmp(suffix, variants[i].name, len) == 0)
                        return variants[i].kind;
        return AJ_MODEL_VARIANT_UNKNOWN;
}

bool aj_price_variant_base(const char *model, char *buf, size_t size)
{
        const char *slash = strrchr(model, '/');
        size_t len = strlen(model), start = slash ? (size_t)(slash - model) : 0;
        for (;;) {
                const char *colon = memrchr(model + start, ':', len - start);
                if (!colon ||
                    aj_model_variant(colon + 1, len - (size_t)(colon - model) - 1) == AJ_MODEL_VARIANT_UNKNOWN)
                        break;
                len = (size_t)(colon - model);
        }
        if (len == strlen(model) || len == 0 || len >= size)
                return false;
        memcpy(buf, model, len);
        buf[len] = '\0';
        return true;
}

const AjPrice *aj_price_table_get(const AjPriceTable *t, const char *model)
{
        for (size_t i = 0; t && model && i < t->n; i++)
                if (streq(t->entries[i].model, model))
                        return &t->entries[i];
        return NULL;
}

/* The entry of `model` or of its dated snapshot's base name. */
static const AjPrice *find_named(const AjPriceTable *t, const char *model)
{
        char base[AJ_PRICE_MAX_NAME + 1];
        const AjPrice *p = aj_price_table_get(t, model);
        if (!p && aj_price_base_name(model, base, sizeof(base)))
                p = aj_price_table_get(t, base);
        return p;
}

const AjPrice *aj_price_table_find(const AjPriceTable *t, const char *model)
{
        char base[AJ_PRICE_MAX_NAME + 1];
        if (!t || !model)
                return NULL;
        const AjPrice *p = find_named(t, model);
        if (!p && aj_price_variant_base(model, base, sizeof(base)))
                p = find_named(t, base);
        return p;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        uint64_t r;
        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
        uint64_t r;
        return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

uint64_t aj_price_cost(const AjPrice *p, const AjTokens *t)
{
        uint64_t cached = sat_add(t->cache_read, t->cache_write);
        uint64_t plain = t->input > cached ? t->input - cached : 0;
        uint64_t hour = t->cache_write_1h < t->cache_write ? t->cache_write_1h : t->cache_write;
        uint64_t c = sat_mul(plain, p->input);
        c = sat_add(c, sat_mul(t->cache_read, p->cache_read));
        c = sat_add(c, sat_mul(t->cache_write - hour, p->cache_write));
        c = sat_add(c, sat_mul(hour, p->cache_write_1h));
        c = sat_add(c, sat_mul(t->web_searches, p->web_search));
        for (int i = 0; i < AJ_TOOL_FEES; i++)
                c = sat_add(c, sat_mul(t->tool_uses[i], p->tool_fee[i]));
        return sat_add(c, sat_mul(t->output, p->output));
}

/* ---- the table file ---- */

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > AJ_PRICE_MAX_NAME)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
                        return false;
        return true;
}

static bool valid_date(const char *s)
{
        return s && strlen(s) == 10 && all_digits(s, 4) && s[4] == '-' && all_digits(s + 5, 2) && s[7] == '-' &&
               all_digits(s + 8, 2);
}

/* One price in USD per million tokens -> pico-USD per token. */
static int per_token(json_t *v, uint64_t *ret)
{
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < 0 || d > AJ_PRICE_MAX_USD_PER_MTOK)
                return -EINVAL;
        *ret = aj_round_u64(d * 1e6);
        return 0;
}

/* USD per 1,000 searches -> pico-USD per search. */
static int per_search(json_t *v, uint64_t *ret)
{
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < 0 || d > AJ_PRICE_MAX_USD_PER_KSEARCH)
                return -EINVAL;
        *ret = aj_round_u64(d * 1e9);
        return 0;
}

/* A model's maximum output: a whole number of tokens, 1 to AJ_PRICE_MAX_OUTPUT_TOKENS. */
static int max_output_tokens(json_t *v, uint64_t *ret)
{
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > AJ_PRICE_MAX_OUTPUT_TOKENS)
                return -EINVAL;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static int parse_entry(const char *model, json_t *v, AjPrice *ret, AjError *ret_error)
{
        static const char *const keys[] = { "input",       "output",         "cache_read",
                                            "cache_write", "cache_write_1h", "web_search" };
        enum { WEB_SEARCH = 5 };
        uint64_t val[6];
        bool have[6] = {};
        const char *key;
        json_t *e;

        if (!valid_name(model))
                return aj_error_set(ret_error, -EINVAL,
                                    "models: \"%.64s\": invalid model name (1 to %d characters, no spaces)", model,
                                    AJ_PRICE_MAX_NAME);
        if (!json_is_object(v))
                return aj_error_set(ret_error, -EINVAL, "models.%s: expected an object of prices", model);
        uint64_t fee[AJ_TOOL_FEES] = {}, max_output = 0;
        bool fee_set[AJ_TOOL_FEES] = {};
        json_object_foreach (v, key, e) {
                size_t i = 0;
                int f = aj_tool_fee_from_name(key);
                while (i < ARRAY_SIZE(keys) && !streq(keys[i], key))
                        i++;
                if (streq(key, "max_output_tokens")) {
                        if (max_output_tokens(e, &max_output) < 0)
                                return aj_error_set(ret_error, -EINVAL,
                                                    "models.%s.max_output_tokens: expected the model's maximum output "
                                                    "tokens, a whole number from 1 to %d",
                                                    model, AJ_PRICE_MAX_OUTPUT_TOKENS);
                        continue;
                }
                if (f >= 0) {
                        if (per_search(e, &fee[f]) < 0)
                                return aj_error_set(ret_error, -EINVAL,
                                                    "models.%s.%s: expected USD per 1,000 uses, 0 to %.0f", model, key,
                                                    AJ_PRICE_MAX_USD_PER_KSEARCH);
                        fee_set[f] = true;
                        continue;
                }
                if (i == ARRAY_SIZE(keys))
                        return aj_error_set(ret_error, -EINVAL,
                                            "models.%s: unknown key \"%.64s\" (expected input, output, "
                                            "cache_read, cache_write, cache_write_1h, web_search, web_fetch, "
                                            "file_search, code_interpreter, image_generation, code_execution, "
                                            "file_parser, max_output_tokens)",
                                            model, key);
                if (i == WEB_SEARCH) {
                        if (per_search(e, &val[i]) < 0)
                                return aj_error_set(ret_error, -EINVAL,
                                                    "models.%s.web_search: expected USD per 1,000 searches, 0 to %.0f",
                                                    model, AJ_PRICE_MAX_USD_PER_KSEARCH);
                } else if (per_token(e, &val[i]) < 0)
                        return aj_error_set(ret_error, -EINVAL,
                                            "models.%s.%s: expected USD per million tokens, 0 to %.0f", model, key,
                                            AJ_PRICE_MAX_USD_PER_MTOK);
                have[i] = true;
        }
        if (!have[0] || !have[1])
                return aj_error_set(ret_error, -EINVAL, "models.%s: \"input\" and \"output\" are required", model);
        *ret = (AjPrice){
                .input = val[0],
                .output = val[1],
                .cache_read = have[2] ? val[2] : val[0],
                .cache_write = have[3] ? val[3] : val[0],
        };
        ret->cache_write_1h = have[4] ? val[4] : ret->cache_write;
        ret->web_search = have[WEB_SEARCH] ? val[WEB_SEARCH] : 0;
        ret->web_search_priced = have[WEB_SEARCH];
        memcpy(ret->tool_fee, fee, sizeof(fee));
        memcpy(ret->tool_fee_priced, fee_set, sizeof(fee_set));
        ret->max_output = max_output;
        return 0;
}

static int parse_root(json_t *root, AjPriceTable *t, AjError *ret_error)
{
        const char *key;
        json_t *v;
        if (!json_is_object(root))
                return aj_error_set(ret_error, -EINVAL, "expected a JSON object with \"date\" and \"models\"");
        const char *date = json_string_value(json_object_get(root, "date"));
        if (!valid_date(date))
                return aj_error_set(ret_error, -EINVAL,
                                    "\"date\": expected the date the prices were checked, as \"YYYY-MM-DD\"");
        if (!(t->date = strdup(date)))
                return -ENOMEM;
        json_t *models = json_object_get(root, "models");
        if (!json_is_object(models))
                return aj_error_set(ret_error, -EINVAL, "\"models\": expected an object of model names");
        if (json_object_size(models) > AJ_PRICE_MAX_ENTRIES)
                return aj_error_set(ret_error, -EINVAL, "\"models\": more than %d entries", AJ_PRICE_MAX_ENTRIES);
        json_object_foreach (models, key, v) {
                AjPrice p;
                int r = parse_entry(key, v, &p, ret_error);
                if (r < 0)
                        return r;
                p.model = (char *)key;
                if ((r = aj_price_table_set(t, &p)) < 0)
                        return r;
        }
        return 0;
}

int aj_price_table_parse(const char *text, size_t len, const char *origin, AjPriceTable **ret, AjError *ret_error)
{
        _cleanup_(aj_price_table_freep) AjPriceTable *t = NULL;
        json_error_t err;
        int r = aj_price_table_new(origin, &t);
        if (r < 0)
                return r;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return aj_error_set(ret_error, -EINVAL, "invalid JSON at line %d column %d: %s", err.line, err.column,
                                    err.text);
        r = parse_root(root, t, ret_error);
        json_decref(root);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

int aj_price_table_load(const char *path, AjPriceTable **ret, AjError *ret_error)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_read_file(path, AJ_PRICE_TABLE_MAX_SIZE, &text, &len);
        if (r >= 0)
                r = aj_price_table_parse(text, len, path, ret, &err);
        if (r < 0)
                return aj_error_set(ret_error, r, "'%s': %s", path, aj_error_text(&err, r));
        return 0;
}

int aj_price_table_load_default(AjPriceTable **ret, AjError *ret_error)
{
        static const char *const dirs[] = { "/etc/agentjail", AJ_PRICES_DATADIR, AJ_SOURCE_DATA };
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dirs[i], AJ_PRICE_TABLE_NAME) < 0)
                        return -ENOMEM;
                int r = aj_price_table_load(path, ret, ret_error);
                if (r != -ENOENT)
                        return r;
                aj_error_clear(ret_error);
        }
        return aj_error_set(ret_error, -ENOENT, "no %s in /etc/agentjail, %s or %s", AJ_PRICE_TABLE_NAME,
                            AJ_PRICES_DATADIR, AJ_SOURCE_DATA);
}
