"""hello: a 13-byte text/plain body, one start message and one body message."""
from _lifespan import lifespan

BODY = b"Hello, world!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", b"13"),
    ],
}
BODY_MSG = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        await send(BODY_MSG)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
