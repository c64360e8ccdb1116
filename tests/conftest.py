"""Shared fixtures: a real ferrule server in a thread, and the CLI in a subprocess.

* ``serve(app, **config_kwargs) -> Served``: starts ``ferrule.server.Server`` on
  127.0.0.1, port 0, in a background thread; stopped at teardown.
* ``run_cli(*args, env=None) -> CLIProcess``: runs ``python -m ferrule ARGS
  --port 0`` from the repository root, waits for the "Ferrule running on ..."
  line; at teardown sends SIGINT and asserts exit status 0.
* ``ferrule_cmd``: the argv prefix to run the CLI (``[python, -m, ferrule]``)
  and ``cli_env``: the environment that makes it importable.

Tests that need the compiled engine carry ``@pytest.mark.engine``; deselect
them with ``-m "not engine"`` while the extension is not built.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _rawhttp import wait_for

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SRC = ROOT / "python"

STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
RUNNING_RE = re.compile(r"Ferrule running on (https?://(\S+?):(\d+))")

# Examples are imported as "examples.<name>" from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Use the installed ferrule when there is one (maturin develop / pip install);
# otherwise the sources, so the pure-Python tests run without a build.
_EXTRA_PYTHONPATH: list[str] = [str(ROOT)]
if importlib.util.find_spec("ferrule") is None:
    sys.path.insert(0, str(PYTHON_SRC))
    _EXTRA_PYTHONPATH.insert(0, str(PYTHON_SRC))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engine: needs the compiled engine (ferrule._ferrule / ferrule.server)",
    )


# ---------------------------------------------------------------- in-thread


@dataclass
class Served:
    server: Any
    thread: threading.Thread
    host: str
    port: int
    errors: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.server.config.is_ssl else "http"
        return f"{scheme}://{host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.server.stats()
        return result

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"server did not stop within {timeout}s")


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    from ferrule import Config
    from ferrule.server import Server

    started: list[Served] = []

    def start(app: Any, **kwargs: Any) -> Served:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        config = Config(app, **kwargs)
        server = Server(config)
        errors: list[BaseException] = []

        def target() -> None:
            try:
                server.run()
            except BaseException as exc:  # surfaced in the test, not lost
                errors.append(exc)

        thread = threading.Thread(
            target=target, name="ferrule-test-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not getattr(server, "started", False):
            if errors:
                raise errors[0]
            if not thread.is_alive():
                raise AssertionError("server thread exited before it started")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise AssertionError(f"server did not start within {STARTUP_TIMEOUT}s")
            time.sleep(0.005)
        host, port = server.bound_address[:2]
        served = Served(server, thread, host, port, errors)
        started.append(served)
        return served

    yield start

    failures = []
    for served in reversed(started):
        try:
            served.stop()
        except AssertionError as exc:
            failures.append(str(exc))
        failures.extend(repr(exc) for exc in served.errors)
    if failures:
        pytest.fail("; ".join(failures))


# ---------------------------------------------------------------- subprocess


def _cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = _EXTRA_PYTHONPATH + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FORWARDED_ALLOW_IPS", None)
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def cli_env() -> dict[str, str]:
    return _cli_env()


@pytest.fixture
def ferrule_cmd() -> list[str]:
    return [sys.executable, "-m", "ferrule"]


class CLIProcess:
    """A running ``python -m ferrule``; output is collected in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._bound = threading.Event()
        self.url = ""
        self.host = ""
        self.port = 0
        self._readers = [
            threading.Thread(
                target=self._pump,
                args=(self.proc.stdout, self.stdout_lines),
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(self.proc.stderr, self.stderr_lines),
                daemon=True,
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if not self._bound.is_set():
                match = RUNNING_RE.search(line)
                if match:
                    self.url, self.host = match.group(1), match.group(2).strip("[]")
                    self.port = int(match.group(3))
                    self._bound.set()

    @property
    def output(self) -> str:
        return "".join(self.stderr_lines) + "".join(self.stdout_lines)

    def wait_started(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._bound.wait(0.05):
            if self.proc.poll() is not None:
                for reader in self._readers:
                    reader.join(2)
                raise AssertionError(
                    f"ferrule exited with {self.proc.returncode} before it started:\n"
                    + self.output
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no 'Ferrule running on' line within {timeout}s:\n" + self.output
                )

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"ferrule did not stop within {timeout}s of signal {sig}:\n"
                    + self.output
                ) from None
        for reader in self._readers:
            reader.join(2)
        return self.proc.returncode


@pytest.fixture
def run_cli() -> Iterator[Callable[..., CLIProcess]]:
    running: list[CLIProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> CLIProcess:
        argv = [sys.executable, "-m", "ferrule", *args]
        binds = ("--port", "--uds", "--fd")
        if not any(a == b or a.startswith(b + "=") for a in args for b in binds):
            argv += ["--port", "0"]
        process = CLIProcess(argv, _cli_env(env))
        running.append(process)
        process.wait_started()
        return process

    yield start

    problems = []
    for process in running:
        already_exited = process.proc.poll() is not None
        status = process.stop()
        if not already_exited and status != 0:
            problems.append(
                f"{' '.join(process.args)} exited with {status} after SIGINT:\n"
                + process.output
            )
    if problems:
        pytest.fail("\n".join(problems))


# ---------------------------------------------------------------- raw HTTP
#
# A strict HTTP/1.x response reader over a plain socket, so tests can check
# framing byte by byte: bodies are delimited only by what the head says
# (Content-Length, chunked, or the close of the connection).


class IncompleteResponse(AssertionError):
    """The connection ended (or timed out) before the response was complete."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(f"{message}; got {len(raw)} bytes: {raw[:300]!r}")
        self.raw = raw


@dataclass
class RawResponse:
    version: str  # "HTTP/1.1"
    status: int
    reason: str
    headers: list[tuple[str, bytes]]  # names as on the wire
    body: bytes
    framing: str  # "content-length" | "chunked" | "close" | "none"
    raw: bytes  # every byte of this response as it arrived (head + body)
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def head(self) -> bytes:
        return self.raw[: self.raw.index(b"\r\n\r\n") + 4]

    def header(self, name: str) -> str | None:
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        name = name.lower()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == name]

    def has_header(self, name: str) -> bool:
        return bool(self.header_list(name))

    def connection_tokens(self) -> set[str]:
        tokens: set[str] = set()
        for value in self.header_list("connection"):
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens


class RawClient:
    """One TCP connection; ``read_response()`` parses strictly from a buffer, so
    pipelined responses come out one by one."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        import socket

        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    # sending
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "HTTP/1.1",
        host: str = "test",
    ) -> bytes:
        """Encode a request; adds Host (unless given) and Content-Length for a body."""
        lines = [f"{method} {target} {version}"]
        headers = list(headers or [])
        names = {n.lower() for n, _ in headers}
        if "host" not in names and host:
            lines.append(f"Host: {host}")
        lines += [f"{n}: {v}" for n, v in headers]
        if body and "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def get(self, target: str = "/", **kwargs: Any) -> "RawResponse":
        method = kwargs.pop("method", "GET")
        self.send(self.request(method, target, **kwargs))
        return self.read_response(method=method)

    # receiving
    def _fill(self, timeout: float | None = None) -> bool:
        """Read more bytes into the buffer; False at EOF."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def recv_some(self, timeout: float = 1.0) -> bytes:
        """What one recv() returns (buffered bytes first); b"" at EOF, raises
        socket.timeout when nothing arrives in time."""
        if self.buffer:
            data, self.buffer = self.buffer, b""
            return data
        if not self._fill(timeout):
            return b""
        data, self.buffer = self.buffer, b""
        return data

    def nothing_arrives(self, wait: float) -> bool:
        """True when no byte (and no EOF) arrives within ``wait`` seconds."""
        import socket

        if self.buffer:
            return False
        try:
            got = self._fill(wait)
        except socket.timeout:
            return True
        return False if got or self.eof else True

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """Waits for EOF; True when the server closed (extra bytes are kept)."""
        import socket

        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except socket.timeout:
                return False
            except OSError:
                self.eof = True
        return True

    def read_until_eof(self, timeout: float | None = None) -> bytes:
        while self._fill(timeout):
            pass
        data, self.buffer = self.buffer, b""
        return data

    def _take(self, n: int, consumed: int, start: int) -> None:
        while len(self.buffer) < consumed + n:
            if not self._fill():
                raise IncompleteResponse(
                    f"connection closed after {len(self.buffer) - start} bytes, "
                    "before the end of the response",
                    self.buffer[start:],
                )

    def _line(self, pos: int, start: int) -> tuple[bytes, int]:
        while True:
            end = self.buffer.find(b"\r\n", pos)
            if end >= 0:
                return self.buffer[pos:end], end + 2
            if not self._fill():
                raise IncompleteResponse(
                    "connection closed inside a line", self.buffer[start:]
                )

    def read_response(self, method: str = "GET") -> RawResponse:
        """Parse exactly one response (a 1xx interim response counts as one)."""
        import socket

        start = 0
        try:
            while b"\r\n\r\n" not in self.buffer:
                if not self._fill():
                    raise IncompleteResponse("no complete response head", self.buffer)
        except socket.timeout:
            raise IncompleteResponse(
                "timed out waiting for a response head", self.buffer
            ) from None
        head_end = self.buffer.index(b"\r\n\r\n") + 4
        head = self.buffer[:head_end].decode("latin-1")
        lines = head[:-4].split("\r\n")
        status_line = lines[0]
        parts = status_line.split(" ", 2)
        assert len(parts) >= 2, f"bad status line {status_line!r}"
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) == 3 else ""
        assert version in ("HTTP/1.0", "HTTP/1.1"), f"bad version in {status_line!r}"
        assert len(parts[1]) == 3, f"bad status in {status_line!r}"
        headers: list[tuple[str, bytes]] = []
        for line in lines[1:]:
            assert ":" in line, f"bad header line {line!r}"
            assert line[0] not in " \t", f"obsolete line folding: {line!r}"
            name, _, value = line.partition(":")
            assert name == name.strip() and name, f"bad header name in {line!r}"
            headers.append((name, value.strip(" \t").encode("latin-1")))
        resp = RawResponse(version, status, reason, headers, b"", "none", b"")
        te = ",".join(resp.header_list("transfer-encoding")).lower()
        cls = resp.header_list("content-length")
        pos = head_end
        try:
            if (
                100 <= status < 200
                or status in (204, 304)
                or method.upper() == "HEAD"
            ):
                resp.framing = "none"
            elif te:
                assert te.strip() == "chunked", f"unexpected Transfer-Encoding {te!r}"
                assert not cls, "both Transfer-Encoding and Content-Length"
                resp.framing = "chunked"
                body = b""
                while True:
                    line, pos = self._line(pos, start)
                    size_text = line.split(b";", 1)[0].strip()
                    assert size_text and all(
                        c in b"0123456789abcdefABCDEF" for c in size_text
                    ), f"bad chunk size line {line!r}"
                    size = int(size_text, 16)
                    if size == 0:
                        break
                    self._take(size + 2, pos, start)
                    chunk = self.buffer[pos : pos + size]
                    assert self.buffer[pos + size : pos + size + 2] == b"\r\n", (
                        f"chunk of {size} bytes not followed by CRLF: "
                        f"{self.buffer[pos:pos + size + 2][-20:]!r}"
                    )
                    pos += size + 2
                    resp.chunks.append(chunk)
                    body += chunk
                while True:  # trailer section
                    line, pos = self._line(pos, start)
                    if not line:
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    resp.trailers.append((name, value.strip().encode("latin-1")))
                resp.body = body
            elif cls:
                assert len(set(cls)) == 1, f"conflicting Content-Length {cls}"
                length = int(cls[0])
                resp.framing = "content-length"
                self._take(length, pos, start)
                resp.body = self.buffer[pos : pos + length]
                pos += length
            else:
                resp.framing = "close"
                while self._fill():
                    pass
                pos = len(self.buffer)
                resp.body = self.buffer[head_end:pos]
        except socket.timeout:
            raise IncompleteResponse(
                "timed out before the end of the response", self.buffer
            ) from None
        resp.raw = self.buffer[:pos]
        self.buffer = self.buffer[pos:]
        return resp

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    """``raw_client(served_or_host, port=None, timeout=5.0) -> RawClient``."""
    clients: list[RawClient] = []

    def connect(target: Any, port: int | None = None, timeout: float = 5.0) -> RawClient:
        if port is None:
            host, port = target.host, target.port
        else:
            host = target
        client = RawClient(host, port, timeout)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def error_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that sees ``ferrule.error`` records from DEBUG up, even after a
    test elsewhere ran ``setup_logging()`` (which stops propagation at ``ferrule``)."""
    import logging

    loggers = [logging.getLogger("ferrule"), logging.getLogger("ferrule.error")]
    saved = [(lg.propagate, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.propagate = True
        lg.disabled = False
    caplog.set_level(logging.DEBUG, logger="ferrule.error")
    yield caplog
    for lg, (propagate, level, disabled) in zip(loggers, saved):
        lg.propagate, lg.level, lg.disabled = propagate, level, disabled


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=5.0)``: poll until truthy, else fail."""
    return wait_for


@pytest.fixture(autouse=True)
def _restore_ferrule_loggers() -> Iterator[None]:
    """Put the ``ferrule`` loggers back as they were after every test, so a test
    that runs ``setup_logging()`` cannot leave handlers on streams pytest has
    since closed (or an enabled access log) to the tests that follow."""
    import logging

    names = ("ferrule", "ferrule.error", "ferrule.access")
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled
