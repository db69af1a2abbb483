/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/path.h"

static char *xdg_dir(const char *var, const char *home_suffix, const char *leaf)
{
        const char *v = getenv(var);
        if (v && v[0] == '/')
                return aj_path_join(v, leaf);
        if (!home_suffix)
                return NULL;
        const char *home = getenv("HOME");
        if (!home || home[0] != '/')
                return NULL;
        char *r;
        if (asprintf(&r, "%s/%s/%s", home, home_suffix, leaf) < 0)
                return NULL;
        return r;
}

int aj_paths_resolve(AjPaths *ret)
{
        AjPaths p = { 0 };
        const char *s = getenv("AGENTJAIL_STATE_DIR");
        const char *r = getenv("AGENTJAIL_RUNTIME_DIR");
        bool root = geteuid() == 0;

        if (s && *s)
                p.state_root = strdup(s);
        else if (root)
                p.state_root = strdup("/var/lib/agentjail");
        else
                p.state_root = xdg_dir("XDG_STATE_HOME", ".local/state", "agentjail");

        if (r && *r)
                p.runtime_root = strdup(r);
        else if (root)
                p.runtime_root = strdup("/run/agentjail");
        else {
                p.runtime_root = xdg_dir("XDG_RUNTIME_DIR", NULL, "agentjail");
                if (!p.runtime_root) {
                        p.runtime_in_tmp = true;
                        if (asprintf(&p.runtime_root, "/tmp/agentjail-%u", (unsigned)geteuid()) < 0)
                                p.runtime_root = NULL;
                }
        }
        if (!p.state_root || !p.runtime_root) {
                aj_paths_done(&p);
                return -ENOENT;
        }
        *ret = p;
        return 0;
}

void aj_paths_done(AjPaths *p)
{
        free(p->state_root);
        free(p->runtime_root);
        p->state_root = p->runtime_root = NULL;
}

int aj_run_id_new(char ret[AJ_RUN_ID_LEN + 1])
{
        unsigned char raw[AJ_RUN_ID_LEN / 2];
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
                return -errno;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(ret + 2 * i, 3, "%02x", raw[i]);
        return 0;
}

/* lstat semantics: a symlink is described, never followed. */
static int stat_nofollow(const char *path, struct stat *ret)
{
        _cleanup_close_ int fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                return fstat(fd, ret) < 0 ? -errno : 0;
        if ((errno == ELOOP || errno == ENOTDIR) && lstat(path, ret) == 0)
                return 0;
        return -errno;
}

/* Why a directory above the state root lets someone else replace what is in it (NULL:
 * nothing): another owner than `owner` or root (anyone, for root reading), or writable by
 * others without the sticky bit (/tmp's, which keeps others from renaming ours). */
static const char *parent_problem(const struct stat *st, uid_t owner, bool any_owner)
{
        if (!any_owner && st->st_uid != owner && st->st_uid != 0)
                return "it belongs to another user";
        if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
                return "other users can write to it";
        return NULL;
}

/* Every directory above `root` (its real path: symlinked parents are fine), up to "/". */
static int parents_check(const char *root, uid_t owner, bool any_owner, AjError *ret_error)
{
        const char *last = strrchr(root, '/');
        _cleanup_free_ char *copy = !last ? strdup(".") : strndup(root, last == root ? 1 : (size_t)(last - root));
        if (!copy)
                return -ENOMEM;
        _cleanup_free_ char *dir = realpath(copy, NULL);
        if (!dir)
                return aj_error_set(ret_error, -errno, "cannot use the state directory '%s': %s", root,
                                    strerror(errno));
        for (;;) {
                struct stat st;
                if (lstat(dir, &st) < 0)
                        return aj_error_set(ret_error, -errno, "cannot use the state directory '%s': '%s': %s", root,
                                            dir, strerror(errno));
                const char *problem = parent_problem(&st, owner, any_owner);
                if (problem)
                        return aj_error_set(ret_error, -EPERM,
                                            "refusing the state directory '%s': '%s' above it: %s (owner uid %u, "
                                            "mode %04o), so the state directory could be swapped for another's "
                                            "(forged records); put it under directories only you and root can write",
                                            root, dir, problem, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
                if (streq(dir, "/"))
                        return 0;
                char *slash = strrchr(dir, '/');
                *(slash == dir ? slash + 1 : slash) = '\0';
        }
}

int aj_state_root_check(const AjPaths *paths, AjStateUse use, AjError *ret_error)
{
        bool create = use == AJ_STATE_RUN;
        const char *root = paths->state_root;
        uid_t euid = geteuid();
        struct stat st;
        int r = stat_nofollow(root, &st);
        if (r == -ENOENT && create) {
                r = aj_mkdir_p(root, euid == 0 ? 0750 : 0700);
                if (r >= 0)
                        r = stat_nofollow(root, &st);
        }
        if (r == -ENOENT && !create)
                return 0; /* no runs yet */
        if (r < 0)
                return aj_error_set(ret_error, r, "cannot use the state directory '%s': %s", root, strerror(-r));
        /* Runs write only into their own. Reading, root's is trusted too, and root may read
         * a user's (AGENTJAIL_STATE_DIR=/home/u/...); but not act on it: the user wrote its
         * records, and a run.json naming `rollback.exec: ["sh", "-c", ...]` ran that as root. */
        uid_t owner = create                        ? euid
                      : use == AJ_STATE_ACT         ? (st.st_uid == 0 ? 0 : euid)
                      : euid != 0 && st.st_uid != 0 ? euid
                                                    : st.st_uid;
        const char *problem = aj_runtime_root_problem(&st, owner, false);
        /* Reading as root, any user's directories lead to a user's state dir. */
        if (!problem)
                return parents_check(root, owner, use == AJ_STATE_READ && euid == 0, ret_error);
        if (use == AJ_STATE_ACT && st.st_uid != owner)
                return aj_error_set(ret_error, -EPERM,
                                    "refusing to act on the records in the state directory '%s': they are uid %u's, "
                                    "who could have written in them what this command would then do with your "
                                    "rights (a rollback.exec to run, a workspace to write); run it as that user",
                                    root, (unsigned)st.st_uid);
        return aj_error_set(ret_error, -EPERM,
                            "refusing the state directory '%s': %s (owner uid %u, mode %04o); it holds the runs' "
                            "records, undo records and the seccomp cache, so it must be yours alone: make it so, or "
                            "set AGENTJAIL_STATE_DIR",
                            root, problem, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
}

int aj_run_dir_create(const AjPaths *paths, const char *id, char **ret_dir, int *ret_lock_fd)
{
        /* Rootless, the group is the operator's primary group, which may be shared ("users"):
         * with 0750 its members read every run's output, events and run.json. Root's runs
         * keep root's group (XDG's dirs are 0700 too, ~/.local/state and all). */
        mode_t mode = geteuid() == 0 ? 0750 : 0700;
        _cleanup_free_ char *runs = aj_path_join(paths->state_root, "runs");
        if (!runs)
                return -ENOMEM;
        int r = aj_mkdir_p(runs, mode);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = aj_path_join(runs, id), *making = NULL;
        if (!dir || asprintf(&making, "%s/" AJ_RUN_DIR_MAKING_PREFIX "%s", runs, id) < 0)
                return -ENOMEM;
        if (mkdir(making, mode) < 0)
                return -errno;
        /* Its life's lock, shared, taken before anything is in it: a starting run has no
         * run.json yet and answers no control socket, so nothing else says it lives. Taken
         * under a name no run has, then renamed to the run's: `ps` and `prune` probe the
         * lock exclusively (a run "lost" in start-up), and one that came between a mkdir
         * under the run's name and this flock failed the run's start, or saw it lost and
         * removed it. */
        int fd = open(making, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) < 0 ||
            renameat2(AT_FDCWD, making, AT_FDCWD, dir, RENAME_NOREPLACE) < 0) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                (void)rmdir(making);
                return r;
        }
        *ret_dir = TAKE_PTR(dir);
        *ret_lock_fd = fd;
        return 0;
}

void aj_run_dir_unhold(int *lock_fd, bool watchdog_keeps)
{
        /* The lock is the open file description's, which the watchdogs forked since share
         * and may keep a moment longer: let go of it for all of them, now (unless one of them
         * is still at work for the run). */
        aj_lock_release(*lock_fd, watchdog_keeps);
        *lock_fd = -1;
}

char *aj_runtime_dir_path(const AjPaths *paths, const char *id) { return aj_path_join(paths->runtime_root, id); }

const char *aj_runtime_root_problem(const struct stat *st, uid_t uid, bool exact_0700)
{
        if (S_ISLNK(st->st_mode))
                return "it is a symlink";
        if (!S_ISDIR(st->st_mode))
                return "it is not a directory";
        if (st->st_uid != uid)
                return "it belongs to another user";
        if (exact_0700 && (st->st_mode & 07777) != 0700)
                return "its mode is not 0700";
        if (st->st_mode & (S_IWGRP | S_IWOTH))
                return "other users can write to it";
        return NULL;
}

/* The check of a runtime root that is there: 0 when it is ours alone, -ENOENT when there is
 * none (no ret_error), else -errno (-EPERM) with ret_error saying what is wrong. Only after
 * prepare's mkdir: one not there may be another user's by the time it is used. */
static int runtime_root_check(const AjPaths *paths, AjError *ret_error)
{
        const char *root = paths->runtime_root;
        struct stat st;
        /* The last component is never followed: AGENTJAIL_RUNTIME_DIR=/dev/shm/x (doctor's
         * advice: a tmpfs) that another user made a symlink to a directory of ours passed
         * the owner check, and that user could point it at their own directory later. */
        _cleanup_close_ int fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r = fd < 0 ? -errno : fstat(fd, &st) < 0 ? -errno : 0;
        if ((r == -ELOOP || r == -ENOTDIR) && lstat(root, &st) == 0)
                r = 0; /* a symlink or a file where the directory should be: described below */
        if (r == -ENOENT)
                return r; /* nothing in it */
        if (r < 0)
                return aj_error_set(ret_error, r, "cannot use the runtime directory '%s': %s", root, strerror(-r));
        const char *problem = aj_runtime_root_problem(&st, geteuid(), paths->runtime_in_tmp);
        if (!problem)
                return 0;
        return aj_error_set(ret_error, -EPERM,
                            "refusing the runtime directory '%s': %s (owner uid %u, mode %04o); it holds the runs' "
                            "control sockets, so it must be yours alone: remove it, or set XDG_RUNTIME_DIR or "
                            "AGENTJAIL_RUNTIME_DIR",
                            root, problem, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
}

int aj_runtime_root_prepare(const AjPaths *paths, AjError *ret_error)
{
        const char *root = paths->runtime_root;
        /* In a world-writable /tmp: create it ourselves or find someone else's. The sticky
         * bit keeps a directory we own from being renamed or replaced later. */
        int r = paths->runtime_in_tmp ? (mkdir(root, 0700) < 0 && errno != EEXIST ? -errno : 0)
                                      : aj_mkdir_p(root, 0711);
        if (r < 0 && r != -ENOTDIR && r != -EEXIST && r != -ELOOP) /* those: described by the check */
                return aj_error_set(ret_error, r, "cannot create the runtime directory '%s': %s", root, strerror(-r));
        r = runtime_root_check(paths, ret_error);
        if (r == -ENOENT)
                return aj_error_set(ret_error, r, "cannot create the runtime directory '%s': %s", root, strerror(-r));
        return r;
}

int aj_runtime_dir_create(const AjPaths *paths, const char *id, char **ret_dir)
{
        int r = aj_mkdir_p(paths->runtime_root, 0711);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = aj_runtime_dir_path(paths, id);
        if (!dir)
                return -ENOMEM;
        if (mkdir(dir, 0700) < 0)
                return -errno;
        *ret_dir = TAKE_PTR(dir);
        return 0;
}

int aj_runtime_dir_hold(const char *dir, bool exclusive, int *ret_fd)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_root_mountpoint(const AjPaths *paths, char **ret)
{
        /* One empty directory for every run: each jail mounts its root there inside its own
         * (private) mount namespace, so runs never see each other's, and the host only ever
         * sees an empty directory. Shared, it costs no mkdir/rmdir per run. */
        _cleanup_free_ char *p = aj_path_join(paths->runtime_root, ".root");
        if (!p)
                return -ENOMEM;
        int r = aj_mkdir_p(p, 0700);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

/* rmdir of DIR[/SUB] (SUB NULL: DIR itself); when it is not empty, the socket LEFT in it
 * (a run that did not get to its services' end) unlinked by name and the rmdir tried again. */
static int rmdir_known(const char *dir, const char *sub, const char *left)
{
        char path[4096], sock[4096 + 32];
        snprintf(path, sizeof(path), "%s%s%s", dir, sub ? "/" : "", sub ?: "");
        if (rmdir(path) == 0 || errno == ENOENT)
                return 0;
        if (errno != ENOTEMPTY && errno != EEXIST)
                return -errno;
        snprintf(sock, sizeof(sock), "%s/%s", path, left);
        if (unlink(sock) < 0 && errno != ENOENT)
                return -errno;
        return rmdir(path) == 0 || errno == ENOENT ? 0 : -errno;
}

int aj_runtime_dir_remove(const char *dir)
{
        if (!dir)
                return 0;
        /* What a run leaves there is known: the directories, whose sockets the run's services
         * unlinked at their end (tried first: no unlink of what is gone, on every run's way
         * out), else those sockets by name; the tree is walked only if something else turned
         * up. */
        if (rmdir_known(dir, "jail", "broker.sock") < 0 || rmdir_known(dir, NULL, "control.sock") < 0)
                return aj_rm_rf(dir);
        return 0;
}
