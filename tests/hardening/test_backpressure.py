"""Backpressure and flow control (issue 4) with a client that stalls.

* A request body the app does not read fills a bounded buffer (64 KiB) and
  then ferrule stops reading the socket, so the client cannot push the
  upload; ``receive()`` resumes it and the app gets every byte.
* ``send()`` suspends while the connection's unsent output is above the
  high-water mark: streaming 256 MiB to a client that does not read holds
  O(buffer) memory, and the client then gets every byte in order.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import zlib
from typing import Any

import pytest

from _rawhttp import connect, read_response, request, rss_bytes, wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(40)]

MiB = 1024 * 1024


def test_unread_upload_stops_the_socket_and_receive_resumes_it(serve):
    go = threading.Event()
    seen: dict[str, Any] = {}

    async def lazy_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen["called"] = True
        while not go.is_set():  # does not touch the body for now
            await asyncio.sleep(0.01)
        size, crc = 0, 0
        while True:
            msg = await receive()
            assert msg["type"] == "http.request", msg
            size += len(msg["body"])
            crc = zlib.crc32(msg["body"], crc)
            if not msg.get("more_body"):
                break
        body = f"{size} {crc}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    served = serve(lazy_reader, lifespan="off")
    total = 10 * MiB
    upload = bytes(range(256)) * (total // 256)
    sock = socket.socket()
    # a fixed send buffer (no autotuning): what the client can park in its
    # own kernel is ~512 KiB, the rest would have to be read by the server
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.connect((served.host, served.port))
    sock.sendall(request("POST", "/up", headers=[("Content-Length", str(total))]))
    wait_for(lambda: seen.get("called"), timeout=5)
    reads_before = served.stats()["read_syscalls"]

    sock.setblocking(False)
    pushed = 0
    progress: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        try:
            pushed += sock.send(upload[pushed : pushed + 256 * 1024])
        except BlockingIOError:
            time.sleep(0.005)
        progress.append((time.monotonic() - t0, pushed))
    late = [p for t, p in progress if t >= 0.6]
    reads_during = served.stats()["read_syscalls"] - reads_before
    assert pushed < 3 * MiB, (
        f"the client pushed {pushed / MiB:.1f} MiB of an unread upload within 1 s: "
        "the server kept reading the socket"
    )
    assert late[0] == late[-1], f"upload still progressing after 0.6 s: {late[0]} -> {late[-1]}"
    assert reads_during < 50, f"{reads_during} read syscalls while the app did not read"

    go.set()  # the app starts to receive(): the upload must resume
    sock.setblocking(True)
    sock.settimeout(10)
    sock.sendall(upload[pushed:])
    reply = read_response(sock, timeout=10)
    assert reply.status == 200
    assert reply.body == f"{total} {zlib.crc32(upload)}".encode()


def test_stream_256_mib_to_a_stalled_client_holds_bounded_memory(serve):
    total_chunks = 4096
    base = bytes(range(256)) * 256  # 64 KiB
    chunk_size = len(base)
    total = total_chunks * chunk_size  # 256 MiB
    progress = {"sent": 0, "done": False}

    def chunk(i: int) -> bytes:
        return b"%08d" % i + base[8:]

    async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(total).encode())]})
        for i in range(total_chunks):
            await send({"type": "http.response.body", "body": chunk(i),
                        "more_body": i < total_chunks - 1})
            progress["sent"] += chunk_size
        progress["done"] = True

    served = serve(streamer, lifespan="off")
    gc.collect()
    before = rss_bytes()
    sock = connect(served, timeout=10)
    sock.sendall(request("GET", "/stream"))

    # stall: read nothing for 1.5 s and watch the server's memory and the app
    peak = before
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        peak = max(peak, rss_bytes())
        time.sleep(0.05)
    sent_while_stalled = progress["sent"]
    assert not progress["done"], "the app sent 256 MiB to a client that read nothing"
    assert sent_while_stalled < 32 * MiB, (
        f"send() accepted {sent_while_stalled / MiB:.0f} MiB while the client read nothing"
    )
    growth = peak - before
    assert growth < 32 * MiB, f"RSS grew {growth / MiB:.1f} MiB while the client stalled"

    # drain: every byte, in order
    buf = bytearray(MiB)
    view = memoryview(buf)
    head = b""
    while b"\r\n\r\n" not in head:
        n = sock.recv_into(buf)
        assert n, "closed before the response head"
        head += bytes(view[:n])
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    got = len(rest)
    crc = zlib.crc32(rest)
    while got < total:
        n = sock.recv_into(buf)
        assert n, f"connection closed after {got} of {total} bytes"
        got += n
        crc = zlib.crc32(view[:n], crc)
    expected = 0
    for i in range(total_chunks):
        expected = zlib.crc32(chunk(i), expected)
    assert got == total
    assert crc == expected, "the streamed bytes arrived altered or out of order"
    wait_for(lambda: progress["done"], timeout=5)
    sock.close()
