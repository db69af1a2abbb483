/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tool calls a model asks for: each kept call's name, and the sha256 of its
 * arguments in the broker's canonical form (aj_meter_args_digest(): sorted keys,
 * compact), so that the repeat detector sees a model asking for the same call
 * again, whether it asks the gateway's provider or the broker. Arguments come
 * whole (a body, a ".done" event) or as fragments of JSON text streamed per call
 * (Anthropic input_json_delta, Chat tool_calls[].function.arguments, Responses
 * function_call_arguments.delta), kept up to AJ_LLM_MAX_TOOL_ARGS bytes per
 * model call. The digest:
 *   - arguments that parse as JSON: the canonical digest, as the broker's;
 *   - arguments that do not parse: sha256 of the bytes;
 *   - fragments past the cap: sha256 of the bytes kept, then a marker naming how
 *     many were kept of how many.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/usage-internal.h"
#include "meter.h"
#include "util/parse.h"

/* The id of a call as a broker request could carry it: a plain name, else none. */
static const char *usable_id(json_t *id)
{
        if (!json_is_string(id) || !aj_plain_name(json_string_value(id), json_string_length(id), AJ_LLM_MAX_CALL_ID))
                return NULL;
        return json_string_value(id);
}

int aj_llm_tool_call(AjLlmCall *c, const char *name, json_t *id, uint32_t key)
{
        AjLlmUsage *u = &c->u;
        const char *id_s = usable_id(id);
        /* A provider naming one id twice asks for one call (only kept calls are compared:
         * past the cap, calls are counted in tool_calls_total only). */
        for (size_t i = 0; id_s && i < u->n_tool_calls; i++)
                if (u->tool_call_ids[i] && streq(u->tool_call_ids[i], id_s))
                        return -1;
        u->tool_calls_total++;
        if (u->n_tool_calls >= AJ_LLM_MAX_TOOL_CALLS || !name)
                return -1;
        char *n = NULL, *d = NULL;
        aj_llm_set_name(&n, name);
        if (!n || (id_s && !(d = strdup(id_s)))) {
                free(n);
                return -1;
        }
        size_t i = u->n_tool_calls++;
        u->tool_calls[i] = n;
        u->tool_call_ids[i] = d;
        c->tool_args[i] = (AjLlmToolArgs){ .key = key };
        return (int)i;
}

int aj_llm_tool_find(const AjLlmCall *c, uint32_t key)
{
        for (size_t i = c->u.n_tool_calls; i > 0; i--)
                if (c->tool_args[i - 1].key == key)
                        return (int)(i - 1);
        return -1;
}

/* The arguments not done yet of call `key`, and their place in *ret_i. */
static AjLlmToolArgs *open_args(AjLlmCall *c, uint32_t key, size_t *ret_i)
{
        int i = aj_llm_tool_find(c, key);
        if (i < 0 || c->tool_args[i].done)
                return NULL;
        *ret_i = (size_t)i;
        return &c->tool_args[i];
}

static void digest_text(const char *text, size_t len, char out[AJ_SHA256_HEX_SIZE])
{
        if (!text)
                text = "";
        /* The broker refuses a request repeating a key: such arguments are digested as bytes,
         * and so are arguments past the bounds of what is parsed (the broker's own line
         * limit refuses those). */
        const char *why;
        json_t *v = aj_llm_json_bounded(text, len, &why) < 0
                            ? NULL
                            : json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        int r = v ? aj_meter_args_digest(v, out) : -1;
        json_decref(v);
        if (r == 0)
                return;
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256(text, len, d);
        aj_sha256_hex(d, out);
}

/* The fragments kept, then "\0agentjail: cut at KEPT of SEEN bytes". */
static void digest_cut(const AjLlmToolArgs *a, char out[AJ_SHA256_HEX_SIZE])
{
        AjSha256 h;
        char marker[80];
        uint8_t d[AJ_SHA256_SIZE];
        int n = snprintf(marker, sizeof(marker), "%cagentjail: cut at %zu of %llu bytes", '\0', a->len,
                         (unsigned long long)a->seen);
        aj_sha256_init(&h);
        aj_sha256_update(&h, a->buf ? a->buf : "", a->len);
        aj_sha256_update(&h, marker, (size_t)n);
        aj_sha256_final(&h, d);
        aj_sha256_hex(d, out);
}

static void close_args(AjLlmToolArgs *a)
{
        free(a->buf);
        a->buf = NULL;
        a->len = a->cap = 0;
        a->done = true;
}

/* The digest of call i from what was read: the fragments, else the JSON it started with. */
static void end_args(AjLlmCall *c, size_t i)
{
        AjLlmToolArgs *a = &c->tool_args[i];
        char *out = c->u.tool_args_sha256[i];
        if (a->seen > a->len)
                digest_cut(a, out);
        else if (a->seen > 0 || !a->have_json)
                digest_text(a->buf, a->len, out);
        else
                memcpy(out, a->json_sha256, AJ_SHA256_HEX_SIZE);
        close_args(a);
}

void aj_llm_tool_args_fragment(AjLlmCall *c, uint32_t key, const char *frag, size_t len)
{
        size_t i;
        AjLlmToolArgs *a = open_args(c, key, &i);
        if (!a || !frag || len == 0)
                return;
        a->seen += len;
        size_t room = AJ_LLM_MAX_TOOL_ARGS - c->tool_args_kept, keep = len < room ? len : room;
        if (keep == 0 || a->seen - len != a->len)
                return; /* past the cap, or a part already missing: the rest is not kept either */
        if (a->len + keep > a->cap) {
                size_t cap = a->cap ? a->cap : 256;
                while (cap < a->len + keep)
                        cap *= 2;
                char *b = realloc(a->buf, cap);
                if (!b)
                        return; /* not kept: the digest says the arguments were cut */
                a->buf = b;
                a->cap = cap;
        }
        memcpy(a->buf + a->len, frag, keep);
        a->len += keep;
        c->tool_args_kept += keep;
}

void aj_llm_tool_args_text(AjLlmCall *c, uint32_t key, const char *text, size_t len)
{
        size_t i;
        AjLlmToolArgs *a = open_args(c, key, &i);
        if (!a)
                return;
        digest_text(text, len, c->u.tool_args_sha256[i]);
        close_args(a);
}

void aj_llm_tool_args_json(AjLlmCall *c, uint32_t key, json_t *args)
{
        size_t i;
        AjLlmToolArgs *a = open_args(c, key, &i);
        if (a && aj_meter_args_digest(args, a->json_sha256) == 0)
                a->have_json = true;
}

void aj_llm_tool_args_end(AjLlmCall *c, uint32_t key)
{
        size_t i;
        if (open_args(c, key, &i))
                end_args(c, i);
}

void aj_llm_tool_args_finish(AjLlmCall *c)
{
        for (size_t i = 0; i < c->u.n_tool_calls; i++)
                if (!c->tool_args[i].done)
                        end_args(c, i);
}

bool aj_llm_call_tool_done(const AjLlmCall *c, size_t i) { return i < c->u.n_tool_calls && c->tool_args[i].done; }

/* ---- xAI's server-side tools ---- */

/* The names of the calls xAI's server-side tools make internally, by the family whose tool
 * enables them (docs.x.ai, "Tool Call Function Names vs Usage Categories"): its Responses API
 * lists them as custom_tool_call items, like a client's custom tool's call, which they are
 * not: xAI runs them and the client has nothing to run. view_image and view_x_video look at
 * what its searches found, billed as tokens only (docs.x.ai's tools pricing). */
static const struct {
        const char *name;
        unsigned families;
} xai_calls[] = {
        { "web_search", AJ_XAI_WEB },
        { "web_search_with_snippets", AJ_XAI_WEB },
        { "browse_page", AJ_XAI_WEB },
        { "x_user_search", AJ_XAI_X },
        { "x_keyword_search", AJ_XAI_X },
        { "x_semantic_search", AJ_XAI_X },
        { "x_thread_fetch", AJ_XAI_X },
        { "view_image", AJ_XAI_WEB | AJ_XAI_X | AJ_XAI_VIEW },
        { "view_x_video", AJ_XAI_X | AJ_XAI_VIEW },
        { "code_execution", AJ_XAI_CODE },
        { "collections_search", AJ_XAI_COLLECTIONS },
};

static unsigned xai_family(const char *type)
{
        static const struct {
                const char *type;
                unsigned family;
        } types[] = {
                { "web_search", AJ_XAI_WEB },
                { "x_search", AJ_XAI_X },
                { "code_interpreter", AJ_XAI_CODE },
                { "code_execution", AJ_XAI_CODE },
                { "collections_search", AJ_XAI_COLLECTIONS },
                { "file_search", AJ_XAI_COLLECTIONS },
        };
        for (size_t i = 0; type && i < ARRAY_SIZE(types); i++)
                if (strcasecmp(type, types[i].type) == 0)
                        return types[i].family;
        return 0;
}

/* A name the client declares: any letter case counts (fail closed: a provider matching names so
 * would run the client's tool). */
static void xai_declare(AjLlmCall *c, json_t *name)
{
        const char *n = json_string_value(name);
        for (size_t i = 0; n && i < ARRAY_SIZE(xai_calls); i++)
                if (strcasecmp(n, xai_calls[i].name) == 0)
                        c->xai_declared |= 1u << i;
}

static void xai_declare_tool(AjLlmCall *c, json_t *tool)
{
        xai_declare(c, json_object_get(tool, "name"));
        xai_declare(c, json_object_get(json_object_get(tool, "function"), "name"));
        xai_declare(c, json_object_get(json_object_get(tool, "custom"), "name"));
}

void aj_llm_xai_tool(AjLlmCall *c, json_t *tool)
{
        json_t *member;
        size_t i;
        c->xai_server_tools |= xai_family(json_string_value(json_object_get(tool, "type")));
        xai_declare_tool(c, tool);
        json_array_foreach (json_object_get(tool, "tools"), i, member)
                xai_declare_tool(c, member);
}

unsigned aj_llm_xai_server_call(const AjLlmCall *c, const char *name)
{
        /* Not where the client's tools may be some the request does not list (a stored prompt's,
         * OpenAI's "prompt": a custom tool named "web_search" there is the client's, its call
         * uncounted), nor at OpenAI's own API, whose server tools' items are of their own types. */
        if (c->u.stored_prompt || c->upstream == AJ_LLM_UPSTREAM_OPENAI)
                return 0;
        for (size_t i = 0; name && i < ARRAY_SIZE(xai_calls); i++)
                if (streq(name, xai_calls[i].name))
                        return c->xai_declared & (1u << i) || !(xai_calls[i].families & c->xai_server_tools)
                                       ? 0
                                       : xai_calls[i].families & (c->xai_server_tools | AJ_XAI_VIEW);
        return 0;
}
