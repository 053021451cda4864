"""Package-level properties of pyhcs.schema: pure pydantic, documented examples run."""

from __future__ import annotations

import ast
import doctest
import importlib
import sys
from pathlib import Path

import pytest

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "src" / "pyhcs" / "schema"
ALLOWED_ROOTS = {"__future__", "annotated_types", "pydantic", "pydantic_core", "typing_extensions"}
#: Type guards for the checkers, themselves importing nothing but the standard library.
NARROW = SCHEMA_DIR.parent / "_narrow.py"


@pytest.mark.parametrize("path", [*sorted(SCHEMA_DIR.glob("*.py")), NARROW], ids=lambda p: p.name)
def test_schema_imports_no_backend(path: Path) -> None:
    # The schema package is pure pydantic: it must work (and be testable) with no backend.
    own = ("pyhcs.schema", "pyhcs._narrow", ".._narrow") if path != NARROW else ()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        for name in names:
            root = name.split(".")[0]
            assert (
                name.startswith(own)
                or root in ALLOWED_ROOTS
                or root in sys.stdlib_module_names
            ), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "module",
    ["pyhcs.schema", "pyhcs.schema._base", "pyhcs.schema.builders", "pyhcs.schema.documents",
     "pyhcs.schema.v1",
     "pyhcs.testing.strategies"],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
