"""Run an ASGI app on ferrule's engine: ``Server(config).run()``."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import logs
from ._sockets import remove_uds, startup_failure
from ._ferrule import ClientDisconnected, Engine, RequestTask, Send
from ._loop import FerruleEventLoop
from ._selector import FerruleSelector
from .config import Config
from .lifespan import Lifespan, LifespanFailure

if TYPE_CHECKING:
    from ._control import WorkerLink

logger = logging.getLogger("ferrule.error")

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The name the engine gives every request's asyncio task: lets shutdown wait
# for, and then cancel, exactly the request tasks.
REQUEST_TASK_NAME = "ferrule-http"


def _report(exc: BaseException | None) -> None:
    """Logs an app failure; None: the app returned without a response."""
    if exc is None:
        logger.error("ASGI callable returned without completing response.")
    else:
        logger.error("Exception in ASGI application\n", exc_info=exc)


async def _run_http(call: Awaitable[None], send: Send) -> None:
    """The coroutine an asyncio Task runs for a request when requests do not
    run as the engine's own tasks: turns failures into a 500 (or a closed
    connection when part of the response was sent) and logs tracebacks."""
    try:
        await call
    except ClientDisconnected:
        # The client went away: not the app's fault, no traceback.
        send.app_done(False)
    except asyncio.CancelledError:
        # The server is stopping and cancelled the request: answer (500,
        # or close if part of the response went out), stay cancelled.
        send.app_done(True)
        raise
    except BaseException as exc:
        send.app_done(True)
        _report(exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        if send.app_done(False):
            _report(None)


def _access_logger() -> Callable[..., None] | None:
    if not logs.access_logger.isEnabledFor(logging.INFO):
        return None

    def log(
        client: str,
        method: str,
        target: str,
        version: str,
        status: int,
        nbytes: int,
        ms: float,
    ) -> None:
        if not target.isprintable():
            # Never let a request smuggle terminal escapes into the log.
            target = target.encode("unicode_escape").decode("ascii")
        logs.log_access(client, method, target, version, status, nbytes, ms)

    return log


class Server:
    """One ferrule worker: binds, runs lifespan, serves until told to stop.

    ``run()`` blocks (use it in a thread to embed ferrule); set
    ``should_exit = True`` from anywhere to stop it gracefully.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = False
        self._should_exit = False
        self.force_exit = False
        # Set from any thread; wakes the serving loop without polling.
        self._exit_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bound_address: tuple[str, int] | None = None
        self._engine: Engine | None = None
        self._signals_seen = 0
        # Set by the --workers supervisor: the worker's control channel.
        self.link: WorkerLink | None = None

    # ----------------------------------------------------------- public API

    def run(self) -> int:
        """Serve until stopped; returns the process exit status."""
        config = self.config
        app = config.load_app()
        try:
            engine = Engine(config.engine_options())
        except OSError as exc:
            return startup_failure(config, exc)
        self._engine = engine
        self.bound_address = engine.bound_address
        loop = FerruleEventLoop(FerruleSelector(engine))
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(self._serve(app, engine, loop))
        finally:
            # Every exit path (including a failed lifespan startup) stops
            # listening, so the port is free once run() returns.
            engine.shutdown()
            remove_uds(config)
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop, event = self._loop, self._exit_event
        if value and loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # the loop is already closed

    def stats(self) -> dict[str, int]:
        """Engine counters: connections, requests, responses, write_syscalls..."""
        if self._engine is None:
            return {}
        return dict(self._engine.stats())

    def handle_exit(self, sig: int | None = None, frame: Any = None) -> None:
        self._signals_seen += 1
        if self.should_exit and self._signals_seen > 1:
            self.force_exit = True
        self.should_exit = True

    # ------------------------------------------------------------ internals

    async def _serve(
        self, app: Any, engine: Engine, loop: asyncio.AbstractEventLoop
    ) -> int:
        config = self.config
        self._exit_event = asyncio.Event()
        self._loop = loop
        if self._should_exit:
            self._exit_event.set()
        if self.link is not None:
            self.link.attach(self, loop)
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in _HANDLED_SIGNALS:
                loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            lifespan = Lifespan(app, config.lifespan, logger)
            try:
                await lifespan.startup()
            except LifespanFailure:
                return 3
            if lifespan.should_exit:
                return 3

            engine.start(
                loop,
                app,
                _run_http,
                _report,
                state=lifespan.state,
                access_log=_access_logger(),
                task_name=REQUEST_TASK_NAME,
                native_tasks=not config.asyncio_tasks,
            )
            self.started = True
            host, port = engine.bound_address
            if host.startswith("/") or port == 0 and config.uds:
                logger.info(
                    "Ferrule running on unix socket %s (Press CTRL+C to quit)", host
                )
            else:
                shown = f"[{host}]" if ":" in host else host
                logger.info(
                    "Ferrule running on http://%s:%d (Press CTRL+C to quit)",
                    shown,
                    port,
                )
            logger.info("Started server process [%d]", os.getpid())
            if self.link is not None:
                self.link.ready()

            max_requests = config.limit_max_requests
            if max_requests is not None and config.limit_max_requests_jitter:
                max_requests += random.randint(0, config.limit_max_requests_jitter)
            # No periodic wake-ups while serving, unless a request limit
            # must be watched.
            poll = None if max_requests is None else 0.1
            while not self.should_exit:
                try:
                    await asyncio.wait_for(self._exit_event.wait(), poll)
                except asyncio.TimeoutError:
                    pass
                if (
                    max_requests is not None
                    and engine.stats()["requests"] >= max_requests
                ):
                    logger.warning(
                        "Maximum request limit of %d exceeded. Terminating process.",
                        max_requests,
                    )
                    self.should_exit = True

            await self._shutdown(engine, loop)
            await lifespan.shutdown()
            return 0
        finally:
            if self.link is not None:
                self.link.detach()
            if in_main:
                for sig in _HANDLED_SIGNALS:
                    loop.remove_signal_handler(sig)

    async def _shutdown(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        logger.info("Shutting down")
        engine.shutdown()
        timeout = self.config.timeout_graceful_shutdown
        deadline = None if timeout is None else time.monotonic() + timeout

        def request_tasks() -> list[asyncio.Task[Any] | RequestTask]:
            # Every request's task (the engine's own, or an asyncio Task
            # carrying this name); an app may still run after its response
            # (background work).
            tasks: list[asyncio.Task[Any] | RequestTask] = list(engine.tasks())
            tasks.extend(
                t
                for t in asyncio.all_tasks(loop)
                if t.get_name() == REQUEST_TASK_NAME and not t.done()
            )
            return tasks

        if engine.in_flight() or request_tasks():
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        while (engine.in_flight() or request_tasks()) and not self.force_exit:
            if deadline is not None and time.monotonic() >= deadline:
                logger.error(
                    "Cancel %d running request(s), timeout graceful shutdown exceeded",
                    len(request_tasks()),
                )
                break
            await asyncio.sleep(0.02)
        to_cancel = request_tasks()
        for t in to_cancel:
            t.cancel()
        # A cancelled app may catch the cancellation and clean up first.
        for _ in range(100):
            if all(t.done() for t in to_cancel):
                break
            await asyncio.sleep(0.01)
        # Let connection tasks flush what the cancelled apps left and close.
        for _ in range(5):
            await asyncio.sleep(0)
