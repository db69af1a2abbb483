#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The operator's commands: ps, inspect, logs, freeze/thaw/kill over the control socket,
# quarantine list/show/release/purge, on live, exited, lost and quarantined runs; their
# exit statuses (0 ok, 1 failure, 2 usage) and --json documents.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

AJ=$AGENTJAIL

# aj ARGS...: run an agentjail command; sets OUT, ERR, RC.
aj() {
        timeout -k 5 30 "$AJ" "$@" >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
        RC=$?
        OUT=$(cat "$TEST_TMP/op.out")
        ERR=$(cat "$TEST_TMP/op.err")
}

op_diag() {
        diag "exit status: $RC"
        diag "stdout: $(head -c 1500 "$TEST_TMP/op.out")"
        diag "stderr: $(head -c 1500 "$TEST_TMP/op.err")"
}

# wait_sock ID: the run's control socket appears (the supervisor serves it).
wait_sock() {
        local deadline=$((SECONDS + 10))
        while ((SECONDS < deadline)); do
                [[ -S "$AGENTJAIL_RUNTIME_DIR/$1/control.sock" ]] && return 0
                sleep 0.05
        done
        return 1
}

# ------------------------------------------------------------------ an exited run
run_jail --name op-exited -- sh -c 'echo hello'
is "$JAIL_RC" 0 "a short run for the records" || jail_diag
ID=$JAIL_RUN_ID

aj ps
is "$RC" 0 "ps exits 0"
unlike "$OUT" "$ID" "ps without --all hides exited runs"
aj ps --all
like "$OUT" "$ID +op-exited +default +exited " "ps --all shows the exited run: id, name, profile, state" || op_diag
aj ps --all --json
is "$(jq -r --arg id "$ID" '.runs[] | select(.id == $id) | .state' <<<"$OUT")" exited "ps --json: state exited"
is "$(jq -r --arg id "$ID" '.runs[] | select(.id == $id) | .live' <<<"$OUT")" false "ps --json: not live"
is "$(jq -r '.runs | length' <<<"$OUT")" 1 "ps --json is one document with every run"

aj inspect "$ID" --json
is "$RC" 0 "inspect --json exits 0" || op_diag
is "$(jq -r .state <<<"$OUT")" exited "inspect: state exited"
is "$(jq -r .processes <<<"$OUT")" null "inspect: no processes for a dead run"
is "$(jq -r '.exit.code' <<<"$OUT")" 0 "inspect: the exit"
is "$(jq -r '[.last_events[].type] | join(",")' <<<"$OUT")" "run.start,run.exit" "inspect: the last events"
aj inspect "${ID:0:6}"
is "$RC" 0 "inspect by id prefix"
like "$OUT" "state +exited" "inspect (text) shows the state"
like "$OUT" "not live" "inspect says a dead run has no processes"
aj inspect op-exited
is "$RC" 0 "inspect by name"
like "$OUT" "run +$ID \\(op-exited\\)" "the name resolves to the run"

aj logs "$ID"
is "$RC" 0 "logs exits 0"
like "$OUT" "^[0-9-]+ [0-9:.]+ +1 run\\.start .*profile=default" "logs: one human line per event (run.start)"
like "$OUT" $'\n''[0-9-]+ [0-9:.]+ +2 run\.exit +reason=exited status=0' "logs: run.exit with its fields"
aj logs "$ID" --json
is "$(jq -c . <<<"$OUT" | wc -l)" "$(wc -l <"$JAIL_RUN_DIR/events.jsonl")" "logs --json prints every raw line"
is "$OUT" "$(cat "$JAIL_RUN_DIR/events.jsonl")" "logs --json is the chain verbatim"
aj logs "$ID" --json --type run.e
is "$(jq -r .type <<<"$OUT")" run.exit "logs --type filters by type prefix"
aj logs "$ID" -f
is "$RC" 0 "logs -f on an exited run prints and returns"

aj freeze "$ID"
is "$RC" 1 "freeze on an exited run fails"
like "$ERR" "not live" "freeze says the run is not live"
aj kill "$ID" --json
is "$RC" 1 "kill on an exited run fails"
is "$(jq -r .ok <<<"$OUT")" false "kill --json still prints one document"

# ------------------------------------------------------------------ lookup errors and usage
aj inspect nosuchrun
is "$RC" 1 "an unknown run: exit 1"
like "$ERR" "no run matches 'nosuchrun'" "an unknown run is named in the error"
aj inspect
is "$RC" 2 "inspect without RUN: usage error"
aj ps --bogus
is "$RC" 2 "an unknown option: usage error"
aj thaw "$ID" --raise tokens
is "$RC" 2 "--raise without '=': usage error"
aj quarantine frobnicate
is "$RC" 2 "an unknown quarantine subcommand: usage error"
aj inspect ../../etc
is "$RC" 1 "a path is not a RUN"

# Two runs whose ids share a prefix (records copied from the real one).
for fake in abcd00000001 abcd00000002; do
        mkdir "$AGENTJAIL_STATE_DIR/runs/$fake"
        jq --arg id "$fake" '.id = $id | .name = "twin"' "$JAIL_RUN_DIR/run.json" >"$AGENTJAIL_STATE_DIR/runs/$fake/run.json"
        : >"$AGENTJAIL_STATE_DIR/runs/$fake/events.jsonl"
done
aj inspect abcd
is "$RC" 1 "an ambiguous prefix fails"
like "$ERR" "ambiguous.*abcd00000001.*abcd00000002" "the error lists the candidates"
aj inspect twin
is "$RC" 0 "a name shared by several runs picks one"
like "$ERR" "names 2 runs; using the most recent" "and says which on stderr"

# ------------------------------------------------------------------ a lost run
LOST=abcd00000003
mkdir "$AGENTJAIL_STATE_DIR/runs/$LOST"
sh -c 'exit 0' &
dead=$!
wait "$dead"
jq --arg id "$LOST" --argjson pid "$dead" '.id = $id | .name = "lost-one" | .status = "running" | .state = "running"
        | .supervisor_pid = $pid | .exit = null | .ended = null' "$JAIL_RUN_DIR/run.json" >"$AGENTJAIL_STATE_DIR/runs/$LOST/run.json"
aj ps --all --json
is "$(jq -r --arg id "$LOST" '.runs[] | select(.id == $id) | .state' <<<"$OUT")" lost \
        "running in run.json, supervisor gone, no socket: lost"
aj ps
unlike "$OUT" "$LOST" "ps without --all hides lost runs"

# ------------------------------------------------------------------ quarantine of a dead run
Q=abcd00000004
mkdir "$AGENTJAIL_STATE_DIR/runs/$Q"
jq --arg id "$Q" '.id = $id | .name = "breached" | .state = "quarantined"
        | .quarantine = {"since": "2026-01-01T00:00:00Z", "cap": "tokens", "limit": 5000, "value": 5100, "released": false}' \
        "$JAIL_RUN_DIR/run.json" >"$AGENTJAIL_STATE_DIR/runs/$Q/run.json"
cp "$JAIL_RUN_DIR/events.jsonl" "$AGENTJAIL_STATE_DIR/runs/$Q/"
jq -n --arg id "$Q" '{run: $id, cap: "tokens", limit: 5000, value: 5100, action: "freeze",
        request: {op: "tokens"}, last_events: [{seq: 1, ts: "2026-01-01T00:00:00.000000000Z", type: "cap.breach", cap: "tokens"}]}' \
        >"$AGENTJAIL_STATE_DIR/runs/$Q/incident.json"

aj ps
like "$OUT" "$Q +breached .* quarantined " "ps without --all shows quarantined runs"
aj quarantine list
is "$RC" 0 "quarantine list exits 0"
like "$OUT" "$Q +breached +quarantined +tokens" "quarantine list shows the run and its cap"
aj quarantine
like "$OUT" "$Q" "quarantine alone lists"
aj quarantine list --json
is "$(jq -r '[.runs[].id] | join(",")' <<<"$OUT")" "$Q" "quarantine list --json: only the quarantined run"
aj quarantine show "$Q"
is "$RC" 0 "quarantine show exits 0"
like "$OUT" "cap +tokens: value 5100, limit 5000" "quarantine show: cap, value, limit"
like "$OUT" "cap\\.breach" "quarantine show: the incident's last events"
aj quarantine show "$Q" --json
is "$(jq -r .value <<<"$OUT")" 5100 "quarantine show --json is incident.json"
aj quarantine show "$ID"
is "$RC" 1 "quarantine show on a run without an incident fails"
aj quarantine release "$Q"
is "$RC" 0 "quarantine release of a dead run exits 0" || op_diag
is "$(jq -r .quarantine.released "$AGENTJAIL_STATE_DIR/runs/$Q/run.json")" true "run.json: released"
is "$(jq -r .state "$AGENTJAIL_STATE_DIR/runs/$Q/run.json")" exited "run.json: state back to exited"
is "$(tail -n1 "$AGENTJAIL_STATE_DIR/runs/$Q/events.jsonl" | jq -r '"\(.type) \(.seq)"')" "quarantine.release 3" \
        "a quarantine.release event continues the chain"
aj quarantine list --json
is "$(jq -r '.runs | length' <<<"$OUT")" 0 "a released run leaves the quarantine list"
aj quarantine release "$Q"
is "$RC" 1 "releasing twice fails"
like "$ERR" "not quarantined" "and says why"

aj quarantine purge "$Q"
is "$RC" 0 "purge of a dead run exits 0" || op_diag
ok "the run directory is gone" test ! -e "$AGENTJAIL_STATE_DIR/runs/$Q"
ln -s "$TEST_TMP/workspace" "$AGENTJAIL_STATE_DIR/runs/abcd00000005"
aj quarantine purge abcd00000005
is "$RC" 1 "purge refuses a symlinked run dir"
ok "the symlink's target is untouched" test -e "$WORKSPACE/probe"
rm -f "$AGENTJAIL_STATE_DIR/runs/abcd00000005"

# ------------------------------------------------------------------ a live run
start_jail_bg --name op-live -- ./probe sleep 60
LIVE_DIR=$(wait_run_dir 10)
LIVE=${LIVE_DIR##*/}
if ! wait_sock "$LIVE"; then
        fail "the live run has a control socket" "$(cat "$TEST_TMP/bg.err")"
        done_testing
fi
pass "the live run has a control socket"
is "$(stat -c %a "$AGENTJAIL_RUNTIME_DIR/$LIVE/control.sock")" 600 "the control socket is mode 0600"

aj ps
like "$OUT" "$LIVE +op-live +default +running " "ps shows the live run as running" || op_diag
aj inspect op-live --json
is "$(jq -r .live <<<"$OUT")" true "inspect: live"
like "$(jq -r '.processes[].cmd' <<<"$OUT")" "probe sleep 60" "inspect lists the jail's processes" || op_diag
aj inspect op-live
like "$OUT" "PID +STATE +CPU +RSS +CMD" "inspect (text) has a process table"

aj freeze "$LIVE"
is "$RC" 0 "freeze a live run" || op_diag
like "$OUT" "frozen" "freeze says so"
aj inspect "$LIVE" --json
is "$(jq -r .state <<<"$OUT")" frozen "inspect: frozen"
CG=$(cgroup_v2_dir "$LIVE")
if [[ -f "$CG/cgroup.events" ]]; then
        like "$(cat "$CG/cgroup.events")" "frozen 1" "the cgroup is frozen"
fi
aj thaw "$LIVE" --raise bogus=1
is "$RC" 1 "thaw with an unknown cap is refused"
like "$ERR" "refused: .*bogus" "the refusal names the cap"
aj thaw "$LIVE" --json
is "$RC" 0 "thaw a frozen run" || op_diag
is "$(jq -r '"\(.ok) \(.op) \(.run)"' <<<"$OUT")" "true thaw $LIVE" "thaw --json: one document"
aj inspect "$LIVE" --json
is "$(jq -r .state <<<"$OUT")" running "inspect: running again"

# Another uid may not control the run.
if command -v setpriv >/dev/null; then
        setpriv --reuid=65534 --regid=65534 --clear-groups env AGENTJAIL_STATE_DIR="$AGENTJAIL_STATE_DIR" \
                AGENTJAIL_RUNTIME_DIR="$AGENTJAIL_RUNTIME_DIR" "$AJ" freeze "$LIVE" >/dev/null 2>&1
        is "$?" 1 "another uid cannot freeze the run"
        aj inspect "$LIVE" --json
        is "$(jq -r .state <<<"$OUT")" running "and it was not frozen"
fi

# logs -f follows until the run exits: start it, kill the run, it must end by itself.
timeout -k 5 20 "$AJ" logs "$LIVE" -f >"$TEST_TMP/follow.out" 2>&1 &
FOLLOW=$!
BG_PIDS+=("$FOLLOW")
wait_for_output "$TEST_TMP/follow.out" "run\\.start" 5
aj kill "$LIVE"
is "$RC" 0 "kill a live run" || op_diag
wait_exit "$BG_PID" 15
isnt "$WAIT_RC" 124 "the killed run ends"
wait_exit "$FOLLOW" 15
is "$WAIT_RC" 0 "logs -f ends when the run exits"
like "$(cat "$TEST_TMP/follow.out")" "thaw.*"$'\n'".*kill.*"$'\n'".*run\\.exit" "logs -f printed the events up to run.exit"
aj ps --all --json
is "$(jq -r --arg id "$LIVE" '.runs[] | select(.id == $id) | .state' <<<"$OUT")" exited "ps: the killed run is exited"
aj freeze "$LIVE"
is "$RC" 1 "freeze after the end: not live"

# ------------------------------------------------------------------ pending calls
# An allowed tool call is pending until its tool_result, which may come from another
# process (each `agentjail meter` is its own connection).
start_jail_bg --name op-pending -- /bin/sh -c '
        agentjail meter tool crm.update --id c-77 --args "{\"id\": 1}" >/dev/null &&
        agentjail meter tool search --id c-78 >/dev/null && echo called >ready && sleep 2 &&
        agentjail meter result c-77 --status ok >/dev/null && echo settled >ready2 && sleep 60'
PD_DIR=$(wait_run_dir 10)
PD=${PD_DIR##*/}
if wait_sock "$PD" && wait_for_output "$WORKSPACE/ready" called 10; then
        aj inspect op-pending --json
        is "$(jq -r '[.pending[] | "\(.["gen_ai.tool.call.id"]) \(.["gen_ai.tool.name"]) \(.state)"] | join(",")' <<<"$OUT")" \
                "c-77 crm.update running,c-78 search running" "inspect: both allowed calls pending, oldest first" || op_diag
        is "$(jq -r '.pending[0].arguments_sha256 | length' <<<"$OUT")" 64 "inspect: a pending call's arguments digest"
        aj inspect op-pending
        like "$OUT" "c-77 +crm.update +[0-9.]+s " "inspect (text) lists the pending calls" || op_diag
        if wait_for_output "$WORKSPACE/ready2" settled 10; then
                aj inspect op-pending --json
                is "$(jq -r '[.pending[]["gen_ai.tool.call.id"]] | join(",")' <<<"$OUT")" c-78 \
                        "inspect: a call with its tool_result is no longer pending"
        else
                fail "the agent reported the result" "$(cat "$TEST_TMP/bg.err")"
        fi
else
        fail "the agent made its tool calls" "$(cat "$TEST_TMP/bg.err" "$PD_DIR/events.jsonl" 2>/dev/null)"
fi
aj kill "$PD"
wait_exit "$BG_PID" 15
isnt "$WAIT_RC" 124 "the pending-calls run ends when killed"
rm -f "$WORKSPACE/ready" "$WORKSPACE/ready2"

# ------------------------------------------------------------------ purge kills a live run
start_jail_bg --name op-purge -- ./probe sleep 60
P_DIR=$(wait_run_dir 10)
P_ID=${P_DIR##*/}
wait_sock "$P_ID"
aj quarantine purge "$P_ID"
is "$RC" 0 "purge of a live run kills it and removes it" || op_diag
wait_exit "$BG_PID" 15
isnt "$WAIT_RC" 124 "the purged run's supervisor ended"
ok "the purged run's directory is gone" test ! -e "$P_DIR"

# ------------------------------------------------------------------ a live breach: quarantine, release
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$WORKSPACE/client.py"
BP=$(write_profile capped '{"extends": "default", "meters": {"tokens": 2000}}')
start_jail_bg -p "$BP" --name op-breach -- /bin/sh -c 'python3 ./client.py tokens 10 500 500 >/dev/null; echo resumed'
B_DIR=$(wait_run_dir 10)
B_ID=${B_DIR##*/}
if wait_for_output "$B_DIR/events.jsonl" '"type":"freeze"' 15; then
        pass "the tokens breach froze the run"
        aj ps
        like "$OUT" "$B_ID +op-breach +capped +quarantined .*tokens [0-9]+/2000" "ps: quarantined, with tokens used/cap" || op_diag
        aj quarantine list --json
        is "$(jq -r --arg id "$B_ID" '.runs[] | select(.id == $id) | .cap' <<<"$OUT")" tokens \
                "quarantine list: the live quarantined run and its cap"
        wait_for_output "$B_DIR/incident.json" '"cap"' 5
        aj quarantine show op-breach
        like "$OUT" "cap +tokens: value [0-9.]+, limit 2000" "quarantine show on the live run" || op_diag
        aj inspect op-breach --json
        is "$(jq -r .quarantine.cap <<<"$OUT")" tokens "inspect: the quarantine summary"
        is "$(jq -r .incident.cap <<<"$OUT")" tokens "inspect: the incident summary"
        aj quarantine release op-breach
        is "$RC" 0 "quarantine release of a live run (through the control socket)" || op_diag
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 0 "the released run carried on and finished"
        like "$(cat "$TEST_TMP/bg.out")" resumed "the agent resumed after the release"
        aj quarantine list --json
        is "$(jq -r --arg id "$B_ID" '[.runs[] | select(.id == $id)] | length' <<<"$OUT")" 0 \
                "a released run leaves the quarantine list"
else
        fail "the tokens breach froze the run" "$(cat "$TEST_TMP/bg.err" "$B_DIR/events.jsonl" 2>/dev/null)"
fi

done_testing
