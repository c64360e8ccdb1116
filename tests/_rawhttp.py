"""The one raw-socket client helper module for every test folder.

Everything here talks to the server over a real TCP socket, byte by byte:

* ``connect(served)``: a blocking socket with a timeout.
* ``exchange(served, data)``: send ``data``, read until the server closes (or
  ``timeout``), return a :class:`Reply` with the first response parsed and
  whether the connection was closed by the server.
* ``read_response(sock)``: parse exactly one response (Content-Length,
  chunked, or until close) from a socket, keeping extra bytes.
* ``wait_closed(sock, timeout)``: read and discard until EOF / reset.
* ``rss_bytes()``: this process's resident set size (the server runs in-process).
* ``Recorder``: a configurable ASGI app that records what it saw.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable


def connect(served: Any, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((served.host, served.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "test",
) -> bytes:
    """A well-formed request; Host is added unless ``host`` is None, and
    Content-Length for a non-empty body unless a framing header is given."""
    lines = [f"{method} {target} {version}"]
    headers = list(headers or [])
    names = {n.lower() for n, _ in headers}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers]
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ------------------------------------------------------------------ reading


@dataclass
class Reply:
    status: int | None  # None: no response head arrived
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes  # every byte received on the connection
    closed: bool  # the server closed (EOF or reset) within the timeout

    def header(self, name: str) -> bytes | None:
        name_b = name.lower().encode()
        for n, v in self.headers:
            if n.lower() == name_b:
                return v
        return None

    def extra(self) -> bytes:
        """Bytes after the first response (by its Content-Length): a second
        response here means the server went on after the first."""
        cl = self.header("content-length")
        if self.status is None or cl is None:
            return b""
        return self.body[int(cl):]

    def connection_tokens(self) -> set[str]:
        tokens: set[str] = set()
        for n, v in self.headers:
            if n.lower() == b"connection":
                tokens.update(t.strip().lower() for t in v.decode().split(",") if t.strip())
        return tokens


def recv_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (data, closed). closed is
    False when ``timeout`` passes first."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def wait_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    return recv_until_eof(sock, timeout)[1]


def parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], int] | None:
    """(status, headers, head length) of the response at the front of raw."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = raw[:end].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    assert parts[0] in (b"HTTP/1.1", b"HTTP/1.0"), f"bad status line {lines[0]!r}"
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep and name and name == name.strip(), f"bad response header {line!r}"
        headers.append((name, value.strip(b" \t")))
    return int(parts[1]), headers, end + 4


def exchange(
    served: Any,
    data: bytes,
    timeout: float = 5.0,
    sock: socket.socket | None = None,
) -> Reply:
    """Sends ``data`` on a new connection (or ``sock``) and reads until the
    server closes it or ``timeout`` passes."""
    own = sock is None
    if sock is None:
        sock = connect(served, timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse early; read what it answered
        raw, closed = recv_until_eof(sock, timeout)
    finally:
        if own:
            sock.close()
    parsed = parse_head(raw)
    if parsed is None:
        return Reply(None, [], b"", raw, closed)
    status, headers, hlen = parsed
    return Reply(status, headers, raw[hlen:], raw, closed)


def read_response(sock: socket.socket, buf: bytearray | None = None, timeout: float = 5.0) -> Reply:
    """Reads exactly one response; ``buf`` holds bytes read earlier and keeps
    the bytes after the response. ``closed`` is True only when EOF was seen."""
    if buf is None:
        buf = bytearray()
    closed = False
    sock.settimeout(timeout)

    def fill() -> bool:
        nonlocal closed
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            closed = True
            return False
        buf.extend(chunk)
        return True

    while b"\r\n\r\n" not in buf:
        if not fill():
            return Reply(None, [], b"", bytes(buf), True)
    parsed = parse_head(bytes(buf))
    assert parsed is not None
    status, headers, hlen = parsed
    reply = Reply(status, headers, b"", b"", False)
    te = reply.header("transfer-encoding")
    cl = reply.header("content-length")
    pos = hlen
    if te is not None:
        assert te.lower() == b"chunked", te
        body = bytearray()
        while True:
            while buf.find(b"\r\n", pos) < 0:
                if not fill():
                    raise AssertionError(f"closed inside chunked body after {len(body)} bytes")
            eol = buf.index(b"\r\n", pos)
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            while len(buf) < pos + size + 2:
                if not fill():
                    raise AssertionError(f"closed inside chunked body after {len(body)} bytes")
            body += buf[pos : pos + size]
            assert buf[pos + size : pos + size + 2] == b"\r\n"
            pos += size + 2
            if size == 0:
                break
        reply.body = bytes(body)
    elif cl is not None:
        n = int(cl)
        while len(buf) < pos + n:
            if not fill():
                raise AssertionError("closed inside a Content-Length body")
        reply.body = bytes(buf[pos : pos + n])
        pos += n
    elif status >= 200 and status not in (204, 304):
        while fill():
            pass
        pos = len(buf)
        reply.body = bytes(buf[hlen:])
    reply.raw = bytes(buf[:pos])
    reply.closed = closed
    del buf[:pos]
    return reply


def fetch(served: Any, target: str = "/", method: str = "GET", timeout: float = 5.0, **kw: Any) -> Reply:
    """One request on a new connection (``kw`` as :func:`request`), and its
    response, read exactly."""
    with connect(served, timeout) as sock:
        sock.sendall(request(method, target, **kw))
        return read_response(sock, timeout=timeout)


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------------ process


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# ------------------------------------------------------------------ apps


@dataclass
class Recorder:
    """An ASGI app that records every request it sees.

    ``read_body``: read the whole body (recording each receive() message)
    before answering. ``response_body``: what to answer with.
    """

    read_body: bool = True
    response_body: bytes = b"ok"
    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: list[list[dict[str, Any]]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    done: int = 0  # app calls that returned or raised

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.calls.append(scope)
        got: list[dict[str, Any]] = []
        self.messages.append(got)
        try:
            if self.read_body:
                while True:
                    msg = await receive()
                    got.append(msg)
                    if msg["type"] != "http.request" or not msg.get("more_body"):
                        break
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": self.response_body})
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done += 1

    def body_of(self, i: int = 0) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[i] if m["type"] == "http.request")


# ------------------------------------------------------------------ server


@dataclass
class Running:
    """A server started by :func:`start_server` (same shape as conftest's Served)."""

    server: Any
    thread: Any
    host: str
    port: int
    errors: list[BaseException] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return dict(self.server.stats())

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"server did not stop within {timeout}s")
        if self.errors:
            raise self.errors[0]


def start_server(app: Any, **kwargs: Any) -> Running:
    """Starts a ferrule Server in a thread on 127.0.0.1:0, for module-scoped
    fixtures (the ``serve`` fixture of conftest is per test)."""
    import threading

    from ferrule import Config
    from ferrule.server import Server

    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("port", 0)
    server = Server(Config(app, **kwargs))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="ferrule-hardening-server", daemon=True)
    thread.start()
    wait_for(lambda: server.started or errors or not thread.is_alive(), timeout=15)
    if errors:
        raise errors[0]
    assert server.started, "server thread exited before it started"
    host, port = server.bound_address[:2]
    return Running(server, thread, host, port, errors)


class capture_log:
    """``with capture_log("ferrule.error") as records:`` keeps every record
    of that logger (DEBUG up), whatever the logging setup of other tests."""

    def __init__(self, name: str, level: int = 10) -> None:
        import logging

        self.logger = logging.getLogger(name)
        self.level = level
        self.records: list[Any] = []
        outer = self

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.records.append(record)

        self.handler = Keep(level)

    def __enter__(self) -> list[Any]:
        self.saved = (self.logger.level, self.logger.disabled)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)
        self.logger.disabled = False
        return self.records

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.level, self.logger.disabled = self.saved


def client_disconnected() -> type:
    """``ferrule._ferrule.ClientDisconnected``, imported lazily so that test
    modules still collect (and deselect with ``-m "not engine"``) without
    the compiled engine."""
    from ferrule._ferrule import ClientDisconnected

    return ClientDisconnected
