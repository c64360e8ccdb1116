"""Benchmark cases: an app module, the path and method wrk requests, and the
scenarios it runs in."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    module: str          # benchmarks/apps/<module>.py, attribute `app`
    path: str
    method: str = "GET"
    lua: str | None = None
    streaming: bool = False
    scenarios: tuple = ("ka64", "ka1")
    title: str = ""


CASES = [
    Case("hello", "hello", "/", scenarios=("ka64", "ka1", "close16"),
         title="raw ASGI, 13-byte text/plain"),
    Case("seed", "seed", "/", scenarios=("ka64", "ka1", "close16"),
         title="raw ASGI, 15 headers, body `pong`, start + separate body message"),
    Case("big10k", "big", "/", title="raw ASGI, 10,000-byte body"),
    Case("starlette-plain", "starlette_app", "/plain", title="Starlette PlainTextResponse"),
    Case("starlette-json", "starlette_app", "/json", title="Starlette JSONResponse"),
    Case("echo-post4k", "echo", "/", method="POST", lua="post4k.lua",
         title="raw ASGI, POST 4 KiB, echoed back"),
    Case("stream10x1k", "stream", "/", streaming=True,
         title="raw ASGI, 10 × 1 KiB chunks (chunked)"),
    Case("file1k", "files", "/f/1k", title="Starlette FileResponse, 1 KiB file"),
    Case("file100k", "files", "/f/100k", title="Starlette FileResponse, 100 KiB file"),
    Case("file10m", "files", "/f/10m", title="Starlette FileResponse, 10 MiB file"),
    Case("rawfile1k", "files_raw", "/f/1k", title="raw ASGI pathsend (else 64 KiB body messages), 1 KiB file"),
    Case("rawfile100k", "files_raw", "/f/100k", title="raw ASGI pathsend (else 64 KiB body messages), 100 KiB file"),
    Case("rawfile10m", "files_raw", "/f/10m", title="raw ASGI pathsend (else 64 KiB body messages), 10 MiB file"),
]
# The file cases run only when asked for (`--apps file1k,...`): the full run
# keeps its duration, and files have a run of their own.
FILE_CASES = ["file1k", "file100k", "file10m", "rawfile1k", "rawfile100k", "rawfile10m"]
CASE_BY_NAME = {c.name: c for c in CASES}
QUICK_CASES = ["hello", "seed", "starlette-plain", "stream10x1k"]
# `--tls`: the HTTPS run's apps (keep-alive at 64 connections, and new
# connections with a handshake each).
TLS_CASES = ["hello", "starlette-plain"]
# The new-connection scenario (close16) measures connection set-up, which the
# app barely changes: it runs on the two raw apps only, to keep a full run
# within an hour on 2 cores.
