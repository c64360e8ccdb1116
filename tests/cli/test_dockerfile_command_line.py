"""A uvicorn command line as production Dockerfiles write it runs unchanged
with `ferrule` in place of `uvicorn`: every flag is honoured (or, for the
ones that cannot apply, noted) and the server serves through it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from _rawhttp import wait_for

pytestmark = pytest.mark.engine

APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{scope['client'][0]} {scope['scheme']} {os.environ['APP_GREETING']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

# The shape of uvicorn's own LOGGING_CONFIG, as projects copy it into a
# log_conf.yaml next to their Dockerfile.
LOG_CONF = """
version: 1
disable_existing_loggers: false
formatters:
  default:
    "()": uvicorn.logging.DefaultFormatter
    fmt: "%(levelprefix)s %(message)s"
    use_colors: false
  access:
    "()": uvicorn.logging.AccessFormatter
    fmt: 'ACCESS %(client_addr)s - "%(request_line)s" %(status_code)s'
    use_colors: false
handlers:
  default:
    formatter: default
    class: logging.StreamHandler
    stream: ext://sys.stderr
  access:
    formatter: access
    class: logging.StreamHandler
    stream: ext://sys.stdout
loggers:
  uvicorn:
    handlers: [default]
    level: INFO
    propagate: false
  uvicorn.error:
    level: INFO
  uvicorn.access:
    handlers: [access]
    level: INFO
    propagate: false
"""


def test_a_production_uvicorn_command_line_runs_unchanged(run_cli, tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "main.py").write_text(textwrap.dedent(APP))
    (tmp_path / "log_conf.yaml").write_text(LOG_CONF)
    (tmp_path / ".env").write_text("APP_GREETING=hello-from-env\n")
    # CMD ["uvicorn", "main:app", ...] of a real-world image, with the port
    # made ephemeral for the test.
    proc = run_cli(
        "main:app",
        "--app-dir", str(tmp_path),
        "--host", "127.0.0.1",
        "--port", "0",
        "--workers", "2",
        "--loop", "uvloop",
        "--http", "httptools",
        "--proxy-headers",
        "--forwarded-allow-ips=*",
        "--timeout-keep-alive", "75",
        "--log-config", str(tmp_path / "log_conf.yaml"),
        "--env-file", str(tmp_path / ".env"),
        "--no-server-header",
        "--limit-concurrency", "1000",
        "--backlog", "4096",
    )  # fmt: skip
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=proc.url) as client:
        response = client.get("/", headers=headers)
    assert response.status_code == 200
    assert response.text == "203.0.113.9 https hello-from-env"
    assert "server" not in response.headers
    wait_for(lambda: proc.output.count("Started server process") == 2)
    wait_for(lambda: "ACCESS 203.0.113.9:0 - \"GET / HTTP/1.1\" 200" in proc.output)
    out = proc.output
    assert "uvloop" in out and "httptools" in out, "the inapplicable flags are noted"
    assert "Traceback" not in out
