"""Options uvicorn has and ferrule does not act on yet: --http2 is accepted
with one notice line (the --ws* flags are served, without one); asking for TLS fails at start-up (never plain
HTTP instead), exit status 1; --h11-max-incomplete-event-size sets the head
limit."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from ferrule import Config, ConfigError

pytestmark = pytest.mark.timeout(60)

APP = "examples.hello:app"


def test_http2_notice_and_none_for_ws_flags() -> None:
    assert Config("m:a").notices() == []
    assert Config("m:a", ws="none").notices() == []
    lines = Config("m:a", ws="wsproto", ws_max_size=1024, http2=True).notices()
    assert lines == ["HTTP/2 is not served yet; --http2 ignored (serving HTTP/1.1)"]


@pytest.mark.engine
def test_cli_ws_flags_serve_without_a_notice(run_cli: Any) -> None:
    server = run_cli(
        APP, "--ws", "websockets", "--ws-ping-interval", "5",
        "--ws-per-message-deflate", "false", "--http2",
    )
    assert httpx.get(server.url + "/").status_code == 200
    notices = [line for line in server.stderr_lines if "not served yet" in line]
    assert len(notices) == 1, server.output
    assert "WebSockets" not in server.output


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"], "--ssl-certfile"),
        (["--ssl-keyfile", "key.pem"], "--ssl-keyfile"),
    ],
)
@pytest.mark.parametrize("extra", [[], ["--workers", "2"], ["--reload"]])
def test_tls_asked_for_is_one_line_exit_1(
    ferrule_cmd: list[str], cli_env: dict[str, str], flags: list[str], named: str,
    extra: list[str],
) -> None:
    r = subprocess.run(
        [*ferrule_cmd, *flags, *extra, "--port", "0", APP],
        env=cli_env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr == (
        f"ferrule: error: TLS ({named}) is not supported by this ferrule version\n"
    )


@pytest.mark.engine
def test_embedded_server_with_tls_does_not_serve() -> None:
    from ferrule.server import Server

    assert Server(Config(APP, port=0, ssl_certfile="cert.pem")).run() == 1


@pytest.mark.engine
def test_other_ssl_flags_alone_are_no_ops(run_cli: Any) -> None:
    server = run_cli(APP, "--ssl-ciphers", "ECDHE+AESGCM", "--ssl-cert-reqs", "2")
    assert httpx.get(server.url + "/").status_code == 200


def test_h11_max_incomplete_event_size_sets_the_head_limit() -> None:
    assert Config("m:a", h11_max_incomplete_event_size=4096).limit_request_head_size == 4096
    assert Config(
        "m:a", h11_max_incomplete_event_size=4096, limit_request_head_size=4096
    ).engine_options()["limit_request_head_size"] == 4096
    with pytest.raises(ConfigError, match="give one of the two"):
        Config("m:a", h11_max_incomplete_event_size=4096, limit_request_head_size=8192)


@pytest.mark.engine
def test_h11_flag_limits_the_head_on_the_wire(run_cli: Any) -> None:
    server = run_cli(APP, "--h11-max-incomplete-event-size", "1024", "--no-access-log")
    small = httpx.get(server.url + "/", headers={"X-Pad": "a" * 100})
    assert small.status_code == 200
    big = httpx.get(server.url + "/", headers={"X-Pad": "a" * 2000})
    assert big.status_code == 431
