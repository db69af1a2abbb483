/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The places on the host a jail must not be handed, and the identities (dev/ino chains, paths
 * inside their filesystems) they and the mounted paths are judged by. src/sensitive.c holds
 * the rules and the check, src/id-chain.c how paths and places are resolved.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Places on the host a jail must not be handed (docs/profiles.md, "Sensitive places").
 * Every place has a rule (the table in sensitive.c): which relations of a mounted path to
 * the place are refused — the path IS the place, CONTAINS it, or is INSIDE it — for
 * each kind of access, and whether filesystem.allow_sensitive may opt out:
 *
 *   OWNER access: the workspace (every mode) and rw binds. Root-started, these are
 *   idmapped: the agent acts as the files' owner (root, for a root-owned tree), which
 *   reads and writes past their modes.
 *   READ access: read-only binds, seen with the jail's own unprivileged uid. Unix
 *   sockets still accept connect() through a read-only mount, and files readable by
 *   anyone (a home's keys, other runs' logs) are read.
 */
typedef enum {
        AJ_PLACE_GENERIC,        /* /tmp, homes, /var/lib...: IS or CONTAINS, both accesses; opt-out */
        AJ_PLACE_SYSTEM_TREE,    /* /usr, /etc, /boot, /lib*, /bin, /sbin, /proc, /sys, /dev: any
                                  * relation, OWNER access; never */
        AJ_PLACE_SYSTEM_DIR,     /* /, /var, /run, /home themselves: IS or CONTAINS, OWNER; never */
        AJ_PLACE_AGENTJAIL_DATA, /* state and runtime dirs: any relation, both accesses; never */
        AJ_PLACE_AGENTJAIL_CODE, /* the executable, profile and config dirs: any relation, OWNER; never
                                  * (reading them is harmless: the jail binds the executable itself) */
        AJ_PLACE_EVAL_SCRATCH,   /* `agentjail eval`'s or `replay`'s scratch root (every case's dir,
                                  * its copy and log; the replay's copy and profile, made and
                                  * removed by root): any relation, both accesses; never; but for
                                  * the run's own workspace in it, an AJ_PLACE_EVAL_OWN */
        AJ_PLACE_EVAL_OWN,       /* that workspace: refuses nothing; a path that is it or inside it
                                  * is not refused by an AJ_PLACE_EVAL_SCRATCH */
} AjPlaceRule;

typedef enum {
        AJ_ACCESS_OWNER, /* the workspace, rw binds */
        AJ_ACCESS_READ,  /* read-only binds */
} AjAccess;

/* A file's identity and its ancestors', as the kernel resolves ".." from it (through mount
 * points, to our root): a bind-mount alias of a directory has the directory's identity, so
 * relations judged on these hold whatever path names the file. */
typedef struct {
        dev_t dev;
        ino_t ino;
} AjFileId;

typedef struct {
        AjFileId *ids; /* ids[0] the file (or its nearest existing ancestor), then up to the root */
        size_t n;      /* 0: unknown (judged by path alone) */
        bool missing;  /* the file does not exist: every entry is a strict ancestor */
        char *fs_path; /* the file's path inside its filesystem (ids[0].dev): its mount's root
                        * there (mountinfo) + its path below the mount point; a bind mount of a
                        * subdirectory shows where it comes from. NULL: unknown */
} AjIdChain;

typedef struct {
        char *path;       /* absolute, symlinks resolved as far as the path exists */
        const char *what; /* "temporary files of every user", "agentjail's state dir"... */
        AjPlaceRule rule;
        AjIdChain chain;  /* gathered when the place is added */
        char *what_owned; /* what, when the list owns it (a list read from another process) */
} AjSensitivePlace;

typedef struct AjGather AjGather;

typedef struct {
        AjSensitivePlace *items;
        size_t n;
        AjGather *gather; /* private: what was looked up building it, reused by a plan built with it */
} AjSensitiveList;

typedef enum {
        AJ_SENSITIVE_NONE = 0, /* touches no sensitive place */
        AJ_SENSITIVE_ALLOWED,  /* touches only generic places the profile allows */
        AJ_SENSITIVE_REFUSED,
} AjSensitiveVerdict;

/* Whether the rule lets filesystem.allow_sensitive opt out (only AJ_PLACE_GENERIC). */
bool aj_place_rule_opt_out(AjPlaceRule rule);

/* How `path` (with identity chain `id`, may be NULL) relates to a place (pure): a mask of
 * AJ_REL_*, by path, by identity chain and by path inside the same filesystem (any one
 * suffices). */
enum {
        AJ_REL_IS = 1 << 0,
        AJ_REL_CONTAINS = 1 << 1, /* the path is an ancestor of the place */
        AJ_REL_INSIDE = 1 << 2,   /* the path is below the place */
};
unsigned aj_place_relation(const char *path, const AjIdChain *id, const AjSensitivePlace *place);

/* The decision (pure): `path` and every entry of `allow` (NULL-terminated, may be NULL)
 * are absolute and resolved like the places; `id` is the path's identity chain (NULL:
 * judged by path alone). Rules that cannot be opted out are checked first. *ret_place is
 * the refusing place, or for AJ_SENSITIVE_ALLOWED the first allowed one. */
AjSensitiveVerdict aj_sensitive_check(const char *path, const AjIdChain *id, AjAccess access,
                                      const AjSensitiveList *places, char *const *allow, size_t *ret_place);

/* Gathers the identity chain of the file open at `fd` (any kind, O_PATH is enough):
 * fstat, then openat(.., "..") up to the root, at most AJ_ID_CHAIN_MAX levels (deeper:
 * -ELOOP, the caller refuses). */
#define AJ_ID_CHAIN_MAX 256
int aj_id_chain_from_fd(int fd, AjIdChain *ret);
/* The same for a path; a missing tail is skipped (ret->missing set). */
int aj_id_chain_from_path(const char *path, AjIdChain *ret);
void aj_id_chain_done(AjIdChain *c);

/* What agentjail knows it must protect, besides the fixed generic places. */
typedef struct {
        const char *state_root, *runtime_root;
        const char *host_home;      /* the invoker's $HOME (may be NULL) */
        const char *exe;            /* this executable (may be NULL) */
        char *const *config_dirs;   /* profile search dirs and config dirs (NULL-terminated) */
        char *const *profile_files; /* the files the run's profile was loaded from (NULL-terminated, may be NULL) */
        /* The files its profile has the host run (aj_profile_host_programs(): alert.exec's and
         * rollback.exec's): written by the agent, its code ran on the host as root. */
        char *const *host_programs;
        const char *passwd;    /* passwd file for the other home dirs: "/etc/passwd"; NULL: none */
        const char *home_root; /* each directory in it is a home: "/home"; NULL: none */
        /* Under `agentjail eval` (AJ_EVAL_SCRATCH_ENV): its scratch root, agentjail's own for
         * the eval; under `agentjail replay`: its own scratch root (AjRunOptions.scratch_root;
         * inside an eval case's dir when the eval replays); and the run's own workspace in
         * them (the run's cwd). NULL: none. */
        const char *eval_scratch, *replay_scratch, *eval_own;
        /* Under `agentjail eval` (AJ_EVAL_INPUTS_ENV): the files every case's profile is
         * loaded from and every case's fixture, one a line; NULL: none. */
        const char *eval_inputs;
} AjSensitiveSources;

/* Set by `agentjail eval` for its cases' runs: the scratch root (docs/evals.md). */
#define AJ_EVAL_SCRATCH_ENV "AGENTJAIL_EVAL_SCRATCH"
/* Set by `agentjail eval` too: the files its cases' profiles are loaded from (extends chains
 * included) and its cases' fixtures, one a line. Each case's run loads its profile, and its
 * fixture is copied, when it starts, after the cases before it ran: an agent that could write
 * another case's profile gave that case its own (an alert.exec run on the host as root), one
 * that could write its fixture its starting state, so none of them is mounted writable. */
#define AJ_EVAL_INPUTS_ENV "AGENTJAIL_EVAL_INPUTS"
/* Set by `agentjail eval` for each case's run: the files it loaded that case's profile from
 * when the suite started (its extends chain, in order), one a line. The run loads its profile
 * again in the case's workspace, whose ./profiles is on the search path: a name in the chain
 * found elsewhere there (a fixture's profiles/ a symlink to a directory of the host's) was a
 * file eval never loaded nor protected. The run refuses a chain other than this
 * (src/jail-plan.c). */
#define AJ_EVAL_PROFILE_ENV "AGENTJAIL_EVAL_PROFILE"

/* Builds the list: the fixed system and generic places, home directories, agentjail's
 * own places, each resolved (realpath of the longest existing prefix). With an empty
 * `src`, the fixed places alone. */
int aj_sensitive_list_build(const AjSensitiveSources *src, AjSensitiveList *ret);
/* Adds one place (resolved as above). */
int aj_sensitive_list_add(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule);
void aj_sensitive_list_done(AjSensitiveList *l);
/* The list through a pipe, to or from another process (the watchdog builds it while the
 * supervisor plans): paths, rules, identity chains. Reading is bounded like building
 * (at most 1024 places, paths of PATH_MAX, chains of AJ_ID_CHAIN_MAX) and checks every
 * field: malformed input is -EBADMSG, never a partial list. */
int aj_sensitive_list_write(const AjSensitiveList *l, int fd);
int aj_sensitive_list_read(int fd, AjSensitiveList *ret);
/* How one place is resolved: its path (symlinks resolved as far as it exists) and identity
 * chain, by the shared lstat walk (`walk`, may return 1: not answered that way) or by the
 * slow way it must agree with (the unit tests compare the two). */
int aj_sensitive_resolve(const char *path, bool walk, char **ret_real, AjIdChain *ret_chain);
