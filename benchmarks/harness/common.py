"""What the side-by-side runners (main.py for HTTP/1.1, ws.py, h2.py) share:
the rule for disturbed runs, the run's files, the servers' set-up and
stop, host metadata, medians and the report's table helpers."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

from .servers import BENCH_DIR, Running, Server
from .util import log, set_log_file

# A run during which other processes took more than this share of the
# server's core is repeated (at most RETRIES_IF_DISTURBED times).
DISTURBED_SHARE = 0.10
RETRIES_IF_DISTURBED = 2


def undisturbed(run_once: Callable[[], dict], announce: Callable[[dict], None],
                res: dict) -> dict:
    """run_once(), repeated while other processes took more than
    DISTURBED_SHARE of the server's core (m["cpu0_other"]): that sample
    measures the neighbour, not the server. announce(m) logs each repeat."""
    m: dict = {}
    for attempt in range(RETRIES_IF_DISTURBED + 1):
        if attempt:
            announce(m)
            res["disturbed_repeats"] = res.get("disturbed_repeats", 0) + 1
        m = run_once()
        if m.get("cpu0_other", 0) <= DISTURBED_SHARE:
            break
    return m


def add_length_args(p, what: str) -> None:
    """--repeat, --duration (seconds per `what`) and --warmup (run_lengths' defaults)."""
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 3)")
    p.add_argument("--duration", type=float, default=None,
                   help=f"seconds per {what} (default 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run (default 1)")


def run_lengths(a, quick_duration: float = 2, duration: float = 5) -> tuple[int, float, float]:
    """(repeat, duration, warmup) from --repeat, --duration, --warmup and --quick."""
    q = a.quick
    return (a.repeat or (1 if q else 3), a.duration or (quick_duration if q else duration),
            a.warmup if a.warmup is not None else (0.5 if q else 1))


def subset(text: str, allowed, what: str) -> list[str]:
    """The comma-separated names of `text`; exits on one not in `allowed`."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        if n not in allowed:
            sys.exit(f"unknown {what} {n!r}; choose from {', '.join(allowed)}")
    return names


def start_run(kind: str, out: str | None, quick: bool) -> tuple[str, str, str]:
    """(date, results file stem, work dir) of a `kind` run (h2, ws); the log
    goes to run.log in the work dir."""
    date = time.strftime("%Y-%m-%d")
    stem = out or os.path.join(BENCH_DIR, "results", f"{kind}-{date}" + ("-quick" if quick else ""))
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    workdir = os.path.join(BENCH_DIR, "work", f"{kind}-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)
    set_log_file(os.path.join(workdir, "run.log"))
    return date, stem, workdir


def available_servers(order: list[str], names: list[str], make_server, workdir: str,
                      notes: list[str]) -> list[Server]:
    """The servers of `names` (in `order`) that can run; a note for each left out."""
    servers: list[Server] = []
    for name in order:
        if name not in names:
            continue
        srv = make_server(name, workdir)
        why = srv.available()
        if why:
            notes.append(f"**{name} skipped**: {why}.")
            log(notes[-1])
            continue
        servers.append(srv)
    if not servers:
        sys.exit("no server to run")
    return servers


def host_meta(servers: list[Server]) -> dict:
    """CPU, kernel, Python, commit and the servers' versions."""
    return {
        "cpu": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                              capture_output=True, text=True).stdout or "?",
        "ncpu": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": subprocess.run(["git", "-C", os.path.dirname(BENCH_DIR), "describe", "--always",
                                  "--dirty"], capture_output=True, text=True).stdout.strip(),
        "versions": {s.name: s.version() for s in servers},
    }


def title_line(kind: str, meta: dict) -> str:
    return f"# {kind} benchmark, {meta['date']}" + (" (quick)" if meta["quick"] else "")


def host_line(meta: dict) -> str:
    """The report's first words on the host (host_meta's)."""
    return (f"Commit `{meta['commit']}`, {meta['ncpu']} CPUs ({meta['cpu'].strip()}), "
            f"kernel {meta['kernel']}.")


def start_side_by_side(running: list[Running], starts, ready: Callable[[Running], str | None],
                       where: str, notes: list[str]) -> None:
    """Starts each (server, module, port, path) of `starts` and appends it to
    `running` (the caller's, stopped in its finally) once ready(r) is None;
    one that is not ready is stopped, with a note (left out of `where`)."""
    for srv, module, port, path in starts:
        r = Running(srv, module, port, path)
        why = ready(r)
        if why:
            notes.append(f"{srv.name} left out of {where}: {why}")
            log(notes[-1])
            r.stop()
            continue
        running.append(r)


def rotated(running: list[Running], rep: int) -> list[Running]:
    """The side-by-side order of repeat `rep`: rotated by one each repeat."""
    k = rep % max(1, len(running))
    return running[k:] + running[:k]


def stop_all(running: list[Running], during: str, notes: list[str]) -> None:
    """Stops the servers; a note for each that had exited `during` the runs."""
    for r in running:
        if r.proc.poll() is not None:
            notes.append(f"{r.server.name} exited during {during} "
                         f"(rc {r.proc.returncode}): {r.log_tail(3)!r}")
        r.stop()


def median_of(runs: list[dict], key: str) -> float | None:
    vals = [x[key] for x in runs if isinstance(x.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def spread(rates: list[float]) -> float | None:
    """(max - min) / median of the rates of the repeats; None for one."""
    return (max(rates) - min(rates)) / statistics.median(rates) if len(rates) > 1 else None


def fmt(v, spec: str = ",.0f", none: str = "—") -> str:
    return none if v is None else format(v, spec)


def markdown_end(res: dict) -> list[str]:
    """The report's last lines: the notes and the run's length."""
    out = []
    if res["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    out.append("Raw numbers: the `.json` beside this file. "
               f"Took {res['meta']['elapsed_min']:.1f} min.")
    return out


def write_results(res: dict, stem: str, t_start: float, markdown) -> None:
    """stem.json and stem.md (markdown(res)), with the run's length."""
    res["meta"]["elapsed_min"] = (time.time() - t_start) / 60
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(stem + ".md", "w") as f:
        f.write(markdown(res))
    log(f"done in {res['meta']['elapsed_min']:.1f} min: {stem}.md, {stem}.json")
