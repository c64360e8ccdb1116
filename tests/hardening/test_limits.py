"""Limits (issue 4), enforced as bytes arrive, over a real socket: 431 for a
big head or too many fields, 414 for a long target, 413 for a big body (by
Content-Length before the app runs, or as chunked bytes arrive), 503 beyond
``limit_concurrency``, and ``limit_max_requests`` stopping the server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from _rawhttp import (
    Recorder,
    connect,
    exchange,
    read_response,
    recv_until_eof,
    request,
    wait_for,
)

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


def test_head_over_limit_gets_431_and_close(serve):
    app = Recorder()
    served = serve(app, lifespan="off")  # default limit: 64 KiB
    data = request("GET", "/", headers=[("X-Big", "a" * 70_000)])
    reply = exchange(served, data, timeout=3)
    assert reply.status == 431, reply.raw[:200]
    assert reply.closed
    assert app.calls == []


def test_unfinished_head_over_limit_gets_431_before_it_ends(serve):
    """The limit is enforced as bytes arrive: a head that never ends is
    refused once it passes the limit, without waiting for CRLF CRLF."""
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_head_size=4096)
    sock = connect(served)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 8192)  # no end of head
    raw, closed = recv_until_eof(sock, 3)
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:200]
    assert closed
    assert app.calls == []


def test_head_at_limit_is_accepted(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_head_size=4096)
    base = request("GET", "/", headers=[("X-Fill", "")])
    data = request("GET", "/", headers=[("X-Fill", "a" * (4096 - len(base)))])
    assert len(data) == 4096
    sock = connect(served)
    sock.sendall(data)
    assert read_response(sock).status == 200


def test_too_many_header_fields_gets_431_and_close(serve):
    app = Recorder()
    served = serve(app, lifespan="off")  # default: 100 fields
    headers = [(f"X-H{i}", "v") for i in range(101)]  # + Host = 102
    reply = exchange(served, request("GET", "/", headers=headers), timeout=3)
    assert reply.status == 431, reply.raw[:200]
    assert reply.closed
    assert app.calls == []


def test_configured_field_limit_is_exact(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_fields=10)
    sock = connect(served)
    sock.sendall(request("GET", "/", headers=[(f"X-H{i}", "v") for i in range(9)]))  # 10
    assert read_response(sock).status == 200
    reply = exchange(served, request("GET", "/", headers=[(f"X-H{i}", "v") for i in range(10)]))
    assert reply.status == 431, reply.raw[:200]
    assert reply.closed
    assert len(app.calls) == 1


def test_long_target_gets_414_and_close(serve):
    app = Recorder()
    served = serve(app, lifespan="off")  # default: 8192 bytes of target
    reply = exchange(served, request("GET", "/" + "a" * 8192), timeout=3)
    assert reply.status == 414, reply.raw[:200]
    assert reply.closed
    assert app.calls == []


def test_target_limit_is_exact(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_line=100)
    sock = connect(served)
    sock.sendall(request("GET", "/" + "a" * 99))
    assert read_response(sock).status == 200
    reply = exchange(served, request("GET", "/" + "a" * 100))
    assert reply.status == 414, reply.raw[:200]
    assert reply.closed
    assert [c["path"] for c in app.calls] == ["/" + "a" * 99]


def test_unfinished_long_target_gets_414_before_the_line_ends(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_line=100)
    sock = connect(served)
    sock.sendall(b"GET /" + b"a" * 1000)  # request line not finished
    raw, closed = recv_until_eof(sock, 3)
    assert raw.startswith(b"HTTP/1.1 414 "), raw[:200]
    assert closed


def test_content_length_over_body_limit_gets_413_before_the_app_runs(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_body=1000)
    sock = connect(served)
    # only the head: the 413 must not wait for the body
    sock.sendall(request("POST", "/", headers=[("Content-Length", "1001")]))
    raw, closed = recv_until_eof(sock, 3)
    assert raw.startswith(b"HTTP/1.1 413 "), raw[:200]
    assert closed
    assert app.calls == []


def test_content_length_at_body_limit_is_accepted(serve):
    app = Recorder()
    served = serve(app, lifespan="off", limit_request_body=1000)
    sock = connect(served)
    sock.sendall(request("POST", "/", body=b"x" * 1000))
    assert read_response(sock).status == 200
    assert app.body_of(0) == b"x" * 1000


def test_chunked_body_crossing_limit_gets_413_without_reading_it_all(serve):
    """A chunked upload (no length up front) is cut off as bytes arrive: the
    413 arrives while the client is still sending, long before the end."""
    app = Recorder(read_body=True)
    served = serve(app, lifespan="off", limit_request_body=100_000)
    total = 256 * 1024 * 1024
    chunk = b"%x\r\n" % 65536 + b"c" * 65536 + b"\r\n"
    sock = connect(served)
    sock.sendall(request("POST", "/up", headers=[("Transfer-Encoding", "chunked")]))
    sent = [0]
    stop = threading.Event()

    def pump() -> None:
        try:
            while sent[0] < total and not stop.is_set():
                sock.sendall(chunk)
                sent[0] += 65536
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    sock.settimeout(5)
    first = sock.recv(65536)
    sent_at_response = sent[0]
    stop.set()
    assert first.startswith(b"HTTP/1.1 413 "), first[:200]
    assert sent_at_response < 32 * 1024 * 1024, (
        f"413 came only after {sent_at_response} bytes of a 100 kB limit"
    )
    raw, closed = recv_until_eof(sock, 5)
    assert closed
    sender.join(5)
    wait_for(lambda: app.done, timeout=3)
    msgs = app.messages[0]
    assert not [m for m in msgs if m["type"] == "http.request" and not m.get("more_body")]
    assert msgs[-1]["type"] == "http.disconnect"
    assert len(app.body_of(0)) <= 100_000


def test_concurrency_limit_answers_503_beyond_it(serve):
    release = threading.Event()
    started = threading.Event()

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    served = serve(slow_app, lifespan="off", limit_concurrency=1)
    slow = connect(served)
    slow.sendall(request("GET", "/slow"))
    assert started.wait(5)
    t0 = time.monotonic()
    reply = exchange(served, request("GET", "/other"), timeout=3)
    assert reply.status == 503, reply.raw[:200]
    assert reply.closed
    assert time.monotonic() - t0 < 1.0, "503 waited for the slow request"
    release.set()
    first = read_response(slow)
    assert (first.status, first.body) == (200, b"/slow")
    # the slot is free again
    wait_for(lambda: served.stats()["in_flight"] == 0, timeout=3)
    sock = connect(served)
    sock.sendall(request("GET", "/after"))
    assert read_response(sock).body == b"/after"


def test_max_requests_stops_the_server_after_n(serve):
    app = Recorder(read_body=False)
    served = serve(app, lifespan="off", limit_max_requests=3)
    sock = connect(served)
    for i in range(3):
        sock.sendall(request("GET", f"/{i}"))
        reply = read_response(sock)
        assert (reply.status, reply.body) == (200, b"ok")
    served.thread.join(5)
    assert not served.thread.is_alive(), "server still running after limit_max_requests"
    assert served.errors == []
    assert len(app.calls) == 3
    with pytest.raises(OSError):
        fresh = connect(served, timeout=2)
        try:
            fresh.sendall(request("GET", "/4"))
            data, _ = recv_until_eof(fresh, 2)
            if not data:
                raise ConnectionRefusedError("closed without a response")
            pytest.fail(f"server answered after its request limit: {data[:100]!r}")
        finally:
            fresh.close()
