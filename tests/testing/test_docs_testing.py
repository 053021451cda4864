"""docs/testing.md's examples are real code: every ```python block that starts with
``# file: test_*.py`` is run as a pytest file with the plugin (blocks naming the same file are
its consecutive steps, joined in order), every block that starts with ``# script`` as a Python
script, and they must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyhcs

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "testing.md"
SRC = str(Path(pyhcs.__file__).resolve().parent.parent)
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text(encoding="utf-8"))


def documented_test_files() -> dict[str, str]:
    out: dict[str, str] = {}
    for block in blocks():
        first, _, _ = block.partition("\n")
        m = re.fullmatch(r"# file: (test_\w+\.py)", first.strip())
        if m:
            out[m.group(1)] = out.get(m.group(1), "") + block
    return out


def scripts() -> list[str]:
    return [b for b in blocks() if b.partition("\n")[0].strip() == "# script"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


#: worked example -> how many tests it has at least
EXAMPLES = {"test_retry_policy.py": 4, "test_stop_policy.py": 4, "test_job_runner.py": 2}


def test_the_doc_has_the_worked_examples() -> None:
    files = documented_test_files()
    assert set(files) == set(EXAMPLES)
    assert "ConnectionTimeoutError" in files["test_retry_policy.py"]
    assert 'faults.hang("HcsShutDownComputeSystem")' in files["test_stop_policy.py"]
    runner = files["test_job_runner.py"]
    assert runner.count("# file: test_job_runner.py") == 4  # built in four steps
    assert "@given" in runner and "clean_emulator" in runner and "fault_schedules" in runner
    assert len(scripts()) == 1


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_passes(name: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    for key in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS"):
        monkeypatch.delenv(key, raising=False)
    pytester.makepyfile(**{name[:-3]: documented_test_files()[name]})
    # hypothesis' own plugin too: its health checks (function-scoped fixtures under @given) apply
    result = pytester.runpytest_subprocess(
        "-p", "pyhcs.testing.plugin", "-p", "_hypothesis_pytestplugin", "-p", "no:cacheprovider", "-v", timeout=300
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= EXAMPLES[name], result.stdout.str()
    result.assert_outcomes(passed=outcomes["passed"])  # and nothing failed, errored or skipped


def test_script_runs(tmp_path: Path) -> None:
    (script,) = scripts()
    path = tmp_path / "example.py"
    path.write_text(script, encoding="utf-8")
    out = subprocess.run([sys.executable, str(path)], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "as expected: HCS_E_ACCESS_DENIED",
        "already running: 0xC0370105",
        "nothing leaked",
    ]
