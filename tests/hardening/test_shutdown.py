"""Disconnects and graceful shutdown (issue 4), over real sockets.

* A client that goes away mid-request or mid-stream: the app's receive()
  returns http.disconnect, its next send() raises ClientDisconnected (an
  OSError), and nothing is logged as a traceback.
* ``should_exit``: stop accepting at once, finish in-flight requests (their
  response says ``Connection: close``), close idle keep-alive connections,
  run lifespan shutdown; SSE-style streams end instead of hanging shutdown;
  ``timeout_graceful_shutdown`` cancels what runs too long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterator

import pytest

from _rawhttp import (
    client_disconnected,
    capture_log,
    connect,
    read_response,
    recv_until_eof,
    request,
    rst_close,
    wait_for,
)

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


@pytest.fixture
def error_log() -> Iterator[list[logging.LogRecord]]:
    with capture_log("ferrule.error") as records:
        yield records


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR
    ]


def begin_shutdown(served: Any) -> float:
    served.server.should_exit = True
    return time.monotonic()


def wait_stopped(served: Any, timeout: float) -> float:
    t0 = time.monotonic()
    served.thread.join(timeout)
    assert not served.thread.is_alive(), f"server still running {timeout}s after should_exit"
    assert served.errors == []
    return time.monotonic() - t0


# ---------------------------------------------------------------- disconnects


class DisconnectProbe:
    """Reads the body until http.disconnect, then tries to answer."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.send_error: BaseException | None = None
        self.done = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            while True:
                msg = await receive()
                self.messages.append(msg)
                if msg["type"] == "http.disconnect":
                    break
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"too late"})
            except BaseException as exc:
                self.send_error = exc
                raise  # as a framework would: ferrule must not log it
        finally:
            self.done = True


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_mid_body_gives_app_disconnect_and_send_raises(serve, error_log, how):
    app = DisconnectProbe()
    served = serve(app, lifespan="off")
    sock = connect(served)
    sock.sendall(request("POST", "/up", headers=[("Content-Length", "100")]) + b"x" * 10)
    wait_for(lambda: app.messages, timeout=5)
    rst_close(sock) if how == "rst" else sock.close()
    wait_for(lambda: app.done, timeout=5)
    assert app.messages[0] == {"type": "http.request", "body": b"x" * 10, "more_body": True}
    assert app.messages[-1] == {"type": "http.disconnect"}
    assert isinstance(app.send_error, client_disconnected()), repr(app.send_error)
    assert isinstance(app.send_error, OSError)
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=3)
    time.sleep(0.05)
    assert tracebacks(error_log) == []


def test_disconnect_while_app_waits_after_body(serve, error_log):
    """A GET (empty body, delivered at once); the second receive() waits for
    the disconnect, which the client's close delivers."""
    app = DisconnectProbe()
    served = serve(app, lifespan="off")
    sock = connect(served)
    sock.sendall(request("GET", "/wait"))
    wait_for(lambda: app.messages, timeout=5)
    time.sleep(0.1)
    assert not app.done, "receive() returned before the client went away"
    sock.close()
    wait_for(lambda: app.done, timeout=5)
    assert [m["type"] for m in app.messages] == ["http.request", "http.disconnect"]
    assert isinstance(app.send_error, client_disconnected()), repr(app.send_error)
    time.sleep(0.05)
    assert tracebacks(error_log) == []


def test_disconnect_mid_stream_makes_send_raise_without_traceback(serve, error_log):
    state: dict[str, Any] = {"chunks": 0}

    async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    state["watcher"] = msg
                    return

        watcher = asyncio.ensure_future(watch())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"data: tick\n\n",
                            "more_body": True})
                state["chunks"] += 1
                await asyncio.sleep(0.01)
        except BaseException as exc:
            state["error"] = exc
            raise
        finally:
            await asyncio.wait_for(watcher, 2)

    served = serve(streamer, lifespan="off")
    sock = connect(served)
    sock.sendall(request("GET", "/events"))
    first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: state["chunks"] >= 3, timeout=5)
    sock.close()
    wait_for(lambda: "error" in state, timeout=5)
    assert isinstance(state["error"], client_disconnected()), repr(state["error"])
    assert state.get("watcher") == {"type": "http.disconnect"}
    wait_for(lambda: served.stats()["active_connections"] == 0, timeout=3)
    time.sleep(0.05)
    assert tracebacks(error_log) == []


# ---------------------------------------------------------------- shutdown


class ShutdownApp:
    """Lifespan-aware; ``/slow`` answers after ``delay`` s, anything else at once."""

    def __init__(self, delay: float = 0.6) -> None:
        self.delay = delay
        self.events: list[str] = []
        self.slow_started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/slow":
            self.slow_started = True
            await asyncio.sleep(self.delay)
            self.events.append("slow-done")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_shutdown_finishes_in_flight_request_with_connection_close(serve):
    app = ShutdownApp(delay=0.6)
    served = serve(app, lifespan="on")
    busy = connect(served)
    busy.sendall(request("GET", "/slow"))
    wait_for(lambda: app.slow_started, timeout=5)
    begin_shutdown(served)
    reply = read_response(busy)
    assert (reply.status, reply.body) == (200, b"/slow")
    assert "close" in reply.connection_tokens(), reply.headers
    assert recv_until_eof(busy, 3)[1], "connection left open after a Connection: close response"
    wait_stopped(served, 5)
    assert app.events == ["startup", "slow-done", "shutdown"]


def test_shutdown_closes_idle_keep_alive_connections_at_once(serve):
    app = ShutdownApp(delay=1.5)
    served = serve(app, lifespan="on", timeout_keep_alive=30)
    idle = connect(served)
    idle.sendall(request("GET", "/fast"))
    assert read_response(idle).body == b"/fast"
    busy = connect(served)
    busy.sendall(request("GET", "/slow"))  # keeps the server in shutdown for 1.5 s
    wait_for(lambda: app.slow_started, timeout=5)
    t0 = begin_shutdown(served)
    data, closed = recv_until_eof(idle, 3)
    assert closed and data == b"", data
    assert time.monotonic() - t0 < 0.8, "idle connection waited for the in-flight request"
    assert read_response(busy).status == 200
    wait_stopped(served, 5)


def test_shutdown_refuses_new_connections_at_once(serve):
    app = ShutdownApp(delay=1.5)
    served = serve(app, lifespan="on")
    busy = connect(served)
    busy.sendall(request("GET", "/slow"))
    wait_for(lambda: app.slow_started, timeout=5)
    begin_shutdown(served)
    time.sleep(0.2)  # well before the in-flight request ends
    try:
        late = connect(served, timeout=2)
    except ConnectionRefusedError:
        pass
    else:
        try:
            late.sendall(request("GET", "/late"))
            data, _closed = recv_until_eof(late, 3)
        except OSError:
            data = b""
        finally:
            late.close()
        assert data == b"", f"a connection made after shutdown began was served: {data[:80]!r}"
    assert read_response(busy).body == b"/slow"
    wait_stopped(served, 5)
    assert "/late" not in str(app.events)


def test_pipelined_request_on_busy_connection_is_not_started_after_shutdown(serve):
    """The in-flight response closes the connection: a request pipelined
    behind it is not served (the client retries it elsewhere)."""
    app = ShutdownApp(delay=0.5)
    served = serve(app, lifespan="on")
    busy = connect(served)
    busy.sendall(request("GET", "/slow"))
    wait_for(lambda: app.slow_started, timeout=5)
    begin_shutdown(served)
    busy.sendall(request("GET", "/second"))
    reply = read_response(busy)
    assert reply.body == b"/slow"
    assert "close" in reply.connection_tokens()
    rest, closed = recv_until_eof(busy, 3)
    assert closed and rest == b"", rest
    wait_stopped(served, 5)


def test_sse_stream_ends_at_shutdown_instead_of_hanging(serve):
    """An endless stream that loops until receive() says disconnect; no
    graceful timeout is set, so only the disconnect can end it."""
    state: dict[str, Any] = {"chunks": 0}

    async def sse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        while not gone.is_set():
            await send({"type": "http.response.body", "body": b"data: tick\n\n",
                        "more_body": True})
            state["chunks"] += 1
            try:
                await asyncio.wait_for(gone.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        state["saw_disconnect"] = True
        await watcher
        try:
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass

    served = serve(sse, lifespan="off", timeout_graceful_shutdown=None)
    sock = connect(served)
    sock.sendall(request("GET", "/events"))
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: state["chunks"] >= 3, timeout=5)
    begin_shutdown(served)
    took = wait_stopped(served, 5)
    assert took < 3, f"shutdown took {took:.1f}s with an open SSE stream"
    assert state.get("saw_disconnect"), "the stream's receive() never said http.disconnect"
    assert recv_until_eof(sock, 3)[1], "SSE connection still open after shutdown"


def test_graceful_timeout_cancels_a_request_that_runs_too_long(serve, error_log):
    state: dict[str, Any] = {}

    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        state["started"] = True
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    served = serve(stuck, lifespan="off", timeout_graceful_shutdown=0.5)
    sock = connect(served)
    sock.sendall(request("GET", "/stuck"))
    wait_for(lambda: state.get("started"), timeout=5)
    begin_shutdown(served)
    took = wait_stopped(served, 5)
    assert 0.4 <= took < 2.5, f"stopped after {took:.2f}s with timeout_graceful_shutdown=0.5"
    assert state.get("cancelled"), "the running request was not cancelled"
    data, closed = recv_until_eof(sock, 3)
    assert closed
    assert b"finished" not in data and b" 200 " not in data, data
