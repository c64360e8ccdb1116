"""ferrule.lifespan.Lifespan against small apps, on a plain asyncio loop (no engine)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from ferrule.lifespan import Lifespan, LifespanFailure

Message = dict[str, Any]


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        return [
            r.getMessage() for r in self.records if level is None or r.levelno == level
        ]


@pytest.fixture
def logger() -> Any:
    log = logging.getLogger("ferrule.test.lifespan")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = Recorder()
    log.addHandler(handler)
    log.recorder = handler  # type: ignore[attr-defined]
    yield log
    log.removeHandler(handler)


def arun(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def make_app(events: list[str], *, on_startup: Any = None, on_shutdown: Any = None):
    """A well-behaved lifespan app that records what it saw."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        events.append("called")
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                reply: Message = {"type": "lifespan.startup.complete"}
                if on_startup is not None:
                    reply = on_startup(scope) or reply
                await send(reply)
            elif message["type"] == "lifespan.shutdown":
                reply = {"type": "lifespan.shutdown.complete"}
                if on_shutdown is not None:
                    reply = on_shutdown(scope) or reply
                await send(reply)
                events.append("returned")
                return

    return app


def test_scope_shape(logger):
    seen: list[dict[str, Any]] = []

    def capture(scope: dict[str, Any]) -> None:
        seen.append(scope)

    lifespan = Lifespan(make_app([], on_startup=capture), "on", logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    arun(main())
    assert seen[0] == {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": lifespan.state,
    }
    assert seen[0]["state"] is lifespan.state


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_and_shutdown_complete(logger, mode):
    events: list[str] = []
    lifespan = Lifespan(make_app(events), mode, logger)

    async def main() -> None:
        await lifespan.startup()
        assert events == ["called", "lifespan.startup"]
        assert lifespan.supported is True
        await lifespan.shutdown()

    arun(main())
    assert events == [
        "called",
        "lifespan.startup",
        "lifespan.shutdown",
        "returned",
    ]
    assert not lifespan.should_exit
    assert not lifespan.startup_failed and not lifespan.shutdown_failed
    info = logger.recorder.messages(logging.INFO)
    assert info == [
        "Waiting for application startup.",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
    ]


def test_state_is_shared_with_the_app(logger):
    def fill(scope: dict[str, Any]) -> None:
        scope["state"]["db"] = "connection"

    lifespan = Lifespan(make_app([], on_startup=fill), "on", logger)

    async def main() -> None:
        await lifespan.startup()
        assert lifespan.state == {"db": "connection"}
        await lifespan.shutdown()

    arun(main())


def test_initial_state_can_be_given(logger):
    state: dict[str, Any] = {"preset": 1}
    lifespan = Lifespan(make_app([]), "on", logger, state=state)
    assert lifespan.state is state
    assert lifespan.scope["state"] is state


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_failed_message(logger, mode):
    lifespan = Lifespan(
        make_app(
            [],
            on_startup=lambda s: {
                "type": "lifespan.startup.failed",
                "message": "no db",
            },
        ),
        mode,
        logger,
    )

    async def main() -> None:
        with pytest.raises(LifespanFailure, match="no db"):
            await lifespan.startup()
        await lifespan.shutdown()  # a no-op after a failed startup

    arun(main())
    assert lifespan.startup_failed and lifespan.should_exit
    errors = logger.recorder.messages(logging.ERROR)
    assert "no db" in errors
    assert "Application startup failed. Exiting." in errors


def test_startup_failed_then_raise_like_starlette(logger):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "bad config"})
        raise RuntimeError("bad config")

    lifespan = Lifespan(app, "auto", logger)

    async def main() -> None:
        with pytest.raises(LifespanFailure, match="bad config"):
            await lifespan.startup()

    arun(main())
    # The re-raised exception is not reported a second time as a traceback.
    assert not [r for r in logger.recorder.records if r.exc_info]


async def raises_before_receive(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("lifespan? never heard of it")


async def raises_at_receive(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "http.request":
        raise RuntimeError(f"unexpected {message['type']}")


async def http_only_assert(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"


@pytest.mark.parametrize(
    "app", [raises_before_receive, raises_at_receive, http_only_assert]
)
def test_auto_mode_serves_without_lifespan_when_app_raises(logger, app):
    lifespan = Lifespan(app, "auto", logger)

    async def main() -> None:
        await lifespan.startup()  # does not raise
        await lifespan.shutdown()  # nothing to do

    arun(main())
    assert lifespan.supported is False
    assert not lifespan.should_exit
    assert "ASGI 'lifespan' protocol appears unsupported." in logger.recorder.messages(
        logging.DEBUG
    )
    assert not logger.recorder.messages(logging.ERROR)
    assert "Waiting for application shutdown." not in logger.recorder.messages()


@pytest.mark.parametrize("app", [raises_before_receive, raises_at_receive])
def test_on_mode_raising_app_fails_startup(logger, app):
    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        with pytest.raises(LifespanFailure, match="RuntimeError"):
            await lifespan.startup()

    arun(main())
    assert lifespan.should_exit
    tracebacks = [r for r in logger.recorder.records if r.exc_info]
    assert tracebacks and tracebacks[0].levelno == logging.ERROR
    assert "Application startup failed. Exiting." in logger.recorder.messages(
        logging.ERROR
    )


def test_auto_mode_app_that_returns_immediately(logger):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return

    lifespan = Lifespan(app, "auto", logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    arun(main())
    assert lifespan.supported is False and not lifespan.should_exit
    assert "ASGI 'lifespan' protocol appears unsupported." in logger.recorder.messages(
        logging.DEBUG
    )


def test_off_mode_never_calls_the_app(logger):
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    lifespan = Lifespan(app, "off", logger)

    async def main() -> None:
        await lifespan.startup()
        await asyncio.sleep(0)
        await lifespan.shutdown()

    arun(main())
    assert called == []
    assert logger.recorder.records == []


def test_shutdown_failed_message(logger):
    lifespan = Lifespan(
        make_app(
            [],
            on_shutdown=lambda s: {
                "type": "lifespan.shutdown.failed",
                "message": "could not flush",
            },
        ),
        "on",
        logger,
    )

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()  # logs, does not raise

    arun(main())
    assert lifespan.shutdown_failed and lifespan.should_exit
    errors = logger.recorder.messages(logging.ERROR)
    assert "could not flush" in errors
    assert "Application shutdown failed. Exiting." in errors


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_exception_during_shutdown_is_a_failure(logger, mode):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("shutdown blew up")

    lifespan = Lifespan(app, mode, logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    arun(main())
    assert lifespan.shutdown_failed and lifespan.should_exit
    assert any(r.exc_info for r in logger.recorder.records)


def test_app_crash_while_serving_is_logged_and_shutdown_skipped(logger):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await asyncio.sleep(0)
        raise RuntimeError("background crash")

    lifespan = Lifespan(app, "auto", logger)

    async def main() -> None:
        await lifespan.startup()
        for _ in range(5):
            await asyncio.sleep(0)
        await lifespan.shutdown()

    arun(main())
    assert any(
        r.exc_info and r.levelno == logging.ERROR for r in logger.recorder.records
    )
    assert "Waiting for application shutdown." not in logger.recorder.messages()


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "lifespan.shutdown.complete"},
        {"type": "http.response.start", "status": 200},
        {"no": "type"},
    ],
)
def test_unexpected_messages_raise_in_the_app(logger, bad):
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send(bad)
        except RuntimeError as exc:
            raised.append(exc)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    arun(main())
    assert len(raised) == 1 and "Unexpected ASGI message" in str(raised[0])


def test_startup_twice_is_an_error(logger):
    lifespan = Lifespan(make_app([]), "on", logger)

    async def main() -> None:
        await lifespan.startup()
        with pytest.raises(RuntimeError):
            await lifespan.startup()
        await lifespan.shutdown()

    arun(main())


def test_app_lingering_after_shutdown_complete_is_cancelled(logger, monkeypatch):
    import ferrule.lifespan as module

    monkeypatch.setattr(module, "_TASK_GRACE", 0.05)
    cancelled = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()
        assert lifespan._task is not None and lifespan._task.done()

    arun(main())
    assert cancelled == [True]
    assert not lifespan.should_exit


def test_bad_mode_rejected():
    with pytest.raises(ValueError):
        Lifespan(make_app([]), "sometimes")


def test_default_logger_is_ferrule_error():
    assert Lifespan(make_app([]), "on").logger.name == "ferrule.error"


# ------------------------------------------------ with the example apps


async def call_http(app: Any, state: dict[str, Any], path: str) -> tuple[int, bytes]:
    """Call an ASGI app once the way the engine does, without a network."""
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }
    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, body


def test_hello_example_lifespan(logger):
    from examples.hello import app

    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        await lifespan.startup()
        assert lifespan.state == {"greeting": "hello"}
        assert await call_http(app, lifespan.state, "/") == (200, b"Hello, world!")
        await lifespan.shutdown()

    arun(main())
    assert not lifespan.should_exit


def test_starlette_example_state(logger):
    pytest.importorskip("starlette")
    import json

    from examples.starlette_app import app

    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        await lifespan.startup()
        assert lifespan.state["greeting"] == "hello from lifespan"
        status, body = await call_http(app, lifespan.state, "/state")
        assert status == 200
        assert json.loads(body)["greeting"] == "hello from lifespan"
        await lifespan.shutdown()

    arun(main())
    assert not lifespan.should_exit


def test_quart_example_lifespan(logger):
    pytest.importorskip("quart")
    from examples.quart_app import app

    lifespan = Lifespan(app, "on", logger)

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    arun(main())
    assert app.config["FERRULE_STARTED"] is True
    assert not lifespan.should_exit


def test_starlette_lifespan_error_in_startup(logger):
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def broken(app: Any) -> Any:
        raise RuntimeError("cannot reach database")
        yield

    lifespan = Lifespan(Starlette(lifespan=broken), "auto", logger)

    async def main() -> None:
        with pytest.raises(LifespanFailure):
            await lifespan.startup()

    arun(main())
    assert lifespan.startup_failed
