"""seed: 15 response headers and the 4-byte body ``pong``.

Headers: Content-Type, Content-Length (4), Server, Date, Last-Modified, ETag,
X-Foo1..X-Foo9. Sent as a start message, then a separate body message.
"""
import time
from email.utils import formatdate

from _lifespan import lifespan

_date_cache = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


STATIC = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"4"),
    (b"server", b"seed"),
]
TAIL = [
    (b"last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
    (b"etag", b'"pong-4"'),
] + [(b"x-foo%d" % i, b"bar%d" % i) for i in range(1, 10)]
BODY_MSG = {"type": "http.response.body", "body": b"pong"}


async def app(scope, receive, send):
    if scope["type"] == "http":
        headers = STATIC + [(b"date", _date())] + TAIL
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(BODY_MSG)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
