"""The control channel between the ``--workers`` supervisor and one worker.

A Unix stream socketpair made before the fork; one message per line:

* supervisor -> worker: ``ping <id>``, ``stats <id>``;
* worker -> supervisor: ``ready`` (once it serves, after lifespan startup),
  ``pong <id>``, ``stats <id> <json of Server.stats()>``, and as it stops
  ``final 0 <json of Server.stats()>`` (its last counters, so the metrics'
  sum over workers never goes back when a worker is replaced).

The worker reads its end from its event loop (``loop.add_reader``), so a
worker whose loop is blocked does not answer: that is what the supervisor's
health check detects. End of file on the channel means the supervisor is
gone (even killed by SIGKILL): the worker then stops gracefully instead of
serving on as an orphan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Protocol

logger = logging.getLogger("ferrule.error")

READY = "ready"
PING = "ping"
PONG = "pong"
STATS = "stats"
FINAL = "final"


class _Served(Protocol):
    """What the link needs of :class:`~ferrule.server.Server`."""

    should_exit: bool

    def stats(self) -> dict[str, int]: ...


def split_lines(buffer: bytearray, data: bytes) -> list[str]:
    """Appends ``data`` to ``buffer`` and takes out the complete lines."""
    buffer += data
    *lines, rest = buffer.split(b"\n")
    buffer[:] = rest
    return [line.decode("utf-8", "replace") for line in lines]


class WorkerLink:
    """The worker's end of the channel (see the module's docstring)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._server: _Served | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._writing = False

    def attach(self, server: _Served, loop: asyncio.AbstractEventLoop) -> None:
        """Starts answering the supervisor from ``loop``."""
        self._server, self._loop = server, loop
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def ready(self) -> None:
        """Tells the supervisor this worker serves."""
        self._send(READY)

    def detach(self, final_stats: dict[str, int] | None = None) -> None:
        """Stops reading (the loop is about to close), after sending
        ``final_stats`` if given; the socket closes when the process exits."""
        if final_stats is not None:
            self._outbox += f"{FINAL} 0 {json.dumps(final_stats)}\n".encode()
            try:
                # The loop is done serving: a short blocking send is fine.
                self.sock.settimeout(1.0)
                self.sock.sendall(self._outbox)
            except OSError:
                pass
            self._outbox.clear()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.sock.fileno())
            if self._writing:
                loop.remove_writer(self.sock.fileno())
        self._loop = None

    # ------------------------------------------------------------ internals

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._supervisor_gone()
            return
        for line in split_lines(self._inbox, data):
            self._answer(line)

    def _answer(self, line: str) -> None:
        kind, _, ident = line.partition(" ")
        if kind == PING:
            self._send(f"{PONG} {ident}")
        elif kind == STATS and self._server is not None:
            # Compact JSON has no newline, so it stays one message.
            self._send(f"{STATS} {ident} {json.dumps(self._server.stats())}")

    def _supervisor_gone(self) -> None:
        self.detach()
        server = self._server
        if server is not None and not server.should_exit:
            logger.info(
                "Parent process gone: stopping worker process [%d]", os.getpid()
            )
            server.should_exit = True

    def _send(self, message: str) -> None:
        self._outbox += message.encode("utf-8") + b"\n"
        self._flush()

    def _flush(self) -> None:
        # Never block the loop: what the socket does not take now waits for
        # it to be writable (the supervisor reads its ends all the time, so
        # in practice everything goes at once).
        try:
            sent = self.sock.send(self._outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._outbox.clear()  # the supervisor is gone: EOF will follow
            sent = 0
        del self._outbox[:sent]
        loop = self._loop
        if loop is None:
            return
        if self._outbox and not self._writing:
            loop.add_writer(self.sock.fileno(), self._flush)
            self._writing = True
        elif not self._outbox and self._writing:
            loop.remove_writer(self.sock.fileno())
            self._writing = False


def encode_request(kind: str, ident: int) -> bytes:
    return f"{kind} {ident}\n".encode("ascii")


def parse_reply(line: str) -> tuple[str, int | None, object]:
    """``(kind, id, payload)`` of a worker's message; payload is the stats
    dict of a ``stats`` or ``final`` message, else None."""
    kind, _, rest = line.partition(" ")
    if kind == READY:
        return kind, None, None
    ident_text, _, payload = rest.partition(" ")
    try:
        ident = int(ident_text)
    except ValueError:
        return kind, None, None
    if kind in (STATS, FINAL):
        try:
            return kind, ident, json.loads(payload)
        except ValueError:
            return kind, ident, None
    return kind, ident, None
