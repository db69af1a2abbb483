#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The supervisor: signals sent to agentjail reach the command; if agentjail itself is
# SIGKILLed, the jail does not run on unsupervised (processes and cgroup gone in 5 s);
# its watchdog is watched in turn (replaced when killed, a bounded number of times).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

# --- SIGTERM and SIGINT are forwarded
for sig in TERM INT; do
        # The last loop's "ready" must not be mistaken for this one's.
        rm -f "$TEST_TMP/bg.out"
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
                </dev/null >/dev/null 2>"$TEST_TMP/concurrent-$i.err" &
        pids+=($!)
done
rcs=
for p in "${pids[@]}"; do
        wait "$p"
        rcs+="$? "
done
is "$rcs" "11 12 13 " "three concurrent runs each return their own status"
# On a failure, each run's stderr says why (a run that exits 125 names its error there).
if [[ $rcs != "11 12 13 " ]]; then
        for i in 1 2 3; do
                diag "run concurrent-$i, stderr:" "$(head -c 2000 "$TEST_TMP/concurrent-$i.err")"
        done
fi
new=$(comm -13 <(sort <<<"$before") <(list_run_dirs | sort))
collect_run_ids
is "$(count_lines "$new")" 3 "three concurrent runs got three run directories"
got=
for d in $new; do
        got+="$(jq -r '"\(.name)=\(.exit.status)"' "$d/run.json" 2>/dev/null) "
done
is "$(tr ' ' '\n' <<<"$got" | sort | tr '\n' ' ' | sed 's/^ *//')" "concurrent-1=11 concurrent-2=12 concurrent-3=13 " \
        "each run.json has its own name and status"

# wait_run_gone ID PIDS: up to 5 s for the run's processes (PIDS), cgroup dirs (v1 and v2,
# /sys/fs/cgroup/*/agentjail/ID covers unified/) and runtime dir to go; sets alive, left.
wait_run_gone() {
        local id=$1 pids=$2 p deadline=$((SECONDS + 5))
        while ((SECONDS <= deadline)); do
                alive=
                for p in $pids; do
                        [[ -d /proc/$p && "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]] && alive+="$p "
                done
                left=$(ls -d /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id" \
                        "$AGENTJAIL_RUNTIME_DIR/$id" 2>/dev/null | tr '\n' ' ')
                [[ -z "$alive$left" ]] && break
                sleep 0.1
        done
}

# The watchdog is the supervisor's child with comm aj-watchdog (run.json: watchdog_pid).
# next_watchdog SUPERVISOR [OLD]: its pid, once it is not OLD (up to 5 s).
next_watchdog() {
        local deadline=$((SECONDS + 5)) w
        while ((SECONDS <= deadline)); do
                for w in $(pgrep -P "$1" -x aj-watchdog); do
                        [[ "$w" != "${2:-}" && "$(awk '{print $3}' "/proc/$w/stat" 2>/dev/null)" != Z ]] &&
                                echo "$w" && return 0
                done
                sleep 0.05
        done
        return 1
}

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
        wait_run_gone "$id" "$jailed"
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

# --- the supervisor SIGKILLed in the middle of writing an event line (a write(2) of a group
# commit cut short): the file ends in a torn line. The watchdog's supervisor.lost must not be
# glued onto it: the torn bytes are kept, ended, and named by events.torn (their length and
# sha256) right after them, and the chain verifies. Made deterministic: the supervisor is
# stopped, the head of a line appended as a killed write leaves it, then it is SIGKILLed.
start_jail_bg -- ./probe sleep 60
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        kill -STOP "$BG_PID"
        n=$(wc -l <"$rdir/events.jsonl")
        torn='{"seq":'$((n + 1))',"ts":"2026-01-01T00:00:00.5","run":"'$id'","type":"tool.req'
        printf '%s' "$torn" >>"$rdir/events.jsonl"
        kill -KILL "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        deadline=$((SECONDS + 5))
        until [[ "$(jq -r .events.end "$rdir/run.json" 2>/dev/null)" == supervisor.lost ]] || ((SECONDS > deadline)); do
                sleep 0.05
        done
        is "$(sed -n "$((n + 1))p" "$rdir/events.jsonl")" "$torn" "the torn line is kept as it was, ended"
        is "$(sed -n "$((n + 2))p" "$rdir/events.jsonl" | jq -r '"\(.type) \(.seq) \(.bytes)"' 2>&1)" \
                "events.torn $((n + 1)) ${#torn}" "events.torn follows it, naming its length"
        is "$(tail -n 1 "$rdir/events.jsonl" | jq -r '"\(.type) \(.seq)"' 2>&1)" "supervisor.lost $((n + 2))" \
                "then supervisor.lost, on a line of its own, continuing the chain"
        is "$(jq -r .events.count "$rdir/run.json")" "$((n + 2))" "run.json's anchor is supervisor.lost"
        aj logs "$id" --verify
        is "$RC" 0 "logs --verify: the chain with a torn line is intact" || op_diag
        like "$OUT" "intact: $((n + 2)) events" "it counts the events, not the torn line"
        like "$OUT" "1 line\(s\) torn by a killed writer" "and says a line was torn"
        cp "$rdir/events.jsonl" "$TEST_TMP/events.bak"
        sed -i "$((n + 1))s/tool.req/tool.rex/" "$rdir/events.jsonl"
        aj logs "$id" --verify --json
        is "$(jq -r '"\(.verdict) \(.bad_seq)"' <<<"$OUT")" "broken $((n + 1))" \
                "logs --verify: a changed torn line is found (events.torn names its sha256)"
        cp "$TEST_TMP/events.bak" "$rdir/events.jsonl"
else
        fail "the jail for the torn-line test started" "$(cat "$TEST_TMP/bg.err")"
fi
BG_PIDS=()

# --- a run is live until its watchdog has closed it: the operator's verbs go by the run's
# live.lock, which the watchdog keeps after the supervisor's SIGKILL. By supervisor_pid the
# run was "lost" (and prune removed its directory) while the watchdog was still to write
# supervisor.lost into it. The watchdog is held in a frozen cgroup of its own (SIGSTOP
# would not hold it: its orphaned process group gets SIGCONT when the supervisor dies): a
# cgroup v2 tree's (pure v2, or a hybrid host's unified tree), else v1's freezer.
FRZ_V2=
if [[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) == cgroup2fs ]]; then
        FRZ_V2=/sys/fs/cgroup
elif [[ -e /sys/fs/cgroup/unified/cgroup.procs ]]; then
        FRZ_V2=/sys/fs/cgroup/unified
fi
FRZ_V1=/sys/fs/cgroup/freezer
# hold_frozen PID: into a new frozen cgroup ($fz); let_go PID: thawed, back, the cgroup gone.
hold_frozen() {
        if [[ -n $FRZ_V2 ]]; then
                fz_home=$(sed -n 's/^0:://p' "/proc/$1/cgroup")
                fz=$FRZ_V2/aj-test-$$
                mkdir "$fz" && echo "$1" >"$fz/cgroup.procs" && echo 1 >"$fz/cgroup.freeze" &&
                        wait_for_output "$fz/cgroup.events" "frozen 1" 5
        else
                fz_home=
                fz=$FRZ_V1/aj-test-$$
                mkdir "$fz" && echo "$1" >"$fz/cgroup.procs" && echo FROZEN >"$fz/freezer.state"
        fi
}
let_go() {
        if [[ -n $FRZ_V2 ]]; then
                echo 0 >"$fz/cgroup.freeze"
                echo "$1" >"$FRZ_V2$fz_home/cgroup.procs" 2>/dev/null
        else
                echo THAWED >"$fz/freezer.state"
                echo "$1" >"$FRZ_V1/cgroup.procs" 2>/dev/null
        fi
        local i
        for ((i = 0; i < 50; i++)); do
                rmdir "$fz" 2>/dev/null && return 0
                sleep 0.1
        done
        rmdir "$fz"
}
if [[ -n $FRZ_V2 || -w $FRZ_V1/cgroup.procs ]]; then
        start_jail_bg -- ./probe sleep 60
        if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5) && wd=$(next_watchdog "$BG_PID") &&
                hold_frozen "$wd"; then
                id=${rdir##*/}
                kill -KILL "$BG_PID"
                wait "$BG_PID" 2>/dev/null
                aj ps --all --json
                is "$(jq -r --arg id "$id" '.runs[] | select(.id == $id) | .state' <<<"$OUT")" running \
                        "the supervisor SIGKILLed, its watchdog not done yet: the run is still live"
                aj prune --keep 0 --json
                is "$(jq -r --arg id "$id" '.skipped[] | select(.id == $id) | .reason' <<<"$OUT")" live \
                        "prune keeps it while its watchdog has yet to close its chain"
                let_go "$wd"
                check_lost_chain "$rdir"
                aj ps --all --json
                is "$(jq -r --arg id "$id" '.runs[] | select(.id == $id) | .state' <<<"$OUT")" lost \
                        "the watchdog done: the run is lost"
        else
                fail "the jail for the watchdog-window test started, its watchdog held" "$(cat "$TEST_TMP/bg.err")"
                [[ -d ${fz:-} ]] && let_go "${wd:-0}"
        fi
        BG_PIDS=()
else
        skip "a run is live until its watchdog has closed it" "no cgroup v2 tree and no v1 freezer to hold the watchdog in"
fi

# --- the watchdog is watched: SIGKILLed, the supervisor starts another (and records it),
# so a supervisor SIGKILLed next is still cleaned up after
start_jail_bg -- /bin/sh -c './probe sleep 60 & ./probe sleep 60; wait'
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5) && wd=$(next_watchdog "$BG_PID"); then
        id=${rdir##*/}
        is "$(jq -r .watchdog_pid "$rdir/run.json")" "$wd" "run.json names the watchdog, the supervisor's child aj-watchdog"
        # It holds the jail's mount namespace, so that its teardown happens in the
        # watchdog's exit after the run rather than in the init's on the run's way out.
        init=$(pgrep -P "$BG_PID" -x agentjail-init)
        mnt=$(readlink "/proc/$init/ns/mnt")
        held=$(for f in /proc/"$wd"/fd/*; do readlink "$f"; done 2>/dev/null | grep -cxF "$mnt")
        is "$held" 1 "the watchdog holds the jail's mount namespace ($mnt, the init's $init)"
        jailed=$(descendants "$BG_PID" | grep -vx "$wd" | tr '\n' ' ')
        kill -KILL "$wd"
        if wd2=$(next_watchdog "$BG_PID" "$wd"); then
                pass "a new watchdog runs after the first was SIGKILLed ($wd -> $wd2)"
        else
                fail "a new watchdog runs after the first was SIGKILLed" "$(cat "$TEST_TMP/bg.err")"
        fi
        wait_for_output "$rdir/events.jsonl" '"type":"watchdog.restarted"' 5
        is "$(events_of watchdog.restarted "$rdir" | jq -r '"\(.old_pid) \(.pid) \(.signal) \(.restarts)"')" \
                "$wd $wd2 9 1" "watchdog.restarted names the dead one (SIGKILL) and the new one"
        kill -KILL "$BG_PID"
        wait "$BG_PID" 2>/dev/null
        wait_run_gone "$id" "$jailed $wd2"
        is "$alive" "" "after the watchdog, then the supervisor, were SIGKILLed: no jailed process is left"
        is "$left" "" "no cgroup dir (v1, v2) and no runtime dir of the run is left"
        is "$(jq -r .type "$rdir/events.jsonl" | tr '\n' ' ')" "run.start watchdog.restarted supervisor.lost " \
                "the chain: run.start, watchdog.restarted, supervisor.lost"
        check_lost_chain "$rdir"
else
        fail "the jail for the watchdog-kill test started" "$(cat "$TEST_TMP/bg.err")"
fi
BG_PIDS=()

# --- the supervisor's whole process group SIGKILLed (what `timeout -s KILL` and a cancelled
# CI job do): the watchdog, in a group of its own, still cleans up and closes the chain
BG_BEFORE=$(list_run_dirs)
setsid env --default-signal=INT,QUIT "$AGENTJAIL" run -- /bin/sh -c './probe sleep 60' \
        </dev/null >"$TEST_TMP/bg.out" 2>"$TEST_TMP/bg.err" &
BG_PID=$!
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5) && wd=$(next_watchdog "$BG_PID"); then
        id=${rdir##*/}
        is "$(ps -o pgid= -p "$BG_PID" | tr -d ' ')" "$BG_PID" "agentjail leads its own process group (setsid)"
        jailed=$(descendants "$BG_PID" | grep -vx "$wd" | tr '\n' ' ')
        kill -KILL -- "-$BG_PID"
        wait "$BG_PID" 2>/dev/null
        wait_run_gone "$id" "$jailed $wd"
        is "$alive" "" "after the process group's SIGKILL: no jailed process is left"
        is "$left" "" "after the process group's SIGKILL: no cgroup dir and no runtime dir of the run is left"
        check_lost_chain "$rdir"
else
        fail "the jail for the process-group kill test started" "$(cat "$TEST_TMP/bg.err")"
fi
BG_PIDS=()

# --- the watchdog alone SIGKILLed: the run goes on with a new one and ends normally
# Long enough for the lookups below on a slow machine (the test VM runs under TCG).
start_jail_bg -- /bin/sh -c './probe sleep 5 && echo finished'
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5) && wd=$(next_watchdog "$BG_PID"); then
        kill -KILL "$wd"
        wd2=$(next_watchdog "$BG_PID" "$wd")
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 0 "the run whose watchdog was killed ends with its command's status"
        like "$(cat "$TEST_TMP/bg.out")" finished "the command ran to its end"
        is "$(jq -r .type "$rdir/events.jsonl" | tr '\n' ' ')" "run.start watchdog.restarted run.exit " \
                "the chain records the restart, then the run's normal end"
        is "$(jf '"\(.exit.reason) \(.events.end)"' "$rdir/run.json")" "exited run.exit" "run.json: exited, anchored at run.exit"
        deadline=$((SECONDS + 5))
        while [[ -n "$wd2" && -d /proc/$wd2 ]] && ((SECONDS < deadline)); do sleep 0.05; done
        ok "the new watchdog ($wd2) exits with the run" test -n "$wd2" -a ! -d "/proc/$wd2"
        ok "nothing of the run is left in the runtime dir" test ! -e "$AGENTJAIL_RUNTIME_DIR/${rdir##*/}"
else
        fail "the jail for the lone watchdog-kill test started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- a dead watchdog whose zombie a tracer holds (root on the host ptrace-attached to it) is
# just as dead: the supervisor replaces it at once, and does not spin on its pidfd, which
# stays readable while nobody can reap the zombie. The command runs until the test ends it
# (SIGTERM), so the checks cannot outlast it on a slow machine.
start_jail_bg -- ./probe sleep 120
if jp=$(find_jailed "$BG_PID" probe 10) && rdir=$(wait_run_dir 5) && wd=$(next_watchdog "$BG_PID"); then
        "$PROBE" seize "$wd" 4 >"$TEST_TMP/seize.out" 2>&1 &
        seizer=$!
        deadline=$((SECONDS + 5))
        until grep -q seized "$TEST_TMP/seize.out" || ((SECONDS > deadline)); do sleep 0.05; done
        like "$(cat "$TEST_TMP/seize.out")" "seized $wd" "a tracer holds the watchdog"
        hz=$(getconf CLK_TCK)
        cpu0=$(awk '{print $14 + $15}' "/proc/$BG_PID/stat")
        kill -KILL "$wd"
        sleep 2
        cpu1=$(awk '{print $14 + $15}' "/proc/$BG_PID/stat")
        held=$(awk '{print $3}' "/proc/$wd/stat" 2>/dev/null)
        wd2=$(pgrep -P "$BG_PID" -x aj-watchdog | while read -r w; do
                [[ "$w" != "$wd" && "$(awk '{print $3}' "/proc/$w/stat" 2>/dev/null)" != Z ]] && echo "$w"; done)
        is "$held" Z "the killed watchdog is a zombie the tracer still holds"
        isnt "$wd2" "" "meanwhile a new watchdog runs"
        ok "the supervisor does not spin on the dead watchdog's pidfd: $((cpu1 - cpu0)) CPU ticks in 2 s (< 30%)" \
                test $((cpu1 - cpu0)) -lt $((hz * 2 * 30 / 100))
        kill -TERM "$jp"
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 143 "the run ends with its command's status (SIGTERM: 143)"
        is "$(jq -r .type "$rdir/events.jsonl" | tr '\n' ' ')" "run.start watchdog.restarted run.exit " \
                "the chain records one restart and the run's normal end"
        wait "$seizer" 2>/dev/null
else
        fail "the jail for the traced-watchdog test started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- a loop of kills cannot keep the supervisor forking watchdogs: after 3 restarts the
# next death ends the run (fail closed, exit 123), and everything is cleaned up
start_jail_bg -- ./probe sleep 60
if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        jailed=$(descendants "$BG_PID" | tr '\n' ' ')
        killed=
        wd=
        for i in 1 2 3 4; do
                wd=$(next_watchdog "$BG_PID" "$wd") || break
                kill -KILL "$wd"
                killed+="$wd "
        done
        is "$(wc -w <<<"$killed")" 4 "four watchdogs in turn were found and SIGKILLed ($killed)"
        wait_exit "$BG_PID" 10
        is "$WAIT_RC" 123 "the fourth death ends the run: exit 123 (agentjail's own kill)"
        like "$(cat "$TEST_TMP/bg.err")" "watchdog .* died after 3 restarts: ending the run" "stderr says why"
        is "$(jq -r .type "$rdir/events.jsonl" | tr '\n' ' ')" \
                "run.start watchdog.restarted watchdog.restarted watchdog.restarted watchdog.lost kill run.exit " \
                "the chain: three restarts, watchdog.lost, kill, run.exit"
        is "$(events_of watchdog.lost "$rdir" | jq -r '"\(.restarts) \(.signal) \(.action)"')" "3 9 jail killed" \
                "watchdog.lost says what happened"
        is "$(events_of run.exit "$rdir" | jq -r .reason)" killed "run.exit: killed"
        wait_run_gone "$id" "$jailed"
        is "$alive$left" "" "no process, cgroup dir or runtime dir of the run is left"
        is "$(pgrep -P "$BG_PID" -x aj-watchdog)" "" "no fifth watchdog was started"
else
        fail "the jail for the watchdog restart-limit test started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# The kill switch does not depend on the supervisor: stopped (SIGSTOP), it cannot answer, and
# `agentjail kill` kills the run's cgroup itself; continued, the supervisor records the end.
start_jail_bg --name stopped -- ./probe sleep 60
if rdir=$(wait_run_dir 10) && sup=$(jq -re .supervisor_pid "$rdir/run.json" 2>/dev/null); then
        id=${rdir##*/}
        kill -STOP "$sup"
        # Operators' tools kept polling meanwhile: their connections fill the socket's backlog,
        # so a connect fails at once (EAGAIN) instead of timing out.
        /usr/bin/python3 -c '
import socket, sys, time
held = []
for _ in range(40):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        s.connect(sys.argv[1])
    except OSError:
        pass
    held.append(s)
time.sleep(30)' "$AGENTJAIL_RUNTIME_DIR/$id/control.sock" &
        filler=$!
        BG_PIDS+=("$filler")
        sleep 0.5
        aj kill "$id"
        is "$RC" 0 "kill works while the supervisor does not answer (its backlog full)" || op_diag
        like "$OUT" "killed its cgroup directly" "... and says how"
        for ((i = 0; i < 40; i++)); do
                pids=$(grep -c . "$(cgroup_v2_dir "$id")/cgroup.procs" 2>/dev/null)
                [[ $pids == 0 ]] && break
                sleep 0.05
        done
        kill -CONT "$sup"
        is "$pids" 0 "no process of the run is left in its cgroup"
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 137 "the run ends with the command killed (137)"
        is "$(events_of run.exit "$rdir" | jq -r .signal)" 9 "run.exit records SIGKILL"
        aj logs --verify "$id"
        is "$RC" 0 "the chain is intact" || op_diag
else
        fail "the jail for the stopped-supervisor kill started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# Nor on a socket it can trust: one refused as not the run's (here in a directory anyone
# can write, under the runtime dir this operator's environment names) is no answer, and the
# run's cgroup is killed by its id; nothing is sent to that socket.
start_jail_bg --name squatted -- ./probe sleep 60
if rdir=$(wait_run_dir 10); then
        id=${rdir##*/}
        for ((i = 0; i < 100; i++)); do
                [[ -S $AGENTJAIL_RUNTIME_DIR/$id/control.sock ]] && break
                sleep 0.05
        done
        mkdir -p "$TEST_TMP/squat/$id"
        chmod 0777 "$TEST_TMP/squat/$id"
        /usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
                "$TEST_TMP/squat/$id/control.sock"
        AGENTJAIL_RUNTIME_DIR=$TEST_TMP/squat aj kill "$id"
        is "$RC" 0 "kill works when the socket it finds is refused as not the run's" || op_diag
        like "$OUT" "is not the run's .* was not used; killed its cgroup directly" "... and says why and how"
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 137 "the run ends with the command killed (137)"
else
        fail "the jail for the refused-socket kill started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# What a supervisor maps: libc and the dynamic loader, no other shared object. The libraries
# agentjail uses are linked in, libssl is loaded only when a run first needs TLS, and libm is
# not needed: each mapped object's pages count in every supervisor's RSS (libm's were 0.3 MiB).
start_jail_bg --name maps -- ./probe sleep 30
if rdir=$(wait_run_dir 10) && sup=$(jq -re .supervisor_pid "$rdir/run.json" 2>/dev/null); then
        objs=$(awk '$6 ~ /\.so/ { n = split($6, p, "/"); print p[n] }' "/proc/$sup/maps" | sort -u)
        like "$objs" '(^|'$'\n'')libc\.so' "the supervisor maps libc (the check reads its mappings)"
        is "$(grep -v -e '^libc\.so' -e '^ld-linux' -e '^lib[almt]*san\.so' <<<"$objs")" "" \
                "the supervisor maps no shared object but libc and the loader"
else
        fail "the jail for the supervisor's mappings started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- an agent trying to outlive its run: a setsid daemon ignoring SIGTERM and SIGHUP with its
# cwd at / (out of the workspace) and no fd of the run's, a SIGSTOPped child, fds of its own
# (its mount and network namespaces, a pipe, a tmpfs file, the broker connection itself)
# sent to the broker with SCM_RIGHTS and left unread behind an unfinished line, and a fork
# storm while `agentjail kill` comes. Each process carries a marker in its arguments, which
# the host's /proc shows whatever the agent did with its cwd and fds.
MARK=ajescape$$
cat >"$WORKSPACE/escape.py" <<'PY'
import array, os, signal, socket, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        os.chdir("/")
        os.closerange(0, 1024)
        while True:
            time.sleep(1)
    os._exit(0)
if os.fork() == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(3600)
    os._exit(0)
b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
b.connect(os.environ["AGENTJAIL_BROKER"])
r, w = os.pipe()
with open("/tmp/held", "w") as f:
    f.write("x" * 4096)
fds = [os.open("/proc/self/ns/mnt", os.O_RDONLY), os.open("/proc/self/ns/net", os.O_RDONLY), r, w,
       os.open("/tmp/held", os.O_RDONLY), b.fileno(), 1, 2]
b.sendmsg([b'{"op":'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
print("ready", flush=True)
while True:
    try:
        if os.fork() == 0:
            time.sleep(0.02)
            os._exit(0)
    except OSError:
        time.sleep(0.001)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
PY
# marked: the agent's processes (python3), not agentjail's, whose arguments have the marker too.
marked() {
        local p
        for p in $(pgrep -f "$MARK"); do
                [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == python3* ]] && printf '%s ' "$p"
        done
        return 0
}
start_jail_bg -- python3 ./escape.py "$MARK"
if wait_for_output "$TEST_TMP/bg.out" '^ready$' 10 && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        sleep 0.3
        cmp_num "$(wc -w <<<"$(marked)")" -ge 3 "the agent's processes run (daemon, stopped child, storm)"
        aj kill "$id"
        is "$RC" 0 "agentjail kill during the fork storm" || op_diag
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 123 "the run ends at once, killed by the operator (123)"
        left=
        for _ in $(seq 50); do
                left=$(marked)
                [[ -z $left ]] && break
                sleep 0.1
        done
        is "$left" "" "no process of the agent outlives the run (daemon, stopped child, forks)"
        wait_run_gone "$id" ""
        is "$left" "" "no cgroup dir or runtime dir of the run is left"
        wd=$(jq -r .watchdog_pid "$rdir/run.json")
        ok "its watchdog, holding the jail's mount namespace, has exited" wait_pid_gone "$wd" 5
else
        fail "the jail for the outliving agent started" "$(cat "$TEST_TMP/bg.out" "$TEST_TMP/bg.err")"
fi
kill_bg

# Later runs work normally after a supervisor crash.
run_jail -- ./probe exit 7
is "$JAIL_RC" 7 "a new run works after a supervisor was killed" || jail_diag

done_testing
