"""The latency tail at one keep-alive connection, measured with more data.

The full run measures each server at 1 connection for 3 runs of 15
one-second slices and reports the median slice's p99. At this connection
count a second holds ~10k requests, so a slice's p99 rests on ~100 of them,
and on this kind of VM those are the requests that met the host's
interruptions that second. This check measures the same thing with more
rounds and keeps every request's latency (wrk's full histogram, from a
`done()` hook), so it can say:

- each server's percentiles over all of its requests, and the median slice
  p99 (the full run's estimator) over all rounds;
- how often a full run's verdict "ferrule's p99 <= each other server's"
  comes out that way, by resampling the rounds (bootstrap) into runs of
  3 repeats of 5 and of 15 slices, the way the full run groups them.

Servers, apps, wrk parameters and pinning are the full run's (the harness's
own code). Two differences: the order of the servers rotates every round
(the full run rotates it every repeat), and a slice disturbed by other
processes on CPU 0 is not repeated (their share is reported instead). Run it in the benchmark's venv, after `benchmarks/run.sh`:

    benchmarks/.venv/bin/python benchmarks/checks/tail_1conn.py [--rounds 30]
        [--apps hello,seed] [--servers ferrule,granian,uvicorn] [--out STEM]

It writes STEM.md and STEM.json (default results/<date>-tail-1conn).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness.cases import CASE_BY_NAME, CASES  # noqa: E402
from harness.loadgen import LUA_DIR, wrk  # noqa: E402
from harness.servers import BENCH_DIR, SERVER_CLASSES, SERVER_ORDER, Running  # noqa: E402
from harness.util import exit_on_sigterm, log, set_log_file  # noqa: E402

# Appended to the app's own wrk script (wrk takes one): prints the latency
# histogram as "H <microseconds>:<count> ..." when the run ends.
HISTOGRAM_HOOK = """
done = function(summary, latency, requests)
  local parts = {}
  for i = 1, #latency do
    local v, c = latency(i)
    parts[#parts + 1] = string.format("%d:%d", v, c)
  end
  io.write("H ", table.concat(parts, " "), "\\n")
end
"""

Histogram = dict[int, int]  # latency in µs -> requests


def parse_histogram(out: str) -> Histogram:
    m = re.search(r"^H (.*)$", out, re.M)
    if not m:
        raise RuntimeError("wrk printed no histogram: " + out[-500:])
    h: Histogram = {}
    for tok in m.group(1).split():
        v, c = tok.split(":")
        h[int(v)] = h.get(int(v), 0) + int(c)
    if not h:
        raise RuntimeError("a wrk run completed no request: " + out[-500:])
    return h


def merge(hs: list[Histogram]) -> Histogram:
    out: Histogram = {}
    for h in hs:
        for v, c in h.items():
            out[v] = out.get(v, 0) + c
    return out


def percentile(h: Histogram, q: float) -> int:
    """The smallest latency with at least q of the requests at or below it."""
    need, seen = q * sum(h.values()), 0
    for v in sorted(h):
        seen += h[v]
        if seen >= need:
            return v
    return max(h)


def script_for(case, workdir: str) -> str:
    path = os.path.join(workdir, f"tail-{case.name}.lua")
    with open(path, "w") as f:
        if case.lua:
            with open(os.path.join(LUA_DIR, case.lua)) as src:
                f.write(src.read())
        f.write(HISTOGRAM_HOOK)
    return path


def measure_case(case, running: list[Running], rounds: int, workdir: str) -> dict:
    lua = script_for(case, workdir)
    got: dict[str, list[dict]] = {r.server.name: [] for r in running}
    for i in range(rounds):
        k = i % len(running)
        for r in running[k:] + running[:k]:
            m = wrk(r.port, case.path, 1, 1, lua=lua, server_pid=r.pid, keep_output=True)
            got[r.server.name].append(
                {
                    "hist": parse_histogram(m.pop("stdout")),
                    "cpu0_other": m.get("cpu0_other"),
                    "errors": m.get("errors", 0) + m.get("non2xx", 0),
                }
            )
    return got


def slice_figures(got: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Each slice's own figures (what the JSON keeps: the histograms
    themselves would be megabytes)."""
    return {
        name: [
            {
                "requests": sum(s["hist"].values()),
                "p50": percentile(s["hist"], 0.5),
                "p99": percentile(s["hist"], 0.99),
                "cpu0_other": s["cpu0_other"],
            }
            for s in slices
        ]
        for name, slices in got.items()
    }


def verdict_rate(
    per_server: dict[str, list], estimator, per_repeat: int, trials: int, rng: random.Random
) -> float | None:
    """Share of resampled runs (3 repeats of per_repeat rounds, rounds drawn
    with replacement, the same rounds for every server: they ran side by
    side) in which ferrule's median-of-3 p99 is <= every other server's."""
    if "ferrule" not in per_server or len(per_server) < 2:
        return None
    n = min(len(v) for v in per_server.values())
    wins = 0
    for _ in range(trials):
        reps = [[rng.randrange(n) for _ in range(per_repeat)] for _ in range(3)]
        est = {
            name: statistics.median(estimator([vals[i] for i in rep]) for rep in reps)
            for name, vals in per_server.items()
        }
        wins += all(est["ferrule"] <= v for name, v in est.items() if name != "ferrule")
    return wins / trials


def analyse(got: dict[str, list[dict]], figures: dict[str, list[dict]], rng: random.Random) -> dict:
    out: dict = {"servers": {}}
    p99s_by = {name: [f["p99"] for f in figs] for name, figs in figures.items()}
    for name, slices in got.items():
        pool = merge([s["hist"] for s in slices])
        p99s = p99s_by[name]
        others = [f["cpu0_other"] for f in figures[name] if f["cpu0_other"] is not None]
        q1, med, q3 = statistics.quantiles(p99s, n=4)
        out["servers"][name] = {
            "requests": sum(pool.values()),
            "errors": sum(s["errors"] for s in slices),
            **{
                f"p{k}": percentile(pool, q)
                for k, q in (("50", 0.5), ("90", 0.9), ("99", 0.99), ("99.9", 0.999))
            },
            "max": max(pool),
            "slice_p99_median": statistics.median(p99s),
            "slice_p99_quartiles": [q1, q3],
            "cpu0_other_median": statistics.median(others) if others else None,
        }
    hists_by = {name: [s["hist"] for s in slices] for name, slices in got.items()}
    out["bootstrap"] = {}
    for k in (5, 15):
        out["bootstrap"][f"median_slice_{k}"] = verdict_rate(
            p99s_by, statistics.median, k, 2000, rng
        )
        out["bootstrap"][f"pooled_{k}"] = verdict_rate(
            hists_by, lambda hs: percentile(merge(hs), 0.99), k, 300, rng
        )
    return out


def others_text(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"


def us(v: float) -> str:
    return f"{v / 1000:.2f}"


def markdown(res: dict) -> str:
    meta = res["meta"]
    L = [
        f"# Latency at 1 keep-alive connection — {meta['date']}\n",
        f"- ferrule commit `{meta['commit']}`; {meta['rounds']} rounds per app, each server "
        "one 1-second `wrk -t1 -c1 -d1s` run per round, the servers taking turns and the "
        "order rotating every round (server on CPU 0, wrk on CPU 1, the full run's commands). "
        "Unlike the full run, a slice during which other processes used CPU 0 is not repeated; "
        'the tables give the median share they took ("others").',
        "- Percentiles are over every request of every round (wrk's full histogram); "
        '"slice p99" is the p99 of one 1-second run, the full run\'s unit (it reports the '
        "median slice of 15, median of 3 repeats).",
        '- "Verdict" is the share of resampled runs (3 repeats of 5 or 15 rounds drawn from '
        "these, with replacement) in which ferrule's p99 is at most every other server's: "
        "how often a full run would come out that way on this machine.",
        f"- Took {meta['elapsed_min']:.1f} min.\n",
    ]
    if meta.get("note"):
        L.insert(-1, f"- {meta['note']}")
    names = meta["servers"]
    for app, a in res["apps"].items():
        L.append(f"## {app}\n")
        L.append(
            "| server | requests | p50 | p90 | p99 | p99.9 | max | slice p99: median "
            "(quartiles) | others |"
        )
        L.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for n in names:
            s = a["servers"].get(n)
            if not s:
                continue
            q1, q3 = s["slice_p99_quartiles"]
            L.append(
                f"| {n} | {s['requests']:,} | {us(s['p50'])} | {us(s['p90'])} | "
                f"**{us(s['p99'])}** | {us(s['p99.9'])} | {us(s['max'])} | "
                f"**{us(s['slice_p99_median'])}** ({us(q1)}-{us(q3)}) | "
                f"{others_text(s['cpu0_other_median'])} |"
            )
        b = a["bootstrap"]
        if b.get("median_slice_5") is not None:
            L.append(
                '\nVerdict "ferrule\'s p99 lowest", median slice p99: '
                f"{b['median_slice_5']:.0%} of runs of 5 slices, "
                f"{b['median_slice_15']:.0%} of runs of 15; p99 over all requests: "
                f"{b['pooled_5']:.0%} (5), {b['pooled_15']:.0%} (15)."
            )
        L.append("\nLatencies in ms.\n")
    return "\n".join(L) + "\n"


def write(res: dict, stem: str, t0: float) -> None:
    res["meta"]["elapsed_min"] = (time.time() - t0) / 60
    with open(stem + ".json", "w") as f:
        json.dump(res, f)
    with open(stem + ".md", "w") as f:
        f.write(markdown(res))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30, help="at least 2")
    p.add_argument("--apps", default=",".join(c.name for c in CASES))
    p.add_argument("--servers", default="ferrule,granian,uvicorn")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.rounds < 2:
        p.error("--rounds: at least 2 (quartiles need two slices)")
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    cases = []
    for name in a.apps.split(","):
        if name not in CASE_BY_NAME:
            sys.exit(f"--apps: unknown app {name!r}; choose from {', '.join(CASE_BY_NAME)}")
        cases.append(CASE_BY_NAME[name])
    names = [s for s in SERVER_ORDER if s in a.servers.split(",")]
    unknown = set(a.servers.split(",")) - set(SERVER_CLASSES)
    if unknown:
        sys.exit(f"--servers: unknown server(s) {', '.join(sorted(unknown))}")
    date = time.strftime("%Y-%m-%d")
    stem = a.out or os.path.join(BENCH_DIR, "results", f"{date}-tail-1conn")
    workdir = os.path.join(BENCH_DIR, "work", "tail-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)
    set_log_file(os.path.join(workdir, "run.log"))
    t0 = time.time()
    rng = random.Random(1)  # a fixed seed: the same data gives the same verdicts
    servers = []
    for n in names:
        srv = SERVER_CLASSES[n](workdir)
        why = srv.available()
        if why:
            sys.exit(f"{n}: {why}")
        servers.append(srv)
    res: dict = {
        "meta": {
            "date": date,
            "rounds": a.rounds,
            "servers": names,
            "commit": os.popen(f"git -C {BENCH_DIR} describe --always --dirty").read().strip(),
        },
        "apps": {},
        "slices": {},
    }
    for ci, case in enumerate(cases):
        running = []
        try:
            for si, srv in enumerate(servers):
                if not srv.serves(case):
                    continue
                r = Running(srv, case.module, 18500 + ci * 10 + si, case.path)
                running.append(r)
                if not r.wait_ready():
                    sys.exit(f"{srv.name} failed to start on {case.module}: {r.log_tail(5)}")
            for r in running:  # warm-up, as in the full run
                wrk(r.port, case.path, 64, 1, lua=case.lua)
            got = measure_case(case, running, a.rounds, workdir)
        finally:
            for r in running:
                r.stop()
        res["slices"][case.name] = figures = slice_figures(got)
        res["apps"][case.name] = a_res = analyse(got, figures, rng)
        log(
            f"{case.name}: "
            + ", ".join(
                f"{n} p99 {us(s['p99'])} / slice {us(s['slice_p99_median'])} ms"
                for n, s in a_res["servers"].items()
            )
        )
        write(res, stem, t0)
    log(f"wrote {stem}.md, {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
