/* SPDX-License-Identifier: Apache-2.0 */
/* Small file and fd helpers. All fds are O_CLOEXEC. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Write all of buf, retrying on EINTR and short writes. */
int aj_write_all(int fd, const void *buf, size_t len);
/* Bytes read until len or the end of the input (fewer only at the end), or -errno. */
ssize_t aj_read_full(int fd, void *buf, size_t len);
/* Write a string to an existing file (e.g. a cgroup or /proc file), no O_CREAT. */
int aj_write_file(const char *path, const char *text);
int aj_write_file_at(int dirfd, const char *path, const char *text);
/* Create or replace a file atomically (temp file + rename), mode as given. */
int aj_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode);
/* Read a whole (small) file; NUL-terminated; max_size bounds it (-EFBIG past that). */
int aj_read_file(const char *path, size_t max_size, char **ret, size_t *ret_len);
int aj_read_file_at(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_len);
/* The same from an open fd, from its current offset to the end. */
int aj_read_fd(int fd, size_t max_size, char **ret, size_t *ret_len);
/*
 * Opens a file that must be a regular file (a run's records, which whoever can write the
 * run directory may have replaced): `flags` (an access mode, O_CREAT with `mode`, ...) plus
 * O_NOFOLLOW (a symlink: -ELOOP), O_NONBLOCK (a FIFO is opened at once, never waited on
 * for a writer or a reader, then refused), O_NOCTTY and O_CLOEXEC; then fstat: a directory
 * is -EISDIR, anything else that is not a regular file -EBADFD (aj_file_error_text), also
 * what open(2) refuses with ENXIO (a FIFO to write to without a reader, a socket). The fd
 * keeps O_NONBLOCK, which a regular file ignores.
 */
int aj_open_regular_at(int dirfd, const char *path, int flags, mode_t mode);
/* Its check of an open fd: 0 for a regular file (its stat in *ret_st), else -EISDIR, -EBADFD. */
int aj_fd_regular(int fd, struct stat *ret_st);
/* aj_read_file of a file opened so. */
int aj_read_regular_file(const char *path, size_t max_size, char **ret, size_t *ret_len);
/* strerror(-r), except "not a regular file" for aj_open_regular_at's -EBADFD. */
const char *aj_file_error_text(int r);
/* A regular file's content into out_fd (empty, at the same offsets), extent by extent: a hole
 * stays a hole (SEEK_DATA/SEEK_HOLE; where the file system cannot tell, chunks of zeros are
 * not written), then out_fd is truncated to the size, so no more than the source's allocated
 * data is written. Up to the size the source had when called. Bytes written in *ret_written
 * (may be NULL). */
int aj_copy_data(int in_fd, int out_fd, uint64_t *ret_written);
/* Let go of a flock() for every process sharing the open file (a fork's copy too, which may
 * keep it a moment longer), then close fd; with `sharer_keeps`, a process sharing the open file
 * goes on holding the lock (a watchdog still at work for the run): fd is only closed, and the
 * lock lasts until that process's copy is gone. Accepts -1. */
void aj_lock_release(int fd, bool sharer_keeps);
/* mkdir -p with mode for each created component. */
int aj_mkdir_p(const char *path, mode_t mode);
/* Remove a directory tree (does not cross mount points: -EXDEV; refuses "/"; symlinks are
 * removed, never followed). Each directory it enters or changes is pinned first (an O_PATH
 * fd checked to be what its lstat saw, on the top's mount: else -ESTALE or -EXDEV) and used
 * only through that fd; a directory its owner (not root) took their own rights from gets
 * them back, so that it can be emptied. Holds at most AJ_RM_RF_OPEN_LEVELS directory fds
 * whatever the depth: a directory deeper than that is first renamed into the top one
 * (".aj-rm-N-T"). Carries on past what it cannot remove and returns the first error. */
#define AJ_RM_RF_OPEN_LEVELS 16
int aj_rm_rf(const char *path);
/* The same for `path` relative to the directory open at dir_fd: `aj_rm_rf_at(fd, "name")`
 * removes only what that directory holds under that name, wherever its path leads now. A
 * top directory is the one its lstat saw throughout: pinned, emptied through the pin, and
 * its name removed only while it still names that directory (-ESTALE, and what took the
 * name left as it is, when a directory or symlink was put in its place meanwhile). */
int aj_rm_rf_at(int dir_fd, const char *path);
/* The same for the directory open at dir_fd (pinned when it was made: its path is never
 * looked up), whose name is `name` in the directory open at parent_fd: emptied through
 * dir_fd, then its name removed only while it is still that directory (-ESTALE, and
 * nothing in its place touched, when another file, directory or symlink took it). */
int aj_rm_rf_pinned(int parent_fd, const char *name, int dir_fd);
/* What a tree takes on disk (allocated blocks, as du counts them; a file with several
 * links once, by inode, up to 4096 such inodes, then each link its share), never following
 * a symlink nor crossing into another file system. Directories deeper than
 * AJ_TREE_USAGE_LEVELS (one fd held per level) are not entered. 0 with *ret_bytes exact, 1
 * with *ret_bytes not exact (something was not counted: too deep, unreadable, a mount; or
 * linked files past the set), or -errno when `path` itself cannot be read. */
#define AJ_TREE_USAGE_LEVELS 64
int aj_tree_usage(const char *path, uint64_t *ret_bytes);
int aj_fd_set_nonblock(int fd, bool nonblock);
/* One message on a SOCK_SEQPACKET or SOCK_DGRAM socket with one fd attached (SCM_RIGHTS;
 * none when fd < 0), retried on EINTR, no SIGPIPE: 0 or -errno. */
int aj_send_with_fd(int sock, const void *buf, size_t len, int fd);
/* One such message: its bytes (0 at the peer's end), or -errno. *ret_fd gets the fd it
 * carried (O_CLOEXEC), or -1; one that was cut short (more bytes or fds than asked for)
 * gives -EBADMSG, with any fd it carried closed. */
ssize_t aj_recv_with_fd(int sock, void *buf, size_t len, int *ret_fd);
/* Close every fd >= from except those listed (used in the jail child). */
int aj_close_all_except(int from, const int *keep, size_t n_keep);
