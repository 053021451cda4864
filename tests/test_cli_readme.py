"""The README's commands and example stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_example_is_docs_example() -> None:
    # docs/example.py is the README's first example; tests/test_readme_example.py runs it
    assert _blocks()[0] == (README.parent / "docs" / "example.py").read_text()


def test_readme_raw_example_runs() -> None:
    out = subprocess.run([sys.executable, "-c", _blocks()[1]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "hello from the container" in out.stdout


def test_demo_command() -> None:
    out = subprocess.run([sys.executable, "-m", "pyhcs", "demo"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "process exit code: 3" in out.stdout
    assert "terminated and closed" in out.stdout


def test_run_and_info_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "pyhcs", "run", "--env", "X=42", "--", "sh", "-c", "echo $X; exit 5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 5 and out.stdout == "42\n"
    info = subprocess.run([sys.executable, "-m", "pyhcs", "info"], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and '"backend"' in info.stdout
