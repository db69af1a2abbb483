/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The free space a run leaves on the filesystems its agent writes (limits.disk_free): the
 * workspace's (rw), the run directory's (an overlay workspace's upper layer is there, in
 * agentjail's state dir, usually the host's root filesystem, where the run's logs and
 * records are too, watched whatever the workspace), each rw bind's, the mounts below them; bytes and inodes (empty files cost no bytes, and use them up). A run that
 * would start below it is refused; while it runs, a timer looks (fstatfs, sooner the less
 * room is left) and going below is a breach (cap disk_free: freeze, quarantine, alert), so
 * an agent cannot fill the host's disk, nor leave the run's own records no room.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "hooks.h"
#include "util/error.h"
#include "util/loop.h"

#define AJ_DISK_MAX_FS 16                       /* distinct filesystems watched; more is an error (the binds say so) */
#define AJ_DISK_DEFAULT_MAX (1ULL << 30)        /* unset: 5% of a filesystem, at most this */
#define AJ_DISK_INODES_DEFAULT_MAX (1ULL << 20) /* inodes: 5% of a filesystem's, at most this */

typedef struct {
        int fd;                 /* any fd on it (O_PATH is enough for fstatfs) */
        char *what;             /* "the workspace '/src/proj'", for messages */
        uint64_t dev;           /* st_dev, to count each filesystem once */
        uint64_t size;          /* bytes, at the first look */
        uint64_t reserve;       /* the free bytes the run must leave on it; 0: not watched */
        uint64_t inode_reserve; /* the free inodes (empty files cost no bytes); 0: not watched */
} AjSupDiskFs;

typedef struct {
        void (*breach)(void *userdata, const AjBreach *b);
} AjSupDiskOps;

typedef struct {
        const AjSupDiskOps *ops;
        void *userdata;
        AjLoopTimer timer;
        AjSupDiskFs fs[AJ_DISK_MAX_FS];
        size_t n;
        bool set;         /* limits.disk_free was given (or raised): one reserve for all */
        uint64_t reserve; /* its value; 0: off */
        bool frozen;      /* no looking while frozen: the agent writes nothing */
        uint64_t checks;  /* fstatfs calls, for tests */
} AjSupDisk;

/* Pure: the reserve on a filesystem of `size` bytes: `set` ? `value` : 5% of it, at most
 * AJ_DISK_DEFAULT_MAX. */
uint64_t aj_disk_reserve(bool set, uint64_t value, uint64_t size);
/* Pure: the inodes a run leaves free on a filesystem of `files` inodes (f_files; 0, a
 * filesystem that makes them as needed: none): 5% of them, at most AJ_DISK_INODES_DEFAULT_MAX,
 * whatever limits.disk_free says unless it is 0. */
uint64_t aj_disk_inode_reserve(uint64_t files);
/* Pure: when to look again, with `room` bytes above the reserve: the time an agent writing
 * at 4 GiB/s would take to use half of it, between 5 ms and 1 s. */
uint64_t aj_disk_next_check_ns(uint64_t room);

void aj_sup_disk_init(AjSupDisk *d, AjLoop *loop, bool set, uint64_t value, const AjSupDiskOps *ops, void *userdata);
/* Watch the filesystem `fd` is on (the fd is taken, closed by _done); `what` names it. A
 * filesystem already watched is counted once. -E2BIG past AJ_DISK_MAX_FS. */
int aj_sup_disk_add(AjSupDisk *d, int fd, const char *what);
/* The first look: -ENOSPC (ret_error says which filesystem, how much is free and what the
 * run must leave) when one is already below its reserve of bytes or of inodes; the timer
 * starts otherwise. */
int aj_sup_disk_start(AjSupDisk *d, AjError *ret_error);
/* Before a thaw: -ENOSPC (ret_error says why) when a filesystem is below its reserve, or
 * below `reserve` for all when `raised` (thaw --raise disk_free=): the thaw is refused
 * rather than the run stopped again once it has written a little more. */
int aj_sup_disk_check_thaw(AjSupDisk *d, bool raised, uint64_t reserve, AjError *ret_error);
void aj_sup_disk_set_frozen(AjSupDisk *d, bool frozen);
/* thaw --raise disk_free=SIZE: the reserve of bytes for every filesystem (0: stop watching,
 * inodes too). */
void aj_sup_disk_set_reserve(AjSupDisk *d, uint64_t reserve);
void aj_sup_disk_stop(AjSupDisk *d);
void aj_sup_disk_done(AjSupDisk *d);
