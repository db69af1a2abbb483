#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The proxy group of scripts/bench: the jail's egress proxy against its peers, same run.

scripts/bench starts the peers (a zero-serving HTTP server, the bare splice relay,
tinyproxy, squid, a server behind a shaped veth) and passes their pids and ports; this
starts one jail whose shell runs the commands it is given through files in the
workspace (cmd.N -> out.N, rc.N), so that every path is measured in turns, round by
round, and the CPU time of each relaying process is read right before and after each
measurement:
  the jail's proxy  the supervisor (the `agentjail run` process): its threads' run time in ns
                    (its process CPU clock)
  tinyproxy, squid  the process, its threads, its children (live or reaped), in ticks
                    (/proc/PID/stat: utime, stime, cutime, cstime)
  bare relay        its forked relays' CPU in ns, each added to a counter (--relay-cpu) as it ends
A transfer's whole path is also counted: curl (`http-bench cpu`, from wait4) and the
server's sender (--serve-cpu) with the relaying process. On loopback a segment's transmit
and receive run in whichever process's system call or softirq meets them (the receiver's
window update sends what waited in the sender's socket), so a relay with larger socket
buffers is charged less and its client more (docs/performance.md, session 24): the path's
CPU above direct's is what a relay costs the machine.
"""
import argparse
import errno
import json
import os
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30
CURL = "curl -s -m 120 -o /dev/null -w '%{speed_download} %{size_download}\\n'"
# The transfers' client: curl under `http-bench cpu` (its CPU in ns after its output).
TIMED_CURL = "http-bench cpu " + CURL


def ticks(pid, children):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t


def process_cpu_s(pid):
    """The run time of pid's threads, those that ended included, in seconds: its process CPU
    clock (ns; clock_getcpuclockid's clock id, which Python's time module does not offer).
    The supervisor's 10 ms ticks in /proc/PID/stat were 5 % of a GiB's figure per reading."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9  # CPUCLOCK_SCHED of a process


def counter_s(path):
    """An http-bench --cpu-file counter (ns, native 8 bytes) in seconds."""
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8), sys.byteorder) / 1e9


def descendants(pid):
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out.append(k)
            out += descendants(k)
    return out


def cpu_s(pid, children=True):
    """CPU seconds of pid (all its threads); with children, also of its descendants, those
    alive now and those it has reaped."""
    t = ticks(pid, children)
    if children:
        for d in descendants(pid):
            try:
                t += ticks(d, False)
            except (OSError, IndexError):
                pass
    return t / TICK


class Jail:
    """One run whose shell runs, one after the other, the commands written to cmd.N, told of
    each by a line on a FIFO in the workspace. It waits in read(2): a shell polling for the
    next command (`sleep 0.005` in a loop) cost 13 % of a CPU per idle jail, load the other
    paths' measurements carried and the jail's own did not."""

    DRIVER = """exec 3<>cmd.fifo
while read -r n <&3; do
  [ "$n" = quit ] && exit 0
  sh cmd.$n >out.$n 2>&1; echo $? >rc.tmp; mv rc.tmp rc.$n
done
"""

    def __init__(self, aj, work, args, tag="", state=None):
        self.ws = os.path.join(work, "ws")
        self.tag = tag
        self.err = os.path.join(work, f"jail{tag}.err")
        self.fifo = os.path.join(self.ws, f"cmd{tag}.fifo")
        os.mkfifo(self.fifo)
        os.chmod(self.fifo, 0o666)  # the jail's user opens it for reading and writing
        with open(os.path.join(self.ws, f"jail-driver{tag}.sh"), "w") as f:
            f.write(self.DRIVER.replace("cmd.", f"cmd{tag}.").replace("out.", f"out{tag}.")
                    .replace("rc.", f"rc{tag}."))
        self.n = 0
        env = dict(os.environ, AGENTJAIL_STATE_DIR=state) if state else None
        self.proc = subprocess.Popen([aj, "run", "--name", f"proxy-bench{tag}", *args, "--", "/bin/sh",
                                      f"./jail-driver{tag}.sh"],
                                     cwd=self.ws, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.err, "w"), env=env)
        self.pid = self.proc.pid
        self.run("true")

    def tell(self, line, timeout=60):
        """Writes a line to the driver's FIFO, once the driver has it open."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
            if self.proc.poll() is not None:
                sys.exit(f"bench: the jail exited ({self.proc.returncode}):\n" + open(self.err).read()[-2000:])
            if time.monotonic() > deadline:
                sys.exit(f"bench: the jail's driver did not open {self.fifo} in {timeout} s")
            time.sleep(0.01)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def run(self, cmd, timeout=180):
        n, self.n = self.n, self.n + 1
        t = self.tag
        with open(os.path.join(self.ws, f"cmd{t}.{n}"), "w") as f:
            f.write(cmd + "\n")
        self.tell(str(n))
        rc_path = os.path.join(self.ws, f"rc{t}.{n}")
        deadline = time.monotonic() + timeout
        while not os.path.exists(rc_path):
            if self.proc.poll() is not None:
                sys.exit(f"bench: the jail exited ({self.proc.returncode}):\n" + open(self.err).read()[-2000:])
            if time.monotonic() > deadline:
                sys.exit(f"bench: '{cmd}' in the jail took more than {timeout} s")
            time.sleep(0.002)
        out = open(os.path.join(self.ws, f"out{t}.{n}")).read()
        if open(rc_path).read().strip() != "0":
            sys.exit(f"bench: '{cmd}' in the jail failed:\n{out[-2000:]}")
        return out

    def close(self):
        if self.proc.poll() is None:
            self.tell("quit")
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def host(cmd, timeout=180):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"bench: '{cmd}' failed ({r.returncode}):\n{r.stdout[-1000:]}{r.stderr[-1000:]}")
    return r.stdout


def transfer_mib_s(out, size):
    speed, got = out.split()
    if int(got) != size:
        sys.exit(f"bench: a transfer moved {got} bytes, not {size}")
    return float(speed) / 2**20


def timed_transfer(out):
    """`http-bench cpu curl ...`'s output: curl's line, and curl's CPU seconds."""
    lines = out.split("\n")
    cpu = [l for l in lines if l.startswith("cpu_ns=")]
    if len(cpu) != 1:
        sys.exit(f"bench: no CPU time of the client in {out[-500:]!r}")
    return " ".join(l for l in lines if l and not l.startswith("cpu_ns=")), int(cpu[0][7:]) / 1e9


def kv(out):
    f = dict(p.split("=") for p in out.split())
    if f.get("errors") != "0":
        sys.exit(f"bench: failed connections: {out.strip()}")
    return {k: float(v) for k, v in f.items()}


def med(v):
    return statistics.median(v) if v else float("nan")


def spread(v):
    return f"{min(v):.0f}–{max(v):.0f}" if v else "–"


def main():
    ap = argparse.ArgumentParser()
    for a in ("aj", "work", "port", "relay", "relay_cpu", "serve_cpu", "tinyproxy", "squid", "link", "summary", "figures"):
        ap.add_argument("--" + a.replace("_", "-"), required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--link-shape", default="")
    ap.add_argument("--baseline", action="append", default=[],
                    help="LABEL=PATH: another agentjail build, measured in the same rounds (CONNECT, conn/s)")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--link-bytes", type=int, default=256 << 20)
    a = ap.parse_args()
    port = int(a.port)
    _, relay_port = map(int, a.relay.split(":"))
    tp_pid, tp_port = map(int, a.tinyproxy.split(":"))
    sq_pid, sq_port = map(int, a.squid.split(":"))
    link_ip, link_port = a.link.split(":")
    hb = os.path.join(a.work, "ws", "http-bench")
    url = f"http://127.0.0.1:{port}/{GIB}"

    allow = ["--allow-net", "web.test", "--allow-net", "127.0.0.1", "--allow-net", link_ip]
    jail = Jail(a.aj, a.work, allow)
    others = []
    try:
        for i, b in enumerate(a.baseline):
            label, path = b.split("=", 1)
            state = os.path.join(a.work, f"state-baseline{i}")
            os.makedirs(state, exist_ok=True)
            others.append((label, Jail(path, a.work, allow, tag=f"-b{i}", state=state)))
        # name: (where it runs, its relaying process's CPU seconds or None, curl's options)
        sup = lambda j: (lambda: process_cpu_s(j.pid))
        relay_cpu = lambda: counter_s(a.relay_cpu)
        transfers = {
            "direct": (host, None, f"--noproxy '*' {url}"),
            "agentjail CONNECT": (jail.run, sup(jail), f"--noproxy '' -p -x http://127.0.0.1:3128 {url}"),
            "agentjail forward": (jail.run, sup(jail), f"--noproxy '' -x http://127.0.0.1:3128 {url}"),
            "tinyproxy CONNECT": (host, lambda: cpu_s(tp_pid), f"--noproxy '' -p -x http://127.0.0.1:{tp_port} {url}"),
            "tinyproxy forward": (host, lambda: cpu_s(tp_pid), f"--noproxy '' -x http://127.0.0.1:{tp_port} {url}"),
            "squid CONNECT": (host, lambda: cpu_s(sq_pid), f"--noproxy '' -p -x http://127.0.0.1:{sq_port} {url}"),
            "squid forward": (host, lambda: cpu_s(sq_pid), f"--noproxy '' -x http://127.0.0.1:{sq_port} {url}"),
            "bare relay": (host, relay_cpu, f"--noproxy '*' http://127.0.0.1:{relay_port}/{GIB}"),
        }
        for label, j in others:
            transfers[f"{label} CONNECT"] = (j.run, sup(j), f"--noproxy '' -p -x http://127.0.0.1:3128 {url}")
        n, n16 = a.conns, 2 * a.conns
        rates = {}
        for c, k in ((1, n), (16, n16)):
            rates[f"direct, {c}"] = (host, None, f"{hb} conns {k} 127.0.0.1 {port} -c {c}")
            rates[f"agentjail, {c}"] = (jail.run, sup(jail),
                                        f"./http-bench conns {k} 127.0.0.1 {port} --proxy 127.0.0.1:3128 -c {c}")
            rates[f"agentjail by name, {c}"] = (jail.run, sup(jail),
                                                f"./http-bench conns {k} web.test {port} --proxy 127.0.0.1:3128 -c {c}")
            rates[f"tinyproxy, {c}"] = (host, lambda: cpu_s(tp_pid),
                                        f"{hb} conns {k} 127.0.0.1 {port} --proxy 127.0.0.1:{tp_port} -c {c}")
            rates[f"squid, {c}"] = (host, lambda: cpu_s(sq_pid),
                                    f"{hb} conns {k} 127.0.0.1 {port} --proxy 127.0.0.1:{sq_port} -c {c}")
            for label, j in others:
                rates[f"{label}, {c}"] = (j.run, sup(j),
                                          f"./http-bench conns {k} 127.0.0.1 {port} --proxy 127.0.0.1:3128 -c {c}")
        link_url = f"http://{link_ip}:{link_port}/{a.link_bytes}"
        links = {
            "direct": (host, None, f"{CURL} --noproxy '*' {link_url}", f"{hb} connect 300 {link_ip} {link_port}"),
            "agentjail": (jail.run, sup(jail), f"{CURL} --noproxy '' -p -x http://127.0.0.1:3128 {link_url}",
                          f"./http-bench connect 300 {link_ip} {link_port} --proxy 127.0.0.1:3128"),
        }

        def measured(where, proc, cmd):
            before = proc() if proc else 0.0
            out = where(cmd)
            after = proc() if proc else 0.0
            return out, after - before

        speed = {k: [] for k in transfers}
        cpu_gib = {k: [] for k in transfers}
        path_gib = {k: [] for k in transfers}
        cps = {k: [] for k in rates}
        cpu_conn = {k: [] for k in rates}
        lat = {k: [] for k in rates}
        link_speed = {k: [] for k in links}
        link_connect = {k: [] for k in links}
        link_cpu = {k: [] for k in links}
        for r in range(a.rounds):
            names = list(transfers)
            names = names[r % len(names):] + names[:r % len(names)]
            for k in names:
                where, proc, opts = transfers[k]
                timed = TIMED_CURL.replace("http-bench", hb if where is host else "./http-bench")
                served = counter_s(a.serve_cpu)
                out, cpu = measured(where, proc, f"{timed} {opts}")
                served = counter_s(a.serve_cpu) - served
                got, client = timed_transfer(out)
                speed[k].append(transfer_mib_s(got, GIB))
                cpu_gib[k].append(cpu)
                path_gib[k].append(client + served + cpu)
            names = list(rates)
            names = names[r % len(names):] + names[:r % len(names)]
            for k in names:
                where, proc, cmd = rates[k]
                out, cpu = measured(where, proc, cmd)
                f = kv(out)
                cps[k].append(f["connections_per_s"])
                lat[k].append(f["p50_us"])
                cpu_conn[k].append(cpu * 1e6 / (n if k.endswith(", 1") else n16))
            for k in (["direct", "agentjail"] if r % 2 == 0 else ["agentjail", "direct"]):
                where, proc, get, conn = links[k]
                out, cpu = measured(where, proc, get)
                link_speed[k].append(transfer_mib_s(out, a.link_bytes))
                link_cpu[k].append(cpu * GIB / a.link_bytes)
                link_connect[k].append(kv(where(conn))["connect_p50_us"])
            print(f"  round {r + 1}/{a.rounds} done", file=sys.stderr)
    finally:
        jail.close()
        for _, j in others:
            j.close()

    figs = {"rounds": a.rounds, "transfer": {}, "conns": {}, "link": {"shape": a.link_shape}}
    print(f"proxy, 1 GiB over HTTP from 127.0.0.1 (median of {a.rounds} rounds [min–max]), the CPU time of the "
          "relaying process per GiB, and the whole path's (curl + server + relay) above direct's:")
    def above_direct(k):
        """The path's CPU above direct's, round by round (the rounds' machines differ)."""
        return [p - d for p, d in zip(path_gib[k], path_gib["direct"])]

    for k in transfers:
        c = med(cpu_gib[k]) if transfers[k][1] else None
        figs["transfer"][k] = {"mib_s": speed[k], "cpu_s_per_gib": cpu_gib[k] if c is not None else None,
                               "path_cpu_s_per_gib": path_gib[k]}
        cs = f"{c:6.3f} s/GiB [{min(cpu_gib[k]):.3f}–{max(cpu_gib[k]):.3f}]" if c is not None else " " * 27
        print(f"  {k:20s} {med(speed[k]):6.0f} MiB/s [{spread(speed[k])}]  {cs}  path {med(path_gib[k]):6.3f} s/GiB"
              + (f" ({med(above_direct(k)):+.3f})" if c is not None else ""))
    print(f"new connections/s (GET of 0 bytes, a new connection each; {n} on 1 client, {n16} on 16), "
          "their p50 time, and the relaying process's CPU per connection:")
    for k in rates:
        cc = f"{med(cpu_conn[k]):5.0f} us CPU/conn" if rates[k][1] else ""
        figs["conns"][k] = {"conn_s": cps[k], "p50_us": lat[k], "cpu_us_per_conn": cpu_conn[k] if cc else None}
        print(f"  {k:26s} {med(cps[k]):7.0f} conn/s [{spread(cps[k])}]  p50 {med(lat[k]):6.0f} us  {cc}")
    print(f"link-bound: {a.link_bytes >> 20} MiB from a server behind a veth shaped to {a.link_shape}, "
          "and the time to an established connection (300 sequential; through the proxy: its 200 to CONNECT):")
    for k in links:
        figs["link"][k] = {"mib_s": link_speed[k], "connect_p50_us": link_connect[k],
                           "cpu_s_per_gib": link_cpu[k] if links[k][1] else None}
        print(f"  {k:10s} {med(link_speed[k]):6.0f} MiB/s [{spread(link_speed[k])}]  connect p50 "
              f"{med(link_connect[k]):6.0f} us [{spread(link_connect[k])}]"
              + (f"  {med(link_cpu[k]):.3f} s CPU/GiB" if links[k][1] else ""))

    def ratios(x, y):
        """The ratio of medians, and the range of the rounds' own ratios."""
        own = [p / q for p, q in zip(x, y) if q > 0]
        return med(x) / med(y), (min(own), max(own)) if own else (float("nan"),) * 2

    lines = []

    def line(label, text):
        assert len(label) <= 30, label  # two spaces at least before the text (--json splits there)
        lines.append(f"{label:32s}{text}\n")

    def ok(flag):
        return "ok" if flag else "MISSED"

    for mode in ("CONNECT", "forward"):
        mine = cpu_gib[f"agentjail {mode}"]
        for peer in ("tinyproxy", "squid"):
            q, (lo, hi) = ratios(mine, cpu_gib[f"{peer} {mode}"])
            line(f"proxy CPU aj/{peer} {mode}",
                 f"{q:.2f}x [{lo:.2f}–{hi:.2f}] ({med(mine):.3f} vs {med(cpu_gib[f'{peer} {mode}']):.3f} s/GiB)"
                 f"  target <= 0.5x  {ok(q <= 0.5)}")
        q, (lo, hi) = ratios(mine, cpu_gib["bare relay"])
        line(f"proxy CPU aj/relay {mode}",
             f"{q:.2f}x [{lo:.2f}–{hi:.2f}] ({med(mine):.3f} vs {med(cpu_gib['bare relay']):.3f} s/GiB)"
             f"  target <= 1.0x  {ok(q <= 1.0)}")
        # What each relay adds to the machine: the path's CPU above direct's.
        added = {k: above_direct(k) for k in (f"agentjail {mode}", "bare relay")}
        q, (lo, hi) = ratios(added[f"agentjail {mode}"], added["bare relay"])
        line(f"proxy path aj/relay {mode}",
             f"{q:.2f}x [{lo:.2f}–{hi:.2f}] (+{med(added[f'agentjail {mode}']):.3f} vs +{med(added['bare relay']):.3f} "
             f"s/GiB over direct's {med(path_gib['direct']):.3f})  target <= 1.0x  {ok(q <= 1.0)}")
    for c in (1, 16):
        for peer in ("tinyproxy", "squid"):
            q, (lo, hi) = ratios(cps[f"agentjail, {c}"], cps[f"{peer}, {c}"])
            line(f"proxy conn/s aj/{peer} {c}cl",
                 f"{q:.2f}x [{lo:.2f}–{hi:.2f}] ({med(cps[f'agentjail, {c}']):.0f} vs {med(cps[f'{peer}, {c}']):.0f})"
                 f"  target >= 1.5x  {ok(q >= 1.5)}")
    for label, _ in others:
        q, (lo, hi) = ratios(cpu_gib["agentjail CONNECT"], cpu_gib[f"{label} CONNECT"])
        line(f"proxy CPU this/{label}"[:30], f"{q:.2f}x [{lo:.2f}–{hi:.2f}] ({med(cpu_gib['agentjail CONNECT']):.3f} vs "
             f"{med(cpu_gib[f'{label} CONNECT']):.3f} s/GiB, CONNECT)")
        for c in (1, 16):
            q, (lo, hi) = ratios(cps[f"agentjail, {c}"], cps[f"{label}, {c}"])
            line(f"{f'proxy conn/s this/{label}'[:25]} {c}cl", f"{q:.2f}x [{lo:.2f}–{hi:.2f}] "
                 f"({med(cps[f'agentjail, {c}']):.0f} vs {med(cps[f'{label}, {c}']):.0f})")
    d = med(speed["direct"])
    for mode in ("CONNECT", "forward"):
        p = med(speed[f"agentjail {mode}"])
        line(f"proxy 1 GiB {mode}/direct", f"{p / d:.2f}x ({p:.0f} vs {d:.0f} MiB/s; bare relay "
             f"{med(speed['bare relay']) / d:.2f}x; loopback: CPU-bound)")
    q, (lo, hi) = ratios(link_speed["agentjail"], link_speed["direct"])
    line("proxy link proxied/direct", f"{q:.2f}x [{lo:.2f}–{hi:.2f}] ({med(link_speed['agentjail']):.0f} vs "
         f"{med(link_speed['direct']):.0f} MiB/s)  target >= 0.95x  {ok(q >= 0.95)}")
    dl = (med(link_connect["agentjail"]) - med(link_connect["direct"])) / 1000
    line("proxy link connect added", f"{dl:+.3f} ms ({med(link_connect['agentjail']) / 1000:.3f} vs "
         f"{med(link_connect['direct']) / 1000:.3f} ms)  target <= 0.2 ms  {ok(dl <= 0.2)}")
    with open(a.summary, "a") as s:
        s.writelines(lines)
    for ln in lines:
        print("  " + ln, end="")
    with open(a.figures, "w") as f:
        json.dump(figs, f)


if __name__ == "__main__":
    main()
