"""The Starlette and Quart examples answer over HTTP/2 (h2c with prior
knowledge, and TLS with ALPN h2) exactly as over HTTP/1.1: status, headers
(but the HTTP/1.1 framing ones), bodies, streamed responses, request
bodies (a request with a cookie split over several fields too)."""

from __future__ import annotations

import os
import ssl
from typing import Any, Callable

import httpx
import pytest
import trustme

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

pytest.importorskip("starlette")

# Headers that differ by design: the date, and HTTP/1.1's framing (HTTP/2
# frames the body itself).
IGNORED = {"date", "transfer-encoding", "connection"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("h2fw")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    issued.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {
        "cert": str(d / "cert.pem"),
        "key": str(d / "key.pem"),
        "ca": str(d / "ca.pem"),
    }


def summary(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in r.headers.items() if k not in IGNORED}
    return r.status_code, headers, r.content


def compare(
    plain: Any,
    secure: Any,
    ca: str,
    calls: list[Callable[[httpx.Client, str], httpx.Response]],
) -> None:
    """Each call over HTTP/1.1, h2c and h2 gives the same answer."""
    ctx = ssl.create_default_context(cafile=ca)
    with (
        httpx.Client(timeout=10) as h1,
        httpx.Client(http1=False, http2=True, timeout=10) as h2c,
        httpx.Client(http2=True, verify=ctx, timeout=10) as h2,
    ):
        for call in calls:
            one = call(h1, plain.url)
            assert one.http_version == "HTTP/1.1"
            clear = call(h2c, plain.url)
            assert clear.http_version == "HTTP/2"
            tls = call(h2, secure.url)
            assert tls.http_version == "HTTP/2"
            assert summary(clear) == summary(one)
            assert summary(tls) == summary(one)


BODY = os.urandom(200_000)

STARLETTE_CALLS: list[Callable[[httpx.Client, str], httpx.Response]] = [
    lambda c, u: c.get(u + "/"),
    lambda c, u: c.get(u + "/json", params={"a": "1", "b": "\u20ac"}),
    lambda c, u: c.get(u + "/stream"),
    lambda c, u: c.post(
        u + "/echo", content=b"hello", headers={"content-type": "text/x"}
    ),
    lambda c, u: c.post(u + "/echo", content=BODY),
    lambda c, u: c.post(u + "/echo", content=iter([b"a" * 1000, b"b" * 70_000])),
    lambda c, u: c.get(u + "/missing"),
    lambda c, u: c.put(u + "/echo", content=b"x"),
    lambda c, u: c.head(u + "/"),
]


def test_starlette_over_h2_and_h2c_as_over_http_1_1(
    serve: Any, tls_files: dict[str, str]
) -> None:
    from examples.starlette_app import app

    plain = serve(app, lifespan="on")
    secure = serve(
        app, lifespan="on", ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"]
    )
    compare(plain, secure, tls_files["ca"], STARLETTE_CALLS)
    # /state has the lifespan's start time, which differs per server: one
    # server's, over both protocols.
    with (
        httpx.Client() as h1,
        httpx.Client(http1=False, http2=True) as h2c,
    ):
        assert summary(h2c.get(plain.url + "/state")) == summary(
            h1.get(plain.url + "/state")
        )


QUART_CALLS: list[Callable[[httpx.Client, str], httpx.Response]] = [
    lambda c, u: c.get(u + "/"),
    lambda c, u: c.get(u + "/json", params={"x": "y"}),
    lambda c, u: c.post(
        u + "/echo", content=b"quart body", headers={"content-type": "text/y"}
    ),
    lambda c, u: c.post(u + "/echo", content=BODY),
    lambda c, u: c.get(u + "/nope"),
]


def test_quart_over_h2_and_h2c_as_over_http_1_1(
    serve: Any, tls_files: dict[str, str]
) -> None:
    pytest.importorskip("quart")
    from examples.quart_app import app

    plain = serve(app, lifespan="on")
    secure = serve(
        app, lifespan="on", ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"]
    )
    compare(plain, secure, tls_files["ca"], QUART_CALLS)


def test_split_cookie_fields_reach_the_app_as_one(serve: Any) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def cookies(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        response = JSONResponse(Request(scope, receive).cookies)
        await response(scope, receive, send)

    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from _h2client import H2Client

    server = serve(cookies, lifespan="off")
    client = H2Client("127.0.0.1", server.port)
    try:
        reply = client.request("/", headers=[("cookie", "a=1"), ("cookie", "b=2")])
    finally:
        client.close()
    assert reply.status == 200
    assert reply.body == b'{"a":"1","b":"2"}'
