#!/usr/bin/env python3
"""TAP checks of scripts/bench's Python helpers that need no jail (meson test unit-bench-helpers):
startup-steps.py's table from saved -vv lines, and scale-bench.py's leftover check finding
what a run left behind (a live process, a cgroup directory, a mount namespace holder, a new
entry in the runtime dir) and nothing when all is gone."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

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

print(f"1..{n}")
sys.exit(1 if failed else 0)
