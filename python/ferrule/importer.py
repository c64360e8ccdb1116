"""Load an object named by a ``"package.module:attribute.path"`` string."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportFromStringError", "import_from_string"]


class ImportFromStringError(Exception):
    """The string is malformed, or names a module or attribute that does not exist.

    An exception raised by the named module's own code while it is being
    imported is *not* turned into this error: it propagates unchanged.
    """


def _is_missing_module(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True when ``exc`` says that ``module_name`` (or a parent package) is missing.

    A ``ModuleNotFoundError`` for some other module means the app's own code
    imports something that is not installed: that is the app's error.
    """
    missing = exc.name
    if not missing:
        return False
    return module_name == missing or module_name.startswith(missing + ".")


def import_from_string(target: Any) -> Any:
    """Return the object named by ``"module:attr.sub"``.

    Anything that is not a string is returned unchanged, so callers can pass
    either an already-imported object or its import string.
    """
    if not isinstance(target, str):
        return target

    module_name, sep, attrs = target.partition(":")
    module_name = module_name.strip()
    attrs = attrs.strip()
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(
            f'Import string "{target}" must be in format "<module>:<attribute>".'
        )
    parts = attrs.split(".")
    if any(not part.isidentifier() for part in parts) or any(
        not part.isidentifier() for part in module_name.split(".")
    ):
        raise ImportFromStringError(
            f'Import string "{target}" must be in format "<module>:<attribute>".'
        )

    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing_module(exc, module_name):
            raise ImportFromStringError(
                f'Could not import module "{module_name}".'
            ) from None
        raise

    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportFromStringError(
                f'Attribute "{attrs}" not found in module "{module_name}".'
            ) from None
    return obj
