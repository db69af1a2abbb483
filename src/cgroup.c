/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-run cgroup front end: detects the layout, plans the directories,
 * and dispatches to the v2 and v1 backends (see cgroup-internal.h).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include "cgroup-internal.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/macros.h"
#include "util/strv.h"
#include "util/error.h"
#include "util/format.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CG_FILE_MAX (1024 * 1024)

static const char *const v1_names[_AJ_CG_V1_MAX] = {
        [AJ_CG_V1_MEMORY] = "memory",
        [AJ_CG_V1_PIDS] = "pids",
        [AJ_CG_V1_CPU] = "cpu",
        [AJ_CG_V1_CPUACCT] = "cpuacct",
        [AJ_CG_V1_FREEZER] = "freezer",
};

const char *aj_cgroup_v1_name(AjCgroupV1Controller c)
{
        return c < _AJ_CG_V1_MAX ? v1_names[c] : NULL;
}

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
                double q = round(cpus * (double)period_us);
                /* The kernel refuses quotas below 1 ms; round tiny shares up
                 * rather than failing or silently dropping the limit. */
                if (q < 1000)
                        q = 1000;
                if (q > (double)(UINT64_MAX / 2))
                        return -ERANGE;
                n = snprintf(buf, len, "%" PRIu64 " %" PRIu64, (uint64_t)q, period_us);
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
        int r = 0;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
                char *sep = strstr(line, " - ");
                if (!sep)
                        continue;
                *sep = 0;
                char *tail = sep + 3;
                char *f[6] = { 0 };
                char *s2 = NULL;
                size_t nf = 0;
                for (char *t = strtok_r(line, " ", &s2); t && nf < 6; t = strtok_r(NULL, " ", &s2))
                        f[nf++] = t;
                if (nf < 5)
                        continue;
                char *s3 = NULL;
                char *fstype = strtok_r(tail, " ", &s3);
                char *source = fstype ? strtok_r(NULL, " ", &s3) : NULL;
                char *superopts = source ? strtok_r(NULL, " ", &s3) : NULL;
                if (!fstype)
                        continue;
                char *mnt = f[4];
                unescape_mountinfo(mnt);
                if (streq(fstype, "cgroup2")) {
                        /* Prefer the canonical locations when several exist. */
                        bool canonical = streq(mnt, CGROUP_ROOT) || streq(mnt, CGROUP_ROOT "/unified");
                        if (!l.v2_mount || (canonical && !v2_at_root)) {
                                char *m = strdup(mnt);
                                if (!m) {
                                        r = -ENOMEM;
                                        break;
                                }
                                free(l.v2_mount);
                                l.v2_mount = m;
                                v2_at_root = canonical;
                        }
                } else if (streq(fstype, "cgroup") && superopts) {
                        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                                if (!opts_contain(superopts, v1_names[c]) || l.v1_mount[c])
                                        continue;
                                l.v1_mount[c] = strdup(mnt);
                                if (!l.v1_mount[c]) {
                                        r = -ENOMEM;
                                        break;
                                }
                                any_v1 = true;
                        }
                        if (r < 0)
                                break;
                }
        }
        if (r < 0) {
                aj_cgroup_layout_done(&l);
                return r;
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

int aj_cgroup_layout_load(AjCgroupLayout *ret)
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

int aj_cgroup_plan_paths(const AjCgroupLayout *layout, const char *run_id, bool with_v2,
                         const char *v2_base, char *const *v1_base, unsigned v1_mask, AjCgroupPlan *ret)
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
                r = plan_one(layout->v1_mount[c], v1_base ? v1_base[c] : NULL, run_id, &p.v1_parent[c],
                             &p.v1_run[c]);
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

/* ---- small file helpers ---- */

int aj_cgroup_unenforced(AjCgroupReasons *rs, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;
        va_start(ap, fmt);
        int n = aj_vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        if (rs->text) {
                char *joined = NULL;
                if (asprintf(&joined, "%s; %s", rs->text, msg) < 0) {
                        free(msg);
                        return -ENOMEM;
                }
                free(rs->text);
                free(msg);
                rs->text = joined;
        } else
                rs->text = msg;
        return rs->allow_degraded ? 0 : -EOPNOTSUPP;
}

int aj_cg_read(const char *dir, const char *file, char **ret)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        return aj_read_file_at(dfd, file, CG_FILE_MAX, ret, NULL);
}

int aj_cg_read_u64(const char *dir, const char *file, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_read(dir, file, &s);
        if (r < 0)
                return r;
        s[strcspn(s, "\n")] = 0;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                return -EINVAL;
        *ret = v;
        return 0;
}

int aj_cg_read_keyed(const char *dir, const char *file, const char *key, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_read(dir, file, &s);
        if (r < 0)
                return r;
        return aj_cgroup_parse_keyed(s, key, ret);
}

int aj_cg_write(const char *dir, const char *file, const char *text)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        return aj_write_file_at(dfd, file, text);
}

bool aj_cg_exists(const char *dir, const char *file)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return false;
        return access(p, F_OK) == 0;
}

int aj_cg_mkdir_run(const char *parent, const char *run)
{
        for (int attempt = 0; attempt < 5; attempt++) {
                if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (mkdir(run, 0755) == 0)
                        return 0;
                if (errno != ENOENT)
                        return -errno;
                /* Another run's destroy removed the shared parent meanwhile. */
        }
        return -ENOENT;
}

int aj_cg_rmdir(const char *dir)
{
        /* A v1 hierarchy can report EBUSY for a short while after the last
         * task exited (css offlining is asynchronous): bounded retry, ~1 s. */
        for (int i = 0;; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY || i >= 200)
                        return -errno;
                aj_sleep_ms(i < 20 ? 1 : 5);
        }
}

void aj_cg_rmdir_parent(const char *dir)
{
        if (dir)
                (void)rmdir(dir); /* ENOTEMPTY/EBUSY: still used by another run */
}

int aj_cg_wait_keyed(const char *dir, const char *file, const char *key, uint64_t want, int timeout_ms)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        _cleanup_close_ int fd = openat(dfd, file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int64_t deadline = aj_now_monotonic_ms() + timeout_ms;
        for (;;) {
                /* Reading re-arms kernfs' POLLPRI: read first, then poll. */
                char buf[1024];
                if (lseek(fd, 0, SEEK_SET) < 0)
                        return -errno;
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf[n] = 0;
                uint64_t v;
                int r = aj_cgroup_parse_keyed(buf, key, &v);
                if (r < 0)
                        return r;
                if (v == want)
                        return 0;
                int64_t left = deadline - aj_now_monotonic_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                /* The kernel rate-limits cgroup file notifications to one per 10 ms per file
                 * (cgroup_file_notify), so a freeze right after a thaw would be reported up to
                 * 10 ms late: look again every millisecond as well as on each notification. */
                struct pollfd pfd = { .fd = fd, .events = POLLPRI };
                r = poll(&pfd, 1, left < 1 ? (int)left : 1);
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

int aj_cg_read_pids(const char *dir, pid_t **ret, size_t *ret_n)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_read(dir, "cgroup.procs", &s);
        if (r < 0)
                return r;
        size_t n = 0, cap = 0;
        _cleanup_free_ pid_t *v = NULL;
        for (char *p = s; *p;) {
                char *end = NULL;
                long x = strtol(p, &end, 10);
                if (end == p)
                        break;
                if (x > 0 && x <= INT_MAX) {
                        if (n == cap) {
                                cap = cap ? cap * 2 : 16;
                                pid_t *nv = realloc(v, cap * sizeof(pid_t));
                                if (!nv)
                                        return -ENOMEM;
                                v = nv;
                        }
                        v[n++] = (pid_t)x;
                }
                p = end;
                while (*p == '\n' || *p == ' ')
                        p++;
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

int aj_cg_attach(const char *dir, pid_t pid)
{
        char buf[32];
        snprintf(buf, sizeof(buf), "%d", (int)pid);
        return aj_cg_write(dir, "cgroup.procs", buf);
}

/* ---- front end ---- */

static AjCgroup *cgroup_new(const char *run_id)
{
        AjCgroup *cg = calloc(1, sizeof(*cg));
        if (!cg)
                return NULL;
        cg->run_id = strdup(run_id);
        if (!cg->run_id) {
                free(cg);
                return NULL;
        }
        cg->v2_fd = -1;
        cg->event_fd = -1;
        return cg;
}

void aj_cgroup_free(AjCgroup *cg)
{
        if (!cg)
                return;
        if (cg->v2_fd >= 0)
                close(cg->v2_fd);
        if (cg->event_fd >= 0)
                close(cg->event_fd);
        aj_cgroup_plan_done(&cg->plan);
        aj_strv_free(cg->paths);
        free(cg->v2_base);
        free(cg->v2_leaf);
        free(cg->run_id);
        free(cg);
}

static int build_paths(AjCgroup *cg)
{
        char **v = NULL;
        int r = 0;
        if (cg->have_v2)
                r = aj_strv_push(&v, cg->plan.v2_run);
        for (size_t c = 0; r >= 0 && c < _AJ_CG_V1_MAX; c++)
                if (cg->have_v1[c] && !cg->plan.v1_alias[c])
                        r = aj_strv_push(&v, cg->plan.v1_run[c]);
        if (r >= 0 && !v) {
                v = calloc(1, sizeof(char *));
                if (!v)
                        r = -ENOMEM;
        }
        if (r < 0) {
                aj_strv_free(v);
                return r;
        }
        aj_strv_free(cg->paths);
        cg->paths = v;
        return 0;
}

void aj_cgroup_strip_supervisor_leaf(char *path)
{
        char *a = NULL;
        for (char *p = path; p && (p = strstr(p, "/agentjail/")); p++)
                a = p;
        if (!a)
                return;
        const char *leaf = a + strlen("/agentjail/");
        size_t n = strlen(leaf), sl = strlen(".supervisor");
        if (n <= sl || n - sl > 64 || !streq(leaf + n - sl, ".supervisor"))
                return;
        for (size_t i = 0; i < n - sl; i++)
                if (!isalnum((unsigned char)leaf[i]) && leaf[i] != '_' && leaf[i] != '-')
                        return; /* not "<run id>.supervisor" */
        *a = 0;
}

/* Rootless runs nest under the cgroup we were started in (the delegated
 * subtree); root-started ones under each hierarchy's root. */
static int load_bases(const AjCgroupLayout *l, char **ret_v2_base, char **v1_base)
{
        if (geteuid() == 0)
                return 0;
        _cleanup_free_ char *text = NULL;
        int r = aj_read_file("/proc/self/cgroup", CG_FILE_MAX, &text, NULL);
        if (r < 0)
                return r;
        if (l->v2_mount) {
                r = aj_cgroup_parse_proc_cgroup(text, NULL, ret_v2_base);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0)
                        aj_cgroup_strip_supervisor_leaf(*ret_v2_base);
        }
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++) {
                if (!l->v1_mount[c])
                        continue;
                r = aj_cgroup_parse_proc_cgroup(text, v1_names[c], &v1_base[c]);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

static void free_bases(char *v2_base, char **v1_base)
{
        free(v2_base);
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                free(v1_base[c]);
}

static int remove_all(AjCgroup *cg)
{
        int r = aj_cgroup_kill(cg);
        if (r == -EOPNOTSUPP)
                r = 0;
        /* The event fd keeps v1 oom_control registrations alive: drop it first. */
        if (cg->event_fd >= 0) {
                close(cg->event_fd);
                cg->event_fd = -1;
        }
        if (cg->v2_fd >= 0) {
                close(cg->v2_fd);
                cg->v2_fd = -1;
        }
        int q = aj_cgroup_v1_ops.remove(cg);
        if (q < 0 && r >= 0)
                r = q;
        q = aj_cgroup_v2_ops.remove(cg);
        if (q < 0 && r >= 0)
                r = q;
        return r;
}

#define ROOTLESS_HINT                                                                                  \
        "to enforce limits without root, start agentjail in a delegated cgroup v2 subtree of its own: " \
        "`systemd-run --user --scope -p Delegate=yes agentjail run ...` (if the user's systemd does "   \
        "not delegate memory, pids and cpu, add /etc/systemd/system/user@.service.d/delegate.conf "     \
        "with \"[Service]\" and \"Delegate=memory pids cpu\", then log in again; a cgroup that also " \
        "holds other processes cannot enable controllers for its children; v1 hierarchies are "        \
        "writable by root only), or allow degraded runs"

static int finish_reasons(AjCgroupReasons *rs, int r, char **ret_unenforced, AjError *ret_error);
static int create_impl(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, bool defer_v1,
                       AjCgroup **ret, char **ret_unenforced, AjError *ret_error);

int aj_cgroup_create(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                     char **ret_unenforced, AjError *ret_error)
{
        return create_impl(run_id, limits, allow_degraded, false, ret, ret_unenforced, ret_error);
}

int aj_cgroup_create_v2_first(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, AjCgroup **ret,
                              char **ret_unenforced, AjError *ret_error)
{
        return create_impl(run_id, limits, allow_degraded, true, ret, ret_unenforced, ret_error);
}

int aj_cgroup_create_rest(AjCgroup *cg, char **ret_unenforced, AjError *ret_error)
{
        if (ret_unenforced)
                *ret_unenforced = NULL;
        if (!cg->v1_pending)
                return 0;
        cg->v1_pending = false;
        AjCgroupReasons reasons = { .allow_degraded = cg->pending_allow_degraded };
        int r = aj_cgroup_v1_ops.create(cg, &cg->pending_limits, &reasons);
        if (r >= 0)
                r = build_paths(cg);
        return finish_reasons(&reasons, r, ret_unenforced, ret_error);
}

/* What is not enforced: on failure (r < 0) the error's message, else the note the caller
 * records for a degraded run. Returns r. */
static int finish_reasons(AjCgroupReasons *rs, int r, char **ret_unenforced, AjError *ret_error)
{
        _cleanup_free_ char *text = TAKE_PTR(rs->text);
        if (text && rs->rootless_hint) {
                char *t = NULL;
                if (aj_asprintf(&t, "%s; %s", text, ROOTLESS_HINT) >= 0) {
                        free(text);
                        text = t;
                }
        }
        if (r < 0)
                return text ? aj_error_set(ret_error, r, "%s", text) : r;
        if (ret_unenforced)
                *ret_unenforced = TAKE_PTR(text);
        return r;
}

static int create_impl(const char *run_id, const AjCgroupLimits *limits, bool allow_degraded, bool defer_v1,
                       AjCgroup **ret, char **ret_unenforced, AjError *ret_error)
{
        static const AjCgroupLimits no_limits = { 0 };
        AjCgroupReasons reasons = { .allow_degraded = allow_degraded };
        AjCgroupLayout layout = { 0 };
        char *v2_base = NULL, *v1_base[_AJ_CG_V1_MAX] = { 0 };
        AjCgroup *cg = NULL;
        int r;

        if (ret_unenforced)
                *ret_unenforced = NULL;
        if (!aj_cgroup_run_id_valid(run_id) || !ret)
                return -EINVAL;
        if (!limits)
                limits = &no_limits;
        if (!isfinite(limits->cpus) || limits->cpus < 0)
                return -EINVAL;

        r = aj_cgroup_layout_load(&layout);
        if (r < 0) {
                (void)aj_cgroup_unenforced(&reasons, "cannot determine the cgroup layout: %s", strerror(-r));
                goto fail;
        }
        cg = cgroup_new(run_id);
        if (!cg) {
                r = -ENOMEM;
                goto fail;
        }
        cg->mode = layout.mode;
        if (layout.mode == AJ_CGROUP_MODE_NONE) {
                r = aj_cgroup_unenforced(&reasons, "no cgroup hierarchy is mounted on %s: limits, freeze "
                                                   "and kill of the whole run are not available",
                                         CGROUP_ROOT);
                if (r < 0)
                        goto fail;
                r = build_paths(cg);
                if (r < 0)
                        goto fail;
                goto done;
        }
        r = load_bases(&layout, &v2_base, v1_base);
        if (r < 0)
                goto fail;
        /* Plan the freezer too; dropped below when the v2 tree can freeze. */
        r = aj_cgroup_plan_paths(&layout, run_id, true, v2_base, v1_base,
                                 aj_cgroup_v1_needed(layout.mode, limits, false), &cg->plan);
        if (r < 0)
                goto fail;

        r = aj_cgroup_v2_ops.create(cg, limits, &reasons);
        if (r < 0)
                goto fail_remove;
        if (cg->plan.v1_run[AJ_CG_V1_FREEZER] && layout.mode == AJ_CGROUP_MODE_HYBRID &&
            aj_cgroup_v2_ops.can_freeze(cg)) {
                free(cg->plan.v1_run[AJ_CG_V1_FREEZER]);
                free(cg->plan.v1_parent[AJ_CG_V1_FREEZER]);
                cg->plan.v1_run[AJ_CG_V1_FREEZER] = cg->plan.v1_parent[AJ_CG_V1_FREEZER] = NULL;
        }
        if (defer_v1) {
                cg->v1_pending = true;
                cg->pending_limits = *limits;
                cg->pending_allow_degraded = allow_degraded;
        } else {
                r = aj_cgroup_v1_ops.create(cg, limits, &reasons);
                if (r < 0)
                        goto fail_remove;
        }
        r = build_paths(cg);
        if (r < 0)
                goto fail_remove;
done:
        free_bases(v2_base, v1_base);
        aj_cgroup_layout_done(&layout);
        *ret = cg;
        return finish_reasons(&reasons, 0, ret_unenforced, ret_error);

fail_remove:
        (void)remove_all(cg);
fail:
        aj_cgroup_free(cg);
        free_bases(v2_base, v1_base);
        aj_cgroup_layout_done(&layout);
        return finish_reasons(&reasons, r, ret_unenforced, ret_error);
}

static bool dir_exists(const char *p)
{
        struct stat st;
        return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int aj_cgroup_open(const char *run_id, AjCgroup **ret)
{
        if (!aj_cgroup_run_id_valid(run_id) || !ret)
                return -EINVAL;
        AjCgroupLayout layout = { 0 };
        int r = aj_cgroup_layout_load(&layout);
        if (r < 0)
                return r;
        _cleanup_(aj_cgroup_freep) AjCgroup *cg = cgroup_new(run_id);
        if (!cg) {
                aj_cgroup_layout_done(&layout);
                return -ENOMEM;
        }
        cg->mode = layout.mode;
        unsigned all = 0;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                all |= AJ_CG_V1_BIT(c);
        /* Root-started runs live under the hierarchy roots; a rootless caller
         * also looks under its own (delegated) cgroup. */
        for (int pass = 0; pass < 2 && !cg->have_v2; pass++) {
                char *v2_base = NULL, *v1_base[_AJ_CG_V1_MAX] = { 0 };
                if (pass == 1) {
                        if (geteuid() == 0)
                                break;
                        r = load_bases(&layout, &v2_base, v1_base);
                        if (r < 0) {
                                free_bases(v2_base, v1_base);
                                break;
                        }
                }
                AjCgroupPlan plan = { 0 };
                r = aj_cgroup_plan_paths(&layout, run_id, true, v2_base, v1_base, all, &plan);
                free_bases(v2_base, v1_base);
                if (r < 0)
                        break;
                bool any = dir_exists(plan.v2_run);
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                        any = any || dir_exists(plan.v1_run[c]);
                if (!any) {
                        aj_cgroup_plan_done(&plan);
                        continue;
                }
                aj_cgroup_plan_done(&cg->plan);
                cg->plan = plan;
                cg->have_v2 = dir_exists(plan.v2_run);
                for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                        cg->have_v1[c] = dir_exists(plan.v1_run[c]);
                break;
        }
        aj_cgroup_layout_done(&layout);
        bool any = cg->have_v2;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                any = any || cg->have_v1[c];
        if (!any)
                return -ENOENT;
        if (cg->have_v2) {
                cg->v2_fd = open(cg->plan.v2_run, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (cg->v2_fd < 0)
                        return -errno;
        }
        r = build_paths(cg);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cg);
        return 0;
}

int aj_cgroup_v2_fd(const AjCgroup *cg)
{
        return cg ? cg->v2_fd : -1;
}

int aj_cgroup_attach(AjCgroup *cg, pid_t pid, bool already_in_v2)
{
        if (!cg || pid <= 0)
                return -EINVAL;
        /* The limits (v1 on hybrid hosts) first: once a task is visible in
         * the run's v2 cgroup it is already bounded. */
        int r = aj_cgroup_v1_ops.attach(cg, pid);
        if (r < 0)
                return r;
        if (!already_in_v2)
                r = aj_cgroup_v2_ops.attach(cg, pid);
        return r;
}

static const AjCgroupOps *freeze_backend(const AjCgroup *cg)
{
        if (aj_cgroup_v2_ops.can_freeze(cg))
                return &aj_cgroup_v2_ops;
        if (aj_cgroup_v1_ops.can_freeze(cg))
                return &aj_cgroup_v1_ops;
        return NULL;
}

int aj_cgroup_freeze(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        const AjCgroupOps *ops = freeze_backend(cg);
        return ops ? ops->set_frozen(cg, true) : -EOPNOTSUPP;
}

int aj_cgroup_thaw(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        const AjCgroupOps *ops = freeze_backend(cg);
        return ops ? ops->set_frozen(cg, false) : -EOPNOTSUPP;
}

int aj_cgroup_kill(AjCgroup *cg)
{
        if (!cg)
                return -EINVAL;
        if (cg->have_v2)
                return aj_cgroup_v2_ops.kill(cg);
        bool any = false;
        for (size_t c = 0; c < _AJ_CG_V1_MAX; c++)
                any = any || cg->have_v1[c];
        return any ? aj_cgroup_v1_ops.kill(cg) : -EOPNOTSUPP;
}

int aj_cgroup_pids(AjCgroup *cg, pid_t **ret_pids, size_t *ret_n)
{
        if (!cg || !ret_pids || !ret_n)
                return -EINVAL;
        if (cg->have_v2)
                return aj_cgroup_v2_ops.pids(cg, ret_pids, ret_n);
        return aj_cgroup_v1_ops.pids(cg, ret_pids, ret_n);
}

int aj_cgroup_stats(AjCgroup *cg, AjCgroupStats *ret)
{
        if (!cg || !ret)
                return -EINVAL;
        AjCgroupStats st = { 0 };
        int r = aj_cgroup_v2_ops.stats(cg, &st);
        if (r < 0)
                return r;
        r = aj_cgroup_v1_ops.stats(cg, &st);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

static const AjCgroupOps *limits_backend(const AjCgroup *cg)
{
        return cg->mode == AJ_CGROUP_MODE_UNIFIED ? &aj_cgroup_v2_ops : &aj_cgroup_v1_ops;
}

int aj_cgroup_event_fd(AjCgroup *cg)
{
        if (!cg)
                return -1;
        if (cg->event_fd >= 0)
                return cg->event_fd;
        int fd = -1;
        if (limits_backend(cg)->open_event_fd(cg, &fd) < 0)
                return -1;
        cg->event_fd = fd;
        return fd;
}

void aj_cgroup_event_ack(AjCgroup *cg)
{
        if (cg && cg->event_fd >= 0)
                limits_backend(cg)->event_ack(cg);
}

int aj_cgroup_destroy(AjCgroup *cg)
{
        if (!cg)
                return 0;
        int r = remove_all(cg);
        aj_cgroup_free(cg);
        return r;
}

char *const *aj_cgroup_paths(const AjCgroup *cg)
{
        static char *const empty[] = { NULL };
        return cg && cg->paths ? cg->paths : empty;
}
