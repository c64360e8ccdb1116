"""WebSocket limits and failure modes, with raw frames where the
``websockets`` client would not send them: sizes (1009), a deflate bomb,
invalid UTF-8 (1007), protocol errors (1002), pings and a silent peer
(1011), disconnects, backpressure both ways, shutdown (1012), and many
connections at once."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import threading
import time
import zlib
from typing import Any

import pytest
from _rawhttp import connect as raw_connect
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ferrule._ferrule import ClientDisconnected

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


def ws_url(srv: Any, path: str = "/ws") -> str:
    return f"ws://{srv.host}:{srv.port}{path}"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        key = "text" if msg.get("text") is not None else "bytes"
        await send({"type": "websocket.send", key: msg[key]})


# ------------------------------------------------------------ raw frames


def frame(
    opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False, mask: bool = True
) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        size, "big"
    )
    return head + key + masked


def open_raw(srv: Any, extensions: bytes = b"") -> tuple[socket.socket, bytes]:
    sock = raw_connect(srv)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\n"
        + extensions
        + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, head


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("closed")
            data += chunk
        return data

    first, second = exact(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exact(8))
    return first & 0x0F, exact(n)


def close_code_of(sock: socket.socket) -> int:
    """Reads frames until the server's close frame; returns its code."""
    while True:
        op, payload = read_frame(sock)
        if op == 0x8:
            return int(struct.unpack("!H", payload[:2])[0])


@pytest.mark.parametrize(
    "bad, code",
    [
        (frame(0x1, b"\xce\xba\xff"), 1007),
        (frame(0x1, b"\xce", fin=False) + frame(0x0, b"\xff"), 1007),
        (frame(0x1, b"abc", mask=False), 1002),
        (frame(0x3, b"x"), 1002),
        (frame(0x1, b"x", rsv1=True), 1002),
        (frame(0x0, b"x"), 1002),
        (frame(0x9, b"x" * 126), 1002),
        (frame(0x9, b"x", fin=False), 1002),
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),
        (frame(0x8, struct.pack("!H", 1005)), 1002),
        (frame(0x8, struct.pack("!H", 2999)), 1002),
        (frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1002),
        (frame(0x8, b"\x03"), 1002),
    ],
    ids=[
        "invalid-utf8",
        "invalid-utf8-across-fragments",
        "unmasked",
        "reserved-opcode",
        "rsv1-without-deflate",
        "lone-continuation",
        "big-ping",
        "fragmented-ping",
        "message-inside-message",
        "close-1005",
        "close-2999",
        "close-bad-reason",
        "close-one-byte",
    ],
)
def test_broken_rules_close_with_their_code(serve: Any, bad: bytes, code: int) -> None:
    srv = serve(echo_app, ws_per_message_deflate=False)
    sock, _ = open_raw(srv)
    sock.sendall(bad)
    assert close_code_of(sock) == code
    sock.close()


def test_a_message_over_ws_max_size_is_1009(serve: Any) -> None:
    srv = serve(echo_app, ws_max_size=1000)
    with connect(ws_url(srv), open_timeout=5, max_size=None) as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout=5) == b"x" * 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    # Fragments adding up past the limit too.
    sock, _ = open_raw(srv)
    sock.sendall(frame(0x2, b"x" * 600, fin=False) + frame(0x0, b"x" * 600))
    assert close_code_of(sock) == 1009
    sock.close()


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def test_a_deflate_bomb_is_1009_within_the_limits_memory(serve: Any) -> None:
    srv = serve(echo_app, ws_max_size=1 << 20)
    sock, head = open_raw(srv, b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert b"permessage-deflate" in head.lower()
    # 256 MiB of zeros compress to about 250 KiB: one small frame.
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    body = b"".join(z.compress(chunk) for _ in range(256)) + z.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff") and len(body) < 1 << 20
    before = peak_rss_kib()
    sock.sendall(frame(0x2, body[:-4], rsv1=True))
    assert close_code_of(sock) == 1009
    grown_mib = (peak_rss_kib() - before) / 1024
    assert grown_mib < 64, f"peak RSS grew {grown_mib:.0f} MiB for a 1 MiB limit"
    sock.close()


def test_compressed_messages_echo_with_permessage_deflate(serve: Any) -> None:
    srv = serve(echo_app)
    with connect(ws_url(srv), open_timeout=5) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        for msg in ["a" * 5000, "", "héllo" * 100, "z"]:
            ws.send(msg)
            assert ws.recv(timeout=5) == msg
    srv2 = serve(echo_app, ws_per_message_deflate=False)
    with connect(ws_url(srv2), open_timeout=5) as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers


def test_a_silent_peer_is_pinged_then_closed_with_1011(serve: Any) -> None:
    srv = serve(echo_app, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    sock, _ = open_raw(srv)
    op, _payload = read_frame(sock)
    assert op == 0x9, "a ping first"
    t0 = time.monotonic()
    assert close_code_of(sock) == 1011
    assert time.monotonic() - t0 < 2
    sock.close()
    # A client that answers pings stays connected.
    with connect(ws_url(srv), open_timeout=5) as ws:
        time.sleep(1.0)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_a_client_leaving_mid_stream_ends_the_app_with_disconnect(serve: Any) -> None:
    seen: list[Any] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())
        try:
            for _ in range(1000):
                await send({"type": "websocket.send", "bytes": b"x" * 1000})
                await asyncio.sleep(0.001)
        except OSError as exc:
            seen.append(exc)
        done.set()

    srv = serve(app)
    sock, _ = open_raw(srv)
    sock.sendall(frame(0x1, b"hi"))
    time.sleep(0.1)
    sock.close()
    assert done.wait(10)
    assert seen[0] == {"type": "websocket.receive", "text": "hi"}
    assert seen[1]["type"] == "websocket.disconnect" and seen[1]["code"] == 1006
    assert isinstance(seen[2], ClientDisconnected) and isinstance(seen[2], OSError)


def test_a_client_that_does_not_read_suspends_the_apps_send(serve: Any) -> None:
    progress = {"sent": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 65536})
                progress["sent"] += 1
        except OSError:
            pass

    srv = serve(app, ws_per_message_deflate=False)
    sock, _ = open_raw(srv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    time.sleep(0.5)
    first = progress["sent"]
    time.sleep(0.5)
    assert progress["sent"] == first, "send() goes on while nobody reads"
    assert first * 65536 < 64 << 20, "bounded by the socket buffers, not memory"
    # Reading lets it go on.
    sock.settimeout(5)
    got = 0
    while got < (first + 20) * 65536:
        data = sock.recv(1 << 20)
        assert data
        got += len(data)
    assert progress["sent"] > first
    sock.close()


def test_an_app_that_does_not_receive_stops_the_reading(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(30)

    srv = serve(app, ws_max_queue=4, timeout_graceful_shutdown=1)
    sock, _ = open_raw(srv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.setblocking(False)
    msg = frame(0x2, b"y" * 16384)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            sent += sock.send(msg)
        except BlockingIOError:
            time.sleep(0.2)
            try:
                sent += sock.send(msg)
            except BlockingIOError:
                break
    assert time.monotonic() < deadline, "the server kept reading"
    assert sent < 32 << 20
    sock.close()


def test_shutdown_closes_100_websockets_with_1012_and_stops_promptly(
    serve: Any,
) -> None:
    disconnects: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        msg = await receive()
        while msg["type"] != "websocket.disconnect":
            msg = await receive()
        disconnects.append(msg["code"])

    srv = serve(app, timeout_graceful_shutdown=10)
    codes: list[int | None] = []

    async def clients() -> None:
        conns = [await aconnect(ws_url(srv), open_timeout=10) for _ in range(100)]
        t0 = time.monotonic()
        threading.Thread(target=srv.stop, daemon=True).start()

        async def wait_close(ws: Any) -> None:
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                codes.append(exc.rcvd.code if exc.rcvd else None)

        await asyncio.wait_for(asyncio.gather(*(wait_close(c) for c in conns)), 10)
        assert time.monotonic() - t0 < 5

    asyncio.run(clients())
    assert codes == [1012] * 100
    deadline = time.monotonic() + 5
    while len(disconnects) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert disconnects == [1012] * 100
    srv.thread.join(5)
    assert not srv.thread.is_alive()


def test_1000_concurrent_websockets_each_echo(serve: Any) -> None:
    srv = serve(echo_app, backlog=2048)

    async def one(i: int) -> str:
        async with aconnect(ws_url(srv), open_timeout=20, compression=None) as ws:
            await ws.send(f"n{i}")
            reply = await ws.recv()
            assert isinstance(reply, str)
            return reply

    async def run() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(1000)))

    got = asyncio.run(run())
    assert got == [f"n{i}" for i in range(1000)]
