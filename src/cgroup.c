/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-run cgroup front end: detects the layout, plans the directories,
 * and dispatches to the v2 and v1 backends (see cgroup-internal.h).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cgroup-internal.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/strv.h"

/* ---- front end ---- */

static AjCgroup *cgroup_new(const char *run_id)
{
        AjCgroup *cg = calloc(1, sizeof(*cg));
        if (!cg)
                return NULL;
        cg->run_id = strdup(run_id);
        if (!cg->run_id) {
                free(cg);
                return NULL;
        }
        cg->v2_fd = -1;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                cg->v1_lock_fd[c] = cg->v1_fd[c] = -1;
        cg->event_fd = -1;
        return cg;
}

static void unlock_v1(AjCgroup *cg)
{
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                if (cg->v1_lock_fd[c] >= 0) {
                        close(cg->v1_lock_fd[c]);
                        cg->v1_lock_fd[c] = -1;
                }
}

void aj_cg_close_v1(AjCgroup *cg, size_t c)
{
        int fd = cg->v1_fd[c];
        if (fd < 0)
                return;
        close(fd);
        for (size_t o = 0; o < _AJ_CG_V1_MAX; o++)
                if (cg->v1_fd[o] == fd)
                        cg->v1_fd[o] = -1;
}

void aj_cgroup_free(AjCgroup *cg)
{
        if (!cg)
                return;
        if (cg->v2_fd >= 0)
                close(cg->v2_fd);
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                aj_cg_close_v1(cg, c);
        unlock_v1(cg);
        if (cg->event_fd >= 0)
                close(cg->event_fd);
        aj_cg_close_counters(cg);
        aj_cgroup_plan_done(&cg->plan);
        aj_strv_free(cg->paths);
        free(cg->v2_base);
        free(cg->v2_leaf);
        free(cg->run_id);
        free(cg);
}

static int build_paths(AjCgroup *cg)
{
        char **v = NULL;
        int r = 0;
        if (cg->have_v2)
                r = aj_strv_push(&v, cg->plan.v2_run);
        for (size_t c = 0; r >= 0 && c < _AJ_CG_V1_MAX; c++)
                if (cg->have_v1[c] && !cg->plan.v1_alias[c])
                        r = aj_strv_push(&v, cg->plan.v1_run[c]);
        if (r >= 0 && !v) {
                v = calloc(1, sizeof(char *));
                if (!v)
                        r = -ENOMEM;
        }
        if (r < 0) {
                aj_strv_free(v);
                return r;
        }
        aj_strv_free(cg->paths);
        cg->paths = v;
        return 0;
}

void aj_cgroup_strip_supervisor_leaf(char *path)
{
        char *a = NULL;
        for (char *p = path; p && (p = strstr(p, "/agentjail/")); p++)
                a = p;
        if (!a)
                return;
        const char *leaf = a + strlen("/agentjail/");
        size_t n = strlen(leaf), sl = strlen(".supervisor");
        if (n <= sl || n - sl > 64 || !streq(leaf + n - sl, ".supervisor"))
                return;
        for (size_t i = 0; i < n - sl; i++)
                if (!isalnum((unsigned char)leaf[i]) && leaf[i] != '_' && leaf[i] != '-')
                        return; /* not "<run id>.supervisor" */
        *a = 0;
}

/* Rootless runs nest under the cgroup we were started in (the delegated
 * subtree); root-started ones under each hierarchy's root. */
static int load_bases(const AjCgroupLayout *l, char **ret_v2_base, char **v1_base)
{
        if (geteuid() == 0)
                return 0;
        _cleanup_free_ char *text = NULL;
        int r = aj_read_file("/proc/self/cgroup", CG_FILE_MAX, &text, NULL);
        if (r < 0)
                return r;
        if (l->v2_mount) {
                r = aj_cgroup_parse_proc_cgroup(text, NULL, ret_v2_base);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0)
                        aj_cgroup_strip_supervisor_leaf(*ret_v2_base);
        }
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!l->v1_mount[c])
                        continue;
                r = aj_cgroup_parse_proc_cgroup(text, aj_cgroup_v1_name(c), &v1_base[c]);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

static void free_bases(char *v2_base, char **v1_base)
{
        free(v2_base);
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                free(v1_base[c]);
}

static int kill_within(AjCgroup *cg, int64_t deadline);

/* Whether any v1 hierarchy's directory of the run is there. */
static bool have_any_v1(const AjCgroup *cg)
{
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                if (cg->have_v1[c])
                        return true;
        return false;
}

/* One deadline for the whole removal: a task still on its way out (in D state, or its memory
 * being freed on a loaded host) is waited for on the v2 cgroup's populated notification, not
 * by a fixed bound per step. */
static int remove_all(AjCgroup *cg, int timeout_ms)
{
        int64_t deadline = aj_now_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        int r = kill_within(cg, deadline);
        if (r == -EOPNOTSUPP)
                r = 0;
        /* The event fd keeps v1 oom_control registrations alive: drop it first. */
        if (cg->event_fd >= 0) {
                close(cg->event_fd);
                cg->event_fd = -1;
        }
        unlock_v1(cg);
        /* Before the directories' fds that name them (the v1 removal closes its). */
        aj_cg_close_counters(cg);
        int q = aj_cgroup_v1_ops.remove(cg, deadline);
        if (q < 0 && (r >= 0 || r == -ETIMEDOUT))
                r = q;
        /* The directories' fds stay open for the removal's reads, and go once it is done:
         * an rmdir does not wait for them. (The v2 one's lock goes with it.) */
        q = aj_cgroup_v2_ops.remove(cg, deadline);
        if (q < 0 && (r >= 0 || r == -ETIMEDOUT))
                r = q;
        if (cg->v2_fd >= 0) {
                close(cg->v2_fd);
                cg->v2_fd = -1;
        }
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                aj_cg_close_v1(cg, c);
        /* The kill's wait timed out, but every directory went: it did empty, only later. */
        if (r == -ETIMEDOUT && !aj_cgroup_left(cg))
                r = 0;
        return r;
}

#define ROOTLESS_HINT                                                                                   \
        "to enforce limits without root, start agentjail in a delegated cgroup v2 subtree of its own: " \
        "`systemd-run --user --scope -p Delegate=yes agentjail run ...` (if the user's systemd does "   \
        "not delegate memory, pids and cpu, add /etc/systemd/system/user@.service.d/delegate.conf "     \
        "with \"[Service]\" and \"Delegate=memory pids cpu\", then log in again; a cgroup that also "   \
        "holds other processes cannot enable controllers for its children; v1 hierarchies are "         \
        "writable by root only), or allow degraded runs"

static int finish_reasons(AjCgroupReasons *rs, int r, char **ret_unenforced, AjError *ret_error);
static int create_impl(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, bool defer_v1,
                       AjCgroup **ret, char **ret_unenforced, AjError *ret_error);

int aj_cgroup_create(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                     char **ret_unenforced, AjError *ret_error)
{
        return create_impl(run_id, limits, allow_degraded, false, ret, ret_unenforced, ret_error);
}

int aj_cgroup_create_v2_first(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                              char **ret_unenforced, AjError *ret_error)
{
        return create_impl(run_id, limits, allow_degraded, true, ret, ret_unenforced, ret_error);
}

int aj_cgroup_create_rest(AjCgroup *cg, char **ret_unenforced, AjError *ret_error)
{
        if (ret_unenforced)
                *ret_unenforced = NULL;
        if (!cg->v1_pending)
                return 0;
        cg->v1_pending = false;
        AjCgroupReasons reasons = { .allow_degraded = cg->pending_allow_degraded };
        int r = aj_cgroup_v1_ops.create(cg, &cg->pending_limits, &reasons);
        if (r >= 0)
                r = build_paths(cg);
        return finish_reasons(&reasons, r, ret_unenforced, ret_error);
}

/* What is not enforced: on failure (r < 0) the error's message, else the note the caller
 * records for a degraded run. Returns r. */
static int finish_reasons(AjCgroupReasons *rs, int r, char **ret_unenforced, AjError *ret_error)
{
        _cleanup_free_ char *text = TAKE_PTR(rs->text);
        if (text && rs->rootless_hint) {
                char *t = NULL;
                if (aj_asprintf(&t, "%s; %s", text, ROOTLESS_HINT) >= 0) {
                        free(text);
                        text = t;
                }
        }
        if (r < 0)
                return text ? aj_error_set(ret_error, r, "%s", text) : r;
        if (ret_unenforced)
                *ret_unenforced = TAKE_PTR(text);
        return r;
}

/* Over 80 lines: the steps share one undo ladder (fail_remove, fail) for the directories they
 * create on the host; split, each part would need its own copy of it. */
static int create_impl(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, bool defer_v1,
                       AjCgroup **ret, char **ret_unenforced, AjError *ret_error)
{
        static const AjCgroupLimits no_limits = { 0 };
        AjCgroupReasons reasons = { .allow_degraded = allow_degraded };
        AjCgroupLayout layout = { 0 };
        char *v2_base = NULL, *v1_base[_AJ_CG_V1_MAX] = { 0 };
        AjCgroup *cg = NULL;
        int r;

        if (ret_unenforced)
                *ret_unenforced = NULL;
        if (!aj_cgroup_run_id_valid(run_id) || !ret)
                return -EINVAL;
        if (!limits)
                limits = &no_limits;
        if (!isfinite(limits->cpus) || limits->cpus < 0)
                return -EINVAL;

        r = aj_cgroup_layout_load(&layout);
        if (r < 0) {
                (void)aj_cgroup_unenforced(&reasons, "cannot determine the cgroup layout: %s", strerror(-r));
                goto fail;
        }
        cg = cgroup_new(run_id);
        if (!cg) {
                r = -ENOMEM;
                goto fail;
        }
        cg->mode = layout.mode;
        if (layout.mode == AJ_CGROUP_MODE_NONE) {
                r = aj_cgroup_unenforced(&reasons,
                                         "no cgroup hierarchy is mounted on %s: limits, freeze "
                                         "and kill of the whole run are not available",
                                         CGROUP_ROOT);
                if (r < 0)
                        goto fail;
                r = build_paths(cg);
                if (r < 0)
                        goto fail;
                goto done;
        }
        r = load_bases(&layout, &v2_base, v1_base);
        if (r < 0)
                goto fail;
        /* Plan the freezer too; dropped below when the v2 tree can freeze. */
        r = aj_cgroup_plan_paths(&layout, run_id, true, v2_base, v1_base,
                                 aj_cgroup_v1_needed(layout.mode, limits, false), &cg->plan);
        if (r < 0)
                goto fail;

        r = aj_cgroup_v2_ops.create(cg, limits, &reasons);
        if (r < 0)
                goto fail_remove;
        if (cg->plan.v1_run[AJ_CG_V1_FREEZER] && layout.mode == AJ_CGROUP_MODE_HYBRID &&
            aj_cgroup_v2_ops.can_freeze(cg)) {
                free(cg->plan.v1_run[AJ_CG_V1_FREEZER]);
                free(cg->plan.v1_parent[AJ_CG_V1_FREEZER]);
                cg->plan.v1_run[AJ_CG_V1_FREEZER] = cg->plan.v1_parent[AJ_CG_V1_FREEZER] = NULL;
        }
        if (defer_v1) {
                cg->v1_pending = true;
                cg->pending_limits = *limits;
                cg->pending_allow_degraded = allow_degraded;
        } else {
                r = aj_cgroup_v1_ops.create(cg, limits, &reasons);
                if (r < 0)
                        goto fail_remove;
        }
        r = build_paths(cg);
        if (r < 0)
                goto fail_remove;
done:
        free_bases(v2_base, v1_base);
        aj_cgroup_layout_done(&layout);
        *ret = cg;
        return finish_reasons(&reasons, 0, ret_unenforced, ret_error);

fail_remove:
        (void)remove_all(cg, AJ_CGROUP_REMOVE_MS);
fail:
        aj_cgroup_free(cg);
        free_bases(v2_base, v1_base);
        aj_cgroup_layout_done(&layout);
        return finish_reasons(&reasons, r, ret_unenforced, ret_error);
}

static bool dir_exists(const char *p)
{
        struct stat st;
        return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int aj_cgroup_open(const char *run_id, AjCgroup **ret)
{
        if (!aj_cgroup_run_id_valid(run_id) || !ret)
                return -EINVAL;
        AjCgroupLayout layout = { 0 };
        int r = aj_cgroup_layout_load(&layout);
        if (r < 0)
                return r;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = cgroup_new(run_id);
        if (!cg) {
                aj_cgroup_layout_done(&layout);
                return -ENOMEM;
        }
        cg->mode = layout.mode;
        unsigned all = 0;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                all |= AJ_CG_V1_BIT(c);
        /* Root-started runs live under the hierarchy roots; a rootless caller
         * also looks under its own (delegated) cgroup. */
        for (int pass = 0; pass < 2 && !cg->have_v2; pass++) {
                char *v2_base = NULL, *v1_base[_AJ_CG_V1_MAX] = { 0 };
                if (pass == 1) {
                        if (geteuid() == 0)
                                break;
                        r = load_bases(&layout, &v2_base, v1_base);
                        if (r < 0) {
                                free_bases(v2_base, v1_base);
                                break;
                        }
                }
                AjCgroupPlan plan = { 0 };
                r = aj_cgroup_plan_paths(&layout, run_id, true, v2_base, v1_base, all, &plan);
                free_bases(v2_base, v1_base);
                if (r < 0)
                        break;
                bool any = dir_exists(plan.v2_run);
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                        any = any || dir_exists(plan.v1_run[c]);
                if (!any) {
                        aj_cgroup_plan_done(&plan);
                        continue;
                }
                aj_cgroup_plan_done(&cg->plan);
                cg->plan = plan;
                cg->have_v2 = dir_exists(plan.v2_run);
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                        cg->have_v1[c] = dir_exists(plan.v1_run[c]);
                break;
        }
        aj_cgroup_layout_done(&layout);
        if (!aj_cgroup_left(cg))
                return -ENOENT;
        if (cg->have_v2) {
                cg->v2_fd = open(cg->plan.v2_run, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (cg->v2_fd < 0)
                        return -errno;
        }
        r = build_paths(cg);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cg);
        return 0;
}

/* The names read from the "agentjail" directories, each hierarchy's in turn, repeats and all
 * (a run has a directory in each): a NULL-terminated vector, its length kept, appended to in
 * amortized O(1) (aj_strv_push measures the vector at each push). */
typedef struct {
        char **v;
        size_t n, cap;
} IdList;

/* Appends to `ids` the names in `parent` (an "agentjail" directory) that are run ids. */
static int list_parent(const char *parent, IdList *ids)
{
        DIR *d = parent ? opendir(parent) : NULL;
        if (!d)
                return !parent || errno == ENOENT ? 0 : -errno;
        int r = 0;
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if ((de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) && de->d_name[0] != '.' &&
                    aj_cgroup_run_id_valid(de->d_name))
                        r = aj_strv_append(&ids->v, &ids->n, &ids->cap, strdup(de->d_name));
        closedir(d);
        return r;
}

int aj_cgroup_list_ids(char ***ret_ids)
{
        AjCgroupLayout layout = { 0 };
        int r = aj_cgroup_layout_load(&layout);
        if (r < 0)
                return r;
        _cleanup_strv_free_ char **ids = NULL;
        IdList listed = { 0 };
        /* Where aj_cgroup_open looks: the hierarchy roots, and a rootless caller's own cgroup. */
        for (int pass = 0; r >= 0 && pass < (geteuid() == 0 ? 1 : 2); pass++) {
                char *v2_base = NULL, *v1_base[_AJ_CG_V1_MAX] = { 0 };
                unsigned all = 0;
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                        all |= AJ_CG_V1_BIT(c);
                AjCgroupPlan plan = { 0 };
                r = pass == 1 ? load_bases(&layout, &v2_base, v1_base) : 0;
                if (r >= 0)
                        r = aj_cgroup_plan_paths(&layout, "x", true, v2_base, v1_base, all, &plan);
                free_bases(v2_base, v1_base);
                if (r >= 0)
                        r = list_parent(plan.v2_parent, &listed);
                for (size_t c = 0; r >= 0 && c < _AJ_CG_V1_MAX; c++)
                        if (!plan.v1_alias[c])
                                r = list_parent(plan.v1_parent[c], &listed);
                aj_cgroup_plan_done(&plan);
        }
        ids = listed.v;
        aj_cgroup_layout_done(&layout);
        if (r < 0)
                return r;
        if (!ids && !(ids = calloc(1, sizeof(char *))))
                return -ENOMEM;
        aj_strv_sort_unique(ids);
        *ret_ids = TAKE_PTR(ids);
        return 0;
}

int aj_cgroup_v2_fd(const AjCgroup *cg) { return cg ? cg->v2_fd : -1; }

int aj_cgroup_claim(AjCgroup *cg)
{
        if (!cg)
                return 0;
        if (cg->v2_fd >= 0 && flock(cg->v2_fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        /* Every v1 directory, whichever one its creator holds (the first it made). */
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!cg->have_v1[c] || cg->plan.v1_alias[c] || cg->v1_lock_fd[c] >= 0)
                        continue;
                int r = aj_cg_lock_dir(cg->plan.v1_run[c], LOCK_EX, &cg->v1_lock_fd[c]);
                if (r < 0 && r != -ENOENT) /* gone meanwhile: removed, empty */
                        return r;
        }
        return 0;
}

int aj_cgroup_attach(AjCgroup *cg, pid_t pid, bool already_in_v2)
{
        if (!cg || pid <= 0)
                return -EINVAL;
        /* The limits (v1 on hybrid hosts) first: once a task is visible in
         * the run's v2 cgroup it is already bounded. */
        int r = aj_cgroup_v1_ops.attach(cg, pid);
        if (r < 0)
                return r;
        if (!already_in_v2)
                r = aj_cgroup_v2_ops.attach(cg, pid);
        return r;
}

static const AjCgroupOps *freeze_backend(const AjCgroup *cg)
{
        if (aj_cgroup_v2_ops.can_freeze(cg))
                return &aj_cgroup_v2_ops;
        if (aj_cgroup_v1_ops.can_freeze(cg))
                return &aj_cgroup_v1_ops;
        return NULL;
}

int aj_cgroup_freeze(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        const AjCgroupOps *ops = freeze_backend(cg);
        return ops ? ops->set_frozen(cg, true) : -EOPNOTSUPP;
}

int aj_cgroup_thaw(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        const AjCgroupOps *ops = freeze_backend(cg);
        return ops ? ops->set_frozen(cg, false) : -EOPNOTSUPP;
}

static int kill_within(AjCgroup *cg, int64_t deadline)
{
        if (cg->have_v2)
                return aj_cgroup_v2_ops.kill(cg, deadline);
        return have_any_v1(cg) ? aj_cgroup_v1_ops.kill(cg, deadline) : -EOPNOTSUPP;
}

int aj_cgroup_kill(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        return kill_within(cg, aj_now_monotonic_ms() + AJ_CG_WAIT_MS);
}

int aj_cgroup_pids(AjCgroup *cg, pid_t **ret_pids, size_t *ret_n)
{
        if (!cg || !ret_pids || !ret_n)
                return -EINVAL;
        if (cg->have_v2)
                return aj_cgroup_v2_ops.pids(cg, ret_pids, ret_n);
        return aj_cgroup_v1_ops.pids(cg, ret_pids, ret_n);
}

int aj_cgroup_keep_counters(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        /* The stats' own reads, each opening its file and keeping it instead (nothing read). */
        AjCgroupStats st = { 0 };
        cg->keeping = true;
        (void)aj_cgroup_v2_ops.stats(cg, &st);
        (void)aj_cgroup_v1_ops.stats(cg, &st);
        cg->keeping = false;
        return (int)cg->n_kept;
}

int aj_cgroup_stats(AjCgroup *cg, AjCgroupStats *ret)
{
        if (!cg || !ret)
                return -EINVAL;
        AjCgroupStats st = { 0 };
        int r = aj_cgroup_v2_ops.stats(cg, &st);
        if (r < 0)
                return r;
        r = aj_cgroup_v1_ops.stats(cg, &st);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

static const AjCgroupOps *limits_backend(const AjCgroup *cg)
{
        return cg->mode == AJ_CGROUP_MODE_UNIFIED ? &aj_cgroup_v2_ops : &aj_cgroup_v1_ops;
}

int aj_cgroup_event_fd(AjCgroup *cg)
{
        if (!cg)
                return -1;
        if (cg->event_fd >= 0)
                return cg->event_fd;
        int fd = -1;
        if (limits_backend(cg)->open_event_fd(cg, &fd) < 0)
                return -1;
        cg->event_fd = fd;
        return fd;
}

void aj_cgroup_event_ack(AjCgroup *cg)
{
        if (cg && cg->event_fd >= 0)
                limits_backend(cg)->event_ack(cg);
}

bool aj_cgroup_left(const AjCgroup *cg) { return cg && (cg->have_v2 || have_any_v1(cg)); }

int aj_cgroup_populated(const AjCgroup *cg)
{
        if (!cg)
                return 0;
        uint64_t populated = 0;
        if (cg->have_v2) {
                int r = aj_cg_read_keyed(aj_cg_v2(cg), "cgroup.events", "populated", &populated);
                if (r < 0)
                        return r;
                if (populated)
                        return 1;
        }
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!cg->have_v1[c] || cg->plan.v1_alias[c])
                        continue;
                _cleanup_free_ pid_t *pids = NULL;
                size_t n = 0;
                int r = aj_cg_read_pids(aj_cg_v1(cg, c), &pids, &n);
                if (r < 0)
                        return r;
                if (n)
                        return 1;
        }
        return 0;
}

int aj_cgroup_remove(AjCgroup *cg, int timeout_ms)
{
        if (!cg)
                return 0;
        return remove_all(cg, timeout_ms);
}

int aj_cgroup_destroy(AjCgroup *cg)
{
        if (!cg)
                return 0;
        int r = remove_all(cg, AJ_CGROUP_REMOVE_MS);
        aj_cgroup_free(cg);
        return r;
}

char *const *aj_cgroup_paths(const AjCgroup *cg)
{
        static char *const empty[] = { NULL };
        return cg && cg->paths ? cg->paths : empty;
}
