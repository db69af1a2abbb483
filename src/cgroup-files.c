/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers over cgroup files shared by the front end and the backends: read, write,
 * wait for a keyed value, list pids, attach, and the "not enforced" reasons. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cgroup-internal.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/syscalls.h"

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

/* DIR/FILE, in one open: relative to the directory's kept fd, else by the whole path (a run
 * reads a dozen files at its end, and walking to the directory once more for each would cost
 * as much again). */
typedef struct {
        int dfd;
        const char *name;
        char buf[PATH_MAX];
} CgAt;

static int cg_at(AjCgDir d, const char *file, CgAt *at)
{
        if (d.fd >= 0) {
                at->dfd = d.fd;
                at->name = file;
                return 0;
        }
        int n = snprintf(at->buf, PATH_MAX, "%s/%s", d.path, file);
        at->dfd = AT_FDCWD;
        at->name = at->buf;
        return n < 0 ? -EINVAL : n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

int aj_cg_read(AjCgDir dir, const char *file, char **ret)
{
        CgAt at;
        int r = cg_at(dir, file, &at);
        return r < 0 ? r : aj_read_file_at(at.dfd, at.name, CG_FILE_MAX, ret, NULL);
}

static int parse_u64(char *s, uint64_t *ret)
{
        s[strcspn(s, "\n")] = 0;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                return -EINVAL;
        *ret = v;
        return 0;
}

int aj_cg_read_u64(AjCgDir dir, const char *file, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_read(dir, file, &s);
        return r < 0 ? r : parse_u64(s, ret);
}

int aj_cg_read_keyed(AjCgDir dir, const char *file, const char *key, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_read(dir, file, &s);
        return r < 0 ? r : aj_cgroup_parse_keyed(s, key, ret);
}

/* A kept counter file, from its start. A cgroup file is a seq file: one read hands out what
 * fits in its buffer (a page; more for a single record that needs it), whole records only, so
 * a read that returns less than asked is the end only when the text so far is under half a
 * page (the next record, a counter's line, would have fitted). Past that (cgroup.threads of a
 * few hundred threads) it reads on to the EOF: a short read there is only the page's end. */
#define KEPT_SHORT_END 2048
static int read_kept(int fd, char **ret)
{
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= CG_FILE_MAX)
                                return -EFBIG;
                        char *grown = realloc(buf, cap * 2 + 1);
                        if (!grown)
                                return -ENOMEM;
                        buf = grown;
                        cap *= 2;
                }
                ssize_t n = pread(fd, buf + len, cap - len, (off_t)len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                len += (size_t)n;
                if (n == 0 || (len < cap && len < KEPT_SHORT_END))
                        break;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int kept_fd(const AjCgroup *cg, AjCgDir dir, const char *file)
{
        for (size_t i = 0; cg && dir.fd >= 0 && i < cg->n_kept; i++)
                if (cg->kept[i].dfd == dir.fd && streq(cg->kept[i].file, file))
                        return cg->kept[i].fd;
        return -1;
}

int aj_cg_counter(AjCgroup *cg, AjCgDir dir, const char *file, char **ret)
{
        int kept = kept_fd(cg, dir, file);
        if (kept >= 0)
                return cg->keeping ? -EAGAIN : read_kept(kept, ret);
        if (!cg->keeping || dir.fd < 0 || cg->n_kept == AJ_CG_KEPT_MAX || strlen(file) >= sizeof(cg->kept[0].file))
                return cg->keeping ? -EAGAIN : aj_cg_read(dir, file, ret);
        int fd = aj_cg_open(dir, file, O_RDONLY | O_NOCTTY);
        if (fd < 0)
                return fd;
        AjCgKept *k = &cg->kept[cg->n_kept++];
        *k = (AjCgKept){ .dfd = dir.fd, .fd = fd };
        strcpy(k->file, file);
        return -EAGAIN;
}

int aj_cg_counter_u64(AjCgroup *cg, AjCgDir dir, const char *file, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_counter(cg, dir, file, &s);
        return r < 0 ? r : parse_u64(s, ret);
}

int aj_cg_counter_keyed(AjCgroup *cg, AjCgDir dir, const char *file, const char *key, uint64_t *ret)
{
        _cleanup_free_ char *s = NULL;
        int r = aj_cg_counter(cg, dir, file, &s);
        return r < 0 ? r : aj_cgroup_parse_keyed(s, key, ret);
}

void aj_cg_close_counters(AjCgroup *cg)
{
        for (size_t i = 0; i < cg->n_kept; i++)
                close(cg->kept[i].fd);
        cg->n_kept = 0;
}

int aj_cg_write(AjCgDir dir, const char *file, const char *text)
{
        CgAt at;
        int r = cg_at(dir, file, &at);
        return r < 0 ? r : aj_write_file_at(at.dfd, at.name, text);
}

int aj_cg_open(AjCgDir dir, const char *file, int flags)
{
        CgAt at;
        int r = cg_at(dir, file, &at);
        if (r < 0)
                return r;
        int fd = openat(at.dfd, at.name, flags | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? -errno : fd;
}

bool aj_cg_exists(AjCgDir dir, const char *file)
{
        CgAt at;
        return cg_at(dir, file, &at) == 0 && faccessat(at.dfd, at.name, F_OK, 0) == 0;
}

int aj_cg_mkdir_run(const char *parent, const char *run)
{
        for (int attempt = 0; attempt < 5; attempt++) {
                if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                        return -errno;
                /* Its owner's alone to open (0711: what is in it stays reachable by its path):
                 * the locks that say whose it is are flocks on it (cgroup.h aj_cgroup_claim),
                 * which anyone who opened it could take first, keeping the run from starting
                 * or a reap from claiming it. */
                if (mkdir(run, 0711) == 0)
                        return 0;
                if (errno != ENOENT)
                        return -errno;
                /* Another run's destroy removed the shared parent meanwhile. */
        }
        return -ENOENT;
}

int aj_cg_lock_dir(const char *dir, int how, int *ret_fd)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, how | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int aj_cg_rmdir(const char *dir, int64_t deadline)
{
        /* A v1 hierarchy can report EBUSY for a short while after the last task exited (css
         * offlining is asynchronous), and any hierarchy while a task is still on its way out:
         * retry until the deadline, and for at least ~1 s. */
        int64_t floor = aj_now_monotonic_ms() + 1000;
        for (int i = 0;; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
                int64_t now = aj_now_monotonic_ms();
                if (now >= deadline && now >= floor)
                        return -EBUSY;
                aj_sleep_ms(i < 20 ? 1 : i < 200 ? 5 : 100);
        }
}

void aj_cg_rmdir_parent(const char *dir)
{
        if (dir)
                (void)rmdir(dir); /* ENOTEMPTY/EBUSY: still used by another run */
}

int aj_cg_ms_left(int64_t deadline)
{
        int64_t left = deadline - aj_now_monotonic_ms();
        return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

int aj_cg_wait_keyed(const AjCgroup *cg, AjCgDir dir, const char *file, const char *key, uint64_t want, int timeout_ms)
{
        int kept = kept_fd(cg, dir, file);
        _cleanup_close_ int opened = kept >= 0 ? -1 : aj_cg_open(dir, file, O_RDONLY);
        if (kept < 0 && opened < 0)
                return opened;
        int fd = kept >= 0 ? kept : opened;
        int64_t start = aj_now_monotonic_ms(), deadline = start + timeout_ms;
        for (;;) {
                /* Reading re-arms kernfs' POLLPRI: read first, then poll. */
                char buf[1024];
                ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
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
                 * 10 ms late: look again every millisecond as well as on each notification, for
                 * the first 100 ms; a longer wait (a removal waiting for processes on their way
                 * out) goes by the notification, and looks again every 100 ms. */
                int step = aj_now_monotonic_ms() - start < 100 ? 1 : 100;
                struct pollfd pfd = { .fd = fd, .events = POLLPRI };
                r = poll(&pfd, 1, left < step ? (int)left : step);
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

int aj_cg_read_pids(AjCgDir dir, pid_t **ret, size_t *ret_n)
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

static int pid_cmp(const void *a, const void *b)
{
        pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
        return (x > y) - (x < y);
}

/* Up to AJ_CG_SIGNAL_BATCH pidfds at once: the supervisor's fds are bounded too. */
#define AJ_CG_SIGNAL_BATCH 64

/* pids[0..n) (at most a batch), read from dir's cgroup.procs earlier: each pidfd is opened
 * first, then the list is read again, and only a pid it still holds is signalled, through its
 * pidfd. A pidfd whose process is alive at the signal held its pid since it was opened, so the
 * process the new list names is that one; one that died meanwhile takes no signal (ESRCH),
 * whoever has its pid now. */
static int signal_batch(AjCgDir dir, int sig, const pid_t *pids, size_t n)
{
        int fds[AJ_CG_SIGNAL_BATCH];
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                fds[i] = sys_pidfd_open(pids[i], 0);
                /* Gone (ESRCH), or now a thread's id (EINVAL): not a task of the list any more.
                 * Anything else: no pidfd, so no signal (a kill(2) by number is the race). */
                if (fds[i] < 0 && errno != ESRCH && errno != EINVAL && r == 0)
                        r = -errno;
        }
        _cleanup_free_ pid_t *now = NULL;
        size_t n_now = 0;
        int q = r < 0 ? r : aj_cg_read_pids(dir, &now, &n_now);
        if (q >= 0 && n_now > 0)
                qsort(now, n_now, sizeof(*now), pid_cmp);
        for (size_t i = 0; i < n; i++) {
                if (fds[i] < 0)
                        continue;
                if (q >= 0 && n_now > 0 && bsearch(&pids[i], now, n_now, sizeof(*now), pid_cmp))
                        (void)sys_pidfd_send_signal(fds[i], sig, NULL, 0);
                close(fds[i]);
        }
        return q < 0 ? q : 0;
}

int aj_cg_signal_listed(AjCgDir dir, int sig, const pid_t *pids, size_t n)
{
        for (size_t i = 0; i < n; i += AJ_CG_SIGNAL_BATCH) {
                size_t left = n - i;
                int r = signal_batch(dir, sig, pids + i, left < AJ_CG_SIGNAL_BATCH ? left : AJ_CG_SIGNAL_BATCH);
                if (r < 0)
                        return r;
        }
        return 0;
}

int aj_cg_signal_all(AjCgDir dir, int sig)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = aj_cg_read_pids(dir, &pids, &n);
        if (r < 0)
                return r;
        r = aj_cg_signal_listed(dir, sig, pids, n);
        return r < 0 ? r : (int)n;
}

int aj_cg_attach(AjCgDir dir, pid_t pid)
{
        char buf[32];
        snprintf(buf, sizeof(buf), "%d", (int)pid);
        return aj_cg_write(dir, "cgroup.procs", buf);
}
