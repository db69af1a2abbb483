/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `agentjail doctor`: what this host gives agentjail. The facts are gathered by
 * doctor-probe.c (syscalls, /proc, /sys); doctor.c judges them (pure): one line per
 * concern, each OK / degraded / missing with what it means for the profile keys it
 * affects and how to fix it, as text for a person or as JSON.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "cgroup.h"

typedef enum {
        AJ_DOCTOR_OK,
        AJ_DOCTOR_DEGRADED, /* works, worse: something a profile asks for is not enforced, or slower */
        AJ_DOCTOR_MISSING,  /* what it is for cannot be had */
        AJ_DOCTOR_UNUSED,   /* agentjail does not use it (shown because people ask) */
} AjDoctorStatus;

/* The cgroup controllers a default profile's limits need. */
typedef enum { AJ_DOCTOR_MEMORY, AJ_DOCTOR_PIDS, AJ_DOCTOR_CPU, _AJ_DOCTOR_CTRL_MAX } AjDoctorController;

typedef struct {
        char *path;   /* as agentjail resolves it (src/state.c); NULL: could not be resolved */
        int stat_err; /* 0, or -errno of its stat (-ENOENT: agentjail creates it) */
        uid_t uid;
        mode_t mode;
        char *fstype;  /* "tmpfs", "ext4"...; of its parent when it does not exist yet; NULL unknown */
        char *problem; /* what makes it unsafe for agentjail (aj_runtime_root_problem); NULL none */
} AjDoctorDir;

typedef struct {
        char *kernel; /* uname's release */
        uid_t euid;
        /* cgroups: the layout (src/cgroup-layout.c) and what the invoker can do with it */
        AjCgroupMode cg_mode;
        char *v2_mount;                        /* NULL: no v2 tree */
        char *v1_mount[_AJ_DOCTOR_CTRL_MAX];   /* each controller's v1 hierarchy; NULL: none */
        bool v1_writable[_AJ_DOCTOR_CTRL_MAX]; /* the invoker may create a cgroup there */
        char *v2_base;                         /* the v2 cgroup runs nest under: "/" as root, else ours */
        char *v2_controllers;                  /* its cgroup.controllers; NULL: unreadable */
        char *v2_subtree;                      /* its cgroup.subtree_control; NULL: unreadable */
        bool v2_writable;                      /* a child cgroup could be made there (rootless: made, removed) */
        bool v2_shared;                        /* it holds processes that are not ours (rootless) */
        /* user namespaces */
        int userns;                    /* 0: one could be made; else -errno */
        int userns_caps;               /* 0: with its capabilities (a mount namespace in it); else -errno */
        long max_user_namespaces;      /* user.max_user_namespaces; -1 unknown */
        int unprivileged_userns_clone; /* Debian's kernel.unprivileged_userns_clone; -1 absent */
        int apparmor_restrict;         /* kernel.apparmor_restrict_unprivileged_userns; -1 absent */
        char *exe;                     /* this binary, for the AppArmor profile */
        /* the rest */
        int seccomp_notify; /* 0, or -errno of SECCOMP_GET_NOTIF_SIZES */
        char *workspace;    /* the directory judged for idmapped mounts */
        char *ws_fstype;
        int idmap; /* 0: an idmapped clone of the workspace could be made; else -errno */
        bool overlayfs;
        int landlock_abi; /* > 0 the ABI, else -errno */
        AjDoctorDir state, runtime;
        bool runtime_in_tmp; /* the rootless /tmp/agentjail-UID fallback */
        /* the default profile's user.host_uid/host_gid, or the pool of per-run ids when it names
         * none (root-started runs' ids on the host), and
         * who else may run as them: "NAME's subordinate range A-B (/etc/subuid line N)" or
         * "user NAME (/etc/passwd)"; NULL: nobody found */
        uid_t host_uid;
        gid_t host_gid;
        /* how many ids from host_uid/host_gid on: the pool's size when the default profile
         * names none (each run takes ids of its own, src/host-id-pool.h); 0 or 1: one uid, gid */
        unsigned long host_id_count;
        char *host_uid_owner, *host_gid_owner; /* src/host-ids.h */
        int host_ids_err;                      /* -errno: a file it reads could not be read */
        unsigned long host_id_free;            /* an id past every subordinate range and account (a suggestion) */
} AjDoctorFacts;

void aj_doctor_facts_done(AjDoctorFacts *f);

typedef struct {
        const char *name; /* "kernel", "cgroup memory", "user namespaces"... */
        AjDoctorStatus status;
        bool required; /* a default profile needs it OK (it decides the exit status) */
        char *found;   /* what was found */
        char *means;   /* for the profile keys it affects; NULL when nothing */
        char *fix;     /* what to do; NULL when nothing */
} AjDoctorLine;

typedef struct {
        AjDoctorLine *lines;
        size_t n;
} AjDoctorReport;

void aj_doctor_report_done(AjDoctorReport *r);
const char *aj_doctor_status_name(AjDoctorStatus s);

/* Pure: the facts judged. */
int aj_doctor_report(const AjDoctorFacts *f, AjDoctorReport *ret);
/* Whether every line a default profile needs is OK. */
bool aj_doctor_report_ok(const AjDoctorReport *r);
/* One screen of text. */
int aj_doctor_format_text(const AjDoctorFacts *f, const AjDoctorReport *r, char **ret);
/* The report and the facts behind it; new reference, NULL on ENOMEM. */
json_t *aj_doctor_report_json(const AjDoctorFacts *f, const AjDoctorReport *r);

/* Pure: the AppArmor profile that lets the binary at `exe` make user namespaces under
 * Ubuntu's restriction (profiles/apparmor/agentjail is it for /usr/local/bin/agentjail). */
char *aj_doctor_apparmor_profile(const char *exe);

/* Pure: what to tell a run whose user namespace could not be made or used (error `err`):
 * NULL when the sysctls do not explain it. Static text. */
const char *aj_doctor_userns_hint(int err, uid_t euid, int apparmor_restrict, long max_user_namespaces,
                                  int unprivileged_userns_clone);

/* Probes (doctor-probe.c). The host's facts, judging `workspace` (NULL: the current
 * directory) for idmapped mounts. */
int aj_doctor_probe(const char *workspace, AjDoctorFacts *ret);
/* The hint above for this host's sysctls. */
const char *aj_doctor_userns_hint_here(int err);
