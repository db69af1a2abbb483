/* SPDX-License-Identifier: Apache-2.0 */
/* The "llm" keys: the model providers the run's gateway serves (docs/gateway.md), their
 * schema, their conversion to AjLlmProvider and back, and the built-in defaults that
 * `--llm anthropic` / `--llm openai` name. Pure. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/key-paths.h"
#include "profile-internal.h"
#include "util/parse.h"
#include "util/strv.h"

#define MAX_PROVIDER_NAME 32
#define MAX_URL 2048

static const AjLlmProvider builtin[] = {
        { .name = "anthropic",
          .api = AJ_LLM_PROVIDER_ANTHROPIC,
          .url = "https://api.anthropic.com",
          .key_env = "ANTHROPIC_API_KEY" },
        { .name = "openai",
          .api = AJ_LLM_PROVIDER_OPENAI,
          .url = "https://api.openai.com",
          .key_env = "OPENAI_API_KEY" },
};

const char *aj_llm_provider_api_name(AjLlmProviderApi api)
{
        return api == AJ_LLM_PROVIDER_ANTHROPIC ? "anthropic" : api == AJ_LLM_PROVIDER_OPENAI ? "openai" : "?";
}

static const AjLlmProvider *builtin_provider(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(builtin); i++)
                if (streq(builtin[i].name, name))
                        return &builtin[i];
        return NULL;
}

static bool api_from_name(const char *s, AjLlmProviderApi *ret)
{
        if (streq(s, "anthropic"))
                *ret = AJ_LLM_PROVIDER_ANTHROPIC;
        else if (streq(s, "openai"))
                *ret = AJ_LLM_PROVIDER_OPENAI;
        else
                return false;
        return true;
}

/* Provider names become path prefixes and event fields: short and plain. */
static bool is_provider_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > MAX_PROVIDER_NAME)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                        return false;
        return true;
}

/* "https://host[:port][/path]" or "http://...": no user info, no query or fragment, no
 * control characters or spaces; the host is checked again when the gateway resolves it. */
const char *aj_llm_url_problem(const char *url)
{
        const char *rest;
        if (strncmp(url, "https://", 8) == 0)
                rest = url + 8;
        else if (strncmp(url, "http://", 7) == 0)
                rest = url + 7;
        else
                return "expected an http:// or https:// URL";
        if (strlen(url) > MAX_URL)
                return "too long (at most 2048 characters)";
        size_t host_len = strcspn(rest, ":/");
        if (host_len == 0)
                return "no host";
        for (const unsigned char *p = (const unsigned char *)url; *p; p++)
                if (*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#' || *p == '@' || *p == '\\')
                        return "has a space, a control character, user info, a query or a fragment";
        if (rest[host_len] == ':') {
                const char *port = rest + host_len + 1;
                size_t digits = strspn(port, "0123456789");
                if (digits == 0 || digits > 5 || (port[digits] && port[digits] != '/') || atoi(port) < 1 ||
                    atoi(port) > 65535)
                        return "bad port";
        }
        return NULL;
}

static int check_api(Check *c, json_t *v)
{
        AjLlmProviderApi api;
        int r = check_string(c, v);
        if (r >= 0 && !api_from_name(json_string_value(v), &api))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"anthropic\" or \"openai\", got %s", GOT(v));
        return r;
}

static int check_url(Check *c, json_t *v)
{
        int r = check_string(c, v);
        const char *problem = r >= 0 ? aj_llm_url_problem(json_string_value(v)) : NULL;
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s, got %s", problem, GOT(v));
        return r;
}

static int check_key_env(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *s = json_string_value(v);
        bool ok = *s && strlen(s) <= 128 && !(*s >= '0' && *s <= '9');
        for (const char *p = s; ok && *p; p++)
                ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an environment variable name, got %s", GOT(v));
        return 0;
}

static int check_host_file(Check *c, json_t *v)
{
        int r = check_string(c, v);
        if (r < 0)
                return r;
        const char *problem = path_problem(json_string_value(v), false);
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s: %s", problem, GOT(v));
        return 0;
}

static int check_key_path(Check *c, json_t *v)
{
        const char *problem = aj_key_path_rule_problem(json_string_value(v));
        if (problem)
                return check_fail(c, AJ_JSON_AT_VALUE, "%s, got %s", problem, GOT(v));
        return 0;
}

static int check_key_paths(Check *c, json_t *v)
{
        if (json_is_array(v) && json_array_size(v) > AJ_KEY_PATHS_MAX)
                return check_fail(c, AJ_JSON_AT_VALUE, "too many paths (at most %d)", AJ_KEY_PATHS_MAX);
        return check_string_array(c, v, check_key_path);
}

static int check_provider(Check *c, json_t *v, const char *name)
{
        static const Field fields[] = {
                { "api", check_api },
                { "url", check_url },
                { "key_env", check_key_env },
                { "key_file", check_host_file },
                { "ca_file", check_host_file },
                { "paths", check_key_paths },
                {},
        };
        int r = check_object(c, v, fields);
        if (r < 0)
                return r;
        if (json_object_get(v, "key_env") && json_object_get(v, "key_file"))
                return check_fail(c, AJ_JSON_AT_VALUE, "give the key as key_env or key_file, not both");
        if (!builtin_provider(name) && !json_object_get(v, "api"))
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "\"api\" is required (\"anthropic\" or \"openai\") for a "
                                  "provider other than anthropic and openai");
        if (!builtin_provider(name) && !json_object_get(v, "url"))
                return check_fail(c, AJ_JSON_AT_VALUE,
                                  "\"url\" is required for a provider other than anthropic and "
                                  "openai");
        if (!builtin_provider(name) && !json_object_get(v, "key_env") && !json_object_get(v, "key_file"))
                return check_fail(c, AJ_JSON_AT_VALUE, "a key is required: \"key_env\" or \"key_file\"");
        return 0;
}

static int check_providers(Check *c, json_t *v)
{
        const char *name;
        json_t *value;

        if (!json_is_object(v))
                return check_fail(c, AJ_JSON_AT_VALUE, "expected an object of provider names, got %s", GOT(v));
        if (json_object_size(v) > AJ_LLM_MAX_PROVIDERS)
                return check_fail(c, AJ_JSON_AT_VALUE, "too many providers (at most %d)", AJ_LLM_MAX_PROVIDERS);
        json_object_foreach (v, name, value) {
                check_push_key(c, name);
                int r = is_provider_name(name) ? check_provider(c, value, name)
                                               : check_fail(c, AJ_JSON_AT_KEY,
                                                            "invalid provider name (1 to 32 of "
                                                            "a-z, 0-9, '-' and '_')");
                check_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* clang-format off */
static const char *const record_names[] = {
        [AJ_LLM_RECORD_DIGEST] = "digest",
        [AJ_LLM_RECORD_FULL] = "full",
        [AJ_LLM_RECORD_OFF] = "off",
};
/* clang-format on */

const char *aj_llm_record_name(AjLlmRecord mode)
{
        return (size_t)mode < ARRAY_SIZE(record_names) ? record_names[mode] : "?";
}

int aj_llm_record_from_name(const char *name, AjLlmRecord *ret)
{
        for (size_t i = 0; name && i < ARRAY_SIZE(record_names); i++)
                if (streq(name, record_names[i])) {
                        *ret = (AjLlmRecord)i;
                        return 0;
                }
        return -EINVAL;
}

static int check_record(Check *c, json_t *v)
{
        int r = check_string(c, v);
        AjLlmRecord mode;
        if (r >= 0 && aj_llm_record_from_name(json_string_value(v), &mode) < 0)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected \"digest\", \"full\" or \"off\", got %s", GOT(v));
        return r;
}

static int check_record_bytes(Check *c, json_t *v)
{
        uint64_t n;
        if (json_size(v, &n) < 0 || n < AJ_LOG_MIN_EVENTS_BYTES || n > AJ_LOG_MAX_BYTES)
                return check_fail(c, AJ_JSON_AT_VALUE, "expected a size from 64K to 1T, got %s", GOT(v));
        return 0;
}

int check_llm(Check *c, json_t *v)
{
        static const Field fields[] = {
                { "providers", check_providers },
                { "record", check_record },
                { "record_bytes", check_record_bytes },
                { "provider_fetch", check_bool },
                {},
        };
        return check_object(c, v, fields);
}

/* ---- conversion ---- */

static int provider_set(AjLlmProvider *dst, const char *name, const AjLlmProvider *def, json_t *v)
{
        json_t *api = json_object_get(v, "api"), *url = json_object_get(v, "url");
        json_t *key_env = json_object_get(v, "key_env"), *key_file = json_object_get(v, "key_file");
        json_t *ca = json_object_get(v, "ca_file"), *paths = json_object_get(v, "paths"), *e;
        size_t i;

        *dst = (AjLlmProvider){ .api = def ? def->api : AJ_LLM_PROVIDER_ANTHROPIC };
        if (api)
                (void)api_from_name(json_string_value(api), &dst->api);
        dst->name = strdup(name);
        dst->url = strdup(url ? json_string_value(url) : def->url);
        if (key_file)
                dst->key_file = strdup(json_string_value(key_file));
        else
                dst->key_env = strdup(key_env ? json_string_value(key_env) : def->key_env);
        if (ca)
                dst->ca_file = strdup(json_string_value(ca));
        json_array_foreach (paths, i, e)
                if (aj_strv_push(&dst->paths, json_string_value(e)) < 0)
                        return -ENOMEM;
        if (!dst->name || !dst->url || (!dst->key_file && !dst->key_env) || (ca && !dst->ca_file))
                return -ENOMEM;
        return 0;
}

int llm_from_json(json_t *root, AjProfile *p)
{
        json_t *llm = json_object_get(root, "llm"), *providers = json_object_get(llm, "providers"), *v;
        const char *name;
        uint64_t n;

        if ((v = json_object_get(llm, "record")))
                (void)aj_llm_record_from_name(json_string_value(v), &p->llm_record);
        if ((v = json_object_get(llm, "record_bytes")) && json_size(v, &n) >= 0)
                p->llm_record_bytes = n;
        p->llm_provider_fetch = json_is_true(json_object_get(llm, "provider_fetch"));
        if (json_object_size(providers) == 0)
                return 0;
        p->llm_providers = calloc(json_object_size(providers), sizeof(*p->llm_providers));
        if (!p->llm_providers)
                return -ENOMEM;
        json_object_foreach (providers, name, v) {
                int r = provider_set(&p->llm_providers[p->n_llm_providers++], name, builtin_provider(name), v);
                if (r < 0)
                        return r;
        }
        return 0;
}

int llm_to_json(const AjProfile *p, json_t *root)
{
        if (p->n_llm_providers == 0 && p->llm_record == AJ_LLM_RECORD_DIGEST && !p->llm_provider_fetch)
                return 0;
        json_t *llm = json_object(), *providers = json_object();
        if (!llm || !providers || json_object_set_new(root, "llm", llm) < 0 ||
            json_object_set_new(llm, "providers", providers) < 0) {
                json_decref(providers);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                const AjLlmProvider *pr = &p->llm_providers[i];
                json_t *e = json_pack("{s:s, s:s}", "api", aj_llm_provider_api_name(pr->api), "url", pr->url);
                if (!e || json_object_set_new(providers, pr->name, e) < 0)
                        return -ENOMEM;
                if ((pr->key_env && json_object_set_new(e, "key_env", json_string(pr->key_env)) < 0) ||
                    (pr->key_file && json_object_set_new(e, "key_file", json_string(pr->key_file)) < 0) ||
                    (pr->ca_file && json_object_set_new(e, "ca_file", json_string(pr->ca_file)) < 0))
                        return -ENOMEM;
                /* Shown only when set, as provider_fetch: a profile opening none resolves (and
                 * digests) as before the key existed. */
                json_t *paths = pr->paths ? json_array() : NULL;
                if (pr->paths && (!paths || json_object_set_new(e, "paths", paths) < 0))
                        return -ENOMEM;
                for (size_t j = 0; paths && pr->paths[j]; j++)
                        if (json_array_append_new(paths, json_string(pr->paths[j])) < 0)
                                return -ENOMEM;
        }
        if (json_object_set_new(llm, "record", json_string(aj_llm_record_name(p->llm_record))) < 0 ||
            json_object_set_new(llm, "record_bytes", json_integer((json_int_t)p->llm_record_bytes)) < 0)
                return -ENOMEM;
        /* Shown only when set: the resolved profile (and its digest) of a run that does not allow
         * it stays what it was before the key existed. */
        if (p->llm_provider_fetch && json_object_set_new(llm, "provider_fetch", json_true()) < 0)
                return -ENOMEM;
        return 0;
}

void llm_free(AjProfile *p)
{
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                AjLlmProvider *pr = &p->llm_providers[i];
                free(pr->name), free(pr->url), free(pr->key_env), free(pr->key_file), free(pr->ca_file);
                aj_strv_free(pr->paths);
        }
        free(p->llm_providers);
        p->llm_providers = NULL;
        p->n_llm_providers = 0;
}

int aj_profile_llm_enable(AjProfile *p, const char *name, AjError *err)
{
        for (size_t i = 0; i < p->n_llm_providers; i++)
                if (streq(p->llm_providers[i].name, name))
                        return 0;
        const AjLlmProvider *def = builtin_provider(name);
        if (!def)
                return aj_error_set(err, -EINVAL,
                                    "--llm %s: the profile has no llm.providers.%s, and the built-in providers are "
                                    "anthropic and openai",
                                    name, name);
        if (p->n_llm_providers >= AJ_LLM_MAX_PROVIDERS)
                return aj_error_set(err, -E2BIG, "--llm %s: too many providers (at most %d)", name,
                                    AJ_LLM_MAX_PROVIDERS);
        AjLlmProvider *n = reallocarray(p->llm_providers, p->n_llm_providers + 1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        p->llm_providers = n;
        int r = provider_set(&n[p->n_llm_providers], name, def, NULL);
        p->n_llm_providers++; /* freed with the profile also when half set */
        return r;
}
