"""--interface wsgi: the worker queue under clients that leave, shutdown's
abort, and wsgi.input shared between threads; real server, raw sockets."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from _rawhttp import capture_log, connect, fetch, read_response, request, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "http2"))
from _h2client import H2Client  # noqa: E402

pytestmark = [pytest.mark.timeout(60), pytest.mark.engine]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

# src/bridge/wsgi.rs QUEUE_PER_THREAD: queued requests allowed per thread.
QUEUE_PER_THREAD = 128


@dataclass
class Blocked:
    """A server with one WSGI thread, held by a /block request until
    :meth:`release`; ``calls`` records the path of each app call."""

    served: Any
    calls: list[str]
    gate: threading.Event
    sock: socket.socket

    def release(self) -> None:
        self.gate.set()
        assert read_response(self.sock).body == b"/block"
        self.sock.close()


def start_blocked(serve: Any) -> Blocked:
    calls: list[str] = []
    gate = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        path = environ["PATH_INFO"]
        calls.append(path)
        if path == "/block":
            gate.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path.encode()]

    served = serve(app, interface="wsgi", wsgi_threads=1)
    sock = connect(served)
    sock.sendall(request(target="/block"))
    wait_for(lambda: calls == ["/block"])
    return Blocked(served, calls, gate, sock)


def send_and_leave(served: Any, n: int) -> None:
    """``n`` clients that each send a request and close at once."""
    for i in range(n):
        sock = connect(served)
        sock.sendall(request(target=f"/gone/{i}"))
        sock.close()


def test_requests_of_clients_that_left_are_skipped_and_logged_499(serve: Any) -> None:
    # Before the server starts: it takes the access log only if enabled.
    with capture_log("ferrule.access") as records:
        b = start_blocked(serve)
        send_and_leave(b.served, 20)
        # Every one reached the engine, and the engine saw each client go.
        wait_for(lambda: b.served.stats()["requests"] >= 21)
        wait_for(lambda: b.served.stats()["in_flight"] == 1)
        b.release()
        assert fetch(b.served, "/live").body == b"/live"
        wait_for(lambda: sum(" 499" in r.getMessage() for r in records) == 20)
    # The app ran only for the clients still there.
    assert b.calls == ["/block", "/live"]


def test_requests_of_reset_http2_streams_are_skipped(serve: Any) -> None:
    b = start_blocked(serve)
    client = H2Client("127.0.0.1", b.served.port)
    try:
        for i in range(10):
            client.reset(client.start(f"/reset/{i}"))
        wait_for(lambda: b.served.stats()["requests"] >= 11)
        wait_for(lambda: b.served.stats()["in_flight"] == 1)
        b.release()
        reply = client.request("/live")
    finally:
        client.close()
    assert reply.status == 200 and reply.body == b"/live"
    assert b.calls == ["/block", "/live"]


def test_queue_is_bounded_and_answers_503_when_full(serve: Any) -> None:
    b = start_blocked(serve)
    extra = 10
    send_and_leave(b.served, QUEUE_PER_THREAD + extra)
    engine = b.served.server._engine
    wait_for(lambda: b.served.stats()["requests"] >= 1 + QUEUE_PER_THREAD + extra)
    wait_for(lambda: engine.wsgi_busy() == 1 + QUEUE_PER_THREAD)
    # A full queue answers at once (an unbounded one would queue this too).
    refused = fetch(b.served, "/refused")
    assert refused.status == 503
    assert refused.connection_tokens() == {"close"}
    # Queued (and running) requests stopped at the bound.
    assert engine.wsgi_busy() == 1 + QUEUE_PER_THREAD
    b.release()
    wait_for(lambda: engine.wsgi_busy() == 0)
    assert fetch(b.served, "/live").status == 200
    assert b.calls == ["/block", "/live"]


def test_queued_requests_never_reach_the_app_after_the_grace_expired(
    serve: Any,
) -> None:
    calls: list[str] = []
    entered = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            time.sleep(2.0)  # ignores the shutdown
        start_response("200 OK", [])
        return [b"done"]

    served = serve(app, interface="wsgi", wsgi_threads=1, timeout_graceful_shutdown=0.2)
    slow = connect(served)
    slow.sendall(request(target="/slow"))
    assert entered.wait(5)
    queued = [connect(served) for _ in range(3)]
    for i, sock in enumerate(queued):
        sock.sendall(request(target=f"/queued/{i}"))
    wait_for(lambda: served.server._engine.wsgi_busy() == 4)
    served.stop()
    # run() returned while /slow still sleeps; the worker then finishes it
    # and must not pick up the queued requests.
    time.sleep(1.5)
    for sock in [slow, *queued]:
        sock.close()
    assert calls == ["/slow"]


def test_two_threads_reading_wsgi_input_at_once_do_not_deadlock(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = environ["wsgi.input"]
        parts: list[bytes] = []
        other = threading.Thread(target=lambda: parts.append(body.read(5)))
        other.start()
        parts.append(body.read(5))
        other.join(10)
        start_response("200 OK", [])
        return [b",".join(sorted(parts))]

    served = serve(app, interface="wsgi")
    sock = connect(served, timeout=10)
    sock.sendall(request("POST", headers=[("Content-Length", "10")]))
    # Both readers wait for the body (the first with the input's lock).
    time.sleep(0.3)
    sock.sendall(b"aaaaabbbbb")
    reply = read_response(sock, timeout=10)
    sock.close()
    assert reply.status == 200
    assert reply.body == b"aaaaa,bbbbb"
