"""pyhcs.aio.ComputeSystemPool: the asyncio twin of the pool, on both backends, with the
plugin's leak check after every test."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest

import pyhcs
from pyhcs import aio, errors
from pyhcs.testing import Emulator, Faults

from pyutil import settled_system_count, system_count_at_most

#: Systems the service already held when the test began (a private service is shared by the
#: whole session, so another test's system still closing may be counted): the pool must
#: leave nothing of its own.
_BEFORE = {"systems": 0}


@pytest.fixture(autouse=True)
def _systems_before() -> None:
    _BEFORE["systems"] = settled_system_count()

pytestmark = pytest.mark.pyhcs_backends

CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "aio-pool-test", "Container": {}}


def _systems_settle(expected: int, *, within: float) -> bool:
    """Whether the emulator holds at most ``expected`` systems within ``within`` seconds."""
    emulator = Emulator()
    deadline = time.monotonic() + within
    while int(emulator.statistics()["Systems"]) > expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def creates(faults: Faults) -> int:
    return faults.call_counts().get("HcsCreateComputeSystem", 0)


def test_exported_from_aio() -> None:
    assert "ComputeSystemPool" in aio.__all__
    assert aio.ComputeSystemPool.__module__ == "pyhcs.aio"


def test_map_in_order_and_max_workers(faults: Faults) -> None:
    peak = 0

    async def watch(stop: asyncio.Event) -> None:
        nonlocal peak
        emulator = Emulator()
        while not stop.is_set():
            peak = max(peak, int(emulator.statistics()["Systems"]))
            await asyncio.sleep(0.01)

    async def main() -> list[pyhcs.CompletedProcess]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        async with aio.ComputeSystemPool(CONFIG, max_workers=2, timeout=30) as pool:
            results = [r async for r in pool.map([["sh", "-c", f"sleep 0.1; echo {n}"] for n in range(6)])]
        stop.set()
        await watcher
        return results

    results = asyncio.run(main())
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(6)]
    assert creates(faults) == 6
    assert peak == 2 + _BEFORE["systems"]
    assert system_count_at_most(_BEFORE["systems"]) <= _BEFORE["systems"]


def test_reuse_check_and_as_completed(faults: Faults) -> None:
    async def main() -> None:
        async with aio.ComputeSystemPool(CONFIG, max_workers=1, tasks_per_system=4, timeout=30) as pool:
            tasks = [pool.submit(["echo", str(n)]) for n in range(3)]
            failing = pool.submit(["sh", "-c", "exit 2"], check=True)
            done = [await t for t in pool.as_completed(tasks)]
            assert sorted(r.stdout for r in done) == [b"0\n", b"1\n", b"2\n"]
            with pytest.raises(subprocess.CalledProcessError):
                await failing

    asyncio.run(main())
    assert creates(faults) == 1  # one system served all four tasks


def test_the_tasks_left_at_shutdown_still_reuse_systems(faults: Faults) -> None:
    async def main() -> list[pyhcs.CompletedProcess]:
        async with aio.ComputeSystemPool(CONFIG, max_workers=1, tasks_per_system=3, timeout=30) as pool:
            tasks = [pool.submit(["echo", str(n)]) for n in range(5)]
        # the block's end (a shutdown that waits) ran them all, and tore every system down
        return [t.result() for t in tasks]

    results = asyncio.run(main())
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(5)]
    assert creates(faults) == 2  # 3 + 2
    assert system_count_at_most(_BEFORE["systems"]) <= _BEFORE["systems"]


def test_task_timeout_and_faults_leave_nothing(faults: Faults) -> None:
    faults.hang("HcsCreateComputeSystem", count=1)
    faults.fail("HcsCreateProcess", errors.AccessDeniedError, count=1)

    async def main() -> list[Any]:
        async with aio.ComputeSystemPool(CONFIG, max_workers=1, timeout=1.0, teardown_timeout=0.5) as pool:
            tasks = [
                pool.submit(["true"]),  # create hangs: times out
                pool.submit(["true"]),  # process creation fails
                pool.submit(["sleep", "60"], timeout=0.5),  # over its own timeout
                pool.submit(["echo", "fine"]),
            ]
            return list(await asyncio.gather(*tasks, return_exceptions=True))

    start = time.monotonic()
    outcomes = asyncio.run(main())
    assert time.monotonic() - start < 20
    assert isinstance(outcomes[0], errors.OperationTimeoutError)
    assert isinstance(outcomes[1], errors.AccessDeniedError)
    assert isinstance(outcomes[2], errors.OperationTimeoutError)
    assert outcomes[3].stdout == b"fine\n"
    faults.reset()


def test_cancellation_of_the_main_task_tears_everything_down(faults: Faults) -> None:
    tasks: list[asyncio.Task[pyhcs.CompletedProcess]] = []

    async def main() -> None:
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_later(1.0, me.cancel)  # what asyncio.run does on Ctrl-C
        async with aio.ComputeSystemPool(CONFIG, max_workers=2) as pool:
            tasks.extend(pool.submit(["sleep", "60"]) for _ in range(5))
            await asyncio.gather(*tasks)

    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert time.monotonic() - start < 20
    assert all(t.cancelled() for t in tasks)
    # A task cancelled inside create_process or a kill leaves that call's own handles to
    # close when HCS completes it (a few milliseconds after the pool is done): wait for them.
    # (The handles a kill opens were once lost when the cancellation met the open's return:
    # tests/aio/test_flow_aio_cancel.py.)
    assert _systems_settle(_BEFORE["systems"], within=5.0)


def test_shutdown_rules(faults: Faults) -> None:
    async def main() -> None:
        pool = aio.ComputeSystemPool(CONFIG, max_workers=1, tasks_per_system=2, timeout=30)
        running = pool.submit(["sleep", "0.3"])
        await asyncio.sleep(0.1)
        queued = [pool.submit(["true"]) for _ in range(3)]
        await pool.shutdown(wait=True, cancel_futures=True)
        assert (await running).returncode == 0
        assert all(t.cancelled() for t in queued)
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(["true"])

    asyncio.run(main())
    assert system_count_at_most(_BEFORE["systems"]) <= _BEFORE["systems"]
