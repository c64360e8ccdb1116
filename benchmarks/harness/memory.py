"""Memory: RSS growth from 1,000 to N requests, and RSS per idle keep-alive
connection (hello app, fresh server)."""
from __future__ import annotations

import math
import time

from . import client
from .loadgen import wrk
from .util import fmt_bytes, log, tree_rss_bytes


def _requests_until(port: int, total: int, conns: int = 64) -> dict:
    """About `total` requests by wrk (64 connections). wrk's thread stops at
    the count (lua), but wrk itself still waits out -d, so the load is sent
    in short runs sized from the rate seen so far."""
    done, rate, runs = 0, None, 0
    while done < total and runs < 1000:
        left = total - done
        d = 1 if rate is None else max(1, min(10, math.ceil(left / rate) + 1))
        r = wrk(port, "/", conns, d, lua="stop_after.lua",
                env_extra={"WRK_STOP_AFTER": str(left)}, timeout_s=10)
        runs += 1
        if not r["requests"]:
            raise RuntimeError("wrk made no request: " + r.get("wrk_output", ""))
        done += r["requests"]
        rate = max(rate or 0, r["requests"] / d)
    return {"requests": done}


def check(running, n_small: int, n_large: int, n_idle: int) -> dict:
    port, pid = running.port, running.pid
    out: dict = {"n_small": n_small, "n_large": n_large}
    out["rss_start"] = tree_rss_bytes(pid)
    r = _requests_until(port, n_small)
    time.sleep(0.5)
    out["rss_small"] = tree_rss_bytes(pid)
    out["done_small"] = r["requests"]
    r = _requests_until(port, n_large - r["requests"])
    time.sleep(0.5)
    out["done_large"] = out["done_small"] + r["requests"]
    out["rss_large"] = tree_rss_bytes(pid)
    out["growth"] = out["rss_large"] - out["rss_small"]
    log(f"  mem  {running.server.name:9s} rss after {out['done_small']:,} req: "
        f"{fmt_bytes(out['rss_small'])}, after {out['done_large']:,}: "
        f"{fmt_bytes(out['rss_large'])} (growth {fmt_bytes(out['growth'])})")

    # idle keep-alive connections
    time.sleep(0.5)
    base = tree_rss_bytes(pid)
    socks, failures, took = client.open_idle_connections(port, n_idle)
    time.sleep(2.0)
    rss = tree_rss_bytes(pid)
    alive = client.count_alive(socks)
    out["idle"] = {"target": n_idle, "opened": len(socks), "failures": failures,
                   "alive": alive, "rss_base": base, "rss_idle": rss,
                   "open_seconds": round(took, 1),
                   "per_conn": (rss - base) / alive if alive else None}
    for s in socks:
        s.close()
    log(f"  idle {running.server.name:9s} {alive:,}/{n_idle:,} idle connections alive "
        f"({failures} failed, {took:.1f} s): rss {fmt_bytes(base)} -> {fmt_bytes(rss)}, "
        f"{fmt_bytes(out['idle']['per_conn'])} per connection")
    return out
