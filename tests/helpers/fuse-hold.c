/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A FUSE filesystem, spoken on /dev/fuse directly, that holds every close of its one file:
 * it does not answer FLUSH until told. The kernel sends FLUSH as a forced request, whose
 * wait no signal ends (request_wait_answer: FR_FORCE), so a process closing that file
 * stays in the kernel, SIGKILLed or frozen, until the flush is answered: integ-cleanup's
 * "process that does not die at once", on cgroup v1 and v2 hosts alike.
 *
 *   fuse-hold MOUNTPOINT STATUS
 *
 * Mounts itself on MOUNTPOINT (root; allow_other, so that a jail's users may open MOUNTPOINT/f)
 * and writes to STATUS, replaced whole at each change, the host pid of each held close, one a
 * line (an empty file once mounted). SIGUSR1 answers every held flush. SIGTERM or SIGINT
 * answers them, unmounts (detached) and exits; so does the kernel's end of the connection.
 * Whatever way it ends, the kernel ends the connection with it and with that every wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define ROOT_ID 1
#define FILE_ID 2
#define FILE_NAME "f"
#define MAX_HELD 64

struct held {
        uint64_t unique;
        uint32_t pid;
};

static struct held held[MAX_HELD];
static size_t n_held;
static const char *status_path;

static void reply(int fd, uint64_t unique, int error, const void *out, size_t size)
{
        struct fuse_out_header h = {
                .len = (uint32_t)(sizeof(h) + size),
                .error = error,
                .unique = unique,
        };
        struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)out, size } };
        /* ENOENT: the request was interrupted and is gone; nothing else is expected. */
        if (writev(fd, iov, size ? 2 : 1) < 0 && errno != ENOENT)
                fprintf(stderr, "fuse-hold: reply to %llu: %s\n", (unsigned long long)unique, strerror(errno));
}

static int write_status(void)
{
        char tmp[4096];
        FILE *f;
        size_t i;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", status_path) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        f = fopen(tmp, "we");
        if (!f)
                return -errno;
        for (i = 0; i < n_held; i++)
                fprintf(f, "%u\n", held[i].pid);
        if (fclose(f) != 0 || rename(tmp, status_path) < 0) {
                fprintf(stderr, "fuse-hold: '%s': %s\n", status_path, strerror(errno));
                return -errno;
        }
        return 0;
}

static void release_all(int fd)
{
        size_t i;

        for (i = 0; i < n_held; i++)
                reply(fd, held[i].unique, 0, NULL, 0);
        n_held = 0;
        write_status();
}

static void fill_attr(uint64_t id, struct fuse_attr *a)
{
        memset(a, 0, sizeof(*a));
        a->ino = id;
        a->mode = id == ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0666;
        a->nlink = id == ROOT_ID ? 2 : 1;
        a->blksize = 4096;
}

static void handle(int fd, const struct fuse_in_header *in, const void *arg)
{
        switch (in->opcode) {
        case FUSE_INIT: {
                const struct fuse_init_in *init = arg;
                struct fuse_init_out out = {
                        .major = FUSE_KERNEL_VERSION,
                        .minor = init->minor < FUSE_KERNEL_MINOR_VERSION ? init->minor : FUSE_KERNEL_MINOR_VERSION,
                        .max_readahead = init->max_readahead,
                        .max_background = 16,
                        .congestion_threshold = 12,
                        .max_write = 4096,
                        .time_gran = 1,
                };
                reply(fd, in->unique, 0, &out, sizeof(out));
                write_status();
                return;
        }
        case FUSE_LOOKUP: {
                struct fuse_entry_out out = { 0 };
                if (in->nodeid != ROOT_ID || strcmp(arg, FILE_NAME) != 0) {
                        reply(fd, in->unique, -ENOENT, NULL, 0);
                        return;
                }
                out.nodeid = FILE_ID;
                fill_attr(FILE_ID, &out.attr);
                reply(fd, in->unique, 0, &out, sizeof(out));
                return;
        }
        case FUSE_GETATTR: {
                struct fuse_attr_out out = { 0 };
                fill_attr(in->nodeid, &out.attr);
                reply(fd, in->unique, 0, &out, sizeof(out));
                return;
        }
        case FUSE_OPEN:
        case FUSE_OPENDIR: {
                struct fuse_open_out out = { .fh = in->nodeid };
                reply(fd, in->unique, 0, &out, sizeof(out));
                return;
        }
        case FUSE_STATFS: {
                struct fuse_statfs_out out = { .st = { .bsize = 4096, .namelen = 255, .frsize = 4096 } };
                reply(fd, in->unique, 0, &out, sizeof(out));
                return;
        }
        case FUSE_READ:
        case FUSE_READDIR:
        case FUSE_RELEASE:
        case FUSE_RELEASEDIR:
        case FUSE_ACCESS:
                /* Empty reads and directories; the rest succeeds. */
                reply(fd, in->unique, 0, NULL, 0);
                return;
        case FUSE_FLUSH:
                if (n_held == MAX_HELD) {
                        reply(fd, in->unique, 0, NULL, 0);
                        return;
                }
                held[n_held++] = (struct held){ .unique = in->unique, .pid = in->pid };
                write_status();
                return;
        case FUSE_INTERRUPT:
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
                /* No reply: an interrupted flush is still held (it is forced: its caller
                 * waits whatever we do). */
                return;
        default:
                reply(fd, in->unique, -ENOSYS, NULL, 0);
        }
}

int main(int argc, char **argv)
{
        static char buf[(1 << 17) + FUSE_MIN_READ_BUFFER];
        char opts[128];
        sigset_t mask;
        int fuse, sfd, rc = 0;

        if (argc != 3) {
                fprintf(stderr, "usage: fuse-hold MOUNTPOINT STATUS\n");
                return 2;
        }
        status_path = argv[2];
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
                perror("fuse-hold: signalfd");
                return 1;
        }
        /* Non-blocking: poll may report a request that is gone by the read (interrupted). */
        fuse = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fuse < 0) {
                perror("fuse-hold: /dev/fuse");
                return 1;
        }
        snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fuse);
        if (mount("ajhold", argv[1], "fuse", MS_NOSUID | MS_NODEV, opts) < 0) {
                fprintf(stderr, "fuse-hold: mount on '%s': %s\n", argv[1], strerror(errno));
                return 1;
        }
        for (;;) {
                struct pollfd p[2] = { { .fd = fuse, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
                ssize_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("fuse-hold: poll");
                        rc = 1;
                        break;
                }
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        if (read(sfd, &si, sizeof(si)) != sizeof(si))
                                continue;
                        release_all(fuse);
                        if (si.ssi_signo != SIGUSR1)
                                break;
                        continue;
                }
                if (!(p[0].revents & (POLLIN | POLLERR | POLLHUP)))
                        continue;
                n = read(fuse, buf, sizeof(buf));
                if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == ENOENT))
                        continue;
                if (n < 0) {
                        /* ENODEV: unmounted, the connection is gone. */
                        if (errno != ENODEV) {
                                perror("fuse-hold: read");
                                rc = 1;
                        }
                        break;
                }
                if ((size_t)n < sizeof(struct fuse_in_header))
                        continue;
                handle(fuse, (const struct fuse_in_header *)buf, buf + sizeof(struct fuse_in_header));
        }
        umount2(argv[1], MNT_DETACH);
        n_held = 0;
        write_status();
        return rc;
}
