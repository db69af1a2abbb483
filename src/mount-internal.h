/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the mount files share: src/id-chain.c (identities, the mount table, the shared lstat
 * walk), src/sensitive.c (the rules and the check), src/mount-plan.c and
 * src/mount-plan-binds.c (planning), src/mount.c (prepare, apply, describe).
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "mount.h"
#include "util/macros.h"
#include "util/syscalls.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif

#define DEFAULT_HOME "/home/agent"
#define DEFAULT_HOSTNAME "agentjail"
#define DEFAULT_USER "agent"
#define RUNTIME_TARGET "/run/agentjail"
#define MAX_STEPS 4096 /* profiles and the command line control the count */

typedef enum {
        STEP_PRIVATE,    /* make every mount private: nothing propagates to the host */
        STEP_ROOT_TMPFS, /* the new root */
        STEP_WRITE_FILE, /* generated /etc file; source = contents */
        STEP_BIND,       /* bind source (host) on target; attr = MOUNT_ATTR_* */
        STEP_SYMLINK,    /* symlink at target pointing to source */
        STEP_FS,         /* new filesystem fstype with options on target */
        STEP_REBIND_RO,  /* target (in the new root) bound onto itself read-only; optional */
        STEP_HIDE,       /* mask target: empty read-only tmpfs (dir) or /dev/null (file) */
        STEP_PIVOT,
        STEP_ROOT_RDONLY, /* after pivot: "/" itself read-only */
        STEP_CHDIR,
} StepKind;

typedef enum {
        ORIGIN_NONE,
        ORIGIN_RO,
        ORIGIN_RW,
        ORIGIN_WORKSPACE,
        ORIGIN_TMPFS,
        ORIGIN_HOME,
        ORIGIN_RUNTIME,
        ORIGIN_DEVICE,
} StepOrigin;

typedef struct {
        StepKind kind;
        StepOrigin origin;
        char *source; /* host path; symlink text; file contents */
        char *target; /* absolute path inside the jail */
        const char *fstype;
        char *options; /* "key=value,flag" for STEP_FS */
        uint64_t attr; /* MOUNT_ATTR_* applied to the new mount */
        bool is_dir;   /* mountpoint type, or hide kind */
        bool idmap;    /* prepared on the host side as an idmapped tree */
        bool degraded; /* idmap refused by the filesystem, plain bind instead */
        int tree_fd;   /* detached tree from aj_mount_plan_prepare(), or -1 */
        int source_fd; /* O_PATH of the source the plan checked (the supervisor's), or -1: the
                        * supervisor's tree is cloned from it, never from the path again */
        bool has_id;   /* dev/ino: the source the plan checked; the mounted tree must be it */
        dev_t dev;
        ino_t ino;
        uid_t uid; /* ... and its owner and mode then (the workspace's idmap maps that owner) */
        gid_t gid;
        mode_t mode;
        char *overlay; /* workspace mode overlay: host dir with upper/ and work/ */
        size_t seq;    /* insertion order, tie-break for the depth sort */
} AjMountStep;

/* What every chain of one list or plan shares, gathered once. */
/* A path looked at (lstat) while resolving places: places share prefixes (/var for /var,
 * /var/lib and /var/tmp), each is looked at once per list. */
typedef struct {
        char *path;
        int err; /* the lstat's -errno, or 0 */
        AjFileId id;
        mode_t mode;
        uint64_t size; /* a symlink's target length */
        uint64_t mnt_id;
        bool has_mnt_id;
} Looked;

typedef struct AjGather {
        char *mountinfo; /* NULL: read per file */
        AjFileId root;   /* our root's id: the walk stops there without opening its ".." */
        bool has_root;
        Looked *looked;
        size_t n_looked;
} Gather;

struct AjMountPlan {
        AjMountStep *steps;
        size_t n, allocated;
        char *root;    /* host mountpoint of the new root */
        char *workdir; /* cwd inside the jail */
        bool allow_degraded_idmap;
        char **allow_sensitive;   /* strv: the profile's allow_sensitive, resolved */
        char **sensitive_allowed; /* strv: what allow_sensitive let through */
        size_t n_sensitive_allowed;
        AjSensitiveList fixed_places; /* when the context gives no list: the fixed places */
        Gather *gather;               /* once for the sources' identity chains: the list's, or own_gather */
        Gather own_gather;
        bool own_gather_ready; /* a deferred plan reads the mount table at the check, not before */
        /* AjMountContext.defer_places: each source's check, kept for aj_mount_plan_check_places() */
        bool defer_places;
        struct PendingCheck *pending;
        size_t n_pending;
};

/* A source to judge against the sensitive places (its path and identity, as planned). */
typedef struct PendingCheck {
        char *field;
        char *real;
        int fd;      /* the step's source_fd (the step owns it): its identity chain is taken at the check */
        bool is_dir; /* ... and the mounts below it judged too */
        AjAccess access;
} PendingCheck;

/* ---- small path helpers (pure) ---------------------------------------- */

/* Collapse "//", "/./" and a trailing "/"; refuses ".." (targets must say what they mean). */
static inline int path_normalize(const char *in, char **ret)
{
        _cleanup_free_ char *out = NULL;
        const char *p = in;
        size_t o = 0;

        if (in[0] != '/')
                return -EINVAL;
        out = malloc(strlen(in) + 2);
        if (!out)
                return -ENOMEM;
        while (*p) {
                const char *c;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                c = p;
                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - c);
                if (len == 1 && c[0] == '.')
                        continue;
                if (len == 2 && c[0] == '.' && c[1] == '.')
                        return -EINVAL;
                out[o++] = '/';
                memcpy(out + o, c, len);
                o += len;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

static inline bool path_has_dotdot(const char *p)
{
        const char *c = p;

        while ((c = strstr(c, ".."))) {
                bool start = c == p || c[-1] == '/';
                bool end = c[2] == '\0' || c[2] == '/';

                if (start && end)
                        return true;
                c += 2;
        }
        return false;
}

static inline size_t path_depth(const char *p)
{
        size_t n = 0;

        for (; *p; p++)
                if (*p == '/' && p[1] && p[1] != '/')
                        n++;
        return n;
}

/* If `path` is `prefix` or below it (component-wise), the remainder ("" or "/x/y"). */
static inline const char *path_under(const char *path, const char *prefix)
{
        size_t l = strlen(prefix);

        if (l == 1 && prefix[0] == '/')
                return path;
        if (strncmp(path, prefix, l) != 0)
                return NULL;
        if (path[l] != '\0' && path[l] != '/')
                return NULL;
        return path + l;
}

/* "~" / "~/x" -> base + rest; NULL rest when `raw` does not start with "~". */
static inline const char *tilde_rest(const char *raw)
{
        if (raw[0] != '~')
                return NULL;
        if (raw[1] == '\0' || raw[1] == '/')
                return raw + 1;
        return NULL;
}

static inline bool id_eq(AjFileId a, AjFileId b) { return a.dev == b.dev && a.ino == b.ino; }

/* ---- identities (src/id-chain.c) ---------------------------------------- */

int mnt_mountinfo_load(char **ret);
char *mnt_mountinfo_field(const char *f, size_t len);
bool mnt_mountinfo_next(const char **cursor, const char *f[5], const char **ret_end);
/* Each mount point in `table` (mountinfo text) below `dir`, not `dir` itself, unescaped, to
 * `fn`; its negative return ends the walk and is returned. A bind carries these along. */
int mnt_each_mount_below(const char *table, const char *dir, int (*fn)(const char *point, void *userdata),
                         void *userdata);
ssize_t mnt_fd_kernel_path(int fd, char buf[static PATH_MAX]);
void mnt_gather_init(Gather *g);
void mnt_gather_done(Gather *g);
int mnt_id_chain_from_fd(int fd, Gather *g, const char *known_path, AjIdChain *ret);
/* The plan's own gather, read once when first needed. */
void mnt_plan_gather_ready(AjMountPlan *plan);
int mnt_id_chain_from_path(const char *path, Gather *g, bool resolved, AjIdChain *ret);
char *mnt_kernel_realpath(const char *path);
int mnt_resolve_prefix(const char *path, char **ret);
int mnt_resolve_place(const char *path, Gather *g, char **ret_real, AjIdChain *ret_chain);

/* ---- planning (src/mount-plan.c, src/mount-plan-binds.c) ---------------- */

void mnt_step_clear(AjMountStep *s);
/* Takes ownership of source/target/options (also on failure). */
int mnt_add_step(AjMountPlan *plan, StepKind kind, StepOrigin origin, char *source, char *target, const char *fstype,
                 char *options, uint64_t attr, bool is_dir);
int mnt_check_target(const char *field, const char *target, AjError *ret_error);
int mnt_resolve_jail_path(const char *field, const char *raw, const char *jail_home, char **ret, AjError *ret_error);
int mnt_plan_bind(AjMountPlan *plan, const char *field, const AjBind *b, const AjMountContext *ctx,
                  const char *jail_home, bool writable, AjError *ret_error);
int mnt_plan_workspace(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, const char *jail_home,
                       AjError *ret_error);
int mnt_resolve_allow_sensitive(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, AjError *ret_error);

/* The kept checks of a plan built with defer_places, freed. */
void mnt_pending_done(AjMountPlan *plan);
