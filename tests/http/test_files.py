"""Files by `http.response.pathsend` (sendfile, never through Python) and
`103 Early Hints` (`http.response.early_hint`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _rawhttp import connect, exchange, fetch, read_response, recv_until_eof, request
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

MiB = 1024 * 1024
# Random, so that a byte from the wrong offset shows.
PATTERN = os.urandom(4 * MiB)


def make_file(path: Path, size: int) -> bytes:
    """A file of `size` bytes (PATTERN repeated); returns its content."""
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = PATTERN[: min(left, len(PATTERN))]
            f.write(chunk)
            left -= len(chunk)
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def file_app(directory: Path) -> Starlette:
    async def one(request: Any) -> FileResponse:
        return FileResponse(directory / request.path_params["name"])

    return Starlette(
        routes=[
            Route("/f/{name}", one, methods=["GET", "HEAD"]),
            Mount("/static", StaticFiles(directory=directory)),
        ]
    )


def get(served: Any, target: str, **kw: Any) -> Any:
    return fetch(served, target, timeout=30, **kw)


def slow_reader(served: Any) -> socket.socket:
    """A connection with a tiny receive buffer, so the server's writes stall."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((served.host, served.port))
    sock.settimeout(30)
    return sock


def digest_of_body(sock: socket.socket, size: int) -> str:
    """Reads a response head, then `size` body bytes, hashing them."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "closed before the head"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert f"content-length: {size}".encode() in head.lower()
    h = hashlib.sha256(rest)
    got = len(rest)
    view = bytearray(1 << 20)
    while got < size:
        n = sock.recv_into(view)
        assert n, f"closed after {got} of {size} bytes"
        h.update(memoryview(view)[:n])
        got += n
    assert got == size, f"{got - size} bytes too many"
    return h.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 4096, 64 * 1024 + 1, 10 * MiB])
def test_file_response_bodies_are_byte_exact(serve, tmp_path, size):
    data = make_file(tmp_path / "f", size)
    served = serve(file_app(tmp_path), lifespan="off")
    reply = get(served, "/f/f")
    assert reply.status == 200
    assert reply.header("content-length") == str(size).encode()
    assert reply.body == data
    # The body came from the file, not from Python: one response, and no
    # http.response.body message (Starlette sends pathsend when listed).
    assert served.stats()["responses"] == 1


def test_a_one_gib_sparse_file_arrives_whole(serve, tmp_path):
    path = tmp_path / "sparse"
    size = 1024 * MiB
    with open(path, "wb") as f:
        f.truncate(size)
        for at in (0, size // 2, size - 5):
            f.seek(at)
            f.write(b"mark!")
    with open(path, "rb") as f:
        want = hashlib.sha256()
        while chunk := f.read(8 * MiB):
            want.update(chunk)
    served = serve(file_app(tmp_path), lifespan="off")
    with connect(served, timeout=60) as sock:
        sock.sendall(request("GET", "/f/sparse"))
        assert digest_of_body(sock, size) == want.hexdigest()


def test_head_gets_the_length_and_no_body_and_the_connection_goes_on(serve, tmp_path):
    make_file(tmp_path / "f", 5000)
    served = serve(file_app(tmp_path), lifespan="off")
    with connect(served) as sock:
        sock.sendall(request("HEAD", "/f/f") + request("GET", "/f/f"))
        raw = b""
        while raw.count(b"\r\n\r\n") < 2 or len(raw.rsplit(b"\r\n\r\n", 1)[1]) < 5000:
            chunk = sock.recv(65536)
            assert chunk, "closed early"
            raw += chunk
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 5000" in head.lower()
    # The HEAD response ends with its head: the GET's response follows at once.
    assert rest.startswith(b"HTTP/1.1 200")
    assert len(rest.split(b"\r\n\r\n", 1)[1]) == 5000


def test_pipelined_file_requests_are_answered_in_order(serve, tmp_path):
    a = make_file(tmp_path / "a", 200_000)
    b = make_file(tmp_path / "b", 3)
    served = serve(file_app(tmp_path), lifespan="off")
    with connect(served, timeout=10) as sock:
        sock.sendall(request("GET", "/f/a") + request("GET", "/f/b") + request("GET", "/f/a"))
        buf = bytearray()
        assert [read_response(sock, buf).body for _ in range(3)] == [a, b, a]


def test_a_range_request_is_starlettes_own_partial_response(serve, tmp_path):
    data = make_file(tmp_path / "f", 10_000)
    served = serve(file_app(tmp_path), lifespan="off")
    reply = get(served, "/f/f", headers=[("Range", "bytes=100-199")])
    assert reply.status == 206
    assert reply.body == data[100:200]


def test_static_files_are_served_by_pathsend(serve, tmp_path):
    data = make_file(tmp_path / "page.css", 70_000)
    inner = file_app(tmp_path)
    sent: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def record(message: Any) -> None:
            sent.append(message["type"])
            await send(message)

        await inner(scope, receive, record)

    served = serve(recording, lifespan="off")
    reply = get(served, "/static/page.css")
    assert reply.status == 200 and reply.body == data
    # The body never went through Python.
    assert sent == ["http.response.start", "http.response.pathsend"]


def test_a_slow_reader_gets_every_byte(serve, tmp_path):
    size = 8 * MiB
    make_file(tmp_path / "f", size)
    want = hashlib.sha256((tmp_path / "f").read_bytes()).hexdigest()
    served = serve(file_app(tmp_path), lifespan="off")
    with slow_reader(served) as sock:
        sock.sendall(request("GET", "/f/f"))
        time.sleep(0.5)  # the server's socket buffer fills; sendfile waits
        assert served.stats()["in_flight"] == 1
        assert digest_of_body(sock, size) == want


def test_a_file_truncated_mid_send_closes_the_connection_short(serve, tmp_path):
    size = 64 * MiB
    path = tmp_path / "f"
    make_file(path, size)
    served = serve(file_app(tmp_path), lifespan="off")
    with slow_reader(served) as sock:
        sock.sendall(request("GET", "/f/f"))
        time.sleep(0.5)
        os.truncate(path, MiB)
        raw, closed = recv_until_eof(sock, 30)
    assert closed
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"content-length: {size}".encode() in head.lower()
    assert len(body) < size, "never a short body that looks complete"


def test_a_file_deleted_after_it_was_opened_is_sent_whole(serve, tmp_path):
    size = 64 * MiB
    path = tmp_path / "f"
    make_file(path, size)
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    served = serve(file_app(tmp_path), lifespan="off")
    with slow_reader(served) as sock:
        sock.sendall(request("GET", "/f/f"))
        time.sleep(0.5)
        path.unlink()  # the open descriptor keeps the data
        assert digest_of_body(sock, size) == want


def pathsend_app(path: str, content_length: int | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        headers = [] if content_length is None else [(b"content-length", b"%d" % content_length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": path})

    return app


@pytest.mark.parametrize("what", ["missing", "directory", "fifo"])
def test_a_path_that_is_not_a_regular_file_is_an_app_error_and_a_500(
    serve, tmp_path, error_log, what
):
    # A FIFO with no writer would block a plain open() (and the loop) forever.
    path = {"missing": tmp_path / "nope", "directory": tmp_path, "fifo": tmp_path / "fifo"}[what]
    if what == "fifo":
        os.mkfifo(path)
    served = serve(pathsend_app(str(path)), lifespan="off")
    reply = exchange(served, request("GET", "/", headers=[("Connection", "close")]))
    assert reply.status == 500
    assert "cannot send file" in error_log.text


def test_a_content_length_that_is_not_the_files_size_is_a_500(serve, tmp_path, error_log):
    make_file(tmp_path / "f", 100)
    served = serve(pathsend_app(str(tmp_path / "f"), content_length=99), lifespan="off")
    reply = exchange(served, request("GET", "/", headers=[("Connection", "close")]))
    assert reply.status == 500


def test_the_apps_matching_content_length_is_kept(serve, tmp_path):
    data = make_file(tmp_path / "f", 100_000)
    served = serve(pathsend_app(str(tmp_path / "f"), content_length=100_000), lifespan="off")
    reply = get(served, "/")
    assert reply.status == 200 and reply.body == data
    assert reply.headers.count((b"content-length", b"100000")) == 1


def first_data_segment(pcap: bytes, port: int) -> bytes:
    """The payload of the first TCP segment with data from `port` in a
    tcpdump capture (Linux loopback, Ethernet framing)."""
    magic = struct.unpack("<I", pcap[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", pcap[20:24])[0]
    link = {1: 14, 113: 16, 276: 20}.get(linktype, 14)
    at = 24
    while at + 16 <= len(pcap):
        incl = struct.unpack(endian + "I", pcap[at + 8 : at + 12])[0]
        frame = pcap[at + 16 : at + 16 + incl]
        at += 16 + incl
        ip = frame[link:]
        if not ip or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 0xF) * 4 :]
        if struct.unpack(">H", tcp[:2])[0] != port:
            continue
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            return payload
    raise AssertionError("no data segment from the server in the capture")


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (.ci/run installs it)")
@pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump needs root")
def test_head_and_first_file_bytes_share_one_segment(serve, tmp_path):
    data = make_file(tmp_path / "f", 100_000)
    served = serve(file_app(tmp_path), lifespan="off")
    cap = tmp_path / "cap.pcap"
    dump = subprocess.Popen(
        # --immediate-mode: without it packets wait in libpcap's buffer and
        # are lost when tcpdump is stopped.
        ["tcpdump", "-i", "lo", "-nn", "-U", "--immediate-mode", "-w", str(cap),
         f"tcp src port {served.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # tcpdump says "listening on" once it captures.
        assert dump.stderr is not None
        dump.stderr.readline()
        time.sleep(0.2)
        reply = get(served, "/f/f")
        assert reply.body == data
        time.sleep(0.3)
    finally:
        dump.terminate()
        dump.wait(5)
    segment = first_data_segment(cap.read_bytes(), served.port)
    head_len = segment.find(b"\r\n\r\n") + 4
    assert segment.startswith(b"HTTP/1.1 200") and head_len > 4
    assert len(segment) > head_len, "the head left in a segment of its own"
    assert segment[head_len:] == data[: len(segment) - head_len]


# ------------------------------------------------------------ early hints


def hinting_app(links: list[bytes]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.early_hint", "links": links})
        await send({"type": "http.response.body", "body": b"done"})

    return app


def test_early_hints_go_out_before_the_response_on_http11(serve):
    links = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
    served = serve(hinting_app(links), lifespan="off")
    reply = exchange(served, request("GET", "/", headers=[("Connection", "close")]))
    assert reply.raw.startswith(
        b"HTTP/1.1 103 Early Hints\r\n"
        b"Link: </style.css>; rel=preload; as=style\r\n"
        b"Link: </app.js>; rel=preload; as=script\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n"
    )
    assert reply.raw.endswith(b"\r\n\r\ndone")


def test_an_http10_client_gets_no_early_hints(serve):
    served = serve(hinting_app([b"</a.css>; rel=preload"]), lifespan="off")
    reply = exchange(served, request("GET", "/", version="HTTP/1.0"))
    assert reply.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"103" not in reply.raw.split(b"\r\n", 1)[0]


def test_an_early_hint_with_a_bad_link_is_an_app_error(serve, error_log):
    served = serve(hinting_app([b"</a>\r\nSet-Cookie: x=1"]), lifespan="off")
    reply = exchange(served, request("GET", "/", headers=[("Connection", "close")]))
    assert reply.status == 500
    assert b"Set-Cookie" not in reply.raw
