#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A run's cgroup is removed also when its processes are slow to leave it. A process that
# does not die at once is made here with a FUSE filesystem of the test's (tests/helpers/
# fuse-hold.c, bound into the jails at /hold) that does not answer the FLUSH of a close of its
# file until the test lets it go: the kernel sends FLUSH as a forced request, whose wait no
# signal ends, so `cat /hold/f` stays in D state in its close(2), SIGKILLed or frozen, as one in
# uninterruptible sleep on a loaded host would; on cgroup v1 and v2 hosts alike.
# The removal waits for the cgroup to empty, with one bound for the whole of it: the
# supervisor AJ_CGROUP_REMOVE_MS (10 s), then its watchdog, as when the supervisor is killed,
# AJ_CGROUP_REMOVE_LATE_MS (10 min). Before, each wait had a fixed bound of its own (5 s; the
# watchdog's all together about 30 s) and what was still there then stayed for good.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

# The cgroup v2 tree (hybrid: unified/), for the one process held by a freeze: a watchdog.
V2_ROOT=/sys/fs/cgroup
[[ -d /sys/fs/cgroup/unified ]] && V2_ROOT=/sys/fs/cgroup/unified
FZ=$V2_ROOT/ajtest-cleanup-$$
HOLD=$TEST_TMP/hold
HELD=$TEST_TMP/held
HOST_SLEEP=
FUSE_HOLD_PID=

[[ -e /dev/fuse ]] || modprobe fuse 2>/dev/null
mkdir -p "$HOLD"
(cd / && exec "$FUSE_HOLD" "$HOLD" "$HELD") 2>"$TEST_TMP/fuse-hold.err" &
FUSE_HOLD_PID=$!
for ((i = 0; i < 100; i++)); do
        [[ -e $HELD ]] && break
        sleep 0.05
done
if [[ ! -e $HELD ]]; then
        fail "the test's FUSE filesystem is mounted" "$(cat "$TEST_TMP/fuse-hold.err")"
        echo "Bail out! no FUSE filesystem to hold a process with"
        exit 1
fi
# Every jail that holds a process sees the FUSE filesystem at /hold (a profile's "ro" replaces
# its parent's: the default's with it).
HOLD_RO=$(jq -c --arg bind "$HOLD:/hold" '.filesystem.ro + [$bind]' "$AGENTJAIL_SOURCE_DIR/profiles/default.json")
HP=$(write_profile hold '{"extends": "default", "filesystem": {"ro": '"$HOLD_RO"'}}')

# held_pid [SECONDS]: the host pid of a close the FUSE filesystem holds (waits for one).
held_pid() {
        local deadline=$((SECONDS + ${1:-10})) p
        while ((SECONDS <= deadline)); do
                p=$(head -n 1 "$HELD" 2>/dev/null)
                [[ -n $p ]] && echo "$p" && return 0
                sleep 0.05
        done
        return 1
}
# held_in PARENT [SECONDS]: the same, checked to be a descendant of PARENT (its jail's).
held_in() {
        local p kids
        p=$(held_pid "${2:-10}") || return 1
        # Not `descendants | grep -q`: grep's early exit is a SIGPIPE, a failure under pipefail.
        kids=$(descendants "$1")
        if ! grep -qxF "$p" <<<"$kids"; then
                diag "the close held ($p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)) is not $1's jail's"
                return 1
        fi
        echo "$p"
}
# freeze_v2 PID: PID frozen in a v2 cgroup of the test's (not for a process that is to die:
# a v2 frozen task takes its SIGKILL).
freeze_v2() {
        [[ -d $FZ ]] || mkdir "$FZ" || return 1
        echo "$1" >"$FZ/cgroup.procs" && echo 1 >"$FZ/cgroup.freeze" &&
                wait_for_output "$FZ/cgroup.events" '^frozen 1$' 5
}
# let_go: every held close answered (its process returns from it, or dies if killed), and
# the v2 freeze undone.
let_go() {
        local i
        if [[ -n $FUSE_HOLD_PID ]] && kill -USR1 "$FUSE_HOLD_PID" 2>/dev/null; then
                for ((i = 0; i < 100; i++)); do
                        [[ -s $HELD ]] || break
                        sleep 0.05
                done
        fi
        [[ -d $FZ ]] && echo 0 >"$FZ/cgroup.freeze"
        return 0
}
# stop_fuse_hold: the FUSE filesystem gone. Its daemon's end ends the connection, and with it
# any close still held; it unmounts, or else this does.
stop_fuse_hold() {
        if [[ -n $FUSE_HOLD_PID ]]; then
                kill -TERM "$FUSE_HOLD_PID" 2>/dev/null
                wait "$FUSE_HOLD_PID" 2>/dev/null
                FUSE_HOLD_PID=
        fi
        # A daemon killed outright leaves a dead mount, on which mountpoint(1) may fail
        # (ENOTCONN): detached whatever it says.
        umount -l "$HOLD" 2>/dev/null
        return 0
}
cleanup_cleanup() {
        let_go
        [[ -n $HOST_SLEEP ]] && kill -KILL "$HOST_SLEEP" 2>/dev/null
        stop_fuse_hold
        local i
        for ((i = 0; i < 50; i++)); do
                [[ -d $FZ ]] || break
                rmdir "$FZ" 2>/dev/null && break
                sleep 0.1
        done
}
trap 'cleanup_cleanup; cleanup' EXIT

# run_cgroup_dirs ID: the run's cgroup dirs still there (v1 and v2).
run_cgroup_dirs() {
        local d
        for d in /sys/fs/cgroup/*/agentjail/"$1" /sys/fs/cgroup/agentjail/"$1"; do
                [[ -d $d ]] && printf '%s ' "$d"
        done
        return 0
}

# run_cgroup_procs ID: the processes in the run's cgroup dirs.
run_cgroup_procs() {
        local d
        for d in $(run_cgroup_dirs "$1"); do
                cat "$d/cgroup.procs" 2>/dev/null
        done
        return 0
}

# wait_cgroup_gone ID SECONDS: sets left.
wait_cgroup_gone() {
        local deadline=$((SECONDS + $2))
        while left=$(run_cgroup_dirs "$1") && [[ -n $left ]] && ((SECONDS <= deadline)); do
                sleep 0.1
        done
}

# --- the supervisor SIGKILLed (`timeout -k`'s second signal) while a jailed process cannot
# die yet: its watchdog waits for it past the old bounds (here 35 s), then removes everything.
start_jail_bg -p "$HP" -- /bin/sh -c 'cat /hold/f; exec ./probe sleep 120'
if p=$(held_in "$BG_PID" 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        kill -KILL "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        sleep 35
        isnt "$(run_cgroup_dirs "$id")" "" "35 s after the supervisor's SIGKILL, the held process keeps the cgroup"
        wd=$(jq -r .watchdog_pid "$rdir/run.json")
        is "$(cat "/proc/$wd/comm" 2>/dev/null)" aj-watchdog "the watchdog is still waiting for it"
        let_go
        t_go=$(date +%s%N)
        wait_cgroup_gone "$id" 15
        is "$left" "" "once the process can die, its watchdog removes every cgroup dir of the run" ||
                diag "after $((($(date +%s%N) - t_go) / 1000000)) ms"
        diag "gone $((($(date +%s%N) - t_go) / 1000000)) ms after the thaw"
        wait_for_output "$rdir/events.jsonl" '"type":"supervisor.lost"' 5
        is "$(events_of supervisor.lost "$rdir" | jq -r .action)" "jail killed, cgroup removed" \
                "supervisor.lost says the cgroup was removed"
        cmp_num "$(events_of supervisor.lost "$rdir" | jq -r .waited_ms)" -ge 30000 "... after waiting over 30 s"
else
        fail "the jail for the slow-process watchdog test started, its process held" "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()

# --- an operator's freeze that cannot complete: a jail process that does not reach the freezer
# (held here, as one in uninterruptible sleep would be: a sync(2) on a loaded disk). The freeze
# fails after its bound, and it used to stay asked for: the rest of the jail froze at once, the
# held process when it got there, while the supervisor said the freeze failed, called the run
# running (its wall clock counting) and took a thaw for done without thawing anything. A freeze
# that fails is undone: the run runs on as it was.
rm -f "$WORKSPACE/tick"
start_jail_bg -p "$HP" -- /bin/sh -c '(cat /hold/f; exec ./probe sleep 300) & while :; do echo . >>tick; ./probe sleep 0.05; done'
stuck=$(held_in "$BG_PID" 10)
if [[ -n $stuck ]] && rdir=$(wait_run_dir 5) && wait_for_output "$WORKSPACE/tick" . 5; then
        id=${rdir##*/}
        aj freeze "$id"
        isnt "$RC" 0 "a freeze a held process keeps from completing fails" || op_diag
        like "$ERR" "freeze failed" "... and says so" || op_diag
        v2=$(ls -d /sys/fs/cgroup/unified/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" 2>/dev/null | head -1)
        is "$(cat "$v2/cgroup.freeze" 2>/dev/null)" 0 "the failed freeze is undone: the run's cgroup.freeze is 0"
        t1=$(stat -c %s "$WORKSPACE/tick")
        sleep 1
        isnt "$(stat -c %s "$WORKSPACE/tick")" "$t1" "the rest of the jail runs on: it was not frozen behind the operator's back"
        aj inspect "$id" --json
        is "$(jq -r .state <<<"$OUT")" running "inspect: running" || op_diag
        let_go
        sleep 0.5
        is "$(grep -h '^frozen' "$v2/cgroup.events" 2>/dev/null)" "frozen 0" \
                "once the held process gets to run, the run is still not frozen"
        t1=$(stat -c %s "$WORKSPACE/tick")
        sleep 1
        isnt "$(stat -c %s "$WORKSPACE/tick")" "$t1" "... and goes on"
        aj freeze "$id"
        is "$RC" 0 "a freeze then succeeds" || op_diag
        aj kill "$id"
        wait_exit "$BG_PID" 15
        isnt "$WAIT_RC" 124 "the run ends on a kill"
else
        fail "the jail for the stuck-freeze test started, its process held" "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()
rm -f "$WORKSPACE/tick"

# --- the supervisor's own removal hits its bound: a process in the run's cgroup that is not
# the jail's (moved there by root on the host; nothing of the jail outlives its init) cannot
# die yet. The supervisor exits after its bound, saying so, and hands the rest to its
# watchdog, which removes the cgroup once the process is gone and records it.
# The command ends when the test says (a file "go"), not after a time an emulated, loaded
# machine may take only to start it.
rm -f "$WORKSPACE/go"
start_jail_bg -- /bin/sh -c 'until [ -e go ]; do ./probe sleep 0.05; done'
if find_jailed "$BG_PID" sh 30 >/dev/null && rdir=$(wait_run_dir 30); then
        id=${rdir##*/}
        v2=$(ls -d /sys/fs/cgroup/unified/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" 2>/dev/null | head -1)
        cat "$HOLD/f" &
        HOST_SLEEP=$!
        if [[ -n $v2 ]] && [[ $(held_pid 5) == "$HOST_SLEEP" ]] && echo "$HOST_SLEEP" >"$v2/cgroup.procs"; then
                touch "$WORKSPACE/go"
                t0=$SECONDS
                wait_exit "$BG_PID" 40
                is "$WAIT_RC" 0 "the run ends with its command's status"
                cmp_num $((SECONDS - t0)) -le 30 "... within its removal's bound, not held by the process"
                like "$(cat "$TEST_TMP/bg.err")" "cgroup still holds processes after 10 s: its watchdog .* goes on" \
                        "the supervisor says its watchdog goes on removing the cgroup"
                isnt "$(run_cgroup_dirs "$id")" "" "the cgroup is still there while the process cannot die"
                # The watchdog still has cgroup.removed to write: the run is live until then, and
                # its directory is not pruned under it.
                aj prune --keep 0
                isnt "$(ls -d "$rdir" 2>/dev/null)" "" "prune leaves the run whose watchdog is still removing its cgroup"
                let_go
                wait "$HOST_SLEEP" 2>/dev/null
                HOST_SLEEP=
                wait_cgroup_gone "$id" 5
                is "$left" "" "once it can die, the watchdog removes every cgroup dir of the run"
                wait_for_output "$rdir/events.jsonl" '"type":"cgroup.removed"' 5
                is "$(tail -n 1 "$rdir/events.jsonl" | jq -r .type)" cgroup.removed \
                        "the chain ends with the watchdog's cgroup.removed"
                is "$(jq -r .events.end "$rdir/run.json")" cgroup.removed "run.json's anchor is cgroup.removed"
                aj logs "$id" --verify
                is "$RC" 0 "logs --verify: the chain is intact" || op_diag
        else
                fail "a host process was put in the run's cgroup and held"
        fi
else
        fail "the jail for the supervisor hand-over test started" "$(cat "$TEST_TMP/bg.err")"
fi
touch "$WORKSPACE/go"
let_go
BG_PIDS=()

# --- a jail process that does not die when the command ends: init's exit tears the pid
# namespace down and waits for every process in it, and the supervisor waited for that
# exit without a bound (in epoll, for as long as the process was frozen). Now it waits
# AJ_JAIL_EXIT_MS (10 s), says so, exits with the command's status, its records whole, and
# hands the cgroup to its watchdog ("C"), which removes it once the process can die.
t0=$SECONDS
start_jail_bg -p "$HP" -- /bin/sh -c '(cat /hold/f; exec ./probe sleep 300) & ./probe sleep 2; exit 7'
stuck=$(held_in "$BG_PID" 5)
if [[ -n $stuck ]] && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        wait_exit "$BG_PID" 45
        is "$WAIT_RC" 7 "a jail process that does not die: the run still ends, with its command's status" ||
                diag "$(cat "$TEST_TMP/bg.err")"
        cmp_num $((SECONDS - t0)) -le 35 "... within its bounds (init's exit, then the cgroup's), not held by it"
        like "$(cat "$TEST_TMP/bg.err")" "init has not exited 10 s after the jail's end" \
                "the supervisor says why it did not wait for the jail's init"
        is "$(jq -r '.exit.code' "$rdir/run.json")" 7 "run.json has the command's exit code"
        is "$(jq -r '.events.end' "$rdir/run.json")" run.exit "... and the chain's end, run.exit"
        isnt "$(run_cgroup_dirs "$id")" "" "the cgroup is still there while the process cannot die"
        let_go
        wait_cgroup_gone "$id" 10
        is "$left" "" "once it can die, the watchdog removes every cgroup dir of the run"
        wait_for_output "$rdir/events.jsonl" '"type":"cgroup.removed"' 5
        is "$(jq -r .events.end "$rdir/run.json")" cgroup.removed "the chain ends with the watchdog's cgroup.removed"
        aj logs "$id" --verify
        is "$RC" 0 "logs --verify: the chain is intact" || op_diag
else
        fail "the jail for the stuck-process end test started, its process held" "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()

# --- the same stuck process, but the jail's init killed from outside (as the OOM killer may)
# before the command reports a status: no "done" from the init ever comes, and the bound on
# its exit started only at a status or a kill of ours, so the supervisor waited for as long as
# the process was frozen. The init's end of the sync socket closes as it exits, before its
# exit waits for the pid namespace: the bound starts there too.
t0=$SECONDS
start_jail_bg -p "$HP" -- /bin/sh -c '(cat /hold/f; exec ./probe sleep 300) & ./probe sleep 300'
stuck=$(held_in "$BG_PID" 5)
init=$(find_jailed "$BG_PID" agentjail-init 5)
if [[ -n $stuck && -n $init ]] && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        kill -KILL "$init"
        wait_exit "$BG_PID" 45
        isnt "$WAIT_RC" 124 "the jail's init killed while a process of the jail cannot die: the run still ends"
        cmp_num $((SECONDS - t0)) -le 35 "... within its bounds, not held by the process" ||
                diag "$(cat "$TEST_TMP/bg.err")"
        like "$(cat "$TEST_TMP/bg.err")" "init has not exited 10 s after the jail's end" \
                "the supervisor says why it did not wait for the jail's init"
        is "$(jq -r '.events.end' "$rdir/run.json")" run.exit "run.json: the chain ends with run.exit"
        let_go
        wait_cgroup_gone "$id" 10
        is "$left" "" "once the process can die, the watchdog removes every cgroup dir of the run"
else
        fail "the jail for the killed-init test started, its process held" "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()

# --- the supervisor and its watchdog SIGKILLed together while a jail process cannot die:
# nothing removed the run's cgroups and runtime dir, prune removed the run directory (the
# one trace of them), and the run's host ids went to the next run while the process, running
# as them, lived on. Now the slot stays taken while the run's cgroup is there, ps shows what
# the run left, and prune kills and removes it (recorded: supervisor.lost closes the chain),
# keeping the run while the process does not die.
start_jail_bg -p "$HP" -- /bin/sh -c 'cat /hold/f; exec ./probe sleep 120'
if p=$(held_in "$BG_PID" 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        uid_a=$(jq -r .host_uid "$rdir/run.json")
        wd=$(jq -r .watchdog_pid "$rdir/run.json")
        kill -KILL "$BG_PID" "$wd"
        wait "$BG_PID" 2>/dev/null
        sleep 0.5
        is "$(awk '/^Uid:/ { print $2 }' "/proc/$p/status" 2>/dev/null)" "$uid_a" \
                "the held process still runs as the run's host uid"
        # Every slot below A's held meanwhile (a shared lock, as a profile naming those ids takes
        # one): A's is then the lowest whose lock is free, whatever other runs on the host hold.
        fds=()
        for ((u = 1879048192; u < uid_a; u++)); do
                exec {fd}<"/run/agentjail/host-ids/$u" || continue
                flock -n -s "$fd"
                fds+=("$fd")
        done
        run_jail -- /bin/true
        for fd in "${fds[@]}"; do
                exec {fd}<&-
        done
        isnt "$(jf .host_uid)" "$uid_a" "the next run does not get the host ids of the killed run's living process"
        aj ps
        like "$OUT" "$id .*lost .*\[left on the host: its cgroup \([0-9]+ director(y|ies)\), its runtime dir; 'agentjail prune' reaps it\]" \
                "ps shows what the dead run left on the host, without --all" || op_diag
        aj ps --json
        isnt "$(jq -r --arg id "$id" '.runs[] | select(.id == $id) | .left.cgroup | length' <<<"$OUT")" 0 \
                "ps --json: its cgroup's directories under left"
        aj prune --keep 0
        is "$RC" 1 "prune: a dead run whose process does not die is a failure (exit 1)" || op_diag
        like "$ERR" "run $id: what it left on the host stays: its cgroup still holds processes" \
                "... and says why" || op_diag
        isnt "$(ls -d "$rdir" 2>/dev/null)" "" "... and keeps the run, the one trace of its process"
        is "$(events_of supervisor.lost "$rdir" | jq -r .action)" "jail killed, cgroup left" \
                "its chain is closed with supervisor.lost, the cgroup left"
        let_go
        aj prune --older-than 1d
        is "$RC" 0 "once the process can die, prune reaps the dead run" || op_diag
        like "$OUT" "reaped +$id .*killed and removed \(cgroup.removed in its events\)" "... and says so" || op_diag
        is "$(run_cgroup_dirs "$id")" "" "every cgroup dir of the run is gone"
        is "$(ls -d "$AGENTJAIL_RUNTIME_DIR/$id" 2>/dev/null)" "" "its runtime dir is gone"
        is "$(jq -r .events.end "$rdir/run.json")" cgroup.removed "the chain ends with prune's cgroup.removed"
        aj logs "$id" --verify
        is "$RC" 0 "logs --verify: the chain is intact" || op_diag
        aj ps
        unlike "$OUT" "$id" "ps without --all: a dead run with nothing left is not listed"
else
        fail "the jail for the killed supervisor and watchdog test started, its process held" \
                "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()

# --- an overlay run's supervisor and watchdog SIGKILLed together while a jail process cannot
# die: commit applied the upper dir while that process, still in the overlay, could write
# into it, so what was applied was not what diff showed. commit refuses while the run's
# cgroup holds processes; discard, which applies nothing, does not need to. Nor did diff:
# it showed the operator the changes as they were then, and once the process was gone (after
# the call it was in, a write say) the commit applied what no diff had shown. diff refuses as
# commit does: what it shows then is what nothing but root changes afterwards.
OV=$(write_profile overlay '{"extends": "default", "filesystem": {"workspace": {"path": ".", "mode": "overlay"},
        "ro": '"$HOLD_RO"'}}')
rm -f "$WORKSPACE/mine.txt"
start_jail_bg -p "$OV" -- /bin/sh -c 'printf "agent\n" >mine.txt && cat /hold/f; exec ./probe sleep 120'
if p=$(held_in "$BG_PID" 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        kill -KILL "$BG_PID" "$(jq -r .watchdog_pid "$rdir/run.json")"
        wait "$BG_PID" 2>/dev/null
        sleep 0.5
        aj diff "$id" --patch
        is "$RC" 1 "diff refuses a run whose cgroup still holds a process" || op_diag
        like "$ERR" "run $id: nothing is shown: its supervisor is gone but its cgroup still holds processes.*then diff again" \
                "... and says why and what to do" || op_diag
        unlike "$OUT" "agent" "... showing none of the changes that process may still change"
        aj commit "$id"
        is "$RC" 1 "commit refuses a run whose cgroup still holds a process" || op_diag
        like "$ERR" "run $id: nothing was changed: its supervisor is gone but its cgroup still holds processes.*'agentjail prune'.*then commit again" \
                "... and says why and what to do" || op_diag
        ok "... and changes nothing" test ! -e "$WORKSPACE/mine.txt"
        is "$(jq -r .workspace.changes "$rdir/run.json")" pending "... the changes stay pending"
        let_go
        aj prune --older-than 1d
        is "$RC" 0 "once the process can die, prune reaps the dead run" || op_diag
        isnt "$(ls -d "$rdir" 2>/dev/null)" "" "... and keeps it, its changes pending"
        aj diff "$id"
        like "$OUT" "A  mine.txt" "then diff shows the changes" || op_diag
        aj commit "$id"
        is "$RC" 0 "then commit applies the changes" || op_diag
        is "$(cat "$WORKSPACE/mine.txt" 2>/dev/null)" agent "... the agent's file is in the workspace"
else
        fail "the overlay jail for the killed supervisor and watchdog test started, its process held" \
                "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()
rm -f "$WORKSPACE/mine.txt"

# --- the same for an overlay eval case: timed out, its supervisor gone while a process of its
# run cannot die, eval applied the upper dir to the case's scratch copy while that process
# could still write into it. The case is an error saying why, its changes discarded so.
EVAL_OV=$(write_profile evaloverlay '{"extends": "default", "filesystem": {"workspace": {"mode": "overlay"},
        "ro": '"$HOLD_RO"'}}')
cat >"$TEST_TMP/held.json" <<EOF
{ "cases": [ { "name": "held", "profile": "$EVAL_OV", "timeout": "5s",
               "command": ["sh", "-c", "echo agent > mine.txt && cat /hold/f; exec sleep 4321"] } ] }
EOF
mkdir -p "$TEST_TMP/evaltmp"
TMPDIR="$TEST_TMP/evaltmp" timeout -k 5 120 "$AGENTJAIL" eval "$TEST_TMP/held.json" --json </dev/null \
        >"$TEST_TMP/eval.out" 2>"$TEST_TMP/eval.err" &
EVAL_PID=$!
BG_PIDS+=("$EVAL_PID")
if p=$(held_in "$EVAL_PID" 30); then
        wait "$EVAL_PID"
        is "$?" 1 "eval of the case whose process is left exits 1" || diag "$(cat "$TEST_TMP/eval.err")"
        out=$(cat "$TEST_TMP/eval.out")
        collect_run_ids
        like "$(jq -r '"\(.cases[0].result) \(.cases[0].error)"' <<<"$out" 2>&1)" \
                "^error the overlay's changes were not applied: its supervisor or watchdog is still there" \
                "the case is an error saying its changes were not applied, and why (its watchdog waits for the process)" ||
                diag "$out"
        eid=$(jq -r '.cases[0].run // empty' <<<"$out" 2>/dev/null)
        is "$(jq -r .workspace.changes "$AGENTJAIL_STATE_DIR/runs/$eid/run.json" 2>&1)" discarded \
                "... its run's changes are discarded"
        like "$(jq -c 'select(.type == "workspace.discard") | [.eval, .error]' \
                "$AGENTJAIL_STATE_DIR/runs/$eid/events.jsonl" 2>&1)" '^\[true,"the overlay.s changes were not applied' \
                "... its chain has the discard, by eval, with why"
        let_go
        wait_cgroup_gone "$eid" 15
        is "$left" "" "once the process can die, the run's cgroup goes"
else
        fail "the overlay eval case started, its process held" "$(cat "$TEST_TMP/eval.err")"
fi
let_go
wait "$EVAL_PID" 2>/dev/null
BG_PIDS=()

# --- an overlay eval case whose supervisor is killed while its watchdog is held (frozen here,
# in a v2 cgroup, as a slow one would be) and whose cgroup is empty: eval applied the changes while the
# watchdog, still to kill and remove what the run left and close its chain, held the run
# live; commit refused such a run. The same check now (runs.c aj_run_check_settled).
cat >"$TEST_TMP/wd.json" <<EOF
{ "cases": [ { "name": "wd-held", "profile": "$EVAL_OV", "timeout": "60s",
               "command": ["sh", "-c", "echo agent > mine.txt && exec sleep 4322"] } ] }
EOF
TMPDIR="$TEST_TMP/evaltmp" timeout -k 5 120 "$AGENTJAIL" eval "$TEST_TMP/wd.json" --json </dev/null \
        >"$TEST_TMP/eval.out" 2>"$TEST_TMP/eval.err" &
EVAL_PID=$!
BG_PIDS+=("$EVAL_PID")
wd=
if p=$(find_jailed_argv "$EVAL_PID" "sleep 4322" 10) && ev=$(pgrep -P "$EVAL_PID" -x agentjail) &&
        sup=$(pgrep -P "$ev" -x agentjail) &&
        rdir=$(grep -l "\"supervisor_pid\": $sup," "$AGENTJAIL_STATE_DIR"/runs/*/run.json) && rdir=${rdir%/run.json} &&
        wd=$(jq -r .watchdog_pid "$rdir/run.json") && freeze_v2 "$wd"; then
        # eval stopped meanwhile, so that it looks once the jail's processes are all gone.
        kill -STOP "$ev"
        kill -KILL "$sup" "$p"
        id=${rdir##*/}
        for _ in $(seq 100); do
                [[ -z "$(run_cgroup_procs "$id")" ]] && break
                sleep 0.1
        done
        is "$(run_cgroup_procs "$id")" "" "the killed supervisor's jail is gone, its cgroup empty"
        kill -CONT "$ev"
        wait "$EVAL_PID"
        is "$?" 1 "eval of the case whose watchdog is held exits 1" || diag "$(cat "$TEST_TMP/eval.err")"
        out=$(cat "$TEST_TMP/eval.out")
        collect_run_ids
        like "$(jq -r '"\(.cases[0].result) \(.cases[0].error)"' <<<"$out" 2>&1)" \
                "^error the overlay's changes were not applied: its supervisor or watchdog is still there" \
                "the case is an error: its changes were not applied while the watchdog lives" || diag "$out"
        is "$(jq -r .workspace.changes "$rdir/run.json" 2>&1)" discarded "... its run's changes are discarded"
        let_go
        ok "... and the watchdog, let go, finishes" wait_pid_gone "$wd" 10
else
        fail "the overlay eval case started, its watchdog held" "$(cat "$TEST_TMP/eval.err")"
fi
let_go
wait "$EVAL_PID" 2>/dev/null
BG_PIDS=()

# --- a supervisor SIGKILLed in start-up, before it wrote run.json, left a run directory
# (empty, or an events.jsonl the watchdog closed with supervisor.lost) that `ps` called
# "unknown" and `prune` never removed: one more for every such kill. Nothing holds it any
# more: it is lost, and pruned by its directory's age. One a run still holds (starting:
# the life lock is taken before anything is in the directory) is kept.
mk_early() {
        mkdir -p "$AGENTJAIL_STATE_DIR/runs/$1" && touch -d '2 days ago' "$AGENTJAIL_STATE_DIR/runs/$1"
}
mk_early 0badc0ffee01
mk_early 0badc0ffee02
printf '{"seq":1,"type":"supervisor.lost"}\n' >"$AGENTJAIL_STATE_DIR/runs/0badc0ffee02/events.jsonl"
touch -d '2 days ago' "$AGENTJAIL_STATE_DIR/runs/0badc0ffee02"
mk_early 0badc0ffee03
flock -s "$AGENTJAIL_STATE_DIR/runs/0badc0ffee03" sleep 60 &
HOLDER=$!
for ((i = 0; i < 50; i++)); do
        [[ -n $(pgrep -P "$HOLDER" -x sleep) ]] && break
        sleep 0.1
done
# Killed between the directory's mkdir and its rename: `runs/.making-ID`, which nothing
# listed nor removed. Removed once nothing holds it and it is older than the grace (a
# supervisor takes its lock a few syscalls after the mkdir); one a starting run holds stays.
mkdir "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee04" "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee05" \
        "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee06"
touch -d '2 minutes ago' "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee04" "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee05"
flock -s "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee05" sleep 60 &
HOLDER2=$!
for ((i = 0; i < 50; i++)); do
        [[ -n $(pgrep -P "$HOLDER2" -x sleep) ]] && break
        sleep 0.1
done
aj ps --all
like "$OUT" "0badc0ffee01 +\\? +\\? +lost" "ps: an empty run directory nothing holds is lost" || op_diag
like "$OUT" "0badc0ffee02 +\\? +\\? +lost" "ps: one with events but no run.json, nothing holding it, is lost"
is "$(awk '$1 == "0badc0ffee03" { print $4 }' <<<"$OUT")" unknown "ps: one a starting run holds is not"
aj prune --older-than 1d
is "$RC" 0 "prune --older-than 1d" || op_diag
for id in 0badc0ffee01 0badc0ffee02; do
        is "$(ls -d "$AGENTJAIL_STATE_DIR/runs/$id" 2>/dev/null)" "" "prune removed $id, lost in start-up"
done
isnt "$(ls -d "$AGENTJAIL_STATE_DIR/runs/0badc0ffee03" 2>/dev/null)" "" "prune kept the one a run holds"
is "$(ls -d "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee04" 2>/dev/null)" "" \
        "prune removed a directory a killed supervisor was making"
like "$OUT" "removed +0badc0ffee04 .*a directory a run's supervisor was killed making" "... and says so" || op_diag
isnt "$(ls -d "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee05" 2>/dev/null)" "" "prune kept one a starting run holds"
isnt "$(ls -d "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee06" 2>/dev/null)" "" \
        "prune kept one younger than the grace (its supervisor may not have locked it yet)"
kill $(pgrep -P "$HOLDER2") "$HOLDER2" 2>/dev/null
wait "$HOLDER2" 2>/dev/null
rmdir "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee05" "$AGENTJAIL_STATE_DIR/runs/.making-0badc0ffee06"
kill $(pgrep -P "$HOLDER") "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
rm -rf "$AGENTJAIL_STATE_DIR/runs/0badc0ffee03"


# --- a copy of a live run's directory in another state directory (evidence kept, a backup):
# dead by its own locks, so `prune` there reaped the cgroup of that id, which is the live
# run's (one cgroup tree for every state directory), and its runtime dir: the live run was
# killed. The supervisor holds its cgroup (cgroup.h aj_cgroup_claim): the copy is in use.
start_jail_bg -- ./probe sleep 120
if p=$(find_jailed "$BG_PID" probe 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        mkdir -m 0700 "$TEST_TMP/copy" "$TEST_TMP/copy/runs"
        cp -a "$rdir" "$TEST_TMP/copy/runs/"
        # ps tells the story prune acts on: in use, not "prune reaps it".
        AGENTJAIL_STATE_DIR=$TEST_TMP/copy aj ps
        like "$OUT" "$id .*\[on the host: its cgroup .*in use: held by a live run of the same id" \
                "ps of the copy: in use" || op_diag
        unlike "$OUT" "prune' reaps it" "ps of the copy: not 'prune reaps it'"
        AGENTJAIL_STATE_DIR=$TEST_TMP/copy aj prune --keep 0 --dry-run
        like "$OUT" "would fail +$id .*in use: held by a live run" "prune --dry-run of the copy: in use" || op_diag
        like "$ERR$OUT" "$id.*in use" "prune of the copy: in use" || op_diag
        like "$OUT" "kept +$id .*held by a live run of the same id" \
                "... kept as in use, not as a run whose processes do not die" || op_diag
        ok "the live run's process lives on" kill -0 "$p"
        isnt "$(run_cgroup_dirs "$id")" "" "... in its cgroup"
        isnt "$(ls -d "$AGENTJAIL_RUNTIME_DIR/$id" 2>/dev/null)" "" "... with its runtime dir"
        isnt "$(ls -d "$TEST_TMP/copy/runs/$id" 2>/dev/null)" "" "the copy is kept"
        kill -TERM "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        is "$(jq -r .status "$rdir/run.json")" exited "the live run ends as its own: exited"
        AGENTJAIL_STATE_DIR=$TEST_TMP/copy aj prune --keep 0
        is "$(ls -d "$TEST_TMP/copy/runs/$id" 2>/dev/null)" "" "once it has ended, prune removes the copy" || op_diag
else
        fail "the jail for the copied run directory test started" "$(cat "$TEST_TMP/bg.err")"
fi
BG_PIDS=()
rm -rf "$TEST_TMP/copy"

# --- a dead run's cgroup whose run directory was deleted (its supervisor and watchdog killed,
# then `rm -rf` of the run): its host id slot stayed taken for good, and the "every slot is
# held" error sent the operator to prune, which looked only at run directories. prune finds
# it from the slot's file, leaves it while a process is in it (nothing says whose it is any
# more), and removes it once empty: the slot is free again.
start_jail_bg -p "$HP" -- /bin/sh -c 'cat /hold/f; exec ./probe sleep 120'
if p=$(held_in "$BG_PID" 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        uid=$(jq -r .host_uid "$rdir/run.json")
        kill -KILL "$BG_PID" "$(jq -r .watchdog_pid "$rdir/run.json")"
        wait "$BG_PID" 2>/dev/null
        rm -rf "$rdir"
        aj prune --keep 0
        like "$OUT" "kept +$id .*host id slot $uid keeps the cgroup of run $id .*processes are still in it" \
                "prune finds the orphaned cgroup from its slot, and keeps it while a process is in it" || op_diag
        is "$RC" 1 "... which is a failure (exit 1)"
        ok "its process is not killed" kill -0 "$p"
        let_go
        for ((i = 0; i < 100; i++)); do
                procs=
                for d in $(run_cgroup_dirs "$id"); do
                        procs+=" $(cat "$d/cgroup.procs" 2>/dev/null)"
                done
                [[ -z ${procs// /} ]] && break
                kill -KILL $procs 2>/dev/null
                sleep 0.05
        done
        aj prune --keep 0 --json
        is "$(jq -r --arg id "$id" '.orphans[] | select(.run_id == $id) | .action' <<<"$OUT")" reaped \
                "once empty, prune removes it (--json: orphans)" || op_diag
        is "$(run_cgroup_dirs "$id")" "" "every cgroup dir of the run is gone"
        left=
        for d in $(cat "/run/agentjail/host-ids/$uid"); do
                [[ -e $d ]] && left+=" $d"
        done
        is "$left" "" "its slot names nothing that is there: free"
        # Its runtime dir (the sockets) was left with the cgroup: it goes with it.
        is "$(jq -r --arg id "$id" '.orphans[] | select(.run_id == $id) | .runtime_dir.action' <<<"$OUT")" removed \
                "... with its runtime dir (--json: runtime_dir.action)" || op_diag
        is "$(ls -d "$AGENTJAIL_RUNTIME_DIR/$id" 2>/dev/null)" "" "... which is gone"
else
        fail "the jail for the orphaned cgroup test started, its process held" "$(cat "$TEST_TMP/bg.err")"
fi
let_go
BG_PIDS=()

stop_fuse_hold
ok "the test's FUSE filesystem is unmounted" bash -c '! mountpoint -q "$1"' - "$HOLD"

done_testing
