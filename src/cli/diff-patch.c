/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail diff --patch`: the changed files' contents as `diff -u` shows them, one diff(1)
 * for up to PATCH_BATCH files. A diff(1) per file cost 2.5 ms each in fork and exec: 5 s for
 * the agent's 2,000 changed files, against 20 ms for the listing.
 *
 * The batch is a pair of trees diff(1) compares with -r: in a tmpfs the child mounts nowhere
 * (gone with it, whatever ends it: nothing on the host to clean up), a/N and b/N are symlinks to /proc/self/fd/FD, each side opened here without following symlinks,
 * so diff can read nothing else. What diff says of a/N and b/N is turned into the labels a
 * per-file diff had (`--label a/NAME`): its own lines are told apart by where they are, as a
 * line of a file's contents always starts with ' ', '+', '-', '@' or '\'. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/diff-patch.h"
#include "util/format.h"
#include "util/macros.h"
#include "util/syscalls.h"

/* The largest side handed to diff(1), by its size as read (a sparse file's holes are read as
 * zeros): diff holds a file whole, and 196 KB of the agent's on disk, sparse to 6 GiB, took
 * 6.3 GB and 41 s of the operator's before it gave up. */
#define PATCH_MAX_BYTES (16u << 20) /* "16 MiB" below */
/* diff(1)'s address space. A side is checked against PATCH_MAX_BYTES when it is opened, but
 * diff reads it later (in a batch, after the files before it), and whoever can write it (the
 * workspace's owner, a process the run left behind) can grow it meanwhile (a truncate to 6 GiB
 * between the check and the read: diff holds what it reads, in the operator's process). Two sides of 16 MiB took at most 480 MB (16 Mi empty
 * lines); past this bound diff fails (its trouble said, as for any file it could not read). */
#define PATCH_DIFF_MAX_AS (2ull << 30)
/* Files per diff(1): both sides' fds are open at once, well under RLIMIT_NOFILE's usual 1024. */
#define PATCH_BATCH 256
/* diff(1)'s own lines here ("diff -r -u -N a/000001 b/000001", "--- a/000001\t2026-..."),
 * read whole to be told apart; longer is a file's line. */
#define OWN_LINE_MAX 256
/* The child could not make the trees (no mount namespace: not root): a diff(1) per file. */
#define EXIT_NO_TREES 3
/* The CPU time diff(1) gets in all, one command's invocations together, in seconds
 * (AGENTJAIL_DIFF_CPU, 1 to PATCH_CPU_MAX): the agent's files decide what diff does, and two
 * of 16 MiB of random lines took it about 100 s; a batch of them, hours of the operator's
 * CPU. Each diff(1) runs with what is left as its RLIMIT_CPU; past it, the files not compared
 * get a note. */
#define PATCH_CPU_DEFAULT 60
#define PATCH_CPU_MAX 86400

typedef struct {
        uint64_t limit_s; /* the whole command's */
        uint64_t used_us; /* what the diff(1)s reaped so far took, user and system */
} CpuBudget;

static uint64_t budget_left_s(const CpuBudget *b)
{
        uint64_t limit_us = b->limit_s * 1000000;
        return b->used_us >= limit_us ? 0 : (limit_us - b->used_us + 999999) / 1000000;
}

typedef struct {
        const AjWsChange *c;
        int fd[2]; /* the old side (lower), the new (upper); -1: none */
        int err;   /* < 0: contents not shown, said so in its place */
} PatchFile;

static void put_escaped(const char *s, size_t len)
{
        char shown[AJ_ESCAPE_MAX];
        for (size_t i = 0, k; i < len;) {
                i += aj_escape_char(s + i, len - i, AJ_ESCAPE_KEEP_TAB, shown, &k);
                fwrite(shown, 1, k, stdout);
        }
}

/* "a/NAME" or "b/NAME": the agent's name, quoted and escaped as in the listing. */
static void put_label(const PatchFile *f, char side)
{
        size_t len = strlen(f->c->path) + 3;
        _cleanup_free_ char *raw = malloc(len);
        _cleanup_free_ char *label = NULL;
        if (raw) {
                snprintf(raw, len, "%c/%s", side, f->c->path);
                label = aj_printable_dup(raw, len - 1, AJ_ESCAPE_QUOTE);
        }
        fputs(label ?: "?", stdout);
}

static void put_note(const PatchFile *f)
{
        _cleanup_free_ char *name = aj_printable_dup(f->c->path, strlen(f->c->path), AJ_ESCAPE_QUOTE);
        printf("(%s: contents not shown: %s)\n", name ?: "?",
               f->err == -ENOENT  ? "diff(1) is missing"
               : f->err == -EFBIG ? "larger than 16 MiB, look at it yourself"
               : f->err == -ETIME ? "diff(1) used up its CPU time (AGENTJAIL_DIFF_CPU), look at it yourself"
                                  : strerror(-f->err));
}

/* After the last file whose patch diff(1) had begun when it used up its CPU time. */
static void put_cut_note(const PatchFile *f)
{
        _cleanup_free_ char *name = aj_printable_dup(f->c->path, strlen(f->c->path), AJ_ESCAPE_QUOTE);
        printf("(%s: its patch above may be cut short: diff(1) used up its CPU time (AGENTJAIL_DIFF_CPU), look at it "
               "yourself)\n",
               name ?: "?");
}

static void close_sides(PatchFile *f)
{
        for (int s = 0; s < 2; s++)
                if (f->fd[s] >= 0)
                        close(f->fd[s]);
        f->fd[0] = f->fd[1] = -1;
}

/* Both sides of one change, opened without following symlinks: 0, -errno, or -EFBIG past
 * PATCH_MAX_BYTES. */
static int open_sides(int lower_fd, int upper_fd, PatchFile *f)
{
        const AjWsChange *c = f->c;
        f->fd[0] = f->fd[1] = -1;
        int r = 0;
        if (c->kind != AJ_WS_ADDED && (f->fd[0] = aj_ws_open_file(lower_fd, c->path)) < 0)
                r = f->fd[0];
        else if (c->kind != AJ_WS_DELETED && (f->fd[1] = aj_ws_open_file(upper_fd, c->path)) < 0)
                r = f->fd[1];
        struct stat st;
        for (int s = 0; r == 0 && s < 2; s++)
                if (f->fd[s] >= 0 && fstat(f->fd[s], &st) == 0 && (uint64_t)st.st_size > PATCH_MAX_BYTES)
                        r = -EFBIG;
        if (r < 0)
                close_sides(f); /* a failed open left its -errno there */
        return r;
}

/* ---- diff(1)'s output, shown ------------------------------------------------------------ */

typedef struct {
        PatchFile *files;
        size_t n;
        size_t noted; /* the files before this one had their note printed */
        size_t cur;   /* the file whose headers come next */
        size_t shown; /* diff(1) has answered for the files before this one */
        enum { CONTENT, OLD_HEADER, NEW_HEADER } state;
} PatchOut;

static void notes_before(PatchOut *o, size_t end)
{
        for (; o->noted < end && o->noted < o->n; o->noted++)
                if (o->files[o->noted].err < 0)
                        put_note(&o->files[o->noted]);
}

/* The file a staged name ("a/000042" at s, len bytes at least) is, or SIZE_MAX. */
static size_t staged_index(const char *s, size_t len, char side, const PatchOut *o)
{
        if (len < 8 || s[0] != side || s[1] != '/')
                return SIZE_MAX;
        size_t v = 0;
        for (int i = 2; i < 8; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return SIZE_MAX;
                v = v * 10 + (size_t)(s[i] - '0');
        }
        return v < o->n ? v : SIZE_MAX;
}

static bool starts(const char *l, size_t len, const char *prefix)
{
        size_t n = strlen(prefix);
        return len >= n && memcmp(l, prefix, n) == 0;
}

/* One of diff(1)'s own lines (or what may be one), without its newline. */
static void own_line(PatchOut *o, const char *l, size_t len)
{
        size_t i;
        if (o->state == OLD_HEADER && starts(l, len, "--- a/")) {
                fputs("--- ", stdout);
                put_label(&o->files[o->cur], 'a');
                putchar('\n');
                o->state = NEW_HEADER;
                return;
        }
        if (o->state == NEW_HEADER && starts(l, len, "+++ b/")) {
                fputs("+++ ", stdout);
                put_label(&o->files[o->cur], 'b');
                putchar('\n');
                o->state = CONTENT;
                return;
        }
        o->state = CONTENT;
        /* "diff -r -u -N a/000001 b/000001", then the two headers */
        if (starts(l, len, "diff ") && len >= 8 && (i = staged_index(l + len - 8, 8, 'b', o)) != SIZE_MAX) {
                notes_before(o, i);
                o->cur = i;
                o->shown = i + 1;
                o->state = OLD_HEADER;
                return;
        }
        /* "Binary files a/000001 and b/000001 differ", as a diff of that file alone says */
        if (starts(l, len, "Binary files ") && (i = staged_index(l + 13, len - 13, 'a', o)) != SIZE_MAX) {
                notes_before(o, i);
                o->shown = i + 1;
                fputs("Binary files ", stdout);
                put_label(&o->files[i], 'a');
                fputs(" and ", stdout);
                put_label(&o->files[i], 'b');
                fputs(" differ\n", stdout);
                return;
        }
        put_escaped(l, len);
        putchar('\n');
}

/* diff(1)'s output, escaped by the one rule (util/format.h), newlines and tabs kept, so a
 * text file's patch is exact and a file with escape sequences cannot reach the operator's
 * terminal; with o, its own lines about the staged names rewritten. A character cut by a
 * read waits for the next. */
static void show_output(int fd, PatchOut *o)
{
        char buf[65536], shown[AJ_ESCAPE_MAX];
        size_t have = 0;
        bool eof = false, line_start = true;
        while (!eof || have) {
                if (!eof) {
                        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                eof = true;
                        else
                                have += (size_t)n;
                }
                size_t i = 0, k;
                while (i < have) {
                        if (line_start && o && (o->state != CONTENT || buf[i] == 'd' || buf[i] == 'B')) {
                                const char *nl = memchr(buf + i, '\n', have - i);
                                size_t len = nl ? (size_t)(nl - (buf + i)) : have - i;
                                /* The rest of the line first; whole, it ends in a newline or
                                 * at the output's end. */
                                if (!nl && !eof && len <= OWN_LINE_MAX)
                                        break;
                                if (len <= OWN_LINE_MAX) {
                                        own_line(o, buf + i, len);
                                        i += len + (nl != NULL);
                                        continue;
                                }
                                o->state = CONTENT;
                        }
                        line_start = false;
                        if (buf[i] == '\n') {
                                putchar('\n');
                                line_start = true;
                                i++;
                                continue;
                        }
                        if (!eof && have - i < 4)
                                break;
                        i += aj_escape_char(buf + i, have - i, AJ_ESCAPE_KEEP_TAB, shown, &k);
                        fwrite(shown, 1, k, stdout);
                }
                memmove(buf, buf + i, have - i);
                have -= i;
        }
        fflush(stdout);
}

/* ---- diff(1) ------------------------------------------------------------------------------ */

/* In the child: the trees a/ and b/ in a tmpfs mounted nowhere (the mount API's detached
 * mount, in an anonymous mount namespace: no path of the host is hidden, nothing is left
 * once the child is gone), made the cwd. */
static int stage_trees(const PatchFile *f, size_t n)
{
        int fs = sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0 || sys_fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0700", 0) < 0 ||
            sys_fsconfig(fs, FSCONFIG_SET_STRING, "size", "1m", 0) < 0 ||
            sys_fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", "1024", 0) < 0 ||
            sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (mnt < 0 || fchdir(mnt) < 0 || mkdir("a", 0700) < 0 || mkdir("b", 0700) < 0)
                return -errno;
        for (size_t i = 0; i < n; i++)
                for (int s = 0; s < 2; s++) {
                        char target[32], name[16];
                        if (f[i].err < 0 || f[i].fd[s] < 0)
                                continue;
                        snprintf(target, sizeof(target), "/proc/self/fd/%d", f[i].fd[s]);
                        snprintf(name, sizeof(name), "%c/%06zu", "ab"[s], i);
                        if (symlink(target, name) < 0)
                                return -errno;
                }
        return 0;
}

/* diff(1) with argv, the n files' fds inherited (staged first with `trees`), its output
 * shown (o: a batch's), within what is left of b's CPU time (its use counted). 0; -ENOENT: no
 * diff(1); -EIO: it reported trouble (on stderr); -ETIME: it used up the CPU time; -EXDEV: no
 * trees could be made; or -errno. */
static int run_diff(char **argv, PatchFile *f, size_t n, bool trees, PatchOut *o, CpuBudget *b)
{
        uint64_t cpu_s = budget_left_s(b);
        if (cpu_s == 0)
                return -ETIME;
        int out[2];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(out[0]);
                close(out[1]);
                return r;
        }
        if (pid == 0) {
                for (size_t i = 0; i < n; i++)
                        for (int s = 0; s < 2; s++)
                                if (f[i].fd[s] >= 0 && fcntl(f[i].fd[s], F_SETFD, 0) < 0)
                                        _exit(2);
                struct rlimit as;
                if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur > PATCH_DIFF_MAX_AS) {
                        as.rlim_cur = PATCH_DIFF_MAX_AS;
                        if (setrlimit(RLIMIT_AS, &as) < 0)
                                _exit(2);
                }
                /* SIGXCPU at the soft limit, SIGKILL a second later. */
                struct rlimit cpu = { .rlim_cur = cpu_s, .rlim_max = cpu_s + 1 };
                if (setrlimit(RLIMIT_CPU, &cpu) < 0)
                        _exit(2);
                if (dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(2);
                if (trees && stage_trees(f, n) < 0)
                        _exit(EXIT_NO_TREES);
                execvp("diff", argv);
                _exit(127);
        }
        close(out[1]);
        show_output(out[0], o);
        close(out[0]);
        int status;
        struct rusage ru = { 0 };
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
                ;
        b->used_us += (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                      (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
        if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGXCPU || WTERMSIG(status) == SIGKILL) &&
            budget_left_s(b) <= 1)
                return -ETIME;
        /* diff: 0 same, 1 different, 2 trouble (its message is on stderr). */
        if (WIFEXITED(status) && WEXITSTATUS(status) <= 1)
                return 0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                return -ENOENT;
        return WIFEXITED(status) && WEXITSTATUS(status) == EXIT_NO_TREES ? -EXDEV : -EIO;
}

/* One file, one diff(1), as its side's fds (/proc/self/fd/N) with the labels. */
static void diff_one(PatchFile *f, CpuBudget *budget)
{
        char fa[32], fb[32];
        _cleanup_free_ char *a = NULL, *b = NULL, *label_a = NULL, *label_b = NULL;
        if (f->err == 0 && (aj_asprintf(&a, "a/%s", f->c->path) < 0 || aj_asprintf(&b, "b/%s", f->c->path) < 0 ||
                            !(label_a = aj_printable_dup(a, strlen(a), AJ_ESCAPE_QUOTE)) ||
                            !(label_b = aj_printable_dup(b, strlen(b), AJ_ESCAPE_QUOTE))))
                f->err = -ENOMEM;
        if (f->err == 0) {
                snprintf(fa, sizeof(fa), f->fd[0] >= 0 ? "/proc/self/fd/%d" : "/dev/null", f->fd[0]);
                snprintf(fb, sizeof(fb), f->fd[1] >= 0 ? "/proc/self/fd/%d" : "/dev/null", f->fd[1]);
                char *argv[] = { "diff", "-u", "--label", label_a, "--label", label_b, fa, fb, NULL };
                f->err = run_diff(argv, f, 1, false, NULL, budget);
        }
        if (f->err < 0)
                put_note(f);
}

/* AGENTJAIL_DIFF_CPU, or the default (a bad value said and not taken). */
static uint64_t cpu_limit_from_env(void)
{
        const char *v = getenv("AGENTJAIL_DIFF_CPU");
        if (!v || !*v)
                return PATCH_CPU_DEFAULT;
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || *end || v[0] == '-' || s < 1 || s > PATCH_CPU_MAX) {
                fprintf(stderr,
                        "agentjail diff: AGENTJAIL_DIFF_CPU must be a whole number of seconds from 1 to %d, not "
                        "'%s': diff(1) gets the default, %d s\n",
                        PATCH_CPU_MAX, v, PATCH_CPU_DEFAULT);
                return PATCH_CPU_DEFAULT;
        }
        return s;
}

void cli_print_patches(int lower_fd, int upper_fd, const AjWsChange *c, size_t n)
{
        PatchFile f[PATCH_BATCH];
        bool trees = true;
        CpuBudget budget = { .limit_s = cpu_limit_from_env() };
        bool out_of_time = false;
        for (size_t i = 0; i < n;) {
                size_t k = 0, opened = 0;
                for (; i < n && k < PATCH_BATCH; i++) {
                        if (!S_ISREG(c[i].type) || c[i].skipped || c[i].kind == AJ_WS_REPLACED)
                                continue;
                        f[k] = (PatchFile){ .c = &c[i] };
                        f[k].err = open_sides(lower_fd, upper_fd, &f[k]);
                        opened += f[k].err == 0;
                        k++;
                }
                int r = -EXDEV;
                PatchOut o = { .files = f, .n = k };
                if (trees && opened) {
                        char *argv[] = { "diff", "-r", "-u", "-N", "a", "b", NULL };
                        r = run_diff(argv, f, k, true, &o, &budget);
                        /* diff(1) gave up on a file (one past its address space, grown after
                         * it was checked): the files it had not answered for are compared
                         * one by one, so that one file does not hide the others' changes. */
                        if (r == -EIO)
                                printf("(diff(1) failed on one of these files: those after the last shown are "
                                       "compared one by one)\n");
                        /* Stopped at any point, it may have been in the middle of a file's patch:
                         * what is shown of it may not be all of it. */
                        if (r == -ETIME && o.shown > 0)
                                put_cut_note(&f[o.shown - 1]);
                        if (r == -ETIME && !out_of_time)
                                printf("(diff(1) used up its CPU time, %llu s in all (AGENTJAIL_DIFF_CPU): the files "
                                       "after the last shown are not compared)\n",
                                       (unsigned long long)budget.limit_s);
                        out_of_time = out_of_time || r == -ETIME;
                        if (r != -EXDEV)
                                notes_before(&o, r == -EIO || r == -ETIME ? o.shown : k);
                        trees = r != -EXDEV;
                }
                for (size_t j = 0; j < k; j++) {
                        if (!opened || r == -EXDEV || (r == -EIO && j >= o.shown))
                                diff_one(&f[j], &budget); /* notes too, in their places */
                        else if (r == -ETIME && j >= o.shown) {
                                if (f[j].err == 0)
                                        f[j].err = r;
                                put_note(&f[j]);
                        } else if (r == -ENOENT && f[j].err == 0) {
                                f[j].err = r;
                                put_note(&f[j]);
                        }
                        close_sides(&f[j]);
                }
        }
}
