"""Command line: ``ferrule [OPTIONS] APP`` (also ``python -m ferrule``).

Exit status: 0 after a clean stop; 2 for a bad option, app string or missing
module (one line on stderr); 1 when the app's module raises while importing
(traceback on stderr); otherwise what ``Server.run()`` returns.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import traceback
from types import TracebackType
from typing import Callable, NoReturn, Sequence

from .config import LIFESPAN_MODES, Config, ConfigError
from .importer import ImportFromStringError

__all__ = ["build_parser", "main", "version_string"]

PROG = "ferrule"


def version_string() -> str:
    from . import __version__

    return (
        f"{PROG} {__version__} "
        f"({platform.python_implementation()} {platform.python_version()})"
    )


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, without the usage dump."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # keep it on one line
        self.exit(2, f"{self.prog}: error: {message}\n")


class _LazyVersion(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "Show the version and exit."

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_string())
        parser.exit(0)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port value: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid port value: {text!r} (must be 0-65535)"
        )
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid number of seconds: {text!r}"
        ) from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return int(value) if value.is_integer() else value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"invalid header {text!r} (expected NAME:VALUE)"
        )
    return name, value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Run an ASGI application with ferrule (Rust engine).",
        usage="%(prog)s [OPTIONS] APP",
        allow_abbrev=False,
    )
    bool_opt = argparse.BooleanOptionalAction
    p.add_argument(
        "app", metavar="APP", help='The ASGI application, as "module:attribute".'
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="Bind socket to this host. [default: 127.0.0.1]",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="Bind socket to this port; 0 picks a free port. [default: 8000]",
    )
    p.add_argument("--uds", metavar="PATH", help="Bind to a UNIX domain socket.")
    p.add_argument(
        "--fd",
        type=_non_negative_int,
        help="Bind to the socket from this file descriptor.",
    )
    p.add_argument(
        "--factory",
        action="store_true",
        help="Treat APP as a factory: call it with no arguments to get the app.",
    )
    p.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="Look for APP in this directory (prepended to sys.path). [default: .]",
    )
    p.add_argument(
        "--lifespan",
        choices=LIFESPAN_MODES,
        default="auto",
        help="Lifespan protocol: auto, on or off. [default: auto]",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        default="info",
        help="Log level. [default: info]",
    )
    p.add_argument(
        "--access-log",
        action=bool_opt,
        default=True,
        help="Enable/disable the access log.",
    )
    p.add_argument(
        "--use-colors",
        action=bool_opt,
        default=None,
        help="Enable/disable coloured log output (default: only on a terminal).",
    )
    p.add_argument(
        "--root-path",
        default="",
        help="Set the ASGI 'root_path' for apps mounted below a URL prefix.",
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=_seconds,
        default=5,
        metavar="SECONDS",
        help="Close idle keep-alive connections after this long. [default: 5]",
    )
    p.add_argument(
        "--timeout-graceful-shutdown",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="Wait at most this long for in-flight requests at shutdown.",
    )
    p.add_argument(
        "--limit-concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Answer 503 beyond this many concurrent connections or tasks.",
    )
    p.add_argument(
        "--limit-max-requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Stop the worker after this many requests.",
    )
    p.add_argument(
        "--limit-max-requests-jitter",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="Add a random 0..N to --limit-max-requests so workers do not recycle together.",
    )
    p.add_argument(
        "--limit-request-head-size",
        type=_positive_int,
        default=65536,
        metavar="BYTES",
        help="Largest request head (request line and headers); 431 beyond.",
    )
    p.add_argument(
        "--limit-request-fields",
        type=_positive_int,
        default=100,
        metavar="N",
        help="Most header fields in a request (at most 100); 431 beyond.",
    )
    p.add_argument(
        "--limit-request-line",
        type=_positive_int,
        default=8192,
        metavar="BYTES",
        help="Longest request target; 414 beyond.",
    )
    p.add_argument(
        "--limit-request-body",
        type=_non_negative_int,
        default=None,
        metavar="BYTES",
        help="Largest request body; 413 beyond (checked as bytes arrive).",
    )
    p.add_argument(
        "--timeout-request-header",
        type=_seconds,
        default=10,
        metavar="SECONDS",
        help="Deadline for a whole request head to arrive (slowloris guard).",
    )
    p.add_argument(
        "--timeout-request-body",
        type=_seconds,
        default=30,
        metavar="SECONDS",
        help="Idle time allowed while the app waits for request body bytes.",
    )
    p.add_argument(
        "--timeout-send",
        type=_seconds,
        default=30,
        metavar="SECONDS",
        help="Close a connection whose client stops reading for this long.",
    )
    p.add_argument(
        "--backlog",
        type=_positive_int,
        default=2048,
        metavar="N",
        help="Maximum number of pending connections. [default: 2048]",
    )
    p.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header,
        default=[],
        metavar="NAME:VALUE",
        help="Add a response header (repeatable).",
    )
    p.add_argument(
        "--server-header",
        action=bool_opt,
        default=True,
        help="Enable/disable the 'Server: ferrule' header.",
    )
    p.add_argument(
        "--date-header",
        action=bool_opt,
        default=True,
        help="Enable/disable the 'Date' header.",
    )
    p.add_argument(
        "--log-config",
        metavar="FILE",
        default=None,
        help="Logging configuration file (.ini for fileConfig, or .json).",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="Restart the server when Python files change (development).",
    )
    p.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="Directory to watch with --reload (repeatable; default: the current directory).",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="Number of worker processes. [default: 1]",
    )
    p.add_argument(
        "--proxy-headers",
        action=bool_opt,
        default=True,
        help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips.",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=None,
        help="Comma-separated addresses/networks trusted for proxy headers, or '*'. "
        "[default: $FORWARDED_ALLOW_IPS or 127.0.0.1]",
    )
    p.add_argument("--version", action=_LazyVersion)
    return p


def _fail(message: str, status: int = 2) -> NoReturn:
    message = " ".join(message.split())
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def _print_app_traceback(exc: BaseException) -> None:
    """Print ``exc``'s traceback without ferrule's and importlib's own frames."""
    here = os.path.dirname(os.path.abspath(__file__))
    importlib_dir = os.path.dirname(importlib.__file__ or "")
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        internal = (
            filename.startswith(here + os.sep)
            or filename.startswith(importlib_dir + os.sep)
            or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
        )
        if not internal:
            break
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.stderr.flush()


def _flag_for(option: str) -> str:
    if option == "app":
        return "APP"
    if option == "headers":
        return "--header"
    return "--" + option.replace("_", "-")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        app=args.app,
        host=args.host,
        port=args.port,
        uds=args.uds,
        fd=args.fd,
        factory=args.factory,
        app_dir=args.app_dir,
        lifespan=args.lifespan,
        log_level=args.log_level,
        access_log=args.access_log,
        use_colors=args.use_colors,
        root_path=args.root_path,
        timeout_keep_alive=args.timeout_keep_alive,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        limit_concurrency=args.limit_concurrency,
        limit_max_requests=args.limit_max_requests,
        limit_max_requests_jitter=args.limit_max_requests_jitter,
        limit_request_head_size=args.limit_request_head_size,
        limit_request_fields=args.limit_request_fields,
        limit_request_line=args.limit_request_line,
        limit_request_body=args.limit_request_body,
        timeout_request_header=args.timeout_request_header,
        timeout_request_body=args.timeout_request_body,
        timeout_send=args.timeout_send,
        backlog=args.backlog,
        headers=args.headers,
        server_header=args.server_header,
        date_header=args.date_header,
        log_config=args.log_config,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        _fail(f"argument {_flag_for(exc.option)}: {exc.message}")

    try:
        config.setup_logging()
    except ConfigError as exc:
        _fail(f"argument --log-config: {exc.message}")

    if args.reload:
        # The parent never imports the app: each restarted child does.
        from .reloader import Reloader

        raw = sys.argv[1:] if argv is None else list(argv)
        try:
            status = Reloader(config, raw, args.reload_dir).run()
        except KeyboardInterrupt:
            status = 0
        if status:
            raise SystemExit(status)
        return

    try:
        config.load_app()
    except ImportFromStringError as exc:
        _fail(f"Error loading ASGI app. {exc}")
    except ConfigError as exc:
        _fail(f"Error loading ASGI app. {exc.message}")
    except Exception as exc:
        _print_app_traceback(exc)
        _fail(f"Error loading ASGI app {args.app!r}: {type(exc).__name__}: {exc}", 1)

    try:
        from . import server  # noqa: F401  (fails early if the engine is not built)
    except ImportError as exc:
        _fail(f"the ferrule engine is not available ({exc})", 1)

    from .supervisor import serve

    try:
        status = serve(config)
    except KeyboardInterrupt:
        status = 0
    if status:
        raise SystemExit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
