#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The LLM gateway in real runs: a fake provider (tests/helpers/fake-llm.py) over TLS with a
# test CA made here, on a test host in a network namespace (the gateway connects from the
# supervisor, on the host's side); the profile's providers point at it with ca_file. Jailed clients (curl,
# Python urllib) reach the gateway on the jail's own loopback and are metered exactly
# (events and run.json hold what the provider reported); streams work and an OpenAI chat
# stream's usage chunk is hidden from a client that did not ask for it; a cost cap freezes
# the run before the request that would cross it is forwarded (the provider never sees
# it); the key is nowhere in the jail (environment, /proc, files); a direct CONNECT to the
# provider's host through the egress proxy gets 403; "record": "full" keeps bodies with
# the key redacted; a missing key fails the run before it starts; a model asking for the same
# tool call again and again breaches repeat_limit, keyed as the broker keys its calls; what the
# provider says a call cost is a floor of its charge; an
# allow list of the broker's names leaves the model's calls counted and gated (tool_gate); a
# request for n answers is reserved for all of them (and an output limit written as a real
# at its value), and a background response or an API the gateway does not meter is refused
# under any cap; the web searches a request allows are reserved before it is forwarded, a Chat
# search model's one search is charged, and so are the provider's other tools billed per use;
# OpenRouter's web plugin, a stored prompt's tools, Anthropic's code execution and web_fetch
# max_uses are reserved, and a code interpreter container the provider starts itself counted;
# a request letting the provider fetch for the agent (web_fetch, an MCP server) outside the
# network allowlist is refused unless llm.provider_fetch; the key goes to the model calls and
# the model list only (the account's files, listed or deleted, a stored response, the batch
# API: 403, llm.refused, never at the provider) unless llm.providers.NAME.paths opens a path.
# A call in flight when a frozen run is killed is charged its worst case; a request body with
# a Content-Encoding is refused (415); an answer the gateway cannot read counts a tool call.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

FAKE="$AGENTJAIL_SOURCE_DIR/tests/helpers/fake-llm.py"
for t in curl python3 openssl jq; do
        if ! command -v $t >/dev/null; then
                skip "gateway tests" "$t is needed"
                done_testing
        fi
done

T="$TEST_TMP/gw"
mkdir -p "$T"
chmod 755 "$T"

# The provider is a test host in a network namespace of its own, over a veth pair (as root,
# as CI runs; else on the host's 127.0.0.1). Addresses from a documentation range.
PH=127.0.0.1
NETNS=()
if [[ $EUID -eq 0 ]]; then
        test_host_up 203.0.113
        is "$?" 0 "the fake provider's test host: a network namespace over a veth pair"
        PH=$TH_IP
        NETNS=(ip netns exec "$TH_NS")
fi
ok "a test CA and server certificate" mkcert "$T" "$PH"

AKEY="sk-ant-real-$RANDOM$RANDOM"
OKEY="sk-openai-real-$RANDOM$RANDOM"
"${NETNS[@]}" python3 "$FAKE" --bind "$PH" --port-file "$T/fake.port" --record "$T/record" --go "$T/go" \
        --cert "$T/srv.pem" --key "$T/srv.key" --anthropic-key "$AKEY" --openai-key "$OKEY" 2>"$T/fake.err" &
BG_PIDS+=("$!")
wait_file "$T/fake.port" || {
        fail "the fake provider starts" "$(cat "$T/fake.err")"
        done_testing
}
FP=$(cat "$T/fake.port")
export AJ_TEST_ANTHROPIC_KEY="$AKEY" AJ_TEST_OPENAI_KEY="$OKEY"

# USD per token: claude-test costs 1e-4 per input and 2e-4 per output token.
PRICES='"prices": {"claude-test": {"input": 1e-4, "output": 2e-4}, "gpt-test": {"input": 1e-6, "output": 2e-6}}'
PROVIDERS='"providers": {
        "anthropic": {"url": "https://'$PH':'$FP'", "key_env": "AJ_TEST_ANTHROPIC_KEY", "ca_file": "'$T/ca.pem'"},
        "openai": {"api": "openai", "url": "https://'$PH':'$FP'", "key_env": "AJ_TEST_OPENAI_KEY", "ca_file": "'$T/ca.pem'"}}'
P=$(write_profile gw '{"extends": "default", "env": {"pass": ["AJ_TEST_ANTHROPIC_KEY"]}, '"$PRICES"', "llm": {'"$PROVIDERS"'}}')

records() { [[ -f "$T/record" ]] && wc -l <"$T/record" || echo 0; }

# A client for the jail: one request per argument (anthropic|openai-chat|openai-responses
# [stream [MODEL [JSON|@FILE]]]; the JSON's members are added to the body), printing what it read.
cat >"$WORKSPACE/client.py" <<'PY'
import json, os, sys, urllib.request
kind, stream = sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "stream"
model = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
extra = sys.argv[4] if len(sys.argv) > 4 else "{}"
extra = json.loads(open(extra[1:]).read() if extra.startswith("@") else extra)
if kind == "anthropic":
    url = os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages"
    body = {"model": model or "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01"}
else:
    url = os.environ["OPENAI_BASE_URL"] + ("/chat/completions" if kind == "openai-chat" else "/responses")
    body = {"model": model or "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    if kind == "openai-responses":
        body = {"model": model or "gpt-test", "input": "hi", "max_output_tokens": 10}
    headers = {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
if stream:
    body["stream"] = True
body.update(extra)
headers["content-type"] = "application/json"
req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print("status=%d" % r.status)
        sys.stdout.write(r.read().decode() + "\n")
except urllib.error.HTTPError as e:
    print("status=%d" % e.code)
    sys.stdout.write(e.read().decode() + "\n")
PY

# --- a missing key fails the run before it starts, naming the provider and the place
run_jail -p "$(write_profile gwnokey '{"extends": "default", "llm": {"providers": {"anthropic": {"key_env": "AJ_TEST_NO_SUCH_KEY"}}}}')" -- /bin/true
isnt "$JAIL_RC" 0 "a provider without its key: the run fails"
like "$JAIL_ERR" "anthropic.*AJ_TEST_NO_SUCH_KEY" "the error names the provider and where the key was looked for"

# --- key_file: read whole, a trailing newline stripped; a file others can read is warned about
printf '%s\n' "$AKEY" >"$T/akey"
chmod 600 "$T/akey"
PKF=$(write_profile gwkeyfile '{"extends": "default", '"$PRICES"', "llm": {"providers": {"anthropic":
        {"url": "https://'$PH':'$FP'", "key_file": "'$T/akey'", "ca_file": "'$T/ca.pem'"}}}}')
run_jail -p "$PKF" -- python3 client.py anthropic
like "$JAIL_OUT" 'status=200' "a key from key_file (trailing newline stripped) is accepted by the provider"
unlike "$JAIL_ERR" 'readable by others' "a key_file of mode 600: no warning"
chmod 644 "$T/akey"
run_jail -p "$PKF" -- /bin/true
like "$JAIL_ERR" "key_file '$T/akey' is readable by others" "a key_file others can read: a warning"
chmod 600 "$T/akey"

# --- the agent's variables; the key is nowhere in the jail
run_jail -p "$P" -- /bin/sh -c 'env; echo ===; cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n"; echo ===;
        grep -rlsF "$0" /etc /home /tmp /run /opt /var 2>/dev/null | head -5; echo grep-done' "$AKEY"
is "$JAIL_RC" 0 "a run with the gateway starts" || jail_diag
like "$JAIL_OUT" "ANTHROPIC_BASE_URL=http://127.0.0.1:4100/anthropic" "ANTHROPIC_BASE_URL points at the gateway"
like "$JAIL_OUT" "OPENAI_BASE_URL=http://127.0.0.1:4100/openai/v1" "OPENAI_BASE_URL points at the gateway"
like "$JAIL_OUT" "ANTHROPIC_API_KEY=agentjail-gateway-$JAIL_RUN_ID" "a placeholder ANTHROPIC_API_KEY"
like "$JAIL_OUT" "OPENAI_API_KEY=agentjail-gateway-$JAIL_RUN_ID" "a placeholder OPENAI_API_KEY"
unlike "$JAIL_OUT" "$AKEY" "the Anthropic key is not in the jail's environment, /proc or files (env.pass named it)"
unlike "$JAIL_OUT" "$OKEY" "the OpenAI key is not in the jail"
unlike "$JAIL_OUT" "AJ_TEST_ANTHROPIC_KEY" "the key's variable is not passed in"
unlike "$JAIL_OUT" "HTTP_PROXY=" "no network allowlist, no proxy: the gateway is on the jail's own loopback"
like "$JAIL_OUT" "grep-done" "the search of the jail's files ran"

# --- nor in the memory of any process of the jail (its init is a copy of the supervisor:
# the key_env value is set aside in a pipe and wiped before the clone)
start_jail_bg -p "$P" -- /bin/sh -c 'echo started; sleep 3'
RDM=$(wait_run_dir 10)
wait_for_output "$TEST_TMP/bg.out" started 10
CG=""
for d in /sys/fs/cgroup/unified/agentjail/"${RDM##*/}" /sys/fs/cgroup/agentjail/"${RDM##*/}"; do
        [[ -f "$d/cgroup.procs" ]] && CG=$d && break
done
PIDS=$(find "$CG" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | tr '\n' ' ')
ok "the jail's processes are found (init and the command)" test "$(wc -w <<<"$PIDS")" -ge 2
FOUND=$(python3 - "$AKEY" $PIDS <<'PY'
import re, sys
key = sys.argv[1].encode()
hits = []
for pid in sys.argv[2:]:
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)
    except OSError:
        continue
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r)", line)
        if not m or "[vvar]" in line or "[vsyscall]" in line:
            continue
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        try:
            mem.seek(lo)
            if key in mem.read(hi - lo):
                hits.append(f"{pid} {line}")
        except OSError:
            pass
print("\n".join(hits))
PY
)
is "$FOUND" "" "the key is in no jail process's memory (read from the host, as root)"
wait_exit "$BG_PID" 20

# --- metered exactly: non-streaming and streaming, Anthropic and OpenAI, curl and urllib
n0=$(records)
run_jail -p "$P" -- /bin/sh -c 'python3 client.py anthropic; python3 client.py anthropic stream;
        python3 client.py openai-chat; python3 client.py openai-chat stream; python3 client.py openai-responses stream;
        python3 client.py openai-chat stream error-500;
        curl -sS -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" \
             -d "{\"model\":\"claude-test\",\"max_tokens\":5,\"messages\":[]}" "$ANTHROPIC_BASE_URL/v1/messages"'
is "$JAIL_RC" 0 "jailed clients ran" || jail_diag
is "$(grep -c '^status=200' <<<"$JAIL_OUT")" 5 "every urllib call got 200"
like "$JAIL_OUT" '"text": "Hello!"' "a non-streaming answer"
like "$JAIL_OUT" 'message_stop' "an Anthropic stream relayed"
like "$JAIL_OUT" 'data: \[DONE\]' "an OpenAI chat stream relayed"
unlike "$JAIL_OUT" '"choices": \[\], "usage"' "the usage chunk the client did not ask for is hidden"
like "$JAIL_OUT" 'response.completed' "a Responses stream relayed"
like "$JAIL_OUT" 'status=500.*"error"' "an error answering a chat stream reaches the client whole"
is "$(($(records) - n0))" 7 "the provider got seven requests"
like "$(sed -n "$((n0 + 4))p" "$T/record")" 'include_usage' "the gateway asked for the stream's usage"
is "$(count_lines "$(events_of llm.request)")" 7 "seven llm.request events"
is "$(count_lines "$(events_of llm.response)")" 7 "seven llm.response events"
is "$(events_of llm.response | jq -s -c '[.[] | select(.provider == "anthropic") | .["gen_ai.usage.input_tokens"]]')" \
        "[28,28,28]" "Anthropic input tokens as reported (25 + 3 cache reads)"
is "$(events_of llm.response | jq -s -c '[.[] | select(.provider == "anthropic") | .["gen_ai.usage.output_tokens"]]')" \
        "[7,7,7]" "Anthropic output tokens as reported (the last cumulative count)"
is "$(events_of llm.response | jq -s -c '[.[] | select(.provider == "openai") | [.["gen_ai.usage.input_tokens"], .["gen_ai.usage.output_tokens"]]]')" \
        "[[20,3],[20,3],[20,3],[0,0]]" "OpenAI tokens as reported (chat, chat stream, Responses stream, an error: nothing)"
is "$(events_of llm.response | jq -s -c '[.[] | .estimated] | unique')" "[false]" "no count was estimated"
is "$(events_of llm.response | jq -s -c '[.[] | .relay] | unique')" '["completed"]' "every call completed"
is "$(jf '.llm.anthropic["claude-test"].requests')" 3 "run.json: three Anthropic requests"
is "$(jf '.llm.anthropic["claude-test"]["gen_ai.usage.input_tokens"]')" 84 "run.json: Anthropic input tokens"
is "$(jf '.llm.openai["gpt-test"]["gen_ai.usage.output_tokens"]')" 9 "run.json: OpenAI output tokens"
# cost: claude-test 3 x (25 x 1e-4 + 3 x 1e-4 + 7 x 2e-4) = 3 x 0.0042 (cache reads at the input price)
like "$(jf '.llm.anthropic["claude-test"].cost_usd')" '^0\.0126' "run.json: the Anthropic cost at the profile's price"
like "$(events_of llm.response | head -1)" '"price":\{"entry":"claude-test","source":"profile"' "the price used is recorded"
like "$(events_of llm.response | head -1)" '"output_sha256":"[0-9a-f]{64}"' "the output's digest"
like "$(events_of llm.request | head -1)" '"request_sha256":"[0-9a-f]{64}"' "the request's digest"
unlike "$(cat "$JAIL_RUN_DIR/events.jsonl")" "$AKEY" "the key is not in the events"
# What the operator sees: inspect's table from these events, and logs --type llm.
aj inspect "$JAIL_RUN_ID"
like "$OUT" 'model calls measured by the LLM gateway' "inspect shows the model calls the gateway measured" || diag "$ERR"
like "$OUT" 'anthropic +claude-test +3 +84 +21 ' "inspect: three Anthropic calls, 84 tokens in, 21 out"
aj logs "$JAIL_RUN_ID" --type llm
like "$OUT" 'anthropic claude-test.* in=28 out=7' "logs --type llm: one line per model call" || diag "$ERR"

# --- a frozen run's services do nothing for it: model calls the agent had already sent
# (pipelined behind the one that breached) wait for the thaw, they do not reach the provider
cat >"$WORKSPACE/pipeline.py" <<'PY'
import json, os, socket, time
def req(model):
    body = json.dumps({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    return ("POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: x\r\n"
            "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            "content-length: %d\r\n\r\n%s" % (len(body), body)).encode()
s = socket.create_connection(("127.0.0.1", 4100))
s.sendall(req("no-price-model") + b"".join(req("claude-test") for _ in range(10)))
print("sent", flush=True)
time.sleep(30)
PY
n0=$(records)
start_jail_bg -p "$P" --cap cost_usd=100 -- python3 pipeline.py
RDF=$(wait_run_dir 10)
wait_for_output "$RDF/events.jsonl" '"type":"freeze"' 20
sleep 1
is "$(($(records) - n0))" 0 "frozen: the model calls sent behind the breaching one did not reach the provider"
aj kill "${RDF##*/}"
wait_exit "$BG_PID" 20

# --- a run killed for a breach forwards nothing more: the model calls the agent pipelined behind
# the one that breached were read from the gateway's buffer and one was sent at once on the
# connection kept from the call before (a model call for a run being killed)
cat >"$WORKSPACE/pipeline-kill.py" <<'PY'
import socket, time
exec(open("pipeline.py").read().split("s = socket")[0])
s = socket.create_connection(("127.0.0.1", 4100))
s.sendall(req("claude-test"))
time.sleep(1)
s.recv(65536)
s.sendall(req("no-price-model") + b"".join(req("claude-test") for _ in range(5)))
time.sleep(30)
PY
PK=$(write_profile gwkill '{"extends": "default", "on_breach": "kill", '"$PRICES"', "llm": {'"$PROVIDERS"'}}')
n0=$(records)
run_jail -p "$PK" --cap cost_usd=100 -- python3 pipeline-kill.py
is "$JAIL_RC" 123 "a breach under on_breach kill: the run is killed" || jail_diag
is "$(($(records) - n0))" 1 "... the provider saw only the call before the breach"
is "$(jq -c 'select(.type == "llm.request" and .verdict == "allow")' "$JAIL_RUN_DIR/events.jsonl" | wc -l)" 1 \
        "... the calls pipelined behind the breach are refused, not allowed"

# --- a call in flight when the run is frozen, then killed: the provider had the request and
# may bill all it asked for, though its response was never read to the end: charged its
# worst case (the reservation), as when the agent leaves (the provider holds the last events
# until $T/go exists, which it never does here)
start_jail_bg -p "$P" --cap tokens=100000 -- /bin/sh -c 'python3 client.py anthropic stream wait-go; sleep 30'
RDF=$(wait_run_dir 10)
wait_for_output "$RDF/events.jsonl" '"type":"llm.request"' 20
sleep 0.5
aj freeze "${RDF##*/}"
aj kill "${RDF##*/}"
wait_exit "$BG_PID" 20
RS=$(jq -c 'select(.type == "llm.response")' "$RDF/events.jsonl")
is "$(jq -r .relay <<<"$RS")" failed "a call in flight when the frozen run is killed: its relay failed"
is "$(jq -r .charged <<<"$RS")" worst_case "... and it is charged its worst case" || diag "$RS"
cmp_num "$(jq -r .meters.output_tokens.used "$RDF/run.json")" -ge 10 "... its output limit (10) is used in run.json"

# --- a body with a Content-Encoding: the provider reads what it decodes, the gateway the bytes
# as sent; JSON claimed to be brotli was metered as that JSON and forwarded with the header
cat >"$WORKSPACE/encoded.py" <<'PY'
import json, socket
body = json.dumps({"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
s = socket.create_connection(("127.0.0.1", 4100))
s.sendall(("POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: x\r\n"
           "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-encoding: br\r\n"
           "content-length: %d\r\n\r\n%s" % (len(body), body)).encode())
print(s.recv(65536).decode(errors="replace"))
PY
n0=$(records)
run_jail -p "$P" --cap tokens=100000 -- python3 encoded.py
like "$JAIL_OUT" 'HTTP/1.1 415 .*Content-Encoding' "a request body with a Content-Encoding: 415, naming it" || jail_diag
is "$(($(records) - n0))" 0 "... it never reaches the provider"

# --- a model's answer the gateway cannot read (a tool input nested 130 levels deep, past the
# JSON depth it reads) may hold tool calls: each counts one, so tool_calls=2 stops the third
# (all five were relayed, none counted)
PDT=$(write_profile gwdeep '{"extends": "default", "on_breach": "kill", "prices": {"deep-tool-130": {"input": 1e-6,
        "output": 1e-6}}, "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PDT" --cap tool_calls=2 -- /bin/sh -c 'for i in 1 2 3 4 5; do python3 client.py anthropic "" deep-tool-130; done'
is "$JAIL_RC" 123 "answers whose tool calls the gateway cannot read: tool_calls=2 kills the run" || jail_diag
cmp_num "$(grep -c toolu_deep <<<"$JAIL_OUT")" -le 3 "... at the third answer at the latest"
like "$(events_of cap.breach)" '"cap":"tool_calls"' "... a tool_calls breach"
is "$(events_of llm.response | jq -r .unread | sort -u)" true "... each llm.response says it was not read whole"

# --- a cost cap: the request that would cross it is refused, never forwarded, and the run frozen
n0=$(records)
start_jail_bg -p "$P" --cap cost_usd=0.005 -- /bin/sh -c 'python3 client.py anthropic; python3 client.py anthropic; echo after-refusal'
RD=$(wait_run_dir 10)
wait_for_output "$RD/events.jsonl" '"type":"freeze"' 20
like "$(jq -c 'select(.type == "cap.breach")' "$RD/events.jsonl")" '"cap":"cost_usd"' "the second call would cross cost_usd: a breach"
is "$(($(records) - n0))" 1 "the refused request never reached the provider"
like "$(jq -c 'select(.type == "llm.request")' "$RD/events.jsonl" | tail -1)" '"verdict":"breach"' "llm.request says breach"
is "$(jq -r .state "$RD/run.json")" quarantined "the run is quarantined (frozen)"
unlike "$(cat "$TEST_TMP/bg.out")" 'after-refusal' "the agent is stopped at the refusal"
aj kill "${RD##*/}"
wait_exit "$BG_PID" 20

# --- a stream crossing the cap mid-way is cut: the reservation (the prompt estimate and
# max_tokens, $0.0042) fits $0.0045, the input the provider reports (28 tokens) does not
n0=$(records)
PK=$(write_profile gwkill '{"extends": "default", "on_breach": "kill", '"$PRICES"', "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PK" --cap cost_usd=0.0045 -- /bin/sh -c 'python3 client.py anthropic stream; python3 client.py anthropic stream'
is "$JAIL_RC" 123 "a stream crossing the cost cap under on_breach kill: the run is killed"
is "$(events_of llm.response | jq -r .relay)" cut_short "the stream was cut"
like "$(events_of cap.breach)" '"cap":"cost_usd"' "a cost_usd breach"
like "$(jf '.llm.anthropic["claude-test"].cost_usd')" '^0\.00' "the cut stream is still charged"
is "$(($(records) - n0))" 1 "the second request is never forwarded"

# --- what the provider says it charged (OpenRouter's usage.cost) is a floor of the charge:
# billed-50 says $0.05, its tokens cost 20 x 1e-6 + 3 x 2e-6 at the profile's price
PB=$(write_profile gwbilled '{"extends": "default", "on_breach": "kill", "prices": {"billed-50": {"input": 1e-6,
        "output": 2e-6}}, "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PB" --cap cost_usd=1 -- /bin/sh -c 'python3 client.py openai-chat "" billed-50; python3 client.py openai-chat stream billed-50'
is "$JAIL_RC" 0 "calls whose provider says what they cost ran" || jail_diag
is "$(events_of llm.response | jq -s -c '[.[] | [.cost_usd, .provider_cost_usd, .price_cost_usd]]')" \
        "[[0.05,0.05,2.6e-05],[0.05,0.05,2.6e-05]]" "llm.response: charged the provider's figure, the prices' beside it"
like "$(jf '.llm.openai["billed-50"].cost_usd')" '^0\.1' "run.json: 2 x 0.05"
# under a cost cap the figure counts: the reservation fits $0.03, what the provider billed does not
run_jail -p "$PB" --cap cost_usd=0.03 -- /bin/sh -c 'python3 client.py openai-chat "" billed-50; echo after'
is "$JAIL_RC" 123 "a call the provider billed past cost_usd: a breach kills the run" || jail_diag
like "$(events_of cap.breach)" '"cap":"cost_usd"' "a cost_usd breach"

# --- web searches the provider ran (Anthropic's web_search server tool) are charged per search:
# search-3 reports 3 at the profile's $0.01 each, on top of its tokens (28 x 1e-4 + 7 x 2e-4)
PS=$(write_profile gwsearch '{"extends": "default", "on_breach": "kill", "prices": {"search-3": {"input": 1e-4,
        "output": 2e-4, "web_search": 0.01}, "search-2": {"input": 1e-4, "output": 2e-4}}, "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PS" -- /bin/sh -c 'python3 client.py anthropic "" search-3; python3 client.py anthropic stream search-3'
is "$JAIL_RC" 0 "calls with web searches ran" || jail_diag
is "$(events_of llm.response | jq -s -c '[.[] | .web_search_requests]')" "[3,3]" \
        "the searches the provider reported, whole and streamed"
like "$(jf '.llm.anthropic["search-3"].cost_usd')" '^0\.068' "run.json: 2 x (0.0042 of tokens + 3 x 0.01 of searches)"
# under a cost cap the searches count: the reservation ($0.003) fits $0.02, what was spent ($0.0342) does not
run_jail -p "$PS" --cap cost_usd=0.02 -- /bin/sh -c 'python3 client.py anthropic stream search-3; python3 client.py anthropic stream search-3'
is "$JAIL_RC" 123 "the searches pass cost_usd=0.02: a breach kills the run" || jail_diag
like "$(events_of cap.breach)" '"cap":"cost_usd"' "a cost_usd breach"
# searches at a fee nobody priced, under a cost cap: fail closed, naming what to add
run_jail -p "$PS" --cap cost_usd=1 -- python3 client.py anthropic "" search-2
is "$JAIL_RC" 123 "searches without a price under a cost cap: a breach" || jail_diag
like "$(events_of llm.response | jq -r .breach_reason)" 'web search.*search-2.*web_search' \
        "llm.response says the searches have no price, and what to add"
# the searches a request allows are reserved before it is forwarded: Claude Code's WebSearch
# (max_uses 8) at $0.01 each does not fit cost_usd=0.05, and the provider never sees it
WS8='{"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]}'
n0=$(records)
run_jail -p "$PS" --cap cost_usd=0.05 -- python3 client.py anthropic stream search-3 "$WS8"
is "$JAIL_RC" 123 "a request allowing 8 searches at \$0.01 under cost_usd=0.05: a breach" || jail_diag
is "$(events_of llm.request | jq -r .verdict)" breach "... refused before it is forwarded"
is "$(($(records) - n0))" 0 "... the provider never sees it"
# within the cap: 5 reserved, the 3 that ran charged, the rest settled back
n0=$(records)
run_jail -p "$PS" --cap cost_usd=1 -- python3 client.py anthropic "" search-3 \
        '{"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}'
is "$JAIL_RC" 0 "a request allowing 5 searches under cost_usd=1 runs" || jail_diag
is "$(events_of llm.request | jq -c '[.reserved.web_searches, (.reserved.cost_usd >= 0.05)]')" '[5,true]' \
        "llm.request: the 5 searches are in the reservation"
like "$(jf '.llm.anthropic["search-3"] | [.web_searches, .cost_usd] | @text')" '^\[3,0\.034' \
        "run.json: the 3 that ran charged (0.0042 + 0.03), the other 2 settled back"
# a tool without a bound (max_uses left out, as the Responses API's tools) is reserved at 8
run_jail -p "$PS" --cap cost_usd=0.05 -- python3 client.py anthropic "" search-3 \
        '{"tools": [{"type": "web_search_20250305", "name": "web_search"}]}'
is "$(events_of llm.request | jq -r .verdict)" breach "a search tool without max_uses is reserved at 8 searches"
# a bound the provider might read as a number the gateway did not, or spelled in other case: refused
echo '{"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": "1"}]}' >"$WORKSPACE/ws-str.json"
echo '{"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1, "Max_Uses": 100}]}' \
        >"$WORKSPACE/ws-twin.json"
n0=$(records)
run_jail -p "$PS" -- /bin/sh -c 'python3 client.py anthropic "" search-3 @ws-str.json;
        python3 client.py anthropic "" search-3 @ws-twin.json'
like "$JAIL_OUT" 'status=400.*max_uses.*must be a whole number' "max_uses \"1\": refused, 400"
like "$JAIL_OUT" 'Max_Uses.*letter case' "max_uses twinned in other case: refused"
is "$(($(records) - n0))" 0 "... neither reaches the provider"
# max_uses is Anthropic's: on a Responses search tool it bounds nothing (a provider ignoring it
# searches unbounded), so the tool is reserved at 8 searches, not 1
PR=$(write_profile gwrsearch '{"extends": "default", "on_breach": "kill", "prices": {"gpt-test": {"input": 1e-6,
        "output": 2e-6, "web_search": 0.01}}, "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PR" --cap cost_usd=1 -- python3 client.py openai-responses "" gpt-test \
        '{"tools": [{"type": "web_search", "max_uses": 1}]}'
is "$(events_of llm.request | jq -c .reserved.web_searches)" 8 \
        "a Responses web_search tool's max_uses bounds nothing: 8 searches reserved"

# --- a Chat Completions search model searches once per request and reports no count: one search
# is charged at the profile's fee; unpriced under a cost cap, the request is refused before it runs
PC=$(write_profile gwchatsearch '{"extends": "default", "on_breach": "kill", "prices": {"gpt-4o-search-preview":
        {"input": 1e-6, "output": 2e-6, "web_search": 0.03}, "gpt-4o-mini-search-preview": {"input": 1e-6,
        "output": 2e-6}, "gpt-test": {"input": 1e-6, "output": 2e-6}}, "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PC" -- /bin/sh -c 'python3 client.py openai-chat "" gpt-4o-search-preview;
        python3 client.py openai-chat stream gpt-4o-search-preview; python3 client.py openai-chat "" gpt-test'
is "$JAIL_RC" 0 "Chat search calls ran" || jail_diag
is "$(events_of llm.response | jq -s -c '[.[] | .web_search_requests]')" "[1,1,null]" \
        "one search per answered search-model request, whole and streamed; none for another model"
like "$(jf '.llm.openai["gpt-4o-search-preview"] | [.web_searches, .cost_usd] | @text')" '^\[2,0\.060' \
        "run.json: 2 searches at \$0.03 on top of the tokens"
n0=$(records)
echo '{"web_search_options": {}}' >"$WORKSPACE/chat-search.json"
run_jail -p "$PC" --cap cost_usd=1 -- /bin/sh -c 'python3 client.py openai-chat "" gpt-test @chat-search.json;
        python3 client.py openai-chat "" gpt-4o-mini-search-preview'
is "$JAIL_RC" 123 "a Chat search no fee covers, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" 'web search.*gpt-test.*web_search' \
        "llm.request says the search has no price, and what to add"
like "$(events_of cap.breach | jq -r .reason)" 'web search.*gpt-test.*web_search' \
        "cap.breach says why too: the cost could not be told"
like "$JAIL_ERR" "breached its cost_usd cap \\(cost_usd: 1 web search" \
        "the operator's warning gives the reason, not a value the meter could not tell"
is "$(($(records) - n0))" 0 "... and it is refused before it runs"

# --- the provider's other tools billed per use: the Responses API's file searches and code
# interpreter containers, at the profile's fees; unpriced under a cost cap, a breach naming the key
PB=$(write_profile gwbuiltin '{"extends": "default", "on_breach": "kill", "prices": {"builtin-tools": {"input": 1e-6,
        "output": 2e-6, "file_search": 0.0025, "code_interpreter": 0.03}, "*": {"input": 1e-6, "output": 2e-6}},
        "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PB" -- /bin/sh -c 'python3 client.py openai-responses "" builtin-tools;
        python3 client.py openai-responses stream builtin-tools'
is "$JAIL_RC" 0 "calls using the provider's tools ran" || jail_diag
is "$(events_of llm.response | jq -s -c '[.[] | [.file_search_calls, .code_interpreter_containers, .tool_calls_total]]')" \
        "[[2,1,0],[2,1,0]]" "2 file searches and 1 container each, whole and streamed; none the agent's tool call"
like "$(jf '.llm.openai["builtin-tools"] | [.file_search_calls, .code_interpreter_containers, .cost_usd] | @text')" \
        '^\[4,2,0\.070' "run.json: 2 x (2 x 0.0025 + 0.03) on top of the tokens"
PB2=$(write_profile gwbuiltin2 '{"extends": "default", "on_breach": "kill", "prices": {"*": {"input": 1e-6,
        "output": 2e-6}}, "llm": {"provider_fetch": true, '"$PROVIDERS"'}}')
run_jail -p "$PB2" --cap cost_usd=1 -- python3 client.py openai-responses "" builtin-tools
is "$JAIL_RC" 123 "the provider's tools at a fee nobody priced, under a cost cap: a breach" || jail_diag
like "$(events_of llm.response | jq -r .breach_reason)" 'file_search tool.*builtin-tools.*add "file_search"' \
        "llm.response names the tool and the key to add"
# a request offering such a tool reserves one use of it: unpriced under a cost cap, it is refused
# before the provider runs (and bills) any
n0=$(records)
run_jail -p "$PB2" --cap cost_usd=1 -- python3 client.py openai-responses "" builtin-tools \
        '{"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}'
is "$JAIL_RC" 123 "a request offering file_search no fee covers, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" 'file_search tool.*add "file_search"' \
        "llm.request names the tool and the key to add"
is "$(($(records) - n0))" 0 "... and the provider never sees it"

# --- searches and tools a request allows elsewhere than in a tool's bound (docs/gateway.md):
# OpenRouter's web plugin (a ":online" model: 5 results, priced as searches), web_search_options
# on a model whose whole answer cites nothing (no search), a code interpreter container the
# provider starts itself (one, though no call names it)
PH2=$(write_profile gwhidden '{"extends": "default", "on_breach": "kill", "prices": {"gpt-test:online":
        {"input": 1e-6, "output": 2e-6, "web_search": 0.004}, "gpt-test": {"input": 1e-6, "output": 2e-6,
        "web_search": 0.03, "code_interpreter": 0.03}, "claude-test": {"input": 1e-6, "output": 2e-6, "web_fetch": 0.01}},
        "llm": {"provider_fetch": true, '"$PROVIDERS"'}}')
echo '{"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}' >"$WORKSPACE/ci-auto.json"
run_jail -p "$PH2" --cap cost_usd=1 -- /bin/sh -c 'python3 client.py openai-chat "" gpt-test:online;
        python3 client.py openai-chat "" gpt-test @chat-search.json; python3 client.py openai-responses "" gpt-test @ci-auto.json'
is "$JAIL_RC" 0 "a web plugin, a Chat search and an auto container within cost_usd=1" || jail_diag
is "$(events_of llm.request | jq -s -c '[.[] | .reserved.web_searches]')" "[5,1,null]" \
        "llm.request: the plugin's 5 results and the Chat search reserved"
is "$(events_of llm.response | jq -s -c '[.[] | [.web_search_requests, .code_interpreter_containers]]')" \
        "[[5,null],[null,null],[null,1]]" \
        "5 results charged, no search for an answer citing nothing, the provider's own container counted"
like "$(jf '.llm.openai["gpt-test:online"] | [.web_searches, .cost_usd] | @text')" '^\[5,0\.020' \
        "run.json: 5 results at \$0.004 on top of the tokens"
# a ":online" model and a web plugin besides: both may fetch (5 + 3 results), both reserved and
# charged (the plugin's 3 alone were); a stored prompt's answer is charged the container the
# provider starts for a code interpreter it may hold, named in the response or not
run_jail -p "$PH2" --cap cost_usd=1 -- python3 client.py openai-chat "" gpt-test:online \
        '{"plugins": [{"id": "web", "max_results": 3}]}'
is "$JAIL_RC" 0 "a \":online\" model with a web plugin within cost_usd=1" || jail_diag
is "$(events_of llm.request | jq -c .reserved.web_searches)" 8 "llm.request: 5 + 3 results reserved"
is "$(events_of llm.response | jq -c .web_search_requests)" 8 "... and charged"
run_jail -p "$PH2" -- python3 client.py openai-responses "" gpt-test '{"prompt": {"id": "pmpt_1"}}'
is "$(events_of llm.response | jq -c .code_interpreter_containers)" 1 \
        "a stored prompt's answer naming no container is charged the one the provider started"
# the same unpriced under a cost cap is refused before it runs: a web plugin, a stored prompt
# (whose tools the request does not show), Anthropic's code execution
n0=$(records)
run_jail -p "$PB2" --cap cost_usd=1 -- python3 client.py openai-chat "" gpt-test:online
is "$JAIL_RC" 123 "a \":online\" model without a web_search fee, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" 'web search.*gpt-test:online.*web_search' \
        "llm.request says the plugin's results have no price"
run_jail -p "$PB2" --cap cost_usd=1 -- python3 client.py openai-responses "" gpt-test '{"prompt": {"id": "pmpt_1"}}'
is "$JAIL_RC" 123 "a stored prompt whose tools no fee covers, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" 'web search.*gpt-test.*web_search' \
        "llm.request: a stored prompt is reserved as offering web search"
run_jail -p "$PB2" --cap cost_usd=1 -- python3 client.py anthropic "" claude-test \
        '{"tools": [{"type": "code_execution_20250825", "name": "code_execution"}]}'
is "$JAIL_RC" 123 "Anthropic's code execution without a fee, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" 'code_execution tool.*add "code_execution"' \
        "llm.request names the tool and the key to add"
# Anthropic's web_fetch max_uses is reserved: 50 fetches at $0.01 do not fit cost_usd=0.3
run_jail -p "$PH2" --cap cost_usd=0.3 -- python3 client.py anthropic "" claude-test \
        '{"tools": [{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 50}]}'
is "$JAIL_RC" 123 "a request allowing 50 fetches at \$0.01 under cost_usd=0.3: a breach" || jail_diag
is "$(events_of llm.request | jq -r .verdict)" breach "... refused before it is forwarded"
is "$(($(records) - n0))" 0 "... none of the four reaches the provider"

# --- model tool calls count as tool calls
run_jail -p "$PK" --cap tool_calls=1 -- /bin/sh -c 'python3 client.py anthropic "" tool-call; python3 client.py openai-chat "" tool-call'
like "$(events_of llm.response | head -1)" '"tool_calls":\["get_weather"\]' "the model's tool call is recorded"
like "$(events_of cap.breach)" '"cap":"tool_calls"' "the second model tool call crosses tool_calls=1: a breach"
is "$JAIL_RC" 123 "... and the run is killed (on_breach kill)"
# every call the client runs counts, whatever its kind: a Responses local_shell_call, a
# Chat custom tool's call
run_jail -p "$PK" --cap tool_calls=1 -- /bin/sh -c 'python3 client.py openai-responses stream shell-call;
        python3 client.py openai-chat stream custom-call'
is "$(events_of llm.response | jq -c '[.tool_calls, .tool_call_ids]' | head -1)" '[["local_shell"],["call_shell"]]' \
        "a Responses local_shell_call is the model's tool call"
like "$(events_of cap.breach)" '"cap":"tool_calls"' "a Chat custom tool's call after it crosses tool_calls=1: a breach"
is "$JAIL_RC" 123 "... and the run is killed"

# xAI lists the calls its server-side tools make (x_search's x_keyword_search, web_search's
# browse_page) as custom_tool_call items: the provider's own, no call of the client's, so two
# answers with two each stay within tool_calls=1; a custom tool the client declares under such a
# name is its own, and counts
XAI_TOOLS='{"tools": [{"type": "x_search"}, {"type": "web_search"}]}'
run_jail -p "$PK" --cap tool_calls=1 -- /bin/sh -c "python3 client.py openai-responses '' xai-search '$XAI_TOOLS';
        python3 client.py openai-responses stream xai-search '$XAI_TOOLS'"
is "$JAIL_RC" 0 "xAI's server-side calls (custom_tool_call items) do not cross tool_calls=1" || jail_diag
is "$(events_of llm.response | jq -c .tool_calls | sort -u)" '[]' "... and are no tool calls of the agent's"
is "$(events_of llm.response | jq -c .web_search_requests | sort -u)" 2 "... but the searches its usage reports"
XAI_OWN='{"tools": [{"type": "x_search"}, {"type": "web_search"}, {"type": "custom", "name": "x_keyword_search"}]}'
run_jail -p "$PK" --cap tool_calls=1 -- /bin/sh -c "python3 client.py openai-responses '' xai-search '$XAI_OWN';
        python3 client.py openai-responses '' xai-search '$XAI_OWN'"
is "$(events_of llm.response | jq -c .tool_calls | head -1)" '["x_keyword_search"]' \
        "a call named as a custom tool the client declared is the client's"
like "$(events_of cap.breach)" '"cap":"tool_calls"' "... and the second crosses tool_calls=1: a breach"
is "$JAIL_RC" 123 "... and the run is killed"

# --- the tools rules name the broker's calls (claude.Bash), not the model's (get_weather):
# an allow list of the agent's names still leaves every model tool call counted, and with
# --hooks a result handed back for a call the broker never judged still stops the run (an
# allow list used to turn the gateway's count and this backstop off)
PKA=$(write_profile gwallow '{"extends": "default", "on_breach": "kill", "tools": {"allow": ["claude.*"]},
        '"$PRICES"', "llm": {'"$PROVIDERS"'}}')
run_jail -p "$PKA" --cap tool_calls=1 -- /bin/sh -c 'python3 client.py anthropic "" tool-call; python3 client.py openai-chat "" tool-call'
like "$(events_of cap.breach)" '"cap":"tool_calls"' "tools.allow [claude.*]: the second model tool call still crosses tool_calls=1"
is "$JAIL_RC" 123 "... and the run is killed"
cat >"$WORKSPACE/result.py" <<'PY'
import json, os, urllib.request
body = {"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_fake", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake", "content": "sunny"}]}]}
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=json.dumps(body).encode(), method="POST",
                             headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
                                      "content-type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print("status=%d" % r.status)
except urllib.error.HTTPError as e:
    print("status=%d" % e.code)
PY
run_jail -p "$PKA" --hooks claude-code -- /bin/sh -c 'python3 client.py anthropic "" tool-call >/dev/null; python3 result.py'
like "$(events_of cap.breach)" '"cap":"tool_gate"' "tools.allow [claude.*], --hooks: a result the broker never judged breaches tool_gate"
is "$(events_of tool.ungated | jq -r '.["gen_ai.tool.call.id"]')" toolu_fake "... recorded as tool.ungated"
unlike "$JAIL_OUT" 'status=200' "... and is not forwarded"

# --- a model repeating a tool call: get_weather {"city": "Paris"} from three APIs, streamed
# or whole, written differently, is one key for the repeat detector, the broker's too
run_jail -p "$PK" --cap repeat_limit=2 -- /bin/sh -c 'python3 client.py anthropic stream tool-call;
        python3 client.py openai-chat "" tool-call; python3 client.py openai-responses stream tool-call'
is "$(events_of llm.response | jq -r '.tool_arguments_sha256[0]' | sort -u | wc -l)" 1 \
        "the same call from three APIs has one arguments digest"
is "$(events_of llm.response | jq -r '.tool_arguments_sha256[0]' | head -1)" \
        "$(printf '%s' '{"city":"Paris"}' | sha256sum | cut -d' ' -f1)" "... the sha256 of the canonical arguments"
like "$(events_of cap.breach)" '"cap":"repeat_limit"' "the third identical model tool call crosses repeat_limit=2"
is "$JAIL_RC" 123 "... and the run is killed"
run_jail -p "$PK" --cap repeat_limit=2 -- /bin/sh -c 'python3 client.py anthropic "" tool-call;
        python3 client.py openai-chat stream tool-call; agentjail meter tool get_weather --args "{\"city\": \"Paris\"}"'
like "$(events_of tool.verdict)" '"verdict":"breach"' "two model calls then the same call through the broker: a repeat"
like "$(events_of cap.breach)" '"cap":"repeat_limit"' "... a repeat_limit breach"

# --- model work the gateway cannot read passes no cap: each answer a request asks for ("n")
# is reserved at the output limit, a background response (its output fetched later by GET)
# and an API the gateway does not meter (a batch, whose tool calls come back in a file) are
# refused under any cap, tool caps included
cat >"$WORKSPACE/gwcap.py" <<'PY'
import json, os, sys, urllib.request
def call(url, body=None, beta=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if beta:
        headers["anthropic-beta"] = beta
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
O, A = os.environ["OPENAI_BASE_URL"], os.environ["ANTHROPIC_BASE_URL"]
hi = [{"role": "user", "content": "hi"}]
for what in sys.argv[1:]:
    if what == "n":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "n": 100, "max_tokens": 3, "messages": hi})
    elif what == "max-real":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "max_tokens": 1e5, "messages": hi})
    elif what == "max-string":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "max_tokens": "100000", "messages": hi})
    elif what == "stream-string":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "stream": "true", "max_tokens": 3, "messages": hi})
    elif what == "n-string":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "n": "100", "max_tokens": 3, "messages": hi})
    elif what == "background":
        st, t = call(O + "/responses", {"model": "gpt-test", "input": "hi", "max_output_tokens": 10, "background": True})
    elif what == "models":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "models": ["gpt-test", "gpt-dear"],
                     "max_tokens": 3, "messages": hi})
    elif what == "auto":
        st, t = call(O + "/chat/completions", {"model": "openrouter/auto", "max_tokens": 3, "messages": hi})
    elif what == "live":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "max_tokens": 3, "messages": hi,
                     "search_parameters": {"mode": "on", "sources": [{"type": "x"}]}})
    elif what == "xtool":
        st, t = call(O + "/responses", {"model": "gpt-test", "input": "hi", "max_output_tokens": 3,
                     "tools": [{"type": "collections_search", "collection_ids": ["c1"]}]})
    elif what == "fast":
        st, t = call(A + "/v1/messages", {"model": "claude-test", "max_tokens": 3, "messages": hi, "speed": "fast"})
    elif what == "async":
        st, t = call(O[:-len("/v1")] + "/async/chat/completions", {"model": "gpt-test", "max_tokens": 10,
                     "request": {"model": "gpt-test", "messages": hi}})
    elif what == "deferred":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "max_tokens": 10, "messages": hi, "deferred": True})
    elif what == "geo":
        st, t = call(A + "/v1/messages", {"model": "claude-test", "max_tokens": 3, "messages": hi,
                     "inference_geo": "us"})
    elif what == "beta-1m":
        st, t = call(A + "/v1/messages", {"model": "claude-test", "max_tokens": 3, "messages": hi},
                     "interleaved-thinking-2025-05-14,context-1m-2025-08-07")
    elif what == "plugin":
        st, t = call(O + "/chat/completions", {"model": "gpt-test", "max_tokens": 3, "messages": hi,
                     "plugins": [{"id": "moderation"}]})
    elif what in ("pdf", "pdf-free"):
        pdf = [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}]}]
        extra = {"plugins": [{"id": "file-parser", "pdf": {"engine": "pdf-text"}}]} if what == "pdf-free" else {}
        st, t = call(O + "/chat/completions", dict({"model": "gpt-test", "max_tokens": 3, "messages": pdf}, **extra))
    elif what == "fetch":
        st, t = call(O + "/responses/resp_fake")
    elif what == "batch":
        st, t = call(A + "/v1/messages/batches", {"requests": [{"custom_id": "a", "params":
                     {"model": "claude-test", "max_tokens": 10, "messages": hi}}]})
    elif what in ("web-fetch", "batch-fetch"):
        body = {"model": "claude-test", "max_tokens": 10, "messages": hi,
                "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}
        if what == "web-fetch":
            st, t = call(A + "/v1/messages", body)
        else:
            st, t = call(A + "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": body}]})
    elif what == "mcp-server":
        st, t = call(A + "/v1/messages", {"model": "claude-test", "max_tokens": 10, "messages": hi,
                     "mcp_servers": [{"type": "url", "name": "m", "url": "https://mcp.example.com/sse"}]})
    print("%s=%d %s" % (what, st, t.replace("\n", " ")[:300]), flush=True)
PY
n0=$(records)
run_jail -p "$PK" --cap tokens=100 -- python3 gwcap.py n-string stream-string n
like "$JAIL_OUT" 'n-string=400 .*.n.{0,2} must be a positive whole number' "n that is not a whole number: 400, naming it" ||
        jail_diag
# a lenient provider would stream "stream": "true" without the usage the gateway adds to a stream
like "$JAIL_OUT" 'stream-string=400 .*.stream.{0,2} must be true or false' "stream as a string: 400, naming it" ||
        jail_diag
is "$(($(records) - n0))" 0 "... none of the three requests reached the provider"
like "$(events_of llm.request | tail -1)" '"verdict":"breach","reason":"tokens: would be [0-9]{3} ' \
        "n=100 answers of up to 3 tokens each do not fit tokens=100: a breach before anything was spent"
is "$JAIL_RC" 123 "... and the run is killed (on_breach kill)"
run_jail -p "$PK" -- python3 gwcap.py n
is "$(events_of llm.response | jq -r '.["gen_ai.usage.output_tokens"]')" 300 "without a cap n=100 is relayed, its 100 answers metered"
# an output limit written as a real (1e5: 100000.0, which a lenient server reads) is the
# limit, not "none" (32000 reserved, which fit tokens=50000); one written as a string is refused
n0=$(records)
run_jail -p "$PK" --cap tokens=50000 -- python3 gwcap.py max-string max-real
like "$JAIL_OUT" 'max-string=400 .*max_tokens.{0,2} must be a whole number' "max_tokens as a string: 400, naming it" ||
        jail_diag
like "$(events_of llm.request | tail -1)" '"verdict":"breach","reason":"tokens: would be 1[0-9]{5} ' \
        "max_tokens 1e5 does not fit tokens=50000: a breach before anything was spent"
is "$(($(records) - n0))" 0 "... neither request reached the provider"

n0=$(records)
run_jail -p "$PK" --cap tokens=100000 -- python3 gwcap.py background
like "$JAIL_OUT" 'background=403 .*background response is refused under the run.s caps' \
        "a background response under a cap: 403" || jail_diag
is "$(($(records) - n0))" 0 "... never forwarded"
is "$JAIL_RC" 0 "... a refusal, not a breach"
# --- provider-side fetching (docs/gateway.md): a jail without network.allow cannot have the
# provider fetch for it (Anthropic's web_fetch, an MCP server, in a batch too), caps or none;
# llm.provider_fetch lets it, and the event names what it let through
# (PKO opens the batch API: a batch's requests are judged as a call's)
PKO=$(write_profile gwopen '{"extends": "./gwkill.json", "llm": {"providers": {
        "anthropic": {"paths": ["POST /v1/messages/batches"]}, "openai": {"paths": ["GET /v1/responses/*"]}}}}')
n0=$(records)
run_jail -p "$PKO" -- python3 gwcap.py web-fetch mcp-server batch-fetch
like "$JAIL_OUT" 'web-fetch=403 .*provider_fetch.*web_fetch_20250910.{0,2} without allowed_domains, any host' \
        "web_fetch without allowed_domains in a jail without network: 403, naming the tool" || jail_diag
like "$JAIL_OUT" 'mcp-server=403 .*mcp_servers\[0\]\.url, host mcp\.example\.com port 443' \
        "an MCP server outside the allowlist: 403, naming the host" || jail_diag
like "$JAIL_OUT" 'batch-fetch=403 .*web_fetch_20250910' "... and in a batch's request" || jail_diag
is "$(events_of llm.request | jq -r .verdict | sort -u)" refused "llm.request: refused"
is "$(($(records) - n0))" 0 "... none reached the provider"
PF=$(write_profile gwfetch '{"extends": "default", '"$PRICES"', "llm": {"provider_fetch": true, '"$PROVIDERS"'}}')
run_jail -p "$PF" -- python3 gwcap.py web-fetch
like "$JAIL_OUT" 'web-fetch=200 ' "llm.provider_fetch: true lets it through" || jail_diag
is "$(events_of llm.request | jq -c .provider_fetch)" \
        '["tools[0] \"web_fetch_20250910\" without allowed_domains, any host"]' "... and llm.request names it"
is "$(jf '.profile.resolved.llm.provider_fetch')" true "run.json's profile says the run allowed it"
# OpenRouter's fallback models (or a preset): the answer may come from a model the request
# does not price, so it is refused under a cap, and relayed without one
n0=$(records)
run_jail -p "$PK" --cap tokens=100000 -- python3 gwcap.py models
like "$JAIL_OUT" 'models=403 .*letting the provider choose its model' "a models fallback list under a cap: 403" ||
        jail_diag
is "$(($(records) - n0))" 0 "... never forwarded"
run_jail -p "$PK" -- python3 gwcap.py models
like "$JAIL_OUT" 'models=200 ' "without a cap a models fallback list is relayed" || jail_diag
# a router model (openrouter/auto) answers with a model it picks: refused under a cap, and
# without one priced as the model the response names, not as the router ($0, or no price)
n0=$(records)
run_jail -p "$PK" --cap tokens=100000 -- python3 gwcap.py auto
like "$JAIL_OUT" 'auto=403 .*openrouter/auto' "openrouter/auto under a cap: 403" || jail_diag
is "$(($(records) - n0))" 0 "... never forwarded"
run_jail -p "$PK" -- python3 gwcap.py auto
like "$JAIL_OUT" 'auto=200 ' "without a cap openrouter/auto is relayed" || jail_diag
is "$(events_of llm.response | jq -c '[.price.entry, .cost_usd > 0]')" '["gpt-test",true]' \
        "... and priced as the model that answered"
is "$(jf '.llm.openai["gpt-test"].requests')" 1 "... run.json sums it under that model"
# what may bill beyond tokens and the gateway cannot meter is refused under a cost cap (403,
# naming it, before the provider sees it): xAI's Live Search, a tool type and an OpenRouter
# plugin it does not know, Anthropic's fast mode (tokens at 2 to 6 times the price), its
# 1M-token context (a beta header: past 200K input tokens, twice the input price) and its
# US-only inference (1.1 times the price)
n0=$(records)
run_jail -p "$PK" --cap cost_usd=1 -- python3 gwcap.py live xtool plugin fast beta-1m geo
like "$JAIL_OUT" 'live=403 .*search_parameters.*cost cap' "xAI's Live Search under a cost cap: 403" || jail_diag
like "$JAIL_OUT" 'fast=403 .*speed.*fast mode' "Anthropic's fast mode (2-6x the price) under a cost cap: 403" || jail_diag
like "$JAIL_OUT" 'xtool=403 .*collections_search' "a tool type the gateway does not know: 403" || jail_diag
like "$JAIL_OUT" 'plugin=403 .*moderation' "a plugin the gateway does not know: 403" || jail_diag
like "$JAIL_OUT" 'beta-1m=403 .*context-1m.*cost cap' "Anthropic's 1M context beta under a cost cap: 403" || jail_diag
like "$JAIL_OUT" 'geo=403 .*inference_geo.*cost cap' "Anthropic's inference_geo under a cost cap: 403" || jail_diag
is "$(($(records) - n0))" 0 "... none reaches the provider"
is "$JAIL_RC" 0 "... refusals, not breaches"
run_jail -p "$PK" --cap tokens=100000 -- python3 gwcap.py live beta-1m
like "$JAIL_OUT" 'live=200 ' "under a token cap alone Live Search is relayed (its tokens are metered)" || jail_diag
like "$JAIL_OUT" 'beta-1m=200 ' "... and so is the 1M context beta" || jail_diag
# a file OpenRouter may parse at a per-page fee (mistral-ocr, its default where the model reads
# no files itself): under a cost cap it needs a file_parser price, unless the request names a
# free engine
n0=$(records)
run_jail -p "$PK" --cap cost_usd=1 -- python3 gwcap.py pdf-free
like "$JAIL_OUT" 'pdf-free=200 ' "a file with a free parser engine named, under a cost cap: relayed" || jail_diag
run_jail -p "$PK" --cap cost_usd=1 -- python3 gwcap.py pdf
is "$JAIL_RC" 123 "a file whose parsing no file_parser fee prices, under a cost cap: a breach" || jail_diag
like "$(events_of llm.request | jq -r 'select(.verdict == "breach") | .reason')" '1000 use.*file_parser.*add "file_parser"' \
        "llm.request names the pages and the key to add"
is "$(($(records) - n0))" 1 "... only the free one reached the provider"
run_jail -p "$PKO" -- python3 gwcap.py background fetch
like "$JAIL_OUT" 'background=200 .*queued' "without a cap a background response is relayed"
like "$(events_of llm.response | head -1)" '"charged":"worst_case"' "... and charged its worst case (its output is never seen)"
is "$(jf '.llm.openai["gpt-test"]["gen_ai.usage.output_tokens"]')" 10 "... run.json: max_output_tokens as output"
# Perplexity's async API at a Chat path (the request wrapped in "request", answered with an
# acknowledgment, fetched later by GET): refused under a cap, without one charged its worst case
run_jail -p "$PK" --cap tokens=100000 -- python3 gwcap.py async
like "$JAIL_OUT" 'async=403 .*async completion' "an async request under a cap: 403" || jail_diag
run_jail -p "$PK" -- python3 gwcap.py async
like "$JAIL_OUT" 'async=200 .*CREATED' "without a cap it is relayed" || jail_diag
is "$(events_of llm.response | jq -r .charged)" worst_case "... and charged its worst case" || jail_diag
is "$(jf '.llm.openai["gpt-test"]["gen_ai.usage.output_tokens"]')" 10 "... run.json: its max_tokens as output"

# (the paths opened, PKO: an opened path obeys the caps as any other)
n0=$(records)
run_jail -p "$PKO" --cap tool_calls=5 -- python3 gwcap.py batch deferred fetch
like "$JAIL_OUT" 'batch=403 .*not a metered API' "a batch under a tool_calls cap: 403, its path opened or not" ||
        jail_diag
# xAI's deferred completion: its answer (tool calls, usage) is fetched later by GET
like "$JAIL_OUT" 'deferred=403 .*deferred or async completion' "... an xAI deferred completion too" || jail_diag
like "$JAIL_OUT" 'fetch=200' "... a GET of an opened path is still relayed"
is "$(($(records) - n0))" 1 "... only the GET reached the provider"
# a stored response is the account's data: not the key's to fetch unless the profile opens it
n0=$(records)
run_jail -p "$PK" -- python3 gwcap.py fetch batch
like "$JAIL_OUT" 'fetch=403 .*GET /v1/responses/resp_fake is not a model call.*llm.providers.openai.paths' \
        "by default a GET of a stored response: 403, naming the profile field that opens it" || jail_diag
like "$JAIL_OUT" 'batch=403 .*POST /v1/messages/batches is not a model call.*llm.providers.anthropic.paths' \
        "... and the batch API, without any cap" || jail_diag
is "$(($(records) - n0))" 0 "... neither reached the provider"

# --- the key's reach: by default the key goes to the model calls and the model list only;
# the account's files, listed or deleted, are refused before anything reaches the provider
# (403 in the provider's shape, llm.refused naming the method and the path), and go through
# where llm.providers.NAME.paths opens them
cat >"$WORKSPACE/keyreach.sh" <<'SH'
for m in GET:/v1/files GET:/v1/files/file-1/content DELETE:/v1/files/file-1 GET:/v1/models GET:/v1/models/gpt-test; do
        r=$(curl -sS -X "${m%%:*}" -w ' %{http_code}' -H "Authorization: Bearer $OPENAI_API_KEY" \
                "${OPENAI_BASE_URL%/v1}${m#*:}")
        echo "${m%%:*} ${m#*:}=${r##* } ${r% *}"
done
SH
n0=$(records)
run_jail -p "$P" -- /bin/sh keyreach.sh
like "$JAIL_OUT" 'GET /v1/files=403 .*GET /v1/files is not a model call.*llm\.providers\.openai\.paths opens it \(\\"GET /v1/files\\"\)' \
        "GET /v1/files: 403, the message naming the field and the rule that opens it" || jail_diag
like "$JAIL_OUT" 'GET /v1/files=403 .*"type":"invalid_request_error"' "... in OpenAI's error shape"
like "$JAIL_OUT" 'GET /v1/files/file-1/content=403 ' "a file's content: 403" || jail_diag
like "$JAIL_OUT" 'DELETE /v1/files/file-1=403 ' "DELETE of a file, without any cap: 403" || jail_diag
like "$JAIL_OUT" 'GET /v1/models=200 ' "the model list goes through" || jail_diag
like "$JAIL_OUT" 'GET /v1/models/gpt-test=200 ' "... and one model" || jail_diag
is "$(($(records) - n0))" 2 "the provider got the two model reads, nothing else"
unlike "$(tail -n +"$((n0 + 1))" "$T/record")" '/v1/files' "... none of the file requests"
is "$(events_of llm.refused | jq -c '[.method, .path, .status]' | paste -sd' ' -)" \
        '["GET","/v1/files",403] ["GET","/v1/files/file-1/content",403] ["DELETE","/v1/files/file-1",403]' \
        "llm.refused records each refusal: method, path, status" || jail_diag
like "$(events_of llm.refused | jq -r .reason | head -1)" '^agentjail gateway: GET /v1/files is not a model call' \
        "... and what the agent was told"
PPATH=$(write_profile gwpaths '{"extends": "./gw.json", "llm": {"providers": {"openai":
        {"paths": ["GET /v1/files", "GET /v1/files/*/content", "DELETE /v1/files/*"]}}}}')
n0=$(records)
run_jail -p "$PPATH" -- /bin/sh keyreach.sh
like "$JAIL_OUT" 'GET /v1/files=200 ' "opened: GET /v1/files goes through" || jail_diag
like "$JAIL_OUT" 'GET /v1/files/file-1/content=200 ' "... a file's content ('*' one segment)" || jail_diag
like "$JAIL_OUT" 'DELETE /v1/files/file-1=200 .*deleted' "... and the DELETE" || jail_diag
is "$(($(records) - n0))" 5 "the provider got all five"
like "$(tail -n +"$((n0 + 1))" "$T/record" | jq -r 'select(.method == "DELETE") | .path')" '^/v1/files/file-1$' \
        "... the DELETE among them"
is "$(events_of llm.refused)" "" "nothing refused"
is "$(jf '.profile.resolved.llm.providers.openai.paths | join(",")')" \
        'GET /v1/files,GET /v1/files/*/content,DELETE /v1/files/*' "run.json's resolved profile records the opened paths"
is "$(jf '.profile.resolved.llm.providers.anthropic.paths')" null "... per provider: none for anthropic"
# under a cap an opened path is still only read: the DELETE is refused by the meter
n0=$(records)
run_jail -p "$PPATH" --cap tokens=1000 -- /bin/sh keyreach.sh
like "$JAIL_OUT" 'GET /v1/files=200 ' "under a cap a GET of an opened path goes through" || jail_diag
like "$JAIL_OUT" 'DELETE /v1/files/file-1=403 .*not a metered API, refused under the run.s caps' \
        "... a DELETE does not: 403" || jail_diag
is "$(($(records) - n0))" 4 "... the provider got the four reads"
# a bad rule fails the run before it starts, naming the file and the field
PBAD=$(write_profile gwbadpath '{"extends": "./gw.json", "llm": {"providers": {"openai": {"paths": ["GET /v1/files/../x"]}}}}')
run_jail -p "$PBAD" -- /bin/true
isnt "$JAIL_RC" 0 "a path with '..': the run does not start"
like "$JAIL_ERR" 'gwbadpath.json:[0-9]+:[0-9]+: llm.providers.openai.paths\[0\]: dot segments' \
        "the error names the file and the field" || jail_diag

# --- a request body cannot grow the supervisor's memory (it is in no memory cgroup): JSON of
# more values than the gateway parses (16 MiB of "{}," took 1.2 GB of jansson's DOM) is
# refused with 413 before it is parsed, and a large real-looking request still goes through
cat >"$WORKSPACE/gwmem.py" <<'PY'
import json, os, sys, time, urllib.request
def post(body):
    req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body, method="POST",
                                 headers={"x-api-key": "x", "anthropic-version": "2023-06-01", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
print("ready", flush=True)
time.sleep(1)
# ~4 MB: a long session's messages (tool uses and their results), about 100 K values.
msgs = []
for i in range(2500):
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": "Let me look at file %d." % i},
                 {"type": "tool_use", "id": "toolu_%d" % i, "name": "Read", "input": {"file_path": "/src/f%d.c" % i}}]})
    msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_%d" % i,
                 "content": "int f%d(void) { return \"[{\\\"}]\"[0]; }\n" % i * 30}]})
big = json.dumps({"model": "claude-test", "max_tokens": 10, "messages": msgs}).encode()
st, text = post(big)
print("large=%d bytes=%d %s" % (st, len(big), text[:80].replace("\n", " ")), flush=True)
n = (16 * 1024 * 1024 - 100) // 3
st, text = post(b'{"model":"claude-test","max_tokens":1,"messages":[' + b"{}," * (n - 1) + b"{}]}")
print("monster=%d %s" % (st, text.replace("\n", " ")), flush=True)
print("done", flush=True)
time.sleep(30)
PY
n0=$(records)
start_jail_bg -p "$P" -- python3 gwmem.py
RDG=$(wait_run_dir 10)
wait_for_output "$TEST_TMP/bg.out" ready 20
SP=$(jq -r .supervisor_pid "$RDG/run.json")
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
RSS0=$(rss_kb "$SP" VmRSS)
ok "the supervisor's resident memory is read before the requests" test -n "$RSS0"
wait_for_output "$TEST_TMP/bg.out" '^done' 60
OUTG=$(cat "$TEST_TMP/bg.out")
HWM=$(rss_kb "$SP" VmHWM)
RSS1=$(rss_kb "$SP" VmRSS)
aj kill "${RDG##*/}"
wait_exit "$BG_PID" 20
like "$OUTG" 'large=200 bytes=[0-9]{7}' "a large request of real-looking messages (~4 MB) goes through" || diag "$OUTG"
is "$(($(records) - n0))" 1 "the provider got the large request, not the refused one"
like "$OUTG" 'monster=413 .*request_too_large.*more than 1048576 JSON values' \
        "16 MiB of {}: 413, the error names the limit"
like "$(jq -c 'select(.type == "llm.request")' "$RDG/events.jsonl" | tail -1)" '"verdict":"refused"' \
        "llm.request records the refusal"
ok "the supervisor's peak memory stayed within 64 MiB over its start ($RSS0 -> peak $HWM kB)" \
        test "$((HWM - RSS0))" -lt $((64 * 1024))
ok "... and its memory went back after the requests ($RSS0 -> $RSS1 kB)" test "$((RSS1 - RSS0))" -lt $((16 * 1024))

# --- one spelling of each path: another spelling of the model API is refused, never relayed unmetered
n0=$(records)
run_jail -p "$P" -- /bin/sh -c 'for p in /v1/messages/. /v1/x/../messages /v1%2Fmessages "/v1/messages;x" //v1/messages; do
        curl -sS --path-as-is -o /dev/null -w "%{http_code}\n" -H "content-type: application/json" \
             -d "{\"model\":\"claude-test\",\"max_tokens\":5,\"messages\":[]}" "$ANTHROPIC_BASE_URL$p"; done
        host=${ANTHROPIC_BASE_URL#http://}; host=${host%%/*}
        curl -sS -o /dev/null -w "%{http_code}\n" "http://$host/nosuch/v1/models"'
is "$(grep -c '^400$' <<<"$JAIL_OUT")" 5 "five other spellings of /v1/messages: 400 each" || jail_diag
like "$JAIL_OUT" $'\n404' "a path under no provider: 404"
is "$(($(records) - n0))" 0 "the provider got none of them"
# Answered by the gateway itself, outside any call: each one in the chain, with what the agent was told.
is "$(events_of llm.refused | jq -r .status | paste -sd, -)" "400,400,400,400,400,404" \
        "the chain records the six answers the gateway made itself (llm.refused)" || jail_diag
like "$(events_of llm.refused | jq -c 'select(.status == 404)')" \
        '"method":"GET","path":"/nosuch/v1/models".*"reason":"agentjail gateway: no provider is served under this path"' \
        "... the 404 with its method, path and reason"
like "$(events_of llm.refused | jq -r .reason | head -1)" '^agentjail gateway: .+' "... the 400s with the parser's reason"

# --- the model is the agent's text, shown by logs and inspect: a model that is not a plain
# name (an escape sequence that sets the window title, a C1 CSI) is refused with a 400
# naming the field, never forwarded, and nothing the operator's verbs print carries it raw.
raw_controls() { LC_ALL=C grep -q $'\x1b\|\x07\|\xc2\x9b\|\xc2\x9d' "$1"; }
n0=$(records)
run_jail -p "$P" -- /bin/sh -c 'python3 client.py anthropic "" "$(printf "m\033]0;OWNED\007\033[31mRED")";
        python3 client.py openai-chat "" "$(printf "g\302\2332J")"'
is "$(grep -c '^status=400$' <<<"$JAIL_OUT")" 2 "a model name with control characters: 400, on both APIs" || jail_diag
like "$JAIL_OUT" 'model.{0,4} must be a plain name' "the refusal names the field"
is "$(($(records) - n0))" 0 "the provider got neither request"
is "$(events_of llm.request | jq -r .verdict | paste -sd, -)" "refused,refused" "the chain records both refusals"
is "$(events_of llm.request | jq -r '"\(.status) \(.reason)"' | grep -c '^400 .*model.\{0,4\} must be a plain name')" 2 \
        "... each with the status and the reason the agent was told"
aj logs "$JAIL_RUN_ID"
is "$RC" 0 "logs of the run with hostile model names" || op_diag
ok "logs: no ESC, BEL or C1 control" eval '! raw_controls "$TEST_TMP/op.out"'
aj inspect "$JAIL_RUN_ID"
ok "inspect: no ESC, BEL or C1 control" eval '! raw_controls "$TEST_TMP/op.out"'
run_jail -p "$P" -- python3 client.py anthropic "" "claude-tést-日本"
unlike "$JAIL_OUT" 'must be a plain name' "a model name with ordinary non-ASCII letters is not refused"

# --- no libssl on the host (the gateway loads it only for runs that use it): the run is
# refused before the command starts, naming the provider and the library
LIBSSL=$(ldconfig -p | awk '/libssl\.so\.[0-9]/ {print $NF; exit}')
if [[ -z $LIBSSL ]]; then
        fail "libssl is installed" "ldconfig -p lists no libssl.so.N"
else
        cat >"$T/aj-nossl" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount --bind /dev/null "\$0" && exec "\$@"' "$LIBSSL" "$AGENTJAIL" "\$@"
SH
        chmod +x "$T/aj-nossl"
        AJ_SAVED=$AGENTJAIL AGENTJAIL=$T/aj-nossl
        run_jail -p "$P" -- /bin/sh -c 'echo the command ran'
        AGENTJAIL=$AJ_SAVED
        is "$JAIL_RC" 125 "without libssl a gateway run is refused (125)"
        like "$JAIL_ERR" "provider 'anthropic'.*libssl" "the error names the provider and libssl"
        unlike "$JAIL_OUT" 'the command ran' "the command never ran"
        like "$(cat "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null)" '"run.exit"' "the refused run is recorded"
        run_jail -- /bin/sh -c 'echo plain' && AGENTJAIL=$T/aj-nossl run_jail -- /bin/sh -c 'echo plain'
        is "$JAIL_OUT" plain "a run without the gateway needs no libssl"
fi

# --- "record": "full": bodies kept, the key redacted
PF=$(write_profile gwfull '{"extends": "default", '"$PRICES"', "llm": {'"$PROVIDERS"', "record": "full"}}')
run_jail -p "$PF" -- /bin/sh -c 'python3 client.py anthropic stream; curl -sS -H "content-type: application/json" \
        -d "{\"model\":\"claude-test\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"guess '"$AKEY"'\"}]}" \
        "$ANTHROPIC_BASE_URL/v1/messages" >/dev/null'
ok "record full: the request body kept" test -s "$JAIL_RUN_DIR/llm/1.request.json"
like "$(cat "$JAIL_RUN_DIR/llm/1.response" 2>/dev/null)" 'message_stop' "record full: the response kept"
like "$(cat "$JAIL_RUN_DIR/llm/2.request.json" 2>/dev/null)" 'REDACTED' "record full: the key is redacted"
unlike "$(cat "$JAIL_RUN_DIR"/llm/* 2>/dev/null)" "$AKEY" "record full: the key never appears"

# --- provider hosts are not reachable directly while the gateway serves them
run_jail -p "$P" --allow-net "$PH:$FP" -- \
        /bin/sh -c 'curl -sS -o /dev/null -w "connect=%{http_connect}\n" -x http://127.0.0.1:3128 --noproxy "" \
                -k "https://'"$PH:$FP"'/v1/messages" 2>&1; true'
like "$JAIL_OUT" 'connect=403' "a direct CONNECT to the provider's host: 403"
like "$(events_of net.denied)" 'gateway' "net.denied says to use the gateway"

# ... nor its address, when the url names the host (docs/gateway.md): reserved by name only,
# a CONNECT to the address the name resolves to went around the gateway
printf '%s llm.test\n' "$PH" >"$T/hosts"
PN=$(write_profile gwname '{"extends": "default", '"$PRICES"', "llm": {"providers": {
        "anthropic": {"url": "https://llm.test:'$FP'", "key_env": "AJ_TEST_ANTHROPIC_KEY", "ca_file": "'$T/ca.pem'"}}}}')
export AGENTJAIL_HOSTS_FILE="$T/hosts"
run_jail -p "$PN" --allow-net "$PH:$FP" -- \
        /bin/sh -c 'curl -sS -o /dev/null -w "connect=%{http_connect}\n" -x http://127.0.0.1:3128 --noproxy "" \
                -k "https://'"$PH:$FP"'/v1/messages" 2>&1; true'
unset AGENTJAIL_HOSTS_FILE
like "$JAIL_OUT" 'connect=403' "a CONNECT to the address of the provider's host name: 403"
like "$(events_of net.denied)" "$PH port $FP is an address of llm.test, served by the run's LLM gateway" \
        "net.denied names the host the address is of"

# ... and the names are looked up while the jail builds its root, not before it starts: a DNS
# server in the test host's namespace answers after 400 ms (the supervisor's resolv.conf names
# it). The root is built before the answer, the command released after it, with the address
# reserved (fail closed). Looked up when the run was planned, the jail waited for the answer
# before it started building ("init: root built" after 400 ms).
if [[ $EUID -eq 0 ]]; then
        test_dns "$TH_NS" "$PH" slow.test "$PH" --delay 0.4 || fail "a DNS server on the test host" "none listens on $PH:53"
        printf 'nameserver %s\n' "$PH" >"$T/resolv.conf"
        printf '#!/bin/sh\nexec unshare -m sh -c '\''mount --bind "$0" /etc/resolv.conf && exec "$@"'\'' %s "%s" "$@"\n' \
                "$T/resolv.conf" "$AGENTJAIL" >"$T/aj-slowdns"
        chmod 0755 "$T/aj-slowdns"
        PS=$(write_profile gwslow '{"extends": "default", '"$PRICES"', "llm": {"providers": {
                "anthropic": {"url": "https://slow.test:'$FP'", "key_env": "AJ_TEST_ANTHROPIC_KEY", "ca_file": "'$T/ca.pem'"}}}}')
        AJ_SAVED=$AGENTJAIL AGENTJAIL=$T/aj-slowdns
        run_jail -vv -p "$PS" --allow-net "$PH:$FP" -- \
                /bin/sh -c 'curl -sS -o /dev/null -w "connect=%{http_connect}\n" -x http://127.0.0.1:3128 --noproxy "" \
                        -k "https://'"$PH:$FP"'/v1/messages" 2>&1; true'
        AGENTJAIL=$AJ_SAVED
        like "$JAIL_OUT" 'connect=403' "a provider name answered after 400 ms: its address is refused (403)" || jail_diag
        like "$(events_of net.denied)" "$PH port $FP is an address of slow.test" "net.denied names the slow name"
        step_ms() { sed -n "s/^agentjail: +\([0-9.]*\) ms $1\$/\1/p" <<<"$JAIL_ERR" | head -1; }
        BUILT=$(step_ms "init: root built") RESERVED=$(step_ms "LLM provider hosts' addresses reserved")
        JOINED=$(step_ms "init: joined")
        diag "slow DNS: root built +${BUILT:-?} ms, addresses reserved +${RESERVED:-?} ms, joined +${JOINED:-?} ms"
        ok "the jail built its root before the answer (+${BUILT:-?} ms < 400)" awk -v b="$BUILT" 'BEGIN { exit !(b != "" && b < 400) }'
        ok "the addresses were reserved after it (+${RESERVED:-?} ms >= 400)" \
                awk -v r="$RESERVED" 'BEGIN { exit !(r != "" && r >= 400) }'
        ok "the command was released after that (+${JOINED:-?} ms)" \
                awk -v r="$RESERVED" -v j="$JOINED" 'BEGIN { exit !(r != "" && j != "" && j >= r) }'
fi

# --- the official SDKs from the npm registry, unchanged, in the jail
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        skip "the official SDKs" "node and npm are needed (bash scripts/setup installs them)"
elif ! npm_reachable openai "$T/npm.log"; then
        skip "the official SDKs" "the npm registry cannot be reached ($(npm_why "$T/npm.log"))"
elif ! (cd "$WORKSPACE" && timeout 150 npm install --no-audit --no-fund --silent @anthropic-ai/sdk openai) >"$T/npm.log" 2>&1; then
        skip "the official SDKs" "npm install @anthropic-ai/sdk openai failed: $(tail -c 300 "$T/npm.log")"
else
        cat >"$WORKSPACE/sdk.js" <<'JS'
const AnthropicMod = require("@anthropic-ai/sdk");
const OpenAIMod = require("openai");
const Anthropic = AnthropicMod.default || AnthropicMod.Anthropic || AnthropicMod;
const OpenAI = OpenAIMod.default || OpenAIMod.OpenAI || OpenAIMod;
(async () => {
  const a = new Anthropic({ maxRetries: 0 });
  const m = await a.messages.create({ model: "claude-test", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  console.log("anthropic=" + m.content[0].text + " in=" + m.usage.input_tokens);
  const stream = a.messages.stream({ model: "claude-test", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  const final = await stream.finalMessage();
  console.log("anthropic-stream=" + final.content[0].text + " out=" + final.usage.output_tokens);
  const o = new OpenAI({ maxRetries: 0 });
  const c = await o.chat.completions.create({ model: "gpt-test", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  console.log("openai=" + c.choices[0].message.content + " in=" + c.usage.prompt_tokens);
  let text = "", chunks = 0;
  for await (const ch of await o.chat.completions.create({ model: "gpt-test", max_tokens: 10, stream: true,
                                                          messages: [{ role: "user", content: "hi" }] })) {
    chunks++;
    if (ch.choices.length) text += ch.choices[0].delta.content || "";
    else console.log("usage chunk seen");
  }
  console.log("openai-stream=" + text);
  const r = await o.responses.create({ model: "gpt-test", input: "hi", max_output_tokens: 10 });
  console.log("responses=" + r.output_text + " in=" + r.usage.input_tokens);
  // The key's reach: the model list goes, the account's files do not (403).
  const status = async (p) => { try { return (await p.asResponse()).status; } catch (e) { return e.status; } };
  console.log("models=" + (await status(a.models.list())) + "," + (await status(o.models.list())));
  console.log("files=" + (await status(a.get("/v1/files"))) + "," + (await status(o.files.list())));
})().catch((e) => { console.log("error=" + e); process.exit(1); });
JS
        run_jail -p "$P" -- node sdk.js
        is "$JAIL_RC" 0 "the official SDKs ran in the jail" || jail_diag
        like "$JAIL_OUT" "anthropic=Hello! in=25" "@anthropic-ai/sdk: messages.create through the gateway"
        like "$JAIL_OUT" "anthropic-stream=Hello there! out=7" "@anthropic-ai/sdk: a stream through the gateway"
        like "$JAIL_OUT" "openai=Hello! in=20" "openai: chat.completions.create through the gateway"
        like "$JAIL_OUT" "openai-stream=Hello!" "openai: a chat stream through the gateway"
        unlike "$JAIL_OUT" "usage chunk seen" "openai: the usage chunk it did not ask for is hidden"
        like "$JAIL_OUT" "responses=Hello! in=20" "openai: responses.create through the gateway"
        like "$JAIL_OUT" "models=200,200" "both SDKs list the models through the gateway"
        like "$JAIL_OUT" "files=403,403" "... and get 403 listing the account's files (the key's reach)"
        is "$(events_of llm.response | jq -s -c '[.[] | select(.metered) | .estimated] | unique')" "[false]" "the SDKs' calls metered exactly"
        is "$(jf '.llm.anthropic["claude-test"]["gen_ai.usage.input_tokens"]')" 56 "run.json: the SDK's Anthropic input tokens"
fi

# --- a request without an output limit, under a tokens cap: bounded by the model's maximum
# output (max_output_tokens in the prices). Above the 32000 reserved: 32000 set in the request
# the provider gets (Chat max_completion_tokens, Responses max_output_tokens) and said in
# llm.request; a maximum the profile gives at or below 32000: that maximum set (the profile's
# claim, so the provider holds the request to what was reserved); not known: as the client
# sent it, 32000 reserved.
PMAX=$(write_profile gwmax '{"extends": "default", "prices": {"gpt-test": {"input": 1e-6, "output": 2e-6},
        "gpt-big": {"input": 1e-6, "output": 2e-6, "max_output_tokens": 100000},
        "gpt-sml": {"input": 1e-6, "output": 2e-6, "max_output_tokens": 4096}}, "llm": {'"$PROVIDERS"'}}')
n0=$(records)
run_jail -p "$PMAX" --cap tokens=1000000 -- /bin/sh -c '
        python3 client.py openai-chat "" gpt-big "{\"max_tokens\": null}";
        python3 client.py openai-responses "" gpt-big "{\"max_output_tokens\": null}";
        python3 client.py openai-chat "" gpt-sml "{\"max_tokens\": null}";
        python3 client.py openai-chat "" gpt-test "{\"max_tokens\": null}"'
is "$JAIL_RC" 0 "calls without an output limit ran" || jail_diag
is "$(grep -c '^status=200' <<<"$JAIL_OUT")" 4 "each was answered"
limits_sent() { sed -n "$((n0 + $1))p" "$T/record" | jq -c '.body | fromjson | [.max_completion_tokens, .max_output_tokens]'; }
is "$(limits_sent 1)" "[32000,null]" "Chat, a model whose maximum is above 32000: max_completion_tokens 32000 sent"
is "$(limits_sent 2)" "[null,32000]" "Responses: max_output_tokens 32000 sent"
is "$(limits_sent 3)" "[4096,null]" "a model whose maximum the profile gives below 32000: max_completion_tokens 4096 sent"
is "$(limits_sent 4)" "[null,null]" "a model whose maximum is not known: the request as the client sent it"
is "$(events_of llm.request | jq -s -c '[.[] | .output_limit_set.field]')" \
        '["max_completion_tokens","max_output_tokens","max_completion_tokens",null]' "llm.request says which request was changed"
is "$(events_of llm.request | jq -s -c '[.[2:][] | .reserved.tokens > 32000]')" "[false,true]" \
        "reserved: the known maximum (4096), else 32000"

# --- --llm NAME: a built-in provider (its key from agentjail's environment)
ANTHROPIC_API_KEY=sk-test-builtin run_jail --llm anthropic -- /bin/sh -c 'echo "$ANTHROPIC_BASE_URL $ANTHROPIC_API_KEY"'
is "$JAIL_OUT" "http://127.0.0.1:4100/anthropic agentjail-gateway-$JAIL_RUN_ID" "--llm anthropic: base URL and placeholder"
is "$(jf '.profile.resolved.llm.providers.anthropic.url')" "https://api.anthropic.com" "--llm is in run.json's resolved profile"
env -u ANTHROPIC_API_KEY "$AGENTJAIL" run --llm anthropic -- /bin/true >/dev/null 2>"$T/nokey.err"
like "$(cat "$T/nokey.err")" 'ANTHROPIC_API_KEY' "--llm anthropic without a key: refused, naming the variable"
run_jail --llm nosuch -- /bin/true
like "$JAIL_ERR" "nosuch" "--llm of an unknown provider is refused"

done_testing
