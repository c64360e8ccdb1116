"""Persistent connections (RFC 9112 §9.3): reuse, pipelining, HTTP/1.0, close, timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


async def echo_path_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with its own path as the body (Content-Length)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A response without Content-Length in three body messages."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one,", b"two,"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"three"})


def test_httpx_1000_requests_reuse_one_connection(serve):
    served = serve(echo_path_app, lifespan="off")
    before = served.stats()
    with httpx.Client(base_url=served.url) as client:
        for i in range(1000):
            response = client.get(f"/r/{i}")
            assert response.status_code == 200
            assert response.content == f"/r/{i}".encode()
    after = served.stats()
    assert after["connections"] - before["connections"] == 1
    assert after["requests"] - before["requests"] == 1000
    assert after["responses"] - before["responses"] == 1000


def test_raw_socket_1000_requests_reuse_one_connection(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    before = served.stats()
    client = raw_client(served)
    for i in range(1000):
        response = client.get(f"/raw/{i}")
        assert response.status == 200
        assert response.framing == "content-length"
        assert response.body == f"/raw/{i}".encode()
        assert "close" not in response.connection_tokens()
    assert client.buffer == b""  # nothing beyond the responses' framing
    after = served.stats()
    assert after["connections"] - before["connections"] == 1
    assert after["requests"] - before["requests"] == 1000


def test_50_pipelined_requests_in_one_write_are_answered_in_order(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    before = served.stats()
    client = raw_client(served)
    client.send(b"".join(client.request("GET", f"/pipe/{i}") for i in range(50)))
    for i in range(50):
        response = client.read_response()
        assert response.status == 200
        assert response.body == f"/pipe/{i}".encode()
    assert client.nothing_arrives(0.1)
    assert served.stats()["connections"] - before["connections"] == 1


def test_pipelined_requests_stay_in_order_when_earlier_ones_are_slower(
    serve, raw_client
):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        n = int(scope["path"].rsplit("/", 1)[1])
        await asyncio.sleep((10 - n) * 0.01)  # the first request is the slowest
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(b"".join(client.request("GET", f"/slow/{i}") for i in range(10)))
    bodies = [client.read_response().body for _ in range(10)]
    assert bodies == [str(i).encode() for i in range(10)]


def test_pipelined_requests_with_bodies_are_answered_in_order(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.upper()})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    payload = b"".join(
        client.request("POST", "/", body=f"body number {i}".encode()) for i in range(20)
    )
    client.send(payload)
    for i in range(20):
        assert client.read_response().body == f"BODY NUMBER {i}".encode()


def test_http_1_0_without_keep_alive_is_closed_after_the_response(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    client = raw_client(served)
    client.send(b"GET /ten HTTP/1.0\r\n\r\n")
    response = client.read_response()
    assert response.status == 200
    assert response.body == b"/ten"
    assert "keep-alive" not in response.connection_tokens()
    assert client.closed_by_server(3.0)
    assert client.buffer == b""


def test_http_1_0_with_keep_alive_keeps_the_connection_open(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    before = served.stats()
    client = raw_client(served)
    for i in range(3):
        client.send(f"GET /ka/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        response = client.read_response()
        assert response.status == 200
        assert response.body == f"/ka/{i}".encode()
        # An HTTP/1.0 client only keeps the connection if the response says so.
        assert "keep-alive" in response.connection_tokens()
        assert "close" not in response.connection_tokens()
    assert client.nothing_arrives(0.2)  # still open, nothing extra
    assert served.stats()["connections"] - before["connections"] == 1


def test_http_1_0_keep_alive_request_then_plain_request_closes(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    client = raw_client(served)
    client.send(b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert client.read_response().body == b"/a"
    client.send(b"GET /b HTTP/1.0\r\n\r\n")
    assert client.read_response().body == b"/b"
    assert client.closed_by_server(3.0)


def test_connection_close_from_the_client_is_honoured(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    client = raw_client(served)
    client.send(b"GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    response = client.read_response()
    assert response.status == 200
    assert response.body == b"/bye"
    # RFC 9112 §9.6: the server SHOULD echo "close" in its final response.
    assert "close" in response.connection_tokens()
    assert client.closed_by_server(3.0)


def test_requests_pipelined_after_connection_close_are_not_answered(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    client = raw_client(served)
    client.send(
        b"GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert client.read_response().body == b"/first"
    assert client.closed_by_server(3.0)
    assert client.buffer == b"", "a request after Connection: close was answered"


def test_connection_close_token_is_case_insensitive_and_in_a_list(serve, raw_client):
    served = serve(echo_path_app, lifespan="off")
    client = raw_client(served)
    client.send(
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: TE, CLOSE\r\nTE: trailers\r\n\r\n"
    )
    assert client.read_response().body == b"/x"
    assert client.closed_by_server(3.0)


@pytest.mark.parametrize("kind", ["fixed", "streamed", "empty", "not-found"])
def test_http_1_1_keep_alive_responses_never_carry_connection_close(
    serve, raw_client, kind
):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if kind == "streamed":
            await streaming_app(scope, receive, send)
            return
        status = 404 if kind == "not-found" else 200
        body = b"" if kind == "empty" else b"content"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    for _ in range(3):
        response = client.get("/")
        assert response.status in (200, 404)
        assert "close" not in response.connection_tokens()
    assert client.nothing_arrives(0.2)  # the server did not close either
    assert not client.eof


def test_httpx_sees_no_connection_close_header(serve):
    served = serve(echo_path_app, lifespan="off")
    with httpx.Client(base_url=served.url) as client:
        response = client.get("/")
        assert "close" not in response.headers.get("connection", "").lower()


def test_keep_alive_timeout_closes_an_idle_connection(serve, raw_client, wait_until):
    served = serve(echo_path_app, lifespan="off", timeout_keep_alive=1)
    client = raw_client(served)
    assert client.get("/").status == 200
    idle_since = time.monotonic()
    assert client.closed_by_server(4.0), "idle connection not closed"
    waited = time.monotonic() - idle_since
    assert 0.8 <= waited <= 2.5, f"closed after {waited:.2f}s, timeout is 1s"
    assert client.buffer == b""  # closed silently, no response of its own
    # The server may linger (half-close, then drain) before it lets go.
    wait_until(lambda: served.stats()["active_connections"] == 0, timeout=3)


def test_keep_alive_timeout_restarts_after_each_request(serve, raw_client):
    served = serve(echo_path_app, lifespan="off", timeout_keep_alive=1)
    before = served.stats()
    client = raw_client(served)
    for i in range(4):  # 4 x 0.6 s = 2.4 s on the connection, never 1 s idle
        assert client.get(f"/{i}").body == f"/{i}".encode()
        time.sleep(0.6)
    assert client.get("/last").body == b"/last"
    assert served.stats()["connections"] - before["connections"] == 1


def late_app(delay: float) -> Any:
    """An app that answers `late` after `delay` seconds."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    return app


def test_keep_alive_timeout_does_not_cut_a_slow_response(serve, raw_client):
    served = serve(late_app(1.5), lifespan="off", timeout_keep_alive=1)
    client = raw_client(served)
    response = client.get("/")
    assert response.status == 200 and response.body == b"late"


def test_keep_alive_timeout_counts_from_the_end_of_a_slow_response(serve, raw_client):
    served = serve(late_app(0.7), lifespan="off", timeout_keep_alive=1)
    client = raw_client(served)
    assert client.get("/").body == b"late"
    idle_since = time.monotonic()
    assert client.closed_by_server(4.0), "idle connection not closed"
    waited = time.monotonic() - idle_since
    # Neither counted from the request's start (0.3 s) nor doubled.
    assert (
        0.8 <= waited <= 2.0
    ), f"closed {waited:.2f}s after the response, timeout is 1s"


def test_closed_client_connections_are_released(serve, raw_client, wait_until):
    served = serve(echo_path_app, lifespan="off")
    clients = [raw_client(served) for _ in range(5)]
    for client in clients:
        assert client.get("/").status == 200
    assert served.stats()["active_connections"] == 5
    for client in clients:
        client.close()
    wait_until(lambda: served.stats()["active_connections"] == 0, timeout=3)
