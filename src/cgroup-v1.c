/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v1 backend: one directory per controller hierarchy. Used on hybrid
 * hosts for the limits (memory, pids, cpu) and on v1-only hosts also for
 * freeze/kill (freezer) and cpu usage (cpuacct).
 *
 * v1 has no change notification for freezer.state or for a cgroup becoming
 * empty, so those waits are bounded polling loops (backing off to 100 ms in a
 * long one); the freezer's never runs on v2 or hybrid hosts where the v2 tree
 * is usable, and the emptiness one there only once the v2 tree, with its
 * notification, is empty.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"

static bool is_primary(const AjCgroup *cg, size_t c) { return cg->have_v1[c] && !cg->plan.v1_alias[c]; }

static bool limit_requested(const AjCgroupLimits *l, size_t c)
{
        switch (c) {
        case AJ_CG_V1_MEMORY:
                return l->memory_max > 0;
        case AJ_CG_V1_PIDS:
                return l->pids_max > 0;
        case AJ_CG_V1_CPU:
                return l->cpus > 0;
        default:
                return false;
        }
}

static int set_limit(AjCgroup *cg, AjCgroupReasons *rs, size_t c, const char *file, const char *value)
{
        int r = aj_cg_write(aj_cg_v1(cg, c), file, value);
        if (r >= 0)
                return 0;
        return aj_cgroup_unenforced(rs, "%s limit requested but writing '%s' to '%s/%s' failed: %s",
                                    aj_cgroup_v1_name(c), value, cg->plan.v1_run[c], file, strerror(-r));
}

static int apply_limits(AjCgroup *cg, const AjCgroupLimits *l, AjCgroupReasons *rs)
{
        char buf[64];
        int r;
        if (l->memory_max && cg->have_v1[AJ_CG_V1_MEMORY]) {
                AjCgDir d = aj_cg_v1(cg, AJ_CG_V1_MEMORY);
                snprintf(buf, sizeof(buf), "%" PRIu64, l->memory_max);
                r = set_limit(cg, rs, AJ_CG_V1_MEMORY, "memory.limit_in_bytes", buf);
                if (r < 0)
                        return r;
                /* memsw is memory+swap: the same value means no swap. It must
                 * be written after limit_in_bytes (memsw >= limit). Absent when
                 * swap accounting is off, and then there is no swap to use. */
                if (aj_cg_exists(d, "memory.memsw.limit_in_bytes")) {
                        r = set_limit(cg, rs, AJ_CG_V1_MEMORY, "memory.memsw.limit_in_bytes", buf);
                        if (r < 0)
                                return r;
                }
                /* Socket buffers are kernel memory that v1 charges to no memcg unless a TCP
                 * limit turns the accounting on: loopback pairs inside the jail's own network
                 * namespace, filled and never read, pinned host TCP memory (host-wide, past
                 * the kernel's pressure mark) while the jail's usage stayed at a few MB.
                 * v2 charges them to memory.max by itself. */
                if (aj_cg_exists(d, "memory.kmem.tcp.limit_in_bytes")) {
                        r = set_limit(cg, rs, AJ_CG_V1_MEMORY, "memory.kmem.tcp.limit_in_bytes", buf);
                        if (r < 0)
                                return r;
                }
                (void)aj_cg_write(d, "memory.swappiness", "0");
                /* memory.oom_control keeps its default: the OOM killer stays on,
                 * so a memory bomb is killed instead of hanging the run. */
        }
        if (l->pids_max && cg->have_v1[AJ_CG_V1_PIDS]) {
                snprintf(buf, sizeof(buf), "%" PRIu64, l->pids_max);
                r = set_limit(cg, rs, AJ_CG_V1_PIDS, "pids.max", buf);
                if (r < 0)
                        return r;
        }
        if (l->cpus > 0 && cg->have_v1[AJ_CG_V1_CPU]) {
                r = aj_cgroup_format_cpu_max(l->cpus, 100000, buf, sizeof(buf));
                if (r < 0)
                        return r;
                buf[strcspn(buf, " ")] = 0;
                r = set_limit(cg, rs, AJ_CG_V1_CPU, "cpu.cfs_period_us", "100000");
                if (r >= 0)
                        r = set_limit(cg, rs, AJ_CG_V1_CPU, "cpu.cfs_quota_us", buf);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int v1_create(AjCgroup *cg, const AjCgroupLimits *limits, AjCgroupReasons *rs)
{
        if (cg->mode != AJ_CGROUP_MODE_HYBRID && cg->mode != AJ_CGROUP_MODE_LEGACY)
                return 0;
        bool rootless = geteuid() != 0, held = false;
        int r;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                bool needed = limit_requested(limits, c) || (c == AJ_CG_V1_FREEZER && cg->plan.v1_run[c]);
                if (!cg->plan.v1_run[c]) {
                        if (!limit_requested(limits, c))
                                continue;
                        r = aj_cgroup_unenforced(
                                rs,
                                "%s limit requested but the %s controller is not available: /sys/fs/cgroup/%s not mounted",
                                aj_cgroup_v1_name(c), aj_cgroup_v1_name(c), aj_cgroup_v1_name(c));
                        if (r < 0)
                                return r;
                        continue;
                }
                if (cg->plan.v1_alias[c]) {
                        for (size_t o = 0; o < c; o++)
                                if (cg->plan.v1_run[o] && streq(cg->plan.v1_run[o], cg->plan.v1_run[c])) {
                                        cg->have_v1[c] = cg->have_v1[o];
                                        cg->v1_fd[c] = cg->v1_fd[o];
                                }
                        continue;
                }
                r = aj_cg_mkdir_run(cg->plan.v1_parent[c], cg->plan.v1_run[c]);
                if (r == -EEXIST)
                        return r;
                if (r < 0) {
                        if (!needed)
                                continue;
                        rs->rootless_hint = rs->rootless_hint || rootless;
                        r = aj_cgroup_unenforced(rs, "%s%s requested but cgroup '%s' cannot be created: %s",
                                                 c == AJ_CG_V1_FREEZER ? "freezing" : aj_cgroup_v1_name(c),
                                                 c == AJ_CG_V1_FREEZER ? "" : " limit", cg->plan.v1_run[c],
                                                 strerror(-r));
                        if (r < 0)
                                return r;
                        continue;
                }
                cg->have_v1[c] = true;
                /* Its files by this fd (failing, by path: slower, not wrong). */
                cg->v1_fd[c] = open(cg->plan.v1_run[c], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                /* No v2 directory to hold (a v1-only host, or a hybrid one that could not make
                 * it): the first v1 one is held instead (cgroup.h aj_cgroup_claim). */
                if (!cg->have_v2 && !held) {
                        r = aj_cg_lock_dir(cg->plan.v1_run[c], LOCK_SH, &cg->v1_lock_fd[c]);
                        if (r < 0)
                                return r;
                        held = true;
                }
        }
        return apply_limits(cg, limits, rs);
}

static int v1_attach(AjCgroup *cg, pid_t pid)
{
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!is_primary(cg, c))
                        continue;
                int r = aj_cg_attach(aj_cg_v1(cg, c), pid);
                if (r < 0)
                        return r;
        }
        return 0;
}

_Static_assert(_AJ_CG_V1_MAX <= AJ_CGROUP_V1_MAX, "cgroup.h's bound");

int aj_cgroup_v1_task_fds(AjCgroup *cg, int *fds, size_t max, size_t *ret_n)
{
        size_t n = 0;
        for (size_t c = 0; cg && c < _AJ_CG_V1_MAX; c++) {
                if (!is_primary(cg, c))
                        continue;
                int fd = n < max ? aj_cg_open(aj_cg_v1(cg, c), "tasks", O_WRONLY) : -E2BIG;
                if (fd < 0) {
                        for (size_t i = 0; i < n; i++)
                                close(fds[i]);
                        return fd;
                }
                fds[n++] = fd;
        }
        *ret_n = n;
        return 0;
}

static bool v1_can_freeze(const AjCgroup *cg) { return cg->have_v1[AJ_CG_V1_FREEZER]; }

static int v1_set_frozen(AjCgroup *cg, bool frozen)
{
        if (!v1_can_freeze(cg))
                return -EOPNOTSUPP;
        AjCgDir d = aj_cg_v1(cg, AJ_CG_V1_FREEZER);
        const char *want = frozen ? "FROZEN" : "THAWED";
        int r = aj_cg_write(d, "freezer.state", want);
        if (r < 0)
                return r;
        int64_t deadline = aj_now_monotonic_ms() + AJ_CG_WAIT_MS;
        for (long step = 1;; step = step < 10 ? step * 2 : 10) {
                _cleanup_free_ char *s = NULL;
                r = aj_cg_read(d, "freezer.state", &s);
                if (r < 0)
                        return r;
                s[strcspn(s, "\n")] = 0;
                if (streq(s, want))
                        return 0;
                if (aj_now_monotonic_ms() >= deadline) {
                        /* Undone, as v2's (cgroup-internal.h): FREEZING left behind froze the
                         * rest later, and a SIGKILLed task does not die while frozen. */
                        if (frozen)
                                (void)aj_cg_write(d, "freezer.state", "THAWED");
                        return -ETIMEDOUT;
                }
                /* A task stuck in FREEZING needs the write repeated. */
                if (frozen)
                        (void)aj_cg_write(d, "freezer.state", want);
                aj_sleep_ms(step);
        }
}

/* The directory whose cgroup.procs lists the run's tasks; false when it has none. */
static bool procs_dir(const AjCgroup *cg, AjCgDir *ret)
{
        static const size_t order[] = { AJ_CG_V1_FREEZER, AJ_CG_V1_PIDS, AJ_CG_V1_MEMORY, AJ_CG_V1_CPU,
                                        AJ_CG_V1_CPUACCT };
        for (size_t i = 0; i < ARRAY_SIZE(order); i++)
                if (cg->have_v1[order[i]]) {
                        *ret = aj_cg_v1(cg, order[i]);
                        return true;
                }
        return false;
}

/* Until no task is left in dir, or -ETIMEDOUT at the deadline. Whatever is found there is
 * SIGKILLed again: anything in a run's cgroup is the run's (a task root moved into this
 * hierarchy's directory alone, which the v2 tree's cgroup.kill does not reach), and a task
 * that was not running (frozen, in D state) takes its pending SIGKILL when it does. */
static int wait_empty(AjCgDir dir, int64_t deadline)
{
        int64_t start = aj_now_monotonic_ms();
        for (long step = 1;; step = step < 10 ? step * 2 : aj_now_monotonic_ms() - start < 1000 ? 10 : 100) {
                int r = aj_cg_signal_all(dir, SIGKILL);
                if (r < 0)
                        return aj_cg_removed_is_empty(r);
                if (r == 0)
                        return 0;
                int64_t left = deadline - aj_now_monotonic_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                aj_sleep_ms(step < left ? step : left);
        }
}

static int v1_kill(AjCgroup *cg, int64_t deadline)
{
        AjCgDir dir;
        if (!procs_dir(cg, &dir))
                return 0;
        /* Frozen tasks cannot fork, so one pass reaches every one of them;
         * thawing lets the pending SIGKILLs take effect. Without a freezer,
         * repeat until no task is left. */
        bool frozen = v1_can_freeze(cg) && v1_set_frozen(cg, true) >= 0;
        int r = 0;
        for (;;) {
                r = aj_cg_removed_is_empty(aj_cg_signal_all(dir, SIGKILL));
                if (r <= 0)
                        break;
                r = 0;
                if (frozen)
                        break;
                if (aj_now_monotonic_ms() >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                aj_sleep_ms(1);
        }
        if (frozen) {
                int q = aj_cg_removed_is_empty(v1_set_frozen(cg, false));
                if (q < 0 && r >= 0)
                        r = q;
        }
        if (r < 0)
                return r;
        return wait_empty(dir, deadline);
}

static int v1_pids(AjCgroup *cg, pid_t **ret, size_t *ret_n)
{
        AjCgDir dir;
        return procs_dir(cg, &dir) ? aj_cg_read_pids(dir, ret, ret_n) : -EOPNOTSUPP;
}

static int v1_stats(AjCgroup *cg, AjCgroupStats *st)
{
        uint64_t v;
        if (cg->have_v1[AJ_CG_V1_MEMORY]) {
                AjCgDir d = aj_cg_v1(cg, AJ_CG_V1_MEMORY);
                if (aj_cg_counter_u64(cg, d, "memory.usage_in_bytes", &v) >= 0)
                        st->memory_current = v;
                if (aj_cg_counter_u64(cg, d, "memory.max_usage_in_bytes", &v) >= 0)
                        st->memory_peak = v;
                if (aj_cg_counter_keyed(cg, d, "memory.oom_control", "oom_kill", &v) >= 0)
                        st->oom_kills = v;
                /* Some kernels (seen on 6.18) leave failcnt at 0 even when the
                 * limit forced an OOM kill; every OOM kill is a limit hit, so
                 * the kill count is a lower bound. */
                uint64_t hits = st->oom_kills;
                if (aj_cg_counter_u64(cg, d, "memory.failcnt", &v) >= 0 && v > hits)
                        hits = v;
                if (aj_cg_counter_u64(cg, d, "memory.memsw.failcnt", &v) >= 0 && v > hits)
                        hits = v;
                st->memory_max_events = hits;
        }
        if (cg->have_v1[AJ_CG_V1_PIDS]) {
                AjCgDir d = aj_cg_v1(cg, AJ_CG_V1_PIDS);
                if (aj_cg_counter_u64(cg, d, "pids.current", &v) >= 0)
                        st->pids_current = v;
                if (aj_cg_counter_keyed(cg, d, "pids.events", "max", &v) >= 0)
                        st->pids_max_events = v;
        }
        if (cg->have_v1[AJ_CG_V1_CPUACCT] &&
            aj_cg_counter_u64(cg, aj_cg_v1(cg, AJ_CG_V1_CPUACCT), "cpuacct.usage", &v) >= 0)
                st->cpu_usage_usec = v / 1000;
        if (cg->have_v1[AJ_CG_V1_FREEZER] && !cg->have_v2) {
                _cleanup_free_ char *s = NULL;
                if (aj_cg_counter(cg, aj_cg_v1(cg, AJ_CG_V1_FREEZER), "freezer.state", &s) >= 0)
                        st->frozen = strncmp(s, "FROZEN", 6) == 0;
        }
        return 0;
}

static int v1_open_event_fd(AjCgroup *cg, int *ret_fd)
{
        /* Only OOM has a v1 notification (cgroup.event_control on
         * memory.oom_control); pids.events is read at exit instead. */
        if (!cg->have_v1[AJ_CG_V1_MEMORY])
                return -ENODATA;
        AjCgDir d = aj_cg_v1(cg, AJ_CG_V1_MEMORY);
        _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return -errno;
        _cleanup_close_ int ofd = aj_cg_open(d, "memory.oom_control", O_RDONLY);
        if (ofd < 0)
                return ofd;
        char buf[64];
        snprintf(buf, sizeof(buf), "%d %d", efd, ofd);
        int r = aj_cg_write(d, "cgroup.event_control", buf);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(efd);
        return 0;
}

static void v1_event_ack(AjCgroup *cg)
{
        uint64_t v;
        while (read(cg->event_fd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
}

static int v1_remove(AjCgroup *cg, int64_t deadline)
{
        int r = 0;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!is_primary(cg, c))
                        continue;
                (void)wait_empty(aj_cg_v1(cg, c), deadline);
                int q = aj_cg_rmdir(cg->plan.v1_run[c], deadline);
                if (q < 0) {
                        if (r == 0)
                                r = q;
                        continue;
                }
                aj_cg_close_v1(cg, c);
                for (size_t o = 0; o < _AJ_CG_V1_MAX; o++)
                        if (cg->plan.v1_run[o] && streq(cg->plan.v1_run[o], cg->plan.v1_run[c]))
                                cg->have_v1[o] = false;
                aj_cg_rmdir_parent(cg->plan.v1_parent[c]);
        }
        return r;
}

const AjCgroupOps aj_cgroup_v1_ops = {
        .name = "v1",
        .create = v1_create,
        .attach = v1_attach,
        .set_frozen = v1_set_frozen,
        .can_freeze = v1_can_freeze,
        .kill = v1_kill,
        .pids = v1_pids,
        .stats = v1_stats,
        .open_event_fd = v1_open_event_fd,
        .event_ack = v1_event_ack,
        .remove = v1_remove,
};
