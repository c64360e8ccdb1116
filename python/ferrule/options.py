"""Every server option, defined once.

:data:`OPTIONS` is the table the rest is derived from:

* :class:`~ferrule.config.Config` checks each keyword argument with its
  entry's ``check`` (a test keeps ``Config.__init__``'s parameters and
  defaults equal to the table's);
* the command line (:func:`ferrule.cli.build_parser`) has one flag per entry,
  and reads the entry's environment variable when the flag is not given;
* :meth:`Config.engine_options` builds the Rust engine's options from the
  entries marked ``engine``;
* README's table of options is :func:`markdown_table` (``python -m
  ferrule.options`` prints it; a test keeps README equal to it).

A rule is one function: ``check(value)`` returns the value to keep (possibly
normalised) or raises :class:`Invalid` saying what is wrong; each caller adds
the value as its user wrote it (``got 0`` from Python, ``got '0'`` from a flag
or an environment variable).
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from . import logs

__all__ = [
    "BY_NAME",
    "ENGINE_OPTIONS",
    "Invalid",
    "INTERFACES",
    "LIFESPAN_MODES",
    "OPTIONS",
    "Option",
    "RELOAD_EXCLUDES",
    "RELOAD_INCLUDES",
    "HTTP_MODES",
    "WS_PROTOCOLS",
    "http_mode",
    "markdown_table",
    "parse_bool",
]

LIFESPAN_MODES: tuple[str, ...] = ("auto", "on", "off")
INTERFACES: tuple[str, ...] = ("auto", "asgi3", "asgi2", "wsgi")
WS_PROTOCOLS: tuple[str, ...] = (
    "auto",
    "none",
    "websockets",
    "websockets-sansio",
    "wsproto",
)
#: --http: ferrule's modes first, then uvicorn's names (h11 and httptools
#: mean HTTP/1.1 only, zttp HTTP/1.1 and HTTP/2: as auto). uvicorn also
#: takes a protocol class's import path (``module:Class``): accepted, as
#: auto, with a notice.
HTTP_MODES: tuple[str, ...] = ("auto", "h1", "h2", "h11", "httptools", "zttp")


def _http(value: Any) -> str:
    if value in HTTP_MODES or (isinstance(value, str) and ":" in value):
        result: str = value
        return result
    raise Invalid("expected one of " + ", ".join(HTTP_MODES) + " (or module:Class)")


#: uvicorn's --reload-include/--reload-exclude defaults.
RELOAD_INCLUDES: tuple[str, ...] = ("*.py",)
RELOAD_EXCLUDES: tuple[str, ...] = (".*", ".py[cod]", ".sw.*", "~*")

#: Check a Python value: return the value to keep, or raise :class:`Invalid`.
Check = Callable[[Any], Any]
#: Turn the text of a flag or environment variable into a Python value.
Parse = Callable[[str], Any]
#: How the option looks on the command line: ``--x VALUE``, a bare ``--x``
#: switch, or a ``--x/--no-x`` toggle.
Style = Literal["value", "switch", "toggle"]


class Invalid(ValueError):
    """What is wrong with a value (``"must be >= 1"``), without the value:
    :meth:`message` adds it as the caller saw it.  ``complete``: the problem
    already names the value (an item of a list, say)."""

    def __init__(self, problem: str, *, complete: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.complete = complete

    def message(self, shown: object) -> str:
        return self.problem if self.complete else f"{self.problem}, got {shown!r}"


# ------------------------------------------------------------------ checks


def _integer(
    *, minimum: int | None = None, maximum: int | None = None, optional: bool = False
) -> Check:
    def check(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("expected an integer")
        if minimum is not None and value < minimum:
            raise Invalid(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise Invalid(f"must be <= {maximum}")
        return value

    return check


def _seconds(*, optional: bool = False) -> Check:
    def check(value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid("expected a number of seconds")
        if not value >= 0:  # also rejects NaN
            raise Invalid("must be a non-negative number")
        # Always a float: the engine takes seconds as a float.
        return float(value)

    return check


def _boolean(*, optional: bool = False) -> Check:
    def check(value: Any) -> bool | None:
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise Invalid("expected True or False")
        return value

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise Invalid("expected one of " + ", ".join(choices))
        result: str = value
        return result

    return check


def _path(what: str) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise Invalid(f"expected {what}")
        return os.fspath(value)

    return check


def _existing_file(value: Any) -> str | None:
    """A file that must exist now (``--env-file``: click's ``exists=True``)."""
    path: str | None = _path("a file path")(value)
    if path is not None and not os.path.isfile(path):
        raise Invalid(f"file {path!r} does not exist", complete=True)
    return path


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise Invalid("expected a string")
    return value


def _patterns(value: Any) -> list[str]:
    """Glob patterns (or directories) for the reloader: a string or a list."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, Iterable):
        raise Invalid("expected a list of glob patterns")
    result = []
    for item in value:
        if not isinstance(item, (str, os.PathLike)):
            raise Invalid(f"expected a glob pattern, got {item!r}", complete=True)
        result.append(os.fspath(item))
    return result


def _any_text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("expected a host name or address")
    return value


def _metrics_bind(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("expected HOST:PORT")
    from .metrics import parse_bind

    try:
        parse_bind(value)
    except ValueError:
        raise Invalid("expected HOST:PORT") from None
    return value


def _root_path(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    if value and not value.startswith("/"):
        raise Invalid("must start with '/'")
    return value.rstrip("/")


def _log_level(value: Any) -> str | int:
    try:
        logs.resolve_log_level(value)
    except ValueError as exc:
        raise Invalid(str(exc), complete=True) from None
    result: str | int = value
    return result


def _log_config(value: Any) -> Any:
    if value is not None and not isinstance(value, (dict, str, os.PathLike)):
        raise Invalid("expected a dict or a file path")
    return value


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _header(item: Any) -> tuple[str, str]:
    """One header: ``"name: value"`` (the text of ``--header``) or a pair."""
    if isinstance(item, str):
        name, sep, value = item.partition(":")
        if not sep:
            raise Invalid("expected 'name:value'")
        name, value = name.strip(), value.strip()
    else:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise Invalid("expected a (name, value) pair") from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise Invalid("name and value must be strings")
    if not name or not set(name) <= _TOKEN_CHARS:
        raise Invalid(f"invalid header name {name!r}", complete=True)
    if any(ch in value for ch in "\r\n\0"):
        raise Invalid(f"invalid header value for {name!r}", complete=True)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise Invalid(
            f"header value for {name!r} is not latin-1", complete=True
        ) from None
    return name, value


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise Invalid("expected a list of (name, value) pairs", complete=True)
    if not isinstance(value, Iterable):
        raise Invalid("expected a list of (name, value) pairs")
    result = []
    for item in value:
        try:
            result.append(_header(item))
        except Invalid as exc:
            # Name the item, not the whole list.
            raise Invalid(exc.message(item), complete=True) from None
    return result


def _binds(value: Any) -> list[str]:
    """``--bind`` values: ``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH``, ``fd://N``."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise Invalid("expected a list of addresses")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid(f"expected an address, got {item!r}", complete=True)
        if item.startswith("unix:") and len(item) > 5:
            pass
        elif item.startswith("fd://") and item[5:].isdigit():
            pass
        else:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise Invalid(
                    f"{item!r}: expected HOST:PORT, unix:PATH or fd://N",
                    complete=True,
                )
        result.append(item)
    return result


def _trusted_hosts(value: Any) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` as a list without blanks."""
    if isinstance(value, str):
        items: list[Any] = [item.strip() for item in value.split(",")]
    elif isinstance(value, Iterable):
        items = [item.strip() if isinstance(item, str) else item for item in value]
    else:
        raise Invalid("expected a string")
    for item in items:
        if not isinstance(item, str):
            raise Invalid(f"expected strings, got {item!r}", complete=True)
    return [item for item in items if item]


def _directories(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise Invalid("expected a list of directories")
    result = []
    for item in value:
        if not isinstance(item, (str, os.PathLike)):
            raise Invalid(f"expected a directory, got {item!r}", complete=True)
        result.append(os.fspath(item))
    return result


# ----------------------------------------------------------------- parsing


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off", "")


def parse_bool(text: str) -> bool:
    """An on/off environment variable: 1, true, yes, on / 0, false, no, off
    or empty (any case)."""
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise Invalid("expected 1, true, yes, on, 0, false, no, off or nothing")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Invalid("expected an integer") from None


def _parse_boolean(text: str) -> bool:
    """A ``BOOLEAN`` flag value, as click reads one (true/false, 1/0, yes/no...)."""
    word = text.strip().lower()
    if word in ("t", "y"):
        return True
    if word in ("f", "n"):
        return False
    if not word:
        raise Invalid("expected true or false")
    return parse_bool(word)


def _parse_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Invalid("expected a number of seconds") from None


# ------------------------------------------------------------------- table


@dataclass(frozen=True)
class Option:
    """One option.  ``flag`` and ``env`` follow from ``name`` unless given."""

    #: The Config keyword (and the key in the engine's options).
    name: str
    default: Any
    #: One sentence for ``--help`` and README (which add default and env).
    help: str
    check: Check
    #: Text of the flag or variable -> value (one item of a repeatable option).
    parse: Parse = str
    style: Style = "value"
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: ``--header A --header B``; in the environment, items split on ``separator``.
    repeatable: bool = False
    separator: str = "\n"
    #: Only the command line has it (not a Config keyword).
    cli_only: bool = False
    #: The engine gets it (:meth:`Config.engine_options`).
    engine: bool = False
    #: The default as README and ``--help`` show it, when ``default`` says too
    #: little (None standing for "no limit", say).
    shown_default: str | None = None
    flag: str = ""
    env: str = ""

    def __post_init__(self) -> None:
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.name.replace("_", "-"))
        if not self.env:
            object.__setattr__(self, "env", "FERRULE_" + self.name.upper())

    @property
    def flags(self) -> tuple[str, ...]:
        if self.style == "toggle":
            return (self.flag, "--no-" + self.flag[2:])
        return (self.flag,)

    @property
    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if self.default is None or self.default in ("", ()):
            return ""
        return str(self.default)

    def from_text(self, text: str) -> Any:
        """The value of a flag's text (one item of a repeatable option),
        checked by the same rule as a Python value; raises :class:`Invalid`.
        Returns the parsed value, not the normalised one: Config normalises."""
        if self.choices is not None and text not in self.choices:
            raise Invalid("expected one of " + ", ".join(self.choices))
        value = self.parse(text)
        # The rule of a repeatable option is about the list of its items.
        self.check([value] if self.repeatable else value)
        return value

    @property
    def env_names(self) -> tuple[str, ...]:
        """The environment variables read for the option, first found wins:
        ferrule's own, then uvicorn's (``UVICORN_*``, and ``WEB_CONCURRENCY``
        for the workers), so a deployment written for uvicorn keeps working."""
        names = [self.env]
        uvicorn_name = _UVICORN_PARAMS.get(self.name)
        if uvicorn_name is not None:
            names.append("UVICORN_" + uvicorn_name.upper())
        if self.name == "workers":
            names.append("WEB_CONCURRENCY")
        return tuple(names)

    def from_env(self, text: str, name: str | None = None) -> Any:
        """The value of the option's environment variable ``name`` (its
        own unless given); raises :class:`Invalid`."""
        if self.style != "value":
            return parse_bool(text)
        if not self.repeatable:
            return self.from_text(text)
        items = []
        # uvicorn's variables list items as click does: separated by blanks.
        own = name is None or name == self.env
        for item in text.split(self.separator) if own else text.split():
            if not item.strip():
                continue
            try:
                items.append(self.from_text(item))
            except Invalid as exc:
                raise Invalid(exc.message(item), complete=True) from None
        return items


_SECONDS = "SECONDS"

# ferrule option name -> uvicorn 0.54's parameter name, for the options
# uvicorn also has (its variables are UVICORN_<PARAMETER>).
_UVICORN_PARAMS: dict[str, str] = {
    name: name
    for name in (
        "access_log app_dir backlog date_header env_file factory fd "
        "forwarded_allow_ips h11_max_incomplete_event_size headers host http "
        "http2 interface lifespan limit_concurrency limit_max_requests "
        "limit_max_requests_jitter log_config log_level loop port proxy_headers "
        "reload reload_delay reload_excludes reload_includes reset_contextvars "
        "root_path server_header ssl_ca_certs ssl_cert_reqs ssl_certfile "
        "ssl_ciphers ssl_keyfile ssl_keyfile_password ssl_version "
        "timeout_graceful_shutdown timeout_keep_alive timeout_worker_healthcheck "
        "uds use_colors workers ws ws_max_queue ws_max_size ws_per_message_deflate "
        "ws_ping_interval ws_ping_timeout"
    ).split()
}
_UVICORN_PARAMS["reload_dir"] = "reload_dirs"

OPTIONS: tuple[Option, ...] = (
    # In Config.__init__'s order (a test checks it); --help and README follow it.
    Option(
        "host",
        "127.0.0.1",
        "Bind socket to this host.",
        _host,
        engine=True,
    ),
    Option(
        "port",
        8000,
        "Bind socket to this port; 0 picks a free port (the bound address is printed).",
        _integer(minimum=0, maximum=65535),
        _parse_int,
        engine=True,
    ),
    Option(
        "uds",
        None,
        "Bind to a UNIX domain socket (its file is removed again on exit).",
        _path("a path"),
        metavar="PATH",
        engine=True,
    ),
    Option(
        "fd",
        None,
        "Bind to the listening socket (TCP or UNIX) from this file descriptor.",
        _integer(minimum=0, optional=True),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "factory",
        False,
        "Treat APP as a factory: call it with no arguments to get the app.",
        _boolean(),
        style="switch",
    ),
    Option(
        "app_dir",
        ".",
        "Look for APP in this directory (prepended to sys.path).",
        _path("a directory"),
        metavar="DIR",
    ),
    Option(
        "lifespan",
        "auto",
        "Lifespan protocol: auto, on or off; auto serves apps that reject it.",
        _one_of(LIFESPAN_MODES),
        choices=LIFESPAN_MODES,
    ),
    Option(
        "log_level",
        "info",
        "Log level: " + ", ".join(logs.LOG_LEVELS) + ".",
        _log_level,
        choices=tuple(logs.LOG_LEVELS),
    ),
    Option(
        "access_log",
        True,
        "Enable/disable the access log (lines on the ferrule.access logger).",
        _boolean(),
        style="toggle",
    ),
    Option(
        "root_path",
        "",
        "Set the ASGI 'root_path' for apps mounted below a URL prefix.",
        _root_path,
        engine=True,
    ),
    Option(
        "timeout_keep_alive",
        5,
        "Close idle keep-alive connections after this many seconds.",
        _seconds(),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "timeout_graceful_shutdown",
        None,
        "Wait at most this many seconds for in-flight requests at shutdown.",
        _seconds(optional=True),
        _parse_seconds,
        metavar=_SECONDS,
        shown_default="none",
    ),
    Option(
        "limit_concurrency",
        None,
        "Answer 503 beyond this many concurrent connections or tasks.",
        _integer(minimum=1, optional=True),
        _parse_int,
        metavar="N",
        engine=True,
        shown_default="none",
    ),
    Option(
        "limit_max_requests",
        None,
        "Stop the worker after this many requests.",
        _integer(minimum=1, optional=True),
        _parse_int,
        metavar="N",
        shown_default="none",
    ),
    Option(
        "limit_max_requests_jitter",
        0,
        "Add a random 0..N to --limit-max-requests so workers do not recycle together.",
        _integer(minimum=0),
        _parse_int,
        metavar="N",
    ),
    Option(
        "timeout_request_header",
        10,
        "Deadline in seconds for a whole request head to arrive (slowloris guard).",
        _seconds(),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "timeout_request_body",
        30,
        "Idle seconds allowed while the app waits for request body bytes.",
        _seconds(),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "timeout_send",
        30,
        "Close a connection whose client stops reading for this many seconds.",
        _seconds(),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "limit_request_head_size",
        65536,
        "Largest request head (request line and headers) in bytes; 431 beyond.",
        _integer(minimum=256),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "limit_request_fields",
        100,
        "Most header fields in a request (at most 100); 431 beyond.",
        _integer(minimum=1, maximum=100),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "limit_request_line",
        8192,
        "Longest request target in bytes; 414 beyond.",
        _integer(minimum=16),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "limit_request_body",
        None,
        "Largest request body in bytes; 413 beyond (checked as bytes arrive).",
        _integer(minimum=0, optional=True),
        _parse_int,
        metavar="BYTES",
        engine=True,
        shown_default="none",
    ),
    Option(
        "backlog",
        2048,
        "Maximum number of pending connections (listen backlog).",
        _integer(minimum=1),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "headers",
        None,
        "Add a response header to every response (repeatable; "
        "in the environment, one per line).",
        _headers,
        metavar="NAME:VALUE",
        repeatable=True,
        engine=True,
        flag="--header",
    ),
    Option(
        "server_header",
        True,
        "Enable/disable the 'Server: ferrule' header.",
        _boolean(),
        style="toggle",
        engine=True,
    ),
    Option(
        "date_header",
        True,
        "Enable/disable the 'Date' header (formatted once a second).",
        _boolean(),
        style="toggle",
        engine=True,
    ),
    Option(
        "metrics_bind",
        None,
        "Serve Prometheus metrics at http://HOST:PORT/metrics, an address of their "
        "own (with --workers, per worker and summed by the supervisor).",
        _metrics_bind,
        metavar="HOST:PORT",
        shown_default="off",
    ),
    Option(
        "log_config",
        None,
        "Logging configuration file: .json, .yaml or .yml as a dictConfig (YAML "
        "needs PyYAML), any other name (.ini, .conf) as a fileConfig; configs "
        "written for uvicorn's loggers work.",
        _log_config,
        metavar="FILE",
    ),
    Option(
        "reload",
        False,
        "Restart the server when Python files change (development); "
        "the socket stays bound across restarts.",
        _boolean(),
        style="switch",
        cli_only=True,
    ),
    Option(
        "reload_dir",
        (),
        "Directory to watch with --reload (repeatable; "
        "in the environment, separated by '" + os.pathsep + "').",
        _directories,
        metavar="DIR",
        repeatable=True,
        separator=os.pathsep,
        cli_only=True,
        shown_default=".",
    ),
    Option(
        "workers",
        1,
        "Number of worker processes sharing one listening socket; "
        "a supervisor replaces workers that exit.",
        _integer(minimum=1),
        _parse_int,
        metavar="N",
    ),
    Option(
        "timeout_worker_healthcheck",
        5,
        "With --workers: seconds a worker has to answer a health check before "
        "the supervisor kills and replaces it.",
        _integer(minimum=1),
        _parse_int,
        metavar="SECONDS",
    ),
    Option(
        "reuse_port",
        False,
        "With --workers: give each worker its own listening socket bound with "
        "SO_REUSEPORT (the kernel spreads connections) instead of one shared socket.",
        _boolean(),
        style="toggle",
    ),
    Option(
        "proxy_headers",
        True,
        "Trust X-Forwarded-For/-Proto from --forwarded-allow-ips.",
        _boolean(),
        style="toggle",
    ),
    Option(
        "forwarded_allow_ips",
        None,
        "Comma-separated addresses/networks trusted for proxy headers, or '*'; "
        "without it, $FORWARDED_ALLOW_IPS is read.",
        _trusted_hosts,
        metavar="IPS",
        # The engine gets Config.trusted_hosts, or [] without proxy_headers.
        engine=True,
        shown_default="127.0.0.1",
    ),
    Option(
        "proxy_protocol",
        False,
        "Read a PROXY protocol v1/v2 header (HAProxy, AWS NLB) at the start of "
        "each connection from --forwarded-allow-ips and take the client address "
        "from it; connections from other peers are refused.",
        _boolean(),
        style="toggle",
        # The engine gets Config.trusted_hosts when on, else None.
        engine=True,
    ),
    Option(
        "use_colors",
        None,
        "Enable/disable coloured log output.",
        _boolean(optional=True),
        style="toggle",
        shown_default="on a terminal",
    ),
    Option(
        "asyncio_tasks",
        None,
        "Run requests as asyncio Tasks instead of ferrule's own, cheaper RequestTask.",
        _boolean(optional=True),
        style="toggle",
        # None: Config reads FERRULE_ASYNCIO_TASKS (off when unset).
        shown_default="off",
    ),
    Option(
        "interface",
        "auto",
        "Application interface: asgi3, asgi2 (a callable taking the scope and "
        "returning an async callable of receive and send), auto to tell them "
        "apart as uvicorn does, or wsgi (a PEP 3333 app, run on --wsgi-threads "
        "threads; lifespan off).",
        _one_of(INTERFACES),
        choices=INTERFACES,
        engine=True,
    ),
    Option(
        "wsgi_threads",
        None,
        "Threads that run a WSGI app (--interface wsgi): requests beyond them "
        "wait in a queue.",
        _integer(minimum=1, optional=True),
        _parse_int,
        metavar="N",
        shown_default="2 x CPUs, 4 to 32",
    ),
    Option(
        "env_file",
        None,
        "Load KEY=VALUE lines from this file into the environment before the "
        "app is imported; variables already set win (FERRULE_* ones included).",
        _existing_file,
        metavar="PATH",
    ),
    Option(
        "reload_delay",
        0.25,
        "With --reload: seconds to wait between two checks for changes.",
        _seconds(),
        _parse_seconds,
        metavar=_SECONDS,
    ),
    Option(
        "reload_includes",
        None,
        "With --reload: also watch files matching this glob (repeatable; "
        "a directory is watched as with --reload-dir).",
        _patterns,
        metavar="GLOB",
        repeatable=True,
        flag="--reload-include",
        shown_default=", ".join(RELOAD_INCLUDES),
    ),
    Option(
        "reload_excludes",
        None,
        "With --reload: ignore files matching this glob (repeatable; "
        "a directory is left out).",
        _patterns,
        metavar="GLOB",
        repeatable=True,
        flag="--reload-exclude",
        shown_default=", ".join(RELOAD_EXCLUDES),
    ),
    Option(
        "h11_max_incomplete_event_size",
        None,
        "uvicorn's name for --limit-request-head-size: sets that limit "
        "(giving both with different values is an error).",
        _integer(minimum=256, optional=True),
        _parse_int,
        metavar="BYTES",
        shown_default="none",
    ),
    Option(
        "reset_contextvars",
        False,
        "Run each request in a fresh contextvars.Context (hides what the "
        "lifespan set) instead of a copy of the server's.",
        _boolean(),
        style="switch",
    ),
    Option(
        "bind",
        None,
        "Listen on this address: HOST:PORT, [V6]:PORT, unix:PATH or fd://N "
        "(repeatable, as hypercorn's; replaces --host, --port, --uds and --fd).",
        _binds,
        metavar="ADDRESS",
        repeatable=True,
        engine=True,
    ),
    Option(
        "request_body_end_event",
        False,
        "End every request body with an empty http.request event "
        "(more_body false), as h11-based servers do: for apps that drop the "
        "body of a last event (rolo's ASGI gateway). Costs one receive().",
        _boolean(),
        style="switch",
    ),
    Option(
        "raw_header_names",
        False,
        "Pass request header names to the app as the client sent them "
        "(not lowercased), for apps that check signatures over them.",
        _boolean(),
        style="switch",
        engine=True,
    ),
    Option(
        "http2",
        False,
        "uvicorn's switch for HTTP/2: HTTP/2 is on already with --http auto "
        "(the default); with --http h1/h11/httptools it turns HTTP/2 back on "
        "(as auto).",
        _boolean(),
        style="switch",
    ),
    Option(
        "h2_max_concurrent_streams",
        100,
        "HTTP/2: streams a client may have open at once on one connection "
        "(SETTINGS_MAX_CONCURRENT_STREAMS).",
        _integer(minimum=1, maximum=2**31 - 1),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "h2_max_header_list_size",
        65536,
        "HTTP/2: largest request header list in bytes, as HPACK decodes it "
        "(SETTINGS_MAX_HEADER_LIST_SIZE).",
        _integer(minimum=1024, maximum=2**31 - 1),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "h2_max_frame_size",
        16384,
        "HTTP/2: largest frame payload a client may send "
        "(SETTINGS_MAX_FRAME_SIZE, 16384 to 16777215).",
        _integer(minimum=16384, maximum=16777215),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "h2_initial_window_size",
        65535,
        "HTTP/2: request body bytes a stream may send before the app reads "
        "them (SETTINGS_INITIAL_WINDOW_SIZE; the connection's window is one "
        "per stream, at most 16 MiB).",
        _integer(minimum=1, maximum=2**31 - 1),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "ws",
        "auto",
        "WebSocket implementation: 'none' refuses upgrades (the request "
        "reaches the app as plain HTTP); every other value (uvicorn's names) "
        "means ferrule's own.",
        _one_of(WS_PROTOCOLS),
        choices=WS_PROTOCOLS,
        engine=True,
    ),
    Option(
        "ws_max_size",
        16777216,
        "Largest WebSocket message (and frame) in bytes, inflated size; "
        "beyond, the connection closes with 1009.",
        _integer(minimum=1),
        _parse_int,
        metavar="BYTES",
        engine=True,
    ),
    Option(
        "ws_max_queue",
        32,
        "WebSocket messages waiting for the app's receive() beyond which "
        "ferrule stops reading the socket.",
        _integer(minimum=1),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "ws_ping_interval",
        20.0,
        "Seconds between WebSocket pings to the client (0, or None in Config: "
        "never).",
        _seconds(optional=True),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "ws_ping_timeout",
        20.0,
        "Seconds a WebSocket ping may go unanswered before the connection "
        "closes with 1011 (0, or None in Config: wait forever).",
        _seconds(optional=True),
        _parse_seconds,
        metavar=_SECONDS,
        engine=True,
    ),
    Option(
        "ws_per_message_deflate",
        True,
        "WebSocket permessage-deflate compression when the client offers it, "
        "true or false.",
        _boolean(),
        _parse_boolean,
        metavar="BOOLEAN",
        shown_default="true",
        engine=True,
    ),
    Option(
        "ssl_keyfile",
        None,
        "TLS private key file, PEM (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 "
        "with --ssl-keyfile-password); without it the key is read from "
        "--ssl-certfile.",
        _path("a file path"),
        metavar="PATH",
        engine=True,
    ),
    Option(
        "ssl_certfile",
        None,
        "TLS certificate file, PEM (the server's certificate first, then its "
        "chain); serves HTTPS.",
        _path("a file path"),
        metavar="PATH",
        engine=True,
    ),
    Option(
        "ssl_keyfile_password",
        None,
        "Password of an encrypted --ssl-keyfile.",
        _optional_text,
        metavar="TEXT",
        engine=True,
    ),
    Option(
        "ssl_version",
        int(ssl.PROTOCOL_TLS_SERVER),
        "TLS versions, as the ssl module numbers them: 17 or 2 negotiate TLS 1.2 "
        "or 1.3, 5 is TLS 1.2 only; 771/772 (ssl.TLSVersion) set the lowest "
        "version; older versions are refused.",
        _integer(minimum=0),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "ssl_cert_reqs",
        int(ssl.CERT_NONE),
        "Client certificates, as ssl.CERT_* numbers them: 0 none, 1 optional, "
        "2 required (verified against --ssl-ca-certs).",
        _integer(minimum=0, maximum=2),
        _parse_int,
        metavar="N",
        engine=True,
    ),
    Option(
        "ssl_ca_certs",
        None,
        "CA certificates file (PEM) that client certificates are verified against.",
        _path("a file path"),
        metavar="PATH",
        engine=True,
    ),
    Option(
        "ssl_ciphers",
        None,
        "TLS 1.2 cipher suites, as an OpenSSL cipher list (names and keywords "
        "such as ECDHE+AESGCM:!aNULL); unknown names are refused.",
        _optional_text,
        metavar="TEXT",
        shown_default="rustls's",
        engine=True,
    ),
    Option(
        "ssl_and_plain",
        False,
        "Serve TLS and plain HTTP on the same port: a connection's first byte "
        "says which (plain requests see scheme http).",
        _boolean(),
        style="switch",
        engine=True,
    ),
    Option(
        "ssl_refuse_plain",
        False,
        "On a TLS-only port, answer a plain HTTP request with a 400 ('plain HTTP "
        "sent to an HTTPS port') instead of closing the connection.",
        _boolean(),
        style="switch",
        engine=True,
    ),
    # uvicorn's event loop and HTTP parser choices: ferrule's engine is both,
    # so these are accepted for uvicorn command lines and only noted.
    Option(
        "loop",
        "auto",
        "Accepted for uvicorn command lines; ferrule runs its own event loop, "
        "so a value other than auto prints a notice and changes nothing.",
        _any_text,
        metavar="LOOP",
        cli_only=True,
    ),
    Option(
        "http",
        "auto",
        "Protocols served: auto (HTTP/2 by TLS ALPN and h2c on plain "
        "connections, HTTP/1.1 otherwise), h1 (HTTP/1.1 only), h2 (HTTP/2 "
        "only). uvicorn's h11 and httptools mean h1 (ferrule's own parser), "
        "zttp and a uvicorn protocol class (module:Class) mean auto; each "
        "prints a notice.",
        _http,
        metavar="auto|h1|h2",
        engine=True,
    ),
)

BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


def http_mode(http: str, http2: bool) -> str:
    """The engine's --http mode (auto, h1 or h2) for ``--http`` and ``--http2``."""
    mode = {"h11": "h1", "httptools": "h1", "zttp": "auto"}.get(http, http)
    if mode not in ("auto", "h1", "h2"):
        mode = "auto"  # a uvicorn protocol class: ferrule serves HTTP itself
    if http2 and mode == "h1":
        return "auto"
    return mode


ENGINE_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.engine)


# ------------------------------------------------------------------ README


def _cell(text: str) -> str:
    # A "|" would end the cell, even inside backticks.
    return text.replace("|", "\\|")


def _usage(option: Option) -> str:
    """The option as ``--help`` shows it: ``--x/--no-x``, ``--x``, ``--x VALUE``."""
    if option.style == "toggle":
        return " / ".join(option.flags)
    if option.style == "switch":
        return option.flag
    if option.metavar is not None:
        value = option.metavar
    elif option.choices is not None:
        value = "|".join(option.choices)
    else:
        value = option.name.upper()
    return f"{option.flag} {value}"


def markdown_table() -> str:
    """README's table of command-line options (``python -m ferrule.options``)."""
    lines = [
        "| option | default | env | meaning |",
        "| --- | --- | --- | --- |",
    ]
    rows = [
        [
            f"`{_cell(_usage(option))}`",
            _cell(option.default_text),
            f"`{option.env}`",
            _cell(option.help),
        ]
        for option in OPTIONS
    ]
    rows.append(
        ["`--version`, `--help`", "", "", "Show the version or the help, and exit."]
    )
    for cells in rows:
        # An empty cell as "| |", not "|  |".
        lines.append("|" + "".join(f" {cell} |" if cell else " |" for cell in cells))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table())
