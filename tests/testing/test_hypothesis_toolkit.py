"""The hypothesis toolkit: every strategy's output passes the strict schema check; fault rules
and schedules that the emulator accepts; a clean emulator per example that passes hypothesis'
health checks; the standalone leak check seeing what the garbage collector closed."""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import pyhcs
from pyhcs import ComputeSystem, errors
from pyhcs.schema import (
    MODEL_CLASSES,
    HcsModel,
    ModifySettingRequest,
    SchemaWarning,
    check_strict,
    payload_types,
)
from pyhcs.testing import (
    CleanEmulator,
    Faults,
    FaultSchedule,
    FaultSpec,
    LeakError,
    clean_emulator,
    leaks,
)
from pyhcs.testing import strategies as hs
from pyhcs.testing.faults import HCS_FUNCTIONS

from pyutil import settled_system_count, system_count_at_most

#: Systems the service already held when the test began (a private service is shared by the
#: whole session, so another test's system still closing may be counted): the pool must
#: leave nothing of its own.
_BEFORE = {"systems": 0}


@pytest.fixture(autouse=True)
def _systems_before() -> None:
    _BEFORE["systems"] = settled_system_count()

pytest_plugins = ["pytester"]

SRC = str(Path(pyhcs.__file__).resolve().parent.parent)
CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}}
_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _strict(doc: HcsModel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SchemaWarning)  # a payload left unchecked is a failure too
        check_strict(doc)


# ------------------------------------------------------------------------------ documents


@_SETTINGS
@given(data=st.data())
def test_from_model_passes_check_strict_for_every_model(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(MODEL_CLASSES))
    _strict(data.draw(hs.from_model(model)))


@_SETTINGS
@given(doc=hs.from_model(ModifySettingRequest))
def test_modify_setting_requests_are_strict(doc: ModifySettingRequest) -> None:
    _strict(doc)  # a Settings under a ResourcePath no table lists would warn: an error here


def test_typed_payloads_are_drawn() -> None:
    # The strategy reaches the payload tables: ResourcePaths they list, with typed settings.
    def typed(doc: ModifySettingRequest) -> bool:
        return isinstance(doc.settings, dict) and doc.resource_path is not None and bool(
            payload_types(doc, "Settings")
        )

    found = find(hs.from_model(ModifySettingRequest), typed, settings=settings(max_examples=2000, database=None))
    _strict(found)


@_SETTINGS
@given(doc=hs.compute_systems() | hs.process_parameters() | hs.property_queries())
def test_complete_documents_are_strict(doc: HcsModel) -> None:
    _strict(doc)


# ------------------------------------------------------------------------------ fault strategies


@settings(max_examples=60, deadline=None)
@given(spec=hs.faults())
def test_every_drawn_fault_is_accepted(clean_emulator: Any, spec: FaultSpec) -> None:
    assert spec.function in HCS_FUNCTIONS
    assert (spec.error is not None) == (spec.action == "fail")
    assert str(spec).startswith(spec.action)
    with clean_emulator() as faults:
        rule = spec.apply(faults)
        (held,) = faults.rules()
        assert held["Function"] == spec.function
        assert rule.seen == 0 and rule.fired == 0
        assert rule.hang == (spec.action == "hang")


@settings(max_examples=30, deadline=None)
@given(schedule=hs.fault_schedules(functions=["HcsStartComputeSystem", "HcsCreateProcess"], actions=["fail"],
                                   errors=[errors.ConnectionTimeoutError], max_size=3))
def test_schedules_apply_and_take_effect(clean_emulator: Any, schedule: FaultSchedule) -> None:
    with clean_emulator() as faults:
        rules = schedule.apply(faults)
        assert len(rules) == len(schedule) == len(faults.rules())
        started = 0
        for i in range(3):
            with ComputeSystem.create(f"sched-{i}-{uuid.uuid4().hex[:8]}", CONFIG) as system:
                try:
                    system.start(timeout=10)
                    started += 1
                except errors.ConnectionTimeoutError:
                    pass
        start_rules = [r for r, spec in zip(rules, schedule, strict=True) if spec.function == "HcsStartComputeSystem"]
        assert 3 - started <= sum(r.fired for r in start_rules)  # every failed start was a fault
        if not start_rules:
            assert started == 3


def test_fault_strategy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="not an HCS function"):
        hs.faults(functions=["HcsStartComputeSistem"])
    with pytest.raises(ValueError, match="unknown fault action"):
        hs.faults(actions=["explode"])  # type: ignore[list-item]  # on purpose: refused at run time
    with pytest.raises(ValueError, match="success"):
        hs.faults(errors=[0])


# ------------------------------------------------------------------------------ clean emulator


def test_decorator_gives_each_example_a_clean_emulator() -> None:
    seen_rules: list[int] = []

    @settings(max_examples=15, deadline=None, database=None)
    @given(n=st.integers(1, 3))
    @clean_emulator()
    def example(n: int) -> None:
        faults = Faults()
        seen_rules.append(len(faults.rules()))
        for _ in range(n):
            faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError)
        with ComputeSystem.create(f"per-example-{uuid.uuid4().hex[:8]}", CONFIG):
            pass

    example()
    assert len(seen_rules) >= 3 and set(seen_rules) == {0}  # no rule from an earlier example
    assert Faults().rules() == []


def test_a_leak_inside_the_block_raises_and_is_cleaned_up() -> None:
    system: ComputeSystem | None = None
    with pytest.raises(LeakError, match="compute system") as exc, clean_emulator(leak_timeout=0.2):
        system = ComputeSystem.create("leaky", CONFIG)
        system.start()
    assert "terminated afterwards: leaky" in str(exc.value)
    assert system is not None
    system.close()
    assert system_count_at_most(_BEFORE["systems"]) <= _BEFORE["systems"]


def test_the_block_error_wins_and_is_cleaned_up() -> None:
    cm = clean_emulator(leak_timeout=0.2)
    assert isinstance(cm, CleanEmulator)
    system: ComputeSystem | None = None
    with pytest.raises(errors.ConnectionTimeoutError), cm as faults:
        faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError)
        system = ComputeSystem.create("fails", CONFIG)
        system.start()
    assert system is not None
    system.close()
    assert Faults().rules() == []
    with pytest.raises(RuntimeError, match="already active"), cm, cm:
        pass


# ------------------------------------------------------------------------------ leaks


def test_standalone_check_sees_what_the_garbage_collector_closed() -> None:
    before = leaks.snapshot()
    system = ComputeSystem.create("dropped", CONFIG)
    del system
    gc.collect()
    with pytest.raises(LeakError, match="garbage collector closed them") as exc:
        leaks.check(before, timeout=0.2)
    assert "dropped" in str(exc.value)
    # After the check nothing is recorded any more, and other warnings pass as before.
    with pytest.warns(UserWarning, match="still shown"):
        warnings.warn("still shown", UserWarning, stacklevel=1)
    with leaks.watch(timeout=0.2):
        with ComputeSystem.create("closed", CONFIG):
            pass
        with pytest.warns(UserWarning):
            warnings.warn("shown while recording", UserWarning, stacklevel=1)


def test_watch_reports_dropped_objects() -> None:
    with pytest.raises(LeakError, match="garbage collector"), leaks.watch(timeout=0.2):
        ComputeSystem.create("dropped-in-watch", CONFIG)  # never closed: the finalizer closes it
        gc.collect()


# ------------------------------------------------------------------------------ health checks


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS", "PYHCS_LIBRARY", "PYHCS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def test_the_fixture_passes_hypothesis_health_checks_where_function_scoped_ones_fail(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inner="""
        from hypothesis import given, settings, strategies as st
        from pyhcs import ComputeSystem

        CONFIG = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}}

        @settings(max_examples=5, deadline=None, database=None)
        @given(n=st.integers(0, 3))
        def test_clean_per_example(clean_emulator, n):
            with clean_emulator() as faults:
                assert faults.rules() == []
                for _ in range(n):
                    faults.hang("HcsShutDownComputeSystem")
                with ComputeSystem.create(f"ex-{n}", CONFIG):
                    pass

        @settings(max_examples=5, deadline=None, database=None)
        @given(n=st.integers(0, 3))
        def test_leak_is_found_and_shrunk(clean_emulator, n):
            with clean_emulator(leak_timeout=0.1):
                if n >= 2:
                    ComputeSystem.create(f"leak-{n}", CONFIG)

        @settings(max_examples=5, deadline=None, database=None)
        @given(n=st.integers(0, 3))
        def test_function_scoped(hcs_emulator, n):
            pass
        """
    )
    result = inner.runpytest_subprocess(
        "-p", "pyhcs.testing.plugin", "-p", "_hypothesis_pytestplugin", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "test_leak_is_found_and_shrunk" in out and "n=2" in out  # shrunk to the smallest leak
    assert "LeakError" in out
    assert "function_scoped_fixture" in out or "function-scoped fixture" in out
