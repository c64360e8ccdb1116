"""ferrule: an ASGI server whose network engine is Rust (tokio + httparse).

Run an app from a script::

    import ferrule

    ferrule.run("myapp:app", host="127.0.0.1", port=8000)

or embed: ``ferrule.Server(ferrule.Config(app, port=0)).run()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config, ConfigError
    from .importer import ImportFromStringError
    from .server import Server, serve

__all__ = [
    "Config",
    "ConfigError",
    "ImportFromStringError",
    "Server",
    "__version__",
    "run",
    "serve",
]


def _read_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "0.1.0"
    try:
        return version("ferrule")
    except PackageNotFoundError:
        return "0.1.0"


__version__ = _read_version()


def __getattr__(name: str) -> Any:
    # Imported when first asked for.  Server lives next to the compiled
    # engine, so the CLI and Config load even while the extension is being
    # rebuilt; and importing the package imports none of its modules, so
    # `python -m ferrule.options` runs the module it names (not a copy of one
    # already imported, which runpy warns about).
    if name in ("Config", "ConfigError"):
        from . import config

        return getattr(config, name)
    if name == "ImportFromStringError":
        from .importer import ImportFromStringError

        return ImportFromStringError
    if name in ("Server", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'ferrule' has no attribute {name!r}")


def run(
    app: Any,
    *,
    reload: bool = False,
    reload_dirs: list[str] | str | None = None,
    **kwargs: Any,
) -> None:
    """Serve ``app`` (an ASGI callable or ``"module:attr"``) until stopped.

    Keyword arguments are :class:`Config`'s, plus uvicorn.run's ``reload``
    and ``reload_dirs``. Configures logging, then blocks in
    ``Server(config).run()`` (or the reloader, or the worker supervisor).
    As uvicorn.run: ``reload=True`` or ``workers > 1`` need the app as an
    import string (else a warning and ``SystemExit(3)``). Returns after a
    clean stop (Ctrl+C); SIGTERM ends the process after the graceful stop, as
    uvicorn's; raises ``SystemExit`` with the server's status when it is not
    0 (e.g. a failed lifespan startup).
    """
    import logging

    from .config import Config
    from .supervisor import serve

    config = Config(app, **kwargs)
    config.setup_logging()
    logger = logging.getLogger("ferrule.error")

    if (reload or config.workers > 1) and not isinstance(app, str):
        logger.warning(
            "You must pass the application as an import string to enable "
            "'reload' or 'workers'."
        )
        raise SystemExit(3)
    problem = config.startup_error()
    if problem is not None:
        logger.error("%s", problem)
        raise SystemExit(1)
    for line in config.notices():
        logger.warning("%s", line)

    try:
        if reload:
            from .cli import command_line
            from .reloader import Reloader

            if isinstance(reload_dirs, str):
                reload_dirs = [reload_dirs]
            if config.workers > 1:
                logger.warning('"workers" flag is ignored when reloading is enabled.')
            status = Reloader(
                config, command_line(app, kwargs), list(reload_dirs or [])
            ).run()
        else:
            status = serve(config)
    except KeyboardInterrupt:
        return
    if status:
        raise SystemExit(status)
