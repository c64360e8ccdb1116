"""Type stubs for ferrule's Rust extension module."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Awaitable, Callable, ClassVar, Coroutine, Mapping

EVENT_READ: int
EVENT_WRITE: int

class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI HTTP spec 2.4)."""

class ASGICall:
    """What ``receive()`` and ``send(message)`` return: acts when awaited
    (or first stepped), on the thread that runs it; registered as a
    ``collections.abc.Coroutine``."""

    def __await__(self) -> Any: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any: ...
    def close(self) -> None: ...

class Receive:
    """The ASGI ``receive`` callable of one request."""

    def __call__(self) -> ASGICall: ...

class Send:
    """The ASGI ``send`` callable of one request."""

    def __call__(self, message: Mapping[str, Any]) -> ASGICall: ...
    @property
    def __self__(self) -> Send:
        """The object itself, as on a bound method: ``send.__self__.closed``."""

    @property
    def closed(self) -> bool:
        """True once the client has gone."""

    def app_done(self, failed: bool) -> bool:
        """Called when the app coroutine ends; True if the response was
        incomplete (ferrule then answered 500 or closed the connection)."""

class RequestTask:
    """How ferrule runs a request's app coroutine without an asyncio Task.

    It is ``asyncio.current_task()`` while the app runs and offers the Task
    methods asyncio and anyio use on the current task."""

    def cancel(self, msg: Any | None = None) -> bool: ...
    def uncancel(self) -> int: ...
    def cancelling(self) -> int: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> None: ...
    def exception(self) -> BaseException | None: ...
    def add_done_callback(
        self, callback: Callable[[RequestTask], object], *, context: Any = None
    ) -> None: ...
    def remove_done_callback(
        self, callback: Callable[[RequestTask], object]
    ) -> int: ...
    def get_coro(self) -> Coroutine[Any, Any, None]: ...
    def get_context(self) -> contextvars.Context: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def get_name(self) -> str: ...
    def set_name(self, value: object) -> None: ...
    def get_stack(self, *, limit: int | None = None) -> list[Any]: ...

class TlsError(ValueError):
    """The TLS options cannot be served (one line naming flag and file)."""

class Engine:
    """A listening socket plus the tokio runtime that serves it; also the
    selector behind ferrule's asyncio loop."""

    #: The keys ``__init__`` reads (Config's option names); it refuses
    #: unknown and missing keys.
    OPTIONS: ClassVar[tuple[str, ...]]
    DRAIN: ClassVar[float]

    def __init__(self, options: Mapping[str, Any]) -> None:
        """Binds as ``options`` say: ``Config.engine_options()``."""

    @property
    def bound_address(self) -> tuple[str, int]:
        """``(host, port)`` bound (port 0 resolved), or ``(path, 0)``."""

    def register(self, fd: int, events: int) -> None: ...
    def modify(self, fd: int, events: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def select(self, timeout: float | None = None) -> list[tuple[int, int]]: ...
    def start(
        self,
        event_loop: Any,
        app: Callable[[dict[str, Any], Receive, Any], Awaitable[None]],
        runner: Callable[[Awaitable[None], Any], Coroutine[Any, Any, None]],
        report: Callable[[BaseException | None], None],
        *,
        state: dict[str, Any] | None = None,
        access_log: Callable[[str, str, str, str, int, int, float], None] | None = None,
        task_name: str = "ferrule-http",
        native_tasks: bool = True,
        debug_log: Callable[[str], None] | None = None,
        durations: bool = False,
        reset_contextvars: bool = False,
        body_end_event: bool = False,
        wsgi_environ: dict[str, Any] | None = None,
    ) -> None: ...
    def wsgi_work(self) -> None: ...
    def wsgi_busy(self) -> int: ...
    def wsgi_stop(self, abort: bool = False) -> None: ...
    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        """Every listener's ``(host, port)`` or ``(path, 0)``."""

    def start_thread(self) -> int:
        """Runs the engine on a thread of its own; returns the eventfd the
        loop watches (``loop.add_reader(fd, engine.on_ready)``)."""

    def on_ready(self) -> None:
        """Hands the queued events to the bridge (the reader callback)."""

    def stop_thread(self) -> None:
        """Ends the engine thread and waits for it; closes the eventfd."""

    def close(self) -> None:
        """Ends the thread and closes every connection and listener now."""

    def tasks(self) -> list[RequestTask]: ...
    def native_tasks(self) -> bool: ...
    def shutdown(self) -> None: ...
    def in_flight(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    @staticmethod
    def check_tls(options: Mapping[str, Any]) -> None:
        """Loads the TLS files as ``__init__`` would; raises TlsError."""

    def reload_tls(self) -> str | None:
        """Reads the TLS files again (new handshakes use them); the reason
        they cannot be used, or None."""

    @property
    def tls(self) -> bool: ...
