"""Lifespan with the real server: on / off / auto, startup failure, state, shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from ferrule import Config

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


class LifespanApp:
    """Records lifespan events; answers http requests with the state it sees.

    ``startup``: "complete", "failed", "raise" (exception on the lifespan scope)
    or "unsupported" (raises before reading anything, like an app without lifespan).
    """

    def __init__(self, startup: str = "complete", state: dict[str, Any] | None = None,
                 startup_delay: float = 0.0) -> None:
        self.startup = startup
        self.state = state or {}
        self.startup_delay = startup_delay
        self.events: list[str] = []
        self.http_calls = 0
        self.shutdown_saw_requests: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.events.append("lifespan-scope")
            if self.startup == "unsupported":
                raise RuntimeError("no lifespan here")
            message = await receive()
            assert message["type"] == "lifespan.startup"
            self.events.append("startup")
            if self.startup_delay:
                await asyncio.sleep(self.startup_delay)
            if self.startup == "raise":
                raise RuntimeError("startup exploded")
            if self.startup == "failed":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"].update(self.state)
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            self.events.append("shutdown")
            self.shutdown_saw_requests = self.http_calls
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.http_calls += 1
        body = repr(sorted(scope.get("state", {}).items())).encode()
        if scope["path"] == "/slow":
            await asyncio.sleep(0.5)
            body = b"slow done"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def run_server_in_thread(app: Any, **kwargs: Any) -> tuple[Any, threading.Thread, list[Any]]:
    from ferrule.server import Server

    server = Server(Config(app, host="127.0.0.1", port=0, **kwargs))
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(server.run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return server, thread, result


def test_lifespan_on_runs_startup_before_serving_and_exposes_state(serve):
    app = LifespanApp(state={"db": "connected"})
    served = serve(app, lifespan="on")
    assert app.events == ["lifespan-scope", "startup"]
    response = httpx.get(served.url + "/")
    assert response.text == "[('db', 'connected')]"


def test_lifespan_on_runs_shutdown_when_the_server_stops(serve):
    app = LifespanApp()
    served = serve(app, lifespan="on")
    httpx.get(served.url + "/")
    assert "shutdown" not in app.events
    served.stop()
    assert app.events == ["lifespan-scope", "startup", "shutdown"]
    assert app.shutdown_saw_requests == 1


def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope(serve):
    app = LifespanApp(state={"db": "connected"})
    served = serve(app, lifespan="off")
    response = httpx.get(served.url + "/")
    assert response.status_code == 200
    assert response.text == "[]"  # no lifespan state
    served.stop()
    assert app.events == []


def test_lifespan_auto_runs_lifespan_for_an_app_that_supports_it(serve):
    app = LifespanApp(state={"k": "v"})
    served = serve(app, lifespan="auto")
    assert httpx.get(served.url + "/").text == "[('k', 'v')]"
    served.stop()
    assert app.events == ["lifespan-scope", "startup", "shutdown"]


def test_lifespan_auto_serves_an_app_that_raises_on_the_lifespan_scope(serve, error_log):
    app = LifespanApp(startup="unsupported")
    served = serve(app, lifespan="auto")
    response = httpx.get(served.url + "/")
    assert response.status_code == 200
    assert response.text == "[]"
    assert app.events == ["lifespan-scope"]
    # Only a debug line about it, no error and no traceback.
    assert not [r for r in error_log.records if r.levelname in ("ERROR", "CRITICAL")]
    assert any("lifespan" in r.getMessage().lower() and r.levelname == "DEBUG"
               for r in error_log.records)


@pytest.mark.parametrize("failure", ["failed", "raise"])
def test_lifespan_on_startup_failure_makes_run_return_non_zero(failure, error_log):
    app = LifespanApp(startup=failure)
    server, thread, result = run_server_in_thread(app, lifespan="on")
    thread.join(10)
    assert not thread.is_alive(), "run() did not return after a failed startup"
    assert result and isinstance(result[0], int), result
    assert result[0] != 0
    assert server.started is False
    assert app.http_calls == 0
    assert "shutdown" not in app.events


def test_lifespan_startup_failure_does_not_serve_requests(error_log):
    app = LifespanApp(startup="failed", startup_delay=0.5)
    server, thread, result = run_server_in_thread(app, lifespan="on")
    deadline = time.monotonic() + 10
    while server.bound_address is None and thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    if server.bound_address is not None:
        # A client that reaches the listener during startup gets no response.
        host, port = server.bound_address[:2]
        try:
            sock = socket.create_connection((host, port), timeout=3)
        except OSError:
            sock = None
        if sock is not None:
            with sock:
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    sock.settimeout(1.0)  # startup still has ~0.5 s to go
                    data = sock.recv(1024)
                except OSError:
                    data = b""
                assert not data.startswith(b"HTTP/"), data
    thread.join(10)
    assert result and result[0] != 0
    assert app.http_calls == 0
    if server.bound_address is not None:
        # After run() returned nothing listens there any more.
        with pytest.raises(OSError):
            socket.create_connection(server.bound_address[:2], timeout=1).close()


def test_lifespan_auto_startup_failure_is_still_fatal(error_log):
    app = LifespanApp(startup="failed")
    server, thread, result = run_server_in_thread(app, lifespan="auto")
    thread.join(10)
    assert result and result[0] != 0
    assert server.started is False


def test_state_written_during_startup_is_copied_into_each_request(serve):
    seen: list[dict[str, Any]] = []
    shared = {"hits": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["config"] = shared
            scope["state"]["name"] = "svc"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        seen.append(state)
        state["config"]["hits"] += 1  # shallow copy: shared value object
        state["name"] = "changed by request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    served = serve(app, lifespan="on")
    with httpx.Client(base_url=served.url) as client:
        client.get("/")
        client.get("/")
    assert seen[0] is not seen[1]
    assert seen[1]["name"] == "changed by request"
    assert shared["hits"] == 2
    assert seen[0]["config"] is shared


def test_stop_finishes_an_in_flight_response_before_shutdown(serve):
    app = LifespanApp()
    served = serve(app, lifespan="on")
    results: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: results.append(httpx.get(served.url + "/slow", timeout=5))
    )
    thread.start()
    deadline = time.monotonic() + 3
    while app.http_calls == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    served.stop()
    thread.join(5)
    assert results and results[0].status_code == 200
    assert results[0].text == "slow done"
    assert app.events[-1] == "shutdown"


def test_stop_is_prompt_with_an_idle_keep_alive_connection_open(serve, raw_client):
    app = LifespanApp()
    served = serve(app, lifespan="on")
    client = raw_client(served)
    assert client.get("/").status == 200
    started = time.monotonic()
    served.stop()
    assert time.monotonic() - started < 3.0
    assert client.closed_by_server(2.0)
    assert app.events[-1] == "shutdown"
