#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs in the test VM only (pure cgroup v2, systemd, a lingering user "agent", uid 1000):
# `agentjail doctor` as the user in a systemd user scope: without Delegate=yes the
# controllers are not usable and the fix is the delegated scope; in
# `systemd-run --user --scope -p Delegate=yes` memory, pids and cpu are, and with the
# runtime dir on the user's tmpfs everything a default profile needs is OK (exit 0).

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
mkdir -p "$U/ws" "$U/state"
chown -R "$USER_UID:$USER_UID" "$U"

# as_user [--delegate] ARGS...: `agentjail doctor ARGS` as the user in a new transient
# scope of the user's systemd manager (the runtime dir: $XDG_RUNTIME_DIR/agentjail, a
# tmpfs); sets U_RC, U_OUT.
as_user() {
        local scope=(--user --scope --quiet --collect)
        if [[ $1 == --delegate ]]; then
                scope+=(-p Delegate=yes)
                shift
        fi
        (cd "$U/ws" && timeout -k 5 120 runuser -u agent -- env -i PATH=/usr/bin:/bin HOME=/home/agent \
                XDG_RUNTIME_DIR=/run/user/$USER_UID DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$USER_UID/bus \
                AGENTJAIL_STATE_DIR="$U/state" systemd-run "${scope[@]}" -- "$AGENTJAIL" doctor "$@") \
                >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err"
        U_RC=$?
        U_OUT=$(cat "$TEST_TMP/u.out")
}
check() { jq -r --arg n "$1" '.checks[] | select(.name == $n) | .'"$2" <<<"$U_OUT"; }

as_user --json
is "$(jq -r .rootless <<<"$U_OUT")" true "a user's doctor" || diag "$(cat "$TEST_TMP/u.err")"
like "$(jq -r .cgroup.v2_base <<<"$U_OUT")" "^/user.slice/user-$USER_UID.slice/user@$USER_UID.service/.*\.scope$" \
        "it judges the scope it was started in"
# What such a scope gives is what its parent enables for its own accounting (memory and
# pids, not cpu): agentjail could limit those, but not all a default profile asks for.
diag "without Delegate=yes: controllers '$(jq -r .cgroup.controllers <<<"$U_OUT")'"
missing=$(jq -r '[.checks[] | select((.name | startswith("cgroup ")) and .status == "missing") | .name] | join(",")' \
        <<<"$U_OUT")
isnt "$missing" "" "a scope without Delegate=yes: not every controller is usable ($missing)"
fixes=$(jq -r '[.checks[] | select((.name | startswith("cgroup ")) and .status == "missing") | .fix] | unique | .[]' \
        <<<"$U_OUT")
like "$fixes" "^start it in a delegated cgroup of its own: .systemd-run --user --scope -p Delegate=yes agentjail run" \
        "the fix: a delegated scope"
for c in memory pids cpu; do
        if grep -qw "$c" <<<"$(jq -r .cgroup.controllers <<<"$U_OUT")"; then want=OK; else want=missing; fi
        is "$(check "cgroup $c" status)" "$want" "without Delegate=yes: $c is $want, as the scope's cgroup.controllers says"
done
is "$U_RC" 1 "exit 1"

as_user --delegate --json
for c in memory pids cpu; do
        is "$(check "cgroup $c" status)" OK "a scope with Delegate=yes: $c is usable" || diag "$(check "cgroup $c" found)"
done
like "$(check "cgroup memory" found)" "delegated to you" "and it says so"
is "$(check "runtime dir" status)" OK "the runtime dir on the user's tmpfs"
is "$(jq -r '.attention | join(",")' <<<"$U_OUT")" "" "nothing a default profile needs is missing"
is "$U_RC" 0 "exit 0"
left=$(find /sys/fs/cgroup/user.slice/user-$USER_UID.slice -name 'agentjail-doctor.*' 2>/dev/null)
is "$left" "" "the probe left no cgroup in the user's tree"

done_testing
