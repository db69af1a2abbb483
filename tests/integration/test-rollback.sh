#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Rollback that acts: `agentjail rollback RUN --apply` hands each undo record the agent
# reported, newest first, to the profile's rollback.exec (here a fake CRM kept in a JSON
# file, tests/helpers/fake-crm.py), records each step in the run's chain and run.json,
# stops at a failing step (--keep-going goes on), runs nothing with --dry-run, never
# applies a step twice, and holds back the undo of an approval-gated tool without --approve.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
command -v python3 >/dev/null || skip_all "python3 is needed for the fake CRM"
command -v jq >/dev/null || skip_all "jq is needed"
setup_dirs

HANDLER=$AGENTJAIL_SOURCE_DIR/tests/helpers/fake-crm.py
cp "$HANDLER" "$WORKSPACE/fake-crm.py"

# undo_handler DB: a handler script for DB, outside the workspace: every path in a handler's
# argv is protected from writable mounts (its code, as far as agentjail can tell), and the
# database is the agent's to write in its workspace.
undo_handler() {
        local h=$TEST_TMP/undo-$(basename "$1" .json).py
        printf 'import runpy, sys\nsys.argv = [%s, %s] + sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name="__main__")\n' \
                "'$HANDLER'" "'$1'" >"$h"
        echo "$h"
}

# The agent's side: a CRM write reported to the broker with the record that undoes it.
# crm_call ID TOOL ARGS UNDO CRM-ARGS...
AGENT='
crm_call() {
        id=$1 tool=$2 args=$3 undo=$4
        shift 4
        agentjail meter tool "$tool" --id "$id" --args "$args" >/dev/null || exit 10
        python3 ./fake-crm.py "$DB" "$@" || exit 11
        agentjail meter result "$id" --status ok --undo "$undo" >/dev/null || exit 12
}
'

# crm_check DB: "records|log" of the fake CRM, compact.
crm_check() {
        jq -r '"\(.records | to_entries | map("\(.key)=\(.value)") | join(",")) | \(.log | join("; "))"' "$1"
}

# ------------------------------------------------------------------ three writes, reversed
DB_A=$WORKSPACE/crm-a.json
PROFILE_A=$(write_profile rollback-a '{
  "extends": "default",
  "rollback": {"exec": ["/usr/bin/python3", "'"$(undo_handler "$DB_A")"'", "undo"], "timeout": "20s"}
}')
run_jail -p "$PROFILE_A" --name rb-three -- /bin/sh -c "DB=$DB_A; $AGENT"'
        crm_call c-1 crm.create "{\"id\": \"r1\", \"name\": \"Ada\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r1\"}}" create r1 Ada
        crm_call c-2 crm.create "{\"id\": \"r2\", \"name\": \"Bob\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r2\"}}" create r2 Bob
        crm_call c-3 crm.create "{\"id\": \"r3\", \"name\": \"Cy\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r3\"}}" create r3 Cy'
is "$JAIL_RC" 0 "the agent writes three CRM records and reports their undo records" || jail_diag
A=$JAIL_RUN_ID
A_DIR=$JAIL_RUN_DIR
is "$(crm_check "$DB_A")" "r1=Ada,r2=Bob,r3=Cy | " "the CRM has the agent's three records"

aj rollback "$A" --dry-run
is "$RC" 0 "rollback --dry-run exits 0" || op_diag
like "$OUT" $'1/3 +c-3 +crm.create +run .*crm.delete.*r3.*\n  2/3 +c-2 .*\n  3/3 +c-1 ' \
        "--dry-run: the plan, newest first, with each undo record" || op_diag
like "$OUT" "3 to run, 0 applied already, 0 held" "--dry-run: the counts"
is "$(crm_check "$DB_A")" "r1=Ada,r2=Bob,r3=Cy | " "--dry-run runs nothing"
is "$(events_of rollback.step "$A_DIR" | wc -l)" 0 "--dry-run records nothing in the chain"
aj rollback "$A" --dry-run --json
is "$(jq -r '[.steps[] | "\(.step):\(.call_id):\(.action)"] | join(" ")' <<<"$OUT")" "1:c-3:run 2:c-2:run 3:c-1:run" \
        "--dry-run --json: the steps in order" || op_diag

# A step past its time: the handler is killed, the step recorded as a timeout, nothing after it runs.
touch "$DB_A.sleep"
rm -f "$DB_A.env"
SECONDS_BEFORE=$SECONDS
aj rollback "$A" --apply --timeout 1s
is "$RC" 1 "a step that runs past --timeout: exit 1" || op_diag
like "$OUT" "1/3 +c-3 +crm.create +timeout: killed after 1\.[0-9]s" "the step is reported as a timeout" || op_diag
like "$OUT" "stopped: 2 not run" "the steps after it are not run"
cmp_num $((SECONDS - SECONDS_BEFORE)) -le 10 "the timeout bounds the step (no wait for the handler's 30 s)"
is "$(events_of rollback.step "$A_DIR" | jq -r '"\(.["gen_ai.tool.call.id"]) \(.result) \(.exit_code)"')" "c-3 timeout null" \
        "the chain has the timed-out step"
# A signal during a step: the step finishes (here: its timeout) and is recorded, nothing after
# it runs (not even with --keep-going).
rm -f "$DB_A.env"
"$AGENTJAIL" rollback "$A" --apply --keep-going --timeout 2s >"$TEST_TMP/sig.out" 2>"$TEST_TMP/sig.err" &
SIG_PID=$!
wait_file "$DB_A.env"
kill -TERM "$SIG_PID"
wait "$SIG_PID"
is "$?" 1 "rollback --apply interrupted by SIGTERM: exit 1"
like "$(cat "$TEST_TMP/sig.err")" "interrupted \(Terminated\): stopping before step 2" \
        "it stops after the step in progress" || diag "$(cat "$TEST_TMP/sig.out" "$TEST_TMP/sig.err")"
is "$(events_of rollback.step "$A_DIR" | jq -r '.result' | paste -sd' ')" "timeout timeout" \
        "the step in progress was recorded, and no other"
rm -f "$DB_A.sleep"

aj rollback "$A" --apply
is "$RC" 0 "rollback --apply exits 0 when every step is applied" || op_diag
is "$(crm_check "$DB_A")" " | delete r3 1/3 c-3 crm.create; delete r2 2/3 c-2 crm.create; delete r1 3/3 c-1 crm.create" \
        "the handler reversed the three writes, newest first" || op_diag
like "$OUT" "1/3 +c-3 +crm.create +ok: exit 0" "each step's outcome is printed"
like "$OUT" "\| crm: crm.delete r3 done" "with the handler's output"
is "$(cat "$DB_A.env")" "AGENTJAIL_ROLLBACK_OF AGENTJAIL_ROLLBACK_STEP AGENTJAIL_RUN_ID AGENTJAIL_TOOL_CALL_ID HOME LANG LOGNAME PATH USER" \
        "the handler runs with a clean environment (agentjail's own is not passed on)"
is "$(events_of rollback.step "$A_DIR" | jq -r '"\(.["gen_ai.tool.call.id"]):\(.result):\(.exit_code)"' | paste -sd' ')" \
        "c-3:timeout:null c-3:timeout:null c-3:ok:0 c-2:ok:0 c-1:ok:0" "each step is an event in the run's chain"

aj logs "$A" --type rollback
like "$OUT" "rollback\.step +.*result=ok.*gen_ai\.tool\.name=crm\.create.*call\.id=c-1" "logs shows the steps" || op_diag
aj logs "$A" --verify
is "$RC" 0 "logs --verify: the chain with the operator's steps is intact" || op_diag
aj inspect "$A" --json
is "$(jq -r '[.rollback.steps[] | "\(.call_id):\(.result)"] | join(" ")' <<<"$OUT")" "c-3:ok c-2:ok c-1:ok" \
        "inspect --json: what was rolled back (each step's last outcome)" || op_diag
aj inspect "$A"
like "$OUT" "rollback +3 ok, 0 failed, 0 held" "inspect (text): the rollback's summary" || op_diag

aj rollback "$A" --apply
is "$RC" 0 "--apply again: nothing is left, exit 0" || op_diag
like "$OUT" "0 applied now, 3 before" "--apply again applies nothing twice"
is "$(jq -r '.log | length' "$DB_A")" 3 "the handler was not called again"
aj rollback "$A"
like "$OUT" "c-1 +crm.create +ok +.*rollback: ok" "the listing says which calls were rolled back"

# ------------------------------------------------------------------ a failing step, --keep-going, gating
DB_B=$WORKSPACE/crm-b.json
PROFILE_B=$(write_profile rollback-b '{
  "extends": "default",
  "approvals": {"tools": ["crm.restore"]},
  "rollback": {"exec": ["/usr/bin/python3", "'"$(undo_handler "$DB_B")"'", "undo"]}
}')
printf '{"records": {"r0": "Old"}, "log": []}\n' >"$DB_B"
run_jail -p "$PROFILE_B" --name rb-gated -- /bin/sh -c "DB=$DB_B; $AGENT"'
        crm_call c-0 crm.delete "{\"id\": \"r0\"}" "{\"tool\": \"crm.restore\", \"arguments\": {\"id\": \"r0\", \"name\": \"Old\"}}" delete r0
        crm_call c-1 crm.create "{\"id\": \"r1\", \"name\": \"Ada\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r1\"}}" create r1 Ada
        crm_call c-2 crm.create "{\"id\": \"r2\", \"name\": \"Bob\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r2\"}}" create r2 Bob
        crm_call c-3 crm.create "{\"id\": \"r3\", \"name\": \"Cy\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r3\"}}" create r3 Cy'
is "$JAIL_RC" 0 "a second run: a delete and three creates, with their undo records" || jail_diag
B=$JAIL_RUN_ID
B_DIR=$JAIL_RUN_DIR

aj rollback "$B" --dry-run
like "$OUT" "4/4 +c-0 +crm.delete +held +approval-gated \(approvals.tools 'crm.restore'\): --approve c-0" \
        "--dry-run: the undo of an approval-gated tool is held" || op_diag

echo r2 >"$DB_B.fail"
aj rollback "$B" --apply
is "$RC" 1 "a failing step: exit 1" || op_diag
like "$OUT" "2/4 +c-2 +crm.create +failed: exit 3" "the failing step and its exit status" || op_diag
like "$OUT" "\| crm: cannot crm.delete r2: the record is locked" "its output (stderr too)"
like "$OUT" "stopped: 2 not run" "the steps after it are not run"
is "$(crm_check "$DB_B")" "r1=Ada,r2=Bob | delete r3 1/4 c-3 crm.create" "only the step before the failure was applied"
is "$(events_of rollback.step "$B_DIR" | jq -r 'select(.result == "failed") | "\(.exit_code) \(.output | @json)"')" \
        '3 "crm: cannot crm.delete r2: the record is locked\n"' "the failed step's event: its exit status and an excerpt of its output"

aj rollback "$B" --apply --keep-going
is "$RC" 1 "--keep-going with a failure and a held step: exit 1" || op_diag
like "$OUT" "4/4 +c-0 +crm.delete +held: approval-gated" "the gated step is held back" || op_diag
is "$(crm_check "$DB_B")" "r2=Bob | delete r3 1/4 c-3 crm.create; delete r1 3/4 c-1 crm.create" \
        "--keep-going goes on after the failure; c-3 is not applied twice; the gated undo is not run"
is "$(events_of rollback.step "$B_DIR" | jq -r 'select(.result == "held") | .["gen_ai.tool.call.id"]')" c-0 \
        "the held step is recorded"

rm -f "$DB_B.fail"
aj rollback "$B" --apply
is "$RC" 1 "without --approve the gated step still holds the rollback (exit 1)" || op_diag
is "$(crm_check "$DB_B")" " | delete r3 1/4 c-3 crm.create; delete r1 3/4 c-1 crm.create; delete r2 2/4 c-2 crm.create" \
        "--apply again continues with what is left"
aj rollback "$B" --apply --approve c-9
is "$RC" 1 "--approve of a call with no undo record is refused" || op_diag
like "$ERR" "--approve c-9: no undo record of the run has that call id" "and says so"
aj rollback "$B" --apply --approve c-0
is "$RC" 0 "--approve runs the gated step: every step applied" || op_diag
is "$(crm_check "$DB_B")" "r0=Old | delete r3 1/4 c-3 crm.create; delete r1 3/4 c-1 crm.create; delete r2 2/4 c-2 crm.create; restore r0 4/4 c-0 crm.delete" \
        "the approved undo restored the deleted record"
aj logs "$B" --verify
is "$RC" 0 "logs --verify still passes after four rollbacks" || op_diag
aj inspect "$B" --json
is "$(jq -r '[.rollback.steps[] | "\(.call_id):\(.result)"] | join(" ")' <<<"$OUT")" "c-3:ok c-2:ok c-1:ok c-0:ok" \
        "run.json: each step's last outcome" || op_diag

# ------------------------------------------------------------------ an undo's tool spelt otherwise
# The handler here reads the undo record's tool as Go's encoding/json does (member names
# matched ignoring case, the last match winning): {"tool": "crm.delete", "Tool": "crm.restore"}
# is crm.restore to it, a gated tool, while the gate read crm.delete and ran the step unasked.
CASE_LOG=$TEST_TMP/case-handler.log
cat >"$TEST_TMP/case-handler.py" <<'PY'
import json, sys
step = json.load(sys.stdin)
tool = None
for key, value in step["undo"].items():
    if key.lower() == "tool":
        tool = value
with open(sys.argv[1], "a") as f:
    f.write(f"{tool} {step['call_id']}\n")
PY
PROFILE_C=$(write_profile rollback-c '{
  "extends": "default",
  "approvals": {"tools": ["crm.restore"]},
  "rollback": {"exec": ["/usr/bin/python3", "'"$TEST_TMP/case-handler.py"'", "'"$CASE_LOG"'"]}
}')
run_jail -p "$PROFILE_C" --name rb-case -- /bin/sh -c '
        agentjail meter tool crm.create --id c-1 --args "{\"id\": \"r1\"}" >/dev/null &&
        agentjail meter result c-1 --status ok --undo "{\"tool\": \"crm.delete\", \"Tool\": \"crm.restore\", \"arguments\": {\"id\": \"r1\"}}" >/dev/null'
is "$JAIL_RC" 0 "the agent reports an undo record naming its tool twice, in two spellings" || jail_diag
C=$JAIL_RUN_ID
aj rollback "$C" --dry-run
like "$OUT" "1/1 +c-1 +crm.create +held +approval-gated \(the undo record's tool not known\): --approve c-1" \
        "--dry-run: an undo record whose tool is spelt otherwise is held" || op_diag
aj rollback "$C" --apply
is "$RC" 1 "--apply without --approve: the step is held (exit 1)" || op_diag
ok "the handler did not run the gated tool unapproved" test ! -e "$CASE_LOG"
aj rollback "$C" --apply --approve c-1
is "$RC" 0 "--approve c-1 runs it" || op_diag
is "$(cat "$CASE_LOG" 2>/dev/null)" "crm.restore c-1" "what the operator approved: the handler's crm.restore"

# ------------------------------------------------------------------ an approval that is also a call id
# A bare id the agent reused is refused and CALL@RESULT_SEQ asked for; but the ids are the
# agent's, '@' and digits too: calls named "c-1@N" for every N near its own c-1's result seq
# made the operator's "--approve c-1@SEQ" approve the agent's "c-1@SEQ" and run its undo
# (with --keep-going here; without, when it comes before the other held steps: an agent that
# knows its seq names one call alone).
AT_LOG=$TEST_TMP/at-handler.log
PROFILE_D=$(write_profile rollback-d '{
  "extends": "default",
  "approvals": {"tools": ["crm.restore"]},
  "rollback": {"exec": ["/usr/bin/python3", "'"$TEST_TMP/case-handler.py"'", "'"$AT_LOG"'"]}
}')
run_jail -p "$PROFILE_D" --name rb-at -- /bin/sh -c '
        call() {
                agentjail meter tool "$2" --id "$1" >/dev/null &&
                agentjail meter result "$1" --status ok --undo "{\"tool\": \"crm.restore\", \"arguments\": {\"id\": \"$3\"}}" >/dev/null
        }
        call c-1 crm.delete r1 && call c-1 crm.delete r2 || exit 1
        n=1
        while [ $n -le 40 ]; do call "c-1@$n" notes.write EVIL || exit 1; n=$((n + 1)); done'
is "$JAIL_RC" 0 "the agent reuses c-1 and makes calls named c-1@1 to c-1@40" || jail_diag
D=$JAIL_RUN_ID
aj rollback "$D" --dry-run --json
SEQ=$(jq -r '[.steps[] | select(.call_id == "c-1")][0].result_seq' <<<"$OUT")
ok "c-1's newer step has a result seq among the agent's names ($SEQ)" test "$SEQ" -ge 1 -a "$SEQ" -le 40
aj rollback "$D" --apply --keep-going --approve "c-1@$SEQ"
is "$RC" 1 "--approve c-1@SEQ, also a call's id, is refused" || op_diag
like "$ERR" "is ambiguous" "and says it is ambiguous" || op_diag
ok "no undo ran: the agent's c-1@$SEQ was not approved in the operator's name" test ! -e "$AT_LOG"

# ------------------------------------------------------------------ a call id the operator pastes
# A held step's line suggests the option that approves it. The call id is the agent's: shown
# between double quotes, --approve "c-$(touch${IFS}FILE)" pasted into the operator's shell ran
# the agent's command (as root). Suggested as one shell word, it is the id again, nothing run.
PASTED=$TEST_TMP/pasted
PASTE_ID='c-$(touch${IFS}'"$PASTED"')`touch${IFS}'"$PASTED"'`'
run_jail -p "$PROFILE_D" --name rb-paste -- /bin/sh -c '
        agentjail meter tool crm.delete --id "$1" >/dev/null &&
        agentjail meter result "$1" --status ok --undo "{\"tool\": \"crm.restore\", \"arguments\": {\"id\": \"r1\"}}" >/dev/null' \
        sh "$PASTE_ID"
is "$JAIL_RC" 0 "the agent reports a call whose id is a shell command" || jail_diag
E=$JAIL_RUN_ID
aj rollback "$E" --dry-run
FRAG=$(grep -o -- "--approve .*" <<<"$OUT" | head -1)
like "$FRAG" "^--approve " "--dry-run suggests the option that approves the held step" || op_diag
PASTED_ARG=$(eval "set -- $FRAG" && printf '%s' "$2")
ok "the suggestion, pasted into a shell, runs nothing" test ! -e "$PASTED"
is "$PASTED_ARG" "$PASTE_ID" "and gives the call's id back whole" || op_diag
rm -f "$PASTED" "$AT_LOG"
aj rollback "$E" --apply --approve "$PASTED_ARG"
is "$RC" 0 "that id approves the step" || op_diag
is "$(cat "$AT_LOG" 2>/dev/null)" "crm.restore $PASTE_ID" "the handler ran the undo of the call named"

# ------------------------------------------------------------------ the agent's lies
# The call ids are the agent's: an undo record for a call never asked for, for a denied call,
# or with a second result names nothing that happened; the broker refuses it (naming the
# field and why), so it never reaches the journal and the handler never runs it (here each
# would delete a record that was there before the run). A failed call's undo record is left
# out unless --include-failed; an id with quotes and a bidi character is shown escaped.
DB_C=$WORKSPACE/crm-c.json
PROFILE_C=$(write_profile rollback-c '{
  "extends": "default",
  "tools": {"deny": ["crm.import"]},
  "rollback": {"exec": ["/usr/bin/python3", "'"$(undo_handler "$DB_C")"'", "undo"]}
}')
printf '{"records": {"r0": "Old", "r9": "Keep"}, "log": []}\n' >"$DB_C"
run_jail -p "$PROFILE_C" --name rb-lies -- /bin/sh -c "DB=$DB_C; $AGENT"'
        DEL0="{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r0\"}}"
        DEL9="{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r9\"}}"
        agentjail meter result ghost-1 --status ok --undo "$DEL9" >/dev/null 2>>"$DB.refused" && exit 20
        agentjail meter tool crm.import --id d-1 --args "{\"id\": \"r0\"}" >/dev/null && exit 21
        agentjail meter result d-1 --status ok --undo "$DEL0" >/dev/null 2>>"$DB.refused" && exit 22
        crm_call c-1 crm.create "{\"id\": \"r1\", \"name\": \"Ada\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r1\"}}" create r1 Ada
        agentjail meter result c-1 --status ok --undo "$DEL0" >/dev/null 2>>"$DB.refused" && exit 23
        agentjail meter tool crm.create --id c-2 --args "{\"id\": \"r2\"}" >/dev/null || exit 24
        agentjail meter result c-2 --status error --undo "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r2\"}}" >/dev/null || exit 25
        EVIL=$(printf "q\"\$(id)\342\200\256x")
        crm_call "$EVIL" crm.create "{\"id\": \"r3\", \"name\": \"Cy\"}" "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r3\"}}" create r3 Cy'
is "$JAIL_RC" 0 "an agent reports undo records for a ghost call, a denied call, a call twice, a failed call" || jail_diag
C=$JAIL_RUN_ID
C_DIR=$JAIL_RUN_DIR
is "$(grep -c 'field "undo": call id' "$DB_C.refused")" 3 "the broker refuses the three forged undo records" \
        || diag "$(cat "$DB_C.refused")"
like "$(cat "$DB_C.refused")" 'call id "d-1" is no allowed call awaiting its result' "the refusal names the call and why"
is "$(events_of broker.error "$C_DIR" | grep -c 'field \\"undo\\": call id')" 3 "each refusal is recorded in the chain"
is "$(events_of tool.result "$C_DIR" | jq -r 'select(.undo != null) | .["gen_ai.tool.call.id"]' | head -2 | paste -sd' ')" \
        "c-1 c-2" "only the allowed calls' first results carry an undo record (none of the forged ones)"
is "$(events_of tool.result "$C_DIR" | jq -r 'select(.undo != null)' | jq -s length)" 3 "three undo records in all"
is "$(events_of tool.result "$C_DIR" | jq -r 'select(.["gen_ai.tool.call.id"] == "c-1") | .["gen_ai.tool.name"]' | head -1)" \
        crm.create "tool.result records the allowed call's tool"

aj rollback "$C" --dry-run
is "$RC" 0 "--dry-run of the lying run" || op_diag
like "$OUT" "2 undo records, newest first" "only the two allowed calls' first results are steps" || op_diag
like "$OUT" '1/2 +"q\\"\$\(id\)\\u202ex" +crm.create +run' "the agent's call id is shown escaped (quotes, bidi)" || op_diag
like "$OUT" "2/2 +c-1 +crm.create +run .*r1" "c-1's step is its first result's undo"
like "$OUT" "left out, not run: 0 orphans .*, 1 of failed calls" "nothing forged reached the journal; the failed call is counted" || op_diag
like "$OUT" "c-2 +seq [0-9]+ +error +failed-call" "a failed call's undo record is left out"
aj rollback "$C" --dry-run --json
is "$(jq -r '[.left_out[] | "\(.call_id):\(.why)"] | join(" ")' <<<"$OUT")" "c-2:failed-call" \
        "--json: left_out lists it" || op_diag
aj rollback "$C" --apply --approve d-1
is "$RC" 1 "--approve of a refused call names no step" || op_diag
aj rollback "$C" --apply
is "$RC" 0 "--apply runs the two real steps" || op_diag
is "$(jq -r '.records | keys | join(",")' "$DB_C")" "r0,r9" \
        "the records that were there before the run are untouched; the agent's are undone" || op_diag
is "$(jq -r '.log | length' "$DB_C")" 2 "the handler ran twice, once per allowed call"
aj rollback "$C" --apply --include-failed
is "$RC" 0 "--include-failed runs the failed call's undo too" || op_diag
is "$(jq -r '.log[2]' "$DB_C")" "delete r2 2/3 c-2 crm.create (the call failed)" \
        "the handler is told the call's status" || op_diag

# A chain changed after the run is trusted for nothing: rollback refuses to plan from it.
cp "$C_DIR/events.jsonl" "$TEST_TMP/events.keep"
sed -i '0,/"crm.create"/s//"crm.createX"/' "$C_DIR/events.jsonl"
aj rollback "$C" --dry-run
is "$RC" 1 "a broken chain: rollback refuses" || op_diag
like "$ERR" "the event chain is broken .*nothing is planned" "and says why" || op_diag
cp "$TEST_TMP/events.keep" "$C_DIR/events.jsonl"

# More undo records than one rollback plans: the broker refuses the one past the limit,
# naming the field; the run's plan is whole.
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$WORKSPACE/client.py"
PROFILE_D=$(write_profile rollback-d '{"extends": "default", "logs": {"reports_per_sec": 1000000}}')
run_jail -p "$PROFILE_D" --name rb-many -- python3 ./client.py results 4100 1
is "$JAIL_RC" 0 "an agent sends 4100 results with undo records" || jail_diag
is "$(grep -c 'ok=true' <<<"$JAIL_OUT")" 4096 "the broker takes 4096 of them"
is "$(grep -c 'code=bad_request' <<<"$JAIL_OUT")" 4 "and refuses the rest"
like "$(events_of broker.error "$JAIL_RUN_DIR" | head -1)" 'field \\"undo\\": this run has recorded 4096 undo records' \
        "the refusal names the field"
aj rollback rb-many --dry-run --json
is "$RC" 0 "the plan of such a run is not refused" || op_diag
is "$(jq -r '"\(.steps | length) \(.left_out | length)"' <<<"$OUT")" "4096 0" \
        "every undo record the broker took is a step" || op_diag

# ------------------------------------------------------------------ refusals
aj rollback "$B" --keep-going
is "$RC" 2 "--keep-going without --apply is a usage error"
aj rollback rb-none --apply
is "$RC" 1 "an unknown run" || op_diag
run_jail --name rb-nohandler -- /bin/sh -c '
        agentjail meter tool crm.create --id c-1 >/dev/null &&
        agentjail meter result c-1 --status ok --undo "{\"tool\": \"crm.delete\", \"arguments\": {\"id\": \"r1\"}}" >/dev/null'
aj rollback rb-nohandler --apply
is "$RC" 1 "a run whose profile has no rollback.exec: --apply refuses" || op_diag
like "$ERR" "has no rollback.exec" "and says why"
aj rollback rb-nohandler --dry-run
is "$RC" 0 "--dry-run still shows its plan" || op_diag
like "$OUT" "no rollback.exec: nothing can be run" "and says nothing can run"

# ------------------------------------------------------------------ root and a user's records
# A state dir another user owns: root may read its records, but not run the handler its
# run.json names (the user can write any), which ran as root.
USER_STATE=$TEST_TMP/user-state
mkdir -p "$USER_STATE/runs"
U_RUN=$JAIL_RUN_ID # rb-nohandler's, which has an undo record
cp -a "$JAIL_RUN_DIR" "$USER_STATE/runs/"
jq --arg out "$TEST_TMP/as-root" '.profile.resolved.rollback.exec = ["/bin/sh", "-c", "id -u > " + $out]' \
        "$USER_STATE/runs/$U_RUN/run.json" >"$TEST_TMP/forged.json" && mv "$TEST_TMP/forged.json" "$USER_STATE/runs/$U_RUN/run.json"
chown -R 65534:65534 "$USER_STATE"
chmod 0700 "$USER_STATE"
AGENTJAIL_STATE_DIR=$USER_STATE aj rollback "$U_RUN" --dry-run
is "$RC" 0 "root reads a user's run's plan" || op_diag
AGENTJAIL_STATE_DIR=$USER_STATE aj rollback "$U_RUN" --apply
is "$RC" 1 "root's rollback --apply of a user's run is refused" || op_diag
like "$ERR" "refusing to act on the records .* uid 65534's.*run it as that user" "and says why" || op_diag
ok "the handler the user's record names did not run as root" test ! -e "$TEST_TMP/as-root"

done_testing
