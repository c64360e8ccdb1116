"""Minimal lifespan handling shared by the raw ASGI benchmark apps.

Every server gets the same apps; answering the lifespan protocol keeps servers
that run it (all of them by default) from logging warnings or taking a
different code path at start-up.
"""


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
