#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Asking an operator for a host (network.ask, --ask-net): curl in a real jail, through the
# proxy (HTTP CONNECT, plain HTTP, SOCKS5), to a server on a test host in a network
# namespace. A host matching an ask pattern waits (inspect lists it, the alert command
# gets approval.json); approve lets it through, deny answers 403, the timeout denies,
# --always lets a second connection pass unasked, connections to one host share one
# approval, a client that gives up cancels, the run's end cancels, a decision while frozen
# takes effect at the thaw; an approved name that
# resolves to loopback is still refused; a host no pattern matches is refused at once.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

for tool in curl python3 ip; do
        if ! command -v "$tool" >/dev/null; then
                if [[ "${AGENTJAIL_TEST_STRICT:-0}" == 1 ]]; then
                        echo "Bail out! $tool is needed (AGENTJAIL_TEST_STRICT=1; bash scripts/setup installs it)"
                        exit 1
                fi
                skip_all "$tool is needed"
        fi
done

WWW="$TEST_TMP/www"
mkdir -p "$WWW"
echo hello-from-test-host >"$WWW/index.txt"

# The server: on a test host (a documentation address, not "internal"), so an approved
# name is reached like any public one.
if ! test_host_up 198.51.100; then
        echo "Bail out! cannot make the test host's network namespace"
        exit 1
fi
pass "a test host in a network namespace"
PORT=$((20000 + $$ % 20000))
(cd "$WWW" && exec ip netns exec "$TH_NS" python3 -m http.server "$PORT" --bind "$TH_IP") >/dev/null 2>&1 &
BG_PIDS+=("$!")
for _ in $(seq 100); do
        curl -s -o /dev/null "http://$TH_IP:$PORT/index.txt" && break
        sleep 0.05
done
{
        for h in a b c d e g s t; do printf '%s %s.ask.test\n' "$TH_IP" "$h"; done
        printf '%s other.test\n127.0.0.1 in.ask.test\n' "$TH_IP"
} >"$TEST_TMP/hosts"
export AGENTJAIL_HOSTS_FILE="$TEST_TMP/hosts"

cat >"$TEST_TMP/alert.sh" <<EOF
#!/bin/sh
cat >"$TEST_TMP/alert.tmp" && mv "$TEST_TMP/alert.tmp" "$TEST_TMP/alert.json"
EOF
chmod 0755 "$TEST_TMP/alert.sh"
PROFILE=$(write_profile ask '{"extends": "default", "network": {"ask": ["*.ask.test"]},
        "approvals": {"timeout": "4s"}, "alert": {"exec": ["'"$TEST_TMP/alert.sh"'"], "timeout": "5s"}}')

# The agent: one request after the other, each result on a line "NAME=..." (curl's body or
# HTTP status, and its exit status).
U="http://%s.ask.test:$PORT/index.txt"
start_jail_bg -p "$PROFILE" --ask-net "in.ask.test" --name ask-net -- /bin/sh -c '
        get() { name=$1; shift; out=$(curl -sS -m 20 "$@" 2>&1); echo "$name=$? $out"; }
        code() { name=$1; shift; out=$(curl -s -m 20 -o /dev/null -w "%{http_code}" "$@"); echo "$name=$? $out"; }
        get A -p '"$(printf "$U" a)"'
        code B '"$(printf "$U" b)"'
        get S --proxy socks5h://127.0.0.1:1080 '"$(printf "$U" s)"'
        code T '"$(printf "$U" t)"'
        get C1 '"$(printf "$U" c)"'
        get C2 -p '"$(printf "$U" c)"'
        code IN http://in.ask.test:'"$PORT"'/index.txt
        code OTHER http://other.test:'"$PORT"'/index.txt
        curl -s -m 1 -o /dev/null '"$(printf "$U" d)"'; echo D=$?
        get E1 '"$(printf "$U" e)"' & get E2 '"$(printf "$U" e)"' & wait
        echo SHARED-DONE
        get G '"$(printf "$U" g)"'
        curl -s -m 20 -o /dev/null http://f.ask.test:'"$PORT"'/ & sleep 2; echo LAST'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
OUTF="$TEST_TMP/bg.out"

# asked HOST: waits for the approval.requested naming HOST; sets NET_ID.
asked() {
        NET_ID=
        wait_for_output "$RUN_DIR/events.jsonl" "\"type\":\"approval\\.requested\".*\"host\":\"$1\"" 10 || return 1
        NET_ID=$(jq -r --arg h "$1" 'select(.type == "approval.requested" and .host == $h) | .id' \
                "$RUN_DIR/events.jsonl" | tail -n 1)
        [[ -n $NET_ID ]]
}

# result NAME: the agent's line NAME=... (waits for it).
result() {
        wait_for_output "$OUTF" "^$1=" "${2:-10}" || { echo "none"; return; }
        sed -n "s/^$1=//p" "$OUTF" | head -n 1
}

if [[ -z $RUN_ID ]] || ! asked a.ask.test; then
        fail "a connection to a host matching network.ask is held" "$(cat "$TEST_TMP/bg.err" "$RUN_DIR/events.jsonl" 2>/dev/null)"
        done_testing
fi

# ---- held, listed, alerted, approved (HTTP CONNECT)
pass "a connection to a host matching network.ask is held (approval.requested)"
like "$NET_ID" '^net-[0-9]+$' "its approval id is net-N"
ev=$(events_of approval.requested "$RUN_DIR" | head -n 1)
like "$ev" '"kind":"net"' "approval.requested says kind net"
like "$ev" '"port":'"$PORT" "approval.requested names the port"
like "$ev" '"pattern":"\*\.ask\.test"' "approval.requested names the ask pattern that matched"
like "$ev" '"process":\{"pid":[0-9]+,"jail_pid":[0-9]+,"cmd":"curl -sS -m 20 -p http://a\.ask\.test' \
        "approval.requested names the process that asked (found through the jail's socket table)"
sleep 0.5
unlike "$(cat "$OUTF")" '^A=' "the client gets no reply while the host waits for approval"

aj inspect "$RUN_ID"
like "$OUT" "$NET_ID +a\\.ask\\.test:$PORT +awaiting_approval" "inspect lists the host approval beside the tool calls" || op_diag
aj inspect "$RUN_ID" --json
is "$(jq -r --arg i "$NET_ID" '.pending[] | select(.id == $i) | "\(.kind) \(.host) \(.state) \(.connections)"' <<<"$OUT")" \
        "net a.ask.test awaiting_approval 1" "inspect --json: kind, host, state, connections" || op_diag
if wait_for_output "$TEST_TMP/alert.json" '"a\.ask\.test"' 10; then
        AL=$(cat "$TEST_TMP/alert.json")
        is "$(jq -r '"\(.kind) \(.run) \(.host.id) \(.host.host)"' <<<"$AL")" "approval $RUN_ID $NET_ID a.ask.test" \
                "the alert command gets approval.json naming the host"
        is "$(jq -r .approve <<<"$AL")" "agentjail approve $RUN_ID '$NET_ID'" "approval.json has the approve command"
        is "$(jq -r .approve_always <<<"$AL")" "agentjail approve $RUN_ID '$NET_ID' --always" \
                "... and the one that allows the host for the rest of the run"
else
        fail "the alert command gets approval.json naming the host" "$(cat "$RUN_DIR/alert.log" 2>/dev/null)"
fi

aj approve "$RUN_ID" "$NET_ID" --digest "$(printf '0%.0s' {1..64})"
is "$RC" 1 "a host approval takes no --digest"
aj approve "$RUN_ID" "$NET_ID"
is "$RC" 0 "approve net-N" || op_diag
is "$OUT" "run $RUN_ID approved host $NET_ID" "approve says so"
is "$(result A)" "0 hello-from-test-host" "the approved CONNECT reaches the server"
aj approve "$RUN_ID" "$NET_ID"
like "$RC $ERR" "^1 .*no host approval \"$NET_ID\" is pending" "a decided approval cannot be decided again"

# ---- denied: 403 (plain HTTP)
if asked b.ask.test; then
        aj deny "$RUN_ID" "$NET_ID" --reason "not this one"
        is "$RC" 0 "deny net-N" || op_diag
        is "$(result B)" "0 403" "the denied request gets 403"
        like "$(events_of net.denied "$RUN_DIR" | grep '"host":"b.ask.test"')" 'denied by root: not this one' \
                "net.denied records who denied it and why"
else
        fail "a plain HTTP request is held too"
fi

# ---- SOCKS5, approved
if asked s.ask.test; then
        aj approve "$RUN_ID" "$NET_ID"
        is "$(result S)" "0 hello-from-test-host" "an approved SOCKS5 connection reaches the server"
else
        fail "a SOCKS5 connection is held too"
fi

# ---- nobody decides: the profile's approvals.timeout (4 s) denies
if asked t.ask.test; then
        t0=$SECONDS
        is "$(result T 15)" "0 403" "after the approval timeout the request gets 403"
        cmp_num $((SECONDS - t0)) -ge 3 "not before the timeout"
        like "$(events_of approval "$RUN_DIR" | grep '"host":"t.ask.test"')" '"decision":"timeout"' \
                "the approval event says timeout"
else
        fail "a request nobody decides on is held"
fi

# ---- --always: the second connection passes without asking
if asked c.ask.test; then
        aj approve "$RUN_ID" "$NET_ID" --always
        is "$RC" 0 "approve --always" || op_diag
        is "$(result C1)" "0 hello-from-test-host" "the approved request passes"
        is "$(result C2)" "0 hello-from-test-host" "a second connection to the host passes too"
        is "$(events_of approval.requested "$RUN_DIR" | grep -c '"host":"c.ask.test"')" 1 "... without a new approval"
        like "$(events_of approval "$RUN_DIR" | grep '"host":"c.ask.test"')" "\"always\":true,\"rule\":\"c.ask.test:$PORT\"" \
                "the chain records the host added to the run's allowlist"
else
        fail "a host approved --always is asked for first"
fi

# ---- an approved name resolving to loopback is still refused
if asked in.ask.test; then
        aj approve "$RUN_ID" "$NET_ID"
        is "$(result IN)" "0 403" "an approved host resolving to 127.0.0.1 is still refused"
        like "$(events_of net.denied "$RUN_DIR" | grep '"host":"in.ask.test"')" \
                "resolves to internal address 127.0.0.1, which no address rule names" \
                "with the rebinding protection's reason"
else
        fail "--ask-net adds to network.ask"
fi

# ---- a host no pattern matches: refused at once, never asked for
is "$(result OTHER)" "0 403" "a host matching no ask pattern is refused at once"
is "$(events_of approval.requested "$RUN_DIR" | grep -c '"host":"other.test"')" 0 "... without an approval request"

# ---- a client that gives up cancels
is "$(result D 10)" 28 "the client gave up waiting (curl -m 1)"
wait_for_output "$RUN_DIR/events.jsonl" '"type":"approval".*"host":"d.ask.test".*"decision":"cancelled"' 5
like "$(events_of approval "$RUN_DIR" | grep '"host":"d.ask.test"')" '"decision":"cancelled"' \
        "its approval is cancelled when its connection closes"

# ---- two connections to one host at once share one approval
if asked e.ask.test; then
        for _ in $(seq 50); do
                aj inspect "$RUN_ID" --json
                [[ $(jq -r --arg i "$NET_ID" '.pending[] | select(.id == $i) | .connections' <<<"$OUT") == 2 ]] && break
                sleep 0.1
        done
        is "$(jq -r --arg i "$NET_ID" '.pending[] | select(.id == $i) | .connections' <<<"$OUT")" 2 \
                "two connections to one host wait for one approval"
        aj approve "$RUN_ID" "$NET_ID"
        is "$(result E1) $(result E2)" "0 hello-from-test-host 0 hello-from-test-host" "one decision lets both through"
        is "$(events_of approval.requested "$RUN_DIR" | grep -c '"host":"e.ask.test"')" 1 "... asked for once"
else
        fail "concurrent connections to one host are held"
fi

# ---- decided while the run is frozen: recorded at once, the agent goes on after the thaw
if asked g.ask.test; then
        aj freeze "$RUN_ID"
        is "$RC" 0 "freeze the run while a host awaits approval" || op_diag
        aj approve "$RUN_ID" "$NET_ID"
        is "$RC" 0 "approve while frozen" || op_diag
        like "$(events_of approval "$RUN_DIR" | grep '"host":"g.ask.test"')" '"decision":"approved"' \
                "the decision is recorded while frozen"
        sleep 1
        unlike "$(cat "$OUTF")" '^G=' "the frozen agent has not gone on"
        aj thaw "$RUN_ID"
        is "$RC" 0 "thaw" || op_diag
        is "$(result G)" "0 hello-from-test-host" "after the thaw the approved request completes"
else
        fail "a host is held before a freeze"
fi

# ---- the run ends with a host still awaiting approval: cancelled, before run.exit
asked f.ask.test || fail "the last connection is held"
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "the run ends"
is "$(jq -r 'select((.type == "approval" and .host == "f.ask.test") or .type == "run.exit") | .type + (.decision // "")' \
        "$RUN_DIR/events.jsonl" | paste -sd, -)" "approvalcancelled,run.exit" \
        "a host still awaiting approval is cancelled when the run ends, before run.exit"

aj logs "$RUN_ID" --verify
is "$RC" 0 "the chain verifies" || op_diag

# ---- the key is validated like the allowlist, errors naming it
BAD=$(write_profile bad-ask '{"extends": "default", "network": {"ask": ["*.com"]}}')
run_jail -p "$BAD" -- /bin/true
is "$JAIL_RC" 125 "a bad network.ask entry refuses the run"
like "$JAIL_ERR" 'network\.ask.*"\*\.com".*wildcard needs at least two labels' "the error names the key and the entry"
run_jail --ask-net 'bad host' -- /bin/true
is "$JAIL_RC" 125 "a bad --ask-net pattern refuses the run"
like "$JAIL_ERR" "network\\.ask: 'bad host'" "the error names it"

test_host_down
done_testing
