"""big: a 10,000-byte body with Content-Length."""
from _lifespan import lifespan

BODY = (b"0123456789abcdef" * 625)[:10_000]
assert len(BODY) == 10_000
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"10000"),
    ],
}
BODY_MSG = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        await send(BODY_MSG)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
