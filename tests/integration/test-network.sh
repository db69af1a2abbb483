#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The egress proxy in real jails: curl inside reaches an allowed server on the host's
# loopback through the proxy; denied hosts and ports get 403 with the rule; a direct
# connection has no network at all; a name resolving to loopback is refused unless the
# range is named; IPv6 literals; exact byte counts for 100 MiB; 200 concurrent
# connections; plain HTTP carries one request per connection (a pipelined one never
# reaches even a server that would answer it), Host must match, bare CR refused; a test
# host in a network namespace is reached while this host's own veth address, and an address
# only a prefix on lo makes the host's, are refused;
# filled idle tunnels stay within a bound of host TCP memory; the per-run connection
# limit. Servers: python3 on the host's 127.0.0.1 and ::1 and in the namespace, names
# from an AGENTJAIL_HOSTS_FILE (no internet needed).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
        if [[ "${AGENTJAIL_TEST_STRICT:-0}" == 1 ]]; then
                echo "Bail out! curl and python3 are needed (AGENTJAIL_TEST_STRICT=1; bash scripts/setup installs them)"
                exit 1
        fi
        skip "network tests" "curl and python3 are needed (apt-get install curl)"
        done_testing
fi

WWW="$TEST_TMP/www"
mkdir -p "$WWW"
echo hello-from-host >"$WWW/index.txt"
head -c $((100 * 1024 * 1024)) /dev/zero >"$WWW/big.bin"

free_port() {
        python3 -c 'import socket; s = socket.socket(socket.AF_INET6 if ":" in "'"$1"'" else socket.AF_INET); s.bind(("'"$1"'", 0)); print(s.getsockname()[1])'
}

PORT=$(free_port 127.0.0.1)
WEBLOG="$TEST_TMP/web.log"
(cd "$WWW" && exec python3 -m http.server "$PORT" --bind 127.0.0.1) >/dev/null 2>>"$WEBLOG" &
BG_PIDS+=("$!")
# A keep-alive server that answers every request it reads, "Connection: close" or not (as
# some servers do): what a pipelined request would reach if the proxy relayed it.
KALOG="$TEST_TMP/keepalive.log"
cat >"$TEST_TMP/keepalive.py" <<'PY'
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def handle(self):
        while True:
            self.handle_one_request()
            if not self.raw_requestline:
                break
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PORTK=$(free_port 127.0.0.1)
(cd "$WWW" && exec python3 "$TEST_TMP/keepalive.py" "$PORTK") >/dev/null 2>>"$KALOG" &
BG_PIDS+=("$!")
PORT6=$(free_port ::1)
(cd "$WWW" && exec python3 -m http.server "$PORT6" --bind ::1) >/dev/null 2>&1 &
BG_PIDS+=("$!")
for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/index.txt" && curl -s -o /dev/null "http://[::1]:$PORT6/index.txt" &&
                curl -s -o /dev/null "http://127.0.0.1:$PORTK/index.txt" && break
        sleep 0.05
done

printf '127.0.0.1 web.test other.test\n' >"$TEST_TMP/hosts"
export AGENTJAIL_HOSTS_FILE="$TEST_TMP/hosts"

# --- allowed: by name, with the loopback range named explicitly (plain HTTP and CONNECT)
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        /bin/sh -c "curl -sSf -m 10 http://web.test:$PORT/index.txt && curl -sSf -m 10 -p http://web.test:$PORT/index.txt"
is "$JAIL_RC" 0 "curl through the proxy reaches an allowed server" || jail_diag
is "$JAIL_OUT" $'hello-from-host\nhello-from-host' "both absolute-form and CONNECT requests got the file"
ev=$(events_of net.connect | head -1)
like "$ev" '"verdict":"allowed"' "net.connect recorded as allowed"
like "$ev" '"host":"web.test"' "net.connect names the host"
like "$ev" '"address":"127.0.0.1"' "net.connect names the address connected to"
like "$(jfc '.network // .net // {}')" 'bytes' "run.json carries the proxy's counters"

# --- a tunnel the agent leaves open when its command exits, to a server that keeps its end
# open: its net.connect comes before run.exit, inside the chain's anchor (recorded when the
# proxy was freed, after the anchor, it made `logs --verify` call the run's own chain broken)
PORTH=$(free_port 127.0.0.1)
python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])' "$PORTH" &
BG_PIDS+=("$!")
for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORTH") 2>/dev/null && break
        sleep 0.05
done
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORTH" -- python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(("CONNECT web.test:%s HTTP/1.1\r\nHost: web.test:%s\r\n\r\n" % (sys.argv[1], sys.argv[1])).encode())
print(s.recv(100).split(b"\r\n")[0].decode())' "$PORTH"
is "$JAIL_OUT" "HTTP/1.1 200 Connection established" "a tunnel is open when the command exits" || jail_diag
is "$(jq -rs 'map(.type | select(. == "net.connect" or . == "run.exit")) | join(" ")' "$JAIL_RUN_DIR/events.jsonl")" \
        "net.connect run.exit" "the tunnel left open is recorded before run.exit"
aj logs "${JAIL_RUN_DIR##*/}" --verify
is "$RC" 0 "logs --verify: the chain with it is intact" || op_diag

# --- a tunnel let through while the agent's share of the event log had room is recorded at
# its end, whatever the agent left of that share (its net.connect, with the bytes sent,
# was refused as the agent's event: the connection was in no record but run.json's count)
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$WORKSPACE/client.py"
P=$(write_profile netlog '{"extends": "default", "logs": {"events_bytes": "64K", "reports_per_sec": 100000},
        "network": {"allow": ["web.test", "127.0.0.1:'"$PORTH"'"]}}')
start_jail_bg -p "$P" -- python3 -c 'import socket, subprocess, sys
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(("CONNECT web.test:%s HTTP/1.1\r\nHost: web.test:%s\r\n\r\n" % (sys.argv[1], sys.argv[1])).encode())
s.recv(100)
s.sendall(b"x" * 60000)
subprocess.run(["python3", "./client.py", "results", "2000", "10"], stdout=subprocess.DEVNULL)' "$PORTH"
RUN_DIR=$(wait_run_dir 10)
wait_for_output "$RUN_DIR/events.jsonl" '"type":"quarantine"' 15 ||
        fail "filling the agent's share of the log quarantines the run" "$(cat "$TEST_TMP/bg.err")"
aj kill "${RUN_DIR##*/}"
wait_exit "$BG_PID" 20
is "$(jq -r 'select(.type == "net.connect") | "\(.verdict) \(.bytes_up)"' "$RUN_DIR/events.jsonl")" "allowed 60000" \
        "the tunnel's net.connect, with its 60000 bytes, is recorded after the share filled"
aj logs "${RUN_DIR##*/}" --verify
is "$RC" 0 "logs --verify: intact" || op_diag

# --- plain HTTP: one request per client connection, the Host header must match
# A keep-alive client with two URLs: each request gets its own connection.
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        curl -sSf -m 10 "http://web.test:$PORT/index.txt" "http://web.test:$PORT/index.txt"
is "$JAIL_OUT" $'hello-from-host\nhello-from-host' "curl with two URLs through the proxy gets both" || jail_diag
is "$(count_lines "$(events_of net.connect)")" 2 "two requests, two connections, two net.connect events"
# A second request pipelined behind an allowed one, to a host not allowed: never relayed,
# even to a server that would answer it.
: >"$KALOG"
PIPE_PY='import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(("GET http://web.test:%d/index.txt HTTP/1.1\r\nHost: web.test:%d\r\n\r\n"
           "GET http://other.test:%d/secret-pipelined HTTP/1.1\r\nHost: other.test:%d\r\n\r\n" % (port, port, port, port)).encode())
s.settimeout(10)  # the proxy ends the connection after the first answer, though the server would not
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.count(b"HTTP/1."), "answer(s)", "close" if b"Connection: close" in data else "no-close")'
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORTK" -- python3 -c "$PIPE_PY" "$PORTK"
is "$JAIL_OUT" "1 answer(s) close" \
        "a pipelined second request gets no answer; the first says Connection: close and the connection ends" || jail_diag
sleep 0.2
unlike "$(cat "$KALOG")" "secret-pipelined" "the pipelined request to a host not allowed never reached the server"
like "$(cat "$KALOG")" "GET /index.txt" "the first request did"
ev=$(events_of net.denied)
like "$ev" '"host":"other.test"' "the pipelined request is recorded as denied, under its own host"
like "$ev" 'not relayed' "net.denied says it was not relayed"
# Host header naming another host than the URL: 400 and net.denied.
: >"$WEBLOG"
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        curl -s -m 10 -w '\n%{http_code}' -H "Host: other.test:$PORT" "http://web.test:$PORT/index.txt"
like "$JAIL_OUT" "Host header does not match" "a Host header naming another host is refused with the reason"
is "$(tail -1 <<<"$JAIL_OUT")" 400 "...with 400"
like "$(events_of net.denied)" '"host":"web.test"' "...and a net.denied event"
# A bare CR inside a header: 400, nothing relayed.
BARE_CR_PY='import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(("GET http://web.test:%d/index.txt HTTP/1.1\r\nHost: web.test:%d\r\nX: a\rGET /x HTTP/1.1\r\n\r\n" % (port, port)).encode())
s.settimeout(10)
print(s.recv(4096).split(b"\r\n")[0].decode())'
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- python3 -c "$BARE_CR_PY" "$PORT"
is "$JAIL_OUT" "HTTP/1.1 400 Bad Request" "a bare CR in a header is refused with 400" || jail_diag
sleep 0.2
is "$(grep -c GET "$WEBLOG")" 0 "nothing reached the server"

# --- denied host and port: 403 with the reason, and a net.denied event
run_jail --allow-net "web.test:1" --allow-net "127.0.0.1:$PORT" -- \
        /bin/sh -c "curl -s -m 10 http://other.test:$PORT/; echo; curl -s -m 10 http://web.test:$PORT/"
like "$JAIL_OUT" "denied: host other.test is not in the network allowlist" "denied host: 403 names the reason"
like "$JAIL_OUT" "denied: port $PORT is not allowed for host web.test" "denied port: 403 names the reason"
run_jail --allow-net web.test -- curl -s -o /dev/null -w '%{http_code}' -m 10 "http://other.test:$PORT/"
is "$JAIL_OUT" 403 "a denied request is answered 403"
cmp_num "$(count_lines "$(events_of net.denied)")" -ge 1 "net.denied is recorded"

# --- rebinding: an allowed name resolving to loopback, without the range named
run_jail --allow-net web.test -- curl -s -m 10 "http://web.test:$PORT/index.txt"
like "$JAIL_OUT" "web.test resolves to internal address 127.0.0.1, which no address rule names" \
        "a name resolving to loopback is refused (rebinding protection)"
like "$(events_of net.denied)" '"address":"127.0.0.1"' "the refusal names the address"

# --- bypassing the proxy: no network at all
hostip=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        curl -s -m 5 --noproxy '*' -o /dev/null "http://127.0.0.1:$PORT/index.txt"
isnt "$JAIL_RC" 0 "a direct connection to the host's loopback fails (the jail has its own lo)"
if [[ -n "$hostip" ]]; then
        run_jail --allow-net web.test --allow-net "$hostip" -- \
                curl -s -m 5 --noproxy '*' -o /dev/null "http://$hostip:$PORT/"
        is "$JAIL_RC" 7 "a direct connection to the host's address fails (no route: fail closed)"
fi

# --- IPv6 literal
run_jail --allow-net "[::1]:$PORT6" -- curl -sSf -m 10 "http://[::1]:$PORT6/index.txt"
is "$JAIL_OUT" hello-from-host "an IPv6 literal allowed by an address entry is reached" || jail_diag
run_jail --allow-net "[::1]:1" -- curl -s -m 10 -o /dev/null -w '%{http_code}' "http://[::1]:$PORT6/index.txt"
is "$JAIL_OUT" 403 "an IPv6 literal on another port is refused"

# --- 100 MiB: bytes in the event are exactly what crossed the proxy
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        curl -s -m 60 -o /dev/null -w '%{size_download} %{size_header}' "http://web.test:$PORT/big.bin"
read -r body hdr <<<"$JAIL_OUT"
is "$body" $((100 * 1024 * 1024)) "100 MiB downloaded through the proxy" || jail_diag
ev=$(events_of net.connect | tail -1)
is "$(jq -r .bytes_down <<<"$ev")" "$((body + hdr))" "net.connect bytes_down is the exact byte count"
cmp_num "$(jq -r .bytes_up <<<"$ev")" -gt 0 "net.connect counts bytes up"

# --- 200 concurrent connections
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORT" -- /bin/sh -c \
        "for i in \$(seq 200); do curl -s -m 30 -o /dev/null -w '%{http_code}\n' -p http://web.test:$PORT/index.txt & done; wait"
is "$(grep -c '^200$' <<<"$JAIL_OUT")" 200 "200 concurrent connections all succeed" || jail_diag
is "$(count_lines "$(events_of net.connect)")" 200 "200 net.connect events"

# --- the egress cap: crossing network.egress_bytes is a breach like any other cap
P=$(write_profile egress '{"extends": "default", "on_breach": "kill", "network": {"egress_bytes": "1M"}}')
run_jail -p "$P" --allow-net web.test --allow-net "127.0.0.1:$PORT" -- \
        curl -s -m 60 -o /dev/null "http://web.test:$PORT/big.bin"
is "$JAIL_RC" 123 "a download past network.egress_bytes breaches the cap and the run is killed (123)" || jail_diag
is "$(jf .cap "$JAIL_RUN_DIR/incident.json")" egress_bytes "incident.json names the egress cap"
is "$(events_of cap.breach | head -1 | jq -r .cap)" egress_bytes "a cap.breach event for egress_bytes"
cmp_num "$(jf .network.egress_bytes)" -le $((1024 * 1024)) "the egress counter does not pass the cap"

# --- a test host in a network namespace, and this host's own address on the veth to it
# Addresses from a documentation range (198.51.100.0/24): not "internal", so only the
# own-address rule can refuse the host side.
if [[ $EUID -ne 0 ]]; then
        skip "own-address tests" "creating a network namespace needs root"
else
        test_host_up 198.51.100
        is "$?" 0 "a test host in a network namespace, reached over a veth pair"
        NS=$TH_NS HOSTIP=$TH_HOSTIP THIP=$TH_IP
        PORTT=$(free_port 127.0.0.1)
        (cd "$WWW" && exec ip netns exec "$NS" python3 -m http.server "$PORTT" --bind "$THIP") >/dev/null 2>&1 &
        BG_PIDS+=("$!")
        (cd "$WWW" && exec python3 -m http.server "$PORTT" --bind "$HOSTIP") >/dev/null 2>&1 &
        BG_PIDS+=("$!")
        for _ in $(seq 100); do
                curl -s -o /dev/null "http://$THIP:$PORTT/index.txt" && curl -s -o /dev/null "http://$HOSTIP:$PORTT/index.txt" &&
                        break
                sleep 0.05
        done
        printf '%s th.test\n%s own.test\n' "$THIP" "$HOSTIP" >>"$TEST_TMP/hosts"
        run_jail --allow-net th.test --allow-net own.test -- /bin/sh -c \
                "curl -sS -m 10 http://th.test:$PORTT/index.txt; curl -s -m 10 http://own.test:$PORTT/index.txt"
        like "$JAIL_OUT" "^hello-from-host" "an allowed name resolving to the test host is reached" || jail_diag
        like "$JAIL_OUT" "own.test resolves to $HOSTIP, an address of this host, which no address rule names" \
                "an allowed name resolving to this host's own veth address is refused, with the reason"
        ev=$(events_of net.denied)
        like "$ev" "\"address\":\"$HOSTIP\"" "net.denied names the host's address"
        like "$ev" "an address of this host" "net.denied gives the reason"
        # The rest of a prefix on lo: 203.0.113.81/29 there makes 203.0.113.83 this host's too,
        # though no interface has that address. Seen from the test host's namespace (the
        # supervisor started there, its jail's namespace made from it), so this host's own
        # addresses and routes are not touched.
        ip -n "$NS" addr add 203.0.113.81/29 dev lo
        (cd "$WWW" && exec ip netns exec "$NS" python3 -m http.server "$PORTT" --bind 203.0.113.83) >/dev/null 2>&1 &
        BG_PIDS+=("$!")
        for _ in $(seq 100); do
                ip netns exec "$NS" curl -s -o /dev/null "http://203.0.113.83:$PORTT/index.txt" && break
                sleep 0.05
        done
        printf '203.0.113.83 prefix.test\n' >>"$TEST_TMP/hosts"
        printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s "%s" "$@"\n' "$NS" "$AGENTJAIL" >"$TEST_TMP/in-ns"
        chmod 0755 "$TEST_TMP/in-ns"
        AGENTJAIL="$TEST_TMP/in-ns" run_jail --allow-net prefix.test -- /bin/sh -c \
                "curl -s -m 10 http://prefix.test:$PORTT/index.txt; curl -s -m 10 -o /dev/null -w '%{http_connect}' -p http://prefix.test:$PORTT/index.txt"
        like "$JAIL_OUT" "prefix.test resolves to 203.0.113.83, an address of this host" \
                "a name resolving to an address a prefix on lo makes this host's is refused" || jail_diag
        unlike "$JAIL_OUT" "hello-from-host" "...and the server there is not reached"
        like "$JAIL_OUT" "403\$" "...through CONNECT too (403)"
        # The name looked up is the name checked: no resolv.conf search domain is appended.
        # A DNS server in the test host's namespace knows only nx.allowed.test.corp.test
        # (this host's veth address, a remote host from there); the resolv.conf the
        # supervisor reads searches corp.test. An allowed name that does not exist must not
        # become that one.
        : >"$TEST_TMP/dns.log"
        test_dns "$NS" 127.0.0.1 nx.allowed.test.corp.test "$HOSTIP" --log "$TEST_TMP/dns.log"
        printf 'nameserver 127.0.0.1\nsearch corp.test\n' >"$TEST_TMP/resolv.conf"
        printf '#!/bin/sh\nexec unshare -m sh -c '\''mount --bind "$0" /etc/resolv.conf && exec nsenter --net=/run/netns/%s "$@"'\'' %s "%s" "$@"\n' \
                "$NS" "$TEST_TMP/resolv.conf" "$AGENTJAIL" >"$TEST_TMP/in-ns-dns"
        chmod 0755 "$TEST_TMP/in-ns-dns"
        AGENTJAIL="$TEST_TMP/in-ns-dns" run_jail --allow-net '*.allowed.test' -- \
                curl -s -m 10 "http://nx.allowed.test:$PORTT/index.txt"
        like "$JAIL_OUT" "cannot resolve nx.allowed.test: no such host" \
                "an allowed name that does not exist is not looked up under resolv.conf's search domain" || jail_diag
        unlike "$JAIL_OUT" "hello-from-host" "...so the host that name would have become is not reached"
        like "$(cat "$TEST_TMP/dns.log")" "^nx.allowed.test 1" "...the name itself was asked for"
        unlike "$(cat "$TEST_TMP/dns.log")" "corp.test" "...and nothing under the search domain"
        test_host_down
        trap cleanup EXIT
fi

# --- memory outside the jail: idle tunnels that a server fills do not pin host TCP memory
# A server that pushes 8 MiB into every connection (from user space: its own socket buffer
# is small) and keeps it open; 100 CONNECT tunnels from the jail that never read.
cat >"$TEST_TMP/pusher.py" <<'PY'
import socket, sys, threading
ls = socket.socket()
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(512)
def push(c):
    try:
        c.sendall(b"x" * (8 << 20))
        c.recv(1)
    except OSError:
        pass
    c.close()
while True:
    c, _ = ls.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    threading.Thread(target=push, args=(c,), daemon=True).start()
PY
PORTP=$(free_port 127.0.0.1)
python3 "$TEST_TMP/pusher.py" "$PORTP" >/dev/null 2>&1 &
BG_PIDS+=("$!")
for _ in $(seq 100); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$PORTP" \
                2>/dev/null && break
        sleep 0.05
done
TUNNELS_PY='import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def tcp_mem():  # pages of TCP memory, host-wide (the counter is not per network namespace)
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1])
before = tcp_mem()
socks, codes = [], []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(("CONNECT web.test:%d HTTP/1.1\r\nHost: web.test:%d\r\n\r\n" % (port, port)).encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            break
        head += b
    codes.append(head.split(b" ")[1].decode() if head else "eof")
    socks.append(s)
time.sleep(4)  # the server fills every tunnel as far as the buffers on its way let it
print("codes", " ".join(sorted(set("%s=%d" % (c, codes.count(c)) for c in codes))))
print("grew", max(0, tcp_mem() - before))'
PAGE=$(getconf PAGESIZE)
run_jail --allow-net web.test --allow-net "127.0.0.1:$PORTP" -- python3 -c "$TUNNELS_PY" "$PORTP" 100
like "$JAIL_OUT" "codes 200=100" "100 idle CONNECT tunnels are open" || jail_diag
grew=$(awk '/^grew/ {print $2}' <<<"$JAIL_OUT")
# Bound: 2 MiB per tunnel (the proxy's two sockets at 512 KiB each way, the jail's own
# socket); unbounded, the proxy's sockets autotune to several MiB each.
cmp_num "$((grew * PAGE))" -lt $((100 * 2 * 1024 * 1024)) \
        "host TCP memory grew by $((grew * PAGE / 1048576)) MiB for 100 filled idle tunnels (bound 200 MiB)"

# --- the per-run connection limit (network.max_connections): beyond it, 503 and an event
P=$(write_profile maxconn '{"extends": "default", "network": {"max_connections": 20}}')
run_jail -p "$P" --allow-net web.test --allow-net "127.0.0.1:$PORTP" -- python3 -c "$TUNNELS_PY" "$PORTP" 30
like "$JAIL_OUT" "codes 200=20 503=10" "with max_connections 20, 20 tunnels open and 10 get 503" || jail_diag
is "$(events_of net.denied | grep -c 'too many connections (at most 20 per run)')" 10 \
        "each refused connection is a net.denied event naming the limit"

kill_bg
done_testing
