"""A raw ASGI app answering every request with one fixed body, as a start
message then a body message (messages built once, not per request)."""
from _lifespan import lifespan


def fixed_body_app(body, content_type):
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    body_msg = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send(start)
            await send(body_msg)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    return app
