"""The HTTP/2 benchmark: ferrule, hypercorn, granian (`--http 2`) and nginx
(the ceiling, hello only) driven by h2load (nghttp2-client). Run through
benchmarks/h2.sh (see README).

Shapes (h2load arguments):
  c1m64    1 connection carrying 64 concurrent streams (`-c1 -m64`)
  c16m16   16 connections × 16 concurrent streams (`-c16 -m16`)
over h2c (prior knowledge, plain TCP) and TLS (ALPN h2), on the apps hello
(raw ASGI, 13 bytes) and starlette (PlainTextResponse at /plain).

Every server is pinned to CPU 0 and h2load (one thread) to CPU 1. Per
transport and app, all servers are started together and measured in turn
(side by side), the order rotated each repeat; a run during which other
processes took more than 10% of CPU 0 is repeated (at most twice). Tables
give the median of the repeats; "requests per server CPU-s" divides the
requests h2load completed by the CPU time (user + system, /proc) the server
process tree used during the measured run.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

from . import tls
from .common import (add_length_args, available_servers, fmt, host_line, host_meta,
                     markdown_end, median_of, rotated, run_lengths, spread, start_run, stop_all,
                     start_side_by_side, subset, title_line, undisturbed, write_results)
from .servers import NGINX_TEMP_PATHS, Ferrule, Granian, Hypercorn, Nginx, Running, Server
from .util import CLIENT_CPU, SERVER_CPU, cpu_busy_seconds, exit_on_sigterm, log, tree_cpu_seconds

# name -> (module in benchmarks/apps, path, title)
APPS = {
    "hello": ("hello", "/", "raw ASGI, 13-byte text/plain"),
    "starlette": ("starlette_app", "/plain", "Starlette PlainTextResponse"),
}
# name -> (h2load arguments, title)
SHAPES = {
    "c1m64": (["-c1", "-m64"], "64 streams on 1 connection"),
    "c16m16": (["-c16", "-m16"], "16 connections × 16 streams"),
}
TRANSPORTS = {"h2c": "h2c (prior knowledge)", "tls": "TLS (ALPN h2)"}
SERVER_ORDER = ["ferrule", "hypercorn", "granian", "nginx"]


class FerruleH2(Ferrule):
    """ferrule's defaults already serve h2 (ALPN) and h2c (prior knowledge)
    beside HTTP/1.1 (`--http auto`)."""

    def available(self):
        why = super().available()
        if why is None and not self._has("--h2-max-concurrent-streams"):
            why = "this ferrule has no HTTP/2 (no --h2-max-concurrent-streams in --help)"
        return why


class HypercornH2(Hypercorn):
    """hypercorn closes an HTTP/2 connection after keep_alive_max_requests
    (1000 by default) and h2load does not reconnect: a 64-stream run would
    measure one idle connection after its first 1000 requests. The limit
    is raised through a config file (it has no flag)."""

    def argv(self, module, port):
        conf = os.path.join(self.workdir, "hypercorn-h2.toml")
        with open(conf, "w") as f:
            f.write("keep_alive_max_requests = 1000000000\n")
        return super().argv(module, port) + ["--config", conf]

    def describe(self):
        return super().describe().replace(
            os.path.join(self.workdir, "hypercorn-h2.toml"), "CONF") + (
            " (CONF: `keep_alive_max_requests = 1000000000`)")


class GranianH2(Granian):
    def argv(self, module, port):
        a = super().argv(module, port)
        a[a.index("--http") + 1] = "2"
        # The HTTP/1 header timeout flag means nothing with --http 2.
        i = a.index("--http1-header-read-timeout")
        del a[i:i + 2]
        return a


H2_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
user root;
pid {workdir}/nginx-h2-{port}.pid;
error_log {workdir}/nginx-error.log warn;
events {{
    worker_connections 4096;
    multi_accept off;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    http2_max_concurrent_streams 128;
""" + NGINX_TEMP_PATHS + """    server {{
        listen 127.0.0.1:{port}{ssl} http2 backlog=4096;{ssl_files}
        location / {{
            return 200 "Hello, world!";
        }}
    }}
}}
"""


class NginxH2(Nginx):
    """nginx 1.22 syntax (`listen ... http2`): on a plain port that is h2c by
    prior knowledge only; with `ssl`, h2 by ALPN."""

    def argv(self, module, port):
        os.makedirs(os.path.join(self.workdir, "nginx-tmp"), exist_ok=True)
        conf = os.path.join(self.workdir, f"nginx-h2-{port}.conf")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        with open(conf, "w") as f:
            f.write(H2_NGINX_CONF.format(
                workdir=self.workdir, port=port, nofile=nofile, **tls.nginx_format()))
        return [shutil.which("nginx") or "nginx", "-c", conf, "-p", self.workdir]

    def describe(self):
        return ("`nginx -c CONF`, 1 worker process, `listen ... http2` (h2c) or "
                "`listen ... ssl http2` (TLS), `return 200 \"Hello, world!\"`, "
                "http2_max_concurrent_streams 128, access_log off (config: `harness/h2.py`)")


def make_server(name: str, workdir: str) -> Server:
    return {"ferrule": FerruleH2, "hypercorn": HypercornH2, "granian": GranianH2,
            "nginx": NginxH2}[name](workdir)


def url(port: int, path: str) -> str:
    return f"{tls.scheme()}://127.0.0.1:{port}{path}"


def h2_ready(r: Running, path: str, timeout: float = 60.0) -> str | None:
    """None once one h2load request succeeds over HTTP/2, else why not."""
    end = time.time() + timeout
    out = ""
    while time.time() < end:
        if r.proc.poll() is not None:
            return f"exited: {r.log_tail(5)!r}"
        p = subprocess.run(["h2load", "-n1", "-c1", url(r.port, path)],
                           capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        if re.search(r"requests: 1 total, 1 started, 1 done, 1 succeeded", out):
            if not re.search(r"Application protocol: h2c?\b", out):
                return "h2load did not negotiate HTTP/2"
            time.sleep(0.3)
            return None
        time.sleep(0.3)
    return f"no HTTP/2 answer within {timeout:.0f} s: {out.strip()[-200:]!r}"


def parse_h2load(out: str) -> dict:
    m: dict = {}
    x = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if x:
        m["elapsed_s"] = float(x.group(1)) / (1000 if x.group(2) == "ms" else 1)
        m["rps"] = float(x.group(3))
    x = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if x:
        (m["total"], m["started"], m["done"], m["succeeded"], m["failed"], m["errored"],
         m["timeout"]) = map(int, x.groups())
    x = re.search(r"status codes: (\d+) 2xx", out)
    m["ok_2xx"] = int(x.group(1)) if x else 0
    x = re.search(r"Application protocol: (\S+)", out)
    m["protocol"] = x.group(1) if x else None
    x = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)  # min max mean
    m["mean_request"] = x.group(1) if x else None
    return m


def h2load_run(r: Running, path: str, shape: str, duration: float, warmup: float) -> dict:
    """A warm-up run, then the measured one; the server's CPU is read around it."""
    args = ["-t1"] + SHAPES[shape][0]
    target = url(r.port, path)
    if warmup > 0:
        subprocess.run(["taskset", "-c", CLIENT_CPU, "h2load", *args, "-D", str(warmup),
                        target], capture_output=True, text=True, timeout=warmup + 60)
    cpu0, busy0, t0 = tree_cpu_seconds(r.pid), cpu_busy_seconds(SERVER_CPU), time.time()
    p = subprocess.run(["taskset", "-c", CLIENT_CPU, "h2load", *args, "-D", str(duration),
                        target], capture_output=True, text=True, timeout=duration + 60)
    cpu1, busy1, t1 = tree_cpu_seconds(r.pid), cpu_busy_seconds(SERVER_CPU), time.time()
    m = parse_h2load(p.stdout)
    if "rps" not in m or p.returncode != 0:
        return {"error": f"h2load exit {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}"}
    cpu = cpu1 - cpu0
    m["server_cpu_s"] = round(cpu, 3)
    m["req_per_cpu_s"] = m["succeeded"] / cpu if cpu > 0 else None
    m["cpu_us_per_req"] = cpu * 1e6 / m["succeeded"] if m["succeeded"] else None
    m["cpu0_other"] = max(0.0, (busy1 - busy0) - cpu) / max(t1 - t0, 1e-9)
    return m


def measure(r: Running, path: str, shape: str, duration: float, warmup: float,
            res: dict) -> dict:
    return undisturbed(
        lambda: h2load_run(r, path, shape, duration, warmup),
        lambda m: log(f"    {r.server.name:10s} others used {m.get('cpu0_other', 0):.0%} of "
                      "CPU0, repeating"),
        res)


def summarize(runs: list[dict]) -> dict:
    s = {k: median_of(runs, k) for k in ("rps", "req_per_cpu_s", "cpu_us_per_req", "cpu0_other")}
    s["spread"] = spread([x["rps"] for x in runs if x.get("rps")])
    s["failed"] = sum((x.get("failed") or 0) + (x.get("errored") or 0) + (x.get("timeout") or 0)
                      + (0 if "error" not in x else 1) for x in runs)
    s["non2xx"] = sum(max(0, (x.get("succeeded") or 0) - (x.get("ok_2xx") or 0)) for x in runs)
    s["runs"] = len(runs)
    return s


def markdown(res: dict) -> str:
    meta = res["meta"]
    out = [title_line("HTTP/2", meta), ""]
    out.append(host_line(meta) + f" Servers pinned to CPU {SERVER_CPU}, one worker each; h2load "
               f"(`-t1`, nghttp2 {meta['h2load']}) pinned to CPU {CLIENT_CPU}. Each run: "
               f"{meta['warmup']} s of warm-up, then {meta['duration']} s measured; median of "
               f"{meta['repeat']}. Servers side by side: all started for one transport and app, "
               "measured in turn, the order rotated each repeat.")
    out.append("")
    out += ["## Target (issue 14): ≥ 2× the best peer's req/s", "",
            "| transport | app | shape | ferrule req/s | best peer | its req/s | ratio | verdict |",
            "|---|---|---|---:|---|---:|---:|---|"]
    for key, rows in res["summary"].items():
        transport, app, shape = key.split("/")
        f = rows.get("ferrule", {}).get("rps")
        peers = {n: s["rps"] for n, s in rows.items()
                 if n not in ("ferrule", "nginx") and s.get("rps")}
        if f and peers:
            best = max(peers, key=lambda n: peers[n])
            ratio = f / peers[best]
            out.append(f"| {transport} | {app} | {shape} | {fmt(f)} | {best} | "
                       f"{fmt(peers[best])} | {ratio:.2f}× | {'PASS' if ratio >= 2 else 'MISS'} |")
        else:
            out.append(f"| {transport} | {app} | {shape} | {fmt(f)} | — | — | — | not measured |")
    out.append("")
    for key, rows in res["summary"].items():
        transport, app, shape = key.split("/")
        out += [f"## {TRANSPORTS[transport]}, {app} ({APPS[app][2]}), {SHAPES[shape][1]}", "",
                "| server | req/s | spread | requests per server CPU-s | server CPU µs per "
                "request | others on CPU0 | failed | non-2xx |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in rows.items():
            out.append(f"| {name} | {fmt(s['rps'])} | "
                       f"{fmt(s['spread'], '.0%') if s['spread'] is not None else '—'} | "
                       f"{fmt(s['req_per_cpu_s'])} | {fmt(s['cpu_us_per_req'], '.1f')} | "
                       f"{fmt(s['cpu0_other'], '.0%')} | {s['failed']} | {s['non2xx']} |")
        out.append("")
    out += ["## Servers", "", "| server | version | transport | command |", "|---|---|---|---|"]
    for name in meta["servers_run"]:
        for transport, command in meta["commands"].get(name, {}).items():
            out.append(f"| {name} | {meta['versions'].get(name, '?')} | {transport} | {command} |")
    out.append("")
    out += markdown_end(res)
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="benchmarks/h2.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVER_ORDER),
                   help="comma-separated subset of " + ",".join(SERVER_ORDER))
    p.add_argument("--apps", default=",".join(APPS), help="subset of " + ",".join(APPS))
    p.add_argument("--shapes", default=",".join(SHAPES), help="subset of " + ",".join(SHAPES))
    p.add_argument("--transports", default=",".join(TRANSPORTS),
                   help="subset of " + ",".join(TRANSPORTS))
    p.add_argument("--quick", action="store_true",
                   help="2 s runs, 1 repeat: checks the harness, measures nothing")
    add_length_args(p, "run")
    p.add_argument("--out", default=None, help="results file stem (default results/h2-<date>)")
    p.add_argument("--estimate", action="store_true",
                   help="print the plan and its estimated duration, then exit")
    return p.parse_args(argv)


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    a = parse_args(argv)
    q = a.quick
    repeat, duration, warmup = run_lengths(a)
    names = subset(a.servers, SERVER_ORDER, "server")
    apps = subset(a.apps, APPS, "app")
    shapes = subset(a.shapes, SHAPES, "shape")
    transports = subset(a.transports, TRANSPORTS, "transport")
    if a.estimate:
        runs = sum(len([n for n in names if n != "nginx" or app == "hello"])
                   for app in apps) * len(shapes) * len(transports) * repeat
        seconds = runs * (warmup + duration + 0.5) + len(transports) * len(apps) * len(names) * 2
        print(f"{runs} h2load runs ({', '.join(names)}; apps {', '.join(apps)}; shapes "
              f"{', '.join(shapes)}; {', '.join(transports)}; {repeat} repeats of "
              f"{warmup:g} s warm-up + {duration:g} s): about {seconds / 60:.0f} min")
        return 0
    for tool in ("h2load", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (benchmarks/h2.sh installs nghttp2-client and util-linux)")

    date, stem, workdir = start_run("h2", a.out, q)
    t_start = time.time()
    notes: list[str] = []
    if q:
        notes.append("quick run: a harness check, not a measurement")

    servers = available_servers(SERVER_ORDER, names, make_server, workdir, notes)

    h2v = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout
    res: dict = {"meta": {}, "notes": notes, "runs": {}, "summary": {}}
    res["meta"].update({
        "date": date, "quick": q, "repeat": repeat, "duration": duration, "warmup": warmup,
        "apps": apps, "shapes": shapes, "transports": transports,
        "servers_run": [s.name for s in servers],
        "h2load": (h2v.split("nghttp2/")[-1].strip() or "?"),
        **host_meta(servers),
        "commands": {},
    })

    port = 19500
    for transport in transports:
        if transport == "tls":
            tls.setup(workdir)
        else:
            tls.FILES = None
        for s in servers:
            command = s.describe()
            if tls.FILES:
                command = command.replace(tls.FILES[0], "CERT").replace(tls.FILES[1], "KEY")
            res["meta"]["commands"].setdefault(s.name, {})[transport] = command
        for app in apps:
            module, path, _ = APPS[app]
            running: list[Running] = []
            try:
                chosen = [srv for srv in servers if not srv.hello_only or app == "hello"]
                start_side_by_side(
                    running, [(srv, module, port + 1 + i, path) for i, srv in enumerate(chosen)],
                    lambda r: h2_ready(r, path), f"{transport}/{app}", notes)
                port += len(chosen)
                log(f"[{transport} {app}] started: "
                    + ", ".join(f"{r.server.name}:{r.port}" for r in running))
                for rep in range(repeat):
                    order = rotated(running, rep)
                    for shape in shapes:
                        key = f"{transport}/{app}/{shape}"
                        for r in order:
                            if r.proc.poll() is not None:
                                continue
                            m = measure(r, path, shape, duration, warmup, res)
                            res["runs"].setdefault(key, {}).setdefault(r.server.name, []).append(m)
                            if "error" in m:
                                log(f"  {key:22s} {r.server.name:10s} rep {rep + 1}: {m['error']}")
                                continue
                            log(f"  {key:22s} {r.server.name:10s} rep {rep + 1}: "
                                f"{m['rps']:>10,.0f} req/s  {fmt(m.get('req_per_cpu_s'))} "
                                f"req/CPU-s  {fmt(m.get('cpu_us_per_req'), '.1f')} µs/req  "
                                f"others on CPU0 {m.get('cpu0_other', 0):.0%}"
                                + (f"  failed {m['failed'] + m['errored'] + m['timeout']}"
                                   if m.get("failed") or m.get("errored") or m.get("timeout")
                                   else ""))
            finally:
                stop_all(running, f"{transport}/{app}", notes)
    tls.FILES = None
    for key, rows in res["runs"].items():
        res["summary"][key] = {name: summarize(runs) for name, runs in rows.items()}

    write_results(res, stem, t_start, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
