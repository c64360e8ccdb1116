"""--env-file: KEY=VALUE lines loaded into the environment before the app
is imported and before ferrule's own options read it; variables already set
win (python-dotenv's default, which uvicorn uses); a missing file is one
line and exit status 2 (click's exists=True in uvicorn)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferrule._envfile import EnvFileError, load_env_file, parse_env
from ferrule import Config, ConfigError

ENV = textwrap.dedent(
    r"""
    # a comment, then a blank line

    PLAIN=value
    export EXPORTED=yes
    SPACED = around equals   # and a comment
    SINGLE='kept \n as $PLAIN'
    DOUBLE="line one\nline two \"quoted\""
    MULTI="first
    second"
    EXPANDED=${PLAIN}-${MISSING:-fallback}
    EMPTY=
    HASH=a#b
    ALREADY=from the file
    ONLY_A_KEY
    """
)


def test_the_formats_of_an_env_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(ENV)
    environ = {"ALREADY": "from the environment"}
    added = load_env_file(path, environ)
    assert environ == {
        "ALREADY": "from the environment",  # set before: wins
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "around equals",
        "SINGLE": "kept \\n as $PLAIN",
        "DOUBLE": 'line one\nline two "quoted"',
        "MULTI": "first\nsecond",
        "EXPANDED": "value-fallback",
        "EMPTY": "",
        "HASH": "a#b",
    }
    assert "ALREADY" not in added and "ONLY_A_KEY" not in environ


@pytest.mark.parametrize("text", ["=nokey\n", 'A="unterminated\n', "A='x' trailing\n", "1A=x\n"])
def test_unreadable_lines_name_the_line(text: str) -> None:
    with pytest.raises(EnvFileError, match="line 1"):
        parse_env(text)


def test_config_env_file_loads_before_options_read_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FORWARDED_ALLOW_IPS", "FERRULE_TEST_ENV_FILE_MARK"):
        # Recorded as absent, so teardown removes what the file sets.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    path = tmp_path / ".env"
    path.write_text("FORWARDED_ALLOW_IPS=10.1.2.3\nFERRULE_TEST_ENV_FILE_MARK=1\n")
    config = Config("m:a", env_file=path)
    assert config.trusted_hosts == ["10.1.2.3"]
    with pytest.raises(ConfigError, match="env_file: file .* does not exist"):
        Config("m:a", env_file=tmp_path / "missing.env")


@pytest.mark.engine
def test_cli_env_file_sets_the_app_s_and_ferrule_s_variables(
    run_cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "envapp.py").write_text(textwrap.dedent("""
        import os
        GREETING = os.environ["GREETING"]  # read at import time

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            body = f"{GREETING}|{os.environ['KEPT']}".encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        """))
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "GREETING='hello from the file'\n"
        "KEPT=file\n"
        "FERRULE_HEADERS=X-From-Env-File: 1\n"
        "FERRULE_ACCESS_LOG=off\n"
    )
    server = run_cli(
        "--env-file", str(env_file), "--app-dir", str(tmp_path), "envapp:app",
        env={"KEPT": "environment"},
    )
    response = httpx.get(server.url + "/")
    assert response.text == "hello from the file|environment"
    assert response.headers["x-from-env-file"] == "1"
    assert f"Loading environment from '{env_file}'" in server.output


def test_cli_missing_env_file_is_one_line_exit_2(
    ferrule_cmd: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.env"
    r = subprocess.run(
        [*ferrule_cmd, "--env-file", str(missing), "examples.hello:app"],
        env=cli_env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2
    assert r.stderr == f"ferrule: error: argument --env-file: file '{missing}' does not exist\n"
