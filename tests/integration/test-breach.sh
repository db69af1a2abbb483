#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Meters, caps and breaches: a jailed agent that crosses a cap is frozen as a whole
# process tree (or killed with on_breach "kill"), with an incident record, an alert
# and quarantine; `thaw --raise` resumes it, `kill` ends it; concurrent clients cannot
# overshoot a cap; bad broker messages leave the run working.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

CLIENT="$WORKSPACE/client.py"
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$CLIENT"

# The alert command copies the incident it gets on stdin where the test can see it.
ALERT_OUT="$TEST_TMP/alert.json"
cat >"$TEST_TMP/alert.sh" <<EOF
#!/bin/sh
cat > "$ALERT_OUT.tmp" && mv "$ALERT_OUT.tmp" "$ALERT_OUT"
EOF
chmod 0755 "$TEST_TMP/alert.sh"

cgroup_of() {
        local id=$1 d
        for d in /sys/fs/cgroup/unified/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                [[ -f "$d/cgroup.events" ]] && { echo "$d"; return 0; }
        done
        return 1
}

# counter FILE: the worker's progress counter
counter() { cat "$1" 2>/dev/null || echo 0; }

# --- a tokens breach freezes the whole tree; incident, alert, quarantine; thaw --raise resumes
P=$(write_profile freeze '{"extends": "default", "meters": {"tokens": 5000},
        "alert": {"exec": ["'"$TEST_TMP/alert.sh"'"], "timeout": "5s"}}')
start_jail_bg -p "$P" --name breach-demo -- /bin/sh -c \
        'python3 ./client.py worker ./progress & w1=$!; python3 ./client.py worker ./progress2 & w2=$!;
         sleep 0.3; python3 ./client.py tokens 100 1000 500; echo agent-continues; sleep 1; kill $w1 $w2; wait; exit 0'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 15; then
        pass "a tokens breach freezes the run"
else
        fail "a tokens breach freezes the run" "$(cat "$TEST_TMP/bg.err" "$RUN_DIR/events.jsonl" 2>/dev/null)"
fi
CG=$(cgroup_of "$RUN_ID")
like "$(cat "$CG/cgroup.events" 2>/dev/null)" "frozen 1" "the run's cgroup reports frozen"
n_procs=$(wc -l <"$CG/cgroup.procs")
cmp_num "$n_procs" -ge 3 "the frozen cgroup holds the whole tree (init, shell, workers, client: $n_procs)"
c1=$(counter "$WORKSPACE/progress"); c2=$(counter "$WORKSPACE/progress2")
sleep 0.4
is "$(counter "$WORKSPACE/progress")" "$c1" "a background worker makes no progress while frozen"
is "$(counter "$WORKSPACE/progress2")" "$c2" "the second worker makes no progress while frozen"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .cap "$RUN_DIR/incident.json")" tokens "incident.json names the cap"
is "$(jf .limit "$RUN_DIR/incident.json")" 5000 "incident.json has the limit"
cmp_num "$(jf '.value' "$RUN_DIR/incident.json" | cut -d. -f1)" -gt 5000 "incident.json has the value the request would have reached"
cmp_num "$(jf '.last_events | length' "$RUN_DIR/incident.json")" -ge 3 "incident.json carries the last events"
is "$(jf '.request."gen_ai.usage.input_tokens"' "$RUN_DIR/incident.json")" 1000 "incident.json has the triggering request"
wait_for_output "$ALERT_OUT" '"cap"' 5
is "$(jq -r .cap "$ALERT_OUT" 2>/dev/null)" tokens "the alert command got the incident on stdin"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json says quarantined"
used=$(jf '.meters.tokens.used' "$RUN_DIR/run.json")
cmp_num "$used" -le 5000 "usage never went past the cap (used $used)"

"$AGENTJAIL" thaw "$RUN_ID" --raise tokens=+200000 >"$TEST_TMP/thaw.out" 2>&1
is "$?" 0 "agentjail thaw --raise succeeds" || diag "$(cat "$TEST_TMP/thaw.out")"
# Until a worker has gone on (a loaded machine runs it late), 20 s at most.
for ((i = 0; i < 200; i++)); do
        c=$(counter "$WORKSPACE/progress")
        ((${c:-0} > c1)) && break
        sleep 0.1
done
cmp_num "$(counter "$WORKSPACE/progress")" -gt "$c1" "after thaw the workers make progress again"
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "the thawed agent finishes normally"
like "$(cat "$TEST_TMP/bg.out")" "agent-continues" "the agent carried on after the thaw"
ok "the raise is recorded as an event" grep -q '"type":"caps.raise".*tokens' "$RUN_DIR/events.jsonl"
ok "the thaw is recorded as an event" grep -q '"type":"thaw".*operator' "$RUN_DIR/events.jsonl"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "an exited breached run stays quarantined until released"
is "$(jf '.meters.tokens.limit' "$RUN_DIR/run.json")" 205000 "the raised cap is in run.json"
kill_bg

# --- a wall-time cap is a breach too: frozen, not killed; thaw --raise wall=+DUR resumes
start_jail_bg --name walled --cap wall=1s -- /bin/sh -c 'python3 ./client.py worker ./progress4 & w=$!; sleep 2; kill $w; echo done-sleeping'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 10; then
        pass "the wall cap freezes the run when it runs out"
else
        fail "the wall cap freezes the run when it runs out" "$(cat "$TEST_TMP/bg.err")"
fi
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .cap "$RUN_DIR/incident.json")" wall "incident.json names the wall cap"
c4=$(counter "$WORKSPACE/progress4"); sleep 0.3
is "$(counter "$WORKSPACE/progress4")" "$c4" "no progress while frozen at the wall cap"
"$AGENTJAIL" thaw "$RUN_ID" --raise wall=+30s >"$TEST_TMP/thaw.out" 2>&1
is "$?" 0 "thaw --raise wall=+30s" || diag "$(cat "$TEST_TMP/thaw.out")"
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "with the raised wall cap the run finishes"
like "$(cat "$TEST_TMP/bg.out")" done-sleeping "the command completed"
cmp_num "$(jf '.meters.wall.limit' "$RUN_DIR/run.json" | cut -d. -f1)" -eq 31 "run.json shows the raised wall cap (31 s)"
kill_bg

# --- a frozen run whose supervisor is SIGKILLed: the watchdog still removes everything
start_jail_bg --name frozen-lost --cap tokens=1000 -- python3 ./client.py tokens 5 1000 500
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 10; then
        kill -KILL "$BG_PID"
        # The watchdog removes the cgroups, then the runtime dir: wait for both (bounded).
        for _ in $(seq 100); do
                [[ ! -d /sys/fs/cgroup/unified/agentjail/$RUN_ID && ! -d /sys/fs/cgroup/memory/agentjail/$RUN_ID &&
                        ! -e $AGENTJAIL_RUNTIME_DIR/$RUN_ID ]] && break
                sleep 0.05
        done
        ok "the frozen jail's cgroups are gone after its supervisor was killed" \
                test ! -d "/sys/fs/cgroup/unified/agentjail/$RUN_ID" -a ! -d "/sys/fs/cgroup/memory/agentjail/$RUN_ID"
        ok "and its runtime dir" test ! -e "$AGENTJAIL_RUNTIME_DIR/$RUN_ID"
        wait_for_output "$RUN_DIR/events.jsonl" '"type":"supervisor.lost"' 5
        ok "the chain ends with supervisor.lost" grep -q '"type":"supervisor.lost"' "$RUN_DIR/events.jsonl"
else
        fail "the run froze before its supervisor was killed" "$(cat "$TEST_TMP/bg.err")"
fi
wait "$BG_PID" 2>/dev/null
kill_bg

# --- freeze/thaw/kill by the operator; kill ends the run with 123 and leaves nothing
start_jail_bg --name killme -- python3 ./client.py worker ./progress3
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
wait_for_output "$RUN_DIR/events.jsonl" '"run.start"' 5
sleep 0.3
"$AGENTJAIL" freeze killme >/dev/null 2>&1
is "$?" 0 "agentjail freeze NAME works"
like "$(cat "$(cgroup_of "$RUN_ID")/cgroup.events" 2>/dev/null)" "frozen 1" "the operator's freeze freezes the cgroup"
c3=$(counter "$WORKSPACE/progress3"); sleep 0.3
is "$(counter "$WORKSPACE/progress3")" "$c3" "no progress while frozen by the operator"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
is "$?" 0 "agentjail kill works on a frozen run"
wait_exit "$BG_PID" 10
is "$WAIT_RC" 123 "a run killed by the operator exits 123"
is "$(jf .exit.reason "$RUN_DIR/run.json")" killed "run.json says killed"
ok "no v2 cgroup is left after kill" test ! -d "/sys/fs/cgroup/unified/agentjail/$RUN_ID"
ok "no v1 memory cgroup is left after kill" test ! -d "/sys/fs/cgroup/memory/agentjail/$RUN_ID"
ok "no runtime dir or socket is left after kill" test ! -e "$AGENTJAIL_RUNTIME_DIR/$RUN_ID"
kill_bg

# --- every kind of cap, with on_breach "kill"
check_cap() {
        local cap=$1 meters=$2; shift 2
        local p
        p=$(write_profile "cap-$cap" '{"extends": "default", "on_breach": "kill",
                "meters": '"$meters"', "prices": {"gpt-4o": {"input": 0.0000025, "output": 0.00001, "cached_input": 0.00000125}}}')
        run_jail -p "$p" -- python3 ./client.py "$@"
        is "$JAIL_RC" 123 "$cap: the breach kills the run (123)" || jail_diag
        is "$(jf .cap "$JAIL_RUN_DIR/incident.json")" "$cap" "$cap: incident.json names it"
        is "$(events_of cap.breach | head -1 | jq -r .cap)" "$cap" "$cap: a cap.breach event"
        is "$(jf .exit.reason)" killed "$cap: run.json exit reason"
}
check_cap tokens '{"tokens": 3000}' tokens 10 1000 200
check_cap input_tokens '{"input_tokens": 2500}' tokens 10 1000 10
check_cap output_tokens '{"output_tokens": 250}' tokens 10 10 100
check_cap cost_usd '{"cost_usd": 0.01}' tokens 10 1000 500 800
check_cap tool_calls '{"tool_calls": 5}' tools 10 search distinct
check_cap tool_calls_per_min '{"tool_calls_per_min": 3}' tools 10 search distinct
check_cap repeat_limit '{"repeat_limit": 3}' tools 10 search same

# --- calls held together for approval count in the streak they could make: three identical
# deploy calls held at once under repeat_limit=2 (after a search, so the committed streak has
# another key): the third is a breach when it is asked, before anyone approves the first two
p=$(write_profile held-repeat '{"extends": "default", "on_breach": "kill", "meters": {"repeat_limit": 2},
        "approvals": {"tools": ["deploy"], "timeout": "60s"}}')
run_jail -p "$p" -- /bin/sh -c '
        agentjail meter tool search --args "{\"q\": 1}" --id s-1 >/dev/null || exit 9
        for i in 1 2 3; do agentjail meter tool deploy --args "{\"env\": \"prod\"}" --id d-$i >/dev/null 2>&1 & done
        wait
        sleep 30'
is "$JAIL_RC" 123 "repeat_limit=2, three identical calls held together: a breach kills the run (123)" || jail_diag
is "$(events_of cap.breach | head -1 | jq -r '.cap + " " + (.value | tostring)')" "repeat_limit 3" \
        "the breach is repeat_limit at 3, the streak the held calls could make"
is "$(events_of approval.requested | wc -l)" 2 "two of the three were held for approval, the third was not"

# --- --cap on the command line
run_jail --cap tokens=1500 -p "$(write_profile capkill '{"extends": "default", "on_breach": "kill"}')" \
        -- python3 ./client.py tokens 10 1000 0
is "$JAIL_RC" 123 "--cap tokens=1500 caps the run"
is "$(jf .limit "$JAIL_RUN_DIR/incident.json")" 1500 "--cap's value is the limit"
run_jail --cap bogus=1 -- /bin/true
is "$JAIL_RC" 125 "--cap with an unknown key is a launcher error"
like "$JAIL_ERR" "bogus" "the error names the bad key"

# --- concurrent clients cannot overshoot a cap
P=$(write_profile conc '{"extends": "default", "on_breach": "kill", "meters": {"tokens": 5000}}')
run_jail -p "$P" -- /bin/sh -c 'for i in 1 2 3 4 5 6 7 8; do python3 ./client.py tokens 50 70 0 & done; wait'
is "$JAIL_RC" 123 "eight concurrent clients breach the cap"
used=$(jq -r '.value' "$JAIL_RUN_DIR/incident.json")
used_run=$(jf '.meters.tokens.used')
cmp_num "$used_run" -le 5000 "usage stays at or below the cap with 8 concurrent clients (used $used_run)"
cmp_num "$(events_of tokens | jq -s 'map(select(.verdict != "breach")) | length')" -le 71 "no more than 5000/70 requests were counted"

# --- bad messages get errors and the run keeps working
run_jail -- python3 ./client.py garbage
is "$JAIL_RC" 0 "a client sending bad lines runs to the end" || jail_diag
like "$JAIL_OUT" "code=bad_json" "not-JSON gets bad_json"
like "$JAIL_OUT" "code=unknown_op" "an unknown op gets unknown_op"
like "$JAIL_OUT" "code=line_too_long" "an oversized line gets line_too_long"
like "$JAIL_OUT" "id=after ok=true" "the same connection works after the errors"
cmp_num "$(count_lines "$(events_of broker.error)")" -ge 4 "the errors are recorded as broker.error events"

# --- a tool name with C1 controls (U+009B CSI, U+009D OSC: a terminal may act on them) is no
# plain name: refused, and `logs` never carries the raw bytes to the operator's terminal
run_jail -- python3 ./client.py tools 1 "$(printf 'a\302\2332J\302\2350;T\302\234b')" same
is "$JAIL_RC" 0 "a client sending a tool name with C1 controls runs to the end" || jail_diag
like "$JAIL_OUT" "ok=false .*code=bad_request" "the tool name with C1 controls is refused" || jail_diag
unlike "$(events_of tool.request)" . "no tool.request is recorded for it"
aj logs "$JAIL_RUN_ID"
ok "logs: no C1 control from the agent reaches the terminal" eval '! LC_ALL=C grep -q $'"'"'\xc2\x9b\|\xc2\x9d'"'"' "$TEST_TMP/op.out"'
# A tool call's arguments are free JSON: kept as sent, shown escaped (é as it is).
run_jail -- /bin/sh -c 'agentjail meter tool fs.read --args "{\"q\": \"a\\u009b2J\\u001b]0;T\\u0007 \\u00e9\"}"'
is "$JAIL_RC" 0 "a tool call whose arguments hold C1 and C0 controls is taken" || jail_diag
aj logs "$JAIL_RUN_ID"
ok "logs: the arguments' controls do not reach the terminal" \
        eval '! LC_ALL=C grep -q $'"'"'\x1b\|\x07\|\xc2\x9b'"'"' "$TEST_TMP/op.out"'
ok "logs: the arguments are shown escaped, é as it is" grep -qF 'a\u009b2J\u001B]0;T\u0007 é' "$TEST_TMP/op.out"
aj logs "$JAIL_RUN_ID" --json
ok "logs --json: no raw control either" eval '! LC_ALL=C grep -q $'"'"'\x1b\|\x07\|\xc2\x9b'"'"' "$TEST_TMP/op.out"'
is "$(jq -r 'select(.type == "tool.request") | .["gen_ai.tool.call.arguments"].q' <<<"$OUT")" "$(printf 'a\302\2332J\033]0;T\007 \303\251')" \
        "logs --json: the same JSON, the arguments as sent"

# --- the meter client inside the jail
run_jail -p "$(write_profile meter '{"extends": "default", "meters": {"tool_calls": 10},
        "tools": {"deny": ["email.*"]}}')" -- /bin/sh -c \
        'agentjail meter tool crm.update --args "{\"id\": 42}"; echo "rc=$?";
         agentjail meter tool email.send; echo "rc=$?";
         agentjail meter tokens --model gpt-4o --input 1200 --output 300 --cached-input 800; echo "rc=$?";
         agentjail meter usage --json'
is "$JAIL_RC" 0 "agentjail meter runs inside the jail" || jail_diag
like "$JAIL_OUT" "rc=0" "an allowed tool call exits 0"
like "$JAIL_OUT" "rc=1" "a denied tool call exits 1"
like "$JAIL_ERR" "email" "the denial's reason names the rule"
like "$JAIL_OUT" '"tool_calls"' "meter usage --json prints the usage"
is "$(events_of tokens | head -1 | jq -r .price)" known "gpt-4o is priced by the shipped table (data/prices.json)"

# --- fail closed: under a cost cap, a model without a price is refused, not recorded at $0
run_jail --cap cost_usd=0.01 -p "$(write_profile nopricekill '{"extends": "default", "on_breach": "kill"}')" \
        -- /bin/sh -c 'agentjail meter tokens --model some-new-model --input 200000 --output 0; echo "rc=$?"; sleep 5'
is "$JAIL_RC" 123 "a report on a model without a price under a cost cap is a breach (killed)" || jail_diag
is "$(jf .cap "$JAIL_RUN_DIR/incident.json")" cost_usd "the incident names cost_usd"
like "$(events_of tokens | jq -r .reason)" 'no price for model "some-new-model"' "the reason names the model"
like "$(events_of tokens | jq -r .reason)" '"prices"' "the reason says how to add a price"
is "$(events_of tokens | jq -s 'map(select(.verdict == "ok")) | length')" 0 "nothing was recorded at \$0"

# --- the agent's JSON in the breach records: nested past the broker's bound, refused; below
# it, incident.json (which carries the request and the last events, undo records whole) is
# as large as what it holds (indented, it grew with the square of the depth: 2 GB in the
# supervisor's memory from 1 MB of undo records nested 2040 deep)
cat >"$WORKSPACE/deep.py" <<'EOF'
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AGENTJAIL_BROKER"])
f = s.makefile("rb")
def ask(line):
    s.sendall(line.encode() + b"\n")
    return f.readline().decode()
print("deep:", ask('{"id": 1, "v": 1, "op": "tool", "gen_ai.tool.name": "t", "gen_ai.tool.call.arguments": %s}'
                   % ("[" * 100 + "]" * 100)), end="", flush=True)
chain = "[" * 60 + "]" * 60
for i in range(4):
    ask('{"id": 2, "v": 1, "op": "tool", "gen_ai.tool.name": "t", "gen_ai.tool.call.id": "c%d", '
        '"gen_ai.tool.call.arguments": %d}' % (i, i))
    print("undo:", ask('{"id": 3, "v": 1, "op": "tool_result", "gen_ai.tool.call.id": "c%d", "status": "ok", '
                       '"undo": {"a": [%s]}}' % (i, ",".join([chain] * 400))), end="", flush=True)
ask('{"id": 4, "v": 1, "op": "tool", "gen_ai.tool.name": "t", "gen_ai.tool.call.id": "over"}')
EOF
run_jail -p "$(write_profile deepkill '{"extends": "default", "meters": {"tool_calls": 4}, "on_breach": "kill"}')" \
        -- python3 ./deep.py
is "$JAIL_RC" 123 "undo records nested 62 deep, then a call past the cap: a breach (killed)" || jail_diag
like "$JAIL_OUT" 'deep: .*"code":"bad_request".*deeper than 64 levels' "a request nested 101 deep is refused"
is "$(grep -c '^undo: {"id":3,"v":1,"ok":true' <<<"$JAIL_OUT")" 4 "undo records nested 62 deep are taken"
ev_bytes=$(stat -c %s "$JAIL_RUN_DIR/events.jsonl")
inc_bytes=$(stat -c %s "$JAIL_RUN_DIR/incident.json")
cmp_num "$inc_bytes" -lt $((2 * ev_bytes)) \
        "incident.json ($inc_bytes bytes) is no larger than the events it holds (events.jsonl: $ev_bytes bytes)"
is "$(jq -r '[.last_events[] | select(.type == "tool.result")] | length' "$JAIL_RUN_DIR/incident.json")" 4 \
        "incident.json reads back, the undo records in its last events"

# --- alert.log stops at logs.output_bytes: each call the agent holds starts the alert, which
# reads the agent's arguments; one that prints its input (cat, tee) filled alert.log past
# every bound on the run's records (18 MB for 300 held calls of 60 KB).
PAL=$(write_profile alert-log '{"extends": "default", "logs": {"output_bytes": "4K"},
        "approvals": {"tools": ["hold.*"], "timeout": "1s"},
        "alert": {"exec": ["/bin/cat"], "timeout": "5s"}}')
run_jail -p "$PAL" -- /bin/sh -c '
        pad=$(head -c 3000 /dev/zero | tr "\0" a)
        for i in 1 2 3; do agentjail meter tool hold.x --id "h$i" --args "{\"pad\": \"$pad\"}" >/dev/null; done
        echo held'
like "$JAIL_OUT" held "the agent held three calls, each denied at the approval's timeout" || jail_diag
is "$(count_lines "$(events_of alert.exit)")" 3 "three alerts ran" || jail_diag
is "$(stat -c %s "$JAIL_RUN_DIR/alert.log")" 4096 "alert.log stops at logs.output_bytes"
is "$(events_of log.truncated | jq -r '"\(.stream) \(.limit)"')" "alert 4096" \
        "log.truncated says alert.log was cut, once"

# --- the alert command runs on the host as agentjail's user: a profile that binds its
# directory rw gave the agent a rewrite of it, and its own breach ran the agent's script as
# root. The program (and the script an interpreter runs, rollback.exec's too) is refused
# writable like the profile's own file.
HOOKS=$TEST_TMP/hooks
mkdir -p "$HOOKS"
printf '#!/bin/sh\ncat >/dev/null\n' >"$HOOKS/alert.sh"
chmod 0755 "$HOOKS/alert.sh"
PHK=$(write_profile hook-rw '{"extends": "default", "meters": {"tokens": 5000}, "on_breach": "kill",
        "filesystem": {"rw": ["'"$HOOKS"':/mnt/hooks"]}, "alert": {"exec": ["'"$HOOKS/alert.sh"'"], "timeout": "5s"}}')
run_jail -p "$PHK" -- /bin/sh -c "printf '#!/bin/sh\nid -u >$TEST_TMP/agent-on-host\n' >/mnt/hooks/alert.sh;
        python3 ./client.py tokens 100 1000 500; sleep 1"
ok "the agent's rewrite of the alert command never runs on the host" test ! -e "$TEST_TMP/agent-on-host" || jail_diag
is "$JAIL_RC" 125 "a run binding its alert command's directory rw is refused" || jail_diag
like "$JAIL_ERR" "filesystem.rw: refusing '$HOOKS': it contains '$HOOKS/alert.sh', a program the run's profile runs on the host" \
        "the refusal names the program" || jail_diag
PHS=$(write_profile hook-arg-rw '{"extends": "default", "filesystem": {"rw": ["'"$HOOKS"':/mnt/hooks"]},
        "rollback": {"exec": ["/bin/sh", "'"${HOOKS#/}/alert.sh"'"]}}')
run_jail -p "$PHS" -- true
like "$JAIL_ERR" "refusing '$HOOKS': it contains '$HOOKS/alert.sh', a program the run's profile runs on the host" \
        "a script rollback.exec's interpreter runs (a path from /, where it starts) is refused the same" || jail_diag

# Every path a handler's argv names is its code, not only its program and first operand: the
# agent rewrote a script in a directory bound rw that the alert ran as root through
# `env X=1 SCRIPT` (the script an operand after the first) or `sh -c "cd DIR && ./SCRIPT"` (a
# word of an inline script). Each is refused like the program.
n=0
for argv in '"/usr/bin/env", "X=1", "'"$HOOKS/alert.sh"'"' '"/bin/sh", "-c", "cd '"$HOOKS"' && ./alert.sh"'; do
        n=$((n + 1))
        PHW=$(write_profile hook-words-$n '{"extends": "default", "meters": {"tokens": 5000}, "on_breach": "kill",
                "filesystem": {"rw": ["'"$HOOKS"':/mnt/hooks"]}, "alert": {"exec": ['"$argv"'], "timeout": "5s"}}')
        printf '#!/bin/sh\ncat >/dev/null\n' >"$HOOKS/alert.sh"
        run_jail -p "$PHW" -- /bin/sh -c "printf '#!/bin/sh\nid -u >$TEST_TMP/agent-on-host\n' >/mnt/hooks/alert.sh;
                python3 ./client.py tokens 100 1000 500; sleep 1"
        is "$JAIL_RC" 125 "alert.exec [$argv]: the run binding its directory rw is refused" || jail_diag
        like "$JAIL_ERR" "filesystem.rw: refusing '$HOOKS': it (is|contains) '$HOOKS(/alert\\.sh)?', a program the run's profile runs on the host" \
                "... naming what the handler runs" || jail_diag
done
printf '#!/bin/sh\ncat >/dev/null\n' >"$HOOKS/alert.sh"

# A home the handler's shell expands is where its words start: `sh -c "~/hooks/alert.sh"` (the
# alert inherits HOME) ran the operator's ~/hooks/alert.sh, which a rw bind of ~/hooks (inside a
# home, which is refused only as a whole) handed the agent to rewrite.
PHH=$(write_profile hook-home '{"extends": "default", "meters": {"tokens": 5000}, "on_breach": "kill",
        "filesystem": {"rw": ["'"$HOOKS"':/mnt/hooks"]}, "alert": {"exec": ["/bin/sh", "-c", "~/hooks/alert.sh"], "timeout": "5s"}}')
HOME=$TEST_TMP run_jail -p "$PHH" -- /bin/sh -c "printf '#!/bin/sh\nid -u >$TEST_TMP/agent-on-host\n' >/mnt/hooks/alert.sh;
        python3 ./client.py tokens 100 1000 500; sleep 1"
is "$JAIL_RC" 125 "alert.exec [sh -c ~/hooks/alert.sh]: the run binding ~/hooks rw is refused" || jail_diag
like "$JAIL_ERR" "filesystem.rw: refusing '$HOOKS': it contains '$HOOKS/alert\\.sh', a program the run's profile runs on the host" \
        "... naming the script as the handler's shell finds it" || jail_diag
ok "... and the agent's rewrite of it never runs on the host" test ! -e "$TEST_TMP/agent-on-host" || jail_diag
printf '#!/bin/sh\ncat >/dev/null\n' >"$HOOKS/alert.sh"

# A handler named through a symlink runs what the link points to, and the link is a file of its
# directory: a rw bind of that directory let the agent put its own script in the link's place
# (the place protected was only the link's target). The link is protected as well.
mkdir -p "$TEST_TMP/hooks-real"
printf '#!/bin/sh\ncat >/dev/null\n' >"$TEST_TMP/hooks-real/alert.sh"
chmod 0755 "$TEST_TMP/hooks-real/alert.sh"
ln -sfn "$TEST_TMP/hooks-real/alert.sh" "$HOOKS/link.sh"
PHL=$(write_profile hook-link '{"extends": "default", "meters": {"tokens": 5000}, "on_breach": "kill",
        "filesystem": {"rw": ["'"$HOOKS"':/mnt/hooks"]}, "alert": {"exec": ["'"$HOOKS/link.sh"'"], "timeout": "5s"}}')
run_jail -p "$PHL" -- /bin/sh -c "rm -f /mnt/hooks/link.sh; printf '#!/bin/sh\nid -u >$TEST_TMP/agent-on-host\n' >/mnt/hooks/link.sh;
        chmod 0755 /mnt/hooks/link.sh; python3 ./client.py tokens 100 1000 500; sleep 1"
is "$JAIL_RC" 125 "alert.exec through a symlink: the run binding the link's directory rw is refused" || jail_diag
like "$JAIL_ERR" "filesystem.rw: refusing '$HOOKS': it contains '$HOOKS/link\\.sh', a program the run's profile runs on the host" \
        "... naming the link" || jail_diag
ok "... and the agent's script in the link's place never runs on the host" test ! -e "$TEST_TMP/agent-on-host" || jail_diag
rm -f "$TEST_TMP/agent-on-host" "$HOOKS/link.sh"

# "/" alone in a handler's inline script is arithmetic, not a directory of its code: `expr 4 / 2`
# had every run of the profile refused, its workspace "inside" "/".
PHD=$(write_profile hook-div '{"extends": "default", "alert": {"exec": ["/bin/sh", "-c", "expr 4 / 2 >/dev/null"]}}')
run_jail -p "$PHD" -- true
is "$JAIL_RC" 0 "alert.exec [sh -c 'expr 4 / 2']: the run is not refused" || jail_diag

done_testing
