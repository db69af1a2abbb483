/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v2 backend. On pure v2 hosts it does everything. On hybrid hosts the
 * v2 tree has no controllers, but cgroup.freeze, cgroup.kill, cgroup.events
 * and cpu.stat work there, so it still provides CLONE_INTO_CGROUP, freeze,
 * kill and cpu usage while the v1 backend enforces the limits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

enum { CTRL_MEMORY = 1U << 0, CTRL_PIDS = 1U << 1, CTRL_CPU = 1U << 2 };
static const char *const ctrl_names[] = { "memory", "pids", "cpu" };

static bool word_in(const char *text, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = text; p && *p;) {
                p += strspn(p, " \n");
                size_t l = strcspn(p, " \n");
                if (l == n && strncmp(p, word, n) == 0)
                        return true;
                p += l;
        }
        return false;
}

static unsigned ctrl_set(const char *text)
{
        unsigned s = 0;
        for (size_t i = 0; i < ARRAY_SIZE(ctrl_names); i++)
                if (text && word_in(text, ctrl_names[i]))
                        s |= 1U << i;
        return s;
}

static int write_subtree_op(const char *dir, unsigned set, const char *op)
{
        char buf[64] = "";
        for (size_t i = 0; i < ARRAY_SIZE(ctrl_names); i++)
                if (set & (1U << i)) {
                        if (buf[0])
                                strcat(buf, " ");
                        strcat(buf, op);
                        strcat(buf, ctrl_names[i]);
                }
        return buf[0] ? aj_cg_write(aj_cg_path(dir), "cgroup.subtree_control", buf) : 0;
}

static int write_subtree(const char *dir, unsigned set) { return write_subtree_op(dir, set, "+"); }

static pid_t parent_of(pid_t pid)
{
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        _cleanup_free_ char *s = NULL;
        if (aj_read_file(p, 4096, &s, NULL) < 0)
                return -1;
        const char *rp = strrchr(s, ')');
        int ppid;
        if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
                return -1;
        return ppid;
}

/* Move every task of `from` into `to`: -errno of the first failure. */
static int move_tasks(const char *from, const char *to)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = aj_cg_read_pids(aj_cg_path(from), &pids, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = aj_cg_attach(aj_cg_path(to), pids[i]);
                if (r == -ESRCH)
                        r = 0;
        }
        return r;
}

/*
 * Rootless on pure v2 we nest under the cgroup we were started in, typically the
 * scope of `systemd-run --user --scope -p Delegate=yes agentjail run ...`. That cgroup
 * holds our own process (and the watchdog's), and the "no internal processes" rule
 * forbids enabling controllers for its children while it does. When it holds nothing
 * but us and our children, they move to a leaf of their own, "<id>.supervisor" beside
 * the run's cgroup, as container runtimes do in a delegated scope; v2_remove() moves
 * them back and removes it. Returns 0 when nothing needed moving, 1 when we moved, or
 * -EBUSY when other processes share the cgroup (nothing is moved then).
 */
static int leave_base(AjCgroup *cg, const char *base)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = aj_cg_read_pids(aj_cg_path(base), &pids, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        pid_t self = getpid();
        for (size_t i = 0; i < n; i++)
                if (pids[i] != self && parent_of(pids[i]) != self)
                        return -EBUSY;
        _cleanup_free_ char *leaf = NULL;
        if (asprintf(&leaf, "%s/%s.supervisor", cg->plan.v2_parent, cg->run_id) < 0)
                return -ENOMEM;
        r = aj_cg_mkdir_run(cg->plan.v2_parent, leaf);
        if (r < 0)
                return r;
        cg->v2_base = strdup(base);
        cg->v2_leaf = TAKE_PTR(leaf);
        if (!cg->v2_base)
                return -ENOMEM;
        r = move_tasks(base, cg->v2_leaf);
        return r < 0 ? r : 1;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* Whether `dir` has a child cgroup other than `except`. */
static bool has_other_child(const char *dir, const char *except)
{
        _cleanup_(closedirp) DIR *d = opendir(dir);
        if (!d)
                return true;
        const char *leaf = strrchr(except, '/');
        leaf = leaf ? leaf + 1 : except;
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_type == DT_DIR && !streq(e->d_name, ".") && !streq(e->d_name, "..") && !streq(e->d_name, leaf))
                        return true;
        return false;
}

/* Undo leave_base() once no run of ours is left below the base. Best effort: what
 * stays is an empty leaf, which goes with the delegated cgroup (the scope). */
static void return_to_base(AjCgroup *cg)
{
        if (!cg->v2_leaf || !cg->v2_base || has_other_child(cg->plan.v2_parent, cg->v2_leaf))
                return;
        /* Controllers must be off below the base before processes may live in it. */
        (void)write_subtree_op(cg->plan.v2_parent, CTRL_MEMORY | CTRL_PIDS | CTRL_CPU, "-");
        if (cg->v2_base_enabled && write_subtree_op(cg->v2_base, cg->v2_base_enabled, "-") < 0)
                return; /* another run of ours still needs them */
        if (move_tasks(cg->v2_leaf, cg->v2_base) < 0)
                return;
        if (aj_cg_rmdir(cg->v2_leaf, aj_now_monotonic_ms() + AJ_CG_WAIT_MS) >= 0) {
                free(cg->v2_leaf);
                cg->v2_leaf = NULL;
        }
}

/*
 * Make `want` (required) and `opt` (best effort, for stats) available to the
 * children of `dir`. Returns the set that is enabled, or a negative errno
 * when a required controller cannot be and degraded runs are not allowed.
 */
static int enable_controllers(const char *dir, unsigned want, unsigned opt, AjCgroupReasons *rs, bool rootless,
                              unsigned *ret_enabled)
{
        _cleanup_free_ char *avail_s = NULL, *sub_s = NULL;
        int r = aj_cg_read(aj_cg_path(dir), "cgroup.controllers", &avail_s);
        if (r < 0 && want)
                return aj_cgroup_unenforced(rs, "cannot read '%s/cgroup.controllers': %s", dir, strerror(-r));
        unsigned avail = ctrl_set(avail_s);
        for (size_t i = 0; i < ARRAY_SIZE(ctrl_names); i++) {
                if (!(want & (1U << i)) || (avail & (1U << i)))
                        continue;
                want &= ~(1U << i);
                rs->rootless_hint = rs->rootless_hint || rootless;
                r = aj_cgroup_unenforced(
                        rs, "%s limit requested but the %s controller is not available in '%s/cgroup.controllers'",
                        ctrl_names[i], ctrl_names[i], dir);
                if (r < 0)
                        return r;
        }
        opt &= avail;
        (void)aj_cg_read(aj_cg_path(dir), "cgroup.subtree_control", &sub_s);
        unsigned enabled = ctrl_set(sub_s);
        /* Written even when they read as enabled. The kernel shows a controller in
         * subtree_control before it has made that controller's files in the children:
         * another run may be in the middle of enabling it, and its memory.max in our
         * fresh cgroup does not exist yet. A write waits for the cgroup lock that run
         * holds, so once ours returns, the files are there. */
        unsigned todo = want | opt;
        if (todo && write_subtree(dir, todo) >= 0) {
                enabled |= todo;
                todo = 0;
        }
        /* One at a time, so an optional one cannot block a required one. */
        for (size_t i = 0; i < ARRAY_SIZE(ctrl_names); i++) {
                unsigned b = 1U << i;
                if (!(todo & b))
                        continue;
                r = write_subtree(dir, b);
                if (r >= 0 || (enabled & b)) {
                        enabled |= b;
                        continue;
                }
                if (!(want & b))
                        continue;
                rs->rootless_hint = rs->rootless_hint || rootless;
                r = aj_cgroup_unenforced(
                        rs,
                        "%s limit requested but the %s controller cannot be enabled in '%s/cgroup.subtree_control': %s",
                        ctrl_names[i], ctrl_names[i], dir, strerror(-r));
                if (r < 0)
                        return r;
        }
        *ret_enabled = enabled;
        return 0;
}

static int apply_limit(AjCgroup *cg, AjCgroupReasons *rs, const char *what, const char *file, const char *value)
{
        int r = aj_cg_write(aj_cg_v2(cg), file, value);
        if (r >= 0)
                return 0;
        return aj_cgroup_unenforced(rs, "%s limit requested but writing '%s' to '%s/%s' failed: %s", what, value,
                                    cg->plan.v2_run, file, strerror(-r));
}

/* Unified hierarchy: the controllers `want` (for limits) enabled in the base's subtree_control,
 * moving agentjail into a leaf first when a rootless base holds it; *ret_enabled: what is.
 * 1: it cannot be (reported in rs, the run goes on degraded without a v2 cgroup). */
static int v2_prepare_base(AjCgroup *cg, unsigned want, AjCgroupReasons *rs, bool rootless, unsigned *ret_enabled)
{
        unsigned enabled = 0;
        int r;
        size_t pl = strlen(cg->plan.v2_parent) - strlen("/agentjail");
        _cleanup_free_ char *base = strndup(cg->plan.v2_parent, pl > 0 ? pl : 1);
        if (!base)
                return -ENOMEM;
        if (!*base) {
                free(base);
                base = strdup("/");
                if (!base)
                        return -ENOMEM;
        }
        _cleanup_free_ char *sub_s = NULL, *avail_s = NULL;
        (void)aj_cg_read(aj_cg_path(base), "cgroup.subtree_control", &sub_s);
        (void)aj_cg_read(aj_cg_path(base), "cgroup.controllers", &avail_s);
        unsigned before = ctrl_set(sub_s);
        /* Moving is no use when the controllers are not delegated to us at all:
         * enable_controllers() says so. */
        if (rootless && (want & ~before) && !(want & ~ctrl_set(avail_s))) {
                r = leave_base(cg, base);
                if (r == -EBUSY) {
                        rs->rootless_hint = true;
                        r = aj_cgroup_unenforced(rs,
                                                 "'%s' holds other processes than agentjail, so "
                                                 "it cannot enable controllers for its children",
                                                 base);
                        return r < 0 ? r : 1;
                }
                if (r < 0) {
                        rs->rootless_hint = true;
                        r = aj_cgroup_unenforced(rs, "cannot move agentjail out of '%s' into a leaf cgroup: %s", base,
                                                 strerror(-r));
                        return r < 0 ? r : 1;
                }
        }
        /* memory and pids are cheap and give OOM / fork-limit events even
         * without a limit; cpu only when a quota is asked for. */
        r = enable_controllers(base, want, CTRL_MEMORY | CTRL_PIDS, rs, rootless, &enabled);
        if (r < 0)
                return r;
        cg->v2_base_enabled = enabled & ~before;
        *ret_enabled = enabled;
        return 0;
}

/* The limits whose controllers `got` has; the others were reported by enable_controllers(). */
static int v2_apply_limits(AjCgroup *cg, const AjCgroupLimits *limits, AjCgroupReasons *rs, unsigned got)
{
        int r;
        char buf[64];
        if (limits->memory_max) {
                /* Not enabled: enable_controllers() already said why. */
                if (!(got & CTRL_MEMORY))
                        r = 0;
                else {
                        snprintf(buf, sizeof(buf), "%" PRIu64, limits->memory_max);
                        r = apply_limit(cg, rs, "memory", "memory.max", buf);
                        /* Without swap accounting the file is absent: then the
                         * run cannot swap through this cgroup at all. */
                        if (r >= 0 && aj_cg_exists(aj_cg_v2(cg), "memory.swap.max"))
                                r = apply_limit(cg, rs, "memory", "memory.swap.max", "0");
                }
                if (r < 0)
                        return r;
        }
        if (limits->pids_max) {
                /* Not enabled: enable_controllers() already said why. */
                if (!(got & CTRL_PIDS))
                        r = 0;
                else {
                        snprintf(buf, sizeof(buf), "%" PRIu64, limits->pids_max);
                        r = apply_limit(cg, rs, "pids", "pids.max", buf);
                }
                if (r < 0)
                        return r;
        }
        if (limits->cpus > 0) {
                /* Not enabled: enable_controllers() already said why. */
                if (!(got & CTRL_CPU))
                        r = 0;
                else {
                        r = aj_cgroup_format_cpu_max(limits->cpus, 100000, buf, sizeof(buf));
                        if (r >= 0)
                                r = apply_limit(cg, rs, "cpu", "cpu.max", buf);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int v2_create(AjCgroup *cg, const AjCgroupLimits *limits, AjCgroupReasons *rs)
{
        if (!cg->plan.v2_run)
                return 0;
        bool unified = cg->mode == AJ_CGROUP_MODE_UNIFIED;
        bool rootless = geteuid() != 0;
        unsigned want = 0, enabled = 0;
        int r;
        if (unified) {
                want = (limits->memory_max ? CTRL_MEMORY : 0) | (limits->pids_max ? CTRL_PIDS : 0) |
                       (limits->cpus > 0 ? CTRL_CPU : 0);
                r = v2_prepare_base(cg, want, rs, rootless, &enabled);
                if (r != 0)
                        return r < 0 ? r : 0;
        }

        r = aj_cg_mkdir_run(cg->plan.v2_parent, cg->plan.v2_run);
        if (r == -EEXIST)
                return r;
        if (r < 0) {
                if (!unified)
                        return 0; /* hybrid: the v1 freezer takes over freeze and kill */
                rs->rootless_hint = rs->rootless_hint || rootless;
                return aj_cgroup_unenforced(rs, "cannot create cgroup '%s': %s; %s", cg->plan.v2_run, strerror(-r),
                                            want ? "limits, freeze and kill are not enforced"
                                                 : "freeze and kill of the whole run are not available");
        }
        cg->have_v2 = true;
        cg->v2_fd = open(cg->plan.v2_run, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cg->v2_fd < 0)
                return -errno;
        /* Ours until it is removed (cgroup.h aj_cgroup_claim): no reap of a dead run's
         * directory of the same id, in another state directory, kills this run. */
        if (flock(cg->v2_fd, LOCK_SH | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (!unified)
                return 0;

        unsigned got = 0;
        r = enable_controllers(cg->plan.v2_parent, want & enabled, enabled & ~want, rs, rootless, &got);
        if (r < 0)
                return r;
        return v2_apply_limits(cg, limits, rs, got);
}

static int v2_attach(AjCgroup *cg, pid_t pid) { return cg->have_v2 ? aj_cg_attach(aj_cg_v2(cg), pid) : 0; }

static bool v2_can_freeze(const AjCgroup *cg) { return cg->have_v2 && aj_cg_exists(aj_cg_v2(cg), "cgroup.freeze"); }

static int v2_set_frozen(AjCgroup *cg, bool frozen)
{
        if (!v2_can_freeze(cg))
                return -EOPNOTSUPP;
        int r = aj_cg_write(aj_cg_v2(cg), "cgroup.freeze", frozen ? "1" : "0");
        if (r < 0)
                return r;
        r = aj_cg_wait_keyed(cg, aj_cg_v2(cg), "cgroup.events", "frozen", frozen ? 1 : 0, AJ_CG_WAIT_MS);
        /* A freeze that did not complete (a task in uninterruptible sleep never reached the
         * freezer) is undone (cgroup-internal.h): left asked for, the kernel would finish it
         * later, behind the back of a caller told it failed. */
        if (r < 0 && frozen)
                (void)aj_cg_write(aj_cg_v2(cg), "cgroup.freeze", "0");
        return r;
}

static int v2_kill(AjCgroup *cg, int64_t deadline)
{
        if (!cg->have_v2)
                return 0;
        AjCgDir dir = aj_cg_v2(cg);
        int r;
        if (aj_cg_exists(dir, "cgroup.kill")) {
                r = aj_cg_write(dir, "cgroup.kill", "1");
                if (r < 0)
                        return aj_cg_removed_is_empty(r);
        } else {
                /* Before 5.14: freeze so nothing forks behind our back, signal
                 * every task, then thaw so the SIGKILLs are delivered. */
                bool frozen = v2_set_frozen(cg, true) >= 0;
                for (int round = 0; round < 64; round++)
                        if (aj_cg_signal_all(dir, SIGKILL) <= 0 || frozen)
                                break;
                if (frozen)
                        (void)v2_set_frozen(cg, false);
        }
        return aj_cg_removed_is_empty(
                aj_cg_wait_keyed(cg, dir, "cgroup.events", "populated", 0, aj_cg_ms_left(deadline)));
}

static int v2_pids(AjCgroup *cg, pid_t **ret, size_t *ret_n)
{
        if (!cg->have_v2)
                return -EOPNOTSUPP;
        return aj_cg_read_pids(aj_cg_v2(cg), ret, ret_n);
}

/*
 * memory.peak only exists since Linux 5.19 (Ubuntu 22.04 runs 5.15). Without it the
 * peak is a lower bound: the largest memory.current seen by any stats call, and
 * memory.max itself once the kernel reported usage reaching it (a "max" or
 * "oom_kill" event), because by then memory.current has dropped again.
 */
static uint64_t peak_fallback(AjCgroup *cg, const AjCgroupStats *st)
{
        uint64_t peak = cg->v2_peak_seen > st->memory_current ? cg->v2_peak_seen : st->memory_current, max;
        if ((st->memory_max_events > 0 || st->oom_kills > 0) && aj_cg_read_u64(aj_cg_v2(cg), "memory.max", &max) >= 0 &&
            max > peak)
                peak = max;
        cg->v2_peak_seen = peak;
        return peak;
}

static int v2_stats(AjCgroup *cg, AjCgroupStats *st)
{
        if (!cg->have_v2)
                return 0;
        AjCgDir d = aj_cg_v2(cg);
        uint64_t v;
        if (aj_cg_counter_keyed(cg, d, "cpu.stat", "usage_usec", &v) >= 0)
                st->cpu_usage_usec = v;
        if (aj_cg_counter_keyed(cg, d, "cgroup.events", "frozen", &v) >= 0)
                st->frozen = v != 0;
        if (cg->mode != AJ_CGROUP_MODE_UNIFIED) {
                /* No pids controller here: count the tasks instead. */
                _cleanup_free_ char *t = NULL;
                if (aj_cg_counter(cg, d, "cgroup.threads", &t) >= 0) {
                        uint64_t n = 0;
                        for (const char *p = t; *p; p++)
                                n += *p == '\n';
                        st->pids_current = n;
                }
                return 0;
        }
        if (aj_cg_counter_u64(cg, d, "memory.current", &v) >= 0)
                st->memory_current = v;
        if (aj_cg_counter_keyed(cg, d, "memory.events", "oom_kill", &v) >= 0)
                st->oom_kills = v;
        if (aj_cg_counter_keyed(cg, d, "memory.events", "max", &v) >= 0)
                st->memory_max_events = v;
        if (aj_cg_counter_u64(cg, d, "memory.peak", &v) >= 0)
                st->memory_peak = v;
        else
                st->memory_peak = peak_fallback(cg, st);
        if (aj_cg_counter_u64(cg, d, "pids.current", &v) >= 0)
                st->pids_current = v;
        if (aj_cg_counter_keyed(cg, d, "pids.events", "max", &v) >= 0)
                st->pids_max_events = v;
        return 0;
}

static int v2_open_event_fd(AjCgroup *cg, int *ret_fd)
{
        if (!cg->have_v2)
                return -ENODATA;
        /* kernfs emits IN_MODIFY on memory.events / pids.events whenever a
         * counter changes, so one inotify fd covers both. */
        _cleanup_close_ int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0)
                return -errno;
        int watches = 0;
        static const char *const files[] = { "memory.events", "pids.events" };
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", cg->plan.v2_run, files[i]) < 0)
                        return -ENOMEM;
                if (inotify_add_watch(fd, p, IN_MODIFY) >= 0)
                        watches++;
                else if (errno != ENOENT)
                        return -errno;
        }
        if (watches == 0)
                return -ENODATA;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void v2_event_ack(AjCgroup *cg)
{
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        for (;;) {
                ssize_t n = read(cg->event_fd, buf, sizeof(buf));
                if (n > 0 || (n < 0 && errno == EINTR))
                        continue;
                break;
        }
}

static int v2_remove(AjCgroup *cg, int64_t deadline)
{
        if (cg->have_v2) {
                /* What is left was SIGKILLed (remove_all()): each wakes to its pending SIGKILL. */
                (void)aj_cg_wait_keyed(cg, aj_cg_v2(cg), "cgroup.events", "populated", 0, aj_cg_ms_left(deadline));
                int r = aj_cg_rmdir(cg->plan.v2_run, deadline);
                if (r < 0)
                        return r;
                cg->have_v2 = false;
        } else if (!cg->v2_leaf)
                return 0;
        return_to_base(cg);
        aj_cg_rmdir_parent(cg->plan.v2_parent);
        return 0;
}

const AjCgroupOps aj_cgroup_v2_ops = {
        .name = "v2",
        .create = v2_create,
        .attach = v2_attach,
        .set_frozen = v2_set_frozen,
        .can_freeze = v2_can_freeze,
        .kill = v2_kill,
        .pids = v2_pids,
        .stats = v2_stats,
        .open_event_fd = v2_open_event_fd,
        .event_ack = v2_event_ack,
        .remove = v2_remove,
};
