/* SPDX-License-Identifier: Apache-2.0 */
/* The cache of compiled filters: one file per key under the state dir, authenticated with a
 * per-host secret, so a run whose profile did not change skips libseccomp. */

#include <errno.h>
#include <limits.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>

#include "seccomp-internal.h"
#include "util/build-id.h"
#include "util/fd.h"
#include "util/sha256.h"

/* ---- cache ---- */

/* v2: entries are authenticated with HMAC-SHA256 under a per-host secret (v1 had a plain
 * digest anyone able to write the file could recompute). v3: the key covers the agentjail
 * binary's build-id (the compile code: ioctl lists, masks, personas), so an upgrade never
 * reuses a program an older build compiled. */
#define CACHE_FORMAT "agentjail seccomp cache v3"
#define CACHE_MAGIC "AJSECBP3"
#define CACHE_VERSION 3
#define CACHE_SECRET_FILE "seccomp-cache.key"
#define CACHE_SECRET_SIZE 32

typedef struct {
        char magic[8];
        uint32_t version;
        uint32_t n_insns;
        uint8_t key[AJ_SHA256_SIZE];
        /* HMAC-SHA256 under the secret of the fields above and the body. */
        uint8_t mac[AJ_SHA256_SIZE];
} CacheHeader;

static int strcmp_ptr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Sorted and deduplicated, so list order and repeats do not split the cache. */
static int digest_names(AjSha256 *c, const char *label, char *const *names)
{
        size_t n = 0;
        while (names && names[n])
                n++;
        aj_sha256_update(c, label, strlen(label) + 1);
        if (n == 0)
                return 0;
        _cleanup_free_ const char **sorted = malloc(n * sizeof(char *));
        if (!sorted)
                return -ENOMEM;
        memcpy(sorted, names, n * sizeof(char *));
        qsort(sorted, n, sizeof(char *), strcmp_ptr);
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && streq(sorted[i], sorted[i - 1]))
                        continue;
                aj_sha256_update(c, sorted[i], strlen(sorted[i]) + 1);
        }
        return 0;
}

/* Pure: the same inputs give the same key, on any host. */
static int cache_key(const AjSeccompSpec *spec, const SeccompPlan *plan, const AjSeccompKeyInputs *in,
                     uint8_t key[AJ_SHA256_SIZE])
{
        if (!in->build_id || in->build_id_len == 0 || !in->libseccomp || !in->kernel)
                return -EINVAL;

        AjSha256 c;
        aj_sha256_init(&c);
        aj_sha256_update(&c, CACHE_FORMAT, sizeof(CACHE_FORMAT));

        /* The code that compiles the plan: its constants are not in the plan. */
        uint64_t len = in->build_id_len;
        aj_sha256_update(&c, &len, sizeof(len));
        aj_sha256_update(&c, in->build_id, in->build_id_len);

        char buf[256];
        int n = snprintf(buf, sizeof(buf), "base=%s notify=%d netlink=%d no_inet6=%d arch=%u",
                         spec->base ? spec->base : "default", plan->notify, plan->allow_netlink, plan->no_inet6,
                         seccomp_arch_native());
        aj_sha256_update(&c, buf, (size_t)n + 1);
        int r = digest_names(&c, "deny", spec->deny);
        if (r < 0)
                return r;
        r = digest_names(&c, "allow", spec->allow);
        if (r < 0)
                return r;
        /* The plan itself: a change to this file's tables invalidates old entries on its own. */
        aj_sha256_update(&c, plan->rule, sizeof(plan->rule));

        aj_sha256_update(&c, "libseccomp", sizeof("libseccomp"));
        aj_sha256_update(&c, in->libseccomp, strlen(in->libseccomp) + 1);
        aj_sha256_update(&c, "kernel", sizeof("kernel"));
        aj_sha256_update(&c, in->kernel, strlen(in->kernel) + 1);
        aj_sha256_final(&c, key);
        return 0;
}

int aj_seccomp_cache_key(const AjSeccompSpec *spec, const AjSeccompKeyInputs *in, uint8_t ret_key[32])
{
        SeccompPlan plan;
        int r = aj_seccomp_plan_build(spec, &plan, NULL);
        if (r < 0)
                return r;
        return cache_key(spec, &plan, in, ret_key);
}

/* This host's and this binary's inputs. No build-id: -ENOENT (the caller does not cache). */
static int key_inputs_here(AjSeccompKeyInputs *in, uint8_t id[AJ_BUILD_ID_MAX], char lib[32], struct utsname *u)
{
        int n = aj_build_id(id);
        if (n < 0)
                return n;
        const struct scmp_version *v = seccomp_version();
        if (uname(u) < 0)
                return -errno;
        snprintf(lib, 32, "%u.%u.%u", v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0);
        *in = (AjSeccompKeyInputs){ .build_id = id, .build_id_len = (size_t)n, .libseccomp = lib, .kernel = u->release };
        return 0;
}

/* Owned by us, not writable by group or others. */
static bool stat_ours(const struct stat *st) { return st->st_uid == geteuid() && (st->st_mode & 0022) == 0; }

/* Every directory above `path` (absolute, no symlink components): owned by root or us, and
 * not writable by others unless sticky (/tmp: nobody else can rename or remove our entry).
 * Returns 1 when trusted, 0 when not, -ELOOP when a component is a symlink and -EINVAL for a
 * relative path (the caller resolves them and asks again). */
static int parents_trusted(const char *path)
{
        char buf[PATH_MAX];
        size_t len = strlen(path);
        if (path[0] != '/')
                return -EINVAL; /* resolved by the caller */
        if (len >= sizeof(buf))
                return 0;
        memcpy(buf, path, len + 1);
        for (char *p = buf + len; p > buf;) {
                struct stat st;
                if (lstat(buf, &st) < 0)
                        return -errno;
                if (S_ISLNK(st.st_mode))
                        return -ELOOP;
                if (!S_ISDIR(st.st_mode))
                        return 0;
                if (p != buf + len) { /* a parent */
                        if (st.st_uid != 0 && st.st_uid != geteuid())
                                return 0;
                        if ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX))
                                return 0;
                }
                while (p > buf && *p != '/')
                        p--;
                *p = 0;
        }
        /* The root directory itself. */
        struct stat st;
        if (lstat("/", &st) < 0)
                return -errno;
        return st.st_uid == 0 && !(st.st_mode & 0022) ? 1 : 0;
}

/*
 * Opens `dir` (created 0700 when `create`) if nobody but us and root could have put anything
 * in it: the directory ours and not group/world-writable, every directory above it root's or
 * ours and not writable by others. Symlinks on the way are resolved first, so the checks
 * are on the real path. -EPERM when untrusted.
 */
static int open_trusted_dir(const char *dir, bool create)
{
        if (create && aj_mkdir_p(dir, 0700) < 0)
                return -EPERM;
        int r = parents_trusted(dir);
        _cleanup_free_ char *real = NULL;
        if (r == -ELOOP || r == -EINVAL) {
                real = realpath(dir, NULL);
                if (!real)
                        return -errno;
                r = parents_trusted(real);
        }
        if (r <= 0)
                return r < 0 ? r : -EPERM;
        _cleanup_close_ int fd = open(real ? real : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!stat_ours(&st))
                return -EPERM;
        return TAKE_FD(fd);
}

static int read_exact(int fd, void *buf, size_t len)
{
        for (size_t done = 0; done < len;) {
                ssize_t n = read(fd, (char *)buf + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EBADMSG;
                done += (size_t)n;
        }
        return 0;
}

static int secret_create(int dfd)
{
        uint8_t secret[CACHE_SECRET_SIZE];
        for (size_t done = 0; done < sizeof(secret);) {
                ssize_t n = getrandom(secret + done, sizeof(secret) - done, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", CACHE_SECRET_FILE, (int)getpid());
        /* Left over from a crashed run of the same pid: ours (the directory is). */
        (void)unlinkat(dfd, tmp, 0);
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r = aj_write_all(fd, secret, sizeof(secret));
        explicit_bzero(secret, sizeof(secret));
        /* link() never replaces: with two runs racing, the first key wins for both. */
        if (r >= 0 && linkat(dfd, tmp, dfd, CACHE_SECRET_FILE, 0) < 0 && errno != EEXIST)
                r = -errno;
        (void)unlinkat(dfd, tmp, 0);
        return r;
}

/* The secret: a 32-byte file of ours, mode 0600 or stricter, one link; created if absent. */
static int secret_load(int dfd, uint8_t ret[CACHE_SECRET_SIZE])
{
        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_close_ int fd = openat(dfd, CACHE_SECRET_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
                if (fd < 0) {
                        if (errno != ENOENT)
                                return -errno;
                        int r = secret_create(dfd);
                        if (r < 0)
                                return r;
                        continue;
                }
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077) != 0 || st.st_nlink != 1 ||
                    st.st_size != CACHE_SECRET_SIZE)
                        return -EPERM;
                return read_exact(fd, ret, CACHE_SECRET_SIZE);
        }
        return -ENOENT;
}

static void cache_mac(const uint8_t secret[CACHE_SECRET_SIZE], const CacheHeader *h, const void *body, size_t body_len,
                      uint8_t out[AJ_SHA256_SIZE])
{
        AjHmacSha256 m;
        aj_hmac_sha256_init(&m, secret, CACHE_SECRET_SIZE);
        aj_hmac_sha256_update(&m, h, offsetof(CacheHeader, mac));
        aj_hmac_sha256_update(&m, body, body_len);
        aj_hmac_sha256_final(&m, out);
}

static void cache_name(const uint8_t key[AJ_SHA256_SIZE], char name[AJ_SHA256_HEX_SIZE + 4])
{
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256_hex(key, hex);
        snprintf(name, AJ_SHA256_HEX_SIZE + 4, "%s.bpf", hex);
}

static int cache_read(int dfd, const char *name, const uint8_t key[AJ_SHA256_SIZE],
                      const uint8_t secret[CACHE_SECRET_SIZE], AjBpfProgram *ret)
{
        size_t max = sizeof(CacheHeader) + (size_t)BPF_MAXINSNS * sizeof(struct sock_filter);
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || !stat_ours(&st))
                return -EPERM;
        if ((size_t)st.st_size <= sizeof(CacheHeader) || (size_t)st.st_size > max)
                return -EBADMSG;

        size_t size = (size_t)st.st_size;
        _cleanup_free_ uint8_t *buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        int r = read_exact(fd, buf, size);
        if (r < 0)
                return r;

        CacheHeader h;
        memcpy(&h, buf, sizeof(h));
        size_t body = size - sizeof(h);
        if (memcmp(h.magic, CACHE_MAGIC, sizeof(h.magic)) != 0 || h.version != CACHE_VERSION ||
            memcmp(h.key, key, AJ_SHA256_SIZE) != 0 || h.n_insns == 0 || h.n_insns > BPF_MAXINSNS ||
            body != (size_t)h.n_insns * sizeof(struct sock_filter))
                return -EBADMSG;
        uint8_t mac[AJ_SHA256_SIZE];
        cache_mac(secret, &h, buf + sizeof(h), body, mac);
        if (!aj_digest_eq(mac, h.mac))
                return -EBADMSG;

        struct sock_filter *filter = malloc(body);
        if (!filter)
                return -ENOMEM;
        memcpy(filter, buf + sizeof(h), body);
        ret->filter = filter;
        ret->len = (unsigned short)h.n_insns;
        return 0;
}

static int cache_write(int dfd, const char *name, const uint8_t key[AJ_SHA256_SIZE],
                       const uint8_t secret[CACHE_SECRET_SIZE], const AjBpfProgram *prog)
{
        size_t body = (size_t)prog->len * sizeof(struct sock_filter);
        CacheHeader h = { .version = CACHE_VERSION, .n_insns = prog->len };
        memcpy(h.magic, CACHE_MAGIC, sizeof(h.magic));
        memcpy(h.key, key, AJ_SHA256_SIZE);
        cache_mac(secret, &h, prog->filter, body, h.mac);

        char tmp[AJ_SHA256_HEX_SIZE + 32];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", name, (int)getpid());
        (void)unlinkat(dfd, tmp, 0);
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* No fsync: a torn entry after a crash fails its MAC and is rebuilt. */
        int r = aj_write_all(fd, &h, sizeof(h));
        if (r >= 0)
                r = aj_write_all(fd, prog->filter, body);
        if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(dfd, tmp, 0);
        return r;
}

int aj_seccomp_build_cached(const AjSeccompSpec *spec, const char *cache_dir, const char *secret_dir, AjBpfProgram *ret,
                            AjError *ret_error)
{
        SeccompPlan plan;
        int r = aj_seccomp_plan_build(spec, &plan, ret_error);
        if (r < 0)
                return r;
        if (!cache_dir || !secret_dir)
                return aj_seccomp_plan_compile(&plan, ret);

        /* Anything that does not check out (a directory someone else could write, a secret that
         * is not ours alone, an entry whose MAC fails) means compiling afresh: never trusted. */
        uint8_t secret[CACHE_SECRET_SIZE];
        uint8_t key[AJ_SHA256_SIZE];
        uint8_t build_id[AJ_BUILD_ID_MAX];
        char lib[32];
        struct utsname u;
        AjSeccompKeyInputs in;
        /* No build-id (a binary linked without one): nothing says which code compiled an
         * entry, so nothing is cached. */
        if (key_inputs_here(&in, build_id, lib, &u) < 0 || cache_key(spec, &plan, &in, key) < 0)
                return aj_seccomp_plan_compile(&plan, ret);
        _cleanup_close_ int secret_dfd = open_trusted_dir(secret_dir, false);
        _cleanup_close_ int cache_dfd = secret_dfd >= 0 ? open_trusted_dir(cache_dir, true) : -1;
        if (cache_dfd < 0 || secret_load(secret_dfd, secret) < 0)
                return aj_seccomp_plan_compile(&plan, ret);

        char name[AJ_SHA256_HEX_SIZE + 4];
        cache_name(key, name);
        AjBpfProgram prog = {};
        if (cache_read(cache_dfd, name, key, secret, &prog) >= 0) {
                explicit_bzero(secret, sizeof(secret));
                *ret = prog;
                return 0;
        }
        r = aj_seccomp_plan_compile(&plan, &prog);
        if (r >= 0)
                /* Best effort: a read-only or full cache only costs the next run a compilation. */
                (void)cache_write(cache_dfd, name, key, secret, &prog);
        explicit_bzero(secret, sizeof(secret));
        if (r < 0)
                return r;
        *ret = prog;
        return 0;
}
