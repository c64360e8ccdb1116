"""Markdown tables from bench.py output.

    python report.py RUNS.json [COUNTS.json]

RUNS.json gives the wrk runs (medians of clean runs when there are any);
COUNTS.json (optional, default RUNS.json) gives the perf/strace counts.
"""
import json
import statistics
import sys


def agg_bridge(runs):
    agg, thr, reqs = {}, {}, 0
    for x in runs:
        reqs += x["requests"]
        for k, v in x["thread_cpu_s"].items():
            thr[k] = thr.get(k, 0) + v
        for k, v in (x.get("bridge") or {}).items():
            if isinstance(v, list) and v and isinstance(v[0], int):
                agg[k] = [a + b for a, b in zip(agg.get(k, [0] * len(v)), v)]
            elif isinstance(v, int):
                agg[k] = agg.get(k, 0) + v
    return agg, {k: v / reqs * 1e6 for k, v in thr.items()}


def main():
    runs_d = json.load(open(sys.argv[1]))
    counts_d = json.load(open(sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]))
    names = list(runs_d["servers"])
    ref = "uvicorn-uvloop-httptools"
    rows = []
    print("| server | conns | req/s | p50 | p99 | CPU µs/resp | syscalls/resp (perf) "
          "| syscalls/resp (strace) | ctx-sw/resp | req/s ÷ uvicorn | CPU ÷ uvicorn | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in ("c64", "c1"):
        for name in names:
            r = runs_d["servers"][name].get(c)
            if not r or not r["runs"]:
                continue
            clean = [x for x in r["runs"] if not x.get("noisy")]
            use = clean or r["runs"]
            med = {k: statistics.median(x[k] for x in use)
                   for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req")}
            uref = runs_d["servers"].get(ref, {}).get(c)
            if uref and uref["runs"]:
                uu = [x for x in uref["runs"] if not x.get("noisy")] or uref["runs"]
                urps = statistics.median(x["rps"] for x in uu)
                ucpu = statistics.median(x["cpu_us_per_req"] for x in uu)
            else:
                urps = ucpu = None
            cnt = counts_d["servers"].get(name, {}).get(c, {})
            perf = cnt.get("perf", {})
            st = cnt.get("strace", {})
            rows.append((name, c, use))
            print(f"| {name} | {c[1:]} | {med['rps']:,.0f} | {med['p50_us']:.0f} µs "
                  f"| {med['p99_us']:.0f} µs | {med['cpu_us_per_req']:.1f} "
                  f"| {perf.get('syscalls_per_req', float('nan')):.2f} "
                  f"| {st.get('per_req', float('nan')):.2f} "
                  f"| {perf.get('ctxsw_per_req', float('nan')):.2f} "
                  f"| {med['rps'] / urps:.2f} | {med['cpu_us_per_req'] / ucpu:.2f} "
                  f"| {len(clean)} clean / {len(r['runs'])} |")
    print()
    print("| bridge | conns | mean batch | eventfd writes/req | hand-off wait mean "
          "| hand-off wait ≥500 µs | batches of 33-64 | Python thread µs/req "
          "| tokio thread µs/req | drain µs/req | EAGAIN hand-backs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, c, use in rows:
        if not name.startswith("bridge"):
            continue
        agg, thr = agg_bridge(use)
        req, disp = agg["requests"], agg["dispatches"]
        wh, bh = agg["wake_hist"], agg["batch_hist"]
        py = sum(v for k, v in thr.items() if k != "tokio-io")
        print(f"| {name} | {c[1:]} | {req / disp:.1f} | {agg['efd_writes'] / req:.3f} "
              f"| {agg['wake_ns_sum'] / disp / 1000:.1f} µs "
              f"| {100 * sum(wh[8:]) / sum(wh):.0f}% | {100 * bh[6] / sum(bh):.0f}% "
              f"| {py:.1f} | {thr.get('tokio-io', 0):.1f} "
              f"| {agg['take_ns_sum'] / req / 1000:.2f} | {agg['handoffs']} |")
    print()
    print("strace -f -c breakdown (calls per response):")
    print()
    for c in ("c64", "c1"):
        for name in names:
            st = counts_d["servers"].get(name, {}).get(c, {}).get("strace")
            if st:
                top = ", ".join(f"{k} {v}" for k, v in st["calls_per_req"].items() if v >= 0.005)
                print(f"- {name} c{c[1:]}: {top}")


if __name__ == "__main__":
    main()
