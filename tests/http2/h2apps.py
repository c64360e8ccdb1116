"""ASGI apps the HTTP/2 tests serve (run as ``tests.http2.h2apps:<name>`` from the
repository root, by ferrule or by hypercorn)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HELLO = b"Hello, world!"


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """13 bytes for every request; ``/echo`` answers with the request body."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    body = HELLO
    if scope["path"] == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


CHUNK = b"x" * 65536


async def stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Streams 256 MiB in 64 KiB chunks: more than any buffer may hold, so a
    client that never opens its window must be cut off, not buffered for."""
    if scope["type"] != "http" or scope["path"] != "/stream":
        return await hello(scope, receive, send)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for _ in range(4096):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except OSError:
        pass  # the client went away: what the test expects


async def slow(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Answers after a while, so streams stay open (concurrency limits)."""
    import asyncio

    if scope["type"] != "http" or scope["path"] != "/slow":
        return await hello(scope, receive, send)
    await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slow"})
