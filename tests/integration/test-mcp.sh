#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail mcp`: an MCP server over stdio behind the broker, in real jails. First the
# relay with `cat` as the "server" (what it forwards comes back: hostile client input,
# fail-closed tools/call, the client closing, the server's exit status, signals); then the
# real @modelcontextprotocol/server-filesystem from the npm registry with the official SDK
# client (@modelcontextprotocol/sdk): tools/list without the denied tool, an allowed call
# and its result, a denied call's error, a call held until `agentjail approve`, the chain.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

P=$(write_profile mcp '{
  "extends": "node",
  "tools": { "deny": ["mcp.fs.write_file", "mcp.fs.move_*"] },
  "approvals": { "tools": ["mcp.fs.create_directory", "mcp.fs.hold_*"], "timeout": "60s" }
}')

# ----------------------------------------------------------- the relay, with cat as server
# Each line the relay forwards to `cat` comes back as a message from the server.
cat >"$WORKSPACE/hostile.jsonl" <<'EOF'
not json
[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}]
{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file","arguments":{}}}
{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"x"}}}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write_file","name":"read_file"}}
{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"read_file"}}
{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read file"}}
{"jsonrpc":"2.0","id":5,"method":"tools\/call","params":{"name":"move_file","arguments":{}}}
{"jsonrpc":"2.0","id":"p-6","method":"ping"}
{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"a\nb"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
EOF
run_jail -p "$P" -- /bin/sh -c 'agentjail mcp --name fs -- cat <hostile.jsonl; echo "rc=$?"'
is "$JAIL_RC" 0 "agentjail mcp with cat as the server runs in a jail" || jail_diag
reply() { grep -F "\"id\":$1," <<<"$JAIL_OUT" | head -1; }
is "$(grep '"id":null' <<<"$JAIL_OUT" | jq -r '.error.code' | sort | tr '\n' ' ')" "-32600 -32600 -32700 -32700 " \
        "not JSON and duplicate keys (-32700), a batch and an object id (-32600) are answered with id null"
like "$JAIL_OUT" 'batches are not supported' "the batch error says why"
is "$(reply 2 | jq -r .error.code)" -32001 "a denied tools/call: a JSON-RPC error, code -32001"
like "$(reply 2 | jq -r .error.message)" 'agentjail denied the tool call mcp.fs.write_file: tool "mcp.fs.write_file" is denied by tools.deny' \
        "its message has the broker's reason"
is "$(reply 2 | jq -r '.error.data.verdict')" deny "and its data the verdict"
like "$JAIL_OUT" '"code":-32700,"message":"agentjail mcp: not JSON[^"]*duplicate object key' \
        "duplicate keys (two tool names: which would the server read?) are refused as not JSON"
is "$(reply 4 | jq -r .error.code)" -32602 "a tool name with a space: invalid params, not forwarded"
is "$(reply 5 | jq -r .error.code)" -32001 "an escaped method (tools\\/call) is judged as tools/call"
is "$(grep -F '"p-6"' <<<"$JAIL_OUT")" '{"jsonrpc":"2.0","id":"p-6","method":"ping"}' "other requests pass (cat sends ping back)"
is "$(reply 7 | jq -r '.params.arguments.path')" $'a\nb' "an allowed tools/call reaches the server, its escapes intact"
like "$JAIL_OUT" '"method":"notifications/initialized"' "notifications pass"
unlike "$JAIL_OUT" '"name":"write_file"' "no denied or malformed call reached the server"
like "$JAIL_OUT" 'rc=0' "stdin closed: the server's stdin is closed, cat exits 0, so does the relay"
like "$JAIL_ERR" 'a tools/call without an id \(a notification\) is not forwarded' "the tools/call notification is dropped, said on stderr"
is "$(events_of tool.request | jq -r '.["gen_ai.tool.name"]' | sort | tr '\n' ' ')" \
        "mcp.fs.move_file mcp.fs.read_file mcp.fs.write_file " "the broker saw the well-formed calls, and only those"
is "$(events_of tool.verdict | jq -r 'select(.["gen_ai.tool.name"] == "mcp.fs.read_file") | .verdict')" allow \
        "tool.verdict allow for the allowed call"

# A server that exits, one killed by a signal, one that is not there; signals forwarded.
run_jail -p "$P" -- /bin/sh -c 'agentjail mcp -- sh -c "exit 7" </dev/null; echo "exit=$?"
        agentjail mcp -- sh -c "kill -KILL \$\$" </dev/null; echo "killed=$?"
        agentjail mcp -- "$(printf "/nonexistent\\033]0;x\\007")" </dev/null; echo "missing=$?"
        sleep 3 | agentjail mcp -- sh -c "trap \"exit 5\" TERM; while :; do sleep 0.05; done" & sleep 1; kill -TERM $!; wait $!
        echo "term=$?"'
like "$JAIL_OUT" 'exit=7' "the relay exits with the server's status"
like "$JAIL_OUT" 'killed=137' "a server killed by a signal: 128 + the signal"
like "$JAIL_OUT" 'missing=127' "a server that cannot be run: 127"
like "$JAIL_ERR" "cannot run '/nonexistent\\\\x1b\\]0;x\\\\x07'" "and it says so, its name escaped"
like "$JAIL_OUT" 'term=5' "SIGTERM to the relay reaches the server (its trap exits 5)"

run_jail -p "$P" -- /bin/sh -c 'env -u AGENTJAIL_BROKER agentjail mcp -- cat </dev/null; echo "rc=$?"'
like "$JAIL_OUT" 'rc=2' "without a broker the server is not started (exit 2)"
like "$JAIL_ERR" 'AGENTJAIL_BROKER is not set' "and it says why"

# A line over the cap (8 MiB) is refused and the relay goes on with the next.
run_jail -p "$P" -- /bin/sh -c '{ head -c 9000000 /dev/zero | tr "\0" x; echo; echo "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}"; } |
        agentjail mcp -- cat'
like "$JAIL_OUT" 'longer than 8 MiB' "an oversized line: an error to the client"
like "$JAIL_OUT" '"id":9,"method":"ping"' "the next line is relayed"

# A held call does not stop other traffic; approving it forwards it.
run_jail -p "$P" -- /bin/sh -c '
        mkfifo in; { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"hold_me\"}}"
                     echo "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}"; sleep 2; } >in &
        timeout 10 agentjail mcp --name fs -- cat <in >out.jsonl & sleep 1; cat out.jsonl; echo ---'
is "$(head -1 <<<"$JAIL_OUT")" '{"jsonrpc":"2.0","id":2,"method":"ping"}' "while a call is held, a later message is relayed"
is "$(events_of approval.requested | jq -r '.["gen_ai.tool.name"]')" mcp.fs.hold_me "the held call awaits approval"

# A held call the client cancels (an SDK's request timeout) is not made when approved later.
start_jail_bg -p "$P" -- /bin/sh -c '
        mkfifo in; { echo "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":{\"name\":\"hold_late\"}}"
                     sleep 0.5; echo "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":11}}"
                     sleep 3; } >in &
        agentjail mcp --name fs -- cat <in >cancel.jsonl; echo "rc=$?" >>cancel.jsonl'
RUN_DIR=$(wait_run_dir 10)
if wait_for_output "$WORKSPACE/cancel.jsonl" 'notifications/cancelled' 10; then
        CALL=$(events_of approval.requested "$RUN_DIR" | jq -r '.["gen_ai.tool.call.id"]')
        aj approve "${RUN_DIR##*/}" "$CALL"
        is "$RC" 0 "the operator approves the call the client has cancelled" || op_diag
        wait_exit "$BG_PID" 15
        unlike "$(cat "$WORKSPACE/cancel.jsonl")" 'hold_late' "the cancelled call is not made after the approval"
        like "$(cat "$WORKSPACE/cancel.jsonl")" 'rc=0' "the relay ends normally"
        is "$(events_of tool.result "$RUN_DIR" | jq -r --arg c "$CALL" 'select(.["gen_ai.tool.call.id"] == $c) | .status')" error \
                "the broker is told it ended (tool.result error)"
else
        fail "a held call, then its cancellation" "$(cat "$WORKSPACE/cancel.jsonl" "$TEST_TMP/bg.err" 2>/dev/null)"
fi
kill_bg

# A call nested deeper than the broker takes is refused alone: sent, the broker would answer
# it without an id (a request it could not read) and the relay would drop the connection,
# failing the calls waiting on it and cancelling the held one.
run_jail -p "$P" -- /bin/sh -c '
        mkfifo in; { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"hold_deep\"}}"
                     sleep 0.5; printf "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"read_file\",\"arguments\":{\"a\":"
                     for i in $(seq 70); do printf "["; done; for i in $(seq 70); do printf "]"; done; echo "}}}"; sleep 2; } >in &
        timeout 2 agentjail mcp --name fs -- cat <in; exit 0'
like "$(reply 2 | jq -r .error.message)" 'nest deeper than the broker takes' "a call nested past 64 levels: refused, saying why"
is "$(reply 1)" "" "the held call meanwhile still waits (no error: the relay's broker connection stayed)"
is "$(events_of broker.error | jq -r .message)" "" "the broker never saw the deep request"

# A server listing many long names, to many lists at once: the relay checks them with the
# broker a few at a time, so the broker never holds more unread replies than it keeps for a
# connection (it would close it, failing the listings and cancelling the held call).
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/mcp-hostile.py" "$WORKSPACE/"
run_jail -p "$P" -- python3 mcp-hostile.py 16
like "$JAIL_OUT" 'lists=16 filtered=16 errors=0' "16 listings of 1024 denied tools each: all filtered, none failed" ||
        diag "$JAIL_OUT $(tail -c 1500 <<<"$JAIL_ERR")"
like "$JAIL_OUT" 'held=waiting' "the call held for approval meanwhile still waits (the relay's broker connection stayed)"
is "$(events_of approval | jq -r '"\(.decision) \(.reason)"')" "cancelled the caller disconnected" \
        "it is cancelled once, when the client ends the relay"
# The relay's checks of the listings' tools are on the record, summed (one event a second at most).
is "$(events_of tool.checks | jq -s -c '[(map(.checks) | add), (map(.denied) | add), (map(.allowed) | add)]')" \
        "[16384,16368,16]" "the 16,384 checks of the listings' tools are recorded, summed: 16,368 denied, 16 allowed"
# Each written a second after the first check it counts (the last: at the run's end).
is "$(events_of tool.checks | jq -r .ts | python3 -c '
import sys, datetime
t = [datetime.datetime.fromisoformat(l.strip()[:26]).timestamp() for l in sys.stdin]
print(all(b - a >= 0.99 for a, b in zip(t, t[1:-1])) and len(t) >= 1)')" True \
        "in at most one tool.checks a second"
like "$(events_of tool.checks | head -1 | jq -r '.denied_names[0]')" '^mcp\.fs\.move_' "naming the denied tools checked"

# Only the response to a request in flight reaches the client, by its id exactly: a server
# answering "1" for a held call 1 (which the TypeScript SDK would take for its answer) or
# "2" for a tools/list 2 (unfiltered), or answering a request twice, is not passed on.
run_jail -p "$P" -- /bin/sh -c '
        mkfifo in; { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"hold_alias\"}}"
                     echo "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}"; sleep 2; } >in &
        timeout 2 agentjail mcp --name fs -- python3 mcp-hostile.py alias <in; exit 0'
is "$(jq -c . <<<"$JAIL_OUT")" '{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"kept","inputSchema":{}}]}}' \
        "a server's answers under another spelling of a pending id, and a second answer, are dropped" ||
        diag "$JAIL_ERR"
like "$JAIL_ERR" 'dropped from the server: a response to no request in flight' "each said on stderr"

# A server's error with id null (JSON-RPC 2.0 section 5: it could not read a request's id)
# answers no request, so the client gets it; a result with id null is still dropped.
run_jail -p "$P" -- /bin/sh -c '
        mkfifo in; { echo "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}"; sleep 2; } >in &
        timeout 2 agentjail mcp --name fs -- python3 mcp-hostile.py null-id <in; exit 0'
is "$(jq -c . <<<"$JAIL_OUT" | tr '\n' ' ')" \
        '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"unreadable id"}} {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"kept","inputSchema":{}}]}} ' \
        "a null-id error reaches the client, a null-id result does not" || diag "$JAIL_ERR"

# A tools/list response the filter cannot judge (a result that is not an object, its tools
# elsewhere or not an array, a result beside an error) is refused, not passed on
# unfiltered; a page of a paginated list is filtered like any, and list_changed passes (the
# client lists again, through the filter).
run_jail -p "$P" -- /bin/sh -c '
        mkfifo in; { for k in 0 1 2 3 4; do echo "{\"jsonrpc\":\"2.0\",\"id\":$k,\"method\":\"tools/list\"}"; done
                     sleep 2; } >in &
        timeout 2 agentjail mcp --name fs -- python3 mcp-hostile.py shapes <in; exit 0'
unlike "$JAIL_OUT" 'write_file' "no shape of a tools/list response carries a denied tool past the filter" ||
        diag "$JAIL_OUT"
is "$(jq -r 'select(.id != null) | "\(.id) \(.error.code // (.result.tools | map(.name) | join(",")))"' <<<"$JAIL_OUT" |
        tr '\n' ' ')" "0 -32603 1 -32603 2 -32603 3 -32603 4 kept " \
        "shapes without a tools array to judge: -32603; the paginated page: filtered" || diag "$JAIL_OUT"
like "$(jq -r 'select(.id == 0) | .error.message' <<<"$JAIL_OUT")" 'no tools array' "the error says why"
is "$(jq -r '.method // empty' <<<"$JAIL_OUT" | grep -c '^notifications/tools/list_changed$')" 5 "list_changed notifications pass"

# Each call in flight has a broker call id of its own: the ids 7 and "7" (both mcp-PID-7), a
# plain "g4" and the generated fourth (mcp-PID-g4) would name one call to the broker twice,
# which took the second for the first (one's result reported for the other).
cat >"$WORKSPACE/ids.jsonl" <<'EOF'
{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"a"}}}
{"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"read_file","arguments":{"path":"b"}}}
{"jsonrpc":"2.0","id":"g4","method":"tools/call","params":{"name":"read_file","arguments":{"path":"c"}}}
{"jsonrpc":"2.0","id":"a b","method":"tools/call","params":{"name":"read_file","arguments":{"path":"d"}}}
EOF
run_jail -p "$P" -- /bin/sh -c 'mkfifo in; { cat ids.jsonl; sleep 1; } >in &
        agentjail mcp --name fs -- sh -c "cat >/dev/null" <in'
IDS=$(events_of tool.request | jq -r '.["gen_ai.tool.call.id"]')
is "$(wc -l <<<"$IDS") $(sort -u <<<"$IDS" | wc -l)" "4 4" "four calls in flight, four broker call ids" ||
        diag "$IDS"
like "$(head -1 <<<"$IDS")" '^mcp-[0-9]+-7$' "the first keeps mcp-PID-ID"

# ------------------------------------------------- a real server and the official SDK client
CACHE=${AGENTJAIL_BUILD_DIR:-$AGENTJAIL_SOURCE_DIR/build}/npm-mcp
SERVER=$CACHE/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js
have_modules() { [[ -f $SERVER && -f $CACHE/node_modules/@modelcontextprotocol/sdk/package.json ]]; }
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        skip "the MCP SDK client and server-filesystem" "node and npm are needed (bash scripts/setup installs them)"
elif ! have_modules && ! npm_reachable @modelcontextprotocol/sdk@1 "$TEST_TMP/npm.log"; then
        skip "the MCP SDK client and server-filesystem" "the npm registry cannot be reached ($(npm_why "$TEST_TMP/npm.log"))"
elif ! have_modules && ! { mkdir -p "$CACHE" && timeout 150 npm install --prefix "$CACHE" --no-audit --no-fund --silent \
        @modelcontextprotocol/sdk@1 @modelcontextprotocol/server-filesystem >"$TEST_TMP/npm.log" 2>&1 && have_modules; }; then
        skip "the MCP SDK client and server-filesystem" "the npm registry cannot be reached: $(tail -c 300 "$TEST_TMP/npm.log")"
else
        cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/mcp-client.js" "$WORKSPACE/"
        echo "hello from the workspace" >"$WORKSPACE/hello.txt"
        start_jail_bg -p "$P" --ro "$CACHE" -- node mcp-client.js "$CACHE" "$WORKSPACE" full -- \
                agentjail mcp --name fs -- node "$SERVER" "$WORKSPACE"
        RUN_DIR=$(wait_run_dir 10)
        if wait_for_output "$TEST_TMP/bg.out" '^during-hold=' 60; then
                OUTPUT=$(cat "$TEST_TMP/bg.out")
                TOOLS=$(sed -n 's/^tools=//p' <<<"$OUTPUT")
                like ",$TOOLS," ',read_text_file,' "tools/list through the relay: the server's tools" || diag "$OUTPUT"
                unlike ",$TOOLS," ',write_file,' "tools/list hides write_file (tools.deny)"
                unlike ",$TOOLS," ',move_file,' "and move_file (tools.deny mcp.fs.move_*)"
                like ",$TOOLS," ',create_directory,' "a tool that needs approval is listed"
                like "$OUTPUT" 'read=hello from the workspace +isError=false' "an allowed call: its result reaches the SDK client"
                like "$OUTPUT" 'write-error=MCP error -32001: agentjail denied the tool call mcp.fs.write_file: tool "mcp.fs.write_file" is denied by tools.deny' \
                        "a denied call: the SDK client raises the error with the reason"
                ok "the denied write did not happen" test ! -e "$WORKSPACE/evil.txt"
                like "$OUTPUT" "during-hold=Allowed directories: $WORKSPACE" "a call made while another is held gets its answer"
                unlike "$OUTPUT" 'mkdir=' "the held call has no answer yet"
                ok "the held mkdir has not happened" test ! -e "$WORKSPACE/made"
                CALL=$(events_of approval.requested "$RUN_DIR" | jq -r '.["gen_ai.tool.call.id"]')
                like "$CALL" '^mcp-[0-9]+-[0-9]+$' "approval.requested names the call (mcp-PID-ID)"
                aj approve "${RUN_DIR##*/}" "$CALL"
                is "$RC" 0 "agentjail approve RUN $CALL" || op_diag
                wait_exit "$BG_PID" 30
                is "$WAIT_RC" 0 "the client finishes after the approval" || diag "$(cat "$TEST_TMP/bg.out" "$TEST_TMP/bg.err")"
                OUTPUT=$(cat "$TEST_TMP/bg.out")
                like "$OUTPUT" 'mkdir=Successfully created directory .*made +isError=false' "the approved call ran and answered"
                ok "the approved mkdir happened" test -d "$WORKSPACE/made"
                like "$OUTPUT" $'\n''closed' "the client closed the connection; the relay and server ended"

                # The chain: what the broker decided, by the mcp.SERVER.TOOL names.
                EV=$RUN_DIR/events.jsonl
                name_of() { jq -r --arg t "$1" 'select(.type == $t) | "\(.["gen_ai.tool.name"]) \(.verdict // .decision // "")"' "$EV"; }
                like "$(name_of tool.request)" 'mcp\.fs\.read_text_file' "tool.request mcp.fs.read_text_file"
                like "$(name_of tool.verdict)" 'mcp\.fs\.read_text_file allow' "tool.verdict allow for it"
                like "$(name_of tool.verdict)" 'mcp\.fs\.write_file deny' "tool.verdict deny for mcp.fs.write_file"
                like "$(name_of approval)" 'mcp\.fs\.create_directory approved' "approval approved for mcp.fs.create_directory"
                READ_ID=$(jq -r 'select(.type == "tool.request" and .["gen_ai.tool.name"] == "mcp.fs.read_text_file") | .["gen_ai.tool.call.id"]' "$EV")
                is "$(jq -r --arg c "$READ_ID" 'select(.type == "tool.result" and .["gen_ai.tool.call.id"] == $c) | .status' "$EV")" ok \
                        "tool.result ok for the read, by its call id"
                is "$(jq -r --arg c "$CALL" 'select(.type == "tool.result" and .["gen_ai.tool.call.id"] == $c) | .status' "$EV")" ok \
                        "tool.result ok for the approved mkdir"
                unlike "$(jq -r 'select(.type == "tool.request") | .["gen_ai.tool.name"]' "$EV")" 'list_tools|tools/list' \
                        "tools/list itself is no tool call"
                aj logs "${RUN_DIR##*/}"
                like "$OUT" 'tool\.verdict .*gen_ai\.tool\.name=mcp\.fs\.write_file verdict=deny' "agentjail logs shows the denial"
        else
                fail "the SDK client lists, calls and makes a call held for approval" \
                        "$(cat "$TEST_TMP/bg.out" "$TEST_TMP/bg.err" 2>/dev/null | head -c 3000)"
        fi
        kill_bg

        # The client outside, as in `agentjail run -- agentjail mcp -- SERVER`: the jail's
        # stdio is the MCP transport.
        OUTPUT=$(timeout 60 node "$WORKSPACE/mcp-client.js" "$CACHE" "$WORKSPACE" list-read -- \
                "$AGENTJAIL" run -p "$P" --ro "$CACHE" -- agentjail mcp --name fs -- node "$SERVER" "$WORKSPACE" 2>"$TEST_TMP/host.err")
        like "$OUTPUT" 'read=hello from the workspace' "a client on the host talks to the server in a jail" ||
                diag "$OUTPUT $(head -c 2000 "$TEST_TMP/host.err")"
        unlike "$(sed -n 's/^tools=//p' <<<"$OUTPUT")" 'write_file' "its tools/list is filtered too"
fi

done_testing
