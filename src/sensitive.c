/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sensitive places: the rules (which relation of a mounted path to a place each refuses, per
 * access), the relation and the check (pure), and the list of places a run protects.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "mount-internal.h"
#include "util/fd.h"
#include "util/path.h"
#include "util/strv.h"

/* ---- sensitive places -------------------------------------------------- */


static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

enum {
        REL_IS = AJ_REL_IS,
        REL_CONTAINS = AJ_REL_CONTAINS,
        REL_INSIDE = AJ_REL_INSIDE,
        REL_ANY = REL_IS | REL_CONTAINS | REL_INSIDE,
};

/* The rules (src/sensitive.h AjPlaceRule): the relations each refuses, per access. */
static const struct {
        unsigned refuse[2]; /* [AJ_ACCESS_OWNER], [AJ_ACCESS_READ] */
        bool opt_out;
} place_rules[] = {
        [AJ_PLACE_GENERIC] = { { REL_IS | REL_CONTAINS, REL_IS | REL_CONTAINS }, true },
        [AJ_PLACE_SYSTEM_TREE] = { { REL_ANY, 0 }, false },
        [AJ_PLACE_SYSTEM_DIR] = { { REL_IS | REL_CONTAINS, 0 }, false },
        [AJ_PLACE_AGENTJAIL_DATA] = { { REL_ANY, REL_ANY }, false },
        [AJ_PLACE_AGENTJAIL_CODE] = { { REL_ANY, 0 }, false },
        [AJ_PLACE_EVAL_SCRATCH] = { { REL_ANY, REL_ANY }, false },
        [AJ_PLACE_EVAL_OWN] = { { 0, 0 }, false },
};

bool aj_place_rule_opt_out(AjPlaceRule rule)
{
        return (size_t)rule < ARRAY_SIZE(place_rules) && place_rules[rule].opt_out;
}

static bool ids_have(const AjFileId *ids, size_t n, AjFileId x)
{
        for (size_t i = 0; i < n; i++)
                if (id_eq(ids[i], x))
                        return true;
        return false;
}

/* By path and by identity: paths miss aliases (a bind mount of a place's parent names it
 * differently), identities miss places that do not exist yet; either relation counts. */
unsigned aj_place_relation(const char *path, const AjIdChain *id, const AjSensitivePlace *pl)
{
        const AjIdChain *pc = &pl->chain;
        unsigned rel = 0;

        if (path && pl->path) {
                if (streq(path, pl->path))
                        rel |= REL_IS;
                else if (path_under(pl->path, path))
                        rel |= REL_CONTAINS;
                else if (path_under(path, pl->path))
                        rel |= REL_INSIDE;
        }
        if (!id || id->n == 0 || id->missing || pc->n == 0)
                return rel;
        /* Inside one filesystem a directory has one path: a bind mount of a place's
         * subdirectory, whose ".." leads elsewhere, still shows it is inside. */
        if (id->fs_path && pc->fs_path && !pc->missing && id->ids[0].dev == pc->ids[0].dev) {
                if (streq(id->fs_path, pc->fs_path))
                        rel |= REL_IS;
                else if (path_under(pc->fs_path, id->fs_path))
                        rel |= REL_CONTAINS;
                else if (path_under(id->fs_path, pc->fs_path))
                        rel |= REL_INSIDE;
        }
        if (!pc->missing) {
                if (id_eq(id->ids[0], pc->ids[0]))
                        rel |= REL_IS;
                else if (ids_have(id->ids + 1, id->n - 1, pc->ids[0]))
                        rel |= REL_INSIDE;
        }
        /* A missing place's chain holds only its ancestors; an existing one's, itself first. */
        if (!id_eq(id->ids[0], pc->ids[0]) || pc->missing) {
                size_t skip = pc->missing ? 0 : 1;

                if (ids_have(pc->ids + skip, pc->n - skip, id->ids[0]))
                        rel |= REL_CONTAINS;
        }
        return rel;
}

/* The path is a case's own workspace in an eval's scratch root, or inside it. */
static bool in_eval_own(const AjSensitiveList *places, const char *path, const AjIdChain *id)
{
        for (size_t i = 0; i < places->n; i++)
                if (places->items[i].rule == AJ_PLACE_EVAL_OWN &&
                    (aj_place_relation(path, id, &places->items[i]) & (REL_IS | REL_INSIDE)))
                        return true;
        return false;
}

static bool place_refuses(const AjSensitiveList *places, const AjSensitivePlace *pl, const char *path,
                          const AjIdChain *id, AjAccess access)
{
        /* An unknown rule or access refuses everything: fail closed. */
        if ((size_t)pl->rule >= ARRAY_SIZE(place_rules) || (access != AJ_ACCESS_OWNER && access != AJ_ACCESS_READ))
                return true;
        if (!(aj_place_relation(path, id, pl) & place_rules[pl->rule].refuse[access]))
                return false;
        /* An eval's scratch root is the case's own workspace's home: that, and only that, is the
         * agent's to write. */
        return pl->rule != AJ_PLACE_EVAL_SCRATCH || !in_eval_own(places, path, id);
}

AjSensitiveVerdict aj_sensitive_check(const char *path, const AjIdChain *id, AjAccess access,
                                      const AjSensitiveList *places, char *const *allow, size_t *ret_place)
{
        AjSensitiveVerdict v = AJ_SENSITIVE_NONE;
        size_t first_allowed = 0;

        if (!path || !places)
                return AJ_SENSITIVE_NONE;
        /* The rules nothing lets a run opt out of first. */
        for (size_t i = 0; i < places->n; i++) {
                const AjSensitivePlace *pl = &places->items[i];

                if (!aj_place_rule_opt_out(pl->rule) && place_refuses(places, pl, path, id, access)) {
                        if (ret_place)
                                *ret_place = i;
                        return AJ_SENSITIVE_REFUSED;
                }
        }
        for (size_t i = 0; i < places->n; i++) {
                const AjSensitivePlace *pl = &places->items[i];
                bool allowed = false;

                if (!aj_place_rule_opt_out(pl->rule) || !place_refuses(places, pl, path, id, access))
                        continue;
                for (char *const *a = allow; a && *a; a++)
                        if (streq(*a, pl->path))
                                allowed = true;
                if (!allowed) {
                        if (ret_place)
                                *ret_place = i;
                        return AJ_SENSITIVE_REFUSED;
                }
                if (v == AJ_SENSITIVE_NONE)
                        first_allowed = i;
                v = AJ_SENSITIVE_ALLOWED;
        }
        if (v == AJ_SENSITIVE_ALLOWED && ret_place)
                *ret_place = first_allowed;
        return v;
}

/* *path with *chain, taken (both left empty), unless the list has that path by that rule. */
static int list_push(AjSensitiveList *l, char **path, const char *what, AjPlaceRule rule, AjIdChain *chain)
{
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].path, *path) && l->items[i].rule == rule)
                        return 0;
        if (l->n >= MAX_STEPS)
                return -E2BIG;
        AjSensitivePlace *n = realloc(l->items, (l->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        l->items = n;
        l->items[l->n++] = (AjSensitivePlace){ .path = TAKE_PTR(*path), .what = what, .rule = rule, .chain = *chain };
        *chain = (AjIdChain){ 0 };
        return 0;
}

/* `g`: gathered once for the whole list (NULL: each time). */
static int list_add(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule, Gather *g)
{
        _cleanup_free_ char *real = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        int r;

        if (!l || !path || !what)
                return -EINVAL;
        if ((size_t)rule >= ARRAY_SIZE(place_rules))
                return -EINVAL;
        r = mnt_resolve_place(path, g, &real, &chain);
        if (r == -EINVAL) {
                /* Relative or with "..": what exists is resolved; a place no profile can
                 * opt out of must be (AGENTJAIL_STATE_DIR=state is inside the cwd), others
                 * are skipped. */
                real = mnt_kernel_realpath(path);
                if (!real)
                        return aj_place_rule_opt_out(rule) ? 0 : -EINVAL;
                r = mnt_id_chain_from_path(real, g, true, &chain);
        }
        if (r < 0)
                return r;
        return list_push(l, &real, what, rule, &chain);
}

/* A place for the symlink at `link` itself (absolute, its directory without links), not for
 * what it points to: whoever writes its directory puts another file in its place, which the
 * host then runs. Its chain holds its ancestors only, like a place that does not exist. */
static int list_add_link(AjSensitiveList *l, const char *link, const char *what, AjPlaceRule rule, Gather *g)
{
        _cleanup_free_ char *dir = NULL, *real = NULL, *path = NULL;
        _cleanup_(aj_id_chain_done) AjIdChain chain = { 0 };
        const char *slash = strrchr(link, '/');
        if (!slash || !(dir = strndup(link, slash == link ? 1 : (size_t)(slash - link))))
                return slash ? -ENOMEM : -EINVAL;
        int r = mnt_resolve_place(dir, g, &real, &chain);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s", streq(real, "/") ? "" : real, slash + 1) < 0) {
                path = NULL;
                return -ENOMEM;
        }
        chain.missing = true;
        return list_push(l, &path, what, rule, &chain);
}

/* The kernel's bound on the links one lookup follows. */
#define LINKS_MAX 40

/* `path` (absolute) as a place, and each symlink the host follows to reach it (its last
 * component too) as one of its own (list_add_link): alert.exec's program as a link in a
 * directory bound rw was replaced by the agent's script, the place being only the link's
 * target (attacker review 26). */
static int list_add_following(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule, Gather *g)
{
        int r = list_add(l, path, what, rule, g);
        if (r < 0)
                return r;
        _cleanup_free_ char *todo = strdup(path);
        char done[PATH_MAX] = ""; /* the part walked, without links ("": "/") */
        if (!todo)
                return -ENOMEM;
        for (size_t links = 0, at = 0;;) {
                while (todo[at] == '/')
                        at++;
                if (!todo[at])
                        return 0;
                size_t len = strcspn(todo + at, "/");
                const char *rest = todo + at + len;
                if (len == 1 && todo[at] == '.') {
                        at += len;
                        continue;
                }
                if (len == 2 && todo[at] == '.' && todo[at + 1] == '.') {
                        char *up = strrchr(done, '/');
                        if (up)
                                *up = 0;
                        at += len;
                        continue;
                }
                char cand[PATH_MAX];
                if (snprintf(cand, sizeof(cand), "%s/%.*s", done, (int)len, todo + at) >= (int)sizeof(cand))
                        return 0;
                struct stat st;
                if (lstat(cand, &st) < 0)
                        return 0; /* the rest does not exist: no link to follow */
                if (!S_ISLNK(st.st_mode)) {
                        strcpy(done, cand);
                        at += len;
                        continue;
                }
                if ((r = list_add_link(l, cand, what, rule, g)) < 0)
                        return r;
                char target[PATH_MAX];
                ssize_t n = readlink(cand, target, sizeof(target) - 1);
                if (n <= 0 || ++links > LINKS_MAX)
                        return 0; /* the host's lookup fails there too */
                target[n] = 0;
                char *next = NULL;
                if (asprintf(&next, "%s%s", target, rest) < 0)
                        return -ENOMEM;
                free(todo);
                todo = next;
                at = 0;
                if (target[0] == '/')
                        done[0] = 0;
        }
}

int aj_sensitive_list_add(AjSensitiveList *l, const char *path, const char *what, AjPlaceRule rule)
{
        return list_add(l, path, what, rule, NULL);
}

void aj_sensitive_list_done(AjSensitiveList *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                free(l->items[i].what_owned);
                aj_id_chain_done(&l->items[i].chain);
        }
        free(l->items);
        l->items = NULL;
        l->n = 0;
        if (l->gather) {
                mnt_gather_done(l->gather);
                free(l->gather);
                l->gather = NULL;
        }
}

/* Home directories of real users in a passwd file (root and uid >= 1000, not nobody). */
static int add_passwd_homes(AjSensitiveList *l, const char *file, Gather *mi)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        /* Read whole and split here: fgetpwent() seeks before every entry. */
        r = aj_read_file(file, 1 << 20, &text, &len);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        size_t n = 0;
        for (char *line = text, *next; line && *line && n < MAX_STEPS; line = next, n++) {
                char *f[7] = { line };
                size_t k = 1;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                for (char *c = line; *c && k < 7; c++)
                        if (*c == ':') {
                                *c = '\0';
                                f[k++] = c + 1;
                        }
                if (k < 7 || line[0] == '#')
                        continue; /* name:passwd:uid:gid:gecos:home:shell */
                char *end;
                unsigned long uid = strtoul(f[2], &end, 10);
                if (*end || !*f[2] || (uid != 0 && (uid < 1000 || uid == 65534)))
                        continue;
                if (f[5][0] != '/' || streq(f[5], "/"))
                        continue;
                r = list_add(l, f[5], "a user's home directory", AJ_PLACE_GENERIC, mi);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_dir_entries(AjSensitiveList *l, const char *root, Gather *mi)
{
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        size_t n = 0;
        int r;

        if (!d)
                return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();
        while ((de = readdir(d)) && n < 1024) {
                _cleanup_free_ char *p = NULL;

                if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
                        continue;
                p = aj_path_join(root, de->d_name);
                if (!p)
                        return -ENOMEM;
                r = list_add(l, p, "a user's home directory", AJ_PLACE_GENERIC, mi);
                if (r < 0)
                        return r;
                n++;
        }
        return 0;
}

int aj_sensitive_list_build(const AjSensitiveSources *src, AjSensitiveList *ret)
{
        static const struct {
                const char *path, *what;
                AjPlaceRule rule;
        } fixed[] = {
                /* The system itself: an agent acting as their owner is root on the host. */
                { "/", "the host's root directory", AJ_PLACE_SYSTEM_DIR },
                { "/usr", "the system's programs and libraries", AJ_PLACE_SYSTEM_TREE },
                { "/bin", "the system's programs", AJ_PLACE_SYSTEM_TREE },
                { "/sbin", "the system's programs", AJ_PLACE_SYSTEM_TREE },
                { "/lib", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/lib32", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/lib64", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/libx32", "the system's libraries", AJ_PLACE_SYSTEM_TREE },
                { "/etc", "the system's configuration", AJ_PLACE_SYSTEM_TREE },
                { "/boot", "the system's kernels and boot loader", AJ_PLACE_SYSTEM_TREE },
                { "/proc", "the host's processes", AJ_PLACE_SYSTEM_TREE },
                { "/sys", "the host's kernel objects", AJ_PLACE_SYSTEM_TREE },
                { "/dev", "the host's devices", AJ_PLACE_SYSTEM_TREE },
                { "/var", "the system's variable data", AJ_PLACE_SYSTEM_DIR },
                { "/run", "the system's sockets and runtime state", AJ_PLACE_SYSTEM_DIR },
                { "/home", "every user's home directory", AJ_PLACE_SYSTEM_DIR },
                /* Shared with other users and services, or someone's files: opt-out possible. */
                { "/tmp", "temporary files and sockets of every user", AJ_PLACE_GENERIC },
                { "/var/tmp", "temporary files of every user", AJ_PLACE_GENERIC },
                { "/dev/shm", "shared memory of every user", AJ_PLACE_GENERIC },
                { "/run", "the system's sockets and runtime state", AJ_PLACE_GENERIC },
                { "/root", "root's home directory", AJ_PLACE_GENERIC },
                { "/var", "the system's variable data", AJ_PLACE_GENERIC },
                { "/var/lib", "the system's service state", AJ_PLACE_GENERIC },
                { "/srv", "the system's served data", AJ_PLACE_GENERIC },
                { "/home", "every user's home directory", AJ_PLACE_GENERIC },
        };
        _cleanup_(aj_sensitive_list_done) AjSensitiveList l = { 0 };
        Gather *mi;
        int r;

        if (!src || !ret)
                return -EINVAL;
        mi = l.gather = malloc(sizeof(*l.gather));
        if (!mi)
                return -ENOMEM;
        mnt_gather_init(mi);
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
                if ((r = list_add(&l, fixed[i].path, fixed[i].what, fixed[i].rule, mi)) < 0)
                        return r;
        if (src->host_home &&
            (r = list_add(&l, src->host_home, "the invoking user's home directory", AJ_PLACE_GENERIC, mi)) < 0)
                return r;
        if (src->passwd && (r = add_passwd_homes(&l, src->passwd, mi)) < 0)
                return r;
        if (src->home_root && (r = add_dir_entries(&l, src->home_root, mi)) < 0)
                return r;
        if (src->state_root && (r = list_add(&l, src->state_root,
                                             "agentjail's state dir "
                                             "(run records, the seccomp cache)",
                                             AJ_PLACE_AGENTJAIL_DATA, mi)) < 0)
                return r;
        if (src->runtime_root && (r = list_add(&l, src->runtime_root,
                                               "agentjail's runtime dir "
                                               "(control sockets)",
                                               AJ_PLACE_AGENTJAIL_DATA, mi)) < 0)
                return r;
        if (src->exe && (r = list_add(&l, src->exe, "the agentjail executable", AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                return r;
        if (src->eval_scratch &&
            (r = list_add(&l, src->eval_scratch, "agentjail eval's scratch dir (every case's copy and log)",
                          AJ_PLACE_EVAL_SCRATCH, mi)) < 0)
                return r;
        if (src->replay_scratch &&
            (r = list_add(&l, src->replay_scratch, "agentjail replay's scratch dir (the workspace copy, its profile)",
                          AJ_PLACE_EVAL_SCRATCH, mi)) < 0)
                return r;
        if ((src->eval_scratch || src->replay_scratch) && src->eval_own &&
            (r = list_add(&l, src->eval_own, "the run's own workspace in its scratch dir", AJ_PLACE_EVAL_OWN, mi)) < 0)
                return r;
        /* The files the run's profile was loaded from, wherever they are (`-p ./x.json`, a
         * name found in ./profiles, its extends chain): the agent rewrote one for the
         * operator's next run of it. */
        for (char *const *f = src->profile_files; f && *f; f++)
                if ((*f)[0] == '/' &&
                    (r = list_add_following(&l, *f, "the run's profile file", AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                        return r;
        /* What its alert.exec and rollback.exec run on the host: the agent rewrote its alert
         * script, which its own breach then ran as root. */
        for (char *const *f = src->host_programs; f && *f; f++)
                if ((*f)[0] == '/' && (r = list_add_following(&l, *f, "a program the run's profile runs on the host",
                                                              AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                        return r;
        /* Under an eval, every case's profile files, host programs and fixture: a case's agent
         * rewrote a later case's. */
        _cleanup_strv_free_ char **inputs = NULL;
        if (aj_strv_split_lines(src->eval_inputs, &inputs) < 0)
                return -ENOMEM;
        for (char *const *f = inputs; f && *f; f++)
                if ((*f)[0] == '/' &&
                    (r = list_add_following(&l, *f,
                                            "agentjail eval's input (a case's profile, fixture or host program)",
                                            AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                        return r;
        /* "./profiles" is the cwd's, inside the workspace by design (searched last). */
        for (char *const *d = src->config_dirs; d && *d; d++)
                if ((*d)[0] == '/' &&
                    (r = list_add(&l, *d, "an agentjail profile or config dir", AJ_PLACE_AGENTJAIL_CODE, mi)) < 0)
                        return r;
        *ret = l;
        l = (AjSensitiveList){ 0 };
        return 0;
}

/* ---- the list through a pipe ---- */

#define WIRE_MAGIC 0x414a534cu /* "AJSL" */
#define WIRE_MAX_PLACES 1024

typedef struct {
        char *buf;
        size_t len, cap;
        bool failed;
} Wire;

static void wire_put(Wire *w, const void *p, size_t n)
{
        if (w->failed)
                return;
        if (w->len + n > w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 4096;
                while (cap < w->len + n)
                        cap *= 2;
                char *b = realloc(w->buf, cap);
                if (!b) {
                        w->failed = true;
                        return;
                }
                w->buf = b;
                w->cap = cap;
        }
        memcpy(w->buf + w->len, p, n);
        w->len += n;
}

static void wire_u64(Wire *w, uint64_t v) { wire_put(w, &v, sizeof(v)); }

static void wire_str(Wire *w, const char *s)
{
        uint64_t n = s ? strlen(s) : UINT64_MAX;
        wire_u64(w, n);
        if (s)
                wire_put(w, s, (size_t)n);
}

int aj_sensitive_list_write(const AjSensitiveList *l, int fd)
{
        Wire w = { 0 };
        wire_u64(&w, WIRE_MAGIC);
        wire_u64(&w, l->n);
        for (size_t i = 0; i < l->n; i++) {
                const AjSensitivePlace *pl = &l->items[i];
                wire_u64(&w, (uint64_t)pl->rule);
                wire_str(&w, pl->path);
                wire_str(&w, pl->what);
                wire_u64(&w, pl->chain.n);
                wire_u64(&w, pl->chain.missing);
                wire_str(&w, pl->chain.fs_path);
                for (size_t k = 0; k < pl->chain.n; k++) {
                        wire_u64(&w, pl->chain.ids[k].dev);
                        wire_u64(&w, pl->chain.ids[k].ino);
                }
        }
        /* The total first: the reader knows what to wait for, and a cut-off list shows. */
        uint64_t total = w.len;
        int r = w.failed ? -ENOMEM : aj_write_all(fd, &total, sizeof(total));
        if (r >= 0)
                r = aj_write_all(fd, w.buf, w.len);
        free(w.buf);
        return r < 0 ? r : 0;
}

typedef struct {
        const char *p, *end;
} Cursor;

static bool take(Cursor *c, void *out, size_t n)
{
        if ((size_t)(c->end - c->p) < n)
                return false;
        memcpy(out, c->p, n);
        c->p += n;
        return true;
}

/* NULL and true for an absent string (UINT64_MAX), else a bounded copy. */
static bool take_str(Cursor *c, char **ret)
{
        uint64_t n;
        *ret = NULL;
        if (!take(c, &n, sizeof(n)))
                return false;
        if (n == UINT64_MAX)
                return true;
        if (n >= PATH_MAX || (size_t)(c->end - c->p) < n || memchr(c->p, 0, (size_t)n))
                return false;
        *ret = strndup(c->p, (size_t)n);
        c->p += n;
        return *ret != NULL;
}

static bool read_place(Cursor *c, AjSensitivePlace *pl)
{
        uint64_t rule, n, missing;
        if (!take(c, &rule, sizeof(rule)) || rule >= ARRAY_SIZE(place_rules) || !take_str(c, &pl->path) || !pl->path ||
            pl->path[0] != '/' || !take_str(c, &pl->what_owned) || !pl->what_owned || !take(c, &n, sizeof(n)) ||
            n > AJ_ID_CHAIN_MAX || !take(c, &missing, sizeof(missing)) || missing > 1 ||
            !take_str(c, &pl->chain.fs_path))
                return false;
        pl->rule = (AjPlaceRule)rule;
        pl->what = pl->what_owned;
        pl->chain.missing = missing;
        if (n && !(pl->chain.ids = calloc((size_t)n, sizeof(*pl->chain.ids))))
                return false;
        pl->chain.n = (size_t)n;
        for (size_t k = 0; k < n; k++) {
                uint64_t dev, ino;
                if (!take(c, &dev, sizeof(dev)) || !take(c, &ino, sizeof(ino)))
                        return false;
                pl->chain.ids[k] = (AjFileId){ (dev_t)dev, (ino_t)ino };
        }
        return true;
}

int aj_sensitive_list_read(int fd, AjSensitiveList *ret)
{
        uint64_t total;
        ssize_t got = aj_read_full(fd, &total, sizeof(total));
        if (got != (ssize_t)sizeof(total))
                return got < 0 ? (int)got : -EBADMSG;
        if (total > (uint64_t)WIRE_MAX_PLACES * (3 * PATH_MAX + 48 + AJ_ID_CHAIN_MAX * 16))
                return -EBADMSG;
        _cleanup_free_ char *buf = malloc(total ? total : 1);
        if (!buf)
                return -ENOMEM;
        got = aj_read_full(fd, buf, (size_t)total);
        if (got != (ssize_t)total)
                return got < 0 ? (int)got : -EBADMSG;
        Cursor c = { buf, buf + total };
        uint64_t magic, n;
        if (!take(&c, &magic, sizeof(magic)) || magic != WIRE_MAGIC || !take(&c, &n, sizeof(n)) || n > WIRE_MAX_PLACES)
                return -EBADMSG;
        _cleanup_(aj_sensitive_list_done) AjSensitiveList l = { 0 };
        if (n && !(l.items = calloc((size_t)n, sizeof(*l.items))))
                return -ENOMEM;
        for (; l.n < n; l.n++)
                if (!read_place(&c, &l.items[l.n])) {
                        l.n++; /* freed with the rest */
                        return -EBADMSG;
                }
        if (c.p != c.end)
                return -EBADMSG;
        *ret = l;
        l = (AjSensitiveList){ 0 };
        return 0;
}
