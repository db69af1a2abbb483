#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The supervisor's CPU against its jail's while the jail floods it:
#   tests/helpers/supervisor-cpu.sh broker|seccomp [SECONDS] [CPU]
# runs a jail with limits.cpu CPU (default 0.2) that floods the broker with pipelined
# "usage" requests (broker) or makes denied system calls (seccomp), and prints the CPU
# the supervisor (the `agentjail run` process) and the jail's cgroup used over SECONDS
# (default 5), after a second of warm-up. AGENTJAIL, PROBE: the binaries to measure.
set -euo pipefail
mode=${1:?broker or seccomp}
secs=${2:-5}
cpu=${3:-0.2}
src=$(cd "$(dirname "$0")/../.." && pwd)
aj=${AGENTJAIL:-$src/build/agentjail}
probe=${PROBE:-$src/build/tests/probe}
work=$(mktemp -d /tmp/aj-supcpu.XXXXXX)
chmod 0755 "$work"
trap 'kill -KILL $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/ws" "$work/state"
export AGENTJAIL_STATE_DIR=$work/state AGENTJAIL_RUNTIME_DIR=$work/runtime
cp "$src/tests/helpers/broker-client.py" "$probe" "$work/ws/"
printf '{"extends": "default", "limits": {"cpu": %s}}\n' "$cpu" >"$work/p.json"
cd "$work/ws"
case $mode in
broker) cmd=(python3 ./broker-client.py flood $((secs + 3))) ;;
seccomp) cmd=(./probe deny-loop 100000000 keyctl) ;;
*) echo "mode: broker or seccomp" >&2; exit 2 ;;
esac
timeout -k 2 $((secs + 10)) "$aj" run -p "$work/p.json" -- "${cmd[@]}" >"$work/out" 2>"$work/err" &
pid=$!
id= sup=
for _ in $(seq 100); do
        id=$(ls "$work/state/runs" 2>/dev/null | head -1 || true)
        [[ -n $id ]] && sup=$(jq -r '.supervisor_pid // empty' "$work/state/runs/$id/run.json" 2>/dev/null || true)
        [[ -n $sup && -f /sys/fs/cgroup/unified/agentjail/$id/cpu.stat ]] && break
        sleep 0.05
done
[[ -n $sup ]] || { echo "the jail did not start:" >&2; cat "$work/err" >&2; exit 1; }
sleep 1
kill -0 "$sup" 2>/dev/null || { echo "the jail ended early:" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
cg=/sys/fs/cgroup/unified/agentjail/$id/cpu.stat
jail_ns() { if [[ $cg == *cpu.stat ]]; then echo $(($(awk '/usage_usec/ {print $2}' "$cg") * 1000)); else cat "$cg"; fi; }
sup_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$sup/stat"; }
sleep 1
t0=$(date +%s%N) s0=$(sup_ticks) j0=$(jail_ns)
sleep "$secs"
t1=$(date +%s%N) s1=$(sup_ticks) j1=$(jail_ns)
hz=$(getconf CLK_TCK)
python3 - "$mode" "$cpu" $((t1 - t0)) $((s1 - s0)) "$hz" $((j1 - j0)) <<'PY'
import sys
mode, cpu, wall, sup, hz, jail = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
s = sup / hz / (wall / 1e9)
j = jail / wall
print(f"{mode} flood, limits.cpu {cpu}: supervisor {s:.3f} CPU, jail {j:.3f} CPU over {wall/1e9:.1f} s"
      f" (supervisor / jail limit {s / cpu:.2f})")
PY
wait $pid 2>/dev/null || true
tail -n 3 "$work/out" "$work/err" | sed 's/^/  /' >&2
