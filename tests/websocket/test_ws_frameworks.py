"""Starlette, FastAPI and Quart WebSocket apps, unchanged, against the
``websockets`` client: echo, the subprotocol, close codes, denial.

No ``from __future__ import annotations`` here: FastAPI reads the route's
annotations at run time, and ``WebSocket`` is imported inside the factory."""

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.endpoints import WebSocketEndpoint
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept(subprotocol="echo")

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            if data == "bye":
                await websocket.close(code=4000)
                return
            await websocket.send_text(f"echo: {data}")

    async def deny(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    return Starlette(
        routes=[WebSocketRoute("/ws", Echo), WebSocketRoute("/deny", deny)]
    )


def fastapi_app() -> Any:
    fastapi = pytest.importorskip("fastapi")
    from fastapi import WebSocket, WebSocketDisconnect

    app = fastapi.FastAPI()
    left: list[int] = []

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_bytes()
                await websocket.send_bytes(data[::-1])
        except WebSocketDisconnect as exc:
            left.append(exc.code)

    app.state.left = left
    return app


def quart_app() -> Any:
    pytest.importorskip("quart")
    from quart import Quart, websocket

    app = Quart(__name__)

    @app.websocket("/ws")
    async def ws() -> None:
        while True:
            data = await websocket.receive()
            await websocket.send(f"quart: {data}")

    return app


def url(srv: Any, path: str = "/ws") -> str:
    return f"ws://{srv.host}:{srv.port}{path}"


def test_a_starlette_websocket_endpoint_echoes_and_closes(serve: Any) -> None:
    srv = serve(starlette_app())
    with connect(url(srv), open_timeout=5, subprotocols=["echo"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "echo"
        for word in ["a", "héllo", "x" * 70_000]:
            ws.send(word)
            assert ws.recv(timeout=5) == f"echo: {word}"
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    with pytest.raises(InvalidStatus) as denied:
        connect(url(srv, "/deny"), open_timeout=5)
    assert denied.value.response.status_code == 403


def test_a_fastapi_websocket_route_echoes_bytes(serve: Any) -> None:
    app = fastapi_app()
    srv = serve(app)
    with connect(url(srv), open_timeout=5) as ws:
        ws.send(b"abc")
        assert ws.recv(timeout=5) == b"cba"
        ws.close(code=1001)
    import time

    deadline = time.monotonic() + 5
    while not app.state.left and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.left == [1001]


def test_a_quart_websocket_echoes(serve: Any) -> None:
    srv = serve(quart_app(), lifespan="on")
    with connect(url(srv), open_timeout=5) as ws:
        for word in ["one", "two"]:
            ws.send(word)
            assert ws.recv(timeout=5) == f"quart: {word}"
