#!/usr/bin/env python3
"""TAP checks of scripts/bench's Python helpers that need no jail (meson test unit-bench-helpers):
startup-steps.py's table from saved -vv lines, startup-cpu.py's CPU per start (the busy
ticks it reads, a command that spins, or leaves a spinning orphan, counted in both figures,
its figures' and summary lines' shape), scale-bench.py's leftover check finding what a run left behind (a live
process, a cgroup directory, a mount namespace holder, a new entry in the runtime dir) and
nothing when all is gone, proxy-bench.py's jail driver and CPU readings (ns, not ticks: the
supervisor's threads, http-bench's counters and its `cpu` wrapper), startup-critical-path.py's
walk over a made-up scheduler trace, and work-load.sh --env (the variables the work group
compares)."""
import collections
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # nothing written next to the sources
here = os.path.dirname(os.path.abspath(__file__))
n = failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print(f"{'ok' if cond else 'not ok'} {n} - {what}")


def load(name):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), os.path.join(here, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


with tempfile.TemporaryDirectory() as tmp:
    # Three runs; the supervisor's and the init's steps interleave; one run lacks a step.
    steps = os.path.join(tmp, "steps.txt")
    with open(steps, "w") as f:
        for base in (1.0, 2.0, 3.0):
            f.write(f"agentjail: +{0.2 * base:.3f} ms profile loaded\n")
            f.write(f"agentjail: +{1.0 * base:.3f} ms cloned\n")
            f.write(f"agentjail: +{1.5 * base:.3f} ms init: started\n")
            f.write(f"agentjail: +{2.0 * base:.3f} ms cgroups joined\n")
            if base != 3.0:
                f.write(f"agentjail: +{2.5 * base + 1.0:.3f} ms init: joined\n")
            f.write("unrelated line\n--\n")
    figs = os.path.join(tmp, "steps.json")
    p = subprocess.run([sys.executable, os.path.join(here, "startup-steps.py"), steps, figs],
                       capture_output=True, text=True)
    ok(p.returncode == 0, "startup-steps.py reads saved -vv runs")
    t = json.load(open(figs))
    by = {s["step"]: s for s in t["steps"]}
    ok(t["runs"] == 3, "three runs counted")
    ok([s["step"] for s in t["steps"]] == ["profile loaded", "cloned", "init: started", "cgroups joined", "init: joined"],
       "steps in the order reached (median time)")
    ok(abs(by["cgroups joined"]["at_median_ms"] - 4.0) < 1e-9, "a step's median time")
    ok(abs(by["cgroups joined"]["own_median_ms"] - 2.0) < 1e-9,
       "a supervisor step's own time is since the supervisor's previous step, not the init's")
    ok(abs(by["init: started"]["own_median_ms"] - 3.0) < 1e-9, "the init's first step counts from 0")
    ok(abs(by["init: joined"]["own_median_ms"] - 2.5) < 1e-9 and by["init: joined"]["runs"] == 2,
       "a step missing from a run is the median of the runs that have it")
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").write("nothing\n--\n")
    p = subprocess.run([sys.executable, os.path.join(here, "startup-steps.py"), empty], capture_output=True, text=True)
    ok(p.returncode != 0 and "no -vv step lines" in p.stderr, "no step lines: an error, not an empty table")

    sc = load("startup-cpu")
    ok(sc.busy_ticks("cpu  100 2 30 1000 50 4 5 600 40 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n") == (141, 1791),
       "busy ticks: user, nice, system, irq, softirq; not idle, iowait, steal or guest; all: but guest")
    # A shell that waits for a Python spinning 30 ms of CPU, and one that leaves it running
    # and exits: both starts' processes hold the spin, the orphan's reaped as their subreaper.
    py = "python3 -c \"import time; t = time.process_time(); any(time.process_time() - t > 0.03 for _ in iter(int, 1))\""
    spin, orphan = f"sh -c '{py} && true'", f"sh -c '{py} & exit 0'"
    figs, summ = os.path.join(tmp, "cpu.json"), os.path.join(tmp, "summary")
    p = subprocess.run([sys.executable, os.path.join(here, "startup-cpu.py"), "--blocks", "2", "--per-block", "3",
                        "--settle", "0.05", "--out", figs, "--summary", summ, "spin", spin, "orphan", orphan,
                        "true", "/bin/true", "bare", "/bin/true"], capture_output=True, text=True)
    ok(p.returncode == 0 and "spin/orphan: CPU" in p.stdout and "load average before" in p.stdout,
       "startup-cpu.py measures and prints: " + p.stderr[-300:])
    c = json.load(open(figs)) if p.returncode == 0 else {"commands": {}}
    cs = c["commands"]
    ok(list(cs) == ["spin", "orphan", "true", "bare"] and all(len(cs[k]["cpu_ms"]["blocks"]) == 2 for k in cs),
       "each command's figures, a value per block")
    ok(cs and cs["spin"]["tree_cpu_ms"]["min"] >= 30 and cs["true"]["tree_cpu_ms"]["median"] < 30,
       "a start's processes' CPU: what the command reaped, a child's spin among it")
    ok(cs and cs["orphan"]["tree_cpu_ms"]["min"] >= 30 and cs["orphan"]["cpu_ms"]["median"] >= 20,
       "a start's processes' CPU: an orphan's spin, reaped as its subreaper, and in the machine's busy CPU")
    ok(cs and cs["spin"]["cpu_ms"]["median"] >= 20 and cs["spin"]["wall_ms"]["min"] >= 30,
       "the machine's busy CPU and the wall time per start hold the spin")
    # The busy share may be 0: a quiet machine counts no 10 ms tick in blocks this short.
    ok("cpu_above_bare_ms" in c and "cpu_per_peer" in c and "load_before" in c and 0 <= cs["bare"]["busy_share"] <= 1,
       "the ratio, the floor, the load and the CPUs' busy share kept")
    lines = [re.split(r"\s{2,}", l.rstrip("\n"), maxsplit=1) for l in open(summ)] if p.returncode == 0 else []
    ok([l[0] for l in lines] == ["start-up CPU spin/orphan", "start-up tree spin/orphan"]
       and all(re.match(r"[0-9.]+x \(", l[1]) for l in lines),
       "two summary lines, label then the ratio (scripts/bench --json splits them so)")
    p = subprocess.run([sys.executable, os.path.join(here, "startup-cpu.py"), "one", "/bin/true"], capture_output=True, text=True)
    ok(p.returncode != 0 and "NAME CMD pairs" in p.stderr, "one command alone: refused")

    sb = load("scale-bench")

    class A:
        runtime = os.path.join(tmp, "runtime")
        aj = "/nonexistent/agentjail"

    a = A()
    os.makedirs(a.runtime)
    open(os.path.join(a.runtime, "seccomp-cache.key"), "w").close()
    before = set(os.listdir(a.runtime))
    cg = os.path.join(tmp, "cgroup-of-a-run")
    gone = subprocess.Popen(["true"])
    gone.wait()
    clean = [{"procs": [(gone.pid, None)], "cgroup_paths": [cg], "netns": "net:[1]"}]
    ok(sb.leftovers(a, clean, before) == [], "nothing left: nothing reported")
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.makedirs(cg)
        os.makedirs(os.path.join(a.runtime, "0123456789ab"))
        mine = os.readlink(f"/proc/{child.pid}/ns/net")
        run = [{"procs": [(child.pid, sb.start_time(child.pid))], "cgroup_paths": [cg], "netns": mine}]
        left = sb.leftovers(a, run, before)
        ok(cg in left, "a run's cgroup directory left: reported")
        ok(f"process {child.pid}" in left, "a run's live process: reported")
        ok(any("holds a jail's network namespace" in l for l in left), "a holder of a run's network namespace: reported")
        ok(os.path.join(a.runtime, "0123456789ab") in left, "a new entry in the runtime dir: reported")
        ok(not any("seccomp-cache.key" in l for l in left), "an entry that was there before: not reported")
        run[0]["procs"] = [(child.pid, sb.start_time(child.pid) + 1)]
        ok(f"process {child.pid}" not in sb.leftovers(a, run, before), "a pid reused by another process: not the run's")
    finally:
        child.kill()
        child.wait()

    # proxy-bench.py's jail driver, with a stand-in for `agentjail run ... -- CMD` that runs
    # CMD here: commands run in turn, and a driver waiting for the next costs no CPU (one
    # polling with `sleep 0.005` took 13 % of a CPU, load on every other path's measurement).
    pb = load("proxy-bench")
    work = os.path.join(tmp, "proxy-work")
    os.makedirs(os.path.join(work, "ws"))
    fake = os.path.join(tmp, "fake-agentjail")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n')
    os.chmod(fake, 0o755)
    j = pb.Jail(fake, work, [])
    try:
        ok(j.run("echo one").strip() == "one" and j.run("echo two; echo three").split() == ["two", "three"],
           "the driver runs each command in turn, its output returned")
        before = pb.cpu_s(j.pid)
        time.sleep(1.0)
        idle = pb.cpu_s(j.pid) - before
        ok(idle < 0.02, f"an idle driver costs no CPU ({idle * 1000:.0f} ms in 1 s)")
    finally:
        j.close()
    ok(j.proc.returncode == 0, "the driver ends when told to quit")

    # The CPU readings of the proxy group, in ns: the supervisor's threads (its 10 ms ticks
    # were 5 % of a GiB's figure per reading), the bare relay's and the server's children
    # (counters they add to as they end) and the client (`http-bench cpu`).
    spin = ("import threading, time\n"
            "def spin():\n"
            "    t = time.thread_time()\n"
            "    while time.thread_time() - t < 0.003: pass\n"
            "print('ready', flush=True); input()\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "print('spun', flush=True); input()\n")
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        before = pb.process_cpu_s(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        child.stdout.readline()
        spun = pb.process_cpu_s(child.pid) - before
        ok(0.006 <= spun < 0.05, f"two threads' 3 ms spins, ended, read as at least 6 ms, not in 10 ms ticks ({spun * 1e3:.2f} ms)")
    finally:
        child.kill()
        child.wait()
    hb = os.environ.get("HTTP_BENCH")
    if hb:
        p = subprocess.run([hb, "cpu", sys.executable, "-c", "import time\nt = time.process_time()\n"
                            "while time.process_time() - t < 0.02: pass\nprint('10 20')\nraise SystemExit(3)"],
                           capture_output=True, text=True)
        line, cpu = pb.timed_transfer(p.stdout)
        ok(p.returncode == 3 and line == "10 20" and 0.02 <= cpu < 0.5,
           f"http-bench cpu: the command's output, its exit status and its CPU ({cpu * 1e3:.1f} ms)")
        sc, rc = os.path.join(tmp, "serve.cpu"), os.path.join(tmp, "relay.cpu")
        serve = subprocess.Popen([hb, "serve", "--cpu-file", sc], stdout=subprocess.PIPE, text=True)
        sport = int(serve.stdout.readline())
        relay = subprocess.Popen([hb, "relay", str(sport), "--cpu-file", rc], stdout=subprocess.PIPE, text=True)
        rport = int(relay.stdout.readline())
        try:
            get = ("import socket\ns = socket.create_connection(('127.0.0.1', %d))\n"
                   "s.sendall(b'GET /%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\nn = 0\n"
                   "while (b := s.recv(1 << 20)): n += len(b)\nprint(n, n)")
            before = (pb.counter_s(sc), pb.counter_s(rc))
            p = subprocess.run([hb, "cpu", sys.executable, "-c", get % (rport, 64 << 20)], capture_output=True, text=True)
            line, client = pb.timed_transfer(p.stdout)
            served, relayed = pb.counter_s(sc) - before[0], pb.counter_s(rc) - before[1]
            ok(int(line.split()[0]) > 64 << 20 and client > 0 and served > 0 and relayed > 0,
               f"64 MiB through the bare relay: the client's, the server's and the relay's CPU counted, "
               f"as the transfer ended ({client * 1e3:.1f}, {served * 1e3:.1f}, {relayed * 1e3:.1f} ms)")
        finally:
            for proc in (relay, serve):
                proc.kill()
                proc.wait()
    else:
        ok(False, "HTTP_BENCH names the http-bench helper (meson test sets it)")

# startup-critical-path.py's walk back from the driver's wake-up, on a made-up trace: the
# supervisor (1 ms) clones the init, which works 1 ms and forks the command (0.5 ms); the init
# reaps it (0.1 ms) and wakes the supervisor (0.4 ms more, then its exit wakes the driver).
# While the supervisor sleeps the path is the init's and the command's, never its own sleep.
cp = load("startup-critical-path")
ev = [
    (0, 0, "swapper/0", "sched_switch", "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=python3 next_pid=100 next_prio=120"),
    (0, 100, "python3", "sched_process_fork", "comm=python3 pid=100 child_comm=python3 child_pid=200"),
    (0, 100, "python3", "sched_wakeup_new", "comm=python3 pid=200 prio=120 target_cpu=000"),
    (0, 100, "python3", "sched_switch", "prev_comm=python3 prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=python3 next_pid=200 next_prio=120"),
    (0.1, 200, "agentjail", "sched_process_exec", "filename=/usr/bin/agentjail pid=200 old_pid=200"),
    (1.0, 200, "agentjail", "sched_process_fork", "comm=agentjail pid=200 child_comm=agentjail child_pid=300"),
    (1.0, 200, "agentjail", "sched_wakeup_new", "comm=agentjail pid=300 prio=120 target_cpu=001"),
    (1.0, 200, "agentjail", "sched_switch", "prev_comm=agentjail prev_pid=200 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120"),
    (1.0, 0, "swapper/1", "sched_switch", "prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=agentjail next_pid=300 next_prio=120", 1),
    (2.0, 300, "agentjail", "sched_process_fork", "comm=agentjail pid=300 child_comm=agentjail child_pid=400", 1),
    (2.0, 300, "agentjail", "sched_wakeup_new", "comm=agentjail pid=400 prio=120 target_cpu=001", 1),
    (2.0, 300, "agentjail", "sched_switch", "prev_comm=agentjail prev_pid=300 prev_prio=120 prev_state=S ==> next_comm=agentjail next_pid=400 next_prio=120", 1),
    (2.05, 400, "true", "sched_process_exec", "filename=/bin/true pid=400 old_pid=400", 1),
    (2.5, 400, "true", "sched_process_exit", "comm=true pid=400 prio=120", 1),
    (2.5, 400, "true", "sched_waking", "comm=agentjail pid=300 prio=120 target_cpu=001", 1),
    (2.5, 400, "true", "sched_switch", "prev_comm=true prev_pid=400 prev_prio=120 prev_state=X ==> next_comm=agentjail next_pid=300 next_prio=120", 1),
    (2.6, 300, "agentjail", "sched_waking", "comm=agentjail pid=200 prio=120 target_cpu=000", 1),
    (2.6, 300, "agentjail", "sched_switch", "prev_comm=agentjail prev_pid=300 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120", 1),
    (2.6, 0, "swapper/0", "sched_switch", "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=agentjail next_pid=200 next_prio=120"),
    (2.95, 200, "agentjail", "sched_process_exit", "comm=agentjail pid=200 prio=120"),
    (2.95, 200, "agentjail", "sched_waking", "comm=python3 pid=100 prio=120 target_cpu=000"),
    (3.0, 200, "agentjail", "sched_switch", "prev_comm=agentjail prev_pid=200 prev_prio=120 prev_state=X ==> next_comm=python3 next_pid=100 next_prio=120"),
    (3.1, 100, "python3", "sched_switch", "prev_comm=python3 prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120"),
]
lines = [f"{e[2]} {e[1]} [{e[5] if len(e) > 5 else 0:03d}] {e[0] / 1000:.6f}: sched:{e[3]}: {e[4]}\n" for e in ev]
import io
out = io.StringIO()
starts = cp.report(cp.Trace(lines), [200], "true", out)
ok(len(starts) == 1, f"startup-critical-path.py finds the start ({out.getvalue()[:200]!r})")
if starts:
    s = starts[0]
    runs = collections.Counter()
    for a, z, r, w in s.path:
        if not w.startswith("~"):
            runs[(r, w)] += z - a
    ok(abs(s.end - s.start - 3.0) < 1e-6, f"the start runs from the fork to the driver's switch-in ({s.end - s.start:.3f} ms)")
    ok(set(runs) == {("supervisor", "runs"), ("init", "runs"), ("command", "runs"), ("driver", "queued behind supervisor")},
       f"the path is the three processes running and the woken driver queued, no sleep of the supervisor's on it"
       f" ({sorted(runs)})")
    ok(abs(runs[("supervisor", "runs")] - 1.35) < 1e-6 and abs(runs[("init", "runs")] - 1.1) < 1e-6
       and abs(runs[("command", "runs")] - 0.5) < 1e-6 and abs(runs[("driver", "queued behind supervisor")] - 0.05) < 1e-6,
       f"each part its length (supervisor 1.35, init 1.1, command 0.5, the driver 0.05 ms: {dict(runs)})")
    ok([round(b - s.start, 3) for b in s.bounds()] == [0.0, 1.0, 2.05, 2.5, 3.0],
       f"the phases' bounds: the clone, the exec, the exit, the driver woken ({s.bounds()})")
    ok("clone -> the command's exec: wall 1.050 ms" in out.getvalue(), "the phase table has the clone-to-exec wall")

# work-load.sh --env: the variables the work bench compares between its environments (each
# must see bare's), set, empty and unset told apart, and no item run.
p = subprocess.run(["bash", os.path.join(here, "work-load.sh"), "--env", "AJ_T_SET", "AJ_T_EMPTY", "AJ_T_UNSET"],
                   capture_output=True, text=True, cwd=os.path.dirname(here),
                   env={"PATH": os.environ["PATH"], "AJ_T_SET": "C.UTF-8", "AJ_T_EMPTY": ""})
ok(p.returncode == 0 and p.stdout == "AJ_T_SET=C.UTF-8\nAJ_T_EMPTY=\nAJ_T_UNSET unset\n",
   f"work-load.sh --env prints each variable as set, empty or unset ({p.stdout!r} {p.stderr[-200:]!r})")

print(f"1..{n}")
sys.exit(1 if failed else 0)
