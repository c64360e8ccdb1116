"""Timeouts (issue 4) with small values, over a real socket: the total header
deadline (slowloris), the keep-alive idle timeout, the body idle timeout, the
send timeout for a client that stops reading, and timers that are dropped on
every close path (memory stays flat under connections reset right after their
response)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from typing import Any

import pytest

from _rawhttp import (
    client_disconnected,
    Recorder,
    connect,
    read_response,
    recv_until_eof,
    request,
    rss_bytes,
    rst_close,
    wait_for,
)

pytestmark = [pytest.mark.engine, pytest.mark.timeout(40)]


def test_slowloris_head_is_cut_off_by_the_header_deadline(serve):
    """One byte every 0.2 s keeps the connection busy but never completes the
    head: the total header deadline (1 s) closes it anyway."""
    app = Recorder()
    served = serve(app, lifespan="off", timeout_request_header=1.0, timeout_keep_alive=5)
    sock = connect(served)
    payload = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 1000
    t0 = time.monotonic()
    closed_after = None
    sent = 0
    for byte in payload:
        try:
            sock.sendall(bytes([byte]))
            sent += 1
        except OSError:
            closed_after = time.monotonic() - t0
            break
        sock.settimeout(0.2)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            data = b""
        if not data or b"HTTP/1.1 " in data:  # closed, possibly with a 408
            closed_after = time.monotonic() - t0
            if data:
                assert data.startswith(b"HTTP/1.1 408 "), data[:200]
                assert recv_until_eof(sock, 2)[1]
            break
        if time.monotonic() - t0 > 5:
            break
    assert closed_after is not None, f"connection still open after {sent} slow bytes"
    assert 0.8 <= closed_after < 2.0, f"closed after {closed_after:.2f}s (deadline 1 s)"
    assert app.calls == []


def test_header_deadline_is_total_not_idle(serve):
    """A head split in pieces that each arrive well within the deadline is
    still cut off when the whole takes longer than the deadline."""
    served = serve(Recorder(), lifespan="off", timeout_request_header=0.6)
    sock = connect(served)
    t0 = time.monotonic()
    pieces = [b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n",
              b"X-C: 3\r\n", b"X-D: 4\r\n", b"\r\n"]
    answered = b""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break
        time.sleep(0.25)
    answered, closed = recv_until_eof(sock, 2)
    assert closed
    assert b" 200 " not in answered, f"a head that took {time.monotonic() - t0:.1f}s was served"


def test_idle_keep_alive_connection_is_closed_after_timeout(serve):
    served = serve(Recorder(), lifespan="off", timeout_keep_alive=0.5)
    sock = connect(served)
    sock.sendall(request())
    assert read_response(sock).status == 200
    t0 = time.monotonic()
    data, closed = recv_until_eof(sock, 3)
    elapsed = time.monotonic() - t0
    assert closed and data == b""
    assert 0.35 <= elapsed < 1.5, f"idle connection closed after {elapsed:.2f}s (timeout 0.5 s)"
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=2)


def test_keep_alive_timer_restarts_after_each_request(serve):
    served = serve(Recorder(), lifespan="off", timeout_keep_alive=0.6)
    sock = connect(served)
    for _ in range(4):  # 4 x 0.3 s > 0.6 s in total, each gap < 0.6 s
        sock.sendall(request())
        assert read_response(sock).status == 200
        time.sleep(0.3)
    sock.sendall(request())
    assert read_response(sock).status == 200


def test_body_idle_timeout_disconnects_app_and_closes(serve):
    """The client sends half a body and stalls while the app awaits more."""
    app = Recorder(read_body=True)
    served = serve(app, lifespan="off", timeout_request_body=0.5)
    sock = connect(served)
    sock.sendall(request("POST", "/up", headers=[("Content-Length", "100")]) + b"x" * 50)
    t0 = time.monotonic()
    data, closed = recv_until_eof(sock, 3)
    elapsed = time.monotonic() - t0
    assert closed, "connection still open 3 s after the body stalled (timeout 0.5 s)"
    assert elapsed < 2.0
    assert b" 200 " not in data, f"an incomplete upload was answered with success: {data!r}"
    wait_for(lambda: app.done, timeout=3)
    msgs = app.messages[0]
    assert msgs[-1]["type"] == "http.disconnect", msgs
    assert not [m for m in msgs if m["type"] == "http.request" and not m.get("more_body")]
    assert app.body_of(0) == b"x" * 50


def test_body_timeout_does_not_fire_while_bytes_keep_coming(serve):
    app = Recorder(read_body=True)
    served = serve(app, lifespan="off", timeout_request_body=0.4)
    sock = connect(served)
    sock.sendall(request("POST", "/up", headers=[("Content-Length", "6")]))
    for byte in b"abcdef":  # 6 x 0.2 s = 1.2 s in total, idle gaps of 0.2 s
        time.sleep(0.2)
        sock.sendall(bytes([byte]))
    reply = read_response(sock)
    assert reply.status == 200
    assert app.body_of(0) == b"abcdef"


def test_send_timeout_closes_when_client_stops_reading(serve):
    """The app streams a large response; the client never reads. After
    ``timeout_send`` without progress the connection is closed and the app's
    pending/next send() raises ClientDisconnected."""
    outcome: dict[str, Any] = {}
    chunk = b"z" * 65536

    async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        try:
            while sent < 1024 * 1024 * 1024:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            outcome["finished"] = True
        except BaseException as exc:
            outcome["error"] = exc
            outcome["at"] = time.monotonic()
            raise
        finally:
            outcome["sent"] = sent

    served = serve(streamer, lifespan="off", timeout_send=0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((served.host, served.port))
    sock.sendall(request("GET", "/big"))
    t0 = time.monotonic()
    wait_for(lambda: "error" in outcome or "finished" in outcome, timeout=5)
    assert "finished" not in outcome, "the whole 1 GiB went to a client that never read"
    assert isinstance(outcome["error"], client_disconnected()), repr(outcome["error"])
    assert isinstance(outcome["error"], OSError)
    assert outcome["at"] - t0 < 3.0
    # what the client finds: some bytes, then the end, never the whole body
    got = 0
    sock.settimeout(3)
    while True:
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not data:
            break
        got += len(data)
    assert got < 1024 * 1024 * 1024
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=3)
    sock.close()


RESET_CLIENT = r"""
import socket, struct, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(req)
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = s.recv(4096)
        assert chunk, f"connection {i} closed early: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print(n)
"""


def test_memory_flat_when_5000_connections_reset_after_response(serve):
    """Timers and connection state are dropped on the RST close path:
    active_connections returns to 0 and the RSS of this process (which runs
    the server; the clients run in a subprocess) grows < 5 MiB."""
    import subprocess
    import sys

    async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # keeps nothing: any growth is the server's
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    served = serve(ok_app, lifespan="off", timeout_keep_alive=30, timeout_request_header=30)

    def clients(n: int) -> None:
        out = subprocess.run(
            [sys.executable, "-c", RESET_CLIENT, served.host, str(served.port), str(n)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(n)

    clients(1000)  # warm up allocator pools and caches
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=5)
    gc.collect()
    before = rss_bytes()
    stats_before = served.stats()
    clients(5000)
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=5)
    gc.collect()
    after = rss_bytes()
    stats_after = served.stats()
    assert stats_after["responses"] - stats_before["responses"] == 5000
    assert stats_after["connections"] - stats_before["connections"] == 5000
    assert stats_after["in_flight"] == 0
    growth = after - before
    assert growth < 5 * 1024 * 1024, f"RSS grew {growth / 1024 / 1024:.1f} MiB over 5000 resets"


def test_reset_while_app_runs_frees_the_connection(serve):
    """RST during a slow app (and during a pending header read) must also
    release the connection and its timers."""
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    served = serve(slow, lifespan="off")
    for _ in range(50):
        a = connect(served)
        a.sendall(request())
        b = connect(served)
        b.sendall(b"GET / HTTP/1.1\r\nHost:")  # head never finished
        rst_close(a)
        rst_close(b)
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=5)
    wait_for(lambda: served.stats()["in_flight"] == 0, timeout=5)
