/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workspace's starting state for a replay (run.json workspace_start, docs/replay.md),
 * taken off the start-up path: a process forked once the command runs (nice 19, idle I/O
 * class, killed with the supervisor) hashes the tree with src/workspace-digest.c under
 * the ctime rule from the run's start, and hands its digest back through a pipe; its
 * pidfd and a deadline timer are in the loop. An overlay's lower layer does not change
 * during the run; an in-place workspace the agent writes while it is read is caught by the
 * rule and recorded incomplete ("changed"), never as a wrong digest.
 *
 * The tree is walked from a directory opened before the command runs and checked to be
 * the one the mount plan judged (dev/ino, recorded): never its path again, which the
 * agent may reroute by then through a writable bind above it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/types.h>

#include "util/loop.h"

typedef struct {
        AjLoop *loop;
        char *path;
        int root_fd; /* the workspace's directory, opened before the command ran */
        dev_t dev;
        ino_t ino;
        bool overlay;
        pid_t pid;
        int pidfd;  /* -1: not running */
        int out_fd; /* the pipe the digest comes through */
        AjLoopIo *io;
        AjLoopTimer timer;
        uint64_t deadline_ns; /* monotonic: the digest's own limit, and a margin */
        json_t *result;       /* once it is known */
} AjSupWorkspaceStart;

#define AJ_SUP_WORKSPACE_START_INIT                                  \
        {                                                            \
                .root_fd = -1, .pid = -1, .pidfd = -1, .out_fd = -1, \
        }

/* Before the command may run: opens the directory `path` (the workspace, or an overlay's
 * lower layer; no symlink on the way) and checks it is the plan's (dev, ino): -ESTALE if
 * not. */
int aj_sup_workspace_start_open(AjSupWorkspaceStart *w, const char *path, dev_t dev, ino_t ino);
/* Starts the hasher on the directory opened, judging entries changed since `since_ns`
 * (aj_now_realtime_coarse_ns() before the command ran). */
int aj_sup_workspace_start(AjSupWorkspaceStart *w, AjLoop *loop, bool overlay, uint64_t since_ns);
bool aj_sup_workspace_start_started(const AjSupWorkspaceStart *w);
/* A signal read from the supervisor's signalfd that is not for this wait. */
typedef void (*AjSupSignalHandler)(const struct signalfd_siginfo *si, void *userdata);
/* SIGINT, SIGTERM, SIGHUP, SIGQUIT: agentjail is asked to stop. */
bool aj_sup_workspace_start_stops_wait(int signo);
/* The run is over: the record (a new reference, with "dev" and "ino"), waiting for the
 * hasher at most until its deadline, or until a signal read from `sigfd` (-1: none) asks
 * agentjail to stop (aj_sup_workspace_start_stops_wait()): then it is killed and the
 * record says "complete": false, "cut_at": "unfinished" ("time" at the deadline). Any
 * other signal read is given to `other` (NULL: dropped) and the wait goes on. */
json_t *aj_sup_workspace_start_finish(AjSupWorkspaceStart *w, int sigfd, AjSupSignalHandler other, void *userdata);
/* Kills and reaps a hasher still running, leaves the loop, frees. */
void aj_sup_workspace_start_done(AjSupWorkspaceStart *w);

/* The record from the hasher's output (pure): its JSON when it is a digest of `path`
 * (sha256, complete, entries, bytes), else {"path", "error"}; with "mode" ("overlay" and
 * "lower", or "in_place"). */
json_t *aj_sup_workspace_start_record(const char *out, size_t n, const char *path, bool overlay);
