"""Server configuration: one :class:`Config` object, with uvicorn's option names."""

from __future__ import annotations

import inspect
import ipaddress
import os
import sys
from collections.abc import Iterable
from typing import Any, Callable, Literal, Union

from . import logs
from .importer import import_from_string

__all__ = ["ASGIApp", "Config", "ConfigError", "LIFESPAN_MODES", "LOG_LEVELS"]

ASGIApp = Callable[..., Any]
LifespanMode = Literal["auto", "on", "off"]
HeaderInput = Union[tuple[str, str], list[str], str]

LIFESPAN_MODES: tuple[str, ...] = ("auto", "on", "off")
LOG_LEVELS = logs.LOG_LEVELS

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class ConfigError(ValueError):
    """An invalid option value.  ``option`` holds the option's name."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def _int_option(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value}")
    return value


def _optional_int(name: str, value: Any, *, minimum: int) -> int | None:
    if value is None:
        return None
    return _int_option(name, value, minimum=minimum)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"expected a number of seconds, got {value!r}")
    if value != value or value < 0:  # NaN or negative
        raise ConfigError(name, f"must be a non-negative number, got {value!r}")
    return value


def _bool_option(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected True or False, got {value!r}")
    return value


def _parse_header(item: HeaderInput) -> tuple[str, str]:
    if isinstance(item, str):
        name, sep, value = item.partition(":")
        if not sep:
            raise ConfigError("headers", f"expected 'name:value', got {item!r}")
        name, value = name.strip(), value.strip()
    else:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ConfigError(
                "headers", f"expected a (name, value) pair, got {item!r}"
            ) from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(
                "headers", f"name and value must be strings, got {item!r}"
            )
    if not name or not set(name) <= _TOKEN_CHARS:
        raise ConfigError("headers", f"invalid header name {name!r}")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError("headers", f"invalid header value for {name!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(
            "headers", f"header value for {name!r} is not latin-1"
        ) from None
    return name, value


def _parse_trusted(value: Any) -> list[str]:
    if value is None:
        value = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, Iterable):
        items = [item.strip() if isinstance(item, str) else item for item in value]
    else:
        raise ConfigError("forwarded_allow_ips", f"expected a string, got {value!r}")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError("forwarded_allow_ips", f"expected strings, got {item!r}")
        if item:
            result.append(item)
    return result


class Config:
    """All server options.  Validation happens here: a bad value raises
    :class:`ConfigError` (a ``ValueError``) whose message starts with the
    option name.

    Derived, read-only attributes for the engine:

    * ``log_level_no``: the numeric logging level.
    * ``encoded_headers``: ``headers`` as ``list[(bytes, bytes)]`` (latin-1,
      name casing as given), to add to every response.
    * ``trusted_hosts``: ``forwarded_allow_ips`` as a list (``"*"`` = all).
    * ``loaded_app``: the ASGI callable once :meth:`load_app` has run.
    """

    def __init__(
        self,
        app: ASGIApp | str,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        factory: bool = False,
        app_dir: str | None = ".",
        lifespan: LifespanMode = "auto",
        log_level: str | int = "info",
        access_log: bool = True,
        root_path: str = "",
        timeout_keep_alive: float = 5,
        timeout_graceful_shutdown: float | None = None,
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        timeout_request_header: float = 10,
        timeout_request_body: float = 30,
        timeout_send: float = 30,
        limit_request_head_size: int = 65536,
        limit_request_fields: int = 100,
        limit_request_line: int = 8192,
        limit_request_body: int | None = None,
        backlog: int = 2048,
        headers: Iterable[HeaderInput] | None = None,
        server_header: bool = True,
        date_header: bool = True,
        log_config: dict[str, Any] | str | os.PathLike[str] | None = None,
        workers: int = 1,
        proxy_headers: bool = True,
        forwarded_allow_ips: str | list[str] | None = None,
        use_colors: bool | None = None,
    ) -> None:
        if not (isinstance(app, str) or callable(app)):
            raise ConfigError(
                "app", f"expected an ASGI callable or 'module:attr', got {app!r}"
            )
        if isinstance(app, str) and not app.strip():
            raise ConfigError("app", "empty import string")
        self.app = app

        if not isinstance(host, str) or not host:
            raise ConfigError("host", f"expected a host name or address, got {host!r}")
        self.host = host
        self.port = _int_option("port", port, minimum=0, maximum=65535)
        if uds is not None and not isinstance(uds, (str, os.PathLike)):
            raise ConfigError("uds", f"expected a path, got {uds!r}")
        self.uds: str | None = os.fspath(uds) if uds is not None else None
        self.fd = _optional_int("fd", fd, minimum=0)
        if self.uds is not None and self.fd is not None:
            raise ConfigError("fd", "cannot be combined with uds")
        self.factory = _bool_option("factory", factory)
        if app_dir is not None and not isinstance(app_dir, (str, os.PathLike)):
            raise ConfigError("app_dir", f"expected a directory, got {app_dir!r}")
        self.app_dir: str | None = os.fspath(app_dir) if app_dir is not None else None

        if lifespan not in LIFESPAN_MODES:
            raise ConfigError(
                "lifespan", f"expected one of auto, on, off, got {lifespan!r}"
            )
        self.lifespan: LifespanMode = lifespan
        try:
            self.log_level_no = logs.resolve_log_level(log_level)
        except ValueError as exc:
            raise ConfigError("log_level", str(exc)) from None
        self.log_level = log_level
        self.access_log = _bool_option("access_log", access_log)
        if use_colors is not None:
            _bool_option("use_colors", use_colors)
        self.use_colors = use_colors

        if not isinstance(root_path, str):
            raise ConfigError("root_path", f"expected a string, got {root_path!r}")
        if root_path and not root_path.startswith("/"):
            raise ConfigError("root_path", f"must start with '/', got {root_path!r}")
        self.root_path = root_path.rstrip("/")

        self.timeout_keep_alive = _seconds("timeout_keep_alive", timeout_keep_alive)
        self.timeout_graceful_shutdown = (
            None
            if timeout_graceful_shutdown is None
            else _seconds("timeout_graceful_shutdown", timeout_graceful_shutdown)
        )
        self.limit_concurrency = _optional_int(
            "limit_concurrency", limit_concurrency, minimum=1
        )
        self.limit_max_requests = _optional_int(
            "limit_max_requests", limit_max_requests, minimum=1
        )
        self.limit_max_requests_jitter = _int_option(
            "limit_max_requests_jitter", limit_max_requests_jitter, minimum=0
        )
        self.timeout_request_header = _seconds(
            "timeout_request_header", timeout_request_header
        )
        self.timeout_request_body = _seconds(
            "timeout_request_body", timeout_request_body
        )
        self.timeout_send = _seconds("timeout_send", timeout_send)
        self.limit_request_head_size = _int_option(
            "limit_request_head_size", limit_request_head_size, minimum=256
        )
        self.limit_request_fields = _int_option(
            "limit_request_fields", limit_request_fields, minimum=1, maximum=100
        )
        self.limit_request_line = _int_option(
            "limit_request_line", limit_request_line, minimum=16
        )
        self.limit_request_body = _optional_int(
            "limit_request_body", limit_request_body, minimum=0
        )
        self.backlog = _int_option("backlog", backlog, minimum=1)

        if headers is None:
            headers = []
        elif isinstance(headers, (str, bytes)):
            raise ConfigError("headers", "expected a list of (name, value) pairs")
        self.headers: list[tuple[str, str]] = [_parse_header(h) for h in headers]
        self.encoded_headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers
        ]
        self.server_header = _bool_option("server_header", server_header)
        self.date_header = _bool_option("date_header", date_header)

        if log_config is not None and not isinstance(
            log_config, (dict, str, os.PathLike)
        ):
            raise ConfigError(
                "log_config", f"expected a dict or a file path, got {log_config!r}"
            )
        self.log_config = log_config
        self.workers = _int_option("workers", workers, minimum=1)
        self.proxy_headers = _bool_option("proxy_headers", proxy_headers)
        self.forwarded_allow_ips = forwarded_allow_ips
        self.trusted_hosts: list[str] = _parse_trusted(forwarded_allow_ips)
        self._trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._trusted_literals: set[str] = set()
        for item in self.trusted_hosts:
            try:
                self._trusted_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self._trusted_literals.add(item)

        self.loaded_app: ASGIApp | None = None

    # ------------------------------------------------------------------ app

    @property
    def loaded(self) -> bool:
        return self.loaded_app is not None

    def load_app(self) -> ASGIApp:
        """Import (and for ``factory=True`` call) the app; cached after the first call.

        Raises :class:`~ferrule.importer.ImportFromStringError` for a bad
        string or missing module/attribute, :class:`ConfigError` for an object
        that is not an ASGI 3 callable; an exception raised by the app's own
        module or factory propagates unchanged.
        """
        if self.loaded_app is not None:
            return self.loaded_app
        if self.app_dir is not None and isinstance(self.app, str):
            app_dir = os.path.abspath(self.app_dir)
            if not sys.path or sys.path[0] != app_dir:
                sys.path.insert(0, app_dir)

        obj = import_from_string(self.app)
        if self.factory:
            if not callable(obj):
                raise ConfigError("factory", f"{self.app!r} is not callable")
            obj = obj()
        elif _looks_like_factory(obj):
            raise ConfigError(
                "app",
                f"{self.app!r} takes no arguments; if it is an application "
                "factory, use --factory (factory=True)",
            )
        _check_asgi3(obj)
        app: ASGIApp = obj
        self.loaded_app = app
        return app

    # ------------------------------------------------------------- logging

    def setup_logging(self) -> None:
        """Configure the ``ferrule.error`` / ``ferrule.access`` loggers.

        Idempotent: calling it again replaces ferrule's handlers.  Raises
        :class:`ConfigError` (option ``log_config``) for an unusable config.
        """
        try:
            logs.setup_logging(
                log_level=self.log_level_no,
                access_log=self.access_log,
                log_config=self.log_config,
                use_colors=self.use_colors,
            )
        except ValueError as exc:
            raise ConfigError("log_config", str(exc)) from None

    # --------------------------------------------------------------- misc

    @property
    def bind_description(self) -> str:
        """``http://host:port`` or ``unix:/path`` or ``fd://N`` (configured, not bound)."""
        if self.uds is not None:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def trusts_proxy(self, client_host: str | None) -> bool:
        """Whether proxy headers from ``client_host`` may be believed."""
        if not self.proxy_headers:
            return False
        if "*" in self._trusted_literals:
            return True
        if client_host is None:
            return False
        if client_host in self._trusted_literals:
            return True
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(address in network for network in self._trusted_networks)

    def __repr__(self) -> str:
        return f"<Config app={self.app!r} bind={self.bind_description!r}>"


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):  # builtins, C callables
        return None


def _looks_like_factory(obj: Any) -> bool:
    """A plain function or method that takes no parameters cannot be an ASGI app."""
    if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
        return False
    sig = _signature(obj)
    return sig is not None and not sig.parameters


def _check_asgi3(obj: Any) -> None:
    if not callable(obj):
        raise ConfigError("app", f"{obj!r} is not callable")
    if inspect.isclass(obj):
        raise ConfigError(
            "app",
            f"{obj.__name__} is a class; ferrule needs an ASGI 3 callable "
            "'async def app(scope, receive, send)' (ASGI 2 is not supported)",
        )
    sig = _signature(obj)
    if sig is None:
        return
    try:
        sig.bind(object(), object(), object())
    except TypeError:
        raise ConfigError(
            "app",
            f"{obj!r} does not accept (scope, receive, send); ferrule needs an "
            "ASGI 3 callable 'async def app(scope, receive, send)'",
        ) from None
