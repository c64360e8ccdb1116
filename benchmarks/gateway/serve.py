"""Serves the example gateway (examples/gateway.py) one way, on 127.0.0.1:PORT.

    python benchmarks/gateway/serve.py ferrule-serve PORT   # AsgiGateway, await server.serve()
    python benchmarks/gateway/serve.py ferrule-run PORT     # AsgiGateway, Server.run()
    python benchmarks/gateway/serve.py hypercorn PORT       # AsgiGateway on hypercorn (asyncio)
    python benchmarks/gateway/serve.py twisted PORT         # rolo's own TwistedGateway

Prints "ready" once it listens; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from examples.gateway import make_gateway  # noqa: E402

# rolo's options, as the example gateway sets them.
FERRULE_OPTIONS: dict[str, Any] = {
    "lifespan": "off",
    "log_level": "warning",
    "access_log": False,
    "request_body_end_event": True,
    "raw_header_names": True,
}


def ferrule_serve(port: int) -> None:
    from rolo.gateway.asgi import AsgiGateway

    from ferrule import Config, Server

    async def main() -> None:
        app = AsgiGateway(make_gateway(), event_loop=asyncio.get_running_loop())
        server = Server(Config(app, port=port, **FERRULE_OPTIONS))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, server, "should_exit", True)
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        print("ready", flush=True)
        await task
        app.close()

    asyncio.run(main())


def ferrule_run(port: int) -> None:
    from rolo.gateway.asgi import AsgiGateway

    from ferrule import Config, Server

    gateway: list[AsgiGateway] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # rolo binds the loop it is built on: build it on the loop run() made.
        if not gateway:
            gateway.append(
                AsgiGateway(make_gateway(), event_loop=asyncio.get_running_loop())
            )
        await gateway[0](scope, receive, send)

    server = Server(Config(app, port=port, **FERRULE_OPTIONS))
    print("ready", flush=True)  # the harness waits for the port as well
    server.run()


def hypercorn_serve(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HConfig
    from rolo.gateway.asgi import AsgiGateway

    async def main() -> None:
        app = AsgiGateway(make_gateway(), event_loop=asyncio.get_running_loop())
        config = HConfig()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        print("ready", flush=True)
        await serve(app, config)  # type: ignore[arg-type]

    asyncio.run(main())


def twisted_serve(port: int) -> None:
    from rolo.serving.twisted import TwistedGateway
    from twisted.internet import reactor

    site = TwistedGateway(make_gateway())
    reactor.listenTCP(port, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


MODES = {
    "ferrule-serve": ferrule_serve,
    "ferrule-run": ferrule_run,
    "hypercorn": hypercorn_serve,
    "twisted": twisted_serve,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](int(sys.argv[2]))
