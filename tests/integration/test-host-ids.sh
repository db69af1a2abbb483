#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Host ids of a run's own (src/host-id-pool.h): root-started runs of a profile that names no
# user.host_uid/host_gid map to ids no other live run has, so the kernel's per-user budgets
# (counted per host uid across user namespaces: inotify instances, pending signals and
# timers, mqueue bytes, pipe pages) are not shared; one jail exhausting them leaves the
# others theirs. A slot is held while anything of the run may run: by the supervisor and
# by its watchdog, which frees it after a killed supervisor's jail is gone.
#
# Other runs on this host (other test files) take slots too: no test assumes which slot.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

POOL_DIR=/run/agentjail/host-ids
POOL_FIRST=1879048192
POOL_LAST=$((POOL_FIRST + 65535))

# slot_free ID [SECONDS]: the slot's lock can be taken (up to SECONDS, default 5): nothing
# of the run that held it still holds it.
slot_free() {
        local deadline=$((SECONDS + ${2:-5}))
        while :; do
                flock -n -x "$POOL_DIR/$1" true 2>/dev/null && return 0
                ((SECONDS >= deadline)) && return 1
                sleep 0.05
        done
}

# bg_jail NAME ARGS...: `agentjail run --name NAME ARGS` in the background, output in
# $TEST_TMP/NAME.out/.err; sets BG_PID.
bg_jail() {
        local name=$1
        shift
        env --default-signal=INT,QUIT "$AGENTJAIL" run --name "$name" "$@" \
                </dev/null >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" &
        BG_PID=$!
        BG_PIDS+=("$BG_PID")
}

# run_dir_named NAME: the run directory whose run.json has that name (up to 10 s).
run_dir_named() {
        local deadline=$((SECONDS + 10)) d
        while ((SECONDS < deadline)); do
                for d in $(list_run_dirs); do
                        [[ "$(jq -r .name "$d/run.json" 2>/dev/null)" == "$1" ]] && echo "$d" && return 0
                done
                sleep 0.05
        done
        return 1
}

# --- two concurrent jails: ids of their own; one exhausting inotify instances does not
# leave the other without one
bg_jail hog -- ./probe inotify-hog 30
HOG_PID=$BG_PID
if wait_for_output "$TEST_TMP/hog.out" '^ready$' 15; then
        HOG_DIR=$(run_dir_named hog)
        HOG_UID=$(jf .host_uid "$HOG_DIR/run.json")
        HOG_GID=$(jf .host_gid "$HOG_DIR/run.json")
        like "$(cat "$TEST_TMP/hog.out")" 'inotify_instances=[0-9]+ errno=EMFILE' \
                "the hog took inotify instances until the kernel refused one"
        cmp_num "$HOG_UID" -ge "$POOL_FIRST" "run.json host_uid ($HOG_UID) is in the pool"
        cmp_num "$HOG_UID" -le "$POOL_LAST" "run.json host_uid ($HOG_UID) is in the pool (end)"
        is "$HOG_GID" "$HOG_UID" "run.json host_gid is the slot's too"
        ok "the hog's slot is locked while it runs" \
                test -e "$POOL_DIR/$HOG_UID" -a "$(flock -n -x "$POOL_DIR/$HOG_UID" echo free 2>/dev/null)" != free

        run_jail -- /bin/sh -c './probe inotify; cat /proc/self/uid_map /proc/self/gid_map'
        is "$JAIL_RC" 0 "a second jail runs beside the hog" || jail_diag
        OTHER_UID=$(jf .host_uid)
        like "$JAIL_OUT" 'inotify=OK' "the second jail can still create an inotify instance"
        like "$("$PROBE" inotify)" 'inotify=OK' "so can root on the host"
        cmp_num "$OTHER_UID" -ge "$POOL_FIRST" "its host uid ($OTHER_UID) is in the pool"
        ok "its host uid differs from the hog's ($HOG_UID)" test "$OTHER_UID" != "$HOG_UID"
        like "$JAIL_OUT" "^inotify=OK
 +1000 +$OTHER_UID +1
 +1000 +$OTHER_UID +1$" "its uid_map and gid_map map the jail's user to run.json's host_uid/host_gid"
        ok "the second jail's slot is free once it ended" slot_free "$OTHER_UID"

        aj ps
        like "$OUT" "${HOG_DIR##*/} +hog +default +running" "ps lists the hog as running" || op_diag
        aj inspect "${HOG_DIR##*/}"
        like "$OUT" "run.start .* host_uid=$HOG_UID " "inspect shows its host uid (run.start)" || op_diag

        kill -TERM "$HOG_PID"
        wait_exit "$HOG_PID" 10
        ok "the hog's slot is free once its run ended" slot_free "$HOG_UID"
else
        fail "the inotify hog started" "$(cat "$TEST_TMP/hog.out" "$TEST_TMP/hog.err")"
fi
kill_bg

# --- the same for pending signals: one jail's POSIX timers up to RLIMIT_SIGPENDING (its
# host uid's, counted up the user namespaces to their owner) leave the next jail, and root
# on the host, theirs
bg_jail timers -- ./probe timer-hog 30
TIMERS_PID=$BG_PID
if wait_for_output "$TEST_TMP/timers.out" '^ready$' 30; then
        like "$(cat "$TEST_TMP/timers.out")" 'timers=[0-9]+ errno=EAGAIN' \
                "the hog took POSIX timers until the kernel refused one (EAGAIN)"
        run_jail -- ./probe timer
        like "$JAIL_OUT" 'timer=OK' "a second jail can still create a timer" || jail_diag
        like "$("$PROBE" timer)" 'timer=OK' "root on the host can still create one (timer=OK)"
        kill -TERM "$TIMERS_PID"
        wait_exit "$TIMERS_PID" 10
else
        fail "the timer hog started" "$(cat "$TEST_TMP/timers.out" "$TEST_TMP/timers.err")"
fi
kill_bg

# freeze_pid PID: moves PID to a frozen cgroup of its own (v1 freezer or v2 cgroup.freeze):
# stopped in a way no job-control SIGCONT ends (the kernel continues an orphaned process
# group's stopped members, and a killed supervisor orphans its watchdog's). Sets FREEZER.
freeze_pid() {
        FREEZER=
        local d
        if [[ -d /sys/fs/cgroup/freezer ]]; then
                d=/sys/fs/cgroup/freezer/agentjail-test-freeze-$$
                mkdir "$d" && echo "$1" >"$d/tasks" && echo FROZEN >"$d/freezer.state" || return 1
        else
                for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
                        [[ -f $d/cgroup.procs ]] && break
                done
                d=$d/agentjail-test-freeze-$$
                mkdir "$d" && echo "$1" >"$d/cgroup.procs" && echo 1 >"$d/cgroup.freeze" || return 1
        fi
        FREEZER=$d
}

# thaw: the frozen cgroup thawed; removed once its process is gone.
thaw() {
        [[ -n "$FREEZER" ]] || return 0
        if [[ -f $FREEZER/freezer.state ]]; then
                echo THAWED >"$FREEZER/freezer.state"
        else
                echo 0 >"$FREEZER/cgroup.freeze"
        fi
}

# --- a killed supervisor: the watchdog holds the slot until it has killed and removed what
# was left of the run, then frees it
bg_jail lost -- ./probe sleep 30
LOST_PID=$BG_PID
LOST_DIR=$(run_dir_named lost)
if [[ -n "$LOST_DIR" ]] && find_jailed "$LOST_PID" probe 10 >/dev/null; then
        LOST_UID=$(jf .host_uid "$LOST_DIR/run.json")
        WD=$(jf .watchdog_pid "$LOST_DIR/run.json")
        if freeze_pid "$WD"; then
                kill -KILL "$LOST_PID"
                wait "$LOST_PID" 2>/dev/null
                ok "after the supervisor's SIGKILL, its frozen watchdog (pid $WD) still holds slot $LOST_UID" \
                        test "$(flock -n -x "$POOL_DIR/$LOST_UID" echo free 2>/dev/null)" != free
                thaw
                ok "once the watchdog has cleaned up, slot $LOST_UID is free" slot_free "$LOST_UID"
                for _ in $(seq 100); do
                        [[ -d /proc/$WD ]] || break
                        sleep 0.05
                done
                ok "the watchdog (pid $WD) is gone" test ! -d "/proc/$WD"
                ok "the lost run's cgroup is gone" test -z "$(ls -d /sys/fs/cgroup/*/agentjail/"${LOST_DIR##*/}" \
                        /sys/fs/cgroup/agentjail/"${LOST_DIR##*/}" 2>/dev/null)"
        else
                fail "the watchdog could be frozen (a freezer cgroup)"
        fi
        thaw
        [[ -n "$FREEZER" ]] && rmdir "$FREEZER" 2>/dev/null
else
        fail "the run whose supervisor is killed started" "$(cat "$TEST_TMP/lost.err")"
fi
kill_bg

# --- a profile naming its ids keeps them (shared by its runs, as before); one naming ids in
# the pool holds their slot shared, so the pool never hands it to a run of its own meanwhile
P=$(write_profile named '{"extends": "default", "user": {"host_uid": 1879113727, "host_gid": 1879113727}}')
run_jail -p "$P" -- /bin/sh -c 'cat /proc/self/uid_map'
is "$JAIL_RC" 0 "a profile naming pool ids runs" || jail_diag
is "$(jf .host_uid)" 1879113727 "it maps to the ids it names"
# This shell holds the slot as a run of its own would (an exclusive lock).
exec {LOCK_FD}>"$POOL_DIR/1879113727"
flock -n -x "$LOCK_FD"
run_jail -p "$P" -- /bin/true
is "$JAIL_RC" 125 "while a run holds that slot as its own, the profile's run does not start"
like "$JAIL_ERR" "named.json: user.host_uid 1879113727, host_gid 1879113727: refusing to start: host id 1879113727 is in the pool of per-run ids \\(1879048192-1879113727\\) and a run holds it as its own" \
        "it says why"
exec {LOCK_FD}>&-

done_testing
