#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The supervisor: signals sent to agentjail reach the command; if agentjail itself is
# SIGKILLed, the jail does not run on unsupervised (processes and cgroup gone in 5 s).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

# --- SIGTERM and SIGINT are forwarded
for sig in TERM INT; do
        start_jail_bg -- ./probe wait-signal
        if wait_for_output "$TEST_TMP/bg.out" '^ready$' 10; then
                kill -"$sig" "$BG_PID"
                wait_exit "$BG_PID" 10
                is "$WAIT_RC" 42 "SIG$sig to agentjail reaches the command (it exits 42)"
                like "$(cat "$TEST_TMP/bg.out")" "got=SIG$sig" "the command saw SIG$sig"
        else
                fail "the jail for SIG$sig started" "$(cat "$TEST_TMP/bg.out" "$TEST_TMP/bg.err")"
        fi
        kill_bg
done

# A command that does not handle the signal dies of it, and agentjail says so.
start_jail_bg -- ./probe sleep 30
if find_jailed "$BG_PID" probe 10 >/dev/null; then
        kill -TERM "$BG_PID"
        wait_exit "$BG_PID" 10
        is "$WAIT_RC" 143 "SIGTERM to agentjail kills a command without a handler: 143"
else
        fail "the jail for the plain SIGTERM test started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- when the command exits, what it left running in the background goes too
t0=$(date +%s%N)
run_jail -- /bin/sh -c './probe sleep 30 & ./probe sleep 30 </dev/null >/dev/null 2>&1 & echo started; exit 5'
elapsed=$((($(date +%s%N) - t0) / 1000000))
is "$JAIL_RC" 5 "the command's status (5) is returned although it left background processes" || jail_diag
cmp_num "$elapsed" -lt 10000 "agentjail did not wait for the background processes (${elapsed} ms)"
like "$JAIL_OUT" '^started' "the command's output arrived"
procs=$(wait_gone_pids 5)
is "$procs" "" "the background processes were killed with the jail"

# --- concurrent runs do not step on each other
before=$(list_run_dirs)
pids=()
for i in 1 2 3; do
        timeout -k 5 30 "$AGENTJAIL" run --name "concurrent-$i" -- ./probe exit "$((10 + i))" \
                </dev/null >/dev/null 2>&1 &
        pids+=($!)
done
rcs=
for p in "${pids[@]}"; do
        wait "$p"
        rcs+="$? "
done
is "$rcs" "11 12 13 " "three concurrent runs each return their own status"
new=$(comm -13 <(sort <<<"$before") <(list_run_dirs | sort))
collect_run_ids
is "$(count_lines "$new")" 3 "three concurrent runs got three run directories"
got=
for d in $new; do
        got+="$(jq -r '"\(.name)=\(.exit.status)"' "$d/run.json" 2>/dev/null) "
done
is "$(tr ' ' '\n' <<<"$got" | sort | tr '\n' ' ' | sed 's/^ *//')" "concurrent-1=11 concurrent-2=12 concurrent-3=13 " \
        "each run.json has its own name and status"

# check_lost_chain RUN_DIR: the watchdog closed a lost run's chain with supervisor.lost and
# anchored it in run.json; `logs --verify` finds a cut-off end, and without the anchor
# says so (exit 3), never "intact".
check_lost_chain() {
        local rdir=$1 id=${1##*/} n deadline=$((SECONDS + 5))
        until [[ "$(jq -r .events.end "$rdir/run.json" 2>/dev/null)" == supervisor.lost ]] || ((SECONDS > deadline)); do
                sleep 0.05
        done
        is "$(tail -n 1 "$rdir/events.jsonl" | jq -r .type)" supervisor.lost "the chain ends with supervisor.lost"
        n=$(wc -l <"$rdir/events.jsonl")
        is "$(jq -r '"\(.events.end) \(.events.count)"' "$rdir/run.json")" "supervisor.lost $n" \
                "run.json's anchor is the watchdog's supervisor.lost (event $n)"
        aj logs "$id" --verify
        is "$RC" 0 "logs --verify: the lost run's chain is intact up to its anchor" || op_diag
        like "$OUT" "intact: $n events" "logs --verify counts supervisor.lost"
        cp "$rdir/events.jsonl" "$TEST_TMP/events.bak"
        sed -i '$d' "$rdir/events.jsonl"
        aj logs "$id" --verify --json
        is "$RC" 1 "logs --verify: supervisor.lost removed is found"
        is "$(jq -r '"\(.ok) \(.verdict) \(.bad_seq)"' <<<"$OUT")" "false broken $n" "at the removed event"
        cp "$TEST_TMP/events.bak" "$rdir/events.jsonl"
        cp "$rdir/run.json" "$TEST_TMP/run.json.bak"
        jq 'del(.events)' "$TEST_TMP/run.json.bak" >"$rdir/run.json"
        aj logs "$id" --verify
        is "$RC" 3 "logs --verify: a run.json without an anchor exits 3, not 0"
        like "$ERR" "consistent for $n events, but run.json records no anchor: a cut-off tail cannot be detected" \
                "and says why"
        unlike "$OUT" "intact" "it does not say intact"
        aj logs "$id" --verify --json
        is "$(jq -r '"\(.ok) \(.verdict) \(.anchored) \(.events)"' <<<"$OUT")" "false no-anchor false $n" \
                "logs --verify --json: verdict no-anchor, ok false"
        cp "$TEST_TMP/run.json.bak" "$rdir/run.json"
}

# --- the supervisor is SIGKILLed: the jail goes with it
start_jail_bg -- /bin/sh -c './probe sleep 60 & ./probe sleep 60; wait'
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        sleep 0.2
        jailed=$(descendants "$BG_PID" | tr '\n' ' ')
        cgdirs=$(ls -d /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" 2>/dev/null | tr '\n' ' ')
        cmp_num "$(wc -w <<<"$jailed")" -ge 3 "the jail has init, a shell and two probes ($jailed)"
        ((EUID == 0)) && isnt "$cgdirs" "" "the run has cgroup dirs while alive"
        kill -KILL "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        deadline=$((SECONDS + 5))
        while ((SECONDS <= deadline)); do
                alive=
                for p in $jailed; do
                        [[ -d /proc/$p && "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]] && alive+="$p "
                done
                left=$(ls -d /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" 2>/dev/null | tr '\n' ' ')
                [[ -z "$alive$left" ]] && break
                sleep 0.1
        done
        is "$alive" "" "every jailed process is gone within 5 s of the supervisor's SIGKILL"
        is "$left" "" "every cgroup dir of the run is gone within 5 s"
        # Whatever the supervisor owned in the runtime dir must not outlive the jail either.
        is "$(grep -c "$AGENTJAIL_RUNTIME_DIR/$id" /proc/self/mountinfo)" 0 "no mount of the run is left"
        check_lost_chain "$rdir"
else
        fail "the jail for the supervisor-kill test started" "$(cat "$TEST_TMP/bg.err")"
fi
# agentjail is gone (and reaped): nothing for kill_bg to do.
BG_PIDS=()

# Later runs work normally after a supervisor crash.
run_jail -- ./probe exit 7
is "$JAIL_RC" 7 "a new run works after a supervisor was killed" || jail_diag

done_testing
