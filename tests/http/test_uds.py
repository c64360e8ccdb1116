"""--uds: serving on a Unix domain socket, in-process and from the CLI."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ferrule import Config, Server

REPO = Path(__file__).resolve().parent.parent.parent


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "server": scope["server"], "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def test_uds_serves_keep_alive_requests_and_removes_the_socket_on_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "ferrule.sock")
    server = Server(Config(scope_app, uds=path, lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        for i in range(20):
            r = client.get(f"http://ferrule/p{i}")
            assert r.status_code == 200
            # As uvicorn: no (host, port) on a Unix socket.
            assert r.json() == {"client": None, "server": None, "path": f"/p{i}"}
    assert server.stats()["connections"] == 1
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_uds_from_the_cli_answers_curl(tmp_path: Path) -> None:
    path = str(tmp_path / "cli.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrule", "examples.hello:app", "--uds", path, "--no-access-log"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "running on" not in line:
            line = proc.stderr.readline()
            assert line, "server exited before it started"
        assert f"unix socket {path}" in line
        out = subprocess.run(
            ["curl", "-s", "--unix-socket", path, "http://x/"], capture_output=True, text=True, timeout=10
        )
        assert out.stdout == "Hello, world!"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    assert not os.path.exists(path)
