"""The suite never sends emulator-only requests to a real Host Compute Service: conftest.py
guards the service functions and skips the test instead (see its docstring)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import pyhcs
from pyhcs.emulator._control import emulator_only

from conftest import ON_EMULATOR, guard_emulator_controls

SRC = str(Path(pyhcs.__file__).resolve().parent.parent)
TESTS = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ('{"PropertyType": "EmulatorFaults", "Settings": {}}', "EmulatorFaults"),
        ('{"PropertyType": "EmulatorActions", "Settings": {"Action": "Reset"}}', "EmulatorActions"),
        ('{"PropertyTypes": ["Basic", "EmulatorStatistics"]}', "EmulatorStatistics"),
        ('{"PropertyTypes": ["Basic"]}', None),
        ('{"PropertyType": "GuestNetwork"}', None),
        ("not json", None),
        ("[1, 2]", None),
        (None, None),
    ],
)
def test_emulator_only_requests_are_recognized(request_text: str | None, expected: str | None) -> None:
    assert emulator_only(request_text) == expected


def test_the_guard_skips_instead_of_sending() -> None:
    sent: list[str | None] = []

    def hcs_modify_service_settings(settings: str) -> None:
        sent.append(settings)

    def hcs_get_service_properties(query: str | None = None) -> str:
        sent.append(query)
        return "{}"

    module = SimpleNamespace(
        hcs_modify_service_settings=hcs_modify_service_settings,
        hcs_get_service_properties=hcs_get_service_properties,
    )
    guard_emulator_controls([module], r"C:\Windows\System32\computecore.dll")
    guard_emulator_controls([module], "again")  # idempotent: one guard, not two
    with pytest.raises(pytest.skip.Exception) as info:
        module.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {}}))
    assert "EmulatorFaults is emulator-only" in str(info.value) and "computecore.dll" in str(info.value)
    with pytest.raises(pytest.skip.Exception):
        module.hcs_get_service_properties(query=json.dumps({"PropertyTypes": ["EmulatorCallCounts"]}))
    assert sent == []
    module.hcs_get_service_properties(None)
    module.hcs_modify_service_settings('{"PropertyType": "GuestNetwork"}')
    assert sent == [None, '{"PropertyType": "GuestNetwork"}']


def test_this_session_runs_on_the_emulator() -> None:
    # The guard is off here: the suite's own emulator controls reach the emulator.
    assert ON_EMULATOR


def test_a_real_hcs_session_skips_emulator_tests_and_sends_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS", "PYHCS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    log = pytester.path / "reached.log"
    pytester.makepyfile(
        realhcs=f"""
        # Loaded with -p, before conftest.py: pyhcs believes it talks to a real HCS, and every
        # emulator-only request that still reaches a backend is written to {log.name}.
        import json
        import pyhcs._native._library as library
        library.is_emulator = lambda path: False
        from pyhcs._native import _backend

        def _emulator_only(request):
            try:
                doc = json.loads(request)
            except (TypeError, ValueError):
                return False
            names = [doc.get("PropertyType"), *(doc.get("PropertyTypes") or [])] if isinstance(doc, dict) else []
            return any(isinstance(n, str) and n.startswith("Emulator") for n in names)

        def _recording(function):
            def call(*args, **kwargs):
                request = args[0] if args else next(iter(kwargs.values()), None)
                if _emulator_only(request):
                    with open({str(log)!r}, "a") as f:
                        f.write(str(request) + "\\n")
                return function(*args, **kwargs)
            return call

        modules = [_backend]
        for name in ("cython", "ctypes"):
            try:
                modules.append(_backend.load(name))
            except ImportError:
                pass
        for module in modules:
            for name in ("hcs_modify_service_settings", "hcs_get_service_properties"):
                setattr(module, name, _recording(getattr(module, name)))
        """,
        conftest=f"""
        import importlib.util
        _spec = importlib.util.spec_from_file_location("project_conftest", {str(TESTS / "conftest.py")!r})
        _project = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_project)
        globals().update({{k: v for k, v in vars(_project).items() if not k.startswith("__")}})
        """,
        test_inner="""
        import json
        from pyhcs._native import _backend

        def test_uses_faults(hcs):
            hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Faults": []}}))
            raise AssertionError("unreachable: the request must not be sent")

        def test_reads_counters():
            _backend.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorCallCounts"]}))
            raise AssertionError("unreachable")

        def test_plain(hcs):
            assert json.loads(hcs.hcs_get_service_properties(None))["Properties"]
        """,
    )
    result = pytester.runpytest_subprocess("-p", "realhcs", "-p", "no:cacheprovider", "-rs", timeout=120)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 1 and outcomes["skipped"] >= 2, outcomes
    result.stdout.fnmatch_lines(["*needs the HCS emulator: EmulatorFaults is emulator-only*"])
    result.stdout.fnmatch_lines(["*needs the HCS emulator: EmulatorCallCounts is emulator-only*"])
    # nothing emulator-only reached a backend: not the tests' requests, not the per-test reset
    assert not log.exists(), log.read_text()
