"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT), served by the same
WebSocket code as over HTTP/1.1: echo, subprotocol, close handshake, the
denial extension, the scope (`wss` and the TLS extension over TLS)."""

from __future__ import annotations

import os
import ssl
import struct
import sys
from typing import Any

import pytest
import trustme

sys.path.insert(0, os.path.dirname(__file__))
from _h2client import H2Client  # noqa: E402

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

scopes: list[dict[str, Any]] = []


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    scopes.append(scope)
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"not you"})
        return
    await send({"type": "websocket.accept", "subprotocol": "chat"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo:" + msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"][::-1]})


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames (unmasked) in `data`."""
    out = []
    i = 0
    while i + 2 <= len(data):
        op = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            n = struct.unpack("!H", data[j : j + 2])[0]
            j += 2
        elif n == 127:
            n = struct.unpack("!Q", data[j : j + 8])[0]
            j += 8
        if j + n > len(data):
            break
        out.append((op, data[j : j + n]))
        i = j + n
    return out


def connect(client: H2Client, path: str, scheme: str = "http") -> int:
    return client.start(
        path,
        method="CONNECT",
        headers=[
            (":protocol", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ],
        end=False,
        scheme=scheme,
    )


def wait_frames(client: H2Client, sid: int, count: int) -> list[tuple[int, bytes]]:
    reply = client.replies[sid]
    while len(parse_frames(reply.body)) < count and not reply.ended:
        if not client.pump():
            break
    return parse_frames(reply.body)


def test_websocket_over_h2c_echoes_and_closes(serve: Any) -> None:
    server = serve(echo, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        assert client.settings_enable_connect_protocol()
        sid = connect(client, "/ws?x=1")
        reply = client.wait_headers(sid)
        assert reply.status == 200
        assert reply.header(b"sec-websocket-protocol") == b"chat"
        assert reply.header(b"sec-websocket-accept") is None
        client.send_data(sid, frame(0x1, b"hello") + frame(0x2, b"abc"))
        frames = wait_frames(client, sid, 2)
        assert frames[:2] == [(0x1, b"echo:hello"), (0x2, b"cba")]
        client.send_data(sid, frame(0x8, struct.pack("!H", 1000)))
        frames = wait_frames(client, sid, 3)
        assert frames[2][0] == 0x8 and frames[2][1][:2] == struct.pack("!H", 1000)
        reply = client.wait(sid)
        assert reply.ended or reply.reset is not None
    finally:
        client.close()
    scope = scopes[-1]
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["path"] == "/ws" and scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["chat"]


def test_websocket_over_h2_denied_gets_the_app_s_response(serve: Any) -> None:
    server = serve(echo, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = connect(client, "/deny")
        reply = client.wait(sid)
    finally:
        client.close()
    assert reply.status == 403 and reply.body == b"not you"


def test_websocket_over_h2_with_tls_is_wss_with_the_tls_extension(
    serve: Any, tmp_path: Any
) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    server = serve(echo, lifespan="off", ssl_certfile=str(cert), ssl_keyfile=str(key))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    client = H2Client("127.0.0.1", server.port, tls=ctx)
    try:
        sid = connect(client, "/secure", scheme="https")
        assert client.wait_headers(sid).status == 200
        client.send_data(sid, frame(0x1, b"x"))
        assert wait_frames(client, sid, 1)[0] == (0x1, b"echo:x")
    finally:
        client.close()
    scope = scopes[-1]
    assert scope["scheme"] == "wss" and "tls" in scope["extensions"]


def test_websockets_off_refuse_extended_connect(serve: Any) -> None:
    server = serve(echo, lifespan="off", ws="none")
    client = H2Client("127.0.0.1", server.port)
    try:
        assert not client.settings_enable_connect_protocol()
    finally:
        client.close()


def test_shutdown_closes_a_websocket_over_h2_with_1012(serve: Any) -> None:
    import threading

    server = serve(echo, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = connect(client, "/ws")
        assert client.wait_headers(sid).status == 200
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        frames = wait_frames(client, sid, 1)
        assert frames and frames[0][0] == 0x8
        assert frames[0][1][:2] == struct.pack("!H", 1012)
        # The client answers the close; the stream and the server end.
        client.send_data(sid, frame(0x8, struct.pack("!H", 1012)))
        client.wait(sid)
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        client.close()


def test_a_reset_before_the_accept_tells_the_app(serve: Any) -> None:
    import threading

    got: list[str] = []
    done = threading.Event()

    async def undecided(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        got.append((await receive())["type"])
        got.append((await receive())["type"])
        done.set()

    server = serve(undecided, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = connect(client, "/ws")
        import time

        time.sleep(0.2)
        client.reset(sid)
        assert done.wait(5)
    finally:
        client.close()
    assert got == ["websocket.connect", "websocket.disconnect"]
