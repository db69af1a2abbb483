/* SPDX-License-Identifier: Apache-2.0 */
#include "host-ids.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/fd.h"
#include "util/macros.h"

/* The numbers [p, end) reads as, filling it exactly, as strtoul reads it (blanks and a sign
 * before it too: taking more lines as ranges refuses more ids, never fewer). shadow's
 * newuidmap (4.13, Debian 12's) reads these fields in C's notation, 0x10000 and 0200000 as
 * 65536 both; other versions read decimal only. A field that the two read differently is
 * taken both ways. Returns how many readings (0 to 2) are in ret[]. */
static unsigned parse_number(const char *p, const char *end, unsigned long ret[2])
{
        static const int bases[] = { 10, 0 };
        unsigned n = 0;
        if (p == end)
                return 0;
        for (size_t i = 0; i < ARRAY_SIZE(bases); i++) {
                char *e = NULL;
                errno = 0;
                unsigned long v = strtoul(p, &e, bases[i]);
                if (errno || e != end || (n == 1 && ret[0] == v))
                        continue;
                ret[n++] = v;
        }
        return n;
}

char *aj_subid_owner(const char *text, const char *file, unsigned long id, unsigned long *end_max)
{
        return aj_subid_owner_range(text, file, id, 1, end_max);
}

char *aj_subid_owner_range(const char *text, const char *file, unsigned long id, unsigned long count_ids,
                           unsigned long *end_max)
{
        unsigned long id_last = id + (count_ids ? count_ids : 1) - 1;
        char *who = NULL;
        unsigned line = 0;
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                const char *eol = nl ? nl : p + strlen(p);
                line++;
                /* Read in place, whatever the line's length (newuidmap reads long owner names). */
                const char *c1 = memchr(p, ':', (size_t)(eol - p));
                const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
                unsigned long starts[2], counts[2], count = 0;
                unsigned n_start = c2 && p[0] != '#' ? parse_number(c1 + 1, c2, starts) : 0;
                unsigned n_count = n_start ? parse_number(c2 + 1, eol, counts) : 0;
                for (unsigned i = 0; i < n_count; i++)
                        count = counts[i] > count ? counts[i] : count; /* the larger range of the two */
                for (unsigned i = 0; i < n_start && count > 0; i++) {
                        unsigned long start = starts[i];
                        if (start > 0xffffffffUL)
                                continue;
                        /* newuidmap takes a range that runs past the last id (it compares in
                         * unsigned long): the ids below 2^32 in it are the owner's. */
                        unsigned long last = count - 1 > 0xffffffffUL - start ? 0xffffffffUL : start + count - 1;
                        if (end_max && last + 1 > *end_max)
                                *end_max = last + 1;
                        if (!who && id_last >= start && id <= last &&
                            asprintf(&who, "%.*s's subordinate range %lu-%lu (%s line %u)",
                                     (int)((c1 - p) < 64 ? c1 - p : 64), p, start, last, file, line) < 0)
                                who = NULL;
                }
                p = nl ? nl + 1 : NULL;
        }
        return who;
}

/* Every range in `path` (a missing file has none; one that cannot be read is an error:
 * nobody would be found in it). */
static int subid_file_owner(const char *path, unsigned long id, unsigned long count, unsigned long *end, char **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = aj_read_file(path, 16 << 20, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        /* A NUL byte ends the text aj_subid_owner() reads, not newuidmap's: shadow reads the
         * line's bytes before it and then the next line into the same entry ("ro" NUL "x"
         * newline "ot:1879048192:65536" is root's range, as getsubids showed), so the lines
         * past it would go unread and who owns which ids cannot be told: every id is taken
         * as covered. */
        const char *nul = memchr(text, 0, len);
        if (nul) {
                unsigned line = 1;
                for (const char *q = text; q < nul; q++)
                        line += *q == '\n';
                if (asprintf(ret,
                             "anyone with a range in %s (line %u has a NUL byte, and newuidmap reads that line "
                             "together with the next: the ranges past it cannot be told)",
                             path, line) < 0) {
                        *ret = NULL;
                        return -ENOMEM;
                }
                return 0;
        }
        errno = 0;
        *ret = aj_subid_owner_range(text, path, id, count, end);
        return *ret || errno != ENOMEM ? 0 : -ENOMEM;
}

/* The name of the first entry with an id in [id, id + count) in an account file (/etc/passwd or /etc/group: "NAME:
 * PASSWORD:ID:..." lines), read as a file: the run does not ask NSS, whose modules (a
 * directory service, systemd's userdb) would cost every start more than the rest of its
 * preparation. NULL in *ret when no line has it. */
static int account_owner(const char *path, const char *what, unsigned long id, unsigned long count, char **ret)
{
        _cleanup_free_ char *text = NULL;
        int r = aj_read_file(path, 64 << 20, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        unsigned line = 0;
        for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
                nl = strchr(p, '\n');
                if (nl)
                        *nl = 0;
                line++;
                char *c1 = strchr(p, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *e = NULL;
                if (!c2 || p[0] == '#' || p[0] == '+' || p[0] == '-')
                        continue;
                errno = 0;
                unsigned long v = strtoul(c2 + 1, &e, 10);
                if (errno || e == c2 + 1 || *e != ':' || v < id || v - id >= count)
                        continue;
                *c1 = 0;
                if (asprintf(ret, "%s %.64s has %s %lu (%s line %u)", streq(what, "uid") ? "user" : "group", p, what, v,
                             path, line) < 0) {
                        *ret = NULL;
                        return -ENOMEM;
                }
                return 0;
        }
        return 0;
}

char *aj_subid_nss_source(const char *text, const char *file)
{
        unsigned line = 0;
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                const char *eol = nl ? nl : p + strlen(p);
                line++;
                p += strspn(p, " \t");
                /* shadow's newuidmap takes its ranges from the one source a "subid:" line
                 * names (read without regard to case here: one spelling more refused is
                 * never one fewer); "files" is /etc/subuid and /etc/subgid. */
                if (eol - p > 6 && strncasecmp(p, "subid:", 6) == 0) {
                        const char *src = p + 6;
                        src += strspn(src, " \t");
                        size_t n = strcspn(src, " \t\n#");
                        if (n > 0 && !(n == 5 && strncmp(src, "files", 5) == 0)) {
                                char *who = NULL;
                                if (asprintf(&who,
                                             "anyone with a range from NSS source '%.*s' (%s line %u: newuidmap asks "
                                             "it, not /etc/subuid, and agentjail cannot)",
                                             (int)(n < 64 ? n : 64), src, file, line) < 0)
                                        return NULL;
                                return who;
                        }
                }
                p = nl ? nl + 1 : NULL;
        }
        return NULL;
}

/* A "subid:" source other than the files: who owns which ids cannot be told, every id is
 * taken as covered (*ret_who). A missing nsswitch.conf has none. */
static int subid_nss_owner(const char *path, char **ret_who)
{
        if (!path)
                return 0;
        _cleanup_free_ char *text = NULL;
        int r = aj_read_file(path, 1 << 20, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        errno = 0;
        *ret_who = aj_subid_nss_source(text, path);
        return *ret_who || errno != ENOMEM ? 0 : -ENOMEM;
}

int aj_host_id_owners(uid_t uid, gid_t gid, const AjHostIdFiles *files, AjHostIdOwners *ret)
{
        return aj_host_id_owners_range(uid, gid, 1, files, ret);
}

int aj_host_id_owners_range(uid_t uid, gid_t gid, unsigned long count, const AjHostIdFiles *files, AjHostIdOwners *ret)
{
        AjHostIdOwners o = {};
        unsigned long end = (unsigned long)(uid > gid ? uid : gid) + count;
        _cleanup_free_ char *nss = NULL;
        int r = subid_nss_owner(files->nsswitch, &nss);
        if (r >= 0 && nss && (!(o.uid_owner = strdup(nss)) || !(o.gid_owner = strdup(nss))))
                r = -ENOMEM;
        if (r >= 0 && !o.uid_owner)
                r = subid_file_owner(files->subuid, uid, count, &end, &o.uid_owner);
        if (r >= 0 && !o.gid_owner)
                r = subid_file_owner(files->subgid, gid, count, &end, &o.gid_owner);
        if (r >= 0 && !o.uid_owner)
                r = account_owner(files->passwd, "uid", uid, count, &o.uid_owner);
        if (r >= 0 && !o.gid_owner)
                r = account_owner(files->group, "gid", gid, count, &o.gid_owner);
        if (r < 0) {
                aj_host_id_owners_done(&o);
                return r;
        }
        /* Past every range, on a 65536 boundary (as ranges are handed out); 0 when no such id
         * is left below (uid_t)-1. */
        o.free_id = (end + 65535) / 65536 * 65536;
        if (o.free_id >= 0xffffffffUL)
                o.free_id = 0;
        *ret = o;
        return 0;
}

const AjHostIdFiles aj_host_id_files = {
        .subuid = "/etc/subuid",
        .subgid = "/etc/subgid",
        .passwd = "/etc/passwd",
        .group = "/etc/group",
        .nsswitch = "/etc/nsswitch.conf",
};

void aj_host_id_owners_done(AjHostIdOwners *o)
{
        free(o->uid_owner);
        free(o->gid_owner);
        *o = (AjHostIdOwners){};
}
