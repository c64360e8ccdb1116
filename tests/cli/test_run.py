"""ferrule.run() and Config as uvicorn's: reload and workers need an import
string (a warning and exit status 3 otherwise, as uvicorn 0.54), and with
one they run the reloader or the worker supervisor; Config(host=None) binds
every interface."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _rawhttp import wait_for

from conftest import ROOT, CLIProcess, _cli_env
from ferrule import Config, cli

pytestmark = pytest.mark.timeout(60)


def python(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=30, **kwargs,
    )


@pytest.mark.parametrize("option", ["reload=True", "workers=2"])
def test_run_refuses_an_app_object_with_reload_or_workers(option: str) -> None:
    r = python(f"""
        import ferrule
        async def app(scope, receive, send): pass
        ferrule.run(app, port=0, {option})
        """)
    assert r.returncode == 3, r.stderr
    assert "You must pass the application as an import string" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.engine
def test_run_with_an_import_string_and_workers_serves_from_several_processes() -> None:
    proc = CLIProcess(
        [sys.executable, "-c",
         "import ferrule; ferrule.run('examples.hello:app', port=0, workers=2, access_log=False)"],
        _cli_env(),
    )
    try:
        proc.wait_started()
        assert httpx.get(proc.url + "/").text == "Hello, world!"
        assert "Started parent process" in proc.output
        # The parent announces the socket before its workers are up.
        wait_for(lambda: proc.output.count("Started server process") == 2)
    finally:
        assert proc.stop(signal.SIGINT) == 0, proc.output


@pytest.mark.engine
def test_run_with_reload_restarts_on_a_change(tmp_path: Path) -> None:
    module = tmp_path / "runreload.py"
    app = textwrap.dedent("""
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"VERSION"})
        """)
    module.write_text(app.replace("VERSION", "one"))
    code = (
        "import ferrule; ferrule.run('runreload:app', port=0, reload=True, "
        f"reload_dirs=[{str(tmp_path)!r}], app_dir={str(tmp_path)!r}, "
        "reload_delay=0.1, access_log=False, headers=[('X-Run', 'yes')])"
    )
    proc = CLIProcess([sys.executable, "-c", code], _cli_env())
    try:
        proc.wait_started()
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(proc.url + "/")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, proc.output
                time.sleep(0.05)
        assert response.text == "one" and response.headers["x-run"] == "yes"
        module.write_text(app.replace("VERSION", "two"))
        while httpx.get(proc.url + "/").text != "two":
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.05)
        assert "Started reloader process" in proc.output
    finally:
        assert proc.stop(signal.SIGINT) == 0, proc.output


def test_command_line_gives_the_same_config() -> None:
    kwargs: dict[str, Any] = {
        "host": "0.0.0.0",
        "port": 9000,
        "access_log": False,
        "factory": True,
        "headers": [("X-A", "1"), "X-B: 2"],
        "forwarded_allow_ips": ["10.0.0.1", "10.0.0.2"],
        "log_level": 10,
        "timeout_keep_alive": 2.5,
        "reload_includes": "*.html",
        "ws_per_message_deflate": False,
        "use_colors": None,
    }
    argv = cli.command_line("m:app", kwargs)
    config = cli.resolve(cli.build_parser().parse_args(argv), {}).config()
    expected = Config("m:app", **kwargs)
    for name in kwargs.keys() - {"log_level", "forwarded_allow_ips"}:
        assert getattr(config, name) == getattr(expected, name), name
    assert config.log_level_no == 10
    assert config.trusted_hosts == expected.trusted_hosts


def test_config_host_none_means_every_interface() -> None:
    assert Config("m:app", host=None).host == "0.0.0.0"


@pytest.mark.engine
def test_host_none_serves_on_every_ipv4_interface(serve: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    served = serve(app, host=None, lifespan="off")
    assert served.host == "0.0.0.0"
    assert httpx.get(f"http://127.0.0.1:{served.port}/").text == "ok"
