/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steps that prepare a run (their order is src/jail.c's): the profile and the run's
 * records, the gateway's keys set aside (before the first fork), the cgroup, the plans
 * (runtime dir, meters and allowlist, mounts, seccomp, environment, rlimits: made after the
 * clone, while the child makes its network namespace), the idmapped mount trees; and what
 * is made while the child builds its root (the output logs, the broker). Every step logs
 * its own failure once.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent-hooks.h"
#include "host-ids.h"
#include "log.h"
#include "ns.h"
#include "resolve.h"
#include "run.h"
#include "run-record.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/parse.h"
#include "util/strv.h"
#include "util/clock.h"
#include "workspace.h"

/* `run -vv` prints how long each start-up step took: start-up cost is a product feature. */
void aj_run_trace_step(const Run *run, const char *step)
{
        aj_debug("+%.3f ms %s", (double)(aj_now_monotonic_ns() - run->t0) / 1e6, step);
}

json_t *aj_run_strv_json(char *const *v)
{
        json_t *a = json_array();
        for (size_t i = 0; v && v[i]; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

json_t *aj_run_hooks_json(const Run *run)
{
        AjAgentKind agent;
        if (!run->opts->hooks || aj_agent_from_name(run->opts->hooks, &agent) < 0)
                return NULL;
        _cleanup_free_ char *command = NULL;
        if (aj_hook_command(agent, AJ_JAIL_BIN, AJ_JAIL_DIR "/" AJ_BROKER_SOCKET, &command) < 0)
                return NULL;
        return json_pack("{s:s, s:s?, s:s, s:i}", "agent", aj_agent_name(agent), "settings",
                         aj_hook_settings_path(agent), "command", command, "timeout", AJ_HOOK_TIMEOUT_S);
}

void aj_run_record_degraded(Run *run, const char *what, const char *why)
{
        aj_warning("%s is not enforced: %s", what, why);
        json_array_append_new(run->degraded, json_pack("{s:s, s:s}", "what", what, "why", why));
        aj_events_emit(run->events, "degraded", json_pack("{s:s, s:s}", "what", what, "why", why));
}

/* The gateway's variables win over the profile's own (a real key in env.set included). */
static int add_llm_env(Run *run, char ***env)
{
        _cleanup_strv_free_ char **llm = NULL;
        int r = aj_sup_llm_env(run->profile, run->id, &llm);
        if (r < 0)
                return r;
        for (size_t i = 0; llm && llm[i]; i++) {
                size_t klen = strcspn(llm[i], "=");
                for (size_t j = 0; *env && (*env)[j]; j++)
                        if (strncmp((*env)[j], llm[i], klen) == 0 && (*env)[j][klen] == '=') {
                                free((*env)[j]);
                                for (size_t k = j; (*env)[k]; k++)
                                        (*env)[k] = (*env)[k + 1];
                                break;
                        }
                if (aj_strv_push(env, llm[i]) < 0)
                        return -ENOMEM;
        }
        run->envp = TAKE_PTR(*env);
        return 0;
}

static int build_env(Run *run)
{
        const AjProfile *p = run->profile;
        _cleanup_strv_free_ char **env = NULL;
        int r = 0;

        for (size_t i = 0; i < p->env_pass.n; i++) {
                const char *v = getenv(p->env_pass.items[i]);
                /* A provider's key stays with the gateway, whatever env.pass says. */
                if (!v || aj_sup_llm_is_key_env(p, p->env_pass.items[i], strlen(p->env_pass.items[i])))
                        continue;
                char *kv;
                if (asprintf(&kv, "%s=%s", p->env_pass.items[i], v) < 0 || (r = aj_strv_consume(&env, kv)) < 0)
                        return -ENOMEM;
        }
        const char *home = p->home ? p->home : "/home/agent";
        const char *fixed[][2] = {
                { "HOME", home },       { "USER", "agent" },  { "LOGNAME", "agent" },
                { "SHELL", "/bin/sh" }, { "AGENTJAIL", "1" }, { "AGENTJAIL_RUN_ID", run->id },
        };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                char *kv;
                if (asprintf(&kv, "%s=%s", fixed[i][0], fixed[i][1]) < 0 || aj_strv_consume(&env, kv) < 0)
                        return -ENOMEM;
        }
        /* The profile's "set" comes last and wins over anything above. */
        for (size_t i = 0; i < p->env_set.n; i++) {
                const char *kv = p->env_set.items[i];
                size_t klen = strcspn(kv, "=");
                for (size_t j = 0; env && env[j]; j++)
                        if (strncmp(env[j], kv, klen) == 0 && env[j][klen] == '=') {
                                free(env[j]);
                                for (size_t k = j; env[k]; k++)
                                        env[k] = env[k + 1];
                                break;
                        }
                if (aj_strv_push(&env, kv) < 0)
                        return -ENOMEM;
        }
        bool has_path = false;
        for (size_t j = 0; env && env[j]; j++)
                if (strncmp(env[j], "PATH=", 5) == 0) {
                        /* `agentjail meter` is on the PATH, after everything the profile put there. */
                        char *np;
                        if (asprintf(&np, "%s:" AJ_JAIL_BIN, env[j]) < 0)
                                return -ENOMEM;
                        free(env[j]);
                        env[j] = np;
                        has_path = true;
                }
        if (!has_path && aj_strv_push(&env, "PATH=/usr/local/bin:/usr/bin:/bin:" AJ_JAIL_BIN) < 0)
                return -ENOMEM;
        if (aj_strv_push(&env, "AGENTJAIL_BROKER=" AJ_JAIL_DIR "/" AJ_BROKER_SOCKET) < 0)
                return -ENOMEM;
        if (run->net_policy) {
                static const char *const proxy_env[] = {
                        "HTTP_PROXY=http://127.0.0.1:3128",   "http_proxy=http://127.0.0.1:3128",
                        "HTTPS_PROXY=http://127.0.0.1:3128",  "https_proxy=http://127.0.0.1:3128",
                        "ALL_PROXY=socks5h://127.0.0.1:1080", "all_proxy=socks5h://127.0.0.1:1080",
                        "NO_PROXY=localhost,127.0.0.1",       "no_proxy=localhost,127.0.0.1",
                };
                for (size_t i = 0; i < ARRAY_SIZE(proxy_env); i++)
                        if (aj_strv_push(&env, proxy_env[i]) < 0)
                                return -ENOMEM;
        }
        return add_llm_env(run, &env);
}

static void add_rlimit(AjSpawnConfig *cfg, int resource, uint64_t value)
{
        /* Set already (the profile's): the lower of the two. */
        for (size_t i = 0; i < cfg->n_rlimits; i++)
                if (cfg->rlimits[i].resource == resource) {
                        if (value < cfg->rlimits[i].limit.rlim_cur)
                                cfg->rlimits[i].limit.rlim_cur = cfg->rlimits[i].limit.rlim_max = value;
                        return;
                }
        /* One slot per resource, and there are no more resources than slots. */
        _Static_assert(AJ_MAX_RLIMITS >= RLIM_NLIMITS, "a slot for every resource");
        if (cfg->n_rlimits >= AJ_MAX_RLIMITS)
                return;
        cfg->rlimits[cfg->n_rlimits].resource = resource;
        cfg->rlimits[cfg->n_rlimits].limit.rlim_cur = value;
        cfg->rlimits[cfg->n_rlimits].limit.rlim_max = value;
        cfg->n_rlimits++;
}

const char *aj_run_rlimit_name(int resource)
{
        switch (resource) {
        case RLIMIT_NOFILE:
                return "limits.nofile";
        case RLIMIT_NPROC:
                return "limits.nproc";
        case RLIMIT_FSIZE:
                return "limits.fsize";
        case RLIMIT_CORE:
                return "limits.core";
        case RLIMIT_SIGPENDING:
                return "the jail's share of RLIMIT_SIGPENDING";
        case RLIMIT_MSGQUEUE:
                return "the jail's share of RLIMIT_MSGQUEUE";
        case RLIMIT_MEMLOCK:
                return "the jail's share of RLIMIT_MEMLOCK";
        case RLIMIT_RTPRIO:
                return "the jail's RLIMIT_RTPRIO (0: no real-time policy)";
        case RLIMIT_NICE:
                return "the jail's RLIMIT_NICE (0: no nice below 0)";
        default:
                return "a resource limit";
        }
}

/* Nobody else may run as the jail's host ids (src/host-ids.h): refused, or with "host_ids"
 * in the profile's allow_degraded, *ret_shared says who may, to record. */
static int check_host_ids(Run *run, char **ret_shared)
{
        const AjProfile *p = run->profile;
        const char *where = p->path ? p->path : p->name;
        _cleanup_(aj_host_id_owners_done) AjHostIdOwners o = {};
        int r = aj_host_id_owners(run->host_uid, run->host_gid, &aj_host_id_files, &o);
        if (r < 0) {
                aj_error("%s: Refusing to start: cannot tell who else may run as user.host_uid %u, host_gid %u "
                         "(/etc/subuid, /etc/subgid, /etc/passwd, /etc/group): %s",
                         where, (unsigned)run->host_uid, (unsigned)run->host_gid, strerror(-r));
                return r;
        }
        if (!o.uid_owner && !o.gid_owner)
                return 0;
        _cleanup_free_ char *who = NULL;
        if (asprintf(&who, "%s%s%s", o.uid_owner ?: "", o.uid_owner && o.gid_owner ? "; " : "", o.gid_owner ?: "") < 0)
                return -ENOMEM;
        if (!(p->allow_degraded & AJ_DEGRADE_HOST_IDS)) {
                aj_error("%s: user.host_uid %u, host_gid %u: someone else may run as these ids: %s; they could "
                         "signal the jail's processes and own what it writes outside its workspace",
                         where, (unsigned)run->host_uid, (unsigned)run->host_gid, who);
                char eg[32] = "";
                if (o.free_id)
                        snprintf(eg, sizeof(eg), ", e.g. %lu", o.free_id);
                aj_error("Refusing to start (set user.host_uid and host_gid to ids nobody has%s, or add "
                         "\"host_ids\" to the profile's \"allow_degraded\")",
                         eg);
                return -EPERM;
        }
        *ret_shared = TAKE_PTR(who);
        return 0;
}

/* A root-started run's host ids, before anything uses them (the check below, the maps,
 * chowns, the broker socket): a slot of the pool of its own, or the profile's named ids,
 * shared (src/host-id-pool.h). The lock is in run->host_ids until run_free(); the watchdog,
 * forked next, holds it too. Fails closed: no run without its ids' lock. */
static int take_host_ids(Run *run)
{
        const AjProfile *p = run->profile;
        _cleanup_(aj_error_clear) AjError e = {};
        int r;
        if (p->host_ids_set) {
                r = aj_host_id_pool_share(AJ_HOST_ID_POOL_DIR, run->host_uid, run->host_gid, &run->host_ids, &e);
                if (r < 0)
                        return aj_log_errno(r, "%s: user.host_uid %u, host_gid %u: refusing to start: %s",
                                            p->path ? p->path : p->name, (unsigned)run->host_uid,
                                            (unsigned)run->host_gid, aj_error_text(&e, r));
                return 0;
        }
        unsigned long id = 0;
        r = aj_host_id_pool_take(AJ_HOST_ID_POOL_DIR, AJ_HOST_ID_POOL_SIZE, &run->host_ids, &id, &e);
        if (r < 0)
                return aj_log_errno(r, "Refusing to start: cannot take host ids of the run's own: %s",
                                    aj_error_text(&e, r));
        run->host_uid = (uid_t)id;
        run->host_gid = (gid_t)id;
        return 0;
}

/* A profile that names host ids asks for a jail that is not the operator: a rootless run's
 * is the invoker's uid (it signals the invoker's processes, owns what it writes outside the
 * workspace, shares the invoker's per-uid budgets). It ran so, the ids dropped without a
 * word; now it is refused, or with "host_ids" in allow_degraded *ret_shared says so, to
 * record. */
static int rootless_host_ids(Run *run, char **ret_shared)
{
        const AjProfile *p = run->profile;
        if (!p->host_ids_set)
                return 0;
        if (!(p->allow_degraded & AJ_DEGRADE_HOST_IDS)) {
                aj_error("%s: user.host_uid %u, host_gid %u: refusing to start: host ids need agentjail started as "
                         "root; a rootless run's jail is the invoking user (uid %u) on the host (add \"host_ids\" "
                         "to the profile's \"allow_degraded\" to run so)",
                         p->path ? p->path : p->name, (unsigned)p->host_uid, (unsigned)p->host_gid,
                         (unsigned)run->host_uid);
                return -EPERM;
        }
        if (asprintf(ret_shared,
                     "user.host_uid %u, host_gid %u not applied: a rootless run's jail is the invoking user (uid %u) on the host",
                     (unsigned)p->host_uid, (unsigned)p->host_gid, (unsigned)run->host_uid) < 0) {
                *ret_shared = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* The files the profile was loaded from are `want`, in order, or the run is refused: the run
 * resolves the extends chain's names again, in its workspace, whose ./profiles is on the
 * search path; a symlink there to a directory of the host's gave it a base nobody had checked
 * (attacker review 26). A replay's own profile, the text it parses (its scratch root's
 * profile.json, extending the given one), is not compared. `who` says who found `want`. */
static int check_chain(const Run *run, char *const *want, const char *who)
{
        char *const *files = run->profile->files;
        size_t k = run->opts->profile_text && files && files[0] ? 1 : 0;
        for (size_t w = 0;; k++, w++) {
                const char *have = files ? files[k] : NULL, *line = want ? want[w] : NULL;
                if (!have && !line)
                        return 0;
                if (have && line && streq(have, line))
                        continue;
                const char *parent = k > 0 && files ? files[k - 1] : NULL;
                if (parent)
                        aj_error("%s: extends: the chain resolves to '%s', not '%s' as %s (a name found elsewhere at "
                                 "the run's start: its workspace's ./profiles is on the search path); refusing a "
                                 "profile nobody checked",
                                 parent, have ? have : "nothing", line ? line : "nothing", who);
                else
                        aj_error("profile '%s' is not '%s' as %s; refusing a profile nobody checked",
                                 have ? have : "(none)", line ? line : "(none)", who);
                return -EPERM;
        }
}

/* The chain's files that were checked: agentjail eval's for its case (AJ_EVAL_PROFILE_ENV,
 * one a line) and replay's for the profile it was given (opts->profile_chain). */
static int check_profile_chain(const Run *run)
{
        const char *env = getenv(AJ_EVAL_PROFILE_ENV);
        if (env) {
                _cleanup_strv_free_ char **want = NULL;
                if (aj_strv_split_lines(env, &want) < 0)
                        return -ENOMEM;
                int r = check_chain(run, want, "agentjail eval loaded it when the suite started");
                if (r < 0)
                        return r;
        }
        if (run->opts->profile_chain)
                return check_chain(run, run->opts->profile_chain, "agentjail replay found it where it was asked for");
        return 0;
}

int aj_run_prepare(Run *run)
{
        const AjRunOptions *opts = run->opts;
        int r;

        r = aj_paths_resolve(&run->paths);
        if (r < 0)
                return aj_log_errno(r, "Cannot find a state directory (set AGENTJAIL_STATE_DIR)");

        AjError perr = { 0 };
        r = opts->profile_text ? aj_profile_parse(opts->profile_text, opts->profile, &run->profile, &perr)
                               : aj_profile_load(opts->profile ? opts->profile : "default", &run->profile, &perr);
        if (r < 0) {
                aj_error("%s", aj_error_text(&perr, r));
                aj_error_clear(&perr);
                return r;
        }

        for (char **n = opts->llm; n && *n; n++) {
                r = aj_profile_llm_enable(run->profile, *n, &perr);
                if (r < 0) {
                        aj_error("%s", aj_error_text(&perr, r));
                        aj_error_clear(&perr);
                        return r;
                }
        }
        if (opts->llm && (r = aj_profile_update_digest(run->profile)) < 0)
                return aj_log_errno(r, "Cannot digest the profile");
        if ((r = check_profile_chain(run)) < 0)
                return r;
        aj_run_trace_step(run, "profile loaded");
        run->cwd = getcwd(NULL, 0);
        if (!run->cwd)
                return aj_log_errno(-errno, "Cannot determine the current directory");
        run->rootless = geteuid() != 0;
        run->host_uid = run->rootless ? geteuid() : run->profile->host_uid;
        run->host_gid = run->rootless ? getegid() : run->profile->host_gid;
        _cleanup_free_ char *shared_ids = NULL;
        if (!run->rootless) {
                if ((r = take_host_ids(run)) < 0)
                        return r;
                aj_run_trace_step(run, "host ids taken");
                if ((r = check_host_ids(run, &shared_ids)) < 0)
                        return r;
        } else if ((r = rootless_host_ids(run, &shared_ids)) < 0)
                return r;

        if (aj_run_id_new(run->id) < 0)
                return aj_log_errno(-errno, "Cannot generate a run id");
        if (opts->ret_run_id)
                memcpy(opts->ret_run_id, run->id, sizeof(run->id));
        if (opts->replay_dir)
                aj_sup_llm_replay_keyless(&run->llm, !opts->replay_live);
        if (opts->name)
                run->name = strdup(opts->name);
        else {
                /* The command's basename, shown as the operator's verbs show text (util/format.h). */
                _cleanup_free_ char *tmp = strdup(opts->argv[0]);
                const char *base = tmp ? basename(tmp) : NULL;
                run->name = base ? aj_printable_dup(base, strlen(base), 0) : NULL;
        }
        if (!run->name)
                return -ENOMEM;

        /* Known before it exists, so the watchdog (forked next) can remove it. */
        run->runtime_dir = aj_runtime_dir_path(&run->paths, run->id);
        if (!run->runtime_dir)
                return -ENOMEM;
        _cleanup_(aj_error_clear) AjError st_err = {};
        r = aj_state_root_check(&run->paths, AJ_STATE_RUN, &st_err);
        if (r < 0) {
                aj_error("%s", aj_error_text(&st_err, r));
                return r;
        }
        r = aj_run_dir_create(&run->paths, run->id, &run->run_dir, &run->run_dir_lock);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the run directory under '%s/runs'", run->paths.state_root);
        /* First in it: without it the operator's verbs could not tell the run is live. */
        r = aj_run_live_hold(run->run_dir, &run->live_fd);
        if (r < 0)
                return aj_log_errno(r, "Failed to lock '%s/%s'", run->run_dir, AJ_RUN_FILE_LIVE);
        char path[4096];
        r = aj_run_file_path(run->run_dir, AJ_RUN_FILE_EVENTS, path, sizeof(path));
        if (r < 0)
                return aj_log_errno(r, "Failed to open the event log in '%s'", run->run_dir);
        r = aj_events_open(path, run->id, &run->events);
        if (r < 0) {
                aj_error("Failed to open the event log '%s': %s", path, aj_file_error_text(r));
                return r;
        }
        aj_events_set_agent_limit(run->events, aj_events_agent_share(run->profile->log_events_bytes));
        /* Before anything of the agent's can fill the disk (and before the watchdog, which
         * frees it for supervisor.lost). Without fallocate(2) there, the records have none. */
        r = aj_run_room_make(run->run_dir);
        if (r < 0 && r != -EOPNOTSUPP) {
                aj_error("Cannot keep room for the run's records in '%s/%s': %s", run->run_dir, AJ_RUN_FILE_ROOM,
                         aj_file_error_text(r));
                return r;
        }
        aj_events_set_room(run->events, aj_run_room_use, run);
        run->event_log = (AjSupEventLog){ .log = run->events, .run_dir = run->run_dir };
        aj_sup_sink_for_log(&run->event_log, &run->sink);
        if (shared_ids) {
                run->host_ids_shared = true;
                aj_run_record_degraded(run, "host_ids", shared_ids);
        }
        return 0;
}

/* <runtime>/<id>/jail: bound read-only at /run/agentjail in the jail (rootless, the
 * directory is owned by the agent's host uid), so the agent cannot replace the broker socket
 * or write there; the socket itself is the agent's. */
static int setup_jail_dir(Run *run)
{
        if (asprintf(&run->jail_dir, "%s/jail", run->runtime_dir) < 0)
                return -ENOMEM;
        if (mkdir(run->jail_dir, 0755) < 0)
                return aj_log_errno(-errno, "Failed to create '%s'", run->jail_dir);
        return 0;
}

/* <run dir>/workspace/{upper,work}: the overlay workspace's writes, kept with the run
 * for `agentjail diff | commit | discard`. Root-only until setup_idmap() hands the upper
 * root to the agent. */
static int make_overlay_dirs(Run *run)
{
        if (asprintf(&run->overlay_dir, "%s/%s", run->run_dir, AJ_RUN_DIR_WORKSPACE) < 0) {
                run->overlay_dir = NULL;
                return -ENOMEM;
        }
        char path[4096];
        if (mkdir(run->overlay_dir, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", run->overlay_dir);
        snprintf(path, sizeof(path), "%s/%s", run->overlay_dir, AJ_OVERLAY_UPPER);
        if (mkdir(path, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", path);
        snprintf(path, sizeof(path), "%s/%s", run->overlay_dir, AJ_OVERLAY_WORK);
        if (mkdir(path, 0700) < 0)
                return aj_log_errno(-errno, "Cannot create '%s'", path);
        return 0;
}

/* -ENOENT (no table: only the profile's prices apply) is a warning, other errors say why. */
static int load_price_table(void *userdata, AjPriceTable **ret)
{
        _cleanup_(aj_error_clear) AjError err = {};
        int r = aj_price_table_load_default(ret, &err);
        if (r == -ENOENT)
                aj_warning("No price table: %s; only the profile's prices apply", aj_error_text(&err, r));
        else if (r < 0)
                aj_error("Cannot read the price table: %s", aj_error_text(&err, r));
        return r;
}

/* The providers' hosts are the gateway's: reached directly, the key would be the agent's.
 * By name on every port, and at the addresses the names resolve to on the url's port (a
 * literal address would go around the name otherwise). The names are only looked up here:
 * the answers (DNS, up to 5 s) come while the jail builds its root, and are reserved
 * before the command runs (aj_run_reserve_llm_addresses). */
static int reserve_llm_hosts(Run *run)
{
        _cleanup_strv_free_ char **hosts = NULL;
        _cleanup_free_ uint16_t *ports = NULL;
        int r = aj_sup_llm_reserved_hosts(run->profile, &hosts, &ports);
        if (r < 0)
                return r;
        for (size_t i = 0; hosts && hosts[i]; i++) {
                r = aj_net_policy_reserve(run->net_policy, hosts[i], ports[i],
                                          "served by the run's LLM gateway: use $ANTHROPIC_BASE_URL or "
                                          "$OPENAI_BASE_URL (http://127.0.0.1:4100/PROVIDER)");
                if (r < 0)
                        return aj_log_errno(r, "Cannot reserve the LLM provider host '%s'", hosts[i]);
        }
        if (!hosts)
                return 0;
        r = aj_resolve_reserved_start(run->net_policy, AJ_RESOLVE_RESERVED_TIMEOUT_MS, &run->llm_host_lookups);
        if (r < 0)
                return aj_log_errno(r, "Cannot resolve the LLM provider hosts");
        aj_run_trace_step(run, "LLM provider hosts' lookups sent");
        return 0;
}

/* Fail closed: the command runs only once the provider hosts' addresses are in the policy
 * (or known not to resolve: the name's reservation only, as a warning says; docs/gateway.md). */
int aj_run_reserve_llm_addresses(Run *run)
{
        if (!run->llm_host_lookups)
                return 0;
        _cleanup_strv_free_ char **unresolved = NULL;
        int r = aj_resolve_reserved_finish(run->llm_host_lookups, &unresolved);
        aj_reserved_lookups_free(run->llm_host_lookups);
        run->llm_host_lookups = NULL;
        if (r < 0)
                return aj_log_errno(r, "Cannot resolve the LLM provider hosts");
        for (char **u = unresolved; u && *u; u++)
                aj_warning("LLM provider host %s: its addresses are not reserved (only its name is)", *u);
        aj_run_trace_step(run, "LLM provider hosts' addresses reserved");
        return 0;
}

static int setup_meter_and_broker(Run *run)
{
        const AjProfile *p = run->profile;
        AjMeterCaps caps;
        aj_meter_caps_from_profile(p, &caps);
        run->wall_cap_ns = p->meters.wall_ns;
        for (char **c = run->opts->caps; c && *c; c++) {
                _cleanup_(aj_error_clear) AjError err = {};
                if (strncmp(*c, "wall=", 5) == 0) {
                        /* The wall cap is the supervisor's timer, not the broker's meter. */
                        uint64_t d = 0;
                        if (!streq(*c + 5, "unlimited") && (aj_parse_duration(*c + 5, &d) < 0 || d == 0)) {
                                aj_error("--cap: '%s': expected wall=DURATION such as wall=30m", *c);
                                return -EINVAL;
                        }
                        run->wall_cap_ns = d;
                        continue;
                }
                int r = aj_meter_apply_cap_arg(&caps, *c, &err);
                if (r < 0) {
                        aj_error("--cap: %s", aj_error_text(&err, r));
                        return r;
                }
        }
        int r = aj_meter_new_for_profile(p, &caps, &run->meter);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up the run's meters");
        /* The shipped price table, under the profile's prices: read now when a cost cap
         * depends on it (a malformed table refuses the run), else when a model is first
         * priced (parsing it is a tenth of a millisecond a run that prices nothing saves). */
        if (caps.set[AJ_CAP_COST_USD] || p->n_llm_providers > 0) {
                _cleanup_(aj_price_table_freep) AjPriceTable *prices = NULL;
                r = load_price_table(NULL, &prices);
                if (r < 0 && r != -ENOENT)
                        return r;
                aj_meter_set_price_table(run->meter, TAKE_PTR(prices));
        } else {
                aj_meter_set_price_loader(run->meter, load_price_table, NULL);
        }

        /* The allowlist: the profile's plus --allow-net. No entry: no proxy, no network. */
        _cleanup_strv_free_ char **allow = aj_strv_copy(p->net_allow.items);
        for (char **a = run->opts->allow_net; a && *a; a++)
                if (aj_strv_push(&allow, *a) < 0)
                        return -ENOMEM;
        /* The ask patterns: the profile's plus --ask-net. With any, the proxy runs even
         * without an allowlist (every host is then asked for). */
        _cleanup_strv_free_ char **ask = aj_strv_copy(p->net_ask.items);
        for (char **a = run->opts->ask_net; a && *a; a++)
                if (aj_strv_push(&ask, *a) < 0)
                        return -ENOMEM;
        if (ask && ask[0]) {
                size_t bad = 0;
                _cleanup_(aj_error_clear) AjError err = {};
                r = aj_net_ask_parse(ask, &run->net_ask, &bad, &err);
                if (r < 0) {
                        aj_error("network.ask: '%s': %s", ask[bad] ? ask[bad] : "?", aj_error_text(&err, r));
                        return r;
                }
        }
        if ((allow && allow[0]) || run->net_ask) {
                size_t bad = 0;
                _cleanup_(aj_error_clear) AjError err = {};
                r = aj_net_policy_parse(allow, &run->net_policy, &bad, &err);
                if (r < 0) {
                        aj_error("network allowlist: '%s': %s", allow[bad] ? allow[bad] : "?", aj_error_text(&err, r));
                        return r;
                }
                if ((r = reserve_llm_hosts(run)) < 0)
                        return r;
        }
        return 0;
}

/* The places the workspace and the binds are checked against (src/mount.h): the system's
 * own trees, the generic places, home directories, and agentjail's own state, runtime and
 * config dirs and binary. */
static int build_sensitive(Run *run, const char *exe, const char *host_home, AjSensitiveList *ret)
{
        _cleanup_strv_free_ char **dirs = NULL, **programs = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r >= 0)
                r = aj_profile_host_programs(run->profile, &programs);
        if (r < 0)
                return r;
        const char *xdg = getenv("XDG_CONFIG_HOME"), *eval_scratch = getenv(AJ_EVAL_SCRATCH_ENV);
        char *d = NULL;
        if (xdg && xdg[0] == '/')
                r = asprintf(&d, "%s/agentjail", xdg);
        else if (host_home && host_home[0] == '/')
                r = asprintf(&d, "%s/.config/agentjail", host_home);
        if (r < 0 || (d && aj_strv_consume(&dirs, d) < 0) || aj_strv_push(&dirs, "/etc/agentjail") < 0)
                return -ENOMEM;
        AjSensitiveSources src = {
                .state_root = run->paths.state_root,
                .runtime_root = run->paths.runtime_root,
                .host_home = host_home,
                .exe = exe,
                .config_dirs = dirs,
                .profile_files = run->profile->files,
                .host_programs = programs,
                .passwd = "/etc/passwd",
                .home_root = "/home",
                /* A case of `agentjail eval`: its scratch root is agentjail's, but for the case's
                 * own workspace, the run's cwd (docs/evals.md). */
                .eval_scratch = eval_scratch && eval_scratch[0] == '/' ? eval_scratch : NULL,
                /* A replay's scratch root, the same (src/replay-run.c). */
                .replay_scratch = run->opts->scratch_root,
                .eval_own = run->cwd,
                .eval_inputs = getenv(AJ_EVAL_INPUTS_ENV),
        };
        return aj_sensitive_list_build(&src, ret);
}

static int plan_runtime_dir(Run *run)
{
        _cleanup_free_ char *rt = NULL;
        _cleanup_(aj_error_clear) AjError rt_err = {};
        int r = aj_runtime_root_prepare(&run->paths, &rt_err);
        if (r < 0) {
                aj_error("%s", aj_error_text(&rt_err, r));
                return r;
        }
        r = aj_runtime_dir_create(&run->paths, run->id, &rt);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the runtime directory under '%s'", run->paths.runtime_root);
        /* Ours for the run's life (state.h aj_runtime_dir_hold): no reap of a dead run's
         * directory of the same id in another state directory removes it. */
        r = aj_runtime_dir_hold(rt, false, &run->runtime_hold_fd);
        if (r < 0)
                return aj_log_errno(r, "Cannot hold the runtime directory '%s'", rt);
        r = aj_root_mountpoint(&run->paths, &run->root_mountpoint);
        if (r < 0)
                return aj_log_errno(r, "Failed to create the jails' mount point under '%s'", run->paths.runtime_root);
        return setup_jail_dir(run);
}

static const char *jail_hostname(const AjProfile *p) { return p->hostname ? p->hostname : "agentjail"; }

/* NULL when the binary is gone (replaced while running: " (deleted)") or unreadable. */
static char *self_exe_path(void)
{
        char buf[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n <= 0 || buf[0] != '/')
                return NULL;
        buf[n] = '\0';
        if (n > 10 && streq(buf + n - 10, " (deleted)"))
                return NULL;
        return strdup(buf);
}

/* The invoker's home: $HOME, else the passwd entry (only then read). */
static const char *invoker_home(void)
{
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
                struct passwd *pw = getpwuid(getuid());
                home = pw ? pw->pw_dir : NULL;
        }
        return home;
}

/* `--hooks AGENT`: the agent's settings running `agentjail meter hook AGENT` around every
 * tool call, as a file the mount plan writes into the jail's (read-only) root. */
static int hook_settings(const char *name, AjMountFile *ret, char **ret_contents, char **ret_why)
{
        AjAgentKind agent;
        int r = aj_agent_from_name(name, &agent);
        if (r < 0 || !aj_hook_settings_path(agent))
                return -EINVAL;
        _cleanup_free_ char *command = NULL, *contents = NULL, *why = NULL;
        if (aj_hook_command(agent, AJ_JAIL_BIN, AJ_JAIL_DIR "/" AJ_BROKER_SOCKET, &command) < 0 ||
            asprintf(&why, "--hooks %s", aj_agent_name(agent)) < 0)
                return -ENOMEM;
        r = aj_hook_settings(agent, command, AJ_HOOK_TIMEOUT_S, &contents);
        if (r < 0)
                return r;
        *ret = (AjMountFile){ .target = aj_hook_settings_path(agent), .contents = contents, .why = why };
        *ret_contents = TAKE_PTR(contents);
        *ret_why = TAKE_PTR(why);
        return 0;
}

static int plan_mounts(Run *run)
{
        const AjProfile *p = run->profile;
        /* The agentjail binary, for `agentjail meter` inside the jail: the kernel's own name
         * for it is already resolved (realpath() would read each component again). */
        _cleanup_free_ char *exe = self_exe_path();
        _cleanup_free_ AjBind *ro = calloc(run->opts->extra_ro.n + 1, sizeof(AjBind));
        if (!ro)
                return -ENOMEM;
        AjBindList extra_ro = { .items = ro, .n = run->opts->extra_ro.n };
        if (run->opts->extra_ro.n) /* items is NULL without any: memcpy's source may not be */
                memcpy(ro, run->opts->extra_ro.items, run->opts->extra_ro.n * sizeof(AjBind));
        if (exe)
                ro[extra_ro.n++] = (AjBind){ .source = exe, .target = (char *)AJ_JAIL_BIN "/agentjail" };
        else if (run->opts->hooks) {
                /* A hook command that is not there fails as a non-blocking error: every call
                 * would go ahead. */
                aj_error("--hooks %s: cannot find agentjail's own executable to run the hooks in the jail",
                         run->opts->hooks);
                return -ENOENT;
        }

        const char *host_home = invoker_home();
        int r;
        if (p->workspace_mode == AJ_WORKSPACE_OVERLAY && !run->rootless) {
                r = make_overlay_dirs(run);
                if (r < 0)
                        return r;
        }
        /* The sources are judged against the sensitive places after the clone, while the
         * child builds its root (aj_run_check_places): their identities are pinned here. */
        AjMountContext mctx = {
                .defer_places = true,
                .overlay_dir = run->overlay_dir,
                .cwd = run->cwd,
                .host_home = host_home,
                .extra_ro = extra_ro,
                .extra_rw = run->opts->extra_rw,
                .uid = p->uid,
                .gid = p->gid,
                .user_name = "agent",
                .hostname = jail_hostname(p),
                .idmap = !run->rootless,
                .runtime_dir = run->jail_dir,
                .root_mountpoint = run->root_mountpoint,
        };
        _cleanup_free_ char *settings = NULL, *why = NULL;
        AjMountFile hook_file;
        if (run->opts->hooks) {
                r = hook_settings(run->opts->hooks, &hook_file, &settings, &why);
                if (r < 0)
                        return aj_log_errno(r, "--hooks %s: cannot write the hook settings", run->opts->hooks);
                mctx.files = &hook_file;
                mctx.n_files = 1;
        }
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_mount_plan_build(p, &mctx, &run->mount, &err);
        if (r < 0) {
                aj_error("%s: %s", run->profile->path ? run->profile->path : run->profile->name,
                         aj_error_text(&err, r));
                return r;
        }
        return 0;
}

/* In the watchdog, before it starts to wait: the sensitive places, for aj_run_check_places(). */
void aj_run_places_prework(void *arg, int fd)
{
        Run *run = arg;
        _cleanup_free_ char *exe = self_exe_path();
        _cleanup_(aj_sensitive_list_done) AjSensitiveList l = { 0 };
        if (build_sensitive(run, exe, invoker_home(), &l) >= 0)
                (void)aj_sensitive_list_write(&l, fd);
}

/* The sensitive places (src/sensitive.h) against every source the mount plan pinned. Run
 * while the child builds its root, which is in its own mount namespace and runs nothing of
 * the agent's until JOINED: a refused source is never seen by the command. */
int aj_run_check_places(Run *run)
{
        _cleanup_(aj_sensitive_list_done) AjSensitiveList sensitive = { 0 };
        /* The list the watchdog built while we planned; else (it died, or its answer is
         * not whole) our own. */
        int fd = aj_sup_watchdog_take_prework(&run->watchdog);
        int r = fd >= 0 ? aj_sensitive_list_read(fd, &sensitive) : -ENOENT;
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                _cleanup_free_ char *exe = self_exe_path();
                r = build_sensitive(run, exe, invoker_home(), &sensitive);
        }
        if (r < 0)
                return aj_log_errno(r, "Cannot list the places a workspace must not expose");
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_mount_plan_check_places(run->mount, &sensitive, &err);
        if (r < 0) {
                aj_error("%s: %s", run->profile->path ? run->profile->path : run->profile->name,
                         aj_error_text(&err, r));
                return r;
        }
        for (char *const *a = aj_mount_plan_sensitive_allowed(run->mount); a && *a; a++)
                aj_run_record_degraded(run, "sensitive", *a);
        return 0;
}

static int plan_seccomp(Run *run)
{
        const AjProfile *p = run->profile;
        AjSeccompSpec spec = {
                .base = p->seccomp_base ? p->seccomp_base : "default",
                .deny = p->seccomp_deny.items,
                .allow = p->seccomp_allow.items,
                .notify = p->seccomp_log,
                .allow_netlink = p->allow_netlink,
                .fixed_core = !p->core,
                .no_inet6 = !aj_seccomp_host_inet6("/proc/net/protocols"),
        };
        _cleanup_free_ char *cache = NULL;
        if (asprintf(&cache, "%s/cache/seccomp", run->paths.state_root) < 0)
                return -ENOMEM;
        _cleanup_(aj_error_clear) AjError serr = {};
        /* The cache's secret lives in the runtime root, never bound into a jail (only
         * <runtime>/<id>/jail is), and apart from the cache it authenticates. */
        int r = aj_seccomp_build_cached(&spec, cache, run->paths.runtime_root, &run->bpf, &serr);
        if (r < 0) {
                aj_error("Cannot build the seccomp filter: %s", aj_error_text(&serr, r));
                return r;
        }
        return 0;
}

/*
 * The jail's RLIMIT_CORE with limits.core false: 1 byte. Its init sets it once inside the
 * jail's user namespace, where no hard limit can be raised (CAP_SYS_RESOURCE counts in the
 * host's namespace only): on a host whose hard limit is 0 (limits.conf's "hard core 0", a
 * common hardening) every run failed to start. So the supervisor raises the hard limit of
 * the jail's init (cloned already, waiting for JOINED before it sets its limits) to 1 first,
 * its soft limit as it was. Where it cannot (that hard limit 0, and no CAP_SYS_RESOURCE) the
 * jail's limit is 0, which keeps no piped core_pattern's helper from starting: with such a pattern
 * the run does not start unless "limits" is in allow_degraded (then it is recorded).
 */
static rlim_t jail_core_limit(pid_t jail)
{
        /* The init's limit is ours, inherited at the clone and untouched until JOINED: read
         * here, not through prlimit(jail), which needs CAP_SYS_RESOURCE (the init's ids are not
         * ours) where none is needed to lower a hard limit of 1 or more (rootless, a container
         * without that capability: the limit was 0 then, and a piped pattern refused the run). */
        struct rlimit rl;
        if (getrlimit(RLIMIT_CORE, &rl) < 0)
                return 0;
        if (rl.rlim_max >= 1)
                return 1;
        rl.rlim_max = 1;
        return prlimit(jail, RLIMIT_CORE, &rl, NULL) == 0 ? 1 : 0;
}

/* Whether the host's kernel.core_pattern pipes a core to a helper it starts; one that cannot
 * be read counts as piped (fail closed). */
static bool core_pattern_pipes(void)
{
        char c = 0;
        _cleanup_close_ int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
        return fd < 0 || read(fd, &c, 1) != 1 || c == '|';
}

static int plan_core_limit(Run *run)
{
        const AjProfile *p = run->profile;
        if (p->core)
                return 0;
        run->core_limit = jail_core_limit(run->h.pid);
        if (run->core_limit > 0 || !core_pattern_pipes())
                return 0;
        static const char why[] = "core: the jail's RLIMIT_CORE could not be made 1 (its hard limit is 0 and "
                                  "the supervisor lacks CAP_SYS_RESOURCE to raise it), and kernel.core_pattern "
                                  "pipes to a helper: a crash in the jail starts that helper on the host";
        if (!(p->allow_degraded & AJ_DEGRADE_LIMITS)) {
                aj_error("Cannot enforce the profile's limits: %s", why);
                aj_error("Refusing to start (raise the hard core limit, ulimit -H -c 1 or more, or add \"limits\" "
                         "to the profile's \"allow_degraded\")");
                return -EPERM;
        }
        aj_run_record_degraded(run, "limits", why);
        return 0;
}

/* The smaller of the budgets at PATHS (each a number; one that cannot be read: FALLBACK). */
static uint64_t budget_read(const char *const *paths, size_t n, uint64_t fallback)
{
        uint64_t min = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *text = NULL;
                uint64_t v = fallback;
                if (aj_read_file(paths[i], 64, &text, NULL) >= 0) {
                        text[strcspn(text, "\n")] = '\0';
                        if (aj_parse_u64(text, &v) < 0)
                                v = fallback;
                }
                if (v < min)
                        min = v;
        }
        return min;
}

/*
 * The kernel counts some budgets per host uid, across user namespaces (ucounts): inotify
 * instances and watches, pending signals and POSIX timers (RLIMIT_SIGPENDING), mqueue bytes
 * (RLIMIT_MSGQUEUE), processes (RLIMIT_NPROC), locked shared memory (RLIMIT_MEMLOCK:
 * SHM_LOCK). A root-started run's host ids are its own
 * (src/host-id-pool.c); a rootless run's are the invoker's, and those of a run with host_ids
 * degraded are someone else's too. There the jail took the whole budget: a rootless agent
 * holding 128 inotify instances left the user's own processes (an editor, systemd --user,
 * the user's other runs) without one. Such a jail gets a quarter of each: the inotify limits
 * of its user namespace (checked there before the uid's count above it; spawn.c
 * set_userns_limits) and the rlimits (checked against the jail's own count; the profile's
 * limits.nproc when lower: without a pids cgroup, allowed degraded, RLIMIT_NPROC is all
 * that bounds a fork bomb). A budget that cannot be read is taken as the kernel's default,
 * so the share is never more than a quarter of that.
 */
#define AJ_SHARED_BUDGET_DIVISOR 4
static uint32_t budget_share(uint64_t budget)
{
        uint64_t n = budget / AJ_SHARED_BUDGET_DIVISOR;
        return n < 1 ? 1 : n > INT_MAX ? INT_MAX : (uint32_t)n;
}

static void plan_user_budgets(Run *run, AjSpawnConfig *cfg)
{
        if (!run->rootless && !run->host_ids_shared)
                return;
        /* Our own namespace's limit, and the host's (a rootless run in a container's user
         * namespace, whose own limit may be unbounded, is held by the host's too). */
        static const char *const instances[] = { "/proc/sys/user/max_inotify_instances",
                                                 "/proc/sys/fs/inotify/max_user_instances" };
        static const char *const watches[] = { "/proc/sys/user/max_inotify_watches",
                                               "/proc/sys/fs/inotify/max_user_watches" };
        cfg->inotify_instances_max = budget_share(budget_read(instances, ARRAY_SIZE(instances), 128));
        cfg->inotify_watches_max = budget_share(budget_read(watches, ARRAY_SIZE(watches), 8192));
        static const int rlimits[] = { RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_NPROC, RLIMIT_MEMLOCK };
        for (size_t i = 0; i < ARRAY_SIZE(rlimits); i++) {
                struct rlimit rl;
                if (getrlimit(rlimits[i], &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                        continue; /* unbounded for the uid too: nothing to share */
                uint64_t share = budget_share(rl.rlim_cur);
                /* A quarter of a small RLIMIT_MEMLOCK is too little for what mlocks a few
                 * pages (gpg's secure memory wants 32 KiB): at least 64 KiB, if the uid has it. */
                if (rlimits[i] == RLIMIT_MEMLOCK && share < 65536)
                        share = rl.rlim_cur < 65536 ? rl.rlim_cur : 65536;
                add_rlimit(cfg, rlimits[i], share);
        }
}

static void plan_spawn_config(Run *run, AjSpawnConfig *cfg)
{
        const AjProfile *p = run->profile;
        /* The pipes are made before the plan (the jail is cloned first): keep them. */
        int out = cfg->stdout_fd, err = cfg->stderr_fd;
        *cfg = (AjSpawnConfig){
                .rootless = run->rootless,
                .uid = p->uid,
                .gid = p->gid,
                .hostname = jail_hostname(p),
                .mount = run->mount,
                .seccomp = &run->bpf,
                .seccomp_listener = p->seccomp_log,
                .argv = run->opts->argv,
                .envp = run->envp,
                .cgroup_v2_fd = -1,
                .proxy_listeners = run->net_policy != NULL,
                .gateway_listener = p->n_llm_providers > 0,
                .stdout_fd = out,
                .stderr_fd = err,
        };
        aj_sup_terminal_child_config(&run->term, cfg);
        if (p->nofile)
                add_rlimit(cfg, RLIMIT_NOFILE, p->nofile);
        if (p->nproc)
                add_rlimit(cfg, RLIMIT_NPROC, p->nproc);
        if (p->fsize)
                add_rlimit(cfg, RLIMIT_FSIZE, p->fsize);
        /* 1 byte, not 0: the kernel's mark for "no piped core dump" too (seccomp-filter.c,
         * aj_seccomp_sets_core_limit, which keeps the agent from setting it). */
        if (!p->core)
                add_rlimit(cfg, RLIMIT_CORE, run->core_limit);
        /* No real-time policy and no nice below 0 for the agent, whatever the caller's limits
         * allow it (an `rtprio` line in limits.conf): the run's CPU limit bounds the fair class
         * only (spawn.c, no_realtime_children, keeps the caller's own policy out). */
        add_rlimit(cfg, RLIMIT_RTPRIO, 0);
        add_rlimit(cfg, RLIMIT_NICE, 0);
        plan_user_budgets(run, cfg);
        for (size_t i = 0; i < cfg->n_rlimits; i++)
                run->rlimit_resources[i] = cfg->rlimits[i].resource;
}

/* The gateway's keys: those in our environment go into pipes of their own and are wiped
 * from it, before anything is forked (the watchdog, the jail's init: copies of our memory,
 * the initial stack with the environment's strings included). */
int aj_run_set_keys_aside(Run *run)
{
        _cleanup_(aj_error_clear) AjError kerr = {};
        int r = aj_sup_llm_check_keys(&run->llm, run->profile, &kerr);
        if (r < 0)
                aj_error("%s (refusing to start: the gateway would have no key)", aj_error_text(&kerr, r));
        return r;
}

int aj_run_plan(Run *run, AjSpawnConfig *cfg)
{
        int r = plan_runtime_dir(run);
        if (r < 0)
                return r;
        aj_run_trace_step(run, "runtime dir created");
        if ((r = setup_meter_and_broker(run)) < 0 || (r = plan_mounts(run)) < 0)
                return r;
        aj_run_trace_step(run, "mount plan built");
        if ((r = plan_seccomp(run)) < 0)
                return r;
        aj_run_trace_step(run, "seccomp program ready");
        r = build_env(run);
        if (r < 0)
                return aj_log_errno(r, "Cannot build the command's environment");
        if ((r = plan_core_limit(run)) < 0)
                return r;
        plan_spawn_config(run, cfg);
        return 0;
}

int aj_run_setup_cgroup(Run *run)
{
        const AjProfile *p = run->profile;
        AjCgroupLimits lim = { .memory_max = p->memory, .pids_max = p->pids, .cpus = p->cpu };
        _cleanup_free_ char *unenforced = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        bool degrade = p->allow_degraded & AJ_DEGRADE_LIMITS;
        int r = aj_cgroup_create_v2_first(run->id, &lim, degrade, &run->cgroup, &unenforced, &err);
        if (r < 0) {
                aj_error("Cannot enforce the profile's limits: %s", aj_error_text(&err, r));
                if (!degrade)
                        aj_error("Refusing to start (add \"limits\" to the profile's \"allow_degraded\" to run "
                                 "without them)");
                return r;
        }
        if (unenforced)
                aj_run_record_degraded(run, "limits", unenforced);
        return aj_run_mark_host_ids(run);
}

int aj_run_mark_host_ids(Run *run)
{
        /* Whose cgroup it is, as an absolute path (a relative state dir resolved); one that
         * cannot be named leaves the slot's cgroup to no prune of orphans (fail closed). */
        bool absolute = run->run_dir[0] == '/';
        _cleanup_free_ char *resolved = absolute ? NULL : realpath(run->run_dir, NULL);
        const char *dir = absolute ? run->run_dir : resolved;
        int r = aj_host_id_lease_mark(&run->host_ids, dir && !strchr(dir, '\n') ? dir : NULL,
                                      aj_cgroup_paths(run->cgroup));
        if (r < 0)
                return aj_log_errno(r,
                                    "Cannot name the run's cgroup in its host id slot's file (in '%s'): the slot "
                                    "would be free while processes of the run may live",
                                    AJ_HOST_ID_POOL_DIR);
        return 0;
}

int aj_run_setup_idmap(Run *run)
{
        if (run->rootless)
                return 0;
        const char *ws = aj_mount_plan_workspace_source(run->mount);
        uid_t owner_uid = 0;
        gid_t owner_gid = 0;
        /* The checked directory's owner, not what its path leads to now: a directory swapped
         * in there (by anyone who can write a parent) would choose whose files the agent
         * writes as, in the workspace that is mounted. */
        mode_t ws_mode = 0;
        if (ws && !aj_mount_plan_workspace_owner(run->mount, &owner_uid, &owner_gid, &ws_mode))
                return aj_log_errno(-ENODATA, "The workspace '%s' has no identity in the mount plan", ws);
        /* The overlay's root directory is the upper dir's: it must be the agent's, with the
         * workspace's mode, as the idmapped workspace root would be. */
        if (ws && run->overlay_dir) {
                char upper[4096];
                snprintf(upper, sizeof(upper), "%s/%s", run->overlay_dir, AJ_OVERLAY_UPPER);
                if (!run->overlay_lower && !(run->overlay_lower = strdup(ws)))
                        return -ENOMEM;
                if (chown(upper, run->host_uid, run->host_gid) < 0 || chmod(upper, ws_mode & 07777) < 0)
                        return aj_log_errno(-errno, "Cannot prepare the overlay upper dir '%s'", upper);
        }
        _cleanup_close_ int userns = -1;
        int r = aj_userns_idmap_fd(owner_uid, owner_gid, run->host_uid, run->host_gid, &userns, &run->idmap_holder);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the user namespace for the idmapped workspace");
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_mount_plan_prepare(run->mount, userns, &err);
        if (r < 0) {
                /* A source the sensitive places refuse may also fail here (an idmapped mount of
                 * "/"): the refusal, which says why, comes first. */
                if (!aj_mount_plan_places_judged(run->mount) && aj_run_check_places(run) < 0)
                        return -EPERM;
                aj_error("Cannot prepare the jail's mounts: %s", aj_error_text(&err, r));
                return r;
        }
        return 0;
}

/* What must exist before the command runs but not before the jail is cloned: done
 * while the child builds its root, between GO and JOINED, so it costs no wall time. */
int aj_run_setup_while_child_builds(Run *run)
{
        int r = aj_sup_output_open_logs(&run->output, run->run_dir, aj_sup_terminal_has_tty(&run->term));
        if (r < 0)
                return r;
        char path[4096];
        snprintf(path, sizeof(path), "%s/" AJ_BROKER_SOCKET, run->jail_dir);
        r = aj_broker_new(path, run->host_uid, run->host_gid, run->meter, &run->hooks, &run->broker);
        if (r < 0)
                return aj_log_errno(r, "Cannot create the broker socket '%s'", path);
        aj_broker_set_report_rate(run->broker, run->profile->log_reports_per_sec);
        r = aj_broker_set_approvals(run->broker, run->profile->approval_tools.items, run->profile->approval_tools.n,
                                    run->profile->approval_timeout_ns);
        if (r < 0)
                return aj_log_errno(r, "Cannot set up approvals");
        /* The keys are read now, after the clone: the jail's init never held them. */
        _cleanup_(aj_error_clear) AjError err = {};
        r = aj_sup_llm_init(&run->llm, run->profile, run->meter, &run->hooks, run->run_dir, &err);
        if (r < 0) {
                aj_error("%s", aj_error_text(&err, r));
                return r;
        }
        run->llm.gate_tools = run->opts->hooks != NULL;
        run->llm.net_policy = run->net_policy;
        if (run->opts->replay_dir && (r = aj_sup_llm_replay_open(&run->llm, run->opts->replay_dir, run->opts->replay_of,
                                                                 run->opts->replay_live, &err)) < 0) {
                aj_error("%s", aj_error_text(&err, r));
                return r;
        }
        return 0;
}
