"""Wire rules, checked through the engine's counters and the raw bytes:
one write per small response, a streamed head rides with its first chunk,
the last chunk rides with the terminator."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

KIB = b"k" * 1024


def delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after[key] - before[key]


async def one_message_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    # The start and the whole body given together is impossible in ASGI; the
    # smallest app is start + one body message.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def three_message_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world!", "more_body": False})


async def content_length_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"13")]}
    )
    await send({"type": "http.response.body", "body": b"Hello, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world!"})


@pytest.mark.parametrize(
    "app",
    [one_message_app, three_message_app, content_length_app],
    ids=["start+body", "start+body+body", "content-length+2-bodies"],
)
def test_100_small_responses_on_one_connection_cost_100_write_syscalls(serve, raw_client, app):
    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.get("/warm-up")
    before = served.stats()
    received = 0
    for i in range(100):
        response = client.get(f"/{i}")
        assert response.status == 200
        assert response.body == b"Hello, world!"
        received += len(response.raw)
    after = served.stats()
    assert delta(after, before, "responses") == 100
    assert delta(after, before, "connections") == 0
    assert delta(after, before, "write_syscalls") == 100
    assert delta(after, before, "bytes_written") == received


def test_httpx_small_responses_cost_one_write_each(serve):
    served = serve(one_message_app, lifespan="off")
    with httpx.Client(base_url=served.url) as client:
        client.get("/")
        before = served.stats()
        for _ in range(100):
            assert client.get("/").text == "Hello, world!"
        after = served.stats()
    assert delta(after, before, "write_syscalls") == 100


def test_head_waits_for_the_first_body_even_when_the_app_awaits_in_between(
    serve, raw_client
):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)  # e.g. a database call between start and body
        await send({"type": "http.response.body", "body": b"late body"})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    before = served.stats()
    response = client.get("/")
    assert response.body == b"late body"
    assert response.framing == "content-length"
    assert delta(served.stats(), before, "write_syscalls") == 1


def test_response_ended_in_a_dispatch_batch_leaves_before_the_loop_runs_other_callbacks(
    serve, raw_client
):
    # Responses that end while select() dispatches a batch are written when
    # the batch ends: before the loop goes on to run its ready callbacks, so
    # a slow callback the app scheduled does not hold the response back.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"before the callback"})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    started = time.monotonic()
    response = client.get("/")
    assert time.monotonic() - started < 0.7
    assert response.body == b"before the callback"


def test_response_left_for_the_batch_end_stays_in_flight_until_a_slow_reader_takes_it(
    serve, wait_until
):
    # 60,000 bytes, under the 64 KiB high-water mark: written at the end of
    # the dispatch batch. A client that sends requests but reads nothing
    # fills the socket's buffers until such a write is partial; that
    # request must still count as in flight (graceful shutdown waits for
    # it), and once the client reads, everything arrives and the
    # connection serves the next request.
    body = b"x" * 60_000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    served = serve(app, lifespan="off")
    request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"

    def read_response(sock: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            byte = sock.recv(1)
            assert byte, "connection closed before a response head"
            head += byte
        assert head.startswith(b"HTTP/1.1 200")
        received = 0
        while received < len(body):
            chunk = sock.recv(min(65536, len(body) - received))
            assert chunk, "connection closed mid-body"
            received += len(chunk)

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect((served.host, served.port))
        sent = 0
        while sent < 500:
            sock.sendall(request)
            sent += 1
            wait_until(lambda: served.stats()["responses"] == sent)
            stats = served.stats()
            if stats["write_syscalls"] > stats["responses"]:
                break  # this response's write was partial
        else:
            pytest.fail("no partial write after 500 unread responses")
        time.sleep(0.05)
        assert served.stats()["in_flight"] == 1
        for _ in range(sent):
            read_response(sock)
        sock.sendall(request)
        read_response(sock)
    wait_until(lambda: served.stats()["in_flight"] == 0)


def test_streamed_10_x_1kib_response_costs_at_most_11_writes(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(10):
            await send({"type": "http.response.body", "body": KIB, "more_body": i < 9})
            await asyncio.sleep(0.002)

    served = serve(app, lifespan="off")
    client = raw_client(served)
    client.get("/warm-up")
    before = served.stats()
    response = client.get("/")
    after = served.stats()
    assert response.framing == "chunked"
    assert response.chunks == [KIB] * 10
    assert delta(after, before, "write_syscalls") <= 11
    assert delta(after, before, "bytes_written") == len(response.raw)


def test_streamed_head_rides_with_its_first_chunk(serve, raw_client):
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": KIB, "more_body": True})
        while not gate.is_set():
            await asyncio.sleep(0.005)
        for i in range(9):
            await send({"type": "http.response.body", "body": KIB, "more_body": i < 8})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    before = served.stats()
    client.send(client.request("GET", "/"))
    time.sleep(0.15)
    first = client.recv_some(2.0)
    assert delta(served.stats(), before, "write_syscalls") == 1
    head, sep, rest = first.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200 ")
    assert rest == b"400\r\n" + KIB + b"\r\n", "the first recv must be the head plus chunk 1"
    gate.set()
    client.buffer = first + client.buffer
    response = client.read_response()
    assert response.chunks == [KIB] * 10


def test_last_chunk_and_terminator_leave_in_one_write(serve, raw_client):
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while not gate.is_set():
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"last", "more_body": False})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    before = served.stats()
    client.send(client.request("GET", "/"))
    time.sleep(0.1)
    first = client.recv_some(2.0)
    assert first.endswith(b"5\r\nfirst\r\n")
    gate.set()
    time.sleep(0.1)
    second = client.recv_some(2.0)
    assert second == b"4\r\nlast\r\n0\r\n\r\n"
    assert delta(served.stats(), before, "write_syscalls") == 2


def test_empty_final_body_message_sends_only_the_terminator(serve, raw_client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    served = serve(app, lifespan="off")
    client = raw_client(served)
    before = served.stats()
    response = client.get("/")
    assert response.chunks == [b"data"]
    assert response.raw.endswith(b"\r\n\r\n4\r\ndata\r\n0\r\n\r\n")
    assert delta(served.stats(), before, "write_syscalls") == 2


def test_50_pipelined_requests_cost_at_most_50_writes(serve, raw_client):
    served = serve(one_message_app, lifespan="off")
    client = raw_client(served)
    client.get("/warm-up")
    before = served.stats()
    client.send(b"".join(client.request("GET", f"/{i}") for i in range(50)))
    for _ in range(50):
        assert client.read_response().body == b"Hello, world!"
    after = served.stats()
    assert delta(after, before, "responses") == 50
    assert 1 <= delta(after, before, "write_syscalls") <= 50


def test_error_500_is_one_write(serve, raw_client, error_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("fail")

    served = serve(app, lifespan="off")
    client = raw_client(served)
    before = served.stats()
    assert client.get("/").status == 500
    assert delta(served.stats(), before, "write_syscalls") == 1


def test_request_counters_match_what_was_sent(serve, raw_client, wait_until):
    served = serve(one_message_app, lifespan="off")
    before = served.stats()
    clients = [raw_client(served) for _ in range(3)]
    for client in clients:
        for _ in range(4):
            client.get("/")
    after = served.stats()
    assert delta(after, before, "connections") == 3
    assert delta(after, before, "requests") == 12
    assert delta(after, before, "responses") == 12
    assert after["active_connections"] >= 3
    assert delta(after, before, "bad_requests") == 0
    # The last response can reach the client a moment before its request is
    # retired, so in_flight settles to 0 rather than being 0 at once.
    wait_until(lambda: served.stats()["in_flight"] == 0, timeout=3)


def test_one_request_in_one_segment_is_read_in_few_syscalls(serve, raw_client):
    served = serve(one_message_app, lifespan="off")
    client = raw_client(served)
    client.get("/warm-up")
    before = served.stats()
    for _ in range(50):
        client.get("/")
    reads = delta(served.stats(), before, "read_syscalls")
    # One read per request, plus at most one EAGAIN probe each.
    assert reads <= 100, f"{reads} read syscalls for 50 requests"
