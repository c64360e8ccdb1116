"""HTTPS (--ssl-*): real clients (httpx, curl, openssl s_client, raw ssl
sockets) against the real server, certificates made with trustme."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

pytestmark = [pytest.mark.timeout(60), pytest.mark.engine]


@dataclass
class Certs:
    dir: Path
    ca: trustme.CA
    cert: Path
    key: Path
    ca_file: Path
    cert_pem: str

    def client_context(self, **versions: Any) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        for name, value in versions.items():
            setattr(ctx, name, value)
        return ctx


def make_certs(directory: Path, name: str = "server") -> Certs:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert = directory / f"{name}-cert.pem"
    key = directory / f"{name}-key.pem"
    ca_file = directory / f"{name}-ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(
        directory, ca, cert, key, ca_file, issued.cert_chain_pems[0].bytes().decode()
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def tls(certs: Certs, **kwargs: Any) -> dict[str, Any]:
    return {"ssl_certfile": str(certs.cert), "ssl_keyfile": str(certs.key), **kwargs}


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    info = scope["extensions"].get("tls")
    body = repr({"scheme": scope["scheme"], "tls": info}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def scope_of(response: httpx.Response) -> dict[str, Any]:
    value: dict[str, Any] = eval(response.text)  # our own repr() of plain data
    return value


@pytest.mark.parametrize(
    "version, number",
    [(ssl.TLSVersion.TLSv1_3, 0x0304), (ssl.TLSVersion.TLSv1_2, 0x0303)],
)
def test_httpx_over_tls_sees_https_scope_and_tls_extension(
    serve: Any, certs: Certs, version: ssl.TLSVersion, number: int
) -> None:
    srv = serve(scope_app, **tls(certs))
    ctx = certs.client_context(minimum_version=version, maximum_version=version)
    with httpx.Client(verify=ctx) as client:
        seen = [scope_of(client.get(srv.url + "/")) for _ in range(3)]
    assert srv.stats()["connections"] == 1  # keep-alive over TLS
    scope = seen[0]
    assert scope["scheme"] == "https"
    info = scope["tls"]
    assert info["tls_version"] == number
    assert info["server_cert"] == certs.cert_pem
    assert info["client_cert_chain"] == []
    assert info["client_cert_name"] is None
    assert info["client_cert_error"] is None
    suites = {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers()}
    assert info["cipher_suite"] in suites


@pytest.mark.parametrize("flags", [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]])
def test_curl_over_tls(serve: Any, certs: Certs, flags: list[str]) -> None:
    srv = serve(scope_app, **tls(certs))
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http1.1",
            "--cacert",
            str(certs.ca_file),
            *flags,
            "-w",
            "\n%{http_version} %{ssl_verify_result}",
            srv.url + "/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    body, tail = out.stdout.rsplit("\n", 1)
    assert tail == "1.1 0"
    expected = 0x0303 if "1.2" in flags else 0x0304
    assert eval(body)["tls"]["tls_version"] == expected


def test_openssl_s_client_alpn_and_cipher(serve: Any, certs: Certs) -> None:
    srv = serve(scope_app, **tls(certs))
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{srv.port}",
            "-alpn",
            "h2,http/1.1",
            "-CAfile",
            str(certs.ca_file),
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )
    # HTTP/2 is offered first (tests/http2 for what follows).
    assert "ALPN protocol: h2" in out.stdout, out.stdout
    assert "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out.stdout
    assert "Verify return code: 0 (ok)" in out.stdout


def test_encrypted_pkcs8_key_with_its_password(
    serve: Any, certs: Certs, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    encrypted = tmp_path / "key-enc.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    assert b"ENCRYPTED PRIVATE KEY" in encrypted.read_bytes()
    srv = serve(
        scope_app,
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(encrypted),
        ssl_keyfile_password="s3cret",
    )
    response = httpx.get(srv.url + "/", verify=certs.client_context())
    assert scope_of(response)["scheme"] == "https"


def test_key_in_the_certificate_file(serve: Any, certs: Certs, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(certs.cert.read_bytes() + certs.key.read_bytes())
    srv = serve(scope_app, ssl_certfile=str(both))
    assert httpx.get(srv.url + "/", verify=certs.client_context()).status_code == 200


# ------------------------------------------------------------- the wire


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in `data`."""
    records, pos = [], 0
    while pos + 5 <= len(data):
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        records.append((data[pos], length))
        pos += 5 + length
    assert pos == len(data), "a record cut short"
    return records


class RawTls:
    """A TLS client over a plain socket through memory BIOs, so the test
    sees the records as they arrive."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._push()
                self.incoming.write(self.sock.recv(65536))
        self._push()

    def _push(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def request(self, raw: bytes, until: bytes) -> tuple[bytes, list[tuple[int, int]]]:
        """Sends `raw`, reads until the plaintext ends with `until`; returns
        the plaintext and the records it came in."""
        self.obj.write(raw)
        self._push()
        wire, plain = b"", b""
        while not plain.endswith(until):
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            wire += chunk
            self.incoming.write(chunk)
            try:
                while True:
                    plain += self.obj.read(65536)
            except ssl.SSLWantReadError:
                pass
        return plain, tls_records(wire)

    def close(self) -> None:
        self.sock.close()


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello, world"})


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_small_response_is_one_record_and_one_write_syscall(
    serve: Any, certs: Certs, version: ssl.TLSVersion
) -> None:
    srv = serve(hello, **tls(certs))
    ctx = certs.client_context(minimum_version=version, maximum_version=version)
    client = RawTls(srv.port, ctx)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        # The first response may share the wire with session tickets.
        client.request(request, b"hello, world")
        before = srv.stats()["write_syscalls"]
        for _ in range(3):
            plain, records = client.request(request, b"hello, world")
            assert plain.startswith(b"HTTP/1.1 200 OK\r\n")
            assert records == [(23, records[0][1])], records
        assert srv.stats()["write_syscalls"] - before == 3
        # A streamed response's chunks, sent without an await between them,
        # leave together as over TCP: one record, one write.
        before = srv.stats()["write_syscalls"]
        plain, records = client.request(
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n"
        )
        assert b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n" in plain
        assert len(records) == 1, records
        assert srv.stats()["write_syscalls"] - before == 1
    finally:
        client.close()


async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = bytes(range(256)) * 4096 * 5  # 5 MiB
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_big_response_to_a_slow_reader_arrives_whole(serve: Any, certs: Certs) -> None:
    srv = serve(big, **tls(certs))
    with httpx.Client(verify=certs.client_context()) as client:
        with client.stream("GET", srv.url + "/") as response:
            got = bytearray()
            for chunk in response.iter_bytes():
                got += chunk
                if len(got) < 1 << 20:
                    time.sleep(0.01)  # let the server's socket fill up
    assert bytes(got) == bytes(range(256)) * 4096 * 5


def test_pathsend_file_over_tls(serve: Any, certs: Certs, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.pathsend", "path": str(path)})

    srv = serve(app, **tls(certs))
    with httpx.Client(verify=certs.client_context()) as client:
        for _ in range(2):
            response = client.get(srv.url + "/")
            assert response.content == data


# ------------------------------------------------------------- hardening


def wait_stat(srv: Any, key: str, value: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while srv.stats()[key] < value and time.monotonic() < deadline:
        time.sleep(0.02)
    result: int = srv.stats()[key]
    return result


def test_garbage_bytes_close_with_tls_error(
    serve: Any, certs: Certs, raw_client: Any
) -> None:
    srv = serve(hello, **tls(certs))
    for garbage in (
        b"\x00\x01\x02garbage\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello" + b"\xff" * 64,
    ):
        c = raw_client(srv)
        c.send(garbage)
        assert c.closed_by_server()
        c.close()
    assert wait_stat(srv, "closed_tls_error", 2) == 2
    # The server still serves.
    assert (
        httpx.get(srv.url + "/", verify=certs.client_context()).text == "hello, world"
    )


def test_plain_http_on_a_tls_port(serve: Any, certs: Certs, raw_client: Any) -> None:
    srv = serve(hello, **tls(certs))
    c = raw_client(srv)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_until_eof(3) == b""
    srv2 = serve(hello, **tls(certs, ssl_refuse_plain=True))
    c = raw_client(srv2)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = c.read_until_eof(3)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"plain HTTP sent to an HTTPS port\r\n\r\n")
    assert wait_stat(srv2, "closed_tls_error", 1) == 1


def test_stalled_handshake_is_closed_by_the_header_deadline(
    serve: Any, certs: Certs
) -> None:
    srv = serve(hello, **tls(certs, timeout_request_header=0.5, timeout_keep_alive=30))
    # The first bytes of a real ClientHello, then nothing.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = certs.client_context().wrap_bio(
        incoming, outgoing, server_hostname="localhost"
    )
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello_bytes = outgoing.read()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    started = time.monotonic()
    sock.sendall(hello_bytes[:20])
    assert sock.recv(100) == b""
    assert 0.4 < time.monotonic() - started < 3
    sock.close()
    assert wait_stat(srv, "closed_header_timeout", 1) == 1


def test_truncated_client_hellos_log_nothing_above_debug(
    serve: Any, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    srv = serve(hello, **tls(certs))
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        sock.close()
    assert wait_stat(srv, "connections", 20) == 20
    time.sleep(0.2)
    noisy = [r for r in caplog.records if r.levelno >= 30 and "ferrule" in r.name]
    assert noisy == []


# ------------------------------------------------------- client certificates


def client_ctx(
    certs: Certs, issuer: trustme.CA | None = None, **versions: Any
) -> ssl.SSLContext:
    ctx = certs.client_context(**versions)
    if issuer is not None:
        issuer.issue_cert("alice@example.org", common_name="alice").configure_cert(ctx)
    return ctx


def handshake_fails(srv: Any, ctx: ssl.SSLContext) -> bool:
    try:
        httpx.get(srv.url + "/", verify=ctx)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


def test_client_certificate_required(serve: Any, certs: Certs) -> None:
    srv = serve(
        scope_app, **tls(certs, ssl_cert_reqs=2, ssl_ca_certs=str(certs.ca_file))
    )
    scope = scope_of(httpx.get(srv.url + "/", verify=client_ctx(certs, certs.ca)))
    info = scope["tls"]
    assert len(info["client_cert_chain"]) >= 1  # trustme sends its CA too
    assert info["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert info["client_cert_name"].startswith("CN=alice,")
    assert info["client_cert_error"] is None
    # No certificate, or one from another CA: no handshake.
    assert handshake_fails(srv, client_ctx(certs))
    assert handshake_fails(srv, client_ctx(certs, trustme.CA()))
    assert wait_stat(srv, "closed_tls_error", 2) == 2


def test_client_certificate_optional(serve: Any, certs: Certs) -> None:
    srv = serve(
        scope_app, **tls(certs, ssl_cert_reqs=1, ssl_ca_certs=str(certs.ca_file))
    )
    with_cert = scope_of(httpx.get(srv.url + "/", verify=client_ctx(certs, certs.ca)))
    assert with_cert["tls"]["client_cert_name"].startswith("CN=alice,")
    without = scope_of(httpx.get(srv.url + "/", verify=client_ctx(certs)))
    assert without["tls"]["client_cert_chain"] == []
    assert without["tls"]["client_cert_name"] is None
    # A certificate that does not verify is refused even when optional.
    assert handshake_fails(srv, client_ctx(certs, trustme.CA()))


def test_no_client_certificate_asked_by_default(serve: Any, certs: Certs) -> None:
    srv = serve(scope_app, **tls(certs, ssl_ca_certs=str(certs.ca_file)))
    scope = scope_of(httpx.get(srv.url + "/", verify=client_ctx(certs, certs.ca)))
    assert scope["tls"]["client_cert_chain"] == []


# ------------------------------------------------------ versions, ciphers


def test_ssl_version_5_is_tls12_only(serve: Any, certs: Certs) -> None:
    srv = serve(scope_app, **tls(certs, ssl_version=5))
    v12 = ssl.TLSVersion.TLSv1_2
    v13 = ssl.TLSVersion.TLSv1_3
    ok = httpx.get(srv.url + "/", verify=certs.client_context(maximum_version=v12))
    assert scope_of(ok)["tls"]["tls_version"] == 0x0303
    assert handshake_fails(srv, certs.client_context(minimum_version=v13))


def test_ssl_version_772_is_tls13_only(serve: Any, certs: Certs) -> None:
    srv = serve(scope_app, **tls(certs, ssl_version=772))
    v12 = ssl.TLSVersion.TLSv1_2
    assert handshake_fails(srv, certs.client_context(maximum_version=v12))
    ok = httpx.get(srv.url + "/", verify=certs.client_context())
    assert scope_of(ok)["tls"]["tls_version"] == 0x0304


def test_ssl_ciphers_restrict_tls12_suites(serve: Any, certs: Certs) -> None:
    srv = serve(scope_app, **tls(certs, ssl_ciphers="ECDHE+CHACHA20:!aNULL"))
    v12 = ssl.TLSVersion.TLSv1_2
    ctx = certs.client_context(maximum_version=v12)
    scope = scope_of(httpx.get(srv.url + "/", verify=ctx))
    assert scope["tls"]["cipher_suite"] == 0xCCA9  # ECDHE-ECDSA-CHACHA20-POLY1305
    ctx = certs.client_context(maximum_version=v12)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert handshake_fails(srv, ctx)


# ------------------------------------------------ TLS and plain on one port


def test_tls_and_plain_on_one_port_interleaved_with_keep_alive(
    serve: Any, certs: Certs
) -> None:
    srv = serve(scope_app, **tls(certs, ssl_and_plain=True))
    plain_url = f"http://127.0.0.1:{srv.port}/"
    with httpx.Client(verify=certs.client_context()) as https, httpx.Client() as http:
        for _ in range(5):
            assert scope_of(https.get(srv.url + "/"))["scheme"] == "https"
            plain = scope_of(http.get(plain_url))
            assert plain == {"scheme": "http", "tls": None}
    # One connection per client: both kept alive.
    assert srv.stats()["connections"] == 2
    assert srv.stats()["requests"] == 10
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs.ca_file), srv.url + "/", plain_url],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert "'scheme': 'https'" in out.stdout and "'scheme': 'http'" in out.stdout


async def client_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = repr((scope["scheme"], scope["client"][0])).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("and_plain", [False, True])
def test_proxy_protocol_header_before_the_tls_handshake(
    serve: Any, certs: Certs, and_plain: bool
) -> None:
    srv = serve(client_app, **tls(certs, proxy_protocol=True, ssl_and_plain=and_plain))
    header = f"PROXY TCP4 203.0.113.7 127.0.0.1 5555 {srv.port}\r\n".encode()
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    raw.sendall(header)
    sock = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert data.endswith(b"('https', '203.0.113.7')"), data
    if and_plain:
        plain = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        plain.sendall(
            header + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := plain.recv(4096):
            data += chunk
        plain.close()
        assert data.endswith(b"('http', '203.0.113.7')"), data


def test_a_failed_handshake_is_one_debug_line(
    serve: Any, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="ferrule.error")
    srv = serve(hello, **tls(certs), log_level="debug")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"\x16\x03\x01\x00\x05hello")
    assert sock.recv(100)[:1] in (b"", b"\x15")  # closed, maybe after an alert
    sock.close()
    wait_stat(srv, "closed_tls_error", 1)
    time.sleep(0.1)
    lines = [
        r.getMessage() for r in caplog.records if "closed: tls_error" in r.getMessage()
    ]
    assert len(lines) == 1, lines
    assert caplog.records and all(
        r.levelname == "DEBUG" for r in caplog.records if "Connection" in r.getMessage()
    )


# ------------------------------------------------------------- WebSockets


def test_websocket_over_tls_is_wss_with_the_tls_extension(
    serve: Any, certs: Certs
) -> None:
    from websockets.sync.client import connect as ws_connect

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        info = scope["extensions"].get("tls") or {}
        message = await receive()
        reply = f"{scope['scheme']} {info.get('tls_version')} {message['text']}"
        await send({"type": "websocket.send", "text": reply})
        await send({"type": "websocket.close"})

    srv = serve(app, lifespan="off", **tls(certs))
    url = f"wss://localhost:{srv.port}/"
    with ws_connect(url, ssl=certs.client_context(), open_timeout=5) as ws:
        ws.send("hello")
        scheme, version, text = str(ws.recv(timeout=5)).split()
    assert scheme == "wss" and text == "hello"
    assert version in (
        "771",
        "772",
    ), version  # 0x0303 or 0x0304, as the ASGI TLS extension says
