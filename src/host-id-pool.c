/* SPDX-License-Identifier: Apache-2.0 */
#include "host-id-pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/strv.h"

/* The prefix of the line that names the run's directory: "/@/var/lib/agentjail/runs/ID", a
 * path that is not there, which an agentjail that reads every line as a directory (before
 * the line was written) passes over as one gone, rather than keep the slot for good. */
#define RUN_DIR_MARK "/@"

/* What frees a slot that keeps an ended run's cgroup (runs.h aj_run_reap, aj_run_reap_orphans). */
#define PRUNE_ADVICE                                                                                   \
        "'agentjail prune', as root, kills them in a dead run's cgroup and removes it, and removes a " \
        "cgroup no run directory leads to any more (its slot's file names it) once they are gone"

/* `path` is a directory that only we can change (not a symlink, nobody else may write to
 * it): whoever could would swap the lock files and have two runs hold the same slot. */
static int check_dir(int fd, const char *path, AjError *ret_error)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return aj_error_set(ret_error, -errno, "cannot stat the host id pool's directory '%s': %m", path);
        const char *problem = aj_runtime_root_problem(&st, geteuid(), false);
        if (problem)
                return aj_error_set(ret_error, -EPERM,
                                    "refusing the host id pool's directory '%s': %s (owner uid %u, mode %04o); "
                                    "its lock files keep two runs from sharing host ids, so it must be root's alone",
                                    path, problem, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return 0;
}

/* Opens `dir` (making it and its parent if need be: the parent as the runtime root is
 * made, 0711, the pool 0700), checked both. The directories exist after the first run:
 * tried first, an open and an fstat each. */
static int open_pool_dir(const char *dir, AjError *ret_error)
{
        const char *slash = strrchr(dir, '/');
        if (!slash || slash == dir || !slash[1])
                return aj_error_set(ret_error, -EINVAL, "'%s': not an absolute path under a directory", dir);
        _cleanup_free_ char *parent = strndup(dir, (size_t)(slash - dir));
        if (!parent)
                return -ENOMEM;
        const char *leaf = slash + 1;
        int r;
        _cleanup_close_ int pfd = open(parent, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (pfd < 0 && errno == ENOENT) {
                r = aj_mkdir_p(parent, 0711);
                if (r < 0)
                        return aj_error_set(ret_error, r, "cannot create '%s': %s", parent, strerror(-r));
                pfd = open(parent, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (pfd < 0)
                return aj_error_set(ret_error, -errno, "cannot open '%s': %m", parent);
        if ((r = check_dir(pfd, parent, ret_error)) < 0)
                return r;
        _cleanup_close_ int fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
                if (mkdirat(pfd, leaf, 0700) < 0 && errno != EEXIST)
                        return aj_error_set(ret_error, -errno, "cannot create '%s': %m", dir);
                fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return aj_error_set(ret_error, -errno, "cannot open '%s': %m", dir);
        if ((r = check_dir(fd, dir, ret_error)) < 0)
                return r;
        return TAKE_FD(fd);
}

/* The lock on id's file: 0 and the fd in *ret_fd, -EWOULDBLOCK when another holds it in a
 * conflicting mode. CLOEXEC: nothing the supervisor execs keeps the slot. */
static int lock_id(int dfd, const char *dir, unsigned long id, int how, int *ret_fd, AjError *ret_error)
{
        char name[24];
        snprintf(name, sizeof(name), "%lu", id);
        _cleanup_close_ int fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
        if (fd < 0)
                return aj_error_set(ret_error, -errno, "cannot open '%s/%s': %m", dir, name);
        if (flock(fd, how | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return -EWOULDBLOCK;
                return aj_error_set(ret_error, -errno, "cannot lock '%s/%s': %m", dir, name);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Whether the slot's last holder left its jail behind: 1 when a directory its file names
 * (aj_host_id_lease_mark) is still there, 0 when none is, -errno when that cannot be told;
 * *ret_len the file's length; those directories in *ret_dirs when it is not NULL (every one,
 * else the first), and the run directory its RUN_DIR_MARK line names in *ret_run_dir (NULL
 * none).
 * Only whole lines count: a supervisor killed while writing one has its earlier ones named,
 * and nothing in the directory of a line it had not finished. Empty lines are a mark's
 * padding. */
static int slot_dirs(int fd, size_t *ret_len, char ***ret_dirs, char **ret_run_dir)
{
        char buf[AJ_HOST_ID_MARK_MAX + 1];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret_len = (size_t)n;
        _cleanup_(aj_strv_freep) char **dirs = NULL;
        _cleanup_free_ char *run_dir = NULL;
        char *line = buf;
        for (char *nl; (nl = strchr(line, '\n')); line = nl + 1) {
                *nl = 0;
                if (!line[0])
                        continue;
                if (strncmp(line, RUN_DIR_MARK "/", strlen(RUN_DIR_MARK) + 1) == 0) {
                        /* Whose directories they are: no process is in it. */
                        if (ret_run_dir && !run_dir && !(run_dir = strdup(line + strlen(RUN_DIR_MARK))))
                                return -ENOMEM;
                        continue;
                }
                if (line[0] != '/')
                        return -EBADMSG; /* not ours: nothing says what it held */
                struct stat st;
                if (lstat(line, &st) < 0) {
                        if (errno != ENOENT && errno != ENOTDIR)
                                return -errno;
                        continue;
                }
                if (!ret_dirs)
                        return 1;
                if (aj_strv_push(&dirs, line) < 0)
                        return -ENOMEM;
        }
        /* A file longer than a mark may be (a line cut at the bound) is not ours either. */
        if ((size_t)n == sizeof(buf) - 1)
                return -EFBIG;
        if (!dirs)
                return 0;
        *ret_dirs = TAKE_PTR(dirs);
        *ret_run_dir = TAKE_PTR(run_dir);
        return 1;
}

static int slot_left(int fd, size_t *ret_len) { return slot_dirs(fd, ret_len, NULL, NULL); }

int aj_host_id_pool_take(const char *dir, unsigned long n_slots, AjHostIdLease *ret, unsigned long *ret_id,
                         AjError *ret_error)
{
        _cleanup_close_ int dfd = open_pool_dir(dir, ret_error);
        if (dfd < 0)
                return dfd;
        if (n_slots > AJ_HOST_ID_POOL_SIZE)
                n_slots = AJ_HOST_ID_POOL_SIZE;
        /* Lowest free first: an open and a flock per run already live, and the directory
         * holds no more files than runs ever lived at once. */
        unsigned long kept = 0;
        for (unsigned long slot = 0; slot < n_slots; slot++) {
                _cleanup_close_ int fd = -1;
                int r = lock_id(dfd, dir, AJ_HOST_ID_POOL_FIRST + slot, LOCK_EX, &fd, ret_error);
                if (r == -EWOULDBLOCK)
                        continue;
                if (r < 0)
                        return r;
                /* Unlocked, but its last run's processes may still run as these ids. Its
                 * lines name only directories gone now: left until this run's mark writes
                 * over them (no truncation, a metadata write, on the start's path). */
                size_t len = 0;
                if (slot_left(fd, &len) != 0) {
                        kept++;
                        continue;
                }
                *ret = (AjHostIdLease){ .fd = { TAKE_FD(fd), -1 }, .own = true, .mark_len = len };
                *ret_id = AJ_HOST_ID_POOL_FIRST + slot;
                return 0;
        }
        return aj_error_set(ret_error, -EUSERS,
                            "every one of the %lu host id slots (%lu-%lu, '%s') is held by a live run or a profile "
                            "naming its ids, or keeps an ended run's cgroup (%lu of them: processes of that run may "
                            "still run as its ids; " PRUNE_ADVICE ")",
                            n_slots, AJ_HOST_ID_POOL_FIRST, AJ_HOST_ID_POOL_FIRST + n_slots - 1, dir, kept);
}

/* "<prefix><line>\n" at text + *len; -EINVAL for a path that is not absolute or holds a
 * newline, -E2BIG past the bound. */
static int mark_line(char *text, size_t *len, const char *prefix, const char *path)
{
        size_t p = strlen(prefix), n = strlen(path);
        if (path[0] != '/' || strchr(path, '\n'))
                return -EINVAL;
        if (p + n + 1 > AJ_HOST_ID_MARK_MAX - *len)
                return -E2BIG;
        memcpy(text + *len, prefix, p);
        memcpy(text + *len + p, path, n);
        text[*len + p + n] = '\n';
        *len += p + n + 1;
        return 0;
}

int aj_host_id_lease_mark(AjHostIdLease *l, const char *run_dir, char *const *paths)
{
        if (!l->own || l->fd[0] < 0)
                return 0;
        char text[AJ_HOST_ID_MARK_MAX];
        size_t len = 0;
        int r = run_dir ? mark_line(text, &len, RUN_DIR_MARK, run_dir) : 0;
        for (char *const *p = paths; r >= 0 && p && *p; p++)
                r = mark_line(text, &len, "", *p);
        if (r < 0)
                return r;
        /* Over what is there (this run's own earlier lines, a prefix of these, or the last
         * run's, naming directories gone), in one write: what is longer than these is padded
         * with empty lines rather than cut (ftruncate, a metadata write on the start's path). */
        size_t total = len > l->mark_len ? len : l->mark_len;
        if (total >= sizeof(text)) /* a full file is one slot_left() cannot tell from a longer */
                return -E2BIG;
        memset(text + len, '\n', total - len);
        ssize_t w = pwrite(l->fd[0], text, total, 0);
        if (w < 0)
                return -errno;
        if ((size_t)w != total)
                return -EIO;
        l->mark_len = total;
        return 0;
}

int aj_host_id_pool_share(const char *dir, uid_t uid, gid_t gid, AjHostIdLease *ret, AjError *ret_error)
{
        unsigned long ids[2] = { uid, gid };
        size_t n = 0;
        for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
                if (aj_host_id_in_pool(ids[i]) && (n == 0 || ids[0] != ids[i]))
                        ids[n++] = ids[i];
        _cleanup_(aj_host_id_lease_release) AjHostIdLease l = AJ_HOST_ID_LEASE_INIT;
        if (n == 0) {
                *ret = l;
                return 0;
        }
        _cleanup_close_ int dfd = open_pool_dir(dir, ret_error);
        if (dfd < 0)
                return dfd;
        for (size_t i = 0; i < n; i++) {
                int r = lock_id(dfd, dir, ids[i], LOCK_SH, &l.fd[i], ret_error);
                if (r == -EWOULDBLOCK)
                        return aj_error_set(ret_error, -EBUSY,
                                            "host id %lu is in the pool of per-run ids (%lu-%lu) and a run holds it "
                                            "as its own ('%s/%lu')",
                                            ids[i], AJ_HOST_ID_POOL_FIRST,
                                            AJ_HOST_ID_POOL_FIRST + AJ_HOST_ID_POOL_SIZE - 1, dir, ids[i]);
                if (r < 0)
                        return r;
                /* Unheld, but an ended run's processes may still run as these ids (its cgroup
                 * is there): not shared with them, as the pool does not hand the slot out. */
                size_t len = 0;
                r = slot_left(l.fd[i], &len);
                if (r != 0)
                        return aj_error_set(ret_error, -EBUSY,
                                            "host id %lu is in the pool of per-run ids and its slot ('%s/%lu') keeps "
                                            "an ended run's cgroup%s%s%s (processes of that run may still run as its "
                                            "ids; " PRUNE_ADVICE ")",
                                            ids[i], dir, ids[i], r < 0 ? " (or cannot be read: " : "",
                                            r < 0 ? strerror(-r) : "", r < 0 ? ")" : "");
        }
        *ret = l;
        l = (AjHostIdLease)AJ_HOST_ID_LEASE_INIT;
        return 0;
}

void aj_host_id_lease_release(AjHostIdLease *l)
{
        l->own = false;
        for (size_t i = 0; i < ARRAY_SIZE(l->fd); i++)
                if (l->fd[i] >= 0) {
                        close(l->fd[i]);
                        l->fd[i] = -1;
                }
}

int aj_host_id_pool_kept(const char *dir, AjHostIdKeptFn fn, void *userdata, AjError *ret_error)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : aj_error_set(ret_error, -errno, "cannot open '%s': %m", dir);
        int r = check_dir(dfd, dir, ret_error);
        if (r < 0)
                return r;
        int lfd = dup(dfd);
        DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
        if (!d) {
                if (lfd >= 0)
                        close(lfd);
                return aj_error_set(ret_error, -errno, "cannot list '%s': %m", dir);
        }
        struct dirent *de;
        while (r >= 0 && (de = readdir(d))) {
                unsigned long id;
                char *end;
                errno = 0;
                id = strtoul(de->d_name, &end, 10);
                if (errno || *end || end == de->d_name || de->d_name[0] == '0' || !aj_host_id_in_pool(id))
                        continue;
                _cleanup_close_ int fd = -1;
                r = lock_id(dfd, dir, id, LOCK_EX, &fd, ret_error);
                if (r == -EWOULDBLOCK) {
                        r = 0; /* a live run's, or a profile's naming it */
                        continue;
                }
                if (r < 0)
                        break;
                size_t len;
                _cleanup_(aj_strv_freep) char **dirs = NULL;
                _cleanup_free_ char *run_dir = NULL;
                /* One that cannot be read, or is not ours, stays kept (the pool's rule). */
                r = slot_dirs(fd, &len, &dirs, &run_dir) > 0 ? fn(id, run_dir, dirs, userdata) : 0;
        }
        closedir(d);
        return r < 0 ? r : 0;
}
