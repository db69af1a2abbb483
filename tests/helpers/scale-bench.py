#!/usr/bin/env python3
"""Scale benchmark (scripts/bench --only scale): many jails at once, and what each costs.

  scale-bench.py --aj AGENTJAIL --ws DIR --state DIR --runtime DIR --logdir DIR --out FIGURES.json
                 [--jails N] [--rounds N] [--bwrap 'BWRAP ARGS...'] [--broker-profile FILE [--broker-n N]]

1. N jails started at once (forked first, each held at a gate before its exec, all let go
   together), each running `sh -c 'echo I >FIFO; exec sleep 3600'`: the time until all N
   have written to the FIFO (each jail's command runs), and each one's p50. Three
   environments take turns in each of --rounds rounds: `agentjail run -p default`, the
   peer `bwrap` (--bwrap: its arguments, the command appended) and the bare command (what
   N shells and sleeps cost by themselves). Idle, 2 s after the last: host memory per jail
   from /proc/meminfo (MemAvailable, Slab, Percpu, KernelStack, PageTables before and
   after, divided by N); for agentjail, the RSS and PSS (/proc/PID/smaps_rollup) of each
   supervisor and watchdog and of the jail's own processes, what its memory cgroup holds
   (usage, kernel), the mounts of its mount namespace, the open files of its supervisor and
   watchdog. Then SIGTERM to every supervisor (what Ctrl-C does): the time until all have
   exited; then nothing may be left: no cgroup of the runs, none of their processes
   (supervisor, watchdog, the jail's), no holder of their network namespaces, no mount or
   new entry in the runtime dir.
2. With --broker-profile: one jail whose command waits, then runs `./broker-bench --client`
   (tokens messages pipelined on 1 and 8 connections, tool round trips) and sleeps: the
   supervisor's RSS idle before, after the load and its peak (VmHWM), and its biggest
   mappings.
Prints a report on stdout; FIGURES.json gets every figure (medians over the rounds, and
each round's). Exits 1 if a jail did not start or anything was left behind; on SIGTERM it
ends its jails (SIGTERM, SIGKILL after 10 s) and exits.
"""
import argparse
import glob
import json
import os
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import time

KIB = 1024


def meminfo():
    out = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) * KIB
    return out


def rollup(pid):
    """Rss and Pss of a process in bytes (smaps_rollup); None if it is gone."""
    try:
        out = {}
        for line in open(f"/proc/{pid}/smaps_rollup"):
            m = re.match(r"^(Rss|Pss|Pss_Anon|Pss_File|Anonymous):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2)) * KIB
        return out
    except OSError:
        return None


def status(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * KIB
    except OSError:
        return None
    return None


def children_map():
    kids = {}
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            s = open(p).read()
        except OSError:
            continue
        pid = int(p.split("/")[2])
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(pid)
    return kids


def tree(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def nfds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def start_time(pid):
    """The process's start time (clock ticks since boot), None if it is gone."""
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2:].split()[19])


def alive(pid, started=None):
    """Running, or stopped: not gone and not a zombie (a watchdog that outlived its
    supervisor by a moment is reparented and reaped by the host's init); with started,
    the same process (not a new one that got its pid)."""
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    f = s[s.rindex(")") + 2:].split()
    return f[0] != "Z" and (started is None or int(f[19]) == started)


class Child:
    """A forked child, as much of subprocess.Popen as Fleet needs."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(st)
        return self.returncode

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)


class Fleet:
    """N jails started at once; readiness through a FIFO."""

    def __init__(self, name, argv_of, n, ws, logdir):
        self.name, self.n = name, n
        self.fifo = os.path.join(ws, f"ready-{name}.fifo")
        if os.path.exists(self.fifo):
            os.unlink(self.fifo)
        os.mkfifo(self.fifo)
        os.chmod(self.fifo, 0o666)
        self.rfd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.procs, self.ready = [], {}
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self.argv_of = argv_of

    def start(self, timeout=120):
        """Forks the N, each held at a gate (a pipe's read end) before its exec; closing
        the gate's write end lets them all go at once."""
        cmd = f'echo "$0" >{shlex.quote(self.fifo)} && exec sleep 3600'
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        for i in range(self.n):
            argv = self.argv_of(i, ["/bin/sh", "-c", cmd, str(i)])
            err = os.open(os.path.join(self.logdir, f"{self.name}-{i}.err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(gate_w)
                    os.read(gate_r, 1)
                    os.chdir(os.path.dirname(self.fifo))
                    os.dup2(null, 0)
                    os.dup2(err, 1)
                    os.dup2(err, 2)
                    os.execvp(argv[0], argv)
                finally:
                    os._exit(127)
            os.close(err)
            self.procs.append(Child(pid))
        os.close(null)
        os.close(gate_r)
        self.t0 = time.monotonic()
        os.close(gate_w)
        buf = b""
        deadline = self.t0 + timeout
        while len(self.ready) < self.n:
            left = deadline - time.monotonic()
            dead = [i for i, p in enumerate(self.procs) if p.poll() is not None and i not in self.ready]
            if left <= 0 or dead:
                what = f"jail {dead[0]} exited {self.procs[dead[0]].returncode}" if dead else "timed out"
                log = open(os.path.join(self.logdir, f"{self.name}-{dead[0] if dead else 0}.err"), "rb").read()[-1500:]
                raise SystemExit(f"scale-bench: {self.name}: {len(self.ready)} of {self.n} jails ready, {what}:\n"
                                 f"{log.decode(errors='replace')}")
            r, _, _ = select.select([self.rfd], [], [], min(left, 0.2))
            if not r:
                continue
            now = time.monotonic()
            try:
                buf += os.read(self.rfd, 65536)
            except BlockingIOError:
                continue
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self.ready.setdefault(int(line), now - self.t0)
        self.all_ready = max(self.ready.values())

    def stop(self, sig=signal.SIGTERM, timeout=60):
        t = time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)
        deadline = t + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        took = time.monotonic() - t
        stuck = [p for p in self.procs if p.poll() is None]
        for p in stuck:
            p.kill()
            p.wait()
        os.close(self.rfd)
        os.unlink(self.fifo)
        return took, len(stuck)


def run_records(state):
    out = {}
    for f in glob.glob(os.path.join(state, "runs", "*", "run.json")):
        try:
            d = json.load(open(f))
        except (OSError, ValueError):
            continue
        out[d.get("supervisor_pid")] = d
    return out


def netns_holders(inodes):
    held = set()
    for p in glob.glob("/proc/[0-9]*/ns/net"):
        try:
            if os.readlink(p) in inodes:
                held.add(p.split("/")[2])
        except OSError:
            pass
    return held


def settle(seconds=1.5):
    time.sleep(seconds)


MEM = ("MemAvailable", "Slab", "Percpu", "KernelStack", "PageTables")


def mem_delta(before, after, n):
    """Per jail: what MemAvailable lost, what the others gained."""
    return {f"per_jail_{k.lower()}": ((before[k] - after[k]) if k == "MemAvailable" else (after[k] - before[k])) / n for k in MEM}


def fleet_round(a, name, argv_of, inspect):
    """One round: N jails at once, idle, inspected (inspect(fleet) -> dict), stopped."""
    settle()
    before = meminfo()
    fleet = Fleet(name, argv_of, a.jails, a.ws, a.logdir)
    try:
        fleet.start()
        settle(2.0)
        after = meminfo()
        rows = inspect(fleet)
        stop_s, stuck = fleet.stop()
    except BaseException:
        # Interrupted or failed: end every jail as Ctrl-C does, SIGKILL what is left after 10 s.
        fleet.stop(signal.SIGTERM, 10)
        raise
    rows.update(mem_delta(before, after, a.jails))
    rows.update({"all_running_s": fleet.all_ready, "ready_p50_s": med(fleet.ready.values()), "stop_all_s": stop_s,
                 "stuck": stuck})
    return rows


def inspect_agentjail(a, fleet):
    recs = run_records(a.state)
    kids = children_map()
    per = []
    for p in fleet.procs:
        rec = recs.get(p.pid)
        if rec is None:
            raise SystemExit(f"scale-bench: no run.json names supervisor {p.pid}")
        wd = rec.get("watchdog_pid")
        sup_r, wd_r = rollup(p.pid), rollup(wd) if wd else None
        jail_pids = [q for q in tree(p.pid, kids) if q not in (p.pid, wd)]
        jail_r = [rollup(q) for q in jail_pids]
        cg = None
        for path in rec["cgroup"]["paths"]:
            for f in ("memory.usage_in_bytes", "memory.current"):
                if cg is None and os.path.exists(os.path.join(path, f)):
                    cg = int(open(os.path.join(path, f)).read())
        kmem = None
        for path in rec["cgroup"]["paths"]:
            if os.path.exists(os.path.join(path, "memory.kmem.usage_in_bytes")):
                kmem = int(open(os.path.join(path, "memory.kmem.usage_in_bytes")).read())
        init = None
        try:
            procs = [int(x) for x in open(os.path.join(rec["cgroup"]["paths"][0], "cgroup.procs")).read().split()]
            init = min(procs) if procs else None
        except OSError:
            pass
        procs = [(q, start_time(q)) for q in [p.pid] + ([wd] if wd else []) + jail_pids]
        per.append({"procs": [(q, t) for q, t in procs if t is not None], "cgroup_paths": rec["cgroup"]["paths"],
                    "supervisor_rss": sup_r and sup_r["Rss"], "supervisor_pss": sup_r and sup_r["Pss"],
                    "supervisor_anon": sup_r and sup_r["Anonymous"],
                    "watchdog_rss": wd_r and wd_r["Rss"], "watchdog_pss": wd_r and wd_r["Pss"],
                    "jail_pss": sum(r["Pss"] for r in jail_r if r), "jail_processes": len(jail_pids),
                    "cgroup": cg, "cgroup_kmem": kmem,
                    "mounts": len(open(f"/proc/{init}/mountinfo").readlines()) if init else None,
                    "netns": os.readlink(f"/proc/{init}/ns/net") if init else None,
                    "supervisor_fds": nfds(p.pid), "watchdog_fds": nfds(wd) if wd else None})
    m = lambda k: med(r[k] for r in per)
    rows = {k: m(k) for k in ("supervisor_rss", "supervisor_pss", "supervisor_anon", "watchdog_rss", "watchdog_pss",
                              "jail_pss", "jail_processes", "cgroup", "cgroup_kmem", "mounts", "supervisor_fds", "watchdog_fds")}
    rows["supervisor_rss_max"] = max(r["supervisor_rss"] or 0 for r in per)
    rows["supervisor_watchdog_rss"] = med((r["supervisor_rss"] or 0) + (r["watchdog_rss"] or 0) for r in per)
    rows["supervisor_watchdog_pss"] = med((r["supervisor_pss"] or 0) + (r["watchdog_pss"] or 0) for r in per)
    rows["attributable"] = med((r["supervisor_pss"] or 0) + (r["watchdog_pss"] or 0) + (r["cgroup"] or 0) for r in per)
    rows["_per"] = per
    return rows


def leftovers(a, per, runtime_before):
    """What a run may not leave: its cgroups, its processes, holders of its network
    namespace, mounts or entries in the runtime dir."""
    left = []
    for r in per:
        left += [c for c in r["cgroup_paths"] if os.path.isdir(c)]
        left += [f"process {q}" for q, t in r["procs"] if alive(q, t)]
    held = netns_holders({r["netns"] for r in per if r["netns"]})
    left += [f"pid {q} holds a jail's network namespace" for q in held]
    left += [l.split()[4] for l in open("/proc/self/mountinfo") if a.runtime in l.split()[4]]
    left += [f"{a.runtime}/{e}" for e in set(os.listdir(a.runtime)) - runtime_before
             if e not in ("seccomp-cache.key", ".root")]
    if os.path.isdir(os.path.join(a.runtime, ".root")):
        left += [f"{a.runtime}/.root/{e}" for e in os.listdir(os.path.join(a.runtime, ".root"))]
    return left


def measure_fleets(a, figs, report):
    aj_argv = lambda i, cmd: [a.aj, "run", "-p", "default", "--name", f"scale-{i}", "--"] + cmd
    bw = shlex.split(a.bwrap) if a.bwrap else None
    envs = [("agentjail", aj_argv)] + ([("bwrap", lambda i, cmd: bw + cmd)] if bw else []) + [("bare", lambda i, cmd: cmd)]
    rounds = {e: [] for e, _ in envs}
    left = []
    for r in range(a.rounds):
        # The environments take turns, each round starting with the next one.
        for k in range(len(envs)):
            name, argv_of = envs[(r + k) % len(envs)]
            if name == "agentjail":
                runtime_before = set(os.listdir(a.runtime))
                rows = fleet_round(a, name, argv_of, lambda f: inspect_agentjail(a, f))
                settle()
                # After Ctrl-C (SIGTERM) to every supervisor, nothing may be left.
                left += leftovers(a, rows.pop("_per"), runtime_before)
            else:
                rows = fleet_round(a, name, argv_of, lambda f: {})
            if rows["stuck"]:
                left.append(f"{rows['stuck']} {name} jails needed SIGKILL")
            rounds[name].append(rows)
    for e, rs in rounds.items():
        figs[e] = {k: med(r[k] for r in rs) for k in rs[0]}
        figs[e]["rounds"] = rs
        figs[e]["jails"] = a.jails
    figs["agentjail"]["leftovers"] = left
    aj = figs["agentjail"]
    mib = lambda b: f"{b / 2**20:.2f} MiB" if b is not None else "-"
    kib = lambda b: f"{b / 1024:.0f} KiB" if b is not None else "-"
    memline = lambda f: (f"MemAvailable {f['per_jail_memavailable'] / 2**20:+.2f} MiB used"
                         f" (Slab {f['per_jail_slab'] / 1024:+.0f} KiB, Percpu {f['per_jail_percpu'] / 1024:+.0f} KiB,"
                         f" KernelStack {f['per_jail_kernelstack'] / 1024:+.0f} KiB, PageTables {f['per_jail_pagetables'] / 1024:+.0f} KiB)")
    report.append(f"scale: {a.jails} jails started at once (forked, held at a gate, let go together), each running"
                  f" sh that says it runs, then sleep; median of {a.rounds} rounds, the environments taking turns:")
    for e in rounds:
        f = figs[e]
        report.append(f"  {e:10s} all {a.jails} running after {f['all_running_s'] * 1e3:6.0f} ms (each p50 {f['ready_p50_s'] * 1e3:4.0f} ms);"
                      f" all stopped (SIGTERM) in {f['stop_all_s'] * 1e3:4.0f} ms")
    report.append("  host memory per idle jail (/proc/meminfo before and after, / N; other users of the machine add noise):")
    for e in rounds:
        report.append(f"    {e:10s} {memline(figs[e])}")
    report.append(f"  agentjail per run (median): supervisor RSS {mib(aj['supervisor_rss'])} (PSS {mib(aj['supervisor_pss'])},"
                  f" anonymous {mib(aj['supervisor_anon'])}; max RSS {mib(aj['supervisor_rss_max'])}),"
                  f" watchdog RSS {mib(aj['watchdog_rss'])} (PSS {mib(aj['watchdog_pss'])});"
                  f" both: RSS {mib(aj['supervisor_watchdog_rss'])}, PSS {mib(aj['supervisor_watchdog_pss'])}")
    report.append(f"  the jail's own processes ({aj['jail_processes']:.0f}: init, the command): PSS {mib(aj['jail_pss'])};"
                  f" its memory cgroup: {mib(aj['cgroup'])} (kernel {mib(aj['cgroup_kmem'])});"
                  f" {aj['mounts']:.0f} mounts; open files: supervisor {aj['supervisor_fds']:.0f}, watchdog {aj['watchdog_fds']:.0f}")
    report.append(f"  attributable to a run: {mib(aj['attributable'])} (supervisor and watchdog PSS, and what the"
                  f" jail's memory cgroup holds: its processes' pages and the kernel objects charged to it)")
    report.append(f"  left behind after the {a.rounds} rounds: {', '.join(left) if left else 'nothing'}")


def mappings(pid):
    """RSS by mapping name (file, [heap], [stack], [anon] for the nameless ones)."""
    out, cur = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            f = line.split()
            cur = f[5] if len(f) > 5 else "[anon]"
            out.setdefault(cur, 0)
        elif line.startswith("Rss:"):
            out[cur] += int(line.split()[1]) * KIB
    return out


def measure_broker(a, figs, report):
    """One jail: idle RSS, then broker load, then RSS and peak after."""
    flag = os.path.join(a.ws, "broker-done")
    fifo = os.path.join(a.ws, "broker-go.fifo")
    for f in (flag, fifo):
        if os.path.exists(f):
            os.unlink(f)
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    # The jail waits on the FIFO (opened for reading blocks until this side writes), then
    # loads its broker, then says it is done and sleeps.
    cmd = (f"read go <{shlex.quote(fifo)} && ./broker-bench --client -n {a.broker_n} >broker-scale.json"
           f" && touch {shlex.quote(flag)} && exec sleep 3600")
    err = open(os.path.join(a.logdir, "broker.err"), "wb")
    p = subprocess.Popen([a.aj, "run", "-p", a.broker_profile, "--name", "scale-broker", "--", "/bin/sh", "-c", cmd],
                         stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=a.ws)
    err.close()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            # Idle: the jail's command is blocked reading the FIFO.
            rec = run_records(a.state).get(p.pid)
            if rec and rec.get("watchdog_pid"):
                break
            time.sleep(0.05)
        settle(1.0)
        idle = rollup(p.pid)
        idle_hwm = status(p.pid, "VmHWM")
        idle_maps = mappings(p.pid)
        with open(fifo, "w") as f:
            f.write("go\n")
        deadline = time.monotonic() + 300
        while not os.path.exists(flag):
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("scale-bench: the broker load did not finish:\n" +
                                 open(os.path.join(a.logdir, "broker.err"), "rb").read()[-1500:].decode(errors="replace"))
            time.sleep(0.05)
        loaded = rollup(p.pid)
        hwm = status(p.pid, "VmHWM")
        loaded_maps = mappings(p.pid)
        top = sorted(loaded_maps.items(), key=lambda kv: -kv[1])[:8]
        grew = {k: v - idle_maps.get(k, 0) for k, v in loaded_maps.items() if v != idle_maps.get(k, 0)}
        load = json.load(open(os.path.join(a.ws, "broker-scale.json")))
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        os.unlink(fifo)
    rows = {"idle_rss": idle["Rss"], "idle_pss": idle["Pss"], "idle_anon": idle["Anonymous"], "idle_hwm": idle_hwm,
            "loaded_rss": loaded["Rss"], "loaded_pss": loaded["Pss"], "loaded_anon": loaded["Anonymous"], "peak_rss": hwm,
            "tokens_msgs_per_s_1conn": load["tokens_msgs_per_s_1conn"], "tokens_msgs_per_s_8conn": load["tokens_msgs_per_s_8conn"],
            "messages": a.broker_n, "top_mappings_rss": dict(top), "mappings_grown_rss": grew}
    figs["broker_load"] = rows
    mib = lambda b: f"{b / 2**20:.2f} MiB"
    report.append(f"  supervisor under broker load ({a.broker_n} tokens messages on 1 and on 8 connections,"
                  f" {load['tokens_msgs_per_s_1conn']:.0f} / {load['tokens_msgs_per_s_8conn']:.0f} msgs/s, then tool calls):")
    report.append(f"    idle RSS {mib(idle['Rss'])} (anonymous {mib(idle['Anonymous'])}); after the load RSS {mib(loaded['Rss'])}"
                  f" (anonymous {mib(loaded['Anonymous'])}), peak (VmHWM) {mib(hwm)}")
    report.append("    biggest mappings after: " + ", ".join(f"{os.path.basename(k)} {v / 1024:.0f} KiB" for k, v in top))
    report.append("    grown during the load: " + ", ".join(f"{os.path.basename(k)} {v / 1024:+.0f} KiB" for k, v in
                                                       sorted(grew.items(), key=lambda kv: -abs(kv[1]))))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aj", required=True)
    ap.add_argument("--ws", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--jails", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bwrap")
    ap.add_argument("--broker-profile")
    ap.add_argument("--broker-n", type=int, default=100000)
    a = ap.parse_args()
    # scripts/bench's cleanup sends SIGTERM: unwind, ending every jail on the way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(a.logdir, exist_ok=True)
    figs, report = {}, []
    try:
        measure_fleets(a, figs, report)
        if a.broker_profile:
            measure_broker(a, figs, report)
    finally:
        print("\n".join(report))
        json.dump(figs, open(a.out, "w"))
    if figs["agentjail"]["leftovers"]:
        sys.exit("scale-bench: left behind: " + ", ".join(figs["agentjail"]["leftovers"]))


if __name__ == "__main__":
    main()
