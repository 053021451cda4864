"""Operations at the raw level (spec section 1), on both backends."""

from __future__ import annotations

import json
import threading
import time
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyhcs import errors
from pyhcs._native._types import HCS_INVALID_OPERATION_ID, EventOptions, EventType, HcsEvent, OperationType

from rawutil import (
    add_faults,
    container_config,
    ignore_completion,
    new_id,
    operation,
    running_system,
    set_switches,
    wait,
)

BOGUS = [0x12345, 0xDEADBEEF0, (1 << 63) | 1, 7]


def test_fresh_operation_is_not_started(hcs: ModuleType) -> None:
    with operation(hcs) as op:
        assert op != 0
        assert hcs.hcs_get_operation_type(op) == OperationType.NONE
        assert hcs.hcs_get_operation_id(op) == HCS_INVALID_OPERATION_ID
        assert hcs.hcs_get_compute_system_from_operation(op) == 0
        assert hcs.hcs_get_process_from_operation(op) == 0
        with pytest.raises(errors.OperationNotStartedError):
            hcs.hcs_get_operation_result(op)
        with pytest.raises(errors.OperationNotStartedError):
            hcs.hcs_wait_for_operation_result(op, 10)


def test_context_round_trip(hcs: ModuleType) -> None:
    op = hcs.hcs_create_operation(1234)
    try:
        assert hcs.hcs_get_operation_context(op) == 1234
        hcs.hcs_set_operation_context(op, 99)
        assert hcs.hcs_get_operation_context(op) == 99
    finally:
        hcs.hcs_close_operation(op)


def test_reuse_after_completion_changes_type_and_id(hcs: ModuleType) -> None:
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), container_config(), op)
        try:
            assert wait(hcs, op) is None
            assert hcs.hcs_get_operation_type(op) == OperationType.CREATE
            first = hcs.hcs_get_operation_id(op)
            assert hcs.hcs_get_compute_system_from_operation(op) == h
            hcs.hcs_start_compute_system(h, op)
            wait(hcs, op)
            assert hcs.hcs_get_operation_type(op) == OperationType.START
            assert hcs.hcs_get_operation_id(op) != first
            hcs.hcs_get_compute_system_properties(h, op, None)
            props = json.loads(wait(hcs, op) or "{}")
            assert props["State"] == "Running"
            # repeated Get/Wait return the same completed result, a fresh copy each time
            assert json.loads(hcs.hcs_get_operation_result(op) or "{}")["Id"] == props["Id"]
            hcs.hcs_terminate_compute_system(h, op)
            wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)


def test_pending_operation_cannot_be_reused_and_wait_times_out(hcs: ModuleType) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        add_faults(hcs, {"Function": "HcsGetComputeSystemProperties", "Hang": True})
        hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.OperationPendingError):
            hcs.hcs_get_operation_result(op)
        with pytest.raises(errors.OperationTimeoutError) as exc:
            hcs.hcs_wait_for_operation_result(op, 30)
        assert isinstance(exc.value, TimeoutError)
        with pytest.raises(errors.OperationTimeoutError):
            hcs.hcs_wait_for_operation_result(op, 0)
        with pytest.raises(errors.OperationAlreadyStartedError):
            hcs.hcs_start_compute_system(h, op)
        # the documented behaviour of cancel is E_NOTIMPL
        with pytest.raises(errors.UnimplementedError):
            hcs.hcs_cancel_operation(op)
    # closing a hung operation is allowed and frees it


def test_cancel_when_implemented(hcs: ModuleType) -> None:
    set_switches(hcs, CancelOperation="Implemented")
    with running_system(hcs) as h, operation(hcs) as op:
        with pytest.raises(errors.OperationNotStartedError):
            hcs.hcs_cancel_operation(op)
        add_faults(hcs, {"Function": "HcsGetComputeSystemProperties", "Hang": True})
        hcs.hcs_get_compute_system_properties(h, op, None)
        hcs.hcs_cancel_operation(op)
        with pytest.raises(errors.CancelledError):
            hcs.hcs_wait_for_operation_result(op, 1000)
        with pytest.raises(errors.OperationAlreadyCancelledError):
            hcs.hcs_cancel_operation(op)


def test_process_info_only_for_process_operations(hcs: ModuleType) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_wait_for_operation_result_and_process_info(op, 1000)
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_get_operation_result_and_process_info(op)


@pytest.mark.parametrize("bogus", BOGUS)
def test_bogus_operation_handles_are_errors(hcs: ModuleType, bogus: int) -> None:
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_get_operation_result(bogus)
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_wait_for_operation_result(bogus, 10)
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_set_operation_context(bogus, 1)
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_cancel_operation(bogus)
    assert hcs.hcs_get_operation_type(bogus) == OperationType.NONE
    assert hcs.hcs_get_operation_id(bogus) == HCS_INVALID_OPERATION_ID
    assert hcs.hcs_get_operation_context(bogus) == 0
    assert hcs.hcs_get_compute_system_from_operation(bogus) == 0
    hcs.hcs_close_operation(bogus)  # void: nothing to report, nothing to crash
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_enumerate_compute_systems(None, bogus)


def test_closed_operation_is_an_invalid_handle(hcs: ModuleType) -> None:
    op = hcs.hcs_create_operation()
    hcs.hcs_close_operation(op)
    hcs.hcs_close_operation(op)  # twice is harmless
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_get_operation_result(op)
    # a new operation never reuses the exact handle value of a closed one
    op2 = hcs.hcs_create_operation()
    try:
        assert op2 != op
    finally:
        hcs.hcs_close_operation(op2)


def test_completion_callback_runs_with_context(hcs: ModuleType) -> None:
    done = threading.Event()
    seen: list[tuple[int, int, str | None, int]] = []

    def on_done(op: int, ctx: int) -> None:
        seen.append((op, ctx, hcs.hcs_get_operation_result(op), threading.get_ident()))
        hcs.hcs_close_operation(op)  # closing inside the callback is legal
        done.set()

    op = hcs.hcs_create_operation(42, on_done)
    assert hcs.hcs_get_operation_context(op) == 42
    hcs.hcs_enumerate_compute_systems(None, op)
    assert done.wait(10)
    (got_op, ctx, result, tid) = seen[0]
    assert got_op == op and ctx == 42
    assert isinstance(json.loads(result or "null"), list)
    assert tid != threading.get_ident()
    with pytest.raises(errors.InvalidHandleError):
        hcs.hcs_get_operation_result(op)


def test_no_completion_callback_after_close(hcs: ModuleType) -> None:
    calls: list[int] = []
    def on_completion(o: int, c: int) -> None:
        calls.append(o)

    op = hcs.hcs_create_operation(1, on_completion)
    with running_system(hcs) as h:
        add_faults(hcs, {"Function": "HcsGetComputeSystemProperties", "DelayMs": 200})
        hcs.hcs_get_compute_system_properties(h, op, None)
        hcs.hcs_close_operation(op)
        time.sleep(0.4)
        hcs.flush_callbacks()
    assert calls == []


def test_close_in_flight_lets_the_call_finish(hcs: ModuleType) -> None:
    sid = new_id()
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(sid, container_config(), op)
        wait(hcs, op)
    add_faults(hcs, {"Function": "HcsStartComputeSystem", "DelayMs": 100})
    fire_and_forget = hcs.hcs_create_operation()
    hcs.hcs_start_compute_system(h, fire_and_forget)
    hcs.hcs_close_operation(fire_and_forget)
    try:
        deadline = time.monotonic() + 5
        state = None
        with operation(hcs) as op:
            while time.monotonic() < deadline:
                hcs.hcs_get_compute_system_properties(h, op, None)
                state = json.loads(wait(hcs, op) or "{}")["State"]
                if state == "Running":
                    break
                time.sleep(0.02)
            assert state == "Running"
            hcs.hcs_terminate_compute_system(h, op)
            wait(hcs, op)
    finally:
        hcs.hcs_close_compute_system(h)


def test_operation_callbacks_routed_through_the_system_callback(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        events: list[tuple[int, int]] = []
        got = threading.Event()

        def on_event(ev: HcsEvent, ctx: int) -> None:
            events.append((ev.type, ev.operation))
            if ev.type == EventType.OPERATION_CALLBACK:
                got.set()

        hcs.hcs_set_compute_system_callback(h, EventOptions.ENABLE_OPERATION_CALLBACKS, 5, on_event)
        with_cb = hcs.hcs_create_operation(1, ignore_completion)
        try:
            with pytest.raises(errors.OperationSystemCallbackAlreadySetError):
                hcs.hcs_get_compute_system_properties(h, with_cb, None)
        finally:
            hcs.hcs_close_operation(with_cb)
        op = hcs.hcs_create_operation()
        hcs.hcs_get_compute_system_properties(h, op, None)
        assert got.wait(10)
        assert (EventType.OPERATION_CALLBACK, op) in events
        assert json.loads(hcs.hcs_get_operation_result(op) or "{}")["State"] == "Running"
        hcs.hcs_close_operation(op)  # the event's receiver owns the operation
        hcs.hcs_set_compute_system_callback(h, 0, 0, None)


def test_pending_on_initiate_quirk(hcs: ModuleType) -> None:
    set_switches(hcs, PendingOnInitiate=True)
    # initiating calls return HCS_E_OPERATION_PENDING; the binding treats it as "started"
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_get_compute_system_properties(h, op, None)
        assert json.loads(wait(hcs, op) or "{}")["State"] == "Running"


def test_null_success_documents_quirk(hcs: ModuleType) -> None:
    set_switches(hcs, NullSuccessDocuments=True)
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_get_compute_system_properties(h, op, None)
        assert wait(hcs, op) is None


def test_fault_in_call_and_in_result(hcs: ModuleType) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        add_faults(
            hcs,
            {"Function": "HcsGetComputeSystemProperties", "Where": "Call", "HResult": "0x80370109", "Count": 1},
            {"Function": "HcsPauseComputeSystem", "Where": "Result", "HResult": "0x80370105", "Count": 1},
        )
        with pytest.raises(errors.ConnectionTimeoutError):
            hcs.hcs_get_compute_system_properties(h, op, None)
        hcs.hcs_get_compute_system_properties(h, op, None)  # the fault fired once
        wait(hcs, op)
        hcs.hcs_pause_compute_system(h, op, None)
        with pytest.raises(errors.InvalidStateError) as exc:
            wait(hcs, op)
        assert "Injected fault" in exc.value.message


def test_legacy_error_forms_classify_alike(hcs: ModuleType) -> None:
    set_switches(hcs, LegacyErrorForms=True)
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_start_compute_system(h, op)
        with pytest.raises(errors.InvalidStateError) as exc:
            wait(hcs, op)
        assert exc.value.hresult == 0xC0370105
        assert exc.value.normalized_hresult == 0x80370105


@given(st.lists(st.sampled_from(["enumerate", "get", "wait0", "close", "ctx"]), max_size=20))
def test_random_operation_sequences_never_crash(hcs: ModuleType, steps: list[str]) -> None:
    op = hcs.hcs_create_operation()
    closed = False
    for step in steps:
        try:
            if step == "enumerate":
                hcs.hcs_enumerate_compute_systems(None, op)
            elif step == "get":
                hcs.hcs_get_operation_result(op)
            elif step == "wait0":
                hcs.hcs_wait_for_operation_result(op, 0)
            elif step == "close":
                hcs.hcs_close_operation(op)
                closed = True
            elif step == "ctx":
                hcs.hcs_set_operation_context(op, 3)
                assert hcs.hcs_get_operation_context(op) == 3
        except errors.HcsError as exc:
            expected = (
                errors.OperationNotStartedError,
                errors.InvalidHandleError,
                errors.OperationPendingError,
                errors.OperationTimeoutError,
            )
            assert isinstance(exc, expected), exc
            if isinstance(exc, errors.InvalidHandleError):
                assert closed
    hcs.hcs_close_operation(op)
