"""ws_echo: a raw ASGI WebSocket echo app (Autobahn runner and WebSocket benchmark).

Accepts every WebSocket, sends each message back as it came (text as text,
bytes as bytes) and returns on disconnect. A plain HTTP request gets a
200 "ok", so the harness can tell the server is up before it upgrades.
"""
from _lifespan import lifespan


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
    elif kind == "http":
        # Drain the request body so every server sees a complete exchange.
        while (await receive()).get("more_body", False):
            pass
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        })
        await send({"type": "http.response.body", "body": b"ok"})
    elif kind == "lifespan":
        await lifespan(receive, send)
