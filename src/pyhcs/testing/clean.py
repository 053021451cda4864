"""A clean emulator for one block, one call or one hypothesis example.

::

    from pyhcs.testing import clean_emulator

    with clean_emulator() as faults:      # reset; yields a Faults
        faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, count=1)
        run_the_code()
    # checked for leaks (LeakError), emulator reset, systems left behind terminated

    @given(jobs=...)
    @clean_emulator()                      # the same, around every example
    def test_runner(jobs): ...

Under pytest, the plugin's session-scoped ``clean_emulator`` fixture hands out this function
with the session's leak options; being session-scoped it passes hypothesis' health checks,
which reject function-scoped fixtures under ``@given`` (they are not reset between examples).
Needs neither pytest nor hypothesis.
"""

from __future__ import annotations

import contextlib
import json
import logging
from types import ModuleType, TracebackType
from typing import Any, cast

from . import leaks
from .faults import Faults

__all__ = ["CleanEmulator", "clean_emulator"]

log = logging.getLogger("pyhcs.testing")


def system_ids(raw: ModuleType) -> set[str] | None:
    """Ids of every compute system the emulator holds, or None if it cannot say."""
    try:
        op = raw.hcs_create_operation()
        try:
            raw.hcs_enumerate_compute_systems(None, op)
            doc = raw.hcs_wait_for_operation_result(op, 10_000)
        finally:
            raw.hcs_close_operation(op)
        items: list[object] = json.loads(doc or "[]")
        return {str(cast("dict[str, Any]", item).get("Id")) for item in items if isinstance(item, dict)}
    except Exception:
        log.debug("pyhcs.testing: enumerating compute systems failed", exc_info=True)
        return None


def sweep(raw: ModuleType, keep: set[str]) -> list[str]:
    """Terminates every system not in ``keep`` (what a test left behind); returns their ids."""
    now = system_ids(raw)
    if now is None:
        return []
    swept = sorted(now - keep)
    for system_id in swept:
        try:
            handle = raw.hcs_open_compute_system(system_id)
        except Exception:
            continue
        try:
            op = raw.hcs_create_operation()
            try:
                raw.hcs_terminate_compute_system(handle, op, None)
                raw.hcs_wait_for_operation_result(op, 30_000)
            except Exception:
                log.debug("pyhcs.testing: sweeping %r", system_id, exc_info=True)
            finally:
                raw.hcs_close_operation(op)
        finally:
            raw.hcs_close_compute_system(handle)
    return swept


class CleanEmulator(contextlib.ContextDecorator):
    """The context manager (and decorator) :func:`clean_emulator` returns. Enter it once at a
    time; a decorated function enters it at every call."""

    def __init__(self, *, leak_check: bool = True, leak_timeout: float = 10.0, backend: ModuleType | None = None) -> None:
        self.leak_check = leak_check
        self.leak_timeout = leak_timeout
        self._backend = backend
        self._faults: Faults | None = None
        self._before: leaks.Snapshot | None = None
        self._systems: set[str] | None = None

    def __enter__(self) -> Faults:
        if self._faults is not None:
            raise RuntimeError("clean_emulator() is already active; nest separate instances instead")
        faults = Faults(self._backend)  # EmulatorRequired off the emulator
        faults.reset()
        self._faults = faults
        self._systems = system_ids(faults.raw)
        self._before = leaks.snapshot(faults.raw) if self.leak_check else None
        return faults

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        faults, before, systems = self._faults, self._before, self._systems
        self._faults = self._before = self._systems = None
        assert faults is not None
        failure: leaks.LeakError | None = None
        try:
            if before is not None:
                if exc is None:
                    # Faults stay in force until the check is done: a hung close is a leak too.
                    try:
                        leaks.check(before, timeout=self.leak_timeout, backend=faults.raw)
                    except leaks.LeakError as err:
                        failure = err
                else:
                    leaks.release(before)  # the block's own error wins
        finally:
            faults.reset()
            swept = sweep(faults.raw, systems) if systems is not None else []
        if failure is not None:
            problems = list(failure.problems)
            if swept:
                problems.append(f"(terminated afterwards: {', '.join(swept)})")
            raise leaks.LeakError(problems, "Close what the block opened (a `with` block per object).")


def clean_emulator(
    *, leak_check: bool = True, leak_timeout: float = 10.0, backend: ModuleType | None = None
) -> CleanEmulator:
    """A clean emulator for a block: no fault rules, default switches, the service connected,
    call counts at zero. Yields a :class:`~pyhcs.testing.Faults`. At the end: the leak check
    (:func:`pyhcs.testing.leaks.check`, including objects the garbage collector had to close;
    :class:`~pyhcs.testing.LeakError` names what was left, unless the block raised), then the
    emulator is reset and compute systems left behind are terminated.

    Also a decorator (``@clean_emulator()``), entered at every call: under ``@given``, once per
    example. Raises :class:`~pyhcs.testing.EmulatorRequired` off the emulator.
    """
    return CleanEmulator(leak_check=leak_check, leak_timeout=leak_timeout, backend=backend)
