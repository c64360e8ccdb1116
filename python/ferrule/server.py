"""Run an ASGI app on ferrule's engine: ``Server(config).run()``."""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from . import logs
from . import metrics as metrics_mod
from . import wsgi as wsgi_mod
from ._trace import trace_app
from ._sockets import STARTUP_FAILURE, remove_uds, startup_failure
from ._ferrule import ASGICall, ClientDisconnected, Engine, RequestTask
from ._loop import FerruleEventLoop
from ._selector import FerruleSelector
from .config import Config
from .lifespan import Lifespan, LifespanFailure

if TYPE_CHECKING:
    from ._control import WorkerLink

logger = logging.getLogger("ferrule.error")

# receive() and send(...) return ASGICall objects: registered as coroutines,
# so asyncio.iscoroutine and run_coroutine_threadsafe (rolo's worker threads)
# take them.
collections.abc.Coroutine.register(ASGICall)

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


async def _run_http(call: Awaitable[None], send: Any) -> None:
    """The coroutine an asyncio Task runs for a request when requests do not
    run as the engine's own tasks: turns failures into a 500 (or a closed
    connection when part of the response was sent) and logs tracebacks."""
    # The Send object (an HTTP send's __self__ is itself; a WebSocket's
    # send has none).
    send = getattr(send, "__self__", send)
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


# Servers running on a thread other than the main one: stopped at exit
# (see _stop_at_exit).
_off_main: "weakref.WeakSet[Server]" = weakref.WeakSet()
_at_exit_registered = False


def _stop_at_exit() -> None:
    """Stops the servers still running in other (daemon) threads while the
    interpreter is whole: a daemon thread that takes the GIL once the
    interpreter finalizes is ended by ``pthread_exit``, whose unwinding
    through the engine's Rust frames aborts the process (exit 134)."""
    servers = list(_off_main)
    for server in servers:
        # The process is ending: cancel the requests rather than wait.
        server.force_exit = True
        server.should_exit = True
    deadline = time.monotonic() + 2
    for server in servers:
        server._stopped.wait(max(0.0, deadline - time.monotonic()))


def _track_off_main(server: "Server") -> None:
    global _at_exit_registered
    if threading.current_thread() is threading.main_thread():
        return
    if not _at_exit_registered:
        import atexit

        atexit.register(_stop_at_exit)
        _at_exit_registered = True
    _off_main.add(server)


class Server:
    """One ferrule worker: binds, runs lifespan, serves until told to stop.

    ``run()`` blocks on a loop of ferrule's own (whose selector runs the
    engine); ``await serve()`` serves on the running loop, whoever made it
    (the engine then runs on a thread of its own). Set ``should_exit = True``
    from anywhere to stop it gracefully; ``await shutdown()`` also waits
    until every connection, task and thread is gone.
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
        #: Every listener's ``(host, port)`` (``(path, 0)`` on a Unix socket),
        #: once bound; ``port=0`` shows the port the system chose.
        self.bound_addresses: list[tuple[str, int]] = []
        #: Set once every listener is bound and requests are served (for
        #: another thread: ``server.started_event.wait()``).
        self.started_event = threading.Event()
        # Set when serving has ended and everything is released.
        self._stopped = threading.Event()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._final_stats: dict[str, int] = {}

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

    async def serve(self, sockets: Iterable[socket.socket] | None = None) -> None:
        """Serve on the running event loop (asyncio's, uvloop, any loop
        ferrule did not create) until ``should_exit``; installs no signal
        handler. ``sockets``: listening sockets to serve instead of the
        configured addresses (they stay the caller's). A failed start-up
        logs one line and raises ``SystemExit`` with uvicorn's status (3)."""
        loop = asyncio.get_running_loop()
        status = await self._serve_here(loop, sockets)
        if status != 0:
            raise SystemExit(status)

    async def wait_started(self) -> None:
        """Returns once every listener is bound and requests are served
        (on any loop; raises ``SystemExit`` if the start-up failed)."""
        while not self.started_event.is_set():
            if self._done.done():
                raise SystemExit(STARTUP_FAILURE)
            await asyncio.sleep(0.005)

    async def shutdown(self, sockets: Iterable[socket.socket] | None = None) -> None:
        """Stops the server (from any loop or thread) and returns once every
        connection, request task and the engine's thread are gone.
        ``sockets`` (uvicorn's signature) stay the caller's to close."""
        self.should_exit = True
        if self._loop is None and not self.started_event.is_set():
            return  # never started
        await asyncio.wrap_future(self._done)

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

    async def _serve_here(
        self, loop: asyncio.AbstractEventLoop, sockets: Iterable[socket.socket] | None
    ) -> int:
        """serve(): the engine on a thread of its own, the bridge on ``loop``."""
        _track_off_main(self)
        engine: Engine | None = None
        try:
            config = self.config
            problem = config.startup_error()
            if problem is not None:
                logger.error("%s", problem)
                return 1
            if config.interface == "wsgi":
                # WSGI apps run on ferrule's thread pool, not on a loop.
                logger.error(
                    "--interface wsgi is served by Server.run(), "
                    "not by serve() on the caller's loop"
                )
                return 1
            app = config.load_app()
            if logger.isEnabledFor(logs.TRACE_LOG_LEVEL):
                app = trace_app(app, logger)
            options = config.engine_options()
            if sockets is not None:
                # Duplicates: the engine owns and closes its descriptors.
                options["bind"] = [f"fd://{os.dup(s.fileno())}" for s in sockets]
            try:
                engine = Engine(options)
            except OSError as exc:
                return startup_failure(config, exc)
            self._engine = engine
            self.bound_address = engine.bound_address
            self.bound_addresses = list(engine.bound_addresses)
            try:
                return await self._serve(app, engine, loop, embedded=True)
            finally:
                engine.shutdown()
                remove_uds(config)
        finally:
            self._release(engine)

    def _release(self, engine: Engine | None) -> None:
        """Serving ended: closes every socket and the engine's thread, and
        drops the engine (its runtime's descriptors go with it)."""
        if engine is not None:
            self._final_stats = self.stats()
            engine.close()
        self._engine = None
        self._stopped.set()
        _off_main.discard(self)
        if not self._done.done():
            self._done.set_result(None)

    def _run(self) -> int:
        _track_off_main(self)
        try:
            return self._run_own_loop()
        finally:
            self._release(self._engine)

    def _run_own_loop(self) -> int:
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
        self.bound_addresses = list(engine.bound_addresses)
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
            return dict(self._final_stats)
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
        self,
        app: Any,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        embedded: bool = False,
    ) -> int:
        config = self.config
        self._exit_event = asyncio.Event()
        self._loop = loop
        if self._should_exit:
            self._exit_event.set()
        if self.link is not None:
            self.link.attach(self, loop)
        # serve() on the caller's loop installs no signal handler.
        in_main = not embedded and threading.current_thread() is threading.main_thread()
        reader: int | None = None
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
                body_end_event=config.request_body_end_event,
                wsgi_environ=(
                    wsgi_mod.environ_base(config.root_path, config.workers > 1)
                    if wsgi
                    else None
                ),
            )
            if wsgi:
                self._wsgi = wsgi_mod.WsgiWorkers(engine, config.wsgi_thread_count)
            if embedded:
                # The engine runs on its own thread and wakes this loop
                # through one eventfd when requests (or wake-ups) wait.
                reader = engine.start_thread()
                loop.add_reader(reader, engine.on_ready)
            self.started = True
            for host, port in engine.bound_addresses:
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
            self.started_event.set()

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

            await self._shutdown(engine, loop, embedded)
            if metrics is not None:
                metrics.close()
            await lifespan.shutdown()
            return 0
        finally:
            if reader is not None:
                loop.remove_reader(reader)
                engine.stop_thread()
            if self.link is not None:
                self.link.detach(self.stats())
            if in_main:
                for sig in _HANDLED_SIGNALS:
                    loop.remove_signal_handler(sig)
            if reload_tls:
                loop.remove_signal_handler(signal.SIGHUP)

    async def _shutdown(
        self, engine: Engine, loop: asyncio.AbstractEventLoop, embedded: bool = False
    ) -> None:
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
            # shutdown's grace is theirs too. Not on a loop the caller owns:
            # its other tasks (other servers, the caller's) are not ours.
            if embedded:
                return []
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


async def serve(
    app: Any,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """hypercorn-style embedding: serve ``app`` with ``config`` on the running
    loop until ``shutdown_trigger()`` returns (or forever: cancel the task).
    Installs no signal handler."""
    config.app = app
    server = Server(config)
    trigger: asyncio.Task[Any] | None = None
    if shutdown_trigger is not None:

        async def stop_when_triggered() -> None:
            await shutdown_trigger()
            server.should_exit = True

        trigger = asyncio.ensure_future(stop_when_triggered())
    try:
        await server.serve()
    finally:
        if trigger is not None and not trigger.done():
            trigger.cancel()
