"""``--env-file``: read ``KEY=VALUE`` lines into the environment.

The format is the one python-dotenv (which uvicorn uses) reads, for the
parts real ``.env`` files use:

* blank lines and ``# comment`` lines are skipped; ``export KEY=value`` is
  ``KEY=value``; spaces around ``=`` are allowed;
* ``'single quoted'`` values are taken literally (``\\'`` and ``\\\\`` aside);
* ``"double quoted"`` values may span lines and decode ``\\n``, ``\\t``,
  ``\\"``, ``\\\\`` and the other C escapes;
* unquoted values end at the line's end or at `` #`` (a comment), and are
  stripped;
* ``${NAME}`` and ``${NAME:-default}`` in unquoted and double-quoted
  values expand to the environment's (or an earlier line's) value;
* a line that is only ``KEY`` sets nothing.

Variables already set in the environment win over the file's.
"""

from __future__ import annotations

import os
import re
from typing import MutableMapping

__all__ = ["EnvFileError", "load_env_file", "parse_env"]


class EnvFileError(ValueError):
    """A line the parser cannot read; the message names the line."""


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_EXPAND = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")
_DOUBLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    '"': '"',
    "'": "'",
    "\\": "\\",
}


def parse_env(text: str) -> list[tuple[str, str, bool]]:
    """``(key, value, expand)`` for each binding of ``text``, in order;
    ``expand``: the value may hold ``${NAME}`` references."""
    result: list[tuple[str, str, bool]] = []
    pos, end = 0, len(text)
    while pos < end:
        line_end = text.find("\n", pos)
        if line_end < 0:
            line_end = end
        line = text[pos:line_end]
        stripped = line.strip()
        lineno = text.count("\n", 0, pos) + 1
        if not stripped or stripped.startswith("#"):
            pos = line_end + 1
            continue
        body = stripped
        if body.startswith("export ") or body.startswith("export\t"):
            body = body[len("export") :].lstrip()
        match = _KEY.match(body)
        if match is None:
            raise EnvFileError(f"line {lineno}: expected KEY=VALUE, got {stripped!r}")
        key = match.group()
        rest = body[match.end() :].lstrip(" \t")
        if not rest or rest.startswith("#"):
            pos = line_end + 1  # "KEY" alone: no value
            continue
        if not rest.startswith("="):
            raise EnvFileError(f"line {lineno}: expected KEY=VALUE, got {stripped!r}")
        value_text = rest[1:].lstrip(" \t")
        # Where the value starts in ``text``: a quoted value may run past
        # this line.
        start = pos + len(line.rstrip()) - len(value_text)
        if value_text[:1] in ("'", '"'):
            quote = value_text[0]
            value, after = _quoted(text, start + 1, quote, lineno)
            tail_end = text.find("\n", after)
            if tail_end < 0:
                tail_end = end
            tail = text[after:tail_end].strip()
            if tail and not tail.startswith("#"):
                raise EnvFileError(
                    f"line {lineno}: unexpected text after the closing quote of {key}"
                )
            result.append((key, value, quote == '"'))
            pos = tail_end + 1
            continue
        value = value_text
        comment = re.search(r"\s#", value)
        if comment is not None:
            value = value[: comment.start()]
        result.append((key, value.strip(), True))
        pos = line_end + 1
    return result


def _quoted(text: str, pos: int, quote: str, lineno: int) -> tuple[str, int]:
    """The value of a quoted string whose body starts at ``pos``, and the
    position after its closing quote."""
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(out), pos + 1
        if ch == "\\" and pos + 1 < len(text):
            nxt = text[pos + 1]
            if quote == '"' and nxt in _DOUBLE_ESCAPES:
                out.append(_DOUBLE_ESCAPES[nxt])
                pos += 2
                continue
            if quote == "'" and nxt in ("'", "\\"):
                out.append(nxt)
                pos += 2
                continue
        out.append(ch)
        pos += 1
    raise EnvFileError(f"line {lineno}: missing closing {quote}")


def load_env_file(
    path: str | os.PathLike[str], environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Set the variables of the file at ``path`` that ``environ``
    (``os.environ``) does not have yet; returns those it set. Raises
    ``OSError`` for an unreadable file and :class:`EnvFileError` for a line
    it cannot parse (naming the file and the line)."""
    if environ is None:
        environ = os.environ
    with open(path, encoding="utf-8-sig") as fh:
        text = fh.read()
    try:
        bindings = parse_env(text.replace("\r\n", "\n"))
    except EnvFileError as exc:
        raise EnvFileError(f"{os.fspath(path)}: {exc}") from None
    seen: dict[str, str] = {}
    for key, value, expand in bindings:
        if expand:
            value = _EXPAND.sub(lambda m: _lookup(m, environ, seen), value)
        seen[key] = value
    added = {k: v for k, v in seen.items() if k not in environ}
    for key, value in added.items():
        environ[key] = value
    return added


def _lookup(
    match: re.Match[str], environ: MutableMapping[str, str], seen: dict[str, str]
) -> str:
    name = match.group("name")
    # The environment wins, as for the variables themselves.
    value = environ.get(name, seen.get(name))
    if value:
        return value
    return match.group("default") or ""
