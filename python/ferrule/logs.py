"""Logging for ferrule: the ``ferrule.error`` and ``ferrule.access`` loggers.

Everything goes through the standard :mod:`logging` module:

* ``ferrule.error`` carries server messages (startup, shutdown, app tracebacks).
  It propagates to the ``ferrule`` logger, whose default handler writes to stderr.
* ``ferrule.access`` carries one line per response, written to stdout by its
  own handler.  Use :func:`log_access` (or :data:`ACCESS_FORMAT` with the same
  arguments) so the formatter can colour the status code on a terminal.

Default format (colours only when the stream is a TTY and ``NO_COLOR`` is unset)::

    INFO:     Ferrule running on http://127.0.0.1:8000 (Press CTRL+C to quit)
    INFO:     127.0.0.1:5555 - "GET / HTTP/1.1" 200 13B 0.4ms
"""

from __future__ import annotations

import importlib.util
import json
import logging
import logging.config
import os
import sys
from typing import IO, Any

__all__ = [
    "ACCESS_FORMAT",
    "AccessFormatter",
    "DefaultFormatter",
    "LOG_LEVELS",
    "TRACE_LOG_LEVEL",
    "access_logger",
    "error_logger",
    "log_access",
    "resolve_log_level",
    "setup_logging",
]

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

#: Arguments: client ("host:port"), method, path (with "?query" if any),
#: HTTP version ("1.1"), status (int), body bytes sent (int), duration in ms (float).
ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d %dB %.1fms'

error_logger = logging.getLogger("ferrule.error")
access_logger = logging.getLogger("ferrule.access")

# Marker set on the handlers ferrule installs, so a second setup replaces them.
_OWNED = "_ferrule_default_handler"

_RESET = "\x1b[0m"
_LEVEL_COLOURS: dict[int, str] = {
    TRACE_LOG_LEVEL: "\x1b[34m",  # blue
    logging.DEBUG: "\x1b[36m",  # cyan
    logging.INFO: "\x1b[32m",  # green
    logging.WARNING: "\x1b[33m",  # yellow
    logging.ERROR: "\x1b[31m",  # red
    logging.CRITICAL: "\x1b[91m",  # bright red
}
_STATUS_COLOURS: dict[int, str] = {
    1: "\x1b[97m",  # bright white
    2: "\x1b[32m",  # green
    3: "\x1b[33m",  # yellow
    4: "\x1b[31m",  # red
    5: "\x1b[91m",  # bright red
}
_BOLD = "\x1b[1m"


def resolve_log_level(level: str | int) -> int:
    """Turn a level name (``"info"``, ``"trace"``, ...) or number into a number."""
    if isinstance(level, bool):
        raise ValueError(f"invalid log level: {level!r}")
    if isinstance(level, int):
        if level < 0:
            raise ValueError(f"invalid log level: {level!r}")
        return level
    if isinstance(level, str):
        try:
            return LOG_LEVELS[level.strip().lower()]
        except KeyError:
            choices = ", ".join(LOG_LEVELS)
            raise ValueError(
                f"invalid log level: {level!r} (choose from {choices})"
            ) from None
    raise ValueError(f"invalid log level: {level!r}")


def stream_supports_colour(stream: IO[str] | None) -> bool:
    """True when ``stream`` is a terminal and the user did not set ``NO_COLOR``."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed or detached stream
        return False


class DefaultFormatter(logging.Formatter):
    """``LEVEL:    message``; the level name is coloured when ``use_colors``.

    ``use_colors=None`` decides with a TTY check of ``stream`` (by default
    stderr for this class, stdout for :class:`AccessFormatter`).  The format
    string may use ``%(levelprefix)s``: the level name, a colon and padding to a
    9-column field.
    """

    default_stream = "stderr"

    def __init__(
        self,
        fmt: str | None = "%(levelprefix)s %(message)s",
        datefmt: str | None = None,
        style: str = "%",
        use_colors: bool | None = None,
        *,
        stream: IO[str] | None = None,
    ) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)  # type: ignore[arg-type]
        if use_colors is None:
            if stream is None:
                stream = getattr(sys, self.default_stream, None)
            use_colors = stream_supports_colour(stream)
        self.use_colors = use_colors

    def _levelprefix(self, record: logging.LogRecord) -> str:
        name = record.levelname
        padding = " " * max(0, 8 - len(name))
        if self.use_colors:
            colour = _LEVEL_COLOURS.get(record.levelno)
            if colour:
                name = f"{colour}{name}{_RESET}"
        return f"{name}:{padding}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.__dict__["levelprefix"] = self._levelprefix(record)
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Access lines; on a terminal the status code is coloured by class.

    Records logged with :data:`ACCESS_FORMAT` expose their fields as attributes
    usable in a custom format string: ``client_addr``, ``method``, ``path``,
    ``http_version``, ``request_line``, ``status_code``, ``body_bytes`` and
    ``duration_ms``.
    """

    default_stream = "stdout"

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if record.msg == ACCESS_FORMAT and isinstance(args, tuple) and len(args) == 7:
            client, method, path, version, status, nbytes, ms = args
            request_line = f"{method} {path} HTTP/{version}"
            status_text = str(status)
            if self.use_colors and isinstance(status, int):
                colour = _STATUS_COLOURS.get(status // 100, "")
                status_text = f"{colour}{status}{_RESET}" if colour else status_text
                shown_line = f"{_BOLD}{request_line}{_RESET}"
                try:
                    record.message = (
                        f'{client} - "{shown_line}" {status_text} {nbytes}B {ms:.1f}ms'
                    )
                except (TypeError, ValueError):
                    pass  # odd argument types: keep the plain message
            extra = record.__dict__
            extra.setdefault("client_addr", client)
            extra.setdefault("method", method)
            extra.setdefault("path", path)
            extra.setdefault("http_version", version)
            extra.setdefault("request_line", request_line)
            extra.setdefault("status_code", status)
            extra.setdefault("body_bytes", nbytes)
            extra.setdefault("duration_ms", ms)
        return super().formatMessage(record)


def log_access(
    client: str,
    method: str,
    path: str,
    http_version: str,
    status: int,
    body_bytes: int,
    duration_ms: float,
) -> None:
    """Write one access line on ``ferrule.access`` (cheap no-op when disabled)."""
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(
            ACCESS_FORMAT,
            client,
            method,
            path,
            http_version,
            status,
            body_bytes,
            duration_ms,
        )


def _install_handler(
    logger: logging.Logger,
    stream: IO[str],
    formatter_cls: type[DefaultFormatter],
    fmt: str,
    use_colors: bool | None,
) -> None:
    """Replace ferrule's own default handler on ``logger``; keep anyone else's."""
    for handler in list(logger.handlers):
        if getattr(handler, _OWNED, False):
            logger.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_cls(fmt, use_colors=use_colors, stream=stream))
    setattr(handler, _OWNED, True)
    logger.addHandler(handler)


# ------------------------------------------------- uvicorn's logger names
#
# A logging configuration written for uvicorn configures the `uvicorn`,
# `uvicorn.error` and `uvicorn.access` loggers. When a --log-config sets one
# of them up (handlers or a level) and leaves ferrule's own alone, ferrule's
# logger hands each record to the uvicorn one instead of propagating it:
# the lines reach the handlers the config put there, once.

#: ferrule's logger -> the uvicorn loggers whose configuration it follows.
UVICORN_LOGGERS: dict[str, tuple[str, ...]] = {
    "ferrule.error": ("uvicorn.error", "uvicorn"),
    "ferrule.access": ("uvicorn.access",),
}
# uvicorn's formatter classes, for configs that name them when uvicorn is
# not installed: ferrule's take the same arguments.
_UVICORN_FORMATTERS = {
    "uvicorn.logging.DefaultFormatter": "ferrule.logs.DefaultFormatter",
    "uvicorn.logging.AccessFormatter": "ferrule.logs.AccessFormatter",
    "uvicorn.logging.ColourizedFormatter": "ferrule.logs.DefaultFormatter",
}
_UVICORN_ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'


class _ToUvicornLogger(logging.Handler):
    """Hands ferrule's records to a uvicorn logger, renamed (and access
    records in uvicorn's shape, so uvicorn's own AccessFormatter reads
    them)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        setattr(self, _OWNED, True)

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(self.target)
        if target.disabled or not target.isEnabledFor(record.levelno):
            return
        copy = logging.makeLogRecord(record.__dict__)
        copy.name = self.target
        args = record.args
        if record.msg == ACCESS_FORMAT and isinstance(args, tuple) and len(args) == 7:
            client, method, path, version, status, nbytes, ms = args
            copy.msg = _UVICORN_ACCESS_FORMAT
            copy.args = (client, method, path, version, status)
            # For formats naming the fields (uvicorn's or ferrule's).
            copy.__dict__.update(
                client_addr=client,
                method=method,
                path=path,
                http_version=version,
                request_line=f"{method} {path} HTTP/{version}",
                status_code=status,
                body_bytes=nbytes,
                duration_ms=ms,
            )
        target.handle(copy)


def _configured(name: str) -> bool:
    """The logging configuration set up this logger (handlers or a level)."""
    logger = logging.root.manager.loggerDict.get(name)
    return isinstance(logger, logging.Logger) and bool(
        logger.handlers or logger.level != logging.NOTSET
    )


def _follow_uvicorn_loggers(log_config_loaded: bool) -> None:
    """After a --log-config: route ferrule's records to the uvicorn loggers it
    configured (see :data:`UVICORN_LOGGERS`). Without one: no routing."""
    for name, targets in UVICORN_LOGGERS.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, _ToUvicornLogger):
                logger.removeHandler(handler)
        if not log_config_loaded or _configured(name):
            continue  # the config says what ferrule's logger does
        target = next((t for t in targets if _configured(t)), None)
        if target is None:
            continue
        logger.addHandler(_ToUvicornLogger(targets[0]))
        logger.propagate = False
        # A uvicorn config's "disable_existing_loggers": true names no
        # ferrule logger: it must not silence them.
        logger.disabled = False


def _uvicorn_formatters(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with uvicorn's formatter classes replaced by ferrule's when
    uvicorn cannot be imported."""
    formatters = config.get("formatters")
    if not isinstance(formatters, dict):
        return config
    if importlib.util.find_spec("uvicorn") is not None:
        return config
    replaced = {}
    for key, spec in formatters.items():
        if isinstance(spec, dict):
            spec = {
                k: _UVICORN_FORMATTERS.get(v, v) if k in ("()", "class") else v
                for k, v in spec.items()
            }
        replaced[key] = spec
    return {**config, "formatters": replaced}


def _load_log_config(log_config: dict[str, Any] | str | os.PathLike[str]) -> None:
    if isinstance(log_config, dict):
        config = _uvicorn_formatters(dict(log_config))
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
        return
    path = os.fspath(log_config)
    if not os.path.isfile(path):
        raise ValueError(f"log config file not found: {path}")
    lower = path.lower()
    if lower.endswith(".json"):
        with open(path, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if not isinstance(loaded, dict):
            raise ValueError(f"log config {path}: expected a JSON object")
        _load_log_config(loaded)
    elif lower.endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ValueError(
                f"log config {path}: YAML needs PyYAML (pip install pyyaml)"
            ) from None
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
        if not isinstance(loaded, dict):
            raise ValueError(f"log config {path}: expected a mapping")
        _load_log_config(loaded)
    else:
        # .ini, .conf, .cfg or any other name: the configparser format.
        logging.config.fileConfig(path, disable_existing_loggers=False)


def setup_logging(
    log_level: str | int = "info",
    access_log: bool = True,
    log_config: dict[str, Any] | str | os.PathLike[str] | None = None,
    use_colors: bool | None = None,
) -> None:
    """Configure ``ferrule``, ``ferrule.error`` and ``ferrule.access``.

    Safe to call more than once: ferrule's own handlers are replaced, never
    stacked, and handlers added by the user are left alone.

    * ``log_config=None``: default handlers (errors to stderr, access to stdout).
    * a ``dict``: :func:`logging.config.dictConfig` (``version`` defaults to 1 and
      ``disable_existing_loggers`` to False); a ``.json`` path is loaded into
      one; a ``.yaml``/``.yml`` path too when PyYAML is installed; any other path
      goes to :func:`logging.config.fileConfig` (``.ini`` format).
    * ``log_level`` is then applied to the three ferrule loggers.
    * ``access_log=False`` drops ``ferrule.access`` output entirely.

    Raises ``ValueError`` for a bad level or an unreadable config.
    """
    level = resolve_log_level(log_level)
    root = logging.getLogger("ferrule")
    if log_config is None:
        _install_handler(
            root,
            sys.stderr,
            DefaultFormatter,
            "%(levelprefix)s %(message)s",
            use_colors,
        )
        root.propagate = False
        error_logger.propagate = True
        _install_handler(
            access_logger,
            sys.stdout,
            AccessFormatter,
            "%(levelprefix)s %(message)s",
            use_colors,
        )
        access_logger.propagate = False
    else:
        # What a previous setup put on ferrule's loggers goes, so what is
        # there afterwards is the config's (see _configured).
        for logger in (root, error_logger, access_logger):
            for handler in list(logger.handlers):
                if getattr(handler, _OWNED, False):
                    logger.removeHandler(handler)
            if logger is not root:
                logger.setLevel(logging.NOTSET)
        try:
            _load_log_config(log_config)
        except ValueError as exc:  # dictConfig raises ValueError with context
            raise ValueError(f"invalid log config: {exc}") from exc
        except Exception as exc:  # fileConfig raises KeyError, OSError, ...
            raise ValueError(f"invalid log config: {exc!r}") from exc
    _follow_uvicorn_loggers(log_config is not None)

    root.setLevel(level)
    error_logger.setLevel(level)
    access_logger.setLevel(level)
    access_logger.disabled = not access_log
