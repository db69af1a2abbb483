/* SPDX-License-Identifier: Apache-2.0 */
/* Where the gateway sends a provider's key: the default set and the profile's rules (key-paths.h). */
#include "gateway/key-paths.h"

#include <string.h>
#include <strings.h>

#include "gateway/http.h"
#include "gateway/usage.h"
#include "util/macros.h"

/* Reads an agent needs besides its model calls: which models there are. */
static const char *const default_reads[] = {
        "GET /v1/models", "HEAD /v1/models", "GET /v1/models/*", "HEAD /v1/models/*", "HEAD /",
};

static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

static bool known_method(const char *m, size_t len)
{
        if (len == 1 && m[0] == '*')
                return true;
        for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
                if (strlen(methods[i]) == len && memcmp(methods[i], m, len) == 0)
                        return true;
        return false;
}

static const char *path_problem(const char *p)
{
        static const char path_chars[] = "-._~!$&'()*+,=:@/";
        if (p[0] != '/')
                return "the path must start with '/'";
        for (const char *c = p; *c; c++) {
                if (*c == '%')
                        return "percent-escapes are not allowed in the path (the gateway serves none)";
                if (*c == '?' || *c == '#')
                        return "a query string is not allowed (a rule matches the path alone, whatever the query)";
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      strchr(path_chars, *c)))
                        return "the path has a space, a character outside printable ASCII or one reserved for "
                               "other uses (';')";
        }
        if (streq(p, "/"))
                return NULL;
        for (const char *s = p + 1;; s++) {
                size_t n = strcspn(s, "/");
                if (n == 0)
                        return "empty path segments ('//') and a trailing '/' are not allowed";
                if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return "dot segments ('.', '..') are not allowed";
                if (memchr(s, '*', n) && n != 1)
                        return "'*' matches a whole segment: it must be one alone between '/'s";
                s += n;
                if (!*s)
                        return NULL;
        }
}

const char *aj_key_path_rule_problem(const char *rule)
{
        if (!rule || !*rule)
                return "empty: expected \"METHOD /path\"";
        if (strlen(rule) > AJ_KEY_PATH_RULE_MAX)
                return "too long (at most 256 bytes)";
        const char *sp = strchr(rule, ' ');
        if (!sp)
                return "expected \"METHOD /path\", the method and the path separated by one space";
        if (!known_method(rule, (size_t)(sp - rule)))
                return "the method must be GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or \"*\" (any)";
        return path_problem(sp + 1);
}

/* A rule's segment against a request's: '*' is any one (never an empty one). */
static bool segment_matches(const char *rule, size_t rn, const char *path, size_t pn)
{
        if (rn == 1 && rule[0] == '*')
                return pn > 0;
        return rn == pn && strncasecmp(rule, path, rn) == 0;
}

/* The path as matched: canonical (else NULL), without its query and one trailing '/'. */
static const char *matched_path(const char *path, size_t *ret_len)
{
        if (!path || aj_gw_target_not_canonical(path, strlen(path)))
                return NULL;
        size_t len = strcspn(path, "?");
        if (len > 1 && path[len - 1] == '/')
                len--;
        *ret_len = len;
        return path;
}

bool aj_key_path_rule_matches(const char *rule, const char *method, const char *path)
{
        const char *sp = rule ? strchr(rule, ' ') : NULL;
        size_t plen;
        if (!sp || !method || !(path = matched_path(path, &plen)))
                return false;
        size_t ml = (size_t)(sp - rule);
        if (!(ml == 1 && rule[0] == '*') && !(strlen(method) == ml && memcmp(method, rule, ml) == 0))
                return false;
        const char *r = sp + 1;
        size_t rl = strlen(r), ri = 0, pi = 0;
        /* Both are at a '/': compare the segments after it, one by one. */
        while (ri < rl && pi < plen) {
                ri++, pi++;
                size_t rn = strcspn(r + ri, "/");
                const char *slash = memchr(path + pi, '/', plen - pi);
                size_t pn = slash ? (size_t)(slash - path - pi) : plen - pi;
                if (!segment_matches(r + ri, rn, path + pi, pn))
                        return false;
                ri += rn, pi += pn;
        }
        return ri >= rl && pi >= plen;
}

bool aj_key_path_default(AjGatewayApi api, const char *method, const char *path)
{
        size_t plen;
        if (!method || !matched_path(path, &plen))
                return false;
        AjLlmApi which;
        if (streq(method, "POST") &&
            aj_llm_api_from_path(api == AJ_GATEWAY_API_OPENAI ? "openai" : "anthropic", path, &which) >= 0)
                return true;
        for (size_t i = 0; i < ARRAY_SIZE(default_reads); i++)
                if (aj_key_path_rule_matches(default_reads[i], method, path))
                        return true;
        return false;
}

bool aj_key_path_allowed(AjGatewayApi api, char *const *rules, const char *method, const char *path)
{
        if (aj_key_path_default(api, method, path))
                return true;
        for (size_t i = 0; rules && rules[i]; i++)
                if (aj_key_path_rule_matches(rules[i], method, path))
                        return true;
        return false;
}
