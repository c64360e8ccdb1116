"""WebSockets (RFC 6455, ASGI websocket 2.4): handshake, echo, close, denial.

Clients: the ``websockets`` library (sync client) and raw sockets for what
it will not send.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from _rawhttp import capture_log, wait_for
from _rawhttp import connect as raw_connect
from websockets.sync.client import connect

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


def ws_url(srv: Any, path: str = "/ws") -> str:
    return f"ws://{srv.host}:{srv.port}{path}"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then echoes every message until the client leaves."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


def test_text_and_bytes_messages_echo(serve: Any) -> None:
    srv = serve(echo_app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xff"
        big = os.urandom(300_000)
        ws.send(big)
        assert ws.recv(timeout=5) == big


def test_the_scope_is_a_websocket_scope(serve: Any) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        seen.update(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    srv = serve(app, root_path="/api")
    with connect(
        ws_url(srv, "/chat%20room?x=1"),
        open_timeout=5,
        subprotocols=["one", "two"],  # type: ignore[list-item]
    ) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert seen["type"] == "websocket"
    assert seen["scheme"] == "ws"
    assert seen["http_version"] == "1.1"
    assert seen["path"] == "/api/chat room"
    assert seen["raw_path"] == b"/api/chat%20room"
    assert seen["query_string"] == b"x=1"
    assert seen["root_path"] == "/api"
    assert seen["subprotocols"] == ["one", "two"]
    assert seen["asgi"]["spec_version"] == "2.4"
    assert seen["extensions"] == {"websocket.http.response": {}}
    assert seen["client"][0] == "127.0.0.1" and seen["server"][1] == srv.port
    assert (b"upgrade", b"websocket") in seen["headers"]
    assert "method" not in seen


def test_subprotocol_and_accept_headers_reach_the_client(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": scope["subprotocols"][-1],
                "headers": [(b"x-extra", b"yes"), (b"upgrade", b"nope")],
            }
        )
        await send({"type": "websocket.close", "code": 1000})

    srv = serve(app)
    with connect(
        ws_url(srv), open_timeout=5, subprotocols=["a", "b"]  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "b"
        assert ws.response is not None
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["upgrade"] == "websocket", "ours, not the app's"


def test_close_codes_travel_both_ways(serve: Any) -> None:
    got: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        msg = await receive()
        if msg["type"] == "websocket.receive" and msg.get("text") == "close me":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        got.append(msg)

    srv = serve(app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "asked")
    with connect(ws_url(srv), open_timeout=5) as ws:
        ws.close(code=4002, reason="bye")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == [{"type": "websocket.disconnect", "code": 4002, "reason": "bye"}]


def test_a_close_before_accept_is_a_403(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.close"})

    srv = serve(app)
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(srv), open_timeout=5)
    assert info.value.response.status_code == 403


def test_a_denial_response_is_plain_http_without_upgrade_headers(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")],
            }
        )
        await send(
            {"type": "websocket.http.response.body", "body": b"no ", "more_body": True}
        )
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    srv = serve(app)
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(srv), open_timeout=5)
    resp = info.value.response
    assert resp.status_code == 401
    assert resp.headers["x-why"] == "token"
    assert resp.body == b"no entry"
    assert "upgrade" not in resp.headers
    assert "sec-websocket-accept" not in resp.headers


def handshake(srv: Any, extra: bytes = b"", key: bytes | None = None) -> socket.socket:
    sock = raw_connect(srv)
    key = key if key is not None else base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n"
    )
    return sock


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_a_bad_key_is_400_and_another_version_426(serve: Any) -> None:
    srv = serve(echo_app)
    sock = handshake(srv, b"Sec-WebSocket-Version: 13\r\n", key=b"short")
    assert read_head(sock).startswith(b"HTTP/1.1 400 ")
    sock.close()
    sock = handshake(srv, b"Sec-WebSocket-Version: 8\r\n")
    head = read_head(sock)
    assert head.startswith(b"HTTP/1.1 426 ")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in head
    sock.close()
    # A control byte in a header value is refused as on any request.
    sock = handshake(srv, b"Sec-WebSocket-Version: 13\r\nX-Bad: a\x01b\r\n")
    assert read_head(sock).startswith(b"HTTP/1.1 400 ")
    sock.close()


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bool = True
) -> bytes:
    first = (0x80 if fin else 0) | opcode
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    first, second = exact(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exact(8))
    return first & 0x0F, exact(n)


def open_raw(srv: Any) -> socket.socket:
    sock = handshake(srv, b"Sec-WebSocket-Version: 13\r\n")
    assert read_head(sock).startswith(b"HTTP/1.1 101 ")
    return sock


def test_fragments_and_a_ping_between_them(serve: Any) -> None:
    srv = serve(echo_app)
    sock = open_raw(srv)
    sock.sendall(
        client_frame(0x1, b"Hel", fin=False)
        + client_frame(0x9, b"ping!")
        + client_frame(0x0, b"lo")
    )
    assert read_frame(sock) == (0xA, b"ping!")
    assert read_frame(sock) == (0x1, b"Hello")
    sock.sendall(client_frame(0x8, struct.pack("!H", 1000)))
    assert read_frame(sock) == (0x8, struct.pack("!H", 1000))
    sock.close()


def test_ws_none_gives_the_app_a_plain_http_request(serve: Any) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        seen.append(scope["type"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no ws"})

    srv = serve(app, ws="none")
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(srv), open_timeout=5)
    assert info.value.response.status_code == 404
    assert seen == ["http"]


def test_a_small_message_leaves_in_one_write(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            # Three messages without an await between them: one write.
            for i in range(3):
                await send({"type": "websocket.send", "text": f"{msg['text']}{i}"})

    srv = serve(app, ws_per_message_deflate=False)
    with connect(ws_url(srv), open_timeout=5, compression=None) as ws:
        ws.send("warm")
        assert [ws.recv(timeout=5) for _ in range(3)] == ["warm0", "warm1", "warm2"]
        before = srv.stats()["write_syscalls"]
        for n in range(20):
            ws.send(f"m{n}")
            assert [ws.recv(timeout=5) for _ in range(3)] == [
                f"m{n}{i}" for i in range(3)
            ]
        assert srv.stats()["write_syscalls"] - before == 20


def test_after_the_client_closed_send_raises_and_close_is_a_no_op(serve: Any) -> None:
    outcome: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        outcome["msg"] = await receive()
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            outcome["send"] = exc
        await send({"type": "websocket.close"})
        outcome["closed"] = True
        outcome["again"] = await receive()

    srv = serve(app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        ws.close(code=1001)
    deadline = time.monotonic() + 5
    while "again" not in outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome["msg"] == {
        "type": "websocket.disconnect",
        "code": 1001,
        "reason": "",
    }
    assert type(outcome["send"]).__name__ == "ClientDisconnected"
    assert outcome["closed"] is True
    assert outcome["again"]["type"] == "websocket.disconnect"


def test_messages_out_of_order_raise(serve: Any) -> None:
    errors: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        for bad in [
            {"type": "websocket.send", "text": "before accept"},
            {"type": "websocket.http.response.body", "body": b""},
        ]:
            try:
                await send(bad)
            except RuntimeError as exc:
                errors.append(str(exc))
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.accept"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "websocket.close"})
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except RuntimeError as exc:
            errors.append(str(exc))

    srv = serve(app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert len(errors) == 4, errors
    assert all(e.startswith("Unexpected ASGI message 'websocket.") for e in errors)


def test_handshake_outcomes_are_logged_as_uvicorn_does(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    with capture_log("ferrule.error", logging.INFO) as records:
        srv = serve(app)
        with connect(ws_url(srv, "/yes?a=1"), open_timeout=5) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        with pytest.raises(InvalidStatus):
            connect(ws_url(srv, "/no"), open_timeout=5)
        wait_for(lambda: sum("WebSocket" in r.getMessage() for r in records) >= 2)
    lines = [r.getMessage() for r in records if "WebSocket" in r.getMessage()]
    assert lines[0].endswith(' - "WebSocket /yes?a=1" [accepted]'), lines
    assert lines[1].endswith(' - "WebSocket /no" 403'), lines
    assert lines[0].startswith("127.0.0.1:")


def test_a_trusted_proxys_https_makes_the_scheme_wss(serve: Any) -> None:
    schemes: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        schemes.append(scope["scheme"])
        await receive()
        await send({"type": "websocket.close"})

    srv = serve(app, proxy_headers=True, forwarded_allow_ips="*")
    for proto in ["https", "http"]:
        with pytest.raises(InvalidStatus):
            connect(
                ws_url(srv),
                open_timeout=5,
                additional_headers={"X-Forwarded-Proto": proto},
            )
    assert schemes == ["wss", "ws"]


def test_an_invalid_close_code_from_the_app_raises_and_nothing_is_sent(
    serve: Any,
) -> None:
    bad_codes = [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 70000]
    errors: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        for code in bad_codes:
            try:
                await send({"type": "websocket.close", "code": code})
            except ValueError as exc:
                errors.append(str(exc))
        await send({"type": "websocket.close", "code": 4000})

    srv = serve(app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4000
    assert len(errors) == len(bad_codes), errors
    for code, message in zip(bad_codes, errors):
        assert str(code) in message, message


def test_deflate_uses_12_bit_windows_both_ways_when_the_client_lets_us(
    serve: Any,
) -> None:
    srv = serve(echo_app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        assert ws.response is not None
        agreed = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "server_max_window_bits=12" in agreed, agreed
        assert "client_max_window_bits=12" in agreed, agreed
        # Repeats farther apart than 4 KiB, and context across messages.
        chunk = os.urandom(3000).hex()
        for n in range(1, 4):
            ws.send(chunk * n)
            assert ws.recv(timeout=5) == chunk * n
