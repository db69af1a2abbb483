#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs in the test VM only (pure cgroup v2, systemd, a lingering user "agent", uid 1000):
# an unprivileged user in a systemd user scope with a delegated cgroup subtree
# (`systemd-run --user --scope -p Delegate=yes`) gets every limit the profile asks for
# and freeze on breach; without delegation the run refuses (125) and says how to fix it;
# an overlay workspace is refused (125) with the reason.

. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

require_root # to become the user
setup_dirs
bail() {
        echo "Bail out! $1"
        exit 1
}
[[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs ]] || bail "not a pure cgroup v2 host"
USER_UID=$(id -u agent 2>/dev/null) || bail "no user 'agent'"
for _ in $(seq 100); do
        [[ -S /run/user/$USER_UID/bus ]] && break
        sleep 0.1
done
[[ -S /run/user/$USER_UID/bus ]] || bail "no systemd user manager for 'agent' (/run/user/$USER_UID/bus)"

U="$TEST_TMP/agent"
user_tree=/sys/fs/cgroup/user.slice/user-$USER_UID.slice/user@$USER_UID.service
mkdir -p "$U/ws" "$U/state" "$U/runtime"
cp "$PROBE" "$U/ws/probe"
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$U/ws/client.py"
cat >"$U/limits.json" <<'JSON'
{"extends": "default", "limits": {"memory": "64M", "pids": 32, "cpu": 0.5, "wall": "60s"}}
JSON
cat >"$U/overlay.json" <<'JSON'
{"extends": "default", "filesystem": {"workspace": {"path": ".", "mode": "overlay"}}}
JSON
chown -R "$USER_UID:$USER_UID" "$U"

# user_cmd [--delegate] ARGS...: the command line that runs `agentjail ARGS` as the user,
# in a new transient scope of the user's systemd manager, bounded in time.
user_cmd() {
        local scope=(--user --scope --quiet --collect)
        if [[ $1 == --delegate ]]; then
                scope+=(-p Delegate=yes)
                shift
        fi
        USER_CMD=(timeout -k 5 120 runuser -u agent -- env -i PATH=/usr/bin:/bin HOME=/home/agent
                XDG_RUNTIME_DIR=/run/user/$USER_UID DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$USER_UID/bus
                AGENTJAIL_STATE_DIR="$U/state" AGENTJAIL_RUNTIME_DIR="$U/runtime"
                systemd-run "${scope[@]}" -- "$AGENTJAIL" "$@")
}
# as_user [--delegate] ARGS...: runs it; sets U_RC, U_OUT, U_ERR.
as_user() {
        user_cmd "$@"
        (cd "$U/ws" && "${USER_CMD[@]}") >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err"
        U_RC=$?
        U_OUT=$(cat "$TEST_TMP/u.out")
        U_ERR=$(cat "$TEST_TMP/u.err")
}
# as_user_bg [--delegate] ARGS...: the same in the background; sets bg (timeout's pid,
# which passes SIGTERM on to runuser and so to agentjail).
as_user_bg() {
        user_cmd "$@"
        cd "$U/ws" || return 1
        "${USER_CMD[@]}" >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err" &
        bg=$!
        BG_PIDS+=("$bg")
        cd - >/dev/null || return 1
}
u_diag() {
        diag "exit status: $U_RC" "stdout: $(head -c 1500 "$TEST_TMP/u.out")" "stderr: $(head -c 1500 "$TEST_TMP/u.err")"
}
# The cgroup directory of run ID in the user's tree.
run_cgroup() {
        find "$user_tree" -type d -name "$1" 2>/dev/null | head -n1
}
newest_run() {
        local d
        d=$(ls -td "$U"/state/runs/*/ 2>/dev/null | head -n1)
        echo "${d%/}"
}
# wait_new_run BEFORE: the run dir that is not in BEFORE (a `ls` of the runs), once it
# has its run.json; waits up to 60 s (the first run of a user compiles its seccomp filter).
wait_new_run() {
        local d
        for _ in $(seq 600); do
                for d in "$U"/state/runs/*/; do
                        d=${d%/}
                        [[ -f "$d/run.json" ]] && ! grep -qxF "${d##*/}" <<<"$1" && echo "$d" && return 0
                done
                sleep 0.1
        done
        return 1
}

# --- without delegation: refused, with the exact fix
as_user run -p "$U/limits.json" -- ./probe status
is "$U_RC" 125 "a scope without Delegate=yes: the run with limits refuses to start (125)" || u_diag
like "$U_ERR" "Cannot enforce the profile's limits" "it says the limits cannot be enforced"
like "$U_ERR" "systemd-run --user --scope -p Delegate=yes" "it gives the command that fixes it"

# --- delegated: every limit is in place in a run cgroup below the user's scope
before=$(ls "$U/state/runs" 2>/dev/null)
as_user_bg --delegate run -p "$U/limits.json" -- ./probe sleep 30
rdir=$(wait_new_run "$before")
cg=
# The first run of a user compiles its seccomp filter: slow under TCG.
for _ in $(seq 600); do
        cg=$(run_cgroup "${rdir##*/}")
        [[ -n "$cg" && -d "$cg" ]] && grep -qx "populated 1" "$cg/cgroup.events" 2>/dev/null && break
        sleep 0.1
done
if [[ -n "$cg" && -d "$cg" ]]; then
        pass "the delegated run started and has a cgroup ($cg)"
        like "$cg" "^$user_tree/.*/agentjail/[0-9a-f]+\$" "the run cgroup is inside the user's delegated subtree"
        is "$(cat "$cg/memory.max" 2>/dev/null)" 67108864 "memory.max is 64M"
        is "$(cat "$cg/memory.swap.max" 2>/dev/null)" 0 "memory.swap.max is 0"
        is "$(cat "$cg/pids.max" 2>/dev/null)" 32 "pids.max is 32"
        is "$(cat "$cg/cpu.max" 2>/dev/null)" "50000 100000" "cpu.max is 0.5 CPUs"
else
        fail "the delegated run started and has a cgroup" "run dir: $rdir" "cgroup: $cg" \
                "$(cat "$TEST_TMP/u.err" 2>/dev/null)" "$(find "$user_tree" -path '*agentjail*' 2>/dev/null)"
fi
kill -TERM "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
kill_bg
U_ERR=$(cat "$TEST_TMP/u.err")
[[ -n "$cg" ]] && ok "the run cgroup is removed after the run" test ! -d "$cg"

# --- delegated: the overlay workspace is refused with the reason (a rootless supervisor
# cannot build it: docs/operating.md), although the cgroup would do
as_user --delegate run -p "$U/overlay.json" -- ./probe status
is "$U_RC" 125 "delegated: an overlay workspace refuses to start (125)" || u_diag
like "$U_ERR" 'filesystem\.workspace\.mode "overlay" needs agentjail started as root' \
        "it says the overlay needs a root-started run"
like "$U_ERR" 'use "rw" or "ro"' "and what to use instead"

# --- delegated: the limits hold
as_user --delegate run -p "$U/limits.json" -- ./probe forkbomb 2000
is "$U_RC" 0 "delegated: the fork bomb run ends on its own" || u_diag
cmp_num "$(pval forks "$U_OUT")" -lt 32 "delegated: fork stopped below pids.max 32"
is "$(pval errno "$U_OUT")" EAGAIN "delegated: fork failed with EAGAIN"
cmp_num "$(jq -r .usage.pids_max_events "$(newest_run)/run.json" 2>/dev/null)" -ge 1 \
        "delegated: run.json counts the pids.max events"

as_user --delegate run -p "$U/limits.json" -- ./probe membomb 160
is "$U_RC" 137 "delegated: a 160 MiB bomb under 64M is OOM-killed (137)" || u_diag
cmp_num "$(jq -r .usage.oom_kills "$(newest_run)/run.json" 2>/dev/null)" -ge 1 "delegated: run.json counts the OOM kill"

# --- delegated: a breach freezes the run's cgroup
before=$(ls "$U/state/runs" 2>/dev/null)
as_user_bg --delegate run --cap tokens=1000 -- /bin/sh -c 'python3 ./client.py tokens 5 1000 500; sleep 30'
rdir=$(wait_new_run "$before")
for _ in $(seq 300); do
        grep -q '"type":"freeze"' "$rdir/events.jsonl" 2>/dev/null && break
        sleep 0.1
done
if grep -q '"type":"freeze"' "$rdir/events.jsonl" 2>/dev/null; then
        pass "delegated: a tokens breach freezes the run"
        cg=$(run_cgroup "${rdir##*/}")
        like "$(cat "$cg/cgroup.events" 2>/dev/null)" "frozen 1" "delegated: the run's cgroup reports frozen"
else
        fail "delegated: a tokens breach freezes the run" "$(cat "$TEST_TMP/u.err" "$rdir/events.jsonl" 2>/dev/null)"
fi
kill -TERM "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
kill_bg

# --- delegated: a SIGKILLed supervisor's watchdog still finds and removes the run's cgroup
before=$(ls "$U/state/runs" 2>/dev/null)
as_user_bg --delegate run -p "$U/limits.json" -- ./probe sleep 30
rdir=$(wait_new_run "$before")
sup=
for _ in $(seq 300); do
        cg=$(run_cgroup "${rdir##*/}")
        if [[ -n "$cg" ]] && grep -qx "populated 1" "$cg/cgroup.events" 2>/dev/null; then
                for p in $(descendants "$bg"); do
                        [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == agentjail ]] && { sup=$p; break; }
                done
                [[ -n "$sup" ]] && break
        fi
        sleep 0.1
done
if [[ -n "$sup" ]]; then
        kill -KILL "$sup"
        for _ in $(seq 150); do
                [[ -d "$cg" ]] || break
                sleep 0.1
        done
        ok "delegated: after the supervisor is SIGKILLed its run cgroup is removed" test ! -d "$cg"
else
        fail "delegated: the run for the supervisor-kill test started" "$(cat "$TEST_TMP/u.err")"
fi
wait "$bg" 2>/dev/null
kill_bg

# --- nothing of the runs is left in the user's tree once their scopes are gone
for _ in $(seq 50); do
        left=$(find "$user_tree" -depth -mindepth 1 -type d -path '*agentjail*' 2>/dev/null)
        [[ -z "$left" ]] && break
        sleep 0.1
done
is "$left" "" "no agentjail cgroups left in the user's tree"

done_testing
