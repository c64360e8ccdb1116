"""Orchestration: one run of every server on every app, then the report."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback

from . import memory, report, tls, wire
from .cases import CASE_BY_NAME, CASES, FILE_CASES, QUICK_CASES, TLS_CASES
from .loadgen import SCENARIOS, combine, wrk
from .servers import BENCH_DIR, SERVER_CLASSES, SERVER_ORDER, Running
from .common import undisturbed
from .util import exit_on_sigterm, log, set_log_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="benchmarks/run.sh",
                                description="ferrule vs uvicorn, hypercorn, granian, nginx")
    p.add_argument("--quick", action="store_true",
                   help="short durations and a subset of apps (harness development)")
    p.add_argument("--servers", default=",".join(SERVER_ORDER),
                   help="comma-separated subset of " + ",".join(SERVER_ORDER))
    p.add_argument("--apps", default=None,
                   help="comma-separated subset of " + ",".join(c.name for c in CASES))
    p.add_argument("--repeat", type=int, default=None, help="wrk runs per measurement "
                   "(default 3, quick 1); the report gives the median")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per wrk measurement (default 5, quick 1)")
    p.add_argument("--duration-1conn", type=int, default=None,
                   help="seconds per measurement at 1 connection (default 15, quick 1): a "
                   "second there holds ~10k requests, so its p99 rests on ~100 of them")
    p.add_argument("--slice", type=int, default=1,
                   help="seconds per wrk slice: each run of --duration seconds is measured as "
                   "duration/slice short runs, the servers taking turns (default 1; "
                   "0 = one run of the whole duration)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up seconds per server and app, 64 connections (default 1)")
    p.add_argument("--tls", action="store_true",
                   help="HTTPS: every server with the same certificate, wrk over https; "
                        "hello and starlette-plain at 64 keep-alive connections and new "
                        "connections (a handshake each); no wire or memory checks")
    p.add_argument("--no-perf", action="store_true", help="skip the wrk measurements")
    p.add_argument("--no-wire", action="store_true", help="skip the wire checks")
    p.add_argument("--no-memory", action="store_true", help="skip the memory checks")
    p.add_argument("--idle-conns", type=int, default=None,
                   help="idle keep-alive connections (default 10000, quick 1000)")
    p.add_argument("--estimate", action="store_true",
                   help="print the plan and the estimated duration, then exit")
    p.add_argument("--out", default=None, help="results file stem (default results/<date>)")
    p.add_argument("--install-log", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _cmd(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


def measure(r: Running, c, scen: str, seconds: int, rep: int, res: dict) -> dict:
    """One wrk run of one server, repeated (at most RETRIES_IF_DISTURBED
    times) while other processes took a share of the server's core: that
    sample measures the neighbour, not the server. Same rule for every server."""
    conns, keep = SCENARIOS[scen]
    return undisturbed(
        lambda: wrk(r.port, c.path, conns, seconds, close=not keep, lua=c.lua, server_pid=r.pid),
        lambda m: log(f"  {c.name:16s} {scen:8s} {r.server.name:9s} rep {rep + 1}: others used "
                      f"{m.get('cpu0_other', 0):.0%} of CPU0, repeating a slice"),
        res)


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    a = parse_args(argv)
    q = a.quick
    repeat = a.repeat or (1 if q else 3)
    duration = a.duration or (1 if q else 5)
    duration_1 = a.duration_1conn or (1 if q else 15)

    def slicing(seconds: int) -> tuple[int, int]:
        n = max(1, seconds // a.slice) if a.slice > 0 else 1
        return n, seconds // n

    slices, slice_s = slicing(duration)
    # The 1-connection scenario is measured longer, for every server alike:
    # its p99 is the noisiest number in the run (see benchmarks/README.md).
    slices_1, slice_s_1 = slicing(duration_1)
    # scenario -> (slices per run, seconds per slice)
    slicing_of = {scen: (slices_1, slice_s_1) if scen == "ka1" else (slices, slice_s)
                  for scen in SCENARIOS}
    warmup = a.warmup or 1
    mem_small, mem_large = 1_000, (20_000 if q else 200_000)
    n_idle = a.idle_conns or (1_000 if q else 10_000)
    wire_n = 100
    default = [c.name for c in CASES if c.name not in FILE_CASES]
    case_names = a.apps.split(",") if a.apps else (QUICK_CASES if q else default)
    for c in case_names:
        if c not in CASE_BY_NAME:
            sys.exit(f"unknown app {c!r}; choose from {', '.join(CASE_BY_NAME)}")
    if a.tls and not a.apps:
        case_names = TLS_CASES
    cases = [CASE_BY_NAME[c] for c in case_names]
    if a.tls:
        # Keep-alive throughput, and handshakes per second.
        cases = [dataclasses.replace(c, scenarios=("ka64", "close16")) for c in cases]
    wanted = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in wanted:
        if s not in SERVER_CLASSES:
            sys.exit(f"unknown server {s!r}; choose from {', '.join(SERVER_ORDER)}")

    date = time.strftime("%Y-%m-%d")
    stem = a.out or os.path.join(BENCH_DIR, "results", date + ("-quick" if q else ""))
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    workdir = os.path.join(BENCH_DIR, "work", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)
    set_log_file(os.path.join(workdir, "run.log"))
    t_start = time.time()
    notes: list[str] = []
    if a.tls:
        tls.setup(workdir)
        a.no_memory = True
        notes.append("HTTPS run (`--tls`): every server has the same ECDSA P-256 certificate; "
                     "wrk (OpenSSL) connects over https without session resumption, so each "
                     "new connection is a full handshake. The wire checks run over TLS on a "
                     "connection whose handshake is done first; the memory checks are not run "
                     "(see benchmarks/checks/tls_idle_memory.py for ferrule's memory).")

    for tool in ("wrk", "strace", "tcpdump", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run benchmarks/run.sh (it installs it)")
    if (os.cpu_count() or 1) < 2:
        notes.append("fewer than 2 CPUs: server and load generator share a core")
    fd = raise_fd_limit(n_idle + 2000)
    if fd < n_idle + 1000:
        n_old, n_idle = n_idle, max(100, fd - 1000)
        notes.append(f"fd limit {fd}: idle connections reduced from {n_old:,} to {n_idle:,}")

    servers = []
    for name in SERVER_ORDER:
        if name not in wanted:
            continue
        srv = SERVER_CLASSES[name](workdir)
        why = srv.available()
        if why:
            msg = f"**{name} skipped**: {why}."
            if name == "ferrule" and a.install_log and os.path.exists(a.install_log):
                msg += f" Build log: `{os.path.relpath(a.install_log, BENCH_DIR)}`."
            notes.append(msg)
            log(msg)
            continue
        servers.append(srv)
    if not servers:
        sys.exit("no server to run")
    for s in servers:
        if s.name == "ferrule":
            flag = s.keepalive_flag()
            notes.append("ferrule: " + (f"`{flag} 300` passed" if flag else
                         "no idle keep-alive timeout flag in `ferrule --help`; its default applies"))
    notes.append("Idle keep-alive timeouts: uvicorn `--timeout-keep-alive 300`, hypercorn "
                 "`--keep-alive 300`, nginx `keepalive_timeout 300s`; granian has no HTTP/1 "
                 "idle timeout flag, its `--http1-header-read-timeout` is set to its max (60 s).")

    res = {"meta": {}, "notes": notes, "perf": {}, "wire": {}, "memory": {}}
    res["meta"].update({
        "date": date, "quick": q, "repeat": repeat, "duration": duration, "warmup": warmup,
        "slices": slices, "slice_s": slice_s,
        "duration_1conn": duration_1, "slices_1conn": slices_1, "slice_s_1conn": slice_s_1,
        "mem_small": mem_small, "mem_large": mem_large, "mem_idle": n_idle, "wire_n": wire_n,
        "cases": [c.name for c in cases], "servers_run": [s.name for s in servers],
        "cpu": _cmd(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]) or "?",
        "ncpu": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": _cmd(["git", "-C", os.path.dirname(BENCH_DIR), "describe", "--always",
                        "--dirty"]),
        "wrk_version": _cmd(["sh", "-c", "wrk -v 2>&1 | head -1 | cut -d' ' -f2"]),
        "versions": {s.name: s.version() for s in servers},
        "commands": {s.name: s.describe() for s in servers},
    })

    # apps grouped by module: all servers for a module run side by side (idle
    # while another is measured), so repeats interleave the servers.
    modules: list[str] = []
    for c in cases:
        if c.module not in modules:
            modules.append(c.module)
    def n_servers(c) -> int:
        return sum(1 for s in servers if s.serves(c))

    n_meas = sum(len(c.scenarios) * n_servers(c) for c in cases) * repeat
    # seconds of wrk (plus ~0.25 s start-up per slice) per measurement of each scenario
    meas_s = {scen: n * (s + 0.25) for scen, (n, s) in slicing_of.items()}
    n_pairs = sum(n_servers(c) for c in cases)
    est_perf = 0 if a.no_perf else (
        sum(meas_s[scen] * n_servers(c) for c in cases for scen in c.scenarios) * repeat
        + n_pairs * (warmup + 0.5))
    est_wire = 0 if a.no_wire else n_pairs * 7
    est_mem = 0 if a.no_memory else len(servers) * (mem_large / 8000 + n_idle / 1000 + 8)
    log(f"{len(servers)} servers, {len(cases)} apps: {n_meas} measurements of {slices} × {slice_s} s "
        f"({slices_1} × {slice_s_1} s at 1 connection), "
        f"{n_pairs} server/app wire checks, memory checks; estimated "
        f"{(est_perf + est_wire + est_mem) / 60:.0f} min "
        f"(perf {est_perf / 60:.0f}, wire {est_wire / 60:.0f}, memory {est_mem / 60:.0f})")
    if a.estimate:
        return 0

    port_base = 18000
    for mi, module in enumerate(modules):
        mcases = [c for c in cases if c.module == module]
        running: list[Running] = []
        for si, srv in enumerate(servers):
            if not any(srv.serves(c) for c in mcases):
                continue
            port = port_base + mi * 10 + si
            r = Running(srv, module, port, mcases[0].path)
            if not r.wait_ready():
                msg = f"{srv.name} failed to start on `{module}`: {r.log_tail(5)!r}"
                log(msg)
                notes.append(msg)
                r.stop()
                continue
            running.append(r)
        log(f"[{module}] started: " + ", ".join(f"{r.server.name}:{r.port}" for r in running))
        try:
            if not a.no_perf:
                for r in running:
                    for c in mcases:
                        wrk(r.port, c.path, 64, warmup, lua=c.lua)
                for rep in range(repeat):
                    for c in mcases:
                        for scen in c.scenarios:
                            order = running[rep % len(running):] + running[:rep % len(running)]
                            order = [r for r in order if r.server.serves(c)]
                            # Each repeat is `slices` short wrk runs per server,
                            # the servers taking turns: the machine's speed
                            # changes every second or so (see README), and
                            # turns spread those changes over every server.
                            got: dict[str, list[dict]] = {r.server.name: [] for r in order}
                            n_sl, sl_s = slicing_of[scen]
                            for _ in range(n_sl):
                                for r in order:
                                    if r.proc.poll() is not None:
                                        continue
                                    got[r.server.name].append(
                                        measure(r, c, scen, sl_s, rep, res))
                            for r in order:
                                if not got[r.server.name]:
                                    continue
                                m = combine(got[r.server.name])
                                runs = res["perf"].setdefault(c.name, {}).setdefault(
                                    scen, {}).setdefault(r.server.name, [])
                                runs.append(m)
                                p99 = f"{m['p99_ms']:.2f}" if m["p99_ms"] is not None else "?"
                                rpc = m.get("req_per_cpu_s") or 0
                                log(f"  {c.name:16s} {scen:8s} {r.server.name:9s} rep {rep + 1}: "
                                    f"{m['rps']:>9,.0f} req/s  p99 {p99} ms  "
                                    f"{rpc:,.0f} req/CPU-s  others on CPU0 "
                                    f"{m.get('cpu0_other', 0):.0%}"
                                    + (f"  errors {m['errors']}" if m["errors"] else "")
                                    + (f"  non-2xx {m['non2xx']}" if m["non2xx"] else ""))
                                if m.get("wrk_output"):
                                    log("    wrk: " + m["wrk_output"].strip().replace("\n", " | "))
            if not a.no_wire:
                for c in mcases:
                    for r in running:
                        if not r.server.serves(c):
                            continue
                        if r.proc.poll() is not None:
                            continue
                        try:
                            res["wire"].setdefault(c.name, {})[r.server.name] = wire.check(r, c, wire_n)
                        except Exception as e:  # noqa: BLE001
                            msg = f"wire check {r.server.name}/{c.name} failed: {e}"
                            log(msg)
                            notes.append(msg)
                            traceback.print_exc()
        finally:
            for r in running:
                if r.proc.poll() is not None:
                    msg = f"{r.server.name} exited during `{module}` (rc {r.proc.returncode}): " \
                          f"{r.log_tail(3)!r}"
                    log(msg)
                    notes.append(msg)
                r.stop()

    if not a.no_memory:
        log("[memory] hello app, fresh server each")
        for si, srv in enumerate(servers):
            r = Running(srv, "hello", port_base + 900 + si, "/")
            try:
                if not r.wait_ready():
                    notes.append(f"{srv.name} failed to start for the memory check")
                    continue
                res["memory"][srv.name] = memory.check(r, mem_small, mem_large, n_idle)
            except Exception as e:  # noqa: BLE001
                msg = f"memory check {srv.name} failed: {e}"
                log(msg)
                notes.append(msg)
                traceback.print_exc()
            finally:
                r.stop()

    res["meta"]["elapsed_min"] = (time.time() - t_start) / 60
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1, default=str)
    chart_path = stem + ".png"
    try:
        if res["perf"]:
            report.chart(res, chart_path)
    except Exception as e:  # noqa: BLE001
        notes.append(f"chart failed: {e}")
        traceback.print_exc()
    with open(stem + ".md", "w") as f:
        f.write(report.markdown(res, os.path.basename(chart_path)))
    log(f"done in {res['meta']['elapsed_min']:.1f} min: {stem}.md, {chart_path}, {stem}.json")
    return 0
