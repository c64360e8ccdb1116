"""``--metrics-bind HOST:PORT``: the engine's counters as a Prometheus text
endpoint, on an address of its own (never on the app's port, so an app
route cannot shadow it and the app's clients cannot read it).

The counters are the engine's relaxed atomics (``Server.stats()``); reading
them costs nothing on the request path. The one measurement that exists
only for this endpoint, the request duration histogram, is switched on only
when the endpoint is.

With one process the worker serves the endpoint on its own event loop; with
``--workers N`` the supervisor serves it, asking each worker for its
counters: every series has a ``worker`` label, the worker's pid, and
``worker="all"`` is their sum.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "GAUGES",
    "MetricsThread",
    "parse_bind",
    "render",
    "serve_on_loop",
]

logger = logging.getLogger("ferrule.error")

Stats = Mapping[str, int]

#: (stats key, metric name, type, help). Counters end in ``_total``.
_SIMPLE: tuple[tuple[str, str, str, str], ...] = (
    (
        "requests",
        "ferrule_requests_total",
        "counter",
        "Requests whose head was parsed.",
    ),
    (
        "in_flight",
        "ferrule_requests_in_flight",
        "gauge",
        "Requests whose response is not complete.",
    ),
    ("connections", "ferrule_connections_total", "counter", "Connections accepted."),
    (
        "active_connections",
        "ferrule_connections_open",
        "gauge",
        "Connections open now.",
    ),
    (
        "bytes_read",
        "ferrule_received_bytes_total",
        "counter",
        "Bytes read from clients.",
    ),
    (
        "bytes_written",
        "ferrule_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
    ),
    (
        "write_syscalls",
        "ferrule_write_syscalls_total",
        "counter",
        "write/writev/sendfile calls.",
    ),
    (
        "bad_requests",
        "ferrule_bad_requests_total",
        "counter",
        "Malformed requests answered 400.",
    ),
    ("app_errors", "ferrule_app_errors_total", "counter", "Requests whose app raised."),
)
#: Stats keys that are levels, not counts: never summed over time.
GAUGES = ("active_connections", "in_flight")
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_BUCKET_PREFIX = "duration_le_"
_CLOSED_PREFIX = "closed_"


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6, ``:PORT`` for all addresses)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _buckets(stats: Stats) -> list[tuple[str, int]]:
    """The histogram's ``(le, count)`` pairs, cumulative, ``+Inf`` last."""
    raw: list[tuple[float, int]] = []
    for key, value in stats.items():
        if not key.startswith(_BUCKET_PREFIX):
            continue
        bound = key[len(_BUCKET_PREFIX) :]
        le = float("inf") if bound == "inf" else int(bound.removesuffix("us")) / 1e6
        raw.append((le, value))
    raw.sort()
    out, total = [], 0
    for le, value in raw:
        total += value
        out.append(("+Inf" if le == float("inf") else repr(le), total))
    return out


def render(series: Mapping[str, Stats]) -> str:
    """Prometheus text format (0.0.4) for ``{worker label: stats}`` (the
    supervisor adds the ``all`` series itself)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    for key, name, kind, help_text in _SIMPLE:
        family(name, kind, help_text)
        for worker, stats in series.items():
            lines.append(f'{name}{{worker="{worker}"}} {stats.get(key, 0)}')

    family("ferrule_responses_total", "counter", "Responses by status class.")
    for worker, stats in series.items():
        for cls in _CLASSES:
            value = stats.get(f"responses_{cls}", 0)
            lines.append(
                f'ferrule_responses_total{{worker="{worker}",class="{cls}"}} {value}'
            )

    family(
        "ferrule_writes_per_response",
        "gauge",
        "Write system calls per response since start (1 is the floor).",
    )
    for worker, stats in series.items():
        responses = stats.get("responses", 0)
        ratio = stats.get("write_syscalls", 0) / responses if responses else 0.0
        lines.append(f'ferrule_writes_per_response{{worker="{worker}"}} {ratio:.4f}')

    name = "ferrule_request_duration_seconds"
    family(
        name, "histogram", "Time from request head to the response's last byte queued."
    )
    for worker, stats in series.items():
        buckets = _buckets(stats)
        for le, count in buckets:
            lines.append(f'{name}_bucket{{worker="{worker}",le="{le}"}} {count}')
        count = buckets[-1][1] if buckets else 0
        lines.append(
            f'{name}_sum{{worker="{worker}"}} {stats.get("duration_us_sum", 0) / 1e6}'
        )
        lines.append(f'{name}_count{{worker="{worker}"}} {count}')

    family(
        "ferrule_connections_closed_total", "counter", "Closed connections by reason."
    )
    for worker, stats in series.items():
        for key, value in sorted(stats.items()):
            if key.startswith(_CLOSED_PREFIX):
                reason = key[len(_CLOSED_PREFIX) :]
                lines.append(
                    f'ferrule_connections_closed_total{{worker="{worker}",reason="{reason}"}} {value}'
                )
    return "\n".join(lines) + "\n"


_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A scrape's request head: all of it within this time, at most this many lines.
_HEAD_TIMEOUT = 10.0
_HEAD_LINES = 100


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line; the header lines after it are read and ignored."""
    line = await reader.readline()
    for _ in range(_HEAD_LINES):
        if await reader.readline() in (b"\r\n", b"\n", b""):
            return line
    raise ValueError("request head too long")


def _http_response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def serve_on_loop(
    host: str, port: int, collect: Callable[[], Mapping[str, Stats]]
) -> asyncio.base_events.Server:
    """The endpoint on the running loop (one process): ``GET /metrics``;
    one request per connection, as scrapers send."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(_read_head(reader), _HEAD_TIMEOUT)
            parts = line.split()
            if (
                len(parts) >= 2
                and parts[0] in (b"GET", b"HEAD")
                and parts[1].split(b"?")[0] == b"/metrics"
            ):
                body = render(collect()).encode()
                response = _http_response(
                    "200 OK", b"" if parts[0] == b"HEAD" else body, _CONTENT_TYPE
                )
            else:
                response = _http_response("404 Not Found", b"Not Found\n", "text/plain")
            writer.write(response)
            await writer.drain()
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            # A slow, oversized (readline's ValueError) or broken request:
            # dropped, without a traceback.
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


class MetricsThread:
    """The endpoint in a thread of its own (the supervisor of ``--workers``,
    which runs no event loop)."""

    def __init__(
        self, host: str, port: int, collect: Callable[[], Mapping[str, Stats]]
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render(collect()).encode()
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            # An idle or slow scraper must not hold a thread for ever.
            timeout = _HEAD_TIMEOUT

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes are not the app's traffic

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self._server = Server((host, port), Handler)
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ferrule-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def close_in_child(self) -> None:
        """In a forked worker (where the serving thread does not exist):
        close the inherited listening socket."""
        self._server.socket.close()
