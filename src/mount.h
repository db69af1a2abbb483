/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's filesystem view. Plan first (pure: profile + context -> list of
 * steps), then apply in the child: a fresh tmpfs root, binds, /proc, a
 * minimal /dev, generated /etc files, pivot_root.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "profile.h"
#include "sensitive.h"
#include "util/error.h"

/* A file agentjail writes into the jail's root tmpfs (which is read-only once entered). */
typedef struct {
        const char *target;   /* absolute path inside the jail, below no mount */
        const char *contents; /* the whole file */
        const char *why;      /* for the refusal when a mount covers it: "--hooks claude-code" */
} AjMountFile;

typedef struct {
        const char *cwd;       /* host cwd: "." workspace resolves to it */
        const char *host_home; /* invoking user's home, for "~/" in profile paths; may be NULL */
        AjBindList extra_ro;   /* --ro from the command line */
        AjBindList extra_rw;   /* --rw from the command line */
        uid_t uid, gid;        /* ids inside the jail */
        const char *user_name; /* name in the generated /etc/passwd, e.g. "agent" */
        const char *hostname;
        bool idmap;                  /* root-started: rw binds and the workspace get idmapped mounts */
        const char *runtime_dir;     /* host dir bound at /run/agentjail in the jail (broker socket); may be NULL */
        const char *root_mountpoint; /* empty host dir the child mounts the new root's tmpfs on (only
                                      * visible in the child's mount namespace) */
        const char *overlay_dir;     /* workspace mode overlay: host dir holding upper/ and work/ */
        const AjSensitiveList *sensitive; /* checked against the workspace and every bind; NULL: the
                                           * fixed places (aj_sensitive_list_build with no sources) */
        bool defer_places;                /* no list yet: keep each source's check for aj_mount_plan_check_places() */
        const AjMountFile *files;         /* generated files (agent hook settings), written read-only into the root */
        size_t n_files;
} AjMountContext;

typedef struct AjMountPlan AjMountPlan;

/* Validate and plan. Errors (missing non-optional source, relative target, a
 * target under /proc...) come back as -errno with ret_error (may be NULL) naming the path. */
int aj_mount_plan_build(const AjProfile *p, const AjMountContext *ctx, AjMountPlan **ret, AjError *ret_error);

/* Host side, before clone (root-started runs): detached trees (open_tree) for every
 * bind, so the jail's uid needs no search permission on the sources' parents; the rw
 * binds and the workspace idmapped (mount_setattr(MOUNT_ATTR_IDMAP)) with
 * `idmap_userns_fd` mapping the host owner to the jail's host uid. Each checked source's
 * tree is cloned from the fd the plan opened and judged it by, never from its path again. */
/* The checks a plan built with defer_places kept, against `places`, in the order the sources
 * were planned: the first refusal is the error (as aj_mount_plan_build would have said it);
 * what allow_sensitive let through joins aj_mount_plan_sensitive_allowed(). Run it before
 * the command may start: the plan's sources are only pinned, not judged, until then. */
int aj_mount_plan_check_places(AjMountPlan *plan, const AjSensitiveList *places, AjError *ret_error);
/* false while a deferred plan's sources have not been judged: the command must not start. */
bool aj_mount_plan_places_judged(const AjMountPlan *plan);

/* An overlay workspace's layers in its overlay_dir (the run directory's workspace/). */
#define AJ_OVERLAY_UPPER "upper"
#define AJ_OVERLAY_WORK "work"

int aj_mount_plan_prepare(AjMountPlan *plan, int idmap_userns_fd, AjError *ret_error);
/* The jail child's copy of the plan, in memory it shares with the supervisor (the child is
 * cloned before the plan is made): what aj_mount_apply() reads. NULL when it does not fit. */
struct AjShared;
const AjMountPlan *aj_mount_plan_share(const AjMountPlan *plan, struct AjShared *s);
/* The detached tree aj_mount_plan_prepare() made for step `step`, or -1 (the plan keeps it):
 * how the supervisor hands the trees to a jail cloned before they were made. */
int aj_mount_plan_tree_fd(const AjMountPlan *plan, size_t step);

/* Child side, in the new user+mount namespaces with full capabilities there.
 * Ends with the new root entered (pivot_root), old root detached, cwd at
 * aj_mount_plan_workdir(). `trees` (NULL: the plan's own) has aj_mount_plan_n_steps()
 * entries, the detached tree of each step or -1: the trees prepared after the clone.
 * On failure returns -errno and *ret_step identifies the step. */
int aj_mount_apply(const AjMountPlan *plan, const int *trees, size_t *ret_step);

/* "bind '/usr' on '/usr' (read-only)" — for the supervisor's error message. */
const char *aj_mount_step_describe(const AjMountPlan *plan, size_t step, char *buf, size_t len);

/* Host path of the workspace after resolving "." and "~" (NULL when mode is none):
 * the supervisor stats it to build the idmap namespace (owner -> jail host uid). */
const char *aj_mount_plan_workspace_source(const AjMountPlan *plan);
/* The identity (dev, ino) the workspace's source was checked with: false if none. */
bool aj_mount_plan_workspace_id(const AjMountPlan *plan, dev_t *ret_dev, ino_t *ret_ino);
/* The owner and mode the workspace's source had when it was checked (what its idmap maps
 * and an overlay's upper root takes; never what its path leads to later): false if none. */
bool aj_mount_plan_workspace_owner(const AjMountPlan *plan, uid_t *ret_uid, gid_t *ret_gid, mode_t *ret_mode);

/* Working directory inside the jail (the workspace target, or home). */
const char *aj_mount_plan_workdir(const AjMountPlan *plan);

/* Whether aj_mount_plan_prepare() fell back to a plain bind because the filesystem
 * refused an idmapped mount (only when the profile allows AJ_DEGRADE_IDMAP). */
bool aj_mount_plan_idmap_degraded(const AjMountPlan *plan);

/* The sensitive places the profile's allow_sensitive let the workspace or a bind
 * expose, one "'SRC' (field) contains PLACE (what)" line each, NULL-terminated; NULL if none. */
char *const *aj_mount_plan_sensitive_allowed(const AjMountPlan *plan);

/* Number of steps (for iterating aj_mount_step_describe()). */
size_t aj_mount_plan_n_steps(const AjMountPlan *plan);

/* Each bind the agent can write (the rw or overlay workspace, rw binds): `fn` gets a new fd
 * on it (the tree aj_mount_plan_prepare() made: an overlay's statfs is its upper layer's;
 * else the source opened O_PATH and checked to be the file the plan checked), which it
 * takes, and what it is ("the workspace '/src'"); then each mount the host has below an rw
 * one and not read-only (its recursive clone carries them); its error stops the walk. For watching
 * the free space the agent leaves (src/supervisor/disk.h). */
int aj_mount_plan_each_writable(AjMountPlan *plan, int (*fn)(void *userdata, int fd, const char *what), void *userdata);

/* Close the detached trees' fds in the supervisor after the child has them. */
void aj_mount_plan_close_fds(AjMountPlan *plan);
void aj_mount_plan_free(AjMountPlan *plan);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjMountPlan *, aj_mount_plan_free);
