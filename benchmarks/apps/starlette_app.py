"""Starlette app: /plain (PlainTextResponse) and /json (JSONResponse)."""
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def plain(request):
    return PlainTextResponse("Hello, world!")


async def json(request):
    return JSONResponse({"message": "Hello, world!"})


app = Starlette(routes=[Route("/plain", plain), Route("/json", json)])
