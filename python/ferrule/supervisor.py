"""``--workers N``: one parent process, N worker processes.

The parent binds the listening socket once, then forks the workers; each
worker runs a :class:`~ferrule.server.Server` on an inherited copy of that
socket (the kernel spreads connections over the workers' accepts). The
parent never creates an event loop or an engine, so forking is safe. It
forwards SIGINT/SIGTERM to the workers, waits for them, and replaces a worker
that exits on its own (for instance after ``--limit-max-requests``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Callable

from ._sockets import announce, bind, remove_uds, startup_failure
from .config import Config

logger = logging.getLogger("ferrule.error")

# A worker that dies this soon after it started is failing to start, not
# being recycled: stop instead of forking it again and again.
_EARLY_EXIT = 1.0


class Supervisor:
    def __init__(
        self, config: Config, run_worker: Callable[[Config], int] | None = None
    ) -> None:
        self.config = config
        self.workers: dict[int, float] = {}  # pid -> start time
        self.should_exit = False
        self._run_worker = run_worker or _run_worker

    def _spawn(self, sock: socket.socket) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                self.config.fd = os.dup(sock.fileno())
                sock.close()
                status = self._run_worker(self.config)
            except (
                BaseException
            ):  # noqa: BLE001 - a worker must never return into the parent's code
                logger.exception("Worker process failed")
            finally:
                os._exit(status)
        self.workers[pid] = time.monotonic()

    def run(self) -> int:
        try:
            sock = bind(self.config)
        except OSError as exc:
            return startup_failure(self.config, exc)
        announce(sock)
        logger.info("Started parent process [%d]", os.getpid())

        def stop(signum: int, frame: object) -> None:
            self.should_exit = True

        previous = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        status = 0
        try:
            for _ in range(self.config.workers):
                self._spawn(sock)
            while not self.should_exit:
                try:
                    pid, wstatus = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    time.sleep(0.1)
                    continue
                started = self.workers.pop(pid, time.monotonic())
                code = os.waitstatus_to_exitcode(wstatus)
                if self.should_exit:
                    break
                if code != 0 and time.monotonic() - started < _EARLY_EXIT:
                    logger.error(
                        "Worker [%d] failed to start (exit %d); stopping.", pid, code
                    )
                    status = code if code > 0 else 1
                    break
                logger.info("Worker [%d] exited (%d); starting a new one.", pid, code)
                self._spawn(sock)
        finally:
            for pid in list(self.workers):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for pid in list(self.workers):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                self.workers.pop(pid, None)
            sock.close()
            remove_uds(self.config)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("Stopping parent process [%d]", os.getpid())
        return status


def serve(config: Config) -> int:
    """Run ``config`` to completion: one in-process server, or a supervisor
    with ``config.workers`` worker processes. Returns the exit status."""
    if config.workers > 1:
        return Supervisor(config).run()
    return _run_worker(config)


def _run_worker(config: Config) -> int:
    from .server import Server

    return Server(config).run()
