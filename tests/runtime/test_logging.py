"""What ferrule logs at debug and trace, and the access log of requests that
did not end the usual way (client gone, stream cut, shutdown)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

import pytest
from _rawhttp import capture_log, connect, fetch, read_response, request, wait_for

pytestmark = pytest.mark.engine


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"hi"})


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def test_debug_logs_each_connection_opened_and_closed_with_its_reason(serve):
    with capture_log("ferrule.error", logging.DEBUG) as records:
        served = serve(hello, lifespan="off", timeout_keep_alive=0.2)
        with connect(served) as sock:
            sock.sendall(request())
            assert read_response(sock).status == 200
            # Idle past the keep-alive timeout: the server closes.
            assert sock.recv(1) == b""
        with connect(served) as sock:
            sock.sendall(request())
            assert read_response(sock).status == 200
        wait_for(
            lambda: len([m for m in messages(records, logging.DEBUG) if "closed" in m])
            >= 2
        )
    debug = messages(records, logging.DEBUG)
    opened = [m for m in debug if "opened from 127.0.0.1:" in m]
    assert len(opened) == 2, debug
    assert any(
        "closed: keep_alive_timeout after 1 request(s)" in m for m in debug
    ), debug
    assert any("closed: client_eof after 1 request(s)" in m for m in debug), debug


def test_debug_logs_refused_requests_with_status_and_why(serve):
    with capture_log("ferrule.error", logging.DEBUG) as records:
        served = serve(hello, lifespan="off", limit_request_body=10)
        assert fetch(served, method="POST", body=b"x" * 100).status == 413
        with connect(served) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01: y\r\n\r\n")
            assert read_response(sock).status == 400
        wait_for(
            lambda: len([m for m in messages(records, logging.DEBUG) if "closed" in m])
            >= 2
        )
    debug = messages(records, logging.DEBUG)
    assert any(
        "refused with 413: Content-Length over --limit-request-body" in m for m in debug
    ), debug
    assert any("malformed request, answered 400" in m for m in debug), debug
    assert any("closed: limit_exceeded" in m for m in debug), debug
    assert any("closed: protocol_error" in m for m in debug), debug


def test_info_level_gets_no_debug_lines(serve):
    with capture_log("ferrule.error", logging.INFO) as records:
        served = serve(hello, lifespan="off")
        assert fetch(served).status == 200
        time.sleep(0.1)
    assert not [r for r in records if r.levelno < logging.INFO]
    assert not [r for r in records if "Connection" in r.getMessage()]


def test_trace_logs_the_scope_and_every_asgi_message(serve):
    with capture_log("ferrule.error", 5) as records:
        served = serve(hello, lifespan="off")
        assert fetch(served, target="/traced?q=1").status == 200
        wait_for(lambda: any("Completed" in r.getMessage() for r in records))
    trace = messages(records, 5)
    started = [m for m in trace if "Started scope=" in m]
    assert (
        started and "'path': '/traced'" in started[0] and "b'q=1'" in started[0]
    ), trace
    assert any(
        "Send {'type': 'http.response.start', 'status': 200" in m for m in trace
    ), trace
    # Bodies are shown by size, never verbatim.
    assert any("'body': '<2 bytes>'" in m for m in trace), trace


# ---------------------------------------------------------------- access log


async def stream_forever(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    while True:
        await send(
            {"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True}
        )
        await asyncio.sleep(0.02)


async def wait_for_disconnect(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass


def test_a_stream_cut_by_its_client_is_logged_with_the_status_and_bytes_sent(serve):
    with capture_log("ferrule.access", logging.INFO) as records:
        served = serve(stream_forever, lifespan="off", access_log=True)
        with connect(served) as sock:
            sock.sendall(request(target="/events"))
            got = b""
            while got.count(b"tick") < 3:
                got += sock.recv(4096)
        wait_for(lambda: records)
    assert len(records) == 1
    line = records[0].getMessage()
    assert '"GET /events HTTP/1.1" 200' in line, line
    sent = int(line.split('" 200 ')[1].split("B")[0])
    assert sent >= 3 * len(b"data: tick\n\n"), line


def test_a_request_whose_client_left_before_any_response_is_logged_499(serve):
    with capture_log("ferrule.access", logging.INFO) as records:
        served = serve(wait_for_disconnect, lifespan="off", access_log=True)
        with connect(served) as sock:
            sock.sendall(request(target="/slow"))
            time.sleep(0.1)
        wait_for(lambda: records)
    assert len(records) == 1
    assert '"GET /slow HTTP/1.1" 499 0B' in records[0].getMessage()


def test_a_stream_told_to_stop_at_shutdown_is_not_an_app_error(serve):
    """An app that listens for http.disconnect (server-sent events) and
    returns when the server says it is stopping did what it was asked."""

    async def sse(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True}
        )
        while (await receive())["type"] != "http.disconnect":
            pass

    with (
        capture_log("ferrule.error", logging.DEBUG) as errors,
        capture_log("ferrule.access", logging.INFO) as access,
    ):
        served = serve(sse, lifespan="off", access_log=True)
        sock = connect(served)
        sock.sendall(request(target="/sse"))
        assert b"data: 1" in sock.recv(4096)
        served.stop()
        sock.settimeout(5)
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
        sock.close()
    assert not [r for r in errors if r.levelno >= logging.ERROR], [
        r.getMessage() for r in errors
    ]
    # The cut stream never looks complete to its client.
    assert not rest.endswith(b"0\r\n\r\n")
    assert any('"GET /sse HTTP/1.1" 200' in r.getMessage() for r in access)


def test_tasks_spawned_by_requests_get_the_grace_then_are_cancelled_and_awaited(serve):
    events: list[str] = []
    keep: set[asyncio.Task] = set()

    async def short():
        await asyncio.sleep(0.3)
        events.append("short finished")

    async def endless():
        try:
            await asyncio.sleep(3600)
        finally:
            events.append("endless cleaned up")

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        keep.add(asyncio.ensure_future(short()))
        keep.add(asyncio.ensure_future(endless()))
        await hello(scope, receive, send)

    served = serve(app, lifespan="off", timeout_graceful_shutdown=1.0)
    assert fetch(served).status == 200
    started = time.monotonic()
    served.stop()
    took = time.monotonic() - started
    assert "short finished" in events, "a spawned task was cut before the grace ended"
    assert (
        "endless cleaned up" in events
    ), "a spawned task was destroyed, not cancelled and awaited"
    assert took < 3.0
    assert all(t.done() for t in keep)


def test_sse_starlette_stops_cleanly(run_cli, tmp_path):
    """The real sse-starlette: no 'returned without completing response' and
    no 'Task was destroyed but it is pending' at a graceful stop."""
    pytest.importorskip("sse_starlette")
    (tmp_path / "sse_app.py").write_text(
        "import asyncio\n"
        "from sse_starlette.sse import EventSourceResponse\n"
        "from starlette.applications import Starlette\n"
        "from starlette.routing import Route\n"
        "async def events(request):\n"
        "    async def gen():\n"
        "        while True:\n"
        "            yield {'data': 'tick'}\n"
        "            await asyncio.sleep(0.05)\n"
        "    return EventSourceResponse(gen())\n"
        "app = Starlette(routes=[Route('/events', events)])\n"
    )
    proc = run_cli("sse_app:app", "--app-dir", str(tmp_path))
    sock = socket.create_connection((proc.host, proc.port), timeout=5)
    sock.sendall(request(target="/events"))
    got = b""
    while b"tick" not in got:
        got += sock.recv(4096)
    status = proc.stop(signal.SIGINT)
    sock.close()
    out = proc.output
    assert "returned without completing" not in out, out
    assert "Task was destroyed" not in out, out
    assert '"GET /events HTTP/1.1" 200' in out, out
    assert status in (0, -signal.SIGINT, 128 + signal.SIGINT), out
