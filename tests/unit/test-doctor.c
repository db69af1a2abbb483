/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail doctor`'s judgement (src/doctor.c) on faked hosts: no probe runs here. */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "doctor.h"
#include "host-ids.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/path.h"

/* A healthy root-started host; each test changes what it is about. */
static AjDoctorFacts healthy(void)
{
        return (AjDoctorFacts){
                .kernel = "6.1.0-28-amd64",
                .euid = 0,
                .cg_mode = AJ_CGROUP_MODE_UNIFIED,
                .v2_mount = "/sys/fs/cgroup",
                .v2_base = "/",
                .v2_controllers = "cpuset cpu io memory hugetlb pids rdma misc",
                .v2_subtree = "cpu memory pids",
                .v2_writable = true,
                .max_user_namespaces = 63704,
                .unprivileged_userns_clone = 1,
                .apparmor_restrict = -1,
                .exe = "/usr/local/bin/agentjail",
                .workspace = "/srv/project",
                .ws_fstype = "ext4",
                .overlayfs = true,
                .landlock_abi = 3,
                .state = { .path = "/var/lib/agentjail", .mode = 040750, .fstype = "ext4" },
                .runtime = { .path = "/run/agentjail", .mode = 040711, .fstype = "tmpfs" },
                .host_uid = 100000,
                .host_gid = 100000,
                .host_id_free = 196608,
        };
}

static AjDoctorFacts hybrid(void)
{
        AjDoctorFacts f = healthy();
        f.cg_mode = AJ_CGROUP_MODE_HYBRID;
        f.v2_mount = "/sys/fs/cgroup/unified";
        f.v2_controllers = "";
        f.v2_subtree = "";
        f.v1_mount[AJ_DOCTOR_MEMORY] = "/sys/fs/cgroup/memory";
        f.v1_mount[AJ_DOCTOR_PIDS] = "/sys/fs/cgroup/pids";
        f.v1_mount[AJ_DOCTOR_CPU] = "/sys/fs/cgroup/cpu,cpuacct";
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                f.v1_writable[i] = true;
        return f;
}

/* A user in a login session's scope: pure v2, nothing delegated. */
static AjDoctorFacts rootless(void)
{
        AjDoctorFacts f = healthy();
        f.euid = 1000;
        f.v2_base = "/user.slice/user-1000.slice/session-3.scope";
        f.v2_controllers = "memory pids";
        f.v2_subtree = "";
        f.v2_writable = false;
        f.idmap = -EPERM;
        f.state = (AjDoctorDir){
                .path = "/home/u/.local/state/agentjail", .uid = 1000, .mode = 040700, .fstype = "ext4"
        };
        f.runtime = (AjDoctorDir){ .path = "/run/user/1000/agentjail", .uid = 1000, .mode = 040700, .fstype = "tmpfs" };
        return f;
}

static const AjDoctorLine *line(const AjDoctorReport *r, const char *name)
{
        for (size_t i = 0; i < r->n; i++)
                if (streq(r->lines[i].name, name))
                        return &r->lines[i];
        cr_assert_fail("no line '%s'", name);
        return NULL;
}

static void assert_contains(const char *s, const char *needle)
{
        cr_assert(s && strstr(s, needle), "'%s' not in '%s'", needle, s ? s : "(null)");
}

static void assert_all_ok(const AjDoctorReport *r)
{
        for (size_t i = 0; i < r->n; i++)
                if (r->lines[i].required)
                        cr_assert_eq(r->lines[i].status, AJ_DOCTOR_OK, "%s: %s (%s)", r->lines[i].name,
                                     aj_doctor_status_name(r->lines[i].status), r->lines[i].found);
        cr_assert(aj_doctor_report_ok(r));
}

Test(doctor, pure_v2_root_all_ok)
{
        AjDoctorFacts f = healthy();
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        assert_all_ok(&r);
        assert_contains(line(&r, "cgroup memory")->found, "v2 /sys/fs/cgroup");
        assert_contains(line(&r, "cgroup memory")->found, "subtree_control: cpu memory pids");
        cr_assert_eq(line(&r, "nf_tables")->status, AJ_DOCTOR_UNUSED);
        cr_assert_not(line(&r, "nf_tables")->required);
        cr_assert_eq(line(&r, "landlock")->status, AJ_DOCTOR_UNUSED);
        assert_contains(line(&r, "landlock")->found, "ABI 3");
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_doctor_format_text(&f, &r, &text), 0);
        assert_contains(text, "Everything a default profile needs is here.");
        assert_contains(text, "OK        cgroup pids");
}

Test(doctor, pure_v2_root_controller_missing)
{
        AjDoctorFacts f = healthy();
        f.v2_controllers = "cpuset cpu io memory"; /* no pids */
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "cgroup pids");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->means, "limits.pids");
        assert_contains(l->means, "\"allow_degraded\" has \"limits\"");
        assert_contains(l->fix, "echo +pids > /sys/fs/cgroup/cgroup.subtree_control");
        cr_assert_eq(line(&r, "cgroup memory")->status, AJ_DOCTOR_OK);
        cr_assert_not(aj_doctor_report_ok(&r));
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_doctor_format_text(&f, &r, &text), 0);
        assert_contains(text, "Not as a default profile needs: cgroup pids (missing)\n");
}

Test(doctor, hybrid_root)
{
        AjDoctorFacts f = hybrid();
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        assert_all_ok(&r);
        assert_contains(line(&r, "cgroups")->found, "hybrid; v2 tree at /sys/fs/cgroup/unified");
        assert_contains(line(&r, "cgroup memory")->found, "v1 hierarchy at /sys/fs/cgroup/memory");
        assert_contains(line(&r, "cgroup cpu")->found, "v1 hierarchy at /sys/fs/cgroup/cpu,cpuacct");
        json_auto_t *j = aj_doctor_report_json(&f, &r);
        cr_assert_not_null(j);
        cr_assert(json_is_true(json_object_get(j, "ok")));
        json_t *cg = json_object_get(j, "cgroup");
        cr_assert_str_eq(json_string_value(json_object_get(cg, "mode")), "hybrid");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(cg, "v1"), "pids")), "/sys/fs/cgroup/pids");
        cr_assert_eq(json_array_size(json_object_get(j, "attention")), 0);
}

/* On a host with v1 controllers, every run's init moves itself into its v1 cgroups, a
 * thread's own move that waits for no RCU grace period: said as fine,
 * with nothing to fix. Pure v2 clones into the cgroup and moves nothing. */
Test(doctor, hybrid_cgroup_moves)
{
        AjDoctorFacts f = hybrid();
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "cgroup moves");
        cr_assert_eq(l->status, AJ_DOCTOR_OK);
        cr_assert_not(l->required);
        cr_assert_null(l->fix);
        assert_contains(l->found, "moves itself");
        cr_assert(aj_doctor_report_ok(&r));

        AjDoctorFacts v2 = healthy();
        _cleanup_(aj_doctor_report_done) AjDoctorReport r3 = { 0 };
        cr_assert_eq(aj_doctor_report(&v2, &r3), 0);
        for (size_t i = 0; i < r3.n; i++)
                cr_assert_str_neq(r3.lines[i].name, "cgroup moves", "pure v2 moves nothing");
}

Test(doctor, hybrid_rootless_v1_is_root_only)
{
        AjDoctorFacts f = hybrid();
        f.euid = 1000;
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                f.v1_writable[i] = false;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "cgroup memory");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->found, "writable by root only");
        assert_contains(l->fix, "pure cgroup v2");
        cr_assert_not(aj_doctor_report_ok(&r));
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_doctor_format_text(&f, &r, &text), 0);
        /* one screen: the same fix is given once, then referred to */
        const char *first = strstr(text, "fix:   run agentjail as root");
        cr_assert_not_null(first);
        cr_assert_null(strstr(first + 1, "fix:   run agentjail as root"), "%s", text);
        assert_contains(first, "fix:   as above\n");
}

Test(doctor, rootless_without_delegation)
{
        AjDoctorFacts f = rootless();
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        for (const char *const *n = (const char *const[]){ "cgroup memory", "cgroup pids", "cgroup cpu", NULL }; *n;
             n++) {
                const AjDoctorLine *l = line(&r, *n);
                cr_assert_eq(l->status, AJ_DOCTOR_MISSING, "%s", *n);
                assert_contains(l->found, "/user.slice/user-1000.slice/session-3.scope is not delegated to you");
                assert_contains(l->fix, "systemd-run --user --scope -p Delegate=yes agentjail run ...");
        }
        /* idmapped mounts are a root-started run's: not counted */
        cr_assert_eq(line(&r, "idmapped mounts")->status, AJ_DOCTOR_UNUSED);
        cr_assert_not(line(&r, "idmapped mounts")->required);
        cr_assert_eq(line(&r, "overlayfs")->status, AJ_DOCTOR_DEGRADED);
        cr_assert_eq(line(&r, "user namespaces")->status, AJ_DOCTOR_OK);
        json_auto_t *j = aj_doctor_report_json(&f, &r);
        cr_assert(json_is_false(json_object_get(j, "ok")));
        cr_assert(json_is_true(json_object_get(j, "rootless")));
        cr_assert_eq(json_array_size(json_object_get(j, "attention")), 3);
}

Test(doctor, rootless_delegated)
{
        AjDoctorFacts f = rootless();
        f.v2_base = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope";
        f.v2_controllers = "cpu memory pids";
        f.v2_writable = true;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        assert_all_ok(&r);
        assert_contains(line(&r, "cgroup cpu")->found, "delegated to you");

        /* systemd's default delegation leaves cpu out: the drop-in */
        f.v2_controllers = "memory pids";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r2 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r2), 0);
        cr_assert_eq(line(&r2, "cgroup memory")->status, AJ_DOCTOR_OK);
        const AjDoctorLine *l = line(&r2, "cgroup cpu");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->fix, "/etc/systemd/system/user@.service.d/delegate.conf");
        assert_contains(l->fix, "Delegate=memory pids cpu");

        /* a delegated cgroup shared with other processes, controllers not enabled yet */
        f.v2_controllers = "cpu memory pids";
        f.v2_shared = true;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r3 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r3), 0);
        l = line(&r3, "cgroup memory");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->found, "holds other processes");
        assert_contains(l->fix, "systemd-run --user --scope -p Delegate=yes");

        /* ... where they are already enabled, they stay usable */
        f.v2_subtree = "cpu memory pids";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r4 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r4), 0);
        assert_all_ok(&r4);
}

Test(doctor, apparmor_restriction)
{
        AjDoctorFacts f = rootless();
        f.v2_controllers = "cpu memory pids";
        f.v2_writable = true;
        f.apparmor_restrict = 1;
        f.userns = 0;
        f.userns_caps = -EPERM; /* Ubuntu 24.04: the namespace is made, its capabilities denied */
        f.exe = "/opt/aj/bin/agentjail";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "user namespaces");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->found, "AppArmor restriction on");
        assert_contains(l->fix, "kernel.apparmor_restrict_unprivileged_userns = 1");
        assert_contains(l->fix, "profile agentjail /opt/aj/bin/agentjail flags=(unconfined) {\n  userns,");
        assert_contains(l->fix, "apparmor_parser -r /etc/apparmor.d/agentjail");
        cr_assert_not(aj_doctor_report_ok(&r));
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_doctor_format_text(&f, &r, &text), 0);
        assert_contains(text, "  userns,\n"); /* the profile, printed whole */

        /* root is not restricted */
        f.euid = 0;
        f.userns_caps = 0;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r2 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r2), 0);
        cr_assert_eq(line(&r2, "user namespaces")->status, AJ_DOCTOR_OK);
}

Test(doctor, userns_hint)
{
        const char *h = aj_doctor_userns_hint(-EPERM, 1000, 1, 10000, -1);
        assert_contains(h, "apparmor_restrict_unprivileged_userns");
        assert_contains(h, "profiles/apparmor/agentjail");
        assert_contains(h, "apparmor_parser -r /etc/apparmor.d/agentjail");
        cr_assert_not_null(aj_doctor_userns_hint(-EACCES, 1000, 1, 10000, -1));
        cr_assert_null(aj_doctor_userns_hint(-EPERM, 0, 1, 10000, -1), "root is not restricted");
        cr_assert_null(aj_doctor_userns_hint(-EPERM, 1000, 0, 10000, -1), "no restriction, no hint");
        cr_assert_null(aj_doctor_userns_hint(-EPERM, 1000, -1, 10000, -1));
        cr_assert_null(aj_doctor_userns_hint(-EINVAL, 1000, 1, 10000, -1));
        assert_contains(aj_doctor_userns_hint(-ENOSPC, 0, -1, 0, -1), "user.max_user_namespaces is 0");
        assert_contains(aj_doctor_userns_hint(-EPERM, 1000, -1, 10000, 0), "kernel.unprivileged_userns_clone");
}

Test(doctor, shipped_apparmor_profile_is_the_printed_one)
{
        const char *src = getenv("AGENTJAIL_SOURCE_DIR");
        cr_assert_not_null(src);
        _cleanup_free_ char *path = aj_path_join(src, "profiles/apparmor/agentjail");
        _cleanup_free_ char *shipped = NULL;
        cr_assert_eq(aj_read_file(path, 65536, &shipped, NULL), 0);
        _cleanup_free_ char *printed = aj_doctor_apparmor_profile("/usr/local/bin/agentjail");
        cr_assert_str_eq(shipped, printed);
}

Test(doctor, no_idmap)
{
        AjDoctorFacts f = healthy();
        f.idmap = -EINVAL;
        f.ws_fstype = "nfs4";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "idmapped mounts");
        cr_assert_eq(l->status, AJ_DOCTOR_DEGRADED);
        assert_contains(l->found, "workspace /srv/project on nfs4");
        assert_contains(l->means, "filesystem.workspace");
        assert_contains(l->means, "\"allow_degraded\" has \"idmap\"");
        cr_assert_not(aj_doctor_report_ok(&r));
        json_auto_t *j = aj_doctor_report_json(&f, &r);
        cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "attention"), 0)), "idmapped mounts");
}

/* The workspace is a directory anyone (an agent of an earlier run) may have named: the text
 * report shows its name, and the lines that quote it, escaped (util/format.h). */
Test(doctor, text_escapes_the_workspace_name)
{
        AjDoctorFacts f = healthy();
        f.idmap = -EINVAL;
        f.ws_fstype = "nfs4";
        f.workspace = (char *)"/srv/p\x1b]0;OWNED\x07\xc2\x9b\xe2\x80\xae\nforged";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        _cleanup_free_ char *text = NULL;
        cr_assert_eq(aj_doctor_format_text(&f, &r, &text), 0);
        assert_contains(text, "workspace /srv/p\\x1b]0;OWNED\\x07\\u009b\\u202e\\nforged\n");
        assert_contains(text, "workspace /srv/p\\x1b]0;OWNED\\x07\\u009b\\u202e\\nforged on nfs4");
        cr_expect_null(strchr(text, 0x1b));
        cr_expect_null(strstr(text, "\xc2\x9b"));
        cr_expect_null(strstr(text, "\nforged"));
}

Test(doctor, seccomp_notify_missing)
{
        AjDoctorFacts f = healthy();
        f.seccomp_notify = -EINVAL;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "seccomp notify");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->means, "seccomp.log");
}

Test(doctor, subordinate_ranges)
{
        const char *text = "# comment\nalice:100000:65536\nbad line\nbob:165536:x\ncarol:165536:65536\n"
                           "dave:4294967295:10\n:200000:5";
        unsigned long end = 0;
        _cleanup_free_ char *a = aj_subid_owner(text, "/etc/subuid", 100000, &end);
        cr_assert_str_eq(a, "alice's subordinate range 100000-165535 (/etc/subuid line 2)");
        cr_assert_eq(end, 4294967296UL, "dave's range runs past the last id: it ends there, got %lu", end);
        _cleanup_free_ char *b = aj_subid_owner(text, "/etc/subuid", 165535, NULL);
        cr_assert_str_eq(b, "alice's subordinate range 100000-165535 (/etc/subuid line 2)");
        _cleanup_free_ char *c = aj_subid_owner(text, "/etc/subuid", 165536, NULL);
        cr_assert_str_eq(c, "carol's subordinate range 165536-231071 (/etc/subuid line 5)", "bob's count is no number");
        cr_assert_null(aj_subid_owner(text, "/etc/subuid", 99999, NULL));
        cr_assert_null(aj_subid_owner(text, "/etc/subuid", 231072, NULL));
        cr_assert_null(aj_subid_owner("", "/etc/subuid", 100000, NULL));
        cr_assert_null(aj_subid_owner("alice:100000:0", "/etc/subuid", 100000, NULL), "an empty range");
        _cleanup_free_ char *e = aj_subid_owner(":200000:5", "/etc/subuid", 200001, NULL);
        cr_assert_str_eq(e, "'s subordinate range 200000-200004 (/etc/subuid line 1)");

        /* newuidmap grants the ids below 2^32 of a range that runs past them. */
        _cleanup_free_ char *w = aj_subid_owner("erin:4294900000:100000", "/etc/subuid", 4294967294UL, &end);
        cr_assert_str_eq(w, "erin's subordinate range 4294900000-4294967295 (/etc/subuid line 1)");
        _cleanup_free_ char *w2 = aj_subid_owner("erin:4294967200:18446744073709551615", "/etc/subuid", 4294967294UL,
                                                 NULL);
        cr_assert_not_null(w2, "a count as large as unsigned long");
        cr_assert_null(aj_subid_owner("erin:4294967296:5", "/etc/subuid", 4294967294UL, NULL), "a start past 2^32");
        /* shadow 4.13's newuidmap reads C's notation (its getsubids printed 0x10000 and 0200000
         * as 65536, " 300000" and "+400" as numbers); other versions read decimal only: a field
         * is taken both ways. */
        _cleanup_free_ char *h = aj_subid_owner("hex:0x70000000:0x10000", "/etc/subuid", 1879048192 + 65535, NULL);
        cr_assert_str_eq(h, "hex's subordinate range 1879048192-1879113727 (/etc/subuid line 1)");
        cr_assert_null(aj_subid_owner("hex:0x70000000:0x10000", "/etc/subuid", 1879048192 + 65536, NULL));
        const char *oct = "oct:0200000:010";
        _cleanup_free_ char *o8 = aj_subid_owner(oct, "/etc/subuid", 65536 + 9, NULL);
        cr_assert_str_eq(o8, "oct's subordinate range 65536-65545 (/etc/subuid line 1)", "octal, the larger count");
        _cleanup_free_ char *o10 = aj_subid_owner(oct, "/etc/subuid", 200000, NULL);
        cr_assert_str_eq(o10, "oct's subordinate range 200000-200009 (/etc/subuid line 1)", "the decimal reading too");
        cr_assert_null(aj_subid_owner(oct, "/etc/subuid", 65536 + 10, NULL));
        unsigned long hend = 0;
        _cleanup_free_ char *sp = aj_subid_owner("sp: 300000:+7", "/etc/subuid", 300006, &hend);
        cr_assert_str_eq(sp, "sp's subordinate range 300000-300006 (/etc/subuid line 1)", "a blank and a sign");
        cr_assert_eq(hend, 300007);
        cr_assert_null(aj_subid_owner("bad:0x:5\nbad3:1e5:5\nbad4:0x10000:x", "/etc/subuid", 65536, NULL),
                       "no number either way");
        _cleanup_free_ char *d9 = aj_subid_owner("d9:09:5", "/etc/subuid", 9, NULL);
        cr_assert_str_eq(d9, "d9's subordinate range 9-13 (/etc/subuid line 1)", "09: decimal only");
        /* A line longer than any buffer is read whole; the name is cut in the message. */
        char long_line[1200];
        memset(long_line, 'n', 1000);
        snprintf(long_line + 1000, sizeof(long_line) - 1000, ":1879048192:65536");
        _cleanup_free_ char *l = aj_subid_owner(long_line, "/etc/subuid", 1879048192, NULL);
        cr_assert_not_null(l, "a long owner name");
        cr_assert(strstr(l, "'s subordinate range 1879048192-1879113727 (/etc/subuid line 1)"), "%s", l);
        cr_assert_eq(strspn(l, "n"), 64, "the name cut at 64 characters");
}

/* A temporary file of `len` bytes of `text` (NUL bytes included) at path, a mkstemp template. */
static void temp_file(char *path, const char *text, size_t len)
{
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, len), (ssize_t)len);
        close(fd);
}

/* A NUL byte in /etc/subuid: shadow reads the bytes before it and then the next line as one
 * entry (getsubids showed "ro" NUL "junk" newline "ot:1879048192:65536" as root's range), which
 * a reading that stops at the NUL never saw: every id is taken as covered, naming the line. */
Test(doctor, subordinate_ranges_with_a_nul)
{
        char path[] = "/tmp/aj-subuid-XXXXXX";
        static const char text[] = "alice:100000:65536\nro\0junk\not:1879048192:65536\n";
        temp_file(path, text, sizeof(text) - 1);
        AjHostIdFiles files = { .subuid = path,
                                .subgid = "/nonexistent/subgid",
                                .passwd = "/nonexistent/passwd",
                                .group = "/nonexistent/group" };
        AjHostIdOwners o = {};
        int r = aj_host_id_owners(1879048192, 1879048192, &files, &o);
        unlink(path);
        cr_assert_eq(r, 0);
        cr_assert_not_null(o.uid_owner, "the range past the NUL is not seen: the uid is taken as covered");
        cr_expect(strstr(o.uid_owner, "(line 2 has a NUL byte"), "%s", o.uid_owner);
        cr_expect_null(o.gid_owner, "no /etc/subgid");
        aj_host_id_owners_done(&o);
}

/* A "subid:" line in nsswitch.conf sends newuidmap to that source (sssd, FreeIPA's ranges)
 * instead of /etc/subuid: nobody's ranges can be told, every id is taken as covered. */
Test(doctor, subordinate_ranges_from_nss)
{
        cr_assert_null(aj_subid_nss_source("passwd: files\ngroup: files systemd\n", "/etc/nsswitch.conf"));
        cr_assert_null(aj_subid_nss_source("subid: files\n", "/etc/nsswitch.conf"), "files: /etc/subuid");
        cr_assert_null(aj_subid_nss_source("# subid: sss\nsubid:\n", "/etc/nsswitch.conf"), "a comment, no source");
        _cleanup_free_ char *s = aj_subid_nss_source("passwd: files\n  SubId:\tsss # FreeIPA\n", "/etc/nsswitch.conf");
        cr_assert_str_eq(s, "anyone with a range from NSS source 'sss' (/etc/nsswitch.conf line 2: newuidmap asks it, "
                            "not /etc/subuid, and agentjail cannot)");

        char path[] = "/tmp/aj-nsswitch-XXXXXX";
        static const char text[] = "passwd: files\nsubid: sss\n";
        temp_file(path, text, sizeof(text) - 1);
        AjHostIdFiles files = { .subuid = "/nonexistent/subuid",
                                .subgid = "/nonexistent/subgid",
                                .passwd = "/nonexistent/passwd",
                                .group = "/nonexistent/group",
                                .nsswitch = path };
        AjHostIdOwners o = {};
        int r = aj_host_id_owners(1879048192, 1879048192, &files, &o);
        unlink(path);
        cr_assert_eq(r, 0);
        cr_assert_not_null(o.uid_owner, "ranges from sss cannot be read: the uid is taken as covered");
        cr_assert_not_null(o.gid_owner, "and the gid");
        cr_expect(strstr(o.uid_owner, "NSS source 'sss'"), "%s", o.uid_owner);
        aj_host_id_owners_done(&o);
}

/* No id is left past every range: no suggestion, never one past (uid_t)-1. */
Test(doctor, host_id_free_at_the_top)
{
        char dir[] = "/tmp/aj-hostids-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        char subuid[64], missing[64];
        snprintf(subuid, sizeof(subuid), "%s/subuid", dir);
        snprintf(missing, sizeof(missing), "%s/none", dir);
        FILE *fp = fopen(subuid, "w");
        cr_assert_not_null(fp);
        fputs("top:4294901760:65536\n", fp);
        fclose(fp);
        AjHostIdOwners o = {};
        AjHostIdFiles files = { subuid, missing, missing, missing };
        cr_assert_eq(aj_host_id_owners(1879048192, 1879048192, &files, &o), 0);
        cr_assert_eq(o.free_id, 0, "got %lu", o.free_id);
        aj_host_id_owners_done(&o);
        unlink(subuid);
        rmdir(dir);
}

static void write_text(const char *path, const char *text)
{
        FILE *fp = fopen(path, "w");
        cr_assert_not_null(fp, "%s", path);
        fputs(text, fp);
        fclose(fp);
}

/* The run's own check (jail-plan.c) reads the files and the account databases. */
Test(doctor, host_id_owners_from_files)
{
        char dir[] = "/tmp/aj-hostids-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        char subuid[64], subgid[64], passwd[64], group[64], missing[64];
        snprintf(subuid, sizeof(subuid), "%s/subuid", dir);
        snprintf(subgid, sizeof(subgid), "%s/subgid", dir);
        snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
        snprintf(group, sizeof(group), "%s/group", dir);
        snprintf(missing, sizeof(missing), "%s/none", dir);
        write_text(subuid, "alice:100000:65536\nbob:1879048000:65536\n");
        write_text(passwd, "root:x:0:0:root:/root:/bin/bash\n# x:x:7:7\nbad:x:7x:1\n+nis:x:7:7\n"
                           "svc:x:7:7::/:/bin/false\n");
        write_text(group, "root:x:0:\nwheel:x:7:svc\n");
        cr_assert_eq(mkdir(subgid, 0700), 0, "a directory: cannot be read as a file");

        AjHostIdOwners o = {};
        AjHostIdFiles files = { subuid, missing, passwd, group };
        cr_assert_eq(aj_host_id_owners(1879048192, 1879048192, &files, &o), 0);
        char want[160];
        snprintf(want, sizeof(want), "bob's subordinate range 1879048000-1879113535 (%s line 2)", subuid);
        cr_assert_str_eq(o.uid_owner, want);
        cr_assert_null(o.gid_owner, "no subgid file, no such group: nobody");
        aj_host_id_owners_done(&o);

        cr_assert_eq(aj_host_id_owners(7, 7, &files, &o), 0);
        snprintf(want, sizeof(want), "user svc has uid 7 (%s line 5)", passwd);
        cr_assert_str_eq(o.uid_owner, want, "comments, NIS lines and bad ids are passed over");
        snprintf(want, sizeof(want), "group wheel has gid 7 (%s line 2)", group);
        cr_assert_str_eq(o.gid_owner, want);
        aj_host_id_owners_done(&o);

        /* The pool of per-run ids: any id in it counts. */
        write_text(subuid, "carol:1879113727:1\n");
        write_text(passwd, "root:x:0:0:root:/root:/bin/bash\npoolish:x:1879050000:7::/:/bin/false\n");
        cr_assert_eq(aj_host_id_owners(1879048192, 1879048192, &files, &o), 0);
        cr_assert_null(o.uid_owner, "one id: the pool's first is nobody's");
        aj_host_id_owners_done(&o);
        cr_assert_eq(aj_host_id_owners_range(1879048192, 1879048192, 65536, &files, &o), 0);
        snprintf(want, sizeof(want), "carol's subordinate range 1879113727-1879113727 (%s line 1)", subuid);
        cr_assert_str_eq(o.uid_owner, want, "a range at the pool's last id");
        aj_host_id_owners_done(&o);
        write_text(subuid, "alice:100000:65536\n");
        cr_assert_eq(aj_host_id_owners_range(1879048192, 1879048192, 65536, &files, &o), 0);
        snprintf(want, sizeof(want), "user poolish has uid 1879050000 (%s line 2)", passwd);
        cr_assert_str_eq(o.uid_owner, want, "an account inside the pool, named with its own id");
        cr_assert_eq(o.free_id, 1879113728, "past the pool: %lu", o.free_id);
        aj_host_id_owners_done(&o);
        cr_assert_eq(aj_host_id_owners_range(1879048192 - 65536, 1879048192 - 65536, 65536, &files, &o), 0);
        cr_assert_null(o.uid_owner, "the range just below the pool: nobody");
        aj_host_id_owners_done(&o);

        AjHostIdFiles none = { missing, missing, missing, missing };
        cr_assert_eq(aj_host_id_owners(1879048192, 1879048192, &none, &o), 0, "no files: nobody");
        cr_assert_null(o.uid_owner);
        cr_assert_null(o.gid_owner);
        cr_assert_eq(o.free_id, 1879113728, "past the ids themselves, on a 65536 boundary: %lu", o.free_id);
        aj_host_id_owners_done(&o);

        files.subgid = subgid;
        cr_assert_eq(aj_host_id_owners(1879048192, 1879048192, &files, &o), -EISDIR,
                     "a file that cannot be read is an error, not an empty list");
        cr_assert_null(o.uid_owner);
        unlink(subuid);
        unlink(passwd);
        unlink(group);
        rmdir(subgid);
        rmdir(dir);
}

Test(doctor, host_ids_in_a_users_range)
{
        AjDoctorFacts f = healthy();
        {
                _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
                cr_assert_eq(aj_doctor_report(&f, &r), 0);
                cr_assert_eq(line(&r, "jail host ids")->status, AJ_DOCTOR_OK);
        }
        {
                /* The default profile naming no ids: the whole pool is checked, and said so. */
                AjDoctorFacts pf = healthy();
                pf.host_uid = pf.host_gid = 1879048192;
                pf.host_id_count = 65536;
                _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
                cr_assert_eq(aj_doctor_report(&pf, &r), 0);
                const AjDoctorLine *l = line(&r, "jail host ids");
                cr_assert_eq(l->status, AJ_DOCTOR_OK);
                assert_contains(l->found, "uids and gids 1879048192-1879113727 (the pool");
                pf.host_uid_owner = "user poolish has uid 1879050000 (/etc/passwd line 2)";
                pf.host_id_free = 1879113728;
                _cleanup_(aj_doctor_report_done) AjDoctorReport r2 = { 0 };
                cr_assert_eq(aj_doctor_report(&pf, &r2), 0);
                l = line(&r2, "jail host ids");
                cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
                assert_contains(l->means, "refused when the ids they take are covered");
                assert_contains(l->fix, "move the range or account off the pool's ids");
                assert_contains(l->fix, "\"host_uid\": 1879113728");
        }
        f.host_uid_owner = "alice's subordinate range 100000-165535 (/etc/subuid line 1)";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "jail host ids");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING, "runs of the default profile are refused");
        cr_assert(l->required);
        assert_contains(l->found, "alice's subordinate range");
        assert_contains(l->means, "refused");
        assert_contains(l->means, "signal");
        assert_contains(l->means, "\"host_ids\" in \"allow_degraded\"");
        assert_contains(l->fix, "\"host_uid\": 196608");
        cr_assert_not(aj_doctor_report_ok(&r), "doctor's exit status says so");
        /* Files it cannot read: it cannot tell, and says the runs are refused. */
        f.host_uid_owner = NULL;
        f.host_ids_err = -EACCES;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r3 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r3), 0);
        l = line(&r3, "jail host ids");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->found, "cannot be read: Permission denied");
        f.host_ids_err = 0;
        /* Rootless runs map the jail to the invoker itself: no line. */
        f.euid = 1000;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r2 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r2), 0);
        for (size_t i = 0; i < r2.n; i++)
                cr_assert_str_neq(r2.lines[i].name, "jail host ids");
}

Test(doctor, dirs)
{
        AjDoctorFacts f = healthy();
        f.runtime.fstype = "ext4";
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        const AjDoctorLine *l = line(&r, "runtime dir");
        cr_assert_eq(l->status, AJ_DOCTOR_DEGRADED);
        assert_contains(l->found, "on ext4, not tmpfs");
        assert_contains(l->fix, "mount -t tmpfs");
        cr_assert_eq(line(&r, "state dir")->status, AJ_DOCTOR_OK, "a state dir on ext4 is fine");

        f.runtime.fstype = "tmpfs";
        f.runtime.problem = "other users can write to it";
        f.state.stat_err = -ENOENT;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r2 = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r2), 0);
        l = line(&r2, "runtime dir");
        cr_assert_eq(l->status, AJ_DOCTOR_MISSING);
        assert_contains(l->found, "other users can write to it");
        assert_contains(l->means, "refused at start");
        l = line(&r2, "state dir");
        cr_assert_eq(l->status, AJ_DOCTOR_OK);
        assert_contains(l->found, "not there yet (agentjail makes it)");
}

Test(doctor, old_kernel_and_no_cgroups)
{
        AjDoctorFacts f = healthy();
        f.kernel = "5.4.0-150-generic";
        f.cg_mode = AJ_CGROUP_MODE_NONE;
        f.v2_mount = NULL;
        _cleanup_(aj_doctor_report_done) AjDoctorReport r = { 0 };
        cr_assert_eq(aj_doctor_report(&f, &r), 0);
        cr_assert_eq(line(&r, "kernel")->status, AJ_DOCTOR_MISSING);
        cr_assert_eq(line(&r, "cgroups")->status, AJ_DOCTOR_MISSING);
        for (size_t i = 0; i < r.n; i++)
                cr_assert_neq(strcmp(r.lines[i].name, "cgroup memory"), 0, "no controller lines without a hierarchy");
}
