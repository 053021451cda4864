"""What users' type checkers see: pyright (and so Pylance in VS Code) takes the generated error
classes as exports of pyhcs.errors, and ``pyright --strict`` accepts the package and every
example of the README and the docs: each ```python block (the blocks naming the same
``# file:`` joined, as tests/testing/test_docs_testing.py runs them), except those whose first line is
``# fragment`` (a signature listing, or lines meant to go inside a test)."""

# Compares the private generated error table with pyhcs.errors' exports.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pyhcs

ROOT = Path(__file__).resolve().parent.parent.parent
SRC = Path(pyhcs.__file__).resolve().parent.parent
PYRIGHT = shutil.which("pyright") or str(Path(sys.executable).parent / "pyright")

#: Generated, and excluded in pyproject.toml's [tool.pyright] as well.
GENERATED = {"schema/_models.py", "errors/_table.py"}

pytestmark = [
    pytest.mark.skipif(not Path(PYRIGHT).exists(), reason="pyright is not installed"),
    pytest.mark.slow,
]

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def pyright(tmp_path: Path, files: list[Path], *, strict: bool) -> dict[str, Any]:
    """Runs pyright on ``files`` with pyhcs importable as an installed (py.typed) library;
    returns its JSON report."""
    config = {"typeCheckingMode": "strict" if strict else "standard", "pythonVersion": "3.11"}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    # Through PYTHONPATH, pyhcs resolves as a library: the rules for installed packages (private
    # imports, py.typed) apply, as they do for users.
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [PYRIGHT, "--outputjson", "--pythonpath", sys.executable, "-p", str(tmp_path / "pyrightconfig.json"),
         *map(str, files)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    try:
        report: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        pytest.fail(f"pyright gave no report: {out.stdout}{out.stderr}")
    return report


def errors_of(report: dict[str, Any]) -> list[str]:
    return [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']} ({d.get('rule', '')})"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def test_generated_error_classes_are_exports(tmp_path: Path) -> None:
    sample = tmp_path / "uses_errors.py"
    sample.write_text(
        "from pyhcs import errors\n"
        "from pyhcs.errors import ConnectionTimeoutError, InvalidStateError, HCS_E_INVALID_STATE\n"
        "def classify(e: BaseException) -> bool:\n"
        "    return isinstance(e, (errors.SystemNotFoundError, ConnectionTimeoutError, InvalidStateError))\n"
        "CODE: int = HCS_E_INVALID_STATE + errors.E_HANDLE\n",
        encoding="utf-8",
    )
    report = pyright(tmp_path, [sample], strict=False)
    assert errors_of(report) == []


def test_the_generated_names_are_listed_literally() -> None:
    from pyhcs import errors
    from pyhcs.errors import _table as _hresults

    assert set(_hresults.__all__) <= set(errors.__all__)
    text = (SRC / "pyhcs" / "errors" / "__init__.py").read_text(encoding="utf-8")
    for name in ("InvalidStateError", "HCS_E_INVALID_STATE", "CODES"):
        assert f'    "{name}",' in text and f"    {name} as {name}," in text


def _examples(tmp_path: Path) -> list[Path]:
    sources: dict[str, str] = {}
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for i, block in enumerate(_BLOCK.findall(doc.read_text(encoding="utf-8"))):
            first = block.partition("\n")[0].strip()
            if first.startswith("# fragment"):
                continue
            named = re.fullmatch(r"# file: (test_\w+\.py)", first)
            name = named.group(1) if named else f"{doc.stem.lower()}_{i}.py"
            sources[name] = sources.get(name, "") + block
    files = [ROOT / "docs" / "example.py"]
    for name, text in sources.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return files


def _package_modules() -> list[Path]:
    package = SRC / "pyhcs"
    return [
        path for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).as_posix() not in GENERATED
    ]


def test_the_examples_pass_pyright_strict(tmp_path: Path) -> None:
    files = _examples(tmp_path)
    assert len(files) >= 11
    report = pyright(tmp_path, files, strict=True)
    assert report["summary"]["filesAnalyzed"] >= len(files)
    assert errors_of(report) == []


def test_the_package_passes_pyright_strict() -> None:
    """As ``make pyright`` checks it: the project's own configuration (pyproject.toml)."""
    files = _package_modules()
    out = subprocess.run(
        [PYRIGHT, "--outputjson", "--pythonpath", sys.executable, *map(str, files)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    try:
        report: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        pytest.fail(f"pyright gave no report: {out.stdout}{out.stderr}")
    assert report["summary"]["filesAnalyzed"] >= len(files)
    assert errors_of(report) == []
