"""--http and --http2 as the engine gets them, with uvicorn's values and
their notice lines; the --h2-* limits reach the client as SETTINGS."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from ferrule import Config, ConfigError

sys.path.insert(0, os.path.dirname(__file__))
from _h2client import H2Client  # noqa: E402


@pytest.mark.parametrize(
    "http, http2, mode",
    [
        ("auto", False, "auto"),
        ("h1", False, "h1"),
        ("h2", False, "h2"),
        ("h11", False, "h1"),
        ("httptools", False, "h1"),
        ("h11", True, "auto"),
        ("h1", True, "auto"),
        ("auto", True, "auto"),
        ("zttp", False, "auto"),
        ("mypkg.protocols:H1", False, "auto"),
    ],
)
def test_http_mode_for_the_engine(http: str, http2: bool, mode: str) -> None:
    assert Config("m:a", http=http, http2=http2).engine_options()["http"] == mode


def test_uvicorn_values_print_one_notice_and_ferrule_s_none() -> None:
    assert Config("m:a", http="h2").notices() == []
    assert Config("m:a", http="h11").notices() == [
        "--http h11: ferrule's own engine serves HTTP/1.1 only (as --http h1)"
    ]
    assert Config("m:a", http="httptools", http2=True).notices() == [
        "--http httptools: ferrule's own engine serves HTTP/1.1 and HTTP/2 (as --http auto)"
    ]


def test_a_bad_http_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="http"):
        Config("m:a", http="h3")
    with pytest.raises(ConfigError, match="h2_max_frame_size"):
        Config("m:a", h2_max_frame_size=1000)


@pytest.mark.engine
@pytest.mark.timeout(30)
def test_h2_limits_are_sent_as_settings(serve: Any) -> None:
    import h2.settings

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        pass

    server = serve(
        app,
        lifespan="off",
        h2_max_concurrent_streams=7,
        h2_max_header_list_size=12345,
        h2_max_frame_size=32768,
        h2_initial_window_size=99999,
    )
    client = H2Client("127.0.0.1", server.port)
    try:
        codes = h2.settings.SettingCodes
        while codes.MAX_CONCURRENT_STREAMS not in client.conn.remote_settings:
            assert client.pump()
        remote = client.conn.remote_settings
        assert remote[codes.MAX_CONCURRENT_STREAMS] == 7
        assert remote[codes.MAX_HEADER_LIST_SIZE] == 12345
        assert remote[codes.MAX_FRAME_SIZE] == 32768
        assert remote[codes.INITIAL_WINDOW_SIZE] == 99999
    finally:
        client.close()


@pytest.mark.engine
@pytest.mark.timeout(60)
def test_cli_http_h11_serves_http_1_only_with_a_notice(run_cli: Any) -> None:
    import httpx

    server = run_cli("examples.hello:app", "--http", "h11")
    assert "--http h11: ferrule's own engine serves HTTP/1.1 only" in server.output
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(http1=False, http2=True) as client:
            client.get(server.url + "/")
    assert httpx.get(server.url + "/").status_code == 200
