#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# An OpenAI Agents SDK app end to end (docs/agents.md's recipe): the official SDK for
# JavaScript (@openai/agents from the npm registry, installed by this test into a cache under
# the build dir and reused) runs tests/helpers/openai-agent.js in a jail with the node profile
# and `--llm openai`, against a scripted fake OpenAI Responses API (tests/helpers/fake-llm.py
# on a test host over TLS) served through the LLM gateway. The fake asks for a function_call
# of the app's save_note tool per <call>...</call> in the prompt, then answers with each
# function_call_output. The tool asks the broker first (`agentjail meter tool`). Checked as a
# user would: the app's final answer, the file its tool wrote, the model calls metered by the
# gateway (run.json, inspect), the tool call in the chain (tool.request, tool.verdict,
# tool.result named save_note), a tools.deny pattern turned into a denial the model reads, an
# approval gate, the placeholder key in the jail and the real one only at the provider, and
# the SDK's tracing export (to api.openai.com, which the jail does not reach) neither hanging
# nor failing the run. Then Codex CLI (@openai/codex, cached the same way) in `codex exec`
# against the same fake: its shell tool under the jail's policy, its model calls metered, and
# with its managed hooks (/etc/codex/requirements.toml) each command through the broker:
# allowed, denied by tools.deny, held for approval.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

FAKE="$AGENTJAIL_SOURCE_DIR/tests/helpers/fake-llm.py"
APP="$AGENTJAIL_SOURCE_DIR/tests/helpers/openai-agent.js"
for t in python3 openssl jq node npm; do
        if ! command -v $t >/dev/null; then
                # scripts/setup installs them all: a missing one is a broken test machine.
                fail "$t is installed (scripts/setup installs it)"
                done_testing
        fi
done

# --- the SDK from the npm registry, into a cache reused between runs. Versions pinned (the
# ones these tests were written against); AGENTJAIL_TEST_OPENAI_AGENTS tries another SDK.
SDK_VERSION=${AGENTJAIL_TEST_OPENAI_AGENTS:-0.20.0}
SDK_PKGS=("@openai/agents@$SDK_VERSION" openai@7.60.0 zod@4.6.7)
CACHE="${AGENTJAIL_BUILD_DIR:-$AGENTJAIL_SOURCE_DIR/build}/agent-cache/openai-agents-$SDK_VERSION"
sdk_ok() { [[ $(jq -r .version "$CACHE/node_modules/@openai/agents/package.json" 2>/dev/null) == "$SDK_VERSION" ]]; }
if ! sdk_ok; then
        mkdir -p "$CACHE"
        if ! npm_reachable "@openai/agents@$SDK_VERSION" "$TEST_TMP/npm.log"; then
                skip_all "the npm registry cannot be reached ($(npm_why "$TEST_TMP/npm.log"))"
        fi
        if ! (cd "$CACHE" && timeout 240 npm install --prefix . --no-audit --no-fund --no-save --silent \
                "${SDK_PKGS[@]}") >"$TEST_TMP/npm.log" 2>&1 || ! sdk_ok; then
                fail "npm install ${SDK_PKGS[*]}" "$(tail -c 1000 "$TEST_TMP/npm.log")"
                done_testing
        fi
fi
diag "@openai/agents $SDK_VERSION from $CACHE (node $(node --version))"

# --- the fake OpenAI API on a test host, over TLS with a test CA
T="$TEST_TMP/fake"
mkdir -p "$T"
chmod 755 "$T"
test_host_up 192.0.2
is "$?" 0 "the fake provider's test host: a network namespace over a veth pair"
ok "a test CA and server certificate" mkcert "$T" "$TH_IP"
OKEY="sk-openai-real-$RANDOM$RANDOM"
ip netns exec "$TH_NS" python3 "$FAKE" --bind "$TH_IP" --port-file "$T/fake.port" --record "$T/record" \
        --cert "$T/srv.pem" --key "$T/srv.key" --openai-key "$OKEY" 2>"$T/fake.err" &
BG_PIDS+=("$!")
wait_file "$T/fake.port" || {
        fail "the fake provider starts" "$(cat "$T/fake.err")"
        done_testing
}
FP=$(cat "$T/fake.port")
export AJ_TEST_OPENAI_KEY="$OKEY"

# The recipe: the node profile, the SDK where node finds it, the provider through the
# gateway, the SDK's tracing export off (it would post to api.openai.com).
cp "$APP" "$WORKSPACE/agent.js"
SDK_ENV='"NODE_PATH": "/opt/openai-agents/node_modules"'
LLM='"prices": {"gpt-test": {"input": 1e-6, "output": 2e-6, "web_search": 0.01}},
        "llm": {"providers": {"openai": {"url": "https://'$TH_IP:$FP'", "key_env": "AJ_TEST_OPENAI_KEY",
                                        "ca_file": "'$T/ca.pem'"}}}'
profile() { # NAME [EXTRA-JSON-MEMBERS]: a profile with the recipe's settings
        write_profile "$1" '{"extends": "node", "env": {"set": {'"$SDK_ENV"', "OPENAI_AGENTS_DISABLE_TRACING": "1"}},
                '"$LLM"' '"${2:+, $2}"'}'
}
P=$(profile agents)
SDK=(--llm openai --ro "$CACHE/node_modules:/opt/openai-agents/node_modules")
JAIL_TIMEOUT=60

# The requests the fake provider got (the Responses API only).
records() { grep -c '"path": "/v1/responses"' "$T/record" 2>/dev/null; }
last_body() { grep '"path": "/v1/responses"' "$T/record" | tail -1 | jq -r .body; }

# --- an allowed tool call: the broker says allow, the tool runs in the jail, the model gets
# its output and answers; the app also shows what it has for a key
n0=$(records)
start=$SECONDS
run_jail -p "$P" "${SDK[@]}" -- /bin/sh -c 'node agent.js "Save it: <call>save_note {\"file\": \"note.txt\", \"text\": \"from-the-agent\"}</call>" &&
        echo "key=$OPENAI_API_KEY base=$OPENAI_BASE_URL" && env'
diag "the app's run took $((SECONDS - start)) s"
is "$JAIL_RC" 0 "the Agents SDK app ran in the jail" || jail_diag
like "$JAIL_OUT" "FINAL: RESULT 1: saved 14 characters to note.txt" "the app's final output: the model's answer after the tool's output"
is "$(cat "$WORKSPACE/note.txt" 2>/dev/null)" from-the-agent "the file the tool wrote is in the workspace"
like "$JAIL_OUT" "key=agentjail-gateway-$JAIL_RUN_ID base=http://127.0.0.1:4100/openai/v1" \
        "the app has the placeholder key and the gateway's base URL"
like "$JAIL_OUT" "OPENAI_API_KEY=agentjail-gateway-" "the jail's environment, printed..."
unlike "$JAIL_OUT" "$OKEY" "... has the real key in none of its variables"
n1=$(records)
is "$((n1 - n0))" 2 "the fake provider got the SDK's two Responses calls (the function_call, then the answer)"
is "$(events_of llm.refused | jq -c '[.method, .path, .status, .reason]')" "" \
        "none of the app's requests was refused by the gateway (the key's default reach)"
LAST=$(grep '"path": "/v1/responses"' "$T/record" | tail -1)
is "$(jq -r .body <<<"$LAST" | jq -c '[.input[] | select(.type == "function_call_output") | .output]')" \
        '["saved 14 characters to note.txt"]' "the last request carries the tool's output"
is "$(jq -r .body <<<"$LAST" | jq -c '[.tools[].name]')" '["save_note"]' "... and offers the function tool"
like "$(jq -c '.headers[] | select(.[0] | ascii_downcase == "authorization") | .[1]' <<<"$LAST")" "\"Bearer $OKEY\"" \
        "the gateway put the real key on the SDK's requests"
unlike "$(cat "$JAIL_RUN_DIR"/*.log "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null)" "$OKEY" "the key is in none of the run's records"
# The model calls metered by the gateway.
is "$(jf '.llm.openai["gpt-test"].requests')" 2 "run.json: both model calls metered"
is "$(jf '.llm.openai["gpt-test"]["gen_ai.usage.input_tokens"]')" 40 "run.json: the input tokens the provider reported (20 a call)"
aj inspect "$JAIL_RUN_ID"
like "$OUT" "openai +gpt-test +2 +40 +6 " "inspect: the app's model calls and tokens, measured by the gateway" || op_diag
is "$(events_of llm.response | jq -s -c '[.[] | .api] | unique')" '["openai.responses"]' "llm.response: the Responses API"
is "$(events_of llm.response | grep -c '"tool_calls":\["save_note"\]')" 1 "the model's function call is in an llm.response event"
# The tool call in the chain, under the tool's name and the model's call id.
REQ=$(events_of tool.request | head -1)
CALL=$(grep -o 'call_fake[0-9]*' <<<"$(jq -r .body <<<"$LAST")" | head -1)
is "$(jq -r '.["gen_ai.tool.name"]' <<<"$REQ")" save_note "tool.request: the tool's name"
is "$(jq -c '.["gen_ai.tool.call.arguments"]' <<<"$REQ")" '{"file":"note.txt","text":"from-the-agent"}' \
        "tool.request: the model's arguments"
is "$(jq -r '.["gen_ai.tool.call.id"]' <<<"$REQ")" "$CALL" "tool.request: the call id is the model's call_id"
is "$(events_of tool.verdict | jq -r .verdict)" allow "tool.verdict: allow"
is "$(events_of tool.result | jq -r '[.status, .["gen_ai.tool.call.id"]] | join(" ")')" "ok $CALL" "tool.result: ok, for the same call"
aj logs "$JAIL_RUN_ID"
like "$OUT" "tool\.request +gen_ai\.tool\.name=save_note gen_ai\.tool\.call\.id=$CALL " "agentjail logs shows the tool call" || op_diag

# --- a tools.deny pattern: the broker denies, the tool does not run, the model reads the
# denial as the tool's output (streaming this time)
PD=$(profile agents-deny '"tools": {"deny": ["save_*"]}')
run_jail -p "$PD" "${SDK[@]}" -- node agent.js --stream 'Save: <call>save_note {"file": "denied.txt", "text": "no"}</call>'
is "$JAIL_RC" 0 "the app ran (its tool call denied)" || jail_diag
like "$JAIL_OUT" 'FINAL: RESULT 1: agentjail denied the tool call save_note: tool "save_note" is denied by tools.deny "save_\*"' \
        "the model got the denial with the broker's reason, and said so"
ok "the denied tool did not run" test ! -e "$WORKSPACE/denied.txt"
is "$(last_body | jq -r '.stream')" true "the SDK streamed its requests"
like "$(last_body | jq -r '.input[] | select(.type == "function_call_output") | .output')" "denied by tools.deny" \
        "the denial reached the model as the function_call_output"
is "$(events_of tool.verdict | jq -r '[.["gen_ai.tool.name"], .verdict] | join(" ")')" "save_note deny" "tool.verdict: deny"
is "$(count_lines "$(events_of tool.result)")" 0 "no tool.result for a call that never ran"
is "$(jf '.llm.openai["gpt-test"].requests')" 2 "run.json: the streamed model calls metered too"
is "$(events_of llm.response | jq -s -c '[.[] | .relay] | unique')" '["completed"]' "every stream completed"

# --- an approval gate: the call waits for the operator, then runs
PA=$(profile agents-approve '"approvals": {"tools": ["save_note"], "timeout": "2m"}')
start_jail_bg -p "$PA" "${SDK[@]}" -- node agent.js 'Save: <call>save_note {"file": "approved.txt", "text": "yes"}</call>'
RA=$(wait_run_dir 20)
held=
for ((i = 0; i < 300; i++)); do
        held=$(jq -r 'select(.type == "approval.requested") | .["gen_ai.tool.call.id"]' "$RA/events.jsonl" 2>/dev/null)
        [[ -n $held ]] && break
        sleep 0.1
done
if [[ -n $held ]]; then
        ok "held: the tool has not run while its call waits" test ! -e "$WORKSPACE/approved.txt"
        aj approve "${RA##*/}" "$held"
        is "$RC" 0 "agentjail approve RUN $held" || op_diag
        wait_exit "$BG_PID" 30
        is "$WAIT_RC" 0 "the app finished after the approval"
        like "$(cat "$TEST_TMP/bg.out")" "FINAL: RESULT 1: saved 3 characters to approved.txt" "... with the tool's output"
        is "$(cat "$WORKSPACE/approved.txt" 2>/dev/null)" yes "the approved tool ran"
else
        fail "the tool call is held for approval" "$(cat "$TEST_TMP/bg.err")"
        aj kill "${RA##*/}"
        wait_exit "$BG_PID" 20
fi

# --- tracing left on (the SDK's default): its exporter posts to api.openai.com, which the
# jail does not reach; the run neither hangs nor fails, and nothing of it reaches the model's
# provider
PT=$(write_profile agents-tracing '{"extends": "node", "env": {"set": {'"$SDK_ENV"'}}, '"$LLM"'}')
n0=$(records)
start=$SECONDS
run_jail -p "$PT" "${SDK[@]}" -- node agent.js 'Save: <call>save_note {"file": "traced.txt", "text": "traced"}</call>'
took=$((SECONDS - start))
diag "with tracing on: $took s; the app's stderr: $(head -c 600 <<<"$JAIL_ERR")"
is "$JAIL_RC" 0 "with the SDK's tracing on, the app still succeeds" || jail_diag
like "$JAIL_OUT" "FINAL: RESULT 1: saved 6 characters to traced.txt" "... with its answer"
cmp_num "$took" -le 30 "... and does not hang on the unreachable tracing endpoint"
is "$(($(records) - n0))" 2 "the provider got the model calls only"
unlike "$(grep -v '"path": "/v1/responses"' "$T/record" 2>/dev/null)" "traces" "no trace reached the provider"

# --- Codex CLI (@openai/codex from the npm registry, its native binary) in `codex exec`,
# against the same fake through the gateway: a provider of Codex's own config pointing at
# $OPENAI_BASE_URL with the placeholder key (Codex's built-in provider ignores both), over
# HTTPS (the gateway relays no WebSocket). Its shell tool (exec_command, "Bash" to hooks)
# runs under the jail's policy; with Codex's managed hooks (/etc/codex/requirements.toml,
# bound read-only) each call asks the broker through `agentjail meter hook codex`.
CX_VERSION=${AGENTJAIL_TEST_CODEX:-0.171.0}
CX_CACHE="${AGENTJAIL_BUILD_DIR:-$AGENTJAIL_SOURCE_DIR/build}/agent-cache/codex-$CX_VERSION"
cx_bin() {
        local arch triple
        case $(uname -m) in
        x86_64) arch=x64 triple=x86_64-unknown-linux-musl ;;
        aarch64) arch=arm64 triple=aarch64-unknown-linux-musl ;;
        *) return 1 ;;
        esac
        local b="@openai/codex-linux-$arch/vendor/$triple/bin/codex"
        [[ -x $CX_CACHE/node_modules/$b ]] && echo "$b"
}
if ! CX_BIN=$(cx_bin); then
        mkdir -p "$CX_CACHE"
        if ! (cd "$CX_CACHE" && timeout 300 npm install --prefix . --no-audit --no-fund --no-save --silent \
                "@openai/codex@$CX_VERSION") >"$TEST_TMP/npm.log" 2>&1 || ! CX_BIN=$(cx_bin); then
                fail "npm install @openai/codex@$CX_VERSION" "$(tail -c 1000 "$TEST_TMP/npm.log")"
                done_testing
        fi
fi
diag "Codex $CX_VERSION from $CX_CACHE"
PC=$(write_profile codex '{"extends": "node", '"$LLM"'}')
CODEX=(--llm openai --ro "$CX_CACHE/node_modules:/opt/codex/node_modules" -- "/opt/codex/node_modules/$CX_BIN" exec
        --skip-git-repo-check --sandbox danger-full-access -m gpt-test -c model_provider=agentjail
        -c 'model_providers.agentjail={name="agentjail", base_url="http://127.0.0.1:4100/openai/v1", env_key="OPENAI_API_KEY", wire_api="responses", supports_websockets=false}')
cat >"$TEST_TMP/codex-hooks.toml" <<'TOML'
[[hooks.PreToolUse]]
[[hooks.PreToolUse.hooks]]
type = "command"
command = "/opt/agentjail/bin/agentjail meter hook codex --wait 590"
timeout = 600

[[hooks.PostToolUse]]
[[hooks.PostToolUse.hooks]]
type = "command"
command = "/opt/agentjail/bin/agentjail meter hook codex"
timeout = 600
TOML
chmod 644 "$TEST_TMP/codex-hooks.toml"
HOOKS=(--ro "$TEST_TMP/codex-hooks.toml:/etc/codex/requirements.toml")

SECRET="host-secret-$RANDOM$RANDOM"
echo "$SECRET" >"$TEST_TMP/host-secret.txt"
n0=$(records)
start=$SECONDS
# Under a cost cap, as an operator runs it: every tool and member Codex sends must be priced
# by the gateway, or the call would be refused (Codex offers the Responses API's web search on
# every call: its fee is priced above, as docs/gateway.md asks of a capped profile).
run_jail -p "$PC" --cap cost_usd=10 "${CODEX[@]}" "Run <call>exec_command {\"cmd\": \"echo made-by-codex > codex.txt && id -u && hostname\"}</call>
<call>exec_command {\"cmd\": \"cat $TEST_TMP/host-secret.txt\"}</call>"
diag "Codex's run took $((SECONDS - start)) s"
is "$JAIL_RC" 0 "codex exec ran in the jail" || jail_diag
like "$JAIL_OUT" "RESULT 1: .*1000"$'\n'"agentjail" "its shell tool ran the first command in the jail (uid 1000, the jail's hostname)"
is "$(cat "$WORKSPACE/codex.txt" 2>/dev/null)" made-by-codex "the file the shell tool wrote is in the workspace"
like "$JAIL_OUT" "RESULT 2: .*host-secret.txt: No such file" "a host file outside the jail's view: not there for the shell tool"
unlike "$(cat "$T/record")" "$SECRET" "... its content never reached the model"
n1=$(records)
is "$((n1 - n0))" 3 "the fake provider got Codex's three Responses calls (a function_call per command, then the answer)"
is "$(events_of llm.refused | jq -c '[.method, .path, .status, .reason]')" "" \
        "none of Codex's requests was refused by the gateway (the key's default reach)"
diag "what the apps asked of the provider: $(jq -r '.method + " " + (.path | sub("\\?.*"; ""))' "$T/record" | sort | uniq -c | paste -sd, -)"
LAST=$(grep '"path": "/v1/responses"' "$T/record" | tail -1)
like "$(jq -c '.headers[] | select(.[0] | ascii_downcase == "authorization") | .[1]' <<<"$LAST")" "\"Bearer $OKEY\"" \
        "the gateway put the real key on Codex's requests"
unlike "$(cat "$JAIL_RUN_DIR"/*.log "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null)" "$OKEY" "the key is in none of the run's records"
is "$(jf '.llm.openai["gpt-test"].requests')" 3 "run.json: Codex's model calls metered"
aj inspect "$JAIL_RUN_ID"
like "$OUT" "openai +gpt-test +3 +60 +9 " "inspect: Codex's model calls and tokens, measured by the gateway" || op_diag
# (Codex hangs up once it has read response.completed, before the stream's last chunk: the
# relay may record "failed" while the response, and so its usage, was complete.)
is "$(events_of llm.response | jq -s -c '[.[] | select(.stream) | .outcome] | unique')" '["complete"]' \
        "Codex streamed its calls, each read to the end"
is "$(count_lines "$(events_of tool.request)")" 0 "without hooks, no tool call reached the broker"

# Codex's own sandbox (its default for exec: read-only) needs new namespaces, which the
# jail refuses: every command fails; hence --sandbox danger-full-access in the recipe.
CODEX_SB=("${CODEX[@]/#danger-full-access/read-only}")
run_jail -p "$PC" "${CODEX_SB[@]}" 'Run <call>exec_command {"cmd": "echo sandboxed > sandboxed.txt"}</call>'
is "$JAIL_RC" 0 "codex exec with its own sandbox ran" || jail_diag
ok "... but its sandbox could not start in the jail: the command did not run" test ! -e "$WORKSPACE/sandboxed.txt"
like "$JAIL_OUT" "RESULT 1: .*(namespace|sandbox)" "... and the model got the sandbox's error"

# Managed hooks: each shell command asks the broker first, and the file that installs them
# is read-only for the agent.
run_jail -p "$PC" "${HOOKS[@]}" "${CODEX[@]}" 'Run <call>exec_command {"cmd": "echo hooked > hooked.txt && echo x > /etc/codex/requirements.toml"}</call>'
is "$JAIL_RC" 0 "codex exec with the hooks in /etc/codex/requirements.toml ran" || jail_diag
is "$(cat "$WORKSPACE/hooked.txt" 2>/dev/null)" hooked "the broker's allow let the shell tool run"
like "$JAIL_OUT" "RESULT 1: .*requirements.toml: Read-only file system" "the agent cannot rewrite its hooks (read-only)"
REQ=$(events_of tool.request | head -1)
CALL=$(grep '"path": "/v1/responses"' "$T/record" | tail -1 | jq -r .body | grep -o 'call_fake[0-9]*' | head -1)
is "$(jq -r '.["gen_ai.tool.name"]' <<<"$REQ")" codex.Bash "tool.request: codex.Bash"
like "$(jq -c '.["gen_ai.tool.call.arguments"]' <<<"$REQ")" '"command":"echo hooked > hooked.txt' "tool.request: the shell command"
is "$(jq -r '.["gen_ai.tool.call.id"]' <<<"$REQ")" "$CALL" "tool.request: the call id is the model's call_id"
is "$(events_of tool.verdict | jq -r .verdict)" allow "tool.verdict: allow"
is "$(events_of tool.result | jq -r '[.status, .["gen_ai.tool.call.id"]] | join(" ")')" "ok $CALL" "tool.result: ok, through the PostToolUse hook"

# The gateway and the hook see each command (exec_command {"cmd"} at the gateway, codex.Bash
# {"command"} at the broker) under the model's call_id: counted once, the repeat streak
# growing once per command, so repeat_limit=2 stops the third identical command.
PCK=$(write_profile codex-kill '{"extends": "node", '"$LLM"', "on_breach": "kill"}')
REP='<call>exec_command {"cmd": "echo again >> codex-repeat.txt"}</call>'
run_jail -p "$PCK" --cap repeat_limit=2 "${HOOKS[@]}" "${CODEX[@]}" "Run $REP
$REP
$REP
$REP
$REP"
is "$JAIL_RC" 123 "five identical commands with the hooks under repeat_limit=2: the run is killed (on_breach kill)" || jail_diag
is "$(wc -l <"$WORKSPACE/codex-repeat.txt" 2>/dev/null)" 2 "... after the second: the third never ran"
like "$(events_of cap.breach)" '"cap":"repeat_limit"' "a repeat_limit breach"
is "$(events_of tool.verdict | jq -r '[.verdict, .counted_by] | join(" ")' | sort | uniq -c | sed 's/^ *//')" \
        "2 allow gateway" "each command's hook request: allowed, counted by the gateway already"
is "$(jf '.meters.tool_calls.used')" 2 "run.json: tool_calls counts each command once"
is "$(jf '.meters.repeat_limit.used')" 2 "run.json: the streak reached 2"

# A tools.deny pattern stops the command; the model reads the broker's reason.
PCD=$(write_profile codex-deny '{"extends": "node", '"$LLM"', "tools": {"deny": ["codex.Bash"]}}')
run_jail -p "$PCD" "${HOOKS[@]}" "${CODEX[@]}" 'Run <call>exec_command {"cmd": "echo denied > codex-denied.txt"}</call>'
is "$JAIL_RC" 0 "codex exec ran (its shell call denied)" || jail_diag
ok "the denied command did not run" test ! -e "$WORKSPACE/codex-denied.txt"
like "$(last_body | jq -r '.input[] | select(.type == "function_call_output") | .output')" 'codex\.Bash.*denied by tools\.deny' \
        "the model got the denial with the broker's reason"
is "$(events_of tool.verdict | jq -r '[.["gen_ai.tool.name"], .verdict] | join(" ")')" "codex.Bash deny" "tool.verdict: deny"
is "$(count_lines "$(events_of tool.result)")" 0 "no tool.result for a call that never ran"

# An approval gate: the first command waits for the operator and runs once approved, the
# second is denied with a reason, which the model reads.
PCA=$(write_profile codex-approve '{"extends": "node", '"$LLM"', "approvals": {"tools": ["codex.Bash"], "timeout": "2m"}}')
start_jail_bg -p "$PCA" "${HOOKS[@]}" "${CODEX[@]}" 'Run <call>exec_command {"cmd": "echo yes > codex-approved.txt"}</call>
<call>exec_command {"cmd": "echo no > codex-refused.txt"}</call>'
RA=$(wait_run_dir 20)
held_ids() { jq -r 'select(.type == "approval.requested") | .["gen_ai.tool.call.id"]' "$RA/events.jsonl" 2>/dev/null; }
for ((i = 0; i < 300; i++)); do
        [[ -n $(held_ids) ]] && break
        sleep 0.1
done
if [[ -n $(held_ids) ]]; then
        sleep 1
        ok "held: the command has not run while its call waits" test ! -e "$WORKSPACE/codex-approved.txt"
        aj approve "${RA##*/}" "$(held_ids | head -1)"
        is "$RC" 0 "agentjail approve RUN CALL" || op_diag
        for ((i = 0; i < 300; i++)); do
                (($(count_lines "$(held_ids)") >= 2)) && break
                sleep 0.1
        done
        aj deny "${RA##*/}" "$(held_ids | sed -n 2p)" --reason not-on-a-friday
        is "$RC" 0 "agentjail deny RUN CALL --reason ..." || op_diag
        wait_exit "$BG_PID" 60
        is "$WAIT_RC" 0 "Codex finished after the decisions"
        is "$(cat "$WORKSPACE/codex-approved.txt" 2>/dev/null)" yes "the approved command ran"
        ok "the denied command did not run" test ! -e "$WORKSPACE/codex-refused.txt"
        like "$(cat "$TEST_TMP/bg.out")" "RESULT 2: .*denied.*not-on-a-friday" "the model got the operator's reason"
else
        fail "Codex's shell call is held for approval" "$(cat "$TEST_TMP/bg.err")"
        aj kill "${RA##*/}"
        wait_exit "$BG_PID" 20
fi

done_testing
