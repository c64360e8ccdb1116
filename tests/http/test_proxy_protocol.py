"""--proxy-protocol: a trusted proxy's PROXY header (v1 text or v2 binary) sets
the scope's client; a connection without a valid one, or from a peer that is
not a trusted proxy, is closed without an HTTP response."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ferrule import Config, Server

from _rawhttp import connect, read_response, recv_until_eof, request

pytestmark = pytest.mark.engine

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


async def scope_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    client = scope["client"]
    body = json.dumps({"client": list(client) if client else None, "path": scope["path"]})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})


def v1(src: str, sport: int, dst: str = "10.0.0.1", dport: int = 443) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str | None, sport: int = 0, tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY with src (IPv4 or IPv6), or LOCAL when src is None."""
    if src is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    ip = ipaddress.ip_address(src)
    dst = ipaddress.ip_address("10.0.0.1" if ip.version == 4 else "2001:db8::1")
    family = 0x11 if ip.version == 4 else 0x21
    addrs = ip.packed + dst.packed + struct.pack("!HH", sport, 443)
    payload = addrs + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload


def get(sock: socket.socket, path: str = "/", buf: bytearray | None = None) -> dict[str, Any]:
    sock.sendall(request("GET", path))
    reply = read_response(sock, buf)
    assert reply.status == 200, reply.raw
    result: dict[str, Any] = json.loads(reply.body)
    return result


def assert_closed_silently(sock: socket.socket) -> None:
    data, closed = recv_until_eof(sock, 5.0)
    assert closed, "the server kept the connection open"
    assert data == b"", f"the server answered {data!r}"


def wait_stat(served: Any, key: str, at_least: int = 1) -> int:
    deadline = time.monotonic() + 5
    while True:
        value = int(served.stats()[key])
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_a_v1_header_sets_the_client_of_every_request_on_the_connection(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        sock.sendall(v1("192.0.2.7", 51234))
        buf = bytearray()
        for path in ("/one", "/two", "/three"):
            assert get(sock, path, buf) == {"client": ["192.0.2.7", 51234], "path": path}
    assert srv.stats()["connections"] == 1


def test_a_v1_tcp6_header_and_the_request_in_one_segment(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        sock.sendall(v1("2001:db8::7", 40000, "2001:db8::1", 80) + request("GET", "/six"))
        reply = read_response(sock)
        assert json.loads(reply.body) == {"client": ["2001:db8::7", 40000], "path": "/six"}


@pytest.mark.parametrize(
    "src",
    ["198.51.100.9", "2001:db8::9"],
)
def test_a_v2_header_with_tlvs_sets_the_client(serve: Any, src: str) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    # PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY, as HAProxy may send them: skipped.
    tlvs = b"\x01\x00\x08http/1.1" + b"\x02\x00\x0bexample.com"
    with connect(srv) as sock:
        sock.sendall(v2(src, 61000, tlvs))
        buf = bytearray()
        assert get(sock, "/a", buf)["client"] == [src, 61000]
        assert get(sock, "/b", buf)["client"] == [src, 61000]


def test_a_header_split_byte_by_byte_is_read_whole(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        for i in v2("198.51.100.10", 1234):
            sock.sendall(bytes([i]))
            time.sleep(0.001)
        assert get(sock)["client"] == ["198.51.100.10", 1234]


def test_a_v2_local_header_keeps_the_socket_peer(serve: Any) -> None:
    # HAProxy's health checks with check-send-proxy: LOCAL, no addresses.
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        sock.sendall(v2(None))
        got = get(sock)
        assert got["client"] == ["127.0.0.1", sock.getsockname()[1]]


def test_a_v1_unknown_header_keeps_the_socket_peer(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        sock.sendall(b"PROXY UNKNOWN\r\n")
        assert get(sock)["client"] == ["127.0.0.1", sock.getsockname()[1]]


@pytest.mark.parametrize(
    "first_bytes",
    [
        request("GET", "/"),
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51234\r\n",
        b"PROXY TCP4 not-an-ip 10.0.0.1 51234 443\r\n",
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),
        b"PROXY UNKNOWN " + b"x" * 120,
    ],
    ids=["http-instead", "v1-missing-port", "v1-bad-address", "v2-bad-version", "v1-too-long"],
)
def test_a_missing_or_garbled_header_closes_without_a_response(serve: Any, first_bytes: bytes) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        sock.sendall(first_bytes)
        assert_closed_silently(sock)
    assert wait_stat(srv, "closed_proxy_header") == 1
    assert srv.stats()["requests"] == 0


def test_a_header_that_never_completes_closes_after_the_header_timeout(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True, timeout_request_header=0.3)
    with connect(srv) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.7 ")
        started = time.monotonic()
        assert_closed_silently(sock)
        assert 0.2 < time.monotonic() - started < 3
    assert wait_stat(srv, "closed_header_timeout") == 1


def test_a_peer_that_is_not_a_trusted_proxy_is_refused(serve: Any) -> None:
    # 127.0.0.1 is not in the list: its header cannot be believed, and a
    # listener that speaks PROXY protocol serves no one else.
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8")
    with connect(srv) as sock:
        assert_closed_silently(sock)
    assert wait_stat(srv, "closed_proxy_untrusted") == 1
    assert srv.stats()["requests"] == 0


def test_the_header_is_believed_with_proxy_headers_off(serve: Any) -> None:
    # --no-proxy-headers turns off X-Forwarded-*, not the PROXY header.
    srv = serve(scope_echo, lifespan="off", proxy_protocol=True, proxy_headers=False)
    with connect(srv) as sock:
        sock.sendall(v1("192.0.2.8", 5000))
        assert get(sock)["client"] == ["192.0.2.8", 5000]


def test_a_client_named_by_the_proxy_header_cannot_forge_x_forwarded_headers(serve: Any) -> None:
    # Behind a TCP load balancer the HTTP headers are the client's own: the
    # balancer (127.0.0.1) is trusted, but the client it names (192.0.2.9)
    # is not, so that client's X-Forwarded-For/-Proto are not believed.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.dumps({"client": list(scope["client"]), "scheme": scope["scheme"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    srv = serve(app, lifespan="off", proxy_protocol=True)
    with connect(srv) as sock:
        forged = [("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "https")]
        sock.sendall(v1("192.0.2.9", 5001) + request("GET", "/", forged))
        scope = json.loads(read_response(sock).body)
        assert scope["client"] == ["192.0.2.9", 5001]
        assert scope["scheme"] == "http"


def test_a_proxy_named_by_the_proxy_header_is_believed_if_trusted(serve: Any) -> None:
    # A chain: the header names another trusted proxy (10.0.0.2), whose
    # X-Forwarded-For then gives the client.
    srv = serve(
        scope_echo,
        lifespan="off",
        proxy_protocol=True,
        forwarded_allow_ips="127.0.0.1,10.0.0.2",
    )
    with connect(srv) as sock:
        sock.sendall(v1("10.0.0.2", 5001) + request("GET", "/", [("X-Forwarded-For", "203.0.113.5")]))
        assert json.loads(read_response(sock).body)["client"] == ["203.0.113.5", 0]


def test_without_the_option_a_proxy_header_is_a_bad_request(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off")
    with connect(srv) as sock:
        sock.sendall(v1("192.0.2.7", 51234) + request("GET", "/"))
        reply = read_response(sock)
        assert reply.status == 400


def test_a_header_over_a_unix_socket_from_a_trusted_unix_peer(tmp_path: Path) -> None:
    path = str(tmp_path / "pp.sock")
    config = Config(
        scope_echo, uds=path, lifespan="off", access_log=False, proxy_protocol=True, forwarded_allow_ips="unix:"
    )
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert server.started
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(v2("192.0.2.77", 4444))
            assert get(sock)["client"] == ["192.0.2.77", 4444]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(v2(None))
            assert get(sock)["client"] is None, "LOCAL keeps the Unix socket's (absent) address"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_cli_flag_reads_the_header_in_every_worker(run_cli: Any, workers: str) -> None:
    proc = run_cli("examples.hello:app", "--proxy-protocol", "--workers", workers, "--no-access-log")
    for _ in range(4):  # a few connections, so each worker likely gets one
        with socket.create_connection((proc.host, proc.port), timeout=5) as sock:
            sock.sendall(v1("192.0.2.7", 51234) + request("GET", "/"))
            assert read_response(sock).status == 200
        with socket.create_connection((proc.host, proc.port), timeout=5) as sock:
            sock.sendall(request("GET", "/"))
            assert_closed_silently(sock)
