"""Property tests of pyhcs.ComputeSystemPool and pyhcs.aio.ComputeSystemPool under random fault
schedules (pyhcs.testing.strategies): whatever HCS does (fail, delay, never complete) to the
calls a pool makes, every task ends within its own timeout plus the teardown bound, the pool
ends within its bounds, every future holds a result or an error the pool documents, and nothing
is left behind (``clean_emulator``'s leak check after every example). Both backends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pyhcs
from pyhcs import aio, errors
from pyhcs.testing import FaultSchedule, FaultSpec
from pyhcs.testing import strategies as hs

pytestmark = pytest.mark.pyhcs_backends

CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pool-faults", "Container": {}}

#: Every HCS call a pool task makes on its way (create, start, process, wait, teardown).
CALLS = [
    "HcsCreateComputeSystem",
    "HcsStartComputeSystem",
    "HcsCreateProcess",
    "HcsWaitForOperationResult",
    "HcsWaitForOperationResultAndProcessInfo",
    "HcsGetProcessProperties",
    "HcsTerminateProcess",
    "HcsTerminateComputeSystem",
    "HcsCloseProcess",
    "HcsCloseComputeSystem",
]
FAILURES = [errors.ConnectionTimeoutError, errors.AccessDeniedError, errors.SystemNotFoundError]

LIMIT = 0.6  # each task's timeout
KILL_GRACE = 1.0  # run() gives the kill of a timed-out process at least this (system.py, _KILL_GRACE)
TEARDOWN = 0.5  # each terminate at teardown
SLACK = 3.0  # scheduling on a loaded 2-core machine

#: Hypothesis' own per-example deadline stays on (generous: a slow example is a finding too).
_SETTINGS = settings(
    max_examples=10,
    deadline=60_000,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Plan:
    commands: tuple[tuple[str, ...], ...]
    max_workers: int
    tasks_per_system: int


plans = st.builds(
    Plan,
    commands=st.lists(
        st.sampled_from([("echo", "ok"), ("sh", "-c", "exit 3"), ("sleep", "30")]).map(tuple),
        min_size=1,
        max_size=4,
    ).map(tuple),
    max_workers=st.integers(1, 3),
    tasks_per_system=st.integers(1, 3),
)
schedules = hs.fault_schedules(functions=CALLS, errors=FAILURES, max_delay=0.3, max_size=3)

#: Found by these properties: run() timed out, its kill of the process hung (HcsTerminateProcess
#: never completes), and run() then killed again with the default timeout (240 s) on its way
#: out, and left the hung kill's operation, and so its handles and system, open.
HUNG_KILL = (
    Plan(commands=(("sh", "-c", "exit 3"), ("sleep", "30"), ("echo", "ok")), max_workers=1, tasks_per_system=2),
    FaultSchedule((FaultSpec("HcsTerminateProcess", "hang"),)),
)


def _bound(plan: Plan) -> float:
    """How long the whole pool may take: each worker runs its share of tasks one after the
    other, each within its timeout plus the kill of its process and the teardown of its
    system, and the pool ends with one more teardown."""
    share = -(-len(plan.commands) // plan.max_workers)
    return share * (LIMIT + KILL_GRACE + TEARDOWN) + TEARDOWN + SLACK


def _check_outcome(command: tuple[str, ...], outcome: Any) -> None:
    """A result is the command's own; an error is one the pool documents."""
    if isinstance(outcome, pyhcs.CompletedProcess):
        assert command != ("sleep", "30"), "a task outlived its timeout"
        assert outcome.returncode == (3 if command[0] == "sh" else 0)
    else:
        assert isinstance(outcome, errors.HcsError), repr(outcome)
        assert not isinstance(outcome, subprocess.CalledProcessError)


@_SETTINGS
@given(plan=plans, schedule=schedules)
@example(*HUNG_KILL)
def test_threaded_pool_under_fault_schedules(clean_emulator: Any, plan: Plan, schedule: FaultSchedule) -> None:
    with clean_emulator() as faults:
        schedule.apply(faults)
        start = time.monotonic()
        with pyhcs.ComputeSystemPool(
            CONFIG, max_workers=plan.max_workers, tasks_per_system=plan.tasks_per_system,
            timeout=LIMIT, teardown_timeout=TEARDOWN, handle_sigterm=False,
        ) as pool:
            futures = [pool.submit(list(c)) for c in plan.commands]
            _, pending = concurrent.futures.wait(futures, timeout=_bound(plan))
            assert not pending, f"tasks still running after {_bound(plan):.1f} s"
        elapsed = time.monotonic() - start
        assert elapsed < _bound(plan), f"the pool took {elapsed:.1f} s"
        for command, future in zip(plan.commands, futures, strict=True):
            _check_outcome(command, future.exception() or future.result())
        faults.clear()  # the leak check then sees only what the pool left


@_SETTINGS
@given(plan=plans, schedule=schedules)
@example(*HUNG_KILL)
def test_asyncio_pool_under_fault_schedules(clean_emulator: Any, plan: Plan, schedule: FaultSchedule) -> None:
    async def main() -> list[Any]:
        async with aio.ComputeSystemPool(
            CONFIG, max_workers=plan.max_workers, tasks_per_system=plan.tasks_per_system,
            timeout=LIMIT, teardown_timeout=TEARDOWN,
        ) as pool:
            tasks = [pool.submit(list(c)) for c in plan.commands]
            return await asyncio.gather(*tasks, return_exceptions=True)

    with clean_emulator() as faults:
        schedule.apply(faults)
        start = time.monotonic()
        outcomes = asyncio.run(asyncio.wait_for(main(), _bound(plan)))
        elapsed = time.monotonic() - start
        assert elapsed < _bound(plan), f"the pool took {elapsed:.1f} s"
        for command, outcome in zip(plan.commands, outcomes, strict=True):
            _check_outcome(command, outcome)
        faults.clear()
