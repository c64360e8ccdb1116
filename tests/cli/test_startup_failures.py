"""A server that cannot set up its listening socket prints one line naming
what failed, no traceback, and exits with uvicorn's start-up failure status
(3), whether it serves alone, with workers or with --reload."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

APP = "examples.hello:app"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, APP, *args], env=env, capture_output=True, text=True, timeout=30
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("extra", [[], ["--workers", "2"], ["--reload"]])
def test_a_port_in_use_is_one_line_and_exit_3(
    ferrule_cmd: list[str], cli_env: dict[str, str], busy_port: int, extra: list[str]
) -> None:
    r = run(ferrule_cmd, cli_env, "--port", str(busy_port), *extra)
    assert r.returncode == 3
    line = one_line(r.stderr)
    assert f"('127.0.0.1', {busy_port})" in line
    assert "[Errno 98]" in line and "address already in use" in line


def test_a_unix_socket_in_a_missing_directory_is_one_line_and_exit_3(
    ferrule_cmd: list[str], cli_env: dict[str, str], tmp_path: Any
) -> None:
    path = tmp_path / "missing" / "s.sock"
    r = run(ferrule_cmd, cli_env, "--uds", str(path))
    assert r.returncode == 3
    assert f"unix socket '{path}'" in one_line(r.stderr)


def test_a_bad_fd_is_one_line_and_exit_3(ferrule_cmd: list[str], cli_env: dict[str, str]) -> None:
    r = run(ferrule_cmd, cli_env, "--fd", "987")
    assert r.returncode == 3
    assert "cannot serve file descriptor 987" in one_line(r.stderr)


def test_an_embedded_server_returns_3_and_logs_one_line(busy_port: int, error_log: Any) -> None:
    from ferrule import Config
    from ferrule.server import Server

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    server = Server(Config(app, port=busy_port, lifespan="off"))
    assert server.run() == 3
    assert "address already in use" in error_log.text
