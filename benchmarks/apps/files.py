"""Starlette FileResponse of three files (1 KiB, 100 KiB, 10 MiB): /f/1k,
/f/100k, /f/10m. The files are made once in benchmarks/work/files (nginx
serves the same directory at the same paths)."""
import os

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

FILES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "work", "files")
SIZES = {"1k": 1024, "100k": 100 * 1024, "10m": 10 * 1024 * 1024}


def make_files(sizes: dict[str, int] = SIZES) -> None:
    os.makedirs(FILES_DIR, exist_ok=True)
    for name, size in sizes.items():
        path = os.path.join(FILES_DIR, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, "wb") as f:
                f.write(bytes(i % 251 for i in range(size)))


make_files()


async def serve_file(request):
    return FileResponse(os.path.join(FILES_DIR, request.path_params["name"]))


app = Starlette(routes=[Route("/f/{name}", serve_file)])
