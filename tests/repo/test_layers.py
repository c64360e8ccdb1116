"""The layers stay one-way: the engine crate knows no Python, and no Rust
module imports one of the layers above it (docs/architecture.md).

The import graph is read from the `use` lines of the Rust sources: an edge
A -> B for every `use crate::B...`, `use super::B...` (resolved to a module
path) or `use ferrule_engine::B...` in module A.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
ENGINE = ROOT / "crates" / "engine"

# Module groups, lowest first: a module may import its own group or lower ones.
LAYERS = [
    ("engine", "proto"),
    ("engine", "runtime"),
    ("engine", "net"),
    ("engine", "server"),
    ("engine", "engine"),
    ("ext", "bridge"),
    ("ext", "py"),
]
# Inside the bridge and the server, the files are layered too.
BRIDGE_ORDER = [
    "errors",
    "task",
    "scope",
    "context",
    "http",
    "websocket",
    "wsgi",
    "dispatch",
]
SERVER_ORDER = [
    "close",
    "stats",
    "shutdown",
    "config",
    "date",
    "exchange",
    "shared",
    "h1",
    "ws",
    "h2",
    "accept",
]

USE_RE = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([a-z_0-9:]+)", re.M)


def module_path(src: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def imports(crate: str, src: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """{module path: {imported module paths}}, crate-qualified."""
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for file in src.rglob("*.rs"):
        if "tests" in file.parts or file.name == "tests.rs":
            continue  # unit tests may reach anywhere below them
        me = module_path(src, file)
        text = file.read_text()
        # Code under #[cfg(test)] is a test, not a layer.
        text = text.split("#[cfg(test)]\nmod tests")[0]
        edges = graph.setdefault((crate, *me), set())
        for m in USE_RE.finditer(text):
            path = m.group(1).split("::")
            if path[0] == "crate":
                target = [crate, *path[1:]]
            elif path[0] == "super":
                base = list(me)
                while path and path[0] == "super":
                    base, path = base[:-1], path[1:]
                target = [crate, *base, *path]
            elif path[0] == "ferrule_engine":
                target = ["engine", *path[1:]]
            else:
                continue
            edges.add(tuple(target))
    return graph


def rank(module: tuple[str, ...]) -> tuple[int, int]:
    crate = module[0]
    top = module[1] if len(module) > 1 else ""
    for i, layer in enumerate(LAYERS):
        if layer == (crate, top):
            sub = module[2] if len(module) > 2 else ""
            order = {"bridge": BRIDGE_ORDER, "server": SERVER_ORDER}.get(top, [])
            return i, order.index(sub) if sub in order else -1
    return -1, -1


def test_the_engine_crate_does_not_depend_on_pyo3() -> None:
    manifest = (ENGINE / "Cargo.toml").read_text()
    assert not re.search(r"^pyo3\b", manifest, re.M), "pyo3 in the engine's manifest"
    for file in (ENGINE / "src").rglob("*.rs"):
        code = file.read_text()
        assert not re.search(r"\bpyo3::|#\[py(class|methods|function)", code), file


@pytest.mark.parametrize(
    "crate, src", [("engine", ENGINE / "src"), ("ext", ROOT / "src")]
)
def test_no_module_imports_a_layer_above_it(crate: str, src: Path) -> None:
    graph = imports(crate, src)
    back_edges = []
    for module, targets in graph.items():
        if module == (crate,):
            continue  # the crate root declares and re-exports its modules
        mine = rank(module)
        assert mine[0] >= 0, f"{module} is in no layer: add it to LAYERS"
        for target in targets:
            theirs = rank(target)
            if theirs[0] < 0:
                continue
            same_group = theirs[0] == mine[0]
            if theirs[0] > mine[0] or (same_group and theirs[1] > mine[1] >= 0):
                back_edges.append(f"{'::'.join(module)} -> {'::'.join(target)}")
    assert back_edges == []
