"""Options uvicorn has that ferrule maps onto its own: --http2 and the
--ws* flags are served without a notice (uvicorn's --http names get one,
tests/http2/test_h2_options.py); --h11-max-incomplete-event-size sets the head
limit. (TLS is served: tests/cli/test_tls_cli.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ferrule import Config, ConfigError

pytestmark = pytest.mark.timeout(60)

APP = "examples.hello:app"


def test_no_notice_for_http2_and_ws_flags() -> None:
    assert Config("m:a").notices() == []
    assert Config("m:a", ws="none").notices() == []
    assert Config("m:a", ws="wsproto", ws_max_size=1024, http2=True).notices() == []


@pytest.mark.engine
def test_cli_ws_flags_serve_without_a_notice(run_cli: Any) -> None:
    server = run_cli(
        APP,
        "--ws",
        "websockets",
        "--ws-ping-interval",
        "5",
        "--ws-per-message-deflate",
        "false",
        "--http2",
    )
    assert httpx.get(server.url + "/").status_code == 200
    notices = [line for line in server.stderr_lines if "WARNING" in line]
    assert notices == [], server.output
    assert "WebSockets" not in server.output


def test_h11_max_incomplete_event_size_sets_the_head_limit() -> None:
    assert (
        Config("m:a", h11_max_incomplete_event_size=4096).limit_request_head_size
        == 4096
    )
    assert (
        Config(
            "m:a", h11_max_incomplete_event_size=4096, limit_request_head_size=4096
        ).engine_options()["limit_request_head_size"]
        == 4096
    )
    with pytest.raises(ConfigError, match="give one of the two"):
        Config("m:a", h11_max_incomplete_event_size=4096, limit_request_head_size=8192)


@pytest.mark.engine
def test_h11_flag_limits_the_head_on_the_wire(run_cli: Any) -> None:
    server = run_cli(APP, "--h11-max-incomplete-event-size", "1024", "--no-access-log")
    small = httpx.get(server.url + "/", headers={"X-Pad": "a" * 100})
    assert small.status_code == 200
    big = httpx.get(server.url + "/", headers={"X-Pad": "a" * 2000})
    assert big.status_code == 431
