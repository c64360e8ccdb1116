"""The asyncio loop runs on ferrule's selector: asyncio facilities work inside
apps, and the engine keeps accepting and reading while Python never idles."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx


async def respond(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def test_requests_progress_while_the_loop_is_never_idle(serve: Any) -> None:
    """A background task that yields with sleep(0) forever keeps asyncio's
    ready queue non-empty, so every select() has timeout 0: accepts and reads
    must still be driven (docs/decisions.md, the timeout-0 trap)."""
    spins = 0
    started = False

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal started
        if scope["type"] != "http":
            return
        if not started:
            started = True

            async def spin() -> None:
                nonlocal spins
                while True:
                    spins += 1
                    await asyncio.sleep(0)

            asyncio.get_running_loop().create_task(spin())
        await respond(send, b"ok")

    srv = serve(app, lifespan="off")
    assert httpx.get(srv.url + "/").text == "ok"  # starts the spinner
    t = time.monotonic()
    for _ in range(200):
        # A new connection each time (raw sockets: the client must not be
        # the slow part): accepts and reads must both progress.
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok")
    elapsed = time.monotonic() - t
    before = spins
    time.sleep(0.2)
    assert spins > before  # the spinner really never lets the loop idle
    # The server shares this process's GIL with the client here, so allow
    # generously; a starved accept path takes seconds per connection.
    assert elapsed < 10


def test_executor_threads_timers_and_call_soon_threadsafe_work_in_apps(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        # A thread pool (wakes the loop through its self-pipe).
        value = await loop.run_in_executor(None, lambda: sum(range(1000)))
        # A timer.
        t = loop.time()
        await asyncio.sleep(0.01)
        slept = loop.time() - t
        # A plain thread resolving a future thread-safely.
        fut: asyncio.Future[str] = loop.create_future()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(fut.set_result, "thread")).start()
        got = await asyncio.wait_for(fut, 5)
        await respond(send, f"{value} {got} {slept >= 0.009}".encode())

    srv = serve(app, lifespan="off")
    assert httpx.get(srv.url + "/").text == "499500 thread True"


def test_apps_can_use_their_own_sockets_on_the_loop(serve: Any) -> None:
    """Python-registered fds (an asyncio stream to another server) are
    level-triggered through ferrule's inner epoll."""
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]

    def echo_once() -> None:
        conn, _ = upstream.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                data += conn.recv(65536)
            # Reply in two pieces so the app's reader must wait for more.
            conn.sendall(data[:3])
            time.sleep(0.05)
            conn.sendall(data[3:])

    threading.Thread(target=echo_once, daemon=True).start()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 100_000 + b"\n")
        await writer.drain()
        line = await reader.readexactly(100_001)
        writer.close()
        await respond(send, str(len(line)).encode())

    srv = serve(app, lifespan="off")
    assert httpx.get(srv.url + "/", timeout=10).text == "100001"
    upstream.close()
