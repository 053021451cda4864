"""The README's commands and example stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    out = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=120)
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
