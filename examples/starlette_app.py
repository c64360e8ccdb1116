"""A Starlette app: routes, JSON, streaming, request-body echo, lifespan state.

pip install starlette
ferrule examples.starlette_app:app  # from the repository root
python examples/starlette_app.py    # PORT=9000 python examples/starlette_app.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

STREAM_CHUNKS = 5


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
    # The yielded dict becomes the lifespan state; every request sees a
    # shallow copy of it as request.state.
    yield {"greeting": "hello from lifespan", "started_at": time.time()}


async def homepage(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


async def json_endpoint(request: Request) -> Response:
    return JSONResponse(
        {
            "hello": "world",
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
        }
    )


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(STREAM_CHUNKS):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(request: Request) -> Response:
    body = await request.body()
    media_type = request.headers.get("content-type", "application/octet-stream")
    return Response(body, media_type=media_type)


async def state(request: Request) -> Response:
    return JSONResponse(
        {
            "greeting": request.state.greeting,
            "started_at": request.state.started_at,
        }
    )


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/json", json_endpoint),
        Route("/stream", stream),
        Route("/echo", echo, methods=["POST"]),
        Route("/state", state),
    ],
    lifespan=lifespan,
)


if __name__ == "__main__":
    import ferrule

    ferrule.run(app, port=int(os.environ.get("PORT", "8000")))
