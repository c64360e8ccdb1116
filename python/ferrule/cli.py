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
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Mapping, NoReturn, Sequence

from .config import Config, ConfigError
from . import logs
from ._envfile import EnvFileError, load_env_file
from .importer import ImportFromStringError
from .options import BY_NAME, OPTIONS, Invalid, Option

__all__ = [
    "OptionError",
    "command_line",
    "Settings",
    "build_parser",
    "config_from_args",
    "main",
    "resolve",
    "version_string",
]

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


class OptionError(ConfigError):
    """A bad option value and where it came from, for the one-line error:
    ``source`` is ``"argument --port"`` or ``"environment variable
    FERRULE_PORT"``."""

    def __init__(self, option: str, message: str, source: str) -> None:
        super().__init__(option, message)
        self.source = source


def _argument_type(option: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.from_text(text)
        except Invalid as exc:
            # argparse prints this message after "argument --flag:"; a plain
            # ValueError would become "invalid parse value".
            raise argparse.ArgumentTypeError(exc.message(text)) from None

    return parse


def _help(option: Option) -> str:
    text = option.help
    if option.default_text:
        text += f" [default: {option.default_text}]"
    text += f" [env: {option.env}]"
    return text.replace("%", "%%")  # argparse %-formats help strings


def build_parser() -> argparse.ArgumentParser:
    """The parser, one flag per entry of :data:`ferrule.options.OPTIONS`.

    Options not given are absent from the namespace (``default=SUPPRESS``),
    so :func:`resolve` can tell them from a flag given with the default
    value and look at the environment instead.
    """
    p = _Parser(
        prog=PROG,
        description="Run an ASGI application with ferrule (Rust engine).",
        usage="%(prog)s [OPTIONS] APP",
        epilog="Each option can also be set by the environment variable shown "
        "as [env: ...], or by uvicorn's UVICORN_* one (and WEB_CONCURRENCY for "
        "--workers); a flag on the command line wins, then FERRULE_*.",
        allow_abbrev=False,
    )
    p.add_argument(
        "app", metavar="APP", help='The ASGI application, as "module:attribute".'
    )
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": option.name,
            "default": argparse.SUPPRESS,
            "help": _help(option),
        }
        if option.style == "toggle":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.style == "switch":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _argument_type(option)
            kwargs["metavar"] = option.metavar
            kwargs["choices"] = option.choices
            if option.repeatable:
                kwargs["action"] = "append"
        p.add_argument(option.flag, **kwargs)
    p.add_argument("--version", action=_LazyVersion)
    return p


@dataclass
class Settings:
    """Every option's value (the flag's, else the environment variable's,
    else the default) and where each came from, for error messages."""

    app: str
    values: dict[str, Any]
    sources: dict[str, str]

    def source(self, option: str) -> str:
        return self.sources.get(option, "argument APP")

    def config(self) -> Config:
        kwargs = {
            name: value
            for name, value in self.values.items()
            if not BY_NAME[name].cli_only
        }
        try:
            return Config(self.app, **kwargs)
        except ConfigError as exc:
            source = self.source(exc.option)
            raise OptionError(exc.option, exc.message, source) from None


def resolve(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """The options of ``args``, with the environment (``os.environ`` unless
    given) for those not on the command line; raises :class:`OptionError`
    for a bad environment variable."""
    if environ is None:
        environ = os.environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if hasattr(args, option.name):
            values[option.name] = getattr(args, option.name)
            sources[option.name] = f"argument {option.flag}"
        elif (name := _env_name(option, environ)) is not None:
            source = f"environment variable {name}"
            text = environ[name]
            try:
                values[option.name] = option.from_env(text, name)
            except Invalid as exc:
                raise OptionError(option.name, exc.message(text), source) from None
            sources[option.name] = source
        else:
            values[option.name] = option.default
            sources[option.name] = f"argument {option.flag}"
    return Settings(args.app, values, sources)


def _env_name(option: Option, environ: Mapping[str, str]) -> str | None:
    """The first of the option's environment variables that is set."""
    return next((name for name in option.env_names if name in environ), None)


def command_line(app: str, kwargs: Mapping[str, Any]) -> list[str]:
    """The command line (without the program) that gives ``Config(app,
    **kwargs)``: what ``ferrule.run(..., reload=True)`` runs in its children."""
    argv = [app]
    for name, value in kwargs.items():
        option = BY_NAME[name]
        if option.style == "toggle":
            if value is not None:
                argv.append(option.flags[0] if value else option.flags[1])
        elif option.style == "switch":
            if value:
                argv.append(option.flag)
        elif value is None:
            continue
        elif option.repeatable:
            items = [value] if isinstance(value, (str, os.PathLike)) else value
            for item in items:
                if not isinstance(item, (str, os.PathLike)):
                    item = ":".join(item)  # a (name, value) header
                argv += [option.flag, os.fspath(item)]
        elif name == "log_config" and isinstance(value, dict):
            argv += [option.flag, _json_file(value)]
        elif name == "log_level" and isinstance(value, int):
            names = {number: text for text, number in logs.LOG_LEVELS.items()}
            argv += [option.flag, names.get(value, "info")]
        elif name == "forwarded_allow_ips" and not isinstance(value, str):
            argv += [option.flag, ",".join(value)]
        elif isinstance(value, os.PathLike):
            argv += [option.flag, os.fspath(value)]
        else:
            argv += [option.flag, str(value)]
    return argv


def _json_file(value: dict[str, Any]) -> str:
    """A dict log config as a file the children can read."""
    import json
    import tempfile

    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="ferrule-log-", delete=False
    ) as fh:
        json.dump(value, fh)
    return fh.name


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


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Config:
    """The Config of a parsed command line (see :func:`resolve`); raises
    :class:`OptionError` (a :class:`ConfigError`) naming the flag or variable."""
    return resolve(args, environ).config()


def _load_env_file(args: argparse.Namespace) -> str | None:
    """Loads ``--env-file`` (or ``$FERRULE_ENV_FILE``) into ``os.environ``
    before the options read the environment, so its ``FERRULE_*`` variables
    apply; returns the path loaded. Exits 2 for a bad file, as uvicorn."""
    option = BY_NAME["env_file"]
    if hasattr(args, option.name):
        path, source = args.env_file, f"argument {option.flag}"
    elif (name := _env_name(option, os.environ)) is not None:
        source = f"environment variable {name}"
        text = os.environ[name]
        try:
            path = option.from_env(text, name)
        except Invalid as exc:
            _fail(f"{source}: {exc.message(text)}")
    else:
        return None
    try:
        load_env_file(path)
    except (OSError, EnvFileError) as exc:
        _fail(f"{source}: {exc}")
    result: str = path
    return result


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    env_file = _load_env_file(args)

    try:
        settings = resolve(args)
        config = settings.config()
    except OptionError as exc:
        _fail(f"{exc.source}: {exc.message}")

    try:
        config.setup_logging()
    except ConfigError as exc:
        _fail(f"{settings.source('log_config')}: {exc.message}")

    # A TLS file that cannot be used: one line naming it, as for a bad flag.
    problem = config.startup_error()
    if problem is not None:
        _fail(problem, 2)
    if config.bind and settings.values["reload"]:
        _fail("--bind cannot be combined with --reload yet (use --host/--port)", 2)
    if env_file is not None:
        logs.error_logger.info("Loading environment from '%s'", env_file)
    for name, what in (("loop", "runs its own event loop"),):
        chosen = settings.values[name]
        if chosen != "auto":
            logs.error_logger.warning(
                "%s %s has no effect: ferrule %s", BY_NAME[name].flag, chosen, what
            )
    for line in config.notices():
        logs.error_logger.warning("%s", line)

    if settings.values["reload"]:
        # The parent never imports the app: each restarted child does.
        from .reloader import Reloader

        raw = sys.argv[1:] if argv is None else list(argv)
        dirs = list(settings.values["reload_dir"])
        try:
            status = Reloader(config, raw, dirs).run()
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
