/* SPDX-License-Identifier: Apache-2.0 */
/* What the gateway keeps: run.json's per-model summary and each call's response body
 * (unless "record" is "off"; with "full" its request body too), the keys redacted
 * (llm.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "run-record.h"
#include "supervisor/llm.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/outbuf.h"

#define REDACTED "[REDACTED]"

static void add_count(json_t *o, const char *key, uint64_t n)
{
        json_t *v = json_object_get(o, key);
        json_object_set_new(o, key, json_integer((json_int_t)((v ? (uint64_t)json_integer_value(v) : 0) + n)));
}

void aj_sup_llm_account(AjSupLlm *l, const char *provider, const char *model, const AjMeterUsage *u, uint64_t cost_pusd)
{
        if (!l->summary && !(l->summary = json_object()))
                return;
        json_t *p = json_object_get(l->summary, provider);
        if (!p && json_object_set_new(l->summary, provider, p = json_object()) < 0)
                return;
        json_t *m = json_object_get(p, model);
        if (!m && l->summary_models >= AJ_SUP_LLM_SUMMARY_MODELS)
                m = json_object_get(p, model = AJ_SUP_LLM_SUMMARY_OTHER);
        if (!m) {
                if (json_object_set_new(p, model, m = json_object()) < 0)
                        return;
                l->summary_models++;
        }
        add_count(m, "requests", 1);
        add_count(m, "gen_ai.usage.input_tokens", u->input);
        add_count(m, "gen_ai.usage.output_tokens", u->output);
        add_count(m, "gen_ai.usage.cached_tokens", u->cache_read);
        add_count(m, "cache_creation_tokens", u->cache_write);
        if (u->web_searches)
                add_count(m, "web_searches", u->web_searches);
        for (int f = 0; f < AJ_TOOL_FEES; f++)
                if (u->tool_uses[f])
                        add_count(m, aj_tool_fee_field(f), u->tool_uses[f]);
        json_t *c = json_object_get(m, "cost_usd");
        json_object_set_new(m, "cost_usd",
                            json_real((c ? json_real_value(c) : 0) + (double)cost_pusd / AJ_PUSD_PER_USD));
}

uint64_t aj_sup_llm_record_room(const AjSupLlm *l)
{
        uint64_t used = l->recorded + l->held + 2 * AJ_SUP_LLM_RECORD_FILE_COST;
        return l->record_bytes > used ? l->record_bytes - used : 0;
}

/* `data` with every key replaced, in one pass per key occurrence (memmem from where each
 * key was last seen). NULL without memory. */
static char *redact(const AjSupLlm *l, const char *data, size_t len, size_t *ret_len)
{
        const char *next[AJ_LLM_MAX_PROVIDERS] = { 0 };
        size_t klen[AJ_LLM_MAX_PROVIDERS];
        for (size_t k = 0; k < l->n_providers; k++)
                klen[k] = l->keys[k] ? strlen(l->keys[k]) : 0;
        AjOutBuf o = { 0 };
        size_t i = 0;
        while (i < len) {
                const char *best = NULL;
                size_t blen = 0;
                for (size_t k = 0; k < l->n_providers; k++) {
                        if (!klen[k])
                                continue;
                        if (!next[k] || next[k] < data + i) {
                                next[k] = memmem(data + i, len - i, l->keys[k], klen[k]);
                                if (!next[k])
                                        next[k] = data + len; /* never again */
                        }
                        if (next[k] < data + len && (!best || next[k] < best || (next[k] == best && klen[k] > blen))) {
                                best = next[k];
                                blen = klen[k];
                        }
                }
                size_t upto = best ? (size_t)(best - data) : len;
                if (aj_outbuf_add(&o, data + i, upto - i, false, SIZE_MAX) < 0 ||
                    (best && aj_outbuf_add(&o, REDACTED, strlen(REDACTED), false, SIZE_MAX) < 0)) {
                        aj_outbuf_clear(&o);
                        return NULL;
                }
                i = best ? upto + blen : len;
        }
        if (aj_outbuf_add(&o, "", 1, false, SIZE_MAX) < 0) {
                aj_outbuf_clear(&o);
                return NULL;
        }
        *ret_len = o.len - 1;
        return o.data;
}

/* A body cut short (here, or when it was held) may end in the first bytes of a key that
 * redact() could not see whole: they go too. */
static size_t trim_key_prefix(const AjSupLlm *l, const char *data, size_t n)
{
        for (size_t k = 0; k < l->n_providers; k++) {
                size_t klen = l->keys[k] ? strlen(l->keys[k]) : 0;
                for (size_t p = klen > n + 1 ? n : klen - (klen > 0); p > 0; p--)
                        if (memcmp(data + n - p, l->keys[k], p) == 0) {
                                n -= p;
                                break;
                        }
        }
        return n;
}

/* No room for another file: said once, with the call that found it so. */
static void record_cut(AjSupLlm *l, uint64_t id)
{
        if (!l->record_cut && l->hooks && l->hooks->emit)
                l->hooks->emit(l->hooks->userdata, "llm.record_cut",
                               json_pack("{s:I, s:I}", "call_id", (json_int_t)id, "record_bytes",
                                         (json_int_t)l->record_bytes));
        l->record_cut = true;
}

/* Writes at most what is left of llm.record_bytes (a key cut by that limit was replaced
 * whole first, or its first bytes dropped: no part of it is written). No file at all once
 * nothing is left. */
static void write_body(AjSupLlm *l, uint64_t id, int dirfd, const char *name, const char *data, size_t len,
                       bool truncated)
{
        uint64_t room = l->record_bytes > l->recorded ? l->record_bytes - l->recorded : 0;
        if (room <= AJ_SUP_LLM_RECORD_FILE_COST)
                return record_cut(l, id);
        room -= AJ_SUP_LLM_RECORD_FILE_COST;
        l->recorded += AJ_SUP_LLM_RECORD_FILE_COST;
        /* Only what can be kept is redacted, plus the longest key's length so a key across
         * the limit is replaced whole. */
        size_t longest = 0;
        for (size_t k = 0; k < l->n_providers; k++)
                if (l->keys[k] && strlen(l->keys[k]) > longest)
                        longest = strlen(l->keys[k]);
        size_t take = len;
        if (take > room + longest)
                take = (size_t)room + longest;
        size_t n = 0;
        _cleanup_free_ char *clean = redact(l, data ? data : "", take, &n);
        if (!clean)
                return;
        if (n > room) {
                n = room;
                truncated = true;
        }
        if (take < len)
                truncated = true;
        if (truncated)
                n = trim_key_prefix(l, clean, n);
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                aj_log_errno(-errno, "Cannot keep the LLM call's body '%s'", name);
                return;
        }
        if (aj_write_all(fd, clean, n) < 0)
                aj_log_errno(-errno, "Cannot write the LLM call's body '%s'", name);
        l->recorded += n;
        if (truncated)
                (void)aj_write_all(fd, "\n[agentjail: cut at llm.record_bytes]\n",
                                   strlen("\n[agentjail: cut at llm.record_bytes]\n"));
}

void aj_sup_llm_record(AjSupLlm *l, uint64_t id, const char *request, size_t request_len, bool request_truncated,
                       const char *response, size_t response_len, bool response_truncated)
{
        char dir[4096], name[64];
        if (l->recorded + AJ_SUP_LLM_RECORD_FILE_COST >= l->record_bytes)
                return record_cut(l, id);
        if (aj_run_file_path(l->run_dir, AJ_RUN_DIR_LLM, dir, sizeof(dir)) < 0)
                return (void)aj_log_errno(-ENAMETOOLONG, "Cannot create '%s/%s'", l->run_dir, AJ_RUN_DIR_LLM);
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return (void)aj_log_errno(-errno, "Cannot create '%s'", dir);
        _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0)
                return (void)aj_log_errno(-errno, "Cannot open '%s'", dir);
        if (l->record_requests) {
                snprintf(name, sizeof(name), "%llu.request.json", (unsigned long long)id);
                write_body(l, id, dirfd, name, request, request_len, request_truncated);
        }
        snprintf(name, sizeof(name), "%llu.response", (unsigned long long)id);
        write_body(l, id, dirfd, name, response, response_len, response_truncated);
}
