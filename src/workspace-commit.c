/* SPDX-License-Identifier: Apache-2.0 */
/* Applying a diff to the workspace itself, one change at a time, every path opened beneath
 * the workspace without following a symlink and never across a mount. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "util/fd.h"
#include "util/format.h"
#include "util/open-under.h"
#include "workspace-internal.h"

/* ---- commit --------------------------------------------------------------- */

/* A directory below root_fd by a relative path ("" = root itself), following no symlink,
 * crossing no mount and never leaving root: a symlink anywhere in the path is -ELOOP, a
 * mount point -EXDEV, not a detour. The agent's overlay showed the directory under each of
 * the host's mounts in the workspace, not what is mounted there. */
static int open_beneath(int root_fd, const char *path)
{
        return aj_open_under(root_fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                             AJ_UNDER_NO_SYMLINKS | AJ_UNDER_NO_XDEV);
}

int aj_ws_open_file(int root_fd, const char *path)
{
        char dir[PATH_MAX];
        if (strlen(path) >= sizeof(dir))
                return -ENAMETOOLONG;
        strcpy(dir, path);
        char *slash = strrchr(dir, '/');
        const char *name = slash ? slash + 1 : dir;
        if (slash)
                *slash = 0;
        if (!*name || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        _cleanup_close_ int parent = open_beneath(root_fd, slash ? dir : "");
        if (parent < 0)
                return parent;
        int fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* Where an entry lives: its device and, where the kernel tells (5.8+), its mount, so that
 * a bind mount of the same filesystem counts as another place too. */
typedef struct {
        uint32_t dev_major, dev_minor;
        uint64_t mnt_id;
        bool has_mnt_id;
} Place;

static int place_at(int dir_fd, const char *name, Place *ret)
{
        struct statx stx;
        int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH);
        if (statx(dir_fd, name, flags, STATX_TYPE | STATX_MNT_ID, &stx) < 0)
                return -errno;
        *ret = (Place){
                .dev_major = stx.stx_dev_major,
                .dev_minor = stx.stx_dev_minor,
                .mnt_id = stx.stx_mnt_id,
                .has_mnt_id = stx.stx_mask & STATX_MNT_ID,
        };
        return 0;
}

static bool same_place(const Place *a, const Place *b)
{
        return a->dev_major == b->dev_major && a->dev_minor == b->dev_minor &&
               (!a->has_mnt_id || !b->has_mnt_id || a->mnt_id == b->mnt_id);
}

/* Removes what directory `dir_fd` contains, all in `place`: a mount point below is
 * -EXDEV, never emptied. `dry`: removes nothing, only looks for one. */
static int empty_dir(int dir_fd, const Place *place, unsigned depth, bool dry)
{
        if (depth >= AJ_WS_MAX_DEPTH)
                return -ELOOP;
        _cleanup_closedir_ DIR *d = NULL;
        int r = ws_open_dir_stream(dir_fd, ".", &d);
        if (r < 0)
                return r;
        const char *child;
        while ((r = ws_next_name(d, &child)) > 0) {
                struct stat st;
                if (fstatat(dirfd(d), child, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                /* A file can be a mount point too (a bind-mounted file): the dry pass must
                 * find it, or the removal starts and stops half way at its EBUSY. */
                Place cp;
                r = place_at(dirfd(d), child, &cp);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                if (!same_place(&cp, place))
                        return -EXDEV;
                if (!S_ISDIR(st.st_mode)) {
                        if (!dry && unlinkat(dirfd(d), child, 0) < 0 && errno != ENOENT)
                                return -errno;
                        continue;
                }
                _cleanup_close_ int fd = openat(dirfd(d), child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                r = empty_dir(fd, place, depth + 1, dry);
                if (r < 0)
                        return r;
                if (!dry && unlinkat(dirfd(d), child, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        return -errno;
        }
        return r;
}

/* Removes `name` in dir_fd, recursively for a directory (or only what it contains, with
 * keep_top), never across a mount point (-EXDEV), even when `name` itself is one. `dry`:
 * removes nothing, only says whether it could. */
static int remove_tree_at(int dir_fd, const char *name, bool keep_top, bool dry)
{
        struct stat st;
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return !dry && unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;

        Place parent, here;
        int r = place_at(dir_fd, "", &parent);
        if (r < 0)
                return r;
        r = place_at(dir_fd, name, &here);
        if (r < 0)
                return r;
        if (!same_place(&parent, &here))
                return -EXDEV;
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = empty_dir(fd, &here, 1, dry);
        if (r < 0 || keep_top || dry)
                return r;
        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* A name for a temporary entry in dir_fd: made to be unused, short whatever the target's. */
static int temp_name(char buf[32])
{
        uint64_t rnd;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                return errno > 0 ? -errno : -EIO;
        snprintf(buf, 32, ".aj-ws-%016llx", (unsigned long long)rnd);
        return 0;
}

typedef struct {
        int upper_fd, lower_fd;
        uid_t uid; /* lower root's owner, for created entries */
        gid_t gid;
} Commit;

#define ACL_ACCESS_XATTR "system.posix_acl_access"

/* The access ACL of the lower file pinned at lower_pin (an O_PATH fd) given to out_fd in
 * place of whatever it had (the directory's default ACL, inherited at its creation), or
 * none when the lower file has none: a commit writes a changed file anew and renames it
 * over the lower one, and without it the file's named users and groups lost their access,
 * and the mode's group bits, which are the ACL's mask, became the owning group's access
 * (a group the ACL gave nothing would read and write). The mode is set after it, as a
 * chmod of the lower file would be (owner, mask, other). Through /proc: an O_PATH fd takes
 * no fgetxattr, and the lower file needs no read rights. */
static int keep_acl(int lower_pin, int out_fd)
{
        char proc[40];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", lower_pin);
        ssize_t n = getxattr(proc, ACL_ACCESS_XATTR, NULL, 0);
        if (n < 0 && errno != ENODATA && errno != EOPNOTSUPP)
                return -errno;
        if (n <= 0) {
                if (fremovexattr(out_fd, ACL_ACCESS_XATTR) < 0 && errno != ENODATA && errno != EOPNOTSUPP)
                        return -errno;
                return 0;
        }
        if (n > XATTR_SIZE_MAX)
                return -E2BIG;
        _cleanup_free_ char *acl = malloc((size_t)n);
        if (!acl)
                return -ENOMEM;
        ssize_t got = getxattr(proc, ACL_ACCESS_XATTR, acl, (size_t)n);
        if (got < 0)
                return errno == ERANGE ? -EBADFD : -errno; /* changed since: the run is not over */
        return fsetxattr(out_fd, ACL_ACCESS_XATTR, acl, (size_t)got, 0) < 0 ? -errno : 0;
}

/* A regular file or a symlink from upper, written under a temporary name in lparent_fd,
 * its name returned in tmp; a file replacing a lower one pinned at lower_pin (else -1)
 * keeps its access ACL. */
static int write_temp(int uparent_fd, int lparent_fd, const char *name, mode_t type, uid_t uid, gid_t gid,
                      int lower_pin, char tmp[32])
{
        struct stat ust;
        int r;

        if (type == S_IFLNK) {
                _cleanup_free_ char *target = malloc(PATH_MAX);
                if (!target)
                        return -ENOMEM;
                ssize_t n = readlinkat(uparent_fd, name, target, PATH_MAX);
                if (n < 0)
                        return -errno;
                if (n >= PATH_MAX)
                        return -ENAMETOOLONG;
                target[n] = 0;
                if (fstatat(uparent_fd, name, &ust, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                for (int tries = 0;; tries++) {
                        r = temp_name(tmp);
                        if (r < 0)
                                return r;
                        if (symlinkat(target, lparent_fd, tmp) >= 0)
                                break;
                        if (errno != EEXIST || tries >= 8)
                                return -errno;
                }
                struct timespec times[2] = { ust.st_atim, ust.st_mtim };
                if (fchownat(lparent_fd, tmp, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
                    utimensat(lparent_fd, tmp, times, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = -errno;
                        unlinkat(lparent_fd, tmp, 0);
                        return r;
                }
                return 0;
        }

        _cleanup_close_ int in_fd = openat(uparent_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (in_fd < 0)
                return -errno;
        if (fstat(in_fd, &ust) < 0)
                return -errno;
        if (!S_ISREG(ust.st_mode))
                return -EBADFD; /* changed since the diff: the run is not over */
        _cleanup_close_ int out_fd = -1;
        for (int tries = 0;; tries++) {
                r = temp_name(tmp);
                if (r < 0)
                        return r;
                out_fd = openat(lparent_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (out_fd >= 0)
                        break;
                if (errno != EEXIST || tries >= 8)
                        return -errno;
        }
        struct timespec times[2] = { ust.st_atim, ust.st_mtim };
        r = aj_copy_data(in_fd, out_fd, NULL); /* holes stay holes */
        /* chown before chmod: chown may clear mode bits. */
        if (r >= 0 && fchown(out_fd, uid, gid) < 0)
                r = -errno;
        if (r >= 0 && lower_pin >= 0)
                r = keep_acl(lower_pin, out_fd);
        if (r >= 0 && fchmod(out_fd, sanitized_mode(ust.st_mode)) < 0)
                r = -errno;
        if (r >= 0 && futimens(out_fd, times) < 0)
                r = -errno;
        if (r < 0)
                unlinkat(lparent_fd, tmp, 0);
        return r;
}

static int make_dir(const Commit *cm, int lparent_fd, const char *name, mode_t mode)
{
        if (mkdirat(lparent_fd, name, 0700) < 0)
                return -errno;
        _cleanup_close_ int fd = openat(lparent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchown(fd, cm->uid, cm->gid) < 0 || fchmod(fd, sanitized_mode(mode)) < 0)
                return -errno;
        return 0;
}

static int apply_dir(const Commit *cm, const AjWsChange *c, int uparent_fd, int lparent_fd, const char *name)
{
        struct stat ust, lst;
        if (fstatat(uparent_fd, name, &ust, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISDIR(ust.st_mode))
                return -EBADFD;
        bool in_lower = fstatat(lparent_fd, name, &lst, AT_SYMLINK_NOFOLLOW) >= 0;
        if (!in_lower && errno != ENOENT)
                return -errno;

        if (c->kind == AJ_WS_ADDED || (c->kind == AJ_WS_REPLACED && !in_lower))
                return make_dir(cm, lparent_fd, name, ust.st_mode);
        if (c->kind == AJ_WS_REPLACED && !S_ISDIR(lst.st_mode)) {
                if (unlinkat(lparent_fd, name, 0) < 0)
                        return -errno;
                return make_dir(cm, lparent_fd, name, ust.st_mode);
        }
        if (!in_lower)
                return -ENOENT;
        if (!S_ISDIR(lst.st_mode))
                return -ENOTDIR;

        _cleanup_close_ int fd = open_beneath(lparent_fd, name);
        if (fd < 0)
                return fd;
        if (c->kind == AJ_WS_REPLACED) {
                int r = remove_tree_at(lparent_fd, name, true, false);
                if (r < 0)
                        return r;
        }
        if ((lst.st_mode & 07777) != sanitized_mode(ust.st_mode) && fchmod(fd, sanitized_mode(ust.st_mode)) < 0)
                return -errno;
        return 0;
}

static int apply_one(const Commit *cm, const AjWsChange *c, const char **ret_what)
{
        char parent[PATH_MAX];
        const char *slash = strrchr(c->path, '/');
        const char *name = slash ? slash + 1 : c->path;
        size_t plen = slash ? (size_t)(slash - c->path) : 0;
        if (plen >= sizeof(parent))
                return -ENAMETOOLONG;
        memcpy(parent, c->path, plen);
        parent[plen] = 0;

        *ret_what = "resolve, not following symlinks, the workspace directory of";
        _cleanup_close_ int lparent_fd = open_beneath(cm->lower_fd, parent);
        if (lparent_fd < 0)
                return lparent_fd;

        if (c->kind == AJ_WS_DELETED) {
                *ret_what = "remove from the workspace";
                return remove_tree_at(lparent_fd, name, false, false);
        }

        *ret_what = "resolve the upper directory of";
        _cleanup_close_ int uparent_fd = open_beneath(cm->upper_fd, parent);
        if (uparent_fd < 0)
                return uparent_fd;

        *ret_what = "apply to the workspace";
        if (c->type == S_IFDIR)
                return apply_dir(cm, c, uparent_fd, lparent_fd, name);

        struct stat lst;
        bool in_lower = fstatat(lparent_fd, name, &lst, AT_SYMLINK_NOFOLLOW) >= 0;
        if (!in_lower && errno != ENOENT)
                return -errno;
        bool same_type = in_lower && (lst.st_mode & S_IFMT) == c->type;
        _cleanup_close_ int lower_pin = -1;
        if (same_type && c->type == S_IFREG) {
                struct stat pst;
                lower_pin = openat(lparent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (lower_pin < 0 || fstat(lower_pin, &pst) < 0)
                        return -errno;
                if (pst.st_dev != lst.st_dev || pst.st_ino != lst.st_ino)
                        return -EBADFD; /* replaced since its lstat: the run is not over */
        }
        char tmp[32];
        int r = write_temp(uparent_fd, lparent_fd, name, c->type, same_type ? lst.st_uid : cm->uid,
                           same_type ? lst.st_gid : cm->gid, lower_pin, tmp);
        if (r < 0)
                return r;
        /* rename() replaces anything but a directory: a file replacing one removes it first. */
        if (in_lower && S_ISDIR(lst.st_mode)) {
                *ret_what = "remove the workspace directory replaced by";
                r = remove_tree_at(lparent_fd, name, false, false);
        }
        if (r >= 0 && renameat(lparent_fd, tmp, lparent_fd, name) < 0)
                r = -errno;
        if (r < 0)
                unlinkat(lparent_fd, tmp, 0);
        return r;
}

static const AjWsChange *changes_find(const Changes *ch, const char *path)
{
        AjWsChange key = { .path = (char *)path };
        return bsearch(&key, ch->v, ch->n, sizeof(*ch->v), ws_change_compare);
}

/* Before changing anything: every lower directory an entry goes into must be reachable
 * without a symlink, unless this commit creates it. */
static int check_lower_dirs(const Commit *cm, const Changes *ch, AjError *ret_error)
{
        char last[PATH_MAX] = "", parent[PATH_MAX];
        bool have_last = false;
        for (size_t i = 0; i < ch->n; i++) {
                const AjWsChange *c = &ch->v[i];
                if (c->kind == AJ_WS_MODIFIED && c->type == S_IFDIR) {
                        _cleanup_close_ int fd = open_beneath(cm->lower_fd, c->path);
                        _cleanup_free_ char *shown = fd < 0 ? aj_printable_dup(c->path, strlen(c->path), 0) : NULL;
                        if (fd < 0)
                                return aj_error_set(ret_error, fd,
                                                    "Cannot apply '%s': in the workspace it is not a directory reached "
                                                    "without symlinks (%s); nothing was applied",
                                                    shown ?: "?", strerror(-fd));
                }
                const char *slash = strrchr(c->path, '/');
                if (!slash)
                        continue;
                size_t plen = (size_t)(slash - c->path);
                memcpy(parent, c->path, plen);
                parent[plen] = 0;
                if (have_last && streq(parent, last))
                        continue;
                if (!changes_find(ch, parent)) {
                        _cleanup_close_ int fd = open_beneath(cm->lower_fd, parent);
                        _cleanup_free_ char *shown = fd < 0 ? aj_printable_dup(c->path, strlen(c->path), 0) : NULL;
                        if (fd < 0)
                                return aj_error_set(ret_error, fd,
                                                    "Cannot apply '%s': its directory '%.*s' in the workspace is not "
                                                    "reached without symlinks (%s); nothing was applied",
                                                    shown ?: "?", shown ? (int)(strrchr(shown, '/') - shown) : 1,
                                                    shown ?: "?", strerror(-fd));
                }
                memcpy(last, parent, plen + 1);
                have_last = true;
        }
        return 0;
}

/* Before changing anything: what the changes take on the workspace's filesystem, against
 * what it has free for its users (f_bavail, f_favail: a commit runs as root, and would
 * otherwise write into root's reserve and stop half way at ENOSPC). A file is written
 * whole before the one it replaces goes, and once per name: names hardlinked in the upper
 * dir are one file there, one each here (29 MB there filled 180 MB). So: each regular
 * file's allocated bytes (its holes stay holes), any other entry made a block, each entry
 * made an inode; what the changes delete is not counted on. */
static int check_room(int lower_fd, const Changes *ch, AjError *ret_error)
{
        struct statvfs sv;
        if (fstatvfs(lower_fd, &sv) < 0)
                return aj_error_set(ret_error, -errno, "Failed to statfs the workspace: %m");
        uint64_t block = sv.f_frsize ? sv.f_frsize : sv.f_bsize ? sv.f_bsize : 4096;
        uint64_t bytes = 0, inodes = 0;
        for (size_t i = 0; i < ch->n; i++) {
                const AjWsChange *c = &ch->v[i];
                if (c->skipped || c->kind == AJ_WS_DELETED || (c->kind == AJ_WS_MODIFIED && c->type == S_IFDIR))
                        continue;
                uint64_t want = c->type == S_IFREG ? c->allocated : 1;
                uint64_t blocks = want / block + (want % block != 0);
                bytes = blocks > (UINT64_MAX - bytes) / block ? UINT64_MAX : bytes + blocks * block;
                inodes++;
        }
        uint64_t avail = sv.f_bavail > UINT64_MAX / block ? UINT64_MAX : (uint64_t)sv.f_bavail * block;
        if (bytes > avail) {
                char need[32], have[32];
                return aj_error_set(ret_error, -ENOSPC,
                                    "The changes need %s in the workspace and its filesystem has %s free "
                                    "(for users: root's reserve is not counted on); nothing was applied",
                                    aj_format_bytes(bytes, need, sizeof(need)),
                                    aj_format_bytes(avail, have, sizeof(have)));
        }
        /* f_files 0: no fixed number of inodes (btrfs). */
        if (sv.f_files > 0 && inodes > (uint64_t)sv.f_favail)
                return aj_error_set(ret_error, -ENOSPC,
                                    "The changes make %llu entries in the workspace and its filesystem has room for "
                                    "%llu more; nothing was applied",
                                    (unsigned long long)inodes, (unsigned long long)sv.f_favail);
        return 0;
}

/* Before changing anything: every lower directory a change removes (deleted, replaced,
 * a file or symlink in its place) holds no mount point. Found half way, the commit
 * stopped there, what came before it applied and the directory half emptied. */
static int check_removals(const Commit *cm, const Changes *ch, AjError *ret_error)
{
        char parent[PATH_MAX];
        for (size_t i = 0; i < ch->n; i++) {
                const AjWsChange *c = &ch->v[i];
                if (c->kind == AJ_WS_ADDED || c->skipped || (c->kind == AJ_WS_MODIFIED && c->type == S_IFDIR))
                        continue;
                const char *slash = strrchr(c->path, '/');
                size_t plen = slash ? (size_t)(slash - c->path) : 0;
                memcpy(parent, c->path, plen);
                parent[plen] = 0;
                _cleanup_close_ int lparent_fd = open_beneath(cm->lower_fd, parent);
                struct stat st;
                /* No directory there: nothing to remove (or apply_one says what is wrong). */
                if (lparent_fd < 0 || fstatat(lparent_fd, slash ? slash + 1 : c->path, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                int r = remove_tree_at(lparent_fd, slash ? slash + 1 : c->path, c->kind == AJ_WS_REPLACED, true);
                if (r < 0) {
                        _cleanup_free_ char *shown = aj_printable_dup(c->path, strlen(c->path), 0);
                        return aj_error_set(ret_error, r,
                                            "Cannot apply '%s': the directory it removes from the workspace %s "
                                            "(%s); nothing was applied",
                                            shown ?: "?",
                                            r == -EXDEV ? "is or holds a mount point, which commit never crosses"
                                                        : "cannot be looked through",
                                            strerror(-r));
                }
        }
        return 0;
}

/* Before changing anything: no change is at or below a mount point in the workspace. The
 * agent's overlay showed the directory under the mount; what is mounted there (a host
 * directory bound into the workspace, root's) it never saw, and a commit wrote its files
 * there, replaced files it had not seen and changed the mounted directory's mode. */
static int check_mounts(const Changes *ch, AjError *ret_error)
{
        for (size_t i = 0; i < ch->n; i++) {
                const AjWsChange *c = &ch->v[i];
                if (!c->mount_at || c->skipped)
                        continue;
                _cleanup_free_ char *shown = aj_printable_dup(c->path, strlen(c->path), 0);
                _cleanup_free_ char *mount = aj_printable_dup(c->path, c->mount_at, 0);
                return aj_error_set(ret_error, -EXDEV,
                                    "Cannot apply '%s': '%s' in the workspace is a mount point: the run saw the directory "
                                    "under it, not what is mounted there, and commit never writes across a mount "
                                    "(unmount it to apply the changes to that directory); nothing was applied",
                                    shown ?: "?", mount ?: "?");
        }
        return 0;
}

/* Is `path` at or below `dir` (a path of the list)? */
static bool path_below(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

/* git's own files (git_code) without a decision: -EPERM naming the first. Left out on
 * request, with whatever is below a directory left out (its contents would have no
 * parent): taken off the list before anything is checked or applied. */
static int git_code_decide(Changes *ch, unsigned flags, AjWsStats *stats, AjError *ret_error)
{
        size_t n_git = 0;
        const char *first = NULL;
        for (size_t i = 0; i < ch->n; i++)
                if (ch->v[i].git_code && n_git++ == 0)
                        first = ch->v[i].path;
        if (n_git == 0)
                return 0;
        if (!(flags & (AJ_WS_COMMIT_INCLUDE_GIT | AJ_WS_COMMIT_EXCLUDE_GIT))) {
                _cleanup_free_ char *shown = aj_printable_dup(first, strlen(first), AJ_ESCAPE_QUOTE);
                return aj_error_set(ret_error, -EPERM,
                                    "%zu change%s to git's own files (first: %s), which git on this host may run code "
                                    "from (hooks, core.fsmonitor...); nothing was applied",
                                    n_git, n_git == 1 ? "" : "s", shown ?: "?");
        }
        if (flags & AJ_WS_COMMIT_INCLUDE_GIT) {
                stats->git_code = n_git;
                return 0;
        }
        _cleanup_free_ bool *drop = calloc(ch->n, sizeof(bool));
        if (!drop)
                return -ENOMEM;
        const char *dropped_dir = NULL; /* sorted: a directory comes right before its contents */
        for (size_t i = 0; i < ch->n; i++) {
                const AjWsChange *c = &ch->v[i];
                bool below = dropped_dir && path_below(c->path, dropped_dir);
                drop[i] = c->git_code || below;
                if (drop[i] && !below && S_ISDIR(c->type))
                        dropped_dir = c->path;
        }
        size_t kept = 0;
        for (size_t i = 0; i < ch->n; i++) {
                if (!drop[i]) {
                        ch->v[kept++] = ch->v[i];
                        continue;
                }
                stats->git_excluded++;
                free(ch->v[i].path);
                free(ch->v[i].note);
                free(ch->v[i].target);
        }
        ch->n = kept;
        return 0;
}

int aj_ws_commit(int upper_fd, int lower_fd, uint64_t since_ns, unsigned flags, AjWsStats *ret_stats,
                 AjError *ret_error)
{
        _cleanup_(changes_done) Changes ch = { 0 };
        bool force = flags & AJ_WS_COMMIT_FORCE;
        int r = aj_ws_diff(upper_fd, lower_fd, since_ns, &ch.v, &ch.n, ret_error);
        if (r < 0)
                return r;

        size_t conflicts = 0;
        const char *first = NULL;
        for (size_t i = 0; i < ch.n; i++)
                if (ch.v[i].conflict && conflicts++ == 0)
                        first = ch.v[i].path;
        if (conflicts > 0 && !force) {
                _cleanup_free_ char *shown = aj_printable_dup(first, strlen(first), 0);
                return aj_error_set(ret_error, -EBUSY,
                                    "%zu change%s conflict%s with changes made to the workspace during the run (first: '%s'); "
                                    "nothing was applied",
                                    conflicts, conflicts == 1 ? "" : "s", conflicts == 1 ? "s" : "", shown ?: "?");
        }

        AjWsStats stats = { 0 };
        r = git_code_decide(&ch, flags, &stats, ret_error);
        if (r < 0)
                return r;

        struct stat root;
        if (fstat(lower_fd, &root) < 0)
                return aj_error_set(ret_error, -errno, "Failed to stat the workspace: %m");
        Commit cm = { .upper_fd = upper_fd, .lower_fd = lower_fd, .uid = root.st_uid, .gid = root.st_gid };

        r = check_mounts(&ch, ret_error);
        if (r < 0)
                return r;
        r = check_lower_dirs(&cm, &ch, ret_error);
        if (r < 0)
                return r;
        r = check_room(lower_fd, &ch, ret_error);
        if (r < 0)
                return r;
        r = check_removals(&cm, &ch, ret_error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ch.n; i++) {
                const AjWsChange *c = &ch.v[i];
                if (c->skipped) {
                        stats.skipped++;
                        continue;
                }
                const char *what = "apply to the workspace";
                r = apply_one(&cm, c, &what);
                if (r < 0) {
                        stats.apply_failed = true;
                        if (ret_stats)
                                *ret_stats = stats;
                        _cleanup_free_ char *shown = aj_printable_dup(c->path, strlen(c->path), 0);
                        return aj_error_set(ret_error, r,
                                            "Failed to %s '%s': %s (%zu of %zu changes applied before it)", what,
                                            shown ?: "?", strerror(-r),
                                            stats.added + stats.modified + stats.deleted + stats.replaced, ch.n);
                }
                stats.odd_names += !aj_printable_as_is(c->path, strlen(c->path));
                stats.outside += c->outside;
                stats.writable_by_all += c->has_mode && (c->mode & S_IWOTH);
                switch (c->kind) {
                case AJ_WS_ADDED:
                        stats.added++;
                        break;
                case AJ_WS_MODIFIED:
                        stats.modified++;
                        break;
                case AJ_WS_DELETED:
                        stats.deleted++;
                        break;
                case AJ_WS_REPLACED:
                        stats.replaced++;
                        break;
                }
        }
        if (ret_stats)
                *ret_stats = stats;
        return 0;
}
