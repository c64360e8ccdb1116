"""Server configuration: one :class:`Config` object, with uvicorn's option names."""

from __future__ import annotations

import inspect
import ipaddress
import os
import ssl
import sys
from collections.abc import Iterable
from typing import Any, Callable, Literal, Union

from . import logs, options
from ._envfile import EnvFileError, load_env_file
from .importer import import_from_string

__all__ = ["ASGIApp", "Config", "ConfigError", "LIFESPAN_MODES", "LOG_LEVELS"]

ASGIApp = Callable[..., Any]
LifespanMode = Literal["auto", "on", "off"]
Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]
HeaderInput = Union[tuple[str, str], list[str], str]

LIFESPAN_MODES = options.LIFESPAN_MODES
LOG_LEVELS = logs.LOG_LEVELS


class ConfigError(ValueError):
    """An invalid option value.  ``option`` holds the option's name."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def _valid(name: str, value: Any) -> Any:
    """``value`` as the option table's rule for ``name`` keeps it, or
    :class:`ConfigError` naming the option."""
    try:
        return options.BY_NAME[name].check(value)
    except options.Invalid as exc:
        raise ConfigError(name, exc.message(value)) from None


def _from_environment(name: str, unset: Any) -> Any:
    """The option's value from its environment variable, ``unset`` without one."""
    option = options.BY_NAME[name]
    text = os.environ.get(option.env)
    if text is None:
        return unset
    try:
        return option.from_env(text)
    except options.Invalid as exc:
        raise ConfigError(name, f"{option.env}: {exc.message(text)}") from None


class Config:
    """All server options.  Validation happens here: a bad value raises
    :class:`ConfigError` (a ``ValueError``) whose message starts with the
    option name.

    The options, their defaults and their rules are the table in
    :mod:`ferrule.options`; the keyword parameters below repeat its names and
    defaults for users and type checkers (a test keeps the two equal).

    Derived, read-only attributes for the engine:

    * ``log_level_no``: the numeric logging level.
    * ``encoded_headers``: ``headers`` as ``list[(bytes, bytes)]`` (latin-1,
      name casing as given), to add to every response.
    * ``trusted_hosts``: ``forwarded_allow_ips`` as a list (``"*"`` = all).
    * ``loaded_app``: the ASGI callable once :meth:`load_app` has run.

    ``asyncio_tasks=None`` reads ``FERRULE_ASYNCIO_TASKS`` (1, true, yes, on;
    off when unset); ``forwarded_allow_ips=None`` reads
    ``FORWARDED_ALLOW_IPS`` (``127.0.0.1`` when unset).
    """

    def __init__(
        self,
        app: ASGIApp | str,
        host: str | None = "127.0.0.1",
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
        metrics_bind: str | None = None,
        log_config: dict[str, Any] | str | os.PathLike[str] | None = None,
        workers: int = 1,
        timeout_worker_healthcheck: int = 5,
        reuse_port: bool = False,
        proxy_headers: bool = True,
        forwarded_allow_ips: str | list[str] | None = None,
        proxy_protocol: bool = False,
        use_colors: bool | None = None,
        asyncio_tasks: bool | None = None,
        interface: Interface = "auto",
        wsgi_threads: int | None = None,
        env_file: str | os.PathLike[str] | None = None,
        reload_delay: float = 0.25,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        bind: list[str] | str | None = None,
        request_body_end_event: bool = False,
        raw_header_names: bool = False,
        http2: bool = False,
        h2_max_concurrent_streams: int = 100,
        h2_max_header_list_size: int = 65536,
        h2_max_frame_size: int = 16384,
        h2_initial_window_size: int = 65535,
        ws: str = "auto",
        ws_max_size: int = 16777216,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = int(ssl.PROTOCOL_TLS_SERVER),
        ssl_cert_reqs: int = int(ssl.CERT_NONE),
        ssl_ca_certs: str | os.PathLike[str] | None = None,
        ssl_ciphers: str | None = None,
        ssl_and_plain: bool = False,
        ssl_refuse_plain: bool = False,
        http: str = "auto",
    ) -> None:
        if not (isinstance(app, str) or callable(app)):
            raise ConfigError(
                "app", f"expected an ASGI callable or 'module:attr', got {app!r}"
            )
        if isinstance(app, str) and not app.strip():
            raise ConfigError("app", "empty import string")
        self.app = app

        # First, as uvicorn does: the file's variables are the environment
        # the options below (and the app) read.
        self.env_file: str | None = _valid("env_file", env_file)
        if self.env_file is not None:
            try:
                load_env_file(self.env_file)
            except (OSError, EnvFileError) as exc:
                raise ConfigError("env_file", str(exc)) from None

        # Every rule lives in the option table (ferrule.options); the
        # annotations give type checkers what the checks return.
        if host is None:
            # uvicorn binds every interface for host=None (asyncio's
            # create_server); ferrule binds every IPv4 one.
            host = "0.0.0.0"
        self.host: str = _valid("host", host)
        self.port: int = _valid("port", port)
        self.uds: str | None = _valid("uds", uds)
        self.fd: int | None = _valid("fd", fd)
        if self.uds is not None and self.fd is not None:
            raise ConfigError("fd", "cannot be combined with uds")
        self.factory: bool = _valid("factory", factory)
        self.app_dir: str | None = _valid("app_dir", app_dir)

        self.lifespan: LifespanMode = _valid("lifespan", lifespan)
        self.log_level: str | int = _valid("log_level", log_level)
        self.log_level_no = logs.resolve_log_level(self.log_level)
        self.access_log: bool = _valid("access_log", access_log)
        self.use_colors: bool | None = _valid("use_colors", use_colors)

        self.root_path: str = _valid("root_path", root_path)

        self.timeout_keep_alive: float = _valid(
            "timeout_keep_alive", timeout_keep_alive
        )
        self.timeout_graceful_shutdown: float | None = _valid(
            "timeout_graceful_shutdown", timeout_graceful_shutdown
        )
        self.limit_concurrency: int | None = _valid(
            "limit_concurrency", limit_concurrency
        )
        self.limit_max_requests: int | None = _valid(
            "limit_max_requests", limit_max_requests
        )
        self.limit_max_requests_jitter: int = _valid(
            "limit_max_requests_jitter", limit_max_requests_jitter
        )
        self.timeout_request_header: float = _valid(
            "timeout_request_header", timeout_request_header
        )
        self.timeout_request_body: float = _valid(
            "timeout_request_body", timeout_request_body
        )
        self.timeout_send: float = _valid("timeout_send", timeout_send)
        self.limit_request_head_size: int = _valid(
            "limit_request_head_size", limit_request_head_size
        )
        self.limit_request_fields: int = _valid(
            "limit_request_fields", limit_request_fields
        )
        self.limit_request_line: int = _valid("limit_request_line", limit_request_line)
        self.limit_request_body: int | None = _valid(
            "limit_request_body", limit_request_body
        )
        self.backlog: int = _valid("backlog", backlog)

        self.headers: list[tuple[str, str]] = _valid("headers", headers)
        # Checked as latin-1, so written as latin-1 (the engine takes bytes).
        self.encoded_headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers
        ]
        self.server_header: bool = _valid("server_header", server_header)
        self.date_header: bool = _valid("date_header", date_header)

        self.metrics_bind: str | None = _valid("metrics_bind", metrics_bind)
        #: Set by the --workers supervisor, which serves the metrics itself
        #: (the workers still count, and measure durations).
        self.metrics_by_supervisor = False
        self.log_config: dict[str, Any] | str | os.PathLike[str] | None = _valid(
            "log_config", log_config
        )
        self.workers: int = _valid("workers", workers)
        self.timeout_worker_healthcheck: int = _valid(
            "timeout_worker_healthcheck", timeout_worker_healthcheck
        )
        self.reuse_port: bool = _valid("reuse_port", reuse_port)
        self.proxy_headers: bool = _valid("proxy_headers", proxy_headers)
        self.forwarded_allow_ips = forwarded_allow_ips
        if forwarded_allow_ips is None:
            # uvicorn's variable, so a deployment made for uvicorn keeps working.
            forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        self.trusted_hosts: list[str] = _valid(
            "forwarded_allow_ips", forwarded_allow_ips
        )
        self.proxy_protocol: bool = _valid("proxy_protocol", proxy_protocol)
        self._trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._trusted_literals: set[str] = set()
        for item in self.trusted_hosts:
            try:
                self._trusted_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self._trusted_literals.add(item)

        if asyncio_tasks is None:
            # Lets a deployment switch without touching the code that
            # builds the Config (as before this was an option).
            asyncio_tasks = _from_environment("asyncio_tasks", unset=False)
        self.asyncio_tasks: bool = _valid("asyncio_tasks", asyncio_tasks)
        self.interface: Interface = _valid("interface", interface)
        self.wsgi_threads: int | None = _valid("wsgi_threads", wsgi_threads)

        self.reload_delay: float = _valid("reload_delay", reload_delay)
        self.reload_includes: list[str] = _valid("reload_includes", reload_includes)
        self.reload_excludes: list[str] = _valid("reload_excludes", reload_excludes)

        # uvicorn's name for the largest request head buffered: the same
        # limit as limit_request_head_size, so it sets that one.
        self.h11_max_incomplete_event_size: int | None = _valid(
            "h11_max_incomplete_event_size", h11_max_incomplete_event_size
        )
        if self.h11_max_incomplete_event_size is not None:
            default = options.BY_NAME["limit_request_head_size"].default
            if self.limit_request_head_size not in (
                default,
                self.h11_max_incomplete_event_size,
            ):
                raise ConfigError(
                    "h11_max_incomplete_event_size",
                    "sets limit_request_head_size, which is also given "
                    f"({self.limit_request_head_size}); give one of the two",
                )
            self.limit_request_head_size = self.h11_max_incomplete_event_size
        self.reset_contextvars: bool = _valid("reset_contextvars", reset_contextvars)
        # Embedding: several listeners, rolo's body quirk, and
        # header names as sent.
        self.bind: list[str] = _valid("bind", bind)
        self.request_body_end_event: bool = _valid(
            "request_body_end_event", request_body_end_event
        )
        self.raw_header_names: bool = _valid("raw_header_names", raw_header_names)

        self.http2: bool = _valid("http2", http2)
        self.h2_max_concurrent_streams: int = _valid(
            "h2_max_concurrent_streams", h2_max_concurrent_streams
        )
        self.h2_max_header_list_size: int = _valid(
            "h2_max_header_list_size", h2_max_header_list_size
        )
        self.h2_max_frame_size: int = _valid("h2_max_frame_size", h2_max_frame_size)
        self.h2_initial_window_size: int = _valid(
            "h2_initial_window_size", h2_initial_window_size
        )
        self.ws: str = _valid("ws", ws)
        self.ws_max_size: int = _valid("ws_max_size", ws_max_size)
        self.ws_max_queue: int = _valid("ws_max_queue", ws_max_queue)
        self.ws_ping_interval: float | None = _valid(
            "ws_ping_interval", ws_ping_interval
        )
        self.ws_ping_timeout: float | None = _valid("ws_ping_timeout", ws_ping_timeout)
        self.ws_per_message_deflate: bool = _valid(
            "ws_per_message_deflate", ws_per_message_deflate
        )
        self.ssl_keyfile: str | None = _valid("ssl_keyfile", ssl_keyfile)
        self.ssl_certfile: str | None = _valid("ssl_certfile", ssl_certfile)
        self.ssl_keyfile_password: str | None = _valid(
            "ssl_keyfile_password", ssl_keyfile_password
        )
        self.ssl_version: int = _valid("ssl_version", ssl_version)
        self.ssl_cert_reqs: int = _valid("ssl_cert_reqs", ssl_cert_reqs)
        self.ssl_ca_certs: str | None = _valid("ssl_ca_certs", ssl_ca_certs)
        self.ssl_ciphers: str | None = _valid("ssl_ciphers", ssl_ciphers)
        self.ssl_and_plain: bool = _valid("ssl_and_plain", ssl_and_plain)
        self.ssl_refuse_plain: bool = _valid("ssl_refuse_plain", ssl_refuse_plain)
        self.http: str = _valid("http", http)

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
        if self.interface == "wsgi":
            # Served natively (ferrule's WSGI threads), never wrapped.
            if not callable(obj):
                raise ConfigError("app", f"{self.app!r} is not a WSGI callable")
            wsgi_app: ASGIApp = obj
            self.loaded_app = wsgi_app
            return wsgi_app
        if _is_asgi2(obj, self.interface):
            app: ASGIApp = _asgi2_adapter(obj)
        else:
            _check_asgi3(obj)
            app = obj
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

    # --------------------------------------------------------------- engine

    def engine_options(self) -> dict[str, Any]:
        """What the Rust engine is built from: ``Engine(config.engine_options())``.

        One key per option the table marks ``engine``, by its Config name
        (the engine refuses unknown and missing keys).
        """
        result = {
            option.name: getattr(self, option.name) for option in options.ENGINE_OPTIONS
        }
        # Where the engine needs a derived form of the option:
        # the headers as the bytes that go on the wire, ...
        result["headers"] = list(self.encoded_headers)
        # ... the proxies to believe (none when proxy headers are off), ...
        result["forwarded_allow_ips"] = (
            list(self.trusted_hosts) if self.proxy_headers else []
        )
        # ... the peers whose PROXY protocol header is believed (None = off;
        # not tied to proxy_headers: the header is not an HTTP header), ...
        result["proxy_protocol"] = (
            list(self.trusted_hosts) if self.proxy_protocol else None
        )
        # ... and no path to bind when the socket is inherited: a worker gets
        # its parent's socket as ``fd`` while ``uds`` still names its file.
        if self.fd is not None:
            result["uds"] = None
        # ... --http as auto, h1 or h2 (uvicorn's names and --http2 mapped), ...
        result["http"] = options.http_mode(self.http, self.http2)
        # ... and paths as text.
        for name in ("ssl_keyfile", "ssl_certfile", "ssl_ca_certs"):
            if result[name] is not None:
                result[name] = os.fspath(result[name])
        return result

    # ------------------------------------------------------------------ TLS

    @property
    def is_ssl(self) -> bool:
        """TLS was asked for (a certificate or key file)."""
        return bool(self.ssl_certfile or self.ssl_keyfile)

    def startup_error(self) -> str | None:
        """Why this configuration cannot be served, as one line naming the
        flag and the file (the TLS files are loaded as the engine will load
        them), or None."""
        if self.bind and self.workers > 1:
            # The supervisor binds host/port/uds/fd itself.
            return "--bind cannot be combined with --workers yet (use --host/--port)"
        if not self.is_ssl:
            return None
        from ._ferrule import Engine, TlsError

        try:
            Engine.check_tls(self.engine_options())
        except TlsError as exc:
            return str(exc)
        return None

    def notices(self) -> list[str]:
        """One line per option given that ferrule accepts but does not act on
        yet (logged at start-up on ``ferrule.error``)."""
        lines = self._tls_notices()
        if self.http not in ("auto", "h1", "h2"):
            mode = options.http_mode(self.http, self.http2)
            served = {"h1": "HTTP/1.1 only", "auto": "HTTP/1.1 and HTTP/2"}[mode]
            lines.append(
                f"--http {self.http}: ferrule's own engine serves {served} "
                f"(as --http {mode})"
            )
        if self.interface == "wsgi" and self.lifespan == "on":
            lines.append("A WSGI app has no lifespan; --lifespan on ignored")
        if self.interface != "wsgi" and self.wsgi_threads is not None:
            lines.append("--wsgi-threads applies to --interface wsgi only; ignored")
        return lines

    @property
    def wsgi_thread_count(self) -> int:
        """The WSGI pool's size: ``wsgi_threads``, or twice the CPUs this
        process may use, kept between 4 and 32 (threads blocked on I/O
        need company; beyond that they only contend for the GIL)."""
        if self.wsgi_threads is not None:
            return self.wsgi_threads
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(4, min(32, 2 * cpus))

    def _tls_notices(self) -> list[str]:
        """TLS options that cannot apply: without a certificate (uvicorn
        ignores them too), or --ssl-refuse-plain on a port that serves plain
        HTTP anyway."""
        if not self.is_ssl:
            given = [
                option.flag
                for option in options.OPTIONS
                if option.name.startswith("ssl_")
                and getattr(self, option.name) != option.default
            ]
            if given:
                ignored = ", ".join(given)
                return [f"{ignored} ignored: no --ssl-certfile (serving plain HTTP)"]
            return []
        if self.ssl_refuse_plain and self.ssl_and_plain:
            return ["--ssl-refuse-plain ignored: --ssl-and-plain serves plain HTTP"]
        return []

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


def _is_asgi2(obj: Any, interface: str) -> bool:
    """For ``interface="auto"``, uvicorn's rule, made exact where a signature
    tells: a class is ASGI 2 unless its instances are awaitable; a coroutine
    function (or object whose ``__call__`` is one) is ASGI 3; any other
    callable is ASGI 2 if it takes one argument (the scope), ASGI 3 if it
    takes three (a plain function returning an awaitable)."""
    if interface != "auto":
        return interface == "asgi2"
    if inspect.isclass(obj):
        return not hasattr(obj, "__await__")
    call = obj if inspect.isfunction(obj) else getattr(obj, "__call__", None)
    if call is None or inspect.iscoroutinefunction(call):
        return False
    sig = _signature(obj)
    if sig is None:
        return False
    return _binds(sig, 1) and not _binds(sig, 3)


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*([object()] * n))
    except TypeError:
        return False
    return True


def _asgi2_adapter(app: Any) -> ASGIApp:
    """An ASGI 3 callable serving an ASGI 2 app (``app(scope)`` returns the
    instance to await with ``(receive, send)``)."""

    async def asgi2(scope: Any, receive: Any, send: Any) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi2.__qualname__ = f"asgi2({getattr(app, '__qualname__', app)!r})"
    return asgi2


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
