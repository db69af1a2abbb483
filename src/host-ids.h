/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who else on this host may run as the ids a root-started jail runs as (the profile's
 * user.host_uid/host_gid): a user's subordinate range in /etc/subuid or /etc/subgid
 * (newuidmap/newgidmap let that user run processes as those ids) or an account. Such a
 * process can signal the jail's processes and owns what the jail writes outside its
 * idmapped workspace, so the run refuses those ids unless the profile allows it
 * ("host_ids" in allow_degraded). `agentjail doctor` shows the same finding.
 */
#pragma once

#include <sys/types.h>

typedef struct {
        char *uid_owner;       /* who may run as the uid, as text naming the file and line; NULL: nobody */
        char *gid_owner;       /* the same for the gid */
        unsigned long free_id; /* an id past every subordinate range, on a 65536 boundary: a suggestion;
                                * 0: none is left below (uid_t)-1 */
} AjHostIdOwners;

/* Pure: who in `text` (/etc/subuid or /etc/subgid: "NAME:START:COUNT" lines of any length) may run as `id`: "NAME's subordinate range START-END (FILE line N)",
 * malloc'ed; NULL when nobody covers it (or without memory). A range past the last id covers
 * the ids up to it (newuidmap grants them). *end_max (if not NULL) grows to the end of every
 * range seen. */
char *aj_subid_owner(const char *text, const char *file, unsigned long id, unsigned long *end_max);
/* The same for any id in [id, id + count) (count 0 reads as 1). */
char *aj_subid_owner_range(const char *text, const char *file, unsigned long id, unsigned long count,
                           unsigned long *end_max);

/* Pure: when `text` (/etc/nsswitch.conf) names a source of subordinate ids other than the
 * files ("subid: sss"), the reason every id counts as covered, naming the file and line,
 * malloc'ed; NULL when none does (or without memory: errno ENOMEM). */
char *aj_subid_nss_source(const char *text, const char *file);

/* The files it reads: the system's in aj_host_id_files, others in tests. */
typedef struct {
        const char *subuid, *subgid; /* NAME:START:COUNT ranges */
        const char *passwd, *group;  /* accounts, read as files (not through NSS) */
        const char *nsswitch;        /* its "subid:" line, if any (NULL: not read) */
} AjHostIdFiles;
extern const AjHostIdFiles aj_host_id_files;

/* The owners of `uid` and `gid` on this host: a subordinate range, else an account. A
 * missing file has none; one that cannot be read is an error (more than 16 MiB of ranges,
 * 64 MiB of accounts: -EFBIG). 0, -errno, or -ENOMEM. */
int aj_host_id_owners(uid_t uid, gid_t gid, const AjHostIdFiles *files, AjHostIdOwners *ret);
/* The same for any uid in [uid, uid + count) and gid in [gid, gid + count): the pool of
 * per-run ids (src/host-id-pool.h), for doctor. */
int aj_host_id_owners_range(uid_t uid, gid_t gid, unsigned long count, const AjHostIdFiles *files, AjHostIdOwners *ret);
void aj_host_id_owners_done(AjHostIdOwners *o);
