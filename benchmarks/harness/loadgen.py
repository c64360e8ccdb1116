"""wrk runs (pinned to CPU 1) with server CPU accounting from /proc."""
from __future__ import annotations

import os
import re
import statistics
import subprocess

import time

from . import tls
from .util import CLIENT_CPU, SERVER_CPU, cpu_busy_seconds, tree_cpu_seconds

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA_DIR = os.path.join(BENCH_DIR, "lua")

# name -> (connections, keep-alive?)
SCENARIOS = {
    "ka64": (64, True),
    "ka1": (1, True),
    "close16": (16, False),
}
SCENARIO_TITLES = {
    "ka64": "keep-alive, 64 connections",
    "ka1": "keep-alive, 1 connection",
    "close16": "new connection per request (`Connection: close`), 16 connections",
}

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    r["elapsed_s"] = _ms(m.group(2)) / 1000 if m else 0.0
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[key] = _ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(int(x) for x in m.groups()) if m else 0
    r["error_detail"] = m.group(0) if m else ""
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def wrk(port: int, path: str, conns: int, duration: int, *, close: bool = False,
        lua: str | None = None, server_pid: int | None = None,
        env_extra: dict | None = None, timeout_s: int = 2, keep_output: bool = False) -> dict:
    """One wrk run: 1 thread pinned to the client CPU. Returns the parsed
    numbers plus the server tree's CPU seconds during the run (and wrk's
    whole output as "stdout" if keep_output)."""
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
            f"--timeout={timeout_s}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    if lua:
        argv += ["-s", os.path.join(LUA_DIR, lua)]
    argv.append(f"{tls.scheme()}://127.0.0.1:{port}{path}")
    cpu0 = tree_cpu_seconds(server_pid) if server_pid else None
    busy0, t0 = cpu_busy_seconds(SERVER_CPU), time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=duration + 120, env=dict(os.environ, **(env_extra or {})))
    busy1, t1 = cpu_busy_seconds(SERVER_CPU), time.monotonic()
    cpu1 = tree_cpu_seconds(server_pid) if server_pid else None
    r = parse_wrk(p.stdout)
    r["wrk_rc"] = p.returncode
    if keep_output:
        r["stdout"] = p.stdout
    if p.returncode != 0 or not r["requests"]:
        r["wrk_output"] = (p.stdout + p.stderr)[-2000:]
    if cpu0 is not None:
        r["cpu_s"] = round(cpu1 - cpu0, 3)
        r["req_per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else None
        # share of the server's CPU taken by other processes (noise indicator;
        # the server may run on other CPUs' time too if pinning failed)
        r["cpu0_other"] = round(max(0.0, (busy1 - busy0) - r["cpu_s"]) / (t1 - t0), 3)
    return r


def combine(slices: list[dict]) -> dict:
    """One measurement from interleaved slices of one server: totals for
    the counts, req/s over the summed time, the median slice for latency."""
    if len(slices) == 1:
        return slices[0]
    r: dict = {"slices": len(slices)}
    r["requests"] = sum(s["requests"] for s in slices)
    elapsed = sum(s.get("elapsed_s") or 0.0 for s in slices)
    r["elapsed_s"] = round(elapsed, 3)
    r["rps"] = r["requests"] / elapsed if elapsed > 0 else 0.0
    for key in ("p50_ms", "p99_ms"):
        vals = [s[key] for s in slices if s.get(key) is not None]
        r[key] = statistics.median(vals) if vals else None
    for key in ("errors", "non2xx"):
        r[key] = sum(s.get(key, 0) for s in slices)
    r["error_detail"] = "; ".join(s["error_detail"] for s in slices if s.get("errors"))
    r["wrk_rc"] = max(s.get("wrk_rc", 0) for s in slices)
    outs = [s["wrk_output"] for s in slices if s.get("wrk_output")]
    if outs:
        r["wrk_output"] = outs[-1]
    if all("cpu_s" in s for s in slices):
        r["cpu_s"] = round(sum(s["cpu_s"] for s in slices), 3)
        r["req_per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else None
        r["cpu0_other"] = round(statistics.mean(s.get("cpu0_other", 0) for s in slices), 3)
    return r
