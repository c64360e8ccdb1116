"""Driver: stock asyncio (or uvloop) loop + the eventfd bridge.

    python serve.py --port 8001 [--loop asyncio|uvloop] [--drain py|rust] [--stats FILE]

SIGUSR1 writes the bridge's counters (JSON) to --stats and resets them.
"""
import argparse
import asyncio
import importlib
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eventfd_bridge import Server  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--drain", choices=["py", "rust"], default="py")
    ap.add_argument("--app", default="app:app")
    ap.add_argument("--stats", default=None)
    ap.add_argument("--sched-batch", action="store_true",
                    help="SCHED_BATCH for both threads: no wake-up preemption between them")
    a = ap.parse_args()

    if a.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    asyncio.set_event_loop(loop)

    mod, _, attr = a.app.partition(":")
    app = getattr(importlib.import_module(mod), attr)
    create_task = loop.create_task
    if a.sched_batch:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # this (loop) thread
    server = Server(a.host, a.port, app, create_task, a.sched_batch)

    if a.drain == "rust":
        drain = server.dispatch
    else:
        take_batch = server.take_batch

        def drain():
            # eventfd read + queue swap + scope dicts happen in take_batch
            for req, scope in take_batch():
                create_task(app(scope, req.receive, req.send))

    loop.add_reader(server.eventfd, drain)

    def dump():
        st = server.stats()
        server.reset_stats()
        if a.stats:
            with open(a.stats + ".tmp", "w") as f:
                json.dump(st, f)
            os.replace(a.stats + ".tmp", a.stats)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    print(f"eventfd bridge on http://{a.host}:{a.port} loop={a.loop} drain={a.drain} "
          f"sched_batch={a.sched_batch}",
          flush=True)
    try:
        loop.run_forever()
    finally:
        dump()


if __name__ == "__main__":
    main()
