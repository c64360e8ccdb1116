"""--interface: ASGI 2 apps (a class or function taking the scope, whose
result is awaited with receive and send) are told apart from ASGI 3 as
uvicorn does, and served; --loop and --http are accepted with a notice."""

from __future__ import annotations

from typing import Any

import pytest
from _rawhttp import fetch

from ferrule import Config


class Asgi2App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        body = f"asgi2 {self.scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def asgi2_function(scope: dict[str, Any]) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 function"})

    return instance


async def asgi3(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi3"})


class Asgi3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await asgi3(scope, receive, send)


@pytest.mark.parametrize(
    "app, interface, adapted",
    [
        (Asgi2App, "auto", True),
        (asgi2_function, "auto", True),
        (asgi3, "auto", False),
        (Asgi3Object(), "auto", False),
        (Asgi2App, "asgi2", True),
        (asgi3, "asgi3", False),
    ],
)
def test_auto_tells_asgi2_from_asgi3_as_uvicorn(
    app: Any, interface: str, adapted: bool
) -> None:
    loaded = Config(app, interface=interface).load_app()
    assert (loaded is not app) == adapted


@pytest.mark.engine
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "app, body", [(Asgi2App, b"asgi2 /x"), (asgi2_function, b"asgi2 function")]
)
def test_asgi2_apps_are_served(serve: Any, app: Any, body: bytes) -> None:
    reply = fetch(serve(app, lifespan="off"), "/x")
    assert reply.status == 200 and reply.body == body


@pytest.mark.engine
@pytest.mark.timeout(60)
def test_loop_and_http_flags_are_accepted_with_a_notice(run_cli: Any) -> None:
    proc = run_cli("examples.hello:app", "--loop", "uvloop", "--http", "httptools")
    out = proc.output
    assert "--loop uvloop has no effect" in out
    assert (
        "--http httptools: ferrule's own engine serves HTTP/1.1 only (as --http h1)"
        in out
    )
