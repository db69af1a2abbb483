/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where a request lets the provider connect for the agent (usage.h AjLlmReachList): the
 * servers of Anthropic's MCP connector (mcp_servers[].url), a Responses "mcp" tool's
 * server_url, the domains of a web_fetch tool's allowed_domains, the conversation's images and
 * files given by URL, each a host to judge against the run's network policy; and what bounds
 * no host the gateway reads (a web_fetch without allowed_domains, a connector_id, a tool type
 * it does not know, a stored prompt, a member it cannot read), which only llm.provider_fetch
 * lets through. xAI's collections_search (the documents the account stored there) is the one
 * tool the gateway does not meter that reaches no host. Tool types are matched as usage.c
 * matches them for billing: any letter case, any version, under a namespace. Pure: the
 * supervisor judges (src/supervisor/llm-meter.c); docs/gateway.md "Provider-side fetching".
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/usage-internal.h"
#include "util/macros.h"

/* Longest host kept: a name is at most 253 bytes (src/net.h); anything longer is no host. */
#define MAX_HOST 253

static void add(AjLlmReachList *l, char *what, const char *host, size_t host_len, uint16_t port, bool domain)
{
        /* A host already named is judged once (a conversation's images from one host). */
        for (size_t i = 0; host && i < l->n; i++)
                if (l->items[i].host && strlen(l->items[i].host) == host_len &&
                    memcmp(l->items[i].host, host, host_len) == 0 && l->items[i].port == port &&
                    l->items[i].domain == domain) {
                        free(what);
                        return;
                }
        if (l->n >= ARRAY_SIZE(l->items)) {
                l->more = true;
                free(what);
                return;
        }
        AjLlmReach *e = &l->items[l->n];
        *e = (AjLlmReach){ .what = what, .port = port, .domain = domain };
        if (!what || (host && !(e->host = strndup(host, host_len)))) {
                free(what);
                free(e->host);
                *e = (AjLlmReach){};
                l->more = true; /* out of memory: refused as an unread item would be */
                return;
        }
        l->n++;
}

_printf_(1, 2) static char *shown(const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* Reaches no host the gateway can name: judged as any host. */
static void add_any(AjLlmReachList *l, char *what) { add(l, what, NULL, 0, 0, false); }

static bool digits(const char *s, size_t n, uint16_t *ret)
{
        unsigned long v = 0;
        if (n == 0 || n > 5)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned long)(s[i] - '0');
        }
        if (v == 0 || v > 65535)
                return false;
        *ret = (uint16_t)v;
        return true;
}

/* "host[:port]" or "[v6][:port]", ending at `end`: the host (brackets dropped) and the port
 * (`dflt` when none). false for anything else. */
static bool host_port(const char *s, const char *end, uint16_t dflt, const char **ret_host, size_t *ret_len,
                      uint16_t *ret_port)
{
        const char *host = s, *host_end, *colon;
        if (*s == '[') {
                const char *close = memchr(s, ']', (size_t)(end - s));
                if (!close)
                        return false;
                host = s + 1;
                host_end = close;
                char v6[INET6_ADDRSTRLEN];
                struct in6_addr a;
                if ((size_t)(close - host) >= sizeof(v6))
                        return false;
                memcpy(v6, host, (size_t)(close - host));
                v6[close - host] = 0;
                if (inet_pton(AF_INET6, v6, &a) != 1)
                        return false; /* "[name]", a zone: not a host a URL parser reads */
                colon = close + 1 < end ? close + 1 : NULL;
                if (colon && *colon != ':')
                        return false;
        } else {
                colon = memchr(s, ':', (size_t)(end - s));
                host_end = colon ? colon : end;
        }
        *ret_port = dflt;
        if (colon && !digits(colon + 1, (size_t)(end - colon - 1), ret_port))
                return false;
        *ret_host = host;
        *ret_len = (size_t)(host_end - host);
        return *ret_len > 0 && *ret_len <= MAX_HOST;
}

/* Characters a URL parser strips or reads otherwise than we would: any of them, and the URL
 * is not read (fail closed). */
static bool plain_text(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f || *p == '\\')
                        return false;
        return true;
}

/* An http(s) URL's host and port: no user info (parsers differ on which '@' ends it), no
 * character a parser would strip. false when it is not one. */
static bool url_host(const char *url, const char **ret_host, size_t *ret_len, uint16_t *ret_port)
{
        uint16_t dflt;
        const char *rest;
        if (!plain_text(url))
                return false;
        if (strncasecmp(url, "https://", 8) == 0)
                dflt = 443, rest = url + 8;
        else if (strncasecmp(url, "http://", 7) == 0)
                dflt = 80, rest = url + 7;
        else
                return false;
        const char *end = rest + strcspn(rest, "/?#");
        if (memchr(rest, '@', (size_t)(end - rest)))
                return false;
        return host_port(rest, end, dflt, ret_host, ret_len, ret_port);
}

/* A server the provider connects to at `url` (a JSON value), named `what` (taken). */
static void add_url(AjLlmReachList *l, char *what, json_t *url)
{
        const char *host;
        size_t len;
        uint16_t port;
        if (json_is_string(url) && url_host(json_string_value(url), &host, &len, &port))
                add(l, what, host, len, port, false);
        else
                add_any(l, what); /* no URL the gateway reads: the provider may read one */
}

/* An allowed_domains entry: "example.com", with a port or a path ("example.com/docs"), no
 * scheme; taken as that host and its subdomains, on `port` or 443. */
static void add_domain(AjLlmReachList *l, char *what, json_t *domain)
{
        const char *s = json_string_value(domain), *host;
        size_t len;
        uint16_t port;
        if (s && plain_text(s) && !strchr(s, '@') && host_port(s, s + strcspn(s, "/?#"), 443, &host, &len, &port))
                add(l, what, host, len, port, true);
        else
                add_any(l, what);
}

/* Anthropic's web_fetch (any version): the hosts of its allowed_domains; without them, any.
 * Under a namespace (OpenRouter's "openrouter:web_fetch") it has no such member: any. */
static void web_fetch(AjLlmReachList *l, json_t *tool, size_t i, const char *type, bool namespaced)
{
        json_t *domains = json_object_get(tool, "allowed_domains"), *d;
        size_t k;
        if (namespaced || !json_is_array(domains) || json_array_size(domains) == 0) {
                add_any(l, shown("tools[%zu] \"%.64s\" without allowed_domains", i, type));
                return;
        }
        json_array_foreach (domains, k, d)
                add_domain(l, shown("tools[%zu] \"%.64s\" allowed_domains[%zu]", i, type, k), d);
}

/* The Responses API's remote MCP tool ("mcp", and any other type so beginning but Anthropic's
 * "mcp_toolset", which names a server of mcp_servers): its server_url, its connector_id (a
 * service the provider reaches on its own, at no host the request names), either or both. */
static void mcp_tool(AjLlmReachList *l, json_t *tool, size_t i, const char *type)
{
        json_t *url = json_object_get(tool, "server_url"), *connector = json_object_get(tool, "connector_id");
        bool has_url = url && !json_is_null(url), has_connector = connector && !json_is_null(connector);
        if (has_url || !has_connector)
                add_url(l, shown("tools[%zu] \"%.64s\" server_url", i, type), url);
        if (has_connector)
                add_any(l, shown("tools[%zu] \"%.64s\" connector_id %.64s", i, type,
                                 json_is_string(connector) ? json_string_value(connector) : "(not a string)"));
}

/* Inline content, which the provider decodes and does not fetch: a "data:" URL, or base64
 * (no ':' or '.' that could make it a URL of a host). */
static bool inline_data(const char *s)
{
        if (strncasecmp(s, "data:", 5) == 0)
                return true;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (!isalnum(*p) && !strchr("+/=-_\r\n", *p))
                        return false;
        return true;
}

static bool url_key(const char *key)
{
        size_t n = key ? strlen(key) : 0;
        return n >= 4 && strcmp(key + n - 4, "_url") == 0;
}

/* Whether the string member `key` of `parent` (itself member `pkey` of its own object; for an
 * array's element `key` is NULL and `pkey` the array's) is a place the provider reads content
 * from: a URL it fetches or inline data. Not only the shapes one provider documents but every
 * shape one of them takes (so a provider reading another is not a way past): any member named
 * "..._url" (Chat's image_url, as an object or a string, video_url, audio_url, Mistral's
 * document_url, Responses' image_url and file_url), a "url" in one (`{"url": ...}`) or in a
 * "url" source (Anthropic's), an array's element under one, and the data members of an
 * image, file or audio part (usage.c aj_llm_blob_at(): "file_data" OpenRouter also takes as a
 * URL). A file id is read from the provider's own store. */
static bool fetched_at(const char *key, json_t *parent, const char *pkey)
{
        if (!key)
                return url_key(pkey);
        if (streq(key, "file_id"))
                return false;
        if (url_key(key) || aj_llm_blob_at(key, parent, pkey))
                return true;
        const char *type = json_string_value(json_object_get(parent, "type"));
        return streq(key, "url") && (url_key(pkey) || (type && strcasecmp(type, "url") == 0));
}

/* The conversation's images, documents, files, audio and video given by URL: the provider
 * fetches each (fetched_at()). Inline data is not fetched; anything else there is a URL, judged
 * as one (a scheme or shape url_host() does not read: any host). */
static void media_reach(json_t *v, const char *key, json_t *parent, const char *pkey, AjLlmReachList *l)
{
        const char *k;
        json_t *e;
        size_t i;
        if (json_is_object(v)) {
                json_object_foreach (v, k, e)
                        media_reach(e, k, v, key, l);
        } else if (json_is_array(v)) {
                json_array_foreach (v, i, e)
                        media_reach(e, NULL, NULL, key, l);
        } else if (json_is_string(v) && fetched_at(key, parent, pkey) && !inline_data(json_string_value(v))) {
                add_url(l, shown("an image or file by URL (\"%s\")", key ? key : pkey), v);
        }
}

static void tools_reach(AjLlmReachList *l, json_t *tools)
{
        json_t *tool;
        size_t i;
        if (!tools || json_is_null(tools))
                return;
        if (!json_is_array(tools)) {
                add_any(l, shown("\"tools\" that is not an array"));
                return;
        }
        json_array_foreach (tools, i, tool) {
                json_t *t = json_object_get(tool, "type");
                bool namespaced;
                const char *type = aj_llm_tool_type(tool, &namespaced);
                if (!json_is_object(tool))
                        add_any(l, shown("tools[%zu] that is not an object", i));
                else if (!t || json_is_null(t))
                        continue; /* a client's tool (Anthropic's custom tools name no type) */
                else if (!type)
                        add_any(l, shown("tools[%zu] whose type is not a string", i));
                else if (strncasecmp(type, "web_fetch", 9) == 0)
                        web_fetch(l, tool, i, json_string_value(t), namespaced);
                else if (!namespaced && strncasecmp(type, "image_generation", 16) == 0)
                        media_reach(tool, "tools", NULL, NULL, l); /* its input_image_mask's image_url */
                else if (!namespaced && strncasecmp(type, "mcp", 3) == 0 && strncasecmp(type, "mcp_toolset", 11) != 0)
                        mcp_tool(l, tool, i, json_string_value(t));
                else if (!aj_llm_tool_known(tool) && strcasecmp(type, "collections_search") != 0)
                        add_any(l, shown("tools[%zu] of a type the gateway does not know, \"%.64s\"", i,
                                         json_string_value(t)));
        }
}

static void mcp_servers_reach(AjLlmReachList *l, json_t *servers)
{
        json_t *server;
        size_t i;
        if (!servers || json_is_null(servers))
                return;
        if (!json_is_array(servers)) {
                add_any(l, shown("\"mcp_servers\" that is not an array"));
                return;
        }
        json_array_foreach (servers, i, server)
                add_url(l, shown("mcp_servers[%zu].url", i), json_object_get(server, "url"));
}

/* xAI's Live Search (search_parameters.sources): a search of the web, news or X is a search
 * (docs/gateway.md "What the allowlist does not cover"), but an "rss" source's links are feeds
 * the provider fetches; a source of another type is judged by its links, or as any host. */
static void live_search_reach(AjLlmReachList *l, json_t *params)
{
        json_t *sources = json_object_get(params, "sources"), *source, *link;
        size_t i, k;
        if (!params || json_is_null(params) || !sources || json_is_null(sources))
                return;
        if (!json_is_array(sources)) {
                add_any(l, shown("\"search_parameters\" \"sources\" that is not an array"));
                return;
        }
        json_array_foreach (sources, i, source) {
                const char *type = json_string_value(json_object_get(source, "type"));
                json_t *links = json_object_get(source, "links");
                if (type &&
                    (strcasecmp(type, "web") == 0 || strcasecmp(type, "news") == 0 || strcasecmp(type, "x") == 0))
                        continue;
                if (!json_is_array(links) || json_array_size(links) == 0)
                        add_any(l, shown("search_parameters.sources[%zu] without links", i));
                json_array_foreach (links, k, link)
                        add_url(l, shown("search_parameters.sources[%zu].links[%zu]", i, k), link);
        }
}

/* A container the provider runs the model's commands in (the Responses API's hosted shell and
 * code interpreter, a container created by POST /v1/containers), whose network_policy lets it
 * reach the internet: "disabled" (the default) reaches nothing, an "allowlist" its
 * allowed_domains (domains as web_fetch's), anything else any host. Looked for in every
 * object under `v`. */
static void container_reach(json_t *v, AjLlmReachList *l)
{
        const char *k;
        json_t *e;
        size_t i;
        if (json_is_array(v)) {
                json_array_foreach (v, i, e)
                        container_reach(e, l);
                return;
        }
        if (!json_is_object(v))
                return;
        json_t *policy = json_object_get(v, "network_policy");
        const char *type = json_string_value(json_object_get(policy, "type"));
        json_t *domains = json_object_get(policy, "allowed_domains"), *d;
        bool disabled = !policy || json_is_null(policy) || (type && strcasecmp(type, "disabled") == 0);
        if (!disabled &&
            (!type || strcasecmp(type, "allowlist") != 0 || !json_is_array(domains) || json_array_size(domains) == 0))
                add_any(l, shown("a container's network_policy other than \"disabled\" or an allowlist"));
        else if (!disabled)
                json_array_foreach (domains, i, d)
                        add_domain(l, shown("a container's network_policy allowed_domains[%zu]", i), d);
        json_object_foreach (v, k, e)
                container_reach(e, l);
}

/* The servers and tools one request (`root`) lets the provider connect to. */
static void servers_reach(json_t *root, AjLlmReachList *l)
{
        mcp_servers_reach(l, json_object_get(root, "mcp_servers"));
        tools_reach(l, json_object_get(root, "tools"));
        live_search_reach(l, json_object_get(root, "search_parameters"));
}

void aj_llm_reach_of(AjLlmApi api, json_t *root, AjLlmReachList *l)
{
        servers_reach(root, l);
        container_reach(json_object_get(root, "tools"), l);
        media_reach(json_object_get(root, "messages"), "messages", root, NULL, l);
        media_reach(json_object_get(root, "input"), "input", root, NULL, l);
        json_t *prompt = json_object_get(root, "prompt");
        if (api == AJ_LLM_API_OPENAI_RESPONSES && prompt && !json_is_null(prompt))
                add_any(l, shown("a stored \"prompt\", whose tools the request does not show"));
}

/* Every object under `v` read as a request's servers, tools and stored prompt (a batch holds
 * requests at any depth; a model call sent to a path the gateway takes for another API, such
 * as "/v1/responses/.", is read as one too). */
static void servers_anywhere(json_t *v, AjLlmReachList *l)
{
        const char *k;
        json_t *e;
        size_t i;
        if (json_is_object(v)) {
                servers_reach(v, l);
                /* A stored prompt (Responses; a legacy completion's prompt is a string). */
                if (json_is_object(json_object_get(v, "prompt")))
                        add_any(l, shown("a stored \"prompt\", whose tools the request does not show"));
                json_object_foreach (v, k, e)
                        servers_anywhere(e, l);
        } else if (json_is_array(v)) {
                json_array_foreach (v, i, e)
                        servers_anywhere(e, l);
        }
}

int aj_llm_body_reach(const void *body, size_t len, AjLlmReachList *ret)
{
        const char *why;
        int r = aj_llm_json_bounded(body, len, &why);
        if (r < 0)
                return r;
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (!root) {
                /* JSON that repeats a key: the provider might read the other one. */
                json_t *any = json_loadb(body, len, JSON_DECODE_ANY, NULL);
                json_decref(any);
                return any ? -EBADMSG : -EINVAL;
        }
        /* A body of an API the gateway does not know: any URL in it (an image edit's images, a
         * webhook's), not only a conversation's, is one the provider may connect to. */
        servers_anywhere(root, ret);
        container_reach(root, ret);
        media_reach(root, NULL, NULL, NULL, ret);
        json_decref(root);
        return 0;
}

void aj_llm_reach_done(AjLlmReachList *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].what);
                free(l->items[i].host);
        }
        *l = (AjLlmReachList){};
}
