/* SPDX-License-Identifier: Apache-2.0 */
#include "supervisor/disk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "util/format.h"
#include "util/macros.h"

#define MIN_PERIOD_NS (5ULL * 1000000ULL)
#define MAX_PERIOD_NS (1000ULL * 1000000ULL)
#define FAST_WRITER (4ULL << 30)  /* bytes per second: a fast disk's page cache taking writes */
#define FAST_CREATOR (1ULL << 20) /* files per second: many writers making empty files */

uint64_t aj_disk_reserve(bool set, uint64_t value, uint64_t size)
{
        if (set)
                return value;
        uint64_t r = size / 20;
        return r < AJ_DISK_DEFAULT_MAX ? r : AJ_DISK_DEFAULT_MAX;
}

uint64_t aj_disk_inode_reserve(uint64_t files)
{
        uint64_t r = files / 20;
        return r < AJ_DISK_INODES_DEFAULT_MAX ? r : AJ_DISK_INODES_DEFAULT_MAX;
}

uint64_t aj_disk_next_check_ns(uint64_t room)
{
        /* room / 2 bytes at FAST_WRITER bytes a second, in ns, without overflow. */
        uint64_t ns = room / 2 / (FAST_WRITER / 1024) * (1000000000ULL / 1024);
        return ns < MIN_PERIOD_NS ? MIN_PERIOD_NS : ns > MAX_PERIOD_NS ? MAX_PERIOD_NS : ns;
}

typedef struct {
        int err;       /* fstatfs's -errno */
        uint64_t free; /* bytes an unprivileged writer may still use */
        uint64_t size;
        uint64_t files; /* inodes in all; 0: the filesystem has no fixed number (btrfs) */
        uint64_t ffree; /* inodes free */
        uint64_t dev;   /* st_dev: which filesystem (f_fsid can be 0, or shared by copies of an image) */
} Look;

static Look look_at(AjSupDisk *d, int fd)
{
        struct statfs sf;
        d->checks++;
        if (fstatfs(fd, &sf) < 0)
                return (Look){ .err = negative_errno() };
        struct stat st;
        if (fstat(fd, &st) < 0)
                return (Look){ .err = negative_errno() };
        uint64_t bs = sf.f_frsize ? (uint64_t)sf.f_frsize : (uint64_t)sf.f_bsize;
        return (Look){ .free = (uint64_t)sf.f_bavail * bs,
                       .size = (uint64_t)sf.f_blocks * bs,
                       .files = (uint64_t)sf.f_files,
                       .ffree = (uint64_t)sf.f_ffree,
                       .dev = (uint64_t)st.st_dev };
}

static void on_timer(AjLoopTimer *t, uint64_t now_ns, void *userdata);

void aj_sup_disk_init(AjSupDisk *d, AjLoop *loop, bool set, uint64_t value, const AjSupDiskOps *ops, void *userdata)
{
        *d = (AjSupDisk){ .ops = ops, .userdata = userdata, .set = set, .reserve = value };
        for (size_t i = 0; i < AJ_DISK_MAX_FS; i++)
                d->fs[i].fd = -1;
        aj_loop_timer_init(loop, &d->timer, on_timer, d);
}

int aj_sup_disk_add(AjSupDisk *d, int fd, const char *what)
{
        _cleanup_close_ int owned = fd;
        Look l = look_at(d, fd);
        if (l.err < 0)
                return l.err;
        for (size_t i = 0; i < d->n; i++)
                if (d->fs[i].dev == l.dev)
                        return 0; /* the same filesystem: watched once, under its first name */
        if (d->n == AJ_DISK_MAX_FS)
                return -E2BIG;
        char *w = strdup(what);
        if (!w)
                return -ENOMEM;
        d->fs[d->n++] = (AjSupDiskFs){ .fd = TAKE_FD(owned),
                                       .what = w,
                                       .dev = l.dev,
                                       .size = l.size,
                                       .reserve = aj_disk_reserve(d->set, d->reserve, l.size),
                                       .inode_reserve = d->set && !d->reserve ? 0 : aj_disk_inode_reserve(l.files) };
        return 0;
}

/* Every filesystem looked at, against its reserves, or `reserve` for the bytes when
 * `override` (0: neither is looked at): the index of the first one below either (or whose
 * look failed), or -1 with *ret_next_ns when to look again (0: never). */
static ssize_t look_against(AjSupDisk *d, bool override, uint64_t reserve, Look *ret_look, uint64_t *ret_next_ns)
{
        uint64_t next = 0;
        for (size_t i = 0; i < d->n; i++) {
                uint64_t want = override ? reserve : d->fs[i].reserve;
                uint64_t want_inodes = override && !reserve ? 0 : d->fs[i].inode_reserve;
                if (!want && !want_inodes)
                        continue;
                Look l = look_at(d, d->fs[i].fd);
                if (l.err < 0 || l.free < want || l.ffree < want_inodes) {
                        *ret_look = l;
                        return (ssize_t)i;
                }
                /* Half the room left, at the fastest a writer uses bytes or makes files. */
                uint64_t ns = want ? aj_disk_next_check_ns(l.free - want) : UINT64_MAX;
                if (want_inodes) {
                        uint64_t half = (l.ffree - want_inodes) / 2, per = 1000000000ULL / FAST_CREATOR;
                        uint64_t ins = half > MAX_PERIOD_NS / per ? MAX_PERIOD_NS : half * per;
                        ns = ins < ns ? ins : ns;
                }
                ns = ns < MIN_PERIOD_NS ? MIN_PERIOD_NS : ns > MAX_PERIOD_NS ? MAX_PERIOD_NS : ns;
                if (!next || ns < next)
                        next = ns;
        }
        *ret_next_ns = next;
        return -1;
}

static ssize_t look(AjSupDisk *d, Look *ret_look, uint64_t *ret_next_ns)
{
        return look_against(d, false, 0, ret_look, ret_next_ns);
}

/* Below its inode reserve (not its bytes'): `l` is a look that found filesystem `fs` below. */
static bool short_of_inodes(const Look *l, uint64_t want, uint64_t want_inodes)
{
        return l->err >= 0 && l->free >= want && l->ffree < want_inodes;
}

/* Why filesystem `i` stops the run (the look `l` found it below `want` bytes or
 * `want_inodes` inodes). */
static int below(const AjSupDisk *d, size_t i, const Look *l, uint64_t want, uint64_t want_inodes, const char *then,
                 AjError *ret_error)
{
        const AjSupDiskFs *fs = &d->fs[i];
        if (l->err < 0)
                return aj_error_set(ret_error, l->err, "limits.disk_free: cannot tell the free space on %s: %s",
                                    fs->what, strerror(-l->err));
        if (short_of_inodes(l, want, want_inodes))
                return aj_error_set(ret_error, -ENOSPC,
                                    "limits.disk_free: %s has %" PRIu64 " free inodes, fewer than the %" PRIu64
                                    " (5%% of them, at most %llu) the run must leave there; %s",
                                    fs->what, l->ffree, want_inodes, AJ_DISK_INODES_DEFAULT_MAX, then);
        char has[32], needs[32];
        aj_format_bytes(l->free, has, sizeof(has));
        aj_format_bytes(want, needs, sizeof(needs));
        return aj_error_set(ret_error, -ENOSPC,
                            "limits.disk_free: %s has %s free, less than the %s the run must leave there%s; %s",
                            fs->what, has, needs, d->set ? "" : " (5% of it, at most 1 GiB, by default)", then);
}

/* Look, and either breach or look again when the least room left could be half gone. */
static void check(AjSupDisk *d)
{
        Look l = {};
        uint64_t next = 0;
        ssize_t i = look(d, &l, &next);
        if (i < 0) {
                if (next)
                        (void)aj_loop_timer_set_in(&d->timer, next);
                return;
        }
        const AjSupDiskFs *fs = &d->fs[i];
        if (l.err < 0)
                aj_warning("cannot tell the free space on %s: %s", fs->what, strerror(-l.err));
        /* Short of inodes: the limit and value are inodes, and the request says so. */
        bool inodes = short_of_inodes(&l, fs->reserve, fs->inode_reserve);
        _cleanup_(json_decrefp)
                json_t *req = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s*}", "filesystem", fs->what, "free",
                                        (json_int_t)l.free, "reserve", (json_int_t)fs->reserve, "free_inodes",
                                        (json_int_t)l.ffree, "inode_reserve", (json_int_t)fs->inode_reserve, "short_of",
                                        inodes ? "inodes" : "bytes", "error", l.err < 0 ? strerror(-l.err) : NULL);
        AjBreach b = { .cap = "disk_free",
                       .limit = (double)(inodes ? fs->inode_reserve : fs->reserve),
                       .value = (double)(inodes ? l.ffree : l.free),
                       .request = req };
        d->ops->breach(d->userdata, &b);
}

static void on_timer(AjLoopTimer *t, uint64_t now_ns, void *userdata)
{
        (void)t, (void)now_ns;
        AjSupDisk *d = userdata;
        if (!d->frozen)
                check(d);
}

int aj_sup_disk_start(AjSupDisk *d, AjError *ret_error)
{
        Look l = {};
        uint64_t next = 0;
        ssize_t i = look(d, &l, &next);
        if (i >= 0)
                return below(d, (size_t)i, &l, d->fs[i].reserve, d->fs[i].inode_reserve,
                             "free some space, or set limits.disk_free (0: not watched)", ret_error);
        if (next)
                return aj_loop_timer_set_in(&d->timer, next);
        return 0;
}

int aj_sup_disk_check_thaw(AjSupDisk *d, bool raised, uint64_t reserve, AjError *ret_error)
{
        Look l = {};
        uint64_t next = 0;
        ssize_t i = look_against(d, raised, reserve, &l, &next);
        if (i < 0)
                return 0;
        uint64_t want = raised ? reserve : d->fs[i].reserve, want_inodes = d->fs[i].inode_reserve;
        return below(d, (size_t)i, &l, want, want_inodes,
                     short_of_inodes(&l, want, want_inodes)
                             ? "thawed, it would be stopped again at once: remove files first, or thaw --raise "
                               "disk_free=0 (not watched)"
                             : "thawed, it would be stopped again at once: make room first, or thaw --raise "
                               "disk_free=SIZE (0: not watched)",
                     ret_error);
}

void aj_sup_disk_set_frozen(AjSupDisk *d, bool frozen)
{
        d->frozen = frozen;
        if (frozen)
                aj_loop_timer_stop(&d->timer);
        else
                check(d); /* thawed: at once (still below: stopped again) */
}

void aj_sup_disk_set_reserve(AjSupDisk *d, uint64_t reserve)
{
        d->set = true;
        d->reserve = reserve;
        for (size_t i = 0; i < d->n; i++) {
                d->fs[i].reserve = reserve;
                if (!reserve)
                        d->fs[i].inode_reserve = 0; /* 0: not watched at all */
        }
}

void aj_sup_disk_stop(AjSupDisk *d) { aj_loop_timer_stop(&d->timer); }

void aj_sup_disk_done(AjSupDisk *d)
{
        for (size_t i = 0; i < d->n; i++) {
                if (d->fs[i].fd >= 0)
                        close(d->fs[i].fd);
                free(d->fs[i].what);
                d->fs[i] = (AjSupDiskFs){ .fd = -1 };
        }
        d->n = 0;
}
