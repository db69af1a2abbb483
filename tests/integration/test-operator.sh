#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The operator's commands: ps, inspect, logs, freeze/thaw/kill over the control socket,
# quarantine list/show/release/purge, on live, exited, lost and quarantined runs; their
# exit statuses (0 ok, 1 failure, 2 usage) and --json documents.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

AJ=$AGENTJAIL

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

# The chain is tamper-evident: each event's prev is the sha256 of the line before, and
# run.json holds the count and the last hash at the end of the run.
aj logs "$ID" --verify
is "$RC" 0 "logs --verify: an untouched chain is intact" || op_diag
like "$OUT" "intact: 2 events, the last sha256 $(jq -r .events.last_sha256 "$JAIL_RUN_DIR/run.json")" \
        "logs --verify names the count and the last hash, as run.json does"
cp "$JAIL_RUN_DIR/events.jsonl" "$TEST_TMP/events.bak"
sed -i '1s/"profile":"default"/"profile":"strict"/' "$JAIL_RUN_DIR/events.jsonl"
aj logs "$ID" --verify --json
is "$RC" 1 "logs --verify: an edited event is found"
is "$(jq -r '"\(.ok) \(.bad_seq)"' <<<"$OUT")" "false 2" "at the event after it, whose prev no longer fits"
cp "$TEST_TMP/events.bak" "$JAIL_RUN_DIR/events.jsonl"

# The chain as OpenTelemetry logs (OTLP/JSON), for a collector.
aj logs "$ID" --otlp
is "$RC" 0 "logs --otlp exits 0" || op_diag
is "$(jq -r '.resourceLogs[0].resource.attributes[] | select(.key == "agentjail.run.id") | .value.stringValue' <<<"$OUT")" \
        "$ID" "logs --otlp: the resource names the run"
is "$(jq -r '[.resourceLogs[0].scopeLogs[0].logRecords[].eventName] | join(",")' <<<"$OUT")" "run.start,run.exit" \
        "logs --otlp: one log record per event, in order"
is "$(jq -r '.resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano | length' <<<"$OUT")" 19 \
        "logs --otlp: times in nanoseconds since the epoch"
aj logs "$ID" --otlp --type run.exit
is "$(jq -r '[.resourceLogs[0].scopeLogs[0].logRecords[] | .attributes[] | select(.key == "reason") | .value.stringValue] | join(",")' <<<"$OUT")" \
        exited "logs --otlp --type: only the matching events, their fields as attributes"
sed -i '$d' "$JAIL_RUN_DIR/events.jsonl"
aj logs "$ID" --verify
is "$RC" 1 "logs --verify: a removed last event is found (run.json's count)"
like "$ERR" "events were removed" "and says so"
cp "$TEST_TMP/events.bak" "$JAIL_RUN_DIR/events.jsonl"
# An event forged onto the end, chained correctly (prev = the last line's sha256), is
# past the end run.json recorded: not intact either.
last=$(tail -n 1 "$JAIL_RUN_DIR/events.jsonl")
printf '{"seq":3,"ts":"2030-01-01T00:00:00.000000000Z","run":"%s","type":"quarantine.release","prev":"%s","by":"operator","uid":0,"live":false}\n' \
        "$ID" "$(printf '%s' "$last" | sha256sum | cut -d' ' -f1)" >>"$JAIL_RUN_DIR/events.jsonl"
aj logs "$ID" --verify --json
is "$RC" 1 "logs --verify: an event appended after the run's end is found"
is "$(jq -r '"\(.verdict) \(.bad_seq)"' <<<"$OUT")" "broken 3" "at the appended event"
like "$ERR" "added after it was closed" "and says so"
cp "$TEST_TMP/events.bak" "$JAIL_RUN_DIR/events.jsonl"

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
is "$(jq -r '"\(.stop) \(.stop_cause)"' <<<"$OUT")" "1 operator" "inspect: the stop's number and cause"
aj ps
like "$OUT" "$LIVE .*\\[stop 1: operator\\]" "ps shows the stop"
aj thaw "$LIVE" --raise tokens=+10
is "$RC" 1 "a raise naming no stop, on an operator's freeze, is refused"
like "$ERR" "at stop 1 \\(an operator's freeze\\), which this raise does not answer.*--stop 1" "and says which stop to name"
aj thaw "$LIVE" --stop 2
is "$RC" 1 "a thaw naming another stop is refused"
like "$ERR" "the run has had no stop 2: it is frozen at stop 1" "and says the stop it is at"
aj thaw "$LIVE" --stop 1 --raise bogus=1
is "$RC" 1 "thaw with an unknown cap is refused"
like "$ERR" "refused: .*bogus" "the refusal names the cap"
aj thaw "$LIVE" --stop 1 --json
is "$RC" 0 "thaw a frozen run" || op_diag
is "$(jq -r '"\(.ok) \(.op) \(.run)"' <<<"$OUT")" "true thaw $LIVE" "thaw --json: one document"
aj inspect "$LIVE" --json
is "$(jq -r .state <<<"$OUT")" running "inspect: running again"

# Another uid may not control the run.
if command -v setpriv >/dev/null; then
        setpriv --reuid=65534 --regid=65534 --clear-groups env AGENTJAIL_STATE_DIR="$AGENTJAIL_STATE_DIR" \
                AGENTJAIL_RUNTIME_DIR="$AGENTJAIL_RUNTIME_DIR" "$(agentjail_for_others)" freeze "$LIVE" >/dev/null 2>&1
        is "$?" 1 "another uid cannot freeze the run"
        aj inspect "$LIVE" --json
        is "$(jq -r .state <<<"$OUT")" running "and it was not frozen"
fi

# A process in the jail's user namespace with the owner's uid may not control the run: a
# rootless agent that reached its own control socket thawed, or killed, its run. nsenter
# --preserve-credentials keeps our uid (root, the run's owner) and enters only the user
# namespace, so the socket's host path is still reachable.
JPID=$(find_jailed "$BG_PID" probe 5)
if [[ -n "$JPID" ]] && command -v nsenter >/dev/null; then
        isnt "$(readlink "/proc/$JPID/ns/user")" "$(readlink /proc/self/ns/user)" "the jail has a user namespace of its own"
        timeout -k 5 30 nsenter --user --target "$JPID" --preserve-credentials -- "$AJ" freeze "$LIVE" \
                >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
        RC=$?; ERR=$(cat "$TEST_TMP/op.err")
        is "$RC" 1 "freeze from inside the jail's user namespace, with the owner's uid: refused" || op_diag
        like "$ERR" "another user namespace" "the refusal says why"
        aj inspect "$LIVE" --json
        is "$RC" 0 "inspect from the host still works" || op_diag
        is "$(jq -r .state <<<"$OUT")" running "and the run was not frozen"
else
        fail "a process in the jail's user namespace can be started" "jailed pid '${JPID}', nsenter: $(command -v nsenter)"
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
# process (each `agentjail meter` is its own connection). The result comes when the test
# says so (the file go), not after a fixed time: a slow machine took longer than 2 s for
# the two inspects.
start_jail_bg --name op-pending -- /bin/sh -c '
        agentjail meter tool crm.update --id c-77 --args "{\"id\": 1}" >/dev/null &&
        agentjail meter tool search --id c-78 >/dev/null && echo called >ready &&
        i=0 && while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
        agentjail meter result c-77 --status ok >/dev/null && echo settled >ready2 && sleep 60'
PD_DIR=$(wait_run_dir 10)
PD=${PD_DIR##*/}
if wait_sock "$PD" && wait_for_output "$WORKSPACE/ready" called 10; then
        aj inspect op-pending --json
        is "$(jq -r '[.pending[] | "\(.["gen_ai.tool.call.id"]) \(.["gen_ai.tool.name"]) \(.state)"] | join(",")' <<<"$OUT")" \
                "c-77 crm.update running,c-78 search running" "inspect: both allowed calls pending, oldest first" || op_diag
        is "$(jq -r '.pending[0].arguments_sha256 | length' <<<"$OUT")" 64 "inspect: a pending call's arguments digest"
        aj inspect op-pending
        like "$OUT" "c-77 +crm.update +running +[0-9.]+s " "inspect (text) lists the pending calls and their state" || op_diag
        echo >"$WORKSPACE/go"
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
rm -f "$WORKSPACE/ready" "$WORKSPACE/ready2" "$WORKSPACE/go"

# ------------------------------------------------------------------ rollback: the journal
run_jail --name op-rollback -- /bin/sh -c '
        agentjail meter tool crm.update --id r-1 --args "{\"id\": 42, \"stage\": \"won\"}" >/dev/null &&
        agentjail meter result r-1 --status ok --undo "{\"tool\": \"crm.update\", \"arguments\": {\"id\": 42, \"stage\": \"open\"}}" >/dev/null &&
        agentjail meter tool email.send --id r-2 >/dev/null && agentjail meter result r-2 --status ok >/dev/null &&
        agentjail meter tool search --id r-3 >/dev/null && agentjail meter result r-3 --status error >/dev/null'
is "$JAIL_RC" 0 "a run that reports results with and without undo records" || jail_diag
aj rollback op-rollback
is "$RC" 0 "rollback exits 0" || op_diag
like "$OUT" "workspace: written in place \(mode rw\)" "rollback: an rw workspace has no copy to go back to"
like "$OUT" "3; 1 with an undo record, 1 succeeded without one" "rollback: the counts"
like "$OUT" $'r-3 .*\n  r-2 .*\n  r-1 ' "rollback: newest first"
like "$OUT" 'r-1 +crm.update +ok +\{"tool":"crm.update","arguments":\{"id":42,"stage":"open"\}\}' \
        "rollback: the compensating action of a call"
like "$OUT" "r-2 +email.send +ok +\(no undo record: reverse it by hand\)" "rollback: a call nobody can undo automatically"
aj rollback op-rollback --json
is "$(jq -r '"\(.with_undo) \(.ok_without_undo) \(.calls[2]["gen_ai.tool.call.arguments"].stage)"' <<<"$OUT")" "1 1 won" \
        "rollback --json: the counts and each call's arguments"

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

# ------------------------------------------------------------------ a starting run is not purged
# A run has no run.json and no control socket until it is about to let its command run:
# nothing the operators' checks read says that it lives, and `quarantine purge` removed the
# directory of a run still starting, which then ran on without records, found by no verb.
# Its supervisor holds the directory's life lock from its making: here a live run, with its
# run.json, control socket and live.lock hidden (before live.lock is made, only the life lock
# says the run is there), stands for one in that window.
start_jail_bg --name op-starting -- ./probe sleep 60
S_DIR=$(wait_run_dir 10)
S_ID=${S_DIR##*/}
S_SOCK=$AGENTJAIL_RUNTIME_DIR/$S_ID/control.sock
if [[ -n "$S_ID" ]] && wait_sock "$S_ID"; then
        mv "$S_DIR/run.json" "$S_DIR/run.json.hidden" && mv "$S_SOCK" "$S_SOCK.hidden" &&
                mv "$S_DIR/live.lock" "$S_DIR/live.lock.hidden"
        aj ps -a
        like "$OUT" "$S_ID +.* unknown" "the run reads as one whose state is unknown, as while it starts" || op_diag
        aj quarantine purge "$S_ID"
        is "$RC" 1 "purge refuses the directory of a run whose supervisor holds it" || op_diag
        like "$ERR" "in use: .* its supervisor or watchdog is still there" "and says why"
        ok "the run's directory is still there" test -f "$S_DIR/events.jsonl"
        mv "$S_DIR/run.json.hidden" "$S_DIR/run.json" && mv "$S_SOCK.hidden" "$S_SOCK" &&
                mv "$S_DIR/live.lock.hidden" "$S_DIR/live.lock"
        aj kill "$S_ID"
        is "$RC" 0 "the run is still the operators' to kill" || op_diag
        wait_exit "$BG_PID" 15
        isnt "$WAIT_RC" 124 "it ends"
        is "$(jq -r .status "$S_DIR/run.json")" exited "and its own records say so"
        aj quarantine purge "$S_ID"
        is "$RC" 0 "once it has ended, purge removes it" || op_diag
        ok "the ended run's directory is gone" test ! -e "$S_DIR"
else
        fail "the run to hide starts" "$(cat "$TEST_TMP/bg.err")"
fi

# ------------------------------------------------------------------ a kill of a starting run waits for it
# Until its supervisor serves the control socket (its first ~16 ms) a run's live.lock is held
# but `kill` found no socket: "not live", and the run went on. It waits for the socket (up to
# 10 s) while the run lives and its record does not say it ended. Here a live run's run.json
# and socket are hidden (live.lock kept), as in that window, and brought back half a second
# into the kill.
start_jail_bg --name op-kill-starting -- ./probe sleep 60
K_DIR=$(wait_run_dir 10)
K_ID=${K_DIR##*/}
K_SOCK=$AGENTJAIL_RUNTIME_DIR/$K_ID/control.sock
if [[ -n "$K_ID" ]] && wait_sock "$K_ID"; then
        mv "$K_DIR/run.json" "$K_DIR/run.json.hidden" && mv "$K_SOCK" "$K_SOCK.hidden"
        "$AJ" kill "$K_ID" >"$TEST_TMP/kill-starting.out" 2>&1 &
        K_KILL=$!
        sleep 0.5
        mv "$K_DIR/run.json.hidden" "$K_DIR/run.json" && mv "$K_SOCK.hidden" "$K_SOCK"
        wait "$K_KILL"
        is "$?" 0 "kill of a starting run waits for its control socket" || diag "$(cat "$TEST_TMP/kill-starting.out")"
        like "$(cat "$TEST_TMP/kill-starting.out")" "run $K_ID killed" "and kills it"
        wait_exit "$BG_PID" 15
        is "$WAIT_RC" 123 "the run ends as killed"
else
        fail "the run to kill while starting starts" "$(cat "$TEST_TMP/bg.err")"
fi

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

# ------------------------------------------------------------------ approvals
# refund.* calls are held until an operator approves or denies them, or for AP_T seconds (3,
# times AGENTJAIL_TEST_TIME_SCALE: the operator's steps below must fit in it). The agent
# makes its calls one after the other; each writes ID.out (what `meter tool` printed)
# and then ID.rc (its exit status) in ap/ of the workspace.
# The owner's alert command gets each approval request on stdin (the last one is kept).
cat >"$TEST_TMP/approval-alert.sh" <<EOF
#!/bin/sh
cat >"$TEST_TMP/approval-alert.tmp" && echo "\$AGENTJAIL_ALERT" >>"$TEST_TMP/approval-alert.kind" &&
        mv "$TEST_TMP/approval-alert.tmp" "$TEST_TMP/approval-alert.json"
EOF
chmod 0755 "$TEST_TMP/approval-alert.sh"
AP_T=$((3 * TEST_TIME_SCALE))
AP_PROFILE=$(write_profile approvals '{"extends": "default", "tools": {"deny": ["refund.forbidden"]},
        "approvals": {"tools": ["refund.*"], "timeout": "'"$AP_T"'s"},
        "alert": {"exec": ["'"$TEST_TMP/approval-alert.sh"'"], "timeout": "5s"}}')
AP=$WORKSPACE/ap
rm -rf "$AP"
start_jail_bg -p "$AP_PROFILE" --name op-approvals -- /bin/sh -c '
        mkdir ap && cd ap || exit 1
        call() { id=$1; shift; agentjail meter tool "$@" --id "$id" >"$id.out" 2>&1; echo $? >"$id.rc"; }
        call a-0 lookup
        call a-1 refund.issue --args "{\"order\": 42, \"amount\": 5}"
        call a-2 refund.void --args "{\"order\": 43}"
        agentjail meter result a-1 --status ok >/dev/null && echo settled >a-1.result
        call a-3 refund.late
        call a-4 refund.forbidden
        timeout 1 agentjail meter tool refund.cancel --id a-5 >a-5.out 2>&1; echo $? >a-5.rc
        sleep 60'
AP_DIR=$(wait_run_dir 10)
AP_ID=${AP_DIR##*/}

# ap_call ID SECONDS: waits for the agent's call ID to be answered; sets CALL_RC, CALL_OUT.
ap_call() {
        CALL_RC=none
        CALL_OUT=
        wait_for_output "$AP/$1.rc" '^[0-9]+$' "$2" || return 1
        CALL_RC=$(cat "$AP/$1.rc")
        CALL_OUT=$(cat "$AP/$1.out")
}

# ap_held ID: the broker recorded that it holds call ID.
ap_held() {
        wait_for_output "$AP_DIR/events.jsonl" "\"type\":\"approval\\.requested\".*\"gen_ai\\.tool\\.call\\.id\":\"$1\"" 10
}

# ap_state ID: the call's state in inspect's pending calls, or "none".
ap_state() {
        aj inspect "$AP_ID" --json
        jq -r --arg c "$1" '[.pending[]? | select(.["gen_ai.tool.call.id"] == $c) | .state] | first // "none"' <<<"$OUT"
}

# ap_chain ID: the call's request, approval and verdict events in order, with the decision
# or verdict (`tool.request,approval.requested,approval=approved,tool.verdict=allow`).
ap_chain() {
        jq -r --arg c "$1" 'select(.["gen_ai.tool.call.id"] == $c and (.type | test("^(tool\\.(request|verdict)|approval)")))
                | .type + (if .decision then "=" + .decision elif .verdict then "=" + .verdict else "" end)' \
                "$AP_DIR/events.jsonl" 2>/dev/null | paste -sd, -
}

if [[ -n "$AP_ID" ]] && wait_sock "$AP_ID" && ap_call a-0 10; then
        is "$CALL_RC" 0 "approvals: a tool no pattern matches is allowed"
        like "$CALL_OUT" "^allowed: lookup \\(" "it is answered by the broker, nobody approved it"
        is "$(ap_chain a-0)" "tool.request,tool.verdict=allow" "it was never held (no approval.requested)"

        # Held, then approved with the digest inspect showed.
        ok "a refund.* call is held for approval" ap_held a-1
        ok "the held call has no answer yet" test ! -e "$AP/a-1.rc"
        if wait_for_output "$TEST_TMP/approval-alert.json" '"a-1"' 10; then
                AL=$(cat "$TEST_TMP/approval-alert.json")
                is "$(jq -r '"\(.kind) \(.run) \(.call["gen_ai.tool.call.id"]) \(.call["gen_ai.tool.name"])"' <<<"$AL")" \
                        "approval $AP_ID a-1 refund.issue" "the owner's alert command gets the approval request"
                is "$(jq -c '.call["gen_ai.tool.call.arguments"]' <<<"$AL")" '{"order":42,"amount":5}' \
                        "with the call's arguments"
                like "$(jq -r .approve <<<"$AL")" "^agentjail approve $AP_ID 'a-1' --digest [0-9a-f]{64}\$" \
                        "and the command that approves exactly this call"
                is "$(head -n 1 "$TEST_TMP/approval-alert.kind")" approval "AGENTJAIL_ALERT says what the alert is about"
        else
                fail "the owner's alert command gets the approval request" "$(cat "$AP_DIR/alert.log" 2>/dev/null)"
        fi
        aj ps
        like "$OUT" "$AP_ID +op-approvals .*\[1 call awaiting approval\]" "ps flags the run's held call" || op_diag
        aj ps --json
        is "$(jq -r --arg id "$AP_ID" '.runs[] | select(.id == $id) | .awaiting_approval' <<<"$OUT")" 1 \
                "ps --json: awaiting_approval"
        aj inspect "$AP_ID" --json
        A1='.pending[]? | select(.["gen_ai.tool.call.id"] == "a-1")'
        is "$(jq -r "$A1 | \"\\(.[\"gen_ai.tool.name\"]) \\(.state)\"" <<<"$OUT")" "refund.issue awaiting_approval" \
                "inspect: the held call is pending, awaiting_approval" || op_diag
        DIGEST=$(jq -r "$A1 | .arguments_sha256" <<<"$OUT")
        like "$DIGEST" '^[0-9a-f]{64}$' "inspect: the held call's arguments_sha256"
        is "$(jq -r "$A1 | .timeout_in_s > 0 and .timeout_in_s <= $AP_T" <<<"$OUT")" true "inspect: seconds left until the timeout"
        is "$(events_of approval.requested "$AP_DIR" | jq -r 'select(.["gen_ai.tool.call.id"] == "a-1") | "\(.arguments_sha256) \(.timeout)"')" \
                "$DIGEST ${AP_T}s" "approval.requested: the call's digest and the timeout"
        aj inspect "$AP_ID"
        like "$OUT" "CALL ID +TOOL +STATE +AGE" "inspect (text): pending calls have a STATE column" || op_diag
        like "$OUT" "a-1 +refund\\.issue +awaiting_approval +[0-9.]+s .*denied in [0-9]+s" \
                "inspect (text): the held call, and when it will be denied"
        like "$(grep -A1 '^  a-1 ' <<<"$OUT" | tail -n 1)" "^ +arguments sha256 $DIGEST\$" \
                "inspect (text): the held call's arguments_sha256 on the next line, for approve --digest"

        aj approve "$AP_ID" nosuchcall
        is "$RC" 1 "approve of a call that is not held: exit 1"
        like "$ERR" 'refused: no call "nosuchcall" is awaiting approval \(ENOENT\)' "the refusal says so (ENOENT)"
        aj approve "$AP_ID" a-1 --digest 1234
        is "$RC" 2 "approve --digest that is not a sha256: usage error"

        if command -v setpriv >/dev/null; then
                setpriv --reuid=65534 --regid=65534 --clear-groups env AGENTJAIL_STATE_DIR="$AGENTJAIL_STATE_DIR" \
                        AGENTJAIL_RUNTIME_DIR="$AGENTJAIL_RUNTIME_DIR" "$(agentjail_for_others)" approve "$AP_ID" a-1 >/dev/null 2>&1
                is "$?" 1 "another uid cannot approve"
        fi
        # The supervisor's own check, past the socket's and its directory's modes: open both
        # to everyone, connect as uid 65534.
        SOCK=$AGENTJAIL_RUNTIME_DIR/$AP_ID/control.sock
        if command -v python3 >/dev/null && chmod 0711 "${SOCK%/*}" && chmod 0666 "$SOCK"; then
                REPLY=$(timeout -k 2 5 python3 -c '
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
try:
    s.sendall(b"{\"op\": \"approve\", \"call\": \"a-1\"}\n")
except OSError:
    pass
print(s.makefile().readline().strip())' "$SOCK" 2>&1)
                chmod 0600 "$SOCK"
                chmod 0700 "${SOCK%/*}"
                is "$(jq -r .error.code <<<"$REPLY" 2>/dev/null)" EPERM "another uid's approve over the socket is refused (SO_PEERCRED)" ||
                        diag "reply: $REPLY"
        fi
        is "$(ap_state a-1)" awaiting_approval "the call still awaits approval"

        aj approve "$AP_ID" a-1 --digest "$(printf '0%.0s' {1..64})"
        is "$RC" 1 "approve with another digest is refused"
        like "$ERR" "not the call reviewed \\(ESTALE\\)" "the refusal says it is not the call reviewed (ESTALE)" || op_diag
        is "$(ap_state a-1)" awaiting_approval "a refused approve leaves the call held"
        aj approve "$AP_ID" a-1 --digest "$DIGEST"
        is "$RC" 0 "approve with the digest from inspect" || op_diag
        is "$OUT" "run $AP_ID approved call a-1" "approve says so"
        ap_call a-1 5
        is "$CALL_RC" 0 "the approved call: the agent's meter tool exits 0"
        like "$CALL_OUT" "^allowed: refund\\.issue, approved by root \\(" "the agent is told who approved it"

        # Denied with a reason; the approved call stays pending until its result.
        ok "the next refund.* call is held" ap_held a-2
        aj inspect "$AP_ID" --json
        is "$(jq -r '[.pending[]? | "\(.["gen_ai.tool.call.id"]) \(.state)"] | join(",")' <<<"$OUT")" \
                "a-0 running,a-1 running,a-2 awaiting_approval" \
                "inspect: the approved call is running like a-0, the next one awaiting_approval" || op_diag
        aj deny "$AP_ID" a-1
        like "$RC $ERR" '^1 .*no call "a-1" is awaiting approval \(ENOENT\)' "an approved call cannot be denied any more"
        aj deny "$AP_ID" a-2 --reason "order 43 was refunded already" --json
        is "$RC" 0 "deny with a reason" || op_diag
        is "$(jq -r '"\(.ok) \(.op) \(.run) \(.result["gen_ai.tool.call.id"]) \(.result["gen_ai.tool.name"]) \(.result.decision)"' <<<"$OUT")" \
                "true deny $AP_ID a-2 refund.void denied" "deny --json: the reply, with run and op"
        ap_call a-2 5
        is "$CALL_RC" 1 "the denied call: the agent's meter tool exits 1"
        is "$CALL_OUT" "denied: refund.void: denied by root: order 43 was refunded already" "the agent gets who denied it and why"
        if wait_for_output "$AP/a-1.result" settled 5; then
                is "$(ap_state a-1)" none "inspect: after its tool_result the approved call is no longer pending"
        else
                fail "the agent reported the approved call's result" "$(cat "$AP_DIR/events.jsonl")"
        fi

        # Nobody decides: denied after the profile's AP_T seconds.
        ok "a call nobody decides on is held" ap_held a-3
        ap_call a-3 $((AP_T + 5))
        is "$CALL_RC" 1 "after the timeout the call is denied: exit 1"
        is "$CALL_OUT" "denied: refund.late: no approval within ${AP_T}s" "the agent is told no approval came in time"
        like "$(jq -rs '[.[] | select(.["gen_ai.tool.call.id"] == "a-3" and (.type == "approval.requested" or .type == "approval"))
                | .ts[0:19] + "Z" | fromdateiso8601] | .[1] - .[0] | . >= '"$AP_T"' and . <= '"$((AP_T + 2))" \
                "$AP_DIR/events.jsonl" 2>/dev/null)" '^true$' "the timeout came after the profile's $AP_T s, not before"

        ap_call a-4 5
        is "$CALL_RC" 1 "a call tools.deny matches is denied"
        is "$(ap_chain a-4)" "tool.request,tool.verdict=deny" "at once: tools.deny wins, the call is never held"

        # The caller gives up (timeout 1 kills its meter tool): the held call is cancelled.
        ok "the last refund.* call is held" ap_held a-5
        ap_call a-5 5
        is "$CALL_RC" 124 "the caller gave up waiting"
        wait_for_output "$AP_DIR/events.jsonl" '"decision":"cancelled"' 5
        is "$(ap_chain a-5)" "tool.request,approval.requested,approval=cancelled" \
                "the call is cancelled when its caller's connection closes, with no verdict"
        is "$(ap_state a-5)" none "a cancelled call is no longer pending"
        aj approve "$AP_ID" a-5
        is "$RC" 1 "a cancelled call cannot be approved"

        # The chain: request, approval.requested, the decision, then the verdict.
        is "$(ap_chain a-1)" "tool.request,approval.requested,approval=approved,tool.verdict=allow" \
                "chain: the approved call's events in order"
        is "$(ap_chain a-2)" "tool.request,approval.requested,approval=denied,tool.verdict=deny" \
                "chain: the denied call's events in order"
        is "$(ap_chain a-3)" "tool.request,approval.requested,approval=timeout,tool.verdict=deny" \
                "chain: the timed-out call's events in order"
        aj logs "$AP_ID" --json --type approval
        is "$(jq -r 'select(.type == "approval.requested") | .["gen_ai.tool.call.id"]' <<<"$OUT" | paste -sd, -)" \
                "a-1,a-2,a-3,a-5" "logs --type approval: only the refund.* calls tools.deny let through were held"
        is "$(jq -r 'select(.type == "approval") | "\(.["gen_ai.tool.call.id"])=\(.decision)/\(.by // "-")"' <<<"$OUT" | paste -sd, -)" \
                "a-1=approved/root,a-2=denied/root,a-3=timeout/timeout,a-5=cancelled/-" \
                "logs --type approval: every decision in order, and by whom" || op_diag
        is "$(jq -r 'select(.type == "approval" and .decision == "denied") | .reason' <<<"$OUT")" \
                "order 43 was refunded already" "the approval event records the deny reason"
        is "$(events_of tool.verdict "$AP_DIR" | jq -r 'select(.["gen_ai.tool.call.id"] == "a-2") | .reason')" \
                "denied by root: order 43 was refunded already" "so does the tool.verdict"
else
        fail "the approvals run starts and makes its first call" "$(cat "$TEST_TMP/bg.err" "$AP_DIR/events.jsonl" 2>/dev/null)"
fi
aj kill "$AP_ID"
wait_exit "$BG_PID" 15
isnt "$WAIT_RC" 124 "the approvals run ends when killed"

# A call still held when the command exits is cancelled before run.exit, so the chain
# (and `logs -f`, which stops at run.exit) has it.
run_jail -p "$AP_PROFILE" -- /bin/sh -c 'agentjail meter tool refund.late --id late-1 >/dev/null & sleep 0.5'
is "$JAIL_RC" 0 "a run that exits with a call still held ends normally"
is "$(jq -r '"\(.type)=\(.decision // "")"' "$JAIL_RUN_DIR/events.jsonl" | tail -n 2 | paste -sd, -)" \
        "approval=cancelled,run.exit=" "the held call is cancelled before run.exit"
is "$(events_of approval "$JAIL_RUN_DIR" | jq -r .reason)" "the run ended" "the cancellation says why"


# ------------------------------------------------------------------ the agent's argv in inspect
# A jail process's argv is the agent's bytes: inspect shows it escaped (no ESC, BEL or C1
# control reaches the operator's terminal), and a process whose argv is not UTF-8 is
# listed like any other (its record once failed and the process was left out: a hidden miner).
# raw_controls FILE: does FILE hold ESC, BEL, or the C1 CSI/OSC as UTF-8?
raw_controls() { LC_ALL=C grep -q $'\x1b\|\x07\|\xc2\x9b\|\xc2\x9d' "$1"; }
start_jail_bg --name op-argv -- /bin/sh -c \
        'sh -c "sleep 30" "$(printf "t\033]0;OWNED\007\033[2J\302\233x")" & sh -c "sleep 30" "$(printf "\377-hidden")" & sleep 30'
ARGV_DIR=$(wait_run_dir 10)
ARGV_ID=${ARGV_DIR##*/}
if [[ -n "$ARGV_ID" ]] && wait_sock "$ARGV_ID"; then
        deadline=$((SECONDS + 10))
        while ((SECONDS < deadline)); do
                aj inspect "$ARGV_ID" --json
                [[ "$(jq -r '.processes[].cmd' <<<"$OUT" 2>/dev/null)" == *hidden* ]] && break
                sleep 0.1
        done
        like "$(jq -r '.processes[].cmd' <<<"$OUT")" 'sh -c sleep 30 \\xff-hidden' \
                "inspect --json lists the process whose argv is not UTF-8, escaped" || op_diag
        like "$(jq -r '.processes[].cmd' <<<"$OUT")" 'sh -c sleep 30 t\\x1b\]0;OWNED\\x07\\x1b\[2J\\u009bx' \
                "inspect --json: the argv's controls escaped" || op_diag
        aj inspect "$ARGV_ID"
        is "$RC" 0 "inspect (text) of the run with hostile argv" || op_diag
        ok "inspect (text): no ESC, BEL or C1 control from the agent's argv" eval '! raw_controls "$TEST_TMP/op.out"'
        ok "inspect (text) shows the escaped argv" grep -qF 'sh -c sleep 30 t\x1b]0;OWNED\x07\x1b[2J\u009bx' \
                "$TEST_TMP/op.out"
        ok "inspect (text) lists the non-UTF-8 process" grep -qF 'sh -c sleep 30 \xff-hidden' "$TEST_TMP/op.out"
else
        fail "the hostile-argv run starts" "$(cat "$TEST_TMP/bg.err")"
fi
aj kill "$ARGV_ID"
wait_exit "$BG_PID" 15
isnt "$WAIT_RC" 124 "the hostile-argv run ends when killed"

done_testing
