"""tests/windows_selection.py, the run of a machine without HCS: what it skips, deselects and
still fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyhcs

SELECTION = Path(__file__).resolve().parent.parent / "windows_selection.py"

TESTS = """
import subprocess, sys

def test_pure():
    assert 1 + 1 == 2

def test_uses_a_conftest_fixture(from_conftest):
    pass

def test_needs_hcs():
    import pyhcs._native._backend  # noqa: F401

def test_needs_hcs_in_a_child():
    out = subprocess.run([sys.executable, "-c", "import pyhcs._native._backend"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

def test_real_failure():
    assert False, "a failure that has nothing to do with HCS"
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(pyhcs.__file__).parent.parent), str(tmp_path)])}
    env.pop("PYHCS_LIBRARY", None)
    return env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("import pytest\n\n@pytest.fixture\ndef from_conftest():\n    return 1\n")
    (tmp_path / "test_sample.py").write_text(TESTS)
    env = _env(tmp_path)
    return subprocess.run(
        [sys.executable, str(SELECTION), *args, str(tmp_path / "test_sample.py"), "-q", "-rfEs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )


def test_without_hcs_skips_what_needs_it_and_keeps_real_failures(tmp_path: Path) -> None:
    out = _run(tmp_path, "--without-hcs")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed, 2 skipped, 1 deselected" in out.stdout, out.stdout
    assert "FAILED" in out.stdout and "test_real_failure" in out.stdout
    assert out.stdout.count("HCS is not available") == 2  # in the test and in its child
    assert "deselected, need the conftest fixture 'from_conftest': 1" in out.stdout
    assert "skipped for its absence: 2 tests" in out.stdout


def test_a_clean_run_passes_and_an_empty_one_fails(tmp_path: Path) -> None:
    selection = "pure or needs_hcs"
    ok = _run(tmp_path, "--without-hcs", "-k", selection)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 2 skipped" in ok.stdout
    too_few = _run(tmp_path, "--without-hcs", "--min-passed", "2", "-k", selection)
    assert too_few.returncode == 1 and "fewer than --min-passed 2" in too_few.stdout


def test_with_hcs_nothing_is_skipped_for_its_absence(tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import pyhcs._native._backend"], env=_env(tmp_path), capture_output=True)
    if probe.returncode != 0:
        pytest.skip("HCS is not installed on this machine")
    out = _run(tmp_path, "-k", "pure or needs_hcs")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HCS: available" in out.stdout and "3 passed" in out.stdout
