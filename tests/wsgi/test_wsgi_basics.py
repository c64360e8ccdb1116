"""--interface wsgi: PEP 3333 apps served by ferrule's own threads, with real
clients (httpx, raw sockets) against the real server on an ephemeral port."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx
import pytest
from _rawhttp import connect, exchange, read_response, request

pytestmark = [pytest.mark.timeout(60), pytest.mark.engine]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def wsgi(serve: Any, app: Any, **kw: Any) -> Any:
    return serve(app, interface="wsgi", **kw)


def test_hello_app_answers_in_one_write(serve: Any) -> None:
    served = wsgi(serve, hello)
    before = served.stats()["write_syscalls"]
    reply = exchange(served, request(headers=[("Connection", "close")]))
    assert reply.status == 200
    assert reply.body == b"Hello, world!"
    assert reply.header("content-length") == b"13"
    assert reply.header("content-type") == b"text/plain"
    # Head and body leave together.
    assert served.stats()["write_syscalls"] - before == 1


def test_runs_on_a_ferrule_thread_not_the_loop(serve: Any) -> None:
    seen: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.append(threading.current_thread().name)
        import asyncio

        try:
            asyncio.get_running_loop()
            running = b"loop"
        except RuntimeError:
            running = b"no loop"
        start_response("200 OK", [])
        return [running]

    served = wsgi(serve, app)
    r = httpx.get(served.url)
    assert r.text == "no loop"
    assert seen[0].startswith("ferrule-wsgi-")


def environ_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    shown = {
        k: v
        for k, v in environ.items()
        if isinstance(v, (str, bool, tuple, int)) or k == "wsgi.input"
    }
    shown["wsgi.input"] = hasattr(environ["wsgi.input"], "read")
    shown["wsgi.errors"] = environ["wsgi.errors"] is sys.stderr
    shown["file_wrapper"] = environ["wsgi.file_wrapper"].__name__
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(shown).encode()]


def environ_of(reply_body: bytes) -> Environ:
    value: Environ = eval(reply_body.decode())  # our own repr() of plain data
    return value


def test_environ_has_pep3333_keys(serve: Any) -> None:
    served = wsgi(serve, environ_app)
    sock = connect(served)
    with sock:
        sock.sendall(
            request(
                "POST",
                "/a/b?x=1&y=%20",
                headers=[("Content-Type", "text/plain"), ("X-Custom", "v")],
                body=b"abc",
            )
        )
        reply = read_response(sock)
        port = sock.getsockname()[1]
    env = environ_of(reply.body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/a/b?x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["HTTP_HOST"] == "test"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(served.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(port)
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.input"] is True
    assert env["wsgi.errors"] is True
    assert env["file_wrapper"] == "FileWrapper"
    # Every value a native string (PEP 3333), but the wsgi.* ones.
    for k, v in env.items():
        if k.isupper():
            assert isinstance(v, str), k


def test_path_info_is_decoded_as_latin1(serve: Any) -> None:
    served = wsgi(serve, environ_app)
    reply = exchange(
        served, request(target="/caf%C3%A9/%FF", headers=[("Connection", "close")])
    )
    env = environ_of(reply.body)
    # The decoded bytes, each one character (PEP 3333's "bytes as latin-1").
    assert env["PATH_INFO"] == "/caf\xc3\xa9/\xff"
    assert (
        env["PATH_INFO"].encode("latin-1").decode("utf-8", "replace") == "/café/\ufffd"
    )


def test_script_name_is_the_root_path(serve: Any) -> None:
    served = wsgi(serve, environ_app, root_path="/api")
    env = environ_of(httpx.get(served.url + "/users/1").content)
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/users/1"


def test_repeated_headers_are_joined_and_underscored_names_dropped(serve: Any) -> None:
    served = wsgi(serve, environ_app)
    reply = exchange(
        served,
        request(
            headers=[
                ("Accept", "text/html"),
                ("Accept", "application/json"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("Connection", "close"),
            ]
        ),
    )
    env = environ_of(reply.body)
    assert env["HTTP_ACCEPT"] == "text/html, application/json"
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_proxy_headers_set_remote_addr_and_scheme(serve: Any) -> None:
    served = wsgi(serve, environ_app, forwarded_allow_ips="127.0.0.1")
    r = httpx.get(
        served.url,
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
    )
    env = environ_of(r.content)
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"


def test_https_url_scheme(serve: Any, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    served = wsgi(serve, environ_app, ssl_certfile=str(cert), ssl_keyfile=str(key))
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=ctx) as client:
        r = client.get(served.url + "/secure")
    env = environ_of(r.content)
    assert r.url.scheme == "https"
    assert env["wsgi.url_scheme"] == "https"
    assert env["PATH_INFO"] == "/secure"


def test_head_request_gets_no_body(serve: Any) -> None:
    served = wsgi(serve, hello)
    reply = exchange(served, request("HEAD", headers=[("Connection", "close")]))
    # The length of the body that GET would get, and no body.
    assert reply.status == 200 and reply.header("content-length") == b"13"
    assert reply.body == b""


# ------------------------------------------------------------ request body


def echo_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def test_body_read_whole(serve: Any) -> None:
    served = wsgi(serve, echo_app)
    data = bytes(range(256)) * 1000
    r = httpx.post(served.url, content=data)
    assert r.content == data


def test_chunked_body_read_whole(serve: Any) -> None:
    served = wsgi(serve, echo_app)

    def parts() -> Iterator[bytes]:
        yield b"one,"
        yield b"two,"
        yield b"three"

    r = httpx.post(served.url, content=parts())
    assert r.content == b"one,two,three"


def test_input_read_n_readline_readlines_and_iteration(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        f = environ["wsgi.input"]
        out = [f.read(3), f.readline(), f.readline(2), f.readline()]
        out.extend(f.readlines())
        rest = list(iter(f))
        start_response("200 OK", [])
        return [repr((out, rest, f.read(), f.read(5))).encode()]

    served = wsgi(serve, app)
    r = httpx.post(served.url, content=b"abcdef\nxyz\nl3\nl4\n")
    assert eval(r.text) == (
        [b"abc", b"def\n", b"xy", b"z\n", b"l3\n", b"l4\n"],
        [],
        b"",
        b"",
    )


def test_upload_is_streamed_with_backpressure(serve: Any) -> None:
    """The app reads 1 KiB, pauses, reads on: the engine holds at most its
    body buffer, the rest waits in the socket (the client's send stalls)."""
    total = 8 * 1024 * 1024
    progress: list[int] = []
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        f = environ["wsgi.input"]
        got = len(f.read(1024))
        progress.append(got)
        release.wait(10)
        while True:
            piece = f.read(64 * 1024)
            if not piece:
                break
            got += len(piece)
        start_response("200 OK", [])
        return [str(got).encode()]

    served = wsgi(serve, app)
    sock = connect(served, timeout=10)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(request("POST", headers=[("Content-Length", str(total))]))
        sock.setblocking(False)
        sent = 0
        chunk = b"x" * 65536
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        # Stalled well short of the whole body: nothing read it.
        assert progress == [1024]
        assert sent < total // 2
        assert served.stats()["bytes_read"] < total // 2
        release.set()
        sock.setblocking(True)
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(chunk[: min(len(chunk), total - sent)])
        reply = read_response(sock, timeout=10)
    assert reply.body == str(total).encode()


# ------------------------------------------------------------------ response


def test_generator_response_streams_chunks(serve: Any) -> None:
    gate = threading.Event()
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"first;"
            gate.wait(5)
            yield b""  # an empty chunk is not a write
            yield b"second"

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    served = wsgi(serve, app)
    with httpx.Client() as client, client.stream("GET", served.url) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        it = r.iter_raw()
        # The first chunk arrives while the app still waits: not buffered.
        assert next(it) == b"first;"
        gate.set()
        assert b"".join(it) == b"second"
    assert closed.wait(2)


def test_content_length_from_the_app_is_kept(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        yield b"01234"
        yield b"56789"

    served = wsgi(serve, app)
    r = httpx.get(served.url)
    assert r.headers["content-length"] == "10"
    assert "transfer-encoding" not in r.headers
    assert r.content == b"0123456789"


def test_write_callable(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"and returned"]

    served = wsgi(serve, app)
    assert httpx.get(served.url).content == b"written and returned"


def test_big_streamed_response_waits_for_a_slow_reader(serve: Any) -> None:
    chunk = b"z" * 65536
    count = 256  # 16 MiB
    produced: list[int] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(len(chunk) * count))])
        for i in range(count):
            produced.append(i)
            yield chunk

    served = wsgi(serve, app)
    sock = connect(served, timeout=10)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request())
        time.sleep(0.5)
        # The app is held back by the socket, not run to its end.
        assert len(produced) < count // 2
        got = 0
        while got < len(chunk) * count:
            data = sock.recv(1 << 20)
            assert data
            got += len(data)
    assert len(produced) == count


def test_file_wrapper_sends_the_file(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 4096  # 1 MiB: the sendfile path
    path.write_bytes(data)

    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 32768)

    served = wsgi(serve, app)
    before = served.stats()["write_syscalls"]
    r = httpx.get(served.url)
    assert r.content == data
    assert r.headers["content-length"] == str(len(data))
    # By sendfile (1 MiB per call), not 32 blocks of 32 KiB through Python.
    assert served.stats()["write_syscalls"] - before < 8


def test_file_wrapper_after_a_seek_sends_the_rest(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "part.bin"
    path.write_bytes(b"skip me|" + b"the rest" * 1000)

    def app(environ: Environ, start_response: StartResponse) -> Any:
        f = open(path, "rb")
        f.seek(8)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    served = wsgi(serve, app)
    assert httpx.get(served.url).content == b"the rest" * 1000


def test_file_wrapper_on_a_non_file_iterates(serve: Any) -> None:
    import io

    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory" * 1000), 100)

    served = wsgi(serve, app)
    assert httpx.get(served.url).content == b"in memory" * 1000


# ---------------------------------------------------------------- failures


def test_exception_before_start_response_is_a_500_with_traceback(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise ValueError("boom in the app")

    served = wsgi(serve, app)
    with caplog.at_level(logging.ERROR, logger="ferrule.error"):
        r = httpx.get(served.url)
        r2 = httpx.get(served.url)
    assert r.status_code == 500 and r2.status_code == 500
    records = [
        rec for rec in caplog.records if "Exception in WSGI application" in rec.message
    ]
    assert records and records[0].exc_info is not None
    assert "boom in the app" in str(records[0].exc_info[1])


def test_exception_while_iterating_after_headers_aborts(serve: Any) -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("failed midway")

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response("200 OK", [("Content-Length", "100")])
        return Body()

    served = wsgi(serve, app)
    reply = exchange(served, request())
    assert reply.status == 200
    assert reply.body == b"partial"
    assert reply.closed
    assert closed.wait(2)


def test_start_response_exc_info_replaces_unsent_headers(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("late")
        except KeyError:
            start_response(
                "503 Service Unavailable", [("X-Second", "2")], sys.exc_info()
            )
        return [b"replaced"]

    served = wsgi(serve, app)
    r = httpx.get(served.url)
    assert r.status_code == 503
    assert r.headers.get("x-second") == "2" and "x-first" not in r.headers
    assert r.content == b"replaced"


def test_start_response_exc_info_reraises_once_sent(serve: Any) -> None:
    outcome: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [])
        write(b"head is out")
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError:
                outcome.append("re-raised")
                raise
        yield b""

    served = wsgi(serve, app)
    reply = exchange(served, request())
    assert outcome == ["re-raised"]
    assert reply.status == 200 and reply.closed


def test_start_response_twice_without_exc_info_fails(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]

    served = wsgi(serve, app)
    assert httpx.get(served.url).status_code == 500


def test_client_gone_closes_the_iterable(serve: Any) -> None:
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            while True:
                yield b"y" * 65536

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response("200 OK", [])
        return Endless()

    served = wsgi(serve, app)
    sock = connect(served)
    sock.sendall(request())
    sock.recv(1000)
    sock.close()
    assert closed.wait(10)


# ------------------------------------------------------ connections, threads


def test_keep_alive_and_pipelining(serve: Any) -> None:
    served = wsgi(serve, environ_app)
    sock = connect(served)
    with sock:
        sock.sendall(b"".join(request(target=f"/p{i}") for i in range(5)))
        buf = bytearray()
        paths = [
            environ_of(read_response(sock, buf).body)["PATH_INFO"] for _ in range(5)
        ]
        assert paths == [f"/p{i}" for i in range(5)]
        sock.sendall(request(target="/again"))
        assert environ_of(read_response(sock, buf).body)["PATH_INFO"] == "/again"
    assert served.stats()["connections"] == 1


def test_slow_requests_run_in_parallel_on_the_threads(serve: Any) -> None:
    n = 6

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        time.sleep(0.5)
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    served = wsgi(serve, app, wsgi_threads=n)
    results: list[str] = []

    def one() -> None:
        results.append(httpx.get(served.url, timeout=10).text)

    started = time.monotonic()
    clients = [threading.Thread(target=one) for _ in range(n)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    elapsed = time.monotonic() - started
    assert len(results) == n
    assert len(set(results)) == n  # one thread each
    assert elapsed < 0.5 * n / 2


def test_graceful_shutdown_finishes_a_request_in_flight_and_joins_threads(
    serve: Any,
) -> None:
    entered = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        entered.set()
        time.sleep(0.5)
        start_response("200 OK", [])
        return [b"finished"]

    served = wsgi(serve, app, wsgi_threads=3)
    names = {t.name for t in threading.enumerate()}
    assert sum(n.startswith("ferrule-wsgi-") for n in names) == 3
    sock = connect(served)
    sock.sendall(request())
    assert entered.wait(5)
    served.stop()
    reply = read_response(sock)
    sock.close()
    assert reply.body == b"finished"
    assert reply.connection_tokens() == {"close"}
    assert not [t for t in threading.enumerate() if t.name.startswith("ferrule-wsgi-")]


def test_shutdown_grace_expired_unblocks_a_waiting_read(serve: Any) -> None:
    entered = threading.Event()
    ended: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        entered.set()
        try:
            environ["wsgi.input"].read()  # the client never sends the body
        except OSError as exc:
            ended.append(type(exc).__name__)
            raise
        start_response("200 OK", [])
        return [b""]

    served = wsgi(serve, app, timeout_graceful_shutdown=0.5)
    sock = connect(served)
    sock.sendall(request("POST", headers=[("Content-Length", "100")]))
    assert entered.wait(5)
    started = time.monotonic()
    served.stop()
    sock.close()
    assert time.monotonic() - started < 5
    assert ended == ["ClientDisconnected"]
    assert not [t for t in threading.enumerate() if t.name.startswith("ferrule-wsgi-")]


def test_flask_json_and_form(serve: Any) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("wsgi_test")

    @app.post("/json")
    def json_route() -> Any:
        data = flask.request.get_json()
        return {"sum": sum(data["values"]), "path": flask.request.path}

    @app.post("/form")
    def form_route() -> Any:
        return f"{flask.request.form['name']}:{len(flask.request.form['blob'])}"

    @app.get("/items/<int:item>")
    def item_route(item: int) -> Any:
        return {"item": item, "q": flask.request.args.get("q")}

    @app.get("/where")
    def where_route() -> Any:
        return flask.url_for("item_route", item=1, _external=True)

    served = wsgi(serve, app, root_path="/mount")
    with httpx.Client(base_url=served.url) as client:
        r = client.post("/json", json={"values": [1, 2, 3]})
        assert r.json() == {"sum": 6, "path": "/json"}
        r = client.post("/form", data={"name": "ferrule", "blob": "x" * 100_000})
        assert r.text == "ferrule:100000"
        r = client.get("/items/7", params={"q": "a b"})
        assert r.json() == {"item": 7, "q": "a b"}
        assert client.get("/missing").status_code == 404
        # url_for sees SCRIPT_NAME (--root-path), the host and the scheme.
        assert client.get("/where").text == served.url + "/mount/items/1"


def test_lifespan_is_off(serve: Any) -> None:
    calls: list[Any] = []

    def app(environ: Any, start_response: Any = None) -> list[bytes]:
        calls.append(environ)
        assert start_response is not None
        start_response("200 OK", [])
        return [b"ok"]

    served = wsgi(serve, app)
    assert httpx.get(served.url).text == "ok"
    assert len(calls) == 1 and "REQUEST_METHOD" in calls[0]


def test_limit_concurrency_counts_wsgi_requests(serve: Any) -> None:
    entered = threading.Event()
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        entered.set()
        release.wait(5)
        start_response("200 OK", [])
        return [b"slow"]

    served = wsgi(serve, app, limit_concurrency=1)
    sock = connect(served)
    with sock:
        sock.sendall(request())
        assert entered.wait(5)
        assert httpx.get(served.url).status_code == 503
        release.set()
        assert read_response(sock).body == b"slow"


def test_websocket_upgrade_reaches_the_app_as_a_plain_request(serve: Any) -> None:
    served = wsgi(serve, environ_app)
    reply = exchange(
        served,
        request(
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "upgrade, close"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ]
        ),
    )
    assert reply.status == 200
    assert environ_of(reply.body)["HTTP_UPGRADE"] == "websocket"
