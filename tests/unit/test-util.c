/* SPDX-License-Identifier: Apache-2.0 */
/* The small shared helpers of src/util/. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/json-fast.h"
#include "util/json-flat.h"
#include "util/json-scan.h"
#include "util/format.h"
#include "util/open-under.h"
#include "util/parse.h"
#include "util/path.h"
#include "util/ratelimit.h"
#include "util/scratch.h"
#include "util/shared.h"
#include "util/strv.h"

/* aj_cgroup_list_ids reads each run's id once per hierarchy: sorted and made unique in
 * O(n log n) (it was one linear search per name), then looked up by binary search. */
Test(strv, sort_unique_and_sorted_contains)
{
        char **v = NULL;
        const char *in[] = { "b2", "a1", "c3", "a1", "b2", "a1", "d4" };
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
                cr_assert_eq(aj_strv_push(&v, in[i]), 0);
        cr_assert_eq(aj_strv_sort_unique(v), 4);
        const char *want[] = { "a1", "b2", "c3", "d4", NULL };
        for (size_t i = 0; i < 5; i++)
                cr_assert(want[i] ? v[i] && strcmp(v[i], want[i]) == 0 : !v[i], "at %zu: %s", i, v[i] ? v[i] : "NULL");
        for (size_t i = 0; i < 4; i++)
                cr_assert(aj_strv_sorted_contains(v, 4, want[i]), "%s", want[i]);
        cr_assert_not(aj_strv_sorted_contains(v, 4, "a"));
        cr_assert_not(aj_strv_sorted_contains(v, 4, "e5"));
        cr_assert_not(aj_strv_sorted_contains(NULL, 0, "a1"));
        aj_strv_free(v);
        char *empty[] = { NULL };
        cr_assert_eq(aj_strv_sort_unique(empty), 0);
        cr_assert_eq(aj_strv_sort_unique(NULL), 0);
}

/* eval's snapshot of the runs there before and aj_cgroup_list_ids append thousands of names:
 * one append keeps the length and the slots, doubled as they fill (amortized O(1)); each
 * grew its own copy of that by hand. A strv all along, also when an append fails. */
Test(strv, append_keeps_length_and_doubles)
{
        char **v = NULL;
        size_t n = 0, cap = 0, grown = 0;
        char name[16];
        for (size_t i = 0; i < 10000; i++) {
                size_t was = cap;
                snprintf(name, sizeof(name), "s%zu", i);
                cr_assert_eq(aj_strv_append(&v, &n, &cap, strdup(name)), 0);
                cr_assert_eq(n, i + 1);
                cr_assert_null(v[n]);
                cr_assert_geq(cap, n + 1);
                if (cap != was) {
                        grown++;
                        cr_assert(was == 0 || cap >= 2 * was, "grew from %zu to %zu slots", was, cap);
                }
        }
        cr_assert_leq(grown, 12, "%zu reallocations for 10000 appends", grown);
        cr_assert_eq(aj_strv_length(v), 10000);
        cr_assert_str_eq(v[0], "s0");
        cr_assert_str_eq(v[9999], "s9999");
        cr_assert_eq(aj_strv_append(&v, &n, &cap, NULL), -ENOMEM, "a failed strdup is -ENOMEM");
        cr_assert_eq(n, 10000);
        cr_assert_null(v[n]);
        aj_strv_free(v);

        /* aj_strv_push, on a strv whose slots it does not know, goes through it too. */
        char **w = NULL;
        for (size_t i = 0; i < 20; i++) {
                snprintf(name, sizeof(name), "w%zu", i);
                cr_assert_eq(aj_strv_push(&w, name), 0);
        }
        cr_assert_eq(aj_strv_length(w), 20);
        cr_assert_str_eq(w[19], "w19");
        cr_assert(aj_strv_contains(w, "w7"));
        aj_strv_free(w);
}

/* Every mkdir of this test binary, counted (src/util/fd.c calls it from the same
 * executable, so this definition is the one it reaches). */
static int mkdir_calls;
int mkdir(const char *path, mode_t mode)
{
        mkdir_calls++;
        return (int)syscall(SYS_mkdirat, AT_FDCWD, path, mode);
}

/* aj_mkdir_p on a path that is there (every run's state, runtime and cache dirs after the
 * first) makes the one mkdir, not one per level from the root; what is missing, at any
 * depth, is still made, and a file in the way is still an error. */
Test(fd, mkdir_p_tries_the_path_first)
{
        char root[] = "/tmp/aj-mkdirp-XXXXXX";
        cr_assert_not_null(mkdtemp(root));
        char deep[PATH_MAX], file[PATH_MAX], under_file[PATH_MAX];
        snprintf(deep, sizeof(deep), "%s/a/b/c/d", root);
        snprintf(file, sizeof(file), "%s/a/f", root);
        snprintf(under_file, sizeof(under_file), "%s/a/f/x", root);

        cr_assert_eq(aj_mkdir_p(deep, 0700), 0);
        struct stat st;
        cr_assert_eq(stat(deep, &st), 0);
        cr_assert(S_ISDIR(st.st_mode));

        mkdir_calls = 0;
        cr_assert_eq(aj_mkdir_p(deep, 0700), 0);
        cr_assert_eq(mkdir_calls, 1, "an existing path took %d mkdir calls", mkdir_calls);

        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
        cr_assert_eq(aj_mkdir_p(under_file, 0700), -ENOTDIR);

        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        cr_assert_eq(system(cmd), 0);
}

/* Every unlinkat of this test binary; with `swap_after` set, the unlink of that name is
 * followed by what an agent sharing the parent could do then: the top directory being
 * removed (`swap_top` in swap_parent) renamed away and another, empty one made in its place. */
static const char *swap_after, *swap_top;
static int swap_parent = -1;
int unlinkat(int dir_fd, const char *path, int flags)
{
        int r = (int)syscall(SYS_unlinkat, dir_fd, path, flags);
        if (swap_after && strcmp(path, swap_after) == 0) {
                swap_after = NULL;
                int e = errno;
                cr_assert_eq(renameat(swap_parent, swap_top, swap_parent, "moved-away"), 0);
                cr_assert_eq(mkdirat(swap_parent, swap_top, 0755), 0);
                errno = e;
        }
        return r;
}

/* The top directory aj_rm_rf_at emptied was put away and another one given its name before
 * its rmdir: the other one is not the directory it was asked to remove (its name in the
 * parent is compared with the pinned directory): left as it is, and -ESTALE. Also through
 * aj_rm_rf_pinned (eval's and replay's scratch dirs). */
Test(fd, rm_rf_removes_the_top_only_while_it_is_that_directory)
{
        char root[] = "/tmp/aj-rmtop-XXXXXX";
        cr_assert_not_null(mkdtemp(root));
        int parent = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(parent, 0);
        for (int pinned = 0; pinned < 2; pinned++) {
                cr_assert_eq(mkdirat(parent, "top", 0755), 0);
                int f = openat(parent, "top/a", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                cr_assert_geq(f, 0);
                close(f);
                int top = openat(parent, "top", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                cr_assert_geq(top, 0);
                swap_parent = parent;
                swap_top = "top";
                swap_after = "a";
                int r = pinned ? aj_rm_rf_pinned(parent, "top", top) : aj_rm_rf_at(parent, "top");
                cr_assert_null(swap_after, "the walk never removed 'a'");
                cr_assert_eq(r, -ESTALE, "%s: %d", pinned ? "pinned" : "at", r);
                struct stat st;
                cr_assert_eq(fstatat(parent, "top", &st, AT_SYMLINK_NOFOLLOW), 0,
                             "the directory put in its place was removed");
                cr_assert_eq(unlinkat(parent, "top", AT_REMOVEDIR), 0);
                /* The one made, emptied, under the name it was moved to. */
                cr_assert_eq(unlinkat(parent, "moved-away", AT_REMOVEDIR), 0);
                close(top);
        }
        close(parent);
        cr_assert_eq(rmdir(root), 0);
}

/* What has aj_write_file_atomic's temporary name (a symlink someone put there, a FIFO, a
 * writer of this pid that died before its rename) is replaced, never written through or
 * waited on; and the file is written with nothing there too (its first open, no unlink). */
Test(fd, write_file_atomic_replaces_what_has_its_temporary_name, .timeout = 10)
{
        char root[] = "/tmp/aj-atomic-XXXXXX", path[256], tmp[512], victim[256];
        cr_assert_not_null(mkdtemp(root));
        snprintf(path, sizeof(path), "%s/run.json", root);
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
        snprintf(victim, sizeof(victim), "%s/victim", root);
        cr_assert_eq(aj_write_file_atomic(path, "one", 3, 0640), 0);
        cr_assert_eq(symlink(victim, tmp), 0);
        cr_assert_eq(aj_write_file_atomic(path, "two", 3, 0640), 0);
        struct stat st;
        cr_assert_eq(lstat(victim, &st), -1, "written through the symlink");
        cr_assert_eq(mkfifo(tmp, 0600), 0);
        cr_assert_eq(aj_write_file_atomic(path, "three", 5, 0640), 0);
        char *text = NULL;
        cr_assert_eq(aj_read_file(path, 64, &text, NULL), 0);
        cr_assert_str_eq(text, "three");
        free(text);
        cr_assert_eq(lstat(tmp, &st), -1, "the temporary name is left");
        cr_assert_eq(unlink(path), 0);
        cr_assert_eq(rmdir(root), 0);
}

/* A scratch root (eval's, replay's) is made in its held parent, 0700, named PREFIX.XXXXXX,
 * and used through its fd: its name swapped for a symlink to another directory, what is made
 * in it lands in the root made, nothing where the symlink points, and its removal empties the
 * root and leaves the symlink (-ESTALE). */
Test(fd, scratch_is_used_through_its_fds)
{
        char root[] = "/tmp/aj-scratch-XXXXXX", victim[64], moved[64], name[128];
        cr_assert_not_null(mkdtemp(root));
        snprintf(victim, sizeof(victim), "%s/victim", root);
        snprintf(moved, sizeof(moved), "%s/moved", root);
        cr_assert_eq(mkdir(victim, 0755), 0);
        AjScratch sc = AJ_SCRATCH_INIT;
        cr_assert_eq(aj_scratch_make(root, "agentjail-test", &sc), 0);
        cr_assert_eq(strncmp(sc.name, "agentjail-test.", 15), 0, "%s", sc.name);
        cr_assert_eq(strlen(sc.name), 21, "%s", sc.name);
        snprintf(name, sizeof(name), "%s/%s", root, sc.name);
        cr_assert_str_eq(sc.path, name);
        struct stat st;
        cr_assert_eq(fstat(sc.fd, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0700);
        cr_assert_eq(rename(name, moved), 0);
        cr_assert_eq(symlink(victim, name), 0);
        int sub = -1, ws = -1;
        cr_assert_eq(aj_scratch_mkdir(sc.fd, "case-1", 0700, &sub), 0);
        cr_assert_eq(aj_scratch_mkdir(sub, "workspace", 0755, &ws), 0);
        close(ws);
        close(sub);
        cr_assert_neq(fstatat(AT_FDCWD, victim, &st, 0), -1);
        char probe[256];
        snprintf(probe, sizeof(probe), "%s/case-1", victim);
        cr_assert_eq(access(probe, F_OK), -1, "made where the symlink points");
        snprintf(probe, sizeof(probe), "%s/case-1/workspace", moved);
        cr_assert_eq(access(probe, F_OK), 0, "not made in the root made");
        cr_assert_eq(aj_scratch_remove(&sc), -ESTALE);
        aj_scratch_done(&sc);
        cr_assert_eq(unlink(name), 0, "the symlink in its name left as it is");
        cr_assert_eq(rmdir(moved), 0, "the root made, emptied");
        cr_assert_eq(rmdir(victim), 0);
        cr_assert_eq(rmdir(root), 0);
}

/* Every reallocarray of this program (the library's strv.c among them) goes through here,
 * counted while `count_reallocs` is set. */
static bool count_reallocs;
static size_t reallocs;

void *reallocarray(void *p, size_t n, size_t size)
{
        if (size && n > SIZE_MAX / size) {
                errno = ENOMEM;
                return NULL;
        }
        if (count_reallocs)
                reallocs++;
        return realloc(p, n * size);
}

/* Lines in and out, as eval hands a case's profile chain and its inputs to each run: a final
 * '\n' ends the last line, an empty line between two is one, a line with a '\n' cannot be one. */
Test(strv, lines_split_and_join)
{
        char **v = NULL;
        cr_assert_eq(aj_strv_split_lines("/a/p.json\n\n/b\n", &v), 0);
        cr_assert_eq(aj_strv_length(v), 3);
        cr_assert_str_eq(v[0], "/a/p.json");
        cr_assert_str_eq(v[1], "");
        cr_assert_str_eq(v[2], "/b");
        char *s = NULL;
        cr_assert_eq(aj_strv_join_lines(v, &s), 0);
        cr_assert_str_eq(s, "/a/p.json\n\n/b\n");
        free(s);
        aj_strv_free(v);
        cr_assert_eq(aj_strv_split_lines("/no/newline", &v), 0);
        cr_assert_eq(aj_strv_length(v), 1);
        cr_assert_str_eq(v[0], "/no/newline");
        aj_strv_free(v);
        v = (char **)1;
        cr_assert_eq(aj_strv_split_lines("", &v), 0);
        cr_assert_null(v);
        cr_assert_eq(aj_strv_split_lines(NULL, &v), 0);
        cr_assert_null(v);
        cr_assert_eq(aj_strv_join_lines(NULL, &s), 0);
        cr_assert_str_eq(s, "");
        free(s);
        cr_assert_eq(aj_strv_join_lines((char *[]){ "a", "b\nc", NULL }, &s), -EINVAL);
}

/* aj_strv_consume (and aj_strv_push through it), on a strv whose slots it is not told,
 * reallocated it at every call, to twice its length: 10,000 pushes took 10,000. Now the
 * slots it doubled into are found again: as many as aj_strv_append's. */
Test(strv, consume_reallocates_only_when_full)
{
        char **v = aj_strv_copy((char *[]){ "a", "b", "c", NULL }); /* made elsewhere: 4 slots */
        cr_assert_not_null(v);
        char name[16];
        count_reallocs = true;
        reallocs = 0;
        for (size_t i = 0; i < 10000; i++) {
                snprintf(name, sizeof(name), "s%zu", i);
                cr_assert_eq(i % 2 ? aj_strv_push(&v, name) : aj_strv_consume(&v, strdup(name)), 0);
        }
        count_reallocs = false;
        cr_assert_leq(reallocs, 14, "%zu reallocations for 10000 appends", reallocs);
        cr_assert_eq(aj_strv_length(v), 10003);
        cr_assert_str_eq(v[2], "c");
        cr_assert_str_eq(v[10002], "s9999");
        cr_assert_eq(aj_strv_consume(&v, NULL), -ENOMEM, "a failed strdup is -ENOMEM");
        cr_assert_eq(aj_strv_length(v), 10003);
        aj_strv_free(v);
}

Test(path, join)
{
        static const struct {
                const char *a, *b, *want;
        } cases[] = {
                { "/x", "y", "/x/y" },        { "/x/", "y", "/x/y" },      { "/x", "/y", "/x/y" },
                { "/x/", "//y/z", "/x/y/z" }, { "/x", "", "/x" },          { "", "y", "/y" },
                { "/", "y", "/y" },           { "/x", "../y", "/x/../y" }, { "rel", "a/b", "rel/a/b" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *got = aj_path_join(cases[i].a, cases[i].b);
                cr_assert_not_null(got);
                cr_expect_str_eq(got, cases[i].want, "'%s' + '%s'", cases[i].a, cases[i].b);
                free(got);
        }
}

Test(format, asprintf)
{
        char *s = (char *)"untouched";
        cr_assert_eq(aj_asprintf(&s, "%s-%d", "a", 7), 0);
        cr_expect_str_eq(s, "a-7");
        free(s);
}

Test(error, set_prefix_text)
{
        AjError e = {};
        cr_expect_str_eq(aj_error_text(&e, 0), "", "no error, no words");
        cr_expect_eq(aj_error_set(&e, -ENOENT, "profile \"%s\" not found", "x"), -ENOENT);
        cr_expect_eq(e.err, -ENOENT);
        cr_expect_str_eq(aj_error_text(&e, 0), "profile \"x\" not found");
        /* Layers on the way up add their context in front; the errno stays. */
        cr_expect_eq(aj_error_prefix(&e, "Cannot load the profile of run %d", 7), -ENOENT);
        cr_expect_eq(aj_error_prefix(&e, "run"), -ENOENT);
        cr_expect_str_eq(aj_error_text(&e, 0), "run: Cannot load the profile of run 7: profile \"x\" not found");
        /* Setting again replaces. */
        cr_expect_eq(aj_error_set(&e, -EINVAL, "other"), -EINVAL);
        cr_expect_str_eq(aj_error_text(&e, 0), "other");
        aj_error_clear(&e);
        cr_expect_eq(e.err, 0);
        cr_expect_null(e.message);
        aj_error_clear(&e); /* twice is fine */
        aj_error_clear(NULL);
}

Test(error, errno_only_and_null)
{
        AjError e = { .err = -EACCES };
        cr_expect_str_eq(aj_error_text(&e, 0), "Permission denied", "no message: strerror");
        cr_expect_eq(aj_error_prefix(&e, "Cannot open '%s'", "/x"), -EACCES);
        cr_expect_str_eq(aj_error_text(&e, 0), "Cannot open '/x': Permission denied");
        aj_error_clear(&e);
        /* A caller that wants only the errno passes NULL. */
        cr_expect_eq(aj_error_set(NULL, -EPERM, "unused"), -EPERM);
        cr_expect_str_eq(aj_error_text(NULL, 0), "");
        cr_expect_str_eq(aj_error_text(NULL, -ENOENT), "No such file or directory");
        /* A failure that came back bare is printed with its own errno. */
        cr_expect_str_eq(aj_error_text(&e, -ENOMEM), "Cannot allocate memory");
        errno = ENOTDIR;
        cr_expect_eq(aj_error_set(&e, -ENOTDIR, "stat: %m"), -ENOTDIR);
        cr_expect_str_eq(e.message, "stat: Not a directory");
        aj_error_clear(&e);
        cr_expect_eq(e.err, 0);
        cr_expect_null(e.message);
}

/* A run's records: a FIFO put in place of one held every reader in open(2) for ever. Each
 * kind refused at once, with its own errno; a regular file opened (O_CREAT too). */
Test(open_regular, refuses_what_is_not_a_regular_file_without_waiting, .timeout = 10)
{
        char dir[] = "/tmp/aj-regular-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(dfd, 0);
        cr_assert_eq(mkfifoat(dfd, "fifo", 0600), 0);
        cr_assert_eq(mkdirat(dfd, "dir", 0700), 0);
        cr_assert_eq(symlinkat("file", dfd, "link"), 0);
        cr_assert_eq(aj_open_regular_at(dfd, "fifo", O_RDONLY, 0), -EBADFD);
        cr_assert_eq(aj_open_regular_at(dfd, "fifo", O_RDONLY | O_CREAT, 0600), -EBADFD);
        cr_assert_str_eq(aj_file_error_text(-EBADFD), "not a regular file");
        cr_assert_eq(aj_open_regular_at(dfd, "dir", O_RDONLY, 0), -EISDIR);
        cr_assert_eq(aj_open_regular_at(dfd, "missing", O_RDONLY, 0), -ENOENT);
        int fd = aj_open_regular_at(dfd, "file", O_RDONLY | O_CREAT, 0600);
        cr_assert_geq(fd, 0);
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        cr_assert_eq(aj_open_regular_at(dfd, "link", O_RDONLY, 0), -ELOOP, "a symlink is never followed");
        char path[64], *text = NULL;
        snprintf(path, sizeof(path), "%s/fifo", dir);
        cr_assert_eq(aj_read_regular_file(path, 4096, &text, NULL), -EBADFD);
        snprintf(path, sizeof(path), "%s/file", dir);
        cr_assert_eq(aj_read_regular_file(path, 4096, &text, NULL), 0);
        cr_assert_str_eq(text, "");
        free(text);
        close(dfd);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        cr_expect_eq(system(cmd), 0);
}

/* ---- aj_open_under: the one policy for paths an agent can influence ---- */

static char under_root[] = "/tmp/aj-under-XXXXXX";
static int under_fd = -1;

static void under_setup(void)
{
        cr_assert_not_null(mkdtemp(under_root));
        under_fd = open(under_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(under_fd, 0);
        cr_assert_eq(mkdirat(under_fd, "etc", 0755), 0);
        cr_assert_eq(mkdirat(under_fd, "sub", 0755), 0);
        int fd = openat(under_fd, "etc/passwd", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, "inside\n", 7), 7);
        close(fd);
        cr_assert_eq(symlinkat("/", under_fd, "to-root"), 0);
        cr_assert_eq(symlinkat("/etc/passwd", under_fd, "abs"), 0);
        cr_assert_eq(symlinkat("../../../../../../etc", under_fd, "sub/up"), 0);
        cr_assert_eq(symlinkat("etc", under_fd, "rel"), 0);
}

static void under_teardown(void)
{
        close(under_fd);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", under_root);
        cr_expect_eq(system(cmd), 0);
}

/* The first line of the file the path opens under the test root. */
static int under_read(const char *path, AjUnderFlags how, char *buf, size_t len)
{
        int fd = aj_open_under(under_fd, path, O_RDONLY, 0, how);
        if (fd < 0)
                return fd;
        ssize_t n = read(fd, buf, len - 1);
        close(fd);
        cr_assert_geq(n, 0);
        buf[n] = 0;
        return 0;
}

Test(open_under, symlinks_resolve_inside_the_root, .init = under_setup, .fini = under_teardown)
{
        /* A symlink to "/", an absolute symlink and a "../" chain all land on the root's own
         * etc/passwd, never the host's. */
        static const char *const paths[] = { "to-root/etc/passwd", "abs",         "sub/up/passwd",
                                             "rel/passwd",         "/etc/passwd", "etc/passwd" };
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
                char buf[64];
                int r = under_read(paths[i], AJ_UNDER_FOLLOW, buf, sizeof(buf));
                cr_assert_eq(r, 0, "%s: %s", paths[i], strerror(-r));
                cr_expect_str_eq(buf, "inside\n", "%s", paths[i]);
        }
}

Test(open_under, dotdot_is_refused, .init = under_setup, .fini = under_teardown)
{
        static const char *const paths[] = { "..", "../etc/passwd", "sub/../../etc/passwd", "sub/..",
                                             "/../etc/passwd" };
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
                int fd = aj_open_under(under_fd, paths[i], O_RDONLY, 0, AJ_UNDER_FOLLOW);
                cr_expect_eq(fd, -EINVAL, "%s: %d", paths[i], fd);
                if (fd >= 0)
                        close(fd);
        }
        /* Names that only contain dots are names. */
        cr_assert_eq(mkdirat(under_fd, "..x", 0755), 0);
        cr_assert_eq(mkdirat(under_fd, "x..", 0755), 0);
        int fd = aj_open_under(under_fd, "..x", O_RDONLY | O_DIRECTORY, 0, AJ_UNDER_FOLLOW);
        cr_expect_geq(fd, 0);
        close(fd);
        fd = aj_open_under(under_fd, "x../", O_RDONLY | O_DIRECTORY, 0, AJ_UNDER_FOLLOW);
        cr_expect_geq(fd, 0);
        close(fd);
}

Test(open_under, no_symlinks_refuses_every_symlink, .init = under_setup, .fini = under_teardown)
{
        static const char *const paths[] = { "to-root/etc/passwd", "abs", "sub/up/passwd", "rel/passwd", "rel" };
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
                int fd = aj_open_under(under_fd, paths[i], O_RDONLY, 0, AJ_UNDER_NO_SYMLINKS);
                cr_expect_eq(fd, -ELOOP, "%s: %d", paths[i], fd);
                if (fd >= 0)
                        close(fd);
        }
        char buf[64];
        cr_assert_eq(under_read("etc/passwd", AJ_UNDER_NO_SYMLINKS, buf, sizeof(buf)), 0);
        cr_expect_str_eq(buf, "inside\n");
        int fd = aj_open_under(under_fd, "", O_RDONLY | O_DIRECTORY, 0, AJ_UNDER_NO_SYMLINKS);
        cr_expect_geq(fd, 0, "\"\" is the root itself");
        close(fd);
}

Test(open_under, magic_links_are_never_followed)
{
        /* /proc/self/root and /proc/self/fd/N jump without a path: refused with or without symlinks. */
        int proc = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(proc, 0);
        int fd = aj_open_under(proc, "root/etc/passwd", O_RDONLY, 0, AJ_UNDER_FOLLOW);
        cr_expect_eq(fd, -ELOOP, "root/etc/passwd: %d", fd);
        char path[32];
        snprintf(path, sizeof(path), "fd/%d", proc);
        fd = aj_open_under(proc, path, O_RDONLY, 0, AJ_UNDER_FOLLOW);
        cr_expect_eq(fd, -ELOOP, "%s: %d", path, fd);
        close(proc);
}

Test(open_under, always_cloexec, .init = under_setup, .fini = under_teardown)
{
        int fd = aj_open_under(under_fd, "etc/passwd", O_RDONLY, 0, AJ_UNDER_FOLLOW);
        cr_assert_geq(fd, 0);
        cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
}

/* ---- aj_open_child: one name below a directory the caller holds ---- */

Test(open_child, one_name_only, .init = under_setup, .fini = under_teardown)
{
        static const char *const names[] = { "", ".", "..", "etc/passwd", "/etc", "etc/" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                int fd = aj_open_child(under_fd, names[i], O_PATH, 0);
                cr_expect_eq(fd, -EINVAL, "'%s': %d", names[i], fd);
                if (fd >= 0)
                        close(fd);
        }
        int etc = aj_open_child(under_fd, "etc", O_PATH | O_DIRECTORY, 0);
        cr_assert_geq(etc, 0);
        cr_expect(fcntl(etc, F_GETFD) & FD_CLOEXEC);
        int fd = aj_open_child(etc, "passwd", O_RDONLY, 0);
        cr_assert_geq(fd, 0);
        char buf[16] = { 0 };
        cr_expect_eq(read(fd, buf, sizeof(buf) - 1), 7);
        cr_expect_str_eq(buf, "inside\n");
        close(fd);
        close(etc);
}

Test(open_child, never_follows_a_symlink, .init = under_setup, .fini = under_teardown)
{
        /* Each link is refused whatever it points to: to "/", absolute, "../" chains, relative. */
        static const char *const links[] = { "to-root", "abs", "rel" };
        for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
                int fd = aj_open_child(under_fd, links[i], O_PATH, 0);
                cr_expect_eq(fd, -ELOOP, "%s: %d", links[i], fd);
                if (fd >= 0)
                        close(fd);
                fd = aj_open_child(under_fd, links[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
                cr_expect_eq(fd, -ELOOP, "%s, O_CREAT: %d", links[i], fd);
                if (fd >= 0)
                        close(fd);
                /* O_EXCL: the name is taken, nothing is made where it points. */
                fd = aj_open_child(under_fd, links[i], O_RDONLY | O_CREAT | O_EXCL, 0444);
                cr_expect_eq(fd, -EEXIST, "%s, O_EXCL: %d", links[i], fd);
                if (fd >= 0)
                        close(fd);
        }
        int sub = aj_open_child(under_fd, "sub", O_PATH | O_DIRECTORY, 0);
        cr_assert_geq(sub, 0);
        int fd = aj_open_child(sub, "up", O_PATH | O_DIRECTORY, 0);
        cr_expect_eq(fd, -ELOOP, "sub/up: %d", fd);
        if (fd >= 0)
                close(fd);
        close(sub);
        char buf[16] = { 0 };
        cr_assert_eq(under_read("etc/passwd", AJ_UNDER_NO_SYMLINKS, buf, sizeof(buf)), 0);
        cr_expect_str_eq(buf, "inside\n", "the file the links name is as it was");
}

Test(open_child, creates_a_new_name, .init = under_setup, .fini = under_teardown)
{
        int fd = aj_open_child(under_fd, "new", O_RDONLY | O_CREAT | O_EXCL, 0444);
        cr_assert_geq(fd, 0);
        struct stat st;
        cr_expect_eq(fstat(fd, &st), 0);
        cr_expect(S_ISREG(st.st_mode));
        close(fd);
        fd = aj_open_child(under_fd, "new", O_RDONLY | O_CREAT | O_EXCL, 0444);
        cr_expect_eq(fd, -EEXIST);
        if (fd >= 0)
                close(fd);
}

/* ---- the one token bucket ---- */

#define SEC UINT64_C(1000000000)

Test(ratelimit, burst_and_refill)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 3, 1);
        uint64_t t = 1000 * SEC;
        static const struct {
                uint64_t at_ms; /* after the start */
                bool allowed;
                uint64_t suppressed;
        } steps[] = {
                { 0, true, 0 },
                { 0, true, 0 },
                { 0, true, 0 },
                { 0, false, 1 },
                { 500, false, 2 },
                { 1000, true, 2 },
                { 1000, false, 3 },
                { 1999, false, 4 },
                { 2000, true, 4 },
                /* A long pause refills to the burst, not beyond. */
                { 60000, true, 4 },
                { 60000, true, 4 },
                { 60000, true, 4 },
                { 60000, false, 5 },
                /* A timestamp from the past refills nothing. */
                { 30000, false, 6 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
                bool a = aj_ratelimit_allow(&rl, t + steps[i].at_ms * (SEC / 1000));
                cr_expect_eq(a, steps[i].allowed, "step %zu", i);
                cr_expect_eq(rl.suppressed, steps[i].suppressed, "step %zu", i);
        }
}

Test(ratelimit, fractional_rate)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 1, 0.5);
        uint64_t t = 5 * SEC;
        cr_expect(aj_ratelimit_allow(&rl, t));
        cr_expect_not(aj_ratelimit_allow(&rl, t + 1 * SEC));
        cr_expect(aj_ratelimit_allow(&rl, t + 2 * SEC));
        cr_expect_eq(rl.suppressed, 1);

        AjRateLimit none;
        aj_ratelimit_init(&none, 0, 100);
        cr_expect_not(aj_ratelimit_allow(&none, t));
        cr_expect_not(aj_ratelimit_allow(&none, t + 100 * SEC));
        cr_expect_eq(none.suppressed, 2);
}

/* The bucket as a work budget (the supervisor's ns of CPU for a jail): charges may leave it in
 * debt; the debt says how long until the refill pays it. */
Test(ratelimit, work_budget_debt)
{
        AjRateLimit rl;
        aj_ratelimit_init(&rl, 100 * 1000000.0, 1e9 / 10); /* 0.1 CPU, 100 ms of burst */
        uint64_t t = 7 * SEC;
        cr_expect(aj_ratelimit_charge(&rl, t, 60 * 1000000.0));
        cr_expect_eq(aj_ratelimit_debt_ns(&rl), 0);
        cr_expect_not(aj_ratelimit_charge(&rl, t, 90 * 1000000.0), "150 ms of a 100 ms burst: in debt");
        /* 50 ms of debt at 0.1 CPU: 500 ms to pay it. */
        uint64_t debt = aj_ratelimit_debt_ns(&rl);
        cr_expect(debt >= 500 * 1000000ull && debt <= 500 * 1000000ull + 1000, "%llu", (unsigned long long)debt);
        cr_expect_not(aj_ratelimit_charge(&rl, t + 400 * 1000000ull, 0), "still in debt after 400 ms");
        cr_expect(aj_ratelimit_charge(&rl, t + debt, 0), "paid after the debt's time");
        cr_expect(aj_ratelimit_charge(&rl, t + 100 * SEC, 100 * 1000000.0), "a pause refills to the burst");
        cr_expect_not(aj_ratelimit_charge(&rl, t + 100 * SEC, 1), "and not beyond");
        cr_expect_eq(rl.suppressed, 0, "charges are not suppressions");

        AjRateLimit none;
        aj_ratelimit_init(&none, 0, 0);
        cr_expect_not(aj_ratelimit_charge(&none, t, 1));
        cr_expect_eq(aj_ratelimit_debt_ns(&none), 0, "no refill: no time pays it");
}

Test(format, append_printable)
{
        char buf[80] = "key ";
        cr_expect_str_eq(aj_append_printable(buf, sizeof(buf),
                                             "a\tb\x7f"
                                             "c",
                                             64),
                         "key a\\tb\\x7fc");
        buf[0] = 0;
        char longer[100];
        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        aj_append_printable(buf, sizeof(buf), longer, 8);
        cr_expect_str_eq(buf, "xxxxxxxx...", "cut after max characters");
        char small[8] = "";
        aj_append_printable(small, sizeof(small), "abcdefgh", 64);
        cr_expect_lt(strlen(small), sizeof(small), "never past the buffer");
}

static char *shown(const char *s, size_t len, unsigned flags)
{
        char *d = aj_printable_dup(s, len, flags);
        cr_assert_not_null(d);
        return d;
}

#define expect_shown(in, flags, want)                                       \
        do {                                                                \
                _cleanup_free_ char *d_ = shown(in, sizeof(in) - 1, flags); \
                cr_expect_str_eq(d_, want, "%s", #in);                      \
        } while (0)

Test(format, escape_controls)
{
        /* C0: a window title (OSC 0 ... BEL), a colour, a cursor move, a line erase. */
        expect_shown("m\x1b]0;OWNED\x07\x1b[31mRED", 0, "m\\x1b]0;OWNED\\x07\\x1b[31mRED");
        expect_shown("a\tb\nc\rd\x01", 0, "a\\tb\\nc\\rd\\x01");
        expect_shown("del\x7f", 0, "del\\x7f");
        /* C1 as UTF-8: CSI (U+009B), OSC (U+009D), ST (U+009C), NEL (U+0085). */
        expect_shown("a\xc2\x9b"
                     "2J\xc2\x9d"
                     "0;T\xc2\x9c"
                     "b\xc2\x85",
                     0, "a\\u009b2J\\u009d0;T\\u009cb\\u0085");
        /* Bidirectional override, line separator. */
        expect_shown("x\xe2\x80\xaey\xe2\x80\xa8", 0, "x\\u202ey\\u2028");
        /* Bidi marks and what shows as nothing: two names that look alike are told apart. */
        expect_shown("main\xe2\x80\x8b.c", 0, "main\\u200b.c");
        expect_shown("a\xe2\x80\x8f"
                     "b\xd8\x9c"
                     "c",
                     0, "a\\u200fb\\u061cc");
        expect_shown("soft\xc2\xadhy\xef\xbb\xbf\xe2\x81\xa0", 0, "soft\\u00adhy\\ufeff\\u2060");
        /* Every default-ignorable code point shows as nothing, not only the zero-width ones: a
         * Hangul filler (U+3164, drawn as a blank as wide as a letter: a gap in inspect's
         * table), a variation selector, tag characters (U+E0041 U+E0042 spell an invisible "AB"),
         * the combining grapheme joiner. */
        expect_shown("r-1\xe3\x85\xa4lookup", 0, "r-1\\u3164lookup");
        expect_shown("Bash\xef\xb8\x8f\xcd\x8f", 0, "Bash\\ufe0f\\u034f");
        expect_shown("Read\xf3\xa0\x81\x81\xf3\xa0\x81\x82", 0, "Read\\U000e0041\\U000e0042");
        expect_shown("\xef\xbe\xa0\xe1\x85\x9f", 0, "\\uffa0\\u115f");
        /* Next to them, what stays: an ordinary non-breaking space (U+00A0), an en dash. */
        expect_shown("a\xc2\xa0"
                     "b\xe2\x80\x93"
                     "c",
                     0,
                     "a\xc2\xa0"
                     "b\xe2\x80\x93"
                     "c");
        /* Invalid UTF-8: a lone byte, a cut sequence, an overlong '/', a surrogate, past U+10FFFF. */
        expect_shown("\xff-hidden", 0, "\\xff-hidden");
        expect_shown("a\xc3", 0, "a\\xc3");
        expect_shown("\xc0\xaf", 0, "\\xc0\\xaf");
        expect_shown("\xed\xa0\x80", 0, "\\xed\\xa0\\x80");
        expect_shown("\xf4\x90\x80\x80", 0, "\\xf4\\x90\\x80\\x80");
        /* A NUL inside the bytes is shown, not an end. */
        expect_shown("a\0b", 0, "a\\x00b");
}

Test(format, escape_keeps_plain_text)
{
        const char *plain[] = { "claude-sonnet-4-5", "src/main.c",       "C:\\dir \"q\"",          "café",
                                "résumé.txt",        "日本語のファイル", "emoji \xf0\x9f\x98\x80", "\xc2\xa0nbsp" };
        for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
                _cleanup_free_ char *d = shown(plain[i], strlen(plain[i]), 0);
                cr_expect_str_eq(d, plain[i], "unchanged: %s", plain[i]);
                cr_expect(aj_printable_as_is(plain[i], strlen(plain[i])));
        }
        cr_expect_not(aj_printable_as_is("a\xc2\x9b", 3));
        cr_expect_not(aj_printable_as_is("a\xff", 2));
}

Test(format, escape_quoted_names)
{
        /* As git's core.quotePath: a name that needs no escape is shown bare. */
        expect_shown("src/main.c", AJ_ESCAPE_QUOTE, "src/main.c");
        expect_shown("dir/é.txt", AJ_ESCAPE_QUOTE, "dir/é.txt");
        expect_shown(".git/hooks/zz\x1b[1A\x1b[2K", AJ_ESCAPE_QUOTE, "\".git/hooks/zz\\x1b[1A\\x1b[2K\"");
        expect_shown("README2\n  D  README", AJ_ESCAPE_QUOTE, "\"README2\\n  D  README\"");
        expect_shown("a\"b\\c", AJ_ESCAPE_QUOTE, "\"a\\\"b\\\\c\"");
        expect_shown("\xff", AJ_ESCAPE_QUOTE, "\"\\xff\"");
        /* A patch's lines keep their tabs (harmless, and the patch stays exact). */
        expect_shown("\tx\x1b", AJ_ESCAPE_KEEP_TAB, "\tx\\x1b");
}

Test(format, append_printable_escapes_and_cuts)
{
        char buf[16] = "";
        aj_append_printable(buf, sizeof(buf), "\x1b\x1b\x1b\x1b\x1b", 64);
        cr_expect_lt(strlen(buf), sizeof(buf));
        cr_expect_null(strchr(buf, 0x1b), "no ESC: %s", buf);
        cr_expect(strstr(buf, "...") != NULL, "cut where the escapes no longer fit: %s", buf);
        char whole[64] = "";
        cr_expect_str_eq(aj_append_printable(whole, sizeof(whole), "é\xc2\x9d", 64), "é\\u009d");
}

Test(format, json_text_c1_escaped)
{
        _cleanup_free_ char *t = aj_json_text_hidden_escaped("{\"name\":\"a\xc2\x9b"
                                                             "2J\x7f é\"}");
        cr_assert_not_null(t);
        cr_expect_str_eq(t, "{\"name\":\"a\\u009b2J\\u007f é\"}");
        json_auto_t *a = json_loads("{\"name\":\"a\xc2\x9b"
                                    "2J\x7f é\"}",
                                    0, NULL);
        json_auto_t *b = json_loads(t, 0, NULL);
        cr_assert_not_null(b, "still JSON");
        cr_expect(json_equal(a, b), "the same JSON for a parser");
        /* The bidi overrides and isolates and the line separators, as the text rule hides them. */
        const char *bidi = "[\"n\xe2\x80\xaegpj.exe\", \"\xe2\x81\xa6x\xe2\x80\xa8y\", \"\xe2\x80\x99ok\"]";
        _cleanup_free_ char *u = aj_json_text_hidden_escaped(bidi);
        cr_assert_not_null(u);
        cr_expect_str_eq(u, "[\"n\\u202egpj.exe\", \"\\u2066x\\u2028y\", \"\xe2\x80\x99ok\"]");
        json_auto_t *c = json_loads(bidi, 0, NULL), *d = json_loads(u, 0, NULL);
        cr_assert_not_null(d, "still JSON");
        cr_expect(json_equal(c, d), "the same JSON for a parser");
        /* Past U+FFFF (a tag character) as JSON's surrogate pair. */
        const char *tags = "[\"Read\xf3\xa0\x81\x81\", \"\xe3\x85\xa4\"]";
        _cleanup_free_ char *v = aj_json_text_hidden_escaped(tags);
        cr_assert_not_null(v);
        cr_expect_str_eq(v, "[\"Read\\udb40\\udc41\", \"\\u3164\"]");
        json_auto_t *e = json_loads(tags, 0, NULL), *f = json_loads(v, 0, NULL);
        cr_assert_not_null(f, "still JSON");
        cr_expect(json_equal(e, f), "the same JSON for a parser");
}

/* `levels` of nesting around v: {"a": [{"a": ... v ...}]}, alternating, as JSON text. */
static char *nest_text(unsigned levels, const char *v)
{
        size_t len = strlen(v) + levels * 7 + 1;
        char *s = malloc(len), *p = s;
        cr_assert_not_null(s);
        for (unsigned i = 0; i < levels; i++)
                p = stpcpy(p, i % 2 ? "[" : "{\"a\": ");
        p = stpcpy(p, v);
        for (unsigned i = levels; i-- > 0;)
                p = stpcpy(p, i % 2 ? "]" : "}");
        return s;
}

/* What an operator's --json prints: the first levels laid out exactly as JSON_INDENT(2) does,
 * what nests deeper on one line, so the text grows with the value, not with the square of its
 * depth (64 levels indented at every one: 57 times the compact text; a flat array of numbers
 * 3.5 times, at most levels + 1.5). */
Test(format, json_dumps_indented_is_linear_in_the_value)
{
        json_auto_t *shallow = json_loads("{\"run\": \"r1\", \"n\": 1.5, \"e\": {}, \"l\": [], \"k\\\"\\t\": null, "
                                          "\"events\": [{\"seq\": 1, \"ok\": true, \"name\": \"x\\u009b\"}]}",
                                          0, NULL);
        cr_assert_not_null(shallow);
        _cleanup_free_ char *mine = aj_json_dumps_indented(shallow, 3);
        _cleanup_free_ char *theirs = json_dumps(shallow, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        cr_assert_not_null(mine);
        cr_expect_str_eq(mine, theirs, "no deeper than the levels laid out: JSON_INDENT(2)'s text");
        _cleanup_free_ char *flat = aj_json_dumps_indented(shallow, 0);
        _cleanup_free_ char *line = json_dumps(shallow, JSON_PRESERVE_ORDER);
        cr_expect_str_eq(flat, line, "0 levels: one line");

        /* An event whose arguments nest 62 deep (the broker's 64 with the request's own). */
        _cleanup_free_ char *deep_args = nest_text(62, "0");
        _cleanup_free_ char *deep_text = nest_text(3, deep_args);
        json_auto_t *deep = json_loads(deep_text, 0, NULL);
        cr_assert_not_null(deep);
        _cleanup_free_ char *compact = json_dumps(deep, JSON_COMPACT);
        _cleanup_free_ char *text = aj_json_dumps_indented(deep, 3);
        cr_assert_not_null(text);
        json_auto_t *back = json_loads(text, 0, NULL);
        cr_expect(json_equal(back, deep), "the same JSON");
        cr_expect_leq(strlen(text), strlen(compact) * 3 / 2 + 16, "%zu bytes for %zu compact", strlen(text),
                      strlen(compact));

        /* The widest: a flat array of one-digit numbers, inside the levels laid out. */
        json_auto_t *wide = json_array();
        for (int i = 0; i < 10000; i++)
                json_array_append_new(wide, json_integer(i % 10));
        json_auto_t *doc = json_pack("{s:s, s:{s:O}}", "run", "r1", "request", "args", wide);
        _cleanup_free_ char *wide_compact = json_dumps(doc, JSON_COMPACT);
        _cleanup_free_ char *wide_text = aj_json_dumps_indented(doc, 3);
        cr_assert_not_null(wide_text);
        json_decref(back);
        back = json_loads(wide_text, 0, NULL);
        cr_expect(json_equal(back, doc), "the same JSON");
        cr_expect_leq(strlen(wide_text), strlen(wide_compact) * 9 / 2, "%zu bytes for %zu compact", strlen(wide_text),
                      strlen(wide_compact));
}

/* The supervisor's messages during a run, and every library's, name what the agent chose (a
 * path in its workspace, a process, a provider's error): escaped like the verbs' output, the
 * errno's words and the line's end left as they are. */
#define HOSTILE                                             \
        "a\x1b]0;OWNED\x07 \x1b]52;c;ZWNobw==\x07 \xc2\x9b" \
        "2J \xe2\x80\xae"                                   \
        "txt \xe2\x80\xa8 \xff caf\xc3\xa9\nagentjail: forged"
#define HOSTILE_SHOWN \
        "a\\x1b]0;OWNED\\x07 \\x1b]52;c;ZWNobw==\\x07 \\u009b2J \\u202etxt \\u2028 \\xff caf\xc3\xa9\\nagentjail: forged"

Test(log, escapes_the_message, .init = cr_redirect_stderr)
{
        aj_log_set_level(AJ_LOG_INFO);
        aj_warning("cannot keep '%s'", HOSTILE);
        cr_expect_eq(aj_log_errno(-ENOENT, "Failed to open '%s'", HOSTILE), -ENOENT);
        aj_log_set_crlf(true);
        aj_info("%s", "\x1b[2J");
        fflush(stderr);
        cr_assert_stderr_eq_str("agentjail: warning: cannot keep '" HOSTILE_SHOWN "'\n"
                                "agentjail: Failed to open '" HOSTILE_SHOWN "': No such file or directory\n"
                                "agentjail: \\x1b[2J\r\n");
}

/* While the jail's output shares the terminal, each message begins with what ends a control
 * string it left open and resets the rendition (aj_log_set_lead): else the message is
 * swallowed or concealed. */
Test(log, a_lead_before_each_message, .init = cr_redirect_stderr)
{
        aj_log_set_lead("<reset>");
        aj_warning("breached");
        aj_log_set_lead(NULL);
        aj_warning("after");
        fflush(stderr);
        cr_assert_stderr_eq_str("<reset>agentjail: warning: breached\nagentjail: warning: after\n");
}

Test(log, a_long_message_escaped_whole)
{
        /* 2047 bytes that each show as 4: the escaped message is not cut. */
        char msg[2048];
        memset(msg, 0x1b, sizeof(msg) - 1);
        msg[sizeof(msg) - 1] = 0;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        cr_assert_not_null(f);
        FILE *saved = stderr;
        stderr = f;
        aj_error("%s", msg);
        stderr = saved;
        fclose(f);
        cr_expect_eq(len, strlen("agentjail: ") + 4 * 2047 + 1);
        cr_expect_null(memchr(out, 0x1b, len), "no raw ESC");
        free(out);
}

Test(parse, plain_name)
{
        cr_expect(aj_plain_name("fs.write", 8, 64));
        cr_expect(aj_plain_name("café", strlen("café"), 64), "ordinary non-ASCII is a name");
        cr_expect(aj_plain_name("日本", strlen("日本"), 64));
        cr_expect_not(aj_plain_name("a b", 3, 64));
        cr_expect_not(aj_plain_name("a\x1b", 2, 64));
        cr_expect_not(aj_plain_name("a\x7f", 2, 64));
        const char c1[] = "a\xc2\x9b"
                          "2J\xc2\x9d"
                          "0;T\xc2\x9c"
                          "b";
        cr_expect_not(aj_plain_name(c1, strlen(c1), 64), "C1 controls");
        cr_expect_not(aj_plain_name("a\xff", 2, 64), "invalid UTF-8");
        /* Unicode's spaces lay a name out as two words (found by the third attacker review: a
         * held call's id with no-break spaces forged inspect's TOOL column). */
        static const char *const spaces[] = { "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x83",
                                              "\xe2\x80\x8a", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80" };
        for (size_t i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++) {
                char name[16];
                snprintf(name, sizeof(name), "r-1%slookup", spaces[i]);
                cr_expect_not(aj_plain_name(name, strlen(name), 64), "space %zu", i);
        }
        /* Letters drawn as a blank are gaps too: the Hangul fillers, the blank Braille pattern. */
        static const char *const blanks[] = { "\xe1\x85\x9f", "\xe1\x85\xa0", "\xe3\x85\xa4", "\xef\xbe\xa0",
                                              "\xe2\xa0\x80" };
        for (size_t i = 0; i < sizeof(blanks) / sizeof(blanks[0]); i++) {
                char name[16];
                snprintf(name, sizeof(name), "r-1%slookup", blanks[i]);
                cr_expect_not(aj_plain_name(name, strlen(name), 64), "blank %zu", i);
        }
        cr_expect(aj_plain_name("\xe2\xa0\x81", 3, 64), "U+2801 (a Braille dot) is not a gap");
        cr_expect(aj_plain_name("\xe2\x80\x90", 3, 64), "U+2010 (a hyphen) is not a space");
        cr_expect(aj_plain_name("\xc2\xa1", 2, 64), "U+00A1 is not a space");
        cr_expect_not(aj_plain_name("a\xc3", 2, 64), "a cut sequence");
        cr_expect_not(aj_plain_name("a\xc2\x80", 3, 64), "U+0080, the first C1");
        cr_expect_not(aj_plain_name("a\xc2\x9f", 3, 64), "U+009F, the last C1");
        cr_expect_not(aj_plain_name("a\xc2\xa0", 3, 64), "U+00A0: no control, but a (no-break) space");
        cr_expect_not(aj_plain_name("abc", 3, 2), "longer than max");
        cr_expect_not(aj_plain_name("", 0, 2));
}

/* ---- aj_copy_data, aj_rm_rf ---- */

static char fs_root[64];

static void fs_setup(void)
{
        snprintf(fs_root, sizeof(fs_root), "/tmp/aj-fs-XXXXXX");
        cr_assert_not_null(mkdtemp(fs_root));
}

static void fs_teardown(void) { aj_rm_rf(fs_root); }

Test(copy_data, holes_stay_holes, .init = fs_setup, .fini = fs_teardown)
{
        char in[128], out[128];
        snprintf(in, sizeof(in), "%s/in", fs_root);
        snprintf(out, sizeof(out), "%s/out", fs_root);
        int in_fd = open(in, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(in_fd, 0);
        cr_assert_eq(pwrite(in_fd, "abc", 3, 1 << 20), 3);
        cr_assert_eq(pwrite(in_fd, "xyz", 3, 3ll << 30), 3);
        cr_assert_eq(ftruncate(in_fd, 4ll << 30), 0); /* 4 GiB, a few KiB of it data */
        int out_fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(out_fd, 0);
        uint64_t written = ~0ull;
        cr_assert_eq(aj_copy_data(in_fd, out_fd, &written), 0);
        cr_expect_lt(written, 1u << 20, "wrote %llu bytes", (unsigned long long)written);
        struct stat st;
        cr_assert_eq(fstat(out_fd, &st), 0);
        cr_expect_eq(st.st_size, 4ll << 30);
        cr_expect_lt((uint64_t)st.st_blocks * 512, 1u << 20);
        char buf[4] = { 0 };
        cr_expect_eq(pread(out_fd, buf, 3, 1 << 20), 3);
        cr_expect_eq(memcmp(buf, "abc", 3), 0);
        cr_expect_eq(pread(out_fd, buf, 3, 3ll << 30), 3);
        cr_expect_eq(memcmp(buf, "xyz", 3), 0);
        cr_expect_eq(pread(out_fd, buf, 3, 2ll << 30), 3);
        cr_expect_eq(memcmp(buf, "\0\0\0", 3), 0);
        close(in_fd);
        close(out_fd);
}

Test(copy_data, a_dense_file_is_copied_whole, .init = fs_setup, .fini = fs_teardown)
{
        char in[128], out[128];
        snprintf(in, sizeof(in), "%s/in", fs_root);
        snprintf(out, sizeof(out), "%s/out", fs_root);
        int in_fd = open(in, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(in_fd, 0);
        static char data[300000];
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char)(i * 7 + 1);
        cr_assert_eq(aj_write_all(in_fd, data, sizeof(data)), 0);
        int out_fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(out_fd, 0);
        uint64_t written = 0;
        cr_assert_eq(aj_copy_data(in_fd, out_fd, &written), 0);
        cr_expect_eq(written, sizeof(data));
        static char back[sizeof(data)];
        cr_assert_eq(pread(out_fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
        cr_expect_eq(memcmp(back, data, sizeof(data)), 0);
        close(in_fd);
        close(out_fd);
}

/* A tree far deeper than the fds the process may open is still removed: the walk holds a
 * bounded number of directory fds whatever the depth. */
Test(rm_rf, deeper_than_the_fd_limit, .init = fs_setup, .fini = fs_teardown)
{
        char top[128], keep[128], kept_file[160];
        snprintf(top, sizeof(top), "%s/deep", fs_root);
        snprintf(keep, sizeof(keep), "%s/keep", fs_root);
        snprintf(kept_file, sizeof(kept_file), "%s/file", keep);
        cr_assert_eq(mkdir(top, 0755), 0);
        cr_assert_eq(mkdir(keep, 0755), 0);
        int kf = open(kept_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        cr_assert_geq(kf, 0);
        close(kf);
        int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        const int depth = 3000;
        for (int i = 0; i < depth; i++) {
                cr_assert_eq(mkdirat(fd, "d", 0755), 0, "level %d", i);
                if (i % 100 == 0) {
                        int f = openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                        cr_assert_geq(f, 0);
                        close(f);
                        cr_assert_eq(symlinkat(keep, fd, "keep-link"), 0);
                }
                int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                cr_assert_geq(next, 0);
                close(fd);
                fd = next;
        }
        close(fd);

        struct rlimit old, low = { .rlim_cur = 64 };
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        low.rlim_max = old.rlim_max;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
        int r = aj_rm_rf(top);
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        cr_expect_eq(r, 0, "aj_rm_rf: %s", strerror(-r));
        struct stat st;
        cr_expect_eq(lstat(top, &st), -1);
        cr_expect_eq(errno, ENOENT);
        cr_expect_eq(stat(kept_file, &st), 0, "a symlink was followed"); /* removed, not followed */
}

Test(rm_rf, symlinks_are_removed_not_followed, .init = fs_setup, .fini = fs_teardown)
{
        char top[128], keep[128], kept_file[160], link[160];
        snprintf(top, sizeof(top), "%s/top", fs_root);
        snprintf(keep, sizeof(keep), "%s/keep", fs_root);
        snprintf(kept_file, sizeof(kept_file), "%s/file", keep);
        snprintf(link, sizeof(link), "%s/link", top);
        cr_assert_eq(mkdir(top, 0755), 0);
        cr_assert_eq(mkdir(keep, 0755), 0);
        int f = open(kept_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        cr_assert_geq(f, 0);
        close(f);
        cr_assert_eq(symlink(keep, link), 0);
        cr_expect_eq(aj_rm_rf(top), 0);
        struct stat st;
        cr_expect_eq(lstat(top, &st), -1);
        cr_expect_eq(stat(kept_file, &st), 0);
        /* A symlink given as the path itself: removed, its target kept. */
        cr_assert_eq(symlink(keep, top), 0);
        cr_expect_eq(aj_rm_rf(top), 0);
        cr_expect_eq(lstat(top, &st), -1);
        cr_expect_eq(stat(kept_file, &st), 0);
}

/* Relative to a held directory: what it holds under the name goes, wherever its path leads now
 * (eval's scratch root, its path swapped for a symlink to the operator's files). */
Test(rm_rf, at_a_held_directory, .init = fs_setup, .fini = fs_teardown)
{
        char held[128], moved[128], victim[128], path[200];
        snprintf(held, sizeof(held), "%s/held", fs_root);
        snprintf(moved, sizeof(moved), "%s/moved", fs_root);
        snprintf(victim, sizeof(victim), "%s/victim", fs_root);
        cr_assert_eq(mkdir(held, 0755), 0);
        snprintf(path, sizeof(path), "%s/case-1", held);
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/case-1/log", held);
        cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        snprintf(path, sizeof(path), "%s/case-1", victim);
        cr_assert_eq(aj_mkdir_p(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/case-1/precious", victim);
        cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        int fd = open(held, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(rename(held, moved), 0);
        cr_assert_eq(symlink(victim, held), 0);
        cr_expect_eq(aj_rm_rf_at(fd, "case-1"), 0);
        struct stat st;
        cr_expect_eq(stat(path, &st), 0, "the path was followed");
        snprintf(path, sizeof(path), "%s/case-1", moved);
        cr_expect_eq(lstat(path, &st), -1, "the held directory's entry is removed");
        cr_expect_eq(aj_rm_rf_at(fd, "case-1"), 0, "gone already: 0");
        close(fd);
}

/* A held directory and its name in a held parent (eval's scratch root, held since mkdtemp()):
 * emptied through its fd and its name removed in the parent's, wherever their paths lead now;
 * a symlink or another directory put in its place is left as it is (-ESTALE). */
Test(rm_rf, a_pinned_directory, .init = fs_setup, .fini = fs_teardown)
{
        char parent[128], moved[128], victim[128], path[200], away[160];
        snprintf(parent, sizeof(parent), "%s/tmp", fs_root);
        snprintf(moved, sizeof(moved), "%s/tmp.moved", fs_root);
        snprintf(victim, sizeof(victim), "%s/victim", fs_root);
        snprintf(path, sizeof(path), "%s/scratch/case-1", parent);
        cr_assert_eq(aj_mkdir_p(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/scratch/case-1/log", parent);
        cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        snprintf(path, sizeof(path), "%s/scratch", victim);
        cr_assert_eq(aj_mkdir_p(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/scratch/precious", victim);
        cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        int parent_fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(parent_fd, 0);
        int fd = openat(parent_fd, "scratch", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        /* The parent's path swapped for a symlink to a directory holding the same name. */
        cr_assert_eq(rename(parent, moved), 0);
        cr_assert_eq(symlink(victim, parent), 0);
        cr_expect_eq(aj_rm_rf_pinned(parent_fd, "scratch", fd), 0);
        struct stat st;
        cr_expect_eq(stat(path, &st), 0, "the parent's path was followed");
        snprintf(path, sizeof(path), "%s/scratch", moved);
        cr_expect_eq(lstat(path, &st), -1, "the held directory is removed from its held parent");
        cr_expect_eq(aj_rm_rf_pinned(parent_fd, "scratch", fd), 0, "gone already: 0");
        close(fd);

        /* The directory's own name taken by a symlink: it is emptied, the symlink left. */
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/scratch/f", moved);
        cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        snprintf(path, sizeof(path), "%s/scratch", moved);
        fd = openat(parent_fd, "scratch", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        snprintf(away, sizeof(away), "%s/scratch.away", moved);
        cr_assert_eq(rename(path, away), 0);
        cr_assert_eq(symlink(victim, path), 0);
        cr_expect_eq(aj_rm_rf_pinned(parent_fd, "scratch", fd), -ESTALE);
        cr_expect_eq(lstat(path, &st), 0);
        cr_expect(S_ISLNK(st.st_mode), "the symlink in its place is left");
        snprintf(path, sizeof(path), "%s/scratch/precious", victim);
        cr_expect_eq(stat(path, &st), 0, "nothing removed where it points");
        snprintf(path, sizeof(path), "%s/f", away);
        cr_expect_eq(lstat(path, &st), -1, "the held directory is emptied");
        cr_expect_eq(aj_rm_rf_pinned(parent_fd, "a/b", fd), -EINVAL);
        cr_expect_eq(aj_rm_rf_pinned(parent_fd, "..", fd), -EINVAL);
        close(fd);
        close(parent_fd);
}

/* Directories whose owner took their rights away are still removed by that owner: a rootless
 * run's agent (its files are the invoker's) left `chmod 000 a` and `chmod 555 ro` with files
 * in them, also below the levels the walk holds open (moved up), and every eval case or
 * replay left its scratch copy behind ("Permission denied"; attacker review 19). Run as
 * nobody, the owner of the tree. */
Test(rm_rf, directories_without_their_owners_rights, .init = fs_setup, .fini = fs_teardown)
{
        const uid_t who = 65534;
        char own[128], top[160], path[1024];
        snprintf(own, sizeof(own), "%s/own", fs_root);
        snprintf(top, sizeof(top), "%s/top", own);
        cr_assert_eq(chmod(fs_root, 0755), 0);
        cr_assert_eq(mkdir(own, 0755), 0);
        cr_assert_eq(mkdir(top, 0755), 0);
        static const char *const dirs[] = { "a", "a/b", "ro", NULL };
        for (size_t i = 0; dirs[i]; i++) {
                snprintf(path, sizeof(path), "%s/%s", top, dirs[i]);
                cr_assert_eq(mkdir(path, 0755), 0);
                snprintf(path, sizeof(path), "%s/%s/f", top, dirs[i]);
                cr_assert_eq(close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)), 0);
        }
        /* A chain deeper than AJ_RM_RF_OPEN_LEVELS, its last directory read-only. */
        size_t n = (size_t)snprintf(path, sizeof(path), "%s", top);
        for (int i = 0; i < AJ_RM_RF_OPEN_LEVELS + 4; i++) {
                n += (size_t)snprintf(path + n, sizeof(path) - n, "/d");
                cr_assert_eq(mkdir(path, 0755), 0);
        }
        char deep_file[1100];
        snprintf(deep_file, sizeof(deep_file), "%s/f", path);
        cr_assert_eq(close(open(deep_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)), 0);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "chown -R %u:%u '%s'", (unsigned)who, (unsigned)who, own);
        cr_assert_eq(system(cmd), 0);
        cr_assert_eq(chmod(path, 0555), 0);
        snprintf(path, sizeof(path), "%s/a/b", top);
        cr_assert_eq(chmod(path, 0), 0);
        snprintf(path, sizeof(path), "%s/a", top);
        cr_assert_eq(chmod(path, 0), 0);
        snprintf(path, sizeof(path), "%s/ro", top);
        cr_assert_eq(chmod(path, 0555), 0);

        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                if (geteuid() == 0 &&
                    (setgroups(0, NULL) < 0 || setresgid(who, who, who) < 0 || setresuid(who, who, who) < 0))
                        _exit(99);
                (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* as a user's process is: its /proc/self/fd */
                int r = aj_rm_rf(top);
                _exit(r == 0 ? 0 : r == -EACCES ? 13 : 1);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st));
        cr_expect_eq(WEXITSTATUS(st), 0, "aj_rm_rf as the owner: exit %d (13: EACCES)", WEXITSTATUS(st));
        struct stat sb;
        cr_expect_eq(lstat(top, &sb), -1, "the tree is gone");
}

/* The mount tests' tree: top/ with mnt/ (to mount on; `inside` a file there) and other/. */
typedef struct {
        char top[128], mnt[160], inside[192], other[160];
} MountTree;

static void mount_tree(MountTree *t)
{
        snprintf(t->top, sizeof(t->top), "%s/top", fs_root);
        snprintf(t->mnt, sizeof(t->mnt), "%s/mnt", t->top);
        snprintf(t->inside, sizeof(t->inside), "%s/precious", t->mnt);
        snprintf(t->other, sizeof(t->other), "%s/other", t->top);
        cr_assert_eq(mkdir(t->top, 0755), 0);
        cr_assert_eq(mkdir(t->mnt, 0755), 0);
        cr_assert_eq(mkdir(t->other, 0755), 0);
}

/* A mount below is never entered: -EXDEV, what it holds stays, the rest goes. */
Test(rm_rf, does_not_cross_a_mount, .init = fs_setup, .fini = fs_teardown)
{
        MountTree t;
        mount_tree(&t);
        const char *top = t.top, *mnt = t.mnt, *inside = t.inside, *other = t.other;
        if (mount("aj-test", mnt, "tmpfs", 0, "size=1m") < 0)
                cr_skip_test("cannot mount a tmpfs (%s): not root?", strerror(errno));
        int f = open(inside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        cr_assert_geq(f, 0);
        close(f);
        int r = aj_rm_rf(top);
        struct stat st;
        bool kept = stat(inside, &st) == 0, other_gone = lstat(other, &st) < 0;
        umount2(mnt, MNT_DETACH);
        cr_expect_eq(r, -EXDEV);
        cr_expect(kept, "a file in the mount below was removed");
        cr_expect(other_gone);
}

/* The owner's rights are given back (rm_grant_owner) only to a directory in the walk's own
 * place, checked on the very fd the chmod goes through: a mount below whose root the invoker
 * owns without their rights (0500) is neither changed nor entered, what it holds stays. Run
 * as nobody, the owner of the tree and of the mount's root, in a mount namespace of the
 * test's own. */
typedef struct {
        int setup; /* errno of the setup, 0 */
        int r;     /* aj_rm_rf's */
        mode_t mode;
        bool kept;
} RmMountSeen;

Test(rm_rf, gives_no_rights_across_a_mount, .init = fs_setup, .fini = fs_teardown)
{
        const uid_t who = 65534;
        MountTree t;
        mount_tree(&t);
        const char *top = t.top, *mnt = t.mnt, *inside = t.inside, *other = t.other;
        cr_assert_eq(chmod(fs_root, 0755), 0);
        cr_assert_eq(chown(top, who, who), 0);
        cr_assert_eq(chown(other, who, who), 0);
        int pipefd[2];
        cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                RmMountSeen out = { 0 };
                struct stat st;
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount("aj-test", mnt, "tmpfs", 0, "size=1m,mode=0500,uid=65534,gid=65534") < 0 ||
                    close(open(inside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0 || setgroups(0, NULL) < 0 ||
                    setresgid(who, who, who) < 0 || setresuid(who, who, who) < 0)
                        out.setup = errno;
                else {
                        (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* as a user's process is: its /proc/self/fd */
                        out.r = aj_rm_rf(top);
                        out.mode = stat(mnt, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
                        out.kept = stat(inside, &st) == 0;
                }
                _exit(write(pipefd[1], &out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 1);
        }
        close(pipefd[1]);
        RmMountSeen got = { 0 };
        ssize_t n = read(pipefd[0], &got, sizeof(got));
        close(pipefd[0]);
        int wst;
        cr_assert_eq(waitpid(pid, &wst, 0), pid);
        cr_assert_eq(n, (ssize_t)sizeof(got));
        if (got.setup)
                cr_skip_test("cannot mount a tmpfs in a mount namespace of its own as root (%s)", strerror(got.setup));
        cr_expect_eq(got.r, -EXDEV, "aj_rm_rf: %s", strerror(-got.r));
        cr_expect_eq(got.mode, 0500, "the mount's root is mode %04o: rights given across the mount", got.mode);
        cr_expect(got.kept, "a file in the mount below was removed");
        struct stat st;
        cr_expect_eq(lstat(other, &st), -1, "the rest of the tree is removed");
}

/* ---- json-flat: the broker's fast path agrees with jansson or stands aside ---- */

/* The same members in the same order (json_equal() does not look at the order, the events
 * print it). */
static void expect_same_text(json_t *fast, json_t *slow, const char *line)
{
        char *a = json_dumps(fast, JSON_COMPACT), *b = json_dumps(slow, JSON_COMPACT);
        cr_expect_str_eq(a, b, "the same text for %s", line);
        free(a);
        free(b);
}

static json_t *random_value(unsigned *seed, int depth);

/* Values of the kinds it takes, nested up to `max_depth` levels (past its own bound too). */
static json_t *plain_value(unsigned *seed, int depth, int max_depth, int *ret_depth)
{
        int kind = rand_r(seed) % (depth + 1 >= max_depth ? 4 : 6);
        switch (kind) {
        case 0: {
                char str[16];
                size_t n = (size_t)(rand_r(seed) % 12);
                for (size_t i = 0; i < n; i++)
                        do
                                str[i] = (char)(0x20 + rand_r(seed) % 95);
                        while (str[i] == '"' || str[i] == '\\');
                return json_stringn(str, n);
        }
        case 1:
                return json_integer(rand_r(seed) % 3 ? rand_r(seed) % 1000
                                                     : (json_int_t)(rand_r(seed) % 100000000) * 1000000007LL);
        case 2:
                return rand_r(seed) % 3 == 0 ? json_null() : json_boolean(rand_r(seed) % 2);
        case 3:
                return json_integer(0);
        case 4: {
                json_t *a = json_array();
                *ret_depth = depth + 1 > *ret_depth ? depth + 1 : *ret_depth; /* levels, the line's own too */
                for (int i = rand_r(seed) % 4; i > 0; i--)
                        json_array_append_new(a, plain_value(seed, depth + 1, max_depth, ret_depth));
                return a;
        }
        default: {
                json_t *o = json_object();
                *ret_depth = depth + 1 > *ret_depth ? depth + 1 : *ret_depth;
                for (int i = rand_r(seed) % 5; i > 0; i--) {
                        char k[8];
                        snprintf(k, sizeof(k), "k%d", rand_r(seed) % 100);
                        json_object_set_new(o, k, plain_value(seed, depth + 1, max_depth, ret_depth));
                }
                return o;
        }
        }
}

/* Whatever the line, it takes it as jansson reads it or leaves it: random lines of what it
 * takes (as jansson prints them, compact or indented), nested deeper than it goes too, and
 * of anything (escapes, reals, negative numbers, non-ASCII). */
Test(json_flat, random_lines_as_jansson_or_left)
{
        unsigned seed = 2026;
        size_t taken = 0;
        for (int i = 0; i < 20000; i++) {
                int depth = 1;
                json_t *o = json_object();
                json_object_set_new(o, "id", json_integer(i));
                json_object_set_new(o, "args", i % 2 ? plain_value(&seed, 1, 10, &depth) : random_value(&seed, 1));
                char *line = json_dumps(o, i % 3 ? JSON_COMPACT : JSON_INDENT(1));
                json_decref(o);
                json_error_t je;
                json_t *fast = NULL, *slow = json_loadb(line, strlen(line), JSON_REJECT_DUPLICATES, &je);
                int r = aj_json_load_flat(line, strlen(line), &fast);
                cr_assert_geq(r, 0);
                if (r == 1) {
                        cr_assert_not_null(slow, "%s", line);
                        cr_assert(json_equal(fast, slow), "%s", line);
                        expect_same_text(fast, slow, line);
                        taken++;
                } else {
                        cr_assert_null(fast);
                        cr_assert(i % 2 == 0 || depth > AJ_JSON_FLAT_MAX_DEPTH, "left (depth %d): %s", depth, line);
                }
                json_decref(fast);
                json_decref(slow);
                free(line);
        }
        cr_expect_gt(taken, 9000, "taken: %zu", taken);
}

Test(json_flat, agrees_with_jansson_on_what_it_takes)
{
        static const char *const taken[] = {
                "{}", " { } ",
                "{\"id\":1,\"v\":1,\"op\":\"tokens\",\"gen_ai.request.model\":\"gpt-4o\","
                "\"gen_ai.usage.input_tokens\":1200,\"gen_ai.usage.output_tokens\":0}",
                "{ \"id\" : \"a b\" ,\t\"v\":1 ,\"x\":\"\"}\r", "{\"n\":999999999999999999}", "{\"\":0}",
                "{\"a\":null,\"b\":true,\"c\":false}", "{\"a\":{},\"b\":[],\"c\":[ ]}",
                "{\"id\":1,\"v\":1,\"op\":\"tool\",\"gen_ai.tool.name\":\"crm.update\","
                "\"gen_ai.tool.call.arguments\":{\"record\":42,\"name\":\"x\",\"z\":[1,[2,{\"a\":null}],\"\"]}}",
                /* the line's object and 7 more levels */
                "{\"a\":[[[[[[[1]]]]]]]}", "{\"a\":{\"a\":1},\"b\":{\"a\":2}}", /* the same key in two objects */
        };
        for (size_t i = 0; i < ARRAY_SIZE(taken); i++) {
                json_t *fast = NULL;
                cr_assert_eq(aj_json_load_flat(taken[i], strlen(taken[i]), &fast), 1, "taken: %s", taken[i]);
                json_error_t je;
                json_t *slow = json_loadb(taken[i], strlen(taken[i]), JSON_REJECT_DUPLICATES, &je);
                cr_assert_not_null(slow, "%s", taken[i]);
                cr_expect(json_equal(fast, slow), "the same object for %s", taken[i]);
                expect_same_text(fast, slow, taken[i]);
                json_decref(fast);
                json_decref(slow);
        }
}

Test(json_flat, leaves_everything_else_to_jansson)
{
        /* Valid JSON it does not take (jansson decides), and invalid JSON (jansson's error). */
        static const char *const left[] = {
                "{\"a\":1,\"a\":2}",           /* duplicate: jansson refuses it, with its message */
                "{\"a\":\"x\\\"y\"}",          /* an escape */
                "{\"a\":\"\xc3\xa9\"}",        /* non-ASCII */
                "{\"\xc3\xa9\":1}",            /* a non-ASCII key */
                "{\"a\":-1}",                  /* negative */
                "{\"a\":1.5}",                 /* real */
                "{\"a\":1e3}",                 /* real */
                "{\"a\":01}",                  /* a leading zero: invalid */
                "{\"a\":9999999999999999999}", /* past int64: jansson says so */
                "{\"a\":nul}",
                "{\"a\":nullx}",
                "{\"a\":True}",
                "{\"a\":[1,]}",
                "{\"a\":[1}",
                "{\"a\":{\"b\":1,\"b\":2}}", /* a duplicate further in */
                "{\"a\":[\"x\\\"y\"]}",      /* an escape further in */
                "{\"a\":[-1]}",
                "{\"a\":{\"b\":1.5}}",
                "{\"a\":[[[[[[[[1]]]]]]]]}", /* 9 levels: deeper than it goes */
                "[1]",
                "{\"a\":1,}",
                "{\"a\":1} x",
                "{\"a\":1",
                "{\"a\" 1}",
                "{\"a\":\"x",
                "{\"a\":\"\t\"}", /* a raw control character: invalid */
                "",
                "{",
        };
        for (size_t i = 0; i < ARRAY_SIZE(left); i++) {
                json_t *fast = NULL;
                cr_expect_eq(aj_json_load_flat(left[i], strlen(left[i]), &fast), 0, "left to jansson: %s", left[i]);
                cr_expect_null(fast);
        }
        /* A NUL inside the line is never taken. */
        const char nul[] = "{\"a\":\"x\0y\"}";
        json_t *fast = NULL;
        cr_expect_eq(aj_json_load_flat(nul, sizeof(nul) - 1, &fast), 0);
}

/* ---- json-fast: jansson's compact text, byte for byte ---- */

static json_t *random_value(unsigned *seed, int depth)
{
        static const double reals[] = {
                0.0,  -0.0,          1.0,       0.1,   1e-6,   3.4125e-06,         2.5e-6 * 1200,
                1e21, 123456789.125, -7.5e-300, 1e308, 5e-324, 0.30000000000000004
        };
        int kind = rand_r(seed) % (depth > 3 ? 5 : 7);
        switch (kind) {
        case 0: {
                char s[24];
                size_t n = (size_t)(rand_r(seed) % 20);
                for (size_t i = 0; i < n; i++)
                        s[i] = (char)(1 + rand_r(seed) % 127); /* every ASCII byte but NUL */
                return json_stringn(s, n);
        }
        case 1:
                return json_integer((json_int_t)rand_r(seed) * (rand_r(seed) % 2 ? -1 : 1) *
                                    (rand_r(seed) % 3 ? 1 : 1000000007LL));
        case 2:
                return json_real(reals[rand_r(seed) % ARRAY_SIZE(reals)] * (rand_r(seed) % 2 ? 1 : 1.0 / 3));
        case 3:
                return rand_r(seed) % 3 == 0 ? json_null() : json_boolean(rand_r(seed) % 2);
        case 4:
                return json_string("caf\xc3\xa9 \xe2\x82\xac"); /* raw UTF-8 */
        case 5: {
                json_t *a = json_array();
                for (int i = rand_r(seed) % 4; i > 0; i--)
                        json_array_append_new(a, random_value(seed, depth + 1));
                return a;
        }
        default: {
                json_t *o = json_object();
                for (int i = rand_r(seed) % 5; i > 0; i--) {
                        char k[8];
                        snprintf(k, sizeof(k), "k%d\"%c", i, (char)(1 + rand_r(seed) % 127));
                        json_object_set_new(o, k, random_value(seed, depth + 1));
                }
                return o;
        }
        }
}

/* aj_json_format_g() against glibc's "%.*g" itself: every precision, doubles drawn from all
 * bit patterns, the broker's costs (pico-dollars over 10^12), integers, powers of two and ten,
 * and exact ties (a 13-digit integer ending in 5 at 12 digits: to even). */
static void expect_g_as_glibc(double v, int precision, size_t *fast)
{
        char want[64], got[64];
        snprintf(want, sizeof(want), "%.*g", precision, v);
        int n = aj_json_format_g(got, sizeof(got), v, precision);
        if (n < 0)
                return; /* left to snprintf() */
        (*fast)++;
        cr_assert_eq((size_t)n, strlen(got));
        cr_assert_str_eq(got, want, "%%.%dg of %a", precision, v);
}

static uint64_t next_u64(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

Test(json_fast, real_digits_as_glibc)
{
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        size_t fast = 0;
        for (int i = 0; i < 300000; i++) {
                uint64_t r = next_u64(&x);
                double v;
                memcpy(&v, &r, sizeof(v));
                int p = 1 + (int)(next_u64(&x) % 17);
                expect_g_as_glibc(v, p, &fast);
                /* The same mantissa within the range taken here. */
                uint64_t in = (r & ~(0x7ffULL << 52)) | (uint64_t)(1075 - 128 + next_u64(&x) % 193) << 52;
                memcpy(&v, &in, sizeof(v));
                expect_g_as_glibc(v, p, &fast);
                expect_g_as_glibc(v, 12, &fast);
                expect_g_as_glibc(v, 17, &fast);
                /* A cost: pico-dollars, as the meter holds them. */
                double usd = (double)(next_u64(&x) >> (next_u64(&x) % 60)) / 1000000000000.0;
                expect_g_as_glibc(usd, 12, &fast);
                expect_g_as_glibc(usd, 17, &fast);
                expect_g_as_glibc(-usd, 17, &fast);
                /* Integers, and ties at 12 digits. */
                expect_g_as_glibc((double)(next_u64(&x) >> 11), p, &fast);
                double tie = (double)(1000000000000ULL + next_u64(&x) % 9000000000000ULL / 10 * 10 + 5);
                expect_g_as_glibc(tie, 12, &fast);
        }
        double p2 = 1.0, p10 = 1.0;
        for (int i = 0; i < 60; i++, p2 *= 2, p10 *= 10)
                for (int p = 1; p <= 17; p++) {
                        expect_g_as_glibc(p2, p, &fast);
                        expect_g_as_glibc(1 / p2, p, &fast);
                        expect_g_as_glibc(p10, p, &fast);
                        expect_g_as_glibc(1 / p10, p, &fast);
                        expect_g_as_glibc(p10 - 1, p, &fast);
                        expect_g_as_glibc(0.1 * i, p, &fast);
                }
        static const double edge[] = { 0.0,  -0.0,          0.5,       0.125,  0.375,          2.5,
                                       9.5,  99.5,          0.00001,   0.0001, 999999999999.5, 0.30000000000000004,
                                       1e21, 123456789.125, 3.4125e-06 };
        for (size_t i = 0; i < ARRAY_SIZE(edge); i++)
                for (int p = 1; p <= 17; p++)
                        expect_g_as_glibc(edge[i], p, &fast);
        cr_expect_gt(fast, 2000000, "the fast path took %zu", fast);
        /* What it leaves to snprintf(). */
        char b[64];
        cr_expect_eq(aj_json_format_g(b, sizeof(b), 1.0 / 0.0, 17), -1);
        cr_expect_eq(aj_json_format_g(b, sizeof(b), 5e-324, 17), -1);
        cr_expect_eq(aj_json_format_g(b, sizeof(b), 1e300, 17), -1);
        cr_expect_eq(aj_json_format_g(b, sizeof(b), 1.0, 18), -1);
}

Test(json_fast, same_text_as_jansson)
{
        unsigned seed = 14;
        size_t fast_taken = 0, sorted_taken = 0;
        for (int i = 0; i < 3000; i++) {
                json_t *v = random_value(&seed, 0);
                for (int ascii = 0; ascii < 2; ascii++) {
                        int precision = i % 2 ? 12 : 0;
                        size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | (ascii ? JSON_ENSURE_ASCII : 0) |
                                       (precision ? JSON_REAL_PRECISION(precision) : 0);
                        char want[8192], got[8192];
                        size_t wn = json_dumpb(v, want, sizeof(want), flags);
                        cr_assert(wn > 0 && wn < sizeof(want));
                        ssize_t gn = aj_json_dump_fast(v, got, sizeof(got), ascii, precision);
                        if (gn < 0) {
                                cr_assert(ascii, "only a non-ASCII string under ENSURE_ASCII is left to jansson");
                                continue;
                        }
                        fast_taken++;
                        cr_assert_eq((size_t)gn, wn, "length of %.*s", (int)wn, want);
                        cr_assert(memcmp(got, want, wn) == 0, "want %.*s got %.*s", (int)wn, want, (int)gn, got);
                        /* Too small a buffer: the length needed, as json_dumpb() says it. */
                        cr_assert_eq(aj_json_dump_fast(v, got, wn / 2, ascii, precision), gn);
                        /* JSON_SORT_KEYS (the tool arguments' canonical form). */
                        wn = json_dumpb(v, want, sizeof(want), flags | JSON_SORT_KEYS);
                        gn = aj_json_dump_fast_sorted(v, got, sizeof(got), ascii, precision);
                        cr_assert_eq((size_t)gn, wn, "sorted: length of %.*s", (int)wn, want);
                        cr_assert(memcmp(got, want, wn) == 0, "sorted: want %.*s got %.*s", (int)wn, want, (int)gn,
                                  got);
                        sorted_taken++;
                }
                json_decref(v);
        }
        cr_expect_gt(fast_taken, 4000, "most values are the fast writer's (%zu)", fast_taken);
        cr_expect_eq(sorted_taken, fast_taken);
}

/* Keys sorted as jansson sorts them: by their bytes, a prefix first, non-ASCII after ASCII;
 * in nested objects too; an object past AJ_JSON_SORT_MAX_KEYS members is left to jansson. */
Test(json_fast, sorted_keys_as_jansson)
{
        json_t *v = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:{s:i, s:i}, s:[{s:i, s:i}]}", "ab", 1, "a", 2,
                              "a\xc3\xa9", 3, "B", 4, "", 5, "a\"", 6, "z", "y", 1, "x", 2, "m", "q", 1, "p", 2);
        cr_assert_not_null(v);
        char want[1024], got[1024];
        size_t wn = json_dumpb(v, want, sizeof(want), JSON_COMPACT | JSON_SORT_KEYS);
        ssize_t gn = aj_json_dump_fast_sorted(v, got, sizeof(got), false, 0);
        cr_assert_eq((size_t)gn, wn);
        cr_assert(memcmp(got, want, wn) == 0, "want %.*s got %.*s", (int)wn, want, (int)gn, got);
        cr_expect(memcmp(got, "{\"\":5,\"B\":4,\"a\":2,\"a\\\"\":6,\"ab\":1,\"a\xc3\xa9\":3,\"m\":[{\"p\":2,\"q\":1}]",
                         (size_t)gn > 60 ? 60 : (size_t)gn) == 0,
                  "%.*s", (int)gn, got);
        json_decref(v);
        json_t *many = json_object();
        for (int i = 0; i <= AJ_JSON_SORT_MAX_KEYS; i++) {
                char k[16];
                snprintf(k, sizeof(k), "k%d", i);
                json_object_set_new(many, k, json_integer(i));
        }
        cr_expect_eq(aj_json_dump_fast_sorted(many, got, sizeof(got), false, 0), -1);
        json_decref(many);
}

/* The watchdog's messages: a byte, with an fd attached or none; one cut short is refused
 * and its fd closed, never leaked into the receiver. */
Test(fd, send_and_receive_with_an_fd)
{
        int sp[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        cr_assert_eq(aj_send_with_fd(sp[0], "H", 1, devnull), 0);
        cr_assert_eq(aj_send_with_fd(sp[0], "D", 1, -1), 0);
        char c = 0;
        int fd = -2;
        cr_assert_eq(aj_recv_with_fd(sp[1], &c, 1, &fd), 1);
        cr_assert_eq(c, 'H');
        struct stat a, b;
        cr_assert(fd >= 0 && fstat(fd, &a) == 0 && fstat(devnull, &b) == 0 && a.st_rdev == b.st_rdev);
        cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        close(fd);
        cr_assert_eq(aj_recv_with_fd(sp[1], &c, 1, &fd), 1);
        cr_assert(c == 'D' && fd == -1);
        /* Longer than asked for: refused, its fd closed. */
        cr_assert_eq(aj_send_with_fd(sp[0], "HH", 2, devnull), 0);
        cr_assert_eq(aj_recv_with_fd(sp[1], &c, 1, &fd), -EBADMSG);
        cr_assert_eq(fd, -1);
        close(sp[0]);
        cr_assert_eq(aj_recv_with_fd(sp[1], &c, 1, &fd), 0, "the peer's end: 0");
        close(sp[1]);
        close(devnull);
}

/* In a forked child: 0 when the page at p is mapped, 1 when it is not (msync: ENOMEM). */
static int child_sees(void *p, const char *want)
{
        pid_t pid = fork();
        if (pid == 0) {
                if (msync(p, 1, MS_ASYNC) < 0)
                        _exit(errno == ENOMEM ? 1 : 2);
                _exit(strcmp(p, want) == 0 ? 0 : 3);
        }
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* The jail's config: a child forked (cloned) before keeps seeing what is written after; one
 * forked after aj_shared_keep_from_forks() (the workspace's hasher) has no copy at all. */
Test(shared, kept_from_later_forks)
{
        AjShared s = AJ_SHARED_INIT;
        cr_assert_eq(aj_shared_map(&s, 1u << 20), 0);
        char *text = aj_shared_alloc(&s, 64);
        cr_assert_not_null(text);
        int sp[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        pid_t early = fork();
        if (early == 0) {
                char c;
                _exit(read(sp[1], &c, 1) == 1 && strcmp(text, "after") == 0 ? 0 : 1);
        }
        cr_assert_eq(aj_shared_keep_from_forks(&s), 0);
        strcpy(text, "after");
        cr_assert_eq(write(sp[0], "g", 1), 1);
        int status = 0;
        cr_assert_eq(waitpid(early, &status, 0), early);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child forked before reads what was written after");
        cr_expect_eq(child_sees(text, "after"), 1, "a child forked after has no copy");
        cr_expect_str_eq(text, "after", "the parent keeps it");
        close(sp[0]);
        close(sp[1]);
        aj_shared_unmap(&s);
        cr_expect_eq(aj_shared_keep_from_forks(&s), -EBADF);
}

/* ---- json-scan: values and depth before jansson builds them ---- */

Test(json_scan, counts_values_and_depth)
{
        /* clang-format off */
        static const struct {
                const char *text;
                unsigned long long values;
                unsigned depth;
        } cases[] = {
                { "", 0, 0 },
                { "  \n\t", 0, 0 },
                { "{}", 1, 1 },
                { "[]", 1, 1 },
                { "0", 1, 0 },
                { "-1.5e+10", 1, 0 },
                { "true", 1, 0 },
                { "[true,false,null]", 4, 1 },
                { "\"\"", 1, 0 },
                { "{\"a\":1}", 3, 1 },                              /* the key is a value */
                { "[1,2,[3,{\"b\":null}]]", 8, 3 },
                { "[-0.5, 1e3 ,2E-7]", 4, 1 },
                /* brackets, quotes and backslashes inside strings are text */
                { "[\"{[\\\"]}\"]", 2, 1 },                        /* ["{[\"]}"] */
                { "[\"a\\\\\",\"b\"]", 3, 1 },                     /* ["a\\","b"]: the quote after \\ ends it */
                { "[\"a\\\\\\\"]\",1]", 3, 1 },                    /* ["a\\\"]",1] */
                { "{\"k\\\"}\":\"v\\\\\"}", 3, 1 },                 /* {"k\"}":"v\\"} */
                { "[\"\\u005b\\u007b\"]", 2, 1 },
                /* truncated or malformed: counted as far as it goes, the parser refuses it */
                { "{\"a\":\"unterminated [[[", 3, 1 },
                { "[[[", 3, 3 },
                { "]]]{", 1, 1 },
                { "[1 2 3]", 4, 1 },
                { "[nul", 2, 1 },
        };
        /* clang-format on */
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                AjJsonShape sh = { .values = 99, .depth = 99 };
                cr_assert_eq(aj_json_scan(cases[i].text, strlen(cases[i].text), 1000, 100, &sh), 0, "%s",
                             cases[i].text);
                cr_expect_eq(sh.values, cases[i].values, "%s: %llu values", cases[i].text,
                             (unsigned long long)sh.values);
                cr_expect_eq(sh.depth, cases[i].depth, "%s: depth %u", cases[i].text, sh.depth);
                cr_expect_eq(aj_json_scan(cases[i].text, strlen(cases[i].text), 1000, 100, NULL), 0);
        }
}

Test(json_scan, bounds_exactly_at_and_past)
{
        const char *t = "[1,\"two\",{\"three\":[]}]"; /* 6 values, 3 deep */
        AjJsonShape sh;
        cr_expect_eq(aj_json_scan(t, strlen(t), 6, 3, &sh), 0, "at both bounds");
        cr_expect_eq(sh.values, 6);
        cr_expect_eq(sh.depth, 3);
        cr_expect_eq(aj_json_scan(t, strlen(t), 5, 3, &sh), -E2BIG, "one value past");
        cr_expect_eq(aj_json_scan(t, strlen(t), 6, 2, &sh), -ELOOP, "one level past");
        cr_expect_eq(aj_json_scan("[]", 2, 0, 10, NULL), -E2BIG, "no value allowed");
        cr_expect_eq(aj_json_scan("", 0, 0, 0, NULL), 0, "nothing, nothing allowed");
        cr_expect_eq(aj_json_scan("7", 1, 1, 0, NULL), 0, "a scalar has no depth");
        cr_expect_eq(aj_json_scan("[7]", 3, 10, 0, NULL), -ELOOP);
        /* closing more than was opened does not buy depth */
        cr_expect_eq(aj_json_scan("]]]]]][[[", 9, 10, 2, NULL), -ELOOP);
        /* the length is the text's: a NUL is a byte like any, and nothing past len is read */
        cr_expect_eq(aj_json_scan("[[[[", 2, 10, 2, &sh), 0);
        cr_expect_eq(sh.depth, 2);
}

Test(json_scan, refuses_a_16_mib_body_of_empty_objects_early_and_fast)
{
        size_t n = (16u << 20) / 3, len = 0;
        char *b = malloc(3 * n + 2);
        cr_assert_not_null(b);
        b[len++] = '[';
        for (size_t i = 0; i < n; i++) {
                memcpy(b + len, "{},", 3);
                len += 3;
        }
        b[len - 1] = ']';
        AjJsonShape sh;
        cr_expect_eq(aj_json_scan(b, len, (1u << 20) - 1, 128, &sh), -E2BIG);
        cr_expect_eq(aj_json_scan(b, len, 1u << 23, 128, &sh), 0);
        cr_expect_eq(sh.values, n + 1);
        cr_expect_eq(sh.depth, 2);
        /* and as deep as it is long: the first level past the bound refuses it */
        memset(b, '[', len);
        cr_expect_eq(aj_json_scan(b, len, 1u << 30, 128, &sh), -ELOOP);
        free(b);
}
