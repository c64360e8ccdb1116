"""HTTP/1.1 message semantics on the wire: request bodies, response framing,
bodiless responses, 100-continue, header casing and the server's own headers."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


async def read_body(receive: Any) -> tuple[bytes, list[dict[str, Any]]]:
    body, messages = b"", []
    while True:
        message = await receive()
        messages.append(message)
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body, messages


class Echo:
    """Echoes the request body; remembers the http.request messages it got."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, self.messages = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def fixed(status: int = 200, body: bytes = b"", headers: Any = ()) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    return app


# ------------------------------------------------------------ request bodies


def test_chunked_request_body_sent_in_several_pieces_is_echoed(serve, raw_client):
    echo = Echo()
    served = serve(echo, lifespan="off")
    client = raw_client(served)
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"5\r\nhello\r\n", b"1;ext=yes\r\n ", b"\r\n", b"A\r\n0123456789\r\n", b"0\r\n\r\n"):
        client.send(piece)
        time.sleep(0.02)
    response = client.read_response()
    assert response.status == 200
    assert response.body == b"hello 0123456789"
    assert echo.messages[-1]["more_body"] is False
    assert all(m["more_body"] is True for m in echo.messages[:-1])
    # and the connection is usable afterwards
    assert client.get("/", method="POST", body=b"again").body == b"again"


def test_chunked_request_body_with_trailers_is_echoed(serve, raw_client):
    served = serve(Echo(), lifespan="off")
    client = raw_client(served)
    client.send(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n3\r\ndef\r\n0\r\nX-Trailer: yes\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert client.read_response().body == b"abcdef"
    assert client.read_response().status == 200


def test_chunked_request_body_split_at_every_byte_is_echoed(serve, raw_client):
    served = serve(Echo(), lifespan="off")
    client = raw_client(served)
    request = (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    )
    for byte in request:
        client.send(bytes([byte]))
    assert client.read_response().body == b"Wikipedia"


def test_large_content_length_request_body_is_echoed(serve):
    served = serve(Echo(), lifespan="off")
    payload = bytes(range(256)) * 4096  # 1 MiB
    response = httpx.post(served.url + "/", content=payload, timeout=10)
    assert response.status_code == 200
    assert response.content == payload


def test_request_without_body_gives_one_empty_http_request_message(serve, raw_client):
    echo = Echo()
    served = serve(echo, lifespan="off")
    client = raw_client(served)
    assert client.get("/").body == b""
    assert echo.messages == [{"type": "http.request", "body": b"", "more_body": False}]


def test_unread_request_body_does_not_corrupt_the_next_request(serve, raw_client):
    served = serve(fixed(200, b"ignored your body"), lifespan="off")
    client = raw_client(served)
    client.send(
        client.request("POST", "/a", body=b"GET /evil HTTP/1.1\r\nHost: t\r\n\r\n")
        + client.request("GET", "/b")
    )
    first = client.read_response()
    assert first.body == b"ignored your body"
    if not client.closed_by_server(0.3):
        # Kept alive: exactly one more response (for /b), not one for /evil.
        second = client.read_response()
        assert second.status == 200
        assert client.nothing_arrives(0.3)
    else:
        assert client.buffer == b""


# --------------------------------------------------------- response framing


def test_streamed_response_is_chunked_on_http_1_1(serve, raw_client):
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        while not gate.is_set():
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"world", "more_body": False})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/"))
    time.sleep(0.2)
    first = client.recv_some(2.0)
    head, _, rest = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    assert rest == b"5\r\nhello\r\n", "head and first chunk should arrive together, nothing more"
    gate.set()
    second = client.recv_some(2.0)
    while not second.endswith(b"0\r\n\r\n") and len(second) < 100:
        more = client.recv_some(2.0)
        if not more:
            break
        second += more
    assert second == b"5\r\nworld\r\n0\r\n\r\n"
    client.buffer = first + second
    response = client.read_response()
    assert response.framing == "chunked"
    assert response.chunks == [b"hello", b"world"]
    assert client.buffer == b""


def test_empty_body_message_in_a_stream_does_not_end_the_chunked_response(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"", b"b"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    response = client.get("/")
    assert response.framing == "chunked"
    assert response.body == b"ab"
    assert response.chunks == [b"a", b"b"]
    assert response.raw.endswith(b"\r\n\r\n1\r\nb\r\n0\r\n\r\n") or response.raw.endswith(
        b"1\r\nb\r\n0\r\n\r\n"
    )
    assert client.get("/").body == b"ab"  # framing was exact: next response parses


def test_streamed_response_is_close_delimited_on_http_1_0(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two "):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"three"})

    served = serve(app, lifespan="off")
    for request in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ):
        client = raw_client(served)
        client.send(request)
        response = client.read_response()
        assert response.framing == "close", response.head
        assert not response.has_header("transfer-encoding")
        assert response.body == b"one two three"
        assert client.eof
        assert "keep-alive" not in response.connection_tokens()


def test_app_content_length_is_used_for_a_multi_message_body(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
        )
        await send({"type": "http.response.body", "body": b"01234", "more_body": True})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"56789"})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    for _ in range(2):
        response = client.get("/")
        assert response.framing == "content-length"
        assert response.header_list("content-length") == ["10"]
        assert not response.has_header("transfer-encoding")
        assert response.body == b"0123456789"
    assert client.buffer == b""


@pytest.mark.parametrize("body", [b"", b"x", b"Hello, world!", b"z" * 100_000])
def test_single_body_message_gets_a_content_length(serve, raw_client, body):
    served = serve(fixed(200, body), lifespan="off")
    client = raw_client(served)
    response = client.get("/")
    assert response.framing == "content-length"
    assert response.header_list("content-length") == [str(len(body))]
    assert not response.has_header("transfer-encoding")
    assert response.body == body


def test_head_response_has_headers_but_no_body(serve, raw_client):
    served = serve(
        fixed(200, b"Hello, world!", [(b"content-length", b"13"), (b"content-type", b"text/plain")]),
        lifespan="off",
    )
    client = raw_client(served)
    client.send(client.request("HEAD", "/") + client.request("GET", "/"))
    head = client.read_response(method="HEAD")
    assert head.status == 200
    assert head.header("content-length") == "13"
    assert head.raw.endswith(b"\r\n\r\n") and head.body == b""
    get = client.read_response()
    assert get.body == b"Hello, world!"
    assert client.nothing_arrives(0.2)


def test_head_response_to_a_streaming_app_has_no_body(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"def"})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(client.request("HEAD", "/") + client.request("GET", "/"))
    head = client.read_response(method="HEAD")
    assert head.status == 200 and head.body == b""
    assert client.read_response().body == b"abcdef"
    assert client.nothing_arrives(0.2)


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("app_body", [b"", b"should not be sent"])
def test_204_and_304_responses_have_no_body(serve, raw_client, status, app_body):
    served = serve(fixed(status, app_body, [(b"etag", b'"v1"')]), lifespan="off")
    client = raw_client(served)
    client.send(client.request("GET", "/") + client.request("GET", "/"))
    for _ in range(2):
        response = client.read_response()
        assert response.status == status
        assert response.raw.endswith(b"\r\n\r\n")
        assert not response.has_header("transfer-encoding")
        if status == 204:
            assert not response.has_header("content-length")
    assert client.buffer == b"" and client.nothing_arrives(0.2)


def test_httpx_head_204_304(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status = int(scope["path"].strip("/") or 200)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"body"})

    served = serve(app, lifespan="off")
    with httpx.Client(base_url=served.url) as client:
        assert client.head("/200").content == b""
        assert client.get("/204").status_code == 204
        assert client.get("/304").status_code == 304
        assert client.get("/200").content == b"body"


# ---------------------------------------------------------- 100-continue


def test_expect_100_continue_is_sent_only_when_the_app_reads_the_body(serve, raw_client):
    gate = threading.Event()
    reading = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not gate.is_set():
            await asyncio.sleep(0.005)
        reading.set()
        body, _ = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got " + body})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert client.nothing_arrives(0.3), "100 Continue sent before the app asked for the body"
    gate.set()
    interim = client.read_response()
    assert interim.status == 100
    assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    final = client.read_response()
    assert final.status == 200
    assert final.body == b"got hello"
    assert client.get("/", method="POST", body=b"x").body == b"got x"


def test_expect_100_continue_is_not_sent_when_the_app_answers_without_reading(
    serve, raw_client
):
    served = serve(fixed(413, b"too big"), lifespan="off")
    client = raw_client(served)
    client.send(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    response = client.read_response()
    assert response.status == 413
    assert response.body == b"too big"


def test_expect_100_continue_is_not_sent_to_an_http_1_0_client(serve, raw_client):
    served = serve(Echo(), lifespan="off")
    client = raw_client(served)
    client.send(
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    )
    time.sleep(0.1)
    client.send(b"abc")
    response = client.read_response()
    assert response.status == 200, "an HTTP/1.0 client must not get a 1xx response"
    assert response.body == b"abc"


def test_httpx_upload_with_expect_100_continue(serve):
    served = serve(Echo(), lifespan="off")
    response = httpx.post(
        served.url + "/", content=b"payload", headers={"Expect": "100-continue"}
    )
    assert response.status_code == 200
    assert response.content == b"payload"


# ------------------------------------------------------------------ headers


def test_response_header_name_casing_is_kept(serve, raw_client):
    served = serve(
        fixed(200, b"x", [(b"ETag", b'"abc"'), (b"X-Custom-Thing", b"Value"), (b"cache-control", b"no-store")]),
        lifespan="off",
    )
    client = raw_client(served)
    response = client.get("/")
    assert b'\r\nETag: "abc"\r\n' in response.head
    assert b"\r\nX-Custom-Thing: Value\r\n" in response.head
    assert b"\r\ncache-control: no-store\r\n" in response.head


def test_repeated_response_headers_are_all_sent_in_order(serve, raw_client):
    served = serve(
        fixed(200, b"", [(b"set-cookie", b"a=1"), (b"x-mid", b"m"), (b"set-cookie", b"b=2")]),
        lifespan="off",
    )
    response = raw_client(served).get("/")
    assert response.header_list("set-cookie") == ["a=1", "b=2"]


def test_server_and_date_headers_are_sent_by_default(serve, raw_client):
    served = serve(fixed(200, b"x"), lifespan="off")
    response = raw_client(served).get("/")
    assert response.header_list("server") == ["ferrule"]
    dates = response.header_list("date")
    assert len(dates) == 1
    assert dates[0].endswith(" GMT")
    when = email.utils.parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 5


@pytest.mark.parametrize(
    ("server_header", "date_header"), [(False, True), (True, False), (False, False)]
)
def test_server_and_date_headers_can_be_switched_off(serve, raw_client, server_header, date_header):
    served = serve(
        fixed(200, b"x"), lifespan="off", server_header=server_header, date_header=date_header
    )
    response = raw_client(served).get("/")
    assert response.has_header("server") is server_header
    assert response.has_header("date") is date_header


def test_extra_default_headers_are_added_to_every_response(serve, raw_client):
    served = serve(
        fixed(200, b"x", [(b"content-type", b"text/plain")]),
        lifespan="off",
        headers=["X-Powered-By: tests", ("X-Region", "eu-west")],
    )
    client = raw_client(served)
    for _ in range(2):
        response = client.get("/")
        assert response.header_list("x-powered-by") == ["tests"]
        assert response.header_list("x-region") == ["eu-west"]
        assert response.header("content-type") == "text/plain"
    assert b"\r\nX-Powered-By: tests\r\n" in response.head


def test_extra_default_headers_via_the_cli_header_flag(run_cli):
    proc = run_cli("examples.hello:app", "--header", "X-From-Cli:yes", "--no-access-log")
    response = httpx.get(proc.url + "/")
    assert response.status_code == 200
    assert response.headers["x-from-cli"] == "yes"


def test_response_trailers_are_sent_after_the_last_chunk(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-checksum")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"abc123")],
                "more_trailers": False,
            }
        )

    served = serve(app, lifespan="off")
    client = raw_client(served)
    response = client.get("/", headers=[("TE", "trailers")])
    assert response.framing == "chunked"
    assert response.body == b"part1part2"
    assert [(n.lower(), v) for n, v in response.trailers] == [("x-checksum", b"abc123")]
    assert client.get("/", headers=[("TE", "trailers")]).body == b"part1part2"


def test_scope_advertises_the_trailers_extension(serve):
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["extensions"])
        await fixed(200, b"")(scope, receive, send)

    served = serve(app, lifespan="off")
    httpx.get(served.url + "/")
    assert "http.response.trailers" in seen[0]


# ------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    ],
)
def test_malformed_request_gets_400_and_the_connection_is_closed(serve, raw_client, request_bytes):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Reads the body like a careful app: stops quietly at http.disconnect.
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"accepted"})

    served = serve(app, lifespan="off")
    before = served.stats()
    client = raw_client(served)
    client.send(request_bytes)
    response = client.read_response()
    assert response.status == 400
    assert client.closed_by_server(3.0)
    assert served.stats()["bad_requests"] - before["bad_requests"] == 1
