/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the parts of the workspace module share (workspace.c: names, walking, JSON;
 * workspace-diff.c; workspace-commit.c); nothing else includes this. */

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "util/macros.h"
#include "workspace.h"

#define OPAQUE_XATTR "trusted.overlay.opaque"

/* The root is "" in paths and "." in messages. */
static inline const char *shown(const char *path) { return *path ? path : "."; }

static inline bool is_whiteout(const struct stat *st) { return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0); }

static inline bool changed_since(const struct stat *st, uint64_t since_ns)
{
        uint64_t m = (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec;
        uint64_t c = (uint64_t)st->st_ctim.tv_sec * 1000000000ull + (uint64_t)st->st_ctim.tv_nsec;
        return since_ns > 0 && (m > since_ns || c > since_ns);
}

/* setuid/setgid never reach the workspace, nor sticky on a file. */
static inline mode_t sanitized_mode(mode_t mode) { return mode & (S_ISDIR(mode) ? 01777 : 0777); }

typedef struct {
        AjWsChange *v;
        size_t n;
} Changes;

static inline void changes_done(Changes *c) { aj_ws_changes_free(c->v, c->n); }

static inline void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

/* A directory stream of its own (own offset) on dir_fd's directory. */
int ws_open_dir_stream(int dir_fd, const char *name, DIR **ret);
/* Walks dirent names other than "." and "..": 1 with *ret_name set, 0 at the end. */
int ws_next_name(DIR *d, const char **ret_name);
/* Whether a symlink at `path` (relative to the workspace's top) with this target points
 * outside the workspace by its text: absolute, or a ".." above the top. */
bool ws_symlink_outside(const char *path, const char *target);
/* "a file", "a directory", ... for messages. */
const char *ws_type_article(mode_t type);
/* qsort order of changes: by path, a directory directly followed by its contents. */
int ws_change_compare(const void *a, const void *b);

/* Whether `rest` (relative, '/'-separated) below a directory git takes for a gitdir
 * without its being named ".git" (it holds a HEAD: a bare repository, a
 * --separate-git-dir) is one git reads commands or config from: its config, hooks,
 * commondir... judged by aj_ws_path_git_code() as if below a .git. The reason, or NULL. */
const char *ws_gitdir_git_code(const char *rest, mode_t type);
/* Whether the directory `path` (workspace-relative), though not one of git's own files
 * (aj_ws_path_git_code()), holds some below it: a .jj's repo/store, which holds git_target.
 * The end-of-run walk goes into it. */
bool ws_dir_holds_git_code(const char *path);

/* The paths (relative, "" the root) in the workspace that the config of the repositories
 * whose work trees start at `tops` (relative; "" the root, or when the root holds no .git
 * the repository on the host it is in), as it is in lower, and the operator's system and
 * global config read before it, have git run code from or read config from:
 * core.hooksPath, include.path and includeIf.*.path (and what the included files name),
 * paths in commands (core.fsmonitor = tools/fsmonitor.sh), what hooks that are symlinks
 * point to. workspace-gitconfig.c */
int ws_git_config_targets(int lower_fd, const char *const *tops, size_t n_tops, char ***ret, size_t *ret_n,
                          AjError *ret_error);
