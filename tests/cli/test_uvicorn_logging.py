"""A logging configuration written for uvicorn keeps working: when a
--log-config sets up the `uvicorn`, `uvicorn.error` or `uvicorn.access`
loggers (and not ferrule's), ferrule's lines go through them, once; and a
YAML config without PyYAML is one line and exit status 2, not a traceback."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferrule import Config, logs

# uvicorn's own LOGGING_CONFIG shape (uvicorn/config.py), with formats that
# mark which handler wrote a line.
UVICORN_STYLE: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": True,
    "formatters": {
        "default": {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "UVERR %(levelprefix)s %(name)s %(message)s",
            "use_colors": False,
        },
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": 'UVACC %(client_addr)s - "%(request_line)s" %(status_code)s',
            "use_colors": False,
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


@pytest.fixture
def clean_logging() -> Iterator[None]:
    names = ["", "ferrule", "ferrule.error", "ferrule.access", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled


def test_uvicorn_dict_config_gets_error_and_access_lines_once(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Config("m:a", log_config=UVICORN_STYLE).setup_logging()
    logging.getLogger("ferrule.error").info("started")
    logs.log_access("1.2.3.4:5", "GET", "/x?y=1", "1.1", 404, 9, 1.5)
    out, err = capsys.readouterr()
    assert err == "UVERR INFO:     uvicorn.error started\n"
    assert out == 'UVACC 1.2.3.4:5 - "GET /x?y=1 HTTP/1.1" 404\n'


def test_uvicorn_logger_levels_and_access_log_off_apply(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(json.dumps(UVICORN_STYLE))
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    Config("m:a", log_config=config, access_log=False).setup_logging()
    logging.getLogger("ferrule.error").info("quiet")
    logging.getLogger("ferrule.error").warning("loud")
    logs.log_access("1.2.3.4:5", "GET", "/", "1.1", 200, 1, 0.1)
    out, err = capsys.readouterr()
    assert err == "UVERR WARNING:  uvicorn.error loud\n" and out == ""


def test_a_config_naming_ferrule_s_loggers_is_used_as_written(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(json.dumps(UVICORN_STYLE))
    config["loggers"]["ferrule.error"] = {"handlers": ["default"], "propagate": False}
    Config("m:a", log_config=config).setup_logging()
    logging.getLogger("ferrule.error").info("mine")
    assert capsys.readouterr().err == "UVERR INFO:     ferrule.error mine\n"


def test_uvicorn_ini_config(clean_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "logging.conf"
    path.write_text(textwrap.dedent("""
        [loggers]
        keys=root,uvicorn,access
        [handlers]
        keys=err,out
        [formatters]
        keys=plain
        [logger_root]
        handlers=
        [logger_uvicorn]
        handlers=err
        qualname=uvicorn.error
        propagate=0
        [logger_access]
        handlers=out
        level=INFO
        qualname=uvicorn.access
        propagate=0
        [handler_err]
        class=StreamHandler
        formatter=plain
        args=(sys.stderr,)
        [handler_out]
        class=StreamHandler
        formatter=plain
        args=(sys.stdout,)
        [formatter_plain]
        format=ini|%(name)s|%(message)s
        """))
    Config("m:a", log_config=str(path)).setup_logging()
    logging.getLogger("ferrule.error").warning("w")
    logs.log_access("1.2.3.4:5", "GET", "/", "1.1", 200, 1, 0.1)
    out, err = capsys.readouterr()
    assert err == "ini|uvicorn.error|w\n"
    assert out == 'ini|uvicorn.access|1.2.3.4:5 - "GET / HTTP/1.1" 200\n'


@pytest.mark.engine
def test_cli_with_a_uvicorn_yaml_log_config(run_cli: Any, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "log.yaml"
    path.write_text(yaml.safe_dump(UVICORN_STYLE))
    server = run_cli("examples.hello:app", "--log-config", str(path))
    assert httpx.get(server.url + "/hello?x=1").status_code == 200
    deadline = time.monotonic() + 5
    line = 'UVACC 127.0.0.1:'
    while line not in "".join(server.stdout_lines):
        assert time.monotonic() < deadline, server.output
        time.sleep(0.05)
    stdout = "".join(server.stdout_lines)
    assert '"GET /hello?x=1 HTTP/1.1" 200' in stdout and stdout.count("UVACC") == 1
    assert "UVERR INFO:     uvicorn.error Ferrule running on" in "".join(server.stderr_lines)


def test_yaml_log_config_without_pyyaml_is_one_line_exit_2(
    ferrule_cmd: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "yaml.py").write_text("raise ImportError('hidden by the test')\n")
    cli_env["PYTHONPATH"] = f"{shadow}:{cli_env['PYTHONPATH']}"
    path = tmp_path / "log.yaml"
    path.write_text("version: 1\n")
    r = subprocess.run(
        [*ferrule_cmd, "--log-config", str(path), "examples.hello:app"],
        env=cli_env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "PyYAML" in r.stderr and str(path) in r.stderr
