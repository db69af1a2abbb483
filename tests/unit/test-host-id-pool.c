/* SPDX-License-Identifier: Apache-2.0 */
/* The per-run host id pool (src/host-id-pool.c): slots held by flock on files in a directory
 * of its own, here a temporary one with a few slots. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host-id-pool.h"
#include "util/macros.h"

#define FIRST AJ_HOST_ID_POOL_FIRST

static char root[] = "/tmp/aj-test-pool.XXXXXX";
static char dir[4096]; /* root/run/host-ids: the parent made as the runtime root would be */

static void setup(void)
{
        cr_assert_not_null(mkdtemp(root));
        cr_assert_eq(chmod(root, 0700), 0);
        snprintf(dir, sizeof(dir), "%s/run/host-ids", root);
}

static void teardown(void)
{
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        (void)system(cmd);
}

TestSuite(host_id_pool, .init = setup, .fini = teardown);

/* Whether another open file can take the slot's lock now. */
static bool slot_lockable(unsigned long id, int how)
{
        char path[4200];
        snprintf(path, sizeof(path), "%s/%lu", dir, id);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        bool ok = flock(fd, how | LOCK_NB) == 0;
        close(fd);
        return ok;
}

Test(host_id_pool, lowest_free_first_and_reused_after_release)
{
        AjHostIdLease a = AJ_HOST_ID_LEASE_INIT, b = AJ_HOST_ID_LEASE_INIT, c = AJ_HOST_ID_LEASE_INIT;
        unsigned long ia = 0, ib = 0, ic = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &a, &ia, NULL), 0);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ia, FIRST);
        cr_assert_eq(ib, FIRST + 1, "a held slot is skipped");
        cr_assert_geq(a.fd[0], 0);
        cr_assert_eq(a.fd[1], -1);
        cr_assert_not(slot_lockable(ia, LOCK_SH), "held exclusively");
        cr_assert(fcntl(a.fd[0], F_GETFD) & FD_CLOEXEC, "nothing the supervisor execs inherits it");

        aj_host_id_lease_release(&a);
        cr_assert_eq(a.fd[0], -1);
        cr_assert(slot_lockable(ia, LOCK_EX), "free once released");
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &c, &ic, NULL), 0);
        cr_assert_eq(ic, FIRST, "the freed slot is the lowest free again");
        aj_host_id_lease_release(&b);
        aj_host_id_lease_release(&c);

        struct stat st;
        cr_assert_eq(stat(dir, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0700, "the pool's directory is its owner's alone");
}

Test(host_id_pool, full_pool_fails_closed)
{
        AjHostIdLease l[3] = { AJ_HOST_ID_LEASE_INIT, AJ_HOST_ID_LEASE_INIT, AJ_HOST_ID_LEASE_INIT };
        unsigned long id = 0;
        for (size_t i = 0; i < 2; i++)
                cr_assert_eq(aj_host_id_pool_take(dir, 2, &l[i], &id, NULL), 0);
        AjError e = {};
        cr_assert_eq(aj_host_id_pool_take(dir, 2, &l[2], &id, &e), -EUSERS);
        cr_assert_eq(l[2].fd[0], -1, "nothing is written on failure");
        cr_assert(strstr(e.message, "every one of the 2 host id slots (1879048192-1879048193"), "%s", e.message);
        aj_error_clear(&e);
        for (size_t i = 0; i < 3; i++)
                aj_host_id_lease_release(&l[i]);
}

/* The lock lives as long as any fd on its open file: a forked watchdog keeps the slot after
 * the supervisor closed (or lost) its own. */
Test(host_id_pool, held_by_a_forked_process_after_the_parent_closes)
{
        AjHostIdLease a = AJ_HOST_ID_LEASE_INIT;
        unsigned long id = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &a, &id, NULL), 0);
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                close(p[1]);
                char c;
                (void)read(p[0], &c, 1); /* until the test says */
                _exit(0);
        }
        close(p[0]);
        aj_host_id_lease_release(&a);
        cr_assert_not(slot_lockable(id, LOCK_EX), "the child still holds it");
        AjHostIdLease b = AJ_HOST_ID_LEASE_INIT;
        unsigned long id2 = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &id2, NULL), 0);
        cr_assert_neq(id2, id, "not handed out while the child lives");
        close(p[1]);
        cr_assert_eq(waitpid(pid, NULL, 0), pid);
        cr_assert(slot_lockable(id, LOCK_EX), "free once the child is gone");
        aj_host_id_lease_release(&b);
}

/* A watchdog that gave up on a process that does not die, or one killed with its supervisor,
 * lets go of the slot's lock while the run's processes may still run as its ids: the slot
 * stays taken while a directory the run named (its cgroup's) is there, and is free again
 * once it is gone; one whose file cannot be read as ours is not free either. */
Test(host_id_pool, a_slot_stays_taken_while_its_last_runs_cgroup_is_there)
{
        char cg_v2[4200], cg_v1[4200];
        snprintf(cg_v2, sizeof(cg_v2), "%s/unified-agentjail-run", root);
        snprintf(cg_v1, sizeof(cg_v1), "%s/memory-agentjail-run", root);
        cr_assert_eq(mkdir(cg_v2, 0755), 0);
        AjHostIdLease a = AJ_HOST_ID_LEASE_INIT;
        unsigned long ia = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &a, &ia, NULL), 0);
        cr_assert_eq(ia, FIRST);
        char *const first[] = { cg_v2, NULL }, *const both[] = { cg_v2, cg_v1, NULL };
        cr_assert_eq(aj_host_id_lease_mark(&a, NULL, first), 0);
        cr_assert_eq(aj_host_id_lease_mark(&a, NULL, both), 0, "the v1 directories, made later, added");
        aj_host_id_lease_release(&a); /* the watchdog gave up, or was killed */
        cr_assert(slot_lockable(ia, LOCK_EX), "nobody holds the lock");

        AjHostIdLease b = AJ_HOST_ID_LEASE_INIT;
        unsigned long ib = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ib, FIRST + 1, "not handed out while the run's cgroup is there");
        aj_host_id_lease_release(&b);

        AjHostIdLease full = AJ_HOST_ID_LEASE_INIT;
        AjError e = {};
        cr_assert_eq(aj_host_id_pool_take(dir, 1, &full, &ib, &e), -EUSERS, "fails closed");
        cr_assert(strstr(e.message, "or keeps an ended run's cgroup (1 of them"), "%s", e.message);
        cr_assert(strstr(e.message, "removes a cgroup no run directory leads to any more"),
                  "the advice covers a run whose directory was deleted: %s", e.message);
        aj_error_clear(&e);

        cr_assert_eq(rmdir(cg_v2), 0); /* removed (the v1 one was never made) */
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ib, FIRST, "free again once its directories are gone");
        char path[4200];
        snprintf(path, sizeof(path), "%s/%lu", dir, ib);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        off_t last = st.st_size;
        cr_assert_gt(last, 0, "the last run's lines stay until the new holder's mark (no truncation)");
        /* A mark shorter than the last run's lines writes over them, padded with empty
         * lines, not cut: the file names only the new holder's directory. */
        char *const shorter[] = { cg_v1, NULL };
        cr_assert_lt(strlen(cg_v1) + 1, (size_t)last);
        cr_assert_eq(aj_host_id_lease_mark(&b, NULL, shorter), 0);
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_size, last, "padded to the length that was there");
        aj_host_id_lease_release(&b);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ib, FIRST, "the padding names nothing: free, its one directory gone");
        aj_host_id_lease_release(&b);

        /* Not a list of paths (nor ours): not free. A line not ended is one a killed writer
         * did not finish, and names nothing. */
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "relative/path\n");
        fclose(f);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ib, FIRST + 1, "a file that is not ours keeps the slot");
        aj_host_id_lease_release(&b);
        f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "%s", cg_v1);
        fclose(f);
        cr_assert_eq(mkdir(cg_v1, 0755), 0);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(ib, FIRST, "an unfinished line names nothing");

        char *const rel[] = { "agentjail/x", NULL };
        cr_assert_eq(aj_host_id_lease_mark(&b, NULL, rel), -EINVAL);
        AjHostIdLease named = AJ_HOST_ID_LEASE_INIT;
        cr_assert_eq(aj_host_id_pool_share(dir, FIRST + 3, FIRST + 3, &named, NULL), 0);
        cr_assert_eq(aj_host_id_lease_mark(&named, NULL, both), 0, "a profile's named ids: nothing written");
        snprintf(path, sizeof(path), "%s/%lu", dir, FIRST + 3);
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_size, 0);
        aj_host_id_lease_release(&named);
        aj_host_id_lease_release(&b);
}

/* A profile's named ids in the pool: shared among such runs, never a run's own meanwhile,
 * and refused while a run holds them as its own. */
Test(host_id_pool, named_ids_share_their_slot)
{
        AjHostIdLease n1 = AJ_HOST_ID_LEASE_INIT, n2 = AJ_HOST_ID_LEASE_INIT, own = AJ_HOST_ID_LEASE_INIT;
        cr_assert_eq(aj_host_id_pool_share(dir, FIRST, FIRST + 2, &n1, NULL), 0);
        cr_assert_geq(n1.fd[0], 0);
        cr_assert_geq(n1.fd[1], 0, "uid and gid in two slots: both held");
        cr_assert_eq(aj_host_id_pool_share(dir, FIRST, FIRST, &n2, NULL), 0, "shared by two runs");
        cr_assert_eq(n2.fd[1], -1, "one slot for uid = gid");
        unsigned long id = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &own, &id, NULL), 0);
        cr_assert_eq(id, FIRST + 1, "the named slots are skipped");

        AjHostIdLease n3 = AJ_HOST_ID_LEASE_INIT;
        AjError e = {};
        cr_assert_eq(aj_host_id_pool_share(dir, FIRST + 1, FIRST + 1, &n3, &e), -EBUSY);
        cr_assert(strstr(e.message, "host id 1879048193 is in the pool of per-run ids (1879048192-1879113727) and "
                                    "a run holds it as its own"),
                  "%s", e.message);
        cr_assert_eq(n3.fd[0], -1);
        aj_error_clear(&e);

        AjHostIdLease out = AJ_HOST_ID_LEASE_INIT;
        cr_assert_eq(aj_host_id_pool_share("/nonexistent/pool", 200000, 300000, &out, NULL), 0,
                     "ids outside the pool need no lock (nor the directory)");
        cr_assert_eq(out.fd[0], -1);
        cr_assert_eq(out.fd[1], -1);
        aj_host_id_lease_release(&n1);
        aj_host_id_lease_release(&n2);
        aj_host_id_lease_release(&own);
}

/* Named ids whose slot keeps an ended run's cgroup (its watchdog gave up on a process that
 * does not die): that run's processes may still run as them, so no run shares them, as the
 * pool hands the slot to no run of its own. */
Test(host_id_pool, named_ids_are_refused_while_their_slot_keeps_an_ended_runs_cgroup)
{
        char cg[4200];
        snprintf(cg, sizeof(cg), "%s/agentjail-run", root);
        cr_assert_eq(mkdir(cg, 0755), 0);
        AjHostIdLease own = AJ_HOST_ID_LEASE_INIT;
        unsigned long id = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &own, &id, NULL), 0);
        char *const dirs[] = { cg, NULL };
        cr_assert_eq(aj_host_id_lease_mark(&own, NULL, dirs), 0);
        aj_host_id_lease_release(&own);

        AjHostIdLease named = AJ_HOST_ID_LEASE_INIT;
        AjError e = {};
        cr_assert_eq(aj_host_id_pool_share(dir, id, 200000, &named, &e), -EBUSY);
        cr_assert(strstr(e.message, "keeps an ended run's cgroup"), "%s", e.message);
        cr_assert_eq(named.fd[0], -1);
        aj_error_clear(&e);
        cr_assert_eq(aj_host_id_pool_share(dir, 200000, id, &named, NULL), -EBUSY, "as a gid too");
        cr_assert_eq(aj_host_id_pool_share(dir, id + 1, id + 1, &named, NULL), 0, "another slot is free");
        aj_host_id_lease_release(&named);

        cr_assert_eq(rmdir(cg), 0); /* `prune` removed it once its processes were gone */
        cr_assert_eq(aj_host_id_pool_share(dir, id, id, &named, NULL), 0, "shared again");
        aj_host_id_lease_release(&named);
}

Test(host_id_pool, refuses_a_directory_others_can_change)
{
        AjHostIdLease l = AJ_HOST_ID_LEASE_INIT;
        unsigned long id = 0;
        AjError e = {};
        char parent[4200];
        snprintf(parent, sizeof(parent), "%s/run", root);
        cr_assert_eq(mkdir(parent, 0777), 0);
        cr_assert_eq(chmod(parent, 0777), 0);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &l, &id, &e), -EPERM);
        cr_assert(strstr(e.message, "other users can write to it"), "%s", e.message);
        aj_error_clear(&e);

        cr_assert_eq(chmod(parent, 0711), 0);
        char elsewhere[4200];
        snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", root);
        cr_assert_eq(mkdir(elsewhere, 0700), 0);
        cr_assert_eq(symlink(elsewhere, dir), 0);
        int r = aj_host_id_pool_take(dir, 4, &l, &id, &e);
        /* O_NOFOLLOW with O_DIRECTORY: ENOTDIR (ELOOP without O_DIRECTORY) */
        cr_assert(r == -ENOTDIR || r == -ELOOP, "a symlinked pool is not followed: %d", r);
        cr_assert(strstr(e.message, "cannot open"), "%s", e.message);
        aj_error_clear(&e);
        cr_assert_eq(l.fd[0], -1);
}

static char kept_seen[4][4200];
static unsigned long kept_ids[4];
static size_t n_kept;

static char kept_run_dir[4200];

static int note_kept(unsigned long id, const char *run_dir, char *const *dirs, void *userdata)
{
        snprintf(kept_run_dir, sizeof(kept_run_dir), "%s", run_dir ? run_dir : "");
        cr_assert_lt(n_kept, 4);
        cr_assert_not_null(dirs[0]);
        cr_assert_null(dirs[1], "the directories that are there, only");
        kept_ids[n_kept] = id;
        snprintf(kept_seen[n_kept++], sizeof(kept_seen[0]), "%s", dirs[0]);
        cr_assert_not(slot_lockable(id, LOCK_SH), "its lock held meanwhile");
        return *(int *)userdata;
}

/* A slot nobody holds that keeps an ended run's directories is found from the pool (what
 * `prune` reaps when no run directory leads to them); a held one, or one whose directories
 * are gone, is not. */
Test(host_id_pool, kept_slots_are_listed_with_their_directories)
{
        int ok = 0;
        cr_assert_eq(aj_host_id_pool_kept("/nonexistent/pool", note_kept, &ok, NULL), 0, "no pool: none");
        char cg[4200], gone[4200];
        snprintf(cg, sizeof(cg), "%s/agentjail-run", root);
        snprintf(gone, sizeof(gone), "%s/agentjail-gone", root);
        cr_assert_eq(mkdir(cg, 0755), 0);
        AjHostIdLease a = AJ_HOST_ID_LEASE_INIT, b = AJ_HOST_ID_LEASE_INIT, c = AJ_HOST_ID_LEASE_INIT;
        unsigned long ia, ib, ic;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &a, &ia, NULL), 0);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &b, &ib, NULL), 0);
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &c, &ic, NULL), 0);
        char *const left[] = { gone, cg, NULL }, *const none[] = { gone, NULL };
        cr_assert_eq(aj_host_id_lease_mark(&a, "/var/lib/agentjail/runs/0123456789ab", left), 0);
        cr_assert_eq(aj_host_id_lease_mark(&b, NULL, left), 0);
        cr_assert_eq(aj_host_id_lease_mark(&c, NULL, none), 0);
        aj_host_id_lease_release(&a); /* its run ended, its cgroup left */
        aj_host_id_lease_release(&c); /* ended, its cgroup removed */
        n_kept = 0;
        cr_assert_eq(aj_host_id_pool_kept(dir, note_kept, &ok, NULL), 0);
        cr_assert_eq(n_kept, 1, "b is held (a live run's), c keeps nothing");
        cr_assert_eq(kept_ids[0], ia);
        cr_assert_str_eq(kept_seen[0], cg);
        cr_assert_str_eq(kept_run_dir, "/var/lib/agentjail/runs/0123456789ab", "whose they are");
        cr_assert(slot_lockable(ia, LOCK_EX), "let go after");
        int fail = -EIO;
        n_kept = 0;
        cr_assert_eq(aj_host_id_pool_kept(dir, note_kept, &fail, NULL), -EIO, "the callback's error");
        aj_host_id_lease_release(&b);

        /* The run directory's line keeps nothing, there or not: a run's directory outlives it.
         * It reads "/@<dir>", a path that is not there, for an agentjail that reads every line
         * as a directory. */
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &c, &ic, NULL), 0);
        cr_assert_eq(aj_host_id_lease_mark(&c, root, none), 0);
        aj_host_id_lease_release(&c);
        char path[4200], text[4200] = "";
        snprintf(path, sizeof(path), "%s/%lu", dir, ic);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        cr_assert_not_null(fgets(text, sizeof(text), f));
        fclose(f);
        cr_assert(strncmp(text, "/@/tmp/", 7) == 0, "%s", text);
        struct stat st;
        text[strcspn(text, "\n")] = 0;
        cr_assert(stat(text, &st) < 0 && errno == ENOENT, "'%s' is not there", text);
        unsigned long again = 0;
        cr_assert_eq(aj_host_id_pool_take(dir, 4, &c, &again, NULL), 0);
        cr_assert_eq(again, ic, "free: its run directory is there, its cgroup is not");
        aj_host_id_lease_release(&c);
}
