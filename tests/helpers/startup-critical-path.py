#!/usr/bin/env python3
"""Which process a start's wall time waits on, moment by moment, from scheduler events.

  tests/helpers/startup-critical-path.py [--runs N] [--gap MS] [--keep DIR] -- COMMAND...
  tests/helpers/startup-critical-path.py --analyze TRACE.txt PIDS.txt

Runs COMMAND N times (default 100, after 5 untimed), GAP ms apart (default 5), under
`perf record -a -g` of sched_switch, sched_waking, sched_wakeup_new and the fork, exec and
exit events (root), then reads `perf script`. For each start it walks back from the moment
the driver's wait4 is woken: the task it is at was woken by someone (sched_waking fires in
the waker's context); a waker that is one of the start's processes or a kernel thread is
followed, else (an interrupt, another program) the sleep itself is the path. Each piece of
the path is a task running, runnable but queued (behind whom, on that CPU), or asleep.
The start's processes are named by role: "supervisor" (the spawned process), "init" (the
parent of the process that execs the command's basename, --exec, default "true"),
"command", "watchdog" (comm aj-watchdog), "helper:COMM" for the rest.

Prints, per phase (spawn -> the first clone of the init, -> the command's exec, -> its exit,
-> the driver woken), the median wall time, the idle CPUs' time, the mean path by task
and state, and the start's processes' CPU; then the path's parts over the whole start, the
largest first; and how long the watchdog and the init waited for a CPU after their fork.
docs/performance.md, "Session 24", has what it showed.
"""
import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HDR = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
KTHREAD = re.compile(r"^(kworker|rcu|ksoftirqd|migration|kthreadd)")
# Frames that say nothing of why a task slept.
PLUMBING = re.compile(r"^(__schedule|schedule.*|io_schedule|do_syscall_64|entry_SYSCALL.*|.*_cond_resched|"
                      r"preempt_schedule.*|__wait_for_common|wait_for_completion.*|wait_for_common|"
                      r"do_nanosleep|hrtimer_nanosleep|.*mutex_lock.*|.*rwsem.*|down_(read|write)|"
                      r"__percpu_down_read|percpu_down_write|.*exit_to_user_mode.*|asm_sysvec.*|ret_from_fork.*|"
                      r"do_epoll_wait|ep_poll|__x64_sys_.*|__do_sys_.*)$")
EVENTS = ["sched:sched_switch", "sched:sched_waking", "sched:sched_wakeup_new", "sched:sched_process_fork",
          "sched:sched_process_exec", "sched:sched_process_exit"]
PHASES = ["spawn -> the init's clone", "clone -> the command's exec", "exec -> the command's exit",
          "exit -> the driver woken"]


class Trace:
    """The events of `perf script -F comm,tid,cpu,time,event,trace,ip,sym`, in ms."""

    def __init__(self, lines):
        self.on = collections.defaultdict(list)  # tid -> [t_in, t_out, cpu, prev_state, stack]
        self.oncpu = collections.defaultdict(list)  # cpu -> [t_in, t_out, tid]
        self.wakes = collections.defaultdict(list)  # tid -> (t, waker tid, waker comm, stack, event)
        self.parent, self.comm, self.execd, self.exit_t, self.fork_t = {}, {}, {}, {}, {}
        running = {}
        for t, cpu, c, tid, ev, rest, st in self.parse(lines):
            if ev == "sched_switch":
                m = re.search(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)",
                              rest)
                if not m:
                    continue
                pp, ps, nc, np_ = int(m.group(2)), m.group(3), m.group(4), int(m.group(5))
                if cpu in running:
                    ptid, tin = running[cpu]
                    self.oncpu[cpu].append((tin, t, ptid))
                    if ptid:
                        self.on[ptid].append((tin, t, cpu, ps, st))
                self.comm.setdefault(pp, m.group(1))
                self.comm[np_] = nc
                running[cpu] = (np_, t)
            elif ev in ("sched_waking", "sched_wakeup_new"):
                m = re.search(r" pid=(\d+)", rest)
                if m:
                    self.wakes[int(m.group(1))].append((t, tid, c, st, ev))
            elif ev == "sched_process_fork":
                m = re.search(r" pid=(\d+) child_comm=(.*?) child_pid=(\d+)", rest)
                if m:
                    self.parent[int(m.group(3))] = int(m.group(1))
                    self.fork_t[int(m.group(3))] = t
            elif ev == "sched_process_exec":
                m = re.search(r"filename=(\S+)", rest)
                if m:
                    self.execd[tid] = (t, m.group(1))
            elif ev == "sched_process_exit":
                self.exit_t[tid] = t

    @staticmethod
    def parse(lines):
        cur = None
        for line in lines:
            m = HDR.match(line)
            if m:
                if cur:
                    yield cur
                comm, tid, cpu, t, ev, rest = m.groups()
                cur = [float(t) * 1e3, int(cpu), comm, int(tid), ev.split(":")[-1], rest, []]
            elif cur is not None and line.strip():
                p = line.split()
                if len(p) >= 2 and p[1] != "[unknown]":
                    cur[6].append(p[1])
        if cur:
            yield cur

    def descendants(self, root):
        kids = collections.defaultdict(list)
        for k, v in self.parent.items():
            kids[v].append(k)
        out, todo = {root}, [root]
        while todo:
            for k in kids[todo.pop()]:
                if k not in out:
                    out.add(k)
                    todo.append(k)
        return out

    def idle(self, a, z):
        return sum(max(0.0, min(q, z) - max(p, a)) for ivs in self.oncpu.values() for p, q, tid in ivs if tid == 0)


def why(stack):
    """The first frame of a sleeping task's kernel stack that says why, with its system call."""
    names = [s for s in stack[:16] if not s.startswith("0x")]
    sysc = [s for s in names if s.startswith(("__x64_sys_", "__do_sys_"))]
    keep = [s for s in names if not PLUMBING.match(s)]
    where = keep[0] if keep else (names[0] if names else "?")
    return (re.sub(r"^__(x64|do)_sys_", "", sysc[0]) + ":" if sysc else "") + where


class Start:
    def __init__(self, tr, sup, exec_name):
        self.tr, self.sup = tr, sup
        self.tasks = tr.descendants(sup)
        self.driver = tr.parent.get(sup)
        self.start = tr.fork_t[sup]
        ex = tr.exit_t[sup]
        self.end = min(iv[0] for iv in tr.on[self.driver] if iv[0] >= ex)
        self.role = {sup: "supervisor", self.driver: "driver"}
        for x in self.tasks:
            if x != sup and tr.comm.get(x, "").startswith("aj-watchdog"):
                self.role[x] = "watchdog"
            elif x in tr.execd and os.path.basename(tr.execd[x][1]) == exec_name:
                self.role[x] = "command"
        cmd = [x for x, r in self.role.items() if r == "command"]
        if cmd and tr.parent.get(cmd[0]) in self.tasks and tr.parent[cmd[0]] != sup:
            self.role.setdefault(tr.parent[cmd[0]], "init")
        for x in self.tasks:
            self.role.setdefault(x, "helper:" + tr.comm.get(x, "?"))
        self.path = self.walk()

    def name(self, tid):
        if tid in self.role:
            return self.role[tid]
        c = self.tr.comm.get(tid, "?")
        if tid == 0:
            return "idle/irq"
        return re.sub(r"[/:]\d.*", "", c) if KTHREAD.match(c) else "other:" + c

    def behind(self, cpu, a, z):
        c = collections.Counter()
        for p, q, tid in self.tr.oncpu[cpu]:
            if q > a and p < z:
                c[self.name(tid)] += min(q, z) - max(p, a)
        return ",".join(k for k, _ in c.most_common(2)) or "?"

    def pieces(self, tid, a, z):
        """tid's time in [a, z], when it was awake: running, or queued behind whom."""
        out, p = [], a
        for iv in self.tr.on[tid]:
            if iv[1] <= a or iv[0] >= z:
                continue
            if iv[0] > p:
                out.append((p, iv[0], self.name(tid), "queued behind " + self.behind(iv[2], p, iv[0])))
            out.append((max(iv[0], a), min(iv[1], z), self.name(tid), "runs"))
            p = iv[1]
        if p < z:
            # Woken, not on a CPU yet: behind whoever held the CPU it then ran on.
            nxt = [iv for iv in self.tr.on[tid] if iv[0] >= z - 1e-9]
            out.append((p, z, self.name(tid), "queued behind " + self.behind(nxt[0][2], p, z) if nxt else "queued"))
        return out

    def walk(self):
        tr, path, x, t = self.tr, [], self.driver, self.end
        for _ in range(1000):
            if t <= self.start:
                break
            w = [wk for wk in tr.wakes[x] if wk[0] <= t + 1e-6]
            if not w:
                path += self.pieces(x, max(self.start, tr.fork_t.get(x, self.start)), t)
                break
            tw, wtid, wcomm, _, wev = w[-1]
            slept = [iv for iv in tr.on[x] if iv[1] <= tw + 1e-6 and iv[3] not in ("R", "R+")]
            ts = slept[-1][1] if slept else tw
            path += self.pieces(x, tw, t)
            follow = wtid in self.tasks or wtid == self.driver or KTHREAD.match(wcomm)
            if wev == "sched_wakeup_new" or (follow and wtid != x):
                # The waker's own way to tw is the path; x's sleep only ran beside it.
                path.append((ts, tw, self.name(x), f"~ sleeps [{why(slept[-1][4]) if slept else '?'}] "
                             f"until {self.name(wtid)}"))
                x, t = wtid, tw
            else:
                path.append((ts, tw, self.name(x), f"sleeps [{why(slept[-1][4]) if slept else '?'}], woken by "
                             f"{self.name(wtid)}"))
                t = ts
        return sorted((max(a, self.start), z, r, w) for a, z, r, w in path if z > self.start)

    def bounds(self):
        inv = {v: k for k, v in self.role.items()}
        init, cmd, tr = inv.get("init"), inv.get("command"), self.tr
        b = [self.start, tr.fork_t.get(init, self.start)]
        b.append(tr.execd[cmd][0] if cmd in tr.execd else b[-1])
        b.append(tr.exit_t.get(cmd, b[-1]))
        return b + [self.end]


def kind(role, what):
    return role + (" runs" if what == "runs" else " queued" if what.startswith("queued") else " sleeps")


def report(tr, pids, exec_name, out=sys.stdout):
    starts = []
    for pid in pids:
        try:
            starts.append(Start(tr, pid, exec_name))
        except (KeyError, ValueError):
            continue
    if not starts:
        print("no start found in the trace", file=out)
        return []
    n = len(starts)
    walls = [s.end - s.start for s in starts]
    print(f"{n} starts; spawn to the driver woken, median {statistics.median(walls):.3f} ms; one CPU idle "
          f"{statistics.median(tr.idle(s.start, s.end) for s in starts):.3f} CPU-ms of it", file=out)
    for i, title in enumerate(PHASES):
        wall, idle, path, cpu = [], [], collections.Counter(), collections.Counter()
        for s in starts:
            b = s.bounds()
            a, z = b[i], b[i + 1]
            wall.append(z - a)
            idle.append(tr.idle(a, z))
            for p, q, r, w in s.path:
                if not w.startswith("~") and min(q, z) > max(p, a):
                    path[kind(r, w)] += min(q, z) - max(p, a)
            for tid, r in s.role.items():
                if r != "driver":
                    cpu[r] += sum(max(0.0, min(iv[1], z) - max(iv[0], a)) for iv in tr.on[tid])
        print(f"{title}: wall {statistics.median(wall):.3f} ms, idle CPU {statistics.median(idle):.3f} CPU-ms", file=out)
        print("   path: " + ", ".join(f"{k} {v / n:.3f}" for k, v in path.most_common(8)), file=out)
        print("   processes' CPU: " + ", ".join(f"{k} {v / n:.3f}" for k, v in cpu.most_common(6)), file=out)
    parts = collections.Counter()
    seen = collections.Counter()
    for s in starts:
        mine = collections.Counter()
        for p, q, r, w in s.path:
            mine[(r, w)] += q - p
        parts.update(mine)
        seen.update(mine.keys())
    print("the path's parts over the start (mean ms a start; in how many starts):", file=out)
    for (r, w), v in [kv for kv in parts.most_common() if not kv[0][1].startswith("~")][:20]:
        print(f"  {v / n:7.3f}  {seen[(r, w)]:4d}  {r:12s} {w}", file=out)
    print("the hand-offs: who slept until whom, beside the path (mean ms a start; in how many starts):", file=out)
    for (r, w), v in [kv for kv in parts.most_common() if kv[0][1].startswith("~")][:12]:
        print(f"  {v / n:7.3f}  {seen[(r, w)]:4d}  {r:12s} {w[2:]}", file=out)
    for want in ("watchdog", "init"):
        lags = sorted(min(iv[0] for iv in tr.on[t]) - tr.fork_t[t] for s in starts for t, r in s.role.items()
                      if r == want and t in tr.fork_t and tr.on[t])
        if lags:
            print(f"{want}: its fork to its first run, median {statistics.median(lags):.3f} ms "
                  f"(p90 {lags[9 * len(lags) // 10]:.3f})", file=out)
    return starts


def drive(cmd, runs, gap, pids_file):
    null = os.open("/dev/null", os.O_RDWR)
    pids = []
    for i in range(runs + 5):
        pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                                                      (os.POSIX_SPAWN_DUP2, null, 1)])
        _, st = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(st) != 0:
            sys.exit(f"startup-critical-path: {cmd[0]} exited {os.waitstatus_to_exitcode(st)}")
        if i >= 5:
            pids.append(pid)
        time.sleep(gap / 1000)
    with open(pids_file, "w") as f:
        f.write("".join(f"{p}\n" for p in pids))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--gap", type=float, default=5.0)
    ap.add_argument("--exec", dest="exec_name", default="true")
    ap.add_argument("--keep")
    ap.add_argument("--analyze", nargs=2, metavar=("TRACE", "PIDS"))
    ap.add_argument("--driver", nargs=3, metavar=("RUNS", "GAP", "PIDS"), help=argparse.SUPPRESS)
    ap.add_argument("cmd", nargs="*")
    a = ap.parse_args()
    if a.driver:
        return drive(a.cmd, int(a.driver[0]), float(a.driver[1]), a.driver[2])
    if a.analyze:
        with open(a.analyze[0], errors="replace") as f:
            tr = Trace(f)
        report(tr, [int(x) for x in open(a.analyze[1]).read().split()], a.exec_name)
        return
    if not a.cmd:
        ap.error("a command to start")
    d = a.keep or tempfile.mkdtemp(prefix="startup-critical-path.")
    os.makedirs(d, exist_ok=True)
    data, pids, txt = (os.path.join(d, x) for x in ("perf.data", "pids.txt", "trace.txt"))
    rec = ["perf", "record", "-q", "-a", "-g", "-m", "8M", "-o", data]
    for e in EVENTS:
        rec += ["-e", e]
    subprocess.run(rec + ["--", sys.executable, os.path.abspath(__file__), "--driver", str(a.runs), str(a.gap),
                          pids, "--"] + a.cmd, check=True)
    with open(txt, "w") as f:
        subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,cpu,time,event,trace,ip,sym"], stdout=f,
                       stderr=subprocess.DEVNULL, check=True)
    with open(txt, errors="replace") as f:
        tr = Trace(f)
    report(tr, [int(x) for x in open(pids).read().split()], a.exec_name)
    if not a.keep:
        for x in (data, pids, txt):
            os.unlink(x)
        os.rmdir(d)


if __name__ == "__main__":
    main()
