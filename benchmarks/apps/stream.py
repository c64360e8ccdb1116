"""stream: 10 chunks of 1 KiB without Content-Length (chunked transfer coding).

The last chunk carries ``more_body=False``, so a server can send it together
with the chunked terminator.
"""
from _lifespan import lifespan

CHUNK = b"x" * 1024
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream")],
}
MORE = {"type": "http.response.body", "body": CHUNK, "more_body": True}
LAST = {"type": "http.response.body", "body": CHUNK, "more_body": False}


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        for _ in range(9):
            await send(MORE)
        await send(LAST)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
