#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A DNS server for integration tests: one name, one IPv4 address.

  test-dns.py BIND NAME ADDRESS [--delay SECONDS] [--log FILE]

Listens on BIND port 53 (UDP). An A query for NAME (any case) gets ADDRESS; another type
for NAME an empty NOERROR answer; any other name NXDOMAIN. --delay answers each query that
long after it came (the others are not held up meanwhile); --log appends "NAME TYPE" per
query.
"""
import select
import socket
import struct
import sys
import time


def main(argv):
    args, delay, log = [], 0.0, None
    it = iter(argv)
    for a in it:
        if a == "--delay":
            delay = float(next(it))
        elif a == "--log":
            log = open(next(it), "a", buffering=1)
        else:
            args.append(a)
    bind, known, address = args
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, 53))
    due = []  # (when, reply, peer)
    while True:
        wait = max(0.0, min(d[0] for d in due) - time.time()) if due else None
        if select.select([s], [], [], wait)[0]:
            q, peer = s.recvfrom(512)
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            name, qtype = ".".join(labels).lower(), struct.unpack(">H", q[i + 1:i + 3])[0]
            if log:
                log.write("%s %d\n" % (name, qtype))
            ours = name == known.lower()
            answer = ours and qtype == 1
            reply = q[:2] + struct.pack(">HHHHH", 0x8180 | (0 if ours else 3), 1, int(answer), 0, 0) + q[12:i + 5]
            if answer:
                reply += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(address)
            due.append((time.time() + delay, reply, peer))
        now = time.time()
        for d in [d for d in due if d[0] <= now]:
            s.sendto(d[1], d[2])
            due.remove(d)


if __name__ == "__main__":
    main(sys.argv[1:])
