#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail run`: exit statuses, stdio pass-through and logs, run.json and events.jsonl.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

RFC3339_NS='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'

# --- exit statuses
run_jail -- ./probe exit 0
is "$JAIL_RC" 0 "exit 0 is passed through" || jail_diag

run_jail -- ./probe exit 3
is "$JAIL_RC" 3 "exit 3 is passed through" || jail_diag
exit3_dir=$JAIL_RUN_DIR

run_jail -- ./probe signal TERM
is "$JAIL_RC" 143 "command killed by SIGTERM -> 128+15" || jail_diag
sig_dir=$JAIL_RUN_DIR

run_jail -- ./probe signal KILL
is "$JAIL_RC" 137 "command killed by SIGKILL -> 128+9" || jail_diag

run_jail -- ./probe signal SEGV
is "$JAIL_RC" 139 "command killed by SIGSEGV -> 128+11" || jail_diag

printf 'not a program\n' >"$WORKSPACE/notexec"
chmod 0644 "$WORKSPACE/notexec"
run_jail -- ./notexec
is "$JAIL_RC" 126 "non-executable command -> 126" || jail_diag

mkdir -p "$WORKSPACE/adir"
run_jail -- ./adir
is "$JAIL_RC" 126 "a directory as command -> 126" || jail_diag

run_jail -- ./does-not-exist
is "$JAIL_RC" 127 "missing command (path) -> 127" || jail_diag

run_jail -- agentjail-no-such-command-xyz
is "$JAIL_RC" 127 "missing command (PATH lookup) -> 127" || jail_diag

run_jail --no-such-option -- ./probe exit 0
is "$JAIL_RC" 125 "unknown option -> 125" || jail_diag
like "$JAIL_ERR" '(^|'$'\n'')agentjail: ' "unknown option: one 'agentjail: ...' message on stderr"

run_jail -p agentjail-no-such-profile -- ./probe exit 0
is "$JAIL_RC" 125 "unknown profile -> 125" || jail_diag
like "$JAIL_ERR" '(^|'$'\n'')agentjail: .*agentjail-no-such-profile' "unknown profile: the message names it"

bad=$(write_profile broken '{ "extends": "default", "limits": { "pids": }')
run_jail -p "$bad" -- ./probe exit 0
is "$JAIL_RC" 125 "syntactically broken profile -> 125" || jail_diag
like "$JAIL_ERR" 'agentjail: ' "broken profile: 'agentjail: ...' on stderr"
is "$(grep -c '^agentjail: ' <<<"$JAIL_ERR")" 1 "broken profile: exactly one error line"

# --- stdio
run_jail -- ./probe stderr "to-stderr-$$"
is "$JAIL_RC" 0 "probe stderr exits 0" || jail_diag
is "$JAIL_ERR" "to-stderr-$$" "stderr passes through unchanged"
is "$JAIL_OUT" "" "nothing extra on stdout"
is "$(cat "$JAIL_RUN_DIR/stderr.log" 2>/dev/null)" "to-stderr-$$" "stderr.log holds the command's stderr"

run_jail -- ./probe status
is "$JAIL_RC" 0 "probe status exits 0" || jail_diag
like "$JAIL_OUT" '(^|'$'\n'')uid=1000'$'\n' "probe status ran and printed uid=1000"
if cmp -s "$TEST_TMP/jail.out" "$JAIL_RUN_DIR/stdout.log"; then
        pass "stdout.log is byte-identical to what the caller received"
else
        fail "stdout.log is byte-identical to what the caller received" \
                "stdout.log: $(head -c 500 "$JAIL_RUN_DIR/stdout.log" 2>&1)"
fi

printf 'line one\nline two\n' >"$TEST_TMP/in.small"
JAIL_STDIN="$TEST_TMP/in.small" run_jail -- ./probe echo-stdin
is "$JAIL_RC" 0 "echo-stdin exits 0" || jail_diag
is "$JAIL_OUT" $'line one\nline two' "stdin passes through to the command"

head -c 3000000 /dev/urandom | base64 >"$TEST_TMP/in.big"
JAIL_STDIN="$TEST_TMP/in.big" run_jail -- ./probe echo-stdin
is "$(sha256sum <"$TEST_TMP/jail.out" | cut -d' ' -f1)" "$(sha256sum <"$TEST_TMP/in.big" | cut -d' ' -f1)" \
        "4 MB through stdin and stdout arrive intact"
is "$(sha256sum <"$JAIL_RUN_DIR/stdout.log" 2>/dev/null | cut -d' ' -f1)" \
        "$(sha256sum <"$TEST_TMP/in.big" | cut -d' ' -f1)" "... and stdout.log has all of it"

# --- run.json of `./probe exit 3`, named
run_jail --name basics-named -- ./probe exit 3
dir=$JAIL_RUN_DIR
if [[ -n "$dir" && -f "$dir/run.json" ]]; then
        pass "the run has a directory with run.json"
else
        fail "the run has a directory with run.json" "runs: $(ls -R "$AGENTJAIL_STATE_DIR" 2>&1)"
fi
is "$(jf .id)" "$JAIL_RUN_ID" "run.json id is the run directory's name"
like "$JAIL_RUN_ID" '^[0-9a-f]{12}$' "run id is 12 hex characters"
is "$(jf .name)" "basics-named" "run.json name is --name"
is "$(jf .profile.name)" "default" "run.json profile.name is default"
like "$(jf .profile.path)" '/default\.json$' "run.json profile.path is the default profile file"
like "$(jf .profile.digest)" '^(sha256:)?[0-9a-f]{64}$' "run.json profile.digest is a sha256"
is "$(jfc .command)" '["./probe","exit","3"]' "run.json command is the argv"
is "$(jf .cwd)" "$WORKSPACE" "run.json cwd is the workspace"
like "$(jf .started)" "$RFC3339_NS" "run.json started is RFC 3339 with ns"
like "$(jf .ended)" "$RFC3339_NS" "run.json ended is RFC 3339 with ns"
ok "run.json ended is not before started" test "$(jf .ended)" \> "$(jf .started)" -o "$(jf .ended)" = "$(jf .started)"
is "$(jf .status)" "exited" "run.json status is exited"
is "$(jfc .exit)" '{"status":3,"code":3,"signal":null,"reason":"exited"}' \
        "run.json exit is {status 3, code 3, signal null, reason exited}"
is "$(jf '.usage | has("memory_peak") and has("cpu_usec") and has("oom_kills") and has("pids_max_events")')" \
        true "run.json usage has memory_peak, cpu_usec, oom_kills, pids_max_events"
cmp_num "$(jf '.usage.memory_peak')" -gt 0 "run.json usage.memory_peak > 0"
is "$(jf '.usage.oom_kills')" 0 "run.json usage.oom_kills is 0"
like "$(jf .cgroup.mode)" '^(unified|hybrid|legacy|none)$' "run.json cgroup.mode is one of unified/hybrid/legacy/none"
if [[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs ]]; then
        host_mode=unified
elif grep -q ' - cgroup2 ' /proc/self/mountinfo; then
        host_mode=hybrid
else
        host_mode=legacy
fi
is "$(jf .cgroup.mode)" "$host_mode" "run.json cgroup.mode is this host's ($host_mode)"
cmp_num "$(jf '.cgroup.paths | length')" -ge 1 "run.json cgroup.paths is not empty"
if ((EUID == 0)); then
        # Ids of the run's own, from the pool (src/host-id-pool.h).
        cmp_num "$(jf .host_uid)" -ge 1879048192 "run.json host_uid is in the pool of per-run ids"
        cmp_num "$(jf .host_uid)" -le 1879113727 "run.json host_uid is in the pool of per-run ids (end)"
        is "$(jf .host_gid)" "$(jf .host_uid)" "run.json host_gid is the run's slot too"
else
        is "$(jf .host_uid)" "$EUID" "rootless: run.json host_uid is the caller's uid"
        skip "run.json host_uid is in the pool of per-run ids (end)" "rootless"
        skip "run.json host_gid is the run's slot too" "rootless"
fi
is "$(jf '.degraded | type')" array "run.json degraded is an array"

# --- events.jsonl
ev="$dir/events.jsonl"
ok "events.jsonl exists" test -s "$ev"
is "$(jq -s 'map(.seq) == [range(1; length + 1)]' "$ev" 2>/dev/null)" true "events seq are 1,2,3,... in order"
is "$(jq -r --arg ts "$RFC3339_NS" 'select((.ts | test($ts)) | not) | .seq' "$ev" 2>/dev/null)" "" \
        "every event ts is RFC 3339 with nanoseconds"
is "$(jq -r 'select(.run != "'"$JAIL_RUN_ID"'") | .seq' "$ev" 2>/dev/null)" "" "every event names the run"
is "$(jq -s -r '.[0].type' "$ev" 2>/dev/null)" "run.start" "first event is run.start"
is "$(jq -s -r '.[-1].type' "$ev" 2>/dev/null)" "run.exit" "last event is run.exit"
start=$(events_of run.start "$dir")
is "$(jq -c .command <<<"$start" 2>/dev/null)" '["./probe","exit","3"]' "run.start has the command"
is "$(jq -r .profile <<<"$start" 2>/dev/null)" default "run.start has the profile name"
is "$(jq -r .digest <<<"$start" 2>/dev/null)" "$(jf .profile.digest)" "run.start digest matches run.json"
cmp_num "$(jq -r .pid <<<"$start" 2>/dev/null)" -gt 0 "run.start has the host pid"
exitev=$(events_of run.exit "$dir")
is "$(jq -c '[.status, .code, .signal, .reason]' <<<"$exitev" 2>/dev/null)" '[3,3,null,"exited"]' \
        "run.exit has status 3, code 3, signal null, reason exited"
is "$(jq -r '.usage | type' <<<"$exitev" 2>/dev/null)" object "run.exit has usage"
is "$(jq -s '[.[] | select(.type == "run.start" or .type == "run.exit")] | length' "$ev")" 2 \
        "exactly one run.start and one run.exit"

# --- a signaled run's records
is "$(jfc .exit "$sig_dir/run.json")" '{"status":143,"code":null,"signal":15,"reason":"signaled"}' \
        "signaled run: exit is {status 143, code null, signal 15, reason signaled}"
is "$(events_of run.exit "$sig_dir" | jq -c '[.status, .code, .signal, .reason]' 2>/dev/null)" \
        '[143,null,15,"signaled"]' "signaled run: run.exit agrees"
is "$(jf .exit.status "$exit3_dir/run.json")" 3 "unnamed run also recorded its exit status"

# --- --json: the final run record on stderr, after the run (also when it fails to start)
run_jail --json -- /bin/sh -c 'exit 7'
is "$JAIL_RC" 7 "--json keeps the command's status"
is "$(tail -1 <<<"$JAIL_ERR" | jq -r '.exit.status')" 7 "--json prints run.json's exit on stderr"
is "$(tail -1 <<<"$JAIL_ERR" | jq -r '.id')" "$JAIL_RUN_ID" "--json names the run"
run_jail --json -p "$(write_profile json-bad '{"extends": "default", "filesystem": {"ro": ["/nonexistent-agentjail"]}}')" -- /bin/true
is "$JAIL_RC" 125 "a launcher error with --json still exits 125"
is "$(tail -1 <<<"$JAIL_ERR" | jq -r '.exit.reason')" launcher-error "--json prints the record of a run that could not start"
# The record holds strings that are not agentjail's (the command's argv): C1 and bidi controls,
# which json_dumps leaves raw, are \u escapes on the terminal, the same JSON for a parser.
raw_c1_bidi() { LC_ALL=C grep -q $'\xc2\x9b\|\xe2\x80\xae' "$1"; }
run_jail --json -- /bin/sh -c true "$(printf 'x\302\233\342\200\256y')"
is "$JAIL_RC" 0 "--json of a command with a C1 and a bidi control in its argv" || jail_diag
ok "--json: no raw C1 or bidi control on stderr" eval '! raw_c1_bidi "$TEST_TMP/jail.err"'
is "$(tail -1 <<<"$JAIL_ERR" | jq -r '.command[3]')" "$(printf 'x\302\233\342\200\256y')" "--json: the same JSON for a parser"

# --- one directory per run (at least the nine runs that certainly got past setup)
cmp_num "$(list_run_dirs | wc -l)" -ge 9 "every started run left its own directory"

done_testing
