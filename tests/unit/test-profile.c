/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "gateway/key-paths.h"
#include "profile.h"
#include "util/sha256.h"
#include "util/strv.h"

#define FIX AJ_TEST_FIXTURES "/profiles"

static const char *const shipped[] = { "default", "strict", "python", "node" };

/* Keeps a user's own profiles (~/.config/agentjail/profiles) out of the results. */
static void isolate(void) { setenv("XDG_CONFIG_HOME", "/nonexistent-agentjail-test", 1); }

static const char *source_profiles(void)
{
        static char buf[PATH_MAX];
        const char *src = getenv("AGENTJAIL_SOURCE_DIR");
        if (!src)
                return AJ_SOURCE_PROFILES;
        snprintf(buf, sizeof(buf), "%s/profiles", src);
        return buf;
}

static AjProfile *load_ok(const char *path)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_load(path, &p, &err);
        cr_assert(r >= 0, "loading %s failed: %d %s", path, r, err.message ?: "");
        cr_assert_null(err.message);
        return p;
}

/* The message for an invalid fixture; `name` is relative to FIX. */
static char *load_error(const char *name, int *ret_r)
{
        char path[PATH_MAX];
        AjProfile *p = NULL;
        AjError err = {};
        snprintf(path, sizeof(path), "%s/%s", FIX, name);
        int r = aj_profile_load(path, &p, &err);
        cr_assert(r < 0, "%s loaded but should not", name);
        cr_assert_null(p);
        cr_assert_not_null(err.message, "%s: no message (r=%d)", name, r);
        if (ret_r)
                *ret_r = r;
        return err.message;
}

/* `expected` has "@" where the fixtures directory goes. */
static void expect_error(const char *name, const char *expected)
{
        char want[4096] = "";
        for (const char *e = expected; *e; e++)
                if (*e == '@')
                        strcat(want, FIX);
                else
                        strncat(want, e, 1);
        int r;
        char *got = load_error(name, &r);
        cr_expect_str_eq(got, want, "%s:\n   got: %s\n  want: %s", name, got, want);
        cr_expect_eq(r, -EINVAL);
        free(got);
}

TestSuite(profile, .init = isolate);

Test(profile, full_fixture_values)
{
        AjProfile *p = load_ok(FIX "/full.json");
        char *real = realpath(FIX "/full.json", NULL);

        cr_expect_str_eq(p->name, FIX "/full.json");
        cr_expect_str_eq(p->path, real);
        cr_expect_str_eq(p->description, "every key");
        cr_expect_str_eq(p->hostname, "box-1");

        cr_assert_eq(p->ro.n, 4);
        cr_expect_str_eq(p->ro.items[0].source, "/usr");
        cr_expect_str_eq(p->ro.items[0].target, "/usr");
        cr_expect_not(p->ro.items[0].optional);
        cr_expect_str_eq(p->ro.items[1].source, "/opt/none");
        cr_expect(p->ro.items[1].optional);
        cr_expect_str_eq(p->ro.items[2].source, "/srv/src");
        cr_expect_str_eq(p->ro.items[2].target, "/src");
        cr_expect_str_eq(p->ro.items[3].source, "~/.gitconfig");
        cr_expect_str_eq(p->ro.items[3].target, "~/.gitconfig");
        cr_assert_eq(p->rw.n, 1);
        cr_expect_str_eq(p->rw.items[0].source, "~/cache");
        cr_expect_str_eq(p->rw.items[0].target, "/home/agent/.cache");
        cr_expect(p->rw.items[0].optional);

        cr_assert_eq(p->tmpfs.n, 1);
        cr_expect_str_eq(p->tmpfs.items[0], "/tmp");
        cr_expect_null(p->tmpfs.items[1]);
        cr_assert_eq(p->hide.n, 1);
        cr_expect_str_eq(p->hide.items[0], "/etc/shadow");
        cr_expect_str_eq(p->workspace_path, "/work/project");
        cr_expect_eq(p->workspace_mode, AJ_WORKSPACE_RO);
        cr_expect_str_eq(p->home, "/home/bot");

        cr_expect_eq(p->uid, 0);
        cr_expect_eq(p->gid, 4294967294u);
        cr_expect_eq(p->host_uid, 200000);
        cr_expect_eq(p->host_gid, 300000);
        cr_expect(p->host_ids_set, "named ids: every run of the profile maps to them");

        cr_expect_str_eq(p->seccomp_base, "default");
        cr_assert_eq(p->seccomp_deny.n, 1);
        cr_expect_str_eq(p->seccomp_deny.items[0], "ptrace");
        cr_assert_eq(p->seccomp_allow.n, 1);
        cr_expect_str_eq(p->seccomp_allow.items[0], "personality");
        cr_expect_not(p->seccomp_log);
        cr_expect(p->allow_netlink);

        cr_expect_eq(p->memory, 1048576);
        cr_expect_eq(p->pids, 256);
        cr_expect_eq(p->cpu, 1.5);
        cr_expect_eq(p->wall_ns, 5400ULL * 1000000000ULL);
        cr_expect_eq(p->wall_grace_ns, 250ULL * 1000000ULL);
        cr_expect_eq(p->nofile, 1024);
        cr_expect_eq(p->nproc, 4096);
        cr_expect_eq(p->fsize, 1610612736ULL);
        cr_expect(p->core);

        cr_expect_eq(p->net_allow.n, 0);
        cr_assert_eq(p->env_pass.n, 2);
        cr_expect_str_eq(p->env_pass.items[1], "_X1");
        cr_assert_eq(p->env_set.n, 2);
        cr_expect_str_eq(p->env_set.items[0], "A=1");
        cr_expect_str_eq(p->env_set.items[1], "B=x=y");
        cr_expect_eq(p->allow_degraded, AJ_DEGRADE_LIMITS | AJ_DEGRADE_IDMAP);

        cr_assert_not_null(p->digest);
        cr_expect_eq(strlen(p->digest), 64);
        cr_expect_eq(strspn(p->digest, "0123456789abcdef"), 64);
        free(real);
        aj_profile_free(p);
}

Test(profile, builtin_defaults)
{
        AjProfile *p = load_ok(FIX "/minimal.json");
        cr_expect_null(p->description);
        cr_expect_str_eq(p->hostname, "agentjail");
        cr_expect_str_eq(p->workspace_path, ".");
        cr_expect_eq(p->workspace_mode, AJ_WORKSPACE_RW);
        cr_expect_str_eq(p->home, "/home/agent");
        cr_expect_eq(p->uid, 1000);
        cr_expect_eq(p->gid, 1000);
        cr_expect_eq(p->host_uid, 1879048192);
        cr_expect_eq(p->host_gid, 1879048192);
        cr_expect_not(p->host_ids_set, "none named: a root-started run takes ids of its own from the pool");
        cr_expect_str_eq(p->seccomp_base, "default");
        cr_expect(p->seccomp_log);
        cr_expect_not(p->allow_netlink);
        cr_expect_eq(p->memory, 0);
        cr_expect_eq(p->pids, 0);
        cr_expect_eq(p->cpu, 0);
        cr_expect_eq(p->wall_ns, 0);
        cr_expect_eq(p->wall_grace_ns, 10ULL * 1000000000ULL);
        cr_expect_eq(p->nofile, 0);
        cr_expect_eq(p->fsize, 0);
        cr_expect_not(p->core);
        cr_expect_eq(p->ro.n, 0);
        cr_expect_null(p->ro.items);
        cr_expect_eq(p->tmpfs.n, 0);
        cr_expect_eq(p->env_set.n, 0);
        cr_expect_eq(p->allow_degraded, 0);
        aj_profile_free(p);
}

Test(profile, parse_text_and_workspace_none)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse("{\"filesystem\": {\"workspace\": {\"mode\": \"none\"}}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->workspace_mode, AJ_WORKSPACE_NONE);
        cr_expect_null(p->workspace_path);
        cr_expect_null(p->path);
        aj_profile_free(p);

        r = aj_profile_parse("{\"limits\": {\"disk_free\": \"2G\"}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect(p->disk_free_set);
        cr_expect_eq(p->disk_free, 2ULL << 30);
        aj_profile_free(p);
        r = aj_profile_parse("{}", NULL, &p, &err);
        cr_assert(r >= 0);
        cr_expect_not(p->disk_free_set, "unset: the default (5%, at most 1 GiB)");
        aj_profile_free(p);
        r = aj_profile_parse("{\"limits\": {\"disk_free\": \"lots\"}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect_str_eq(err.message,
                         "<string>:1:26: limits.disk_free: expected a size such as \"512M\" or a number of "
                         "bytes, got \"lots\"");
        aj_error_clear(&err);

        r = aj_profile_parse("{\"limits\": {\"pids\": 1.5}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect_str_eq(err.message, "<string>:1:21: limits.pids: expected a non-negative integer, got 1.5");
        aj_error_clear(&err);
        cr_expect_null(err.message);
}

/* The host programs (aj_profile_host_programs) of the profile `json`; NULL: none. */
static char **host_files_of(const char *json)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse(json, NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        char **files = NULL;
        cr_assert_eq(aj_profile_host_programs(p, &files), 0);
        aj_profile_free(p);
        return files;
}

/* The files a profile has the host run: every path alert.exec and rollback.exec name, the
 * program and each operand (a relative one from "/", where they start), and each word of one
 * that inline code or an assignment puts a path in, each once; not a word without '/'. */
Test(profile, host_programs)
{
        char **files = host_files_of(
                "{\"alert\": {\"exec\": [\"/bin/sh\", \"-e\", \"opt/hooks/alert.sh\", \"/x/data\"]},"
                " \"rollback\": {\"exec\": [\"/usr/bin/python3\", \"/opt/crm/undo.py\","
                " \"/work/db.json\", \"undo\"]}}");
        cr_assert_not_null(files);
        cr_expect_str_eq(files[0], "/bin/sh");
        cr_expect_str_eq(files[1], "/opt/hooks/alert.sh");
        /* Every operand: which of them the program runs is its own business (`env X=1 FILE`). */
        cr_expect_str_eq(files[2], "/x/data");
        cr_expect_str_eq(files[3], "/usr/bin/python3");
        cr_expect_str_eq(files[4], "/opt/crm/undo.py");
        cr_expect_str_eq(files[5], "/work/db.json");
        cr_expect_null(files[6]);
        aj_strv_free(files);
        files = host_files_of("{\"alert\": {\"exec\": [\"/bin/sh\", \"-c\", \"cd /srv&&./notify\"]},"
                              " \"rollback\": {\"exec\": [\"/usr/bin/env\", \"X=1\", \"PATH=/a:b/c\", \"/ws/undo\","
                              " \"python3 -c \\\"exec(open('/ws/u.py').read())\\\"\"]}}");
        const char *want[] = { "/bin/sh",  "/srv",     "/./notify", "/usr/bin/env", "/a", "/b/c",
                               "/ws/undo", "/ws/u.py", NULL };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                cr_expect(want[i] ? files && files[i] && streq(files[i], want[i]) : !files || !files[i],
                          "[%zu]: %s, expected %s (every word of an inline script, of an assignment)", i,
                          files && files[i] ? files[i] : "(none)", want[i] ? want[i] : "(none)");
        aj_strv_free(files);
        cr_expect_null(host_files_of("{}"), "none: NULL");
}

/* "/" alone is no handler's file: an arithmetic `/` in an inline script (`expr 4 / 2`) made it a
 * directory with all it holds, and every run was refused, its workspace "inside" it. */
Test(profile, host_programs_root_is_none)
{
        char **files = host_files_of(
                "{\"alert\": {\"exec\": [\"/bin/sh\", \"-c\", \"expr 4 / 2; cd ./ && ./x; cd //\"]}}");
        cr_expect(files && streq(files[0], "/bin/sh") && files[1] && streq(files[1], "/./x") && !files[2],
                  "only the shell and ./x: %s %s", files && files[1] ? files[1] : "-",
                  files && files[1] && files[2] ? files[2] : "-");
        aj_strv_free(files);
}

/* A path attached to its option (`awk -f/opt/x.awk`, `-I/x`) or a file reference (`@/x`) is the
 * handler's too: awk runs that file (review 26). */
Test(profile, host_programs_attached)
{
        char **files = host_files_of(
                "{\"rollback\": {\"exec\": [\"/usr/bin/awk\", \"-f/opt/hooks/undo.awk\"]},"
                " \"alert\": {\"exec\": [\"/bin/sh\", \"-c\", \"make -C/srv/mk; curl -d @/srv/body\"]}}");
        const char *want[] = { "/opt/hooks/undo.awk", "/srv/mk", "/srv/body" };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                cr_expect(aj_strv_contains(files, want[i]), "%s is not among the handler's files", want[i]);
        aj_strv_free(files);
}

/* A handler's shell expands its home: `sh -c "~/hooks/alert.sh"` runs the operator's file, which
 * a rw bind of ~/hooks (inside a home: allowed) handed the agent (review 26). */
Test(profile, host_programs_home)
{
        cr_assert_eq(setenv("HOME", "/home/op", 1), 0);
        char **files = host_files_of("{\"alert\": {\"exec\": [\"/bin/sh\", \"-c\", \"~/hooks/a.sh; ${HOME}/b; X=~/c;"
                                     " $HOME/d; $HOMEX/e; ~root/f; ~\"]}}");
        const char *want[] = { "/home/op/hooks/a.sh", "/home/op/b", "/home/op/c", "/home/op/d", "/root/f", "/home/op" };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                cr_expect(aj_strv_contains(files, want[i]), "%s is not among the handler's files", want[i]);
        cr_expect(!aj_strv_contains(files, "/home/op/e") && !aj_strv_contains(files, "/home/opX/e"),
                  "$HOMEX is another variable");
        aj_strv_free(files);
}

Test(profile, allow_sensitive_accepted_and_validated)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse("{\"filesystem\": {\"allow_sensitive\": [\"/tmp\", \"~\"]}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_assert_eq(p->allow_sensitive.n, 2);
        cr_expect_str_eq(p->allow_sensitive.items[0], "/tmp");
        cr_expect_str_eq(p->allow_sensitive.items[1], "~");
        aj_profile_free(p);

        r = aj_profile_parse("{\"filesystem\": {\"allow_sensitive\": [\"tmp\"]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect_str_eq(err.message, "<string>:1:37: filesystem.allow_sensitive[0]: path must be absolute or "
                                      "\"~\" (the invoking user's home): \"tmp\"");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"filesystem\": {\"allow_sensitive\": \"/tmp\"}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "filesystem.allow_sensitive: "), "%s", err.message ?: "");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"filesystem\": {\"allow_sensitive\": [\"/var/../tmp\"]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "must not contain"), "%s", err.message ?: "");
        aj_error_clear(&err);
}

Test(profile, network_ask_accepted_and_validated)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse("{\"network\": {\"ask\": [\"*\", \"*.npmjs.org:443\", \"10.0.0.0/8\"]}}", NULL, &p,
                                 &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->net_ask.n, 3);
        cr_expect_str_eq(p->net_ask.items[0], "*");
        char *json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        json_t *back = json_loads(json, 0, NULL);
        cr_expect_str_eq(json_string_value(json_array_get(json_object_get(json_object_get(back, "network"), "ask"), 1)),
                         "*.npmjs.org:443", "%s", json);
        json_decref(back);
        free(json);
        aj_profile_free(p);

        r = aj_profile_parse("{\"network\": {\"ask\": [\"ok.example\", \"*.com\"]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect_str_eq(err.message, "<string>:1:36: network.ask[1]: invalid entry \"*.com\": a wildcard needs at "
                                      "least two labels after \"*.\" (e.g. \"*.example.com\")");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"network\": {\"ask\": \"*\"}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "network.ask"), "%s", err.message ?: "");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"network\": {\"ask\": [7]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "network.ask[0]"), "%s", err.message ?: "");
        aj_error_clear(&err);
}

Test(profile, network_allow_accepted_and_validated)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse("{\"network\": {\"allow\": [\"api.openai.com:443\", \"*.github.com\", "
                                 "\"10.20.0.0/16:5432\", \"[2001:db8::1]:443\"], \"egress_bytes\": \"100M\","
                                 " \"max_connections\": 64}}",
                                 NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->net_allow.n, 4);
        cr_expect_str_eq(p->net_allow.items[2], "10.20.0.0/16:5432");
        cr_expect_eq(p->egress_bytes, 100ULL << 20);
        cr_expect_eq(p->net_max_connections, 64);
        char *json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        cr_expect(strstr(json, "\"[2001:db8::1]:443\"") != NULL, "%s", json);
        cr_expect(strstr(json, "\"egress_bytes\"") != NULL, "%s", json);
        free(json);
        aj_profile_free(p);

        r = aj_profile_parse("{\"network\": {\"allow\": [\"ok.example\", \"10.0.0.1/8\"]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect_str_eq(err.message, "<string>:1:38: network.allow[1]: invalid entry \"10.0.0.1/8\": address has "
                                      "bits set beyond the prefix length");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"network\": {\"allow\": [\"b\u00fccher.example\"]}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "non-ASCII host name"), "%s", err.message ?: "");
        aj_error_clear(&err);
        r = aj_profile_parse("{\"network\": {\"egress_bytes\": \"lots\"}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        aj_error_clear(&err);
        r = aj_profile_parse("{\"network\": {\"max_connections\": 0}}", NULL, &p, &err);
        cr_expect_eq(r, -EINVAL);
        cr_expect(err.message && strstr(err.message, "network.max_connections") &&
                          strstr(err.message, "expected an integer from 1 to 4096"),
                  "%s", err.message ?: "");
        aj_error_clear(&err);
}

Test(profile, logs_caps_default_validated_and_shown)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_parse("{}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->log_output_bytes, 64ULL << 20);
        cr_expect_eq(p->log_events_bytes, 64ULL << 20);
        cr_expect_eq(p->log_reports_per_sec, 200);
        aj_profile_free(p);

        r = aj_profile_parse("{\"logs\": {\"output_bytes\": \"1M\", \"events_bytes\": 65536, \"reports_per_sec\": 5}}",
                             NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->log_output_bytes, 1ULL << 20);
        cr_expect_eq(p->log_events_bytes, 65536);
        cr_expect_eq(p->log_reports_per_sec, 5);
        char *json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        cr_expect(strstr(json, "\"output_bytes\": \"1M\"") != NULL, "%s", json);
        cr_expect(strstr(json, "\"events_bytes\": \"64K\"") != NULL, "%s", json);
        free(json);
        aj_profile_free(p);

        static const struct {
                const char *text, *error;
        } bad[] = {
                { "{\"logs\": {\"output_bytes\": \"lots\"}}",
                  "<string>:1:27: logs.output_bytes: expected a size from \"4K\" to \"1T\" such as \"64M\", got \"lots\"" },
                { "{\"logs\": {\"output_bytes\": 0}}",
                  "<string>:1:27: logs.output_bytes: expected a size from \"4K\" to \"1T\" such as \"64M\", got 0" },
                { "{\"logs\": {\"events_bytes\": \"4K\"}}",
                  "<string>:1:27: logs.events_bytes: expected a size from \"64K\" to \"1T\" such as \"64M\", got \"4K\"" },
                { "{\"logs\": {\"events_bytes\": \"2T\"}}",
                  "<string>:1:27: logs.events_bytes: expected a size from \"64K\" to \"1T\" such as \"64M\", got \"2T\"" },
                { "{\"logs\": {\"reports_per_sec\": 0}}",
                  "<string>:1:30: logs.reports_per_sec: expected an integer from 1 to 1000000, got 0" },
                { "{\"logs\": {\"stdout_bytes\": 1}}",
                  "<string>:1:11: logs.stdout_bytes: unknown key (expected one of: output_bytes, events_bytes, "
                  "reports_per_sec)" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                r = aj_profile_parse(bad[i].text, NULL, &p, &err);
                cr_expect_eq(r, -EINVAL, "%s", bad[i].text);
                cr_expect_str_eq(err.message ?: "", bad[i].error);
                aj_error_clear(&err);
        }
}

Test(profile, merge_child_array_replaces_and_objects_merge)
{
        AjProfile *p = load_ok(FIX "/merge-child.json");
        /* arrays: the child's list replaces the parent's */
        cr_assert_eq(p->ro.n, 1);
        cr_expect_str_eq(p->ro.items[0].source, "/opt");
        /* objects: keys the child does not set are inherited, also nested ones */
        cr_assert_eq(p->tmpfs.n, 1);
        cr_expect_str_eq(p->tmpfs.items[0], "/tmp");
        cr_expect_str_eq(p->workspace_path, "/parent");
        cr_expect_eq(p->workspace_mode, AJ_WORKSPACE_RW);
        cr_expect_eq(p->memory, 1ULL << 30);
        cr_expect_eq(p->pids, 7);
        cr_expect_str_eq(p->description, "parent");
        cr_assert_eq(p->env_pass.n, 1);
        cr_expect_str_eq(p->env_pass.items[0], "LANG");
        cr_assert_eq(p->env_set.n, 3);
        cr_expect_str_eq(p->env_set.items[0], "A=parent");
        cr_expect_str_eq(p->env_set.items[1], "B=child");
        cr_expect_str_eq(p->env_set.items[2], "C=child");
        aj_profile_free(p);

        p = load_ok(FIX "/merge-grandchild.json");
        cr_expect_str_eq(p->description, "grandchild");
        cr_expect_eq(p->tmpfs.n, 0); /* an empty array replaces too */
        cr_assert_eq(p->ro.n, 1);
        cr_expect_str_eq(p->ro.items[0].source, "/opt");
        cr_expect_eq(p->pids, 7);
        cr_expect_str_eq(p->workspace_path, "/parent");
        aj_profile_free(p);
}

Test(profile, extends_by_name_uses_search_path)
{
        AjProfile *p = load_ok(FIX "/extends-default.json");
        cr_expect_eq(p->memory, 3ULL << 30);
        cr_expect_eq(p->pids, 512);
        cr_assert_geq(p->ro.n, 1);
        cr_expect_str_eq(p->ro.items[0].source, "/usr");
        aj_profile_free(p);
}

Test(profile, digest_stable_across_key_order_and_spelling)
{
        AjProfile *a = load_ok(FIX "/order-a.json");
        AjProfile *b = load_ok(FIX "/order-b.json");
        AjProfile *c = load_ok(FIX "/order-c.json");
        cr_expect_str_eq(a->digest, b->digest);
        cr_expect_str_neq(a->digest, c->digest);
        aj_profile_free(a);
        aj_profile_free(b);
        aj_profile_free(c);
}

Test(profile, errors_unknown_keys)
{
        expect_error("bad-unknown-top.json",
                     "@/bad-unknown-top.json:3:3: capabilities: unknown key (expected one of: extends, "
                     "description, hostname, filesystem, user, seccomp, limits, network, env, allow_degraded, "
                     "meters, tools, approvals, prices, on_breach, alert, logs, llm, rollback)");
        expect_error("bad-unknown-nested.json",
                     "@/bad-unknown-nested.json:4:5: filesystem.rwx: unknown key (expected one of: ro, rw, "
                     "tmpfs, hide, workspace, home, allow_sensitive)");
}

Test(profile, errors_types)
{
        expect_error("bad-type.json", "@/bad-type.json:2:25: filesystem.ro: expected an array, got \"/usr\"");
        expect_error("bad-type-element.json", "@/bad-type-element.json:2:29: env.pass[1]: expected a string, got 5");
        expect_error("bad-toplevel.json",
                     "@/bad-toplevel.json:1:1: expected a JSON object at the top level, got an array");
}

Test(profile, errors_values)
{
        expect_error("bad-size.json", "@/bad-size.json:5:15: limits.memory: expected a size such as \"512M\" "
                                      "or a number of bytes, got \"lots\"");
        expect_error("bad-duration.json",
                     "@/bad-duration.json:2:23: limits.wall: expected a duration such as \"30s\", \"15m\", "
                     "\"1h30m\" or a number of seconds, got \"soon\"");
        expect_error("bad-pids.json", "@/bad-pids.json:3:13: limits.pids: expected a non-negative integer, got -5");
        expect_error("bad-relative.json", "@/bad-relative.json:4:12: filesystem.ro[2]: path must be absolute: \"usr\"");
        expect_error("bad-syscall.json",
                     "@/bad-syscall.json:2:35: seccomp.deny[1]: unknown system call \"no_such_call\"");
        expect_error("bad-host-uid.json",
                     "@/bad-host-uid.json:2:35: user.host_uid: must not be 0 (the agent never runs as host root)");
        expect_error("bad-overlay.json", "@/bad-overlay.json:2:55: filesystem.workspace.mode: expected \"rw\", "
                                         "\"ro\", \"overlay\" or \"none\", got \"union\"");
        expect_error("bad-network.json",
                     "@/bad-network.json:3:37: network.allow[1]: invalid entry \"*.bad*.example.com\": '*' is only "
                     "allowed as the whole first label");
        expect_error("bad-env-name.json", "@/bad-env-name.json:2:32: env.set.1BAD: invalid variable name "
                                          "(expected [A-Za-z_][A-Za-z0-9_]*)");
        expect_error("bad-degraded.json", "@/bad-degraded.json:2:32: allow_degraded[1]: unknown protection "
                                          "\"seccomp\" (expected one of: limits, idmap, host_ids)");
}

Test(profile, errors_syntax)
{
        expect_error("bad-syntax.json", "@/bad-syntax.json:3:27: invalid JSON: string or '}' expected near '}'");
        expect_error("bad-duplicate.json",
                     "@/bad-duplicate.json:3:12: invalid JSON: duplicate object key near '\"hostname\"'");
}

Test(profile, errors_extends)
{
        expect_error("cycle-a.json",
                     "@/cycle-b.json:2:14: extends: cycle: @/cycle-a.json -> @/cycle-b.json -> @/cycle-a.json");
        /* an error in a parent names the parent's file */
        expect_error("bad-in-parent.json", "@/bad-size.json:5:15: limits.memory: expected a size such as "
                                           "\"512M\" or a number of bytes, got \"lots\"");
        /* checks across files name both */
        expect_error("bad-conflict.json", "@/bad-conflict.json:4:14: seccomp.deny[0]: \"ptrace\" is also in "
                                          "seccomp.allow[1] (@/conflict-parent.json); remove it from one of them");

        char *m = load_error("bad-extends-missing.json", NULL);
        const char *want = FIX "/bad-extends-missing.json:2:14: extends: profile \"no-such-profile-xyz\" not "
                               "found (searched: /nonexistent-agentjail-test/agentjail/profiles, "
                               "/etc/agentjail/profiles, ";
        cr_expect(strncmp(m, want, strlen(want)) == 0, "got: %s", m);
        free(m);
}

Test(profile, extends_depth_limit)
{
        char dir[] = "/tmp/aj-test-profile-XXXXXX";
        char path[PATH_MAX];
        cr_assert_not_null(mkdtemp(dir));
        for (int i = 0; i < 10; i++) {
                snprintf(path, sizeof(path), "%s/p%d.json", dir, i);
                FILE *f = fopen(path, "we");
                cr_assert_not_null(f);
                if (i < 9)
                        fprintf(f, "{\"extends\": \"p%d.json\"}\n", i + 1);
                else
                        fprintf(f, "{}\n");
                fclose(f);
        }
        AjProfile *p = NULL;
        AjError err = {};
        /* p2..p9: 8 files, the most a chain may have */
        snprintf(path, sizeof(path), "%s/p2.json", dir);
        int r2 = aj_profile_load(path, &p, &err);
        aj_profile_free(p);
        p = NULL;
        snprintf(path, sizeof(path), "%s/p1.json", dir);
        int r1 = aj_profile_load(path, &p, &err);
        char want[PATH_MAX * 2];
        snprintf(want, sizeof(want), "%s/p8.json:1:13: extends: too deep: at most 8 profiles in an extends chain", dir);
        char *msg = err.message ? strdup(err.message) : NULL;
        aj_error_clear(&err);
        for (int i = 0; i < 10; i++) {
                snprintf(path, sizeof(path), "%s/p%d.json", dir, i);
                unlink(path);
        }
        rmdir(dir);
        cr_expect_geq(r2, 0);
        cr_expect_eq(r1, -EINVAL);
        cr_expect_str_eq(msg ?: "", want);
        free(msg);
}

Test(profile, load_by_name_errors)
{
        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_load("no-such-profile-xyz", &p, &err);
        cr_expect_eq(r, -ENOENT);
        cr_assert_not_null(err.message);
        cr_expect(strncmp(err.message, "profile \"no-such-profile-xyz\" not found (searched: ", 51) == 0, "%s",
                  err.message);
        /* ./profiles is searched last (unless it is the source tree's profiles dir, listed once) */
        cr_expect(strstr(err.message, "./profiles)") != NULL || strstr(err.message, AJ_SOURCE_PROFILES ")") != NULL,
                  "%s", err.message);
        aj_error_clear(&err);

        r = aj_profile_load(FIX "/does-not-exist.json", &p, &err);
        cr_expect_eq(r, -ENOENT);
        cr_expect_str_eq(err.message, FIX "/does-not-exist.json: No such file or directory");
        aj_error_clear(&err);

        r = aj_profile_load("..", &p, &err);
        cr_expect_eq(r, -EINVAL);
        aj_error_clear(&err);
}

Test(profile, search_path)
{
        setenv("XDG_CONFIG_HOME", "/xdg", 1);
        char **dirs = NULL;
        cr_assert_geq(aj_profile_search_path(&dirs), 0);
        cr_expect_str_eq(dirs[0], "/xdg/agentjail/profiles");
        cr_expect_str_eq(dirs[1], "/etc/agentjail/profiles");
        cr_expect(aj_strv_contains(dirs, AJ_PROFILE_DATADIR));
        /* Last: the cwd is usually the agent's writable workspace. */
        const char *last = dirs[aj_strv_length(dirs) - 1];
        cr_expect(streq(last, "./profiles") || streq(last, AJ_SOURCE_PROFILES), "last: %s", last);
        aj_strv_free(dirs);

        unsetenv("XDG_CONFIG_HOME");
        setenv("HOME", "/home/someone", 1);
        cr_assert_geq(aj_profile_search_path(&dirs), 0);
        cr_expect_str_eq(dirs[0], "/home/someone/.config/agentjail/profiles");
        aj_strv_free(dirs);

        /* from inside the source tree ./profiles and AJ_SOURCE_PROFILES are the same directory */
        char old[PATH_MAX];
        cr_assert_not_null(getcwd(old, sizeof(old)));
        char parent[PATH_MAX + 8];
        snprintf(parent, sizeof(parent), "%s/..", source_profiles());
        cr_assert_eq(chdir(parent), 0);
        cr_assert_geq(aj_profile_search_path(&dirs), 0);
        size_t n = aj_strv_length(dirs);
        cr_expect(!aj_strv_contains(dirs, "./profiles") || streq(AJ_SOURCE_PROFILES, "./profiles"),
                  "duplicate of the source profiles kept as ./profiles (%zu dirs)", n);
        aj_strv_free(dirs);
        cr_assert_eq(chdir(old), 0);
}

Test(profile, shipped_profiles_load_and_paths_exist)
{
        char path[PATH_MAX + 64];
        for (size_t i = 0; i < ARRAY_SIZE(shipped); i++) {
                snprintf(path, sizeof(path), "%s/%s.json", source_profiles(), shipped[i]);
                AjProfile *p = load_ok(path);
                cr_expect_not_null(p->description, "%s has no description", shipped[i]);
                const AjBindList *lists[] = { &p->ro, &p->rw };
                for (size_t l = 0; l < 2; l++)
                        for (size_t k = 0; k < lists[l]->n; k++) {
                                const AjBind *b = &lists[l]->items[k];
                                if (b->optional || b->source[0] == '~')
                                        continue;
                                cr_expect_eq(access(b->source, F_OK), 0, "%s: %s does not exist on this host",
                                             shipped[i], b->source);
                        }
                cr_expect_neq(p->memory, 0, "%s sets no memory limit", shipped[i]);
                cr_expect_neq(p->pids, 0, "%s sets no pids limit", shipped[i]);
                aj_profile_free(p);

                /* by name too (found through AJ_SOURCE_PROFILES at the latest) */
                p = load_ok(shipped[i]);
                cr_expect_str_eq(p->name, shipped[i]);
                aj_profile_free(p);
        }
}

Test(profile, shipped_profile_values)
{
        AjProfile *d = load_ok("default");
        cr_expect_eq(d->memory, 2ULL << 30);
        cr_expect_eq(d->pids, 512);
        cr_expect_eq(d->cpu, 2);
        cr_expect_eq(d->wall_ns, 7200ULL * 1000000000ULL);
        cr_expect_eq(d->nofile, 4096);
        cr_expect_eq(d->workspace_mode, AJ_WORKSPACE_RW);
        cr_expect_str_eq(d->workspace_path, ".");
        cr_expect_eq(d->tmpfs.n, 2);
        for (size_t k = 0; k < d->ro.n; k++) {
                const char *s = d->ro.items[k].source;
                cr_expect(!streq(s, "/etc/passwd") && !streq(s, "/etc/shadow") && !streq(s, "/etc/hosts") &&
                                  !streq(s, "/etc") && !streq(s, "/etc/hostname"),
                          "default binds %s", s);
        }
        cr_assert_eq(d->env_set.n, 1);
        cr_expect_str_eq(d->env_set.items[0], "PATH=/usr/local/bin:/usr/bin:/bin");

        AjProfile *s = load_ok("strict");
        cr_expect_eq(s->workspace_mode, AJ_WORKSPACE_RO);
        cr_expect_eq(s->memory, 512ULL << 20);
        cr_expect_eq(s->pids, 64);
        cr_expect_eq(s->cpu, 1);
        cr_expect_eq(s->wall_ns, 600ULL * 1000000000ULL);
        cr_expect_eq(s->nofile, 256);
        cr_expect_eq(s->fsize, 100ULL << 20);
        cr_expect_geq(s->seccomp_deny.n, 1);
        cr_expect_eq(s->ro.n, d->ro.n);

        AjProfile *py = load_ok("python");
        cr_expect_eq(py->memory, 4ULL << 30);
        cr_expect(aj_strv_contains(py->env_set.items, "PIP_NO_INPUT=1"));
        cr_expect(aj_strv_contains(py->env_set.items, "PYTHONDONTWRITEBYTECODE=1"));
        cr_expect(aj_strv_contains(py->env_set.items, "PATH=/usr/local/bin:/usr/bin:/bin"));

        AjProfile *n = load_ok("node");
        cr_expect_eq(n->memory, 4ULL << 30);
        cr_expect_eq(n->pids, 1024);
        cr_expect(aj_strv_contains(n->env_set.items, "NPM_CONFIG_FUND=false"));

        aj_profile_free(d);
        aj_profile_free(s);
        aj_profile_free(py);
        aj_profile_free(n);
}

/* to_json's output is itself a profile, and loads to the same digest. */
Test(profile, to_json_round_trips)
{
        const char *names[] = { "default", "strict", "python", "node", FIX "/full.json", FIX "/merge-child.json" };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                AjProfile *p = load_ok(names[i]);
                char *json = aj_profile_to_json(p);
                cr_assert_not_null(json);
                AjProfile *q = NULL;
                AjError err = {};
                int r = aj_profile_parse(json, NULL, &q, &err);
                cr_assert(r >= 0, "%s: %s\n%s", names[i], err.message ?: "", json);
                cr_expect_str_eq(q->digest, p->digest, "%s", names[i]);
                cr_expect_eq(q->ro.n, p->ro.n);
                cr_expect_eq(q->env_set.n, p->env_set.n);
                cr_expect_eq(q->wall_ns, p->wall_ns);
                cr_expect_eq(q->fsize, p->fsize);
                /* host ids left to the pool read back as left to it; set ones as set */
                cr_expect_eq(q->host_ids_set, p->host_ids_set, "%s", names[i]);
                cr_expect_eq(q->host_uid, p->host_uid, "%s", names[i]);
                cr_expect_eq(q->host_gid, p->host_gid, "%s", names[i]);
                free(json);
                aj_profile_free(p);
                aj_profile_free(q);
        }
}

Test(profile, list_finds_shipped)
{
        char **names = NULL, **paths = NULL;
        cr_assert_geq(aj_profile_list(&names, &paths), 0);
        for (size_t i = 0; i < ARRAY_SIZE(shipped); i++)
                cr_expect(aj_strv_contains(names, shipped[i]), "%s not listed", shipped[i]);
        for (size_t i = 0; names[i] && names[i + 1]; i++)
                cr_expect_lt(strcmp(names[i], names[i + 1]), 0, "not sorted");
        cr_expect_eq(aj_strv_length(names), aj_strv_length(paths));
        for (size_t i = 0; paths[i]; i++) {
                const char *slash = strrchr(paths[i], '/');
                cr_assert_not_null(slash);
                cr_expect(strncmp(slash + 1, names[i], strlen(names[i])) == 0 &&
                                  streq(slash + 1 + strlen(names[i]), ".json"),
                          "%s does not match %s", paths[i], names[i]);
        }
        aj_strv_free(names);
        aj_strv_free(paths);
}

/* ---- the command ---- */

typedef struct {
        int status;
        char *out, *err;
} CmdResult;

static char *slurp_fd(int fd)
{
        off_t size = lseek(fd, 0, SEEK_END);
        char *s = calloc(1, (size_t)size + 1);
        cr_assert_not_null(s);
        cr_assert_eq(pread(fd, s, (size_t)size, 0), size);
        return s;
}

static CmdResult run_cmd(const char *const *args)
{
        char *argv[16];
        int argc = 0;
        for (; args[argc]; argc++)
                argv[argc] = (char *)args[argc];
        argv[argc] = NULL;

        int out = memfd_create("out", MFD_CLOEXEC), err = memfd_create("err", MFD_CLOEXEC);
        int saved_out = dup(1), saved_err = dup(2);
        cr_assert(out >= 0 && err >= 0 && saved_out >= 0 && saved_err >= 0);
        fflush(stdout);
        fflush(stderr);
        dup2(out, 1);
        dup2(err, 2);
        int status = aj_cmd_profile(argc, argv);
        fflush(stdout);
        fflush(stderr);
        dup2(saved_out, 1);
        dup2(saved_err, 2);
        close(saved_out);
        close(saved_err);
        CmdResult r = { .status = status, .out = slurp_fd(out), .err = slurp_fd(err) };
        close(out);
        close(err);
        return r;
}

static void cmd_result_done(CmdResult *r)
{
        free(r->out);
        free(r->err);
}

static char tmpdir[] = "/tmp/aj-test-profile-XXXXXX";
static char show_file[PATH_MAX];

static void roundtrip_init(void)
{
        isolate();
        cr_assert_not_null(mkdtemp(tmpdir));
        snprintf(show_file, sizeof(show_file), "%s/shown.json", tmpdir);
}

static void roundtrip_fini(void)
{
        unlink(show_file);
        rmdir(tmpdir);
}

Test(profile_cmd, show_output_passes_check, .init = roundtrip_init, .fini = roundtrip_fini)
{
        for (size_t i = 0; i < ARRAY_SIZE(shipped); i++) {
                CmdResult s = run_cmd((const char *const[]){ "profile", "show", shipped[i], NULL });
                cr_assert_eq(s.status, 0, "show %s: %s", shipped[i], s.err);
                cr_expect(strstr(s.err, "sha256 ") != NULL, "no digest on stderr: %s", s.err);
                FILE *f = fopen(show_file, "we");
                cr_assert_not_null(f);
                fputs(s.out, f);
                fclose(f);

                CmdResult c = run_cmd((const char *const[]){ "profile", "check", show_file, NULL });
                char want[PATH_MAX + 8];
                snprintf(want, sizeof(want), "%s: ok\n", show_file);
                cr_expect_eq(c.status, 0, "check of shown %s: %s", shipped[i], c.err);
                cr_expect_str_eq(c.out, want);
                cr_expect_str_eq(c.err, "");

                /* the file loads to the very same resolved profile: host ids it leaves to the
                 * pool are not shown as set (a replay under a run's resolved profile pinned
                 * the pool's first id) */
                AjProfile *a = load_ok(shipped[i]);
                AjProfile *b = load_ok(show_file);
                cr_expect_str_eq(a->digest, b->digest, "%s", shipped[i]);
                cr_expect_eq(a->host_ids_set, b->host_ids_set, "%s: host ids set %d, shown and read back %d",
                             shipped[i], a->host_ids_set, b->host_ids_set);
                aj_profile_free(a);
                aj_profile_free(b);
                cmd_result_done(&s);
                cmd_result_done(&c);
        }
}

Test(profile_cmd, check_reports_each_file, .init = isolate)
{
        CmdResult r = run_cmd((const char *const[]){ "profile", "check", FIX "/minimal.json", FIX "/bad-pids.json",
                                                     FIX "/full.json", NULL });
        cr_expect_eq(r.status, 1);
        cr_expect_str_eq(r.out, FIX "/minimal.json: ok\n" FIX "/full.json: ok\n");
        cr_expect_str_eq(r.err, FIX "/bad-pids.json:3:13: limits.pids: expected a non-negative integer, got -5\n");
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "check", FIX "/minimal.json", NULL });
        cr_expect_eq(r.status, 0);
        cmd_result_done(&r);
}

Test(profile_cmd, usage_and_help, .init = isolate)
{
        CmdResult r = run_cmd((const char *const[]){ "profile", "frobnicate", NULL });
        cr_expect_eq(r.status, 2);
        cr_expect(strstr(r.err, "usage: agentjail profile") != NULL, "%s", r.err);
        cr_expect_str_eq(r.out, "");
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "check", NULL });
        cr_expect_eq(r.status, 2);
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "show", NULL });
        cr_expect_eq(r.status, 2);
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "show", "a", "b", NULL });
        cr_expect_eq(r.status, 2);
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "--help", NULL });
        cr_expect_eq(r.status, 0);
        cr_expect(strstr(r.out, "arrays and scalar values in the child replace") != NULL);
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "show", "no-such-profile-xyz", NULL });
        cr_expect_eq(r.status, 1);
        cr_expect(strncmp(r.err, "profile \"no-such-profile-xyz\" not found", 39) == 0, "%s", r.err);
        cmd_result_done(&r);
}

Test(profile_cmd, list_json, .init = isolate)
{
        CmdResult r = run_cmd((const char *const[]){ "profile", "list", "--json", NULL });
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_error_t je;
        json_t *arr = json_loads(r.out, 0, &je);
        cr_assert_not_null(arr, "not JSON: %s", r.out);
        cr_assert(json_is_array(arr));
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach (arr, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                if (name && streq(name, "strict")) {
                        found = true;
                        cr_expect(json_is_string(json_object_get(e, "path")));
                        cr_expect(json_is_string(json_object_get(e, "description")));
                        cr_expect_null(json_object_get(e, "error"));
                }
        }
        cr_expect(found);
        json_decref(arr);
        cmd_result_done(&r);

        r = run_cmd((const char *const[]){ "profile", "list", NULL });
        cr_expect_eq(r.status, 0);
        cr_expect(strstr(r.out, "default") != NULL);
        cmd_result_done(&r);
}

/* ---- sha256 ---- */

static void expect_sha(const void *data, size_t len, const char *hex)
{
        uint8_t d[AJ_SHA256_SIZE];
        char got[AJ_SHA256_HEX_SIZE];
        aj_sha256(data, len, d);
        cr_expect_str_eq(aj_sha256_hex(d, got), hex);
}

Test(sha256, fips_vectors)
{
        expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        expect_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        expect_sha(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

        char *a = malloc(1000000);
        cr_assert_not_null(a);
        memset(a, 'a', 1000000);
        expect_sha(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

        /* the same in uneven pieces, across block boundaries */
        AjSha256 c;
        uint8_t d[AJ_SHA256_SIZE];
        char hex[AJ_SHA256_HEX_SIZE];
        aj_sha256_init(&c);
        for (size_t off = 0, step = 1; off < 1000000; off += step, step = step % 131 + 7)
                aj_sha256_update(&c, a + off, off + step > 1000000 ? 1000000 - off : step);
        aj_sha256_final(&c, d);
        cr_expect_str_eq(aj_sha256_hex(d, hex), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        free(a);
}

Test(sha256, padding_edges)
{
        /* 55, 56 and 64 bytes: the length fits, just does not fit, and a full block */
        char buf[64];
        memset(buf, 'a', sizeof(buf));
        expect_sha(buf, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
        expect_sha(buf, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
        expect_sha(buf, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

/* The CPU's SHA instructions (when it has them) and the portable code agree. */
Test(sha256, accelerated_and_portable_agree)
{
        uint8_t buf[1200], d1[AJ_SHA256_SIZE], d2[AJ_SHA256_SIZE];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 131 + 7);
        for (size_t len = 0; len <= sizeof(buf); len += len < 130 ? 1 : 37) {
                aj_sha256_portable_only = false;
                aj_sha256(buf, len, d1);
                aj_sha256_portable_only = true;
                aj_sha256(buf, len, d2);
                cr_assert(memcmp(d1, d2, sizeof(d1)) == 0, "length %zu", len);
        }
        aj_sha256_portable_only = true;
        expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        aj_sha256_portable_only = false;
}

Test(profile, update_digest_follows_changes)
{
        AjProfile *p = load_ok(FIX "/order-a.json");
        char *before = strdup(p->digest);
        cr_assert_geq(aj_profile_update_digest(p), 0);
        cr_expect_str_eq(p->digest, before);
        p->pids = 11;
        cr_assert_geq(aj_profile_update_digest(p), 0);
        cr_expect_str_neq(p->digest, before);
        AjProfile *c = load_ok(FIX "/order-c.json");
        cr_expect_str_eq(p->digest, c->digest);
        free(before);
        aj_profile_free(p);
        aj_profile_free(c);
}

Test(profile, workspace_cannot_shadow_a_shipped_profile)
{
        /* An agent that can write its workspace plants profiles/default.json there. */
        char dir[] = "/tmp/aj-test-plant-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/profiles", dir);
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/profiles/default.json", dir);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("{ \"description\": \"planted\", \"filesystem\": { \"rw\": [\"/\"] } }\n", f);
        fclose(f);
        char old[PATH_MAX];
        cr_assert_not_null(getcwd(old, sizeof(old)));
        cr_assert_eq(chdir(dir), 0);

        AjProfile *p = NULL;
        AjError err = {};
        int r = aj_profile_load("default", &p, &err);
        cr_assert_eq(chdir(old), 0);
        unlink(path);
        snprintf(path, sizeof(path), "%s/profiles", dir);
        rmdir(path);
        rmdir(dir);
        cr_assert_eq(r, 0, "%s", err.message ? err.message : "");
        cr_expect(p->description == NULL || strcmp(p->description, "planted") != 0,
                  "the planted ./profiles/default.json shadowed the shipped profile");
        cr_expect_eq(p->rw.n, 0);
        aj_profile_free(p);
}

/* ---- broker keys: meters, tools, prices, on_breach, alert ---- */

Test(profile, broker_keys_parsed)
{
        AjProfile *p = load_ok(FIX "/broker-full.json");
        cr_expect_eq(p->meters.tokens, 200000);
        cr_expect_eq(p->meters.input_tokens, 150000);
        cr_expect_eq(p->meters.output_tokens, 50000);
        cr_expect_float_eq(p->meters.cost_usd, 5.0, 1e-12);
        cr_expect_eq(p->meters.tool_calls, 500);
        cr_expect_eq(p->meters.tool_calls_per_min, 60);
        cr_expect_eq(p->meters.repeat_limit, 5);
        cr_expect(p->tools_allow_set);
        cr_assert_eq(p->tools_allow.n, 2);
        cr_expect_str_eq(p->tools_allow.items[0], "crm.*");
        cr_assert_eq(p->tools_deny.n, 1);
        cr_expect_str_eq(p->tools_deny.items[0], "email.send");
        cr_assert_eq(p->n_prices, 2);
        cr_expect_str_eq(p->prices[0].model, "gpt-4o");
        cr_expect_float_eq(p->prices[0].input, 2.5e-6, 1e-18);
        cr_expect_float_eq(p->prices[0].cached_input, 1.25e-6, 1e-18);
        cr_expect_float_eq(p->prices[0].web_search, 0.01, 1e-12);
        cr_expect_float_eq(p->prices[0].tool_fee[AJ_TOOL_FEE_CODE_INTERPRETER], 0.03, 1e-12);
        cr_expect_lt(p->prices[0].tool_fee[AJ_TOOL_FEE_FILE_SEARCH], 0, "not given");
        cr_expect_str_eq(p->prices[1].model, "*");
        cr_expect_lt(p->prices[1].cached_input, 0, "no cached_input: priced as input");
        cr_expect_lt(p->prices[1].web_search, 0, "no web_search: none given");
        cr_expect_eq(p->on_breach, AJ_ON_BREACH_KILL);
        cr_assert_eq(p->alert_exec.n, 3);
        cr_expect_str_eq(p->alert_exec.items[0], "/usr/local/bin/page-owner");
        cr_expect_eq(p->alert_timeout_ns, 30ULL * 1000000000ULL);
        aj_profile_free(p);
}

Test(profile, broker_defaults_have_no_caps, .init = isolate)
{
        AjProfile *p = load_ok(FIX "/minimal.json");
        cr_expect_lt(p->meters.tokens, 0);
        cr_expect_lt(p->meters.input_tokens, 0);
        cr_expect_lt(p->meters.output_tokens, 0);
        cr_expect_lt(p->meters.cost_usd, 0);
        cr_expect_lt(p->meters.tool_calls, 0);
        cr_expect_lt(p->meters.tool_calls_per_min, 0);
        cr_expect_lt(p->meters.repeat_limit, 0);
        cr_expect_not(p->tools_allow_set);
        cr_expect_eq(p->tools_deny.n, 0);
        cr_expect_eq(p->n_prices, 0);
        cr_expect_eq(p->on_breach, AJ_ON_BREACH_FREEZE);
        cr_expect_eq(p->alert_exec.n, 0);
        cr_expect_eq(p->alert_timeout_ns, 10ULL * 1000000000ULL);
        aj_profile_free(p);
}

Test(profile, broker_keys_merge_through_extends)
{
        AjProfile *p = load_ok(FIX "/broker-child.json");
        cr_expect_eq(p->meters.tokens, 1000, "the child's cap");
        cr_expect_eq(p->meters.tool_calls, 500, "the parent's other caps stay");
        cr_expect_eq(p->tools_deny.n, 0, "arrays replace");
        cr_expect_eq(p->tools_allow.n, 2);
        cr_expect_eq(p->n_prices, 2);
        cr_expect_eq(p->on_breach, AJ_ON_BREACH_KILL);
        aj_profile_free(p);
}

Test(profile, broker_keys_round_trip_and_change_the_digest)
{
        AjProfile *p = load_ok(FIX "/broker-full.json");
        char *json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        cr_expect(strstr(json, "\"meters\"") && strstr(json, "\"tool_calls_per_min\": 60"), "%s", json);
        cr_expect(strstr(json, "\"on_breach\": \"kill\""), "%s", json);
        AjProfile *q = NULL;
        AjError err = {};
        cr_assert_eq(aj_profile_parse(json, NULL, &q, &err), 0, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest);
        cr_expect_float_eq(q->prices[0].output, 1.0e-5, 1e-18);
        cr_expect_float_eq(q->prices[0].web_search, 0.01, 1e-12);
        cr_expect_float_eq(q->prices[0].tool_fee[AJ_TOOL_FEE_CODE_INTERPRETER], 0.03, 1e-12);
        cr_expect_lt(q->prices[0].tool_fee[AJ_TOOL_FEE_WEB_FETCH], 0);
        cr_expect_lt(q->prices[1].web_search, 0);
        cr_expect_eq(q->alert_timeout_ns, p->alert_timeout_ns);
        char *before = strdup(p->digest);
        p->meters.tokens = 1;
        cr_assert_geq(aj_profile_update_digest(p), 0);
        cr_expect_str_neq(p->digest, before, "caps are part of the digest");
        free(before);
        free(json);
        aj_profile_free(p);
        aj_profile_free(q);
}

Test(profile, broker_key_errors)
{
        expect_error("bad-meters-type.json",
                     "@/bad-meters-type.json:3:15: meters.tokens: expected an integer from 0 to 1000000000000000, "
                     "got \"lots\"");
        expect_error("bad-meters-unknown.json",
                     "@/bad-meters-unknown.json:2:28: meters.tokenz: unknown key (expected one of: tokens, "
                     "input_tokens, output_tokens, cost_usd, tool_calls, tool_calls_per_min, repeat_limit, wall)");
        expect_error("bad-meters-repeat.json",
                     "@/bad-meters-repeat.json:2:31: meters.repeat_limit: expected an integer from 1 to 1000000, "
                     "got 0");
        expect_error("bad-cost.json",
                     "@/bad-cost.json:2:27: meters.cost_usd: expected a number of US dollars from 0 to 1000000, "
                     "got -0.5");
        expect_error("bad-price.json",
                     "@/bad-price.json:3:15: prices.gpt-4o: expected both \"input\" and \"output\" (USD per token)");
        expect_error("bad-price-negative.json",
                     "@/bad-price-negative.json:2:31: prices.m.input: expected US dollars per token from 0 to 1 "
                     "(such as 2.5e-6), got -1");
        expect_error("bad-price-search.json",
                     "@/bad-price-search.json:2:61: prices.m.web_search: expected US dollars per search from 0 to 1 "
                     "(such as 0.01), got \"10\"");
        expect_error("bad-price-tool.json",
                     "@/bad-price-tool.json:2:62: prices.m.file_search: expected US dollars per use from 0 to 1 "
                     "(such as 0.03), got 2.5");
        expect_error("bad-on-breach.json",
                     "@/bad-on-breach.json:2:16: on_breach: expected \"freeze\" or \"kill\", got \"panic\"");
        expect_error("bad-alert.json",
                     "@/bad-alert.json:2:23: alert.exec[0]: the program: path must be absolute: \"page-owner\"");
        expect_error("bad-tool-pattern.json",
                     "@/bad-tool-pattern.json:2:33: tools.allow[1]: expected a tool name or a pattern with '*' "
                     "(1 to 256 characters, no spaces or control characters), got \"has space\"");
}

/* ---- rollback: the handler of `agentjail rollback --apply` ---- */

Test(profile, rollback_keys)
{
        AjProfile *p = load_ok(FIX "/rollback-full.json");
        cr_assert_eq(p->rollback_exec.n, 3);
        cr_expect_str_eq(p->rollback_exec.items[0], "/usr/local/bin/crm-undo");
        cr_expect_str_eq(p->rollback_exec.items[2], "prod");
        cr_expect_eq(p->rollback_timeout_ns, 90ULL * 1000000000ULL);
        char *json = aj_profile_to_json(p);
        AjProfile *q = NULL;
        AjError err = {};
        cr_assert_eq(aj_profile_parse(json, NULL, &q, &err), 0, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest, "round trip");
        cr_expect_eq(q->rollback_exec.n, 3);
        cr_expect_eq(q->rollback_timeout_ns, p->rollback_timeout_ns);
        free(json);
        aj_profile_free(q);
        aj_profile_free(p);

        /* Unset, the key is not shown: the digests of profiles without one are unchanged. */
        p = load_ok(FIX "/minimal.json");
        cr_expect_eq(p->rollback_exec.n, 0);
        cr_expect_eq(p->rollback_timeout_ns, 60ULL * 1000000000ULL);
        json = aj_profile_to_json(p);
        cr_expect_null(strstr(json, "\"rollback\""), "%s", json);
        free(json);
        aj_profile_free(p);

        expect_error("bad-rollback-exec.json",
                     "@/bad-rollback-exec.json:2:26: rollback.exec[0]: the program: path must be absolute: "
                     "\"crm-undo\"");
        expect_error("bad-rollback-timeout.json",
                     "@/bad-rollback-timeout.json:2:28: rollback.timeout: expected a duration from \"1s\" to \"1h\" "
                     "such as \"60s\", got \"2h\"");
        expect_error("bad-rollback-type.json",
                     "@/bad-rollback-type.json:2:25: rollback.exec: expected an array, got \"/bin/undo\"");
}

/* ---- approvals: tool calls held for an operator ---- */

Test(profile, approvals_parsed)
{
        AjProfile *p = load_ok(FIX "/approvals-full.json");
        cr_assert_eq(p->approval_tools.n, 2);
        cr_expect_str_eq(p->approval_tools.items[0], "crm.update");
        cr_expect_str_eq(p->approval_tools.items[1], "refund.*");
        cr_expect_null(p->approval_tools.items[2]);
        cr_expect_eq(p->approval_timeout_ns, 5400ULL * 1000000000ULL);
        cr_assert_eq(p->tools_deny.n, 1, "the tool rules are separate");
        aj_profile_free(p);
}

Test(profile, approvals_default_timeout)
{
        AjProfile *p = load_ok(FIX "/minimal.json");
        cr_expect_eq(p->approval_tools.n, 0);
        cr_expect_null(p->approval_tools.items);
        cr_expect_eq(p->approval_timeout_ns, 15ULL * 60ULL * 1000000000ULL);
        aj_profile_free(p);

        /* tools without a timeout: the default too */
        AjError err = {};
        int r = aj_profile_parse("{\"approvals\": {\"tools\": [\"crm.*\"]}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_assert_eq(p->approval_tools.n, 1);
        cr_expect_eq(p->approval_timeout_ns, 15ULL * 60ULL * 1000000000ULL);
        aj_profile_free(p);

        /* the bounds themselves are accepted */
        r = aj_profile_parse("{\"approvals\": {\"timeout\": \"7d\"}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->approval_timeout_ns, 7ULL * 86400ULL * 1000000000ULL);
        aj_profile_free(p);
        r = aj_profile_parse("{\"approvals\": {\"timeout\": \"1ms\"}}", NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->approval_timeout_ns, 1000000ULL);
        aj_profile_free(p);
}

/* Like "tools": the object merges key by key, the child's list replaces the parent's. */
Test(profile, approvals_merge_through_extends)
{
        AjProfile *p = load_ok(FIX "/approvals-child.json");
        cr_assert_eq(p->approval_tools.n, 2, "a child without \"tools\" keeps the parent's list");
        cr_expect_str_eq(p->approval_tools.items[1], "refund.*");
        cr_expect_eq(p->approval_timeout_ns, 120ULL * 1000000000ULL, "the child's timeout");
        aj_profile_free(p);

        p = load_ok(FIX "/approvals-grandchild.json");
        cr_assert_eq(p->approval_tools.n, 1, "the child's list replaces the parent's");
        cr_expect_str_eq(p->approval_tools.items[0], "payments.*");
        cr_expect_eq(p->approval_timeout_ns, 120ULL * 1000000000ULL, "the timeout is inherited");
        aj_profile_free(p);

        AjError err = {};
        char text[PATH_MAX + 128];
        snprintf(text, sizeof(text), "{\"extends\": \"%s/approvals-full.json\", \"approvals\": {\"tools\": []}}", FIX);
        int r = aj_profile_parse(text, NULL, &p, &err);
        cr_assert(r >= 0, "%s", err.message ?: "");
        cr_expect_eq(p->approval_tools.n, 0, "an empty list clears the parent's");
        cr_expect_eq(p->approval_timeout_ns, 5400ULL * 1000000000ULL);
        aj_profile_free(p);
}

Test(profile, approvals_round_trip_and_change_the_digest)
{
        AjProfile *p = load_ok(FIX "/approvals-full.json");
        char *json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        cr_expect(strstr(json, "\"approvals\"") && strstr(json, "\"refund.*\"") &&
                          strstr(json, "\"timeout\": \"1h30m\""),
                  "%s", json);
        AjProfile *q = NULL;
        AjError err = {};
        cr_assert_eq(aj_profile_parse(json, NULL, &q, &err), 0, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest);
        cr_assert_eq(q->approval_tools.n, 2);
        cr_expect_eq(q->approval_timeout_ns, p->approval_timeout_ns);

        char *before = strdup(p->digest);
        p->approval_timeout_ns = 60ULL * 1000000000ULL;
        cr_assert_geq(aj_profile_update_digest(p), 0);
        cr_expect_str_neq(p->digest, before, "the approval timeout is part of the digest");
        free(before);
        free(json);
        aj_profile_free(p);
        aj_profile_free(q);

        /* shown also when empty, with the default timeout, and loads back the same */
        p = load_ok(FIX "/minimal.json");
        json = aj_profile_to_json(p);
        cr_assert_not_null(json);
        cr_expect(strstr(json, "\"timeout\": \"15m\""), "%s", json);
        cr_assert_eq(aj_profile_parse(json, NULL, &q, &err), 0, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest);
        free(json);
        aj_profile_free(p);
        aj_profile_free(q);
}

Test(profile, approvals_errors)
{
        expect_error("bad-approvals-type.json",
                     "@/bad-approvals-type.json:2:27: approvals.tools: expected an array, got \"crm.update\"");
        expect_error("bad-approvals-element.json",
                     "@/bad-approvals-element.json:2:42: approvals.tools[1]: expected a string, got 7");
        expect_error("bad-approvals-empty.json",
                     "@/bad-approvals-empty.json:2:42: approvals.tools[1]: expected a tool name or a pattern with "
                     "'*' (1 to 256 characters, no spaces or control characters), got \"\"");
        expect_error("bad-approvals-pattern.json",
                     "@/bad-approvals-pattern.json:2:40: approvals.tools[1]: expected a tool name or a pattern "
                     "with '*' (1 to 256 characters, no spaces or control characters), got \"crm update\"");
        expect_error("bad-approvals-timeout-type.json",
                     "@/bad-approvals-timeout-type.json:2:29: approvals.timeout: expected a duration greater than 0 "
                     "and at most \"7d\" such as \"15m\", got true");
        expect_error("bad-approvals-timeout.json",
                     "@/bad-approvals-timeout.json:2:29: approvals.timeout: expected a duration greater than 0 "
                     "and at most \"7d\" such as \"15m\", got \"a while\"");
        expect_error("bad-approvals-timeout-zero.json",
                     "@/bad-approvals-timeout-zero.json:2:29: approvals.timeout: expected a duration greater than 0 "
                     "and at most \"7d\" such as \"15m\", got \"0s\"");
        expect_error("bad-approvals-timeout-large.json",
                     "@/bad-approvals-timeout-large.json:2:29: approvals.timeout: expected a duration greater than "
                     "0 and at most \"7d\" such as \"15m\", got \"7d1s\"");
        expect_error("bad-approvals-unknown.json",
                     "@/bad-approvals-unknown.json:2:43: approvals.timeout_s: unknown key (expected one of: tools, "
                     "timeout)");
}

/* ---- llm: the providers the run's gateway serves ---- */

static AjProfile *parse_text(const char *text, AjError *err)
{
        AjProfile *p = NULL;
        int r = aj_profile_parse(text, NULL, &p, err);
        return r < 0 ? NULL : p;
}

static void expect_llm_error(const char *text, const char *key, const char *problem)
{
        AjError err = {};
        AjProfile *p = parse_text(text, &err);
        cr_expect_null(p, "accepted: %s", text);
        aj_profile_free(p);
        cr_expect(err.message && strstr(err.message, key) && strstr(err.message, problem),
                  "%s\n   got: %s\n  want the key '%s' and '%s'", text, err.message ?: "(none)", key, problem);
        aj_error_clear(&err);
}

Test(profile, llm_providers_parsed_with_defaults, .init = isolate)
{
        AjError err = {};
        AjProfile *p = parse_text(
                "{\"llm\": {\"providers\": {"
                "\"anthropic\": {},"
                "\"openai\": {\"key_file\": \"/etc/agentjail/keys/openai\", \"url\": \"https://api.openai.com\"},"
                "\"local\": {\"api\": \"openai\", \"url\": \"http://10.0.0.5:4000/v1\", \"key_env\": \"LOCAL_KEY\","
                " \"ca_file\": \"/etc/ssl/local.pem\"}},"
                "\"record\": \"full\", \"record_bytes\": \"8M\", \"provider_fetch\": true}}",
                &err);
        cr_assert_not_null(p, "%s", err.message ?: "");
        cr_assert_eq(p->n_llm_providers, 3);
        const AjLlmProvider *a = &p->llm_providers[0], *o = &p->llm_providers[1], *l = &p->llm_providers[2];
        cr_expect_str_eq(a->name, "anthropic");
        cr_expect_eq(a->api, AJ_LLM_PROVIDER_ANTHROPIC);
        cr_expect_str_eq(a->url, "https://api.anthropic.com", "the official endpoint by default");
        cr_expect_str_eq(a->key_env, "ANTHROPIC_API_KEY", "the SDK's variable by default");
        cr_expect_null(a->key_file);
        cr_expect_str_eq(o->key_file, "/etc/agentjail/keys/openai");
        cr_expect_null(o->key_env, "a key_file replaces the default key_env");
        cr_expect_eq(l->api, AJ_LLM_PROVIDER_OPENAI);
        cr_expect_str_eq(l->url, "http://10.0.0.5:4000/v1");
        cr_expect_str_eq(l->ca_file, "/etc/ssl/local.pem");
        cr_expect_eq(p->llm_record, AJ_LLM_RECORD_FULL);
        cr_expect_eq(p->llm_record_bytes, 8ULL << 20);
        cr_expect(p->llm_provider_fetch);

        /* Round trip: the same profile, the same digest. */
        char *json = aj_profile_to_json(p);
        AjProfile *q = parse_text(json, &err);
        cr_assert_not_null(q, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest);
        cr_expect_str_eq(q->llm_providers[2].key_env, "LOCAL_KEY");
        cr_expect(q->llm_provider_fetch, "shown, and read back");
        free(json);
        aj_profile_free(q);
        aj_profile_free(p);
}

Test(profile, llm_enable_adds_a_builtin_or_the_profiles_own, .init = isolate)
{
        AjError err = {};
        AjProfile *p = parse_text("{\"llm\": {\"providers\": {\"openai\": {\"url\": \"http://127.0.0.1:9\"}}}}", &err);
        cr_assert_not_null(p, "%s", err.message ?: "");
        cr_expect_eq(p->llm_record_bytes, 64ULL << 20);
        cr_expect_eq(p->llm_record, AJ_LLM_RECORD_DIGEST, "\"digest\" by default");
        cr_expect(!p->llm_provider_fetch, "no provider-side fetching by default");
        cr_assert_eq(aj_profile_llm_enable(p, "openai", &err), 0);
        cr_expect_eq(p->n_llm_providers, 1, "the profile's own openai is kept, not doubled");
        cr_expect_str_eq(p->llm_providers[0].url, "http://127.0.0.1:9");
        cr_assert_eq(aj_profile_llm_enable(p, "anthropic", &err), 0);
        cr_assert_eq(p->n_llm_providers, 2);
        cr_expect_str_eq(p->llm_providers[1].url, "https://api.anthropic.com");
        cr_expect_eq(aj_profile_llm_enable(p, "mistral", &err), -EINVAL);
        cr_expect(err.message && strstr(err.message, "--llm mistral") && strstr(err.message, "anthropic and openai"),
                  "%s", err.message ?: "");
        aj_error_clear(&err);
        aj_profile_free(p);
}

/* llm.record: three modes, "digest" the default; each survives the round trip (the
 * resolved profile a replay reads its mode from); anything else is refused where it is. */
Test(profile, llm_record_modes, .init = isolate)
{
        static const struct {
                const char *name;
                AjLlmRecord mode;
        } modes[] = { { "digest", AJ_LLM_RECORD_DIGEST },
                      { "full", AJ_LLM_RECORD_FULL },
                      { "off", AJ_LLM_RECORD_OFF } };
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                char text[128];
                snprintf(text, sizeof(text), "{\"llm\": {\"record\": \"%s\"}}", modes[i].name);
                AjError err = {};
                AjProfile *p = parse_text(text, &err);
                cr_assert_not_null(p, "%s: %s", text, err.message ?: "");
                cr_expect_eq(p->llm_record, modes[i].mode, "%s", text);
                char *json = aj_profile_to_json(p);
                AjProfile *q = parse_text(json, &err);
                cr_assert_not_null(q, "%s", json);
                cr_expect_eq(q->llm_record, modes[i].mode, "round trip of %s: %s", modes[i].name, json);
                free(json);
                aj_profile_free(q);
                aj_profile_free(p);
        }
        AjProfile *p = NULL;
        AjError err = {};
        cr_expect_lt(aj_profile_parse("{\n  \"llm\": {\"record\": \"none\"}\n}\n", "rec.json", &p, &err), 0);
        cr_expect_null(p);
        cr_expect_str_eq(err.message ?: "",
                         "rec.json:2:21: llm.record: expected \"digest\", \"full\" or \"off\", got \"none\"");
        aj_error_clear(&err);
}

Test(profile, llm_errors, .init = isolate)
{
        expect_llm_error("{\"llm\": {\"providers\": {\"local\": {\"url\": \"http://x:1\", \"key_env\": \"K\"}}}}",
                         "llm.providers.local", "\"api\" is required");
        expect_llm_error("{\"llm\": {\"providers\": {\"local\": {\"api\": \"openai\", \"key_env\": \"K\"}}}}",
                         "llm.providers.local", "\"url\" is required");
        expect_llm_error("{\"llm\": {\"providers\": {\"local\": {\"api\": \"openai\", \"url\": \"http://x\"}}}}",
                         "llm.providers.local", "a key is required");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"key_env\": \"K\", \"key_file\": \"/k\"}}}}",
                         "llm.providers.anthropic", "not both");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"api\": \"gemini\"}}}}",
                         "llm.providers.anthropic.api", "expected \"anthropic\" or \"openai\"");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"url\": \"ftp://x\"}}}}",
                         "llm.providers.anthropic.url", "http:// or https://");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"url\": \"https://user@host\"}}}}",
                         "llm.providers.anthropic.url", "user info");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"url\": \"https://host:99999\"}}}}",
                         "llm.providers.anthropic.url", "bad port");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"key_env\": \"1BAD\"}}}}",
                         "llm.providers.anthropic.key_env", "environment variable name");
        expect_llm_error("{\"llm\": {\"providers\": {\"anthropic\": {\"key_file\": \"keys/a\"}}}}",
                         "llm.providers.anthropic.key_file", "absolute");
        expect_llm_error("{\"llm\": {\"providers\": {\"Bad Name\": {}}}}", "llm.providers", "invalid provider name");
        expect_llm_error("{\"llm\": {\"record\": \"everything\"}}", "llm.record", "\"digest\", \"full\" or \"off\"");
        expect_llm_error("{\"llm\": {\"record_bytes\": \"1K\"}}", "llm.record_bytes", "from 64K to 1T");
        expect_llm_error("{\"llm\": {\"provider\": {}}}", "llm.provider", "unknown key");
        expect_llm_error("{\"llm\": {\"provider_fetch\": \"yes\"}}", "llm.provider_fetch", "true or false");
}

/* llm.providers.NAME.paths: "METHOD /path" rules the key is also sent to, kept in file
 * order, shown in the resolved profile (and so its digest) only when given, checked
 * strictly where they are, the file and the field named. */
Test(profile, llm_provider_paths, .init = isolate)
{
        AjError err = {};
        AjProfile *p = parse_text("{\"llm\": {\"providers\": {\"openai\": {\"paths\": [\"GET /v1/files/*/content\", "
                                  "\"* /v1/batches\", \"DELETE /v1/files/*\", \"HEAD /\"]}, \"anthropic\": {}}}}",
                                  &err);
        cr_assert_not_null(p, "%s", err.message ?: "");
        const AjLlmProvider *o = &p->llm_providers[0];
        cr_assert_eq(aj_strv_length(o->paths), 4);
        cr_expect_str_eq(o->paths[0], "GET /v1/files/*/content");
        cr_expect_str_eq(o->paths[3], "HEAD /");
        cr_expect_null(p->llm_providers[1].paths, "none given: none");
        char *json = aj_profile_to_json(p);
        json_t *shown = json_loads(json, 0, NULL);
        cr_expect_eq(json_array_size(json_object_get(json_object_get(json_object_get(json_object_get(shown, "llm"),
                                                                                     "providers"),
                                                                     "openai"),
                                                     "paths")),
                     4, "%s", json);
        json_decref(shown);
        AjProfile *q = parse_text(json, &err);
        cr_assert_not_null(q, "%s\n%s", err.message ?: "", json);
        cr_expect_str_eq(q->digest, p->digest, "the round trip keeps the digest");
        cr_expect_str_eq(q->llm_providers[0].paths[2], "DELETE /v1/files/*");
        free(json);
        aj_profile_free(q);

        /* A profile opening none resolves as before the key existed: no "paths" shown. */
        AjProfile *none = parse_text("{\"llm\": {\"providers\": {\"openai\": {\"paths\": []}}}}", &err);
        cr_assert_not_null(none, "%s", err.message ?: "");
        json = aj_profile_to_json(none);
        cr_expect(strstr(json, "\"paths\"") == NULL, "%s", json);
        free(json);
        aj_profile_free(none);
        aj_profile_free(p);

        static const struct {
                const char *rule, *problem;
        } bad[] = {
                { "", "empty" },
                { "GET", "one space" },
                { "/v1/files", "one space" },
                { "get /v1/files", "the method must be" },
                { "FETCH /v1/files", "the method must be" },
                { "GET  /v1/files", "must start with '/'" },
                { "GET v1/files", "must start with '/'" },
                { "GET /v1/files/../models", "dot segments" },
                { "GET /v1/./files", "dot segments" },
                { "GET /v1/%66iles", "percent-escapes" },
                { "GET /v1/files?purpose=batch", "query string" },
                { "GET /v1/files#x", "query string" },
                { "GET /v1//files", "empty path segments" },
                { "GET /v1/files/", "trailing '/'" },
                { "GET /v1/files/file-*", "whole segment" },
                { "GET /v1/files;x", "reserved" },
                { "GET /v1/files x", "space" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char text[256];
                snprintf(text, sizeof(text),
                         "{\"llm\": {\"providers\": {\"openai\": {\"paths\": [\"GET /v1/models\", \"%s\"]}}}}",
                         bad[i].rule);
                expect_llm_error(text, "llm.providers.openai.paths[1]", bad[i].problem);
        }
        expect_llm_error("{\"llm\": {\"providers\": {\"openai\": {\"paths\": \"GET /v1/files\"}}}}",
                         "llm.providers.openai.paths", "expected an array");
        expect_llm_error("{\"llm\": {\"providers\": {\"openai\": {\"paths\": [7]}}}}", "llm.providers.openai.paths[0]",
                         "string");
        char many[8192] = "{\"llm\": {\"providers\": {\"openai\": {\"paths\": [";
        for (int i = 0; i <= AJ_KEY_PATHS_MAX; i++)
                snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"GET /v1/x%d\"", i ? ", " : "", i);
        strcat(many, "]}}}}");
        expect_llm_error(many, "llm.providers.openai.paths", "too many paths (at most 64)");

        /* The file, line and column of the bad rule. */
        AjProfile *r = NULL;
        cr_expect_lt(aj_profile_parse("{\"llm\": {\"providers\": {\"openai\": {\"paths\": [\n  \"GET /v1/files/..\"]}}}}\n",
                                      "keys.json", &r, &err),
                     0);
        cr_expect_null(r);
        const char *want = "keys.json:2:3: llm.providers.openai.paths[0]: dot segments";
        cr_expect(err.message && strncmp(err.message, want, strlen(want)) == 0, "%s", err.message ?: "");
        aj_error_clear(&err);
}

/* A price entry may give the model's maximum output tokens (the gateway bounds a request
 * without an output limit by it): kept, shown in the profile's JSON, a bad value refused
 * naming the field. */
Test(profile, max_output_tokens_of_a_price, .init = isolate)
{
        AjError err = {};
        AjProfile *p = parse_text("{\"prices\": {\"gpt-x\": {\"input\": 3e-6, \"output\": 1.5e-5, "
                                  "\"max_output_tokens\": 16384}, \"*\": {\"input\": 1e-6, \"output\": 1e-6}}}",
                                  &err);
        cr_assert_not_null(p, "%s", err.message ?: "");
        cr_assert_eq(p->n_prices, 2);
        cr_expect_eq(p->prices[0].max_output_tokens, 16384);
        cr_expect_eq(p->prices[1].max_output_tokens, 0, "not given");
        char *json = aj_profile_to_json(p);
        json_t *back = json_loads(json, 0, NULL);
        json_t *prices = json_object_get(back, "prices");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(prices, "gpt-x"), "max_output_tokens")), 16384,
                     "%s", json);
        cr_expect_null(json_object_get(json_object_get(prices, "*"), "max_output_tokens"), "%s", json);
        json_decref(back);
        free(json);
        aj_profile_free(p);
        static const char *const bad[] = { "0", "-1", "16384.5", "\"16384\"", "10000001", "null" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char text[256];
                snprintf(text, sizeof(text),
                         "{\"prices\": {\"m\": {\"input\": 1e-6, \"output\": 1e-6, \"max_output_tokens\": %s}}}",
                         bad[i]);
                expect_llm_error(text, "prices.m.max_output_tokens",
                                 "expected the model's maximum output tokens, a whole number from 1 to 10000000");
        }
}

/* Anthropic's code execution has a fee of its own in the profile's prices (USD per response
 * that ran it), checked as the other tools' fees are. */
Test(profile, code_execution_fee_priced, .init = isolate)
{
        AjError err = {};
        AjProfile *p = parse_text("{\"prices\": {\"claude-x\": {\"input\": 3e-6, \"output\": 1.5e-5, "
                                  "\"code_execution\": 0.05}}}",
                                  &err);
        cr_assert_not_null(p, "%s", err.message ?: "");
        cr_assert_eq(p->n_prices, 1);
        cr_expect_float_eq(p->prices[0].tool_fee[AJ_TOOL_FEE_CODE_EXECUTION], 0.05, 1e-12);
        cr_expect_lt(p->prices[0].tool_fee[AJ_TOOL_FEE_CODE_INTERPRETER], 0, "not given");
        aj_profile_free(p);
        expect_llm_error("{\"prices\": {\"m\": {\"input\": 1e-6, \"output\": 1e-6, \"code_execution\": 5}}}",
                         "prices.m.code_execution", "per use from 0 to 1");
}
