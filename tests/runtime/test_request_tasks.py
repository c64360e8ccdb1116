"""Requests run as ferrule's own tasks (not asyncio Tasks): what an app can
rely on from ``asyncio.current_task()``, cancellation, timeouts, anyio and
contextvars, and the fall back to asyncio Tasks."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from typing import Any

import anyio
import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

Scope = dict[str, Any]


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def http_only(handler: Any) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await handler(scope, receive, send)

    return app


def with_task_factory(factory: Any, handler: Any) -> Any:
    """An app whose lifespan startup installs ``factory`` on the loop (before
    the engine starts serving) and that answers requests with ``handler``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await handler(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                asyncio.get_running_loop().set_task_factory(factory)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


def test_current_task_is_set_while_the_app_runs(serve: Any) -> None:
    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        before = asyncio.current_task()
        await asyncio.sleep(0)  # a bare yield: resumed through call_soon
        await asyncio.sleep(0.001)  # a timer future
        after = asyncio.current_task()
        info = {
            "same": before is after and before is not None,
            "name": before.get_name() if before else None,
            "done": before.done() if before else None,
        }
        await respond(send, json.dumps(info).encode())

    s = serve(http_only(handler))
    r = httpx.get(s.url)
    assert r.json() == {"same": True, "name": "ferrule-http", "done": False}


def test_contextvars_do_not_leak_between_requests(serve: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        seen = var.get()
        var.set(scope["path"])
        await asyncio.sleep(0.001)
        await respond(send, f"{seen} {var.get()}".encode())

    s = serve(http_only(handler))
    with httpx.Client(base_url=s.url) as c:
        assert c.get("/a").text == "unset /a"
        assert c.get("/b").text == "unset /b"


def test_asyncio_timeout_cancels_the_request_task_and_it_recovers(serve: Any) -> None:
    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
            body = b"no timeout"
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None
            body = b"timed out, cancelling=%d" % task.cancelling()
        await respond(send, body)

    s = serve(http_only(handler))
    start = time.monotonic()
    r = httpx.get(s.url)
    assert r.text == "timed out, cancelling=0"
    assert time.monotonic() - start < 2


def test_anyio_cancel_scope_and_task_group_work_in_a_request(serve: Any) -> None:
    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        results: list[str] = []
        with anyio.move_on_after(0.05) as scope_:
            await anyio.sleep(5)
        results.append(f"moved_on={scope_.cancelled_caught}")

        async def child(n: int) -> None:
            await anyio.sleep(0.001 * n)
            results.append(f"child{n}")

        async with anyio.create_task_group() as tg:
            for n in (2, 1):
                tg.start_soon(child, n)
        await respond(send, ",".join(results).encode())

    s = serve(http_only(handler))
    assert httpx.get(s.url).text == "moved_on=True,child1,child2"


def test_anyio_task_group_failure_cancels_the_host_request(serve: Any) -> None:
    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        async def fail() -> None:
            await anyio.sleep(0.01)
            raise ValueError("child failed")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fail)
                await anyio.sleep(5)  # cancelled when the child fails
        except Exception as exc:  # an ExceptionGroup
            await respond(send, type(exc).__name__.encode())

    s = serve(http_only(handler))
    start = time.monotonic()
    assert httpx.get(s.url).text == "ExceptionGroup"
    assert time.monotonic() - start < 2


def test_a_request_that_cancels_itself_gets_500(serve: Any) -> None:
    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)
        await respond(send, b"not reached")

    s = serve(http_only(handler))
    with httpx.Client(base_url=s.url) as c:
        assert c.get("/").status_code == 500
        # The connection stays usable: nothing of the response was sent.
        assert c.get("/").status_code == 500


def test_an_app_returning_a_non_coroutine_awaitable_is_served(serve: Any) -> None:
    class Awaitable:
        def __init__(self, send: Any) -> None:
            self.send = send

        def __await__(self) -> Any:
            return respond(self.send, b"from __await__").__await__()

    def app(scope: Scope, receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return asyncio.sleep(0)
        return Awaitable(send)

    s = serve(app, lifespan="off")
    assert httpx.get(s.url).text == "from __await__"


def test_requests_run_as_asyncio_tasks_when_the_loop_has_a_task_factory(
    serve: Any,
) -> None:
    made: list[str] = []

    def factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(kwargs.get("name", "?"))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        await respond(send, f"{type(task).__name__} {task.get_name()}".encode())

    s = serve(with_task_factory(factory, handler), lifespan="on")
    assert httpx.get(s.url).text == "Task ferrule-http"
    assert made


async def task_class_name(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the class name of the task the request runs in."""
    task = asyncio.current_task()
    await respond(send, type(task).__name__.encode())


def test_ferrule_asyncio_tasks_env_selects_asyncio_tasks(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRULE_ASYNCIO_TASKS", "1")

    s = serve(http_only(task_class_name))
    assert httpx.get(s.url).text == "Task"


def test_request_tasks_are_the_engine_s_own_by_default(serve: Any) -> None:
    s = serve(http_only(task_class_name))
    assert httpx.get(s.url).text == "RequestTask"


def test_an_old_style_task_factory_without_context_argument_works(serve: Any) -> None:
    def factory(loop: Any, coro: Any) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop)

    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, type(asyncio.current_task()).__name__.encode())

    s = serve(with_task_factory(factory, handler), lifespan="on")
    assert httpx.get(s.url).text == "Task"


def test_a_task_cancelled_during_its_last_step_ends_cancelled(serve: Any) -> None:
    outcomes: list[bool] = []

    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.add_done_callback(lambda t: outcomes.append(t.cancelled()))
        await respond(send, b"done")
        task.cancel()  # and return without awaiting anything

    s = serve(http_only(handler))
    assert httpx.get(s.url).text == "done"
    deadline = time.monotonic() + 2
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcomes == [True]
