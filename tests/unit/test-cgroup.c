/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "cgroup.h"
#include "util/fd.h"
#include "util/strv.h"

/* ---------------------------------------------------------------- pure */

Test(cgroup_pure, cpu_max_format)
{
        char buf[64];
        cr_assert_eq(aj_cgroup_format_cpu_max(1.5, 100000, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "150000 100000");
        cr_assert_eq(aj_cgroup_format_cpu_max(0, 100000, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "max 100000");
        cr_assert_eq(aj_cgroup_format_cpu_max(0.5, 100000, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "50000 100000");
        cr_assert_eq(aj_cgroup_format_cpu_max(2, 50000, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "100000 50000");
        /* below the kernel's 1 ms minimum quota: rounded up, not dropped */
        cr_assert_eq(aj_cgroup_format_cpu_max(0.001, 100000, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "1000 100000");
        cr_assert_eq(aj_cgroup_format_cpu_max(-1, 100000, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(aj_cgroup_format_cpu_max(NAN, 100000, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(aj_cgroup_format_cpu_max(INFINITY, 100000, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(aj_cgroup_format_cpu_max(1, 0, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(aj_cgroup_format_cpu_max(1.5, 100000, buf, 5), -ENOBUFS);
}

Test(cgroup_pure, parse_keyed)
{
        const char *ev = "low 0\nhigh 2\nmax 5\noom 1\noom_kill 3\noom_group_kill 0\n";
        uint64_t v = 99;
        cr_assert_eq(aj_cgroup_parse_keyed(ev, "oom_kill", &v), 0);
        cr_assert_eq(v, 3);
        cr_assert_eq(aj_cgroup_parse_keyed(ev, "oom", &v), 0);
        cr_assert_eq(v, 1, "'oom' must not match the 'oom_kill' line");
        cr_assert_eq(aj_cgroup_parse_keyed(ev, "max", &v), 0);
        cr_assert_eq(v, 5);
        cr_assert_eq(aj_cgroup_parse_keyed("populated 1\nfrozen 0", "frozen", &v), 0);
        cr_assert_eq(v, 0);
        cr_assert_eq(aj_cgroup_parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill", &v), 0);
        cr_assert_eq(v, 7);
        v = 42;
        cr_assert_eq(aj_cgroup_parse_keyed(ev, "oom_", &v), -ENOENT);
        cr_assert_eq(aj_cgroup_parse_keyed(ev, "missing", &v), -ENOENT);
        cr_assert_eq(v, 42, "ret must not be written on failure");
        cr_assert_eq(aj_cgroup_parse_keyed("max abc\n", "max", &v), -EINVAL);
        cr_assert_eq(aj_cgroup_parse_keyed("max 12x\n", "max", &v), -EINVAL);
        cr_assert_eq(aj_cgroup_parse_keyed("max 99999999999999999999999\n", "max", &v), -ERANGE);
        cr_assert_eq(aj_cgroup_parse_keyed("", "max", &v), -ENOENT);
        cr_assert_eq(aj_cgroup_parse_keyed("usage_usec 123456\nuser_usec 1\n", "usage_usec", &v), 0);
        cr_assert_eq(v, 123456);
}

Test(cgroup_pure, run_id_validation)
{
        cr_assert(aj_cgroup_run_id_valid("abc"));
        cr_assert(aj_cgroup_run_id_valid("r-20240101_ABC-9"));
        char id64[65], id65[66];
        memset(id64, 'a', 64), id64[64] = 0;
        memset(id65, 'a', 65), id65[65] = 0;
        cr_assert(aj_cgroup_run_id_valid(id64));
        cr_assert_not(aj_cgroup_run_id_valid(id65));
        cr_assert_not(aj_cgroup_run_id_valid(""));
        cr_assert_not(aj_cgroup_run_id_valid(NULL));
        cr_assert_not(aj_cgroup_run_id_valid(".."));
        cr_assert_not(aj_cgroup_run_id_valid("a/b"));
        cr_assert_not(aj_cgroup_run_id_valid("a b"));
        cr_assert_not(aj_cgroup_run_id_valid("a.b"));
        cr_assert_not(aj_cgroup_run_id_valid("\xc3\xa9"));
}

static const char mountinfo_hybrid[] =
        "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

static const char mountinfo_unified[] =
        "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
        "rw,nsdelegate,memory_recursiveprot\n";

static const char mountinfo_legacy_comount[] =
        "31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:1 - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw shared:2 - cgroup cgroup rw,memory\n"
        "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";

Test(cgroup_pure, layout_hybrid)
{
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_hybrid, &l), 0);
        cr_assert_eq(l.mode, AJ_CGROUP_MODE_HYBRID);
        cr_assert_str_eq(l.v2_mount, "/sys/fs/cgroup/unified");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_MEMORY], "/sys/fs/cgroup/memory");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_PIDS], "/sys/fs/cgroup/pids");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_CPU], "/sys/fs/cgroup/cpu");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_CPUACCT], "/sys/fs/cgroup/cpuacct");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_FREEZER], "/sys/fs/cgroup/freezer");
        aj_cgroup_layout_done(&l);
}

Test(cgroup_pure, layout_unified_legacy_none)
{
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_unified, &l), 0);
        cr_assert_eq(l.mode, AJ_CGROUP_MODE_UNIFIED);
        cr_assert_str_eq(l.v2_mount, "/sys/fs/cgroup");
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                cr_assert_null(l.v1_mount[c]);
        aj_cgroup_layout_done(&l);

        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_legacy_comount, &l), 0);
        cr_assert_eq(l.mode, AJ_CGROUP_MODE_LEGACY);
        cr_assert_null(l.v2_mount);
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_CPU], "/sys/fs/cgroup/cpu,cpuacct");
        cr_assert_str_eq(l.v1_mount[AJ_CG_V1_CPUACCT], "/sys/fs/cgroup/cpu,cpuacct");
        aj_cgroup_layout_done(&l);

        cr_assert_eq(aj_cgroup_layout_from_mountinfo("22 28 0:21 / /sys rw - sysfs sysfs rw\n", &l), 0);
        cr_assert_eq(l.mode, AJ_CGROUP_MODE_NONE);
        aj_cgroup_layout_done(&l);

        /* escaped mount point */
        cr_assert_eq(aj_cgroup_layout_from_mountinfo("9 1 0:5 / /mnt/my\\040cg rw - cgroup2 none rw\n", &l), 0);
        cr_assert_eq(l.mode, AJ_CGROUP_MODE_UNIFIED);
        cr_assert_str_eq(l.v2_mount, "/mnt/my cg");
        aj_cgroup_layout_done(&l);
}

Test(cgroup_pure, proc_cgroup)
{
        const char *text = "12:pids:/user.slice/user-1000.slice\n"
                           "4:cpu,cpuacct:/a/b\n"
                           "1:name=systemd:/user.slice\n"
                           "0::/user.slice/user-1000.slice/session-2.scope\n";
        char *p = NULL;
        cr_assert_eq(aj_cgroup_parse_proc_cgroup(text, NULL, &p), 0);
        cr_assert_str_eq(p, "/user.slice/user-1000.slice/session-2.scope");
        free(p);
        cr_assert_eq(aj_cgroup_parse_proc_cgroup(text, "cpuacct", &p), 0);
        cr_assert_str_eq(p, "/a/b");
        free(p);
        cr_assert_eq(aj_cgroup_parse_proc_cgroup(text, "pids", &p), 0);
        cr_assert_str_eq(p, "/user.slice/user-1000.slice");
        free(p);
        p = NULL;
        cr_assert_eq(aj_cgroup_parse_proc_cgroup(text, "memory", &p), -ENOENT);
        cr_assert_eq(aj_cgroup_parse_proc_cgroup("4:cpu:/x\n", NULL, &p), -ENOENT);
        cr_assert_null(p);
}

Test(cgroup_pure, plan_unified_root_and_rootless)
{
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_unified, &l), 0);
        AjCgroupPlan p = { 0 };
        AjCgroupLimits lim = { .memory_max = 1 << 20, .pids_max = 10, .cpus = 1 };
        cr_assert_eq(aj_cgroup_plan_paths(&l, "r1", true, NULL, NULL, aj_cgroup_v1_needed(l.mode, &lim, true), &p), 0);
        cr_assert_str_eq(p.v2_parent, "/sys/fs/cgroup/agentjail");
        cr_assert_str_eq(p.v2_run, "/sys/fs/cgroup/agentjail/r1");
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                cr_assert_null(p.v1_run[c]);
        aj_cgroup_plan_done(&p);

        cr_assert_eq(aj_cgroup_plan_paths(&l, "r2", true, "/user.slice/u.service/", NULL, 0, &p), 0);
        cr_assert_str_eq(p.v2_run, "/sys/fs/cgroup/user.slice/u.service/agentjail/r2");
        aj_cgroup_plan_done(&p);

        cr_assert_eq(aj_cgroup_plan_paths(&l, "../x", true, NULL, NULL, 0, &p), -EINVAL);
        cr_assert_eq(aj_cgroup_plan_paths(&l, "r3", true, "/a/../b", NULL, 0, &p), -EINVAL);
        cr_assert_eq(aj_cgroup_plan_paths(&l, "r3", true, "relative", NULL, 0, &p), -EINVAL);
        aj_cgroup_layout_done(&l);
}

Test(cgroup_pure, strip_supervisor_leaf)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope/agentjail/0123456789ab.supervisor",
                  "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope" },
                { "/agentjail/abc.supervisor", "" },
                /* the last agentjail/ counts; anything else is left alone */
                { "/agentjail/x/agentjail/id-1.supervisor", "/agentjail/x" },
                { "/app.slice/run-r1.scope", "/app.slice/run-r1.scope" },
                { "/s/agentjail/0123456789ab", "/s/agentjail/0123456789ab" },
                { "/s/agentjail/.supervisor", "/s/agentjail/.supervisor" },
                { "/s/agentjail/a.b.supervisor", "/s/agentjail/a.b.supervisor" },
                { "/s/agentjail/x.supervisor/y", "/s/agentjail/x.supervisor/y" },
                { "/", "/" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *p = strdup(cases[i].in);
                aj_cgroup_strip_supervisor_leaf(p);
                cr_assert_str_eq(p, cases[i].out, "%s", cases[i].in);
                free(p);
        }
        aj_cgroup_strip_supervisor_leaf(NULL);
}

Test(cgroup_pure, plan_hybrid)
{
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_hybrid, &l), 0);
        AjCgroupLimits lim = { .memory_max = 64 << 20, .pids_max = 0, .cpus = 0.5 };
        unsigned mask = aj_cgroup_v1_needed(l.mode, &lim, true);
        cr_assert_eq(mask, AJ_CG_V1_BIT(AJ_CG_V1_MEMORY) | AJ_CG_V1_BIT(AJ_CG_V1_CPU));
        AjCgroupPlan p = { 0 };
        cr_assert_eq(aj_cgroup_plan_paths(&l, "run-7", true, NULL, NULL, mask, &p), 0);
        cr_assert_str_eq(p.v2_run, "/sys/fs/cgroup/unified/agentjail/run-7");
        cr_assert_str_eq(p.v2_parent, "/sys/fs/cgroup/unified/agentjail");
        cr_assert_str_eq(p.v1_run[AJ_CG_V1_MEMORY], "/sys/fs/cgroup/memory/agentjail/run-7");
        cr_assert_str_eq(p.v1_parent[AJ_CG_V1_MEMORY], "/sys/fs/cgroup/memory/agentjail");
        cr_assert_str_eq(p.v1_run[AJ_CG_V1_CPU], "/sys/fs/cgroup/cpu/agentjail/run-7");
        cr_assert_null(p.v1_run[AJ_CG_V1_PIDS]);
        cr_assert_null(p.v1_run[AJ_CG_V1_FREEZER]);
        cr_assert_null(p.v1_run[AJ_CG_V1_CPUACCT]);
        aj_cgroup_plan_done(&p);

        /* no limits: nothing on v1 at all; the freezer only if v2 cannot freeze */
        AjCgroupLimits none = { 0 };
        cr_assert_eq(aj_cgroup_v1_needed(AJ_CGROUP_MODE_HYBRID, &none, true), 0);
        cr_assert_eq(aj_cgroup_v1_needed(AJ_CGROUP_MODE_HYBRID, &none, false), AJ_CG_V1_BIT(AJ_CG_V1_FREEZER));
        cr_assert_eq(aj_cgroup_v1_needed(AJ_CGROUP_MODE_UNIFIED, &lim, false), 0);
        cr_assert_eq(aj_cgroup_v1_needed(AJ_CGROUP_MODE_LEGACY, &none, true),
                     AJ_CG_V1_BIT(AJ_CG_V1_FREEZER) | AJ_CG_V1_BIT(AJ_CG_V1_CPUACCT));
        aj_cgroup_layout_done(&l);
}

Test(cgroup_pure, plan_legacy_comounted_alias)
{
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_from_mountinfo(mountinfo_legacy_comount, &l), 0);
        AjCgroupLimits lim = { .cpus = 1 };
        AjCgroupPlan p = { 0 };
        char *bases[_AJ_CG_V1_MAX] = { 0 };
        bases[AJ_CG_V1_CPU] = "/me";
        bases[AJ_CG_V1_CPUACCT] = "/me";
        cr_assert_eq(aj_cgroup_plan_paths(&l, "x", true, NULL, bases, aj_cgroup_v1_needed(l.mode, &lim, false), &p), 0);
        cr_assert_null(p.v2_run);
        cr_assert_str_eq(p.v1_run[AJ_CG_V1_CPU], "/sys/fs/cgroup/cpu,cpuacct/me/agentjail/x");
        cr_assert_str_eq(p.v1_run[AJ_CG_V1_CPUACCT], "/sys/fs/cgroup/cpu,cpuacct/me/agentjail/x");
        cr_assert_not(p.v1_alias[AJ_CG_V1_CPU]);
        cr_assert(p.v1_alias[AJ_CG_V1_CPUACCT]);
        cr_assert_str_eq(p.v1_run[AJ_CG_V1_FREEZER], "/sys/fs/cgroup/freezer/agentjail/x");
        cr_assert_null(p.v1_run[AJ_CG_V1_MEMORY]);
        aj_cgroup_plan_done(&p);
        aj_cgroup_layout_done(&l);
}

Test(cgroup_pure, invalid_arguments)
{
        AjCgroup *cg = NULL;
        AjError err = {};
        cr_assert_eq(aj_cgroup_create("../etc", NULL, true, &cg, NULL, &err), -EINVAL);
        cr_assert_null(cg);
        AjCgroupLimits bad = { .cpus = -1 };
        cr_assert_eq(aj_cgroup_create("ok", &bad, true, &cg, NULL, &err), -EINVAL);
        aj_error_clear(&err);
        cr_assert_eq(aj_cgroup_open("a/b", &cg), -EINVAL);
        cr_assert_null(cg);
        cr_assert_str_eq(aj_cgroup_mode_name(AJ_CGROUP_MODE_HYBRID), "hybrid");
        cr_assert_str_eq(aj_cgroup_mode_name(AJ_CGROUP_MODE_UNIFIED), "unified");
}

/* ------------------------------------------------ v2 stats on a fake tree */

/* A pure-v2 run whose directory is a plain temporary directory: the v2 backend's
 * statistics read from files we write, as on a kernel of our choosing. */
static char fake_dir[] = "/tmp/ajtest-cgroup-XXXXXX";

static void fake_write(const char *file, const char *text)
{
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", fake_dir, file);
        FILE *f = fopen(p, "we");
        cr_assert_not_null(f, "%s", p);
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
}

static AjCgroup *fake_v2_run(void)
{
        cr_assert_not_null(mkdtemp(fake_dir));
        AjCgroup *cg = calloc(1, sizeof(*cg));
        cr_assert_not_null(cg);
        cg->mode = AJ_CGROUP_MODE_UNIFIED;
        cg->have_v2 = true;
        cg->v2_fd = cg->event_fd = -1;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                cg->v1_fd[c] = cg->v1_lock_fd[c] = -1;
        cg->plan.v2_run = strdup(fake_dir);
        fake_write("memory.max", "67108864\n");
        fake_write("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
        return cg;
}

static void fake_fini(void)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fake_dir);
        (void)system(cmd);
}

/* ------------------------------------ a kill's signals, on a fake cgroup.procs */

/* A process of ours that is no task of the run's: a host process. */
static pid_t host_process(void)
{
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                /* Gone with the test, whatever fails first. */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;)
                        pause();
        }
        return pid;
}

/* Whether pid (our child) dies within 200 ms; reaped if it does. */
static bool dies(pid_t pid)
{
        for (int i = 0; i < 40; i++) {
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return true;
                usleep(5000);
        }
        return false;
}

TestSuite(cgroup_signal, .fini = fake_fini);

/* A kill reads cgroup.procs, then signals what it read. A task listed that exits and is reaped
 * in between leaves its pid to the host's next fork (the agent's processes die fast once
 * thawed with a SIGKILL pending, reaped at once under SIGCHLD ignored; pid_max may be 32768):
 * a kill(2) by number then hit that host process, as root. Here the host process is one of
 * ours, listed when the list was read and gone from it by the time of the signal. */
Test(cgroup_signal, a_pid_no_longer_listed_is_not_signalled)
{
        cr_assert_not_null(mkdtemp(fake_dir));
        AjCgDir dir = aj_cg_path(fake_dir);
        pid_t host = host_process();
        char line[32];
        snprintf(line, sizeof(line), "%d\n", (int)host);
        fake_write("cgroup.procs", line);
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        cr_assert_eq(aj_cg_read_pids(dir, &pids, &n), 0);
        cr_assert_eq(n, 1);

        fake_write("cgroup.procs", "");
        cr_assert_eq(aj_cg_signal_listed(dir, SIGKILL, pids, n), 0);
        cr_assert(!dies(host), "pid %d, read from cgroup.procs but no longer there, was signalled", (int)host);

        /* Still listed: signalled, by the listing's reader too. */
        fake_write("cgroup.procs", line);
        cr_assert_eq(aj_cg_signal_listed(dir, SIGKILL, pids, n), 0);
        cr_assert(dies(host), "a pid still listed was not signalled");
        host = host_process();
        snprintf(line, sizeof(line), "%d\n", (int)host);
        fake_write("cgroup.procs", line);
        cr_assert_eq(aj_cg_signal_all(dir, SIGKILL), 1);
        cr_assert(dies(host));
}

/* More than one batch of pidfds, and a listed pid that is no process's: every listed process is
 * signalled, the gone one skipped. */
Test(cgroup_signal, every_batch_is_signalled)
{
        cr_assert_not_null(mkdtemp(fake_dir));
        enum { N = 70 };
        pid_t kids[N];
        char text[N * 12 + 16] = "";
        size_t len = 0;
        for (size_t i = 0; i < N; i++) {
                kids[i] = host_process();
                len += (size_t)snprintf(text + len, sizeof(text) - len, "%d\n", (int)kids[i]);
        }
        /* A pid past pid_max's largest value: no process has it. */
        snprintf(text + len, sizeof(text) - len, "%d\n", 4194304 + 1);
        fake_write("cgroup.procs", text);
        cr_assert_eq(aj_cg_signal_all(aj_cg_path(fake_dir), SIGKILL), N + 1);
        for (size_t i = 0; i < N; i++)
                cr_assert(dies(kids[i]), "child %zu of %d was not signalled", i, N);
}

TestSuite(cgroup_v2_stats, .fini = fake_fini);

Test(cgroup_v2_stats, memory_peak_from_the_kernel)
{
        AjCgroup *cg = fake_v2_run();
        fake_write("memory.current", "4096\n");
        fake_write("memory.peak", "123456789\n");
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(cg, &st), 0);
        cr_assert_eq(st.memory_peak, 123456789);
        cr_assert_eq(st.memory_current, 4096);
        aj_cgroup_free(cg);
}

/* The kernel shows a controller in a parent's subtree_control before it has made the
 * controller's files in the children (another run may be in the middle of enabling it,
 * holding the cgroup lock): a run must still write it, and so wait for that lock, rather
 * than trust the mask and find memory.max missing (CI: "4 concurrent limited runs"). */
Test(cgroup_v2_stats, enabled_controllers_are_written_again)
{
        cr_assert_not_null(mkdtemp(fake_dir));
        char parent[512], run[600], p[700];
        snprintf(parent, sizeof(parent), "%s/agentjail", fake_dir);
        snprintf(run, sizeof(run), "%s/0123456789ab", parent);
        cr_assert_eq(mkdir(parent, 0755), 0);
        const char *dirs[] = { fake_dir, parent };
        for (size_t i = 0; i < 2; i++) {
                snprintf(p, sizeof(p), "%s/cgroup.controllers", dirs[i]);
                cr_assert_eq(aj_write_file_atomic(p, "cpu memory pids\n", 16, 0644), 0);
                snprintf(p, sizeof(p), "%s/cgroup.subtree_control", dirs[i]);
                cr_assert_eq(aj_write_file_atomic(p, "cpu memory pids\n", 16, 0644), 0);
        }
        AjCgroup *cg = calloc(1, sizeof(*cg));
        cr_assert_not_null(cg);
        cg->mode = AJ_CGROUP_MODE_UNIFIED;
        cg->v2_fd = cg->event_fd = -1;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                cg->v1_fd[c] = cg->v1_lock_fd[c] = -1;
        cg->run_id = strdup("0123456789ab");
        cg->plan.v2_parent = strdup(parent);
        cg->plan.v2_run = strdup(run);
        AjCgroupLimits limits = { .memory_max = 64 << 20, .pids_max = 64 };
        AjCgroupReasons rs = { .allow_degraded = true };
        /* The fake run directory has no memory.max: that is reported, degraded. */
        cr_assert_eq(aj_cgroup_v2_ops.create(cg, &limits, &rs), 0);
        cr_assert_not_null(rs.text);
        cr_assert_not_null(strstr(rs.text, "memory.max"), "%s", rs.text);
        _cleanup_free_ char *sub = NULL;
        cr_assert_eq(aj_cg_read(aj_cg_path(parent), "cgroup.subtree_control", &sub), 0);
        cr_assert_eq(strncmp(sub, "+memory +pids", 13), 0,
                     "memory and pids read as enabled, and were not written: '%s'", sub);
        free(rs.text);
        aj_cgroup_free(cg);
}

/* Before Linux 5.19 there is no memory.peak: the peak is still a lower bound that
 * never goes down, and at least the limit once the kernel said usage reached it. */
Test(cgroup_v2_stats, memory_peak_without_memory_peak_file)
{
        AjCgroup *cg = fake_v2_run();
        AjCgroupStats st;
        fake_write("memory.current", "5000000\n");
        cr_assert_eq(aj_cgroup_stats(cg, &st), 0);
        cr_assert_eq(st.memory_peak, 5000000);
        fake_write("memory.current", "1000\n");
        cr_assert_eq(aj_cgroup_stats(cg, &st), 0);
        cr_assert_eq(st.memory_peak, 5000000, "the peak went down to %llu", (unsigned long long)st.memory_peak);
        /* an OOM kill at the limit; the memory is freed by the time we look */
        fake_write("memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n");
        cr_assert_eq(aj_cgroup_stats(cg, &st), 0);
        cr_assert_eq(st.oom_kills, 1);
        cr_assert_eq(st.memory_peak, 67108864);
        aj_cgroup_free(cg);
}

/* ---------------------------------------------------------------- live */

#define MAX_CHILDREN 8

static AjCgroup *live_cg;
static char **live_paths; /* copy, for the fallback cleanup */
static pid_t live_children[MAX_CHILDREN];
static size_t n_live_children;
static char live_id[64];

static void live_fini(void)
{
        for (size_t i = 0; i < n_live_children; i++) {
                if (live_children[i] > 0) {
                        kill(live_children[i], SIGKILL);
                        waitpid(live_children[i], NULL, 0);
                }
        }
        n_live_children = 0;
        if (live_cg) {
                aj_cgroup_destroy(live_cg);
                live_cg = NULL;
        }
        /* If destroy failed half-way, leave nothing behind regardless. */
        for (char **p = live_paths; p && *p; p++)
                (void)rmdir(*p);
        aj_strv_free(live_paths);
        live_paths = NULL;
        static const char *const parents[] = { "/sys/fs/cgroup/agentjail",        "/sys/fs/cgroup/unified/agentjail",
                                               "/sys/fs/cgroup/memory/agentjail", "/sys/fs/cgroup/pids/agentjail",
                                               "/sys/fs/cgroup/cpu/agentjail",    "/sys/fs/cgroup/cpuacct/agentjail",
                                               "/sys/fs/cgroup/freezer/agentjail" };
        for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++)
                (void)rmdir(parents[i]); /* fails harmlessly while another run uses it */
}

static void require_live(void)
{
        AjCgroupMode m = AJ_CGROUP_MODE_NONE;
        const char *why = NULL;
        if (geteuid() != 0)
                why = "not root";
        else if (aj_cgroup_detect(&m) < 0 || m == AJ_CGROUP_MODE_NONE)
                why = "no cgroup hierarchy";
        if (!why)
                return;
        const char *strict = getenv("AGENTJAIL_TEST_STRICT");
        if (strict && streq(strict, "1"))
                cr_assert_fail("live cgroup test cannot run (%s) and AGENTJAIL_TEST_STRICT=1", why);
        cr_skip_test("live cgroup test skipped: %s", why);
}

static void live_create(const char *name, const AjCgroupLimits *lim)
{
        require_live();
        snprintf(live_id, sizeof(live_id), "ajtest-%d-%s", (int)getpid(), name);
        char *unenforced = NULL;
        AjError err = {};
        int r = aj_cgroup_create(live_id, lim, false, &live_cg, &unenforced, &err);
        cr_assert_eq(r, 0, "aj_cgroup_create: %s (%s)", strerror(-r), err.message ?: "");
        cr_assert_null(unenforced, "unexpected degradation: %s", unenforced);
        live_paths = aj_strv_copy(aj_cgroup_paths(live_cg));
        cr_assert_not_null(live_paths);
}

/* A child that waits for `go` before running `body`, so it is attached first. */
static pid_t spawn_waiting(void (*body)(void *), void *arg, int *ret_go)
{
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char c;
                close(p[1]);
                if (read(p[0], &c, 1) != 1)
                        _exit(3);
                body(arg);
                _exit(0);
        }
        close(p[0]);
        cr_assert_lt(n_live_children, MAX_CHILDREN);
        live_children[n_live_children++] = pid;
        *ret_go = p[1];
        return pid;
}

static void attach_and_go(pid_t pid, int go)
{
        cr_assert_eq(aj_cgroup_attach(live_cg, pid, false), 0);
        cr_assert_eq(write(go, "x", 1), 1);
        close(go);
}

static void forget_child(pid_t pid)
{
        for (size_t i = 0; i < n_live_children; i++)
                if (live_children[i] == pid)
                        live_children[i] = 0;
}

static bool read_path_file(const char *dir, const char *file, char *buf, size_t len)
{
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, file);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, len - 1);
        close(fd);
        if (n < 0)
                return false;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return true;
}

static const char *v2_run_path(void)
{
        for (char *const *p = aj_cgroup_paths(live_cg); *p; p++) {
                char b[256];
                if (read_path_file(*p, "cgroup.events", b, sizeof(b)))
                        return *p;
        }
        return NULL;
}

static void sleep_ms(long ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

TestSuite(cgroup_live, .fini = live_fini);

Test(cgroup_live, limits_written)
{
        AjCgroupLimits lim = { .memory_max = 64ULL << 20, .pids_max = 16, .cpus = 0.5 };
        live_create("limits", &lim);
        bool mem = false, pids = false, cpu = false;
        for (char *const *p = aj_cgroup_paths(live_cg); *p; p++) {
                char b[256];
                cr_assert_eq(strncmp(*p, "/sys/fs/cgroup/", 15), 0, "%s", *p);
                cr_assert(strstr(*p, "/agentjail/ajtest-"), "%s", *p);
                if (read_path_file(*p, "memory.max", b, sizeof(b))) {
                        cr_assert_str_eq(b, "67108864");
                        if (read_path_file(*p, "memory.swap.max", b, sizeof(b)))
                                cr_assert_str_eq(b, "0");
                        mem = true;
                }
                if (read_path_file(*p, "memory.limit_in_bytes", b, sizeof(b))) {
                        cr_assert_str_eq(b, "67108864");
                        if (read_path_file(*p, "memory.memsw.limit_in_bytes", b, sizeof(b)))
                                cr_assert_str_eq(b, "67108864");
                        mem = true;
                }
                if (read_path_file(*p, "pids.max", b, sizeof(b))) {
                        cr_assert_str_eq(b, "16");
                        pids = true;
                }
                if (read_path_file(*p, "cpu.max", b, sizeof(b))) {
                        cr_assert_str_eq(b, "50000 100000");
                        cpu = true;
                }
                if (read_path_file(*p, "cpu.cfs_quota_us", b, sizeof(b))) {
                        cr_assert_str_eq(b, "50000");
                        cr_assert(read_path_file(*p, "cpu.cfs_period_us", b, sizeof(b)));
                        cr_assert_str_eq(b, "100000");
                        cpu = true;
                }
        }
        cr_assert(mem && pids && cpu, "memory %d pids %d cpu %d", mem, pids, cpu);

        AjCgroupMode m;
        cr_assert_eq(aj_cgroup_detect(&m), 0);
        if (m == AJ_CGROUP_MODE_UNIFIED || m == AJ_CGROUP_MODE_HYBRID)
                cr_assert_geq(aj_cgroup_v2_fd(live_cg), 0);

        /* a second run with the same id is refused and does not harm the first */
        AjCgroup *dup = NULL;
        AjError err = {};
        cr_assert_eq(aj_cgroup_create(live_id, &lim, true, &dup, NULL, &err), -EEXIST);
        aj_error_clear(&err);
        struct stat st;
        for (char *const *p = aj_cgroup_paths(live_cg); *p; p++)
                cr_assert_eq(stat(*p, &st), 0, "%s removed by the failed duplicate", *p);

        /* re-open from "another process" finds the same directories */
        AjCgroup *o = NULL;
        cr_assert_eq(aj_cgroup_open(live_id, &o), 0);
        char *const *a = aj_cgroup_paths(live_cg), *const *b = aj_cgroup_paths(o);
        cr_assert_eq(aj_strv_length(a), aj_strv_length(b));
        for (size_t i = 0; a[i]; i++)
                cr_assert(aj_strv_contains(b, a[i]), "%s", a[i]);
        aj_cgroup_free(o);
        cr_assert_eq(aj_cgroup_open("ajtest-does-not-exist", &o), -ENOENT);
}

/* A process of one thread moves itself into every v1 hierarchy through the `tasks` files
 * (what the jail's init does with aj_cgroup_v1_task_fds()): each v1 directory's cgroup.procs
 * then lists it and only it, not the opener. */
static bool is_v1_dir(const char *dir) { return !aj_cg_exists(aj_cg_path(dir), "cgroup.controllers"); }

Test(cgroup_live, v1_tasks_fds_move_the_writer)
{
        AjCgroupLimits lim = { .memory_max = 64ULL << 20, .pids_max = 16 };
        live_create("tasks", &lim);
        int fds[AJ_CGROUP_V1_MAX];
        size_t n = 99;
        cr_assert_eq(aj_cgroup_v1_task_fds(live_cg, fds, ARRAY_SIZE(fds), &n), 0);
        size_t v1_dirs = 0;
        for (char *const *p = aj_cgroup_paths(live_cg); *p; p++)
                v1_dirs += is_v1_dir(*p);
        cr_assert_eq(n, v1_dirs, "%zu fds for %zu v1 directories", n, v1_dirs);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

        pid_t mover = fork();
        cr_assert_geq(mover, 0);
        if (mover == 0) {
                for (size_t i = 0; i < n; i++)
                        if (write(fds[i], "0", 1) != 1)
                                _exit(2);
                pause();
                _exit(0);
        }
        cr_assert_lt(n_live_children, MAX_CHILDREN);
        live_children[n_live_children++] = mover;
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
        char want[32];
        snprintf(want, sizeof(want), "%d", (int)mover);
        for (int tries = 0;; tries++) {
                size_t listed = 0;
                for (char *const *p = aj_cgroup_paths(live_cg); *p; p++) {
                        char b[256];
                        if (is_v1_dir(*p) && read_path_file(*p, "cgroup.procs", b, sizeof(b)))
                                listed += streq(b, want);
                }
                if (listed == v1_dirs)
                        break;
                cr_assert_lt(tries, 2000, "the writer is in %zu of %zu v1 directories", listed, v1_dirs);
                sleep_ms(5);
        }
}

static volatile uint64_t *counter;

static void spin(void *arg)
{
        for (;;)
                (*counter)++;
}

static pid_t proc_state(pid_t pid, char *ret_state)
{
        char p[64], b[512];
        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t n = read(fd, b, sizeof(b) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        b[n] = 0;
        char *rp = strrchr(b, ')');
        if (!rp || !rp[1] || !rp[2])
                return -1;
        *ret_state = rp[2];
        return 0;
}

/* A task of the run counting in `counter` (shared with us), once it has started counting. */
static pid_t start_spinner(void)
{
        counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq((void *)counter, MAP_FAILED);
        int go;
        pid_t pid = spawn_waiting(spin, NULL, &go);
        attach_and_go(pid, go);
        while (*counter == 0)
                sleep_ms(1);
        return pid;
}

Test(cgroup_live, freeze_thaw)
{
        live_create("freeze", NULL);
        pid_t pid = start_spinner();

        pid_t *pids = NULL;
        size_t n = 0;
        cr_assert_eq(aj_cgroup_pids(live_cg, &pids, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(pids[0], pid);
        free(pids);

        cr_assert_eq(aj_cgroup_freeze(live_cg), 0);
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert(st.frozen);
        const char *v2 = v2_run_path();
        if (v2) {
                char b[256];
                cr_assert(read_path_file(v2, "cgroup.events", b, sizeof(b)));
                uint64_t f = 0;
                char all[256];
                cr_assert(read_path_file(v2, "cgroup.freeze", all, sizeof(all)));
                cr_assert_str_eq(all, "1");
                int fd = open(v2, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                char *ev = NULL;
                cr_assert_eq(aj_read_file_at(fd, "cgroup.events", 4096, &ev, NULL), 0);
                close(fd);
                cr_assert_eq(aj_cgroup_parse_keyed(ev, "frozen", &f), 0);
                cr_assert_eq(f, 1, "%s", ev);
                free(ev);
        }
        char state = 0;
        cr_assert_eq(proc_state(pid, &state), 0);
        cr_assert_neq(state, 'R', "a frozen task must not be running");
        uint64_t c1 = *counter;
        sleep_ms(200);
        cr_assert_eq(*counter, c1, "counter advanced while frozen");

        cr_assert_eq(aj_cgroup_thaw(live_cg), 0);
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert_not(st.frozen);
        sleep_ms(100);
        cr_assert_gt(*counter, c1, "counter did not advance after thaw");
        cr_assert_gt(st.cpu_usage_usec, 0);
        munmap((void *)counter, 4096);
}

/* A task of the run that does not reach the freezer, as one in uninterruptible sleep (a sync(2)
 * on a loaded disk, a hung NFS read) does not for as long as it lasts: a thread whose read(2)
 * into a page its process has not filled waits in the kernel for a userfaultfd to serve the
 * fault. A fault taken in the kernel gives up only for a fatal signal, so neither freezer (v1
 * or v2) gets the thread to its trap. The process's main thread serves the userfaultfd: it
 * says the fault waits (HELD), counts in COUNT, and lets the fault go (closing the userfaultfd)
 * once LET_GO is set. Shared with the test through `counter`. */
enum { COUNT, HELD, LET_GO };

static void *read_into(void *page)
{
        int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        (void)!read(fd, page, 4096);
        return NULL;
}

static void spin_with_a_held_thread(void *arg)
{
        int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
        struct uffdio_api api = { .api = UFFD_API };
        if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
                _exit(10);
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct uffdio_register reg = { .range = { (uintptr_t)page, 4096 }, .mode = UFFDIO_REGISTER_MODE_MISSING };
        if (page == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
                _exit(11);
        pthread_t t;
        struct uffd_msg msg;
        if (pthread_create(&t, NULL, read_into, page) != 0 || read(uffd, &msg, sizeof(msg)) != sizeof(msg))
                _exit(12);
        counter[HELD] = 1;
        while (!counter[LET_GO])
                counter[COUNT]++;
        close(uffd); /* the fault is served as an ordinary one */
        spin(arg);
}

/* A freeze that does not complete in its time (a task that does not reach the freezer) fails,
 * and leaves the run as it was. Before, cgroup.freeze stayed 1: the kernel froze the run behind
 * the caller's back once the task got there. The supervisor had said the freeze failed and went
 * on calling the run running (its wall clock counting, a thaw doing nothing, as the run was not
 * frozen for it) while it was frozen for good; the v1 freezer's kill, which thaws what it froze
 * only when its freeze succeeded, left FREEZING behind it, where a SIGKILLed task does not die.
 * Whichever freezer the host gives the run (v2's on a pure v2 or hybrid host, else v1's). */
Test(cgroup_live, a_freeze_that_does_not_complete_is_undone)
{
        live_create("stuck", NULL);
        counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq((void *)counter, MAP_FAILED);
        int go;
        pid_t pid = spawn_waiting(spin_with_a_held_thread, NULL, &go);
        attach_and_go(pid, go);
        for (int i = 0; i < 5000 && !(counter[HELD] && counter[COUNT]); i++)
                sleep_ms(1);
        int status;
        cr_assert(counter[HELD] && counter[COUNT], "the task's thread is held in its fault (child: %s)",
                  waitpid(pid, &status, WNOHANG) == pid ? "exited" : "running");

        cr_assert_lt(aj_cgroup_freeze(live_cg), 0, "a freeze the held thread keeps from completing fails");
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_expect_not(st.frozen, "a freeze that failed says frozen");
        const char *v2 = v2_run_path();
        char b[64] = "";
        if (v2) {
                cr_assert(read_path_file(v2, "cgroup.freeze", b, sizeof(b)));
                cr_expect_str_eq(b, "0", "the failed freeze is undone: cgroup.freeze is 0 again");
        }
        for (char *const *p = aj_cgroup_paths(live_cg); *p; p++)
                if (read_path_file(*p, "freezer.state", b, sizeof(b)))
                        cr_expect_str_eq(b, "THAWED", "the failed freeze is undone: %s/freezer.state", *p);
        uint64_t c1 = counter[COUNT];
        sleep_ms(200);
        cr_expect_gt(counter[COUNT], c1, "the rest of the run goes on: it was not frozen behind the caller's back");

        /* The thread let go: the run is still not frozen once it could be, and a freeze now works. */
        counter[LET_GO] = 1;
        sleep_ms(200);
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_expect_not(st.frozen, "the run froze once the held thread got to the freezer");
        c1 = counter[COUNT];
        sleep_ms(200);
        cr_expect_gt(counter[COUNT], c1, "the run goes on once the thread is let go");
        cr_expect_eq(aj_cgroup_freeze(live_cg), 0, "a freeze then succeeds");
        cr_expect_eq(aj_cgroup_thaw(live_cg), 0);
        munmap((void *)counter, 4096);
}

static int result_pipe[2];

static void fork_bomb(void *arg)
{
        uint32_t forks = 0;
        for (int i = 0; i < 10000; i++) {
                pid_t p = fork();
                if (p < 0)
                        break;
                if (p == 0) {
                        pause();
                        _exit(0);
                }
                forks++;
        }
        (void)!write(result_pipe[1], &forks, sizeof(forks));
        pause();
}

Test(cgroup_live, pids_max_stops_fork_bomb)
{
        AjCgroupLimits lim = { .pids_max = 16 };
        live_create("pids", &lim);
        cr_assert_eq(pipe2(result_pipe, O_CLOEXEC), 0);
        int go;
        pid_t pid = spawn_waiting(fork_bomb, NULL, &go);
        attach_and_go(pid, go);
        struct pollfd pfd = { .fd = result_pipe[0], .events = POLLIN };
        cr_assert_eq(poll(&pfd, 1, 10000), 1, "fork bomb was not stopped");
        uint32_t forks = 0;
        cr_assert_eq(read(result_pipe[0], &forks, sizeof(forks)), (ssize_t)sizeof(forks));
        cr_assert_gt(forks, 0);
        cr_assert_leq(forks, 15, "%u forks succeeded past pids.max=16", forks);
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert_gt(st.pids_max_events, 0);
        cr_assert_leq(st.pids_current, 16);
        cr_assert_geq(st.pids_current, forks + 1);

        cr_assert_eq(aj_cgroup_kill(live_cg), 0);
        pid_t *pids = NULL;
        size_t n = 99;
        cr_assert_eq(aj_cgroup_pids(live_cg, &pids, &n), 0);
        free(pids);
        cr_assert_eq(n, 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        forget_child(pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close(result_pipe[0]);
        close(result_pipe[1]);
}

static void memory_bomb(void *arg)
{
        for (int i = 0; i < 512; i++) {
                char *p = malloc(1 << 20);
                if (!p)
                        _exit(2);
                memset(p, i | 1, 1 << 20);
        }
        _exit(0); /* not reached under a 32M limit */
}

Test(cgroup_live, oom_kill_reported)
{
        AjCgroupLimits lim = { .memory_max = 32ULL << 20 };
        live_create("oom", &lim);
        int efd = aj_cgroup_event_fd(live_cg);
        cr_assert_geq(efd, 0, "no event fd");
        struct pollfd pfd = { .fd = efd, .events = POLLIN | POLLPRI };
        cr_assert_eq(poll(&pfd, 1, 0), 0, "event fd readable before anything happened");

        int go;
        pid_t pid = spawn_waiting(memory_bomb, NULL, &go);
        attach_and_go(pid, go);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        forget_child(pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status 0x%x", status);

        cr_assert_eq(poll(&pfd, 1, 10000), 1, "event fd did not become readable");
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert_geq(st.oom_kills, 1);
        cr_assert_gt(st.memory_max_events, 0);
        cr_assert_geq(st.memory_peak, 16ULL << 20);
        cr_assert_leq(st.memory_peak, 32ULL << 20);
        /* kernfs sends its notifications from a work item: one for a counter the OOM moved
         * late can come after an ack (it did in the pure v2 VM, under emulation). Each ack
         * drains what is there; once they stop coming, the fd stays quiet. */
        bool drained = false;
        for (int i = 0; i < 50 && !drained; i++) {
                aj_cgroup_event_ack(live_cg);
                drained = poll(&pfd, 1, 100) == 0;
        }
        cr_assert(drained, "ack did not drain the event fd");
}

static void fork_and_sleep(void *arg)
{
        if (fork() == 0) {
                pause();
                _exit(0);
        }
        pause();
}

/* How many of this process's fds are open on one of `paths` (below: on a file in one). */
static size_t fds_at(char *const *paths, bool below)
{
        DIR *d = opendir("/proc/self/fd");
        cr_assert_not_null(d);
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
                char link[300], target[PATH_MAX];
                snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
                ssize_t l = readlink(link, target, sizeof(target) - 1);
                if (l <= 0)
                        continue;
                target[l] = 0;
                for (char *const *p = paths; *p; p++) {
                        size_t len = strlen(*p);
                        n += below ? strncmp(target, *p, len) == 0 && target[len] == '/' : streq(target, *p);
                }
        }
        closedir(d);
        return n;
}

static size_t fds_on(char *const *paths) { return fds_at(paths, false); }

/* Three children in live_cg, each forked once: six tasks, seen in pids.current. */
static void start_three_forking(pid_t pids[3])
{
        for (int i = 0; i < 3; i++) {
                int go;
                pids[i] = spawn_waiting(fork_and_sleep, NULL, &go);
                attach_and_go(pids[i], go);
        }
        AjCgroupStats st;
        for (int tries = 0; tries < 15000; tries++) { /* 30 s at most: each child forks when it runs */
                cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
                if (st.pids_current >= 6)
                        break;
                sleep_ms(2);
        }
        cr_assert_eq(st.pids_current, 6);
}

/* start_three_forking()'s children, each dead of SIGKILL. */
static void reap_killed(const pid_t pids[3])
{
        for (int i = 0; i < 3; i++) {
                int status;
                cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
                forget_child(pids[i]);
                cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        }
}

/* Each of the run's directories is held by an fd its files are opened relative to, from its
 * creation to its removal, and none is left after. */
static void kill_and_destroy(bool v1_only)
{
        live_create("kill", &(AjCgroupLimits){ .memory_max = 128ULL << 20, .pids_max = 64, .cpus = 1 });
        if (v1_only)
                cr_assert_null(v2_run_path(), "v1 directories only");
        cr_expect_geq(fds_on(aj_cgroup_paths(live_cg)), aj_strv_length((char **)aj_cgroup_paths(live_cg)),
                      "a directory of the run without its fd");
        pid_t pids[3];
        start_three_forking(pids);
        cr_assert_eq(aj_cgroup_kill(live_cg), 0);
        reap_killed(pids);
        pid_t *left = NULL;
        size_t n = 99;
        cr_assert_eq(aj_cgroup_pids(live_cg, &left, &n), 0);
        free(left);
        cr_assert_eq(n, 0);

        char **paths = aj_strv_copy(aj_cgroup_paths(live_cg));
        cr_assert_geq(aj_strv_length(paths), 1);
        AjCgroup *cg = live_cg;
        live_cg = NULL;
        cr_assert_eq(aj_cgroup_destroy(cg), 0);
        struct stat s;
        for (char **p = paths; *p; p++)
                cr_assert(stat(*p, &s) < 0 && errno == ENOENT, "%s still exists", *p);
        cr_expect_eq(fds_on(paths), 0, "an fd of a removed directory is left open");
        aj_strv_free(paths);
}

Test(cgroup_live, kill_and_destroy_remove_everything) { kill_and_destroy(false); }

/* The v1 kill (freeze, signal, thaw, then signal again until empty: each signal through a
 * pidfd of a task still listed), on this host's v1 hierarchies alone. */
Test(cgroup_live, kill_and_destroy_on_a_v1_only_host)
{
        require_live();
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_load(&l), 0);
        bool have_v1 = l.v1_mount[AJ_CG_V1_MEMORY] && l.v1_mount[AJ_CG_V1_FREEZER] && l.v1_mount[AJ_CG_V1_PIDS] &&
                       l.v1_mount[AJ_CG_V1_CPU];
        if (!have_v1) {
                /* A pure v2 host (the test VM): no v1 kill to run, so the signalling it relies on,
                 * each listed task through a pidfd, on a live run's v2 directory instead. */
                aj_cgroup_layout_done(&l);
                live_create("sig", &(AjCgroupLimits){ .pids_max = 64 });
                pid_t pids[3];
                start_three_forking(pids);
                cr_assert_eq(aj_cg_signal_all(aj_cg_v2(live_cg), SIGKILL), 6);
                reap_killed(pids);
                AjCgroupStats st;
                cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
                for (int tries = 0; tries < 15000 && st.pids_current > 0; tries++) {
                        sleep_ms(2);
                        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
                }
                cr_assert_eq(st.pids_current, 0, "a listed task outlived its SIGKILL");
                AjCgroup *cg = live_cg;
                live_cg = NULL;
                cr_assert_eq(aj_cgroup_destroy(cg), 0);
                return;
        }
        free(l.v2_mount);
        l.v2_mount = NULL;
        l.mode = AJ_CGROUP_MODE_LEGACY;
        cr_assert_eq(aj_cgroup_layout_override(&l), 0);
        aj_cgroup_layout_done(&l);
        kill_and_destroy(true);
}

/* The counters kept open (a run keeps them once its command runs) are read through their fds
 * from then on, each time what it counts now, no file opened again; they go with the removal. */
Test(cgroup_live, kept_counters_read_now_and_go_with_the_removal)
{
        live_create("keep", &(AjCgroupLimits){ .memory_max = 128ULL << 20, .pids_max = 64 });
        char **paths = aj_strv_copy(aj_cgroup_paths(live_cg));
        cr_assert_eq(fds_at(paths, true), 0);
        int kept = aj_cgroup_keep_counters(live_cg);
        cr_assert_geq(kept, 3, "kept %d", kept); /* cpu usage, pids.current, pids.events at least */
        cr_assert_eq(fds_at(paths, true), (size_t)kept);
        AjCgroupStats st;
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert_eq(st.pids_current, 0);
        int go;
        pid_t pid = spawn_waiting(fork_and_sleep, NULL, &go);
        attach_and_go(pid, go);
        for (int tries = 0; tries < 15000 && st.pids_current < 2; tries++) { /* 30 s at most */
                sleep_ms(2);
                cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        }
        cr_assert_eq(st.pids_current, 2, "a kept counter read what it counted before");
        /* The two forks' CPU: cpu.stat (v2, both kinds of host) read again, not at its end. */
        cr_assert_eq(aj_cgroup_stats(live_cg, &st), 0);
        cr_assert_gt(st.cpu_usage_usec, 0, "a kept counter read at its end");
        cr_assert_eq(fds_at(paths, true), (size_t)kept, "the stats opened files of their own");
        AjCgroup *cg = live_cg;
        live_cg = NULL;
        cr_assert_eq(aj_cgroup_destroy(cg), 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        forget_child(pid);
        cr_expect_eq(fds_at(paths, true), 0, "a kept counter is left open after the removal");
        aj_strv_free(paths);
}

static void *pause_thread(void *arg)
{
        (void)arg;
        for (;;)
                pause();
        return NULL;
}

/* `arg` (a size_t) threads, each waiting. */
static void many_threads(void *arg)
{
        pthread_attr_t a;
        if (pthread_attr_init(&a) != 0 || pthread_attr_setstacksize(&a, 64 * 1024) != 0)
                _exit(4);
        for (size_t i = 0; i < *(size_t *)arg; i++) {
                pthread_t t;
                if (pthread_create(&t, &a, pause_thread, NULL) != 0)
                        _exit(4);
        }
        for (;;)
                pause();
}

static size_t lines_of(const char *s)
{
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

/* A kept counter longer than a page (cgroup.threads of 1500 threads: a seq file hands out a
 * page a read, short of what was asked) is read whole, not cut at its first page. */
Test(cgroup_live, kept_counter_past_a_page_is_read_whole)
{
        live_create("keep-long", &(AjCgroupLimits){ 0 });
        size_t threads = 1500;
        int go;
        pid_t pid = spawn_waiting(many_threads, &threads, &go);
        attach_and_go(pid, go);
        AjCgDir d = aj_cg_v2(live_cg);
        char *whole = NULL;
        for (int tries = 0; tries < 15000; tries++) { /* 30 s at most */
                free(whole);
                whole = NULL;
                cr_assert_eq(aj_cg_read(d, "cgroup.threads", &whole), 0);
                if (lines_of(whole) == threads + 1)
                        break;
                sleep_ms(2);
        }
        cr_assert_eq(lines_of(whole), threads + 1);
        cr_assert_gt(strlen(whole), 4096);
        char *kept = NULL;
        live_cg->keeping = true;
        cr_assert_eq(aj_cg_counter(live_cg, d, "cgroup.threads", &kept), -EAGAIN);
        live_cg->keeping = false;
        cr_assert_eq(aj_cg_counter(live_cg, d, "cgroup.threads", &kept), 0);
        cr_assert_eq(lines_of(kept), threads + 1, "read through the kept fd: %zu bytes of %zu", strlen(kept),
                     strlen(whole));
        free(kept);
        free(whole);
}

/* A kill racing the run's own clean-up: the cgroup is removed (its supervisor saw the jail
 * end) while `agentjail kill` holds it open, and the kill finds it gone: nothing is left, so
 * the kill has done its job (it failed "No such device", and the operator saw the kill fail). */
Test(cgroup_live, kill_of_a_cgroup_removed_meanwhile_succeeds)
{
        live_create("gone", &(AjCgroupLimits){ .memory_max = 128ULL << 20, .pids_max = 64, .cpus = 1 });
        AjCgroup *o = NULL;
        cr_assert_eq(aj_cgroup_open(live_id, &o), 0);
        AjCgroup *cg = live_cg;
        live_cg = NULL;
        cr_assert_eq(aj_cgroup_destroy(cg), 0);
        cr_expect_eq(aj_cgroup_kill(o), 0);
        aj_cgroup_free(o);
}

/* A run's cgroup is named by its id alone, in one tree for every state directory: its creator
 * (the supervisor) holds it until it removes it, and a claim (a reap's, of a copy of the run's
 * directory kept elsewhere) is refused meanwhile; once the creator is gone (killed: nothing
 * removed), the claim is the reaper's. */
static void claim_refused_while_its_creator_holds_it(bool v1_only)
{
        live_create("claim", &(AjCgroupLimits){ .memory_max = 64ULL << 20 });
        if (v1_only)
                cr_assert_null(v2_run_path(), "v1 directories only");
        AjCgroup *o = NULL;
        cr_assert_eq(aj_cgroup_open(live_id, &o), 0);
        cr_assert_eq(aj_cgroup_claim(o), -EBUSY, "held by its creator");
        aj_cgroup_free(o);
        aj_cgroup_free(live_cg); /* its supervisor killed */
        live_cg = NULL;
        cr_assert_eq(aj_cgroup_open(live_id, &o), 0);
        cr_assert_eq(aj_cgroup_claim(o), 0, "the creator gone: claimed");
        AjCgroup *again = NULL;
        cr_assert_eq(aj_cgroup_open(live_id, &again), 0);
        cr_assert_eq(aj_cgroup_claim(again), -EBUSY, "one claim at a time");
        aj_cgroup_free(again);
        cr_assert_eq(aj_cgroup_remove(o, 5000), 0);
        aj_cgroup_free(o);
}

Test(cgroup_live, a_claim_is_refused_while_its_creator_holds_the_cgroup)
{
        claim_refused_while_its_creator_holds_it(false);
}

/* The same on a host without a v2 tree (this host's v1 hierarchies alone): the creator holds
 * the first v1 directory it made. Without that a reap of a copied run directory killed the
 * live run. */
Test(cgroup_live, a_claim_is_refused_on_a_v1_only_host_too)
{
        require_live();
        AjCgroupLayout l = { 0 };
        cr_assert_eq(aj_cgroup_layout_load(&l), 0);
        bool have_v1 = l.v1_mount[AJ_CG_V1_MEMORY] && l.v1_mount[AJ_CG_V1_FREEZER];
        free(l.v2_mount);
        l.v2_mount = NULL;
        l.mode = AJ_CGROUP_MODE_LEGACY;
        cr_assert_eq(aj_cgroup_layout_override(&l), 0);
        aj_cgroup_layout_done(&l);
        if (have_v1)
                return claim_refused_while_its_creator_holds_it(true);
        /* A pure v2 host (the VM) has no v1 hierarchy to be v1-only with: the same layout
         * without its v2 tree leaves no controller, and a run with limits fails closed there,
         * making nothing a reap could mistake. */
        AjCgroup *cg = NULL;
        AjError err = {};
        int r = aj_cgroup_create("ajtest-v1only-none", &(AjCgroupLimits){ .memory_max = 64ULL << 20 }, false, &cg, NULL,
                                 &err);
        cr_assert_lt(r, 0, "limits with no hierarchy at all were taken as enforced");
        cr_assert_null(cg);
        aj_error_clear(&err);
        AjCgroup *o = NULL;
        cr_assert_eq(aj_cgroup_open("ajtest-v1only-none", &o), -ENOENT);
}

/* The locks that say whose a cgroup is (aj_cgroup_claim) are on its directories, which any
 * user who can open them could flock: another host user took one the moment it was made (the
 * supervisor's LOCK_SH then failed: root's runs did not start) or held one on a dead run's
 * (prune's claim failed forever). Nobody but the cgroup's owner opens them; what is in them
 * stays reachable by its path. */
Test(cgroup_live, no_other_user_can_lock_a_run_directory)
{
        live_create("lockout", &(AjCgroupLimits){ .memory_max = 64ULL << 20 });
        for (char **p = live_paths; *p; p++) {
                struct stat st;
                cr_assert_eq(stat(*p, &st), 0, "%s", *p);
                pid_t pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0) {
                        if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                                _exit(2);
                        int fd = open(*p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        _exit(fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == 0 ? 1 : 0);
                }
                int status;
                cr_assert_eq(waitpid(pid, &status, 0), pid);
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another user locked '%s' (mode %o)", *p,
                          st.st_mode & 07777);
        }
}

/* `ps` lists the ids with a cgroup directory once instead of looking each dead run up. */
Test(cgroup_live, list_ids_has_the_runs_with_a_directory)
{
        /* A memory limit: a v1 directory too on a hybrid host, the id then listed twice. */
        live_create("listed", &(AjCgroupLimits){ .memory_max = 64ULL << 20 });
        char **ids = NULL;
        cr_assert_eq(aj_cgroup_list_ids(&ids), 0);
        cr_assert(aj_strv_contains(ids, live_id), "listed while its directories are there");
        size_t n = aj_strv_length(ids), seen = 0;
        for (size_t i = 0; i < n; i++) {
                cr_assert(i == 0 || strcmp(ids[i - 1], ids[i]) < 0, "sorted, each once: %s, %s", ids[i - 1], ids[i]);
                seen += streq(ids[i], live_id);
        }
        cr_assert_eq(seen, 1, "its directory in every hierarchy, its id once");
        cr_assert(aj_strv_sorted_contains(ids, n, live_id));
        aj_strv_free(ids);
        AjCgroup *cg = live_cg;
        live_cg = NULL;
        cr_assert_eq(aj_cgroup_destroy(cg), 0);
        cr_assert_eq(aj_cgroup_list_ids(&ids), 0);
        cr_assert_not_null(ids);
        cr_assert_not(aj_strv_contains(ids, live_id), "not once they are gone");
        aj_strv_free(ids);
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

Test(cgroup_live, create_destroy_cost)
{
        require_live();
        static const AjCgroupLimits cases[] = { { 0 }, { .memory_max = 1ULL << 30, .pids_max = 256, .cpus = 1.5 } };
        for (size_t k = 0; k < 2; k++) {
                const int rounds = 20;
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                for (int i = 0; i < rounds; i++) {
                        snprintf(live_id, sizeof(live_id), "ajtest-%d-bench%d", (int)getpid(), i);
                        AjError err = {};
                        int r = aj_cgroup_create(live_id, &cases[k], false, &live_cg, NULL, &err);
                        cr_assert_eq(r, 0, "%s", aj_error_text(&err, r));
                        aj_strv_free(live_paths);
                        live_paths = aj_strv_copy(aj_cgroup_paths(live_cg));
                        AjCgroup *cg = live_cg;
                        live_cg = NULL;
                        cr_assert_eq(aj_cgroup_destroy(cg), 0);
                        struct stat s;
                        for (char **p = live_paths; *p; p++)
                                cr_assert(stat(*p, &s) < 0, "%s left behind", *p);
                }
                clock_gettime(CLOCK_MONOTONIC, &t1);
                cr_log_info("create+destroy (%s): %.3f ms per run", k ? "mem+pids+cpu limits" : "no limits",
                            elapsed_ms(&t0, &t1) / rounds);
                fprintf(stderr, "create+destroy (%s): %.3f ms per run\n", k ? "mem+pids+cpu limits" : "no limits",
                        elapsed_ms(&t0, &t1) / rounds);
        }
}

/* The two-phase creation the supervisor uses: v2 before clone, v1 while the jail sets up. */
Test(cgroup_live, create_in_two_halves, .fini = live_fini)
{
        require_live();
        AjCgroupMode m = AJ_CGROUP_MODE_NONE;
        cr_assert_eq(aj_cgroup_detect(&m), 0);
        snprintf(live_id, sizeof(live_id), "ajtest-%d-halves", (int)getpid());
        AjCgroupLimits lim = { .memory_max = 64ULL << 20, .pids_max = 16, .cpus = 0.5 };
        char *unenforced = NULL;
        AjError err = {};
        int r = aj_cgroup_create_v2_first(live_id, &lim, false, &live_cg, &unenforced, &err);
        cr_assert_eq(r, 0, "%s (%s)", strerror(-r), err.message ?: "");
        char v1_mem[256];
        snprintf(v1_mem, sizeof(v1_mem), "/sys/fs/cgroup/memory/agentjail/%s", live_id);
        if (m == AJ_CGROUP_MODE_HYBRID)
                cr_assert_neq(access(v1_mem, F_OK), 0, "the v1 half must wait for aj_cgroup_create_rest()");
        cr_assert_geq(aj_cgroup_v2_fd(live_cg), 0, "the v2 half exists to clone into");

        r = aj_cgroup_create_rest(live_cg, &unenforced, &err);
        cr_assert_eq(r, 0, "%s (%s)", strerror(-r), err.message ?: "");
        cr_assert_null(unenforced);
        live_paths = aj_strv_copy(aj_cgroup_paths(live_cg));
        if (m == AJ_CGROUP_MODE_HYBRID) {
                char b[64];
                cr_assert(read_path_file(v1_mem, "memory.limit_in_bytes", b, sizeof(b)));
                cr_assert_str_eq(b, "67108864");
                cr_assert(aj_strv_contains(aj_cgroup_paths(live_cg), v1_mem), "run.json paths list the v1 dirs");
        }
        cr_assert_eq(aj_cgroup_create_rest(live_cg, &unenforced, &err), 0, "a second call has nothing to do");
        cr_assert_eq(aj_cgroup_destroy(live_cg), 0);
        live_cg = NULL;
        cr_assert_neq(access(v1_mem, F_OK), 0, "destroy removes the v1 half too");
}
