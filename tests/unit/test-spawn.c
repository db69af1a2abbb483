/* SPDX-License-Identifier: Apache-2.0 */
/* The mount trees' hand-over from the supervisor to the jail's child (AJ_MSG_TREES over the
 * sync socket): what arrives is placed by step, and messages that do not add up are
 * refused whole. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"
#include "util/shared.h"

static int sp[2];

static void setup(void) { cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0); }

static void teardown(void)
{
        close(sp[0]);
        close(sp[1]);
}

TestSuite(spawn, .init = setup, .fini = teardown);

/* One AJ_MSG_TREES message as the supervisor lays it out: header, step indexes, fds. */
static void send_trees(int32_t type, const uint32_t *steps, size_t n_steps, const int *fds, size_t n_fds, bool last)
{
        char buf[sizeof(AjChildMsg) + AJ_SPAWN_TREES_PER_MSG * sizeof(uint32_t)];
        AjChildMsg m = { .type = type, .step = (int32_t)n_steps, .status = last };
        memcpy(buf, &m, sizeof(m));
        if (n_steps)
                memcpy(buf + sizeof(m), steps, n_steps * sizeof(uint32_t));
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(m) + n_steps * sizeof(uint32_t) };
        union {
                char c[CMSG_SPACE(AJ_SPAWN_TREES_PER_MSG * sizeof(int))];
                struct cmsghdr align;
        } u = { 0 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (n_fds) {
                mh.msg_control = u.c;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        }
        cr_assert_geq(sendmsg(sp[0], &mh, 0), 0);
}

static bool same_file(int a, int b)
{
        struct stat x, y;
        return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

Test(spawn, trees_placed_by_step_across_messages)
{
        int tmp = open("/tmp", O_PATH | O_CLOEXEC), root = open("/", O_PATH | O_CLOEXEC);
        cr_assert(tmp >= 0 && root >= 0);
        send_trees(AJ_MSG_TREES, (uint32_t[]){ 3 }, 1, (int[]){ tmp }, 1, false);
        send_trees(AJ_MSG_TREES, (uint32_t[]){ 0 }, 1, (int[]){ root }, 1, true);
        int *trees = NULL;
        cr_assert_eq(aj_spawn_recv_trees(sp[1], 5, &trees), 0);
        cr_expect(same_file(trees[3], tmp), "step 3 is /tmp");
        cr_expect(same_file(trees[0], root), "step 0 is /");
        cr_expect(trees[1] == -1 && trees[2] == -1 && trees[4] == -1, "no tree for the other steps");
        close(trees[0]);
        close(trees[3]);
        free(trees);
        close(tmp);
        close(root);
}

Test(spawn, no_trees_is_one_empty_message)
{
        send_trees(AJ_MSG_TREES, NULL, 0, NULL, 0, true);
        int *trees = NULL;
        cr_assert_eq(aj_spawn_recv_trees(sp[1], 2, &trees), 0);
        cr_expect(trees[0] == -1 && trees[1] == -1);
        free(trees);
}

Test(spawn, trees_that_do_not_add_up_are_refused)
{
        int fd = open("/", O_PATH | O_CLOEXEC);
        int *trees = NULL;
        struct {
                const char *what;
                int32_t type;
                uint32_t steps[2];
                size_t n_steps, n_fds;
        } bad[] = {
                { "a step past the plan", AJ_MSG_TREES, { 7 }, 1, 1 },
                { "the same step twice", AJ_MSG_TREES, { 1, 1 }, 2, 2 },
                { "fewer fds than steps", AJ_MSG_TREES, { 0, 1 }, 2, 1 },
                { "more fds than steps", AJ_MSG_TREES, { 0 }, 1, 2 },
                { "another message", AJ_MSG_JOINED, { 0 }, 0, 0 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                send_trees(bad[i].type, bad[i].steps, bad[i].n_steps, (int[]){ fd, fd }, bad[i].n_fds, true);
                cr_expect_eq(aj_spawn_recv_trees(sp[1], 3, &trees), -EPROTO, "%s", bad[i].what);
        }
        close(sp[0]);
        sp[0] = -1;
        cr_expect_eq(aj_spawn_recv_trees(sp[1], 3, &trees), -EPROTO, "the supervisor gone");
        close(fd);
}

/* The jail is cloned before its config exists: the config is copied afterwards into memory
 * mapped before the fork, where the child finds it at the same addresses. */
Test(spawn, config_shared_with_a_child_forked_before)
{
        AjShared s = AJ_SHARED_INIT;
        cr_assert_eq(aj_shared_map(&s, 1 << 20), 0);
        AjSpawnConfig *dst = aj_shared_alloc(&s, sizeof(*dst));
        cr_assert_not_null(dst);
        dst->cgroup_v2_fd = 42;
        int go[2];
        cr_assert_eq(pipe(go), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char c;
                if (read(go[0], &c, 1) != 1)
                        _exit(10);
                bool inside = (char *)dst->argv >= s.base && (char *)dst->argv < s.base + s.size &&
                              dst->argv[1] >= s.base && dst->argv[1] < s.base + s.size;
                bool ok = dst->argv && strcmp(dst->argv[0], "/bin/echo") == 0 && strcmp(dst->argv[1], "hi") == 0 &&
                          !dst->argv[2] && strcmp(dst->envp[0], "PATH=/usr/bin") == 0 && !dst->envp[1] &&
                          strcmp(dst->hostname, "agentjail") == 0 && dst->seccomp->len == 2 &&
                          dst->seccomp->filter[1].k == 7 && dst->uid == 1000 && dst->stdout_fd == 5 &&
                          dst->cgroup_v2_fd == 42 && !dst->mount;
                _exit(!inside ? 11 : ok ? 0 : 12);
        }
        /* After the fork, as the supervisor plans: none of this exists in the child's copy. */
        char *argv[] = { "/bin/echo", "hi", NULL }, *envp[] = { "PATH=/usr/bin", NULL };
        struct sock_filter f[2] = { { .k = 3 }, { .k = 7 } };
        AjBpfProgram prog = { .filter = f, .len = 2 };
        AjSpawnConfig src = { .uid = 1000,
                              .hostname = "agentjail",
                              .argv = argv,
                              .envp = envp,
                              .seccomp = &prog,
                              .stdout_fd = 5,
                              .cgroup_v2_fd = -1 };
        cr_assert_eq(aj_spawn_config_share(&src, &s, dst), 0);
        cr_assert_eq(dst->cgroup_v2_fd, 42, "the clone's own fields are kept");
        cr_assert_eq(write(go[1], "g", 1), 1);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child saw the config (exit %d)", WEXITSTATUS(st));
        close(go[0]);
        close(go[1]);
        aj_shared_unmap(&s);
}

Test(spawn, config_larger_than_its_region_is_refused)
{
        AjShared s = AJ_SHARED_INIT;
        cr_assert_eq(aj_shared_map(&s, 4096), 0);
        AjSpawnConfig *dst = aj_shared_alloc(&s, sizeof(*dst));
        char *big = malloc(8192);
        memset(big, 'x', 8191);
        big[8191] = 0;
        char *envp[] = { big, NULL };
        AjSpawnConfig src = { .envp = envp };
        cr_assert_eq(aj_spawn_config_share(&src, &s, dst), -E2BIG);
        cr_assert_null(dst->envp, "nothing half copied is published");
        free(big);
        aj_shared_unmap(&s);
}

/* The child failed before it read what the supervisor sent (JOINED, trees) and closed its
 * end: its launch error, sent before, still reaches the supervisor (the kernel reports the
 * unread messages as ECONNRESET once, before it; read as the end, the error was lost and
 * the run ended with status 125 and no message, under load 1 run in 4). */
Test(spawn, launch_error_survives_unread_messages)
{
        AjChildMsg joined = { .type = AJ_MSG_JOINED };
        AjChildMsg err = { .type = AJ_MSG_ERROR, .stage = AJ_STAGE_MOUNT, .err = ENOENT, .step = 7 };
        cr_assert_eq(send(sp[0], &joined, sizeof(joined), 0), (ssize_t)sizeof(joined));
        cr_assert_eq(send(sp[1], &err, sizeof(err), 0), (ssize_t)sizeof(err));
        close(sp[1]);
        sp[1] = -1;
        AjChildMsg m = { 0 };
        cr_assert_eq(aj_spawn_recv(sp[0], &m, NULL), 1);
        cr_expect(m.type == AJ_MSG_ERROR && m.stage == AJ_STAGE_MOUNT && m.err == ENOENT && m.step == 7,
                  "the launch error: type %d stage %d err %d step %d", m.type, m.stage, m.err, m.step);
        cr_expect_eq(aj_spawn_recv(sp[0], &m, NULL), 0, "then the end");
}

/* A root-started jail's user namespace is its host ids' (the kernel charges what its
 * processes hold to the namespace's owner, up to the initial namespace), and the
 * supervisor is itself again after the clone. */
Test(spawn, user_namespace_owned_by_the_run_host_ids)
{
        if (geteuid() != 0)
                cr_skip("needs root (the supervisor's ids switch for the clone)");
        int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0), dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        gid_t egid = getegid();
        AjSpawnConfig cfg = { .cgroup_v2_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
        AjSpawnOwner owner = { .set = true, .uid = 1879113001, .gid = 1879113002 };
        AjSpawnHandle h = { .pidfd = -1, .sync_fd = -1 };
        int r = aj_spawn_clone(&cfg, &owner, &h);
        if (r == -EPERM || r == -ENOSPC)
                cr_skip("no user namespaces here: %s", strerror(-r));
        cr_assert_eq(r, 0, "%s", strerror(-r));

        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)h.pid);
        int ns = open(path, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(ns, 0);
        uid_t uid = 0;
        cr_assert_eq(ioctl(ns, NS_GET_OWNER_UID, &uid), 0, "%s", strerror(errno));
        cr_expect_eq(uid, 1879113001, "owned by the run's host uid, not root: %u", (unsigned)uid);
        close(ns);

        cr_expect_eq(geteuid(), 0, "the supervisor's euid is root's again");
        cr_expect_eq(getegid(), egid);
        cr_expect_eq(prctl(PR_GET_SECUREBITS, 0, 0, 0, 0), bits, "its securebits put back");
        cr_expect_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), dumpable, "its dumpable flag put back");
        uid_t ru, eu, su;
        cr_assert_eq(getresuid(&ru, &eu, &su), 0);
        cr_expect(ru == 0 && eu == 0 && su == 0);

        /* Without GO the child exits (125) when its end of the sync socket closes. */
        aj_spawn_handle_done(&h);
        int status = 0;
        cr_assert_eq(waitpid(h.pid, &status, 0), h.pid);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 125, "status %#x", status);
}
