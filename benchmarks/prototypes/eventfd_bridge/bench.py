"""Benchmark the eventfd-bridge prototype against uvicorn, same app, same session.

    python bench.py [--duration 10] [--runs 3] [--only NAME,...] [--out results.json]

Server pinned to CPU 0 (taskset -c 0), wrk pinned to CPU 1. All servers run at
once and runs are interleaved round-robin (noise hits all alike); a run during
which other tenants used > --noise of the two cores is retried. For each server and
for 64 and 1 keep-alive connections: one warm-up, `runs` measured wrk runs
(median reported), one run under `perf stat` (syscalls + context switches,
counted in-kernel, little distortion) and one short run under `strace -f -c`
(per-syscall breakdown; ptrace slows the server a lot, so its count is
reported separately). CPU time from /proc/<pid>/stat (utime+stime, all
threads) and per thread from /proc/<pid>/task/*/stat.
"""
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
PY = sys.executable
BIN = os.path.dirname(PY)
TCK = os.sysconf("SC_CLK_TCK")

SERVERS = {
    "bridge-asyncio-pydrain": [PY, "serve.py", "--loop", "asyncio", "--drain", "py"],
    "bridge-asyncio-rustdrain": [PY, "serve.py", "--loop", "asyncio", "--drain", "rust"],
    "bridge-uvloop-pydrain": [PY, "serve.py", "--loop", "uvloop", "--drain", "py"],
    "bridge-uvloop-rustdrain": [PY, "serve.py", "--loop", "uvloop", "--drain", "rust"],
    "bridge-asyncio-pydrain-schedbatch": [PY, "serve.py", "--loop", "asyncio", "--drain", "py",
                                          "--sched-batch"],
    "bridge-uvloop-pydrain-schedbatch": [PY, "serve.py", "--loop", "uvloop", "--drain", "py",
                                         "--sched-batch"],
    "uvicorn-uvloop-httptools": [os.path.join(BIN, "uvicorn"), "app:app", "--loop", "uvloop",
                                 "--http", "httptools", "--no-access-log", "--log-level",
                                 "warning", "--host", "127.0.0.1"],
}


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_busy():
    """Busy ticks of cpu0 and cpu1 from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(("cpu0 ", "cpu1 ")):
                p = [int(x) for x in line.split()[1:]]
                idle = p[3] + p[4]
                out[line.split()[0]] = sum(p[:8]) - idle
    return out


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TCK  # utime + stime (fields 14, 15)


def thread_cpu(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except FileNotFoundError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        rest = s.rsplit(")", 1)[1].split()
        t = (int(rest[11]) + int(rest[12])) / TCK
        out[name] = out.get(name, 0.0) + t
    return out


def to_us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    x = float(m.group(1))
    return x * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]


def parse_wrk(out):
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[key] = to_us(m.group(1)) if m else None
    m = re.search(r"Socket errors: (.*)", out)
    r["socket_errors"] = m.group(1) if m else ""
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def wrk(port, conns, duration):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}/"]
    p = sh(cmd)
    return parse_wrk(p.stdout), p.stdout


def wait_port(port, timeout=10):
    t = time.time() + timeout
    while time.time() < t:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not up")


def bridge_stats(pid, path):
    if not path:
        return None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR1)
    for _ in range(50):
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        time.sleep(0.05)
    return None


def others_busy(pids, secs=1.0):
    """Fraction of cpu0+cpu1 used by processes other than ours over `secs`."""
    b0 = cpu_busy()
    c0 = sum(proc_cpu(p) for p in pids)
    time.sleep(secs)
    b1 = cpu_busy()
    c1 = sum(proc_cpu(p) for p in pids)
    return max(0.0, (sum(b1.values()) - sum(b0.values())) / TCK - (c1 - c0)) / (2 * secs)


def wrk_run(pid, port, conns, duration, stats_path):
    """One measured wrk run with CPU accounting and noise indicators."""
    bridge_stats(pid, stats_path)  # reset counters
    load = loadavg()
    c0, tc0, b0 = proc_cpu(pid), thread_cpu(pid), cpu_busy()
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}/"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, _, ru = os.wait4(p.pid, 0)
    c1, tc1, b1 = proc_cpu(pid), thread_cpu(pid), cpu_busy()
    r = parse_wrk(out)
    r["load1_before"] = load
    r["cpu_s"] = c1 - c0
    r["cpu_us_per_req"] = (c1 - c0) / r["requests"] * 1e6
    r["thread_cpu_s"] = {k: round(tc1.get(k, 0) - tc0.get(k, 0), 2) for k in tc1}
    busy = {k: (b1[k] - b0[k]) / TCK for k in b1}
    # busy time on our two cores not spent in the server / in wrk = other tenants
    r["cpu0_other_s"] = round(busy["cpu0"] - r["cpu_s"], 2)
    r["cpu1_other_s"] = round(busy["cpu1"] - (ru.ru_utime + ru.ru_stime), 2)
    r["bridge"] = bridge_stats(pid, stats_path)
    return r


def perf_run(name, pid, port, conns, duration, stats_path):
    """perf stat: in-kernel counting of syscalls and context switches (all threads)."""
    perf_out = f"/tmp/perf-{name}-{conns}.txt"
    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", perf_out, "-e",
                             "raw_syscalls:sys_enter,context-switches,cpu-migrations",
                             "-p", str(pid)])
    time.sleep(0.3)
    bridge_stats(pid, stats_path)
    r, _ = wrk(port, conns, duration)
    pbridge = bridge_stats(pid, stats_path)
    perf.send_signal(signal.SIGINT)
    perf.wait()
    counts = {}
    with open(perf_out) as f:
        for line in f:
            p = line.strip().split(",")
            if len(p) > 2 and p[0].replace(".", "").isdigit():
                counts[p[2]] = float(p[0])
    res = {"rps": r["rps"], "requests": r["requests"], "counts": counts,
           "syscalls_per_req": counts.get("raw_syscalls:sys_enter", 0) / r["requests"],
           "ctxsw_per_req": counts.get("context-switches", 0) / r["requests"],
           "bridge": pbridge}
    print(f"  [{name} c{conns} perf] {r['rps']:.0f} req/s, "
          f"{res['syscalls_per_req']:.2f} syscalls/req, "
          f"{res['ctxsw_per_req']:.2f} ctx-switches/req", flush=True)
    return res


def strace_run(name, pid, port, conns):
    """strace -f -c: per-syscall breakdown (ptrace perturbs timing heavily)."""
    st_out = f"/tmp/strace-{name}-{conns}.txt"
    st = subprocess.Popen(["strace", "-f", "-c", "-o", st_out, "-p", str(pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r, _ = wrk(port, conns, 3)
    time.sleep(0.2)
    st.send_signal(signal.SIGINT)
    st.wait()
    with open(st_out) as f:
        text = f.read()
    calls = {}
    total = 0
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 5 and p[0][0].isdigit() and not line.startswith("-"):
            n = int(p[3])
            if p[-1] == "total":
                total = n
            else:
                calls[p[-1]] = n
    res = {"rps": r["rps"], "requests": r["requests"], "total": total,
           "per_req": total / max(r["requests"], 1),
           "calls_per_req": {k: round(v / max(r["requests"], 1), 3)
                             for k, v in sorted(calls.items(), key=lambda x: -x[1])}}
    print(f"  [{name} c{conns} strace] {r['rps']:.0f} req/s under strace, "
          f"{res['per_req']:.2f} syscalls/req {res['calls_per_req']}", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--conns", default="64,1")
    ap.add_argument("--noise", type=float, default=0.05,
                    help="retry a run when other tenants used more than this fraction of "
                         "the two cores (cpu0+cpu1) during it")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--clean", type=int, default=0,
                    help="instead of runs+retries: keep going round-robin until every "
                         "server has this many clean runs (waiting for quiet moments)")
    ap.add_argument("--max-minutes", type=float, default=45)
    ap.add_argument("--no-counts", action="store_true", help="skip the perf/strace runs")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    a = ap.parse_args()
    names = [n for n in SERVERS if not a.only or n in a.only.split(",")]
    conns_list = [int(c) for c in a.conns.split(",")]
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "uname": os.uname().release,
               "nproc": os.cpu_count(), "duration": a.duration, "servers": {}}
    # All servers up at once (idle ones sleep in epoll), runs interleaved
    # round-robin so that load from other tenants hits every server alike.
    procs = {}
    ports = {}
    stats_paths = {}
    try:
        for i, name in enumerate(names):
            port = 8041 + i
            cmd = SERVERS[name] + ["--port", str(port)]
            sp = f"/tmp/bridge-stats-{port}.json" if name.startswith("bridge") else None
            if sp:
                cmd += ["--stats", sp]
            procs[name] = subprocess.Popen(["taskset", "-c", "0"] + cmd, cwd=HERE,
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            ports[name], stats_paths[name] = port, sp
        for name in names:
            wait_port(ports[name])
            for c in conns_list:
                wrk(ports[name], c, 2)  # warm-up
            results["servers"][name] = {f"c{c}": {"conns": c, "runs": []} for c in conns_list}
        if a.clean:
            deadline = time.time() + a.max_minutes * 60
            pids = [p.pid for p in procs.values()]
            todo = [(n, c) for c in conns_list for n in names]
            nclean = {k: 0 for k in todo}
            while any(nclean[k] < a.clean for k in todo) and time.time() < deadline:
                for name, c in todo:
                    if nclean[(name, c)] >= a.clean or time.time() >= deadline:
                        continue
                    while time.time() < deadline:
                        ob = others_busy(pids)
                        if ob < a.noise:
                            break
                        print(f"  (others use {ob:.0%} of the two cores; waiting)", flush=True)
                        time.sleep(5)
                    r = wrk_run(procs[name].pid, ports[name], c, a.duration, stats_paths[name])
                    r["noisy"] = (r["cpu0_other_s"] + r["cpu1_other_s"]) > a.noise * 2 * a.duration
                    results["servers"][name][f"c{c}"]["runs"].append(r)
                    if not r["noisy"]:
                        nclean[(name, c)] += 1
                    print(f"  [{name} c{c} clean {nclean[(name, c)]}/{a.clean}] "
                          f"{r['rps']:.0f} req/s p50 {r['p50_us']:.0f}us "
                          f"p99 {r['p99_us']:.0f}us cpu {r['cpu_us_per_req']:.1f}us/req "
                          f"load {r['load1_before']:.2f} other cpu0 {r['cpu0_other_s']}s "
                          f"cpu1 {r['cpu1_other_s']}s threads {r['thread_cpu_s']}"
                          + (" NOISY" if r["noisy"] else ""), flush=True)
                    with open(a.out, "w") as f:
                        json.dump(results, f, indent=1)
        else:
            for rnd in range(a.runs):
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for c in conns_list:
                    for name in order:
                        pid = procs[name].pid
                        for attempt in range(a.retries + 1):
                            r = wrk_run(pid, ports[name], c, a.duration, stats_paths[name])
                            r["attempt"] = attempt + 1
                            noisy = (r["cpu0_other_s"] + r["cpu1_other_s"]) > a.noise * 2 * a.duration
                            print(f"  [{name} c{c} round{rnd + 1} try{attempt + 1}] "
                                  f"{r['rps']:.0f} req/s p50 {r['p50_us']:.0f}us "
                                  f"p99 {r['p99_us']:.0f}us cpu {r['cpu_us_per_req']:.1f}us/req "
                                  f"load {r['load1_before']:.2f} other cpu0 {r['cpu0_other_s']}s "
                                  f"cpu1 {r['cpu1_other_s']}s threads {r['thread_cpu_s']}"
                                  + (" NOISY" if noisy else ""), flush=True)
                            if not noisy:
                                break
                        r["noisy"] = noisy
                        results["servers"][name][f"c{c}"]["runs"].append(r)
        for name in names:
            for c in conns_list:
                res = results["servers"][name][f"c{c}"]
                pid = procs[name].pid
                if not a.no_counts:
                    res["perf"] = perf_run(name, pid, ports[name], c, a.duration,
                                           stats_paths[name])
                    res["strace"] = strace_run(name, pid, ports[name], c)
                runs = [x for x in res["runs"] if not x["noisy"]] or res["runs"]
                res["median_of"] = "clean" if runs is not res["runs"] else "all"
                res["n_median"] = len(runs)
                med = lambda k: statistics.median(x[k] for x in runs)  # noqa: E731
                res["median"] = {k: med(k) for k in ("rps", "p50_us", "p99_us",
                                                     "cpu_us_per_req")}
            with open(a.out, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
