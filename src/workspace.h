/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workspace mode "overlay", after the run: what the overlay's upper dir changes in the
 * real workspace (lower), and applying those changes once an operator approved them.
 *
 * The overlay was mounted by root in the initial user namespace with redirect_dir=off,
 * metacopy=off, index=off: whiteouts are character devices 0/0, an opaque directory
 * carries trusted.overlay.opaque="y", and there are no redirect or metacopy xattrs.
 * Reading trusted.* xattrs needs CAP_SYS_ADMIN (without it the kernel reports none, and
 * an opaque directory would look like a merged one): run these as root.
 *
 * Everything goes through fds (openat, fstatat, unlinkat...) from upper_fd and lower_fd,
 * never through path strings joined onto a root, and a symlink in lower is never
 * followed: neither tree can be escaped. The run must be over (the upper dir unmounted
 * from the jail) before either is called. Pure of logging: errors come back as negative
 * errno with a message naming the path in ret_error (util/error.h; may be NULL; set only on failure).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h> /* the S_IF* types the changes carry */
#include <sys/types.h>
#include <time.h>

#include "util/error.h"

/* Directory levels below the workspace root the walks go down (deeper: -ELOOP), and the
 * number of changes one diff may hold and the bytes of their paths together (more: -E2BIG:
 * the agent's names are held by the operator's process, and each may be PATH_MAX long,
 * 16 GB at the most changes). Paths are bounded by PATH_MAX (-ENAMETOOLONG). */
#define AJ_WS_MAX_DEPTH 256
#define AJ_WS_MAX_CHANGES (4u << 20)
#define AJ_WS_MAX_PATH_BYTES (64u << 20)

typedef enum {
        AJ_WS_ADDED,    /* in upper, not in lower */
        AJ_WS_MODIFIED, /* in upper and in lower (a copied-up file, changed metadata or content) */
        AJ_WS_DELETED,  /* a whiteout: the lower entry is gone */
        AJ_WS_REPLACED, /* an opaque directory: the lower entry (a directory's contents, or a
                         * non-directory the agent removed first) is replaced by it */
} AjWsChangeKind;

typedef struct {
        AjWsChangeKind kind;
        char *path;           /* relative to the workspace root, '/'-separated, no leading "./" */
        mode_t type;          /* S_IFREG, S_IFDIR, S_IFLNK... (of the upper entry; of the lower one for DELETED) */
        uint64_t size;        /* upper size for files (0 otherwise) */
        uint64_t allocated;   /* what the upper file holds on disk (st_blocks * 512; 0 otherwise): a
                             * commit writes no more than that (holes stay holes) */
        bool conflict;        /* the lower entry (or, for one the commit removes, anything below it)
                        * changed after `since_ns` (ctime or mtime), see aj_ws_diff */
        bool skipped;         /* an entry commit will not apply (device, fifo, socket): reason in `note` */
        const char *git_code; /* NULL, or why git on the host may run code from this change (a
                               * static string, see aj_ws_path_git_code): commit wants a
                               * decision on these */
        char *note;           /* NULL or a short explanation */
        char *target;         /* a symlink's target as the agent wrote it (NULL otherwise) */
        bool outside;         /* that target is absolute or climbs above the workspace's top by its
                               * ".." (judged by its text: symlinks it meets are not followed) */
        bool has_mode;        /* a file or directory commit applies: */
        mode_t mode;          /* the permission bits it gets (setuid/setgid dropped) */
        bool mode_changed;    /* a workspace entry of the same type had other bits: */
        mode_t mode_was;      /* those */
        size_t mount_at;      /* 0, or the length of the prefix of `path` that is a mount point in
                               * the workspace (the whole path: the entry is one). The agent saw
                               * the directory under the mount (overlayfs does not cross the host's
                               * mounts in its lower layer), not what is mounted there: commit
                               * refuses it (never writes across a mount) */
} AjWsChange;

/* Lists what the overlay's upper dir changes in lower, sorted by path, component by
 * component (a directory comes right before its contents). A directory that exists in
 * upper only because of copy-ups below it (exists in lower, same type, not opaque) is not
 * itself a change unless its mode differs; its children are listed. An added directory is
 * listed, and so is everything below it. A whiteout with nothing in lower to delete (in
 * an added or opaque directory) is not a change.
 *
 * A file or symlink over a lower directory is MODIFIED with a note ("replaces a
 * directory"): committing removes the directory. A non-opaque upper directory over a
 * lower non-directory cannot come from the overlay itself (it would have made the
 * directory opaque): lower changed during the run. It is listed as MODIFIED with a note,
 * and committing it fails.
 *
 * `since_ns` (CLOCK_REALTIME ns, 0 = don't check): a lower entry whose mtime or ctime is
 * later is marked conflict (someone changed the workspace during the run). For a change
 * that removes a lower directory (DELETED, REPLACED, a type change), every entry below it
 * is checked too.
 *
 * git_code is set as aj_ws_change_git_code() says and as the workspace's repository
 * tells (see there); the config that names paths is read from lower, and the operator's
 * system and global config as the environment says (workspace-gitconfig.c); one that
 * cannot be read (not missing) fails the diff. */
int aj_ws_diff(int upper_fd, int lower_fd, uint64_t since_ns, AjWsChange **ret, size_t *ret_n, AjError *ret_error);
void aj_ws_changes_free(AjWsChange *c, size_t n);

typedef struct {
        size_t added, modified, deleted, replaced, skipped;
        size_t odd_names;       /* applied, with a name the operator's verbs show escaped (util/format.h) */
        size_t outside;         /* applied, symlinks pointing outside the workspace (AjWsChange.outside) */
        size_t writable_by_all; /* applied, files and directories with S_IWOTH in AjWsChange.mode */
        bool apply_failed;      /* the failure was applying a change (the counts: those before it) */
        size_t git_code;        /* applied, git_code (AJ_WS_COMMIT_INCLUDE_GIT) */
        size_t git_excluded;    /* git_code, left out (AJ_WS_COMMIT_EXCLUDE_GIT) */
} AjWsStats;

/* Whether a change at `path` (relative, '/'-separated; type: S_IF* of the entry) touches
 * what git on the host reads commands from when the operator runs it in the workspace
 * (`git status` to review the agent's work is enough): the reason, or NULL. A ".git"
 * component (any case: a case-folding directory) that is not a directory (a gitdir
 * pointer), and anything below one but the object store, the refs and their logs, and
 * the state files git only reads as data (index, HEAD, packed-refs, info/exclude...):
 * config (core.fsmonitor, core.hooksPath, pagers, filters, includes), hooks, commondir,
 * modules/ and worktrees/ (other repositories' config and hooks), a rebase's todo list
 * (exec lines), files git does not know yet. The same for ".hg" and Mercurial (all but
 * its store, caches, dirstate and undo files: hgrc, requires, sharedpath), and ".jj" and
 * Jujutsu (all but its stores: repo/config.toml, repo/config-id, a repo file; in the stores
 * repo/store/git_target and a symlink, which say where jj runs git). Over-flags
 * rather than under-flags. aj_ws_diff() also marks such a file below a directory that holds a HEAD after the run
 * (a bare repository, a gitdir not named ".git", one whose commondir names objects and
 * refs elsewhere), and a change at, below or in place of a path the workspace
 * repository's own config or the operator's global config names (core.hooksPath, an
 * included file, a command's script): neither can a path tell. */
const char *aj_ws_path_git_code(const char *path, mode_t type);

/* After a run that wrote the workspace in place ("rw"), the files of its repositories that
 * aj_ws_path_git_code() marks and whose ctime says they changed at or after since_ns
 * (aj_workspace_changed_since). The workspace at ws_fd is walked for them, names only
 * breadth first (no symlink followed; at most AJ_WS_GIT_WALK_ENTRIES entries,
 * AJ_WS_GIT_WALK_DEPTH levels and AJ_WS_GIT_WALK_MS of listing), each ".git" or ".hg" (any case) and each directory holding a HEAD, at most
 * AJ_WS_GIT_MAX_REPOS: the workspace's own, nested repositories, submodules' work trees.
 * In each: a .git that is not a directory, when it changed; else its own files and
 * hooks/, modules/ (the submodules' gitdirs), worktrees/... but not objects, refs or logs;
 * in a directory holding a HEAD the files ws_gitdir_git_code() marks. Then the paths
 * outside them that the config of each .git's repository and the operator's own (as
 * they are now) name (core.hooksPath's directory, an include, a command's script:
 * ws_git_config_targets; a config it cannot read cuts the look). At most
 * AJ_WS_GIT_MAX_ENTRIES entries and AJ_WS_GIT_MAX_DEPTH levels in all of these. *ret: NULL
 * when nothing changed (or there is no repository), else {"paths": [the first
 * AJ_WS_GIT_SHOWN, in name order], "count", "cut": a bound stopped the look, "cut_at"
 * (only then): "workspace_entries", "workspace_depth", "workspace_time", "repositories", "entries",
 * "depth", "path" (longer than PATH_MAX) or "config", with "config_error": why}. */
#define AJ_WS_GIT_MAX_ENTRIES 4096
#define AJ_WS_GIT_MAX_DEPTH 16
#define AJ_WS_GIT_SHOWN 16
#define AJ_WS_GIT_WALK_ENTRIES 1000000
#define AJ_WS_GIT_WALK_DEPTH 64
#define AJ_WS_GIT_WALK_MS 2000
#define AJ_WS_GIT_MAX_REPOS 256
typedef struct {
        size_t walk_entries; /* 0: AJ_WS_GIT_WALK_ENTRIES */
        unsigned walk_depth; /* 0: AJ_WS_GIT_WALK_DEPTH */
        uint64_t walk_ms;    /* 0: AJ_WS_GIT_WALK_MS */
} AjWsGitLimits;
/* lim NULL: the defaults. */
int aj_ws_git_changed(int ws_fd, uint64_t since_ns, const AjWsGitLimits *lim, json_t **ret);
/* aj_ws_path_git_code() for a change of `kind`: also a .git directory deleted or replaced
 * by an opaque one, which takes the workspace's own config and hooks with it. */
const char *aj_ws_change_git_code(const char *path, AjWsChangeKind kind, mode_t type);

enum {
        AJ_WS_COMMIT_FORCE = 1 << 0,       /* apply over conflicts */
        AJ_WS_COMMIT_INCLUDE_GIT = 1 << 1, /* apply git_code changes too */
        AJ_WS_COMMIT_EXCLUDE_GIT = 1 << 2, /* leave git_code changes out (counted in git_excluded) */
};

/* Applies the changes aj_ws_diff() lists to lower. With conflicts and !force: -EBUSY and
 * nothing is changed. Before changing anything, every lower directory an entry goes into
 * is resolved (-ELOOP/-ENOTDIR naming it if a symlink or a non-directory is in the way).
 *
 * Created entries get the owner and group of lower's root directory; a modified entry of
 * the same type keeps the owner and group its lower entry had. Modes are kept but
 * setuid/setgid (and sticky on files) are cleared; symlinks are created as symlinks
 * (never followed); devices/fifos/sockets are skipped; xattrs and ACLs are not copied.
 * Regular files keep their mtime; they are written to a temporary name in the same
 * directory (".aj-ws-" and 16 hex digits, removed on failure) then renamed over the target
 * (a reader never sees half a file); symlinks too. Deletions
 * remove the lower entry (recursively for directories, never across a mount point: -EXDEV);
 * a REPLACED directory has its lower contents removed first.
 *
 * Never follows a symlink in lower when resolving a path (openat2 with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS, or O_NOFOLLOW component by component): a lower path whose parent is
 * a symlink is an error for that entry, not a write elsewhere. Changes are applied in path
 * order and the first error stops the commit: what came before it stays applied. Run
 * again, those entries show as conflicts (the first commit changed them after since_ns);
 * force applies them again, which is harmless. Counts in *ret_stats (may be NULL), also
 * when a change failed to apply: then of those applied before it, with apply_failed set
 * (its errno may be any, -EPERM too); untouched on other failures.
 *
 * flags: AJ_WS_COMMIT_*. Without FORCE, conflicts give -EBUSY; with git_code changes and
 * neither INCLUDE_GIT nor EXCLUDE_GIT, -EPERM naming the first: nothing is applied
 * either way. Nor when lower's filesystem has not the room the changes take, free for
 * users (f_bavail, f_favail): -ENOSPC saying how much (each regular file's allocated
 * bytes once per name, hardlinks in upper included; a block and an inode per other entry
 * made; deletions not counted on). Nor when a lower directory a change removes is or
 * holds a mount point (-EXDEV naming the change), nor when a change is at or below a mount
 * point in the workspace (mount_at: -EXDEV naming it); no path is resolved across one. */
int aj_ws_commit(int upper_fd, int lower_fd, uint64_t since_ns, unsigned flags, AjWsStats *ret_stats,
                 AjError *ret_error);

/* The regular file at `path` (relative) under root_fd, opened read-only without following
 * any symlink on the way and without leaving root_fd: -ELOOP/-EXDEV/-ENOENT, or -EINVAL
 * when it is not a regular file. For showing a change's contents. */
int aj_ws_open_file(int root_fd, const char *path);

/* JSON for `agentjail diff --json`:
 * [{"path", "change": "added|modified|deleted|replaced", "type": "file|dir|symlink|fifo|
 *   socket|char-device|block-device", "size", "conflict", "skipped"? (only when true),
 *   "note"? (only when set), "git_code"? (the reason, only when set), "target"? (a symlink's,
 *   escaped as "path" is, with "target_exact": false and "target_hex" when not UTF-8),
 *   "outside"? (only when true), "mode"? (of a file or directory applied, octal text:
 *   "0644"), "mode_was"? (the workspace entry's, when it differs), "writable_by_all"? (only
 *   when true: others may write it), "mount_point"? (the prefix of "path" that is a mount point,
 *   when mount_at, escaped as "path" is)}]. NULL on allocation failure. */
json_t *aj_ws_changes_json(const AjWsChange *c, size_t n);
/* One of them: an element of that array. NULL on allocation failure. */
json_t *aj_ws_change_json(const AjWsChange *c);

/* "added"... and "file"... as in the JSON, for human-readable listings. */
const char *aj_ws_kind_name(AjWsChangeKind kind);
const char *aj_ws_type_name(mode_t type);

/* ---- the workspace when a run starts (src/workspace-digest.c) ------------------------ */

typedef struct {
        uint64_t max_entries; /* entries hashed, default 200000 */
        uint64_t max_bytes;   /* file contents read, default 1 GiB */
        uint64_t max_ms;      /* time spent, default 10 s */
        /* The run's start (aj_now_realtime_coarse_ns()), for a digest taken while it runs:
         * an entry changed since stops the digest (cut_at "changed"). 0: the tree now. */
        uint64_t since_ns;
} AjWorkspaceDigestLimits;

/* The ctime rule: whether an entry with this ctime may have changed at or after since_ns
 * (not strictly before it, less the filesystem's granularity, judged from the stamp
 * itself: 1 ms for a sub-millisecond stamp, else 2 s). since_ns 0: never. */
bool aj_workspace_changed_since(const struct timespec *ctime, uint64_t since_ns);

void aj_workspace_digest_limits_default(AjWorkspaceDigestLimits *ret);
/* The tree at `path` (a directory, not followed if a symlink) hashed in name order: each
 * entry's relative path, type, permission bits, size and contents (a symlink: its target);
 * not owners or times. {"path", "sha256", "entries", "bytes", "complete"} and, past a
 * limit (lim NULL: the defaults), "cut_at": "entries" (also when the names listed and
 * not yet walked, across the directories open, would pass max_entries), "bytes", "time"
 * or "depth" (the
 * digest then covers what was hashed), or "changed" with "changed": the entry found
 * changed since lim->since_ns (printable, bounded; "." the root). */
int aj_workspace_digest(const char *path, const AjWorkspaceDigestLimits *lim, json_t **ret);
/* The same, of the directory open at `fd` (taken; O_RDONLY), named `path` in the record.
 * With lim->since_ns (the ctime rule on), a tree on a filesystem the rule cannot trust
 * (aj_workspace_fs_ctime_rule()), at the root or below it, stops at once: "cut_at":
 * "unsupported_fs" and "fs": its type ("tmpfs", "nfs"... or "0x..."). */
int aj_workspace_digest_fd(int fd, const char *path, const AjWorkspaceDigestLimits *lim, json_t **ret);
/* Whether the local kernel stamps ctime on every change made on a filesystem of this
 * statfs type, a write through a shared mapping included (ext4, xfs, btrfs, f2fs); its
 * name in `name` (or "0x<type>"). */
bool aj_workspace_fs_ctime_rule(unsigned long f_type, char *name, size_t size);
