"""The option table (ferrule.options) and what is derived from it: Config's
signature and checks, the command line and its environment variables, the
engine's options, README's table, and the asyncio_tasks option.

Tests marked ``engine`` start a real server (they need the compiled
extension); the rest are pure Python.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _rawhttp import fetch

from ferrule import Config, ConfigError, cli, options
from ferrule.options import OPTIONS
from ferrule.reloader import child_env

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def no_option_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's nor CI's environment may set an option here."""
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


async def noop_app(scope: Any, receive: Any, send: Any) -> None:
    pass


def parse(*argv: str, environ: dict[str, str] | None = None) -> Config:
    args = cli.build_parser().parse_args([*argv, "m:a"])
    return cli.config_from_args(args, environ or {})


def call_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    code = info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# --------------------------------------------------------------- the table


def test_config_signature_equals_the_table() -> None:
    params = list(inspect.signature(Config.__init__).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "app"]
    signature = [(p.name, p.default) for p in params[2:]]
    table = [(o.name, o.default) for o in OPTIONS if not o.cli_only]
    assert signature == table


def test_table_entries_are_consistent() -> None:
    names = [o.name for o in OPTIONS]
    assert len(set(names)) == len(names)
    flags = [f for o in OPTIONS for f in o.flags]
    assert len(set(flags)) == len(flags)
    for option in OPTIONS:
        assert option.env == "FERRULE_" + option.name.upper()
        assert option.help and option.help.endswith(".")
        if option.style != "value":
            assert option.choices is None and not option.repeatable
        if option.cli_only:
            assert not option.engine
    assert [o.name for o in OPTIONS if o.cli_only] == [
        "reload",
        "reload_dir",
        "loop",
    ]


def test_parser_flags_are_the_table_s() -> None:
    parser = cli.build_parser()
    found = {s for action in parser._actions for s in action.option_strings}
    expected = {f for o in OPTIONS for f in o.flags}
    assert found == expected | {"-h", "--help", "--version"}


def test_help_lists_every_environment_variable() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    for option in OPTIONS:
        assert f"[env: {option.env}]" in text, option.name


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"port": 70000}, "port: must be <= 65535, got 70000"),
        ({"port": "80"}, "port: expected an integer, got '80'"),
        ({"backlog": 0}, "backlog: must be >= 1, got 0"),
        ({"timeout_send": -1}, "timeout_send: must be a non-negative number, got -1"),
        ({"access_log": "no"}, "access_log: expected True or False, got 'no'"),
        ({"lifespan": "x"}, "lifespan: expected one of auto, on, off, got 'x'"),
        ({"root_path": "api"}, "root_path: must start with '/', got 'api'"),
        ({"headers": ["nocolon"]}, "headers: expected 'name:value', got 'nocolon'"),
        ({"headers": [("bad name", "v")]}, "headers: invalid header name 'bad name'"),
        ({"headers": [("X", "€")]}, "headers: header value for 'X' is not latin-1"),
        ({"headers": "x:y"}, "headers: expected a list of (name, value) pairs"),
        ({"forwarded_allow_ips": [1]}, "forwarded_allow_ips: expected strings, got 1"),
        ({"uds": "/tmp/s", "fd": 3}, "fd: cannot be combined with uds"),
        ({"asyncio_tasks": "yes"}, "asyncio_tasks: expected True or False, got 'yes'"),
    ],
)
def test_config_messages(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config("m:a", **kwargs)
    assert str(info.value) == message


def test_config_normalises_as_before() -> None:
    config = Config("m:a", root_path="/api/", timeout_keep_alive=2, uds=Path("/s"))
    assert config.root_path == "/api"
    assert config.timeout_keep_alive == 2.0
    assert isinstance(config.timeout_keep_alive, float)
    assert config.uds == "/s"
    assert Config("m:a", forwarded_allow_ips=" a, ,b ").trusted_hosts == ["a", "b"]


# ---------------------------------------------------------- engine options


def test_engine_options_are_the_table_s_engine_entries() -> None:
    # Which keys the Rust side reads is checked against Engine.OPTIONS below.
    expected = {o.name for o in OPTIONS if o.engine}
    assert set(Config(noop_app).engine_options()) == expected


def test_engine_options_values() -> None:
    config = Config(
        noop_app,
        headers=[("X-Test", "café")],
        forwarded_allow_ips="10.0.0.0/8, 127.0.0.1",
        timeout_send=3,
        limit_request_body=100,
    )
    options_ = config.engine_options()
    assert options_["headers"] == [(b"X-Test", b"caf\xe9")]
    assert options_["forwarded_allow_ips"] == ["10.0.0.0/8", "127.0.0.1"]
    assert options_["timeout_send"] == 3.0
    for name in [
        "timeout_keep_alive",
        "timeout_request_header",
        "timeout_request_body",
        "timeout_send",
    ]:
        assert isinstance(options_[name], float), name
    assert options_["limit_request_body"] == 100
    assert (options_["host"], options_["port"]) == ("127.0.0.1", 8000)
    assert options_["uds"] is None and options_["fd"] is None

    no_proxy = Config(noop_app, forwarded_allow_ips="*", proxy_headers=False)
    assert no_proxy.engine_options()["forwarded_allow_ips"] == []

    # A worker gets the parent's socket as fd while uds still names the file.
    worker = Config(noop_app, uds="/tmp/ferrule.sock")
    assert worker.engine_options()["uds"] == "/tmp/ferrule.sock"
    worker.fd = 7
    assert worker.engine_options()["uds"] is None
    assert worker.engine_options()["fd"] == 7


@pytest.mark.engine
def test_engine_reads_exactly_the_engine_options() -> None:
    from ferrule._ferrule import Engine

    assert set(Engine.OPTIONS) == set(Config(noop_app).engine_options())


# ------------------------------------------------------------------ README


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- options:start -->\n") + len("<!-- options:start -->\n")
    return text[start : text.index("<!-- options:end -->", start)]


def test_readme_table_is_generated_from_the_table() -> None:
    assert readme_block() == options.markdown_table(), (
        "README's options table is stale: replace the lines between the "
        "options markers with the output of `python -m ferrule.options`"
    )


def test_python_m_ferrule_options_prints_the_table(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrule.options"],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stderr == ""  # no runpy warning either
    assert result.stdout == options.markdown_table()


def test_markdown_table_has_a_row_per_option() -> None:
    rows = options.markdown_table().splitlines()[2:]
    assert len(rows) == len(OPTIONS) + 1  # and --version, --help
    for option, row in zip(OPTIONS, rows):
        assert row.startswith(f"| `{option.flag}")
        assert f"`{option.env}`" in row
    assert "`--lifespan auto\\|on\\|off`" in options.markdown_table()


# -------------------------------------------------- command line and env


def test_environment_variables_set_options() -> None:
    config = parse(
        environ={
            "FERRULE_PORT": "9001",
            "FERRULE_TIMEOUT_KEEP_ALIVE": "2.5",
            "FERRULE_ACCESS_LOG": "off",
            "FERRULE_FACTORY": "yes",
            "FERRULE_LIFESPAN": "on",
            "FERRULE_ROOT_PATH": "/api/",
            "FERRULE_HEADERS": "X-One: 1\nX-Two: a: b\n",
            "FERRULE_FORWARDED_ALLOW_IPS": "10.0.0.1",
            "FERRULE_ASYNCIO_TASKS": "TRUE",
        }
    )
    assert config.port == 9001
    assert config.timeout_keep_alive == 2.5
    assert config.access_log is False
    assert config.factory is True
    assert config.lifespan == "on"
    assert config.root_path == "/api"
    assert config.headers == [("X-One", "1"), ("X-Two", "a: b")]
    assert config.trusted_hosts == ["10.0.0.1"]
    assert config.asyncio_tasks is True


def test_flags_win_over_environment_variables() -> None:
    environ = {
        "FERRULE_PORT": "9001",
        "FERRULE_ACCESS_LOG": "0",
        "FERRULE_HEADERS": "X-Env: 1",
        "FERRULE_ASYNCIO_TASKS": "1",
    }
    config = parse(
        "--port",
        "9002",
        "--access-log",
        "--header",
        "X-Flag: 2",
        "--no-asyncio-tasks",
        environ=environ,
    )
    assert config.port == 9002
    assert config.access_log is True
    assert config.headers == [("X-Flag", "2")]
    assert config.asyncio_tasks is False


def test_no_flag_and_no_variable_is_config_s_default() -> None:
    config, default = parse(), Config("m:a")
    for option in OPTIONS:
        if not option.cli_only:
            assert getattr(config, option.name) == getattr(default, option.name)


def test_reload_options_from_the_environment() -> None:
    args = cli.build_parser().parse_args(["m:a"])
    settings = cli.resolve(
        args, {"FERRULE_RELOAD": "1", "FERRULE_RELOAD_DIR": "src:tests"}
    )
    assert settings.values["reload"] is True
    assert settings.values["reload_dir"] == ["src", "tests"]
    settings = cli.resolve(args, {})
    assert settings.values["reload"] is False
    assert list(settings.values["reload_dir"]) == []


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FERRULE_PORT", "70000"),
        ("FERRULE_PORT", "eighty"),
        ("FERRULE_BACKLOG", "0"),
        ("FERRULE_TIMEOUT_SEND", "-1"),
        ("FERRULE_ACCESS_LOG", "maybe"),
        ("FERRULE_LIFESPAN", "sometimes"),
        ("FERRULE_LOG_LEVEL", "loud"),
        ("FERRULE_HEADERS", "X-A: 1\nno-colon"),
        ("FERRULE_ROOT_PATH", "no-slash"),  # refused by Config, not the parser
        ("FERRULE_ASYNCIO_TASKS", "sometimes"),
    ],
)
def test_bad_environment_variable_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, err = call_main(capsys, "examples.hello:app")
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"ferrule: error: environment variable {variable}: ")


def test_bad_log_config_variable_names_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FERRULE_LOG_CONFIG", str(tmp_path / "nope.ini"))
    code, err = call_main(capsys, "examples.hello:app")
    assert code == 2
    assert one_line(err).startswith(
        "ferrule: error: environment variable FERRULE_LOG_CONFIG: "
    )


def test_cli_checks_header_values_as_latin_1() -> None:
    config = parse("--header", "X-Test: café")
    assert config.encoded_headers == [(b"X-Test", b"caf\xe9")]
    with pytest.raises(SystemExit):
        parse("--header", "X-Test: €")


def test_reloader_child_does_not_inherit_parent_only_variables() -> None:
    environ = {
        "FERRULE_RELOAD": "1",
        "FERRULE_RELOAD_DIR": "src",
        "FERRULE_WORKERS": "4",
        "FERRULE_HOST": "0.0.0.0",
        "FERRULE_PORT": "80",
        "FERRULE_UDS": "/tmp/s",
        "FERRULE_FD": "3",
        "FERRULE_ROOT_PATH": "/api",
        "PATH": "/bin",
    }
    assert child_env(environ) == {"FERRULE_ROOT_PATH": "/api", "PATH": "/bin"}


# ----------------------------------------------------------- asyncio_tasks


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, False),
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_asyncio_tasks_default_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is not None:
        monkeypatch.setenv("FERRULE_ASYNCIO_TASKS", value)
    assert Config(noop_app).asyncio_tasks is expected


def test_asyncio_tasks_argument_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FERRULE_ASYNCIO_TASKS", "1")
    assert Config(noop_app, asyncio_tasks=False).asyncio_tasks is False
    monkeypatch.setenv("FERRULE_ASYNCIO_TASKS", "0")
    assert Config(noop_app, asyncio_tasks=True).asyncio_tasks is True


def test_asyncio_tasks_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRULE_ASYNCIO_TASKS", "maybe")
    with pytest.raises(ConfigError) as info:
        Config(noop_app)
    assert info.value.option == "asyncio_tasks"
    assert "FERRULE_ASYNCIO_TASKS" in str(info.value)


def test_asyncio_tasks_flags() -> None:
    assert parse("--asyncio-tasks").asyncio_tasks is True
    assert parse("--no-asyncio-tasks").asyncio_tasks is False
    assert parse().asyncio_tasks is False


async def task_class_name(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    name = type(asyncio.current_task()).__name__.encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": name})


def get_body(served: Any) -> bytes:
    reply = fetch(served)
    assert reply.status == 200
    return reply.body


@pytest.mark.engine
@pytest.mark.timeout(30)
def test_asyncio_tasks_option_runs_requests_as_asyncio_tasks(serve: Any) -> None:
    assert get_body(serve(task_class_name, asyncio_tasks=True)) == b"Task"
    assert get_body(serve(task_class_name, asyncio_tasks=False)) == b"RequestTask"


# ---------------------------------------------------------- header bytes


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.mark.engine
@pytest.mark.timeout(30)
def test_default_header_goes_out_as_latin_1(serve: Any) -> None:
    reply = fetch(serve(hello, headers=[("X-Test", "café")]))
    assert reply.status == 200
    assert b"\r\nX-Test: caf\xe9\r\n" in reply.raw
    assert "café".encode() not in reply.raw  # not UTF-8


def test_uvicorn_environment_variables_apply_after_ferrule_s_own():
    args = cli.build_parser().parse_args(["m:app"])
    environ = {
        "UVICORN_PORT": "9001",
        "UVICORN_HOST": "0.0.0.0",
        "FERRULE_HOST": "127.0.0.2",
        "UVICORN_RELOAD_DIRS": "/srv/a /srv/b",
        "UVICORN_PROXY_HEADERS": "false",
        "WEB_CONCURRENCY": "3",
    }
    settings = cli.resolve(args, environ)
    assert settings.values["port"] == 9001
    assert settings.values["host"] == "127.0.0.2", "FERRULE_* wins over UVICORN_*"
    assert settings.values["reload_dir"] == ["/srv/a", "/srv/b"]
    assert settings.values["proxy_headers"] is False
    assert settings.values["workers"] == 3


def test_a_flag_wins_over_uvicorn_s_variables_and_web_concurrency():
    args = cli.build_parser().parse_args(["m:app", "--workers", "2", "--port", "1"])
    environ = {"UVICORN_WORKERS": "5", "WEB_CONCURRENCY": "4", "UVICORN_PORT": "x"}
    settings = cli.resolve(args, environ)
    assert settings.values["workers"] == 2 and settings.values["port"] == 1


def test_a_bad_uvicorn_variable_names_itself():
    args = cli.build_parser().parse_args(["m:app"])
    with pytest.raises(cli.OptionError) as exc:
        cli.resolve(args, {"UVICORN_PORT": "eighty"})
    assert exc.value.source == "environment variable UVICORN_PORT"
