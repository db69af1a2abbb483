#!/usr/bin/env python3
"""A small stand-in for an AI agent, used by scripts/demo.

It does a visible job in its workspace (summarises the Markdown files into
report.md), then tries what a misbehaving agent might try, and prints what the
jail let through and what it blocked. Standard library only.
"""
import ctypes
import errno
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)


def attempt(what, fn):
    try:
        result = fn()
        print(f"  ALLOWED  {what}" + (f": {result}" if result else ""))
    except OSError as e:
        print(f"  BLOCKED  {what}: {errno.errorcode.get(e.errno, e.errno)} ({e.strerror})")


def syscall_check(name, nr, *args):
    def call():
        r = libc.syscall(nr, *args)
        if r < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return f"returned {r}"
    attempt(name, call)


def main():
    print(f"agent: uid={os.getuid()} host={socket.gethostname()} cwd={os.getcwd()}")

    # The job: summarise the workspace.
    docs = sorted(f for f in os.listdir(".") if f.endswith(".md") and f != "report.md")
    lines = {f: sum(1 for _ in open(f)) for f in docs}
    with open("report.md", "w") as out:
        out.write("# Workspace report\n\n")
        for f, n in lines.items():
            out.write(f"- {f}: {n} lines\n")
    print(f"agent: wrote report.md ({len(docs)} documents summarised)")

    print("agent: trying things a runaway agent should not be able to do:")
    attempt("read /etc/shadow", lambda: open("/etc/shadow").read(10) and "read it")
    attempt("list /root", lambda: ", ".join(os.listdir("/root")[:3]) or "empty")
    attempt("write /usr/bin/evil", lambda: open("/usr/bin/evil", "w").write("x") and "written")
    attempt("list processes", lambda: f"{len([p for p in os.listdir('/proc') if p.isdigit()])} visible "
            "(only the jail's own: its own pid namespace)")
    attempt("connect to 1.1.1.1:443", lambda: socket.create_connection(("1.1.1.1", 443), timeout=2) and "connected")
    SYS_ptrace, SYS_unshare, SYS_mount, SYS_bpf = 101, 272, 165, 321
    syscall_check("ptrace(PTRACE_ATTACH, 1)", SYS_ptrace, 16, 1, 0, 0)
    syscall_check("unshare(CLONE_NEWUSER)", SYS_unshare, 0x10000000)
    syscall_check("mount tmpfs on /mnt", SYS_mount, b"none", b"/mnt", b"tmpfs", 0, None)
    syscall_check("bpf(BPF_PROG_LOAD)", SYS_bpf, 5, None, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
