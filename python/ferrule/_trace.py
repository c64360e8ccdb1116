"""``--log-level trace``: every request's scope and ASGI messages, logged.

Only installed at trace level (it wraps the app, so it costs a Python call
per message): below it the app is called directly.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Awaitable, Callable

from .logs import TRACE_LOG_LEVEL

ASGIApp = Callable[..., Awaitable[None]]
Message = dict[str, Any]

# Keys whose values are shown by size, not content: a body may be large or
# binary, and never belongs in a log verbatim.
_BY_SIZE = ("body", "bytes", "text")


def _shown(message: Message) -> dict[str, Any]:
    shown = dict(message)
    for key in _BY_SIZE:
        value = shown.get(key)
        if isinstance(value, (bytes, bytearray, str)):
            shown[key] = (
                f"<{len(value)} {'chars' if isinstance(value, str) else 'bytes'}>"
            )
    return shown


def _client(scope: Message) -> str:
    client = scope.get("client")
    if client:
        return f"{client[0]}:{client[1]}"
    return "unix"


def trace_app(app: ASGIApp, logger: logging.Logger) -> ASGIApp:
    """``app`` with its scope, messages, end and failure logged at TRACE."""
    numbers = itertools.count(1)

    async def traced(scope: Message, receive: Any, send: Any) -> None:
        n = next(numbers)
        who = _client(scope)
        shown_scope = {
            k: v for k, v in scope.items() if k not in ("state", "extensions")
        }
        logger.log(
            TRACE_LOG_LEVEL, "%s - ASGI [%d] Started scope=%s", who, n, shown_scope
        )

        async def traced_receive() -> Message:
            message: Message = await receive()
            logger.log(
                TRACE_LOG_LEVEL, "%s - ASGI [%d] Receive %s", who, n, _shown(message)
            )
            return message

        async def traced_send(message: Message) -> None:
            logger.log(
                TRACE_LOG_LEVEL, "%s - ASGI [%d] Send %s", who, n, _shown(message)
            )
            await send(message)

        try:
            await app(scope, traced_receive, traced_send)
        except BaseException as exc:
            logger.log(
                TRACE_LOG_LEVEL, "%s - ASGI [%d] Raised exception %r", who, n, exc
            )
            raise
        logger.log(TRACE_LOG_LEVEL, "%s - ASGI [%d] Completed", who, n)

    return traced
