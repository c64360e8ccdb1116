"""Serves an app the embedded way, for callgrind.py --embedded: a stock
asyncio loop made here, ``await Server.serve()`` on it (the engine on a
thread of its own), SIGINT for a graceful stop.

    python benchmarks/checks/serve_embedded.py MODULE:APP PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

from ferrule import Config, Server


async def main(app: str, port: int) -> None:
    server = Server(Config(app, port=port, access_log=False, log_level="warning"))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, setattr, server, "should_exit", True)
    await server.serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
