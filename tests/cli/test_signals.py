"""How a stop by signal ends the process, as uvicorn 0.54's does: one
server process stops gracefully, then raises the signal again with the
handlers it found, so SIGINT exits 0 (KeyboardInterrupt, caught by the CLI)
and SIGTERM ends the process by SIGTERM (status -15, shell 143); a parent
(--workers, --reload) exits 0 for both."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

APP = "examples.hello:app"


def serve_then_stop(run_cli: Any, sig: int, *args: str) -> tuple[int, str]:
    server = run_cli(APP, "--no-access-log", *args)
    assert httpx.get(server.url + "/").status_code == 200
    status = server.stop(sig)
    return status, server.output


def test_sigterm_stops_gracefully_then_ends_by_sigterm(run_cli: Any) -> None:
    status, output = serve_then_stop(run_cli, signal.SIGTERM)
    assert status == -signal.SIGTERM
    # Graceful first: lifespan shutdown ran before the signal ended it.
    assert "Application shutdown complete." in output
    assert "Traceback" not in output


def test_sigint_stops_gracefully_and_exits_0(run_cli: Any) -> None:
    status, output = serve_then_stop(run_cli, signal.SIGINT)
    assert status == 0
    assert "Application shutdown complete." in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_workers_parent_exits_0_for_either_signal(run_cli: Any, sig: int) -> None:
    status, output = serve_then_stop(run_cli, sig, "--workers", "2")
    assert status == 0, output
    assert "Stopping parent process" in output


EMBEDDED = textwrap.dedent(
    """
    import signal, sys, threading
    sys.path.insert(0, ".")
    from ferrule import Config, Server

    seen = []
    signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    server = Server(Config("examples.hello:app", port=0, log_level="warning"))
    threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGTERM)).start()
    status = server.run()
    # The program's own handler is back and got the signal once, after the stop.
    print("status", status, "seen", seen, flush=True)
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    """
)


def test_embedded_server_hands_the_signal_to_the_handler_it_found(
    cli_env: dict[str, str],
) -> None:
    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, "-c", EMBEDDED],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert f"status 0 seen [{int(signal.SIGTERM)}]" in r.stdout, r.stdout + r.stderr
