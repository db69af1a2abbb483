/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mount plan: the profile and the run context turned into a flat list of steps (the root
 * tmpfs, generated /etc files, tmpfs and home, the binds and the workspace in
 * src/mount-plan-binds.c, /proc, /dev, hidden paths, pivot_root), parents before children.
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
#include "util/shared.h"

/* ---- steps ------------------------------------------------------------ */

/* ---- plan construction ------------------------------------------------- */

void mnt_step_clear(AjMountStep *s)
{
        free(s->source);
        free(s->target);
        free(s->options);
        free(s->overlay);
        if (s->tree_fd >= 0)
                close(s->tree_fd);
        if (s->source_fd >= 0)
                close(s->source_fd);
        s->tree_fd = -1;
        s->source_fd = -1;
}

static int plan_add(AjMountPlan *plan, AjMountStep *s)
{
        if (plan->n >= MAX_STEPS) {
                mnt_step_clear(s);
                return -E2BIG;
        }
        if (plan->n == plan->allocated) {
                size_t na = plan->allocated ? plan->allocated * 2 : 64;
                AjMountStep *ns = realloc(plan->steps, na * sizeof(*ns));

                if (!ns) {
                        mnt_step_clear(s);
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
int mnt_add_step(AjMountPlan *plan, StepKind kind, StepOrigin origin, char *source, char *target, const char *fstype,
                 char *options, uint64_t attr, bool is_dir)
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
                .source_fd = -1,
        };

        if ((source == NULL && (kind == STEP_BIND || kind == STEP_SYMLINK || kind == STEP_WRITE_FILE)) ||
            (target == NULL && kind != STEP_PRIVATE && kind != STEP_PIVOT && kind != STEP_ROOT_RDONLY)) {
                mnt_step_clear(&s);
                return -ENOMEM;
        }
        return plan_add(plan, &s);
}

int mnt_check_target(const char *field, const char *target, AjError *ret_error)
{
        static const char *const reserved[] = { "/proc", "/dev", "/sys" };

        if (streq(target, "/"))
                return aj_error_set(ret_error, -EINVAL,
                                    "%s: cannot mount over '/' (the jail's root is built by agentjail)", field);
        for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
                if (path_under(target, reserved[i]))
                        return aj_error_set(ret_error, -EINVAL, "%s: '%s' is under %s, which the jail sets up itself",
                                            field, target, reserved[i]);
        return 0;
}

/* A jail path as written in a profile ("~/x" = the jail's home) -> normalized absolute path. */
int mnt_resolve_jail_path(const char *field, const char *raw, const char *jail_home, char **ret, AjError *ret_error)
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
                return aj_error_set(ret_error, -EINVAL, "%s: target '%s' must be an absolute path", field, raw);
        if (path_has_dotdot(p))
                return aj_error_set(ret_error, -EINVAL, "%s: target '%s' must not contain '..'", field, raw);
        r = path_normalize(p, ret);
        if (r < 0)
                return r;
        r = mnt_check_target(field, *ret, ret_error);
        if (r < 0) {
                free(*ret);
                *ret = NULL;
        }
        return r;
}

static bool valid_name(const char *s, size_t max)
{
        size_t l = strlen(s);

        if (l == 0 || l > max)
                return false;
        for (; *s; s++)
                if (*s == ':' || *s == '\n' || *s == ' ' || *s == '\t' || *s == '/' || (unsigned char)*s < 0x20)
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
                             user, (unsigned)uid, (unsigned)gid, user, home);
        else
                r = asprintf(&passwd,
                             "root:x:0:0:root:%s:/bin/sh\n"
                             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                             uid == 0 ? home : "/root");
        if (r < 0)
                return -ENOMEM;
        r = mnt_add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, passwd, strdup("/etc/passwd"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (gid != 0 && gid != 5 && gid != 65534)
                r = asprintf(&group, "root:x:0:\ntty:x:5:\n%s:x:%u:\nnogroup:x:65534:\n", user, (unsigned)gid);
        else
                r = asprintf(&group, "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
        if (r < 0)
                return -ENOMEM;
        r = mnt_add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, group, strdup("/etc/group"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (asprintf(&hn, "%s\n", hostname) < 0)
                return -ENOMEM;
        r = mnt_add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, hn, strdup("/etc/hostname"), NULL, NULL, 0, false);
        if (r < 0)
                return r;

        if (asprintf(&hosts, "127.0.0.1 localhost %s\n::1 localhost\n", hostname) < 0)
                return -ENOMEM;
        return mnt_add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, hosts, strdup("/etc/hosts"), NULL, NULL, 0, false);
}

/* Pseudo-terminals a jail may hold at once, its own terminal included (devpts max=). */
#define JAIL_PTYS_MAX "64"

static int plan_dev(AjMountPlan *plan, const AjMountContext *ctx)
{
        static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
        static const char *const links[][2] = {
                { "/dev/ptmx", "pts/ptmx" },          { "/dev/fd", "/proc/self/fd" },
                { "/dev/stdin", "/proc/self/fd/0" },  { "/dev/stdout", "/proc/self/fd/1" },
                { "/dev/stderr", "/proc/self/fd/2" },
        };
        int r;

        r = mnt_add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev"), "tmpfs", strdup("mode=0755"),
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
                char *src = NULL;

                if (asprintf(&src, "/dev/%s", nodes[i]) < 0)
                        return -ENOMEM;
                /* mknod is refused in a user namespace: bind the host's nodes onto empty files. */
                r = mnt_add_step(plan, STEP_BIND, ORIGIN_DEVICE, src, strdup(src), NULL, NULL,
                                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
                if (r < 0)
                        return r;
        }
        /* gid= must name a group mapped in the jail; the jail maps exactly one. max= bounds the
         * instance: every devpts but the host's draws on one pool (kernel.pty.max less
         * kernel.pty.reserve, 3072 by default) no cgroup divides, and an unbounded jail took
         * it all, so no other jail, container or pty-using host service got a terminal. */
        r = mnt_add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev/pts"), "devpts",
                         strdup(ctx->gid == 5 ? "newinstance,ptmxmode=0666,mode=0620,max=" JAIL_PTYS_MAX ",gid=5"
                                              : "newinstance,ptmxmode=0666,mode=0620,max=" JAIL_PTYS_MAX),
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                return r;
        r = mnt_add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/dev/shm"), "tmpfs", strdup("mode=1777"),
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                r = mnt_add_step(plan, STEP_SYMLINK, ORIGIN_NONE, strdup(links[i][1]), strdup(links[i][0]), NULL, NULL,
                                 0, false);
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

                if (s->kind != STEP_BIND && s->kind != STEP_FS && s->kind != STEP_SYMLINK && s->kind != STEP_WRITE_FILE)
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

/* The list the sources are judged against, and the lookups they share with it. */
static int plan_use_places(AjMountPlan *plan, const AjMountContext *ctx)
{
        int r;

        plan->defer_places = ctx->defer_places && !ctx->sensitive;
        /* No list from the caller: the fixed places still hold (fail closed). */
        if (!ctx->sensitive && !plan->defer_places) {
                r = aj_sensitive_list_build(&(AjSensitiveSources){ 0 }, &plan->fixed_places);
                if (r < 0)
                        return r;
        }
        /* The list's lookups (the mount table, the parents it looked at) serve the plan too. */
        plan->gather = (ctx->sensitive ? ctx->sensitive : &plan->fixed_places)->gather;
        if (!plan->gather) {
                /* Deferred, the chains and the mount table are read at the check (after the
                 * clone, off the start-up's serial path). */
                if (!plan->defer_places)
                        mnt_plan_gather_ready(plan);
                plan->gather = &plan->own_gather;
        }
        return 0;
}

/* What every jail starts with: mounts private, the root tmpfs, the generated /etc files. */
static int plan_root(AjMountPlan *plan, const AjMountContext *ctx, const char *user, const char *home,
                     const char *hostname)
{
        int r;

        r = mnt_add_step(plan, STEP_PRIVATE, ORIGIN_NONE, NULL, NULL, NULL, NULL, 0, true);
        if (r < 0)
                return r;
        r = mnt_add_step(plan, STEP_ROOT_TMPFS, ORIGIN_NONE, NULL, strdup(ctx->root_mountpoint), "tmpfs",
                         strdup("mode=0755"), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        if (r < 0)
                return r;
        /* Written into the root tmpfs first: a profile bind on /etc or /etc/passwd covers them. */
        return plan_etc(plan, ctx, user, home, hostname);
}

/* filesystem.tmpfs, then the home tmpfs. */
static int plan_tmpfs(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, const char *home,
                      AjError *ret_error)
{
        char *opts = NULL;
        int r;

        /* Tmpfs entries first, so that at equal depth a bind on the same path wins. */
        for (size_t i = 0; i < p->tmpfs.n; i++) {
                char *t = NULL;

                r = mnt_resolve_jail_path("filesystem.tmpfs", p->tmpfs.items[i], home, &t, ret_error);
                if (r < 0)
                        return r;
                r = mnt_add_step(plan, STEP_FS, ORIGIN_TMPFS, NULL, t, "tmpfs", strdup("mode=1777"),
                                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
                if (r < 0)
                        return r;
        }
        if (asprintf(&opts, "mode=0700,uid=%u,gid=%u", (unsigned)ctx->uid, (unsigned)ctx->gid) < 0)
                return -ENOMEM;
        return mnt_add_step(plan, STEP_FS, ORIGIN_HOME, NULL, strdup(home), "tmpfs", opts,
                            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
}

/* The binds (profile and command line, read-only first), the workspace, the runtime dir. */
static int plan_sources(AjMountPlan *plan, const AjProfile *p, const AjMountContext *ctx, const char *home,
                        AjError *ret_error)
{
        const struct {
                const char *field;
                const AjBindList *list;
                bool writable;
        } binds[] = {
                { "filesystem.ro", &p->ro, false },
                { "--ro", &ctx->extra_ro, false },
                { "filesystem.rw", &p->rw, true },
                { "--rw", &ctx->extra_rw, true },
        };
        int r;

        for (size_t k = 0; k < ARRAY_SIZE(binds); k++)
                for (size_t i = 0; i < binds[k].list->n; i++) {
                        r = mnt_plan_bind(plan, binds[k].field, &binds[k].list->items[i], ctx, home, binds[k].writable,
                                          ret_error);
                        if (r < 0)
                                return r;
                }
        if (p->workspace_mode != AJ_WORKSPACE_NONE) {
                r = mnt_plan_workspace(plan, p, ctx, home, ret_error);
                if (r < 0)
                        return r;
        }
        if (!ctx->runtime_dir)
                return 0;
        if (ctx->runtime_dir[0] != '/')
                return aj_error_set(ret_error, -EINVAL, "runtime directory '%s' must be an absolute path",
                                    ctx->runtime_dir);
        /* Read-only: rootless, the directory is the operator's and so the agent's (same host
         * uid); writable, the agent replaced the broker socket, filled the host's /tmp and left
         * files the run's end could not remove. Connecting to the socket needs no write. */
        return mnt_add_step(plan, STEP_BIND, ORIGIN_RUNTIME, strdup(ctx->runtime_dir), strdup(RUNTIME_TARGET), NULL,
                            NULL, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
}

/* Parents before children (equal depth keeps the order planned); root-started, the rw
 * binds and the workspace get idmapped trees. */
static void plan_order(AjMountPlan *plan, size_t placed_start, bool idmap)
{
        qsort(plan->steps + placed_start, plan->n - placed_start, sizeof(AjMountStep), cmp_step_depth);
        if (!idmap)
                return;
        for (size_t i = placed_start; i < plan->n; i++) {
                AjMountStep *s = &plan->steps[i];

                if (s->kind == STEP_BIND && (s->origin == ORIGIN_RW || s->origin == ORIGIN_WORKSPACE))
                        s->idmap = true;
        }
}

static int plan_proc(AjMountPlan *plan)
{
        static const char *const ro[] = { "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus" };
        int r;

        r = mnt_add_step(plan, STEP_FS, ORIGIN_NONE, NULL, strdup("/proc"), "proc", NULL,
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(ro); i++) {
                r = mnt_add_step(plan, STEP_REBIND_RO, ORIGIN_NONE, NULL, strdup(ro[i]), NULL, NULL,
                                 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, false);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The generated files: each goes into the root tmpfs, so no mount may cover it (a bind
 * there would have it written into a host file, e.g. the operator's own settings; a hide
 * would take it away). Called with the hides already planned. */
static int plan_files(AjMountPlan *plan, const AjMountContext *ctx, AjError *ret_error)
{
        for (size_t i = 0; i < ctx->n_files; i++) {
                const AjMountFile *f = &ctx->files[i];
                if (!f->target || f->target[0] != '/' || !f->contents)
                        return -EINVAL;
                for (size_t j = 0; j < plan->n; j++) {
                        const AjMountStep *s = &plan->steps[j];
                        if (s->kind != STEP_BIND && s->kind != STEP_FS && s->kind != STEP_SYMLINK &&
                            s->kind != STEP_HIDE && s->kind != STEP_WRITE_FILE)
                                continue;
                        if (!path_under(f->target, s->target))
                                continue;
                        return aj_error_set(ret_error, -EEXIST,
                                            "%s writes '%s' in the jail, but the profile puts %s on '%s' "
                                            "(remove that entry, or run without %s)",
                                            f->why, f->target,
                                            s->kind == STEP_BIND      ? "a bind"
                                            : s->kind == STEP_HIDE    ? "a hide"
                                            : s->kind == STEP_FS      ? "a filesystem"
                                            : s->kind == STEP_SYMLINK ? "a symlink"
                                                                      : "a generated file",
                                            s->target, f->why);
                }
                int r = mnt_add_step(plan, STEP_WRITE_FILE, ORIGIN_NONE, strdup(f->contents), strdup(f->target), NULL,
                                     NULL, 0, false);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* filesystem.hide, each judged against the tree placed so far (the first n_placed steps). */
static int plan_hide(AjMountPlan *plan, const AjProfile *p, const char *home, size_t n_placed, AjError *ret_error)
{
        int r;

        for (size_t i = 0; i < p->hide.n; i++) {
                const char *raw = p->hide.items[i];
                char *t = NULL;
                bool is_dir = false;

                if (raw && raw[0] == '?')
                        raw++;
                r = mnt_resolve_jail_path("filesystem.hide", raw ? raw : "", home, &t, ret_error);
                if (r < 0)
                        return r;
                r = plan_lookup(plan, n_placed, t, &is_dir);
                if (r <= 0) {
                        free(t);
                        if (r < 0)
                                return r;
                        continue; /* nothing there to hide */
                }
                r = mnt_add_step(plan, STEP_HIDE, ORIGIN_NONE, NULL, t, NULL, NULL,
                                 MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, is_dir);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Into the new root: pivot, "/" read-only, the working directory. */
static int plan_enter(AjMountPlan *plan, const char *home)
{
        int r;

        if (!plan->workdir) {
                plan->workdir = strdup(home);
                if (!plan->workdir)
                        return -ENOMEM;
        }
        r = mnt_add_step(plan, STEP_PIVOT, ORIGIN_NONE, NULL, NULL, NULL, NULL, 0, true);
        if (r < 0)
                return r;
        r = mnt_add_step(plan, STEP_ROOT_RDONLY, ORIGIN_NONE, NULL, strdup("/"), NULL, NULL, MOUNT_ATTR_RDONLY, true);
        if (r < 0)
                return r;
        return mnt_add_step(plan, STEP_CHDIR, ORIGIN_NONE, NULL, strdup(plan->workdir), NULL, NULL, 0, true);
}

int aj_mount_plan_build(const AjProfile *p, const AjMountContext *ctx, AjMountPlan **ret, AjError *ret_error)
{
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        _cleanup_free_ char *home = NULL;
        _cleanup_(aj_error_clear) AjError err = {};
        const char *user, *hostname;
        size_t placed_start, n_placed;
        int r;

        if (!p || !ctx || !ret)
                return -EINVAL;
        user = ctx->user_name ? ctx->user_name : DEFAULT_USER;
        hostname = ctx->hostname ? ctx->hostname : p->hostname ? p->hostname : DEFAULT_HOSTNAME;
        if (!ctx->root_mountpoint || ctx->root_mountpoint[0] != '/')
                return aj_error_set(ret_error, -EINVAL, "root mountpoint must be an absolute path");
        if (!valid_name(user, 32))
                return aj_error_set(ret_error, -EINVAL, "invalid user name '%s'", user);
        if (!valid_name(hostname, 64))
                return aj_error_set(ret_error, -EINVAL, "invalid hostname '%s'", hostname);

        plan = calloc(1, sizeof(*plan));
        if (!plan)
                return -ENOMEM;
        plan->root = strdup(ctx->root_mountpoint);
        if (!plan->root)
                return -ENOMEM;
        plan->allow_degraded_idmap = p->allow_degraded & AJ_DEGRADE_IDMAP;

        r = mnt_resolve_jail_path("filesystem.home", p->home ? p->home : DEFAULT_HOME, "/", &home, &err);
        if (r < 0)
                goto fail;
        r = mnt_resolve_allow_sensitive(plan, p, ctx, &err);
        if (r < 0)
                goto fail;
        r = plan_use_places(plan, ctx);
        if (r < 0)
                goto fail;
        r = plan_root(plan, ctx, user, home, hostname);
        if (r < 0)
                goto fail;
        placed_start = plan->n;
        r = plan_tmpfs(plan, p, ctx, home, &err);
        if (r < 0)
                goto fail;
        r = plan_sources(plan, p, ctx, home, &err);
        if (r < 0)
                goto fail;
        plan_order(plan, placed_start, ctx->idmap);
        n_placed = plan->n;
        r = plan_proc(plan);
        if (r < 0)
                goto fail;
        r = plan_dev(plan, ctx);
        if (r < 0)
                goto fail;
        r = plan_hide(plan, p, home, n_placed, &err);
        if (r < 0)
                goto fail;
        r = plan_files(plan, ctx, &err);
        if (r < 0)
                goto fail;
        r = plan_enter(plan, home);
        if (r < 0)
                goto fail;

        plan->gather = &plan->own_gather; /* the list's may be gone before the plan */
        *ret = TAKE_PTR(plan);
        return 0;

fail:
        /* Collected here, handed over only on failure. */
        if (!err.message)
                return aj_error_set(ret_error, r, "Failed to plan the jail's mounts: %s", strerror(-r));
        if (ret_error) {
                aj_error_clear(ret_error);
                *ret_error = (AjError){ .err = r, .message = TAKE_PTR(err.message) };
        }
        return r;
}

const AjMountPlan *aj_mount_plan_share(const AjMountPlan *plan, AjShared *s)
{
        AjMountPlan *c = aj_shared_alloc(s, sizeof(*c));
        AjMountStep *steps = aj_shared_alloc(s, (plan->n ? plan->n : 1) * sizeof(*steps));
        if (!c || !steps)
                return NULL;
        for (size_t i = 0; i < plan->n; i++) {
                const AjMountStep *from = &plan->steps[i];
                AjMountStep *to = &steps[i];
                *to = *from;        /* fstype is a string literal: the same address in the child */
                to->source_fd = -1; /* the supervisor's: the child, cloned before the plan, has none */
                to->source = aj_shared_strdup(s, from->source);
                to->target = aj_shared_strdup(s, from->target);
                to->options = aj_shared_strdup(s, from->options);
                to->overlay = aj_shared_strdup(s, from->overlay);
                if ((from->source && !to->source) || (from->target && !to->target) || (from->options && !to->options) ||
                    (from->overlay && !to->overlay))
                        return NULL;
        }
        /* Only what the child reads: the checks and their lists stay with the supervisor. */
        *c = (AjMountPlan){
                .steps = steps,
                .n = plan->n,
                .allocated = plan->n,
                .root = aj_shared_strdup(s, plan->root),
                .workdir = aj_shared_strdup(s, plan->workdir),
                .allow_degraded_idmap = plan->allow_degraded_idmap,
        };
        if ((plan->root && !c->root) || (plan->workdir && !c->workdir))
                return NULL;
        return c;
}
