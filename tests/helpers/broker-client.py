#!/usr/bin/env python3
"""A small broker client for the integration tests (runs inside a jail).

Speaks the line protocol of include/agentjail/broker.h on $AGENTJAIL_BROKER and
prints one `key=value` line per reply, so the shell tests can read results.
"""
import json
import os
import socket
import sys
import time


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.environ["AGENTJAIL_BROKER"])
    return s, s.makefile("rb")


def call(conn, req):
    s, f = conn
    s.sendall((json.dumps(req) + "\n").encode())
    line = f.readline()
    if not line:
        raise SystemExit("broker closed the connection")
    return json.loads(line)


def show(rep):
    err = rep.get("error") or {}
    print(f"id={rep.get('id')} ok={str(rep.get('ok')).lower()} verdict={rep.get('verdict')} "
          f"cap={rep.get('cap')} code={err.get('code')}", flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    conn = connect()
    if cmd == "tokens":  # tokens N INPUT OUTPUT [CACHED] [MODEL]
        n, inp, out = int(args[0]), int(args[1]), int(args[2])
        cached = int(args[3]) if len(args) > 3 else 0
        model = args[4] if len(args) > 4 else "gpt-4o"
        for i in range(n):
            rep = call(conn, {"v": 1, "id": i, "op": "tokens", "gen_ai.request.model": model,
                              "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
                              "gen_ai.usage.cache_read.input_tokens": cached})
            show(rep)
            if rep.get("verdict") == "breach":
                break
    elif cmd == "tools":  # tools N NAME same|distinct
        n, name, mode = int(args[0]), args[1], args[2]
        for i in range(n):
            a = {"q": "same"} if mode == "same" else {"q": i}
            rep = call(conn, {"v": 1, "id": i, "op": "tool", "gen_ai.tool.name": name,
                              "gen_ai.tool.call.arguments": a})
            show(rep)
            if rep.get("verdict") == "breach":
                break
    elif cmd == "results":  # results N UNDO_BYTES: tool calls' reports, each with an undo record
        n, size = int(args[0]), int(args[1])
        for i in range(n):
            # The broker takes an undo record only for a call it allowed: ask first (not shown).
            call(conn, {"v": 1, "id": i, "op": "tool", "gen_ai.tool.name": "fs.write",
                        "gen_ai.tool.call.id": f"c{i}"})
            show(call(conn, {"v": 1, "id": i, "op": "tool_result", "gen_ai.tool.call.id": f"c{i}",
                             "status": "ok", "undo": {"tool": "fs.restore", "blob": "u" * size}}))
    elif cmd == "flood":  # flood SECONDS [OP]: pipelined requests, 500 in flight, as fast as they go
        s, _ = conn
        seconds, op = float(args[0]), (args[1] if len(args) > 1 else "usage")
        req = {"v": 1, "id": 1, "op": op}
        if op == "tokens":
            req.update({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1,
                        "gen_ai.usage.output_tokens": 1})
        batch = (json.dumps(req) + "\n").encode() * 500
        sent, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            s.sendall(batch)
            sent += 500
            left = 500
            while left > 0:
                b = s.recv(1 << 20)
                if not b:
                    raise SystemExit("broker closed the connection")
                left -= b.count(b"\n")
        print(f"sent={sent}", flush=True)
    elif cmd == "pipelined":  # pipelined CONNS N: N tokens requests sent at once on each of CONNS connections
        conns, n = int(args[0]), int(args[1])
        socks = [conn[0]] + [connect()[0] for _ in range(conns - 1)]
        for c, s in enumerate(socks):  # input_tokens = 1000 * (connection + 1) + request number
            s.sendall(b"".join((json.dumps({"v": 1, "id": i, "op": "tokens", "gen_ai.request.model": "m",
                                            "gen_ai.usage.input_tokens": 1000 * (c + 1) + i,
                                            "gen_ai.usage.output_tokens": 1}) + "\n").encode()
                               for i in range(n)))
        in_order = ok = 0
        for s in socks:
            f, want = s.makefile("rb"), 0
            for _ in range(n):
                rep = json.loads(f.readline())
                in_order += rep.get("id") == want
                ok += rep.get("ok") is True
                want += 1
        print(f"replies={in_order} ok={ok}", flush=True)
    elif cmd == "usage":
        print(json.dumps(call(conn, {"v": 1, "id": "u", "op": "usage"})), flush=True)
    elif cmd == "garbage":
        s, f = conn
        for line in [b"not json\n", b"{\"v\": 1, \"id\": 7, \"op\": \"nope\"}\n",
                     b"{\"v\": 1, \"op\": \"usage\"}\n",
                     b"{\"v\": 1, \"id\": 8, \"op\": \"tokens\", \"gen_ai.usage.input_tokens\": \"many\"}\n",
                     b"{\"v\": 99, \"id\": 9, \"op\": \"usage\"}\n",
                     b"x" * 200000 + b"\n"]:
            s.sendall(line)
            show(json.loads(f.readline()))
        show(call(conn, {"v": 1, "id": "after", "op": "usage"}))
    elif cmd == "worker":  # worker FILE: a process that visibly makes progress
        path = args[0]
        n = 0
        while True:
            n += 1
            with open(path + ".tmp", "w") as fh:
                fh.write(str(n))
            os.replace(path + ".tmp", path)
            time.sleep(0.02)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
