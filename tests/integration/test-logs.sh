#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Per-run log caps: nothing a jailed agent does fills the host's disk. Output past
# logs.output_bytes still reaches the operator but the log is cut (log.truncated, once);
# events past logs.events_bytes are a breach (cap log_bytes) that freezes and quarantines
# the run, with the chain intact; tool_result/tokens floods are rate limited.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

CLIENT="$WORKSPACE/client.py"
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$CLIENT"

# --- output past the cap: passed through whole, logged up to the cap, one marker
P=$(write_profile outcap '{"extends": "default", "logs": {"output_bytes": "64K"}}')
run_jail -p "$P" -- /bin/sh -c 'i=0; while [ $i -lt 30 ]; do head -c 10000 /dev/zero | tr "\0" o; i=$((i + 1)); done;
        echo small-stderr >&2'
is "$JAIL_RC" 0 "a run flooding stdout exits 0"
is "$(wc -c <"$TEST_TMP/jail.out" | tr -d ' ')" 300000 "the operator gets all 300000 bytes of stdout"
is "$(stat -c %s "$JAIL_RUN_DIR/stdout.log")" 65536 "stdout.log is cut at logs.output_bytes (64K)"
is "$(head -c 65536 "$TEST_TMP/jail.out" | cmp - "$JAIL_RUN_DIR/stdout.log" && echo same)" same \
        "stdout.log holds the first 64K of the output"
is "$(cat "$JAIL_RUN_DIR/stderr.log")" small-stderr "stderr.log, under its cap, is whole"
T=$(events_of log.truncated)
is "$(count_lines "$T")" 1 "one log.truncated event, however many writes passed the cap"
is "$(jq -r '"\(.stream) \(.limit)"' <<<"$T" 2>/dev/null)" "stdout 65536" "log.truncated names the stream and the cap"

# --- a reader that does not keep up with agentjail's output: the jail waits, supervision
# does not (the wall clock, kill and breaches were held until the reader read)
P=$(write_profile wall2 '{"extends": "default", "limits": {"wall": "2s", "wall_grace": "1s"}}')
before=$(list_run_dirs)
t0=$(date +%s%N)
timeout -k 5 30 "$AGENTJAIL" run --no-tty -p "$P" -- /bin/sh -c 'yes' </dev/null 2>"$TEST_TMP/slow.err" |
        (sleep 7; head -c 100 >/dev/null)
RUN_DIR=$(new_run_dir "$before")
collect_run_ids
ev_ns() { date -d "$(jq -r "select(.type == \"$1\") | .ts" "$RUN_DIR/events.jsonl" | head -1)" +%s%N 2>/dev/null; }
start_ns=$(ev_ns run.start) wall_ns=$(ev_ns wall.limit)
if [[ -n $start_ns && -n $wall_ns ]]; then
        cmp_num $(((wall_ns - start_ns) / 1000000)) -lt 4500 \
                "a stalled reader of the output: wall.limit still fires on time ($(((wall_ns - start_ns) / 1000000)) ms after run.start; wall 2s, the reader waits 7s)"
else
        fail "a stalled reader of the output: the run has run.start and wall.limit" "$(cat "$RUN_DIR/events.jsonl" "$TEST_TMP/slow.err" 2>&1 | tail -5)"
fi
is "$(jq -r .exit.reason "$RUN_DIR/run.json" 2>/dev/null)" wall-limit "the run ended at the wall limit"

# Slow, but reading to the end: nothing the jail wrote is lost.
before=$(list_run_dirs)
n=$(timeout -k 5 30 "$AGENTJAIL" run --no-tty -- /bin/sh -c 'head -c 3000000 /dev/zero' </dev/null 2>/dev/null |
        (sleep 2; wc -c) | tr -d ' ')
collect_run_ids
is "$n" 3000000 "a reader that starts late still gets every byte (3000000)"

# A reader that holds the pipe and takes nothing: after the run's end agentjail waits for it
# (as a pipe would) until asked to stop; then it stops at once, and the logs have the output.
mkfifo "$TEST_TMP/stuck"
sleep 60 <"$TEST_TMP/stuck" &
stuck_reader=$!
BG_PIDS+=("$stuck_reader")
before=$(list_run_dirs)
env --default-signal=INT,TERM "$AGENTJAIL" run --no-tty -p "$P" -- /bin/sh -c 'yes' </dev/null \
        >"$TEST_TMP/stuck" 2>"$TEST_TMP/stuck.err" &
stuck_run=$!
BG_PIDS+=("$stuck_run")
RUN_DIR=
for ((i = 0; i < 200; i++)); do
        RUN_DIR=$(new_run_dir "$before")
        [[ -n $RUN_DIR ]] && jq -e .exit "$RUN_DIR/run.json" >/dev/null 2>&1 && break
        sleep 0.05
done
collect_run_ids
sleep 0.5
ok "the run has ended (wall limit) while its reader takes nothing, and agentjail still waits for it" \
        kill -0 "$stuck_run"
kill -TERM "$stuck_run"
wait_exit "$stuck_run" 5
cmp_num "$WAIT_RC" -ne 124 "asked to stop (SIGTERM), it stops waiting for the reader ($WAIT_RC)"
like "$(cat "$TEST_TMP/stuck.err")" "bytes of its output were not passed on" "... and says what it dropped"
cmp_num "$(stat -c %s "$RUN_DIR/stdout.log" 2>/dev/null || echo 0)" -gt 65536 "the run's stdout.log has the output"
kill "$stuck_reader" 2>/dev/null
wait "$stuck_reader" 2>/dev/null

# --- events past the cap: a breach (log_bytes), frozen and quarantined, chain intact
ALERT_OUT="$TEST_TMP/alert.json"
cat >"$TEST_TMP/alert.sh" <<EOS
#!/bin/sh
cat > "$ALERT_OUT.tmp" && mv "$ALERT_OUT.tmp" "$ALERT_OUT"
EOS
chmod 0755 "$TEST_TMP/alert.sh"
P=$(write_profile evcap '{"extends": "default", "logs": {"events_bytes": "64K", "reports_per_sec": 100000},
        "alert": {"exec": ["'"$TEST_TMP/alert.sh"'"], "timeout": "5s"}}')
start_jail_bg -p "$P" --name log-flood -- /bin/sh -c 'python3 ./client.py results 200 8000; echo agent-continues'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"quarantine"' 15; then
        pass "an event flood past logs.events_bytes quarantines the run"
else
        fail "an event flood past logs.events_bytes quarantines the run" \
                "$(cat "$TEST_TMP/bg.err"; tail -c 1500 "$RUN_DIR/events.jsonl" 2>/dev/null)"
fi
B=$(events_of cap.breach "$RUN_DIR")
is "$(jq -r '"\(.cap) \(.action)"' <<<"$B" 2>/dev/null)" "log_bytes freeze" "the breach is cap log_bytes, action freeze"
cmp_num "$(jq -r '.value - .limit' <<<"$B" 2>/dev/null | cut -d. -f1)" -gt 0 "the breach's value is past its limit"
is "$(count_lines "$(events_of freeze "$RUN_DIR")")" 1 "the run is frozen (one freeze event, whatever it had queued)"
wait_for_output "$ALERT_OUT" '"cap"' 5
is "$(jf .cap "$ALERT_OUT")" log_bytes "the alert gets the incident, cap log_bytes"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json says quarantined"
aj thaw "$RUN_ID"
is "$RC" 0 "thaw without a raise" || op_diag
deadline=$((SECONDS + 10))
while (($(count_lines "$(events_of freeze "$RUN_DIR")") < 2 && SECONDS < deadline)); do sleep 0.05; done
if [[ $(count_lines "$(events_of freeze "$RUN_DIR")") == 2 ]]; then
        pass "thawed without room, the agent's next event stops it again"
else
        fail "thawed without room, the agent's next event stops it again" "$(tail -c 1500 "$RUN_DIR/events.jsonl")"
fi
aj kill "$RUN_ID"
is "$RC" 0 "agentjail kill ends the frozen run" || op_diag
wait_exit "$BG_PID" 20
is "$WAIT_RC" 123 "the run exits 123 (killed by agentjail)"
is "$(count_lines "$(events_of run.exit "$RUN_DIR")")" 1 "run.exit is recorded after the cap"
cmp_num "$(jq -r '.events' <<<"$(events_of log.refused "$RUN_DIR")" 2>/dev/null || echo 0)" -ge 2 \
        "log.refused counts the agent's events refused"
is "$(count_lines "$(events_of kill "$RUN_DIR")")" 1 "the operator's kill is recorded after the cap"
cmp_num "$(stat -c %s "$RUN_DIR/events.jsonl")" -le 65536 "events.jsonl stays within logs.events_bytes (64K)"
n_results=$(count_lines "$(events_of tool.result "$RUN_DIR")")
cmp_num "$n_results" -lt 10 "the flood's reports stopped at the cap ($n_results recorded of 200 sent)"
aj logs "$RUN_ID" --verify
is "$RC" 0 "logs --verify: the chain is intact" || op_diag
like "$OUT" "intact" "logs --verify says intact"

# --- thaw --raise log_bytes gives the agent room again
start_jail_bg -p "$P" --name log-raise -- /bin/sh -c 'python3 ./client.py results 30 8000; echo agent-continues'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
wait_for_output "$RUN_DIR/events.jsonl" '"type":"quarantine"' 15 || fail "the second flood breaches" "$(cat "$TEST_TMP/bg.err")"
aj thaw "$RUN_ID" --raise log_bytes=1K
is "$RC" 1 "thaw --raise log_bytes below what is written is refused" || op_diag
like "$ERR" "log_bytes: 1K would leave the agent no room" "the refusal says why"
aj thaw "$RUN_ID" --raise log_bytes=+1M
is "$RC" 0 "thaw --raise log_bytes=+1M" || op_diag
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "the agent finishes after the raise"
like "$(cat "$TEST_TMP/bg.out")" "agent-continues" "the agent continued"
is "$(grep -c 'ok=true' "$TEST_TMP/bg.out")" 29 "every report but the one refused at the cap is accepted"
is "$(count_lines "$(events_of tool.result "$RUN_DIR")")" 29 "... and recorded"
is "$(count_lines "$(events_of cap.breach "$RUN_DIR")")" 1 "one breach"
is "$(jq -r '.raise.log_bytes' <<<"$(events_of caps.raise "$RUN_DIR")" 2>/dev/null)" "+1M" "caps.raise records the raise"
aj logs "$RUN_ID" --verify
is "$RC" 0 "the chain is intact after the raise" || op_diag

# --- tool_result floods are rate limited: an error reply, not recorded, counted
P=$(write_profile ratecap '{"extends": "default", "logs": {"reports_per_sec": 5}}')
run_jail -p "$P" -- python3 ./client.py results 300 10
is "$JAIL_RC" 0 "a tool_result flood is answered (exit 0)"
n_ok=$(grep -c 'ok=true' <<<"$JAIL_OUT")
n_limited=$(grep -c 'code=rate_limited' <<<"$JAIL_OUT")
is "$((n_ok + n_limited))" 300 "every report is answered: ok or rate_limited"
cmp_num "$n_limited" -ge 200 "the reports past the burst are refused ($n_limited rate_limited)"
n_results=$(count_lines "$(events_of tool.result)")
is "$n_results" "$n_ok" "only the accepted reports are recorded"
is "$(jq -r '.reports' <<<"$(events_of broker.suppressed)" 2>/dev/null)" "$n_limited" \
        "broker.suppressed counts the refused reports"

# --- the supervisor's CPU on a jail's floods stays below the jail's own CPU limit
# (the proxy's share is held to the budget itself, half of it: refusing a connection costs the
# supervisor about what opening it costs the agent, so uncharged it doubled the jail's CPU)
cp "$PROBE" "$WORKSPACE/probe"
cat >"$WORKSPACE/proxy-flood.py" <<'PY'
import socket, sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    s = socket.socket()
    s.connect(("127.0.0.1", 3128))
    s.send(b"CONNECT denied.example.com:443 HTTP/1.1\r\n\r\n")
    s.close()
PY
P=$(write_profile cpu02 '{"extends": "default", "limits": {"cpu": 0.2}, "network": {"allow": ["allowed.example.com"]}}')
hz=$(getconf CLK_TCK)
# supervisor_ticks RUN_DIR: utime + stime of the run's supervisor
supervisor_ticks() {
        local pid
        pid=$(jf .supervisor_pid "$1/run.json")
        awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
for flood in "broker:python3 ./client.py flood 4" "seccomp:timeout 4 ./probe deny-loop 100000000 keyctl" \
        "proxy:python3 ./proxy-flood.py 4"; do
        name=${flood%%:*}
        start_jail_bg -p "$P" --name "flood-$name" -- /bin/sh -c "${flood#*:}; echo flood-done"
        RUN_DIR=$(wait_run_dir 10)
        sleep 1
        t0=$(date +%s%N) s0=$(supervisor_ticks "$RUN_DIR")
        sleep 2.5
        t1=$(date +%s%N) s1=$(supervisor_ticks "$RUN_DIR")
        wait_exit "$BG_PID" 20
        is "$WAIT_RC" 0 "$name flood: the run ends normally"
        like "$(cat "$TEST_TMP/bg.out")" "flood-done" "$name flood: the agent is slowed, not stopped"
        used=$((s1 - s0)) allowed=$(((t1 - t0) * hz / 5 / 1000000000))
        if [[ $name == proxy ]]; then
                allowed=$((allowed / 2))
                cmp_num "$used" -le "$allowed" "$name flood: the supervisor used less than its budget, half the jail's cpu 0.2 ($used of $allowed ticks)"
        else
                cmp_num "$used" -le "$allowed" "$name flood: the supervisor used less than the jail's cpu 0.2 ($used of $allowed ticks)"
        fi
        cmp_num "$(jq -r '.pauses' <<<"$(events_of supervisor.throttled "$RUN_DIR")" 2>/dev/null || echo 0)" -gt 0 \
                "$name flood: supervisor.throttled counts the pauses"
done

# --- group commit: many clients' pipelined requests, written a wake-up's worth at a time,
# each connection's replies in order, the chain whole and in each connection's order
P=$(write_profile grouped '{"extends": "default", "logs": {"reports_per_sec": 1000000}}')
run_jail -p "$P" -- python3 ./client.py pipelined 8 300
is "$JAIL_RC" 0 "8 connections x 300 pipelined tokens requests: the run exits 0"
is "$(grep -o 'replies=[0-9]* ok=[0-9]*' "$TEST_TMP/jail.out")" "replies=2400 ok=2400" \
        "every reply comes, ok, in its connection's request order"
T=$(events_of tokens "$JAIL_RUN_DIR")
is "$(count_lines "$T")" 2400 "2400 tokens events recorded"
is "$(jq -rs 'group_by(."gen_ai.usage.input_tokens" / 1000 | floor) | map(map(."gen_ai.usage.input_tokens" % 1000)
        | . == (. | sort)) | all' <<<"$T" 2>/dev/null)" true "each connection's events are in its request order"
aj logs "${JAIL_RUN_DIR##*/}" --verify
is "$RC" 0 "logs --verify: the chain written in groups is intact" || op_diag
like "$OUT" "intact" "logs --verify says intact"

done_testing
