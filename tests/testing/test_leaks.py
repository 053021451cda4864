"""Nothing leaks: handles, documents, file descriptors, child processes, threads. Run in
isolated subprocesses so other tests' state cannot hide or cause a leak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyhcs._native import _backend

SCRIPT = Path(__file__).parent.parent / "isolated" / "lifecycle_leaks.py"


@pytest.mark.parametrize("backend", [b for b in ("cython", "ctypes") if b in __import__("conftest").BACKENDS])
def test_no_leaks_after_many_lifecycles(backend: str) -> None:
    env = {**os.environ, "PYHCS_BACKEND": backend}
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no leaks" in out.stdout


def test_backend_module_loaded() -> None:
    assert _backend.backend in ("cython", "ctypes")
