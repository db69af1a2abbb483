#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A run's cgroup is removed also when its processes are slow to leave it. A process that
# does not die at once is made here with the v1 freezer: a frozen task takes its SIGKILL only
# when thawed, in D state until then, as one in uninterruptible sleep on a loaded host would.
# The removal waits for the cgroup to empty, with one bound for the whole of it: the
# supervisor AJ_CGROUP_REMOVE_MS (10 s), then its watchdog, as when the supervisor is killed,
# AJ_CGROUP_REMOVE_LATE_MS (10 min). Before, each wait had a fixed bound of its own (5 s; the
# watchdog's all together about 30 s) and what was still there then stayed for good.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

FZ_ROOT=/sys/fs/cgroup/freezer
[[ -w $FZ_ROOT/cgroup.procs ]] || skip_all "no cgroup v1 freezer to hold a process in (the test needs one)"
FZ=$FZ_ROOT/ajtest-cleanup-$$
HOST_SLEEP=

# hold PID: the task frozen in a v1 freezer cgroup of the test's; let_go: thawed.
hold() {
        [[ -d $FZ ]] || mkdir "$FZ" || return 1
        echo "$1" >"$FZ/cgroup.procs" && echo FROZEN >"$FZ/freezer.state" &&
                wait_for_output "$FZ/freezer.state" '^FROZEN$' 5
}
let_go() {
        [[ -d $FZ ]] && echo THAWED >"$FZ/freezer.state"
        return 0
}
cleanup_cleanup() {
        let_go
        [[ -n $HOST_SLEEP ]] && kill -KILL "$HOST_SLEEP" 2>/dev/null
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

# wait_cgroup_gone ID SECONDS: sets left.
wait_cgroup_gone() {
        local deadline=$((SECONDS + $2))
        while left=$(run_cgroup_dirs "$1") && [[ -n $left ]] && ((SECONDS <= deadline)); do
                sleep 0.1
        done
}

# --- the supervisor SIGKILLed (`timeout -k`'s second signal) while a jailed process cannot
# die yet: its watchdog waits for it past the old bounds (here 35 s), then removes everything.
start_jail_bg -- ./probe sleep 120
if p=$(find_jailed "$BG_PID" probe 10) && rdir=$(wait_run_dir 5) && hold "$p"; then
        id=${rdir##*/}
        kill -KILL "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        sleep 35
        isnt "$(run_cgroup_dirs "$id")" "" "35 s after the supervisor's SIGKILL, the frozen process keeps the cgroup"
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

# --- the supervisor's own removal hits its bound: a process in the run's cgroup that is not
# the jail's (moved there by root on the host; nothing of the jail outlives its init) cannot
# die yet. The supervisor exits after its bound, saying so, and hands the rest to its
# watchdog, which removes the cgroup once the process is gone and records it.
start_jail_bg -- ./probe sleep 3
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        v2=$(ls -d /sys/fs/cgroup/unified/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" 2>/dev/null | head -1)
        sleep 300 &
        HOST_SLEEP=$!
        if [[ -n $v2 ]] && echo "$HOST_SLEEP" >"$v2/cgroup.procs" && hold "$HOST_SLEEP"; then
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
let_go
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
kill $(pgrep -P "$HOLDER") "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
rm -rf "$AGENTJAIL_STATE_DIR/runs/0badc0ffee03"

done_testing
