"""Memory under connections reset right after their response (issue 4).

Starts `ferrule` on the hello app, opens N connections one after another,
each sends a request, reads the response and closes with SO_LINGER 0 (an
RST). Prints the server's RSS before, after, and the active-connection count.

    python benchmarks/checks/rst_flood.py [N]
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "..", "apps")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def hit(port: int, rst: bool) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"Hello, world!" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrule", "hello:app", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        cwd=APPS,
    )
    try:
        for _ in range(100):
            try:
                hit(port, rst=False)
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(2000):  # warm up allocator and caches
            hit(port, rst=True)
        before = rss_kib(proc.pid)
        t = time.monotonic()
        for i in range(n):
            hit(port, rst=True)
        elapsed = time.monotonic() - t
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        print(f"{n} reset connections in {elapsed:.1f} s; server RSS {before} KiB -> {after} KiB "
              f"(+{after - before} KiB); open fds in server afterwards: {fds}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
