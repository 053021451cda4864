"""The asyncio driver (pyhcs._flow_aio) and cancellation: what a synchronous call returns is
never lost when the awaiting task is cancelled, however the two meet. No backend needed."""

# The driver under test is private (pyhcs._flow_aio).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from pyhcs._flow import Call, Flow
from pyhcs._flow_aio import drive, in_thread, waker


def _opened(go: threading.Event) -> Callable[[], str]:
    def open_handle() -> str:
        assert go.wait(10)
        return "handle"

    return open_handle


def _flow(fn: Callable[[], str], discarded: list[str]) -> Flow[str]:
    value: str = yield Call(fn, discard=discarded.append)
    return value


def _discarded_within(discarded: list[str], seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while not discarded and time.monotonic() < deadline:  # the discard runs in a thread
        time.sleep(0.005)
    return discarded


def test_a_result_that_meets_the_cancellation_is_discarded() -> None:
    # The result is handed to the loop, and in the same batch of loop work (before the task
    # takes its next step) the task is cancelled: asyncio then throws CancelledError into the
    # task instead of the result, which only the driver can still close.
    discarded: list[str] = []
    go = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(drive(_flow(_opened(go), discarded)))
        await asyncio.sleep(0)  # the task runs up to its wait for the call's thread
        wakeups = waker(loop)

        def meet() -> None:  # blocks the loop until the result waits to be handed over
            go.set()
            deadline = time.monotonic() + 10
            while not wakeups._pending and time.monotonic() < deadline:
                time.sleep(0.001)
            assert wakeups._pending, "the call's result never reached the loop"
            assert wakeups.call(task.cancel)  # the same batch, right after the result

        loop.call_soon(meet)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _discarded_within(discarded, 5.0) == ["handle"]


def test_a_result_after_the_cancellation_is_discarded() -> None:
    discarded: list[str] = []
    go = threading.Event()

    async def main() -> None:
        task = asyncio.ensure_future(drive(_flow(_opened(go), discarded)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go.set()  # the call returns only now

    asyncio.run(main())
    assert _discarded_within(discarded, 5.0) == ["handle"]


def test_a_result_the_task_takes_is_not_discarded() -> None:
    discarded: list[str] = []
    go = threading.Event()
    go.set()

    assert asyncio.run(drive(_flow(_opened(go), discarded))) == "handle"
    time.sleep(0.05)
    assert discarded == []


def test_a_result_that_reaches_a_closed_loop_is_discarded() -> None:
    discarded: list[str] = []
    go = threading.Event()
    loop = asyncio.new_event_loop()

    async def start() -> asyncio.Future[str]:
        return in_thread(_opened(go), discarded.append)

    loop.run_until_complete(start())  # nobody awaits the future; then the loop closes
    loop.close()
    assert waker(loop).call(lambda: None) is False
    go.set()
    assert _discarded_within(discarded, 5.0) == ["handle"]
