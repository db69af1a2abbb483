/* SPDX-License-Identifier: Apache-2.0 */
/* The run's LLM gateway: keys, the agent's variables, serving and stopping (llm.h). */
#include "supervisor/llm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/tls.h"
#include "log.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/strv.h"

/* The variables an SDK reads, per API. */
static const char *base_url_var(AjLlmProviderApi api)
{
        return api == AJ_LLM_PROVIDER_OPENAI ? "OPENAI_BASE_URL" : "ANTHROPIC_BASE_URL";
}

static const char *key_var(AjLlmProviderApi api)
{
        return api == AJ_LLM_PROVIDER_OPENAI ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
}

static int check_key_file(const AjLlmProvider *pr, AjError *err)
{
        struct stat st;
        if (stat(pr->key_file, &st) < 0)
                return aj_error_set(err, -errno, "llm provider '%s': no key: cannot read key_file '%s': %s", pr->name,
                                    pr->key_file, strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size > AJ_SUP_LLM_MAX_KEY)
                return aj_error_set(err, -EINVAL,
                                    "llm provider '%s': key_file '%s' is not a regular file of 1 to %d bytes", pr->name,
                                    pr->key_file, AJ_SUP_LLM_MAX_KEY);
        if (st.st_mode & 077)
                aj_warning("llm provider '%s': key_file '%s' is readable by others (mode %04o); chmod 600 it", pr->name,
                           pr->key_file, (unsigned)(st.st_mode & 07777));
        return 0;
}

/* The value of $NAME into a pipe of its own, then wiped from our environment. */
static int stash_key_env(const char *name, int *ret_fd)
{
        char *v = getenv(name);
        size_t n = v ? strlen(v) : 0;
        int p[2];
        if (n > AJ_SUP_LLM_MAX_KEY)
                return -EINVAL;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        int r = aj_write_all(p[1], v, n);
        close(p[1]);
        if (r < 0) {
                close(p[0]);
                return r;
        }
        explicit_bzero(v, n);
        (void)unsetenv(name);
        *ret_fd = p[0];
        return 0;
}

int aj_sup_llm_check_keys(AjSupLlm *l, const AjProfile *p, AjError *err)
{
        if (!l->key_fd_set) {
                for (size_t i = 0; i < AJ_LLM_MAX_PROVIDERS; i++)
                        l->key_fd[i] = -1;
                l->key_fd_set = true;
        }
        if (l->no_keys)
                return 0;
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                const AjLlmProvider *pr = &p->llm_providers[i];
                if (pr->key_file) {
                        int r = check_key_file(pr, err);
                        if (r < 0)
                                return r;
                } else if (pr->key_env) {
                        const char *v = getenv(pr->key_env);
                        if (!v || !*v)
                                return aj_error_set(err, -ENOKEY,
                                                    "llm provider '%s': no key: $%s is not set in agentjail's "
                                                    "environment",
                                                    pr->name, pr->key_env);
                        if (i < AJ_LLM_MAX_PROVIDERS && l->key_fd[i] < 0) {
                                int r = stash_key_env(pr->key_env, &l->key_fd[i]);
                                if (r < 0)
                                        return aj_error_set(err, r, "llm provider '%s': cannot set $%s aside: %s",
                                                            pr->name, pr->key_env, strerror(-r));
                        }
                } else
                        return aj_error_set(err, -ENOKEY, "llm provider '%s': no key_env or key_file", pr->name);
        }
        return 0;
}

bool aj_sup_llm_is_key_env(const AjProfile *p, const char *name, size_t len)
{
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                const char *k = p->llm_providers[i].key_env;
                if (k && strlen(k) == len && strncmp(k, name, len) == 0)
                        return true;
        }
        return false;
}

int aj_sup_llm_env(const AjProfile *p, const char *run_id, char ***env)
{
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                const AjLlmProvider *pr = &p->llm_providers[i];
                /* The first provider of an API owns the SDK's standard variables. */
                bool first = true;
                for (size_t j = 0; j < i; j++)
                        if (p->llm_providers[j].api == pr->api)
                                first = false;
                if (!first)
                        continue;
                const char *suffix = pr->api == AJ_LLM_PROVIDER_OPENAI ? "/v1" : "";
                char *kv;
                if (asprintf(&kv, "%s=http://127.0.0.1:%d/%s%s", base_url_var(pr->api), AJ_GATEWAY_PORT, pr->name,
                             suffix) < 0 ||
                    aj_strv_consume(env, kv) < 0)
                        return -ENOMEM;
                if (asprintf(&kv, "%s=agentjail-gateway-%s", key_var(pr->api), run_id) < 0 ||
                    aj_strv_consume(env, kv) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The host of "scheme://host[:port][/path]" ("[v6]" without its brackets). */
static char *url_host(const char *url)
{
        const char *h = strstr(url, "://");
        if (!h)
                return NULL;
        h += 3;
        if (*h == '[') {
                const char *e = strchr(h, ']');
                return e ? strndup(h + 1, (size_t)(e - h - 1)) : NULL;
        }
        return strndup(h, strcspn(h, ":/"));
}

/* The port of a url the profile checked (aj_llm_url_problem): its own, or its scheme's. */
static uint16_t url_port(const char *url)
{
        const char *h = strstr(url, "://");
        const char *end = h ? h + 3 + strcspn(h + 3, "/") : url;
        const char *colon = h ? memrchr(h + 3, ':', (size_t)(end - h - 3)) : NULL;
        if (colon && !memchr(colon, ']', (size_t)(end - colon)))
                return (uint16_t)strtoul(colon + 1, NULL, 10);
        return strncmp(url, "https://", 8) == 0 ? 443 : 80;
}

int aj_sup_llm_reserved_hosts(const AjProfile *p, char ***ret, uint16_t **ret_ports)
{
        _cleanup_strv_free_ char **hosts = NULL;
        _cleanup_free_ uint16_t *ports = calloc(p->n_llm_providers + 1, sizeof(*ports));
        if (!ports)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                char *h = url_host(p->llm_providers[i].url);
                if (!h || aj_strv_consume(&hosts, h) < 0)
                        return -ENOMEM;
                ports[i] = url_port(p->llm_providers[i].url);
        }
        *ret = TAKE_PTR(hosts);
        *ret_ports = TAKE_PTR(ports);
        return 0;
}

/* key_file: whole, bounded, a trailing newline stripped. */
static int read_key_file(const AjLlmProvider *pr, char **ret, AjError *err)
{
        char *buf = NULL;
        size_t n = 0;
        int r = aj_read_file(pr->key_file, AJ_SUP_LLM_MAX_KEY, &buf, &n);
        if (r < 0)
                return aj_error_set(err, r, "llm provider '%s': cannot read key_file '%s': %s", pr->name, pr->key_file,
                                    strerror(-r));
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        if (n == 0 || memchr(buf, '\0', n) || strpbrk(buf, "\r\n")) {
                explicit_bzero(buf, n);
                free(buf);
                return aj_error_set(err, -EINVAL, "llm provider '%s': key_file '%s' does not hold one key line",
                                    pr->name, pr->key_file);
        }
        *ret = buf;
        return 0;
}

/* key_env: from the pipe it was set aside in before the clone (else, never set aside, from
 * our environment, then wiped from it and so from /proc/PID/environ). */
static int read_key_env(const AjLlmProvider *pr, int fd, char **ret, AjError *err)
{
        char buf[AJ_SUP_LLM_MAX_KEY + 1];
        const char *v;
        if (fd >= 0) {
                ssize_t n = aj_read_full(fd, buf, sizeof(buf) - 1);
                buf[n > 0 ? n : 0] = '\0';
                v = buf;
        } else {
                v = getenv(pr->key_env);
        }
        int r = 0;
        if (!v || !*v)
                r = aj_error_set(err, -ENOKEY,
                                 "llm provider '%s': no key: $%s is not set in agentjail's "
                                 "environment",
                                 pr->name, pr->key_env);
        else if (strlen(v) > AJ_SUP_LLM_MAX_KEY || strpbrk(v, "\r\n"))
                r = aj_error_set(err, -EINVAL, "llm provider '%s': $%s does not hold one key", pr->name, pr->key_env);
        else if (!(*ret = strdup(v)))
                r = -ENOMEM;
        explicit_bzero(buf, sizeof(buf));
        return r;
}

static void wipe_key_envs(const AjProfile *p)
{
        for (size_t i = 0; i < p->n_llm_providers; i++) {
                const char *name = p->llm_providers[i].key_env;
                char *v = name ? getenv(name) : NULL;
                if (v) {
                        explicit_bzero(v, strlen(v));
                        (void)unsetenv(name);
                }
        }
}

int aj_sup_llm_init(AjSupLlm *l, const AjProfile *p, AjMeter *meter, const AjHooks *hooks, const char *run_dir,
                    AjError *err)
{
        int key_fd[AJ_LLM_MAX_PROVIDERS];
        bool key_fd_set = l->key_fd_set;
        bool no_keys = l->no_keys;
        memcpy(key_fd, l->key_fd, sizeof(key_fd));
        *l = (AjSupLlm){ .meter = meter,
                         .hooks = hooks,
                         .run_dir = run_dir,
                         .record_responses = p->llm_record != AJ_LLM_RECORD_OFF,
                         .record_requests = p->llm_record == AJ_LLM_RECORD_FULL,
                         .record_bytes = p->llm_record_bytes,
                         .provider_fetch = p->llm_provider_fetch,
                         .no_keys = no_keys };
        for (size_t i = 0; i < AJ_LLM_MAX_PROVIDERS; i++)
                l->key_fd[i] = key_fd_set ? key_fd[i] : -1;
        l->key_fd_set = true;
        for (size_t i = 0; i < p->n_llm_providers && i < AJ_LLM_MAX_PROVIDERS; i++) {
                const AjLlmProvider *pr = &p->llm_providers[i];
                int r = no_keys        ? ((l->keys[i] = strdup("agentjail-replay-no-key")) ? 0 : -ENOMEM)
                        : pr->key_file ? read_key_file(pr, &l->keys[i], err)
                                       : read_key_env(pr, l->key_fd[i], &l->keys[i], err);
                if (l->key_fd[i] >= 0) {
                        close(l->key_fd[i]);
                        l->key_fd[i] = -1;
                }
                if (r < 0) {
                        wipe_key_envs(p);
                        return r;
                }
                l->names[i] = strdup(pr->name);
                l->urls[i] = strdup(pr->url);
                if (!l->names[i] || !l->urls[i] || (pr->ca_file && !(l->ca_files[i] = strdup(pr->ca_file))) ||
                    (pr->paths && !(l->paths[i] = aj_strv_copy(pr->paths)))) {
                        wipe_key_envs(p);
                        return -ENOMEM;
                }
                l->providers[i] = (AjGatewayProvider){
                        .name = l->names[i],
                        .api = pr->api == AJ_LLM_PROVIDER_OPENAI ? AJ_GATEWAY_API_OPENAI : AJ_GATEWAY_API_ANTHROPIC,
                        .url = l->urls[i],
                        .credential = l->keys[i],
                        .ca_file = l->ca_files[i],
                };
                l->n_providers = i + 1;
                if (strncmp(pr->url, "https://", 8) == 0) {
                        _cleanup_(aj_error_clear) AjError why = {};
                        int q = aj_gw_tls_load(&why);
                        if (q < 0) {
                                wipe_key_envs(p);
                                return aj_error_set(err, q, "llm provider '%s' (%s): %s", pr->name, pr->url,
                                                    aj_error_text(&why, q));
                        }
                }
        }
        wipe_key_envs(p);
        return 0;
}

int aj_sup_llm_start(AjSupLlm *l, int listen_fd, AjError *err)
{
        AjGatewayObserver obs;
        aj_sup_llm_observer(l, &obs);
        _cleanup_(aj_error_clear) AjError why = {};
        int r = aj_gateway_new(listen_fd, l->providers, l->n_providers, &obs, NULL, &l->gw, &why);
        /* Ours stay, wiped when freed: the recorded bodies are redacted with them. */
        if (r < 0)
                return aj_error_set(err, r, "Cannot start the LLM gateway: %s", aj_error_text(&why, r));
        return 0;
}

int aj_sup_llm_fd(const AjSupLlm *l) { return l->gw ? aj_gateway_fd(l->gw) : -1; }

void aj_sup_llm_dispatch(AjSupLlm *l)
{
        if (l->gw)
                (void)aj_gateway_dispatch(l->gw);
}

void aj_sup_llm_end(AjSupLlm *l) { l->ended = true; }

void aj_sup_llm_stop(AjSupLlm *l)
{
        aj_gateway_free(l->gw);
        l->gw = NULL;
}

void aj_sup_llm_done(AjSupLlm *l)
{
        aj_sup_llm_stop(l);
        for (size_t i = 0; i < AJ_LLM_MAX_PROVIDERS; i++) {
                if (l->keys[i]) {
                        explicit_bzero(l->keys[i], strlen(l->keys[i]));
                        free(l->keys[i]);
                }
                free(l->names[i]);
                free(l->urls[i]);
                free(l->ca_files[i]);
                l->keys[i] = l->names[i] = l->urls[i] = l->ca_files[i] = NULL;
                aj_strv_free(l->paths[i]);
                l->paths[i] = NULL;
                if (l->key_fd_set && l->key_fd[i] >= 0) {
                        close(l->key_fd[i]);
                        l->key_fd[i] = -1;
                }
        }
        aj_sup_llm_replay_close(l);
        json_decref(l->summary);
        l->summary = NULL;
        l->summary_models = 0;
        l->n_providers = 0;
}

json_t *aj_sup_llm_summary(const AjSupLlm *l) { return l->summary; }
