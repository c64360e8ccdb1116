"""--reload's file rules (uvicorn's --reload-include/--reload-exclude
semantics) and both watchers, watchfiles' and the polling fallback, on a
real `ferrule --reload` process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferrule.reloader import FileFilter, watched_dirs

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


# ----------------------------------------------------------------- rules


def test_default_rules_take_python_files_and_skip_hidden_and_compiled(tmp_path: Path) -> None:
    accept = FileFilter([], [])
    assert accept(tmp_path / "app.py")
    assert accept(tmp_path / "pkg" / "mod.py")
    assert not accept(tmp_path / "notes.txt")
    assert not accept(tmp_path / "app.pyc")
    assert not accept(tmp_path / ".hidden.py")
    assert not accept(tmp_path / "~backup.py")


def test_an_include_removes_the_same_default_exclude_and_vice_versa(tmp_path: Path) -> None:
    # ".*" included: hidden files count again; "*.py" excluded: no Python file does.
    accept = FileFilter([".*", "*.txt"], ["*.py"])
    assert accept(tmp_path / ".env")
    assert accept(tmp_path / "notes.txt")
    assert not accept(tmp_path / "app.py")


def test_an_excluded_directory_hides_its_files(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    accept = FileFilter([], [str(tmp_path / "build")])
    assert not accept(tmp_path / "build" / "gen.py")
    assert accept(tmp_path / "src.py")


def test_watched_dirs_add_include_directories_and_drop_excluded_ones(tmp_path: Path) -> None:
    for name in ("src", "src/inner", "templates", "build"):
        (tmp_path / name).mkdir()
    dirs = watched_dirs(
        [str(tmp_path / "src"), str(tmp_path / "src" / "inner"), str(tmp_path / "build")],
        ["templates"],
        [str(tmp_path / "build")],
        cwd=tmp_path,
    )
    # "inner" is inside "src"; "templates" is a directory named by an include.
    assert dirs == [tmp_path / "src", tmp_path / "templates"]
    assert watched_dirs([], [], [], cwd=tmp_path) == [tmp_path]


def test_the_child_does_not_load_the_env_file_again() -> None:
    from ferrule.reloader import child_argv, child_env

    argv = ["m:app", "--reload", "--env-file", ".env", "--reload-include", "*.txt"]
    assert child_argv(argv, 5)[3:] == ["m:app", "--fd", "5"]
    env = child_env({"FERRULE_ENV_FILE": ".env", "FERRULE_RELOAD": "1", "APP_VAR": "x"})
    assert env == {"APP_VAR": "x"}


# ------------------------------------------------------ a real reloader


def _body(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(url + "/").text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.engine
@pytest.mark.timeout(60)
@pytest.mark.parametrize("watcher", ["WatchFiles", "polling"])
def test_included_change_restarts_excluded_change_does_not(
    run_cli: Any, tmp_path: Path, watcher: str
) -> None:
    env = None
    if watcher == "WatchFiles":
        pytest.importorskip("watchfiles")
    else:
        # A watchfiles that cannot be imported: the fallback must take over.
        shadow = tmp_path / "shadow"
        shadow.mkdir()
        (shadow / "watchfiles.py").write_text("raise ImportError('hidden by the test')\n")
        import os

        env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    code = tmp_path / "code"
    code.mkdir()
    module = code / "reloadme.py"
    module.write_text(APP.replace("VERSION", "v1"))
    (code / "skipped_settings.py").write_text("X = 1\n")
    (code / "data.txt").write_text("one\n")
    proc = run_cli(
        "--reload", "--reload-dir", str(code), "--app-dir", str(code),
        "--reload-include", "*.txt", "--reload-exclude", "skipped_*.py",
        "--reload-delay", "0.1", "--no-access-log", "reloadme:app",
        env=env,
    )
    wait_for_output(proc, f"using {watcher}")
    assert _body(proc.url) == "v1"

    # A change to the app's module restarts it on the new code.
    module.write_text(APP.replace("VERSION", "v2"))
    deadline = time.monotonic() + 10
    while _body(proc.url) != "v2":
        assert time.monotonic() < deadline, proc.output
        time.sleep(0.05)

    # A change to an excluded file does not.
    reloads = proc.output.count("Reloading")
    (code / "skipped_settings.py").write_text("X = 2\n")
    time.sleep(1.0)
    assert proc.output.count("Reloading") == reloads, proc.output

    # An included non-Python file does.
    (code / "data.txt").write_text("two\n")
    wait_for_output(proc, "data.txt. Reloading")


def wait_for_output(proc: Any, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in proc.output:
        assert time.monotonic() < deadline, proc.output
        time.sleep(0.05)
