/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planning the binds and the workspace: host paths as written in a profile resolved, each
 * source opened and judged (with the mounts below it) against the sensitive places, and
 * filesystem.allow_sensitive resolved like the places.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount-internal.h"
#include "util/path.h"


/* "~/x" (rest = "x", or "" for "~") -> the invoking user's home joined with it. */
static int host_home_join(const char *field, const char *raw, const char *rest, const AjMountContext *ctx, char **ret,
                          AjError *ret_error)
{
        if (!ctx->host_home || ctx->host_home[0] != '/')
                return aj_error_set(ret_error, -EINVAL, "%s: '%s' uses '~' but the home directory is unknown", field,
                                    raw);
        *ret = aj_path_join(ctx->host_home, rest);
        return *ret ? 0 : -ENOMEM;
}

/*
 * A host path as written in a profile: "~/x" = the invoking user's home, "." and
 * relative paths = the run's cwd. ret_default_target is where it appears in the
 * jail when no explicit target was given: the same path, except "~/x" which lands
 * in the jail's home.
 */
static int resolve_host_path(const char *field, const char *raw, const AjMountContext *ctx, const char *jail_home,
                             char **ret_source, char **ret_default_target, AjError *ret_error)
{
        _cleanup_free_ char *joined = NULL, *src = NULL, *tgt = NULL;
        const char *rest = tilde_rest(raw);
        int r;

        if (raw[0] == '\0')
                return aj_error_set(ret_error, -EINVAL, "%s: empty path", field);
        if (raw[0] == '~' && !rest)
                return aj_error_set(ret_error, -EINVAL, "%s: '%s': only '~' and '~/...' are supported", field, raw);
        if (rest) {
                r = host_home_join(field, raw, rest, ctx, &joined, ret_error);
                if (r < 0)
                        return r;
                tgt = aj_path_join(jail_home, rest);
                if (!tgt)
                        return -ENOMEM;
        } else if (raw[0] != '/') {
                if (!ctx->cwd || ctx->cwd[0] != '/')
                        return aj_error_set(ret_error, -EINVAL,
                                            "%s: '%s' is relative but the working directory is unknown", field, raw);
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
                src = mnt_kernel_realpath(joined);
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
                return aj_error_set(ret_error, -EINVAL, "%s: '%s' must not contain '..'", field, raw);
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
 * returns its path as the kernel resolved it, its identity and the fd (*ret_fd), which the
 * step keeps: the checks below judge that file, and the supervisor's tree is cloned from
 * the fd, so a path component swapped in after the check (a symlink or directory leading
 * to the same file through another mount, with other mounts below it) is never followed.
 * A plan that defers the places takes the identity chain at the check, from the fd; else
 * the chain of it and its ancestors is taken now (*ret_chain). */
static int open_source(AjMountPlan *plan, const char *path, char **ret_real, struct stat *ret_st, AjIdChain *ret_chain,
                       int *ret_fd)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        char buf[PATH_MAX];
        ssize_t n;
        int r;

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        n = mnt_fd_kernel_path(fd, buf);
        if (n < 0)
                return (int)n;
        /* Not reachable from our root ("pipe:", a deleted directory): nothing to mount. */
        if (buf[0] != '/' || (n > 10 && streq(buf + n - 10, " (deleted)")))
                return -ENOENT;
        /* Its identity and its ancestors': the places are judged on these too, so a bind-mount
         * alias of a place (or of its parent) is seen for what it is. */
        if (!plan->defer_places) {
                r = mnt_id_chain_from_fd(fd, plan->gather, buf, ret_chain);
                if (r < 0)
                        return r;
        }
        *ret_real = strdup(buf);
        if (!*ret_real) {
                aj_id_chain_done(ret_chain);
                return -ENOMEM;
        }
        *ret_fd = TAKE_FD(fd);
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
        case AJ_PLACE_EVAL_SCRATCH:
                return "agentjail's scratch dir is never mounted, even read-only: during an eval or a replay "
                       "it is agentjail's (it makes, reads and removes every case's copy and log in it as root), "
                       "and only the run's own workspace in it is the agent's; run the eval with TMPDIR (the "
                       "replay with --workdir) elsewhere";
        default:
                if (access == AJ_ACCESS_READ)
                        return "agentjail's state and runtime dirs are never mounted, even read-only: they "
                               "hold other runs' records and the control sockets";
                return "agentjail's own files are never mounted writable; an agent that can write there "
                       "controls the operator's next runs";
        }
}

static int judge_source(AjMountPlan *plan, const AjSensitiveList *l, const char *field, const char *real,
                        const AjIdChain *id, AjAccess access, AjError *ret_error)
{
        size_t i = 0;
        AjSensitiveVerdict v = aj_sensitive_check(real, id, access, l, plan->allow_sensitive, &i);
        const AjSensitivePlace *pl = v == AJ_SENSITIVE_NONE ? NULL : &l->items[i];
        unsigned rel = pl ? aj_place_relation(real, id, pl) : 0;
        const char *how = !pl                       ? ""
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
                        return aj_error_set(ret_error, -EPERM,
                                            "%s: refusing '%s': %s '%s'%s, %s (rule: %s \"%s\" to "
                                            "filesystem.allow_sensitive)",
                                            field, real, how, pl->path, alias, pl->what, rule_reason(pl->rule, access),
                                            pl->path);
                return aj_error_set(ret_error, -EPERM, "%s: refusing '%s': %s '%s'%s, %s (rule: %s)", field, real, how,
                                    pl->path, alias, pl->what, rule_reason(pl->rule, access));
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

/* Kept for aj_mount_plan_check_places() (deferred plans): `fd` is the source's, which its
 * step will own. */
static int defer_check(AjMountPlan *plan, const char *field, const char *real, int fd, bool is_dir, AjAccess access,
                       AjError *ret_error)
{
        if (plan->n_pending >= MAX_STEPS)
                return aj_error_set(ret_error, -E2BIG, "%s: too many sources to check", field);
        PendingCheck *n = reallocarray(plan->pending, plan->n_pending + 1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        plan->pending = n;
        PendingCheck *c = &n[plan->n_pending];
        *c = (PendingCheck){
                .field = strdup(field), .real = strdup(real), .fd = fd, .is_dir = is_dir, .access = access
        };
        if (!c->field || !c->real) {
                free(c->field);
                free(c->real);
                return -ENOMEM;
        }
        plan->n_pending++;
        return 0;
}

void mnt_pending_done(AjMountPlan *plan)
{
        for (size_t i = 0; i < plan->n_pending; i++) {
                free(plan->pending[i].field);
                free(plan->pending[i].real);
        }
        free(plan->pending);
        plan->pending = NULL;
        plan->n_pending = 0;
}

typedef struct {
        AjMountPlan *plan;
        const AjSensitiveList *places;
        const char *field, *real;
        AjAccess access;
        AjError *ret_error;
} SubmountCheck;

static int check_submount(const char *point, void *userdata)
{
        const SubmountCheck *c = userdata;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        _cleanup_free_ char *sub_field = NULL;
        if (mnt_id_chain_from_path(point, c->plan->gather, true, &chain) < 0)
                return 0; /* gone, or not ours to see: the jail cannot see it either */
        if (asprintf(&sub_field, "%s: '%s' holds a mount", c->field, c->real) < 0)
                return -ENOMEM;
        return judge_source(c->plan, c->places, sub_field, point, &chain, c->access, c->ret_error);
}

/* A bind carries the mounts below its source along (AT_RECURSIVE): each of them reaches the
 * jail as surely as the source itself, so each is judged as a source, by its own path and
 * identity. A mount of /tmp inside a workspace carried the host's /tmp into the jail. */
static int check_submounts(AjMountPlan *plan, const AjSensitiveList *places, const char *field, const char *real,
                           AjAccess access, AjError *ret_error)
{
        _cleanup_free_ char *own = NULL;
        const char *table = plan->gather->mountinfo;
        if (!table) {
                int r = mnt_mountinfo_load(&own);
                if (r < 0)
                        return aj_error_set(ret_error, r,
                                            "%s: cannot read the mount table to check what '%s' "
                                            "holds: %s",
                                            field, real, strerror(-r));
                table = own;
        }
        SubmountCheck c = { plan, places, field, real, access, ret_error };
        return mnt_each_mount_below(table, real, check_submount, &c);
}

/* A source is judged by where it leads, a directory by the mounts below it too: now, against
 * the context's list (or the fixed places), or, when the plan defers the places, at
 * aj_mount_plan_check_places() (from `fd`, which the source's step keeps until then). */
static int check_source(AjMountPlan *plan, const AjMountContext *ctx, const char *field, const char *real,
                        const AjIdChain *chain, int fd, bool is_dir, AjAccess access, AjError *ret_error)
{
        if (plan->defer_places)
                return defer_check(plan, field, real, fd, is_dir, access, ret_error);
        const AjSensitiveList *places = ctx->sensitive ? ctx->sensitive : &plan->fixed_places;
        int r = judge_source(plan, places, field, real, chain, access, ret_error);

        if (r >= 0 && is_dir)
                r = check_submounts(plan, places, field, real, access, ret_error);
        return r;
}

void mnt_plan_gather_ready(AjMountPlan *plan)
{
        if (plan->own_gather_ready)
                return;
        mnt_gather_init(&plan->own_gather);
        plan->own_gather_ready = true;
}

/* The source `fd` pins is still where the plan found it. A tree is cloned from the pin, with
 * the mounts below the file wherever it is, and the mount table is read after: below the
 * planned path, it would show another directory's mounts (none) for one moved away. */
static int check_not_moved(const PendingCheck *c, AjError *ret_error)
{
        char now[PATH_MAX];
        ssize_t n = mnt_fd_kernel_path(c->fd, now);
        if (n < 0)
                return aj_error_set(ret_error, (int)n, "%s: cannot check '%s': %s", c->field, c->real,
                                    strerror((int)-n));
        if (!streq(now, c->real))
                return aj_error_set(ret_error, -ESTALE,
                                    "%s: '%s' moved after it was planned (now '%s'); refusing to mount it", c->field,
                                    c->real, now);
        return 0;
}

/* The deferred checks, after the clone: each source's identity chain from the fd opened at
 * the plan (the file that will be mounted, wherever it is now), then the mounts below it.
 * The pins go after: the trees are cloned (the jail's own clones, rootless, are its). */
int aj_mount_plan_check_places(AjMountPlan *plan, const AjSensitiveList *places, AjError *ret_error)
{
        if (!plan || !places)
                return -EINVAL;
        if (plan->gather == &plan->own_gather)
                mnt_plan_gather_ready(plan);
        for (size_t i = 0; i < plan->n_pending; i++) {
                const PendingCheck *c = &plan->pending[i];
                _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
                /* A file carries no mounts (and one replaced by a rename, as /etc/resolv.conf
                 * is, is no reason to refuse the run). */
                int r = c->is_dir ? check_not_moved(c, ret_error) : 0;
                if (r < 0)
                        return r;
                r = mnt_id_chain_from_fd(c->fd, plan->gather, c->real, &chain);
                if (r < 0)
                        return aj_error_set(ret_error, r, "%s: cannot check '%s': %s", c->field, c->real, strerror(-r));
                r = judge_source(plan, places, c->field, c->real, &chain, c->access, ret_error);
                if (r >= 0 && c->is_dir)
                        r = check_submounts(plan, places, c->field, c->real, c->access, ret_error);
                if (r < 0)
                        return r;
        }
        mnt_pending_done(plan);
        for (size_t i = 0; i < plan->n; i++)
                if (plan->steps[i].source_fd >= 0) {
                        close(plan->steps[i].source_fd);
                        plan->steps[i].source_fd = -1;
                }
        plan->defer_places = false;
        return 0;
}

/* The step just added mounts the file `st` describes, and no other: the one `*fd` holds. */
static void step_pin(AjMountPlan *plan, const struct stat *st, int *fd)
{
        AjMountStep *s = &plan->steps[plan->n - 1];

        s->has_id = true;
        s->dev = st->st_dev;
        s->ino = st->st_ino;
        s->uid = st->st_uid;
        s->gid = st->st_gid;
        s->mode = st->st_mode;
        s->source_fd = TAKE_FD(*fd);
}

/* A bind's source (host) and target (jail) as written: 1, or 0 when an optional source is
 * missing. */
static int bind_paths(const char *field, const AjBind *b, const AjMountContext *ctx, const char *jail_home,
                      char **ret_src, char **ret_tgt, AjError *ret_error)
{
        _cleanup_free_ char *src = NULL, *tgt = NULL;
        int r;

        if (!b->source)
                return aj_error_set(ret_error, -EINVAL, "%s: entry without a path", field);

        r = resolve_host_path(field, b->source, ctx, jail_home, &src, &tgt, ret_error);
        if (r == -ENOENT && b->optional)
                return 0;
        if (r == -ENOENT)
                return aj_error_set(ret_error, r, "%s: '%s' does not exist (prefix it with '?' to make it optional)",
                                    field, b->source);
        if (r < 0)
                return r;

        if (b->target && !streq(b->target, b->source)) {
                free(tgt);
                tgt = NULL;
                r = mnt_resolve_jail_path(field, b->target, jail_home, &tgt, ret_error);
                if (r < 0)
                        return r;
        } else {
                r = mnt_check_target(field, tgt, ret_error);
                if (r < 0)
                        return r;
        }
        *ret_src = TAKE_PTR(src);
        *ret_tgt = TAKE_PTR(tgt);
        return 1;
}

/* Merged-/usr hosts: /bin -> usr/bin. Reproduce the link; binding it would follow it. */
static int plan_link(AjMountPlan *plan, const char *field, const char *src, char **tgt, bool writable,
                     AjError *ret_error)
{
        _cleanup_free_ char *link = NULL;
        ssize_t n;
        int r;

        link = malloc(PATH_MAX);
        if (!link)
                return -ENOMEM;
        n = readlink(src, link, PATH_MAX - 1);
        if (n < 0) {
                r = negative_errno();
                return aj_error_set(ret_error, r, "%s: cannot read link '%s': %s", field, src, strerror(-r));
        }
        link[n] = '\0';
        return mnt_add_step(plan, STEP_SYMLINK, writable ? ORIGIN_RW : ORIGIN_RO, TAKE_PTR(link), TAKE_PTR(*tgt), NULL,
                            NULL, 0, false);
}

int mnt_plan_bind(AjMountPlan *plan, const char *field, const AjBind *b, const AjMountContext *ctx,
                  const char *jail_home, bool writable, AjError *ret_error)
{
        _cleanup_free_ char *src = NULL, *tgt = NULL, *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        AjAccess access = writable ? AJ_ACCESS_OWNER : AJ_ACCESS_READ;
        struct stat st;
        int r;

        r = bind_paths(field, b, ctx, jail_home, &src, &tgt, ret_error);
        if (r <= 0)
                return r;

        if (lstat(src, &st) < 0) {
                if (errno == ENOENT && b->optional)
                        return 0;
                if (errno == ENOENT)
                        return aj_error_set(ret_error, -ENOENT,
                                            "%s: '%s' does not exist (prefix it with '?' to make it optional)", field,
                                            b->source);
                r = negative_errno();
                return aj_error_set(ret_error, r, "%s: cannot access '%s': %s", field, src, strerror(-r));
        }
        if (S_ISLNK(st.st_mode) && streq(src, tgt))
                return plan_link(plan, field, src, &tgt, writable, ret_error);
        bool link_src = S_ISLNK(st.st_mode);

        /* Every bind is judged by where it leads: a read-only one too (its sockets still
         * accept connections, its files are read). */
        _cleanup_close_ int fd = -1;
        r = open_source(plan, src, &real, &st, &chain, &fd);
        if (r == -ENOENT && b->optional)
                return 0;
        if (r < 0 && link_src)
                return aj_error_set(ret_error, r, "%s: '%s' is a symlink to nothing usable: %s", field, src,
                                    strerror(-r));
        if (r < 0)
                return aj_error_set(ret_error, r, "%s: cannot access '%s': %s", field, src, strerror(-r));
        r = check_source(plan, ctx, field, real, &chain, fd, S_ISDIR(st.st_mode), access, ret_error);
        if (r < 0)
                return r;

        r = mnt_add_step(plan, STEP_BIND, writable ? ORIGIN_RW : ORIGIN_RO, TAKE_PTR(real), TAKE_PTR(tgt), NULL, NULL,
                         writable ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                                  : MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                         S_ISDIR(st.st_mode));
        if (r >= 0)
                step_pin(plan, &st, &fd);
        return r;
}

int mnt_plan_workspace(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, const char *jail_home,
                       AjError *ret_error)
{
        static const char field[] = "filesystem.workspace";
        _cleanup_free_ char *src = NULL, *tgt = NULL, *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        const char *raw = p->workspace_path ? p->workspace_path : ".";
        struct stat st;
        int r;

        r = resolve_host_path(field, raw, ctx, jail_home, &src, &tgt, ret_error);
        if (r == -ENOENT)
                return aj_error_set(ret_error, r, "%s: '%s' does not exist", field, raw);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = -1;
        r = open_source(plan, src, &real, &st, &chain, &fd);
        if (r == -ENOENT)
                return aj_error_set(ret_error, r, "%s: '%s' does not exist", field, src);
        if (r < 0)
                return aj_error_set(ret_error, r, "%s: cannot access '%s': %s", field, src, strerror(-r));
        /* Every mode: the workspace is idmapped, so even read-only the agent reads as its
         * owner (a root-owned /etc's shadow file), and an overlay's lower layer is read so. */
        r = check_source(plan, ctx, field, real, &chain, fd, S_ISDIR(st.st_mode), AJ_ACCESS_OWNER, ret_error);
        if (r < 0)
                return r;
        if (!S_ISDIR(st.st_mode))
                return aj_error_set(ret_error, -ENOTDIR, "%s: '%s' is not a directory", field, real);

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
                        return aj_error_set(ret_error, -EPERM,
                                            "%s.mode \"overlay\" needs agentjail started as root (a rootless "
                                            "overlay workspace is not supported yet); use \"rw\" or \"ro\"",
                                            field);
                if (!ctx->overlay_dir || !(overlay = strdup(ctx->overlay_dir)))
                        return -EINVAL;
        }
        r = mnt_add_step(plan, STEP_BIND, ORIGIN_WORKSPACE, TAKE_PTR(real), TAKE_PTR(tgt), NULL, NULL, attr, true);
        if (r >= 0) {
                step_pin(plan, &st, &fd);
                plan->steps[plan->n - 1].overlay = TAKE_PTR(overlay);
        }
        return r;
}

/* filesystem.allow_sensitive: "~" is the invoker's home; each entry resolved like the places. */
int mnt_resolve_allow_sensitive(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, AjError *ret_error)
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
                r = mnt_resolve_prefix(raw, &plan->allow_sensitive[i]);
                if (r == -EINVAL)
                        return aj_error_set(ret_error, r, "%s: '%s' must be an absolute path or '~' without '..'",
                                            field, p->allow_sensitive.items[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
