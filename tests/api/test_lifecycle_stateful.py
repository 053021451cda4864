"""A hypothesis state machine over the compute-system and process lifecycle.

Random sequences of calls on ComputeSystem and Process objects are checked against a model of
the spec's state machine (hcs-api.md §5): every call's outcome (the new state, or the exact
error class) is predicted and compared, the ``State`` property must agree with the model after
every step, and at the end nothing may be left behind: no handle, operation, registry entry,
file descriptor or child process.
"""

# Counts the layer's private registries (event hubs, pending operations) to find leaks.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import gc
import itertools
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from pyhcs import ComputeSystem, Process, emulator, errors
from pyhcs import events as ev_mod
from pyhcs import operation as op_mod
from pyhcs._native import _backend as B

_ids = itertools.count()
CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-stateful", "Container": {}}

CREATED, RUNNING, PAUSED, STOPPED = "Created", "Running", "Paused", "Stopped"
#: exit codes of the commands that end by themselves
NATURAL: dict[str, tuple[int, ...]] = {"true": (0,), "exit 5": (5,)}


def _children() -> int:
    me = str(os.getpid())
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            n += 1
    return n


def _snapshot() -> dict[str, int]:
    s = emulator.statistics()
    return {
        "SystemHandles": s["SystemHandles"],
        "ProcessHandles": s["ProcessHandles"],
        "Operations": s["Operations"],
        "Systems": s["Systems"],
        "hubs": len(ev_mod._hubs),
        "pending": len(op_mod._pending),
        "fds": len(os.listdir("/proc/self/fd")),
        "children": _children(),
    }


def _expect(error: type[BaseException] | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls fn; the outcome must be exactly the predicted error class, or success."""
    if error is None:
        return fn(*args, **kwargs)
    with pytest.raises(error):
        fn(*args, **kwargs)
    return None


class ProcessModel:
    def __init__(self, proc: Process, command: str) -> None:
        self.proc = proc
        self.command = command
        self.closed = False
        self.exited: int | None = None


class Lifecycle(RuleBasedStateMachine):
    processes = Bundle("processes")

    def __init__(self) -> None:
        super().__init__()
        self.baseline = _snapshot()
        self.system: ComputeSystem | None = None
        self.state: str | None = None  # None: no system, or closed
        self.closed_systems: list[ComputeSystem] = []
        self.models: list[ProcessModel] = []
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp"))

    # -- systems ------------------------------------------------------------------------------
    @precondition(lambda self: self.system is None)
    @rule(terminate_on_close=st.booleans())
    def create(self, terminate_on_close: bool) -> None:
        config = dict(CONFIG)
        if not terminate_on_close:
            config["ShouldTerminateOnLastHandleClosed"] = False
        self.system = ComputeSystem.create(f"sm-{os.getpid()}-{next(_ids)}", config)
        self.state = CREATED
        self.terminate_on_close = terminate_on_close

    @precondition(lambda self: self.system is not None)
    @rule()
    def start(self) -> None:
        assert self.system is not None
        if self.state == CREATED:
            self.system.start()
            self.state = RUNNING
        else:
            err = errors.InvalidStateError
            _expect(err, self.system.start)

    @precondition(lambda self: self.system is not None)
    @rule()
    def pause(self) -> None:
        assert self.system is not None
        if self.state == RUNNING:
            self.system.pause()
            self.state = PAUSED
        else:
            _expect(errors.SystemAlreadyStoppedError if self.state == STOPPED else errors.InvalidStateError,
                    self.system.pause)

    @precondition(lambda self: self.system is not None)
    @rule()
    def resume(self) -> None:
        assert self.system is not None
        if self.state == PAUSED:
            self.system.resume()
            self.state = RUNNING
        else:
            _expect(errors.SystemAlreadyStoppedError if self.state == STOPPED else errors.InvalidStateError,
                    self.system.resume)

    @precondition(lambda self: self.system is not None)
    @rule()
    def save(self) -> None:
        assert self.system is not None
        path = self.tmp / f"pyhcs-sm-{os.getpid()}-{next(_ids)}.vmrs"
        options = {"SaveType": "ToFile", "SaveStateFilePath": str(path)}
        try:
            if self.state == PAUSED:
                self.system.save(options)  # ToFile: stays Paused
                assert path.exists()
            else:
                _expect(errors.SystemAlreadyStoppedError if self.state == STOPPED else errors.InvalidStateError,
                        self.system.save, options)
        finally:
            path.unlink(missing_ok=True)

    @precondition(lambda self: self.system is not None)
    @rule()
    def shutdown(self) -> None:
        assert self.system is not None
        if self.state == RUNNING:
            assert self.system.shutdown(timeout=30) is True
            self._stopped("GracefulExit")
        elif self.state == STOPPED:
            assert self.system.shutdown() is False
        else:
            _expect(errors.InvalidStateError, self.system.shutdown)

    @precondition(lambda self: self.system is not None)
    @rule()
    def terminate(self) -> None:
        assert self.system is not None
        stopped = self.system.terminate(timeout=30)
        assert stopped is (self.state != STOPPED)
        if stopped:
            self._stopped("ForcedExit")

    @precondition(lambda self: self.system is not None)
    @rule()
    def crash(self) -> None:
        assert self.system is not None
        if self.state == RUNNING:
            self.system.crash(timeout=30)
            self._stopped("UnexpectedExit")
        else:
            _expect(errors.SystemAlreadyStoppedError if self.state == STOPPED else errors.InvalidStateError,
                    self.system.crash)

    @precondition(lambda self: self.system is not None)
    @rule(grace=st.sampled_from([0.0, 5.0]))
    def stop(self, grace: float) -> None:
        assert self.system is not None
        before = self.state
        status = self.system.stop(grace=grace, timeout=30)
        if before == STOPPED:
            assert status == self.system.exit_status
        else:
            expected = {"GracefulExit", "ForcedExit"} if before == RUNNING else {"ForcedExit"}
            assert status.exit_type in expected
            self._stopped(status.exit_type)

    def _stopped(self, exit_type: str) -> None:
        assert self.system is not None
        status = self.system.wait_exit(10)
        assert status.exit_type == exit_type
        self.state = STOPPED
        for m in self.models:
            if not m.closed and m.exited is None:
                code = m.proc.wait(10)  # every process ended with the system, with a real code
                assert code in (137, 143, *NATURAL.get(m.command, ())), (m.command, code)
                m.exited = code

    @precondition(lambda self: self.system is not None)
    @rule()
    def wait_exit_now(self) -> None:
        assert self.system is not None
        if self.state == STOPPED:
            assert self.system.wait_exit(0).exit_type
        else:
            _expect(errors.OperationTimeoutError, self.system.wait_exit, 0)

    @precondition(lambda self: self.system is not None)
    @rule()
    def close_system(self) -> None:
        assert self.system is not None
        self.system.close()
        for m in self.models:
            if not m.closed:
                assert m.proc.closed  # a system closes its processes first
                m.closed = True
        self.closed_systems.append(self.system)
        self.system = None
        self.state = None

    @precondition(lambda self: self.closed_systems)
    @rule()
    def use_closed_system(self) -> None:
        s = self.closed_systems[-1]
        for call in (s.start, s.properties, s.terminate):
            _expect(errors.HandleClosedError, call)
        s.close()  # idempotent

    # -- processes ----------------------------------------------------------------------------------
    @precondition(lambda self: self.system is not None)
    @rule(target=processes, command=st.sampled_from(["sleep 30", "cat", "true", "exit 5"]))
    def create_process(self, command: str) -> Any:
        assert self.system is not None
        if self.state != RUNNING:
            err = errors.SystemAlreadyStoppedError if self.state == STOPPED else errors.InvalidStateError
            _expect(err, self.system.create_process, command)
            return None
        stdin = command == "cat"
        # A Container is a Windows guest: a command line is split by the Windows rules, not
        # run by a shell, so the shell's own `exit` goes through sh.
        proc = self.system.create_process(command.split() if command != "exit 5" else ["sh", "-c", command],
                                          stdin=stdin, stdout=stdin)
        model = ProcessModel(proc, command)
        self.models.append(model)
        return model

    @rule(m=processes)
    def wait_process(self, m: ProcessModel | None) -> None:
        if m is None:
            return
        if m.closed:
            # A closed process answers from what it knew; it never asks HCS again.
            if m.exited is not None:
                assert m.proc.wait(0) == m.exited
            elif m.command in NATURAL:
                try:
                    assert m.proc.wait(0) in NATURAL[m.command] + (137, 143)
                except errors.HandleClosedError:
                    pass
            else:
                _expect(errors.HandleClosedError, m.proc.wait, 0)
            return
        if m.command in NATURAL and self.state != PAUSED:
            code = m.proc.wait(10)
            assert code == (m.exited if m.exited is not None else {"true": 0, "exit 5": 5}[m.command])
            m.exited = code
        elif m.exited is not None:
            assert m.proc.wait(0) == m.exited
        elif m.command in ("sleep 30", "cat"):
            _expect(errors.OperationTimeoutError, m.proc.wait, 0)

    @rule(m=processes)
    def kill_process(self, m: ProcessModel | None) -> None:
        if m is None:
            return
        if m.closed:
            _expect(errors.HandleClosedError, m.proc.kill)
            return
        killed = m.proc.kill()
        if killed:
            code = m.proc.wait(10)
            assert code in (137, 0, 5)  # a fast process may have exited by itself first
            m.exited = code
        else:
            m.exited = m.proc.wait(10)

    @rule(m=processes)
    def feed_cat(self, m: ProcessModel | None) -> None:
        if m is None or m.closed or m.command != "cat" or m.exited is not None or self.state != RUNNING:
            return
        out, err = m.proc.communicate(b"hello\n", timeout=30)
        assert (out, err) == (b"hello\n", None)
        m.exited = m.proc.exit_code
        assert m.exited == 0

    @rule(m=consumes(processes))
    def close_process(self, m: ProcessModel | None) -> None:
        if m is None:
            return
        m.proc.close()
        m.proc.close()
        if not m.closed and m.exited is None and self.system is not None:
            # closing does not end it: end it by pid so nothing outlives the test
            try:
                with self.system.open_process(m.proc.pid) as q:
                    q.kill()
                    q.wait(10)
            except errors.ElementNotFoundError:
                pass  # it had exited already
        m.closed = True

    # -- invariants ----------------------------------------------------------------------------------
    @invariant()
    def state_matches_the_model(self) -> None:
        if self.system is not None:
            assert self.system.properties()["State"] == self.state
            assert (self.system.exit_status is not None) == (self.state == STOPPED) or self.state != STOPPED

    def teardown(self) -> None:
        if self.system is not None:
            self.system.close()
        for m in self.models:
            m.proc.close()
        self.system = None
        self.models.clear()
        self.closed_systems.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
        # Terminate-on-close ends systems asynchronously; systems created with it off end
        # with the last handle too once stopped... or live on: sweep them.
        from pyhcs import service

        service.sweep("pyhcs-stateful")
        deadline = time.monotonic() + 20
        while True:
            B.flush_callbacks()
            after = _snapshot()
            if all(after[k] <= self.baseline[k] for k in self.baseline):
                return
            if time.monotonic() > deadline:
                assert after == self.baseline
            time.sleep(0.02)


Lifecycle.TestCase.settings = settings(
    max_examples=int(os.environ.get("PYHCS_STATEFUL_EXAMPLES", "25")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifecycle = Lifecycle.TestCase
