"""Raw ASGI hello world used for every server in the comparison."""

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
BODY = {"type": "http.response.body", "body": b"Hello, world!"}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(START)
    await send(BODY)
