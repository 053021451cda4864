"""The pytest plugin (pyhcs.testing.plugin), tested with pytest's own pytester.

Each inner session runs in a subprocess (house rule 16: leak tests run isolated), with plugin
autoloading off and the plugin named explicitly, so the outcome does not depend on whether the
``pytest11`` entry point is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyhcs
from pyhcs import emulator

pytest_plugins = ["pytester"]

SRC = str(Path(pyhcs.__file__).resolve().parent.parent)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS", "PYHCS_LIBRARY", "PYHCS_REAL_HCS", "PYHCS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\npyhcs_leak_timeout = 1\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "pyhcs.testing.plugin", "-p", "no:cacheprovider", "-rs", *args, timeout=120
    )


CONFIG = '{"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}}'


def test_fixtures_give_a_clean_emulator_and_always_tear_down(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inner=f"""
        import json
        import pytest
        import pyhcs
        from pyhcs import ComputeSystem, errors

        MADE = []

        def test_1_fails_with_systems_and_faults(compute_system_factory, faults):
            MADE.append(compute_system_factory())
            MADE.append(compute_system_factory(start=False))
            proc = MADE[0].create_process(["sleep", "30"])
            faults.hang("HcsTerminateComputeSystem", count=1)
            faults.fail("HcsGetComputeSystemProperties", errors.ConnectionTimeoutError)
            faults.quirks(legacy_error_forms=True)
            faults.service_disconnect()
            assert False, "the test fails; teardown must still run"

        def test_2_everything_was_torn_down(hcs_emulator):
            assert len(MADE) == 2 and all(s.closed for s in MADE)
            assert ComputeSystem.enumerate(ids=[s.id for s in MADE]) == []
            stats = hcs_emulator.statistics()
            assert stats["Systems"] == 0 and stats["Processes"] == 0 and not stats["Disconnected"]
            # and the next test starts clean: no rules, default switches, counts at zero
            assert hcs_emulator.rules() == []
            assert hcs_emulator.settings()["LegacyErrorForms"] is False
            assert "HcsStartComputeSystem" not in hcs_emulator.call_counts()

        def test_3_factory_ids_are_unique_and_configurable(compute_system_factory):
            a = compute_system_factory(start=False)
            b = compute_system_factory("my-own-id", {CONFIG!r}, start=False)
            assert a.id != b.id and b.id == "my-own-id"
            assert a.id.startswith("test_3_factory_ids")
            assert a.state == b.state == "Created"
            assert len(compute_system_factory.systems) == 2

        @pytest.fixture
        def pyhcs_system_config():
            return {{"SchemaVersion": {{"Major": 2, "Minor": 1}}, "Owner": "overridden", "Container": {{}}}}

        def test_4_the_default_config_is_a_fixture(compute_system_factory):
            s = compute_system_factory()
            assert ComputeSystem.enumerate(ids=[s.id])[0]["Owner"] == "overridden"
        """
    )
    result = run(inner, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_1_fails_with_systems_and_faults FAILED*", "*the test fails*"])
    result.stdout.no_fnmatch_line("*leak check*")  # a failed test is not reported twice


def test_a_leaking_test_fails_with_a_clear_message(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inner=f"""
        import gc, os, subprocess
        import pytest
        from pyhcs import ComputeSystem

        KEEP = []

        def test_handle(hcs_emulator):
            KEEP.append(ComputeSystem.create("leaked-system", {CONFIG!r}))

        def test_dropped(hcs_emulator):
            s = ComputeSystem.create("dropped-system", {CONFIG!r})
            s._hub.history  # noqa: B018 - used, then dropped without close()
            del s

        def test_fd(hcs_emulator):
            KEEP.append(os.pipe())

        def test_child(hcs_emulator):
            KEEP.append(subprocess.Popen(["sleep", "30"]))

        @pytest.mark.pyhcs_no_leak_check
        def test_allowed(hcs_emulator):
            KEEP.append(os.pipe())

        def test_clean(compute_system_factory):
            compute_system_factory().run(["true"])

        def test_zz_cleanup():
            for item in KEEP:
                if isinstance(item, tuple):
                    for fd in item:
                        os.close(fd)
                elif isinstance(item, subprocess.Popen):
                    item.kill(); item.wait()
                else:
                    item.close()
        """
    )
    result = run(inner, "-v")
    result.assert_outcomes(passed=7, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_handle*",
            "*pyhcs leak check: test_inner.py::test_handle left behind:",
            "*1 compute system handle(s)*",
            "*pyhcs objects open now: <pyhcs.ComputeSystem 'leaked-system' open>*",
            "*Close what the test opened: every ComputeSystem, Process and Operation*--pyhcs-no-leak-check*",
        ]
    )
    result.stdout.fnmatch_lines(["*test_dropped*", "*dropped without close()*dropped-system*"])
    result.stdout.fnmatch_lines(["*test_fd*", "*file descriptor(s)*pipe:*"])
    result.stdout.fnmatch_lines(["*test_child*", "*child process(es) still running*sleep 30*"])
    result.stdout.fnmatch_lines(["*test_allowed PASSED*"])


@pytest.mark.parametrize("how", ["option", "ini"])
def test_the_leak_check_can_be_turned_off(inner: pytest.Pytester, how: str) -> None:
    inner.makepyfile(
        test_inner=f"""
        from pyhcs import ComputeSystem
        KEEP = []
        def test_leaks(hcs_emulator):
            KEEP.append(ComputeSystem.create("leaked-system", {CONFIG!r}))
        def test_cleanup():
            KEEP[0].close()
        """
    )
    if how == "ini":
        inner.makeini("[pytest]\npyhcs_leak_check = false\n")
        result = run(inner)
    else:
        result = run(inner, "--pyhcs-no-leak-check")
    result.assert_outcomes(passed=2)


def test_backends_marker_runs_the_pythonic_layer_on_each_backend(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inner="""
        import pytest
        import pyhcs
        from pyhcs._native import _backend; from pyhcs import raw

        @pytest.mark.pyhcs_backends
        def test_both(pyhcs_backend, compute_system_factory):
            module = _backend.load(pyhcs_backend)
            assert pyhcs.backend == _backend.backend == pyhcs_backend
            assert _backend.hcs_start_compute_system is module.hcs_start_compute_system
            assert raw.hcs_start_compute_system is module.hcs_start_compute_system
            system = compute_system_factory()
            assert system.run(["echo", pyhcs_backend]).stdout.decode().strip() == pyhcs_backend

        @pytest.mark.pyhcs_backends
        def test_no_fixture(request):
            assert pyhcs.backend == request.node.callspec.params["pyhcs_backend"]

        @pytest.mark.pyhcs_backends("ctypes")
        def test_one(pyhcs_backend, faults):
            assert pyhcs_backend == "ctypes" and faults.backend == "ctypes"

        def test_after():
            assert pyhcs.backend == _backend.backend  # switched back

        @pytest.mark.pyhcs_backends("nope")
        def test_bad():
            pass
        """
    )
    result = run(inner, "-v", "-k", "not bad")
    result.assert_outcomes(errors=1)  # the unknown backend is a usage error at collection
    result.stdout.fnmatch_lines(["*pyhcs_backends: unknown backend(s)*nope*known: cython, ctypes*"])
    inner.makepyfile(
        test_inner=inner.path.joinpath("test_inner.py").read_text().split('@pytest.mark.pyhcs_backends("nope")')[0]
    )
    result = run(inner, "-v")
    # asked in the inner run's environment (this one may name a missing library on purpose:
    # tests/windows_selection.py --without-hcs)
    probe = subprocess.run(
        [sys.executable, "-c", "from pyhcs.testing.plugin import available_backends as a; print(a()['cython'] is None)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    if probe.stdout.strip() == "True":
        result.assert_outcomes(passed=6)
        result.stdout.fnmatch_lines(["*test_both?cython? PASSED*", "*test_both?ctypes? PASSED*"])
        result.stdout.fnmatch_lines(["*test_no_fixture?cython? PASSED*", "*test_no_fixture?ctypes? PASSED*"])
    else:  # a build without the compiled backend
        result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(["*test_one?ctypes? PASSED*"])


def test_backends_marker_honours_pyhcs_backend(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYHCS_BACKEND", "ctypes")
    inner.makepyfile(
        test_inner="""
        import pytest
        @pytest.mark.pyhcs_backends
        def test_both(pyhcs_backend):
            assert pyhcs_backend == "ctypes"
        """
    )
    result = run(inner, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_both?ctypes? PASSED*"])


def test_environment_baseline_survives_the_per_test_reset(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCSEMU_SETTINGS", '{"LegacyErrorForms": true}')
    monkeypatch.setenv("HCSEMU_FAULTS", '{"Faults": [{"Function": "HcsPauseComputeSystem", "HResult": "0x80370109"}]}')
    inner.makepyfile(
        test_inner="""
        import pytest
        from pyhcs import errors

        @pytest.mark.parametrize("n", [1, 2])
        def test_every_test_starts_from_the_environment(n, compute_system_factory, faults):
            assert faults.settings()["LegacyErrorForms"] is True
            system = compute_system_factory()
            with pytest.raises(errors.ConnectionTimeoutError) as exc:
                system.pause()
            assert exc.value.hresult == 0xC0370109
            faults.clear()
            faults.quirks(legacy_error_forms=False)
        """
    )
    run(inner).assert_outcomes(passed=2)


def test_real_hcs_needs_the_marker_and_an_opt_in(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the emulator under the Windows DLL's name: pyhcs takes it for the real HCS.
    fake = inner.path / "computecore.dll"
    shutil.copy(emulator.library_path(), fake)
    monkeypatch.setenv("PYHCS_LIBRARY", str(fake))
    inner.makepyfile(
        test_inner="""
        import pytest

        def test_unmarked(compute_system_factory):
            raise AssertionError("must not run against real HCS")

        @pytest.mark.pyhcs_real_hcs
        def test_marked(compute_system_factory, hcs_emulator):
            assert not hcs_emulator.active
            assert compute_system_factory().run(["true"]).returncode == 0

        @pytest.mark.pyhcs_real_hcs
        def test_faults_need_the_emulator(faults):
            raise AssertionError("no fault injection on real HCS")
        """
    )
    result = run(inner)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*only tests marked pyhcs_real_hcs run against it*", "*opt in with --pyhcs-real-hcs*"])
    result = run(inner, "--pyhcs-real-hcs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*fault injection*need the HCS emulator*"])
    monkeypatch.setenv("PYHCS_REAL_HCS", "1")
    run(inner).assert_outcomes(passed=1, skipped=2)


def test_report_header_names_backend_and_library(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner="def test_nothing():\n    pass\n")
    result = run(inner)
    result.stdout.fnmatch_lines([f"pyhcs: * backend, HCS emulator {emulator.library_path()}*"])
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the loaded libraries from /proc")
def test_a_session_loads_no_native_library_until_a_test_uses_it(inner: pytest.Pytester) -> None:
    # The plugin is in every pytest session of an environment where pyhcs is installed: its
    # header and hooks must not load the HCS library (a DLL on Windows) nor the compiled backend.
    inner.makepyfile(
        test_inner="""
        import sys
        def test_plain():
            mapped = open("/proc/self/maps").read()
            assert "pyhcs._native._backend" not in sys.modules
            assert "libhcsemu" not in mapped and "_core." not in mapped
        def test_zz_uses_it(hcs_emulator):
            assert "libhcsemu" in open("/proc/self/maps").read()
        """
    )
    result = run(inner)
    result.stdout.fnmatch_lines(["pyhcs: auto backend, HCS emulator * (loaded when a test uses it)"])
    result.assert_outcomes(passed=2)


def test_markers_are_registered(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inner="""
        import pytest
        @pytest.mark.pyhcs_real_hcs
        @pytest.mark.pyhcs_no_leak_check
        @pytest.mark.pyhcs_backends("ctypes")
        def test_marked(pyhcs_backend):
            pass
        """
    )
    run(inner, "--strict-markers").assert_outcomes(passed=1)
    result = run(inner, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.pyhcs_backends(*names)*", "@pytest.mark.pyhcs_real_hcs*"])


def test_a_session_without_the_library_skips_the_fixtures(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYHCS_LIBRARY", str(inner.path / "missing" / "computecore.dll"))
    inner.makepyfile(
        test_inner="""
        def test_uses_fixture(compute_system_factory):
            raise AssertionError("unreachable")
        def test_plain():
            pass
        """
    )
    result = run(inner)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*pyhcs cannot be loaded here*"])


def test_use_backend_without_pytest() -> None:
    from pyhcs._native import _backend
    from pyhcs.testing.plugin import available_backends, use_backend

    usable = [name for name, reason in available_backends().items() if reason is None]
    before = _backend.hcs_create_operation
    for name in usable:
        with use_backend(name) as module:
            assert _backend.hcs_create_operation is module.hcs_create_operation
            assert pyhcs.backend == name
        assert _backend.hcs_create_operation is before


def test_factory_and_leak_check_without_pytest() -> None:
    from pyhcs.testing import leaks
    from pyhcs.testing.plugin import ComputeSystemFactory

    before = leaks.snapshot()
    with ComputeSystemFactory(prefix="no pytest!") as make:
        system = make()
        assert system.id.startswith("no-pytest-1-")
        assert system.state == "Running"
        with pytest.raises(leaks.LeakError, match=r"compute system handle\(s\)"):
            leaks.check(before, timeout=0)
    assert system.closed
    leaks.check(before)
