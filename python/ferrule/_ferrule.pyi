"""Type stubs for ferrule's Rust extension module."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Awaitable, Callable, ClassVar, Coroutine, Mapping

EVENT_READ: int
EVENT_WRITE: int

class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI HTTP spec 2.4)."""

class Receive:
    """The ASGI ``receive`` callable of one request."""

    def __call__(self) -> Awaitable[dict[str, Any]]: ...

class Send:
    """The ASGI ``send`` callable of one request."""

    def __call__(self, message: Mapping[str, Any]) -> Awaitable[None]: ...
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
        app: Callable[[dict[str, Any], Receive, Send], Awaitable[None]],
        runner: Callable[[Awaitable[None], Send], Coroutine[Any, Any, None]],
        report: Callable[[BaseException | None], None],
        *,
        state: dict[str, Any] | None = None,
        access_log: Callable[[str, str, str, str, int, int, float], None] | None = None,
        task_name: str = "ferrule-http",
        native_tasks: bool = True,
        debug_log: Callable[[str], None] | None = None,
        durations: bool = False,
        reset_contextvars: bool = False,
        wsgi_environ: dict[str, Any] | None = None,
    ) -> None: ...
    def wsgi_work(self) -> None: ...
    def wsgi_busy(self) -> int: ...
    def wsgi_stop(self, abort: bool = False) -> None: ...
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
