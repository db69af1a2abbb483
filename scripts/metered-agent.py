#!/usr/bin/env python3
"""An example agent that reports its model usage and tool calls to agentjail's
broker ($AGENTJAIL_BROKER), as a real agent loop would: each step "calls the
model" (a tokens report) and then a tool (asked for a verdict first, the result
reported after). With a cap on tokens it breaches after a few steps: agentjail
freezes it, and `agentjail thaw RUN --raise tokens=+N` lets it carry on.

    agentjail run --name demo --cap tokens=6000 -- python3 metered-agent.py 10
"""
import json
import os
import socket
import sys


class Broker:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, op, **fields):
        self.next_id += 1
        req = {"v": 1, "id": self.next_id, "op": op, **fields}
        self.sock.sendall((json.dumps(req) + "\n").encode())
        return json.loads(self.reader.readline())


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    broker = Broker(os.environ["AGENTJAIL_BROKER"])
    for step in range(1, steps + 1):
        rep = broker.call("tokens", **{"gen_ai.request.model": "gpt-4o",
                                       "gen_ai.usage.input_tokens": 1200,
                                       "gen_ai.usage.output_tokens": 300,
                                       "gen_ai.usage.cache_read.input_tokens": 800})
        print(f"step {step}: model call -> {rep.get('verdict')}", flush=True)
        if rep.get("verdict") == "breach":
            # By the time this line is read the run was frozen and then thawed.
            print(f"step {step}: breached {rep.get('cap')}; an operator let me continue", flush=True)
        call_id = f"call-{step}"
        rep = broker.call("tool", **{"gen_ai.tool.name": "crm.update",
                                     "gen_ai.tool.call.id": call_id,
                                     "gen_ai.tool.call.arguments": {"id": 42, "stage": f"step-{step}"}})
        print(f"step {step}: tool crm.update -> {rep.get('verdict')} {rep.get('reason') or ''}", flush=True)
        if rep.get("verdict") == "allow":
            broker.call("tool_result", **{"gen_ai.tool.call.id": call_id, "status": "ok",
                                          "undo": {"tool": "crm.update", "args": {"id": 42, "stage": "open"}}})
    usage = broker.call("usage").get("usage", {})
    print("usage: " + ", ".join(f"{k} {v.get('used')}/{v.get('limit')}" for k, v in usage.items()
                                if v.get("limit") is not None), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
