"""Success codes other than S_OK (S_FALSE and every other positive HRESULT) are successes in
both backends, wherever they come back: from an initiating call, from a synchronous call, and as
an operation's result. The emulator's fault injection returns them on request (docs/emulator.md,
"Faults"); each case also runs with a failure code, so the fault is known to fire."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyhcs import errors

from rawutil import container_config, operation

S_FALSE = 1
# Another success code, with more bits set: only the severity bit makes a failure.
SUCCESS_CODES = [S_FALSE, 0x00370001, 0x7FFFFFFF]
E_FAIL = 0x80004005


def _fault(hcs: ModuleType, function: str, where: str, hresult: int) -> None:
    """Replaces the fault rules with this one."""
    rule = {"Function": function, "Where": where, "HResult": f"0x{hresult:08X}"}
    settings = {"Reset": True, "Faults": [rule]}
    hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": settings}))


def _fired(hcs: ModuleType) -> int:
    text = hcs.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorFaults"]}))
    rules: list[dict[str, Any]] = json.loads(text)["Properties"][0]
    return sum(int(r.get("Fired", 0)) for r in rules)


def _initiate(function: str) -> Callable[[ModuleType, int, Path], None]:
    def call(hcs: ModuleType, op: int, tmp: Path) -> None:
        if function == "HcsEnumerateComputeSystems":
            hcs.hcs_enumerate_compute_systems(None, op)
        else:
            hcs.hcs_create_compute_system(f"s-false-{tmp.name}", container_config(), op)

    return call


@pytest.mark.parametrize("code", SUCCESS_CODES)
@pytest.mark.parametrize("function", ["HcsEnumerateComputeSystems", "HcsCreateComputeSystem"])
def test_initiating_call_returning_a_success_code_succeeds(
    hcs: ModuleType, function: str, code: int, tmp_path: Path
) -> None:
    call = _initiate(function)
    with operation(hcs) as op:
        _fault(hcs, function, "Call", E_FAIL)
        with pytest.raises(errors.HcsError) as info:
            call(hcs, op, tmp_path)
        assert info.value.hresult == E_FAIL
    with operation(hcs) as op:
        _fault(hcs, function, "Call", code)
        before = _fired(hcs)
        call(hcs, op, tmp_path)  # S_FALSE from the call: initiated, no exception
        assert _fired(hcs) == before + 1


@pytest.mark.parametrize("code", SUCCESS_CODES)
def test_operation_completing_with_a_success_code_succeeds(hcs: ModuleType, code: int) -> None:
    _fault(hcs, "HcsEnumerateComputeSystems", "Result", code)
    with operation(hcs) as op:
        hcs.hcs_enumerate_compute_systems(None, op)
        hcs.hcs_wait_for_operation_result(op, 10_000)  # no exception
        hcs.hcs_get_operation_result(op)
    assert _fired(hcs) == 1
    # the same with a failure: every one of those raises
    _fault(hcs, "HcsEnumerateComputeSystems", "Result", E_FAIL)
    with operation(hcs) as op:
        hcs.hcs_enumerate_compute_systems(None, op)
        with pytest.raises(errors.HcsError):
            hcs.hcs_wait_for_operation_result(op, 10_000)


# Synchronous functions (no operation): a Result fault makes the call itself return the code.
SYNC_CALLS: dict[str, Callable[[ModuleType, Path], object]] = {
    "HcsGetServiceProperties": lambda hcs, tmp: hcs.hcs_get_service_properties(None),
    "HcsOpenComputeSystem": lambda hcs, tmp: hcs.hcs_open_compute_system("no-such-system"),
    "HcsCreateEmptyGuestStateFile": lambda hcs, tmp: hcs.hcs_create_empty_guest_state_file(str(tmp / "g.vmgs")),
    "HcsGrantVmAccess": lambda hcs, tmp: hcs.hcs_grant_vm_access("vm", str(tmp / "f")),
    "HcsDestroyLayer": lambda hcs, tmp: hcs.hcs_destroy_layer(str(tmp / "no-layer")),
    "HcsSubmitWerReport": lambda hcs, tmp: hcs.hcs_submit_wer_report("{}"),
}


@pytest.mark.parametrize("function", sorted(SYNC_CALLS))
def test_synchronous_call_returning_a_success_code_succeeds(hcs: ModuleType, function: str, tmp_path: Path) -> None:
    call = SYNC_CALLS[function]
    _fault(hcs, function, "Result", E_FAIL)
    with pytest.raises(errors.HcsError) as info:
        call(hcs, tmp_path)
    assert info.value.hresult == E_FAIL
    _fault(hcs, function, "Result", S_FALSE)
    call(hcs, tmp_path)  # no exception
    assert _fired(hcs) == 1
