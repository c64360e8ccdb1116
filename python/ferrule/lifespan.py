"""The ASGI lifespan protocol (spec 2.0), run on the current asyncio loop.

Usage (inside the worker's event loop)::

    lifespan = Lifespan(app, config.lifespan, logging.getLogger("ferrule.error"))
    await lifespan.startup()        # raises LifespanFailure: do not serve, exit 3
    ...                             # serve; each request gets dict(lifespan.state)
    await lifespan.shutdown()       # after the last response; never raises
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

__all__ = ["Lifespan", "LifespanFailure"]

_UNSUPPORTED = "ASGI 'lifespan' protocol appears unsupported."
_TASK_GRACE = 1.0  # seconds the app task may run on after shutdown.complete


class LifespanFailure(RuntimeError):
    """Startup failed: the app sent ``lifespan.startup.failed``, or (mode "on")
    raised before completing startup.  The server must not serve."""


class Lifespan:
    """Drive one app's lifespan coroutine.

    ``mode``: ``"on"`` (failures are fatal), ``"auto"`` (an app that raises, or
    returns, before completing startup is served without lifespan) or
    ``"off"`` (nothing is run).

    Attributes: ``state`` (the dict given as ``scope["state"]``; requests get a
    shallow copy of it), ``should_exit`` (True once startup or shutdown has
    failed), ``supported`` (None before startup, then whether the app
    completed startup), ``startup_failed``, ``shutdown_failed``,
    ``error_occurred``.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        mode: str = "auto",
        logger: logging.Logger | None = None,
        *,
        state: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan mode must be auto, on or off, not {mode!r}")
        self.app = app
        self.mode = mode
        self.logger = (
            logger if logger is not None else logging.getLogger("ferrule.error")
        )
        self.state: dict[str, Any] = {} if state is None else state
        self.should_exit = False
        self.supported: bool | None = None
        self.startup_failed = False
        self.shutdown_failed = False
        self.error_occurred = False
        self.failure_message = ""
        self._phase = "idle"  # idle -> startup -> started -> shutdown -> done
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._startup_done: asyncio.Event | None = None
        self._shutdown_done: asyncio.Event | None = None

    @property
    def scope(self) -> dict[str, Any]:
        return {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }

    # ------------------------------------------------------------ public

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer."""
        if self.mode == "off":
            return
        if self._phase != "idle":
            raise RuntimeError("Lifespan.startup() may only be called once")
        self._phase = "startup"
        self._queue = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()

        self.logger.info("Waiting for application startup.")
        self._queue.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._startup_done.wait()

        if self.startup_failed or (self.error_occurred and self.mode == "on"):
            self.should_exit = True
            self._phase = "done"
            self.logger.error("Application startup failed. Exiting.")
            await self._finish_task(grace=0)
            raise LifespanFailure(self.failure_message or "Application startup failed")
        if self.supported:
            self._phase = "started"
            self.logger.info("Application startup complete.")
        else:
            self._phase = "done"

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the answer; failures are logged."""
        if self.mode == "off" or self._phase != "started":
            return
        task = self._task
        assert task is not None and self._queue is not None
        assert self._shutdown_done is not None
        if task.done():  # the app's lifespan coroutine is already gone
            self._phase = "done"
            return
        self._phase = "shutdown"
        self.logger.info("Waiting for application shutdown.")
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        self._phase = "done"

        if self.shutdown_failed or self.error_occurred:
            self.shutdown_failed = True
            self.should_exit = True
            self.logger.error("Application shutdown failed. Exiting.")
        else:
            self.logger.info("Application shutdown complete.")

        await self._finish_task()

    # ----------------------------------------------------------- internals

    async def _finish_task(self, grace: float | None = None) -> None:
        """Let the app's lifespan coroutine end; cancel it after a short grace."""
        task = self._task
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=_TASK_GRACE if grace is None else grace)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _main(self) -> None:
        assert self._startup_done is not None and self._shutdown_done is not None
        try:
            await self.app(self.scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error_occurred = True
            if self.startup_failed or self.shutdown_failed:
                # The app already reported the failure (Starlette re-raises).
                return
            if not self._startup_done.is_set():
                self.supported = False
                if self.mode == "auto":
                    self.logger.debug(_UNSUPPORTED)
                    return
                self.failure_message = f"{type(exc).__name__}: {exc}"
            self.logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        else:
            if not self._startup_done.is_set():
                self.supported = False
                if self.mode == "auto":
                    self.logger.debug(_UNSUPPORTED)
                else:
                    self.logger.warning(
                        "ASGI 'lifespan' app returned without completing startup; "
                        "serving without lifespan."
                    )
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        assert self._queue is not None
        return await self._queue.get()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._startup_done is not None and self._shutdown_done is not None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if self._phase != "startup" or self._startup_done.is_set():
                raise RuntimeError(f"Unexpected ASGI message {kind!r} in lifespan")
            if kind == "lifespan.startup.complete":
                self.supported = True
            else:
                self.supported = True
                self.startup_failed = True
                self.failure_message = str(message.get("message") or "")
                if self.failure_message:
                    self.logger.error(self.failure_message)
            self._startup_done.set()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if self._phase != "shutdown" or self._shutdown_done.is_set():
                raise RuntimeError(f"Unexpected ASGI message {kind!r} in lifespan")
            if kind == "lifespan.shutdown.failed":
                self.shutdown_failed = True
                text = str(message.get("message") or "")
                if text:
                    self.logger.error(text)
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} in lifespan")
