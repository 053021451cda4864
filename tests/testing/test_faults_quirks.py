"""Every fault and quirk switch of the emulator, observed twice: through the raw API of both
backends (the ``hcs`` fixture, with :class:`pyhcs.testing.Faults` talking through that same
backend) and through the Pythonic API (``faults`` and ``compute_system_factory`` of the
pytest plugin, run on both backends by the ``pyhcs_backends`` marker).

Timing: delays are checked with generous lower bounds only; nothing asserts an upper bound
tighter than seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, errors
from pyhcs.testing.faults import CallBudgetExceeded, Faults, hresult_of

from rawutil import close_info, new_id, operation, read_all, running_system, start_process, wait

if TYPE_CHECKING:
    from pyhcs.testing.plugin import ComputeSystemFactory

# The plugin may already be registered as "pyhcs" (the pytest11 entry point): asking for it
# again by module name would be an error, so ask only when it is not.
_loaded = sys.modules.get("pyhcs.testing.plugin")
pytest_plugins = [] if _loaded is not None and _loaded.registered() else ["pyhcs.testing.plugin"]

with warnings.catch_warnings():
    # Until the plugin is registered (a moment from now) pytest does not know its markers.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    both = pytest.mark.pyhcs_backends

HCS_E_CONNECTION_TIMEOUT = 0x80370109
HCS_E_INVALID_STATE = 0x80370105


@pytest.fixture
def raw_faults(hcs: ModuleType) -> Iterator[Faults]:
    """Faults driven through the backend under test; everything undone afterwards."""
    f = Faults(backend=hcs)
    f.reset(environment=False)
    yield f
    f.reset(environment=False)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python that must import this very pyhcs."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(pyhcs.__file__)))
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    base = {k: v for k, v in os.environ.items() if k not in ("HCSEMU_SETTINGS", "HCSEMU_FAULTS")}
    return {**base, "PYTHONPATH": path, **extra}


def props(hcs: ModuleType, h: int, op: int, timeout_ms: int = 10_000) -> dict[str, Any]:
    hcs.hcs_get_compute_system_properties(h, op, None)
    doc = wait(hcs, op, timeout_ms)
    result: dict[str, Any] = json.loads(doc or "null")
    return result


class Events:
    """A raw event callback that records (type, data) and can wait for a type."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None]] = []
        self.cond = threading.Condition()

    def __call__(self, event: Any, context: int) -> None:
        with self.cond:
            self.seen.append((int(event.type), event.event_data))
            self.cond.notify_all()

    def wait_for(self, kind: pyhcs.EventType, timeout: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, data in self.seen:
                    if t == kind:
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {kind.name} event within {timeout} s; saw {self.seen}")
                self.cond.wait(remaining)


# ============================================================================ the Python API


def test_hresult_of_accepts_every_form() -> None:
    assert hresult_of(errors.ConnectionTimeoutError) == HCS_E_CONNECTION_TIMEOUT
    assert hresult_of(HCS_E_CONNECTION_TIMEOUT) == HCS_E_CONNECTION_TIMEOUT
    assert hresult_of(-2143878903) == HCS_E_CONNECTION_TIMEOUT  # signed
    assert hresult_of("0x80370109") == HCS_E_CONNECTION_TIMEOUT
    assert hresult_of("HCS_E_CONNECTION_TIMEOUT") == HCS_E_CONNECTION_TIMEOUT
    assert hresult_of("ConnectionTimeoutError") == HCS_E_CONNECTION_TIMEOUT
    assert hresult_of(errors.make_error(HCS_E_INVALID_STATE)) == HCS_E_INVALID_STATE
    with pytest.raises(ValueError, match="success"):
        hresult_of(0)
    with pytest.raises(TypeError, match="family"):
        hresult_of(errors.AlreadyStoppedError)
    with pytest.raises(TypeError):
        hresult_of(True)
    with pytest.raises(ValueError, match="unknown HRESULT"):
        hresult_of("HCS_E_NOPE")


def test_rules_are_validated_before_they_reach_the_emulator(faults: Faults) -> None:
    with pytest.raises(ValueError, match="did you mean 'HcsStartComputeSystem'"):
        faults.fail("hcs_start_compute_system", errors.ConnectionTimeoutError)
    with pytest.raises(ValueError, match="where"):
        faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, where="later")  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ValueError, match="count"):
        faults.hang("HcsStartComputeSystem", count=0)
    with pytest.raises(ValueError, match="probability"):
        faults.fail("*", 0x80004005, probability=1.5)
    with pytest.raises(ValueError, match="seed"):
        faults.fail("*", 0x80004005, seed=3)
    with pytest.raises(TypeError, match="unknown quirk"):
        faults.quirks(legacy_errors=True)
    with pytest.raises(ValueError, match="rejected"):
        faults.quirks(NoSuchSwitch=True)
    with pytest.raises(TypeError):
        faults.call_budget("HcsStartComputeSystem")
    assert faults.rules() == []


def test_faults_refuses_to_run_off_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyhcs.testing.faults import EmulatorRequired

    fake = ModuleType("fake_backend")
    vars(fake)["library_path"] = lambda: r"C:\Windows\System32\computecore.dll"
    with pytest.raises(EmulatorRequired, match="real Host Compute Service"):
        Faults(backend=fake)


# ============================================================================ fail: at the call


def test_fail_at_the_call_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        rule = raw_faults.fail("HcsGetComputeSystemProperties", errors.ConnectionTimeoutError, where="call", count=1)
        with pytest.raises(errors.ConnectionTimeoutError):
            hcs.hcs_get_compute_system_properties(h, op, None)
        # the operation was never started by the rejected call
        with pytest.raises(errors.OperationNotStartedError):
            hcs.hcs_get_operation_result(op)
        assert props(hcs, h, op)["State"] == "Running"
        assert (rule.seen, rule.fired) == (2, 1)


@both
def test_fail_at_the_call(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory(start=False)
    faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, where="call", count=1)
    with pytest.raises(errors.ConnectionTimeoutError) as exc:
        system.start()
    assert exc.value.call == "HcsStartComputeSystem" and exc.value.system_id == system.id
    assert system.state == "Created"
    system.start()
    assert system.state == "Running"


# ============================================================================ fail: in the result


def test_fail_in_the_result_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        raw_faults.fail("HcsPauseComputeSystem", "HCS_E_CONNECTION_TIMEOUT", count=1)
        hcs.hcs_pause_compute_system(h, op, None)  # accepted
        with pytest.raises(errors.ConnectionTimeoutError) as exc:
            wait(hcs, op)
        assert "Injected fault" in exc.value.message
        assert exc.value.result is not None and exc.value.result["Error"] == errors.to_signed(HCS_E_CONNECTION_TIMEOUT)
        assert props(hcs, h, op)["State"] == "Running"  # nothing happened


@both
def test_fail_in_the_result(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.fail("HcsPauseComputeSystem", errors.InvalidStateError)
    for _ in range(2):
        with pytest.raises(errors.InvalidStateError) as exc:
            system.pause()
        assert exc.value.call == "HcsPauseComputeSystem" and "Injected fault" in str(exc.value)
    assert system.state == "Running"


# ============================================================================ on_call and count


def test_on_call_and_count_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        rule = raw_faults.fail("HcsGetComputeSystemProperties", errors.ConnectionTimeoutError, on_call=2, count=2)
        outcomes: list[str] = []
        for _ in range(5):
            try:
                props(hcs, h, op)
                outcomes.append("ok")
            except errors.ConnectionTimeoutError:
                outcomes.append("fail")
        assert outcomes == ["ok", "fail", "fail", "ok", "ok"]
        assert (rule.seen, rule.fired) == (5, 2)


@both
def test_on_call_and_count(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    rule = faults.fail("HcsGetComputeSystemProperties", errors.ConnectionTimeoutError, on_call=3, count=1)
    outcomes: list[str] = []
    for _ in range(4):
        try:
            system.properties()
            outcomes.append("ok")
        except errors.ConnectionTimeoutError:
            outcomes.append("fail")
    assert outcomes == ["ok", "ok", "fail", "ok"]
    assert rule.fired == 1
    faults.clear()
    with pytest.raises(LookupError):
        _ = rule.seen


# ============================================================================ seeded probability


def _pattern_raw(hcs: ModuleType, f: Faults, seed: int) -> list[bool]:
    f.clear()
    f.fail("HcsEnumerateComputeSystems", errors.ConnectionTimeoutError, probability=0.5, seed=seed)
    out: list[bool] = []
    with operation(hcs) as op:
        for _ in range(24):
            try:
                hcs.hcs_enumerate_compute_systems(None, op)
                wait(hcs, op)
                out.append(False)
            except errors.ConnectionTimeoutError:
                out.append(True)
    return out


def test_seeded_probability_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    first = _pattern_raw(hcs, raw_faults, 11)
    assert first == _pattern_raw(hcs, raw_faults, 11)
    assert 0 < sum(first) < len(first)
    assert any(_pattern_raw(hcs, raw_faults, s) != first for s in (12, 13, 14))


@both
def test_seeded_probability(hcs_emulator: Any, faults: Faults) -> None:
    def pattern(seed: int) -> list[bool]:
        faults.clear()
        faults.fail(
            "HcsEnumerateComputeSystems", errors.ConnectionTimeoutError, where="call", probability=0.3, seed=seed
        )
        out: list[bool] = []
        for _ in range(24):
            try:
                ComputeSystem.enumerate()
                out.append(False)
            except errors.ConnectionTimeoutError:
                out.append(True)
        return out

    first = pattern(5)
    assert first == pattern(5) and 0 < sum(first) < len(first)


# ============================================================================ delay


def test_delay_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        raw_faults.delay("HcsGetComputeSystemProperties", 0.3, count=1)
        start = time.monotonic()
        hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.OperationPendingError):
            hcs.hcs_get_operation_result(op)  # still running
        assert json.loads(wait(hcs, op) or "{}")["State"] == "Running"
        assert time.monotonic() - start >= 0.25
    # functions without an operation are late themselves
    raw_faults.delay("HcsOpenComputeSystem", 0.2, count=1)
    start = time.monotonic()
    with pytest.raises(errors.SystemNotFoundError):
        hcs.hcs_open_compute_system(new_id("missing"))
    assert time.monotonic() - start >= 0.15


@both
def test_delay(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.delay("HcsGetComputeSystemProperties", 0.3)
    start = time.monotonic()
    assert system.properties()["State"] == "Running"
    assert time.monotonic() - start >= 0.25
    with pytest.raises(errors.OperationTimeoutError):
        system.properties(timeout=0.05)  # a timeout shorter than the latency


# ============================================================================ hang


def test_hang_until_close_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h:
        raw_faults.hang("HcsGetComputeSystemProperties", count=1)
        op = hcs.hcs_create_operation()
        hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.OperationTimeoutError):
            hcs.hcs_wait_for_operation_result(op, 200)
        with pytest.raises(errors.OperationPendingError):
            hcs.hcs_get_operation_result(op)
        hcs.hcs_close_operation(op)  # the only way out (besides cancel and a disconnect)
        with operation(hcs) as op2:
            assert props(hcs, h, op2)["State"] == "Running"


def test_hang_until_service_disconnect_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        raw_faults.hang("HcsGetComputeSystemProperties")
        hcs.hcs_get_compute_system_properties(h, op, None)
        raw_faults.service_disconnect()
        with pytest.raises(errors.ServiceDisconnectedError):
            wait(hcs, op, 5_000)
        raw_faults.reset(environment=False)


def test_hang_of_a_function_without_operation_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    """A synchronous call blocks its caller until a disconnect (it then fails) or a reset."""
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            hcs.hcs_open_compute_system(new_id("missing"))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    for ender, expected in (
        (raw_faults.service_disconnect, errors.ServiceDisconnectedError),
        (raw_faults.clear, errors.SystemNotFoundError),
    ):
        raw_faults.reset(environment=False)
        raw_faults.hang("HcsOpenComputeSystem", count=1)
        outcome.clear()
        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(0.3)
        assert t.is_alive() and not outcome  # hung
        ender()
        t.join(10)
        assert not t.is_alive()
        assert isinstance(outcome[0], expected)


def test_hang_of_a_storage_call_ends_on_reset_raw(hcs: ModuleType, raw_faults: Faults, tmp_path: Path) -> None:
    """Storage calls share the fault helper of every synchronous call: a reset releases a hang."""
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            hcs.hcs_destroy_layer(str(tmp_path / "missing-layer"))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    raw_faults.hang("HcsDestroyLayer", count=1)
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive() and not outcome  # hung
    raw_faults.clear()
    t.join(10)
    assert not t.is_alive() and len(outcome) == 1


@both
def test_hang(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.hang("HcsGetComputeSystemProperties", count=1)
    with pytest.raises(errors.OperationTimeoutError) as exc:
        system.properties(timeout=0.2)
    op = exc.value.operation
    assert isinstance(op, pyhcs.Operation) and not op.done()
    # the hung operation was handed to HCS: a disconnect completes (and so closes) it
    faults.service_disconnect()
    assert isinstance(op.exception(timeout=5), errors.ServiceDisconnectedError)
    faults.reconnect()
    assert system.properties()["State"] == "Running"


# ============================================================================ unexpected exit


def test_unexpected_exit_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    sid = new_id("crash")
    with running_system(hcs, sid) as h:
        events = Events()
        hcs.hcs_set_compute_system_callback(h, 0, 0, events)
        try:
            raw_faults.unexpected_exit(sid)
            data = events.wait_for(pyhcs.EventType.SYSTEM_EXITED)
            status = json.loads(data or "{}")
            assert status["ExitType"] == "UnexpectedExit"
            assert errors.to_unsigned(status["Status"]) == 0x80370106
            exited = json.loads(hcs.hcs_wait_for_compute_system_exit(h, 5_000) or "{}")
            assert exited["ExitType"] == "UnexpectedExit"
        finally:
            hcs.hcs_set_compute_system_callback(h, 0, 0, None)
    with pytest.raises(errors.SystemNotFoundError):
        raw_faults.unexpected_exit("no-such-system")


@both
def test_unexpected_exit(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.unexpected_exit(system)
    status = system.wait_exit(timeout=10)
    assert status.unexpected and status.exit_type == "UnexpectedExit"
    assert isinstance(status.error(), errors.UnexpectedExitError)
    with pytest.raises(errors.InvalidStateError):
        faults.unexpected_exit(system)  # a stopped system cannot die again


# ============================================================================ process exit


def test_process_exit_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    sid = new_id("pexit")
    with running_system(hcs, sid) as h:
        p, info = start_process(hcs, h, "sleep 30")
        try:
            events = Events()
            hcs.hcs_set_process_callback(p, 0, 0, events)
            raw_faults.action("ProcessExit", SystemId=sid, ProcessId=info.process_id)
            status = json.loads(events.wait_for(pyhcs.EventType.PROCESS_EXITED) or "{}")
            assert status["Exited"] is True and status["ExitCode"] == 137  # killed, as a crash
            hcs.hcs_set_process_callback(p, 0, 0, None)
            with pytest.raises(errors.ElementNotFoundError):
                raw_faults.process_exit(system=sid, pid=info.process_id)  # already gone
        finally:
            close_info(info)
            hcs.hcs_close_process(p)


@both
def test_process_exit(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    with system.create_process(["sleep", "30"]) as proc:
        faults.process_exit(proc)
        assert proc.wait(timeout=10) == 137
    with pytest.raises(TypeError):
        faults.process_exit()


# ============================================================================ service disconnect


def test_service_disconnect_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "sleep 30")
        sys_events, proc_events = Events(), Events()
        hcs.hcs_set_compute_system_callback(h, 0, 0, sys_events)
        hcs.hcs_set_process_callback(p, 0, 0, proc_events)
        try:
            with operation(hcs) as pending:
                raw_faults.hang("HcsGetComputeSystemProperties", count=1)
                hcs.hcs_get_compute_system_properties(h, pending, None)
                raw_faults.service_disconnect()
                # every pending operation fails, every callback hears about it
                with pytest.raises(errors.ServiceDisconnectedError):
                    wait(hcs, pending)
                sys_events.wait_for(pyhcs.EventType.SERVICE_DISCONNECT)
                proc_events.wait_for(pyhcs.EventType.SERVICE_DISCONNECT)
                # later calls fail until the service is back
                assert raw_faults.disconnected
                with pytest.raises(errors.ServiceDisconnectedError):
                    hcs.hcs_get_compute_system_properties(h, pending, None)
                with pytest.raises(errors.ServiceDisconnectedError):
                    hcs.hcs_open_compute_system(new_id("any"))
                with pytest.raises(errors.ServiceDisconnectedError):
                    hcs.hcs_get_service_properties(None)
                raw_faults.reconnect()
                assert props(hcs, h, pending)["State"] == "Running"
        finally:
            hcs.hcs_set_process_callback(p, 0, 0, None)
            hcs.hcs_set_compute_system_callback(h, 0, 0, None)
            close_info(info)
            hcs.hcs_close_process(p)


@both
def test_service_disconnect(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    proc = system.create_process(["sleep", "30"])
    faults.service_disconnect()
    assert [e.type for e in system.events(timeout=5)][-1] == pyhcs.EventType.SERVICE_DISCONNECT
    with pytest.raises(errors.ServiceDisconnectedError):
        system.wait_exit(timeout=5)
    with pytest.raises(errors.ServiceDisconnectedError):
        proc.wait(timeout=5)
    with pytest.raises(errors.ServiceDisconnectedError):
        system.properties()
    with pytest.raises(errors.ServiceDisconnectedError):
        ComputeSystem.enumerate()
    faults.reconnect()
    assert system.properties()["State"] == "Running"
    proc.close()


# ============================================================================ call accounting


def test_call_counts_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.reset_call_counts()
    assert raw_faults.call_counts() == {}
    with running_system(hcs) as h, operation(hcs) as op:
        for _ in range(3):
            props(hcs, h, op)
    counts = raw_faults.call_counts()
    assert counts["HcsGetComputeSystemProperties"] == 3
    assert counts["HcsCreateComputeSystem"] == 1 and counts["HcsStartComputeSystem"] == 1
    # the emulator's own controls are not counted, and answer under a fault for every function
    raw_faults.fail("*", errors.ConnectionTimeoutError, where="call")
    raw_faults.settings()
    raw_faults.statistics()
    assert "HcsGetServiceProperties" not in raw_faults.call_counts()
    assert "HcsModifyServiceSettings" not in raw_faults.call_counts()
    with pytest.raises(errors.ConnectionTimeoutError):
        hcs.hcs_get_service_properties(None)
    raw_faults.reset_call_counts()
    assert raw_faults.call_counts() == {}


@both
def test_call_budget(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    with faults.call_budget(HcsGetComputeSystemProperties=2) as budget:
        system.properties()
        assert budget.used("HcsGetComputeSystemProperties") == 1
        system.properties()
    assert budget.counts["HcsGetComputeSystemProperties"] == 2
    with pytest.raises(CallBudgetExceeded) as exc:
        with faults.call_budget("HcsGetComputeSystemProperties", 2):
            for _ in range(3):
                system.properties()
    assert exc.value.over == {"HcsGetComputeSystemProperties": (3, 2)}
    assert "HcsGetComputeSystemProperties: 3 calls, budget 2" in str(exc.value)
    with pytest.raises(CallBudgetExceeded, match="all functions"):
        with faults.call_budget({"*": 1}):
            system.properties()
    # the block's own failure is never hidden behind a budget report
    with pytest.raises(KeyError):
        with faults.call_budget(HcsGetComputeSystemProperties=0):
            system.properties()
            raise KeyError("mine")


# ============================================================================ environment


@pytest.mark.parametrize("backend", ["cython", "ctypes"])
def test_environment_variables_configure_a_whole_process(backend: str) -> None:
    from pyhcs.testing.plugin import available_backends

    reason = available_backends().get(backend, "unknown backend")
    if reason:
        pytest.skip(reason)
    script = """
import json
from pyhcs import ComputeSystem, errors
from pyhcs.testing import Faults
f = Faults()
assert f.settings()["LegacyErrorForms"] is True
assert f.settings()["ShutdownGraceMs"] == 1234
try:
    ComputeSystem.enumerate()
except errors.ConnectionTimeoutError as e:
    assert e.hresult == 0xC0370109, hex(e.hresult)
else:
    raise SystemExit("no fault")
ComputeSystem.enumerate()            # Count 1
f.reset(environment=False)
assert f.settings()["LegacyErrorForms"] is False and f.rules() == []
f.reset()                             # the process's baseline comes back
assert f.settings()["LegacyErrorForms"] is True and len(f.rules()) == 1
print("ok")
"""
    env = subprocess_env(
        PYHCS_BACKEND=backend,
        HCSEMU_SETTINGS=json.dumps({"LegacyErrorForms": True, "ShutdownGraceMs": 1234}),
        HCSEMU_FAULTS=json.dumps(
            {
                "Faults": [
                    {"Function": "HcsEnumerateComputeSystems", "Where": "Call", "HResult": "0x80370109", "Count": 1}
                ]
            }
        ),
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


# ============================================================================ quirk: legacy error forms


def test_legacy_error_forms_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        with raw_faults.quirks(legacy_error_forms=True):
            hcs.hcs_start_compute_system(h, op, None)
            with pytest.raises(errors.InvalidStateError) as exc:
                wait(hcs, op)
            assert exc.value.hresult == 0xC0370105 and exc.value.normalized_hresult == HCS_E_INVALID_STATE
            raw_faults.fail("HcsPauseComputeSystem", errors.ConnectionTimeoutError, count=1)
            hcs.hcs_pause_compute_system(h, op, None)
            with pytest.raises(errors.ConnectionTimeoutError) as exc2:
                wait(hcs, op)
            assert exc2.value.hresult == 0xC0370109  # injected faults take the legacy form too
        assert raw_faults.settings()["LegacyErrorForms"] is False
        hcs.hcs_start_compute_system(h, op, None)
        with pytest.raises(errors.InvalidStateError) as exc:
            wait(hcs, op)
        assert exc.value.hresult == HCS_E_INVALID_STATE


@both
def test_legacy_error_forms(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.quirks(legacy_error_forms=True)
    with pytest.raises(errors.InvalidStateError) as exc:
        system.start()
    assert exc.value.hresult == 0xC0370105 and errors.is_invalid_state(exc.value)
    with pytest.raises(errors.SystemNotFoundError) as exc2:
        ComputeSystem.open(new_id("missing"))
    assert exc2.value.hresult == 0xC037010E and errors.is_not_found(exc2.value)


# ============================================================================ quirk: pending on initiate


def test_pending_on_initiate_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(pending_on_initiate=True)
    # initiating calls return HCS_E_OPERATION_PENDING; the backends report "started"
    with running_system(hcs) as h, operation(hcs) as op:
        assert hcs.hcs_get_compute_system_properties(h, op, None) is None
        assert json.loads(wait(hcs, op) or "{}")["State"] == "Running"


@both
def test_pending_on_initiate(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    faults.quirks(pending_on_initiate=True)
    system = compute_system_factory()
    assert system.run(["echo", "pending"]).stdout == b"pending\n"
    assert system.terminate() is True


# ============================================================================ quirk: NULL success documents


def test_null_success_documents_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        with raw_faults.quirks(null_success_documents=True):
            hcs.hcs_get_compute_system_properties(h, op, None)
            assert wait(hcs, op) is None
            hcs.hcs_enumerate_compute_systems(None, op)
            assert wait(hcs, op) is None
        assert props(hcs, h, op)["State"] == "Running"


@both
def test_null_success_documents(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    with faults.quirks(null_success_documents=True):
        system = compute_system_factory()  # create and start need no document
        assert ComputeSystem.enumerate() == []  # an empty enumeration is no error
        with pytest.raises(errors.HcsError, match="no document"):
            system.properties()  # a query must answer (spec 9.12)


# ============================================================================ quirk: CreateProcess sync failure


def test_create_process_sync_quirk_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(create_process_sync_quirk=True)
    with running_system(hcs) as h, operation(hcs) as op:
        p = hcs.hcs_create_process(
            h, json.dumps({"CommandLine": 'sh -c "sleep 0.2; echo recovered"', "CreateStdOutPipe": True}), op
        )
        try:
            with pytest.raises(errors.InvalidArgumentError):
                hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            # the process runs: HcsGetProcessInfo hands out its pipes
            hcs.hcs_get_process_info(p, op)
            info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            try:
                assert info.process_id > 0 and info.std_output is not None
                assert read_all(info.std_output) == b"recovered\n"
            finally:
                close_info(info)
        finally:
            hcs.hcs_close_process(p)


@both
def test_create_process_sync_quirk(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.quirks(create_process_sync_quirk=True)
    result = system.run(["sh", "-c", "sleep 0.2; echo recovered"])
    assert result.returncode == 0 and result.stdout == b"recovered\n"


# ============================================================================ quirk: cancel


def test_cancel_operation_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        raw_faults.hang("HcsGetComputeSystemProperties")
        hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.UnimplementedError):
            hcs.hcs_cancel_operation(op)  # as documented
        raw_faults.quirks(cancel_operation=True)
        hcs.hcs_cancel_operation(op)
        with pytest.raises(errors.Win32CancelledError):
            wait(hcs, op)
        with pytest.raises(errors.OperationAlreadyCancelledError):
            hcs.hcs_cancel_operation(op)


@both
def test_cancel_operation(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.hang("HcsGetComputeSystemProperties")
    with system.submit("properties") as op:
        with pytest.raises(NotImplementedError):
            op.cancel()
        with faults.quirks(cancel_operation=True):
            assert op.cancel() is True
            failure = op.exception(timeout=5)
            assert failure is not None and errors.is_cancelled(failure)
            assert op.cancel() is False


# ============================================================================ quirk: WaitFor*Exit timeout code


def test_wait_exit_timeout_result_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    with running_system(hcs) as h:
        with pytest.raises(errors.OperationTimeoutError):
            hcs.hcs_wait_for_compute_system_exit(h, 0)
        p, info = start_process(hcs, h, "sleep 30")
        try:
            with raw_faults.quirks(wait_exit_timeout_result=errors.WaitTimeoutError):
                with pytest.raises(errors.WaitTimeoutError):
                    hcs.hcs_wait_for_compute_system_exit(h, 10)
                with pytest.raises(errors.WaitTimeoutError):
                    hcs.hcs_wait_for_process_exit(p, 10)
            with raw_faults.quirks(wait_exit_timeout_result="E_FAIL"):
                with pytest.raises(errors.UnspecifiedError):
                    hcs.hcs_wait_for_process_exit(p, 0)
        finally:
            close_info(info)
            hcs.hcs_close_process(p)


@both
@pytest.mark.parametrize("code", [errors.WaitTimeoutError, errors.OperationTimeoutError])
def test_wait_exit_timeout_result(compute_system_factory: ComputeSystemFactory, faults: Faults, code: Any) -> None:
    system = compute_system_factory()
    faults.quirks(wait_exit_timeout_result=code)
    # opening polls HcsWaitForComputeSystemExit(0): either timeout code means "still running"
    with ComputeSystem.open(system.id) as other:
        assert other.exit_status is None
    with system.create_process(["sleep", "30"]) as proc, system.open_process(proc.pid) as same:
        assert same.exit_status is None and same.poll() is None


# ============================================================================ quirk: ignore shutdown


def test_ignore_shutdown_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(ignore_shutdown=True)
    with running_system(hcs) as h, operation(hcs) as shutdown, operation(hcs) as terminate:
        hcs.hcs_shut_down_compute_system(h, shutdown, None)
        with pytest.raises(errors.OperationTimeoutError):
            hcs.hcs_wait_for_operation_result(shutdown, 300)  # the guest ignores it
        hcs.hcs_terminate_compute_system(h, terminate, None)
        wait(hcs, terminate)
        with pytest.raises(errors.TerminatedError):
            wait(hcs, shutdown)  # overtaken by the terminate


@both
def test_ignore_shutdown(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.quirks(ignore_shutdown=True)
    with pytest.raises(errors.OperationTimeoutError):
        system.shutdown(timeout=0.2)
    status = system.stop(grace=0.2, timeout=20)
    assert status.exit_type == "ForcedExit"


# ============================================================================ quirk: close in own callback


def test_close_waits_in_own_callback_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    """Real HCS deadlocks when a callback closes its own handle; the switch reproduces that in
    the emulator. pyhcs never runs Python on the library's callback thread (C callbacks only enqueue; see docs/architecture.md, Callbacks), so
    a Python callback that closes its handle does not deadlock even with the switch on."""
    raw_faults.quirks(close_waits_in_own_callback=True)
    assert raw_faults.settings()["CloseWaitsInOwnCallback"] is True
    sid = new_id("own")
    closed = threading.Event()
    with running_system(hcs, sid):
        h2 = hcs.hcs_open_compute_system(sid)

        def on_event(event: Any, context: int) -> None:
            if int(event.type) == pyhcs.EventType.SYSTEM_EXITED:
                hcs.hcs_close_compute_system(h2)
                closed.set()

        hcs.hcs_set_compute_system_callback(h2, 0, 0, on_event)
        raw_faults.unexpected_exit(sid)
        assert closed.wait(10)
        hcs.flush_callbacks()


_OWN_CALLBACK_SCRIPT = """
import ctypes, json, os, sys, threading
from pyhcs._native import _backend as B; from pyhcs import emulator

lib = ctypes.CDLL(B.library_path())  # the library the backend loaded (PYHCS_LIBRARY may name another)
CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
lib.HcsSetComputeSystemCallback.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, CALLBACK]
lib.HcsSetComputeSystemCallback.restype = ctypes.c_int32
lib.HcsCloseComputeSystem.argtypes = [ctypes.c_void_p]
lib.HcsCloseComputeSystem.restype = None

emulator.configure(CloseWaitsInOwnCallback=sys.argv[1] == "1")
op = B.hcs_create_operation()
h = B.hcs_create_compute_system("own", json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}}), op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_start_compute_system(h, op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_close_operation(op)
returned = threading.Event()

def on_event(event, context):
    lib.HcsCloseComputeSystem(h)  # on the library's own thread, inside this handle's callback
    returned.set()

callback = CALLBACK(on_event)
assert lib.HcsSetComputeSystemCallback(h, 0, None, callback) == 0
emulator.action("UnexpectedExit", SystemId="own")
print("returned" if returned.wait(2.0) else "deadlocked", flush=True)
os._exit(0)  # a deadlocked library thread never ends
"""


@pytest.mark.parametrize(("switch", "expected"), [("0", "returned"), ("1", "deadlocked")])
def test_close_waits_in_own_callback_at_the_abi(switch: str, expected: str) -> None:
    """The switch itself, seen by a C-style client whose callback runs on the library thread
    (in a subprocess: the deadlocked thread never comes back)."""
    out = subprocess.run(
        [sys.executable, "-c", _OWN_CALLBACK_SCRIPT, switch],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


@both
def test_close_waits_in_own_callback(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    system = compute_system_factory()
    faults.quirks(close_waits_in_own_callback=True)
    closed = threading.Event()

    def on_event(event: pyhcs.Event) -> None:
        if event.type == pyhcs.EventType.SYSTEM_EXITED:
            system.close()
            closed.set()

    system.add_event_callback(on_event)
    faults.unexpected_exit(system)
    assert closed.wait(10) and system.closed


# ============================================================================ quirk: environment


def test_inherit_environment_raw(hcs: ModuleType, raw_faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYHCS_FAULTS_PROBE", "inherited")
    with running_system(hcs) as h:
        for inherit, expected in ((True, b"inherited\n"), (False, b"unset\n")):
            raw_faults.quirks(inherit_environment=inherit)
            p, info = start_process(hcs, h, "echo ${PYHCS_FAULTS_PROBE-unset}", CreateStdOutPipe=True)
            try:
                assert read_all(info.std_output) == expected
            finally:
                close_info(info)
                hcs.hcs_close_process(p)


@both
def test_inherit_environment(
    compute_system_factory: ComputeSystemFactory, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYHCS_FAULTS_PROBE", "inherited")
    system = compute_system_factory()
    probe = ["sh", "-c", "echo ${PYHCS_FAULTS_PROBE-unset}"]
    assert system.run(probe).stdout == b"inherited\n"
    with faults.quirks(inherit_environment=False):
        assert system.run(probe).stdout == b"unset\n"
        assert system.run(probe, env={"PYHCS_FAULTS_PROBE": "given"}).stdout == b"given\n"


# ============================================================================ tunables


# Ignores SIGTERM, and says so once it does (a shutdown before that would simply kill it).
_STUBBORN = "trap '' TERM; echo ready; while true; do sleep 0.05; done"


def test_shutdown_grace_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(shutdown_grace=0.2)
    assert raw_faults.settings()["ShutdownGraceMs"] == 200
    with running_system(hcs) as h, operation(hcs) as op:
        p, info = start_process(hcs, h, _STUBBORN, CreateStdOutPipe=True)
        try:
            assert os.read(info.std_output, 6) == b"ready\n"
            start = time.monotonic()
            hcs.hcs_shut_down_compute_system(h, op, None)
            wait(hcs, op)  # the grace ran out: SIGKILL
            assert time.monotonic() - start < 4.0  # the default grace is 5 s
            status = json.loads(hcs.hcs_wait_for_compute_system_exit(h, 5_000) or "{}")
            assert status["ExitType"] == "ForcedExit"
        finally:
            close_info(info)
            hcs.hcs_close_process(p)


@both
def test_shutdown_grace(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    faults.quirks(shutdown_grace=0.2)
    system = compute_system_factory()
    with system.create_process(["sh", "-c", _STUBBORN], stdout=True) as stubborn:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    assert system.shutdown(timeout=10) is True
    exit_status = system.wait_exit(timeout=5)
    assert exit_status.exit_type == "ForcedExit"
    graceful = compute_system_factory()
    assert graceful.shutdown(timeout=10) is True
    assert graceful.wait_exit(timeout=5).exit_type == "GracefulExit"


def test_worker_idle_and_terminate_timeout_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(worker_idle=0.05, terminate_timeout=3)
    settings = raw_faults.settings()
    assert settings["WorkerIdleMs"] == 50 and settings["TerminateTimeoutMs"] == 3000
    with running_system(hcs) as h, operation(hcs) as op:
        raw_faults.delay("HcsGetComputeSystemProperties", 0.01, count=1)  # runs on a worker
        props(hcs, h, op)
    deadline = time.monotonic() + 10
    while raw_faults.statistics()["WorkerThreads"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw_faults.statistics()["WorkerThreads"] == 0  # idle workers went away


@both
def test_worker_idle_and_terminate_timeout(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    with faults.quirks(worker_idle=0.05, terminate_timeout=3):
        assert faults.settings()["TerminateTimeoutMs"] == 3000
        system = compute_system_factory()
        faults.delay("HcsGetComputeSystemProperties", 0.01, count=1)
        system.properties()
        deadline = time.monotonic() + 10
        while faults.statistics()["WorkerThreads"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert faults.statistics()["WorkerThreads"] == 0
        assert system.terminate() is True  # within the (shorter) terminate timeout
    assert faults.settings()["WorkerIdleMs"] == 2000


def test_schema_version_raw(hcs: ModuleType, raw_faults: Faults) -> None:
    raw_faults.quirks(schema_version=(2, 3))
    basic = json.loads(hcs.hcs_get_service_properties(None))["Properties"][0]
    assert basic["SupportedSchemaVersions"] == [{"Major": 2, "Minor": 3}]
    config = json.dumps({"SchemaVersion": {"Major": 2, "Minor": 5}, "Container": {}})
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id("schema"), config, op)
        try:
            with pytest.raises(errors.InvalidJsonError, match="not supported"):
                wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)


@both
def test_schema_version(compute_system_factory: ComputeSystemFactory, faults: Faults) -> None:
    with faults.quirks(schema_version=(2, 4)):
        assert pyhcs.service.supported_schema_versions() == [(2, 4)]
        with pytest.raises(errors.InvalidJsonError):
            compute_system_factory(config={"SchemaVersion": {"Major": 2, "Minor": 6}, "Container": {}})
    assert pyhcs.service.supported_schema_versions() == [(2, 6)]
