"""The command line, Config, the importer and logging setup.

Tests marked ``engine`` start a real server (they need the compiled
extension); the rest are pure Python and run without a build.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from ferrule import Config, ConfigError, __version__, cli, logs
from ferrule.importer import ImportFromStringError, import_from_string

ROOT = Path(__file__).resolve().parent.parent.parent

ALL_FLAGS = [
    "--host",
    "--port",
    "--uds",
    "--fd",
    "--factory",
    "--app-dir",
    "--lifespan",
    "--log-level",
    "--access-log",
    "--no-access-log",
    "--root-path",
    "--timeout-keep-alive",
    "--timeout-graceful-shutdown",
    "--limit-concurrency",
    "--limit-max-requests",
    "--backlog",
    "--header",
    "--server-header",
    "--no-server-header",
    "--date-header",
    "--no-date-header",
    "--log-config",
    "--workers",
    "--proxy-headers",
    "--no-proxy-headers",
    "--forwarded-allow-ips",
    "--version",
    "--help",
]


APP_MODULES = [
    "good_app_mod",
    "raising_app_mod",
    "dep_missing_app_mod",
    "factory_raises_mod",
]


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory of small app modules; sys.path and sys.modules are restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in APP_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "good_app_mod.py").write_text(textwrap.dedent("""
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"from app-dir"})

            def create_app():
                return app

            def not_asgi():
                return None

            class Asgi2:
                def __init__(self, scope):
                    self.scope = scope
            """))
    (tmp_path / "raising_app_mod.py").write_text(
        "raise RuntimeError('boom while importing')\n"
    )
    (tmp_path / "dep_missing_app_mod.py").write_text(
        "import ferrule_no_such_dependency_xyz\n"
    )
    (tmp_path / "factory_raises_mod.py").write_text(
        "def create_app():\n    raise ValueError('factory exploded')\n"
    )
    yield tmp_path
    for name in APP_MODULES:
        sys.modules.pop(name, None)


def run(
    ferrule_cmd: list[str],
    cli_env: dict[str, str],
    *args: str,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ferrule_cmd, *args],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# ------------------------------------------------------------ CLI (subprocess)


def test_bad_flag_is_one_line_exit_2(ferrule_cmd, cli_env):
    result = run(ferrule_cmd, cli_env, "--bogus-flag", "examples.hello:app")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("ferrule: error:")
    assert "--bogus-flag" in line
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["x", "-1", "65536", "80.5"])
def test_bad_port_value(ferrule_cmd, cli_env, value):
    result = run(ferrule_cmd, cli_env, "--port", value, "examples.hello:app")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "--port" in line and repr(value) in line


def test_missing_module_exit_2(ferrule_cmd, cli_env):
    result = run(ferrule_cmd, cli_env, "ferrule_no_such_module_xyz:app")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert 'Could not import module "ferrule_no_such_module_xyz"' in line


@pytest.mark.parametrize(
    "target", ["examples.hello", "examples.hello:", ":app", "examples.hello:a b"]
)
def test_bad_app_string_exit_2(ferrule_cmd, cli_env, target):
    result = run(ferrule_cmd, cli_env, target)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "<module>:<attribute>" in line


def test_missing_attribute_exit_2(ferrule_cmd, cli_env):
    result = run(ferrule_cmd, cli_env, "examples.hello:nothere")
    assert result.returncode == 2
    assert 'Attribute "nothere" not found' in one_line(result.stderr)


def test_import_time_exception_exit_1_with_traceback(ferrule_cmd, cli_env, app_dir):
    result = run(ferrule_cmd, cli_env, "--app-dir", str(app_dir), "raising_app_mod:app")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom while importing" in result.stderr
    assert "raising_app_mod.py" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ferrule: error:") and "raising_app_mod:app" in last


def test_missing_dependency_of_app_is_the_apps_error(ferrule_cmd, cli_env, app_dir):
    # The app module exists but imports something that does not: exit 1, not 2.
    result = run(
        ferrule_cmd, cli_env, "--app-dir", str(app_dir), "dep_missing_app_mod:app"
    )
    assert result.returncode == 1
    assert "ferrule_no_such_dependency_xyz" in result.stderr
    assert "Traceback" in result.stderr


def test_version(ferrule_cmd, cli_env):
    result = run(ferrule_cmd, cli_env, "--version")
    assert result.returncode == 0
    assert re.fullmatch(
        r"ferrule \S+ \(\w+ \d+\.\d+\.\d+\S*\)", one_line(result.stdout)
    ), result.stdout
    assert __version__ in result.stdout


def test_help_lists_the_flags(ferrule_cmd, cli_env):
    result = run(ferrule_cmd, cli_env, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ferrule")
    for flag in ALL_FLAGS:
        assert flag in result.stdout, flag


def test_console_script_entry_point_is_cli_main():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'ferrule = "ferrule.cli:main"' in text


# -------------------------------------------------------- CLI (in process)


def call_main(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--lifespan", "sometimes"], "--lifespan"),
        (["--log-level", "loud"], "--log-level"),
        (["--timeout-keep-alive", "-1"], "--timeout-keep-alive"),
        (["--timeout-keep-alive", "soon"], "--timeout-keep-alive"),
        (["--limit-concurrency", "0"], "--limit-concurrency"),
        (["--backlog", "many"], "--backlog"),
        (["--header", "no-colon"], "--header"),
        (["--header", "bad name:v"], "--header"),
        (["--workers", "0"], "--workers"),
        (["--fd", "-3"], "--fd"),
        (["--root-path", "no-slash"], "--root-path"),
        (["--forwarded-allow-ips", "1.2.3.4", "--access-log=yes"], "--access-log"),
    ],
)
def test_bad_values_name_the_flag(capsys, argv, flag):
    code, out, err = call_main(capsys, *argv, "examples.hello:app")
    assert code == 2
    line = one_line(err)
    assert line.startswith("ferrule: error:") and flag in line


def test_missing_app_argument(capsys):
    code, _, err = call_main(capsys)
    assert code == 2
    assert "APP" in one_line(err)


PID_APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.engine
def test_workers_serve_from_several_processes_and_stop_cleanly(run_cli, tmp_path):
    (tmp_path / "pidapp.py").write_text(PID_APP)
    proc = run_cli("--workers", "2", "--app-dir", str(tmp_path), "--no-access-log", "pidapp:app")
    import httpx

    pids = set()
    deadline = time.monotonic() + 10
    while len(pids) < 2 and time.monotonic() < deadline:
        # A new connection each time, so the kernel can pick either worker.
        with httpx.Client() as client:
            pids.add(client.get(proc.url + "/").text)
    assert len(pids) == 2
    assert str(proc.proc.pid) not in pids  # the parent only supervises


def test_log_config_file_missing(capsys, tmp_path):
    code, _, err = call_main(
        capsys, "--log-config", str(tmp_path / "nope.ini"), "examples.hello:app"
    )
    assert code == 2
    assert "--log-config" in one_line(err)


def test_not_an_asgi_app(capsys, app_dir):
    # Asgi2 with --interface asgi3: auto serves it as ASGI 2 (test_interface.py).
    for target, extra in [
        ("good_app_mod:not_asgi", []),
        ("good_app_mod:Asgi2", ["--interface", "asgi3"]),
    ]:
        code, _, err = call_main(capsys, "--app-dir", str(app_dir), *extra, target)
        assert code == 2, target
        assert "ASGI" in one_line(err) or "factory" in one_line(err)


def test_factory_that_raises_exit_1(capsys, app_dir):
    code, _, err = call_main(
        capsys, "--app-dir", str(app_dir), "--factory", "factory_raises_mod:create_app"
    )
    assert code == 1
    assert "ValueError: factory exploded" in err


def test_args_map_to_config():
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "examples.hello:app",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--lifespan",
            "on",
            "--log-level",
            "debug",
            "--no-access-log",
            "--root-path",
            "/api/",
            "--timeout-keep-alive",
            "2.5",
            "--timeout-graceful-shutdown",
            "3",
            "--limit-concurrency",
            "10",
            "--limit-max-requests",
            "100",
            "--backlog",
            "64",
            "--header",
            "X-One: 1",
            "--header",
            "x-two:two:parts",
            "--no-server-header",
            "--no-date-header",
            "--no-proxy-headers",
            "--forwarded-allow-ips",
            "10.0.0.0/8, 127.0.0.1",
            "--factory",
        ]
    )
    config = cli.config_from_args(args)
    assert config.app == "examples.hello:app"
    assert (config.host, config.port) == ("0.0.0.0", 0)
    assert config.lifespan == "on"
    assert config.log_level_no == logging.DEBUG
    assert config.access_log is False
    assert config.root_path == "/api"
    assert config.timeout_keep_alive == 2.5
    assert config.timeout_graceful_shutdown == 3
    assert (config.limit_concurrency, config.limit_max_requests) == (10, 100)
    assert config.backlog == 64
    assert config.headers == [("X-One", "1"), ("x-two", "two:parts")]
    assert config.encoded_headers == [(b"X-One", b"1"), (b"x-two", b"two:parts")]
    assert config.server_header is False and config.date_header is False
    assert config.proxy_headers is False
    assert config.trusted_hosts == ["10.0.0.0/8", "127.0.0.1"]
    assert config.factory is True


def test_cli_defaults_match_config_defaults():
    config = cli.config_from_args(cli.build_parser().parse_args(["m:a"]))
    default = Config("m:a")
    for name in [
        "host",
        "port",
        "uds",
        "fd",
        "factory",
        "app_dir",
        "lifespan",
        "log_level_no",
        "access_log",
        "root_path",
        "timeout_keep_alive",
        "timeout_graceful_shutdown",
        "limit_concurrency",
        "limit_max_requests",
        "backlog",
        "headers",
        "server_header",
        "date_header",
        "log_config",
        "workers",
        "proxy_headers",
        "trusted_hosts",
    ]:
        assert getattr(config, name) == getattr(default, name), name


# ------------------------------------------------------------------- Config


def test_config_defaults():
    config = Config("examples.hello:app")
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.lifespan == "auto"
    assert config.timeout_keep_alive == 5
    assert config.backlog == 2048
    assert config.workers == 1
    assert config.headers == [] and config.encoded_headers == []
    assert config.server_header and config.date_header and config.access_log
    assert config.app_dir == "."
    assert config.bind_description == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"port": 70000}, "port"),
        ({"port": "80"}, "port"),
        ({"port": True}, "port"),
        ({"host": ""}, "host"),
        ({"lifespan": "maybe"}, "lifespan"),
        ({"log_level": "chatty"}, "log_level"),
        ({"timeout_keep_alive": -1}, "timeout_keep_alive"),
        ({"timeout_graceful_shutdown": "x"}, "timeout_graceful_shutdown"),
        ({"limit_concurrency": 0}, "limit_concurrency"),
        ({"limit_max_requests": -5}, "limit_max_requests"),
        ({"backlog": 0}, "backlog"),
        ({"headers": [("bad name", "v")]}, "headers"),
        ({"headers": [("x", "a\r\nb")]}, "headers"),
        ({"headers": "x:y"}, "headers"),
        ({"workers": 0}, "workers"),
        ({"uds": "/tmp/s", "fd": 3}, "fd"),
        ({"access_log": "no"}, "access_log"),
        ({"log_config": 42}, "log_config"),
        ({"root_path": "api"}, "root_path"),
    ],
)
def test_config_validation_names_the_option(kwargs, option):
    with pytest.raises(ConfigError) as info:
        Config("examples.hello:app", **kwargs)
    assert info.value.option == option
    assert str(info.value).startswith(option)
    assert isinstance(info.value, ValueError)


def test_config_rejects_non_app():
    with pytest.raises(ConfigError, match="app"):
        Config(42)  # type: ignore[arg-type]


def test_config_log_level_int_and_trace():
    assert Config("m:a", log_level=15).log_level_no == 15
    assert Config("m:a", log_level="TRACE").log_level_no == logs.TRACE_LOG_LEVEL


def test_config_headers_accept_strings():
    config = Config("m:a", headers=["X-Frame-Options: DENY"])
    assert config.headers == [("X-Frame-Options", "DENY")]


def test_trusted_hosts(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    config = Config("m:a")
    assert config.trusted_hosts == ["127.0.0.1"]
    assert config.trusts_proxy("127.0.0.1")
    assert not config.trusts_proxy("10.1.2.3")
    config = Config("m:a", forwarded_allow_ips="10.0.0.0/8,::1,unix:")
    assert config.trusts_proxy("10.1.2.3") and config.trusts_proxy("::1")
    assert config.trusts_proxy("unix:") and not config.trusts_proxy("11.0.0.1")
    assert Config("m:a", forwarded_allow_ips="*").trusts_proxy("8.8.8.8")
    assert not Config("m:a", forwarded_allow_ips="*", proxy_headers=False).trusts_proxy(
        "8.8.8.8"
    )
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.168.0.1")
    assert Config("m:a").trusted_hosts == ["192.168.0.1"]


def test_load_app_from_string_and_cache():
    from examples import hello

    config = Config("examples.hello:app")
    assert config.load_app() is hello.app
    assert config.loaded_app is hello.app
    assert config.load_app() is hello.app


def test_load_app_callable_passthrough():
    async def app(scope, receive, send):
        pass

    assert Config(app).load_app() is app


def test_load_app_factory(app_dir):
    config = Config("good_app_mod:create_app", factory=True, app_dir=str(app_dir))
    app = config.load_app()
    assert app.__name__ == "app"
    assert sys.path[0] == str(app_dir)


def test_load_app_factory_without_flag_is_an_error(app_dir):
    config = Config("good_app_mod:create_app", app_dir=str(app_dir))
    with pytest.raises(ConfigError, match="factory"):
        config.load_app()


def test_load_app_rejects_asgi2_class(app_dir):
    # With interface="asgi3" (auto serves it as ASGI 2: tests/cli/test_interface.py).
    with pytest.raises(ConfigError, match="ASGI 2"):
        Config("good_app_mod:Asgi2", app_dir=str(app_dir), interface="asgi3").load_app()


def test_load_app_framework_instances():
    pytest.importorskip("starlette")
    pytest.importorskip("quart")
    for name in ["starlette_app", "quart_app"]:
        assert callable(Config(f"examples.{name}:app").load_app())


# ----------------------------------------------------------------- importer


def test_import_from_string_nested_attribute():
    assert import_from_string("os:path.join") is __import__("os").path.join


def test_import_from_string_passthrough():
    marker = object()
    assert import_from_string(marker) is marker


@pytest.mark.parametrize("target", ["nocolon", "mod:", ":attr", "a:b..c", "a b:c"])
def test_import_from_string_bad_format(target):
    with pytest.raises(ImportFromStringError, match="<module>:<attribute>"):
        import_from_string(target)


def test_import_from_string_missing_module_and_parent():
    with pytest.raises(ImportFromStringError, match='Could not import module "nope_x"'):
        import_from_string("nope_x:app")
    with pytest.raises(ImportFromStringError, match="nope_x.sub"):
        import_from_string("nope_x.sub:app")
    with pytest.raises(ImportFromStringError, match="examples.nope"):
        import_from_string("examples.nope:app")


def test_import_from_string_missing_attribute():
    with pytest.raises(ImportFromStringError, match='Attribute "nope" not found'):
        import_from_string("os:nope")


def test_import_from_string_propagates_module_errors(app_dir):
    sys.path.insert(0, str(app_dir))
    with pytest.raises(RuntimeError, match="boom while importing"):
        import_from_string("raising_app_mod:app")
    with pytest.raises(ModuleNotFoundError):
        import_from_string("dep_missing_app_mod:app")


# ------------------------------------------------------------------ logging


@pytest.fixture
def clean_logging():
    names = ["", "ferrule", "ferrule.error", "ferrule.access"]
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
            logging.getLogger(name).disabled,
        )
        for name in names
    }
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def owned_handlers(name: str) -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger(name).handlers
        if getattr(h, "_ferrule_default_handler", False)
    ]


def test_setup_logging_default_format(clean_logging, capsys):
    Config("m:a", use_colors=False).setup_logging()
    logging.getLogger("ferrule.error").info("Ferrule running on http://x:1")
    logs.log_access("127.0.0.1:5555", "GET", "/", "1.1", 200, 13, 0.42)
    logging.getLogger("ferrule.error").debug("hidden at info")
    out, err = capsys.readouterr()
    assert err == "INFO:     Ferrule running on http://x:1\n"
    assert out == 'INFO:     127.0.0.1:5555 - "GET / HTTP/1.1" 200 13B 0.4ms\n'


def test_setup_logging_twice_does_not_double_handlers(clean_logging, capsys):
    config = Config("m:a", use_colors=False)
    config.setup_logging()
    config.setup_logging()
    assert len(owned_handlers("ferrule")) == 1
    assert len(owned_handlers("ferrule.access")) == 1
    logging.getLogger("ferrule.error").warning("once")
    assert capsys.readouterr().err == "WARNING:  once\n"


def test_setup_logging_levels_and_access_off(clean_logging, capsys):
    Config(
        "m:a", log_level="warning", access_log=False, use_colors=False
    ).setup_logging()
    logging.getLogger("ferrule.error").info("quiet")
    logging.getLogger("ferrule.error").error("loud")
    logs.log_access("1.2.3.4:1", "GET", "/", "1.1", 200, 1, 0.1)
    out, err = capsys.readouterr()
    assert err == "ERROR:    loud\n" and out == ""
    Config("m:a", log_level="trace", use_colors=False).setup_logging()
    logging.getLogger("ferrule.error").log(logs.TRACE_LOG_LEVEL, "tiny")
    assert capsys.readouterr().err == "TRACE:    tiny\n"


def test_colours_only_when_asked_or_tty(clean_logging):
    record = logging.LogRecord(
        "ferrule.access",
        logging.INFO,
        __file__,
        1,
        logs.ACCESS_FORMAT,
        ("1.2.3.4:5", "GET", "/x", "1.1", 404, 9, 1.25),
        None,
    )
    plain = logs.AccessFormatter(use_colors=False).format(record)
    assert plain == 'INFO:     1.2.3.4:5 - "GET /x HTTP/1.1" 404 9B 1.2ms'
    coloured = logs.AccessFormatter(use_colors=True).format(record)
    assert "\x1b[" in coloured and "404" in coloured
    assert logs.DefaultFormatter(stream=io.StringIO()).use_colors is False


def test_log_config_dict_and_json(clean_logging, tmp_path, capsys):
    config_dict: dict[str, Any] = {
        "version": 1,
        "formatters": {"bare": {"format": "custom|%(name)s|%(message)s"}},
        "handlers": {
            "h": {
                "class": "logging.StreamHandler",
                "formatter": "bare",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"ferrule": {"handlers": ["h"], "propagate": False}},
    }
    Config("m:a", log_config=config_dict).setup_logging()
    logging.getLogger("ferrule.error").info("hi")
    assert capsys.readouterr().err == "custom|ferrule.error|hi\n"

    path = tmp_path / "log.json"
    config_dict["formatters"]["bare"]["format"] = "json|%(message)s"
    path.write_text(json.dumps(config_dict))
    Config("m:a", log_config=str(path)).setup_logging()
    logging.getLogger("ferrule.error").info("hi")
    assert capsys.readouterr().err == "json|hi\n"


def test_log_config_ini(clean_logging, tmp_path, capsys):
    path = tmp_path / "log.ini"
    path.write_text(textwrap.dedent("""
            [loggers]
            keys=root,ferrule
            [handlers]
            keys=h
            [formatters]
            keys=f
            [logger_root]
            handlers=
            [logger_ferrule]
            handlers=h
            qualname=ferrule
            propagate=0
            [handler_h]
            class=StreamHandler
            formatter=f
            args=(sys.stderr,)
            [formatter_f]
            format=ini|%(levelname)s|%(message)s
            """))
    Config("m:a", log_config=str(path)).setup_logging()
    logging.getLogger("ferrule.error").warning("w")
    assert capsys.readouterr().err == "ini|WARNING|w\n"


# ------------------------------------------------------- with the engine


@pytest.mark.engine
def test_cli_serves_hello_and_stops_on_sigint(run_cli):
    import httpx

    server = run_cli("examples.hello:app")
    assert server.port > 0
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["server"] == "ferrule"
    assert "date" in response.headers
    # teardown: SIGINT, exit status 0


@pytest.mark.engine
def test_cli_access_log_line(run_cli):
    import time

    import httpx

    server = run_cli("examples.hello:app")
    httpx.get(server.url + "/some/path?q=1")
    deadline = time.monotonic() + 5
    pattern = re.compile(
        r'INFO: +127\.0\.0\.1:\d+ - "GET /some/path\?q=1 HTTP/1\.1" 200 13B [\d.]+ms'
    )
    while not pattern.search("".join(server.stdout_lines)):
        assert time.monotonic() < deadline, server.output
        time.sleep(0.05)


@pytest.mark.engine
def test_cli_header_flags(run_cli):
    import httpx

    server = run_cli(
        "examples.hello:app",
        "--no-server-header",
        "--no-date-header",
        "--no-access-log",
        "--header",
        "X-Extra: yes",
    )
    response = httpx.get(server.url + "/")
    assert "server" not in response.headers
    assert "date" not in response.headers
    assert response.headers["x-extra"] == "yes"


@pytest.mark.engine
def test_cli_app_dir_and_factory(run_cli, app_dir):
    import httpx

    server = run_cli("--app-dir", str(app_dir), "--factory", "good_app_mod:create_app")
    assert httpx.get(server.url + "/").text == "from app-dir"


@pytest.mark.engine
def test_cli_lifespan_startup_failure_exits_nonzero(ferrule_cmd, cli_env, tmp_path):
    (tmp_path / "failing_lifespan_mod.py").write_text(textwrap.dedent("""
            async def app(scope, receive, send):
                assert scope["type"] == "lifespan"
                await receive()
                await send({"type": "lifespan.startup.failed", "message": "no db"})
            """))
    result = run(
        ferrule_cmd,
        cli_env,
        "--app-dir",
        str(tmp_path),
        "--lifespan",
        "on",
        "--port",
        "0",
        "failing_lifespan_mod:app",
    )
    assert result.returncode != 0
    assert "no db" in result.stderr
    assert "Application startup failed" in result.stderr


RELOAD_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


@pytest.mark.engine
def test_reload_restarts_on_code_change_without_refusing_connections(run_cli, tmp_path):
    import httpx

    module = tmp_path / "reloadme.py"
    module.write_text(RELOAD_APP.replace("VERSION", "v1"))
    proc = run_cli(
        "--reload", "--reload-dir", str(tmp_path), "--app-dir", str(tmp_path),
        "--no-access-log", "reloadme:app",
    )
    deadline = time.monotonic() + 10
    body = ""
    while body != "v1" and time.monotonic() < deadline:
        try:
            body = httpx.get(proc.url + "/").text
        except httpx.HTTPError:
            time.sleep(0.1)
    assert body == "v1"
    time.sleep(0.05)
    module.write_text(RELOAD_APP.replace("VERSION", "v2"))
    deadline = time.monotonic() + 10
    while body != "v2" and time.monotonic() < deadline:
        # The socket stays bound across the restart: no connection refused.
        body = httpx.get(proc.url + "/").text
        time.sleep(0.05)
    assert body == "v2"


def test_child_argv_drops_parent_only_flags():
    from ferrule.reloader import child_argv

    argv = ["app:app", "--reload", "--reload-dir", "src", "--port", "9000", "--host=0.0.0.0", "--root-path", "/x"]
    cmd = child_argv(argv, 7)
    assert cmd[1:3] == ["-m", "ferrule"]
    assert cmd[3:] == ["app:app", "--root-path", "/x", "--fd", "7"]
