"""The WebSocket benchmark: ferrule, uvicorn (websockets and wsproto),
hypercorn and granian on apps/ws_echo.py, driven by the native load
generator benchmarks/wsload. Run through benchmarks/ws.sh (see README).

Cases:
  echo64   64 clients, each echoing 64-byte text messages, one in flight
  echo64k  1 client echoing 64 KiB binary messages
  idle     10,000 open WebSockets held idle: server RSS per socket

Every server is pinned to CPU 0 and wsload to CPU 1. The echo cases run the
servers side by side (all started, measured in turn, the order rotated each
repeat); a run during which other processes took more than 10% of CPU 0 is
repeated (at most twice), as in the HTTP harness. Tables give the median of
the repeats. The idle case starts a fresh server per server.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from .common import (add_length_args, available_servers, fmt, host_line, host_meta,
                     markdown_end, median_of, rotated, run_lengths, spread, start_run, stop_all,
                     start_side_by_side, subset, title_line, undisturbed, write_results)
from .servers import BENCH_DIR, Ferrule, Granian, Hypercorn, Running, Server, Uvicorn
from .util import (CLIENT_CPU, SERVER_CPU, cpu_busy_seconds, exit_on_sigterm, fmt_bytes, log,
                   tree_cpu_seconds, tree_rss_bytes)

MODULE = "ws_echo"
WSLOAD_DEFAULT = os.path.join(BENCH_DIR, "wsload", "target", "release", "wsload")

# name -> (wsload echo arguments, title)
ECHO_CASES = {
    "echo64": (["--conns", "64", "--size", "64", "--text"],
               "64 clients × 64-byte text messages, one in flight each"),
    "echo64k": (["--conns", "1", "--size", "65536", "--binary"],
                "1 client × 64 KiB binary messages"),
}
CASE_ORDER = ["echo64", "echo64k", "idle"]


class UvicornWs(Uvicorn):
    """uvicorn with one of its two WebSocket implementations."""

    def __init__(self, workdir: str, impl: str):
        super().__init__(workdir)
        self.impl = impl
        self.name = f"uvicorn-{impl}"

    def argv(self, module, port):
        return super().argv(module, port) + ["--ws", self.impl]

    def version(self):
        from importlib.metadata import version
        try:
            return f"{version('uvicorn')} ({self.impl} {version(self.impl)})"
        except Exception:  # noqa: BLE001
            return "?"


class GranianWs(Granian):
    def argv(self, module, port):
        # the HTTP harness turns WebSockets off; here they are the point
        return [("--ws" if x == "--no-ws" else x) for x in super().argv(module, port)]


SERVER_ORDER = ["ferrule", "uvicorn-websockets", "uvicorn-wsproto", "hypercorn", "granian"]


def make_server(name: str, workdir: str) -> Server:
    if name == "ferrule":
        return Ferrule(workdir)
    if name.startswith("uvicorn-"):
        return UvicornWs(workdir, name.split("-", 1)[1])
    if name == "hypercorn":
        return Hypercorn(workdir)
    if name == "granian":
        return GranianWs(workdir)
    raise ValueError(name)


def ws_probe(port: int, timeout: float = 5.0) -> str | None:
    """None when the server upgrades a WebSocket handshake, else what it said."""
    import socket
    req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            head = s.recv(256)
    except OSError as e:
        return f"handshake failed: {e}"
    if head.startswith(b"HTTP/1.1 101"):
        return None
    return "no WebSocket upgrade: answered " + head.split(b"\r\n", 1)[0].decode(errors="replace")


def ws_ready(r: Running) -> str | None:
    """None once the server is up and upgrades a WebSocket, else why not."""
    why = None if r.wait_ready() else f"did not start: {r.log_tail(5)!r}"
    return why or ws_probe(r.port)


class WsLoad:
    """One wsload process pinned to the client CPU; its JSON event lines are
    read as they come so the caller can sample the server at each phase."""

    def __init__(self, exe: str, args: list[str]):
        self.argv = ["taskset", "-c", CLIENT_CPU, exe] + args
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: list[dict] = []

    def next_event(self, timeout: float) -> dict | None:
        """The next JSON line (an event or the summary); None at EOF or timeout."""
        result: list[str] = []
        out = self.proc.stdout
        assert out is not None
        t = threading.Thread(target=lambda: result.append(out.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            return None
        try:
            d = json.loads(result[0])
        except ValueError:
            return {"event": "garbage", "line": result[0]}
        self.lines.append(d)
        return d

    def finish(self, timeout: float) -> dict:
        summary = next((d for d in reversed(self.lines) if "mode" in d), None)
        while summary is None:
            d = self.next_event(timeout)
            if d is None:
                break
            if "mode" in d:
                summary = d
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if summary is None:
            err = (self.proc.stderr.read() if self.proc.stderr else "").strip()[-300:]
            return {"error": f"wsload gave no summary (exit {self.proc.returncode}): {err}"}
        summary["exit"] = self.proc.returncode
        return summary


def echo_run(exe: str, r: Running, case: str, duration: float, warmup: float) -> dict:
    """One wsload echo run; server CPU is read at wsload's start and end events."""
    args, _ = ECHO_CASES[case]
    w = WsLoad(exe, ["echo", "--url", f"ws://127.0.0.1:{r.port}/", "--duration", str(duration),
                     "--warmup", str(warmup)] + args)
    at: dict[str, tuple[float, float, float]] = {}  # event -> (server CPU, CPU0 busy, wsload CPU)
    deadline = warmup + duration + 30
    while True:
        d = w.next_event(deadline)
        if d is None or "mode" in d:
            break
        ev = d.get("event")
        if ev in ("start", "end"):
            at[ev] = (tree_cpu_seconds(r.pid), cpu_busy_seconds(SERVER_CPU),
                      tree_cpu_seconds(w.proc.pid))
            if ev == "end":
                break
    m = w.finish(30)
    if "start" in at and "end" in at:
        (cpu0, busy0, load0), (cpu1, busy1, load1) = at["start"], at["end"]
        cpu = cpu1 - cpu0
        m["server_cpu_s"] = round(cpu, 3)
        msgs = m.get("messages") or 0
        m["messages_per_cpu_s"] = msgs / cpu if cpu > 0 else None
        # CPU 0 time used by anything but the server: the run measured a neighbour too
        m["cpu0_other"] = max(0.0, (busy1 - busy0) - cpu) / duration
        # near 100%: the load generator, not the server, set the pace
        m["wsload_cpu"] = (load1 - load0) / duration
    return m


def measure_echo(exe: str, r: Running, case: str, duration: float, warmup: float,
                 res: dict) -> dict:
    return undisturbed(
        lambda: echo_run(exe, r, case, duration, warmup),
        lambda m: log(f"  {case:8s} {r.server.name:18s} others used "
                      f"{m.get('cpu0_other', 0):.0%} of CPU0, repeating"),
        res)


def idle_check(exe: str, r: Running, n: int, hold: float) -> dict:
    """RSS of the server tree before and while `n` WebSockets are held open."""
    time.sleep(0.5)
    base = tree_rss_bytes(r.pid)
    w = WsLoad(exe, ["idle", "--url", f"ws://127.0.0.1:{r.port}/", "--conns", str(n),
                     "--hold", str(hold)])
    out: dict = {"target": n, "rss_base": base}
    d = w.next_event(300)
    if d and d.get("event") == "open":
        out["opened"] = d["opened"]
        out["open_s"] = d["seconds"]
        time.sleep(min(2.0, hold / 2))
        out["rss_idle"] = tree_rss_bytes(r.pid)
    summary = w.finish(hold + 60)
    out["wsload"] = summary
    alive = summary.get("alive")
    out["alive"] = alive
    if alive and "rss_idle" in out:
        out["per_socket"] = (out["rss_idle"] - base) / alive
    return out


def summarize(runs: list[dict]) -> dict:
    s = {k: median_of(runs, k) for k in ("messages_per_s", "p50_ms", "p99_ms",
                                          "messages_per_cpu_s", "cpu0_other", "wsload_cpu")}
    s["spread"] = spread([x["messages_per_s"] for x in runs if x.get("messages_per_s")])
    s["errors"] = sum((x.get("errors") or 0) + (x.get("connect_errors") or 0) for x in runs)
    s["runs"] = len(runs)
    return s


def markdown(res: dict) -> str:
    meta = res["meta"]
    out = [title_line("WebSocket", meta), ""]
    out.append(host_line(meta) + f" Servers pinned to CPU {SERVER_CPU}, wsload to CPU "
               f"{CLIENT_CPU}. Echo runs: {meta['duration']} s after {meta['warmup']} s of "
               f"warm-up, median of {meta['repeat']}. App: `apps/ws_echo.py` (raw ASGI). "
               "No compression (wsload offers no extension).")
    out.append("")
    ferrule = res["echo"].get("echo64", {}).get("ferrule")
    peers = [v["messages_per_s"] for k, v in res["echo"].get("echo64", {}).items()
             if k != "ferrule" and v.get("messages_per_s")]
    idle_f = res["idle"].get("ferrule", {}).get("per_socket")
    out += ["## Targets (issue 11)", "", "| target | measured | verdict |", "|---|---|---|"]
    if ferrule and ferrule.get("messages_per_s") and peers:
        ratio = ferrule["messages_per_s"] / max(peers)
        out.append(f"| ≥ 2× the best peer's messages/s at 64 clients | {ratio:.2f}× | "
                   f"{'PASS' if ratio >= 2 else 'MISS'} |")
    else:
        out.append("| ≥ 2× the best peer's messages/s at 64 clients | not measured | — |")
    if idle_f is not None:
        out.append(f"| ≤ 16 KiB per idle WebSocket | {fmt_bytes(idle_f)} | "
                   f"{'PASS' if idle_f <= 16 * 1024 else 'MISS'} |")
    else:
        out.append("| ≤ 16 KiB per idle WebSocket | not measured | — |")
    out.append("")
    for case in ("echo64", "echo64k"):
        rows = res["echo"].get(case)
        if not rows:
            continue
        out += [f"## {case}: {ECHO_CASES[case][1]}", "",
                "| server | messages/s | spread | p50 ms | p99 ms | messages per server CPU-s "
                "| others on CPU0 | wsload CPU | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in rows.items():
            out.append(f"| {name} | {fmt(s['messages_per_s'])} | "
                       f"{fmt(s['spread'], '.0%') if s['spread'] is not None else '—'} | "
                       f"{fmt(s['p50_ms'], '.3f')} | {fmt(s['p99_ms'], '.3f')} | "
                       f"{fmt(s['messages_per_cpu_s'])} | {fmt(s['cpu0_other'], '.0%')} | "
                       f"{fmt(s['wsload_cpu'], '.0%')} | {s['errors']} |")
        out.append("")
    if res["idle"]:
        out += [f"## idle: {meta['idle_conns']:,} open WebSockets, held {meta['hold']} s", "",
                "| server | opened | alive at the end | open time s | RSS before | RSS held "
                "| per socket |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, d in res["idle"].items():
            out.append(f"| {name} | {fmt(d.get('opened'))} | {fmt(d.get('alive'))} | "
                       f"{fmt(d.get('open_s'), '.1f')} | {fmt_bytes(d.get('rss_base'))} | "
                       f"{fmt_bytes(d.get('rss_idle'))} | {fmt_bytes(d.get('per_socket'))} |")
        out.append("")
    out += ["## Servers", "", "| server | version | command |", "|---|---|---|"]
    for name in meta["servers_run"]:
        out.append(f"| {name} | {meta['versions'].get(name, '?')} | "
                   f"{meta['commands'].get(name, '?')} |")
    out.append("")
    out += markdown_end(res)
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="benchmarks/ws.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVER_ORDER),
                   help="comma-separated subset of " + ",".join(SERVER_ORDER))
    p.add_argument("--cases", default=",".join(CASE_ORDER),
                   help="comma-separated subset of " + ",".join(CASE_ORDER))
    p.add_argument("--quick", action="store_true",
                   help="2 s runs, 1 repeat, 1,000 idle sockets: checks the harness, measures nothing")
    add_length_args(p, "echo run")
    p.add_argument("--idle-conns", type=int, default=None, help="idle WebSockets (default 10000)")
    p.add_argument("--hold", type=float, default=None, help="seconds the idle sockets are held "
                   "(default 10)")
    p.add_argument("--wsload", default=WSLOAD_DEFAULT, help="the load generator binary")
    p.add_argument("--out", default=None, help="results file stem (default results/ws-<date>)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    a = parse_args(argv)
    q = a.quick
    repeat, duration, warmup = run_lengths(a)
    n_idle = a.idle_conns or (1_000 if q else 10_000)
    hold = a.hold or (4 if q else 10)
    names = subset(a.servers, SERVER_ORDER, "server")
    cases = subset(a.cases, CASE_ORDER, "case")
    if not os.access(a.wsload, os.X_OK):
        sys.exit(f"{a.wsload} not found: cargo build --release in benchmarks/wsload "
                 "(benchmarks/ws.sh does it)")
    if not shutil.which("taskset"):
        sys.exit("taskset not found (util-linux)")

    date, stem, workdir = start_run("ws", a.out, q)
    t_start = time.time()
    notes: list[str] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if "idle" in cases and fd < n_idle + 1000:
        n_old, n_idle = n_idle, max(100, fd - 1000)
        notes.append(f"fd limit {fd}: idle WebSockets reduced from {n_old:,} to {n_idle:,}")
    if q:
        notes.append("quick run: a harness check, not a measurement")

    servers = available_servers(SERVER_ORDER, names, make_server, workdir, notes)

    res: dict = {"meta": {}, "notes": notes, "echo": {}, "idle": {}, "runs": {}}
    res["meta"].update({
        "date": date, "quick": q, "repeat": repeat, "duration": duration, "warmup": warmup,
        "idle_conns": n_idle, "hold": hold, "cases": cases,
        "servers_run": [s.name for s in servers],
        **host_meta(servers),
        "commands": {s.name: s.describe() for s in servers},
    })

    port_base = 19000
    echo_cases = [c for c in cases if c in ECHO_CASES]
    if echo_cases:
        running: list[Running] = []
        try:
            start_side_by_side(
                running, [(srv, MODULE, port_base + si, "/") for si, srv in enumerate(servers)],
                ws_ready, "the echo cases", notes)
            log("started: " + ", ".join(f"{r.server.name}:{r.port}" for r in running))
            for rep in range(repeat):
                order = rotated(running, rep)
                for case in echo_cases:
                    for r in order:
                        if r.proc.poll() is not None:
                            continue
                        m = measure_echo(a.wsload, r, case, duration, warmup, res)
                        res["runs"].setdefault(case, {}).setdefault(r.server.name, []).append(m)
                        if "error" in m:
                            log(f"  {case:8s} {r.server.name:18s} rep {rep + 1}: {m['error']}")
                            continue
                        log(f"  {case:8s} {r.server.name:18s} rep {rep + 1}: "
                            f"{m['messages_per_s']:>10,.0f} msg/s  p50 {m['p50_ms']} ms  "
                            f"p99 {m['p99_ms']} ms  "
                            f"{fmt(m.get('messages_per_cpu_s'))} msg/CPU-s  others on CPU0 "
                            f"{m.get('cpu0_other', 0):.0%}  wsload CPU {m.get('wsload_cpu', 0):.0%}"
                            + (f"  errors {m['errors'] + m['connect_errors']}: "
                               f"{m['error_samples']}"
                               if m.get("errors") or m.get("connect_errors") else ""))
        finally:
            stop_all(running, "the echo cases", notes)
        for case in echo_cases:
            for name, runs in res["runs"].get(case, {}).items():
                res["echo"].setdefault(case, {})[name] = summarize(runs)

    if "idle" in cases:
        log(f"[idle] {n_idle:,} WebSockets held {hold} s, fresh server each")
        for si, srv in enumerate(servers):
            r = Running(srv, MODULE, port_base + 100 + si, "/")
            try:
                why = ws_ready(r)
                if why:
                    notes.append(f"{srv.name} left out of the idle case: {why}")
                    log(notes[-1])
                    continue
                d = idle_check(a.wsload, r, n_idle, hold)
                res["idle"][srv.name] = d
                wl = d["wsload"]
                if wl.get("connect_errors") or wl.get("errors") or "error" in wl:
                    notes.append(f"{srv.name} idle: {wl.get('connect_errors')} connect errors, "
                                 f"{wl.get('errors')} closed while idle "
                                 f"{wl.get('error_samples') or wl.get('error')}")
                log(f"  idle {srv.name:18s} {fmt(d.get('alive'))}/{n_idle:,} alive, rss "
                    f"{fmt_bytes(d.get('rss_base'))} -> {fmt_bytes(d.get('rss_idle'))}, "
                    f"{fmt_bytes(d.get('per_socket'))} per socket")
            except Exception as e:  # noqa: BLE001
                notes.append(f"idle check {srv.name} failed: {e}")
                log(notes[-1])
                traceback.print_exc()
            finally:
                r.stop()

    write_results(res, stem, t_start, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
