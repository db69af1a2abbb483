/* SPDX-License-Identifier: Apache-2.0 */
/* The mount trees' hand-over from the supervisor to the jail's child (AJ_MSG_TREES over the
 * sync socket): what arrives is placed by step, and messages that do not add up are
 * refused whole. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spawn.h"

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
