/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The syscall-heavy items of the agent's-own-work benchmark (scripts/bench --only work).
 * Static, so that it runs the same on the host, in a bwrap root and in a jail.
 *
 *   work-bench getppid N       N getppid() calls
 *   work-bench stat N PATH     N stat() calls on PATH (each must succeed)
 *   work-bench open N PATH     N open(O_RDONLY) + close() of PATH
 *
 * Prints `ns_per_call=X` (the loop alone, CLOCK_MONOTONIC); the bench times the whole
 * command from outside as well.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int usage(void)
{
        fprintf(stderr, "usage: work-bench getppid N | stat N PATH | open N PATH\n");
        return 2;
}

int main(int argc, char **argv)
{
        if (argc < 3)
                return usage();
        char *end;
        errno = 0;
        long n = strtol(argv[2], &end, 10);
        if (errno || *end || n <= 0 || n > 1000000000L)
                return usage();
        long long t0 = now_ns();
        if (strcmp(argv[1], "getppid") == 0 && argc == 3) {
                /* The raw syscall: glibc does not cache getppid, but say so plainly. */
                for (long i = 0; i < n; i++)
                        (void)syscall(SYS_getppid);
        } else if (strcmp(argv[1], "stat") == 0 && argc == 4) {
                struct stat st;
                for (long i = 0; i < n; i++)
                        if (stat(argv[3], &st) < 0) {
                                fprintf(stderr, "work-bench: stat %s: %s\n", argv[3], strerror(errno));
                                return 1;
                        }
        } else if (strcmp(argv[1], "open") == 0 && argc == 4) {
                for (long i = 0; i < n; i++) {
                        int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
                        if (fd < 0) {
                                fprintf(stderr, "work-bench: open %s: %s\n", argv[3], strerror(errno));
                                return 1;
                        }
                        close(fd);
                }
        } else {
                return usage();
        }
        printf("ns_per_call=%.1f\n", (double)(now_ns() - t0) / (double)n);
        return 0;
}
