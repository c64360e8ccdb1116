"""HTTP/2 floods sent as raw frames against the real server (a subprocess on an
ephemeral port, so its RSS is its own): each case must end with the
connection closed or the flood refused, and the server's memory bounded.

The cases are the known attacks on HTTP/2 servers: rapid reset
(CVE-2023-44487), CONTINUATION floods (CVE-2024-27316 class), HPACK bombs,
SETTINGS and PING floods that make the server queue answers nobody reads
(CVE-2019-9515, -9512), zero-window stalls and unread sockets that would hold
a response in memory (CVE-2019-9517), reset floods (CVE-2019-9514), empty
frames (CVE-2019-9518), PRIORITY reshuffling (CVE-2019-9513), and streams
beyond the concurrency limit. Each runs over h2c and over TLS."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _h2raw import (
    PEER,
    Closed,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_HEADER_LIST_SIZE,
    PRIORITY,
    H2Raw,
    H2Server,
    make_cert_files,
    raw_frame,
    request_headers,
)
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

pytestmark = [
    pytest.mark.engine,
    pytest.mark.timeout(30),
]

MiB = 1024 * 1024
# Each flood below carries (or would make the server hold) 64 MiB or more, so
# a server that buffers it grows far past this.
GROWTH_LIMIT = 24 * MiB
HELLO_APP = "tests.http2.h2apps:hello"


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert_files(tmp_path_factory.mktemp("h2-flood-certs"))


@pytest.fixture(params=["h2c", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each flood over h2c (prior knowledge) and over TLS (ALPN h2): the
    bytes meet different buffers on the way in."""
    return str(request.param)


@pytest.fixture
def h2server(
    transport: str, cert_files: tuple[str, str]
) -> Iterator[Callable[..., H2Server]]:
    started: list[H2Server] = []

    def start(app: str = HELLO_APP, **kwargs: Any) -> H2Server:
        if transport == "tls":
            kwargs["certfile"], kwargs["keyfile"] = cert_files
        server = H2Server(app, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def warm_baseline(server: H2Server) -> int:
    """RSS after one ordinary h2 exchange, so first-use allocations are not
    counted as the flood's."""
    conn = server.connect()
    conn.handshake()
    assert conn.get(1) == (200, b"Hello, world!")
    conn.close()
    time.sleep(0.1)
    return server.rss()


def assert_bounded(server: H2Server, before: int) -> None:
    after = server.rss()
    assert after - before < GROWTH_LIMIT, (
        f"server RSS grew by {(after - before) / MiB:.1f} MiB during the flood "
        f"({before / MiB:.1f} -> {after / MiB:.1f} MiB)"
    )


def assert_still_serves(server: H2Server) -> None:
    """The flood cost one connection, not the server."""
    conn = server.connect()
    conn.handshake()
    assert conn.get(1) == (200, b"Hello, world!")
    conn.close()


def flood(
    conn: H2Raw, chunk: bytes, total: int, stall: float = 1.0, watch: bool = False
) -> tuple[int, str]:
    """Writes ``chunk`` until ``total`` bytes went out, the server closed, or a
    write blocked for ``stall`` seconds (the server stopped reading). With
    ``watch``, also stops once a GOAWAY arrives (a server may go on draining
    what the client sends after its GOAWAY, so writes alone do not tell).
    Returns (bytes written, "sent" | "closed" | "stalled" | "goaway")."""
    sent = 0
    while sent < total:
        conn.sock.settimeout(stall)
        try:
            conn.sock.sendall(chunk)
        except socket.timeout:
            return sent, "stalled"
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return sent, "closed"
        sent += len(chunk)
        if watch:
            if any(isinstance(f, GoAwayFrame) for f in conn.poll()):
                return sent, "goaway"
            if conn.eof:
                return sent, "closed"
    return sent, "sent"


def verdict(conn: H2Raw, result: str) -> tuple[str, int | None]:
    """The flood's end: the GOAWAY ``flood`` saw, else what comes next."""
    if result == "goaway":
        goaway = next(f for f in conn.frames if isinstance(f, GoAwayFrame))
        return "goaway", goaway.error_code
    kind, code, _ = conn.outcome(timeout=5)
    return kind, code


def test_rapid_reset_gets_goaway_enhance_your_calm(
    h2server: Callable[..., H2Server],
) -> None:
    """CVE-2023-44487: HEADERS then RST_STREAM at once, over and over. The
    server must not keep doing the work of a new stream per 2 frames forever:
    past a bound it answers GOAWAY (ENHANCE_YOUR_CALM) and closes."""
    server = h2server()
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    block = conn.encode(request_headers("/"))
    batch = b""
    stream_id = 1
    result = "sent"
    for _ in range(20):  # up to 20 x 500 streams opened and reset
        batch = b"".join(
            conn.headers_frame(sid, block=block) + conn.rst_frame(sid)
            for sid in range(stream_id, stream_id + 1000, 2)
        )
        stream_id += 1000
        _, result = flood(conn, batch, len(batch), watch=True)
        if result != "sent":
            break
    kind, code = verdict(conn, result)
    assert kind in ("goaway", "closed"), f"got {kind} {code}: {conn.describe()}"
    if kind == "goaway":
        assert code == ErrorCodes.ENHANCE_YOUR_CALM, conn.describe()
    assert conn.closed_by_server(5), "GOAWAY sent, but the connection stayed open"
    assert_bounded(server, before)
    assert_still_serves(server)


def test_continuation_flood_is_closed(h2server: Callable[..., H2Server]) -> None:
    """CVE-2024-27316 class: a HEADERS without END_HEADERS, then CONTINUATION
    frames forever. The header block can never be complete; a server that
    collects it grows without bound. It must close the connection."""
    server = h2server()
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    conn.send(conn.headers_frame(1, request_headers("/"), end_headers=False))
    # Each CONTINUATION carries complete literal fields (not indexed) so the
    # bytes stay a valid HPACK stream however far the server decodes them.
    field = b"\x00\x06x-junk" + b"\x7f\x49" + b"a" * 200  # a 200-byte value
    fragment = field * 78  # ~16 KiB, under the default SETTINGS_MAX_FRAME_SIZE
    frame = conn.continuation_frame(1, fragment)
    sent, result = flood(conn, frame * 16, 96 * MiB, watch=True)  # 256 KiB per write
    assert result != "sent", f"the server took {sent / MiB:.0f} MiB of one header block"
    kind, code = verdict(conn, result)
    if kind == "goaway":
        assert code != ErrorCodes.NO_ERROR, conn.describe()
    assert conn.closed_by_server(5), f"{result} after {sent} bytes, but not closed"
    assert_bounded(server, before)
    assert_still_serves(server)


def test_hpack_bomb_is_refused(h2server: Callable[..., H2Server]) -> None:
    """A header block of ~16 KiB that indexes one 4 KiB dynamic-table entry
    thousands of times decompresses to ~48 MiB, far over any header list
    limit: refused (431, RST_STREAM or a closed connection), never served."""
    server = h2server()
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    refused = 0
    for sid in range(1, 21, 2):
        # The last field encoded lands at dynamic index 62; 0xBE indexes it.
        block = conn.encode(request_headers("/") + [("x-bomb", "a" * 4000)])
        block += b"\xbe" * (16000 - len(block))
        if not conn.try_send(conn.headers_frame(sid, block=block)):
            break
        try:
            frame = conn.read_until(
                lambda f: isinstance(f, GoAwayFrame)
                or isinstance(f, (HeadersFrame, RstStreamFrame))
                and f.stream_id == sid,
                timeout=5,
            )
        except Closed:  # the strongest refusal
            refused += 1
            break
        if isinstance(frame, HeadersFrame):
            status = dict(getattr(frame, "decoded")).get(":status")
            assert status == "431", f"the bomb was served: status {status}"
        refused += 1
        if isinstance(frame, GoAwayFrame):
            break
    assert refused >= 1  # a silent server fails above, by timeout
    assert_bounded(server, before)
    assert_still_serves(server)


def test_header_list_over_the_limit_gets_431_and_the_connection_lives(
    h2server: Callable[..., H2Server],
) -> None:
    """The honest counterpart of the bomb: 70 KB of plain fields, over the
    advertised SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB), in HEADERS and
    CONTINUATION frames. That one request is refused (431 or RST_STREAM);
    the connection goes on serving."""
    server = h2server()
    conn = server.connect()
    limit = conn.handshake().settings.get(MAX_HEADER_LIST_SIZE)
    assert limit is not None and limit < 70 * 1032, limit
    fields = request_headers("/") + [(f"x-h{i}", "v" * 1000) for i in range(70)]
    block = conn.encode(fields)
    parts = [block[i : i + 16000] for i in range(0, len(block), 16000)]
    frames = raw_frame(HEADERS, END_STREAM, 1, parts[0])
    for n, part in enumerate(parts[1:], 2):
        frames += raw_frame(
            CONTINUATION, END_HEADERS if n == len(parts) else 0, 1, part
        )
    conn.send(frames)
    frame = conn.read_until(
        lambda f: isinstance(f, (HeadersFrame, RstStreamFrame, GoAwayFrame))
    )
    if isinstance(frame, HeadersFrame):
        assert dict(getattr(frame, "decoded"))[":status"] == "431"
    else:
        assert isinstance(frame, RstStreamFrame), conn.describe()
    assert conn.get(3) == (200, b"Hello, world!")


@pytest.mark.parametrize(
    "name, frame",
    [
        pytest.param("settings", H2Raw.settings_frame({}), id="settings"),
        pytest.param("ping", H2Raw.ping_frame(b"flooding"), id="ping"),
    ],
)
def test_control_frame_flood_unread_is_bounded(
    h2server: Callable[..., H2Server], name: str, frame: bytes
) -> None:
    """SETTINGS and PING each oblige the server to answer (an ACK). A client
    that floods them and never reads makes those answers pile up: the server
    must stop reading (or close), not queue them in memory."""
    server = h2server()
    before = warm_baseline(server)
    # A tiny receive buffer on our side: the server's ACKs cannot hide in it.
    conn = server.connect(recv_buffer=4096)
    sent, result = flood(conn, frame * 65536, 128 * MiB)
    assert result in ("stalled", "closed"), (
        f"the server read {sent / MiB:.0f} MiB of {name} frames without "
        "anyone reading its answers"
    )
    assert_bounded(server, before)
    conn.close()
    assert_still_serves(server)


def test_zero_window_stall_is_cut_by_send_timeout(
    h2server: Callable[..., H2Server],
) -> None:
    """The client sets SETTINGS_INITIAL_WINDOW_SIZE 0 and never opens it
    while the app streams 256 MiB: the response cannot move, so the send
    timeout must end the stream (RST_STREAM) or the connection, and the app's
    chunks must not pile up in the server meanwhile."""
    server = h2server("tests.http2.h2apps:stream", args=["--timeout-send", "1"])
    before = warm_baseline(server)
    conn = server.connect(settings={0x4: 0})
    conn.handshake()
    conn.request(1, "/stream")
    started = time.monotonic()
    kind, code, sid = conn.outcome(timeout=8)
    waited = time.monotonic() - started
    assert kind in ("rst", "goaway", "closed"), conn.describe()
    if kind == "rst":
        assert sid == 1
    assert not any(
        isinstance(f, DataFrame) and f.data for f in conn.frames
    ), "DATA sent into a zero window"
    assert waited >= 0.5, f"ended after {waited:.2f}s: before the send timeout"
    assert_bounded(server, before)


def test_unread_socket_with_open_windows_is_cut_by_send_timeout(
    h2server: Callable[..., H2Server],
) -> None:
    """CVE-2019-9517 (internal data buffering): the windows are wide open but
    the client never reads the socket, while the app streams 256 MiB. Only
    TCP pushes back; the server must pass that back to the app (its send()
    waits) instead of buffering, and close at the send timeout."""
    server = h2server("tests.http2.h2apps:stream", args=["--timeout-send", "1"])
    before = warm_baseline(server)
    conn = server.connect(settings={INITIAL_WINDOW_SIZE: 2**31 - 1}, recv_buffer=4096)
    conn.send(H2Raw.window_update_frame(0, 2**31 - 1 - 65535))
    conn.request(1, "/stream")
    time.sleep(2.5)  # past the 1 s send timeout, without reading a byte
    assert_bounded(server, before)
    conn.timeout = 10
    assert conn.closed_by_server(10), "the connection outlived the send timeout"
    received = sum(len(f.data) for f in conn.frames if isinstance(f, DataFrame))
    assert received < 64 * MiB, f"{received / MiB:.0f} MiB arrived: nothing waited"


def test_reset_flood_of_malformed_requests_gets_goaway(
    h2server: Callable[..., H2Server],
) -> None:
    """CVE-2019-9514 (reset flood): requests the server must answer with
    RST_STREAM (malformed: a connection-specific field), by the hundred thousand.
    Past a bound the server must give up on the connection (GOAWAY, close)
    rather than reset stream after stream for as long as the client likes."""
    server = h2server()
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    block = conn.encode(request_headers("/") + [("connection", "keep-alive")])
    result = "sent"
    for first in range(1, 400_001, 4000):  # 2000 requests per write
        batch = b"".join(
            conn.headers_frame(sid, block=block)
            for sid in range(first, first + 4000, 2)
        )
        _, result = flood(conn, batch, len(batch), watch=True)
        if result != "sent":
            break
    resets = sum(isinstance(f, RstStreamFrame) for f in conn.frames)
    assert result in ("goaway", "closed"), f"{resets} streams reset, no end in sight"
    kind, code = verdict(conn, result)
    if kind == "goaway":
        assert code == ErrorCodes.ENHANCE_YOUR_CALM, conn.describe()
    assert conn.closed_by_server(5)
    assert_bounded(server, before)
    assert_still_serves(server)


def test_empty_data_frame_flood_gets_goaway(h2server: Callable[..., H2Server]) -> None:
    """CVE-2019-9518 (empty frames flood): DATA frames of no bytes and no
    END_STREAM cost the server work each and the client nothing; past a
    bound the server must give up on the connection."""
    server = h2server("tests.http2.h2apps:slow")
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    conn.request(1, "/slow", method="POST", end_stream=False)
    empty = raw_frame(DATA, 0, 1, b"") * 10_000
    sent, result = flood(conn, empty, len(empty) * 100, watch=True)  # 1M frames
    assert result != "sent", f"{sent // 9:,} empty DATA frames taken"
    kind, code = verdict(conn, result)
    if kind == "goaway":
        assert code == ErrorCodes.ENHANCE_YOUR_CALM, conn.describe()
    assert conn.closed_by_server(5)
    assert_bounded(server, before)
    assert_still_serves(server)


def test_priority_shuffle_flood_stays_cheap(h2server: Callable[..., H2Server]) -> None:
    """CVE-2019-9513 (resource loop): a dependency tree reshuffled by PRIORITY
    frames over and over. RFC 9113 deprecates the scheme; a server that
    ignores it has nothing to churn: after 500,000 PRIORITY frames a PING is
    still answered at once (or the server gave up on the connection)."""
    server = h2server("tests.http2.h2apps:slow")
    before = warm_baseline(server)
    conn = server.connect()
    conn.handshake()
    for sid in range(1, 21, 2):
        conn.request(sid, "/slow")
    shuffle = b"".join(
        raw_frame(PRIORITY, 0, sid, struct.pack(">LB", dep | 0x80000000, 255))
        for sid, dep in zip(range(1, 21, 2), range(19, 0, -2))
    )
    sent, result = flood(conn, shuffle * 5000, len(shuffle) * 50_000, watch=True)
    if result in ("sent", "stalled"):
        started = time.monotonic()
        assert conn.alive(
            timeout=5
        ), f"no PING answer after {sent // 14:,} PRIORITY frames"
        assert time.monotonic() - started < 2
    else:
        kind, code = verdict(conn, result)
        assert kind == "closed" or code == ErrorCodes.ENHANCE_YOUR_CALM, conn.describe()
    assert_bounded(server, before)


def test_streams_over_max_concurrent_are_refused(
    h2server: Callable[..., H2Server],
) -> None:
    """RFC 9113 §5.1.2: HEADERS beyond the advertised
    SETTINGS_MAX_CONCURRENT_STREAMS are a stream error REFUSED_STREAM (or
    PROTOCOL_ERROR); the streams within the limit are answered."""
    limit = 4
    server = h2server(
        "tests.http2.h2apps:slow", limits={"max-concurrent-streams": limit}
    )
    conn = server.connect()
    settings = conn.handshake()
    assert settings.settings.get(0x3) == limit, settings.settings
    time.sleep(0.1)  # our SETTINGS ACK is on its way before the burst
    opened = list(range(1, 2 * (limit + 4), 2))  # limit + 4 streams at once
    conn.send(
        b"".join(conn.headers_frame(sid, request_headers("/slow")) for sid in opened)
    )
    answered: set[int] = set()
    refused: dict[int, int] = {}
    deadline = time.monotonic() + 8
    while len(answered) + len(refused) < len(opened) and time.monotonic() < deadline:
        try:
            frame = conn.read_until(
                lambda f: isinstance(f, RstStreamFrame) or "END_STREAM" in f.flags,
                timeout=deadline - time.monotonic(),
            )
        except Closed:
            pytest.fail(
                f"connection closed instead of refusing streams: {conn.describe()}"
            )
        if isinstance(frame, RstStreamFrame):
            refused[frame.stream_id] = frame.error_code
        elif "END_STREAM" in frame.flags:
            answered.add(frame.stream_id)
    assert refused, f"no stream refused; answered {sorted(answered)}"
    assert set(refused.values()) <= {
        ErrorCodes.REFUSED_STREAM,
        ErrorCodes.PROTOCOL_ERROR,
    }, refused
    assert len(refused) >= len(opened) - limit, (answered, refused)
    assert answered == set(opened[:limit]), (answered, refused)
    if PEER == "ferrule":
        assert set(refused.values()) == {ErrorCodes.REFUSED_STREAM}, refused


def test_resetting_accepted_streams_does_not_lift_the_stream_limit(
    h2server: Callable[..., H2Server],
) -> None:
    """Rapid reset, the variant that waits for the server to accept each batch
    before resetting it: the apps of reset streams still run, so they still
    count against the stream limit. New streams beyond it are refused, a client
    that keeps opening them gets GOAWAY, and the number of app calls running at
    once never exceeds the limit."""
    limit = 10
    server = h2server(
        "tests.http2.h2apps:counting", limits={"max-concurrent-streams": limit}
    )
    conn = server.connect()
    conn.handshake()
    time.sleep(0.1)  # our SETTINGS ACK is on its way before the streams
    block = conn.encode(request_headers("/work"))
    previous: list[int] = []
    stream_id = 1
    result = "sent"
    for _ in range(40):
        batch = list(range(stream_id, stream_id + 2 * limit, 2))
        stream_id += 2 * limit
        data = b"".join(conn.rst_frame(sid) for sid in previous) + b"".join(
            conn.headers_frame(sid, block=block) for sid in batch
        )
        _, result = flood(conn, data, len(data), watch=True)
        if result != "sent":
            break
        previous = batch
        time.sleep(0.02)  # the server accepts this batch before its resets
    refused = [
        f
        for f in conn.frames
        if isinstance(f, RstStreamFrame) and f.error_code == ErrorCodes.REFUSED_STREAM
    ]
    kind, code = verdict(conn, result)
    if PEER == "ferrule":
        assert refused, f"no stream refused: {conn.describe()}"
        assert (kind, code) == (
            "goaway",
            ErrorCodes.ENHANCE_YOUR_CALM,
        ), f"got {kind} {code}: {conn.describe()}"
    conn.close()
    probe = server.connect()
    probe.handshake()
    status, body = probe.get(1, "/peak")
    probe.close()
    assert status == 200
    assert int(body) <= limit, f"{int(body)} app calls ran at once, limit {limit}"
