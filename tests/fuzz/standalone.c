/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The driver of a fuzz target without libFuzzer: runs LLVMFuzzerTestOneInput() once per
 * file named on the command line, or per file in a directory named there (not
 * recursive), or on stdin without arguments. Exits 0 when every input ran; a crash is
 * the target's (or a sanitizer's) abort. Used by the unit tests (each target over its
 * corpus) and by builds without clang.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* As libFuzzer's default -max_len is far below it: no input of ours needs more. */
#define INPUT_MAX (1 << 20)

static int run_fd(int fd, const char *name)
{
        uint8_t *buf = malloc(INPUT_MAX);
        size_t len = 0;
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, INPUT_MAX - len);
                if (n < 0) {
                        int r = -errno;
                        fprintf(stderr, "%s: %s\n", name, strerror(errno));
                        free(buf);
                        return r;
                }
                if (n == 0 || (len += (size_t)n) == INPUT_MAX)
                        break;
        }
        /* An exact-size copy, so that a read past the input is an ASan error. */
        uint8_t *data = malloc(len ? len : 1);
        if (!data) {
                free(buf);
                return -ENOMEM;
        }
        memcpy(data, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        return 0;
}

static int run_path(const char *path, unsigned *count)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
                struct dirent **names;
                int n = scandir(path, &names, NULL, alphasort);
                if (n < 0) {
                        fprintf(stderr, "%s: %s\n", path, strerror(errno));
                        return -errno;
                }
                int r = 0;
                for (int i = 0; i < n; i++) {
                        char sub[4096];
                        if (names[i]->d_name[0] != '.' &&
                            snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name) < (int)sizeof(sub)) {
                                struct stat sst;
                                if (r == 0 && stat(sub, &sst) == 0 && S_ISREG(sst.st_mode))
                                        r = run_path(sub, count);
                        }
                        free(names[i]);
                }
                free(names);
                return r;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        int r = run_fd(fd, path);
        close(fd);
        if (r == 0)
                (*count)++;
        return r;
}

int main(int argc, char **argv)
{
        unsigned count = 0;
        if (argc < 2)
                return run_fd(0, "stdin") < 0;
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &count) < 0)
                        return 1;
        fprintf(stderr, "%s: %u inputs ran\n", argv[0], count);
        return count > 0 ? 0 : 1;
}
