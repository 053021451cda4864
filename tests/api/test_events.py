"""Events: callbacks, blocking and async iterators, ordering, terminal events, close rules."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from pyhcs import ComputeSystem, Event, EventType, aio, emulator, errors
from pyhcs._native import _backend as B

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "ev") -> str:
    return _new_id(prefix)


def test_callbacks_see_every_event_in_order(system: ComputeSystem) -> None:
    seen: list[Event] = []
    threads: set[str] = set()

    def cb(ev: Event) -> None:
        seen.append(ev)
        threads.add(threading.current_thread().name)

    system.add_event_callback(cb)
    system.crash()
    system.wait_exit(10)
    B.flush_callbacks()
    assert [e.type for e in seen] == [EventType.SYSTEM_CRASH_INITIATED, EventType.SYSTEM_CRASH_REPORT,
                                      EventType.SYSTEM_EXITED]
    assert all(e.system_id == system.id for e in seen)
    assert seen[0].document["SystemId"] == system.id and seen[0].name == "SystemCrashInitiated"
    assert threads == {"pyhcs-dispatch"}  # never on the library's threads
    assert "SystemExited" in repr(seen[-1]) and seen[-1].name == "SystemExited"
    # a late subscriber can replay the history; removing a callback stops it
    late: list[Event] = []
    system.add_event_callback(late.append, replay=True)
    assert late == seen
    system.remove_event_callback(cb)
    system.remove_event_callback(cb)  # unknown: ignored


def test_iterator_replay_and_end(system: ComputeSystem) -> None:
    fresh = system.events(replay=False, timeout=10)
    system.terminate()
    assert [e.type for e in fresh] == [EventType.SYSTEM_EXITED]
    assert list(fresh) == []  # stays ended
    replayed = list(system.events(timeout=10))
    assert [e.type for e in replayed] == [EventType.SYSTEM_EXITED]
    assert list(system.events(replay=False, timeout=10)) == []  # ended: nothing new will come


def test_iterator_timeout_keeps_the_stream(system: ComputeSystem) -> None:
    stream = system.events(timeout=0.05)
    with pytest.raises(errors.OperationTimeoutError) as exc:
        next(stream)
    assert "next event" in str(exc.value)
    system.terminate()
    assert next(iter(stream)).type == EventType.SYSTEM_EXITED


def test_slow_consumer_loses_nothing(system: ComputeSystem) -> None:
    stream = system.events(timeout=10)
    procs = [system.create_process(["true"]) for _ in range(20)]
    for p in procs:
        assert p.wait(10) == 0
    pstreams = [list(p.events(timeout=10)) for p in procs]
    assert all([e.type for e in s] == [EventType.PROCESS_EXITED] or s == [] for s in pstreams)
    for p in procs:
        p.close()
    system.crash()
    time.sleep(0.05)  # the consumer is late: everything is still there
    assert [e.type for e in stream][-1] == EventType.SYSTEM_EXITED


def test_process_exited_event(system: ComputeSystem) -> None:
    with system.create_process(["sh", "-c", "read x; exit 7"], stdin=True) as p:
        got: list[Event] = []
        p.add_event_callback(got.append)
        stream = p.events(timeout=10)
        p.close_stdin()
        events = list(stream)
        assert [e.type for e in events] == [EventType.PROCESS_EXITED]
        assert events[0].document["ExitCode"] == 7 and events[0].process_id == p.pid
        B.flush_callbacks()
        assert got == events
        assert p.exit_status is not None and p.exit_status.source == "event"
        p.remove_event_callback(got.append)


def test_raising_callback_is_logged_and_delivery_goes_on(system: ComputeSystem,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    after: list[Event] = []

    def bad(ev: Event) -> None:
        raise RuntimeError("bad callback")

    system.add_event_callback(bad)
    system.add_event_callback(after.append)
    with caplog.at_level(logging.ERROR, logger="pyhcs"):
        system.terminate()
        system.wait_exit(10)
        B.flush_callbacks()
    assert [e.type for e in after] == [EventType.SYSTEM_EXITED]
    assert any("event callback raised" in r.getMessage() for r in caplog.records)


def test_callback_closes_its_own_system() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    s.start()
    closed = threading.Event()

    def cb(ev: Event) -> None:
        s.close()  # its own handle, from its own callback: must not deadlock
        closed.set()

    s.add_event_callback(cb)
    try:
        s.terminate()
    except errors.HandleClosedError:
        pass  # the callback closed the system before terminate() read its result
    assert closed.wait(10)
    assert s.closed


def test_callback_closes_its_own_process(system: ComputeSystem) -> None:
    p = system.create_process(["sleep", "30"])
    done = threading.Event()

    def cb(ev: Event) -> None:
        p.close()
        done.set()

    p.add_event_callback(cb)
    p.kill()
    assert done.wait(10)
    assert p.closed


def test_close_while_a_callback_runs_does_not_deadlock() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    s.start()
    entered = threading.Event()
    release = threading.Event()

    def slow(ev: Event) -> None:
        entered.set()
        release.wait(10)
        # the object is closing meanwhile: calls raise locally instead of waiting
        with pytest.raises(errors.HandleClosedError):
            s.properties()

    s.add_event_callback(slow)
    s.terminate()
    assert entered.wait(10)
    closer = threading.Thread(target=s.close)
    closer.start()
    time.sleep(0.05)
    release.set()
    closer.join(10)
    assert not closer.is_alive() and s.closed


def test_waiting_inside_a_callback_fails_fast(system: ComputeSystem) -> None:
    results: list[BaseException] = []
    done = threading.Event()

    def cb(ev: Event) -> None:
        if ev.type != EventType.SYSTEM_CRASH_INITIATED:
            return
        try:
            # SystemExited could only be delivered by this very thread, after we return
            system.wait_exit(30)
        except BaseException as e:
            results.append(e)
        done.set()

    system.add_event_callback(cb)
    system.crash()
    assert done.wait(10)
    assert isinstance(results[0], RuntimeError) and "callback" in str(results[0])
    assert system.wait_exit(10).unexpected


def test_disconnect_ends_every_stream(system: ComputeSystem) -> None:
    p = system.create_process(["sleep", "30"])
    try:
        emulator.action("ServiceDisconnect")
        assert [e.type for e in system.events(timeout=10)] == [EventType.SERVICE_DISCONNECT]
        assert [e.type for e in p.events(timeout=10)] == [EventType.SERVICE_DISCONNECT]
    finally:
        emulator.action("Reconnect")
        p.kill()
        p.close()


def test_async_iteration(system: ComputeSystem) -> None:
    async def main() -> list[Any]:
        async def consume() -> list[Any]:
            return [e.type async for e in aio.events(system, timeout=10)]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.01)
        system.crash()
        return await task

    assert asyncio.run(main()) == [EventType.SYSTEM_CRASH_INITIATED, EventType.SYSTEM_CRASH_REPORT,
                                   EventType.SYSTEM_EXITED]


def test_async_iteration_timeout_and_close(system: ComputeSystem) -> None:
    async def main() -> None:
        stream = aio.events(system, timeout=0.05)
        with pytest.raises(errors.OperationTimeoutError):
            await stream.__anext__()
        stream = aio.events(system, timeout=10)
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)
        system.close()  # ends the stream
        with pytest.raises(StopAsyncIteration):
            await task

    asyncio.run(main())
