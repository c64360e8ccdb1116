"""Markdown tables and the PNG chart from a results dict."""
from __future__ import annotations

import statistics

from .cases import CASE_BY_NAME
from .loadgen import SCENARIO_TITLES
from .util import fmt_bytes

MIB = 1 << 20
KIB = 1 << 10

PERF_METRICS = [
    ("rps", "Requests per second", "{:,.0f}"),
    ("p50_ms", "p50 latency (ms)", "{:.2f}"),
    ("p99_ms", "p99 latency (ms)", "{:.2f}"),
    ("req_per_cpu_s", "Requests per server CPU-second", "{:,.0f}"),
]


def median(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None and r.get("requests")]
    return statistics.median(vals) if vals else None


def spread(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None and r.get("requests")]
    if len(vals) < 2:
        return None
    m = statistics.median(vals)
    return (max(vals) - min(vals)) / m * 100 if m else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def pm(ok) -> str:
    return "—" if ok is None else ("PASS" if ok else "MISS")


def _ratio(a, b):
    return a / b if a and b else None


# --------------------------------------------------------------------------
# targets (issue 3), evaluated for ferrule

def targets(res: dict) -> list[list[str]]:
    perf, wire, mem = res.get("perf", {}), res.get("wire", {}), res.get("memory", {})
    rows = []
    have_ferrule = "ferrule" in res["meta"]["servers_run"]

    def med(case, scen, server, key):
        return median(perf.get(case, {}).get(scen, {}).get(server, []), key)

    def ratio_row(case, scen, other, need, label):
        f, o = med(case, scen, "ferrule", "rps"), med(case, scen, other, "rps")
        r = _ratio(f, o)
        measured = (f"{r:.2f}× ({f:,.0f} vs {o:,.0f} req/s)" if r
                    else "n/a" + ("" if have_ferrule else " (ferrule not run)"))
        rows.append([label, f"≥ {need}×", measured, pm(r >= need if r else None)])

    ratio_row("hello", "ka64", "granian", 2.0, "hello, 64 conns: req/s vs granian")
    ratio_row("hello", "ka64", "uvicorn", 3.0, "hello, 64 conns: req/s vs uvicorn")
    ratio_row("starlette-plain", "ka64", "granian", 1.5, "Starlette plain, 64 conns: vs granian")
    ratio_row("starlette-json", "ka64", "granian", 1.5, "Starlette JSON, 64 conns: vs granian")
    for case in perf:
        if "ka1" not in perf[case]:
            continue
        f = med(case, "ka1", "ferrule", "p99_ms")
        others = {s: med(case, "ka1", s, "p99_ms") for s in ("granian", "uvicorn")}
        worst = min((v for v in others.values() if v is not None), default=None)
        ok = (f <= worst) if (f is not None and worst is not None) else None
        meas = ("n/a" if f is None else f"{f:.2f} ms") + " vs " + ", ".join(
            f"{s} {v:.2f}" if v is not None else f"{s} n/a" for s, v in others.items())
        rows.append([f"{case}, 1 conn: p99 latency", "≤ granian's and uvicorn's", meas, pm(ok)])
    for case, per_server in wire.items():
        w = per_server.get("ferrule")
        streaming = CASE_BY_NAME[case].streaming
        if streaming:
            ok = None if not w else (w["writes_per_resp"] <= 10 and (w["min_write_bytes"] or 0) >= 1024)
            rows.append([f"{case}: head rides with first chunk, terminator with last",
                         "10 writes/resp, each ≥ 1 KiB",
                         "n/a" if not w else f"{w['writes_per_resp']:.2f} writes/resp, "
                         f"min {w['min_write_bytes']} B", pm(ok)])
            continue
        rows.append([f"{case}: write syscalls per response", "= 1",
                     "n/a" if not w else f"{w['writes_per_resp']:.2f}",
                     pm(None if not w else w["writes_per_resp"] == 1)])
        rows.append([f"{case}: data segments per response", "= 1",
                     "n/a" if not w else f"{w['segments_per_resp']:.2f}",
                     pm(None if not w else w["segments_per_resp"] == 1)])
        rows.append([f"{case}: all syscalls per response", "≤ 4",
                     "n/a" if not w else f"{w['syscalls_per_resp']:.2f}",
                     pm(None if not w else w["syscalls_per_resp"] <= 4)])
    for case, per_server in wire.items():
        w = per_server.get("ferrule")
        if w and w.get("tls"):
            rows.append([f"{case}: TLS records per response", "= 1",
                         f"{w['records_per_resp']:.2f}", pm(w["records_per_resp"] == 1)])
            continue
        rows.append([f"{case}: split request, over 30 ms", "0 of 100",
                     "n/a" if not w else f"{w['split']['over30']} of {w['split']['n']} "
                     f"(max {w['split']['max_ms']:.1f} ms)",
                     pm(None if not w else w["split"]["over30"] == 0)])
    m = mem.get("ferrule")
    rows.append([f"RSS growth, {res['meta']['mem_small']:,} → {res['meta']['mem_large']:,} requests",
                 "< 2 MiB", "n/a" if not m else fmt_bytes(m["growth"]),
                 pm(None if not m else m["growth"] < 2 * MIB)])
    pc = m["idle"]["per_conn"] if m else None
    rows.append([f"RSS per idle keep-alive connection ({res['meta']['mem_idle']:,} open)",
                 "≤ 16 KiB", "n/a" if pc is None else fmt_bytes(pc),
                 pm(None if pc is None else pc <= 16 * KIB)])
    return rows


# --------------------------------------------------------------------------

def markdown(res: dict, chart_name: str) -> str:
    meta = res["meta"]
    servers = meta["servers_run"]
    L = []
    kind = "QUICK run: short and a subset, for checking the harness, not for comparison" \
        if meta["quick"] else "full run"
    L.append(f"# ferrule benchmarks — {meta['date']} ({kind})\n")
    L.append(f"- Machine: {meta['cpu']}, {meta['ncpu']} CPUs, Linux {meta['kernel']}, "
             f"Python {meta['python']}. Servers pinned to CPU 0 (`taskset -c 0`), wrk and "
             "the Python clients to CPU 1. The machine is shared and noisy.")
    L.append(f"- ferrule commit: `{meta['commit']}`. Run took {meta['elapsed_min']:.1f} min.")
    n_sl, sl_s = meta.get("slices", 1), meta.get("slice_s", meta["duration"])
    if n_sl > 1:
        how = (f"`wrk -t1 -cN -d{sl_s}s --latency` (same for every server). Each run is "
               f"{n_sl} slices of {sl_s} s per server, the servers taking turns slice by "
               "slice, so the machine's second-to-second speed changes reach every server "
               "alike; a run's req/s is its requests over its slices' summed time, its "
               "p50/p99 the median of its slices'. ")
    else:
        how = f"`wrk -t1 -cN -d{meta['duration']}s --latency` (same for every server). "
    n1, s1 = meta.get("slices_1conn"), meta.get("slice_s_1conn")
    if n1 and (n1, s1) != (n_sl, sl_s):
        how += (f"At 1 connection a run is {n1} × {s1} s (`--duration-1conn`): a second "
                "there holds ~10k requests, so one second's p99 rests on ~100 of them. ")
    L.append(f"- Load: wrk {meta['wrk_version']}, {how}"
             f"Each server warmed up {meta['warmup']} s per app first. "
             f"Every number in the throughput/latency/CPU tables is the **median of "
             f"{meta['repeat']} runs** (each metric's median taken separately; servers "
             "interleaved within each repeat). ± is the spread (max−min)/median.")
    others = [r["cpu0_other"] for c in res["perf"].values() for sc in c.values()
              for runs in sc.values() for r in runs if r.get("cpu0_other") is not None]
    if others:
        others.sort()
        L.append(f"- Noise: share of CPU 0 used by *other* processes during the wrk runs: "
                 f"median {statistics.median(others):.0%}, 90th percentile "
                 f"{others[int(0.9 * (len(others) - 1))]:.0%}, max {others[-1]:.0%} "
                 "(from /proc/stat minus the server's own CPU time).")
        L.append(f"- A wrk run (slice) during which other processes used over 10% of CPU 0 is "
                 f"repeated (up to twice, the same rule for every server): "
                 f"{res.get('disturbed_repeats', 0)} repeats in this run; the tables use "
                 f"the last attempt.")
        if statistics.median(others) > 0.10:
            L.append("- **Warning: the machine was busy during this run** (other processes "
                     "took over 10% of the server's CPU in a typical run): req/s, latency "
                     "and the ratios are unreliable; requests per CPU-second and the wire "
                     "and memory checks hold better. Rerun on a quiet machine.")
    L.append("- Requests per CPU-second: wrk's completed requests / the server process "
             "tree's utime+stime (all threads and child processes, from /proc/<pid>/stat) "
             "over the run.")
    L.append(f"- Wire checks: {meta['wire_n']} keep-alive requests on one connection per "
             "server and app, one pass (counts are deterministic).")
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    L.append("")
    L.append("Server commands (APP = module:app in `benchmarks/apps/`):\n")
    for name, cmd in meta["commands"].items():
        L.append(f"- {name}: {cmd}")
    L.append("")
    if res["notes"]:
        L.append("Notes:\n")
        L += [f"- {n}" for n in res["notes"]]
        L.append("")
    L.append("Apps:\n")
    for case in meta["cases"]:
        c = CASE_BY_NAME[case]
        L.append(f"- `{case}`: {c.title} — `{c.method} {c.path}` on `apps/{c.module}.py`")
    L.append("")

    L.append("## Targets (issue 3), ferrule\n")
    L.append(_table(["target", "goal", "measured", "result"], targets(res)))
    L.append("")
    L.append(f"![req/s per server and scenario]({chart_name})\n")

    perf = res["perf"]
    for key, title, fmt in PERF_METRICS:
        for scen in ("ka64", "ka1", "close16"):
            rows = []
            for case in perf:
                if scen not in perf[case]:
                    continue
                row = [case]
                for s in servers:
                    runs = perf[case][scen].get(s)
                    v = median(runs, key) if runs else None
                    if v is None:
                        row.append("—")
                        continue
                    cell = fmt.format(v)
                    sp = spread(runs, key) if key == "rps" else None
                    if sp is not None:
                        cell += f" ±{sp:.0f}%"
                    row.append(cell)
                if key == "rps":
                    f = median(perf[case][scen].get("ferrule", []), "rps")
                    for other in ("granian", "uvicorn"):
                        r = _ratio(f, median(perf[case][scen].get(other, []), "rps"))
                        row.append(f"{r:.2f}×" if r else "—")
                rows.append(row)
            if not rows:
                continue
            hdr = ["app"] + servers
            if key == "rps":
                hdr += ["ferrule/granian", "ferrule/uvicorn"]
            L.append(f"## {title} — {SCENARIO_TITLES[scen]}\n")
            L.append(_table(hdr, rows))
            L.append("")

    errs = []
    for case in perf:
        for scen in perf[case]:
            for s, runs in perf[case][scen].items():
                e = sum(r.get("errors", 0) for r in runs)
                n = sum(r.get("non2xx", 0) for r in runs)
                if e or n:
                    details = "; ".join(r.get("error_detail", "") for r in runs if r.get("errors"))
                    errs.append([case, scen, s, str(e), str(n), details])
    if errs:
        L.append("## wrk errors (summed over repeats)\n")
        L.append(_table(["app", "scenario", "server", "socket errors", "non-2xx", "detail"], errs))
        L.append("")

    wire = res.get("wire", {})
    if wire:
        def wire_table(title, fn, note=""):
            rows = []
            for case, per_server in wire.items():
                row = [case]
                for s in servers:
                    w = per_server.get(s)
                    row.append(fn(w, CASE_BY_NAME[case]) if w else "—")
                rows.append(row)
            L.append(f"## {title}\n")
            if note:
                L.append(note + "\n")
            L.append(_table(["app"] + servers, rows))
            L.append("")

        def writes(w, c):
            v = w["writes_per_resp"]
            b = f" ({w['min_write_bytes']}–{w['max_write_bytes']} B)" if w["min_write_bytes"] else ""
            ok = (v <= 10 and (w["min_write_bytes"] or 0) >= 1024) if c.streaming else v == 1
            e = f", {w['eagain']} EAGAIN" if w["eagain"] else ""
            return f"{v:.2f}{b}{e} {pm(ok)}"

        wire_table("Write syscalls per response on the client's connection", writes,
                   "strace -f -yy -e trace=write,writev,send,sendto,sendmsg,sendfile attached to "
                   "the server; calls on the connection's socket / responses. Bytes per call "
                   "in brackets. Goal: 1 for a non-streaming response; for the stream, 10 "
                   "(head with the first chunk, terminator with the last: every write ≥ 1 KiB).")

        def segs(w, c):
            v = w["segments_per_resp"]
            ok = v <= 10 if c.streaming else v == 1
            # tcpdump's kernel drop counter also counts other lo traffic seen before
            # its filter was attached: mention it only when our count is short
            d = (f", tcpdump dropped {w['tcpdump_dropped']}"
                 if w.get("tcpdump_dropped") and w["segments"] < w["n"] else "")
            return f"{v:.2f}{d} {pm(ok)}"

        wire_table("TCP segments carrying response data per response", segs,
                   "tcpdump on lo: packets from the server port to the client's port with "
                   "payload > 0, / responses. Goal: 1 for a non-streaming response; ≤ 10 "
                   "for the stream.")

        def sysc(w, c):
            v = w["syscalls_per_resp"]
            return f"{v:.2f}" + ("" if c.streaming else f" {pm(v <= 4)}")

        wire_table("All syscalls per response, every server thread", sysc,
                   "strace -f -c attached to every process and thread of the server during "
                   "the requests (connection set-up included). Goal ≤ 4 (non-streaming).")

        top_rows = []
        for case, per_server in wire.items():
            for s in servers:
                w = per_server.get(s)
                if w:
                    top_rows.append([case, s, ", ".join(f"{n} {c}" for n, c in w["top_syscalls"])])
        L.append("<details><summary>Most frequent syscalls per response</summary>\n")
        L.append(_table(["app", "server", "syscall calls/response"], top_rows))
        L.append("\n</details>\n")

        def records(w, c):
            v = w["records_per_resp"]
            return f"{v:.2f}" + ("" if c.streaming else f" {pm(v == 1)}")

        if any(w.get("tls") for per in wire.values() for w in per.values()):
            wire_table("TLS records per response", records,
                       "The bytes each server wrote on the connection (strace -xx), read as TLS "
                       "records, after the handshake and a first request. Goal: 1 for a "
                       "non-streaming response.")

        def split(w, c):
            sp = w["split"]
            if sp is None:
                return "—"
            return (f"{sp['mean_ms']:.1f} / {sp['max_ms']:.1f} ms, "
                    f"{sp['over30']} > 30 ms {pm(sp['over30'] == 0)}")

        wire_table("Split-request test (client without TCP_NODELAY, request in two send() calls)",
                   split, "100 requests on one connection: mean / max time per request and "
                   "the number slower than 30 ms. Goal: 0.")

    mem = res.get("memory", {})
    if mem:
        rows = []
        for s in servers:
            m = mem.get(s)
            if not m:
                continue
            rows.append([s, fmt_bytes(m["rss_start"]),
                         f"{fmt_bytes(m['rss_small'])} ({m['done_small']:,})",
                         f"{fmt_bytes(m['rss_large'])} ({m['done_large']:,})",
                         f"{fmt_bytes(m['growth'])} {pm(m['growth'] < 2 * MIB)}"])
        L.append("## Memory: RSS growth (hello app, fresh server)\n")
        L.append("RSS of the server's process tree (sum of VmRSS); requests by wrk, 64 "
                 "connections. Goal: growth < 2 MiB.\n")
        L.append(_table(["server", "RSS at start", f"after ~{meta['mem_small']:,} requests",
                         f"after ~{meta['mem_large']:,}", "growth"], rows))
        L.append("")
        rows = []
        for s in servers:
            m = mem.get(s)
            if not m:
                continue
            i = m["idle"]
            rows.append([s, f"{i['alive']:,} / {i['target']:,}", fmt_bytes(i["rss_base"]),
                         fmt_bytes(i["rss_idle"]),
                         ("—" if i["per_conn"] is None else
                          f"{fmt_bytes(i['per_conn'])} {pm(i['per_conn'] <= 16 * KIB)}")])
        L.append("## Memory: idle keep-alive connections (hello app)\n")
        L.append(f"{meta['mem_idle']:,} connections opened by a Python client, one request on "
                 "each, then left idle; RSS 2 s later minus RSS before, / connections still "
                 "open. Every server got its idle keep-alive timeout set high (see the "
                 "commands above). Goal ≤ 16 KiB per connection.\n")
        L.append(_table(["server", "alive / opened", "RSS before", "RSS with idle conns",
                         "per idle connection"], rows))
        L.append("")
    return "\n".join(L) + "\n"


def chart(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = res["meta"]["servers_run"]
    perf = res["perf"]
    scens = [s for s in ("ka64", "ka1", "close16") if any(s in perf[c] for c in perf)]
    if not scens:
        return
    colors = {"ferrule": "#d9480f", "granian": "#1971c2", "uvicorn": "#2f9e44",
              "hypercorn": "#7048e8", "nginx": "#868e96"}
    fig, axes = plt.subplots(len(scens), 1, figsize=(13, 4.2 * len(scens)), squeeze=False)
    width = 0.8 / max(1, len(servers))
    for ax, scen in zip(axes[:, 0], scens):
        cases = [c for c in perf if scen in perf[c]]
        for j, s in enumerate(servers):
            xs, ys = [], []
            for i, c in enumerate(cases):
                v = median(perf[c][scen].get(s, []), "rps")
                if v:
                    xs.append(i + (j - (len(servers) - 1) / 2) * width)
                    ys.append(v)
            bars = ax.bar(xs, ys, width, label=s, color=colors.get(s))
            for b, y in zip(bars, ys):
                ax.text(b.get_x() + b.get_width() / 2, y, f"{y / 1000:.1f}k", ha="center",
                        va="bottom", fontsize=7)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases)
        ax.set_ylabel("req/s (median)")
        ax.set_title(SCENARIO_TITLES[scen].replace("`", ""))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"ferrule benchmarks {res['meta']['date']}"
                 + (" (quick run)" if res["meta"]["quick"] else "")
                 + f" — median of {res['meta']['repeat']}, server on 1 pinned core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
