"""``--bind`` on the command line: repeatable, TCP and Unix socket together."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

pytestmark = pytest.mark.engine


def test_bind_repeated_serves_every_listener(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "b.sock"
    cli = run_cli(
        "examples.hello:app",
        "--port",
        "0",
        "--bind",
        "127.0.0.1:0",
        "--bind",
        f"unix:{path}",
    )
    assert httpx.get(cli.url + "/").status_code == 200
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as c:
        assert c.get("http://x/").status_code == 200
    assert f"Ferrule running on unix socket {path}" in cli.output
    cli.stop()
    assert not path.exists()  # the socket file is removed at exit


def test_bind_with_workers_is_refused_in_one_line(
    ferrule_cmd: list[str], cli_env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [*ferrule_cmd, "examples.hello:app", "--bind", "127.0.0.1:0", "--workers", "2"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--bind cannot be combined with --workers" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
