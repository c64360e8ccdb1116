"""echo: reads the whole request body (the benchmark POSTs 4 KiB) and sends it back."""
from _lifespan import lifespan


async def app(scope, receive, send):
    if scope["type"] == "http":
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
