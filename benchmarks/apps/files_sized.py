"""Starlette FileResponse of files from 1 KiB to 256 KiB (/f/1k ... /f/256k),
for `checks/file_threshold.py`."""
import os

from files import FILES_DIR, make_files
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

SIZES = {"1k": 1 << 10, "4k": 4 << 10, "8k": 8 << 10, "16k": 16 << 10, "64k": 64 << 10, "256k": 256 << 10}
make_files(SIZES)


async def serve_file(request):
    return FileResponse(os.path.join(FILES_DIR, request.path_params["name"]))


app = Starlette(routes=[Route("/f/{name}", serve_file)])


async def raw(scope, receive, send):
    """The same files by a raw ASGI app sending pathsend itself: without
    Starlette's per-request stat in a thread, the server's own cost shows."""
    if scope["type"] != "http":
        from _lifespan import lifespan

        return await lifespan(receive, send)
    path = os.path.join(FILES_DIR, scope["path"].rsplit("/", 1)[-1])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.pathsend", "path": path})
