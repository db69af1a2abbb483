#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Breach-to-frozen latency of real jails (scripts/bench).

  breach-bench.py drive AGENTJAIL N [GAP_MS]   (on the host, cwd = a workspace holding this file)
      Starts `agentjail run --name breach-bench-GAP_MS --cap tokens=1000 -- python3 ./breach-bench.py agent N`
      and, N times: waits until the run is thawed ("frozen 0") and GAP_MS more
      (default 0: the next breach follows the thaw at once), lets the agent go, waits with poll(POLLPRI) on the run's
      cgroup.events until it says "frozen 1", takes CLOCK_MONOTONIC, reads the time
      the agent stamped just before sending its breaching request (the jail shares
      the host's clock: no time namespace), then `agentjail thaw ID --raise
      tokens=+1000`. Prints one JSON object with p50/p99/max in microseconds.
  breach-bench.py agent N                (inside the jail)
      N times: waits for a byte on ./go (a FIFO), asks the broker how many tokens
      remain, writes ./stamp.K = CLOCK_MONOTONIC ns, sends a tokens request one
      token past the cap and blocks reading the reply (it is frozen meanwhile).
"""
import json
import os
import select
import socket
import subprocess
import sys
import time



def agent(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.environ["AGENTJAIL_BROKER"])
    f = s.makefile("rb")

    def call(req):
        s.sendall((json.dumps(req) + "\n").encode())
        line = f.readline()
        if not line:
            raise SystemExit("agent: the broker closed the connection")
        return json.loads(line)

    go = os.open("go", os.O_RDONLY)
    for k in range(n):
        if os.read(go, 1) != b"g":
            raise SystemExit("agent: no go")
        usage = call({"v": 1, "id": f"u{k}", "op": "usage"})
        remaining = usage["usage"]["tokens"]["remaining"]
        stamp = f"stamp.{k}"
        with open(stamp + ".tmp", "w") as out:
            out.write(str(time.clock_gettime_ns(time.CLOCK_MONOTONIC)))
        os.rename(stamp + ".tmp", stamp)
        rep = call({"v": 1, "id": k, "op": "tokens", "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": remaining + 1, "gen_ai.usage.output_tokens": 0})
        if rep.get("verdict") != "breach":
            raise SystemExit(f"agent: expected a breach, got {rep}")
    return 0


def events_state(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode()
    return dict(line.split() for line in text.splitlines() if line.strip())


def wait_frozen(fd, want, timeout_s):
    """Waits with POLLPRI until cgroup.events says frozen == want; returns CLOCK_MONOTONIC ns."""
    p = select.poll()
    p.register(fd, select.POLLPRI | select.POLLERR)
    deadline = time.monotonic() + timeout_s
    while True:
        if events_state(fd).get("frozen") == want:
            return time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"drive: cgroup.events never said frozen {want}")
        # The kernel sends at most one cgroup.events notification per 10 ms: right after a
        # thaw, the "frozen 1" one comes late. Look every 0.2 ms as well.
        p.poll(min(left * 1000, 0.2))


def find_run(state_dir, proc, name, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = os.path.join(state_dir, "runs")
        for d in os.listdir(runs) if os.path.isdir(runs) else []:
            try:
                with open(os.path.join(runs, d, "run.json")) as f:
                    run = json.load(f)
            except (OSError, ValueError):
                continue
            if run.get("name") == name:
                for path in run.get("cgroup", {}).get("paths", []):
                    if os.path.exists(os.path.join(path, "cgroup.events")):
                        return run["id"], os.path.join(path, "cgroup.events")
        if proc.poll() is not None:
            raise SystemExit(f"drive: the jail exited early ({proc.returncode})")
        time.sleep(0.02)
    raise SystemExit("drive: the run never appeared")


def pct(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * q))]


def drive(aj, n, gap_ms):
    name = f"breach-bench-{gap_ms}"
    for f in os.listdir("."):
        if f == "go" or f.startswith("stamp."):
            os.unlink(f)
    os.mkfifo("go")
    proc = subprocess.Popen([aj, "run", "--name", name, "--cap", "tokens=1000", "--",
                             "python3", "./breach-bench.py", "agent", str(n)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open("jail.err", "w"))
    run_id = None
    try:
        # Opening the FIFO for writing waits for the agent to open it for reading.
        go = os.open("go", os.O_WRONLY)
        run_id, events_path = find_run(os.environ["AGENTJAIL_STATE_DIR"], proc, name)
        fd = os.open(events_path, os.O_RDONLY | os.O_CLOEXEC)
        lat = []
        for k in range(n):
            wait_frozen(fd, "0", 10)
            if gap_ms:
                time.sleep(gap_ms / 1000)  # the gap is what is being varied, not a poll
            os.write(go, b"g")
            frozen = wait_frozen(fd, "1", 10)
            with open(f"stamp.{k}") as f:
                sent = int(f.read())
            if frozen < sent:
                raise SystemExit(f"drive: frozen before the request was sent (breach {k})")
            lat.append((frozen - sent) / 1000.0)
            subprocess.run([aj, "thaw", run_id, "--raise", "tokens=+1000"], check=True,
                           stdout=subprocess.DEVNULL)
        os.close(go)
        rc = proc.wait(timeout=30)
        if rc != 0:
            raise SystemExit(f"drive: the agent's run exited {rc}: {open('jail.err').read()[-2000:]}")
    finally:
        if proc.poll() is None:
            if run_id:
                subprocess.run([aj, "kill", run_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    lat.sort()
    print(json.dumps({"breaches": n, "gap_ms": gap_ms, "p50_us": round(pct(lat, 0.5), 1), "p99_us": round(pct(lat, 0.99), 1),
                      "max_us": round(lat[-1], 1)}))
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "agent":
        return agent(int(sys.argv[2]))
    if len(sys.argv) in (4, 5) and sys.argv[1] == "drive":
        return drive(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) == 5 else 0)
    print("usage: breach-bench.py drive AGENTJAIL N [GAP_MS] | agent N", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
