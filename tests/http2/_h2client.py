"""A small HTTP/2 client on the `h2` package over a raw socket, for what
httpx and curl do not show: trailers, 1xx responses, resets, GOAWAY."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings


@dataclass
class Goaway:
    last_stream_id: int
    error_code: int


@dataclass
class Reply:
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H2Client:
    """One HTTP/2 connection (h2c prior knowledge, or TLS with ALPN h2)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        window: int | None = None,
        first: bytes = b"",
    ) -> None:
        sock = socket.create_connection((host, port), timeout=10)
        if first:
            # Bytes ahead of the preface (a PROXY protocol header).
            sock.sendall(first)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.flush()
        self.buf = b""
        self.replies: dict[int, Reply] = {}
        self.goaways: list[Goaway] = []
        self.ping_acks: list[bytes] = []
        self.closed = False
        self.acked = False
        # False: PINGs go unanswered (a client that does not play along).
        self.answer_pings = True
        if window is not None:
            # Until the server acknowledges the window, it may use the
            # default one.
            self.acked = False
            while not self.acked and self.pump():
                pass

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end: bool = True,
        scheme: str = "http",
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        hdrs = [
            (":method", method),
            (":scheme", scheme),
            (":authority", "localhost"),
            (":path", path),
            *(headers or []),
        ]
        if method == "CONNECT":
            # Extended CONNECT: :protocol right after :method.
            hdrs.insert(1, hdrs.pop(4))
        self.conn.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.replies[sid] = Reply()
        return sid

    def send_data(self, sid: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid, error_code=8)  # CANCEL
        self.flush()

    def pump(self) -> bool:
        """Reads once and handles the events; False at EOF."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        # Frame by frame: after a GOAWAY the `h2` package refuses the frames
        # that follow (the PING and final GOAWAY of a graceful shutdown),
        # and a refusal would lose the events of the frames before it.
        while len(self.buf) >= 9:
            size = 9 + int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < size:
                break
            frame, self.buf = self.buf[:size], self.buf[size:]
            if frame[3] == 0x6 and not self.answer_pings:
                continue
            if frame[3] == 0x7:
                # GOAWAY is kept here, not given to the `h2` package: it
                # would refuse the frames of the streams still finishing.
                self.goaways.append(
                    Goaway(
                        int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF,
                        int.from_bytes(frame[13:17], "big"),
                    )
                )
                continue
            events = self.conn.receive_data(frame)
            for ev in events:
                self.handle(ev)
        self.flush()
        return True

    def handle(self, ev: Any) -> None:
        if isinstance(ev, h2.events.SettingsAcknowledged):
            self.acked = True
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self.replies[ev.stream_id].informational.append(list(ev.headers))
        elif isinstance(ev, h2.events.ResponseReceived):
            self.replies[ev.stream_id].headers = list(ev.headers)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.replies[ev.stream_id].trailers = list(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self.replies[ev.stream_id].body += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.PingAckReceived):
            self.ping_acks.append(ev.ping_data)
        elif isinstance(ev, h2.events.StreamEnded):
            self.replies[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.replies:
                self.replies[ev.stream_id].reset = ev.error_code

    def settings_enable_connect_protocol(self) -> bool:
        """Whether the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1."""
        # The server's SETTINGS come first: one read has them.
        while (
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
            not in self.conn.remote_settings
        ):
            if not self.pump():
                break
        return bool(self.conn.remote_settings.enable_connect_protocol)

    def ping(self) -> None:
        """A PING round trip: once it is back, the server has read every
        frame sent before it."""
        opaque = os.urandom(8)
        self.conn.ping(opaque)
        self.flush()
        while opaque not in self.ping_acks:
            if not self.pump():
                raise ConnectionError("closed before the PING came back")

    def wait(self, sid: int) -> Reply:
        reply = self.replies[sid]
        while not (reply.ended or reply.reset is not None):
            if not self.pump():
                break
        return reply

    def wait_headers(self, sid: int) -> Reply:
        reply = self.replies[sid]
        while not reply.headers and reply.reset is None:
            if not self.pump():
                break
        return reply

    def request(self, path: str = "/", **kwargs: Any) -> Reply:
        return self.wait(self.start(path, **kwargs))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
