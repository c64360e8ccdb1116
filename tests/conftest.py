"""Shared fixtures: a real ferrule server in a thread, and the CLI in a subprocess.

* ``serve(app, **config_kwargs) -> Served``: starts ``ferrule.server.Server`` on
  127.0.0.1, port 0, in a background thread; stopped at teardown.
* ``run_cli(*args, env=None) -> CLIProcess``: runs ``python -m ferrule ARGS
  --port 0`` from the repository root, waits for the "Ferrule running on ..."
  line; at teardown sends SIGINT and asserts exit status 0.
* ``ferrule_cmd``: the argv prefix to run the CLI (``[python, -m, ferrule]``)
  and ``cli_env``: the environment that makes it importable.

Tests that need the compiled engine carry ``@pytest.mark.engine``; deselect
them with ``-m "not engine"`` while the extension is not built.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SRC = ROOT / "python"

STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
RUNNING_RE = re.compile(r"Ferrule running on (http://(\S+?):(\d+))")

# Examples are imported as "examples.<name>" from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Use the installed ferrule when there is one (maturin develop / pip install);
# otherwise the sources, so the pure-Python tests run without a build.
_EXTRA_PYTHONPATH: list[str] = [str(ROOT)]
if importlib.util.find_spec("ferrule") is None:
    sys.path.insert(0, str(PYTHON_SRC))
    _EXTRA_PYTHONPATH.insert(0, str(PYTHON_SRC))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engine: needs the compiled engine (ferrule._ferrule / ferrule.server)",
    )


# ---------------------------------------------------------------- in-thread


@dataclass
class Served:
    server: Any
    thread: threading.Thread
    host: str
    port: int
    errors: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.server.stats()
        return result

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"server did not stop within {timeout}s")


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    from ferrule import Config
    from ferrule.server import Server

    started: list[Served] = []

    def start(app: Any, **kwargs: Any) -> Served:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        config = Config(app, **kwargs)
        server = Server(config)
        errors: list[BaseException] = []

        def target() -> None:
            try:
                server.run()
            except BaseException as exc:  # surfaced in the test, not lost
                errors.append(exc)

        thread = threading.Thread(
            target=target, name="ferrule-test-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not getattr(server, "started", False):
            if errors:
                raise errors[0]
            if not thread.is_alive():
                raise AssertionError("server thread exited before it started")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise AssertionError(f"server did not start within {STARTUP_TIMEOUT}s")
            time.sleep(0.005)
        host, port = server.bound_address[:2]
        served = Served(server, thread, host, port, errors)
        started.append(served)
        return served

    yield start

    failures = []
    for served in reversed(started):
        try:
            served.stop()
        except AssertionError as exc:
            failures.append(str(exc))
        failures.extend(repr(exc) for exc in served.errors)
    if failures:
        pytest.fail("; ".join(failures))


# ---------------------------------------------------------------- subprocess


def _cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = _EXTRA_PYTHONPATH + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FORWARDED_ALLOW_IPS", None)
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def cli_env() -> dict[str, str]:
    return _cli_env()


@pytest.fixture
def ferrule_cmd() -> list[str]:
    return [sys.executable, "-m", "ferrule"]


class CLIProcess:
    """A running ``python -m ferrule``; output is collected in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._bound = threading.Event()
        self.url = ""
        self.host = ""
        self.port = 0
        self._readers = [
            threading.Thread(
                target=self._pump,
                args=(self.proc.stdout, self.stdout_lines),
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(self.proc.stderr, self.stderr_lines),
                daemon=True,
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if not self._bound.is_set():
                match = RUNNING_RE.search(line)
                if match:
                    self.url, self.host = match.group(1), match.group(2).strip("[]")
                    self.port = int(match.group(3))
                    self._bound.set()

    @property
    def output(self) -> str:
        return "".join(self.stderr_lines) + "".join(self.stdout_lines)

    def wait_started(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._bound.wait(0.05):
            if self.proc.poll() is not None:
                for reader in self._readers:
                    reader.join(2)
                raise AssertionError(
                    f"ferrule exited with {self.proc.returncode} before it started:\n"
                    + self.output
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no 'Ferrule running on' line within {timeout}s:\n" + self.output
                )

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"ferrule did not stop within {timeout}s of signal {sig}:\n"
                    + self.output
                ) from None
        for reader in self._readers:
            reader.join(2)
        return self.proc.returncode


@pytest.fixture
def run_cli() -> Iterator[Callable[..., CLIProcess]]:
    running: list[CLIProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> CLIProcess:
        argv = [sys.executable, "-m", "ferrule", *args]
        binds = ("--port", "--uds", "--fd")
        if not any(a == b or a.startswith(b + "=") for a in args for b in binds):
            argv += ["--port", "0"]
        process = CLIProcess(argv, _cli_env(env))
        running.append(process)
        process.wait_started()
        return process

    yield start

    problems = []
    for process in running:
        already_exited = process.proc.poll() is not None
        status = process.stop()
        if not already_exited and status != 0:
            problems.append(
                f"{' '.join(process.args)} exited with {status} after SIGINT:\n"
                + process.output
            )
    if problems:
        pytest.fail("\n".join(problems))
