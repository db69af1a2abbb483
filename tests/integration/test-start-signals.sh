#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A signal in `agentjail run`'s first milliseconds. The supervisor blocks the signals it
# takes through its signalfd before anything of the run exists (src/jail.c, block_signals):
# one sent before that ends it with nothing made; one sent after reaches the command once
# it runs, as later. Either way nothing is left: no cgroup, runtime entry or process, and
# every run directory made is recorded as ended. A signal agentjail was started with
# ignored (a background job of a non-interactive shell: SIGINT, SIGQUIT; nohup: SIGHUP)
# stays ignored for the whole run, its first moments as its last.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

ROUNDS=${START_SIGNALS_ROUNDS:-40}

# now_us: the wall clock in microseconds, without a fork.
now_us() { echo $((${EPOCHREALTIME/./} + 0)); }

# start_and_signal SIG US CMD...: `agentjail run -- CMD` in the background, SIG US
# microseconds after it was exec'd (0: at once). Until the exec the child is this shell,
# whose traps (the EXIT trap's cleanup) a signal would run in it: the clock starts when
# /proc/PID/stat names agentjail. Sets WAIT_RC and ELAPSED_MS.
start_and_signal() {
        local sig=$1 us=$2 t0 pid comm deadline
        shift 2
        t0=$(now_us)
        "$AGENTJAIL" run -- "$@" </dev/null >/dev/null 2>>"$TEST_TMP/signals.err" &
        pid=$!
        deadline=$((t0 + 5000000))
        while read -r _ comm _ <"/proc/$pid/stat" && [[ $comm != "(agentjail)" ]] &&
                (($(now_us) < deadline)); do
                :
        done 2>/dev/null
        deadline=$(($(now_us) + us))
        while (($(now_us) < deadline)); do
                :
        done
        kill -"$sig" "$pid"
        wait_exit "$pid" 15
        ELAPSED_MS=$((($(now_us) - t0) / 1000))
}

# --- SIGTERM at 0 to 5 ms: the run stops, promptly, and leaves nothing
bad= slowest=0
for ((i = 0; i < ROUNDS; i++)); do
        us=$((i < 4 ? 0 : RANDOM % 5000))
        start_and_signal TERM "$us" sleep 10
        ((WAIT_RC == 143)) || bad+="${us}us:rc=$WAIT_RC "
        ((ELAPSED_MS > slowest)) && slowest=$ELAPSED_MS
done
is "$bad" "" "SIGTERM in the first 5 ms ends each of $ROUNDS runs by SIGTERM (143)" ||
        diag "$(tail -c 1500 "$TEST_TMP/signals.err")"
cmp_num "$slowest" -lt 5000 "and promptly (the slowest in ${slowest} ms; the command sleeps 10 s)"

# runs_left_nothing SECONDS WHAT: no process (waited for up to SECONDS), cgroup or runtime dir
# of this file's runs is left.
runs_left_nothing() {
        local procs cgroups rt deadline
        collect_run_ids
        procs=$(wait_gone_pids "$1")
        is "$procs" "" "no process of the $2 is left"
        deadline=$((SECONDS + 5))
        while cgroups=$(stray_cgroups) && [[ -n $cgroups ]] && ((SECONDS < deadline)); do
                sleep 0.1
        done
        is "$cgroups" "" "no cgroup of the $2 is left"
        rt=$(find "$AGENTJAIL_RUNTIME_DIR" -mindepth 1 -maxdepth 1 ! -name .root ! -name seccomp-cache.key)
        is "$rt" "" "no runtime dir of the $2 is left"
}

runs_left_nothing 5 runs
aj ps --all --json
is "$RC" 0 "ps --all" || op_diag
is "$(jq -r '[.runs[].state] | unique | join(",")' <<<"$OUT")" exited \
        "every run directory made is recorded as ended ($(jq '.runs | length' <<<"$OUT") of $ROUNDS runs made one)"

# --- SIGKILL at 0 to 40 ms (the whole start-up: run dir, watchdog, cgroup, clone, plans, mount
# trees, JOINED): the supervisor cannot clean up, its watchdog must. Nothing of any run is left
# once the watchdogs are done, and every run directory made is closed as lost.
RUN_IDS=()
bad=
for ((i = 0; i < ROUNDS; i++)); do
        us=$((i < 4 ? i * 250 : RANDOM % 40000))
        start_and_signal KILL "$us" ./probe sleep 10
        ((WAIT_RC == 137)) || bad+="${us}us:rc=$WAIT_RC "
done
is "$bad" "" "SIGKILL in the first 40 ms ends each of $ROUNDS runs at once (137)"
runs_left_nothing 15 "killed runs (jail, watchdog)"
is "$(find "$AGENTJAIL_RUNTIME_DIR/.root" -mindepth 1 -printf '%f ' 2>/dev/null)" "" \
        "the jails' mount point is empty on the host"
is "$(grep -c "$AGENTJAIL_RUNTIME_DIR\|$AGENTJAIL_STATE_DIR" /proc/self/mountinfo)" 0 \
        "no mount of a killed run is on the host"
is "$(find "$AGENTJAIL_STATE_DIR/cache" -name '*.tmp.*' -printf '%P ' 2>/dev/null)" "" \
        "no half-written cache entry of a killed supervisor is left"
aj ps --all --json
is "$RC" 0 "ps --all" || op_diag
is "$(jq -r '[.runs[] | select(.state != "exited" and .state != "lost") | "\(.id)=\(.state)"] | join(" ")' \
        <<<"$OUT")" "" "every killed run's directory is closed (lost), none left running or unknown" || op_diag
aj prune --keep 0
is "$RC" 0 "prune reaps the killed runs" || op_diag

# --- started with SIGINT and SIGHUP ignored (`trap ''`: this shell and what it starts
# ignore them from the fork on), at 0 to 5 ms and once the command runs: the run goes on
trap '' INT HUP
bad=
for ((i = 0; i < ROUNDS / 2; i++)); do
        sig=HUP
        ((i % 2)) && sig=INT
        us=$((i % 4 < 2 ? RANDOM % 5000 : 150000))
        start_and_signal "$sig" "$us" sleep 0.3
        ((WAIT_RC == 0)) || bad+="SIG$sig@${us}us:rc=$WAIT_RC "
done
trap 'exit 130' INT
trap - HUP
is "$bad" "" "SIGINT and SIGHUP ignored when agentjail started stay ignored, at any moment" ||
        diag "$(tail -c 1500 "$TEST_TMP/signals.err")"

# SIGTERM is not ignored there: it still ends such a run.
trap '' INT HUP
start_and_signal TERM 150000 sleep 10
trap 'exit 130' INT
trap - HUP
is "$WAIT_RC" 143 "SIGTERM still ends a run started with SIGINT and SIGHUP ignored"

done_testing
