/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail doctor`'s probes: the host's facts for doctor.c to judge. Each probe asks
 * the kernel the question a run would, and leaves nothing behind: the user namespace is
 * made in a child that exits, the idmapped mount is a detached clone that is closed, the
 * rootless cgroup probe removes the empty cgroup it made.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "doctor.h"
#include "host-id-pool.h"
#include "host-ids.h"
#include "ns.h"
#include "profile.h"
#include "state.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/path.h"
#include "util/syscalls.h"

#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

#define PROC_FILE_MAX (1024 * 1024)
/* The host uid the idmap probe maps the workspace's owner to: whether the filesystem takes an
 * idmapped mount does not depend on it (runs map to their own host ids, src/host-id-pool.h). */
#define PROBE_HOST_ID 100000

/* -1 when absent or unreadable. */
static long read_sysctl(const char *path)
{
        _cleanup_free_ char *s = NULL;
        if (aj_read_file(path, 64, &s, NULL) < 0)
                return -1;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        return errno || end == s ? -1 : v;
}

static char *read_trimmed(const char *dir, const char *file)
{
        _cleanup_free_ char *path = aj_path_join(dir, file);
        char *s = NULL;
        if (!path || aj_read_file(path, CG_FILE_MAX, &s, NULL) < 0)
                return NULL;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                s[--n] = '\0';
        return s;
}

/* mountinfo escapes spaces and the like as \ooo. */
static void unescape_octal(char *s)
{
        char *o = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
                    p[3] <= '7') {
                        *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *o++ = *p;
        }
        *o = '\0';
}

static bool under(const char *path, const char *mnt)
{
        size_t n = strlen(mnt);
        if (streq(mnt, "/"))
                return true;
        return strncmp(path, mnt, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The filesystem type of the mount `path` (absolute, resolved) is on: the deepest mount
 * point above it in /proc/self/mountinfo (the last one mounted when they stack). */
static char *fstype_of(const char *path)
{
        _cleanup_free_ char *mi = NULL;
        if (aj_read_file("/proc/self/mountinfo", PROC_FILE_MAX, &mi, NULL) < 0)
                return NULL;
        char *best = NULL;
        size_t best_len = 0;
        char *save = NULL;
        for (char *line = strtok_r(mi, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char mnt[4096], type[64];
                const char *dash = strstr(line, " - ");
                if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 || sscanf(dash + 3, "%63s", type) != 1)
                        continue;
                unescape_octal(mnt);
                size_t len = strlen(mnt);
                if (!under(path, mnt) || len < best_len)
                        continue;
                char *t = strdup(type);
                if (!t)
                        break;
                free(best);
                best = t;
                best_len = len;
        }
        return best;
}

/* Its own fstype, or its nearest existing ancestor's (a dir agentjail has not made yet). */
static void probe_dir(const char *path, bool exact_0700, AjDoctorDir *d)
{
        d->path = path ? strdup(path) : NULL;
        if (!d->path)
                return;
        struct stat st;
        if (lstat(path, &st) < 0)
                d->stat_err = negative_errno();
        else {
                d->uid = st.st_uid;
                d->mode = st.st_mode;
                const char *p = aj_runtime_root_problem(&st, geteuid(), exact_0700);
                d->problem = p ? strdup(p) : NULL;
        }
        _cleanup_free_ char *at = strdup(path);
        while (at && d->stat_err && !streq(at, "/") && access(at, F_OK) < 0) {
                char *slash = strrchr(at, '/');
                if (!slash)
                        break;
                if (slash == at)
                        slash[1] = '\0';
                else
                        *slash = '\0';
        }
        _cleanup_free_ char *real = at ? realpath(at, NULL) : NULL;
        d->fstype = real ? fstype_of(real) : NULL;
}

/* In a child: a user namespace, then a mount namespace in it (which needs the
 * capabilities the first gave, unless an LSM such as Ubuntu's AppArmor took them). */
static void probe_userns(AjDoctorFacts *f)
{
        int p[2];
        f->userns = f->userns_caps = -EIO;
        if (pipe2(p, O_CLOEXEC) < 0)
                return;
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                return;
        }
        if (pid == 0) {
                int res[2] = { 0, 0 };
                if (unshare(CLONE_NEWUSER) < 0)
                        res[0] = -errno;
                else if (unshare(CLONE_NEWNS) < 0)
                        res[1] = -errno;
                (void)!write(p[1], res, sizeof(res));
                _exit(0);
        }
        close(p[1]);
        int res[2];
        ssize_t n;
        do
                n = read(p[0], res, sizeof(res));
        while (n < 0 && errno == EINTR);
        close(p[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (n == (ssize_t)sizeof(res)) {
                f->userns = res[0];
                f->userns_caps = res[0] ? res[0] : res[1];
        }
}

/* A detached clone of the workspace's tree, idmapped as a run's would be, then closed:
 * no mount is made. Root only (a run idmaps only when root-started). */
static int probe_idmap(const char *ws)
{
        struct stat st;
        if (stat(ws, &st) < 0)
                return negative_errno();
        _cleanup_close_ int tree = sys_open_tree(AT_FDCWD, ws, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return negative_errno();
        _cleanup_close_ int userns = -1;
        int r = aj_userns_idmap_fd(st.st_uid, st.st_gid, PROBE_HOST_ID, PROBE_HOST_ID, &userns, NULL);
        if (r < 0)
                return r;
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns };
        if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0)
                return negative_errno();
        return 0;
}

static bool proc_filesystems_has(const char *fs)
{
        _cleanup_free_ char *s = NULL;
        if (aj_read_file("/proc/filesystems", PROC_FILE_MAX, &s, NULL) < 0)
                return false;
        size_t n = strlen(fs);
        for (char *p = s; (p = strstr(p, fs)); p += n)
                if (p > s && p[-1] == '\t' && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static void probe_v2(AjDoctorFacts *f)
{
        bool root = f->euid == 0;
        if (root)
                f->v2_base = strdup("/");
        else {
                _cleanup_free_ char *self = NULL;
                if (aj_read_file("/proc/self/cgroup", PROC_FILE_MAX, &self, NULL) >= 0)
                        (void)aj_cgroup_parse_proc_cgroup(self, NULL, &f->v2_base);
        }
        if (!f->v2_base)
                return;
        _cleanup_free_ char *dir = aj_path_join(f->v2_mount, f->v2_base);
        if (!dir)
                return;
        f->v2_controllers = read_trimmed(dir, "cgroup.controllers");
        f->v2_subtree = read_trimmed(dir, "cgroup.subtree_control");
        if (root) {
                f->v2_writable = access(dir, W_OK) == 0;
                return;
        }
        /* The question a rootless run asks: may we make a cgroup here? An empty one, removed. */
        _cleanup_free_ char *child = NULL;
        if (aj_asprintf(&child, "%s/agentjail-doctor.%d", dir, (int)getpid()) < 0)
                return;
        if (mkdir(child, 0755) == 0) {
                f->v2_writable = true;
                (void)rmdir(child);
        }
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        if (aj_cg_read_pids(aj_cg_path(dir), &pids, &n) >= 0)
                for (size_t i = 0; i < n; i++)
                        f->v2_shared = f->v2_shared || pids[i] != getpid();
}

static void probe_cgroups(AjDoctorFacts *f)
{
        AjCgroupLayout l = { 0 };
        f->cg_mode = AJ_CGROUP_MODE_NONE;
        if (aj_cgroup_layout_load(&l) < 0)
                return;
        f->cg_mode = l.mode;
        static const AjCgroupV1Controller v1[_AJ_DOCTOR_CTRL_MAX] = {
                [AJ_DOCTOR_MEMORY] = AJ_CG_V1_MEMORY,
                [AJ_DOCTOR_PIDS] = AJ_CG_V1_PIDS,
                [AJ_DOCTOR_CPU] = AJ_CG_V1_CPU,
        };
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                if (l.v1_mount[v1[i]]) {
                        f->v1_mount[i] = strdup(l.v1_mount[v1[i]]);
                        f->v1_writable[i] = access(l.v1_mount[v1[i]], W_OK) == 0;
                }
        if (l.v2_mount) {
                f->v2_mount = strdup(l.v2_mount);
                if (f->v2_mount)
                        probe_v2(f);
        }
        aj_cgroup_layout_done(&l);
}

/* The default profile's host ids (the whole pool of per-run ids unless it names its own),
 * and who else may run as any of them: a subordinate range, an account. */
static void probe_host_ids(AjDoctorFacts *f)
{
        f->host_uid = f->host_gid = (uid_t)AJ_HOST_ID_POOL_FIRST;
        f->host_id_count = AJ_HOST_ID_POOL_SIZE;
        AjProfile *p = NULL;
        if (aj_profile_load("default", &p, NULL) >= 0) {
                if (p->host_ids_set) {
                        f->host_uid = p->host_uid;
                        f->host_gid = p->host_gid;
                        f->host_id_count = 1;
                }
                aj_profile_free(p);
        }
        AjHostIdOwners o = {};
        f->host_ids_err = aj_host_id_owners_range(f->host_uid, f->host_gid, f->host_id_count, &aj_host_id_files, &o);
        f->host_uid_owner = o.uid_owner;
        f->host_gid_owner = o.gid_owner;
        f->host_id_free = o.free_id;
}

int aj_doctor_probe(const char *workspace, AjDoctorFacts *ret)
{
        AjDoctorFacts f = { .euid = geteuid() };
        struct utsname u;
        if (uname(&u) == 0)
                f.kernel = strdup(u.release);
        probe_cgroups(&f);
        probe_userns(&f);
        f.max_user_namespaces = read_sysctl("/proc/sys/user/max_user_namespaces");
        f.unprivileged_userns_clone = (int)read_sysctl("/proc/sys/kernel/unprivileged_userns_clone");
        f.apparmor_restrict = (int)read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
        f.exe = realpath("/proc/self/exe", NULL);

        struct seccomp_notif_sizes sizes;
        f.seccomp_notify = sys_seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0 ? negative_errno() : 0;

        f.workspace = realpath(workspace ? workspace : ".", NULL);
        if (!f.workspace) {
                int r = negative_errno();
                aj_doctor_facts_done(&f);
                return r;
        }
        f.ws_fstype = fstype_of(f.workspace);
        f.idmap = f.euid == 0 ? probe_idmap(f.workspace) : -EPERM;
        f.overlayfs = proc_filesystems_has("overlay");
        if (!f.overlayfs && f.euid == 0) {
                /* Not loaded yet: a run's fsopen() loads the module, and so does this one. */
                _cleanup_close_ int fs = sys_fsopen("overlay", FSOPEN_CLOEXEC);
                f.overlayfs = fs >= 0;
        }
        int abi = sys_landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        f.landlock_abi = abi < 0 ? negative_errno() : abi;

        probe_host_ids(&f);
        AjPaths paths = { 0 };
        if (aj_paths_resolve(&paths) >= 0) {
                probe_dir(paths.state_root, false, &f.state);
                /* What runs refuse besides the dir itself: a directory above it others may
                 * write or own (aj_state_root_check). */
                _cleanup_(aj_error_clear) AjError st_err = {};
                if (!f.state.stat_err && !f.state.problem &&
                    aj_state_root_check(&paths, AJ_STATE_RUN, &st_err) == -EPERM)
                        f.state.problem = strdup(aj_error_text(&st_err, -EPERM));
                probe_dir(paths.runtime_root, paths.runtime_in_tmp, &f.runtime);
                f.runtime_in_tmp = paths.runtime_in_tmp;
                aj_paths_done(&paths);
        }
        *ret = f;
        return 0;
}

/* Whether this process runs under an AppArmor profile (such as the one doctor prints);
 * the restriction is then that profile's business, not a missing profile. */
static bool apparmor_confined(void)
{
        _cleanup_free_ char *label = NULL;
        if (aj_read_file("/proc/self/attr/apparmor/current", 4096, &label, NULL) < 0 &&
            aj_read_file("/proc/self/attr/current", 4096, &label, NULL) < 0)
                return false;
        return strncmp(label, "unconfined", strlen("unconfined")) != 0;
}

const char *aj_doctor_userns_hint_here(int err)
{
        int aa = (int)read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
        if (aa == 1 && apparmor_confined())
                aa = 0;
        return aj_doctor_userns_hint(err, geteuid(), aa, read_sysctl("/proc/sys/user/max_user_namespaces"),
                                     (int)read_sysctl("/proc/sys/kernel/unprivileged_userns_clone"));
}
