/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Permission profiles: JSON files -> AjProfile. Pure code: reads files, never
 * logs, never makes a syscall that changes state. Errors come back as text
 * naming file, line, column and key, e.g.
 *   profiles/x.json:12:5: limits.memory: expected a size like "512M", got "lots"
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "prices.h"
#include "util/error.h"
#include "util/macros.h"

typedef enum {
        AJ_WORKSPACE_RW = 0,
        AJ_WORKSPACE_RO,
        AJ_WORKSPACE_NONE,    /* no workspace mounted */
        AJ_WORKSPACE_OVERLAY, /* writes go to an overlay upper dir in the run dir: diff, commit, discard */
} AjWorkspaceMode;

/* "llm.record": what the gateway keeps of each model call (docs/replay.md). */
typedef enum {
        AJ_LLM_RECORD_DIGEST = 0, /* the default: digests, and each response body (a run replays) */
        AJ_LLM_RECORD_FULL,       /* ... and each request body too */
        AJ_LLM_RECORD_OFF,        /* digests only in the events: no model output on disk */
} AjLlmRecord;

typedef struct {
        char *source;  /* host path, absolute after resolution ("~" and "." expanded at run time) */
        char *target;  /* path inside the jail; same as source unless "SRC:DST" was given */
        bool optional; /* "?/path": skipped silently when the source does not exist */
} AjBind;

typedef struct {
        AjBind *items;
        size_t n;
} AjBindList;

typedef struct {
        char **items; /* NULL-terminated, may be NULL when empty */
        size_t n;
} AjStrList;

/* Broker: caps from "meters" (a negative value: no cap). Enforced by src/meter.c. */
typedef struct {
        int64_t tokens, input_tokens, output_tokens, tool_calls, tool_calls_per_min, repeat_limit;
        double cost_usd;  /* USD */
        uint64_t wall_ns; /* "meters.wall": a breach (freeze, quarantine) when the run is this old; 0: none */
} AjProfileMeters;

/* One "prices" entry: USD per token. */
typedef struct {
        char *model; /* "*" prices every model without an entry of its own */
        double input, output;
        double cached_input;           /* < 0: cached input is priced as input */
        double web_search;             /* USD per search the provider runs; < 0: not given */
        double tool_fee[AJ_TOOL_FEES]; /* USD per use of the provider's other tools (prices.h); < 0: not given */
        uint64_t max_output_tokens;    /* the model's maximum output tokens an answer; 0: not given */
} AjProfilePrice;

/* "llm.providers": a model provider the run's gateway serves (docs/gateway.md). */
typedef enum {
        AJ_LLM_PROVIDER_ANTHROPIC = 0, /* Messages: /v1/messages */
        AJ_LLM_PROVIDER_OPENAI,        /* Chat Completions and Responses */
} AjLlmProviderApi;

#define AJ_LLM_MAX_PROVIDERS 16

typedef struct {
        char *name; /* "anthropic", "openai", or the profile's own name for one */
        AjLlmProviderApi api;
        char *url;      /* upstream base URL: https:// (or http:// for the operator's own network) */
        char *key_env;  /* the key from agentjail's environment (never passed on), or */
        char *key_file; /* from this host file */
        char *ca_file;  /* extra CA certificates to trust for url (NULL: the system store only) */
        /* "paths": "METHOD /path" rules the key is sent to besides the default set
         * (src/gateway/key-paths.h); NULL-terminated, NULL when none */
        char **paths;
} AjLlmProvider;

const char *aj_llm_provider_api_name(AjLlmProviderApi api);
/* NULL when `url` is a usable provider URL, else what is wrong with it. */
const char *aj_llm_url_problem(const char *url);
/* "digest", "full", "off" (profile-schema-llm.c). */
const char *aj_llm_record_name(AjLlmRecord mode);
int aj_llm_record_from_name(const char *name, AjLlmRecord *ret);

typedef enum {
        AJ_ON_BREACH_FREEZE = 0,
        AJ_ON_BREACH_KILL,
} AjOnBreach;

/* Which protections a profile lets the run go without (recorded as events). */
enum {
        AJ_DEGRADE_LIMITS = 1u << 0,   /* cgroup limits that cannot be enforced on this host */
        AJ_DEGRADE_IDMAP = 1u << 1,    /* no idmapped workspace mount: fall back (see mount.c) */
        AJ_DEGRADE_HOST_IDS = 1u << 2, /* host ids someone else may run as (src/host-ids.h) */
};

typedef struct AjProfile {
        char *name;        /* profile name: file stem, or the path for `check FILE` */
        char *path;        /* absolute path of the file it was loaded from */
        char **files;      /* canonical paths of every file of its extends chain, path first (NULL: none) */
        char *description; /* free text, may be NULL */
        char *digest;      /* sha256 hex of the resolved profile's canonical JSON */

        /* filesystem */
        AjBindList ro;        /* read-only binds */
        AjBindList rw;        /* read-write binds */
        AjStrList tmpfs;      /* empty private tmpfs at these jail paths */
        AjStrList hide;       /* paths masked (empty tmpfs or /dev/null over them) */
        char *workspace_path; /* "." = cwd at run time; NULL when mode is NONE */
        AjWorkspaceMode workspace_mode;
        char *home;                /* jail path of the private home (tmpfs); default "/home/agent" */
        AjStrList allow_sensitive; /* generic sensitive places (/tmp, "~"...) the workspace or a
                                    * bind may be or contain (src/mount.h AjSensitivePlace) */

        /* identity */
        uid_t uid, gid;           /* inside the jail; default 1000/1000 */
        uid_t host_uid, host_gid; /* host ids the jail maps to when started by root */
        /* user.host_uid or host_gid given: every root-started run of the profile maps to them
         * (shared); otherwise a run takes ids of its own (src/host-id-pool.h) */
        bool host_ids_set;
        char *hostname; /* default "agentjail" */

        /* seccomp */
        char *seccomp_base;      /* "default" (the only base today) */
        AjStrList seccomp_deny;  /* syscall names denied on top of the base */
        AjStrList seccomp_allow; /* syscall names allowed back */
        bool seccomp_log;        /* report denials via user notification (default true) */
        bool allow_netlink;      /* socket(AF_NETLINK, ...) allowed */

        /* limits; 0 means "not limited" for each */
        uint64_t memory;  /* bytes, cgroup memory.max (swap is always off) */
        uint64_t pids;    /* cgroup pids.max */
        double cpu;       /* CPUs, cgroup cpu.max quota/period */
        uint64_t wall_ns; /* wall clock: SIGTERM, then SIGKILL after wall_grace_ns */
        uint64_t wall_grace_ns;
        uint64_t nofile; /* RLIMIT_NOFILE */
        uint64_t nproc;  /* RLIMIT_NPROC */
        uint64_t fsize;  /* RLIMIT_FSIZE, bytes */
        /* limits.disk_free: the least free space the run leaves where the agent writes to
         * disk (src/supervisor/disk.h); unset: 5% of each filesystem, at most 1 GiB; 0: off */
        bool disk_free_set;
        uint64_t disk_free;
        bool core; /* allow core dumps (RLIMIT_CORE); default false */

        /* network: allowlist entries (src/net.h syntax, validated at load) and the egress cap */
        AjStrList net_allow;
        AjStrList net_ask;            /* "network.ask": hosts held for an operator's decision (src/proxy.h) */
        uint64_t egress_bytes;        /* bytes through the proxy, both directions; 0 = not capped */
        unsigned net_max_connections; /* proxy connections at once; 0 = AJ_PROXY_MAX_CONNECTIONS */

        /* environment */
        AjStrList env_pass; /* variable names copied from agentjail's environment */
        AjStrList env_set;  /* "KEY=VALUE" */

        unsigned allow_degraded; /* AJ_DEGRADE_* */

        /* broker (src/meter.c, src/broker.c): caps, tool rules, approvals, prices, what a breach does */
        AjProfileMeters meters;       /* "meters"; every cap unset by default */
        bool tools_allow_set;         /* "tools.allow" present: names matching none are denied */
        AjStrList tools_allow;        /* globs with '*' */
        AjStrList tools_deny;         /* globs with '*'; deny wins over allow */
        AjStrList approval_tools;     /* "approvals.tools": globs with '*'; matching calls wait for an operator */
        uint64_t approval_timeout_ns; /* "approvals.timeout", default 15 min: then the call is denied */
        AjProfilePrice *prices;       /* "prices", in file order */
        size_t n_prices;
        AjOnBreach on_breach;      /* default freeze */
        AjStrList alert_exec;      /* "alert.exec": argv, absolute program path; empty: no alert */
        uint64_t alert_timeout_ns; /* "alert.timeout", default 10 s */
        /* `agentjail rollback RUN --apply` (src/rollback.h): the handler each undo record is given to */
        AjStrList rollback_exec;      /* "rollback.exec": argv, absolute program path; empty: none */
        uint64_t rollback_timeout_ns; /* "rollback.timeout": each step's bound, default 60 s */

        /* per-run records (src/jail.c, src/events.c): nothing the agent does fills the disk */
        uint64_t log_output_bytes;    /* "logs.output_bytes": stdout.log, stderr.log each; default 64M */
        uint64_t log_events_bytes;    /* "logs.events_bytes": events.jsonl; default 64M */
        uint64_t log_reports_per_sec; /* "logs.reports_per_sec": tool_result + tokens; default 200 */

        /* the gateway (src/gateway/): providers served on the jail's loopback, what is kept */
        AjLlmProvider *llm_providers; /* "llm.providers", in file order, then --llm */
        size_t n_llm_providers;
        AjLlmRecord llm_record;    /* "llm.record": default "digest" */
        uint64_t llm_record_bytes; /* "llm.record_bytes": cap of the kept bodies; default 64M */
        /* "llm.provider_fetch": the provider may connect for the agent to hosts network.allow does
         * not allow (MCP servers, fetch tools; docs/gateway.md); default false */
        bool llm_provider_fetch;
} AjProfile;

/* Bounds of the "logs" keys (docs/profiles.md). */
#define AJ_LOG_MIN_OUTPUT_BYTES (4ULL << 10)
#define AJ_LOG_MIN_EVENTS_BYTES (64ULL << 10)
#define AJ_LOG_MAX_BYTES (1ULL << 40)
#define AJ_LOG_DEFAULT_BYTES (64ULL << 20)
#define AJ_LOG_DEFAULT_REPORTS_PER_SEC 200
#define AJ_LOG_MAX_REPORTS_PER_SEC 1000000

/* Errors from loading come in an AjError (util/error.h) whose message reads
 * "FILE:LINE:COL: KEY: what is wrong", or "FILE: what is wrong". */

/*
 * Directories searched for a profile NAME, in order:
 *   $XDG_CONFIG_HOME/agentjail/profiles (or ~/.config/...),
 *   /etc/agentjail/profiles, the install data dir (AJ_PROFILE_DATADIR), and the
 *   source tree's profiles/ (AJ_SOURCE_PROFILES, so an uninstalled build finds
 *   the shipped profiles from any cwd), and ./profiles last (the cwd is usually the
 *   agent's writable workspace: it must not shadow the operator's profiles). Duplicates are skipped.
 * Returned as a NULL-terminated vector; free with aj_strv_free().
 */
int aj_profile_search_path(char ***ret_dirs);

/* Load by name (searched) or by path (contains '/' or ends in ".json"), with `extends` resolved. */
int aj_profile_load(const char *name_or_path, AjProfile **ret, AjError *err);

/* The file a name (searched) or a path names, as its canonical path: what `extends` names
 * in a profile loaded later, from another directory (a replay's, run in the scratch copy of
 * a workspace whose ./profiles is not the operator's), must be this file. */
int aj_profile_find(const char *name_or_path, char **ret_path, AjError *err);

/* Load the file at `path` whatever its name looks like (`profile check FILE`). */
int aj_profile_load_file(const char *path, AjProfile **ret, AjError *err);

/* The files the profile has the host run, as agentjail's user (root, as a rule): every path
 * alert.exec and rollback.exec name, the program, each operand and each word of one (split
 * where inline code puts a path: `sh -c "cd DIR && ./x"`, `env X=1 FILE`), as paths from "/"
 * where they start, so that no jail is handed one writable (src/sensitive.h host_programs):
 * which operand a program runs as code is its own business. A word without '/': none.
 * NULL: none. */
int aj_profile_host_programs(const AjProfile *p, char ***ret);

/* Parse one JSON text as a profile. `extends` is resolved through the search path. */
int aj_profile_parse(const char *text, const char *file, AjProfile **ret, AjError *err);

/* The resolved profile as JSON (for `profile show` and run.json); caller frees. */
char *aj_profile_to_json(const AjProfile *p);

/* Recomputes p->digest; loading does it, callers that change a loaded profile
 * (command-line overrides) call it again so run.json records what really ran. */
int aj_profile_update_digest(AjProfile *p);

/* `--llm NAME`: serve the profile's provider NAME, or the built-in one of that name
 * (anthropic, openai) when the profile has none. */
int aj_profile_llm_enable(AjProfile *p, const char *name, AjError *err);

void aj_profile_free(AjProfile *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjProfile *, aj_profile_free);

/* Names of all profiles on the search path (first one of each name wins), sorted. */
int aj_profile_list(char ***ret_names, char ***ret_paths);

/* `agentjail profile ...` (argv[0] == "profile"); returns the exit status: 0 ok,
 * 1 a profile is invalid or not found, 2 usage error. */
int aj_cmd_profile(int argc, char **argv);
