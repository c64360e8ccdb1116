"""Run an ASGI app on ferrule's engine: ``Server(config).run()``."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import logs
from . import metrics as metrics_mod
from . import wsgi as wsgi_mod
from ._trace import trace_app
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

# The engine's drain window at shutdown, in seconds.
_DRAIN = Engine.DRAIN


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


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancels the tasks still alive when serving ends (an app's or a
    library's background tasks) and runs them to their end, as
    :func:`asyncio.run` does, so none is destroyed while pending."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "Unhandled exception in a task at shutdown",
                    "exception": t.exception(),
                    "task": t,
                }
            )


def _debug_logger() -> Callable[[str], None] | None:
    """The engine's debug lines (connections opened and closed and why,
    refused requests) go to ``ferrule.error`` at DEBUG; None above it, so
    the engine never formats them."""
    if not logger.isEnabledFor(logging.DEBUG):
        return None

    def log(line: str) -> None:
        logger.debug("%s", line)

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
        #: Where ``--metrics-bind`` serves, once serving.
        self.metrics_address: tuple[str, int] | None = None
        self._engine: Engine | None = None
        self._wsgi: wsgi_mod.WsgiWorkers | None = None
        self._signals_seen = 0
        self._before_serving: set[asyncio.Task[Any]] = set()
        # The signals that stopped the server, raised again once it has
        # stopped (see _raise_captured_signals).
        self._captured_signals: list[int] = []
        # Set by the --workers supervisor: the worker's control channel.
        self.link: WorkerLink | None = None

    # ----------------------------------------------------------- public API

    def run(self) -> int:
        """Serve until stopped; returns the process exit status.

        As uvicorn's: after a graceful stop caused by SIGINT or SIGTERM (in
        the main thread), the signal handlers found at start are put back and
        the signal is raised again, so the process ends as that signal says:
        SIGINT raises KeyboardInterrupt (the CLI exits 0), SIGTERM's default
        action ends the process by that signal (status -15, shell 143).
        """
        in_main = threading.current_thread() is threading.main_thread()
        originals = (
            {sig: signal.getsignal(sig) for sig in _HANDLED_SIGNALS} if in_main else {}
        )
        try:
            status = self._run()
        finally:
            for sig, handler in originals.items():
                if handler is not None:  # None: set from C, cannot be restored
                    signal.signal(sig, handler)
        if status == 0 and in_main:
            self._raise_captured_signals()
        return status

    def _raise_captured_signals(self) -> None:
        if not self._captured_signals:
            return
        # What was logged must not be lost if the signal ends the process.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        # Several signals: the last one is raised first, as uvicorn does.
        for sig in reversed(self._captured_signals):
            signal.raise_signal(sig)

    def _run(self) -> int:
        config = self.config
        problem = config.startup_error()
        if problem is not None:
            logger.error("%s", problem)
            return 1
        app = config.load_app()
        if logger.isEnabledFor(logs.TRACE_LOG_LEVEL) and config.interface != "wsgi":
            app = trace_app(app, logger)
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
            # WSGI threads left by an exit that skipped _shutdown end too.
            engine.wsgi_stop(abort=True)
            remove_uds(config)
            try:
                _cancel_remaining_tasks(loop)
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
        stats = dict(self._engine.stats())
        stats["in_flight"] = self._engine.in_flight()
        return stats

    def handle_exit(self, sig: int | None = None, frame: Any = None) -> None:
        if sig is not None:
            self._captured_signals.append(sig)
        self._signals_seen += 1
        if self.should_exit and self._signals_seen > 1:
            self.force_exit = True
        self.should_exit = True

    def _reload_tls(self, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
        """SIGHUP: new handshakes get the certificate and key files as they
        are now; open connections keep theirs; a bad file keeps the old."""

        def done(future: asyncio.Future[str | None]) -> None:
            problem = future.result()
            if problem is None:
                logger.info("Reloaded the TLS certificate (SIGHUP)")
            else:
                logger.error(
                    "TLS certificate not reloaded, still serving the old one: %s",
                    problem,
                )

        # Reading files and decrypting a key: off the loop thread.
        loop.run_in_executor(None, engine.reload_tls).add_done_callback(done)

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
        # SIGHUP reloads the TLS certificate of a single-process server (a
        # worker's SIGHUP is its supervisor's business: it replaces workers).
        reload_tls = in_main and engine.tls and self.link is None
        if reload_tls:
            loop.add_signal_handler(signal.SIGHUP, self._reload_tls, loop, engine)
        try:
            wsgi = config.interface == "wsgi"
            # A WSGI app has no lifespan (uvicorn turns it off too).
            lifespan = Lifespan(app, "off" if wsgi else config.lifespan, logger)
            try:
                await lifespan.startup()
            except LifespanFailure:
                return 3
            if lifespan.should_exit:
                return 3

            metrics = None
            if config.metrics_bind is not None and not config.metrics_by_supervisor:
                host, port = metrics_mod.parse_bind(config.metrics_bind)
                try:
                    metrics = await metrics_mod.serve_on_loop(
                        host, port, lambda: {str(os.getpid()): self.stats()}
                    )
                except OSError as exc:
                    logger.error(
                        "Could not serve metrics on %s: %s",
                        config.metrics_bind,
                        exc.strerror or exc,
                    )
                    await lifespan.shutdown()
                    return 3
                shown = metrics.sockets[0].getsockname()
                self.metrics_address = (shown[0], shown[1])
                logger.info("Metrics on http://%s:%d/metrics", shown[0], shown[1])
            # Tasks alive now (lifespan's, the caller's) are not the
            # requests': at shutdown, the others were spawned by requests.
            self._before_serving = set(asyncio.all_tasks(loop))
            engine.start(
                loop,
                app,
                _run_http,
                wsgi_mod.report if wsgi else _report,
                state=lifespan.state,
                access_log=_access_logger(),
                task_name=REQUEST_TASK_NAME,
                native_tasks=not config.asyncio_tasks,
                debug_log=_debug_logger(),
                durations=config.metrics_bind is not None,
                reset_contextvars=config.reset_contextvars,
                wsgi_environ=(
                    wsgi_mod.environ_base(config.root_path, config.workers > 1)
                    if wsgi
                    else None
                ),
            )
            if wsgi:
                self._wsgi = wsgi_mod.WsgiWorkers(engine, config.wsgi_thread_count)
            self.started = True
            host, port = engine.bound_address
            if host.startswith("/") or port == 0 and config.uds:
                logger.info(
                    "Ferrule running on unix socket %s (Press CTRL+C to quit)", host
                )
            else:
                shown = f"[{host}]" if ":" in host else host
                logger.info(
                    "Ferrule running on %s://%s:%d (Press CTRL+C to quit)",
                    "https" if config.is_ssl else "http",
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
            if metrics is not None:
                metrics.close()
            await lifespan.shutdown()
            return 0
        finally:
            if self.link is not None:
                self.link.detach(self.stats())
            if in_main:
                for sig in _HANDLED_SIGNALS:
                    loop.remove_signal_handler(sig)
            if reload_tls:
                loop.remove_signal_handler(signal.SIGHUP)

    async def _shutdown(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        logger.info("Shutting down")
        open_connections = engine.stats()["active_connections"]
        engine.shutdown()
        timeout = self.config.timeout_graceful_shutdown
        deadline = None if timeout is None else time.monotonic() + timeout
        # Idle connections may still bring one request each for the
        # engine's drain window (0.1 s): wait it out, plus a margin for that
        # request to reach the app, before deciding nothing is in flight.
        drain_until = time.monotonic() + (_DRAIN + 0.05 if open_connections else 0)

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

        def spawned_tasks() -> list[asyncio.Task[Any]]:
            # Tasks the requests started (background work of the app): the
            # shutdown's grace is theirs too.
            current = asyncio.current_task(loop)
            return [
                t
                for t in asyncio.all_tasks(loop)
                if t is not current
                and t not in self._before_serving
                and t.get_name() != REQUEST_TASK_NAME
                and not t.done()
            ]

        wsgi = self._wsgi
        if engine.in_flight() or request_tasks() or engine.wsgi_busy():
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        expired = False
        while (
            engine.in_flight()
            or request_tasks()
            or engine.wsgi_busy()
            or time.monotonic() < drain_until
        ) and not self.force_exit:
            if deadline is not None and time.monotonic() >= deadline:
                logger.error(
                    "Cancel %d running request(s), timeout graceful shutdown exceeded",
                    len(request_tasks()) + engine.wsgi_busy(),
                )
                expired = True
                break
            await asyncio.sleep(0.02)
        # Without a deadline, spawned tasks still running once every request
        # ended are cancelled now; with one, they may use what is left of it.
        while (
            deadline is not None
            and not expired
            and not self.force_exit
            and spawned_tasks()
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        to_cancel: list[asyncio.Task[Any] | RequestTask] = request_tasks()
        spawned = spawned_tasks()
        to_cancel.extend(spawned)
        for t in to_cancel:
            t.cancel()
        # A cancelled app may catch the cancellation and clean up first;
        # spawned tasks are awaited (never left to be destroyed pending).
        for _ in range(100):
            if all(t.done() for t in to_cancel):
                break
            await asyncio.sleep(0.01)
        for t in spawned:
            if t.done() and not t.cancelled() and t.exception() is not None:
                loop.call_exception_handler(
                    {
                        "message": "Task spawned by a request failed at shutdown",
                        "exception": t.exception(),
                        "task": t,
                    }
                )
        if wsgi is not None:
            # WSGI threads cannot be cancelled: they get what is left of the
            # grace (none if it expired), then blocked reads and writes give
            # up.
            left = 0.0 if expired or self.force_exit else None
            if deadline is not None and left is None:
                left = max(0.0, deadline - time.monotonic())
            await wsgi.stop(left)
            self._wsgi = None
        # Let connection tasks flush what the cancelled apps left and close.
        for _ in range(5):
            await asyncio.sleep(0)
