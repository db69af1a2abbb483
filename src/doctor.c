/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail doctor`'s judgement of the host's facts (pure: doctor-probe.c gathers them). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "doctor.h"
#include "util/format.h"
#include "util/macros.h"

/* clang-format off */
static const char *const ctrl_names[_AJ_DOCTOR_CTRL_MAX] = { "memory", "pids", "cpu" };
static const char *const ctrl_keys[_AJ_DOCTOR_CTRL_MAX] = { "limits.memory", "limits.pids", "limits.cpu" };
static const char *const status_names[] = {
        [AJ_DOCTOR_OK] = "OK", [AJ_DOCTOR_DEGRADED] = "degraded",
        [AJ_DOCTOR_MISSING] = "missing", [AJ_DOCTOR_UNUSED] = "unused",
};
/* clang-format on */

#define DELEGATE_SCOPE_FIX                                                                        \
        "start it in a delegated cgroup of its own: `systemd-run --user --scope -p Delegate=yes " \
        "agentjail run ...`"
#define DELEGATE_DROPIN_FIX                                                                            \
        DELEGATE_SCOPE_FIX "; if it is still missing there, the user's systemd does not delegate it: " \
                           "/etc/systemd/system/user@.service.d/delegate.conf with \"[Service]\" and " \
                           "\"Delegate=memory pids cpu\", `systemctl daemon-reload`, then log in again"
#define LIMITS_DEGRADED_MEANS \
        "refused at start unless the profile's \"allow_degraded\" has \"limits\" (then not enforced, recorded)"

const char *aj_doctor_status_name(AjDoctorStatus s)
{
        return (size_t)s < ARRAY_SIZE(status_names) ? status_names[s] : "?";
}

void aj_doctor_facts_done(AjDoctorFacts *f)
{
        if (!f)
                return;
        free(f->kernel);
        free(f->v2_mount);
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                free(f->v1_mount[i]);
        free(f->v2_base);
        free(f->v2_controllers);
        free(f->v2_subtree);
        free(f->exe);
        free(f->host_uid_owner);
        free(f->host_gid_owner);
        free(f->workspace);
        free(f->ws_fstype);
        AjDoctorDir *dirs[] = { &f->state, &f->runtime };
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                free(dirs[i]->path);
                free(dirs[i]->fstype);
                free(dirs[i]->problem);
        }
        *f = (AjDoctorFacts){ 0 };
}

void aj_doctor_report_done(AjDoctorReport *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                free(r->lines[i].found);
                free(r->lines[i].means);
                free(r->lines[i].fix);
        }
        free(r->lines);
        r->lines = NULL;
        r->n = 0;
}

/* ---- building lines ---------------------------------------------------------------- */

typedef struct {
        AjDoctorReport *r;
        int err;
} Builder;

_printf_(2, 0) static char *vtext(Builder *b, const char *fmt, va_list ap)
{
        char *s = NULL;
        if (!fmt || b->err)
                return NULL;
        if (aj_vasprintf(&s, fmt, ap) < 0)
                b->err = -ENOMEM;
        return s;
}

_printf_(2, 3) static char *text(Builder *b, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *s = vtext(b, fmt, ap);
        va_end(ap);
        return s;
}

/* Adds a line; `found` is printf'd, `means` and `fix` (owned, may be NULL) are taken. */
_printf_(5, 6) static AjDoctorLine *add(Builder *b, const char *name, AjDoctorStatus st, bool required,
                                        const char *found, ...)
{
        if (b->err)
                return NULL;
        AjDoctorLine *n = realloc(b->r->lines, (b->r->n + 1) * sizeof(*n));
        if (!n) {
                b->err = -ENOMEM;
                return NULL;
        }
        b->r->lines = n;
        AjDoctorLine *l = &n[b->r->n];
        *l = (AjDoctorLine){ .name = name, .status = st, .required = required };
        va_list ap;
        va_start(ap, found);
        l->found = vtext(b, found, ap);
        va_end(ap);
        if (!l->found)
                return NULL;
        b->r->n++;
        return l;
}

/* Sets a line's means/fix (printf'd); no-op on a NULL line. */
_printf_(3, 4) static void set_means(Builder *b, AjDoctorLine *l, const char *fmt, ...)
{
        if (!l)
                return;
        va_list ap;
        va_start(ap, fmt);
        free(l->means);
        l->means = vtext(b, fmt, ap);
        va_end(ap);
}

_printf_(3, 4) static void set_fix(Builder *b, AjDoctorLine *l, const char *fmt, ...)
{
        if (!l)
                return;
        va_list ap;
        va_start(ap, fmt);
        free(l->fix);
        l->fix = vtext(b, fmt, ap);
        va_end(ap);
}

/* Whether the word `w` is in the space-separated list `list`. */
static bool has_word(const char *list, const char *w)
{
        size_t n = strlen(w);
        for (const char *p = list; p && *p;) {
                p += strspn(p, " \t\n");
                size_t len = strcspn(p, " \t\n");
                if (len == n && strncmp(p, w, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

static char *trimmed(Builder *b, const char *s)
{
        if (!s)
                return text(b, "(unreadable)");
        size_t len = strlen(s);
        while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
                len--;
        return len ? text(b, "%.*s", (int)len, s) : text(b, "(none)");
}

/* ---- the checks ---------------------------------------------------------------------- */

static void check_kernel(Builder *b, const AjDoctorFacts *f)
{
        unsigned major = 0, minor = 0;
        bool parsed = f->kernel && sscanf(f->kernel, "%u.%u", &major, &minor) == 2;
        /* clone3 into a cgroup (5.7), openat2 (5.6), idmapped mounts (5.12) */
        if (parsed && (major < 5 || (major == 5 && minor < 7))) {
                AjDoctorLine *l = add(b, "kernel", AJ_DOCTOR_MISSING, true, "Linux %s", f->kernel);
                set_means(b, l, "every run: agentjail needs Linux 5.7 or newer (clone3 into a cgroup, openat2)");
                set_fix(b, l, "boot a newer kernel");
        } else
                add(b, "kernel", AJ_DOCTOR_OK, true, "Linux %s", f->kernel ? f->kernel : "(unknown)");
}

static void check_cgroup_mode(Builder *b, const AjDoctorFacts *f)
{
        const char *mode = aj_cgroup_mode_name(f->cg_mode);
        if (f->cg_mode == AJ_CGROUP_MODE_NONE) {
                AjDoctorLine *l = add(b, "cgroups", AJ_DOCTOR_MISSING, true, "no cgroup hierarchy is mounted");
                set_means(b, l,
                          "limits.memory, limits.pids, limits.cpu: " LIMITS_DEGRADED_MEANS
                          "; freeze and kill on a breach need a cgroup too");
                set_fix(b, l, "mount cgroup2 on /sys/fs/cgroup (any systemd host does)");
                return;
        }
        if (f->v2_mount) {
                add(b, "cgroups", AJ_DOCTOR_OK, true,
                    "%s; v2 tree at %s (runs are cloned into it; freeze and kill through it)", mode, f->v2_mount);
                return;
        }
        AjDoctorLine *l = add(b, "cgroups", AJ_DOCTOR_DEGRADED, true,
                              "%s: no v2 tree (runs are moved into their cgroup after the clone; the v1 freezer "
                              "freezes them)",
                              mode);
        set_means(b, l, "limits work; a run's processes are not in its cgroup from their first instruction");
        set_fix(b, l, "boot with systemd.unified_cgroup_hierarchy=1 (pure v2), or mount cgroup2 beside v1");
}

/* Root on pure v2, or any invoker on a delegated v2 subtree: the controllers of the base. */
static void check_v2_controllers(Builder *b, const AjDoctorFacts *f, bool rootless)
{
        const char *base = f->v2_base ? f->v2_base : "/";
        _cleanup_free_ char *subtree = trimmed(b, f->v2_subtree);
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++) {
                const char *c = ctrl_names[i];
                bool avail = has_word(f->v2_controllers, c);
                /* processes of others in the base matter only while the controller is not enabled yet */
                bool shared = f->v2_shared && !has_word(f->v2_subtree, c);
                const char *name = i == AJ_DOCTOR_MEMORY ? "cgroup memory"
                                   : i == AJ_DOCTOR_PIDS ? "cgroup pids"
                                                         : "cgroup cpu";
                if (avail && f->v2_writable && !shared) {
                        add(b, name, AJ_DOCTOR_OK, true, "v2 %s%s: in cgroup.controllers (subtree_control: %s)%s",
                            f->v2_mount, streq(base, "/") ? "" : base, subtree ? subtree : "?",
                            rootless ? "; delegated to you" : "");
                        continue;
                }
                AjDoctorLine *l;
                if (!f->v2_writable)
                        l = add(b, name, AJ_DOCTOR_MISSING, true,
                                "v2 %s%s is not delegated to you: you cannot create a cgroup in it", f->v2_mount, base);
                else if (!avail)
                        l = add(b, name, AJ_DOCTOR_MISSING, true, "v2 %s%s: %s is not in its cgroup.controllers (%s)",
                                f->v2_mount, streq(base, "/") ? "" : base, c,
                                f->v2_controllers ? "not delegated" : "unreadable");
                else
                        l = add(b, name, AJ_DOCTOR_MISSING, true,
                                "v2 %s%s holds other processes: controllers cannot be enabled for its children",
                                f->v2_mount, base);
                set_means(b, l, "%s: %s", ctrl_keys[i], LIMITS_DEGRADED_MEANS);
                if (!rootless)
                        set_fix(b, l,
                                "enable it in the root's cgroup.subtree_control (echo +%s > %s/cgroup.subtree_control)",
                                c, f->v2_mount);
                else if (!f->v2_writable || shared)
                        set_fix(b, l, "%s", DELEGATE_SCOPE_FIX);
                else
                        set_fix(b, l, "%s", DELEGATE_DROPIN_FIX);
        }
}

static void check_v1_controllers(Builder *b, const AjDoctorFacts *f, bool rootless)
{
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++) {
                const char *c = ctrl_names[i];
                const char *name = i == AJ_DOCTOR_MEMORY ? "cgroup memory"
                                   : i == AJ_DOCTOR_PIDS ? "cgroup pids"
                                                         : "cgroup cpu";
                if (f->v1_mount[i] && f->v1_writable[i]) {
                        add(b, name, AJ_DOCTOR_OK, true, "v1 hierarchy at %s", f->v1_mount[i]);
                        continue;
                }
                AjDoctorLine *l;
                if (!f->v1_mount[i])
                        l = add(b, name, AJ_DOCTOR_MISSING, true, "no v1 %s hierarchy (and no v2 controller)", c);
                else
                        l = add(b, name, AJ_DOCTOR_MISSING, true, "v1 hierarchy at %s: writable by root only",
                                f->v1_mount[i]);
                set_means(b, l, "%s: %s", ctrl_keys[i], LIMITS_DEGRADED_MEANS);
                if (rootless && f->v1_mount[i])
                        set_fix(b, l,
                                "run agentjail as root; a user's limits need a pure cgroup v2 host "
                                "(systemd.unified_cgroup_hierarchy=1) where systemd delegates a subtree");
                else
                        set_fix(b, l, "mount the %s controller (cgroup v1) or boot with the unified hierarchy", c);
        }
}

/* With v1 controllers, each run's init moves itself into its v1 cgroups after the clone (a
 * v2 cgroup is entered by the clone itself): a thread's own move ("0" to `tasks`), which the
 * kernel makes without its threadgroup lock, so no RCU grace period is waited for whatever
 * the host's favordynmods (src/cgroup.h, aj_cgroup_v1_task_fds). Said, since session 11's
 * doctor called it a cost. */
static void check_v1_moves(Builder *b, const AjDoctorFacts *f)
{
        bool moves = false;
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                moves = moves || (f->v1_mount[i] && f->v1_writable[i]);
        if (!moves)
                return;
        add(b, "cgroup moves", AJ_DOCTOR_OK, false,
            "each run's init moves itself into its v1 cgroups (one thread's own move: no wait for an RCU grace "
            "period)");
}

static void check_cgroups(Builder *b, const AjDoctorFacts *f)
{
        bool rootless = f->euid != 0;
        check_cgroup_mode(b, f);
        if (f->cg_mode == AJ_CGROUP_MODE_UNIFIED)
                check_v2_controllers(b, f, rootless);
        else if (f->cg_mode != AJ_CGROUP_MODE_NONE) {
                check_v1_controllers(b, f, rootless);
                check_v1_moves(b, f);
        }
}

const char *aj_doctor_userns_hint(int err, uid_t euid, int apparmor_restrict, long max_user_namespaces,
                                  int unprivileged_userns_clone)
{
        if (err == -ENOSPC && max_user_namespaces == 0)
                return "user.max_user_namespaces is 0 on this host: no user namespace can be made; allow them with "
                       "`sysctl -w user.max_user_namespaces=15000` (and in /etc/sysctl.d/ to keep it)";
        if (euid == 0 || (err != -EPERM && err != -EACCES))
                return NULL;
        if (apparmor_restrict == 1)
                return "this host's AppArmor restricts unprivileged user namespaces "
                       "(kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10 and later): let "
                       "agentjail make them with an AppArmor profile for its binary, as Ubuntu documents for "
                       "programs that need user namespaces. `agentjail doctor` prints the one for this binary; "
                       "the shipped one, profiles/apparmor/agentjail (installed in " AJ_PROFILE_DATADIR
                       "/apparmor/), is for /usr/local/bin/agentjail. Copy it to /etc/apparmor.d/agentjail "
                       "and load it: `sudo apparmor_parser -r /etc/apparmor.d/agentjail`";
        if (unprivileged_userns_clone == 0)
                return "kernel.unprivileged_userns_clone is 0 on this host: only root may make user namespaces; "
                       "allow them with `sysctl -w kernel.unprivileged_userns_clone=1`, or run agentjail as root";
        return NULL;
}

char *aj_doctor_apparmor_profile(const char *exe)
{
        char *s = NULL;
        if (aj_asprintf(&s,
                        "# AppArmor profile for agentjail: lets it make user namespaces where Ubuntu restricts\n"
                        "# unprivileged ones (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10+).\n"
                        "# Unconfined otherwise: agentjail confines its jails itself. The path below must be\n"
                        "# the binary's (`agentjail doctor` prints this profile for the binary it runs).\n"
                        "# Install: sudo install -m 0644 THIS_FILE /etc/apparmor.d/agentjail\n"
                        "#          sudo apparmor_parser -r /etc/apparmor.d/agentjail\n"
                        "abi <abi/4.0>,\n"
                        "include <tunables/global>\n"
                        "\n"
                        "profile agentjail %s flags=(unconfined) {\n"
                        "  userns,\n"
                        "\n"
                        "  # Site-specific additions and overrides. See local/README for details.\n"
                        "  include if exists <local/agentjail>\n"
                        "}\n",
                        exe) < 0)
                return NULL;
        return s;
}

static void check_userns(Builder *b, const AjDoctorFacts *f)
{
        char maxbuf[32] = "unknown";
        if (f->max_user_namespaces >= 0)
                snprintf(maxbuf, sizeof(maxbuf), "%ld", f->max_user_namespaces);
        const char *aa = f->apparmor_restrict == 1 ? "on" : f->apparmor_restrict == 0 ? "off" : "absent";
        if (f->userns == 0 && f->userns_caps == 0) {
                add(b, "user namespaces", AJ_DOCTOR_OK, true,
                    "one can be made, with its capabilities (max_user_namespaces %s; AppArmor restriction %s)", maxbuf,
                    aa);
                return;
        }
        int err = f->userns ? f->userns : f->userns_caps;
        AjDoctorLine *l = add(b, "user namespaces", AJ_DOCTOR_MISSING, true,
                              "%s: %s (max_user_namespaces %s; AppArmor restriction %s)",
                              f->userns ? "none can be made" : "one can be made but has no capabilities in it",
                              strerror(-err), maxbuf, aa);
        set_means(b, l, "every run: the jail is a user namespace; `agentjail run` fails at the clone");
        const char *hint = aj_doctor_userns_hint(err, f->euid, f->apparmor_restrict, f->max_user_namespaces,
                                                 f->unprivileged_userns_clone);
        if (f->apparmor_restrict == 1 && f->euid != 0 && f->exe) {
                _cleanup_free_ char *profile = aj_doctor_apparmor_profile(f->exe);
                if (!profile)
                        b->err = -ENOMEM;
                else
                        set_fix(b, l, "%s. For this binary:\n%s", hint, profile);
        } else if (hint)
                set_fix(b, l, "%s", hint);
        else
                set_fix(b, l, "check the kernel's user namespace support (CONFIG_USER_NS) and any LSM that denies it");
}

/* Root-started runs map the jail to the profile's host ids; whoever else can run as them
 * (a user's subordinate range through newuidmap, an account) can signal the jail's
 * processes, so the run refuses them unless the profile allows it (src/host-ids.h). */
static void check_host_ids(Builder *b, const AjDoctorFacts *f)
{
        if (f->euid != 0)
                return;
        if (f->host_ids_err < 0) {
                AjDoctorLine *l = add(b, "jail host ids", AJ_DOCTOR_MISSING, true,
                                      "/etc/subuid, /etc/subgid, /etc/passwd or /etc/group cannot be read: %s",
                                      strerror(-f->host_ids_err));
                set_means(b, l,
                          "root-started runs cannot tell whether anyone else may run as their host ids, "
                          "and refuse to start");
                set_fix(b, l, "make /etc/subuid, /etc/subgid, /etc/passwd and /etc/group readable by root");
                return;
        }
        /* Which ids: the pool's, one run's each, unless the default profile names its own. */
        bool pool = f->host_id_count > 1;
        char ids[160];
        if (pool)
                snprintf(ids, sizeof(ids),
                         "uids and gids %u-%lu (the pool root-started runs of the default profile each take "
                         "ids of their own from)",
                         (unsigned)f->host_uid, (unsigned long)f->host_uid + f->host_id_count - 1);
        else
                snprintf(ids, sizeof(ids), "uid %u and gid %u (the default profile's user.host_uid, host_gid)",
                         (unsigned)f->host_uid, (unsigned)f->host_gid);
        if (!f->host_uid_owner && !f->host_gid_owner) {
                add(b, "jail host ids", AJ_DOCTOR_OK, true, "%s: no subordinate range or account covers them", ids);
                return;
        }
        AjDoctorLine *l = add(b, "jail host ids", AJ_DOCTOR_MISSING, true, "%s%s%s",
                              f->host_uid_owner ? f->host_uid_owner : "",
                              f->host_uid_owner && f->host_gid_owner ? "; " : "",
                              f->host_gid_owner ? f->host_gid_owner : "");
        set_means(b, l,
                  "root-started runs of the default profile are refused%s: the jail's processes would run as "
                  "%s, and a process of that user (through newuidmap/newgidmap) runs as the same ids: "
                  "it could signal (stop, kill) the jail's processes and own what the jail writes outside its "
                  "workspace. A profile with \"host_ids\" in \"allow_degraded\" runs anyway, recorded",
                  pool ? " when the ids they take are covered" : "", ids);
        if (pool)
                set_fix(b, l,
                        "move the range or account off the pool's ids; or set \"user\": {\"host_uid\": %lu, "
                        "\"host_gid\": %lu} (ids no range or account covers) in the profiles you run, whose runs "
                        "then all share those ids and the kernel's per-user budgets (inotify instances, pending "
                        "signals, ...)",
                        f->host_id_free, f->host_id_free);
        else if (!f->host_id_free)
                set_fix(b, l,
                        "set \"user\": {\"host_uid\", \"host_gid\"} to ids no range or account covers (none is "
                        "left past every subordinate range: shorten one) in the profiles you run");
        else
                set_fix(b, l,
                        "set \"user\": {\"host_uid\": %lu, \"host_gid\": %lu} (ids no range or account covers) in "
                        "the profiles you run, e.g. in /etc/agentjail/profiles/default.json extending \"default\"",
                        f->host_id_free, f->host_id_free);
}

static void check_seccomp(Builder *b, const AjDoctorFacts *f)
{
        if (f->seccomp_notify == 0) {
                add(b, "seccomp notify", AJ_DOCTOR_OK, true, "user notification (SECCOMP_GET_NOTIF_SIZES answers)");
                return;
        }
        AjDoctorLine *l = add(b, "seccomp notify", AJ_DOCTOR_MISSING, true, "no user notification: %s",
                              strerror(-f->seccomp_notify));
        set_means(b, l,
                  "seccomp.log (default true): its runs cannot start; denials are still enforced with "
                  "\"seccomp\": {\"log\": false}, without seccomp.denied events");
        set_fix(b, l, "Linux 5.0 or newer with CONFIG_SECCOMP_FILTER, or set seccomp.log to false");
}

static void check_idmap(Builder *b, const AjDoctorFacts *f)
{
        const char *ws = f->workspace ? f->workspace : "(the workspace)";
        const char *fs = f->ws_fstype ? f->ws_fstype : "unknown";
        if (f->euid != 0) {
                AjDoctorLine *l = add(b, "idmapped mounts", AJ_DOCTOR_UNUSED, false,
                                      "not used by a rootless run (the jail's uid is yours); workspace %s on %s", ws,
                                      fs);
                set_means(b, l, "filesystem.workspace, filesystem.rw: files the agent writes are yours");
                return;
        }
        if (f->idmap == 0) {
                add(b, "idmapped mounts", AJ_DOCTOR_OK, true, "workspace %s on %s: an idmapped clone could be made", ws,
                    fs);
                return;
        }
        AjDoctorLine *l = add(b, "idmapped mounts", AJ_DOCTOR_DEGRADED, true, "workspace %s on %s: %s", ws, fs,
                              strerror(-f->idmap));
        set_means(b, l,
                  "filesystem.workspace (mode rw, overlay) and filesystem.rw on this filesystem: refused at start "
                  "unless the profile's \"allow_degraded\" has \"idmap\" (then a plain bind: the agent's files "
                  "belong to the jail's host uid)");
        set_fix(b, l,
                "put the workspace on a filesystem that supports idmapped mounts (ext4, xfs, btrfs; tmpfs "
                "from Linux 6.3), or add \"idmap\" to allow_degraded");
}

static void check_overlay(Builder *b, const AjDoctorFacts *f)
{
        if (f->overlayfs && f->euid == 0) {
                add(b, "overlayfs", AJ_DOCTOR_OK, false, "the kernel has it (fsopen \"overlay\")");
                return;
        }
        AjDoctorLine *l;
        if (f->overlayfs) {
                l = add(b, "overlayfs", AJ_DOCTOR_DEGRADED, false, "in /proc/filesystems; not for a rootless run");
                set_means(b, l, "filesystem.workspace.mode \"overlay\" needs a root-started run (refused otherwise)");
                return;
        }
        l = add(b, "overlayfs", AJ_DOCTOR_MISSING, false,
                f->euid == 0 ? "the kernel has none (fsopen \"overlay\" fails)" : "not in /proc/filesystems");
        set_means(b, l, "filesystem.workspace.mode \"overlay\": refused at start");
        set_fix(b, l, "modprobe overlay");
}

static void check_landlock(Builder *b, const AjDoctorFacts *f)
{
        if (f->landlock_abi > 0)
                add(b, "landlock", AJ_DOCTOR_UNUSED, false,
                    "ABI %d; not used by agentjail (mounts and seccomp confine it)", f->landlock_abi);
        else
                add(b, "landlock", AJ_DOCTOR_UNUSED, false, "not available (%s); not used by agentjail",
                    strerror(-f->landlock_abi));
}

static void check_nftables(Builder *b)
{
        add(b, "nf_tables", AJ_DOCTOR_UNUSED, false,
            "not used: a jail's network namespace has only lo, and its egress goes through agentjail's proxy");
}

static void check_dir(Builder *b, const char *name, const AjDoctorDir *d, bool runtime, bool in_tmp, uid_t euid)
{
        if (!d->path) {
                AjDoctorLine *l = add(b, name, AJ_DOCTOR_MISSING, true, "cannot be resolved (no HOME?)");
                set_fix(b, l, "set %s", runtime ? "AGENTJAIL_RUNTIME_DIR" : "AGENTJAIL_STATE_DIR");
                return;
        }
        const char *fs = d->fstype ? d->fstype : "unknown";
        char owner[96];
        if (d->stat_err == -ENOENT)
                snprintf(owner, sizeof(owner), "not there yet (agentjail makes it)");
        else if (d->stat_err)
                snprintf(owner, sizeof(owner), "cannot stat: %s", strerror(-d->stat_err));
        else
                snprintf(owner, sizeof(owner), "owner %u, mode %04o", (unsigned)d->uid, (unsigned)(d->mode & 07777));
        AjDoctorLine *l;
        if (d->problem) {
                l = add(b, name, AJ_DOCTOR_MISSING, true, "%s: %s, on %s: %s", d->path, owner, fs, d->problem);
                set_means(b, l, "%s",
                          runtime ? "every run: refused at start"
                                  : "every run: refused at start, and the operator's commands refuse "
                                    "to read it (another user could change the records)");
                set_fix(b, l, "make it yours alone (chown, chmod go-w%s) or point %s elsewhere",
                        in_tmp ? ", mode 0700" : "", runtime ? "AGENTJAIL_RUNTIME_DIR" : "AGENTJAIL_STATE_DIR");
                return;
        }
        if (d->stat_err && d->stat_err != -ENOENT) {
                l = add(b, name, AJ_DOCTOR_MISSING, true, "%s: %s", d->path, owner);
                set_means(b, l, "every run: refused at start");
                return;
        }
        if (runtime && (!d->fstype || !streq(d->fstype, "tmpfs"))) {
                l = add(b, name, AJ_DOCTOR_DEGRADED, true, "%s: %s, on %s, not tmpfs", d->path, owner, fs);
                set_means(b, l, "every run starts slower: its sockets and mount points are made and removed on disk");
                if (euid == 0)
                        set_fix(b, l,
                                "mount a tmpfs on it (`mount -t tmpfs -o mode=0711 tmpfs %s`), or point "
                                "AGENTJAIL_RUNTIME_DIR at a directory on one",
                                d->path);
                else
                        set_fix(b, l,
                                "log in with a session that has XDG_RUNTIME_DIR (/run/user/%u, a tmpfs), or point "
                                "AGENTJAIL_RUNTIME_DIR at a directory of yours on a tmpfs",
                                (unsigned)euid);
                return;
        }
        add(b, name, AJ_DOCTOR_OK, true, "%s: %s, on %s", d->path, owner, fs);
}

int aj_doctor_report(const AjDoctorFacts *f, AjDoctorReport *ret)
{
        AjDoctorReport r = { 0 };
        Builder b = { .r = &r };
        check_kernel(&b, f);
        check_cgroups(&b, f);
        check_userns(&b, f);
        check_host_ids(&b, f);
        check_seccomp(&b, f);
        check_idmap(&b, f);
        check_overlay(&b, f);
        check_landlock(&b, f);
        check_nftables(&b);
        check_dir(&b, "state dir", &f->state, false, false, f->euid);
        check_dir(&b, "runtime dir", &f->runtime, true, f->runtime_in_tmp, f->euid);
        if (b.err) {
                aj_doctor_report_done(&r);
                return b.err;
        }
        *ret = r;
        return 0;
}

bool aj_doctor_report_ok(const AjDoctorReport *r)
{
        for (size_t i = 0; i < r->n; i++)
                if (r->lines[i].required && r->lines[i].status != AJ_DOCTOR_OK)
                        return false;
        return true;
}

/* ---- output ---------------------------------------------------------------------------- */

static int append(char **buf, size_t *len, const char *fmt, ...) _printf_(3, 4);
static int append(char **buf, size_t *len, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        int r = aj_vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        size_t n = strlen(s);
        char *nb = realloc(*buf, *len + n + 1);
        if (!nb) {
                free(s);
                return -ENOMEM;
        }
        memcpy(nb + *len, s, n + 1);
        *buf = nb;
        *len += n;
        free(s);
        return 0;
}

/* A multi-line text, each line after the first indented like the first; each line escaped
 * (util/format.h), as a path in it may be a workspace's. */
static int append_block(char **buf, size_t *len, const char *label, const char *s)
{
        int r = append(buf, len, "%27s%s", "", label);
        for (const char *p = s; r >= 0 && *p;) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *shown = aj_printable_dup(p, n, 0);
                r = !shown ? -ENOMEM : append(buf, len, "%s%s\n", p == s ? "" : "                             ", shown);
                p += n + (p[n] == '\n');
        }
        return r;
}

/* s escaped, in a new string; NULL: out of memory. */
static char *printable(const char *s) { return aj_printable_dup(s, strlen(s), 0); }

int aj_doctor_format_text(const AjDoctorFacts *f, const AjDoctorReport *rep, char **ret)
{
        char *buf = NULL;
        size_t len = 0;
        _cleanup_free_ char *workspace = printable(f->workspace ? f->workspace : "?");
        int r = !workspace ? -ENOMEM
                           : append(&buf, &len, "agentjail doctor: as %s (uid %u), cgroups %s, workspace %s\n",
                                    f->euid == 0 ? "root" : "a user", (unsigned)f->euid,
                                    aj_cgroup_mode_name(f->cg_mode), workspace);
        const char *prev_fix = NULL; /* one screen: a fix the line above gave is not repeated */
        for (size_t i = 0; r >= 0 && i < rep->n; i++) {
                const AjDoctorLine *l = &rep->lines[i];
                _cleanup_free_ char *found = printable(l->found);
                r = !found ? -ENOMEM
                           : append(&buf, &len, "%-9s %-16s %s\n", aj_doctor_status_name(l->status), l->name, found);
                if (r >= 0 && l->means && l->status != AJ_DOCTOR_OK)
                        r = append_block(&buf, &len, "means: ", l->means);
                if (r >= 0 && l->fix && l->status != AJ_DOCTOR_OK)
                        r = append_block(&buf, &len,
                                         "fix:   ", prev_fix && streq(prev_fix, l->fix) ? "as above" : l->fix);
                prev_fix = l->status != AJ_DOCTOR_OK ? l->fix : NULL;
        }
        if (r >= 0 && aj_doctor_report_ok(rep))
                r = append(&buf, &len, "Everything a default profile needs is here.\n");
        else if (r >= 0) {
                r = append(&buf, &len, "Not as a default profile needs:");
                bool first = true;
                for (size_t i = 0; r >= 0 && i < rep->n; i++)
                        if (rep->lines[i].required && rep->lines[i].status != AJ_DOCTOR_OK) {
                                r = append(&buf, &len, "%s %s (%s)", first ? "" : ",", rep->lines[i].name,
                                           aj_doctor_status_name(rep->lines[i].status));
                                first = false;
                        }
                if (r >= 0)
                        r = append(&buf, &len, "\n");
        }
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

static json_t *dir_json(const AjDoctorDir *d)
{
        json_t *o = json_pack("{s:s?, s:b, s:s?, s:s?}", "path", d->path, "exists", d->stat_err == 0, "fstype",
                              d->fstype, "problem", d->problem);
        if (o && d->stat_err == 0) {
                char mode[8];
                snprintf(mode, sizeof(mode), "%04o", (unsigned)(d->mode & 07777));
                json_object_set_new(o, "uid", json_integer(d->uid));
                json_object_set_new(o, "mode", json_string(mode));
        }
        return o;
}

json_t *aj_doctor_report_json(const AjDoctorFacts *f, const AjDoctorReport *rep)
{
        json_auto_t *checks = json_array(), *attention = json_array(), *v1 = json_object();
        if (!checks || !attention || !v1)
                return NULL;
        for (size_t i = 0; i < rep->n; i++) {
                const AjDoctorLine *l = &rep->lines[i];
                if (json_array_append_new(checks,
                                          json_pack("{s:s, s:s, s:b, s:s, s:s?, s:s?}", "name", l->name, "status",
                                                    aj_doctor_status_name(l->status), "required", l->required, "found",
                                                    l->found, "means", l->means, "fix", l->fix)) < 0)
                        return NULL;
                if (l->required && l->status != AJ_DOCTOR_OK &&
                    json_array_append_new(attention, json_string(l->name)) < 0)
                        return NULL;
        }
        for (size_t i = 0; i < _AJ_DOCTOR_CTRL_MAX; i++)
                if (f->v1_mount[i] && json_object_set_new(v1, ctrl_names[i], json_string(f->v1_mount[i])) < 0)
                        return NULL;
        return json_pack("{s:b, s:O, s:s?, s:i, s:b, s:s?, s:{s:s, s:s?, s:O, s:s?, s:s?, s:s?}, s:o*, s:o*, s:O}",
                         "ok", aj_doctor_report_ok(rep), "attention", attention, "kernel", f->kernel, "uid",
                         (int)f->euid, "rootless", f->euid != 0, "workspace", f->workspace, "cgroup", "mode",
                         aj_cgroup_mode_name(f->cg_mode), "v2_mount", f->v2_mount, "v1", v1, "v2_base", f->v2_base,
                         "controllers", f->v2_controllers, "subtree_control", f->v2_subtree, "state_dir",
                         dir_json(&f->state), "runtime_dir", dir_json(&f->runtime), "checks", checks);
}
