"""Strict HTTP/1.1 parsing (issue 4), each case over a real socket.

A request whose framing is in doubt is refused with 400 (or 501 / 505 where
the issue allows it) and the connection is closed: after a bad head the server
cannot know where the next request starts, so it must not read one. The app
is never called for a refused head. A chunked body that turns out malformed
after the app started gives the app ``http.disconnect`` -- never a truncated
body marked complete -- and closes the connection.

Response side: header names/values with CR, LF or NUL from the app are
refused with a 500 (logged) and never written. The access log escapes
control characters and ANSI sequences in the path.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import pytest

from _rawhttp import (
    client_disconnected,
    Recorder,
    capture_log,
    connect,
    exchange,
    read_response,
    request,
    start_server,
    wait_for,
)

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

CLOSE_WAIT = 3.0  # seconds to wait for the server to close after an error


@pytest.fixture(scope="module")
def shared_server() -> Iterator[tuple[Any, Recorder]]:
    """One server for the many refused-head cases (a refused head never
    reaches the app, so the cases cannot disturb each other)."""
    app = Recorder()
    running = start_server(app, lifespan="off")
    yield running, app
    running.stop()


@pytest.fixture
def refusing(shared_server: tuple[Any, Recorder]) -> tuple[Any, Recorder]:
    running, app = shared_server
    app.calls.clear()
    app.messages.clear()
    return running, app


def head(*lines: str | bytes, body: bytes = b"") -> bytes:
    out = b""
    for line in lines:
        out += (line.encode("latin-1") if isinstance(line, str) else line) + b"\r\n"
    return out + b"\r\n" + body


def assert_refused(served: Any, app: Recorder, data: bytes, statuses: tuple[int, ...]) -> None:
    """The server answers one of ``statuses``, closes, never calls the app, and
    does not answer a request pipelined behind the bad one."""
    before = served.stats()["bad_requests"]
    pipelined = request("GET", "/after-the-bad-one")
    reply = exchange(served, data + pipelined, timeout=CLOSE_WAIT)
    assert reply.status in statuses, f"expected {statuses}, got {reply.raw[:200]!r}"
    assert reply.closed, f"connection left open after {reply.status}"
    assert reply.extra() == b"", f"more than one response: {reply.raw!r}"
    assert app.calls == [], f"app was called for a refused request: {app.calls[0]['path']!r}"
    assert served.stats()["bad_requests"] > before


# ---------------------------------------------------------------- head level

BAD_400: list[Any] = [
    # framing: Content-Length and Transfer-Encoding together
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: 5",
                      "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                 id="cl-then-te"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
                      "Content-Length: 5", body=b"0\r\n\r\n"),
                 id="te-then-cl"),
    # Content-Length values
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: 5",
                      "Content-Length: 6", body=b"hello!"),
                 id="two-differing-cl"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 6", body=b"hello!"),
                 id="cl-list-differing"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: +5", body=b"hello"),
                 id="cl-plus-sign"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: -1", body=b"hello"),
                 id="cl-negative"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: 0x5", body=b"hello"),
                 id="cl-hex"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: 5 5", body=b"hello"),
                 id="cl-inner-space"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length: ", body=b"hello"),
                 id="cl-empty"),
    pytest.param(head("POST / HTTP/1.1", "Host: a",
                      "Content-Length: 18446744073709551616", body=b"hello"),
                 id="cl-overflow-2^64"),
    pytest.param(head("POST / HTTP/1.1", "Host: a",
                      "Content-Length: 99999999999999999999999999999", body=b"hello"),
                 id="cl-overflow-huge"),
    # Transfer-Encoding not exactly one final "chunked"
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, identity",
                      body=b"0\r\n\r\n"),
                 id="te-chunked-identity"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
                      "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                 id="te-two-chunked-lines"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, chunked",
                      body=b"0\r\n\r\n"),
                 id="te-chunked-chunked"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: xchunked",
                      body=b"0\r\n\r\n"),
                 id="te-xchunked"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunkedx",
                      body=b"0\r\n\r\n"),
                 id="te-chunkedx"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: identity",
                      body=b"0\r\n\r\n"),
                 id="te-identity"),
    pytest.param(head("POST / HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                 id="te-in-http10"),
    # header syntax
    pytest.param(head("GET / HTTP/1.1", "Host: a", "X-A: one", " two"),
                 id="obs-fold-space"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", "X-A: one", "\ttwo"),
                 id="obs-fold-tab"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length : 5", body=b"hello"),
                 id="space-before-colon"),
    pytest.param(head("POST / HTTP/1.1", "Host: a", "Content-Length\t: 5", body=b"hello"),
                 id="tab-before-colon"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", "X-A no colon"),
                 id="header-without-colon"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", ": empty-name"),
                 id="empty-header-name"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", "X(A): bad-name"),
                 id="header-name-not-token"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\x00b"), id="value-nul"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\x0bb"), id="value-vt"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\x0cb"), id="value-ff"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\x7fb"), id="value-del"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\x1bb"), id="value-esc"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", b"X-A: a\rb"), id="value-bare-cr"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", id="bare-lf-in-head"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", id="lf-only-head"),
    # Host
    pytest.param(head("GET / HTTP/1.1"), id="http11-no-host"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", "Host: b"), id="http11-two-hosts"),
    pytest.param(head("GET / HTTP/1.1", "Host: a", "Host: a"), id="http11-two-same-hosts"),
    pytest.param(head("GET / HTTP/1.1", "Host: a b"), id="host-with-space"),
    # request line
    pytest.param(head("GET / HTTP/1.1 extra", "Host: a"), id="line-extra-token"),
    pytest.param(head("GET  / HTTP/1.1", "Host: a"), id="line-double-space"),
    pytest.param(head("GET /", "Host: a"), id="line-no-version"),
    pytest.param(head(" / HTTP/1.1", "Host: a"), id="line-no-method"),
    pytest.param(head("G(T / HTTP/1.1", "Host: a"), id="method-not-token"),
    pytest.param(b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n", id="line-leading-nul"),
    # request target
    pytest.param(head("GET foo HTTP/1.1", "Host: a"), id="target-no-slash"),
    pytest.param(head("GET /a\x7fb HTTP/1.1", "Host: a"), id="target-del"),
    pytest.param(head(b"GET /a\x00b HTTP/1.1", "Host: a"), id="target-nul"),
    pytest.param(head(b"GET /a\x1b[31mb HTTP/1.1", "Host: a"), id="target-esc"),
    pytest.param(head("GET http:// HTTP/1.1", "Host: a"), id="target-absolute-no-authority"),
]


@pytest.mark.parametrize("data", BAD_400)
def test_malformed_head_gets_400_and_close(refusing, data):
    served, app = refusing
    assert_refused(served, app, data, (400,))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked",
                          body=b"0\r\n\r\n"), id="te-gzip-chunked"),
        pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip",
                          "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                     id="te-gzip-line-then-chunked-line"),
        pytest.param(head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: deflate, chunked",
                          body=b"0\r\n\r\n"), id="te-deflate-chunked"),
    ],
)
def test_unimplemented_transfer_coding_gets_400_or_501_and_close(refusing, data):
    served, app = refusing
    assert_refused(served, app, data, (400, 501))


@pytest.mark.parametrize(
    "version", ["http/1.1", "HTTP/1", "HTTP/1.1.1", "FOO/1.1", "HTTP/1.x", "HTTP/11"]
)
def test_malformed_version_gets_400_or_505_and_close(refusing, version):
    served, app = refusing
    assert_refused(served, app, head(f"GET / {version}", "Host: a"), (400, 505))


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/0.9"])
def test_unknown_http_version_gets_505(refusing, version):
    served, app = refusing
    assert_refused(served, app, head(f"GET / {version}", "Host: a"), (505,))


def test_well_formed_requests_still_pass(serve):
    """Control for the cases above: the same server accepts the valid forms."""
    app = Recorder()
    served = serve(app, lifespan="off")
    good = [
        head("POST / HTTP/1.1", "Host: a", "Content-Length: 5", body=b"hello"),
        head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
             body=b"5\r\nhello\r\n0\r\n\r\n"),
        head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: Chunked",
             body=b"5;name=val\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
        head("GET /x HTTP/1.1", "Host: a", b"X-A: tab\there obs-text \xe9"),
        head("OPTIONS * HTTP/1.1", "Host: a"),
        head("GET http://a/abs?q=1 HTTP/1.1", "Host: a"),
        head("GET / HTTP/1.0"),  # last: the server closes after it
    ]
    sock = connect(served)
    for i, data in enumerate(good):
        sock.sendall(data)
        reply = read_response(sock)
        assert reply.status == 200, f"valid request {i} refused: {data!r} -> {reply.raw[:100]!r}"
    assert served.stats()["bad_requests"] == 0
    assert app.body_of(0) == b"hello"
    assert app.body_of(1) == b"hello"
    assert app.body_of(2) == b"hello"


# ---------------------------------------------------------------- chunked body

BAD_CHUNKED: list[Any] = [
    pytest.param(b"5\r\nhelloXX\r\n0\r\n\r\n", id="data-not-followed-by-crlf"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", id="data-followed-by-bare-lf"),
    pytest.param(b"5\nhello\n0\n\n", id="lf-only-line-ends"),
    pytest.param(b"5\rhello\r\n0\r\n\r\n", id="size-line-bare-cr"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="size-0x-prefix"),
    pytest.param(b"+5\r\nhello\r\n0\r\n\r\n", id="size-plus-sign"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="size-negative"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", id="size-empty"),
    pytest.param(b"5 5\r\nhello\r\n0\r\n\r\n", id="size-inner-space"),
    pytest.param(b"g\r\nhello\r\n0\r\n\r\n", id="size-not-hex"),
    pytest.param(b"10000000000000000\r\nhello\r\n0\r\n\r\n", id="size-2^64"),
    pytest.param(b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", id="size-over-64-bits"),
    pytest.param(b"5;ext=a\rb\r\nhello\r\n0\r\n\r\n", id="extension-with-cr"),
    pytest.param(b"5;ext=a\nb\r\nhello\r\n0\r\n\r\n", id="extension-with-lf"),
    pytest.param(b"5;ext=\x00\r\nhello\r\n0\r\n\r\n", id="extension-with-nul"),
    pytest.param(b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n", id="trailer-without-colon"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: a\r\n folded\r\n\r\n", id="trailer-obs-fold"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n", id="trailer-space-before-colon"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n", id="trailer-value-nul"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: a\nX-U: b\r\n\r\n", id="trailer-bare-lf"),
    pytest.param(b"5\r\nhello\r\n0\r\n\n", id="last-chunk-ends-with-bare-lf"),
]


@pytest.mark.parametrize("body", BAD_CHUNKED)
def test_bad_chunked_body_disconnects_app_and_closes(serve, body):
    """The app reads the body: it must end with http.disconnect (never a
    final ``more_body=False`` chunk), and the connection closes without a
    success response."""
    app = Recorder(read_body=True)
    served = serve(app, lifespan="off")
    data = head("POST /upload HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", body=body)
    reply = exchange(served, data + request("GET", "/after"), timeout=CLOSE_WAIT)
    assert reply.closed, f"connection left open after a bad chunked body: {reply.raw!r}"
    assert reply.extra() == b"", f"request after a bad body was served: {reply.raw!r}"
    if served.stats()["requests"]:  # the engine may also refuse before starting the app
        wait_for(lambda: app.done, timeout=3)
        msgs = app.messages[0]
        complete = [m for m in msgs if m["type"] == "http.request" and not m.get("more_body")]
        assert not complete, f"truncated/invalid body passed on as complete: {msgs!r}"
        assert msgs[-1]["type"] == "http.disconnect", msgs
        assert [c["path"] for c in app.calls] == ["/upload"]


@pytest.mark.parametrize("body", [BAD_CHUNKED[0], BAD_CHUNKED[9]])
def test_bad_chunked_body_is_never_answered_with_success(serve, body):
    """After a framing error the engine has told the app the client is gone
    (http.disconnect): the app's following send() must not put a 2xx on the
    wire -- the client would take its malformed request as accepted. The
    answer is a 400 or nothing, and the app's send raises."""
    app = Recorder(read_body=True)
    served = serve(app, lifespan="off")
    data = head("POST /upload HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", body=body)
    reply = exchange(served, data, timeout=CLOSE_WAIT)
    assert reply.closed
    assert reply.status in (None, 400), f"bad chunked body answered {reply.raw[:200]!r}"
    wait_for(lambda: app.done, timeout=3)
    assert any(isinstance(e, client_disconnected()) for e in app.errors), app.errors


# ---------------------------------------------------------------- response side


@pytest.fixture
def error_records() -> Iterator[list[logging.LogRecord]]:
    with capture_log("ferrule.error") as records:
        yield records


def header_app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"INJECTED-BODY"})

    return app


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"x-a", b"v\r\nX-Injected: 1")], id="value-crlf"),
        pytest.param([(b"x-a", b"v\nX-Injected: 1")], id="value-lf"),
        pytest.param([(b"x-a", b"v\rX-Injected: 1")], id="value-cr"),
        pytest.param([(b"x-a", b"v\x00X-Injected: 1")], id="value-nul"),
        pytest.param([(b"x-a\r\nX-Injected", b"1")], id="name-crlf"),
        pytest.param([(b"x-a\nX-Injected", b"1")], id="name-lf"),
        pytest.param([(b"x-a\x00X-Injected", b"1")], id="name-nul"),
        pytest.param([(b"location", b"/ok\r\n\r\nX-Injected-Body")], id="value-splits-body"),
        pytest.param([(b"x-ok", b"fine"), (b"set-cookie", b"a=1\r\nX-Injected: 1")],
                     id="second-header-crlf"),
    ],
)
def test_app_header_with_cr_lf_nul_gives_500_and_is_never_written(serve, error_records, headers):
    served = serve(header_app(headers), lifespan="off")
    sock = connect(served)
    sock.sendall(request("GET", "/"))
    reply = read_response(sock)
    assert reply.status == 500, reply.raw
    assert b"injected" not in reply.raw.lower(), f"app bytes reached the wire: {reply.raw!r}"
    assert b"\x00" not in reply.raw
    # only the 500's own lines: every line ends with CRLF, no bare CR / LF
    head_bytes = reply.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head_bytes.replace(b"\r\n", b"")
    assert b"\r" not in head_bytes.replace(b"\r\n", b"")
    wait_for(lambda: any(r.levelno >= logging.ERROR for r in error_records), timeout=2)


# ---------------------------------------------------------------- access log


@pytest.fixture
def access_records() -> Iterator[list[logging.LogRecord]]:
    with capture_log("ferrule.access", logging.INFO) as records:
        yield records


def _controls(text: str) -> list[str]:
    return [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]


def test_access_log_escapes_control_characters_and_ansi_in_path(serve, access_records):
    app = Recorder(read_body=False)
    served = serve(app, lifespan="off", access_log=True)
    targets = [
        "/ansi/%1b[31mRED%1b[0m",  # ESC [ 31 m, percent-encoded
        "/bell/%07%08%0d%0aFAKE%20200",  # BEL, BS, CR LF: a forged second log line
        "/c1/%c2%9b31mC1CSI",  # U+009B, the one-byte CSI
        "/query?x=%1b[2J",
    ]
    sock = connect(served)
    for target in targets:
        sock.sendall(request("GET", target))
        reply = read_response(sock)
        assert reply.status == 200, reply.raw
    # raw control / C1 bytes in the target: refused (400) or logged escaped
    for raw_target in (b"/raw\x1b[31mRAW", b"/c1raw/\xc2\x9b31mRAW", b"/latin/\x9b31mRAW"):
        exchange(served, b"GET " + raw_target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                 timeout=1.0)
    wait_for(lambda: len(access_records) >= len(targets), timeout=3)
    messages = [r.getMessage() for r in access_records]
    assert any("RED" in m for m in messages), messages
    assert any("C1CSI" in m for m in messages), messages
    for message in messages:
        assert not _controls(message), f"control characters in access log line {message!r}"
