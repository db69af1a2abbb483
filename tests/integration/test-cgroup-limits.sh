#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Resource limits from the profile, enforced by the run's cgroup: pids (fork bomb),
# memory (OOM kill), wall clock (SIGTERM, then SIGKILL after the grace period); the
# cgroup exists while the run does and is gone after it.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
# Rootless runs get limits only from a delegated cgroup subtree, which hosts rarely have.
require_root
setup_dirs

limits=$(write_profile limits '{
  "extends": "default",
  "limits": { "memory": "64M", "pids": 32, "cpu": 1.5, "wall": "20s", "wall_grace": "1s" }
}')

# --- the cgroup while the run is alive
start_jail_bg -p "$limits" -- ./probe sleep 20
if jpid=$(find_jailed "$BG_PID" probe 10) && rdir=$(wait_run_dir 5); then
        id=${rdir##*/}
        v2=$(cgroup_v2_dir "$id")
        ok "the run's cgroup exists: $v2" test -d "$v2"
        ok "the jailed probe is inside it" grep -qx "$jpid" <(cat "$v2"/cgroup.procs "$v2"/*/cgroup.procs 2>/dev/null)
        if [[ -d /sys/fs/cgroup/unified ]]; then
                is "$(cat "/sys/fs/cgroup/pids/agentjail/$id/pids.max" 2>/dev/null)" 32 "v1 pids.max is 32"
                is "$(cat "/sys/fs/cgroup/memory/agentjail/$id/memory.limit_in_bytes" 2>/dev/null)" 67108864 \
                        "v1 memory.limit_in_bytes is 64M"
                m=/sys/fs/cgroup/memory/agentjail/$id
                if [[ -e "$m/memory.memsw.limit_in_bytes" ]]; then
                        is "$(cat "$m/memory.memsw.limit_in_bytes")" 67108864 \
                                "v1 memory.memsw.limit_in_bytes is 64M too: no swapping around the limit"
                else
                        pass "no memory.memsw.limit_in_bytes: the kernel does not account (or allow) swap per cgroup"
                fi
                is "$(cat "/sys/fs/cgroup/cpu/agentjail/$id/cpu.cfs_quota_us" 2>/dev/null)" 150000 \
                        "v1 cpu.cfs_quota_us is 1.5 CPUs"
        else
                is "$(cat "$v2/pids.max" 2>/dev/null)" 32 "pids.max is 32"
                is "$(cat "$v2/memory.max" 2>/dev/null)" 67108864 "memory.max is 64M"
                # No swap accounting in the kernel means the run cannot swap at all.
                if [[ -e "$v2/memory.swap.max" ]]; then
                        is "$(cat "$v2/memory.swap.max")" 0 "memory.swap.max is 0: no swapping around the limit"
                else
                        pass "no memory.swap.max: the kernel does not account (or allow) swap per cgroup"
                fi
                is "$(cat "$v2/cpu.max" 2>/dev/null)" "150000 100000" "cpu.max is 1.5 CPUs"
        fi
        kill -TERM "$BG_PID"
        wait_exit "$BG_PID" 10
        is "$WAIT_RC" 143 "the run ended by SIGTERM (forwarded) with 143"
        gone=1
        for d in /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                [[ -d "$d" ]] && gone=0 && diag "left: $d"
        done
        ok "every cgroup dir of the run is removed after it" test "$gone" = 1
        paths=$(jf '.cgroup.paths[]' "$rdir/run.json")
        cmp_num "$(count_lines "$paths")" -ge 1 "run.json lists the cgroup paths"
        ok "run.json's cgroup paths are real agentjail/<id> paths" \
                test -z "$(grep -v "/agentjail/$id\$" <<<"$paths")"
else
        fail "the limited run started" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- fork bomb
run_jail -p "$limits" -- ./probe forkbomb 2000
is "$JAIL_RC" 0 "the fork bomb run ends on its own (exit 0)" || jail_diag
forks=$(pval forks)
cmp_num "$forks" -lt 32 "fork stopped below pids.max 32 (forks=$forks)"
cmp_num "$forks" -ge 5 "but a few forks worked (forks=$forks)"
is "$(pval errno)" EAGAIN "fork failed with EAGAIN"
pm=$(events_of pids.max)
cmp_num "$(count_lines "$pm")" -ge 1 "a pids.max event was recorded"
cmp_num "$(jq -r '.events' <<<"$pm" 2>/dev/null | tail -1)" -ge 1 "the pids.max event counts the refusals"
cmp_num "$(jf .usage.pids_max_events)" -ge 1 "run.json usage.pids_max_events > 0"
ok "the host can still fork" /bin/true

# --- memory bomb (bounded at 1 GiB, so a missing limit cannot hurt the host)
run_jail -p "$limits" -- ./probe membomb 1024
is "$JAIL_RC" 137 "the memory bomb is OOM-killed: exit 137" || jail_diag
unlike "$JAIL_OUT" 'membomb=done' "the bomb never finished its 1 GiB"
oom=$(events_of oom)
cmp_num "$(count_lines "$oom")" -ge 1 "an oom event was recorded"
cmp_num "$(jq -r '.oom_kills' <<<"$oom" 2>/dev/null | tail -1)" -ge 1 "the oom event counts the kills"
cmp_num "$(jf .usage.oom_kills)" -ge 1 "run.json usage.oom_kills >= 1"
is "$(jf .exit.signal)" 9 "run.json exit.signal is 9"
peak=$(jf .usage.memory_peak)
cmp_num "$peak" -le $((80 * 1024 * 1024)) "memory_peak stayed near the limit ($peak)"
cmp_num "$peak" -ge $((32 * 1024 * 1024)) "memory_peak shows the bomb grew ($peak)"

# --- socket buffers count against the memory limit: loopback TCP pairs inside the jail's
# own network namespace, filled and never read, are kernel memory outside the jail's user
# memory (v1 charged them to no cgroup: 40 pairs held 151 MiB of host TCP memory).
if command -v python3 >/dev/null; then
        SOCKFILL_PY='import socket
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
keep, total = [], 0
for i in range(40):
    c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
    c.setblocking(False)
    try:
        while True:
            total += c.send(b"x" * 1048576)
    except (BlockingIOError, OSError):
        pass
    keep.append((c, s))
print("queued", total)'
        run_jail -p "$limits" -- python3 -c "$SOCKFILL_PY"
        queued=$(sed -n 's/^queued //p' <<<"$JAIL_OUT")
        if [[ -n "$queued" ]]; then
                cmp_num "$queued" -le $((80 * 1024 * 1024)) \
                        "bytes queued in unread loopback sockets stay within the 64M memory limit ($queued)"
        else
                is "$JAIL_RC" 137 "filling loopback sockets past the memory limit is OOM-killed" || jail_diag
        fi
fi
# --- swap: a bomb that fits in memory + swap but not in memory alone is still OOM-killed
# (meaningful where the host has swap, as the test VM does; without swap it cannot swap).
run_jail -p "$limits" -- ./probe membomb 160
is "$JAIL_RC" 137 "a 160 MiB bomb under a 64M limit is OOM-killed, not swapped out: exit 137" || jail_diag
unlike "$JAIL_OUT" 'membomb=done' "the 160 MiB bomb never finished"

# --- cpu: two busy loops for 3 s get about a quarter of one CPU between them
cpu=$(write_profile cpu '{ "extends": "default", "limits": { "cpu": 0.25 } }')
t0=$(date +%s%N)
run_jail -p "$cpu" -- /bin/sh -c 'timeout 3 sh -c "while :; do :; done" & timeout 3 sh -c "while :; do :; done"; wait'
elapsed_us=$((($(date +%s%N) - t0) / 1000))
is "$JAIL_RC" 0 "the cpu-limited run ends" || jail_diag
used=$(jf .usage.cpu_usec)
# Unlimited, the two loops would use 3 s each of an idle host's CPUs.
cmp_num "$((${used:-0} * 100 / elapsed_us))" -le 45 \
        "with cpu 0.25 the run used at most ~a quarter of a CPU (${used:-?} us of CPU in $elapsed_us us)"
cmp_num "${used:-0}" -ge 30000 "but it did run (${used:-?} us of CPU)"

# --- a real-time caller: its policy does not reach the jail. The CPU limit bounds the fair
# class only: a SCHED_FIFO agent would run outside cpu.max (and a v1 cpu cgroup, with no
# real-time runtime, refused the init: the run failed, 125). Nor may the agent take a
# real-time policy or a nice below 0 by the caller's limits (raised here where the caller may).
if chrt -f 1 true 2>/dev/null; then
        rt_wrapper=$TEST_TMP/agentjail-rt
        printf '#!/bin/bash\nulimit -r 10 -e 30 2>/dev/null\nexec chrt -f 1 %q "$@"\n' "$AGENTJAIL" >"$rt_wrapper"
        chmod +x "$rt_wrapper"
        caller_rt=$(bash -c 'ulimit -r 10 -e 30 2>/dev/null; ulimit -r')
        saved_agentjail=$AGENTJAIL
        AGENTJAIL=$rt_wrapper
        t0=$(date +%s%N)
        run_jail -p "$cpu" -- /bin/sh -c 'chrt -p $$; grep -E "^Max (realtime|nice) priority" /proc/self/limits;
                chrt -f 1 true && echo rt=taken; timeout 2 sh -c "while :; do :; done"; exit 0'
        elapsed_us=$((($(date +%s%N) - t0) / 1000))
        AGENTJAIL=$saved_agentjail
        is "$JAIL_RC" 0 "started under SCHED_FIFO, the run starts and ends" || jail_diag
        like "$JAIL_OUT" "policy: SCHED_OTHER" "the jail's processes are in SCHED_OTHER"
        like "$JAIL_OUT" "Max realtime priority +0 +0" "the jail's RLIMIT_RTPRIO is 0 (the caller's ${caller_rt})"
        like "$JAIL_OUT" "Max nice priority +0 +0" "the jail's RLIMIT_NICE is 0"
        unlike "$JAIL_OUT" "rt=taken" "the agent cannot take SCHED_FIFO itself"
        used=$(jf .usage.cpu_usec)
        cmp_num "$((${used:-0} * 100 / elapsed_us))" -le 45 \
                "the cpu limit holds (${used:-?} us of CPU in $elapsed_us us)"
else
        skip "a run started under SCHED_FIFO" "chrt -f 1 is refused here: no real-time policy to start a run under"
fi

# --- concurrent runs with limits: each one creates, limits and removes its own cgroup
# below the shared parent while the others do the same (and remove the parent)
for round in 1 2 3; do
        pids=()
        for i in 1 2 3 4; do
                timeout -k 5 60 "$AGENTJAIL" run -p "$limits" -- ./probe exit "$((10 + i))" \
                        </dev/null >/dev/null 2>"$TEST_TMP/conc-$i.err" &
                pids+=($!)
        done
        rcs=
        for p in "${pids[@]}"; do
                wait "$p"
                rcs+="$? "
        done
        [[ "$rcs" == "11 12 13 14 " ]] || break
done
is "$rcs" "11 12 13 14 " "4 concurrent limited runs, 3 rounds: each returns its own status" ||
        diag "$(cat "$TEST_TMP"/conc-*.err)"
collect_run_ids

# --- wall limit: SIGTERM, which the command honours
# The milliseconds from the last run's run.start event to its run.exit, by agentjail's clock:
# how soon it acted, without the start-up before the command ran (seconds in the TCG VM).
run_span_ms() {
        jq -rs '[.[] | select(.type == "run.start" or .type == "run.exit") | .ts
                | capture("^(?<s>[^.]+)\\.(?<f>[0-9]+)Z$") | (.s + "Z" | fromdateiso8601) * 1000 + ((.f + "00")[0:3] | tonumber)]
                | if length == 2 then .[1] - .[0] else empty end' "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null
}
wall=$(write_profile wall '{ "extends": "default", "limits": { "wall": "2s", "wall_grace": "1s" } }')
t0=$(date +%s%N)
run_jail -p "$wall" -- ./probe wait-signal
elapsed=$((($(date +%s%N) - t0) / 1000000))
is "$(pval got)" SIGTERM "at the wall limit the command got SIGTERM" || jail_diag
cmp_num "$elapsed" -ge 1900 "not before the limit (${elapsed} ms)"
span=$(run_span_ms)
cmp_num "$span" -ge 1900 "run.start to run.exit: not before the limit (${span} ms)"
cmp_num "$span" -lt 4000 "run.start to run.exit: soon after the limit (${span} ms)"
is "$(jf .exit.reason)" wall-limit "run.json exit.reason is wall-limit"
cmp_num "$(count_lines "$(events_of wall.limit)")" -ge 1 "a wall.limit event was recorded"
isnt "$JAIL_RC" 0 "a wall-limit run does not exit 0 ($JAIL_RC)"

# --- wall limit: SIGKILL after the grace period when SIGTERM is ignored
t0=$(date +%s%N)
run_jail -p "$wall" -- ./probe ignore-signals 30
elapsed=$((($(date +%s%N) - t0) / 1000000))
cmp_num "$elapsed" -ge 2800 "the grace period was given (${elapsed} ms)"
span=$(run_span_ms)
cmp_num "$span" -ge 2800 "run.start to run.exit: the grace period was given (${span} ms)"
cmp_num "$span" -lt 6000 "run.start to run.exit: then the command was killed (${span} ms)"
unlike "$JAIL_OUT" 'ignore_signals=done' "the command did not run to completion"
is "$(jf .exit.reason)" wall-limit "run.json exit.reason is wall-limit"
is "$(jf .exit.signal)" 9 "it died of SIGKILL"

done_testing
