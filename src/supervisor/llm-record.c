/* SPDX-License-Identifier: Apache-2.0 */
/* What the gateway keeps: run.json's per-model summary and, with "record": "full",
 * the bodies of each call, the keys redacted (llm.h). */
#include <errno.h>
#include <fcntl.h>
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
        if (!m && json_object_set_new(p, model, m = json_object()) < 0)
                return;
        add_count(m, "requests", 1);
        add_count(m, "gen_ai.usage.input_tokens", u->input);
        add_count(m, "gen_ai.usage.output_tokens", u->output);
        add_count(m, "gen_ai.usage.cached_tokens", u->cache_read);
        add_count(m, "cache_creation_tokens", u->cache_write);
        json_t *c = json_object_get(m, "cost_usd");
        json_object_set_new(m, "cost_usd",
                            json_real((c ? json_real_value(c) : 0) + (double)cost_pusd / AJ_PUSD_PER_USD));
}

/* `data` with every key replaced (malloc'd; NULL without memory). */
static char *redact(const AjSupLlm *l, const char *data, size_t len, size_t *ret_len)
{
        char *out = malloc(len + 1);
        size_t n = 0, size = len + 1;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t klen = 0;
                for (size_t k = 0; k < l->n_providers && !klen; k++)
                        if (l->keys[k] && l->keys[k][0] && strlen(l->keys[k]) <= len - i &&
                            memcmp(data + i, l->keys[k], strlen(l->keys[k])) == 0)
                                klen = strlen(l->keys[k]);
                const char *piece = klen ? REDACTED : data + i;
                size_t plen = klen ? strlen(REDACTED) : 1;
                if (n + plen >= size) {
                        char *b = realloc(out, size = size * 2 + plen);
                        if (!b) {
                                free(out);
                                return NULL;
                        }
                        out = b;
                }
                memcpy(out + n, piece, plen);
                n += plen;
                i += klen ? klen : 1;
        }
        *ret_len = n;
        return out;
}

static void write_body(AjSupLlm *l, int dirfd, const char *name, const char *data, size_t len, bool truncated)
{
        size_t n = 0;
        _cleanup_free_ char *clean = redact(l, data ? data : "", len, &n);
        if (!clean)
                return;
        uint64_t room = l->record_bytes > l->recorded ? l->record_bytes - l->recorded : 0;
        if (n > room) {
                n = room;
                truncated = true;
        }
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

void aj_sup_llm_record(AjSupLlm *l, uint64_t id, const char *request, size_t request_len, const char *response,
                       size_t response_len, bool truncated)
{
        char dir[4096], name[64];
        if (aj_run_file_path(l->run_dir, AJ_RUN_DIR_LLM, dir, sizeof(dir)) < 0)
                return (void)aj_log_errno(-ENAMETOOLONG, "Cannot create '%s/%s'", l->run_dir, AJ_RUN_DIR_LLM);
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return (void)aj_log_errno(-errno, "Cannot create '%s'", dir);
        _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0)
                return (void)aj_log_errno(-errno, "Cannot open '%s'", dir);
        snprintf(name, sizeof(name), "%llu.request.json", (unsigned long long)id);
        write_body(l, dirfd, name, request, request_len, false);
        snprintf(name, sizeof(name), "%llu.response", (unsigned long long)id);
        write_body(l, dirfd, name, response, response_len, truncated);
}
