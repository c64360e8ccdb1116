"""WSGI (PEP 3333) apps on ferrule: ``--interface wsgi``.

The engine queues each request for a pool of threads owned by ferrule
(:class:`WsgiWorkers`); a worker builds the environ, calls the app and writes
the response through the engine, without asyncio. This module holds the
Python parts: the environ's constant keys, ``wsgi.file_wrapper``, and the
threads' start and stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
import time
from typing import IO, Any, Iterator

from ._ferrule import Engine

__all__ = ["FileWrapper", "WsgiWorkers", "environ_base", "report"]

logger = logging.getLogger("ferrule.error")


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in blocks; when it wraps a
    regular file read from its start, the engine sends the file itself
    (``sendfile``) instead."""

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def _sendfile_path(self) -> str | None:
        """The path the engine may send, or None to iterate instead: the
        file must be a regular file at its start, and the path must still
        name that very file."""
        f = self.filelike
        name = getattr(f, "name", None)
        if not isinstance(name, str):
            return None
        try:
            fd = f.fileno()
            if f.tell() != 0:
                return None
            opened, named = os.fstat(fd), os.stat(name)
        except (AttributeError, OSError, ValueError):
            return None
        same = (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)
        return name if same and stat.S_ISREG(opened.st_mode) else None


def environ_base(root_path: str, multiprocess: bool) -> dict[str, Any]:
    """The environ keys every request shares (the engine copies this dict
    and adds the request's own)."""
    return {
        "SCRIPT_NAME": root_path,
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        # The engine ends wsgi.input at the end of the body (chunked too).
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }


def report(exc: BaseException | None) -> None:
    """Logs a WSGI app's failure (the client got a 500, or a closed
    connection when part of the response had left)."""
    if exc is None:
        logger.error("WSGI application returned without completing response.")
    else:
        logger.error("Exception in WSGI application\n", exc_info=exc)


class WsgiWorkers:
    """The threads that run the WSGI app: each is blocked in the engine
    (GIL released) until a request is queued."""

    def __init__(self, engine: Engine, count: int) -> None:
        self._engine = engine
        self.threads = [
            threading.Thread(target=self._work, name=f"ferrule-wsgi-{i}", daemon=True)
            for i in range(count)
        ]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        try:
            self._engine.wsgi_work()
        except BaseException:  # noqa: B902 - a worker must never die silently
            logger.exception("WSGI worker thread stopped")

    def busy(self) -> int:
        """Requests queued or running."""
        return self._engine.wsgi_busy()

    async def stop(self, timeout: float | None) -> None:
        """Lets the threads finish what they run and end; after ``timeout``
        seconds, reads and writes still blocked give up (the client counts
        as gone), requests still queued are answered without the app, and
        the threads get one second more. Polls from the loop:
        a blocked worker needs the loop running to be woken."""
        engine = self._engine
        engine.wsgi_stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._alive() and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        if self._alive():
            engine.wsgi_stop(abort=True)
            until = time.monotonic() + 1.0
            while self._alive() and time.monotonic() < until:
                await asyncio.sleep(0.01)
        for t in self.threads:
            t.join(0)
        stuck = sum(t.is_alive() for t in self.threads)
        if stuck:
            logger.error("%d WSGI worker thread(s) still running an app", stuck)

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)
