#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail replay` (docs/replay.md): a scripted agent (Python urllib through the LLM
# gateway, its tool calls asked of the broker with `agentjail meter tool`) is recorded
# against the fake provider (tests/helpers/fake-llm.py over TLS on a test host) with
# the default "llm.record" ("digest": the response bodies, not the requests'), then
# replayed: under the same profile nothing changes and the
# provider is never contacted (its request log does not grow; no key is even set); under a
# profile that denies one tool exactly that verdict changes (exit 1); an agent that sends a
# request the recording lacks gets a 502, the miss is an event and nothing is sent; "full"
# keeps the request bodies too; a run recorded with "off" cannot be replayed and says why;
# a workspace that changed since the run started is refused unless --force; the original
# workspace is never touched. The starting workspace's digest is taken in the background
# once the command runs (never a start-up step): an overlay's equals its lower layer's, an
# in-place workspace the agent writes at once is either digested as it was or marked
# "changed", never given a wrong digest said complete; a tmpfs workspace is recorded
# "unsupported_fs" (its ctime proves nothing); an agent that swaps the workspace's ancestor
# for a symlink through a writable bind changes nothing the digest reads, and a replay
# refuses the symlinked path.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

FAKE="$AGENTJAIL_SOURCE_DIR/tests/helpers/fake-llm.py"
for t in python3 openssl jq; do
        if ! command -v $t >/dev/null; then
                skip "replay tests" "$t is needed"
                done_testing
        fi
done
if [[ $EUID -ne 0 ]]; then
        skip "replay tests" "an overlay workspace needs root"
        done_testing
fi

T="$TEST_TMP/rp"
mkdir -p "$T" "$T/scratch"
chmod 755 "$T"

test_host_up 203.0.113
is "$?" 0 "the fake provider's test host: a network namespace over a veth pair"
PH=$TH_IP
ok "a test CA and server certificate" mkcert "$T" "$PH"
AKEY="sk-ant-real-$RANDOM$RANDOM"
ip netns exec "$TH_NS" python3 "$FAKE" --bind "$PH" --port-file "$T/fake.port" --record "$T/record" \
        --cert "$T/srv.pem" --key "$T/srv.key" --anthropic-key "$AKEY" 2>"$T/fake.err" &
BG_PIDS+=("$!")
wait_file "$T/fake.port" || {
        fail "the fake provider starts" "$(cat "$T/fake.err")"
        done_testing
}
FP=$(cat "$T/fake.port")
export AJ_TEST_ANTHROPIC_KEY="$AKEY"

records() { [[ -f "$T/record" ]] && wc -l <"$T/record" || echo 0; }

LLM='"llm": {"providers": {"anthropic": {"url": "https://'$PH':'$FP'",
        "key_env": "AJ_TEST_ANTHROPIC_KEY", "ca_file": "'$T/ca.pem'"}}},
        "prices": {"claude-test": {"input": 1e-4, "output": 2e-4}}'
P=$(write_profile rp '{"extends": "default", '"$LLM"', "filesystem": {"workspace": {"path": ".", "mode": "overlay"}}}')
PSTRICT=$(write_profile rpstrict '{"extends": "./rp.json", "tools": {"deny": ["Write"]}}')
PHELD=$(write_profile rpheld '{"extends": "./rp.json", "approvals": {"tools": ["Write"]}}')
PNONCE=$(write_profile rpnonce '{"extends": "./rp.json", "env": {"set": {"AGENT_NONCE": "1"}}}')
PEXTRA=$(write_profile rpextra '{"extends": "./rp.json", "env": {"set": {"AGENT_EXTRA": "1"}}}')
PEXIT=$(write_profile rpexit '{"extends": "./rp.json", "env": {"set": {"AGENT_EXIT": "3"}}}')
PFULL=$(write_profile rpfull '{"extends": "./rp.json", "llm": {"record": "full"}}')
POFF=$(write_profile rpoff '{"extends": "./rp.json", "llm": {"record": "off"}}')
PRW=$(write_profile rprw '{"extends": "./rp.json", "filesystem": {"workspace": {"path": ".", "mode": "rw"}}}')

# The agent: a streamed greeting, a scripted tool call (Bash, from the model), a Write
# it decides itself, the tool's result back to the model; AGENT_EXTRA: one more request;
# AGENT_EXIT: the status it ends with.
cat >"$WORKSPACE/agent.py" <<'PY'
import json, os, subprocess, time, urllib.request, urllib.error
base = os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages"
hdr = {"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
       "content-type": "application/json"}
def call(body):
    req = urllib.request.Request(base, data=json.dumps(body).encode(), headers=hdr, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
def tool(name, args):
    return subprocess.run(["agentjail", "meter", "tool", name, "--args", json.dumps(args)]).returncode == 0
greeting = {"model": "claude-test", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
if os.environ.get("AGENT_NONCE"):
    greeting["metadata"] = {"user_id": "nonce-%f" % time.time()}
st, text = call(greeting)
print("greeting", st, "message_stop" in text)
tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
msgs = [{"role": "user", "content": "<cmd>echo hello</cmd>"}]
st, text = call({"model": "claude-test", "max_tokens": 50, "tools": tools, "messages": msgs})
use = [b for b in json.loads(text)["content"] if b.get("type") == "tool_use"][0]
cmd = use["input"]["command"]
out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout if tool("Bash", {"command": cmd}) else "denied"
if tool("Write", {"path": "notes.txt"}):
    with open("notes.txt", "w") as f:
        f.write(out)
    print("wrote notes.txt")
else:
    print("Write denied")
msgs += [{"role": "assistant", "content": [use]},
         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": out}]}]
st, text = call({"model": "claude-test", "max_tokens": 50, "tools": tools, "messages": msgs})
print("final", st, json.loads(text)["content"][0]["text"])
if os.environ.get("AGENT_EXTRA"):
    st, text = call({"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "more"}]})
    print("extra", st, text)
raise SystemExit(int(os.environ.get("AGENT_EXIT", "0")))
PY
chmod 644 "$WORKSPACE/agent.py"

# replay ARGS...: `agentjail replay` without the provider's key; RC, OUT (stdout), ERR.
replay() {
        timeout -k 5 "$JAIL_TIMEOUT" env -u AJ_TEST_ANTHROPIC_KEY "$AGENTJAIL" replay --workdir "$T/scratch" "$@" \
                </dev/null >"$T/replay.out" 2>"$T/replay.err"
        RC=$?
        OUT=$(cat "$T/replay.out")
        ERR=$(cat "$T/replay.err")
        REPLAY_ID=$(jq -r '.run // empty' "$T/replay.out" 2>/dev/null)
        return 0
}
replay_diag() {
        diag "exit status: $RC"
        diag "stdout: $(head -c 2000 "$T/replay.out")"
        diag "stderr: $(head -c 2000 "$T/replay.err")"
}
replay_events() { jq -c "select(.type == \"$1\")" "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/events.jsonl"; }

# --- the recording
run_jail -p "$P" -- python3 agent.py
is "$JAIL_RC" 0 "the agent's run (overlay workspace, the default llm.record) ends well" || jail_diag
like "$JAIL_OUT" "final 200 RESULT 1 \\(ok\\): hello" "the scripted session ran through the gateway"
ORIG=$JAIL_RUN_ID
ORIG_DIR=$JAIL_RUN_DIR
is "$(jq -r '.workspace_start.complete' "$ORIG_DIR/run.json")" true "run.json records the starting workspace whole"
is "$(jq -r '.workspace_start.lower' "$ORIG_DIR/run.json")" "$WORKSPACE" "... and, overlay, its lower layer"
like "$(jq -r '.workspace_start.sha256' "$ORIG_DIR/run.json")" '^[0-9a-f]{64}$' "... with its digest"
is "$(jq -s '[.[] | select(.type == "llm.response")] | length' "$ORIG_DIR/events.jsonl")" 3 "three model calls"
is "$(jq -rs '[.[] | select(.type == "llm.response")][0].content_type' "$ORIG_DIR/events.jsonl")" \
        text/event-stream "llm.response records the response's content type"
ok "the response bodies are kept (llm/1.response)" test -s "$ORIG_DIR/llm/1.response"
[[ -e "$ORIG_DIR/llm/1.request.json" ]]
isnt "$?" 0 "... not the request bodies (\"digest\")"
[[ -e "$WORKSPACE/notes.txt" ]]
isnt "$?" 0 "the overlay kept the agent's write out of the workspace"
N=$(records)
is "$N" 3 "the provider saw three requests"

# --- replay under the same (resolved) profile: nothing changes, nobody is asked. Another run
# meanwhile holds the host ids the original had of its own (the pool's first slot, free again):
# the resolved profile showed ids left to the pool as set to its first one, so the replay pinned
# them and did not start while any other run held them.
start_jail_bg -p default --name holder -- sleep 60
HOLDER_DIR=$(wait_run_dir 10)
is "$(jq -r .host_uid "$HOLDER_DIR/run.json" 2>/dev/null)" "$(jq -r .host_uid "$ORIG_DIR/run.json")" \
        "another run holds the host ids the original run had" || cat "$TEST_TMP/bg.err"
replay "$ORIG" --json
is "$RC" 0 "a replay under the same profile exits 0" || replay_diag
isnt "$(jq -r .host_uid "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/run.json" 2>/dev/null)" \
        "$(jq -r .host_uid "$HOLDER_DIR/run.json" 2>/dev/null)" "... with host ids of its own, not the other run's"
kill -TERM "$BG_PID" 2>/dev/null
wait "$BG_PID" 2>/dev/null
is "$(jq -r '.changed' <<<"$OUT")" false "... changed: false"
is "$(jq -r '.changes | length' <<<"$OUT")" 0 "... no verdict changed"
is "$(records)" "$N" "... and the provider was never contacted (its request log did not grow)"
is "$(jq -r '.replay_of' "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/run.json")" "$ORIG" "the replay's run.json: replay_of"
is "$(replay_events llm.request | jq -r '.replay.match' | sort -u)" digest "every call was matched by its digest"
like "$(cat "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/stdout.log")" "final 200 RESULT 1 \\(ok\\): hello" \
        "the agent read the recorded answers"
like "$(cat "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/stdout.log")" "greeting 200 True" "a stream replayed whole (SSE)"
is "$(jq -r '.original.input_tokens == .replay.input_tokens and .original.output_tokens == .replay.output_tokens' \
        <<<"$OUT")" true "tokens of both runs are reported, the same"
is "$(jq -r '.replay.cost_usd > 0 and .replay.cost_usd == .original.cost_usd' <<<"$OUT")" true "... and their cost"
[[ -e "$WORKSPACE/notes.txt" ]]
isnt "$?" 0 "the original workspace was not touched"
is "$(find "$T/scratch" -mindepth 1 | wc -l)" 0 "the scratch workspace was removed"

# --- replay under a stricter profile: exactly the denied tool changed
replay "$ORIG" -p "$PSTRICT" --json
is "$RC" 1 "a replay under a profile denying Write exits 1" || replay_diag
is "$(jq -r '.changes | length' <<<"$OUT")" 1 "... exactly one verdict changed"
is "$(jq -r '.changes[0] | "\(.kind) \(.before) \(.after)"' <<<"$OUT")" "tool allow deny" "... a tool call: allow -> deny"
like "$(jq -r '.changes[0].subject' <<<"$OUT")" '^Write ' "... the Write call"
like "$(jq -r '.changes[0].reason' <<<"$OUT")" 'tools.deny' "... with the rule's reason"
is "$(records)" "$N" "... and the provider was never contacted"
replay "$ORIG" -p "$PSTRICT"
is "$RC" 1 "the table: exit 1 too"
like "$OUT" "1 verdict changed" "the table says how many verdicts changed"
like "$OUT" "tool +Write [0-9a-f]+ +allow .* deny" "... and shows the call"

# --- every verdict the same, but the command ends otherwise: that is a change too
replay "$ORIG" -p "$PEXIT" --json
is "$RC" 1 "a replay whose command ends with another status exits 1" || replay_diag
is "$(jq -r '.changes | map("\(.kind) \(.before) \(.after)") | join(",")' <<<"$OUT")" "exit 0 3" \
        "... its one change: the exit status, 0 -> 3"
is "$(jq -r '.replay.exit' <<<"$OUT")" 3 "... as its summary says"

# --- a recorded run as an eval case (agentjail eval's "run" source): the replay judged
cat >"$T/suite.json" <<EOF
{"name": "replayed", "cases": [
  {"name": "as recorded", "run": "$ORIG", "expect": {"exit": 0,
    "files": [{"path": "notes.txt", "matches": "hello"}],
    "events": [{"type": "tool.verdict", "fields": {"gen_ai.tool.name": "Write", "verdict": "allow"}}]}},
  {"name": "under the stricter profile", "run": "$ORIG", "profile": "$PSTRICT", "expect": {"exit": 0,
    "files": [{"path": "notes.txt", "exists": false}],
    "events": [{"type": "tool.verdict", "fields": {"gen_ai.tool.name": "Write", "verdict": "deny"}}]}},
  {"name": "expects the wrong thing", "run": "$ORIG", "expect": {"files": [{"path": "notes.txt", "exists": false}]}}
]}
EOF
timeout -k 5 120 env -u AJ_TEST_ANTHROPIC_KEY "$AGENTJAIL" eval "$T/suite.json" --json >"$T/eval.out" 2>"$T/eval.err"
RC=$?
is "$RC" 1 "agentjail eval of recorded runs: one case fails as it should (exit 1)" || diag "$(head -c 2000 "$T/eval.err")"
is "$(jq -r '[.cases[] | .result] | join(" ")' "$T/eval.out" 2>/dev/null)" "pass pass fail" \
        "... the replay as recorded and under the stricter profile pass, the wrong expectation fails" ||
        diag "$(head -c 3000 "$T/eval.out")"
like "$(jq -r '.cases[0].run' "$T/eval.out" 2>/dev/null)" '^[0-9a-f]{12}$' "... each case names its replay's run"
is "$(jq -r '.replay_of' "$AGENTJAIL_STATE_DIR/runs/$(jq -r '.cases[1].run' "$T/eval.out" 2>/dev/null)/run.json" 2>/dev/null)" \
        "$ORIG" "... a replay of the recorded run"
is "$(records)" "$N" "... and the provider was never contacted"

# --- a request whose body differs each time (a nonce) is answered by its position
replay "$ORIG" -p "$PNONCE" --json
is "$RC" 0 "a replay whose first request carries a nonce: nothing changed" || replay_diag
is "$(replay_events llm.request | jq -r '.replay.match' | tr '\n' ' ')" "position digest digest " \
        "the first call was matched by its position, the others by digest"
is "$(records)" "$N" "... and the provider was never contacted"

# --- a call now held for approval: reported held, the replay does not wait for an operator
SECONDS=0
replay "$ORIG" -p "$PHELD" --json
is "$RC" 1 "a replay under a profile holding Write for approval exits 1" || replay_diag
is "$(jq -r '.changes | map("\(.kind) \(.before) \(.after)") | join(",")' <<<"$OUT")" "tool allow held" \
        "... exactly that call: allow -> held"
cmp_num "$SECONDS" -lt 60 "... without waiting the profile's approval timeout"

# --- a cap the recorded run would have crossed: the breach and the event it happened at
# (a replay's breach kills its run, it does not wait frozen)
replay "$ORIG" --cap tool_calls=2 --json
is "$RC" 1 "a replay with --cap tool_calls=2 exits 1" || replay_diag
is "$(jq -r '[.changes[] | select(.kind == "cap")][0] | "\(.subject) \(.before) \(.after)"' <<<"$OUT")" \
        "tool_calls absent breach" "the diff shows the tool_calls cap breached"
is "$(jq -r '[.changes[] | select(.kind == "cap")][0].seq_after' <<<"$OUT")" \
        "$(replay_events cap.breach | jq -r .seq | head -1)" "... at the replay's cap.breach event"
is "$(jq -r '.run_status' <<<"$OUT")" 123 "... the replayed run was killed (123), not left frozen"

BREACHED=$REPLAY_ID

# --- what a replay does not do on its own: run a quarantined run again, or write the
# host's real paths through the profile's rw binds (second attacker review)
replay "$BREACHED"
is "$RC" 125 "a replay of a quarantined run is refused (125)" || replay_diag
like "$ERR" "quarantined" "... saying it is quarantined (release it, or --force)"
mkdir -p "$T/rwb"
PRWB=$(write_profile rprwb '{"extends": "./rp.json", "filesystem": {"rw": ["'"$T"'/rwb"]}}')
replay "$ORIG" -p "$PRWB"
is "$RC" 125 "a replay under a profile with rw binds is refused (125)" || replay_diag
like "$ERR" "read-write" "... saying its tools would write the host's paths for real"
# The scratch dir is agentjail's own while the replay runs (it makes, writes and removes its
# copy and profile there as root): a bind that would hand the agent any of it but the copy is
# refused, rw (even with --force) or read-only, naming the profile field.
for mode in rw ro; do
        PSCR=$(write_profile "rpscr$mode" '{"extends": "./rp.json", "filesystem": {"'$mode'": ["'"$T"'/scratch"]}}')
        replay "$ORIG" -p "$PSCR" --force --json
        is "$(jq -r .run_status <<<"$OUT" 2>&1)" 125 "a replay under a profile binding its workdir $mode: its run is refused" ||
                replay_diag
        like "$ERR" "filesystem.$mode: refusing '$T/scratch': it contains '$T/scratch/agentjail-replay\.[^']*', agentjail replay's scratch dir" \
                "... naming the field and the scratch dir" || replay_diag
        is "$(ls -A "$T/scratch" 2>&1)" "" "... which is removed after"
done

# Whoever can write --workdir (a user owning TMPDIR, another jail's agent through a bind)
# swaps the scratch root for a symlink to a directory of the host's, here right when replay
# copies the workspace (a cp first on PATH makes the swap, then runs the real one): replay
# makes, copies, writes its profile, runs and removes through the root it made and holds,
# never by its path, so nothing lands where the symlink points.
VICTIM=$T/victim
mkdir -p "$T/fakebin" "$VICTIM"
cat >"$T/fakebin/cp" <<EOF
#!/bin/sh
for d in "$T/scratch"/agentjail-replay*; do
        [ -d "\$d" ] && [ ! -L "\$d" ] || continue
        mv "\$d" "\$d.moved" && ln -s "$VICTIM" "\$d"
done
exec $(command -v cp) "\$@"
EOF
chmod 755 "$T/fakebin/cp"
PATH_BEFORE=$PATH
export PATH=$T/fakebin:$PATH
replay "$ORIG" --json
export PATH=$PATH_BEFORE
is "$(ls -A "$VICTIM" 2>&1)" "" "a scratch root swapped for a symlink: nothing is made or written where it points" ||
        replay_diag
is "$RC" 0 "... the replay runs in the copy it made, as it would have" || replay_diag
like "$ERR" "Cannot remove the scratch workspace '$T/scratch/agentjail-replay\\.[^']*': Stale file handle" \
        "... and its removal leaves the symlink in its name, saying so" || replay_diag
is "$(find "$T/scratch" -mindepth 2 | wc -l)" 0 "... the root it made emptied, where it was moved"
rm -rf "$T/fakebin" "$VICTIM" "$T/scratch"/agentjail-replay*

# --- a request the recording lacks: a miss, a 502, nothing sent
replay "$ORIG" -p "$PEXTRA" --json
is "$RC" 1 "a replay whose agent sends an unrecorded request exits 1" || replay_diag
is "$(jq -r '[.changes[] | select(.kind == "model_call" and .after == "miss")] | length' <<<"$OUT")" 1 \
        "the diff shows the miss"
is "$(replay_events llm.replay_miss | wc -l)" 1 "an llm.replay_miss event"
like "$(cat "$AGENTJAIL_STATE_DIR/runs/$REPLAY_ID/stdout.log")" "extra 502 .*recorded no response" \
        "the agent got a 502 in the provider's shape"
is "$(records)" "$N" "the missing request was not sent to the provider"

# --- "full" keeps the requests too, and replays the same
run_jail -p "$PFULL" -- python3 agent.py
is "$JAIL_RC" 0 "a run recorded with \"full\"" || jail_diag
ok "... keeps the request bodies (llm/1.request.json)" test -s "$JAIL_RUN_DIR/llm/1.request.json"
ok "... and the response bodies" test -s "$JAIL_RUN_DIR/llm/3.response"
replay "$JAIL_RUN_ID" --json
is "$RC" 0 "... and replays with nothing changed" || replay_diag

# --- what cannot be replayed says why
run_jail -p "$POFF" -- python3 agent.py
is "$JAIL_RC" 0 "a run recorded with \"off\"" || jail_diag
[[ -e "$JAIL_RUN_DIR/llm" ]]
isnt "$?" 0 "... keeps no body at all"
is "$(jq -r '.workspace_start // "none"' "$JAIL_RUN_DIR/run.json")" none "... nor a digest of its workspace"
replay "$JAIL_RUN_ID"
is "$RC" 125 "... cannot be replayed (125)"
like "$ERR" 'kept no response bodies \(its llm.record was "off", which keeps digests only\).*"record": "digest"\} \(the default\)' \
        "... the error names the mode it had and the one needed"

run_jail -p "$PRW" -- python3 agent.py
is "$JAIL_RC" 0 "a run writing its workspace in place" || jail_diag
RW=$JAIL_RUN_ID
replay "$RW"
is "$RC" 125 "... is refused: the workspace changed since it started"
like "$ERR" "not as it started: it changed since the run started" "... and says so"
rm -f "$WORKSPACE/notes.txt"
replay "$RW" --json
is "$RC" 0 "with the workspace back as it was, the in-place run replays" || replay_diag

# --- the starting workspace's digest: never a start-up step, taken while the run goes on
run_jail -vv -- true
is "$JAIL_RC" 0 "a run without a gateway (-vv)" || jail_diag
like "$JAIL_ERR" "command let run" "... prints its steps"
unlike "$JAIL_ERR" "digest" "... and none of them hashes the workspace"
run_jail -vv -p "$P" -- true
is "$JAIL_RC" 0 "a run with the gateway (-vv)" || jail_diag
LET=$(grep -n "command let run" <<<"$JAIL_ERR" | head -1 | cut -d: -f1)
DIG=$(grep -n "workspace digest started in the background" <<<"$JAIL_ERR" | head -1 | cut -d: -f1)
cmp_num "${DIG:-0}" -gt "${LET:-999999}" "... starts the workspace's digest after the command was let run" ||
        diag "$JAIL_ERR"
like "$JAIL_ERR" "workspace digest of '$WORKSPACE': complete" "... and it completes in the background"
is "$(jq -r '.workspace_start | "\(.complete) \(.mode) \(.lower)"' "$JAIL_RUN_DIR/run.json")" "true overlay $WORKSPACE" \
        "run.json: the overlay's lower layer, digested whole"

# An in-place workspace the agent writes at once, while the digest is taken: the digest is
# the tree as it was (the one an overlay run of a pristine copy records) or "changed".
RACE="$T/race"
mkdir -p "$RACE"
chmod 755 "$RACE"
python3 - "$RACE" <<'PY'
import os, sys
for i in range(3000):
    with open(os.path.join(sys.argv[1], "f%04d" % i), "w") as f:
        f.write(("%d\n" % i) * 800)
with open(os.path.join(sys.argv[1], "zz.txt"), "w") as f:
    f.write("start\n")
PY
cp -a "$RACE" "$T/pristine"
PRACE=$(write_profile rprace '{"extends": "./rp.json", "filesystem": {"workspace": {"path": ".", "mode": "rw"}}}')
pushd "$T/pristine" >/dev/null
sleep 0.1
run_jail -p "$P" -- true
popd >/dev/null
REF=$(jq -r 'select(.workspace_start.complete == true) | .workspace_start.sha256' "$JAIL_RUN_DIR/run.json")
like "$REF" '^[0-9a-f]{64}$' "an overlay run of a pristine copy: its complete digest" ||
        diag "$(jq -c .workspace_start "$JAIL_RUN_DIR/run.json")"
sleep 0.1
pushd "$RACE" >/dev/null
for i in 1 2 3; do
        run_jail -p "$PRACE" -- sh -c 'echo more >>zz.txt'
        is "$JAIL_RC" 0 "in place, the agent appends to a file at once (run $i)" || jail_diag
        WS=$(jq -c .workspace_start "$JAIL_RUN_DIR/run.json")
        WHY="changed since the run started"
        case "$(jq -r '"\(.complete) \(.cut_at)"' <<<"$WS")" in
        "true null") is "$(jq -r .sha256 <<<"$WS")" "$REF" "... a digest said complete is the tree's before the run" ;;
        "false changed")
                is "$(jq -r .changed <<<"$WS")" zz.txt "... or it is marked changed, naming the file"
                WHY="no whole digest .*changed while its digest was taken"
                ;;
        *) fail "... a complete digest or one marked changed" "$WS" ;;
        esac
        replay "$JAIL_RUN_ID"
        is "$RC" 125 "... and its replay is refused (the workspace is not as it started)" || replay_diag
        like "$ERR" "$WHY" "... saying why"
        cp -a "$T/pristine/zz.txt" zz.txt
        sleep 0.1
done
popd >/dev/null

# An in-place workspace on tmpfs: its ctime does not prove it unchanged (a write through a
# shared mapping stamps nothing there), so its digest is never said complete.
TMPWS="$T/tmpws"
mkdir -p "$TMPWS"
if mount -t tmpfs -o size=4m,mode=0755 ajtest "$TMPWS"; then
        echo start >"$TMPWS/a.txt"
        # Before Linux 6.3 tmpfs cannot be idmapped: a plain bind then (allowed here).
        PTMP=$(write_profile rptmp '{"extends": "./rp.json", "allow_degraded": ["idmap"],
                "filesystem": {"workspace": {"path": ".", "mode": "rw"}}}')
        pushd "$TMPWS" >/dev/null
        run_jail -p "$PTMP" -- true
        popd >/dev/null
        is "$JAIL_RC" 0 "a run in place on a tmpfs workspace" || jail_diag
        is "$(jq -r '.workspace_start | "\(.complete) \(.cut_at) \(.fs)"' "$JAIL_RUN_DIR/run.json")" \
                "false unsupported_fs tmpfs" "... records no whole digest: the filesystem is named" ||
                diag "$(jq -c .workspace_start "$JAIL_RUN_DIR/run.json")"
        replay "$JAIL_RUN_ID"
        is "$RC" 125 "... and its replay is refused" || replay_diag
        like "$ERR" "filesystem whose change times cannot prove it unchanged" "... saying why"
        umount "$TMPWS"
else
        fail "a tmpfs for the workspace" "mount -t tmpfs failed"
fi

# A writable bind above the workspace: the agent swaps an ancestor for a symlink to a decoy.
# The digest is still of the directory the jail's mounts were checked with (recorded by its
# device and inode); a replay never follows the symlink now on the recorded path.
B="$T/above"
mkdir -p "$B/team/proj" "$B/decoy/proj"
chmod -R 755 "$B"
echo "the real start" >"$B/team/proj/real.txt"
echo "what the agent wants recorded" >"$B/decoy/proj/fake.txt"
PABOVE=$(write_profile rpabove '{"extends": "./rp.json", "filesystem": {"rw": ["'"$B"'"],
        "workspace": {"path": ".", "mode": "rw"}}}')
sleep 0.1
pushd "$B/team/proj" >/dev/null
run_jail -p "$PABOVE" -- sh -c "mv '$B/team' '$B/team.old' && ln -s '$B/decoy' '$B/team'; true"
popd >/dev/null
is "$JAIL_RC" 0 "an agent swaps the workspace's ancestor for a symlink to a decoy" || jail_diag
ok "... it did" test -L "$B/team"
WS=$(jq -c .workspace_start "$JAIL_RUN_DIR/run.json")
is "$(jq -r '"\(.complete) \(.ino)"' <<<"$WS")" "true $(stat -c %i "$B/team.old/proj")" \
        "the digest is whole and of the planned directory (its inode recorded)" || diag "$WS"
replay "$JAIL_RUN_ID" -p "$P"
is "$RC" 125 "... a replay while the path goes through the symlink is refused" || replay_diag
like "$ERR" "goes through a symlink now" "... saying so"
rm "$B/team" && mv "$B/team.old" "$B/team"
replay "$JAIL_RUN_ID" -p "$P"
is "$RC" 0 "... with the path back, it replays: the recorded digest was the real tree's" || replay_diag

# --- -p NAME is the profile found where the replay was asked for: the run loads it again in
# the scratch copy, whose ./profiles (last on the search path) is the recorded workspace's. A
# profile planted there under that name (it may set an alert command, run on the host) must
# not be the one the replay runs under.
OPS="$T/ops"
PLANTED="$T/planted"
mkdir -p "$OPS/profiles" "$PLANTED/profiles"
chmod 755 "$OPS" "$PLANTED"
printf '%s\n' '{"extends": "'"$P"'", "env": {"set": {"WHOSE": "the-operators"}}}' >"$OPS/profiles/rpops.json"
printf '%s\n' '{"extends": "'"$P"'", "env": {"set": {"WHOSE": "planted"}},
        "alert": {"exec": ["/bin/sh", "-c", "touch '"$T"'/planted-alert-ran"]}}' >"$PLANTED/profiles/rpops.json"
sleep 0.1
pushd "$PLANTED" >/dev/null
run_jail -p "$P" -- sh -c 'echo "whose=${WHOSE:-none}"'
popd >/dev/null
is "$JAIL_RC" 0 "a run in a workspace holding profiles/rpops.json" || jail_diag
pushd "$OPS" >/dev/null
replay "$JAIL_RUN_ID" -p rpops
popd >/dev/null
is "$RC" 0 "replay -p rpops, asked for where ./profiles/rpops.json is the operator's" || replay_diag
like "$ERR" "whose=the-operators" \
        "... runs under the operator's rpops, not the one the recorded workspace holds (the command's output)" ||
        replay_diag
[[ -e "$T/planted-alert-ran" ]]
isnt "$?" 0 "... and nothing of the planted profile ran"

# ... nor is a file its extends chain names: the run resolves `extends: "rpchainbase"` again in
# the scratch copy, and a recorded workspace whose profiles is a symlink to a directory
# elsewhere had it found there, a base nobody checked (its alert.exec run on the host). The
# replay finds the given profile's chain where it was asked for, and its run refuses another.
ELSEWHERE="$T/elsewhere"
LINKED="$T/linked"
mkdir -p "$ELSEWHERE" "$LINKED"
chmod 755 "$ELSEWHERE" "$LINKED"
printf '%s\n' '{"extends": "rpchainbase"}' >"$OPS/profiles/rpchain.json"
printf '%s\n' '{"extends": "'"$P"'", "env": {"set": {"WHOSE": "the-operators"}}}' >"$OPS/profiles/rpchainbase.json"
printf '%s\n' '{"extends": "'"$P"'", "env": {"set": {"WHOSE": "planted"}},
        "alert": {"exec": ["/bin/sh", "-c", "echo planted-alert"]}}' >"$ELSEWHERE/rpchainbase.json"
ln -sfn "$ELSEWHERE" "$LINKED/profiles"
sleep 0.1
pushd "$LINKED" >/dev/null
run_jail -p "$P" -- sh -c 'echo "whose=${WHOSE:-none}"'
popd >/dev/null
is "$JAIL_RC" 0 "a run in a workspace whose profiles is a symlink elsewhere" || jail_diag
pushd "$OPS" >/dev/null
replay "$JAIL_RUN_ID" -p rpchain
popd >/dev/null
is "$RC" 125 "replay -p rpchain, whose base the scratch copy's ./profiles names elsewhere: refused" || replay_diag
like "$ERR" "$OPS/profiles/rpchain\\.json: extends: the chain resolves to '$ELSEWHERE/rpchainbase\\.json', not '$OPS/profiles/rpchainbase\\.json' as agentjail replay found it where it was asked for" \
        "... naming the file it found and the one found where the replay was asked for" || replay_diag
unlike "$ERR" "whose=planted" "... the command never ran under the other base"

done_testing
