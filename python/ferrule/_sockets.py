"""Listening sockets owned by a parent process (``--workers``, ``--reload``):
binding, the "running on" line, and clean-up of a Unix socket file."""

from __future__ import annotations

import logging
import os
import socket
import stat

from .config import Config

logger = logging.getLogger("ferrule.error")

#: The exit status of a server that could not start (uvicorn's).
STARTUP_FAILURE = 3


def startup_failure(config: Config, exc: OSError) -> int:
    """Logs why the listening socket could not be set up, in one line naming
    the address, and returns :data:`STARTUP_FAILURE`."""
    what = exc.strerror or str(exc)
    code = f"[Errno {exc.errno}] " if exc.errno is not None else ""
    if config.bind:
        where = f"error while attempting to bind on {', '.join(config.bind)}"
    elif config.fd is not None:
        where = f"cannot serve file descriptor {config.fd}"
    elif config.uds is not None:
        where = f"error while attempting to bind on unix socket {config.uds!r}"
    else:
        where = f"error while attempting to bind on address ({config.host!r}, {config.port})"
    logger.error("%s%s: %s", code, where, what.lower() if what[:1].isupper() else what)
    return STARTUP_FAILURE


def bind(config: Config) -> socket.socket:
    """The listening socket for ``config`` (inherited fd, Unix path or TCP)."""
    if config.fd is not None:
        return socket.socket(fileno=os.dup(config.fd))
    if config.uds is not None:
        if os.path.exists(config.uds) and stat.S_ISSOCK(os.stat(config.uds).st_mode):
            os.unlink(config.uds)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(config.uds)
        os.chmod(config.uds, 0o666)
        sock.listen(config.backlog)
        return sock
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(config.backlog)
    return sock


def announce(sock: socket.socket, scheme: str = "http") -> None:
    """Logs where the server listens, in uvicorn's words."""
    if sock.family == socket.AF_UNIX:
        logger.info(
            "Ferrule running on unix socket %s (Press CTRL+C to quit)",
            sock.getsockname(),
        )
    else:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        logger.info(
            "Ferrule running on %s://%s:%d (Press CTRL+C to quit)",
            scheme,
            shown,
            port,
        )


def remove_uds(config: Config) -> None:
    """Removes the Unix socket file this process bound (not an inherited one)."""
    paths = [b[len("unix:") :] for b in config.bind if b.startswith("unix:")]
    if config.uds is not None and config.fd is None and not config.bind:
        paths.append(config.uds)
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
