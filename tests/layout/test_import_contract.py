"""The import contract of pyhcs' layers (docs/architecture.md, "Layers and imports").

Read from the source (every ``import`` the interpreter can execute: at module level and inside
functions, not under ``if TYPE_CHECKING:``, which only annotations see), so a lazy import that
closes a cycle counts as much as a top-level one. Imports of the root package ``pyhcs`` are
left out: importing any submodule has run it already.

* No import cycles between modules, with no exception.
* The errors layer imports nothing else of pyhcs.
* The native layer (backend selection, library, types, dispatch, both backends, the raw
  module, the trace recorder) never imports the Pythonic layer, the schema, the testing
  toolkit, the CLI or the emulator package; the one exception is the library module handing
  out the emulator's stdlib-only format readers.
* Nothing in the Pythonic layer or the schema imports the emulator package, the testing
  toolkit or the CLI.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "pyhcs"

#: Layer of every module, by dotted-name prefix (the longest matching prefix wins).
LAYERS: dict[str, str] = {
    "pyhcs._narrow": "base",  # type guards over the standard library only: any layer may use them
    "pyhcs.errors": "errors",
    "pyhcs.errors._base": "errors",
    "pyhcs.errors._table": "errors",
    "pyhcs._native._backend": "native",
    "pyhcs._native._library": "native",
    "pyhcs._native._types": "native",
    "pyhcs._native._dispatch": "native",
    "pyhcs._native._blocking": "native",
    "pyhcs._native._api_names": "native",
    "pyhcs._native.cython._core": "native",
    "pyhcs._native.ctypes": "native",
    "pyhcs._stdio": "native",
    "pyhcs._virtdisk": "native",
    "pyhcs.raw": "native",
    "pyhcs.trace": "native",
    "pyhcs.schema": "schema",
    "pyhcs.emulator": "emulator",
    "pyhcs.emulator._control": "emulator",
    "pyhcs.emulator._formats": "emulator",
    "pyhcs.testing": "testing",
    "pyhcs.cli": "app",
    "pyhcs.__main__": "app",
}
PYTHONIC = "pythonic"  # every other module: ComputeSystem, Process, Operation, events, aio, ...

#: What each layer may import (besides itself and the root package).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "errors": {"base"},
    "native": {"base", "errors"},
    "schema": {"base", "errors"},
    PYTHONIC: {"base", "errors", "native", "schema"},
    "emulator": {"base", "errors", "native"},
    "testing": {"base", "errors", "native", "schema", PYTHONIC, "emulator"},
    "app": {"base", "errors", "native", "schema", PYTHONIC, "emulator", "testing"},
}

#: Single edges allowed against the layer rules, with the reason.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("pyhcs._native._library", "pyhcs.emulator._formats"): "hands the emulator's stdlib-only format readers to the Pythonic layer",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")) + sorted(PACKAGE.rglob("*.pyx")):
        out[module_name(path)] = (path, path.stem == "__init__")
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements outside ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+c?import\s+([\w, ()*]+)|c?import\s+([\w.]+))", re.M)


def imports_of(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The pyhcs modules ``name`` imports at run time (resolved to modules that exist)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str, names: list[str]) -> None:
        for n in names:
            if f"{target}.{n}" in known:
                found.add(f"{target}.{n}")
            elif target in known:
                found.add(target)

    def resolve(module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    if path.suffix == ".pyx":
        for m in _CYTHON_IMPORT.finditer(path.read_text(encoding="utf-8")):
            if m.group(3):
                add(m.group(3), [""]) if m.group(3) in known else None
                continue
            dots = len(m.group(1)) - len(m.group(1).lstrip("."))
            target = resolve(m.group(1).lstrip(".") or None, dots)
            add(target, [n.strip() for n in m.group(2).strip("() ").split(",") if n.strip()])
        return {f for f in found if f.startswith("pyhcs.") and f != name}

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.add(alias.name)
        else:
            target = resolve(node.module, node.level)
            add(target, [a.name for a in node.names])
    return {f.rstrip(".") for f in found if f.startswith("pyhcs.") and f.rstrip(".") != name}


def layer_of(name: str) -> str:
    best = ""
    for prefix in LAYERS:
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best] if best else PYTHONIC


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = sources()
    known = set(modules) | {"pyhcs"}
    return {name: imports_of(name, path, pkg, known) - {"pyhcs"} for name, (path, pkg) in modules.items()}


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan), as sorted tuples."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[tuple[str, ...]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.add(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read(graph: dict[str, set[str]]) -> None:
    # The reader must see the imports it is meant to police (else every check passes).
    assert "pyhcs.errors" in graph["pyhcs.system"] or any(m.endswith("errors") for m in graph["pyhcs.system"])
    assert "pyhcs._native._backend" in graph["pyhcs.raw"]
    assert not any(layer_of(m) == "testing" for m in graph["pyhcs.system"])
    assert {"pyhcs.cli", "pyhcs.aio", "pyhcs.testing.plugin"} <= set(graph)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = sorted(cycles(graph))
    assert not found, f"import cycles: {found}"


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    # The check itself: an import inside a function counts, one under TYPE_CHECKING does not.
    source = tmp_path / "operation.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import system\n"
        "def __await__():\n    from .aio import wait\n",
        encoding="utf-8",
    )
    known = {"pyhcs", "pyhcs.operation", "pyhcs.aio", "pyhcs.system"}
    assert imports_of("pyhcs.operation", source, False, known) == {"pyhcs.aio"}
    graph = {"pyhcs.operation": {"pyhcs.aio"}, "pyhcs.aio": {"pyhcs.operation"}, "pyhcs.system": {"pyhcs.aio"}}
    assert cycles(graph) == {("pyhcs.aio", "pyhcs.operation")}


def test_layers_import_only_downwards(graph: dict[str, set[str]]) -> None:
    problems: list[str] = []
    for name, targets in sorted(graph.items()):
        mine = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs == mine or theirs in ALLOWED[mine] or (name, target) in EXCEPTIONS:
                continue
            problems.append(f"{name} ({mine}) imports {target} ({theirs})")
    assert not problems, "\n".join(problems)


def test_emulator_format_readers_need_nothing_of_pyhcs(graph: dict[str, set[str]]) -> None:
    readers = [m for m in graph if m.endswith(("_emuformats", "emulator._formats"))]
    assert readers
    for name in readers:
        assert graph[name] == set(), f"{name} imports {graph[name]}"
