/* SPDX-License-Identifier: Apache-2.0 */
/* What the host's cgroups look like and where a run's directories go: names, mountinfo and
 * /proc/self/cgroup parsing, the v1/v2 layout and the path plan. Pure but for
 * aj_cgroup_layout_load() and aj_cgroup_detect(), which read /proc. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>

#include "cgroup-internal.h"
#include "util/fd.h"
#include "util/parse.h"

static const char *const v1_names[_AJ_CG_V1_MAX] = {
        [AJ_CG_V1_MEMORY] = "memory",   [AJ_CG_V1_PIDS] = "pids",       [AJ_CG_V1_CPU] = "cpu",
        [AJ_CG_V1_CPUACCT] = "cpuacct", [AJ_CG_V1_FREEZER] = "freezer",
};

const char *aj_cgroup_v1_name(AjCgroupV1Controller c) { return c < _AJ_CG_V1_MAX ? v1_names[c] : NULL; }

const char *aj_cgroup_mode_name(AjCgroupMode m)
{
        switch (m) {
        case AJ_CGROUP_MODE_UNIFIED:
                return "unified";
        case AJ_CGROUP_MODE_HYBRID:
                return "hybrid";
        case AJ_CGROUP_MODE_LEGACY:
                return "legacy";
        case AJ_CGROUP_MODE_NONE:
                return "none";
        }
        return "unknown";
}

/* ---- pure helpers ---- */

int aj_cgroup_format_cpu_max(double cpus, uint64_t period_us, char *buf, size_t len)
{
        if (!buf || len == 0 || period_us == 0 || !isfinite(cpus) || cpus < 0)
                return -EINVAL;
        int n;
        if (cpus == 0) {
                n = snprintf(buf, len, "max %" PRIu64, period_us);
        } else {
                uint64_t q = aj_round_u64(cpus * (double)period_us);
                /* The kernel refuses quotas below 1 ms; round tiny shares up
                 * rather than failing or silently dropping the limit. */
                if (q < 1000)
                        q = 1000;
                if (q > UINT64_MAX / 2)
                        return -ERANGE;
                n = snprintf(buf, len, "%" PRIu64 " %" PRIu64, q, period_us);
        }
        if (n < 0 || (size_t)n >= len)
                return -ENOBUFS;
        return 0;
}

int aj_cgroup_parse_keyed(const char *text, const char *key, uint64_t *ret)
{
        if (!text || !key || !*key)
                return -EINVAL;
        size_t klen = strlen(key);
        for (const char *line = text; *line;) {
                const char *eol = strchrnul(line, '\n');
                if ((size_t)(eol - line) > klen && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        const char *v = line + klen + 1;
                        if (v == eol || !isdigit((unsigned char)*v))
                                return -EINVAL;
                        uint64_t x = 0;
                        for (; v < eol; v++) {
                                if (!isdigit((unsigned char)*v))
                                        return -EINVAL;
                                unsigned d = (unsigned)(*v - '0');
                                if (x > (UINT64_MAX - d) / 10)
                                        return -ERANGE;
                                x = x * 10 + d;
                        }
                        *ret = x;
                        return 0;
                }
                line = *eol ? eol + 1 : eol;
        }
        return -ENOENT;
}

bool aj_cgroup_run_id_valid(const char *run_id)
{
        if (!run_id)
                return false;
        size_t n = strlen(run_id);
        if (n < 1 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = run_id[i];
                if (!isalnum((unsigned char)c) && c != '_' && c != '-')
                        return false;
        }
        return true;
}

void aj_cgroup_layout_done(AjCgroupLayout *l)
{
        if (!l)
                return;
        free(l->v2_mount);
        for (size_t i = 0; i < _AJ_CG_V1_MAX; i++)
                free(l->v1_mount[i]);
        *l = (AjCgroupLayout){ .mode = AJ_CGROUP_MODE_NONE };
}

static void unescape_mountinfo(char *s)
{
        /* mountinfo escapes space, tab, newline and backslash as \ooo. */
        char *w = s;
        for (char *r = s; *r;) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
                    r[3] <= '7') {
                        *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 4;
                } else
                        *w++ = *r++;
        }
        *w = 0;
}

static bool opts_contain(const char *opts, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = opts; p && *p;) {
                const char *e = strchrnul(p, ',');
                if ((size_t)(e - p) == n && strncmp(p, word, n) == 0)
                        return true;
                p = *e ? e + 1 : e;
        }
        return false;
}

/* Adds one mountinfo line's cgroup mount, if it is one, to `l`. */
static int layout_add_line(AjCgroupLayout *l, char *line, bool *v2_at_root, bool *any_v1)
{
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *sep = strstr(line, " - ");
        if (!sep)
                return 0;
        *sep = 0;
        char *tail = sep + 3;
        char *f[6] = { 0 };
        char *s2 = NULL;
        size_t nf = 0;
        for (char *t = strtok_r(line, " ", &s2); t && nf < 6; t = strtok_r(NULL, " ", &s2))
                f[nf++] = t;
        if (nf < 5)
                return 0;
        char *s3 = NULL;
        char *fstype = strtok_r(tail, " ", &s3);
        char *source = fstype ? strtok_r(NULL, " ", &s3) : NULL;
        char *superopts = source ? strtok_r(NULL, " ", &s3) : NULL;
        if (!fstype)
                return 0;
        char *mnt = f[4];
        unescape_mountinfo(mnt);
        if (streq(fstype, "cgroup2")) {
                /* Prefer the canonical locations when several exist. */
                bool canonical = streq(mnt, CGROUP_ROOT) || streq(mnt, CGROUP_ROOT "/unified");
                if (!l->v2_mount || (canonical && !*v2_at_root)) {
                        char *m = strdup(mnt);
                        if (!m)
                                return -ENOMEM;
                        free(l->v2_mount);
                        l->v2_mount = m;
                        *v2_at_root = canonical;
                }
        } else if (streq(fstype, "cgroup") && superopts) {
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                        if (!opts_contain(superopts, v1_names[c]) || l->v1_mount[c])
                                continue;
                        l->v1_mount[c] = strdup(mnt);
                        if (!l->v1_mount[c])
                                return -ENOMEM;
                        *any_v1 = true;
                }
        }
        return 0;
}

int aj_cgroup_layout_from_mountinfo(const char *mountinfo, AjCgroupLayout *ret)
{
        if (!mountinfo)
                return -EINVAL;
        AjCgroupLayout l = { .mode = AJ_CGROUP_MODE_NONE };
        bool v2_at_root = false, any_v1 = false;
        _cleanup_free_ char *copy = strdup(mountinfo);
        if (!copy)
                return -ENOMEM;
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                int r = layout_add_line(&l, line, &v2_at_root, &any_v1);
                if (r < 0) {
                        aj_cgroup_layout_done(&l);
                        return r;
                }
        }
        if (l.v2_mount && streq(l.v2_mount, CGROUP_ROOT))
                l.mode = AJ_CGROUP_MODE_UNIFIED;
        else if (l.v2_mount && any_v1)
                l.mode = AJ_CGROUP_MODE_HYBRID;
        else if (any_v1)
                l.mode = AJ_CGROUP_MODE_LEGACY;
        else if (l.v2_mount)
                l.mode = AJ_CGROUP_MODE_UNIFIED;
        if (l.mode == AJ_CGROUP_MODE_UNIFIED) {
                /* v1 mounts beside a v2 root are named hierarchies at most: ignore. */
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                        free(l.v1_mount[c]);
                        l.v1_mount[c] = NULL;
                }
        }
        *ret = l;
        return 0;
}

static int layout_read(AjCgroupLayout *ret)
{
        struct statfs sfs;
        /* The common pure-v2 case needs no mountinfo parsing. */
        if (statfs(CGROUP_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
                char *m = strdup(CGROUP_ROOT);
                if (!m)
                        return -ENOMEM;
                *ret = (AjCgroupLayout){ .mode = AJ_CGROUP_MODE_UNIFIED, .v2_mount = m };
                return 0;
        }
        _cleanup_free_ char *text = NULL;
        int r = aj_read_file("/proc/self/mountinfo", 16 * 1024 * 1024, &text, NULL);
        if (r < 0)
                return r;
        return aj_cgroup_layout_from_mountinfo(text, ret);
}

static int layout_copy(const AjCgroupLayout *l, AjCgroupLayout *ret)
{
        AjCgroupLayout c = { .mode = l->mode };
        bool ok = !l->v2_mount || (c.v2_mount = strdup(l->v2_mount));
        for (size_t i = 0; ok && i < _AJ_CG_V1_MAX; i++)
                ok = !l->v1_mount[i] || (c.v1_mount[i] = strdup(l->v1_mount[i]));
        if (!ok) {
                aj_cgroup_layout_done(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* Where the hierarchies are mounted does not change under a process of ours (a run, a
 * verb): read once, as reading mountinfo costs tens of microseconds on a hybrid host
 * (each v1 mount's options are formatted), and a run asks at its start and its end. */
static AjCgroupLayout cached;
static int cached_r = 1; /* 1: not read yet */

int aj_cgroup_layout_load(AjCgroupLayout *ret)
{
        if (cached_r > 0)
                cached_r = layout_read(&cached);
        return cached_r < 0 ? cached_r : layout_copy(&cached, ret);
}

int aj_cgroup_layout_override(const AjCgroupLayout *l)
{
        AjCgroupLayout c = { 0 };
        int r = layout_copy(l, &c);
        if (r < 0)
                return r;
        if (cached_r == 0)
                aj_cgroup_layout_done(&cached);
        cached = c;
        cached_r = 0;
        return 0;
}

int aj_cgroup_detect(AjCgroupMode *ret)
{
        AjCgroupLayout l = { 0 };
        int r = aj_cgroup_layout_load(&l);
        if (r < 0)
                return r;
        *ret = l.mode;
        aj_cgroup_layout_done(&l);
        return 0;
}

int aj_cgroup_parse_proc_cgroup(const char *text, const char *controller, char **ret_path)
{
        if (!text)
                return -EINVAL;
        for (const char *line = text; *line;) {
                const char *eol = strchrnul(line, '\n');
                const char *c1 = memchr(line, ':', (size_t)(eol - line));
                const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
                if (c2) {
                        bool match;
                        if (!controller) {
                                match = c1 - line == 1 && line[0] == '0' && c2 == c1 + 1;
                        } else {
                                _cleanup_free_ char *ctrls = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
                                if (!ctrls)
                                        return -ENOMEM;
                                match = opts_contain(ctrls, controller);
                        }
                        if (match) {
                                char *p = strndup(c2 + 1, (size_t)(eol - c2 - 1));
                                if (!p)
                                        return -ENOMEM;
                                *ret_path = p;
                                return 0;
                        }
                }
                line = *eol ? eol + 1 : eol;
        }
        return -ENOENT;
}

unsigned aj_cgroup_v1_needed(AjCgroupMode mode, const AjCgroupLimits *limits, bool v2_can_freeze)
{
        if (mode != AJ_CGROUP_MODE_HYBRID && mode != AJ_CGROUP_MODE_LEGACY)
                return 0;
        unsigned m = 0;
        if (limits && limits->memory_max > 0)
                m |= AJ_CG_V1_BIT(AJ_CG_V1_MEMORY);
        if (limits && limits->pids_max > 0)
                m |= AJ_CG_V1_BIT(AJ_CG_V1_PIDS);
        if (limits && limits->cpus > 0)
                m |= AJ_CG_V1_BIT(AJ_CG_V1_CPU);
        if (mode == AJ_CGROUP_MODE_LEGACY)
                m |= AJ_CG_V1_BIT(AJ_CG_V1_FREEZER) | AJ_CG_V1_BIT(AJ_CG_V1_CPUACCT);
        else if (!v2_can_freeze)
                m |= AJ_CG_V1_BIT(AJ_CG_V1_FREEZER);
        return m;
}

void aj_cgroup_plan_done(AjCgroupPlan *p)
{
        if (!p)
                return;
        free(p->v2_parent);
        free(p->v2_run);
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                free(p->v1_parent[c]);
                free(p->v1_run[c]);
        }
        *p = (AjCgroupPlan){ 0 };
}

/* "<mount><base>/agentjail" and ".../<run_id>", no doubled slashes. */
static int plan_one(const char *mount, const char *base, const char *run_id, char **ret_parent, char **ret_run)
{
        if (!base || !*base)
                base = "/";
        if (base[0] != '/' || strstr(base, "/../") || strstr(base, "/./"))
                return -EINVAL;
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
                bl--;
        size_t ml = strlen(mount);
        while (ml > 1 && mount[ml - 1] == '/')
                ml--;
        char *parent = NULL, *run = NULL;
        if (asprintf(&parent, "%.*s%.*s/agentjail", (int)ml, mount, (int)bl, base) < 0)
                return -ENOMEM;
        if (asprintf(&run, "%s/%s", parent, run_id) < 0) {
                free(parent);
                return -ENOMEM;
        }
        *ret_parent = parent;
        *ret_run = run;
        return 0;
}

int aj_cgroup_plan_paths(const AjCgroupLayout *layout, const char *run_id, bool with_v2, const char *v2_base,
                         char *const *v1_base, unsigned v1_mask, AjCgroupPlan *ret)
{
        if (!layout || !aj_cgroup_run_id_valid(run_id))
                return -EINVAL;
        AjCgroupPlan p = { 0 };
        int r = 0;
        if (with_v2 && layout->v2_mount) {
                r = plan_one(layout->v2_mount, v2_base, run_id, &p.v2_parent, &p.v2_run);
                if (r < 0)
                        goto fail;
        }
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!(v1_mask & AJ_CG_V1_BIT(c)) || !layout->v1_mount[c])
                        continue;
                r = plan_one(layout->v1_mount[c], v1_base ? v1_base[c] : NULL, run_id, &p.v1_parent[c], &p.v1_run[c]);
                if (r < 0)
                        goto fail;
                for (size_t o = 0; o < c; o++)
                        if (p.v1_run[o] && !p.v1_alias[o] && streq(p.v1_run[o], p.v1_run[c]))
                                p.v1_alias[c] = true;
        }
        *ret = p;
        return 0;
fail:
        aj_cgroup_plan_done(&p);
        return r;
}
