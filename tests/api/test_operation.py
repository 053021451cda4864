"""Operation: raw use, results, done callbacks, timeouts, cancel, close, await."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, Operation, OperationType, emulator, errors, raw
from pyhcs._native import _backend as B

from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "op") -> str:
    return _new_id(prefix)


def test_unused_operation() -> None:
    with Operation() as op:
        assert op.id is None
        assert op.type == OperationType.NONE
        assert not op.done()
        with pytest.raises(errors.OperationNotStartedError):
            op.wait(1)
        assert "pending" in repr(op)
    assert op.closed and "closed" in repr(op)
    with pytest.raises(errors.HandleClosedError):
        op.handle  # noqa: B018
    with pytest.raises(errors.HandleClosedError):
        op.wait(1)
    op.close()  # idempotent


def test_raw_use_with_the_objects(system: ComputeSystem) -> None:
    with Operation(call="HcsGetComputeSystemProperties", system_id=system.id) as op:
        raw.hcs_get_compute_system_properties(system.handle, op.handle, '{"PropertyTypes":["Memory"]}')
        doc = json.loads(op.result(10) or "{}")
        assert doc["Id"] == system.id and "Memory" in doc
        assert op.type == OperationType.GET_PROPERTIES
        assert op.id is not None and op.id == op.id
        assert op.exception() is None
    # the result stays readable after close
    assert json.loads(op.result() or "{}")["Id"] == system.id


def test_failure_is_reported_with_the_call(system: ComputeSystem) -> None:
    op = system.submit("start")
    with op:
        err = op.exception(10)
        assert isinstance(err, errors.InvalidStateError)
        assert err.call == "HcsStartComputeSystem" and err.system_id == system.id and err.operation is op
        with pytest.raises(errors.InvalidStateError):
            op.result()


def test_done_callbacks_before_and_after_completion(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 100, "Count": 1})
    seen: list[tuple[str, bool]] = []
    done = threading.Event()
    with system.submit("properties") as op:

        def first(o: Operation) -> None:
            seen.append(("first", o.done()))
            done.set()

        op.add_done_callback(first)
        assert done.wait(10)
        op.add_done_callback(lambda o: seen.append(("late", o.done())))  # runs at once
        assert seen == [("first", True), ("late", True)]


def test_callback_operation_and_a_raising_callback(system: ComputeSystem, caplog: pytest.LogCaptureFixture) -> None:
    with system.submit("properties", callback=True) as op:

        def bad(o: Operation) -> None:
            raise RuntimeError("callback failure")

        op.add_done_callback(bad)
        op.wait(10)
        B.flush_callbacks()
    assert any("done-callback" in r.getMessage() for r in caplog.records)


def test_call_level_timeout_result_is_not_a_wait_timeout(system: ComputeSystem) -> None:
    # The call itself fails with HCS_E_OPERATION_TIMEOUT: that is its result, reported at once,
    # not confused with this wait running out.
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Where": "Result", "HResult": "0x80370118"})
    with pytest.raises(errors.OperationTimeoutError) as exc:
        system.properties(timeout=30)
    assert not hasattr(exc.value, "elapsed")
    op = exc.value.operation
    assert isinstance(op, Operation) and op.done()


def test_wait_again_after_a_timeout(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 300, "Count": 1})
    with system.submit("properties") as op:
        with pytest.raises(errors.TimeoutExpiredError) as exc:
            op.wait(0.01)
        assert exc.value.operation is op and exc.value.operation_id == op.id
        assert json.loads(op.result(10) or "{}")["Id"] == system.id


def test_cancel_not_implemented_by_default(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1})
    with system.submit("properties") as op:
        with pytest.raises(NotImplementedError) as exc:
            op.cancel()
        assert isinstance(exc.value, errors.UnimplementedError)
        assert "not implemented" in str(exc.value)
        assert not op.done()
    # closing a pending operation is safe; its waiters and callbacks learn it was closed
    with pytest.raises(errors.HandleClosedError):
        op.exception(0)


def test_cancel_implemented(system: ComputeSystem) -> None:
    emulator.configure(CancelOperation="Implemented")
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1})
    with system.submit("properties") as op:
        assert op.cancel() is True
        assert isinstance(op.exception(10), errors.Win32CancelledError)
        assert op.cancel() is False


def test_close_wakes_waiters_and_runs_callbacks(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1})
    op = system.submit("properties", callback=True)
    got: list[Any] = []

    def record(o: Operation) -> None:
        try:
            o.result(0)
        except BaseException as e:
            got.append(e)

    op.add_done_callback(record)
    errs: list[BaseException] = []

    def waiter() -> None:
        try:
            op.wait(30)
        except BaseException as e:
            errs.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    op.close()
    t.join(10)
    assert isinstance(errs[0], errors.HandleClosedError)
    assert isinstance(got[0], errors.HandleClosedError)


def test_abandoned_operation_closes_itself(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 200, "Count": 1})
    with pytest.raises(errors.OperationTimeoutError) as exc:
        system.properties(timeout=0.01)
    op = exc.value.operation
    assert isinstance(op, Operation) and not op.closed
    del exc
    op.wait(10)  # a retry still works
    B.flush_callbacks()
    deadline = time.monotonic() + 10
    while not op.closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert json.loads(op.result() or "{}")["Id"] == system.id  # the result was kept


def test_operation_of_closed_owner(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1})
    op = system.submit("properties")
    try:
        threading.Timer(0.05, system.close).start()
        with pytest.raises(errors.HandleClosedError) as exc:
            op.wait(30)
        assert exc.value.system_id == system.id
    finally:
        op.close()


def test_thread_safety_many_waiters(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 100, "Count": 1})
    with system.submit("properties") as op:
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(op.result(10))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(results) == 8 and len(set(results)) == 1


def test_process_info_is_taken_once(system: ComputeSystem) -> None:
    with Operation(call="HcsCreateProcess", process_info=True) as op:
        ph = raw.hcs_create_process(system.handle, '{"CommandLine":"echo x","CreateStdOutPipe":true}', op.handle)
        try:
            pi, _ = op.result_and_process_info(10)
            assert pi.std_output is not None
            taken = op.take_process_info()
            assert taken == pi and op.take_process_info() is None
            with open(pi.std_output, "rb") as f:
                assert f.read() == b"x\n"
        finally:
            raw.hcs_close_process(ph)
    with Operation() as plain:
        raw.hcs_get_compute_system_properties(system.handle, plain.handle, None)
        with pytest.raises(ValueError):
            plain.result_and_process_info(10)


def test_untaken_process_info_is_closed_with_the_operation(system: ComputeSystem) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    op = Operation(process_info=True)
    ph = raw.hcs_create_process(system.handle, '{"CommandLine":"true","CreateStdOutPipe":true}', op.handle)
    op.result_and_process_info(10)
    op.close()  # nobody took the pipe: the operation closes it
    raw.hcs_close_process(ph)
    # the emulator's own descriptors (a pidfd, the reaper's epoll) go away when it has
    # reaped the child: wait for that, the pipe must not be among what is left
    deadline = time.monotonic() + 10
    while len(os.listdir("/proc/self/fd")) > fds:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_await_operation(system: ComputeSystem) -> None:
    async def main() -> str | None:
        with system.submit("properties", callback=True) as op:
            return await op

    assert json.loads(asyncio.run(main()) or "{}")["Id"] == system.id


def test_pending_on_initiate_and_legacy_forms(system: ComputeSystem) -> None:
    emulator.configure(PendingOnInitiate=True, LegacyErrorForms=True)
    assert system.properties()["State"] == "Running"
    with pytest.raises(errors.InvalidStateError) as exc:
        system.start()
    assert exc.value.hresult == 0xC0370105
    assert pyhcs.errors.is_invalid_state(exc.value)


def test_service_disconnect_fails_a_pending_wait(system: ComputeSystem) -> None:
    # Even if HCS never completed the operation, a ServiceDisconnect on its system fails the
    # wait at once (sticky); the emulator also fails the operation itself.
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1})
    op = system.submit("properties")
    try:
        emulator.action("ServiceDisconnect")
        with pytest.raises(errors.ServiceDisconnectedError) as exc:
            op.result(30)
        assert exc.value.system_id == system.id
    finally:
        emulator.action("Reconnect")
        op.close()
