/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail's filesystem view.
 *
 * aj_mount_plan_build() (src/mount-plan.c) turns the profile and the run
 * context into a flat list of steps (pure apart from stat()/readlink()/
 * realpath() on the host, which the plan needs to know what a bind source
 * is). Here: aj_mount_plan_prepare() on the host side, aj_mount_apply(), which
 * runs in the cloned child and executes the steps in order (every path it
 * needs is precomputed by the plan so apply only makes syscalls), and the
 * plan's accessors.
 *
 * Everything in the new root is resolved from a dirfd of the root tmpfs with
 * RESOLVE_IN_ROOT, or one name at a time below a directory so resolved, never
 * following a symlink (see NewRoot below), so a symlink inside a bound directory
 * (the workspace is writable by the agent's owner) can never redirect a mount or
 * a mkdir to the host side of the tree. Mounts are made with the new mount API
 * (fsopen/fsmount, open_tree/mount_setattr, move_mount onto an fd of the target).
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
#include <sys/statfs.h>
#include <sys/statvfs.h> /* ST_RDONLY, in statfs's f_flags */
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include "mount-internal.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/syscalls.h"
#include "util/format.h"
#include "util/path.h"
#include "util/open-under.h"


/* ---- host side: idmapped trees ----------------------------------------- */

/* A detached overlay mount over the tree `lower_fd`, its upper and work dirs in `dir`.
 * Plain copy-up semantics (no redirects, no metacopy, no index), so the upper dir is a
 * complete, reviewable record of the changes (src/workspace.c). */
/* *ret_at_create (may be NULL) says whether it was the overlay's creation that failed, the
 * one step where a kernel before 6.15 refuses a detached lower layer. */
static int overlay_mount(int lower_fd, const char *dir, uint64_t attr, AjError *ret_error, bool *ret_at_create)
{
        _cleanup_close_ int fsfd = sys_fsopen("overlay", FSOPEN_CLOEXEC);
        char upper[PATH_MAX], work[PATH_MAX], lower[64];
        int r;

        if (fsfd < 0) {
                r = negative_errno();
                return aj_error_set(ret_error, r, "overlayfs is not available: %s", strerror(-r));
        }
        snprintf(upper, sizeof(upper), "%s/%s", dir, AJ_OVERLAY_UPPER);
        snprintf(work, sizeof(work), "%s/%s", dir, AJ_OVERLAY_WORK);
        /* The lower layer by fd (Linux 6.8+), else through its /proc/self/fd link. */
        if (sys_fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lower_fd) < 0) {
                snprintf(lower, sizeof(lower), "/proc/self/fd/%d", lower_fd);
                if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0) {
                        r = negative_errno();
                        return aj_error_set(ret_error, r, "overlay: cannot use the workspace as the lower layer: %s",
                                            strerror(-r));
                }
        }
        static const char *const off[] = { "redirect_dir", "metacopy", "index" };
        if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
            sys_fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", work, 0) < 0) {
                r = negative_errno();
                return aj_error_set(ret_error, r, "overlay: upper dir '%s': %s", upper, strerror(-r));
        }
        for (size_t i = 0; i < ARRAY_SIZE(off); i++)
                if (sys_fsconfig(fsfd, FSCONFIG_SET_STRING, off[i], "off", 0) < 0) {
                        r = negative_errno();
                        return aj_error_set(ret_error, r, "overlay: %s=off: %s", off[i], strerror(-r));
                }
        if (sys_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
                r = negative_errno();
                if (ret_at_create)
                        *ret_at_create = true;
                char msg[256] = "";
                ssize_t n = read(fsfd, msg, sizeof(msg) - 1); /* the kernel's reason, if it logged one */
                msg[n > 0 ? n - (msg[n - 1] == '\n') : 0] = 0;
                return aj_error_set(ret_error, r, "overlay mount over the workspace failed: %s%s%s", strerror(-r),
                                    msg[0] ? ": " : "", msg);
        }
        int mfd = sys_fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned)(attr & ~(uint64_t)MOUNT_ATTR_IDMAP));
        if (mfd < 0) {
                r = negative_errno();
                return aj_error_set(ret_error, r, "overlay: fsmount: %s", strerror(-r));
        }
        return mfd;
}

/* What the helper of overlay_attached() sends back: the overlay's fd (SCM_RIGHTS) or why not. */
typedef struct {
        int err;
        char text[512];
} OverlayReply;

/* The helper: a private mount namespace, the tree attached over "/" there, the overlay
 * made and sent back over `sock`. Single-threaded parent, so allocating here is safe. */
_noreturn_ static void overlay_helper(int sock, int lower_fd, const char *dir, uint64_t attr)
{
        OverlayReply rep = { 0 };
        AjError e = {};
        int mfd = -1;
        /* Nothing of the supervisor's: a watchdog's or jail's pipe held open here would hide
         * the supervisor's death from them for as long as this runs. */
        const int keep[] = { sock, lower_fd };
        if (aj_close_all_except(3, keep, ARRAY_SIZE(keep)) < 0)
                rep.err = aj_error_set(&e, -errno, "overlay: closing the supervisor's files: %m");
        else if (unshare(CLONE_NEWNS) < 0)
                rep.err = aj_error_set(&e, -errno, "overlay: a private mount namespace: %m");
        else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                rep.err = aj_error_set(&e, -errno, "overlay: making the mounts private: %m");
        else if (sys_move_mount(lower_fd, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0)
                rep.err = aj_error_set(&e, -errno, "overlay: attaching the workspace's tree: %m");
        else if ((mfd = overlay_mount(lower_fd, dir, attr, &e, NULL)) < 0)
                rep.err = mfd;
        if (rep.err)
                snprintf(rep.text, sizeof(rep.text), "%s", aj_error_text(&e, rep.err));
        _exit(aj_send_with_fd(sock, &rep, sizeof(rep), mfd) == 0 ? 0 : 1);
}

/* The helper's reply: the overlay's fd, or its error. */
static int overlay_reply(int sock, AjError *ret_error)
{
        OverlayReply rep = { 0 };
        int mfd = -1;
        ssize_t n = aj_recv_with_fd(sock, &rep, sizeof(rep), &mfd);
        if (n < 0 && n != -EBADMSG)
                return aj_error_set(ret_error, (int)n, "overlay: no answer from its helper process: %s",
                                    strerror((int)-n));
        bool whole = n == (ssize_t)sizeof(rep);
        struct statfs sfs;
        if (whole && rep.err == 0 && mfd >= 0 && fstatfs(mfd, &sfs) == 0 && sfs.f_type == OVERLAYFS_SUPER_MAGIC)
                return mfd;
        if (mfd >= 0)
                close(mfd);
        if (!whole || rep.err >= 0)
                return aj_error_set(ret_error, -EPROTO, "overlay: its helper process gave no answer");
        rep.text[sizeof(rep.text) - 1] = 0;
        return aj_error_set(ret_error, rep.err, "%s", rep.text);
}

/* Before Linux 6.15 overlayfs takes only a lower layer that is attached in the mounter's
 * mount namespace (clone_private_mount() refuses a detached tree with EINVAL: "overlayfs:
 * failed to clone lowerpath", e.g. Debian 12's 6.1, Ubuntu 24.04's 6.8). There, a child
 * process makes the overlay in a private mount namespace of its own where the idmapped tree
 * is attached over "/" (which no path lookup of that process sees: its root is the covered
 * one), and passes the detached overlay back; the namespace, and the attached tree with it,
 * go when the child exits. The host's mount table is never touched. */
static int overlay_attached(int lower_fd, const char *dir, uint64_t attr, AjError *ret_error)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return aj_error_set(ret_error, -errno, "overlay: socketpair: %m");
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(sv[0]);
                close(sv[1]);
                return aj_error_set(ret_error, r, "overlay: fork: %s", strerror(-r));
        }
        if (pid == 0) {
                close(sv[0]);
                overlay_helper(sv[1], lower_fd, dir, attr);
        }
        close(sv[1]);
        int r = overlay_reply(sv[0], ret_error);
        close(sv[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return r;
}

/* The overlay over the detached tree `lower_fd`; where the kernel refuses a detached lower
 * layer (EINVAL before 6.15), made by overlay_attached() instead. */
/* Whether this kernel refuses an overlay whose lower layers are a detached mount: asked once
 * per process, with two directories of a detached tmpfs as the lower layers of a read-only
 * overlay (nothing attached, nothing left). 1 refused, 0 taken (or refused for another
 * reason: then the helper would not help either). */
static int detached_lower_refused(void)
{
        static int cached = -1;
        if (cached >= 0)
                return cached;
        cached = 0;
        _cleanup_close_ int tfs = sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (tfs < 0 || sys_fsconfig(tfs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return cached;
        _cleanup_close_ int tmnt = sys_fsmount(tfs, FSMOUNT_CLOEXEC, 0);
        if (tmnt < 0 || mkdirat(tmnt, "a", 0755) < 0 || mkdirat(tmnt, "b", 0755) < 0)
                return cached;
        _cleanup_close_ int ofs = sys_fsopen("overlay", FSOPEN_CLOEXEC);
        char lower[96];
        snprintf(lower, sizeof(lower), "/proc/self/fd/%d/a:/proc/self/fd/%d/b", tmnt, tmnt);
        if (ofs < 0 || sys_fsconfig(ofs, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0)
                return cached;
        if (sys_fsconfig(ofs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 && errno == EINVAL)
                cached = 1;
        return cached;
}

static int overlay_over(int lower_fd, const char *dir, uint64_t attr, AjError *ret_error)
{
        bool at_create = false;
        int r = overlay_mount(lower_fd, dir, attr, ret_error, &at_create);
        /* Only the refusal of a detached lower layer is worked around: any other EINVAL (a
         * work dir on another mount, an option) is the error to report, as it is. */
        if (r != -EINVAL || !at_create || detached_lower_refused() != 1)
                return r;
        aj_error_clear(ret_error);
        return overlay_attached(lower_fd, dir, attr, ret_error);
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

/* The supervisor's tree of a bind: a checked source's from the fd the plan opened and judged
 * it by (the same file on the same mount, whatever was renamed or swapped in its path since),
 * else (the runtime dir, agentjail's own) by its path. */
static int clone_source(const AjMountStep *s, uint64_t attr_set)
{
        return s->has_id ? clone_tree(s->source_fd, "", attr_set) : clone_tree(AT_FDCWD, s->source, attr_set);
}

static int prepare_idmapped(AjMountPlan *plan, AjMountStep *s, int idmap_userns_fd, AjError *ret_error)
{
        _cleanup_close_ int fd = -1;
        struct mount_attr attr = {
                .attr_set = s->attr | MOUNT_ATTR_IDMAP,
                .userns_fd = (uint64_t)idmap_userns_fd,
        };
        int r;

        if (idmap_userns_fd < 0)
                return aj_error_set(ret_error, -EBADF, "no user namespace for the idmapped mount of '%s'", s->source);
        fd = clone_source(s, 0);
        if (fd < 0)
                return aj_error_set(ret_error, fd, "Failed to clone the mount tree of '%s': %s", s->source,
                                    strerror(-fd));
        if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) {
                r = negative_errno();
                if (plan->allow_degraded_idmap && (r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSYS)) {
                        /* The filesystem cannot idmap: keep a plain bind, the profile allows it. */
                        attr.attr_set = s->attr;
                        attr.userns_fd = 0;
                        if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) {
                                r = negative_errno();
                                return aj_error_set(ret_error, r, "Failed to set mount flags on '%s': %s", s->source,
                                                    strerror(-r));
                        }
                        s->degraded = true;
                } else
                        return aj_error_set(ret_error, r, "Failed to create an idmapped mount of '%s': %s", s->source,
                                            strerror(-r));
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

int aj_mount_plan_prepare(AjMountPlan *plan, int idmap_userns_fd, AjError *ret_error)
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
                int fd = clone_source(s, s->attr);
                if (fd < 0)
                        return aj_error_set(ret_error, fd, "Failed to clone the mount tree of '%s': %s", s->source,
                                            strerror(-fd));
                s->tree_fd = fd;
        }
        return 0;
}

typedef struct {
        const AjMountStep *step;
        int (*fn)(void *userdata, int fd, const char *what);
        void *userdata;
} WritableBelow;

/* A mount below a writable tree's source: its clone carries it (AT_RECURSIVE), writable
 * unless mounted read-only, so the agent writes it as surely as the tree itself. `fn` gets
 * it unless it is mounted read-only, opened by its path (no symlink followed). */
static int writable_submount(const char *point, void *userdata)
{
        const WritableBelow *w = userdata;
        _cleanup_close_ int fd = sys_openat2(AT_FDCWD, point, O_PATH | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS);
        if (fd < 0 && errno == ENOENT)
                return 0; /* gone since the table was read: the clone does not have it either */
        if (fd < 0)
                return negative_errno();
        struct statfs sf;
        if (fstatfs(fd, &sf) < 0)
                return negative_errno();
        if (sf.f_flags & ST_RDONLY)
                return 0;
        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "the mount '%s' in %s '%s'", point,
                     w->step->origin == ORIGIN_WORKSPACE ? "the workspace" : "the rw bind", w->step->source) < 0)
                return -ENOMEM;
        return w->fn(w->userdata, TAKE_FD(fd), what);
}

int aj_mount_plan_each_writable(AjMountPlan *plan, int (*fn)(void *userdata, int fd, const char *what), void *userdata)
{
        _cleanup_free_ char *own_table = NULL;
        const char *table = NULL;
        for (size_t i = 0; plan && i < plan->n; i++) {
                const AjMountStep *s = &plan->steps[i];
                if (s->kind != STEP_BIND || (s->attr & MOUNT_ATTR_RDONLY) ||
                    (s->origin != ORIGIN_RW && s->origin != ORIGIN_WORKSPACE))
                        continue;
                int pin = s->tree_fd >= 0 ? s->tree_fd : s->source_fd;
                _cleanup_close_ int fd = pin >= 0 ? fcntl(pin, F_DUPFD_CLOEXEC, 3)
                                                  : open(s->source, O_PATH | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                if (pin < 0 && check_identity(s, fd) < 0)
                        return -ESTALE;
                _cleanup_free_ char *what = NULL;
                if (asprintf(&what,
                             s->overlay ? "the overlay of the workspace '%s' (its upper layer, in the run directory)"
                             : s->origin == ORIGIN_WORKSPACE ? "the workspace '%s'"
                                                             : "the rw bind '%s'",
                             s->source) < 0)
                        return -ENOMEM;
                int r = fn(userdata, TAKE_FD(fd), what);
                if (r < 0)
                        return r;
                /* An overlay's lower layer is read, never written, mounts in it too. */
                if (s->overlay || !s->is_dir)
                        continue;
                if (!table) {
                        /* The plan's own copy of the mount table, which its places check reads
                         * next: read once for both (0.06 ms a read here). */
                        if (plan->gather == &plan->own_gather)
                                mnt_plan_gather_ready(plan);
                        table = plan->gather ? plan->gather->mountinfo : NULL;
                        if (!table && (r = mnt_mountinfo_load(&own_table)) < 0)
                                return r;
                        if (!table)
                                table = own_table;
                }
                WritableBelow below = { .step = s, .fn = fn, .userdata = userdata };
                r = mnt_each_mount_below(table, s->source, writable_submount, &below);
                if (r < 0)
                        return r;
        }
        return 0;
}

int aj_mount_plan_tree_fd(const AjMountPlan *plan, size_t step)
{
        return plan && step < plan->n ? plan->steps[step].tree_fd : -1;
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

/*
 * Where the steps resolve their targets. A path is resolved from the new root with
 * RESOLVE_IN_ROOT (open_in_root): a symlink in the root, or in a tree bound into it (the
 * workspace is the agent's), resolves against the new root, never the host's. A directory
 * made on the way, and the target's own name, are opened from their parent's fd one name at
 * a time (aj_open_child: no symlink followed, no ".."); a symlink met there is resolved as
 * the whole path from the root again.
 *
 * The parent directory of the last target stays open for the next step (the /etc and /dev
 * steps come in runs). An fd names the directory it was opened on, not what is mounted there
 * later: the kept one is dropped after any mount but one on a name opened from it (a mount
 * on its child does not cover it), and when the root changes. It is kept only when its path
 * was walked down without a symlink: through one (d/up -> .. names d's parent), a name opened
 * from it can be a directory the path goes through, and a mount there changes what the path
 * means (the next step would land in the directory the mount left behind).
 */
typedef struct {
        int root;                /* the root tmpfs, O_PATH */
        int dir;                 /* dir_path (relative to the root), O_PATH, or -1 */
        char dir_path[PATH_MAX]; /* "" (matches no step): reached through a symlink, not kept */
} NewRoot;

static void new_root_forget_dir(NewRoot *nr)
{
        if (nr->dir >= 0)
                close(nr->dir);
        nr->dir = -1;
}

static void new_root_done(NewRoot *nr)
{
        new_root_forget_dir(nr);
        if (nr->root >= 0)
                close(nr->root);
        nr->root = -1;
}

/* Symlinks in the new root (the profile's, the bound trees') resolve against it, never the host's. */
static int open_in_root(int rootfd, const char *target, int flags)
{
        return aj_open_under(rootfd, target, flags, 0, AJ_UNDER_FOLLOW);
}

/* mkdir -p of `path` (relative to the root, not there as a whole), one name at a time from
 * the directory before it; returns an O_PATH fd of it. `path` is modified on the way and
 * restored. A name is looked up before it is made unless it cannot be there: below a
 * directory made here, or the last one (all before it are). *ret_linked: a symlink on the
 * way was followed (set, never cleared). */
static int make_dirs(int rootfd, char *path, bool *ret_linked)
{
        _cleanup_close_ int cur = -1;
        bool fresh = false; /* the directory before was made here: nothing in it yet */

        for (char *p = path; *p;) {
                char *end = strchrnul(p, '/'), saved = *end;
                int at = cur >= 0 ? cur : rootfd, fd = -ENOENT;

                if (end == p) { /* "a//b" */
                        p++;
                        continue;
                }
                bool last = saved == '\0' || end[1] == '\0';

                *end = '\0';
                if (!fresh && !last)
                        fd = aj_open_child(at, p, O_PATH | O_DIRECTORY, 0);
                if (fd == -ENOENT) {
                        int r = mkdirat(at, p, 0755) < 0 ? negative_errno() : 0;

                        fresh = r == 0;
                        /* EEXIST: made since, or a symlink there (-ELOOP, below). */
                        fd = r == 0 || r == -EEXIST ? aj_open_child(at, p, O_PATH | O_DIRECTORY, 0) : r;
                }
                if (fd == -ELOOP) {
                        /* A symlink on the way: the path so far, resolved from the root. */
                        fd = open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
                        fresh = false;
                        *ret_linked = true;
                }
                *end = saved;
                if (fd < 0)
                        return fd;
                if (cur >= 0)
                        close(cur);
                cur = fd;
                p = *end ? end + 1 : end;
        }
        return cur >= 0 ? TAKE_FD(cur) : -EINVAL;
}

/* The directory `target` goes in, made when missing (mkdir -p), and the target's name in it
 * (*ret_name, a pointer into `target`). The fd is borrowed: the root's or the kept one. */
static int parent_dir(NewRoot *nr, const char *target, const char **ret_name)
{
        const char *rel = target + strspn(target, "/"), *slash = strrchr(rel, '/');
        const char *name = slash ? slash + 1 : rel;
        size_t plen = slash ? (size_t)(slash - rel) : 0;
        char path[PATH_MAX];
        int fd;

        if (!*name)
                return -EINVAL;
        if (plen >= sizeof(path))
                return -ENAMETOOLONG;
        memcpy(path, rel, plen);
        path[plen] = '\0';
        if (plen == 0)
                fd = nr->root;
        else if (nr->dir >= 0 && streq(nr->dir_path, path))
                fd = nr->dir;
        else {
                bool linked = false;

                new_root_forget_dir(nr);
                /* Without a symlink first: the one openat2 of the common case tells it. */
                fd = aj_open_under(nr->root, path, O_PATH | O_DIRECTORY, 0, AJ_UNDER_NO_SYMLINKS);
                if (fd == -ELOOP) {
                        linked = true;
                        fd = open_in_root(nr->root, path, O_PATH | O_DIRECTORY);
                }
                if (fd == -ENOENT)
                        fd = make_dirs(nr->root, path, &linked);
                if (fd < 0)
                        return fd;
                nr->dir = fd;
                if (linked)
                        nr->dir_path[0] = '\0'; /* used for this step only */
                else
                        memcpy(nr->dir_path, path, plen + 1);
        }
        *ret_name = name;
        return fd;
}

/* An fd of the mountpoint, made (an empty directory or file) when missing. *ret_kept: opened
 * from the kept directory, which a mount on it leaves valid. */
static int open_mountpoint(NewRoot *nr, const char *target, bool is_dir, bool *ret_kept)
{
        const char *name = NULL;
        int pfd, fd;

        *ret_kept = false;
        pfd = parent_dir(nr, target, &name);
        if (pfd < 0)
                return pfd;
        if (is_dir) {
                if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                fd = aj_open_child(pfd, name, O_PATH | O_DIRECTORY, 0);
        } else {
                /* Made and opened at once; one that is there is opened as it is. */
                fd = aj_open_child(pfd, name, O_RDONLY | O_CREAT | O_EXCL, 0444);
                if (fd == -EEXIST)
                        fd = aj_open_child(pfd, name, O_PATH, 0);
        }
        if (fd == -ELOOP)
                /* A symlink there (in a bound tree): followed, inside the new root. */
                return open_in_root(nr->root, target, O_PATH);
        *ret_kept = fd >= 0 && pfd == nr->dir;
        return fd;
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
        mfd = sys_fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned)attr);
        return mfd < 0 ? negative_errno() : mfd;
}

/* A detached copy of the tree at path (with its submounts), attr_set on each of its mounts.
 * Always private: the copy of a shared mount (the host's "/" under systemd) is its peer, as
 * with mount --bind, so what the jail mounts on a name in it (a bind or a hide in the
 * workspace, where the agent's links may send it) would appear in the host's mount namespace
 * and stay there after the run, and the host's mounts there would appear in the jail. */
static int clone_tree(int dfd, const char *path, uint64_t attr_set)
{
        _cleanup_close_ int fd = -1;
        struct mount_attr a = { .attr_set = attr_set, .propagation = MS_PRIVATE };
        unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE;

        if (!*path)
                flags |= AT_EMPTY_PATH;
        fd = sys_open_tree(dfd, path, flags);
        if (fd < 0)
                return negative_errno();
        if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

static int write_file_in_root(NewRoot *nr, const char *target, const char *contents)
{
        _cleanup_close_ int fd = -1;
        const char *name = NULL;
        size_t left = strlen(contents);
        int pfd;

        pfd = parent_dir(nr, target, &name);
        if (pfd < 0)
                return pfd;
        /* Never through a symlink at its name (-ELOOP). */
        fd = aj_open_child(pfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
                left -= (size_t)k;
        }
        return 0;
}

static int apply_root_tmpfs(const AjMountStep *s, NewRoot *nr)
{
        _cleanup_close_ int mfd = -1;
        int fd;

        new_root_forget_dir(nr);
        mfd = new_fs("tmpfs", s->options, s->attr);
        if (mfd < 0)
                return mfd;
        if (sys_move_mount(mfd, "", AT_FDCWD, s->target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return negative_errno();
        fd = open(s->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (nr->root >= 0)
                close(nr->root);
        nr->root = fd;
        return 0;
}

static int apply_symlink(const AjMountStep *s, NewRoot *nr)
{
        const char *name = NULL;
        char cur[PATH_MAX];
        ssize_t n;
        int pfd;

        pfd = parent_dir(nr, s->target, &name);
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

/* `tree` moved onto the mountpoint at `target`. */
static int mount_at(NewRoot *nr, int tree, const char *target, bool is_dir)
{
        _cleanup_close_ int tfd = -1;
        bool kept;
        int r;

        tfd = open_mountpoint(nr, target, is_dir, &kept);
        if (tfd < 0)
                return tfd;
        r = move_tree(tree, tfd);
        if (!kept)
                new_root_forget_dir(nr);
        return r;
}

/* The child's own tree of a bind (rootless, or a device): by the planned path, in this mount
 * namespace, since the supervisor's pin is a mount of another namespace, which open_tree()
 * does not clone. A checked source's path is the kernel's name of it, without symlinks: one
 * met now was swapped in after the check (it could lead to the same file through another
 * mount, with other mounts below it), and the file reached must be the one checked. */
static int clone_planned(const AjMountStep *s)
{
        if (!s->has_id)
                return clone_tree(AT_FDCWD, s->source, s->attr);
        _cleanup_close_ int fd = sys_openat2(AT_FDCWD, s->source, O_PATH | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS);
        if (fd < 0)
                return errno == ELOOP ? -ESTALE : negative_errno();
        int r = check_identity(s, fd);
        return r < 0 ? r : clone_tree(fd, "", s->attr);
}

static int apply_bind(const AjMountStep *s, int tree_fd, NewRoot *nr)
{
        _cleanup_close_ int mfd = -1;

        if (tree_fd < 0) {
                mfd = clone_planned(s);
                if (mfd < 0)
                        return mfd;
        }
        /* A tree prepared by the supervisor only needs moving into place. */
        return mount_at(nr, tree_fd >= 0 ? tree_fd : mfd, s->target, s->is_dir);
}

static int apply_fs(const AjMountStep *s, NewRoot *nr)
{
        _cleanup_close_ int mfd = -1;

        mfd = new_fs(s->fstype, s->options, s->attr);
        if (mfd < 0)
                return mfd;
        return mount_at(nr, mfd, s->target, true);
}

static int apply_rebind_ro(const AjMountStep *s, NewRoot *nr)
{
        _cleanup_close_ int tfd = -1, mfd = -1;

        tfd = open_in_root(nr->root, s->target, O_PATH);
        if (tfd == -ENOENT)
                return 0;
        if (tfd < 0)
                return tfd;
        mfd = clone_tree(tfd, "", s->attr);
        if (mfd < 0)
                return mfd;
        new_root_forget_dir(nr);
        return move_tree(mfd, tfd);
}

static int apply_hide(const AjMountStep *s, NewRoot *nr)
{
        _cleanup_close_ int tfd = -1, mfd = -1;
        struct stat st;

        tfd = open_in_root(nr->root, s->target, O_PATH);
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
                mfd = clone_tree(AT_FDCWD, "/dev/null", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (mfd < 0)
                return mfd;
        new_root_forget_dir(nr);
        return move_tree(mfd, tfd);
}

static int apply_pivot(NewRoot *nr)
{
        new_root_forget_dir(nr);
        if (fchdir(nr->root) < 0)
                return negative_errno();
        /* Stacks the old root under the new one at "."; detaching "." then drops it. */
        if (sys_pivot_root(".", ".") < 0)
                return negative_errno();
        if (umount2(".", MNT_DETACH) < 0)
                return negative_errno();
        if (chdir("/") < 0)
                return negative_errno();
        return 0;
}

static int apply_step(const AjMountStep *s, int tree_fd, NewRoot *nr)
{
        if (nr->root < 0 && s->kind != STEP_PRIVATE && s->kind != STEP_ROOT_TMPFS)
                return -EBADF;

        switch (s->kind) {
        case STEP_PRIVATE:
                if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        return negative_errno();
                return 0;
        case STEP_ROOT_TMPFS:
                return apply_root_tmpfs(s, nr);
        case STEP_WRITE_FILE:
                return write_file_in_root(nr, s->target, s->source);
        case STEP_SYMLINK:
                return apply_symlink(s, nr);
        case STEP_BIND:
                return apply_bind(s, tree_fd, nr);
        case STEP_FS:
                return apply_fs(s, nr);
        case STEP_REBIND_RO:
                return apply_rebind_ro(s, nr);
        case STEP_HIDE:
                return apply_hide(s, nr);
        case STEP_PIVOT:
                return apply_pivot(nr);
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

int aj_mount_apply(const AjMountPlan *plan, const int *trees, size_t *ret_step)
{
        _cleanup_(new_root_done) NewRoot nr = { .root = -1, .dir = -1 };

        if (!plan)
                return -EINVAL;
        for (size_t i = 0; i < plan->n; i++) {
                int r = apply_step(&plan->steps[i], trees ? trees[i] : plan->steps[i].tree_fd, &nr);

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
                        mode = s->overlay                 ? "overlay, writes kept in the run"
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

bool aj_mount_plan_places_judged(const AjMountPlan *plan) { return plan && !plan->defer_places; }

const char *aj_mount_plan_workdir(const AjMountPlan *plan) { return plan ? plan->workdir : NULL; }

char *const *aj_mount_plan_sensitive_allowed(const AjMountPlan *plan) { return plan ? plan->sensitive_allowed : NULL; }

size_t aj_mount_plan_n_steps(const AjMountPlan *plan) { return plan ? plan->n : 0; }

const char *aj_mount_plan_workspace_source(const AjMountPlan *plan)
{
        for (size_t i = 0; plan && i < plan->n; i++)
                if (plan->steps[i].origin == ORIGIN_WORKSPACE && plan->steps[i].kind == STEP_BIND)
                        return plan->steps[i].source;
        return NULL;
}

static const AjMountStep *checked_workspace(const AjMountPlan *plan)
{
        for (size_t i = 0; plan && i < plan->n; i++)
                if (plan->steps[i].origin == ORIGIN_WORKSPACE && plan->steps[i].kind == STEP_BIND &&
                    plan->steps[i].has_id)
                        return &plan->steps[i];
        return NULL;
}

bool aj_mount_plan_workspace_id(const AjMountPlan *plan, dev_t *ret_dev, ino_t *ret_ino)
{
        const AjMountStep *s = checked_workspace(plan);
        if (!s)
                return false;
        *ret_dev = s->dev;
        *ret_ino = s->ino;
        return true;
}

bool aj_mount_plan_workspace_owner(const AjMountPlan *plan, uid_t *ret_uid, gid_t *ret_gid, mode_t *ret_mode)
{
        const AjMountStep *s = checked_workspace(plan);
        if (!s)
                return false;
        *ret_uid = s->uid;
        *ret_gid = s->gid;
        *ret_mode = s->mode;
        return true;
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
        mnt_gather_done(&plan->own_gather);
        mnt_pending_done(plan);
        for (size_t i = 0; i < plan->n; i++)
                mnt_step_clear(&plan->steps[i]);
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
