"""ComputeSystem: creation, the HCS state machine, errors, timeouts, stop(), close rules.

Runs on whichever backend PYHCS_BACKEND selects (CI runs the suite once per backend)."""

# One test times a fake call through the private call accounting (pyhcs._log).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import gc
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, _log, emulator, errors
from pyhcs._native import _backend as B

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "sys") -> str:
    return _new_id(prefix)


def hang(function: str, **extra: Any) -> None:
    emulator.add_faults({"Function": function, "Hang": True, "Count": 1, **extra})


# ----------------------------------------------------------------------------- creation


def test_create_open_enumerate_close() -> None:
    sid = new_id()
    with ComputeSystem.create(sid, CONFIG) as s:
        assert s.id == sid and not s.closed
        assert s.state == "Created"
        with ComputeSystem.open(sid) as other:
            assert other.properties()["Id"] == sid
            assert other.exit_status is None
        found = ComputeSystem.enumerate(ids=[sid])
        assert [p["Id"] for p in found] == [sid]
        assert found[0]["Owner"] == "pyhcs-tests"
        assert ComputeSystem.enumerate({"Ids": [sid]}) == found
        assert ComputeSystem.enumerate(owners=["nobody-owns-this"]) == []
        assert sid in [p["Id"] for p in ComputeSystem.enumerate()]
    assert s.closed


def test_enumerate_rejects_query_and_filters_together() -> None:
    with pytest.raises(TypeError):
        ComputeSystem.enumerate({"Ids": ["a"]}, ids=["a"])


def test_config_forms_and_terminate_on_close_default() -> None:
    # dict: ShouldTerminateOnLastHandleClosed is added
    with ComputeSystem.create(new_id(), CONFIG) as s:
        assert s.properties("TerminateOnLastHandleClosed")["TerminateOnLastHandleClosed"] is True
    # JSON text: also added; an explicit false is kept
    text = json.dumps({**CONFIG, "ShouldTerminateOnLastHandleClosed": False})
    with ComputeSystem.create(new_id(), text) as s:
        assert s.properties("TerminateOnLastHandleClosed")["TerminateOnLastHandleClosed"] is False
        s.terminate()  # it would outlive its handle otherwise
    with ComputeSystem.create(new_id(), json.dumps(CONFIG).encode()) as s:
        assert s.properties(query={"PropertyTypes": ["TerminateOnLastHandleClosed"]})[
            "TerminateOnLastHandleClosed"
        ] is True


def test_pydantic_model_config() -> None:
    schema = pytest.importorskip("pyhcs.schema")
    model = schema.ComputeSystem.model_validate(CONFIG)
    with ComputeSystem.create(new_id(), model) as s:
        assert s.properties("TerminateOnLastHandleClosed")["TerminateOnLastHandleClosed"] is True


def test_not_a_document() -> None:
    with pytest.raises(TypeError):
        ComputeSystem.create(new_id(), 42)


def test_last_close_terminates_the_system() -> None:
    sid = new_id()
    s = ComputeSystem.create(sid, CONFIG)
    s.start()
    s.close()
    # the emulator terminates it asynchronously; then the id is free again
    deadline = time.monotonic() + 10
    while True:
        try:
            with ComputeSystem.open(sid):
                pass
        except errors.SystemNotFoundError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_duplicate_id_is_file_exists_with_context() -> None:
    sid = new_id()
    with ComputeSystem.create(sid, CONFIG):
        with pytest.raises(errors.SystemAlreadyExistsError) as exc:
            ComputeSystem.create(sid, CONFIG)
    err = exc.value
    assert isinstance(err, FileExistsError) and isinstance(err, pyhcs.HcsError)
    assert err.system_id == sid
    assert err.call == "HcsCreateComputeSystem"
    text = str(err)
    assert "HCS_E_SYSTEM_ALREADY_EXISTS" in text and sid in text and "HcsCreateComputeSystem" in text
    assert err.operation is not None  # the Operation that carried the failure


@pytest.mark.parametrize(
    "config, error",
    [
        ({"SchemaVersion": {"Major": 2, "Minor": 1}}, errors.InvalidJsonError),
        ("{not json", errors.InvalidJsonError),
        ({**CONFIG, "Container": None, "VirtualMachine": {"GuestState": {"GuestStateFilePath": "/nonexistent.vmgs"}}},
         errors.Win32FileNotFoundError),
    ],
)
def test_invalid_configuration(config: dict[str, Any] | str, error: type[errors.HcsError]) -> None:
    if isinstance(config, dict) and config.get("Container", 1) is None:
        config = {k: v for k, v in config.items() if k != "Container"}
    with pytest.raises(error) as exc:
        ComputeSystem.create(new_id(), config)
    assert exc.value.result is not None  # the ResultError document, parsed
    assert exc.value.message


def test_open_missing_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError) as exc:
        ComputeSystem.open(new_id("missing"))
    assert isinstance(exc.value, errors.SystemNotFoundError)
    assert exc.value.call == "HcsOpenComputeSystem"


def test_initiating_call_failure_leaks_nothing() -> None:
    emulator.add_faults({"Function": "HcsCreateComputeSystem", "Where": "Call", "HResult": "0x8037011B"})
    with pytest.raises(PermissionError) as exc:
        ComputeSystem.create(new_id(), CONFIG)
    assert isinstance(exc.value, errors.AccessDeniedError)


def test_both_code_forms_classify_alike() -> None:
    sid = new_id()
    with ComputeSystem.create(sid, CONFIG):
        emulator.configure(LegacyErrorForms=True, PendingOnInitiate=True)
        with pytest.raises(errors.SystemAlreadyExistsError) as exc:
            ComputeSystem.create(sid, CONFIG)
        assert exc.value.hresult == 0xC037010F
        with pytest.raises(errors.SystemNotFoundError):
            ComputeSystem.open(new_id("missing"))


# ----------------------------------------------------------------------------- lifecycle


def test_lifecycle_states(system: ComputeSystem, tmp_path: Path) -> None:
    assert system.state == "Running"
    with pytest.raises(errors.InvalidStateError) as exc:
        system.start()
    assert exc.value.system_id == system.id and "HcsStartComputeSystem" in str(exc.value)
    with pytest.raises(errors.InvalidStateError):
        system.save({"SaveType": "ToFile", "SaveStateFilePath": str(tmp_path / "x.vmrs")})
    with pytest.raises(errors.InvalidStateError):
        system.resume()
    system.pause()
    assert system.state == "Paused"
    with pytest.raises(errors.InvalidStateError):
        system.pause()
    with pytest.raises(errors.InvalidStateError):
        system.shutdown()
    system.save({"SaveType": "ToFile", "SaveStateFilePath": str(tmp_path / "x.vmrs")})
    assert (tmp_path / "x.vmrs").exists()
    assert pyhcs.vm.processor_compatibility(tmp_path / "x.vmrs")["ProcessorFeatures"] is not None
    system.resume()
    assert system.terminate() is True
    status = system.wait_exit(timeout=10)
    assert status.exit_type == "ForcedExit" and status.source in ("event", "wait")
    assert system.exit_status == status
    assert system.state == "Stopped"
    assert system.terminate() is False  # idempotent
    assert system.shutdown() is False
    with pytest.raises(errors.SystemAlreadyStoppedError):
        system.pause()
    with pytest.raises(errors.SystemAlreadyStoppedError):
        system.modify({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 64})


def test_created_system_cannot_shut_down_but_terminates() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        with pytest.raises(errors.InvalidStateError):
            s.shutdown()
        with pytest.raises(errors.InvalidStateError):
            s.pause()
        with pytest.raises(errors.InvalidStateError):
            s.crash()
        assert s.terminate() is True
        assert s.wait_exit(10).exit_type == "ForcedExit"


def test_graceful_shutdown(system: ComputeSystem) -> None:
    assert system.shutdown({"Mechanism": "IntegrationService", "Type": "Shutdown"}) is True
    status = system.wait_exit(10)
    assert status.exit_type == "GracefulExit" and status.status == 0 and not status.unexpected
    assert status.error() is None


def test_modify_and_properties(system: ComputeSystem) -> None:
    system.modify({"ResourcePath": "Container/Memory/SizeInMB", "RequestType": "Update", "Settings": 256})
    props = system.properties("Memory", "Statistics", "ProcessList")
    assert props["Id"] == system.id and props["State"] == "Running"
    assert "Statistics" in props and isinstance(props["ProcessList"], list)
    with pytest.raises(errors.InvalidJsonError):
        system.properties("NoSuchProperty")
    with pytest.raises(errors.NotSupportedError):
        system.modify({"ResourcePath": "VirtualMachine/Devices/Scsi", "Settings": {}})
    with pytest.raises(TypeError):
        system.properties("Memory", query={"PropertyTypes": []})


def test_empty_properties_document_is_an_error(system: ComputeSystem) -> None:
    emulator.configure(NullSuccessDocuments=True)
    with pytest.raises(errors.UnexpectedFailureError) as exc:
        system.properties()
    assert "no document" in str(exc.value)


def test_crash_events_and_unexpected_exit(system: ComputeSystem) -> None:
    stream = system.events(timeout=10)
    system.crash({"Type": "CrashGuest"})
    types = [e.type for e in stream]
    assert types == [pyhcs.EventType.SYSTEM_CRASH_INITIATED, pyhcs.EventType.SYSTEM_CRASH_REPORT,
                     pyhcs.EventType.SYSTEM_EXITED]
    status = system.wait_exit(1)
    assert status.unexpected and isinstance(status.error(system_id=system.id), errors.UnexpectedExitError)


def test_guest_dies_by_itself(system: ComputeSystem) -> None:
    emulator.action("UnexpectedExit", SystemId=system.id)
    status = system.wait_exit(10)
    assert status.exit_type == "UnexpectedExit"
    assert status.attribution and status.document


def test_submit_returns_an_operation(system: ComputeSystem) -> None:
    with system.submit("properties", {"PropertyTypes": ["Statistics"]}) as op:
        doc = json.loads(op.result(10) or "{}")
        assert "Statistics" in doc
        assert op.done() and op.id is not None
    with pytest.raises(ValueError):
        system.submit("explode")


# ----------------------------------------------------------------------------- stop()


def test_stop_graceful(system: ComputeSystem) -> None:
    status = system.stop(grace=10)
    assert status.exit_type == "GracefulExit"
    assert system.stop() == status  # already stopped: the same status


def test_stop_escalates_when_the_guest_ignores_shutdown(system: ComputeSystem, caplog: pytest.LogCaptureFixture) -> None:
    emulator.configure(IgnoreShutdown=True)
    with caplog.at_level(logging.INFO, logger="pyhcs"):
        status = system.stop(grace=0.3, timeout=30)
    assert status.exit_type == "ForcedExit"
    assert any("terminating" in r.getMessage() for r in caplog.records)


def test_stop_paused_and_created_systems_terminates() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        assert s.stop(grace=5).exit_type == "ForcedExit"
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        s.pause()
        assert s.stop(grace=5).exit_type == "ForcedExit"


def test_stop_when_shutdown_cannot_start(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsShutDownComputeSystem", "Where": "Call", "HResult": "0x80370108"})
    assert system.stop(grace=5).exit_type == "ForcedExit"


# ----------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    "action, function",
    [
        ("start", "HcsStartComputeSystem"),
        ("properties", "HcsGetComputeSystemProperties"),
        ("pause", "HcsPauseComputeSystem"),
        ("modify", "HcsModifyComputeSystem"),
        ("terminate", "HcsTerminateComputeSystem"),
        ("shutdown", "HcsShutDownComputeSystem"),
        ("crash", "HcsCrashComputeSystem"),
        ("resume", "HcsResumeComputeSystem"),
        ("save", "HcsSaveComputeSystem"),
    ],
)
def test_each_wait_times_out_and_leaves_the_operation_alive(action: str, function: str, tmp_path: Path) -> None:
    emulator.configure(CancelOperation="Implemented")
    with ComputeSystem.create(new_id(), CONFIG) as s:
        if action != "start":
            s.start()
        if action in ("resume", "save"):
            s.pause()
        hang(function)
        call = getattr(s, action)
        arguments: dict[str, list[Any]] = {
            "modify": [{"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1}],
            "save": [{"SaveType": "ToFile", "SaveStateFilePath": str(tmp_path / "s.vmrs")}],
        }
        args = arguments.get(action, [])
        with pytest.raises(errors.TimeoutExpiredError) as exc:
            call(*args, timeout=0.05)
        err = exc.value
        assert isinstance(err, errors.OperationTimeoutError)
        assert err.call == function and err.system_id == s.id
        assert err.elapsed >= 0.05 and err.timeout == 0.05
        assert err.operation_id is not None and str(err.operation_id) in str(err)
        op = err.operation
        assert isinstance(op, pyhcs.Operation) and not op.done() and not op.closed
        with pytest.raises(errors.OperationTimeoutError):
            op.wait(0.01)  # a retry times out again: still running
        assert op.cancel() is True
        with pytest.raises(errors.Win32CancelledError):
            op.result(5)
        assert op.cancel() is False
        # it was abandoned: it closed itself once HCS completed it
        B.flush_callbacks()
        assert op.closed


def test_enumerate_timeout() -> None:
    emulator.configure(CancelOperation="Implemented")
    hang("HcsEnumerateComputeSystems")
    with pytest.raises(errors.OperationTimeoutError) as exc:
        ComputeSystem.enumerate(timeout=0.05)
    op = exc.value.operation
    assert isinstance(op, pyhcs.Operation) and op.call == "HcsEnumerateComputeSystems"
    assert op.cancel() is True
    B.flush_callbacks()
    assert op.closed


def test_wait_exit_timeout_keeps_the_system(system: ComputeSystem) -> None:
    with pytest.raises(errors.OperationTimeoutError) as exc:
        system.wait_exit(timeout=0)
    assert "still running" in str(exc.value)
    assert system.state == "Running"


def test_default_timeouts(system: ComputeSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    system.default_timeout = 0.01
    with pytest.raises(errors.OperationTimeoutError) as exc:
        system.wait_exit()
    assert isinstance(exc.value, errors.TimeoutExpiredError) and exc.value.timeout == 0.01
    system.default_timeout = pyhcs.DEFAULT
    monkeypatch.setattr(pyhcs, "DEFAULT_TIMEOUT", 0.02)
    with pytest.raises(errors.TimeoutExpiredError) as exc2:
        system.wait_exit()
    assert exc2.value.timeout == 0.02
    # None is no limit, as in subprocess: the wait outlives the package default
    system.default_timeout = None
    timer = threading.Timer(0.3, system.terminate)
    timer.start()
    try:
        assert system.wait_exit().exit_type == "ForcedExit"
    finally:
        timer.join()
    with pytest.raises(ValueError):
        system.wait_exit(timeout=-1)
    with pytest.raises(ValueError):
        system.wait_exit(timeout=math.nan)


def test_env_default_timeout() -> None:
    code = "import pyhcs; print(pyhcs.DEFAULT_TIMEOUT)"
    env = {**os.environ, "PYHCS_TIMEOUT": "12.5", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12.5"
    env["PYHCS_TIMEOUT"] = "inf"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "inf"


def test_emulator_module_is_there_after_import_without_the_library() -> None:
    code = (
        "import sys, pyhcs; mod = pyhcs.emulator; "
        "assert 'pyhcs._native._backend' not in sys.modules, 'the library was loaded'; "
        "print(mod.__name__, mod.active())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pyhcs.emulator True"


def test_create_timeout_hands_over_the_half_created_system() -> None:
    emulator.add_faults({"Function": "HcsCreateComputeSystem", "DelayMs": 300, "Count": 1})
    sid = new_id()
    with pytest.raises(errors.OperationTimeoutError) as exc:
        ComputeSystem.create(sid, CONFIG, timeout=0.01)
    assert isinstance(exc.value, errors.TimeoutExpiredError)
    system = exc.value.system
    assert isinstance(system, ComputeSystem)
    del exc
    with system:
        system.wait_created(10)
        assert system.state == "Created"


# ----------------------------------------------------------------------------- closing


def test_calls_after_close_raise_locally() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    s.close()
    s.close()  # idempotent
    before = emulator.call_counts()
    for call in (s.start, s.properties, s.pause, s.terminate, lambda: s.create_process("true"), lambda: s.handle):
        with pytest.raises(errors.HandleClosedError) as exc:
            call()
        assert exc.value.system_id == s.id and "closed" in str(exc.value)
    after = emulator.call_counts()
    native = ("HcsStartComputeSystem", "HcsGetComputeSystemProperties", "HcsPauseComputeSystem",
              "HcsTerminateComputeSystem", "HcsCreateProcess")
    assert {k: after.get(k, 0) for k in native} == {k: before.get(k, 0) for k in native}
    with pytest.raises(errors.HandleClosedError):
        s.wait_exit(1)
    assert list(s.events(timeout=1)) == []


def test_close_wakes_a_waiter() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    s.start()
    result: list[BaseException] = []

    def waiter() -> None:
        try:
            s.wait_exit(timeout=30)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    while not s._hub.cond._waiters:  # type: ignore[attr-defined]  # Condition's private waiter list: not in typeshed
        time.sleep(0.001)
    s.close()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(result[0], errors.HandleClosedError)


def test_close_waits_for_an_operation_wait_in_flight() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    hang("HcsStartComputeSystem")
    result: list[BaseException] = []

    def starter() -> None:
        try:
            s.start(timeout=30)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=starter)
    t.start()
    time.sleep(0.05)
    s.close()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(result[0], errors.HandleClosedError)


def test_with_block_error_terminates() -> None:
    sid = new_id()
    other: ComputeSystem | None = None
    with pytest.raises(RuntimeError):
        with ComputeSystem.create(sid, {**CONFIG, "ShouldTerminateOnLastHandleClosed": False}) as s:
            s.start()
            other = ComputeSystem.open(sid)
            raise RuntimeError("boom")
    assert other is not None
    with other:
        assert other.wait_exit(10).exit_type == "ForcedExit"


def test_open_sees_an_exit_that_happened_before() -> None:
    sid = new_id()
    with ComputeSystem.create(sid, CONFIG) as s:
        s.start()
        s.terminate()
        s.wait_exit(10)
        with ComputeSystem.open(sid) as late:
            assert late.exit_status is not None and late.exit_status.source == "wait"
            assert late.wait_exit(0).exit_type == "ForcedExit"


def test_del_warns_and_closes() -> None:
    sid = new_id()
    s = ComputeSystem.create(sid, CONFIG)
    handle_count = emulator.statistics()["SystemHandles"]
    with pytest.warns(ResourceWarning, match="unclosed"):
        del s
        gc.collect()
    assert emulator.statistics()["SystemHandles"] == handle_count - 1


def test_del_does_nothing_in_a_forked_child() -> None:
    script = textwrap.dedent(
        """
        import gc, os, sys, warnings
        import pyhcs
        from pyhcs import emulator
        warnings.simplefilter("error")
        s = pyhcs.ComputeSystem.create("fork-%d" % os.getpid(), {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}})
        pid = os.fork()
        if pid == 0:
            try:
                assert s.closed
                try:
                    s.start()
                except pyhcs.errors.HandleClosedError as e:
                    assert "parent process" in str(e)
                del s
                gc.collect()   # must not warn (warnings are errors) nor close anything
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        assert emulator.statistics()["SystemHandles"] == 1   # the parent's handle is intact
        s.start()
        s.close()
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_nothing_happens_at_interpreter_exit() -> None:
    script = textwrap.dedent(
        """
        import pyhcs
        s = pyhcs.ComputeSystem.create("exit-test", {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}})
        s.start()
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-W", "error", "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ResourceWarning" not in out.stderr


# ----------------------------------------------------------------------------- disconnect


def test_service_disconnect_fails_waits_and_ends_streams(system: ComputeSystem) -> None:
    stream = system.events(timeout=10)
    emulator.action("ServiceDisconnect")
    try:
        assert [e.type for e in stream] == [pyhcs.EventType.SERVICE_DISCONNECT]
        with pytest.raises(errors.ServiceDisconnectedError) as exc:
            system.wait_exit(10)
        assert exc.value.system_id == system.id
        with pytest.raises(errors.ServiceDisconnectedError):
            system.properties()
    finally:
        emulator.action("Reconnect")


# ----------------------------------------------------------------------------- logging


def test_slow_call_watchdog_warns_and_never_abandons(caplog: pytest.LogCaptureFixture) -> None:
    warned = threading.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING and "has not returned" in record.getMessage():
                warned.set()

    spy = Spy()
    logging.getLogger("pyhcs").addHandler(spy)
    old = pyhcs.slow_call_threshold()
    try:
        pyhcs.set_slow_call_threshold(0.01)
        with caplog.at_level(logging.INFO, logger="pyhcs"):
            # The "native call" returns only once the watchdog has reported it: it is never
            # abandoned, the caller simply keeps waiting.
            assert _log.timed("FakeSlowCall", "system 'x'", lambda: warned.wait(30)) is True
        messages = [r.getMessage() for r in caplog.records]
        assert any("FakeSlowCall (system 'x') has not returned" in m for m in messages)
        assert any("FakeSlowCall (system 'x') returned after" in m for m in messages)
        stats = pyhcs.call_statistics()["FakeSlowCall"]
        assert stats["count"] >= 1 and stats["max"] >= stats["mean"] > 0
    finally:
        pyhcs.set_slow_call_threshold(old)
        logging.getLogger("pyhcs").removeHandler(spy)
    with pytest.raises(ValueError):
        pyhcs.set_slow_call_threshold(0)


def test_debug_log_of_native_calls(system: ComputeSystem, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pyhcs"):
        system.properties()
    assert any("HcsGetComputeSystemProperties" in r.getMessage() and system.id in r.getMessage()
               for r in caplog.records)
    pyhcs.reset_call_statistics()
    assert pyhcs.call_statistics() == {}
