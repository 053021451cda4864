"""The plugin's one way to run a test on both backends (pyhcs.testing.plugin, "Both backends"):
the ``pyhcs_backends`` marker and the ``hcs`` fixture parametrize ``pyhcs_backend`` by backend
name. Tested in inner pytest sessions (pytester, in subprocesses), as test_testing_plugin.py
does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyhcs

pytest_plugins = ["pytester"]

SRC = str(Path(pyhcs.__file__).resolve().parent.parent)

INNER = """
import pytest
from hypothesis import given, strategies as st

import pyhcs
from pyhcs._native import _backend

DEFAULT = _backend.backend

def test_raw(hcs, pyhcs_backend):
    assert hcs is _backend.load(pyhcs_backend)
    assert pyhcs.backend == _backend.backend == DEFAULT  # hcs alone switches nothing

@pytest.mark.pyhcs_backends
def test_marked_with_hcs(hcs, pyhcs_backend, request):
    # one parametrization, not one per mechanism; hcs is the module pyhcs was switched to
    assert request.node.callspec.params == {"pyhcs_backend": pyhcs_backend}
    assert hcs is _backend.load(pyhcs_backend) is _backend._module
    assert pyhcs.backend == pyhcs_backend

@pytest.mark.parametrize("n", [1, 2])
def test_with_parameters(hcs, n):
    assert hcs.has_function("HcsCreateOperation")

@given(st.integers())
def test_hypothesis_takes_hcs(hcs, n):
    op = hcs.hcs_create_operation()
    hcs.hcs_close_operation(op)

def test_plain(pyhcs_backend, request):
    assert not hasattr(request.node, "callspec")  # runs once, on the backend pyhcs loaded
    assert pyhcs_backend == DEFAULT

def test_after():
    assert pyhcs.backend == _backend.backend == DEFAULT  # switched back
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS", "PYHCS_LIBRARY", "PYHCS_REAL_HCS", "PYHCS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_inner=INNER)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "pyhcs.testing.plugin", "-p", "no:cacheprovider", "-rs", "-v", *args, timeout=120
    )


def _cython_loads() -> bool:
    # asked in an inner run's environment, as the inner sessions see it
    probe = subprocess.run(
        [sys.executable, "-c", "from pyhcs.testing.plugin import available_backends as a; print(a()['cython'] is None)"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )  # fmt: skip
    return probe.stdout.strip() == "True"


def test_marker_and_hcs_are_one_parametrization(inner: pytest.Pytester) -> None:
    result = run(inner)
    ids = [
        "test_raw[[]{b}[]]", "test_marked_with_hcs[[]{b}[]]", "test_with_parameters[[]{b}-1[]]",
        "test_with_parameters[[]{b}-2[]]", "test_hypothesis_takes_hcs[[]{b}[]]",
    ]  # fmt: skip
    if _cython_loads():
        result.assert_outcomes(passed=12)
        for backend in ("cython", "ctypes"):
            result.stdout.fnmatch_lines([f"*::{name.format(b=backend)} PASSED*" for name in ids], consecutive=False)
    else:  # a build without the compiled backend: its variants are skipped, saying why
        result.assert_outcomes(passed=7, skipped=5)
        result.stdout.fnmatch_lines(["*the cython backend cannot be loaded*"])
    result.stdout.fnmatch_lines(["*::test_plain PASSED*", "*::test_after PASSED*"])
    result.stdout.no_fnmatch_line("*cython-cython*")


def test_pyhcs_backend_selects_one_for_both(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYHCS_BACKEND", "ctypes")
    result = run(inner)
    result.assert_outcomes(passed=7)
    result.stdout.no_fnmatch_line("*cython*PASSED*")
    result.stdout.fnmatch_lines(["*::test_raw[[]ctypes[]] PASSED*", "*::test_marked_with_hcs[[]ctypes[]] PASSED*"])
