#!/usr/bin/env python3
"""How much CPU one start of each command costs in all, the commands measured in the same run.

  tests/helpers/startup-cpu.py [--blocks B] [--per-block N] [--settle S] [--stdio FILE]
      [--out FIGURES.json] [--summary FILE] NAME CMD [NAME CMD ...]

Blocks of N starts of one command (shell words in CMD; each waited for before the next),
the commands taking turns block by block, the order reversed every other round (B rounds,
after one untimed start of each). Around each block, the machine's busy CPU from /proc/stat's
"cpu" line (all CPUs: user, nice, system, irq and softirq; not idle or iowait, nor steal, the
hypervisor's time, nor guest, which user already holds), read before the first start and
after a settle of S seconds (default 0.3) past the last exit, so that the kernel work a start
defers (a network namespace torn down by a kernel worker, a process that exits after its
parent, as agentjail's watchdog does) lands in its block; divided by N. Also each block's wall
time per start (spawn to the last exit, the settle left out), and the CPU of every process
a start made (os.wait4's rusage of the command, which holds the descendants it or they
waited for, and of each descendant left an orphan, reaped here as their subreaper: bwrap's
pid 1, which its parent leaves unreaped, agentjail's watchdog, which outlives its
supervisor; not kernel workers).

The busy figure is the machine's: anything else running moves it (counted in 1/CLK_TCK
ticks, sampled at the tick), so it means something only on a quiet machine; the first
command's figure less the bare command's ("bare", if given) is the part above the noise
floor, printed with the load average before the run and the share of the CPUs' time busy
over the bare command's blocks (near its own starts' share on a quiet machine; the rest is
other load, which a block's figure holds for its wall time and settle, so a longer start
holds more of it). Prints the medians over the blocks with their range; the first command
against the second (its peer); FIGURES.json gets every block's figures; --summary appends
two lines (scripts/bench's summary).
"""
import argparse
import ctypes
import json
import os
import shlex
import statistics
import sys
import time

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


def busy_ticks(stat_text):
    """/proc/stat's first line (all CPUs): its busy ticks (user nice system irq softirq) and all."""
    for line in stat_text.splitlines():
        f = line.split()
        if f and f[0] == "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[1:9])
            # steal is the hypervisor's; guest and guest_nice (f[9:]) are inside user
            return user + nice + system + irq + softirq, user + nice + system + idle + iowait + irq + softirq + steal
    raise ValueError("no 'cpu' line in /proc/stat")


def machine_busy():
    with open("/proc/stat") as f:
        return busy_ticks(f.read())


def reap_orphans(wait_s):
    """The CPU seconds of the descendants left to us as their subreaper that have exited,
    waiting up to wait_s for those still running (a later block counts any left)."""
    cpu, deadline = 0.0, time.monotonic() + wait_s
    while True:
        try:
            pid, _, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu
        if pid:
            cpu += ru.ru_utime + ru.ru_stime
        elif time.monotonic() < deadline:
            time.sleep(0.001)
        else:
            return cpu


def block(argv, n, settle, stdio):
    """n starts of argv: busy ms, wall ms and its processes' CPU ms per start; the block's busy and all ticks."""
    tree = 0.0
    b0, all0 = machine_busy()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pid = os.posix_spawnp(argv[0], argv, os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, stdio, 0), (os.POSIX_SPAWN_DUP2, stdio, 1)])
        _, status, ru = os.wait4(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"startup-cpu: {shlex.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
        tree += ru.ru_utime + ru.ru_stime + reap_orphans(0)
    wall = (time.perf_counter_ns() - t0) / 1e6
    time.sleep(settle)
    tree += reap_orphans(5)
    b1, all1 = machine_busy()
    return (b1 - b0) * TICK_MS / n, wall / n, tree * 1000 / n, b1 - b0, all1 - all0


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "blocks": [round(v, 4) for v in values]}


def label(text):
    """A summary line's label, two spaces at least before its figures (scripts/bench splits there)."""
    return text.ljust(32) if len(text) <= 30 else text + "  "


def main():
    ap = argparse.ArgumentParser(usage=__doc__.strip().splitlines()[2].strip() + " ...")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--per-block", type=int, default=50)
    ap.add_argument("--settle", type=float, default=0.3)
    ap.add_argument("--stdio", default="/dev/null")
    ap.add_argument("--out")
    ap.add_argument("--summary")
    ap.add_argument("cmds", nargs="+")
    a = ap.parse_args()
    if len(a.cmds) < 4 or len(a.cmds) % 2 or a.blocks < 1 or a.per_block < 1 or a.settle < 0:
        ap.error("wants NAME CMD pairs (two at least), --blocks and --per-block >= 1, --settle >= 0")
    cmds = dict(zip(a.cmds[::2], (shlex.split(c) for c in a.cmds[1::2])))
    names = list(cmds)
    stdio = os.open(a.stdio, os.O_RDWR)
    # Orphans come to us, not to the host's init: their CPU is the start's too.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"startup-cpu: cannot become a subreaper: {os.strerror(ctypes.get_errno())}")
    load = open("/proc/loadavg").read().split()[:3]
    for k in names:
        block(cmds[k], 1, 0, stdio)
    got = {k: {"cpu": [], "wall": [], "tree": []} for k in names}
    ticks = {k: [0, 0] for k in names}  # busy and all ticks over the command's blocks
    for r in range(a.blocks):
        for k in names if r % 2 == 0 else reversed(names):
            cpu, wall, tree, busy, every = block(cmds[k], a.per_block, a.settle, stdio)
            got[k]["cpu"].append(cpu)
            got[k]["wall"].append(wall)
            got[k]["tree"].append(tree)
            ticks[k][0] += busy
            ticks[k][1] += every
    figs = {"blocks": a.blocks, "per_block": a.per_block, "settle_s": a.settle, "tick_ms": TICK_MS,
            "load_before": " ".join(load),
            "commands": {k: {"cpu_ms": spread(v["cpu"]), "wall_ms": spread(v["wall"]), "tree_cpu_ms": spread(v["tree"])}
                         for k, v in got.items()}}
    for k in names:
        figs["commands"][k]["busy_share"] = ticks[k][0] / ticks[k][1] if ticks[k][1] else 0.0
    c = figs["commands"]
    med = {k: {m: c[k][m]["median"] for m in ("cpu_ms", "wall_ms", "tree_cpu_ms")} for k in names}
    print(f"CPU per start, the machine's busy time (/proc/stat, all CPUs, {TICK_MS:g} ms ticks), {a.blocks} blocks of"
          f" {a.per_block} starts each taking turns, {a.settle:g} s settle after each (load average before: {' '.join(load)}):")
    print(f"  {'':10s} {'CPU/start':>10s} {'(min, max)':>16s} {'wall/start':>10s} {'processes':>9s} {'(min, max)':>16s}")
    for k in names:
        print(f"  {k:10s} {med[k]['cpu_ms']:7.3f} ms ({c[k]['cpu_ms']['min']:6.3f}, {c[k]['cpu_ms']['max']:6.3f})"
              f" {med[k]['wall_ms']:7.3f} ms {med[k]['tree_cpu_ms']:6.3f} ms"
              f" ({c[k]['tree_cpu_ms']['min']:6.3f}, {c[k]['tree_cpu_ms']['max']:6.3f})")
    first, peer = names[0], names[1]
    ratio = med[first]["cpu_ms"] / med[peer]["cpu_ms"] if med[peer]["cpu_ms"] else float("inf")
    tree_ratio = med[first]["tree_cpu_ms"] / med[peer]["tree_cpu_ms"] if med[peer]["tree_cpu_ms"] else float("inf")
    figs["cpu_per_peer"], figs["tree_cpu_per_peer"] = ratio, tree_ratio
    floor = note = ""
    if "bare" in med and "bare" not in (first, peer):
        above = {k: med[k]["cpu_ms"] - med["bare"]["cpu_ms"] for k in (first, peer)}
        figs["cpu_above_bare_ms"] = above
        floor = f"; above bare's {med['bare']['cpu_ms']:.3f} ms (the noise floor): {above[first]:.3f} vs {above[peer]:.3f} ms"
        # What the other load left: with nothing else running, the bare blocks' CPUs idle but
        # for the starts themselves (the settle is most of each block).
        note = (f"  the CPUs busy {c['bare']['busy_share'] * 100:.1f} % of the bare command's blocks (its own processes"
                f" {sum(got['bare']['tree']) * a.per_block / (max(ticks['bare'][1], 1) * TICK_MS) * 100:.1f} %): the rest is other"
                " load, which every block's figure holds for its wall time and settle")
    print(f"  {first}/{peer}: CPU {ratio:.2f}x{floor}; their processes' own {tree_ratio:.2f}x (orphans included,"
          " kernel workers not)")
    if note:
        print(note)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(figs, f)
    if a.summary:
        bare = (f", bare {med['bare']['cpu_ms']:.3f} ms, CPUs {c['bare']['busy_share'] * 100:.0f} % busy in its blocks"
                if "bare" in med else "")
        with open(a.summary, "a") as s:
            s.write(f"{label('start-up CPU ' + first + '/' + peer)}{ratio:.2f}x ({med[first]['cpu_ms']:.3f} ms vs"
                    f" {med[peer]['cpu_ms']:.3f} ms{bare}; machine's busy CPU, load {load[0]})\n")
            s.write(f"{label('start-up tree ' + first + '/' + peer)}{tree_ratio:.2f}x"
                    f" ({med[first]['tree_cpu_ms']:.3f} ms vs {med[peer]['tree_cpu_ms']:.3f} ms; rusage of every process a start made)\n")


if __name__ == "__main__":
    main()
