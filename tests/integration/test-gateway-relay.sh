#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The LLM gateway's relay (src/gateway/) between real clients (curl, Python urllib, raw
# sockets) and a fake provider (tests/helpers/fake-llm.py) over TLS with a test CA made
# here: the real key is injected and the placeholder never forwarded, streams arrive
# incrementally, certificates are verified (untrusted CA, wrong name: 502), smuggling and
# oversized requests get 400/413/431, the observer's refusal has the provider's error
# shape, its cut ends the agent's response, keep-alive on both sides. No jail is started.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setup_dirs

HARNESS=${GATEWAY_RELAY_HARNESS:-$AGENTJAIL_BUILD_DIR/tests/gateway-relay-harness}
FAKE="$AGENTJAIL_SOURCE_DIR/tests/helpers/fake-llm.py"
for t in curl python3 openssl; do
        if ! command -v $t >/dev/null; then
                skip "gateway relay" "$t is needed"
                done_testing
        fi
done

T="$TEST_TMP/gw"
mkdir -p "$T"

# A test CA and a server certificate for localhost and 127.0.0.1 (never committed), and
# a second CA the gateway is not told about.
ok "a test CA and server certificate" mkcert "$T"


python3 "$FAKE" --port-file "$T/fake.port" --record "$T/record" --go "$T/go" \
        --cert "$T/srv.pem" --key "$T/srv.key" 2>"$T/fake.err" &
BG_PIDS+=("$!")
python3 "$FAKE" --port-file "$T/plain.port" --record "$T/record" 2>"$T/plain.err" &
BG_PIDS+=("$!")
wait_file "$T/fake.port" && wait_file "$T/plain.port" || {
        fail "the fake provider starts" "$(cat "$T/fake.err")"
        done_testing
}
FP=$(cat "$T/fake.port")
PP=$(cat "$T/plain.port")

printf '127.0.0.1 wrong.test\n' >"$T/hosts"
AGENTJAIL_HOSTS_FILE="$T/hosts" "$HARNESS" --port-file "$T/gw.port" --log "$T/calls" \
        --max-body 1048576 --max-connections 16 --response-timeout-ms 1500 \
        --provider "anthropic,anthropic,https://localhost:$FP,sk-ant-real,$T/ca.pem" \
        --provider "openai,openai,https://127.0.0.1:$FP/,sk-openai-real,$T/ca.pem" \
        --provider "untrusted,anthropic,https://localhost:$FP,sk-ant-real" \
        --provider "wrongname,anthropic,https://wrong.test:$FP,sk-ant-real,$T/ca.pem" \
        --provider "plain,anthropic,http://127.0.0.1:$PP,sk-ant-real" \
        --provider "closed,openai,http://127.0.0.1:1,sk-openai-real" 2>"$T/gw.err" &
BG_PIDS+=("$!")
wait_file "$T/gw.port" || {
        fail "the gateway starts" "$(cat "$T/gw.err")"
        done_testing
}
GW="http://127.0.0.1:$(cat "$T/gw.port")"

last_record() { tail -n 1 "$T/record"; }
# The value of a header in the last recorded request ('' if absent).
rec_header() {
        last_record | python3 -c 'import json,sys; r=json.load(sys.stdin); print(next((v for k,v in r["headers"] if k.lower()==sys.argv[1].lower()), ""))' "$1"
}
last_call() { tail -n 1 "$T/calls"; }

MSG='{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'

# --- non-streaming, key injection
out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: placeholder-key" \
        -H "anthropic-version: 2023-06-01" -H "content-type: application/json" -d "$MSG" -w '\n%{http_code}')
like "$out" '"text": "Hello!".*200$' "Anthropic non-streaming request relayed (200, body)"
is "$(rec_header x-api-key)" "sk-ant-real" "the real key is injected (x-api-key)"
is "$(rec_header anthropic-version)" "2023-06-01" "anthropic-version passed through"
is "$(rec_header host)" "localhost:$FP" "Host is the provider's"
is "$(rec_header accept-encoding)" "identity" "identity encoding asked of the provider"
unlike "$(last_record)" "placeholder-key" "the placeholder key is not forwarded"
unlike "$out" "sk-ant-real" "the real key is not in the response"
like "$(last_call)" "provider=anthropic outcome=completed status=200 path=/v1/messages" "on_done: completed"

out=$(curl -sS --max-time 10 "$GW/openai/v1/chat/completions" -H "Authorization: Bearer placeholder" \
        -H "content-type: application/json" -d '{"model":"gpt-test","messages":[]}' -w '\n%{http_code}')
like "$out" 'chat.completion.*200$' "OpenAI non-streaming request relayed"
is "$(rec_header authorization)" "Bearer sk-openai-real" "the real key is injected (Authorization: Bearer)"
is "$(rec_header x-api-key)" "" "no x-api-key to OpenAI"

out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages/count_tokens" -H "x-api-key: p" -d "$MSG")
like "$out" '"input_tokens": 12' "count_tokens relayed"

# --- streaming: the first event arrives before the provider sends the last
rm -f "$T/go"
out=$(python3 - "$GW" "$T/go" <<'PY' 2>&1
import sys, urllib.request, time
gw, go = sys.argv[1], sys.argv[2]
req = urllib.request.Request(gw + "/anthropic/v1/messages", method="POST",
    data=b'{"model":"wait-go","stream":true,"max_tokens":5,"messages":[]}',
    headers={"x-api-key": "placeholder", "content-type": "application/json"})
with urllib.request.urlopen(req, timeout=8) as r:
    first = r.readline()
    assert first.startswith(b"event: message_start"), first
    open(go, "w").close()   # only now may the provider send the last events
    rest = r.read().decode()
    assert "message_stop" in rest, rest
print("incremental")
PY
)
is "$out" "incremental" "a stream is relayed incrementally (first event before the last is sent)"
like "$(last_call)" "outcome=completed status=200" "the stream completed"

out=$(curl -sS -N --max-time 10 "$GW/openai/v1/chat/completions" -H "Authorization: Bearer x" \
        -d '{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true}}')
like "$out" '"usage": \{"prompt_tokens": 20.*data: \[DONE\]' "OpenAI stream relayed to the end"
out=$(curl -sS -N --max-time 10 "$GW/openai/v1/chat/completions" -H "Authorization: Bearer x" -d '{"model":"gpt-test","stream":true}')
unlike "$out" '"usage"' "... whose usage chunk comes only when asked for (as OpenAI's)"
out=$(curl -sS -N --max-time 10 "$GW/openai/v1/responses" -H "Authorization: Bearer x" -d '{"model":"tool-call","stream":true}')
like "$out" 'event: response.completed' "OpenAI Responses stream relayed"
out=$(curl -sS -N --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"tool-call","stream":true}')
like "$out" '"type": "tool_use".*input_json_delta.*"stop_reason": "tool_use"' "Anthropic tool_use stream relayed"

# --- TLS verification fails closed
out=$(curl -sS --max-time 10 "$GW/untrusted/v1/messages" -H "x-api-key: p" -d "$MSG" -w '\n%{http_code}')
like "$out" 'certificate verification failed.*502$' "an untrusted certificate: 502 with the reason"
like "$out" '"type":"error"' "... in Anthropic's error shape"
out=$(curl -sS --max-time 10 "$GW/wrongname/v1/messages" -H "x-api-key: p" -d "$MSG" -w '\n%{http_code}')
like "$out" 'certificate verification failed.*502$' "a certificate for another name: 502"
like "$(last_call)" "provider=wrongname outcome=failed" "on_done: failed"

# --- plain http upstream, chunked request body, body rewrite
out=$(curl -sS --max-time 10 "$GW/plain/v1/messages" -H "x-api-key: p" -H "Transfer-Encoding: chunked" \
        --data-binary "$MSG" -w '\n%{http_code}')
like "$out" '200$' "http:// provider with a chunked request body"
is "$(last_record | python3 -c 'import json,sys; print(json.load(sys.stdin)["body"])')" "$MSG" "the de-chunked body is forwarded whole"
curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-rewrite: 1" -d "$MSG" >/dev/null
is "$(last_record | python3 -c 'import json,sys; print(json.load(sys.stdin)["body"])')" '{"rewritten":true}' "on_request's replacement body is what is sent"

# --- a response the observer serves itself (the replay mode): read from memory as a
# provider's, re-framed, through back-pressure, and nothing is forwarded
n_before=$(wc -l <"$T/record")
out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-serve: 3000000" -d "$MSG" \
        -o "$T/served" -w '%{http_code}' --next "$GW/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-serve: 5" \
        -d "$MSG" -o "$T/served2" -w ' %{http_code}')
is "$out" "200 200" "a response served by the observer: 200, twice on one connection"
is "$(wc -c <"$T/served")" 3000000 "... whole (3 MB, more than the agent's queue holds)"
is "$(cat "$T/served2")" "xxxxx" "... and the next one on the same connection"
is "$(wc -l <"$T/record")" "$n_before" "... and nothing reached the provider"
like "$(last_call)" "outcome=completed" "on_done: completed"

# --- keep-alive: two requests on one agent connection reuse one upstream connection
before=$(wc -l <"$T/record")
v=$(curl -sv --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d "$MSG" -o /dev/null \
        --next "$GW/anthropic/v1/messages" -H "x-api-key: p" -d "$MSG" -o /dev/null 2>&1)
like "$v" "Re-using existing connection" "the agent's connection is kept alive"
ports=$(tail -n +$((before + 1)) "$T/record" | python3 -c 'import json,sys; print(len({json.loads(l)["port"] for l in sys.stdin}))')
is "$ports" "1" "... and so is the upstream connection"

# --- observer refusal in the provider's shape, and a cut
out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-refuse: 1" -d "$MSG" -w '\n%{http_code}')
like "$out" '^\{"type":"error","error":\{"type":"rate_limit_error","message":"agentjail: cost cap reached \(test\)"\}\}.429$' "refusal: 429, Anthropic's shape"
out=$(curl -sS --max-time 10 "$GW/openai/v1/chat/completions" -H "x-test-refuse: 1" -d '{}' -w '\n%{http_code}')
like "$out" '^\{"error":\{"message":"agentjail: cost cap reached \(test\)","type":"insufficient_quota","code":"insufficient_quota"\}\}.429$' "refusal: 429, OpenAI's shape"
like "$(last_call)" "outcome=refused" "on_done: refused"
n_before=$(wc -l <"$T/record")
curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-test-refuse: 1" -d "$MSG" >/dev/null
is "$(wc -l <"$T/record")" "$n_before" "a refused request never reaches the provider"

out=$(curl -sS -N --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-cut-after: 300" \
        -d '{"model":"m","stream":true}' 2>&1)
rc=$?
isnt "$rc" "0" "a cut ends the agent's response as incomplete (curl: $rc)"
like "$out" "message_start" "... after what was relayed before the cut"
unlike "$out" "message_stop" "... and nothing after it"
like "$(last_call)" "outcome=cut" "on_done: cut"

out=$(curl -sS -N --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"cut-halfway","stream":true}' 2>&1)
isnt "$?" "0" "a stream the provider cuts halfway ends the agent's response as incomplete"
like "$(last_call)" "outcome=failed" "on_done: failed"

out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"error-500"}' -w '\n%{http_code}')
like "$out" 'fake failure.*500$' "a provider's error is relayed as it is"

# --- failures of the provider
out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"bad-response"}' -w '\n%{http_code}')
like "$out" 'malformed response.*502$' "a malformed response head: 502"
out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"hang"}' -w '\n%{http_code}')
like "$out" 'did not answer in time.*504$' "a provider silent past the response timeout: 504"
out=$(curl -sS --max-time 10 "$GW/closed/v1/chat/completions" -d '{}' -w '\n%{http_code}')
like "$out" '"error":\{"message":"agentjail gateway: cannot connect.*"type":"api_error".*502$' "a closed port: 502 in OpenAI's shape"
rm -f "$T/go"
python3 - "$GW" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/anthropic/v1/messages", method="POST",
    data=b'{"model":"wait-go","stream":true}', headers={"x-api-key": "p"})
r = urllib.request.urlopen(req, timeout=8)
r.readline()
r.close()   # the agent goes away mid-stream
PY
for i in $(seq 50); do [[ "$(last_call)" == *"provider=anthropic outcome=cut status=200"* ]] && break; sleep 0.1; done
like "$(last_call)" "provider=anthropic outcome=cut status=200 .*agent_left$" "an agent that goes away mid-stream cuts the call short (not a failure), and the call says the agent left"
touch "$T/go"

# --- a large body arrives intact through the bounded buffers
sum=$(curl -sS --max-time 30 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"big-20000000"}' | sha256sum | cut -d' ' -f1)
want=$(python3 -c 'import hashlib; b=b"0123456789abcdef"*4096; n=20000000; h=hashlib.sha256(); exec("while n>0:\n h.update(b[:min(n,len(b))]); n-=min(n,len(b))"); print(h.hexdigest())')
is "$sum" "$want" "20 MB relayed intact"

# --- strict parsing: smuggling and limits
raw() {
        python3 - "$(cat "$T/gw.port")" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
req = eval(sys.argv[2])
try:
    s.sendall(req)
except OSError:
    pass
data = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except OSError:
    pass
print(data.split(b"\r\n", 1)[0].decode(errors="replace"))
PY
}
H='b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n'
like "$(raw "$H"'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"')" "^HTTP/1.1 400 " "Content-Length with Transfer-Encoding: 400"
like "$(raw "$H"'Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"')" "^HTTP/1.1 400 " "two Content-Lengths: 400"
like "$(raw "$H"'Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"')" "^HTTP/1.1 400 " "a bad chunk size: 400"
like "$(raw "$H"'Transfer-Encoding: chunked, identity\r\n\r\n"')" "^HTTP/1.1 400 " "a Transfer-Encoding other than chunked: 400"
like "$(raw "$H"'X: a\r\n folded\r\nContent-Length: 0\r\n\r\n"')" "^HTTP/1.1 400 " "an obs-fold line: 400"
like "$(raw "$H"'X: a\nContent-Length: 0\r\n\r\n"')" "^HTTP/1.1 400 " "a bare LF: 400"
like "$(raw "$H"'X: " + b"a" * 70000 + b"\r\n\r\n"')" "^HTTP/1.1 431 " "a 70 KB head: 431"
like "$(raw "$H"'Content-Length: 2000000\r\n\r\n"')" "^HTTP/1.1 413 " "a 2 MB body over a 1 MiB cap: 413"
like "$(raw "$H"'Transfer-Encoding: chunked\r\n\r\n100001\r\n" + b"a" * 1048577 + b"\r\n0\r\n\r\n"')" "^HTTP/1.1 413 " "a chunked body over the cap: 413"
like "$(raw 'b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"')" "^HTTP/1.1 400 " "a proxy-style request: 400"
like "$(raw 'b"GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n"')" "^HTTP/1.1 404 " "an unknown prefix: 404"

# --- the connection cap
out=$(python3 - "$(cat "$T/gw.port")" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
time.sleep(0.2)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
print(s.recv(4096).split(b"\r\n", 1)[0].decode())
PY
)
like "$out" "^HTTP/1.1 503 " "past max_connections: 503"
# The gateway takes the hang-ups at its next turns; a connection it accepts in the same turn
# may come first and get 503. Until one is served, 10 s at most (slots never freed fail).
for ((i = 0; i < 50; i++)); do
        out=$(curl -sS --max-time 10 "$GW/anthropic/v1/messages" -H "x-api-key: p" -d "$MSG" -w '%{http_code}' -o /dev/null)
        [[ $out == 200 ]] && break
        sleep 0.2
done
is "$out" "200" "closed connections free their slots"

# --- a filter: the agent gets what it forwards, chunked
"$HARNESS" --port-file "$T/gwf.port" --log "$T/calls-f" --filter 1 \
        --provider "anthropic,anthropic,https://localhost:$FP,sk-ant-real,$T/ca.pem" 2>"$T/gwf.err" &
BG_PIDS+=("$!")
if wait_file "$T/gwf.port"; then
        GWF="http://127.0.0.1:$(cat "$T/gwf.port")"
        out=$(curl -sS --max-time 10 "$GWF/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-filter: upper" -d "$MSG" -D -)
        like "$out" '"TEXT": "HELLO!"' "a filter rewrites the body on the way"
        like "$out" "Transfer-Encoding: chunked" "... sent chunked"
        out=$(curl -sS -N --max-time 10 "$GWF/anthropic/v1/messages" -H "x-api-key: p" -H "x-test-filter: hold" \
                -d '{"model":"m","stream":true}')
        like "$out" "message_start.*message_stop" "a filter holding the body back forwards it at the end"
        sum=$(curl -sS --max-time 30 "$GWF/anthropic/v1/messages" -H "x-api-key: p" -d '{"model":"big-20000000"}' | sha256sum | cut -d' ' -f1)
        is "$sum" "$want" "20 MB through a pass-through filter, intact"
else
        fail "the gateway with a filter starts" "$(cat "$T/gwf.err")"
fi

GW_PID=${BG_PIDS[2]}
ok "the gateway is still running" kill -0 "$GW_PID"
kill -TERM "$GW_PID"
wait "$GW_PID"
is "$?" "0" "the gateway exits cleanly on SIGTERM (freed with its connections)"
unlike "$(cat "$T/gw.err")" "." "the gateway printed nothing"

done_testing
