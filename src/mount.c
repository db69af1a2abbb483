/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's filesystem view.
 *
 * aj_mount_plan_build() turns the profile and the run context into a flat
 * list of steps (pure apart from stat()/readlink()/realpath() on the host,
 * which the plan needs to know what a bind source is). aj_mount_apply() runs
 * in the cloned child and executes the steps in order; every path it needs is
 * precomputed here so apply only makes syscalls.
 *
 * Everything in the new root is created and resolved through a dirfd of the
 * root tmpfs with RESOLVE_IN_ROOT, so a symlink inside a bound directory (the
 * workspace is writable by the agent's owner) can never redirect a mount or a
 * mkdir to the host side of the tree. Mounts are made with the new mount API
 * (fsopen/fsmount, open_tree/mount_setattr, move_mount onto an O_PATH fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mount.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/syscalls.h"
#include "util/format.h"
#include "util/path.h"
#include "util/open-under.h"

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
        STEP_PRIVATE,     /* make every mount private: nothing propagates to the host */
        STEP_ROOT_TMPFS,  /* the new root */
        STEP_WRITE_FILE,  /* generated /etc file; source = contents */
        STEP_BIND,        /* bind source (host) on target; attr = MOUNT_ATTR_* */
        STEP_SYMLINK,     /* symlink at target pointing to source */
        STEP_FS,          /* new filesystem fstype with options on target */
        STEP_REBIND_RO,   /* target (in the new root) bound onto itself read-only; optional */
        STEP_HIDE,        /* mask target: empty read-only tmpfs (dir) or /dev/null (file) */
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
        char *source;     /* host path; symlink text; file contents */
        char *target;     /* absolute path inside the jail */
        const char *fstype;
        char *options;    /* "key=value,flag" for STEP_FS */
        uint64_t attr;    /* MOUNT_ATTR_* applied to the new mount */
        bool is_dir;      /* mountpoint type, or hide kind */
        bool idmap;       /* prepared on the host side as an idmapped tree */
        bool degraded;    /* idmap refused by the filesystem, plain bind instead */
        int tree_fd;      /* detached tree from aj_mount_plan_prepare(), or -1 */
        bool has_id;      /* dev/ino: the source the plan checked; the mounted tree must be it */
        dev_t dev;
        ino_t ino;
        char *overlay;    /* workspace mode overlay: host dir with upper/ and work/ */
        size_t seq;       /* insertion order, tie-break for the depth sort */
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
        char *root;     /* host mountpoint of the new root */
        char *workdir;  /* cwd inside the jail */
        bool allow_degraded_idmap;
        char **allow_sensitive;   /* strv: the profile's allow_sensitive, resolved */
        char **sensitive_allowed; /* strv: what allow_sensitive let through */
        size_t n_sensitive_allowed;
        AjSensitiveList fixed_places; /* when the context gives no list: the fixed places */
        Gather *gather;               /* once for the sources' identity chains: the list's, or own_gather */
        Gather own_gather;
};

/* ---- small path helpers (pure) ---------------------------------------- */

static int format_error(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int format_error(char **ret_error, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        if (!ret_error)
                return 0;
        va_start(ap, fmt);
        (void)aj_vasprintf(&s, fmt, ap);
        va_end(ap);
        free(*ret_error);
        *ret_error = s;
        return 0;
}

/* Collapse "//", "/./" and a trailing "/"; refuses ".." (targets must say what they mean). */
static int path_normalize(const char *in, char **ret)
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
                len = (size_t) (p - c);
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

static bool path_has_dotdot(const char *p)
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

static size_t path_depth(const char *p)
{
        size_t n = 0;

        for (; *p; p++)
                if (*p == '/' && p[1] && p[1] != '/')
                        n++;
        return n;
}

/* If `path` is `prefix` or below it (component-wise), the remainder ("" or "/x/y"). */
static const char *path_under(const char *path, const char *prefix)
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
static const char *tilde_rest(const char *raw)
{
        if (raw[0] != '~')
                return NULL;
        if (raw[1] == '\0' || raw[1] == '/')
                return raw + 1;
        return NULL;
}

/* ---- sensitive places -------------------------------------------------- */


static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

enum {
        REL_IS = AJ_REL_IS,
        REL_CONTAINS = AJ_REL_CONTAINS,
        REL_INSIDE = AJ_REL_INSIDE,
        REL_ANY = REL_IS | REL_CONTAINS | REL_INSIDE,
};

/* The rules (src/mount.h AjPlaceRule): the relations each refuses, per access. */
static const struct {
        unsigned refuse[2]; /* [AJ_ACCESS_OWNER], [AJ_ACCESS_READ] */
        bool opt_out;
} place_rules[] = {
        [AJ_PLACE_GENERIC] = { { REL_IS | REL_CONTAINS, REL_IS | REL_CONTAINS }, true },
        [AJ_PLACE_SYSTEM_TREE] = { { REL_ANY, 0 }, false },
        [AJ_PLACE_SYSTEM_DIR] = { { REL_IS | REL_CONTAINS, 0 }, false },
        [AJ_PLACE_AGENTJAIL_DATA] = { { REL_ANY, REL_ANY }, false },
        [AJ_PLACE_AGENTJAIL_CODE] = { { REL_ANY, 0 }, false },
};

bool aj_place_rule_opt_out(AjPlaceRule rule)
{
        return (size_t) rule < ARRAY_SIZE(place_rules) && place_rules[rule].opt_out;
}

static bool id_eq(AjFileId a, AjFileId b)
{
        return a.dev == b.dev && a.ino == b.ino;
}

static bool ids_have(const AjFileId *ids, size_t n, AjFileId x)
{
        for (size_t i = 0; i < n; i++)
                if (id_eq(ids[i], x))
                        return true;
        return false;
}

/* By path and by identity: paths miss aliases (a bind mount of a place's parent names it
 * differently), identities miss places that do not exist yet; either relation counts. */
unsigned aj_place_relation(const char *path, const AjIdChain *id, const AjSensitivePlace *pl)
{
        const AjIdChain *pc = &pl->chain;
        unsigned rel = 0;

        if (path && pl->path) {
                if (streq(path, pl->path))
                        rel |= REL_IS;
                else if (path_under(pl->path, path))
                        rel |= REL_CONTAINS;
                else if (path_under(path, pl->path))
                        rel |= REL_INSIDE;
        }
        if (!id || id->n == 0 || id->missing || pc->n == 0)
                return rel;
        /* Inside one filesystem a directory has one path: a bind mount of a place's
         * subdirectory, whose ".." leads elsewhere, still shows it is inside. */
        if (id->fs_path && pc->fs_path && !pc->missing && id->ids[0].dev == pc->ids[0].dev) {
                if (streq(id->fs_path, pc->fs_path))
                        rel |= REL_IS;
                else if (path_under(pc->fs_path, id->fs_path))
                        rel |= REL_CONTAINS;
                else if (path_under(id->fs_path, pc->fs_path))
                        rel |= REL_INSIDE;
        }
        if (!pc->missing) {
                if (id_eq(id->ids[0], pc->ids[0]))
                        rel |= REL_IS;
                else if (ids_have(id->ids + 1, id->n - 1, pc->ids[0]))
                        rel |= REL_INSIDE;
        }
        /* A missing place's chain holds only its ancestors; an existing one's, itself first. */
        if (!id_eq(id->ids[0], pc->ids[0]) || pc->missing) {
                size_t skip = pc->missing ? 0 : 1;

                if (ids_have(pc->ids + skip, pc->n - skip, id->ids[0]))
                        rel |= REL_CONTAINS;
        }
        return rel;
}

void aj_id_chain_done(AjIdChain *c)
{
        if (!c)
                return;
        free(c->ids);
        free(c->fs_path);
        *c = (AjIdChain){ 0 };
}

#define MOUNTINFO_MAX (16u << 20)

/* /proc/self/mountinfo, whole (NULL-terminated). */
static int mountinfo_load(char **ret)
{
        _cleanup_close_ int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        if (fd < 0)
                return negative_errno();
        for (;;) {
                ssize_t n;

                if (cap - len < 4096) {
                        char *b;

                        if (cap >= MOUNTINFO_MAX)
                                return -E2BIG;
                        cap = cap ? cap * 2 : 16384;
                        b = realloc(buf, cap + 1);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* One mountinfo path field (octal escapes: \040 is a space) into a new string. */
static char *mountinfo_field(const char *f, size_t len)
{
        char *out = malloc(len + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (f[i] == '\\' && i + 3 < len && f[i + 1] >= '0' && f[i + 1] <= '3' && f[i + 2] >= '0' &&
                    f[i + 2] <= '7' && f[i + 3] >= '0' && f[i + 3] <= '7') {
                        *o++ = (char)((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
                        i += 3;
                } else {
                        *o++ = f[i];
                }
        }
        *o = '\0';
        return out;
}

/* Splits the line at *cursor into its first five fields (id, parent, maj:min, root, mount
 * point; each runs to the next space) and moves *cursor to the next line. false: fewer. */
static bool mountinfo_next(const char **cursor, const char *f[5], const char **ret_end)
{
        const char *line = *cursor, *end = strchrnul(line, '\n');
        size_t k = 1;

        f[0] = line;
        for (const char *p = line; p < end && k < 5; p++)
                if (*p == ' ')
                        f[k++] = p + 1;
        *cursor = *end ? end + 1 : end;
        *ret_end = end;
        return k == 5;
}

/* The root (inside its filesystem) and mount point of mount `id`. */
static int mountinfo_find(const char *table, uint64_t id, char **ret_root, char **ret_point)
{
        for (const char *line = table; line && *line;) {
                const char *f[5], *end;

                if (mountinfo_next(&line, f, &end) && strtoull(f[0], NULL, 10) == id) {
                        const char *root_end = strchr(f[3], ' '), *point_end = strchrnul(f[4], ' ');

                        if (!root_end || point_end > end)
                                return -EINVAL;
                        _cleanup_free_ char *root = mountinfo_field(f[3], (size_t)(root_end - f[3]));
                        _cleanup_free_ char *point = mountinfo_field(f[4], (size_t)(point_end - f[4]));
                        if (!root || !point)
                                return -ENOMEM;
                        *ret_root = TAKE_PTR(root);
                        *ret_point = TAKE_PTR(point);
                        return 0;
                }
        }
        return -ENOENT;
}

/* The path of the file open at `fd` (named `kpath` by the kernel) inside its filesystem.
 * NULL when it cannot be told (no mount id, an odd mountinfo): the other views still hold. */
static char *fs_path_of(uint64_t mnt_id, const char *kpath, const char *mountinfo)
{
        _cleanup_free_ char *own = NULL, *root = NULL, *point = NULL;
        const char *rel;
        char *out = NULL;

        if (!mountinfo) {
                if (mountinfo_load(&own) < 0)
                        return NULL;
                mountinfo = own;
        }
        if (mountinfo_find(mountinfo, mnt_id, &root, &point) < 0 || root[0] != '/')
                return NULL;
        rel = path_under(kpath, point);
        if (!rel)
                return NULL;
        if (streq(root, "/"))
                out = strdup(*rel ? rel : "/");
        else if (asprintf(&out, "%s%s", root, streq(rel, "/") ? "" : rel) < 0)
                out = NULL;
        return out;
}

/* The path the kernel names the file open at `fd` by (d_path, through /proc/self/fd):
 * its length, or -errno. */
static ssize_t fd_kernel_path(int fd, char buf[static PATH_MAX])
{
        char link[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, PATH_MAX - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        return n;
}

/* The parents of `path` (absolute, as the kernel names the file), by name: the same
 * directories ".." leads to, also for a file (whose ".." means nothing) and where a
 * directory on the way up cannot be searched (naming its parent needs no search on it). */
static const Looked *look(Gather *g, const char *path);

static int chain_by_names(const char *path, Gather *g, AjFileId *ids, size_t *n)
{
        _cleanup_free_ char *p = strdup(path);
        const AjFileId *root = g && g->has_root ? &g->root : NULL;

        if (!p)
                return -ENOMEM;
        if (p[0] != '/')
                return -ENOENT;
        while (!streq(p, "/")) {
                char *slash = strrchr(p, '/');
                AjFileId id;
                mode_t mode;

                slash[slash == p ? 1 : 0] = '\0';
                if (root && streq(p, "/")) { /* known: every chain ends there */
                        if (*n >= AJ_ID_CHAIN_MAX)
                                return -ELOOP;
                        ids[(*n)++] = *root;
                        break;
                }
                /* Parents shared between the files of one plan are looked at once (a
                 * kernel-named path has no symlinks: lstat is stat here). */
                const Looked *l = g ? look(g, p) : NULL;
                if (l) {
                        if (l->err < 0)
                                return l->err;
                        id = l->id;
                        mode = l->mode;
                } else {
                        struct stat st;
                        if (fstatat(AT_FDCWD, p, &st, AT_NO_AUTOMOUNT) < 0)
                                return negative_errno();
                        id = (AjFileId){ st.st_dev, st.st_ino };
                        mode = st.st_mode;
                }
                if (!S_ISDIR(mode))
                        return -ENOTDIR;
                if (*n >= AJ_ID_CHAIN_MAX)
                        return -ELOOP;
                ids[(*n)++] = id;
        }
        return 0;
}

static void gather_init(Gather *g)
{
        struct stat st;

        *g = (Gather){ 0 };
        (void)mountinfo_load(&g->mountinfo); /* unreadable: read per file, or unknown */
        if (stat("/", &st) == 0) {
                g->root = (AjFileId){ st.st_dev, st.st_ino };
                g->has_root = true;
        }
}

static void gather_done(Gather *g)
{
        free(g->mountinfo);
        g->mountinfo = NULL;
        for (size_t i = 0; i < g->n_looked; i++)
                free(g->looked[i].path);
        free(g->looked);
        g->looked = NULL;
        g->n_looked = 0;
}

/* `known_path`: the file's path as the kernel names it, when the caller resolved it (NULL:
 * read from /proc/self/fd). */
static int id_chain_from_fd(int fd, Gather *g, const char *known_path, AjIdChain *ret)
{
        AjFileId ids[AJ_ID_CHAIN_MAX];
        _cleanup_free_ AjFileId *kept = NULL;
        char buf[PATH_MAX];
        size_t n = 0;
        struct statx stx;
        int r;

        if (fd < 0 || !ret)
                return -EINVAL;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0)
                return negative_errno();
        if (known_path && strlen(known_path) < sizeof(buf)) {
                strcpy(buf, known_path);
        } else {
                ssize_t l = fd_kernel_path(fd, buf);
                if (l < 0)
                        return (int)l;
        }
        ids[n++] = (AjFileId){ makedev(stx.stx_dev_major, stx.stx_dev_minor), stx.stx_ino };
        /* Up through the mount tree as the kernel resolves "..": `buf` is the path the kernel
         * names the file by (d_path: its dentries and the mounts above them), so each prefix
         * is the parent ".." would give; one stat a level, where walking ".." from the fd
         * took an open, a stat and a close. Stops at our root. */
        if (buf[0] == '/' && !streq(buf, "/") && !(g && g->has_root && id_eq(ids[0], g->root))) {
                r = chain_by_names(buf, g, ids, &n);
                if (r < 0)
                        return r;
        }
        kept = malloc(n * sizeof(*kept));
        if (!kept)
                return -ENOMEM;
        memcpy(kept, ids, n * sizeof(*kept));
        *ret = (AjIdChain){ .ids = TAKE_PTR(kept),
                            .n = n,
                            .fs_path = (stx.stx_mask & STATX_MNT_ID)
                                               ? fs_path_of(stx.stx_mnt_id, buf, g ? g->mountinfo : NULL)
                                               : NULL };
        return 0;
}

int aj_id_chain_from_fd(int fd, AjIdChain *ret)
{
        return id_chain_from_fd(fd, NULL, NULL, ret);
}

/* `resolved`: `path` has no symlinks (realpath()'s), so it names the file as the kernel does. */
static int id_chain_from_path(const char *path, Gather *g, bool resolved, AjIdChain *ret)
{
        _cleanup_free_ char *p = NULL;
        bool missing = false;
        int r;

        if (!path || path[0] != '/' || !ret)
                return -EINVAL;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (;;) {
                _cleanup_close_ int fd = open(p, O_PATH | O_CLOEXEC);
                char *slash;

                if (fd >= 0) {
                        r = id_chain_from_fd(fd, g, resolved ? p : NULL, ret);
                        if (r >= 0)
                                ret->missing = missing;
                        return r;
                }
                if ((errno != ENOENT && errno != ENOTDIR && errno != EACCES) || streq(p, "/"))
                        return negative_errno();
                slash = strrchr(p, '/');
                slash[slash == p ? 1 : 0] = '\0';
                missing = true;
        }
}

static bool place_refuses(const AjSensitivePlace *pl, const char *path, const AjIdChain *id, AjAccess access)
{
        /* An unknown rule or access refuses everything: fail closed. */
        if ((size_t) pl->rule >= ARRAY_SIZE(place_rules) || (access != AJ_ACCESS_OWNER && access != AJ_ACCESS_READ))
                return true;
        return (aj_place_relation(path, id, pl) & place_rules[pl->rule].refuse[access]) != 0;
}

AjSensitiveVerdict aj_sensitive_check(const char *path, const AjIdChain *id, AjAccess access,
                                      const AjSensitiveList *places, char *const *allow, size_t *ret_place)
{
        AjSensitiveVerdict v = AJ_SENSITIVE_NONE;
        size_t first_allowed = 0;

        if (!path || !places)
                return AJ_SENSITIVE_NONE;
        /* The rules nothing lets a run opt out of first. */
        for (size_t i = 0; i < places->n; i++) {
                const AjSensitivePlace *pl = &places->items[i];

                if (!aj_place_rule_opt_out(pl->rule) && place_refuses(pl, path, id, access)) {
                        if (ret_place)
                                *ret_place = i;
                        return AJ_SENSITIVE_REFUSED;
                }
        }
        for (size_t i = 0; i < places->n; i++) {
                const AjSensitivePlace *pl = &places->items[i];
                bool allowed = false;

                if (!aj_place_rule_opt_out(pl->rule) || !place_refuses(pl, path, id, access))
                        continue;
                for (char *const *a = allow; a && *a; a++)
                        if (streq(*a, pl->path))
                                allowed = true;
                if (!allowed) {
                        if (ret_place)
                                *ret_place = i;
                        return AJ_SENSITIVE_REFUSED;
                }
                if (v == AJ_SENSITIVE_NONE)
                        first_allowed = i;
                v = AJ_SENSITIVE_ALLOWED;
        }
        if (v == AJ_SENSITIVE_ALLOWED && ret_place)
                *ret_place = first_allowed;
        return v;
}

/* realpath(), resolved by the kernel: one open and one readlink, where glibc's realpath()
 * reads every component as a link (the sensitive places and the binds made that the
 * largest cost of planning). Without /proc, realpath() itself. */
static char *kernel_realpath(const char *path)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        char buf[PATH_MAX];

        if (fd < 0)
                return NULL;
        if (fd_kernel_path(fd, buf) <= 0 || buf[0] != '/')
                return realpath(path, NULL);
        return strdup(buf);
}

/* realpath() of the longest existing prefix of `path` (absolute), plus the rest as written:
 * a place that does not exist yet (the config dir) is still compared where it would be. */
static int resolve_prefix(const char *path, char **ret)
{
        _cleanup_free_ char *norm = NULL;
        int r;

        if (!path || path[0] != '/' || path_has_dotdot(path))
                return -EINVAL;
        r = path_normalize(path, &norm);
        if (r < 0)
                return r;
        for (size_t cut = strlen(norm);;) {
                char saved = norm[cut];
                _cleanup_free_ char *real = NULL;

                norm[cut] = '\0';
                real = kernel_realpath(cut ? norm : "/");
                norm[cut] = saved;
                if (real) {
                        char *out = NULL;

                        if (asprintf(&out, "%s%s", streq(real, "/") && norm[cut] ? "" : real, norm + cut) < 0)
                                return -ENOMEM;
                        if (!*out) {
                                free(out);
                                out = strdup("/");
                                if (!out)
                                        return -ENOMEM;
                        }
                        *ret = out;
                        return 0;
                }
                if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
                        return negative_errno();
                while (cut > 0 && norm[--cut] != '/')
                        ;
        }
}

/* Bounds on the walk below: more looked-at prefixes or symlinks than this and the place
 * is resolved the slow way (which has its own bounds). */
#define LOOKED_MAX 512
#define WALK_LINKS_MAX 16

static const Looked *look(Gather *g, const char *path)
{
        for (size_t i = 0; i < g->n_looked; i++)
                if (streq(g->looked[i].path, path))
                        return &g->looked[i];
        /* Allocated whole: entries are pointed to while more are added. */
        if (!g->looked && !(g->looked = calloc(LOOKED_MAX, sizeof(*g->looked))))
                return NULL;
        if (g->n_looked >= LOOKED_MAX)
                return NULL;
        Looked *l = &g->looked[g->n_looked];
        *l = (Looked){ .path = strdup(path) };
        if (!l->path)
                return NULL;
        struct statx stx;
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                  STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MNT_ID, &stx) < 0) {
                l->err = negative_errno();
        } else {
                l->id = (AjFileId){ makedev(stx.stx_dev_major, stx.stx_dev_minor), stx.stx_ino };
                l->mode = stx.stx_mode;
                l->size = stx.stx_size;
                l->mnt_id = stx.stx_mnt_id;
                l->has_mnt_id = (stx.stx_mask & STATX_MNT_ID) != 0;
        }
        g->n_looked++;
        return l;
}

/* What the symlink `link` (its parent directory `dir`, resolved) points to, followed by
 * `rest`, as a new normalized path; false where this walk does not follow: a target with
 * "..", a link whose size is not its target's length (a /proc magic link), too long. */
static bool follow_link(const Looked *link, const char *dir, const char *rest, char *out)
{
        char target[PATH_MAX], joined[2 * PATH_MAX + 2];
        ssize_t n;

        if (link->size == 0 || link->size >= sizeof(target))
                return false;
        n = readlink(link->path, target, sizeof(target) - 1);
        if (n < 0 || (uint64_t)n != link->size)
                return false;
        target[n] = '\0';
        if (path_has_dotdot(target))
                return false;
        snprintf(joined, sizeof(joined), "%s/%s%s", target[0] == '/' ? "" : dir, target, rest);
        _cleanup_free_ char *norm = NULL;
        if (path_normalize(joined, &norm) < 0 || strlen(norm) >= PATH_MAX)
                return false;
        strcpy(out, norm);
        return true;
}

/* resolve_prefix() and id_chain_from_path() in one walk for `path` (absolute, normalized,
 * no ".."): one lstat a component, shared between the places of a list, where those two
 * open, read back and stat every place and each of its parents. The same answers (a unit
 * test compares them); 1: not answered here (the caller takes the slow way). */
static int walk_place(Gather *g, const char *path, char **ret_real, AjIdChain *ret_chain)
{
        AjFileId ids[AJ_ID_CHAIN_MAX];
        char cur[PATH_MAX];
        const Looked *leaf = NULL;
        size_t n = 0, links = 0;
        bool missing = false;

        if (!g->has_root || strlen(path) >= sizeof(cur))
                return 1;
        strcpy(cur, path);
restart:
        n = 0;
        ids[n++] = g->root;
        leaf = NULL;
        for (size_t e = 1; cur[e - 1] && !streq(cur, "/");) {
                while (cur[e] && cur[e] != '/')
                        e++;
                char saved = cur[e];
                cur[e] = '\0';
                const Looked *l = look(g, cur);
                cur[e] = saved;
                if (!l)
                        return 1;
                if (l->err == -ENOENT || l->err == -ENOTDIR || l->err == -EACCES) {
                        missing = true;
                        break;
                }
                if (l->err < 0)
                        return l->err;
                if (S_ISLNK(l->mode)) {
                        char dir[PATH_MAX];
                        size_t slash = strrchr(l->path, '/') - l->path;
                        memcpy(dir, l->path, slash);
                        dir[slash] = '\0';
                        if (++links > WALK_LINKS_MAX || !follow_link(l, dir, cur + e, cur))
                                return 1;
                        goto restart;
                }
                if (n >= AJ_ID_CHAIN_MAX)
                        return 1;
                ids[n++] = l->id;
                leaf = l;
                if (!cur[e])
                        break;
                if (!S_ISDIR(l->mode)) { /* a file with a path below it */
                        missing = true;
                        break;
                }
                e++;
        }
        /* The chain runs from the leaf up; a leaf that is our root (also through a bind
         * mount of it) has no parents, as id_chain_from_fd() has it. */
        size_t kept_n = id_eq(ids[n - 1], g->root) ? 1 : n;
        AjFileId *kept = malloc(kept_n * sizeof(*kept));
        char *real = strdup(cur);
        if (!leaf && !(leaf = look(g, "/")))
                return 1;
        char *fs_path = leaf->err == 0 && leaf->has_mnt_id ? fs_path_of(leaf->mnt_id, leaf->path, g->mountinfo) : NULL;
        if (!kept || !real) {
                free(kept), free(real), free(fs_path);
                return -ENOMEM;
        }
        for (size_t i = 0; i < kept_n; i++)
                kept[i] = ids[n - 1 - i];
        *ret_real = real;
        *ret_chain = (AjIdChain){ .ids = kept, .n = kept_n, .fs_path = fs_path, .missing = missing };
        return 0;
}

int aj_id_chain_from_path(const char *path, AjIdChain *ret)
{
        return id_chain_from_path(path, NULL, false, ret);
}

/* The slow way: realpath of the longest existing prefix, then its chain through an fd. */
static int resolve_slow(const char *path, Gather *g, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_free_ char *real = NULL;
        int r = resolve_prefix(path, &real);
        if (r < 0)
                return r;
        r = id_chain_from_path(real, g, true, ret_chain);
        if (r < 0)
                return r;
        *ret_real = TAKE_PTR(real);
        return 0;
}

static int resolve_place(const char *path, Gather *g, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_free_ char *norm = NULL;
        if (g && path[0] == '/' && !path_has_dotdot(path) && path_normalize(path, &norm) == 0) {
                int r = walk_place(g, norm, ret_real, ret_chain);
                if (r <= 0)
                        return r;
        }
        return resolve_slow(path, g, ret_real, ret_chain);
}

int aj_sensitive_resolve(const char *path, bool walk, char **ret_real, AjIdChain *ret_chain)
{
        _cleanup_(gather_done) Gather g;
        gather_init(&g);
        if (!path || path[0] != '/' || !ret_real || !ret_chain)
                return -EINVAL;
        if (!walk)
                return resolve_slow(path, &g, ret_real, ret_chain);
        _cleanup_free_ char *norm = NULL;
        if (path_has_dotdot(path) || path_normalize(path, &norm) < 0)
                return -EINVAL;
        return walk_place(&g, norm, ret_real, ret_chain);
}

/* `g`: gathered once for the whole list (NULL: each time). */
static int list_add(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule, Gather *g)
{
        _cleanup_free_ char *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        AjSensitivePlace *n;
        int r;

        if (!l || !path || !what)
                return -EINVAL;
        if ((size_t) rule >= ARRAY_SIZE(place_rules))
                return -EINVAL;
        r = resolve_place(path, g, &real, &chain);
        if (r == -EINVAL) {
                /* Relative or with "..": what exists is resolved; a place no profile can
                 * opt out of must be (AGENTJAIL_STATE_DIR=state is inside the cwd), others
                 * are skipped. */
                real = kernel_realpath(path);
                if (!real)
                        return aj_place_rule_opt_out(rule) ? 0 : -EINVAL;
                r = id_chain_from_path(real, g, true, &chain);
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].path, real) && l->items[i].rule == rule)
                        return 0;
        if (l->n >= MAX_STEPS)
                return -E2BIG;
        n = realloc(l->items, (l->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        l->items = n;
        l->items[l->n++] = (AjSensitivePlace){ .path = TAKE_PTR(real), .what = what, .rule = rule,
                                                .chain = chain };
        chain = (AjIdChain){ 0 };
        return 0;
}

int aj_sensitive_list_add(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule)
{
        return list_add(l, path, what, rule, NULL);
}

void aj_sensitive_list_done(AjSensitiveList *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                aj_id_chain_done(&l->items[i].chain);
        }
        free(l->items);
        l->items = NULL;
        l->n = 0;
        if (l->gather) {
                gather_done(l->gather);
                free(l->gather);
                l->gather = NULL;
        }
}

/* Home directories of real users in a passwd file (root and uid >= 1000, not nobody). */
static int add_passwd_homes(AjSensitiveList *l, const char *file, Gather *mi)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        /* Read whole and split here: fgetpwent() seeks before every entry. */
        r = aj_read_file(file, 1 << 20, &text, &len);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        size_t n = 0;
        for (char *line = text, *next; line && *line && n < MAX_STEPS; line = next, n++) {
                char *f[7] = { line };
                size_t k = 1;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                for (char *c = line; *c && k < 7; c++)
                        if (*c == ':') {
                                *c = '\0';
                                f[k++] = c + 1;
                        }
                if (k < 7 || line[0] == '#')
                        continue; /* name:passwd:uid:gid:gecos:home:shell */
                char *end;
                unsigned long uid = strtoul(f[2], &end, 10);
                if (*end || !*f[2] || (uid != 0 && (uid < 1000 || uid == 65534)))
                        continue;
                if (f[5][0] != '/' || streq(f[5], "/"))
                        continue;
                r = list_add(l, f[5], "a user's home directory", AJ_PLACE_GENERIC, mi);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_dir_entries(AjSensitiveList *l, const char *root, Gather *mi)
{
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        size_t n = 0;
        int r;

        if (!d)
                return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
        while ((de = readdir(d)) && n < 1024) {
                _cleanup_free_ char *p = NULL;

                if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
                        continue;
                p = aj_path_join(root, de->d_name);
                if (!p)
                        return -ENOMEM;
                r = list_add(l, p, "a user's home directory", AJ_PLACE_GENERIC, mi);
                if (r < 0)
                        return r;
                n++;
        }
        return 0;
}

int aj_sensitive_list_build(const AjSensitiveSources *src, AjSensitiveList *ret)
{
        static const struct {
                const char *path, *what;
                AjPlaceRule rule;
        } fixed[] = {
                /* The system itself: an agent acting as their owner is root on the host. */
                { "/", "the host's root directory", AJ_PLACE_SYSTEM_DIR },
                { "/usr", "the system's programs and libraries", AJ_PLACE_SYSTEM_TREE },
                { "/bin", "the system's programs", AJ_PLACE_SYSTEM_TREE },
                { "/sbin", "the system's programs", AJ_PLACE_SYSTEM_TREE },
                { "/lib", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/lib32", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/lib64", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/libx32", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/etc", "the system's configuration", AJ_PLACE_SYSTEM_TREE },
                { "/boot", "the system's kernels and boot loader", AJ_PLACE_SYSTEM_TREE },
                { "/proc", "the host's processes", AJ_PLACE_SYSTEM_TREE },
                { "/sys", "the host's kernel objects", AJ_PLACE_SYSTEM_TREE },
                { "/dev", "the host's devices", AJ_PLACE_SYSTEM_TREE },
                { "/var", "the system's variable data", AJ_PLACE_SYSTEM_DIR },
                { "/run", "the system's sockets and runtime state", AJ_PLACE_SYSTEM_DIR },
                { "/home", "every user's home directory", AJ_PLACE_SYSTEM_DIR },
                /* Shared with other users and services, or someone's files: opt-out possible. */
                { "/tmp", "temporary files and sockets of every user", AJ_PLACE_GENERIC },
                { "/var/tmp", "temporary files of every user", AJ_PLACE_GENERIC },
                { "/dev/shm", "shared memory of every user", AJ_PLACE_GENERIC },
                { "/run", "the system's sockets and runtime state", AJ_PLACE_GENERIC },
                { "/root", "root's home directory", AJ_PLACE_GENERIC },
                { "/var", "the system's variable data", AJ_PLACE_GENERIC },
                { "/var/lib", "the system's service state", AJ_PLACE_GENERIC },
                { "/srv", "the system's served data", AJ_PLACE_GENERIC },
                { "/home", "every user's home directory", AJ_PLACE_GENERIC },
        };
        _cleanup_(aj_sensitive_list_done) AjSensitiveList l = { 0 };
        Gather *mi;
        int r;

        if (!src || !ret)
                return -EINVAL;
        mi = l.gather = malloc(sizeof(*l.gather));
        if (!mi)
                return -ENOMEM;
        gather_init(mi);
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
                if ((r = list_add(&l, fixed[i].path, fixed[i].what, fixed[i].rule, mi)) < 0)
                        return r;
        if (src->host_home && (r = list_add(&l, src->host_home, "the invoking user's home directory",
                                            AJ_PLACE_GENERIC, mi)) < 0)
                return r;
        if (src->passwd && (r = add_passwd_homes(&l, src->passwd, mi)) < 0)
                return r;
        if (src->home_root && (r = add_dir_entries(&l, src->home_root, mi)) < 0)
                return r;
        if (src->state_root && (r = list_add(&l, src->state_root, "agentjail's state dir "
                                             "(run records, the seccomp cache)",
                                             AJ_PLACE_AGENTJAIL_DATA, mi)) < 0)
                return r;
        if (src->runtime_root && (r = list_add(&l, src->runtime_root, "agentjail's runtime dir "
                                               "(control sockets)", AJ_PLACE_AGENTJAIL_DATA, mi)) < 0)
                return r;
        if (src->exe && (r = list_add(&l, src->exe, "the agentjail executable", AJ_PLACE_AGENTJAIL_CODE,
                                      mi)) < 0)
                return r;
        /* "./profiles" is the cwd's, inside the workspace by design (searched last). */
        for (char *const *d = src->config_dirs; d && *d; d++)
                if ((*d)[0] == '/' && (r = list_add(&l, *d, "an agentjail profile or config dir",
                                                    AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                        return r;
        *ret = l;
        l = (AjSensitiveList){ 0 };
        return 0;
}

/* ---- plan construction ------------------------------------------------- */

static void step_clear(AjMountStep *s)
{
        free(s->source);
        free(s->target);
        free(s->options);
        free(s->overlay);
        if (s->tree_fd >= 0)
                close(s->tree_fd);
        s->tree_fd = -1;
}

static int plan_add(AjMountPlan *plan, AjMountStep *s)
{
        if (plan->n >= MAX_STEPS) {
                step_clear(s);
                return -E2BIG;
        }
        if (plan->n == plan->allocated) {
                size_t na = plan->allocated ? plan->allocated * 2 : 64;
                AjMountStep *ns = realloc(plan->steps, na * sizeof(*ns));

                if (!ns) {
                        step_clear(s);
                        return -ENOMEM;
                }
                plan->steps = ns;
                plan->allocated = na;
        }
        s->seq = plan->n;
        plan->steps[plan->n++] = *s;
        return 0;
}

/* Takes ownership of source/target/options (also on failure). */
static int add_step(AjMountPlan *plan, StepKind kind, StepOrigin origin, char *source, char *target,
                    const char *fstype, char *options, uint64_t attr, bool is_dir)
{
        AjMountStep s = {
                .kind = kind,
                .origin = origin,
                .source = source,
                .target = target,
                .fstype = fstype,
                .options = options,
                .attr = attr,
                .is_dir = is_dir,
                .tree_fd = -1,
        };

        if ((source == NULL && (kind == STEP_BIND || kind == STEP_SYMLINK || kind == STEP_WRITE_FILE)) ||
            (target == NULL && kind != STEP_PRIVATE && kind != STEP_PIVOT && kind != STEP_ROOT_RDONLY)) {
                step_clear(&s);
                return -ENOMEM;
        }
        return plan_add(plan, &s);
}

static int check_target(const char *field, const char *target, char **ret_error)
{
        static const char *const reserved[] = { "/proc", "/dev", "/sys" };

        if (streq(target, "/"))
                return format_error(ret_error, "%s: cannot mount over '/' (the jail's root is built by agentjail)",
                                    field),
                       -EINVAL;
        for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
                if (path_under(target, reserved[i]))
                        return format_error(ret_error, "%s: '%s' is under %s, which the jail sets up itself",
                                            field, target, reserved[i]),
                               -EINVAL;
        return 0;
}

/* A jail path as written in a profile ("~/x" = the jail's home) -> normalized absolute path. */
static int resolve_jail_path(const char *field, const char *raw, const char *jail_home, char **ret,
                             char **ret_error)
{
        _cleanup_free_ char *joined = NULL;
        const char *rest = tilde_rest(raw);
        const char *p = raw;
        int r;

        if (rest) {
                joined = aj_path_join(jail_home, rest);
                if (!joined)
                        return -ENOMEM;
                p = joined;
        }
        if (p[0] != '/')
                return format_error(ret_error, "%s: target '%s' must be an absolute path", field, raw), -EINVAL;
        if (path_has_dotdot(p))
                return format_error(ret_error, "%s: target '%s' must not contain '..'", field, raw), -EINVAL;
        r = path_normalize(p, ret);
        if (r < 0)
                return r;
        r = check_target(field, *ret, ret_error);
        if (r < 0) {
                free(*ret);
                *ret = NULL;
        }
        return r;
}

/* "~/x" (rest = "x", or "" for "~") -> the invoking user's home joined with it. */
static int host_home_join(const char *field, const char *raw, const char *rest, const AjMountContext *ctx,
                          char **ret, char **ret_error)
{
        if (!ctx->host_home || ctx->host_home[0] != '/')
                return format_error(ret_error, "%s: '%s' uses '~' but the home directory is unknown", field, raw),
                       -EINVAL;
        *ret = aj_path_join(ctx->host_home, rest);
        return *ret ? 0 : -ENOMEM;
}

/*
 * A host path as written in a profile: "~/x" = the invoking user's home, "." and
 * relative paths = the run's cwd. ret_default_target is where it appears in the
 * jail when no explicit target was given: the same path, except "~/x" which lands
 * in the jail's home.
 */
static int resolve_host_path(const char *field, const char *raw, const AjMountContext *ctx,
                             const char *jail_home, char **ret_source, char **ret_default_target,
                             char **ret_error)
{
        _cleanup_free_ char *joined = NULL, *src = NULL, *tgt = NULL;
        const char *rest = tilde_rest(raw);
        int r;

        if (raw[0] == '\0')
                return format_error(ret_error, "%s: empty path", field), -EINVAL;
        if (raw[0] == '~' && !rest)
                return format_error(ret_error, "%s: '%s': only '~' and '~/...' are supported", field, raw),
                       -EINVAL;
        if (rest) {
                r = host_home_join(field, raw, rest, ctx, &joined, ret_error);
                if (r < 0)
                        return r;
                tgt = aj_path_join(jail_home, rest);
                if (!tgt)
                        return -ENOMEM;
        } else if (raw[0] != '/') {
                if (!ctx->cwd || ctx->cwd[0] != '/')
                        return format_error(ret_error, "%s: '%s' is relative but the working directory is unknown",
                                            field, raw),
                               -EINVAL;
                joined = aj_path_join(ctx->cwd, raw);
                if (!joined)
                        return -ENOMEM;
        } else {
                joined = strdup(raw);
                if (!joined)
                        return -ENOMEM;
        }

        if (path_has_dotdot(joined)) {
                /* Lexical ".." removal is wrong across symlinks; let the kernel decide. */
                src = kernel_realpath(joined);
                if (!src)
                        return negative_errno();
        } else {
                r = path_normalize(joined, &src);
                if (r < 0)
                        return r;
        }

        if (!tgt) {
                tgt = strdup(src);
                if (!tgt)
                        return -ENOMEM;
        } else if (path_has_dotdot(tgt)) {
                return format_error(ret_error, "%s: '%s' must not contain '..'", field, raw), -EINVAL;
        } else {
                char *n = NULL;

                r = path_normalize(tgt, &n);
                if (r < 0)
                        return r;
                free(tgt);
                tgt = n;
        }

        *ret_source = TAKE_PTR(src);
        *ret_default_target = TAKE_PTR(tgt);
        return 0;
}

/* Opens what a bind of `path` would mount (following symlinks, as the mount does) and
 * returns its path as the kernel resolved it and its identity: the checks below judge
 * that path, and the mount later must have that dev/ino (a swapped symlink or directory
 * in between makes the run fail instead of mounting something unchecked). */
static int open_source(AjMountPlan *plan, const char *path, char **ret_real, struct stat *ret_st,
                       AjIdChain *ret_chain)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        char buf[PATH_MAX];
        ssize_t n;
        int r;

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        n = fd_kernel_path(fd, buf);
        if (n < 0)
                return (int)n;
        /* Not reachable from our root ("pipe:", a deleted directory): nothing to mount. */
        if (buf[0] != '/' || (n > 10 && streq(buf + n - 10, " (deleted)")))
                return -ENOENT;
        /* Its identity and its ancestors': the places are judged on these too, so a bind-mount
         * alias of a place (or of its parent) is seen for what it is. */
        r = id_chain_from_fd(fd, plan->gather, buf, ret_chain);
        if (r < 0)
                return r;
        *ret_real = strdup(buf);
        if (!*ret_real) {
                aj_id_chain_done(ret_chain);
                return -ENOMEM;
        }
        return 0;
}

/* Why a rule refused, for the message (after "(rule: "). */
static const char *rule_reason(AjPlaceRule rule, AjAccess access)
{
        switch (rule) {
        case AJ_PLACE_GENERIC:
                return access == AJ_ACCESS_READ
                               ? "sensitive places are not mounted, even read-only: the host's Unix sockets in "
                                 "them still accept connections and their files may be secrets; bind a "
                                 "subdirectory, or add"
                               : "sensitive places are never mounted writable or as the workspace; run from a "
                                 "project directory, or add";
        case AJ_PLACE_SYSTEM_TREE:
        case AJ_PLACE_SYSTEM_DIR:
                return "the system's own directories are never mounted writable or as the workspace: there "
                       "the agent acts as their owner, root";
        default:
                if (access == AJ_ACCESS_READ)
                        return "agentjail's state and runtime dirs are never mounted, even read-only: they "
                               "hold other runs' records and the control sockets";
                return "agentjail's own files are never mounted writable; an agent that can write there "
                       "controls the operator's next runs";
        }
}

static int check_sensitive(AjMountPlan *plan, const AjMountContext *ctx, const char *field, const char *real,
                           const AjIdChain *id, AjAccess access, char **ret_error)
{
        const AjSensitiveList *l = ctx->sensitive ? ctx->sensitive : &plan->fixed_places;
        size_t i = 0;
        AjSensitiveVerdict v = aj_sensitive_check(real, id, access, l, plan->allow_sensitive, &i);
        const AjSensitivePlace *pl = v == AJ_SENSITIVE_NONE ? NULL : &l->items[i];
        unsigned rel = pl ? aj_place_relation(real, id, pl) : 0;
        const char *how = !pl                         ? ""
                          : (rel & AJ_REL_IS)       ? "it is"
                          : (rel & AJ_REL_CONTAINS) ? "it contains"
                                                    : "it is inside";
        /* Only the identities relate them: another name for the place (a bind mount). */
        const char *alias = pl && rel && !aj_place_relation(real, NULL, pl) ? " (under another name: a bind mount)"
                                                                            : "";
        char *line = NULL;
        char **n;

        if (v == AJ_SENSITIVE_NONE)
                return 0;
        if (v == AJ_SENSITIVE_REFUSED) {
                if (aj_place_rule_opt_out(pl->rule))
                        return format_error(ret_error, "%s: refusing '%s': %s '%s'%s, %s (rule: %s \"%s\" to "
                                            "filesystem.allow_sensitive)",
                                            field, real, how, pl->path, alias, pl->what,
                                            rule_reason(pl->rule, access), pl->path),
                               -EPERM;
                return format_error(ret_error, "%s: refusing '%s': %s '%s'%s, %s (rule: %s)", field, real, how,
                                    pl->path, alias, pl->what, rule_reason(pl->rule, access)),
                       -EPERM;
        }
        if (asprintf(&line, "%s '%s' %s %s%s (%s), allowed by filesystem.allow_sensitive", field, real,
                     (rel & AJ_REL_IS) ? "is" : "contains", pl->path, alias, pl->what) < 0)
                return -ENOMEM;
        n = realloc(plan->sensitive_allowed, (plan->n_sensitive_allowed + 2) * sizeof(char *));
        if (!n) {
                free(line);
                return -ENOMEM;
        }
        plan->sensitive_allowed = n;
        n[plan->n_sensitive_allowed++] = line;
        n[plan->n_sensitive_allowed] = NULL;
        return 0;
}

/* A bind carries the mounts below its source along (AT_RECURSIVE): each of them reaches the
 * jail as surely as the source itself, so each is judged as a source, by its own path and
 * identity. A mount of /tmp inside a workspace carried the host's /tmp into the jail. */
static int check_submounts(AjMountPlan *plan, const AjMountContext *ctx, const char *field, const char *real,
                           AjAccess access, char **ret_error)
{
        _cleanup_free_ char *own = NULL;
        const char *table = plan->gather->mountinfo;
        int r;

        if (!table) {
                r = mountinfo_load(&own);
                if (r < 0)
                        return format_error(ret_error, "%s: cannot read the mount table to check what '%s' "
                                            "holds: %s", field, real, strerror(-r)),
                               r;
                table = own;
        }
        for (const char *line = table; *line;) {
                const char *f[5], *end;

                if (!mountinfo_next(&line, f, &end))
                        continue;
                const char *point_end = strchrnul(f[4], ' ');
                if (point_end > end)
                        continue;
                _cleanup_free_ char *point = mountinfo_field(f[4], (size_t)(point_end - f[4]));
                if (!point)
                        return -ENOMEM;
                const char *rel = path_under(point, real);
                if (!rel || !*rel || streq(point, real))
                        continue;
                _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
                _cleanup_free_ char *sub_field = NULL;
                if (id_chain_from_path(point, plan->gather, true, &chain) < 0)
                        continue; /* gone, or not ours to see: the jail cannot see it either */
                if (asprintf(&sub_field, "%s: '%s' holds a mount", field, real) < 0)
                        return -ENOMEM;
                r = check_sensitive(plan, ctx, sub_field, point, &chain, access, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int plan_bind(AjMountPlan *plan, const char *field, const AjBind *b, const AjMountContext *ctx,
                     const char *jail_home, bool writable, char **ret_error)
{
        _cleanup_free_ char *src = NULL, *tgt = NULL, *link = NULL;
        struct stat st;
        int r;

        if (!b->source)
                return format_error(ret_error, "%s: entry without a path", field), -EINVAL;

        r = resolve_host_path(field, b->source, ctx, jail_home, &src, &tgt, ret_error);
        if (r == -ENOENT && b->optional)
                return 0;
        if (r == -ENOENT)
                return format_error(ret_error, "%s: '%s' does not exist (prefix it with '?' to make it optional)",
                                    field, b->source),
                       r;
        if (r < 0)
                return r;

        if (b->target && !streq(b->target, b->source)) {
                free(tgt);
                tgt = NULL;
                r = resolve_jail_path(field, b->target, jail_home, &tgt, ret_error);
                if (r < 0)
                        return r;
        } else {
                r = check_target(field, tgt, ret_error);
                if (r < 0)
                        return r;
        }

        if (lstat(src, &st) < 0) {
                if (errno == ENOENT && b->optional)
                        return 0;
                if (errno == ENOENT)
                        return format_error(ret_error,
                                            "%s: '%s' does not exist (prefix it with '?' to make it optional)",
                                            field, b->source),
                               -ENOENT;
                r = negative_errno();
                return format_error(ret_error, "%s: cannot access '%s': %s", field, src, strerror(-r)), r;
        }

        /* Merged-/usr hosts: /bin -> usr/bin. Reproduce the link; binding it would follow it. */
        if (S_ISLNK(st.st_mode) && streq(src, tgt)) {
                ssize_t n;

                link = malloc(PATH_MAX);
                if (!link)
                        return -ENOMEM;
                n = readlink(src, link, PATH_MAX - 1);
                if (n < 0) {
                        r = negative_errno();
                        return format_error(ret_error, "%s: cannot read link '%s': %s", field, src, strerror(-r)),
                               r;
                }
                link[n] = '\0';
                return add_step(plan, STEP_SYMLINK, writable ? ORIGIN_RW : ORIGIN_RO, TAKE_PTR(link),
                                TAKE_PTR(tgt), NULL, NULL, 0, false);
        }
        bool link_src = S_ISLNK(st.st_mode);
        _cleanup_free_ char *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };

        /* Every bind is judged by where it leads: a read-only one too (its sockets still
         * accept connections, its files are read). */
        r = open_source(plan, src, &real, &st, &chain);
        if (r == -ENOENT && b->optional)
                return 0;
        if (r < 0 && link_src)
                return format_error(ret_error, "%s: '%s' is a symlink to nothing usable: %s", field, src,
                                    strerror(-r)),
                       r;
        if (r < 0)
                return format_error(ret_error, "%s: cannot access '%s': %s", field, src, strerror(-r)), r;
        r = check_sensitive(plan, ctx, field, real, &chain, writable ? AJ_ACCESS_OWNER : AJ_ACCESS_READ,
                            ret_error);
        if (r >= 0 && S_ISDIR(st.st_mode))
                r = check_submounts(plan, ctx, field, real, writable ? AJ_ACCESS_OWNER : AJ_ACCESS_READ,
                                    ret_error);
        if (r < 0)
                return r;

        r = add_step(plan, STEP_BIND, writable ? ORIGIN_RW : ORIGIN_RO, TAKE_PTR(real), TAKE_PTR(tgt), NULL, NULL,
                     writable ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                              : MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                     S_ISDIR(st.st_mode));
        if (r >= 0) {
                AjMountStep *s = &plan->steps[plan->n - 1];

                s->has_id = true;
                s->dev = st.st_dev;
                s->ino = st.st_ino;
        }
        return r;
}

static int plan_workspace(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx,
                          const char *jail_home, char **ret_error)
{
        static const char field[] = "filesystem.workspace";
        _cleanup_free_ char *src = NULL, *tgt = NULL, *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        const char *raw = p->workspace_path ? p->workspace_path : ".";
        struct stat st;
        int r;

        r = resolve_host_path(field, raw, ctx, jail_home, &src, &tgt, ret_error);
        if (r == -ENOENT)
                return format_error(ret_error, "%s: '%s' does not exist", field, raw), r;
        if (r < 0)
                return r;
        r = open_source(plan, src, &real, &st, &chain);
        if (r == -ENOENT)
                return format_error(ret_error, "%s: '%s' does not exist", field, src), r;
        if (r < 0)
                return format_error(ret_error, "%s: cannot access '%s': %s", field, src, strerror(-r)), r;
        /* Every mode: the workspace is idmapped, so even read-only the agent reads as its
         * owner (a root-owned /etc's shadow file), and an overlay's lower layer is read so. */
        r = check_sensitive(plan, ctx, field, real, &chain, AJ_ACCESS_OWNER, ret_error);
        if (r >= 0 && S_ISDIR(st.st_mode))
                r = check_submounts(plan, ctx, field, real, AJ_ACCESS_OWNER, ret_error);
        if (r < 0)
                return r;
        if (!S_ISDIR(st.st_mode))
                return format_error(ret_error, "%s: '%s' is not a directory", field, real), -ENOTDIR;

        /* The workspace keeps its host path so paths in logs and tool output match. */
        free(tgt);
        tgt = strdup(real);
        if (!tgt)
                return -ENOMEM;
        free(plan->workdir);
        plan->workdir = strdup(real);
        if (!plan->workdir)
                return -ENOMEM;

        uint64_t attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if (p->workspace_mode == AJ_WORKSPACE_RO)
                attr |= MOUNT_ATTR_RDONLY;
        _cleanup_free_ char *overlay = NULL;
        if (p->workspace_mode == AJ_WORKSPACE_OVERLAY) {
                /* The overlay is built by the supervisor in the host's user namespace (trusted
                 * xattrs, real whiteouts), which a rootless supervisor cannot do. */
                if (!ctx->idmap)
                        return format_error(ret_error,
                                            "%s.mode \"overlay\" needs agentjail started as root (a rootless "
                                            "overlay workspace is not supported yet); use \"rw\" or \"ro\"",
                                            field),
                               -EPERM;
                if (!ctx->overlay_dir || !(overlay = strdup(ctx->overlay_dir)))
                        return -EINVAL;
        }
        r = add_step(plan, STEP_BIND, ORIGIN_WORKSPACE, TAKE_PTR(real), TAKE_PTR(tgt), NULL, NULL, attr, true);
        if (r >= 0) {
                AjMountStep *s = &plan->steps[plan->n - 1];

                s->overlay = TAKE_PTR(overlay);
                s->has_id = true;
                s->dev = st.st_dev;
                s->ino = st.st_ino;
        }
        return r;
}

static bool valid_name(const char *s, size_t max)
{
        size_t l = strlen(s);

        if (l == 0 || l > max)
                return false;
        for (; *s; s++)
                if (*s == ':' || *s == '\n' || *s == ' ' || *s == '\t' || *s == '/' || (unsigned char) *s < 0x20)
                        return false;
        return true;
}

static int plan_etc(AjMountPlan *plan, const AjMountContext *ctx, const char *user, const char *home,
                    const char *hostname)
{
        char *passwd = NULL, *group = NULL, *hosts = NULL, *hn = NULL;
        uid_t uid = ctx->uid;
        gid_t gid = ctx->gid;
        int r;

        if (uid != 0 && uid != 65534)
                r = asprintf(&passwd,
                             "root:x:0:0:root:/root:/bin/sh\n"
                             "%s:x:%u:%u:%s:%s:/bin/sh\n"
                             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                             user, (unsigned) uid, (unsigned) gid, user, home);
        else
                r = asprintf(&passwd,
                             "root:x:0:0:root:%s:/bin/sh\n"
                             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                             uid == 0 ? home : "/root");
        if (r < 0)
                return -ENOMEM;
        r = add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, passwd, strdup("/etc/passwd"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (gid != 0 && gid != 5 && gid != 65534)
                r = asprintf(&group, "root:x:0:\ntty:x:5:\n%s:x:%u:\nnogroup:x:65534:\n", user, (unsigned) gid);
        else
                r = asprintf(&group, "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
        if (r < 0)
                return -ENOMEM;
        r = add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, group, strdup("/etc/group"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (asprintf(&hn, "%s\n", hostname) < 0)
                return -ENOMEM;
        r = add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, hn, strdup("/etc/hostname"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (asprintf(&hosts, "127.0.0.1 localhost %s\n::1 localhost\n", hostname) < 0)
                return -ENOMEM;
        return add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, hosts, strdup("/etc/hosts"), NULL, NULL, 0, false);
}

static int plan_dev(AjMountPlan *plan, const AjMountContext *ctx)
{
        static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
        static const char *const links[][2] = {
                { "/dev/ptmx", "pts/ptmx" },          { "/dev/fd", "/proc/self/fd" },
                { "/dev/stdin", "/proc/self/fd/0" },  { "/dev/stdout", "/proc/self/fd/1" },
                { "/dev/stderr", "/proc/self/fd/2" },
        };
        int r;

        r = add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev"), "tmpfs", strdup("mode=0755"),
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
                char *src = NULL;

                if (asprintf(&src, "/dev/%s", nodes[i]) < 0)
                        return -ENOMEM;
                /* mknod is refused in a user namespace: bind the host's nodes onto empty files. */
                r = add_step(plan, STEP_BIND, ORIGIN_DEVICE, src, strdup(src), NULL, NULL,
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
                if (r < 0)
                        return r;
        }
        /* gid= must name a group mapped in the jail; the jail maps exactly one. */
        r = add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev/pts"), "devpts",
                     strdup(ctx->gid == 5 ? "newinstance,ptmxmode=0666,mode=0620,gid=5"
                                          : "newinstance,ptmxmode=0666,mode=0620"),
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                return r;
        r = add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev/shm"), "tmpfs", strdup("mode=1777"),
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                r = add_step(plan, STEP_SYMLINK, ORIGIN_NONE, strdup(links[i][1]), strdup(links[i][0]), NULL,
                             NULL, 0, false);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Is `path` present in the planned tree, and is it a directory? Decided from the host
 * side of the deepest mount covering it. 0 = absent (nothing to hide), 1 = present. */
static int plan_lookup(const AjMountPlan *plan, size_t n_placed, const char *path, bool *ret_is_dir)
{
        const AjMountStep *best = NULL;
        size_t best_depth = 0;
        struct stat st;

        for (size_t i = 0; i < n_placed; i++) {
                const AjMountStep *s = &plan->steps[i];
                size_t d;

                if (s->kind != STEP_BIND && s->kind != STEP_FS && s->kind != STEP_SYMLINK &&
                    s->kind != STEP_WRITE_FILE)
                        continue;
                if (!path_under(path, s->target))
                        continue;
                /* Generated files live in the root tmpfs: any mount on a parent covers them. */
                d = s->kind == STEP_WRITE_FILE ? 0 : path_depth(s->target);
                if (!best || d >= best_depth) {
                        best = s;
                        best_depth = d;
                }
        }
        if (!best)
                return 0;

        const char *rest = path_under(path, best->target);
        switch (best->kind) {
        case STEP_BIND: {
                _cleanup_free_ char *host = aj_path_join(best->source, rest);

                if (!host)
                        return -ENOMEM;
                if (stat(host, &st) < 0)
                        return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
                *ret_is_dir = S_ISDIR(st.st_mode);
                return 1;
        }
        case STEP_FS:
                if (*rest)
                        return 0;
                *ret_is_dir = true;
                return 1;
        case STEP_WRITE_FILE:
                if (*rest)
                        return 0;
                *ret_is_dir = false;
                return 1;
        default:
                return 0; /* through a symlink: not resolved at plan time */
        }
}

static int cmp_step_depth(const void *a, const void *b)
{
        const AjMountStep *x = a, *y = b;
        size_t dx = path_depth(x->target), dy = path_depth(y->target);

        if (dx != dy)
                return dx < dy ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* filesystem.allow_sensitive: "~" is the invoker's home; each entry resolved like the places. */
static int resolve_allow_sensitive(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx,
                                   char **ret_error)
{
        static const char field[] = "filesystem.allow_sensitive";

        if (p->allow_sensitive.n == 0)
                return 0;
        plan->allow_sensitive = calloc(p->allow_sensitive.n + 1, sizeof(char *));
        if (!plan->allow_sensitive)
                return -ENOMEM;
        for (size_t i = 0; i < p->allow_sensitive.n; i++) {
                const char *raw = p->allow_sensitive.items[i];
                _cleanup_free_ char *joined = NULL;
                const char *rest = tilde_rest(raw);
                int r;

                if (rest) {
                        r = host_home_join(field, raw, rest, ctx, &joined, ret_error);
                        if (r < 0)
                                return r;
                        raw = joined;
                }
                r = resolve_prefix(raw, &plan->allow_sensitive[i]);
                if (r == -EINVAL)
                        return format_error(ret_error, "%s: '%s' must be an absolute path or '~' without '..'",
                                            field, p->allow_sensitive.items[i]),
                               r;
                if (r < 0)
                        return r;
        }
        return 0;
}

int aj_mount_plan_build(const AjProfile *p, const AjMountContext *ctx, AjMountPlan **ret,
                        char **ret_error)
{
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        _cleanup_free_ char *home = NULL, *err = NULL;
        const char *user, *hostname;
        size_t placed_start, n;
        int r;

        if (!p || !ctx || !ret)
                return -EINVAL;
        user = ctx->user_name ? ctx->user_name : DEFAULT_USER;
        hostname = ctx->hostname ? ctx->hostname : p->hostname ? p->hostname : DEFAULT_HOSTNAME;
        if (!ctx->root_mountpoint || ctx->root_mountpoint[0] != '/')
                return format_error(ret_error, "root mountpoint must be an absolute path"), -EINVAL;
        if (!valid_name(user, 32))
                return format_error(ret_error, "invalid user name '%s'", user), -EINVAL;
        if (!valid_name(hostname, 64))
                return format_error(ret_error, "invalid hostname '%s'", hostname), -EINVAL;

        plan = calloc(1, sizeof(*plan));
        if (!plan)
                return -ENOMEM;
        plan->root = strdup(ctx->root_mountpoint);
        if (!plan->root)
                return -ENOMEM;
        plan->allow_degraded_idmap = p->allow_degraded & AJ_DEGRADE_IDMAP;

        r = resolve_jail_path("filesystem.home", p->home ? p->home : DEFAULT_HOME, "/", &home, &err);
        if (r < 0)
                goto fail;
        r = resolve_allow_sensitive(plan, p, ctx, &err);
        if (r < 0)
                goto fail;
        /* No list from the caller: the fixed places still hold (fail closed). */
        if (!ctx->sensitive) {
                r = aj_sensitive_list_build(&(AjSensitiveSources){ 0 }, &plan->fixed_places);
                if (r < 0)
                        goto fail;
        }
        /* The list's lookups (the mount table, the parents it looked at) serve the plan too. */
        plan->gather = (ctx->sensitive ? ctx->sensitive : &plan->fixed_places)->gather;
        if (!plan->gather) {
                gather_init(&plan->own_gather);
                plan->gather = &plan->own_gather;
        }

        r = add_step(plan, STEP_PRIVATE, ORIGIN_NONE, NULL, NULL, NULL, NULL, 0, true);
        if (r < 0)
                goto fail;
        r = add_step(plan, STEP_ROOT_TMPFS, ORIGIN_NONE, NULL, strdup(ctx->root_mountpoint), "tmpfs",
                     strdup("mode=0755"), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        if (r < 0)
                goto fail;
        /* Written into the root tmpfs first: a profile bind on /etc or /etc/passwd covers them. */
        r = plan_etc(plan, ctx, user, home, hostname);
        if (r < 0)
                goto fail;

        placed_start = plan->n;

        /* Tmpfs entries first, so that at equal depth a bind on the same path wins. */
        for (size_t i = 0; i < p->tmpfs.n; i++) {
                char *t = NULL;

                r = resolve_jail_path("filesystem.tmpfs", p->tmpfs.items[i], home, &t, &err);
                if (r < 0)
                        goto fail;
                r = add_step(plan, STEP_FS, ORIGIN_TMPFS, NULL, t, "tmpfs", strdup("mode=1777"),
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
                if (r < 0)
                        goto fail;
        }
        {
                char *opts = NULL;

                if (asprintf(&opts, "mode=0700,uid=%u,gid=%u", (unsigned) ctx->uid, (unsigned) ctx->gid) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = add_step(plan, STEP_FS, ORIGIN_HOME, NULL, strdup(home), "tmpfs", opts,
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
                if (r < 0)
                        goto fail;
        }

        for (size_t i = 0; i < p->ro.n; i++) {
                r = plan_bind(plan, "filesystem.ro", &p->ro.items[i], ctx, home, false, &err);
                if (r < 0)
                        goto fail;
        }
        for (size_t i = 0; i < ctx->extra_ro.n; i++) {
                r = plan_bind(plan, "--ro", &ctx->extra_ro.items[i], ctx, home, false, &err);
                if (r < 0)
                        goto fail;
        }
        for (size_t i = 0; i < p->rw.n; i++) {
                r = plan_bind(plan, "filesystem.rw", &p->rw.items[i], ctx, home, true, &err);
                if (r < 0)
                        goto fail;
        }
        for (size_t i = 0; i < ctx->extra_rw.n; i++) {
                r = plan_bind(plan, "--rw", &ctx->extra_rw.items[i], ctx, home, true, &err);
                if (r < 0)
                        goto fail;
        }
        if (p->workspace_mode != AJ_WORKSPACE_NONE) {
                r = plan_workspace(plan, p, ctx, home, &err);
                if (r < 0)
                        goto fail;
        }
        if (ctx->runtime_dir) {
                if (ctx->runtime_dir[0] != '/') {
                        format_error(&err, "runtime directory '%s' must be an absolute path", ctx->runtime_dir);
                        r = -EINVAL;
                        goto fail;
                }
                r = add_step(plan, STEP_BIND, ORIGIN_RUNTIME, strdup(ctx->runtime_dir), strdup(RUNTIME_TARGET),
                             NULL, NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
                if (r < 0)
                        goto fail;
        }

        /* Parents before children; equal depth keeps the order above. */
        n = plan->n - placed_start;
        qsort(plan->steps + placed_start, n, sizeof(AjMountStep), cmp_step_depth);

        if (ctx->idmap)
                for (size_t i = placed_start; i < plan->n; i++) {
                        AjMountStep *s = &plan->steps[i];

                        if (s->kind == STEP_BIND && (s->origin == ORIGIN_RW || s->origin == ORIGIN_WORKSPACE))
                                s->idmap = true;
                }

        size_t n_placed = plan->n;

        r = add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/proc"), "proc", NULL,
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                goto fail;
        {
                static const char *const ro[] = { "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus" };

                for (size_t i = 0; i < ARRAY_SIZE(ro); i++) {
                        r = add_step(plan, STEP_REBIND_RO, ORIGIN_NONE, NULL, strdup(ro[i]), NULL, NULL,
                                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                             MOUNT_ATTR_NOEXEC,
                                     false);
                        if (r < 0)
                                goto fail;
                }
        }
        r = plan_dev(plan, ctx);
        if (r < 0)
                goto fail;

        for (size_t i = 0; i < p->hide.n; i++) {
                const char *raw = p->hide.items[i];
                char *t = NULL;
                bool is_dir = false;

                if (raw && raw[0] == '?')
                        raw++;
                r = resolve_jail_path("filesystem.hide", raw ? raw : "", home, &t, &err);
                if (r < 0)
                        goto fail;
                r = plan_lookup(plan, n_placed, t, &is_dir);
                if (r <= 0) {
                        free(t);
                        if (r < 0)
                                goto fail;
                        continue; /* nothing there to hide */
                }
                r = add_step(plan, STEP_HIDE, ORIGIN_NONE, NULL, t, NULL, NULL,
                             MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, is_dir);
                if (r < 0)
                        goto fail;
        }

        if (!plan->workdir) {
                plan->workdir = strdup(home);
                if (!plan->workdir) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = add_step(plan, STEP_PIVOT, ORIGIN_NONE, NULL, NULL, NULL, NULL, 0, true);
        if (r < 0)
                goto fail;
        r = add_step(plan, STEP_ROOT_RDONLY, ORIGIN_NONE, NULL, strdup("/"), NULL, NULL, MOUNT_ATTR_RDONLY, true);
        if (r < 0)
                goto fail;
        r = add_step(plan, STEP_CHDIR, ORIGIN_NONE, NULL, strdup(plan->workdir), NULL, NULL, 0, true);
        if (r < 0)
                goto fail;

        plan->gather = &plan->own_gather; /* the list's may be gone before the plan */
        *ret = TAKE_PTR(plan);
        return 0;

fail:
        if (ret_error) {
                if (!err)
                        format_error(&err, "Failed to plan the jail's mounts: %s", strerror(-r));
                free(*ret_error);
                *ret_error = TAKE_PTR(err);
        }
        return r;
}

/* ---- host side: idmapped trees ----------------------------------------- */

/* A detached overlay mount over the detached tree `lower_fd`, its upper and work dirs in
 * `dir`. Plain copy-up semantics (no redirects, no metacopy, no index), so the upper dir
 * is a complete, reviewable record of the changes (src/workspace.c). */
static int overlay_over(int lower_fd, const char *dir, uint64_t attr, char **ret_error)
{
        _cleanup_close_ int fsfd = sys_fsopen("overlay", FSOPEN_CLOEXEC);
        char upper[PATH_MAX], work[PATH_MAX], lower[64];
        int r;

        if (fsfd < 0) {
                r = negative_errno();
                return format_error(ret_error, "overlayfs is not available: %s", strerror(-r)), r;
        }
        snprintf(upper, sizeof(upper), "%s/upper", dir);
        snprintf(work, sizeof(work), "%s/work", dir);
        /* The lower layer by fd (Linux 6.8+), else through its /proc/self/fd link. */
        if (sys_fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lower_fd) < 0) {
                snprintf(lower, sizeof(lower), "/proc/self/fd/%d", lower_fd);
                if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0) {
                        r = negative_errno();
                        return format_error(ret_error, "overlay: cannot use the workspace as the lower layer: %s",
                                            strerror(-r)),
                               r;
                }
        }
        static const char *const off[] = { "redirect_dir", "metacopy", "index" };
        if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
            sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", work, 0) < 0) {
                r = negative_errno();
                return format_error(ret_error, "overlay: upper dir '%s': %s", upper, strerror(-r)), r;
        }
        for (size_t i = 0; i < ARRAY_SIZE(off); i++)
                if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, off[i], "off", 0) < 0) {
                        r = negative_errno();
                        return format_error(ret_error, "overlay: %s=off: %s", off[i], strerror(-r)), r;
                }
        if (sys_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
                r = negative_errno();
                char msg[256] = "";
                ssize_t n = read(fsfd, msg, sizeof(msg) - 1); /* the kernel's reason, if it logged one */
                msg[n > 0 ? n - (msg[n - 1] == '\n') : 0] = 0;
                return format_error(ret_error, "overlay mount over the workspace failed: %s%s%s", strerror(-r),
                                    msg[0] ? ": " : "", msg),
                       r;
        }
        int mfd = sys_fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned) (attr & ~(uint64_t) MOUNT_ATTR_IDMAP));
        if (mfd < 0) {
                r = negative_errno();
                return format_error(ret_error, "overlay: fsmount: %s", strerror(-r)), r;
        }
        return mfd;
}

static int clone_tree(int dfd, const char *path, uint64_t attr_set);

/* The mount's root must be the file the plan checked: a symlink or directory swapped in
 * between is refused, never mounted. */
static int check_identity(const AjMountStep *s, int tree_fd)
{
        struct stat st;

        if (!s->has_id)
                return 0;
        if (fstat(tree_fd, &st) < 0)
                return negative_errno();
        return st.st_dev == s->dev && st.st_ino == s->ino ? 0 : -ESTALE;
}

static int prepare_idmapped(AjMountPlan *plan, AjMountStep *s, int idmap_userns_fd, char **ret_error)
{
        _cleanup_close_ int fd = -1;
        struct mount_attr attr = {
                .attr_set = s->attr | MOUNT_ATTR_IDMAP,
                .userns_fd = (uint64_t) idmap_userns_fd,
        };
        int r;

        if (idmap_userns_fd < 0)
                return format_error(ret_error, "no user namespace for the idmapped mount of '%s'", s->source),
                       -EBADF;
        fd = sys_open_tree(AT_FDCWD, s->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (fd < 0) {
                r = negative_errno();
                return format_error(ret_error, "Failed to clone the mount tree of '%s': %s", s->source,
                                    strerror(-r)),
                       r;
        }
        if (check_identity(s, fd) < 0)
                return format_error(ret_error, "'%s' changed after it was checked; refusing to mount it",
                                    s->source),
                       -ESTALE;
        if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) {
                r = negative_errno();
                if (plan->allow_degraded_idmap && (r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSYS)) {
                        /* The filesystem cannot idmap: keep a plain bind, the profile allows it. */
                        attr.attr_set = s->attr;
                        attr.userns_fd = 0;
                        if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) {
                                r = negative_errno();
                                return format_error(ret_error, "Failed to set mount flags on '%s': %s",
                                                    s->source, strerror(-r)),
                                       r;
                        }
                        s->degraded = true;
                } else
                        return format_error(ret_error, "Failed to create an idmapped mount of '%s': %s",
                                            s->source, strerror(-r)),
                               r;
        }
        if (s->overlay) {
                int ofd = overlay_over(fd, s->overlay, s->attr, ret_error);
                if (ofd < 0)
                        return ofd;
                close(fd);
                fd = ofd;
        }
        s->tree_fd = TAKE_FD(fd);
        return 0;
}

int aj_mount_plan_prepare(AjMountPlan *plan, int idmap_userns_fd, char **ret_error)
{
        if (!plan)
                return -EINVAL;
        for (size_t i = 0; i < plan->n; i++) {
                AjMountStep *s = &plan->steps[i];
                int r;

                /* The device nodes stay with the child: /dev is searchable by anyone, and six
                 * more trees here would cost the start-up path for nothing. */
                if (s->kind != STEP_BIND || s->tree_fd >= 0 || s->origin == ORIGIN_DEVICE)
                        continue;
                if (s->idmap) {
                        r = prepare_idmapped(plan, s, idmap_userns_fd, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
                /* Opened here, by the supervisor, so the jail's uid needs no search permission on
                 * the source's parents (a checkout under a 0700 /root); the child only moves it. */
                _cleanup_close_ int fd = clone_tree(AT_FDCWD, s->source, s->attr);
                if (fd < 0)
                        return format_error(ret_error, "Failed to clone the mount tree of '%s': %s", s->source,
                                            strerror(-fd)),
                               fd;
                if (check_identity(s, fd) < 0)
                        return format_error(ret_error, "'%s' changed after it was checked; refusing to mount it",
                                            s->source),
                               -ESTALE;
                s->tree_fd = TAKE_FD(fd);
        }
        return 0;
}

bool aj_mount_plan_idmap_degraded(const AjMountPlan *plan)
{
        if (!plan)
                return false;
        for (size_t i = 0; i < plan->n; i++)
                if (plan->steps[i].degraded)
                        return true;
        return false;
}

/* ---- child side -------------------------------------------------------- */

/* Symlinks in the new root (the profile's, the bound trees') resolve against it, never the host's. */
static int open_in_root(int rootfd, const char *target, int flags)
{
        return aj_open_under(rootfd, target, flags, 0, AJ_UNDER_FOLLOW);
}

/* mkdir -p of target's parent inside the new root; returns an O_PATH fd of the parent
 * and the last component in *ret_name (a pointer into `target`). */
static int open_parent_in_root(int rootfd, const char *target, const char **ret_name)
{
        char buf[PATH_MAX];
        const char *last = strrchr(target, '/');
        size_t plen;
        int fd;

        if (!last || !last[1])
                return -EINVAL;
        plen = (size_t) (last - target);
        if (plen >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, target, plen);
        buf[plen] = '\0';

        fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        if (fd == -ENOENT) {
                /* Create component by component, each resolved from the root again. */
                for (size_t i = 1; i <= plen; i++) {
                        if (i < plen && buf[i] != '/')
                                continue;
                        char saved = buf[i];
                        int pfd, dfd;
                        const char *comp;

                        buf[i] = '\0';
                        dfd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
                        if (dfd == -ENOENT) {
                                char *slash = strrchr(buf, '/');

                                comp = slash + 1;
                                *slash = '\0';
                                pfd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
                                *slash = '/';
                                if (pfd < 0)
                                        return pfd;
                                if (mkdirat(pfd, comp, 0755) < 0 && errno != EEXIST) {
                                        int r = negative_errno();

                                        close(pfd);
                                        return r;
                                }
                                close(pfd);
                                dfd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
                        }
                        if (dfd < 0)
                                return dfd;
                        close(dfd);
                        buf[i] = saved;
                }
                fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        }
        if (fd >= 0)
                *ret_name = last + 1;
        return fd;
}

/* An O_PATH fd of the mountpoint, created (directory or empty file) when missing. */
static int open_mountpoint(int rootfd, const char *target, bool is_dir)
{
        _cleanup_close_ int pfd = -1;
        const char *name = NULL;
        int fd;

        fd = open_in_root(rootfd, target, O_PATH);
        if (fd != -ENOENT)
                return fd;

        pfd = open_parent_in_root(rootfd, target, &name);
        if (pfd < 0)
                return pfd;
        if (is_dir) {
                if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
        } else {
                int ffd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);

                if (ffd < 0 && errno != EEXIST)
                        return negative_errno();
                if (ffd >= 0)
                        close(ffd);
        }
        return open_in_root(rootfd, target, O_PATH);
}

static int move_tree(int tree_fd, int target_fd)
{
        if (sys_move_mount(tree_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return negative_errno();
        return 0;
}

/* A detached mount of a fresh filesystem; options "k=v,flag" go through fsconfig. */
static int new_fs(const char *fstype, const char *options, uint64_t attr)
{
        _cleanup_close_ int fsfd = -1;
        char buf[256];
        int mfd;

        fsfd = sys_fsopen(fstype, FSOPEN_CLOEXEC);
        if (fsfd < 0)
                return negative_errno();
        if (options) {
                char *p = buf, *tok;

                if (strlen(options) >= sizeof(buf))
                        return -E2BIG;
                strcpy(buf, options);
                while ((tok = strsep(&p, ","))) {
                        char *eq = strchr(tok, '=');
                        int r;

                        if (!*tok)
                                continue;
                        if (eq) {
                                *eq = '\0';
                                r = sys_fsconfig(fsfd, FSCONFIG_SET_STRING, tok, eq + 1, 0);
                        } else
                                r = sys_fsconfig(fsfd, FSCONFIG_SET_FLAG, tok, NULL, 0);
                        if (r < 0)
                                return negative_errno();
                }
        }
        if (sys_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return negative_errno();
        mfd = sys_fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned) attr);
        return mfd < 0 ? negative_errno() : mfd;
}

static int clone_tree(int dfd, const char *path, uint64_t attr_set)
{
        _cleanup_close_ int fd = -1;
        struct mount_attr a = { .attr_set = attr_set };
        unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE;

        if (!*path)
                flags |= AT_EMPTY_PATH;
        fd = sys_open_tree(dfd, path, flags);
        if (fd < 0)
                return negative_errno();
        if (attr_set && sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

static int write_file_in_root(int rootfd, const char *target, const char *contents)
{
        _cleanup_close_ int pfd = -1, fd = -1;
        const char *name = NULL;
        size_t left = strlen(contents);

        pfd = open_parent_in_root(rootfd, target, &name);
        if (pfd < 0)
                return pfd;
        fd = open_in_root(rootfd, target, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW);
        if (fd < 0)
                return fd;
        if (fchmod(fd, 0644) < 0)
                return negative_errno();
        while (left > 0) {
                ssize_t k = write(fd, contents, left);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                contents += k;
                left -= (size_t) k;
        }
        return 0;
}

static int apply_step(const AjMountPlan *plan, const AjMountStep *s, int *rootfd)
{
        _cleanup_close_ int tfd = -1, mfd = -1;

        if (*rootfd < 0 && s->kind != STEP_PRIVATE && s->kind != STEP_ROOT_TMPFS)
                return -EBADF;

        switch (s->kind) {
        case STEP_PRIVATE:
                if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        return negative_errno();
                return 0;

        case STEP_ROOT_TMPFS: {
                int fd;

                mfd = new_fs("tmpfs", s->options, s->attr);
                if (mfd < 0)
                        return mfd;
                if (sys_move_mount(mfd, "", AT_FDCWD, s->target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        return negative_errno();
                fd = open(s->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                if (*rootfd >= 0)
                        close(*rootfd);
                *rootfd = fd;
                return 0;
        }

        case STEP_WRITE_FILE:
                return write_file_in_root(*rootfd, s->target, s->source);

        case STEP_SYMLINK: {
                _cleanup_close_ int pfd = -1;
                const char *name = NULL;
                char cur[PATH_MAX];
                ssize_t n;

                pfd = open_parent_in_root(*rootfd, s->target, &name);
                if (pfd < 0)
                        return pfd;
                if (symlinkat(s->source, pfd, name) == 0)
                        return 0;
                if (errno != EEXIST)
                        return negative_errno();
                /* Two profile entries naming the same link are fine; anything else is a conflict. */
                n = readlinkat(pfd, name, cur, sizeof(cur) - 1);
                if (n < 0)
                        return -EEXIST;
                cur[n] = '\0';
                return streq(cur, s->source) ? 0 : -EEXIST;
        }

        case STEP_BIND:
                if (s->tree_fd < 0) {
                        int r;

                        mfd = clone_tree(AT_FDCWD, s->source, s->attr);
                        if (mfd < 0)
                                return mfd;
                        r = check_identity(s, mfd);
                        if (r < 0)
                                return r;
                }
                tfd = open_mountpoint(*rootfd, s->target, s->is_dir);
                if (tfd < 0)
                        return tfd;
                /* A tree prepared by the supervisor (idmapped) only needs moving into place. */
                return move_tree(s->tree_fd >= 0 ? s->tree_fd : mfd, tfd);

        case STEP_FS:
                mfd = new_fs(s->fstype, s->options, s->attr);
                if (mfd < 0)
                        return mfd;
                tfd = open_mountpoint(*rootfd, s->target, true);
                if (tfd < 0)
                        return tfd;
                return move_tree(mfd, tfd);

        case STEP_REBIND_RO:
                tfd = open_in_root(*rootfd, s->target, O_PATH);
                if (tfd == -ENOENT)
                        return 0;
                if (tfd < 0)
                        return tfd;
                mfd = clone_tree(tfd, "", s->attr);
                if (mfd < 0)
                        return mfd;
                return move_tree(mfd, tfd);

        case STEP_HIDE: {
                struct stat st;

                tfd = open_in_root(*rootfd, s->target, O_PATH);
                if (tfd == -ENOENT)
                        return 0;
                if (tfd < 0)
                        return tfd;
                if (fstat(tfd, &st) < 0)
                        return negative_errno();
                if (S_ISDIR(st.st_mode))
                        mfd = new_fs("tmpfs", "mode=0555,size=4k", s->attr);
                else
                        /* /dev/null must stay usable as a device: no NODEV here. */
                        mfd = clone_tree(AT_FDCWD, "/dev/null",
                                         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
                if (mfd < 0)
                        return mfd;
                return move_tree(mfd, tfd);
        }

        case STEP_PIVOT:
                if (fchdir(*rootfd) < 0)
                        return negative_errno();
                /* Stacks the old root under the new one at "."; detaching "." then drops it. */
                if (sys_pivot_root(".", ".") < 0)
                        return negative_errno();
                if (umount2(".", MNT_DETACH) < 0)
                        return negative_errno();
                if (chdir("/") < 0)
                        return negative_errno();
                return 0;

        case STEP_ROOT_RDONLY: {
                struct mount_attr a = { .attr_set = s->attr };

                if (sys_mount_setattr(AT_FDCWD, "/", 0, &a) < 0)
                        return negative_errno();
                return 0;
        }

        case STEP_CHDIR:
                if (chdir(s->target) < 0)
                        return negative_errno();
                return 0;
        }
        return -EINVAL;
}

int aj_mount_apply(const AjMountPlan *plan, size_t *ret_step)
{
        _cleanup_close_ int rootfd = -1;

        if (!plan)
                return -EINVAL;
        for (size_t i = 0; i < plan->n; i++) {
                int r = apply_step(plan, &plan->steps[i], &rootfd);

                if (r < 0) {
                        if (ret_step)
                                *ret_step = i;
                        return r;
                }
        }
        return 0;
}

/* ---- describe / accessors --------------------------------------------- */

const char *aj_mount_step_describe(const AjMountPlan *plan, size_t step, char *buf, size_t len)
{
        const AjMountStep *s;
        const char *mode;

        if (!buf || len == 0)
                return buf;
        if (!plan || step >= plan->n) {
                snprintf(buf, len, "mount step %zu", step);
                return buf;
        }
        s = &plan->steps[step];
        switch (s->kind) {
        case STEP_PRIVATE:
                snprintf(buf, len, "make all mounts private");
                break;
        case STEP_ROOT_TMPFS:
                snprintf(buf, len, "mount the root tmpfs on '%s'", s->target);
                break;
        case STEP_WRITE_FILE:
                snprintf(buf, len, "write '%s'", s->target);
                break;
        case STEP_SYMLINK:
                snprintf(buf, len, "symlink '%s' -> '%s'", s->target, s->source);
                break;
        case STEP_BIND:
                if (s->origin == ORIGIN_DEVICE) {
                        snprintf(buf, len, "bind device '%s'", s->source);
                        break;
                }
                if (s->attr & MOUNT_ATTR_RDONLY)
                        mode = s->idmap && !s->degraded ? "read-only, idmapped" : "read-only";
                else
                        mode = s->overlay ? "overlay, writes kept in the run"
                               : s->idmap && !s->degraded ? "read-write, idmapped"
                                                          : "read-write";
                snprintf(buf, len, "bind %s'%s' on '%s' (%s)", s->origin == ORIGIN_WORKSPACE ? "workspace " : "",
                         s->source, s->target, mode);
                break;
        case STEP_FS:
                if (s->origin == ORIGIN_HOME)
                        snprintf(buf, len, "mount home tmpfs on '%s'", s->target);
                else
                        snprintf(buf, len, "mount %s on '%s'", s->fstype, s->target);
                break;
        case STEP_REBIND_RO:
                snprintf(buf, len, "make '%s' read-only", s->target);
                break;
        case STEP_HIDE:
                snprintf(buf, len, "hide '%s' (%s)", s->target, s->is_dir ? "directory" : "file");
                break;
        case STEP_PIVOT:
                snprintf(buf, len, "pivot_root into '%s'", plan->root);
                break;
        case STEP_ROOT_RDONLY:
                snprintf(buf, len, "make '/' read-only");
                break;
        case STEP_CHDIR:
                snprintf(buf, len, "change directory to '%s'", s->target);
                break;
        }
        return buf;
}

const char *aj_mount_plan_workdir(const AjMountPlan *plan) { return plan ? plan->workdir : NULL; }

char *const *aj_mount_plan_sensitive_allowed(const AjMountPlan *plan)
{
        return plan ? plan->sensitive_allowed : NULL;
}

size_t aj_mount_plan_n_steps(const AjMountPlan *plan) { return plan ? plan->n : 0; }

const char *aj_mount_plan_workspace_source(const AjMountPlan *plan)
{
        for (size_t i = 0; plan && i < plan->n; i++)
                if (plan->steps[i].origin == ORIGIN_WORKSPACE && plan->steps[i].kind == STEP_BIND)
                        return plan->steps[i].source;
        return NULL;
}

void aj_mount_plan_close_fds(AjMountPlan *plan)
{
        if (!plan)
                return;
        for (size_t i = 0; i < plan->n; i++)
                if (plan->steps[i].tree_fd >= 0) {
                        close(plan->steps[i].tree_fd);
                        plan->steps[i].tree_fd = -1;
                }
}

void aj_mount_plan_free(AjMountPlan *plan)
{
        if (!plan)
                return;
        gather_done(&plan->own_gather);
        for (size_t i = 0; i < plan->n; i++)
                step_clear(&plan->steps[i]);
        free(plan->steps);
        for (size_t i = 0; plan->allow_sensitive && plan->allow_sensitive[i]; i++)
                free(plan->allow_sensitive[i]);
        free(plan->allow_sensitive);
        for (size_t i = 0; i < plan->n_sensitive_allowed; i++)
                free(plan->sensitive_allowed[i]);
        free(plan->sensitive_allowed);
        aj_sensitive_list_done(&plan->fixed_places);
        free(plan->root);
        free(plan->workdir);
        free(plan);
}
