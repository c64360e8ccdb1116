"""Serving on a loop ferrule did not create: ``await Server.serve()``,
``ferrule.serve``, the lifecycle, and the ASGI calls gateways drive."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import ferrule
from ferrule import Config, Server

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + body})


def config(app: Any = hello, **kwargs: Any) -> Config:
    kwargs.setdefault("port", 0)
    return Config(app, lifespan="off", log_level="warning", **kwargs)


def run_in_thread(coro_fn: Any, *, uvloop: bool = False) -> Any:
    """Runs ``coro_fn()`` on a fresh loop in another thread, as an embedder
    would; returns its result."""
    result: list[Any] = []

    def main() -> None:
        if uvloop:
            import uvloop as uv

            result.append(uv.run(coro_fn()))
        else:
            result.append(asyncio.run(coro_fn()))

    t = threading.Thread(target=main)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return result[0] if result else None


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_serve_on_the_callers_loop_answers_requests(use_uvloop: bool) -> None:
    async def main() -> list[str]:
        server = Server(config())
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        assert server.started and server.started_event.is_set()
        host, port = server.bound_address  # type: ignore[misc]
        assert port != 0 and server.bound_addresses == [(host, port)]

        def client() -> list[str]:
            with httpx.Client() as c:
                return [
                    c.post(f"http://{host}:{port}/", content=b"%d" % i).text
                    for i in range(50)
                ]

        texts = await asyncio.to_thread(client)
        await server.shutdown()
        assert task.done()
        return texts

    texts = run_in_thread(main, uvloop=use_uvloop)
    assert texts == [f"hello {i}" for i in range(50)]


def test_ferrule_serve_stops_on_its_shutdown_trigger() -> None:
    async def main() -> bool:
        stop = asyncio.Event()
        task = asyncio.ensure_future(
            ferrule.serve(hello, config(), shutdown_trigger=stop.wait)
        )
        await asyncio.sleep(0.2)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)
        return task.exception() is None

    assert run_in_thread(main)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_start_and_stop_100_times_leaks_no_fd_or_thread() -> None:
    async def cycle() -> None:
        server = Server(config())
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        host, port = server.bound_address  # type: ignore[misc]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"hello ")
        writer.close()
        await server.shutdown()
        await task

    async def main() -> tuple[int, int, int, int, int]:
        for _ in range(5):
            await cycle()  # first uses: imports, caches, allocator pools
        fds, threads, rss = _fds(), threading.active_count(), _rss()
        for _ in range(100):
            await cycle()
        grown = _rss() - rss
        return fds, threads, _fds(), threading.active_count(), grown

    fds, threads, fds_after, threads_after, grown = run_in_thread(main)
    assert fds_after <= fds, (fds, fds_after)
    assert threads_after <= threads, (threads, threads_after)
    # A leaked engine (runtime, buffers, bridge) per cycle would add
    # megabytes over 100 cycles.
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"


def test_run_started_and_stopped_leaks_no_fd() -> None:
    def cycle() -> None:
        server = Server(config())
        t = threading.Thread(target=server.run)
        t.start()
        assert server.started_event.wait(10)
        server.should_exit = True
        t.join(10)

    cycle()
    fds = _fds()
    for _ in range(10):
        cycle()
    assert _fds() <= fds


def test_several_listeners_tcp_and_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")

    async def main() -> tuple[str, str, list[tuple[str, int]]]:
        server = Server(config(bind=["127.0.0.1:0", f"unix:{path}"]))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        addrs = server.bound_addresses
        host, port = addrs[0]

        def client() -> tuple[str, str]:
            with httpx.Client() as c:
                tcp = c.get(f"http://{host}:{port}/").text
            with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as c:
                uds = c.get("http://x/").text
            return tcp, uds

        tcp, uds = await asyncio.to_thread(client)
        await server.shutdown()
        await task
        return tcp, uds, addrs

    tcp, uds, addrs = run_in_thread(main)
    assert (tcp, uds) == ("hello ", "hello ")
    assert addrs[1] == (path, 0)


def test_several_servers_in_one_loop() -> None:
    async def main() -> list[str]:
        servers = [Server(config()) for _ in range(3)]
        tasks = [asyncio.ensure_future(s.serve()) for s in servers]
        for s in servers:
            await s.wait_started()
        urls = ["http://%s:%d/" % s.bound_address for s in servers]  # type: ignore[str-format]

        def client() -> list[str]:
            with httpx.Client() as c:
                return [c.get(u).text for u in urls]

        texts = await asyncio.to_thread(client)
        await asyncio.gather(*(s.shutdown() for s in servers))
        await asyncio.gather(*tasks)
        return texts

    assert run_in_thread(main) == ["hello "] * 3


def test_bind_failure_ends_serve_with_systemexit_and_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    async def main() -> int:
        try:
            await Server(config(port=port)).serve()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    try:
        with caplog.at_level("ERROR", logger="ferrule.error"):
            code = run_in_thread(main)
    finally:
        taken.close()
    # uvicorn 0.54's status for a failed start-up (STARTUP_FAILURE).
    assert code == 3
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(port) in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()


def test_shutdown_from_another_thread_with_requests_in_flight() -> None:
    release = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/stream":
            for i in range(20):
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"%d," % i,
                        "more_body": True,
                    }
                )
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b"end"})
            return
        while not release.is_set():
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"done"})

    server = Server(config(slow, timeout_graceful_shutdown=10))
    loop_thread = threading.Thread(target=lambda: asyncio.run(server.serve()))
    loop_thread.start()
    assert server.started_event.wait(10)
    host, port = server.bound_address  # type: ignore[misc]
    results: list[str] = []
    lock = threading.Lock()

    def request(path: str) -> None:
        try:
            with httpx.Client(timeout=10) as c:
                text = c.get(f"http://{host}:{port}{path}").text
        except httpx.HTTPError as exc:
            text = f"error {type(exc).__name__}"
        with lock:
            results.append(text)

    clients = [threading.Thread(target=request, args=("/",)) for _ in range(100)]
    clients.append(threading.Thread(target=request, args=("/stream",)))
    for c in clients:
        c.start()
    deadline = time.monotonic() + 10
    while server.stats().get("in_flight", 0) < 101 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats()["in_flight"] == 101

    stopper_done = threading.Event()

    def stopper() -> None:
        asyncio.run(server.shutdown())
        stopper_done.set()

    threading.Thread(target=stopper).start()
    time.sleep(0.1)
    assert not stopper_done.is_set()  # requests are still in flight
    release.set()
    assert stopper_done.wait(10)
    # shutdown() returned: nothing is left.
    assert not any(t.name == "ferrule-engine" for t in threading.enumerate())
    for c in clients:
        c.join(10)
    loop_thread.join(10)
    assert not loop_thread.is_alive()
    assert sorted(results) == sorted(
        ["done"] * 100 + [",".join(map(str, range(20))) + ",end"]
    )


def test_daemon_thread_still_serving_lets_the_process_exit() -> None:
    script = """
import asyncio, socket, threading, time
from ferrule import Config, Server

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            await asyncio.sleep(0.01)

for mode in ("run", "serve"):
    server = Server(Config(app, port=0, lifespan="off", log_level="warning"))
    target = server.run if mode == "run" else (lambda s=server: asyncio.run(s.serve()))
    threading.Thread(target=target, daemon=True).start()
    server.started_event.wait(10)
    s = socket.create_connection(server.bound_address)
    s.sendall(b"POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 10\\r\\n\\r\\nab")
    time.sleep(0.1)
    if mode == "run":
        s.close()
time.sleep(0.1)
print("bye")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.strip() == b"bye"


def test_send_and_receive_are_coroutines_a_worker_thread_can_schedule() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        call = receive()
        seen["iscoroutine"] = asyncio.iscoroutine(call) and asyncio.iscoroutine(
            send({"type": "http.response.start", "status": 200})
        )
        call.close()

        def worker() -> None:
            # As rolo's gateway threads do.
            message = asyncio.run_coroutine_threadsafe(receive(), loop).result(5)
            seen["body"] = message["body"]
            seen["closed_before"] = send.__self__.closed
            asyncio.run_coroutine_threadsafe(
                send({"type": "http.response.start", "status": 201, "headers": []}),
                loop,
            ).result(5)
            asyncio.run_coroutine_threadsafe(
                send({"type": "http.response.body", "body": b"from a thread"}), loop
            ).result(5)

        await loop.run_in_executor(None, worker)

    async def main() -> httpx.Response:
        server = Server(config(app))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        url = "http://%s:%d/" % server.bound_address  # type: ignore[str-format]
        r = await asyncio.to_thread(httpx.post, url, content=b"abc")
        await server.shutdown()
        await task
        return r

    r = run_in_thread(main)
    assert (r.status_code, r.text) == (201, "from a thread")
    assert seen == {"iscoroutine": True, "body": b"abc", "closed_before": False}


def test_a_call_acts_only_when_awaited() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        # Made, never awaited: nothing is sent.
        send({"type": "http.response.start", "status": 500, "headers": []}).close()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> httpx.Response:
        server = Server(config(app))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        url = "http://%s:%d/" % server.bound_address  # type: ignore[str-format]
        r = await asyncio.to_thread(httpx.get, url)
        await server.shutdown()
        await task
        return r

    r = run_in_thread(main)
    assert (r.status_code, r.text) == (200, "ok")


def test_send_self_closed_turns_true_when_the_client_has_gone() -> None:
    states: list[bool] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        states.append(send.__self__.closed)
        while not send.__self__.closed:
            await asyncio.sleep(0.01)
        states.append(send.__self__.closed)
        done.set()

    async def main() -> None:
        server = Server(config(app))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()

        def client() -> None:
            s = socket.create_connection(server.bound_address)  # type: ignore[arg-type]
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(100)
            s.close()
            assert done.wait(5)

        await asyncio.to_thread(client)
        await server.shutdown()
        await task

    run_in_thread(main)
    assert states == [False, True]


def _events_for(body: bytes, **options: Any) -> list[tuple[bytes, bool]]:
    events: list[tuple[bytes, bool]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            m = await receive()
            events.append((m["body"], m["more_body"]))
            if not m["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        server = Server(config(app, **options))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        url = "http://%s:%d/" % server.bound_address  # type: ignore[str-format]
        await asyncio.to_thread(httpx.post, url, content=body)
        await server.shutdown()
        await task

    run_in_thread(main)
    return events


def test_request_body_end_event_ends_every_body_with_an_empty_event() -> None:
    assert _events_for(b"small", request_body_end_event=True) == [
        (b"small", True),
        (b"", False),
    ]
    assert _events_for(b"", request_body_end_event=True) == [(b"", False)]


def test_without_the_option_a_small_body_comes_in_one_event() -> None:
    assert _events_for(b"small") == [(b"small", False)]


def _header_names(**options: Any) -> list[bytes]:
    names: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        names.extend(n for n, _ in scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        server = Server(config(app, **options))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()

        def client() -> None:
            s = socket.create_connection(server.bound_address)  # type: ignore[arg-type]
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 1\r\n\r\n")
            s.recv(1000)
            s.close()

        await asyncio.to_thread(client)
        await server.shutdown()
        await task

    run_in_thread(main)
    return names


def test_raw_header_names_pass_names_as_the_client_sent_them() -> None:
    assert _header_names(raw_header_names=True) == [b"Host", b"X-Amz-Date"]
    assert _header_names() == [b"host", b"x-amz-date"]


def test_websocket_echo_on_the_callers_loop() -> None:
    import websockets.sync.client

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": m.get("text") or ""})

    async def main() -> list[str]:
        server = Server(config(echo))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        url = "ws://%s:%d/" % server.bound_address  # type: ignore[str-format]

        def client() -> list[str]:
            with websockets.sync.client.connect(url) as ws:
                out = []
                for i in range(20):
                    ws.send(f"m{i}")
                    out.append(str(ws.recv(timeout=5)))
                return out

        got = await asyncio.to_thread(client)
        await server.shutdown()
        await task
        return got

    assert run_in_thread(main) == [f"m{i}" for i in range(20)]


def test_a_call_held_by_the_app_is_never_handed_out_again() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        first = receive()
        second = receive()  # `first` is still held: a distinct object
        seen["distinct"] = first is not second
        second.close()
        message = await first
        seen["body"] = message["body"]
        try:
            await first
        except RuntimeError:
            seen["reawait_refused"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> httpx.Response:
        server = Server(config(app))
        task = asyncio.ensure_future(server.serve())
        await server.wait_started()
        url = "http://%s:%d/" % server.bound_address  # type: ignore[str-format]
        r = await asyncio.to_thread(httpx.post, url, content=b"abc")
        await server.shutdown()
        await task
        return r

    assert run_in_thread(main).text == "ok"
    assert seen == {"distinct": True, "body": b"abc", "reawait_refused": True}
