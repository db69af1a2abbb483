# SPDX-License-Identifier: Apache-2.0
# test-mcp.sh: an MCP client (this process) and, as `agentjail mcp`'s server (with the
# argument "server"), a server that lists 1024 tools with long names (move_..., denied by
# the test's profile) and a kept one. The client makes a call held for approval, then asks
# for N listings at once, and says what came back: "lists=N filtered=F errors=E" (F: with
# only the kept tool left) and "held=waiting" if the held call has no answer yet.
import json
import os
import select
import subprocess
import sys
import time

if sys.argv[1] == "server":
    for line in sys.stdin:
        m = json.loads(line)
        if m.get("method") == "tools/list":
            tools = [{"name": "move_%04d_" % i + "x" * 230, "inputSchema": {}} for i in range(1023)]
            tools.append({"name": "kept", "inputSchema": {}})
            print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"tools": tools}}), flush=True)
    sys.exit(0)

n = int(sys.argv[1])
relay = subprocess.Popen(["agentjail", "mcp", "--name", "fs", "--", "python3", sys.argv[0], "server"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)


def send(m):
    relay.stdin.write((json.dumps(m) + "\n").encode())


send({"jsonrpc": "2.0", "id": "held", "method": "tools/call", "params": {"name": "hold_me", "arguments": {}}})
for i in range(n):
    send({"jsonrpc": "2.0", "id": i, "method": "tools/list"})
answers, buf, deadline = {}, b"", time.time() + 60
while len([k for k in answers if k != "held"]) < n and time.time() < deadline:
    if not select.select([relay.stdout], [], [], 1)[0]:
        continue
    data = os.read(relay.stdout.fileno(), 1 << 20)
    if not data:
        break
    buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        m = json.loads(line)
        answers[m.get("id")] = m
lists = [m for k, m in answers.items() if k != "held"]
filtered = sum(1 for m in lists if [t["name"] for t in m.get("result", {}).get("tools", [])] == ["kept"])
errors = sum(1 for m in lists if "error" in m)
print("lists=%d filtered=%d errors=%d" % (len(lists), filtered, errors))
print("held=" + ("answered: " + json.dumps(answers["held"])[:300] if "held" in answers else "waiting"), flush=True)
relay.terminate()
relay.wait()
