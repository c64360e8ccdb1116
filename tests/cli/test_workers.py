"""--workers: the supervisor's control channel, health checks, SIGHUP rolling
reloads, SIGTTIN/SIGTTOU, --reuse-port and worker_stats(), with real
processes, real signals and real HTTP clients."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.engine

# Answers "<version> <pid>"; /block blocks the worker's event loop, /slow
# takes 5 s without blocking it.
APP = """
import asyncio, os, time

VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        time.sleep(30)
    if scope["path"] == "/slow":
        await asyncio.sleep(5)
    body = (VERSION + " " + str(os.getpid())).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "wapp.py").write_text(APP.format(version=version))


def start(run_cli, tmp_path: Path, *extra: str):
    write_app(tmp_path, "v1")
    return run_cli(
        "--workers",
        "2",
        "--app-dir",
        str(tmp_path),
        "--no-access-log",
        *extra,
        "wapp:app",
    )


def get_fresh(url: str, path: str = "/") -> tuple[str, int]:
    """One request on a new connection: (version, pid)."""
    response = httpx.get(url + path, headers={"Connection": "close"}, timeout=5)
    assert response.status_code == 200
    version, pid = response.text.split()
    return version, int(pid)


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def wait_for(predicate, timeout: float = 8.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def worker_pids(proc) -> set[int]:
    """The supervisor's children, once both workers are up."""
    wait_for(lambda: len(children(proc.proc.pid)) == 2, what="two workers")
    return children(proc.proc.pid)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening_sockets(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                count += 1
    return count


class Load:
    """Clients sending requests continuously until stopped: one on a
    keep-alive connection pool, one opening a new connection each time.

    No retries (httpx does not retry a request whose connection closed):
    a stopping worker keeps its idle connections open for the engine's
    drain window, so the next request of a busy keep-alive connection, or
    the first of a connection it accepted, is still served (with
    ``Connection: close``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._keep_alive, daemon=True),
            threading.Thread(target=self._new_connections, daemon=True),
        ]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, kind: str, send) -> None:
        while not self._stop.is_set():
            try:
                response = send()
            except httpx.HTTPError as exc:
                self.failures.append(f"{kind}: {exc!r}")
                continue
            if response.status_code != 200:
                self.failures.append(f"{kind}: status {response.status_code}")
                continue
            self.ok += 1
            self.pids.add(int(response.text.split()[1]))

    def _keep_alive(self) -> None:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        with httpx.Client(limits=limits, timeout=5) as client:
            self._run("keep-alive", lambda: client.get(self.url + "/"))

    def _new_connections(self) -> None:
        headers = {"Connection": "close"}
        self._run(
            "new connection",
            lambda: httpx.get(self.url + "/", headers=headers, timeout=5),
        )


def count(proc, text: str) -> int:
    return proc.output.count(text)


@pytest.mark.parametrize("mode", ["--no-reuse-port", "--reuse-port"])
def test_sighup_twice_replaces_every_worker_without_a_failed_request(
    run_cli, tmp_path, mode
):
    proc = start(run_cli, tmp_path, mode)
    before = worker_pids(proc)
    # Shared socket: one listener; --reuse-port: one per worker.
    assert listening_sockets(proc.port) == (2 if mode == "--reuse-port" else 1)
    with Load(proc.url) as load:
        wait_for(lambda: load.ok > 20, what="requests before the reload")
        for round in (1, 2):
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: count(proc, "ready; stopping worker") == 2 * round,
                what=f"reload {round}",
            )
        served = load.ok
        wait_for(lambda: load.ok > served + 20, what="requests after the reload")
    after = worker_pids(proc)
    assert not load.failures, load.failures[:5]
    assert before.isdisjoint(after)
    assert proc.proc.poll() is None  # SIGHUP no longer kills the supervisor
    assert {get_fresh(proc.url)[1] for _ in range(10)} <= after
    # Each slot kept its socket across the reloads.
    assert listening_sockets(proc.port) == (2 if mode == "--reuse-port" else 1)


def test_sighup_serves_the_app_changed_on_disk(run_cli, tmp_path):
    proc = start(run_cli, tmp_path)
    assert get_fresh(proc.url)[0] == "v1"
    write_app(tmp_path, "version2")  # another size: no stale .pyc
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(proc, "ready; stopping worker") == 2, what="reload")
    assert {get_fresh(proc.url)[0] for _ in range(10)} == {"version2"}
    write_app(tmp_path, "third")
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(proc, "ready; stopping worker") == 4, what="reload")
    assert {get_fresh(proc.url)[0] for _ in range(10)} == {"third"}


def test_a_reload_whose_new_code_fails_keeps_the_old_workers(run_cli, tmp_path):
    proc = start(run_cli, tmp_path)
    before = worker_pids(proc)
    (tmp_path / "wapp.py").write_text("this is not python\n")
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "stopping the reload" in proc.output, what="the failed reload")
    assert children(proc.proc.pid) == before
    assert get_fresh(proc.url)[0] == "v1"


def test_blocked_worker_is_killed_by_the_health_check_and_replaced(run_cli, tmp_path):
    proc = start(run_cli, tmp_path, "--timeout-worker-healthcheck", "1")
    before = worker_pids(proc)
    outcome: list[object] = []

    def block() -> None:
        try:
            outcome.append(get_fresh(proc.url, "/block"))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    blocked = threading.Thread(target=block, daemon=True)
    blocked.start()
    time.sleep(0.3)
    served: set[int] = set()
    killed = re.compile(r"Worker \[(\d+)\] did not answer a health check within 1s")
    deadline = time.monotonic() + 8
    while not killed.search(proc.output):
        assert time.monotonic() < deadline, proc.output
        served.add(get_fresh(proc.url)[1])  # the other worker keeps serving
    (victim,) = {int(pid) for pid in killed.findall(proc.output)}
    assert victim in before and victim not in served
    wait_for(lambda: not alive(victim), what="the blocked worker to die")
    # Reaped and replaced: until the supervisor reaps it, the dead worker is
    # still listed among its children (a zombie).
    wait_for(
        lambda: victim not in children(proc.proc.pid)
        and len(children(proc.proc.pid)) == 2,
        what="the blocked worker to be replaced",
    )
    after = worker_pids(proc)
    assert victim not in after and len(after) == 2
    blocked.join(10)
    # The blocked request died with its worker.
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError)


def test_workers_stop_when_the_supervisor_is_killed(run_cli, tmp_path):
    proc = start(run_cli, tmp_path)
    workers = worker_pids(proc)
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(5)
    wait_for(
        lambda: not any(alive(pid) for pid in workers),
        timeout=8,
        what="the orphaned workers to stop",
    )
    assert proc.output.count("Parent process gone: stopping worker process") == 2


def test_sigterm_waits_for_requests_and_a_second_one_stops_the_workers_at_once(
    run_cli, tmp_path
):
    proc = start(run_cli, tmp_path)
    outcome: list[object] = []

    def slow() -> None:
        try:
            outcome.append(httpx.get(proc.url + "/slow", timeout=10).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    client = threading.Thread(target=slow, daemon=True)
    client.start()
    time.sleep(0.5)
    proc.proc.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.proc.wait(1)  # graceful: the slow request is still running
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    proc.proc.wait(3)
    assert time.monotonic() - started < 2.5
    client.join(5)
    # Cut short (a 500 from the cancelled request), not answered after 5 s.
    assert outcome == [500]


def test_sigttin_adds_and_sigttou_removes_a_worker(run_cli, tmp_path):
    proc = start(run_cli, tmp_path)
    before = worker_pids(proc)
    proc.proc.send_signal(signal.SIGTTIN)
    wait_for(lambda: len(children(proc.proc.pid)) == 3, what="a third worker")
    (added,) = children(proc.proc.pid) - before
    proc.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: children(proc.proc.pid) == before, what="back to two workers")
    assert not alive(added)
    proc.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: len(children(proc.proc.pid)) == 1, what="one worker")
    # (Signals of one kind sent together may arrive as one: one at a time.)
    proc.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: "one worker is the minimum" in proc.output, what="the minimum")
    assert len(children(proc.proc.pid)) == 1
    assert get_fresh(proc.url)[0] == "v1"


def test_reuse_port_with_a_unix_socket_is_noted_and_shares_one_socket(
    cli_env, tmp_path
):
    write_app(tmp_path, "v1")
    path = str(tmp_path / "s.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrule", "--workers", "2", "--uds", path]
        + ["--reuse-port", "--app-dir", str(tmp_path), "wapp:app"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: os.path.exists(path), what="the socket file")
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            deadline = time.monotonic() + 8
            while True:
                try:
                    assert client.get("http://x/").text.startswith("v1")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    notices = [line for line in output.splitlines() if "--reuse-port" in line]
    assert len(notices) == 1 and "share one socket" in notices[0]


def test_reuse_port_with_one_worker_is_noted(run_cli, tmp_path):
    write_app(tmp_path, "v1")
    proc = run_cli("--reuse-port", "--app-dir", str(tmp_path), "wapp:app")
    assert get_fresh(proc.url)[0] == "v1"
    assert "--reuse-port has no effect without --workers 2 or more" in proc.output


WORKER_STATS = """
import json, os, signal, sys, threading, time, urllib.request
from ferrule import Config
from ferrule.supervisor import Supervisor

port = int(sys.argv[1])
config = Config("wapp:app", app_dir=sys.argv[2], port=port, workers=2,
                log_level="warning", access_log=False)
supervisor = Supervisor(config)

def probe():
    deadline = time.monotonic() + 10
    while len(supervisor.worker_stats(1.0)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(10):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/").read()
    stats = supervisor.worker_stats(2.0)
    print(json.dumps({str(pid): counters for pid, counters in stats.items()}))
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
sys.exit(supervisor.run())
"""


def test_worker_stats_from_another_thread_gives_each_workers_counters(
    cli_env, tmp_path
):
    write_app(tmp_path, "v1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "stats.py"
    script.write_text(WORKER_STATS)
    done = subprocess.run(
        [sys.executable, str(script), str(port), str(tmp_path)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(stats) == 2
    assert all(isinstance(c["requests"], int) for c in stats.values())
    # Every request of the probe, counted by the worker that served it.
    assert sum(c["requests"] for c in stats.values()) == 10


def test_a_worker_forked_after_sighup_forgets_the_modules_under_the_app_dir(
    tmp_path, monkeypatch
):
    from ferrule import Config
    from ferrule.supervisor import _forget_app

    write_app(tmp_path, "v1")
    (tmp_path / "helper.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("helper")

    config = Config("wapp:app", app_dir=str(tmp_path))
    config.load_app()
    assert sys.modules["wapp"].VERSION == "v1"
    try:
        _forget_app(config)
        assert "wapp" not in sys.modules and "helper" not in sys.modules
        assert "httpx" in sys.modules and "ferrule.config" in sys.modules
        assert not config.loaded
        write_app(tmp_path, "version2")
        assert config.load_app() is not None
        assert sys.modules["wapp"].VERSION == "version2"
    finally:
        for name in ("wapp", "helper"):
            sys.modules.pop(name, None)


def test_a_worker_that_cannot_be_forked_is_retried_not_fatal(caplog):
    """fork() failing (EAGAIN under a process limit) when a worker must be
    replaced: one line, and the slot is retried; the supervisor goes on."""
    from ferrule import Config
    from ferrule.supervisor import Supervisor

    supervisor = Supervisor(Config("examples.hello:app", workers=2))
    attempts: list[int] = []

    def spawn(slot: int):
        attempts.append(slot)
        if len(attempts) == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return object()

    supervisor._spawn = spawn  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="ferrule.error"):
        assert supervisor._respawn(1) is None
        supervisor._refill()
    assert attempts == [1, 1]
    assert not supervisor._unfilled
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "Cannot start a worker now ([Errno 11] Resource temporarily unavailable); retrying."
    ]
