"""``--reload``: restart the server when the code changes (for development).

The parent binds the listening socket once and never imports the app. It
runs the server in a fresh child process (``python -m ferrule ... --fd N``)
so each restart imports the code anew, polls the modification times of the
``*.py`` files under the watched directories, and on a change stops the child
(SIGTERM, graceful) and starts another on the same socket: clients see no
refused connection across a reload.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

from .config import Config
from .options import OPTIONS
from ._sockets import announce, bind, remove_uds, startup_failure

logger = logging.getLogger("ferrule.error")

POLL_INTERVAL = 0.25

# Flags that only the parent acts on; the child gets `--fd` instead.
_PARENT_ONLY = {
    "--reload": 0,
    "--reload-dir": 1,
    "--workers": 1,
    "--host": 1,
    "--port": 1,
    "--uds": 1,
    "--fd": 1,
}


def child_argv(argv: list[str], fd: int) -> list[str]:
    """The command line for the child: the user's, minus the flags the
    parent handles, plus the inherited socket."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in _PARENT_ONLY:
            skip = 0 if "=" in arg else _PARENT_ONLY[name]
            continue
        out.append(arg)
    return [sys.executable, "-m", "ferrule", *out, "--fd", str(fd)]


# The environment variables of those options: a child reading FERRULE_RELOAD
# would reload again, FERRULE_UDS would clash with its --fd.
_PARENT_ONLY_ENV = frozenset(o.env for o in OPTIONS if o.flag in _PARENT_ONLY)


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the child: the parent's, minus the variables of
    the options the parent handles (as :func:`child_argv` drops their flags)."""
    return {k: v for k, v in environ.items() if k not in _PARENT_ONLY_ENV}


def _snapshot(dirs: Iterable[Path]) -> dict[Path, float]:
    mtimes: dict[Path, float] = {}
    for d in dirs:
        for path in d.rglob("*.py"):
            try:
                mtimes[path] = path.stat().st_mtime
            except OSError:
                pass
    return mtimes


class Reloader:
    def __init__(self, config: Config, argv: list[str], dirs: list[str]) -> None:
        self.config = config
        self.argv = argv
        self.dirs = [Path(d).resolve() for d in (dirs or ["."])]
        self.should_exit = False

    def run(self) -> int:
        try:
            sock = bind(self.config)
        except OSError as exc:
            return startup_failure(self.config, exc)
        os.set_inheritable(sock.fileno(), True)
        announce(sock)
        logger.info(
            "Started reloader process [%d], watching %s",
            os.getpid(),
            ", ".join(str(d) for d in self.dirs),
        )

        def stop(signum: int, frame: object) -> None:
            self.should_exit = True

        previous = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        cmd = child_argv(self.argv, sock.fileno())
        env = child_env(os.environ)
        child: subprocess.Popen[bytes] | None = None
        try:
            seen = _snapshot(self.dirs)
            child = subprocess.Popen(cmd, pass_fds=(sock.fileno(),), env=env)
            while not self.should_exit:
                time.sleep(POLL_INTERVAL)
                now = _snapshot(self.dirs)
                changed = [p for p, m in now.items() if seen.get(p) != m]
                changed += [p for p in seen if p not in now]
                if changed:
                    logger.warning(
                        "Detected changes in %s. Reloading...",
                        ", ".join(sorted({str(p) for p in changed})[:5]),
                    )
                    _stop_child(child)
                    seen = now
                    child = subprocess.Popen(cmd, pass_fds=(sock.fileno(),), env=env)
        finally:
            if child is not None:
                _stop_child(child)
            sock.close()
            remove_uds(self.config)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("Stopping reloader process [%d]", os.getpid())
        return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
