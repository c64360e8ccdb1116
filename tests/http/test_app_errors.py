"""What the client sees, and what is logged, when the app fails or the client leaves."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import pytest

from ferrule._ferrule import ClientDisconnected

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


class Boom(Exception):
    pass


def ok_or(fail: Any) -> Any:
    """An app that fails with ``fail(scope, receive, send)`` on /fail and answers
    200 "fine" on every other path."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fail":
            await fail(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    return app


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "ferrule.error" and r.levelno >= logging.ERROR
    ]


async def raise_before_start(scope: Any, receive: Any, send: Any) -> None:
    raise Boom("before start")


async def raise_after_start(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise Boom("after start, before body")


def test_exception_before_response_start_gives_500_with_body_and_content_length(
    serve, raw_client, error_log
):
    served = serve(ok_or(raise_before_start), lifespan="off")
    before = served.stats()
    client = raw_client(served)
    response = client.get("/fail")
    assert response.status == 500
    assert response.framing == "content-length"
    assert response.body, "the 500 should carry a body"
    assert int(response.header("content-length")) == len(response.body)
    assert not response.has_header("transfer-encoding")
    assert served.stats()["app_errors"] - before["app_errors"] == 1


def test_connection_stays_usable_after_a_500(serve, raw_client, error_log):
    served = serve(ok_or(raise_before_start), lifespan="off")
    before = served.stats()
    client = raw_client(served)
    for _ in range(3):
        assert client.get("/fail").status == 500
        response = client.get("/ok")
        assert response.status == 200 and response.body == b"fine"
    assert served.stats()["connections"] - before["connections"] == 1


def test_exception_after_start_but_before_any_body_gives_500(serve, raw_client, error_log):
    served = serve(ok_or(raise_after_start), lifespan="off")
    client = raw_client(served)
    response = client.get("/fail")
    assert response.status == 500
    assert int(response.header("content-length")) == len(response.body) > 0
    assert client.get("/ok").body == b"fine"


def test_app_exception_traceback_is_logged_on_ferrule_error(
    serve, raw_client, error_log, wait_until
):
    served = serve(ok_or(raise_before_start), lifespan="off")
    raw_client(served).get("/fail")
    # The 500 may reach the client just before the record is emitted.
    records = wait_until(lambda: error_records(error_log), timeout=3)
    assert len(records) == 1
    record = records[0]
    assert record.exc_info is not None
    assert record.exc_info[0] is Boom
    assert "before start" in str(record.exc_info[1])
    # caplog stores the record before it writes the formatted traceback
    # (from the server's thread): wait for the text too.
    assert wait_until(lambda: "Boom" in error_log.text, timeout=3)


def test_500_body_does_not_leak_the_exception_message(serve, raw_client, error_log):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        raise Boom("secret-database-password")

    served = serve(ok_or(fail), lifespan="off")
    response = raw_client(served).get("/fail")
    assert response.status == 500
    assert b"secret-database-password" not in response.raw


def test_exception_mid_chunked_stream_closes_without_the_terminator(
    serve, raw_client, error_log
):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0.05)
        raise Boom("mid-stream")

    served = serve(ok_or(fail), lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/fail"))
    raw = client.read_until_eof(timeout=3.0)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"7\r\npartial\r\n" in raw
    assert not raw.endswith(b"0\r\n\r\n"), "a failed stream must not look complete"
    assert b"\r\n0\r\n" not in raw.partition(b"\r\n\r\n")[2]
    assert client.eof


def test_exception_mid_content_length_body_closes_before_the_full_length(
    serve, raw_client, error_log
):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await asyncio.sleep(0.05)
        raise Boom("mid-body")

    served = serve(ok_or(fail), lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/fail"))
    raw = client.read_until_eof(timeout=3.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"x" * 10
    assert client.eof


def test_app_returning_without_a_response_gives_500(serve, raw_client, error_log, wait_until):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        return None

    served = serve(ok_or(fail), lifespan="off")
    client = raw_client(served)
    response = client.get("/fail")
    assert response.status == 500
    assert int(response.header("content-length")) == len(response.body) > 0
    assert client.get("/ok").body == b"fine"
    wait_until(lambda: error_records(error_log), timeout=3)  # logged as an error


def test_app_returning_mid_stream_does_not_look_complete(serve, raw_client, error_log):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        await asyncio.sleep(0.01)

    served = serve(ok_or(fail), lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/fail"))
    raw = client.read_until_eof(timeout=3.0)
    assert b"4\r\nhalf\r\n" in raw
    assert not raw.endswith(b"0\r\n\r\n")


def test_invalid_message_from_the_app_gives_500(serve, raw_client, error_log, wait_until):
    async def fail(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"body before start"})

    served = serve(ok_or(fail), lifespan="off")
    client = raw_client(served)
    assert client.get("/fail").status == 500
    assert client.get("/ok").status == 200
    wait_until(lambda: error_records(error_log), timeout=3)


def test_one_failing_request_does_not_disturb_other_connections(serve, raw_client, error_log):
    served = serve(ok_or(raise_before_start), lifespan="off")
    with httpx.Client(base_url=served.url) as good:
        bad = raw_client(served)
        for _ in range(5):
            assert bad.get("/fail").status == 500
            assert good.get("/ok").text == "fine"


# ------------------------------------------------------- client disconnects


class Streamer:
    """Streams chunks until send() fails; records what send() raised."""

    def __init__(self, reraise: bool) -> None:
        self.reraise = reraise
        self.raised: list[BaseException] = []
        self.done = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await asyncio.sleep(0.005)
        except BaseException as exc:
            self.raised.append(exc)
            if self.reraise:
                raise
        finally:
            self.done.set()


@pytest.mark.parametrize("reraise", [True, False], ids=["propagated", "caught"])
def test_send_after_client_disconnect_raises_client_disconnected(
    serve, raw_client, error_log, reraise, wait_until
):
    app = Streamer(reraise)
    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/"))
    assert client.recv_some(2.0).startswith(b"HTTP/1.1 200 ")
    client.close()
    assert app.done.wait(5), "send() kept succeeding after the client left"
    assert len(app.raised) == 1
    exc = app.raised[0]
    assert isinstance(exc, ClientDisconnected)
    assert isinstance(exc, OSError)
    # Let the runner finish with the app before looking at the log.
    wait_until(lambda: served.stats()["in_flight"] == 0, timeout=3)
    # Nothing logged as an error (no traceback) for a client that went away.
    assert error_records(error_log) == []
    assert not any(r.exc_info for r in error_log.records if r.name.startswith("ferrule"))


def test_client_disconnect_is_not_counted_as_an_app_error(serve, raw_client, wait_until):
    app = Streamer(reraise=True)
    served = serve(app, lifespan="off")
    before = served.stats()
    client = raw_client(served)
    client.send(client.request("GET", "/"))
    client.recv_some(2.0)
    client.close()
    assert app.done.wait(5)
    wait_until(lambda: served.stats()["in_flight"] == 0, timeout=3)
    assert served.stats()["app_errors"] - before["app_errors"] == 0


class ReceiveRecorder:
    """An app that records what ``receive()`` returns until ``last(message)``
    says to stop; ``done`` is set when it returns."""

    def __init__(self, last: Any) -> None:
        self.last = last
        self.messages: list[dict[str, Any]] = []
        self.done = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            while True:
                message = await receive()
                self.messages.append(message)
                if self.last(message):
                    return
        finally:
            self.done.set()


def test_receive_returns_http_disconnect_when_the_client_goes_away(serve, raw_client):
    app = ReceiveRecorder(lambda m: m["type"] == "http.disconnect")
    messages, done = app.messages, app.done
    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(client.request("POST", "/", body=b"abc"))
    time.sleep(0.2)
    assert not done.is_set(), "receive() must wait while the client is still there"
    client.close()
    assert done.wait(5)
    assert messages[0] == {"type": "http.request", "body": b"abc", "more_body": False}
    assert messages[-1] == {"type": "http.disconnect"}


def test_receive_returns_http_disconnect_when_the_client_leaves_mid_body(serve, raw_client):
    app = ReceiveRecorder(
        lambda m: m["type"] == "http.disconnect" or not m.get("more_body")
    )
    messages, done = app.messages, app.done
    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
    time.sleep(0.1)
    client.close()
    assert done.wait(5)
    assert messages[-1] == {"type": "http.disconnect"}
    body = b"".join(m.get("body", b"") for m in messages)
    assert body == b"0123456789"


def test_server_keeps_serving_after_clients_disconnect_mid_response(serve, raw_client, wait_until):
    app = Streamer(reraise=True)
    served = serve(app, lifespan="off")
    for _ in range(3):
        app.done.clear()
        client = raw_client(served)
        client.send(client.request("GET", "/"))
        client.recv_some(2.0)
        client.close()
        assert app.done.wait(5)
    wait_until(lambda: served.stats()["active_connections"] == 0, timeout=3)
    with httpx.stream("GET", served.url + "/", timeout=5) as response:
        assert response.status_code == 200
        first = next(response.iter_bytes())
        assert first
