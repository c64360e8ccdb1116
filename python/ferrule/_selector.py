"""The selector behind ferrule's asyncio loop.

A stock :class:`asyncio.SelectorEventLoop` runs the apps; its selector is
this class, whose ``select()`` runs ferrule's tokio engine until a Python fd
is ready, a request has been parsed, or the timeout passes. The fds Python
registers (the loop's self-pipe, the app's own sockets) live in a
level-triggered epoll inside the engine.
"""

from __future__ import annotations

import selectors
from typing import Any, Callable

from ._ferrule import Engine


class FerruleSelector(selectors._BaseSelectorImpl):
    # Set up by _BaseSelectorImpl.__init__ (not in typeshed's stubs).
    _fd_to_key: dict[int, selectors.SelectorKey]
    _fileobj_lookup: Callable[[Any], int]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        try:
            self._engine.register(key.fd, events)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        try:
            self._engine.unregister(key.fd)
        except OSError:
            # The fd may already be closed; the kernel dropped it then.
            pass
        return key

    def modify(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events:
            self._engine.modify(key.fd, events)
            key = key._replace(events=events, data=data)
            self._fd_to_key[key.fd] = key
        elif data != key.data:
            key = key._replace(data=data)
            self._fd_to_key[key.fd] = key
        return key

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        ready = []
        fd_to_key = self._fd_to_key
        for fd, events in self._engine.select(timeout):
            key = fd_to_key.get(fd)
            if key is not None:
                ready.append((key, events & key.events))
        return ready
