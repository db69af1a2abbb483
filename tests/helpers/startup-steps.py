#!/usr/bin/env python3
"""Where each millisecond of an agentjail start-up goes, from `agentjail run -vv` runs.

  tests/helpers/startup-steps.py STEPS.txt [FIGURES.json]

STEPS.txt holds the -vv lines of several runs ("agentjail: +1.234 ms STEP"), a line "--"
after each run (scripts/bench --only startup writes it). The supervisor's steps and the
jail init's ("init: ...") are stamped with the time since the supervisor started; a step's
own time is the time since the previous step of the same process (the init's first, since
the supervisor started). Prints, per step in the order they happen: the median time at
which it is reached, and the median, p90 and max of its own time. FIGURES.json gets the same
as JSON (for scripts/bench --json).
"""
import json
import re
import statistics
import sys

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


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[2])
    at, own, order = {}, {}, []
    runs = list(runs_of(sys.argv[1]))
    if not runs:
        sys.exit(f"startup-steps: no -vv step lines in {sys.argv[1]}")
    for run in runs:
        last = {"supervisor": 0.0, "init": 0.0}
        for step, t in run:
            who = "init" if step.startswith("init: ") else "supervisor"
            if step not in at:
                order.append(step)
            at.setdefault(step, []).append(t)
            own.setdefault(step, []).append(t - last[who])
            last[who] = t
    med = lambda v: statistics.median(v)
    p90 = lambda v: statistics.quantiles(v, n=10)[-1] if len(v) > 1 else v[0]
    order.sort(key=lambda s: med(at[s]))
    print(f"start-up steps (agentjail run -vv -p default -- /bin/true, {len(runs)} runs; ms):")
    print(f"  {'step':36s} {'at':>8s} {'own':>8s} {'own p90':>8s} {'own max':>8s}")
    figs = {"runs": len(runs), "steps": []}
    for s in order:
        print(f"  {s:36s} {med(at[s]):8.3f} {med(own[s]):8.3f} {p90(own[s]):8.3f} {max(own[s]):8.3f}")
        figs["steps"].append({"step": s, "runs": len(at[s]), "at_median_ms": med(at[s]),
                              "own_median_ms": med(own[s]), "own_p90_ms": p90(own[s]), "own_max_ms": max(own[s])})
    if len(sys.argv) == 3:
        json.dump(figs, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
