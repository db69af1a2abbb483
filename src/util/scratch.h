/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A scratch directory of agentjail's own (`agentjail eval`'s root, `agentjail replay`'s):
 * made by mkdirat() in a parent held first (a fresh random name, as mkdtemp() gives), and
 * then made into, written, read and removed only through these fds, never by its path: a
 * symlink or another directory put in its place, or in a subdirectory's, is not followed.
 * Its path is for messages and for what must name it (a run's cwd, the place check that
 * keeps the agent out of it: src/sensitive.h AJ_PLACE_EVAL_SCRATCH).
 */
#pragma once

#include <sys/types.h>

typedef struct {
        char *path;    /* its real path, as the kernel names it */
        char name[64]; /* its name in its parent */
        int fd;        /* the directory, O_RDONLY */
        int parent_fd; /* its parent, O_PATH */
} AjScratch;

#define AJ_SCRATCH_INIT                   \
        {                                 \
                .fd = -1, .parent_fd = -1 \
        }

/* Makes PREFIX.XXXXXX (random, mode 0700) in the directory PARENT, held first (mkdirat()
 * in it: PARENT's path is looked up once), and holds it; -errno (nothing left behind). */
int aj_scratch_make(const char *parent, const char *prefix, AjScratch *ret);
/* Makes the directory `name` (one component) in the directory open at at_fd and opens it
 * there (O_RDONLY) without following a symlink: *ret_fd; -errno. */
int aj_scratch_mkdir(int at_fd, const char *name, mode_t mode, int *ret_fd);
/* Removes it all through its fds (aj_rm_rf_pinned); -errno (the first). */
int aj_scratch_remove(AjScratch *s);
/* Closes the fds and frees the path (the directory stays). */
void aj_scratch_done(AjScratch *s);
