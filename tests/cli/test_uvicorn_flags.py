"""Every flag of uvicorn 0.54's command line is one of ferrule's: a uvicorn
command line from a Dockerfile runs with `ferrule` in place of `uvicorn`.

UVICORN_FLAGS is the copy of `uvicorn --help` (0.54) this checks against,
each flag with a value uvicorn accepts; the second test compares the copy
with the installed uvicorn's when there is one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ferrule import cli

# flag -> the argument(s) it takes on uvicorn's command line (None: a switch).
UVICORN_FLAGS: dict[str, list[str] | None] = {
    "--host": ["0.0.0.0"],
    "--port": ["8080"],
    "--uds": ["/tmp/app.sock"],
    "--fd": ["3"],
    "--reload": None,
    "--reload-dir": ["src"],
    "--reload-include": ["*.html"],
    "--reload-exclude": ["*.tmp"],
    "--reload-delay": ["0.5"],
    "--workers": ["4"],
    "--loop": ["uvloop"],
    "--http": ["httptools"],
    "--http2": None,
    "--ws": ["websockets"],
    "--ws-max-size": ["1048576"],
    "--ws-max-queue": ["16"],
    "--ws-ping-interval": ["10.0"],
    "--ws-ping-timeout": ["10.0"],
    "--ws-per-message-deflate": ["false"],
    "--lifespan": ["on"],
    "--interface": ["asgi3"],
    "--env-file": ["ENV_FILE"],  # replaced by a real file below
    "--log-config": ["LOG_CONFIG"],  # likewise
    "--log-level": ["debug"],
    "--access-log": None,
    "--no-access-log": None,
    "--use-colors": None,
    "--no-use-colors": None,
    "--proxy-headers": None,
    "--no-proxy-headers": None,
    "--server-header": None,
    "--no-server-header": None,
    "--date-header": None,
    "--no-date-header": None,
    "--forwarded-allow-ips": ["10.0.0.1,10.0.0.2"],
    "--root-path": ["/api"],
    "--limit-concurrency": ["100"],
    "--backlog": ["1024"],
    "--limit-max-requests": ["1000"],
    "--limit-max-requests-jitter": ["50"],
    "--timeout-keep-alive": ["10"],
    "--timeout-graceful-shutdown": ["30"],
    "--timeout-worker-healthcheck": ["5"],
    "--ssl-keyfile": ["key.pem"],
    "--ssl-certfile": ["cert.pem"],
    "--ssl-keyfile-password": ["secret"],
    "--ssl-version": ["17"],
    "--ssl-cert-reqs": ["2"],
    "--ssl-ca-certs": ["ca.pem"],
    "--ssl-ciphers": ["ECDHE+AESGCM"],
    "--header": ["X-Frame-Options:DENY"],
    "--version": None,
    "--app-dir": ["."],
    "--h11-max-incomplete-event-size": ["32768"],
    "--reset-contextvars": None,
    "--factory": None,
    "--help": None,
}

def _argv(flag: str, tmp_path: Path) -> list[str]:
    values = list(UVICORN_FLAGS[flag] or [])
    if values == ["ENV_FILE"]:
        (tmp_path / ".env").write_text("A=1\n")
        values = [str(tmp_path / ".env")]
    elif values == ["LOG_CONFIG"]:
        (tmp_path / "log.json").write_text('{"version": 1}')
        values = [str(tmp_path / "log.json")]
    return [flag, *values]


@pytest.mark.parametrize("flag", sorted(UVICORN_FLAGS))
def test_every_uvicorn_flag_is_accepted(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        args = cli.build_parser().parse_args(["m:app", *_argv(flag, tmp_path)])
    except SystemExit as exc:
        err = capsys.readouterr().err
        # --help and --version exit 0 after printing; anything else is a failure.
        assert exc.code == 0 and flag in ("--help", "--version"), err
        assert "unrecognized" not in err
        return
    # The value also makes a valid Config (ferrule's checks accept it).
    cli.resolve(args, {}).config()


def test_a_whole_uvicorn_command_line_parses_into_one_config(tmp_path: Path) -> None:
    argv = ["m:app"]
    for flag in sorted(UVICORN_FLAGS):
        skip = ("--help", "--version", "--h11-max-incomplete-event-size", "--uds", "--fd")
        if flag in skip or flag.startswith("--no-"):
            continue
        argv += _argv(flag, tmp_path)
    config = cli.resolve(cli.build_parser().parse_args(argv), {}).config()
    assert config.host == "0.0.0.0" and config.port == 8080
    assert config.ws == "websockets" and config.ws_per_message_deflate is False
    assert config.reload_includes == ["*.html"] and config.reload_delay == 0.5
    assert config.ssl_certfile == "cert.pem" and config.ssl_version == 17
    assert config.reset_contextvars is True and config.http2 is True


def test_the_copy_is_the_installed_uvicorn_s_help() -> None:
    main = pytest.importorskip("uvicorn.main").main
    flags = {o for p in main.params for o in (*p.opts, *p.secondary_opts)}
    flags.add("--help")
    assert {f for f in flags if f.startswith("--")} == set(UVICORN_FLAGS)
