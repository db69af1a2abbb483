/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mount plan (pure) and apply (live, as root, in throwaway namespaces).
 * Profiles are built as structs here so these tests do not depend on the
 * profile parser.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mount.h"
#include "ns.h"

#define JAIL_UID 1000
#define HOST_UID 100000

/* ---- fixtures ------------------------------------------------------------ */

static char tmp[256];

static char *P(const char *fmt, ...) _printf_(1, 2);
static char *P(const char *fmt, ...)
{
        /* Test-only convenience: a ring of path buffers under the fixture dir. */
        static char ring[16][PATH_MAX];
        static unsigned idx;
        char rel[1024];
        va_list ap;
        char *out = ring[idx++ % 16];

        va_start(ap, fmt);
        vsnprintf(rel, sizeof(rel), fmt, ap);
        va_end(ap);
        snprintf(out, PATH_MAX, "%s%s", tmp, rel);
        return out;
}

static void touch(const char *path)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

        cr_assert(fd >= 0, "create %s: %s", path, strerror(errno));
        close(fd);
}

static void fixture_setup(void)
{
        strcpy(tmp, "/tmp/aj-test-mount-XXXXXX");
        cr_assert_not_null(mkdtemp(tmp));
        /* The jail's host uid must be able to traverse down to its root and workspace. */
        cr_assert_eq(chmod(tmp, 0755), 0);
        cr_assert_eq(mkdir(P("/a"), 0755), 0);
        cr_assert_eq(mkdir(P("/a/b"), 0755), 0);
        cr_assert_eq(mkdir(P("/ws"), 0755), 0);
        cr_assert_eq(mkdir(P("/root"), 0755), 0);
        cr_assert_eq(mkdir(P("/home"), 0755), 0);
        cr_assert_eq(mkdir(P("/run"), 0755), 0);
        touch(P("/a/f"));
        touch(P("/home/.gitconfig"));
        cr_assert_eq(symlink("a", P("/lnk")), 0);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path) < 0 ? -1 : 0;
}

static void fixture_teardown(void)
{
        if (tmp[0])
                nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        tmp[0] = '\0';
}

/* cr_skip_test() does not run .fini: live tests only create the fixture when they will run. */
static void live_setup(void)
{
        if (geteuid() == 0)
                fixture_setup();
}

TestSuite(mount);
#define PURE .init = fixture_setup, .fini = fixture_teardown
#define LIVE .init = live_setup, .fini = fixture_teardown

/* ---- profile builders -------------------------------------------------- */

typedef struct {
        AjProfile p;
        AjBind ro[16], rw[16], xro[4], xrw[4];
        char *tmpfs[8], *hide[8];
        AjMountContext ctx;
} Setup;

static void setup_init(Setup *s)
{
        memset(s, 0, sizeof(*s));
        s->p.ro.items = s->ro;
        s->p.rw.items = s->rw;
        s->p.tmpfs.items = s->tmpfs;
        s->p.hide.items = s->hide;
        s->p.workspace_mode = AJ_WORKSPACE_NONE;
        s->ctx.extra_ro.items = s->xro;
        s->ctx.extra_rw.items = s->xrw;
        s->ctx.cwd = P("/ws");
        s->ctx.host_home = P("/home");
        s->ctx.uid = JAIL_UID;
        s->ctx.gid = JAIL_UID;
        s->ctx.user_name = "agent";
        s->ctx.hostname = "testjail";
        s->ctx.root_mountpoint = P("/root");
}

/* "?/x" and "SRC:DST" as the profile module hands them over: split, otherwise verbatim. */
static void add_bind(AjBindList *l, const char *spec)
{
        AjBind *b = &l->items[l->n++];
        char *s = strdup(spec[0] == '?' ? spec + 1 : spec);
        char *colon = strchr(s, ':');

        b->optional = spec[0] == '?';
        if (colon) {
                *colon = '\0';
                b->target = strdup(colon + 1);
        } else
                b->target = strdup(s);
        b->source = s;
}

static void add_str(AjStrList *l, const char *v) { l->items[l->n++] = strdup(v); }

static void setup_free(Setup *s)
{
        AjBindList *lists[] = { &s->p.ro, &s->p.rw, &s->ctx.extra_ro, &s->ctx.extra_rw };

        for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
                for (size_t j = 0; j < lists[i]->n; j++) {
                        free(lists[i]->items[j].source);
                        free(lists[i]->items[j].target);
                }
        for (size_t i = 0; i < s->p.tmpfs.n; i++)
                free(s->p.tmpfs.items[i]);
        for (size_t i = 0; i < s->p.hide.n; i++)
                free(s->p.hide.items[i]);
        free(s->p.workspace_path);
}

static ssize_t find_step(const AjMountPlan *plan, const char *desc)
{
        char buf[PATH_MAX * 2];

        for (size_t i = 0; i < aj_mount_plan_n_steps(plan); i++)
                if (streq(aj_mount_step_describe(plan, i, buf, sizeof(buf)), desc))
                        return (ssize_t)i;
        return -1;
}

static bool any_step_mentions(const AjMountPlan *plan, const char *text)
{
        char buf[PATH_MAX * 2];

        for (size_t i = 0; i < aj_mount_plan_n_steps(plan); i++)
                if (strstr(aj_mount_step_describe(plan, i, buf, sizeof(buf)), text))
                        return true;
        return false;
}

/* The message an AjError holds, as a string the caller frees (NULL: none was set). */
static char *error_message(AjError *e)
{
        char *m = e->message;

        e->message = NULL;
        aj_error_clear(e);
        return m;
}

static int prepare(AjMountPlan *plan, int userns, char **ret_err)
{
        AjError e = {};
        int r = aj_mount_plan_prepare(plan, userns, &e);

        *ret_err = error_message(&e);
        return r;
}

static AjMountPlan *build_ok(Setup *s)
{
        AjMountPlan *plan = NULL;
        AjError e = {};
        int r = aj_mount_plan_build(&s->p, &s->ctx, &plan, &e);
        char *err = error_message(&e);

        cr_assert_eq(r, 0, "plan failed: %d %s", r, err ? err : "(no message)");
        cr_assert_not_null(plan);
        free(err);
        return plan;
}

static int build_fail(Setup *s, char **ret_err)
{
        AjMountPlan *plan = NULL;
        AjError e = {};
        int r = aj_mount_plan_build(&s->p, &s->ctx, &plan, &e);
        char *err = error_message(&e);

        cr_assert_lt(r, 0, "plan unexpectedly succeeded");
        cr_assert_null(plan);
        cr_assert_not_null(err, "no error message for %d", r);
        *ret_err = err;
        return r;
}

/* ---- pure plan tests --------------------------------------------------- */

Test(mount, parents_before_children, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char want[PATH_MAX * 2];
        ssize_t child, parent, passwd, proc, pivot, chdir_step;

        setup_init(&s);
        add_bind(&s.p.ro, P("/a/b"));
        add_bind(&s.p.rw, P("/a"));
        add_bind(&s.p.ro, P("/a/f:/etc/passwd"));
        plan = build_ok(&s);

        snprintf(want, sizeof(want), "bind '%s' on '%s' (read-only)", P("/a/b"), P("/a/b"));
        child = find_step(plan, want);
        snprintf(want, sizeof(want), "bind '%s' on '%s' (read-write)", P("/a"), P("/a"));
        parent = find_step(plan, want);
        cr_assert_geq(child, 0);
        cr_assert_geq(parent, 0);
        cr_expect_lt(parent, child, "parent %zd must come before child %zd", parent, child);

        /* The generated file is written first; the profile's bind on it comes later and wins. */
        passwd = find_step(plan, "write '/etc/passwd'");
        snprintf(want, sizeof(want), "bind '%s' on '/etc/passwd' (read-only)", P("/a/f"));
        cr_assert_geq(passwd, 0);
        cr_expect_lt(passwd, find_step(plan, want));

        cr_expect_eq(find_step(plan, "make all mounts private"), 0);
        proc = find_step(plan, "mount proc on '/proc'");
        pivot = find_step(plan, "make '/' read-only");
        snprintf(want, sizeof(want), "change directory to '%s'", "/home/agent");
        chdir_step = find_step(plan, want);
        cr_assert_gt(proc, child);
        cr_assert_gt(pivot, proc);
        cr_expect_eq((size_t)chdir_step, aj_mount_plan_n_steps(plan) - 1);
        cr_expect_str_eq(aj_mount_plan_workdir(plan), "/home/agent");
        setup_free(&s);
}

/* Generated files (--hooks): written into the root after the binds and hides, and refused
 * when a mount covers them (a bind would have the operator's file written). */
Test(mount, generated_files, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        AjMountFile f = { .target = "/etc/claude-code/managed-settings.json", .contents = "{}", .why = "--hooks x" };
        char *err = NULL;

        setup_init(&s);
        add_bind(&s.p.ro, P("/a/b"));
        s.ctx.files = &f;
        s.ctx.n_files = 1;
        plan = build_ok(&s);
        ssize_t w = find_step(plan, "write '/etc/claude-code/managed-settings.json'");
        cr_assert_geq(w, 0);
        cr_expect_lt(w, find_step(plan, "make '/' read-only"));
        char want[PATH_MAX * 2];
        snprintf(want, sizeof(want), "bind '%s' on '%s' (read-only)", P("/a/b"), P("/a/b"));
        cr_expect_gt(w, find_step(plan, want));
        setup_free(&s);

        static const char *const covering[] = { "/etc", "/etc/claude-code", "/etc/claude-code/managed-settings.json" };
        for (size_t i = 0; i < ARRAY_SIZE(covering); i++) {
                char spec[PATH_MAX];
                setup_init(&s);
                snprintf(spec, sizeof(spec), "%s:%s", P("/a"), covering[i]);
                add_bind(i == 1 ? &s.p.rw : &s.p.ro, spec);
                s.ctx.files = &f;
                s.ctx.n_files = 1;
                cr_expect_eq(build_fail(&s, &err), -EEXIST, "bind on %s", covering[i]);
                char msg[512];
                snprintf(msg, sizeof(msg),
                         "--hooks x writes '/etc/claude-code/managed-settings.json' in the jail, but the profile puts a "
                         "bind on '%s'",
                         covering[i]);
                cr_expect(strstr(err, msg), "got \"%s\"", err);
                free(err);
                setup_free(&s);
        }
        setup_init(&s);
        add_str(&s.p.tmpfs, "/etc/claude-code");
        s.ctx.files = &f;
        s.ctx.n_files = 1;
        cr_expect_eq(build_fail(&s, &err), -EEXIST);
        cr_expect(strstr(err, "a filesystem on '/etc/claude-code'"), "got \"%s\"", err);
        free(err);
        setup_free(&s);
}

Test(mount, optional_missing_source_is_skipped, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char spec[PATH_MAX];

        setup_init(&s);
        snprintf(spec, sizeof(spec), "?%s", P("/nope"));
        add_bind(&s.p.ro, spec);
        snprintf(spec, sizeof(spec), "?%s", P("/nope2"));
        add_bind(&s.p.rw, spec);
        plan = build_ok(&s);
        cr_expect_not(any_step_mentions(plan, "nope"));
        setup_free(&s);
}

Test(mount, missing_required_source_names_field, PURE)
{
        Setup s;
        char *err = NULL, want[PATH_MAX * 2];
        int r;

        setup_init(&s);
        add_bind(&s.p.ro, P("/nonexistent"));
        r = build_fail(&s, &err);
        cr_expect_eq(r, -ENOENT);
        snprintf(want, sizeof(want), "filesystem.ro: '%s' does not exist (prefix it with '?' to make it optional)",
                 P("/nonexistent"));
        cr_expect_str_eq(err, want);
        free(err);
        setup_free(&s);

        setup_init(&s);
        add_bind(&s.ctx.extra_rw, P("/nonexistent"));
        r = build_fail(&s, &err);
        cr_expect_eq(r, -ENOENT);
        cr_expect(strncmp(err, "--rw: ", 6) == 0, "got: %s", err);
        free(err);
        setup_free(&s);
}

Test(mount, symlink_source_is_recreated, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char want[PATH_MAX * 2], spec[PATH_MAX];

        setup_init(&s);
        add_bind(&s.p.ro, P("/lnk"));
        snprintf(spec, sizeof(spec), "%s:/opt/x", P("/lnk"));
        add_bind(&s.p.ro, spec);
        plan = build_ok(&s);

        snprintf(want, sizeof(want), "symlink '%s' -> 'a'", P("/lnk"));
        cr_expect_geq(find_step(plan, want), 0, "no symlink step");
        /* With another target the link is followed and what it leads to is bound (and judged). */
        snprintf(want, sizeof(want), "bind '%s' on '/opt/x' (read-only)", P("/a"));
        cr_expect_geq(find_step(plan, want), 0, "no bind step for the explicit target");
        setup_free(&s);
}

Test(mount, merged_usr_bin_is_a_symlink, PURE)
{
        struct stat st;
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char link[PATH_MAX], want[PATH_MAX * 2];
        ssize_t n;

        if (lstat("/bin", &st) < 0 || !S_ISLNK(st.st_mode)) {
                fixture_teardown(); /* skipping bypasses .fini */
                cr_skip_test("/bin is not a symlink on this host");
        }
        n = readlink("/bin", link, sizeof(link) - 1);
        cr_assert_gt(n, 0);
        link[n] = '\0';
        setup_init(&s);
        add_bind(&s.p.ro, "/bin");
        plan = build_ok(&s);
        snprintf(want, sizeof(want), "symlink '/bin' -> '%s'", link);
        cr_expect_geq(find_step(plan, want), 0);
        setup_free(&s);
}

Test(mount, workspace_dot_resolves_to_cwd, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL, *plan_ro = NULL, *plan_id = NULL;
        char want[PATH_MAX * 2];

        setup_init(&s);
        s.p.workspace_path = strdup(".");
        s.p.workspace_mode = AJ_WORKSPACE_RW;
        plan = build_ok(&s);
        cr_expect_str_eq(aj_mount_plan_workdir(plan), P("/ws"));
        snprintf(want, sizeof(want), "bind workspace '%s' on '%s' (read-write)", P("/ws"), P("/ws"));
        cr_expect_geq(find_step(plan, want), 0);
        snprintf(want, sizeof(want), "change directory to '%s'", P("/ws"));
        cr_expect_eq((size_t)find_step(plan, want), aj_mount_plan_n_steps(plan) - 1);

        s.p.workspace_mode = AJ_WORKSPACE_RO;
        plan_ro = build_ok(&s);
        snprintf(want, sizeof(want), "bind workspace '%s' on '%s' (read-only)", P("/ws"), P("/ws"));
        cr_expect_geq(find_step(plan_ro, want), 0);

        s.p.workspace_mode = AJ_WORKSPACE_RW;
        s.ctx.idmap = true;
        plan_id = build_ok(&s);
        snprintf(want, sizeof(want), "bind workspace '%s' on '%s' (read-write, idmapped)", P("/ws"), P("/ws"));
        cr_expect_geq(find_step(plan_id, want), 0);
        setup_free(&s);
}

Test(mount, workspace_relative_and_none, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL, *none = NULL;

        setup_init(&s);
        s.ctx.cwd = tmp;
        s.p.workspace_path = strdup("ws/");
        s.p.workspace_mode = AJ_WORKSPACE_RW;
        plan = build_ok(&s);
        cr_expect_str_eq(aj_mount_plan_workdir(plan), P("/ws"));

        s.p.workspace_mode = AJ_WORKSPACE_NONE;
        none = build_ok(&s);
        cr_expect_not(any_step_mentions(none, "workspace"));
        cr_expect_str_eq(aj_mount_plan_workdir(none), "/home/agent");
        setup_free(&s);
}

Test(mount, dangerous_workspaces_are_refused, PURE)
{
        static const char *const bad[] = { "/",     "/usr", "/etc",  "/proc", "/sys",     "/dev",
                                           "/boot", "/bin", "/sbin", "/lib",  "/usr/lib", "/etc/ssl" };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                Setup s;
                char *err = NULL;
                int r;

                if (access(bad[i], F_OK) < 0)
                        continue;
                /* Every mode: even read-only, the idmapped workspace lets the agent read as the
                 * owner (root's /etc/shadow). */
                for (int ro = 0; ro < 2; ro++) {
                        setup_init(&s);
                        s.ctx.cwd = bad[i];
                        s.p.workspace_path = strdup(".");
                        s.p.workspace_mode = ro ? AJ_WORKSPACE_RO : AJ_WORKSPACE_RW;
                        r = build_fail(&s, &err);
                        cr_expect_eq(r, -EPERM, "%s: %d", bad[i], r);
                        cr_expect(strstr(err, "filesystem.workspace: refusing '") == err &&
                                          strstr(err, "(rule: the system's own directories"),
                                  "%s: %s", bad[i], err);
                        free(err);
                        setup_free(&s);
                }
        }
}

Test(mount, tilde_expands_host_and_jail_home, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char want[PATH_MAX * 2];

        setup_init(&s);
        add_bind(&s.p.ro, "~/.gitconfig");
        add_str(&s.p.tmpfs, "~/.cache");
        s.p.home = strdup("/home/bot");
        plan = build_ok(&s);
        free(s.p.home);
        snprintf(want, sizeof(want), "bind '%s' on '/home/bot/.gitconfig' (read-only)", P("/home/.gitconfig"));
        cr_expect_geq(find_step(plan, want), 0);
        cr_expect_geq(find_step(plan, "mount tmpfs on '/home/bot/.cache'"), 0);
        cr_expect_lt(find_step(plan, "mount home tmpfs on '/home/bot'"),
                     find_step(plan, "mount tmpfs on '/home/bot/.cache'"));
        setup_free(&s);

        setup_init(&s);
        s.ctx.host_home = NULL;
        add_bind(&s.p.ro, "~/.gitconfig");
        {
                char *err = NULL;

                cr_expect_eq(build_fail(&s, &err), -EINVAL);
                cr_expect_str_eq(err, "filesystem.ro: '~/.gitconfig' uses '~' but the home directory is unknown");
                free(err);
        }
        setup_free(&s);
}

Test(mount, hide_file_vs_directory, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char want[PATH_MAX * 2], spec[PATH_MAX];
        ssize_t dev;

        setup_init(&s);
        snprintf(spec, sizeof(spec), "%s:/srv", P("/a"));
        add_bind(&s.p.ro, spec);
        add_str(&s.p.hide, "/srv/b");
        add_str(&s.p.hide, "/srv/f");
        add_str(&s.p.hide, "/srv/missing");
        add_str(&s.p.hide, "/etc/hostname");
        add_str(&s.p.hide, "/home/agent");
        plan = build_ok(&s);

        cr_expect_geq(find_step(plan, "hide '/srv/b' (directory)"), 0);
        cr_expect_geq(find_step(plan, "hide '/srv/f' (file)"), 0);
        cr_expect_geq(find_step(plan, "hide '/etc/hostname' (file)"), 0);
        cr_expect_geq(find_step(plan, "hide '/home/agent' (directory)"), 0);
        cr_expect_not(any_step_mentions(plan, "missing"));
        cr_expect_eq(aj_mount_plan_n_steps(plan) - 3, (size_t)find_step(plan, "hide '/home/agent' (directory)") + 1,
                     "hides come right before pivot_root");
        /* Hides go last, after /dev is built. */
        dev = find_step(plan, "mount devpts on '/dev/pts'");
        snprintf(want, sizeof(want), "hide '/srv/b' (directory)");
        cr_expect_gt(find_step(plan, want), dev);
        setup_free(&s);
}

Test(mount, hide_under_a_bind_over_generated_etc, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char spec[PATH_MAX];

        setup_init(&s);
        /* A bind on /etc covers the generated files: what is hidden is the bind's content. */
        snprintf(spec, sizeof(spec), "%s:/etc", P("/a"));
        add_bind(&s.p.ro, spec);
        add_str(&s.p.hide, "/etc/hostname");
        add_str(&s.p.hide, "/etc/b");
        plan = build_ok(&s);
        cr_expect_lt(find_step(plan, "write '/etc/hostname'"), find_step(plan, "hide '/etc/b' (directory)"));
        cr_expect_eq(find_step(plan, "hide '/etc/hostname' (file)"), -1, "nothing named hostname in the bind");
        setup_free(&s);
}

Test(mount, bad_targets_are_rejected, PURE)
{
        static const struct {
                const char *target;
                const char *msg;
        } cases[] = {
                { "/proc/x", "filesystem.rw: '/proc/x' is under /proc, which the jail sets up itself" },
                { "/dev/sda", "filesystem.rw: '/dev/sda' is under /dev, which the jail sets up itself" },
                { "/sys", "filesystem.rw: '/sys' is under /sys, which the jail sets up itself" },
                { "/", "filesystem.rw: cannot mount over '/' (the jail's root is built by agentjail)" },
                { "rel/x", "filesystem.rw: target 'rel/x' must be an absolute path" },
                { "/x/../etc", "filesystem.rw: target '/x/../etc' must not contain '..'" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                Setup s;
                char *err = NULL, spec[PATH_MAX];

                setup_init(&s);
                snprintf(spec, sizeof(spec), "%s:%s", P("/a"), cases[i].target);
                add_bind(&s.p.rw, spec);
                cr_expect_eq(build_fail(&s, &err), -EINVAL, "%s", cases[i].target);
                cr_expect_str_eq(err, cases[i].msg);
                free(err);
                setup_free(&s);
        }

        {
                Setup s;
                char *err = NULL;

                setup_init(&s);
                add_str(&s.p.tmpfs, "/proc/sys");
                cr_expect_eq(build_fail(&s, &err), -EINVAL);
                cr_expect(strncmp(err, "filesystem.tmpfs: ", 18) == 0, "%s", err);
                free(err);
                setup_free(&s);
        }
}

Test(mount, step_descriptions, PURE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char buf[64], want[PATH_MAX * 2];

        setup_init(&s);
        add_bind(&s.p.ro, "/usr");
        s.ctx.runtime_dir = P("/run");
        plan = build_ok(&s);

        cr_expect_geq(find_step(plan, "bind '/usr' on '/usr' (read-only)"), 0);
        snprintf(want, sizeof(want), "bind '%s' on '/run/agentjail' (read-only)", P("/run"));
        cr_expect_geq(find_step(plan, want), 0);
        snprintf(want, sizeof(want), "mount the root tmpfs on '%s'", P("/root"));
        cr_expect_eq(find_step(plan, want), 1);
        snprintf(want, sizeof(want), "pivot_root into '%s'", P("/root"));
        cr_expect_geq(find_step(plan, want), 0);
        cr_expect_geq(find_step(plan, "mount home tmpfs on '/home/agent'"), 0);
        cr_expect_geq(find_step(plan, "bind device '/dev/null'"), 0);
        cr_expect_geq(find_step(plan, "bind device '/dev/tty'"), 0);
        cr_expect_geq(find_step(plan, "make '/proc/sys' read-only"), 0);
        cr_expect_geq(find_step(plan, "mount tmpfs on '/dev/shm'"), 0);
        cr_expect_geq(find_step(plan, "symlink '/dev/ptmx' -> 'pts/ptmx'"), 0);
        cr_expect_geq(find_step(plan, "symlink '/dev/fd' -> '/proc/self/fd'"), 0);
        cr_expect_not(any_step_mentions(plan, "'/sys"));
        /* Out of range and truncation stay well-formed. */
        cr_expect_str_eq(aj_mount_step_describe(plan, 9999, buf, sizeof(buf)), "mount step 9999");
        cr_expect_str_eq(aj_mount_step_describe(plan, 0, buf, 8), "make al");
        setup_free(&s);
}

Test(mount, invalid_identity_is_rejected, PURE)
{
        Setup s;
        char *err = NULL;

        setup_init(&s);
        s.ctx.user_name = "evil:x:0:0::/:/bin/sh\nroot";
        cr_expect_eq(build_fail(&s, &err), -EINVAL);
        free(err);
        s.ctx.user_name = "agent";
        s.ctx.hostname = "bad\nhost";
        cr_expect_eq(build_fail(&s, &err), -EINVAL);
        free(err);
        setup_free(&s);
}

/* ---- sensitive places (pure decision, then through the plan) ------------ */

static AjSensitivePlace places_table[] = {
        { "/tmp", "tmp", AJ_PLACE_GENERIC },
        { "/var/lib", "var lib", AJ_PLACE_GENERIC },
        { "/home/alice", "a home", AJ_PLACE_GENERIC },
        { "/var/lib/agentjail", "state", AJ_PLACE_AGENTJAIL_DATA },
        { "/run/agentjail", "runtime", AJ_PLACE_AGENTJAIL_DATA },
        { "/home/alice/.config/agentjail", "config", AJ_PLACE_AGENTJAIL_CODE },
        { "/opt/aj/bin/agentjail", "exe", AJ_PLACE_AGENTJAIL_CODE },
        { "/", "root", AJ_PLACE_SYSTEM_DIR },
        { "/var", "var", AJ_PLACE_SYSTEM_DIR },
        { "/etc", "etc", AJ_PLACE_SYSTEM_TREE },
        { "/usr", "usr", AJ_PLACE_SYSTEM_TREE },
};

Test(mount, sensitive_check_table, PURE)
{
        static const AjSensitiveList l = { places_table, ARRAY_SIZE(places_table) };
        static char *allow_tmp[] = { "/tmp", NULL };
        static char *allow_all[] = { "/tmp",
                                     "/var/lib",
                                     "/home/alice",
                                     "/var/lib/agentjail",
                                     "/run/agentjail",
                                     "/home/alice/.config/agentjail",
                                     "/",
                                     "/var",
                                     "/etc",
                                     "/usr",
                                     NULL };
        const AjAccess W = AJ_ACCESS_OWNER, R = AJ_ACCESS_READ;
        const struct {
                const char *path;
                AjAccess access;
                char **allow;
                AjSensitiveVerdict want;
                const char *place; /* the refusing (or first allowed) place */
        } cases[] = {
                /* The workspace and rw binds (the agent acts as the owner). */
                { "/tmp/project", W, NULL, AJ_SENSITIVE_NONE, NULL },              /* inside /tmp: fine */
                { "/tmp", W, NULL, AJ_SENSITIVE_REFUSED, "/tmp" },                 /* is it */
                { "/tmp", W, allow_tmp, AJ_SENSITIVE_ALLOWED, "/tmp" },            /* opted out */
                { "/", W, allow_tmp, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" }, /* contains the state dir */
                { "/var", W, NULL, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" },
                { "/var/lib", W, allow_all, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" }, /* never opted out */
                { "/var/lib/agentjail", W, allow_all, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" },
                { "/var/lib/agentjail/runs/x", W, NULL, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" }, /* inside */
                { "/var/lib/postgresql", W, NULL, AJ_SENSITIVE_NONE, NULL },
                { "/var/lib/agentjail2", W, NULL, AJ_SENSITIVE_NONE, NULL }, /* a prefix, not a parent */
                { "/home", W, NULL, AJ_SENSITIVE_REFUSED, "/home/alice/.config/agentjail" },
                { "/home/alice", W, allow_all, AJ_SENSITIVE_REFUSED, "/home/alice/.config/agentjail" },
                { "/home/alice/src", W, NULL, AJ_SENSITIVE_NONE, NULL }, /* a project in a home: fine */
                { "/home/alice/.config", W, NULL, AJ_SENSITIVE_REFUSED, "/home/alice/.config/agentjail" },
                { "/home/alice/.config/agentjail/profiles", W, NULL, AJ_SENSITIVE_REFUSED,
                  "/home/alice/.config/agentjail" },
                { "/opt/aj", W, NULL, AJ_SENSITIVE_REFUSED, "/opt/aj/bin/agentjail" },
                { "/opt/aj/bin/agentjail", W, NULL, AJ_SENSITIVE_REFUSED, "/opt/aj/bin/agentjail" },
                { "/opt/aj/share", W, NULL, AJ_SENSITIVE_NONE, NULL },
                { "/srv/x", W, NULL, AJ_SENSITIVE_NONE, NULL },
                /* The system itself: never writable, whatever the profile allows. */
                { "/etc", W, allow_all, AJ_SENSITIVE_REFUSED, "/etc" },
                { "/etc/ssl", W, allow_all, AJ_SENSITIVE_REFUSED, "/etc" }, /* inside a system tree */
                { "/usr/local/bin", W, allow_all, AJ_SENSITIVE_REFUSED, "/usr" },
                { "/var/cache", W, NULL, AJ_SENSITIVE_NONE, NULL }, /* /var itself only */
                { "/etcetera", W, NULL, AJ_SENSITIVE_NONE, NULL },
                /* Read-only binds (the jail's own uid). */
                { "/etc", R, NULL, AJ_SENSITIVE_NONE, NULL }, /* the system is read */
                { "/usr/lib", R, NULL, AJ_SENSITIVE_NONE, NULL },
                { "/tmp", R, NULL, AJ_SENSITIVE_REFUSED, "/tmp" }, /* its sockets */
                { "/tmp", R, allow_tmp, AJ_SENSITIVE_ALLOWED, "/tmp" },
                { "/tmp/project", R, NULL, AJ_SENSITIVE_NONE, NULL },
                { "/home/alice", R, NULL, AJ_SENSITIVE_REFUSED, "/home/alice" }, /* its keys */
                { "/home/alice", R, allow_all, AJ_SENSITIVE_ALLOWED, "/home/alice" },
                { "/home/alice/.gitconfig", R, NULL, AJ_SENSITIVE_NONE, NULL },
                { "/home/alice/.config/agentjail", R, NULL, AJ_SENSITIVE_NONE, NULL }, /* profiles: read */
                { "/opt/aj/bin/agentjail", R, NULL, AJ_SENSITIVE_NONE, NULL },         /* bound by the jail itself */
                { "/var/lib/agentjail/runs/x", R, allow_all, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" },
                { "/run/agentjail", R, allow_all, AJ_SENSITIVE_REFUSED, "/run/agentjail" }, /* control sockets */
                { "/run", R, allow_all, AJ_SENSITIVE_REFUSED, "/run/agentjail" },
                { "/", R, allow_all, AJ_SENSITIVE_REFUSED, "/var/lib/agentjail" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                size_t at = SIZE_MAX;
                AjSensitiveVerdict v = aj_sensitive_check(cases[i].path, NULL, cases[i].access, &l, cases[i].allow,
                                                          &at);

                cr_expect_eq(v, cases[i].want, "%s (%s): verdict %d, want %d", cases[i].path,
                             cases[i].access == R ? "read" : "owner", v, cases[i].want);
                if (cases[i].place)
                        cr_expect(at < l.n && streq(l.items[at].path, cases[i].place), "%s: place %s, want %s",
                                  cases[i].path, at < l.n ? l.items[at].path : "(none)", cases[i].place);
        }
        /* An unknown access or rule refuses (fail closed). */
        cr_expect_eq(aj_sensitive_check("/srv/x", NULL, (AjAccess)7, &l, NULL, NULL), AJ_SENSITIVE_REFUSED);
        {
                AjSensitivePlace odd = { "/nowhere", "odd", (AjPlaceRule)42 };
                AjSensitiveList ol = { &odd, 1 };

                cr_expect_eq(aj_sensitive_check("/srv/x", NULL, W, &ol, NULL, NULL), AJ_SENSITIVE_REFUSED);
        }
}

/* Relations by identity (fake chains; dev 1 is "/"'s fs, dev 2 a tmpfs on /tmp). A bind-mount
 * alias has its source's identity under another path: the paths alone relate nothing. */
#define ID(d, i) ((AjFileId){ (d), (i) })
#define CHAIN(...) ((AjIdChain){ (AjFileId[]){ __VA_ARGS__ }, ARRAY_SIZE(((AjFileId[]){ __VA_ARGS__ })), false })
#define MISSING(...) ((AjIdChain){ (AjFileId[]){ __VA_ARGS__ }, ARRAY_SIZE(((AjFileId[]){ __VA_ARGS__ })), true })

/* An eval's (or a replay's) scratch root is agentjail's own but for the run's workspace in it:
 * nothing above it or in it is mounted, writable or read-only (other cases' workspaces and
 * logs), but that workspace and what is inside it. */
Test(mount, sensitive_eval_scratch, PURE)
{
        AjSensitivePlace items[] = {
                { "/tmp", "tmp", AJ_PLACE_GENERIC },
                { "/tmp/e", "scratch", AJ_PLACE_EVAL_SCRATCH },
                { "/tmp/e/case-1/workspace", "own", AJ_PLACE_EVAL_OWN },
        };
        const AjSensitiveList l = { items, ARRAY_SIZE(items) }, no_own = { items, 2 };
        const AjAccess W = AJ_ACCESS_OWNER, R = AJ_ACCESS_READ;
        const struct {
                const char *path;
                AjAccess access;
                const AjSensitiveList *list;
                AjSensitiveVerdict want;
        } cases[] = {
                { "/tmp/e/case-1/workspace", W, &l, AJ_SENSITIVE_NONE },     /* its own workspace */
                { "/tmp/e/case-1/workspace/sub", W, &l, AJ_SENSITIVE_NONE }, /* inside it */
                { "/tmp/e/case-1", W, &l, AJ_SENSITIVE_REFUSED },            /* its dir: the log, the mount point */
                { "/tmp/e/case-2/workspace", W, &l, AJ_SENSITIVE_REFUSED },  /* another case's */
                { "/tmp/e", W, &l, AJ_SENSITIVE_REFUSED },
                { "/tmp/x/..", W, &l, AJ_SENSITIVE_REFUSED },                    /* (judged resolved: /tmp) */
                { "/tmp/e2", W, &l, AJ_SENSITIVE_NONE },                         /* a prefix, not a parent */
                { "/tmp/e", R, &l, AJ_SENSITIVE_REFUSED },                       /* read: refused too */
                { "/tmp/e/case-2", R, &l, AJ_SENSITIVE_REFUSED },                /* another case's, read */
                { "/tmp/e/case-1", R, &l, AJ_SENSITIVE_REFUSED },                /* its own log, read */
                { "/tmp/e/case-1/workspace/sub", R, &l, AJ_SENSITIVE_NONE },     /* its own, read */
                { "/tmp/e/case-1/workspace", W, &no_own, AJ_SENSITIVE_REFUSED }, /* no hole: all of it */
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                const char *path = streq(cases[i].path, "/tmp/x/..") ? "/tmp" : cases[i].path;
                AjSensitiveVerdict v = aj_sensitive_check(path, NULL, cases[i].access, cases[i].list, NULL, NULL);
                cr_expect_eq(v, cases[i].want, "%s: verdict %d, want %d", cases[i].path, v, cases[i].want);
        }
        /* Bind-mount aliases (another name, the same files: dev 2 is a tmpfs on /tmp) of the
         * case's dir and of its workspace: the one refused, the other the hole. */
        const AjFileId root = ID(1, 2), tmpd = ID(2, 1), e = ID(2, 10), c1 = ID(2, 11), ws = ID(2, 12), srv = ID(1, 30);
        AjSensitivePlace ids[] = {
                { "/tmp/e", "scratch", AJ_PLACE_EVAL_SCRATCH, { (AjFileId[]){ e, tmpd, root }, 3, false, "/e" } },
                { "/tmp/e/case-1/workspace",
                  "own",
                  AJ_PLACE_EVAL_OWN,
                  { (AjFileId[]){ ws, c1, e, tmpd, root }, 5, false, "/e/case-1/workspace" } },
        };
        const AjSensitiveList il = { ids, ARRAY_SIZE(ids) };
        AjIdChain alias_dir = { (AjFileId[]){ c1, srv, root }, 3, false, "/e/case-1" },
                  alias_ws = { (AjFileId[]){ ws, srv, root }, 3, false, "/e/case-1/workspace" };
        cr_expect_eq(aj_sensitive_check("/srv/c", &alias_dir, W, &il, NULL, NULL), AJ_SENSITIVE_REFUSED);
        cr_expect_eq(aj_sensitive_check("/srv/c/workspace", &alias_ws, W, &il, NULL, NULL), AJ_SENSITIVE_NONE);
}


Test(mount, sensitive_relation_by_identity, PURE)
{
        /* / = (1,2); /tmp = (2,1); /tmp/t = (2,10); /tmp/t/state = (2,11); /tmp/t/state/cache = (2,12);
         * /tmp/t/rt = (2,13); /etc = (1,20); /srv = (1,30). */
        const AjFileId root = ID(1, 2), tmpd = ID(2, 1), t = ID(2, 10), state = ID(2, 11), cache = ID(2, 12),
                       rt = ID(2, 13), etc = ID(1, 20), srv = ID(1, 30);
        AjSensitivePlace st = { "/tmp/t/state", "state", AJ_PLACE_AGENTJAIL_DATA, CHAIN(state, t, tmpd, root) };
        AjSensitivePlace run = { "/tmp/t/rt", "runtime", AJ_PLACE_AGENTJAIL_DATA, CHAIN(rt, t, tmpd, root) };
        AjSensitivePlace cfg = { "/tmp/t/cfg", "config (missing)", AJ_PLACE_AGENTJAIL_CODE, MISSING(t, tmpd, root) };
        AjSensitivePlace ssl = { "/etc", "etc", AJ_PLACE_SYSTEM_TREE, CHAIN(etc, root) };
        AjSensitivePlace top = { "/", "root", AJ_PLACE_SYSTEM_DIR, CHAIN(root) };
        const struct {
                const char *path;
                AjIdChain id;
                const AjSensitivePlace *place;
                unsigned want;
        } cases[] = {
                /* /alias is a bind of /tmp/t: contains both places, by identity only. */
                { "/alias", CHAIN(t, root), &st, AJ_REL_CONTAINS },
                { "/alias", CHAIN(t, root), &run, AJ_REL_CONTAINS },
                { "/alias", CHAIN(t, root), &cfg, AJ_REL_CONTAINS }, /* a missing place: its ancestors */
                { "/alias/state", CHAIN(state, t, root), &st, AJ_REL_IS },
                { "/alias/state/cache", CHAIN(cache, state, t, root), &st, AJ_REL_INSIDE },
                { "/alias/rt", CHAIN(rt, t, root), &st, 0 },           /* a sibling */
                { "/srv/s", CHAIN(state, srv, root), &st, AJ_REL_IS }, /* a bind of the place itself */
                { "/srv/s", CHAIN(state, srv, root), &run, 0 },
                { "/etc2/ssl", CHAIN(ID(1, 99), etc, root), &ssl, AJ_REL_INSIDE }, /* /etc2: a bind of /etc */
                { "/srv", CHAIN(srv, root), &ssl, 0 },
                { "/", CHAIN(root), &top, AJ_REL_IS },
                { "/", CHAIN(root), &st, AJ_REL_CONTAINS },
                { "/srv", CHAIN(srv, root), &top, AJ_REL_INSIDE },
                /* The path alone still counts (a place that does not exist yet has no identity). */
                { "/tmp/t/cfg/x", CHAIN(ID(2, 50), ID(2, 49), t, tmpd, root), &cfg, AJ_REL_INSIDE },
                { "/tmp/t/state", (AjIdChain){ 0 }, &st, AJ_REL_IS },
                /* No chain for the candidate or a missing candidate: paths only. */
                { "/alias", (AjIdChain){ 0 }, &st, 0 },
                { "/alias", MISSING(t, root), &st, 0 },
        };

        /* Inside one filesystem, by path there: /x is a bind of /tmp/t/state/cache (dev 2 is the
         * tmpfs on /tmp, so its path there is /t/state/cache); its ".." leads to "/". */
        AjSensitivePlace stfs = st;
        stfs.chain.fs_path = "/t/state";
        const struct {
                AjIdChain id;
                unsigned want;
        } fs_cases[] = {
                { { (AjFileId[]){ cache, root }, 2, false, "/t/state/cache" }, AJ_REL_INSIDE },
                { { (AjFileId[]){ state, root }, 2, false, "/t/state" }, AJ_REL_IS },
                { { (AjFileId[]){ t, root }, 2, false, "/t" }, AJ_REL_CONTAINS },
                { { (AjFileId[]){ ID(2, 77), root }, 2, false, "/t/statefoo" }, 0 },    /* a prefix only */
                { { (AjFileId[]){ ID(3, 12), root }, 2, false, "/t/state/cache" }, 0 }, /* another fs */
                { { (AjFileId[]){ cache, root }, 2, false, NULL }, 0 },                 /* unknown */
        };
        for (size_t i = 0; i < ARRAY_SIZE(fs_cases); i++) {
                unsigned rel = aj_place_relation("/x", &fs_cases[i].id, &stfs);

                cr_expect_eq(rel, fs_cases[i].want, "fs case %zu: relation %#x, want %#x", i, rel, fs_cases[i].want);
        }
        AjSensitivePlace missingfs = cfg;
        missingfs.chain.fs_path = "/t"; /* the missing place's existing ancestor's: not the place */
        cr_expect_eq(aj_place_relation("/x", &fs_cases[2].id, &missingfs), AJ_REL_CONTAINS);
        cr_expect_eq(aj_place_relation("/x", &(AjIdChain){ (AjFileId[]){ ID(2, 5), root }, 2, false, "/t/cfg" },
                                       &missingfs),
                     0);

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                unsigned rel = aj_place_relation(cases[i].path, &cases[i].id, cases[i].place);

                cr_expect_eq(rel, cases[i].want, "case %zu: %s vs %s: relation %#x, want %#x", i, cases[i].path,
                             cases[i].place->path, rel, cases[i].want);
        }

        /* Through the decision: the alias of the state dir's parent is refused, naming the place. */
        {
                AjSensitivePlace items[] = { top, ssl, st, run };
                AjSensitiveList l = { items, ARRAY_SIZE(items) };
                AjIdChain alias = CHAIN(t, root), other = CHAIN(ID(1, 77), srv, root);
                size_t at = SIZE_MAX;

                cr_expect_eq(aj_sensitive_check("/alias", &alias, AJ_ACCESS_READ, &l, NULL, &at), AJ_SENSITIVE_REFUSED);
                cr_expect(at < l.n && streq(l.items[at].path, "/tmp/t/state"), "place %zu", at);
                cr_expect_eq(aj_sensitive_check("/alias", NULL, AJ_ACCESS_READ, &l, NULL, NULL), AJ_SENSITIVE_NONE);
                cr_expect_eq(aj_sensitive_check("/srv/p", &other, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_NONE);
        }
}

/* The gathering: a real directory's chain ends at "/" and its parent is its second entry. */
Test(mount, sensitive_chain_gathering, PURE)
{
        char dir[] = "/tmp/aj-chain-XXXXXX";
        _cleanup_free_ char *sub = NULL, *missing = NULL, *file = NULL;
        AjIdChain c = { 0 }, m = { 0 }, f = { 0 }, r = { 0 };
        struct stat sd, ss, sr;
        int fd;

        cr_assert_not_null(mkdtemp(dir));
        cr_assert_geq(asprintf(&sub, "%s/sub", dir), 0);
        cr_assert_geq(asprintf(&missing, "%s/sub/not/there", dir), 0);
        cr_assert_geq(asprintf(&file, "%s/sub/f", dir), 0);
        cr_assert_eq(mkdir(sub, 0700), 0);
        fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
        cr_assert_eq(stat(dir, &sd), 0);
        cr_assert_eq(stat(sub, &ss), 0);
        cr_assert_eq(stat("/", &sr), 0);

        cr_assert_eq(aj_id_chain_from_path(sub, &c), 0);
        cr_expect(!c.missing);
        cr_assert_geq(c.n, 3);
        cr_expect(c.ids[0].dev == ss.st_dev && c.ids[0].ino == ss.st_ino);
        cr_expect(c.ids[1].dev == sd.st_dev && c.ids[1].ino == sd.st_ino);
        cr_expect(c.ids[c.n - 1].dev == sr.st_dev && c.ids[c.n - 1].ino == sr.st_ino);

        cr_assert_eq(aj_id_chain_from_path(missing, &m), 0);
        cr_expect(m.missing);
        cr_expect_eq(m.n, c.n); /* starts at sub, its nearest existing ancestor */
        cr_expect(m.ids[0].dev == ss.st_dev && m.ids[0].ino == ss.st_ino);

        cr_assert_eq(aj_id_chain_from_path(file, &f), 0);
        cr_expect_eq(f.n, c.n + 1); /* a file's parent is the directory it was found in */
        cr_expect(f.ids[1].dev == ss.st_dev && f.ids[1].ino == ss.st_ino);

        cr_assert_eq(aj_id_chain_from_path("/", &r), 0);
        cr_expect_eq(r.n, 1);
        /* Its path inside its filesystem ends with the directory's own path below the mount. */
        cr_expect_not_null(c.fs_path, "statx(STATX_MNT_ID) and mountinfo give the path in the filesystem");
        if (c.fs_path)
                cr_expect(strlen(c.fs_path) >= strlen("/sub") &&
                                  streq(c.fs_path + strlen(c.fs_path) - strlen("/sub"), "/sub"),
                          "fs path %s", c.fs_path);

        aj_id_chain_done(&c);
        aj_id_chain_done(&m);
        aj_id_chain_done(&f);
        aj_id_chain_done(&r);
        unlink(file);
        rmdir(sub);
        rmdir(dir);
}

/* The fixed places hold with no sources at all: the system's trees cannot be opted out. */
Test(mount, sensitive_fixed_places, PURE)
{
        AjSensitiveList l = { 0 };
        static const struct {
                const char *path;
                AjPlaceRule rule;
        } want[] = {
                { "/", AJ_PLACE_SYSTEM_DIR },      { "/usr", AJ_PLACE_SYSTEM_TREE },  { "/etc", AJ_PLACE_SYSTEM_TREE },
                { "/boot", AJ_PLACE_SYSTEM_TREE }, { "/proc", AJ_PLACE_SYSTEM_TREE }, { "/var", AJ_PLACE_SYSTEM_DIR },
                { "/var", AJ_PLACE_GENERIC },      { "/tmp", AJ_PLACE_GENERIC },      { "/root", AJ_PLACE_GENERIC },
                { "/srv", AJ_PLACE_GENERIC },
        };

        cr_assert_eq(aj_sensitive_list_build(&(AjSensitiveSources){ 0 }, &l), 0);
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                _cleanup_free_ char *real = realpath(want[i].path, NULL);
                bool found = false;

                for (size_t j = 0; j < l.n; j++)
                        found |= streq(l.items[j].path, real ? real : want[i].path) && l.items[j].rule == want[i].rule;
                cr_expect(found, "%s (rule %d) is a fixed place", want[i].path, want[i].rule);
        }
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                cr_expect_eq(aj_place_rule_opt_out(want[i].rule), want[i].rule == AJ_PLACE_GENERIC, "%s", want[i].path);
        /* /bin, /lib are /usr/bin, /usr/lib on merged-/usr hosts: refused either way (the
         * plan judges a bind by its real path). */
        static const char *const sys[] = { "/bin", "/lib", "/sbin", "/usr/bin", "/etc/ssl" };
        for (size_t i = 0; i < ARRAY_SIZE(sys); i++) {
                _cleanup_free_ char *real = realpath(sys[i], NULL);

                if (real)
                        cr_expect_eq(aj_sensitive_check(real, NULL, AJ_ACCESS_OWNER, &l, NULL, NULL),
                                     AJ_SENSITIVE_REFUSED, "%s", real);
        }
        aj_sensitive_list_done(&l);
}

Test(mount, sensitive_list_resolves_symlinks_and_missing_tails, PURE)
{
        AjSensitiveList l = { 0 };
        char passwd[PATH_MAX];
        FILE *f;

        cr_assert_eq(mkdir(P("/home/bob"), 0755), 0);
        snprintf(passwd, sizeof(passwd), "%s", P("/passwd"));
        f = fopen(passwd, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "root:x:0:0:root:%s:/bin/sh\ndaemon:x:1:1::/usr/sbin:/bin/sh\ncarol:x:1001:1001::%s:/bin/sh\n"
                "nobody:x:65534:65534::/nonexistent:/bin/sh\n",
                P("/rootdir"), P("/carol"));
        fclose(f);
        AjSensitiveSources src = {
                .state_root = P("/lnk/state"), /* "lnk" -> "a": compared where it really is */
                .exe = P("/a/f"),
                .passwd = passwd,
                .home_root = P("/home"),
        };
        cr_assert_eq(aj_sensitive_list_build(&src, &l), 0);
        bool state = false, carol = false, rootdir = false, daemon = false, bob = false;
        for (size_t i = 0; i < l.n; i++) {
                state |= streq(l.items[i].path, P("/a/state")) && l.items[i].rule == AJ_PLACE_AGENTJAIL_DATA;
                carol |= streq(l.items[i].path, P("/carol")) && l.items[i].rule == AJ_PLACE_GENERIC;
                rootdir |= streq(l.items[i].path, P("/rootdir"));
                daemon |= streq(l.items[i].path, "/usr/sbin") && l.items[i].rule == AJ_PLACE_GENERIC;
                bob |= streq(l.items[i].path, P("/home/bob"));
        }
        cr_expect(state, "the state dir is resolved through the symlink, its missing tail kept");
        cr_expect(carol && rootdir, "root's and real users' homes are listed");
        cr_expect_not(daemon, "system accounts' homes are not");
        cr_expect(bob, "every directory in the home root is a home");
        aj_sensitive_list_done(&l);

        /* Relative (AGENTJAIL_STATE_DIR=state): resolved against the cwd; agentjail's own
         * places fail closed when they cannot be resolved, generic ones are skipped. */
        cr_assert_eq(chdir(P("/a")), 0);
        cr_expect_eq(aj_sensitive_list_add(&l, "b", "rel", AJ_PLACE_AGENTJAIL_DATA), 0);
        cr_expect(l.n == 1 && streq(l.items[0].path, P("/a/b")), "got %s", l.n ? l.items[0].path : "(none)");
        cr_expect_eq(aj_sensitive_list_add(&l, "missing/../x", "rel", AJ_PLACE_AGENTJAIL_DATA), -EINVAL);
        cr_expect_eq(aj_sensitive_list_add(&l, "missing/../x", "rel", AJ_PLACE_GENERIC), 0);
        cr_expect_eq(l.n, 1);
        aj_sensitive_list_done(&l);
}

/* Under an eval, every case's profile files and fixture (AJ_EVAL_INPUTS_ENV, one a line) are
 * agentjail's code to every case's run: a case's agent rewrote a later case's profile. */
Test(mount, sensitive_eval_inputs, PURE)
{
        AjSensitiveList l = { 0 };
        cr_assert_eq(mkdir(P("/repo"), 0755), 0);
        char lines[2 * PATH_MAX + 16];
        snprintf(lines, sizeof(lines), "%s\nrelative.json\n%s\n", P("/repo/later.json"), P("/repo/base/chain.json"));
        AjSensitiveSources src = { .eval_inputs = lines };
        cr_assert_eq(aj_sensitive_list_build(&src, &l), 0);
        size_t found = 0;
        for (size_t i = 0; i < l.n; i++)
                if (l.items[i].rule == AJ_PLACE_AGENTJAIL_CODE && (streq(l.items[i].path, P("/repo/later.json")) ||
                                                                   streq(l.items[i].path, P("/repo/base/chain.json"))))
                        found++;
        cr_expect_eq(found, 2, "each absolute line is a place (a relative one is not eval's)");
        cr_expect_eq(aj_sensitive_check(P("/repo"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED);
        cr_expect_eq(aj_sensitive_check(P("/repo/base"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED);
        cr_expect_eq(aj_sensitive_check(P("/repo"), NULL, AJ_ACCESS_READ, &l, NULL, NULL), AJ_SENSITIVE_NONE,
                     "read-only: the profiles are read, not written");
        aj_sensitive_list_done(&l);
}

/* The files the run's profile has the host run (its alert command) are agentjail's code to the
 * run: a rw bind of their directory had the agent rewrite the script its breach ran as root. */
Test(mount, sensitive_host_programs, PURE)
{
        AjSensitiveList l = { 0 };
        cr_assert_eq(mkdir(P("/hooks"), 0755), 0);
        char *programs[] = { P("/hooks/alert.sh"), "relative.sh", NULL };
        AjSensitiveSources src = { .host_programs = programs };
        cr_assert_eq(aj_sensitive_list_build(&src, &l), 0);
        size_t at = l.n;
        for (size_t i = 0; i < l.n; i++)
                if (l.items[i].rule == AJ_PLACE_AGENTJAIL_CODE && streq(l.items[i].path, P("/hooks/alert.sh")))
                        at = i;
        cr_assert_lt(at, l.n, "the alert command is a place");
        cr_expect_str_eq(l.items[at].what, "a program the run's profile runs on the host");
        cr_expect_eq(aj_sensitive_check(P("/hooks"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED);
        cr_expect_eq(aj_sensitive_check(P("/hooks"), NULL, AJ_ACCESS_READ, &l, NULL, NULL), AJ_SENSITIVE_NONE,
                     "read-only: it is run, not written");
        aj_sensitive_list_done(&l);
}

/* A program named through symlinks: each link it goes through is a place too, not only its
 * target: the agent replaced the link in a directory bound rw with its own script, which the
 * host then ran (attacker review 26). */
Test(mount, sensitive_host_program_links, PURE)
{
        AjSensitiveList l = { 0 };
        cr_assert_eq(mkdir(P("/real"), 0755), 0);
        cr_assert_eq(mkdir(P("/real/bin"), 0755), 0);
        cr_assert_eq(mkdir(P("/hooks"), 0755), 0);
        cr_assert_eq(mkdir(P("/other"), 0755), 0);
        cr_assert_eq(mkdir(P("/other/sub"), 0755), 0);
        cr_assert_eq(close(open(P("/real/bin/alert.sh"), O_CREAT | O_WRONLY | O_CLOEXEC, 0755)), 0);
        /* hooks/alert.sh -> ../other/sub/../dir/alert.sh, other/dir -> /real/bin (absolute) */
        cr_assert_eq(symlink("../other/sub/../dir/alert.sh", P("/hooks/alert.sh")), 0);
        cr_assert_eq(symlink(P("/real/bin"), P("/other/dir")), 0);
        char *programs[] = { P("/hooks/alert.sh"), NULL };
        AjSensitiveSources src = { .host_programs = programs };
        cr_assert_eq(aj_sensitive_list_build(&src, &l), 0);
        cr_expect_eq(aj_sensitive_check(P("/real/bin"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED,
                     "the target");
        cr_expect_eq(aj_sensitive_check(P("/hooks"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED,
                     "the directory of the link named");
        cr_expect_eq(aj_sensitive_check(P("/other"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_REFUSED,
                     "the directory of a link on the way");
        cr_expect_eq(aj_sensitive_check(P("/other/sub"), NULL, AJ_ACCESS_OWNER, &l, NULL, NULL), AJ_SENSITIVE_NONE,
                     "a directory passed through by .. holds no link of the way");
        cr_expect_eq(aj_sensitive_check(P("/hooks"), NULL, AJ_ACCESS_READ, &l, NULL, NULL), AJ_SENSITIVE_NONE,
                     "read-only: the link is followed, not written");
        aj_sensitive_list_done(&l);
}

/* The shared lstat walk (the fast way) must give what the slow way (realpath, then an fd's
 * chain) gives, for every kind of path: symlinks relative and absolute, chained, to a
 * missing target, a file with a path below it, missing tails, a mount point, a bind
 * mount of a subdirectory (its fs_path shows where it comes from), and the system's. */
static void expect_walk_as_slow(const char *path, const char *slow_path)
{
        char *real_w = NULL, *real_s = NULL;
        AjIdChain cw = { 0 }, cs = { 0 };
        int rw = aj_sensitive_resolve(path, true, &real_w, &cw);
        int rs = aj_sensitive_resolve(slow_path, false, &real_s, &cs);
        if (rw == 1) { /* not answered by the walk: only where the slow way is needed */
                cr_log_info("walk leaves %s to the slow way", path);
                aj_id_chain_done(&cs);
                free(real_s);
                return;
        }
        cr_assert_eq(rw, rs, "%s: walk %d, slow %d", path, rw, rs);
        if (rw < 0)
                return;
        cr_expect_str_eq(real_w, real_s, "%s: resolved path", path);
        cr_expect_eq(cw.missing, cs.missing, "%s: missing", path);
        cr_expect_eq(cw.n, cs.n, "%s: chain length %zu vs %zu", path, cw.n, cs.n);
        for (size_t i = 0; i < cw.n && i < cs.n; i++)
                cr_expect(cw.ids[i].dev == cs.ids[i].dev && cw.ids[i].ino == cs.ids[i].ino, "%s: chain[%zu]", path, i);
        cr_expect((!cw.fs_path && !cs.fs_path) || (cw.fs_path && cs.fs_path && streq(cw.fs_path, cs.fs_path)),
                  "%s: fs_path %s vs %s", path, cw.fs_path ?: "(null)", cs.fs_path ?: "(null)");
        aj_id_chain_done(&cw);
        aj_id_chain_done(&cs);
        free(real_w);
        free(real_s);
}

static void expect_same_resolution(const char *path) { expect_walk_as_slow(path, path); }

Test(mount, sensitive_walk_agrees_with_the_slow_way, LIVE)
{
        if (geteuid() != 0)
                cr_skip_test("needs root (a private mount namespace)");
        cr_assert_eq(unshare(CLONE_NEWNS), 0);
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        cr_assert_eq(mkdir(P("/a/b/c"), 0755), 0);
        cr_assert_eq(symlink(P("/a/b"), P("/abs")), 0); /* absolute */
        cr_assert_eq(symlink("lnk/b", P("/chain")), 0); /* to a relative one */
        cr_assert_eq(symlink("nowhere/x", P("/dangling")), 0);
        cr_assert_eq(symlink("../a", P("/a/b/up")), 0); /* "..": left to the slow way */
        cr_assert_eq(symlink("c", P("/a/b/rel")), 0);
        cr_assert_eq(symlink("loop2", P("/loop1")), 0);
        cr_assert_eq(symlink("loop1", P("/loop2")), 0);
        cr_assert_eq(mkdir(P("/mnt"), 0755), 0);
        cr_assert_eq(mkdir(P("/sub"), 0755), 0);
        cr_assert_eq(mount("aj-walk", P("/mnt"), "tmpfs", 0, NULL), 0);
        cr_assert_eq(mkdir(P("/mnt/in"), 0755), 0);
        cr_assert_eq(mount(P("/a/b"), P("/sub"), NULL, MS_BIND, NULL), 0);
        const char *paths[] = {
                tmp,
                P("/a"),
                P("/a/b/c"),
                P("/a/f"),
                P("/a/f/below"),
                P("/lnk"),
                P("/lnk/b/c"),
                P("/lnk/missing/x"),
                P("/abs"),
                P("/abs/c/more"),
                P("/chain"),
                P("/chain/rel"),
                P("/a/b/up"),
                P("/a/b/rel/x"),
                P("/mnt"),
                P("/mnt/in"),
                P("/mnt/in/gone"),
                P("/sub"),
                P("/sub/c"),
                P("//a/./b/"),
                "/",
                "/usr",
                "/bin",
                "/sbin",
                "/lib",
                "/lib64",
                "/etc",
                "/var",
                "/var/lib",
                "/var/tmp",
                "/tmp",
                "/proc",
                "/proc/self",
                "/dev",
                "/dev/shm",
                "/dev/fd",
                "/root",
                "/home",
                "/run",
                "/nonexistent",
                "/nonexistent/deeper",
                "/etc/passwd/x",
        };
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
                expect_same_resolution(paths[i]);
        /* A symlink to a missing target: the walk follows it to where a file created
         * through it would land (the slow way cannot open it, and stops at the link). */
        expect_walk_as_slow(P("/dangling"), P("/nowhere/x"));
        /* A symlink loop: both fail, or the walk hands it to the slow way. */
        expect_same_resolution(P("/loop1/x"));
        cr_assert_eq(umount2(P("/sub"), MNT_DETACH), 0);
        cr_assert_eq(umount2(P("/mnt"), MNT_DETACH), 0);
}

static void sensitive_setup(Setup *s, AjSensitiveList *l)
{
        setup_init(s);
        *l = (AjSensitiveList){ 0 };
        cr_assert_eq(aj_sensitive_list_add(l, P("/a"), "a test place", AJ_PLACE_GENERIC), 0);
        cr_assert_eq(aj_sensitive_list_add(l, P("/ws/state"), "the test state dir", AJ_PLACE_AGENTJAIL_DATA), 0);
        cr_assert_eq(aj_sensitive_list_add(l, P("/run"), "the test config dir", AJ_PLACE_AGENTJAIL_CODE), 0);
        s->ctx.sensitive = l;
}

/* A plan built with defer_places pins its sources and judges them later (while the
 * child builds its root): the same refusal, word for word, and not judged until then. */
Test(mount, sensitive_deferred_check_says_the_same, PURE)
{
        Setup s;
        AjSensitiveList l;
        char *direct = NULL;

        sensitive_setup(&s, &l);
        add_bind(&s.p.rw, tmp);
        cr_expect_eq(build_fail(&s, &direct), -EPERM);

        s.ctx.sensitive = NULL;
        s.ctx.defer_places = true;
        AjMountPlan *plan = build_ok(&s);
        cr_expect_not(aj_mount_plan_places_judged(plan), "deferred: not judged yet, the command must wait");
        AjError e = {};
        cr_expect_eq(aj_mount_plan_check_places(plan, &l, &e), -EPERM);
        cr_expect_str_eq(e.message ?: "", direct);
        cr_expect_not(aj_mount_plan_places_judged(plan), "refused: still not judged");
        aj_error_clear(&e);
        aj_mount_plan_free(plan);
        free(direct);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* Nothing sensitive: judged after the check, and nothing was allowed by opt-out. */
        sensitive_setup(&s, &l);
        s.ctx.sensitive = NULL;
        s.ctx.defer_places = true;
        add_bind(&s.p.rw, P("/a/b"));
        plan = build_ok(&s);
        cr_expect_eq(aj_mount_plan_check_places(plan, &l, &e), 0, "%s", e.message ?: "");
        cr_expect(aj_mount_plan_places_judged(plan));
        cr_expect_null(aj_mount_plan_sensitive_allowed(plan));
        aj_mount_plan_free(plan);
        setup_free(&s);
        aj_sensitive_list_done(&l);
}

Test(mount, sensitive_workspace_and_rw_binds_refused, PURE)
{
        Setup s;
        AjSensitiveList l;
        char *err = NULL;

        /* The workspace IS a generic place; reached through a symlink. */
        sensitive_setup(&s, &l);
        s.p.workspace_path = strdup(P("/lnk"));
        s.p.workspace_mode = AJ_WORKSPACE_RW;
        cr_expect_eq(build_fail(&s, &err), -EPERM);
        cr_expect(strstr(err, "filesystem.workspace: refusing '") == err && strstr(err, "it is '") &&
                          strstr(err, "filesystem.allow_sensitive"),
                  "%s", err);
        free(err);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* An rw bind that CONTAINS a generic place, and one inside agentjail's own. */
        sensitive_setup(&s, &l);
        add_bind(&s.p.rw, tmp);
        cr_expect_eq(build_fail(&s, &err), -EPERM);
        cr_expect(strstr(err, "filesystem.rw: refusing '") == err && strstr(err, "it contains '"), "%s", err);
        free(err);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        sensitive_setup(&s, &l);
        cr_assert_eq(mkdir(P("/ws/state"), 0755), 0);
        cr_assert_eq(mkdir(P("/ws/state/runs"), 0755), 0);
        add_bind(&s.ctx.extra_rw, P("/ws/state/runs"));
        cr_expect_eq(build_fail(&s, &err), -EPERM);
        cr_expect(strstr(err, "--rw: refusing '") == err && strstr(err, "it is inside '") &&
                          strstr(err, "agentjail's own files"),
                  "%s", err);
        free(err);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* The workspace (cwd) contains the state dir: never allowed, whatever the profile says. */
        sensitive_setup(&s, &l);
        s.p.workspace_path = strdup(".");
        s.p.workspace_mode = AJ_WORKSPACE_RO;
        {
                char *allow[] = { P("/ws"), P("/ws/state"), NULL };
                s.p.allow_sensitive.items = allow;
                s.p.allow_sensitive.n = 2;
                cr_expect_eq(build_fail(&s, &err), -EPERM);
                s.p.allow_sensitive = (AjStrList){ 0 };
        }
        free(err);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* A directory inside a generic place is fine. */
        sensitive_setup(&s, &l);
        cr_assert_eq(mkdir(P("/a/c"), 0755), 0);
        add_bind(&s.p.rw, P("/a/c"));
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                cr_expect_null(aj_mount_plan_sensitive_allowed(plan));
        }
        setup_free(&s);
        aj_sensitive_list_done(&l);
}

/* The system's own trees as rw binds: with an idmapped mount of a root-owned tree the agent
 * is root there (/etc/shadow, the programs in /usr/bin). No profile can allow it. */
Test(mount, system_dirs_are_never_rw_binds, PURE)
{
        static const char *const bad[] = { "/etc", "/usr",  "/usr/bin", "/etc/ssl", "/bin", "/sbin",
                                           "/lib", "/boot", "/var",     "/home",    "/run", "/sys/fs/cgroup" };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char *allow[] = { (char *)bad[i], "/etc", "/usr", "/var", NULL };
                Setup s;
                char *err = NULL;

                if (access(bad[i], F_OK) < 0)
                        continue;
                /* Through the profile (with an opt-out naming it), and through --rw SRC:/x. */
                for (int via_cli = 0; via_cli < 2; via_cli++) {
                        char spec[PATH_MAX];

                        setup_init(&s);
                        snprintf(spec, sizeof(spec), "%s:/x", bad[i]);
                        add_bind(via_cli ? &s.ctx.extra_rw : &s.p.rw, spec);
                        s.p.allow_sensitive.items = allow;
                        s.p.allow_sensitive.n = 4;
                        cr_expect_eq(build_fail(&s, &err), -EPERM, "%s", bad[i]);
                        cr_expect(strstr(err, via_cli ? "--rw: refusing '" : "filesystem.rw: refusing '") == err &&
                                          strstr(err, "rule: the system's own directories are never mounted "
                                                      "writable"),
                                  "%s: %s", bad[i], err);
                        free(err);
                        s.p.allow_sensitive = (AjStrList){ 0 };
                        setup_free(&s);
                }
                /* Read-only, the system is what the jail runs on. */
                if (streq(bad[i], "/var") || streq(bad[i], "/home") || streq(bad[i], "/run"))
                        continue; /* generic places too: read-only they need an opt-out */
                char spec[PATH_MAX];

                setup_init(&s);
                snprintf(spec, sizeof(spec), "%s:/x", bad[i]);
                add_bind(&s.p.ro, spec);
                {
                        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                }
                setup_free(&s);
        }
}

/* Read-only binds: Unix sockets accept connect() through a read-only mount, and a home's
 * files are read. The generic places need an opt-out, agentjail's data dirs are never bound. */
Test(mount, sensitive_ro_binds, PURE)
{
        Setup s;
        AjSensitiveList l;
        char *err = NULL;

        /* --ro of a generic place, through a symlink too, and of the fixture root that
         * contains it (and the state dir). */
        for (int c = 0; c < 3; c++) {
                sensitive_setup(&s, &l);
                add_bind(&s.ctx.extra_ro, c == 0 ? P("/a") : c == 1 ? P("/lnk:/x") : tmp);
                cr_expect_eq(build_fail(&s, &err), -EPERM);
                cr_expect(strstr(err, "--ro: refusing '") == err && strstr(err, c < 2 ? "it is '" : "it contains '") &&
                                  strstr(err, "mounted, even read-only") &&
                                  (c == 2 || strstr(err, "filesystem.allow_sensitive")),
                          "%s", err);
                free(err);
                setup_free(&s);
                aj_sensitive_list_done(&l);
        }

        /* Opted out: mounted, and reported for the degraded event. */
        sensitive_setup(&s, &l);
        add_bind(&s.p.ro, P("/a"));
        {
                char *allow[] = { P("/a"), NULL };

                s.p.allow_sensitive.items = allow;
                s.p.allow_sensitive.n = 1;
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                char *const *a = aj_mount_plan_sensitive_allowed(plan);

                cr_assert_not_null(a);
                cr_expect(strstr(a[0], "filesystem.ro '") == a[0] && strstr(a[0], "allow_sensitive"), "%s", a[0]);
                s.p.allow_sensitive = (AjStrList){ 0 };
        }
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* Inside agentjail's state dir: never, whatever the profile says. */
        sensitive_setup(&s, &l);
        cr_assert_eq(mkdir(P("/ws/state"), 0755), 0);
        add_bind(&s.p.ro, P("/ws/state"));
        {
                char *allow[] = { P("/ws/state"), NULL };

                s.p.allow_sensitive.items = allow;
                s.p.allow_sensitive.n = 1;
                cr_expect_eq(build_fail(&s, &err), -EPERM);
                cr_expect(strstr(err, "filesystem.ro: refusing '") == err &&
                                  strstr(err, "never mounted, even read-only"),
                          "%s", err);
                s.p.allow_sensitive = (AjStrList){ 0 };
        }
        free(err);
        setup_free(&s);
        aj_sensitive_list_done(&l);

        /* agentjail's config dir and a file inside a generic place: read-only is fine. */
        sensitive_setup(&s, &l);
        add_bind(&s.p.ro, P("/run"));
        add_bind(&s.p.ro, P("/a/f"));
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                cr_expect_null(aj_mount_plan_sensitive_allowed(plan));
        }
        setup_free(&s);
        aj_sensitive_list_done(&l);
}

Test(mount, sensitive_allowed_by_profile_is_reported, PURE)
{
        Setup s;
        AjSensitiveList l;
        char *allow[] = { "~", NULL };

        sensitive_setup(&s, &l);
        s.p.workspace_path = strdup(P("/a"));
        s.p.workspace_mode = AJ_WORKSPACE_RW;
        s.ctx.host_home = P("/a"); /* "~" names the invoker's home */
        s.p.allow_sensitive.items = allow;
        s.p.allow_sensitive.n = 1;
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                char *const *a = aj_mount_plan_sensitive_allowed(plan);

                cr_assert_not_null(a);
                cr_expect(strstr(a[0], "filesystem.workspace '") == a[0] && strstr(a[0], "allow_sensitive"), "%s",
                          a[0]);
                cr_expect_null(a[1]);
        }
        s.p.allow_sensitive = (AjStrList){ 0 };
        setup_free(&s);
        aj_sensitive_list_done(&l);
}

/* ---- live tests ---------------------------------------------------------- */

static bool require_root(void)
{
        const char *strict = getenv("AGENTJAIL_TEST_STRICT");

        if (geteuid() == 0)
                return true;
        if (strict && streq(strict, "1"))
                cr_assert_fail("live mount tests need root (AGENTJAIL_TEST_STRICT=1)");
        cr_skip_test("live mount tests need root");
        return false;
}

static int write_file(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        size_t l = strlen(s);

        if (fd < 0)
                return -errno;
        return write(fd, s, l) == (ssize_t)l ? 0 : -errno;
}

static int write_maps(pid_t pid, const char *map)
{
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        r = write_file(path, map);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        return write_file(path, map);
}

/* A user namespace mapping host owner 0 to HOST_UID, for the idmapped workspace. */
static int make_idmap_userns(void)
{
        int sync[2], fd = -1, status;
        char path[64];
        pid_t pid;

        cr_assert_eq(pipe2(sync, O_CLOEXEC), 0);
        pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char c;

                close(sync[1]);
                (void)!read(sync[0], &c, 1);
                _exit(0);
        }
        close(sync[0]);
        if (write_maps(pid, "0 100000 1") == 0) {
                snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        close(sync[1]);
        waitpid(pid, &status, 0);
        return fd;
}

typedef void (*jail_checks)(int report_fd, void *data);

static void report(int fd, bool ok, const char *fmt, ...) _printf_(3, 4);
static void report(int fd, bool ok, const char *fmt, ...)
{
        char line[512];
        int n;
        va_list ap;

        n = snprintf(line, sizeof(line), "%s ", ok ? "OK" : "FAIL");
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (n > (int)sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n++] = '\n';
        (void)!write(fd, line, (size_t)n);
}

/* What the lead's child code does before aj_mount_apply(): become ctx->uid, keep all caps. */
static int become_agent(void)
{
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2];

        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
            setresgid(JAIL_UID, JAIL_UID, JAIL_UID) < 0 || setresuid(JAIL_UID, JAIL_UID, JAIL_UID) < 0)
                return -errno;
        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        d[0].effective = d[0].permitted;
        d[1].effective = d[1].permitted;
        if (syscall(SYS_capset, &h, d) < 0)
                return -errno;
        return 0;
}

/*
 * Clone a child into new user+mount+pid namespaces mapped "1000 100000 1", apply
 * the plan there and run `checks`. The child's report (lines "OK ..."/"FAIL ...")
 * comes back in `out`. Returns the child's wait status.
 */
static int run_jail(const AjMountPlan *plan, jail_checks checks, void *data, char *out, size_t outlen)
{
        int sync[2], rep[2], status = -1;
        size_t used = 0;
        pid_t pid;

        cr_assert_eq(pipe2(sync, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(rep, O_CLOEXEC), 0);
        pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, 0);
        cr_assert_geq(pid, 0, "clone: %s", strerror(errno));
        if (pid == 0) {
                struct timespec t0, t1;
                size_t step = 0;
                char c, desc[PATH_MAX];
                int r;

                close(sync[1]);
                close(rep[0]);
                if (read(sync[0], &c, 1) != 1)
                        _exit(2);
                r = become_agent();
                if (r < 0) {
                        report(rep[1], false, "become agent: %s", strerror(-r));
                        _exit(1);
                }
                clock_gettime(CLOCK_MONOTONIC, &t0);
                r = aj_mount_apply(plan, NULL, &step);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if (r < 0) {
                        report(rep[1], false, "apply: step %zu (%s): %s", step,
                               aj_mount_step_describe(plan, step, desc, sizeof(desc)), strerror(-r));
                        _exit(1);
                }
                report(rep[1], true, "TIME %ld",
                       (long)((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000));
                if (checks)
                        checks(rep[1], data);
                report(rep[1], true, "END");
                _exit(0);
        }
        close(sync[0]);
        close(rep[1]);
        if (write_maps(pid, "1000 100000 1") == 0)
                (void)!write(sync[1], "x", 1);
        close(sync[1]);
        for (;;) {
                ssize_t k = read(rep[0], out + used, outlen - 1 - used);

                if (k <= 0)
                        break;
                used += (size_t)k;
                if (used == outlen - 1)
                        break;
        }
        out[used] = '\0';
        close(rep[0]);
        waitpid(pid, &status, 0);
        return status;
}

static long report_time(const char *out)
{
        const char *t = strstr(out, "OK TIME ");

        return t ? strtol(t + 8, NULL, 10) : -1;
}

static void assert_report_ok(int status, const char *out)
{
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "jail child failed (status %#x):\n%s", status, out);
        cr_assert_null(strstr(out, "FAIL"), "jail checks failed:\n%s", out);
        cr_assert_not_null(strstr(out, "OK END"), "jail report incomplete:\n%s", out);
}

static void default_like_profile(Setup *s)
{
        add_bind(&s->p.ro, "/usr");
        add_bind(&s->p.ro, "/bin");
        add_bind(&s->p.ro, "/lib");
        add_bind(&s->p.ro, "?/lib64");
        add_bind(&s->p.ro, "?/etc/ld.so.cache");
        add_str(&s->p.tmpfs, "/tmp");
        s->p.workspace_path = strdup(".");
        s->p.workspace_mode = AJ_WORKSPACE_RW;
}

static bool only_pid_one_in_proc(void)
{
        DIR *d = opendir("/proc");
        struct dirent *de;
        int numeric = 0, one = 0;

        if (!d)
                return false;
        while ((de = readdir(d)))
                if (de->d_name[0] >= '0' && de->d_name[0] <= '9') {
                        numeric++;
                        one += streq(de->d_name, "1");
                }
        closedir(d);
        return numeric == 1 && one == 1;
}

static bool file_contains(const char *path, const char *needle)
{
        char buf[4096];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return false;
        buf[n] = '\0';
        return strstr(buf, needle) != NULL;
}

static int errno_of(int r) { return r < 0 ? errno : 0; }

typedef struct {
        const char *ws;
        const char *root_mountpoint;
} LiveData;

static void checks_default(int fd, void *data)
{
        const LiveData *ld = data;
        char path[PATH_MAX], cwd[PATH_MAX], buf[16];
        struct statvfs vfs;
        struct stat st;
        int e, tfd;

        report(fd, getuid() == JAIL_UID, "uid %u", (unsigned)getuid());
        report(fd, getpid() == 1, "pid %d", (int)getpid());

        tfd = open("/usr/bin/env", O_RDONLY | O_CLOEXEC);
        report(fd, tfd >= 0, "/usr readable: %s", tfd < 0 ? strerror(errno) : "yes");
        if (tfd >= 0)
                close(tfd);
        e = errno_of(open("/usr/aj-probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        report(fd, e == EROFS, "create in /usr -> %s", strerror(e));
        e = errno_of(open("/aj-probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        report(fd, e == EROFS, "create in / -> %s", strerror(e));
        e = errno_of(mkdir("/aj-probe-dir", 0755));
        report(fd, e == EROFS, "mkdir in / -> %s", strerror(e));

        report(fd, lstat("/bin", &st) == 0 && S_ISLNK(st.st_mode), "/bin is a symlink");
        report(fd, access("/bin/sh", X_OK) == 0, "/bin/sh executable through the link");

        report(fd, file_contains("/etc/passwd", "agent:x:1000:1000:agent:/home/agent:/bin/sh\n"),
               "/etc/passwd has the agent");
        report(fd, file_contains("/etc/hostname", "testjail\n"), "/etc/hostname");
        report(fd, file_contains("/etc/hosts", "127.0.0.1 localhost testjail\n"), "/etc/hosts");
        e = errno_of(open("/etc/passwd", O_WRONLY | O_CLOEXEC));
        report(fd, e == EROFS, "/etc/passwd not writable -> %s", strerror(e));

        report(fd, access("/proc/self/status", R_OK) == 0, "/proc/self exists");
        report(fd, only_pid_one_in_proc(), "/proc shows only the jail's pid 1");
        /* Permission checks on host-owned sysctls come before EROFS, so ask the mount. */
        report(fd, statvfs("/proc/sys", &vfs) == 0 && (vfs.f_flag & ST_RDONLY), "/proc/sys mounted read-only");
        if (access("/proc/sysrq-trigger", F_OK) == 0) /* absent without CONFIG_MAGIC_SYSRQ */
                report(fd, statvfs("/proc/sysrq-trigger", &vfs) == 0 && (vfs.f_flag & ST_RDONLY),
                       "/proc/sysrq-trigger mounted read-only");
        report(fd, statvfs("/proc/self", &vfs) == 0 && !(vfs.f_flag & ST_RDONLY) && (vfs.f_flag & ST_NOEXEC),
               "/proc itself read-write, noexec");

        tfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        report(fd, tfd >= 0 && write(tfd, "x", 1) == 1 && read(tfd, buf, 1) == 0, "/dev/null works");
        if (tfd >= 0)
                close(tfd);
        tfd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        report(fd, tfd >= 0 && read(tfd, buf, 4) == 4 && buf[0] == 0 && buf[3] == 0, "/dev/zero works");
        if (tfd >= 0)
                close(tfd);
        tfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        report(fd, tfd >= 0 && read(tfd, buf, 4) == 4, "/dev/urandom works");
        if (tfd >= 0)
                close(tfd);
        tfd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        report(fd, tfd >= 0, "/dev/ptmx opens: %s", tfd < 0 ? strerror(errno) : "yes");
        if (tfd >= 0)
                close(tfd);
        report(fd, access("/dev/shm", W_OK) == 0, "/dev/shm writable");
        report(fd, lstat("/dev/fd", &st) == 0 && S_ISLNK(st.st_mode), "/dev/fd symlink");
        e = errno_of(stat("/dev/sda", &st));
        report(fd, e == ENOENT, "no other devices (/dev/sda -> %s)", strerror(e));

        e = errno_of(stat("/sys", &st));
        report(fd, e == ENOENT, "/sys absent -> %s", strerror(e));
        e = errno_of(stat("/work", &st));
        report(fd, e == ENOENT, "/work absent -> %s", strerror(e));
        e = errno_of(stat("/root", &st));
        report(fd, e == ENOENT, "/root absent -> %s", strerror(e));
        e = errno_of(stat(ld->root_mountpoint, &st));
        report(fd, e == ENOENT, "old root path absent -> %s", strerror(e));

        report(fd, getcwd(cwd, sizeof(cwd)) && streq(cwd, ld->ws), "cwd is the workspace (%s)", cwd);
        report(fd, stat(ld->ws, &st) == 0 && st.st_uid == JAIL_UID, "workspace owned by the agent (uid %u)",
               (unsigned)st.st_uid);
        snprintf(path, sizeof(path), "%s/created-in-jail", ld->ws);
        tfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        report(fd, tfd >= 0, "workspace writable: %s", tfd < 0 ? strerror(errno) : "yes");
        if (tfd >= 0) {
                report(fd, write(tfd, "hi\n", 3) == 3, "write into the workspace");
                close(tfd);
        }

        report(fd, stat("/home/agent", &st) == 0 && st.st_uid == JAIL_UID && (st.st_mode & 07777) == 0700,
               "home is 0700 and the agent's");
        tfd = open("/home/agent/.profile", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        report(fd, tfd >= 0, "home writable");
        if (tfd >= 0)
                close(tfd);
        tfd = open("/tmp/x", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        report(fd, tfd >= 0, "/tmp writable");
        if (tfd >= 0)
                close(tfd);
}

static bool dir_is_empty(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *de;
        bool empty = true;

        if (!d)
                return false;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        empty = false;
        closedir(d);
        return empty;
}

Test(mount, live_idmapped_workspace, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        _cleanup_close_ int userns = -1;
        char *err = NULL, out[16384];
        LiveData ld;
        struct stat st;
        int status;

        if (!require_root())
                return;
        setup_init(&s);
        default_like_profile(&s);
        s.ctx.idmap = true;
        cr_assert_eq(chown(P("/ws"), 0, 0), 0);
        plan = build_ok(&s);

        userns = make_idmap_userns();
        cr_assert_geq(userns, 0, "idmap user namespace");
        cr_assert_eq(prepare(plan, userns, &err), 0, "prepare: %s", err ? err : "");
        cr_expect_not(aj_mount_plan_idmap_degraded(plan));

        ld.ws = P("/ws");
        ld.root_mountpoint = P("/root");
        status = run_jail(plan, checks_default, &ld, out, sizeof(out));
        aj_mount_plan_close_fds(plan);
        cr_log_info("aj_mount_apply (default-like plan, idmapped workspace): %ld us", report_time(out));
        assert_report_ok(status, out);

        /* idmap: the file the agent (host uid 100000) created belongs to the workspace owner. */
        cr_assert_eq(stat(P("/ws/created-in-jail"), &st), 0);
        cr_expect_eq(st.st_uid, 0);
        cr_expect_eq(st.st_gid, 0);
        cr_expect(dir_is_empty(P("/root")), "the root mountpoint must stay empty on the host");
        setup_free(&s);
}

static void checks_plain(int fd, void *data)
{
        const LiveData *ld = data;
        char path[PATH_MAX], buf[8];
        struct stat st;
        int tfd, e;

        snprintf(path, sizeof(path), "%s/created-in-jail", ld->ws);
        tfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        report(fd, tfd >= 0, "workspace writable: %s", tfd < 0 ? strerror(errno) : "yes");
        if (tfd >= 0)
                close(tfd);

        /* hide: the secret file reads as empty and cannot be written */
        tfd = open("/srv/f", O_RDONLY | O_CLOEXEC);
        report(fd, tfd >= 0 && read(tfd, buf, sizeof(buf)) == 0, "hidden file reads empty");
        if (tfd >= 0)
                close(tfd);
        /* Writes go to /dev/null; the parent checks the real file is untouched. */
        tfd = open("/srv/f", O_WRONLY | O_CLOEXEC);
        if (tfd >= 0) {
                (void)!write(tfd, "pwned", 5);
                close(tfd);
        }
        report(fd, dir_is_empty("/srv/b"), "hidden dir is empty");
        e = errno_of(mkdir("/srv/b/x", 0755));
        report(fd, e == EROFS, "hidden dir read-only -> %s", strerror(e));
        report(fd, stat("/srv/b", &st) == 0 && S_ISDIR(st.st_mode), "hidden dir still a dir");
        /* the rest of the bind is still there */
        report(fd, access("/srv/b", F_OK) == 0 && access("/srv", R_OK) == 0, "bind visible");
        e = errno_of(open("/srv/new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        report(fd, e == EROFS, "ro bind -> %s", strerror(e));
        report(fd, access("/run/agentjail/sock", F_OK) == 0, "runtime dir bound");
        /* Rootless, the runtime dir is the agent's own (same host uid): the bind alone keeps
         * it from replacing the broker socket or filling the host's /tmp there. */
        e = errno_of(mkdir("/run/agentjail/new", 0755));
        report(fd, e == EROFS, "runtime dir read-only -> %s", strerror(e));
        e = errno_of(unlink("/run/agentjail/sock"));
        report(fd, e == EROFS, "its socket cannot be removed -> %s", strerror(e));
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/run/agentjail/sock" };
                int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

                e = cfd < 0 ? errno : errno_of(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)));
                report(fd, e == 0, "its socket still accepts connections -> %s", e ? strerror(e) : "yes");
                if (cfd >= 0)
                        close(cfd);
        }
}

Test(mount, live_plain_workspace_hide_and_runtime, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[16384], spec[PATH_MAX];
        LiveData ld;
        struct stat st;
        int status, fd, lfd;

        if (!require_root())
                return;
        setup_init(&s);
        default_like_profile(&s);
        /* Rootless-like: the jail's host uid owns its workspace; a plain bind suffices. */
        cr_assert_eq(chown(P("/ws"), HOST_UID, HOST_UID), 0);
        fd = open(P("/a/f"), O_WRONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, "secret", 6), 6);
        close(fd);
        touch(P("/a/b/inner"));
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", P("/run/sock"));
                lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                cr_assert_geq(lfd, 0);
                cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
                cr_assert_eq(listen(lfd, 4), 0);
        }
        /* Rootless-like: the runtime dir and the socket are owned by the jail's host uid too. */
        cr_assert_eq(chown(P("/run"), HOST_UID, HOST_UID), 0);
        cr_assert_eq(chown(P("/run/sock"), HOST_UID, HOST_UID), 0);
        snprintf(spec, sizeof(spec), "%s:/srv", P("/a"));
        add_bind(&s.p.ro, spec);
        add_str(&s.p.hide, "/srv/f");
        add_str(&s.p.hide, "/srv/b");
        s.ctx.runtime_dir = P("/run");
        plan = build_ok(&s);
        cr_assert_eq(aj_mount_plan_prepare(plan, -1, NULL), 0, "prepare is a no-op without idmap");

        ld.ws = P("/ws");
        ld.root_mountpoint = P("/root");
        status = run_jail(plan, checks_plain, &ld, out, sizeof(out));
        close(lfd);
        assert_report_ok(status, out);
        cr_assert_eq(stat(P("/ws/created-in-jail"), &st), 0);
        cr_expect_eq(st.st_uid, HOST_UID);
        cr_expect_eq(st.st_gid, HOST_UID);
        {
                char buf[16] = { 0 };

                fd = open(P("/a/f"), O_RDONLY | O_CLOEXEC);
                cr_assert_geq(fd, 0);
                cr_expect_eq(read(fd, buf, sizeof(buf) - 1), 6);
                cr_expect_str_eq(buf, "secret");
                close(fd);
        }
        setup_free(&s);
}

/* Mountpoints made fresh, several levels deep: a tmpfs at /x/y/z/w, a bind below it (made in
 * that tmpfs, not in the root under it), a file bind at /q/r/s/f. */
static void checks_nested(int fd, void *data)
{
        struct statfs sfs;
        char buf[16] = { 0 };
        struct stat st;
        int tfd;

        (void)data;
        report(fd, statfs("/x/y/z/w", &sfs) == 0 && sfs.f_type == TMPFS_MAGIC, "/x/y/z/w is a tmpfs");
        tfd = open("/x/y/z/w/new", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        report(fd, tfd >= 0, "/x/y/z/w is writable: %s", tfd < 0 ? strerror(errno) : "yes");
        if (tfd >= 0)
                close(tfd);
        report(fd, access("/x/y/z/w/inner/inner-file", F_OK) == 0, "the bind below the tmpfs is there");
        report(fd, statfs("/x/y/z/w/inner", &sfs) == 0 && sfs.f_type != TMPFS_MAGIC, "... and is the bind");
        report(fd, stat("/q/r/s", &st) == 0 && S_ISDIR(st.st_mode), "/q/r/s made as directories");
        tfd = open("/q/r/s/f", O_RDONLY | O_CLOEXEC);
        report(fd, tfd >= 0 && read(tfd, buf, sizeof(buf) - 1) == 6 && streq(buf, "secret"),
               "/q/r/s/f is the bound file");
        if (tfd >= 0)
                close(tfd);
}

Test(mount, live_fresh_nested_mountpoints, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[8192], spec[PATH_MAX];
        int status;

        if (!require_root())
                return;
        setup_init(&s);
        default_like_profile(&s);
        cr_assert_eq(chown(P("/ws"), HOST_UID, HOST_UID), 0);
        cr_assert_eq(write_file(P("/a/f"), "secret"), 0);
        touch(P("/a/b/inner-file"));
        add_str(&s.p.tmpfs, "/x/y/z/w");
        snprintf(spec, sizeof(spec), "%s:/x/y/z/w/inner", P("/a/b"));
        add_bind(&s.p.ro, spec);
        snprintf(spec, sizeof(spec), "%s:/q/r/s/f", P("/a/f"));
        add_bind(&s.p.ro, spec);
        plan = build_ok(&s);
        status = run_jail(plan, checks_nested, NULL, out, sizeof(out));
        assert_report_ok(status, out);
        setup_free(&s);
}

/* A symlink in a bound tree (the workspace is the agent's) where a later target lies resolves
 * in the new root: a link to /etc is the jail's /etc; a link to its own directory gets the
 * tmpfs mounted on that directory, and what comes after in it goes in that tmpfs, never in
 * the covered directory (the host's). */
static void checks_links(int fd, void *data)
{
        const LiveData *ld = data;
        char path[PATH_MAX];
        struct statfs sfs;

        report(fd, access("/etc/aj-test-x/inner-file", F_OK) == 0,
               "a bind through a link to /etc is in the jail's /etc");
        snprintf(path, sizeof(path), "%s/d", ld->ws);
        report(fd, statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC,
               "the tmpfs on a link to '.' covers its directory");
        snprintf(path, sizeof(path), "%s/d/after/inner-file", ld->ws);
        report(fd, access(path, F_OK) == 0, "the bind after it is in that tmpfs");
}

/* A default-like profile over a workspace and its directory d, both the jail's host uid's (a
 * mount point made in a directory the root's lookups should not reach would land there),
 * and a file to bind from /a/b. */
static void setup_links_ws(Setup *s)
{
        setup_init(s);
        default_like_profile(s);
        cr_assert_eq(chown(P("/ws"), HOST_UID, HOST_UID), 0);
        touch(P("/a/b/inner-file"));
        cr_assert_eq(mkdir(P("/ws/d"), 0755), 0);
        cr_assert_eq(chown(P("/ws/d"), HOST_UID, HOST_UID), 0);
}

Test(mount, live_links_in_a_bound_tree_resolve_in_the_root, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[8192], spec[PATH_MAX];
        LiveData ld = { .ws = P("/ws") };
        struct stat st;
        int status;

        if (!require_root())
                return;
        setup_links_ws(&s);
        cr_assert_eq(symlink("/etc", P("/ws/to-etc")), 0);
        cr_assert_eq(symlink(".", P("/ws/d/self")), 0);
        add_str(&s.p.tmpfs, P("/ws/d/self"));
        /* Right after the tmpfs, with the same parent directory. */
        snprintf(spec, sizeof(spec), "%s:%s", P("/a/b"), P("/ws/d/after"));
        add_bind(&s.p.ro, spec);
        snprintf(spec, sizeof(spec), "%s:%s", P("/a/b"), P("/ws/to-etc/aj-test-x"));
        add_bind(&s.p.ro, spec);
        plan = build_ok(&s);
        status = run_jail(plan, checks_links, &ld, out, sizeof(out));
        assert_report_ok(status, out);
        cr_expect_neq(stat("/etc/aj-test-x", &st), 0, "nothing made in the host's /etc");
        cr_expect_neq(lstat(P("/ws/d/after"), &st), 0, "nothing made in the host's workspace");
        setup_free(&s);
}

/* The parent kept for the next step was reached through a link in the bound tree that climbs
 * back over a directory (d/up -> ..): the tmpfs mounted on that directory (d, a name of the
 * kept one) changes what the path means, so the next target with the same parent is resolved
 * again: it goes in the tmpfs, never in the directory the stale fd names (the host's). */
static void checks_climbing_link(int fd, void *data)
{
        const LiveData *ld = data;
        char path[PATH_MAX];
        struct statfs sfs;

        snprintf(path, sizeof(path), "%s/d", ld->ws);
        report(fd, statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC, "the tmpfs covers d");
        snprintf(path, sizeof(path), "%s/d/up/e/inner-file", ld->ws);
        report(fd, access(path, F_OK) == 0, "the bind after it is in that tmpfs (d/up/e)");
        snprintf(path, sizeof(path), "%s/e", ld->ws);
        report(fd, access(path, F_OK) != 0, "nothing at e in the workspace");
}

Test(mount, live_kept_parent_through_a_climbing_link, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[8192], spec[PATH_MAX];
        LiveData ld = { .ws = P("/ws") };
        struct stat st;
        int status;

        if (!require_root())
                return;
        setup_links_ws(&s);
        cr_assert_eq(symlink("..", P("/ws/d/up")), 0);
        add_str(&s.p.tmpfs, P("/ws/d/up/d"));
        snprintf(spec, sizeof(spec), "%s:%s", P("/a/b"), P("/ws/d/up/e"));
        add_bind(&s.p.ro, spec);
        plan = build_ok(&s);
        status = run_jail(plan, checks_climbing_link, &ld, out, sizeof(out));
        assert_report_ok(status, out);
        cr_expect_neq(lstat(P("/ws/e"), &st), 0, "nothing made in the host's workspace");
        setup_free(&s);
}

/* A link to a host path the new root does not have: the run fails at that step, nothing is
 * made at the host path (through a link on the way, or as the target itself). */
Test(mount, live_link_to_a_host_path_fails_closed, LIVE)
{
        static const char *const targets[] = { "/ws/to-host/x", "/ws/to-host" };

        if (!require_root())
                return;
        /* Writable by anyone: what a lookup that followed the link would make there would land. */
        cr_assert_eq(mkdir(P("/outside"), 0777), 0);
        cr_assert_eq(chmod(P("/outside"), 0777), 0);
        cr_assert_eq(symlink(P("/outside"), P("/ws/to-host")), 0);
        cr_assert_eq(chown(P("/ws"), HOST_UID, HOST_UID), 0);
        for (size_t i = 0; i < ARRAY_SIZE(targets); i++) {
                Setup s;
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
                char out[4096], spec[PATH_MAX], want[PATH_MAX * 2];
                const char *target = P("%s", targets[i]);
                int status;

                setup_init(&s);
                default_like_profile(&s);
                snprintf(spec, sizeof(spec), "%s:%s", P("/a/b"), target);
                add_bind(&s.p.ro, spec);
                plan = build_ok(&s);
                status = run_jail(plan, NULL, NULL, out, sizeof(out));
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s: status %#x", target, status);
                snprintf(want, sizeof(want), "(bind '%s' on '%s' (read-only)): %s", P("/a/b"), target,
                         strerror(ENOENT));
                cr_expect_not_null(strstr(out, want), "got: %s\nwant: %s", out, want);
                cr_expect(dir_is_empty(P("/outside")), "%s: nothing made at the host path", target);
                setup_free(&s);
        }
}

Test(mount, live_failure_names_the_step, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[4096], want[PATH_MAX * 2];
        ssize_t step;
        int status;

        if (!require_root())
                return;
        setup_init(&s);
        add_bind(&s.p.ro, "/usr");
        cr_assert_eq(mkdir(P("/gone"), 0755), 0);
        add_bind(&s.p.ro, P("/gone"));
        plan = build_ok(&s);
        /* The source disappears between plan and apply. */
        cr_assert_eq(rmdir(P("/gone")), 0);

        status = run_jail(plan, NULL, NULL, out, sizeof(out));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x", status);
        snprintf(want, sizeof(want), "bind '%s' on '%s' (read-only)", P("/gone"), P("/gone"));
        step = find_step(plan, want);
        cr_assert_geq(step, 0);
        snprintf(want, sizeof(want), "FAIL apply: step %zd (bind '%s' on '%s' (read-only)): %s", step, P("/gone"),
                 P("/gone"), strerror(ENOENT));
        cr_expect_not_null(strstr(out, want), "got: %s\nwant: %s", out, want);
        setup_free(&s);
}

static int cmp_long(const void *a, const void *b)
{
        long x = *(const long *)a, y = *(const long *)b;

        return (x > y) - (x < y);
}

Test(mount, live_apply_timing, LIVE)
{
        Setup s;
        char out[4096];
        size_t n_steps = 0;
        long t[15];

        if (!require_root())
                return;
        setup_init(&s);
        default_like_profile(&s);
        s.ctx.idmap = true;
        cr_assert_eq(chown(P("/ws"), 0, 0), 0);

        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                /* A prepared tree can be attached once: each run gets its own plan, as in real runs. */
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                _cleanup_close_ int userns = make_idmap_userns();
                int status;

                cr_assert_geq(userns, 0);
                cr_assert_eq(aj_mount_plan_prepare(plan, userns, NULL), 0);
                status = run_jail(plan, NULL, NULL, out, sizeof(out));
                assert_report_ok(status, out);
                t[i] = report_time(out);
                cr_assert_gt(t[i], 0);
                n_steps = aj_mount_plan_n_steps(plan);
        }
        qsort(t, ARRAY_SIZE(t), sizeof(long), cmp_long);
        cr_log_info("aj_mount_apply, %zu steps: median %ld us, min %ld us, max %ld us", n_steps, t[ARRAY_SIZE(t) / 2],
                    t[0], t[ARRAY_SIZE(t) - 1]);
        fprintf(stderr, "mount-apply-timing: steps=%zu median_us=%ld min_us=%ld max_us=%ld\n", n_steps,
                t[ARRAY_SIZE(t) / 2], t[0], t[ARRAY_SIZE(t) - 1]);
        setup_free(&s);
}

/* The ramfs of live_idmap_refused_by_filesystem goes before the fixture dir is removed. */
static void ramfs_teardown(void)
{
        if (tmp[0])
                umount2(P("/cg"), MNT_DETACH);
        fixture_teardown();
}

Test(mount, live_idmap_refused_by_filesystem, .init = live_setup, .fini = ramfs_teardown)
{
        Setup s;
        char *err = NULL, want[PATH_MAX * 2];
        const char *cg;
        int r;

        if (!require_root())
                return;
        /* A filesystem that cannot be idmapped (ramfs), mounted in this test's own mount
         * namespace: prepare fails, or degrades when the profile allows it. (A system tree
         * such as /sys/fs/cgroup would be refused as an rw bind before that.) */
        cg = P("/cg");
        cr_assert_eq(mkdir(cg, 0755), 0);
        cr_assert_eq(unshare(CLONE_NEWNS), 0);
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        cr_assert_eq(mount("ramfs", cg, "ramfs", 0, "mode=0755"), 0, "mount ramfs: %s", strerror(errno));
        setup_init(&s);
        snprintf(want, sizeof(want), "%s:/cg", cg);
        add_bind(&s.p.rw, want);
        s.ctx.idmap = true;
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                _cleanup_close_ int userns = make_idmap_userns();

                cr_assert_geq(userns, 0);
                r = prepare(plan, userns, &err);
                cr_expect_lt(r, 0);
                snprintf(want, sizeof(want), "Failed to create an idmapped mount of '%s': ", cg);
                cr_expect(err && strncmp(err, want, strlen(want)) == 0, "got: %s", err ? err : "(null)");
                free(err);
                err = NULL;
        }
        s.p.allow_degraded = AJ_DEGRADE_IDMAP;
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                _cleanup_close_ int userns = make_idmap_userns();

                cr_assert_geq(userns, 0);
                snprintf(want, sizeof(want), "bind '%s' on '/cg' (read-write, idmapped)", cg);
                cr_expect_geq(find_step(plan, want), 0);
                cr_assert_eq(prepare(plan, userns, &err), 0, "%s", err ? err : "");
                cr_expect(aj_mount_plan_idmap_degraded(plan));
                snprintf(want, sizeof(want), "bind '%s' on '/cg' (read-write)", cg);
                cr_expect_geq(find_step(plan, want), 0);
        }
        setup_free(&s);
}

/* The prepared tree's root is the file `path` names now. */
static bool tree_is(const AjMountPlan *plan, const char *desc, const char *path)
{
        ssize_t i = find_step(plan, desc);
        struct stat a, b;

        cr_assert_geq(i, 0, "no step '%s'", desc);
        cr_assert_geq(aj_mount_plan_tree_fd(plan, (size_t)i), 0);
        cr_assert_eq(fstat(aj_mount_plan_tree_fd(plan, (size_t)i), &a), 0);
        cr_assert_eq(stat(path, &b), 0, "%s: %s", path, strerror(errno));
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Between the check and the clone, the checked directory is replaced: the supervisor's tree
 * is cloned from the file the plan opened and checked, never from the path again, so the
 * replacement is not what is mounted. */
Test(mount, live_swap_after_the_check_mounts_the_checked_file, LIVE)
{
        Setup s;
        char *err = NULL, desc[PATH_MAX * 2];

        if (!require_root())
                return;
        setup_init(&s);
        add_bind(&s.p.rw, P("/a/b"));
        s.ctx.idmap = true;
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
                _cleanup_close_ int userns = make_idmap_userns();

                cr_assert_eq(rename(P("/a/b"), P("/a/b.checked")), 0);
                cr_assert_eq(symlink("..", P("/a/b")), 0);
                cr_assert_geq(userns, 0);
                cr_expect_eq(prepare(plan, userns, &err), 0, "%s", err ? err : "");
                snprintf(desc, sizeof(desc), "bind '%s' on '%s' (read-write, idmapped)", P("/a/b"), P("/a/b"));
                cr_expect(tree_is(plan, desc, P("/a/b.checked")), "the idmapped tree is not the checked directory");
                free(err);
                err = NULL;
        }
        setup_free(&s);

        /* A read-only bind opened by the supervisor the same way. */
        cr_assert_eq(unlink(P("/a/b")), 0);
        cr_assert_eq(rename(P("/a/b.checked"), P("/a/b")), 0);
        setup_init(&s);
        add_bind(&s.p.ro, P("/a/b"));
        {
                _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);

                cr_assert_eq(rename(P("/a/b"), P("/a/b.checked")), 0);
                cr_assert_eq(mkdir(P("/a/b"), 0755), 0);
                cr_expect_eq(prepare(plan, -1, &err), 0, "%s", err ? err : "");
                snprintf(desc, sizeof(desc), "bind '%s' on '%s' (read-only)", P("/a/b"), P("/a/b"));
                cr_expect(tree_is(plan, desc, P("/a/b.checked")), "the tree is not the checked directory");
                free(err);
        }
        setup_free(&s);
}

/* A deferred plan reads the mount table for the mounts below a source after the tree is
 * cloned (with the mounts below the file, wherever it is): a directory moved away since the
 * plan is refused, since below its planned path the table shows none of its mounts. */
Test(mount, live_source_moved_before_the_deferred_check_is_refused, LIVE)
{
        Setup s;
        char *err = NULL;
        AjSensitiveList none = { 0 };
        AjError e = {};

        if (!require_root())
                return;
        setup_init(&s);
        s.ctx.defer_places = true;
        add_bind(&s.p.ro, P("/a/b"));
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
        cr_assert_eq(rename(P("/a/b"), P("/a/moved")), 0);
        cr_expect_eq(prepare(plan, -1, &err), 0, "%s", err ? err : "");
        cr_expect_eq(aj_mount_plan_check_places(plan, &none, &e), -ESTALE);
        cr_expect(e.message && strstr(e.message, "moved after it was planned (now '") &&
                          strstr(e.message, P("/a/moved")),
                  "%s", e.message ?: "(null)");
        cr_expect_not(aj_mount_plan_places_judged(plan));
        aj_error_clear(&e);
        free(err);
        setup_free(&s);
}

/* The workspace's idmap maps its owner: the checked directory's, kept by the plan, never
 * what its path leads to when the idmap is made (a directory of root's swapped in there
 * would have the agent write the mounted workspace as root). */
Test(mount, live_workspace_owner_is_the_checked_directorys, LIVE)
{
        Setup s;
        uid_t uid = 0;
        gid_t gid = 0;
        mode_t mode = 0;

        if (!require_root())
                return;
        cr_assert_eq(chown(P("/ws"), 1234, 4321), 0);
        cr_assert_eq(chmod(P("/ws"), 0750), 0);
        setup_init(&s);
        s.p.workspace_path = strdup(P("/ws"));
        s.p.workspace_mode = AJ_WORKSPACE_RW;
        s.ctx.idmap = true;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
        cr_assert_eq(rename(P("/ws"), P("/ws.checked")), 0);
        cr_assert_eq(mkdir(P("/ws"), 0755), 0);
        cr_assert(aj_mount_plan_workspace_owner(plan, &uid, &gid, &mode));
        cr_expect_eq(uid, 1234);
        cr_expect_eq(gid, 4321);
        cr_expect_eq(mode & 07777, 0750);
        setup_free(&s);
}

static void bind_view_teardown(void)
{
        if (tmp[0])
                umount2(P("/m"), MNT_DETACH);
        fixture_teardown();
}

/* The checked directory also reachable through another mount (a bind of its parent at /m)
 * that holds a mount below it the check never saw, since it is not below the planned path.
 * After the check a path component is swapped for a symlink into that view: the same file
 * (dev/ino) at the end of the path, on the other mount, with the planted mount below it. */
Test(mount, live_component_swapped_into_another_mount_brings_none_of_its_mounts, .init = live_setup,
     .fini = bind_view_teardown)
{
        Setup s;
        char *err = NULL, desc[PATH_MAX * 2], out[4096], want[PATH_MAX * 3];

        if (!require_root())
                return;
        cr_assert_eq(mkdir(P("/a/b/secret"), 0755), 0);
        cr_assert_eq(mkdir(P("/m"), 0755), 0);
        cr_assert_eq(unshare(CLONE_NEWNS), 0);
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        cr_assert_eq(mount(P("/a"), P("/m"), NULL, MS_BIND, NULL), 0, "bind: %s", strerror(errno));
        cr_assert_eq(mount("tmpfs", P("/m/b/secret"), "tmpfs", 0, "size=64k"), 0, "tmpfs: %s", strerror(errno));
        touch(P("/m/b/secret/planted"));
        cr_assert_neq(access(P("/a/b/secret/planted"), F_OK), 0, "the planted mount is only in the other view");

        setup_init(&s);
        add_bind(&s.p.ro, "/usr");
        add_bind(&s.p.ro, P("/a/b"));
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = build_ok(&s);
        _cleanup_(aj_mount_plan_freep) AjMountPlan *child_plan = build_ok(&s);
        cr_assert_eq(rename(P("/a"), P("/a.real")), 0);
        cr_assert_eq(symlink(P("/m"), P("/a")), 0);
        cr_assert_eq(access(P("/a/b/secret/planted"), F_OK), 0, "the swap leads to the planted mount");

        /* The supervisor's tree: the checked directory on its own mount, nothing planted. */
        cr_expect_eq(prepare(plan, -1, &err), 0, "%s", err ? err : "");
        snprintf(desc, sizeof(desc), "bind '%s' on '%s' (read-only)", P("/a/b"), P("/a/b"));
        ssize_t i = find_step(plan, desc);
        cr_assert_geq(i, 0);
        int tree = aj_mount_plan_tree_fd(plan, (size_t)i);
        cr_assert_geq(tree, 0);
        cr_expect_neq(faccessat(tree, "secret/planted", F_OK, 0), 0, "the tree carries the unchecked mount");
        cr_expect_eq(faccessat(tree, "secret", F_OK, 0), 0);
        free(err);

        /* The child's own clone (rootless): the symlink in the planned path is refused. */
        int status = run_jail(child_plan, NULL, NULL, out, sizeof(out));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x: %s", status, out);
        snprintf(want, sizeof(want), "(%s): %s", desc, strerror(ESTALE));
        cr_expect_not_null(strstr(out, want), "got: %s\nwant: %s", out, want);

        cr_assert_eq(unlink(P("/a")), 0);
        cr_assert_eq(rename(P("/a.real"), P("/a")), 0);
        setup_free(&s);
}

/* Without the supervisor's trees (a rootless run), the child clones by path: the same
 * identity check stops a directory swapped in after the plan. */
Test(mount, live_swapped_source_is_refused_in_the_child, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        char out[4096], want[PATH_MAX * 2];
        int status;

        if (!require_root())
                return;
        setup_init(&s);
        add_bind(&s.p.ro, "/usr");
        add_bind(&s.p.rw, P("/a/b"));
        plan = build_ok(&s);
        cr_assert_eq(rename(P("/a/b"), P("/a/b.checked")), 0);
        cr_assert_eq(mkdir(P("/a/b"), 0755), 0);

        status = run_jail(plan, NULL, NULL, out, sizeof(out));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x", status);
        snprintf(want, sizeof(want), "(bind '%s' on '%s' (read-write)): %s", P("/a/b"), P("/a/b"), strerror(ESTALE));
        cr_expect_not_null(strstr(out, want), "got: %s\nwant: %s", out, want);
        setup_free(&s);
}

/* The list through a pipe (the watchdog builds it while the supervisor plans): the same
 * places, rules and identities come out; a cut-off or altered stream is refused whole. */
Test(mount, sensitive_list_through_a_pipe, PURE)
{
        AjSensitiveList l = { 0 }, back = { 0 };
        AjSensitiveSources src = { .state_root = P("/lnk/state"), .exe = P("/a/f"), .home_root = P("/home") };
        cr_assert_eq(aj_sensitive_list_build(&src, &l), 0);
        cr_assert_gt(l.n, 20);
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        cr_assert_eq(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= 0, 1);
        cr_assert_eq(aj_sensitive_list_write(&l, p[1]), 0);
        close(p[1]);
        cr_assert_eq(aj_sensitive_list_read(p[0], &back), 0);
        close(p[0]);
        cr_assert_eq(back.n, l.n);
        for (size_t i = 0; i < l.n; i++) {
                const AjSensitivePlace *a = &l.items[i], *b = &back.items[i];
                cr_expect_str_eq(b->path, a->path);
                cr_expect_str_eq(b->what, a->what);
                cr_expect_eq(b->rule, a->rule);
                cr_expect_eq(b->chain.n, a->chain.n);
                cr_expect_eq(b->chain.missing, a->chain.missing);
                cr_expect((!a->chain.fs_path && !b->chain.fs_path) ||
                          (a->chain.fs_path && b->chain.fs_path && streq(a->chain.fs_path, b->chain.fs_path)));
                for (size_t k = 0; k < a->chain.n && k < b->chain.n; k++)
                        cr_expect(a->chain.ids[k].dev == b->chain.ids[k].dev &&
                                  a->chain.ids[k].ino == b->chain.ids[k].ino);
        }
        /* The same verdicts from the copy. */
        size_t i1 = 0, i2 = 0;
        cr_expect_eq(aj_sensitive_check("/tmp", NULL, AJ_ACCESS_OWNER, &l, NULL, &i1),
                     aj_sensitive_check("/tmp", NULL, AJ_ACCESS_OWNER, &back, NULL, &i2));
        cr_expect_eq(i1, i2);
        aj_sensitive_list_done(&back);

        /* Cut off: the writer died halfway. */
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        cr_assert_eq(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= 0, 1);
        cr_assert_eq(aj_sensitive_list_write(&l, p[1]), 0);
        close(p[1]);
        char buf[1 << 16];
        ssize_t n = read(p[0], buf, sizeof(buf));
        close(p[0]);
        cr_assert_gt(n, 64);
        int q[2];
        cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
        cr_assert_eq(write(q[1], buf, (size_t)n - 7), n - 7);
        close(q[1]);
        cr_expect_eq(aj_sensitive_list_read(q[0], &back), -EBADMSG);
        close(q[0]);
        cr_expect_eq(back.n, 0);
        /* Altered: a rule number no table has. */
        cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
        buf[8 + 16] = 99;
        cr_assert_eq(write(q[1], buf, (size_t)n), n);
        close(q[1]);
        cr_expect_eq(aj_sensitive_list_read(q[0], &back), -EBADMSG);
        close(q[0]);
        aj_sensitive_list_done(&l);
}

/* An overlay that fails for a reason of its own (here its work dir on another mount than
 * its upper dir: EINVAL at the overlay's creation) is reported as it is: the pre-6.15
 * workaround (a helper process attaching the lower layer in a mount namespace of its own)
 * runs only where the kernel refuses a detached lower layer, which this test's kernel
 * does not if it is 6.15 or newer, and which the helper would not fix anyway. */
Test(mount, live_overlay_unrelated_einval_forks_no_helper, LIVE)
{
        Setup s;
        _cleanup_(aj_mount_plan_freep) AjMountPlan *plan = NULL;
        _cleanup_close_ int userns = -1;
        char *err = NULL;

        if (!require_root())
                return;
        cr_assert_eq(unshare(CLONE_NEWNS), 0);
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        setup_init(&s);
        default_like_profile(&s);
        s.p.workspace_mode = AJ_WORKSPACE_OVERLAY;
        s.ctx.idmap = true;
        cr_assert_eq(mkdir(P("/ovl"), 0700), 0);
        cr_assert_eq(mkdir(P("/ovl/upper"), 0755), 0);
        cr_assert_eq(mkdir(P("/ovl/work"), 0755), 0);
        cr_assert_eq(mount("tmpfs", P("/ovl/work"), "tmpfs", 0, NULL), 0);
        s.ctx.overlay_dir = P("/ovl");
        plan = build_ok(&s);
        userns = make_idmap_userns();
        cr_assert_geq(userns, 0, "idmap user namespace");

        sigset_t chld, pending;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        cr_assert_eq(sigprocmask(SIG_BLOCK, &chld, NULL), 0);
        int r = prepare(plan, userns, &err);
        cr_expect_eq(r, -EINVAL, "prepare: %d %s", r, err ? err : "");
        cr_expect(err && strstr(err, "overlay mount over the workspace failed"), "the overlay's own error: %s",
                  err ? err : "(none)");
        cr_assert_eq(sigpending(&pending), 0);
        cr_expect_not(sigismember(&pending, SIGCHLD), "an EINVAL unrelated to the lower layer forked the helper");
        free(err);
        aj_mount_plan_close_fds(plan);
        cr_assert_eq(umount2(P("/ovl/work"), MNT_DETACH), 0);
        setup_free(&s);
}

/* The idmap namespace's process is told to exit before aj_userns_idmap_fd() returns, and a
 * run does not wait for it there (its exit, queued behind the jail's init, was on the
 * supervisor's path: docs/performance.md, session 24): it is the caller's to reap. */
Test(mount, idmap_namespace_process_is_left_to_the_caller_to_reap)
{
        if (geteuid() != 0)
                cr_skip_test("needs root (maps to another uid)");
        alarm(10); /* a holder that never exits would hang the reap */
        int fd = -1;
        pid_t holder = 0;
        cr_assert_eq(aj_userns_idmap_fd(0, 0, 1879048192, 1879048192, &fd, &holder), 0);
        cr_assert_gt(holder, 0, "the holder's pid is handed back");
        struct stat st, mine;
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert_eq(stat("/proc/self/ns/user", &mine), 0);
        cr_expect_neq(st.st_ino, mine.st_ino, "a user namespace of its own");
        int fd2 = -1;
        cr_expect_eq(aj_userns_idmap_fd(0, 0, 1879048192, 1879048192, &fd2, NULL), -EBUSY,
                     "no second holder on the static stack before the first is reaped");
        cr_expect_eq(fd2, -1);
        int status = -1;
        cr_expect_eq(waitpid(holder, &status, __WALL), holder, "the caller reaps it (%s)", strerror(errno));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "it exited on its own");
        aj_userns_idmap_reap(holder); /* reaped above: only lets the next call in */
        close(fd);
        /* Without a place to hand it, it is waited for there. */
        cr_assert_eq(aj_userns_idmap_fd(0, 0, 1879048192, 1879048192, &fd, NULL), 0);
        cr_expect_eq(waitpid(-1, NULL, __WALL | WNOHANG), -1);
        cr_expect_eq(errno, ECHILD);
        close(fd);
        alarm(0);
}
