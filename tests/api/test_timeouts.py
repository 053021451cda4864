"""Timeouts the Python way: an omitted timeout is the default, None is no limit, and every
public method returns within the timeout it is given when HCS hangs (sync and asyncio), leaving
nothing open behind it.

Runs on whichever backend PYHCS_BACKEND selects (CI runs the suite once per backend)."""

from __future__ import annotations

import asyncio
import math
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, Process, aio, emulator, errors
from pyhcs._native import _backend as B

from pyutil import CONFIG, new_id

#: What a wait may overrun its timeout by: one wait slice plus scheduling on a shared machine.
MARGIN = 0.75
TIMEOUT = 0.3


# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def hang(function: str) -> None:
    emulator.add_faults({"Function": function, "Hang": True})


def give_up(err: BaseException) -> None:
    """Closes what a timeout handed over (the still-pending operation)."""
    if isinstance(err, errors.TimeoutExpiredError):
        if err.operation is not None:
            err.operation.close()
        if err.system is not None:
            err.system.close()  # a half-created system: the caller owns it
        if err.process is not None:
            err.process.close()


# ----------------------------------------------------------------------------- the sentinel


def test_resolve_timeout_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyhcs._handle import resolve_timeout

    monkeypatch.setattr(pyhcs, "DEFAULT_TIMEOUT", 7.0)
    assert resolve_timeout(pyhcs.DEFAULT) == 7.0
    assert resolve_timeout(pyhcs.DEFAULT, 3.0) == 3.0
    assert resolve_timeout(pyhcs.DEFAULT, None) == math.inf
    assert resolve_timeout(None, 3.0) == math.inf
    assert resolve_timeout(0, 3.0) == 0.0
    assert resolve_timeout(math.inf) == math.inf
    assert repr(pyhcs.DEFAULT) == "pyhcs.DEFAULT"
    with pytest.raises(ValueError, match="None for no limit"):
        resolve_timeout(-1)


def test_none_waits_without_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyhcs, "DEFAULT_TIMEOUT", 0.05)
    # the calls around the waits under test get time of their own: a loaded machine can take
    # more than the patched default to create and start
    with ComputeSystem.create(new_id(), CONFIG, timeout=30) as s:
        s.start(timeout=30)
        with s.create_process(["sh", "-c", "read line; exit 3"], stdin=True, timeout=30) as p:
            with pytest.raises(errors.TimeoutExpiredError):
                p.wait()  # the (patched) default: the process waits for its input
            threading.Timer(0.3, p.close_stdin, kwargs={"timeout": 30}).start()
            assert p.wait(None) == 3  # no limit: outlives the default
        threading.Timer(0.3, s.terminate, kwargs={"timeout": 10}).start()
        assert s.wait_exit(timeout=None).exit_type == "ForcedExit"


# ----------------------------------------------------------------------------- run()


def test_run_timeout_is_subprocess_timeout_expired() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        command = ["sh", "-c", "echo partial; echo oops >&2; exec sleep 30"]
        with pytest.raises(subprocess.TimeoutExpired) as exc:
            s.run(command, timeout=0.5)
        err = exc.value
        assert isinstance(err, errors.TimeoutExpiredError)
        assert isinstance(err, errors.OperationTimeoutError) and isinstance(err, pyhcs.HcsError)
        assert err.cmd == command and err.timeout == 0.5
        assert err.output == err.stdout == b"partial\n" and err.stderr == b"oops\n"
        assert "communicate() again" not in str(err) and "killed" in str(err)
        assert err.process is not None and err.process.closed and err.operation is None
        assert err.system_id == s.id


def test_run_leaves_nothing_when_the_create_hangs() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        hang("HcsCreateProcess")
        start = time.monotonic()
        with pytest.raises(errors.TimeoutExpiredError) as exc:
            s.run(["true"], timeout=TIMEOUT)
        assert time.monotonic() - start < TIMEOUT + MARGIN
        assert exc.value.timeout == TIMEOUT and exc.value.cmd == ["true"]
        assert exc.value.process is None or exc.value.process.closed
        assert exc.value.operation is None
        B.flush_callbacks()


def test_run_raises_a_disconnect_at_once() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        timer = threading.Timer(0.3, emulator.action, args=("ServiceDisconnect",))
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(errors.ServiceDisconnectedError):
                s.run(["sleep", "30"], timeout=20)
            assert time.monotonic() - start < 3
        finally:
            timer.join()
            emulator.action("Reconnect")


# ----------------------------------------------------------------------------- half-made systems


def test_a_half_made_system_honours_each_timeout() -> None:
    hang("HcsCreateComputeSystem")
    with pytest.raises(errors.TimeoutExpiredError) as exc:
        ComputeSystem.create(new_id(), CONFIG, timeout=0.1)
    system = exc.value.system
    assert isinstance(system, ComputeSystem)
    del exc
    with system:
        for call in (
            lambda: system.terminate(timeout=TIMEOUT),
            lambda: system.stop(grace=0.1, timeout=TIMEOUT),
            lambda: system.properties(timeout=TIMEOUT),
            lambda: system.create_process(["true"], timeout=TIMEOUT),
            lambda: system.run(["true"], timeout=TIMEOUT),
        ):
            start = time.monotonic()
            with pytest.raises(errors.TimeoutExpiredError):
                call()
            assert time.monotonic() - start < TIMEOUT + MARGIN


# ----------------------------------------------------------------------------- the sweep

#: (name, HCS function to hang, setup, call). ``setup`` gets a running system and returns
#: what ``call`` needs; ``call(system, thing, timeout)`` must raise a timeout.
Case = tuple[str, str | None, Callable[[ComputeSystem], Any], Callable[[ComputeSystem, Any, float], Any]]


def _nothing(s: ComputeSystem) -> None:
    return None


def _sleeper(s: ComputeSystem) -> Process:
    return s.create_process(["sleep", "30"], stdin=True, stdout=True, stderr=True)


def _console(s: ComputeSystem) -> Process:
    return s.create_process(["sleep", "30"], console=True)


SYNC_CASES: list[Case] = [
    ("create", "HcsCreateComputeSystem", _nothing, lambda s, _, t: ComputeSystem.create(new_id(), CONFIG, timeout=t)),
    ("enumerate", "HcsEnumerateComputeSystems", _nothing, lambda s, _, t: ComputeSystem.enumerate(timeout=t)),
    ("shutdown", "HcsShutDownComputeSystem", _nothing, lambda s, _, t: s.shutdown(timeout=t)),
    ("terminate", "HcsTerminateComputeSystem", _nothing, lambda s, _, t: s.terminate(timeout=t)),
    ("crash", "HcsCrashComputeSystem", _nothing, lambda s, _, t: s.crash(timeout=t)),
    ("pause", "HcsPauseComputeSystem", _nothing, lambda s, _, t: s.pause(timeout=t)),
    ("properties", "HcsGetComputeSystemProperties", _nothing, lambda s, _, t: s.properties(timeout=t)),
    ("wait_exit", None, _nothing, lambda s, _, t: s.wait_exit(t)),
    ("modify", "HcsModifyComputeSystem", _nothing,
     lambda s, _, t: s.modify({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1}, timeout=t)),
    ("stop", "HcsShutDownComputeSystem,HcsTerminateComputeSystem", _nothing,
     lambda s, _, t: s.stop(grace=t / 2, timeout=t)),
    ("submit+result", "HcsGetComputeSystemProperties", _nothing, lambda s, _, t: s.submit("properties").result(t)),
    ("events", None, _nothing, lambda s, _, t: [next(s.events(replay=False, timeout=t))]),
    ("create_process", "HcsCreateProcess", _nothing, lambda s, _, t: s.create_process(["true"], timeout=t)),
    ("run", "HcsCreateProcess", _nothing, lambda s, _, t: s.run(["true"], timeout=t)),
    ("run (slow command)", None, _nothing, lambda s, _, t: s.run(["sleep", "30"], timeout=t)),
    ("process.wait", None, _sleeper, lambda s, p, t: p.wait(t)),
    ("process.communicate", None, _sleeper, lambda s, p, t: p.communicate(timeout=t)),
    ("process.close_stdin", "HcsModifyProcess", _sleeper, lambda s, p, t: p.close_stdin(timeout=t)),
    ("process.signal", "HcsSignalProcess", _sleeper, lambda s, p, t: p.signal("CtrlC", timeout=t)),
    ("process.terminate", "HcsTerminateProcess", _sleeper, lambda s, p, t: p.terminate(timeout=t)),
    ("process.kill", "HcsTerminateProcess", _sleeper, lambda s, p, t: p.kill(timeout=t)),
    ("process.resize", "HcsModifyProcess", _console, lambda s, p, t: p.resize(30, 100, timeout=t)),
    ("process.properties", "HcsGetProcessProperties", _sleeper, lambda s, p, t: p.properties(timeout=t)),
    ("process.events", None, _sleeper, lambda s, p, t: [next(p.events(replay=False, timeout=t))]),
]


def _cleanup(thing: Any) -> None:
    if isinstance(thing, (Process, aio.Process)):
        thing.close()


@pytest.mark.parametrize("case", SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
def test_every_sync_method_honours_its_timeout(case: Case) -> None:
    _, functions, setup, call = case
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        thing = setup(s)
        try:
            for function in (functions or "").split(","):
                if function:
                    hang(function)
            start = time.monotonic()
            with pytest.raises(errors.TimeoutExpiredError) as exc:
                call(s, thing, TIMEOUT)
            took = time.monotonic() - start
            assert took < TIMEOUT + MARGIN, f"took {took:.2f} s"
            assert exc.value.timeout == TIMEOUT
            give_up(exc.value)
        finally:
            emulator.add_faults(reset=True)
            _cleanup(thing)


AsyncCase = tuple[str, str | None, Callable[[aio.ComputeSystem], Awaitable[Any]],
                  Callable[[aio.ComputeSystem, Any, float], Awaitable[Any]]]


async def _a_nothing(s: aio.ComputeSystem) -> None:
    return None


async def _a_sleeper(s: aio.ComputeSystem) -> aio.Process:
    return await s.create_process(["sleep", "30"], stdin=True, stdout=True, stderr=True)


async def _a_create(s: aio.ComputeSystem, _: Any, t: float) -> Any:
    return await aio.ComputeSystem.create(new_id(), CONFIG, timeout=t)


async def _a_events(obj: Any, t: float) -> Any:
    stream = obj.events(replay=False, timeout=t)
    return await stream.__anext__()


ASYNC_CASES: list[AsyncCase] = [
    ("create", "HcsCreateComputeSystem", _a_nothing, _a_create),
    ("enumerate", "HcsEnumerateComputeSystems", _a_nothing, lambda s, _, t: aio.enumerate(timeout=t)),
    ("shutdown", "HcsShutDownComputeSystem", _a_nothing, lambda s, _, t: s.shutdown(timeout=t)),
    ("terminate", "HcsTerminateComputeSystem", _a_nothing, lambda s, _, t: s.terminate(timeout=t)),
    ("pause", "HcsPauseComputeSystem", _a_nothing, lambda s, _, t: s.pause(timeout=t)),
    ("properties", "HcsGetComputeSystemProperties", _a_nothing, lambda s, _, t: s.properties(timeout=t)),
    ("state", "HcsGetComputeSystemProperties", _a_nothing, lambda s, _, t: s.state(timeout=t)),
    ("wait_exit", None, _a_nothing, lambda s, _, t: s.wait_exit(t)),
    ("stop", "HcsShutDownComputeSystem,HcsTerminateComputeSystem", _a_nothing,
     lambda s, _, t: s.stop(grace=t / 2, timeout=t)),
    ("events", None, _a_nothing, lambda s, _, t: _a_events(s, t)),
    ("create_process", "HcsCreateProcess", _a_nothing, lambda s, _, t: s.create_process(["true"], timeout=t)),
    ("run", "HcsCreateProcess", _a_nothing, lambda s, _, t: s.run(["true"], timeout=t)),
    ("run (slow command)", None, _a_nothing, lambda s, _, t: s.run(["sleep", "30"], timeout=t)),
    ("process.wait", None, _a_sleeper, lambda s, p, t: p.wait(t)),
    ("process.communicate", None, _a_sleeper, lambda s, p, t: p.communicate(timeout=t)),
    ("process.close_stdin", "HcsModifyProcess", _a_sleeper, lambda s, p, t: p.close_stdin(timeout=t)),
    ("process.signal", "HcsSignalProcess", _a_sleeper, lambda s, p, t: p.signal("CtrlC", timeout=t)),
    ("process.terminate", "HcsTerminateProcess", _a_sleeper, lambda s, p, t: p.terminate(timeout=t)),
    ("process.kill", "HcsTerminateProcess", _a_sleeper, lambda s, p, t: p.kill(timeout=t)),
    ("process.properties", "HcsGetProcessProperties", _a_sleeper, lambda s, p, t: p.properties(timeout=t)),
]


@pytest.mark.parametrize("case", ASYNC_CASES, ids=[c[0] for c in ASYNC_CASES])
def test_every_async_method_honours_its_timeout(case: AsyncCase) -> None:
    _, functions, setup, call = case

    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as s:
            await s.start()
            thing = await setup(s)
            try:
                for function in (functions or "").split(","):
                    if function:
                        hang(function)
                start = time.monotonic()
                with pytest.raises(errors.TimeoutExpiredError) as exc:
                    await call(s, thing, TIMEOUT)
                took = time.monotonic() - start
                assert took < TIMEOUT + MARGIN, f"took {took:.2f} s"
                assert exc.value.timeout == TIMEOUT
                give_up(exc.value)
            finally:
                emulator.add_faults(reset=True)
                _cleanup(thing)

    asyncio.run(main())


# ----------------------------------------------------------------------------- refusals


def test_a_real_access_denied_on_kill_is_raised_within_its_timeout() -> None:
    # An access-denied refusal of HcsTerminateProcess means "already exited" only when the exit
    # shows; kill() waits for it briefly, never past the timeout it was given.
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        with s.create_process(["sleep", "30"]) as p:
            emulator.add_faults({"Function": "HcsTerminateProcess", "Where": "Result", "HResult": "0x80070005"})
            start = time.monotonic()
            with pytest.raises(errors.Win32AccessDeniedError):
                p.kill(timeout=TIMEOUT)
            assert time.monotonic() - start < TIMEOUT + MARGIN
            emulator.add_faults(reset=True)
            assert p.kill(timeout=10) is True
            assert p.wait(10) == 137


def test_kill_refused_because_the_process_just_exited_returns_false() -> None:
    # The refusal comes before this handle has seen the exit (here: the fault refuses while
    # the process still runs for a moment): kill() waits for the exit and reports "not killed".
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        with s.create_process(["sh", "-c", "sleep 0.3; exit 4"]) as p:
            emulator.add_faults({"Function": "HcsTerminateProcess", "Where": "Result", "HResult": "0x80070005"})
            assert p.kill(timeout=10) is False
            assert p.wait(0) == 4
