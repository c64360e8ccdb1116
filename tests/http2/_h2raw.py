"""A raw HTTP/2 client for the flood and conformance tests, and the server they run against.

* :class:`H2Raw`: one socket (plain h2c by prior knowledge, or TLS with ALPN
  ``h2``). Valid frames come from ``hyperframe`` (the framing layer of the
  Python ``h2`` package) and header blocks from ``hpack``; malformed frames
  that those refuse to build are written as bytes with :func:`raw_frame`.
  Reading yields parsed frames; the ``expect_*`` helpers turn what the server
  did into a verdict (GOAWAY code, RST_STREAM code, close).
* :class:`H2Server`: the server under test as a subprocess, so its RSS can be
  read from ``/proc/<pid>/status``. ferrule by default (``python -m ferrule``,
  h2c on a plain listener); ``FERRULE_H2_PEER=hypercorn`` runs the same tests
  against hypercorn instead, to check the test code itself against a
  server that already speaks HTTP/2.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

ROOT = Path(__file__).resolve().parents[2]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PEER = os.environ.get("FERRULE_H2_PEER", "ferrule")

# Frame type codes (RFC 9113 §6), for frames written by hand.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# SETTINGS identifiers (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6


def raw_frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame as bytes, whatever its contents: for what hyperframe refuses to build."""
    length = len(payload)
    return (
        struct.pack(">BHBBL", length >> 16, length & 0xFFFF, ftype, flags, stream_id)
        + payload
    )


def settings_payload(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HL", ident, value) for ident, value in pairs)


def request_headers(
    path: str = "/", method: str = "GET", authority: str = "test", scheme: str = "http"
) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
    ]


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class H2Raw:
    """One HTTP/2 connection driven frame by frame."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        preface: bool = True,
        settings: dict[int, int] | None = None,
        recv_buffer: int | None = None,
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if recv_buffer is not None:
            # Before connect, so the window the kernel offers stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock: socket.socket = sock
        self.timeout = timeout
        self.buffer = b""
        self.eof = False
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []  # every frame read, in order
        if preface:
            self.send(PREFACE + self.settings_frame(settings or {}))

    # ------------------------------------------------------------ sending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """False when the server has closed (reset / broken pipe) meanwhile."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return False
        return True

    @staticmethod
    def settings_frame(settings: dict[int, int], ack: bool = False) -> bytes:
        frame = SettingsFrame(0, settings=settings)
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    def encode(self, headers: Iterable[tuple[str, str]]) -> bytes:
        return self.encoder.encode(list(headers))

    def headers_frame(
        self,
        stream_id: int,
        headers: Iterable[tuple[str, str]] | None = None,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        block: bytes | None = None,
    ) -> bytes:
        frame = HeadersFrame(stream_id)
        frame.data = (
            block if block is not None else self.encode(headers or request_headers())
        )
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def data_frame(
        self, stream_id: int, data: bytes, end_stream: bool = False
    ) -> bytes:
        frame = DataFrame(stream_id, data=data)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    @staticmethod
    def rst_frame(stream_id: int, code: int = ErrorCodes.CANCEL) -> bytes:
        return RstStreamFrame(stream_id, error_code=code).serialize()

    @staticmethod
    def ping_frame(opaque: bytes = b"\0" * 8, ack: bool = False) -> bytes:
        frame = PingFrame(0, opaque_data=opaque)
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    @staticmethod
    def window_update_frame(stream_id: int, increment: int) -> bytes:
        return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))

    @staticmethod
    def continuation_frame(
        stream_id: int, block: bytes, end_headers: bool = False
    ) -> bytes:
        frame = ContinuationFrame(stream_id, data=block)
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def request(
        self, stream_id: int, path: str = "/", end_stream: bool = True, **kwargs: Any
    ) -> None:
        fields = request_headers(path, **kwargs)
        self.send(self.headers_frame(stream_id, fields, end_stream=end_stream))

    # ------------------------------------------------------------ reading

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no frame in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except ssl.SSLError:
            data = b""
        if not data:
            self.eof = True
            raise Closed()
        self.buffer += data

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next frame; raises :class:`Closed` at EOF, ``socket.timeout`` if none."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buffer) < 9:
            if self.eof:
                raise Closed()
            self._fill(deadline)
        frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
        while len(self.buffer) < 9 + length:
            if self.eof:
                raise Closed()
            self._fill(deadline)
        frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
        self.buffer = self.buffer[9 + length :]
        self.frames.append(frame)
        if isinstance(frame, HeadersFrame):
            # Keep the HPACK decoder in step; header blocks here are never split.
            frame.decoded = self.decoder.decode(frame.data)  # type: ignore[attr-defined]
        return frame

    def poll(self) -> list[Frame]:
        """The frames that have already arrived, without waiting (for floods
        that must keep writing but stop once the server has answered)."""
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.eof = True
                    break
                self.buffer += data
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.eof = True
        finally:
            self.sock.settimeout(self.timeout)
        frames: list[Frame] = []
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                break
            frames.append(self.read_frame(0.001))
        return frames

    def read_until(
        self, predicate: Callable[[Frame], bool], timeout: float | None = None
    ) -> Frame:
        """Frames until one matches; ACKs the server's SETTINGS and PINGs on the way."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.read_frame(max(deadline - time.monotonic(), 0.001))
            self._answer(frame)
            if predicate(frame):
                return frame

    def _answer(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.try_send(self.settings_frame({}, ack=True))

    def handshake(self, timeout: float | None = None) -> SettingsFrame:
        """Reads the server's preface SETTINGS (and ACKs it)."""
        frame = self.read_until(
            lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags, timeout
        )
        assert isinstance(frame, SettingsFrame)
        return frame

    def response(
        self, stream_id: int, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one stream, read to its END_STREAM."""
        status = 0
        body = b""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.read_until(
                lambda f: f.stream_id == stream_id,
                max(deadline - time.monotonic(), 0.001),
            )
            if isinstance(frame, HeadersFrame):
                decoded = dict(getattr(frame, "decoded"))
                if ":status" in decoded:
                    status = int(decoded[":status"])
            elif isinstance(frame, DataFrame):
                body += frame.data
                if frame.flow_controlled_length:
                    # Give the window back so long bodies keep coming.
                    self.try_send(
                        self.window_update_frame(0, frame.flow_controlled_length)
                        + self.window_update_frame(
                            stream_id, frame.flow_controlled_length
                        )
                    )
            elif isinstance(frame, RstStreamFrame):
                raise AssertionError(
                    f"stream {stream_id} reset: {ErrorCodes(frame.error_code)!r}"
                )
            if "END_STREAM" in frame.flags:
                return status, body

    def get(self, stream_id: int, path: str = "/") -> tuple[int, bytes]:
        self.request(stream_id, path)
        return self.response(stream_id)

    # ------------------------------------------------------------ verdicts

    def outcome(self, timeout: float = 3.0) -> tuple[str, int | None, int]:
        """What the server did next that ends something: ("goaway", code, last
        stream id), ("rst", code, stream id) or ("closed", None, 0). Raises
        AssertionError when nothing of the kind happens within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self.read_until(
                    lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)),
                    max(deadline - time.monotonic(), 0.001),
                )
            except Closed:
                return ("closed", None, 0)
            except socket.timeout:
                raise AssertionError(
                    f"neither GOAWAY, RST_STREAM nor close within {timeout}s; "
                    f"frames seen: {self.describe()}"
                ) from None
            if isinstance(frame, GoAwayFrame):
                return ("goaway", frame.error_code, frame.last_stream_id)
            assert isinstance(frame, RstStreamFrame)
            return ("rst", frame.error_code, frame.stream_id)

    def expect_connection_error(self, *codes: int, timeout: float = 3.0) -> str:
        """RFC 9113 §5.4.1: a connection error is a GOAWAY (with one of
        ``codes``) then the close; a close without GOAWAY is accepted (the
        GOAWAY is a SHOULD)."""
        kind, got, _ = self.outcome(timeout)
        wanted = " or ".join(_name(c) for c in codes)
        assert kind != "rst", (
            f"expected a connection error {wanted}, got RST_STREAM "
            f"{_name(got)} on a stream; frames: {self.describe()}"
        )
        if kind == "goaway":
            assert got in codes, f"GOAWAY {_name(got)}, expected {wanted}"
            assert self.closed_by_server(
                timeout
            ), "GOAWAY for an error, but the connection stayed open"
        return kind

    def expect_stream_error(
        self, stream_id: int, *codes: int, timeout: float = 3.0
    ) -> str:
        """A stream error (RST_STREAM with one of ``codes`` on ``stream_id``),
        or the same code as a connection error, which RFC 9113 §5.4.1 always
        allows."""
        kind, got, sid = self.outcome(timeout)
        wanted = " or ".join(_name(c) for c in codes)
        if kind == "rst":
            assert sid == stream_id, f"RST_STREAM on stream {sid}, expected {stream_id}"
            assert got in codes, f"RST_STREAM {_name(got)}, expected {wanted}"
        elif kind == "goaway":
            assert got in codes, f"GOAWAY {_name(got)}, expected {wanted}"
        return kind

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """Reads (and drops) frames until EOF; True when the server closed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.read_frame(max(deadline - time.monotonic(), 0.001))
            except Closed:
                return True
            except socket.timeout:
                return False
            except ValueError:  # bytes that are not a frame: not our business here
                self.buffer = b""

    def alive(self, timeout: float = 3.0) -> bool:
        """True when the connection still works: a PING comes back ACKed."""
        opaque = os.urandom(8)
        if not self.try_send(self.ping_frame(opaque)):
            return False
        try:
            self.read_until(
                lambda f: isinstance(f, PingFrame)
                and "ACK" in f.flags
                and f.opaque_data == opaque,
                timeout,
            )
        except (Closed, socket.timeout):
            return False
        return True

    def describe(self) -> str:
        return ", ".join(_describe(f) for f in self.frames[-12:]) or "none"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _name(code: int | None) -> str:
    if code is None:
        return "None"
    try:
        return repr(ErrorCodes(code))
    except ValueError:
        return hex(code)


def _describe(frame: Frame) -> str:
    name = type(frame).__name__.replace("Frame", "")
    extra = ""
    if isinstance(frame, (GoAwayFrame, RstStreamFrame)):
        extra = " " + _name(frame.error_code)
    return f"{name}({frame.stream_id}{extra})"


# ---------------------------------------------------------------- the server


def make_cert_files(directory: Path) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 (trustme) and its key, as files."""
    import trustme

    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def client_tls() -> ssl.SSLContext:
    """TLS offering only ALPN h2; the test's own certificate is not checked."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


RUNNING_RE = re.compile(r"Ferrule running on https?://\S+?:(\d+)")
HYPERCORN = ROOT / "benchmarks" / ".venv" / "bin" / "hypercorn"
if not HYPERCORN.exists():
    HYPERCORN = Path("/work/main/benchmarks/.venv/bin/hypercorn")


class H2Server:
    """The server under test in a subprocess on 127.0.0.1, an ephemeral port.

    ``limits`` are HTTP/2 settings by their ferrule option name without the
    ``--h2-`` prefix (e.g. ``{"max-concurrent-streams": 8}``); for hypercorn they
    become its ``h2_*`` config keys where it has one."""

    def __init__(
        self,
        app: str,
        *,
        limits: dict[str, int] | None = None,
        args: Iterable[str] = (),
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        self.app = app
        self.tls = certfile is not None
        self.host = "127.0.0.1"
        self.port = 0
        self.lines: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="h2srv-")
        limits = dict(limits or {})
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # As tests/conftest.py: the installed ferrule if there is one, else
        # the sources; the repository root for the tests.http2.h2apps apps.
        paths = [str(ROOT)]
        if PEER == "ferrule" and importlib.util.find_spec("ferrule") is None:
            paths.insert(0, str(ROOT / "python"))
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        if PEER == "hypercorn":
            self.port = _free_port()
            config = Path(self._tmp.name) / "hypercorn.toml"
            lines = [f'bind = ["127.0.0.1:{self.port}"]', "workers = 0"]
            for name, value in limits.items():
                key = {
                    "max-concurrent-streams": "h2_max_concurrent_streams",
                    "max-header-list-size": "h2_max_header_list_size",
                    "max-frame-size": "h2_max_inbound_frame_size",
                }.get(name)
                if key:
                    lines.append(f"{key} = {value}")
            if certfile:
                lines += [f'certfile = "{certfile}"', f'keyfile = "{keyfile}"']
            config.write_text("\n".join(lines) + "\n")
            argv = [str(HYPERCORN), "-c", str(config), app]
        else:
            argv = [
                sys.executable,
                "-m",
                "ferrule",
                app,
                "--port",
                "0",
                "--no-access-log",
            ]
            for name, value in limits.items():
                argv += [f"--h2-{name}", str(value)]
            if certfile:
                argv += ["--ssl-certfile", certfile, "--ssl-keyfile", str(keyfile)]
            argv += list(args)
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self._wait_started()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = RUNNING_RE.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(1))
                self._ready.set()
            if "Running on" in line:  # hypercorn
                self._ready.set()

    def _wait_started(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.02):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("server did not start:\n" + "".join(self.lines))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return rss_of(self.proc.pid)

    def connect(self, **kwargs: Any) -> H2Raw:
        """A connection: h2 over TLS (ALPN) when the server has a certificate."""
        if self.tls:
            kwargs.setdefault("tls", client_tls())
        conn = H2Raw(self.host, self.port, **kwargs)
        if self.tls:
            assert conn.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
        return conn

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        self._tmp.cleanup()
        return self.proc.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
