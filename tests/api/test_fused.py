"""The backends' private fused round trip (``_run_call``: create an operation, initiate, wait
one slice, close) and the Pythonic layer's use of it (pyhcs.operation.run), on both backends.

The fused entry is not part of PUBLIC_API (the raw level stays one C function per Python
function), so it is tested here through each backend module and through ``ComputeSystem``."""

# Tests the backends' private fused round trip and the table that picks it.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

import pyhcs
from pyhcs import emulator, operation
from pyhcs._native import _backend
from pyhcs.errors import HcsError, InvalidStateError, OperationTimeoutError

from conftest import ON_EMULATOR
from rawutil import container_config, new_id, running_system, wait

pytestmark = pytest.mark.skipif(not ON_EMULATOR, reason="counts the emulator's live operations")

_PROPERTIES = operation.FUSED["HcsGetComputeSystemProperties"]
_START = operation.FUSED["HcsStartComputeSystem"]


def _live_operations() -> int:
    count: int = emulator.statistics()["Operations"]
    return count


def test_the_index_tables_agree(hcs: ModuleType) -> None:
    assert list(operation.FUSED) == list(hcs._FUSED_CALLS)
    assert "_run_call" not in hcs.__all__
    assert "_run_call" not in _backend.PUBLIC_API


def test_a_quick_success_returns_the_document_and_closes_the_operation(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        before = _live_operations()
        op, doc = hcs._run_call(_PROPERTIES, h, json.dumps({"PropertyTypes": ["Statistics"]}), 200)
        assert op == 0
        assert doc is not None and "Statistics" in json.loads(doc)
        assert _live_operations() == before


def test_a_failed_call_comes_back_as_the_open_operation(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        before = _live_operations()
        op, doc = hcs._run_call(_START, h, None, 200)  # already running: the operation fails
        assert op != 0 and doc is None
        assert _live_operations() == before + 1
        with pytest.raises(InvalidStateError):
            wait(hcs, op)  # the result is still there to read the ordinary way
        hcs.hcs_close_operation(op)
        assert _live_operations() == before


def test_a_failed_initiation_raises_and_leaks_no_operation(hcs: ModuleType) -> None:
    before = _live_operations()
    with pytest.raises(HcsError) as info:
        hcs._run_call(_PROPERTIES, 0x5A5A5A5A, None, 200)  # no such handle
    assert info.value.call == "HcsGetComputeSystemProperties"
    assert _live_operations() == before


def test_a_call_still_running_after_the_slice_comes_back_pending(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 300})
        op, doc = hcs._run_call(_PROPERTIES, h, None, 0)
        assert op != 0 and doc is None
        assert json.loads(wait(hcs, op) or "null")["State"] == "Running"
        hcs.hcs_close_operation(op)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((12, 1, None, 0), ValueError),
        ((-1, 1, None, 0), ValueError),
        ((0, "1", None, 0), TypeError),
        ((0, 1, b"{}", 0), TypeError),
        ((0, 1, None, -1), OverflowError),
        ((0, 1, "a\x00b", 0), ValueError),
    ],
)
def test_bad_arguments_are_refused_alike(hcs: ModuleType, args: tuple[object, ...], error: type[Exception]) -> None:
    before = _live_operations()
    with pytest.raises(error):
        hcs._run_call(*args)
    assert _live_operations() == before


def test_the_pythonic_layer_times_out_with_the_operation_in_hand() -> None:
    config = json.loads(container_config())
    with pyhcs.ComputeSystem.create(new_id(), config) as system:
        system.start()
        emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 1500})
        with pytest.raises(OperationTimeoutError) as info:
            system.properties(timeout=0.3)
        op = info.value.operation
        assert op is not None and op.call == "HcsGetComputeSystemProperties"
        assert system.properties()["State"] == "Running"


def test_the_pythonic_layer_reports_a_failure_like_before() -> None:
    config = json.loads(container_config())
    with pyhcs.ComputeSystem.create(new_id(), config) as system:
        system.start()
        before = _live_operations()
        with pytest.raises(InvalidStateError) as info:
            system.start()
        err = info.value
        assert err.call == "HcsStartComputeSystem" and err.system_id == system.id
        assert err.operation is not None and err.operation.closed
        assert _live_operations() == before


def test_a_wrapped_public_function_turns_the_fused_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = _backend.hcs_get_compute_system_properties

    def spy(*args: Any) -> None:
        calls.append("props")
        original(*args)

    config = json.loads(container_config())
    with pyhcs.ComputeSystem.create(new_id(), config) as system:
        system.start()
        assert operation._fusable("HcsGetComputeSystemProperties") == _PROPERTIES
        monkeypatch.setattr(_backend, "hcs_get_compute_system_properties", spy)
        assert operation._fusable("HcsGetComputeSystemProperties") == -1
        assert system.properties()["State"] == "Running"
        assert calls == ["props"]


def test_aio_queries_answered_at_once_and_later() -> None:
    import asyncio

    from pyhcs import aio

    async def scenario() -> None:
        config = json.loads(container_config())
        async with await aio.ComputeSystem.create(new_id(), config) as system:
            await system.start()
            before = _live_operations()
            quick = await asyncio.gather(*(system.properties() for _ in range(50)))
            assert {p["State"] for p in quick} == {"Running"}
            emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 200})
            slow = await system.properties()  # pending after the initiating call: awaited via the callback
            assert slow["State"] == "Running"
            emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 2000}, reset=True)
            with pytest.raises(OperationTimeoutError):
                await system.properties(timeout=0.2)
            emulator.reset()
            assert (await system.properties())["State"] == "Running"
            await system.terminate()
            assert _live_operations() <= before + 1  # the timed-out one closes itself once HCS completes it

    asyncio.run(scenario())
