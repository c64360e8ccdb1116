"""HTTP/2 end to end: the real server against httpx (http2=True), curl
(--http2 upgrade, --http2-prior-knowledge), nghttp, openssl s_client and a
raw `h2` client (tests/http2/_h2client.py) for trailers, 1xx and resets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

sys.path.insert(0, os.path.dirname(__file__))
from _h2client import H2Client  # noqa: E402

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("h2tls")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = d / "cert.pem", d / "key.pem", d / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ca": str(ca_file)}


def tls_opts(certs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in certs.items() if k != "ca"}


def client_ctx(certs: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certs["ca"])


def h2c() -> httpx.Client:
    """h2c with prior knowledge."""
    return httpx.Client(http1=False, http2=True, timeout=10)


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    info = {
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query_string": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "body": len(body),
        "sha": hashlib.sha256(body).hexdigest(),
    }
    data = json.dumps(info).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"connection", b"keep-alive"),
                (b"transfer-encoding", b"chunked"),
                (b"x-app", b"yes"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


# ------------------------------------------------------------ protocol choice


def test_h2c_prior_knowledge_maps_pseudo_headers_into_the_scope(serve: Any) -> None:
    server = serve(scope_app)
    with h2c() as client:
        r = client.get(server.url + "/a%20b/c?x=1&y=2")
    assert r.http_version == "HTTP/2"
    info = r.json()
    assert info["http_version"] == "2"
    assert info["method"] == "GET"
    assert info["scheme"] == "http"
    assert info["path"] == "/a b/c"
    assert info["raw_path"] == "/a%20b/c"
    assert info["query_string"] == "x=1&y=2"
    # :authority reaches the app as a host header.
    assert ["host", f"127.0.0.1:{server.port}"] in info["headers"]
    assert not any(k.startswith(":") for k, _ in info["headers"])
    # HTTP/1.1 connection headers from the app are dropped.
    assert "connection" not in r.headers and "transfer-encoding" not in r.headers
    assert r.headers["x-app"] == "yes" and r.headers["server"] == "ferrule"


def test_tls_alpn_chooses_h2_and_the_scheme_is_https(
    serve: Any, certs: dict[str, str]
) -> None:
    server = serve(scope_app, **tls_opts(certs))
    with httpx.Client(http2=True, verify=client_ctx(certs)) as client:
        r = client.get(server.url + "/tls")
    assert r.http_version == "HTTP/2"
    assert r.json()["scheme"] == "https" and r.json()["http_version"] == "2"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.parametrize(
    "http, expected", [("auto", "ALPN protocol: h2"), ("h1", "No ALPN")]
)
def test_openssl_s_client_alpn_choice(
    serve: Any, certs: dict[str, str], http: str, expected: str
) -> None:
    server = serve(scope_app, http=http, **tls_opts(certs))
    out = subprocess.run(
        ["openssl", "s_client", "-alpn", "h2", "-connect", f"127.0.0.1:{server.port}"],
        input=b"",
        capture_output=True,
        timeout=20,
    ).stdout.decode()
    assert expected in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_upgrade_to_h2c_answers_the_upgrading_request_as_stream_1(
    serve: Any,
) -> None:
    server = serve(scope_app)
    out = subprocess.run(
        ["curl", "-sv", "--http2", server.url + "/up?q=1"],
        capture_output=True,
        timeout=20,
    )
    err = out.stderr.decode()
    assert "101 Switching Protocols" in err
    assert "< HTTP/2 200" in err
    info = json.loads(out.stdout)
    assert info["path"] == "/up" and info["query_string"] == "q=1"
    assert info["http_version"] == "2"
    assert not any(
        k in ("upgrade", "http2-settings", "connection") for k, _ in info["headers"]
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_prior_knowledge_and_tls(serve: Any, certs: dict[str, str]) -> None:
    plain = serve(scope_app)
    out = subprocess.run(
        ["curl", "-si", "--http2-prior-knowledge", plain.url + "/pk"],
        capture_output=True,
        timeout=20,
    ).stdout.decode()
    assert out.startswith("HTTP/2 200")
    secure = serve(scope_app, **tls_opts(certs))
    out = subprocess.run(
        ["curl", "-si", "--http2", "--cacert", certs["ca"], secure.url + "/s"],
        capture_output=True,
        timeout=20,
    ).stdout.decode()
    assert out.startswith("HTTP/2 200")


def test_http_h1_refuses_h2_and_h2_refuses_http_1(serve: Any) -> None:
    only_h1 = serve(scope_app, http="h1")
    with pytest.raises(httpx.HTTPError):
        with h2c() as client:
            client.get(only_h1.url + "/")
    # The upgrade is not taken either: HTTP/1.1 answers.
    r = httpx.get(
        only_h1.url + "/",
        headers={
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "",
        },
    )
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    only_h2 = serve(scope_app, http="h2")
    with pytest.raises(httpx.HTTPError):
        httpx.get(only_h2.url + "/")
    with h2c() as client:
        assert client.get(only_h2.url + "/").json()["http_version"] == "2"


def test_http2_flag_turns_h2_back_on_with_h11(serve: Any) -> None:
    server = serve(scope_app, http="h11", http2=True)
    with h2c() as client:
        assert client.get(server.url + "/").http_version == "HTTP/2"


# ------------------------------------------------------------ many streams


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="needs nghttp")
def test_nghttp_many_concurrent_streams_share_one_connection(serve: Any) -> None:
    server = serve(scope_app, access_log=False)
    before = server.stats()["connections"]
    urls = [f"{server.url}/n{i}" for i in range(60)]
    out = subprocess.run(
        ["nghttp", "-n", "-s", *urls], capture_output=True, timeout=30
    ).stdout.decode()
    assert out.count(" 200 ") == 60 or out.count("200") >= 60, out
    stats = server.stats()
    assert stats["connections"] - before == 1
    assert stats["requests"] >= 60


def test_concurrent_streams_each_get_their_own_response(serve: Any) -> None:
    async def slow_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        # Later streams answer first: responses must not mix.
        n = int(scope["path"].strip("/"))
        await asyncio.sleep(0.002 * (20 - n))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode() * 100})

    server = serve(slow_echo)
    client = H2Client("127.0.0.1", server.port)
    try:
        sids = {client.start(f"/{i}"): i for i in range(20)}
        for sid, i in sids.items():
            reply = client.wait(sid)
            assert reply.status == 200
            assert reply.body == f"/{i}".encode() * 100
    finally:
        client.close()


# ------------------------------------------------------------ bodies


def test_large_upload_with_a_slow_reader_arrives_whole(serve: Any) -> None:
    chunks: list[int] = []

    async def slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        h = hashlib.sha256()
        total = 0
        while True:
            msg = await receive()
            data = msg.get("body", b"")
            h.update(data)
            total += len(data)
            chunks.append(len(data))
            if len(chunks) % 8 == 0:
                await asyncio.sleep(0.001)
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": f"{total} {h.hexdigest()}".encode()}
        )

    # A small window: the client can only send as the app reads.
    server = serve(slow_reader, h2_initial_window_size=65535)
    body = os.urandom(3 * 1024 * 1024 + 17)
    with h2c() as client:
        r = client.post(server.url + "/up", content=body)
    assert r.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
    # The body came in many pieces, none larger than the window allows.
    assert max(chunks) <= 4 * 65535 and len(chunks) > 10


def test_streamed_response_with_more_body(serve: Any) -> None:
    async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(50):
            await send(
                {"type": "http.response.body", "body": b"%d," % i, "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})

    server = serve(streamer)
    with h2c() as client:
        r = client.get(server.url + "/")
    assert r.text == "".join(f"{i}," for i in range(50))


def test_a_big_response_goes_through_flow_control(serve: Any) -> None:
    big = os.urandom(5 * 1024 * 1024)

    async def sender(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(0, len(big), 256 * 1024):
            await send(
                {
                    "type": "http.response.body",
                    "body": big[i : i + 256 * 1024],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    server = serve(sender)
    with h2c() as client:
        r = client.get(server.url + "/")
    assert r.content == big


def test_pathsend_file_is_sent_as_data(serve: Any, tmp_path: Path) -> None:
    f = tmp_path / "blob.bin"
    data = os.urandom(300 * 1024)
    f.write_bytes(data)

    async def files(scope: dict[str, Any], receive: Any, send: Any) -> None:
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
        await send({"type": "http.response.pathsend", "path": str(f)})

    server = serve(files)
    with h2c() as client:
        r = client.get(server.url + "/f")
    assert r.content == data


def test_head_request_and_204_get_no_body(serve: Any) -> None:
    async def no_content(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/204":
            await scope_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"dropped"})

    server = serve(no_content)
    with h2c() as client:
        r = client.head(server.url + "/")
        assert r.status_code == 200 and r.content == b""
        r = client.get(server.url + "/204")
        assert r.status_code == 204 and r.content == b""


# ------------------------------------------------------------ trailers, 1xx


def test_trailers_reach_the_client(serve: Any) -> None:
    async def grpcish(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/grpc")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"payload"})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"grpc-status", b"0"), (b"grpc-message", b"ok")],
            }
        )

    server = serve(grpcish)
    client = H2Client("127.0.0.1", server.port)
    try:
        reply = client.request("/t", headers=[("te", "trailers")])
    finally:
        client.close()
    assert reply.status == 200 and reply.body == b"payload" and reply.ended
    assert (b"grpc-status", b"0") in reply.trailers
    assert (b"grpc-message", b"ok") in reply.trailers


def test_early_hints_arrive_as_a_103_before_the_response(serve: Any) -> None:
    async def hinted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]}
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(hinted)
    client = H2Client("127.0.0.1", server.port)
    try:
        reply = client.request("/")
    finally:
        client.close()
    assert reply.informational and dict(reply.informational[0])[b":status"] == b"103"
    assert dict(reply.informational[0])[b"link"] == b"</s.css>; rel=preload"
    assert reply.status == 200 and reply.body == b"ok"


def test_expect_100_continue_is_answered_when_the_app_reads(serve: Any) -> None:
    server = serve(scope_app)
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = client.start(
            "/e", method="POST", headers=[("expect", "100-continue")], end=False
        )
        reply = client.replies[sid]
        while not reply.informational and client.pump():
            pass
        assert dict(reply.informational[0])[b":status"] == b"100"
        client.send_data(sid, b"abc", end=True)
        reply = client.wait(sid)
    finally:
        client.close()
    assert reply.status == 200 and json.loads(reply.body)["body"] == 3


# ------------------------------------------------------------ resets, errors


def test_reset_mid_body_gives_the_app_http_disconnect(serve: Any) -> None:
    seen: list[str] = []
    done = threading.Event()

    async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            msg = await receive()
            seen.append(msg["type"])
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                break
        done.set()

    server = serve(reader)
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = client.start("/u", method="POST", body=b"x" * 1000, end=False)
        time.sleep(0.1)
        client.reset(sid)
        assert done.wait(5)
    finally:
        client.close()
    assert seen[-1] == "http.disconnect"
    assert "http.request" in seen


def test_send_after_a_reset_raises_the_same_oserror_as_http1(serve: Any) -> None:
    raised: list[BaseException] = []
    done = threading.Event()

    async def forever(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(2000):
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"x" * 1024,
                        "more_body": True,
                    }
                )
                await asyncio.sleep(0.005)
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    server = serve(forever)
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = client.start("/")
        client.wait_headers(sid)
        client.reset(sid)
        assert done.wait(10)
    finally:
        client.close()
    # The same app over HTTP/1.1, its client gone mid-response.
    done.clear()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(100)
    sock.close()
    assert done.wait(10)
    assert len(raised) == 2 and isinstance(raised[0], OSError)
    assert type(raised[0]) is type(raised[1])


def test_a_body_that_stops_coming_resets_the_stream_after_the_body_timeout(
    serve: Any,
) -> None:
    seen: list[str] = []
    done = threading.Event()

    async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            msg = await receive()
            seen.append(msg["type"])
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                break
        done.set()

    server = serve(reader, timeout_request_body=0.3)
    client = H2Client("127.0.0.1", server.port)
    try:
        t0 = time.monotonic()
        sid = client.start("/", method="POST", body=b"part", end=False)
        reply = client.wait(sid)
        assert done.wait(5)
        elapsed = time.monotonic() - t0
    finally:
        client.close()
    assert reply.reset is not None
    assert seen == ["http.request", "http.disconnect"]
    assert 0.25 < elapsed < 3


def test_a_zero_window_stall_resets_the_stream_after_the_send_timeout(
    serve: Any,
) -> None:
    raised: list[BaseException] = []
    done = threading.Event()

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(10):
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"x" * 65536,
                        "more_body": True,
                    }
                )
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    server = serve(big, timeout_send=0.5)
    # The client never opens its window: nothing of the body can be sent.
    client = H2Client("127.0.0.1", server.port, window=0)
    try:
        t0 = time.monotonic()
        sid = client.start("/")
        reply = client.wait(sid)
        assert done.wait(5)
        elapsed = time.monotonic() - t0
    finally:
        client.close()
    assert reply.status == 200 and reply.body == b""
    assert reply.reset is not None
    assert 0.4 < elapsed < 3
    assert raised and isinstance(raised[0], OSError)


def test_limit_request_body_answers_413_per_stream(serve: Any) -> None:
    server = serve(scope_app, limit_request_body=1000)
    with h2c() as client:
        # Announced by content-length, and found out while streaming.
        assert client.post(server.url + "/", content=b"x" * 2000).status_code == 413
        streamed = client.post(server.url + "/", content=iter([b"x" * 600, b"y" * 600]))
        assert streamed.status_code == 413
        # The connection goes on.
        assert client.post(server.url + "/", content=b"x" * 10).json()["body"] == 10


def test_limit_concurrency_answers_503_to_the_stream_over_it(serve: Any) -> None:
    release = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})

    server = serve(slow, limit_concurrency=1)
    client = H2Client("127.0.0.1", server.port)
    try:
        first = client.start("/1")
        time.sleep(0.2)
        second = client.request("/2")
        release.set()
        assert client.wait(first).body == b"slow"
    finally:
        client.close()
    assert second.status == 503


def test_app_error_before_the_response_gives_500_and_the_connection_lives(
    serve: Any,
) -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    server = serve(failing)
    with h2c() as client:
        assert client.get(server.url + "/boom").status_code == 500
        assert client.get(server.url + "/ok").text == "fine"


def test_access_log_and_stats_count_h2_requests(serve: Any) -> None:
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    access = logging.getLogger("ferrule.access")
    level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    try:
        server = serve(scope_app, lifespan="off", access_log=True)
        before = server.stats()
        with h2c() as client:
            for i in range(3):
                client.get(server.url + f"/log{i}")
        time.sleep(0.1)
        after = server.stats()
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert after["requests"] - before["requests"] == 3
    assert after["responses"] - before["responses"] == 3
    lines = [r.getMessage() for r in records if "/log" in r.getMessage()]
    assert len(lines) == 3 and all("HTTP/2" in line for line in lines), lines


# ------------------------------------------------------------ shutdown


def test_a_client_that_ignores_the_goaway_ping_is_closed_anyway(serve: Any) -> None:
    server = serve(scope_app, timeout_keep_alive=0.3, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    client.answer_pings = False
    try:
        sid = client.start("/")
        assert client.wait(sid).status == 200
        t0 = time.monotonic()
        while client.pump():
            pass
        closed_after = time.monotonic() - t0
    finally:
        client.close()
    # GOAWAY(2^31-1) and its PING after one idle period; no PONG: after
    # another, GOAWAY with the last stream and the close.
    assert [g.last_stream_id for g in client.goaways] == [2**31 - 1, sid]
    assert 0.5 < closed_after < 3


def test_an_idle_connection_gets_goaway_after_the_keep_alive_time(serve: Any) -> None:
    server = serve(scope_app, timeout_keep_alive=0.3, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        # Timed from before the request: the server's idle time starts when
        # the stream ends, which may be well before this thread sees the
        # response on a loaded machine.
        t0 = time.monotonic()
        sid = client.start("/")
        assert client.wait(sid).status == 200
        while client.pump():
            pass
        idle = time.monotonic() - t0
    finally:
        client.close()
    assert client.goaways and client.goaways[0].error_code == 0
    assert 0.3 <= idle < 5
    # Counted once the close path ends (after its linger).
    deadline = time.monotonic() + 5
    while (
        server.stats()["closed_keep_alive_timeout"] < 1 and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert server.stats()["closed_keep_alive_timeout"] == 1


def test_graceful_shutdown_sends_goaway_and_lets_the_open_stream_finish(
    serve: Any,
) -> None:
    started = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    server = serve(slow, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        sid = client.start("/slow")
        assert started.wait(5)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        reply = client.wait(sid)
        while len(client.goaways) < 2 and client.pump():
            pass
        stopper.join(10)
    finally:
        client.close()
    assert reply.status == 200 and reply.body == b"finished"
    # GOAWAY(2^31-1) at once, then, after the PING round trip, the last
    # stream id the server processed.
    assert [g.error_code for g in client.goaways] == [0, 0]
    assert client.goaways[0].last_stream_id == 2**31 - 1
    assert client.goaways[1].last_stream_id == sid


def send_what_fits(
    client: H2Client, sid: int, total: int, until: float, patient: bool
) -> int:
    """Sends up to ``total`` body bytes on ``sid`` as the windows allow, reading
    the server's WINDOW_UPDATEs while they are shut. Impatient: stops once
    nothing opens them for 0.3 s. Returns the bytes sent."""
    sent = 0
    client.sock.settimeout(0.3)
    while sent < total and time.monotonic() < until:
        n = min(
            client.conn.local_flow_control_window(sid),
            client.conn.max_outbound_frame_size,
            total - sent,
        )
        if n > 0:
            client.send_data(sid, b"x" * n)
            sent += n
            continue
        try:
            client.pump()
        except socket.timeout:
            if not patient:
                break
    return sent


def test_uploads_whose_app_does_not_read_leave_room_for_one_that_is_read(
    serve: Any,
) -> None:
    """Streams whose app does not read their body yet (a busy app, a full
    thread pool) hold what they sent in the server; the connection's window
    still leaves a stream whose app reads its full window, so its upload
    completes (not at the body timeout)."""
    streams = 5
    released = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            while not released.is_set():  # busy elsewhere: the body waits
                await asyncio.sleep(0.02)
            body = b"held"
        else:
            total = 0
            while True:
                msg = await receive()
                total += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            body = str(total).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server = serve(app, lifespan="off", h2_max_concurrent_streams=streams)
    client = H2Client("127.0.0.1", server.port)
    try:
        client.settings_enable_connect_protocol()  # the server's SETTINGS are in
        # Each holder sends what its window allows, and fills the server.
        for _ in range(streams - 1):
            sid = client.start("/hold", method="POST", end=False)
            send_what_fits(client, sid, 4 << 20, time.monotonic() + 2, patient=False)
        upload = 1 << 20
        sid = client.start("/count", method="POST", end=False)
        sent = send_what_fits(client, sid, upload, time.monotonic() + 5, patient=True)
        assert sent == upload, f"the read stream could send only {sent} bytes"
        client.send_data(sid, b"", end=True)
        client.sock.settimeout(5)
        reply = client.wait(sid)
        assert reply.status == 200 and reply.body == str(upload).encode()
    finally:
        released.set()
        client.close()
