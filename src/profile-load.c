/* SPDX-License-Identifier: Apache-2.0 */
/* Finding profile files on the search path, reading them, following `extends` chains and
 * merging them (steps 1 and 2 of src/profile.c), and the aj_profile_load*() entry points. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "profile-internal.h"
#include "util/fd.h"
#include "util/format.h"
#include "util/strv.h"

/* ---- files and the search path ---- */

static int read_text(const char *path, char **ret)
{
        /* O_NONBLOCK: opening a FIFO someone named must not hang us; regular files ignore it. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        int r = aj_fd_regular(fd, &st);
        if (r < 0)
                return r;
        if (st.st_size > MAX_FILE_SIZE)
                return -EFBIG;
        /* A file that grows while we read it is refused once it outgrows both its size and 4 KiB. */
        _cleanup_free_ char *buf = NULL;
        size_t have = 0;
        r = aj_read_fd(fd, (size_t)st.st_size + 1, &buf, &have);
        if (r < 0)
                return r;
        /* jansson would stop at a NUL and silently ignore the rest. */
        if (strlen(buf) != have)
                return -EBADMSG;
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *read_error_text(int r)
{
        switch (r) {
        case -EFBIG:
                return "file is too large (at most 1 MiB)";
        case -EBADFD:
                return aj_file_error_text(r);
        case -EBADMSG:
                return "contains a NUL byte";
        default:
                return strerror(-r);
        }
}

/* A directory joins the search path once, however it is named: each candidate is resolved
 * once (realpath reads every component as a link) and compared with those already in. */
static int add_dir(char ***dirs, char ***reals, char *dir)
{
        if (!dir)
                return -ENOMEM;
        char *real = realpath(dir, NULL);
        for (size_t i = 0; (*dirs) && (*dirs)[i]; i++)
                if (streq((*dirs)[i], dir) || (real && (*reals)[i][0] && streq((*reals)[i], real))) {
                        free(dir);
                        free(real);
                        return 0;
                }
        /* An unresolvable dir keeps its place with an empty real path: equal to no other. */
        if (!real && !(real = strdup(""))) {
                free(dir);
                return -ENOMEM;
        }
        if (aj_strv_consume(reals, real) < 0) {
                free(dir);
                return -ENOMEM;
        }
        return aj_strv_consume(dirs, dir);
}

int aj_profile_search_path(char ***ret_dirs)
{
        _cleanup_strv_free_ char **dirs = NULL, **reals = NULL;
        char *d;
        int r;

        const char *xdg = getenv("XDG_CONFIG_HOME");
        const char *home = getenv("HOME");
        d = NULL;
        if (xdg && xdg[0] == '/') {
                if (asprintf(&d, "%s/agentjail/profiles", xdg) < 0)
                        return -ENOMEM;
        } else if (home && home[0] == '/') {
                if (asprintf(&d, "%s/.config/agentjail/profiles", home) < 0)
                        return -ENOMEM;
        }
        if (d) {
                r = add_dir(&dirs, &reals, d);
                if (r < 0)
                        return r;
        }
        /* ./profiles comes last (the blueprint had it first): the current directory is
         * usually the agent's writable workspace, and an agent must not be able to plant a
         * profile that shadows the operator's or a shipped one for its next run. */
        const char *fixed[] = { "/etc/agentjail/profiles", AJ_PROFILE_DATADIR, AJ_SOURCE_PROFILES, "./profiles" };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                r = add_dir(&dirs, &reals, strdup(fixed[i]));
                if (r < 0)
                        return r;
        }
        *ret_dirs = TAKE_PTR(dirs);
        return 0;
}

static bool is_regular_file(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Finds NAME.json on the search path. `skip_real` (may be NULL) is a file that
 * does not count: a profile that extends its own name (a user's default.json
 * extending the shipped default) continues the search below itself.
 */
static int find_profile(const char *name, const char *skip_real, char **ret_path, char **ret_searched)
{
        _cleanup_strv_free_ char **dirs = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s.json", *d, name) < 0)
                        return -ENOMEM;
                if (!is_regular_file(p))
                        continue;
                if (skip_real) {
                        _cleanup_free_ char *real = realpath(p, NULL);
                        if (real && streq(real, skip_real))
                                continue;
                }
                *ret_path = TAKE_PTR(p);
                return 0;
        }
        size_t len = 1;
        for (char **d = dirs; *d; d++)
                len += strlen(*d) + 2;
        char *s = calloc(1, len);
        if (!s)
                return -ENOMEM;
        for (char **d = dirs; *d; d++) {
                if (d != dirs)
                        strcat(s, ", ");
                strcat(s, *d);
        }
        *ret_searched = s;
        return -ENOENT;
}

/* ---- loading a chain ---- */

typedef struct {
        Source src[MAX_CHAIN];
        size_t n;
        AjError *err;
} Chain;

static void chain_done(Chain *ch)
{
        for (size_t i = 0; i < ch->n; i++)
                source_done(&ch->src[i]);
        ch->n = 0;
}

static int parse_source(Source *s, AjError *err)
{
        json_error_t je;
        s->root = json_loads(s->text, JSON_REJECT_DUPLICATES, &je);
        if (!s->root) {
                return aj_error_set(err, -EINVAL, "%s:%d:%d: invalid JSON: %s", s->file, je.line, je.column, je.text);
        }
        Check c = { .src = s, .err = err };
        return check_root(&c, s->root);
}

/* Error at the `extends` value of `s`. */
_printf_(3, 4) static int fail_extends(const Source *s, AjError *err, const char *fmt, ...)
{
        Check c = { .src = s, .err = err };
        char *msg;
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        check_push_key(&c, "extends");
        r = check_fail(&c, AJ_JSON_AT_VALUE, "%s", msg);
        free(msg);
        return r;
}

static int dir_of(const char *file, char **ret)
{
        const char *slash = file ? strrchr(file, '/') : NULL;
        char *d = !slash ? strdup(".") : slash == file ? strdup("/") : strndup(file, slash - file);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

/* Resolves the `extends` of the last source into the next one; 0 when there is none. */
static int chain_extend(Chain *ch)
{
        Source *child = &ch->src[ch->n - 1];
        json_t *ext = json_object_get(child->root, "extends");
        if (!ext)
                return 0;
        const char *target = json_string_value(ext);
        _cleanup_free_ char *file = NULL;
        int r;

        if (looks_like_path(target)) {
                if (target[0] == '/')
                        file = strdup(target);
                else {
                        _cleanup_free_ char *dir = NULL;
                        r = dir_of(streq(child->file, "<string>") ? NULL : child->file, &dir);
                        if (r < 0)
                                return r;
                        if (asprintf(&file, "%s/%s", dir, target) < 0)
                                file = NULL;
                }
                if (!file)
                        return -ENOMEM;
        } else {
                _cleanup_free_ char *searched = NULL;
                r = find_profile(target, child->real, &file, &searched);
                if (r == -ENOENT)
                        return fail_extends(child, ch->err, "profile \"%s\" not found (searched: %s)", target,
                                            searched);
                if (r < 0)
                        return r;
        }

        _cleanup_free_ char *real = realpath(file, NULL);
        if (!real)
                return fail_extends(child, ch->err, "cannot read \"%s\": %s", file, strerror(errno));
        for (size_t i = 0; i < ch->n; i++) {
                if (!ch->src[i].real || !streq(ch->src[i].real, real))
                        continue;
                _cleanup_free_ char *cycle = NULL;
                for (size_t j = i; j < ch->n; j++) {
                        char *next;
                        if (asprintf(&next, "%s%s -> ", cycle ?: "", ch->src[j].file) < 0)
                                return -ENOMEM;
                        free(cycle);
                        cycle = next;
                }
                return fail_extends(child, ch->err, "cycle: %s%s", cycle, file);
        }
        if (ch->n == MAX_CHAIN)
                return fail_extends(child, ch->err, "too deep: at most %d profiles in an extends chain", MAX_CHAIN);

        _cleanup_free_ char *text = NULL;
        r = read_text(file, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail_extends(child, ch->err, "cannot read \"%s\": %s", file, read_error_text(r));

        Source *parent = &ch->src[ch->n++];
        *parent = (Source){ .file = TAKE_PTR(file), .real = TAKE_PTR(real), .text = TAKE_PTR(text) };
        r = parse_source(parent, ch->err);
        if (r < 0)
                return r;
        return 1;
}

static json_t *merge(json_t *parent, json_t *child)
{
        json_t *out = json_object();
        const char *key;
        json_t *v;

        if (!out)
                return NULL;
        json_object_foreach (parent, key, v)
                if (json_object_set(out, key, v) < 0)
                        goto fail;
        json_object_foreach (child, key, v) {
                json_t *pv = json_object_get(out, key);
                if (json_is_object(pv) && json_is_object(v)) {
                        if (json_object_set_new(out, key, merge(pv, v)) < 0)
                                goto fail;
                } else if (json_object_set(out, key, v) < 0)
                        goto fail;
        }
        return out;
fail:
        json_decref(out);
        return NULL;
}

json_t *get_path(json_t *root, const char *a, const char *b)
{
        json_t *x = json_object_get(root, a);
        return b ? json_object_get(x, b) : x;
}

/* Checks that need the merged tree: the values involved may come from different files. */
static int check_merged(Chain *ch, json_t *merged)
{
        json_t *deny = get_path(merged, "seccomp", "deny");
        json_t *allow = get_path(merged, "seccomp", "allow");
        size_t i, j;
        json_t *d, *a;

        json_array_foreach (deny, i, d) {
                json_array_foreach (allow, j, a) {
                        if (!json_equal(d, a))
                                continue;
                        /* Arrays are never merged, so exactly one file wrote this deny list. */
                        const Source *deny_src = &ch->src[0], *allow_src = &ch->src[0];
                        for (size_t k = 0; k < ch->n; k++) {
                                if (get_path(ch->src[k].root, "seccomp", "deny") == deny)
                                        deny_src = &ch->src[k];
                                if (get_path(ch->src[k].root, "seccomp", "allow") == allow)
                                        allow_src = &ch->src[k];
                        }
                        Check c = { .src = deny_src, .err = ch->err };
                        check_push_key(&c, "seccomp");
                        check_push_key(&c, "deny");
                        check_push_index(&c, i);
                        return check_fail(&c, AJ_JSON_AT_VALUE,
                                          "%s is also in seccomp.allow[%zu] (%s); remove it from one of them", GOT(d),
                                          j, allow_src->file);
                }
        }
        return 0;
}

/* ---- entry points ---- */

/* Takes `text`; `file` is for messages and relative `extends`, `real` its canonical path or NULL. */
static int load_text(char *text, const char *file, char *real, const char *name, AjProfile **ret, AjError *err)
{
        _cleanup_(chain_done) Chain ch = { .err = err };
        _cleanup_free_ char *owned_text = text, *owned_real = real;
        int r;

        ch.src[0] = (Source){ .file = strdup(file), .real = TAKE_PTR(owned_real), .text = TAKE_PTR(owned_text) };
        ch.n = 1;
        if (!ch.src[0].file)
                return -ENOMEM;
        r = parse_source(&ch.src[0], err);
        if (r < 0)
                return r;
        while ((r = chain_extend(&ch)) > 0)
                ;
        if (r < 0)
                return r;

        _cleanup_json_ json_t *merged = json_incref(ch.src[ch.n - 1].root);
        for (size_t i = ch.n - 1; i-- > 0;) {
                json_t *m = merge(merged, ch.src[i].root);
                if (!m)
                        return -ENOMEM;
                json_decref(merged);
                merged = m;
        }
        r = check_merged(&ch, merged);
        if (r < 0)
                return r;

        _cleanup_(aj_profile_freep) AjProfile *p = NULL;
        r = profile_new_defaults(&p);
        if (r < 0)
                return r;
        r = profile_from_json(merged, p);
        if (r < 0)
                return r;
        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;
        if (ch.src[0].real) {
                p->path = strdup(ch.src[0].real);
                if (!p->path)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < ch.n; i++)
                if (ch.src[i].real && aj_strv_push(&p->files, ch.src[i].real) < 0)
                        return -ENOMEM;
        r = aj_profile_update_digest(p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

static int load_path(const char *path, const char *name, AjProfile **ret, AjError *err)
{
        char *text = NULL;
        int r = read_text(path, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                return aj_error_set(err, r, "%s: %s", path, read_error_text(r));
        }
        char *real = realpath(path, NULL);
        if (!real) {
                r = -errno;
                free(text);
                return r;
        }
        return load_text(text, path, real, name, ret, err);
}

int aj_profile_load_file(const char *path, AjProfile **ret, AjError *err) { return load_path(path, path, ret, err); }

int aj_profile_find(const char *name_or_path, char **ret_path, AjError *err)
{
        _cleanup_free_ char *path = NULL, *searched = NULL;
        if (looks_like_path(name_or_path)) {
                path = strdup(name_or_path);
                if (!path)
                        return -ENOMEM;
        } else if (!is_profile_name(name_or_path)) {
                return aj_error_set(err, -EINVAL,
                                    "invalid profile name \"%s\" (expected [A-Za-z0-9_.-], not starting "
                                    "with '.', or a path)",
                                    name_or_path);
        } else {
                int r = find_profile(name_or_path, NULL, &path, &searched);
                if (r == -ENOENT)
                        return aj_error_set(err, r, "profile \"%s\" not found (searched: %s)", name_or_path, searched);
                if (r < 0)
                        return r;
        }
        char *real = realpath(path, NULL);
        if (!real)
                return aj_error_set(err, -errno, "cannot read \"%s\": %s", path, strerror(errno));
        *ret_path = real;
        return 0;
}

int aj_profile_load(const char *name_or_path, AjProfile **ret, AjError *err)
{
        if (looks_like_path(name_or_path))
                return load_path(name_or_path, name_or_path, ret, err);
        if (!is_profile_name(name_or_path)) {
                return aj_error_set(err, -EINVAL,
                                    "invalid profile name \"%s\" (expected [A-Za-z0-9_.-], not starting "
                                    "with '.', or a path)",
                                    name_or_path);
        }
        _cleanup_free_ char *path = NULL, *searched = NULL;
        int r = find_profile(name_or_path, NULL, &path, &searched);
        if (r == -ENOENT) {
                return aj_error_set(err, r, "profile \"%s\" not found (searched: %s)", name_or_path, searched);
        }
        if (r < 0)
                return r;
        return load_path(path, name_or_path, ret, err);
}

int aj_profile_parse(const char *text, const char *file, AjProfile **ret, AjError *err)
{
        char *copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        char *real = file ? realpath(file, NULL) : NULL;
        return load_text(copy, file ?: "<string>", real, file ?: "<string>", ret, err);
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

int aj_profile_list(char ***ret_names, char ***ret_paths)
{
        _cleanup_strv_free_ char **dirs = NULL, **names = NULL, **paths = NULL;
        int r = aj_profile_search_path(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                DIR *dir = opendir(*d);
                if (!dir)
                        continue;
                struct dirent *de;
                while ((de = readdir(dir))) {
                        size_t len = strlen(de->d_name);
                        if (len <= 5 || !streq(de->d_name + len - 5, ".json"))
                                continue;
                        _cleanup_free_ char *name = strndup(de->d_name, len - 5);
                        char *path = NULL;
                        if (!name || asprintf(&path, "%s/%s", *d, de->d_name) < 0) {
                                closedir(dir);
                                return -ENOMEM;
                        }
                        if (!is_profile_name(name) || aj_strv_contains(names, name) || !is_regular_file(path)) {
                                free(path);
                                continue;
                        }
                        r = aj_strv_consume(&names, TAKE_PTR(name));
                        if (r < 0)
                                free(path);
                        else
                                r = aj_strv_consume(&paths, path);
                        if (r < 0) {
                                closedir(dir);
                                return r;
                        }
                }
                closedir(dir);
        }

        /* Sort names and paths together through an index of pairs. */
        size_t n = aj_strv_length(names);
        _cleanup_free_ char ***pairs = calloc(n + 1, sizeof(char **));
        if (!pairs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                pairs[i] = &names[i];
        qsort(pairs, n, sizeof(char **), compare_names);
        _cleanup_free_ char **sn = calloc(n + 1, sizeof(char *));
        _cleanup_free_ char **sp = calloc(n + 1, sizeof(char *));
        if (!sn || !sp)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t k = (size_t)(pairs[i] - names);
                sn[i] = names[k];
                sp[i] = paths[k];
        }
        free(TAKE_PTR(names));
        free(TAKE_PTR(paths));
        *ret_names = TAKE_PTR(sn);
        if (ret_paths)
                *ret_paths = TAKE_PTR(sp);
        else
                aj_strv_free(TAKE_PTR(sp));
        return 0;
}
