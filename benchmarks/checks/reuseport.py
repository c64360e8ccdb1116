"""`--workers 2`: one shared listening socket against one SO_REUSEPORT socket
per worker, side by side (alternating, medians of N), on the hello app.

    python benchmarks/checks/reuseport.py [--runs 3] [--seconds 8] [--conns 64]

Each run starts `ferrule --workers 2` (with or without --reuse-port), drives
it with wrk (2 threads, keep-alive) and reads the workers' CPU time from
/proc, so the figures are requests/s and requests per server CPU-second.
On a 2-core machine the workers and wrk share the cores: the ratio between
the two modes is what this measures, not a peak.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def run(python: str, reuse: bool, seconds: int, conns: int) -> dict[str, float]:
    port = free_port()
    argv = [python, "-m", "ferrule", "hello:app", "--port", str(port), "--workers", "2",
            "--no-access-log", "--log-level", "warning",
            "--reuse-port" if reuse else "--no-reuse-port"]
    env = dict(os.environ, PYTHONPATH=os.path.join(BENCH, "apps"))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if len(children(proc.pid)) == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        workers = children(proc.pid)
        before = cpu_seconds(workers)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, check=True,
        ).stdout
        cpu = cpu_seconds(workers) - before
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert match and total, out
    requests = int(total.group(1))
    return {"rps": float(match.group(1)), "per_cpu_s": requests / cpu if cpu else 0.0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--conns", type=int, default=64)
    a = p.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"shared": [], "reuse-port": []}
    for i in range(a.runs):
        for mode in ("shared", "reuse-port") if i % 2 == 0 else ("reuse-port", "shared"):
            r = run(a.python, mode == "reuse-port", a.seconds, a.conns)
            rows[mode].append(r)
            print(f"run {i + 1} {mode:10} {r['rps']:>10,.0f} req/s {r['per_cpu_s']:>10,.0f} req/CPU-s", flush=True)
    summary = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("rps", "per_cpu_s")}
        for mode, runs in rows.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
