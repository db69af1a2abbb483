/* SPDX-License-Identifier: Apache-2.0 */
/* The small shared helpers of src/util/. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/format.h"
#include "util/open-under.h"
#include "util/path.h"

Test(path, join)
{
        static const struct {
                const char *a, *b, *want;
        } cases[] = {
                { "/x", "y", "/x/y" },         { "/x/", "y", "/x/y" },      { "/x", "/y", "/x/y" },
                { "/x/", "//y/z", "/x/y/z" },  { "/x", "", "/x" },          { "", "y", "/y" },
                { "/", "y", "/y" },            { "/x", "../y", "/x/../y" }, { "rel", "a/b", "rel/a/b" },
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

Test(format, error_message)
{
        char *err = NULL;
        cr_expect_eq(aj_error_message(&err, -EINVAL, "bad '%s'", "x"), -EINVAL);
        cr_expect_str_eq(err, "bad 'x'");
        free(err);
        /* A caller that wants no message passes NULL and still gets r back. */
        cr_expect_eq(aj_error_message(NULL, -ENOENT, "unused %d", 1), -ENOENT);
        errno = EACCES;
        err = NULL;
        cr_expect_eq(aj_error_message(&err, -EACCES, "open: %m"), -EACCES);
        cr_expect_str_eq(err, "open: Permission denied");
        free(err);
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
        static const char *const paths[] = { "to-root/etc/passwd", "abs", "sub/up/passwd", "rel/passwd",
                                             "/etc/passwd", "etc/passwd" };
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
