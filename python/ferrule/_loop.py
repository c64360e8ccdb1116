"""ferrule's event loop: asyncio's SelectorEventLoop on ferrule's selector,
with a leaner ``call_soon``.

Every request starts an ``asyncio.Task``, whose first step is scheduled with
``loop.call_soon``. In CPython 3.11 that path is pure Python and makes three
more Python calls (``_check_closed``, ``_call_soon`` and the debug check in
``Handle.__init__``): about 5,000 instructions per request, measured with
callgrind. Outside debug mode none of them does anything, so this loop skips
them; in debug mode it defers to asyncio.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Callable

from ._selector import FerruleSelector


class _Handle(asyncio.Handle):
    __slots__ = ()

    def __init__(
        self,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class FerruleEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, selector: FerruleSelector) -> None:
        super().__init__(selector)

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self._debug or self._closed:  # type: ignore[attr-defined]
            return super().call_soon(callback, *args, context=context)
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle
