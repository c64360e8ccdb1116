"""The file cases' files from a raw ASGI app: `http.response.pathsend` where
the server lists it, else the file in 64 KiB body messages (as Starlette
does). Without Starlette's per-request stat in a thread and ETag, the
server's own cost of a file shows."""
import os

from _lifespan import lifespan
from files import FILES_DIR, make_files

make_files()
CHUNK = 64 * 1024


async def app(scope, receive, send):
    if scope["type"] != "http":
        return await lifespan(receive, send)
    path = os.path.join(FILES_DIR, scope["path"].rsplit("/", 1)[-1])
    size = os.path.getsize(path)
    headers = [(b"content-type", b"application/octet-stream"),
               (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": path})
        return
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            more = len(chunk) == CHUNK
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if not more:
                break
