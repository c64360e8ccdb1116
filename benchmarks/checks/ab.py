"""Two (or more) builds of ferrule side by side, on the same app and paths.

Each build runs from its own directory on PYTHONPATH (a checkout's `python/`
with its compiled extension, or an unpacked wheel); the builds take turns in
1-second wrk slices, path by path, the order flipping every round, and the
script reports requests per second and per server CPU-second. Used for A/B
checks of one change (the old build against the new), and for the
small-file threshold of pathsend (`apps/files_sized.py`).

    python benchmarks/checks/ab.py --build old=/tmp/old --build new=python \
        --app hello:app --paths / --conns 64
    python benchmarks/checks/ab.py --build read=/tmp/read --build sendfile=/tmp/sf \
        --app files_sized:app --paths /f/1k,/f/4k,/f/16k,/f/64k,/f/256k

Server pinned to CPU 0, wrk to CPU 1, as in the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(path: str, app: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, os.path.join(BENCH, "apps")]))
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "ferrule", app,
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def slice_once(port: int, path: str, pid: int, seconds: int, conns: int) -> tuple[int, float]:
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    used = cpu_seconds(pid) - before
    m = re.search(r"(\d+) requests in", out)
    return (int(m.group(1)) if m else 0), used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", action="append", required=True, help="LABEL=PYTHONPATH")
    p.add_argument("--app", required=True, help="module:attribute in benchmarks/apps")
    p.add_argument("--paths", default="/", help="comma-separated request paths")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--seconds", type=int, default=1)
    a = p.parse_args()
    builds = [b.split("=", 1) for b in a.build]
    paths = a.paths.split(",")
    procs = {}
    for label, path in builds:
        port = free_port()
        procs[label] = (start(path, a.app, port), port)
    totals = {(label, p): [0, 0.0, 0.0] for label, _ in builds for p in paths}
    try:
        for r in range(a.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            for path in paths:
                for label, _ in order:
                    proc, port = procs[label]
                    n, cpu = slice_once(port, path, proc.pid, a.seconds, a.conns)
                    t = totals[(label, path)]
                    t[0] += n
                    t[1] += a.seconds
                    t[2] += cpu
    finally:
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
    for path in paths:
        for label, _ in builds:
            n, secs, cpu = totals[(label, path)]
            print(json.dumps({"path": path, "build": label, "req_s": round(n / secs),
                              "req_per_cpu_s": round(n / cpu) if cpu else None}))


if __name__ == "__main__":
    main()
