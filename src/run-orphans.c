/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cgroups no run directory leads to: a run whose supervisor and watchdog were both killed (or
 * whose watchdog gave up) and whose run directory was deleted left its cgroup, and with it its
 * host id slot taken (host-id-pool.h); no `prune` of a state directory finds it by its runs.
 * The slot's file names the directories: found from there, and removed once empty, with the
 * run's runtime dir.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "host-id-pool.h"
#include "runs.h"
#include "state.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/strv.h"

void aj_run_orphans_free(AjRunOrphan *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++) {
                aj_strv_free(v[i].cgroup);
                free(v[i].runtime_dir);
        }
        free(v);
}

typedef struct {
        bool dry_run;
        const AjPaths *paths;
        AjRunOrphan *v;
        size_t n;
} Orphans;

/* The run id of a directory an agentjail run's cgroup would have: ".../agentjail/<id>";
 * NULL for any other. */
static const char *cgroup_run_id(const char *dir)
{
        const char *leaf = strrchr(dir, '/');
        static const char parent[] = "/agentjail";
        if (!leaf || !aj_run_id_valid(leaf + 1) || (size_t)(leaf - dir) < strlen(parent) ||
            strncmp(leaf - strlen(parent), parent, strlen(parent)) != 0)
                return NULL;
        return leaf + 1;
}

/* The slot's directories are one run's cgroup, as aj_cgroup_open finds it: 0 and that run's
 * cgroup in *ret_cg; -EPERM for what is not a run's cgroup (nothing is done to it). */
static int open_orphan(char *const *dirs, AjRunOrphan *o, AjCgroup **ret_cg)
{
        const char *id = cgroup_run_id(dirs[0]);
        if (!id)
                return -EPERM;
        memcpy(o->run_id, id, AJ_RUN_ID_LEN);
        for (char *const *d = dirs; *d; d++) {
                const char *other = cgroup_run_id(*d);
                if (!other || !streq(other, o->run_id))
                        return -EPERM;
        }
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        int r = aj_cgroup_open(o->run_id, &cg);
        if (r < 0)
                return r;
        for (char *const *d = dirs; *d; d++)
                if (!aj_strv_contains(aj_cgroup_paths(cg), *d))
                        return -EPERM;
        *ret_cg = TAKE_PTR(cg);
        return 0;
}

static bool any_there(char *const *dirs)
{
        struct stat st;
        for (char *const *d = dirs; *d; d++)
                if (lstat(*d, &st) == 0)
                        return true;
        return false;
}

/* The orphan's runtime dir (its sockets: a run removes it at its end, as its cgroup), left
 * with the cgroup: removed too, unless a supervisor of that id holds it (a live run's). */
static int reap_runtime_dir(const Orphans *os, AjRunOrphan *o)
{
        if (!os->paths)
                return 0;
        _cleanup_free_ char *dir = aj_runtime_dir_path(os->paths, o->run_id);
        if (!dir)
                return -ENOMEM;
        struct stat st;
        if (lstat(dir, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        _cleanup_close_ int hold = -1;
        int r = aj_runtime_dir_hold(dir, true, &hold);
        if (r >= 0 && !os->dry_run)
                r = aj_runtime_dir_remove(dir);
        o->runtime_error = r;
        o->runtime_dir = TAKE_PTR(dir);
        return 0;
}

/* One kept slot: its cgroup removed when no run directory leads to it any more, no supervisor
 * holds it and no process is in it. */
static int reap_orphan(unsigned long id, const char *run_dir, char *const *dirs, void *userdata)
{
        Orphans *os = userdata;
        struct stat st;
        /* Its run directory's state directory reaps it, and records that in its events. */
        if (run_dir && (lstat(run_dir, &st) == 0 || errno != ENOENT))
                return 0;
        AjRunOrphan *nv = reallocarray(os->v, os->n + 1, sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        os->v = nv;
        AjRunOrphan *o = &os->v[os->n];
        *o = (AjRunOrphan){ .host_id = id, .cgroup = aj_strv_copy(dirs) };
        if (!o->cgroup)
                return -ENOMEM;
        os->n++;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = NULL;
        int r = open_orphan(dirs, o, &cg);
        if (r == -ENOENT && !any_there(dirs)) {
                aj_strv_free(o->cgroup); /* removed meanwhile (another prune) */
                os->n--;
                return 0;
        }
        if (r == -ENOENT)
                r = -EPERM; /* there, but not where a run's cgroup would be */
        /* A supervisor of that id holds it: a live run's (made again after the slot was
         * checked). Or processes are still in it: nothing says whose they are any more. */
        if (r >= 0)
                r = aj_cgroup_claim(cg);
        if (r >= 0) {
                r = aj_cgroup_populated(cg);
                r = r > 0 ? -ENOTEMPTY : r;
        }
        /* A slot that does not say whose they are (an older agentjail's): left. */
        if (r >= 0 && !run_dir)
                r = -ENOLINK;
        if (r >= 0 && !os->dry_run)
                r = aj_cgroup_remove(cg, AJ_CGROUP_REMOVE_MS);
        o->error = r == -ENOENT ? 0 : r;
        if (o->error == 0)
                return reap_runtime_dir(os, o);
        return 0;
}

int aj_run_reap_orphans(const char *pool_dir, const AjPaths *paths, bool dry_run, AjRunOrphan **ret, size_t *ret_n,
                        AjError *ret_error)
{
        Orphans os = { .dry_run = dry_run, .paths = paths };
        int r = aj_host_id_pool_kept(pool_dir, reap_orphan, &os, ret_error);
        if (r < 0) {
                aj_run_orphans_free(os.v, os.n);
                return r;
        }
        *ret = os.v;
        *ret_n = os.n;
        return 0;
}
