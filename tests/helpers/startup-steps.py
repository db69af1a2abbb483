#!/usr/bin/env python3
"""Where each millisecond of an agentjail start-up goes, from `agentjail run -vv` runs.

  tests/helpers/startup-steps.py --runs N [--gap MS] [--out FIGURES.json] -- AGENTJAIL run -vv ... -- CMD
  tests/helpers/startup-steps.py STEPS.txt [FIGURES.json]

The first form runs the command N times (stdin and stdout /dev/null, stderr read), timing
each from spawn to exit (--gap: MS idle before each run, as when other work comes
between runs; the default runs them back to back); the second reads -vv lines saved from several runs
("agentjail: +1.234 ms STEP"), a line "--" after each run. The supervisor's steps and the
jail init's ("init: ...") are stamped with the time since the supervisor started; a step's
own time is the time since the previous step of the same process (the init's first, since
the supervisor started). Prints, per step in the order they happen: the median time at
which it is reached, and the median, p90 and max of its own time. FIGURES.json gets the same
as JSON (for scripts/bench --json). With the first form, also the median wall time and how
much of it lies outside the steps (exec and dynamic loading before the supervisor's clock
starts, exit after its last step).
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

USAGE = "usage:\n" + "\n".join(__doc__.strip().splitlines()[2:4])
LINE = re.compile(r"^agentjail: \+([0-9.]+) ms (.+)$")


def runs_of(path):
    run = []
    for line in open(path):
        line = line.rstrip("\n")
        if line == "--":
            if run:
                yield run
            run = []
            continue
        m = LINE.match(line)
        if m:
            run.append((m.group(2), float(m.group(1))))
    if run:
        yield run


def run_all(n, argv, path, gap_ms=0.0):
    """Runs argv n times (gap_ms apart); its -vv lines go to path, "--" after each; the wall times back."""
    walls = []
    with open(path, "w") as f:
        for _ in range(n):
            if gap_ms:
                time.sleep(gap_ms / 1000)
            t0 = time.perf_counter_ns()
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            walls.append((time.perf_counter_ns() - t0) / 1e6)
            if p.returncode != 0:
                sys.exit(f"startup-steps: {' '.join(argv)} exited {p.returncode}:\n{p.stderr[-1500:].decode(errors='replace')}")
            f.write(p.stderr.decode(errors="replace") + "--\n")
    return walls


def main():
    args, out = sys.argv[1:], None
    if args[:1] == ["--runs"]:
        if len(args) < 4 or not args[1].isdigit() or int(args[1]) < 1:
            sys.exit(USAGE)
        n, args, gap = int(args[1]), args[2:], 0.0
        if args[:1] == ["--gap"] and len(args) > 1:
            gap, args = float(args[1]), args[2:]
        if args[:1] == ["--out"] and len(args) > 1:
            out, args = args[1], args[2:]
        if args[:1] != ["--"] or len(args) < 2:
            sys.exit(USAGE)
        fd, src = tempfile.mkstemp(suffix=".steps")
        os.close(fd)
        try:
            report(src, out, run_all(n, args[1:], src, gap))
        finally:
            os.unlink(src)
        return
    if len(args) not in (1, 2):
        sys.exit(USAGE)
    report(args[0], args[1] if len(args) == 2 else None, None)


def report(path, out, walls):
    at, own, order, last = {}, {}, [], []
    runs = list(runs_of(path))
    if not runs:
        sys.exit(f"startup-steps: no -vv step lines in {path}")
    for run in runs:
        prev = {"supervisor": 0.0, "init": 0.0}
        for step, t in run:
            who = "init" if step.startswith("init: ") else "supervisor"
            if step not in at:
                order.append(step)
            at.setdefault(step, []).append(t)
            own.setdefault(step, []).append(t - prev[who])
            prev[who] = t
        last.append(max(t for _, t in run))
    med = lambda v: statistics.median(v)
    p90 = lambda v: statistics.quantiles(v, n=10, method="inclusive")[-1] if len(v) > 1 else v[0]
    order.sort(key=lambda s: med(at[s]))
    print(f"start-up steps (agentjail run -vv, {len(runs)} runs; ms since the supervisor started; own: since the"
          f" same process's previous step):")
    print(f"  {'step':36s} {'at':>8s} {'own':>8s} {'own p90':>8s} {'own max':>8s}")
    figs = {"runs": len(runs), "steps": []}
    for s in order:
        print(f"  {s:36s} {med(at[s]):8.3f} {med(own[s]):8.3f} {p90(own[s]):8.3f} {max(own[s]):8.3f}")
        figs["steps"].append({"step": s, "runs": len(at[s]), "at_median_ms": med(at[s]),
                              "own_median_ms": med(own[s]), "own_p90_ms": p90(own[s]), "own_max_ms": max(own[s])})
    if walls:
        outside = [w - l for w, l in zip(walls, last)]
        figs.update({"wall_median_ms": med(walls), "outside_steps_median_ms": med(outside)})
        print(f"  wall time (spawn to exit) median {med(walls):.3f} ms; outside the steps (before the supervisor's"
              f" clock starts, after its last step) median {med(outside):.3f} ms")
    if out:
        json.dump(figs, open(out, "w"))


if __name__ == "__main__":
    main()
