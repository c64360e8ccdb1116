"""``--reload``: restart the server when the code changes (for development).

The parent binds the listening socket once and never imports the app. It
runs the server in a fresh child process (``python -m ferrule ... --fd N``)
so each restart imports the code anew, watches the directories (with
watchfiles' kernel notifications when it is installed, else by polling
modification times every ``--reload-delay`` seconds), and on a change to a
file that counts (:class:`FileFilter`: ``--reload-include`` /
``--reload-exclude``, uvicorn's rules) stops the child (SIGTERM, graceful)
and starts another on the same socket: clients see no refused connection
across a reload.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

from .config import Config
from .options import OPTIONS, RELOAD_EXCLUDES, RELOAD_INCLUDES
from ._sockets import announce, bind, remove_uds, startup_failure

logger = logging.getLogger("ferrule.error")

# Flags that only the parent acts on; the child gets `--fd` instead. The
# parent loaded --env-file into the environment the child inherits: loaded
# again there, it would bring back the parent-only variables (FERRULE_RELOAD).
_PARENT_ONLY = {
    "--env-file": 1,
    "--reload": 0,
    "--reload-dir": 1,
    "--reload-include": 1,
    "--reload-exclude": 1,
    "--reload-delay": 1,
    "--workers": 1,
    "--host": 1,
    "--port": 1,
    "--uds": 1,
    "--fd": 1,
}


def child_argv(argv: list[str], fd: int) -> list[str]:
    """The command line for the child: the user's, minus the flags the
    parent handles, plus the inherited socket."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in _PARENT_ONLY:
            skip = 0 if "=" in arg else _PARENT_ONLY[name]
            continue
        out.append(arg)
    return [sys.executable, "-m", "ferrule", *out, "--fd", str(fd)]


# The environment variables of those options: a child reading FERRULE_RELOAD
# would reload again, FERRULE_UDS would clash with its --fd.
_PARENT_ONLY_ENV = frozenset(o.env for o in OPTIONS if o.flag in _PARENT_ONLY)


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the child: the parent's, minus the variables of
    the options the parent handles (as :func:`child_argv` drops their flags)."""
    return {k: v for k, v in environ.items() if k not in _PARENT_ONLY_ENV}


class FileFilter:
    """Which changed files restart the server, with uvicorn's rules.

    A file counts when its path matches an include pattern and no exclude
    pattern, and it is not under an excluded directory; a file named by an
    include pattern itself always counts. The defaults (``*.py`` included;
    ``.*``, ``.py[cod]``, ``.sw.*``, ``~*`` excluded) give way to a user
    pattern that names them on the other side: ``--reload-exclude '*.py'``
    drops ``*.py`` from the includes, and vice versa.
    """

    def __init__(self, includes: list[str], excludes: list[str]) -> None:
        self.includes = _unique(
            [p for p in RELOAD_INCLUDES if p not in excludes] + includes
        )
        self.excludes = [p for p in RELOAD_EXCLUDES if p not in includes]
        self.exclude_dirs: list[Path] = []
        for pattern in excludes:
            if _is_dir(Path(pattern)):
                self.exclude_dirs.append(Path(pattern).resolve())
            else:
                self.excludes.append(pattern)
        self.excludes = _unique(self.excludes)

    def __call__(self, path: Path) -> bool:
        for include in self.includes:
            if not path.match(include):
                continue
            if str(path).endswith(include):
                return True
            if any(d in path.parents for d in self.exclude_dirs):
                return False
            return not any(path.match(e) for e in self.excludes)
        return False

    def skips_dir(self, path: Path) -> bool:
        """The polling watcher does not descend here: an excluded directory,
        or one whose name an exclude pattern matches (``.git``, ``.venv``)."""
        return path in self.exclude_dirs or any(path.match(e) for e in self.excludes)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def watched_dirs(
    dirs: list[str], includes: list[str], excludes: list[str], cwd: Path | None = None
) -> list[Path]:
    """The directories to watch, as uvicorn picks them: ``--reload-dir``
    ones, plus include patterns naming directories (or globs matching some
    under the current one), minus excluded directories and their children,
    without a directory that is inside another; the current directory when
    none is left."""
    cwd = Path.cwd() if cwd is None else cwd
    found = [Path(d) for d in dirs]
    for pattern in includes:
        if pattern == ".*":  # would match every hidden directory
            continue
        if _is_dir(Path(pattern)):
            found.append(Path(pattern))
        else:
            found.extend(m for m in cwd.glob(pattern) if _is_dir(m))
    resolved = {d.resolve() for d in found if _is_dir(d)}
    excluded = {Path(e).resolve() for e in excludes if _is_dir(Path(e))}
    resolved = {
        d for d in resolved if not any(x == d or x in d.parents for x in excluded)
    }
    outer = sorted(d for d in resolved if not any(o in d.parents for o in resolved))
    return outer or [cwd.resolve()]


class PollingWatcher:
    """Stat the watched files every ``delay`` seconds (without watchfiles)."""

    name = "polling"

    def __init__(
        self, dirs: list[Path], accept: FileFilter, delay: float, stop: threading.Event
    ) -> None:
        self.dirs = dirs
        self.accept = accept
        self.delay = delay
        self.stop = stop
        self.seen = self._snapshot()

    def _snapshot(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for top in self.dirs:
            for root, subdirs, files in os.walk(top):
                base = Path(root)
                subdirs[:] = [d for d in subdirs if not self.accept.skips_dir(base / d)]
                for name in files:
                    path = base / name
                    if not self.accept(path):
                        continue
                    try:
                        mtimes[path] = path.stat().st_mtime
                    except OSError:
                        pass
        return mtimes

    def changes(self) -> list[Path]:
        """Waits ``delay``; the files changed, added or removed since the last call."""
        if self.stop.wait(self.delay):
            return []
        now = self._snapshot()
        changed = [p for p, m in now.items() if self.seen.get(p) != m]
        changed += [p for p in self.seen if p not in now]
        self.seen = now
        return changed


class WatchfilesWatcher:
    """Kernel notifications (inotify) through watchfiles: no polling.

    watchfiles starts watching at the first ``next()`` of its generator, so a
    thread runs it from the start (a change made while the first child
    starts is not lost) and hands the batches over.
    """

    name = "WatchFiles"

    def __init__(
        self, dirs: list[Path], accept: FileFilter, delay: float, stop: threading.Event
    ) -> None:
        import watchfiles

        self.accept = accept
        self.delay = delay
        self.stop = stop
        self._batches: queue.Queue[set[tuple[Any, str]]] = queue.Queue()
        changes = watchfiles.watch(
            *dirs,
            watch_filter=None,
            stop_event=stop,
            ignore_permission_denied=True,
        )
        self._thread = threading.Thread(
            target=self._pump, args=(changes,), name="ferrule-reload", daemon=True
        )
        self._thread.start()

    def _pump(self, changes: Iterator[set[tuple[Any, str]]]) -> None:
        for batch in changes:
            self._batches.put(batch)

    def changes(self) -> list[Path]:
        """Waits ``delay``, then (up to a second) for changes; the files
        among them that count."""
        if self.stop.wait(self.delay):
            return []
        try:
            batch = set(self._batches.get(timeout=1.0))
        except queue.Empty:
            return []
        while not self._batches.empty():
            batch |= self._batches.get_nowait()
        return sorted(p for p in {Path(c[1]) for c in batch} if self.accept(p))


Watcher = Union[PollingWatcher, WatchfilesWatcher]


def make_watcher(
    dirs: list[Path],
    accept: FileFilter,
    delay: float,
    stop: threading.Event,
    use_watchfiles: bool | None = None,
) -> Watcher:
    """A watchfiles watcher when watchfiles imports (``use_watchfiles=None``)
    or when asked for (True), else the polling one."""
    if use_watchfiles is None:
        try:
            return WatchfilesWatcher(dirs, accept, delay, stop)
        except ImportError:
            return PollingWatcher(dirs, accept, delay, stop)
    if use_watchfiles:
        return WatchfilesWatcher(dirs, accept, delay, stop)
    return PollingWatcher(dirs, accept, delay, stop)


class Reloader:
    def __init__(
        self,
        config: Config,
        argv: list[str],
        dirs: list[str],
        use_watchfiles: bool | None = None,
    ) -> None:
        self.config = config
        self.argv = argv
        includes, excludes = config.reload_includes, config.reload_excludes
        self.dirs = watched_dirs(dirs, includes, excludes)
        self.filter = FileFilter(includes, excludes)
        self.use_watchfiles = use_watchfiles
        self.should_exit = False
        self._stop = threading.Event()

    def run(self) -> int:
        try:
            sock = bind(self.config)
        except OSError as exc:
            return startup_failure(self.config, exc)
        os.set_inheritable(sock.fileno(), True)
        logger.info(
            "Will watch for changes in these directories: %s",
            [str(d) for d in self.dirs],
        )
        announce(sock, "https" if self.config.is_ssl else "http")

        def stop(signum: int, frame: object) -> None:
            self.should_exit = True
            self._stop.set()

        previous = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        cmd = child_argv(self.argv, sock.fileno())
        env = child_env(os.environ)
        child: subprocess.Popen[bytes] | None = None
        try:
            watcher = make_watcher(
                self.dirs,
                self.filter,
                self.config.reload_delay,
                self._stop,
                self.use_watchfiles,
            )
            logger.info(
                "Started reloader process [%d] using %s", os.getpid(), watcher.name
            )
            child = subprocess.Popen(cmd, pass_fds=(sock.fileno(),), env=env)
            while not self.should_exit:
                changed = watcher.changes()
                if changed and not self.should_exit:
                    logger.warning(
                        "Detected changes in %s. Reloading...",
                        ", ".join(sorted({str(p) for p in changed})[:5]),
                    )
                    _stop_child(child)
                    child = subprocess.Popen(cmd, pass_fds=(sock.fileno(),), env=env)
        finally:
            self._stop.set()  # ends the watchfiles thread
            if child is not None:
                _stop_child(child)
            sock.close()
            remove_uds(self.config)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("Stopping reloader process [%d]", os.getpid())
        return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
